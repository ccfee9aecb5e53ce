-- JSON Schema validation (docs/reference.md): the draft 4 cases of the JSON
-- Schema Test Suite, then the validator's messages.
\set suite `sh test/schema_suite.sh`
CREATE TEMP TABLE suite AS
SELECT f.key AS file, grp->>'description' AS grp, grp->'schema' AS schema,
       t->>'description' AS test, t->'data' AS data, (t->>'valid')::boolean AS valid,
       -- cases that need a document fetched from elsewhere
       jsonb_path_exists(grp->'schema', 'strict $.**."$ref" ? (!(@ starts with "#"))') AS remote,
       -- formats the contract does not list (ignored, as the specification allows)
       coalesce(grp #>> '{schema,format}' NOT IN ('email', 'uuid', 'date-time', 'date', 'uri'), false) AS unsupported
  FROM jsonb_each(:'suite'::jsonb) f,
       jsonb_array_elements(f.value) grp,
       jsonb_array_elements(grp->'tests') t
 WHERE f.key <> '';
CREATE TEMP TABLE results AS
SELECT *, cardinality(ductape._schema_validate(schema, data)) = 0 AS got FROM suite
 WHERE NOT remote AND NOT unsupported;
-- the pass count (required cases, then the optional ones)
SELECT file LIKE 'optional/%' AS optional, count(*) AS cases,
       count(*) FILTER (WHERE got = valid) AS passed
  FROM results GROUP BY 1 ORDER BY 1;
SELECT count(*) FILTER (WHERE remote) AS skipped_remote_refs,
       count(*) FILTER (WHERE unsupported) AS skipped_unlisted_formats
  FROM suite;
-- every case that does not pass, with why
SELECT file, grp, test, valid FROM results WHERE got <> valid ORDER BY 1, 2, 3;

-- The validator's messages, one keyword at a time: every violation is
-- "/json/pointer: reason", the pointer locating the value in the input.
SELECT k, ductape._schema_validate(s::jsonb, i::jsonb) AS violations FROM (VALUES
  ('type',       '{"type": "integer"}',                              '"7"'),
  ('type list',  '{"type": ["string", "null"]}',                     '7'),
  ('nullable',   '{"type": "string", "nullable": true}',             'null'),
  ('integer',    '{"type": "integer"}',                              '1.0'),
  ('enum',       '{"enum": ["usd", "eur"]}',                         '"gbp"'),
  ('const',      '{"const": {"a": 1}}',                              '{"a": 1.0}'),
  ('minimum',    '{"minimum": 1, "maximum": 10}',                    '0'),
  ('exclusive',  '{"exclusiveMinimum": 0, "exclusiveMaximum": 5}',   '5'),
  ('draft 4',    '{"minimum": 0, "exclusiveMinimum": true}',         '0'),
  ('multipleOf', '{"multipleOf": 0.01}',                             '1.005'),
  ('lengths',    '{"minLength": 2, "maxLength": 3}',                 '"日本語です"'),
  ('pattern',    '{"pattern": "^[a-z]+$"}',                          '"abc1"'),
  ('email',      '{"format": "email"}',                              '"me@@example.com"'),
  ('uuid',       '{"format": "uuid"}',                               '"6f1c2b3a-0000-4000-8000-00000000000g"'),
  ('date-time',  '{"format": "date-time"}',                          '"2026-02-29T10:00:00Z"'),
  ('date',       '{"format": "date"}',                               '"2024-02-29"'),
  ('uri',        '{"format": "uri"}',                                '"/relative/path"'),
  ('unknown',    '{"format": "hostname"}',                           '"not a host"'),
  ('items',      '{"items": {"type": "string"}, "minItems": 3, "uniqueItems": true}', '["a", 1, "a"]'),
  ('tuple',      '{"items": [{"type": "string"}], "additionalItems": false}', '["a", "b"]'),
  ('properties', '{"required": ["a", "b"], "properties": {"a": {"type": "object", "properties": {"x/y": {"type": "string"}}}}, "additionalProperties": false}',
                 '{"a": {"x/y": 1}, "c": true}'),
  ('patterns',   '{"patternProperties": {"^x-": {"type": "string"}}, "additionalProperties": {"type": "integer"}}',
                 '{"x-a": 1, "b": "two", "c": 3}'),
  ('counts',     '{"minProperties": 2, "maxProperties": 3}',         '{"a": 1}'),
  ('dependencies', '{"dependencies": {"card": ["billing"], "b": {"required": ["c"]}}}', '{"card": 1, "b": 2}'),
  ('allOf',      '{"allOf": [{"type": "string"}, {"minLength": 3}]}', '"ab"'),
  ('anyOf',      '{"anyOf": [{"type": "string"}, {"minimum": 3}]}',   '2'),
  ('oneOf',      '{"oneOf": [{"type": "integer"}, {"minimum": 3}]}',  '5'),
  ('not',        '{"not": {"type": "null"}}',                         'null'),
  ('false',      '{"properties": {"a": false}}',                      '{"a": 1}'),
  ('$ref',       '{"definitions": {"pos": {"type": "integer", "minimum": 1}}, "properties": {"n": {"$ref": "#/definitions/pos"}}}', '{"n": 0}'),
  ('recursive',  '{"properties": {"name": {"type": "string"}, "children": {"type": "array", "items": {"$ref": "#"}}}}',
                 '{"children": [{"name": "a"}, {"children": [{"name": 2}]}]}'),
  ('circular',   '{"definitions": {"a": {"$ref": "#/definitions/b"}, "b": {"$ref": "#/definitions/a"}}, "$ref": "#/definitions/a"}', '1'),
  ('dangling',   '{"$ref": "#/definitions/missing"}',                 '1'),
  ('remote',     '{"$ref": "https://example.com/schema.json"}',        '1')
) AS t(k, s, i);

-- Define-time: a schema's own problems, each with its path in the spec.
SELECT unnest(ductape._schema_check(
  '{"type": "text", "required": "a", "minLength": -1, "pattern": "(", "anyOf": [],
    "properties": {"a": {"$ref": "#/definitions/nope"}, "b": 3, "c": {"items": {"maxItems": 1.5}}},
    "patternProperties": {"[": {}}, "multipleOf": 0, "definitions": {"x": {"$ref": "#/definitions/y"}, "y": {"$ref": "#/definitions/x"}}}',
  '/actions/0/input')) AS problem;

