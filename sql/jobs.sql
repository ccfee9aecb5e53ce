-- Background jobs (docs/reference.md): dispatch, job, wait, cancel, retry, callbacks.

SELECT ductape.http('GET', api() || '/reset')->'status' AS reset;
SELECT ductape.app_define(jsonb_build_object('tag', 'bg',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', api())),
  'retries', jsonb_build_object('initial_delay_ms', 20, 'max_delay_ms', 200),
  'actions', jsonb_build_array(
    jsonb_build_object('tag', 'send', 'method', 'POST', 'resource', '/echo/send'),
    jsonb_build_object('tag', 'flaky', 'method', 'POST', 'resource', '/flaky/:key/:n'),
    jsonb_build_object('tag', 'get', 'method', 'GET', 'resource', '/echo/items/:id'))));

-- A job runs once its transaction commits; every attempt carries the same key.
SELECT ductape.dispatch('bg', 'send', '{"order": 1, "headers:X-Test-Key": "job-a"}') AS id \gset
SELECT j->>'state' AS state, j->'attempts' AS attempts, j->'response'->'status' AS status,
       j->'response'->'body'->'headers'->>'idempotency-key' = 'ductape-job-' || :id AS derived_key,
       (j->'response'->'body'->>'body')::jsonb AS sent
  FROM (SELECT ductape.wait(:id, '10 s') AS j) s;
SELECT api_count('job-a') AS requests;

-- Retried with the background policy; the given idempotency key on every attempt.
SELECT ductape.dispatch('bg', 'flaky', '{"key": "jf1", "n": 3}', idempotency_key => 'order-77') AS id \gset
SELECT j->>'state' AS state, j->'attempts' AS attempts,
       j->'response'->'body'->'headers'->>'idempotency-key' AS key_sent
  FROM (SELECT ductape.wait(:id, '10 s') AS j) s;
SELECT api_count('jf1') AS requests;
-- the same idempotency key returns the first job
SELECT ductape.dispatch('bg', 'flaky', '{"key": "other", "n": 0}', idempotency_key => 'order-77') = :id AS same_job;
SELECT count(*) AS jobs_with_key FROM ductape.jobs WHERE idempotency_key = 'order-77';

-- Retries exhausted: failed, with the error kept; retry() queues it again.
SELECT ductape.dispatch('bg', 'flaky', '{"key": "jf2", "n": 4, "query:status": 500}',
                        options => '{"retries": {"max": 1}}') AS id \gset
SELECT j->>'state' AS state, j->'attempts' AS attempts, j->>'error' AS error, j->'response'->'status' AS status
  FROM (SELECT ductape.wait(:id, '10 s') AS j) s;
SELECT ductape.retry(:id) AS retried;
SELECT j->>'state' AS state, j->'attempts' AS attempts
  FROM (SELECT ductape.wait(:id, '10 s') AS j) s;
SELECT api_count('jf2') AS requests;
SELECT ductape.retry(:id) AS retry_again;
SELECT ductape.wait(:id, '10 s')->>'state' AS state_after_second_retry;
SELECT ductape.retry(:id) AS retry_succeeded_job;
-- waiting in the transaction that dispatched could never end: refused
BEGIN;
SELECT expect_error(format('SELECT ductape.wait(%s)', ductape.dispatch('bg', 'send', '{"headers:X-Test-Key": "same-xact"}')));
COMMIT;

-- A dispatch in a transaction that rolls back is never sent.
BEGIN;
SELECT ductape.dispatch('bg', 'send', '{"headers:X-Test-Key": "rolled-back"}') IS NOT NULL AS dispatched;
ROLLBACK;
SELECT pg_sleep(0.3);
SELECT api_count('rolled-back') AS requests_sent,
       (SELECT count(*) FROM ductape.jobs WHERE input->>'headers:X-Test-Key' = 'rolled-back') AS rows;

-- run_at: scheduled, then run when due; a scheduled job can be cancelled.
SELECT ductape.dispatch('bg', 'send', '{"headers:X-Test-Key": "later"}', run_at => now() + interval '1 second') AS id \gset
SELECT ductape.job(:id)->>'state' AS state_before;
SELECT j->>'state' AS state,
       (j->>'finished_at')::timestamptz - (j->>'created_at')::timestamptz >= interval '1 second' AS ran_after_run_at
  FROM (SELECT ductape.wait(:id, '10 s') AS j) s;
SELECT ductape.dispatch('bg', 'send', '{"headers:X-Test-Key": "never"}', run_at => now() + interval '1 hour') AS id \gset
SELECT ductape.cancel(:id) AS cancelled, ductape.cancel(:id) AS cancel_again, ductape.job(:id)->>'state' AS state;
SELECT api_count('never') AS requests_sent;

-- Callbacks run in their own transaction, as the role that dispatched.
CREATE TABLE public.callback_log (kind text, job_id bigint, state text, who name);
CREATE FUNCTION public.on_ok(job jsonb) RETURNS void LANGUAGE sql AS
  $$ INSERT INTO public.callback_log VALUES ('ok', (job->>'id')::bigint, job->>'state', current_user) $$;
