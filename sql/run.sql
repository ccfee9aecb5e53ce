-- ductape.run, run_response and http against the test API server
-- (docs/reference.md): placement, bodies, envelopes, errors.

SELECT ductape.app_define(jsonb_build_object(
  'tag', 'api',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', api()),
                            jsonb_build_object('slug', 'down', 'base_url', 'http://127.0.0.1:9')),
  'actions', jsonb_build_array(
    jsonb_build_object('tag', 'get-item', 'method', 'GET', 'resource', '/echo/items/:id'),
    jsonb_build_object('tag', 'create', 'method', 'POST', 'resource', '/echo/items',
        'headers', jsonb_build_object('X-From-Template', 'tpl', 'X-Override', 'template'),
        'body', jsonb_build_object('source', 'template', 'kept', true),
        'input', jsonb_build_object('properties', jsonb_build_object(
            'expand', jsonb_build_object('type', 'string', 'in', 'query'),
            'trace', jsonb_build_object('type', 'string', 'in', 'headers')))),
    jsonb_build_object('tag', 'form', 'method', 'POST', 'resource', '/echo/form',
        'request_type', 'application/x-www-form-urlencoded'),
    jsonb_build_object('tag', 'note', 'method', 'PUT', 'resource', '/echo/note', 'request_type', 'text/plain'),
    jsonb_build_object('tag', 'upload', 'method', 'POST', 'resource', '/echo/upload', 'request_type', 'multipart/form-data'),
    jsonb_build_object('tag', 'remove', 'method', 'DELETE', 'resource', '/echo/items/:id'),
    jsonb_build_object('tag', 'head', 'method', 'HEAD', 'resource', '/echo'),
    jsonb_build_object('tag', 'status', 'method', 'GET', 'resource', '/status/:code'),
    jsonb_build_object('tag', 'accepted', 'method', 'GET', 'resource', '/status/:code', 'success', jsonb_build_array(200, 404)),
    jsonb_build_object('tag', 'text', 'method', 'GET', 'resource', '/text'),
    jsonb_build_object('tag', 'empty', 'method', 'GET', 'resource', '/empty'),
    jsonb_build_object('tag', 'badjson', 'method', 'GET', 'resource', '/badjson'),
    jsonb_build_object('tag', 'bytes', 'method', 'GET', 'resource', '/bytes/:n'),
    jsonb_build_object('tag', 'delay', 'method', 'GET', 'resource', '/delay/:ms', 'retries', jsonb_build_object('max', 0)))));

-- Placement: :params go to the path (encoded), the rest of a GET to the query.
SELECT r->>'path' AS path, r->'query' AS query, r->>'body' AS body
  FROM (SELECT ductape.run('api', 'get-item', '{"id": "a/b c", "limit": 10, "flag": true, "tags": ["x", "y"]}') AS r) s;
SELECT ductape.run('api', 'remove', '{"id": 7, "force": true}')->>'method' AS method;

