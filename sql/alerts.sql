-- Alerts (docs/reference.md, "Alerts"): the ductape.* operational messages,
-- what an endpoint's event types match, and misuse of the trigger.
-- (NOTIFY ductape_alerts itself is read by a LISTENing session in TAP
-- test/t/015_alerts.pl: psql prints a server PID with each notification.)

-- ductape.* event types are ductape's own: publish refuses them, to every
-- role, so that nobody can forge an operational message.
SELECT expect_error($$SELECT ductape.publish('ductape.job.failed', '{"forged": true}')$$);
SELECT expect_error($$SELECT ductape.publish('ductape.', '{}')$$);

-- "*" means the team's own events: an operational type is matched only by a
-- pattern that names it.
SELECT t AS event_type, p AS event_types, ductape._endpoint_wants(p::text[], t) AS wants
  FROM (VALUES ('invoice.paid', '{*}'), ('ductape.job.failed', '{*}'), ('ductape.job.failed', '{*.failed}'),
               ('ductape.job.failed', '{*,ductape.*}'), ('ductape.job.failed', '{ductape.job.*}'),
               ('ductape.job.failed', '{ductape.job.failed}'), ('ductape.job.failed', '{ductape.workflow.*}'),
               ('ductape.endpoint.disabled', '{ductape.*}'), ('invoice.paid', '{ductape.*}'),
               ('ductapex.y', '{*}'), ('ductape.job.failed', NULL)) v(t, p);

