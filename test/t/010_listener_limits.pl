# The webhook listener's limits against clients without credentials: a
# flood of 1,100 slow clients (one body byte every 3 s, from eleven other
# loopback addresses) does not keep a correctly signed request from being
# answered 200 within a second; a client trickling its head is answered 408
# and closed at ductape.webhook_request_timeout; one address gets no more
# than ductape.webhook_max_connections_per_address connections while others
# are served; with a connection table smaller than the flood (a listener
# started under a low RLIMIT_NOFILE), the oldest slow connections make room.
# Then: the listener's and the handler dispatch's SQL ignore objects a
# database owner creates in schema public, and ductape.webhook_listen is
# checked when it is set.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use DuctapeTest;
use IO::Socket::INET;
use IO::Select;
use POSIX ();
use Digest::SHA qw(hmac_sha256);
use MIME::Base64 qw(encode_base64);
use Time::HiRes qw(time usleep);

my $port = PostgreSQL::Test::Cluster::get_free_port();
my $node = PostgreSQL::Test::Cluster->new('listener_limits');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'ductape'
ductape.webhook_listen = '127.0.0.1:$port'
});
$node->start;

# poll($sql, $want, $secs) in database postgres: see DuctapeTest::poll_until
sub poll { return poll_until($node, 'postgres', @_); }

# A Standard Webhooks sender (scripts/lib.sh dt_post_webhooks does the same
# with curl): the signing key, and the secret as the sender shows it.
my $key = 'ductape listener limits test key';
my $secret = 'whsec_' . encode_base64($key, '');
$node->safe_psql('postgres', qq{
CREATE EXTENSION ductape;
SELECT ductape.secret_set('LIMITS_HOOK', '$secret');
SELECT ductape.app_define('{"tag": "lim", "envs": [{"slug": "dev", "base_url": "http://127.0.0.1:1"}],
  "webhooks": [{"tag": "std", "verify": {"scheme": "standard", "secret": "\$Secret{LIMITS_HOOK}"},
                "id": "\$Header{webhook-id}", "type": "\$Event{type}"}]}');
});
my $url = $node->safe_psql('postgres', "SELECT ductape.webhook_url('lim', 'std')");
my ($path) = $url =~ m{^http://127\.0\.0\.1:$port(/webhooks/[0-9a-f]{64})$};
ok($path, 'webhook_url names the listener');

sub signed
{
	my ($id) = @_;
	my $body = qq({"type": "order.created", "data": {"id": "$id"}});
	my $ts = int(CORE::time());
	my $sig = encode_base64(hmac_sha256("$id.$ts.$body", $key), '');
	return "POST $path HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
	  . "webhook-id: $id\r\nwebhook-timestamp: $ts\r\nwebhook-signature: v1,$sig\r\n"
	  . "Content-Length: " . length($body) . "\r\nConnection: close\r\n\r\n$body";
}

# One exchange from $local (default 127.0.0.1): (status, seconds from
# connecting to the status line); status 0 if closed, -1 if no connection.
sub timed
{
	my ($request, $local) = @_;
	my $t0 = time;
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
		Timeout => 10, ($local ? (LocalAddr => $local) : ()))
	  or return (-1, time - $t0);
	print $s $request;
	my $line = '';
	$line = <$s> // '' if IO::Select->new($s)->can_read(10);
	my $secs = time - $t0;
	close $s;
	return (($line =~ m{^HTTP/1\.\d (\d+)} ? $1 : 0), $secs);
}

# ---- slow clients, each process one source address ----

