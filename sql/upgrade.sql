-- The upgrade path (docs/reference.md): 0.1.0, the first release, through
-- every upgrade script to the current version, with what was made under
-- 0.1.0 checked afterwards.  Then the proof that both ways of reaching the
-- current version agree: the updated install is replaced by a fresh one
-- (the script make generates from src/sql/), with the same roles granted
-- the same way, and the two must define the same objects with the same
-- definitions and privileges.  (In a database of its own: the suite's has
-- the current version.)
SELECT api() AS api_url, current_database() AS suite_db \gset
SELECT extversion AS fresh_version FROM pg_extension WHERE extname = 'ductape' \gset
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

-- Under 0.1.0: an app with a secret in its headers, a usage role and an
-- admin role, an outbound endpoint, a queued job.
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
CREATE ROLE dt_up_admin;
SELECT ductape.grant_usage('dt_up_user'), ductape.grant_admin('dt_up_admin');
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

-- So do the generic rules the plpgsql checkers of apps, webhooks and
-- workflows call, SQL functions in 0.2.0 (_check_tag, _check_type,
-- _check_keys, _check_int, _check_request_type): what they say about every
-- combination of a corpus of arguments (JSON of each type, numbers at and
-- past the bounds and past bigint, keys that sort differently by byte and
-- by language, NULL for each argument) is kept here too.
CREATE TABLE public.helper_val (v jsonb);
INSERT INTO public.helper_val VALUES
  (NULL), ('null'), ('true'), ('false'), ('[]'), ('[1, "a"]'), ('{}'), ('{"a": 1}'),
  ('0'), ('-0'), ('0.0'), ('-0.0'), ('1'), ('1.0'), ('1e0'), ('1.5'), ('-1'), ('-1.5'), ('0.5e1'), ('1e-20'), ('1e-1000'),
  ('99'), ('100'), ('1e2'), ('2e2'), ('1E+2'), ('599'), ('599.0'), ('600'), ('86400'), ('86400000'), ('86400001'),
  ('604800'), ('604801'), ('1e20'), ('-1e20'), ('1e1000'), ('-1e1000'), ('123456789012345678901234567890.000'),
  ('9223372036854775807'), ('9223372036854775808'), ('-9223372036854775808'), ('-9223372036854775809'),
  ('""'), ('"a"'), ('"A"'), ('"5"'), ('"-a"'), ('"_a"'), ('"a b"'), ('"ab_c.d-e"'), ('"a\nb"'), ('"a\n"'), ('"é"'), ('"ａ"'),
  (to_jsonb(repeat('a', 63))), (to_jsonb(repeat('a', 64))), (to_jsonb('0' || repeat('-', 62))), ('"string"'), ('"number"'),
  ('"application/json"'), ('"application/x-www-form-urlencoded"'), ('"multipart/form-data"'), ('"text/plain"'),
  ('"text/plain "'), ('"TEXT/PLAIN"'), ('"text/html"'), ('["text/plain"]'), ('"%s \"q\""');
CREATE TABLE public.helper_path (p text);
INSERT INTO public.helper_path VALUES (NULL), (''), ('/x'), ('/a/%s "q"/é');
CREATE TABLE public.helper_obj (o jsonb);
INSERT INTO public.helper_obj VALUES
  (NULL), ('null'), ('5'), ('"a"'), ('[]'), ('["a", "zz"]'), ('{}'), ('{"a": 1}'), ('{"a": {"zz": 1}, "b": [{"zz": 1}]}'),
  ('{"tag": 1, "zz": 2}'), ('{"": 1, " ": 2, "%s": 3, "a/b": 4, "a\"b": 5, "a\nb": 6}'),
  ('{"Alpha": 1, "alpha": 2, "_x": 3, "Beta": 4, "1": 5, "é": 6, "~": 7, "a b": 8, "B": 9, "b": 10, "Z": 11, "a-b": 12, "ab": 13}'),
  ('{"é": 1, "e\u0301": 2, "e": 3, "f": 4, "E": 5, "ä": 6, "az": 7, "ß": 8, "ss": 9, "st": 10, "Æ": 11, "ae": 12, "af": 13}'),
  ('{"日本": 1, "中文": 2, "😀": 3, "ǅ": 4, "Ω": 5, "ω": 6, "z": 7, "ﬁ": 8, "fi": 9, "1": 10, "10": 11, "9": 12, "-1": 13}');
