# The privilege boundary of the database worker, tried as an attacker would.
# The worker's session belongs to the bootstrap superuser; every piece of
# user code it runs (job callbacks, webhook handlers, workflow sql steps)
# must run as its owner, unable to change the worker's session or to act as
# anyone else.  Each round below is an attack that worked against 0.2.0:
#  1. a usage role's job callback leaves a search_path in the worker's
#     session, so the worker's next unqualified now() runs the role's own
#     now() as the superuser;
#  2. an admin's workflow sql step breaks out of the statement it was pasted
#     into, or calls a function that does RESET ROLE;
#  3. an admin rewrites webhook_subscriptions.role;
#  4. a workflow started from a callback runs as the superuser;
#  5. a database owner's public.= operator on ductape.job_state runs as the
#     worker.
# Plus: after a callback that changes settings, tries temp objects and
# session locks and then fails, the next callback in the same worker sees
# none of it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use DuctapeTest;
use Time::HiRes qw(time sleep);

my $api = api_url();
my $node = ductape_node('boundary');
sub poll { return poll_until($node, 'postgres', @_); }
sub superuser { return $node->safe_psql('postgres', "SELECT rolsuper FROM pg_roles WHERE rolname = '$_[0]'"); }

$node->safe_psql('postgres', qq{
CREATE EXTENSION ductape;
CREATE ROLE app1 LOGIN;
CREATE ROLE adm LOGIN;
SELECT ductape.grant_usage('app1');
SELECT ductape.grant_admin('adm');
CREATE SCHEMA app1 AUTHORIZATION app1;
CREATE SCHEMA adm AUTHORIZATION adm;
-- what the callbacks and handlers saw, written as they ran
CREATE TABLE public.seen (what text, val text, at timestamptz DEFAULT clock_timestamp());
GRANT INSERT, SELECT ON public.seen TO PUBLIC;
SELECT ductape.app_define(jsonb_build_object('tag', 'b',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', '$api')),
  'actions', '[{"tag": "ping", "method": "GET", "resource": "/echo/ping"}]'::jsonb,
  'webhooks', '[{"tag": "in", "verify": {"scheme": "none"}, "type": "\$Event{type}"}]'::jsonb));
});

# ---- 1: a callback's search_path must not outlive the callback ----
$node->safe_psql('postgres', q{
SET ROLE app1;
CREATE FUNCTION app1.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN
    IF current_user <> 'app1' THEN
        EXECUTE 'ALTER ROLE app1 SUPERUSER';
    END IF;
    RETURN pg_catalog.now();
END $$;
GRANT EXECUTE ON FUNCTION app1.now() TO PUBLIC;
CREATE FUNCTION app1.cb(job jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'app1, pg_catalog', false);
END $$;
SELECT ductape.dispatch('b', 'ping', on_success => 'app1.cb(jsonb)') IS NOT NULL;
});
ok(poll("SELECT count(*) FROM ductape.jobs WHERE state = 'succeeded'", '1'), '1: the callback job ran');
# more work for the worker after the callback: claims, write-backs, purges
$node->safe_psql('postgres', q{SELECT count(ductape.dispatch('b', 'ping')) FROM generate_series(1, 20)});
ok(poll("SELECT count(*) FROM ductape.jobs WHERE state = 'succeeded'", '21'), '1: later jobs ran');
is(superuser('app1'), 'f', '1: a callback setting search_path does not make its role a superuser');

# ---- 2: a workflow sql step is one SELECT run as the starter ----
$node->safe_psql('postgres', q{
SET ROLE adm;
CREATE FUNCTION adm.esc() RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    RESET ROLE;
    EXECUTE 'ALTER ROLE adm SUPERUSER';
    RETURN 1;
END $$;
SELECT ductape.workflow_define('{"tag": "inject", "steps": [{"tag": "s", "type": "sql",
  "sql": "SELECT 1 AS x) q; RESET ROLE; ALTER ROLE adm SUPERUSER; SELECT to_jsonb(q) FROM (SELECT 1 AS x"}]}');
SELECT ductape.workflow_define('{"tag": "reset", "steps": [{"tag": "s", "type": "sql", "sql": "SELECT adm.esc()"}]}');
SELECT ductape.workflow_define('{"tag": "multi", "steps": [{"tag": "s", "type": "sql", "sql": "SELECT 1; ALTER ROLE adm SUPERUSER"}]}');
SELECT ductape.workflow_define('{"tag": "who", "steps": [{"tag": "s", "type": "sql",
  "sql": "SELECT current_user::text AS who, session_user::text AS session"}], "output": "$Step{s}{who}"}');
SELECT ductape.workflow_start('inject') > 0, ductape.workflow_start('reset') > 0,
       ductape.workflow_start('multi') > 0;
