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

-- ductape.calls becomes partitioned by UTC day (src/sql/05_run.sql): the
-- 0.2.0 table is renamed away, the partitioned one made in its place with
-- the same policy and indexes and the same grants, its rows moved into day
-- partitions (members of the extension, as the worker's are; today's and
-- the next three days' are made here too, as a fresh install does), the stats
-- view pointed at the new table, the old one dropped.  Only the rows within
-- ductape.call_retention move: 0.2.0 never deleted any, and a partition for
-- each of years of days, made in this one transaction, ran out of the lock
-- table (and the worker would have dropped them at its next pass).
ALTER TABLE ductape.calls RENAME TO calls_0_2_0;
ALTER TABLE ductape.calls_0_2_0 RENAME CONSTRAINT calls_pkey TO calls_0_2_0_pkey;
ALTER INDEX ductape.calls_at_idx RENAME TO calls_0_2_0_at_idx;
ALTER INDEX ductape.calls_app_action_idx RENAME TO calls_0_2_0_app_action_idx;
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
ALTER TABLE ductape.calls ENABLE ROW LEVEL SECURITY;
CREATE POLICY calls_by_role ON ductape.calls FOR SELECT
    USING (role = current_user
           OR pg_catalog.has_function_privilege('ductape.secret_get(text)', 'EXECUTE'));
DO $$
DECLARE
    a record;
    d date;
    part text;
    n bigint;
    -- the first UTC day the worker keeps (see CallsDropExpired, retention.c)
    keep_from date := ((pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => coalesce(
                          (SELECT s.setting::pg_catalog.float8 FROM pg_catalog.pg_settings s
                            WHERE s.name OPERATOR(pg_catalog.=) 'ductape.call_retention'), 604800)))
                        AT TIME ZONE 'UTC')::date;
BEGIN
    -- the roles' grants (grant_usage: SELECT), as they were
    FOR a IN SELECT x.grantee, x.privilege_type, x.is_grantable
               FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) x
              WHERE c.oid OPERATOR(pg_catalog.=) 'ductape.calls_0_2_0'::pg_catalog.regclass
                AND x.grantee OPERATOR(pg_catalog.<>) c.relowner LOOP
        EXECUTE pg_catalog.format('GRANT %s ON ductape.calls TO %s%s', a.privilege_type,
                                  CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                                       ELSE a.grantee::pg_catalog.regrole::text END,
                                  CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
    -- a partition for each day that has rows, today and the next three days
    FOR d IN SELECT (c.at AT TIME ZONE 'UTC')::date FROM ductape.calls_0_2_0 c
              WHERE c.at OPERATOR(pg_catalog.>=) (keep_from::pg_catalog.timestamp AT TIME ZONE 'UTC')
             UNION
             SELECT (pg_catalog.now() AT TIME ZONE 'UTC')::date OPERATOR(pg_catalog.+) k FROM pg_catalog.generate_series(0, 3) k LOOP
        part := 'calls_' OPERATOR(pg_catalog.||) pg_catalog.to_char(d, 'YYYYMMDD');
        EXECUTE pg_catalog.format('CREATE TABLE ductape.%I PARTITION OF ductape.calls FOR VALUES FROM (%L) TO (%L)',
                                  part, pg_catalog.to_char(d, 'YYYY-MM-DD') OPERATOR(pg_catalog.||) ' 00:00:00+00',
                                  pg_catalog.to_char(d OPERATOR(pg_catalog.+) 1, 'YYYY-MM-DD') OPERATOR(pg_catalog.||) ' 00:00:00+00');
        EXECUTE pg_catalog.format('ALTER TABLE ductape.%I ENABLE ROW LEVEL SECURITY', part);
    END LOOP;
    INSERT INTO ductape.calls SELECT * FROM ductape.calls_0_2_0 c
     WHERE c.at OPERATOR(pg_catalog.>=) (keep_from::pg_catalog.timestamp AT TIME ZONE 'UTC');
    SELECT pg_catalog.count(*) INTO n FROM ductape.calls_0_2_0 c
     WHERE c.at OPERATOR(pg_catalog.<) (keep_from::pg_catalog.timestamp AT TIME ZONE 'UTC');
    IF n OPERATOR(pg_catalog.>) 0 THEN
        RAISE NOTICE 'ductape left out % call records older than ductape.call_retention', n
            USING DETAIL = pg_catalog.format('Records of days before %s (UTC) are not kept by 0.3.0, which stores calls by day and drops the days past ductape.call_retention.', keep_from);
    END IF;
END
$$;
-- (the same definition, bound to the new table; the stats section below
-- may replace it)
CREATE OR REPLACE VIEW ductape.stats WITH (security_invoker = true) AS
SELECT app, action,
       count(*)                                                        AS calls,
       count(*) FILTER (WHERE error IS NOT NULL)                       AS errors,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms)::numeric, 3)  AS p50_ms,
       round(percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms)::numeric, 3) AS p95_ms,
       max(at)                                                         AS last_at
  FROM ductape.calls
 GROUP BY app, action;
DROP TABLE ductape.calls_0_2_0;

-- finished workflow runs are deleted after ductape.job_retention
CREATE INDEX workflow_runs_finished_idx ON ductape.workflow_runs (finished_at) WHERE finished_at IS NOT NULL;



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
-- reset the counters and read _stats_info (grant_usage and grant_admin,
-- re-made in the lifecycle section below, give them, also to the roles
-- granted before).





-- ==== metrics and health (ductape.health) ====
-- (section: metrics)

