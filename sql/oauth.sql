-- OAuth2 (docs/reference.md) against the test server's token endpoint.

SELECT ductape.http('POST', api() || '/oauth/reset')->'status' AS reset_tokens,
       ductape.http('GET', api() || '/reset')->'status' AS reset_counts;
SELECT ductape.secret_set('OA_SECRET', 's3cret/client:1');

CREATE FUNCTION public.oa_app(extra jsonb DEFAULT '{}', query text DEFAULT '') RETURNS text LANGUAGE sql AS $$
    SELECT ductape.app_define(jsonb_build_object('tag', 'oa',
      'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', api())),
      'auth', jsonb_build_object('type', 'oauth2', 'grant', 'client_credentials',
                                 'token_url', api() || '/oauth/token' || query,
                                 'client_id', 'ductape-client', 'client_secret', '$Secret{OA_SECRET}',
                                 'scope', 'read') || extra,
      'actions', jsonb_build_array(
        jsonb_build_object('tag', 'res', 'method', 'GET', 'resource', '/oauth/resource'),
        jsonb_build_object('tag', 'tok', 'method', 'GET', 'resource', '/oauth/resource/t',
                           'headers', jsonb_build_object('X-Token', '$Auth{access_token}', 'X-Type', '$Auth{token_type}')),
        jsonb_build_object('tag', 'always401', 'method', 'GET', 'resource', '/status/401'))))
$$;
CREATE FUNCTION public.tokens_issued() RETURNS integer LANGUAGE sql AS $$ SELECT api_count('oauth-token') $$;
CREATE FUNCTION public.last_token_request() RETURNS jsonb LANGUAGE sql AS $$
    SELECT ductape.http('GET', api() || '/oauth/last')->'body'
$$;

-- client_credentials with client_secret_basic (the default); the secret
-- has "/" and ":" which Basic must form-encode first.
SELECT oa_app(query => '?auth=basic');
SELECT ductape.run('oa', 'res')->>'path' AS path, tokens_issued() AS tokens;
SELECT last_token_request()->>'client_auth' AS client_auth, last_token_request()->>'grant_type' AS grant_type,
       last_token_request()->>'scope' AS scope;
-- The token is cached, encrypted: the next calls use it.
SELECT ductape.run('oa', 'res')->>'path' AS path, ductape.run('oa', 'res')->>'path' AS again, tokens_issued() AS tokens;
SELECT product, app, env, key_version, expires_at > now() + interval '50 minutes' AS expires_later,
       position('at-' IN encode(access_token, 'escape')) = 0 AS encrypted
  FROM ductape._oauth_tokens;
-- $Auth{} gives the same token to templates.
SELECT r->'headers'->>'x-token' = substr(r->'headers'->>'authorization', 8) AS auth_placeholder,
       r->'headers'->>'x-type' AS token_type
  FROM (SELECT ductape.run('oa', 'tok') AS r) s;

-- client_secret_post
DELETE FROM ductape._oauth_tokens;
SELECT oa_app('{"client_auth": "body"}', '?auth=post');
SELECT ductape.run('oa', 'res')->>'path' AS path, last_token_request()->>'client_auth' AS client_auth;

-- Refreshed before expires_in minus refresh_buffer_s: a 30 s token with a
-- 60 s buffer is refreshed on every call; a 3600 s one is not.
SELECT oa_app('{"refresh_buffer_s": 60}', '?expires_in=30');
DELETE FROM ductape._oauth_tokens;
SELECT tokens_issued() AS before;
SELECT ductape.run('oa', 'res')->>'path' AS one, ductape.run('oa', 'res')->>'path' AS two;
SELECT tokens_issued() AS after_two_calls;

-- A 401 refreshes the token once and replays the request once.
SELECT oa_app();
SELECT ductape.run('oa', 'res')->>'path' AS warm;
SELECT tokens_issued() AS before, api_count('oauth-resource') AS resource_before;
SELECT ductape.http('POST', api() || '/oauth/revoke-access')->'body' AS revoked;
SELECT ductape.run('oa', 'res')->>'path' AS replayed;
SELECT tokens_issued() AS after, api_count('oauth-resource') AS resource_after;
-- ...only once: an API that keeps answering 401 gets two requests, one refresh.
SELECT tokens_issued() AS before;
SELECT expect_error($$SELECT ductape.run('oa', 'always401')$$) ~ '^DT000: oa.always401 answered HTTP 401' AS dt000;
SELECT tokens_issued() AS after;

