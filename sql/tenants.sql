-- Tenants (docs/reference.md, "Tenants"): an endpoint created for a tenant
-- receives only the messages published for it; one without a tenant only
-- those published without one.  endpoint_update, rate_limit.

-- Wait until cond holds over ductape.outbox (up to 20 s).
CREATE FUNCTION tn_wait(cond text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE ok boolean;
BEGIN
  FOR i IN 1..400 LOOP
    EXECUTE 'SELECT ' || cond || ' FROM ductape.outbox' INTO ok;
    IF ok THEN RETURN true; END IF;
    PERFORM pg_sleep(0.05);
  END LOOP;
  RETURN false;
END $$;

-- Bad tenants and rate limits are refused, by endpoint_create and by publish,
-- before anything is stored.
SELECT count(*) AS endpoints_before FROM ductape.endpoints \gset
SELECT count(*) AS messages_before FROM ductape.messages \gset
SELECT expect_error(format('SELECT ductape.endpoint_create(%L, tenant => %L)', api() || '/echo/tn', t))
  FROM unnest(ARRAY['', repeat('a', 201), repeat('é', 201), E'acme\n', E'ac\tme', 'acme' || chr(127),
                    'acme' || chr(133), chr(1)]) t;
SELECT expect_error(format('SELECT ductape.endpoint_create(%L, rate_limit => %s)', api() || '/echo/tn', r))
  FROM unnest(ARRAY[0, -1, 100001]) r;
SELECT expect_error(format('SELECT ductape.publish(%L, %L, tenant => %L)', 'order.created', '{}', t))
  FROM unnest(ARRAY['', repeat('a', 201), repeat('é', 201), E'acme\n', 'acme' || chr(133)]) t;
SELECT count(*) - :endpoints_before AS endpoints_made FROM ductape.endpoints;
SELECT count(*) - :messages_before AS messages_made FROM ductape.messages;

-- Endpoints: two of tenant acme, one of globex, one without a tenant; a
-- tenant is counted in characters (200 two-byte ones are fine).
SELECT ductape.endpoint_create(api() || '/echo/tn-a', '{order.*}', headers => '{"X-Test-Key": "tn-a"}',
                               tenant => 'acme', rate_limit => 20) AS ep_a \gset
SELECT ductape.endpoint_create(api() || '/echo/tn-a2', headers => '{"X-Test-Key": "tn-a2"}',
                               tenant => 'acme') AS ep_a2 \gset
SELECT ductape.endpoint_create(api() || '/echo/tn-b', '{order.*}', headers => '{"X-Test-Key": "tn-b"}',
                               tenant => 'globex') AS ep_b \gset
SELECT ductape.endpoint_create(api() || '/echo/tn-none', '{order.*}', headers => '{"X-Test-Key": "tn-none"}') AS ep_none \gset
SELECT ductape.endpoint_create(api() || '/echo/tn-long', '{order.*}', tenant => repeat('é', 200)) AS ep_long \gset
SELECT id = :ep_a AS a, id = :ep_b AS b, id = :ep_none AS none, tenant, rate_limit, updated_by, updated_at
  FROM ductape.endpoints WHERE id IN (:ep_a, :ep_a2, :ep_b, :ep_none) ORDER BY id;
SELECT length(tenant) AS chars, octet_length(tenant) AS bytes FROM ductape.endpoints WHERE id = :ep_long;

-- Each message reaches its own tenant's endpoints only.
SELECT ductape.publish('order.created', '{"n": "a"}', tenant => 'acme') AS m_a,
       ductape.publish('order.created', '{"n": "b"}', tenant => 'globex') AS m_b,
       ductape.publish('order.created', '{"n": "none"}') AS m_none,
       ductape.publish('order.created', '{"n": "nobody"}', tenant => 'initech') AS m_nobody,
       ductape.publish('invoice.paid', '{"n": "a2"}', tenant => 'acme') AS m_a_invoice,
       ductape.publish('order.created', '{"n": "long"}', tenant => repeat('é', 200)) AS m_long \gset
SELECT CASE m.id WHEN :'m_a' THEN 'acme order' WHEN :'m_b' THEN 'globex order' WHEN :'m_none' THEN 'no tenant'
                 WHEN :'m_nobody' THEN 'initech' WHEN :'m_a_invoice' THEN 'acme invoice' ELSE 'long' END AS message,
       left(m.tenant, 10) AS tenant,
       array_agg(CASE o.endpoint_id WHEN :ep_a THEN 'a' WHEN :ep_a2 THEN 'a2' WHEN :ep_b THEN 'b'
                                    WHEN :ep_none THEN 'none' WHEN :ep_long THEN 'long' ELSE 'other' END
                 ORDER BY o.endpoint_id) FILTER (WHERE o.id IS NOT NULL) AS delivered_to
  FROM ductape.messages m LEFT JOIN ductape.outbox o ON o.message_id = m.id
 WHERE m.id IN (:'m_a', :'m_b', :'m_none', :'m_nobody', :'m_a_invoice', :'m_long')
 GROUP BY m.id, m.tenant ORDER BY 1;
-- no outbox row pairs a message with an endpoint of another tenant
SELECT count(*) AS cross_tenant_rows
  FROM ductape.outbox o JOIN ductape.messages m ON m.id = o.message_id JOIN ductape.endpoints e ON e.id = o.endpoint_id
 WHERE m.tenant IS DISTINCT FROM e.tenant;
SELECT tn_wait(format($$count(*) FILTER (WHERE state = 'succeeded' AND endpoint_id IN (%s, %s, %s, %s, %s)) = 6$$,
                      :ep_a, :ep_a2, :ep_b, :ep_none, :ep_long)) AS delivered;
SELECT api_count('tn-a') AS a, api_count('tn-a2') AS a2, api_count('tn-b') AS b, api_count('tn-none') AS none;

-- An idempotency key is the role's: the same key and tenant return the same
-- message; the same key for another tenant (or none) is refused.
SELECT ductape.publish('order.paid', '{"n": 1}', 'tn-key-1', 'acme') AS k1 \gset
SELECT ductape.publish('order.paid', '{"n": 1}', 'tn-key-1', 'acme') = :'k1' AS same_message;
SELECT regexp_replace(expect_error($$SELECT ductape.publish('order.paid', '{"n": 1}', 'tn-key-1', 'globex')$$), 'msg_[0-9a-f]{32}', 'msg_X');
SELECT regexp_replace(expect_error($$SELECT ductape.publish('order.paid', '{"n": 1}', 'tn-key-1')$$), 'msg_[0-9a-f]{32}', 'msg_X');
SELECT ductape.publish('order.paid', '{"n": 2}', 'tn-key-2') AS k2 \gset
SELECT regexp_replace(expect_error($$SELECT ductape.publish('order.paid', '{"n": 2}', 'tn-key-2', 'acme')$$), 'msg_[0-9a-f]{32}', 'msg_X');
SELECT ductape.publish('order.paid', '{"n": 2}', 'tn-key-2') = :'k2' AS same_message_no_tenant;
SELECT count(*) AS keyed_messages, count(DISTINCT tenant) AS tenants FROM ductape.messages WHERE idempotency_key LIKE 'tn-key-%';

-- message_retry stays within the tenant: to a named endpoint of another
-- tenant it is refused (22023); to all, only the message's tenant's.
SELECT regexp_replace(expect_error(format('SELECT ductape.message_retry(%L, %s)', :'m_a', :ep_b)), 'endpoint \d+|msg_[0-9a-f]{32}', 'X', 'g');
SELECT regexp_replace(expect_error(format('SELECT ductape.message_retry(%L, %s)', :'m_a', :ep_none)), 'endpoint \d+|msg_[0-9a-f]{32}', 'X', 'g');
SELECT regexp_replace(expect_error(format('SELECT ductape.message_retry(%L, %s)', :'m_none', :ep_a)), 'endpoint \d+|msg_[0-9a-f]{32}', 'X', 'g');
SELECT ductape.message_retry(:'m_a') AS to_acme_endpoints, ductape.message_retry(:'m_a', :ep_a) AS to_a_again;
SELECT ductape.message_retry(:'m_nobody') AS to_initech_endpoints;
SELECT array_agg(CASE o.endpoint_id WHEN :ep_a THEN 'a' WHEN :ep_a2 THEN 'a2' ELSE 'other' END ORDER BY o.endpoint_id) AS retried_to
  FROM ductape.outbox o WHERE o.message_id = :'m_a';
SELECT tn_wait(format($$bool_and(state = 'succeeded') FILTER (WHERE message_id = %L)$$, :'m_a')) AS delivered_again;

-- endpoint_update: NULL leaves a field as it is; each field changes alone;
-- description '' clears it; rate_limit 0 removes the limit; headers are
-- replaced as a whole.  The tenant cannot change.
CREATE ROLE dt_tn_admin;
SELECT ductape.grant_admin('dt_tn_admin');
SET ROLE dt_tn_admin;
SELECT ductape.endpoint_update(:ep_a);
SELECT url LIKE '%/echo/tn-a' AS url_kept, event_types, description, headers, tenant, rate_limit, updated_by,
       updated_at IS NOT NULL AS updated_at
  FROM ductape.endpoints WHERE id = :ep_a;
SELECT ductape.endpoint_update(:ep_a, url => api() || '/echo/tn-a-moved');
SELECT ductape.endpoint_update(:ep_a, event_types => '{order.*,refund.*}');
SELECT ductape.endpoint_update(:ep_a, description => 'Acme Corp');
SELECT ductape.endpoint_update(:ep_a, headers => '{"X-Test-Key": "tn-a", "X-Tenant": "acme"}');
SELECT ductape.endpoint_update(:ep_a, rate_limit => 100000);
SELECT url LIKE '%/echo/tn-a-moved' AS url_moved, event_types, description, headers, tenant, rate_limit
  FROM ductape.endpoints WHERE id = :ep_a;
SELECT ductape.endpoint_update(:ep_a, description => '', rate_limit => 0, headers => '{}');
SELECT description, headers, rate_limit, tenant FROM ductape.endpoints WHERE id = :ep_a;
-- errors: the same checks as endpoint_create, on the endpoint as it would be
SELECT expect_error($$SELECT ductape.endpoint_update(999999, description => 'x')$$);
SELECT expect_error(format('SELECT ductape.endpoint_update(%s, url => %L)', :ep_a, 'not a url'));
SELECT expect_error(format('SELECT ductape.endpoint_update(%s, url => %L)', :ep_a, 'http://10.1.2.3/hook'));
SELECT expect_error(format('SELECT ductape.endpoint_update(%s, event_types => %L)', :ep_a, '{}'));
SELECT expect_error(format('SELECT ductape.endpoint_update(%s, event_types => %L)', :ep_a, '{""}'));
SELECT expect_error(format('SELECT ductape.endpoint_update(%s, headers => %L)', :ep_a, '{"webhook-signature": "v1,forged"}'));
SELECT expect_error(format('SELECT ductape.endpoint_update(%s, headers => %L)', :ep_a, '{"X-A": "a\r\nX-B: b"}'));
SELECT expect_error(format('SELECT ductape.endpoint_update(%s, headers => %L)', :ep_a, '{"X-A": 1}'));
SELECT expect_error(format('SELECT ductape.endpoint_update(%s, headers => %L)', :ep_a, '[]'));
SELECT expect_error(format('SELECT ductape.endpoint_update(%s, rate_limit => %s)', :ep_a, r)) FROM unnest(ARRAY[-1, 100001]) r;
SELECT expect_error(format('SELECT ductape.endpoint_update(%s, tenant => %L)', :ep_a, 'globex'));
-- nothing of the refused changes was stored
SELECT url LIKE '%/echo/tn-a-moved' AS url, event_types, headers, rate_limit, tenant FROM ductape.endpoints WHERE id = :ep_a;
-- an admin cannot write the table itself (endpoint_update checks what it is given)
SELECT expect_error(format($$UPDATE ductape.endpoints SET headers = '{"webhook-signature": "v1,forged"}' WHERE id = %s$$, :ep_a));
SELECT expect_error(format($$UPDATE ductape.endpoints SET url = 'http://10.1.2.3/' WHERE id = %s$$, :ep_a));
SELECT expect_error(format($$UPDATE ductape.endpoints SET tenant = 'globex' WHERE id = %s$$, :ep_a));
RESET ROLE;
-- and where a grant of UPDATE comes back (a restored 0.2.0 dump carries
-- one), row security leaves it nothing to update
GRANT UPDATE (url, headers) ON ductape.endpoints TO dt_tn_admin;
SET ROLE dt_tn_admin;
UPDATE ductape.endpoints SET headers = '{"webhook-signature": "v1,forged"}' WHERE id = :ep_a;
RESET ROLE;
REVOKE UPDATE (url, headers) ON ductape.endpoints FROM dt_tn_admin;
SELECT headers FROM ductape.endpoints WHERE id = :ep_a;
SELECT has_column_privilege('dt_tn_admin', 'ductape.endpoints', 'url', 'UPDATE') AS admin_updates_url,
       has_function_privilege('dt_tn_admin', 'ductape.endpoint_update(bigint, text, text[], text, jsonb, integer)', 'EXECUTE') AS admin_endpoint_update;
-- the endpoint keeps its tenant's messages after the update
SELECT ductape.endpoint_update(:ep_a, url => api() || '/echo/tn-a', headers => '{"X-Test-Key": "tn-a"}');
SELECT ductape.publish('refund.issued', '{"n": 1}', tenant => 'acme') AS m_refund \gset
SELECT tn_wait(format($$bool_and(state = 'succeeded') FILTER (WHERE message_id = %L)$$, :'m_refund')) AS delivered;
SELECT array_agg(CASE o.endpoint_id WHEN :ep_a THEN 'a' WHEN :ep_a2 THEN 'a2' ELSE 'other' END ORDER BY o.endpoint_id) AS refund_to
  FROM ductape.outbox o WHERE o.message_id = :'m_refund';

-- ductape's operational messages go to the endpoints without a tenant only
-- (the team's own), and have no tenant.
SELECT ductape.endpoint_create(api() || '/echo/tn-ops', '{ductape.endpoint.disabled}') AS ep_ops \gset
SELECT ductape.endpoint_create(api() || '/echo/tn-ops-acme', '{ductape.*}', tenant => 'acme') AS ep_ops_acme \gset
SELECT ductape.endpoint_disable(:ep_long);
SELECT m.tenant, m.payload->'object'->>'id' = :'ep_long' AS about_the_endpoint,
       array_agg(CASE o.endpoint_id WHEN :ep_ops THEN 'ops' WHEN :ep_ops_acme THEN 'ops-acme' ELSE 'other' END) AS sent_to
  FROM ductape.messages m JOIN ductape.outbox o ON o.message_id = m.id
 WHERE m.event_type = 'ductape.endpoint.disabled' AND m.payload->'object'->>'id' = :'ep_long'
 GROUP BY m.id, m.tenant;

-- Usage roles: publish for a tenant, and see their own messages only.
CREATE ROLE dt_tn_app1;
CREATE ROLE dt_tn_app2;
SELECT ductape.grant_usage('dt_tn_app1'), ductape.grant_usage('dt_tn_app2');
SET ROLE dt_tn_app1;
SELECT ductape.publish('order.created', '{"by": 1}', tenant => 'acme') AS m_app1 \gset
SELECT expect_error($$SELECT ductape.publish('order.created', '{}', tenant => '')$$);
SELECT expect_error($$SELECT ductape.endpoint_update(1, description => 'x')$$);
RESET ROLE;
SET ROLE dt_tn_app2;
SELECT ductape.publish('order.created', '{"by": 2}', tenant => 'acme') AS m_app2 \gset
SELECT id = :'m_app2' AS own, tenant, role, payload FROM ductape.messages;
SELECT count(*) AS own_outbox_rows, bool_and(role = 'dt_tn_app2') AS all_own FROM ductape.outbox;
RESET ROLE;
SET ROLE dt_tn_app1;
SELECT id = :'m_app1' AS own, tenant, role, payload FROM ductape.messages;
RESET ROLE;
SELECT tn_wait(format($$bool_and(state = 'succeeded') FILTER (WHERE message_id IN (%L, %L))$$, :'m_app1', :'m_app2')) AS delivered;

-- Clean up: later files count deliveries of their own.
SELECT ductape.endpoint_delete(id) FROM ductape.endpoints WHERE id IN (:ep_a, :ep_a2, :ep_b, :ep_none, :ep_long, :ep_ops, :ep_ops_acme);
DROP OWNED BY dt_tn_admin, dt_tn_app1, dt_tn_app2;
DROP ROLE dt_tn_admin, dt_tn_app1, dt_tn_app2;
DROP FUNCTION tn_wait(text);
