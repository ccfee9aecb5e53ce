# The request counters in shared memory (src/stats.c, ductape.stats):
#  - sessions of two roles calling at once: every call counted, exactly,
#    and each role sees its own;
#  - a restart keeps them (the postmaster writes a file when it exits
#    normally, after a fast or an immediate shutdown, and reads it back at
#    start); after a crash (a process killed, or the postmaster) they start
#    from zero;
#  - DROP DATABASE removes the database's counters;
#  - the call-record buffer full (the worker stopped): one WARNING, not one
#    per call, and the dropped records counted;
#  - capacity: keys past DT_STATS_MAX_ENTRIES are counted in the
#    database's "(other)" row;
#  - a damaged or altered file: a bad header makes it ignored, bad entries
#    are skipped, each logged once, and ductape.stats keeps working.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use DuctapeTest;
use IPC::Run;

my $api = api_url();
my $node = ductape_node('stats', qq{
restart_after_crash = on
});
my $pgdata = $node->data_dir;
my $file = "$pgdata/pg_stat/ductape_stats.stat";

$node->safe_psql('postgres', qq{
CREATE EXTENSION ductape;
CREATE ROLE st_r1 LOGIN;
CREATE ROLE st_r2 LOGIN;
SELECT ductape.grant_usage('st_r1');
SELECT ductape.grant_usage('st_r2');
SELECT ductape.app_define('{"tag": "st", "envs": [{"slug": "dev", "base_url": "$api"}],
  "actions": [{"tag": "ok", "method": "GET", "resource": "/echo/st"},
              {"tag": "bad", "method": "GET", "resource": "/status/500", "retries": {"max": 0}}]}');
});

# ---- concurrency: 8 sessions, 4 per role, all at once ----
my @h;
for my $i (1 .. 8)
{
	my $role = $i % 2 ? 'st_r1' : 'st_r2';
	my $out = '';
	push @h, IPC::Run::start(
		[ 'psql', '-X', '-At', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'),
		  '-c', "SET ROLE $role",
		  '-c', "SELECT count(ductape.run('st', 'ok')) FROM generate_series(1, 150)",
		  '-c', "SELECT count(ductape.run_response('st', 'bad')) FROM generate_series(1, 25)" ],
		'>', \$out, '2>', \$out);
}
$_->finish for @h;
is(scalar(grep { $_->result == 0 } @h), 8, 'the 8 sessions finished');

my $rows = "SELECT app || '/' || action || ':' || calls || ':' || errors || ':' || errors_5xx
              FROM ductape.stats ORDER BY action";
is($node->safe_psql('postgres', $rows), "st/bad:200:200:200\nst/ok:1200:0:0",
	'every call of the 8 sessions is counted once, its error in its class');
is($node->safe_psql('postgres', "SET ROLE st_r1; $rows"), "st/bad:100:100:100\nst/ok:600:0:0",
	'a usage role sees its own calls');
ok(poll_until($node, 'postgres', "SELECT count(*) FROM ductape.calls WHERE app = 'st'", '1400'),
	'and ductape.calls got the same 1,400 records');

# ---- restarts ----
my $snapshot = "SELECT app, action, env, calls, errors, p50_ms, p95_ms, p99_ms, mean_ms, min_ms,
                       max_ms, last_at, since FROM ductape.stats ORDER BY action";
my $before = $node->safe_psql('postgres', $snapshot);
$node->restart;
is($node->safe_psql('postgres', $snapshot), $before, 'a clean restart keeps the counters');
ok(!-e $file, 'the file is removed once read');

# an immediate shutdown ends the processes at once, but the postmaster
# itself exits normally (as with pg_stat_statements)
$node->stop('immediate');
ok(-e $file, 'an immediate shutdown writes the file');
$node->start;
is($node->safe_psql('postgres', $snapshot), $before, 'and the counters are back after it');

ok(kill_worker($node), 'a process killed: the server resets');
is($node->safe_psql('postgres', 'SELECT count(*) FROM ductape.stats'), '0',
	'after a crash the counters start from zero');
$node->safe_psql('postgres', "SELECT count(ductape.run('st', 'ok')) FROM generate_series(1, 5)");
is($node->safe_psql('postgres', "SELECT calls FROM ductape.stats"), '5', 'counting again');
$node->restart;
is($node->safe_psql('postgres', "SELECT calls FROM ductape.stats"), '5',
	'a clean restart after the reset keeps them too');

