-- ductape SQL source: inbound webhooks.
--
-- The webhooks an app declares, their URLs (an unguessable token each),
-- the events the listener stores (src/webhook.c), and the subscriptions
-- whose handlers the database's worker runs (src/inbound.c).

-- One inbound webhook of an app spec: verification and the id/type
-- selectors (part of the app check, ductape._check_app).
CREATE FUNCTION ductape._check_webhook(w jsonb, path text, constants jsonb, variables jsonb)
RETURNS text[] LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    errs text[] := '{}';
    v jsonb := w->'verify';
    k text;
BEGIN
    IF jsonb_typeof(w) IS DISTINCT FROM 'object' THEN
        RETURN ARRAY[path || ': must be an object'];
    END IF;
    errs := errs || ductape._check_keys(w, path, '{tag,description,verify,id,type}');
    errs := errs || ductape._check_tag(w->'tag', path || '/tag');
    errs := errs || ductape._check_type(w->'description', path || '/description', '{string}');
    FOREACH k IN ARRAY ARRAY['id', 'type'] LOOP
        IF w ? k AND (jsonb_typeof(w->k) <> 'string'
                      OR (w->>k ~ '\$' AND w->>k !~ '^\$(Event|Header)\{[^{}]+\}$')) THEN
            errs := errs || format('%s/%s: must be a selector such as "$Event{data.id}" or "$Header{X-Event-Id}"', path, k);
        END IF;
    END LOOP;
    IF jsonb_typeof(v) IS DISTINCT FROM 'object' THEN
        RETURN errs || (path || '/verify: is required: an object such as {"scheme": "standard", "secret": "$Secret{NAME}"}');
    END IF;
    errs := errs || ductape._check_keys(v, path || '/verify', '{scheme,secret,tolerance_s,header,encoding,prefix}');
    IF v->>'scheme' IS NULL OR v->>'scheme' NOT IN ('stripe', 'github', 'standard', 'hmac', 'none') THEN
        errs := errs || (path || '/verify/scheme: must be stripe, github, standard, hmac or none');
    ELSIF v->>'scheme' <> 'none' AND jsonb_typeof(v->'secret') IS DISTINCT FROM 'string' THEN
        errs := errs || format('%s/verify/secret: is required for the %s scheme (a template such as "$Secret{NAME}")', path, v->>'scheme');
    END IF;
    IF v->>'scheme' = 'hmac' AND (jsonb_typeof(v->'header') IS DISTINCT FROM 'string'
                                 OR v->>'header' !~ '^[!#$%&''*+.^_`|~0-9A-Za-z-]+$') THEN
        errs := errs || (path || '/verify/header: is required for the hmac scheme: the header carrying the signature');
    END IF;
    IF v ? 'encoding' AND v->>'encoding' IS DISTINCT FROM 'hex' AND v->>'encoding' IS DISTINCT FROM 'base64' THEN
        errs := errs || (path || '/verify/encoding: must be hex or base64');
    END IF;
    errs := errs || ductape._check_type(v->'prefix', path || '/verify/prefix', '{string}');
    errs := errs || ductape._check_int(v->'tolerance_s', path || '/verify/tolerance_s', 1, 86400 * 7);
    IF jsonb_typeof(v->'secret') = 'string' THEN
        errs := errs || ductape._template_errors(jsonb_build_object('secret', v->'secret'), path || '/verify', constants, variables);
    END IF;
    RETURN errs;
END
$$;

---------------------------------------------------------------------------
-- Tables
---------------------------------------------------------------------------

-- The unguessable path token of each (product, app, webhook, env).
CREATE TABLE ductape._webhook_tokens (
    token       text PRIMARY KEY,
    product     text NOT NULL,
    app         text NOT NULL REFERENCES ductape.apps (tag) ON DELETE CASCADE,
    webhook     text NOT NULL,
    env         text NOT NULL,
    role        name NOT NULL,           -- who asked for the URL; events record it
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT webhook_tokens_scope UNIQUE (product, app, webhook, env)
);
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

CREATE TYPE ductape.webhook_state AS ENUM ('received', 'handled', 'failed');
COMMENT ON TYPE ductape.webhook_state IS
    'State of an inbound webhook event: received (handlers to run), handled, failed (handlers '
    'failed for good).';
-- Written by the listener in one transaction per batch of requests, before
-- any of them is answered 200.
CREATE TABLE ductape.webhook_events (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app             text NOT NULL,
    webhook         text NOT NULL,
    env             text NOT NULL,
    product         text NOT NULL,
    event_id        text,                -- from the id selector; a repeat is stored once
    event_type      text,                -- from the type selector
    headers         jsonb NOT NULL,      -- as received, sensitive values redacted
    payload         jsonb,               -- a JSON body
    body            text,                -- any other body, as text
    received_at     timestamptz NOT NULL DEFAULT now(),
    state           ductape.webhook_state NOT NULL DEFAULT 'received',
    attempts        integer NOT NULL DEFAULT 0,
    error           text,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    handled_by      bigint[] NOT NULL DEFAULT '{}',  -- subscriptions whose handler succeeded
    handled_at      timestamptz,
    role            name NOT NULL
);
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
CREATE UNIQUE INDEX webhook_events_event_id_idx ON ductape.webhook_events (product, app, webhook, env, event_id)
    WHERE event_id IS NOT NULL;
