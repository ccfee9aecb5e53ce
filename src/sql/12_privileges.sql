-- ductape SQL source: privileges.
--
-- Nothing is granted to PUBLIC.  grant_usage and grant_admin give a role
-- what an application or an administrator needs; the privilege matrix in
-- sql/privileges.sql shows what each holds.  Keep this file last: its
-- REVOKEs cover every function and table made before it.

-- What an application role needs: make calls, dispatch jobs, publish
-- events, start workflows, describe actions, read its own records.
-- A role named to grant_* or revoke_*: one that exists (42704), so that
-- "public" never means PUBLIC.
CREATE FUNCTION ductape._role_arg(role name) RETURNS oid
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r oid;
BEGIN
    IF role IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'role cannot be NULL';
    END IF;
    SELECT a.oid INTO r FROM pg_roles a WHERE a.rolname = role;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '42704', MESSAGE = format('role "%s" does not exist', role);
    END IF;
    RETURN r;
END
$$;
COMMENT ON FUNCTION ductape._role_arg(name) IS
    'Checks a role named to grant_* or revoke_*: it exists (42704; "public" is not PUBLIC); returns its oid.';

CREATE FUNCTION ductape.grant_usage(role name) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM ductape._role_arg(role);
    EXECUTE format('GRANT USAGE ON SCHEMA ductape TO %I', role);
    EXECUTE format('GRANT EXECUTE ON FUNCTION
        ductape.run(text, text, jsonb, text, text, jsonb),
        ductape.run_response(text, text, jsonb, text, text, jsonb),
        ductape.http(text, text, jsonb, jsonb, jsonb),
        ductape.describe(text, text),
        ductape.dispatch(text, text, jsonb, text, text, timestamptz, text, regprocedure, regprocedure, jsonb),
        ductape.job(bigint), ductape.wait(bigint, interval), ductape.cancel(bigint),
        ductape.retry(bigint), ductape.on_row(), ductape.publish(text, jsonb, text),
        ductape._stats(), ductape._limits(),
        ductape.workflow_start(text, jsonb, text, text, text), ductape.workflow_status(bigint),
        ductape.workflow_cancel(bigint), ductape.version() TO %I', role);
    EXECUTE format('GRANT SELECT ON ductape.calls, ductape.stats, ductape.limits, ductape.jobs, ductape.queue,
        ductape.webhook_events, ductape.messages, ductape.outbox, ductape.deliveries,
        ductape.workflow_runs, ductape.workflow_steps TO %I', role);
END
$$;
COMMENT ON FUNCTION ductape.grant_usage(name) IS
    'Grants a role what an application needs: calls, jobs, publishing, workflow runs, describe, '
    'version, and reading its own rows of calls, jobs, webhook events, messages, deliveries and '
    'runs. Superusers.';

-- Usage plus defining apps, products, config, variables, secrets, webhooks,
-- endpoints and workflows.  (rotate_master_key writes the key file and
-- stays with superusers.)
CREATE FUNCTION ductape.grant_admin(role name) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM ductape.grant_usage(role);
    EXECUTE format('GRANT EXECUTE ON FUNCTION
        ductape.app_define(jsonb), ductape.app_create(text, text, text),
        ductape.action_define(text, jsonb), ductape.app_export(text), ductape.app_drop(text),
        ductape.app_drop(text, boolean),
        ductape.import_openapi(text, text, boolean, text), ductape.import_postman(jsonb, text, boolean),
        ductape.workflow_define(jsonb), ductape.workflow_drop(text),
        ductape.variable_set(text, text, jsonb, text, text),
        ductape.product_create(text, text, text[]), ductape.product_connect(text, text, jsonb),
        ductape.config(text, jsonb, text, text),
        ductape.action_drop(text, text, boolean), ductape.product_drop(text, boolean),
        ductape.product_disconnect(text, text, boolean), ductape.config_unset(text, text, text),
        ductape.variable_unset(text, text, text, text), ductape.webhook_event_retry(bigint),
        ductape.stats_reset(), ductape._stats_info(),
        ductape.secret_set(text, text, text, text[], text[], timestamptz),
        ductape.secret_get(text), ductape.secret_drop(text),
        ductape.oauth_set_tokens(text, text, text, integer, text, text),
        ductape.webhook_url(text, text, text, text),
        ductape.webhook_subscribe(text, text, text, regprocedure), ductape.webhook_unsubscribe(bigint),
        ductape.endpoint_create(text, text[], text, text, jsonb), ductape.endpoint_secret(bigint),
        ductape.endpoint_rotate_secret(bigint), ductape.endpoint_disable(bigint),
        ductape.endpoint_enable(bigint), ductape.endpoint_delete(bigint),
        ductape.message_retry(text, bigint), ductape.health() TO %I', role);
    -- the definition checks are plain SQL run as the caller; not the
    -- implementations behind the caller proxy, nor the workflow engine.
    -- (Named here, not put back together from pg_proc: a new internal
    -- function is added to this list; sql/privileges.sql shows every one.)
    EXECUTE format('GRANT EXECUTE ON FUNCTION
        ductape._action_body(jsonb), ductape._app_row(text), ductape._catalog_changed(),
        ductape._check_action(jsonb, text, jsonb, jsonb), ductape._check_app(jsonb),
        ductape._check_auth(jsonb), ductape._check_int(jsonb, text, bigint, bigint),
        ductape._check_keys(jsonb, text, text[]), ductape._check_limits(jsonb, text),
        ductape._check_request_type(jsonb, text),
        ductape._check_retries(jsonb, text), ductape._check_step_call(jsonb, text),
        ductape._check_tag(jsonb, text, boolean), ductape._check_type(jsonb, text, text[]),
        ductape._check_webhook(jsonb, text, jsonb, jsonb), ductape._check_workflow(jsonb),
        ductape._condition_check(text, text), ductape._condition_eval(text, jsonb),
        ductape._deref(jsonb, jsonb, text), ductape._document_parse(text, text),
        ductape._drop_bad_patterns(jsonb, text[]), ductape._endpoint_check(text, text[], jsonb),
        ductape._endpoint_check_url(text), ductape._endpoint_row(bigint),
        ductape._endpoint_seal(bigint, text), ductape._example_schema(jsonb),
        ductape._import_auth(text, text, text, text), ductape._import_check_exists(text, boolean),
        ductape._import_define(jsonb), ductape._import_refuse(text, text[], text),
        ductape._json_refs(jsonb), ductape._kebab(text),
        ductape._openapi_action(jsonb, text, jsonb, text, text), ductape._openapi_auth(jsonb, text),
        ductape._openapi_resource(text), ductape._placement(jsonb, text, jsonb),
        ductape._pointer_escape(text), ductape._postman_requests(jsonb, text, text),
        ductape._postman_template(text), ductape._product_env(ductape.products, text),
        ductape._product_row(text), ductape._raise_invalid(text, text[]), ductape._ref_path(text),
        ductape._ref_target(jsonb, text), ductape._schema_bad_patterns(jsonb),
        ductape._schema_check(jsonb, text), ductape._schema_validate(jsonb, jsonb),
        ductape._signature_check(jsonb, text, jsonb, text, timestamptz),
        ductape._signature_standard(text, text, bigint, text), ductape._tag_arg(text, text),
        ductape._template_errors(jsonb, text, jsonb, jsonb), ductape._template_steps(jsonb),
        ductape._type_matches(text, text), ductape._unique_tag(text, text[]),
        ductape._unique_tags(jsonb[]), ductape._wake_worker(), ductape._webhook_listen_address(),
        ductape._webhook_spec(ductape.apps, text), ductape._with_refs(jsonb, jsonb),
        ductape._workflow_apply(jsonb, jsonb), ductape._workflow_row(text),
        ductape._workflow_template_errors(jsonb, text) TO %I', role);
    -- (the remaining internal C functions are STRICT: NULL in, NULL out)
    -- (secret_set writes _secrets as its caller, in C, encrypting first;
    -- a row there says nothing about who runs what)
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ductape.apps, ductape.actions,
        ductape.variables, ductape.products, ductape.product_apps, ductape.configs,
        ductape._secrets TO %I', role);
    EXECUTE format('GRANT SELECT ON ductape._webhook_tokens, ductape.webhook_subscriptions,
        ductape.endpoints, ductape.workflows, ductape.secrets TO %I', role);
    EXECUTE format('GRANT UPDATE (url, event_types, description, headers) ON ductape.endpoints TO %I', role);
END
$$;
COMMENT ON FUNCTION ductape.grant_admin(name) IS
    'Grants a role usage plus defining apps, products, config, variables, secrets, OAuth2 '
    'tokens, webhooks, endpoints and workflows; such a role reads every row. Superusers.';

-- revoke_usage and revoke_admin, like grant_usage and grant_admin, are
-- for the extension's owner and superusers (nobody is granted them).  They
-- refuse the roles revoking from would break ductape or do nothing for:
-- the extension's owner (ductape's own functions run as it) and
-- superusers (they bypass privileges).
CREATE FUNCTION ductape._revocable_role(role name) RETURNS oid
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r oid := ductape._role_arg(role);
BEGIN
    IF r = (SELECT e.extowner FROM pg_extension e WHERE e.extname = 'ductape') THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('cannot revoke ductape from role "%s": it owns the extension', role),
            DETAIL = 'ductape''s own functions and background workers act as the extension''s owner.';
    END IF;
    IF (SELECT a.rolsuper FROM pg_roles a WHERE a.oid = r) THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('cannot revoke ductape from role "%s": it is a superuser', role),
            DETAIL = 'A superuser bypasses every privilege check, so revoking would change nothing.',
            HINT = format('Take superuser away first (ALTER ROLE %I NOSUPERUSER).', role);
    END IF;
    RETURN r;
END
$$;
COMMENT ON FUNCTION ductape._revocable_role(name) IS
    'Checks a role named to revoke_usage or revoke_admin: it exists and is neither the extension''s owner nor a superuser.';

-- Take every privilege on ductape's schema and objects away from a role
-- (what grant_usage and grant_admin gave, and any other grant made on
-- them by their owner).  Its rows (jobs, calls, messages, events, runs)
-- stay; jobs it queued still run.  What it inherits from other roles stays.
CREATE FUNCTION ductape.revoke_usage(role name) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM ductape._revocable_role(role);
    EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA ductape FROM %I', role);
    EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA ductape FROM %I', role);
    EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA ductape FROM %I', role);
    EXECUTE format('REVOKE ALL ON SCHEMA ductape FROM %I', role);
END
$$;
COMMENT ON FUNCTION ductape.revoke_usage(name) IS
    'Takes every ductape privilege away from a role (usage and admin); its rows stay. For the extension''s owner and superusers.';

-- Take the admin privileges away, keeping usage (when the role had it).
CREATE FUNCTION ductape.revoke_admin(role name) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r oid := ductape._revocable_role(role);
    had_usage boolean;
BEGIN
    SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace n, pg_catalog.aclexplode(n.nspacl) x
                    WHERE n.nspname OPERATOR(pg_catalog.=) 'ductape' AND x.grantee OPERATOR(pg_catalog.=) r
                      AND x.privilege_type OPERATOR(pg_catalog.=) 'USAGE')
      INTO had_usage;
    PERFORM ductape.revoke_usage(role);
    IF had_usage THEN
        PERFORM ductape.grant_usage(role);
    END IF;
END
$$;
COMMENT ON FUNCTION ductape.revoke_admin(name) IS
    'Takes the admin privileges away from a role, keeping what grant_usage gives (when it had it). For the extension''s owner and superusers.';

-- Nothing is granted to PUBLIC; revoke the default EXECUTE on functions.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA ductape FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA ductape FROM PUBLIC;
