# Faults the database worker's queues must survive without dying, looping or
# sending anything twice: an answer whose body jsonb cannot hold, an OAuth2
# token endpoint that keeps failing (or is slow, or gives short-lived
# tokens) for queued jobs, user code that keeps catching its cancel in a
# webhook handler or a workflow sql step, a sql step that is merely slow,
# and databases dropped while their worker serves a token request.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use DuctapeTest;
use IO::Socket::INET;
use Time::HiRes qw(time usleep);

my $api = api_url();
my $hook_port = PostgreSQL::Test::Cluster::get_free_port();
my $node = ductape_node('queue_faults', qq{
ductape.webhook_listen = '127.0.0.1:$hook_port'
ductape.webhook_database = 'postgres'
ductape.user_code_timeout = '1s'
max_worker_processes = 16
});

sub poll { return poll_until($node, 'postgres', @_); }

my $worker_pid = "SELECT pid FROM pg_stat_activity WHERE backend_type = 'ductape worker' AND datname = 'postgres'";
sub api_count
{
	my ($key) = @_;
	return $node->safe_psql('postgres',
		"SELECT ductape.http('GET', '$api/count/$key')->'body'->>'count'");
}

$node->safe_psql('postgres', qq{
CREATE EXTENSION ductape;
SELECT ductape.app_define('{"tag": "odd", "envs": [{"slug": "dev", "base_url": "$api"}],
  "actions": [{"tag": "num", "method": "GET", "resource": "/json", "query": {"body": "1e200000"}},
              {"tag": "deep", "method": "GET", "resource": "/nested/300000"},
              {"tag": "ok", "method": "GET", "resource": "/echo/ok"}]}');
});
ok(poll("SELECT count(*) FROM ($worker_pid) w", '1'), 'the worker runs');
my $pid = $node->safe_psql('postgres', $worker_pid);

# ---- an answer jsonb cannot hold ----
# 1e200000 is JSON, but no numeric; 300,000 nested arrays are JSON, but
# deeper than the stack.  The job fails with the reason; the worker lives
# on and sends each request once.
my ($ret, $out, $err) = $node->psql('postgres', "SELECT ductape.run('odd', 'num')");
like($err, qr/value overflows numeric format/, 'run() in a session: an error, not a crash');
my $num = $node->safe_psql('postgres', q{SELECT ductape.dispatch('odd', 'num', '{"headers:X-Test-Key": "odd-num"}')});
my $deep = $node->safe_psql('postgres', q{SELECT ductape.dispatch('odd', 'deep', '{"headers:X-Test-Key": "odd-deep"}')});
ok(poll("SELECT count(*) FROM ductape.jobs WHERE id IN ($num, $deep) AND state IN ('succeeded', 'failed')", '2', 20),
	'jobs whose answer jsonb cannot hold end');
is($node->safe_psql('postgres', "SELECT state || ': ' || error FROM ductape.jobs WHERE id = $num"),
	'failed: value overflows numeric format', 'the job says why (a number out of range)');
like($node->safe_psql('postgres', "SELECT state || ': ' || error FROM ductape.jobs WHERE id = $deep"),
	qr/^failed: stack depth limit exceeded/, 'the job says why (nesting)');
is($node->safe_psql('postgres', "SELECT attempts FROM ductape.jobs WHERE id = $num"), '1', 'one attempt');
is(api_count('odd-num'), '1', 'the request was sent once');
is(api_count('odd-deep'), '1', 'the other too');
is($node->safe_psql('postgres', $worker_pid), $pid, 'the same worker runs (it did not die)');
my $ok = $node->safe_psql('postgres', q{SELECT ductape.dispatch('odd', 'ok')});
is($node->safe_psql('postgres', "SELECT ductape.wait($ok, '10 s')->>'state'"), 'succeeded', 'and runs the next job');

