-- Removing things (docs/reference.md, "Removing things"): what a function
-- makes, a function changes and removes.  Unknown objects are 42704, bad
-- tags 22023; dropping what something still uses is 2BP01 with the
-- dependents in the detail, unless cascade => true, which drops or cancels
-- them (with a NOTICE naming them).  Pending work is shown after each drop.

-- The SQLSTATE, message, detail and hint of the error sql raises.
CREATE FUNCTION public.expect_error_hint(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    st text; msg text; det text; hint text;
BEGIN
    EXECUTE sql;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL,
                            hint = PG_EXCEPTION_HINT;
    RETURN st || ': ' || msg || coalesce(E'\nDETAIL: ' || nullif(det, ''), '')
              || coalesce(E'\nHINT: ' || nullif(hint, ''), '');
END
$$;
-- Wait (up to 10 s) until a query returns true (lc_wait_events: cond over
-- ductape.webhook_events).
CREATE FUNCTION public.lc_wait(query text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE ok boolean;
BEGIN
  FOR i IN 1..100 LOOP
    EXECUTE query INTO ok;
    IF ok THEN RETURN true; END IF;
    PERFORM pg_sleep(0.1);
  END LOOP;
  RETURN false;
END $$;
CREATE FUNCTION public.lc_wait_events(cond text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE ok boolean;
BEGIN
  FOR i IN 1..100 LOOP
    EXECUTE 'SELECT ' || cond || ' FROM ductape.webhook_events' INTO ok;
    IF ok THEN RETURN true; END IF;
    PERFORM pg_sleep(0.1);
  END LOOP;
  RETURN false;
END $$;

CREATE ROLE dt_lc_admin;
CREATE ROLE dt_lc_app;
SELECT ductape.grant_admin('dt_lc_admin'), ductape.grant_usage('dt_lc_app');

SET ROLE dt_lc_admin;
SELECT ductape.app_define(jsonb_build_object('tag', 'lc',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', api() || '/echo'),
                            jsonb_build_object('slug', 'prd', 'base_url', api() || '/echo')),
  'variables', '{"region": {"default": "eu"}}'::jsonb,
  'webhooks', '[{"tag": "events", "verify": {"scheme": "none"}, "id": "$Event{id}", "type": "$Event{type}"}]'::jsonb,
  'actions', jsonb_build_array(
     jsonb_build_object('tag', 'ping', 'method', 'GET', 'resource', '/ping', 'headers', '{"X-Region": "$Variable{region}"}'::jsonb),
     jsonb_build_object('tag', 'pong', 'method', 'POST', 'resource', '/pong'),
     jsonb_build_object('tag', 'spare', 'method', 'GET', 'resource', '/spare'))));

---------------------------------------------------------------------------
-- action_drop
---------------------------------------------------------------------------
SELECT expect_error($$SELECT ductape.action_drop('lc', 'nope')$$);
SELECT expect_error($$SELECT ductape.action_drop('nope', 'ping')$$);
SELECT expect_error($$SELECT ductape.action_drop('LC', 'ping')$$);
SELECT expect_error($$SELECT ductape.action_drop('lc', NULL)$$);
-- nothing uses it: gone
SELECT ductape.action_drop('lc', 'spare');
SELECT tag FROM ductape.actions WHERE app = 'lc' ORDER BY tag;
SELECT expect_error($$SELECT ductape.action_drop('lc', 'spare')$$);

-- What uses ping: a workflow step and another's compensation, an on_row
-- trigger, a scheduled job, a running workflow run.
SELECT ductape.workflow_define('{"tag": "lc-flow", "steps": [
  {"tag": "first", "type": "action", "app": "lc", "action": "pong", "compensate": {"app": "lc", "action": "ping"}},
  {"tag": "second", "type": "action", "app": "lc", "action": "ping", "depends_on": ["first"]}]}');
SELECT ductape.workflow_define('{"tag": "lc-slow", "steps": [
  {"tag": "nap", "type": "sleep", "seconds": 3600},
  {"tag": "call", "type": "action", "app": "lc", "action": "ping", "depends_on": ["nap"]}]}');
