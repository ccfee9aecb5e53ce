-- ductape SQL source: alerts.
--
-- When something ductape runs for a team fails for good, ductape says so,
-- twice, in the transaction that records it (rolled back: nobody hears):
--   - NOTIFY on channel ductape_alerts with a short JSON payload;
--   - an operational message of type ductape.<kind>, published to the
--     outbound endpoints without a tenant whose event_types name it
--     (ductape.* or the exact type; "*" does not match them, see
--     _endpoint_wants in 08_events.sql), delivered and signed like any
--     message.
-- Kinds: endpoint.disabled (410 Gone, five days failing, endpoint_disable),
-- job.failed (retries exhausted), webhook_event.failed (handlers failed
-- every round), workflow.failed (a run ends failed or rolled_back).
--
-- How: an AFTER UPDATE row trigger on each of the four tables, with a WHEN
-- clause on its state column, so that every other update (claims, retries,
-- successes) costs one comparison and queues nothing.  None of these rows
-- is born failed (dispatch, the listener, workflow_start and
-- endpoint_create insert them live), so there is no INSERT trigger, and a
-- restore (which inserts) alerts nobody.  The trigger function runs as the
-- extension's owner with a pinned search_path, whoever made the change
-- (the worker's bootstrap superuser, or a role through ductape's functions).
--
-- What the payload holds is built by ductape alone: a kind, the object's
-- type and id, the database, a time, and a reason picked from a short fixed
-- list (an HTTP status is three digits).  Never an error text, a response
-- or payload body, a URL, a role: any role that can connect may LISTEN on
-- any channel (docs/security.md).

-- The alert of one row whose state just became final-and-bad.
CREATE FUNCTION ductape._alert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    kind text;
    object text;
    reason text;
    payload jsonb;
    event_type text;
    msg_id text;
BEGIN
    IF TG_TABLE_SCHEMA <> 'ductape' OR TG_OP <> 'UPDATE' OR TG_LEVEL <> 'ROW' OR TG_WHEN <> 'AFTER'
       OR TG_TABLE_NAME NOT IN ('endpoints', 'jobs', 'webhook_events', 'workflow_runs') THEN
        RAISE EXCEPTION USING ERRCODE = '39P01',
            MESSAGE = format('ductape._alert() cannot be used by trigger %s on %I.%I', TG_NAME, TG_TABLE_SCHEMA, TG_TABLE_NAME),
            DETAIL = 'It fires AFTER UPDATE FOR EACH ROW on ductape.endpoints, jobs, webhook_events and workflow_runs only.';
    END IF;
    CASE TG_TABLE_NAME
    WHEN 'endpoints' THEN
        kind := 'endpoint.disabled';
        object := 'endpoint';
        reason := CASE WHEN NEW.disabled_reason = 'the endpoint answered 410 Gone' THEN 'answered 410 Gone'
                       WHEN starts_with(NEW.disabled_reason, 'failing continuously since ') THEN 'failing for 5 days'
                       WHEN starts_with(NEW.disabled_reason, 'disabled by ') THEN 'disabled by an administrator'
                       ELSE 'disabled' END;
    WHEN 'jobs' THEN
        kind := 'job.failed';
        object := 'job';
        reason := format('%s after %s attempt%s',
                         CASE WHEN NEW.error ~ '^HTTP [0-9]{3}$' THEN NEW.error ELSE 'no HTTP status' END,
                         NEW.attempts, CASE WHEN NEW.attempts = 1 THEN '' ELSE 's' END);
    WHEN 'webhook_events' THEN
        kind := 'webhook_event.failed';
        object := 'webhook_event';
        reason := format('handlers failed %s time%s', NEW.attempts, CASE WHEN NEW.attempts = 1 THEN '' ELSE 's' END);
    WHEN 'workflow_runs' THEN
        kind := 'workflow.failed';
        object := 'workflow_run';
        reason := CASE WHEN NEW.state = 'rolled_back' THEN 'a step failed; rolled back'
                       WHEN starts_with(NEW.error, 'compensation of step ') THEN 'a compensation failed'
                       WHEN starts_with(NEW.error, 'output: ') THEN 'the output template failed'
                       WHEN starts_with(NEW.error, 'the workflow engine failed') THEN 'the workflow engine failed'
                       ELSE 'failed' END;
    END CASE;
    payload := jsonb_build_object('kind', kind, 'object', jsonb_build_object('type', object, 'id', NEW.id),
                                  'reason', reason, 'at', clock_timestamp(), 'database', current_database());
    PERFORM pg_notify('ductape_alerts', payload::text);

    -- the operational message, when an endpoint wants it (one scan of the
    -- endpoints, usually a handful of rows, when nobody does): the team's
    -- own endpoints only, those without a tenant (a customer's endpoint
    -- never hears of the team's failures), and the message has no tenant
    event_type := 'ductape.' || kind;
    IF EXISTS (SELECT FROM ductape.endpoints e
                WHERE e.enabled AND e.tenant IS NULL AND ductape._endpoint_wants(e.event_types, event_type)) THEN
        msg_id := 'msg_' || replace(gen_random_uuid()::text, '-', '');
        INSERT INTO ductape.messages (id, event_type, payload, role, tenant)
        VALUES (msg_id, event_type, payload, current_user, NULL);
        INSERT INTO ductape.outbox (message_id, endpoint_id, role)
        SELECT msg_id, e.id, current_user FROM ductape.endpoints e
         WHERE e.enabled AND e.tenant IS NULL AND ductape._endpoint_wants(e.event_types, event_type);
        PERFORM ductape._wake_worker();
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER alert_disabled AFTER UPDATE OF enabled ON ductape.endpoints
    FOR EACH ROW WHEN (OLD.enabled AND NOT NEW.enabled) EXECUTE FUNCTION ductape._alert();
CREATE TRIGGER alert_failed AFTER UPDATE OF state ON ductape.jobs
    FOR EACH ROW WHEN (NEW.state = 'failed' AND OLD.state <> 'failed') EXECUTE FUNCTION ductape._alert();
CREATE TRIGGER alert_failed AFTER UPDATE OF state ON ductape.webhook_events
    FOR EACH ROW WHEN (NEW.state = 'failed' AND OLD.state <> 'failed') EXECUTE FUNCTION ductape._alert();
CREATE TRIGGER alert_failed AFTER UPDATE OF state ON ductape.workflow_runs
    FOR EACH ROW WHEN (NEW.state IN ('failed', 'rolled_back') AND OLD.state NOT IN ('failed', 'rolled_back'))
    EXECUTE FUNCTION ductape._alert();

COMMENT ON FUNCTION ductape._alert() IS
    'Trigger: NOTIFY ductape_alerts and publish the ductape.* operational message of a row that just failed for good (see docs/reference.md, Alerts).';
COMMENT ON TRIGGER alert_disabled ON ductape.endpoints IS
    'Alerts endpoint.disabled when an endpoint is disabled (410 Gone, five days failing, endpoint_disable).';
COMMENT ON TRIGGER alert_failed ON ductape.jobs IS
    'Alerts job.failed when a job fails for good (retries exhausted).';
COMMENT ON TRIGGER alert_failed ON ductape.webhook_events IS
    'Alerts webhook_event.failed when an inbound event''s handlers fail for good.';
COMMENT ON TRIGGER alert_failed ON ductape.workflow_runs IS
    'Alerts workflow.failed when a workflow run ends failed or rolled_back.';
