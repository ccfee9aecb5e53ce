-- Inputs the fuzzers (scripts/fuzz, test/fuzz/fuzz.c) found, each kept as a
-- regression test once fixed.

-- document/openapi: a number numeric cannot hold used to surface as a bare
-- 22003 with no position; it is now the document's error, with its line.
SELECT expect_error($$SELECT ductape._document_parse(E'#+A :\nl: 40E-111111111111111111', 'the document')$$);
SELECT expect_error($$SELECT ductape._document_parse('{"a": 1e999999}', 'the document')$$);
SELECT expect_error($$SELECT ductape.import_openapi('1e999999')$$);
SELECT count(*) AS apps FROM ductape.apps WHERE tag LIKE 'fuzz%';

-- schema: a schema that applies itself to the same value through $ref
-- (here inside anyOf) made validation recurse without end (the fuzzer saw
-- 2 GB); it is refused when defined.
SELECT ductape._schema_check('{"anyOf": [{"$ref": "#"}, {"type": "integer", "$ref": "#"}]}', '');
SELECT ductape._schema_check('{"properties": {"a": {"allOf": [{"$ref": "#/properties/a"}]}}}', '');
SELECT ductape._schema_check('{"definitions": {"x": {"not": {"$ref": "#/definitions/y"}}, "y": {"if": {"$ref": "#/definitions/x"}}}}', '');
SELECT expect_error($$SELECT ductape.app_define('{"tag": "fuzz-loop", "envs": [{"slug": "dev", "base_url": "http://127.0.0.1:9"}],
  "actions": [{"tag": "a", "method": "POST", "resource": "/a",
               "input": {"properties": {"n": {"oneOf": [{"$ref": "#/properties/n"}, {"type": "integer"}]}}}}]}')$$);
-- recursion that descends into the value is fine
SELECT ductape._schema_check('{"properties": {"next": {"$ref": "#"}}, "type": "object"}', '');
SELECT ductape._schema_validate('{"properties": {"next": {"$ref": "#"}}, "required": ["v"]}', '{"v": 1, "next": {"v": 2, "next": {}}}');

-- and a $ref graph that multiplies (each level refers to the next twice:
-- 2^21 applications) stops at the step limit instead of running for minutes
SELECT expect_error(format($q$SELECT ductape._schema_validate(%L, '1')$q$,
  jsonb_build_object('$ref', '#/definitions/d0', 'definitions',
    (SELECT jsonb_object_agg('d' || i, CASE WHEN i = 20 THEN 'false'::jsonb
            ELSE jsonb_build_object('anyOf', jsonb_build_array(
                   jsonb_build_object('$ref', '#/definitions/d' || (i + 1)),
                   jsonb_build_object('$ref', '#/definitions/d' || (i + 1)))) END)
       FROM generate_series(0, 20) i))));