-- Wait until cond (a boolean over ductape.outbox) holds, up to 10 s.
CREATE FUNCTION public.wait_alert_outbox(cond text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE ok boolean;
BEGIN
  FOR i IN 1..200 LOOP
    EXECUTE 'SELECT coalesce(' || cond || ', false) FROM ductape.outbox' INTO ok;
    IF ok THEN RETURN true; END IF;
    PERFORM pg_sleep(0.05);
  END LOOP;
  RETURN false;
END $$;

-- Endpoints: one for job failures and disabled endpoints, one for
-- everything of the team ("*"), one to disable.
SELECT ductape.endpoint_create(api() || '/echo/alerts', '{ductape.job.failed,ductape.endpoint.disabled}',
                               headers => '{"X-Test-Key": "al-ops"}') AS ep_ops \gset
SELECT ductape.endpoint_create(api() || '/echo/all', '{*}', headers => '{"X-Test-Key": "al-all"}') AS ep_all \gset
SELECT ductape.endpoint_create(api() || '/echo/other', '{x.*}') AS ep_other \gset

-- A job of a usage role fails for good: ductape.job.failed goes to ep_ops
-- alone, a message of the extension's owner (the role cannot read it), its
-- payload built by ductape (nothing of the response, which holds the input).
SELECT ductape.app_define(jsonb_build_object('tag', 'al',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', api())),
  'actions', jsonb_build_array(jsonb_build_object('tag', 'fail', 'method', 'POST', 'resource', '/status/500'))));
CREATE ROLE dt_alerts;
SELECT ductape.grant_usage('dt_alerts');
SET ROLE dt_alerts;
SELECT ductape.dispatch('al', 'fail', '{"note": "al-marker-7f3e"}', options => '{"retries": {"max": 1}}') AS job_id \gset
SELECT j->>'state' AS state, j->'attempts' AS attempts, j->>'error' AS error,
       j->'response'->'body'->>'body' LIKE '%al-marker-7f3e%' AS response_holds_input
  FROM (SELECT ductape.wait(:job_id, '20 s') AS j) s;
SELECT count(*) AS operational_messages_visible_to_the_role FROM ductape.messages WHERE event_type LIKE 'ductape.%';
RESET ROLE;
SELECT m.event_type, m.payload - 'at' #- '{object,id}' AS payload,
       (m.payload->'object'->>'id')::bigint = :job_id AS its_id, (m.payload->>'at')::timestamptz <= now() AS at_is_a_time,
       m.role = (SELECT extowner::regrole::name FROM pg_extension WHERE extname = 'ductape') AS owned_by_ductape,
       m.payload::text NOT LIKE '%al-marker%' AS no_marker
  FROM ductape.messages m WHERE m.event_type = 'ductape.job.failed' AND m.payload->'object'->>'id' = :'job_id';
SELECT m.id AS msg_id FROM ductape.messages m
 WHERE m.event_type = 'ductape.job.failed' AND m.payload->'object'->>'id' = :'job_id' \gset
SELECT o.endpoint_id = :ep_ops AS to_ep_ops FROM ductape.outbox o WHERE o.message_id = :'msg_id';
SELECT wait_alert_outbox(format('bool_and(state = %L) FILTER (WHERE message_id = %L)', 'succeeded', :'msg_id')) AS delivered;
-- signed like any message: the signature it sent checks out with the endpoint's secret
SELECT d.status, r->'headers'->>'webhook-id' = d.message_id AS webhook_id,
       r->'headers'->>'webhook-signature' = ductape._signature_standard(ductape.endpoint_secret(:ep_ops), d.message_id,
                                                   (r->'headers'->>'webhook-timestamp')::bigint, r->>'body') AS signed,
       (r->>'body')::jsonb = m.payload AS body_is_the_payload
  FROM ductape.deliveries d JOIN ductape.messages m ON m.id = d.message_id, LATERAL (SELECT d.response::jsonb AS r) x
 WHERE d.message_id = :'msg_id';
-- message_retry without an endpoint follows the same rule: ep_ops again, not "*"
SELECT ductape.message_retry(:'msg_id') AS requeued;
SELECT count(*) FILTER (WHERE o.endpoint_id = :ep_all) AS to_star
  FROM ductape.outbox o JOIN ductape.messages m ON m.id = o.message_id WHERE m.event_type LIKE 'ductape.%';

-- A job retried by its role and failing again alerts again; a cancelled job
-- does not.
SET ROLE dt_alerts;
SELECT ductape.retry(:job_id) AS retried;
SELECT ductape.wait(:job_id, '20 s')->>'state' AS state_again;
SELECT ductape.dispatch('al', 'fail', run_at => now() + interval '1 hour') AS later_id \gset
SELECT ductape.cancel(:later_id) AS cancelled;
RESET ROLE;
-- a failure rolled back alerts nobody
BEGIN;
UPDATE ductape.jobs SET state = 'failed' WHERE id = :later_id;
ROLLBACK;
SELECT count(*) FILTER (WHERE payload->'object'->>'id' = :'job_id') AS alerts_of_the_job,
       count(*) FILTER (WHERE payload->'object'->>'id' = :'later_id') AS alerts_of_the_cancelled
  FROM ductape.messages WHERE event_type = 'ductape.job.failed';

-- An endpoint disabled by an administrator: endpoint.disabled.  Rolled back: nothing.
BEGIN;
SELECT ductape.endpoint_disable(:ep_other);
ROLLBACK;
SELECT count(*) AS after_rollback FROM ductape.messages
 WHERE event_type = 'ductape.endpoint.disabled' AND payload->'object'->>'id' = :'ep_other';
SELECT ductape.endpoint_disable(:ep_other);
SELECT ductape.endpoint_disable(:ep_other);   -- already disabled: no second alert
SELECT payload - 'at' #- '{object,id}' AS payload FROM ductape.messages
 WHERE event_type = 'ductape.endpoint.disabled' AND payload->'object'->>'id' = :'ep_other';

-- Misuse of the trigger function: on another table, or called directly.
CREATE TABLE public.alert_misuse (id bigint, state text);
INSERT INTO public.alert_misuse VALUES (1, 'running');
CREATE TRIGGER misuse AFTER UPDATE ON public.alert_misuse FOR EACH ROW EXECUTE FUNCTION ductape._alert();
SELECT expect_error($$UPDATE public.alert_misuse SET state = 'failed'$$);
SELECT expect_error($$SELECT ductape._alert()$$);
DROP TABLE public.alert_misuse;
-- a usage role can neither attach it to its own table nor call it
SET ROLE dt_alerts;
CREATE TEMP TABLE mine (id bigint);
SELECT expect_error($$CREATE TRIGGER t AFTER UPDATE ON mine FOR EACH ROW EXECUTE FUNCTION ductape._alert()$$);
RESET ROLE;

SELECT ductape.endpoint_delete(id) FROM ductape.endpoints WHERE id IN (:ep_ops, :ep_all, :ep_other);
SELECT ductape.app_drop('al');
DROP OWNED BY dt_alerts;
DROP ROLE dt_alerts;
DROP FUNCTION public.wait_alert_outbox(text);
