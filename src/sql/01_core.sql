-- ductape SQL source: the core.
--
-- The schema's privileges, the library's general entry points (its
-- version, who called a ductape function, waking the worker), and the
-- helpers every definition check uses: templates, JSON Schema, tags, types,
-- keys, integers, and the error that lists every problem.
--
-- This file and the others in src/sql/ are concatenated by make, in the
-- order the Makefile gives, into ductape--<version>.sql, the script a
-- fresh CREATE EXTENSION runs.  A change here is also written into the
-- next upgrade script; sql/upgrade.sql proves the two agree
-- (CONTRIBUTING.md, "Changing the SQL").

-- Nothing in this schema is granted to PUBLIC.
REVOKE ALL ON SCHEMA ductape FROM PUBLIC;
COMMENT ON SCHEMA ductape IS
    'ductape: third-party API integrations run from inside the database. Nothing here is '
    'granted to PUBLIC: ductape.grant_usage and ductape.grant_admin give roles what they need.';

---------------------------------------------------------------------------
-- The library's entry points
---------------------------------------------------------------------------
-- An upgrade script's GRANTs and REVOKEs are recorded as the objects'
-- initial privileges (pg_init_privs), and with them every role the
-- database had granted ductape to by then; pg_dump leaves initial
-- privileges out of a dump, so a database updated and then dumped lost its
-- roles' ductape privileges on restore.  Every upgrade script ends by
-- calling this: of what the scripts recorded, keep what a fresh install
-- records (the owner's privileges and PUBLIC's), forget the roles'.
CREATE FUNCTION ductape._forget_granted_initial_privileges() RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    WITH member AS (
        SELECT d.classid, d.objid FROM pg_catalog.pg_depend d
         WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.deptype = 'e'
           AND d.refobjid = (SELECT e.oid FROM pg_catalog.pg_extension e WHERE e.extname = 'ductape')
        UNION ALL
        SELECT 'pg_catalog.pg_namespace'::pg_catalog.regclass::pg_catalog.oid,
               'ductape'::pg_catalog.regnamespace::pg_catalog.oid),
    kept AS (
        SELECT ip.classoid, ip.objoid, ip.objsubid,
               (SELECT pg_catalog.array_agg(u.item ORDER BY u.n)
                  FROM pg_catalog.unnest(ip.initprivs) WITH ORDINALITY u(item, n)
                 WHERE EXISTS (SELECT FROM pg_catalog.aclexplode(ARRAY[u.item]) x
                                WHERE x.grantee OPERATOR(pg_catalog.=) 0
                                   OR x.grantee OPERATOR(pg_catalog.=) x.grantor)) AS acl
          FROM pg_catalog.pg_init_privs ip
         WHERE ip.privtype OPERATOR(pg_catalog.=) 'e'
           AND (ip.classoid, ip.objoid) IN (SELECT classid, objid FROM member)),
    dropped AS (
        DELETE FROM pg_catalog.pg_init_privs ip USING kept k
         WHERE ip.classoid OPERATOR(pg_catalog.=) k.classoid AND ip.objoid OPERATOR(pg_catalog.=) k.objoid
           AND ip.objsubid OPERATOR(pg_catalog.=) k.objsubid AND ip.privtype OPERATOR(pg_catalog.=) 'e'
           AND k.acl IS NULL)
    UPDATE pg_catalog.pg_init_privs ip SET initprivs = k.acl FROM kept k
     WHERE ip.classoid OPERATOR(pg_catalog.=) k.classoid AND ip.objoid OPERATOR(pg_catalog.=) k.objoid
       AND ip.objsubid OPERATOR(pg_catalog.=) k.objsubid AND ip.privtype OPERATOR(pg_catalog.=) 'e'
       AND k.acl IS NOT NULL
$$;


