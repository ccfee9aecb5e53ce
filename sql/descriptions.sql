-- Every object a user reads or calls describes itself, so that \dx,
-- \df+ ductape.*, \d+ and pg_settings explain ductape without the docs:
-- the extension and its schema; every function, table, view and type in
-- schema ductape; every column of those tables and views; every setting
-- (its long description too).  The query below lists what has no
-- description, and expects nothing: a new object without a COMMENT ON (or a
-- new setting without a long description) makes this test fail, naming it.
-- Run last but one, after every other file has done what it does.
--
-- Left out on purpose, and why:
--   - functions whose names start with _: ductape's internal plumbing
--     (definition checks, the workflow engine, the implementations behind
--     the caller proxy); their signatures change between versions and
--     docs/reference.md says so.  Two of them are documented for debugging
--     and are checked: _signature_check and _schema_validate.
--   - tables and views whose names start with _ that no admin can read
--     (_oauth_tokens); those grant_admin grants (_secrets, _webhook_tokens)
--     are checked with their columns, as admins read them.
--   - partitions: their parent describes them.
--   - the row types of tables and array types: the table, or the element
--     type, describes them.

-- The regression cluster preloads the library, so its settings are
-- defined; LOAD makes sure of it in any session (a no-op when loaded).
LOAD 'ductape';

-- Which relations an administrator reads: the ones grant_admin grants.
CREATE ROLE dt_desc_admin;
SELECT ductape.grant_admin('dt_desc_admin');

CREATE TEMP VIEW user_facing AS
WITH rel AS (
    SELECT c.oid, c.relname, c.relkind FROM pg_class c
     WHERE c.relnamespace = 'ductape'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
       AND NOT c.relispartition
       AND (c.relname !~ '^_' OR has_table_privilege('dt_desc_admin', c.oid, 'SELECT')))
SELECT 'extension' AS kind, e.extname::text AS object,
       obj_description(e.oid, 'pg_extension') AS description
  FROM pg_extension e WHERE e.extname = 'ductape'
UNION ALL
SELECT 'schema', 'ductape', obj_description('ductape'::regnamespace, 'pg_namespace')
UNION ALL
SELECT CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' ELSE 'function' END,
       p.oid::regprocedure::text, obj_description(p.oid, 'pg_proc')
  FROM pg_proc p
 WHERE p.pronamespace = 'ductape'::regnamespace
   AND (p.proname !~ '^_' OR p.proname IN ('_signature_check', '_schema_validate'))
UNION ALL
SELECT CASE r.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' ELSE 'table' END,
       r.oid::regclass::text, obj_description(r.oid, 'pg_class')
  FROM rel r
UNION ALL
SELECT 'column', r.oid::regclass || '.' || a.attname, col_description(r.oid, a.attnum)
  FROM rel r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'type', t.oid::regtype::text, obj_description(t.oid, 'pg_type')
  FROM pg_type t
 WHERE t.typnamespace = 'ductape'::regnamespace AND t.typname !~ '^_'
   AND NOT (t.typcategory = 'A' AND t.typelem <> 0)
   AND (t.typrelid = 0 OR (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c')
UNION ALL
SELECT 'setting', s.name, nullif(s.short_desc, '') FROM pg_settings s WHERE s.name LIKE 'ductape.%'
UNION ALL
SELECT 'setting (long description)', s.name, nullif(s.extra_desc, '')
  FROM pg_settings s WHERE s.name LIKE 'ductape.%';

-- The check looks at something: at least this many of each kind (more
-- come; fewer means the query above lost its way).
SELECT kind, count(*) >= n AS checked
  FROM user_facing JOIN (VALUES ('extension', 1), ('schema', 1), ('function', 45), ('table', 19), ('view', 3),
                                ('column', 180), ('type', 5), ('setting', 22),
                                ('setting (long description)', 22)) v(k, n) ON v.k = kind
 GROUP BY kind, n ORDER BY kind;

-- What has no description: nothing.
SELECT kind, object FROM user_facing WHERE description IS NULL ORDER BY kind, object;

-- A description is one or more sentences: it says something and ends with
-- a full stop (the extension's, which \dx shows in a table, excepted).
SELECT kind, object, description FROM user_facing
 WHERE description IS NOT NULL
   AND (length(description) < 10 OR description <> btrim(description)
        OR (kind <> 'extension' AND description !~ '\.$'))
 ORDER BY kind, object;

-- What \dx shows; it names calls, jobs, inbound and outbound webhooks and
-- workflows.
SELECT description FROM user_facing WHERE kind = 'extension';

DROP VIEW user_facing;
DROP OWNED BY dt_desc_admin;
DROP ROLE dt_desc_admin;
