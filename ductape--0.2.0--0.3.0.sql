-- ductape 0.2.0 -> 0.3.0: the privilege boundary.  User code that the
-- worker runs goes through one gate (the library's); the workflow engine
-- runs sql steps and dispatches through it; functions that record who
-- called them learn it from the library's caller proxy instead of
-- session_user; idempotency keys are scoped per role; nobody, admins
-- included, writes the columns that say whom something runs as.
\echo Use "ALTER EXTENSION ductape UPDATE TO '0.3.0'" to load this file. \quit

---------------------------------------------------------------------------
-- The library's entry points for the gate and the caller proxy
---------------------------------------------------------------------------

-- Who called the ductape function being run (current_user at the call);
-- fails anywhere else.  Used by the SECURITY DEFINER implementations below.
CREATE FUNCTION ductape._caller() RETURNS name
    AS 'MODULE_PATHNAME', 'dt_caller' LANGUAGE c STABLE;

-- The workflow engine's helpers: a sql step, and a step's dispatch, each as
-- the run's role through the gate.  Refused outside the database worker.
CREATE FUNCTION ductape._workflow_sql(role name, sql text) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'dt_workflow_sql' LANGUAGE c VOLATILE;
CREATE FUNCTION ductape._workflow_dispatch_as(role name, app text, action text, input jsonb,
                                              env text, product text, key text, options jsonb)
RETURNS bigint AS 'MODULE_PATHNAME', 'dt_workflow_dispatch_as' LANGUAGE c VOLATILE;

---------------------------------------------------------------------------
-- Idempotency keys are scoped per role: another role's key never matches,
-- never reveals, never blocks.  (The new unique indexes are looser than the
-- old ones, so existing rows always fit.)
---------------------------------------------------------------------------

DROP INDEX ductape.jobs_idempotency_key_idx;
CREATE UNIQUE INDEX jobs_idempotency_key_idx ON ductape.jobs (role, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
DROP INDEX ductape.messages_idempotency_key_idx;
CREATE UNIQUE INDEX messages_idempotency_key_idx ON ductape.messages (role, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
ALTER TABLE ductape.workflow_runs DROP CONSTRAINT workflow_runs_idempotency_key;
ALTER TABLE ductape.workflow_runs ADD CONSTRAINT workflow_runs_idempotency_key UNIQUE (role, idempotency_key);

---------------------------------------------------------------------------
-- The workflow engine: sql steps and dispatches through the gate, its own
-- SQL with search_path pinned
---------------------------------------------------------------------------

-- A workflow's sql steps run as the role that defined it (the code is
-- theirs), never as whoever starts a run: otherwise whoever may define a
-- workflow could run SQL with the rights of every role that starts it.
-- Action steps are dispatched as the starter (the jobs are theirs).
ALTER TABLE ductape.workflows ADD COLUMN role name;      -- NULL: defined before 0.3.0
ALTER TABLE ductape.workflow_runs ADD COLUMN definer name;

-- Definitions are written only by workflow_define, which records its
-- caller (through the caller proxy below).
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
CREATE OR REPLACE FUNCTION ductape.workflow_define(spec jsonb) RETURNS text
LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_as_caller';
ALTER FUNCTION ductape.workflow_define(jsonb) RESET ALL;

-- Remove a workflow; refused while runs of it are active.
CREATE FUNCTION ductape.workflow_drop(workflow text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM ductape._workflow_row(workflow);
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

-- Definitions made before 0.3.0 do not say who made them: their sql steps
-- fail until they are defined again.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT w.tag FROM ductape.workflows w
              WHERE EXISTS (SELECT FROM jsonb_array_elements(w.spec->'steps') e WHERE e->>'type' = 'sql')
    LOOP
        RAISE WARNING 'the sql steps of workflow % will not run until it is defined again', r.tag
            USING DETAIL = 'From ductape 0.3.0 on, sql steps run as the role that defined the workflow, '
                           'and definitions made before do not record it.',
                  HINT = 'Run ductape.workflow_define again with its definition (ductape.workflows.spec), as the role whose rights its SQL needs.';
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION ductape._workflow_dispatch(r ductape.workflow_runs, call jsonb, context jsonb, key text, retries jsonb)
RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN ductape._workflow_dispatch_as(r.role, call->>'app', call->>'action',
               ductape._workflow_apply(coalesce(call->'input', '{}'), context), r.env, r.product, key,
               CASE WHEN retries IS NOT NULL THEN jsonb_build_object('retries', retries) ELSE '{}' END);
END
$$;

CREATE OR REPLACE FUNCTION ductape._workflow_advance(rid bigint) RETURNS void
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

ALTER FUNCTION ductape._workflow_tick() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION ductape._workflow_context(ductape.workflow_runs) SET search_path = pg_catalog, pg_temp;

---------------------------------------------------------------------------
-- Functions that record their caller: a C proxy (the public name) notes
-- current_user and calls the SECURITY DEFINER implementation (the same name
-- with a leading underscore), which reads it with ductape._caller().  The
-- implementations are granted to nobody.
---------------------------------------------------------------------------

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

CREATE OR REPLACE FUNCTION ductape.workflow_start(tag text, input jsonb DEFAULT '{}', idempotency_key text DEFAULT NULL,
                                                  env text DEFAULT NULL, product text DEFAULT NULL)
RETURNS bigint LANGUAGE c VOLATILE SECURITY INVOKER AS 'MODULE_PATHNAME', 'dt_as_caller';
ALTER FUNCTION ductape.workflow_start(text, jsonb, text, text, text) RESET ALL;

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

CREATE OR REPLACE FUNCTION ductape.workflow_cancel(id bigint) RETURNS boolean
LANGUAGE c VOLATILE SECURITY INVOKER AS 'MODULE_PATHNAME', 'dt_as_caller';
ALTER FUNCTION ductape.workflow_cancel(bigint) RESET ALL;

CREATE FUNCTION ductape._webhook_url(app text, webhook text, env text DEFAULT NULL, product text DEFAULT NULL)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    a ductape.apps := ductape._app_row(app);
    p text := coalesce(product, current_setting('ductape.product'));
    e text := coalesce(env, current_setting('ductape.env'));
    listen text := ductape._webhook_listen_address();
    tok text;
BEGIN
    PERFORM ductape._webhook_spec(a, webhook);
    IF NOT EXISTS (SELECT FROM jsonb_array_elements(coalesce(a.spec->'envs', '[]')) x WHERE x->>'slug' = e) THEN
        RAISE EXCEPTION USING ERRCODE = '42704',
            MESSAGE = format('environment "%s" of app "%s" does not exist', e, a.tag),
            HINT = 'Pass env => one of the app''s envs, or add it with ductape.app_define.';
    END IF;
    IF p <> 'default' AND NOT EXISTS (SELECT FROM ductape.products x WHERE x.tag = p) THEN
        RAISE EXCEPTION USING ERRCODE = '42704',
            MESSAGE = format('product "%s" does not exist', p),
            HINT = 'Create it with ductape.product_create.';
    END IF;
    INSERT INTO ductape._webhook_tokens (token, product, app, webhook, env, role)
    VALUES (replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), p, a.tag, webhook, e, ductape._caller())
    ON CONFLICT ON CONSTRAINT webhook_tokens_scope DO NOTHING;
    SELECT t.token INTO tok FROM ductape._webhook_tokens t
     WHERE t.product = p AND t.app = a.tag AND t.webhook = webhook AND t.env = e;
    RETURN format('http://%s/webhooks/%s', listen, tok);
END
$$;

CREATE OR REPLACE FUNCTION ductape.webhook_url(app text, webhook text, env text DEFAULT NULL, product text DEFAULT NULL)
RETURNS text LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_as_caller';

CREATE FUNCTION ductape._webhook_subscribe(app text, webhook text, event_type text, handler regprocedure)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    a ductape.apps := ductape._app_row(app);
    sid bigint;
    caller name := ductape._caller();
BEGIN
    PERFORM ductape._webhook_spec(a, webhook);
    IF coalesce(event_type, '') = '' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'event_type cannot be empty',
            HINT = 'Pass an exact type such as ''charge.succeeded'', a pattern such as ''charge.*'', or ''*''.';
    END IF;
    IF handler IS NULL OR NOT EXISTS (SELECT FROM pg_catalog.pg_proc
                                       WHERE oid = handler AND pronargs = 1 AND proargtypes[0] = 'jsonb'::regtype) THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('webhook handler %s must take one jsonb argument', handler),
            HINT = 'Declare it as function(event jsonb); it receives the ductape.webhook_events row as JSON.';
    END IF;
    IF NOT has_function_privilege(caller, handler, 'EXECUTE') THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = format('permission denied for webhook handler %s', handler);
    END IF;
    INSERT INTO ductape.webhook_subscriptions AS s (app, webhook, event_type, handler, role)
    VALUES (a.tag, webhook, event_type, handler, caller)
    ON CONFLICT ON CONSTRAINT webhook_subscriptions_unique DO UPDATE SET created_at = s.created_at
       WHERE s.role = EXCLUDED.role
    RETURNING s.id INTO sid;
    IF sid IS NULL THEN
        -- the same handler is subscribed by another role: it runs as that role
        RAISE EXCEPTION USING ERRCODE = '42710',
            MESSAGE = format('%s is already subscribed to %s.%s events "%s" by another role', handler, a.tag, webhook, event_type),
            HINT = 'A subscription runs its handler as the role that made it; unsubscribe it first (ductape.webhook_unsubscribe).';
    END IF;
    RETURN sid;
END
$$;

CREATE OR REPLACE FUNCTION ductape.webhook_subscribe(app text, webhook text, event_type text, handler regprocedure)
RETURNS bigint LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_as_caller';

-- (its errors never log the statement: the arguments may hold the secret)
CREATE FUNCTION ductape._endpoint_create(url text, event_types text[] DEFAULT '{*}', secret text DEFAULT NULL,
                                        description text DEFAULT NULL, headers jsonb DEFAULT '{}')
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    eid bigint;
    sealed record;
BEGIN
    PERFORM ductape._endpoint_check(url, event_types, headers);
    eid := nextval(pg_get_serial_sequence('ductape.endpoints', 'id'));
    sealed := ductape._endpoint_seal(eid, secret);
    INSERT INTO ductape.endpoints (id, url, event_types, description, headers, secret, key_version, role)
    VALUES (eid, url, event_types, description, headers, sealed.value, sealed.key_version, ductape._caller());
    RETURN eid;
END
$$;

CREATE OR REPLACE FUNCTION ductape.endpoint_create(url text, event_types text[] DEFAULT '{*}', secret text DEFAULT NULL,
                                                   description text DEFAULT NULL, headers jsonb DEFAULT '{}')
RETURNS bigint LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_as_caller_hidden';

---------------------------------------------------------------------------
-- Tables that say whom something runs as, or what the worker acts on, are
-- written only through ductape's functions: admins keep SELECT on them
-- (and UPDATE of an endpoint's url, event types, description and headers),
-- the functions that write them run as the extension's owner.
---------------------------------------------------------------------------

ALTER FUNCTION ductape.endpoint_rotate_secret(bigint) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION ductape.endpoint_enable(bigint) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION ductape.message_retry(text, bigint) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- endpoint_disable names who disabled it: its caller, through the proxy
CREATE FUNCTION ductape._endpoint_disable(id bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
BEGIN
    PERFORM ductape._endpoint_row(id);
    UPDATE ductape.endpoints SET enabled = false, disabled_reason = 'disabled by ' || ductape._caller(),
           disabled_at = now() WHERE endpoints.id = id;
END
$$;
CREATE OR REPLACE FUNCTION ductape.endpoint_disable(id bigint) RETURNS void
LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_as_caller';

-- Stop handling events of a subscription (events already handled stay so).
CREATE FUNCTION ductape.webhook_unsubscribe(id bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
BEGIN
    DELETE FROM ductape.webhook_subscriptions s WHERE s.id = id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '42704', MESSAGE = format('webhook subscription %s does not exist', id),
            HINT = 'See ductape.webhook_subscriptions for the subscriptions there are.';
    END IF;
END
$$;

-- Remove an endpoint; its pending deliveries are dropped (the attempts made
-- stay in ductape.deliveries until the retention purge).
CREATE FUNCTION ductape.endpoint_delete(id bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
BEGIN
    PERFORM ductape._endpoint_row(id);
    DELETE FROM ductape.outbox o WHERE o.endpoint_id = id AND o.state IN ('pending', 'delivering');
    DELETE FROM ductape.endpoints e WHERE e.id = id;
END
$$;

-- Where an unprefixed input key goes is decided by one implementation, the
-- request builder's: describe() asks it instead of a SQL copy of the rule
-- (the copy said "query" for :id in /files/:id.json, where run() sends it
-- as the path parameter).
CREATE OR REPLACE FUNCTION ductape._placement(a jsonb, key text, prop jsonb) RETURNS text
    AS 'MODULE_PATHNAME', 'dt_placement' LANGUAGE c IMMUTABLE STRICT;

-- The import leaves out the patterns PostgreSQL cannot compile.  Which they
-- are, and where, the schema check says as data (_schema_bad_patterns), not
-- in the text of its problems: 0.1.0 matched ': invalid regular expression: '
-- in that text and cut the path out of it, which a property named with those
-- words, or with a %-escape such as "%41", led astray.
CREATE FUNCTION ductape._schema_bad_patterns(schema jsonb) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'dt_schema_bad_patterns' LANGUAGE c IMMUTABLE STRICT;
CREATE OR REPLACE FUNCTION ductape._drop_bad_patterns(schema jsonb, INOUT dropped text[], OUT result jsonb)
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    bad jsonb;
BEGIN
    result := schema;
    FOREACH bad IN ARRAY ARRAY(SELECT jsonb_array_elements(ductape._schema_bad_patterns(schema))) LOOP
        result := result #- ARRAY(SELECT jsonb_array_elements_text(bad->'path'));
        dropped := dropped || (bad->>'problem');
    END LOOP;
END
$$;

-- What an action definition may say has one implementation, the library's
-- (src/catalog.c): action_define, app_define and the importers ask it
-- here, and the loader checks each stored action with it before the
-- action's first use.  The same problems, in the same words and order, as
-- the plpgsql it replaces.  Not strict: the importers pass no constants or
-- variables (NULL: none); a NULL path is "".
CREATE OR REPLACE FUNCTION ductape._check_action(a jsonb, path text, constants jsonb, variables jsonb)
RETURNS text[] AS 'MODULE_PATHNAME', 'dt_check_action' LANGUAGE c STABLE;
-- A retry policy (an action's, an app's, a workflow step's), by the same code.
CREATE OR REPLACE FUNCTION ductape._check_retries(p jsonb, path text)
RETURNS text[] AS 'MODULE_PATHNAME', 'dt_check_retries' LANGUAGE c IMMUTABLE;
-- The generic rules the plpgsql checkers call (a tag, a JSON type, the
-- keys allowed in an object, an integer within bounds, a request type) are
-- the code the action rules are made of, no longer a copy of it in SQL:
-- the same problems, in the same words and order, and the same answers to
-- NULL arguments.
CREATE OR REPLACE FUNCTION ductape._check_tag(val jsonb, path text, required boolean DEFAULT true)
RETURNS text[] AS 'MODULE_PATHNAME', 'dt_check_tag' LANGUAGE c IMMUTABLE;
CREATE OR REPLACE FUNCTION ductape._check_type(val jsonb, path text, types text[])
RETURNS text[] AS 'MODULE_PATHNAME', 'dt_check_type' LANGUAGE c IMMUTABLE;
CREATE OR REPLACE FUNCTION ductape._check_keys(obj jsonb, path text, allowed text[])
RETURNS text[] AS 'MODULE_PATHNAME', 'dt_check_keys' LANGUAGE c IMMUTABLE;
CREATE OR REPLACE FUNCTION ductape._check_int(val jsonb, path text, lo bigint, hi bigint)
RETURNS text[] AS 'MODULE_PATHNAME', 'dt_check_int' LANGUAGE c IMMUTABLE;
CREATE OR REPLACE FUNCTION ductape._check_request_type(val jsonb, path text)
RETURNS text[] AS 'MODULE_PATHNAME', 'dt_check_request_type' LANGUAGE c IMMUTABLE;

-- Stored actions were re-read by the loader only as far as the request
-- builder needed; now each is checked whole, and one that breaks a rule is
-- refused when called (22023, naming it).  Name the ones that will be.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT x.app, x.tag,
                    ductape._check_action(x.spec || jsonb_build_object('tag', x.tag), '/actions/' || x.tag,
                        CASE WHEN jsonb_typeof(a.spec->'constants') = 'object' THEN a.spec->'constants' END,
                        CASE WHEN jsonb_typeof(a.spec->'variables') = 'object' THEN a.spec->'variables' END) AS problems
               FROM ductape.actions x JOIN ductape.apps a ON a.tag = x.app
              ORDER BY x.app, x.position
    LOOP
        IF cardinality(r.problems) > 0 THEN
            RAISE WARNING 'the stored definition of action % of app % is invalid: ductape 0.3.0 refuses to call it', r.tag, r.app
                USING DETAIL = array_to_string(r.problems, E'\n'),
                      HINT = 'Define the action again with ductape.action_define.';
        END IF;
    END LOOP;
END
$$;

-- Definitions: ductape's own checks never pay for JIT (a recursive CTE in
-- the workflow checker cost 0.3-0.5 s of LLVM compilation per call).
ALTER FUNCTION ductape.app_define(jsonb) SET jit = off;
ALTER FUNCTION ductape.action_define(text, jsonb) SET jit = off;
ALTER FUNCTION ductape.import_openapi(text, text, boolean, text) SET jit = off;
ALTER FUNCTION ductape.import_postman(jsonb, text, boolean) SET jit = off;

---------------------------------------------------------------------------
-- Privileges
---------------------------------------------------------------------------

-- Usage plus defining apps, products, config, variables, secrets, webhooks,
-- endpoints and workflows.  (rotate_master_key writes the key file and
-- stays with superusers.)
CREATE OR REPLACE FUNCTION ductape.grant_admin(role name) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ductape.grant_usage(role);
    EXECUTE format('GRANT EXECUTE ON FUNCTION
        ductape.app_define(jsonb), ductape.app_create(text, text, text),
        ductape.action_define(text, jsonb), ductape.app_export(text), ductape.app_drop(text),
        ductape.import_openapi(text, text, boolean, text), ductape.import_postman(jsonb, text, boolean),
        ductape.workflow_define(jsonb), ductape.workflow_drop(text),
        ductape.variable_set(text, text, jsonb, text, text),
        ductape.product_create(text, text, text[]), ductape.product_connect(text, text, jsonb),
        ductape.config(text, jsonb, text, text),
        ductape.secret_set(text, text, text, text[], text[], timestamptz),
        ductape.secret_get(text), ductape.secret_drop(text),
        ductape.oauth_set_tokens(text, text, text, integer, text, text),
        ductape.webhook_url(text, text, text, text),
        ductape.webhook_subscribe(text, text, text, regprocedure), ductape.webhook_unsubscribe(bigint),
        ductape.endpoint_create(text, text[], text, text, jsonb), ductape.endpoint_secret(bigint),
        ductape.endpoint_rotate_secret(bigint), ductape.endpoint_disable(bigint),
        ductape.endpoint_enable(bigint), ductape.endpoint_delete(bigint),
        ductape.message_retry(text, bigint) TO %I', role);
    -- the definition checks are plain SQL run as the caller; not the
    -- implementations behind the caller proxy, nor the workflow engine.
    -- (Named here, not put back together from pg_proc: a new internal
    -- function is added to this list; sql/privileges.sql shows every one.)
    EXECUTE format('GRANT EXECUTE ON FUNCTION
        ductape._action_body(jsonb), ductape._app_row(text), ductape._catalog_changed(),
        ductape._check_action(jsonb, text, jsonb, jsonb), ductape._check_app(jsonb),
        ductape._check_auth(jsonb), ductape._check_int(jsonb, text, bigint, bigint),
        ductape._check_keys(jsonb, text, text[]), ductape._check_request_type(jsonb, text),
        ductape._check_retries(jsonb, text), ductape._check_step_call(jsonb, text),
        ductape._check_tag(jsonb, text, boolean), ductape._check_type(jsonb, text, text[]),
        ductape._check_webhook(jsonb, text, jsonb, jsonb), ductape._check_workflow(jsonb),
        ductape._condition_check(text, text), ductape._condition_eval(text, jsonb),
        ductape._deref(jsonb, jsonb, text), ductape._document_parse(text, text),
        ductape._drop_bad_patterns(jsonb, text[]), ductape._endpoint_check(text, text[], jsonb),
        ductape._endpoint_check_url(text), ductape._endpoint_row(bigint),
        ductape._endpoint_seal(bigint, text), ductape._example_schema(jsonb),
        ductape._import_auth(text, text, text, text), ductape._import_check_exists(text, boolean),
        ductape._import_define(jsonb), ductape._import_refuse(text, text[], text),
        ductape._json_refs(jsonb), ductape._kebab(text),
        ductape._openapi_action(jsonb, text, jsonb, text, text), ductape._openapi_auth(jsonb, text),
        ductape._openapi_resource(text), ductape._placement(jsonb, text, jsonb),
        ductape._pointer_escape(text), ductape._postman_requests(jsonb, text, text),
        ductape._postman_template(text), ductape._product_env(ductape.products, text),
        ductape._product_row(text), ductape._raise_invalid(text, text[]), ductape._ref_path(text),
        ductape._ref_target(jsonb, text), ductape._schema_bad_patterns(jsonb),
        ductape._schema_check(jsonb, text), ductape._schema_validate(jsonb, jsonb),
        ductape._signature_check(jsonb, text, jsonb, text, timestamptz),
        ductape._signature_standard(text, text, bigint, text),
        ductape._template_errors(jsonb, text, jsonb, jsonb), ductape._template_steps(jsonb),
        ductape._type_matches(text, text), ductape._unique_tag(text, text[]),
        ductape._unique_tags(jsonb[]), ductape._wake_worker(), ductape._webhook_listen_address(),
        ductape._webhook_spec(ductape.apps, text), ductape._with_refs(jsonb, jsonb),
        ductape._workflow_apply(jsonb, jsonb), ductape._workflow_row(text),
        ductape._workflow_template_errors(jsonb, text) TO %I', role);
    -- (the remaining internal C functions are STRICT: NULL in, NULL out)
    -- (secret_set writes _secrets as its caller, in C, encrypting first;
    -- a row there says nothing about who runs what)
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ductape.apps, ductape.actions,
        ductape.variables, ductape.products, ductape.product_apps, ductape.configs,
        ductape._secrets TO %I', role);
    EXECUTE format('GRANT SELECT ON ductape._webhook_tokens, ductape.webhook_subscriptions,
        ductape.endpoints, ductape.workflows, ductape.secrets TO %I', role);
    EXECUTE format('GRANT UPDATE (url, event_types, description, headers) ON ductape.endpoints TO %I', role);
END
$$;

-- Roles granted admin under 0.2.0: take back what the new grant_admin does
-- not give, and give what it adds.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT DISTINCT p.grantee::regrole::name AS role
               FROM pg_class c, aclexplode(c.relacl) p
              WHERE c.oid = 'ductape.webhook_subscriptions'::regclass
                AND p.privilege_type IN ('INSERT', 'UPDATE', 'DELETE') AND p.grantee <> 0
                AND p.grantee <> c.relowner
    LOOP
        EXECUTE format('REVOKE INSERT, UPDATE, DELETE ON ductape._webhook_tokens,
            ductape.webhook_subscriptions, ductape.endpoints, ductape.outbox, ductape.workflows FROM %I', r.role);
        EXECUTE format('REVOKE USAGE ON SEQUENCE ductape.endpoints_id_seq FROM %I', r.role);
        EXECUTE format('REVOKE EXECUTE ON FUNCTION ductape._workflow_dispatch(ductape.workflow_runs, jsonb, jsonb, text, jsonb),
            ductape._workflow_advance(bigint), ductape._workflow_tick(),
            ductape._workflow_context(ductape.workflow_runs) FROM %I', r.role);
        PERFORM ductape.grant_admin(r.role);
    END LOOP;
END
$$;

-- The admin-only write policy on the outbox is not needed any more.
DROP POLICY outbox_admin ON ductape.outbox;

-- The tables that say whom a handler or a sql step runs as are written by
-- ductape's functions (the owner) only, whatever was granted: a dump of a
-- 0.2.0 database restored into this version carries 0.2.0's grants of
-- INSERT, UPDATE and DELETE on them to its admins.
ALTER TABLE ductape.webhook_subscriptions ENABLE ROW LEVEL SECURITY;
CREATE POLICY webhook_subscriptions_read ON ductape.webhook_subscriptions FOR SELECT USING (true);
ALTER TABLE ductape.workflows ENABLE ROW LEVEL SECURITY;
CREATE POLICY workflows_read ON ductape.workflows FOR SELECT USING (true);

-- Internal C functions granted to admins with the definition checks: NULL
-- in, NULL out (a NULL argument used to reach the C code).
ALTER FUNCTION ductape._schema_check(jsonb, text) STRICT;
ALTER FUNCTION ductape._document_parse(text, text) STRICT;
ALTER FUNCTION ductape._condition_check(text, text) STRICT;
ALTER FUNCTION ductape._workflow_template_errors(jsonb, text) STRICT;

-- ==== calls partitioned by day, call_retention, retention of finished workflow runs ====
-- (section: retention)



-- ==== statistics kept in shared memory (ductape.stats, stats_reset) ====
-- (section: stats)

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

-- Keeps the columns of 0.2.0 first, in their order and types: replaced in
-- place, so its grants and the views built on it stay.
CREATE OR REPLACE VIEW ductape.stats WITH (security_invoker = true) AS
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

-- Usage roles read ductape.stats through ductape._stats(); administrators
-- reset the counters and read _stats_info.
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
        ductape._stats(),
        ductape.workflow_start(text, jsonb, text, text, text), ductape.workflow_status(bigint),
        ductape.workflow_cancel(bigint), ductape.version() TO %I', role);
    EXECUTE format('GRANT SELECT ON ductape.calls, ductape.stats, ductape.jobs, ductape.queue,
        ductape.webhook_events, ductape.messages, ductape.outbox, ductape.deliveries,
        ductape.workflow_runs, ductape.workflow_steps TO %I', role);
END
$$;

CREATE OR REPLACE FUNCTION ductape.grant_admin(role name) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ductape.grant_usage(role);
    EXECUTE format('GRANT EXECUTE ON FUNCTION
        ductape.app_define(jsonb), ductape.app_create(text, text, text),
        ductape.action_define(text, jsonb), ductape.app_export(text), ductape.app_drop(text),
        ductape.import_openapi(text, text, boolean, text), ductape.import_postman(jsonb, text, boolean),
        ductape.workflow_define(jsonb), ductape.workflow_drop(text),
        ductape.variable_set(text, text, jsonb, text, text),
        ductape.product_create(text, text, text[]), ductape.product_connect(text, text, jsonb),
        ductape.config(text, jsonb, text, text),
        ductape.stats_reset(), ductape._stats_info(),
        ductape.secret_set(text, text, text, text[], text[], timestamptz),
        ductape.secret_get(text), ductape.secret_drop(text),
        ductape.oauth_set_tokens(text, text, text, integer, text, text),
        ductape.webhook_url(text, text, text, text),
        ductape.webhook_subscribe(text, text, text, regprocedure), ductape.webhook_unsubscribe(bigint),
        ductape.endpoint_create(text, text[], text, text, jsonb), ductape.endpoint_secret(bigint),
        ductape.endpoint_rotate_secret(bigint), ductape.endpoint_disable(bigint),
        ductape.endpoint_enable(bigint), ductape.endpoint_delete(bigint),
        ductape.message_retry(text, bigint) TO %I', role);
    -- the definition checks are plain SQL run as the caller; not the
    -- implementations behind the caller proxy, nor the workflow engine.
    -- (Named here, not put back together from pg_proc: a new internal
    -- function is added to this list; sql/privileges.sql shows every one.)
    EXECUTE format('GRANT EXECUTE ON FUNCTION
        ductape._action_body(jsonb), ductape._app_row(text), ductape._catalog_changed(),
        ductape._check_action(jsonb, text, jsonb, jsonb), ductape._check_app(jsonb),
        ductape._check_auth(jsonb), ductape._check_int(jsonb, text, bigint, bigint),
        ductape._check_keys(jsonb, text, text[]), ductape._check_request_type(jsonb, text),
        ductape._check_retries(jsonb, text), ductape._check_step_call(jsonb, text),
        ductape._check_tag(jsonb, text, boolean), ductape._check_type(jsonb, text, text[]),
        ductape._check_webhook(jsonb, text, jsonb, jsonb), ductape._check_workflow(jsonb),
        ductape._condition_check(text, text), ductape._condition_eval(text, jsonb),
        ductape._deref(jsonb, jsonb, text), ductape._document_parse(text, text),
        ductape._drop_bad_patterns(jsonb, text[]), ductape._endpoint_check(text, text[], jsonb),
        ductape._endpoint_check_url(text), ductape._endpoint_row(bigint),
        ductape._endpoint_seal(bigint, text), ductape._example_schema(jsonb),
        ductape._import_auth(text, text, text, text), ductape._import_check_exists(text, boolean),
        ductape._import_define(jsonb), ductape._import_refuse(text, text[], text),
        ductape._json_refs(jsonb), ductape._kebab(text),
        ductape._openapi_action(jsonb, text, jsonb, text, text), ductape._openapi_auth(jsonb, text),
        ductape._openapi_resource(text), ductape._placement(jsonb, text, jsonb),
        ductape._pointer_escape(text), ductape._postman_requests(jsonb, text, text),
        ductape._postman_template(text), ductape._product_env(ductape.products, text),
        ductape._product_row(text), ductape._raise_invalid(text, text[]), ductape._ref_path(text),
        ductape._ref_target(jsonb, text), ductape._schema_bad_patterns(jsonb),
        ductape._schema_check(jsonb, text), ductape._schema_validate(jsonb, jsonb),
        ductape._signature_check(jsonb, text, jsonb, text, timestamptz),
        ductape._signature_standard(text, text, bigint, text),
        ductape._template_errors(jsonb, text, jsonb, jsonb), ductape._template_steps(jsonb),
        ductape._type_matches(text, text), ductape._unique_tag(text, text[]),
        ductape._unique_tags(jsonb[]), ductape._wake_worker(), ductape._webhook_listen_address(),
        ductape._webhook_spec(ductape.apps, text), ductape._with_refs(jsonb, jsonb),
        ductape._workflow_apply(jsonb, jsonb), ductape._workflow_row(text),
        ductape._workflow_template_errors(jsonb, text) TO %I', role);
    -- (the remaining internal C functions are STRICT: NULL in, NULL out)
    -- (secret_set writes _secrets as its caller, in C, encrypting first;
    -- a row there says nothing about who runs what)
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ductape.apps, ductape.actions,
        ductape.variables, ductape.products, ductape.product_apps, ductape.configs,
        ductape._secrets TO %I', role);
    EXECUTE format('GRANT SELECT ON ductape._webhook_tokens, ductape.webhook_subscriptions,
        ductape.endpoints, ductape.workflows, ductape.secrets TO %I', role);
    EXECUTE format('GRANT UPDATE (url, event_types, description, headers) ON ductape.endpoints TO %I', role);
END
$$;

-- Roles granted under 0.2.0 get what the new grant_usage and grant_admin add.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT DISTINCT p.grantee::regrole::name AS role
               FROM pg_class c, aclexplode(c.relacl) p
              WHERE c.oid = 'ductape.stats'::regclass AND p.privilege_type = 'SELECT'
                AND p.grantee <> 0 AND p.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION ductape._stats() TO %I', r.role);
    END LOOP;
    FOR r IN SELECT DISTINCT p.grantee::regrole::name AS role
               FROM pg_proc f, aclexplode(f.proacl) p
              WHERE f.oid = 'ductape.secret_get(text)'::regprocedure AND p.privilege_type = 'EXECUTE'
                AND p.grantee <> 0 AND p.grantee <> f.proowner
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION ductape.stats_reset(), ductape._stats_info() TO %I', r.role);
    END LOOP;
END
$$;



-- ==== metrics and health (ductape.health) ====
-- (section: metrics)



-- ==== alerts (NOTIFY ductape_alerts, operational event types) ====
-- (section: alerts)



-- ==== lifecycle: every object made by a function is changed and removed by one ====
-- (section: lifecycle)



-- ==== descriptions: COMMENT ON every object a user reads ====
-- (section: descriptions)



-- An upgrade script's GRANTs and REVOKEs are recorded as the objects'
-- initial privileges (pg_init_privs), and with them every role the
-- database had granted ductape to by then; pg_dump leaves initial
-- privileges out of a dump, so a database updated and then dumped lost its
-- roles' ductape privileges on restore.  Every upgrade script ends by
-- calling this: of what the scripts recorded, keep what a fresh install
-- records (the owner's privileges and PUBLIC's), forget the roles'.
CREATE FUNCTION ductape._forget_granted_initial_privileges() RETURNS void
LANGUAGE sql AS $$
    WITH member AS (
        SELECT d.classid, d.objid FROM pg_catalog.pg_depend d
         WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.deptype = 'e'
           AND d.refobjid = (SELECT e.oid FROM pg_catalog.pg_extension e WHERE e.extname = 'ductape')
        UNION ALL
        SELECT 'pg_catalog.pg_namespace'::pg_catalog.regclass::pg_catalog.oid,
               'ductape'::pg_catalog.regnamespace::pg_catalog.oid),
    kept AS (
        SELECT ip.classoid, ip.objoid, ip.objsubid,
               (SELECT pg_catalog.array_agg(u.item ORDER BY u.n)
                  FROM pg_catalog.unnest(ip.initprivs) WITH ORDINALITY u(item, n)
                 WHERE EXISTS (SELECT FROM pg_catalog.aclexplode(ARRAY[u.item]) x
                                WHERE x.grantee OPERATOR(pg_catalog.=) 0
                                   OR x.grantee OPERATOR(pg_catalog.=) x.grantor)) AS acl
          FROM pg_catalog.pg_init_privs ip
         WHERE ip.privtype OPERATOR(pg_catalog.=) 'e'
           AND (ip.classoid, ip.objoid) IN (SELECT classid, objid FROM member)),
    dropped AS (
        DELETE FROM pg_catalog.pg_init_privs ip USING kept k
         WHERE ip.classoid OPERATOR(pg_catalog.=) k.classoid AND ip.objoid OPERATOR(pg_catalog.=) k.objoid
           AND ip.objsubid OPERATOR(pg_catalog.=) k.objsubid AND ip.privtype OPERATOR(pg_catalog.=) 'e'
           AND k.acl IS NULL)
    UPDATE pg_catalog.pg_init_privs ip SET initprivs = k.acl FROM kept k
     WHERE ip.classoid OPERATOR(pg_catalog.=) k.classoid AND ip.objoid OPERATOR(pg_catalog.=) k.objoid
       AND ip.objsubid OPERATOR(pg_catalog.=) k.objsubid AND ip.privtype OPERATOR(pg_catalog.=) 'e'
       AND k.acl IS NOT NULL
$$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA ductape FROM PUBLIC;

-- (last: after every GRANT and REVOKE above)
SELECT ductape._forget_granted_initial_privileges();
