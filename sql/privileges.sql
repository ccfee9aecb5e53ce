-- Privileges (docs/security.md): an admin role, a usage role, an unrelated role.

CREATE ROLE dt_admin;
CREATE ROLE dt_app;
CREATE ROLE dt_app2;
SELECT ductape.grant_admin('dt_admin');
SELECT ductape.grant_usage('dt_app');
SELECT ductape.grant_usage('dt_app2');

-- The admin defines an app and a secret.
SET ROLE dt_admin;
SELECT ductape.secret_set('PRIV_KEY', 'priv_plaintext_secret_555', apps => '{priv}');
SELECT ductape.app_define(jsonb_build_object('tag', 'priv',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', api())),
  'auth', jsonb_build_object('type', 'bearer', 'token', '$Secret{PRIV_KEY}'),
  'actions', jsonb_build_array(jsonb_build_object('tag', 'me', 'method', 'GET', 'resource', '/echo/me'))));
SELECT ductape.secret_get('PRIV_KEY');
SELECT name FROM ductape.secrets WHERE name = 'PRIV_KEY';
RESET ROLE;

-- The usage role calls it; the secret is resolved for it, never shown to it.
SET ROLE dt_app;
SELECT ductape.run('priv', 'me')->'headers'->>'authorization' = 'Bearer priv_plaintext_secret_555' AS call_used_secret;
SELECT ductape.run_response('priv', 'me')->'status' AS status;
SELECT ductape.http('GET', api() || '/echo/adhoc')->'status' AS http_status;
SELECT ductape.describe('priv', 'me')->>'method' AS describe;
SELECT expect_error($$SELECT ductape.secret_get('PRIV_KEY')$$);
SELECT expect_error($$SELECT * FROM ductape.secrets$$);
SELECT expect_error($$SELECT value FROM ductape._secrets$$);
SELECT expect_error($$SELECT ductape.secret_set('X', 'y')$$);
SELECT expect_error($$SELECT ductape.app_define('{"tag": "mine"}')$$);
SELECT expect_error($$SELECT * FROM ductape.apps$$);
SELECT expect_error($$SELECT ductape.config('priv', '{}')$$);
SELECT expect_error($$SELECT ductape.rotate_master_key()$$);
SELECT expect_error($$SELECT ductape.grant_admin('dt_app')$$);
RESET ROLE;

SET ROLE dt_app2;
SELECT ductape.run('priv', 'me')->>'path' AS app2_path;
RESET ROLE;
SELECT wait_calls($$role IN ('dt_app', 'dt_app2')$$, 4) AS recorded;

-- Row level security: a usage role sees only its own call records.
SET ROLE dt_app;
SELECT role, count(*) FROM ductape.calls GROUP BY role ORDER BY role;
SELECT sum(calls) AS calls_in_stats FROM ductape.stats;
RESET ROLE;
SET ROLE dt_app2;
SELECT role, count(*) FROM ductape.calls GROUP BY role ORDER BY role;
RESET ROLE;
SET ROLE dt_admin;
SELECT count(DISTINCT role) >= 3 AS admin_sees_every_role FROM ductape.calls;
RESET ROLE;

-- An unrelated role can do nothing.
SET ROLE dt_nobody;
SELECT expect_error($$SELECT ductape.run('priv', 'me')$$);
SELECT expect_error($$SELECT * FROM ductape.calls$$);
RESET ROLE;

-- A usage role cannot hijack the owner's catalog reads through search_path.
-- (Redefining the app empties every backend's catalog cache, so the call
-- below really reads the catalog.)
CREATE SCHEMA evil AUTHORIZATION dt_app;
SELECT ductape.app_define(ductape.app_export('priv')) AS redefined;
SET ROLE dt_app;
CREATE FUNCTION evil.texteq(a text, b text) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'hijacked as %', current_user; END $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.texteq);
SET search_path = evil, pg_catalog, public;
SELECT ductape.run('priv', 'me')->>'path' AS not_hijacked;
SELECT ductape.describe('priv')->>'app' AS describe_not_hijacked;
RESET search_path;
RESET ROLE;
DROP SCHEMA evil CASCADE;

-- Every SECURITY DEFINER function pins search_path; nothing is granted to PUBLIC.
SELECT p.oid::regprocedure AS security_definer, p.proconfig
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'ductape' AND p.prosecdef ORDER BY p.oid::regprocedure::text COLLATE "C";
SELECT count(*) AS public_grants
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'ductape' AND has_function_privilege('public', p.oid, 'EXECUTE');
SELECT count(*) AS public_table_grants
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'ductape' AND c.relkind IN ('r', 'p', 'v') AND has_table_privilege('public', c.oid, 'SELECT');