-- refresh_token grant, with rotation: ductape stores the rotated token and
-- uses it next time (the old one is then invalid at the server).
SELECT ductape.http('POST', api() || '/oauth/token', '{"Content-Type": "application/x-www-form-urlencoded"}',
       '"grant_type=client_credentials&client_id=ductape-client&client_secret=s3cret%2Fclient%3A1"')->'body'->>'refresh_token' AS rt \gset
SELECT ductape.secret_set('OA_REFRESH', :'rt');
DELETE FROM ductape._oauth_tokens;
SELECT oa_app('{"grant": "refresh_token", "refresh_token": "$Secret{OA_REFRESH}"}');
SELECT ductape.run('oa', 'res')->>'path' AS path;
SELECT last_token_request()->>'grant_type' AS grant_type, last_token_request()->>'refresh_token' = :'rt' AS used_initial;
SELECT ductape.http('POST', api() || '/oauth/revoke-access')->'body' AS revoked;
SELECT ductape.run('oa', 'res')->>'path' AS path_after_rotation;
SELECT last_token_request()->>'refresh_token' <> :'rt' AS used_rotated;

-- oauth_set_tokens: tokens obtained elsewhere are used as they are.
SELECT ductape.http('POST', api() || '/oauth/token', '{"Content-Type": "application/x-www-form-urlencoded"}',
       '"grant_type=client_credentials&client_id=ductape-client&client_secret=s3cret%2Fclient%3A1"')->'body'->>'access_token' AS at \gset
SELECT oa_app();
SELECT ductape.oauth_set_tokens('oa', :'at', NULL, 3600);
SELECT tokens_issued() AS before;
SELECT ductape.run('oa', 'res')->'headers'->>'authorization' = 'Bearer ' || :'at' AS used_given_token;
SELECT tokens_issued() AS after;
SELECT expect_error($$SELECT ductape.oauth_set_tokens('pay-nope', 'x')$$);

-- Token endpoint errors: DT003 with the provider's error code.
DELETE FROM ductape._oauth_tokens;
SELECT ductape.secret_set('OA_SECRET', 'wrong-secret');
SELECT expect_error($$SELECT ductape.run('oa', 'res')$$);
SELECT ductape.secret_set('OA_SECRET', 's3cret/client:1');
SELECT oa_app('{"grant": "refresh_token", "refresh_token": "rt-does-not-exist"}');
SELECT expect_error($$SELECT ductape.run('oa', 'res')$$);
SELECT oa_app(query => '?auth=basic');

-- Token requests are recorded like any call, without the client secret.
SELECT wait_calls($$action = 'oauth2-token'$$, 5) AS recorded;
SELECT count(*) > 0 AS token_calls,
       count(*) FILTER (WHERE c::text LIKE '%s3cret%' OR c::text LIKE '%client:1%') AS with_secret
  FROM ductape.calls c WHERE action = 'oauth2-token';

-- Rotating the master key re-encrypts tokens too; no new token is needed.
SELECT ductape.run('oa', 'res')->>'path' AS path;
SELECT tokens_issued() AS before;
SELECT ductape.rotate_master_key() >= 3 AS reencrypted;
SELECT ductape.run('oa', 'res')->>'path' AS path_after_rotation, tokens_issued() AS after;

-- Definitions are checked.
SELECT expect_error($$SELECT ductape.app_define('{"tag": "badauth", "auth": {"type": "oauth2", "grant": "password", "client_auth": "jwt", "colour": "red"}}')$$);
SELECT expect_error($$SELECT ductape.app_define('{"tag": "badauth", "auth": {"type": "magic"}}')$$);
SELECT expect_error($$SELECT ductape.app_define('{"tag": "badauth", "auth": {"type": "api_key", "in": "cookie"}}')$$);

