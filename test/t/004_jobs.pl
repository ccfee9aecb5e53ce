# Background jobs: a worker per database with the extension, wake on commit,
# and crash safety (kill -9 of the worker, immediate shutdown) with
# thousands of jobs in flight.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use DuctapeTest;
use Time::HiRes qw(time usleep);

my $api = api_url();

my $node = ductape_node('jobs', qq{
max_worker_processes = 16
restart_after_crash = on
});

# poll($db, $sql, $want, $secs): see DuctapeTest::poll_until
sub poll { return poll_until($node, @_); }

my $workers_in = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ductape worker' AND datname = '%s'";

# A worker starts within seconds of CREATE EXTENSION, in every database.
$node->safe_psql('postgres', 'CREATE EXTENSION ductape');
$node->safe_psql('postgres', 'CREATE DATABASE two');
$node->safe_psql('two', 'CREATE EXTENSION ductape');
my $t0 = time;
ok(poll('postgres', sprintf($workers_in, 'postgres'), '1', 10), 'a worker runs for database postgres');
ok(poll('postgres', sprintf($workers_in, 'two'), '1', 10), 'and for database two');
cmp_ok(time - $t0, '<', 5, 'within seconds of CREATE EXTENSION');

# Jobs in each database run in that database.
for my $db ('postgres', 'two')
{
	$node->safe_psql($db, qq{
SELECT ductape.app_define('{"tag": "q", "envs": [{"slug": "dev", "base_url": "$api"}],
  "retries": {"initial_delay_ms": 50, "max_delay_ms": 500},
  "actions": [{"tag": "echo", "method": "POST", "resource": "/echo/q"},
              {"tag": "slow", "method": "POST", "resource": "/delay/:ms"}]}')});
}
my $two_id = $node->safe_psql('two', "SELECT ductape.dispatch('q', 'echo', '{\"db\": \"two\"}')");
is($node->safe_psql('two', "SELECT ductape.wait($two_id, '10 s')->>'state'"),
	'succeeded', 'a job in the second database ran');

# DROP EXTENSION stops that database's worker.
$node->safe_psql('two', 'DROP EXTENSION ductape');
ok(poll('postgres', sprintf($workers_in, 'two'), '0', 10), 'DROP EXTENSION stops the worker');

# Idle worker: commit-to-start latency, 20 jobs one at a time.
$node->safe_psql('postgres', 'SELECT pg_sleep(0.2)');
for my $i (1 .. 20)
{
	$node->safe_psql('postgres', "SELECT ductape.dispatch('q', 'echo', '{\"n\": $i}')");
	usleep(50_000);
}
ok(poll('postgres', "SELECT count(*) >= 20 FROM ductape.calls c JOIN ductape.jobs j ON j.id = c.job_id WHERE j.input ? 'n'", 't', 10), 'latency jobs recorded');
my $lat = $node->safe_psql('postgres', q{
SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1) || ' ' ||
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1)
  FROM (SELECT extract(epoch FROM c.at - j.created_at) * 1000 AS ms
          FROM ductape.jobs j JOIN ductape.calls c ON c.job_id = j.id
         WHERE j.input ? 'n') s});
my ($p50, $p99) = split / /, $lat;
diag("commit-to-start latency, idle worker: p50 $p50 ms, p99 $p99 ms");
# (the contract is 50 ms; a wide bound here, the figure is printed above)
cmp_ok($p50, '<', 500, "an idle worker starts a committed job at once, not by polling (p50 $p50 ms)");

# Crash safety.  Each job carries its own test key, so the server counts
# how often each was sent.
sub burst
{
	my ($tag, $n) = @_;
	$node->safe_psql('postgres', qq{
SELECT count(ductape.dispatch('q', 'slow', jsonb_build_object('ms', 200, 'k', i,
                              'headers:X-Test-Key', '$tag-' || i)))
  FROM generate_series(1, $n) i});
}

sub check_after_crash
{
	my ($tag, $n, $what) = @_;
	ok(poll('postgres', "SELECT count(*) FROM ductape.jobs WHERE input->>'headers:X-Test-Key' LIKE '$tag-%' AND state = 'succeeded'",
			"$n", 120), "$what: every job ended succeeded");
	is($node->safe_psql('postgres',
			"SELECT count(*) FROM ductape.jobs WHERE input->>'headers:X-Test-Key' LIKE '$tag-%' AND state <> 'succeeded'"),
		'0', "$what: none lost or stuck in running");
	my $counts = $node->safe_psql('postgres', qq{
SELECT count(*) FILTER (WHERE c = 0) || ' ' || count(*) FILTER (WHERE c > 1) || ' ' || coalesce(max(c), 0)
  FROM (SELECT (ductape.http('GET', '$api/count/$tag-' || i)->'body'->>'count')::int AS c
          FROM generate_series(1, $n) i) s});
	my ($never, $repeated, $max) = split / /, $counts;
	is($never, '0', "$what: the server saw every job");
	cmp_ok($repeated, '<=', 256, "$what: repeats ($repeated) only for requests in flight at the crash (at most 256)");
	is($node->safe_psql('postgres', qq{
SELECT count(*) FROM ductape.jobs
 WHERE input->>'headers:X-Test-Key' LIKE '$tag-%'
   AND response->'body'->'headers'->>'idempotency-key' IS DISTINCT FROM 'ductape-job-' || id}),
		'0', "$what: every job's requests carried its idempotency key");
	diag("$what: $repeated of $n jobs were sent twice (max $max times)");
}

# 1. kill -9 the worker mid-batch.
burst('kill', 3000);
ok(poll('postgres', "SELECT count(*) > 300 FROM ductape.jobs WHERE state = 'succeeded' AND input->>'headers:X-Test-Key' LIKE 'kill-%'", 't', 30),
	'the burst is under way');
my $left = $node->safe_psql('postgres', "SELECT count(*) FROM ductape.jobs WHERE state <> 'succeeded' AND input->>'headers:X-Test-Key' LIKE 'kill-%'");
cmp_ok($left, '>', 500, "jobs still to do at the kill: $left");
ok(kill_worker($node), 'the server recovered from the kill');
check_after_crash('kill', 3000, 'after kill -9 of the worker');

# 2. immediate shutdown and restart with a burst in flight.
burst('stop', 3000);
ok(poll('postgres', "SELECT count(*) > 300 FROM ductape.jobs WHERE state = 'succeeded' AND input->>'headers:X-Test-Key' LIKE 'stop-%'", 't', 30),
	'the second burst is under way');
$node->stop('immediate');
$node->start;
check_after_crash('stop', 3000, 'after an immediate shutdown');

$node->stop;
done_testing();
