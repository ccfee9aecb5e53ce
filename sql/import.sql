-- import_openapi and import_postman (docs/reference.md).

-- Every OpenAPI 3.0 and 3.1 example of @readme/oas-examples imports (JSON
-- and YAML alike), one action per operation.
\set examples `perl test/oas_examples.pl`
CREATE FUNCTION pg_temp.import_all(docs jsonb)
RETURNS TABLE (file text, operations integer, actions integer, error text) LANGUAGE plpgsql AS $$
DECLARE
    d record;
    doc jsonb;
    app_tag text;
BEGIN
    FOR d IN SELECT key, value #>> '{}' AS text FROM jsonb_each(docs) ORDER BY key LOOP
        file := d.key;
        doc := ductape._document_parse(d.text, 'the document');
        SELECT count(*) INTO operations
          FROM jsonb_each(coalesce(doc->'paths', '{}')) p,
               jsonb_each(ductape._deref(doc, p.value, '')) m
         WHERE m.key IN ('get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace');
        app_tag := 'ex-' || ductape._kebab(regexp_replace(d.key, '\.(json|yaml)$', ''));
        BEGIN
            PERFORM ductape.import_openapi(d.text, app_tag);
            SELECT count(*) INTO actions FROM ductape.actions a WHERE a.app = app_tag;
            error := NULL;
        EXCEPTION WHEN OTHERS THEN
            actions := NULL;
            GET STACKED DIAGNOSTICS error = MESSAGE_TEXT;
        END;
        RETURN NEXT;
    END LOOP;
END
$$;
SET client_min_messages = warning;
CREATE TEMP TABLE imported AS SELECT * FROM pg_temp.import_all(:'examples'::jsonb);
RESET client_min_messages;
SELECT count(*) AS documents, count(*) FILTER (WHERE error IS NULL) AS imported,
       sum(operations) AS operations, sum(actions) AS actions,
       count(*) FILTER (WHERE actions IS DISTINCT FROM operations) AS mismatched
  FROM imported;