-- Drafts 6 to 2020-12 (the dialect of OpenAPI 3.1): each keyword with a
-- value that passes ({}) and values that do not.
SELECT k, i AS input, ductape._schema_validate(s::jsonb, i::jsonb) AS violations FROM (VALUES
  ('if/then/else', '{"if": {"properties": {"kind": {"const": "card"}}}, "then": {"required": ["number"]}, "else": {"required": ["iban"]}}',
                   '{"kind": "card", "number": "4242"}'),
  ('if/then/else', '{"if": {"properties": {"kind": {"const": "card"}}}, "then": {"required": ["number"]}, "else": {"required": ["iban"]}}',
                   '{"kind": "card", "iban": "DE89"}'),
  ('if/then/else', '{"if": {"properties": {"kind": {"const": "card"}}}, "then": {"required": ["number"]}, "else": {"required": ["iban"]}}',
                   '{"kind": "sepa", "iban": "DE89"}'),
  ('if/then/else', '{"if": {"properties": {"kind": {"const": "card"}}}, "then": {"required": ["number"]}, "else": {"required": ["iban"]}}',
                   '{"kind": "sepa"}'),
  ('then, no if',  '{"then": {"const": 0}}',                                   '"hello"'),
  ('if: true',     '{"if": true, "then": {"const": "then"}, "else": {"const": "else"}}', '"else"'),
  ('if: false',    '{"if": false, "then": false}',                              '1'),
  ('then: false',  '{"if": {"const": 1}, "then": false}',                       '1'),
  ('contains',     '{"contains": {"type": "integer"}}',                         '["a", 1]'),
  ('contains',     '{"contains": {"type": "integer"}}',                         '["a", "b"]'),
  ('contains',     '{"contains": {"type": "integer"}}',                         '"not an array"'),
  ('min/max',      '{"contains": {"const": 1}, "minContains": 2, "maxContains": 3}', '[1, 2, 1]'),
  ('min/max',      '{"contains": {"const": 1}, "minContains": 2, "maxContains": 3}', '[1, 2]'),
  ('min/max',      '{"contains": {"const": 1}, "minContains": 2, "maxContains": 3}', '[1, 1, 1, 1]'),
  ('maxContains',  '{"contains": {"const": 1}, "maxContains": 1}',              '[1, 2, 1]'),
  ('maxContains',  '{"contains": {"const": 1}, "maxContains": 0}',              '[]'),
  ('minContains',  '{"contains": {"const": 1}, "minContains": 0}',              '[]'),
  ('no contains',  '{"maxContains": 1}',                                        '[1, 1]'),
  ('propertyNames', '{"propertyNames": {"pattern": "^[a-z_]+$", "maxLength": 8}}', '{"ok_name": 1}'),
  ('propertyNames', '{"propertyNames": {"pattern": "^[a-z_]+$", "maxLength": 8}}', '{"Bad-Name": 1, "much_too_long": 2, "fine": 3}'),
  ('propertyNames', '{"propertyNames": false}',                                 '{}'),
  ('propertyNames', '{"propertyNames": false}',                                 '{"a~/b": 1}'),
  ('dependentRequired', '{"dependentRequired": {"card": ["billing", "cvc"]}}', '{"card": 1, "billing": 2, "cvc": 3}'),
  ('dependentRequired', '{"dependentRequired": {"card": ["billing", "cvc"]}}', '{"billing": 2}'),
  ('dependentRequired', '{"dependentRequired": {"card": ["billing", "cvc"]}}', '{"card": 1}'),
  ('dependentSchemas', '{"dependentSchemas": {"card": {"required": ["cvc"], "properties": {"cvc": {"type": "string"}}}}}', '{"card": 1, "cvc": "123"}'),
  ('dependentSchemas', '{"dependentSchemas": {"card": {"required": ["cvc"], "properties": {"cvc": {"type": "string"}}}}}', '{"card": 1, "cvc": 123}'),
  ('dependentSchemas', '{"dependentSchemas": {"card": false}}',                 '{"card": 1}'),
  ('prefixItems',  '{"prefixItems": [{"type": "string"}, {"type": "integer"}], "items": {"type": "boolean"}}', '["a", 1, true, false]'),
  ('prefixItems',  '{"prefixItems": [{"type": "string"}, {"type": "integer"}], "items": {"type": "boolean"}}', '[1, "a", "x"]'),
  ('prefixItems',  '{"prefixItems": [{"type": "string"}], "items": false}',    '["a", "b", "c"]'),
  ('prefixItems',  '{"prefixItems": [{"type": "string"}]}',                    '["a", 2]'),
  ('prefixItems',  '{"prefixItems": [{"type": "string"}, {"type": "string"}], "items": false}', '["a"]'),
  ('unevaluated',  '{"properties": {"a": {}}, "unevaluatedProperties": false}', '{"a": 1, "b": 2}'),
  ('unevaluated',  '{"anyOf": [{"properties": {"kind": {"const": "card"}, "number": {}}, "required": ["kind"]}, {"properties": {"kind": {"const": "bank"}, "iban": {}}, "required": ["kind"]}], "unevaluatedProperties": false}',
                   '{"kind": "card", "number": "4242"}'),
  ('unevaluated',  '{"anyOf": [{"properties": {"kind": {"const": "card"}, "number": {}}, "required": ["kind"]}, {"properties": {"kind": {"const": "bank"}, "iban": {}}, "required": ["kind"]}], "unevaluatedProperties": false}',
                   '{"kind": "card", "iban": "DE89"}'),
  ('unevaluated',  '{"allOf": [{"$ref": "#/$defs/base"}], "properties": {"extra": {}}, "unevaluatedProperties": {"type": "integer"}, "$defs": {"base": {"properties": {"id": {}}}}}',
                   '{"id": "x", "extra": "y", "n": 2, "s": "t"}'),
  ('unevaluated',  '{"if": {"properties": {"t": {"const": 1}}}, "then": {"properties": {"x": {}}}, "unevaluatedProperties": false}', '{"t": 1, "x": 2}'),
  ('unevaluated',  '{"if": {"properties": {"t": {"const": 1}}}, "then": {"properties": {"x": {}}}, "unevaluatedProperties": false}', '{"t": 2, "x": 2}'),
  ('unevaluated',  '{"allOf": [{"properties": {"a": {}}, "unevaluatedProperties": true}], "unevaluatedProperties": false}', '{"a": 1, "b": 2}'),
  ('unevaluated',  '{"patternProperties": {"^x-": {}}, "dependentSchemas": {"a": {"properties": {"b": {}}}}, "unevaluatedProperties": false}',
                   '{"x-1": 1, "a": 2, "b": 3, "c": 4}'),
  ('unevaluated',  '{"additionalProperties": {"type": "string"}, "unevaluatedProperties": false}', '{"a": "x"}')
) AS t(k, s, i);

