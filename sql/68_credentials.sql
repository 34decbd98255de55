-- Aggregate 15, Credential (CRM): an integration secret (API key, basic auth,
-- OAuth token pair).
--
-- Secrets are never stored in plaintext: encrypted_value and the OAuth tokens
-- hold pgcrypto's pgp_sym_encrypt() output (OpenPGP symmetric encryption,
-- AES-256 with a random session key and an integrity check, so no separate
-- nonce column is needed).  The key is the setting ventros.secret_key, which
-- only superusers can read or set (src/guc.c): it lives in postgresql.conf,
-- not in the database, its dumps or its WAL.  Tenant roles cannot read it, so
-- encryption and decryption run in two SECURITY DEFINER functions owned by
-- the installing superuser; they filter by the acting tenant themselves,
-- since RLS does not bind their owner.  The ciphertext columns are redacted
-- from every event payload.

CREATE TABLE ventros.credentials (
    id                  uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id           text        NOT NULL,
    version             integer     NOT NULL DEFAULT 1,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    project_id          uuid,
    credential_type     text        NOT NULL,
    name                text        NOT NULL,
    description         text,
    encrypted_value     bytea       NOT NULL,
    oauth_access_token  bytea,
    oauth_refresh_token bytea,
    oauth_token_type    text        NOT NULL DEFAULT 'Bearer',
    oauth_expires_at    timestamptz,
    metadata            jsonb       NOT NULL DEFAULT '{}',
    is_active           boolean     NOT NULL DEFAULT true,
    expires_at          timestamptz,
    last_used_at        timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id) ON DELETE SET NULL (project_id),
    CONSTRAINT credentials_type_known CHECK (credential_type IN ('meta_whatsapp_cloud', 'meta_ads', 'meta_conversions_api',
        'google_ads', 'google_analytics', 'webhook_auth', 'api_key', 'basic_auth', 'waha_instance')),
    CONSTRAINT credentials_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT credentials_oauth_types CHECK (oauth_access_token IS NULL OR credential_type ~ '^(meta|google)_'),
    CONSTRAINT credentials_metadata_object CHECK (jsonb_typeof(metadata) = 'object'),
    CONSTRAINT credentials_description_size CHECK (length(description) <= 2000)
);
CREATE UNIQUE INDEX credentials_unique_name ON ventros.credentials
    (tenant_id, coalesce(project_id, '00000000-0000-0000-0000-000000000000'::uuid), name) WHERE deleted_at IS NULL;
CREATE INDEX credentials_expiring ON ventros.credentials (tenant_id, expires_at) WHERE is_active AND deleted_at IS NULL;
COMMENT ON TABLE ventros.credentials IS 'Credential: an integration secret, encrypted with pgp_sym_encrypt under ventros.secret_key';

SELECT ventros.register_aggregate('credential', 'ventros.credentials', 'crm',
    state_column => 'is_active',
    transitions => '[
        {"from": null, "to": "true"},
        {"from": "true", "to": "false", "event": "credential.deactivated", "description": "A credential was deactivated."},
        {"from": "false", "to": "true", "event": "credential.activated", "description": "A credential was activated."}
    ]',
    redacted_columns => '{encrypted_value, oauth_access_token, oauth_refresh_token}',
    privileges => '{"ventros_viewer": ["SELECT"], "ventros_admin": ["INSERT", "UPDATE", "DELETE"]}',
    description => 'An encrypted integration secret');
SELECT ventros.register_quiet_columns('credential', '{last_used_at}');
SELECT ventros.register_event_type('credential.oauth_refreshed', 'The OAuth tokens of a credential were set or refreshed.');
SELECT ventros.register_event_type('credential.used', 'The secret of a credential was read for use.');
SELECT ventros.register_event_type('credential.expired', 'A credential passed its expiry and was deactivated.');

-- The two functions that touch the key; pgcrypto's schema is found at install
-- time (CREATE EXTENSION ventros CASCADE puts it where the caller chose).
DO $crypto$
DECLARE
    crypto_schema text := (SELECT n.nspname FROM pg_catalog.pg_extension e
                           JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace
                           WHERE e.extname OPERATOR(pg_catalog.=) 'pgcrypto');