CREATE FUNCTION public.helper_call(fn text, val jsonb, path text, list text[], lo bigint, hi bigint, req boolean)
RETURNS text[] LANGUAGE sql AS $$
    SELECT CASE fn WHEN 'tag' THEN ductape._check_tag(val, path, req)
                   WHEN 'tag (default)' THEN ductape._check_tag(val, path)
                   WHEN 'type' THEN ductape._check_type(val, path, list)
                   WHEN 'keys' THEN ductape._check_keys(val, path, list)
                   WHEN 'int' THEN ductape._check_int(val, path, lo, hi)
                   WHEN 'request_type' THEN ductape._check_request_type(val, path) END
$$;
CREATE TABLE public.helper_corpus (fn text, val jsonb, path text, list text[], lo bigint, hi bigint, req boolean, old text[]);
INSERT INTO public.helper_corpus (fn, val, path, req)
SELECT 'tag', v, p, r FROM public.helper_val, public.helper_path, (VALUES (true), (false), (NULL)) r(r);
INSERT INTO public.helper_corpus (fn, val, path)
SELECT f, v, p FROM public.helper_val, public.helper_path, (VALUES ('tag (default)'), ('request_type')) f(f);
INSERT INTO public.helper_corpus (fn, val, path, list)
SELECT 'type', v, p, t FROM public.helper_val, public.helper_path,
  (VALUES ('{string}'::text[]), ('{object}'), ('{array}'), ('{boolean}'), ('{number}'), ('{null}'), ('{string,null}'),
          ('{number,string,array}'), ('{}'), (NULL), ('{NULL}'), ('{NULL,string}'), ('{"",number,""}'), ('{String}'),
          ('{{string,number},{object,null}}'), ('[0:1]={object,boolean}')) t(t);
INSERT INTO public.helper_corpus (fn, val, path, lo, hi)
SELECT 'int', v, p, lo, hi FROM public.helper_val, public.helper_path,
  (VALUES (0::bigint, 100::bigint), (1, 86400000), (100, 599), (0, 0), (1, 1), (5, 1), (-5, -1), (NULL, 10), (10, NULL),
          (NULL, NULL), (-9223372036854775808, 9223372036854775807), (9223372036854775807, 9223372036854775807)) b(lo, hi);
INSERT INTO public.helper_corpus (fn, val, path, list)
SELECT 'keys', o, p, a FROM public.helper_obj, public.helper_path,
  (VALUES ('{}'::text[]), ('{a}'), ('{a,b,tag}'), ('{A,"",é}'), (ARRAY[U&'e\0301']), (NULL), ('{NULL}'), ('{a,NULL}'),
          ('{{a,b},{tag,zz}}'), ('{Alpha,B,ab,ss,日本,"a b"}')) a(a);
UPDATE public.helper_corpus SET old = public.helper_call(fn, val, path, list, lo, hi, req);
SELECT p.oid::regprocedure AS function, l.lanname AS language_in_0_2_0
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.pronamespace = 'ductape'::regnamespace
   AND p.proname IN ('_check_tag', '_check_type', '_check_keys', '_check_int', '_check_request_type')
 ORDER BY p.oid::regprocedure::text;

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
SELECT count(*) AS calls_before FROM ductape.calls \gset
SELECT has_column_privilege('dt_up_admin', 'ductape.endpoints', 'url', 'UPDATE') AS admin_updates_url_before;
ALTER EXTENSION ductape UPDATE;
SELECT extversion = :'fresh_version' AS current_version FROM pg_extension WHERE extname = 'ductape';
-- ductape.calls is partitioned by day now: the records made before the
-- update are all there, in day partitions like the worker's (members of
-- the extension, no grants, row level security on), and the usage roles
-- still read ductape.calls
SELECT c.relkind AS calls_kind, (SELECT count(*) FROM ductape.calls) >= :calls_before AS calls_kept,
       :calls_before > 0 AS had_calls
  FROM pg_class c WHERE c.oid = 'ductape.calls'::regclass;
