# Flow control ("limits" of an app and env, an endpoint's rate_limit), as
# the test API server sees it: it logs the arrival time of every request by
# X-Test-Key (/arrivals) and counts the requests open at once (/open).
#  a. 300 jobs to an app limited to 50 per second (burst 10) all succeed
#     at their first attempt, arrive over at least 5.5 s, and no 1-second
#     window holds more than burst + 50 = 60;
#  b. concurrency 2: 8 sessions calling at once never have more than 2
#     requests open at the server;
#  c. a call that cannot get a slot or a token within max_wait_ms raises
#     DT004 after max_wait_ms, or at once when the token is due later;
#  d. a 429 with Retry-After pauses the app and env for every caller, sync
#     and queue; a 429 without it halves the rate for a while;
#  e. statement_timeout and pg_cancel_backend end a wait cleanly, nothing is
#     left counted as waiting or in flight;
#  f. an endpoint's rate_limit spaces its deliveries, none fails;
#  g. a configuration reload while jobs drain keeps the limit;
#  h. sync sessions and the worker share one limit;
#  i. an env's limits override the app's key by key.
# Timing bounds follow from the limits declared (a token bucket: in any
# window of W seconds at most burst + rate*W requests start); the upper
# bounds on counts are exact, the lower bounds on spans allow 0.1 s.
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

my $api = api_url();
my $node = ductape_node('limits');

sub sql { return $node->safe_psql('postgres', @_); }
sub poll { return poll_until($node, 'postgres', @_); }

