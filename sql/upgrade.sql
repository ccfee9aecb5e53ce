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

-- 0.3.0 moves the rules of an action (and of a retry policy) from plpgsql
-- into the library.  What the plpgsql of 0.2.0 says about a corpus of
-- actions is kept here, to compare with what 0.3.0's C says after the
-- update: an action changed in one key, or in two, by each change of this
-- list: (key, value), a NULL value removing the key, key '*' adding value's keys.
CREATE TABLE public.check_mut (k text, v jsonb);
INSERT INTO public.check_mut VALUES
  ('tag', NULL), ('tag', 'null'), ('tag', '5'), ('tag', '""'), ('tag', '"A"'), ('tag', '"a"'), ('tag', '"-a"'),
  ('tag', to_jsonb(repeat('a', 63))), ('tag', to_jsonb(repeat('a', 64))), ('tag', '"ab_c.d-e"'), ('tag', '"é"'), ('tag', '"a b"'),
  ('name', '5'), ('name', 'null'), ('description', '[]'), ('description', '"x"'),
  ('method', NULL), ('method', 'null'), ('method', '"get"'), ('method', '"TRACE"'), ('method', '5'), ('method', '{"a": [1, "x"]}'),
  ('method', '"poſt"'), ('method', '"hEaD"'), ('method', '"GET "'), ('method', '["GET"]'), ('method', '"tr\"ace"'),
  ('resource', NULL), ('resource', 'null'), ('resource', '5'), ('resource', '""'), ('resource', '"a/b"'), ('resource', '"/"'),
  ('resource', '"/a b"'), ('resource', '"/a?x=1"'), ('resource', '"/a#f"'), ('resource', '"/a\tb"'), ('resource', '"/a\u3000b"'),
  ('resource', '"/a\u00a0b"'), ('resource', '"/a/:"'), ('resource', '"/a/:/b"'), ('resource', '"/a/:id"'), ('resource', '"/a/:id/:id"'),
  ('resource', '"/a/:x"'), ('resource', '"/files/:id.json"'), ('resource', '"/a/:id:x"'), ('resource', '"/a/::id"'),
  ('resource', '"/:a_b/:c9/:x-y"'), ('resource', '"/é/:id/:é"'), ('resource', '"/a/:id/:"'), ('resource', '"/a:"'),
  ('request_type', 'null'), ('request_type', '"text/plain"'), ('request_type', '"text/html"'), ('request_type', '5'),
  ('headers', 'null'), ('headers', '[]'), ('headers', '"x"'), ('headers', '{}'), ('headers', '{"X-A": "v"}'),
  ('headers', '{"Bad Header": "v", "X-F": "a\r\nb", "": "x", "ok": "\n"}'), ('headers', '{"X-T": "$Secret{S}", "X-C": "$Constant{c}", "X-V": "$Variable{v}"}'),
  ('headers', '{"X-Bad": "$Nope{x}", "é": "x\n", "b c": 1, "X-N": {"n": "\n"}, "!#$%&''*+.^_`|~-09AZaz": "ok"}'),
  ('headers', '{"X-R": "a\rb", "X:Y": "z", "X-S": "$Step{a}{b}", "X-I": "$Input{x}"}'),
  ('query', 'null'), ('query', '[]'), ('query', '{"q": "$Input{q}"}'), ('query', '{"q": "$Constant{missing}", "r": "$Variable{v}"}'),
  ('query', '{"q": "$Input{"}'),
  ('body', '5'), ('body', '{"b": "$Step{x}{y}"}'), ('body', '{"b": ["$Variable{v}", {"c": "$Constant{c}"}]}'), ('body', '{}'),
  ('input', 'null'), ('input', '[]'), ('input', '"x"'), ('input', '{}'), ('input', '{"properties": {}}'),
  ('input', '{"properties": {"id": {"type": "string", "in": "query"}}}'), ('input', '{"properties": {"id": {"in": "params"}}}'),
  ('input', '{"properties": {"id": {"in": null}}}'), ('input', '{"properties": {"id": {"in": 5}}}'), ('input', '{"properties": {"id": "x"}}'),
  ('input', '{"properties": {"id": [1]}}'), ('input', '{"properties": {"id": true, "x": {"in": "cookie"}}}'),
  ('input', '{"properties": {"x": {"in": "body"}, "y": {"in": ["q"]}, "z": {"in": true}, "w": {"in": "headers"}}}'),
  ('input', '{"type": "nonsense"}'), ('input', '{"properties": []}'), ('input', '{"properties": {"id": {"$ref": "#/properties/id"}}}'),
  ('input', '{"anyOf": []}'), ('input', '{"properties": {"id": {"in": {"a": 1}}, "x": {"in": "Params"}}}'),
  ('success', 'null'), ('success', '[]'), ('success', '{}'), ('success', '[200]'), ('success', '[200, "201"]'),
  ('success', '[99, 600, 200.5, 2e2, null, true, 200.0, 1e2, 599]'), ('success', '[1e30]'), ('success', '"200"'),
  ('timeout_ms', 'null'), ('timeout_ms', '0'), ('timeout_ms', '1'), ('timeout_ms', '86400000'), ('timeout_ms', '86400001'),
  ('timeout_ms', '1.5'), ('timeout_ms', '"5"'), ('timeout_ms', '-1'), ('timeout_ms', '1e20'), ('timeout_ms', '1.0'),
  ('retries', 'null'), ('retries', '[]'), ('retries', '"x"'), ('retries', '{}'), ('retries', '{"max": 3}'), ('retries', '{"max": 101}'),
  ('retries', '{"max": 1.5, "initial_delay_ms": -1, "max_delay_ms": 86400001}'),
  ('retries', '{"colour": 1, "b": 2, "A": 3, "_z": 1, "a": 0, "é": 1, "Z": 2, "max": 1}'),
  ('retries', '{"multiplier": 0.5}'), ('retries', '{"multiplier": "2"}'), ('retries', '{"multiplier": 11}'), ('retries', '{"multiplier": 10}'),
  ('retries', '{"jitter": null}'), ('retries', '{"jitter": 2}'), ('retries', '{"jitter": "x"}'), ('retries', '{"jitter": 0.5}'), ('retries', '{"jitter": -0.1}'),
  ('retries', '{"on": "x"}'), ('retries', '{"on": [500, "timeout", "network", "x", 99, 600, 500.0, 5e2, 1e2, -100, null, [500], "500", 1000]}'),
  ('retries', '{"on": []}'), ('retries', '{"on": null}'), ('retries', '{"respect_retry_after": "yes", "unsafe": 1, "max": null}'),
  ('*', '{"zeta": 1}'), ('*', '{"Alpha": 1, "alpha": 1, "_x": 2, "Beta": 3, "1": 4, "é": 5, "~": 6, "a b": 7, "B": 8, "b": 9}');

