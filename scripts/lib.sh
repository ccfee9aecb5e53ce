# scripts/lib.sh: set-up shared by scripts/test, scripts/demo and bench/*.
# Sourced, not run.  Everything here is idempotent.

set -euo pipefail

DT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DT_PG_BIN=/usr/lib/postgresql/15/bin
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
        libssl-dev libmicrohttpd-dev libyaml-dev libipc-run-perl curl openssl
    # Debian's postgresql-15 starts a cluster of its own; we never use it.
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