BEGIN
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION ventros.encrypt_secret(plaintext text) RETURNS bytea
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER
        SET search_path = pg_catalog, pg_temp
        AS $body$
        DECLARE
            key text := current_setting('ventros.secret_key');
        BEGIN
            IF plaintext IS NULL OR btrim(plaintext) = '' THEN
                RAISE EXCEPTION 'secret value must not be empty' USING ERRCODE = '23502';
            END IF;
            IF length(key) < 16 THEN
                RAISE EXCEPTION 'ventros.secret_key is not set'
                    USING ERRCODE = '55000',
                          HINT = 'A superuser sets ventros.secret_key (16 characters or more) in postgresql.conf.';
            END IF;
            RETURN %1$I.pgp_sym_encrypt(ventros.check_length(plaintext, 16384, 'secret value'), key,
                                        'cipher-algo=aes256, compress-algo=0');
        END
        $body$$f$, crypto_schema);
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION ventros.decrypt_secret(ciphertext bytea) RETURNS text
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER
        SET search_path = pg_catalog, pg_temp
        AS $body$
        BEGIN
            RETURN %1$I.pgp_sym_decrypt(ciphertext, current_setting('ventros.secret_key'));
        EXCEPTION WHEN external_routine_exception OR data_exception THEN
            RAISE EXCEPTION 'secret cannot be decrypted with the current ventros.secret_key'
                USING ERRCODE = '55000', HINT = 'Was the key changed? Re-enter the secret.';
        END
        $body$$f$, crypto_schema);
END
$crypto$;
COMMENT ON FUNCTION ventros.encrypt_secret(text) IS
    'Encrypts a secret with pgp_sym_encrypt under ventros.secret_key (55000 when unset); SECURITY DEFINER';
COMMENT ON FUNCTION ventros.decrypt_secret(bytea) IS
    'Decrypts a secret (internal: granted to nobody; reveal_credential is the only caller)';
REVOKE EXECUTE ON FUNCTION ventros.decrypt_secret(bytea) FROM PUBLIC;

CREATE FUNCTION ventros.create_credential(name text, credential_type text, value text, project_id uuid DEFAULT NULL,
                                          description text DEFAULT NULL, expires_at timestamptz DEFAULT NULL,
                                          metadata jsonb DEFAULT '{}')
RETURNS ventros.credentials
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.credentials;
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'credential name must not be null' USING ERRCODE = '23502';
    END IF;
    PERFORM ventros.require_value(credential_type, ARRAY['meta_whatsapp_cloud', 'meta_ads', 'meta_conversions_api',
        'google_ads', 'google_analytics', 'webhook_auth', 'api_key', 'basic_auth', 'waha_instance'], 'credential type');
    INSERT INTO ventros.credentials (project_id, credential_type, name, description, encrypted_value, expires_at, metadata)
    VALUES (project_id, credential_type, ventros.check_length(btrim(name), 200, 'credential name'), description,
            ventros.encrypt_secret(value), expires_at,
            coalesce(ventros.require_json(metadata, 'object', 'credential metadata'), '{}'))
    RETURNING * INTO result;
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'a credential named "%" exists already', name USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.create_credential(text, text, text, uuid, text, timestamptz, jsonb) IS
    'Creates a credential, encrypting value (never stored in plaintext); emits credential.created';

