-- Outbound events (docs/reference.md): endpoints, publish, signed delivery, retries.
CREATE EXTENSION IF NOT EXISTS pgcrypto;   -- an independent HMAC to check our signatures

-- Known answer: the Standard Webhooks published example, signed our way.
SELECT ductape._signature_standard('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_p5jXN8AQM9LWM0D4loKWxJek',
                                   1614265330, '{"test": 2432232314}') AS standard_vector;

-- Endpoints: bad input is refused before anything is stored.
SELECT expect_error($$SELECT ductape.endpoint_create('not a url')$$);
SELECT expect_error($$SELECT ductape.endpoint_create('ftp://127.0.0.1/x')$$);
SELECT expect_error($$SELECT ductape.endpoint_create('http://10.1.2.3/hook')$$);
SELECT expect_error($$SELECT ductape.endpoint_create(NULL)$$);
SELECT expect_error(format('SELECT ductape.endpoint_create(%L, %L)', api() || '/echo', '{}'));
SELECT expect_error(format('SELECT ductape.endpoint_create(%L, %L)', api() || '/echo', '{""}'));
SELECT expect_error(format('SELECT ductape.endpoint_create(%L, headers => %L)', api() || '/echo', '{"X-A": 1}'));
SELECT expect_error(format('SELECT ductape.endpoint_create(%L, headers => %L)', api() || '/echo', '{"X-A": "a\r\nX-B: b"}'));
SELECT expect_error(format('SELECT ductape.endpoint_create(%L, headers => %L)', api() || '/echo', '{"webhook-id": "mine"}'));
SELECT expect_error(format('SELECT ductape.endpoint_create(%L, headers => %L)', api() || '/echo', '[]'));
SELECT expect_error(format('SELECT ductape.endpoint_create(%L, secret => %L)', api() || '/echo', 'plain-secret'));
SELECT expect_error(format('SELECT ductape.endpoint_create(%L, secret => %L)', api() || '/echo', 'whsec_c2hvcnQ='));
SELECT expect_error($$SELECT ductape.endpoint_secret(999)$$);
SELECT expect_error($$SELECT ductape.endpoint_disable(999)$$);
SELECT count(*) AS endpoints_after_errors FROM ductape.endpoints;

-- Three endpoints on the test server: invoices, everything, and charges only.
SELECT ductape.endpoint_create(api() || '/echo/invoices', '{invoice.*}', description => 'billing',
                               headers => '{"X-Test-Key": "ev-invoices"}') AS ep_invoices \gset
SELECT ductape.endpoint_create(api() || '/echo/all', secret => 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
                               headers => '{"X-Test-Key": "ev-all"}') AS ep_all \gset
SELECT ductape.endpoint_create(api() || '/echo/charges', '{charge.succeeded}',
                               headers => '{"X-Test-Key": "ev-charges"}') AS ep_charges \gset
SELECT ductape.endpoint_secret(:ep_invoices) ~ '^whsec_[A-Za-z0-9+/]{32}$' AS generated_secret,
       length(decode(substr(ductape.endpoint_secret(:ep_invoices), 7), 'base64')) AS secret_bytes,
       ductape.endpoint_secret(:ep_all) AS given_secret,
       ductape.endpoint_secret(:ep_invoices) <> ductape.endpoint_secret(:ep_charges) AS distinct_secrets;
-- the secret is stored encrypted: its plaintext is nowhere in the table
SELECT count(*) AS rows_with_plaintext FROM ductape.endpoints e
 WHERE e::text LIKE '%MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw%'
    OR encode(e.secret, 'escape') LIKE '%MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw%';

