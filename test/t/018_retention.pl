# Bounded storage (src/retention.c, the call-record task of src/worker.c):
# the worker makes ductape.calls' day partitions ahead and on demand, drops
# those past ductape.call_retention, deletes finished workflow runs past
# ductape.job_retention (never running ones), and keeps a batch of call
# records it could not store, storing it once it can, or dropping it after
# a few attempts with one LOG line, without blocking later records.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use DuctapeTest;
use POSIX qw(strftime);
use Time::HiRes qw(time usleep);

my $api = api_url();
my $node = ductape_node('retention');
$node->safe_psql('postgres', qq{
CREATE EXTENSION ductape;
SELECT ductape.app_define('{"tag": "shop", "envs": [{"slug": "dev", "base_url": "$api"}],
  "actions": [{"tag": "echo", "method": "GET", "resource": "/echo/shop"}]}');
SELECT ductape.app_define('{"tag": "other", "envs": [{"slug": "dev", "base_url": "$api"}],
  "actions": [{"tag": "echo", "method": "GET", "resource": "/echo/other"}]}');
});

# the name of the partition of the UTC day $k days from today
sub day_part
{
	my ($k) = @_;
	return 'calls_' . strftime('%Y%m%d', gmtime(time + $k * 86400));
}
sub day_start
{
	my ($k) = @_;
	return strftime('%Y-%m-%d 00:00:00+00', gmtime(time + $k * 86400));
}
sub exists_part
{
	my ($name) = @_;
	return $node->safe_psql('postgres', "SELECT to_regclass('ductape.$name') IS NOT NULL");
}
# wait until the server log, from $offset on, matches $re (up to $secs)
sub wait_log
{
	my ($offset, $re, $secs) = @_;
	my $deadline = time + ($secs // 30);
	while (time < $deadline)
	{
		my $log = slurp_file($node->logfile, $offset);
		return $log if $log =~ $re;
		usleep(200_000);
	}
	return undef;
}
sub calls_of
{
	my ($app) = @_;
	return $node->safe_psql('postgres', "SELECT count(*) FROM ductape.calls WHERE app = '$app'");
}

# ---- partitions made ahead: today and the next three days ----
# (the install makes those four; the worker makes them as days come, see
# below where it makes one again)
ok(poll_until($node, 'postgres',
	"SELECT count(*) FROM pg_inherits WHERE inhparent = 'ductape.calls'::regclass", '4'),
	'four day partitions');
is(join(',', map { exists_part(day_part($_)) } 0 .. 3), 't,t,t,t', 'today and the next three UTC days');

# ---- a day without a partition is made on demand (and the failed flush retried) ----
# Today's partition dropped by a superuser: the worker believes it exists,
# its INSERT fails, it forgets what it knew and makes the day on the next attempt.
my $today = day_part(0);
$node->safe_psql('postgres', "ALTER EXTENSION ductape DROP TABLE ductape.$today; DROP TABLE ductape.$today");
my $offset = -s $node->logfile;
$node->safe_psql('postgres', "SELECT ductape.run('shop', 'echo')");
ok(poll_until($node, 'postgres', "SELECT count(*) FROM ductape.calls WHERE app = 'shop'", '1'),
	'a record for a day without a partition is stored');
is(exists_part($today), 't', 'its day was made on demand');
like(slurp_file($node->logfile, $offset), qr/could not store 1 call record: no partition of relation "calls" found for row/,
	'the failed attempt was logged');
is($node->safe_psql('postgres', qq{
SELECT p.relrowsecurity AND NOT EXISTS (SELECT FROM aclexplode(coalesce(p.relacl, acldefault('r', p.relowner))) a WHERE a.grantee <> p.relowner)
       AND EXISTS (SELECT FROM pg_depend d WHERE d.objid = p.oid AND d.classid = 'pg_class'::regclass AND d.deptype = 'e')
  FROM pg_class p WHERE p.oid = 'ductape.$today'::regclass}), 't',
	'the day made on demand is a member, without grants, with row level security');

# ---- a flush that fails for a while: the records arrive once it is fixed ----
$node->safe_psql('postgres', "ALTER TABLE ductape.$today ADD CONSTRAINT hold CHECK (app <> 'shop') NOT VALID");
$offset = -s $node->logfile;
$node->safe_psql('postgres', "SELECT ductape.run('shop', 'echo'), ductape.run('shop', 'echo')");
ok(defined wait_log($offset, qr/could not store 2 call records: new row for relation "$today" violates check constraint "hold"/),
	'the failing INSERT is logged, with the attempt');
is(calls_of('shop'), '1', 'the records are not stored while the INSERT fails');
$node->safe_psql('postgres', "ALTER TABLE ductape.$today DROP CONSTRAINT hold");
ok(poll_until($node, 'postgres', "SELECT count(*) FROM ductape.calls WHERE app = 'shop'", '3', 20),
	'the kept records arrive once the INSERT succeeds again');
unlike(slurp_file($node->logfile, $offset), qr/ductape dropped/, 'nothing was dropped');

# ---- a batch that keeps failing is dropped after five attempts, once logged ----
$node->safe_psql('postgres', "ALTER TABLE ductape.$today ADD CONSTRAINT poison CHECK (app <> 'shop') NOT VALID");
$offset = -s $node->logfile;
$node->safe_psql('postgres', "SELECT ductape.run('shop', 'echo')");
my $log = wait_log($offset, qr/ductape dropped 1 call record: new row for relation "$today" violates check constraint "poison"/, 40);
ok(defined $log, 'a batch failing five times is dropped, with the reason');
my @attempts = ($log // '') =~ /could not store 1 call record/g;
is(scalar(@attempts), 4, 'after four logged attempts');
like($log // '', qr/Storing them in ductape.calls failed 5 times; they are counted as dropped/, 'the LOG line says so');
$node->safe_psql('postgres', "SELECT ductape.run('other', 'echo')");
ok(poll_until($node, 'postgres', "SELECT count(*) FROM ductape.calls WHERE app = 'other'", '1', 10),
	'later records are stored (the poison batch holds nothing)');
is(calls_of('shop'), '3', 'the dropped record is not there');
$node->safe_psql('postgres', "ALTER TABLE ductape.$today DROP CONSTRAINT poison");

# ---- expired days dropped after lowering ductape.call_retention ----
# Old days, made as the worker makes them (as superuser), with rows.
for my $k (-10, -2, -1)
{
	my $p = day_part($k);
	$node->safe_psql('postgres', qq{
CREATE TABLE ductape.$p PARTITION OF ductape.calls FOR VALUES FROM ('${\ day_start($k)}') TO ('${\ day_start($k + 1)}');
ALTER TABLE ductape.$p ENABLE ROW LEVEL SECURITY;
ALTER EXTENSION ductape ADD TABLE ductape.$p;
INSERT INTO ductape.calls (id, at, app, method, url, attempts, duration_ms)
SELECT -g, '${\ day_start($k)}'::timestamptz + g * interval '1 minute', 'old', 'GET', 'http://x/', 1, 1
  FROM generate_series(1, 100) g;});
}
is(calls_of('old'), '300', 'three old days with rows');

# ---- and finished workflow runs past ductape.job_retention ----
$node->safe_psql('postgres', q{
SELECT ductape.workflow_define('{"tag": "quick", "steps": [{"tag": "a", "type": "sleep", "seconds": 0}]}');
SELECT ductape.workflow_define('{"tag": "slow", "steps": [{"tag": "a", "type": "sleep", "seconds": 3600}]}');
SELECT ductape.workflow_start('quick');
SELECT ductape.workflow_start('quick');
SELECT ductape.workflow_start('slow');
});
ok(poll_until($node, 'postgres',
	"SELECT count(*) FROM ductape.workflow_runs WHERE tag = 'quick' AND state = 'completed'", '2'),
	'two runs completed');
# one finished run is old, the other recent; the running one is old too
$node->safe_psql('postgres', q{
UPDATE ductape.workflow_runs SET finished_at = now() - interval '2 days', created_at = now() - interval '2 days'
 WHERE id = (SELECT min(id) FROM ductape.workflow_runs WHERE tag = 'quick');
UPDATE ductape.workflow_runs SET created_at = now() - interval '2 days' WHERE tag = 'slow';
});
my ($old_run) = $node->safe_psql('postgres', "SELECT min(id) FROM ductape.workflow_runs WHERE tag = 'quick'");
is($node->safe_psql('postgres', "SELECT count(*) FROM ductape.workflow_steps WHERE run_id = $old_run"), '1',
	'the old run has its step');

# a day ahead missing: the worker makes it at its next pass
my $ahead = day_part(3);
$node->safe_psql('postgres', "ALTER EXTENSION ductape DROP TABLE ductape.$ahead; DROP TABLE ductape.$ahead");
$node->safe_psql('postgres', q{
ALTER SYSTEM SET ductape.call_retention = '1d';
ALTER SYSTEM SET ductape.job_retention = '1d';
SELECT pg_reload_conf();
});
# the retention task runs at the worker's start, then once a minute: start a new worker
$node->safe_psql('postgres',
	"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'ductape worker' AND datname = 'postgres'");
ok(poll_until($node, 'postgres',
	"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ductape worker' AND datname = 'postgres'", '0'),
	'the worker ended');
$node->safe_psql('postgres', "SELECT ductape.run('other', 'echo')");
ok(poll_until($node, 'postgres', "SELECT to_regclass('ductape." . day_part(-2) . "') IS NULL", 't', 60),
	'the day that ended more than ductape.call_retention ago is dropped');
is(exists_part(day_part(-10)), 'f', 'and the older one');
is(exists_part(day_part(-1)), 't', 'yesterday is kept (its day ended less than a day ago)');
is(calls_of('old'), '100', 'with its rows');
is(exists_part($today), 't', 'today is kept');
is(exists_part($ahead), 't', 'the missing day ahead is made again');
ok(poll_until($node, 'postgres', "SELECT count(*) FROM ductape.workflow_runs WHERE id = $old_run", '0', 60),
	'the finished run past ductape.job_retention is deleted');
is($node->safe_psql('postgres', "SELECT count(*) FROM ductape.workflow_steps WHERE run_id = $old_run"), '0',
	'with its steps');
is($node->safe_psql('postgres', "SELECT string_agg(tag || ' ' || state, ', ' ORDER BY id) FROM ductape.workflow_runs"),
	'quick completed, slow running', 'the recent finished run and the old running run are kept');

# ---- DROP EXTENSION drops the partitions with it ----
$node->safe_psql('postgres', 'DROP EXTENSION ductape');
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_class WHERE relname ~ '^calls_[0-9]{8}\$'"), '0',
	'DROP EXTENSION drops every day partition');
$node->safe_psql('postgres', 'DROP SCHEMA ductape');

$node->stop;
done_testing();