RESET ROLE;
-- (a usage role starts the admin's workflow: its sql step is the admin's code
-- and runs as the admin, never with the starter's rights)
SET ROLE app1;
SELECT ductape.workflow_start('who') > 0;
});
ok(poll("SELECT count(*) FROM ductape.workflow_runs WHERE state <> 'running'", '4'), '2: the runs ended');
is(superuser('adm'), 'f', '2: neither a pasted statement nor RESET ROLE in a step makes the admin a superuser');
is($node->safe_psql('postgres', "SELECT state || ': ' || coalesce(error, '') FROM ductape.workflow_runs WHERE tag = 'inject'"),
	'rolled_back: step s failed: syntax error at or near ")"',
	'2: a step that would close the statement it was pasted into is not valid SQL on its own');
is($node->safe_psql('postgres', "SELECT state || ': ' || coalesce(error, '') FROM ductape.workflow_runs WHERE tag = 'multi'"),
	'rolled_back: step s failed: a workflow sql step must be exactly one SELECT statement',
	'2: a step holding several statements fails');
like($node->safe_psql('postgres', "SELECT error FROM ductape.workflow_runs WHERE tag = 'reset'"),
	qr/cannot set parameter "role" within security-(restricted operation|definer function)/,
	'2: RESET ROLE inside a step is refused');
is($node->safe_psql('postgres', "SELECT role || ' ' || (output #>> '{}') FROM ductape.workflow_runs WHERE tag = 'who'"), 'app1 adm',
	'2: a run is its starter\'s, its sql step runs as the workflow\'s definer');
# nobody rewrites a workflow's code behind its definer's back
my ($wret, $wout, $werr) = $node->psql('postgres', q{SET ROLE adm; UPDATE ductape.workflows SET spec = spec WHERE tag = 'who'});
like($werr, qr/permission denied for table workflows/, '2: admins cannot edit a definition directly');

# ---- 3: nobody can say whom a handler runs as but ductape ----
my ($ret, $out, $err) = $node->psql('postgres', q{
SET ROLE adm;
CREATE FUNCTION adm.h(e jsonb) RETURNS void LANGUAGE sql AS $$ INSERT INTO public.seen (what, val) VALUES ('handler', current_user) $$;
SELECT ductape.webhook_subscribe('b', 'in', '*', 'adm.h(jsonb)') > 0;
UPDATE ductape.webhook_subscriptions SET role = 'postgres';
});
like($err, qr/permission denied for table webhook_subscriptions/, '3: an admin cannot rewrite the role of a subscription');
$node->safe_psql('postgres', q{
INSERT INTO ductape.webhook_events (app, webhook, env, product, event_type, headers, payload, role)
VALUES ('b', 'in', 'dev', 'default', 'x', '{}', '{"type": "x"}', 'adm');
});
ok(poll("SELECT count(*) FROM ductape.webhook_events WHERE state = 'handled'", '1'), '3: the event was handled');
is($node->safe_psql('postgres', "SELECT string_agg(val, ',') FROM public.seen WHERE what = 'handler'"), 'adm',
	'3: the handler ran as its subscriber');

# ---- 4: a workflow started from a callback runs as the callback's role ----
$node->safe_psql('postgres', q{
SET ROLE adm;
SELECT ductape.workflow_define('{"tag": "who2", "steps": [{"tag": "s", "type": "sql",
  "sql": "SELECT current_user::text AS who"}], "output": "$Step{s}{who}"}');
RESET ROLE;
GRANT EXECUTE ON FUNCTION ductape.workflow_start(text, jsonb, text, text, text) TO app1;
SET ROLE app1;
CREATE FUNCTION app1.starts(job jsonb) RETURNS void LANGUAGE sql AS $$ SELECT ductape.workflow_start('who2') $$;
SELECT ductape.dispatch('b', 'ping', on_success => 'app1.starts(jsonb)') IS NOT NULL;
});
ok(poll("SELECT count(*) FROM ductape.workflow_runs WHERE tag = 'who2' AND state <> 'running'", '1'),
	'4: the run started by a callback ended');
is($node->safe_psql('postgres', "SELECT role || ' ' || coalesce(output #>> '{}', error) FROM ductape.workflow_runs WHERE tag = 'who2'"),
	'app1 adm', '4: it is the callback\'s role\'s run (and its sql step the definer\'s), not the worker\'s superuser\'s');

