-- ductape.calls and ductape.stats (docs/reference.md).

SELECT ductape.app_define(jsonb_build_object(
  'tag', 'rec',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', api())),
  'auth', jsonb_build_object('type', 'api_key', 'in', 'query', 'name', 'key', 'value', 'sk_live_plaintext_key_123'),
  'actions', jsonb_build_array(
    jsonb_build_object('tag', 'ok', 'method', 'GET', 'resource', '/echo/ok'),
    jsonb_build_object('tag', 'fail', 'method', 'GET', 'resource', '/status/500', 'retries', jsonb_build_object('max', 1, 'initial_delay_ms', 1)))));

-- run adds no table write to the caller's transaction: no xid is assigned.
BEGIN;
SELECT ductape.run('rec', 'ok')->>'path' AS path;
SELECT pg_current_xact_id_if_assigned() IS NULL AS no_write_in_caller;
ROLLBACK;
-- ...and its record survives the rollback.
SELECT wait_calls($$app = 'rec' AND action = 'ok'$$) AS recorded_after_rollback;

-- The envelope's call_id is the row's id; rows appear within a second.
CREATE TEMP TABLE c AS SELECT ductape.run_response('rec', 'fail') AS r, clock_timestamp() AS t0;
SELECT wait_calls(format('id = %s', (SELECT r->>'call_id' FROM c))) AS found;
SELECT app, action, env, product, method, regexp_replace(url, ':\d+', ':PORT') AS url, status, attempts,
       duration_ms > 0 AS timed, error, job_id, role = current_user AS role_ok
  FROM ductape.calls WHERE id = (SELECT (r->>'call_id')::bigint FROM c);

-- The api_key went out in the query, but no record shows it.
SELECT (SELECT r->'body'->'query'->>'key' FROM (SELECT ductape.run_response('rec', 'ok') AS r) s) AS sent_to_server;
SELECT wait_calls($$app = 'rec'$$, 3) AS all_recorded;
SELECT count(*) FILTER (WHERE c::text LIKE '%sk_live_plaintext_key_123%') AS records_with_secret,
       count(*) FILTER (WHERE url LIKE '%key=[redacted]%') AS redacted_urls
  FROM ductape.calls c WHERE app = 'rec';
-- Sensitive response headers are redacted in the envelope.
SELECT r->'headers'->>'set-cookie' AS set_cookie, r->'headers'->>'x-plain' AS plain
  FROM (SELECT ductape.http('GET', api() || '/headers?Set-Cookie=session%3Dabc&X-Plain=visible') AS r) s;
-- Authorization sent through http() never reaches a record or an error.
SELECT expect_error($$SELECT ductape.run('rec', 'fail')$$) LIKE '%sk_live%' AS secret_in_error;
SELECT ductape.http('GET', api() || '/status/401?token=Bearer-abc123secret', '{"Authorization": "abc123secret"}')->'status' AS status;
SELECT wait_calls($$url LIKE '%/status/401%'$$) AS found;
SELECT url LIKE '%[redacted]%' AS token_redacted, url NOT LIKE '%abc123secret%' AS no_secret
  FROM ductape.calls WHERE url LIKE '%/status/401%';

-- stats
SELECT app, action, calls, errors, p50_ms > 0 AS p50, p95_ms >= p50_ms AS p95, last_at IS NOT NULL AS last
  FROM ductape.stats WHERE app = 'rec' ORDER BY action;

-- log_requests = errors keeps only failures; none keeps nothing.
ALTER SYSTEM SET ductape.log_requests = 'errors';
SELECT pg_reload_conf();
SELECT pg_sleep(0.2);
SHOW ductape.log_requests;
SELECT ductape.run_response('rec', 'ok')->'call_id' AS ok_call_id,
       ductape.run_response('rec', 'fail')->'call_id' IS NOT NULL AS failed_call_recorded;
ALTER SYSTEM SET ductape.log_requests = 'none';
SELECT pg_reload_conf();
SELECT pg_sleep(0.2);
SELECT ductape.run_response('rec', 'fail')->'call_id' AS none_call_id;
ALTER SYSTEM RESET ductape.log_requests;
SELECT pg_reload_conf();
SELECT pg_sleep(0.2);
SHOW ductape.log_requests;
SELECT expect_error($$SET ductape.log_requests = 'errors'$$);
