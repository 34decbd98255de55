-- Channel secrets as credentials (docs/operations.md, "Secrets"): the
-- webhook verification secrets and provider tokens a channel's config may
-- name are kept out of the config, encrypted at rest with the credentials'
-- one mechanism (ventros.encrypt_secret, sql/68_credentials.sql).
--
--   - Written as before: create_channel, update_channel or a direct write
--     puts them in config; a trigger takes them out before the row is
--     stored, encrypts them into ventros.channel_secrets and leaves config
--     without them.  A key given as a string replaces the secret (no
--     overlap), a key given as null or '' removes it, a key left out keeps
--     it: a client that rewrites the config it read loses nothing.
--   - Read only where a provider needs them, inside SECURITY DEFINER
--     functions (the webhook entry points, the send and media queues) and
--     the workers, through ventros.channel_with_secrets, which no role may
--     call.  The table is granted to nobody: no view, /rpc function or event
--     payload carries a secret.
--   - ventros.rotate_channel_secret (sql/93_operator.sql) keeps the previous
--     value for an overlap window, so a delivery the provider signed before
--     it switched still verifies (ventros.verify_channel_webhook).

CREATE TABLE ventros.channel_secrets (
    tenant_id           text        NOT NULL,
    channel_id          uuid        NOT NULL,
    key                 text        NOT NULL,
    secret              bytea       NOT NULL,
    previous_secret     bytea,
    previous_expires_at timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, channel_id, key),
    -- deferred: the trigger stores the secrets of a new channel before its row exists
    FOREIGN KEY (tenant_id, channel_id) REFERENCES ventros.channels (tenant_id, id)
        ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT channel_secrets_key_known CHECK (key IN ('app_secret', 'webhook_secret', 'webhook_token', 'verify_token',
                                                        'access_token', 'api_key')),
    CONSTRAINT channel_secrets_previous_expires CHECK ((previous_secret IS NULL) = (previous_expires_at IS NULL))
);
COMMENT ON TABLE ventros.channel_secrets IS
    'The secrets of channels (webhook verification secrets, provider tokens), encrypted with ventros.encrypt_secret; the previous value of a rotated one until previous_expires_at; granted to nobody';
COMMENT ON COLUMN ventros.channel_secrets.key IS 'The config key the secret is read as (app_secret, webhook_secret, webhook_token, verify_token, access_token, api_key)';
COMMENT ON COLUMN ventros.channel_secrets.previous_secret IS 'The value before the last rotation (encrypted), still accepted by webhook verification until previous_expires_at';
ALTER TABLE ventros.channel_secrets ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.channel_secrets FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_all ON ventros.channel_secrets
    USING (tenant_id = (SELECT ventros.current_tenant()))
    WITH CHECK (tenant_id = (SELECT ventros.current_tenant()));
REVOKE ALL ON ventros.channel_secrets FROM PUBLIC;

CREATE FUNCTION ventros.channel_secret_keys() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- (no SET clause: small enough to be inlined)
AS $$ SELECT '{app_secret,webhook_secret,webhook_token,verify_token,access_token,api_key}'::text[] $$;
COMMENT ON FUNCTION ventros.channel_secret_keys() IS
    'The keys of a channel''s config that are secrets, kept encrypted in ventros.channel_secrets instead of the config';

-- The trigger: the secret keys of NEW.config go to channel_secrets.
-- SECURITY DEFINER: only the key's owner may encrypt, and tenant roles may
-- not write the table; it acts on the row's own tenant and channel.
CREATE FUNCTION ventros.channel_secrets_take() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k text;
    v jsonb;