# Connect $n clients from $addr, each sending a head with Content-Length
# 1000 and then one body byte every 3 s; a connection the server closes is
# counted (408 first, or closed without an answer) and opened again at the
# next 3 s tick, until SIGTERM.  Reports "up" once all $n are connected, and its counts at the end.
sub slow_clients
{
	my ($addr, $n, $out) = @_;
	my $stop = 0;
	local $SIG{TERM} = sub { $stop = 1 };
	local $SIG{PIPE} = 'IGNORE';
	my $head = "POST $path HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n";
	my $sel = IO::Select->new;
	my %next;
	my %count = (opened => 0, answered_408 => 0, closed => 0, failed => 0);
	my $open = sub {
		my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
			LocalAddr => $addr, Timeout => 10);
		if (!$s) { $count{failed}++; return; }
		syswrite($s, $head);
		$count{opened}++;
		$sel->add($s);
		$next{ fileno($s) } = time + 3 * rand();
	};
	$open->() for 1 .. $n;
	syswrite($out, "up $addr $count{opened}\n");
	my $reopen = 0;
	my $next_reopen = time + 3;
	while (!$stop)
	{
		for my $s ($sel->can_read(0.1))
		{
			my $buf = '';
			my $got = sysread($s, $buf, 4096);
			if ($got && $buf =~ m{^HTTP/1\.\d 408 }) { $count{answered_408}++; }
			else { $count{closed}++; }
			$sel->remove($s);
			close $s;
			$reopen++;
		}
		my $now = time;
		for my $s ($sel->handles)
		{
			next if $next{ fileno($s) } > $now;
			syswrite($s, 'x');
			$next{ fileno($s) } = $now + 3;
		}
		# a closed client connects again at its next 3 s tick
		if ($reopen > 0 && $now >= $next_reopen)
		{
			$open->() for 1 .. $reopen;
			$reopen = 0;
		}
		$next_reopen = $now + 3 if $now >= $next_reopen;
	}
	syswrite($out, "done $addr " . join(' ', map { "$_=$count{$_}" } sort keys %count) . "\n");
}

# A client trickling its head, one byte every 0.5 s; reports how long until
# the server closed it and with which status.
sub slow_head
{
	my ($addr, $out) = @_;
	local $SIG{PIPE} = 'IGNORE';
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
		LocalAddr => $addr, Timeout => 10) or return syswrite($out, "head -1 0\n");
	my $t0 = time;
	syswrite($s, "POST $path HTTP/1.1\r\nHost: x\r\nX-Slow: ");
	my $sel = IO::Select->new($s);
	my $buf = '';
	while (time - $t0 < 30)
	{
		if ($sel->can_read(0.5))
		{
			sysread($s, $buf, 4096);
			last;
		}
		syswrite($s, 'a');
	}
	my $status = $buf =~ m{^HTTP/1\.\d (\d+)} ? $1 : 0;
	syswrite($out, sprintf("head %.2f %d\n", time - $t0, $status));
}

my %pipe_buffer;    # read_reports' unread bytes, per pipe

# Fork one process per entry of @jobs (code refs given the report pipe);
# returns the read end and the pids.
sub spawn
{
	my @jobs = @_;
	pipe(my $rd, my $wr) or die "pipe: $!";
	my @pids;
	for my $job (@jobs)
	{
		my $pid = fork();
		die "fork: $!" unless defined $pid;
		if ($pid == 0)
		{
			close $rd;
			$job->($wr);
			POSIX::_exit(0);    # no END blocks: the cluster belongs to the parent
		}
		push @pids, $pid;
	}
	close $wr;
	$pipe_buffer{ fileno($rd) } = '';    # a new pipe may reuse an old one's number
	return ($rd, @pids);
}

