-- Tenant users and admins (docs/security.md): issue 12, holes 3, 6, 7 and 8.

-- 3. One status check for every token: ventros.user_claims, called by every
-- path that issues a grant or API-key claims.
CREATE OR REPLACE FUNCTION ventros.user_claims(u ventros.users) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF u.id IS NULL OR u.deleted_at IS NOT NULL OR u.status IS DISTINCT FROM 'active' THEN
        RAISE EXCEPTION 'user account is not active' USING ERRCODE = '28000',
            DETAIL = pg_catalog.format('Only active users get tokens; this one is %s.',
                                       CASE WHEN u.deleted_at IS NOT NULL THEN 'deleted' ELSE coalesce(u.status, 'unknown') END);
    END IF;
    RETURN pg_catalog.jsonb_build_object('role', ventros.user_db_role(u.role), 'tenant_id', u.tenant_id,
                                         'sub', u.id::text, 'email', u.email);
END
$$;
COMMENT ON FUNCTION ventros.user_claims(ventros.users) IS
    'The access-token claims of an active user; 28000 for a suspended, inactive or deleted one (every token-issuing path calls it)';


CREATE OR REPLACE FUNCTION ventros.issue_grant(u ventros.users, family uuid DEFAULT NULL) RETURNS api.auth_grant
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    token text := ventros.random_token('vnr_');
    result api.auth_grant;
BEGIN
    result.claims := ventros.user_claims(u);
    INSERT INTO ventros.user_refresh_tokens (token_hash, tenant_id, user_id, family, expires_at)
    VALUES (ventros.token_hash(token), u.tenant_id, u.id, coalesce(family, gen_random_uuid()),
            now() + interval '30 days');
    result.refresh_token := token;
    result.expires_in := 900;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.issue_grant(ventros.users, uuid) IS
    'Access-token claims of an active user (ventros.user_claims) and a new refresh token (30 days); the front signs the claims';


CREATE OR REPLACE FUNCTION api.login(email text, password text) RETURNS api.auth_grant
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET ventros.tenant = ''
AS $$
DECLARE
    u ventros.users;
BEGIN
    SELECT * INTO u FROM ventros.users x
    WHERE x.email = lower(btrim(login.email)) AND x.deleted_at IS NULL;
    -- The same bcrypt work whether or not the user exists.
    IF NOT coalesce(ventros.password_matches(password, coalesce(u.password_hash,
                    '$2a$08$0000000000000000000000000000000000000000000000000000u')), false)
       OR u.id IS NULL THEN
        RAISE EXCEPTION 'invalid email or password' USING ERRCODE = '28P01';
    END IF;
    PERFORM set_config('ventros.tenant', u.tenant_id, true);
    PERFORM ventros.emit('user.logged_in', 'user', u.id, '{}', u.version);
    RETURN ventros.issue_grant(u);
END
$$;
COMMENT ON FUNCTION api.login(text, text) IS 'Checks email and password (bcrypt); returns a login grant; 28P01 when they do not match';


CREATE OR REPLACE FUNCTION api.refresh(refresh_token text) RETURNS api.auth_grant
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET ventros.tenant = ''
AS $$
DECLARE
    t ventros.user_refresh_tokens;
    u ventros.users;
BEGIN
    SELECT * INTO t FROM ventros.user_refresh_tokens r
    WHERE r.token_hash = ventros.token_hash(refresh_token) FOR UPDATE;
    IF NOT FOUND OR t.expires_at < now() THEN
        RAISE EXCEPTION 'invalid or expired refresh token' USING ERRCODE = '28000';
    END IF;
    IF t.revoked_at IS NOT NULL THEN
        -- Reuse of a rotated token: revoke the family.
        UPDATE ventros.user_refresh_tokens SET revoked_at = now() WHERE family = t.family AND revoked_at IS NULL;
        RETURN NULL;  -- committed: the caller gets no grant (the front answers 401 on a null grant)
    END IF;
    UPDATE ventros.user_refresh_tokens SET revoked_at = now() WHERE token_hash = t.token_hash;
    SELECT * INTO u FROM ventros.users x
    WHERE x.tenant_id = t.tenant_id AND x.id = t.user_id AND x.deleted_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'invalid or expired refresh token' USING ERRCODE = '28000';
    END IF;
    PERFORM set_config('ventros.tenant', u.tenant_id, true);
    RETURN ventros.issue_grant(u, t.family);
END
$$;
COMMENT ON FUNCTION api.refresh(text) IS
    'Rotates a refresh token: revokes it and returns a new grant; a revoked token revokes its whole family and gets none';


