-- The retry policy (docs/reference.md), counted by the test API server.

SELECT ductape.app_define(jsonb_build_object(
  'tag', 'flaky',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', api()),
                            jsonb_build_object('slug', 'down', 'base_url', 'http://127.0.0.1:9'),
                            jsonb_build_object('slug', 'cap', 'base_url', api()),
                            jsonb_build_object('slug', 'st', 'base_url', api())),
  'retries', jsonb_build_object('initial_delay_ms', 10, 'max_delay_ms', 100),
  'actions', jsonb_build_array(
    jsonb_build_object('tag', 'get', 'method', 'GET', 'resource', '/flaky/:key/:n'),
    jsonb_build_object('tag', 'post', 'method', 'POST', 'resource', '/flaky/:key/:n'),
    jsonb_build_object('tag', 'patch', 'method', 'PATCH', 'resource', '/flaky/:key/:n'),
    jsonb_build_object('tag', 'put', 'method', 'PUT', 'resource', '/flaky/:key/:n'),
    jsonb_build_object('tag', 'once', 'method', 'GET', 'resource', '/flaky/:key/:n', 'retries', jsonb_build_object('max', 1)),
    jsonb_build_object('tag', 'slow', 'method', 'GET', 'resource', '/delay/:ms'),
    jsonb_build_object('tag', 'slow-post', 'method', 'POST', 'resource', '/delay/:ms'))));

SELECT ductape.http('GET', api() || '/reset')->'body' AS reset;

-- A GET that fails twice with 503 succeeds on the third attempt (default max 2).
SELECT r->'status' AS status, r->'attempts' AS attempts, api_count('g1') AS server_saw
  FROM (SELECT ductape.run_response('flaky', 'get', '{"key": "g1", "n": 2}') AS r) s;
-- Three failures are one too many: DT000 after 3 attempts.
SELECT expect_error($$SELECT ductape.run('flaky', 'get', '{"key": "g2", "n": 3}')$$) ~ 'Status 503 after 3 attempts' AS dt000_after_3;
SELECT api_count('g2') AS server_saw;
-- Precedence: call option > action > app > default.
SELECT ductape.run_response('flaky', 'once', '{"key": "g3", "n": 5}')->'attempts' AS action_max_1;
SELECT ductape.run_response('flaky', 'once', '{"key": "g4", "n": 5}', options => '{"retries": {"max": 3}}')->'attempts' AS option_max_3;
SELECT ductape.run_response('flaky', 'get', '{"key": "g5", "n": 5}', options => '{"retries": {"max": 0}}')->'attempts' AS option_max_0;
-- Statuses not in "on" are not retried.
SELECT ductape.run_response('flaky', 'get', '{"key": "g6", "n": 1, "status": 500}', options => '{"retries": {"on": [503]}}')->'attempts' AS not_in_on;
SELECT ductape.run_response('flaky', 'get', '{"key": "g7", "n": 1, "status": 404}')->'attempts' AS not_retryable_404;

-- POST/PATCH safety: a 5xx is retried only with an idempotency key (or "unsafe").
SELECT ductape.run_response('flaky', 'post', '{"key": "p1", "n": 1, "query:status": 500}')->'attempts' AS post_500_no_key,
       api_count('p1') AS server_saw;
SELECT r->'attempts' AS post_500_with_key, r->'status' AS status,
       r->'body'->'headers'->>'idempotency-key' AS key_sent
  FROM (SELECT ductape.run_response('flaky', 'post', '{"key": "p2", "n": 1, "query:status": 500}',
                                    options => '{"idempotency_key": "order-42"}') AS r) s;
SELECT ductape.run_response('flaky', 'patch', '{"key": "p3", "n": 1, "query:status": 502}')->'attempts' AS patch_502_no_key;
SELECT ductape.run_response('flaky', 'post', '{"key": "p4", "n": 1, "query:status": 500}',
                            options => '{"retries": {"unsafe": true}}')->'attempts' AS post_unsafe;
SELECT ductape.run_response('flaky', 'put', '{"key": "p5", "n": 1, "query:status": 500}')->'attempts' AS put_is_idempotent;
-- 429, and 503 with Retry-After, are always retryable.
SELECT ductape.run_response('flaky', 'post', '{"key": "p6", "n": 1, "query:status": 429}')->'attempts' AS post_429;
SELECT ductape.run_response('flaky', 'post', '{"key": "p7", "n": 1, "query:status": 503, "query:retry_after": "0"}')->'attempts' AS post_503_retry_after;
-- A failure to connect sent nothing: retried even for POST.
SELECT ductape.run_response('flaky', 'post', '{"key": "p8", "n": 1}', env => 'down')->'attempts' AS post_refused;
-- A timeout after sending is not retried for POST without a key; a GET is.
SELECT ductape.run_response('flaky', 'slow-post', '{"ms": 400}', options => '{"timeout_ms": 100}')->'attempts' AS post_timeout;
SELECT ductape.run_response('flaky', 'slow', '{"ms": 400}', options => '{"timeout_ms": 100, "retries": {"max": 1}}')->'attempts' AS get_timeout;
SELECT ductape.run_response('flaky', 'slow', '{"ms": 400}', options => '{"timeout_ms": 100, "retries": {"on": ["network"]}}')->'attempts' AS timeout_not_in_on;

