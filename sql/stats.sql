-- ductape.stats: counters in shared memory (docs/reference.md, "Call
-- records and stats"); TAP 016 covers restarts, concurrency and capacity.

SELECT ductape.app_define(jsonb_build_object(
  'tag', 'st',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', api()),
                            jsonb_build_object('slug', 'prd', 'base_url', api())),
  'actions', jsonb_build_array(
    jsonb_build_object('tag', 'ok', 'method', 'GET', 'resource', '/echo/st'),
    jsonb_build_object('tag', 'slow', 'method', 'GET', 'resource', '/delay/30'),
    jsonb_build_object('tag', 'e404', 'method', 'GET', 'resource', '/status/404'),
    jsonb_build_object('tag', 'e503', 'method', 'GET', 'resource', '/status/503',
                       'retries', jsonb_build_object('max', 1, 'initial_delay_ms', 1)),
    jsonb_build_object('tag', 'e302', 'method', 'GET', 'resource', '/status/302'))));
SELECT ductape.app_define(jsonb_build_object(
  'tag', 'st-down',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', 'http://127.0.0.1:1')),
  'actions', jsonb_build_array(jsonb_build_object('tag', 'net', 'method', 'GET', 'resource', '/x',
                                                  'retries', jsonb_build_object('max', 0)))));
SELECT ductape.app_define(jsonb_build_object(
  'tag', 'st-far',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', 'http://192.0.2.1')),
  'actions', jsonb_build_array(jsonb_build_object('tag', 'egress', 'method', 'GET', 'resource', '/x'))));

-- The view reads a function over shared memory, not ductape.calls.
EXPLAIN (COSTS OFF) SELECT * FROM ductape.stats;

SELECT ductape.stats_reset();

-- Every request counts once (its retries included), each error in its class.
SELECT count(ductape.run('st', 'ok')) FROM generate_series(1, 5);
SELECT count(ductape.run('st', 'ok', env => 'prd')) FROM generate_series(1, 2);
SELECT count(ductape.run('st', 'slow')) FROM generate_series(1, 4);
SELECT ductape.run_response('st', 'e404')->'status' AS status;
SELECT ductape.run_response('st', 'e503')->'attempts' AS attempts;
SELECT ductape.run_response('st', 'e302')->'status' AS status;
SELECT expect_error($$SELECT ductape.run('st-down', 'net')$$) LIKE 'DT001%' AS network_error;
SELECT expect_error($$SELECT ductape.run('st-far', 'egress')$$) LIKE 'DT002%' AS egress_error;
-- a statement cancelled during the call: an error of class other
SET statement_timeout = '100ms';
SELECT ductape.http('GET', api() || '/delay/3000');
RESET statement_timeout;

SELECT app, action, env, calls, errors, errors_4xx, errors_5xx, errors_network,
       errors_egress, errors_other
  FROM ductape.stats WHERE app LIKE 'st%' ORDER BY app, action, env;
SELECT action, calls, errors, errors_other
  FROM ductape.stats WHERE app IS NULL AND errors_other > 0;

-- Durations: percentiles interpolated in the histogram stay between the
-- shortest and the longest call, in order; the mean is exact.
SELECT min_ms >= 30 AS min_30ms, p50_ms BETWEEN min_ms AND max_ms AS p50_in_range,
       p50_ms <= p95_ms AND p95_ms <= p99_ms AND p99_ms <= max_ms AS ordered,
       mean_ms BETWEEN min_ms AND max_ms AS mean_in_range,
       p50_ms BETWEEN 25 AND 50 AS p50_in_bucket,
       last_at BETWEEN now() - interval '1 minute' AND clock_timestamp() AS last_at_recent,
       since <= last_at AS since_first
  FROM ductape.stats WHERE app = 'st' AND action = 'slow';
SELECT pg_typeof(p50_ms) AS p50_type, pg_typeof(calls) AS calls_type, pg_typeof(last_at) AS last_type
  FROM ductape.stats WHERE app = 'st' AND action = 'ok' AND env = 'dev';