SELECT count(*) > 0 AS partitions, bool_and(p.relname ~ '^calls_[0-9]{8}$') AS named_by_day,
       bool_and(NOT EXISTS (SELECT FROM aclexplode(coalesce(p.relacl, acldefault('r', p.relowner))) a
                            WHERE a.grantee <> p.relowner)) AS no_grants, bool_and(p.relrowsecurity) AS row_security,
       bool_and(EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = p.oid
                          AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e')) AS members
  FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhrelid WHERE i.inhparent = 'ductape.calls'::regclass;
SELECT has_table_privilege('dt_up_user', 'ductape.calls', 'SELECT') AS usage_role_reads_calls;
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
-- The generic rules in C give what their SQL gave, for every call of the
-- corpus: the same problems in the same order (NULL ones included).
SELECT fn AS helper, count(*) AS calls, count(*) FILTER (WHERE old IS DISTINCT FROM public.helper_call(fn, val, path, list, lo, hi, req)) AS differ,
       count(*) FILTER (WHERE cardinality(old) > 0) AS with_problems, count(*) FILTER (WHERE array_position(old, NULL) IS NOT NULL) AS with_null_problems,
       (SELECT count(DISTINCT e) FROM public.helper_corpus c, unnest(c.old) e WHERE c.fn = h.fn) AS distinct_problems
  FROM public.helper_corpus h GROUP BY fn ORDER BY fn;
SELECT p.oid::regprocedure AS function, l.lanname AS language, p.provolatile, p.proisstrict
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.oid IN ('ductape._check_action(jsonb, text, jsonb, jsonb)'::regprocedure,
                 'ductape._check_retries(jsonb, text)'::regprocedure,
                 'ductape._check_tag(jsonb, text, boolean)'::regprocedure,
                 'ductape._check_type(jsonb, text, text[])'::regprocedure,
                 'ductape._check_keys(jsonb, text, text[])'::regprocedure,
                 'ductape._check_int(jsonb, text, bigint, bigint)'::regprocedure,
                 'ductape._check_request_type(jsonb, text)'::regprocedure)
 ORDER BY p.oid::regprocedure::text;
-- Unknown keys are listed in the database's collation order: in a database
-- whose collation is ICU's, where that is not byte order, the C rules list
-- them as the SQL did too (byte order would differ for most of these).
CREATE DATABASE ductape_upgrade_icu TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C'
    LOCALE_PROVIDER icu ICU_LOCALE 'en';
\c ductape_upgrade_icu
CREATE EXTENSION ductape VERSION '0.2.0';
CREATE TABLE public.keys_corpus (obj jsonb, allowed text[], old text[]);
INSERT INTO public.keys_corpus (obj, allowed)
SELECT o::jsonb, a FROM (VALUES
  ('{"Alpha": 1, "alpha": 2, "_x": 3, "Beta": 4, "1": 5, "é": 6, "~": 7, "a b": 8, "B": 9, "b": 10, "Z": 11, "a-b": 12, "ab": 13}'),
  ('{"é": 1, "e\u0301": 2, "e": 3, "f": 4, "E": 5, "ä": 6, "az": 7, "ß": 8, "ss": 9, "st": 10, "Æ": 11, "ae": 12, "af": 13}'),
  ('{"日本": 1, "中文": 2, "😀": 3, "ǅ": 4, "Ω": 5, "ω": 6, "z": 7, "ﬁ": 8, "fi": 9, "1": 10, "10": 11, "9": 12, "-1": 13}'),
  ('{"a-c": 1, "ab": 2, "a_d": 3, "a.b": 4, "A-C": 5, "aB": 6, "a c": 7, "a": 8, "A": 9, "-a": 10, "_a": 11, ".a": 12}')) o(o),
  (VALUES ('{}'::text[]), ('{a,b}'), ('{ab,ss,é,1}')) a(a);
UPDATE public.keys_corpus SET old = ductape._check_keys(obj, '/o', allowed);
ALTER EXTENSION ductape UPDATE;
SELECT count(*) AS objects, count(*) FILTER (WHERE old IS DISTINCT FROM ductape._check_keys(obj, '/o', allowed)) AS differ,
       count(*) FILTER (WHERE old <> ARRAY(SELECT format('/o/%s: unknown key', k) FROM jsonb_object_keys(obj) k
                                            WHERE k <> ALL (allowed) ORDER BY k COLLATE "C")) AS not_in_byte_order
  FROM public.keys_corpus;
\c ductape_upgrade
SET ductape_test.api = :'api_url';
DROP DATABASE ductape_upgrade_icu WITH (FORCE);

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
-- it has no tenant (it keeps receiving what is published without one); the
-- admin granted under 0.1.0 changes it with endpoint_update, no longer by
-- UPDATE, and the usage role publishes with the new signature
SELECT tenant, rate_limit FROM ductape.endpoints WHERE id = :endpoint_id;
SELECT has_column_privilege('dt_up_admin', 'ductape.endpoints', 'url', 'UPDATE') AS admin_updates_url,
       has_function_privilege('dt_up_admin', 'ductape.endpoint_update(bigint, text, text[], text, jsonb, integer)', 'EXECUTE') AS admin_endpoint_update,
       has_function_privilege('dt_up_admin', 'ductape.endpoint_create(text, text[], text, text, jsonb, text, integer)', 'EXECUTE') AS admin_endpoint_create,
       has_function_privilege('dt_up_user', 'ductape.publish(text, jsonb, text, text)', 'EXECUTE') AS user_publish,
       has_function_privilege('dt_up_user', 'ductape.endpoint_update(bigint, text, text[], text, jsonb, integer)', 'EXECUTE') AS user_endpoint_update;
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

-- Nothing is granted to PUBLIC.
SELECT count(*) AS public_function_grants
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'ductape' AND has_function_privilege('public', p.oid, 'EXECUTE');

-- What an install defines, one row per (kind, object): the detail is what
-- must be equal.  Roles are named, except the extension's owner and PUBLIC.
CREATE FUNCTION public.dt_role(r oid) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN r = 0 THEN 'PUBLIC'
                WHEN r = (SELECT e.extowner FROM pg_extension e WHERE e.extname = 'ductape') THEN '(owner)'
                ELSE r::regrole::text END
$$;
-- an ACL, one row per grantee: what it holds, and from whom
CREATE FUNCTION public.dt_acl(acl aclitem[], OUT grantee text, OUT privileges text) RETURNS SETOF record
LANGUAGE sql STABLE AS $$
    SELECT public.dt_role(a.grantee),
           string_agg(a.privilege_type || CASE WHEN a.is_grantable THEN ' (grantable)' ELSE '' END
                      || ' by ' || public.dt_role(a.grantor), ', ' ORDER BY a.privilege_type, public.dt_role(a.grantor))
      FROM aclexplode(acl) a GROUP BY a.grantee
$$;
CREATE FUNCTION public.dt_catalog(OUT kind text, OUT object text, OUT detail text) RETURNS SETOF record
LANGUAGE plpgsql STABLE AS $f$
BEGIN
RETURN QUERY
WITH ext AS (SELECT e.oid FROM pg_extension e WHERE e.extname = 'ductape'),
     ns AS (SELECT n.oid FROM pg_namespace n WHERE n.nspname = 'ductape'),
     -- (the day partitions of ductape.calls and their indexes are made by
     -- the worker as days come: compared apart, below)
     rel AS (SELECT c.* FROM pg_class c WHERE c.relnamespace = (SELECT oid FROM ns) AND NOT c.relispartition),
     fn AS (SELECT p.* FROM pg_proc p WHERE p.pronamespace = (SELECT oid FROM ns)),
     -- (types of their own: not a table's row type, not an array)
     typ AS (SELECT t.* FROM pg_type t WHERE t.typnamespace = (SELECT oid FROM ns)
                AND NOT (t.typcategory = 'A' AND t.typelem <> 0)
                AND (t.typrelid = 0 OR (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c')),
     -- everything that has privileges: its ACL, and the ACL PostgreSQL
     -- assumes when there is none
     obj AS (SELECT 'pg_namespace'::regclass AS classoid, n.oid AS objoid, 0 AS objsubid, n.nspacl AS acl,
                    acldefault('n', n.nspowner) AS dflt
               FROM pg_namespace n WHERE n.oid = (SELECT oid FROM ns)
             UNION ALL
             SELECT 'pg_class'::regclass, c.oid, 0, c.relacl,
                    acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner)
               FROM rel c WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
             UNION ALL
             SELECT 'pg_class'::regclass, c.oid, a.attnum, a.attacl, NULL
               FROM rel c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             UNION ALL
             SELECT 'pg_proc'::regclass, p.oid, 0, p.proacl, acldefault('f', p.proowner) FROM fn p
             UNION ALL
             SELECT 'pg_type'::regclass, t.oid, 0, t.typacl, acldefault('T', t.typowner) FROM typ t)
SELECT 'extension', e.extname::text,
       format('version %s, relocatable %s, owner %s, schema %s owned by %s', e.extversion, e.extrelocatable,
              public.dt_role(e.extowner), n.nspname, public.dt_role(n.nspowner))
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'ductape'
UNION ALL
SELECT 'member', pg_describe_object(d.classid, d.objid, d.objsubid), ''
  FROM pg_depend d
 WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = (SELECT oid FROM ext) AND d.deptype = 'e'
   AND NOT (d.classid = 'pg_class'::regclass
            AND coalesce((SELECT c.relispartition FROM pg_class c WHERE c.oid = d.objid), false))
UNION ALL
SELECT 'relation', c.relname::text,
       format('kind %s, options %s, row security %s (forced %s), persistence %s, replica identity %s, owner %s',
              c.relkind, c.reloptions, c.relrowsecurity, c.relforcerowsecurity, c.relpersistence, c.relreplident,
              public.dt_role(c.relowner))
  FROM rel c WHERE c.relkind <> 'i'
UNION ALL
-- (the position among the columns there are: a column dropped by an
-- upgrade leaves a gap in attnum that a fresh install does not have)
SELECT 'column', c.relname || '.' || a.attname,
       format('#%s %s%s%s%s%s%s%s', row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum),
              format_type(a.atttypid, a.atttypmod),
              CASE WHEN a.attnotnull THEN ' not null' ELSE '' END,
              ' default ' || pg_get_expr(ad.adbin, ad.adrelid),
              CASE a.attidentity WHEN 'a' THEN ' generated always as identity'
                                 WHEN 'd' THEN ' generated by default as identity' ELSE '' END,
              CASE WHEN a.attgenerated <> '' THEN ' generated stored' ELSE '' END,
              CASE WHEN a.attcollation <> 0 THEN ' collate ' || a.attcollation::regcollation::text ELSE '' END,
              CASE WHEN a.attstorage <> t.typstorage THEN ' storage ' || a.attstorage::text ELSE '' END)
  FROM rel c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'c', 'f')
UNION ALL
SELECT 'index', c.relname::text, pg_get_indexdef(c.oid) || CASE WHEN i.indisclustered THEN ' (clustered)' ELSE '' END
  FROM rel c JOIN pg_index i ON i.indexrelid = c.oid
UNION ALL
SELECT 'constraint', coalesce(co.conrelid::regclass::text, co.contypid::regtype::text) || ' ' || co.conname,
       co.contype::text || ': ' || pg_get_constraintdef(co.oid)
  FROM pg_constraint co WHERE co.connamespace = (SELECT oid FROM ns)
   AND (co.conrelid = 0 OR co.conrelid IN (SELECT oid FROM rel))
UNION ALL
SELECT 'trigger', c.relname || ' ' || tg.tgname,
       pg_get_triggerdef(tg.oid) || ' (enabled ' || tg.tgenabled::text || ')'
  FROM rel c JOIN pg_trigger tg ON tg.tgrelid = c.oid AND NOT tg.tgisinternal
UNION ALL
SELECT 'view', c.relname::text, pg_get_viewdef(c.oid)
  FROM rel c WHERE c.relkind IN ('v', 'm')
UNION ALL
SELECT 'policy', c.relname || ' ' || po.polname,
       format('for %s, %s, to %s, using %s, with check %s', po.polcmd,
              CASE WHEN po.polpermissive THEN 'permissive' ELSE 'restrictive' END,
              (SELECT string_agg(public.dt_role(r), ', ' ORDER BY public.dt_role(r)) FROM unnest(po.polroles) r),
              pg_get_expr(po.polqual, po.polrelid), pg_get_expr(po.polwithcheck, po.polrelid))
  FROM rel c JOIN pg_policy po ON po.polrelid = c.oid
UNION ALL
-- (an enum's labels in their order)
SELECT 'type', t.typname::text,
       format('type %s, owner %s%s', t.typtype, public.dt_role(t.typowner),
              ', labels ' || (SELECT string_agg(en.enumlabel::text, ', ' ORDER BY en.enumsortorder)
                                FROM pg_enum en WHERE en.enumtypid = t.oid))
  FROM typ t
UNION ALL
SELECT 'sequence', c.relname::text,
       format('%s start %s increment %s min %s max %s cache %s cycle %s, owned by %s', format_type(s.seqtypid, NULL),
              s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle,
              (SELECT string_agg(format('%s.%s (%s)', d.refobjid::regclass, a.attname, d.deptype), ', ')
                 FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i')))
  FROM rel c JOIN pg_sequence s ON s.seqrelid = c.oid
UNION ALL
-- (the definition with argument defaults, language, volatility,
-- strictness, SECURITY DEFINER, PARALLEL, cost, rows, SET and the body;
-- and each of these again, with the owner)
SELECT 'function', p.oid::regprocedure::text,
       pg_get_functiondef(p.oid)
       || format(E'\n-- kind %s, owner %s, volatility %s, strict %s, security definer %s, leakproof %s, parallel %s, cost %s, rows %s, config %s',
                 p.prokind, public.dt_role(p.proowner), p.provolatile, p.proisstrict, p.prosecdef, p.proleakproof,
                 p.proparallel, p.procost, p.prorows, p.proconfig)
  FROM fn p
UNION ALL
SELECT 'comment', pg_describe_object(d.classoid, d.objoid, d.objsubid), d.description
  FROM pg_description d
 WHERE (d.classoid = 'pg_extension'::regclass AND d.objoid = (SELECT oid FROM ext))
    OR (d.classoid = 'pg_namespace'::regclass AND d.objoid = (SELECT oid FROM ns))
    OR (d.classoid = 'pg_class'::regclass AND d.objoid IN (SELECT oid FROM rel))
    OR (d.classoid = 'pg_proc'::regclass AND d.objoid IN (SELECT oid FROM fn))
    OR (d.classoid = 'pg_type'::regclass AND d.objoid IN (SELECT oid FROM typ))
    OR (d.classoid = 'pg_constraint'::regclass
        AND d.objoid IN (SELECT co.oid FROM pg_constraint co WHERE co.connamespace = (SELECT oid FROM ns)))
    OR (d.classoid = 'pg_trigger'::regclass
        AND d.objoid IN (SELECT tg.oid FROM pg_trigger tg WHERE tg.tgrelid IN (SELECT oid FROM rel)))
    OR (d.classoid = 'pg_policy'::regclass
        AND d.objoid IN (SELECT po.oid FROM pg_policy po WHERE po.polrelid IN (SELECT oid FROM rel)))
UNION ALL
-- (what pg_dump keeps: a set, the order of the registrations means nothing)
SELECT 'config dump', c.cfg::regclass::text, coalesce(c.cond, '')
  FROM pg_extension e, unnest(e.extconfig, e.extcondition) c(cfg, cond) WHERE e.extname = 'ductape'
UNION ALL
SELECT 'privilege', pg_describe_object(o.classoid, o.objoid, o.objsubid) || ' to ' || a.grantee, a.privileges
  FROM obj o, LATERAL public.dt_acl(coalesce(o.acl, o.dflt)) a
UNION ALL
-- The privileges the scripts left, which pg_dump compares a database with
-- (pg_init_privs), every role's: PostgreSQL records as "initial" every
-- grant a script makes, so an upgrade script that re-grants to the roles of
-- the database (or revokes from them) would record those roles there too,
-- and a dump would leave their privileges out; each upgrade script ends
-- with _forget_granted_initial_privileges(), and a fresh install records
-- none.
SELECT 'initial privilege', pg_describe_object(o.classoid, o.objoid, o.objsubid) || ' to ' || a.grantee, a.privileges
  FROM obj o LEFT JOIN pg_init_privs ip ON ip.classoid = o.classoid AND ip.objoid = o.objoid AND ip.objsubid = o.objsubid,
       LATERAL public.dt_acl(coalesce(ip.initprivs, o.dflt)) a
UNION ALL
-- (rows the script inserts)
SELECT 'row', 'ductape.products ' || p.tag, format('%s %s', p.name, p.envs)
  FROM ductape.products p WHERE p.tag = 'default';
END
$f$;

-- What the updated install defines; then a fresh install of the current
-- version in its place (its schema too: CREATE EXTENSION made it, and it
-- keeps its grants otherwise), granted to the same roles.
CREATE TABLE public.updated_catalog AS SELECT * FROM public.dt_catalog();
DROP EXTENSION ductape;
DROP SCHEMA ductape;
CREATE EXTENSION ductape;
SELECT extversion = :'fresh_version' AS fresh_install FROM pg_extension WHERE extname = 'ductape';
SELECT ductape.grant_usage('dt_up_user'), ductape.grant_admin('dt_up_admin'), ductape.grant_usage('dt_up_other');
CREATE TABLE public.fresh_catalog AS SELECT * FROM public.dt_catalog();

-- Updated and fresh installs define the same objects, kind by kind
-- ("compared": the fresh install has objects of that kind at all).
SELECT k.kind, (SELECT count(*) > 0 FROM fresh_catalog f WHERE f.kind = k.kind) AS compared,
       coalesce((SELECT count(*) || ' differ'
                   FROM fresh_catalog f FULL JOIN updated_catalog u ON u.kind = f.kind AND u.object = f.object
                  WHERE coalesce(f.kind, u.kind) = k.kind AND f.detail IS DISTINCT FROM u.detail
                 HAVING count(*) > 0), 'same') AS updated_vs_fresh
  FROM (VALUES (1, 'extension'), (2, 'member'), (3, 'relation'), (4, 'column'), (5, 'index'), (6, 'constraint'),
               (7, 'trigger'), (8, 'view'), (9, 'policy'), (10, 'type'), (11, 'sequence'), (12, 'function'),
               (13, 'comment'), (14, 'config dump'), (15, 'privilege'), (16, 'initial privilege'), (17, 'row')) k(n, kind)
 ORDER BY k.n;
-- (descriptions, "comment" above: pg_description of the extension, its
-- schema and every object and column in it; both installs describe their
-- objects, and sql/descriptions.sql checks that none is left out)
SELECT count(*) >= 250 AS descriptions_compared FROM fresh_catalog WHERE kind = 'comment';
-- (every kind is in the list above)
SELECT DISTINCT kind AS unlisted_kind FROM fresh_catalog
 WHERE kind NOT IN ('extension', 'member', 'relation', 'column', 'index', 'constraint', 'trigger', 'view', 'policy',
                    'type', 'sequence', 'function', 'comment', 'config dump', 'privilege', 'initial privilege', 'row');
-- What differs, if anything: the object, and the install it is in alone
-- (with its first line), or the first line where the two differ.  To fix: make the source in
-- src/sql/ (fresh installs) and the upgrade script say the same.
SELECT coalesce(f.kind, u.kind) AS kind, coalesce(f.object, u.object) AS object,
       CASE WHEN u.object IS NULL THEN 'only in the fresh install: ' || split_part(f.detail, E'\n', 1)
            WHEN f.object IS NULL THEN 'only in the updated install: ' || split_part(u.detail, E'\n', 1)
            ELSE (SELECT format('line %s: fresh %s, updated %s', coalesce(x.n, y.n),
                                coalesce(quote_literal(x.line), 'ends'), coalesce(quote_literal(y.line), 'ends'))
                    FROM string_to_table(f.detail, E'\n') WITH ORDINALITY x(line, n)
                    FULL JOIN string_to_table(u.detail, E'\n') WITH ORDINALITY y(line, n) ON y.n = x.n
                   WHERE x.line IS DISTINCT FROM y.line ORDER BY coalesce(x.n, y.n) LIMIT 1) END AS difference
  FROM fresh_catalog f FULL JOIN updated_catalog u ON u.kind = f.kind AND u.object = f.object
 WHERE f.detail IS DISTINCT FROM u.detail
 ORDER BY 1, 2;

\c :suite_db
DROP DATABASE ductape_upgrade WITH (FORCE);
DROP ROLE dt_up_user, dt_up_admin, dt_up_other;

-- The update gives the functions 0.3.0 adds only to the roles that hold
-- directly what each goes with: a role that is an administrator only
-- through a role it belongs to gets nothing of its own (once out of that
-- role, it keeps usage only); a role granted run() by hand gets no more.
CREATE DATABASE ductape_upgrade_grants;
\c ductape_upgrade_grants
SET client_min_messages = error;
CREATE EXTENSION ductape VERSION '0.2.0';
CREATE ROLE dt_rv_group;
CREATE ROLE dt_rv_member;
CREATE ROLE dt_rv_narrow;
SELECT ductape.grant_admin('dt_rv_group'), ductape.grant_usage('dt_rv_member');
GRANT dt_rv_group TO dt_rv_member;
GRANT USAGE ON SCHEMA ductape TO dt_rv_narrow;
GRANT EXECUTE ON FUNCTION ductape.run(text, text, jsonb, text, text, jsonb) TO dt_rv_narrow;
ALTER EXTENSION ductape UPDATE TO '0.3.0';
RESET client_min_messages;
REVOKE dt_rv_group FROM dt_rv_member;
-- dt_rv_member: usage (and the new usage function _stats), no admin rights
-- once out of the group; dt_rv_narrow: run() and nothing more.
SELECT r,
       has_function_privilege(r, 'ductape.secret_get(text)', 'EXECUTE') AS secret_get,
       has_function_privilege(r, 'ductape.app_define(jsonb)', 'EXECUTE') AS app_define,
       has_function_privilege(r, 'ductape.action_drop(text, text, boolean)', 'EXECUTE') AS action_drop,
       has_function_privilege(r, 'ductape.publish(text, jsonb, text, text)', 'EXECUTE') AS publish,
       has_table_privilege(r, 'ductape.calls', 'SELECT') AS calls
  FROM unnest(ARRAY['dt_rv_member', 'dt_rv_narrow']) r ORDER BY r;
\c :suite_db
DROP DATABASE ductape_upgrade_grants;
DROP ROLE dt_rv_group, dt_rv_member, dt_rv_narrow;

-- A 0.2.0 database never deleted a call record: years of days.  The update
-- keeps those within ductape.call_retention (one partition per day) and
-- leaves out the rest; making a partition for each of 400 days in the
-- update's transaction ran out of the lock table.
CREATE DATABASE ductape_upgrade_days;
\c ductape_upgrade_days
SET client_min_messages = warning;
CREATE EXTENSION ductape VERSION '0.2.0';
INSERT INTO ductape.calls (id, at, method, url, attempts, duration_ms, role)
SELECT g, now() - make_interval(days => g), 'GET', 'http://example.com/' || g, 1, 1, 'postgres'
  FROM generate_series(1, 400) g;
ALTER EXTENSION ductape UPDATE TO '0.3.0';
RESET client_min_messages;
SELECT count(*) AS kept, min(id) AS newest_day, max(id) AS oldest_day_kept FROM ductape.calls;
SELECT count(*) AS partitions FROM pg_inherits WHERE inhparent = 'ductape.calls'::regclass;
\c :suite_db
DROP DATABASE ductape_upgrade_days;