# ---- 5: a database owner's operator never runs as the worker ----
$node->safe_psql('postgres', q{
CREATE ROLE dbo LOGIN;
CREATE DATABASE owned OWNER dbo;
});
# the owner also gives the database settings the worker connects with
$node->safe_psql('owned', q{
SET ROLE dbo;
CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN
    IF current_user <> 'dbo' THEN
        EXECUTE 'ALTER ROLE dbo SUPERUSER';
    END IF;
    RETURN pg_catalog.now();
END $$;
ALTER DATABASE owned SET search_path = public, pg_catalog;
ALTER DATABASE owned SET role = 'dbo';
ALTER DATABASE owned SET statement_timeout = '1ms';
ALTER DATABASE owned SET default_transaction_read_only = on;
});
# (this test's own sessions there override them from the client)
$ENV{PGOPTIONS} = '-c statement_timeout=0 -c default_transaction_read_only=off -c role=none';
$node->safe_psql('owned', q{
CREATE EXTENSION ductape;
SELECT ductape.grant_usage('dbo');
SELECT ductape.app_define(jsonb_build_object('tag', 'b',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', '} . $api . q{')),
  'actions', '[{"tag": "ping", "method": "GET", "resource": "/echo/ping"}]'::jsonb));
});
$node->safe_psql('owned', q{
SET ROLE dbo;
CREATE FUNCTION public.state_eq(a ductape.job_state, b ductape.job_state) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    -- (only in the worker: the test's own queries below must not set it off)
    IF current_user <> 'dbo' AND (SELECT backend_type FROM pg_catalog.pg_stat_activity
                                   WHERE pid = pg_catalog.pg_backend_pid()) = 'ductape worker' THEN
        EXECUTE 'ALTER ROLE dbo SUPERUSER';
    END IF;
    RETURN a::text = b::text;
END $$;
CREATE OPERATOR public.= (LEFTARG = ductape.job_state, RIGHTARG = ductape.job_state, FUNCTION = public.state_eq);
});
$node->safe_psql('owned', q{SELECT count(ductape.dispatch('b', 'ping')) FROM generate_series(1, 5)});
ok(poll_until($node, 'owned', "SELECT count(*) FROM ductape.jobs WHERE state::text = 'succeeded'", '5'),
	'5: jobs ran, whatever the database\'s settings (role, search_path, statement_timeout, read only)');
is(superuser('dbo'), 'f', '5: neither an operator nor a now() in public runs as the worker');
delete $ENV{PGOPTIONS};

# ---- a callback cannot leave anything behind in the worker's session ----
# (app1.tries attempts SET ROLE and a temp table and records what it was told;
# app1.messy does that too, leaves settings, a lock and a prepared statement
# behind, then fails, so what it wrote is rolled back)
$node->safe_psql('postgres', q{
CREATE FUNCTION app1.tries(job jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        EXECUTE 'SET ROLE adm';
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO public.seen (what, val) VALUES ('set role', SQLERRM);
    END;
    BEGIN
        EXECUTE 'CREATE TEMP TABLE t (x int)';
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO public.seen (what, val) VALUES ('temp', SQLERRM);
    END;
END $$;
ALTER FUNCTION app1.tries(jsonb) OWNER TO app1;
CREATE FUNCTION app1.messy(job jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'app1', false);
    PERFORM pg_catalog.set_config('statement_timeout', '1', false);
    PERFORM pg_catalog.set_config('ductape.env', 'prd', false);
    PERFORM pg_catalog.pg_advisory_lock(4242);
    PERFORM app1.tries(job);
    EXECUTE 'PREPARE left_behind AS SELECT 1';
    RAISE EXCEPTION 'messy callback fails on purpose';
END $$;
ALTER FUNCTION app1.messy(jsonb) OWNER TO app1;
CREATE FUNCTION app1.look(job jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.seen (what, val) VALUES
      ('search_path', pg_catalog.current_setting('search_path')),
      ('statement_timeout', pg_catalog.current_setting('statement_timeout')),
      ('env', pg_catalog.current_setting('ductape.env')),
      ('user', current_user::text),
      ('locks', (SELECT count(*)::text FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid())),
      ('prepared', (SELECT count(*)::text FROM pg_catalog.pg_prepared_statements));
END $$;
ALTER FUNCTION app1.look(jsonb) OWNER TO app1;
SET ROLE app1;
SELECT ductape.dispatch('b', 'ping', on_success => 'app1.messy(jsonb)') IS NOT NULL;
});
my $messy_logged = 0;
for (1 .. 300)
{
	last if ($messy_logged = (slurp_file($node->logfile) =~ /messy callback fails on purpose/));
	sleep 0.1;
}
ok($messy_logged, 'the messy callback ran and failed');
$node->safe_psql('postgres', q{SET ROLE app1; SELECT ductape.dispatch('b', 'ping', on_success => 'app1.look(jsonb)') IS NOT NULL});
ok(poll("SELECT count(*) FROM public.seen WHERE what = 'user'", '1'), 'the next callback ran');
my %seen = map { split /\|/, $_, 2 } split /\n/,
	$node->safe_psql('postgres', "SELECT what, val FROM public.seen WHERE what IN ('search_path', 'statement_timeout', 'env', 'user', 'locks', 'prepared', 'set role', 'temp')");
is($seen{search_path}, '"$user", public', 'the next callback sees the default search_path');
is($seen{statement_timeout}, '0', 'and no statement_timeout left behind');
is($seen{env}, 'dev', 'and the default ductape.env');
is($seen{user}, 'app1', 'and runs as its own role');
is($seen{locks}, '0', 'no session advisory lock outlives the callback');
is($seen{prepared}, '0', 'no prepared statement outlives the callback');
# (the messy callback raised at the end, so what it wrote was rolled back: run a
# non-failing copy to see what SET ROLE and CREATE TEMP said)
$node->safe_psql('postgres', q{
SET ROLE app1;
SELECT ductape.dispatch('b', 'ping', on_success => 'app1.tries(jsonb)') IS NOT NULL;
});
ok(poll("SELECT count(*) FROM public.seen WHERE what IN ('set role', 'temp')", '2'), 'the trying callback ran');
like($node->safe_psql('postgres', "SELECT val FROM public.seen WHERE what = 'set role'"),
	qr/cannot set parameter "role" within security-(restricted operation|definer function)/, 'a callback cannot SET ROLE');
like($node->safe_psql('postgres', "SELECT val FROM public.seen WHERE what = 'temp'"),
	qr/cannot create temporary table within security-restricted operation/, 'a callback cannot create temp tables');

# ---- user code has a deadline: one slow callback does not hold the worker ----
$node->safe_psql('postgres', q{
ALTER SYSTEM SET ductape.user_code_timeout = '2s';
SELECT pg_reload_conf();
CREATE FUNCTION app1.slow(job jsonb) RETURNS void LANGUAGE sql AS $$ SELECT pg_sleep(600) $$;
ALTER FUNCTION app1.slow(jsonb) OWNER TO app1;
CREATE FUNCTION app1.stubborn(job jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    LOOP
        BEGIN
            PERFORM pg_sleep(600);
        EXCEPTION WHEN query_canceled THEN
            INSERT INTO public.seen (what, val) VALUES ('stubborn', 'caught a cancel');
        END;
    END LOOP;
END $$;
ALTER FUNCTION app1.stubborn(jsonb) OWNER TO app1;
});
sleep 1;
my $t0 = time();
$node->safe_psql('postgres', q{SET ROLE app1; SELECT ductape.dispatch('b', 'ping', on_success => 'app1.slow(jsonb)') IS NOT NULL});
sleep 0.3;
$node->safe_psql('postgres', q{SELECT ductape.dispatch('b', 'ping', '{"k": "after-slow"}') IS NOT NULL});
ok(poll("SELECT count(*) FROM ductape.jobs WHERE input->>'k' = 'after-slow' AND state = 'succeeded'", '1', 30),
	'another job runs after the slow callback is cancelled');
my $waited = time() - $t0;
note(sprintf('the job behind a 600 s callback finished after %.1f s', $waited));
cmp_ok($waited, '<', 20, 'within the user code timeout, not the callback\'s 600 s');
my $log = slurp_file($node->logfile);
like($log, qr/job callback app1\.slow\(jsonb\) ran longer than ductape\.user_code_timeout \(2000 ms\) and was cancelled/,
	'the log says which callback was cancelled and why');
# A callback that catches every cancel ends with the worker, and a new worker
# is started at once (nothing else wakes the database here: no call records,
# no dispatch), which runs a job scheduled meanwhile.
$node->safe_psql('postgres', q{ALTER SYSTEM SET ductape.log_requests = 'none'; SELECT pg_reload_conf()});
sleep 1;
my $old_pid = $node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'ductape worker' AND datname = 'postgres'");
$node->safe_psql('postgres', q{SET ROLE app1; SELECT ductape.dispatch('b', 'ping', on_success => 'app1.stubborn(jsonb)') IS NOT NULL;
RESET ROLE;
SELECT ductape.dispatch('b', 'ping', '{"k": "after-stubborn"}', run_at => now() + interval '15 seconds') IS NOT NULL});
ok(poll("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ductape worker' AND datname = 'postgres' AND pid <> $old_pid", '1', 60),
	'a callback that keeps catching the cancel ends the worker, and a new one starts by itself');
ok(poll("SELECT count(*) FROM ductape.jobs WHERE input->>'k' = 'after-stubborn' AND state = 'succeeded'", '1', 60),
	'the new worker runs the job scheduled meanwhile');
like(slurp_file($node->logfile), qr/ductape worker for database \d+ ended: user code kept running past ductape.user_code_timeout/,
	'the log says why the worker ended');
$node->safe_psql('postgres', q{ALTER SYSTEM RESET ductape.log_requests});
$node->safe_psql('postgres', q{ALTER SYSTEM RESET ductape.user_code_timeout; SELECT pg_reload_conf()});

$node->stop;
done_testing();
