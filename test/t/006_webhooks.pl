# The webhook listener under abuse: NOTIFY after commit, slow clients,
# hundreds of connections, malformed and oversized requests, the listener
# killed (SIGTERM, and kill -9), and kill -9 of the postmaster right after a burst of acknowledged
# events.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use DuctapeTest;
use IO::Socket::INET;
use IPC::Run;
use Digest::SHA qw(hmac_sha256_hex);
use Time::HiRes qw(time usleep);

my $port = PostgreSQL::Test::Cluster::get_free_port();
my $node = PostgreSQL::Test::Cluster->new('webhooks');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'ductape'
ductape.webhook_listen = '127.0.0.1:$port'
ductape.webhook_max_body = '4kB'
restart_after_crash = on
});
$node->start;

# poll($sql, $want, $secs) in database postgres: see DuctapeTest::poll_until
sub poll { return poll_until($node, 'postgres', @_); }

# One raw HTTP exchange; returns the status code (0 if the connection closed).
sub http
{
	my ($request) = @_;
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 10)
	  or return -1;
	print $s $request;
	my $line = <$s> // '';
	close $s;
	return $line =~ m{^HTTP/1\.\d (\d+)} ? $1 : 0;
}

sub post
{
	my ($path, $body, %headers) = @_;
	my $h = join('', map { "$_: $headers{$_}\r\n" } keys %headers);
	return "POST $path HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n${h}Content-Length: "
	  . length($body) . "\r\nConnection: close\r\n\r\n$body";
}

$node->safe_psql('postgres', q{
CREATE EXTENSION ductape;
SELECT ductape.secret_set('HOOK', 'tap-secret');
SELECT ductape.app_define('{"tag": "t", "envs": [{"slug": "dev", "base_url": "http://127.0.0.1:1"}],
  "webhooks": [{"tag": "gh", "verify": {"scheme": "github", "secret": "$Secret{HOOK}"}, "id": "$Event{n}"}]}');
});
my $url = $node->safe_psql('postgres', "SELECT ductape.webhook_url('t', 'gh')");
my ($path) = $url =~ m{^http://127\.0\.0\.1:$port(/webhooks/[0-9a-f]{64})$};
ok($path, 'webhook_url names the configured listen address');
my $signed = sub {
	my ($n) = @_;
	my $body = qq({"n": "$n"});
	return post($path, $body, 'X-Hub-Signature-256' => 'sha256=' . hmac_sha256_hex($body, 'tap-secret'));
};

is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ductape webhook listener'"),
	'1', 'the listener shows in pg_stat_activity');

# NOTIFY ductape_webhook with the row id, after commit.
my ($in, $out, $err) = ("LISTEN ductape_webhook;\nSELECT 'listening';\nSELECT pg_sleep(1.5);\nSELECT 'after';\n", '', '');
my $listen = IPC::Run::start(
	[ 'psql', '-X', '-At', '-d', $node->connstr('postgres') ],
	'<', \$in, '>', \$out, '2>', \$err);
$listen->pump until $out =~ /listening/;
is(http($signed->('notify-1')), '200', 'a signed event is accepted');
$listen->finish;
my $id = $node->safe_psql('postgres', "SELECT id FROM ductape.webhook_events WHERE event_id = 'notify-1'");
like($out, qr/Asynchronous notification "ductape_webhook" with payload "$id" received/,
	'NOTIFY ductape_webhook carries the row id');

# Malformed requests, unknown methods, oversized bodies.
like(http("GARBAGE\r\n\r\n"), qr/^(400|0)$/, 'a malformed request line is refused (400 or closed)');
is(http("POST $path HTTP/1.1\r\nHost: x\r\nNo colon here\r\nContent-Length: 0\r\n\r\n"), '400',
	'a malformed header gets 400');
is(http("BREW $path HTTP/1.1\r\nHost: x\r\n\r\n"), '405', 'an unknown method gets 405');
is(http(post($path, 'x' x 5000)), '413', 'Content-Length over webhook_max_body gets 413 before the body');
my $chunk = sprintf("%x\r\n%s\r\n", 3000, 'y' x 3000);
my $streamed = http("POST $path HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n$chunk$chunk${chunk}0\r\n\r\n");
ok($streamed eq '413' || $streamed eq '0', "a chunked body growing past the limit is cut off (got $streamed)");

# Slow clients do not block others: 50 connections trickling headers.
my @slow;
for (1 .. 50)
{
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port) or last;
	print $s "POST $path HTTP/1.1\r\nHost: x\r\n";
	push @slow, $s;
}
my $t0 = time;
is(http($signed->('while-slow')), '200', 'a request is served while 50 clients trickle');
cmp_ok(time - $t0, '<', 1, 'promptly');
close $_ for @slow;

# Hundreds of concurrent connections: all requests sent, then all answers read.
my @conns;
for my $i (1 .. 300)
{
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port) or last;
	print $s $signed->("many-$i");
	push @conns, $s;
}
my $ok = 0;
for my $s (@conns)
{
	my $line = <$s> // '';
	$ok++ if $line =~ m{^HTTP/1\.\d 200};
	close $s;
}
is($ok, 300, '300 concurrent connections all answered 200');
is($node->safe_psql('postgres', "SELECT count(*) FROM ductape.webhook_events WHERE event_id LIKE 'many-%'"),
	'300', 'and all 300 stored once');

# The listener comes back after being terminated.
$node->safe_psql('postgres',
	"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'ductape webhook listener'");
my $back = 0;
for (1 .. 50)
{
	if (http($signed->('after-kill')) eq '200') { $back = 1; last; }
	usleep(200_000);
}
ok($back, 'the listener is back after being terminated');

# kill -9 of the listener alone: the postmaster restarts the cluster (any
# process attached to shared memory may have left it inconsistent), and the
# listener is back with it; what it acknowledged before is kept.
my $listener = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'ductape webhook listener'");
kill 'KILL', $listener;
$back = 0;
for (1 .. 150)
{
	if (http($signed->('after-kill-9')) eq '200') { $back = 1; last; }
	usleep(200_000);
}
ok($back, 'the listener is back after kill -9');
ok(poll("SELECT count(*) FROM ductape.webhook_events WHERE event_id IN ('after-kill', 'after-kill-9')", '2'),
	'events acknowledged before and after the kill -9 are stored');

# kill -9 of the postmaster right after a burst: every acknowledged event survives.
my @acked;
for my $i (1 .. 200)
{
	push @acked, "burst-$i" if http($signed->("burst-$i")) eq '200';
}
my $pid = $node->safe_psql('postgres', 'SELECT pg_backend_pid()');
my $pm = $node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'ductape webhook listener'");
kill 'KILL', $node->{_pid};
# let the orphans notice the postmaster's death and exit
for (1 .. 100)
{
	last unless kill(0, $pm);
	usleep(100_000);
}
$node->{_pid} = undef;
$node->start;
is($node->safe_psql('postgres',
		"SELECT count(*) FROM ductape.webhook_events WHERE event_id LIKE 'burst-%'"),
	scalar(@acked), 'all ' . scalar(@acked) . ' acknowledged events are there after kill -9 of the postmaster');
cmp_ok(scalar(@acked), '==', 200, 'every burst request was acknowledged');

$node->stop;
done_testing();