RESET ROLE;
CREATE TABLE public.lc_orders (id integer);
CREATE TRIGGER lc_orders_ping AFTER INSERT ON public.lc_orders
    FOR EACH ROW EXECUTE FUNCTION ductape.on_row('lc', 'ping', '{"id": "$Row{id}"}');
SET ROLE dt_lc_app;
SELECT ductape.dispatch('lc', 'ping', run_at => now() + interval '1 hour') AS ping_job \gset
SELECT ductape.dispatch('lc', 'pong', run_at => now() + interval '1 hour') AS pong_job \gset
SELECT ductape.workflow_start('lc-slow') AS slow_run \gset
RESET ROLE;
-- (the worker starts the sleep)
SELECT lc_wait(format($$SELECT state = 'running' FROM ductape.workflow_steps WHERE run_id = %s AND tag = 'nap'$$, :slow_run)) AS napping;

SET ROLE dt_lc_admin;
SELECT expect_error_hint($$SELECT ductape.action_drop('lc', 'ping')$$);
-- cascade drops the trigger only for the owner of its table
SELECT expect_error_hint($$SELECT ductape.action_drop('lc', 'ping', cascade => true)$$);
RESET ROLE;
ALTER TABLE public.lc_orders OWNER TO dt_lc_admin;
SET ROLE dt_lc_admin;
SELECT ductape.action_drop('lc', 'ping', cascade => true);
SELECT tag FROM ductape.actions WHERE app = 'lc' ORDER BY tag;
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgname = 'lc_orders_ping';
SELECT tag FROM ductape.workflows WHERE tag LIKE 'lc-%' ORDER BY tag;
-- the job of ping is cancelled, saying why; the job of pong waits on
SELECT action, state, error FROM ductape.jobs WHERE id IN (:ping_job, :pong_job) ORDER BY id;
SELECT state, error FROM ductape.workflow_runs WHERE id = :slow_run;
SELECT tag, state FROM ductape.workflow_steps WHERE run_id = :slow_run ORDER BY position;
INSERT INTO public.lc_orders VALUES (1);

-- pong: only the job uses it; once it is cancelled, the drop goes through
SELECT expect_error_hint($$SELECT ductape.action_drop('lc', 'pong')$$);
SELECT ductape.cancel(:pong_job);
SELECT ductape.action_drop('lc', 'pong');
SELECT count(*) AS actions_left FROM ductape.actions WHERE app = 'lc';

-- A usage role drops nothing.
RESET ROLE;
SET ROLE dt_lc_app;
SELECT expect_error($$SELECT ductape.action_drop('lc', 'ping')$$);
SELECT expect_error($$SELECT ductape.app_drop('lc')$$);
SELECT expect_error($$SELECT ductape.product_drop('x')$$);
SELECT expect_error($$SELECT ductape.config_unset('lc')$$);
SELECT expect_error($$SELECT ductape.webhook_event_retry(1)$$);
SELECT expect_error($$SELECT ductape.revoke_usage('dt_lc_app')$$);
RESET ROLE;