-- Define-time: their own problems.  unevaluatedItems, $dynamicRef and
-- $recursiveRef are not supported, and unevaluatedProperties next to $ref
-- would not be applied (siblings of $ref are not): they are refused rather
-- than ignored, since an ignored one would let through input the schema
-- forbids.
SELECT unnest(ductape._schema_check(
  '{"if": {"type": 1}, "then": 3, "else": {"minLength": -1},
    "contains": [], "minContains": -1, "maxContains": 1.5,
    "propertyNames": {"pattern": "("},
    "dependentRequired": {"a": "b", "c": ["d", 1]},
    "dependentSchemas": {"a": 5, "b": {"$ref": "#/nope"}},
    "dependencies": {"a": [2], "b": 7},
    "prefixItems": [], "items": [{}], "additionalItems": false,
    "unevaluatedProperties": 3,
    "properties": {"x": {"unevaluatedItems": false}, "y": {"$dynamicRef": "#meta"}, "z": {"$recursiveRef": "#"},
                   "w": {"$ref": "#/properties/x", "unevaluatedProperties": false}}}',
  '/actions/0/input')) AS problem;
SELECT ductape._schema_check(
  '{"if": {"required": ["a"]}, "then": {}, "else": false, "contains": {"type": "string"}, "minContains": 0, "maxContains": 2.0,
    "propertyNames": {"maxLength": 3}, "dependentRequired": {"a": ["b"]}, "dependentSchemas": {"a": {}, "b": true},
    "dependencies": {"c": ["d"], "e": {"required": ["f"]}}, "prefixItems": [{}, true], "items": false,
    "unevaluatedProperties": {"type": "string"}}', '') AS fine;
