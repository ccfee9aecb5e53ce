-- ductape SQL source: background jobs.
--
-- The queue the database's worker drains (src/jobs.c): dispatch, on_row
-- triggers, job, wait, cancel and retry, all in C.

-- A LOGGED queue, so a crash loses nothing.
-- (The state is an enum rather than a CHECK constraint: each dispatch is its
-- own executor run, and a CHECK expression is rebuilt on every one.)
CREATE TYPE ductape.job_state AS ENUM ('scheduled', 'queued', 'running', 'succeeded', 'failed', 'cancelled');
CREATE TABLE ductape.jobs (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app             text NOT NULL,
    action          text NOT NULL,
    input           jsonb NOT NULL,
    env             text NOT NULL,
    product         text NOT NULL,
    options         jsonb NOT NULL DEFAULT '{}',
    state           ductape.job_state NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    idempotency_key text,
    on_success      regprocedure,
    on_failure      regprocedure,
    response        jsonb,
    error           text,
    role            name NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
-- Idempotency keys are per role: another role's key never matches, never
-- reveals, never blocks.
CREATE UNIQUE INDEX jobs_idempotency_key_idx ON ductape.jobs (role, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_due_idx ON ductape.jobs (next_attempt_at, id) WHERE state IN ('queued', 'scheduled');
CREATE INDEX jobs_finished_idx ON ductape.jobs (finished_at) WHERE finished_at IS NOT NULL;
-- The jobs in flight, for the gauges the worker publishes (/metrics) and
-- health(), and for putting back what a dead worker left running: neither
-- reads a finished row.
CREATE INDEX jobs_running_idx ON ductape.jobs (id) WHERE state = 'running';
ALTER TABLE ductape.jobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY jobs_by_role ON ductape.jobs FOR SELECT
    USING (role = current_user
           OR pg_catalog.has_function_privilege('ductape.secret_get(text)', 'EXECUTE'));

-- What a dashboard polls: per state, how many and the oldest.
CREATE VIEW ductape.queue WITH (security_invoker = true) AS
SELECT state, count(*) AS jobs, min(created_at) AS oldest_created_at,
       now() - min(CASE WHEN state IN ('queued', 'scheduled') THEN next_attempt_at
                        ELSE created_at END) AS oldest_age
  FROM ductape.jobs GROUP BY state;

CREATE FUNCTION ductape.dispatch(app text, action text, input jsonb DEFAULT '{}', env text DEFAULT NULL,
                                 product text DEFAULT NULL, run_at timestamptz DEFAULT NULL,
                                 idempotency_key text DEFAULT NULL, on_success regprocedure DEFAULT NULL,
                                 on_failure regprocedure DEFAULT NULL, options jsonb DEFAULT '{}')
RETURNS bigint LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_dispatch';

-- Trigger: EXECUTE FUNCTION ductape.on_row('app', 'action' [, input_template [, env [, product]]])
CREATE FUNCTION ductape.on_row() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'dt_on_row';

CREATE FUNCTION ductape.job(id bigint) RETURNS jsonb
LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'dt_job';

CREATE FUNCTION ductape.wait(id bigint, timeout interval DEFAULT '30 seconds') RETURNS jsonb
LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'dt_wait';

CREATE FUNCTION ductape.cancel(id bigint) RETURNS boolean
LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'dt_cancel';

CREATE FUNCTION ductape.retry(id bigint) RETURNS boolean
LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'dt_retry';