CREATE OR REPLACE FUNCTION ventros.api_key_claims(key text) RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    claims jsonb;
    api_key  ventros.user_api_keys;
    key_user ventros.users;
BEGIN
    SELECT * INTO api_key FROM ventros.user_api_keys x
    WHERE x.key_hash = ventros.token_hash(key) AND x.active AND x.deleted_at IS NULL
      AND (x.expires_at IS NULL OR x.expires_at > now());
    SELECT * INTO key_user FROM ventros.users x WHERE x.tenant_id = api_key.tenant_id AND x.id = api_key.user_id AND x.deleted_at IS NULL;
    IF api_key.id IS NULL OR key_user.id IS NULL THEN
        RAISE EXCEPTION 'invalid API key' USING ERRCODE = '28000';
    END IF;
    -- the user's status is decided where every token's is (no email: a key
    -- stands for its user without naming them)
    claims := (ventros.user_claims(key_user) - 'email') || jsonb_build_object('api_key_id', api_key.id::text);
    -- last_used, at most once a minute per key (so a busy key is not a write
    -- per request), and never waiting: a request that finds the row locked
    -- by another one marking it leaves the mark to that one.  A quiet
    -- column: no version bump, no event.
    UPDATE ventros.user_api_keys k SET last_used = now(), version = k.version
    WHERE (k.tenant_id, k.id) = (SELECT x.tenant_id, x.id FROM ventros.user_api_keys x
                                 WHERE x.key_hash = ventros.token_hash(key)
                                   AND (x.last_used IS NULL OR x.last_used < now() - interval '1 minute')
                                 FOR UPDATE SKIP LOCKED);
    RETURN claims;
END
$$;
COMMENT ON FUNCTION ventros.api_key_claims(text) IS
    'The JWT-style claims of a valid API key, marking its last_used (at most once a minute); 28000 otherwise';


REVOKE EXECUTE ON FUNCTION ventros.user_claims(ventros.users) FROM PUBLIC;

-- 7. Claims are read only in trusted sessions (src/tenant.c): the actor too.
COMMENT ON FUNCTION ventros.actor() IS
    'Who acts: the JWT sub claim of a trusted session (the front''s), else the session user';

-- 8. The scheduler's functions are not for tenant roles (their `now` is the
-- caller's to choose): platform administrators and pg_cron only.
REVOKE EXECUTE ON FUNCTION ventros.tick_sessions(timestamptz, integer), ventros.tick_campaigns(timestamptz, integer),
    ventros.tick_sequences(timestamptz, integer), ventros.tick_broadcasts(timestamptz),
    ventros.tick_message_groups(timestamptz, integer), ventros.fold_channel_message_counts()
    FROM ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.tick_sessions(timestamptz, integer), ventros.tick_campaigns(timestamptz, integer),
    ventros.tick_sequences(timestamptz, integer), ventros.tick_broadcasts(timestamptz),
    ventros.tick_message_groups(timestamptz, integer), ventros.fold_channel_message_counts()
    TO ventros_platform_admin;