-- a schema dependency that applies the whole schema again never ends
SELECT ductape._schema_check('{"dependentSchemas": {"a": {"$ref": "#"}}}', '/input') AS loop;

-- app_define and import_openapi refuse them with the pointer (22023); an
-- import is refused whole (nothing stored), each line saying where.
SELECT expect_error($$SELECT ductape.app_define('{"tag": "uneval", "envs": [{"slug": "dev", "base_url": "http://127.0.0.1:9"}],
  "actions": [{"tag": "a", "method": "POST", "resource": "/a",
               "input": {"properties": {"a": {"$ref": "#/$defs/a", "unevaluatedProperties": false}},
                         "$defs": {"a": {"properties": {"x": {}}}}}}]}')$$);
SELECT expect_error($$SELECT ductape.import_openapi('openapi: 3.1.0
info: {title: Uneval}
servers: [{url: "https://api.example.com"}]
paths:
  /orders:
    post:
      operationId: create-order
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              properties:
                customer:
                  allOf: [{$ref: "#/components/schemas/Person"}]
                  unevaluatedProperties: false
                lines: {type: array, prefixItems: [{type: string}], unevaluatedItems: false}
components:
  schemas:
    Person: {properties: {name: {type: string}}}')$$);
SELECT count(*) AS apps FROM ductape.apps WHERE tag = 'uneval';
-- and a 3.1 document with the keywords that are supported imports, and
-- its input is checked with them
SELECT ductape.import_openapi('openapi: 3.1.0
info: {title: Dialect 2020}
servers: [{url: "https://api.example.com"}]
paths:
  /orders:
    post:
      operationId: create-order
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              properties:
                payment:
                  type: object
                  if: {properties: {kind: {const: card}}}
                  then: {required: [number]}
                  dependentRequired: {number: [cvc]}
                  propertyNames: {pattern: "^[a-z]+$"}
                customer:
                  allOf: [{$ref: "#/components/schemas/Person"}]
                  unevaluatedProperties: false
                lines: {type: array, prefixItems: [{type: string}], items: {type: integer}, contains: {const: 0}, maxContains: 1}
components:
  schemas:
    Person: {properties: {name: {type: string}}}', base_url => 'http://127.0.0.1:9');
SELECT expect_error($$SELECT ductape.run('dialect-2020', 'create-order',
  '{"payment": {"kind": "card", "Cvc": 1}, "customer": {"name": "Ada", "email": "ada@example.com"}, "lines": ["a", "b", 0, 0]}')$$);
SELECT ductape.app_drop('dialect-2020');

-- uniqueItems sorts the items instead of comparing every pair (which took
-- minutes, and could not be cancelled, for 100,000 items); equal items are
-- reported by position, numbers by value.
SELECT ductape._schema_validate('{"uniqueItems": true}', '[1, "a", {"x": [1.0]}, 2, "a", {"x": [1]}, 1.0]') AS first_pair,
       ductape._schema_validate('{"uniqueItems": true}', '[[1], [true], {"a": 1}, {"a": "1"}, 0, false, null, "", []]') AS unique;
SET statement_timeout = '10s';
SELECT ductape._schema_validate('{"uniqueItems": true}', (SELECT jsonb_agg(i) FROM generate_series(1, 100000) i)) AS distinct_100000,
       ductape._schema_validate('{"uniqueItems": true}', (SELECT jsonb_agg(i % 99999) FROM generate_series(1, 100000) i)) AS one_pair;
RESET statement_timeout;

-- An action with an input schema: run, run_response, dispatch and triggers
-- check the flat input before anything is written or sent.
SELECT ductape.app_define(jsonb_build_object(
  'tag', 'shop',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', api())),
  'actions', jsonb_build_array(jsonb_build_object(
    'tag', 'create-order', 'method', 'POST', 'resource', '/echo/shops/:shop/orders',
    'headers', jsonb_build_object('X-Test-Key', 'schema'),
    'input', '{
      "type": "object", "additionalProperties": false,
      "required": ["shop", "amount", "currency", "email"],
      "properties": {
        "shop":     {"type": "string", "in": "params", "pattern": "^[a-z]+$"},
        "amount":   {"type": "integer", "minimum": 1},
        "currency": {"type": "string", "enum": ["usd", "eur"]},
        "email":    {"type": "string", "format": "email"},
        "trace":    {"type": "string", "format": "uuid", "in": "headers"},
        "items":    {"type": "array", "maxItems": 3, "items": {"$ref": "#/definitions/item"}}
      },
      "definitions": {"item": {"type": "object", "required": ["sku"],
                               "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "exclusiveMinimum": 0}}}}
    }'::jsonb))));
SELECT api_count('schema') AS requests_before;

-- Good input goes through; a placement prefix names the same property.
SELECT r->>'path' AS path, (r->>'body')::jsonb AS body, r->'headers'->>'trace' AS trace
  FROM (SELECT ductape.run('shop', 'create-order',
          '{"shop": "acme", "amount": 1000, "currency": "usd", "email": "ada@example.com",
            "headers:trace": "6f1c2b3a-0000-4000-8000-000000000001", "items": [{"sku": "A1", "qty": 2}]}') AS r) s;
SELECT api_count('schema') AS requests_after_good_call;

-- Bad input: every violation listed, nothing sent.
SELECT expect_error($$SELECT ductape.run('shop', 'create-order',
          '{"shop": "Acme", "amount": 0, "currency": "gbp", "email": "ada",
            "body:coupon": "X", "headers:trace": "nope", "items": [{"qty": 0}, {"sku": 1}]}')$$);
SELECT expect_error($$SELECT ductape.run_response('shop', 'create-order', '{"shop": "acme", "body:amount": "1000"}')$$);
SELECT expect_error($$SELECT ductape.dispatch('shop', 'create-order', '{"shop": "acme"}')$$);
SELECT count(*) AS jobs_written FROM ductape.jobs WHERE app = 'shop';
CREATE TABLE public.shop_orders (id int PRIMARY KEY, shop text, amount int);
CREATE TRIGGER shop_orders_created AFTER INSERT ON public.shop_orders
    FOR EACH ROW EXECUTE FUNCTION ductape.on_row('shop', 'create-order',
        '{"shop": "$Row{shop}", "amount": "$Row{amount}", "currency": "usd", "email": "ops@example.com"}');
SELECT expect_error($$INSERT INTO public.shop_orders VALUES (1, 'acme', -5)$$);
SELECT count(*) AS rows_kept FROM public.shop_orders;
SELECT count(*) AS jobs_written FROM ductape.jobs WHERE app = 'shop';
SELECT api_count('schema') AS requests_after_bad_calls;
-- a good row queues a job that runs
INSERT INTO public.shop_orders VALUES (2, 'acme', 5);
SELECT ductape.wait(id)->>'state' AS state FROM ductape.jobs WHERE app = 'shop';

-- A schema with problems is refused at define time, with every path.
SELECT expect_error($$SELECT ductape.action_define('shop', '{"tag": "bad", "method": "GET", "resource": "/echo",
    "input": {"properties": {"n": {"type": "int", "pattern": "(["}}, "required": "n"}}')$$);
DROP TABLE public.shop_orders;
SELECT ductape.app_drop('shop');
