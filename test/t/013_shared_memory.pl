# Shared memory (src/shmem.c): the call-record ring, the worker registry and
# the OAuth2 token slots each have their own lock.  Sessions that record
# calls and sessions that need a new token at every call, all at once, all
# finish and every record arrives.  And a session terminated while it waits
# for a token gives its request slot back: there are 32 slots, and 32
# sessions terminated at once would otherwise leave every later token
# request refused.  A call cut short by an error is still recorded.  The
# launcher says once, not every second, that no worker slot is free.
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
my $node = ductape_node('shmem');

# refresh_buffer_s above expires_in: every call needs a new token, so every
# call posts a token request that the worker serves.
sub oauth_app
{
	my ($tag, $query) = @_;
	return qq{SELECT ductape.app_define('{"tag": "$tag", "envs": [{"slug": "dev", "base_url": "$api"}],
  "auth": {"type": "oauth2", "token_url": "$api/oauth/token?expires_in=3600$query",
           "client_id": "ductape-client", "client_secret": "\$Secret{SF_SECRET}",
           "refresh_buffer_s": 86400},
  "actions": [{"tag": "res", "method": "GET", "resource": "/oauth/resource"}]}');};
}
$node->safe_psql('postgres', qq{
CREATE EXTENSION ductape;
SELECT ductape.http('POST', '$api/oauth/reset');
SELECT ductape.secret_set('SF_SECRET', 's3cret/client:1');
} . oauth_app('tok', '') . oauth_app('slowtok', '&delay_ms=3000'));

# Starts psql -c $sql; returns the handle and a reference to its output.
sub session
{
	my ($sql) = @_;
	my $out = '';
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-At', '-d', $node->connstr('postgres'), '-c', $sql ],
		'>', \$out, '2>', \$out);
	return ($h, \$out);
}

# 6 sessions send 100 calls each while 6 others make 10 calls each that
# need a token.
my (@h, @recorders, @token_users);
for (1 .. 6)
{
	my ($h, $out) = session(
		"SELECT count(ductape.http('GET', '$api/echo?shm=1')) FROM generate_series(1, 100)");
	push @h, $h;
	push @recorders, $out;
	($h, $out) = session("SELECT count(ductape.run('tok', 'res')) FROM generate_series(1, 10)");
	push @h, $h;
	push @token_users, $out;
}
$_->finish for @h;
is(join('', map { $$_ } @recorders), "100\n" x 6, 'every session recording calls finished');
is(join('', map { $$_ } @token_users), "10\n" x 6, 'every session needing tokens finished');
ok(poll_until($node, 'postgres',
		"SELECT count(*) FROM ductape.calls WHERE url LIKE '%/echo?shm=1'", '600'),
	'all 600 calls were recorded');
ok(poll_until($node, 'postgres',
		"SELECT count(*) FILTER (WHERE action = 'res') || '/' || count(*) FILTER (WHERE action = 'oauth2-token') "
		  . "FROM ductape.calls WHERE app = 'tok'", '60/60'),
	'each of the 60 calls got its own token request, and all were recorded');

# 32 sessions wait for a token that takes 3 s to come (one slot being
# served, 31 pending), and are terminated.
my $waiting = "FROM pg_stat_activity WHERE query LIKE '%''slowtok''%' AND pid <> pg_backend_pid()";
@h = ();
push @h, (session("SELECT ductape.run('slowtok', 'res')"))[0] for 1 .. 32;
ok(poll_until($node, 'postgres',
		"SELECT count(*) >= 32 $waiting AND wait_event_type = 'Extension'", 't'),
	'32 sessions wait for a token');
is($node->safe_psql('postgres', "SELECT count(pg_terminate_backend(pid)) $waiting"),
	'32', 'the 32 waiting sessions are terminated');
$_->finish for @h;
ok(poll_until($node, 'postgres', "SELECT count(*) $waiting", '0'), 'they are gone');

# Their slots came back: a new token request gets one (and is served once
# the worker is done with the slow one).
my ($ret, $out, $err) = $node->psql('postgres', "SELECT ductape.run('tok', 'res')->>'path'");
is($out, '/oauth/resource', 'a token request after the terminated ones gets a slot')
  or diag($err);

# A call cut short by statement_timeout still leaves its record, written
# once the error is copied out (the record takes the ring's lock).
($ret, $out, $err) = $node->psql('postgres',
	"SET statement_timeout = '300ms'; SELECT ductape.http('GET', '$api/delay/5000')");
like($err, qr/canceling statement due to statement timeout/, 'a call is cut short by statement_timeout');
ok(poll_until($node, 'postgres', "SELECT error FROM ductape.calls WHERE url LIKE '%/delay/5000'",
		'interrupted'),
	'and its record says it was interrupted');

# More databases want a worker than max_worker_processes (8) allows: the
# launcher, trying every second, says so once, not at every try; and once
# more when a worker starts again.
my @dbs = map { "slots$_" } 1 .. 9;
$node->safe_psql('postgres', "CREATE DATABASE $_") for @dbs;
$node->safe_psql($_, 'CREATE EXTENSION ductape') for @dbs;
my $exhausted = qr/ductape could not start a worker for database \d+: no background worker slot is free/;
my $log_at = $node->wait_for_log($exhausted);
ok($log_at, 'worker slots exhausted: the launcher says so');
sleep 4;
my @said = (slurp_file($node->logfile) =~ /$exhausted/g);
is(scalar @said, 1, 'once, not at every try of the launcher');
$node->safe_psql('postgres', "DROP DATABASE $_ WITH (FORCE)") for @dbs[0 .. 5];
# (the database left waiting may be one of those: one more wants a worker)
$node->safe_psql('postgres', "CREATE DATABASE slots10");
$node->safe_psql('slots10', 'CREATE EXTENSION ductape');
push @dbs, 'slots10';
ok($node->wait_for_log(qr/ductape started a worker for database \d+: a background worker slot is free again/, $log_at),
	'and once more when a worker starts again');
$node->safe_psql('postgres', "DROP DATABASE $_ WITH (FORCE)") for @dbs[6 .. 9];

$node->stop;
done_testing();
