# Attacks on flow control (src/flow.c), each found by a hostile review of
# the first version and seen succeeding against it; the assertions state
# what must happen (the old outcome in parentheses):
#  A. a reload while a job is in flight (the libcurl handle was rebuilt
#     under it: the job stayed running and its slot taken for good);
#  B. two sessions seeing two definitions of an app alternate (each change
#     refilled the bucket: a usage role got past the rate);
#  C. a request hanging while every slot is taken (the worker put items
#     back every millisecond, at 85% of a core);
#  D. a backlog put back, then cancelled (later jobs waited behind it);
#  E. a waiting session terminated (it stayed counted as waiting);
#  F. a caller's respect_retry_after: false (it shortened the API's pause
#     for everyone);
#  G. rates and bursts that overflowed the arithmetic;
#  H. an admin of another database filling the table (every other
#     database's limited apps failed closed).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use FindBin;
use lib $FindBin::Bin;
use DuctapeTest;
use Time::HiRes qw(usleep time);

my $api = api_url();
my $node = ductape_node('review3');
$node->safe_psql('postgres', q{CREATE EXTENSION ductape; CREATE ROLE u1 LOGIN; SELECT ductape.grant_usage('u1');});

sub define
{
	my ($tag, $limits, @actions) = @_;
	my $acts = join(', ', map {
		my ($t, $r, $k) = @$_;
		"jsonb_build_object('tag', '$t', 'method', 'GET', 'resource', '$r'"
		  . ($k ? ", 'headers', jsonb_build_object('X-Test-Key', '$k')" : '') . ")"
	} @actions);
	$node->safe_psql('postgres', qq{
SELECT ductape.app_define(jsonb_build_object('tag', '$tag', 'limits', '$limits'::jsonb,
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', '$api')),
  'actions', jsonb_build_array($acts)))});
}
sub q1 { return $node->safe_psql('postgres', $_[0]); }
sub count_at_api { return q1("SELECT ductape.http('GET', '$api/count/$_[0]')->'body'->>'count'"); }
sub worker_cpu_ticks
{
	my $pid = q1("SELECT pid FROM pg_stat_activity WHERE backend_type = 'ductape worker' AND datname = 'postgres'");
	open(my $f, '<', "/proc/$pid/stat") or return 0;
	my @s = split / /, scalar <$f>;
	return $s[13] + $s[14];
}

# ---- A. pg_reload_conf() while a job is in flight: the worker's curl multi
# handle is rebuilt (every reload bumps ductape_egress_generation, even with
# nothing changed), the transfer is abandoned: the job stays 'running' and
# its concurrency slot is held for good (http.c DriverEnsure).
define('c5', '{"concurrency": 1}', [ 'slow', '/delay/2000' ], [ 'fast', '/echo/c5' ]);
is(q1("SELECT ductape.run('c5', 'fast')->>'path'"), '/echo/c5', 'A: the app works');
my $slow = q1("SELECT ductape.dispatch('c5', 'slow')");
ok(poll_until($node, 'postgres', "SELECT in_flight FROM ductape.limits WHERE app = 'c5'", '1'), 'A: the slow job is in flight');
q1('SELECT pg_reload_conf()');
usleep(300_000);
my $fast = q1("SELECT ductape.dispatch('c5', 'fast')");
ok(poll_until($node, 'postgres', "SELECT state FROM ductape.jobs WHERE id = $slow", 'succeeded', 10),
	'A: the job in flight during a reload finishes (was: stays running)');
ok(poll_until($node, 'postgres', "SELECT state FROM ductape.jobs WHERE id = $fast", 'succeeded', 5),
	'A: the next job of the app goes (was: deferred for good)');
is(q1("SELECT in_flight FROM ductape.limits WHERE app = 'c5'"), '0', 'A: no slot is leaked (was: 1 for good)');
my ($ret, $out, $err) = $node->psql('postgres', "SELECT ductape.run('c5', 'fast')->>'path'");
is($out, '/echo/c5', 'A: a synchronous call still goes (was: DT004 until the worker restarts)');