-- A background job of an OAuth2 app: the worker does not wait on itself; the
-- job goes back to the queue until the token is there, then runs.
DELETE FROM ductape._oauth_tokens;
SELECT tokens_issued() AS before;
SELECT ductape.dispatch('oa', 'res') AS oa_job \gset
SELECT j->>'state' AS state, j->'response'->'body'->>'path' AS path
  FROM (SELECT ductape.wait(:oa_job, '10 s') AS j) s;
SELECT tokens_issued() AS after, (SELECT count(*) FROM ductape._oauth_tokens) AS tokens_stored;

-- expires_in as providers send it: out of range is clamped, not an error
-- (1e30 is kept as the longest lifetime, 2^31-1 s, about 68 years; below 0
-- as 0, expired already, so the next call refreshes), fractions rounded,
-- a string of digits is a number.
CREATE FUNCTION public.token_lives(seconds bigint) RETURNS boolean LANGUAGE sql AS $$
    SELECT extract(epoch FROM expires_at - updated_at) BETWEEN seconds - 5 AND seconds
      FROM ductape._oauth_tokens
$$;
SELECT oa_app('{"refresh_buffer_s": 0}', '?expires_json=1e30');
DELETE FROM ductape._oauth_tokens;
SELECT ductape.run('oa', 'res')->>'path' AS path, token_lives(2147483647) AS clamped_to_max;
SELECT oa_app('{"refresh_buffer_s": 0}', '?expires_json=-5');
DELETE FROM ductape._oauth_tokens;
SELECT tokens_issued() AS before;
SELECT ductape.run('oa', 'res')->>'path' AS path, token_lives(0) AS clamped_to_0;
SELECT ductape.run('oa', 'res')->>'path' AS path, tokens_issued() AS after_two_calls;
SELECT oa_app('{"refresh_buffer_s": 0}', '?expires_json=1.5e3');
DELETE FROM ductape._oauth_tokens;
SELECT ductape.run('oa', 'res')->>'path' AS path, token_lives(1500) AS fraction;
SELECT oa_app('{"refresh_buffer_s": 0}', '?expires_json=%2260%22');
DELETE FROM ductape._oauth_tokens;
SELECT ductape.run('oa', 'res')->>'path' AS path, token_lives(60) AS digit_string;
SELECT oa_app('{"refresh_buffer_s": 0}', '?expires_json=%22%22');
DELETE FROM ductape._oauth_tokens;
SELECT ductape.run('oa', 'res')->>'path' AS path, (SELECT expires_at FROM ductape._oauth_tokens) AS no_expiry;

-- The SQL behind these functions names its functions and operators with
-- their schema: a "=", now() or clock_timestamp() that comes first on the
-- search_path is never called (rotate_master_key runs in a superuser's
-- session, and a database owner can set the database's search_path).
CREATE TABLE public.hijacked (what text);
CREATE FUNCTION public.hijack_eq(a text, b text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.hijacked VALUES ('=');
    RETURN a OPERATOR(pg_catalog.=) b;
END
$$;
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.hijack_eq);
CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.hijacked VALUES ('now()');
    RETURN pg_catalog.now();
END
$$;
CREATE FUNCTION public.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.hijacked VALUES ('clock_timestamp()');
    RETURN pg_catalog.clock_timestamp();
END
$$;
SET search_path = public, pg_catalog;
SELECT ductape.secret_set('OA_SECRET', 's3cret/client:1');
SELECT ductape.oauth_set_tokens('oa', 'at-search-path', 'rt-search-path', 60);
SELECT ductape.secret_get('OA_SECRET') IS NOT NULL AS secret_get;
SELECT ductape.rotate_master_key() >= 3 AS reencrypted;
RESET search_path;
SELECT coalesce(string_agg(DISTINCT what, ', '), 'none') AS hijacked FROM public.hijacked;
DROP OPERATOR public.= (text, text);
DROP FUNCTION public.hijack_eq(text, text), public.now(), public.clock_timestamp();
DROP TABLE public.hijacked;
