# /metrics and ductape.health(): the listener serves the Prometheus text on
# ductape.metrics_listen (off by default), valid for promtool; the counters
# move when jobs, deliveries and webhook events are decided; the gauges
# follow the queues; 404 and 405; a database name that needs escaping;
# health()'s shape, its values, who may call it, and a worker stopped and
# started again; the gauges' queries read no finished rows (EXPLAIN); the
# text is made at most once a second and shared by concurrent scrapes; a
# renamed database never shows twice.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use DuctapeTest;
use Digest::SHA qw(hmac_sha256);
use MIME::Base64 qw(encode_base64);
use File::Temp qw(tempfile);
use Time::HiRes qw(time usleep);

my $api = api_url();
my $have_promtool = system('promtool --version >/dev/null 2>&1') == 0;

# ---- off by default ----

my $plain = ductape_node('metrics_default');
is($plain->safe_psql('postgres', "SELECT current_setting('ductape.metrics_listen')"), '',
	'ductape.metrics_listen is empty by default');
is($plain->safe_psql('postgres',
	"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ductape webhook listener'"),
	'0', 'and with neither listen setting no listener runs');
$plain->stop;

# ---- metrics alone: the listener runs for them, serving no webhooks ----

my $mport_only = PostgreSQL::Test::Cluster::get_free_port();
my $only = ductape_node('metrics_only', "ductape.metrics_listen = '127.0.0.1:$mport_only'\n");
$only->safe_psql('postgres', 'CREATE EXTENSION ductape');
ok(poll_until($only, 'postgres',
	"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ductape webhook listener'", '1'),
	'metrics_listen alone starts the listener');
my $text = '';
for (1 .. 50)
{
	$text = `curl -s http://127.0.0.1:$mport_only/metrics`;
	last if $text =~ /^ductape_listener_up 0$/m;
	usleep(100_000);
}
like($text, qr/^ductape_listener_up 0$/m, 'which says it serves no webhooks');
is($only->safe_psql('postgres', "SELECT ductape.health()->'listener'"),
	'{"metrics": "up", "webhooks": "off"}', 'health() says the same');
$only->stop;

# ---- the main node: webhooks and metrics ----

my $wport = PostgreSQL::Test::Cluster::get_free_port();
my $mport = PostgreSQL::Test::Cluster::get_free_port();
my $node = ductape_node('metrics', qq{
ductape.webhook_listen = '127.0.0.1:$wport'
ductape.metrics_listen = '127.0.0.1:$mport'
});
sub poll { return poll_until($node, 'postgres', @_); }