-- 6. Events of an aggregate come from those who may change it (src/emit.c
-- checks UPDATE on the aggregate's table); tenants' own events are
-- custom.<name> of the reserved aggregate "custom".
COMMENT ON FUNCTION ventros.emit(text, text, uuid, jsonb, integer) IS
    'Writes a registered business event (contact.merged, ...) to the outbox in the current transaction; the caller must be allowed to UPDATE the aggregate''s table (42501 otherwise)';

CREATE OR REPLACE FUNCTION ventros.emit_custom_event(name text, payload jsonb DEFAULT '{}')
RETURNS text
LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'ventros_emit_custom_event';
COMMENT ON FUNCTION ventros.emit_custom_event(text, jsonb) IS
    'Writes a custom event of the acting tenant (type custom.<name>, aggregate custom, one stream per name) to the outbox; returns its type';


REVOKE EXECUTE ON FUNCTION ventros.emit_custom_event(text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ventros.emit_custom_event(text, jsonb) TO ventros_agent;
ALTER TABLE ventros.event_types ADD CONSTRAINT event_types_not_custom CHECK (aggregate <> 'custom');

CREATE OR REPLACE FUNCTION ventros.upsert_channel_label(channel_id uuid, label_id text, name text, color integer DEFAULT NULL,
                                             color_hex text DEFAULT NULL)
RETURNS ventros.channel_labels
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    channel_type text;
    existing ventros.channel_labels;
    result ventros.channel_labels;
BEGIN
    SELECT c.type INTO channel_type FROM ventros.channels c WHERE c.tenant_id = tenant AND c.id = upsert_channel_label.channel_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'channel % not found', channel_id USING ERRCODE = 'P0002';
    END IF;
    IF channel_type <> 'waha' THEN
        RAISE EXCEPTION 'channel % of type % has no labels', channel_id, channel_type USING ERRCODE = '22023',
            DETAIL = 'Labels exist on WAHA-based channels only.';
    END IF;
    IF label_id IS NULL OR name IS NULL THEN
        RAISE EXCEPTION 'label id and name must not be null' USING ERRCODE = '23502';
    END IF;
    SELECT * INTO existing FROM ventros.channel_labels l
    WHERE l.tenant_id = tenant AND l.channel_id = upsert_channel_label.channel_id AND l.label_id = upsert_channel_label.label_id
    FOR UPDATE;
    IF FOUND THEN
        UPDATE ventros.channel_labels l SET name = upsert_channel_label.name, color = upsert_channel_label.color,
            color_hex = upsert_channel_label.color_hex, version = existing.version
        WHERE l.tenant_id = tenant AND l.id = existing.id RETURNING * INTO result;
    ELSE
        INSERT INTO ventros.channel_labels (channel_id, label_id, name, color, color_hex)
        VALUES (channel_id, label_id, name, color, color_hex) RETURNING * INTO result;
    END IF;
    PERFORM ventros.emit('channel.label_upserted', 'channel', channel_id,
                         jsonb_build_object('label_id', label_id, 'name', name, 'color', color, 'color_hex', color_hex), NULL);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.upsert_channel_label(uuid, text, text, integer, text) IS
    'Creates or changes a label of a WAHA channel (22023 for other types); emits channel_label.created / .updated and channel.label_upserted';


CREATE OR REPLACE FUNCTION ventros.check_webhook_changes(changes jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    unknown text;
BEGIN
    IF jsonb_typeof(changes) IS DISTINCT FROM 'object' THEN
        RETURN changes;
    END IF;
    IF changes ? 'url' AND NOT ventros.is_webhook_url_allowed(changes->>'url') THEN
        RAISE EXCEPTION 'webhook URL "%" is not a public https URL', left(changes->>'url', 200)
            USING ERRCODE = '22023',
                  DETAIL = 'Plain http, loopback, private, link-local and localhost addresses are refused, as are URLs with user info.',
                  HINT = 'Operators allow internal receivers with ventros.http_allow_hosts.';
    END IF;
    IF changes ? 'headers' AND jsonb_typeof(changes->'headers') = 'object' THEN
        SELECT h.key INTO unknown FROM jsonb_each(changes->'headers') h
         WHERE jsonb_typeof(h.value) <> 'string' OR h.key !~ '^[!#$%&''*+.^_`|~0-9A-Za-z-]{1,100}$'
            OR (h.value #>> '{}') ~ '[\r\n]' OR length(h.value #>> '{}') > 4096
            OR lower(h.key) IN ('content-type', 'content-length', 'user-agent', 'host', 'transfer-encoding',
                                'connection', 'expect') OR lower(h.key) LIKE 'x-ventros-%'
         LIMIT 1;
        IF unknown IS NOT NULL THEN
            RAISE EXCEPTION 'webhook header "%" is not allowed', left(unknown, 100)
                USING ERRCODE = '22023',
                      DETAIL = 'Custom headers are HTTP tokens with string values without line breaks; Content-Type, User-Agent, Host and X-Ventros-* are set by Ventros.';
        END IF;
    END IF;
    IF changes ? 'events' THEN
        IF jsonb_typeof(changes->'events') <> 'array' THEN
            RAISE EXCEPTION 'webhook events must be a JSON array of event types' USING ERRCODE = '22023';
        END IF;
        SELECT e INTO unknown FROM jsonb_array_elements_text(changes->'events') e
        WHERE NOT (e = '*' OR EXISTS (SELECT 1 FROM ventros.event_types t WHERE t.event_type = e)
                   OR (e ~ '^[a-z][a-z0-9_]*\.\*$'
                       AND EXISTS (SELECT 1 FROM ventros.event_types t WHERE t.aggregate = left(e, -2)))
                   -- the tenant's own events (ventros.emit_custom_event)
                   OR e = 'custom.*' OR e ~ '^custom\.[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$')
           OR e LIKE 'webhook\_subscription.%'
        LIMIT 1;
        IF unknown IS NOT NULL THEN
            RAISE EXCEPTION 'webhook cannot subscribe to "%"', left(unknown, 120)
                USING ERRCODE = '22023', HINT = 'Pick event types from ventros.list_webhook_event_types().';
        END IF;
    END IF;
    RETURN changes;
END
$$;
COMMENT ON FUNCTION ventros.check_webhook_changes(jsonb) IS
    'Validates the URL (SSRF rules) and the event types of a webhook subscription change set (22023)';


