-- ductape SQL source: secrets and OAuth2 tokens.
--
-- Secrets are encrypted in C (src/secrets.c, AES-256-GCM with the master
-- key) before a row is written; the plaintext is never stored.  OAuth2
-- tokens (src/oauth.c) are kept per (product, app, env), encrypted the
-- same way.

-- value is nonce || AES-256-GCM ciphertext || tag.
CREATE TABLE ductape._secrets (
    name        text PRIMARY KEY,
    value       bytea NOT NULL,
    key_version integer NOT NULL,
    description text,
    apps        text[],
    envs        text[],
    expires_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- OAuth2 tokens per (product, app, env), encrypted like secrets.
CREATE TABLE ductape._oauth_tokens (
    product       text NOT NULL REFERENCES ductape.products (tag) ON DELETE CASCADE,
    app           text NOT NULL REFERENCES ductape.apps (tag) ON DELETE CASCADE,
    env           text NOT NULL,
    access_token  bytea NOT NULL,
    refresh_token bytea,
    key_version   integer NOT NULL,
    expires_at    timestamptz,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (product, app, env)
);

CREATE VIEW ductape.secrets AS
SELECT name, description, apps, envs, expires_at, created_at, updated_at FROM ductape._secrets;

CREATE FUNCTION ductape.secret_set(name text, value text, description text DEFAULT NULL,
                                   apps text[] DEFAULT NULL, envs text[] DEFAULT NULL,
                                   expires_at timestamptz DEFAULT NULL)
RETURNS void LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_secret_set';

CREATE FUNCTION ductape.secret_get(name text) RETURNS text
LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'dt_secret_get';

CREATE FUNCTION ductape.secret_drop(name text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM ductape._secrets s WHERE s.name = secret_drop.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '42704',
            MESSAGE = format('secret "%s" does not exist', secret_drop.name);
    END IF;
END
$$;

CREATE FUNCTION ductape.rotate_master_key() RETURNS integer
LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_rotate_master_key';

CREATE FUNCTION ductape.oauth_set_tokens(app text, access_token text, refresh_token text DEFAULT NULL,
                                         expires_in integer DEFAULT NULL, env text DEFAULT NULL,
                                         product text DEFAULT NULL)
RETURNS void LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_oauth_set_tokens';

-- pg_dump keeps them, still encrypted: they open again with the same
-- master key.
SELECT pg_catalog.pg_extension_config_dump('ductape._secrets', '');
SELECT pg_catalog.pg_extension_config_dump('ductape._oauth_tokens', '');
