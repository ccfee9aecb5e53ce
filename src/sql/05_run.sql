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
--
-- Partitioned by day (UTC) on at: ductape.calls_YYYYMMDD holds
-- [YYYY-MM-DD 00:00 UTC, next day 00:00 UTC).  The database's worker, the
-- only writer, creates the partitions (today and the next days ahead, and
-- any day a late record needs) and drops those whose whole day is older
-- than ductape.call_retention (src/retention.c): expiring a day costs one
-- DROP TABLE, not a DELETE of its rows.  There is no default partition.
-- The partitions are members of the extension, hold no grants and have row
-- level security enabled with no policy: users read through this table
-- only, where calls_by_role applies.  The primary key has at because a
-- partitioned table's unique keys must hold the partition key; id alone is
-- unique anyway (a shared counter, src/calls.c).
CREATE TABLE ductape.calls (
    id          bigint NOT NULL,
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
    role        name,
    PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
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

-- Today's partition and the next three days' (UTC) come with the install,
-- the worker makes the later ones: a restore (pg_restore granting on
-- ductape.calls) does not run into the worker making the first partition.
DO $$
DECLARE
    today date := (pg_catalog.now() AT TIME ZONE 'UTC')::date;
    part text;
BEGIN
    FOR k IN 0..3 LOOP
        part := 'calls_' OPERATOR(pg_catalog.||) pg_catalog.to_char(today OPERATOR(pg_catalog.+) k, 'YYYYMMDD');
        EXECUTE pg_catalog.format('CREATE TABLE ductape.%I PARTITION OF ductape.calls FOR VALUES FROM (%L) TO (%L)',
                                  part, pg_catalog.to_char(today OPERATOR(pg_catalog.+) k, 'YYYY-MM-DD') OPERATOR(pg_catalog.||) ' 00:00:00+00',
                                  pg_catalog.to_char(today OPERATOR(pg_catalog.+) k OPERATOR(pg_catalog.+) 1, 'YYYY-MM-DD') OPERATOR(pg_catalog.||) ' 00:00:00+00');
        EXECUTE pg_catalog.format('ALTER TABLE ductape.%I ENABLE ROW LEVEL SECURITY', part);
    END LOOP;
END
$$;

-- Counters of every request that makes a call record (run, run_response,
-- http, job attempts, OAuth2 token requests), kept in shared memory by
-- src/stats.c per (database, role, app, action, env), whatever
-- ductape.log_requests keeps: reading them scans no table.  The caller sees
-- its own role's counters; administrators (who may read secrets) see every
-- role's, summed.
CREATE FUNCTION ductape._stats(OUT app text, OUT action text, OUT env text,
                               OUT calls bigint, OUT errors bigint,
                               OUT errors_4xx bigint, OUT errors_5xx bigint,
                               OUT errors_network bigint, OUT errors_egress bigint,
                               OUT errors_other bigint,
                               OUT p50_ms double precision, OUT p95_ms double precision,
                               OUT p99_ms double precision, OUT mean_ms double precision,
                               OUT min_ms double precision, OUT max_ms double precision,
                               OUT last_at timestamptz, OUT since timestamptz)
RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_stats';
COMMENT ON FUNCTION ductape._stats() IS
    'The request counters of the current database, per app, action and env, summed over the roles the caller may see (its own; every role for an administrator). Backs the ductape.stats view.';

CREATE FUNCTION ductape.stats_reset() RETURNS void
LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_stats_reset';
COMMENT ON FUNCTION ductape.stats_reset() IS
    'Removes the request counters of the current database, every role''s (ductape.stats starts from zero). For administrators.';

CREATE FUNCTION ductape._stats_info(OUT entries integer, OUT max_entries integer,
                                    OUT overflow_entries integer, OUT overflowed_calls bigint,
                                    OUT lost_calls bigint, OUT call_records_dropped bigint)
RETURNS record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_stats_info';
COMMENT ON FUNCTION ductape._stats_info() IS
    'Cluster-wide figures since the server started: request-counter entries in use and their capacity, overflow entries, calls counted in an overflow entry or not at all, and call records dropped because the buffer was full or their database had no worker.';

-- Keeps the columns of 0.2.0 first, in their order and types.
CREATE VIEW ductape.stats WITH (security_invoker = true) AS
SELECT app, action, calls, errors,
       round(p50_ms::numeric, 3) AS p50_ms,
       round(p95_ms::numeric, 3) AS p95_ms,
       last_at, env, errors_4xx, errors_5xx, errors_network, errors_egress, errors_other,
       round(p99_ms::numeric, 3) AS p99_ms,
       round(mean_ms::numeric, 3) AS mean_ms,
       round(min_ms::numeric, 3) AS min_ms,
       round(max_ms::numeric, 3) AS max_ms,
       since
  FROM ductape._stats();
COMMENT ON VIEW ductape.stats IS
    'Requests made per app, action and env, from counters in shared memory: calls, errors by class, latency percentiles from a histogram. A role sees its own calls; administrators see every role''s. Survives a clean restart; ductape.stats_reset() clears it.';
COMMENT ON COLUMN ductape.stats.app IS 'The app called; NULL for ductape.http(); ''(other)'' for the calls of new keys once the counters were full.';
COMMENT ON COLUMN ductape.stats.action IS 'The action called; NULL for ductape.http(); ''oauth2-token'' for token requests.';
COMMENT ON COLUMN ductape.stats.calls IS 'Requests made (each with its retries counts once).';
COMMENT ON COLUMN ductape.stats.errors IS 'Requests that failed: the sum of the errors_* columns.';
COMMENT ON COLUMN ductape.stats.p50_ms IS 'Median duration in milliseconds, interpolated in the latency histogram (the error is less than the width of the bucket it falls in).';
COMMENT ON COLUMN ductape.stats.p95_ms IS '95th percentile of the duration in milliseconds, interpolated in the latency histogram.';
COMMENT ON COLUMN ductape.stats.last_at IS 'When the latest request started.';
COMMENT ON COLUMN ductape.stats.env IS 'The environment called; NULL for ductape.http().';
COMMENT ON COLUMN ductape.stats.errors_4xx IS 'Failed requests the API answered with a status from 400 to 499.';
COMMENT ON COLUMN ductape.stats.errors_5xx IS 'Failed requests the API answered with a status from 500 to 599.';
COMMENT ON COLUMN ductape.stats.errors_network IS 'Requests that got no answer: network failure or timeout (DT001).';
COMMENT ON COLUMN ductape.stats.errors_egress IS 'Requests refused by the egress policy (DT002).';
COMMENT ON COLUMN ductape.stats.errors_other IS 'Other failures: a status the action does not accept outside 400-599, a response over ductape.max_response_size, a cancelled statement.';
COMMENT ON COLUMN ductape.stats.p99_ms IS '99th percentile of the duration in milliseconds, interpolated in the latency histogram.';
COMMENT ON COLUMN ductape.stats.mean_ms IS 'Mean duration in milliseconds (exact).';
COMMENT ON COLUMN ductape.stats.min_ms IS 'Shortest duration in milliseconds (exact).';
COMMENT ON COLUMN ductape.stats.max_ms IS 'Longest duration in milliseconds (exact).';
COMMENT ON COLUMN ductape.stats.since IS 'When counting began: the start of the first request counted since the counters were created or reset.';

-- Flow control: the state of each limit (an app and env, or an outbound
-- endpoint), kept in shared memory by src/flow.c for the whole cluster.
-- Every app and env that made a request since the server started has a row
-- (a pause asked for by the API holds for apps without declared limits
-- too); endpoint rows are shown to administrators only.
CREATE FUNCTION ductape._limits(OUT app text, OUT env text, OUT endpoint_id bigint,
                                OUT rate double precision, OUT per interval, OUT burst integer,
                                OUT concurrency integer, OUT max_wait_ms integer,
                                OUT effective_rate double precision, OUT tokens double precision,
                                OUT in_flight integer, OUT waiting integer,
                                OUT paused_until timestamptz, OUT slowed_until timestamptz,
                                OUT granted bigint, OUT waited bigint, OUT rejected bigint,
                                OUT since timestamptz)
RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_limits';
COMMENT ON FUNCTION ductape._limits() IS
    'The flow-control state of the current database''s apps and envs (and, for administrators, endpoints), from shared memory. Backs the ductape.limits view.';

CREATE VIEW ductape.limits WITH (security_invoker = true) AS
SELECT * FROM ductape._limits();
COMMENT ON VIEW ductape.limits IS
    'Flow control per app and env (and per endpoint, for administrators): the declared limits, tokens left, requests in flight, callers waiting, a pause the API asked for, a rate slowed after 429s, and counts of requests granted, made to wait and refused (DT004). Shared by every session and worker of the cluster; starts empty after a restart.';
COMMENT ON COLUMN ductape.limits.app IS 'The app; NULL on an endpoint''s row.';
COMMENT ON COLUMN ductape.limits.env IS 'The app''s environment (its slug); NULL on an endpoint''s row.';
COMMENT ON COLUMN ductape.limits.endpoint_id IS 'The outbound endpoint (ductape.endpoints.id); NULL on an app''s row.';
COMMENT ON COLUMN ductape.limits.rate IS 'Declared requests per "per"; NULL: no rate limit.';
COMMENT ON COLUMN ductape.limits.per IS 'The period of the rate; NULL: no rate limit.';
COMMENT ON COLUMN ductape.limits.burst IS 'Requests that may start at once after a quiet period; NULL: no rate limit.';
COMMENT ON COLUMN ductape.limits.concurrency IS 'Declared requests in flight at most; NULL: no cap.';
COMMENT ON COLUMN ductape.limits.max_wait_ms IS 'How long a synchronous call waits before DT004; NULL on an endpoint''s row.';
COMMENT ON COLUMN ductape.limits.effective_rate IS 'Requests per second allowed now (the declared rate, halved for each recent 429 without Retry-After); NULL: no rate limit.';
COMMENT ON COLUMN ductape.limits.tokens IS 'Requests that may start now without waiting (the token bucket); NULL: no rate limit.';
COMMENT ON COLUMN ductape.limits.in_flight IS 'Requests under way now, from every session and worker.';
COMMENT ON COLUMN ductape.limits.waiting IS 'Synchronous calls waiting for a token or a slot now.';
COMMENT ON COLUMN ductape.limits.paused_until IS 'Until when every caller waits because the API answered 429 or 503 with Retry-After; NULL: not paused.';
COMMENT ON COLUMN ductape.limits.slowed_until IS 'Until when the rate stays lowered after a 429 without Retry-After; NULL: not slowed.';
COMMENT ON COLUMN ductape.limits.granted IS 'Requests let go since the row appeared.';
COMMENT ON COLUMN ductape.limits.waited IS 'Synchronous calls that had to wait, and queue items put back until their limit allowed them, since the row appeared.';
COMMENT ON COLUMN ductape.limits.rejected IS 'Synchronous calls refused with DT004 since the row appeared.';
COMMENT ON COLUMN ductape.limits.since IS 'When the row appeared (first request since the server started, or since it was last idle and reclaimed).';