SELECT * FROM imported WHERE error IS NOT NULL OR actions IS DISTINCT FROM operations;
-- The JSON and YAML copies of a document give the same actions (the
-- copies' descriptions differ here and there, so names and inputs are
-- compared; the package's two copies of 3.1 parameters-style really differ:
-- two operations have GET in one and POST in the other).
CREATE FUNCTION pg_temp.shape(app text) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_agg(jsonb_build_array(a.tag, a.spec->'method', a.spec->'resource', a.spec->'request_type',
                                       (SELECT jsonb_agg(k ORDER BY k) FROM jsonb_object_keys(a.spec #> '{input,properties}') k),
                                       a.spec #> '{input,required}') ORDER BY a.position)
      FROM ductape.actions a WHERE a.app = $1
$$;
SELECT count(*) AS pairs,
       count(*) FILTER (WHERE pg_temp.shape('ex-' || ductape._kebab(j)) IS NOT DISTINCT FROM pg_temp.shape('ex-' || ductape._kebab(y))) AS same_actions
  FROM (SELECT regexp_replace(file, '\.json$', '') AS j FROM imported WHERE file LIKE '%/json/%') js
  JOIN (SELECT regexp_replace(file, '\.yaml$', '') AS y FROM imported WHERE file LIKE '%/yaml/%') ys
    ON replace(j, '/json/', '/') = replace(y, '/yaml/', '/');
SELECT j AS differs FROM (SELECT regexp_replace(file, '\.json$', '') AS j FROM imported WHERE file LIKE '%/json/%') js
  JOIN (SELECT regexp_replace(file, '\.yaml$', '') AS y FROM imported WHERE file LIKE '%/yaml/%') ys
    ON replace(j, '/json/', '/') = replace(y, '/yaml/', '/')
 WHERE pg_temp.shape('ex-' || ductape._kebab(j)) IS DISTINCT FROM pg_temp.shape('ex-' || ductape._kebab(y));
SELECT count(*) AS dropped FROM (SELECT ductape.app_drop(tag) FROM ductape.apps WHERE tag LIKE 'ex-%') s;

-- A document of our own, in YAML: servers with variables, bearer auth,
-- $ref'd parameters and bodies, a recursive schema, operationId
-- collisions, a path parameter with a dash, readOnly fields, allOf.
\set petshop `cat test/data/petshop.yaml`
CREATE TEMP TABLE docs AS SELECT :'petshop' AS petshop, NULL::jsonb AS collection;
SELECT ductape.import_openapi(:'petshop');
SELECT jsonb_pretty(ductape.app_export('pet-shop') - 'actions') AS app;
SELECT tag, spec->>'method' AS method, spec->>'resource' AS resource, spec->>'request_type' AS request_type,
       (SELECT jsonb_object_agg(k, v->>'in') FROM jsonb_each(spec #> '{input,properties}') p(k, v)) AS inputs,
       spec #> '{input,required}' AS required
  FROM ductape.actions WHERE app = 'pet-shop' ORDER BY position;
-- the input schema carries the components its $refs reach, and nothing else
SELECT jsonb_object_keys(spec #> '{input,components,schemas}') AS schemas
  FROM ductape.actions WHERE app = 'pet-shop' AND tag = 'create-pet';
SELECT jsonb_pretty(ductape.describe('pet-shop', 'create-pet')) AS describe;

-- Calling an imported action: placement follows the document, and the
-- schema refuses bad input before anything is sent.
SELECT ductape.import_openapi(:'petshop', app => 'petshop-local', base_url => api() || '/echo');
SELECT ductape.secret_set('PETSHOP_LOCAL_TOKEN', 'tok-imported-123');
SELECT r->>'method' AS method, r->>'path' AS path, r->'query' AS query, r->'headers'->>'x-request-id' AS request_id,
       r->'headers'->>'authorization' = 'Bearer tok-imported-123' AS bearer, (r->>'body')::jsonb AS body
  FROM (SELECT ductape.run('petshop-local', 'create-pet',
          '{"store_id": "s1", "X-Request-Id": "r-1", "dry_run": true, "name": "Rex", "kind": "dog",
            "owner": {"name": "Ada", "pets": [{"name": "Bo", "kind": "cat"}]}, "headers:X-Test-Key": "imported"}') AS r) s;
SELECT expect_error($$SELECT ductape.run('petshop-local', 'create-pet',
          '{"store_id": "s1", "name": "", "kind": "lizard", "owner": {"pets": [{"name": 7}]}, "headers:X-Test-Key": "imported"}')$$);
SELECT api_count('imported') AS requests_sent;
SELECT r->>'path' AS path FROM (SELECT ductape.run('petshop-local', 'get-pet', '{"store_id": "s1", "pet_id": 9}') AS r) s;

-- Re-importing: refused unless update_if_exists, which keeps what the
-- document does not describe (here, a constant).
SELECT expect_error($$SELECT ductape.import_openapi((SELECT petshop FROM docs))$$);
SELECT ductape.app_define(ductape.app_export('pet-shop') || '{"constants": {"kept": "yes"}}');
SELECT ductape.import_openapi(:'petshop', update_if_exists => true);
SELECT spec->'constants' AS constants, (SELECT count(*) FROM ductape.actions WHERE app = 'pet-shop') AS actions
  FROM ductape.apps WHERE tag = 'pet-shop';

-- Bad documents: 22023 with the JSON path of each problem; nothing stored.
SELECT count(*) AS apps_before FROM ductape.apps;
SELECT expect_error($$SELECT ductape.import_openapi('{"swagger": "2.0", "info": {"title": "Old"}, "paths": {}}')$$);
SELECT expect_error($$SELECT ductape.import_openapi('{"openapi": "4.0.0", "info": {"title": "Next"}}')$$);
SELECT expect_error($$SELECT ductape.import_openapi('openapi: 3.0.3
info: {title: Broken}
paths:
  /a:
    get: [unclosed')$$);
-- (a YAML document with no node in it: refused after the parser loaded it)
SELECT expect_error($$SELECT ductape.import_openapi('# only a comment')$$);
SELECT expect_error($$SELECT ductape.import_openapi('{"openapi": "3.0.3", "info": {"title": "x"}, "paths": {"/a": }}')$$);
SELECT expect_error($$SELECT ductape.import_openapi('{"openapi": "3.1.0", "info": {}, "paths": []}')$$);
SELECT expect_error($$SELECT ductape.import_openapi('{"openapi": "3.0.3", "info": {"title": "Refs"}, "paths": {"/a/{id}": {"get": {
    "parameters": [{"$ref": "#/components/parameters/missing"}, {"$ref": "https://example.com/p.json"}],
    "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Gone"}}}}}}}}')$$);
SELECT expect_error($$SELECT ductape.import_openapi('{"openapi": "3.0.3", "info": {"title": "Loop"}, "paths": {"/a": {"get": {
    "parameters": [{"$ref": "#/components/parameters/a"}]}}},
    "components": {"parameters": {"a": {"$ref": "#/components/parameters/b"}, "b": {"$ref": "#/components/parameters/a"}}}}')$$);
SELECT expect_error($$SELECT ductape.import_openapi('{"openapi": "3.0.3", "info": {"title": "Bad Schema"}, "paths": {"/a": {"get": {
    "parameters": [{"name": "n", "in": "query", "schema": {"type": "int", "minLength": -1}}]}}}}')$$);
SELECT expect_error($$SELECT ductape.import_openapi('{"openapi": "3.0.3", "info": {"title": "x"}, "paths": {}}', app => 'Not A Tag')$$);
SELECT count(*) AS apps_after FROM ductape.apps;

-- ECMAScript-only patterns PostgreSQL cannot compile are left out, with a notice.
SELECT ductape.import_openapi('{"openapi": "3.0.3", "info": {"title": "Patterns"}, "paths": {"/a": {"get": {
    "parameters": [{"name": "slug", "in": "query", "schema": {"type": "string", "pattern": "^[a-z0-9-_ ]+$"}},
                   {"name": "code", "in": "query", "schema": {"type": "string", "pattern": "^[A-Z]{3}$"}}]}}}}', base_url => 'http://127.0.0.1:1');
