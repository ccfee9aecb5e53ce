-- Workflows (docs/reference.md): conditions, templates and definitions.

-- Conditions: == != > >= < <= && || ! over placeholders and JSON literals.
SELECT c, ductape._condition_eval(c, '{"input": {"amount": 150, "trial": false, "tags": ["a"], "name": "Ada"},
                                      "steps": {"check": {"ok": true, "score": 0.5, "items": [{"id": 7}]}, "empty": null}}') AS result
  FROM (VALUES
    ('$Step{check}{ok} == true'),
    ('$Step{check}{ok} != true'),
    ('$Input{amount} >= 100 && !$Input{trial}'),
    ('$Input{amount} > 1000 || $Step{check}{score} < 1'),
    ('!($Input{amount} > 100)'),
    ('$Input{name} == "Ada"'),
    ('$Input{name} < "Bob"'),
    ('$Input{tags} == ["a"]'),
    ('$Step{check}{items}{0}{id} == 7'),
    ('$Step{check}{missing} == null'),
    ('$Step{empty}'),
    ('$Input{amount} > "100"'),
    ('$Input{amount} == 150.0'),
    ('true && (false || !false)')) AS t(c);

-- Syntax problems, each with its place.
SELECT c, (ductape._condition_check(c, '/steps/0/condition')).problems AS problems
  FROM (VALUES ('$Step{check}{ok} =='), ('($Input{a} > 1'), ('$Input{a} > 1 )'), ('$Inptu{a} > 1'),
               ('$Secret{KEY} == "x"'), ('amount > 1'), ('$Input{a} >> 1'), (''),
               ('$Step{check}{ok} == true && $Step{other}{x}')) AS t(c);
SELECT (ductape._condition_check('$Step{a}{x} == 1 || $Step{b}{y}', '')).steps;
SELECT expect_error($$SELECT ductape._condition_eval('1 ==', '{}')$$);

-- Templates of step inputs: $Input and $Step resolved from the run's context.
SELECT ductape._workflow_apply('{"amount": "$Input{amount}", "charge": "$Step{charge}{id}", "note": "order $Input{id} by $Input{name}"}',
                               '{"input": {"amount": 150, "id": 42, "name": "Ada"}, "steps": {"charge": {"id": "ch_1"}}}');
SELECT expect_error($$SELECT ductape._workflow_apply('{"x": "$Step{charge}{id}"}', '{"steps": {}}')$$);