# The body of GET /metrics (or another method and path): (status, body).
sub http
{
	my ($method, $path) = @_;
	my $how = $method eq 'HEAD' ? '-I' : "-X $method";
	my $out = `curl -s $how -w '\\n%{http_code}' http://127.0.0.1:$mport$path`;
	my ($body, $code) = $out =~ /\A(.*)\n(\d+)\z/s;
	return ($code // 0, $body // '');
}

sub scrape { my ($code, $body) = http('GET', '/metrics'); return $body; }

# A series' value in $text: name and labels as written ({...} part exact).
sub value
{
	my ($text, $series) = @_;
	return $text =~ /^\Q$series\E (\S+)$/m ? $1 : undef;
}

# Poll the scrape until $series has value $want (within $secs, default 30).
sub poll_metric
{
	my ($series, $want, $secs) = @_;
	my $deadline = time + ($secs // 30);
	my $got;
	while (time < $deadline)
	{
		$got = value(scrape(), $series);
		return 1 if defined $got && $got eq $want;
		usleep(200_000);
	}
	diag("$series: last value " . ($got // 'none') . ", wanted $want");
	return 0;
}

sub promtool_ok
{
	my ($text, $name) = @_;
	SKIP:
	{
		skip('promtool is not installed (Debian package prometheus; scripts/lib.sh installs it)', 1)
		  unless $have_promtool;
		my ($fh, $file) = tempfile();
		print $fh $text;
		close $fh;
		my $out = `promtool check metrics < $file 2>&1`;
		is($? >> 8, 0, "$name: promtool check metrics passes") or diag($out);
	}
}

$node->safe_psql('postgres', qq{
CREATE EXTENSION ductape;
SELECT ductape.app_define('{"tag": "m", "envs": [{"slug": "dev", "base_url": "$api"}],
  "retries": {"max": 1, "initial_delay_ms": 50, "max_delay_ms": 50},
  "actions": [{"tag": "ok", "method": "POST", "resource": "/echo/metrics"},
              {"tag": "bad", "method": "POST", "resource": "/status/400"},
              {"tag": "flaky", "method": "GET", "resource": "/status/503"}]}');
});
ok(poll_metric('ductape_worker_up{database="postgres"}', '1'), 'the worker shows up');
my ($code, $body) = http('GET', '/metrics');
is($code, '200', 'GET /metrics answers 200');
like($body, qr/^# TYPE ductape_jobs_finished_total counter$/m, 'with HELP and TYPE lines');
like($body, qr/^ductape_listener_up 1$/m, 'the listener serves webhooks');
like($body, qr/^ductape_master_key_readable 1$/m, 'the master key file is readable');
unlike($body, qr{127\.0\.0\.1:\d+/}, 'no URL appears in the text');
my $ctype = `curl -s -o /dev/null -w '%{content_type}' http://127.0.0.1:$mport/metrics`;
is($ctype, 'text/plain; version=0.0.4; charset=utf-8', 'in the text format 0.0.4');
promtool_ok($body, 'at start');

($code) = http('GET', '/metric');
is($code, '404', 'another path is 404');
($code) = http('GET', '/metrics/x');
is($code, '404', 'and so is a longer one');
($code) = http('POST', '/metrics');
is($code, '405', 'another method is 405');
my $allow = `curl -s -o /dev/null -D - -X DELETE http://127.0.0.1:$mport/metrics`;
like($allow, qr/^Allow: GET, HEAD\r?$/mi, 'naming the methods allowed');
($code) = http('HEAD', '/metrics');
is($code, '200', 'HEAD /metrics is 200');
my $wh = `curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$wport/metrics`;
is($wh, '405', 'the webhook port does not serve metrics');

# ---- counters move where outcomes are decided ----

$node->safe_psql('postgres', q{
SELECT ductape.dispatch('m', 'ok') FROM generate_series(1, 3);
SELECT ductape.dispatch('m', 'bad');
SELECT ductape.dispatch('m', 'flaky');
SELECT ductape.cancel(ductape.dispatch('m', 'ok', run_at => now() + interval '1 hour'));
});
ok(poll_metric('ductape_jobs_finished_total{database="postgres",outcome="succeeded"}', '3'),
	'jobs succeeded: 3');
ok(poll_metric('ductape_jobs_finished_total{database="postgres",outcome="failed"}', '2'),
	'jobs failed: 2 (a 400, and a 503 after its retry)');
is(value(scrape(), 'ductape_job_retries_total{database="postgres"}'), '1', 'jobs retried: 1');
is(value(scrape(), 'ductape_jobs_finished_total{database="postgres",outcome="cancelled"}'), '1',
	'jobs cancelled: 1');
# calls per app, action and env, from the request counters (summed over roles)
my $calls = scrape();
is(value($calls, 'ductape_calls_total{database="postgres",app="m",action="ok",env="dev",outcome="ok"}'), '3',
	'ductape_calls_total counts the calls that succeeded');
is(value($calls, 'ductape_calls_total{database="postgres",app="m",action="bad",env="dev",outcome="http_4xx"}'), '1',
	'and those answered 4xx');
is(value($calls, 'ductape_call_duration_seconds_count{database="postgres",app="m",action="ok",env="dev"}'), '3',
	'the histogram counts them');
is(value($calls, 'ductape_call_duration_seconds_bucket{database="postgres",app="m",action="ok",env="dev",le="+Inf"}'), '3',
	'its +Inf bucket holds them all');
like($calls, qr/^ductape_call_duration_seconds_bucket\{database="postgres",app="m",action="ok",env="dev",le="0.0005"\} \d+$/m,
	'with buckets in seconds');
# flow control per app and env (flow.c)
is(value($calls, 'ductape_limit_in_flight{database="postgres",app="m",env="dev"}'), '0',
	'ductape_limit_in_flight: nothing under way');
is(value($calls, 'ductape_limit_paused{database="postgres",app="m",env="dev"}'), '0', 'ductape_limit_paused: 0');
$node->safe_psql('postgres', qq{
SELECT ductape.app_define(jsonb_build_object('tag', 'mlim',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', '$api')),
  'actions', jsonb_build_array(jsonb_build_object('tag', 'busy', 'method', 'GET', 'resource', '/status/429',
                                                  'retries', jsonb_build_object('max', 0)))));
SELECT ductape.run_response('mlim', 'busy', '{"retry_after": 60}');
});
my ($lret, $lout, $lerr) = $node->psql('postgres', "SELECT ductape.run('mlim', 'busy')");
like($lerr, qr/rate limit of app "mlim" env "dev" reached/, 'a call during the pause is refused (DT004)');
# (the text is made at most once a second)
ok(poll_metric('ductape_limit_paused{database="postgres",app="mlim",env="dev"}', '1'),
	'ductape_limit_paused: 1 while the API asked for a pause');
my $lim = scrape();
is(value($lim, 'ductape_limit_rejected_total{database="postgres",app="mlim",env="dev"}'), '1',
	'ductape_limit_rejected_total counts the refused call');
is(value($lim, 'ductape_limit_waited_total{database="postgres",app="mlim",env="dev"}'), '0',
	'ductape_limit_waited_total: it did not wait (the pause was too long)');
promtool_ok($lim, 'with limits');
$node->safe_psql('postgres', q{
BEGIN;
SELECT ductape.cancel(ductape.dispatch('m', 'ok', run_at => now() + interval '1 hour'));
ROLLBACK;
});
is(value(scrape(), 'ductape_jobs_finished_total{database="postgres",outcome="cancelled"}'), '1',
	'a cancel rolled back does not count');

# gauges: a scheduled job, within the worker's publishing period
$node->safe_psql('postgres', "SELECT ductape.dispatch('m', 'ok', run_at => now() + interval '1 hour')");
ok(poll_metric('ductape_jobs{database="postgres",state="scheduled"}', '1', 20),
	'the scheduled job shows in ductape_jobs');
is(value(scrape(), 'ductape_jobs{database="postgres",state="queued"}'), '0', 'none queued');

# deliveries: one succeeds, one fails for good (410 disables its endpoint)
$node->safe_psql('postgres', qq{
SELECT ductape.endpoint_create('$api/status/200', '{ok.*}');
SELECT ductape.endpoint_create('$api/status/410', '{gone.*}');
SELECT ductape.publish('ok.event', '{}');
SELECT ductape.publish('gone.event', '{}');
});
ok(poll_metric('ductape_deliveries_total{database="postgres",outcome="succeeded"}', '1'),
	'deliveries succeeded: 1');
ok(poll_metric('ductape_deliveries_total{database="postgres",outcome="failed"}', '1'),
	'deliveries failed: 1 (410)');
ok(poll_metric('ductape_endpoints_disabled{database="postgres"}', '1', 20),
	'the disabled endpoint shows in ductape_endpoints_disabled');

# webhook events: stored, repeated, refused, handled
my $key = 'ductape metrics test key';
my $secret = 'whsec_' . encode_base64($key, '');
$node->safe_psql('postgres', qq{
SELECT ductape.secret_set('METRICS_HOOK', '$secret');
SELECT ductape.app_define('{"tag": "hk", "envs": [{"slug": "dev", "base_url": "http://127.0.0.1:1"}],
  "webhooks": [{"tag": "std", "verify": {"scheme": "standard", "secret": "\$Secret{METRICS_HOOK}"},
                "id": "\$Header{webhook-id}", "type": "\$Event{type}"}]}');
CREATE FUNCTION public.on_evt(event jsonb) RETURNS void LANGUAGE sql AS 'SELECT';
SELECT ductape.webhook_subscribe('hk', 'std', '*', 'public.on_evt(jsonb)');
});
my $url = $node->safe_psql('postgres', "SELECT ductape.webhook_url('hk', 'std')");

sub post_event
{
	my ($id, $good) = @_;
	my $body = qq({"type": "order.created", "id": "$id"});
	my $ts = int(CORE::time());
	my $sig = encode_base64(hmac_sha256("$id.$ts.$body", $good ? $key : 'wrong'), '');
	return `curl -s -o /dev/null -w '%{http_code}' -X POST '$url' -H 'Content-Type: application/json' -H 'webhook-id: $id' -H 'webhook-timestamp: $ts' -H 'webhook-signature: v1,$sig' --data '$body'`;
}
is(post_event('evt_1', 1), '200', 'a signed event is stored');
is(post_event('evt_1', 1), '200', 'and its repeat answered 200');
is(post_event('evt_2', 0), '401', 'a badly signed one is refused');
ok(poll_metric('ductape_webhook_events_total{database="postgres",outcome="received"}', '1'),
	'webhook events received: 1');
is(value(scrape(), 'ductape_webhook_events_total{database="postgres",outcome="duplicate"}'), '1',
	'duplicate: 1');
is(value(scrape(), 'ductape_webhook_events_total{database="postgres",outcome="rejected"}'), '2',
	'rejected: 2 (the bad signature, and GET /metrics on the webhook port)');
ok(poll_metric('ductape_webhook_events_total{database="postgres",outcome="handled"}', '1'),
	'handled: 1');
promtool_ok(scrape(), 'after work');

# ---- a database name that needs escaping ----

my $odd = qq{odd "db" \\ name\nline2 \xc3\xa9t\xc3\xa9};
(my $odd_sql = $odd) =~ s/"/""/g;
$node->safe_psql('postgres', qq{CREATE DATABASE "$odd_sql"});
$node->safe_psql($odd, 'CREATE EXTENSION ductape');
my $escaped = q{odd \"db\" \\\\ name\nline2 } . "\xc3\xa9t\xc3\xa9";
my $series = qq{ductape_worker_up{database="$escaped"}};
ok(poll_metric($series, '1', 30), 'a database named with quotes, a backslash, a line feed and UTF-8 is escaped');
promtool_ok(scrape(), 'with the odd name');

# ---- health() ----

my $h = $node->safe_psql('postgres', q{
SELECT string_agg(k, ',' ORDER BY k) FROM jsonb_object_keys(ductape.health()) k});
is($h, 'call_records_dropped,database,deliveries_waiting,endpoints_disabled,jobs,listener,master_key,ok,problems,webhook_events_waiting,worker,workers',
	'health() has its keys');
is($node->safe_psql('postgres', q{
SELECT h->>'ok', h->'problems', h->>'database', h->'worker'->>'up', h->'workers'->>'postgres',
       h->'listener', h->'jobs'->>'scheduled', h->>'endpoints_disabled', h->'master_key'
  FROM ductape.health() h}),
	'true|[]|postgres|true|true|{"metrics": "up", "webhooks": "up"}|1|1|{"problem": null, "readable": true}',
	'health() says all is well, with the queue as it is');
is($node->safe_psql('postgres', q{
SELECT ductape.health()->'workers'->>datname FROM pg_database WHERE datname LIKE 'odd%'}),
	'true', 'and lists the other database by its name');

# who may call it
$node->safe_psql('postgres', q{
CREATE ROLE m_app LOGIN; SELECT ductape.grant_usage('m_app');
CREATE ROLE m_admin LOGIN; SELECT ductape.grant_admin('m_admin');
});
my ($ret, $out, $err) = $node->psql('postgres', 'SELECT ductape.health()',
	extra_params => [ '-U', 'm_app', '-v', 'VERBOSITY=verbose' ]);
like($err, qr/42501: permission denied for function health/, 'a usage role may not call health() (42501)');
($ret, $out) = $node->psql('postgres', q{SELECT ductape.health()->>'ok'}, extra_params => [ '-U', 'm_admin' ]);
is($out, 'true', 'an administrator may');

# the master key file unreadable (mode) makes it not ok, and says why
my $keyfile = $node->data_dir . '/ductape_master.key';
chmod 0644, $keyfile;
is($node->safe_psql('postgres', q{
SELECT h->>'ok', h->'master_key'->>'readable', h->'master_key'->>'problem', h->'problems'->>0
  FROM ductape.health() h}),
	'false|false|The file is accessible to other users; it must be mode 0600 or 0640.|the master key file cannot be read: The file is accessible to other users; it must be mode 0600 or 0640.',
	'a master key file readable by others: not ok, and why');
ok(poll_metric('ductape_master_key_readable', '0', 5), '/metrics says it too (within its second)');
chmod 0600, $keyfile;
is($node->safe_psql('postgres', q{SELECT ductape.health()->>'ok'}), 'true', 'ok again once fixed');

# a worker stopped: down until something wakes it
my $pid = $node->safe_psql('postgres', q{SELECT ductape.health()->'worker'->>'pid'});
is($node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)"), 't', 'the worker is terminated');
ok(poll(q{SELECT h->>'ok' || ' ' || (h->'worker'->>'up') || ' ' || (h->'problems'->>0) FROM ductape.health() h},
	'false false this database has no ductape worker', 10), 'health() says the worker is down');
ok(poll_metric('ductape_worker_up{database="postgres"}', '0', 10), 'ductape_worker_up is 0');
$node->safe_psql('postgres', "SELECT ductape.dispatch('m', 'ok')");
ok(poll(q{SELECT (ductape.health()->'worker'->>'up')}, 'true', 30), 'a dispatch starts it again: up');
ok(poll_metric('ductape_worker_up{database="postgres"}', '1', 10), 'ductape_worker_up is 1 again');

# ---- one text per second, shared by the scrapes in it ----

# A cancel is counted at once (in the backend, at commit).  Within the
# second after a scrape, another scrape is the same text, so it does not
# see a cancel made meanwhile; after it, it does.  Tried until the three
# steps fit well inside the second (a loaded machine may be slow).
sub cancelled { return value(scrape(), 'ductape_jobs_finished_total{database="postgres",outcome="cancelled"}'); }
my ($c0, $c1, $fit);
for (1 .. 10)
{
	my $t0 = time;
	$c0 = cancelled();
	$node->safe_psql('postgres', "SELECT ductape.cancel(ductape.dispatch('m', 'ok', run_at => now() + interval '1 hour'))");
	$c1 = cancelled();
	if (time - $t0 < 0.8) { $fit = 1; last; }
	usleep(1_100_000);
}
SKIP:
{
	skip('the machine is too slow to scrape twice within 0.8 s', 1) unless $fit;
	is($c1, $c0, 'a scrape within the second of the previous one is the same text (the cancel is not in it yet)');
}
usleep(1_100_000);
is(cancelled(), $c0 + 1, 'a second later the text is made again: the cancel shows');

# 8 scrapes at once (the per-address limit), each 0.1 s apart, while
# cancels commit one after another: the texts they get are the few made
# each second, not one per scrape.
my $dir = PostgreSQL::Test::Utils::tempdir();
my $connstr = $node->connstr('postgres');
system(qq{(for i in \$(seq 600); do echo "SELECT ductape.cancel(ductape.dispatch('m', 'ok', run_at => now() + interval '1 hour'));"; done) | psql -X -q '$connstr' >/dev/null 2>&1 &});
my $t0 = time;
my $curls = join(' ', map { "(sleep 0.$_; curl -s -o $dir/s$_ http://127.0.0.1:$mport/metrics) &" } (0 .. 7));
for my $round (0 .. 2)
{
	system("$curls wait");
	rename("$dir/s$_", "$dir/r${round}_$_") for (0 .. 7);
}
my $elapsed = time - $t0;
my %bodies;
for my $f (glob("$dir/r*"))
{
	open(my $fh, '<', $f) or die "$f: $!";
	local $/;
	my $b = <$fh>;
	$bodies{$b}++;
}
my $distinct = scalar(keys %bodies);
my $most = int($elapsed) + 3;    # a text a second, and the ones either side of the window
ok($distinct <= $most && $distinct >= 1,
	"24 scrapes over ${\ sprintf('%.1f', $elapsed)} s while cancels commit got $distinct distinct texts (at most $most)");
my @counts = sort { $a <=> $b } map { value($_, 'ductape_jobs_finished_total{database="postgres",outcome="cancelled"}') // 0 } keys %bodies;
cmp_ok($counts[-1], '>', $counts[0], 'and the cancel counter moved from one text to the next');
poll("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'psql' AND datname = 'postgres' AND pid <> pg_backend_pid()", '0', 60);

# ---- a renamed database never shows twice ----

# A database's slot keeps its oid; a worker that publishes writes the name
# it has now, and takes that name from any other slot (a database renamed
# while its processes were gone).
$node->safe_psql('postgres', 'CREATE DATABASE r1');
$node->safe_psql('r1', qq{CREATE EXTENSION ductape;
SELECT ductape.app_define('{"tag": "m", "envs": [{"slug": "dev", "base_url": "$api"}],
  "actions": [{"tag": "ok", "method": "POST", "resource": "/echo/metrics"}]}')});
ok(poll_metric('ductape_worker_up{database="r1"}', '1', 30), 'database r1 has its worker');
my $r1pid = $node->safe_psql('r1', q{SELECT ductape.health()->'worker'->>'pid'});
$node->safe_psql('postgres', "SELECT pg_terminate_backend($r1pid)");
ok(poll("SELECT count(*) FROM pg_stat_activity WHERE datname = 'r1'", '0', 30), 'nothing is connected to r1');
$node->safe_psql('postgres', 'ALTER DATABASE r1 RENAME TO r2; CREATE DATABASE r1');
$node->safe_psql('r1', 'CREATE EXTENSION ductape');
ok(poll_metric('ductape_worker_up{database="r1"}', '1', 30), 'the new r1 has its worker');
my @r1 = scrape() =~ /^ductape_worker_up\{database="r1"\} .*$/mg;
is(scalar(@r1), 1, 'and r1 is one series, not two (the renamed database lost its old name)');
$node->safe_psql('r2', "SELECT ductape.dispatch('m', 'ok')");
ok(poll_metric('ductape_worker_up{database="r2"}', '1', 30), 'once r2\'s worker publishes, it shows as r2');
my $t = scrape();
@r1 = $t =~ /^ductape_worker_up\{database="r1"\} .*$/mg;
my @r2 = $t =~ /^ductape_worker_up\{database="r2"\} .*$/mg;
is(scalar(@r1) . ' ' . scalar(@r2), '1 1', 'r1 and r2 once each');
ok(poll_metric('ductape_jobs_finished_total{database="r2",outcome="succeeded"}', '1', 30),
	'and counts its jobs under its new name');

# ---- the gauges read no finished rows ----

$node->safe_psql('postgres', q{
INSERT INTO ductape.jobs (app, action, input, env, product, state, role, finished_at)
SELECT 'm', 'ok', '{}', 'dev', 'default', 'succeeded', 'postgres', now() FROM generate_series(1, 20000);
INSERT INTO ductape.outbox (message_id, endpoint_id, state, role, finished_at)
SELECT 'msg_old_' || i, 1, 'succeeded', 'postgres', now() FROM generate_series(1, 20000) i;
INSERT INTO ductape.webhook_events (app, webhook, env, product, headers, state, role)
SELECT 'hk', 'std', 'dev', 'default', '{}', 'handled', 'postgres' FROM generate_series(1, 20000);
ANALYZE ductape.jobs; ANALYZE ductape.outbox; ANALYZE ductape.webhook_events;
});
my $plan = $node->safe_psql('postgres', q{
EXPLAIN SELECT
 (SELECT count(*) FROM ductape.jobs WHERE state = 'scheduled'),
 (SELECT count(*) FROM ductape.jobs WHERE state = 'queued'),
 (SELECT count(*) FROM ductape.jobs WHERE state = 'running'),
 (SELECT min(next_attempt_at) FROM ductape.jobs WHERE state = ANY ('{queued,scheduled}') AND next_attempt_at <= now()),
 (SELECT count(*) FROM ductape.outbox WHERE state = 'pending'),
 (SELECT count(*) FROM ductape.webhook_events WHERE state = 'received' AND next_attempt_at < 'infinity')});
unlike($plan, qr/Seq Scan on (jobs|outbox|webhook_events)/, 'the gauges\' queries scan no queue table') or diag($plan);
like($plan, qr/jobs_running_idx/, 'running jobs are counted from jobs_running_idx');

$node->stop;
done_testing();