# ---- an OAuth2 token endpoint that keeps failing ----
# A job that needs a token has the worker ask for one and waits in the
# queue meanwhile (without counting an attempt).  When the token endpoint
# refuses, the job fails with the endpoint's answer, after a bounded
# number of token requests -- not requeued every 50 ms for good.
$node->safe_psql('postgres', qq{
SELECT ductape.http('POST', '$api/oauth/reset')->'status', ductape.http('GET', '$api/reset')->'status';
SELECT ductape.secret_set('OA_BAD', 'not-the-client-secret');
SELECT ductape.app_define(jsonb_build_object('tag', 'oab',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', '$api')),
  'auth', jsonb_build_object('type', 'oauth2', 'grant', 'client_credentials', 'token_url', '$api/oauth/token',
                             'client_id', 'ductape-client', 'client_secret', '\$Secret{OA_BAD}'),
  'actions', jsonb_build_array(jsonb_build_object('tag', 'res', 'method', 'GET', 'resource', '/oauth/resource'))));
});
my $oab = $node->safe_psql('postgres', q{SELECT ductape.dispatch('oab', 'res')});
ok(poll("SELECT state FROM ductape.jobs WHERE id = $oab", 'failed', 20),
	'a job whose token request is refused fails');
like($node->safe_psql('postgres', "SELECT error FROM ductape.jobs WHERE id = $oab"),
	qr/^OAuth2 token request for app "oab" failed$/, 'with the token endpoint\'s refusal as its error');
cmp_ok(api_count('oauth-token'), '<=', 3, 'after a few token requests, not one every 50 ms');
is($node->safe_psql('postgres', "SELECT count(*) FROM ductape.jobs WHERE app = 'oab' AND state <> 'failed'"), '0',
	'nothing of it is left queued');

# ---- a slow token endpoint and many queued jobs ----
# The token request slots are shared by every database: the worker's own
# requests for queued jobs must not take them all, or a session of another
# database needing a token is refused.
$node->safe_psql('postgres', qq{
SELECT ductape.http('GET', '$api/reset')->'status';
SELECT ductape.app_define(jsonb_build_object('tag', 'oas',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', '$api')),
  'auth', jsonb_build_object('type', 'oauth2', 'grant', 'client_credentials',
                             'token_url', '$api/oauth/token?delay_ms=5000&fail=invalid_client',
                             'client_id', 'ductape-client', 'client_secret', 'x'),
  'actions', jsonb_build_array(jsonb_build_object('tag', 'res', 'method', 'GET', 'resource', '/oauth/resource'))));
SELECT count(ductape.dispatch('oas', 'res', jsonb_build_object('n', g))) FROM generate_series(1, 100) g;
});
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', qq{
CREATE EXTENSION ductape;
SELECT ductape.secret_set('OA', 's3cret/client:1');
SELECT ductape.app_define(jsonb_build_object('tag', 'oa',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', '$api')),
  'auth', jsonb_build_object('type', 'oauth2', 'grant', 'client_credentials', 'token_url', '$api/oauth/token',
                             'client_id', 'ductape-client', 'client_secret', '\$Secret{OA}'),
  'actions', jsonb_build_array(jsonb_build_object('tag', 'res', 'method', 'GET', 'resource', '/oauth/resource'))));
});
sleep 1;
($ret, $out, $err) = $node->psql('other', "SELECT ductape.run('oa', 'res')->>'path'");
is($ret . ': ' . $out . $err, '0: /oauth/resource', 'a session of another database gets its token meanwhile');
cmp_ok(api_count('oauth-token') - 1, '<=', 3, 'the queued jobs asked for one token at a time');
ok(poll("SELECT count(*) FROM ductape.jobs WHERE app = 'oas' AND state = 'failed'", '100', 60),
	'and they all fail with the refusal');

# ---- a provider whose tokens live shorter than the refresh buffer ----
# (30 s, the buffer 60 s): a session uses the token it asked for; so does
# the job, instead of asking again every 50 ms.
$node->safe_psql('postgres', qq{
SELECT ductape.http('GET', '$api/reset')->'status';
SELECT ductape.secret_set('OA', 's3cret/client:1');
SELECT ductape.app_define(jsonb_build_object('tag', 'osh',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', '$api')),
  'auth', jsonb_build_object('type', 'oauth2', 'grant', 'client_credentials',
                             'token_url', '$api/oauth/token?expires_in=30',
                             'client_id', 'ductape-client', 'client_secret', '\$Secret{OA}'),
  'actions', jsonb_build_array(jsonb_build_object('tag', 'res', 'method', 'GET', 'resource', '/oauth/resource'))));
});
my $osh = $node->safe_psql('postgres', q{SELECT ductape.dispatch('osh', 'res')});
is($node->safe_psql('postgres', "SELECT ductape.wait($osh, '15 s')->>'state'"), 'succeeded',
	'a job whose token lives shorter than the refresh buffer runs');