-- Wait until cond holds over ductape.outbox (up to 20 s).
CREATE FUNCTION wait_outbox(cond text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE ok boolean;
BEGIN
  FOR i IN 1..400 LOOP
    EXECUTE 'SELECT ' || cond || ' FROM ductape.outbox' INTO ok;
    IF ok THEN RETURN true; END IF;
    PERFORM pg_sleep(0.05);
  END LOOP;
  RETURN false;
END $$;

-- Publish is transactional: rolled back, nothing is stored or sent.
BEGIN;
SELECT ductape.publish('invoice.paid', '{"invoice": "in_rolled_back"}') ~ '^msg_[0-9a-f]{32}$' AS msg_shape;
ROLLBACK;
SELECT pg_sleep(0.5);
SELECT count(*) AS messages, (SELECT count(*) FROM ductape.outbox) AS outbox,
       api_count('ev-invoices') AS invoices_received FROM ductape.messages;

-- Committed: fan-out to every enabled endpoint whose types match.
SELECT ductape.publish('invoice.paid', '{"invoice": "in_1", "amount": 1000}') AS msg1 \gset
SELECT wait_outbox($$count(*) FILTER (WHERE state = 'succeeded') = 2$$) AS delivered;
SELECT e.description, o.state, o.attempts, o.last_status
  FROM ductape.outbox o JOIN ductape.endpoints e ON e.id = o.endpoint_id
 WHERE o.message_id = :'msg1' ORDER BY o.endpoint_id;
SELECT api_count('ev-invoices') AS invoices, api_count('ev-all') AS everything, api_count('ev-charges') AS charges;

-- What the receiver got: Standard Webhooks headers, the payload, and a
-- signature that an independent HMAC (pgcrypto) verifies, with the secret
-- the customer was given.
CREATE VIEW received AS
SELECT d.message_id, d.endpoint_id, d.attempt, d.status, r->'headers' AS h, r->>'body' AS body, r->>'path' AS path
  FROM ductape.deliveries d, LATERAL (SELECT d.response::jsonb) AS x(r)
 WHERE d.status = 200;
CREATE FUNCTION expected_sig(secret text, h jsonb, body text) RETURNS text LANGUAGE sql AS $$
  SELECT 'v1,' || encode(hmac(convert_to((h->>'webhook-id') || '.' || (h->>'webhook-timestamp') || '.' || body, 'UTF8'),
                              decode(substr(secret, 7), 'base64'), 'sha256'), 'base64')
$$;
SELECT path, h->>'webhook-id' = message_id AS id_header, h->>'content-type' AS content_type,
       abs((h->>'webhook-timestamp')::bigint - extract(epoch FROM now())) < 30 AS fresh_timestamp,
       body::jsonb = '{"invoice": "in_1", "amount": 1000}' AS body_is_payload,
       h->>'webhook-signature' = expected_sig(ductape.endpoint_secret(endpoint_id), h, body) AS signature_verifies,
       h->>'x-test-key' AS endpoint_header
  FROM received WHERE message_id = :'msg1' ORDER BY endpoint_id;

-- An idempotency key publishes once.
SELECT ductape.publish('charge.succeeded', '{"charge": "ch_1"}', idempotency_key => 'order-7') AS k1 \gset
SELECT ductape.publish('charge.succeeded', '{"charge": "ch_1"}', idempotency_key => 'order-7') = :'k1' AS same_id,
       (SELECT count(*) FROM ductape.messages WHERE idempotency_key = 'order-7') AS messages;
SELECT wait_outbox(format($$count(*) FILTER (WHERE state = 'succeeded' AND message_id = %L) = 2$$, :'k1')) AS delivered;
SELECT expect_error($$SELECT ductape.publish('', '{}')$$);
SELECT expect_error($$SELECT ductape.publish('x.y', NULL)$$);
SELECT expect_error($$SELECT ductape.publish('x.y', '{}', '')$$);

-- After a rotation both signatures are sent (24 hours); each verifies.
SELECT ductape.endpoint_secret(:ep_all) AS old_secret \gset
SELECT ductape.endpoint_rotate_secret(:ep_all) AS new_secret \gset
SELECT :'new_secret' <> :'old_secret' AS rotated, ductape.endpoint_secret(:ep_all) = :'new_secret' AS current;
SELECT ductape.publish('user.created', '{"user": 1}') AS msg2 \gset
SELECT wait_outbox(format($$bool_and(state = 'succeeded') FILTER (WHERE message_id = %L)$$, :'msg2')) AS delivered;
SELECT array_length(string_to_array(h->>'webhook-signature', ' '), 1) AS signatures,
       split_part(h->>'webhook-signature', ' ', 1) = expected_sig(:'new_secret', h, body) AS new_verifies,
       split_part(h->>'webhook-signature', ' ', 2) = expected_sig(:'old_secret', h, body) AS old_verifies
  FROM received WHERE message_id = :'msg2';
UPDATE ductape.endpoints SET rotated_at = now() - interval '25 hours' WHERE id = :ep_all;
SELECT ductape.publish('user.created', '{"user": 2}') AS msg3 \gset
SELECT wait_outbox(format($$bool_and(state = 'succeeded') FILTER (WHERE message_id = %L)$$, :'msg3')) AS delivered;
SELECT h->>'webhook-signature' = expected_sig(:'new_secret', h, body) AS only_new_after_24h
  FROM received WHERE message_id = :'msg3';

-- A disabled endpoint is not sent what is published meanwhile; message_retry
-- sends it once the endpoint is enabled again.
SELECT ductape.endpoint_disable(:ep_charges);
SELECT enabled, disabled_reason FROM ductape.endpoints WHERE id = :ep_charges;
SELECT ductape.publish('charge.succeeded', '{"charge": "ch_2"}') AS msg4 \gset
SELECT count(*) AS to_disabled FROM ductape.outbox WHERE message_id = :'msg4' AND endpoint_id = :ep_charges;
SELECT ductape.endpoint_enable(:ep_charges);
SELECT ductape.message_retry(:'msg4', :ep_charges) AS sent_again;
SELECT wait_outbox(format($$count(*) FILTER (WHERE state = 'succeeded' AND message_id = %L) = 2$$, :'msg4')) AS delivered;
SELECT ductape.endpoint_disable(:ep_invoices), ductape.endpoint_disable(:ep_all), ductape.endpoint_disable(:ep_charges);

-- Failures: 3xx is a failure (not followed), retried on the schedule
-- (5 s ±20% after the first attempt); Retry-After asks for longer;
-- 410 disables the endpoint.
SELECT ductape.endpoint_create(api() || '/redirect?to=' || api() || '/echo', '{fail.redirect}') AS ep_redirect \gset
SELECT ductape.endpoint_create(api() || '/status/503?retry_after=120', '{fail.later}') AS ep_later \gset
SELECT ductape.endpoint_create(api() || '/status/410', '{fail.gone}') AS ep_gone \gset
SELECT ductape.publish('fail.redirect', '{}') AS m_redirect, ductape.publish('fail.later', '{}') AS m_later,
       ductape.publish('fail.gone', '{}') AS m_gone \gset
SELECT wait_outbox($$count(*) FILTER (WHERE attempts = 1 AND state <> 'delivering' AND last_status IN (302, 503, 410)) = 3$$) AS attempted;
SELECT o.endpoint_id = :ep_redirect AS redirect, o.state, o.last_status, o.last_error,
       extract(epoch FROM o.next_attempt_at - d.at) BETWEEN 3.5 AND 8 AS five_seconds_jittered,
       extract(epoch FROM o.next_attempt_at - d.at) BETWEEN 119 AND 122 AS retry_after_120
  FROM ductape.outbox o JOIN ductape.deliveries d ON d.message_id = o.message_id AND d.endpoint_id = o.endpoint_id
 WHERE o.message_id IN (:'m_redirect', :'m_later', :'m_gone') ORDER BY o.endpoint_id;
SELECT id = :ep_gone AS gone, enabled, disabled_reason, failing_since IS NOT NULL AS failing
  FROM ductape.endpoints WHERE id IN (:ep_redirect, :ep_later, :ep_gone) ORDER BY id;
SELECT ductape.endpoint_disable(:ep_redirect), ductape.endpoint_disable(:ep_later);

-- A failed attempt is retried after about 5 s and then succeeds; the
-- failing streak ends with the success.
SELECT ductape.endpoint_create(api() || '/flaky/ev-flaky/1', '{flaky.*}') AS ep_flaky \gset
SELECT ductape.publish('flaky.event', '{"n": 1}') AS m_flaky \gset
SELECT wait_outbox(format($$bool_and(state = 'succeeded') FILTER (WHERE message_id = %L)$$, :'m_flaky')) AS delivered;
SELECT attempt, status, error, succeeded, next_attempt_at IS NOT NULL AS retry_scheduled
  FROM ductape.deliveries WHERE message_id = :'m_flaky' ORDER BY attempt;
SELECT (SELECT at FROM ductape.deliveries WHERE message_id = :'m_flaky' AND attempt = 2)
     - (SELECT at FROM ductape.deliveries WHERE message_id = :'m_flaky' AND attempt = 1) BETWEEN '4 s' AND '7 s' AS waited_about_5s,
       (SELECT failing_since IS NULL FROM ductape.endpoints WHERE id = :ep_flaky) AS healthy_again;
SELECT ductape.endpoint_disable(:ep_flaky);

-- The last attempt fails for good; an endpoint failing for 5 days is disabled.
SELECT ductape.endpoint_create(api() || '/status/500', '{fail.hard}') AS ep_hard \gset
SELECT ductape.publish('fail.hard', '{}') AS m_hard \gset
SELECT wait_outbox(format($$bool_and(attempts = 1 AND state = 'pending') FILTER (WHERE message_id = %L)$$, :'m_hard')) AS first_failed;
UPDATE ductape.outbox SET attempts = 7, next_attempt_at = now() WHERE message_id = :'m_hard';
UPDATE ductape.endpoints SET failing_since = now() - interval '6 days' WHERE id = :ep_hard;
SELECT ductape._wake_worker();
SELECT wait_outbox(format($$bool_and(state = 'failed') FILTER (WHERE message_id = %L)$$, :'m_hard')) AS failed;
SELECT state, attempts, last_status, last_error FROM ductape.outbox WHERE message_id = :'m_hard';
SELECT enabled, disabled_reason LIKE 'failing continuously since %' AS five_days FROM ductape.endpoints WHERE id = :ep_hard;

-- message_retry: a fresh schedule, to the given endpoint or to all that match.
UPDATE ductape.endpoints SET url = api() || '/echo/fixed', enabled = true, failing_since = NULL WHERE id = :ep_hard;
SELECT ductape.message_retry(:'m_hard', :ep_hard) AS requeued;
SELECT wait_outbox(format($$bool_and(state = 'succeeded') FILTER (WHERE message_id = %L)$$, :'m_hard')) AS delivered;
SELECT count(*) AS attempts_kept FROM ductape.deliveries WHERE message_id = :'m_hard';
SELECT ductape.message_retry(:'m_hard') AS to_all_matching, ductape.message_retry(:'m_hard') AS again_while_pending;
SELECT expect_error($$SELECT ductape.message_retry('msg_nope')$$);
SELECT expect_error(format('SELECT ductape.message_retry(%L, 999)', :'m_hard'));
SELECT wait_outbox(format($$bool_and(state = 'succeeded') FILTER (WHERE message_id = %L)$$, :'m_hard')) AS settled;
SELECT ductape.endpoint_disable(:ep_hard);

-- Isolation: an endpoint that never answers holds at most a quarter of
-- ductape.max_concurrency (64 of 256); deliveries to a healthy endpoint go
-- through meanwhile.
SELECT ductape.endpoint_create(api() || '/hang', '{slow.*}') AS ep_slow \gset
SELECT ductape.endpoint_create(api() || '/echo/fast', '{fast.*}') AS ep_fast \gset
SELECT count(ductape.publish('slow.event', jsonb_build_object('n', i))) AS published_slow FROM generate_series(1, 100) i;
SELECT wait_outbox(format($$count(*) FILTER (WHERE state = 'delivering' AND endpoint_id = %s) = 64$$, :ep_slow)) AS slow_in_flight;
SELECT clock_timestamp() AS t0 \gset
SELECT count(ductape.publish('fast.event', jsonb_build_object('n', i))) AS published_fast FROM generate_series(1, 50) i;
SELECT wait_outbox(format($$count(*) FILTER (WHERE state = 'succeeded' AND endpoint_id = %s) = 50$$, :ep_fast)) AS fast_delivered,
       clock_timestamp() - :'t0' < interval '3 s' AS within_3s;
SELECT state, count(*) FROM ductape.outbox WHERE endpoint_id = :ep_slow GROUP BY state ORDER BY state;
SELECT ductape.endpoint_disable(:ep_slow), ductape.endpoint_disable(:ep_fast);

-- Privileges: a usage role publishes and sees its own messages and
-- deliveries; it cannot manage endpoints or read their secrets.
CREATE ROLE dt_publisher;
SELECT ductape.grant_usage('dt_publisher');
SET ROLE dt_publisher;
SELECT ductape.publish('nobody.listens', '{}') ~ '^msg_' AS published;
SELECT count(*) AS own_messages FROM ductape.messages;
SELECT expect_error($$SELECT ductape.endpoint_create('http://127.0.0.1:1/x')$$);
SELECT expect_error($$SELECT ductape.endpoint_secret(1)$$);
SELECT expect_error($$SELECT * FROM ductape.endpoints$$);
RESET ROLE;
DROP OWNED BY dt_publisher;
DROP ROLE dt_publisher;