-- POST: unprefixed keys go to the JSON body, "in" and prefixes elsewhere;
-- the caller's input beats the action template.
SELECT r->>'path' AS path, r->'query' AS query,
       (r->>'body')::jsonb AS body,
       r->'headers'->>'content-type' AS content_type,
       r->'headers'->>'x-from-template' AS from_template,
       r->'headers'->>'x-override' AS override,
       r->'headers'->>'trace' AS trace,
       r->'headers'->>'user-agent' AS user_agent
  FROM (SELECT ductape.run('api', 'create', '{"name": "widget", "source": "caller", "expand": "owner",
             "trace": "t-1", "headers:X-Override": "caller", "query:page": 2, "body:nested": {"a": [1, 2]}}') AS r) s;

-- Form bodies flatten nested values with brackets, as Stripe expects.
SELECT r->>'body' AS body, r->'headers'->>'content-type' AS content_type
  FROM (SELECT ductape.run('api', 'form', '{"amount": 1000, "currency": "usd",
             "card": {"exp": {"month": 12, "year": 2030}}, "expand": ["customer", "invoice"], "note": "a&b=c"}') AS r) s;

-- text/plain: exactly one body field; multipart waits for a later version.
SELECT r->>'body' AS body, r->'headers'->>'content-type' AS content_type
  FROM (SELECT ductape.run('api', 'note', '{"body:text": "hello\nworld"}') AS r) s;
SELECT expect_error($$SELECT ductape.run('api', 'note', '{"a": "1", "b": "2"}')$$);
SELECT expect_error($$SELECT ductape.run('api', 'upload', '{"file": "x"}')$$);

-- Input errors: nothing is sent.
SELECT expect_error($$SELECT ductape.run('api', 'get-item', '{}')$$);
SELECT expect_error($$SELECT ductape.run('api', 'get-item', '{"id": {"x": 1}}')$$);
SELECT expect_error($$SELECT ductape.run('api', 'get-item', '{"id": 1, "params:other": 2}')$$);
SELECT expect_error($$SELECT ductape.run('api', 'get-item', '{"id": ".."}')$$);
SELECT expect_error($$SELECT ductape.run('api', 'get-item', '{"id": ""}')$$);
SELECT expect_error($$SELECT ductape.run('api', 'get-item', '{"id": 1, "cookie:x": 2}')$$);
SELECT expect_error($$SELECT ductape.run('api', 'get-item', '{"id": 1, "body:x": 2}')$$);
SELECT expect_error($$SELECT ductape.run('api', 'get-item', '{"id": 1, "headers:X-Evil": "a\r\nInjected: yes"}')$$);
SELECT expect_error($$SELECT ductape.run('api', 'get-item', '{"id": 1, "headers:Bad Name": "x"}')$$);
SELECT expect_error($$SELECT ductape.run('api', 'get-item', '[1]')$$);
SELECT expect_error($$SELECT ductape.run('api', 'get-item', '{"id": 1}', options => '{"retry": 1}')$$);
SELECT expect_error($$SELECT ductape.run('api', 'get-item', '{"id": 1}', options => '{"timeout_ms": 0}')$$);
SELECT expect_error($$SELECT ductape.run('api', 'get-item', '{"id": 1}', options => '{"retries": {"max": "x"}}')$$);

-- Unknown names: 42704.
SELECT expect_error($$SELECT ductape.run('nope', 'x')$$);
SELECT expect_error($$SELECT ductape.run('api', 'nope')$$);
SELECT expect_error($$SELECT ductape.run('api', 'get-item', '{"id": 1}', env => 'prd')$$);
SELECT expect_error($$SELECT ductape.run(NULL, 'x')$$);

-- Response bodies: JSON as jsonb, other text as a string, empty as null.
SELECT jsonb_typeof(ductape.run('api', 'get-item', '{"id": 1}')) AS json_body,
       ductape.run('api', 'text') AS text_body,
       ductape.run('api', 'empty') AS empty_body,
       ductape.run('api', 'badjson') AS bad_json_body;
SELECT ductape.run('api', 'head') AS head_body;

-- One backend keeps its connection alive across calls: one client port.
SELECT count(DISTINCT ductape.run('api', 'get-item', jsonb_build_object('id', i))->>'peer_port') AS connections_for_5_calls
  FROM generate_series(1, 5) i;
-- A change to an egress setting drops pooled connections.
CREATE TEMP TABLE ports AS SELECT ductape.run('api', 'get-item', '{"id": 1}')->>'peer_port' AS p;
SET ductape.https_only = off;
INSERT INTO ports SELECT ductape.run('api', 'get-item', '{"id": 1}')->>'peer_port';
SELECT count(DISTINCT p) AS connections_across_policy_change FROM ports;

-- run_response: the envelope.
SELECT r->'status' AS status, r->'body'->>'path' AS path, r->'attempts' AS attempts,
       (r->>'duration_ms')::numeric > 0 AS has_duration, r->'call_id' IS NOT NULL AS has_call_id,
       r->'error' AS error, r->'headers'->>'content-type' AS content_type
  FROM (SELECT ductape.run_response('api', 'get-item', '{"id": 5}') AS r) s;
SELECT array(SELECT jsonb_object_keys(ductape.run_response('api', 'text'))) AS envelope_keys;
SELECT r->'status' AS status, r->'body'->>'path' AS path, r->'error' AS error
  FROM (SELECT ductape.run_response('api', 'status', '{"code": 404}') AS r) s;

-- Non-success statuses raise DT000 with the status and the body's start.
SELECT expect_error($$SELECT ductape.run('api', 'status', '{"code": 402}')$$) ~ '^DT000: api.status answered HTTP 402\nDETAIL: Status 402 after 1 attempt from GET http://127.0.0.1:PORT/status/402. Body: \{"method": "GET"' AS dt000;
-- "success" widens what counts.
SELECT ductape.run('api', 'accepted', '{"code": 404}')->>'path' AS accepted_404;
SELECT expect_error($$SELECT ductape.run('api', 'accepted', '{"code": 201}')$$) ~ '^DT000: api.accepted answered HTTP 201' AS not_listed;

-- Network failures raise DT001; run_response reports them.
SELECT expect_error($$SELECT ductape.run('api', 'get-item', '{"id": 1}', env => 'down', options => '{"retries": {"max": 0}}')$$)
       ~ '^DT001: api.get-item failed: .*Couldn''t connect to server\nDETAIL: GET http://127.0.0.1:9/echo/items/1, 1 attempt. Last attempt: DNS [0-9.]+ ms, connect' AS dt001_refused;
SELECT r->'status' AS status, r->'body' AS body, r->>'error' ~ 'Couldn''t connect to server' AS error, r->'attempts' AS attempts
  FROM (SELECT ductape.run_response('api', 'get-item', '{"id": 1}', env => 'down', options => '{"retries": {"max": 0}}') AS r) s;
SELECT expect_error($$SELECT ductape.run('api', 'delay', '{"ms": 2000}', options => '{"timeout_ms": 200}')$$)
       ~ '^DT001: api.delay timed out: .*\nDETAIL: GET http://127.0.0.1:PORT/delay/2000, 1 attempt' AS dt001_timeout;

-- The response size cap.
SELECT length(ductape.run('api', 'bytes', '{"n": 5000}') #>> '{}') AS small_ok;
SET ductape.max_response_size = '4kB';
SELECT expect_error($$SELECT ductape.run('api', 'bytes', '{"n": 5000}')$$);
SELECT expect_error($$SELECT ductape.http('GET', api() || '/bytes/5000?chunked=1')$$);
RESET ductape.max_response_size;

-- statement_timeout interrupts a request within 100 ms.
SELECT set_config('dt.t0', clock_timestamp()::text, false) IS NOT NULL AS started;
SET statement_timeout = '300ms';
SELECT ductape.run('api', 'delay', '{"ms": 5000}');
RESET statement_timeout;
SELECT extract(epoch FROM clock_timestamp() - current_setting('dt.t0')::timestamptz) * 1000 BETWEEN 290 AND 400 AS within_100ms_of_timeout;

-- The path parameter was percent-encoded on the wire (the server decodes it).
SELECT wait_calls($$url LIKE '%/echo/items/a%'$$) AS recorded;
SELECT regexp_replace(url, ':\d+', ':PORT') AS url FROM ductape.calls WHERE url LIKE '%/echo/items/a%';

-- ductape.http: the ad hoc form.
SELECT r->'status' AS status, r->'body'->>'method' AS method, r->'body'->'query' AS query,
       r->'body'->'headers'->>'x-one' AS x_one, r->'body'->'headers'->>'user-agent' AS ua
  FROM (SELECT ductape.http('get', api() || '/echo?a=1&b=two', '{"X-One": 1}') AS r) s;
SELECT (r->'body'->>'body')::jsonb AS sent, r->'body'->'headers'->>'content-type' AS content_type
  FROM (SELECT ductape.http('POST', api() || '/echo', body => '{"a": [1, {"b": null}]}') AS r) s;
SELECT r->'body'->>'body' AS sent, r->'body'->'headers'->>'content-type' AS content_type
  FROM (SELECT ductape.http('POST', api() || '/echo', body => '"plain text"') AS r) s;
SELECT r->'body'->>'body' AS sent, r->'body'->'headers'->>'content-type' AS content_type
  FROM (SELECT ductape.http('PATCH', api() || '/echo', '{"Content-Type": "application/xml"}', '"<a/>"') AS r) s;
SELECT r->'body'->>'method' AS method, r->'body'->>'body' AS sent, r->'body'->'headers'->>'content-length' AS length
  FROM (SELECT ductape.http('POST', api() || '/echo') AS r) s;
SELECT expect_error($$SELECT ductape.http('FETCH', api())$$);
SELECT expect_error($$SELECT ductape.http('GET', 'not a url')$$);
SELECT expect_error($$SELECT ductape.http('GET', api(), '{"X-A": "1\r\nX-B: 2"}')$$);
SELECT expect_error($$SELECT ductape.http('GET', api(), body => '{"a": 1}')$$);
SELECT expect_error($$SELECT ductape.http('GET', api(), '[]')$$);

-- Auth blocks without secrets: bearer, basic, api_key in a header (and an
-- oauth2 block whose token endpoint answers without a token: DT003).
-- Merge order: the caller's input > auth > the action template.
SELECT ductape.app_define(jsonb_build_object('tag', 'authed',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', api())),
  'constants', jsonb_build_object('token', 'tok_from_constant'),
  'auth', jsonb_build_object('type', 'bearer', 'token', '$Constant{token}'),
  'actions', jsonb_build_array(jsonb_build_object('tag', 'me', 'method', 'GET', 'resource', '/echo/me',
      'headers', jsonb_build_object('Authorization', 'from-template', 'X-Template', 'yes')))));
SELECT r->'headers'->>'authorization' AS auth_beats_template, r->'headers'->>'x-template' AS template_header
  FROM (SELECT ductape.run('authed', 'me') AS r) s;
SELECT ductape.run('authed', 'me', '{"headers:Authorization": "Bearer from-input"}')->'headers'->>'authorization' AS input_beats_auth;
SELECT ductape.app_define(jsonb_build_object('tag', 'authed',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', api())),
  'auth', jsonb_build_object('type', 'basic', 'username', 'ada', 'password', 'pa:ss'),
  'actions', jsonb_build_array(jsonb_build_object('tag', 'me', 'method', 'GET', 'resource', '/echo/me'))));
SELECT r->'headers'->>'authorization' AS basic,
       convert_from(decode(split_part(r->'headers'->>'authorization', ' ', 2), 'base64'), 'UTF8') AS decoded
  FROM (SELECT ductape.run('authed', 'me') AS r) s;
SELECT ductape.app_define(jsonb_build_object('tag', 'authed',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', api())),
  'auth', jsonb_build_object('type', 'api_key', 'in', 'header', 'name', 'X-Api-Key', 'value', 'key_123456'),
  'actions', jsonb_build_array(jsonb_build_object('tag', 'me', 'method', 'GET', 'resource', '/echo/me'))));
SELECT ductape.run('authed', 'me')->'headers'->>'x-api-key' AS api_key_header;
SELECT ductape.run_response('authed', 'me')->'body'->'headers'->>'x-api-key' AS response_body_is_not_altered;
-- an auth field must resolve to a scalar
SELECT ductape.app_define(jsonb_build_object('tag', 'authed',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', api())),
  'auth', jsonb_build_object('type', 'bearer', 'token', '$Input{tok}'),
  'actions', jsonb_build_array(jsonb_build_object('tag', 'me', 'method', 'GET', 'resource', '/echo/me'))));
SELECT expect_error($$SELECT ductape.run('authed', 'me', '{"tok": {"x": [1, 2, 3]}}')$$);
SELECT ductape.app_define(jsonb_build_object('tag', 'authed',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', api())),
  'auth', jsonb_build_object('type', 'oauth2', 'token_url', api() || '/token'),
  'actions', jsonb_build_array(jsonb_build_object('tag', 'me', 'method', 'GET', 'resource', '/echo/me'))));
SELECT expect_error($$SELECT ductape.run('authed', 'me')$$);