CREATE FUNCTION public.on_bad(job jsonb) RETURNS void LANGUAGE sql AS
  $$ INSERT INTO public.callback_log VALUES ('bad', (job->>'id')::bigint, job->>'state', current_user) $$;
CREATE ROLE dt_jobs;
SELECT ductape.grant_usage('dt_jobs');
GRANT INSERT ON public.callback_log TO dt_jobs;
SET ROLE dt_jobs;
SELECT ductape.dispatch('bg', 'send', '{}', on_success => 'on_ok(jsonb)', on_failure => 'on_bad(jsonb)') AS ok_id \gset
SELECT ductape.dispatch('bg', 'flaky', '{"key": "cb", "n": 5}', on_success => 'on_ok(jsonb)', on_failure => 'on_bad(jsonb)',
                        options => '{"retries": {"max": 0}}') AS bad_id \gset
SELECT ductape.wait(:ok_id, '10 s')->>'state' AS ok_state, ductape.wait(:bad_id, '10 s')->>'state' AS bad_state;
-- a usage role sees its own jobs only
SELECT count(*) > 0 AS sees_own, bool_and(role = 'dt_jobs') AS only_own FROM ductape.jobs;
RESET ROLE;
SELECT pg_sleep(0.3);
SELECT kind, job_id = :ok_id AS is_ok_job, job_id = :bad_id AS is_bad_job, state, who FROM public.callback_log ORDER BY kind;
SET ROLE dt_nobody;
SELECT expect_error($$SELECT ductape.dispatch('bg', 'send')$$);
RESET ROLE;
SET ROLE dt_jobs;
SELECT expect_error(format('SELECT ductape.job(%s)', :id));
RESET ROLE;

-- Async calls are recorded with their job.
SELECT wait_calls(format('job_id = %s', :ok_id)) AS recorded;
SELECT app, action, status, job_id = :ok_id AS linked, role FROM ductape.calls WHERE job_id = :ok_id;

-- Validation happens before anything is written.
SELECT expect_error($$SELECT ductape.dispatch('nope', 'x')$$);
SELECT expect_error($$SELECT ductape.dispatch('bg', 'get', '{}')$$);
SELECT expect_error($$SELECT ductape.dispatch('bg', 'send', '[]')$$);
SELECT expect_error($$SELECT ductape.dispatch('bg', 'send', options => '{"retries": {"max": "x"}}')$$);
SELECT expect_error($$SELECT ductape.dispatch('bg', 'send', idempotency_key => '')$$);
SELECT expect_error($$SELECT ductape.dispatch('bg', 'send', on_success => 'now()')$$);
SELECT expect_error($$SELECT ductape.dispatch('bg', 'send', env => 'prd')$$);
SELECT expect_error($$SELECT ductape.job(987654321)$$);

-- The queue view.
SELECT state, jobs FROM ductape.queue ORDER BY state;

-- Triggers dispatch; the writing transaction never waits on the network.
SELECT ductape.action_define('bg', '{"tag": "slow-hook", "method": "POST", "resource": "/delay/5000"}');
CREATE TABLE public.orders (id int PRIMARY KEY, customer text, total numeric);
CREATE TRIGGER orders_created AFTER INSERT ON public.orders
    FOR EACH ROW EXECUTE FUNCTION ductape.on_row('bg', 'slow-hook');
CREATE TRIGGER orders_changed AFTER UPDATE ON public.orders
    FOR EACH ROW EXECUTE FUNCTION ductape.on_row('bg', 'send',
        '{"order": "$Row{id}", "total": "$Row{total}", "was": "$Old{total}", "headers:X-Test-Key": "orders-upd"}');
CREATE TRIGGER orders_deleted AFTER DELETE ON public.orders
    FOR EACH ROW EXECUTE FUNCTION ductape.on_row('bg', 'send');
