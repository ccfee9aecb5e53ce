# The table of limits full (src/flow.c): 8,192 entries for the cluster, at
# most 2,048 of them for one database, each kept busy here by a pause an
# API asked for (429, Retry-After 600).  Then, in that database, a request
# whose limit declares a rate is not sent -- a call fails at once with
# DT004 saying why, a job stays queued with its attempt not counted --
# while a request without declared limits goes, with one WARNING.  Failing
# closed is the point: a full table must never let a limited app hammer
# its API.  Another database is not touched: an admin of one database
# cannot take the entries the others need.  After a restart the table is
# empty and the job is sent.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use DuctapeTest;
use Time::HiRes qw(usleep);

my $api = api_url();
my $capacity = 2048;		# one database's share
my $node = ductape_node('limits_full');

# Apps written straight into the catalog (the test is about shared memory,
# not app_define): one per entry, each with its own env.
$node->safe_psql('postgres', qq{
CREATE EXTENSION ductape;
INSERT INTO ductape.apps (tag, spec)
SELECT 'busy-' || i, jsonb_build_object('envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', '$api')))
  FROM generate_series(1, $capacity) i;
INSERT INTO ductape.actions (app, tag, position, spec)
SELECT 'busy-' || i, 'busy', 0, '{"method": "GET", "resource": "/status/429", "retries": {"max": 0}}'
  FROM generate_series(1, $capacity) i;
SELECT ductape.app_define(jsonb_build_object('tag', 'limited', 'limits', jsonb_build_object('rate', 100),
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', '$api')),
  'actions', jsonb_build_array(jsonb_build_object('tag', 'ok', 'method', 'GET', 'resource', '/echo/limited',
                                                  'headers', jsonb_build_object('X-Test-Key', 'limits-full-limited')))));
SELECT ductape.app_define(jsonb_build_object('tag', 'free',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', '$api')),
  'actions', jsonb_build_array(jsonb_build_object('tag', 'ok', 'method', 'GET', 'resource', '/echo/free'))));
});

# Every entry paused for 10 minutes.
is($node->safe_psql('postgres', qq{
SELECT count(*) FILTER (WHERE (ductape.run_response('busy-' || i, 'busy', '{"retry_after": 600}')->>'status') = '429')
  FROM generate_series(1, $capacity) i}), $capacity, 'every app answered 429 with Retry-After');
is($node->safe_psql('postgres', "SELECT count(*) FROM ductape.limits WHERE paused_until > now() + interval '5 min'"),
	$capacity, 'the table of limits is full of paused entries');

# A limited app new to the table: refused at once, nothing sent.
my ($ret, $out, $err) = $node->psql('postgres', qq{
\\set VERBOSITY verbose
SELECT ductape.run('limited', 'ok')});
like($err, qr/DT004: rate limit of app "limited" env "dev" reached/, 'a call with a declared rate fails with DT004');
like($err, qr/DETAIL:  The limit is 100 requests per 1s \(burst 100\), and ductape's table of limits has no room to keep it/,
	'the detail says the table has no room');
is($node->safe_psql('postgres', "SELECT (ductape.http('GET', '$api/count/limits-full-limited')->'body'->>'count')::int"),
	'0', 'nothing was sent');

# An app without declared limits goes, with one WARNING per process.
($ret, $out, $err) = $node->psql('postgres', qq{
SELECT ductape.run('free', 'ok')->>'path';
SELECT ductape.run('free', 'ok')->>'path';});
is($out, "/echo/free\n/echo/free", 'a call without declared limits goes');
my @warnings = ($err =~ /WARNING:  ductape limits table is full/g);
is(scalar(@warnings), 1, 'one WARNING, not one per call');
like($err, qr/WARNING:  ductape limits table is full for this database/, 'the WARNING names the database\'s share');
like($err, qr/This database holds 2048 entries, its share of the 8192/, 'and says why');

# Another database keeps its own limits.
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', qq{
CREATE EXTENSION ductape;
SELECT ductape.app_define(jsonb_build_object('tag', 'limited', 'limits', jsonb_build_object('rate', 100),
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', '$api')),
  'actions', jsonb_build_array(jsonb_build_object('tag', 'ok', 'method', 'GET', 'resource', '/echo/other'))));
});
($ret, $out, $err) = $node->psql('other', "SELECT ductape.run('limited', 'ok')->>'path'");
is($out, '/echo/other', 'a limited app of another database goes');
is($err, '', 'with no warning');
is($node->safe_psql('other', "SELECT granted FROM ductape.limits WHERE app = 'limited'"), '1',
	'and its limit is kept');

# A job of the limited app waits in the queue.
my $job = $node->safe_psql('postgres', "SELECT ductape.dispatch('limited', 'ok')");
ok(poll_until($node, 'postgres',
	"SELECT state = 'queued' AND attempts = 0 AND next_attempt_at > now() FROM ductape.jobs WHERE id = $job", 't', 20),
	'the job waits in the queue, its attempt not counted');
usleep(2_500_000);
is($node->safe_psql('postgres', "SELECT state || ' ' || attempts FROM ductape.jobs WHERE id = $job"),
	'queued 0', 'and still waits: never failed by the limit');
is($node->safe_psql('postgres', "SELECT (ductape.http('GET', '$api/count/limits-full-limited')->'body'->>'count')::int"),
	'0', 'nothing was sent for it');

# After a restart the table is empty: the job goes.
$node->restart;
ok(poll_until($node, 'postgres', "SELECT state FROM ductape.jobs WHERE id = $job", 'succeeded', 30),
	'after a restart the job is sent');

# A database that has used its share of keys once (all idle now) still
# gets entries for new ones: it takes over its own idle entries.
is($node->safe_psql('postgres', qq{
SELECT count(*) FILTER (WHERE (ductape.run_response('busy-' || i, 'busy')->>'status') = '429')
  FROM generate_series(1, $capacity) i}), $capacity, 'the share is used again (a 429 without Retry-After: 1 s)');
usleep(2_000_000);
$node->safe_psql('postgres', qq{
SELECT ductape.app_define(jsonb_build_object('tag', 'limited2', 'limits', jsonb_build_object('rate', 100),
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', '$api')),
  'actions', jsonb_build_array(jsonb_build_object('tag', 'ok', 'method', 'GET', 'resource', '/echo/limited2'))))});
($ret, $out, $err) = $node->psql('postgres', "SELECT ductape.run('limited2', 'ok')->>'path'");
is($out, '/echo/limited2', 'once those entries are idle, a new limited app of the database goes');
is($err, '', 'with no warning');
is($node->safe_psql('postgres', "SELECT count(*) FROM ductape.limits"), $capacity,
	'its entries stay within its share');

$node->stop;
done_testing();
