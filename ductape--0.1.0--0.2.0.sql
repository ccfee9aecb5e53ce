-- ductape 0.1.0 -> 0.2.0: ductape.version(), and a look at stored input
-- schemas under 0.2.0's stricter schema check.
\echo Use "ALTER EXTENSION ductape UPDATE TO '0.2.0'" to load this file. \quit

-- Which SQL objects (this extension's version) and which library
-- (ductape.so, loaded at server start) are in use: they differ after new
-- binaries are installed until ALTER EXTENSION ductape UPDATE runs.
CREATE FUNCTION ductape.version() RETURNS jsonb
    AS 'MODULE_PATHNAME', 'dt_version' LANGUAGE C STABLE STRICT;
REVOKE ALL ON FUNCTION ductape.version() FROM PUBLIC;

-- grant_usage now includes version(); roles granted under 0.1.0 get it too.
CREATE OR REPLACE FUNCTION ductape.grant_usage(role name) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA ductape TO %I', role);
    EXECUTE format('GRANT EXECUTE ON FUNCTION
        ductape.run(text, text, jsonb, text, text, jsonb),
        ductape.run_response(text, text, jsonb, text, text, jsonb),
        ductape.http(text, text, jsonb, jsonb, jsonb),
        ductape.describe(text, text),
        ductape.dispatch(text, text, jsonb, text, text, timestamptz, text, regprocedure, regprocedure, jsonb),
        ductape.job(bigint), ductape.wait(bigint, interval), ductape.cancel(bigint),
        ductape.retry(bigint), ductape.on_row(), ductape.publish(text, jsonb, text),
        ductape.workflow_start(text, jsonb, text, text, text), ductape.workflow_status(bigint),
        ductape.workflow_cancel(bigint), ductape.version() TO %I', role);
    EXECUTE format('GRANT SELECT ON ductape.calls, ductape.stats, ductape.jobs, ductape.queue,
        ductape.webhook_events, ductape.messages, ductape.outbox, ductape.deliveries,
        ductape.workflow_runs, ductape.workflow_steps TO %I', role);
END
$$;
REVOKE ALL ON FUNCTION ductape.grant_usage(name) FROM PUBLIC;

DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT DISTINCT p.grantee::regrole::name AS role
               FROM pg_proc f, aclexplode(f.proacl) p
              WHERE f.oid = 'ductape.run(text, text, jsonb, text, text, jsonb)'::regprocedure
                AND p.privilege_type = 'EXECUTE' AND p.grantee <> 0
                AND p.grantee <> f.proowner
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION ductape.version() TO %I', r.role);
    END LOOP;
END
$$;

-- 0.2.0 refuses an input schema that applies itself to the same value
-- through $ref: validating against it never ended (0.2.0 stops such a call
-- at a step limit, 54000).  Stored definitions are left as they are; name
-- the ones to fix.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT a.app, a.tag, ductape._schema_check(a.spec->'input', '/input') AS problems
               FROM ductape.actions a
              WHERE a.spec ? 'input'
    LOOP
        IF cardinality(r.problems) > 0 THEN
            RAISE WARNING 'the input schema of %.% is refused by ductape 0.2.0', r.app, r.tag
                USING DETAIL = array_to_string(r.problems, E'\n'),
                      HINT = 'Define the action again with a schema whose $refs descend into the value.';
        END IF;
    END LOOP;
END
$$;