# the postmaster killed: no file is written, and the last one was removed
# when it was read
$node->kill9;
ok(!-e $file, 'a killed postmaster writes no file');
# its children notice and exit; a start fails while the dead postmaster's
# pid or they linger (and then reads the stale pid file: forget it again)
my $started = 0;
for (1 .. 50)
{
	last if ($started = $node->start(fail_ok => 1));
	$node->{_pid} = undef;
	select(undef, undef, undef, 0.2);
}
ok($started, 'the server starts again');
is($node->safe_psql('postgres', 'SELECT count(*) FROM ductape.stats'), '0',
	'after the postmaster was killed the counters start from zero');

# ---- DROP DATABASE ----
$node->safe_psql('postgres', 'CREATE DATABASE st_other');
$node->safe_psql('st_other', qq{
CREATE EXTENSION ductape;
SELECT ductape.app_define('{"tag": "other", "envs": [{"slug": "dev", "base_url": "$api"}],
  "actions": [{"tag": "ok", "method": "GET", "resource": "/echo/other"}]}');
SELECT count(ductape.run('other', 'ok')) FROM generate_series(1, 3);
});
is($node->safe_psql('st_other', "SELECT app || ':' || calls FROM ductape.stats"), 'other:3',
	'a second database counts its own');
is($node->safe_psql('postgres', 'SELECT count(*) FROM ductape.stats'), '0',
	'and the first does not show them');
is($node->safe_psql('postgres', 'SELECT entries FROM ductape._stats_info()'), '1',
	'one entry in use');
$node->safe_psql('postgres', 'DROP DATABASE st_other');
is($node->safe_psql('postgres', 'SELECT entries FROM ductape._stats_info()'), '0',
	'DROP DATABASE removes its entries');

# ---- the call-record buffer full ----
# Every record of the ring is stored first (a marker call's record is in
# the table: the worker takes records in order), then the worker is
# stopped, so the next 4,096 records fill the ring.
$node->safe_psql('postgres', "SELECT ductape.http('GET', '$api/echo?marker=1')");
ok(poll_until($node, 'postgres', "SELECT count(*) FROM ductape.calls WHERE url LIKE '%marker=1'", '1'),
	'the ring is drained');
my $worker = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'ductape worker' AND datname = 'postgres'");
sleep 1;    # the worker back in its wait, holding no lock
$node->safe_psql('postgres', 'SELECT ductape.stats_reset()');
kill 'STOP', $worker;
my ($ret, $out, $err) = $node->psql('postgres',
	"SELECT count(ductape.http('GET', '$api/echo?fill=1')) FROM generate_series(1, 4300)");
is($out, '4300', '4,300 calls with the worker stopped');
my @warnings = $err =~ /WARNING:/g;
is(scalar(@warnings), 1, 'one WARNING for the 204 records dropped') or diag($err);
like($err, qr/WARNING:  ductape's buffer of call records is full: call records are being dropped\n.*DETAIL:  Call records dropped since the last such warning: 1; since the server started: 1\. The buffer holds 4096 records/s,
	'it says how many and how big the buffer is');
like($err, qr/HINT:  .*backend_type "ductape worker"/, 'and what to check');
($ret, $out, $err) = $node->psql('postgres',
	"SELECT count(ductape.http('GET', '$api/echo?fill=1')) FROM generate_series(1, 20)");
is($err, '', 'no second WARNING within the minute, from another session');
is($node->safe_psql('postgres', 'SELECT call_records_dropped FROM ductape._stats_info()'), '224',
	'the 224 records dropped are counted');
is($node->safe_psql('postgres', 'SELECT calls FROM ductape.stats WHERE app IS NULL'), '4320',
	'and every call is still counted in ductape.stats');
kill 'CONT', $worker;
ok(poll_until($node, 'postgres', "SELECT count(*) FROM ductape.calls WHERE url LIKE '%fill=1'", '4096'),
	'the worker stores the 4,096 records the ring held');

# ---- capacity: 4,200 keys for 4,096 entries ----
$node->safe_psql('postgres', qq{
ALTER SYSTEM SET ductape.log_requests = 'none';
SELECT pg_reload_conf();
SELECT ductape.stats_reset();
DO \$\$
BEGIN
    FOR a IN 1..42 LOOP
        PERFORM ductape.app_define(jsonb_build_object('tag', 'm' || a,
            'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', '$api')),
            'actions', (SELECT jsonb_agg(jsonb_build_object('tag', 'a' || b, 'method', 'GET',
                                                            'resource', '/echo/m'))
                          FROM generate_series(1, 100) b)));
    END LOOP;
END
\$\$;
});
is($node->safe_psql('postgres',
		"SELECT count(ductape.run('m' || a, 'a' || b)) FROM generate_series(1, 42) a, generate_series(1, 100) b"),
	'4200', '4,200 calls, each to its own action');
