-- test/fuzz/fixture.sql: what the fuzz targets run against (scripts/fuzz).
CREATE EXTENSION ductape;
SELECT ductape.secret_set('FZ_HOOK_SECRET', 'fz-hook-secret-2b7d');
SELECT ductape.app_define('{
  "tag": "fz",
  "constants": {"version": "2024-06-20"},
  "envs": [{"slug": "dev", "base_url": "http://fz.invalid/v1"}],
  "actions": [
    {"tag": "get", "method": "GET", "resource": "/items/:id/:sub"},
    {"tag": "create", "method": "POST", "resource": "/items/:id",
     "headers": {"X-Version": "$Constant{version}", "X-Trace": "$Input{trace}"},
     "body": {"kind": "template", "nested": {"from": "$Input{name}"}},
     "input": {"properties": {"id": {"type": ["string", "integer"]},
                              "expand": {"type": "string", "in": "query"},
                              "trace": {"type": "string", "in": "headers"},
                              "count": {"type": "integer", "minimum": 0}}}},
    {"tag": "form", "method": "POST", "resource": "/form", "request_type": "application/x-www-form-urlencoded"},
    {"tag": "note", "method": "PUT", "resource": "/note/:id", "request_type": "text/plain"}
  ],
  "webhooks": [
    {"tag": "open", "verify": {"scheme": "none"}, "id": "$Event{id}", "type": "$Event{data.type}"},
    {"tag": "gh", "verify": {"scheme": "github", "secret": "$Secret{FZ_HOOK_SECRET}"},
     "id": "$Header{X-GitHub-Delivery}", "type": "$Header{X-GitHub-Event}"},
    {"tag": "std", "verify": {"scheme": "standard", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
     "id": "$Event{data.id}", "type": "$Event{type}"}
  ]}');
CREATE FUNCTION fuzz_run(target text, args text[], log text) RETURNS int
  AS :'fuzzlib', 'fuzz_run' LANGUAGE C STRICT;
-- the webhook tokens (made on first use) that scripts/fuzz puts in its seeds
SELECT count(ductape.webhook_url('fz', w)) FROM unnest(ARRAY['open', 'gh', 'std']) w;
-- Every C function of the extension now runs the instrumented copy, so
-- what a target reaches through SQL (import_openapi) is measured too.
UPDATE pg_proc SET probin = :'fuzzlib' WHERE probin = '$libdir/ductape';
