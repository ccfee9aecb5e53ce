-- The egress policy (docs/reference.md).  The suite's server config has
-- ductape.allowed_hosts = '127.0.0.1', which is how tests reach the API.

SHOW ductape.allowed_hosts;
SELECT ductape.http('GET', api() || '/echo')->'status' AS listed_address_ok;

-- Private and special addresses are refused, in every spelling.
SET ductape.allowed_hosts = '';
SELECT expect_error(format($$SELECT ductape.http('GET', %L)$$, u)) AS result
  FROM unnest(ARRAY[
    api() || '/echo',                              -- loopback
    'http://169.254.169.254/latest/meta-data/',    -- cloud metadata (link-local)
    'http://10.0.0.1/',                            -- RFC 1918
    'http://172.16.5.4/', 'http://192.168.1.1/',
    'http://100.64.0.1/',                          -- CGNAT
    'http://0.0.0.0/',
    'http://[::1]/',
    'http://[::ffff:127.0.0.1]/',                  -- IPv4-mapped
    'http://[64:ff9b::7f00:1]/',                   -- NAT64
    'http://[fd00::1]/', 'http://[fe80::1]/',
    'http://2130706433/',                          -- decimal 127.0.0.1
    'http://0177.0.0.1/',                          -- octal
    'http://0x7f.1/',                              -- hex, short form
    'http://224.0.0.1/', 'http://240.0.0.1/']) AS u;
-- Names that resolve to loopback are refused at connect time.
SELECT expect_error(replace($$SELECT ductape.http('GET', 'http://localhost:PORT/echo')$$, 'PORT', split_part(api(), ':', 3)))
       ~ '^DT002: request to http://localhost:PORT/echo blocked by the egress policy\nDETAIL: address (::1|127\.0\.0\.1) is loopback' AS localhost_refused;

-- Listed as an address, a CIDR or an exact name: reachable.
SET ductape.allowed_hosts = '127.0.0.0/8';
SELECT ductape.http('GET', api() || '/echo')->'status' AS cidr_ok;
SET ductape.allowed_hosts = 'localhost';
SELECT ductape.http('GET', replace(api(), '127.0.0.1', 'localhost') || '/echo')->'status' AS exact_name_ok;
SELECT expect_error($$SELECT ductape.http('GET', api() || '/echo')$$) AS address_not_listed;
-- a wildcard admits names, never private addresses (DNS rebinding)
SET ductape.allowed_hosts = '*.localhost, example.com';
SELECT expect_error($$SELECT ductape.http('GET', replace(api(), '127.0.0.1', 'api.localhost') || '/echo')$$) AS wildcard_no_private;
SELECT expect_error($$SELECT ductape.http('GET', replace(api(), '127.0.0.1', 'localhost') || '/echo')$$) AS bare_domain_not_matched;
SET ductape.allowed_hosts = 'api.example.com, 10.0.0.0/8';
SELECT expect_error($$SELECT ductape.http('GET', api() || '/echo')$$) AS not_in_list;
SELECT expect_error($$SELECT ductape.http('GET', 'http://192.0.2.10/')$$) AS literal_not_in_list;

-- allow_private_networks opens private ranges (the list still applies when set).
SET ductape.allowed_hosts = '';
SET ductape.allow_private_networks = on;
SELECT ductape.http('GET', api() || '/echo')->'status' AS private_allowed;
RESET ductape.allow_private_networks;
SELECT expect_error($$SELECT ductape.http('GET', api() || '/echo')$$) AS refused_again;
RESET ductape.allowed_hosts;

-- Only http and https; https_only refuses http.
SELECT expect_error($$SELECT ductape.http('GET', 'ftp://127.0.0.1/')$$);
SELECT expect_error($$SELECT ductape.http('GET', 'file:///etc/passwd')$$);
SET ductape.https_only = on;
SELECT expect_error($$SELECT ductape.http('GET', api() || '/echo')$$);
RESET ductape.https_only;

-- Redirects are followed (at most 5), each hop is checked.
SELECT r->'status' AS status, r->'body'->>'path' AS final_path
  FROM (SELECT ductape.http('GET', api() || '/redirect?to=' || api() || '/echo/landed') AS r) s;
SELECT r->'body'->>'method' AS method_after_303
  FROM (SELECT ductape.http('POST', api() || '/redirect?status=303&to=' || api() || '/echo/after', body => '{"a": 1}') AS r) s;
SELECT r->'body'->>'method' AS method_after_307, r->'body'->>'body' AS body_after_307
  FROM (SELECT ductape.http('POST', api() || '/redirect?status=307&to=' || api() || '/echo/after', body => '{"a": 1}') AS r) s;
-- a redirect to loopback or link-local that is not listed is refused (DT002)
SELECT expect_error($$SELECT ductape.http('GET', api() || '/redirect?to=http://127.0.0.2/')$$);
SELECT expect_error($$SELECT ductape.http('GET', api() || '/redirect?to=http://169.254.169.254/latest/')$$);
SELECT expect_error($$SELECT ductape.http('GET', api() || '/redirect?to=http://[::1]/')$$);
-- five redirects are followed, a sixth is refused
CREATE FUNCTION public.redirect_chain(n integer) RETURNS text LANGUAGE plpgsql AS $$
DECLARE u text := api() || '/echo/end';
BEGIN
    FOR i IN 1..n LOOP
        u := api() || '/redirect?to=' || replace(replace(replace(u, '%', '%25'), '&', '%26'), '?', '%3F');
    END LOOP;
    RETURN u;
