-- ductape SQL source: products, connections, credentials and variables.
--
-- A product groups the apps it uses, with its own environments; per
-- (product, app, env) it holds the credentials (templates, never resolved
-- values) and the values of the app's declared variables.  The product
-- "default" always exists.

---------------------------------------------------------------------------
-- Tables
---------------------------------------------------------------------------

CREATE TABLE ductape.products (
    tag         text PRIMARY KEY CHECK (tag ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    name        text,
    envs        text[] NOT NULL DEFAULT '{dev,prd}',
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE ductape.products IS
    'One row per product (your application, with its own envs); the product default always '
    'exists. Written by product_create. Admins read and write it.';
COMMENT ON COLUMN ductape.products.tag IS
    'The product''s name, as in the product argument and ductape.product.';
COMMENT ON COLUMN ductape.products.name IS 'Display name, for people; NULL: none.';
COMMENT ON COLUMN ductape.products.envs IS
    'The product''s environments (tags), dev and prd by default.';
COMMENT ON COLUMN ductape.products.created_at IS 'When the product was created.';
INSERT INTO ductape.products (tag, name) VALUES ('default', 'Default product');

-- An app used by a product, with the product env -> app env mapping.
CREATE TABLE ductape.product_apps (
    product     text NOT NULL REFERENCES ductape.products (tag) ON DELETE CASCADE,
    app         text NOT NULL REFERENCES ductape.apps (tag) ON DELETE CASCADE,
    env_map     jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (product, app)
);
COMMENT ON TABLE ductape.product_apps IS
    'One row per app connected to a product other than default; written by product_connect. '
    'Admins read and write it.';
COMMENT ON COLUMN ductape.product_apps.product IS 'The product the app is connected to.';
COMMENT ON COLUMN ductape.product_apps.app IS 'The app connected to the product.';
COMMENT ON COLUMN ductape.product_apps.env_map IS
    'JSON object mapping a product env to the app env it uses; an env missing from it uses the '
    'app env of the same name.';

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

CREATE TABLE ductape.variables (
    product     text NOT NULL REFERENCES ductape.products (tag) ON DELETE CASCADE,
    app         text NOT NULL REFERENCES ductape.apps (tag) ON DELETE CASCADE,
    env         text NOT NULL,
    key         text NOT NULL,
    value       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (product, app, env, key)
);
COMMENT ON TABLE ductape.variables IS
    'Values of the variables an app declares, per (product, app, env); written by variable_set, '
    'read by templates as $Variable{key}. Admins read and write it.';
COMMENT ON COLUMN ductape.variables.product IS 'The product the value applies to.';
COMMENT ON COLUMN ductape.variables.app IS 'The app that declares the variable.';
COMMENT ON COLUMN ductape.variables.env IS 'The product env the value applies to.';
COMMENT ON COLUMN ductape.variables.key IS 'The variable''s name, as the app declares it.';
COMMENT ON COLUMN ductape.variables.value IS 'Its value (any JSON, JSON null included).';
COMMENT ON COLUMN ductape.variables.updated_at IS 'When it was last set.';

-- (the catalog trigger of 02_apps.sql: every backend's cache is
-- invalidated at commit)
CREATE TRIGGER variables_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ductape.variables
    FOR EACH STATEMENT EXECUTE FUNCTION ductape._catalog_changed();
CREATE TRIGGER products_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ductape.products
    FOR EACH STATEMENT EXECUTE FUNCTION ductape._catalog_changed();
CREATE TRIGGER product_apps_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ductape.product_apps
    FOR EACH STATEMENT EXECUTE FUNCTION ductape._catalog_changed();
CREATE TRIGGER configs_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ductape.configs
    FOR EACH STATEMENT EXECUTE FUNCTION ductape._catalog_changed();

---------------------------------------------------------------------------
-- Products and connections
---------------------------------------------------------------------------

CREATE FUNCTION ductape._product_row(tag text) RETURNS ductape.products
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
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
RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
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
COMMENT ON FUNCTION ductape.product_create(text,text,text[]) IS
    'Creates a product with a display name and its envs (dev and prd by default); 42710 if it '
    'exists. Returns the tag. Admins.';

CREATE FUNCTION ductape.product_connect(product text, app text, env_map jsonb DEFAULT NULL)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
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
COMMENT ON FUNCTION ductape.product_connect(text,text,jsonb) IS
    'Connects an app to a product, or maps it again; env_map is an object of product env to app '
    'env (NULL: each env maps to the app env of the same name). Admins.';

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

-- The env a caller names under a product (checked), for config and variables.
CREATE FUNCTION ductape._product_env(p ductape.products, env text) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p.tag <> 'default' AND NOT env = ANY (p.envs) THEN
        RAISE EXCEPTION USING ERRCODE = '42704',
            MESSAGE = format('environment "%s" of product "%s" does not exist', env, p.tag),
            DETAIL = format('The product has the environments: %s.', array_to_string(p.envs, ', '));
    END IF;
    RETURN env;
END
$$;

---------------------------------------------------------------------------
-- Credentials and variables
---------------------------------------------------------------------------

CREATE FUNCTION ductape.config(app text, credentials jsonb, env text DEFAULT NULL, product text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
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
COMMENT ON FUNCTION ductape.config(text,jsonb,text,text) IS
    'Stores the credentials applied to every call of an app in (product, env): an object of '
    'templates such as {"headers:Authorization": "Bearer $Secret{X}"}, kept as written. NULL '
    'env or product: ductape.env, ductape.product. Admins.';

CREATE FUNCTION ductape.variable_set(app text, key text, value jsonb,
                                     env text DEFAULT NULL, product text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
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
COMMENT ON FUNCTION ductape.variable_set(text,text,jsonb,text,text) IS
    'Sets the value of a variable the app declares, for (product, app, env); templates read it '
    'as $Variable{key}. A SQL NULL value is refused: use ''null''::jsonb. NULL env or product: '
    'ductape.env, ductape.product. Admins.';

-- Remove the credentials of (product, app, env); NULL env and product are
-- the session's (ductape.env, ductape.product).  A job or call that runs
-- afterwards goes without them.
CREATE FUNCTION ductape.config_unset(app text, env text DEFAULT NULL, product text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
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
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
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

-- pg_dump keeps them (the default product is made by CREATE EXTENSION).
SELECT pg_catalog.pg_extension_config_dump('ductape.products', 'WHERE tag <> ''default''');
SELECT pg_catalog.pg_extension_config_dump('ductape.product_apps', '');
SELECT pg_catalog.pg_extension_config_dump('ductape.configs', '');
SELECT pg_catalog.pg_extension_config_dump('ductape.variables', '');