-- Definitions are checked before anything is stored.
SELECT ductape.app_define(jsonb_build_object('tag', 'payments',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', api() || '/echo')),
  'actions', '[{"tag": "charge", "method": "POST", "resource": "/charges"},
               {"tag": "refund", "method": "POST", "resource": "/refunds"},
               {"tag": "sms", "method": "POST", "resource": "/sms"}]'::jsonb));
SELECT ductape.workflow_define('{
  "tag": "checkout",
  "input": {"type": "object", "required": ["order", "amount"]},
  "steps": [
    {"tag": "charge", "type": "action", "app": "payments", "action": "charge",
     "input": {"amount": "$Input{amount}", "order": "$Input{order}"},
     "compensate": {"app": "payments", "action": "refund", "input": {"charge": "$Step{charge}{id}"}}},
    {"tag": "record", "type": "sql", "sql": "select 1", "depends_on": ["charge"]},
    {"tag": "wait", "type": "sleep", "seconds": 1, "depends_on": ["charge"]},
    {"tag": "notify", "type": "action", "app": "payments", "action": "sms", "depends_on": ["record", "wait"],
     "condition": "$Step{charge}{status} == \"paid\"", "input": {"to": "$Input{phone}", "charge": "$Step{charge}{id}"},
     "allow_fail": true, "retries": {"max": 2}}
  ],
  "output": {"charge": "$Step{charge}{id}"}}');
SELECT tag, jsonb_array_length(spec->'steps') AS steps FROM ductape.workflows;
SELECT expect_error($$SELECT ductape.workflow_define('{
  "tag": "Bad Tag", "extra": 1, "input": {"type": "thing"},
  "steps": [
    {"tag": "a", "type": "action", "app": "payments", "action": "nope", "input": {"x": "$Secret{KEY}"}},
    {"tag": "b", "type": "fly", "depends_on": ["c", "zzz"]},
    {"tag": "c", "type": "sql", "depends_on": ["b"], "condition": "$Step{a}{ok} =="},
    {"tag": "d", "type": "sleep", "seconds": -1, "depends_on": ["d"], "retries": {"max": 1000}, "allow_fail": "yes"},
    {"tag": "e", "type": "action", "app": "payments", "action": "sms", "input": {"x": "$Step{a}{id}", "y": "$Step{ghost}{id}"},
     "compensate": {"app": "payments", "action": "refund", "oops": true}},
    {"tag": "a", "type": "sleep", "seconds": 1}
  ],
  "output": {"x": "$Step{nobody}{x}"}}')$$);
SELECT expect_error($$SELECT ductape.workflow_define('{"tag": "empty", "steps": []}')$$);
SELECT count(*) AS stored FROM ductape.workflows;

-- Running workflows.  The shop's APIs are the test server: a Stripe-like
-- charge and refund, a Twilio-like SMS whose status the input picks.
SELECT ductape.app_define(jsonb_build_object('tag', 'stripe-like',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', api())),
  'actions', '[{"tag": "create-charge", "method": "POST", "resource": "/echo/v1/charges", "headers": {"X-Test-Key": "wf-charge"},
                "input": {"type": "object", "required": ["amount"], "properties": {"amount": {"type": "integer", "minimum": 1}}}},
               {"tag": "refund", "method": "POST", "resource": "/echo/v1/refunds", "headers": {"X-Test-Key": "wf-refund"}}]'::jsonb));
SELECT ductape.app_define(jsonb_build_object('tag', 'twilio-like',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', api())),
  'actions', '[{"tag": "send-sms", "method": "POST", "resource": "/status/:code", "headers": {"X-Test-Key": "wf-sms"},
                "retries": {"max": 0}},
               {"tag": "slow", "method": "GET", "resource": "/delay/:ms"}]'::jsonb));
SELECT ductape.workflow_define('{
  "tag": "order",
  "input": {"type": "object", "required": ["order", "amount"],
            "properties": {"amount": {"type": "integer"}, "sms_status": {"type": "integer"}}},
  "steps": [
    {"tag": "charge", "type": "action", "app": "stripe-like", "action": "create-charge",
     "input": {"amount": "$Input{amount}", "metadata": {"order": "$Input{order}"}},
     "compensate": {"app": "stripe-like", "action": "refund", "input": {"charge": "$Step{charge}{path}"}}},
    {"tag": "record", "type": "sql", "sql": "select 42 as order_row", "depends_on": ["charge"]},
    {"tag": "sms", "type": "action", "app": "twilio-like", "action": "send-sms", "depends_on": ["record"],
     "input": {"code": "$Input{sms_status}", "body": "order $Input{order} paid"}, "retries": {"max": 0}},
    {"tag": "vip", "type": "sql", "sql": "select true as vip", "depends_on": ["charge"],
     "condition": "$Input{amount} >= 1000"}
  ],
  "output": {"charged": "$Step{charge}{body}", "row": "$Step{record}{order_row}"}}');
CREATE FUNCTION public.wait_workflow(id bigint) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..400 LOOP
        IF ductape.workflow_status(id)->>'state' <> 'running' THEN
            RETURN ductape.workflow_status(id);
        END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN ductape.workflow_status(id);
END
$$;
CREATE FUNCTION public.step_states(status jsonb) RETURNS text LANGUAGE sql AS $$
    SELECT string_agg((s->>'tag') || '=' || (s->>'state'), ' ' ORDER BY o) FROM jsonb_array_elements(status->'steps') WITH ORDINALITY x(s, o)
$$;

-- The happy path: every step once, the condition false (vip skipped), the output.
SELECT ductape.workflow_start('order', '{"order": "A-1", "amount": 500, "sms_status": 201}') AS run \gset
SELECT w->>'state' AS state, step_states(w) AS steps, w->'output' AS output, w->>'error' AS error
  FROM wait_workflow(:run) w;
SELECT api_count('wf-charge') AS charges, api_count('wf-sms') AS sms, api_count('wf-refund') AS refunds;

-- The SMS fails: the charge is refunded (its compensation), the run ends rolled_back.
SELECT ductape.workflow_start('order', '{"order": "A-2", "amount": 500, "sms_status": 500}') AS run \gset
SELECT w->>'state' AS state, step_states(w) AS steps, w->>'error' AS error FROM wait_workflow(:run) w;
SELECT api_count('wf-charge') AS charges, api_count('wf-sms') AS sms, api_count('wf-refund') AS refunds;
SELECT (r->'body'->>'body')::jsonb AS refund_sent, r->'body'->'headers'->>'idempotency-key' AS key
  FROM ductape.jobs j, LATERAL (SELECT j.response AS r) x WHERE j.app = 'stripe-like' AND j.action = 'refund';

-- A step input that breaks the action's schema fails before anything is sent.
SELECT ductape.workflow_start('order', '{"order": "A-3", "amount": 0, "sms_status": 201}') AS run \gset
SELECT w->>'state' AS state, step_states(w) AS steps, w->>'error' AS error FROM wait_workflow(:run) w;
SELECT api_count('wf-charge') AS charges;

-- allow_fail: the run completes with the step failed.
SELECT ductape.workflow_define('{"tag": "tolerant", "steps": [
    {"tag": "try", "type": "action", "app": "twilio-like", "action": "send-sms", "input": {"code": 503}, "allow_fail": true},
    {"tag": "after", "type": "sql", "sql": "select 1 as ok", "depends_on": ["try"]}]}');
SELECT ductape.workflow_start('tolerant') AS run \gset
SELECT w->>'state' AS state, step_states(w) AS steps FROM wait_workflow(:run) w;

-- Compensations run last completed first, one at a time; a step's own
-- retries apply (the flaky step fails twice, then succeeds on its 3rd try).
SELECT ductape.app_define(jsonb_build_object('tag', 'steps',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', api())),
  'actions', '[{"tag": "do", "method": "POST", "resource": "/echo/do"},
               {"tag": "undo", "method": "POST", "resource": "/echo/undo"},
               {"tag": "flaky", "method": "POST", "resource": "/flaky/wf-flaky/2", "retries": {"max": 0}},
               {"tag": "fail", "method": "POST", "resource": "/status/422"}]'::jsonb));
SELECT ductape.workflow_define('{"tag": "chain", "steps": [
    {"tag": "s1", "type": "action", "app": "steps", "action": "do", "compensate": {"app": "steps", "action": "undo", "input": {"undo": "s1"}}},
    {"tag": "s2", "type": "action", "app": "steps", "action": "do", "depends_on": ["s1"],
     "compensate": {"app": "steps", "action": "undo", "input": {"undo": "s2"}}},
    {"tag": "s3", "type": "action", "app": "steps", "action": "flaky", "depends_on": ["s2"],
     "retries": {"max": 3, "initial_delay_ms": 10, "max_delay_ms": 20}},
    {"tag": "s4", "type": "action", "app": "steps", "action": "fail", "depends_on": ["s3"]}]}');
SELECT ductape.workflow_start('chain') AS run \gset
SELECT w->>'state' AS state, step_states(w) AS steps, w->'steps'->2->'attempts' AS s3_attempts, w->>'error' AS error
  FROM wait_workflow(:run) w;
SELECT string_agg((response->'body'->>'body')::jsonb->>'undo', ' then ' ORDER BY id) AS compensations
  FROM ductape.jobs WHERE app = 'steps' AND action = 'undo';

-- Independent steps run at the same time; a sleep wakes at its time.
SELECT ductape.workflow_define('{"tag": "parallel", "steps": [
    {"tag": "a", "type": "action", "app": "twilio-like", "action": "slow", "input": {"ms": 700}},
    {"tag": "b", "type": "action", "app": "twilio-like", "action": "slow", "input": {"ms": 700}},
    {"tag": "c", "type": "action", "app": "twilio-like", "action": "slow", "input": {"ms": 700}},
    {"tag": "nap", "type": "sleep", "seconds": 1.5, "depends_on": ["a", "b", "c"]}]}');