is($node->safe_psql('postgres',
		"SELECT entries || '/' || max_entries || ' ' || overflow_entries || ' ' || overflowed_calls || ' ' || lost_calls FROM ductape._stats_info()"),
	'4096/4096 1 104 0', 'the entries are full, 104 calls went to the overflow entry');
is($node->safe_psql('postgres',
		"SELECT count(*) || ' ' || sum(calls) || ' ' || sum(calls) FILTER (WHERE app = '(other)' AND action IS NULL AND env IS NULL) FROM ductape.stats"),
	'4097 4200 104', 'ductape.stats shows them as app (other), and the sum is every call');
$node->safe_psql('postgres', "SELECT ductape.run('m1', 'a1'), ductape.run('m42', 'a100')");
is($node->safe_psql('postgres',
		"SELECT string_agg(app || '/' || coalesce(action, '') || ':' || calls, ' ' ORDER BY app, action) FROM ductape.stats WHERE (app, action) = ('m1', 'a1') OR app = '(other)'"),
	'(other)/:105 m1/a1:2', 'a counted key keeps its entry, a new one goes to (other)');
$node->safe_psql('postgres', 'SELECT ductape.stats_reset()');
is($node->safe_psql('postgres',
		"SELECT entries || ' ' || overflow_entries FROM ductape._stats_info()"),
	'0 0', 'stats_reset frees the entries');
$node->safe_psql('postgres', "SELECT ductape.run('m42', 'a100')");
is($node->safe_psql('postgres', "SELECT app || '/' || action || ':' || calls FROM ductape.stats"),
	'm42/a100:1', 'and a new key gets one again');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET ductape.log_requests; SELECT pg_reload_conf()');

# ---- the file damaged or altered ----
# The file is written by the postmaster, but it lies in PGDATA: whatever
# it holds, the server starts, ductape.stats works and shows only entries
# an entry can have.  A real file is taken apart and written back with
# one field of each entry changed.
$node->safe_psql('postgres', qq{
SELECT ductape.stats_reset();
SELECT ductape.app_define(jsonb_build_object('tag', 'fx',
    'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', '$api')),
    'actions', (SELECT jsonb_agg(jsonb_build_object('tag', 'a' || b, 'method', 'GET', 'resource', '/echo/fx'))
                  FROM generate_series(1, 16) b)));
SELECT count(ductape.run('fx', 'a' || b)) FROM generate_series(1, 16) b;
SELECT ductape.http('GET', '$api/echo?fx=1');
});
my $good = "SELECT string_agg(coalesce(app, '-') || '/' || coalesce(action, '-') || '/' || coalesce(env, '-')
                              || ':' || calls, ' ' ORDER BY coalesce(app, '') COLLATE \"C\", action COLLATE \"C\")
              FROM ductape.stats";
is($node->safe_psql('postgres', "SELECT count(*) FROM ductape.stats"), '17', '17 entries to save');

sub read_file_bytes
{
	open(my $fh, '<:raw', $_[0]) or die "cannot read $_[0]: $!";
	local $/;
	return scalar <$fh>;
}

sub write_file_bytes
{
	open(my $fh, '>:raw', $_[0]) or die "cannot write $_[0]: $!";
	print $fh $_[1];
	close $fh or die;
}

$node->stop;
my $bytes = read_file_bytes($file);
my ($magic, $version, $nbuckets, $key_size, $counters_size, $nentries) = unpack('L5 l', $bytes);
my $hdr_size = 24;
my $kfmt = 'L L l a64 a64 a64';
my $cfmt = "q q5 q$nbuckets d3 q2";
is("$key_size $counters_size $nentries", '204 ' . (8 * (1 + 5 + $nbuckets) + 24 + 16) . ' 17',
	'the file is laid out as this test reads it');
