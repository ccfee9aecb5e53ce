-- ductape SQL source: synchronous calls and their records.
--
-- run, run_response and http send from the calling backend (src/run.c,
-- src/http.c).  Call records are written by the database's worker from a
-- shared-memory buffer (src/worker.c).

CREATE FUNCTION ductape.run(app text, action text, input jsonb DEFAULT '{}',
                            env text DEFAULT NULL, product text DEFAULT NULL,
                            options jsonb DEFAULT '{}')
RETURNS jsonb LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_run';
COMMENT ON FUNCTION ductape.run(text,text,jsonb,text,text,jsonb) IS
    'Calls an action and returns the response body: JSON as jsonb, other text as a JSON string, '
    'an empty body as null. Retries per the policy; raises DT000 for a non-success status, '
    'DT001 for a network failure or timeout. NULL env or product: ductape.env, ductape.product. '
    'Usage roles.';

CREATE FUNCTION ductape.run_response(app text, action text, input jsonb DEFAULT '{}',
                                     env text DEFAULT NULL, product text DEFAULT NULL,
                                     options jsonb DEFAULT '{}')
RETURNS jsonb LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_run_response';
COMMENT ON FUNCTION ductape.run_response(text,text,jsonb,text,text,jsonb) IS
    'Calls an action like run, but returns the envelope (status, headers, body, attempts, '
    'duration_ms, call_id, error) instead of raising for what the API or the network did. Usage '
    'roles.';

CREATE FUNCTION ductape.http(method text, url text, headers jsonb DEFAULT '{}',
                             body jsonb DEFAULT NULL, options jsonb DEFAULT '{}')
RETURNS jsonb LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_http';
COMMENT ON FUNCTION ductape.http(text,text,jsonb,jsonb,jsonb) IS
    'Sends one ad hoc HTTP request without an app, under the egress policy with the default '
    'retry policy, and returns the envelope (status, headers, body, attempts, duration_ms, '
    'call_id, error). Usage roles.';

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
COMMENT ON TABLE ductape.calls IS
    'One row per HTTP request made: each run, run_response and http call, each job attempt, '
    'each OAuth2 token request. Written by the worker within about a second, whatever the '
    'caller''s transaction does. Usage roles see their own rows, admins all.';
COMMENT ON COLUMN ductape.calls.id IS 'Unique, increasing (not dense) id; the envelope''s call_id.';
COMMENT ON COLUMN ductape.calls.at IS 'When the call started.';
COMMENT ON COLUMN ductape.calls.app IS 'The app; NULL for http.';
COMMENT ON COLUMN ductape.calls.action IS
    'The action (oauth2-token for a token request); NULL for http.';
COMMENT ON COLUMN ductape.calls.env IS 'The app env; NULL for http.';
COMMENT ON COLUMN ductape.calls.product IS 'The product; NULL for http.';
COMMENT ON COLUMN ductape.calls.method IS 'The HTTP method.';
COMMENT ON COLUMN ductape.calls.url IS 'The request URL, secrets redacted (at most 1,023 bytes).';
COMMENT ON COLUMN ductape.calls.status IS
    'The HTTP status of the last response; NULL when no response arrived.';
COMMENT ON COLUMN ductape.calls.attempts IS 'Attempts made, the first included.';
COMMENT ON COLUMN ductape.calls.duration_ms IS
    'Milliseconds from the start to the end of the call, retries and the waits between them '
    'included.';
COMMENT ON COLUMN ductape.calls.error IS
    'Why the call failed, secrets redacted (at most 511 bytes); NULL: it succeeded.';
COMMENT ON COLUMN ductape.calls.job_id IS
    'The job this attempt belongs to; NULL for a synchronous call.';
COMMENT ON COLUMN ductape.calls.role IS
    'The role that made the call (current_user); usage roles see the rows of their own role.';
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
COMMENT ON VIEW ductape.stats IS
    'Per (app, action): how many calls, how many failed, latency percentiles and the latest '
    'call, over the rows of ductape.calls the reader can see. Usage roles.';
COMMENT ON COLUMN ductape.stats.app IS 'The app; NULL for http.';
COMMENT ON COLUMN ductape.stats.action IS 'The action; NULL for http.';
COMMENT ON COLUMN ductape.stats.calls IS 'Calls recorded.';
COMMENT ON COLUMN ductape.stats.errors IS 'Calls recorded with an error.';
COMMENT ON COLUMN ductape.stats.p50_ms IS 'Median duration_ms, in milliseconds.';
COMMENT ON COLUMN ductape.stats.p95_ms IS '95th percentile of duration_ms, in milliseconds.';
COMMENT ON COLUMN ductape.stats.last_at IS 'When the latest call started.';
