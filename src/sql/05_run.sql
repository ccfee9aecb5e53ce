-- ductape SQL source: synchronous calls and their records.
--
-- run, run_response and http send from the calling backend (src/run.c,
-- src/http.c).  Call records are written by the database's worker from a
-- shared-memory buffer (src/worker.c).

CREATE FUNCTION ductape.run(app text, action text, input jsonb DEFAULT '{}',
                            env text DEFAULT NULL, product text DEFAULT NULL,
                            options jsonb DEFAULT '{}')
RETURNS jsonb LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_run';

CREATE FUNCTION ductape.run_response(app text, action text, input jsonb DEFAULT '{}',
                                     env text DEFAULT NULL, product text DEFAULT NULL,
                                     options jsonb DEFAULT '{}')
RETURNS jsonb LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_run_response';

CREATE FUNCTION ductape.http(method text, url text, headers jsonb DEFAULT '{}',
                             body jsonb DEFAULT NULL, options jsonb DEFAULT '{}')
RETURNS jsonb LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_http';

-- One row per call made (run, run_response, http), written by a background
-- worker from a shared-memory buffer: the caller's transaction never writes
-- here, and a rolled-back caller still leaves its record.
CREATE TABLE ductape.calls (
    id          bigint PRIMARY KEY,
    at          timestamptz NOT NULL,
    app         text,
    action      text,
    env         text,
    product     text,
    method      text NOT NULL,
    url         text NOT NULL,
    status      integer,
    attempts    integer NOT NULL,
    duration_ms double precision NOT NULL,
    error       text,
    job_id      bigint,
    role        name
);
CREATE INDEX calls_at_idx ON ductape.calls (at);
CREATE INDEX calls_app_action_idx ON ductape.calls (app, action, at);

-- A role sees its own call records; administrators (who may read secrets)
-- see all.  The background worker that writes rows is a superuser.
ALTER TABLE ductape.calls ENABLE ROW LEVEL SECURITY;
CREATE POLICY calls_by_role ON ductape.calls FOR SELECT
    USING (role = current_user
           OR pg_catalog.has_function_privilege('ductape.secret_get(text)', 'EXECUTE'));

CREATE VIEW ductape.stats WITH (security_invoker = true) AS
SELECT app, action,
       count(*)                                                        AS calls,
       count(*) FILTER (WHERE error IS NOT NULL)                       AS errors,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms)::numeric, 3)  AS p50_ms,
       round(percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms)::numeric, 3) AS p95_ms,
       max(at)                                                         AS last_at
  FROM ductape.calls
 GROUP BY app, action;
