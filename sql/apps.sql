-- Apps and actions: define, validate, export, drop, describe (docs/reference.md).

-- The app of the design contract, with every kind of key.
SELECT ductape.app_define($${
  "tag": "stripe", "name": "Stripe", "description": "Payments",
  "envs": [
    {"slug": "dev", "base_url": "https://api.stripe.com", "request_type": "application/x-www-form-urlencoded"},
    {"slug": "prd", "base_url": "https://api.stripe.com"}
  ],
  "constants": {"api_version": "2024-06-20"},
  "variables": {"account": {"required": false, "description": "connected account"}},
  "retries": {"max": 3},
  "timeout_ms": 30000,
  "actions": [
    {"tag": "create-charge", "method": "POST", "resource": "/v1/charges",
     "headers": {"Stripe-Version": "$Constant{api_version}"},
     "input": {"type": "object", "required": ["amount", "currency"],
               "properties": {"amount": {"type": "integer", "minimum": 1},
                              "currency": {"type": "string", "minLength": 3}}}},
    {"tag": "get-charge", "method": "get", "resource": "/v1/charges/:id"}
  ]
}$$);

-- Export gives back what was defined (methods upper-cased), and round-trips.
SELECT jsonb_pretty(ductape.app_export('stripe'));
SELECT ductape.app_export('stripe') = ductape.app_export(ductape.app_define(ductape.app_export('stripe'))) AS round_trip;

