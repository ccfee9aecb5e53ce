-- Products, connections, config credentials and the merge order (docs/reference.md).

SELECT tag, name, envs FROM ductape.products;

-- An app whose envs point at different paths, so we can see which one a call used.
SELECT ductape.app_define(jsonb_build_object('tag', 'crm',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'sandbox', 'base_url', api() || '/echo/sandbox'),
                            jsonb_build_object('slug', 'live', 'base_url', api() || '/echo/live')),
  'variables', jsonb_build_object('region', jsonb_build_object('default', 'eu')),
  'actions', jsonb_build_array(
    jsonb_build_object('tag', 'who', 'method', 'POST', 'resource', '/who',
        'headers', jsonb_build_object('X-Level', 'template', 'X-Region', '$Variable{region}'),
        'query', jsonb_build_object('api_version', '1'),
        'body', jsonb_build_object('source', 'template')))));

-- The default product: every app, any of its envs, no connection needed.
SELECT ductape.run('crm', 'who', env => 'sandbox')->>'path' AS default_product_path;

-- product_create / product_connect
SELECT ductape.product_create('acme', 'Acme Inc', '{dev,prd}');
SELECT expect_error($$SELECT ductape.product_create('acme')$$);
SELECT expect_error($$SELECT ductape.product_create('Bad', envs => '{Dev}')$$);
SELECT expect_error($$SELECT ductape.product_create('empty-envs', envs => '{}')$$);
SELECT expect_error($$SELECT ductape.run('crm', 'who', env => 'dev', product => 'acme')$$);
SELECT expect_error($$SELECT ductape.product_connect('nope', 'crm')$$);
SELECT expect_error($$SELECT ductape.product_connect('acme', 'nope')$$);
SELECT expect_error($$SELECT ductape.product_connect('acme', 'crm', '{"qa": "sandbox", "prd": "production"}')$$);
SELECT count(*) AS connections FROM ductape.product_apps;
SELECT ductape.product_connect('acme', 'crm', '{"dev": "sandbox", "prd": "live"}');

-- The product env maps to the app env.
SELECT ductape.run('crm', 'who', env => 'dev', product => 'acme')->>'path' AS acme_dev,
       ductape.run('crm', 'who', env => 'prd', product => 'acme')->>'path' AS acme_prd;
SET ductape.product = 'acme';
SET ductape.env = 'prd';
SELECT ductape.run('crm', 'who')->>'path' AS from_settings;
RESET ductape.product;
RESET ductape.env;
SELECT expect_error($$SELECT ductape.run('crm', 'who', env => 'staging', product => 'acme')$$);
SELECT expect_error($$SELECT ductape.run('crm', 'who', product => 'nope')$$);

-- Variables are per product and env.
SELECT ductape.variable_set('crm', 'region', '"us"', env => 'prd', product => 'acme');
SELECT ductape.run('crm', 'who', env => 'prd', product => 'acme')->'headers'->>'x-region' AS acme_prd_region,
       ductape.run('crm', 'who', env => 'dev', product => 'acme')->'headers'->>'x-region' AS acme_dev_region;
SELECT expect_error($$SELECT ductape.variable_set('crm', 'region', '"x"', env => 'staging', product => 'acme')$$);

-- config: credential templates, validated, stored as templates.
SELECT ductape.secret_set('CRM_TOKEN', 'crm_token_plaintext_31337');
SELECT expect_error($$SELECT ductape.config('crm', '{"cookie:x": "1", "headers:Bad Name": "2", "headers:X-T": "$Secrt{K}"}', 'prd', 'acme')$$);
SELECT expect_error($$SELECT ductape.config('crm', '[]', 'prd', 'acme')$$);
SELECT expect_error($$SELECT ductape.config('crm', '{}', 'staging', 'acme')$$);
SELECT count(*) AS configs FROM ductape.configs;
SELECT ductape.config('crm', '{"headers:Authorization": "Bearer $Secret{CRM_TOKEN}", "headers:X-Level": "config",
                               "query:api_version": "2", "source": "config"}', 'prd', 'acme');
SELECT product, app, env, credentials FROM ductape.configs;

-- Merge order, one step at a time: template < config < auth < input.
SELECT r->'headers'->>'x-level' AS x_level, r->'query'->>'api_version' AS api_version,
       (r->>'body')::jsonb->>'source' AS body_source, r->'headers'->>'authorization' AS authorization
  FROM (SELECT ductape.run('crm', 'who', env => 'dev', product => 'acme') AS r) s;     -- no config for dev: template
SELECT r->'headers'->>'x-level' AS x_level, r->'query'->>'api_version' AS api_version,
       (r->>'body')::jsonb->>'source' AS body_source, r->'headers'->>'authorization' AS authorization
  FROM (SELECT ductape.run('crm', 'who', env => 'prd', product => 'acme') AS r) s;     -- config beats template
SELECT ductape.app_define(ductape.app_export('crm') || jsonb_build_object('auth',
       jsonb_build_object('type', 'api_key', 'in', 'header', 'name', 'X-Level', 'value', 'auth')));
SELECT ductape.run('crm', 'who', env => 'prd', product => 'acme')->'headers'->>'x-level' AS auth_beats_config;
SELECT ductape.run('crm', 'who', '{"headers:X-Level": "input", "source": "input", "api_version": "3", "query:api_version": "3"}',
                   env => 'prd', product => 'acme') AS r \gset
SELECT :'r'::jsonb->'headers'->>'x-level' AS input_beats_auth,
       (:'r'::jsonb->>'body')::jsonb->>'source' AS input_body, :'r'::jsonb->'query'->>'api_version' AS input_query;

-- A credential that used a secret is redacted as a whole wherever it is recorded.
-- (A resource may hold dot segments; they resolve as in any URL: this one
-- climbs out of the env's /echo/live prefix to /status/403.)
SELECT ductape.action_define('crm', '{"tag": "denied", "method": "GET", "resource": "/../../status/403"}');
SELECT expect_error($$SELECT ductape.run('crm', 'denied', env => 'prd', product => 'acme')$$) LIKE '%crm_token_plaintext%' AS secret_in_error;
SELECT wait_calls($$app = 'crm' AND action = 'denied'$$) AS recorded;
SELECT count(*) FILTER (WHERE c::text LIKE '%crm_token_plaintext%') AS records_with_secret FROM ductape.calls c;
SELECT app, action, env, product, status FROM ductape.calls WHERE app = 'crm' AND action = 'denied';

-- Dropping an app drops its connections, configs and variables.
SELECT ductape.app_drop('crm');
SELECT (SELECT count(*) FROM ductape.product_apps) AS connections, (SELECT count(*) FROM ductape.configs) AS configs;
