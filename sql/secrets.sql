-- Secrets (docs/reference.md): encrypted at rest, resolved at call time, scoped.

SELECT ductape.secret_set('STRIPE_KEY', 'sk_test_plaintext_4242', 'Stripe test key', apps => '{pay}', envs => '{dev}');
SELECT ductape.secret_set('WIDE_OPEN', 'wide+open/value=77');
SELECT ductape.secret_set('OLD_KEY', 'old_key_value_99', expires_at => now() + interval '1 day');
-- (secret_set refuses an expires_at in the past: let it expire here)
UPDATE ductape._secrets SET expires_at = now() - interval '1 day' WHERE name = 'OLD_KEY';

-- The view never shows a value; the table holds only ciphertext.
SELECT name, description, apps, envs, expires_at IS NOT NULL AS expires FROM ductape.secrets ORDER BY name;
SELECT array(SELECT attname FROM pg_attribute WHERE attrelid = 'ductape.secrets'::regclass AND attnum > 0 ORDER BY attnum) AS view_columns;
SELECT name, key_version,
       length(value) = 12 + length(convert_to(ductape.secret_get(name), 'UTF8')) + 16 AS nonce_ct_tag,
       position(convert_to(ductape.secret_get(name), 'UTF8') IN value) = 0 AS no_plaintext
  FROM ductape._secrets ORDER BY name;
-- Every write has a fresh nonce: the same value twice gives different ciphertexts.
CREATE TEMP TABLE c1 AS SELECT value FROM ductape._secrets WHERE name = 'WIDE_OPEN';
SELECT ductape.secret_set('WIDE_OPEN', 'wide+open/value=77');
SELECT (SELECT value FROM c1) <> value AS new_nonce FROM ductape._secrets WHERE name = 'WIDE_OPEN';
SELECT ductape.secret_get('STRIPE_KEY');

-- Bad input changes nothing.
SELECT expect_error($$SELECT ductape.secret_set('bad name', 'x')$$);
SELECT expect_error($$SELECT ductape.secret_set('K', NULL)$$);
SELECT expect_error($$SELECT ductape.secret_set('K', 'x', apps => '{Bad App}')$$);
SELECT expect_error($$SELECT ductape.secret_set('K', 'x', expires_at => now() - interval '1 second')$$)
       ~ '^22023: expires_at \d{4}-\d\d-\d\d [0-9:.+-]+ is in the past\nDETAIL: A secret that has expired cannot be used\.$' AS past_expiry;
SELECT expect_error($$SELECT ductape.secret_get('NOPE')$$);
SELECT expect_error($$SELECT ductape.secret_drop('NOPE')$$);
SELECT count(*) AS secrets FROM ductape._secrets;

-- $Secret{} in templates: resolved when the request is built.
SELECT ductape.app_define(jsonb_build_object('tag', 'pay',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', api()),
                            jsonb_build_object('slug', 'prd', 'base_url', api())),
  'auth', jsonb_build_object('type', 'bearer', 'token', '$Secret{STRIPE_KEY}'),
  'actions', jsonb_build_array(
    jsonb_build_object('tag', 'me', 'method', 'GET', 'resource', '/echo/me'),
    jsonb_build_object('tag', 'denied', 'method', 'GET', 'resource', '/status/401',
                       'query', jsonb_build_object('k', '$Secret{WIDE_OPEN}')),
    jsonb_build_object('tag', 'old', 'method', 'GET', 'resource', '/echo/old', 'headers', jsonb_build_object('X-Old', '$Secret{OLD_KEY}')),
    jsonb_build_object('tag', 'missing', 'method', 'GET', 'resource', '/echo/m', 'headers', jsonb_build_object('X-M', '$Secret{NOT_THERE}')))));
SELECT ductape.run('pay', 'me')->'headers'->>'authorization' AS server_got;