SELECT ductape.workflow_start('parallel') AS run \gset
-- (the three requests overlap in time, whatever the machine's load; the run
-- takes at least the 0.7 s requests plus the 1.5 s sleep)
SELECT w->>'state' AS state, step_states(w) AS steps,
       extract(epoch FROM (w->>'finished_at')::timestamptz - (w->>'created_at')::timestamptz) >= 2.1 AS took_700ms_then_1_5s
  FROM wait_workflow(:run) w;
SELECT wait_calls(format('job_id IN (SELECT id FROM ductape.jobs WHERE idempotency_key LIKE %L)', 'ductape-wf-' || :run || '-%'), 3) AS recorded;
SELECT max(c.at) < min(c.at + c.duration_ms * interval '1 ms') AS requests_overlapped
  FROM ductape.calls c JOIN ductape.jobs j ON j.id = c.job_id
 WHERE j.idempotency_key LIKE 'ductape-wf-' || :run || '-%';

-- Idempotency keys, cancel, and the errors of workflow_start.
SELECT ductape.workflow_define('{"tag": "long", "steps": [{"tag": "wait", "type": "sleep", "seconds": 3600}]}');
SELECT ductape.workflow_start('long', idempotency_key => 'long-1') = ductape.workflow_start('long', idempotency_key => 'long-1') AS same_run;
SELECT id AS run FROM ductape.workflow_runs WHERE idempotency_key = 'long-1' \gset
DO $$
BEGIN
    FOR i IN 1..200 LOOP        -- until the worker has started the sleep
        EXIT WHEN EXISTS (SELECT 1 FROM ductape.workflow_steps s JOIN ductape.workflow_runs r ON r.id = s.run_id
                           WHERE r.idempotency_key = 'long-1' AND s.state = 'running');
        PERFORM pg_sleep(0.05);
    END LOOP;
END
$$;
SELECT ductape.workflow_cancel(:run) AS cancelled;
SELECT ductape.workflow_cancel(:run) AS again;
SELECT w->>'state' AS state, step_states(w) AS steps, w->'steps'->0->>'error' AS error FROM ductape.workflow_status(:run) w;
SELECT expect_error($$SELECT ductape.workflow_start('nope')$$);
SELECT expect_error($$SELECT ductape.workflow_start('order', '{"amount": "x"}')$$);
SELECT expect_error($$SELECT ductape.workflow_start('order', '[]')$$);

-- A usage role starts runs and sees only its own.
CREATE ROLE dt_wf LOGIN;
SELECT ductape.grant_usage('dt_wf');
SET ROLE dt_wf;
SELECT ductape.workflow_start('tolerant') AS run \gset
SELECT wait_workflow(:run)->>'state' AS own_run;
SELECT count(*) AS runs_seen, bool_and(role = 'dt_wf') AS only_own FROM ductape.workflow_runs;
SELECT ductape.workflow_status(1) IS NULL AS others_hidden;
RESET ROLE;
