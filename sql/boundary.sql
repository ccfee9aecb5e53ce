-- The privilege boundary (docs/security.md): idempotency keys per role,
-- who a row runs as, internal functions that only ductape may call, and
-- stored definitions that the loader checks before use.  (The attacks that
-- need the worker to run code are in test/t/012_boundary.pl.)

CREATE ROLE dt_b_admin;
CREATE ROLE dt_b_alice;
CREATE ROLE dt_b_mallory;
SELECT ductape.grant_admin('dt_b_admin');
SELECT ductape.grant_usage('dt_b_alice');
SELECT ductape.grant_usage('dt_b_mallory');
SELECT ductape.app_define(jsonb_build_object('tag', 'bnd',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', api())),
  'actions', '[{"tag": "echo", "method": "POST", "resource": "/echo/bnd"}]'::jsonb));

-- ---- idempotency keys are scoped per role ----
-- Mallory takes a key first, with a job scheduled a year out ...
SET ROLE dt_b_mallory;
SELECT ductape.dispatch('bnd', 'echo', '{"who": "mallory"}', run_at => now() + interval '1 year',
                        idempotency_key => 'order-42') AS mallory_job \gset
SELECT ductape.publish('order.paid', '{"who": "mallory"}', idempotency_key => 'order-42') AS mallory_msg \gset
RESET ROLE;
-- ... and Alice's dispatch and publish with the same key are her own.
SET ROLE dt_b_alice;
SELECT ductape.dispatch('bnd', 'echo', '{"who": "alice"}', idempotency_key => 'order-42') AS alice_job \gset
SELECT :alice_job <> :mallory_job AS alice_gets_her_own_job;
SELECT ductape.dispatch('bnd', 'echo', '{"who": "alice again"}', idempotency_key => 'order-42') = :alice_job
       AS alice_repeat_returns_her_job;
SELECT expect_error(format('SELECT ductape.job(%s)', :mallory_job));
SELECT ductape.publish('order.paid', '{"who": "alice"}', idempotency_key => 'order-42') AS alice_msg \gset
SELECT :'alice_msg' <> :'mallory_msg' AS alice_gets_her_own_message;
SELECT payload->>'who' AS published FROM ductape.messages WHERE id = :'alice_msg';
SELECT ductape.publish('order.paid', '{"who": "alice again"}', idempotency_key => 'order-42') = :'alice_msg'
       AS alice_repeat_returns_her_message;
RESET ROLE;
SELECT role, input->>'who' AS who, state = 'scheduled' AS scheduled FROM ductape.jobs WHERE idempotency_key = 'order-42' ORDER BY id;
SELECT role, payload->>'who' AS who FROM ductape.messages WHERE idempotency_key = 'order-42' ORDER BY created_at, role;

-- Workflow runs: keys per role as well.
SELECT ductape.workflow_define('{"tag": "bnd-flow", "steps": [{"tag": "s", "type": "sql", "sql": "select 1 as one"}]}');
GRANT EXECUTE ON FUNCTION ductape.workflow_start(text, jsonb, text, text, text) TO dt_b_alice, dt_b_mallory;
SET ROLE dt_b_mallory;
SELECT ductape.workflow_start('bnd-flow', idempotency_key => 'run-1') AS mallory_run \gset
RESET ROLE;
SET ROLE dt_b_alice;
SELECT ductape.workflow_start('bnd-flow', idempotency_key => 'run-1') AS alice_run \gset
SELECT :alice_run <> :mallory_run AS alice_gets_her_own_run,
       ductape.workflow_start('bnd-flow', idempotency_key => 'run-1') = :alice_run AS alice_repeat_returns_her_run;
RESET ROLE;
SELECT role, idempotency_key FROM ductape.workflow_runs WHERE idempotency_key = 'run-1' ORDER BY role;

