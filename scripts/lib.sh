# scripts/lib.sh: set-up shared by scripts/test, scripts/demo and bench/*.
# Sourced, not run.  Everything here is idempotent.

set -euo pipefail

DT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# PG_CONFIG=/path/to/pg_config builds and runs against that PostgreSQL
# (a private copy, say, so that two checkouts can test at once).
if [ -n "${PG_CONFIG:-}" ]; then DT_PG_BIN=$("$PG_CONFIG" --bindir); else DT_PG_BIN=/usr/lib/postgresql/15/bin; fi
DT_USER=${DT_USER:-ductape_test}     # the non-root OS user that runs clusters

dt_log() { printf '== %s\n' "$*" >&2; }

dt_as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Install the Debian packages named, if any is missing.
dt_apt() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        dt_log "installing ${missing[*]}"
        dt_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        dt_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

dt_build_deps() {
    dt_apt build-essential postgresql-15 postgresql-server-dev-15 libcurl4-openssl-dev \
        libssl-dev libmicrohttpd-dev libyaml-dev libipc-run-perl curl openssl \
        postgresql-15-cron postgresql-15-plpgsql-check
    # Debian's postgresql-15 starts a cluster of its own; we never use it.
}

# Tools only the tests use: promtool (Debian package prometheus, without its
# recommended exporters), which TAP 015 runs on /metrics.  Not fatal: if it
# cannot be installed, that check is skipped and says why.
dt_test_deps() {
    dpkg-query -W -f='${Status}' prometheus 2>/dev/null | grep -q 'install ok installed' && return 0
    dt_log "installing prometheus (for promtool)"
    dt_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 ||
        { dt_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
          dt_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1; } ||
        dt_log "prometheus could not be installed: TAP 015 skips promtool check metrics"
}

# Build with warnings as errors and install; build the test API server.
dt_build() {
    dt_log "building ductape (-Wall -Wextra -Werror)"
    make -C "$DT_ROOT" -s clean >/dev/null
    make -C "$DT_ROOT" -s >/dev/null
    dt_as_root make -C "$DT_ROOT" -s install >/dev/null
    make -C "$DT_ROOT/test" -s >/dev/null
}

# A non-root OS user for PostgreSQL (it refuses to run as root).
dt_user() {
    if [ "$(id -u)" -ne 0 ]; then
        DT_USER=$(id -un)
        return
    fi
    id "$DT_USER" >/dev/null 2>&1 || useradd -m -s /bin/bash "$DT_USER"
}

# Run a command as the cluster user, keeping the environment we need.
dt_run_as_user() {
    if [ "$(id -u)" -eq 0 ]; then
        su "$DT_USER" -s /bin/bash -c "$(printf '%q ' "$@")"
    else
        "$@"
    fi
}

# A work directory owned by the cluster user with a copy of the tree.
dt_workdir() {
    local dir
    dir=$(mktemp -d /tmp/ductape-XXXXXX)
    cp -a "$DT_ROOT/." "$dir/"
    rm -rf "$dir/.git"
    [ "$(id -u)" -eq 0 ] && chown -R "$DT_USER" "$dir"
    echo "$dir"
}

# dt_api_start WORK NAME [api_server options]: the test API server
# (test/api_server, built by dt_build) on a free loopback port, its pid in
# WORK/NAME.pid and log in WORK/NAME.log; prints the port.
dt_api_start() {
    local work=$1 name=$2
    shift 2
    dt_run_as_user bash -c "'$work/test/api_server' --port 0 --port-file '$work/$name.port' $* </dev/null >'$work/$name.log' 2>&1 & echo \$! >'$work/$name.pid'"
    for _ in $(seq 50); do [ -s "$work/$name.port" ] && { cat "$work/$name.port"; return 0; }; sleep 0.1; done
    echo "test API server ($name) did not start" >&2
    cat "$work/$name.log" >&2
    return 1
}

# dt_post_webhooks URL SECRET FIRST LAST [PAUSE]: Standard Webhooks events
# evt_FIRST..evt_LAST ({"type": "order.created", "data": {"n": N}}), each
# signed at the moment it is sent with SECRET (whsec_...), posted with curl,
# PAUSE seconds apart; prints each answer's HTTP status, one per line.
dt_post_webhooks() {
    local url=$1 secret=$2 first=$3 last=$4 pause=${5:-0} keyhex i ts body sig
    keyhex=$(printf '%s' "${secret#whsec_}" | base64 -d | od -An -tx1 | tr -d ' \n')
    for i in $(seq "$first" "$last"); do
        ts=$(date +%s)
        body="{\"type\": \"order.created\", \"data\": {\"n\": $i}}"
        sig=$(printf '%s' "evt_$i.$ts.$body" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$keyhex" -binary | base64)
        curl -s -o /dev/null -w '%{http_code}\n' -X POST "$url" -H 'Content-Type: application/json' \
            -H "webhook-id: evt_$i" -H "webhook-timestamp: $ts" -H "webhook-signature: v1,$sig" --data "$body"
        [ "$pause" = 0 ] || sleep "$pause"
    done
}

# ---- benchmarks: nginx serving a fixed JSON, and a throwaway cluster ----

# dt_nginx_start WORK PORT: nginx on 127.0.0.1:PORT, /ping and /status.
dt_nginx_start() {
    local work=$1 port=$2
    mkdir -p "$work/nginx"
    cat >"$work/nginx/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx/error.log warn;
daemon on;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    server {
        listen 127.0.0.1:$port backlog=4096;
        location = /ping { default_type application/json; return 200 '{"ok":true,"service":"bench"}'; }
        location = /status { stub_status; }
    }
}
CONF
    chmod -R a+rwX "$work/nginx"
    dt_run_as_user /usr/sbin/nginx -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log"
}

# nginx's own count of requests served
dt_nginx_served() { curl -s "http://127.0.0.1:$1/status" | awk 'NR == 3 {print $3}'; }

# dt_cluster_start WORK PORT [extra postgresql.conf lines]
dt_cluster_start() {
    local work=$1 port=$2 extra=${3:-}
    dt_run_as_user "$DT_PG_BIN/initdb" -D "$work/data" -A trust >/dev/null
    cat >>"$work/data/postgresql.conf" <<CONF
port = $port
unix_socket_directories = '$work'
listen_addresses = ''
shared_preload_libraries = 'ductape'
ductape.allowed_hosts = '127.0.0.1'
$extra
CONF
    dt_run_as_user "$DT_PG_BIN/pg_ctl" -D "$work/data" -l "$work/pg.log" -w start >/dev/null
}

dt_cluster_stop() {
    dt_run_as_user "$DT_PG_BIN/pg_ctl" -D "$1/data" -m immediate stop >/dev/null 2>&1 || true
}

dt_median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