# ---- B. A usage role bypasses an app's rate: a REPEATABLE READ session
# opened before the admin changed the limits keeps the old spec; any spec
# that differs from the entry's resets the bucket (flow.c LimitTryAcquire,
# memcmp of the spec), so two sessions alternating get a full bucket each
# time.
define('sp', '{"rate": 1, "per": "1m", "burst": 1, "max_wait_ms": 0}', [ 'ok', '/echo/sp', 'sp-k' ]);
q1("SELECT ductape.http('GET', '$api/reset')");
my ($in1, $o1, $in2, $o2) = ('', '', '', '');
my @psql = ('psql', '-X', '-At', '-v', 'ON_ERROR_ROLLBACK=on', '-d', $node->connstr('postgres') . ' user=u1');
my $s1 = IPC::Run::start([@psql], '<', \$in1, '>', \$o1, '2>', \$o1);
my $s2 = IPC::Run::start([@psql], '<', \$in2, '>', \$o2, '2>', \$o2);
$in1 .= "BEGIN ISOLATION LEVEL REPEATABLE READ;\nSELECT 'go:' || (ductape.run('sp', 'ok')->>'path');\n";
$s1->pump until $o1 =~ /go:/ or !$s1->pumpable;
q1("SELECT ductape.app_define(jsonb_set(ductape.app_export('sp'), '{limits,rate}', '2'))");
for my $i (1 .. 5)
{
	$in1 .= "SELECT 'go:' || (ductape.run('sp', 'ok')->>'path');\n\\echo s1-$i\n";
	$s1->pump until $o1 =~ /s1-$i/ or !$s1->pumpable;
	$in2 .= "SELECT 'go:' || (ductape.run('sp', 'ok')->>'path');\n\\echo s2-$i\n";
	$s2->pump until $o2 =~ /s2-$i/ or !$s2->pumpable;
}
$in1 .= "COMMIT;\n\\q\n";
$in2 .= "\\q\n";
$s1->finish;
$s2->finish;
cmp_ok(count_at_api('sp-k'), '<=', 2,
	'B: at most 2 requests within seconds under 1/min then 2/min, burst 1 (was: 11)');

# ---- C. The worker spins while a concurrency slot is held by a slow
# request: items are put back ~mean_ms/concurrency (1 ms) apart and claimed
# again at once (flow.c LimitDeferUntil, DT_LIMIT_SLOTS).
define('c3', '{"concurrency": 1}', [ 'fast', '/echo/c3' ], [ 'hang', '/hang' ]);
q1("SELECT count(ductape.dispatch('c3', 'fast')) FROM generate_series(1, 20)");
ok(poll_until($node, 'postgres', "SELECT count(*) FROM ductape.jobs WHERE app = 'c3' AND state = 'succeeded'", '20'),
	'C: fast requests teach the limit a small mean duration');
q1(q{SELECT ductape.dispatch('c3', 'hang', options => '{"timeout_ms": 20000, "retries": {"max": 0}}')});
usleep(500_000);
q1("SELECT count(ductape.dispatch('c3', 'fast')) FROM generate_series(1, 50)");
usleep(500_000);
my $w0 = q1("SELECT waited FROM ductape.limits WHERE app = 'c3'");
my $c0 = worker_cpu_ticks();
sleep 5;
my $w1 = q1("SELECT waited FROM ductape.limits WHERE app = 'c3'");
my $c1 = worker_cpu_ticks();
diag("C: in 5 s the worker put items back " . ($w1 - $w0) . " times and used " . ($c1 - $c0) . " CPU ticks (500 = a core)");
cmp_ok($w1 - $w0, '<', 500, 'C: items waiting for a slot are not claimed again every few ms (was: ~2,000 in 5 s)');
cmp_ok($c1 - $c0, '<', 100, 'C: the waiting worker uses under 20% of a core (was: ~85%)');
q1("SELECT count(ductape.cancel(id)) FROM ductape.jobs WHERE app = 'c3' AND state = 'queued'");