-- What an operator or a probe checks (docs/reference.md, "Metrics and
-- health"): workers, listener, queue depths, the master key file, dropped
-- call records, and an overall ok.  Administrators (grant_admin).
CREATE FUNCTION ductape.health() RETURNS jsonb
    AS 'MODULE_PATHNAME', 'dt_health' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION ductape.health() IS
    'ductape''s health as jsonb: ok, problems, this database''s worker, every database''s worker, the listener, jobs per state and the oldest due job''s wait, deliveries waiting, endpoints disabled, webhook events waiting, whether the master key file is readable, call records dropped.';

-- The jobs in flight, for the gauges the worker publishes (/metrics) and
-- health(), and for putting back what a dead worker left running: neither
-- reads a finished row.
CREATE INDEX jobs_running_idx ON ductape.jobs (id) WHERE state = 'running';

-- grant_admin gives health() too (re-made in the lifecycle section below).




-- ==== alerts (NOTIFY ductape_alerts, operational event types) ====
-- (section: alerts)

-- Outbound matching: "*" no longer matches ductape's operational types
-- (publish refuses event types beginning with "ductape.", in the library).
-- Does an endpoint subscribed to these types and patterns want a message of
-- this type?  ductape's operational types ("ductape.job.failed", see
-- 11_alerts.sql) match only patterns that name them ("ductape.*",
-- "ductape.job.failed"): "*" means the team's own events.
CREATE FUNCTION ductape._endpoint_wants(event_types text[], event_type text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT EXISTS (SELECT FROM pg_catalog.unnest(event_types) t
                    WHERE ductape._type_matches(event_type, t)
                      AND (NOT pg_catalog.starts_with(event_type, 'ductape.')
                           OR pg_catalog.starts_with(t, 'ductape.')))
$$;
COMMENT ON FUNCTION ductape._endpoint_wants(text[], text) IS
    'Whether an endpoint with these event_types receives a message of this type ("*" does not match ductape.* operational types).';

-- message_retry matches through _endpoint_wants.
CREATE OR REPLACE FUNCTION ductape.message_retry(message_id text, endpoint_id bigint DEFAULT NULL)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    m ductape.messages;
    n integer;
BEGIN
    SELECT * INTO m FROM ductape.messages WHERE id = message_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '42704', MESSAGE = format('message %s does not exist', message_id);
    END IF;
    IF endpoint_id IS NOT NULL THEN
        PERFORM ductape._endpoint_row(endpoint_id);
    END IF;
    INSERT INTO ductape.outbox AS o (message_id, endpoint_id, role)
    SELECT m.id, e.id, m.role FROM ductape.endpoints e
     WHERE CASE WHEN endpoint_id IS NULL
                THEN e.enabled AND ductape._endpoint_wants(e.event_types, m.event_type)
                ELSE e.id = endpoint_id END
    ON CONFLICT ON CONSTRAINT outbox_message_endpoint DO UPDATE
       SET state = 'pending', attempts = 0, next_attempt_at = now(), finished_at = NULL
     WHERE o.state IN ('succeeded', 'failed');
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM ductape._wake_worker();
    END IF;
    RETURN n;
END
$$;

-- The alerts (src/sql/11_alerts.sql).
-- The alert of one row whose state just became final-and-bad.
CREATE FUNCTION ductape._alert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    kind text;
    object text;
    reason text;
    payload jsonb;
    event_type text;
    msg_id text;
BEGIN
    IF TG_TABLE_SCHEMA <> 'ductape' OR TG_OP <> 'UPDATE' OR TG_LEVEL <> 'ROW' OR TG_WHEN <> 'AFTER'
       OR TG_TABLE_NAME NOT IN ('endpoints', 'jobs', 'webhook_events', 'workflow_runs') THEN
        RAISE EXCEPTION USING ERRCODE = '39P01',
            MESSAGE = format('ductape._alert() cannot be used by trigger %s on %I.%I', TG_NAME, TG_TABLE_SCHEMA, TG_TABLE_NAME),
            DETAIL = 'It fires AFTER UPDATE FOR EACH ROW on ductape.endpoints, jobs, webhook_events and workflow_runs only.';
    END IF;
    CASE TG_TABLE_NAME
    WHEN 'endpoints' THEN
        kind := 'endpoint.disabled';
        object := 'endpoint';
        reason := CASE WHEN NEW.disabled_reason = 'the endpoint answered 410 Gone' THEN 'answered 410 Gone'
                       WHEN starts_with(NEW.disabled_reason, 'failing continuously since ') THEN 'failing for 5 days'
                       WHEN starts_with(NEW.disabled_reason, 'disabled by ') THEN 'disabled by an administrator'
                       ELSE 'disabled' END;
    WHEN 'jobs' THEN
        kind := 'job.failed';
        object := 'job';
        reason := format('%s after %s attempt%s',
                         CASE WHEN NEW.error ~ '^HTTP [0-9]{3}$' THEN NEW.error ELSE 'no HTTP status' END,
                         NEW.attempts, CASE WHEN NEW.attempts = 1 THEN '' ELSE 's' END);
    WHEN 'webhook_events' THEN
        kind := 'webhook_event.failed';
        object := 'webhook_event';
        reason := format('handlers failed %s time%s', NEW.attempts, CASE WHEN NEW.attempts = 1 THEN '' ELSE 's' END);
    WHEN 'workflow_runs' THEN
        kind := 'workflow.failed';
        object := 'workflow_run';
        reason := CASE WHEN NEW.state = 'rolled_back' THEN 'a step failed; rolled back'
                       WHEN starts_with(NEW.error, 'compensation of step ') THEN 'a compensation failed'
                       WHEN starts_with(NEW.error, 'output: ') THEN 'the output template failed'
                       WHEN starts_with(NEW.error, 'the workflow engine failed') THEN 'the workflow engine failed'
                       ELSE 'failed' END;
    END CASE;
    payload := jsonb_build_object('kind', kind, 'object', jsonb_build_object('type', object, 'id', NEW.id),
                                  'reason', reason, 'at', clock_timestamp(), 'database', current_database());
    PERFORM pg_notify('ductape_alerts', payload::text);

    -- the operational message, when an endpoint wants it (one scan of the
    -- endpoints, usually a handful of rows, when nobody does)
    event_type := 'ductape.' || kind;
    IF EXISTS (SELECT FROM ductape.endpoints e WHERE e.enabled AND ductape._endpoint_wants(e.event_types, event_type)) THEN
        msg_id := 'msg_' || replace(gen_random_uuid()::text, '-', '');
        INSERT INTO ductape.messages (id, event_type, payload, role)
        VALUES (msg_id, event_type, payload, current_user);
        INSERT INTO ductape.outbox (message_id, endpoint_id, role)
        SELECT msg_id, e.id, current_user FROM ductape.endpoints e
         WHERE e.enabled AND ductape._endpoint_wants(e.event_types, event_type);
        PERFORM ductape._wake_worker();
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER alert_disabled AFTER UPDATE OF enabled ON ductape.endpoints
    FOR EACH ROW WHEN (OLD.enabled AND NOT NEW.enabled) EXECUTE FUNCTION ductape._alert();
CREATE TRIGGER alert_failed AFTER UPDATE OF state ON ductape.jobs
    FOR EACH ROW WHEN (NEW.state = 'failed' AND OLD.state <> 'failed') EXECUTE FUNCTION ductape._alert();
CREATE TRIGGER alert_failed AFTER UPDATE OF state ON ductape.webhook_events
    FOR EACH ROW WHEN (NEW.state = 'failed' AND OLD.state <> 'failed') EXECUTE FUNCTION ductape._alert();
CREATE TRIGGER alert_failed AFTER UPDATE OF state ON ductape.workflow_runs
    FOR EACH ROW WHEN (NEW.state IN ('failed', 'rolled_back') AND OLD.state NOT IN ('failed', 'rolled_back'))
    EXECUTE FUNCTION ductape._alert();

COMMENT ON FUNCTION ductape._alert() IS
    'Trigger: NOTIFY ductape_alerts and publish the ductape.* operational message of a row that just failed for good (see docs/reference.md, Alerts).';
COMMENT ON TRIGGER alert_disabled ON ductape.endpoints IS
    'Alerts endpoint.disabled when an endpoint is disabled (410 Gone, five days failing, endpoint_disable).';
COMMENT ON TRIGGER alert_failed ON ductape.jobs IS
    'Alerts job.failed when a job fails for good (retries exhausted).';
COMMENT ON TRIGGER alert_failed ON ductape.webhook_events IS
    'Alerts webhook_event.failed when an inbound event''s handlers fail for good.';
COMMENT ON TRIGGER alert_failed ON ductape.workflow_runs IS
    'Alerts workflow.failed when a workflow run ends failed or rolled_back.';



-- ==== lifecycle: every object made by a function is changed and removed by one ====
-- (section: lifecycle)

-- Removing things: the drop functions below refuse (2BP01) what other
-- objects still use unless cascade => true; app_drop gains a form with
-- that argument, and app_drop(tag) becomes app_drop(tag, false).

---------------------------------------------------------------------------
-- Removing things: what still uses an app, an action, a product or a
-- connection (docs/reference.md, "Removing things")
---------------------------------------------------------------------------
-- Dependents are what would run against the removed object later: on_row
-- triggers, workflow definitions, queued and scheduled jobs, running
-- workflow runs, webhook subscriptions and webhook URLs handed out to a
-- provider.  Without cascade a drop that has any is refused (2BP01, the
-- detail naming them); with cascade they are dropped or cancelled first.
-- Settings that only mean something with the object (an app's actions, a
-- product's connections, credentials, variable values and OAuth2 tokens)
-- go with it.  (plpgsql: the tables of later files are read at run time.)

-- A tag passed as an argument: 22023 unless it is one.
CREATE FUNCTION ductape._tag_arg(tag text, what text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF tag IS NULL OR tag !~ '^[a-z0-9][a-z0-9_.-]{0,62}$' THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = CASE WHEN tag IS NULL THEN format('%s tag cannot be NULL', what)
                           ELSE format('invalid %s tag "%s"', what, tag) END,
            DETAIL = 'A tag is 1 to 63 characters: lower-case letters, digits, "_", "." and "-", starting with a letter or a digit.';
    END IF;
    RETURN tag;
END
$$;
COMMENT ON FUNCTION ductape._tag_arg(text, text) IS
    'Checks a tag passed as an argument (22023 unless it is one); returns it.';

-- A trigger's arguments (pg_trigger.tgargs: each ends with a NUL byte), each
-- in the escape form of encode(): exact for a tag, which is all they are
-- compared with.
CREATE FUNCTION ductape._trigger_args(args bytea, n integer) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    out text[] := '{}';
    p integer;
BEGIN
    FOR i IN 1 .. coalesce(n, 0) LOOP
        p := position('\x00'::bytea IN args);
        EXIT WHEN p = 0;
        out := out || encode(substring(args FROM 1 FOR p - 1), 'escape');
        args := substring(args FROM p + 1);
    END LOOP;
    RETURN out;
END
$$;
COMMENT ON FUNCTION ductape._trigger_args(bytea, integer) IS
    'The arguments of a trigger (pg_trigger.tgargs), in encode()''s escape form.';

-- What uses an action (d_app, d_action), an app (d_app), a product
-- (d_product) or a connection (d_app, d_product): one line per dependent,
-- with its kind and what identifies it.
CREATE FUNCTION ductape._dependents(d_app text, d_action text, d_product text)
RETURNS TABLE (dep_kind text, dep_line text, dep_ref jsonb)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    this text := CASE WHEN d_action IS NOT NULL THEN 'this action'
                      WHEN d_app IS NOT NULL AND d_product IS NOT NULL THEN 'this connection'
                      WHEN d_app IS NOT NULL THEN 'this app' ELSE 'this product' END;
    n bigint;
BEGIN
    -- on_row triggers: EXECUTE FUNCTION ductape.on_row(app, action, template, env, product)
    RETURN QUERY
    SELECT 'trigger', format('trigger "%s" on table %s dispatches %s.', t.tgname, t.tgrelid::regclass, this),
           jsonb_build_object('trigger', t.tgname, 'table', t.tgrelid::oid)
      FROM pg_trigger t, LATERAL (SELECT ductape._trigger_args(t.tgargs, t.tgnargs) AS args) a
     WHERE t.tgfoid = 'ductape.on_row()'::regprocedure
       AND t.tgparentid = 0   -- a partition's copy goes with its parent's trigger
       AND (d_app IS NULL OR a.args[1] = d_app) AND (d_action IS NULL OR a.args[2] = d_action)
       AND (d_product IS NULL OR a.args[5] = d_product)
     ORDER BY t.tgrelid::regclass::text, t.tgname;
    -- workflow definitions (a workflow is started under any product)
    IF d_product IS NULL THEN
        RETURN QUERY
        SELECT 'workflow', format('workflow "%s" step "%s" %s %s.', w.tag, x.s->>'tag',
                                  CASE WHEN c.comp THEN 'compensates with' ELSE 'uses' END, this),
               jsonb_build_object('workflow', w.tag)
          FROM ductape.workflows w,
               jsonb_array_elements(w.spec->'steps') WITH ORDINALITY x(s, ord),
               LATERAL (VALUES (false, CASE WHEN x.s->>'type' = 'action' THEN x.s END),
                               (true, x.s->'compensate')) c(comp, call)
         WHERE c.call->>'app' = d_app AND (d_action IS NULL OR c.call->>'action' = d_action)
         ORDER BY w.tag, x.ord, c.comp;
    END IF;
    -- webhook subscriptions to the app's webhooks
    IF d_app IS NOT NULL AND d_action IS NULL AND d_product IS NULL THEN
        RETURN QUERY
        SELECT 'subscription', format('webhook subscription %s runs %s for webhook "%s" events "%s".',
                                      s.id, s.handler, s.webhook, s.event_type),
               jsonb_build_object('subscription', s.id)
          FROM ductape.webhook_subscriptions s WHERE s.app = d_app ORDER BY s.id;
    END IF;
    -- webhook URLs a provider may still send to
    IF d_action IS NULL THEN
        RETURN QUERY
        SELECT 'webhook_url', format('webhook "%s" of app "%s" has a URL for product "%s", env "%s".',
                                     t.webhook, t.app, t.product, t.env),
               jsonb_build_object('token', t.token)
          FROM ductape._webhook_tokens t
         WHERE (d_app IS NULL OR t.app = d_app) AND (d_product IS NULL OR t.product = d_product)
         ORDER BY t.app, t.webhook, t.product, t.env;
    END IF;
    -- running workflow runs (their own copy of the definition) that call it
    SELECT count(*) INTO n FROM ductape.workflow_runs r
     WHERE r.state = 'running' AND (d_product IS NULL OR r.product = d_product)
       AND (d_app IS NULL OR EXISTS (
              SELECT FROM jsonb_array_elements(r.spec->'steps') s
               WHERE (s->>'type' = 'action' AND s->>'app' = d_app AND (d_action IS NULL OR s->>'action' = d_action))
                  OR (s->'compensate'->>'app' = d_app AND (d_action IS NULL OR s->'compensate'->>'action' = d_action))));
    IF n > 0 THEN
        RETURN QUERY SELECT 'runs', CASE WHEN n = 1 THEN '1 running workflow run uses it.'
                                         ELSE format('%s running workflow runs use it.', n) END, jsonb_build_object('count', n);
    END IF;
    -- jobs waiting to run (a running job finishes its attempt; a retry of
    -- it after the drop fails)
    SELECT count(*) INTO n FROM ductape.jobs j
     WHERE j.state IN ('scheduled', 'queued')
       AND (d_app IS NULL OR j.app = d_app) AND (d_action IS NULL OR j.action = d_action)
       AND (d_product IS NULL OR j.product = d_product);
    IF n > 0 THEN
        RETURN QUERY SELECT 'jobs', CASE WHEN n = 1 THEN '1 job that uses it is queued or scheduled.'
                                         ELSE format('%s jobs that use it are queued or scheduled.', n) END, jsonb_build_object('count', n);
    END IF;
END
$$;
COMMENT ON FUNCTION ductape._dependents(text, text, text) IS
    'What still uses an action, an app, a product or a connection: one line per dependent (the drop functions'' 2BP01 detail).';

-- Before a drop: refuse it when something depends on the object (2BP01),
-- or, with cascade, drop or cancel the dependents.  Run by the SECURITY
-- DEFINER drop implementations; an on_row trigger is dropped only when the
-- caller owns its table.
CREATE FUNCTION ductape._drop_dependents(d_app text, d_action text, d_product text, what text, cascade boolean)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    deps jsonb[];
    lines text[];
    total bigint;
    detail text;
    caller name := ductape._caller();
    reason text := format('cancelled: %s was dropped', what);
    d jsonb;
    rel record;
    runs bigint[];
BEGIN
    SELECT array_agg(x.dep_line ORDER BY x.ord), array_agg(jsonb_build_object('kind', x.dep_kind, 'ref', x.dep_ref) ORDER BY x.ord),
           sum(coalesce((x.dep_ref->>'count')::bigint, 1))
      INTO lines, deps, total
      FROM ductape._dependents(d_app, d_action, d_product) WITH ORDINALITY x(dep_kind, dep_line, dep_ref, ord);
    IF lines IS NULL THEN
        RETURN;
    END IF;
    detail := array_to_string(lines[1:20], E'\n')
              || CASE WHEN cardinality(lines) > 20 THEN format(E'\nand %s more.', cardinality(lines) - 20) ELSE '' END;
    IF NOT coalesce(cascade, false) THEN
        RAISE EXCEPTION USING ERRCODE = '2BP01',
            MESSAGE = format('cannot drop %s because other objects depend on it', what),
            DETAIL = detail,
            HINT = 'Pass cascade => true to drop or cancel them too, or remove them first.';
    END IF;
    RAISE NOTICE USING
        MESSAGE = CASE WHEN total = 1 THEN 'drop cascades to 1 other object'
                       ELSE format('drop cascades to %s other objects', total) END,
        DETAIL = detail;
    FOREACH d IN ARRAY deps LOOP
        CASE d->>'kind'
        WHEN 'trigger' THEN
            SELECT c.oid::regclass AS name, c.relowner INTO rel
              FROM pg_class c WHERE c.oid = (d->'ref'->>'table')::oid;
            IF NOT FOUND THEN
                CONTINUE;       -- its table was dropped since
            END IF;
            IF NOT pg_has_role(caller, rel.relowner, 'USAGE') THEN
                RAISE EXCEPTION USING ERRCODE = '42501',
                    MESSAGE = format('must be owner of table %s to drop its trigger "%s"', rel.name, d->'ref'->>'trigger'),
                    HINT = format('Its owner can drop the trigger; then drop %s again.', what);
            END IF;
            EXECUTE format('DROP TRIGGER %I ON %s', d->'ref'->>'trigger', rel.name);
        WHEN 'workflow' THEN
            DELETE FROM ductape.workflows w WHERE w.tag = d->'ref'->>'workflow';
        WHEN 'subscription' THEN
            DELETE FROM ductape.webhook_subscriptions s WHERE s.id = (d->'ref'->>'subscription')::bigint;
        WHEN 'webhook_url' THEN
            DELETE FROM ductape._webhook_tokens t WHERE t.token = d->'ref'->>'token';
        WHEN 'runs' THEN
            WITH cancelled AS (
                UPDATE ductape.workflow_runs r SET state = 'cancelled', advance = false, finished_at = now(), error = reason
                 WHERE r.state = 'running' AND (d_product IS NULL OR r.product = d_product)
                   AND (d_app IS NULL OR EXISTS (
                          SELECT FROM jsonb_array_elements(r.spec->'steps') s
                           WHERE (s->>'type' = 'action' AND s->>'app' = d_app AND (d_action IS NULL OR s->>'action' = d_action))
                              OR (s->'compensate'->>'app' = d_app AND (d_action IS NULL OR s->'compensate'->>'action' = d_action))))
                RETURNING r.id)
            SELECT array_agg(id) INTO runs FROM cancelled;
            UPDATE ductape.jobs j SET state = 'cancelled', finished_at = now(), error = reason
             WHERE j.state IN ('scheduled', 'queued')
               AND j.id IN (SELECT x.job_id FROM ductape.workflow_steps x WHERE x.run_id = ANY (runs) AND x.job_id IS NOT NULL);
            UPDATE ductape.workflow_steps x
               SET state = CASE WHEN x.state = 'pending' THEN 'skipped' ELSE 'failed' END::ductape.workflow_step_state,
                   error = CASE WHEN x.state = 'running' THEN reason END, finished_at = now()
             WHERE x.run_id = ANY (runs) AND x.state IN ('pending', 'running');
        WHEN 'jobs' THEN
            UPDATE ductape.jobs j SET state = 'cancelled', finished_at = now(), error = reason
             WHERE j.state IN ('scheduled', 'queued')
               AND (d_app IS NULL OR j.app = d_app) AND (d_action IS NULL OR j.action = d_action)
               AND (d_product IS NULL OR j.product = d_product);
        END CASE;
    END LOOP;
END
$$;
COMMENT ON FUNCTION ductape._drop_dependents(text, text, text, text, boolean) IS
    'Refuses a drop that other objects depend on (2BP01), or with cascade drops or cancels them; used by the drop functions.';

-- app_drop and action_drop learn their caller through the caller proxy
-- (src/gate.c, see 07_webhooks.sql): cascade drops an on_row trigger only
-- for the owner of its table.
CREATE FUNCTION ductape._app_drop(tag text, cascade boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM ductape._tag_arg(tag, 'app');
    PERFORM ductape._app_row(tag);
    PERFORM FROM ductape.apps a WHERE a.tag = _app_drop.tag FOR UPDATE;
    PERFORM ductape._drop_dependents(tag, NULL, NULL, format('app "%s"', tag), cascade);
    DELETE FROM ductape.apps a WHERE a.tag = _app_drop.tag;
END
$$;
COMMENT ON FUNCTION ductape._app_drop(text, boolean) IS
    'The implementation of ductape.app_drop, behind the caller proxy (granted to nobody).';

CREATE FUNCTION ductape.app_drop(tag text, cascade boolean) RETURNS void
LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_as_caller';
COMMENT ON FUNCTION ductape.app_drop(text, boolean) IS
    'Removes an app with its actions, connections, credentials, variable values and tokens; refused (2BP01) while workflows, triggers, jobs, runs, subscriptions or webhook URLs use it, unless cascade => true.';
-- The signature of the releases before (grants and dumps name it); no
-- default on cascade above, so that app_drop('x') is this one.
CREATE OR REPLACE FUNCTION ductape.app_drop(tag text) RETURNS void
LANGUAGE sql AS $$ SELECT ductape.app_drop(tag, false) $$;
COMMENT ON FUNCTION ductape.app_drop(text) IS
    'app_drop(tag, cascade => false): refused (2BP01) while something uses the app.';

CREATE FUNCTION ductape._action_drop(app text, action text, cascade boolean DEFAULT false) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    a ductape.apps;
BEGIN
    PERFORM ductape._tag_arg(app, 'app');
    PERFORM ductape._tag_arg(action, 'action');
    a := ductape._app_row(app);
    PERFORM FROM ductape.actions x WHERE x.app = a.tag AND x.tag = action FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '42704',
            MESSAGE = format('action "%s" of app "%s" does not exist', action, a.tag),
            HINT = format('Call ductape.describe(%L) to list its actions.', a.tag);
    END IF;
    PERFORM ductape._drop_dependents(a.tag, action, NULL, format('action "%s" of app "%s"', action, a.tag), cascade);
    DELETE FROM ductape.actions x WHERE x.app = a.tag AND x.tag = action;
END
$$;
COMMENT ON FUNCTION ductape._action_drop(text, text, boolean) IS
    'The implementation of ductape.action_drop, behind the caller proxy (granted to nobody).';

CREATE FUNCTION ductape.action_drop(app text, action text, cascade boolean DEFAULT false) RETURNS void
LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_as_caller';
COMMENT ON FUNCTION ductape.action_drop(text, text, boolean) IS
    'Removes one action of an app; refused (2BP01) while workflows, on_row triggers, queued jobs or running workflow runs use it, unless cascade => true.';

-- product_drop and product_disconnect learn their caller through the caller
-- proxy, as app_drop does (02_apps.sql): what uses the product or the
-- connection is refused or, with cascade, dropped or cancelled first.
-- The default product is never dropped: every app is usable under it.
CREATE FUNCTION ductape._product_drop(product text, cascade boolean DEFAULT false) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    p ductape.products;
BEGIN
    PERFORM ductape._tag_arg(product, 'product');
    IF product = 'default' THEN
        RAISE EXCEPTION USING ERRCODE = '55006',
            MESSAGE = 'product "default" cannot be dropped',
            DETAIL = 'Every app is usable under the default product, which is the default of the ductape.product setting.',
            HINT = 'Remove what it holds with ductape.config_unset, ductape.variable_unset and ductape.product_disconnect.';
    END IF;
    p := ductape._product_row(product);
    PERFORM FROM ductape.products x WHERE x.tag = p.tag FOR UPDATE;
    PERFORM ductape._drop_dependents(NULL, NULL, p.tag, format('product "%s"', p.tag), cascade);
    -- connections, credentials, variable values and OAuth2 tokens go with it
    DELETE FROM ductape.products x WHERE x.tag = p.tag;
END
$$;
COMMENT ON FUNCTION ductape._product_drop(text, boolean) IS
    'The implementation of ductape.product_drop, behind the caller proxy (granted to nobody).';

CREATE FUNCTION ductape.product_drop(product text, cascade boolean DEFAULT false) RETURNS void
LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_as_caller';
COMMENT ON FUNCTION ductape.product_drop(text, boolean) IS
    'Removes a product with its connections, credentials, variable values and OAuth2 tokens; refused (2BP01) while jobs, runs, on_row triggers or webhook URLs use it, unless cascade => true. The default product cannot be dropped (55006).';

CREATE FUNCTION ductape._product_disconnect(product text, app text, cascade boolean DEFAULT false) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    p ductape.products;
    a ductape.apps;
BEGIN
    PERFORM ductape._tag_arg(product, 'product');
    PERFORM ductape._tag_arg(app, 'app');
    p := ductape._product_row(product);
    a := ductape._app_row(app);
    PERFORM FROM ductape.product_apps x WHERE x.product = p.tag AND x.app = a.tag FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '42704',
            MESSAGE = format('app "%s" is not connected to product "%s"', a.tag, p.tag),
            HINT = 'See ductape.product_apps for the connections there are.';
    END IF;
    PERFORM ductape._drop_dependents(a.tag, NULL, p.tag,
                                     format('the connection of app "%s" to product "%s"', a.tag, p.tag), cascade);
    DELETE FROM ductape.product_apps x WHERE x.product = p.tag AND x.app = a.tag;
END
$$;
COMMENT ON FUNCTION ductape._product_disconnect(text, text, boolean) IS
    'The implementation of ductape.product_disconnect, behind the caller proxy (granted to nobody).';

CREATE FUNCTION ductape.product_disconnect(product text, app text, cascade boolean DEFAULT false) RETURNS void
LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_as_caller';
COMMENT ON FUNCTION ductape.product_disconnect(text, text, boolean) IS
    'Removes the connection of an app to a product (credentials and variable values stay); refused (2BP01) while jobs, runs, on_row triggers or webhook URLs use it, unless cascade => true.';

-- Remove the credentials of (product, app, env); NULL env and product are
-- the session's (ductape.env, ductape.product).  A job or call that runs
-- afterwards goes without them.
CREATE FUNCTION ductape.config_unset(app text, env text DEFAULT NULL, product text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    a ductape.apps := ductape._app_row(ductape._tag_arg(app, 'app'));
    p ductape.products := ductape._product_row(ductape._tag_arg(coalesce(product, current_setting('ductape.product')), 'product'));
    e text := ductape._product_env(p, ductape._tag_arg(coalesce(env, current_setting('ductape.env')), 'env'));
BEGIN
    DELETE FROM ductape.configs c WHERE c.product = p.tag AND c.app = a.tag AND c.env = e;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '42704',
            MESSAGE = format('app "%s" has no credentials for product "%s", env "%s"', a.tag, p.tag, e),
            HINT = 'See ductape.configs for the credentials there are.';
    END IF;
END
$$;
COMMENT ON FUNCTION ductape.config_unset(text, text, text) IS
    'Removes the credentials ductape.config stored for (product, app, env); NULL env and product are the session''s.';

-- Remove a variable's value for (product, app, env): the app's default, if
-- it declares one, applies again.
CREATE FUNCTION ductape.variable_unset(app text, key text, env text DEFAULT NULL, product text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    r ductape.apps := ductape._app_row(ductape._tag_arg(app, 'app'));
    p ductape.products := ductape._product_row(ductape._tag_arg(coalesce(product, current_setting('ductape.product')), 'product'));
    e text := ductape._product_env(p, ductape._tag_arg(coalesce(env, current_setting('ductape.env')), 'env'));
BEGIN
    IF key IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'variable key cannot be NULL';
    END IF;
    DELETE FROM ductape.variables v WHERE v.product = p.tag AND v.app = r.tag AND v.env = e AND v.key = key;
    IF NOT FOUND THEN
        IF NOT coalesce(r.spec->'variables', '{}') ? key THEN
            RAISE EXCEPTION USING ERRCODE = '42704',
                MESSAGE = format('variable "%s" is not declared by app "%s"', key, r.tag);
        END IF;
        RAISE EXCEPTION USING ERRCODE = '42704',
            MESSAGE = format('variable "%s" of app "%s" has no value for product "%s", env "%s"', key, r.tag, p.tag, e),
            HINT = 'See ductape.variables for the values there are.';
    END IF;
END
$$;
COMMENT ON FUNCTION ductape.variable_unset(text, text, text, text) IS
    'Removes the value ductape.variable_set stored for a variable in (product, app, env); NULL env and product are the session''s.';

-- Run a handled or failed event's handlers again: a failed event runs the
-- handlers that had not succeeded, a handled one every handler subscribed
-- now, each with a fresh retry schedule.  An event still waiting (received)
-- is the worker's: refused.
CREATE FUNCTION ductape.webhook_event_retry(id bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    e ductape.webhook_events;
BEGIN
    IF id IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'webhook event id cannot be NULL';
    END IF;
    SELECT * INTO e FROM ductape.webhook_events x WHERE x.id = id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '42704', MESSAGE = format('webhook event %s does not exist', id),
            HINT = 'See ductape.webhook_events for the events there are.';
    END IF;
    IF e.state = 'received' THEN
        RAISE EXCEPTION USING ERRCODE = '55006',
            MESSAGE = format('webhook event %s is still waiting to be handled', id),
            DETAIL = 'The worker runs its handlers (and retries them); only a handled or failed event can be retried.',
            HINT = 'Wait until its state is handled or failed.';
    END IF;
    IF e.state = 'handled' THEN
        e.handled_by := '{}';
    END IF;
    IF NOT EXISTS (SELECT FROM ductape.webhook_subscriptions s
                    WHERE s.app = e.app AND s.webhook = e.webhook
                      AND ductape._type_matches(e.event_type, s.event_type)
                      AND s.id <> ALL (e.handled_by)) THEN
        RAISE EXCEPTION USING ERRCODE = '55000',
            MESSAGE = format('webhook event %s has no handler to run', id),
            DETAIL = format('No subscription to webhook "%s" of app "%s" wants events "%s"%s.', e.webhook, e.app,
                            e.event_type, CASE WHEN e.state = 'failed' THEN ' that has not handled it yet' ELSE '' END),
            HINT = 'Subscribe a handler with ductape.webhook_subscribe first.';
    END IF;
    UPDATE ductape.webhook_events x
       SET state = 'received', attempts = 0, error = NULL, next_attempt_at = now(),
           handled_at = NULL, handled_by = e.handled_by
     WHERE x.id = id;
    PERFORM ductape._wake_worker();
END
$$;
COMMENT ON FUNCTION ductape.webhook_event_retry(bigint) IS
    'Runs a handled or failed inbound webhook event''s handlers again (a failed one: those that had not succeeded); refused (55006) while it waits to be handled.';

-- Remove a workflow; refused while runs of it are active.  (Nothing else
-- refers to a workflow; its finished runs keep their own copy of it.)
CREATE OR REPLACE FUNCTION ductape.workflow_drop(workflow text) RETURNS void
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

-- grant_* and revoke_* name only roles that exist ("public" is not PUBLIC).
-- A role named to grant_* or revoke_*: one that exists (42704), so that
-- "public" never means PUBLIC.
CREATE FUNCTION ductape._role_arg(role name) RETURNS oid
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r oid;
BEGIN
    IF role IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'role cannot be NULL';
    END IF;
    SELECT a.oid INTO r FROM pg_roles a WHERE a.rolname = role;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '42704', MESSAGE = format('role "%s" does not exist', role);
    END IF;
    RETURN r;
END
$$;
COMMENT ON FUNCTION ductape._role_arg(name) IS
    'Checks a role named to grant_* or revoke_*: it exists (42704; "public" is not PUBLIC); returns its oid.';

CREATE OR REPLACE FUNCTION ductape.grant_usage(role name) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ductape._role_arg(role);
    EXECUTE format('GRANT USAGE ON SCHEMA ductape TO %I', role);
    EXECUTE format('GRANT EXECUTE ON FUNCTION
        ductape.run(text, text, jsonb, text, text, jsonb),
        ductape.run_response(text, text, jsonb, text, text, jsonb),
        ductape.http(text, text, jsonb, jsonb, jsonb),
        ductape.describe(text, text),
        ductape.dispatch(text, text, jsonb, text, text, timestamptz, text, regprocedure, regprocedure, jsonb),
        ductape.job(bigint), ductape.wait(bigint, interval), ductape.cancel(bigint),
        ductape.retry(bigint), ductape.on_row(), ductape.publish(text, jsonb, text, text),
        ductape._stats(), ductape._limits(),
        ductape.workflow_start(text, jsonb, text, text, text), ductape.workflow_status(bigint),
        ductape.workflow_cancel(bigint), ductape.version() TO %I', role);
    EXECUTE format('GRANT SELECT ON ductape.calls, ductape.stats, ductape.limits, ductape.jobs, ductape.queue,
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
        ductape.app_drop(text, boolean),
        ductape.import_openapi(text, text, boolean, text), ductape.import_postman(jsonb, text, boolean),
        ductape.workflow_define(jsonb), ductape.workflow_drop(text),
        ductape.variable_set(text, text, jsonb, text, text),
        ductape.product_create(text, text, text[]), ductape.product_connect(text, text, jsonb),
        ductape.config(text, jsonb, text, text),
        ductape.action_drop(text, text, boolean), ductape.product_drop(text, boolean),
        ductape.product_disconnect(text, text, boolean), ductape.config_unset(text, text, text),
        ductape.variable_unset(text, text, text, text), ductape.webhook_event_retry(bigint),
        ductape.stats_reset(), ductape._stats_info(),
        ductape.secret_set(text, text, text, text[], text[], timestamptz),
        ductape.secret_get(text), ductape.secret_drop(text),
        ductape.oauth_set_tokens(text, text, text, integer, text, text),
        ductape.webhook_url(text, text, text, text),
        ductape.webhook_subscribe(text, text, text, regprocedure), ductape.webhook_unsubscribe(bigint),
        ductape.endpoint_create(text, text[], text, text, jsonb, text, integer),
        ductape.endpoint_update(bigint, text, text[], text, jsonb, integer), ductape.endpoint_secret(bigint),
        ductape.endpoint_rotate_secret(bigint), ductape.endpoint_disable(bigint),
        ductape.endpoint_enable(bigint), ductape.endpoint_delete(bigint),
        ductape.message_retry(text, bigint), ductape.health() TO %I', role);
    -- the definition checks are plain SQL run as the caller; not the
    -- implementations behind the caller proxy, nor the workflow engine.
    -- (Named here, not put back together from pg_proc: a new internal
    -- function is added to this list; sql/privileges.sql shows every one.)
    EXECUTE format('GRANT EXECUTE ON FUNCTION
        ductape._action_body(jsonb), ductape._app_row(text), ductape._catalog_changed(),
        ductape._check_action(jsonb, text, jsonb, jsonb), ductape._check_app(jsonb),
        ductape._check_auth(jsonb), ductape._check_int(jsonb, text, bigint, bigint),
        ductape._check_keys(jsonb, text, text[]), ductape._check_limits(jsonb, text),
        ductape._check_request_type(jsonb, text),
        ductape._check_retries(jsonb, text), ductape._check_step_call(jsonb, text),
        ductape._check_tag(jsonb, text, boolean), ductape._check_type(jsonb, text, text[]),
        ductape._check_webhook(jsonb, text, jsonb, jsonb), ductape._check_workflow(jsonb),
        ductape._condition_check(text, text), ductape._condition_eval(text, jsonb),
        ductape._deref(jsonb, jsonb, text), ductape._document_parse(text, text),
        ductape._drop_bad_patterns(jsonb, text[]), ductape._endpoint_check_url(text), ductape._endpoint_row(bigint),
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
        ductape._signature_standard(text, text, bigint, text), ductape._tag_arg(text, text),
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
    -- (an endpoint is changed with endpoint_update, which checks the change)
    EXECUTE format('GRANT SELECT ON ductape._webhook_tokens, ductape.webhook_subscriptions,
        ductape.endpoints, ductape.workflows, ductape.secrets TO %I', role);
END
$$;


-- revoke_usage and revoke_admin, like grant_usage and grant_admin, are
-- for the extension's owner and superusers (nobody is granted them).  They
-- refuse the roles revoking from would break ductape or do nothing for:
-- the extension's owner (ductape's own functions run as it) and
-- superusers (they bypass privileges).
CREATE FUNCTION ductape._revocable_role(role name) RETURNS oid
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r oid := ductape._role_arg(role);
BEGIN
    IF r = (SELECT e.extowner FROM pg_extension e WHERE e.extname = 'ductape') THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('cannot revoke ductape from role "%s": it owns the extension', role),
            DETAIL = 'ductape''s own functions and background workers act as the extension''s owner.';
    END IF;
    IF (SELECT a.rolsuper FROM pg_roles a WHERE a.oid = r) THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('cannot revoke ductape from role "%s": it is a superuser', role),
            DETAIL = 'A superuser bypasses every privilege check, so revoking would change nothing.',
            HINT = format('Take superuser away first (ALTER ROLE %I NOSUPERUSER).', role);
    END IF;
    RETURN r;
END
$$;
COMMENT ON FUNCTION ductape._revocable_role(name) IS
    'Checks a role named to revoke_usage or revoke_admin: it exists and is neither the extension''s owner nor a superuser.';

-- Take every privilege on ductape's schema and objects away from a role
-- (what grant_usage and grant_admin gave, and any other grant made on
-- them by their owner).  Its rows (jobs, calls, messages, events, runs)
-- stay; jobs it queued still run.  What it inherits from other roles stays.
CREATE FUNCTION ductape.revoke_usage(role name) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ductape._revocable_role(role);
    EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA ductape FROM %I', role);
    EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA ductape FROM %I', role);
    EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA ductape FROM %I', role);
    EXECUTE format('REVOKE ALL ON SCHEMA ductape FROM %I', role);
END
$$;
COMMENT ON FUNCTION ductape.revoke_usage(name) IS
    'Takes every ductape privilege away from a role (usage and admin); its rows stay. For the extension''s owner and superusers.';

-- Take the admin privileges away, keeping usage (when the role had it).
CREATE FUNCTION ductape.revoke_admin(role name) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    r oid := ductape._revocable_role(role);
    had_usage boolean;
BEGIN
    SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace n, pg_catalog.aclexplode(n.nspacl) x
                    WHERE n.nspname OPERATOR(pg_catalog.=) 'ductape' AND x.grantee OPERATOR(pg_catalog.=) r
                      AND x.privilege_type OPERATOR(pg_catalog.=) 'USAGE')
      INTO had_usage;
    PERFORM ductape.revoke_usage(role);
    IF had_usage THEN
        PERFORM ductape.grant_usage(role);
    END IF;
END
$$;
COMMENT ON FUNCTION ductape.revoke_admin(name) IS
    'Takes the admin privileges away from a role, keeping what grant_usage gives (when it had it). For the extension''s owner and superusers.';

-- Roles granted before: the functions 0.3.0 adds, each to the roles that
-- hold directly (not through a role they belong to) the privilege it goes
-- with: whoever may make a thing may now remove it; whoever reads
-- ductape.stats, the function behind it; whoever may read secrets (an
-- administrator), the counters' reset and health().  Nothing else: a role
-- granted a single function by hand gets no more than that function's
-- companion, and a member of an admin role gets nothing of its own.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        WITH pairs(held, kind, adds) AS (VALUES
            ('ductape.app_drop(text)', 'f', 'ductape.app_drop(text, boolean)'),
            ('ductape.action_define(text, jsonb)', 'f', 'ductape.action_drop(text, text, boolean)'),
            ('ductape.product_create(text, text, text[])', 'f', 'ductape.product_drop(text, boolean)'),
            ('ductape.product_connect(text, text, jsonb)', 'f', 'ductape.product_disconnect(text, text, boolean)'),
            ('ductape.config(text, jsonb, text, text)', 'f', 'ductape.config_unset(text, text, text)'),
            ('ductape.config(text, jsonb, text, text)', 'f', 'ductape._tag_arg(text, text)'),
            ('ductape.variable_set(text, text, jsonb, text, text)', 'f', 'ductape.variable_unset(text, text, text, text)'),
            ('ductape.variable_set(text, text, jsonb, text, text)', 'f', 'ductape._tag_arg(text, text)'),
            ('ductape.webhook_subscribe(text, text, text, regprocedure)', 'f', 'ductape.webhook_event_retry(bigint)'),
            ('ductape.secret_get(text)', 'f', 'ductape.stats_reset()'),
            ('ductape.secret_get(text)', 'f', 'ductape._stats_info()'),
            ('ductape.secret_get(text)', 'f', 'ductape.health()'),
            ('ductape.stats', 'r', 'ductape._stats()'))
        SELECT DISTINCT x.grantee::regrole AS role, p.adds
          FROM pairs p,
               LATERAL (SELECT f.proacl AS acl, f.proowner AS owner FROM pg_catalog.pg_proc f
                         WHERE p.kind = 'f' AND f.oid = p.held::regprocedure
                        UNION ALL
                        SELECT c.relacl, c.relowner FROM pg_catalog.pg_class c
                         WHERE p.kind = 'r' AND c.oid = p.held::regclass) o,
               pg_catalog.aclexplode(o.acl) x
         WHERE x.privilege_type IN ('EXECUTE', 'SELECT') AND x.grantee <> 0 AND x.grantee <> o.owner
         ORDER BY 1, 2
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s', r.adds, r.role);
    END LOOP;
END
$$;



-- ==== descriptions: COMMENT ON every object a user reads ====
-- (section: descriptions)

-- What \dx, \df+ and \d+ show: the extension (the same words as the
-- comment in ductape.control, which only a fresh CREATE EXTENSION applies),
-- the schema, and every function, table, view, column and type a user reads
-- or calls, as src/sql/ describes them.
COMMENT ON EXTENSION ductape IS
    'Third-party API integrations inside PostgreSQL: calls to defined apps, background jobs, '
    'inbound webhooks, signed outbound webhooks and durable workflows';
COMMENT ON SCHEMA ductape IS
    'ductape: third-party API integrations run from inside the database. Nothing here is '
    'granted to PUBLIC: ductape.grant_usage and ductape.grant_admin give roles what they need.';
COMMENT ON FUNCTION ductape.version() IS
    'Returns {"extension": ..., "library": ...}: the version of the installed SQL objects and '
    'of the loaded library, which differ after new binaries are installed until ALTER EXTENSION '
    'ductape UPDATE. Usage roles.';
COMMENT ON FUNCTION ductape._schema_validate(jsonb,jsonb) IS
    'Internal, for debugging: the violations of an instance against a JSON Schema, as run lists '
    'them (an empty array: valid). Admins.';
COMMENT ON TABLE ductape.apps IS
    'One row per app (an API described once: envs, auth, constants, variables, retries, '
    'webhooks); written by app_define, app_create, the importers and app_drop. Admins read and '
    'write it.';
COMMENT ON COLUMN ductape.apps.tag IS
    'The app''s name in every call: a tag (1 to 63 of a-z 0-9 _ . -).';
COMMENT ON COLUMN ductape.apps.name IS 'Display name, for people; NULL: none.';
COMMENT ON COLUMN ductape.apps.description IS 'What the API is, for people; NULL: none.';
COMMENT ON COLUMN ductape.apps.spec IS
    'The app spec without tag, name, description and actions (envs, auth, constants, variables, '
    'retries, timeout_ms, webhooks).';
COMMENT ON COLUMN ductape.apps.created_at IS 'When the app was first defined.';
COMMENT ON COLUMN ductape.apps.updated_at IS 'When the app was last defined or changed.';
COMMENT ON TABLE ductape.actions IS
    'One row per action (one API endpoint) of an app; written by app_define, action_define and '
    'the importers, removed with their app. Admins read and write it.';
COMMENT ON COLUMN ductape.actions.app IS 'The app the action belongs to.';
COMMENT ON COLUMN ductape.actions.tag IS 'The action''s name in calls, unique within the app.';
COMMENT ON COLUMN ductape.actions.position IS
    'Order of the action in the app spec; app_export keeps it.';
COMMENT ON COLUMN ductape.actions.spec IS
    'The action spec without its tag (method, resource, headers, query, body, input schema, '
    'retries, timeout_ms, success).';
COMMENT ON COLUMN ductape.actions.updated_at IS 'When the action was last defined.';
COMMENT ON FUNCTION ductape.app_define(jsonb) IS
    'Creates or replaces a whole app from its spec; afterwards the app has exactly the spec''s '
    'actions. Every problem of an invalid spec is listed at once (22023). Returns the app tag. '
    'Admins.';
COMMENT ON FUNCTION ductape.app_create(text,text,text) IS
    'Creates an empty app (no envs, no actions) with a tag, a name and a description, to fill '
    'with action_define or app_define; 42710 if it exists. Returns the tag. Admins.';
COMMENT ON FUNCTION ductape.action_define(text,jsonb) IS
    'Creates or replaces one action of an existing app (a new one goes last). Returns the '
    'action tag. Admins.';
COMMENT ON FUNCTION ductape.app_export(text) IS
    'Returns an app as the spec app_define accepts, its actions included: '
    'app_define(app_export(x)) changes nothing. Admins.';
COMMENT ON FUNCTION ductape.describe(text,text) IS
    'Describes an app (envs, declared variables, constant names, actions) or, given an action, '
    'its inputs (placement, type, whether required, an example) and an example call. Never '
    'shows constant values, auth or secrets. Usage roles.';
COMMENT ON TABLE ductape.products IS
    'One row per product (your application, with its own envs); the product default always '
    'exists. Written by product_create. Admins read and write it.';
COMMENT ON COLUMN ductape.products.tag IS
    'The product''s name, as in the product argument and ductape.product.';
COMMENT ON COLUMN ductape.products.name IS 'Display name, for people; NULL: none.';
COMMENT ON COLUMN ductape.products.envs IS
    'The product''s environments (tags), dev and prd by default.';
COMMENT ON COLUMN ductape.products.created_at IS 'When the product was created.';
COMMENT ON TABLE ductape.product_apps IS
    'One row per app connected to a product other than default; written by product_connect. '
    'Admins read and write it.';
COMMENT ON COLUMN ductape.product_apps.product IS 'The product the app is connected to.';
COMMENT ON COLUMN ductape.product_apps.app IS 'The app connected to the product.';
COMMENT ON COLUMN ductape.product_apps.env_map IS
    'JSON object mapping a product env to the app env it uses; an env missing from it uses the '
    'app env of the same name.';
COMMENT ON TABLE ductape.configs IS
    'Credentials applied to every call of an app in one (product, env); written by config. '
    'Admins read and write it.';
COMMENT ON COLUMN ductape.configs.product IS 'The product the credentials apply to.';
COMMENT ON COLUMN ductape.configs.app IS 'The app whose calls they apply to.';
COMMENT ON COLUMN ductape.configs.env IS 'The product env they apply to.';
COMMENT ON COLUMN ductape.configs.credentials IS
    'A flat-input object of templates (such as {"headers:Authorization": "Bearer $Secret{X}"}), '
    'stored as written, never resolved.';
COMMENT ON COLUMN ductape.configs.updated_at IS 'When it was last set.';
COMMENT ON TABLE ductape.variables IS
    'Values of the variables an app declares, per (product, app, env); written by variable_set, '
    'read by templates as $Variable{key}. Admins read and write it.';
COMMENT ON COLUMN ductape.variables.product IS 'The product the value applies to.';
COMMENT ON COLUMN ductape.variables.app IS 'The app that declares the variable.';
COMMENT ON COLUMN ductape.variables.env IS 'The product env the value applies to.';
COMMENT ON COLUMN ductape.variables.key IS 'The variable''s name, as the app declares it.';
COMMENT ON COLUMN ductape.variables.value IS 'Its value (any JSON, JSON null included).';
COMMENT ON COLUMN ductape.variables.updated_at IS 'When it was last set.';
COMMENT ON FUNCTION ductape.product_create(text,text,text[]) IS
    'Creates a product with a display name and its envs (dev and prd by default); 42710 if it '
    'exists. Returns the tag. Admins.';
COMMENT ON FUNCTION ductape.product_connect(text,text,jsonb) IS
    'Connects an app to a product, or maps it again; env_map is an object of product env to app '
    'env (NULL: each env maps to the app env of the same name). Admins.';
COMMENT ON FUNCTION ductape.config(text,jsonb,text,text) IS
    'Stores the credentials applied to every call of an app in (product, env): an object of '
    'templates such as {"headers:Authorization": "Bearer $Secret{X}"}, kept as written. NULL '
    'env or product: ductape.env, ductape.product. Admins.';
COMMENT ON FUNCTION ductape.variable_set(text,text,jsonb,text,text) IS
    'Sets the value of a variable the app declares, for (product, app, env); templates read it '
    'as $Variable{key}. A SQL NULL value is refused: use ''null''::jsonb. NULL env or product: '
    'ductape.env, ductape.product. Admins.';
COMMENT ON TABLE ductape._secrets IS
    'Internal storage of secrets, encrypted before they are written; read them through the '
    'secrets view. Written by secret_set and secret_drop; admins may read and write it.';
COMMENT ON COLUMN ductape._secrets.name IS 'The secret''s name, as in $Secret{NAME}.';
COMMENT ON COLUMN ductape._secrets.value IS
    'The value, encrypted with AES-256-GCM under the master key (nonce, ciphertext, tag), bound '
    'to the name; never the plaintext.';
COMMENT ON COLUMN ductape._secrets.key_version IS
    'The master key version that encrypted the value.';
COMMENT ON COLUMN ductape._secrets.description IS 'What the secret is, for people; NULL: none.';
COMMENT ON COLUMN ductape._secrets.apps IS 'The apps that may use it; NULL: any.';
COMMENT ON COLUMN ductape._secrets.envs IS 'The envs in which it may be used; NULL: any.';
COMMENT ON COLUMN ductape._secrets.expires_at IS 'From when it can no longer be used; NULL: never.';
COMMENT ON COLUMN ductape._secrets.created_at IS 'When it was first set.';
COMMENT ON COLUMN ductape._secrets.updated_at IS 'When it was last set.';
COMMENT ON TABLE ductape._oauth_tokens IS
    'Internal: the OAuth2 tokens of an app per (product, app, env), encrypted like secrets. '
    'Written by the worker and oauth_set_tokens; nobody is granted it.';
COMMENT ON COLUMN ductape._oauth_tokens.product IS 'The product the tokens are for.';
COMMENT ON COLUMN ductape._oauth_tokens.app IS 'The app the tokens are for.';
COMMENT ON COLUMN ductape._oauth_tokens.env IS 'The app env the tokens are for.';
COMMENT ON COLUMN ductape._oauth_tokens.access_token IS 'The access token, encrypted.';
COMMENT ON COLUMN ductape._oauth_tokens.refresh_token IS
    'The refresh token, encrypted; NULL: none.';
COMMENT ON COLUMN ductape._oauth_tokens.key_version IS
    'The master key version that encrypted the tokens.';
COMMENT ON COLUMN ductape._oauth_tokens.expires_at IS
    'When the access token expires; NULL: unknown.';
COMMENT ON COLUMN ductape._oauth_tokens.updated_at IS 'When the tokens were last stored.';
COMMENT ON VIEW ductape.secrets IS 'One row per secret, without its value. Admins.';
COMMENT ON COLUMN ductape.secrets.name IS 'The secret''s name, as in $Secret{NAME}.';
COMMENT ON COLUMN ductape.secrets.description IS 'What the secret is, for people; NULL: none.';
COMMENT ON COLUMN ductape.secrets.apps IS 'The apps that may use it; NULL: any.';
COMMENT ON COLUMN ductape.secrets.envs IS 'The envs in which it may be used; NULL: any.';
COMMENT ON COLUMN ductape.secrets.expires_at IS 'From when it can no longer be used; NULL: never.';
COMMENT ON COLUMN ductape.secrets.created_at IS 'When it was first set.';
COMMENT ON COLUMN ductape.secrets.updated_at IS 'When it was last set.';
COMMENT ON FUNCTION ductape.secret_set(text,text,text,text[],text[],timestamptz) IS
    'Creates or replaces a secret: name, value, description, the apps and envs that may use it '
    '(NULL: any) and an expiry (NULL: never). The value is encrypted before it is stored and '
    'never reaches a table or the server log. Admins.';
COMMENT ON FUNCTION ductape.secret_get(text) IS
    'Returns the decrypted value of a secret. Admins: being allowed to execute it is what makes '
    'a role an administrator for row-level security.';
COMMENT ON FUNCTION ductape.secret_drop(text) IS
    'Deletes a secret; 42704 if there is none by that name. Admins.';
COMMENT ON FUNCTION ductape.rotate_master_key() IS
    'Appends a new key version to the master key file and re-encrypts every secret, OAuth2 '
    'token and endpoint secret under it, in the current transaction. Returns how many values it '
    're-encrypted. Superusers only.';
COMMENT ON FUNCTION ductape.oauth_set_tokens(text,text,text,integer,text,text) IS
    'Stores OAuth2 tokens obtained elsewhere (an authorization-code flow) for (product, app, '
    'env), encrypted; expires_in in seconds, NULL: no expiry known. The app must use oauth2 '
    'auth. Admins.';
COMMENT ON FUNCTION ductape.run(text,text,jsonb,text,text,jsonb) IS
    'Calls an action and returns the response body: JSON as jsonb, other text as a JSON string, '
    'an empty body as null. Retries per the policy; raises DT000 for a non-success status, '
    'DT001 for a network failure or timeout. NULL env or product: ductape.env, ductape.product. '
    'Usage roles.';
COMMENT ON FUNCTION ductape.run_response(text,text,jsonb,text,text,jsonb) IS
    'Calls an action like run, but returns the envelope (status, headers, body, attempts, '
    'duration_ms, call_id, error) instead of raising for what the API or the network did. Usage '
    'roles.';
COMMENT ON FUNCTION ductape.http(text,text,jsonb,jsonb,jsonb) IS
    'Sends one ad hoc HTTP request without an app, under the egress policy with the default '
    'retry policy, and returns the envelope (status, headers, body, attempts, duration_ms, '
    'call_id, error). Usage roles.';
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
COMMENT ON TYPE ductape.job_state IS
    'State of a background job: scheduled (run_at in the future), queued (due, or waiting for '
    'its next retry), running, succeeded, failed (retries exhausted), cancelled.';
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
COMMENT ON VIEW ductape.queue IS
    'Per job state: how many jobs the reader can see, and the oldest; what a dashboard polls. '
    'Usage roles.';
COMMENT ON COLUMN ductape.queue.state IS 'The job state.';
COMMENT ON COLUMN ductape.queue.jobs IS 'Jobs in that state.';
COMMENT ON COLUMN ductape.queue.oldest_created_at IS 'When the oldest of them was dispatched.';
COMMENT ON COLUMN ductape.queue.oldest_age IS
    'How long the oldest has waited: for queued and scheduled jobs since it became due '
    '(negative while in the future), for the others since it was dispatched.';
COMMENT ON FUNCTION ductape.dispatch(text,text,jsonb,text,text,timestamptz,text,regprocedure,regprocedure,jsonb) IS
    'Queues an action call as a background job and returns its id; the worker sends it after '
    'the transaction commits (at run_at if given). A key the role used before returns that job. '
    'on_success and on_failure name functions of one jsonb run as the caller when the job ends. '
    'Usage roles.';
COMMENT ON FUNCTION ductape.on_row() IS
    'Trigger function: FOR EACH ROW EXECUTE FUNCTION ductape.on_row(app, action [, '
    'input_template [, env [, product]]]) dispatches one job per row written, with the row (or '
    'the template filled with $Row{col} and $Old{col}) as input. Usage roles.';
COMMENT ON FUNCTION ductape.job(bigint) IS
    'Returns a job as jsonb (id, app, action, env, product, state, attempts, next_attempt_at, '
    'response, error, created_at, finished_at); 42704 for a job the caller cannot see. Usage '
    'roles.';
COMMENT ON FUNCTION ductape.wait(bigint,interval) IS
    'Waits until a committed job finishes, or the timeout passes, and returns it as job() does. '
    'Usage roles.';
COMMENT ON FUNCTION ductape.cancel(bigint) IS
    'Cancels a scheduled or queued job (a running one is not interrupted); returns whether it '
    'did. Usage roles, for their own jobs; admins, for any.';
COMMENT ON FUNCTION ductape.retry(bigint) IS
    'Puts a failed or cancelled job back in the queue, due now, its attempts counted from 0 '
    'again; returns whether it did. Usage roles, for their own jobs; admins, for any.';
COMMENT ON TABLE ductape._webhook_tokens IS
    'The tokens of the webhook URLs webhook_url hands out, one per (product, app, webhook, '
    'env). Admins read it; only ductape writes it.';
COMMENT ON COLUMN ductape._webhook_tokens.token IS
    'The unguessable token (64 hex digits) at the end of the URL.';
COMMENT ON COLUMN ductape._webhook_tokens.product IS
    'The product events received through the URL belong to.';
COMMENT ON COLUMN ductape._webhook_tokens.app IS 'The app whose webhook the URL reaches.';
COMMENT ON COLUMN ductape._webhook_tokens.webhook IS 'The webhook, as the app spec names it.';
COMMENT ON COLUMN ductape._webhook_tokens.env IS 'The app env.';
COMMENT ON COLUMN ductape._webhook_tokens.role IS
    'The role that asked for the URL; events received through it belong to that role.';
COMMENT ON COLUMN ductape._webhook_tokens.created_at IS 'When the URL was first handed out.';
COMMENT ON TYPE ductape.webhook_state IS
    'State of an inbound webhook event: received (handlers to run), handled, failed (handlers '
    'failed for good).';
COMMENT ON TABLE ductape.webhook_events IS
    'One row per inbound webhook event, stored once (by event id) after its signature is '
    'verified and before the sender gets 200; the worker then runs the subscribed handlers. '
    'Usage roles see their own rows, admins all.';
COMMENT ON COLUMN ductape.webhook_events.id IS 'Event row id.';
COMMENT ON COLUMN ductape.webhook_events.app IS 'The app whose webhook received it.';
COMMENT ON COLUMN ductape.webhook_events.webhook IS 'The webhook, as the app spec names it.';
COMMENT ON COLUMN ductape.webhook_events.env IS 'The app env of the URL.';
COMMENT ON COLUMN ductape.webhook_events.product IS 'The product of the URL.';
COMMENT ON COLUMN ductape.webhook_events.event_id IS
    'The sender''s event id (the webhook''s id selector); a repeat is stored once. NULL: no id '
    'selector.';
COMMENT ON COLUMN ductape.webhook_events.event_type IS
    'The event type (the type selector), matched by subscriptions; NULL: no type selector.';
COMMENT ON COLUMN ductape.webhook_events.headers IS
    'The request headers as received, sensitive values redacted.';
COMMENT ON COLUMN ductape.webhook_events.payload IS 'The body, when it is JSON; NULL otherwise.';
COMMENT ON COLUMN ductape.webhook_events.body IS
    'The body as text, when it is not JSON; NULL otherwise.';
COMMENT ON COLUMN ductape.webhook_events.received_at IS 'When the listener received it.';
COMMENT ON COLUMN ductape.webhook_events.state IS 'received, handled or failed.';
COMMENT ON COLUMN ductape.webhook_events.attempts IS 'Rounds of handler runs so far.';
COMMENT ON COLUMN ductape.webhook_events.error IS
    'Why the last handler run failed; NULL: none failed.';
COMMENT ON COLUMN ductape.webhook_events.next_attempt_at IS 'When handlers run next.';
COMMENT ON COLUMN ductape.webhook_events.handled_by IS
    'Ids of the subscriptions whose handler succeeded for it.';
COMMENT ON COLUMN ductape.webhook_events.handled_at IS 'When it became handled; NULL until then.';
COMMENT ON COLUMN ductape.webhook_events.role IS
    'The role the URL belongs to (who asked for it); usage roles see the rows of their own '
    'role.';
COMMENT ON TABLE ductape.webhook_subscriptions IS
    'One row per handler subscribed to a webhook''s events; written by webhook_subscribe and '
    'webhook_unsubscribe only. Admins read it.';
COMMENT ON COLUMN ductape.webhook_subscriptions.id IS
    'The subscription id webhook_subscribe returns.';
COMMENT ON COLUMN ductape.webhook_subscriptions.app IS 'The app whose webhook it subscribes to.';
COMMENT ON COLUMN ductape.webhook_subscriptions.webhook IS 'The webhook, as the app spec names it.';
COMMENT ON COLUMN ductape.webhook_subscriptions.event_type IS
    'The event types it receives: exact, with * wildcards, or * for all.';
COMMENT ON COLUMN ductape.webhook_subscriptions.handler IS
    'The function of one jsonb run for each matching event.';
COMMENT ON COLUMN ductape.webhook_subscriptions.role IS
    'The role that subscribed; the handler runs as it.';
COMMENT ON COLUMN ductape.webhook_subscriptions.created_at IS 'When it was subscribed.';
COMMENT ON FUNCTION ductape._signature_check(jsonb,text,jsonb,text,timestamptz) IS
    'Internal, for debugging: checks a webhook signature as the listener does, with verify '
    'settings, secret, headers and body at a given time; returns verified, or why not. Admins.';
COMMENT ON FUNCTION ductape.webhook_url(text,text,text,text) IS
    'Returns the URL to give a webhook''s sender for (product, app, webhook, env): the '
    'listener''s address and an unguessable token, the same every time; events received there '
    'belong to the caller. Needs ductape.webhook_listen, in ductape.webhook_database. Admins.';
COMMENT ON FUNCTION ductape.webhook_subscribe(text,text,text,regprocedure) IS
    'Runs handler(event jsonb), as the caller, for each event of the webhook whose type matches '
    'event_type (exact, * wildcards). Returns the subscription id (the same one when subscribed '
    'before). Admins.';
COMMENT ON FUNCTION ductape.webhook_unsubscribe(bigint) IS
    'Removes a subscription: later events no longer reach its handler. Admins.';
COMMENT ON TABLE ductape.endpoints IS
    'One row per outbound webhook endpoint (a receiver of published messages); written by the '
    'endpoint_* functions and the worker, which disables an endpoint answering 410 or failing '
    'for 5 days. Admins read it and may update url, event_types, description and headers.';
COMMENT ON COLUMN ductape.endpoints.id IS 'The endpoint id endpoint_create returns.';
COMMENT ON COLUMN ductape.endpoints.url IS
    'Where messages are POSTed (http or https, under the egress policy).';
COMMENT ON COLUMN ductape.endpoints.event_types IS
    'The message types it receives: exact, or * patterns.';
COMMENT ON COLUMN ductape.endpoints.description IS 'Whose endpoint it is, for people; NULL: none.';
COMMENT ON COLUMN ductape.endpoints.headers IS 'Extra headers sent with every delivery.';
COMMENT ON COLUMN ductape.endpoints.secret IS
    'The signing secret, encrypted under the master key; endpoint_secret shows it.';
COMMENT ON COLUMN ductape.endpoints.key_version IS 'The master key version that encrypted secret.';
COMMENT ON COLUMN ductape.endpoints.previous_secret IS
    'The secret before the last rotation, encrypted; it also signs for 24 hours after '
    'rotated_at. NULL: none.';
COMMENT ON COLUMN ductape.endpoints.previous_key_version IS
    'The master key version that encrypted previous_secret.';
COMMENT ON COLUMN ductape.endpoints.rotated_at IS 'When the secret was last rotated; NULL: never.';
COMMENT ON COLUMN ductape.endpoints.enabled IS
    'Whether deliveries are made; a disabled endpoint keeps its pending ones.';
COMMENT ON COLUMN ductape.endpoints.disabled_reason IS
    'Why it is disabled (who disabled it, a 410, or 5 days of failures); NULL while enabled.';
COMMENT ON COLUMN ductape.endpoints.disabled_at IS 'When it was disabled; NULL while enabled.';
COMMENT ON COLUMN ductape.endpoints.failing_since IS
    'The first failure since the last success; NULL: not failing.';
COMMENT ON COLUMN ductape.endpoints.role IS 'The role that created it.';
COMMENT ON COLUMN ductape.endpoints.created_at IS 'When it was created.';
COMMENT ON TABLE ductape.messages IS
    'One row per published message (outbound event); written by publish, deleted once older '
    'than ductape.job_retention with nothing left to deliver. Usage roles see their own rows, '
    'admins all.';
COMMENT ON COLUMN ductape.messages.id IS
    'The message id (msg_ and 32 hex digits), sent as webhook-id on every attempt.';
COMMENT ON COLUMN ductape.messages.event_type IS
    'The event type, matched against the endpoints'' event_types.';
COMMENT ON COLUMN ductape.messages.payload IS 'The body sent.';
COMMENT ON COLUMN ductape.messages.idempotency_key IS
    'The publishing role''s key for it (unique per role); NULL: none given.';
COMMENT ON COLUMN ductape.messages.role IS
    'The role that published it; usage roles see the rows of their own role.';
COMMENT ON COLUMN ductape.messages.created_at IS 'When it was published.';
COMMENT ON TYPE ductape.outbox_state IS
    'State of one message''s delivery to one endpoint: pending, delivering, succeeded, failed '
    '(attempts exhausted).';
COMMENT ON TABLE ductape.outbox IS
    'One row per (message, endpoint) delivery to make; the worker sends it and retries it. '
    'Usage roles see their own rows, admins all.';
COMMENT ON COLUMN ductape.outbox.id IS 'Outbox row id.';
COMMENT ON COLUMN ductape.outbox.message_id IS 'The message to deliver (ductape.messages.id).';
COMMENT ON COLUMN ductape.outbox.endpoint_id IS
    'The endpoint to deliver it to (ductape.endpoints.id).';
COMMENT ON COLUMN ductape.outbox.state IS 'pending, delivering, succeeded or failed.';
COMMENT ON COLUMN ductape.outbox.attempts IS 'Attempts made so far.';
COMMENT ON COLUMN ductape.outbox.next_attempt_at IS 'When the next attempt is due.';
COMMENT ON COLUMN ductape.outbox.last_status IS
    'The HTTP status of the last attempt; NULL: no answer (or no attempt yet).';
COMMENT ON COLUMN ductape.outbox.last_error IS
    'Why the last attempt failed; NULL: it did not fail.';
COMMENT ON COLUMN ductape.outbox.role IS
    'The role that published the message; usage roles see the rows of their own role.';
COMMENT ON COLUMN ductape.outbox.created_at IS 'When the delivery was queued.';
COMMENT ON COLUMN ductape.outbox.finished_at IS
    'When it succeeded or failed for good; NULL until then.';
COMMENT ON TABLE ductape.deliveries IS
    'One row per delivery attempt of a message to an endpoint, written when the attempt ends. '
    'Usage roles see their own rows, admins all.';
COMMENT ON COLUMN ductape.deliveries.id IS 'Attempt row id.';
COMMENT ON COLUMN ductape.deliveries.message_id IS 'The message sent (ductape.messages.id).';
COMMENT ON COLUMN ductape.deliveries.endpoint_id IS
    'The endpoint it was sent to (ductape.endpoints.id).';
COMMENT ON COLUMN ductape.deliveries.attempt IS 'Which attempt it was (1 for the first).';
COMMENT ON COLUMN ductape.deliveries.at IS 'When the attempt was sent.';
COMMENT ON COLUMN ductape.deliveries.status IS 'The HTTP status; NULL: no response.';
COMMENT ON COLUMN ductape.deliveries.duration_ms IS 'Milliseconds the attempt took.';
COMMENT ON COLUMN ductape.deliveries.response IS 'The first 1 kB of the response body; NULL: none.';
COMMENT ON COLUMN ductape.deliveries.error IS 'Why the attempt failed; NULL: it succeeded.';
COMMENT ON COLUMN ductape.deliveries.succeeded IS 'Whether the endpoint answered 2xx in time.';
COMMENT ON COLUMN ductape.deliveries.next_attempt_at IS 'When it is tried again; NULL: it is not.';
COMMENT ON COLUMN ductape.deliveries.role IS
    'The role that published the message; usage roles see the rows of their own role.';
COMMENT ON FUNCTION ductape.endpoint_create(text,text[],text,text,jsonb) IS
    'Registers an outbound webhook endpoint: url, the event types it receives (exact or * '
    'patterns), its signing secret (whsec_ and base64; NULL: generated), a description and '
    'extra headers. Returns its id. Admins.';
COMMENT ON FUNCTION ductape.endpoint_secret(bigint) IS
    'Returns the current signing secret of an endpoint (whsec_...), to give its owner. Admins.';
COMMENT ON FUNCTION ductape.endpoint_rotate_secret(bigint) IS
    'Generates and returns a new signing secret; the previous one also signs for 24 hours. '
    'Admins.';
COMMENT ON FUNCTION ductape.endpoint_disable(bigint) IS
    'Stops deliveries to an endpoint: its pending deliveries wait, and messages published '
    'meanwhile are not sent to it. Admins.';
COMMENT ON FUNCTION ductape.endpoint_enable(bigint) IS
    'Resumes deliveries to a disabled endpoint and restarts its 5-day failure clock. Admins.';
COMMENT ON FUNCTION ductape.endpoint_delete(bigint) IS
    'Removes an endpoint and its pending deliveries; the recorded attempts stay in '
    'ductape.deliveries. Admins.';
COMMENT ON FUNCTION ductape.publish(text,jsonb,text) IS
    'Publishes a message in the caller''s transaction to every enabled endpoint whose types '
    'match; the worker delivers it after commit, signed the Standard Webhooks way. Returns the '
    'message id; a key the role used before returns that message. Usage roles.';
COMMENT ON FUNCTION ductape.message_retry(text,bigint) IS
    'Sends a message again with a fresh schedule, to one endpoint or (NULL) to every enabled '
    'endpoint that matches; returns how many deliveries it queued. Admins.';
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
COMMENT ON FUNCTION ductape.workflow_define(jsonb) IS
    'Creates or replaces a workflow definition and records the caller as its definer, whose '
    'rights its sql steps run with. Every problem is listed at once (22023). Returns the tag. '
    'Admins.';
COMMENT ON FUNCTION ductape.workflow_drop(text) IS
    'Removes a workflow definition; refused (55006) while runs of it are running. Admins.';
COMMENT ON TYPE ductape.workflow_state IS
    'State of a workflow run: running, completed, failed, rolled_back (compensated after a '
    'failed step), cancelled.';
COMMENT ON TYPE ductape.workflow_step_state IS
    'State of a step of a workflow run: pending, running, completed, failed, skipped, '
    'rolled_back (its compensation ran).';
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
COMMENT ON FUNCTION ductape.workflow_start(text,jsonb,text,text,text) IS
    'Starts a run of a workflow with an input object and returns its id; the worker begins once '
    'the transaction commits. The run belongs to the caller and keeps a copy of the definition; '
    'a key the role used before returns that run. Usage roles.';
COMMENT ON FUNCTION ductape.workflow_status(bigint) IS
    'Returns a run as jsonb (state, output, error, times and its steps); NULL for a run that '
    'does not exist or that the caller cannot see. Usage roles.';
COMMENT ON FUNCTION ductape.workflow_cancel(bigint) IS
    'Stops a running run of the caller''s: queued step jobs are cancelled, pending steps '
    'skipped, and no compensation runs. Returns false if it was not running or not the '
    'caller''s. Usage roles.';
COMMENT ON FUNCTION ductape.import_openapi(text,text,boolean,text) IS
    'Creates an app from an OpenAPI 3.0 or 3.1 document (JSON or YAML): one action per '
    'operation, envs from its servers or base_url, auth as $Secret templates. Returns the tag; '
    'update_if_exists replaces the actions of an existing app. Admins.';
COMMENT ON FUNCTION ductape.import_postman(jsonb,text,boolean) IS
    'Creates an app from a Postman v2.1 collection: one action per request, credentials as '
    '$Secret templates (their values are never stored). Returns the tag; update_if_exists '
    'replaces the actions of an existing app. Admins.';
COMMENT ON FUNCTION ductape.grant_usage(name) IS
    'Grants a role what an application needs: calls, jobs, publishing, workflow runs, describe, '
    'version, and reading its own rows of calls, jobs, webhook events, messages, deliveries and '
    'runs. Superusers.';
COMMENT ON FUNCTION ductape.grant_admin(name) IS
    'Grants a role usage plus defining apps, products, config, variables, secrets, OAuth2 '
    'tokens, webhooks, endpoints and workflows; such a role reads every row. Superusers.';



-- ==== every function written in SQL or PL/pgSQL runs with search_path pinned ====
-- A function that runs with its caller's search_path can be made to call an
-- object of the caller's schemas instead of the built-in it means (a
-- format(text, name) in public is a better match than pg_catalog's
-- format(text, VARIADIC "any")): a superuser calling grant_usage with the
-- default search_path ran a database owner's code.  The two left out are
-- inlined into the fan-out queries (a SET would keep them from being
-- inlined) and call only built-ins that match their arguments exactly.
DO $$
DECLARE
    f pg_catalog.regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_catalog.pg_proc p
              WHERE p.pronamespace OPERATOR(pg_catalog.=) 'ductape'::pg_catalog.regnamespace
                AND p.prolang OPERATOR(pg_catalog.<>) (SELECT l.oid FROM pg_catalog.pg_language l WHERE l.lanname OPERATOR(pg_catalog.=) 'c')
                AND NOT EXISTS (SELECT FROM pg_catalog.unnest(p.proconfig) c WHERE c OPERATOR(pg_catalog.~~) 'search_path=%')
                AND p.oid OPERATOR(pg_catalog.<>) ALL (ARRAY['ductape._type_matches(text, text)'::pg_catalog.regprocedure,
                                                             'ductape._endpoint_wants(text[], text)'::pg_catalog.regprocedure])
              ORDER BY p.oid
    LOOP
        EXECUTE pg_catalog.format('ALTER FUNCTION %s SET search_path = pg_catalog, pg_temp', f);
    END LOOP;
END
$$;

-- An upgrade script's GRANTs and REVOKEs are recorded as the objects'
-- initial privileges (pg_init_privs), and with them every role the
-- database had granted ductape to by then; pg_dump leaves initial
-- privileges out of a dump, so a database updated and then dumped lost its
-- roles' ductape privileges on restore.  Every upgrade script ends by
-- calling this: of what the scripts recorded, keep what a fresh install
-- records (the owner's privileges and PUBLIC's), forget the roles'.
CREATE FUNCTION ductape._forget_granted_initial_privileges() RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
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

-- ==== tenants: endpoints and messages of one customer; endpoint_update ====
-- (section: tenants)

-- Endpoints and messages gain a tenant (a customer of the team: fan-out
-- stays within one tenant) and endpoints a rate limit and who changed them
-- last (endpoint_update).  Columns appended, as in 08_events.sql.
ALTER TABLE ductape.endpoints ADD COLUMN tenant text,
    ADD COLUMN rate_limit integer CONSTRAINT endpoints_rate_limit_check CHECK (rate_limit > 0),
    ADD COLUMN updated_by name, ADD COLUMN updated_at timestamptz;
ALTER TABLE ductape.messages ADD COLUMN tenant text;
COMMENT ON TABLE ductape.endpoints IS
    'One row per outbound webhook endpoint (a receiver of published messages); written by the '
    'endpoint_* functions and the worker, which disables an endpoint answering 410 or failing '
    'for 5 days. Admins read it; endpoint_update changes it.';
COMMENT ON COLUMN ductape.endpoints.tenant IS
    'The customer it belongs to: it receives only the messages published for this tenant; NULL: '
    'none (it receives the messages published without a tenant). Fixed at creation.';
COMMENT ON COLUMN ductape.endpoints.rate_limit IS
    'At most this many deliveries per second to it (the rest wait their turn); NULL: no limit.';
COMMENT ON COLUMN ductape.endpoints.updated_by IS
    'The role that last changed it with endpoint_update; NULL: never changed.';
COMMENT ON COLUMN ductape.endpoints.updated_at IS
    'When endpoint_update last changed it; NULL: never changed.';
COMMENT ON COLUMN ductape.messages.tenant IS
    'The tenant it was published for: only that tenant''s endpoints receive it; NULL: none '
    '(only endpoints without a tenant receive it).';
CREATE INDEX endpoints_tenant_idx ON ductape.endpoints (tenant) WHERE enabled;

-- Admins change endpoints with endpoint_update only: the column UPDATE
-- 0.2.0 gave them (grant_admin) let them set headers and URLs past the
-- checks.  Taken from every role that holds it; row security refuses it
-- where a restored dump grants it again.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT DISTINCT x.grantee::regrole AS role, a.attname
               FROM pg_catalog.pg_attribute a, pg_catalog.aclexplode(a.attacl) x
              WHERE a.attrelid = 'ductape.endpoints'::regclass AND x.privilege_type = 'UPDATE'
                AND x.grantee <> 0 AND x.grantee <> (SELECT c.relowner FROM pg_catalog.pg_class c
                                                      WHERE c.oid = 'ductape.endpoints'::regclass)
              ORDER BY 1, 2
    LOOP
        EXECUTE pg_catalog.format('REVOKE UPDATE (%I) ON ductape.endpoints FROM %s', r.attname, r.role);
    END LOOP;
END
$$;
ALTER TABLE ductape.endpoints ENABLE ROW LEVEL SECURITY;
CREATE POLICY endpoints_read ON ductape.endpoints FOR SELECT USING (true);

-- Tenant names, and the endpoint checks shared by endpoint_create and
-- endpoint_update (with the tenant and the rate limit now).
CREATE FUNCTION ductape._tenant_check(tenant text) RETURNS text
LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_tenant_check';
DROP FUNCTION ductape._endpoint_check(text, text[], jsonb);
CREATE FUNCTION ductape._endpoint_check(url text, event_types text[], headers jsonb,
                                        tenant text, rate_limit integer) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    k text;
    v jsonb;
BEGIN
    IF url IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'endpoint url cannot be NULL';
    END IF;
    PERFORM ductape._endpoint_check_url(url);
    IF event_types IS NULL OR cardinality(event_types) = 0
       OR EXISTS (SELECT FROM unnest(event_types) t WHERE coalesce(t, '') = '') THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'event_types must list at least one non-empty type',
            HINT = 'Use exact types such as ''invoice.paid'', patterns such as ''invoice.*'', or ''{*}'' for all.';
    END IF;
    IF headers IS NULL OR jsonb_typeof(headers) <> 'object' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'endpoint headers must be a JSON object';
    END IF;
    FOR k, v IN SELECT * FROM jsonb_each(headers) LOOP
        IF jsonb_typeof(v) <> 'string' THEN
            RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('endpoint header %s must be a string', k);
        END IF;
        IF k !~ '^[A-Za-z0-9!#$%&''*+.^_`|~-]+$' OR (v #>> '{}') ~ '[\r\n]' THEN
            RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('invalid endpoint header %s', k),
                DETAIL = 'Header names are HTTP tokens, and values cannot contain CR or LF.';
        END IF;
        IF lower(k) IN ('webhook-id', 'webhook-timestamp', 'webhook-signature', 'content-type', 'content-length', 'host') THEN
            RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('endpoint header %s is set by ductape', k);
        END IF;
    END LOOP;
    PERFORM ductape._tenant_check(tenant);
    IF rate_limit NOT BETWEEN 1 AND 100000 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('endpoint rate_limit %s is out of range', rate_limit),
            DETAIL = 'A rate limit is 1 to 100000 deliveries per second.',
            HINT = 'NULL sets no limit; endpoint_update removes one with rate_limit => 0.';
    END IF;
END
$$;

-- endpoint_create and publish take a tenant (endpoint_create a rate limit
-- too): the new forms are made next to the old ones, given to every role
-- that holds an old one directly (endpoint_update goes with
-- endpoint_create), and the old ones dropped.
DROP FUNCTION ductape._endpoint_create(text, text[], text, text, jsonb);
CREATE FUNCTION ductape._endpoint_create(url text, event_types text[] DEFAULT '{*}', secret text DEFAULT NULL,
                                        description text DEFAULT NULL, headers jsonb DEFAULT '{}',
                                        tenant text DEFAULT NULL, rate_limit integer DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    eid bigint;
    sealed record;
BEGIN
    PERFORM ductape._endpoint_check(url, event_types, headers, tenant, rate_limit);
    eid := nextval(pg_get_serial_sequence('ductape.endpoints', 'id'));
    sealed := ductape._endpoint_seal(eid, secret);
    INSERT INTO ductape.endpoints (id, url, event_types, description, headers, secret, key_version, role,
                                   tenant, rate_limit)
    VALUES (eid, url, event_types, description, headers, sealed.value, sealed.key_version, ductape._caller(),
            tenant, rate_limit);
    RETURN eid;
END
$$;

CREATE FUNCTION ductape.endpoint_create(url text, event_types text[] DEFAULT '{*}', secret text DEFAULT NULL,
                                        description text DEFAULT NULL, headers jsonb DEFAULT '{}',
                                        tenant text DEFAULT NULL, rate_limit integer DEFAULT NULL)
RETURNS bigint LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_as_caller_hidden';
COMMENT ON FUNCTION ductape.endpoint_create(text,text[],text,text,jsonb,text,integer) IS
    'Registers an outbound webhook endpoint: url, the event types it receives (exact or * '
    'patterns), its signing secret (whsec_ and base64; NULL: generated), a description, extra '
    'headers, the tenant whose messages it receives (NULL: none, fixed) and a rate limit in '
    'deliveries per second (NULL: none). Returns its id. Admins.';

CREATE FUNCTION ductape._endpoint_update(id bigint, url text DEFAULT NULL, event_types text[] DEFAULT NULL,
                                        description text DEFAULT NULL, headers jsonb DEFAULT NULL,
                                        rate_limit integer DEFAULT NULL)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    e ductape.endpoints := ductape._endpoint_row(id);
BEGIN
    e.url := coalesce(url, e.url);
    e.event_types := coalesce(event_types, e.event_types);
    e.description := CASE WHEN description IS NULL THEN e.description ELSE nullif(description, '') END;
    e.headers := coalesce(headers, e.headers);
    e.rate_limit := CASE WHEN rate_limit IS NULL THEN e.rate_limit ELSE nullif(rate_limit, 0) END;
    PERFORM ductape._endpoint_check(e.url, e.event_types, e.headers, e.tenant, e.rate_limit);
    UPDATE ductape.endpoints SET url = e.url, event_types = e.event_types, description = e.description,
           headers = e.headers, rate_limit = e.rate_limit, updated_by = ductape._caller(), updated_at = now()
     WHERE endpoints.id = id;
END
$$;

CREATE FUNCTION ductape.endpoint_update(id bigint, url text DEFAULT NULL, event_types text[] DEFAULT NULL,
                                        description text DEFAULT NULL, headers jsonb DEFAULT NULL,
                                        rate_limit integer DEFAULT NULL)
RETURNS void LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_as_caller_hidden';
COMMENT ON FUNCTION ductape.endpoint_update(bigint,text,text[],text,jsonb,integer) IS
    'Changes an endpoint''s url, event types, description, headers (the whole set) or rate limit; '
    'NULL leaves a field as it is, description '''' clears it and rate_limit 0 removes the limit. '
    'Checked as endpoint_create checks; the tenant cannot change. Records who changed it. Admins.';

CREATE FUNCTION ductape.publish(event_type text, payload jsonb, idempotency_key text DEFAULT NULL,
                                tenant text DEFAULT NULL)
RETURNS text LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_publish';
COMMENT ON FUNCTION ductape.publish(text,jsonb,text,text) IS
    'Publishes a message in the caller''s transaction to every enabled endpoint of the same '
    'tenant (NULL: the endpoints without one) whose types match; the worker delivers it after '
    'commit, signed the Standard Webhooks way. Returns the message id; a key the role used '
    'before returns that message (refused for another tenant). Usage roles.';

DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        WITH pairs(held, adds) AS (VALUES
            ('ductape.endpoint_create(text, text[], text, text, jsonb)',
             'ductape.endpoint_create(text, text[], text, text, jsonb, text, integer)'),
            ('ductape.endpoint_create(text, text[], text, text, jsonb)',
             'ductape.endpoint_update(bigint, text, text[], text, jsonb, integer)'),
            ('ductape.publish(text, jsonb, text)', 'ductape.publish(text, jsonb, text, text)'))
        SELECT DISTINCT x.grantee::regrole AS role, p.adds
          FROM pairs p, pg_catalog.pg_proc f, pg_catalog.aclexplode(f.proacl) x
         WHERE f.oid = p.held::regprocedure AND x.privilege_type = 'EXECUTE'
           AND x.grantee <> 0 AND x.grantee <> f.proowner
         ORDER BY 1, 2
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s', r.adds, r.role);
    END LOOP;
END
$$;
DROP FUNCTION ductape.endpoint_create(text, text[], text, text, jsonb);
DROP FUNCTION ductape.publish(text, jsonb, text);

-- Retries and ductape's operational messages stay within a tenant too.
CREATE OR REPLACE FUNCTION ductape.message_retry(message_id text, endpoint_id bigint DEFAULT NULL)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    m ductape.messages;
    ep ductape.endpoints;
    n integer;
BEGIN
    SELECT * INTO m FROM ductape.messages WHERE id = message_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '42704', MESSAGE = format('message %s does not exist', message_id);
    END IF;
    IF endpoint_id IS NOT NULL THEN
        ep := ductape._endpoint_row(endpoint_id);
        IF ep.tenant IS DISTINCT FROM m.tenant THEN
            RAISE EXCEPTION USING ERRCODE = '22023',
                MESSAGE = format('endpoint %s is not an endpoint of the tenant of message %s', endpoint_id, message_id),
                DETAIL = format('The message was published for %s; the endpoint belongs to %s.',
                                CASE WHEN m.tenant IS NULL THEN 'no tenant' ELSE format('tenant "%s"', m.tenant) END,
                                CASE WHEN ep.tenant IS NULL THEN 'no tenant' ELSE format('tenant "%s"', ep.tenant) END),
                HINT = 'A message goes only to endpoints of the tenant it was published for.';
        END IF;
    END IF;
    INSERT INTO ductape.outbox AS o (message_id, endpoint_id, role)
    SELECT m.id, e.id, m.role FROM ductape.endpoints e
     WHERE e.tenant IS NOT DISTINCT FROM m.tenant
       AND CASE WHEN endpoint_id IS NULL
                THEN e.enabled AND ductape._endpoint_wants(e.event_types, m.event_type)
                ELSE e.id = endpoint_id END
    ON CONFLICT ON CONSTRAINT outbox_message_endpoint DO UPDATE
       SET state = 'pending', attempts = 0, next_attempt_at = now(), finished_at = NULL
     WHERE o.state IN ('succeeded', 'failed');
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM ductape._wake_worker();
    END IF;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ductape.message_retry(text,bigint) IS
    'Sends a message again with a fresh schedule, to one endpoint or (NULL) to every enabled '
    'endpoint that matches, of the message''s tenant only; returns how many deliveries it '
    'queued. Admins.';

CREATE OR REPLACE FUNCTION ductape._alert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    kind text;
    object text;
    reason text;
    payload jsonb;
    event_type text;
    msg_id text;
BEGIN
    IF TG_TABLE_SCHEMA <> 'ductape' OR TG_OP <> 'UPDATE' OR TG_LEVEL <> 'ROW' OR TG_WHEN <> 'AFTER'
       OR TG_TABLE_NAME NOT IN ('endpoints', 'jobs', 'webhook_events', 'workflow_runs') THEN
        RAISE EXCEPTION USING ERRCODE = '39P01',
            MESSAGE = format('ductape._alert() cannot be used by trigger %s on %I.%I', TG_NAME, TG_TABLE_SCHEMA, TG_TABLE_NAME),
            DETAIL = 'It fires AFTER UPDATE FOR EACH ROW on ductape.endpoints, jobs, webhook_events and workflow_runs only.';
    END IF;
    CASE TG_TABLE_NAME
    WHEN 'endpoints' THEN
        kind := 'endpoint.disabled';
        object := 'endpoint';
        reason := CASE WHEN NEW.disabled_reason = 'the endpoint answered 410 Gone' THEN 'answered 410 Gone'
                       WHEN starts_with(NEW.disabled_reason, 'failing continuously since ') THEN 'failing for 5 days'
                       WHEN starts_with(NEW.disabled_reason, 'disabled by ') THEN 'disabled by an administrator'
                       ELSE 'disabled' END;
    WHEN 'jobs' THEN
        kind := 'job.failed';
        object := 'job';
        reason := format('%s after %s attempt%s',
                         CASE WHEN NEW.error ~ '^HTTP [0-9]{3}$' THEN NEW.error ELSE 'no HTTP status' END,
                         NEW.attempts, CASE WHEN NEW.attempts = 1 THEN '' ELSE 's' END);
    WHEN 'webhook_events' THEN
        kind := 'webhook_event.failed';
        object := 'webhook_event';
        reason := format('handlers failed %s time%s', NEW.attempts, CASE WHEN NEW.attempts = 1 THEN '' ELSE 's' END);
    WHEN 'workflow_runs' THEN
        kind := 'workflow.failed';
        object := 'workflow_run';
        reason := CASE WHEN NEW.state = 'rolled_back' THEN 'a step failed; rolled back'
                       WHEN starts_with(NEW.error, 'compensation of step ') THEN 'a compensation failed'
                       WHEN starts_with(NEW.error, 'output: ') THEN 'the output template failed'
                       WHEN starts_with(NEW.error, 'the workflow engine failed') THEN 'the workflow engine failed'
                       ELSE 'failed' END;
    END CASE;
    payload := jsonb_build_object('kind', kind, 'object', jsonb_build_object('type', object, 'id', NEW.id),
                                  'reason', reason, 'at', clock_timestamp(), 'database', current_database());
    PERFORM pg_notify('ductape_alerts', payload::text);

    -- the operational message, when an endpoint wants it (one scan of the
    -- endpoints, usually a handful of rows, when nobody does): the team's
    -- own endpoints only, those without a tenant (a customer's endpoint
    -- never hears of the team's failures), and the message has no tenant
    event_type := 'ductape.' || kind;
    IF EXISTS (SELECT FROM ductape.endpoints e
                WHERE e.enabled AND e.tenant IS NULL AND ductape._endpoint_wants(e.event_types, event_type)) THEN
        msg_id := 'msg_' || replace(gen_random_uuid()::text, '-', '');
        INSERT INTO ductape.messages (id, event_type, payload, role, tenant)
        VALUES (msg_id, event_type, payload, current_user, NULL);
        INSERT INTO ductape.outbox (message_id, endpoint_id, role)
        SELECT msg_id, e.id, current_user FROM ductape.endpoints e
         WHERE e.enabled AND e.tenant IS NULL AND ductape._endpoint_wants(e.event_types, event_type);
        PERFORM ductape._wake_worker();
    END IF;
    RETURN NULL;
END
$$;



-- ==== limits: flow control in shared memory ====
-- (section: limits)

-- The "limits" of an app or env (flow control), by the library's rules,
-- which the request builder reads them with.
CREATE FUNCTION ductape._check_limits(l jsonb, path text)
RETURNS text[] AS 'MODULE_PATHNAME', 'dt_check_limits' LANGUAGE c IMMUTABLE;
COMMENT ON FUNCTION ductape._check_limits(jsonb, text) IS
    'The problems of the "limits" of an app or env (rate, per, burst, concurrency, max_wait_ms), as /json/pointer: reason strings.';

-- apps and envs may declare "limits"
CREATE OR REPLACE FUNCTION ductape._check_app(spec jsonb)
RETURNS text[] LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    errs text[] := '{}';
    e jsonb;
    i integer := 0;
    k text;
    tags text[] := '{}';
    constants jsonb := spec->'constants';
    variables jsonb := spec->'variables';
BEGIN
    IF jsonb_typeof(spec) IS DISTINCT FROM 'object' THEN
        RETURN ARRAY['/: an app spec must be a JSON object'];
    END IF;
    errs := errs || ductape._check_keys(spec, '', '{tag,name,description,envs,constants,variables,auth,retries,timeout_ms,idempotency_header,limits,actions,webhooks}');
    errs := errs || ductape._check_tag(spec->'tag', '/tag');
    errs := errs || ductape._check_type(spec->'name', '/name', '{string}');
    errs := errs || ductape._check_type(spec->'description', '/description', '{string}');
    errs := errs || ductape._check_type(spec->'constants', '/constants', '{object}');
    errs := errs || ductape._check_type(spec->'variables', '/variables', '{object}');
    errs := errs || ductape._check_type(spec->'auth', '/auth', '{object}');
    errs := errs || ductape._check_type(spec->'webhooks', '/webhooks', '{array}');
    errs := errs || ductape._check_int(spec->'timeout_ms', '/timeout_ms', 1, 86400000);
    errs := errs || ductape._check_retries(spec->'retries', '/retries');
    errs := errs || ductape._check_limits(spec->'limits', '/limits');
    IF spec ? 'idempotency_header' AND (jsonb_typeof(spec->'idempotency_header') <> 'string'
            OR spec->>'idempotency_header' !~ '^[!#$%&''*+.^_`|~0-9A-Za-z-]+$') THEN
        errs := errs || '/idempotency_header: must be a header name'::text;
    END IF;
    IF jsonb_typeof(constants) <> 'object' THEN constants := NULL; END IF;
    IF jsonb_typeof(variables) = 'object' THEN
        FOR k, e IN SELECT key, value FROM jsonb_each(variables) LOOP
            IF jsonb_typeof(e) <> 'object' THEN
                errs := errs || format('/variables/%s: must be an object such as {"required": false, "description": "..."}', k);
            ELSE
                errs := errs || ductape._check_keys(e, '/variables/' || k, '{required,description,default}');
                errs := errs || ductape._check_type(e->'required', format('/variables/%s/required', k), '{boolean}');
            END IF;
        END LOOP;
    ELSE
        variables := NULL;
    END IF;
    IF spec ? 'auth' AND jsonb_typeof(spec->'auth') = 'object' THEN
        errs := errs || ductape._check_auth(spec->'auth');
        errs := errs || ductape._template_errors(spec->'auth', '/auth', constants, variables);
    END IF;
    IF spec ? 'envs' THEN
        IF jsonb_typeof(spec->'envs') <> 'array' THEN
            errs := errs || '/envs: must be an array'::text;
        ELSE
            FOR e IN SELECT * FROM jsonb_array_elements(spec->'envs') LOOP
                IF jsonb_typeof(e) <> 'object' THEN
                    errs := errs || format('/envs/%s: must be an object', i);
                ELSE
                    errs := errs || ductape._check_keys(e, '/envs/' || i, '{slug,base_url,request_type,description,limits}');
                    errs := errs || ductape._check_tag(e->'slug', format('/envs/%s/slug', i));
                    IF e->>'slug' = ANY (tags) THEN
                        errs := errs || format('/envs/%s/slug: "%s" appears twice', i, e->>'slug');
                    END IF;
                    tags := tags || (e->>'slug');
                    IF jsonb_typeof(e->'base_url') IS DISTINCT FROM 'string' OR e->>'base_url' !~* '^https?://[^/\s?#]+(/[^\s?#]*)?$' THEN
                        errs := errs || format('/envs/%s/base_url: must be an http:// or https:// URL without query or fragment', i);
                    END IF;
                    errs := errs || ductape._check_request_type(e->'request_type', format('/envs/%s/request_type', i));
                    -- (an env's limits over its app's, as the request builder merges them,
                    -- once the app's own are valid: a rate of the env under a "per" of
                    -- the app must allow one request a day too)
                    IF jsonb_typeof(e->'limits') = 'object' AND jsonb_typeof(spec->'limits') = 'object'
                       AND cardinality(ductape._check_limits(spec->'limits', '/limits')) = 0 THEN
                        errs := errs || ductape._check_limits(spec->'limits' || (e->'limits'), format('/envs/%s/limits', i));
                    ELSE
                        errs := errs || ductape._check_limits(e->'limits', format('/envs/%s/limits', i));
                    END IF;
                END IF;
                i := i + 1;
            END LOOP;
        END IF;
    END IF;
    IF jsonb_typeof(spec->'webhooks') = 'array' THEN
        tags := '{}';
        i := 0;
        FOR e IN SELECT * FROM jsonb_array_elements(spec->'webhooks') LOOP
            errs := errs || ductape._check_webhook(e, '/webhooks/' || i, constants, variables);
            IF e->>'tag' = ANY (tags) THEN
                errs := errs || format('/webhooks/%s/tag: "%s" appears twice', i, e->>'tag');
            END IF;
            tags := tags || (e->>'tag');
            i := i + 1;
        END LOOP;
    END IF;
    IF spec ? 'actions' THEN
        IF jsonb_typeof(spec->'actions') <> 'array' THEN
            errs := errs || '/actions: must be an array'::text;
        ELSE
            i := 0;
            FOR e IN SELECT * FROM jsonb_array_elements(spec->'actions') LOOP
                errs := errs || ductape._check_action(e, '/actions/' || i, constants, variables);
                i := i + 1;
            END LOOP;
            -- (one pass: an app may have thousands of actions)
            SELECT errs || coalesce(array_agg(format('/actions/%s/tag: "%s" appears twice', x.ord - 1, x.tag) ORDER BY x.ord), '{}')
              INTO errs
              FROM (SELECT ord, a->>'tag' AS tag, row_number() OVER (PARTITION BY a->>'tag' ORDER BY ord) AS n
                      FROM jsonb_array_elements(spec->'actions') WITH ORDINALITY y(a, ord)) x
             WHERE x.n > 1 AND x.tag IS NOT NULL;
        END IF;
    END IF;
    RETURN errs;
END
$$;

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

-- roles given usage before read the limits too (grant_usage gives them now)
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT DISTINCT x.grantee::regrole::text AS role
               FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) x
              WHERE c.oid = 'ductape.stats'::regclass AND x.privilege_type = 'SELECT'
                AND x.grantee <> 0 AND x.grantee <> c.relowner
    LOOP
        EXECUTE pg_catalog.format('GRANT SELECT ON ductape.limits TO %s', r.role);
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION ductape._limits() TO %s', r.role);
    END LOOP;
    FOR r IN SELECT DISTINCT x.grantee::regrole::text AS role
               FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) x
              WHERE p.oid = 'ductape._check_app(jsonb)'::regprocedure AND x.privilege_type = 'EXECUTE'
                AND x.grantee <> 0 AND x.grantee <> p.proowner
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION ductape._check_limits(jsonb, text) TO %s', r.role);
    END LOOP;
END
$$;


REVOKE ALL ON ALL FUNCTIONS IN SCHEMA ductape FROM PUBLIC;

-- (last: after every GRANT and REVOKE above)
SELECT ductape._forget_granted_initial_privileges();
