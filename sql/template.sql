-- Placeholders in action templates (docs/reference.md), checked against what the
-- test API server actually received.

SELECT ductape.app_define(jsonb_build_object(
  'tag', 'tpl',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', api()),
                            jsonb_build_object('slug', 'prd', 'base_url', api() || '/')),
  'constants', jsonb_build_object('version', '2024-06-20', 'limit', 25, 'nested', jsonb_build_object('a', 1)),
  'variables', jsonb_build_object('account', jsonb_build_object('required', false),
                                  'region', jsonb_build_object('default', 'eu')),
  'actions', jsonb_build_array(
    jsonb_build_object('tag', 'echo', 'method', 'POST', 'resource', '/echo/:kind',
      'headers', jsonb_build_object('X-Version', '$Constant{version}', 'X-Account', '$Variable{account}',
                                    'X-Region', 'region=$Variable{region}', 'X-Test-Key', 'tpl'),
      'body', jsonb_build_object(
        'amount', '$Input{amount}', 'text', 'amount is $Input{amount} $$USD', 'limit', '$Constant{limit}',
        'nested', '$Constant{nested}', 'deep', '$Input{customer}{address}{city}', 'first', '$Input{items}{0}',
        'now', '$Now', 'uuid', '$Uuid', 'other', '$Constant{tpl}{version}', 'price', 'costs $5')))));

SELECT ductape.variable_set('tpl', 'account', '"acct_dev"');
SELECT ductape.variable_set('tpl', 'account', '"acct_prd"', env => 'prd');

-- One call: look at what the server got.
SELECT r->>'method' AS method, r->>'path' AS path,
       r->'headers'->>'x-version' AS version, r->'headers'->>'x-account' AS account,
       r->'headers'->>'x-region' AS region
  FROM (SELECT ductape.run('tpl', 'echo', '{"kind": "charge", "amount": 1000,
            "customer": {"address": {"city": "Lagos"}}, "items": ["a", "b"]}') AS r) s;

WITH r AS (SELECT (ductape.run('tpl', 'echo', '{"kind": "k", "amount": 12.5,
            "customer": {"address": {"city": "Oslo"}}, "items": [{"sku": 1}]}')->>'body')::jsonb AS b)
SELECT b->'amount' AS amount, jsonb_typeof(b->'amount') AS amount_type,
       b->'text' AS text, b->'limit' AS "limit", b->'nested' AS nested, b->'deep' AS deep,
       b->'first' AS first, b->'other' AS other, b->'price' AS price,
       b->>'now' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$' AS now_is_iso8601,
       b->>'uuid' ~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' AS uuid_is_v4,
       abs(extract(epoch FROM (b->>'now')::timestamptz - now())) < 60 AS now_is_now
  FROM r;

-- Variables follow the env; a trailing slash in base_url is fine.
SELECT r->>'path' AS path, r->'headers'->>'x-account' AS account
  FROM (SELECT ductape.run('tpl', 'echo', '{"kind": "p", "amount": 1, "customer": {"address": {"city": "x"}}, "items": [1]}',
                           env => 'prd') AS r) s;
SET ductape.env = 'prd';
SELECT ductape.run('tpl', 'echo', '{"kind": "p", "amount": 1, "customer": {"address": {"city": "x"}}, "items": [1]}')->'headers'->>'x-account' AS account_from_guc;
RESET ductape.env;

-- Two $Uuid calls differ.
SELECT count(DISTINCT (ductape.run('tpl', 'echo', '{"kind": "u", "amount": 1, "customer": {"address": {"city": "x"}}, "items": [1]}')->>'body')::jsonb->>'uuid') AS distinct_uuids
  FROM generate_series(1, 3);

-- A missing input path is an error that names it, and nothing is sent.
SELECT ductape.http('GET', api() || '/reset')->'body' AS reset;
SELECT expect_error($$SELECT ductape.run('tpl', 'echo', '{"kind": "k", "amount": 1, "items": [1]}')$$);
SELECT expect_error($$SELECT ductape.run('tpl', 'echo', '{"kind": "k", "amount": 1, "customer": {"address": {}}, "items": [1]}')$$);
SELECT api_count('tpl') AS requests_sent;

-- A secret that does not exist: DT003 naming it, and nothing is sent.
SELECT ductape.action_define('tpl', '{"tag": "secret", "method": "GET", "resource": "/echo", "headers": {"X-Test-Key": "tpl", "X-Key": "$Secret{API_KEY}"}}');
SELECT expect_error($$SELECT ductape.run('tpl', 'secret')$$);
SELECT api_count('tpl') AS requests_sent;

-- Templates with placeholders from other contexts are refused at define time.
SELECT expect_error($$SELECT ductape.action_define('tpl', '{"tag": "x", "method": "GET", "resource": "/", "query": {"a": "$Step{one}{id}", "b": "$Event{id}", "c": "$Old{id}", "d": "$Uuid{x}", "e": "$Input{}"}}')$$);
-- ...and so are placeholders with the wrong number of "{...}" parts.
SELECT expect_error($$SELECT ductape.action_define('tpl', '{"tag": "x", "method": "GET", "resource": "/", "query": {"a": "$Secret", "b": "$Secret{K}{L}", "c": "$Input"}}')$$);