END $$;
SELECT ductape.http('GET', redirect_chain(5))->'body'->>'path' AS after_5;
SELECT r->'status' AS status, r->>'error' AS sixth_redirect, r->'attempts' AS attempts
  FROM (SELECT ductape.http('GET', redirect_chain(6)) AS r) s;
-- credentials do not follow a redirect to another host
SET ductape.allowed_hosts = '127.0.0.1, localhost';
SELECT r->'body'->'headers'->>'authorization' AS auth_after_cross_host, r->'body'->'headers'->>'x-other' AS other
  FROM (SELECT ductape.http('GET', api() || '/redirect?to=' || replace(api(), '127.0.0.1', 'localhost') || '/echo',
                            '{"Authorization": "Bearer tok-123", "X-Other": "kept"}') AS r) s;
RESET ductape.allowed_hosts;

-- A proxy is used only when ductape.proxy says so (the test server answers
-- proxy-form requests by echoing the absolute URL it was asked for).
SET ductape.proxy = 'http://127.0.0.1:1';
SELECT ductape.http('GET', api() || '/echo', options => '{"retries": {"max": 0}}')->>'error' ~ '127.0.0.1 port 1' AS proxy_used;
SELECT set_config('ductape.proxy', api(), false) IS NOT NULL AS set_proxy;
SELECT ductape.http('GET', 'http://api.example.test/echo/via-proxy')->'body'->>'path' AS proxied_path;
RESET ductape.proxy;
SELECT expect_error($$SET ductape.proxy = 'ftp://x'$$);

-- https: a private CA is trusted only through ductape.ca_file.
SELECT ductape.http('GET', current_setting('ductape_test.tls_api') || '/echo/tls')->>'error'
       ~ 'SSL certificate problem' AS untrusted_without_ca_file;
SELECT set_config('ductape.ca_file', current_setting('ductape_test.ca_file'), false) IS NOT NULL AS set_ca;
SELECT r->'status' AS status, r->'body'->>'path' AS path
  FROM (SELECT ductape.http('GET', current_setting('ductape_test.tls_api') || '/echo/tls') AS r) s;
-- https_only allows https
SET ductape.https_only = on;
SELECT ductape.http('GET', current_setting('ductape_test.tls_api') || '/echo/tls')->'status' AS https_only_allows_https;
RESET ductape.https_only;
-- a redirect from https to http is refused, even to an allowed host
SELECT expect_error(format($$SELECT ductape.http('GET', %L)$$,
       current_setting('ductape_test.tls_api') || '/redirect?to=' || api() || '/echo/downgraded'));
-- credentials do not follow a redirect to another scheme or port either,
-- whatever the header is called when its value is a credential
SELECT ductape.secret_set('REDIR_TOKEN', 'redirect-token-value-42');
SELECT ductape.app_define(jsonb_build_object('tag', 'redir',
  'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', api())),
  'auth', jsonb_build_object('type', 'api_key', 'name', 'X-Token', 'value', '$Secret{REDIR_TOKEN}'),
  'actions', jsonb_build_array(jsonb_build_object('tag', 'go', 'method', 'GET', 'resource', '/redirect',
      'headers', jsonb_build_object('X-Other', 'kept')))));
SELECT r->'headers'->>'x-token' AS x_token_after_port_change, r->'headers'->>'x-other' AS other, r->>'path' AS path
  FROM (SELECT ductape.run('redir', 'go', jsonb_build_object('to', current_setting('ductape_test.tls_api') || '/echo/elsewhere')) AS r) s;
SELECT ductape.run('redir', 'go', jsonb_build_object('to', api() || '/echo/same-origin'))->'headers'->>'x-token' AS x_token_same_origin;
SELECT ductape.app_drop('redir'), ductape.secret_drop('REDIR_TOKEN');
-- https to https is followed
SELECT ductape.http('GET', current_setting('ductape_test.tls_api') || '/redirect?to='
       || current_setting('ductape_test.tls_api') || '/echo/still-tls')->'body'->>'path' AS https_to_https;
RESET ductape.ca_file;
SELECT expect_error($$SET ductape.ca_file = 'relative.pem'$$);
SELECT expect_error($$SET ductape.ca_file = '/nonexistent/ca.pem'$$);

-- The settings check their input and belong to superusers.
SELECT expect_error($$SET ductape.allowed_hosts = 'bad host!'$$);
SELECT expect_error($$SET ductape.allowed_hosts = '10.0.0.0/33'$$);
SET ROLE dt_nobody;
SELECT expect_error($$SET ductape.allowed_hosts = ''$$);
SELECT expect_error($$SET ductape.allow_private_networks = on$$);
RESET ROLE;
