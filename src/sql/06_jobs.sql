-- ductape SQL source: background jobs.
--
-- The queue the database's worker drains (src/jobs.c): dispatch, on_row
-- triggers, job, wait, cancel and retry, all in C.

-- A LOGGED queue, so a crash loses nothing.
-- (The state is an enum rather than a CHECK constraint: each dispatch is its
-- own executor run, and a CHECK expression is rebuilt on every one.)
CREATE TYPE ductape.job_state AS ENUM ('scheduled', 'queued', 'running', 'succeeded', 'failed', 'cancelled');
COMMENT ON TYPE ductape.job_state IS
    'State of a background job: scheduled (run_at in the future), queued (due, or waiting for '
    'its next retry), running, succeeded, failed (retries exhausted), cancelled.';
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
COMMENT ON TABLE ductape.jobs IS
    'One row per background job (an action call dispatched to the worker), kept for '
    'ductape.job_retention once finished. Written by dispatch, on_row and the worker. Usage '
    'roles see their own rows, admins all.';
COMMENT ON COLUMN ductape.jobs.id IS 'The job id dispatch returns.';
COMMENT ON COLUMN ductape.jobs.app IS 'The app to call.';
COMMENT ON COLUMN ductape.jobs.action IS 'The action to call.';
COMMENT ON COLUMN ductape.jobs.input IS 'The action input (a flat object).';
COMMENT ON COLUMN ductape.jobs.env IS 'The product env, fixed at dispatch.';
COMMENT ON COLUMN ductape.jobs.product IS 'The product, fixed at dispatch.';
COMMENT ON COLUMN ductape.jobs.options IS
    'The call options (timeout_ms, retries, idempotency_key).';
COMMENT ON COLUMN ductape.jobs.state IS
    'Where the job is: scheduled, queued, running, succeeded, failed or cancelled.';
COMMENT ON COLUMN ductape.jobs.attempts IS 'Attempts made so far.';
COMMENT ON COLUMN ductape.jobs.next_attempt_at IS
    'When the job is due: its run_at, or its next retry.';
COMMENT ON COLUMN ductape.jobs.idempotency_key IS
    'The dispatching role''s key for this job (unique per role); NULL: none given.';
COMMENT ON COLUMN ductape.jobs.on_success IS
    'Function of one jsonb (the job) run as role after the job succeeds; NULL: none.';
COMMENT ON COLUMN ductape.jobs.on_failure IS
    'Function of one jsonb (the job) run as role after the job fails for good; NULL: none.';
COMMENT ON COLUMN ductape.jobs.response IS 'The envelope of the last attempt; NULL before any.';
COMMENT ON COLUMN ductape.jobs.error IS 'Why the last attempt failed; NULL: it did not fail.';
COMMENT ON COLUMN ductape.jobs.role IS
    'The role that dispatched (current_user); callbacks run as it, and usage roles see the rows '
    'of their own role.';
COMMENT ON COLUMN ductape.jobs.created_at IS 'When the job was dispatched.';
COMMENT ON COLUMN ductape.jobs.finished_at IS
    'When it succeeded, failed for good or was cancelled; NULL while not finished.';
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
COMMENT ON VIEW ductape.queue IS
    'Per job state: how many jobs the reader can see, and the oldest; what a dashboard polls. '
    'Usage roles.';
COMMENT ON COLUMN ductape.queue.state IS 'The job state.';
COMMENT ON COLUMN ductape.queue.jobs IS 'Jobs in that state.';
COMMENT ON COLUMN ductape.queue.oldest_created_at IS 'When the oldest of them was dispatched.';
COMMENT ON COLUMN ductape.queue.oldest_age IS
    'How long the oldest has waited: for queued and scheduled jobs since it became due '
    '(negative while in the future), for the others since it was dispatched.';

CREATE FUNCTION ductape.dispatch(app text, action text, input jsonb DEFAULT '{}', env text DEFAULT NULL,
                                 product text DEFAULT NULL, run_at timestamptz DEFAULT NULL,
                                 idempotency_key text DEFAULT NULL, on_success regprocedure DEFAULT NULL,
                                 on_failure regprocedure DEFAULT NULL, options jsonb DEFAULT '{}')
RETURNS bigint LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_dispatch';
COMMENT ON FUNCTION ductape.dispatch(text,text,jsonb,text,text,timestamptz,text,regprocedure,regprocedure,jsonb) IS
    'Queues an action call as a background job and returns its id; the worker sends it after '
    'the transaction commits (at run_at if given). A key the role used before returns that job. '
    'on_success and on_failure name functions of one jsonb run as the caller when the job ends. '
    'Usage roles.';

-- Trigger: EXECUTE FUNCTION ductape.on_row('app', 'action' [, input_template [, env [, product]]])
CREATE FUNCTION ductape.on_row() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'dt_on_row';
COMMENT ON FUNCTION ductape.on_row() IS
    'Trigger function: FOR EACH ROW EXECUTE FUNCTION ductape.on_row(app, action [, '
    'input_template [, env [, product]]]) dispatches one job per row written, with the row (or '
    'the template filled with $Row{col} and $Old{col}) as input. Usage roles.';

CREATE FUNCTION ductape.job(id bigint) RETURNS jsonb
LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'dt_job';
COMMENT ON FUNCTION ductape.job(bigint) IS
    'Returns a job as jsonb (id, app, action, env, product, state, attempts, next_attempt_at, '
    'response, error, created_at, finished_at); 42704 for a job the caller cannot see. Usage '
    'roles.';

CREATE FUNCTION ductape.wait(id bigint, timeout interval DEFAULT '30 seconds') RETURNS jsonb
LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'dt_wait';
COMMENT ON FUNCTION ductape.wait(bigint,interval) IS
    'Waits until a committed job finishes, or the timeout passes, and returns it as job() does. '
    'Usage roles.';

CREATE FUNCTION ductape.cancel(id bigint) RETURNS boolean
LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'dt_cancel';
COMMENT ON FUNCTION ductape.cancel(bigint) IS
    'Cancels a scheduled or queued job (a running one is not interrupted); returns whether it '
    'did. Usage roles, for their own jobs; admins, for any.';

CREATE FUNCTION ductape.retry(id bigint) RETURNS boolean
LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'dt_retry';
COMMENT ON FUNCTION ductape.retry(bigint) IS
    'Puts a failed or cancelled job back in the queue, due now, its attempts counted from 0 '
    'again; returns whether it did. Usage roles, for their own jobs; admins, for any.';
