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
COMMENT ON TABLE ductape._secrets IS
    'Internal storage of secrets, encrypted before they are written; read them through the '
    'secrets view. Written by secret_set and secret_drop; admins may read and write it.';
COMMENT ON COLUMN ductape._secrets.name IS 'The secret''s name, as in $Secret{NAME}.';
COMMENT ON COLUMN ductape._secrets.value IS
    'The value, encrypted with AES-256-GCM under the master key (nonce, ciphertext, tag), bound '
    'to the name; never the plaintext.';
COMMENT ON COLUMN ductape._secrets.key_version IS
    'The master key version that encrypted the value.';
COMMENT ON COLUMN ductape._secrets.description IS 'What the secret is, for people; NULL: none.';
COMMENT ON COLUMN ductape._secrets.apps IS 'The apps that may use it; NULL: any.';
COMMENT ON COLUMN ductape._secrets.envs IS 'The envs in which it may be used; NULL: any.';
COMMENT ON COLUMN ductape._secrets.expires_at IS 'From when it can no longer be used; NULL: never.';
COMMENT ON COLUMN ductape._secrets.created_at IS 'When it was first set.';
COMMENT ON COLUMN ductape._secrets.updated_at IS 'When it was last set.';
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
COMMENT ON TABLE ductape._oauth_tokens IS
    'Internal: the OAuth2 tokens of an app per (product, app, env), encrypted like secrets. '
    'Written by the worker and oauth_set_tokens; nobody is granted it.';
COMMENT ON COLUMN ductape._oauth_tokens.product IS 'The product the tokens are for.';
COMMENT ON COLUMN ductape._oauth_tokens.app IS 'The app the tokens are for.';
COMMENT ON COLUMN ductape._oauth_tokens.env IS 'The app env the tokens are for.';
COMMENT ON COLUMN ductape._oauth_tokens.access_token IS 'The access token, encrypted.';
COMMENT ON COLUMN ductape._oauth_tokens.refresh_token IS
    'The refresh token, encrypted; NULL: none.';
COMMENT ON COLUMN ductape._oauth_tokens.key_version IS
    'The master key version that encrypted the tokens.';
COMMENT ON COLUMN ductape._oauth_tokens.expires_at IS
    'When the access token expires; NULL: unknown.';
COMMENT ON COLUMN ductape._oauth_tokens.updated_at IS 'When the tokens were last stored.';

CREATE VIEW ductape.secrets AS
SELECT name, description, apps, envs, expires_at, created_at, updated_at FROM ductape._secrets;
COMMENT ON VIEW ductape.secrets IS 'One row per secret, without its value. Admins.';
COMMENT ON COLUMN ductape.secrets.name IS 'The secret''s name, as in $Secret{NAME}.';
COMMENT ON COLUMN ductape.secrets.description IS 'What the secret is, for people; NULL: none.';
COMMENT ON COLUMN ductape.secrets.apps IS 'The apps that may use it; NULL: any.';
COMMENT ON COLUMN ductape.secrets.envs IS 'The envs in which it may be used; NULL: any.';
COMMENT ON COLUMN ductape.secrets.expires_at IS 'From when it can no longer be used; NULL: never.';
COMMENT ON COLUMN ductape.secrets.created_at IS 'When it was first set.';
COMMENT ON COLUMN ductape.secrets.updated_at IS 'When it was last set.';

CREATE FUNCTION ductape.secret_set(name text, value text, description text DEFAULT NULL,
                                   apps text[] DEFAULT NULL, envs text[] DEFAULT NULL,
                                   expires_at timestamptz DEFAULT NULL)
RETURNS void LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_secret_set';
COMMENT ON FUNCTION ductape.secret_set(text,text,text,text[],text[],timestamptz) IS
    'Creates or replaces a secret: name, value, description, the apps and envs that may use it '
    '(NULL: any) and an expiry (NULL: never). The value is encrypted before it is stored and '
    'never reaches a table or the server log. Admins.';

CREATE FUNCTION ductape.secret_get(name text) RETURNS text
LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'dt_secret_get';
COMMENT ON FUNCTION ductape.secret_get(text) IS
    'Returns the decrypted value of a secret. Admins: being allowed to execute it is what makes '
    'a role an administrator for row-level security.';

CREATE FUNCTION ductape.secret_drop(name text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM ductape._secrets s WHERE s.name = secret_drop.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '42704',
            MESSAGE = format('secret "%s" does not exist', secret_drop.name);
    END IF;
END
$$;
COMMENT ON FUNCTION ductape.secret_drop(text) IS
    'Deletes a secret; 42704 if there is none by that name. Admins.';

CREATE FUNCTION ductape.rotate_master_key() RETURNS integer
LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_rotate_master_key';
COMMENT ON FUNCTION ductape.rotate_master_key() IS
    'Appends a new key version to the master key file and re-encrypts every secret, OAuth2 '
    'token and endpoint secret under it, in the current transaction. Returns how many values it '
    're-encrypted. Superusers only.';

CREATE FUNCTION ductape.oauth_set_tokens(app text, access_token text, refresh_token text DEFAULT NULL,
                                         expires_in integer DEFAULT NULL, env text DEFAULT NULL,
                                         product text DEFAULT NULL)
RETURNS void LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'dt_oauth_set_tokens';
COMMENT ON FUNCTION ductape.oauth_set_tokens(text,text,text,integer,text,text) IS
    'Stores OAuth2 tokens obtained elsewhere (an authorization-code flow) for (product, app, '
    'env), encrypted; expires_in in seconds, NULL: no expiry known. The app must use oauth2 '
    'auth. Admins.';

-- pg_dump keeps them, still encrypted: they open again with the same
-- master key.
SELECT pg_catalog.pg_extension_config_dump('ductape._secrets', '');
SELECT pg_catalog.pg_extension_config_dump('ductape._oauth_tokens', '');