CREATE FUNCTION ventros.update_credential(credential_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.credentials
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN ventros.apply_changes(NULL::ventros.credentials, 'credential', credential_id, expected_version, changes,
        ARRAY['name', 'description', 'metadata', 'project_id', 'expires_at']);
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'a credential named "%" exists already', changes->>'name' USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.update_credential(uuid, integer, jsonb) IS
    'Changes name, description, metadata, project or expiry; emits credential.updated';

CREATE FUNCTION ventros.set_credential_value(credential_id uuid, expected_version integer, value text)
RETURNS ventros.credentials
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    -- encrypted_value is redacted from payloads: the event says that the
    -- secret changed (the version moved), not what it is.
    SELECT ventros.apply_changes(NULL::ventros.credentials, 'credential', credential_id, expected_version,
        jsonb_build_object('encrypted_value', ventros.encrypt_secret(value)), ARRAY['encrypted_value'])
$$;
COMMENT ON FUNCTION ventros.set_credential_value(uuid, integer, text) IS
    'Replaces the secret (encrypted); emits credential.updated without the value';

CREATE FUNCTION ventros.set_credential_oauth(credential_id uuid, expected_version integer, access_token text,
                                             refresh_token text DEFAULT NULL, expires_at timestamptz DEFAULT NULL,
                                             token_type text DEFAULT 'Bearer')
RETURNS ventros.credentials
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current ventros.credentials := ventros.get_credential(credential_id);
    result ventros.credentials;
BEGIN
    IF current.credential_type !~ '^(meta|google)_' THEN
        RAISE EXCEPTION 'credential % of type % has no OAuth tokens', credential_id, current.credential_type
            USING ERRCODE = '22023', HINT = 'Only meta_* and google_* credentials hold OAuth tokens.';
    END IF;
    -- bytea travels through jsonb as its text form; jsonb_populate_record reads it back.
    result := ventros.change_row(NULL::ventros.credentials, 'credential', credential_id, expected_version,
        jsonb_build_object('oauth_access_token', ventros.encrypt_secret(access_token),
                           'oauth_refresh_token', CASE WHEN refresh_token IS NOT NULL THEN ventros.encrypt_secret(refresh_token)
                                                       ELSE current.oauth_refresh_token END,
                           'oauth_expires_at', expires_at, 'oauth_token_type', coalesce(token_type, 'Bearer')));
    PERFORM ventros.emit('credential.oauth_refreshed', 'credential', result.id,
        jsonb_build_object('oauth_expires_at', expires_at, 'oauth_token_type', result.oauth_token_type), result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.set_credential_oauth(uuid, integer, text, text, timestamptz, text) IS
    'Sets or refreshes the OAuth tokens (meta_* and google_* types only, 22023); emits credential.updated and credential.oauth_refreshed';

CREATE FUNCTION ventros.activate_credential(credential_id uuid, expected_version integer)
RETURNS ventros.credentials
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.change_row(NULL::ventros.credentials, 'credential', credential_id, expected_version, '{"is_active": true}') $$;
COMMENT ON FUNCTION ventros.activate_credential(uuid, integer) IS 'Activates a credential; emits credential.activated';

CREATE FUNCTION ventros.deactivate_credential(credential_id uuid, expected_version integer)
RETURNS ventros.credentials
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.change_row(NULL::ventros.credentials, 'credential', credential_id, expected_version, '{"is_active": false}') $$;
COMMENT ON FUNCTION ventros.deactivate_credential(uuid, integer) IS 'Deactivates a credential; emits credential.deactivated';

-- reveal_credential: the plaintext for a caller about to use it (a channel
-- worker, the webhook sender).  SECURITY DEFINER to decrypt; it reads only
-- the acting tenant's row and records the use.
CREATE FUNCTION ventros.reveal_credential(credential_id uuid)
RETURNS TABLE (value text, oauth_access_token text, oauth_refresh_token text, oauth_token_type text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    current ventros.credentials;
BEGIN
    SELECT * INTO current FROM ventros.credentials c
    WHERE c.tenant_id = tenant AND c.id = credential_id AND c.deleted_at IS NULL
    FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('credential', credential_id);
    END IF;
    IF NOT current.is_active OR current.expires_at <= now() THEN
        RAISE EXCEPTION 'credential % is %', credential_id, CASE WHEN current.is_active THEN 'expired' ELSE 'inactive' END
            USING ERRCODE = '55000', HINT = 'Activate it, or renew it with ventros.set_credential_value().';
    END IF;
    UPDATE ventros.credentials c SET last_used_at = now(), version = c.version
    WHERE c.tenant_id = tenant AND c.id = credential_id;
    PERFORM ventros.emit('credential.used', 'credential', credential_id, jsonb_build_object('credential_type', current.credential_type),
                         current.version);
    RETURN QUERY SELECT ventros.decrypt_secret(current.encrypted_value),
                        CASE WHEN current.oauth_access_token IS NOT NULL THEN ventros.decrypt_secret(current.oauth_access_token) END,
                        CASE WHEN current.oauth_refresh_token IS NOT NULL THEN ventros.decrypt_secret(current.oauth_refresh_token) END,
                        current.oauth_token_type;
END
$$;
COMMENT ON FUNCTION ventros.reveal_credential(uuid) IS
    'Decrypts an active, unexpired credential of the acting tenant for use (55000 otherwise); sets last_used_at (quiet) and emits credential.used';

-- expire_credentials: deactivates the acting tenant's credentials past expires_at.
CREATE FUNCTION ventros.expire_credentials() RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    expired ventros.credentials;
    n integer := 0;
BEGIN
    FOR expired IN
        UPDATE ventros.credentials c SET is_active = false, version = c.version
        WHERE c.tenant_id = ventros.require_tenant() AND c.is_active AND c.expires_at <= now()
        RETURNING c.*
    LOOP
        PERFORM ventros.emit('credential.expired', 'credential', expired.id,
                             jsonb_build_object('expires_at', expired.expires_at), expired.version);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.expire_credentials() IS
    'Deactivates the acting tenant''s expired credentials; emits credential.deactivated and credential.expired for each; returns how many';

CREATE FUNCTION ventros.get_credential(credential_id uuid) RETURNS ventros.credentials
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.get_row(NULL::ventros.credentials, 'credential', credential_id) $$;
COMMENT ON FUNCTION ventros.get_credential(uuid) IS 'A live credential (ciphertext only), or P0002';

CREATE FUNCTION ventros.list_credentials(credential_type text DEFAULT NULL, project_id uuid DEFAULT NULL,
                                         only_active boolean DEFAULT false, expiring_within interval DEFAULT NULL)
RETURNS SETOF ventros.credentials
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.* FROM ventros.credentials c
    WHERE c.tenant_id = ventros.require_tenant()
      AND (list_credentials.credential_type IS NULL OR c.credential_type = list_credentials.credential_type)
      AND (list_credentials.project_id IS NULL OR c.project_id = list_credentials.project_id)
      AND (NOT only_active OR c.is_active)
      AND (expiring_within IS NULL OR (c.is_active AND c.expires_at <= now() + expiring_within))
    ORDER BY c.name, c.id
    LIMIT current_setting('ventros.max_page_size')::integer
$$;
COMMENT ON FUNCTION ventros.list_credentials(text, uuid, boolean, interval) IS
    'Credentials by type or project, active ones, or those expiring within an interval';

GRANT EXECUTE ON FUNCTION ventros.get_credential(uuid), ventros.list_credentials(text, uuid, boolean, interval) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.encrypt_secret(text),
    ventros.create_credential(text, text, text, uuid, text, timestamptz, jsonb),
    ventros.update_credential(uuid, integer, jsonb), ventros.set_credential_value(uuid, integer, text),
    ventros.set_credential_oauth(uuid, integer, text, text, timestamptz, text),
    ventros.activate_credential(uuid, integer), ventros.deactivate_credential(uuid, integer),
    ventros.reveal_credential(uuid)
    TO ventros_admin;
-- Maintenance, for the scheduler (tick_maintenance) and platform administrators.
GRANT EXECUTE ON FUNCTION ventros.expire_credentials() TO ventros_platform_admin;

-- Direct writes of credential by tenant roles: the same as the first
-- command named, or refused naming them (docs/sql.md, "Direct writes").
SELECT ventros.register_writes('credential', inserts => '{create_credential}', updates => '{update_credential,set_credential_value,set_credential_oauth,activate_credential,deactivate_credential}', deletes => '{}',
    direct => '{UPDATE}',
    update_columns => '{name,description,metadata,project_id,expires_at}');
