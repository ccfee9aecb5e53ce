-- ductape SQL source: importers.
--
-- OpenAPI 3.0/3.1 (JSON or YAML) and Postman v2.1 collections into an app
-- and its actions.  Reading the documents and following $refs is in C
-- (src/import.c); turning them into an app spec is here.  Nothing is stored
-- unless the whole document is usable.

---------------------------------------------------------------------------
-- Shared
---------------------------------------------------------------------------

CREATE FUNCTION ductape._document_parse(doc text, what text) RETURNS jsonb
LANGUAGE c IMMUTABLE STRICT AS 'MODULE_PATHNAME', 'dt_document_parse';
CREATE FUNCTION ductape._json_refs(doc jsonb, OUT at text, OUT ref text) RETURNS SETOF record
LANGUAGE c IMMUTABLE STRICT AS 'MODULE_PATHNAME', 'dt_json_refs';
CREATE FUNCTION ductape._ref_target(doc jsonb, ref text) RETURNS jsonb
LANGUAGE c IMMUTABLE STRICT AS 'MODULE_PATHNAME', 'dt_ref_target';
CREATE FUNCTION ductape._ref_path(ref text) RETURNS text[]
LANGUAGE c IMMUTABLE STRICT AS 'MODULE_PATHNAME', 'dt_ref_path';

-- "listPets", "GET /pets/{id}" -> "list-pets", "get-pets-id" (at most 63 characters).
CREATE FUNCTION ductape._kebab(s text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT nullif(rtrim(left(trim(BOTH '-' FROM lower(regexp_replace(
               regexp_replace(regexp_replace(s, '([A-Z]+)([A-Z][a-z])', '\1-\2', 'g'),
                              '([a-z0-9])([A-Z])', '\1-\2', 'g'),
               '[^A-Za-z0-9]+', '-', 'g'))), 63), '-'), '')
$$;

-- A JSON pointer segment.
CREATE FUNCTION ductape._pointer_escape(s text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$ SELECT replace(replace(s, '~', '~0'), '/', '~1') $$;

-- A tag not in taken: base, else base-2, base-3, ...
CREATE FUNCTION ductape._unique_tag(base text, taken text[]) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
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
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
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
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
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
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
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
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF cardinality(errs) > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'invalid ' || what,
            DETAIL = array_to_string(errs, E'\n'), HINT = hint || ' Nothing was stored.';
    END IF;
END
$$;

CREATE FUNCTION ductape._import_check_exists(tag text, update_if_exists boolean) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM ductape.apps x WHERE x.tag = _import_check_exists.tag) AND NOT update_if_exists THEN
        RAISE EXCEPTION USING ERRCODE = '42710',
            MESSAGE = format('app "%s" already exists', tag),
            HINT = 'Pass update_if_exists => true to replace its actions, or app => ''another-tag''.';
    END IF;
END
$$;

CREATE FUNCTION ductape._import_define(spec jsonb) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
BEGIN
    IF EXISTS (SELECT 1 FROM ductape.apps x WHERE x.tag = spec->>'tag') THEN
        spec := (ductape.app_export(spec->>'tag') - 'actions') || spec;
    END IF;
    RETURN ductape.app_define(spec);
END
$$;

-- An auth template whose credentials are $Secret{APP_...}.
CREATE FUNCTION ductape._import_auth(kind text, tag text, key_in text DEFAULT NULL, key_name text DEFAULT NULL)
RETURNS jsonb LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE kind
        WHEN 'bearer' THEN jsonb_build_object('type', 'bearer', 'token', format('$Secret{%s_TOKEN}', p))
        WHEN 'basic' THEN jsonb_build_object('type', 'basic', 'username', format('$Secret{%s_USERNAME}', p),
                                             'password', format('$Secret{%s_PASSWORD}', p))
        WHEN 'api_key' THEN jsonb_build_object('type', 'api_key', 'in', key_in, 'name', key_name,
                                               'value', format('$Secret{%s_API_KEY}', p))
        END
      FROM (SELECT upper(regexp_replace(tag, '[^a-z0-9]+', '_', 'g')) AS p) x
$$;

---------------------------------------------------------------------------
-- OpenAPI
---------------------------------------------------------------------------

-- The auth template for the document's security scheme, with
-- $Secret{APP_...} placeholders for the credentials.
CREATE FUNCTION ductape._openapi_auth(doc jsonb, tag text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
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
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
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
-- [0-9-_]); each one left out is added to dropped.  Which they are, and
-- where, the schema check says as data (src/schema.c), not in the text of
-- its problems.
CREATE FUNCTION ductape._schema_bad_patterns(schema jsonb) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'dt_schema_bad_patterns' LANGUAGE c IMMUTABLE STRICT;
CREATE FUNCTION ductape._drop_bad_patterns(schema jsonb, INOUT dropped text[], OUT result jsonb)
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
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

-- One OpenAPI operation -> one action spec (without its tag).
CREATE FUNCTION ductape._openapi_action(doc jsonb, path text, item jsonb, method text, at text)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
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
RETURNS text LANGUAGE plpgsql SET jit = off SET search_path = pg_catalog, pg_temp AS $$
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
COMMENT ON FUNCTION ductape.import_openapi(text,text,boolean,text) IS
    'Creates an app from an OpenAPI 3.0 or 3.1 document (JSON or YAML): one action per '
    'operation, envs from its servers or base_url, auth as $Secret templates. Returns the tag; '
    'update_if_exists replaces the actions of an existing app. Admins.';

---------------------------------------------------------------------------
-- Postman
---------------------------------------------------------------------------

-- "{{name}}" in a Postman string -> "$Variable{name}" ("$" doubled first).
CREATE FUNCTION ductape._postman_template(s text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $f$
    SELECT regexp_replace(replace(s, '$', '$$'), '\{\{\s*([^{}]+?)\s*\}\}', '$Variable{\1}', 'g')
$f$;

-- The JSON Schema type of an example value.
CREATE FUNCTION ductape._example_schema(v jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE jsonb_typeof(v)
        WHEN 'number' THEN jsonb_build_object('type', CASE WHEN v::text ~ '^-?\d+$' THEN 'integer' ELSE 'number' END)
        WHEN 'null' THEN '{}'::jsonb
        ELSE jsonb_build_object('type', jsonb_typeof(v)) END
$$;

-- The requests of a Postman item list, folders flattened: (folder path, item, pointer).
CREATE FUNCTION ductape._postman_requests(items jsonb, folders text, at text,
                                          OUT folder text, OUT item jsonb, OUT ptr text)
RETURNS SETOF record LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
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
RETURNS text LANGUAGE plpgsql SET jit = off SET search_path = pg_catalog, pg_temp AS $$
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
COMMENT ON FUNCTION ductape.import_postman(jsonb,text,boolean) IS
    'Creates an app from a Postman v2.1 collection: one action per request, credentials as '
    '$Secret templates (their values are never stored). Returns the tag; update_if_exists '
    'replaces the actions of an existing app. Admins.';
