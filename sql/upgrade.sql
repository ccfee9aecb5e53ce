-- The upgrade path (docs/reference.md): 0.1.0, the first release, through
-- every upgrade script to the current version, with what was made under
-- 0.1.0 checked afterwards; a fresh install must end up with the same
-- objects.  (In a database of its own: the suite's has the current version.)
SELECT api() AS api_url, current_database() AS suite_db \gset
SELECT md5(string_agg(pg_describe_object(classid, objid, objsubid), E'\n' ORDER BY 1)) AS fresh_objects
  FROM pg_depend WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'ductape') \gset
SELECT extversion AS fresh_version FROM pg_extension WHERE extname = 'ductape' \gset
-- (and what the objects are: function definitions and their settings;
-- columns with their types and defaults.  Grants differ: each database
-- granted its own roles.)
SELECT md5(string_agg(pg_get_functiondef(p.oid) || coalesce(array_to_string(p.proconfig, ','), ''),
                      E'\n' ORDER BY p.oid::regprocedure::text)) AS fresh_functions
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'ductape' \gset
SELECT md5(string_agg(format('%s.%s %s %s %s', c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                             coalesce(pg_get_expr(d.adbin, d.adrelid), '')), E'\n' ORDER BY c.relname, a.attnum)) AS fresh_columns
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
 WHERE n.nspname = 'ductape' AND c.relkind IN ('r', 'v') \gset
