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

CREATE VIEW ductape.stats WITH (security_invoker = true) AS
SELECT app, action,
       count(*)                                                        AS calls,
       count(*) FILTER (WHERE error IS NOT NULL)                       AS errors,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms)::numeric, 3)  AS p50_ms,
       round(percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms)::numeric, 3) AS p95_ms,
       max(at)                                                         AS last_at
  FROM ductape.calls
 GROUP BY app, action;
