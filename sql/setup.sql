-- Shared set-up for the regression suite: where the test API server is,
-- and helpers used by every later file.
-- (not echoed: ports and paths differ between runs)
\set ECHO none
\getenv api_port DUCTAPE_API_PORT
\getenv tls_port DUCTAPE_TLS_PORT
\getenv ca_file DUCTAPE_CA_FILE
SELECT format('ALTER DATABASE %I SET ductape_test.api = %L', current_database(),
              'http://127.0.0.1:' || :'api_port') \gexec
SELECT format('ALTER DATABASE %I SET ductape_test.tls_api = %L', current_database(),
              'https://127.0.0.1:' || :'tls_port') \gexec
SELECT format('ALTER DATABASE %I SET ductape_test.ca_file = %L', current_database(), :'ca_file') \gexec
\set ECHO all

SELECT extname, extversion FROM pg_extension WHERE extname = 'ductape';

-- Run sql; show the SQLSTATE, message and detail of the error it raises.
CREATE FUNCTION public.expect_error(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    st text; msg text; det text;
BEGIN
    EXECUTE sql;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
    RETURN st || ': ' || regexp_replace(msg, ':\d{4,5}', ':PORT', 'g')
              || coalesce(E'\nDETAIL: ' || regexp_replace(nullif(det, ''), ':\d{4,5}', ':PORT', 'g'), '');
END
$$;

-- The test API server's base URL, and how many requests it counted for a key.
CREATE FUNCTION public.api() RETURNS text LANGUAGE sql AS $$ SELECT current_setting('ductape_test.api') $$;
CREATE FUNCTION public.api_count(key text) RETURNS integer LANGUAGE sql AS $$
    SELECT (ductape.http('GET', api() || '/count/' || key)->'body'->>'count')::integer
$$;

-- Wait until ductape.calls has at least n rows matching cond (up to 10 s).
CREATE FUNCTION public.wait_calls(cond text, n integer DEFAULT 1) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    c integer;
BEGIN
    FOR i IN 1..200 LOOP
        EXECUTE 'SELECT count(*) FROM ductape.calls WHERE ' || cond INTO c;
        IF c >= n THEN RETURN true; END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN false;
END
$$;

-- Nothing is granted to PUBLIC.
CREATE ROLE dt_nobody;
SELECT has_schema_privilege('dt_nobody', 'ductape', 'USAGE') AS schema_usage,
       has_function_privilege('dt_nobody', 'ductape.run(text,text,jsonb,text,text,jsonb)', 'EXECUTE') AS run,
       has_function_privilege('dt_nobody', 'ductape.http(text,text,jsonb,jsonb,jsonb)', 'EXECUTE') AS http,
       has_function_privilege('dt_nobody', 'ductape.app_define(jsonb)', 'EXECUTE') AS app_define,
       has_table_privilege('dt_nobody', 'ductape.calls', 'SELECT') AS calls;
SELECT count(*) AS public_function_grants
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'ductape' AND has_function_privilege('public', p.oid, 'EXECUTE');
SET ROLE dt_nobody;
SELECT expect_error($$SELECT ductape.http('GET', 'http://127.0.0.1/')$$);
RESET ROLE;

-- Settings are defined, with their defaults.
SELECT name, setting, unit, context FROM pg_settings WHERE name LIKE 'ductape.%' ORDER BY name;
SELECT expect_error($$SET ductape.env = 'Not A Tag'$$);
SELECT expect_error($$SET ductape.unknown_setting = 1$$);