# Lines from the pipe until $want of them matched $re (or $secs passed).
# The pipe is read with sysread into a buffer kept per handle across calls:
# a buffered readline could take two reports at once and leave the second
# where select cannot see it (that lost an "up" report in CI).
sub read_reports
{
	my ($rd, $re, $want, $secs) = @_;
	my $sel = IO::Select->new($rd);
	my $deadline = time + $secs;
	my @lines;
	my $buf = \$pipe_buffer{ fileno($rd) };
	$$buf //= '';
	while (@lines < $want)
	{
		while (@lines < $want && $$buf =~ s/^([^\n]*)\n//)
		{
			my $line = $1;
			push @lines, $line if $line =~ $re;
		}
		last if @lines >= $want || time >= $deadline;
		next unless $sel->can_read(0.2);
		my $got = sysread($rd, $$buf, 4096, length $$buf);
		last unless $got;
	}
	return @lines;
}

my @flood_addrs = map { "127.0.0.$_" } 2 .. 12;    # 11 x 100 = 1,100 slow clients

# The flood, and a signed request from 127.0.0.1 each second for seven
# seconds while it lasts (each must be answered 200 within a second, and the
# times are printed); with $with_slow_head, a client trickling its head from
# 127.0.0.20 meanwhile.  Returns the slow clients' counts.
sub under_flood
{
	my ($label, $with_slow_head) = @_;
	my @jobs = map { my $addr = $_; sub { slow_clients($addr, 100, $_[0]) } } @flood_addrs;
	my ($rd, @pids) = spawn(@jobs);
	my @up = read_reports($rd, qr/^up /, scalar(@flood_addrs), 120);
	my $connected = 0;
	$connected += (split / /)[2] for @up;
	is($connected, 1100, "$label: 1,100 slow clients connected");

	my ($hrd, $hpid);
	($hrd, $hpid) = spawn(sub { slow_head('127.0.0.20', $_[0]) }) if $with_slow_head;

	# seven signed requests over seven seconds, across the deadline's first
	# round of closes and the flood's reconnections
	my @times;
	my $all_200 = 1;
	for my $i (1 .. 7)
	{
		my $t0 = time;
		my ($status, $secs) = timed(signed("$label-$i"));
		push @times, $secs;
		$all_200 = 0 unless $status eq '200';
		note(sprintf("%s: signed request %d answered %s in %.3f s", $label, $i, $status, $secs));
		my $rest = 1 - (time - $t0);
		usleep($rest * 1e6) if $rest > 0;
	}
	ok($all_200, "$label: every signed request is answered 200");
	my ($max) = sort { $b <=> $a } @times;
	cmp_ok($max, '<', 1, sprintf("%s: within 1 s (slowest %.3f s)", $label, $max));

	if ($with_slow_head)
	{
		my ($head) = read_reports($hrd, qr/^head /, 1, 30);
		my (undef, $secs, $status) = split / /, $head // 'head 0 0';
		note("slow head closed after $secs s with status $status");
		is($status, '408', 'a client trickling its head is answered 408');
		ok($secs >= 4.9 && $secs < 7.5, "and closed at the 5 s deadline (after $secs s)");
		waitpid($hpid, 0);
	}

	kill 'TERM', @pids;
	my @done = read_reports($rd, qr/^done /, scalar(@pids), 60);
	waitpid($_, 0) for @pids;
	my %total;
	for my $line (@done)
	{
		$total{$1} += $2 while $line =~ /(\w+)=(\d+)/g;
	}
	note("$label: slow clients " . join(', ', map { "$_ $total{$_}" } sort keys %total));
	return %total;
}

# ---- 1. the flood, with the defaults ----
my %flood = under_flood('flood', 1);
cmp_ok($flood{answered_408} // 0, '>=', 1000,
	'slow clients past the deadline are answered 408 and closed (the flood reconnects)');
is($flood{failed} // 0, 0, 'no slow client was refused a connection (100 per address is under the cap)');
is($node->safe_psql('postgres', "SELECT count(*) FROM ductape.webhook_events WHERE event_id LIKE 'flood-%'"),
	'7', 'the signed requests are stored');

# ---- 2. the per-address cap (512 by default) ----
my $cap = $node->safe_psql('postgres', 'SHOW ductape.webhook_max_connections_per_address');
is($cap, '512', 'ductape.webhook_max_connections_per_address defaults to 512');
{
	my @socks;
	for (1 .. $cap + 20)
	{
		my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
			LocalAddr => '127.0.0.30', Timeout => 10) or last;
		push @socks, $s;
	}
	is(scalar(@socks), $cap + 20, 'the kernel accepts all connections of one address');
	# the listener closes the excess at once, without an answer
	my $refused = 0;
	my $sel = IO::Select->new(@socks);
	my $deadline = time + 3;
	while ($refused < 20 && time < $deadline)
	{
		for my $s ($sel->can_read(0.2))
		{
			my $buf = '';
			my $got = sysread($s, $buf, 4096);
			$refused++ if !$got;
			$sel->remove($s);
		}
	}
	my ($status, $secs) = timed(signed('other-address'));
	is($status, '200', 'another address is answered 200 meanwhile');
	note(sprintf('answered in %.3f s', $secs));
	is($refused, 20, "the $cap + 20 connections of one address: the 20 beyond the cap are closed");
	close $_ for @socks;
}

# ---- 3. a connection table smaller than the flood ----
# The listener sizes its table from RLIMIT_NOFILE: a hard limit of 700 on
# the postmaster (inherited by the listener it starts next) leaves 700 - 256
# reserved = 444 connections, and the 1,100 slow clients do not fit.
my $pm = $node->{_pid};
ok(system('prlimit', "--pid=$pm", '--nofile=700:700') == 0, 'prlimit lowers the postmaster\'s RLIMIT_NOFILE');
my $log_offset = -s $node->logfile;
$node->safe_psql('postgres',
	"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'ductape webhook listener'");
my $restarted = 0;
for (1 .. 100)
{
	if (slurp_file($node->logfile, $log_offset) =~ /At most (\d+) connections at once/)
	{
		$restarted = $1;
		last;
	}
	usleep(100_000);
}
is($restarted, '444', 'the listener restarted with 444 connections');
ok(poll("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ductape webhook listener'", '1'),
	'the listener is back');
my %small = under_flood('full table', 0);
cmp_ok(($small{answered_408} // 0) + ($small{closed} // 0), '>=', 1100 - 444,
	'slow clients that do not fit are closed to make room');


# ---- 4. objects a database owner creates are not used ----
# The listener and the worker are the bootstrap superuser's sessions.  A
# database owner can create objects in schema public and put public before
# pg_catalog in the database's search_path: without the listener's pinned
# search_path, its token lookup would run this "=" (text = text); without
# qualified SQL, the worker's bigint[] || bigint[] would run this "||" (an
# exact match beats pg_catalog's polymorphic one on any search_path).
$node->safe_psql('postgres', q{
CREATE ROLE mallory LOGIN;
ALTER DATABASE postgres OWNER TO mallory;
SET ROLE mallory;
CREATE TABLE public.trapped (who text);
GRANT INSERT ON public.trapped TO PUBLIC;
CREATE FUNCTION public.note_caller() RETURNS void LANGUAGE sql AS $$
  INSERT INTO public.trapped
  SELECT pg_catalog.concat(backend_type, ' / ', query) FROM pg_catalog.pg_stat_activity
   WHERE pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()
$$;
CREATE FUNCTION public.trap_eq(text, text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  PERFORM public.note_caller();
  RETURN pg_catalog.texteq($1, $2);
END $$;
CREATE OPERATOR public.= (leftarg = text, rightarg = text, function = public.trap_eq);
CREATE FUNCTION public.trap_cat(bigint[], bigint[]) RETURNS bigint[] LANGUAGE plpgsql AS $$
BEGIN
  PERFORM public.note_caller();
  RETURN pg_catalog.array_cat($1, $2);
END $$;
CREATE OPERATOR public.|| (leftarg = bigint[], rightarg = bigint[], function = public.trap_cat);
ALTER DATABASE postgres SET search_path = public, pg_catalog;
RESET ROLE;
CREATE TABLE public.seen (id text);
CREATE FUNCTION public.on_order(event jsonb) RETURNS void LANGUAGE sql AS $$
  INSERT INTO public.seen VALUES (event->>'event_id')
$$;
SELECT ductape.webhook_subscribe('lim', 'std', 'order.*', 'public.on_order(jsonb)');
});
$node->restart;    # the listener and the worker start with the database's settings
my ($trap_status) = (0);
for (1 .. 100)
{
	($trap_status) = timed(signed('trap-1'));
	last if $trap_status eq '200';
	usleep(100_000);
}
is($trap_status, '200', 'an event is stored with the traps in place');
ok(poll("SELECT state::text FROM ductape.webhook_events WHERE event_id OPERATOR(pg_catalog.=) 'trap-1'", 'handled'),
	'and its handler runs');
my $trapped = $node->safe_psql('postgres', q{
SELECT who FROM public.trapped
 WHERE who LIKE 'ductape webhook listener%'
    OR who LIKE '%claiming webhook events' OR who LIKE '%recording webhook handlers'});
is($trapped, '', "neither the listener nor the handler dispatch ran the database owner's operators");
note('sessions that did: '
	  . ($node->safe_psql('postgres', q{SELECT string_agg(DISTINCT who, ', ') FROM public.trapped}) || 'none'));
$node->safe_psql('postgres', q{
ALTER DATABASE postgres RESET search_path;
DROP OPERATOR public.= (text, text);
DROP OPERATOR public.|| (bigint[], bigint[]);
});

# ---- 5. the deadline is a SIGHUP setting, and kept-alive connections ----
# have one per request, counted from the previous answer
sub read_answer
{
	my ($s, $secs) = @_;
	my $sel = IO::Select->new($s);
	my $buf = '';
	my $deadline = time + $secs;
	while (time < $deadline && $sel->can_read($deadline - time))
	{
		my $got = sysread($s, $buf, 4096, length($buf));
		last unless $got;
		if ($buf =~ /\r\n\r\n/ && $buf =~ /Content-Length: (\d+)/i)
		{
			my $len = $1;
			last if length($buf) >= index($buf, "\r\n\r\n") + 4 + $len;
		}
	}
	return $buf =~ m{^HTTP/1\.\d (\d+)} ? $1 : 0;
}
# (at debug1 the listener logs how many connections it closed)
my $debug_offset = -s $node->logfile;
$node->safe_psql('postgres',
	"ALTER SYSTEM SET ductape.webhook_request_timeout = '2s'; ALTER SYSTEM SET log_min_messages = debug1; SELECT pg_reload_conf();");
ok(poll('SHOW ductape.webhook_request_timeout', '2s'), 'ductape.webhook_request_timeout changes on reload');
usleep(300_000);    # the listener reloads on its next wake-up
{
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 10);
	(my $keep = signed('keep-1')) =~ s/Connection: close\r\n//;
	syswrite($s, $keep);
	is(read_answer($s, 10), '200', 'a kept-alive connection: first request answered');
	usleep(1_500_000);
	($keep = signed('keep-2')) =~ s/Connection: close\r\n//;
	syswrite($s, $keep);
	is(read_answer($s, 10), '200', 'a second request 1.5 s later (3 s after connecting) is answered too');
	my $t0 = time;
	my $status = read_answer($s, 10);
	my $idle = time - $t0;
	is($status, '408', 'then the idle connection is answered 408');
	ok($idle >= 1.8 && $idle < 4, sprintf('2 s after the last answer (%.2f s)', $idle));
	close $s;
}
# (the listener logs it just after the 408 went out: wait for it, 5 s at most)
my $closed_log = '';
for (1 .. 50)
{
	$closed_log = slurp_file($node->logfile, $debug_offset);
	last if $closed_log =~ /webhook listener closed \d+ connections? past/;
	usleep(100_000);
}
like($closed_log,
	qr/ductape webhook listener closed 1 connection past ductape\.webhook_request_timeout$/m,
	'the listener logs the connection it closed, in the singular');
$node->safe_psql('postgres',
	"ALTER SYSTEM RESET ductape.webhook_request_timeout; ALTER SYSTEM RESET log_min_messages; SELECT pg_reload_conf();");

# ---- 6. ductape.webhook_listen is checked when it is set ----
my ($ret, $stdout, $stderr) = $node->psql('postgres',
	"\\set VERBOSITY verbose\nALTER SYSTEM SET ductape.webhook_listen = 'nonsense'");
like($stderr, qr/ERROR:  22023: invalid value for parameter "ductape.webhook_listen": "nonsense"/,
	'ALTER SYSTEM refuses a listen address without a port (22023)');
like($stderr, qr/DETAIL:  The address has no port\.\n.*HINT:  Use host:port/s, 'with a detail and a hint');
for my $bad ('127.0.0.1:65536', '::1:8080', '1.2.3:80', 'bad_host:80', '[::1:80', ':8080', 'host:')
{
	($ret, $stdout, $stderr) = $node->psql('postgres', "ALTER SYSTEM SET ductape.webhook_listen = '$bad'");
	like($stderr, qr/invalid value for parameter "ductape.webhook_listen"/, "'$bad' is refused");
}
for my $good ('0.0.0.0:8080', '[::1]:0', 'hooks.example.com:443', 'localhost:1', '')
{
	($ret, $stdout, $stderr) = $node->psql('postgres', "ALTER SYSTEM SET ductape.webhook_listen = '$good'");
	is($ret, 0, "'$good' is accepted");
}
$node->safe_psql('postgres', 'ALTER SYSTEM RESET ductape.webhook_listen');

# In postgresql.conf at start: the server starts with a warning, without the
# listener (a custom setting's bad value is not fatal; this one is
# PGC_POSTMASTER, so the default, off, applies).
$node->stop;
$node->append_conf('postgresql.conf', "ductape.webhook_listen = '127.0.0.1'\n");
$log_offset = -s $node->logfile;
$node->start;
like(slurp_file($node->logfile, $log_offset),
	qr/WARNING:  invalid value for parameter "ductape.webhook_listen": "127.0.0.1"\n.*DETAIL:  The address has no port\./,
	'a bad value in postgresql.conf is reported in the log at start');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ductape webhook listener'"),
	'0', 'and the listener is off');
($ret, $stdout, $stderr) = $node->psql('postgres', "\\set VERBOSITY verbose\nSELECT ductape.webhook_url('lim', 'std')");
like($stderr, qr/ERROR:  55000: the webhook listener is off/, 'webhook_url says so (55000)');

$node->stop;
done_testing();
