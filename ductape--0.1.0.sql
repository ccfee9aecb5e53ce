-- ductape 0.1.0: apps, actions, synchronous calls, call records.
\echo Use "CREATE EXTENSION ductape" to load this file. \quit

-- Nothing in this schema is granted to PUBLIC.
REVOKE ALL ON SCHEMA ductape FROM PUBLIC;

---------------------------------------------------------------------------
-- Catalog tables
---------------------------------------------------------------------------

CREATE TABLE ductape.apps (
    tag         text PRIMARY KEY CHECK (tag ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    name        text,
    description text,
    spec        jsonb NOT NULL,          -- the app spec without tag, name, description, actions
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ductape.actions (
    app         text NOT NULL REFERENCES ductape.apps (tag) ON DELETE CASCADE,
    tag         text NOT NULL CHECK (tag ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    position    integer NOT NULL,        -- order in the app spec, kept for export
    spec        jsonb NOT NULL,          -- the action spec without tag
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app, tag)
);

CREATE TABLE ductape.products (
    tag         text PRIMARY KEY CHECK (tag ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    name        text,
    envs        text[] NOT NULL DEFAULT '{dev,prd}',
    created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO ductape.products (tag, name) VALUES ('default', 'Default product');

-- An app used by a product, with the product env -> app env mapping.
CREATE TABLE ductape.product_apps (
    product     text NOT NULL REFERENCES ductape.products (tag) ON DELETE CASCADE,
    app         text NOT NULL REFERENCES ductape.apps (tag) ON DELETE CASCADE,
    env_map     jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (product, app)
);

-- Credentials per (product, app, env): flat-input templates such as
-- {"headers:Authorization": "Bearer $Secret{KEY}"}, never resolved values.
CREATE TABLE ductape.configs (
    product     text NOT NULL REFERENCES ductape.products (tag) ON DELETE CASCADE,
    app         text NOT NULL REFERENCES ductape.apps (tag) ON DELETE CASCADE,
    env         text NOT NULL,
    credentials jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (product, app, env)
);

CREATE TABLE ductape.variables (
    product     text NOT NULL REFERENCES ductape.products (tag) ON DELETE CASCADE,
    app         text NOT NULL REFERENCES ductape.apps (tag) ON DELETE CASCADE,
    env         text NOT NULL,
    key         text NOT NULL,
    value       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (product, app, env, key)
);

-- Background jobs (DESIGN.md §7): a LOGGED queue, so a crash loses nothing.
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
CREATE UNIQUE INDEX jobs_idempotency_key_idx ON ductape.jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_due_idx ON ductape.jobs (next_attempt_at, id) WHERE state IN ('queued', 'scheduled');
CREATE INDEX jobs_finished_idx ON ductape.jobs (finished_at) WHERE finished_at IS NOT NULL;
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

-- Secrets (DESIGN.md §4).  value is nonce || AES-256-GCM ciphertext || tag,
-- encrypted in C before the row is written; the plaintext is never stored.
CREATE TABLE ductape._secrets (
    name        text PRIMARY KEY,
    value       bytea NOT NULL,
    key_version integer NOT NULL,
    description text,
    apps        text[],
    envs        text[],
    expires_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- OAuth2 tokens per (product, app, env), encrypted like secrets.
CREATE TABLE ductape._oauth_tokens (
    product       text NOT NULL REFERENCES ductape.products (tag) ON DELETE CASCADE,
    app           text NOT NULL REFERENCES ductape.apps (tag) ON DELETE CASCADE,
    env           text NOT NULL,
    access_token  bytea NOT NULL,
    refresh_token bytea,
    key_version   integer NOT NULL,
    expires_at    timestamptz,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (product, app, env)
);

CREATE VIEW ductape.secrets AS
SELECT name, description, apps, envs, expires_at, created_at, updated_at FROM ductape._secrets;

-- One row per call made (run, run_response, http), written by a background
-- worker from a shared-memory buffer: the caller's transaction never writes
-- here, and a rolled-back caller still leaves its record.
CREATE TABLE ductape.calls (
    id          bigint PRIMARY KEY,
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
    role        name
);
CREATE INDEX calls_at_idx ON ductape.calls (at);
CREATE INDEX calls_app_action_idx ON ductape.calls (app, action, at);

-- A role sees its own call records; administrators (who may read secrets)
-- see all.  The background worker that writes rows is a superuser.
ALTER TABLE ductape.calls ENABLE ROW LEVEL SECURITY;
CREATE POLICY calls_by_role ON ductape.calls FOR SELECT
    USING (role = current_user
           OR pg_catalog.has_function_privilege('ductape.secret_get(text)', 'EXECUTE'));

CREATE VIEW ductape.stats WITH (security_invoker = true) AS
SELECT app, action,
       count(*)                                                        AS calls,
       count(*) FILTER (WHERE error IS NOT NULL)                       AS errors,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms)::numeric, 3)  AS p50_ms,
       round(percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms)::numeric, 3) AS p95_ms,
       max(at)                                                         AS last_at
  FROM ductape.calls
 GROUP BY app, action;

---------------------------------------------------------------------------
-- C entry points
---------------------------------------------------------------------------

CREATE FUNCTION ductape._template_errors(tpl jsonb, path text, constants jsonb, variables jsonb)
RETURNS text[] LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'dt_template_errors';

-- JSON Schema (DESIGN.md §10): problems with a schema, and the violations
-- of an instance, each as "/json/pointer: reason".
CREATE FUNCTION ductape._schema_check(schema jsonb, path text)
RETURNS text[] LANGUAGE c IMMUTABLE AS 'MODULE_PATHNAME', 'dt_schema_check';
CREATE FUNCTION ductape._schema_validate(schema jsonb, instance jsonb)
RETURNS text[] LANGUAGE c IMMUTABLE STRICT AS 'MODULE_PATHNAME', 'dt_schema_validate';

CREATE FUNCTION ductape._catalog_changed() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'dt_catalog_changed';

-- Any change to the catalog invalidates every backend's cache of it at commit.
CREATE TRIGGER apps_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ductape.apps
    FOR EACH STATEMENT EXECUTE FUNCTION ductape._catalog_changed();
CREATE TRIGGER actions_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ductape.actions
    FOR EACH STATEMENT EXECUTE FUNCTION ductape._catalog_changed();
CREATE TRIGGER variables_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ductape.variables
    FOR EACH STATEMENT EXECUTE FUNCTION ductape._catalog_changed();
CREATE TRIGGER products_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ductape.products
    FOR EACH STATEMENT EXECUTE FUNCTION ductape._catalog_changed();
CREATE TRIGGER product_apps_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ductape.product_apps
    FOR EACH STATEMENT EXECUTE FUNCTION ductape._catalog_changed();
CREATE TRIGGER configs_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ductape.configs
    FOR EACH STATEMENT EXECUTE FUNCTION ductape._catalog_changed();

CREATE FUNCTION ductape.run(app text, action text, input jsonb DEFAULT '{}',
                            env text DEFAULT NULL, product text DEFAULT NULL,
                            options jsonb DEFAULT '{}')
RETURNS jsonb LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_run';

CREATE FUNCTION ductape.run_response(app text, action text, input jsonb DEFAULT '{}',
                                     env text DEFAULT NULL, product text DEFAULT NULL,
                                     options jsonb DEFAULT '{}')
RETURNS jsonb LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_run_response';

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

CREATE FUNCTION ductape.http(method text, url text, headers jsonb DEFAULT '{}',
                             body jsonb DEFAULT NULL, options jsonb DEFAULT '{}')
RETURNS jsonb LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_http';

CREATE FUNCTION ductape.secret_set(name text, value text, description text DEFAULT NULL,
                                   apps text[] DEFAULT NULL, envs text[] DEFAULT NULL,
                                   expires_at timestamptz DEFAULT NULL)
RETURNS void LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_secret_set';

CREATE FUNCTION ductape.secret_get(name text) RETURNS text
LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'dt_secret_get';

CREATE FUNCTION ductape.rotate_master_key() RETURNS integer
LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_rotate_master_key';

CREATE FUNCTION ductape.oauth_set_tokens(app text, access_token text, refresh_token text DEFAULT NULL,
                                         expires_in integer DEFAULT NULL, env text DEFAULT NULL,
                                         product text DEFAULT NULL)
RETURNS void LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_oauth_set_tokens';

CREATE FUNCTION ductape.secret_drop(name text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM ductape._secrets s WHERE s.name = secret_drop.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '42704',
            MESSAGE = format('secret "%s" does not exist', secret_drop.name);
    END IF;
END
$$;

---------------------------------------------------------------------------
-- Definition checks: every problem is collected as "/json/pointer: reason"
---------------------------------------------------------------------------

CREATE FUNCTION ductape._check_tag(val jsonb, path text, required boolean DEFAULT true)
RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN val IS NULL OR jsonb_typeof(val) = 'null' THEN
            CASE WHEN required THEN ARRAY[path || ': is required'] ELSE '{}'::text[] END
        WHEN jsonb_typeof(val) <> 'string' THEN ARRAY[path || ': must be a string']
        WHEN val #>> '{}' !~ '^[a-z0-9][a-z0-9_.-]{0,62}$' THEN
            ARRAY[format('%s: "%s" is not a valid tag (1 to 63 of a-z 0-9 _ . -, starting with a letter or digit)', path, val #>> '{}')]
        ELSE '{}'::text[] END
$$;

CREATE FUNCTION ductape._check_type(val jsonb, path text, types text[])
RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN val IS NULL OR jsonb_typeof(val) = ANY (types) THEN '{}'::text[]
                ELSE ARRAY[format('%s: must be %s', path, array_to_string(types, ' or '))] END
$$;

CREATE FUNCTION ductape._check_keys(obj jsonb, path text, allowed text[])
RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(array_agg(format('%s/%s: unknown key', path, k) ORDER BY k), '{}')
      FROM jsonb_object_keys(CASE WHEN jsonb_typeof(obj) = 'object' THEN obj ELSE '{}' END) AS k
     WHERE k <> ALL (allowed)
$$;

CREATE FUNCTION ductape._check_int(val jsonb, path text, lo bigint, hi bigint)
RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN val IS NULL THEN '{}'::text[]
        WHEN jsonb_typeof(val) <> 'number' OR (val #>> '{}')::numeric <> trunc((val #>> '{}')::numeric)
            THEN ARRAY[path || ': must be an integer']
        WHEN (val #>> '{}')::numeric NOT BETWEEN lo AND hi
            THEN ARRAY[format('%s: must be between %s and %s', path, lo, hi)]
        ELSE '{}'::text[] END
$$;

CREATE FUNCTION ductape._check_request_type(val jsonb, path text)
RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN val IS NULL THEN '{}'::text[]
        WHEN jsonb_typeof(val) <> 'string' OR val #>> '{}' NOT IN
             ('application/json', 'application/x-www-form-urlencoded', 'multipart/form-data', 'text/plain')
            THEN ARRAY[format('%s: must be one of application/json, application/x-www-form-urlencoded, multipart/form-data, text/plain', path)]
        ELSE '{}'::text[] END
$$;

-- A retry policy (DESIGN.md §6.1).
CREATE FUNCTION ductape._check_retries(p jsonb, path text)
RETURNS text[] LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    errs text[] := '{}';
    e jsonb;
    i integer := 0;
BEGIN
    IF p IS NULL THEN RETURN errs; END IF;
    IF jsonb_typeof(p) <> 'object' THEN RETURN ARRAY[path || ': must be an object']; END IF;
    errs := errs || ductape._check_keys(p, path, '{max,on,initial_delay_ms,max_delay_ms,multiplier,jitter,respect_retry_after,unsafe}');
    errs := errs || ductape._check_int(p->'max', path || '/max', 0, 100);
    errs := errs || ductape._check_int(p->'initial_delay_ms', path || '/initial_delay_ms', 0, 86400000);
    errs := errs || ductape._check_int(p->'max_delay_ms', path || '/max_delay_ms', 0, 86400000);
    errs := errs || ductape._check_type(p->'multiplier', path || '/multiplier', '{number}');
    errs := errs || ductape._check_type(p->'respect_retry_after', path || '/respect_retry_after', '{boolean}');
    errs := errs || ductape._check_type(p->'unsafe', path || '/unsafe', '{boolean}');
    IF jsonb_typeof(p->'multiplier') = 'number' AND (p->>'multiplier')::numeric NOT BETWEEN 1 AND 10 THEN
        errs := errs || (path || '/multiplier: must be between 1 and 10');
    END IF;
    IF p ? 'jitter' AND (jsonb_typeof(p->'jitter') <> 'number' OR (p->>'jitter')::numeric NOT BETWEEN 0 AND 1) THEN
        errs := errs || (path || '/jitter: must be a number between 0 and 1');
    END IF;
    IF p ? 'on' THEN
        IF jsonb_typeof(p->'on') <> 'array' THEN
            errs := errs || (path || '/on: must be an array of statuses, "timeout" and "network"');
        ELSE
            FOR e IN SELECT * FROM jsonb_array_elements(p->'on') LOOP
                IF NOT ((jsonb_typeof(e) = 'number' AND e::text ~ '^[0-9]{1,3}$' AND e::text::int BETWEEN 100 AND 599)
                        OR e IN ('"timeout"', '"network"')) THEN
                    errs := errs || format('%s/on/%s: must be a status (100-599), "timeout" or "network"', path, i);
                END IF;
                i := i + 1;
            END LOOP;
        END IF;
    END IF;
    RETURN errs;
END
$$;

-- One action; path is its JSON pointer in the app spec.
CREATE FUNCTION ductape._check_action(a jsonb, path text, constants jsonb, variables jsonb)
RETURNS text[] LANGUAGE plpgsql STABLE AS $$
DECLARE
    errs text[] := '{}';
    k text;
    params text[];
    props jsonb;
    s jsonb;
    i integer := 0;
BEGIN
    IF jsonb_typeof(a) IS DISTINCT FROM 'object' THEN
        RETURN ARRAY[path || ': an action must be an object'];
    END IF;
    errs := errs || ductape._check_keys(a, path, '{tag,name,description,method,resource,request_type,headers,query,body,input,success,timeout_ms,retries}');
    errs := errs || ductape._check_tag(a->'tag', path || '/tag');
    errs := errs || ductape._check_type(a->'name', path || '/name', '{string}');
    errs := errs || ductape._check_type(a->'description', path || '/description', '{string}');
    IF a->'method' IS NULL THEN
        errs := errs || (path || '/method: is required');
    ELSIF jsonb_typeof(a->'method') <> 'string' OR upper(a->>'method') NOT IN ('GET','POST','PUT','PATCH','DELETE','HEAD') THEN
        errs := errs || format('%s/method: unknown method %s (use GET, POST, PUT, PATCH, DELETE or HEAD)', path, a->'method');
    END IF;
    IF a->'resource' IS NULL THEN
        errs := errs || (path || '/resource: is required');
    ELSIF jsonb_typeof(a->'resource') <> 'string' OR a->>'resource' !~ '^/' THEN
        errs := errs || (path || '/resource: must be a path starting with "/"');
    ELSIF a->>'resource' ~ '[\s?#]' THEN
        errs := errs || (path || '/resource: must not contain spaces, "?" or "#" (put query parameters in "query")');
    ELSE
        IF a->>'resource' ~ ':(/|$)' THEN
            errs := errs || (path || '/resource: ":" must be followed by a parameter name');
        END IF;
        SELECT array_agg(m[1]) INTO params FROM regexp_matches(a->>'resource', ':([A-Za-z0-9_]+)', 'g') AS m;
        -- With a declared input schema, each :param must be one of its properties.
        props := a #> '{input,properties}';
        IF params IS NOT NULL AND jsonb_typeof(props) = 'object' THEN
            FOREACH k IN ARRAY params LOOP
                IF NOT props ? k THEN
                    errs := errs || format('%s/resource: path parameter :%s has no source (add it to input.properties)', path, k);
                ELSIF coalesce(props->k->>'in', 'params') <> 'params' THEN
                    errs := errs || format('%s/input/properties/%s/in: path parameter :%s must be "in": "params"', path, k, k);
                END IF;
            END LOOP;
        END IF;
    END IF;
    errs := errs || ductape._check_request_type(a->'request_type', path || '/request_type');
    FOREACH k IN ARRAY ARRAY['headers', 'query', 'body'] LOOP
        IF a ? k THEN
            IF jsonb_typeof(a->k) <> 'object' THEN
                errs := errs || format('%s/%s: must be an object', path, k);
            ELSE
                errs := errs || ductape._template_errors(a->k, path || '/' || k, constants, variables);
            END IF;
        END IF;
    END LOOP;
    IF jsonb_typeof(a->'headers') = 'object' THEN
        FOR k IN SELECT key FROM jsonb_each(a->'headers') WHERE key !~ '^[!#$%&''*+.^_`|~0-9A-Za-z-]+$' LOOP
            errs := errs || format('%s/headers/%s: not a valid header name', path, k);
        END LOOP;
        FOR k IN SELECT key FROM jsonb_each(a->'headers') WHERE jsonb_typeof(value) = 'string' AND value #>> '{}' ~ '[\r\n]' LOOP
            errs := errs || format('%s/headers/%s: header values cannot contain CR or LF', path, k);
        END LOOP;
    END IF;
    IF a ? 'input' THEN
        IF jsonb_typeof(a->'input') <> 'object' THEN
            errs := errs || (path || '/input: must be a JSON Schema object');
        ELSE
            errs := errs || ductape._schema_check(a->'input', path || '/input');
        END IF;
        IF jsonb_typeof(a #> '{input,properties}') = 'object' THEN
            FOR k, s IN SELECT key, value FROM jsonb_each(a #> '{input,properties}') LOOP
                IF jsonb_typeof(s) = 'object' AND s ? 'in' AND s->>'in' NOT IN ('body', 'query', 'params', 'headers') THEN
                    errs := errs || format('%s/input/properties/%s/in: must be body, query, params or headers', path, k);
                END IF;
            END LOOP;
        END IF;
    END IF;
    IF a ? 'success' THEN
        IF jsonb_typeof(a->'success') <> 'array' OR jsonb_array_length(a->'success') = 0 THEN
            errs := errs || (path || '/success: must be a non-empty array of statuses');
        ELSE
            FOR s IN SELECT * FROM jsonb_array_elements(a->'success') LOOP
                errs := errs || ductape._check_int(s, format('%s/success/%s', path, i), 100, 599);
                i := i + 1;
            END LOOP;
        END IF;
    END IF;
    errs := errs || ductape._check_int(a->'timeout_ms', path || '/timeout_ms', 1, 86400000);
    errs := errs || ductape._check_retries(a->'retries', path || '/retries');
    RETURN errs;
END
$$;

-- An auth block (DESIGN.md §5).
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

-- One inbound webhook (DESIGN.md §8): verification and the id/type selectors.
CREATE FUNCTION ductape._check_webhook(w jsonb, path text, constants jsonb, variables jsonb)
RETURNS text[] LANGUAGE plpgsql STABLE AS $$
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

CREATE FUNCTION ductape._raise_invalid(what text, errs text[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF cardinality(errs) > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('invalid %s', what),
            DETAIL = array_to_string(errs, E'\n'),
            HINT = 'Fix each listed path (a JSON pointer into the definition) and define it again; nothing was stored.';
    END IF;
END
$$;

---------------------------------------------------------------------------
-- Apps and actions (DESIGN.md §1)
---------------------------------------------------------------------------

-- The stored part of an action spec: everything but the tag; method upper-cased.
CREATE FUNCTION ductape._action_body(a jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT (a - 'tag') || jsonb_build_object('method', upper(a->>'method'))
$$;

CREATE FUNCTION ductape.app_define(spec jsonb) RETURNS text
LANGUAGE plpgsql AS $$
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
LANGUAGE plpgsql AS $$
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

CREATE FUNCTION ductape.app_export(tag text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object('tag', r.tag, 'name', r.name, 'description', r.description))
           || r.spec
           || jsonb_build_object('actions', coalesce(
                (SELECT jsonb_agg(jsonb_build_object('tag', x.tag) || x.spec ORDER BY x.position, x.tag)
                   FROM ductape.actions x WHERE x.app = r.tag), '[]'))
      FROM ductape._app_row(tag) r
$$;

CREATE FUNCTION ductape.app_drop(tag text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ductape._app_row(tag);
    DELETE FROM ductape.apps a WHERE a.tag = app_drop.tag;
END
$$;

-- Where an unprefixed input key goes (DESIGN.md §2), as describe reports it.
CREATE FUNCTION ductape._placement(a jsonb, key text, prop jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN prop ? 'in' THEN prop->>'in'
        WHEN (a->>'resource') || '/' LIKE '%:' || replace(replace(replace(key, '\', '\\'), '%', '\%'), '_', '\_') || '/%' THEN 'params'
        WHEN a->>'method' IN ('GET', 'DELETE', 'HEAD') THEN 'query'
        ELSE 'body' END
$$;

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

---------------------------------------------------------------------------
-- Import: OpenAPI 3.0/3.1 and Postman v2.1 (DESIGN.md §10)
---------------------------------------------------------------------------

CREATE FUNCTION ductape._document_parse(doc text, what text) RETURNS jsonb
LANGUAGE c IMMUTABLE AS 'MODULE_PATHNAME', 'dt_document_parse';
CREATE FUNCTION ductape._json_refs(doc jsonb, OUT at text, OUT ref text) RETURNS SETOF record
LANGUAGE c IMMUTABLE STRICT AS 'MODULE_PATHNAME', 'dt_json_refs';
CREATE FUNCTION ductape._ref_target(doc jsonb, ref text) RETURNS jsonb
LANGUAGE c IMMUTABLE STRICT AS 'MODULE_PATHNAME', 'dt_ref_target';
CREATE FUNCTION ductape._ref_path(ref text) RETURNS text[]
LANGUAGE c IMMUTABLE STRICT AS 'MODULE_PATHNAME', 'dt_ref_path';

-- "listPets", "GET /pets/{id}" -> "list-pets", "get-pets-id" (at most 63 characters).
CREATE FUNCTION ductape._kebab(s text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT nullif(rtrim(left(trim(BOTH '-' FROM lower(regexp_replace(
               regexp_replace(regexp_replace(s, '([A-Z]+)([A-Z][a-z])', '\1-\2', 'g'),
                              '([a-z0-9])([A-Z])', '\1-\2', 'g'),
               '[^A-Za-z0-9]+', '-', 'g'))), 63), '-'), '')
$$;

-- A JSON pointer segment.
CREATE FUNCTION ductape._pointer_escape(s text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT replace(replace(s, '~', '~0'), '/', '~1') $$;

-- A tag not in taken: base, else base-2, base-3, ...
CREATE FUNCTION ductape._unique_tag(base text, taken text[]) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    t text := coalesce(base, 'action');
    n integer := 1;
BEGIN
    WHILE t = ANY (taken) LOOP
        n := n + 1;
        t := rtrim(left(coalesce(base, 'action'), 62 - length(n::text)), '-') || '-' || n;
    END LOOP;
    RETURN t;
END
$$;

-- The actions' tags made unique: the n-th action with the same tag gets
-- "-n" (in one pass; the slow way only if a suffixed tag meets a real one).
CREATE FUNCTION ductape._unique_tags(actions jsonb[]) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    result jsonb;
    taken text[] := '{}';
    a jsonb;
    done jsonb[] := '{}';
BEGIN
    SELECT jsonb_agg(jsonb_set(u.a, '{tag}', to_jsonb(CASE WHEN k = 1 THEN base
                         ELSE rtrim(left(base, 62 - length(k::text)), '-') || '-' || k END)) ORDER BY ord)
      INTO result
      FROM (SELECT x.a, x.ord, coalesce(x.a->>'tag', 'action') AS base,
                   row_number() OVER (PARTITION BY coalesce(x.a->>'tag', 'action') ORDER BY x.ord) AS k
              FROM unnest(actions) WITH ORDINALITY x(a, ord)) u;
    IF (SELECT count(DISTINCT x->>'tag') FROM jsonb_array_elements(result) x) < jsonb_array_length(result) THEN
        FOREACH a IN ARRAY actions LOOP
            a := jsonb_set(a, '{tag}', to_jsonb(ductape._unique_tag(a->>'tag', taken)));
            taken := taken || (a->>'tag');
            done := done || a;
        END LOOP;
        result := to_jsonb(done);
    END IF;
    RETURN coalesce(result, '[]');
END
$$;

-- Follow a chain of $refs (a parameter, a request body, a path item) to
-- the object it names; 22023 with the pointer when it dangles or loops.
CREATE FUNCTION ductape._deref(doc jsonb, val jsonb, at text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    seen text[] := '{}';
BEGIN
    WHILE jsonb_typeof(val) = 'object' AND jsonb_typeof(val->'$ref') = 'string' LOOP
        IF val->>'$ref' = ANY (seen) THEN
            RAISE EXCEPTION USING ERRCODE = '22023',
                MESSAGE = 'invalid OpenAPI document',
                DETAIL = format('%s/$ref: circular reference: %s', at, array_to_string(seen || (val->>'$ref'), ' -> '));
        END IF;
        seen := seen || (val->>'$ref');
        at := substr(val->>'$ref', 2);
        val := ductape._ref_target(doc, val->>'$ref');
    END LOOP;
    RETURN val;
END
$$;

-- Copy into schema everything its local $refs reach in doc, at the same
-- pointers, so the action's input schema resolves on its own.
CREATE FUNCTION ductape._with_refs(schema jsonb, doc jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    todo text[];
    done text[] := '{}';
    r text;
    path text[];
    target jsonb;
    i integer;
BEGIN
    SELECT coalesce(array_agg(DISTINCT x.ref), '{}') INTO todo FROM ductape._json_refs(schema) x;
    WHILE cardinality(todo) > 0 LOOP
        r := todo[1];
        todo := todo[2:];
        CONTINUE WHEN r = ANY (done);
        done := done || r;
        path := ductape._ref_path(r);
        target := ductape._ref_target(doc, r);
        CONTINUE WHEN target IS NULL OR cardinality(path) = 0;
        FOR i IN 1 .. cardinality(path) - 1 LOOP
            IF jsonb_typeof(schema #> path[1:i]) IS DISTINCT FROM 'object' THEN
                schema := jsonb_set(schema, path[1:i], '{}');
            END IF;
        END LOOP;
        schema := jsonb_set(schema, path, target);
        todo := todo || ARRAY(SELECT DISTINCT x.ref FROM ductape._json_refs(target) x WHERE x.ref <> ALL (done));
    END LOOP;
    RETURN schema;
END
$$;

-- Shared by the importers: refuse with every problem, refuse an existing
-- app unless asked to update it, and define the app (an update keeps what
-- the document does not describe: constants, variables, webhooks, retries,
-- and envs/auth it has none of).
CREATE FUNCTION ductape._import_refuse(what text, errs text[], hint text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF cardinality(errs) > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'invalid ' || what,
            DETAIL = array_to_string(errs, E'\n'), HINT = hint || ' Nothing was stored.';
    END IF;
END
$$;

CREATE FUNCTION ductape._import_check_exists(tag text, update_if_exists boolean) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM ductape.apps x WHERE x.tag = _import_check_exists.tag) AND NOT update_if_exists THEN
        RAISE EXCEPTION USING ERRCODE = '42710',
            MESSAGE = format('app "%s" already exists', tag),
            HINT = 'Pass update_if_exists => true to replace its actions, or app => ''another-tag''.';
    END IF;
END
$$;

CREATE FUNCTION ductape._import_define(spec jsonb) RETURNS text
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    IF EXISTS (SELECT 1 FROM ductape.apps x WHERE x.tag = spec->>'tag') THEN
        spec := (ductape.app_export(spec->>'tag') - 'actions') || spec;
    END IF;
    RETURN ductape.app_define(spec);
END
$$;

-- An auth template (DESIGN.md §5) whose credentials are $Secret{APP_...}.
CREATE FUNCTION ductape._import_auth(kind text, tag text, key_in text DEFAULT NULL, key_name text DEFAULT NULL)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE kind
        WHEN 'bearer' THEN jsonb_build_object('type', 'bearer', 'token', format('$Secret{%s_TOKEN}', p))
        WHEN 'basic' THEN jsonb_build_object('type', 'basic', 'username', format('$Secret{%s_USERNAME}', p),
                                             'password', format('$Secret{%s_PASSWORD}', p))
        WHEN 'api_key' THEN jsonb_build_object('type', 'api_key', 'in', key_in, 'name', key_name,
                                               'value', format('$Secret{%s_API_KEY}', p))
        END
      FROM (SELECT upper(regexp_replace(tag, '[^a-z0-9]+', '_', 'g')) AS p) x
$$;

-- The auth template for the document's security scheme (DESIGN.md §5), with
-- $Secret{APP_...} placeholders for the credentials.
CREATE FUNCTION ductape._openapi_auth(doc jsonb, tag text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    name text;
    s jsonb;
    f jsonb;
    p text := upper(regexp_replace(tag, '[^a-z0-9]+', '_', 'g'));
BEGIN
    -- the first scheme the document requires, else the first it declares
    SELECT k INTO name FROM jsonb_array_elements(coalesce(doc->'security', '[]')) req, jsonb_object_keys(req) k LIMIT 1;
    IF name IS NULL THEN
        SELECT k INTO name FROM jsonb_object_keys(coalesce(doc #> '{components,securitySchemes}', '{}')) k LIMIT 1;
    END IF;
    s := ductape._deref(doc, doc #> ARRAY['components', 'securitySchemes', name], '/components/securitySchemes/' || name);
    IF name IS NULL OR jsonb_typeof(s) IS DISTINCT FROM 'object' THEN
        RETURN NULL;
    END IF;
    IF s->>'type' = 'http' AND lower(s->>'scheme') IN ('bearer', 'basic') THEN
        RETURN ductape._import_auth(lower(s->>'scheme'), tag);
    ELSIF s->>'type' = 'apiKey' AND s->>'in' IN ('header', 'query') AND s->>'name' IS NOT NULL THEN
        RETURN ductape._import_auth('api_key', tag, s->>'in', s->>'name');
    ELSIF s->>'type' = 'oauth2' THEN
        f := coalesce(s #> '{flows,clientCredentials}', s #> '{flows,authorizationCode}');
        IF f->>'tokenUrl' ~* '^https?://' THEN
            RETURN jsonb_strip_nulls(jsonb_build_object(
                'type', 'oauth2',
                'grant', CASE WHEN s #> '{flows,clientCredentials}' IS NOT NULL THEN 'client_credentials' ELSE 'refresh_token' END,
                'token_url', f->>'tokenUrl',
                'client_id', format('$Secret{%s_CLIENT_ID}', p),
                'client_secret', format('$Secret{%s_CLIENT_SECRET}', p),
                'scope', (SELECT string_agg(k, ' ' ORDER BY k) FROM jsonb_object_keys(coalesce(f->'scopes', '{}')) k)));
        END IF;
    END IF;
    RAISE NOTICE 'security scheme "%" (%) has no ductape equivalent; the app has no auth', name, coalesce(s->>'type', '?')
        USING HINT = 'Set "auth" with ductape.app_define, or pass the credential in each call.';
    RETURN NULL;
END
$$;

-- "/pets/{pet-id}" -> "/pets/:pet_id"
CREATE FUNCTION ductape._openapi_resource(path text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    m text[];
    r text := path;
BEGIN
    FOR m IN SELECT regexp_matches(path, '\{([^}]*)\}', 'g') LOOP
        r := replace(r, '{' || m[1] || '}', ':' || regexp_replace(m[1], '[^A-Za-z0-9_]', '_', 'g'));
    END LOOP;
    RETURN r;
END
$$;

-- Leave out the "pattern"s (and patternProperties) PostgreSQL's regular
-- expressions cannot compile (ECMAScript-only syntax such as [\w-] or
-- [0-9-_]); each one left out is added to dropped.
CREATE FUNCTION ductape._drop_bad_patterns(schema jsonb, INOUT dropped text[], OUT result jsonb)
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    problem text;
BEGIN
    result := schema;
    FOREACH problem IN ARRAY ductape._schema_check(schema, '') LOOP
        CONTINUE WHEN problem !~ ': invalid regular expression: ';
        result := result #- ductape._ref_path('#' || split_part(problem, ': invalid regular expression: ', 1));
        dropped := dropped || problem;
    END LOOP;
END
$$;

-- One OpenAPI operation -> one action spec (without its tag).
CREATE FUNCTION ductape._openapi_action(doc jsonb, path text, item jsonb, method text, at text)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    op jsonb := item->method;
    props jsonb := '{}';
    req text[] := '{}';
    params jsonb := '[]';
    p jsonb;
    i integer := 0;
    name text;
    key text;
    place text;
    prop jsonb;
    rb jsonb;
    media text;
    request_type text;
    bs jsonb;
    input jsonb;
BEGIN
    -- (No FOR ... IN SELECT loops here: a cursor copies every variable of
    -- the function, doc included, each time it opens.)
    -- path-level parameters, then the operation's (which win on name + in)
    FOREACH p IN ARRAY ARRAY(
            SELECT ductape._deref(doc, e.value, format('%s/parameters/%s', substr(at, 1, length(at) - length(method) - 1), e.ordinality - 1))
              FROM jsonb_array_elements(coalesce(item->'parameters', '[]')) WITH ORDINALITY e) LOOP
        params := params || jsonb_build_array(p);
    END LOOP;
    FOREACH p IN ARRAY ARRAY(
            SELECT ductape._deref(doc, e.value, format('%s/parameters/%s', at, e.ordinality - 1))
              FROM jsonb_array_elements(coalesce(op->'parameters', '[]')) WITH ORDINALITY e) LOOP
        SELECT coalesce(jsonb_agg(x), '[]') INTO params FROM jsonb_array_elements(params) x
         WHERE NOT (x->>'name' = p->>'name' AND x->>'in' = p->>'in');
        params := params || jsonb_build_array(p);
    END LOOP;
    FOREACH p IN ARRAY ARRAY(SELECT jsonb_array_elements(params)) LOOP
        place := CASE p->>'in' WHEN 'path' THEN 'params' WHEN 'query' THEN 'query' WHEN 'header' THEN 'headers' END;
        CONTINUE WHEN place IS NULL OR p->>'name' IS NULL;      -- cookies are not supported
        name := CASE WHEN place = 'params' THEN regexp_replace(p->>'name', '[^A-Za-z0-9_]', '_', 'g') ELSE p->>'name' END;
        key := CASE WHEN props ? name THEN place || ':' || name ELSE name END;
        prop := coalesce(p->'schema',
                         (SELECT c.value->'schema' FROM jsonb_each(coalesce(p->'content', '{}')) c LIMIT 1), '{}');
        IF jsonb_typeof(prop) <> 'object' THEN prop := '{}'; END IF;
        prop := prop || jsonb_strip_nulls(jsonb_build_object('in', place, 'description', p->'description'));
        props := props || jsonb_build_object(key, prop);
        IF place = 'params' OR (p->>'required')::boolean THEN
            req := req || key;
        END IF;
    END LOOP;

    -- the request body: JSON first, then forms, then text
    rb := ductape._deref(doc, op->'requestBody', at || '/requestBody');
    IF jsonb_typeof(rb->'content') = 'object' THEN
        SELECT k INTO media FROM jsonb_object_keys(rb->'content') k
         ORDER BY CASE WHEN k ~* '^application/(.*\+)?json' OR k = '*/*' THEN 0
                       WHEN k = 'application/x-www-form-urlencoded' THEN 1
                       WHEN k = 'multipart/form-data' THEN 2
                       WHEN k = 'text/plain' THEN 3 ELSE 4 END, k
         LIMIT 1;
        request_type := CASE WHEN media IN ('application/x-www-form-urlencoded', 'multipart/form-data', 'text/plain')
                             THEN media END;
        bs := ductape._deref(doc, rb #> ARRAY['content', media, 'schema'],
                             format('%s/requestBody/content/%s/schema', at, ductape._pointer_escape(media)));
        -- an allOf of objects is one object
        IF jsonb_typeof(bs->'allOf') = 'array' AND bs->'properties' IS NULL THEN
            SELECT jsonb_build_object(
                       'properties', coalesce(jsonb_object_agg(pp.key, pp.value) FILTER (WHERE pp.key IS NOT NULL), '{}'),
                       'required', coalesce(jsonb_agg(DISTINCT rq) FILTER (WHERE rq IS NOT NULL), '[]'))
              INTO bs
              FROM jsonb_array_elements(bs->'allOf') WITH ORDINALITY a(s, n)
              LEFT JOIN LATERAL jsonb_each(coalesce(ductape._deref(doc, a.s, format('%s/requestBody/allOf/%s', at, a.n - 1))->'properties', '{}')) pp ON true
              LEFT JOIN LATERAL jsonb_array_elements(coalesce(ductape._deref(doc, a.s, at)->'required', '[]')) rq ON true;
        END IF;
        IF jsonb_typeof(bs->'properties') = 'object' THEN
            FOREACH name IN ARRAY ARRAY(SELECT jsonb_object_keys(bs->'properties')) LOOP
                prop := bs->'properties'->name;
                CONTINUE WHEN jsonb_typeof(prop) = 'object' AND prop->>'readOnly' = 'true';
                key := CASE WHEN props ? name THEN 'body:' || name ELSE name END;
                IF jsonb_typeof(prop) <> 'object' THEN prop := '{}'; END IF;
                props := props || jsonb_build_object(key, prop || '{"in": "body"}');
                IF (rb->>'required')::boolean AND coalesce(bs->'required', '[]') ? name THEN
                    req := req || key;
                END IF;
            END LOOP;
        END IF;
    END IF;

    input := jsonb_build_object('type', 'object', 'properties', props);
    IF cardinality(req) > 0 THEN
        input := input || jsonb_build_object('required', to_jsonb(req));
    END IF;
    RETURN jsonb_strip_nulls(jsonb_build_object(
        'name', op->'summary', 'description', op->'description',
        'method', upper(method),
        'resource', ductape._openapi_resource(substring(path FROM '^[^?#]*')),
        'request_type', request_type,
        'input', ductape._with_refs(input, doc)));
END
$$;

CREATE FUNCTION ductape.import_openapi(spec text, app text DEFAULT NULL, update_if_exists boolean DEFAULT false,
                                       base_url text DEFAULT NULL)
RETURNS text LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    doc jsonb := ductape._document_parse(spec, 'the OpenAPI document');
    errs text[] := '{}';
    tag text;
    envs jsonb := '[]';
    slugs text[] := '{}';
    s jsonb;
    url text;
    paths jsonb;
    path text;
    item jsonb;
    m text;
    at text;
    a jsonb;
    actions jsonb[] := '{}';
    t text;
    auth jsonb;
    skipped integer := 0;
    dropped text[] := '{}';
    app_spec jsonb;
BEGIN
    -- validate the document first; nothing is stored unless all of it is usable
    IF jsonb_typeof(doc) <> 'object' THEN
        errs := errs || '/: an OpenAPI document is an object'::text;
    ELSIF doc ? 'swagger' THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'Swagger 2.0 documents are not supported',
            DETAIL = format('/swagger: the document is Swagger %s; import_openapi reads OpenAPI 3.0 and 3.1.', doc->>'swagger'),
            HINT = 'Convert it to OpenAPI 3 first (for example with swagger2openapi), then import the result.';
    ELSIF jsonb_typeof(doc->'openapi') IS DISTINCT FROM 'string' OR doc->>'openapi' !~ '^3\.[01](\.|$)' THEN
        errs := errs || format('/openapi: must be "3.0.x" or "3.1.x", not %s', coalesce((doc->'openapi')::text, 'missing'));
    END IF;
    IF cardinality(errs) = 0 THEN
        errs := errs || ductape._check_type(doc->'paths', '/paths', '{object}');
        errs := errs || ductape._check_type(doc->'servers', '/servers', '{array}');
        tag := coalesce(app, ductape._kebab(doc #>> '{info,title}'));
        IF tag IS NULL THEN
            errs := errs || '/info/title: is required to name the app (or pass app)'::text;
        ELSE
            errs := errs || ductape._check_tag(to_jsonb(tag), CASE WHEN app IS NULL THEN '/info/title' ELSE 'app' END);
        END IF;
        -- every $ref must be local and point at something
        SELECT errs || coalesce(array_agg(format('%s/$ref: %s %s', x.at, to_jsonb(x.ref),
                   CASE WHEN x.ref NOT LIKE '#%' THEN 'is not a local reference (only "#/..." references are supported)'
                        ELSE 'points to nothing' END) ORDER BY x.at), '{}')
          INTO errs
          FROM ductape._json_refs(doc) x
         WHERE ductape._ref_target(doc, x.ref) IS NULL;
    END IF;
    PERFORM ductape._import_refuse('OpenAPI document', errs, 'Each line is a JSON pointer into the document.');
    PERFORM ductape._import_check_exists(tag, update_if_exists);

    -- servers -> envs: one server (or base_url) is both dev and prd
    IF base_url IS NOT NULL THEN
        envs := jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', base_url),
                                  jsonb_build_object('slug', 'prd', 'base_url', base_url));
    ELSE
        FOREACH s IN ARRAY ARRAY(SELECT jsonb_array_elements(coalesce(doc->'servers', '[]'))) LOOP
            url := s->>'url';
            FOREACH t IN ARRAY ARRAY(SELECT jsonb_object_keys(coalesce(s->'variables', '{}'))) LOOP
                url := replace(url, '{' || t || '}', coalesce(s #>> ARRAY['variables', t, 'default'], ''));
            END LOOP;
            IF url !~* '^https?://' THEN
                RAISE NOTICE 'server "%" is not an absolute http(s) URL; it is not imported', url
                    USING HINT = 'Pass base_url to import_openapi.';
                CONTINUE;
            END IF;
            t := ductape._unique_tag(coalesce(ductape._kebab(s->>'description'), 'server-' || (cardinality(slugs) + 1)), slugs);
            slugs := slugs || t;
            envs := envs || jsonb_build_array(jsonb_build_object('slug', t, 'base_url', url));
        END LOOP;
        IF jsonb_array_length(envs) = 1 THEN
            envs := jsonb_build_array(jsonb_set(envs->0, '{slug}', '"dev"'), jsonb_set(envs->0, '{slug}', '"prd"'));
        ELSIF jsonb_array_length(envs) = 0 THEN
            RAISE NOTICE 'the document names no usable server: the app has no environments'
                USING HINT = 'Pass base_url to import_openapi, or add envs with ductape.app_define.';
        END IF;
    END IF;

    -- operations -> actions, by path then method
    paths := coalesce(doc->'paths', '{}');
    FOREACH path IN ARRAY ARRAY(SELECT k FROM jsonb_object_keys(paths) k ORDER BY k COLLATE "C") LOOP
        at := '/paths/' || ductape._pointer_escape(path);
        item := ductape._deref(doc, paths->path, at);
        CONTINUE WHEN jsonb_typeof(item) IS DISTINCT FROM 'object';
        skipped := skipped + (SELECT count(*) FROM jsonb_object_keys(item) k WHERE k IN ('options', 'trace'));
        FOREACH m IN ARRAY ARRAY['get', 'put', 'post', 'delete', 'patch', 'head'] LOOP
            CONTINUE WHEN jsonb_typeof(item->m) IS DISTINCT FROM 'object';
            a := ductape._openapi_action(doc, path, item, m, at || '/' || m);
            t := coalesce(ductape._kebab(coalesce(item #>> ARRAY[m, 'operationId'], m || ' ' || path)), 'action');
            a := jsonb_build_object('tag', t) || a;
            SELECT d.dropped, jsonb_set(a, '{input}', d.result) INTO dropped, a
              FROM ductape._drop_bad_patterns(a->'input', dropped) d;
            errs := errs || ductape._check_action(a, at || '/' || m, NULL, NULL);
            actions := actions || a;
        END LOOP;
    END LOOP;
    IF cardinality(dropped) > 0 THEN
        RAISE NOTICE '% regular expression(s) PostgreSQL cannot compile were left out of the input schemas', cardinality(dropped)
            USING DETAIL = array_to_string((SELECT array_agg(DISTINCT x) FROM unnest(dropped) x), E'\n'),
                  HINT = 'Paths are JSON pointers into the action''s input schema (components keep the document''s pointers).';
    END IF;
    IF skipped > 0 THEN
        RAISE NOTICE '% OPTIONS/TRACE operation(s) not imported (ductape actions use GET, POST, PUT, PATCH, DELETE and HEAD)', skipped;
    END IF;
    PERFORM ductape._import_refuse('OpenAPI document', errs,
        'Each line is a JSON pointer into the document (then into the action made from it).');

    auth := ductape._openapi_auth(doc, tag);
    app_spec := jsonb_strip_nulls(jsonb_build_object(
        'tag', tag, 'name', doc #> '{info,title}', 'description', doc #> '{info,description}',
        'envs', CASE WHEN jsonb_array_length(envs) > 0 THEN envs END,
        'auth', auth, 'actions', ductape._unique_tags(actions)));
    RETURN ductape._import_define(app_spec);
END
$$;

-- "{{name}}" in a Postman string -> "$Variable{name}" ("$" doubled first).
CREATE FUNCTION ductape._postman_template(s text) RETURNS text
LANGUAGE sql IMMUTABLE AS $f$
    SELECT regexp_replace(replace(s, '$', '$$'), '\{\{\s*([^{}]+?)\s*\}\}', '$Variable{\1}', 'g')
$f$;

-- The JSON Schema type of an example value.
CREATE FUNCTION ductape._example_schema(v jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE jsonb_typeof(v)
        WHEN 'number' THEN jsonb_build_object('type', CASE WHEN v::text ~ '^-?\d+$' THEN 'integer' ELSE 'number' END)
        WHEN 'null' THEN '{}'::jsonb
        ELSE jsonb_build_object('type', jsonb_typeof(v)) END
$$;

-- The requests of a Postman item list, folders flattened: (folder path, item, pointer).
CREATE FUNCTION ductape._postman_requests(items jsonb, folders text, at text,
                                          OUT folder text, OUT item jsonb, OUT ptr text)
RETURNS SETOF record LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    e record;
BEGIN
    FOR e IN SELECT value, ordinality - 1 AS i FROM jsonb_array_elements(items) WITH ORDINALITY LOOP
        IF jsonb_typeof(e.value->'item') = 'array' THEN
            RETURN QUERY SELECT * FROM ductape._postman_requests(e.value->'item',
                concat_ws(' ', folders, e.value->>'name'), format('%s/%s/item', at, e.i));
        ELSE
            folder := folders;
            item := e.value;
            ptr := format('%s/%s', at, e.i);
            RETURN NEXT;
        END IF;
    END LOOP;
END
$$;

CREATE FUNCTION ductape.import_postman(collection jsonb, app text DEFAULT NULL, update_if_exists boolean DEFAULT false)
RETURNS text LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    errs text[] := '{}';
    tag text;
    vars jsonb := '{}';
    values jsonb := '{}';
    r record;
    req jsonb;
    url jsonb;
    raw text;
    base text;
    bases jsonb := '{}';
    resource text;
    method text;
    props jsonb;
    required text[];
    headers jsonb;
    request_type text;
    body jsonb;
    e jsonb;
    k text;
    a jsonb;
    actions jsonb[] := '{}';
    t text;
    auth jsonb;
    skipped integer := 0;
    env_base text;
    app_spec jsonb;
BEGIN
    IF jsonb_typeof(collection) IS DISTINCT FROM 'object' THEN
        errs := errs || '/: a Postman collection is a JSON object'::text;
    ELSE
        IF coalesce(collection #>> '{info,schema}', '') !~ 'collection/v2\.1' THEN
            errs := errs || format('/info/schema: must be the Postman collection v2.1 schema URL, not %s',
                                   coalesce((collection #> '{info,schema}')::text, 'missing'));
        END IF;
        IF jsonb_typeof(collection->'item') IS DISTINCT FROM 'array' THEN
            errs := errs || '/item: is required: the array of requests and folders'::text;
        END IF;
        tag := coalesce(app, ductape._kebab(collection #>> '{info,name}'));
        IF tag IS NULL THEN
            errs := errs || '/info/name: is required to name the app (or pass app)'::text;
        ELSE
            errs := errs || ductape._check_tag(to_jsonb(tag), CASE WHEN app IS NULL THEN '/info/name' ELSE 'app' END);
        END IF;
    END IF;
    PERFORM ductape._import_refuse('Postman collection', errs, 'Each line is a JSON pointer into the collection.');
    PERFORM ductape._import_check_exists(tag, update_if_exists);

    -- collection variables; credentials never become stored defaults
    FOREACH e IN ARRAY ARRAY(SELECT jsonb_array_elements(coalesce(collection->'variable', '[]'))) LOOP
        CONTINUE WHEN e->>'key' IS NULL;
        values := values || jsonb_build_object(e->>'key', e->'value');
        vars := vars || jsonb_build_object(e->>'key', jsonb_strip_nulls(jsonb_build_object(
            'description', coalesce(e #>> '{description,content}', e->>'description'),
            'default', CASE WHEN e->>'key' !~* '(token|secret|password|passwd|api.?key|auth)' THEN e->'value' END)));
    END LOOP;

    FOR r IN SELECT * FROM ductape._postman_requests(collection->'item', NULL, '/item') LOOP
        req := r.item->'request';
        IF jsonb_typeof(req) = 'string' THEN
            req := jsonb_build_object('method', 'GET', 'url', req);
        END IF;
        method := upper(coalesce(req->>'method', 'GET'));
        IF method NOT IN ('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD') THEN
            skipped := skipped + 1;
            CONTINUE;
        END IF;
        -- the URL: base (scheme, host, port) and path
        url := req->'url';
        raw := CASE jsonb_typeof(url) WHEN 'string' THEN url #>> '{}' ELSE url->>'raw' END;
        IF jsonb_typeof(url) = 'object' AND url ? 'host' THEN
            base := concat(url->>'protocol' || '://',
                           CASE jsonb_typeof(url->'host') WHEN 'array'
                                THEN (SELECT string_agg(h, '.') FROM jsonb_array_elements_text(url->'host') h)
                                ELSE url->>'host' END,
                           ':' || (url->>'port'));
            resource := '/' || coalesce(CASE jsonb_typeof(url->'path') WHEN 'array'
                                THEN (SELECT string_agg(CASE jsonb_typeof(s) WHEN 'string' THEN s #>> '{}' ELSE s->>'value' END, '/')
                                        FROM jsonb_array_elements(url->'path') s)
                                ELSE url->>'path' END, '');
        ELSE
            base := substring(raw FROM '^((?:[A-Za-z][A-Za-z0-9+.-]*://)?[^/?#]*)');
            resource := coalesce(substring(raw FROM '^(?:[A-Za-z][A-Za-z0-9+.-]*://)?[^/?#]*(/[^?#]*)'), '/');
        END IF;
        IF base IS NULL OR raw IS NULL AND resource IS NULL THEN
            errs := errs || format('%s/request/url: is required', r.ptr);
            CONTINUE;
        END IF;
        bases := jsonb_set(bases, ARRAY[base], to_jsonb(coalesce((bases->>base)::int, 0) + 1));
        -- {{var}} in the path is a path parameter
        resource := regexp_replace(resource, '\{\{\s*([A-Za-z0-9_]+)\s*\}\}', ':\1', 'g');
        props := '{}';
        required := '{}';
        FOREACH k IN ARRAY ARRAY(SELECT DISTINCT m[1] FROM regexp_matches(resource, ':([A-Za-z0-9_]+)', 'g') m) LOOP
            props := props || jsonb_build_object(k, jsonb_strip_nulls(jsonb_build_object('type', 'string', 'in', 'params',
                'description', (SELECT coalesce(v #>> '{description,content}', v->>'description')
                                  FROM jsonb_array_elements(coalesce(url->'variable', '[]')) v WHERE v->>'key' = k LIMIT 1))));
            required := required || k;
        END LOOP;
        FOREACH e IN ARRAY ARRAY(SELECT jsonb_array_elements(CASE WHEN jsonb_typeof(url->'query') = 'array' THEN url->'query' ELSE '[]' END)) LOOP
            CONTINUE WHEN e->>'key' IS NULL OR (e->>'disabled')::boolean;
            k := CASE WHEN props ? (e->>'key') THEN 'query:' || (e->>'key') ELSE e->>'key' END;
            props := props || jsonb_build_object(k, jsonb_strip_nulls(jsonb_build_object('type', 'string', 'in', 'query',
                'description', coalesce(e #>> '{description,content}', e->>'description'),
                'examples', CASE WHEN e->>'value' !~ '\{\{' THEN jsonb_build_array(e->'value') END)));
        END LOOP;
        -- headers are the action's template (Content-Type follows the body)
        headers := '{}';
        FOREACH e IN ARRAY ARRAY(SELECT jsonb_array_elements(CASE WHEN jsonb_typeof(req->'header') = 'array' THEN req->'header' ELSE '[]' END)) LOOP
            CONTINUE WHEN e->>'key' IS NULL OR (e->>'disabled')::boolean OR lower(e->>'key') = 'content-type';
            headers := headers || jsonb_build_object(e->>'key', ductape._postman_template(coalesce(e->>'value', '')));
        END LOOP;
        -- the body's fields are inputs in the body
        request_type := NULL;
        body := req->'body';
        IF body->>'mode' IN ('urlencoded', 'formdata') THEN
            request_type := CASE body->>'mode' WHEN 'urlencoded' THEN 'application/x-www-form-urlencoded' ELSE 'multipart/form-data' END;
            FOREACH e IN ARRAY ARRAY(SELECT jsonb_array_elements(coalesce(body->(body->>'mode'), '[]'))) LOOP
                CONTINUE WHEN e->>'key' IS NULL OR (e->>'disabled')::boolean;
                k := CASE WHEN props ? (e->>'key') THEN 'body:' || (e->>'key') ELSE e->>'key' END;
                props := props || jsonb_build_object(k, jsonb_strip_nulls(jsonb_build_object(
                    'type', 'string', 'in', 'body',
                    'description', coalesce(e #>> '{description,content}', e->>'description',
                                            CASE WHEN e->>'type' = 'file' THEN 'a file' END))));
            END LOOP;
        ELSIF body->>'mode' = 'raw' AND coalesce(body->>'raw', '') <> '' THEN
            BEGIN
                e := (body->>'raw')::jsonb;
            EXCEPTION WHEN invalid_text_representation THEN
                e := NULL;      -- not JSON (or JSON with {{var}} outside strings)
            END;
            IF jsonb_typeof(e) = 'object' THEN
                FOREACH k IN ARRAY ARRAY(SELECT jsonb_object_keys(e)) LOOP
                    a := e->k;
                    props := props || jsonb_build_object(CASE WHEN props ? k THEN 'body:' || k ELSE k END,
                                                         ductape._example_schema(a) || '{"in": "body"}');
                END LOOP;
            ELSIF e IS NULL AND coalesce(body #>> '{options,raw,language}', 'text') = 'text' THEN
                request_type := 'text/plain';
            END IF;
        END IF;
        a := jsonb_strip_nulls(jsonb_build_object(
            'name', r.item->'name',
            'description', coalesce(req #> '{description,content}', req->'description'),
            'method', method, 'resource', resource, 'request_type', request_type,
            'headers', CASE WHEN headers <> '{}' THEN headers END,
            'input', jsonb_build_object('type', 'object', 'properties', props)
                     || CASE WHEN cardinality(required) > 0 THEN jsonb_build_object('required', to_jsonb(required)) ELSE '{}' END));
        IF jsonb_typeof(a->'description') <> 'string' THEN a := a - 'description'; END IF;
        t := coalesce(ductape._kebab(concat_ws(' ', r.folder, r.item->>'name')), 'action');
        a := jsonb_build_object('tag', t) || a;
        errs := errs || ductape._check_action(a, r.ptr, NULL, vars);
        actions := actions || a;
    END LOOP;
    IF skipped > 0 THEN
        RAISE NOTICE '% request(s) with a method other than GET, POST, PUT, PATCH, DELETE and HEAD not imported', skipped;
    END IF;
    -- undeclared {{var}} used by the requests become variables too
    FOR k IN SELECT DISTINCT m[1] FROM unnest(actions) x,
                    regexp_matches(x::text, '\$Variable\{([^{}]+)\}', 'g') m LOOP
        IF NOT vars ? k THEN vars := vars || jsonb_build_object(k, '{}'::jsonb); END IF;
    END LOOP;
    PERFORM ductape._import_refuse('Postman collection', errs,
        'Each line is a JSON pointer into the collection (then into the action made from it).');

    -- the base URL most requests use is the env (dev and prd); {{var}} filled from the collection
    SELECT key INTO env_base FROM jsonb_each_text(bases) ORDER BY value::int DESC, key LIMIT 1;
    IF (SELECT count(*) FROM jsonb_object_keys(bases)) > 1 THEN
        RAISE NOTICE 'the requests use % base URLs; the app uses "%"', (SELECT count(*) FROM jsonb_object_keys(bases)), env_base
            USING HINT = 'Requests to another host need an app of their own.';
    END IF;
    FOR k IN SELECT DISTINCT m[1] FROM regexp_matches(coalesce(env_base, ''), '\{\{\s*([^{}]+?)\s*\}\}', 'g') m LOOP
        env_base := replace(env_base, '{{' || k || '}}', coalesce(values->>k, ''));
    END LOOP;
    IF env_base !~* '^https?://' THEN
        RAISE NOTICE 'the collection''s base URL "%" is not an absolute http(s) URL: the app has no environments', env_base
            USING HINT = 'Add envs with ductape.app_define.';
        env_base := NULL;
    END IF;

    -- collection auth -> auth template with $Secret{APP_...}; its values are never stored
    auth := CASE collection #>> '{auth,type}'
        WHEN 'bearer' THEN ductape._import_auth('bearer', tag)
        WHEN 'basic' THEN ductape._import_auth('basic', tag)
        WHEN 'apikey' THEN ductape._import_auth('api_key', tag,
            CASE WHEN (SELECT x->>'value' FROM jsonb_array_elements(collection #> '{auth,apikey}') x WHERE x->>'key' = 'in') = 'query' THEN 'query' ELSE 'header' END,
            coalesce((SELECT x->>'value' FROM jsonb_array_elements(collection #> '{auth,apikey}') x WHERE x->>'key' = 'key'), 'X-Api-Key'))
        END;
    app_spec := jsonb_strip_nulls(jsonb_build_object(
        'tag', tag, 'name', collection #> '{info,name}',
        'description', CASE jsonb_typeof(collection #> '{info,description}') WHEN 'string' THEN collection #> '{info,description}'
                                                                           ELSE collection #> '{info,description,content}' END,
        'envs', CASE WHEN env_base IS NOT NULL THEN jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', env_base),
                                                                     jsonb_build_object('slug', 'prd', 'base_url', env_base)) END,
        'variables', CASE WHEN vars <> '{}' THEN vars END,
        'auth', auth, 'actions', ductape._unique_tags(actions)));
    RETURN ductape._import_define(app_spec);
END
$$;

---------------------------------------------------------------------------
-- Workflows (DESIGN.md §11): definitions.  (Running them is not built yet.)
---------------------------------------------------------------------------

CREATE TABLE ductape.workflows (
    tag         text PRIMARY KEY CHECK (tag ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    spec        jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Conditions and step templates (src/workflow.c).
CREATE FUNCTION ductape._condition_check(cond text, path text, OUT problems text[], OUT steps text[])
LANGUAGE c IMMUTABLE AS 'MODULE_PATHNAME', 'dt_condition_check';
CREATE FUNCTION ductape._condition_eval(cond text, context jsonb) RETURNS boolean
LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'dt_condition_eval';
CREATE FUNCTION ductape._workflow_template_errors(tpl jsonb, path text) RETURNS text[]
LANGUAGE c IMMUTABLE AS 'MODULE_PATHNAME', 'dt_workflow_template_errors';
CREATE FUNCTION ductape._template_steps(tpl jsonb) RETURNS text[]
LANGUAGE c IMMUTABLE STRICT AS 'MODULE_PATHNAME', 'dt_template_steps';
CREATE FUNCTION ductape._workflow_apply(tpl jsonb, context jsonb) RETURNS jsonb
LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'dt_workflow_apply';

-- An action a step or a compensation calls: app and action must exist.
CREATE FUNCTION ductape._check_step_call(s jsonb, path text) RETURNS text[]
LANGUAGE plpgsql STABLE AS $$
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
LANGUAGE plpgsql STABLE AS $$
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

CREATE FUNCTION ductape.workflow_define(spec jsonb) RETURNS text
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    PERFORM ductape._raise_invalid(format('workflow definition%s', coalesce(' "' || (spec->>'tag') || '"', '')),
                                   ductape._check_workflow(spec));
    INSERT INTO ductape.workflows AS w (tag, spec) VALUES (spec->>'tag', spec)
    ON CONFLICT (tag) DO UPDATE SET spec = EXCLUDED.spec, updated_at = now();
    RETURN spec->>'tag';
END
$$;

-- Runs (DESIGN.md §11).  A run's steps advance in the database worker
-- (ductape._workflow_tick after each batch of finished jobs and every
-- second): action steps are jobs (each with the idempotency key
-- ductape-wf-<run>-<step>, so a step is dispatched once), sql steps run in
-- the tick as the role that started the run, sleep steps wake at wake_at.
-- Everything is in these tables, so a crash loses nothing: the next tick
-- reads where each run stands from its steps and their jobs.
CREATE TYPE ductape.workflow_state AS ENUM ('running', 'completed', 'failed', 'rolled_back', 'cancelled');
CREATE TYPE ductape.workflow_step_state AS ENUM ('pending', 'running', 'completed', 'failed', 'skipped', 'rolled_back');
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
    role            name NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    CONSTRAINT workflow_runs_idempotency_key UNIQUE (idempotency_key)
);
CREATE INDEX workflow_runs_advance_idx ON ductape.workflow_runs (id) WHERE advance;
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
LANGUAGE plpgsql STABLE AS $$
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

CREATE FUNCTION ductape.workflow_start(tag text, input jsonb DEFAULT '{}', idempotency_key text DEFAULT NULL,
                                       env text DEFAULT NULL, product text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    w ductape.workflows := ductape._workflow_row(tag);
    errs text[];
    run_id bigint;
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
        SELECT r.id INTO run_id FROM ductape.workflow_runs r WHERE r.idempotency_key = idempotency_key;
        IF FOUND THEN RETURN run_id; END IF;
    END IF;
    -- (SECURITY DEFINER changes current_user, not the caller's SET ROLE)
    INSERT INTO ductape.workflow_runs (tag, spec, input, env, product, idempotency_key, role)
    VALUES (tag, w.spec, input, coalesce(env, current_setting('ductape.env')),
            coalesce(product, current_setting('ductape.product')), idempotency_key,
            CASE WHEN current_setting('role') = 'none' THEN session_user ELSE current_setting('role') END)
    ON CONFLICT ON CONSTRAINT workflow_runs_idempotency_key DO NOTHING
    RETURNING id INTO run_id;
    IF run_id IS NULL THEN
        SELECT r.id INTO run_id FROM ductape.workflow_runs r WHERE r.idempotency_key = idempotency_key;
        RETURN run_id;
    END IF;
    INSERT INTO ductape.workflow_steps (run_id, tag, position)
    SELECT run_id, s.value->>'tag', s.ordinality - 1
      FROM jsonb_array_elements(w.spec->'steps') WITH ORDINALITY s;
    PERFORM ductape._wake_worker();
    RETURN run_id;
END
$$;

CREATE FUNCTION ductape.workflow_status(id bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', r.id, 'tag', r.tag, 'state', r.state, 'output', r.output, 'error', r.error,
               'created_at', r.created_at, 'finished_at', r.finished_at,
               'steps', (SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                                 'tag', s.tag, 'state', s.state, 'output', s.output, 'attempts', s.attempts,
                                 'error', s.error)) ORDER BY s.position)
                           FROM ductape.workflow_steps s WHERE s.run_id = r.id))
      FROM ductape.workflow_runs r WHERE r.id = workflow_status.id
$$;

CREATE FUNCTION ductape.workflow_cancel(id bigint) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s record;
    caller name := CASE WHEN current_setting('role') = 'none' THEN session_user ELSE current_setting('role') END;
BEGIN
    UPDATE ductape.workflow_runs r SET state = 'cancelled', finished_at = now(), advance = false
     WHERE r.id = workflow_cancel.id AND r.state = 'running' AND r.role = caller;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    FOR s IN SELECT job_id FROM ductape.workflow_steps x WHERE x.run_id = workflow_cancel.id AND x.state = 'running' AND x.job_id IS NOT NULL LOOP
        PERFORM ductape.cancel(s.job_id);
    END LOOP;
    UPDATE ductape.workflow_steps x
       SET state = CASE WHEN x.state = 'pending' THEN 'skipped' ELSE 'failed' END::ductape.workflow_step_state,
           error = CASE WHEN x.state = 'running' THEN 'the run was cancelled' END, finished_at = now()
     WHERE x.run_id = workflow_cancel.id AND x.state IN ('pending', 'running');
    RETURN true;
END
$$;

-- The run's context for templates and conditions.
CREATE FUNCTION ductape._workflow_context(r ductape.workflow_runs) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('input', r.input,
               'steps', coalesce((SELECT jsonb_object_agg(s.tag, s.output) FROM ductape.workflow_steps s
                                   WHERE s.run_id = r.id AND s.state IN ('completed', 'rolled_back', 'failed')), '{}'))
$$;

-- Dispatch an action for a run, as the role that started it (the job
-- records that role; its privileges apply); returns the job id.
CREATE FUNCTION ductape._workflow_dispatch(r ductape.workflow_runs, call jsonb, context jsonb, key text, retries jsonb)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    input jsonb := ductape._workflow_apply(coalesce(call->'input', '{}'), context);
    id bigint;
BEGIN
    EXECUTE format('SET LOCAL ROLE %I', r.role);
    id := ductape.dispatch(call->>'app', call->>'action', input, r.env, r.product,
                           idempotency_key => key,
                           options => CASE WHEN retries IS NOT NULL THEN jsonb_build_object('retries', retries) ELSE '{}' END);
    RESET ROLE;
    RETURN id;
END
$$;

-- Move one run forward as far as it can go now.
CREATE FUNCTION ductape._workflow_advance(rid bigint) RETURNS void
LANGUAGE plpgsql AS $$
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
                    EXECUTE format('SET LOCAL ROLE %I', r.role);
                    EXECUTE format('SELECT to_jsonb(q) FROM (%s) q LIMIT 1', step->>'sql') INTO out;
                    RESET ROLE;
                    UPDATE ductape.workflow_steps x SET state = 'completed', output = out, attempts = 1, finished_at = now()
                     WHERE x.run_id = rid AND x.tag = s.tag;
                WHEN 'sleep' THEN
                    UPDATE ductape.workflow_steps x
                       SET state = 'running', wake_at = now() + make_interval(secs => (step->>'seconds')::float8)
                     WHERE x.run_id = rid AND x.tag = s.tag;
                END CASE;
            EXCEPTION WHEN OTHERS THEN
                -- (the role is back: the failed block's SET LOCAL was rolled back with it)
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
LANGUAGE plpgsql AS $$
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

---------------------------------------------------------------------------
-- Variables (values per product, app, env; DESIGN.md §3)
---------------------------------------------------------------------------

CREATE FUNCTION ductape.variable_set(app text, key text, value jsonb,
                                     env text DEFAULT NULL, product text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    r ductape.apps := ductape._app_row(app);
    p ductape.products := ductape._product_row(coalesce(product, current_setting('ductape.product')));
    e text := ductape._product_env(p, coalesce(env, current_setting('ductape.env')));
BEGIN
    IF NOT coalesce(r.spec->'variables', '{}') ? key THEN
        RAISE EXCEPTION USING ERRCODE = '42704',
            MESSAGE = format('variable "%s" is not declared by app "%s"', key, r.tag),
            HINT = 'Declare it under "variables" in the app spec first.';
    END IF;
    IF value IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'variable value cannot be SQL NULL',
            HINT = 'Use ''null''::jsonb for a JSON null.';
    END IF;
    INSERT INTO ductape.variables (product, app, env, key, value)
    VALUES (p.tag, r.tag, e, key, value)
    ON CONFLICT ON CONSTRAINT variables_pkey DO UPDATE SET value = EXCLUDED.value, updated_at = now();
END
$$;

---------------------------------------------------------------------------
-- Products, connections, credentials (DESIGN.md §3)
---------------------------------------------------------------------------

CREATE FUNCTION ductape._product_row(tag text) RETURNS ductape.products
LANGUAGE plpgsql STABLE AS $$
DECLARE
    r ductape.products;
BEGIN
    SELECT * INTO r FROM ductape.products p WHERE p.tag = _product_row.tag;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '42704',
            MESSAGE = format('product "%s" does not exist', _product_row.tag),
            HINT = 'Create it with ductape.product_create.';
    END IF;
    RETURN r;
END
$$;

CREATE FUNCTION ductape.product_create(tag text, name text DEFAULT NULL, envs text[] DEFAULT '{dev,prd}')
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    errs text[] := ductape._check_tag(to_jsonb(product_create.tag), '/tag');
    e text;
BEGIN
    IF envs IS NULL OR cardinality(envs) = 0 THEN
        errs := errs || '/envs: a product needs at least one env'::text;
    ELSE
        FOREACH e IN ARRAY envs LOOP
            errs := errs || ductape._check_tag(to_jsonb(e), '/envs');
        END LOOP;
    END IF;
    PERFORM ductape._raise_invalid('product', errs);
    IF EXISTS (SELECT 1 FROM ductape.products p WHERE p.tag = product_create.tag) THEN
        RAISE EXCEPTION USING ERRCODE = '42710',
            MESSAGE = format('product "%s" already exists', product_create.tag);
    END IF;
    INSERT INTO ductape.products (tag, name, envs) VALUES (product_create.tag, product_create.name, product_create.envs);
    RETURN product_create.tag;
END
$$;

CREATE FUNCTION ductape.product_connect(product text, app text, env_map jsonb DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    p ductape.products := ductape._product_row(product);
    a ductape.apps := ductape._app_row(app);
    errs text[] := '{}';
    k text;
    v jsonb;
BEGIN
    IF env_map IS NOT NULL AND jsonb_typeof(env_map) <> 'object' THEN
        errs := errs || '/: env_map must be an object of product env -> app env'::text;
    ELSE
        FOR k, v IN SELECT key, value FROM jsonb_each(coalesce(env_map, '{}')) LOOP
            IF NOT k = ANY (p.envs) THEN
                errs := errs || format('/%s: product "%s" has no env "%s"', k, p.tag, k);
            END IF;
            IF jsonb_typeof(v) <> 'string' OR NOT EXISTS (
                   SELECT 1 FROM jsonb_array_elements(coalesce(a.spec->'envs', '[]')) e WHERE e->>'slug' = v #>> '{}') THEN
                errs := errs || format('/%s: app "%s" has no env %s', k, a.tag, v);
            END IF;
        END LOOP;
    END IF;
    PERFORM ductape._raise_invalid('env_map', errs);
    INSERT INTO ductape.product_apps AS x (product, app, env_map)
    VALUES (p.tag, a.tag, coalesce(env_map, '{}'))
    ON CONFLICT ON CONSTRAINT product_apps_pkey DO UPDATE SET env_map = EXCLUDED.env_map;
END
$$;

-- The env a caller names under a product (checked), for config and variables.
CREATE FUNCTION ductape._product_env(p ductape.products, env text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p.tag <> 'default' AND NOT env = ANY (p.envs) THEN
        RAISE EXCEPTION USING ERRCODE = '42704',
            MESSAGE = format('environment "%s" of product "%s" does not exist', env, p.tag),
            DETAIL = format('The product has the environments: %s.', array_to_string(p.envs, ', '));
    END IF;
    RETURN env;
END
$$;

CREATE FUNCTION ductape.config(app text, credentials jsonb, env text DEFAULT NULL, product text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    a ductape.apps := ductape._app_row(app);
    p ductape.products := ductape._product_row(coalesce(product, current_setting('ductape.product')));
    e text := ductape._product_env(p, coalesce(env, current_setting('ductape.env')));
    errs text[] := '{}';
    k text;
BEGIN
    IF jsonb_typeof(credentials) IS DISTINCT FROM 'object' THEN
        errs := errs || '/: credentials must be an object of flat input keys and template values'::text;
    ELSE
        FOR k IN SELECT key FROM jsonb_each(credentials)
                  WHERE key ~ ':' AND split_part(key, ':', 1) NOT IN ('body', 'query', 'params', 'headers') LOOP
            errs := errs || format('/%s: unknown prefix (use body:, query:, params: or headers:)', k);
        END LOOP;
        FOR k IN SELECT key FROM jsonb_each(credentials)
                  WHERE key ~* '^headers:' AND substr(key, 9) !~ '^[!#$%&''*+.^_`|~0-9A-Za-z-]+$' LOOP
            errs := errs || format('/%s: not a valid header name', k);
        END LOOP;
        errs := errs || ductape._template_errors(credentials, '',
                    CASE WHEN jsonb_typeof(a.spec->'constants') = 'object' THEN a.spec->'constants' END,
                    CASE WHEN jsonb_typeof(a.spec->'variables') = 'object' THEN a.spec->'variables' END);
    END IF;
    PERFORM ductape._raise_invalid('credentials', errs);
    INSERT INTO ductape.configs AS c (product, app, env, credentials)
    VALUES (p.tag, a.tag, e, credentials)
    ON CONFLICT ON CONSTRAINT configs_pkey DO UPDATE SET credentials = EXCLUDED.credentials, updated_at = now();
END
$$;

---------------------------------------------------------------------------
-- Inbound webhooks (DESIGN.md §8)
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

CREATE TYPE ductape.webhook_state AS ENUM ('received', 'handled', 'failed');
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

-- Does an event type match a subscription's pattern (* matches any run)?
CREATE FUNCTION ductape._type_matches(event_type text, pattern text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT pattern = '*' OR event_type LIKE
        replace(replace(replace(replace(pattern, '\', '\\'), '%', '\%'), '_', '\_'), '*', '%')
$$;

-- Check a signature as the listener would at time "at" (tests, debugging).
CREATE FUNCTION ductape._signature_check(verify jsonb, secret text, headers jsonb, body text, at timestamptz DEFAULT now())
RETURNS text LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'dt_signature_check';

CREATE FUNCTION ductape._webhook_listen_address() RETURNS text
LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'dt_webhook_listen_address';

-- The webhook's spec in its app, or 42704.
CREATE FUNCTION ductape._webhook_spec(a ductape.apps, webhook text) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
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

CREATE FUNCTION ductape.webhook_url(app text, webhook text, env text DEFAULT NULL, product text DEFAULT NULL)
RETURNS text LANGUAGE plpgsql AS $$
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
    VALUES (replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), p, a.tag, webhook, e, current_user)
    ON CONFLICT ON CONSTRAINT webhook_tokens_scope DO NOTHING;
    SELECT t.token INTO tok FROM ductape._webhook_tokens t
     WHERE t.product = p AND t.app = a.tag AND t.webhook = webhook AND t.env = e;
    RETURN format('http://%s/webhooks/%s', listen, tok);
END
$$;

CREATE FUNCTION ductape.webhook_subscribe(app text, webhook text, event_type text, handler regprocedure)
RETURNS bigint LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    a ductape.apps := ductape._app_row(app);
    sid bigint;
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
    IF NOT has_function_privilege(handler, 'EXECUTE') THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = format('permission denied for webhook handler %s', handler);
    END IF;
    INSERT INTO ductape.webhook_subscriptions AS s (app, webhook, event_type, handler, role)
    VALUES (a.tag, webhook, event_type, handler, current_user)
    ON CONFLICT ON CONSTRAINT webhook_subscriptions_unique DO UPDATE SET role = EXCLUDED.role
    RETURNING s.id INTO sid;
    RETURN sid;
END
$$;

---------------------------------------------------------------------------
-- Outbound events: Standard Webhooks delivery (DESIGN.md §9)
---------------------------------------------------------------------------

-- Where events go.  The signing secret is encrypted with the master key
-- (AES-256-GCM bound to the endpoint id); after a rotation the previous one
-- keeps signing too for 24 hours.
CREATE TABLE ductape.endpoints (
    id              bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    url             text NOT NULL,
    event_types     text[] NOT NULL DEFAULT '{*}',
    description     text,
    headers         jsonb NOT NULL DEFAULT '{}',
    secret          bytea NOT NULL,
    key_version     integer NOT NULL,
    previous_secret bytea,
    previous_key_version integer,
    rotated_at      timestamptz,
    enabled         boolean NOT NULL DEFAULT true,
    disabled_reason text,
    disabled_at     timestamptz,
    failing_since   timestamptz,         -- first failure since the last success
    role            name NOT NULL DEFAULT current_user,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- What was published: one row per message.
CREATE TABLE ductape.messages (
    id              text PRIMARY KEY,    -- msg_..., the webhook-id header
    event_type      text NOT NULL,
    payload         jsonb NOT NULL,
    idempotency_key text,
    role            name NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX messages_idempotency_key_idx ON ductape.messages (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
ALTER TABLE ductape.messages ENABLE ROW LEVEL SECURITY;
CREATE POLICY messages_by_role ON ductape.messages FOR SELECT
    USING (role = current_user
           OR pg_catalog.has_function_privilege('ductape.secret_get(text)', 'EXECUTE'));

-- One row per (message, endpoint): the delivery's state.
CREATE TYPE ductape.outbox_state AS ENUM ('pending', 'delivering', 'succeeded', 'failed');
CREATE TABLE ductape.outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id      text NOT NULL,
    endpoint_id     bigint NOT NULL,
    state           ductape.outbox_state NOT NULL DEFAULT 'pending',
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status     integer,
    last_error      text,
    role            name NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    CONSTRAINT outbox_message_endpoint UNIQUE (message_id, endpoint_id)
);
CREATE INDEX outbox_due_idx ON ductape.outbox (endpoint_id, next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX outbox_finished_idx ON ductape.outbox (finished_at) WHERE finished_at IS NOT NULL;
ALTER TABLE ductape.outbox ENABLE ROW LEVEL SECURITY;
CREATE POLICY outbox_by_role ON ductape.outbox FOR SELECT
    USING (role = current_user
           OR pg_catalog.has_function_privilege('ductape.secret_get(text)', 'EXECUTE'));
CREATE POLICY outbox_admin ON ductape.outbox FOR ALL    -- message_retry
    USING (pg_catalog.has_function_privilege('ductape.secret_get(text)', 'EXECUTE'))
    WITH CHECK (pg_catalog.has_function_privilege('ductape.secret_get(text)', 'EXECUTE'));

-- Every attempt, kept.
CREATE TABLE ductape.deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id      text NOT NULL,
    endpoint_id     bigint NOT NULL,
    attempt         integer NOT NULL,
    at              timestamptz NOT NULL,    -- when the attempt was sent
    status          integer,                 -- the HTTP status, NULL without a response
    duration_ms     double precision NOT NULL,
    response        text,                    -- the first 1 kB of the response body
    error           text,
    succeeded       boolean NOT NULL,
    next_attempt_at timestamptz,             -- when it is tried again; NULL: not
    role            name NOT NULL
);
CREATE INDEX deliveries_message_idx ON ductape.deliveries (message_id, endpoint_id);
CREATE INDEX deliveries_at_idx ON ductape.deliveries (at);
ALTER TABLE ductape.deliveries ENABLE ROW LEVEL SECURITY;
CREATE POLICY deliveries_by_role ON ductape.deliveries FOR SELECT
    USING (role = current_user
           OR pg_catalog.has_function_privilege('ductape.secret_get(text)', 'EXECUTE'));

-- Encrypt an endpoint's signing secret (a new one when secret is NULL).
CREATE FUNCTION ductape._endpoint_seal(id bigint, secret text,
                                       OUT secret text, OUT value bytea, OUT key_version integer)
LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_endpoint_seal';
-- Check an endpoint URL against the egress policy (DT002) and its shape (22023).
CREATE FUNCTION ductape._endpoint_check_url(url text) RETURNS void
LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'dt_endpoint_check_url';
-- The webhook-signature a delivery sends (known-answer tests).
CREATE FUNCTION ductape._signature_standard(secret text, msg_id text, ts bigint, body text) RETURNS text
LANGUAGE c STRICT IMMUTABLE AS 'MODULE_PATHNAME', 'dt_signature_standard';
-- Wake this database's worker when the transaction commits.
CREATE FUNCTION ductape._wake_worker() RETURNS void
LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_wake_worker';

CREATE FUNCTION ductape._endpoint_check(url text, event_types text[], headers jsonb) RETURNS void
LANGUAGE plpgsql AS $$
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
END
$$;

CREATE FUNCTION ductape.endpoint_create(url text, event_types text[] DEFAULT '{*}', secret text DEFAULT NULL,
                                        description text DEFAULT NULL, headers jsonb DEFAULT '{}')
RETURNS bigint LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    eid bigint;
    sealed record;
BEGIN
    PERFORM ductape._endpoint_check(url, event_types, headers);
    eid := nextval(pg_get_serial_sequence('ductape.endpoints', 'id'));
    sealed := ductape._endpoint_seal(eid, secret);
    INSERT INTO ductape.endpoints (id, url, event_types, description, headers, secret, key_version)
    VALUES (eid, url, event_types, description, headers, sealed.value, sealed.key_version);
    RETURN eid;
END
$$;

CREATE FUNCTION ductape._endpoint_row(id bigint) RETURNS ductape.endpoints
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    e ductape.endpoints;
BEGIN
    SELECT * INTO e FROM ductape.endpoints WHERE endpoints.id = id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '42704', MESSAGE = format('endpoint %s does not exist', id);
    END IF;
    RETURN e;
END
$$;

CREATE FUNCTION ductape.endpoint_secret(id bigint) RETURNS text
LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'dt_endpoint_secret';

-- A new secret; the old one keeps signing (a second v1 signature) for 24 hours.
CREATE FUNCTION ductape.endpoint_rotate_secret(id bigint) RETURNS text
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    e ductape.endpoints := ductape._endpoint_row(id);
    sealed record := ductape._endpoint_seal(id, NULL);
BEGIN
    UPDATE ductape.endpoints SET previous_secret = e.secret, previous_key_version = e.key_version,
           rotated_at = now(), secret = sealed.value, key_version = sealed.key_version
     WHERE endpoints.id = id;
    RETURN sealed.secret;
END
$$;

CREATE FUNCTION ductape.endpoint_disable(id bigint) RETURNS void
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    PERFORM ductape._endpoint_row(id);
    UPDATE ductape.endpoints SET enabled = false, disabled_reason = 'disabled by ' || current_user,
           disabled_at = now() WHERE endpoints.id = id;
END
$$;

-- Deliveries still pending resume; the failure clock starts again.
CREATE FUNCTION ductape.endpoint_enable(id bigint) RETURNS void
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    PERFORM ductape._endpoint_row(id);
    UPDATE ductape.endpoints SET enabled = true, disabled_reason = NULL, disabled_at = NULL,
           failing_since = NULL WHERE endpoints.id = id;
    PERFORM ductape._wake_worker();
END
$$;

CREATE FUNCTION ductape.publish(event_type text, payload jsonb, idempotency_key text DEFAULT NULL)
RETURNS text LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_publish';

-- Deliver a message again, to one endpoint or to every enabled endpoint
-- that wants its type, with a fresh retry schedule.  Returns how many.
CREATE FUNCTION ductape.message_retry(message_id text, endpoint_id bigint DEFAULT NULL)
RETURNS integer LANGUAGE plpgsql AS $$
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
                THEN e.enabled AND EXISTS (SELECT FROM unnest(e.event_types) t WHERE ductape._type_matches(m.event_type, t))
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

---------------------------------------------------------------------------
-- Privileges (DESIGN.md §14)
---------------------------------------------------------------------------

-- What an application role needs: make calls, describe actions, read its
-- own call records.
CREATE FUNCTION ductape.grant_usage(role name) RETURNS void
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
        ductape.workflow_start(text, jsonb, text, text, text), ductape.workflow_status(bigint),
        ductape.workflow_cancel(bigint) TO %I', role);
    EXECUTE format('GRANT SELECT ON ductape.calls, ductape.stats, ductape.jobs, ductape.queue,
        ductape.webhook_events, ductape.messages, ductape.outbox, ductape.deliveries,
        ductape.workflow_runs, ductape.workflow_steps TO %I', role);
END
$$;

-- Usage plus defining apps, products, config, variables and secrets.
-- (rotate_master_key writes the key file and stays with superusers.)
CREATE FUNCTION ductape.grant_admin(role name) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ductape.grant_usage(role);
    EXECUTE format('GRANT EXECUTE ON FUNCTION
        ductape.app_define(jsonb), ductape.app_create(text, text, text),
        ductape.action_define(text, jsonb), ductape.app_export(text), ductape.app_drop(text),
        ductape.import_openapi(text, text, boolean, text), ductape.import_postman(jsonb, text, boolean),
        ductape.workflow_define(jsonb),
        ductape.variable_set(text, text, jsonb, text, text),
        ductape.product_create(text, text, text[]), ductape.product_connect(text, text, jsonb),
        ductape.config(text, jsonb, text, text),
        ductape.secret_set(text, text, text, text[], text[], timestamptz),
        ductape.secret_get(text), ductape.secret_drop(text),
        ductape.oauth_set_tokens(text, text, text, integer, text, text),
        ductape.webhook_url(text, text, text, text),
        ductape.webhook_subscribe(text, text, text, regprocedure),
        ductape.endpoint_create(text, text[], text, text, jsonb), ductape.endpoint_secret(bigint),
        ductape.endpoint_rotate_secret(bigint), ductape.endpoint_disable(bigint),
        ductape.endpoint_enable(bigint), ductape.message_retry(text, bigint) TO %I', role);
    -- the definition functions are plain SQL run as the caller
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I',
        (SELECT string_agg(p.oid::regprocedure::text, ', ')
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE n.nspname = 'ductape' AND p.proname LIKE '\_%'), role);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ductape.apps, ductape.actions,
        ductape.variables, ductape.products, ductape.product_apps, ductape.configs, ductape.workflows,
        ductape._secrets, ductape._webhook_tokens, ductape.webhook_subscriptions,
        ductape.endpoints TO %I', role);
    EXECUTE format('GRANT INSERT, UPDATE ON ductape.outbox TO %I', role);
    EXECUTE format('GRANT USAGE ON SEQUENCE ductape.endpoints_id_seq TO %I', role);
    EXECUTE format('GRANT SELECT ON ductape.secrets TO %I', role);
END
$$;

-- pg_dump keeps what users define (apps, credentials, endpoints,
-- subscriptions, workflows); queues, runs and records are not dumped.
-- Secrets stay encrypted in the dump and open again with the same master key.
SELECT pg_catalog.pg_extension_config_dump('ductape.apps', '');
SELECT pg_catalog.pg_extension_config_dump('ductape.actions', '');
SELECT pg_catalog.pg_extension_config_dump('ductape.products', 'WHERE tag <> ''default''');
SELECT pg_catalog.pg_extension_config_dump('ductape.product_apps', '');
SELECT pg_catalog.pg_extension_config_dump('ductape.configs', '');
SELECT pg_catalog.pg_extension_config_dump('ductape.variables', '');
SELECT pg_catalog.pg_extension_config_dump('ductape._secrets', '');
SELECT pg_catalog.pg_extension_config_dump('ductape._oauth_tokens', '');
SELECT pg_catalog.pg_extension_config_dump('ductape._webhook_tokens', '');
SELECT pg_catalog.pg_extension_config_dump('ductape.webhook_subscriptions', '');
SELECT pg_catalog.pg_extension_config_dump('ductape.endpoints', '');
SELECT pg_catalog.pg_extension_config_dump('ductape.workflows', '');
-- (and the counters behind the ids they hand out)
SELECT pg_catalog.pg_extension_config_dump('ductape.webhook_subscriptions_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('ductape.endpoints_id_seq', '');

-- Nothing is granted to PUBLIC; revoke the default EXECUTE on functions.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA ductape FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA ductape FROM PUBLIC;
