-- Flow control: "limits" of apps and envs, DT004, pauses asked for by the
-- API, the ductape.limits view (docs/reference.md, "Limits").  TAP 020
-- covers timing: rates over seconds, concurrency across sessions, the
-- worker's queues, statement_timeout during a wait.

-- Timing varies: numbers in messages (not the SQLSTATE) become N.
CREATE FUNCTION public.limit_error(sql text) RETURNS text LANGUAGE sql AS $$
    SELECT left(e, 7) || regexp_replace(regexp_replace(substr(e, 8), '\d+(\.\d+)?', 'N', 'g'),
                                        'until [^,]+,', 'until T,')
      FROM expect_error(sql) e
$$;

-- What a definition may say: every problem, each with its JSON pointer.
SELECT expect_error($$SELECT ductape.app_define('{"tag": "lim-bad", "limits": []}')$$);
SELECT expect_error($$SELECT ductape.app_define('{"tag": "lim-bad",
    "limits": {"rate": 0, "per": "1x", "burst": 0, "concurrency": "2", "max_wait_ms": -1, "wait": 5}}')$$);
SELECT expect_error($$SELECT ductape.app_define('{"tag": "lim-bad",
    "limits": {"rate": 1000001, "per": "25h", "burst": 1.5, "concurrency": 100001, "max_wait_ms": 600001}}')$$);
SELECT expect_error($$SELECT ductape.app_define('{"tag": "lim-bad",
    "envs": [{"slug": "dev", "base_url": "http://127.0.0.1", "limits": {"rate": "fast", "per": 1}}]}')$$);
SELECT expect_error($$SELECT ductape.app_define('{"tag": "lim-bad", "limits": {"per": "0s"}}')$$);
SELECT expect_error($$SELECT ductape.app_define('{"tag": "lim-bad", "limits": {"rate": 0.5, "per": "24h"}}')$$);
SELECT expect_error($$SELECT ductape.app_define('{"tag": "lim-bad", "limits": {"rate": 0.00001}}')$$);
-- an env's rate under its app's "per", merged as calls see them
SELECT expect_error($$SELECT ductape.app_define('{"tag": "lim-bad", "limits": {"per": "24h"},
    "envs": [{"slug": "dev", "base_url": "http://127.0.0.1", "limits": {"rate": 0.5}}]}')$$);
SELECT expect_error($$SELECT ductape.app_define('{"tag": "lim-bad", "limits": {"per": "s"}}')$$);
SELECT count(*) AS nothing_stored FROM ductape.apps WHERE tag = 'lim-bad';

-- A rate of 1 per 10 s: the first call goes, the next cannot within
-- max_wait_ms (the token is 10 s away), so it fails at once.
SELECT ductape.app_define(jsonb_build_object(
  'tag', 'lim-rate',
  'limits', jsonb_build_object('rate', 1, 'per', '10s', 'burst', 1, 'max_wait_ms', 200),
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', api())),
  'actions', jsonb_build_array(
    jsonb_build_object('tag', 'ok', 'method', 'GET', 'resource', '/echo/lim'))));
SELECT ductape.run('lim-rate', 'ok')->>'path' AS first_call;
SELECT clock_timestamp() AS t0 \gset
SELECT limit_error($$SELECT ductape.run('lim-rate', 'ok')$$);
SELECT clock_timestamp() - :'t0'::timestamptz < interval '150 ms' AS failed_at_once;
SELECT limit_error($$SELECT ductape.run_response('lim-rate', 'ok')$$);
SELECT app, env, endpoint_id, rate, per, burst, concurrency, max_wait_ms, effective_rate,
       tokens < 1 AS no_token, in_flight, waiting, paused_until, slowed_until,
       granted, waited, rejected, since <= now() AS since_ok
  FROM ductape.limits WHERE app = 'lim-rate';
-- the refused calls sent nothing, and left no call record
SELECT count(*) AS records FROM ductape.calls WHERE app = 'lim-rate';

-- Redefining the app changes its limit at once: the new rate applies
-- (the bucket owes at most one interval of it; it is not refilled).
SELECT ductape.app_define(jsonb_build_object(
  'tag', 'lim-rate',
  'limits', jsonb_build_object('rate', 1000, 'max_wait_ms', 200),
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', api())),
  'actions', jsonb_build_array(
    jsonb_build_object('tag', 'ok', 'method', 'GET', 'resource', '/echo/lim'))));
SELECT count(ductape.run('lim-rate', 'ok')) AS calls FROM generate_series(1, 3);
SELECT rate, per, burst, granted, rejected FROM ductape.limits WHERE app = 'lim-rate';

-- A retry its limit keeps from going is not made: the last outcome stands.
SELECT ductape.app_define(jsonb_build_object(
  'tag', 'lim-retry',
  'limits', jsonb_build_object('rate', 1, 'per', '1h', 'burst', 1, 'max_wait_ms', 100),
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', api())),
  'actions', jsonb_build_array(
    jsonb_build_object('tag', 'down', 'method', 'GET', 'resource', '/status/503',
                       'retries', jsonb_build_object('max', 2, 'initial_delay_ms', 1)))));
SELECT r->'status' AS status, r->'attempts' AS attempts
  FROM ductape.run_response('lim-retry', 'down') r;
SELECT granted, rejected FROM ductape.limits WHERE app = 'lim-retry';

-- An env's limits override its app's, key by key; app_export keeps both.
SELECT ductape.app_define(jsonb_build_object(
  'tag', 'lim-env',
  'limits', jsonb_build_object('rate', 50, 'per', '500ms', 'concurrency', 8),
  'envs', jsonb_build_array(
    jsonb_build_object('slug', 'dev', 'base_url', api()),
    jsonb_build_object('slug', 'slow', 'base_url', api(),
                       'limits', jsonb_build_object('concurrency', 1, 'max_wait_ms', 5000))),
  'actions', jsonb_build_array(
    jsonb_build_object('tag', 'ok', 'method', 'GET', 'resource', '/echo/lim'))));
SELECT ductape.run('lim-env', 'ok')->>'path' AS dev, ductape.run('lim-env', 'ok', env => 'slow')->>'path' AS slow;
SELECT env, rate, per, burst, concurrency, max_wait_ms, effective_rate, in_flight
  FROM ductape.limits WHERE app = 'lim-env' ORDER BY env;
SELECT ductape.app_export('lim-env')->'limits' AS app_limits,
       ductape.app_export('lim-env')->'envs'->1->'limits' AS env_limits;

-- An app without limits has a row too: in flight, and pauses the API asks for.
SELECT ductape.app_define(jsonb_build_object(
  'tag', 'lim-free',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', api())),
  'actions', jsonb_build_array(
    jsonb_build_object('tag', 'ok', 'method', 'GET', 'resource', '/echo/lim'),
    jsonb_build_object('tag', 'busy', 'method', 'GET', 'resource', '/status/429',
                       'retries', jsonb_build_object('max', 0)),
    jsonb_build_object('tag', 'down', 'method', 'GET', 'resource', '/status/503',
                       'retries', jsonb_build_object('max', 0)))));
SELECT ductape.run('lim-free', 'ok')->>'path' AS free_call;
SELECT rate, concurrency, max_wait_ms, effective_rate, tokens, in_flight, paused_until
  FROM ductape.limits WHERE app = 'lim-free';
-- a 503 without Retry-After is no pause
SELECT ductape.run_response('lim-free', 'down')->'status' AS status;
SELECT paused_until IS NULL AS not_paused FROM ductape.limits WHERE app = 'lim-free';
-- a 429 with Retry-After: 30 pauses the app for everyone; a call that may
-- wait 1 s (the default) fails at once
SELECT ductape.run_response('lim-free', 'busy', '{"retry_after": 30}')->'status' AS status;
SELECT paused_until BETWEEN now() + interval '25 s' AND now() + interval '35 s' AS paused_30s
  FROM ductape.limits WHERE app = 'lim-free';
SELECT limit_error($$SELECT ductape.run('lim-free', 'ok')$$);
-- the other env is not paused
SELECT ductape.app_define(ductape.app_export('lim-free') || jsonb_build_object('envs', jsonb_build_array(
    jsonb_build_object('slug', 'dev', 'base_url', api()), jsonb_build_object('slug', 'prd', 'base_url', api()))));
SELECT ductape.run('lim-free', 'ok', env => 'prd')->>'path' AS other_env;

-- A background job is never failed by a limit: it waits in its queue,
-- the attempt not counted.
CREATE FUNCTION public.lim_wait_deferred(job bigint) RETURNS TABLE (state text, attempts integer, waits_for_the_pause boolean)
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..100 LOOP
        EXIT WHEN (SELECT j.next_attempt_at > clock_timestamp() + interval '20 s' FROM ductape.jobs j WHERE j.id = job);
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN QUERY SELECT j.state::text, j.attempts, j.next_attempt_at > clock_timestamp() + interval '20 s'
                   FROM ductape.jobs j WHERE j.id = job;
END
$$;
SELECT ductape.dispatch('lim-free', 'ok') AS paused_job \gset
SELECT * FROM lim_wait_deferred(:paused_job);
SELECT waited >= 1 AS counted FROM ductape.limits WHERE app = 'lim-free' AND env = 'dev';
SELECT ductape.cancel(:paused_job);

-- A 429 without Retry-After halves a declared rate for a while.
SELECT ductape.app_define(jsonb_build_object(
  'tag', 'lim-slow',
  'limits', jsonb_build_object('rate', 20),
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', api())),
  'actions', jsonb_build_array(
    jsonb_build_object('tag', 'busy', 'method', 'GET', 'resource', '/status/429',
                       'retries', jsonb_build_object('max', 0)))));
SELECT ductape.run_response('lim-slow', 'busy')->'status' AS status;
SELECT rate, effective_rate, slowed_until > now() + interval '50 s' AS slowed, paused_until
  FROM ductape.limits WHERE app = 'lim-slow';
SELECT ductape.run_response('lim-slow', 'busy')->'status' AS status;
SELECT effective_rate FROM ductape.limits WHERE app = 'lim-slow';

-- Who sees what: usage roles read the apps' rows.
CREATE ROLE lim_app;
SELECT ductape.grant_usage('lim_app');
SET ROLE lim_app;
SELECT app, env, in_flight FROM ductape.limits WHERE app LIKE 'lim-%' ORDER BY app, env;
RESET ROLE;
DROP OWNED BY lim_app;
DROP ROLE lim_app;
DROP FUNCTION lim_wait_deferred(bigint);
SELECT count(ductape.app_drop(tag, cascade => true)) AS dropped FROM ductape.apps WHERE tag LIKE 'lim-%';
DROP FUNCTION limit_error(text);