cmp_ok(api_count('oauth-token'), '<=', 2, 'with the token it asked for');

# ---- the message of a prepare error outlives the claim's transaction ----
# A claimed row whose request cannot be built fails alone, with the error's
# message; that message is written back after the claim has committed and,
# here, after the worker served a token request in transactions of its own.
$node->safe_psql('postgres', qq{
SELECT ductape.app_define(jsonb_build_object('tag', 'oslow',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', '$api')),
  'auth', jsonb_build_object('type', 'oauth2', 'grant', 'client_credentials',
                             'token_url', '$api/oauth/token?delay_ms=1000',
                             'client_id', 'ductape-client', 'client_secret', '\$Secret{OA}'),
  'actions', jsonb_build_array(jsonb_build_object('tag', 'res', 'method', 'GET', 'resource', '/oauth/resource'))));
});
my ($oslow, $broken) = split /\|/, $node->safe_psql('postgres', q{
BEGIN;
SELECT ductape.dispatch('oslow', 'res') || '|' || ductape.dispatch('odd', 'ok', run_at => now() + interval '1 second');
-- an administrator's direct edit: the stored action is no longer valid
UPDATE ductape.actions SET spec = spec || '{"method": 7}' WHERE app = 'odd' AND tag = 'ok';
UPDATE ductape.jobs SET next_attempt_at = now() WHERE app = 'odd' AND state = 'scheduled';
COMMIT;
});
ok(poll("SELECT state FROM ductape.jobs WHERE id = $broken", 'failed', 10), 'the job whose action is broken fails');
is($node->safe_psql('postgres', "SELECT error FROM ductape.jobs WHERE id = $broken"),
	'the stored definition of action "ok" of app "odd" is invalid', 'with the message of the error, intact');
is($node->safe_psql('postgres', "SELECT ductape.wait($oslow, '15 s')->>'state'"), 'succeeded',
	'and the job that waited for its token runs');