---------------------------------------------------------------------------
-- config_unset and variable_unset (NULL env and product: the session's)
---------------------------------------------------------------------------
SET ROLE dt_lc_admin;
SELECT ductape.action_define('lc', '{"tag": "ping", "method": "GET", "resource": "/ping", "headers": {"X-Region": "$Variable{region}"}}');
SELECT ductape.product_create('lcp', envs => '{dev,prd}');
SELECT ductape.product_connect('lcp', 'lc');
SELECT ductape.config('lc', '{"headers:X-Key": "k-dev"}', 'dev', 'lcp');
SELECT ductape.config('lc', '{"headers:X-Key": "k-prd"}', 'prd', 'lcp');
SELECT ductape.variable_set('lc', 'region', '"us"', 'prd', 'lcp');
SET ductape.product = 'lcp';
SET ductape.env = 'prd';
SELECT ductape.run('lc', 'ping')->'headers'->>'x-region' AS region_set;
SELECT ductape.variable_unset('lc', 'region');
SELECT ductape.run('lc', 'ping')->'headers'->>'x-region' AS region_default_again;
SELECT ductape.config_unset('lc');
SELECT product, app, env FROM ductape.configs WHERE app = 'lc' ORDER BY env;
RESET ductape.product;
RESET ductape.env;
SELECT expect_error($$SELECT ductape.config_unset('lc', 'prd', 'lcp')$$);
SELECT expect_error($$SELECT ductape.config_unset('lc', 'staging', 'lcp')$$);
SELECT expect_error($$SELECT ductape.config_unset('lc', 'Prd', 'lcp')$$);
SELECT expect_error($$SELECT ductape.config_unset('lc', 'dev', 'nope')$$);
SELECT expect_error($$SELECT ductape.config_unset('nope', 'dev', 'lcp')$$);
SELECT expect_error($$SELECT ductape.variable_unset('lc', 'region', 'prd', 'lcp')$$);
SELECT expect_error($$SELECT ductape.variable_unset('lc', 'colour', 'prd', 'lcp')$$);
SELECT expect_error($$SELECT ductape.variable_unset('lc', NULL, 'prd', 'lcp')$$);
SELECT expect_error($$SELECT ductape.variable_unset('lc', 'region', 'prd', 'bad tag')$$);

---------------------------------------------------------------------------
-- product_disconnect and product_drop
---------------------------------------------------------------------------
SELECT expect_error($$SELECT ductape.product_disconnect('nope', 'lc')$$);
SELECT expect_error($$SELECT ductape.product_disconnect('lcp', 'nope')$$);
SELECT expect_error($$SELECT ductape.product_disconnect('lcp', 'Lc')$$);
SELECT expect_error($$SELECT ductape.product_disconnect('default', 'lc')$$);
-- a webhook URL and a job of (lcp, lc) use the connection
SELECT ductape.webhook_url('lc', 'events', 'dev', 'lcp') ~ '/webhooks/[0-9a-f]{64}$' AS url_given;
RESET ROLE;
SET ROLE dt_lc_app;
SELECT ductape.dispatch('lc', 'ping', env => 'dev', product => 'lcp', run_at => now() + interval '1 hour') AS lcp_job \gset
RESET ROLE;
SET ROLE dt_lc_admin;
SELECT expect_error_hint($$SELECT ductape.product_disconnect('lcp', 'lc')$$);
SELECT ductape.product_disconnect('lcp', 'lc', cascade => true);
SELECT count(*) AS connections FROM ductape.product_apps WHERE product = 'lcp';
SELECT count(*) AS urls FROM ductape._webhook_tokens WHERE product = 'lcp';
SELECT state, error FROM ductape.jobs WHERE id = :lcp_job;
-- credentials stay (config_unset removes them); the app is not usable under the product
SELECT product, app, env FROM ductape.configs WHERE product = 'lcp';
SELECT expect_error($$SELECT ductape.run('lc', 'ping', env => 'dev', product => 'lcp')$$);

-- product_drop: the default product stays; unknown and bad tags
SELECT expect_error_hint($$SELECT ductape.product_drop('default')$$);
SELECT expect_error($$SELECT ductape.product_drop('nope')$$);
SELECT expect_error($$SELECT ductape.product_drop('Bad')$$);
-- a webhook URL and a job under the product: refused, then cascaded
SELECT ductape.product_connect('lcp', 'lc');
SELECT ductape.webhook_url('lc', 'events', 'prd', 'lcp') IS NOT NULL AS url_given;
RESET ROLE;
SET ROLE dt_lc_app;
SELECT ductape.dispatch('lc', 'ping', env => 'prd', product => 'lcp', run_at => now() + interval '1 hour') AS lcp_job2 \gset
RESET ROLE;
SET ROLE dt_lc_admin;
SELECT expect_error_hint($$SELECT ductape.product_drop('lcp')$$);
SELECT ductape.product_drop('lcp', cascade => true);
SELECT state, error FROM ductape.jobs WHERE id = :lcp_job2;
-- what the product held went with it
SELECT (SELECT count(*) FROM ductape.products WHERE tag = 'lcp') AS products,
       (SELECT count(*) FROM ductape.product_apps WHERE product = 'lcp') AS connections,
       (SELECT count(*) FROM ductape.configs WHERE product = 'lcp') AS configs,
       (SELECT count(*) FROM ductape.variables WHERE product = 'lcp') AS variables,
       (SELECT count(*) FROM ductape._webhook_tokens WHERE product = 'lcp') AS urls;
-- a product nothing uses drops without cascade
SELECT ductape.product_create('lcq');
SELECT ductape.product_drop('lcq');
SELECT count(*) AS lcq FROM ductape.products WHERE tag = 'lcq';

---------------------------------------------------------------------------
-- webhook_unsubscribe and webhook_event_retry, with the worker handling
-- real events from the listener
---------------------------------------------------------------------------
RESET ROLE;
CREATE TABLE public.lc_hook_log (event_id text, who name);
GRANT SELECT, INSERT ON public.lc_hook_log TO dt_lc_admin;
CREATE FUNCTION public.lc_on_event(event jsonb) RETURNS void LANGUAGE sql
  AS $$ INSERT INTO public.lc_hook_log VALUES (event->>'event_id', current_user) $$;
ALTER FUNCTION public.lc_on_event(jsonb) OWNER TO dt_lc_admin;
CREATE FUNCTION public.lc_post(url text, body jsonb) RETURNS int LANGUAGE sql AS $$
  SELECT (ductape.http('POST', url, '{"Content-Type": "application/json"}', body, '{"retries": {"max": 0}}')->>'status')::int
$$;
SET ROLE dt_lc_admin;
SELECT ductape.webhook_subscribe('lc', 'events', 'lc.*', 'public.lc_on_event(jsonb)') AS sub \gset
SELECT ductape.webhook_url('lc', 'events', 'dev') AS lc_url \gset
SELECT lc_post(:'lc_url', '{"id": "e1", "type": "lc.one"}') AS posted;
SELECT lc_wait_events($$bool_and(state = 'handled') FILTER (WHERE event_id = 'e1')$$) AS e1_handled;
SELECT event_id, who FROM public.lc_hook_log ORDER BY event_id;
SELECT id AS e1 FROM ductape.webhook_events WHERE event_id = 'e1' \gset

-- webhook_event_retry: a handled event runs its handlers again
BEGIN;
SELECT ductape.webhook_event_retry(:e1);
SELECT state, attempts, handled_by, error FROM ductape.webhook_events WHERE id = :e1;
COMMIT;
SELECT lc_wait_events($$bool_and(state = 'handled') FILTER (WHERE event_id = 'e1')$$) AS e1_handled_again;
SELECT event_id, count(*) AS runs FROM public.lc_hook_log GROUP BY event_id ORDER BY event_id;
SELECT expect_error($$SELECT ductape.webhook_event_retry(0)$$);

-- webhook_unsubscribe: events received after it are not handled by it
SELECT ductape.webhook_unsubscribe(:sub);
SELECT lc_post(:'lc_url', '{"id": "e2", "type": "lc.two"}') AS posted;
SELECT lc_wait_events($$bool_and(next_attempt_at = 'infinity') FILTER (WHERE event_id = 'e2')$$) AS e2_parked;
SELECT event_id, state, attempts FROM ductape.webhook_events WHERE event_id = 'e2';
SELECT count(*) AS e2_runs FROM public.lc_hook_log WHERE event_id = 'e2';
SELECT regexp_replace(expect_error(format('SELECT ductape.webhook_unsubscribe(%s)', :sub)), 'subscription \d+', 'subscription N');
-- a waiting event is the worker's; a finished one with no handler left has nothing to run
SELECT id AS e2 FROM ductape.webhook_events WHERE event_id = 'e2' \gset
SELECT regexp_replace(expect_error_hint(format('SELECT ductape.webhook_event_retry(%s)', :e2)), 'event \d+', 'event N');
SELECT regexp_replace(expect_error_hint(format('SELECT ductape.webhook_event_retry(%s)', :e1)), 'event \d+', 'event N');

---------------------------------------------------------------------------
-- app_drop: subscriptions and webhook URLs use the app
---------------------------------------------------------------------------
SELECT ductape.webhook_subscribe('lc', 'events', '*', 'public.lc_on_event(jsonb)') AS sub2 \gset
SELECT expect_error($$SELECT ductape.app_drop('nope')$$);
SELECT expect_error($$SELECT ductape.app_drop('Nope')$$);
SELECT regexp_replace(expect_error_hint($$SELECT ductape.app_drop('lc')$$), 'subscription \d+', 'subscription N');
SET client_min_messages = warning;  -- (the NOTICE names the subscription's id)
SELECT ductape.app_drop('lc', cascade => true);
RESET client_min_messages;
SELECT (SELECT count(*) FROM ductape.apps WHERE tag = 'lc') AS apps,
       (SELECT count(*) FROM ductape.webhook_subscriptions WHERE app = 'lc') AS subscriptions,
       (SELECT count(*) FROM ductape._webhook_tokens WHERE app = 'lc') AS urls;
-- the URL is gone: the listener answers 404
SELECT lc_post(:'lc_url', '{"id": "e3", "type": "lc.three"}') AS after_drop;
-- an app nothing uses drops without cascade, with its settings
SELECT ductape.app_create('lc-bare');
SELECT ductape.config('lc-bare', '{"headers:X-A": "1"}');
SELECT ductape.app_drop('lc-bare');
SELECT count(*) AS bare_configs FROM ductape.configs WHERE app = 'lc-bare';

---------------------------------------------------------------------------
-- workflow_drop
---------------------------------------------------------------------------
SELECT expect_error($$SELECT ductape.workflow_drop('Bad Tag')$$);
SELECT expect_error($$SELECT ductape.workflow_drop('lc-nope')$$);
SELECT ductape.workflow_define('{"tag": "lc-gone", "steps": [{"tag": "s", "type": "sql", "sql": "select 1 as one"}]}');
SELECT ductape.workflow_drop('lc-gone');
SELECT count(*) AS lc_gone FROM ductape.workflows WHERE tag = 'lc-gone';

---------------------------------------------------------------------------
-- endpoint_delete drops the pending deliveries (the message stays)
---------------------------------------------------------------------------
BEGIN;
SELECT ductape.endpoint_create(api() || '/echo/lc-hook', '{lc.*}') AS ep \gset
SELECT ductape.publish('lc.sent', '{"n": 1}') AS msg \gset
SELECT ductape.endpoint_disable(:ep);
COMMIT;
SELECT state FROM ductape.outbox WHERE endpoint_id = :ep;
SELECT ductape.endpoint_delete(:ep);
SELECT count(*) AS deliveries_pending FROM ductape.outbox WHERE endpoint_id = :ep;
SELECT count(*) AS message_kept FROM ductape.messages WHERE id = :'msg';
SELECT regexp_replace(expect_error(format('SELECT ductape.endpoint_delete(%s)', :ep)), 'endpoint \d+', 'endpoint N');
RESET ROLE;

---------------------------------------------------------------------------
-- revoke_usage and revoke_admin (the extension's owner and superusers)
---------------------------------------------------------------------------
SET ROLE dt_lc_admin;
SELECT expect_error($$SELECT ductape.revoke_usage('dt_lc_app')$$);
SELECT expect_error($$SELECT ductape.revoke_admin('dt_lc_admin')$$);
RESET ROLE;
SELECT count(*) AS app_jobs_before FROM ductape.jobs WHERE role = 'dt_lc_app';
SELECT ductape.revoke_usage('dt_lc_app');
SET ROLE dt_lc_app;
SELECT expect_error($$SELECT ductape.run('lc', 'ping')$$);
SELECT expect_error($$SELECT * FROM ductape.jobs$$);
RESET ROLE;
-- its rows stay
SELECT count(*) AS app_jobs_after FROM ductape.jobs WHERE role = 'dt_lc_app';
SELECT has_schema_privilege('dt_lc_app', 'ductape', 'USAGE') AS schema_usage,
       count(*) FILTER (WHERE has_function_privilege('dt_lc_app', p.oid, 'EXECUTE')) AS functions
  FROM pg_proc p WHERE p.pronamespace = 'ductape'::regnamespace;
-- revoke_admin keeps usage
SELECT ductape.revoke_admin('dt_lc_admin');
SELECT has_schema_privilege('dt_lc_admin', 'ductape', 'USAGE') AS schema_usage,
       has_function_privilege('dt_lc_admin', 'ductape.run(text,text,jsonb,text,text,jsonb)', 'EXECUTE') AS run,
       has_function_privilege('dt_lc_admin', 'ductape.app_define(jsonb)', 'EXECUTE') AS app_define,
       has_function_privilege('dt_lc_admin', 'ductape.action_drop(text,text,boolean)', 'EXECUTE') AS action_drop,
       has_table_privilege('dt_lc_admin', 'ductape.apps', 'SELECT') AS apps,
       has_column_privilege('dt_lc_admin', 'ductape.endpoints', 'url', 'UPDATE') AS endpoint_url,
       has_table_privilege('dt_lc_admin', 'ductape.calls', 'SELECT') AS calls;
SET ROLE dt_lc_admin;
SELECT expect_error($$SELECT ductape.app_create('lc-after')$$);
SELECT ductape.version() IS NOT NULL AS usage_kept;
RESET ROLE;
-- a role with no ductape privilege gains none from revoke_admin
SELECT ductape.revoke_admin('dt_lc_app');
SELECT has_schema_privilege('dt_lc_app', 'ductape', 'USAGE') AS schema_usage;
-- refused: unknown, NULL, a superuser, the extension's owner; "public" is no role
CREATE ROLE dt_lc_super SUPERUSER;
SELECT expect_error($$SELECT ductape.revoke_usage('dt_lc_nobody')$$);
SELECT expect_error($$SELECT ductape.revoke_usage(NULL)$$);
SELECT expect_error_hint($$SELECT ductape.revoke_admin('dt_lc_super')$$);
SELECT replace(expect_error(format('SELECT ductape.revoke_usage(%L)', e.extowner::regrole)), e.extowner::regrole::text, 'OWNER')
  FROM pg_extension e WHERE e.extname = 'ductape';
SELECT expect_error($$SELECT ductape.grant_usage('public')$$);
SELECT count(*) AS public_function_grants
  FROM pg_proc p WHERE p.pronamespace = 'ductape'::regnamespace AND has_function_privilege('public', p.oid, 'EXECUTE');
-- granted again, it works again
SELECT ductape.grant_usage('dt_lc_app');
SET ROLE dt_lc_app;
SELECT count(*) > 0 AS sees_own_jobs FROM ductape.jobs;
RESET ROLE;

-- Clean up.
DROP TABLE public.lc_orders, public.lc_hook_log;
DROP FUNCTION public.lc_on_event(jsonb), public.lc_post(text, jsonb), public.lc_wait_events(text), public.lc_wait(text),
              public.expect_error_hint(text);
SELECT ductape.revoke_usage('dt_lc_app'), ductape.revoke_usage('dt_lc_admin');
DROP ROLE dt_lc_admin, dt_lc_app, dt_lc_super;

-- A trigger on a partitioned table has a copy on each partition, which
-- goes with it: a cascading drop drops the parent's trigger only (it failed
-- on the copies).  Then the app is gone.
SELECT ductape.app_define(jsonb_build_object('tag', 'rv',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', api())),
  'actions', jsonb_build_array(jsonb_build_object('tag', 'ping', 'method', 'GET', 'resource', '/echo'))));
CREATE TABLE public.rv_pt (x int) PARTITION BY RANGE (x);
CREATE TABLE public.rv_pt_1 PARTITION OF public.rv_pt FOR VALUES FROM (0) TO (10);
CREATE TABLE public.rv_pt_2 PARTITION OF public.rv_pt FOR VALUES FROM (10) TO (20);
CREATE TRIGGER rv_trg AFTER INSERT ON public.rv_pt FOR EACH ROW EXECUTE FUNCTION ductape.on_row('rv', 'ping');
SET client_min_messages = warning;
SELECT ductape.action_drop('rv', 'ping', cascade => true);
SELECT ductape.app_drop('rv', cascade => true);
RESET client_min_messages;
SELECT count(*) AS on_row_triggers_left FROM pg_trigger WHERE tgfoid = 'ductape.on_row()'::regprocedure
   AND tgrelid IN ('public.rv_pt'::regclass, 'public.rv_pt_1'::regclass, 'public.rv_pt_2'::regclass);
DROP TABLE public.rv_pt;
SELECT count(*) AS rv_apps_left FROM ductape.apps WHERE tag = 'rv';

-- A NULL event id is invalid input, not an unknown event.
SELECT expect_error($$SELECT ductape.webhook_event_retry(NULL)$$);
