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

-- openapi: "$ref": "#" (the whole document) made _ref_target build a jsonb
-- from a value without a length, reading past the document ("invalid jsonb
-- container type", XX000); "#" is now the document itself.
SELECT ductape._ref_target('{"a": [1, {"b": 2}]}', '#') AS whole,
       ductape._ref_target('{"a": [1, {"b": 2}]}', '#/a/1') AS part;
SELECT ductape.import_openapi(E'openapi: 3.0.n}\npaths:\n  /a/{i, tru, schema: {$ref: "#"}#&####"}#&###}]\ncom  Id:\t\tid\n', 'fuzz-ref-root');
SELECT tag, spec->'input' AS input FROM ductape.actions WHERE app = 'fuzz-ref-root';
SELECT ductape.app_drop('fuzz-ref-root');

-- schema: a count keyword past int64 (maxLength 1e40) is a non-negative
-- integer the define-time check accepts, but validation failed with
-- "bigint out of range" (22003); it now counts as the largest int64.
SELECT ductape._schema_check('{"properties": {"b": {"maxLength": 4222222222222222222222222222222222222222222222}}}', '');
SELECT ductape._schema_validate('{"properties": {"b": {"maxLength": 1e40}, "c": {"minItems": 1e30}}, "minProperties": 1e30}',
                                '{"b": "", "c": [1]}');

-- ---- nesting: every recursive parser and evaluator has a limit ----
-- (src/workflow.c, template.c, schema.c, import.c; each error names what
-- and where, and the server stays up: this used to be signal 11, every
-- session lost.)
SELECT pg_backend_pid() AS pid \gset

-- conditions: parentheses and ! nest at most 100 levels deep (22023, a
-- problem listed with its path); a chain of && or || does not nest.
SELECT expect_error($$SELECT ductape.workflow_define(('{"tag": "w", "steps": [{"tag": "a", "type": "sql", "sql": "select 1", "condition": "' || repeat('!', 3000000) || 'true"}]}')::jsonb)$$);
SELECT (ductape._condition_check(repeat('!', 3000000) || 'true', '/c')).problems;
SELECT expect_error($$SELECT ductape._condition_eval(repeat('!', 3000000) || 'true', '{}')$$);
SELECT (ductape._condition_check(repeat('(', 1000000) || 'true' || repeat(')', 1000000), '/c')).problems;
SELECT expect_error($$SELECT ductape._condition_eval(repeat('(', 1000000) || 'true' || repeat(')', 1000000), '{}')$$);
SELECT (ductape._condition_check('1 == ' || repeat('[', 100000) || repeat(']', 100000), '/c')).problems;
-- 100 levels are fine; so is a chain of 300,000 operands
SELECT ductape._condition_eval(repeat('!', 100) || 'true', '{}') AS hundred_nots,
       ductape._condition_eval(repeat('(', 100) || 'true' || repeat(')', 100), '{}') AS hundred_parens,
       ductape._condition_eval(repeat('true && ', 300000) || 'true', '{}') AS long_and,
       ductape._condition_eval(repeat('false || ', 300000) || '$Input{x} == 1', '{"input": {"x": 1}}') AS long_or;
SELECT (ductape._condition_check(repeat('!', 101) || 'true', '/c')).problems;
-- messages quote at most 40 bytes of what they point at
SELECT (ductape._condition_check('true ' || repeat('x', 100000), '/c')).problems;

-- templates: arrays and objects nest at most 100 levels deep (22023 with
-- the pointer).  jsonb itself refuses 100,000 levels (the stack limit of
-- its own parser), so the deepest template reaching ductape is ~14,000.
SELECT expect_error($$SELECT ductape._workflow_template_errors((repeat('[', 100000) || '"$Input{x}"' || repeat(']', 100000))::jsonb, '/t')$$);
SELECT ductape._workflow_template_errors((repeat('[', 10000) || '"$Input{x}"' || repeat(']', 10000))::jsonb, '/output');
SELECT expect_error($$SELECT ductape._workflow_apply((repeat('{"a": ', 10000) || '"$Input{x}"' || repeat('}', 10000))::jsonb, '{"input": {"x": 1}}')$$);
SELECT cardinality(ductape._template_steps((repeat('[', 10000) || '"$Step{a}{x}"' || repeat(']', 10000))::jsonb)) AS steps;
SELECT expect_error($$SELECT ductape.workflow_define(('{"tag": "w", "steps": [{"tag": "a", "type": "sql", "sql": "select 1"}], "output": {"o": ' || repeat('[', 10000) || '"$Step{a}{x}"' || repeat(']', 10000) || '}}')::jsonb)$$);
SELECT ductape._workflow_template_errors((repeat('[', 99) || '"$Input{x}"' || repeat(']', 99))::jsonb, '/output') AS hundred_levels;
-- placeholders never nest: a string of 100,000 "$Input{" is one error
SELECT ductape._workflow_template_errors(to_jsonb(repeat('$Input{', 100000) || 'x' || repeat('}', 100000)), '/t');

-- JSON Schemas: at define time schemas nest at most 100 levels deep, and
-- at most 1000 apply to the same value (problems listed with the pointer,
-- 22023 from app_define); validation applies at most 1000 schemas inside
-- one another (54001).
SELECT expect_error($$SELECT ductape._schema_check((repeat('{"not": ', 100000) || '{}' || repeat('}', 100000))::jsonb, '/input')$$);
SELECT ductape._schema_check((repeat('{"allOf": [', 5000) || '{}' || repeat(']}', 5000))::jsonb, '/input');
SELECT ductape._schema_check((repeat('{"not": ', 10000) || '{}' || repeat('}', 10000))::jsonb, '/input');
SELECT ductape._schema_check((repeat('{"items": ', 10000) || '{}' || repeat('}', 10000))::jsonb, '/input');
SELECT ductape._schema_check((repeat('{"properties": {"a": ', 99) || '{}' || repeat('}}', 99))::jsonb, '/input') AS hundred_levels;
SELECT expect_error($$SELECT ductape.app_define(('{"tag": "fuzz-deep", "envs": [{"slug": "dev", "base_url": "http://127.0.0.1:9"}],
  "actions": [{"tag": "a", "method": "POST", "resource": "/a", "input": ' || repeat('{"allOf": [', 5000) || '{}' || repeat(']}', 5000) || '}]}')::jsonb)$$);
-- 1,500 definitions, each applying the next to the same value
SELECT ductape._schema_check(jsonb_build_object('$ref', '#/definitions/d0', 'definitions',
  (SELECT jsonb_object_agg('d' || i, CASE WHEN i = 1500 THEN '{}'::jsonb
          ELSE jsonb_build_object('allOf', jsonb_build_array(jsonb_build_object('$ref', '#/definitions/d' || (i + 1)))) END)
     FROM generate_series(0, 1500) i)), '/input');
-- the validator does not run the define-time check: its own limit
SELECT expect_error($$SELECT ductape._schema_validate((repeat('{"items": ', 10000) || '{}' || repeat('}', 10000))::jsonb, (repeat('[', 10000) || repeat(']', 10000))::jsonb)$$);
SELECT expect_error($$SELECT ductape._schema_validate((repeat('{"not": ', 10000) || '{}' || repeat('}', 10000))::jsonb, '1')$$);
-- a recursive schema (fine) and a value 10,000 levels deep; 40 are fine
SELECT expect_error($$SELECT ductape._schema_validate('{"items": {"$ref": "#"}}', (repeat('[', 10000) || repeat(']', 10000))::jsonb)$$);
SELECT ductape._schema_validate('{"items": {"$ref": "#"}, "maxItems": 1}', (repeat('[', 40) || '1, 2' || repeat(']', 40))::jsonb);

-- documents (import_openapi, _document_parse): arrays and objects, mappings
-- and sequences nest at most 512 levels deep (22023 with the line), checked
-- before libyaml's loader (whose scanner took 50 s for 100,000 levels of
-- "[") and before jsonb_in.
SELECT expect_error($$SELECT ductape.import_openapi(repeat('- ', 100000) || 'x')$$);
SELECT expect_error($$SELECT ductape.import_openapi(E'openapi: 3.0.3\ninfo: {title: deep}\npaths: ' || repeat('[', 100000) || repeat(']', 100000))$$);
SELECT expect_error($$SELECT ductape.import_openapi(E'openapi: 3.0.3\ninfo:\n  title: deep\npaths:\n  /a:\n    post:\n      requestBody:\n        content:\n          application/json:\n            schema: '
  || repeat('{not: ', 100000) || '{type: string}' || repeat('}', 100000))$$);
SELECT expect_error($$SELECT ductape.import_openapi(E'{"openapi": "3.0.3",\n "paths": ' || repeat('{"a": ', 100000) || '1' || repeat('}', 100000) || '}')$$);
SELECT expect_error($$SELECT ductape._document_parse(repeat('[', 100000) || repeat(']', 100000), 'the document')$$);
SELECT expect_error($$SELECT ductape._document_parse(repeat('{"a": ', 513) || '1' || repeat('}', 513), 'the document')$$);
SELECT jsonb_typeof(ductape._document_parse(repeat('{"a": ', 512) || '"[{[{"' || repeat('}', 512), 'the document')) AS json_512;
SELECT jsonb_typeof(ductape._document_parse('a: ' || repeat('[', 511) || repeat(']', 511), 'the document')) AS yaml_flow_512;
SELECT expect_error($$SELECT ductape._document_parse('a: ' || repeat('[', 512) || repeat(']', 512), 'the document')$$);
-- an alias inside the node it names
SELECT expect_error($$SELECT ductape._document_parse(E'a: &x\n  b: *x', 'the document')$$);
SELECT expect_error($$SELECT count(*) FROM ductape._json_refs((repeat('{"a": ', 600) || '{"$ref": "#"}' || repeat('}', 600))::jsonb)$$);

-- the same backend, still up
SELECT pg_backend_pid() = :pid AS same_backend, count(*) AS apps FROM ductape.apps WHERE tag LIKE 'fuzz%';
