-- Every plpgsql function of the extension through plpgsql_check (Debian's
-- postgresql-15-plpgsql-check): no errors.  The warnings left are listed
-- with their reason:
--   42804 "target type is different type than source type", detail
--     cast "text" value to "text[]" (or "jsonb", "jsonb[]") type: a variable
--     initialised from a literal such as '{}' (errs text[] := '{}'), which is
--     exactly that value of the variable's type;
--   "unused variable" / "never read variable": a loop counter left in three
--     functions of the frozen 0.1.0 script; harmless.
-- A new kind of warning, or any error, changes this file's output.
CREATE EXTENSION plpgsql_check;
SELECT c.level, c.sqlstate, c.message, coalesce(c.detail, '') AS detail, count(*) AS n
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace,
       LATERAL plpgsql_check_function_tb(p.oid, performance_warnings => false, extra_warnings => true,
                                         security_warnings => true) c
 WHERE n.nspname = 'ductape' AND p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'plpgsql')
   AND p.prorettype <> 'trigger'::regtype
 GROUP BY 1, 2, 3, 4
 ORDER BY 1, 2, 3, 4;
SELECT count(*) AS functions_checked
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'ductape' AND p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'plpgsql');
DROP EXTENSION plpgsql_check;