-- A step's job key cannot be taken by another role: Mallory dispatches the
-- key Alice's next run's step will use, scheduled a year out ...
SELECT last_value + 1 AS next_run FROM ductape.workflow_runs_id_seq \gset
SELECT ductape.workflow_define('{"tag": "bnd-act", "steps": [{"tag": "a", "type": "action", "app": "bnd", "action": "echo",
                                 "input": {"who": "alice step"}}]}');
SET ROLE dt_b_mallory;
SELECT ductape.dispatch('bnd', 'echo', '{"who": "mallory"}', run_at => now() + interval '1 year',
                        idempotency_key => format('ductape-wf-%s-a', :next_run)) AS squatter \gset
RESET ROLE;
SET ROLE dt_b_alice;
SELECT ductape.workflow_start('bnd-act') = :next_run AS predicted_run_id;
RESET ROLE;
-- ... and the step still runs Alice's own job, which completes.
DO $$
BEGIN
    FOR i IN 1..200 LOOP
        EXIT WHEN (SELECT state <> 'running' FROM ductape.workflow_runs WHERE tag = 'bnd-act');
        PERFORM pg_sleep(0.05);
    END LOOP;
END $$;
SELECT r.state, r.role, s.state AS step_state,
       (SELECT j.input->>'who' FROM ductape.jobs j
         WHERE j.idempotency_key = format('ductape-wf-%s-a', r.id) AND j.role = r.role) AS step_sent
  FROM ductape.workflow_runs r JOIN ductape.workflow_steps s ON s.run_id = r.id WHERE r.tag = 'bnd-act';
SELECT state FROM ductape.jobs WHERE id = :squatter;

-- ---- nobody writes the columns that say whom something runs as ----
SET ROLE dt_b_admin;
SELECT expect_error($$UPDATE ductape.webhook_subscriptions SET role = 'postgres'$$);
SELECT expect_error($$INSERT INTO ductape.webhook_subscriptions (app, webhook, event_type, handler, role)
                      VALUES ('bnd', 'x', '*', 'pg_catalog.jsonb_typeof(jsonb)', 'postgres')$$);
SELECT expect_error($$UPDATE ductape._webhook_tokens SET role = 'postgres'$$);
SELECT expect_error($$UPDATE ductape.endpoints SET role = 'postgres'$$);
SELECT expect_error($$INSERT INTO ductape.endpoints (url, secret, key_version, role) VALUES ('http://x', '\x00', 1, 'postgres')$$);
SELECT expect_error($$UPDATE ductape.jobs SET role = 'postgres'$$);
SELECT expect_error($$UPDATE ductape.workflow_runs SET role = 'postgres'$$);
SELECT expect_error($$UPDATE ductape.messages SET role = 'postgres'$$);
SELECT expect_error($$UPDATE ductape.outbox SET role = 'postgres'$$);
SELECT expect_error($$INSERT INTO ductape.outbox (message_id, endpoint_id, role) VALUES ('m', 1, 'postgres')$$);
SELECT expect_error($$UPDATE ductape.webhook_events SET role = 'postgres'$$);
SELECT expect_error($$UPDATE ductape.deliveries SET role = 'postgres'$$);
SELECT expect_error($$UPDATE ductape.calls SET role = 'postgres'$$);
-- an admin changes an endpoint through the functions only
SELECT ductape.endpoint_create(api() || '/echo/bnd-hook', description => 'first') AS ep \gset
SELECT expect_error(format($$UPDATE ductape.endpoints SET description = 'second' WHERE id = %s$$, :ep));
SELECT ductape.endpoint_update(:ep, description => 'second', url => api() || '/echo/bnd-hook2');
SELECT description, role, updated_by FROM ductape.endpoints WHERE id = :ep;
SELECT ductape.endpoint_disable(:ep);
SELECT enabled, disabled_reason FROM ductape.endpoints WHERE id = :ep;
SELECT ductape.endpoint_delete(:ep);
SELECT expect_error(format('SELECT ductape.endpoint_delete(%s)', :ep));
RESET ROLE;