-- Retry-After (seconds) sets the delay, capped by max_delay_ms (100 ms in
-- this app); respect_retry_after: false ignores it.  A Retry-After also
-- pauses the app and env for every caller (docs/reference.md, "Limits"): a
-- retry the pause holds past the call's max_wait_ms (1 s by default) is not
-- made, and the call ends with the answer it had.
CREATE TEMP TABLE timing (what text, ms numeric, attempts int);
DO $$
DECLARE t0 timestamptz := clock_timestamp(); r jsonb;
BEGIN
    r := ductape.run_response('flaky', 'get', '{"key": "ra1", "n": 1, "retry_after": "1"}',
                              options => '{"retries": {"max_delay_ms": 5000}}');
    INSERT INTO timing VALUES ('retry_after_1s', extract(epoch FROM clock_timestamp() - t0) * 1000, (r->>'attempts')::int);
    t0 := clock_timestamp();
    r := ductape.run_response('flaky', 'get', '{"key": "ra2", "n": 1, "retry_after": "1"}',
                              options => '{"retries": {"respect_retry_after": false}}');
    INSERT INTO timing VALUES ('ignored', extract(epoch FROM clock_timestamp() - t0) * 1000, (r->>'attempts')::int);
    t0 := clock_timestamp();
    r := ductape.run_response('flaky', 'get', '{"key": "ra3", "n": 1, "retry_after": "Wed, 21 Oct 2015 07:28:00 GMT"}');
    INSERT INTO timing VALUES ('http_date_in_past', extract(epoch FROM clock_timestamp() - t0) * 1000, (r->>'attempts')::int);
    -- exponential backoff: 3 retries at 100, 200, 400 ms (jitter 0)
    t0 := clock_timestamp();
    r := ductape.run_response('flaky', 'get', '{"key": "bo", "n": 3}',
          options => '{"retries": {"max": 3, "initial_delay_ms": 100, "multiplier": 2, "jitter": 0, "max_delay_ms": 1000}}');
    INSERT INTO timing VALUES ('backoff_700ms', extract(epoch FROM clock_timestamp() - t0) * 1000, (r->>'attempts')::int);
    -- capped by max_delay_ms, but paused for 30 s: not retried into the pause
    t0 := clock_timestamp();
    r := ductape.run_response('flaky', 'get', '{"key": "cap", "n": 2, "retry_after": "30"}',
          env => 'cap', options => '{"retries": {"max_delay_ms": 50}}');
    INSERT INTO timing VALUES ('capped_retry_after', extract(epoch FROM clock_timestamp() - t0) * 1000, (r->>'attempts')::int);
END $$;
SELECT what, attempts,
       CASE what WHEN 'retry_after_1s' THEN ms BETWEEN 950 AND 1500
                 WHEN 'ignored' THEN ms < 500
                 WHEN 'http_date_in_past' THEN ms < 500
                 WHEN 'backoff_700ms' THEN ms BETWEEN 690 AND 1000
                 WHEN 'capped_retry_after' THEN ms < 500 END AS timing_ok
  FROM timing ORDER BY what;
SELECT env, paused_until > now() + interval '20 s' AS paused FROM ductape.limits
 WHERE app = 'flaky' AND env = 'cap';

-- A retry delay is interrupted by statement_timeout.
SELECT set_config('dt.t0', clock_timestamp()::text, false) IS NOT NULL AS started;
SET statement_timeout = '300ms';
SELECT ductape.run('flaky', 'get', '{"key": "st", "n": 1, "retry_after": "10"}', env => 'st',
                   options => '{"retries": {"max_delay_ms": 60000}}');
\echo :LAST_ERROR_SQLSTATE
RESET statement_timeout;
SELECT extract(epoch FROM clock_timestamp() - current_setting('dt.t0')::timestamptz) * 1000 BETWEEN 290 AND 400 AS within_100ms;
SELECT api_count('st') AS attempts_made;
-- The cancelled call still leaves a record, and the cancel reaches the
-- caller as it was raised; so does a cancel in the middle of a transfer.
SELECT wait_calls($$app = 'flaky' AND url LIKE '%/flaky/st/1%' AND error = 'interrupted'$$) AS recorded;
SELECT action, status, attempts, error FROM ductape.calls WHERE app = 'flaky' AND url LIKE '%/flaky/st/1%';
SET statement_timeout = '300ms';
SELECT ductape.run('flaky', 'slow', '{"ms": 5000}');
\echo :LAST_ERROR_SQLSTATE
RESET statement_timeout;
SELECT wait_calls($$app = 'flaky' AND action = 'slow' AND error = 'interrupted'$$) AS recorded;
SELECT action, status, attempts, error FROM ductape.calls WHERE app = 'flaky' AND action = 'slow' AND error = 'interrupted';
