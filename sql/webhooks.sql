-- Inbound webhooks (docs/reference.md): verification, the listener, handlers.
CREATE EXTENSION IF NOT EXISTS pgcrypto;   -- an independent HMAC for the senders below

-- Known-answer tests from the published vectors.
-- GitHub's documented example:
SELECT ductape._signature_check('{"scheme": "github"}', 'It''s a Secret to Everybody',
         '{"X-Hub-Signature-256": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"}',
         'Hello, World!') AS github,
       ductape._signature_check('{"scheme": "github"}', 'It''s a Secret to Everybody',
         '{"X-Hub-Signature-256": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"}',
         'Hello, World?') AS body_changed,
       ductape._signature_check('{"scheme": "github"}', 'It''s a Secret to Everybody',
         '{"X-Hub-Signature-256": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e18"}',
         'Hello, World!') AS signature_changed,
       ductape._signature_check('{"scheme": "github"}', '',
         '{"X-Hub-Signature-256": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"}',
         'Hello, World!') AS empty_secret;
-- Standard Webhooks' example, checked at its own timestamp and around it:
SELECT ductape._signature_check('{"scheme": "standard"}', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
         jsonb_build_object('webhook-id', 'msg_p5jXN8AQM9LWM0D4loKWxJek', 'webhook-timestamp', '1614265330',
                            'webhook-signature', sig),
         '{"test": 2432232314}', to_timestamp(1614265330 + shift)) AS result, sig, shift
  FROM (VALUES ('v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=', 0),
               ('v2,aGVsbG8= v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=', 0),
               ('v1,Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eHF1dXg= v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=', 0),
               ('v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=', 299),
               ('v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=', 301),
               ('v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=', -301),
               ('v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OF=', 0),
               ('v1,h0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=', 0),
               ('v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=', 0)) v(sig, shift);
SELECT ductape._signature_check('{"scheme": "standard"}', '',
         '{"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330", "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}',
         '{"test": 2432232314}', to_timestamp(1614265330)) AS empty_secret,
       ductape._signature_check('{"scheme": "standard"}', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
         '{"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330", "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}',
         '{"test": 2432232315}', to_timestamp(1614265330)) AS body_changed;
-- Stripe (t=..,v1=.. over "t.body"; past timestamps only) and generic hmac,
-- signed here with pgcrypto:
SELECT ductape._signature_check('{"scheme": "stripe"}', 'whsec_stripe_test',
         jsonb_build_object('Stripe-Signature', format('t=%s,v0=00,v1=%s', t, encode(hmac(t || '.' || b, 'whsec_stripe_test', 'sha256'), 'hex'))),
         b, to_timestamp(t::bigint + shift)) AS stripe, shift
  FROM (VALUES ('1700000000', '{"id": "evt_1"}', 0), ('1700000000', '{"id": "evt_1"}', 301),
               ('1700000000', '{"id": "evt_1"}', -3600)) v(t, b, shift);
SELECT ductape._signature_check('{"scheme": "hmac", "header": "X-Sig", "encoding": "base64", "prefix": "sha256:"}',
         'k3y', jsonb_build_object('x-sig', 'sha256:' || encode(hmac('payload', 'k3y', 'sha256'), 'base64')), 'payload') AS hmac_base64,
       ductape._signature_check('{"scheme": "hmac", "header": "X-Sig"}',
         'k3y', jsonb_build_object('X-Sig', encode(hmac('payload', 'k3y', 'sha256'), 'hex')), 'payload!') AS hmac_changed,
       ductape._signature_check('{"scheme": "none"}', NULL, '{}', 'anything') AS none;

-- Webhook definitions are validated like everything else.
SELECT expect_error($$SELECT ductape.app_define('{"tag": "wh-bad", "webhooks": [
    {"tag": "a", "verify": {"scheme": "sha1"}},
    {"tag": "b", "verify": {"scheme": "hmac", "secret": "$Secret{X}"}, "id": "$Body{id}"},
    {"tag": "b", "verify": {"scheme": "stripe"}, "type": "$Event{type}"},
    {"tag": "c"}]}')$$);