my %entry;    # action => [key fields, counter fields]
my @order;
for my $i (0 .. $nentries - 1)
{
	my $off = $hdr_size + $i * ($key_size + $counters_size);
	my @k = unpack($kfmt, substr($bytes, $off, $key_size));
	s/\0+$// for @k[3 .. 5];
	my @c = unpack($cfmt, substr($bytes, $off + $key_size, $counters_size));
	my $name = $k[4] eq '' ? 'http' : $k[4];
	$entry{$name} = [ \@k, \@c ];
	push @order, $name;
}
my ($SUM, $MIN, $MAX, $LAST, $SINCE) = map { 6 + $nbuckets + $_ } 0 .. 4;
my $nan = unpack('d', pack('Q', 0x7ff8000000000000));
my $inf = 9**9**9;
my %corrupt = (
	a1 => sub { $_[0][3] = "fx\xff\xfe" },                 # app not valid UTF-8
	a2 => sub { $_[0][4] = 'A2' },                          # action not a tag
	a3 => sub { $_[0][5] = 'e' x 64 },                      # env with no end
	a4 => sub { $_[1][0] = -5 },                            # calls negative
	a5 => sub { $_[1][1] = $_[1][0] + 1 },                  # more 4xx errors than calls
	a6 => sub { $_[1][6] = -1 },                            # a bucket negative
	a7 => sub { $_[1][$SUM] = $nan },                       # sum not a number
	a8 => sub { $_[1][$MAX] = $inf },                       # max infinite
	a9 => sub { $_[1][$LAST] = 9223372036854775806 },       # last_at past year 294276
	a10 => sub { $_[1][$SINCE] = -9223372036854775807 },    # since before 4714 BC
	a11 => sub { $_[0][2] = 2 },                            # overflow flag neither 0 nor 1
	a12 => sub { $_[0][1] = 0 },                            # a regular entry with no role
);
my $out_bytes = '';
my $pack = sub { pack($kfmt, @{ $_[0] }) . pack($cfmt, @{ $_[1] }) };
for my $name (@order)
{
	my ($k, $c) = @{ $entry{$name} };
	$corrupt{$name}->($k, $c) if $corrupt{$name};
	$out_bytes .= $pack->($k, $c);
}
# a13 twice; a14's counters as the database's overflow entry ("(other)")
$out_bytes .= $pack->(@{ $entry{a13} });
my @okey = @{ $entry{a14}[0] };
@okey[1 .. 5] = (0, 1, '', '', '');
$out_bytes .= $pack->(\@okey, $entry{a14}[1]);
my $header = pack('L5 l', $magic, $version, $nbuckets, $key_size, $counters_size, $nentries + 2);
write_file_bytes($file, $header . $out_bytes);

my $log_offset = -s $node->logfile;
$node->start;
is($node->safe_psql('postgres', $good),
	'-/-/-:1 (other)/-/-:1 fx/a13/dev:1 fx/a14/dev:1 fx/a15/dev:1 fx/a16/dev:1',
	'the server starts and keeps only the valid entries (http, overflow, a13 once)');
is($node->safe_psql('postgres', 'SELECT count(*) FROM (SELECT *, last_at::text, since::text FROM ductape.stats) s'), '6',
	'every column of ductape.stats can be read');
ok($node->log_contains(qr/LOG:  ductape stats file "pg_stat\/ductape_stats\.stat": 13 of its 19 entries skipped/, $log_offset),
	'a LOG line says how many entries were skipped');
is(scalar(() = slurp_file($node->logfile, $log_offset) =~ /entries skipped/g), 1, 'once');
ok(!-e $file, 'the file is removed once read');

# a bad header: the whole file ignored
my @bad_headers = (
	[ 'magic', pack('L5 l', 0x12345678, $version, $nbuckets, $key_size, $counters_size, $nentries) ],
	[ 'version', pack('L5 l', $magic, $version + 1, $nbuckets, $key_size, $counters_size, $nentries) ],
	[ 'entry count past capacity', pack('L5 l', $magic, $version, $nbuckets, $key_size, $counters_size, 4096 + 64 + 1) ],
	[ 'negative entry count', pack('L5 l', $magic, $version, $nbuckets, $key_size, $counters_size, -1) ],
	[ 'cut inside the header', substr($header, 0, 10) ]);
for my $case (@bad_headers)
{
	my ($what, $h) = @$case;
	$node->stop;
	write_file_bytes($file, $h . ($what =~ /cut/ ? '' : $out_bytes));
	$log_offset = -s $node->logfile;
	$node->start;
	is($node->safe_psql('postgres', 'SELECT count(*) FROM ductape.stats'), '0',
		"a bad header ($what): nothing loaded");
	ok($node->log_contains(qr/LOG:  ignoring ductape stats file "pg_stat\/ductape_stats\.stat": its header is not one this version writes/, $log_offset),
		"and a LOG line says it was ignored ($what)");
}

# a file cut short: the entries before the cut are loaded
$node->stop;
write_file_bytes($file, pack('L5 l', $magic, $version, $nbuckets, $key_size, $counters_size, 3)
	. $pack->(@{ $entry{http} }) . $pack->(@{ $entry{a16} }) . substr($pack->(@{ $entry{a15} }), 0, 100));
$log_offset = -s $node->logfile;
$node->start;
is($node->safe_psql('postgres', $good), '-/-/-:1 fx/a16/dev:1', 'a file cut short: the whole entries are loaded');
ok($node->log_contains(qr/ductape stats file "pg_stat\/ductape_stats\.stat" is cut short: 2 of 3 entries read/, $log_offset),
	'and a LOG line says so');

$node->stop;
done_testing();