-- Who the caller is comes from ductape, not from session_user or SET ROLE:
-- a SECURITY DEFINER function of the admin's, called by Alice, records the admin.
CREATE SCHEMA dt_b AUTHORIZATION dt_b_admin;
SET ROLE dt_b_admin;
CREATE FUNCTION dt_b.h(e jsonb) RETURNS void LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION dt_b.start_for_others() RETURNS bigint LANGUAGE sql SECURITY DEFINER
    AS $$ SELECT ductape.workflow_start('bnd-flow') $$;
GRANT USAGE ON SCHEMA dt_b TO dt_b_alice;
GRANT EXECUTE ON FUNCTION dt_b.start_for_others() TO dt_b_alice;
RESET ROLE;
SET ROLE dt_b_alice;
SELECT dt_b.start_for_others() AS definer_run \gset
RESET ROLE;
SELECT role FROM ductape.workflow_runs WHERE id = :definer_run;
-- a subscription records its subscriber, and needs EXECUTE on the handler
SET ROLE dt_b_admin;
SELECT ductape.app_define(ductape.app_export('bnd') || '{"webhooks": [{"tag": "in", "verify": {"scheme": "none"}}]}');
SELECT ductape.webhook_subscribe('bnd', 'in', '*', 'dt_b.h(jsonb)') AS sub \gset
SELECT ductape.webhook_url('bnd', 'in') LIKE 'http://%/webhooks/%' AS url;
RESET ROLE;
SELECT role FROM ductape.webhook_subscriptions WHERE id = :sub;
SELECT role FROM ductape._webhook_tokens WHERE app = 'bnd';
-- another admin subscribing the same handler cannot take the subscription over
CREATE ROLE dt_b_admin3;
SELECT ductape.grant_admin('dt_b_admin3');
GRANT USAGE ON SCHEMA dt_b TO dt_b_admin3;
SET ROLE dt_b_admin3;
SELECT expect_error($$SELECT ductape.webhook_subscribe('bnd', 'in', '*', 'dt_b.h(jsonb)')$$);
RESET ROLE;
SELECT role FROM ductape.webhook_subscriptions WHERE id = :sub;
SET ROLE dt_b_admin;
SELECT ductape.webhook_subscribe('bnd', 'in', '*', 'dt_b.h(jsonb)') = :sub AS same_subscriber_same_id;
RESET ROLE;
REVOKE EXECUTE ON FUNCTION dt_b.h(jsonb) FROM PUBLIC;
CREATE ROLE dt_b_admin2;
SELECT ductape.grant_admin('dt_b_admin2');
GRANT USAGE ON SCHEMA dt_b TO dt_b_admin2;
SET ROLE dt_b_admin2;
SELECT expect_error($$SELECT ductape.webhook_subscribe('bnd', 'in', 'x.*', 'dt_b.h(jsonb)')$$);
RESET ROLE;
SET ROLE dt_b_admin;
SELECT ductape.webhook_unsubscribe(:sub);
SELECT expect_error(format('SELECT ductape.webhook_unsubscribe(%s)', :sub));
RESET ROLE;

-- Workflows: a definition records its definer, whose rights its sql steps
-- run with; admins cannot rewrite one behind the definer's back.
SET ROLE dt_b_admin;
SELECT ductape.workflow_define('{"tag": "bnd-who", "steps": [{"tag": "s", "type": "sql", "sql": "select current_user::text as who"}],
                                 "output": "$Step{s}{who}"}');