# ---- user code that keeps catching its cancel ----
# Past ductape.user_code_timeout (1 s here) it is cancelled, and when it
# catches that for 10 s more the worker ends.  The next worker must not run
# the same code again at once, for good: a webhook handler's event counts
# the attempt and waits before the next, and a workflow's sql step fails.
$node->safe_psql('postgres', q{
CREATE SEQUENCE public.runs;
CREATE FUNCTION public.stubborn(e jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM nextval('public.runs');
    LOOP
        BEGIN
            PERFORM pg_sleep(600);
        EXCEPTION WHEN query_canceled THEN
            NULL;
        END;
    END LOOP;
END $$;
SELECT ductape.app_define('{"tag": "hk", "envs": [{"slug": "dev", "base_url": "http://127.0.0.1:1"}],
  "webhooks": [{"tag": "in", "verify": {"scheme": "none"}, "type": "$Event{type}"}]}');
SELECT ductape.webhook_subscribe('hk', 'in', 'stubborn.*', 'public.stubborn(jsonb)');
});
my $url = $node->safe_psql('postgres', "SELECT ductape.webhook_url('hk', 'in')");
my ($path) = $url =~ m{^http://127\.0\.0\.1:$hook_port(/webhooks/[0-9a-f]{64})$};
ok($path, 'the webhook URL');
my $body = '{"type": "stubborn.1"}';
my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $hook_port, Timeout => 10) or die;
print $sock "POST $path HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
  . length($body) . "\r\nConnection: close\r\n\r\n$body";
like(<$sock> // '', qr{^HTTP/1\.1 200}, 'the event is accepted');
close $sock;
$pid = $node->safe_psql('postgres', $worker_pid);
ok(poll("SELECT count(*) FROM ($worker_pid) w WHERE pid <> $pid", '1', 40),
	'the handler that keeps catching its cancel ends the worker; a new one starts');
ok(poll("SELECT attempts FROM ductape.webhook_events WHERE event_type = 'stubborn.1'", '1', 20),
	'the event counts that attempt');
like($node->safe_psql('postgres', "SELECT error FROM ductape.webhook_events WHERE event_type = 'stubborn.1'"),
	qr/^public\.stubborn\(jsonb\): webhook handler public\.stubborn\(jsonb\) ended the previous worker: it kept running past ductape\.user_code_timeout/,
	'saying the handler ended the worker');
sleep 8;
cmp_ok($node->safe_psql('postgres', "SELECT last_value FROM public.runs"), '<=', 2,
	'and the handler is not run again and again');
$node->safe_psql('postgres', q{
SELECT ductape.webhook_unsubscribe(id) FROM ductape.webhook_subscriptions;
UPDATE ductape.webhook_events SET state = 'failed';
});

$node->safe_psql('postgres', q{
ALTER SEQUENCE public.runs RESTART;
CREATE FUNCTION public.stubborn_sql() RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    PERFORM public.stubborn('{}');
    RETURN 1;
END $$;
SELECT ductape.workflow_define('{"tag": "stuck", "steps": [{"tag": "s", "type": "sql", "sql": "SELECT public.stubborn_sql()"}]}');
});
$pid = $node->safe_psql('postgres', $worker_pid);
my $run = $node->safe_psql('postgres', q{SELECT ductape.workflow_start('stuck')});
ok(poll("SELECT count(*) FROM ($worker_pid) w WHERE pid <> $pid", '1', 40),
	'a sql step that keeps catching its cancel ends the worker; a new one starts');
ok(poll("SELECT state FROM ductape.workflow_runs WHERE id = $run", 'rolled_back', 30),
	'the run fails (and is rolled back)');
like($node->safe_psql('postgres', "SELECT error FROM ductape.workflow_runs WHERE id = $run"),
	qr/^step s failed: a workflow sql step ended the previous worker/, 'saying the step ended the worker');
cmp_ok($node->safe_psql('postgres', "SELECT last_value FROM public.runs"), '<=', 1,
	'the step ran once');

# ---- a sql step that is merely slow ----
# Cancelled past the timeout (57014, which plpgsql's WHEN OTHERS does not
# catch), it fails its run; the tick is not rolled back, and the other runs
# go on.
$node->safe_psql('postgres', q{
SELECT ductape.workflow_define('{"tag": "slow", "steps": [{"tag": "s", "type": "sql", "sql": "SELECT pg_sleep(600)"}]}');
SELECT ductape.workflow_define('{"tag": "quick", "steps": [{"tag": "q", "type": "sql", "sql": "SELECT 1 AS one"}]}');
});
my $slow = $node->safe_psql('postgres', q{SELECT ductape.workflow_start('slow')});
my $quick = $node->safe_psql('postgres', q{SELECT pg_sleep(0.3); SELECT ductape.workflow_start('quick')});
ok(poll("SELECT state FROM ductape.workflow_runs WHERE id = $slow", 'rolled_back', 20), 'the slow step fails its run');
like($node->safe_psql('postgres', "SELECT error FROM ductape.workflow_runs WHERE id = $slow"),
	qr/^step s failed: a workflow sql step ran longer than ductape\.user_code_timeout \(1000 ms\) and was cancelled$/,
	'saying why');
ok(poll("SELECT state FROM ductape.workflow_runs WHERE id = $quick", 'completed', 20), 'and the other run completes');

# ---- token requests of a dropped database ----
# DROP DATABASE stops the database's worker, perhaps while it serves a
# token request: that request's slot (of 32, shared by every database) is
# given back, and so is one still pending.  33 drops, then a session
# still gets a token.
for my $i (1 .. 33)
{
	$node->safe_psql('postgres', "CREATE DATABASE drop_$i");
	$node->safe_psql("drop_$i", qq{
CREATE EXTENSION ductape;
SELECT ductape.app_define(jsonb_build_object('tag', 'od',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', '$api')),
  'auth', jsonb_build_object('type', 'oauth2', 'grant', 'client_credentials',
                             'token_url', '$api/oauth/token?delay_ms=2000',
                             'client_id', 'ductape-client', 'client_secret', 'x'),
  'actions', jsonb_build_array(jsonb_build_object('tag', 'res', 'method', 'GET', 'resource', '/oauth/resource'))));
SELECT ductape.dispatch('od', 'res');
SELECT pg_sleep(0.5);
});
	$node->safe_psql('postgres', "DROP DATABASE drop_$i");
}
$node->safe_psql('other', 'DELETE FROM ductape._oauth_tokens');
($ret, $out, $err) = $node->psql('other', "SELECT ductape.run('oa', 'res')->>'path'");
is($ret . ': ' . $out . $err, '0: /oauth/resource', 'after 33 databases dropped while their workers served a token, a session gets one');

$node->stop;
done_testing();