# ---- D. A stale horizon: a usage role dispatches a backlog, lets the
# worker put it back, cancels it; later jobs are still spaced after it
# (flow.c LimitDeferUntil: horizon never comes back).
define('h1', '{"rate": 10, "burst": 1}', [ 'ok', '/echo/h1' ]);
$node->safe_psql('postgres', "SELECT count(ductape.dispatch('h1', 'ok')) FROM generate_series(1, 3000)", extra_params => [ '-U', 'u1' ]);
ok(poll_until($node, 'postgres', "SELECT max(next_attempt_at) > now() + interval '4 min' FROM ductape.jobs WHERE app = 'h1'", 't'),
	'D: the backlog is put back up to 5 minutes ahead');
# (cancelled again until none is left: a job being put back at that moment
# is running, and cannot be cancelled then)
ok(poll_until($node, 'postgres',
	"SELECT count(ductape.cancel(id)) = 0 AND NOT EXISTS (SELECT FROM ductape.jobs WHERE app = 'h1' AND state IN ('queued', 'running'))
	   FROM ductape.jobs WHERE app = 'h1' AND state = 'queued'", 't'),
	'D: the backlog is cancelled');
sleep 2;
my $first_new = q1("SELECT max(id) + 1 FROM ductape.jobs");
q1("SELECT count(ductape.dispatch('h1', 'ok')) FROM generate_series(1, 3)");
sleep 2;
is(q1("SELECT count(*) FROM ductape.jobs WHERE app = 'h1' AND id >= $first_new AND state = 'queued'
        AND next_attempt_at > now() + interval '10 s'"),
	'0', 'D: 3 new jobs at 10/s are not deferred by minutes after the backlog was cancelled (was: 2 are, ~290 s)');

# ---- E. pg_terminate_backend of a session waiting for a slot: its
# "waiting" is never taken back (FATAL skips PG_FINALLY in flow.c
# LimitWait); the entry can never be reclaimed.
define('c2', '{"concurrency": 1, "max_wait_ms": 600000}', [ 'fast', '/echo/c2' ], [ 'hang', '/hang' ]);
my ($ho, $wo) = ('', '');
my $holder = IPC::Run::start([ 'psql', '-X', '-d', $node->connstr('postgres'), '-c',
	q{SELECT ductape.run('c2', 'hang', options => '{"timeout_ms": 6000, "retries": {"max": 0}}')} ], '>', \$ho, '2>', \$ho);
ok(poll_until($node, 'postgres', "SELECT in_flight FROM ductape.limits WHERE app = 'c2'", '1'), 'E: a slot is held');
my $waiter = IPC::Run::start([ 'psql', '-X', '-d', $node->connstr('postgres') . ' application_name=waiter', '-c',
	"SELECT ductape.run('c2', 'fast')" ], '>', \$wo, '2>', \$wo);
ok(poll_until($node, 'postgres', "SELECT waiting FROM ductape.limits WHERE app = 'c2'", '1'), 'E: a call waits for it');
q1("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'waiter'");
$waiter->finish;
$holder->finish;
ok(poll_until($node, 'postgres', "SELECT in_flight || ' ' || waiting FROM ductape.limits WHERE app = 'c2'", '0 0', 5),
	'E: nothing held or waiting afterwards (was: waiting stays 1)');

# ---- F. A call option turns the API's Retry-After: 600 into a 1 s pause
# for everyone (http.c Execute, queue.c: respect_retry_after gates the
# pause given to LimitRelease).
$node->safe_psql('postgres', qq{
SELECT ductape.app_define(jsonb_build_object('tag', 'p1',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', '$api')),
  'actions', jsonb_build_array(jsonb_build_object('tag', 't', 'method', 'GET', 'resource', '/status/429',
                                                  'query', jsonb_build_object('retry_after', '600')))))});
$node->safe_psql('postgres',
	q{SELECT ductape.run_response('p1', 't', options => '{"retries": {"max": 0, "respect_retry_after": false}}')},
	extra_params => [ '-U', 'u1' ]);
is(q1("SELECT paused_until > now() + interval '5 min' FROM ductape.limits WHERE app = 'p1'"), 't',
	'F: the app is paused as the API asked, whatever the caller\'s options (was: 1 s)');

# ---- G. Rates that overflowed the arithmetic are refused; the largest
# burst at the slowest rate works.
($ret, $out, $err) = $node->psql('postgres', q{SELECT ductape.app_define('{"tag": "ov1", "limits": {"rate": 0.000000001, "per": "24h"},
  "envs": [{"slug": "dev", "base_url": "http://127.0.0.1"}]}')});
like($err, qr{/limits/rate: must allow at least one request a day}, 'G: a rate below one a day is refused');
define('ov2', '{"rate": 1, "per": "24h", "burst": 1000000}', [ 'ok', '/echo/ov2' ]);
($ret, $out, $err) = $node->psql('postgres', "SELECT ductape.run('ov2', 'ok')->>'path'");
is($out, '/echo/ov2', 'G: a full bucket of 1,000,000 at one a day lets the first request go');
is(q1("SELECT tokens > 999998 FROM ductape.limits WHERE app = 'ov2'"), 't', 'G: and shows the tokens left');

# ---- H. An admin of another database tries to fill the cluster's table
# of limits, sending nothing: 8,300 envs limited to one a day, each called
# once to a host the egress policy refuses (the refused request still takes
# its token, so each entry stays busy a day).  A database holds at most its
# share of the table: the apps of other databases keep going.
define('victim_old', '{"rate": 100}', [ 'ok', '/echo/v' ]);
define('victim_new', '{"rate": 100}', [ 'ok', '/echo/v' ]);
is(q1("SELECT ductape.run('victim_old', 'ok')->>'path'"), '/echo/v', 'H: the victim app works');
q1('CREATE ROLE mallory LOGIN');
q1('CREATE DATABASE attacker');
$node->safe_psql('attacker', "CREATE EXTENSION ductape; SELECT ductape.grant_admin('mallory')");
$node->safe_psql('attacker', q{
SELECT count(ductape.app_define(jsonb_build_object('tag', 'm' || a, 'limits', '{"rate": 1, "per": "24h"}'::jsonb,
  'envs', (SELECT jsonb_agg(jsonb_build_object('slug', 'e' || e, 'base_url', 'http://10.1.2.3')) FROM generate_series(1, 100) e),
  'actions', '[{"tag": "a", "method": "GET", "resource": "/x"}]'::jsonb)))
  FROM generate_series(1, 83) a;
DO $$ BEGIN
  FOR a IN 1..83 LOOP FOR e IN 1..100 LOOP
    BEGIN PERFORM ductape.run('m' || a, 'a', '{}', 'e' || e); EXCEPTION WHEN OTHERS THEN NULL; END;
  END LOOP; END LOOP;
END $$;}, extra_params => [ '-U', 'mallory' ]);
($ret, $out, $err) = $node->psql('postgres', "SELECT ductape.run('victim_old', 'ok')->>'path'");
is($out, '/echo/v', 'H: an app of another database with an entry still goes');
($ret, $out, $err) = $node->psql('postgres', "SELECT ductape.run('victim_new', 'ok')->>'path'");
is($out, '/echo/v', 'H: a new app of another database goes');

is($node->safe_psql('attacker', "SELECT count(*) FROM ductape.limits"), '2048', 'H: the attacker holds its share, 2,048 entries');

$node->stop('immediate');
done_testing();