SELECT set_config('dt.t0', clock_timestamp()::text, false) IS NOT NULL AS started;
INSERT INTO public.orders VALUES (1, 'ada', 10.5);
SELECT extract(epoch FROM clock_timestamp() - current_setting('dt.t0')::timestamptz) * 1000 < 100 AS insert_under_100ms;
SELECT action, input, state IN ('queued', 'running') AS pending FROM ductape.jobs WHERE action = 'slow-hook';
UPDATE public.orders SET total = 12 WHERE id = 1;
SELECT max(id) AS upd FROM ductape.jobs WHERE action = 'send' AND input->>'headers:X-Test-Key' = 'orders-upd' \gset
SELECT ductape.wait(:upd, '10 s')->>'state' AS state, (SELECT input FROM ductape.jobs WHERE id = :upd) AS input;
DELETE FROM public.orders WHERE id = 1;
SELECT input FROM ductape.jobs WHERE action = 'send' ORDER BY id DESC LIMIT 1;
-- A rolled-back INSERT dispatches nothing.
BEGIN;
INSERT INTO public.orders VALUES (2, 'bob', 1);
ROLLBACK;
SELECT count(*) AS jobs_for_rolled_back_row FROM ductape.jobs WHERE input->>'id' = '2';
-- Bad triggers are refused clearly.
CREATE TRIGGER orders_bad AFTER INSERT ON public.orders FOR EACH STATEMENT EXECUTE FUNCTION ductape.on_row('bg', 'send');
SELECT expect_error($$INSERT INTO public.orders VALUES (3, 'cy', 1)$$);
DROP TRIGGER orders_bad ON public.orders;
CREATE TRIGGER orders_bad2 AFTER INSERT ON public.orders FOR EACH ROW EXECUTE FUNCTION ductape.on_row('bg', 'send', '{"x": "$Old{id}"}');
SELECT expect_error($$INSERT INTO public.orders VALUES (4, 'di', 1)$$);
DROP TRIGGER orders_bad2 ON public.orders;
CREATE TRIGGER orders_bad3 AFTER INSERT ON public.orders FOR EACH ROW EXECUTE FUNCTION ductape.on_row('bg');
SELECT expect_error($$INSERT INTO public.orders VALUES (5, 'ed', 1)$$);
DROP TRIGGER orders_bad3 ON public.orders;
CREATE TRIGGER orders_bad4 AFTER INSERT ON public.orders FOR EACH ROW EXECUTE FUNCTION ductape.on_row('bg', 'send', '{}', 'dev', 'p', 'x');
SELECT expect_error($$INSERT INTO public.orders VALUES (6, 'fi', 1)$$);
DROP TRIGGER orders_bad4 ON public.orders;
DROP TABLE public.orders;
SELECT ductape.cancel(id) FROM ductape.jobs WHERE action = 'slow-hook' AND state IN ('queued', 'scheduled');

-- A dispatch without a key writes its row straight into the table and its
-- indexes.  What a subtransaction rolls back is gone, an index created in
-- the same transaction gets the later rows, and the row is visible to the
-- rest of the statement.
BEGIN;
SELECT ductape.dispatch('bg', 'send', '{"headers:X-Test-Key": "sx-1"}', run_at => now() + interval '1 hour') > 0 AS d1;
SAVEPOINT s;
SELECT ductape.dispatch('bg', 'send', '{"headers:X-Test-Key": "sx-2"}', run_at => now() + interval '1 hour') > 0 AS d2;
ROLLBACK TO s;
SELECT ductape.dispatch('bg', 'send', '{"headers:X-Test-Key": "sx-3"}', run_at => now() + interval '1 hour') > 0 AS d3;
CREATE INDEX jobs_test_key_idx ON ductape.jobs ((input->>'headers:X-Test-Key'));
SELECT ductape.dispatch('bg', 'send', '{"headers:X-Test-Key": "sx-4"}', run_at => now() + interval '1 hour') > 0 AS d4;
SELECT ductape.job(ductape.dispatch('bg', 'send', '{"headers:X-Test-Key": "sx-5"}', run_at => now() + interval '1 hour'))->>'state' AS seen_at_once;
COMMIT;
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM ductape.jobs WHERE input->>'headers:X-Test-Key' IN ('sx-1', 'sx-2', 'sx-3', 'sx-4', 'sx-5');
SELECT array_agg(input->>'headers:X-Test-Key' ORDER BY id) AS found_through_new_index, array_agg(DISTINCT state) AS states
  FROM ductape.jobs WHERE input->>'headers:X-Test-Key' IN ('sx-1', 'sx-2', 'sx-3', 'sx-4', 'sx-5');
RESET enable_seqscan;
DROP INDEX ductape.jobs_test_key_idx;
-- a subtransaction per dispatch (an exception block), one of them failing
DO $$
BEGIN
    FOR i IN 1..3 LOOP
        BEGIN
            PERFORM ductape.dispatch('bg', 'send', jsonb_build_object('headers:X-Test-Key', 'sx-loop-' || i),
                                     run_at => now() + interval '1 hour');
            IF i = 2 THEN RAISE EXCEPTION 'undo the second'; END IF;
        EXCEPTION WHEN raise_exception THEN NULL;
        END;
    END LOOP;
END$$;
SELECT array_agg(input->>'headers:X-Test-Key' ORDER BY id) AS kept FROM ductape.jobs WHERE input->>'headers:X-Test-Key' LIKE 'sx-loop-%';
-- with a trigger on ductape.jobs, dispatch goes through the executor so it fires
CREATE FUNCTION public.job_seen() RETURNS trigger LANGUAGE plpgsql
    AS $$BEGIN PERFORM set_config('dt.seen', NEW.id::text, false); RETURN NEW; END$$;
CREATE TRIGGER jobs_seen AFTER INSERT ON ductape.jobs FOR EACH ROW EXECUTE FUNCTION public.job_seen();
SELECT ductape.dispatch('bg', 'send', '{"headers:X-Test-Key": "sx-6"}', run_at => now() + interval '1 hour') AS id \gset
SELECT current_setting('dt.seen')::bigint = :id AS trigger_fired;
DROP TRIGGER jobs_seen ON ductape.jobs;
DROP FUNCTION public.job_seen();
SELECT count(ductape.cancel(id)) AS cancelled FROM ductape.jobs WHERE input->>'headers:X-Test-Key' LIKE 'sx-%';