CREATE INDEX webhook_events_due_idx ON ductape.webhook_events (next_attempt_at, id) WHERE state = 'received';
ALTER TABLE ductape.webhook_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY webhook_events_by_role ON ductape.webhook_events FOR SELECT
    USING (role = current_user
           OR pg_catalog.has_function_privilege('ductape.secret_get(text)', 'EXECUTE'));

CREATE TABLE ductape.webhook_subscriptions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app         text NOT NULL REFERENCES ductape.apps (tag) ON DELETE CASCADE,
    webhook     text NOT NULL,
    event_type  text NOT NULL,           -- exact, or with * wildcards
    handler     regprocedure NOT NULL,
    role        name NOT NULL,           -- the handler runs as this role
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT webhook_subscriptions_unique UNIQUE (app, webhook, event_type, handler)
);
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
-- Rows say whom a handler runs as: only ductape's functions (the owner)
-- write them.  Row security holds that even where a role has been granted
-- writes: a dump of a 0.2.0 database, whose grant_admin gave admins
-- INSERT, UPDATE and DELETE here, carries them into a restore.
ALTER TABLE ductape.webhook_subscriptions ENABLE ROW LEVEL SECURITY;
CREATE POLICY webhook_subscriptions_read ON ductape.webhook_subscriptions FOR SELECT USING (true);

---------------------------------------------------------------------------
-- Functions
---------------------------------------------------------------------------

-- Does an event type match a subscription's pattern (* matches any run)?
CREATE FUNCTION ductape._type_matches(event_type text, pattern text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT pattern = '*' OR event_type LIKE
        replace(replace(replace(replace(pattern, '\', '\\'), '%', '\%'), '_', '\_'), '*', '%')
$$;

-- Check a signature as the listener would at time "at" (tests, debugging).
CREATE FUNCTION ductape._signature_check(verify jsonb, secret text, headers jsonb, body text, at timestamptz DEFAULT now())
RETURNS text LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'dt_signature_check';
COMMENT ON FUNCTION ductape._signature_check(jsonb,text,jsonb,text,timestamptz) IS
    'Internal, for debugging: checks a webhook signature as the listener does, with verify '
    'settings, secret, headers and body at a given time; returns verified, or why not. Admins.';

CREATE FUNCTION ductape._webhook_listen_address() RETURNS text
LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'dt_webhook_listen_address';

-- The webhook's spec in its app, or 42704.
CREATE FUNCTION ductape._webhook_spec(a ductape.apps, webhook text) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    w jsonb;
BEGIN
    SELECT e INTO w FROM jsonb_array_elements(coalesce(a.spec->'webhooks', '[]')) e WHERE e->>'tag' = webhook;
    IF w IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '42704',
            MESSAGE = format('webhook "%s" of app "%s" does not exist', webhook, a.tag),
            DETAIL = format('The app defines %s.', coalesce((SELECT string_agg(format('"%s"', e->>'tag'), ', ')
                                                              FROM jsonb_array_elements(coalesce(a.spec->'webhooks', '[]')) e),
                                                            'no webhooks')),
            HINT = 'Add it to the app''s "webhooks" with ductape.app_define.';
    END IF;
    RETURN w;
END
$$;

-- webhook_url and webhook_subscribe record their caller: a C proxy (the
-- public name, src/gate.c) notes current_user and calls the SECURITY
-- DEFINER implementation (the same name with a leading underscore), which
-- reads it with ductape._caller().  The implementations are granted to
-- nobody.
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

CREATE FUNCTION ductape.webhook_url(app text, webhook text, env text DEFAULT NULL, product text DEFAULT NULL)
RETURNS text LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_as_caller';
COMMENT ON FUNCTION ductape.webhook_url(text,text,text,text) IS
    'Returns the URL to give a webhook''s sender for (product, app, webhook, env): the '
    'listener''s address and an unguessable token, the same every time; events received there '
    'belong to the caller. Needs ductape.webhook_listen, in ductape.webhook_database. Admins.';

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

CREATE FUNCTION ductape.webhook_subscribe(app text, webhook text, event_type text, handler regprocedure)
RETURNS bigint LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_as_caller';
COMMENT ON FUNCTION ductape.webhook_subscribe(text,text,text,regprocedure) IS
    'Runs handler(event jsonb), as the caller, for each event of the webhook whose type matches '
    'event_type (exact, * wildcards). Returns the subscription id (the same one when subscribed '
    'before). Admins.';

-- Stop handling events of a subscription (events already handled stay so).
-- Events the worker claims after this commits never run its handler, nor do
-- retries; a round the worker had already started when it committed still
-- runs it once.  An event left waiting for no other handler is parked
-- until a subscription wants it (ductape.webhook_event_retry is for
-- finished events).
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
COMMENT ON FUNCTION ductape.webhook_unsubscribe(bigint) IS
    'Removes a subscription: later events no longer reach its handler. Admins.';

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

-- pg_dump keeps the URLs (the provider has them) and the subscriptions.
SELECT pg_catalog.pg_extension_config_dump('ductape._webhook_tokens', '');
SELECT pg_catalog.pg_extension_config_dump('ductape.webhook_subscriptions', '');
-- (and the counter behind the ids)
SELECT pg_catalog.pg_extension_config_dump('ductape.webhook_subscriptions_id_seq', '');