CREATE DATABASE ductape_upgrade;
\c ductape_upgrade
SET ductape_test.api = :'api_url';
CREATE FUNCTION public.expect_error(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    st text; msg text;
BEGIN
    EXECUTE sql;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    RETURN st || ': ' || msg;
END
$$;

CREATE EXTENSION ductape VERSION '0.1.0';
SELECT extversion FROM pg_extension WHERE extname = 'ductape';

-- Under 0.1.0: an app with a secret in its headers, a usage role, an
-- outbound endpoint, a queued job.
SELECT ductape.secret_set('UP_TOKEN', 'up-plaintext-5c2e');
SELECT ductape.app_define(jsonb_build_object('tag', 'up',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', current_setting('ductape_test.api'))),
  'actions', jsonb_build_array(
    jsonb_build_object('tag', 'echo', 'method', 'POST', 'resource', '/echo/up',
                       'headers', jsonb_build_object('X-Token', '$Secret{UP_TOKEN}')),
    jsonb_build_object('tag', 'loop', 'method', 'POST', 'resource', '/echo/loop',
                       'input', jsonb_build_object('properties', jsonb_build_object('n', jsonb_build_object('type', 'integer')))))));
-- a schema the 0.1.0 library stored but 0.2.0 refuses: it applies itself to
-- the same value through $ref (validating it never ended)
UPDATE ductape.actions
   SET spec = jsonb_set(spec, '{input,properties,n}', '{"anyOf": [{"$ref": "#/properties/n"}, {"$ref": "#/properties/n"}]}')
 WHERE app = 'up' AND tag = 'loop';
CREATE ROLE dt_up_user;
SELECT ductape.grant_usage('dt_up_user');
SELECT ductape.endpoint_create(current_setting('ductape_test.api') || '/echo/hook', description => 'from 0.1.0') AS endpoint_id \gset
SELECT ductape.dispatch('up', 'echo', '{"n": 1}', run_at => now() + interval '1 hour') AS job_id \gset
SELECT ductape.workflow_define('{"tag": "up-flow", "steps": [{"tag": "s", "type": "sql", "sql": "select current_user::text as who"}],
                                 "output": "$Step{s}{who}"}');
SELECT ductape.run('up', 'echo', '{"n": 1}')->>'path' AS path_under_0_1_0;
SELECT ductape.version();
\echo :LAST_ERROR_SQLSTATE

-- To 0.2.0 first: a warning names the stored schema 0.2.0 refuses.
ALTER EXTENSION ductape UPDATE TO '0.2.0';
SELECT extversion FROM pg_extension WHERE extname = 'ductape';

-- Under 0.2.0, idempotency keys were unique across roles: one role's job
-- and message hold the key 'order-7'.  While the SQL objects are 0.2.0's
-- (new library, no ALTER EXTENSION UPDATE yet), another role's dispatch
-- with that key is refused instead of answered with the first role's job.
CREATE ROLE dt_up_other;
SELECT ductape.grant_usage('dt_up_other');
SET ROLE dt_up_user;
SELECT ductape.dispatch('up', 'echo', '{"n": 7}', run_at => now() + interval '1 hour', idempotency_key => 'order-7') AS keyed_job \gset
SELECT ductape.publish('up.order', '{"n": 7}', idempotency_key => 'order-7') AS keyed_msg \gset
RESET ROLE;
SET ROLE dt_up_other;
SELECT expect_error($$SELECT ductape.dispatch('up', 'echo', '{"n": 8}', idempotency_key => 'order-7')$$);
SELECT expect_error($$SELECT ductape.publish('up.order', '{"n": 8}', idempotency_key => 'order-7')$$);
RESET ROLE;

-- The update to the current version.
ALTER EXTENSION ductape UPDATE;
SELECT extversion = :'fresh_version' AS current_version FROM pg_extension WHERE extname = 'ductape';
SELECT ductape.version() = jsonb_build_object('extension', :'fresh_version', 'library', :'fresh_version') AS version;

-- What 0.1.0 made still works: the secret opens and is sent, the role
-- granted under 0.1.0 can call (and has what 0.2.0 added), the job and the
-- endpoint are there.
SELECT ductape.secret_get('UP_TOKEN') = 'up-plaintext-5c2e' AS secret_opens;
SELECT r->'body'->'headers'->>'x-token' = 'up-plaintext-5c2e' AS secret_sent, r->>'status' AS status
  FROM (SELECT ductape.run_response('up', 'echo', '{"n": 2}') AS r) s;
SET ROLE dt_up_user;
SELECT ductape.run('up', 'echo', '{"n": 3}')->>'path' AS path_as_usage_role,
       ductape.version()->>'library' = :'fresh_version' AS version_as_usage_role;
RESET ROLE;
SELECT state, input FROM ductape.jobs WHERE id = :job_id;
SELECT url LIKE '%/echo/hook' AS endpoint_kept, description FROM ductape.endpoints WHERE id = :endpoint_id;
-- a workflow defined before 0.3.0 does not say who defined it: the update
-- warned, its sql step fails until it is defined again, then runs as the definer
SELECT ductape.workflow_start('up-flow') AS old_run \gset
DO $$
BEGIN
    FOR i IN 1..200 LOOP
        EXIT WHEN (SELECT state <> 'running' FROM ductape.workflow_runs WHERE tag = 'up-flow');
        PERFORM pg_sleep(0.05);
    END LOOP;
END $$;
SELECT state, error FROM ductape.workflow_runs WHERE id = :old_run;
SELECT ductape.workflow_define(spec) FROM ductape.workflows WHERE tag = 'up-flow';
SELECT ductape.workflow_start('up-flow') AS new_run \gset
DO $$
BEGIN
    FOR i IN 1..200 LOOP
        EXIT WHEN (SELECT state <> 'running' FROM ductape.workflow_runs WHERE tag = 'up-flow' AND id = (SELECT max(id) FROM ductape.workflow_runs));
        PERFORM pg_sleep(0.05);
    END LOOP;
END $$;
SELECT state, output #>> '{}' = current_user AS ran_as_definer FROM ductape.workflow_runs WHERE id = :new_run;
-- keys are per role now: the other role gets its own job and message, the
-- first role still gets its own back
SET ROLE dt_up_other;
SELECT ductape.dispatch('up', 'echo', '{"n": 8}', run_at => now() + interval '1 hour', idempotency_key => 'order-7') <> :keyed_job AS other_role_own_job;
SELECT ductape.publish('up.order', '{"n": 8}', idempotency_key => 'order-7') <> :'keyed_msg' AS other_role_own_message;
RESET ROLE;
SET ROLE dt_up_user;
SELECT ductape.dispatch('up', 'echo', '{"n": 9}', idempotency_key => 'order-7') = :keyed_job AS first_role_same_job;
SELECT ductape.publish('up.order', '{"n": 9}', idempotency_key => 'order-7') = :'keyed_msg' AS first_role_same_message;
RESET ROLE;
SELECT role, count(*) FROM ductape.jobs WHERE idempotency_key = 'order-7' GROUP BY role ORDER BY role;
-- the stored looping schema, which 0.2.0 stopped at the step limit, is
-- refused before it is used, naming the action
SELECT ductape.run('up', 'loop', '{"n": "x"}');
\echo :LAST_ERROR_SQLSTATE
-- and cannot be defined again
SELECT ductape.action_define('up', '{"tag": "loop", "method": "POST", "resource": "/echo/loop",
  "input": {"properties": {"n": {"anyOf": [{"$ref": "#/properties/n"}, {"type": "integer"}]}}}}');
\echo :LAST_ERROR_SQLSTATE

-- Updated and fresh installs have the same objects.
SELECT md5(string_agg(pg_describe_object(classid, objid, objsubid), E'\n' ORDER BY 1)) = :'fresh_objects' AS same_objects
  FROM pg_depend WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'ductape');
SELECT md5(string_agg(pg_get_functiondef(p.oid) || coalesce(array_to_string(p.proconfig, ','), ''),
                      E'\n' ORDER BY p.oid::regprocedure::text)) = :'fresh_functions' AS same_functions
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'ductape';
SELECT md5(string_agg(format('%s.%s %s %s %s', c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                             coalesce(pg_get_expr(d.adbin, d.adrelid), '')), E'\n' ORDER BY c.relname, a.attnum)) = :'fresh_columns' AS same_columns
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
 WHERE n.nspname = 'ductape' AND c.relkind IN ('r', 'v');
-- and nothing granted to PUBLIC
SELECT count(*) AS public_function_grants
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'ductape' AND has_function_privilege('public', p.oid, 'EXECUTE');

\c :suite_db
DROP DATABASE ductape_upgrade WITH (FORCE);
DROP ROLE dt_up_user, dt_up_other;