-- Missing, out of scope, wrong env, expired: DT003 naming the secret and the reason.
SELECT expect_error($$SELECT ductape.run('pay', 'missing')$$);
SELECT expect_error($$SELECT ductape.run('pay', 'me', env => 'prd')$$);
SELECT expect_error($$SELECT ductape.run('pay', 'old')$$) ~ '^DT003: secret "OLD_KEY" cannot be used: it expired at \d{4}-' AS expired;
SELECT ductape.app_define(jsonb_build_object('tag', 'other',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', api())),
  'actions', jsonb_build_array(jsonb_build_object('tag', 'x', 'method', 'GET', 'resource', '/echo',
      'headers', jsonb_build_object('X-Key', '$Secret{STRIPE_KEY}')))));
SELECT expect_error($$SELECT ductape.run('other', 'x')$$);

-- The plaintext never reaches an error, a call record or the envelope's error.
SELECT e ~ 'DT000' AS dt000, e LIKE '%sk_test_plaintext_4242%' AS bearer_in_error,
       e LIKE '%wide+open/value=77%' OR e LIKE '%wide%2Bopen%2Fvalue%3D77%' OR e LIKE '%wide+open\/value=77%' AS query_secret_in_error,
       e LIKE '%[redacted]%' AS redacted
  FROM (SELECT expect_error($$SELECT ductape.run('pay', 'denied')$$) AS e) s;
SELECT wait_calls($$app = 'pay' AND action = 'denied'$$) AS recorded;
SELECT count(*) FILTER (WHERE c::text LIKE '%sk_test_plaintext_4242%' OR c::text LIKE '%wide+open/value=77%'
                          OR c::text LIKE '%wide%2Bopen%2Fvalue%3D77%') AS records_with_secrets,
       count(*) AS records
  FROM ductape.calls c WHERE app = 'pay';

-- A ciphertext is bound to its name: copied onto another secret it does not decrypt.
UPDATE ductape._secrets SET value = (SELECT value FROM ductape._secrets WHERE name = 'STRIPE_KEY'),
                            key_version = (SELECT key_version FROM ductape._secrets WHERE name = 'STRIPE_KEY')
 WHERE name = 'WIDE_OPEN';
SELECT expect_error($$SELECT ductape.secret_get('WIDE_OPEN')$$);
SELECT ductape.secret_set('WIDE_OPEN', 'wide+open/value=77');

-- Rotation: a new key version re-encrypts every value.
CREATE TEMP TABLE before AS SELECT name, value, key_version FROM ductape._secrets;
SELECT ductape.rotate_master_key() AS reencrypted;
SELECT s.name, s.key_version = b.key_version + 1 AS new_version, s.value <> b.value AS new_ciphertext,
       ductape.secret_get(s.name) IS NOT NULL AS readable
  FROM ductape._secrets s JOIN before b USING (name) ORDER BY s.name;
SELECT ductape.run('pay', 'me')->'headers'->>'authorization' AS after_rotation;

SELECT ductape.secret_drop('OLD_KEY');
SELECT name FROM ductape.secrets ORDER BY name;

-- Short values (under 4 bytes) are redacted where they are a whole value:
-- a header value, what follows an auth scheme, a query, form or JSON value
-- (also echoed inside a JSON string), a path segment.  A substring search
-- for them would hit anything, so none is made.
CREATE FUNCTION public.short_leaks(t text) RETURNS text[] LANGUAGE sql AS $$
    SELECT array_remove(ARRAY[CASE WHEN position('Zq9' IN t) > 0 THEN 'Zq9' END,
                              CASE WHEN position('z/Q' IN t) > 0 THEN 'z/Q' END,
                              CASE WHEN position('z\/Q' IN t) > 0 THEN 'z\/Q' END,
                              CASE WHEN position('z%2FQ' IN t) > 0 THEN 'z%2FQ' END], NULL)