-- Counted whatever ductape.log_requests keeps, and without writing: no
-- transaction id is taken by a call or a read.
ALTER SYSTEM SET ductape.log_requests = 'none';
SELECT pg_reload_conf();
SELECT pg_sleep(0.2);
BEGIN;
SELECT ductape.run_response('st', 'ok')->'call_id' AS no_record;
SELECT calls FROM ductape.stats WHERE app = 'st' AND action = 'ok' AND env = 'dev';
SELECT pg_current_xact_id_if_assigned() IS NULL AS no_write;
ROLLBACK;
ALTER SYSTEM RESET ductape.log_requests;
SELECT pg_reload_conf();
SELECT pg_sleep(0.2);
-- ...and a rolled-back caller's call still counts.
SELECT calls FROM ductape.stats WHERE app = 'st' AND action = 'ok' AND env = 'dev';

-- Who sees what: a usage role its own calls, an administrator every role's.
CREATE ROLE st_admin;
CREATE ROLE st_app1;
CREATE ROLE st_app2;
SELECT ductape.grant_admin('st_admin');
SELECT ductape.grant_usage('st_app1');
SELECT ductape.grant_usage('st_app2');
SET ROLE st_app1;
SELECT count(ductape.run('st', 'ok')) FROM generate_series(1, 3);
SELECT app, action, env, calls FROM ductape.stats ORDER BY app, action, env;
SELECT expect_error($$SELECT ductape.stats_reset()$$);
SELECT expect_error($$SELECT * FROM ductape._stats_info()$$);
RESET ROLE;
SET ROLE st_app2;
SELECT count(ductape.run('st', 'ok')) FROM generate_series(1, 2);
SELECT app, action, env, calls FROM ductape.stats ORDER BY app, action, env;
RESET ROLE;
SET ROLE st_admin;
SELECT calls FROM ductape.stats WHERE app = 'st' AND action = 'ok' AND env = 'dev';
SELECT entries > 0 AS has_entries, max_entries, overflow_entries, overflowed_calls, lost_calls,
       call_records_dropped
  FROM ductape._stats_info();
RESET ROLE;
-- The administrator test (EXECUTE on ductape.secret_get(text)) finds the
-- function by schema and argument type, not through the search_path: a
-- type of the caller's named text neither breaks nor changes the answer.
SET ROLE st_app1;
CREATE DOMAIN pg_temp.text AS integer;
SET search_path = pg_temp, pg_catalog, public;
SELECT app, action, env, calls FROM ductape.stats ORDER BY app, action, env;
RESET ROLE;
SET ROLE st_admin;
SELECT calls FROM ductape.stats WHERE app = 'st' AND action = 'ok' AND env = 'dev';
RESET ROLE;
RESET search_path;
SET ROLE st_app1;
DROP DOMAIN pg_temp.text;
RESET ROLE;
SET ROLE dt_nobody;
SELECT expect_error($$SELECT * FROM ductape.stats$$);
SELECT expect_error($$SELECT * FROM ductape._stats()$$);
RESET ROLE;

-- stats_reset removes the database's counters, every role's.
SET ROLE st_admin;
SELECT ductape.stats_reset();
SELECT count(*) AS rows_after_reset FROM ductape.stats;
SELECT count(ductape.run('st', 'ok')) FROM generate_series(1, 2);
SELECT app, action, env, calls, errors FROM ductape.stats;
RESET ROLE;
SET ROLE st_app1;
SELECT count(*) AS app1_rows_after_reset FROM ductape.stats;
RESET ROLE;

DROP OWNED BY st_admin, st_app1, st_app2;
DROP ROLE st_admin, st_app1, st_app2;

-- (later files count the apps)
SELECT ductape.app_drop('st'), ductape.app_drop('st-down'), ductape.app_drop('st-far');
