-- ductape SQL source: apps and actions.
--
-- The catalog of apps and their actions, the checks of an app spec and an
-- action spec, defining, exporting and dropping them, and describe().
-- Every backend caches this catalog (src/catalog.c); a trigger invalidates
-- the caches at commit.  (A webhook's part of the app spec is checked in
-- 07_webhooks.sql; products, configs and variables are in 03_products.sql.)

---------------------------------------------------------------------------
-- Tables
---------------------------------------------------------------------------

CREATE TABLE ductape.apps (
    tag         text PRIMARY KEY CHECK (tag ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    name        text,
    description text,
    spec        jsonb NOT NULL,          -- the app spec without tag, name, description, actions
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
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

CREATE TABLE ductape.actions (
    app         text NOT NULL REFERENCES ductape.apps (tag) ON DELETE CASCADE,
    tag         text NOT NULL CHECK (tag ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    position    integer NOT NULL,        -- order in the app spec, kept for export
    spec        jsonb NOT NULL,          -- the action spec without tag
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app, tag)
);
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

-- Any change to the catalog invalidates every backend's cache of it at
-- commit (the other catalog tables have the same trigger).
CREATE FUNCTION ductape._catalog_changed() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'dt_catalog_changed';
CREATE TRIGGER apps_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ductape.apps
    FOR EACH STATEMENT EXECUTE FUNCTION ductape._catalog_changed();
CREATE TRIGGER actions_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ductape.actions
    FOR EACH STATEMENT EXECUTE FUNCTION ductape._catalog_changed();

---------------------------------------------------------------------------
-- Checks of an app spec
---------------------------------------------------------------------------

-- A request type, when present (by the library's rule, as _check_tag).
CREATE FUNCTION ductape._check_request_type(val jsonb, path text)
RETURNS text[] AS 'MODULE_PATHNAME', 'dt_check_request_type' LANGUAGE c IMMUTABLE;

-- What an action definition may say has one implementation, the library's
-- (src/catalog.c): action_define, app_define and the importers ask it
-- here, and the loader checks each stored action with it before the
-- action's first use.  Not strict: the importers pass no constants or
-- variables (NULL: none); a NULL path is "".  path is the action's JSON
-- pointer in the app spec.
CREATE FUNCTION ductape._check_action(a jsonb, path text, constants jsonb, variables jsonb)
RETURNS text[] AS 'MODULE_PATHNAME', 'dt_check_action' LANGUAGE c STABLE;
-- A retry policy (an action's, an app's, a workflow step's), by the same code.
CREATE FUNCTION ductape._check_retries(p jsonb, path text)
RETURNS text[] AS 'MODULE_PATHNAME', 'dt_check_retries' LANGUAGE c IMMUTABLE;

-- The "limits" of an app or env (flow control), by the library's rules,
-- which the request builder reads them with.
CREATE FUNCTION ductape._check_limits(l jsonb, path text)
RETURNS text[] AS 'MODULE_PATHNAME', 'dt_check_limits' LANGUAGE c IMMUTABLE;
COMMENT ON FUNCTION ductape._check_limits(jsonb, text) IS
    'The problems of the "limits" of an app or env (rate, per, burst, concurrency, max_wait_ms), as /json/pointer: reason strings.';

-- An auth block.
CREATE FUNCTION ductape._check_auth(a jsonb)
RETURNS text[] LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    errs text[] := '{}';
    t text := a->>'type';
    k text;
BEGIN
    CASE t
    WHEN 'bearer' THEN
        errs := errs || ductape._check_keys(a, '/auth', '{type,token}');
        IF NOT a ? 'token' THEN errs := errs || '/auth/token: is required for bearer auth'::text; END IF;
    WHEN 'api_key' THEN
        errs := errs || ductape._check_keys(a, '/auth', '{type,in,name,value}');
        IF NOT a ? 'value' THEN errs := errs || '/auth/value: is required for api_key auth'::text; END IF;
        IF a ? 'in' AND a->>'in' NOT IN ('header', 'query') THEN
            errs := errs || '/auth/in: must be header or query'::text;
        END IF;
    WHEN 'basic' THEN
        errs := errs || ductape._check_keys(a, '/auth', '{type,username,password}');
        IF NOT a ? 'username' THEN errs := errs || '/auth/username: is required for basic auth'::text; END IF;
    WHEN 'oauth2' THEN
        errs := errs || ductape._check_keys(a, '/auth', '{type,grant,token_url,client_id,client_secret,scope,refresh_token,client_auth,refresh_buffer_s}');
        IF jsonb_typeof(a->'token_url') IS DISTINCT FROM 'string' OR (a->>'token_url' !~* '^https?://' AND a->>'token_url' !~ '^\$') THEN
            errs := errs || '/auth/token_url: is required for oauth2 auth: an http:// or https:// URL'::text;
        END IF;
        IF a ? 'grant' AND a->>'grant' NOT IN ('client_credentials', 'refresh_token') THEN
            errs := errs || '/auth/grant: must be client_credentials or refresh_token'::text;
        END IF;
        IF a ? 'client_auth' AND a->>'client_auth' NOT IN ('basic', 'body') THEN
            errs := errs || '/auth/client_auth: must be basic or body'::text;
        END IF;
        errs := errs || ductape._check_int(a->'refresh_buffer_s', '/auth/refresh_buffer_s', 0, 86400);
    ELSE
        errs := errs || '/auth/type: must be bearer, api_key, basic or oauth2'::text;
    END CASE;
    FOR k IN SELECT key FROM jsonb_each(a) WHERE key <> 'refresh_buffer_s' AND jsonb_typeof(value) <> 'string' LOOP
        errs := errs || format('/auth/%s: must be a string', k);
    END LOOP;
    RETURN errs;
END
$$;

-- A whole app spec (without running the action checks' template checks twice).
CREATE FUNCTION ductape._check_app(spec jsonb)
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

---------------------------------------------------------------------------
-- Defining, exporting, dropping, describing
---------------------------------------------------------------------------

-- The stored part of an action spec: everything but the tag; method upper-cased.
CREATE FUNCTION ductape._action_body(a jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT (a - 'tag') || jsonb_build_object('method', upper(a->>'method'))
$$;

-- (ductape's own checks never pay for JIT: a recursive CTE in the workflow
-- checker cost 0.3-0.5 s of LLVM compilation per call)
CREATE FUNCTION ductape.app_define(spec jsonb) RETURNS text
LANGUAGE plpgsql SET jit = off SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    t text := spec->>'tag';
BEGIN
    PERFORM ductape._raise_invalid(format('app definition%s', coalesce(' "' || t || '"', '')),
                                   ductape._check_app(spec));
    INSERT INTO ductape.apps AS x (tag, name, description, spec)
    VALUES (t, spec->>'name', spec->>'description', spec - '{tag,name,description,actions}'::text[])
    ON CONFLICT (tag) DO UPDATE
       SET name = EXCLUDED.name, description = EXCLUDED.description,
           spec = EXCLUDED.spec, updated_at = now();
    DELETE FROM ductape.actions
     WHERE app = t
       AND tag NOT IN (SELECT e->>'tag' FROM jsonb_array_elements(coalesce(spec->'actions', '[]')) e);
    INSERT INTO ductape.actions (app, tag, position, spec)
    SELECT t, x.a->>'tag', x.ord - 1, ductape._action_body(x.a)
      FROM jsonb_array_elements(coalesce(spec->'actions', '[]')) WITH ORDINALITY x(a, ord)
    ON CONFLICT (app, tag) DO UPDATE
       SET position = EXCLUDED.position, spec = EXCLUDED.spec, updated_at = now();
    RETURN t;
END
$$;
COMMENT ON FUNCTION ductape.app_define(jsonb) IS
    'Creates or replaces a whole app from its spec; afterwards the app has exactly the spec''s '
    'actions. Every problem of an invalid spec is listed at once (22023). Returns the app tag. '
    'Admins.';

CREATE FUNCTION ductape.app_create(tag text, name text DEFAULT NULL, description text DEFAULT NULL)
RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM ductape._raise_invalid('app tag', ductape._check_tag(to_jsonb(app_create.tag), '/tag'));
    IF EXISTS (SELECT 1 FROM ductape.apps a WHERE a.tag = app_create.tag) THEN
        RAISE EXCEPTION USING ERRCODE = '42710',
            MESSAGE = format('app "%s" already exists', app_create.tag),
            HINT = 'Use ductape.app_define to change an existing app.';
    END IF;
    INSERT INTO ductape.apps (tag, name, description, spec)
    VALUES (app_create.tag, app_create.name, app_create.description, '{}');
    RETURN app_create.tag;
END
$$;
COMMENT ON FUNCTION ductape.app_create(text,text,text) IS
    'Creates an empty app (no envs, no actions) with a tag, a name and a description, to fill '
    'with action_define or app_define; 42710 if it exists. Returns the tag. Admins.';

CREATE FUNCTION ductape._app_row(tag text) RETURNS ductape.apps
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r ductape.apps;
BEGIN
    SELECT * INTO r FROM ductape.apps a WHERE a.tag = _app_row.tag;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '42704',
            MESSAGE = format('app "%s" does not exist', _app_row.tag),
            HINT = 'Define it with ductape.app_define or ductape.app_create.';
    END IF;
    RETURN r;
END
$$;

CREATE FUNCTION ductape.action_define(app text, spec jsonb) RETURNS text
LANGUAGE plpgsql SET jit = off SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    r ductape.apps := ductape._app_row(app);
    pos integer;
BEGIN
    PERFORM ductape._raise_invalid(format('action definition%s', coalesce(' "' || (spec->>'tag') || '"', '')),
        ductape._check_action(spec, '', CASE WHEN jsonb_typeof(r.spec->'constants') = 'object' THEN r.spec->'constants' END,
                                        CASE WHEN jsonb_typeof(r.spec->'variables') = 'object' THEN r.spec->'variables' END));
    SELECT coalesce(max(position) + 1, 0) INTO pos FROM ductape.actions x WHERE x.app = r.tag;
    INSERT INTO ductape.actions AS x (app, tag, position, spec)
    VALUES (r.tag, spec->>'tag', pos, ductape._action_body(spec))
    ON CONFLICT ON CONSTRAINT actions_pkey DO UPDATE SET spec = EXCLUDED.spec, updated_at = now();
    RETURN spec->>'tag';
END
$$;
COMMENT ON FUNCTION ductape.action_define(text,jsonb) IS
    'Creates or replaces one action of an existing app (a new one goes last). Returns the '
    'action tag. Admins.';

CREATE FUNCTION ductape.app_export(tag text) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object('tag', r.tag, 'name', r.name, 'description', r.description))
           || r.spec
           || jsonb_build_object('actions', coalesce(
                (SELECT jsonb_agg(jsonb_build_object('tag', x.tag) || x.spec ORDER BY x.position, x.tag)
                   FROM ductape.actions x WHERE x.app = r.tag), '[]'))
      FROM ductape._app_row(tag) r
$$;
COMMENT ON FUNCTION ductape.app_export(text) IS
    'Returns an app as the spec app_define accepts, its actions included: '
    'app_define(app_export(x)) changes nothing. Admins.';

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
CREATE FUNCTION ductape.app_drop(tag text) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ SELECT ductape.app_drop(tag, false) $$;
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

-- Where an unprefixed input key goes is decided by one implementation, the
-- request builder's (src/request.c): describe() asks it.
CREATE FUNCTION ductape._placement(a jsonb, key text, prop jsonb) RETURNS text
    AS 'MODULE_PATHNAME', 'dt_placement' LANGUAGE c IMMUTABLE STRICT;

CREATE FUNCTION ductape.describe(app text, action text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r ductape.apps := ductape._app_row(app);
    a jsonb;
    inputs jsonb;
    example jsonb;
BEGIN
    IF action IS NULL THEN
        RETURN jsonb_strip_nulls(jsonb_build_object(
            'app', r.tag, 'name', r.name, 'description', r.description,
            'envs', coalesce((SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                        'slug', e->>'slug', 'base_url', e->>'base_url', 'request_type', e->>'request_type')))
                      FROM jsonb_array_elements(coalesce(r.spec->'envs', '[]')) e), '[]'),
            'variables', r.spec->'variables',
            'constants', (SELECT jsonb_agg(k ORDER BY k) FROM jsonb_object_keys(coalesce(r.spec->'constants', '{}')) k),
            'actions', coalesce((SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                        'tag', x.tag, 'method', x.spec->>'method', 'resource', x.spec->>'resource',
                        'name', x.spec->>'name', 'description', x.spec->>'description')) ORDER BY x.position)
                      FROM ductape.actions x WHERE x.app = r.tag), '[]')));
    END IF;
    SELECT x.spec INTO a FROM ductape.actions x WHERE x.app = r.tag AND x.tag = describe.action;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '42704',
            MESSAGE = format('action "%s" of app "%s" does not exist', describe.action, r.tag),
            HINT = format('Call ductape.describe(%L) to list its actions.', r.tag);
    END IF;
    -- Declared properties (a $ref'd one described by its target), then
    -- :params of the resource not declared.
    SELECT coalesce(jsonb_agg(i ORDER BY ord, i->>'name'), '[]') INTO inputs FROM (
        SELECT 0 AS ord, jsonb_strip_nulls(jsonb_build_object(
                   'name', p.key, 'in', ductape._placement(a, p.key, p.value),
                   'type', t.s->'type', 'format', t.s->'format', 'enum', t.s->'enum',
                   'required', coalesce(a #> '{input,required}', '[]') ? p.key,
                   'description', coalesce(p.value->>'description', t.s->>'description'),
                   'example', coalesce(t.s->'example', t.s #> '{examples,0}', t.s->'default', t.s #> '{enum,0}'))) AS i
          FROM jsonb_each(coalesce(a #> '{input,properties}', '{}')) p,
               LATERAL (SELECT CASE WHEN jsonb_typeof(p.value->'$ref') = 'string'
                                    THEN coalesce(ductape._ref_target(a->'input', p.value->>'$ref'), p.value)
                                    ELSE p.value END AS s) t
        UNION ALL
        SELECT 1, jsonb_build_object('name', m[1], 'in', 'params', 'required', true)
          FROM regexp_matches(a->>'resource', ':([A-Za-z0-9_]+)', 'g') m
         WHERE NOT coalesce(a #> '{input,properties}', '{}') ? m[1]) s;
    SELECT coalesce(jsonb_object_agg(i->>'name', coalesce(i->'example',
               CASE i->>'type' WHEN 'integer' THEN '1'::jsonb WHEN 'number' THEN '1.5'::jsonb
                               WHEN 'boolean' THEN 'true'::jsonb WHEN 'object' THEN '{}'::jsonb
                               WHEN 'array' THEN '[]'::jsonb ELSE to_jsonb('<' || (i->>'name') || '>') END)), '{}')
      INTO example FROM jsonb_array_elements(inputs) i
     WHERE (i->>'required')::boolean;
    RETURN jsonb_strip_nulls(jsonb_build_object(
        'app', r.tag, 'action', describe.action,
        'name', a->>'name', 'description', a->>'description',
        'method', a->>'method', 'resource', a->>'resource',
        'request_type', coalesce(a->>'request_type', 'application/json'),
        'inputs', inputs,
        'example', format('select ductape.run(%L, %L, %L);', r.tag, describe.action, example::text)));
END
$$;
COMMENT ON FUNCTION ductape.describe(text,text) IS
    'Describes an app (envs, declared variables, constant names, actions) or, given an action, '
    'its inputs (placement, type, whether required, an example) and an example call. Never '
    'shows constant values, auth or secrets. Usage roles.';

-- pg_dump keeps the definitions.
SELECT pg_catalog.pg_extension_config_dump('ductape.apps', '');
SELECT pg_catalog.pg_extension_config_dump('ductape.actions', '');