-- A broken definition: every problem is listed, nothing is stored.
SELECT expect_error($$SELECT ductape.app_define('{
  "tag": "broken", "colour": "red",
  "envs": [{"slug": "Dev", "base_url": "ftp://x"}, {"slug": "prd", "base_url": "https://a.example.com"},
           {"slug": "prd", "base_url": "https://b.example.com"}],
  "constants": {"k": 1},
  "retries": {"max": -1, "on": [700, "sometimes"]},
  "actions": [
    {"tag": "ok", "method": "FETCH", "resource": "/x"},
    {"tag": "param", "method": "GET", "resource": "/items/:id",
     "input": {"properties": {"name": {"type": "string", "in": "cookie"}}}},
    {"tag": "tpl", "method": "POST", "resource": "/t",
     "headers": {"X-A": "$Constant{k", "X-B": "$Inptu{x}", "X-C": "$Row{id}", "X-D": "$Constant{missing}",
                 "X-E": "$Variable{undeclared}", "Bad Header": "v", "X-F": "a\r\nInjected: 1"},
     "body": {"n": {"deep": ["$Now{x}"]}}},
    {"tag": "ok", "method": "GET"},
    "not an object"
  ]}')$$);
SELECT count(*) AS stored FROM ductape.apps WHERE tag = 'broken';

SELECT expect_error($$SELECT ductape.app_define('{"name": "no tag"}')$$);
SELECT expect_error($$SELECT ductape.app_define('{"tag": "Bad_Tag"}')$$);
SELECT expect_error($$SELECT ductape.app_define('[]')$$);
SELECT expect_error($$SELECT ductape.app_define('{"tag": "x", "actions": [{"tag": "a", "method": "GET", "resource": "/a/:"}]}')$$);
SELECT expect_error($$SELECT ductape.app_define('{"tag": "x", "actions": [{"tag": "a", "method": "GET", "resource": "/a?b=1"}]}')$$);
-- (a path parameter may appear twice: both take the same value)
SELECT ductape.app_define('{"tag": "x", "actions": [{"tag": "a", "method": "GET", "resource": "/a/:id/:id"}]}');
SELECT ductape.app_drop('x');

-- Upsert replaces the set of actions.
SELECT ductape.app_define('{"tag": "shop", "envs": [{"slug": "dev", "base_url": "http://127.0.0.1:1"}],
  "actions": [{"tag": "a", "method": "GET", "resource": "/a"}, {"tag": "b", "method": "GET", "resource": "/b"}]}');
SELECT ductape.app_define('{"tag": "shop", "envs": [{"slug": "dev", "base_url": "http://127.0.0.1:1"}],
  "actions": [{"tag": "b", "method": "POST", "resource": "/b2"}]}');
SELECT tag, spec->>'method' AS method, spec->>'resource' AS resource FROM ductape.actions WHERE app = 'shop';

-- app_create and action_define
SELECT ductape.app_create('empty', 'Empty', 'Nothing yet');
SELECT expect_error($$SELECT ductape.app_create('empty')$$);
SELECT expect_error($$SELECT ductape.app_create('No')$$);
SELECT ductape.action_define('empty', '{"tag": "ping", "method": "GET", "resource": "/ping"}');
SELECT ductape.action_define('empty', '{"tag": "ping", "method": "HEAD", "resource": "/ping"}');
SELECT ductape.app_export('empty');
SELECT expect_error($$SELECT ductape.action_define('nope', '{"tag": "a", "method": "GET", "resource": "/"}')$$);
SELECT expect_error($$SELECT ductape.action_define('empty', '{"tag": "a", "method": "GET", "resource": "/", "query": {"v": "$Constant{none}"}}')$$);
SELECT expect_error($$SELECT ductape.action_define('empty', '{"tag": "a", "method": "GET", "resource": "/", "success": [], "timeout_ms": 0}')$$);
SELECT count(*) AS actions_of_empty FROM ductape.actions WHERE app = 'empty';

-- describe
SELECT jsonb_pretty(ductape.describe('stripe'));
SELECT jsonb_pretty(ductape.describe('stripe', 'create-charge'));
SELECT ductape.describe('stripe', 'get-charge')->'inputs' AS inputs;
SELECT expect_error($$SELECT ductape.describe('stripe', 'refund')$$);
SELECT expect_error($$SELECT ductape.describe('nope')$$);

-- variables
SELECT ductape.variable_set('stripe', 'account', '"acct_1"');
SELECT product, app, env, key, value FROM ductape.variables;
SELECT expect_error($$SELECT ductape.variable_set('stripe', 'undeclared', '1')$$);
SELECT expect_error($$SELECT ductape.variable_set('stripe', 'account', '1', product => 'nope')$$);

-- drop
SELECT ductape.app_drop('empty');
SELECT count(*) FROM ductape.actions WHERE app = 'empty';
SELECT expect_error($$SELECT ductape.app_drop('empty')$$);
SELECT expect_error($$SELECT ductape.app_export('empty')$$);

-- describe() and run() place input by one rule (the request builder's): :id
-- in /files/:id.json is the path parameter for both (describe used to say
-- "query", while run sent it in the path).
SELECT ductape.app_define(jsonb_build_object('tag', 'files',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', api())),
  'actions', '[{"tag": "get", "method": "GET", "resource": "/echo/files/:id.json",
                "input": {"properties": {"id": {"type": "string"}, "v": {"type": "integer"}}}}]'::jsonb));
SELECT i->>'name' AS name, i->>'in' AS described_in
  FROM jsonb_array_elements(ductape.describe('files', 'get')->'inputs') i ORDER BY 1;
SELECT r->'body'->>'path' AS sent_path, r->'body'->'query' AS sent_query
  FROM (SELECT ductape.run_response('files', 'get', '{"id": "a1", "v": 2}') AS r) s;
-- (the same resource with POST, and a property that says where it goes:
-- again where run() sends them)
SELECT ductape.action_define('files', '{"tag": "put", "method": "POST", "resource": "/echo/files/:id.json",
  "input": {"properties": {"id": {"type": "string"}, "v": {"type": "integer"}, "mode": {"type": "string", "in": "query"}}}}');
SELECT i->>'name' AS name, i->>'in' AS described_in
  FROM jsonb_array_elements(ductape.describe('files', 'put')->'inputs') i ORDER BY 1;
SELECT r->'body'->>'path' AS sent_path, r->'body'->'query' AS sent_query, r->'body'->>'body' AS sent_body
  FROM (SELECT ductape.run_response('files', 'put', '{"id": "a1", "v": 2, "mode": "x"}') AS r) s;
SELECT ductape.app_drop('files');

-- The rules of an action have one implementation (src/catalog.c): what
-- action_define, app_define and the importers ask through _check_action,
-- and what the loader applies again to each stored action.  Each rule:
-- unknown keys (by name), the tag, name, method (shown as JSON), resource
-- and its :params, request type, templates, header names and values,
-- where properties go, success statuses, timeout and retry policy.
SELECT problem FROM unnest(ductape._check_action($${
  "tag": "Bad Tag", "colour": 1, "Alpha": 2, "name": 5, "method": {"verb": "fetch"},
  "resource": "/items/:id/:sku/:", "request_type": "text/html",
  "headers": {"Bad Header": "v", "X-F": "a\r\nInjected: 1", "X-C": "$Constant{missing}"},
  "query": [],
  "input": {"properties": {"id": {"type": "string", "in": "query"}, "x": {"in": "cookie"}}},
  "success": [200, "201", 99, 200.5],
  "timeout_ms": 86400001,
  "retries": {"max": 101, "on": [500, "sometimes", 5e2, 500.0], "multiplier": 11, "jitter": 2,
              "unsafe": "yes", "initial_delay_ms": 1.5, "bogus": 1}}$$, '/actions/0', '{}', NULL)) problem;
SELECT ductape._check_action('{"tag": "a", "method": "GET", "resource": "/a b"}', '', NULL, NULL) AS spaces,
       ductape._check_action('{"tag": "a", "method": "get", "resource": "/a/:id", "input": {"properties": {}}}', '', NULL, NULL) AS no_source,
       ductape._check_action('{"tag": "a", "method": "GET", "resource": "/a", "success": [], "timeout_ms": 0}', '', NULL, NULL) AS bounds;
SELECT ductape._check_action('{"resource": 5}', '/a', NULL, NULL) AS missing,
       ductape._check_action('[]', '/a', NULL, NULL) AS not_an_object,
       ductape._check_action(NULL, NULL, NULL, NULL) AS all_null,
       ductape._check_action('{"tag": "a", "method": "GET", "resource": "/a", "body": {"v": "$Variable{v}"}}', NULL,
                             NULL, '{"v": {}}') AS declared_variable;
SELECT ductape._check_retries('{"on": "always", "respect_retry_after": 1}', '/retries') AS retries,
       ductape._check_retries(NULL, '/retries') AS no_policy;

-- A stored action is checked whole, by those rules, when it is first used:
-- one corrupted behind the checker's back (the catalog tables edited
-- directly, as a superuser) is refused with 22023 naming the app, the
-- action and its first problems; the app's other actions still work.
SELECT ductape.app_define(jsonb_build_object('tag', 'held',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', api())),
  'constants', '{"v": "1"}'::jsonb,
  'actions', '[{"tag": "good", "method": "GET", "resource": "/echo/good"},
               {"tag": "bad", "method": "GET", "resource": "/echo/bad", "headers": {"X-V": "$Constant{v}"}}]'::jsonb));
SELECT ductape.run('held', 'bad')->>'path' AS before;
UPDATE ductape.actions
   SET spec = spec || '{"method": "TRACE", "resource": "/echo/:", "colour": 1, "timeout_ms": 0, "success": [],
                        "retries": {"max": -1, "jitter": 2}}'
 WHERE app = 'held' AND tag = 'bad';
SELECT expect_error($$SELECT ductape.run('held', 'bad')$$);
SELECT expect_error($$SELECT ductape.dispatch('held', 'bad')$$);
SELECT ductape.run('held', 'good')->>'path' AS other_action;
-- a placeholder that names a constant the app no longer has (the app's row
-- edited directly)
UPDATE ductape.actions SET spec = '{"method": "GET", "resource": "/echo/bad", "headers": {"X-V": "$Constant{v}"}}'
 WHERE app = 'held' AND tag = 'bad';
UPDATE ductape.apps SET spec = spec - 'constants' WHERE tag = 'held';
SELECT expect_error($$SELECT ductape.run('held', 'bad')$$);
-- defined again through ductape, it works
SELECT ductape.action_define('held', '{"tag": "bad", "method": "GET", "resource": "/echo/bad"}');
SELECT ductape.run('held', 'bad')->>'path' AS defined_again;
SELECT ductape.app_drop('held');