CREATE FUNCTION public.check_apply(a jsonb, k text, v jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN k = '*' THEN a || v WHEN v IS NULL THEN a - k ELSE jsonb_set(a, ARRAY[k], v) END
$$;

CREATE TABLE public.check_corpus (id serial, a jsonb, path text, constants jsonb, variables jsonb, old text[]);
-- the base alone, each change, each pair of changes to different keys
-- (every other one with constants and variables to name)
WITH base(a) AS (SELECT '{"tag": "t1", "method": "POST", "resource": "/a/:id", "input": {"properties": {"id": {"type": "string"}}}}'::jsonb),
     m AS (SELECT row_number() OVER () AS n, k, v FROM public.check_mut),
     specs(a) AS (
       SELECT a FROM base
       UNION ALL SELECT public.check_apply(base.a, m.k, m.v) FROM base, m
       UNION ALL SELECT public.check_apply(public.check_apply(base.a, m1.k, m1.v), m2.k, m2.v)
                   FROM base, m m1, m m2 WHERE m1.k < m2.k)
INSERT INTO public.check_corpus (a, path, constants, variables)
SELECT a, '/actions/' || n, CASE WHEN n % 2 = 0 THEN '{"c": 1}'::jsonb END, CASE WHEN n % 2 = 0 THEN '{"v": {}}'::jsonb END
  FROM (SELECT a, row_number() OVER () AS n FROM specs) s;
-- what is not an object, and NULL arguments
INSERT INTO public.check_corpus (a, path, constants, variables) VALUES
  (NULL, '/x', NULL, NULL), ('null', '/x', NULL, NULL), ('[]', '', NULL, NULL), ('5', '/x', NULL, NULL),
  ('"x"', '/x', NULL, NULL), ('[{"tag": "a"}]', '/x', NULL, NULL), ('{}', '', NULL, NULL), ('{}', '/x', '[]', '5'),
  ('{"tag": "a", "method": "GET", "resource": "/", "headers": {"a": "$Constant{c}"}}', '', '[1]', '"v"');
SELECT count(*) AS actions FROM public.check_corpus;
UPDATE public.check_corpus SET old = ductape._check_action(a, path, constants, variables);

CREATE TABLE public.check_retries_corpus (p jsonb, path text, old text[]);
INSERT INTO public.check_retries_corpus (p, path)
SELECT v, '/retries' FROM public.check_mut WHERE k = 'retries'
UNION ALL VALUES (NULL::jsonb, '/r'), ('5', '/r'), ('{"max": 2}', NULL), ('{"on": ["x"]}', '');
UPDATE public.check_retries_corpus SET old = ductape._check_retries(p, path);

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

-- The action rules in C give exactly what the plpgsql gave: the same
-- problems in the same words and order, for every action of the corpus
-- (and for NULL and non-object arguments); so do the retry policy rules.
SELECT count(*) AS actions,
       count(*) FILTER (WHERE old IS DISTINCT FROM ductape._check_action(a, path, constants, variables)) AS differ,
       (SELECT count(DISTINCT regexp_replace(e, '^/actions/[0-9]+', '')) FROM public.check_corpus, unnest(old) e) AS distinct_problems
  FROM public.check_corpus;
SELECT count(*) AS policies, count(*) FILTER (WHERE old IS DISTINCT FROM ductape._check_retries(p, path)) AS differ
  FROM public.check_retries_corpus;
SELECT p.oid::regprocedure AS function, l.lanname AS language, p.provolatile, p.proisstrict
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.oid IN ('ductape._check_action(jsonb, text, jsonb, jsonb)'::regprocedure,
                 'ductape._check_retries(jsonb, text)'::regprocedure)
 ORDER BY 1;

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
-- refused before it is used, naming the action (the update warned)
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
