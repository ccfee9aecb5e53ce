# Workflows survive crashes: kill -9 of the worker, then an immediate
# shutdown, each with runs mid-way (steps in flight, steps asleep).  Every run
# completes; a completed step is never sent again (the test server's counts:
# repeats only for requests in flight at the crash); sleeping steps wake at
# their time, not before.
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

my $node = ductape_node('workflows', qq{
restart_after_crash = on
});

# poll($sql, $want, $secs) in database postgres: see DuctapeTest::poll_until
sub poll { return poll_until($node, 'postgres', @_); }

sub sent
{
	my ($key) = @_;
	return $node->safe_psql('postgres', "SELECT (ductape.http('GET', '$api/count/$key')->'body'->>'count')::int");
}

$node->safe_psql('postgres', 'CREATE EXTENSION ductape');

sub round
{
	my ($tag, $crash) = @_;
	my $n = 60;
	my ($a0, $b0) = (sent("wf-$tag-a") // 0, sent("wf-$tag-b") // 0);
	$node->safe_psql('postgres', qq{
SELECT ductape.app_define(jsonb_build_object('tag', 'w-$tag',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', '$api')),
  'actions', '[{"tag": "a", "method": "POST", "resource": "/delay/:ms", "headers": {"X-Test-Key": "wf-$tag-a"}},
               {"tag": "b", "method": "POST", "resource": "/delay/100", "headers": {"X-Test-Key": "wf-$tag-b"}}]'::jsonb));
SELECT ductape.workflow_define('{"tag": "flow-$tag", "steps": [
  {"tag": "a", "type": "action", "app": "w-$tag", "action": "a", "input": {"ms": "\$Input{ms}"}},
  {"tag": "nap", "type": "sleep", "seconds": 3, "depends_on": ["a"]},
  {"tag": "b", "type": "action", "app": "w-$tag", "action": "b", "depends_on": ["nap"]},
  {"tag": "c", "type": "sql", "sql": "select 1 as done", "depends_on": ["b"]}]}');
SELECT count(ductape.workflow_start('flow-$tag', jsonb_build_object('ms', 100 * i))) FROM generate_series(1, $n) i;
});
	# (step a takes 0.1 s to 6 s, so some runs sleep while others still wait for a)
	ok(poll("SELECT count(*) FILTER (WHERE s.tag = 'nap' AND s.state = 'running') > 0
	               AND count(*) FILTER (WHERE s.tag = 'a' AND s.state = 'running') > 0
	          FROM ductape.workflow_steps s JOIN ductape.workflow_runs r ON r.id = s.run_id
	         WHERE r.tag = 'flow-$tag'", 't', 30),
		"$tag: runs mid-way, some asleep, some waiting for a request");
	my $a_in_flight = $node->safe_psql('postgres', qq{
SELECT count(*) FROM ductape.workflow_steps s JOIN ductape.workflow_runs r ON r.id = s.run_id
 WHERE r.tag = 'flow-$tag' AND s.tag IN ('a', 'b') AND s.state = 'running'});
	$crash->();
	ok(poll("SELECT count(*) FROM ductape.workflow_runs WHERE tag = 'flow-$tag' AND state = 'completed'", "$n", 120),
		"$tag: every run completed");
	is($node->safe_psql('postgres', qq{
SELECT count(*) FROM ductape.workflow_steps s JOIN ductape.workflow_runs r ON r.id = s.run_id
 WHERE r.tag = 'flow-$tag' AND s.state <> 'completed'}), '0', "$tag: every step completed");
	my $a = sent("wf-$tag-a") - $a0;
	my $b = sent("wf-$tag-b") - $b0;
	cmp_ok($a, '>=', $n, "$tag: step a sent for every run ($a requests)");
	cmp_ok($b, '>=', $n, "$tag: step b sent for every run ($b requests)");
	cmp_ok($a + $b - 2 * $n, '<=', $a_in_flight,
		"$tag: repeats only for steps in flight at the crash ($a_in_flight in flight)");
	is($node->safe_psql('postgres', qq{
SELECT count(*) FROM ductape.workflow_steps a
  JOIN ductape.workflow_steps nap ON nap.run_id = a.run_id AND nap.tag = 'nap'
  JOIN ductape.workflow_runs r ON r.id = a.run_id
 WHERE r.tag = 'flow-$tag' AND a.tag = 'a' AND nap.finished_at < a.finished_at + interval '3 seconds'}),
		'0', "$tag: no sleep ended before its 3 seconds");
	is($node->safe_psql('postgres', qq{
SELECT count(DISTINCT s.output) FROM ductape.workflow_steps s JOIN ductape.workflow_runs r ON r.id = s.run_id
 WHERE r.tag = 'flow-$tag' AND s.tag = 'c'}), '1', "$tag: the sql step ran and kept its output");
	diag("$tag: " . ($a + $b - 2 * $n) . " repeated requests, $a_in_flight steps in flight at the crash");
}

round('kill', sub {
	ok(kill_worker($node), 'kill: the server recovered from kill -9 of the worker');
});
round('stop', sub {
	$node->stop('immediate');
	$node->start;
});

$node->stop;
done_testing();