# An app with env dev (and more envs from $envs, a JSON list's items) whose
# actions are the server's /echo, /delay/:ms and /status/:code; the test key
# goes in the input ("headers:X-Test-Key").
sub app
{
	my ($tag, $limits, $envs) = @_;
	my $lim = defined $limits ? qq{, "limits": $limits} : '';
	my $more = defined $envs ? ", $envs" : '';
	sql(qq{SELECT ductape.app_define('{"tag": "$tag", "envs": [{"slug": "dev", "base_url": "$api"}$more]$lim,
  "actions": [{"tag": "echo", "method": "GET", "resource": "/echo/$tag"},
              {"tag": "delay", "method": "GET", "resource": "/delay/:ms"},
              {"tag": "status", "method": "GET", "resource": "/status/:code"}]}')});
}

# The input of a call carrying test key $key (and more keys, JSON).
sub input
{
	my ($key, $more) = @_;
	return $more
	  ? qq{'{"headers:X-Test-Key": "$key", $more}'}
	  : qq{'{"headers:X-Test-Key": "$key"}'};
}

# The server's arrival times for $key, sorted, in epoch seconds.
sub arrivals
{
	my ($key) = @_;
	my $at = sql("SELECT ductape.http('GET', '$api/arrivals/$key')->'body'->'at'");
	$at =~ s/[\[\]\s]//g;
	return sort { $a <=> $b } grep { length } split /,/, $at;
}

# The most arrivals in any closed window of $w seconds; in list context
# also where the first such window starts, in seconds after the first
# arrival, and its arrivals' indexes.
sub max_window
{
	my ($w, @t) = @_;
	my ($max, $j, $at) = (0, 0, 0);
	for my $i (0 .. $#t)
	{
		$j++ while $j <= $#t && $t[$j] <= $t[$i] + $w;
		($max, $at) = ($j - $i, $i) if $j - $i > $max;
	}
	return wantarray ? ($max, @t ? sprintf('%.6f s after the first, arrivals %d to %d', $t[$at] - $t[0], $at, $at + $max - 1) : '') : $max;
}

# "open max" of the server's /open/<key>
sub open_count
{
	my ($key) = @_;
	return sql("SELECT (b->>'open') || ' ' || (b->>'max') FROM (SELECT ductape.http('GET', '$api/open/$key')->'body' b) s");
}

sub server_count
{
	my ($key) = @_;
	return sql("SELECT ductape.http('GET', '$api/count/$key')->'body'->>'count'");
}

# Starts psql with one -c per statement; returns the handle and a reference
# to its output (stdout and stderr; errors with their SQLSTATE).
sub session
{
	my @sql = @_;
	my $out = '';
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-At', '-v', 'VERBOSITY=verbose', '-d', $node->connstr('postgres'),
		  map { ('-c', $_) } @sql ],
		'>', \$out, '2>', \$out);
	return ($h, \$out);
}

# The query of a view row's columns, and its result.
sub limits_sql
{
	my ($cols, $where) = @_;
	return "SELECT $cols FROM ductape.limits WHERE $where";
}
sub limits_row { return sql(limits_sql(@_)); }

# What the jobs of $app that did not succeed are doing (for diag).
sub unfinished
{
	my ($app) = @_;
	return sql("SELECT string_agg(id || ' ' || state || ' attempts ' || attempts || ' due ' || next_attempt_at
	                               || ' error ' || coalesce(error, '-'), E'\n')
	              FROM ductape.jobs WHERE app = '$app' AND state <> 'succeeded'")
	  . "\ntheir calls: " . sql("SELECT string_agg(c.at || ' status ' || coalesce(c.status::text, '-') || ' error ' || coalesce(c.error, '-'), E'\\n')
	              FROM ductape.calls c JOIN ductape.jobs j ON j.id = c.job_id WHERE j.app = '$app' AND j.state <> 'succeeded'")
	  . "\nworker: " . sql("SELECT string_agg(state || ' ' || coalesce(wait_event, '-') || ' ' || left(query, 60), E'\\n')
	              FROM pg_stat_activity WHERE backend_type = 'ductape worker'");
}

sql(q{
CREATE EXTENSION ductape;
SELECT ductape.http('GET', '} . $api . q{/reset');
-- a call timed in the backend: 'ok|ms' or 'SQLSTATE|ms|message|detail'
CREATE FUNCTION lim_try(a text, act text, inp jsonb, e text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
    st text; m text; d text;
BEGIN
    PERFORM ductape.run(a, act, inp, e);
    RETURN 'ok|' || round(extract(epoch FROM clock_timestamp() - t0) * 1000);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL;
    RETURN st || '|' || round(extract(epoch FROM clock_timestamp() - t0) * 1000) || '|' || m || '|' || coalesce(d, '');
END $$;
CREATE TABLE d_result (status int, paused boolean, at timestamptz);
});

app('lima', '{"rate": 50, "per": "1s", "burst": 10}');
app('limb', '{"concurrency": 2, "max_wait_ms": 20000}');
app('limc', '{"concurrency": 1, "max_wait_ms": 300}');
app('limcr', '{"rate": 1, "per": "10s", "burst": 1, "max_wait_ms": 300}');
app('limd', '{"max_wait_ms": 5000}');
app('limds', '{"rate": 20, "per": "1s"}');
app('lime', '{"concurrency": 1, "max_wait_ms": 10000}');
app('limg', '{"rate": 20, "per": "1s", "burst": 1}');
app('limh', '{"rate": 20, "per": "1s", "burst": 1, "max_wait_ms": 20000}');
app('limi', '{"rate": 1000}', qq{{"slug": "slow", "base_url": "$api", "limits": {"concurrency": 1}}});

# ==== phase 1: the queue parts (a, f, g) drain while b, e and i run ====

# a. 300 jobs at 50/s, burst 10
sql(qq{SELECT count(ductape.dispatch('lima', 'echo', jsonb_build_object('headers:X-Test-Key', 'lim-a', 'n', i)))
       FROM generate_series(1, 300) i});

# f. 200 messages to an endpoint limited to 20 deliveries a second
# (endpoint_create's rate_limit comes with the tenants work: until then this
# fails once and the rest of f is skipped)
my $has_rate_limit = sql("SELECT count(*) > 0 FROM pg_proc WHERE pronamespace = 'ductape'::regnamespace
  AND proname = 'endpoint_create' AND 'rate_limit' = ANY (proargnames)") eq 't';
ok($has_rate_limit, 'f: endpoint_create takes rate_limit');
my $ep;
if ($has_rate_limit)
{
	$ep = sql(qq{SELECT ductape.endpoint_create('$api/echo/limf', '{limf.*}',
  headers => '{"X-Test-Key": "lim-f"}', rate_limit => 20)});
	sql(qq{SELECT count(ductape.publish('limf.event', jsonb_build_object('n', i))) FROM generate_series(1, 200) i});
}

# g. 100 jobs at 20/s, burst 1; the configuration is reloaded (below)
sql(qq{SELECT count(ductape.dispatch('limg', 'echo', jsonb_build_object('headers:X-Test-Key', 'lim-g', 'n', i)))
       FROM generate_series(1, 100) i});
my $g_started = time;

# b. 8 sessions, 5 calls of 200 ms each, concurrency 2
my (@bh, @bout);
for (1 .. 8)
{
	my ($h, $out) = session(
		"SELECT count(ductape.run('limb', 'delay', " . input('lim-b', '"ms": 200') . ")) FROM generate_series(1, 5)");
	push @bh, $h;
	push @bout, $out;
}

# g: reload (the postmaster passes SIGHUP on to every process) and SIGHUP
# the worker itself, twice while the jobs drain
my $worker = sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'ductape worker' AND datname = 'postgres'");
for my $at (1.5, 3)
{
	my $sleep = $g_started + $at - time;
	usleep($sleep * 1e6) if $sleep > 0;
	sql('SELECT pg_reload_conf()');
	kill 'HUP', $worker;
}

$_->finish for @bh;
is(join('', map { $$_ } @bout), "5\n" x 8, 'b: the 8 sessions made their 5 calls each');
my ($open, $max) = split / /, open_count('lim-b');
is($max, 2, 'b: concurrency 2: at most 2 requests were open at the server at once (and 2 were)');
is(server_count('lim-b'), 40, 'b: all 40 requests reached the server');
is(limits_row("concurrency || '|' || (waited > 0) || '|' || in_flight || '|' || waiting || '|' || rejected", "app = 'limb' AND env = 'dev'"),
	'2|true|0|0|0', 'b: ductape.limits: concurrency 2, some calls waited, none in flight, waiting or rejected now');

# e. statement_timeout and a cancel during a wait
{
	my ($holder) = session("SELECT ductape.run('lime', 'delay', " . input('lim-e', '"ms": 3000') . ")");
	ok(poll("SELECT ductape.http('GET', '$api/open/lim-e')->'body'->>'open'", '1', 10),
		'e: a session holds the only slot');
	my $t0 = time;
	my ($ret, $out, $err) = $node->psql('postgres',
		"SET statement_timeout = '300ms';\nSELECT ductape.run('lime', 'echo', " . input('lim-e-t') . ");",
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	my $took = time - $t0;
	like($err, qr/ERROR:  57014: canceling statement due to statement timeout/,
		'e: statement_timeout ends a wait for a slot with 57014');
	cmp_ok($took, '<', 2, sprintf('e: promptly (%.2f s)', $took));
	is(limits_row('waiting', "app = 'lime' AND env = 'dev'"), '0', 'e: nobody is counted as waiting after it');
	$holder->finish;
	ok(poll(limits_sql('in_flight', "app = 'lime' AND env = 'dev'"), '0', 10),
		'e: nothing in flight once the holder finished');
	is(sql("SELECT lim_try('lime', 'echo', " . input('lim-e') . ")") =~ s/\|.*//r, 'ok',
		'e: a new call gets the slot');

	# the same with pg_cancel_backend of a waiting session
	($holder) = session("SELECT ductape.run('lime', 'delay', " . input('lim-e', '"ms": 3000') . ")");
	ok(poll("SELECT ductape.http('GET', '$api/open/lim-e')->'body'->>'open'", '1', 10),
		'e: a session holds the slot again');
	my ($waiter, $wout) = session("SELECT ductape.run('lime', 'echo', " . input('lim-e-w', '"w": "cancelme"') . ")");
	ok(poll(limits_sql('waiting', "app = 'lime' AND env = 'dev'"), '1', 10),
		'e: ductape.limits counts one session waiting');
	is(sql("SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity
           WHERE query LIKE '%cancelme%' AND pid <> pg_backend_pid()"), '1', 'e: it is cancelled');
	$waiter->finish;
	like($$wout, qr/ERROR:  57014: canceling statement due to user request/,
		'e: pg_cancel_backend ends a wait with 57014');
	is(limits_row('waiting', "app = 'lime' AND env = 'dev'"), '0', 'e: nobody waiting after the cancel');
	$holder->finish;
	ok(poll(limits_sql('in_flight', "app = 'lime' AND env = 'dev'"), '0', 10),
		'e: nothing in flight after the cancel either');
	is(sql("SELECT lim_try('lime', 'echo', " . input('lim-e') . ")") =~ s/\|.*//r, 'ok',
		'e: and a new call gets the slot');
	is(server_count('lim-e-t') . '/' . server_count('lim-e-w'), '0/0',
		'e: neither the timed-out nor the cancelled call reached the server');
}

# i. env override: app rate 1000, env slow concurrency 1
sql("SELECT ductape.run('limi', 'echo', '{}', 'dev'), ductape.run('limi', 'echo', '{}', 'slow')");
is(limits_row("rate || '|' || coalesce(concurrency::text, 'null')", "app = 'limi' AND env = 'slow'"),
	'1000|1', 'i: env slow has the app\'s rate and its own concurrency');
is(limits_row("rate || '|' || coalesce(concurrency::text, 'null')", "app = 'limi' AND env = 'dev'"),
	'1000|null', 'i: env dev has the app\'s rate and no concurrency limit');

# a: the results
ok(poll("SELECT count(*) FROM ductape.jobs WHERE app = 'lima' AND state = 'succeeded'", '300', 30),
	'a: all 300 jobs succeeded')
  or diag(unfinished('lima'));
is(sql("SELECT count(*) FROM ductape.jobs WHERE app = 'lima' AND attempts <> 1"), '0',
	'a: each at its first attempt (waiting is not an attempt)');
my @t = arrivals('lim-a');
is(scalar @t, 300, 'a: the server saw 300 requests');
my $span = @t ? $t[-1] - $t[0] : 0;
my $win = max_window(1, @t);
# (10 at once, then 290 at 50/s: 5.8 s)
cmp_ok($span, '>=', 5.5, sprintf('a: the arrivals span %.2f s (>= 5.5)', $span));
my ($wmax, $wat) = max_window(1, @t);
cmp_ok($win, '<=', 60, "a: at most burst + rate = 60 in any 1-second window ($win)")
  or diag("the window starts $wat; the first 60 and last 5 gaps in ms: "
	  . join(' ', map { sprintf('%.1f', ($t[$_] - $t[$_ - 1]) * 1000) } 1 .. 60) . ' ... '
	  . join(' ', map { sprintf('%.1f', ($t[$_] - $t[$_ - 1]) * 1000) } $#t - 4 .. $#t));
is(limits_row("rate || '|' || per || '|' || burst || '|' || granted || '|' || (waited > 0)", "app = 'lima' AND env = 'dev'"),
	'50|00:00:01|10|300|true', 'a: ductape.limits: the declared limit, 300 granted, some waited');

# g: the results
ok(poll("SELECT count(*) FROM ductape.jobs WHERE app = 'limg' AND state = 'succeeded'", '100', 30),
	'g: all 100 jobs succeeded through the reloads')
  or diag(unfinished('limg'));
@t = arrivals('lim-g');
$span = @t ? $t[-1] - $t[0] : 0;
$win = max_window(1, @t);
cmp_ok($span, '>=', 4.9, sprintf('g: the arrivals span %.2f s (>= 4.9)', $span));
cmp_ok($win, '<=', 22, "g: at most 22 in any 1-second window ($win)");

# f: the results
SKIP:
{
skip 'endpoint_create has no rate_limit', 6 unless $has_rate_limit;
ok(poll("SELECT count(*) FROM ductape.outbox WHERE endpoint_id = $ep AND state = 'succeeded'", '200', 60),
	'f: all 200 messages delivered');
is(sql("SELECT count(*) || '/' || count(*) FILTER (WHERE succeeded AND attempt = 1) FROM ductape.deliveries WHERE endpoint_id = $ep"),
	'200/200', 'f: each delivered at its first attempt (waiting is not an attempt)');
@t = arrivals('lim-f');
is(scalar @t, 200, 'f: the endpoint received 200 requests');
$span = @t ? $t[-1] - $t[0] : 0;
$win = max_window(1, @t);
cmp_ok($span, '>=', 9, sprintf('f: the deliveries span %.2f s (>= 9)', $span));
cmp_ok($win, '<=', 22, "f: at most 22 in any 1-second window ($win)");
is(limits_row('rate', "endpoint_id = $ep"), '20', 'f: ductape.limits has the endpoint\'s row');
}

# ==== phase 2: the timing parts, one at a time ====

# c. concurrency 1, max_wait_ms 300: DT004 after 300 ms
{
	my ($holder) = session("SELECT ductape.run('limc', 'delay', " . input('lim-c', '"ms": 3000') . ")");
	ok(poll("SELECT ductape.http('GET', '$api/open/lim-c')->'body'->>'open'", '1', 10),
		'c: a session holds the only slot');
	my ($st, $ms, $msg, $detail) = split /\|/, sql("SELECT lim_try('limc', 'echo', " . input('lim-c-2') . ")"), 4;
	is($st, 'DT004', 'c: a call that gets no slot within max_wait_ms raises DT004');
	cmp_ok($ms, '<=', 350, "c: after at most max_wait_ms + 50 ms ($ms ms)");
	cmp_ok($ms, '>=', 280, "c: not before max_wait_ms ($ms ms)");
	like($msg, qr/^rate limit of app "limc"/, 'c: the message names the app');
	like($detail // '', qr/^The limit is 1 in flight at once;/, 'c: the detail names the limit');
	my ($waited) = ($detail // '') =~ /the call waited (\d+) ms/;
	ok(defined $waited && $waited >= 280 && $waited <= 350, 'c: and how long it waited (' . ($waited // '?') . ' ms)');
	is(server_count('lim-c-2'), '0', 'c: the refused call was not sent');
	is(limits_row("rejected || '|' || in_flight", "app = 'limc' AND env = 'dev'"), '1|1',
		'c: ductape.limits counts it rejected; the holder is in flight');
	$holder->finish;

	# rate 1 per 10 s: the second call's token is due in 10 s, past max_wait_ms
	is(sql("SELECT lim_try('limcr', 'echo', " . input('lim-cr') . ")") =~ s/\|.*//r, 'ok',
		'c: rate 1 per 10 s: the first call is sent');
	($st, $ms, $msg, $detail) = split /\|/, sql("SELECT lim_try('limcr', 'echo', " . input('lim-cr') . ")"), 4;
	is($st, 'DT004', 'c: the second raises DT004');
	cmp_ok($ms, '<', 100, "c: at once, its token being due past max_wait_ms ($ms ms)");
	like($msg, qr/^rate limit of app "limcr"/, 'c: the message names the app');
	like($detail // '', qr/^The limit is 1 request per 10s \(burst 1\);.* the call waited \d+ ms/,
		'c: the detail names the limit and the wait');
	is(server_count('lim-cr'), '1', 'c: only the first reached the server');
}

# d. a 429 with Retry-After: 2 pauses app limd (env dev) for every caller.
# Three sessions and a dispatcher wait on an advisory lock that the session
# making the 429 call holds until its transaction ends, right after it.
{
	my ($h429, $out429) = session(qq{DO \$\$
DECLARE r jsonb;
BEGIN
    PERFORM pg_advisory_xact_lock(4290);
    WHILE (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4290 AND NOT granted) < 4 LOOP
        IF clock_timestamp() > statement_timestamp() + interval '30 s' THEN
            RAISE 'the 4 sessions of d did not come';
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
    r := ductape.run_response('limd', 'status', '{"code": 429, "query:retry_after": "2", "headers:X-Test-Key": "lim-d-429"}',
                              options => '{"retries": {"max": 0}}');
    INSERT INTO d_result
    SELECT (r->>'status')::int, (SELECT paused_until > clock_timestamp() FROM ductape.limits WHERE app = 'limd' AND env = 'dev'),
           clock_timestamp();
END \$\$});
	# the others start once it holds the lock
	ok(poll("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4290 AND granted", '1', 10),
		'd: the session that makes the 429 call holds the lock the others wait on');
	my (@dh, @dout);
	for (1 .. 3)
	{
		my ($h, $out) = session('SELECT pg_advisory_lock_shared(4290)',
			"SELECT lim_try('limd', 'echo', " . input('lim-d') . ")");
		push @dh, $h;
		push @dout, $out;
	}
	my ($jh, $jout) = session('SELECT pg_advisory_lock_shared(4290)',
		"SELECT ductape.dispatch('limd', 'echo', " . input('lim-d-job') . ")");
	$h429->finish;
	$_->finish for @dh, $jh;
	is(sql("SELECT status || '|' || coalesce(paused::text, 'null') FROM d_result"), '429|true',
		'd: the call got its 429, and ductape.limits shows limd paused right after it')
	  or diag($$out429);
	for my $i (0 .. 2)
	{
		my ($st, $ms) = (split /\n/, ${ $dout[$i] })[-1] =~ /^([^|]*)\|(\d+)/;
		is($st, 'ok', "d: session $i: its call succeeded") or diag(${ $dout[$i] });
		ok(defined $ms && $ms >= 1700 && $ms <= 3000, "d: session $i: after waiting out the pause (" . ($ms // '?') . " ms, 1700-3000)");
	}
	my ($job) = $$jout =~ /(\d+)\s*$/;
	is(sql("SELECT ductape.wait($job, '10 s')->>'state'"), 'succeeded', 'd: the job dispatched then succeeded');
	my ($at429) = arrivals('lim-d-429');
	my ($atjob) = arrivals('lim-d-job');
	my $gap = defined $at429 && defined $atjob ? $atjob - $at429 : -1;
	cmp_ok($gap, '>=', 1.7, sprintf('d: the job was sent %.2f s after the 429 (>= 1.7)', $gap));
	is(sql("SELECT attempts FROM ductape.jobs WHERE id = $job"), '1', 'd: at its first attempt');

	# a 429 without Retry-After halves a declared rate for 60 s
	is(sql("SELECT ductape.run_response('limds', 'status', '{\"code\": 429}', options => '{\"retries\": {\"max\": 0}}')->>'status'"),
		'429', 'd: a 429 without Retry-After');
	is(limits_row("effective_rate || '|' || (slowed_until > clock_timestamp() + interval '50 s') || '|' || coalesce(paused_until > clock_timestamp(), false)",
			"app = 'limds' AND env = 'dev'"),
		'10|true|false', 'd: halves the rate 20 to 10 for 60 s, without a pause');
}

# h. the worker's jobs and two sessions' calls share one limit of 20/s
{
	sql(qq{SELECT count(ductape.dispatch('limh', 'echo', jsonb_build_object('headers:X-Test-Key', 'lim-h', 'n', i)))
           FROM generate_series(1, 60) i});
	my (@hh, @hout);
	for (1 .. 2)
	{
		my ($h, $out) = session("SELECT count(ductape.run('limh', 'echo', " . input('lim-h') . ")) FROM generate_series(1, 20)");
		push @hh, $h;
		push @hout, $out;
	}
	$_->finish for @hh;
	is(join('', map { $$_ } @hout), "20\n20\n", 'h: both sessions made their 20 calls');
	ok(poll("SELECT count(*) FROM ductape.jobs WHERE app = 'limh' AND state = 'succeeded'", '60', 30),
		'h: the 60 jobs succeeded');
	@t = arrivals('lim-h');
	is(scalar @t, 100, 'h: the server saw 100 requests');
	$span = @t ? $t[-1] - $t[0] : 0;
	$win = max_window(1, @t);
	cmp_ok($span, '>=', 4.9, sprintf('h: they span %.2f s (>= 4.9)', $span));
	cmp_ok($win, '<=', 22, "h: at most 22 in any 1-second window ($win)");
}

$node->stop;
done_testing();