SELECT expect_error($$UPDATE ductape.workflows SET spec = spec WHERE tag = 'bnd-who'$$);
SELECT expect_error($$DELETE FROM ductape.workflows WHERE tag = 'bnd-who'$$);
RESET ROLE;
SELECT tag, role FROM ductape.workflows WHERE tag = 'bnd-who';
SET ROLE dt_b_alice;
SELECT ductape.workflow_start('bnd-who') AS who_run \gset
RESET ROLE;
DO $$
BEGIN
    FOR i IN 1..200 LOOP
        EXIT WHEN (SELECT state <> 'running' FROM ductape.workflow_runs WHERE tag = 'bnd-who');
        PERFORM pg_sleep(0.05);
    END LOOP;
END $$;
SELECT state, role AS started_by, definer, output #>> '{}' AS sql_ran_as FROM ductape.workflow_runs WHERE id = :who_run;
-- workflow_drop: unknown, active runs, then gone
SET ROLE dt_b_admin;
SELECT expect_error($$SELECT ductape.workflow_drop('no-such-flow')$$);
SELECT ductape.workflow_define('{"tag": "bnd-nap", "steps": [{"tag": "z", "type": "sleep", "seconds": 60}]}');
SELECT ductape.workflow_start('bnd-nap') AS nap_run \gset
SELECT expect_error($$SELECT ductape.workflow_drop('bnd-nap')$$);
SELECT ductape.workflow_start('bnd-nap') AS nap_run2 \gset
SELECT expect_error($$SELECT ductape.workflow_drop('bnd-nap')$$);
SELECT ductape.workflow_cancel(:nap_run2);
SELECT ductape.workflow_cancel(:nap_run);
SELECT ductape.workflow_drop('bnd-nap');
SELECT count(*) AS nap_left FROM ductape.workflows WHERE tag = 'bnd-nap';
RESET ROLE;

-- ---- internals only ductape may call ----
SELECT expect_error($$SELECT ductape._caller()$$);
SELECT expect_error($$SELECT ductape._workflow_sql('postgres', 'select 1')$$);
SELECT expect_error($$SELECT ductape._workflow_dispatch_as('postgres', 'bnd', 'echo', '{}', 'dev', 'default', NULL, '{}')$$);
SET ROLE dt_b_admin;
SELECT expect_error($$SELECT ductape._workflow_sql('postgres', 'select 1')$$);
SELECT expect_error($$SELECT ductape._workflow_start('bnd-flow', '{}', NULL, NULL, NULL)$$);
SELECT expect_error($$SELECT ductape._webhook_subscribe('bnd', 'in', '*', 'dt_b.h(jsonb)')$$);
RESET ROLE;

-- Every C function of the schema called with NULL arguments (those that
-- take any) answers or raises: none reaches its C code with a NULL.
-- (rotate_master_key and the workers' wake-up take no arguments; not called.)
DO $$
DECLARE
    f record;
    n integer := 0;
BEGIN
    FOR f IN SELECT p.oid::regprocedure AS fn, p.pronargs
               FROM pg_proc p JOIN pg_namespace s ON s.oid = p.pronamespace
              WHERE s.nspname = 'ductape' AND p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'c')
                AND p.pronargs > 0 AND p.prorettype <> 'trigger'::regtype
              ORDER BY 1 LOOP
        BEGIN
            EXECUTE format('SELECT %s(%s)', regexp_replace(f.fn::text, '\(.*$', ''),
                           array_to_string(array_fill('NULL'::text, ARRAY[f.pronargs]), ', '));
        EXCEPTION WHEN OTHERS THEN
            NULL;
        END;
        n := n + 1;
    END LOOP;
    RAISE NOTICE 'called % C functions with NULL arguments', n;
END $$;
SELECT 'still up' AS server;

-- A secret with characters JSON escapes, sent in a JSON body to an API that
-- answers 400 echoing the request (its body inside a JSON string: escaped
-- twice), never shows in the error or the call record.
SELECT ductape.secret_set('BND_QUOTED', 'Qu"0t3d\S3cr3t');
SELECT ductape.app_define(jsonb_build_object('tag', 'bnd-q',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', api())),
  'actions', '[{"tag": "leak", "method": "POST", "resource": "/status/400", "body": {"token": "$Secret{BND_QUOTED}"}}]'::jsonb));
