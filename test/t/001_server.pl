# Server-level behaviour that pg_regress cannot show: loading rules, the
# background workers, query cancel from another session, proxy environment
# variables, and DROP DATABASE while a worker is connected.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use DuctapeTest;
use IPC::Run;
use Time::HiRes qw(time usleep);

my $api_port = $ENV{DUCTAPE_API_PORT} or die "DUCTAPE_API_PORT is not set";
my $api = "http://127.0.0.1:$api_port";

# Without shared_preload_libraries the library refuses to load and says how.
my $plain = PostgreSQL::Test::Cluster->new('plain');
$plain->init;
$plain->start;
my ($ret, $out, $err) = $plain->psql('postgres', 'CREATE EXTENSION ductape');
isnt($ret, 0, 'CREATE EXTENSION fails when the library is not preloaded');
like($err, qr/ERROR:  ductape must be loaded via shared_preload_libraries/, 'error names the problem');
like($err, qr/HINT:  Add ductape to shared_preload_libraries in postgresql.conf and restart the server/, 'hint says how');
$plain->stop;

# A preloaded server whose environment has proxy variables that would break
# every request if libcurl honoured them.
my $node = PostgreSQL::Test::Cluster->new('main');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'ductape'
ductape.allowed_hosts = '127.0.0.1'
});
{
	local $ENV{http_proxy}  = 'http://127.0.0.1:9';
	local $ENV{HTTP_PROXY}  = 'http://127.0.0.1:9';
	local $ENV{https_proxy} = 'http://127.0.0.1:9';
	local $ENV{ALL_PROXY}   = 'http://127.0.0.1:9';
	$node->start;
}
$node->safe_psql('postgres', 'CREATE EXTENSION ductape');
is($node->safe_psql('postgres', "SELECT ductape.http('GET', '$api/echo')->>'status'"),
	'200', 'proxy environment variables are ignored');

is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ductape launcher'"),
	'1', 'the launcher runs and shows in pg_stat_activity');

# poll($db, $sql, $want, $secs): see DuctapeTest::poll_until
sub poll { return poll_until($node, @_); }

ok(poll('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ductape worker' AND datname = 'postgres'", '1'),
	'a worker started for the database that made a call');
ok(poll('postgres', "SELECT count(*) FROM ductape.calls WHERE url LIKE '%/echo'", '1'),
	'the call was recorded by the worker');

# Query cancel from another session stops a request promptly (the contract
# is 100 ms; the bound here is wide so that a loaded machine does not fail
# it: timing figures belong in bench/).
my ($bout, $berr) = ('', '');
my $h = IPC::Run::start(
	[ 'psql', '-X', '-d', $node->connstr('postgres'), '-c',
	  "SELECT ductape.http('GET', '$api/delay/10000')" ],
	'>', \$bout, '2>', \$berr);
ok(poll('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%delay/10000%' AND pid <> pg_backend_pid()", '1'),
	'the long request is running');
my $cancel_ms = $node->safe_psql('postgres', q{
DO $$
DECLARE
    target int := (SELECT pid FROM pg_stat_activity
                    WHERE state = 'active' AND query LIKE '%delay/10000%' AND pid <> pg_backend_pid());
    t0 timestamptz;
BEGIN
    PERFORM pg_cancel_backend(target);
    t0 := clock_timestamp();
    LOOP
        PERFORM pg_stat_clear_snapshot();
        EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = target AND state = 'active');
        EXIT WHEN clock_timestamp() - t0 > interval '5 seconds';
        PERFORM pg_sleep(0.002);
    END LOOP;
    PERFORM set_config('dt.ms', (extract(epoch FROM clock_timestamp() - t0) * 1000)::int::text, false);
END $$;
SELECT current_setting('dt.ms');
});
$h->finish;
like($berr, qr/canceling statement due to user request/, 'the request was cancelled');
diag("cancel took $cancel_ms ms");
cmp_ok($cancel_ms, '<', 1000, "cancel took $cancel_ms ms (well under the request's 10 s)");

# A second database gets its own worker; DROP DATABASE stops it and succeeds.
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', 'CREATE EXTENSION ductape');
$node->safe_psql('other', "SELECT ductape.http('GET', '$api/echo/other')");
ok(poll('other', "SELECT count(*) FROM ductape.calls WHERE url LIKE '%/echo/other'", '1'),
	'the second database records its own calls');
is($node->safe_psql('postgres', "SELECT count(*) FROM ductape.calls WHERE url LIKE '%/echo/other'"),
	'0', 'records stay in their own database');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ductape worker' AND datname = 'other'"),
	'1', 'the second database has a worker');
# Only a DROP DATABASE that can succeed touches the worker: a role that
# does not own the database fails as usual and the worker keeps running.
my $worker_pid = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'ductape worker' AND datname = 'other'");
$node->safe_psql('postgres', 'CREATE ROLE intruder LOGIN');
($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE other', extra_params => [ '-U', 'intruder' ]);
like($err, qr/must be owner of database other/, 'a non-owner cannot drop the database');
is($node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'ductape worker' AND datname = 'other'"),
	$worker_pid, 'and its attempt left the worker alone');
my $t0 = time;
$node->safe_psql('postgres', 'DROP DATABASE other');
my $drop_s = time - $t0;
cmp_ok($drop_s, '<', 3, sprintf('DROP DATABASE with a live worker took %.2f s', $drop_s));

# A definition committed by another session while a REPEATABLE READ
# transaction is open is used as soon as the invalidation arrives: the
# cache is rebuilt from the latest committed catalog, never the old snapshot.
$node->safe_psql('postgres', qq{
SELECT ductape.app_define('{"tag": "rr", "envs": [{"slug": "dev", "base_url": "$api/echo/old"}],
  "actions": [{"tag": "p", "method": "GET", "resource": "/p"}]}')});
my ($in, $rr_out) = ('', '');
my $rr = IPC::Run::start([ 'psql', '-X', '-At', '-d', $node->connstr('postgres') ],
	'<', \$in, '>', \$rr_out, '2>', \$rr_out);
$in .= "BEGIN ISOLATION LEVEL REPEATABLE READ;\nSELECT ductape.run('rr', 'p')->>'path';\n";
$rr->pump until $rr_out =~ m{/echo/old/p} or !$rr->pumpable;
$node->safe_psql('postgres', qq{
SELECT ductape.app_define('{"tag": "rr", "envs": [{"slug": "dev", "base_url": "$api/echo/new"}],
  "actions": [{"tag": "p", "method": "GET", "resource": "/p"}]}')});
$in .= "SELECT 'in:' || (ductape.run('rr', 'p')->>'path');\nCOMMIT;\nSELECT 'after:' || (ductape.run('rr', 'p')->>'path');\n\\q\n";
$rr->finish;
like($rr_out, qr{^after:/echo/new/p$}m, 'after COMMIT the new definition is used');
unlike($rr_out, qr{^after:/echo/old/p$}m, 'and the old one did not stick in the cache');

# A database without the extension gets no rows and keeps no worker.
$node->safe_psql('postgres', 'CREATE DATABASE bare');
($ret, $out, $err) = $node->psql('bare', "SELECT 1");
is($ret, 0, 'a database without the extension works');

$node->stop;
done_testing();
