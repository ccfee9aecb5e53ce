-- ductape SQL source: workflows.
--
-- Definitions and their checks, runs and their steps, and the engine that
-- advances runs (plpgsql, called by the database's worker: _workflow_tick,
-- _workflow_advance, _workflow_dispatch, _workflow_context).  Conditions,
-- step templates and the engine's role-switching helpers are in C
-- (src/workflow.c).

---------------------------------------------------------------------------
-- Definitions
---------------------------------------------------------------------------

-- A workflow's sql steps run as the role that defined it (the code is
-- theirs), never as whoever starts a run: otherwise whoever may define a
-- workflow could run SQL with the rights of every role that starts it.
-- Action steps are dispatched as the starter (the jobs are theirs).
CREATE TABLE ductape.workflows (
    tag         text PRIMARY KEY CHECK (tag ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    spec        jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    role        name                     -- who defined it; NULL: defined before 0.3.0
);
COMMENT ON TABLE ductape.workflows IS
    'One row per workflow definition; written by workflow_define and workflow_drop only. Admins '
    'read it.';
COMMENT ON COLUMN ductape.workflows.tag IS 'The workflow''s name, as workflow_start takes it.';
COMMENT ON COLUMN ductape.workflows.spec IS
    'The definition: input schema, steps (action, sql or sleep, with dependencies, conditions, '
    'retries, compensations) and output.';
COMMENT ON COLUMN ductape.workflows.created_at IS 'When it was first defined.';
COMMENT ON COLUMN ductape.workflows.updated_at IS 'When it was last defined.';
COMMENT ON COLUMN ductape.workflows.role IS
    'The definer: the role whose rights its sql steps run with; NULL: defined before 0.3.0 (its '
    'sql steps fail until it is defined again).';
-- Only ductape's functions (the owner) write it, whatever was granted
-- (see webhook_subscriptions in 07_webhooks.sql).
ALTER TABLE ductape.workflows ENABLE ROW LEVEL SECURITY;
CREATE POLICY workflows_read ON ductape.workflows FOR SELECT USING (true);

-- Conditions and step templates (src/workflow.c).
CREATE FUNCTION ductape._condition_check(cond text, path text, OUT problems text[], OUT steps text[])
LANGUAGE c IMMUTABLE STRICT AS 'MODULE_PATHNAME', 'dt_condition_check';
CREATE FUNCTION ductape._condition_eval(cond text, context jsonb) RETURNS boolean
LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'dt_condition_eval';
CREATE FUNCTION ductape._workflow_template_errors(tpl jsonb, path text) RETURNS text[]
LANGUAGE c IMMUTABLE STRICT AS 'MODULE_PATHNAME', 'dt_workflow_template_errors';
CREATE FUNCTION ductape._template_steps(tpl jsonb) RETURNS text[]
LANGUAGE c IMMUTABLE STRICT AS 'MODULE_PATHNAME', 'dt_template_steps';
CREATE FUNCTION ductape._workflow_apply(tpl jsonb, context jsonb) RETURNS jsonb
LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'dt_workflow_apply';

-- An action a step or a compensation calls: app and action must exist.
CREATE FUNCTION ductape._check_step_call(s jsonb, path text) RETURNS text[]
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    errs text[] := '{}';
BEGIN
    errs := errs || ductape._check_tag(s->'app', path || '/app');
    errs := errs || ductape._check_tag(s->'action', path || '/action');
    IF cardinality(errs) = 0 AND NOT EXISTS (SELECT 1 FROM ductape.actions a
                                              WHERE a.app = s->>'app' AND a.tag = s->>'action') THEN
        errs := errs || format('%s/action: app "%s" has no action "%s"', path, s->>'app', s->>'action');
    END IF;
    IF s ? 'input' THEN
        IF jsonb_typeof(s->'input') <> 'object' THEN
            errs := errs || (path || '/input: must be an object (a flat input template)');
        ELSE
            errs := errs || ductape._workflow_template_errors(s->'input', path || '/input');
        END IF;
    END IF;
    RETURN errs;
END
$$;

-- A whole workflow spec: every problem as "/json/pointer: reason".
CREATE FUNCTION ductape._check_workflow(spec jsonb) RETURNS text[]
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    errs text[] := '{}';
    s jsonb;
    i integer;
    p text;
    d text;
    tags text[];
    deps jsonb := '{}';         -- step tag -> its depends_on
    ancestors jsonb;            -- step tag -> every step it (transitively) waits for
    cond record;
    refs_at text[];
BEGIN
    IF jsonb_typeof(spec) IS DISTINCT FROM 'object' THEN
        RETURN ARRAY['/: a workflow spec must be a JSON object'];
    END IF;
    errs := errs || ductape._check_keys(spec, '', '{tag,name,description,input,steps,output}');
    errs := errs || ductape._check_tag(spec->'tag', '/tag');
    errs := errs || ductape._check_type(spec->'name', '/name', '{string}');
    errs := errs || ductape._check_type(spec->'description', '/description', '{string}');
    IF spec ? 'input' THEN
        IF jsonb_typeof(spec->'input') <> 'object' THEN
            errs := errs || '/input: must be a JSON Schema object'::text;
        ELSE
            errs := errs || ductape._schema_check(spec->'input', '/input');
        END IF;
    END IF;
    IF jsonb_typeof(spec->'steps') IS DISTINCT FROM 'array' OR jsonb_array_length(spec->'steps') = 0 THEN
        RETURN errs || '/steps: is required: a non-empty array of steps'::text;
    END IF;
    SELECT array_agg(x->>'tag' ORDER BY n) INTO tags
      FROM jsonb_array_elements(spec->'steps') WITH ORDINALITY y(x, n);

    FOR i IN 0 .. jsonb_array_length(spec->'steps') - 1 LOOP
        s := spec->'steps'->i;
        p := '/steps/' || i;
        IF jsonb_typeof(s) IS DISTINCT FROM 'object' THEN
            errs := errs || (p || ': a step must be an object');
            CONTINUE;
        END IF;
        errs := errs || ductape._check_keys(s, p, '{tag,type,description,app,action,input,sql,seconds,condition,depends_on,retries,allow_fail,compensate}');
        errs := errs || ductape._check_tag(s->'tag', p || '/tag');
        IF array_position(tags, s->>'tag') < i + 1 THEN
            errs := errs || format('%s/tag: "%s" appears twice', p, s->>'tag');
        END IF;
        CASE s->>'type'
        WHEN 'action' THEN
            errs := errs || ductape._check_step_call(s, p);
        WHEN 'sql' THEN
            IF jsonb_typeof(s->'sql') IS DISTINCT FROM 'string' OR btrim(s->>'sql') = '' THEN
                errs := errs || (p || '/sql: is required for a sql step: the statement to run');
            END IF;
        WHEN 'sleep' THEN
            IF jsonb_typeof(s->'seconds') IS DISTINCT FROM 'number' OR (s->>'seconds')::numeric NOT BETWEEN 0 AND 31536000 THEN
                errs := errs || (p || '/seconds: is required for a sleep step: a number of seconds from 0 to 31536000');
            END IF;
        ELSE
            errs := errs || format('%s/type: must be action, sql or sleep, not %s', p, coalesce((s->'type')::text, 'missing'));
        END CASE;
        IF s ? 'depends_on' THEN
            IF jsonb_typeof(s->'depends_on') <> 'array' THEN
                errs := errs || (p || '/depends_on: must be an array of step tags');
            ELSE
                FOR d IN SELECT x #>> '{}' FROM jsonb_array_elements(s->'depends_on') x LOOP
                    IF d IS NULL OR d <> ALL (tags) THEN
                        errs := errs || format('%s/depends_on: "%s" names no step of this workflow', p, d);
                    ELSIF d = s->>'tag' THEN
                        errs := errs || format('%s/depends_on: a step cannot depend on itself', p);
                    END IF;
                END LOOP;
            END IF;
        END IF;
        IF s ? 'condition' THEN
            IF jsonb_typeof(s->'condition') <> 'string' THEN
                errs := errs || (p || '/condition: must be a string such as "$Step{check}{ok} == true"');
            ELSE
                errs := errs || (ductape._condition_check(s->>'condition', p || '/condition')).problems;
            END IF;
        END IF;
        errs := errs || ductape._check_retries(s->'retries', p || '/retries');
        errs := errs || ductape._check_type(s->'allow_fail', p || '/allow_fail', '{boolean}');
        IF s ? 'compensate' THEN
            IF jsonb_typeof(s->'compensate') <> 'object' THEN
                errs := errs || (p || '/compensate: must be an object {"app", "action", "input"}');
            ELSE
                errs := errs || ductape._check_keys(s->'compensate', p || '/compensate', '{app,action,input}');
                errs := errs || ductape._check_step_call(s->'compensate', p || '/compensate');
            END IF;
        END IF;
        IF s->>'tag' IS NOT NULL AND jsonb_typeof(s->'depends_on') = 'array' THEN
            deps := deps || jsonb_build_object(s->>'tag', s->'depends_on');
        END IF;
    END LOOP;
    IF spec ? 'output' THEN
        errs := errs || ductape._workflow_template_errors(spec->'output', '/output');
    END IF;

    -- depends_on must form a DAG: what each step waits for, transitively
    WITH RECURSIVE edge(step, dep) AS (
        SELECT e.k, x.dep #>> '{}' FROM jsonb_each(deps) e(k, v), jsonb_array_elements(e.v) x(dep)
    ), up(step, dep, trail) AS (
        SELECT step, dep, ARRAY[step, dep] FROM edge
        UNION
        SELECT u.step, e.dep, u.trail || e.dep FROM up u JOIN edge e ON e.step = u.dep
         WHERE NOT e.dep = ANY (u.trail[2:])
    )
    SELECT coalesce(jsonb_object_agg(step, deps_of), '{}') INTO ancestors
      FROM (SELECT step, jsonb_agg(DISTINCT dep) AS deps_of FROM up GROUP BY step) x;
    FOR i IN 0 .. jsonb_array_length(spec->'steps') - 1 LOOP
        s := spec->'steps'->i;
        CONTINUE WHEN jsonb_typeof(s) IS DISTINCT FROM 'object' OR s->>'tag' IS NULL;
        p := '/steps/' || i;
        IF coalesce(ancestors->(s->>'tag'), '[]') ? (s->>'tag') THEN
            errs := errs || format('%s/depends_on: "%s" depends on itself through a cycle', p, s->>'tag');
        END IF;
        -- $Step{x} in a step may only name a step that finishes before it
        FOR d, refs_at IN
            SELECT x.at, x.refs FROM (VALUES
                ('/condition', CASE WHEN jsonb_typeof(s->'condition') = 'string'
                                    THEN (ductape._condition_check(s->>'condition', '')).steps END),
                ('/input', CASE WHEN jsonb_typeof(s->'input') = 'object' THEN ductape._template_steps(s->'input') END),
                ('/compensate/input', CASE WHEN jsonb_typeof(s #> '{compensate,input}') = 'object'
                                           THEN ductape._template_steps(s #> '{compensate,input}') END)) x(at, refs)
             WHERE x.refs IS NOT NULL LOOP
            FOR cond IN SELECT DISTINCT r FROM unnest(refs_at) r LOOP
                IF cond.r <> ALL (tags) THEN
                    errs := errs || format('%s%s: $Step{%s} names no step of this workflow', p, d, cond.r);
                ELSIF NOT coalesce(ancestors->(s->>'tag'), '[]') ? cond.r
                      -- a compensation runs after its own step: it may use that step's output
                      AND NOT (d = '/compensate/input' AND cond.r = s->>'tag') THEN
                    errs := errs || format('%s%s: $Step{%s} does not finish before this step (add "%s" to depends_on)',
                                           p, d, cond.r, cond.r);
                END IF;
            END LOOP;
        END LOOP;
    END LOOP;
    IF jsonb_typeof(spec->'output') IS NOT NULL THEN
        FOR d IN SELECT DISTINCT r FROM unnest(ductape._template_steps(spec->'output')) r WHERE r <> ALL (tags) LOOP
            errs := errs || format('/output: $Step{%s} names no step of this workflow', d);
        END LOOP;
    END IF;
    RETURN errs;
END
$$;

-- Definitions are written only by workflow_define, which records its
-- caller: a C proxy (src/gate.c) notes current_user and calls the SECURITY
-- DEFINER implementation, which reads it with ductape._caller().
CREATE FUNCTION ductape._workflow_define(spec jsonb) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off AS $$
#variable_conflict use_variable
BEGIN
    PERFORM ductape._raise_invalid(format('workflow definition%s', coalesce(' "' || (spec->>'tag') || '"', '')),
                                   ductape._check_workflow(spec));
    INSERT INTO ductape.workflows AS w (tag, spec, role) VALUES (spec->>'tag', spec, ductape._caller())
    ON CONFLICT (tag) DO UPDATE SET spec = EXCLUDED.spec, role = EXCLUDED.role, updated_at = now();
    RETURN spec->>'tag';
END
$$;
CREATE FUNCTION ductape.workflow_define(spec jsonb) RETURNS text
LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_as_caller';
COMMENT ON FUNCTION ductape.workflow_define(jsonb) IS
    'Creates or replaces a workflow definition and records the caller as its definer, whose '
    'rights its sql steps run with. Every problem is listed at once (22023). Returns the tag. '
    'Admins.';

-- Remove a workflow; refused while runs of it are active.  (Nothing else
-- refers to a workflow; its finished runs keep their own copy of it.)
CREATE FUNCTION ductape.workflow_drop(workflow text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM ductape._tag_arg(workflow, 'workflow');
    PERFORM ductape._workflow_row(workflow);
    PERFORM FROM ductape.workflows w WHERE w.tag = workflow FOR UPDATE;
    SELECT count(*) INTO n FROM ductape.workflow_runs r WHERE r.tag = workflow AND r.state = 'running';
    IF n > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '55006',
            MESSAGE = format('workflow "%s" has active runs', workflow),
            DETAIL = CASE WHEN n = 1 THEN '1 run of it is running.'
                          ELSE format('%s runs of it are running.', n) END,
            HINT = 'Cancel them with ductape.workflow_cancel, or wait until they end.';
    END IF;
    DELETE FROM ductape.workflows w WHERE w.tag = workflow;
END
$$;
COMMENT ON FUNCTION ductape.workflow_drop(text) IS
    'Removes a workflow definition; refused (55006) while runs of it are running. Admins.';

---------------------------------------------------------------------------
-- Runs
---------------------------------------------------------------------------

-- A run's steps advance in the database worker (ductape._workflow_tick
-- after each batch of finished jobs and every second): action steps are
-- jobs dispatched as the role that started the run (each with the
-- idempotency key ductape-wf-<run>-<step>, so a step is dispatched once),
-- sql steps run in the tick as the role that defined the workflow, through
-- the user-code gate, sleep steps wake at wake_at.  Everything is in these
-- tables, so a crash loses nothing: the next tick reads where each run
-- stands from its steps and their jobs.
CREATE TYPE ductape.workflow_state AS ENUM ('running', 'completed', 'failed', 'rolled_back', 'cancelled');
COMMENT ON TYPE ductape.workflow_state IS
    'State of a workflow run: running, completed, failed, rolled_back (compensated after a '
    'failed step), cancelled.';
CREATE TYPE ductape.workflow_step_state AS ENUM ('pending', 'running', 'completed', 'failed', 'skipped', 'rolled_back');
COMMENT ON TYPE ductape.workflow_step_state IS
    'State of a step of a workflow run: pending, running, completed, failed, skipped, '
    'rolled_back (its compensation ran).';
CREATE TABLE ductape.workflow_runs (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tag             text NOT NULL,
    spec            jsonb NOT NULL,         -- the definition when the run started
    input           jsonb NOT NULL,
    env             text NOT NULL,
    product         text NOT NULL,
    state           ductape.workflow_state NOT NULL DEFAULT 'running',
    compensating    boolean NOT NULL DEFAULT false,
    advance         boolean NOT NULL DEFAULT true,  -- the worker should look at it
    output          jsonb,
    error           text,
    idempotency_key text,
    role            name NOT NULL,          -- who started it
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    definer         name,                   -- who defined the workflow (its sql steps run as them)
    -- idempotency keys are per role
    CONSTRAINT workflow_runs_idempotency_key UNIQUE (role, idempotency_key)
);
COMMENT ON TABLE ductape.workflow_runs IS
    'One row per workflow run, advanced by the worker. Usage roles see their own rows, admins '
    'all.';
COMMENT ON COLUMN ductape.workflow_runs.id IS 'The run id workflow_start returns.';
COMMENT ON COLUMN ductape.workflow_runs.tag IS 'The workflow (ductape.workflows.tag).';
COMMENT ON COLUMN ductape.workflow_runs.spec IS 'The definition as it was when the run started.';
COMMENT ON COLUMN ductape.workflow_runs.input IS 'The run''s input object.';
COMMENT ON COLUMN ductape.workflow_runs.env IS 'The product env, fixed at the start.';
COMMENT ON COLUMN ductape.workflow_runs.product IS 'The product, fixed at the start.';
COMMENT ON COLUMN ductape.workflow_runs.state IS
    'running, completed, failed, rolled_back or cancelled.';
COMMENT ON COLUMN ductape.workflow_runs.compensating IS
    'Whether a step failed and the run is undoing completed steps.';
COMMENT ON COLUMN ductape.workflow_runs.advance IS
    'Whether the worker has something to do for the run (internal).';
COMMENT ON COLUMN ductape.workflow_runs.output IS
    'The output, filled from the spec''s output template when the run completes; NULL until '
    'then.';
COMMENT ON COLUMN ductape.workflow_runs.error IS 'Why the run failed; NULL: it did not.';
COMMENT ON COLUMN ductape.workflow_runs.idempotency_key IS
    'The starting role''s key for it (unique per role); NULL: none given.';
COMMENT ON COLUMN ductape.workflow_runs.role IS
    'The role that started it; its action steps run as it, and usage roles see the rows of '
    'their own role.';
COMMENT ON COLUMN ductape.workflow_runs.created_at IS 'When it started.';
COMMENT ON COLUMN ductape.workflow_runs.finished_at IS 'When it ended; NULL while running.';
COMMENT ON COLUMN ductape.workflow_runs.definer IS
    'The role that defined the workflow; its sql steps run as it.';
CREATE INDEX workflow_runs_advance_idx ON ductape.workflow_runs (id) WHERE advance;
-- finished runs are deleted after ductape.job_retention (src/retention.c)
CREATE INDEX workflow_runs_finished_idx ON ductape.workflow_runs (finished_at) WHERE finished_at IS NOT NULL;
CREATE TABLE ductape.workflow_steps (
    run_id      bigint NOT NULL REFERENCES ductape.workflow_runs (id) ON DELETE CASCADE,
    tag         text NOT NULL,
    position    integer NOT NULL,
    state       ductape.workflow_step_state NOT NULL DEFAULT 'pending',
    output      jsonb,
    attempts    integer NOT NULL DEFAULT 0,
    job_id      bigint,                 -- the step's job, then its compensation's
    wake_at     timestamptz,            -- a sleeping step's end
    error       text,
    finished_at timestamptz,
    PRIMARY KEY (run_id, tag)
);
COMMENT ON TABLE ductape.workflow_steps IS
    'One row per step of a workflow run. Readers see the steps of the runs they see.';
COMMENT ON COLUMN ductape.workflow_steps.run_id IS
    'The run the step belongs to (ductape.workflow_runs.id).';
COMMENT ON COLUMN ductape.workflow_steps.tag IS 'The step, as the spec names it.';
COMMENT ON COLUMN ductape.workflow_steps.position IS 'Order of the step in the spec.';
COMMENT ON COLUMN ductape.workflow_steps.state IS
    'pending, running, completed, failed, skipped or rolled_back.';
COMMENT ON COLUMN ductape.workflow_steps.output IS
    'The step''s result: an action''s response body, a sql step''s row; NULL: none yet.';
COMMENT ON COLUMN ductape.workflow_steps.attempts IS 'Attempts the step''s job made.';
COMMENT ON COLUMN ductape.workflow_steps.job_id IS
    'The job of a running action step, then of its compensation; NULL: none.';
COMMENT ON COLUMN ductape.workflow_steps.wake_at IS 'When a sleep step ends; NULL for other steps.';
COMMENT ON COLUMN ductape.workflow_steps.error IS 'Why the step failed; NULL: it did not.';
COMMENT ON COLUMN ductape.workflow_steps.finished_at IS 'When the step ended; NULL until then.';
CREATE INDEX workflow_steps_running_idx ON ductape.workflow_steps (job_id) WHERE state = 'running' OR job_id IS NOT NULL AND state = 'completed';
CREATE INDEX workflow_steps_wake_idx ON ductape.workflow_steps (wake_at) WHERE state = 'running' AND wake_at IS NOT NULL;
ALTER TABLE ductape.workflow_runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY workflow_runs_by_role ON ductape.workflow_runs FOR SELECT
    USING (role = current_user
           OR pg_catalog.has_function_privilege('ductape.secret_get(text)', 'EXECUTE'));
ALTER TABLE ductape.workflow_steps ENABLE ROW LEVEL SECURITY;
CREATE POLICY workflow_steps_by_run ON ductape.workflow_steps FOR SELECT
    USING (EXISTS (SELECT 1 FROM ductape.workflow_runs r WHERE r.id = run_id));

CREATE FUNCTION ductape._workflow_row(tag text) RETURNS ductape.workflows
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    w ductape.workflows;
BEGIN
    SELECT * INTO w FROM ductape.workflows x WHERE x.tag = _workflow_row.tag;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '42704',
            MESSAGE = format('workflow "%s" does not exist', _workflow_row.tag),
            HINT = 'Define it with ductape.workflow_define.';
    END IF;
    RETURN w;
END
$$;

-- workflow_start and workflow_cancel record their caller through the C
-- proxy, like workflow_define.
CREATE FUNCTION ductape._workflow_start(tag text, input jsonb DEFAULT '{}', idempotency_key text DEFAULT NULL,
                                       env text DEFAULT NULL, product text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    w ductape.workflows := ductape._workflow_row(tag);
    errs text[];
    run_id bigint;
    caller name := ductape._caller();
BEGIN
    IF jsonb_typeof(input) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('input of workflow %s must be a JSON object', tag);
    END IF;
    IF w.spec ? 'input' THEN
        errs := ductape._schema_validate(w.spec->'input', input);
        IF cardinality(errs) > 0 THEN
            RAISE EXCEPTION USING ERRCODE = '22023',
                MESSAGE = format('input of workflow %s does not match its input schema', tag),
                DETAIL = array_to_string(errs, E'\n');
        END IF;
    END IF;
    IF idempotency_key IS NOT NULL THEN
        SELECT r.id INTO run_id FROM ductape.workflow_runs r
         WHERE r.role = caller AND r.idempotency_key = idempotency_key;
        IF FOUND THEN RETURN run_id; END IF;
    END IF;
    -- the run records its caller: current_user where workflow_start was
    -- called (inside a job callback, the callback's role)
    INSERT INTO ductape.workflow_runs (tag, spec, input, env, product, idempotency_key, role, definer)
    VALUES (tag, w.spec, input, coalesce(env, current_setting('ductape.env')),
            coalesce(product, current_setting('ductape.product')), idempotency_key,
            caller, w.role)
    ON CONFLICT ON CONSTRAINT workflow_runs_idempotency_key DO NOTHING
    RETURNING id INTO run_id;
    IF run_id IS NULL THEN
        SELECT r.id INTO run_id FROM ductape.workflow_runs r
         WHERE r.role = caller AND r.idempotency_key = idempotency_key;
        RETURN run_id;
    END IF;
    INSERT INTO ductape.workflow_steps (run_id, tag, position)
    SELECT run_id, s.value->>'tag', s.ordinality - 1
      FROM jsonb_array_elements(w.spec->'steps') WITH ORDINALITY s;
    PERFORM ductape._wake_worker();
    RETURN run_id;
END
$$;

CREATE FUNCTION ductape.workflow_start(tag text, input jsonb DEFAULT '{}', idempotency_key text DEFAULT NULL,
                                       env text DEFAULT NULL, product text DEFAULT NULL)
RETURNS bigint LANGUAGE c VOLATILE SECURITY INVOKER AS 'MODULE_PATHNAME', 'dt_as_caller';
COMMENT ON FUNCTION ductape.workflow_start(text,jsonb,text,text,text) IS
    'Starts a run of a workflow with an input object and returns its id; the worker begins once '
    'the transaction commits. The run belongs to the caller and keeps a copy of the definition; '
    'a key the role used before returns that run. Usage roles.';

CREATE FUNCTION ductape.workflow_status(id bigint) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT jsonb_build_object('id', r.id, 'tag', r.tag, 'state', r.state, 'output', r.output, 'error', r.error,
               'created_at', r.created_at, 'finished_at', r.finished_at,
               'steps', (SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                                 'tag', s.tag, 'state', s.state, 'output', s.output, 'attempts', s.attempts,
                                 'error', s.error)) ORDER BY s.position)
                           FROM ductape.workflow_steps s WHERE s.run_id = r.id))
      FROM ductape.workflow_runs r WHERE r.id = workflow_status.id
$$;
COMMENT ON FUNCTION ductape.workflow_status(bigint) IS
    'Returns a run as jsonb (state, output, error, times and its steps); NULL for a run that '
    'does not exist or that the caller cannot see. Usage roles.';

CREATE FUNCTION ductape._workflow_cancel(id bigint) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s record;
    caller name := ductape._caller();
BEGIN
    UPDATE ductape.workflow_runs r SET state = 'cancelled', finished_at = now(), advance = false
     WHERE r.id = _workflow_cancel.id AND r.state = 'running' AND r.role = caller;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    FOR s IN SELECT job_id FROM ductape.workflow_steps x WHERE x.run_id = _workflow_cancel.id AND x.state = 'running' AND x.job_id IS NOT NULL LOOP
        PERFORM ductape.cancel(s.job_id);
    END LOOP;
    UPDATE ductape.workflow_steps x
       SET state = CASE WHEN x.state = 'pending' THEN 'skipped' ELSE 'failed' END::ductape.workflow_step_state,
           error = CASE WHEN x.state = 'running' THEN 'the run was cancelled' END, finished_at = now()
     WHERE x.run_id = _workflow_cancel.id AND x.state IN ('pending', 'running');
    RETURN true;
END
$$;

CREATE FUNCTION ductape.workflow_cancel(id bigint) RETURNS boolean
LANGUAGE c VOLATILE SECURITY INVOKER AS 'MODULE_PATHNAME', 'dt_as_caller';
COMMENT ON FUNCTION ductape.workflow_cancel(bigint) IS
    'Stops a running run of the caller''s: queued step jobs are cancelled, pending steps '
    'skipped, and no compensation runs. Returns false if it was not running or not the '
    'caller''s. Usage roles.';

---------------------------------------------------------------------------
-- The engine
---------------------------------------------------------------------------

-- The run's context for templates and conditions.
CREATE FUNCTION ductape._workflow_context(r ductape.workflow_runs) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT jsonb_build_object('input', r.input,
               'steps', coalesce((SELECT jsonb_object_agg(s.tag, s.output) FROM ductape.workflow_steps s
                                   WHERE s.run_id = r.id AND s.state IN ('completed', 'rolled_back', 'failed')), '{}'))
$$;

-- The engine's helpers: a sql step, and a step's dispatch, each as the
-- run's role through the gate.  Refused outside the database worker.
CREATE FUNCTION ductape._workflow_sql(role name, sql text) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'dt_workflow_sql' LANGUAGE c VOLATILE;
CREATE FUNCTION ductape._workflow_dispatch_as(role name, app text, action text, input jsonb,
                                              env text, product text, key text, options jsonb)
RETURNS bigint AS 'MODULE_PATHNAME', 'dt_workflow_dispatch_as' LANGUAGE c VOLATILE;

-- Dispatch an action for a run, as the role that started it (the job
-- records that role; its privileges apply); returns the job id.
CREATE FUNCTION ductape._workflow_dispatch(r ductape.workflow_runs, call jsonb, context jsonb, key text, retries jsonb)
RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN ductape._workflow_dispatch_as(r.role, call->>'app', call->>'action',
               ductape._workflow_apply(coalesce(call->'input', '{}'), context), r.env, r.product, key,
               CASE WHEN retries IS NOT NULL THEN jsonb_build_object('retries', retries) ELSE '{}' END);
END
$$;

-- Move one run forward as far as it can go now.
CREATE FUNCTION ductape._workflow_advance(rid bigint) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r ductape.workflow_runs;
    s record;
    step jsonb;
    context jsonb;
    progress boolean := true;
    failed record;
    out jsonb;
BEGIN
    SELECT * INTO r FROM ductape.workflow_runs x WHERE x.id = rid FOR UPDATE;
    IF NOT FOUND OR r.state <> 'running' THEN
        RETURN;
    END IF;
    UPDATE ductape.workflow_runs x SET advance = false WHERE x.id = rid;

    -- what finished since last time: jobs (steps, or compensations) and sleeps
    FOR s IN SELECT x.tag, x.state, x.job_id, j.state AS job_state, j.response, j.error AS job_error, j.attempts
               FROM ductape.workflow_steps x JOIN ductape.jobs j ON j.id = x.job_id
              WHERE x.run_id = rid AND x.state IN ('running', 'completed')
                AND j.state IN ('succeeded', 'failed', 'cancelled') LOOP
        IF s.state = 'running' THEN
            UPDATE ductape.workflow_steps x
               SET state = CASE WHEN s.job_state = 'succeeded' THEN 'completed' ELSE 'failed' END::ductape.workflow_step_state,
                   output = s.response->'body', attempts = s.attempts, error = s.job_error,
                   job_id = NULL, finished_at = now()
             WHERE x.run_id = rid AND x.tag = s.tag;
        ELSIF r.compensating AND s.job_id IS NOT NULL THEN
            -- a compensation finished
            IF s.job_state = 'succeeded' THEN
                UPDATE ductape.workflow_steps x SET state = 'rolled_back', job_id = NULL
                 WHERE x.run_id = rid AND x.tag = s.tag;
            ELSE
                UPDATE ductape.workflow_runs x SET state = 'failed', finished_at = now(),
                       error = format('compensation of step %s failed: %s', s.tag, s.job_error)
                 WHERE x.id = rid;
                RETURN;
            END IF;
        END IF;
    END LOOP;
    UPDATE ductape.workflow_steps x SET state = 'completed', finished_at = now(), wake_at = NULL
     WHERE x.run_id = rid AND x.state = 'running' AND x.wake_at <= now();

    -- a failure that is not allowed turns the run around
    SELECT x.tag, x.error INTO failed FROM ductape.workflow_steps x
     WHERE x.run_id = rid AND x.state = 'failed'
       AND NOT coalesce((SELECT (e->>'allow_fail')::boolean FROM jsonb_array_elements(r.spec->'steps') e
                          WHERE e->>'tag' = x.tag), false)
     ORDER BY x.finished_at LIMIT 1;
    IF failed.tag IS NOT NULL AND NOT r.compensating THEN
        UPDATE ductape.workflow_runs x SET compensating = true, error = format('step %s failed: %s', failed.tag, failed.error)
         WHERE x.id = rid RETURNING * INTO r;
        UPDATE ductape.workflow_steps x SET state = 'skipped', finished_at = now()
         WHERE x.run_id = rid AND x.state = 'pending';
    END IF;

    IF r.compensating THEN
        -- wait for steps still in flight, then undo completed steps, last first, one at a time
        IF EXISTS (SELECT 1 FROM ductape.workflow_steps x WHERE x.run_id = rid
                      AND (x.state = 'running' OR (x.state = 'completed' AND x.job_id IS NOT NULL
                           AND EXISTS (SELECT 1 FROM ductape.jobs j WHERE j.id = x.job_id AND j.state IN ('queued', 'scheduled', 'running'))))) THEN
            RETURN;
        END IF;
        context := ductape._workflow_context(r);
        FOR s IN SELECT x.tag FROM ductape.workflow_steps x
                  WHERE x.run_id = rid AND x.state = 'completed'
                  ORDER BY x.finished_at DESC, x.position DESC LOOP
            step := (SELECT e FROM jsonb_array_elements(r.spec->'steps') e WHERE e->>'tag' = s.tag);
            IF step ? 'compensate' THEN
                UPDATE ductape.workflow_steps x
                   SET job_id = ductape._workflow_dispatch(r, step->'compensate', context,
                                                           format('ductape-wf-%s-%s-undo', rid, s.tag), NULL)
                 WHERE x.run_id = rid AND x.tag = s.tag;
                RETURN;         -- one compensation at a time
            END IF;
            UPDATE ductape.workflow_steps x SET state = 'rolled_back' WHERE x.run_id = rid AND x.tag = s.tag;
        END LOOP;
        UPDATE ductape.workflow_runs x SET state = 'rolled_back', finished_at = now() WHERE x.id = rid;
        RETURN;
    END IF;

    -- start every step whose dependencies are done, until nothing changes
    WHILE progress LOOP
        progress := false;
        context := ductape._workflow_context(r);
        FOR s IN SELECT x.tag FROM ductape.workflow_steps x
                  WHERE x.run_id = rid AND x.state = 'pending'
                  ORDER BY x.position LOOP
            step := (SELECT e FROM jsonb_array_elements(r.spec->'steps') e WHERE e->>'tag' = s.tag);
            CONTINUE WHEN EXISTS (
                SELECT 1 FROM jsonb_array_elements_text(coalesce(step->'depends_on', '[]')) d
                  JOIN ductape.workflow_steps x ON x.run_id = rid AND x.tag = d
                 WHERE x.state IN ('pending', 'running')
                    OR (x.state = 'failed' AND NOT coalesce((SELECT (e->>'allow_fail')::boolean
                                                               FROM jsonb_array_elements(r.spec->'steps') e
                                                              WHERE e->>'tag' = x.tag), false)));
            progress := true;
            IF step ? 'condition' AND NOT ductape._condition_eval(step->>'condition', context) THEN
                UPDATE ductape.workflow_steps x SET state = 'skipped', finished_at = now()
                 WHERE x.run_id = rid AND x.tag = s.tag;
                CONTINUE;
            END IF;
            BEGIN
                CASE step->>'type'
                WHEN 'action' THEN
                    UPDATE ductape.workflow_steps x
                       SET state = 'running',
                           job_id = ductape._workflow_dispatch(r, step, context, format('ductape-wf-%s-%s', rid, s.tag), step->'retries')
                     WHERE x.run_id = rid AND x.tag = s.tag;
                WHEN 'sql' THEN
                    -- one SELECT, as the role that defined the workflow, through
                    -- the user-code gate
                    IF r.definer IS NULL THEN
                        RAISE EXCEPTION USING ERRCODE = '55000',
                            MESSAGE = format('workflow "%s" was defined before ductape 0.3.0: define it again to run its sql steps', r.tag);
                    END IF;
                    out := ductape._workflow_sql(r.definer, step->>'sql');
                    UPDATE ductape.workflow_steps x SET state = 'completed', output = out, attempts = 1, finished_at = now()
                     WHERE x.run_id = rid AND x.tag = s.tag;
                WHEN 'sleep' THEN
                    UPDATE ductape.workflow_steps x
                       SET state = 'running', wake_at = now() + make_interval(secs => (step->>'seconds')::float8)
                     WHERE x.run_id = rid AND x.tag = s.tag;
                END CASE;
            -- (OTHERS leaves out query_canceled: a sql step cancelled past
            -- ductape.user_code_timeout would roll back the whole tick, and
            -- run again in the next, for good, holding up every run)
            EXCEPTION WHEN OTHERS OR query_canceled THEN
                UPDATE ductape.workflow_steps x SET state = 'failed', error = SQLERRM, attempts = x.attempts + 1, finished_at = now()
                 WHERE x.run_id = rid AND x.tag = s.tag;
                UPDATE ductape.workflow_runs x SET advance = true WHERE x.id = rid;
                RETURN;         -- the next tick turns the run around
            END;
        END LOOP;
    END LOOP;

    -- done when no step is pending or running
    IF NOT EXISTS (SELECT 1 FROM ductape.workflow_steps x WHERE x.run_id = rid AND x.state IN ('pending', 'running')) THEN
        BEGIN
            out := CASE WHEN r.spec ? 'output' THEN ductape._workflow_apply(r.spec->'output', ductape._workflow_context(r)) END;
            UPDATE ductape.workflow_runs x SET state = 'completed', output = out, finished_at = now() WHERE x.id = rid;
        EXCEPTION WHEN OTHERS THEN
            UPDATE ductape.workflow_runs x SET state = 'failed', error = 'output: ' || SQLERRM, finished_at = now() WHERE x.id = rid;
        END;
    END IF;
END
$$;

-- Called by the database worker: advance every run with something to do.
-- Returns how many runs it looked at.
CREATE FUNCTION ductape._workflow_tick() RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    rid bigint;
    n integer := 0;
BEGIN
    FOREACH rid IN ARRAY ARRAY(
        SELECT r.id FROM ductape.workflow_runs r WHERE r.advance
        UNION
        -- (a scalar subquery per step: the few steps with a job in flight
        -- drive, each job found by its key, however large the jobs table)
        SELECT s.run_id FROM ductape.workflow_steps s
         WHERE (s.state = 'running' OR s.state = 'completed' AND s.job_id IS NOT NULL)
           AND s.job_id IS NOT NULL
           AND (SELECT j.state FROM ductape.jobs j WHERE j.id = s.job_id) IN ('succeeded', 'failed', 'cancelled')
        UNION
        SELECT s.run_id FROM ductape.workflow_steps s WHERE s.state = 'running' AND s.wake_at <= now()
        LIMIT 1000) LOOP
        BEGIN
            PERFORM ductape._workflow_advance(rid);
        EXCEPTION WHEN OTHERS THEN
            -- one broken run must not hold up the others: it ends failed
            UPDATE ductape.workflow_runs r SET state = 'failed', advance = false, finished_at = now(),
                   error = 'the workflow engine failed: ' || SQLERRM
             WHERE r.id = rid;
        END;
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

-- pg_dump keeps the definitions; runs are not dumped.
SELECT pg_catalog.pg_extension_config_dump('ductape.workflows', '');