$$;
SELECT ductape.secret_set('SHORT_Q', 'Zq9'), ductape.secret_set('SHORT_P', 'z/Q');
SELECT ductape.app_define(jsonb_build_object('tag', 'short',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', api()),
                            jsonb_build_object('slug', 'down', 'base_url', 'http://127.0.0.1:1')),
  'auth', jsonb_build_object('type', 'api_key', 'in', 'query', 'name', 'key', 'value', '$Secret{SHORT_Q}'),
  'retries', jsonb_build_object('max', 0),
  'actions', jsonb_build_array(
    jsonb_build_object('tag', 'hdr', 'method', 'GET', 'resource', '/status/401',
                       'headers', jsonb_build_object('X-Short', '$Secret{SHORT_P}', 'X-Scheme', 'Token $Secret{SHORT_Q}')),
    jsonb_build_object('tag', 'form', 'method', 'POST', 'resource', '/status/400',
                       'request_type', 'application/x-www-form-urlencoded',
                       'body', jsonb_build_object('token', '$Secret{SHORT_P}', 'other', 'x')),
    jsonb_build_object('tag', 'json', 'method', 'POST', 'resource', '/status/400',
                       'body', jsonb_build_object('token', '$Secret{SHORT_Q}')),
    jsonb_build_object('tag', 'path', 'method', 'GET', 'resource', '/status/401/:id'),
    jsonb_build_object('tag', 'echo', 'method', 'GET', 'resource', '/headers',
                       'query', jsonb_build_object('x-echo', '$Secret{SHORT_Q}', 'x-echo-p', '$Secret{SHORT_P}')))));
-- DT000: the URL and the echoed request in the body excerpt
SELECT split_part(e, E'\n', 1) AS error, short_leaks(e) AS leaks,
       e ~ '/status/401\?key=\[redacted\]\. Body: ' AS query_value,
       e ~ '"x-short": "\[redacted\]"' AS header_value, e ~ '"x-scheme": "Token \[redacted\]"' AS after_scheme,
       e ~ '"key": "\[redacted\]"' AS json_value
  FROM (SELECT expect_error($$SELECT ductape.run('short', 'hdr')$$) AS e) s;
SELECT split_part(e, E'\n', 1) AS error, short_leaks(e) AS leaks,
       e ~ '"body": "other=x&token=\[redacted\]"' AS form_value
  FROM (SELECT expect_error($$SELECT ductape.run('short', 'form')$$) AS e) s;
SELECT split_part(e, E'\n', 1) AS error, short_leaks(e) AS leaks,
       e ~ '"body": "\{\\"token\\": \\"\[redacted\]\\"\}"' AS json_in_json
  FROM (SELECT expect_error($$SELECT ductape.run('short', 'json')$$) AS e) s;
-- a path segment (config credentials are redacted as a whole, being secret
-- by nature: this one is the secret itself; the test server answers 400 to
-- a status it cannot read)
SELECT ductape.config('short', '{"params:id": "$Secret{SHORT_P}"}');
SELECT split_part(e, E'\n', 1) AS error, short_leaks(e) AS leaks,
       e ~ 'GET http://127\.0\.0\.1:PORT/status/401/\[redacted\]\?key=\[redacted\]\.' AS path_segment
  FROM (SELECT expect_error($$SELECT ductape.run('short', 'path')$$) AS e) s;
SELECT ductape.config('short', '{}');
-- DT001: the URL in the detail
SELECT e ~ '^DT001: short\.hdr failed: ' AS dt001, short_leaks(e) AS leaks,
       e ~ 'GET http://127\.0\.0\.1:1/status/401\?key=\[redacted\], 1 attempt\.' AS query_value
  FROM (SELECT expect_error($$SELECT ductape.run('short', 'hdr', env => 'down')$$) AS e) s;
-- the envelope's response headers (the API echoes the query in them)
SELECT r->'status' AS status, r->'headers'->>'x-echo' AS x_echo, r->'headers'->>'x-echo-p' AS x_echo_p,
       r->'headers'->>'key' AS key, short_leaks(r->>'headers') AS leaks
  FROM (SELECT ductape.run_response('short', 'echo') AS r) s;
-- the call records: URL and error
SELECT wait_calls($$app = 'short'$$, 6) AS recorded;
SELECT action, env, regexp_replace(url, ':\d{4,5}/', ':PORT/') AS url, status, error ~ '^HTTP \d+$|^Failed to connect' AS error,
       short_leaks(c::text) AS leaks
  FROM ductape.calls c WHERE app = 'short' ORDER BY id;