BEGIN
    FOR k, v IN SELECT e.key, e.value FROM jsonb_each(NEW.config) e
                WHERE e.key = ANY (ventros.channel_secret_keys()) LOOP
        IF jsonb_typeof(v) = 'string' AND btrim(v #>> '{}') <> '' THEN
            IF length(v #>> '{}') > 4096 THEN
                RAISE EXCEPTION 'channel secret "%" is longer than 4096 characters', k USING ERRCODE = '22001';
            END IF;
            INSERT INTO ventros.channel_secrets AS s (tenant_id, channel_id, key, secret)
            VALUES (NEW.tenant_id, NEW.id, k, ventros.encrypt_secret(v #>> '{}'))
            ON CONFLICT ON CONSTRAINT channel_secrets_pkey DO UPDATE
                SET secret = EXCLUDED.secret, previous_secret = NULL, previous_expires_at = NULL, updated_at = now();
        ELSIF jsonb_typeof(v) = 'null' OR (jsonb_typeof(v) = 'string' AND btrim(v #>> '{}') = '') THEN
            DELETE FROM ventros.channel_secrets s WHERE s.tenant_id = NEW.tenant_id AND s.channel_id = NEW.id AND s.key = k;
        ELSE
            RAISE EXCEPTION 'channel secret "%" must be a string', k USING ERRCODE = '22023';
        END IF;
    END LOOP;
    NEW.config := NEW.config - ventros.channel_secret_keys();
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION ventros.channel_secrets_take() IS
    'Trigger on ventros.channels: moves the secret keys of config into ventros.channel_secrets, encrypted (a string sets, null or '''' removes); the stored config never holds them';
REVOKE EXECUTE ON FUNCTION ventros.channel_secrets_take() FROM PUBLIC;

-- named to fire after ventros_engine_before, which sets tenant_id (triggers fire by name)
CREATE TRIGGER ventros_secrets_take BEFORE INSERT OR UPDATE OF config ON ventros.channels
    FOR EACH ROW WHEN (NEW.config ?| '{app_secret,webhook_secret,webhook_token,verify_token,access_token,api_key}'::text[])
    EXECUTE FUNCTION ventros.channel_secrets_take();

-- A channel row as its provider functions read it: config with the current
-- secrets (previous = false), or with the previous values of those rotated
-- and still valid at the instant given over them (previous = true; NULL when
-- none is).  Granted to nobody:
-- SECURITY DEFINER entry points and the workers (superuser) call it.
CREATE FUNCTION ventros.channel_with_secrets(ch ventros.channels, previous boolean DEFAULT false,
                                             at timestamptz DEFAULT now())
RETURNS ventros.channels
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    secrets jsonb;
    older jsonb;
BEGIN
    IF ch.id IS NULL THEN
        RETURN ch;
    END IF;
    SELECT jsonb_object_agg(s.key, ventros.decrypt_secret(s.secret)),
           jsonb_object_agg(s.key, ventros.decrypt_secret(s.previous_secret)) FILTER (WHERE previous AND s.previous_expires_at > at)
      INTO secrets, older
    FROM ventros.channel_secrets s WHERE s.tenant_id = ch.tenant_id AND s.channel_id = ch.id;
    IF previous AND older IS NULL THEN
        RETURN NULL;
    END IF;
    -- the previous values over the current ones: a key not rotated keeps its value
    ch.config := ch.config || coalesce(secrets, '{}') || CASE WHEN previous THEN older ELSE '{}' END;
    RETURN ch;
END
$$;
COMMENT ON FUNCTION ventros.channel_with_secrets(ventros.channels, boolean, timestamptz) IS
    'A channel with its secrets decrypted into config (the previous ones still valid at "at" when previous, NULL when none is); internal: granted to nobody';
REVOKE EXECUTE ON FUNCTION ventros.channel_with_secrets(ventros.channels, boolean, timestamptz) FROM PUBLIC;

-- Whether a delivery is authentic for a channel at an instant: the
-- provider's verify function with the current secrets, then, when that
-- refuses the signature or token, with the previous ones still inside their
-- overlap window.  NULL when authentic, else the first refusal's reason.
CREATE FUNCTION ventros.verify_channel_webhook(provider text, ch ventros.channels, headers jsonb, body bytea,
                                               at timestamptz DEFAULT now())
RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    failure text := ventros.verify_webhook(provider, (ventros.channel_with_secrets(ch)).config, headers, body);
    older ventros.channels;
BEGIN
    IF failure IN ('invalid_signature', 'invalid_token') THEN
        older := ventros.channel_with_secrets(ch, true, at);
        IF older.id IS NOT NULL AND ventros.verify_webhook(provider, older.config, headers, body) IS NULL THEN
            RETURN NULL;
        END IF;
    END IF;
    RETURN failure;
END
$$;
COMMENT ON FUNCTION ventros.verify_channel_webhook(text, ventros.channels, jsonb, bytea, timestamptz) IS
    'NULL when a delivery verifies with the channel''s current secrets, or with the previous ones inside their overlap window at "at"; else the reason (ventros.verify_webhook); internal: granted to nobody';
REVOKE EXECUTE ON FUNCTION ventros.verify_channel_webhook(text, ventros.channels, jsonb, bytea, timestamptz) FROM PUBLIC;