-- The whole matrix (docs/security.md): every function, table and view of the
-- schema, and what an admin role, a usage role and an unrelated role may do.
-- Any change to a grant shows here.
SELECT p.oid::regprocedure AS function,
       has_function_privilege('dt_admin', p.oid, 'EXECUTE') AS admin,
       has_function_privilege('dt_app', p.oid, 'EXECUTE') AS usage,
       has_function_privilege('dt_nobody', p.oid, 'EXECUTE') AS unrelated,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'ductape' AND p.prokind = 'f'
 ORDER BY p.oid::regprocedure::text;
SELECT c.oid::regclass AS relation, c.relkind, c.relrowsecurity AS rls,
       concat_ws(',', CASE WHEN has_table_privilege(r.role, c.oid, 'SELECT') THEN 'select' END,
                 CASE WHEN has_table_privilege(r.role, c.oid, 'INSERT') THEN 'insert' END,
                 CASE WHEN has_table_privilege(r.role, c.oid, 'UPDATE') THEN 'update' END,
                 CASE WHEN has_table_privilege(r.role, c.oid, 'DELETE') THEN 'delete' END) AS privileges,
       r.role
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
       (VALUES ('dt_admin'), ('dt_app'), ('dt_nobody'), ('public')) r(role)
 WHERE n.nspname = 'ductape' AND c.relkind IN ('r', 'p', 'v')
   AND (has_table_privilege(r.role, c.oid, 'SELECT') OR has_table_privilege(r.role, c.oid, 'INSERT')
        OR has_table_privilege(r.role, c.oid, 'UPDATE') OR has_table_privilege(r.role, c.oid, 'DELETE'))
 ORDER BY c.oid::regclass::text, r.role;
SELECT count(*) AS relations_nobody_or_public_can_touch
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, (VALUES ('dt_nobody'), ('public')) r(role)
 WHERE n.nspname = 'ductape' AND c.relkind IN ('r', 'p', 'v', 'S')
   AND (has_table_privilege(r.role, c.oid, 'SELECT') OR has_table_privilege(r.role, c.oid, 'INSERT')
        OR has_table_privilege(r.role, c.oid, 'UPDATE') OR has_table_privilege(r.role, c.oid, 'DELETE'));

-- Columns that say whom something runs as, or what runs (a role, a
-- handler, a callback): nobody may write them directly, admins included;
-- only ductape's functions do.  Every such column of the schema is listed,
-- with any role that could insert or update it (none).
SELECT c.oid::regclass AS relation, a.attname AS column_name,
       string_agg(r.role, ', ' ORDER BY r.role) FILTER (WHERE has_column_privilege(r.role, c.oid, a.attnum, 'INSERT')
                                                   OR has_column_privilege(r.role, c.oid, a.attnum, 'UPDATE')) AS writable_by
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 CROSS JOIN (VALUES ('dt_admin'), ('dt_app'), ('dt_nobody'), ('public')) r(role)
 WHERE n.nspname = 'ductape' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
   AND (a.attname IN ('role', 'handler', 'on_success', 'on_failure') OR a.atttypid IN ('regrole'::regtype, 'regprocedure'::regtype))
 GROUP BY c.oid, a.attname
 ORDER BY c.oid::regclass::text COLLATE "C", 2;

-- Every function of ductape written in SQL or PL/pgSQL runs with its
-- search_path pinned, not its caller's: superusers call grant_usage and
-- its kin with a search_path that, by default, names public, where a
-- database owner may put a format(text, name), a better match than the
-- built-in format(text, VARIADIC "any").  The two left out are inlined into
-- the fan-out queries and call only built-ins matching their arguments
-- exactly.
SELECT p.oid::regprocedure AS unpinned
  FROM pg_proc p
 WHERE p.pronamespace = 'ductape'::regnamespace
   AND p.prolang <> (SELECT oid FROM pg_language WHERE lanname = 'c')
   AND NOT EXISTS (SELECT FROM unnest(p.proconfig) c WHERE c = 'search_path=pg_catalog, pg_temp')
 ORDER BY 1::text;
CREATE ROLE dt_rv_target;
CREATE SCHEMA rv_evil;
CREATE TABLE public.rv_hijacked (who name, super boolean);
CREATE FUNCTION rv_evil.format(fmt text, r name) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.rv_hijacked SELECT current_user, rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user;
    RETURN pg_catalog.format(fmt, r);
END
$$;
SET search_path = rv_evil, public;
SELECT ductape.grant_usage('dt_rv_target');
SELECT ductape.grant_admin('dt_rv_target');
SELECT ductape.revoke_admin('dt_rv_target');
SELECT ductape.revoke_usage('dt_rv_target');
RESET search_path;
SELECT count(*) AS calls_hijacked FROM public.rv_hijacked;
DROP SCHEMA rv_evil CASCADE;
DROP TABLE public.rv_hijacked;
DROP ROLE dt_rv_target;