-- a short value inside a longer one is left alone
SELECT ductape.run('short', 'echo', '{"query:note": "Zq9Zq9 Zq9-suffix"}')->'query'->>'note' AS note;
SELECT wait_calls($$app = 'short' AND url LIKE '%note=%'$$) AS recorded;
SELECT regexp_replace(url, ':\d{4,5}/', ':PORT/') AS url FROM ductape.calls WHERE app = 'short' AND url LIKE '%note=%';

-- URL user-info is a credential: it is shown as [redacted] wherever a URL
-- is printed or stored (libcurl sends it as Basic auth, whose header an
-- echoing API prints: redacted too).
SELECT expect_error($$SELECT ductape.http('GET', 'http://usr:Pw-userinfo-1@127.0.0.1:99999/')$$);
SELECT expect_error($$SELECT ductape.http('GET', 'http://usr:Pw/userinfo-2@127.0.0.1/')$$);
SELECT expect_error($$SELECT ductape.http('GET', 'usr:Pw-userinfo-3@127.0.0.1/x')$$);
SELECT r->'status' AS status, r->'body'->'headers'->>'authorization' = 'Basic ' || encode('usr:Pw-userinfo-4', 'base64') AS basic_sent
  FROM (SELECT ductape.http('GET', replace(api(), 'http://', 'http://usr:Pw-userinfo-4@') || '/echo/userinfo') AS r) s;
SELECT ductape.app_define(jsonb_build_object('tag', 'userinfo',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', replace(api(), 'http://', 'http://usr:Pw-userinfo-5@')),
                            jsonb_build_object('slug', 'down', 'base_url', 'http://usr:Pw-userinfo-5@127.0.0.1:1')),
  'retries', jsonb_build_object('max', 0),
  'actions', jsonb_build_array(jsonb_build_object('tag', 'denied', 'method', 'GET', 'resource', '/status/401'))));
SELECT split_part(e, E'\n', 1) AS error, position('Pw-userinfo' IN e) = 0 AS no_password,
       position(encode('usr:Pw-userinfo-5', 'base64') IN e) = 0 AS no_basic,
       e ~ 'from GET http://\[redacted\]@127\.0\.0\.1:PORT/status/401\. Body: ' AS url_redacted
  FROM (SELECT expect_error($$SELECT ductape.run('userinfo', 'denied')$$) AS e) s;
SELECT e ~ '^DT001: userinfo\.denied failed: ' AS dt001, position('Pw-userinfo' IN e) = 0 AS no_password,
       e ~ 'GET http://\[redacted\]@127\.0\.0\.1:1/status/401, 1 attempt\.' AS url_redacted
  FROM (SELECT expect_error($$SELECT ductape.run('userinfo', 'denied', env => 'down')$$) AS e) s;
-- a refused redirect names the target: user-info redacted there too
SELECT set_config('ductape.ca_file', current_setting('ductape_test.ca_file'), false) IS NOT NULL AS set_ca;
SELECT expect_error(format($$SELECT ductape.http('GET', %L)$$,
       current_setting('ductape_test.tls_api') || '/redirect?to=http://usr:Pw-userinfo-6@127.0.0.1:1/echo'));
RESET ductape.ca_file;
-- endpoint URLs are checked the same way
SELECT expect_error($$SELECT ductape.endpoint_create('http://usr:Pw-userinfo-7@127.0.0.1:99999/hook')$$);
SELECT expect_error($$SELECT ductape.endpoint_create('http://usr:Pw-userinfo-8@10.1.2.3/hook')$$);
SELECT wait_calls($$url LIKE '%[redacted]@%'$$, 4) AS recorded;
SELECT coalesce(app, '-') AS app, regexp_replace(url, ':\d{4,5}/', ':PORT/') AS url, status
  FROM ductape.calls c WHERE url LIKE '%[redacted]@%' ORDER BY id;
SELECT count(*) AS records_with_passwords FROM ductape.calls c WHERE c::text LIKE '%Pw-userinfo%' OR c::text LIKE '%Pw/userinfo%';

SELECT ductape.app_drop('short'), ductape.app_drop('userinfo'),
       ductape.secret_drop('SHORT_Q'), ductape.secret_drop('SHORT_P');