SELECT e LIKE '%0t3d%' AS secret_in_error, e LIKE '%[redacted]%' AS redacted
  FROM expect_error($$SELECT ductape.run('bnd-q', 'leak')$$) e;
SELECT wait_calls($$app = 'bnd-q'$$) AS recorded;
SELECT count(*) FILTER (WHERE c::text LIKE '%0t3d%') AS records_with_secret FROM ductape.calls c WHERE app = 'bnd-q';
SELECT ductape.app_drop('bnd-q'), ductape.secret_drop('BND_QUOTED');

-- ---- stored definitions are checked by the loader ----
-- (an admin may edit ductape.actions directly; a bad field is a clear error)
SET ROLE dt_b_admin;
UPDATE ductape.actions SET spec = spec || '{"resource": 42}' WHERE app = 'bnd' AND tag = 'echo';
SELECT expect_error($$SELECT ductape.run('bnd', 'echo')$$);
UPDATE ductape.actions SET spec = spec || '{"resource": "/echo/bnd", "success": ["200"]}' WHERE app = 'bnd' AND tag = 'echo';
SELECT expect_error($$SELECT ductape.run('bnd', 'echo')$$);
UPDATE ductape.actions SET spec = spec || '{"success": [1e30]}' WHERE app = 'bnd' AND tag = 'echo';
SELECT expect_error($$SELECT ductape.dispatch('bnd', 'echo')$$);
UPDATE ductape.actions SET spec = spec - 'success' || '{"method": "TRACE"}' WHERE app = 'bnd' AND tag = 'echo';
SELECT expect_error($$SELECT ductape.run('bnd', 'echo')$$);
UPDATE ductape.actions SET spec = spec || '{"method": "POST", "headers": ["x"]}' WHERE app = 'bnd' AND tag = 'echo';
SELECT expect_error($$SELECT ductape.run('bnd', 'echo')$$);
UPDATE ductape.actions SET spec = spec - 'headers' WHERE app = 'bnd' AND tag = 'echo';
UPDATE ductape.apps SET spec = spec || '{"auth": {}}' WHERE tag = 'bnd';
SELECT expect_error($$SELECT ductape.run('bnd', 'echo')$$);
UPDATE ductape.apps SET spec = spec || '{"auth": {"type": "bearer", "token": ["x"]}}' WHERE tag = 'bnd';
SELECT expect_error($$SELECT ductape.run('bnd', 'echo')$$);
UPDATE ductape.apps SET spec = spec || '{"auth": {"type": "magic"}}' WHERE tag = 'bnd';
SELECT expect_error($$SELECT ductape.run('bnd', 'echo')$$);
UPDATE ductape.apps SET spec = spec - 'auth' WHERE tag = 'bnd';
UPDATE ductape.apps SET spec = jsonb_set(spec, '{envs,0,slug}', '7') WHERE tag = 'bnd';
SELECT expect_error($$SELECT ductape.run('bnd', 'echo')$$);
UPDATE ductape.apps SET spec = '[]' WHERE tag = 'bnd';
SELECT expect_error($$SELECT ductape.run('bnd', 'echo')$$);
RESET ROLE;
-- (its workflow, webhook URL and queued jobs go with it)
SELECT ductape.app_drop('bnd', cascade => true);

DROP SCHEMA dt_b CASCADE;
REASSIGN OWNED BY dt_b_admin, dt_b_admin2, dt_b_admin3, dt_b_alice, dt_b_mallory TO CURRENT_USER;
DROP OWNED BY dt_b_admin, dt_b_admin2, dt_b_admin3, dt_b_alice, dt_b_mallory;
DROP ROLE dt_b_admin, dt_b_admin2, dt_b_admin3, dt_b_alice, dt_b_mallory;
