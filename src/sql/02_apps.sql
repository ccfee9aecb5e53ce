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

-- An auth block.
CREATE FUNCTION ductape._check_auth(a jsonb)
RETURNS text[] LANGUAGE plpgsql IMMUTABLE AS $$
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
RETURNS text[] LANGUAGE plpgsql STABLE AS $$
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
    errs := errs || ductape._check_keys(spec, '', '{tag,name,description,envs,constants,variables,auth,retries,timeout_ms,idempotency_header,actions,webhooks}');
    errs := errs || ductape._check_tag(spec->'tag', '/tag');
    errs := errs || ductape._check_type(spec->'name', '/name', '{string}');
    errs := errs || ductape._check_type(spec->'description', '/description', '{string}');
    errs := errs || ductape._check_type(spec->'constants', '/constants', '{object}');
    errs := errs || ductape._check_type(spec->'variables', '/variables', '{object}');
    errs := errs || ductape._check_type(spec->'auth', '/auth', '{object}');
    errs := errs || ductape._check_type(spec->'webhooks', '/webhooks', '{array}');
    errs := errs || ductape._check_int(spec->'timeout_ms', '/timeout_ms', 1, 86400000);
    errs := errs || ductape._check_retries(spec->'retries', '/retries');
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
                    errs := errs || ductape._check_keys(e, '/envs/' || i, '{slug,base_url,request_type,description}');
                    errs := errs || ductape._check_tag(e->'slug', format('/envs/%s/slug', i));
                    IF e->>'slug' = ANY (tags) THEN
                        errs := errs || format('/envs/%s/slug: "%s" appears twice', i, e->>'slug');
                    END IF;
                    tags := tags || (e->>'slug');
                    IF jsonb_typeof(e->'base_url') IS DISTINCT FROM 'string' OR e->>'base_url' !~* '^https?://[^/\s?#]+(/[^\s?#]*)?$' THEN
                        errs := errs || format('/envs/%s/base_url: must be an http:// or https:// URL without query or fragment', i);
                    END IF;
                    errs := errs || ductape._check_request_type(e->'request_type', format('/envs/%s/request_type', i));
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
LANGUAGE sql IMMUTABLE AS $$
    SELECT (a - 'tag') || jsonb_build_object('method', upper(a->>'method'))
$$;

-- (ductape's own checks never pay for JIT: a recursive CTE in the workflow
-- checker cost 0.3-0.5 s of LLVM compilation per call)
CREATE FUNCTION ductape.app_define(spec jsonb) RETURNS text
LANGUAGE plpgsql SET jit = off AS $$
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
RETURNS text LANGUAGE plpgsql AS $$
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
LANGUAGE plpgsql STABLE AS $$
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
LANGUAGE plpgsql SET jit = off AS $$
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
LANGUAGE sql STABLE AS $$
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

CREATE FUNCTION ductape.app_drop(tag text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ductape._app_row(tag);
    DELETE FROM ductape.apps a WHERE a.tag = app_drop.tag;
END
$$;
COMMENT ON FUNCTION ductape.app_drop(text) IS
    'Drops an app with its actions, variable values, config, product connections, OAuth2 '
    'tokens, webhook URLs and subscriptions. Admins.';

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