-- Which SQL objects (this extension's version) and which library
-- (ductape.so, loaded at server start) are in use: they differ after new
-- binaries are installed until ALTER EXTENSION ductape UPDATE runs.
CREATE FUNCTION ductape.version() RETURNS jsonb
    AS 'MODULE_PATHNAME', 'dt_version' LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION ductape.version() IS
    'Returns {"extension": ..., "library": ...}: the version of the installed SQL objects and '
    'of the loaded library, which differ after new binaries are installed until ALTER EXTENSION '
    'ductape UPDATE. Usage roles.';

-- What an operator or a probe checks (docs/reference.md, "Metrics and
-- health"): workers, listener, queue depths, the master key file, dropped
-- call records, and an overall ok.  Administrators (grant_admin).
CREATE FUNCTION ductape.health() RETURNS jsonb
    AS 'MODULE_PATHNAME', 'dt_health' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION ductape.health() IS
    'ductape''s health as jsonb: ok, problems, this database''s worker, every database''s worker, the listener, jobs per state and the oldest due job''s wait, deliveries waiting, endpoints disabled, webhook events waiting, whether the master key file is readable, call records dropped.';

-- Who called the ductape function being run (current_user at the call);
-- fails anywhere else.  The SECURITY DEFINER implementations behind the
-- caller proxy (src/gate.c) read it.
CREATE FUNCTION ductape._caller() RETURNS name
    AS 'MODULE_PATHNAME', 'dt_caller' LANGUAGE c STABLE;

-- Wake this database's worker when the transaction commits.
CREATE FUNCTION ductape._wake_worker() RETURNS void
LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_wake_worker';

---------------------------------------------------------------------------
-- Definition checks: every problem is collected as "/json/pointer: reason"
---------------------------------------------------------------------------

-- Templates ($Secret{...}, $Variable{...}, ...) in a part of a definition.
CREATE FUNCTION ductape._template_errors(tpl jsonb, path text, constants jsonb, variables jsonb)
RETURNS text[] LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'dt_template_errors';

-- JSON Schema: problems with a schema, and the violations of an instance,
-- each as "/json/pointer: reason".
CREATE FUNCTION ductape._schema_check(schema jsonb, path text)
RETURNS text[] LANGUAGE c IMMUTABLE STRICT AS 'MODULE_PATHNAME', 'dt_schema_check';
CREATE FUNCTION ductape._schema_validate(schema jsonb, instance jsonb)
RETURNS text[] LANGUAGE c IMMUTABLE STRICT AS 'MODULE_PATHNAME', 'dt_schema_validate';
COMMENT ON FUNCTION ductape._schema_validate(jsonb,jsonb) IS
    'Internal, for debugging: the violations of an instance against a JSON Schema, as run lists '
    'them (an empty array: valid). Admins.';

-- The generic rules of a definition have one implementation, the
-- library's (src/catalog.c), which the action rules (_check_action) are
-- made of too: a tag (required unless told otherwise), a JSON type among
-- types, the keys allowed in an object (the unknown ones in the database's
-- collation order), an integer within [lo, hi].  Not strict: a NULL value
-- is absent (a problem only for a required tag), a NULL argument otherwise
-- is taken as the SQL versions before 0.3.0 took it.
CREATE FUNCTION ductape._check_tag(val jsonb, path text, required boolean DEFAULT true)
RETURNS text[] AS 'MODULE_PATHNAME', 'dt_check_tag' LANGUAGE c IMMUTABLE;
CREATE FUNCTION ductape._check_type(val jsonb, path text, types text[])
RETURNS text[] AS 'MODULE_PATHNAME', 'dt_check_type' LANGUAGE c IMMUTABLE;
CREATE FUNCTION ductape._check_keys(obj jsonb, path text, allowed text[])
RETURNS text[] AS 'MODULE_PATHNAME', 'dt_check_keys' LANGUAGE c IMMUTABLE;
CREATE FUNCTION ductape._check_int(val jsonb, path text, lo bigint, hi bigint)
RETURNS text[] AS 'MODULE_PATHNAME', 'dt_check_int' LANGUAGE c IMMUTABLE;

-- Refuse a definition with every problem found (22023), or do nothing.
CREATE FUNCTION ductape._raise_invalid(what text, errs text[]) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF cardinality(errs) > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('invalid %s', what),
            DETAIL = array_to_string(errs, E'\n'),
            HINT = 'Fix each listed path (a JSON pointer into the definition) and define it again; nothing was stored.';
    END IF;
END
$$;