-- An app that receives webhooks; its secret is in the encrypted store.
SELECT ductape.secret_set('GH_HOOK_SECRET', 'gh-hook-plaintext-8c1f');
SELECT ductape.app_define(jsonb_build_object('tag', 'hooks',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', api())),
  'webhooks', jsonb_build_array(
    jsonb_build_object('tag', 'gh', 'verify', jsonb_build_object('scheme', 'github', 'secret', '$Secret{GH_HOOK_SECRET}'),
                       'id', '$Header{X-GitHub-Delivery}', 'type', '$Header{X-GitHub-Event}'),
    jsonb_build_object('tag', 'std', 'verify', jsonb_build_object('scheme', 'standard', 'secret', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'),
                       'id', '$Event{data.id}', 'type', '$Event{type}'))));
SELECT ductape.webhook_url('hooks', 'gh') AS gh_url \gset
SELECT ductape.webhook_url('hooks', 'std') AS std_url \gset
SELECT :'gh_url' ~ '^http://127\.0\.0\.1:[0-9]+/webhooks/[0-9a-f]{64}$' AS url_shape,
       ductape.webhook_url('hooks', 'gh') = :'gh_url' AS stable,
       :'gh_url' <> :'std_url' AS per_webhook;
SELECT expect_error($$SELECT ductape.webhook_url('nope', 'gh')$$);
SELECT expect_error($$SELECT ductape.webhook_url('hooks', 'nope')$$);
SELECT expect_error($$SELECT ductape.webhook_url('hooks', 'gh', env => 'prd')$$);

-- A sender: posts body with the given headers, returns the status.
CREATE FUNCTION post(url text, body text, headers jsonb DEFAULT '{}', method text DEFAULT 'POST') RETURNS int
LANGUAGE sql AS $$
  SELECT (ductape.http(method, url, '{"Content-Type": "application/json"}'::jsonb || headers,
                       CASE WHEN method = 'POST' THEN to_jsonb(body) END, '{"retries": {"max": 0}}')->>'status')::int
$$;
CREATE FUNCTION gh_headers(body text, delivery text, event text, secret text DEFAULT 'gh-hook-plaintext-8c1f') RETURNS jsonb
LANGUAGE sql AS $$
  SELECT jsonb_build_object('X-Hub-Signature-256', 'sha256=' || encode(hmac(body, secret, 'sha256'), 'hex'),
                            'X-GitHub-Delivery', delivery, 'X-GitHub-Event', event,
                            'Authorization', 'Bearer not-for-the-table')
$$;

-- 200 only after the row committed; a repeated id is stored once.
SELECT post(:'gh_url', '{"action": "opened", "number": 1}', gh_headers('{"action": "opened", "number": 1}', 'd-1', 'pull_request')) AS first,
       post(:'gh_url', '{"action": "opened", "number": 1}', gh_headers('{"action": "opened", "number": 1}', 'd-1', 'pull_request')) AS repeated;
SELECT app, webhook, env, product, event_id, event_type, payload, body, state,
       headers->>'X-GitHub-Event' AS event_header, headers->>'Authorization' AS authorization
  FROM ductape.webhook_events ORDER BY id;
-- refused: bad signature 401, other secret 401, unknown token 404, GET 405, broken JSON 400, too big 413
SELECT post(:'gh_url', '{"number": 2}', gh_headers('{"number": 3}', 'd-2', 'push')) AS tampered,
       post(:'gh_url', '{"number": 2}', gh_headers('{"number": 2}', 'd-2', 'push', 'wrong-secret')) AS wrong_secret,
       post(:'gh_url', '{"number": 2}', '{}') AS unsigned,
       post(regexp_replace(:'gh_url', '[0-9a-f]{64}$', repeat('0', 64)), '{}') AS unknown_token,
       post(:'gh_url' || 'x', '{}') AS not_a_token,
       post(:'gh_url', NULL, '{}', 'GET') AS get,
       post(:'gh_url', '{"number": ', gh_headers('{"number": ', 'd-3', 'push')) AS broken_json,
       post(:'gh_url', repeat('x', 1100000), '{}') AS too_big;
-- a non-JSON body is kept as text
SELECT post(:'gh_url', 'a=1&b=2', gh_headers('a=1&b=2', 'd-4', 'form') || '{"Content-Type": "application/x-www-form-urlencoded"}') AS form;
SELECT event_id, event_type, payload, body FROM ductape.webhook_events WHERE event_id = 'd-4';
SELECT count(*) AS stored FROM ductape.webhook_events;

-- Standard Webhooks, signed now; the id and type come from the payload.
CREATE FUNCTION std_headers(body text, msg text) RETURNS jsonb LANGUAGE sql AS $$
  SELECT jsonb_build_object('webhook-id', msg, 'webhook-timestamp', extract(epoch FROM now())::bigint::text,
    'webhook-signature', 'v1,' || encode(hmac(convert_to(msg || '.' || extract(epoch FROM now())::bigint::text || '.' || body, 'UTF8'),
                                              decode('MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'base64'), 'sha256'), 'base64'))
$$;
SELECT post(:'std_url', b, std_headers(b, 'msg_' || n)) AS status
  FROM (VALUES (1, '{"type": "invoice.paid", "data": {"id": "in_1"}}'),
               (2, '{"type": "charge.succeeded", "data": {"id": "ch_1"}}'),
               (3, '{"type": "charge.failed", "data": {"id": "ch_2"}}')) v(n, b);
SELECT post(:'std_url', b, std_headers(b, 'msg_old') || '{"webhook-timestamp": "1614265330"}') AS stale
  FROM (VALUES ('{"type": "charge.succeeded", "data": {"id": "ch_9"}}')) v(b);
SELECT event_id, event_type FROM ductape.webhook_events WHERE webhook = 'std' ORDER BY id;

-- The secret's plaintext is in no stored event.
SELECT count(*) AS rows_with_plaintext FROM ductape.webhook_events WHERE row_to_json(webhook_events)::text LIKE '%gh-hook-plaintext%'
    OR row_to_json(webhook_events)::text LIKE '%not-for-the-table%';

CREATE FUNCTION wait_events(cond text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE ok boolean;
BEGIN
  FOR i IN 1..100 LOOP
    EXECUTE 'SELECT ' || cond || ' FROM ductape.webhook_events' INTO ok;
    IF ok THEN RETURN true; END IF;
    PERFORM pg_sleep(0.1);
  END LOOP;
  RETURN false;
END $$;
-- Events no subscription wants are parked (the worker does not scan them
-- again every second); a later subscription wakes the ones it matches.
SELECT wait_events($$bool_and(next_attempt_at = 'infinity' AND state = 'received')$$) AS all_parked;

-- Handlers run in the worker, as the subscribing role, with retries.
CREATE TABLE public.hook_log (event_id text, event_type text, who name);
CREATE ROLE dt_hooks;
SELECT ductape.grant_admin('dt_hooks');
GRANT INSERT ON public.hook_log TO dt_hooks;
CREATE FUNCTION public.on_charge(event jsonb) RETURNS void LANGUAGE sql
  AS $$ INSERT INTO public.hook_log VALUES (event->>'event_id', event->>'event_type', current_user) $$;
CREATE FUNCTION public.on_failed_charge(event jsonb) RETURNS void LANGUAGE plpgsql
  AS $$ BEGIN RAISE EXCEPTION 'cannot handle %', event->>'event_id'; END $$;
ALTER FUNCTION public.on_charge(jsonb) OWNER TO dt_hooks;
SELECT expect_error($$SELECT ductape.webhook_subscribe('hooks', 'std', 'charge.*', 'now()'::regprocedure)$$);
SELECT expect_error($$SELECT ductape.webhook_subscribe('hooks', 'std', '', 'public.on_charge(jsonb)')$$);
SELECT expect_error($$SELECT ductape.webhook_subscribe('hooks', 'nope', '*', 'public.on_charge(jsonb)')$$);
SET ROLE dt_hooks;
SELECT ductape.webhook_subscribe('hooks', 'std', 'charge.*', 'public.on_charge(jsonb)') > 0 AS subscribed;
RESET ROLE;
SELECT ductape.webhook_subscribe('hooks', 'std', 'charge.failed', 'public.on_failed_charge(jsonb)') > 0 AS subscribed;
SELECT wait_events($$bool_and(state = 'handled') FILTER (WHERE event_id = 'ch_1') AND bool_and(attempts >= 1) FILTER (WHERE event_id = 'ch_2')$$) AS done;
SELECT * FROM public.hook_log ORDER BY event_id;
SELECT event_id, state, attempts, error FROM ductape.webhook_events WHERE webhook = 'std' ORDER BY id;
-- the failing event is retried (the handler that succeeded is not run again) and fails for good after 8 rounds
UPDATE ductape.webhook_events SET attempts = 7, next_attempt_at = now() WHERE event_id = 'ch_2';
SELECT wait_events($$bool_and(state = 'failed') FILTER (WHERE event_id = 'ch_2')$$) AS failed;
SELECT event_id, state, attempts, error FROM ductape.webhook_events WHERE event_id = 'ch_2';
SELECT count(*) AS on_charge_runs FROM public.hook_log WHERE event_id = 'ch_2';

-- 503 when the batch cannot commit; the sender retries later.
CREATE FUNCTION public.refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'disk full (simulated)'; END $$;
CREATE TRIGGER refuse BEFORE INSERT ON ductape.webhook_events FOR EACH ROW EXECUTE FUNCTION public.refuse();
SELECT post(:'gh_url', '{"n": 5}', gh_headers('{"n": 5}', 'd-5', 'push')) AS cannot_commit;
DROP TRIGGER refuse ON ductape.webhook_events;
SELECT post(:'gh_url', '{"n": 5}', gh_headers('{"n": 5}', 'd-5', 'push')) AS after_recovery;

DROP TABLE public.hook_log;
DROP FUNCTION public.on_charge(jsonb), public.on_failed_charge(jsonb), public.refuse();
DELETE FROM ductape.webhook_subscriptions;
DROP OWNED BY dt_hooks;
DROP ROLE dt_hooks;