SELECT spec #> '{input,properties}' AS properties FROM ductape.actions WHERE app = 'patterns';
SELECT ductape.app_drop('patterns');
-- Which patterns are left out, and where they are, the schema check says
-- as data, not in the text of its problems: parameters named like that text,
-- with a %-escape, or with "~" and "/" in their names are no different.
SELECT ductape.import_openapi('{"openapi": "3.0.3", "info": {"title": "Patterns"}, "paths": {"/a": {"get": {
    "parameters": [{"name": "a: invalid regular expression: b", "in": "query", "schema": {"type": "string", "pattern": "^[a-z0-9-_ ]+$"}},
                   {"name": "x%41", "in": "query", "schema": {"type": "string", "pattern": "^[0-9-_]+$"}},
                   {"name": "c~/d", "in": "query", "schema": {"type": "string", "pattern": "^[a-z-_]+$"}},
                   {"name": "e", "in": "query", "schema": {"type": "object", "patternProperties": {"^[0-9-_]$": {}, "^ok$": {}}}}]}}}}',
                              base_url => 'http://127.0.0.1:1');
SELECT spec #> '{input,properties}' AS properties FROM ductape.actions WHERE app = 'patterns';
SELECT ductape.app_drop('patterns');
-- A problem that is not about a pattern leaves nothing out (and refuses the
-- document), whatever its pointer says.
SELECT expect_error($$SELECT ductape.import_openapi('{"openapi": "3.0.3", "info": {"title": "Patterns"}, "paths": {"/a": {"get": {
    "parameters": [{"name": "n: invalid regular expression: m", "in": "query", "schema": {"type": "string", "minLength": -1}}]}}}}',
                                                    base_url => 'http://127.0.0.1:1')$$);
SELECT ductape._schema_bad_patterns('{"properties": {"a/b~c": {"pattern": "[0-9-_]"}, "ok": {"pattern": "^x$"}},
                                      "patternProperties": {"[z-a]": {"pattern": "("}}}') AS bad_patterns;

-- Postman v2.1: folders flattened into tags, {{var}} -> variables, :param
-- paths kept; raw JSON, urlencoded and form-data bodies; the collection's
-- credentials are never stored.
\set collection `cat test/data/billing.postman_collection.json`
UPDATE docs SET collection = :'collection';
SELECT ductape.import_postman(:'collection');
SELECT jsonb_pretty(ductape.app_export('billing-api') - 'actions') AS app;
SELECT tag, spec->>'method' AS method, spec->>'resource' AS resource, spec->>'request_type' AS request_type,
       spec->'headers' AS headers,
       (SELECT jsonb_object_agg(k, v->>'in') FROM jsonb_each(spec #> '{input,properties}') p(k, v)) AS inputs
  FROM ductape.actions WHERE app = 'billing-api' ORDER BY position;
SELECT count(*) AS stored_credentials
  FROM ductape.apps a JOIN ductape.actions x ON x.app = a.tag
 WHERE a.tag = 'billing-api' AND (a.spec::text LIKE '%pm-secret-token%' OR x.spec::text LIKE '%pm-secret-token%');
SELECT expect_error($$SELECT ductape.import_postman((SELECT collection FROM docs))$$);
SELECT expect_error($$SELECT ductape.import_postman('{"info": {"name": "Old", "schema": "https://schema.getpostman.com/json/collection/v2.0.0/collection.json"}}')$$);
SELECT expect_error($$SELECT ductape.import_postman('[]')$$);
SELECT ductape.app_drop('billing-api');
SELECT ductape.app_drop('pet-shop');
SELECT ductape.app_drop('petshop-local');
SELECT ductape.secret_drop('PETSHOP_LOCAL_TOKEN');
