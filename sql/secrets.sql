-- Secrets (DESIGN.md §4): encrypted at rest, resolved at call time, scoped.

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
