-- Ventros 0.1.0 to 0.2.0: ALTER EXTENSION ventros UPDATE.
--
-- Hand-written, one section per change; each change is written twice, in sql/
-- for a fresh install and here for a database that has 0.1.0.  The upgrade
-- test (test/integration/upgrade.sh) compares the catalog after the update
-- with a fresh install and fails on any difference.  Edit this file until
-- 0.2.0 is released; never after.
\echo Use "ALTER EXTENSION ventros UPDATE" to load this file. \quit

-- ---- openapi_version
-- The OpenAPI document names the installed version instead of a constant.


-- ---- http_plan_rows
-- Prefer: count=planned/estimated are answered with the exact count (planner
-- estimates reveal other tenants' values): the estimate function goes.
DROP FUNCTION ventros.http_plan_rows(text);

-- ---- authz
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



-- ---- maintenance_grants
-- The maintenance steps the scheduler runs (some with a clock of their own)
-- are for the scheduler and platform administrators, not tenant admins.
REVOKE EXECUTE ON FUNCTION ventros.expire_credentials(),
    ventros.disable_failing_webhook_subscriptions(timestamptz, interval),
    ventros.purge_expired_contact_events(timestamptz),
    ventros.compact_crm_daily_stats(date)
    FROM ventros_admin;
GRANT EXECUTE ON FUNCTION ventros.expire_credentials(),
    ventros.disable_failing_webhook_subscriptions(timestamptz, interval),
    ventros.purge_expired_contact_events(timestamptz)
    TO ventros_platform_admin;

-- ---- locks_cron
-- Issue 12 (4, 5, 10): locks no tenant can take, scheduled work per tenant,
-- keys leading with tenant_id, and smaller fixes.  Each change is made in
-- sql/ too (see the files named).

-- ---- locks (sql/03_locks.sql, src/locks.c) ----------------------------------
CREATE FUNCTION ventros.lock_tenant_key(key text, tenant text DEFAULT NULL) RETURNS void
LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'ventros_lock_tenant_key';
COMMENT ON FUNCTION ventros.lock_tenant_key(text, text) IS
    'Waits for and takes, until the transaction ends, the lock of key within the acting tenant (a lock class SQL''s pg_advisory_* functions cannot take); tenant may only name the acting tenant, or any tenant in a trusted session without one (42501)';

REVOKE EXECUTE ON FUNCTION ventros.lock_tenant_key(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ventros.lock_tenant_key(text, text)
    TO ventros_viewer, ventros_authenticator, ventros_platform_admin;

-- the publisher lock moved to a lock class of its own (same C symbols)
COMMENT ON FUNCTION ventros.outbox_publisher_lock() IS
    'Takes the publisher lock of this database for the rest of the session, without waiting (a session lock of Ventros'' own class, src/locks.c, that pg_advisory_lock cannot take); whether this session holds it (publisher use)';

CREATE OR REPLACE FUNCTION ventros.upsert_contact_by_identity(identity_type text, sender text, name text DEFAULT NULL,
                                                   project_id uuid DEFAULT NULL, channel_id uuid DEFAULT NULL,
                                                   source_channel text DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    norm_value text := ventros.normalize_identity(identity_type, sender);
    found_id uuid;
    phone_e164 text;
    c ventros.contacts;
BEGIN
    IF norm_value IS NULL THEN
        RAISE EXCEPTION 'unknown identity type "%"', left(identity_type, 32) USING ERRCODE = '22023';
    END IF;
    -- (the lookup of find_contact_by_identity, inline: the hot path of every inbound message)
    SELECT i.contact_id INTO found_id FROM ventros.contact_identities i
    WHERE i.tenant_id = tenant AND i.identity_type = upsert_contact_by_identity.identity_type AND i.value = norm_value
      AND i.deleted_at IS NULL
    ORDER BY i.created_at, i.contact_id LIMIT 1;
    IF found_id IS NOT NULL THEN
        RETURN found_id;
    END IF;
    PERFORM ventros.lock_tenant_key('identity/' || identity_type || '/' || norm_value);
    found_id := ventros.find_contact_by_identity(identity_type, norm_value);
    IF found_id IS NOT NULL THEN
        RETURN found_id;
    END IF;
    phone_e164 := CASE WHEN identity_type = 'phone' THEN norm_value
                  WHEN identity_type = 'whatsapp' THEN '+' || split_part(norm_value, '@', 1) END;
    -- A contact with that phone but without the identity yet.
    IF phone_e164 IS NOT NULL THEN
        SELECT x.id INTO found_id FROM ventros.contacts x
        WHERE x.tenant_id = tenant AND x.project_id = coalesce(upsert_contact_by_identity.project_id, ventros.default_project())
          AND x.phone = phone_e164 AND x.deleted_at IS NULL;
    END IF;
    IF found_id IS NULL THEN
        c := ventros.create_contact(coalesce(nullif(btrim(name), ''), sender), phone => phone_e164,
                                    email => CASE WHEN identity_type = 'email' THEN norm_value END,
                                    project_id => project_id, source_channel => source_channel);
        found_id := c.id;
    END IF;
    PERFORM ventros.add_contact_identity(found_id, identity_type, norm_value, channel_id);
    RETURN found_id;
END
$$;
COMMENT ON FUNCTION ventros.upsert_contact_by_identity(text, text, text, uuid, uuid, text) IS
    'The contact holding an identity, else one with its phone, else a new contact; race-free per identity (a tenant key lock); emits contact.created and contact_identity.created for a new sender';

CREATE OR REPLACE FUNCTION ventros.inbound_whatsapp_sender(ch ventros.channels, jids text[], name text) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    ids text[] := ARRAY(SELECT DISTINCT ventros.canonical_whatsapp_id(j) FROM unnest(jids) j
                        WHERE ventros.canonical_whatsapp_id(j) IS NOT NULL ORDER BY 1);
    phone_id text := (SELECT i FROM unnest(ids) i WHERE i LIKE '%@c.us' LIMIT 1);
    lid_id text := (SELECT i FROM unnest(ids) i WHERE i LIKE '%@lid' LIMIT 1);
    by_phone uuid;
    by_lid uuid;
    x text;
BEGIN
    IF phone_id IS NULL AND lid_id IS NULL THEN
        RAISE EXCEPTION 'no WhatsApp sender id in %', array_to_string(jids, ', ') USING ERRCODE = '22023';
    END IF;
    IF phone_id IS NULL OR lid_id IS NULL THEN
        RETURN coalesce(phone_id, lid_id);      -- one form: receive_message upserts it
    END IF;
    FOREACH x IN ARRAY ARRAY[phone_id, lid_id] LOOP
        PERFORM ventros.lock_tenant_key('identity/' || CASE WHEN x LIKE '%@lid' THEN 'whatsapp_lid' ELSE 'whatsapp' END
                                        || '/' || x);
    END LOOP;
    by_phone := ventros.find_contact_by_identity('whatsapp', phone_id);
    by_lid := ventros.find_contact_by_identity('whatsapp_lid', lid_id);
    IF by_phone IS NULL AND by_lid IS NULL THEN
        by_phone := ventros.upsert_contact_by_identity('whatsapp', phone_id, name, ch.project_id, ch.id, ch.type);
    END IF;
    IF by_phone IS NULL THEN
        PERFORM ventros.add_contact_identity(by_lid, 'whatsapp', phone_id, ch.id);
    ELSIF by_lid IS DISTINCT FROM by_phone THEN
        -- (another contact with the @lid: add_contact_identity opens a merge suggestion)
        PERFORM ventros.add_contact_identity(by_phone, 'whatsapp_lid', lid_id, ch.id);
    END IF;
    RETURN phone_id;
END
$$;
COMMENT ON FUNCTION ventros.inbound_whatsapp_sender(ventros.channels, text[], text) IS
    'Links the phone (@c.us) and privacy (@lid) ids of one WhatsApp sender to one contact (creating it if new); returns the id to record the message under';

CREATE OR REPLACE FUNCTION ventros.event_log_sequence(tenant text, contact_id uuid) RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.lock_tenant_key('event_log/' || contact_id::text, tenant);
    SELECT coalesce(max(l.sequence_number), 0) + 1 FROM ventros.event_log l
    WHERE l.tenant_id = tenant AND l.contact_id = event_log_sequence.contact_id
$$;
COMMENT ON FUNCTION ventros.event_log_sequence(text, uuid) IS
    'The next sequence number of a contact''s activity log (locks the contact''s log until commit)';


-- ---- scheduled work per tenant (sql/97_schedule.sql, 82, 92, 40_messages) ----
CREATE TABLE ventros.scheduled_job_failures (
    tenant_id       text        NOT NULL,
    job             text        NOT NULL,
    error           text        NOT NULL,
    sqlstate        text        NOT NULL,
    first_failed_at timestamptz NOT NULL DEFAULT now(),
    failed_at       timestamptz NOT NULL DEFAULT now(),
    failures        integer     NOT NULL DEFAULT 1,
    PRIMARY KEY (tenant_id, job)
);
COMMENT ON TABLE ventros.scheduled_job_failures IS
    'The tenants whose part of a scheduled job failed at its last run: the error, since when, how many runs in a row (the row goes at the next success)';
ALTER TABLE ventros.scheduled_job_failures ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.scheduled_job_failures FORCE ROW LEVEL SECURITY;
-- tenant administrators see their own tenant's; the runner writes as the
-- tenant it acts for
CREATE POLICY ventros_tenant_all ON ventros.scheduled_job_failures
    USING (tenant_id = (SELECT ventros.current_tenant()));
REVOKE ALL ON ventros.scheduled_job_failures FROM PUBLIC;
GRANT SELECT ON ventros.scheduled_job_failures TO ventros_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON ventros.scheduled_job_failures TO ventros_platform_admin;

CREATE OR REPLACE FUNCTION ventros.run_per_tenant(job text, step text, tenants text[] DEFAULT NULL,
                                       now timestamptz DEFAULT now(), args jsonb DEFAULT '{}')
RETURNS TABLE (tenant_id text, result jsonb, error text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- the tenant chosen inside is restored when the function returns
SET ventros.tenant = ''
AS $$
DECLARE
    t text;
    state text;
    caller_lock_timeout text := pg_catalog.current_setting('lock_timeout');
BEGIN
    PERFORM ventros.require_platform_admin();
    IF job IS NULL OR step IS NULL THEN
        RAISE EXCEPTION 'run_per_tenant needs a job name and a step' USING ERRCODE = '22023';
    END IF;
    -- A tenant's open transaction holding a row lock a step needs (its
    -- channel, say) must not stall the job for the tenants after it: a step
    -- waits at most 10 s for a lock (less when the caller set less), then
    -- fails for its tenant only (55P03).
    IF caller_lock_timeout::interval = interval '0' OR caller_lock_timeout::interval > interval '10 s' THEN
        PERFORM pg_catalog.set_config('lock_timeout', '10s', true);
    END IF;
    FOR t IN SELECT x.t FROM unnest(coalesce(tenants,
                 ARRAY(SELECT DISTINCT p.tenant_id FROM ventros.projects p WHERE p.deleted_at IS NULL ORDER BY 1))) AS x(t)
    LOOP
        PERFORM pg_catalog.set_config('ventros.tenant', t, true);
        tenant_id := t;
        result := NULL;
        error := NULL;
        BEGIN
            EXECUTE step INTO result USING now, args;
            DELETE FROM ventros.scheduled_job_failures f
             WHERE f.tenant_id = t AND f.job = run_per_tenant.job;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS error = MESSAGE_TEXT, state = RETURNED_SQLSTATE;
            RAISE WARNING 'scheduled job % failed for tenant %: %', job, t, error;
            INSERT INTO ventros.scheduled_job_failures AS f (tenant_id, job, error, sqlstate)
            VALUES (t, job, error, state)
            ON CONFLICT ON CONSTRAINT scheduled_job_failures_pkey DO UPDATE
            SET error = EXCLUDED.error, sqlstate = EXCLUDED.sqlstate, failed_at = EXCLUDED.failed_at,
                failures = f.failures + 1;
        END;
        RETURN NEXT;
    END LOOP;
    PERFORM pg_catalog.set_config('lock_timeout', caller_lock_timeout, true);
END
$$;
COMMENT ON FUNCTION ventros.run_per_tenant(text, text, text[], timestamptz, jsonb) IS
    'The per-tenant loop of scheduled work: runs step (SQL returning one jsonb; $1 = now, $2 = args) as each tenant (default: every tenant with a live project), each in a subtransaction waiting at most 10 s for a lock; a failure is a warning and a row of ventros.scheduled_job_failures, a success clears it; platform administrators only (42501)';

REVOKE EXECUTE ON FUNCTION ventros.run_per_tenant(text, text, text[], timestamptz, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ventros.run_per_tenant(text, text, text[], timestamptz, jsonb) TO ventros_platform_admin;

CREATE VIEW ventros.scheduled_job_status AS
SELECT j.name AS job, j.schedule, f.tenant_id, f.error, f.sqlstate, f.failed_at, f.first_failed_at, f.failures
  FROM ventros.scheduled_jobs j
  LEFT JOIN ventros.scheduled_job_failures f ON f.job = j.name;
COMMENT ON VIEW ventros.scheduled_job_status IS
    'Every scheduled job, with a row per tenant whose part failed at its last run (error, SQLSTATE, when, since when, runs in a row), or one row without a tenant when none failed (platform administrators)';
GRANT SELECT ON ventros.scheduled_job_status TO ventros_platform_admin;

CREATE OR REPLACE FUNCTION ventros.tick_maintenance(now timestamptz DEFAULT now(),
                                         http_retention interval DEFAULT interval '7 days')
RETURNS TABLE (tenant_id text, contact_events_purged integer, error text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.require_platform_admin();
    IF http_retention IS NULL OR http_retention < interval '0' THEN
        RAISE EXCEPTION 'http_retention must be a non-negative interval' USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
    SELECT r.tenant_id, (r.result->>'contact_events_purged')::integer, r.error
      FROM ventros.run_per_tenant('ventros-tick-maintenance',
               $s$SELECT pg_catalog.jsonb_build_object(
                      'contact_events_purged', ventros.purge_expired_contact_events($1),
                      'crm_daily_stats_compacted', ventros.compact_crm_daily_stats(($1 AT TIME ZONE 'UTC')::date))$s$,
               now => tick_maintenance.now) r;
    -- Across tenants: retention of finished requests (no tenant's data can
    -- make a delete of its own finished rows fail).
    PERFORM ventros.prune_http_requests(now - http_retention);
END
$$;
COMMENT ON FUNCTION ventros.tick_maintenance(timestamptz, interval) IS
    'Daily housekeeping: purges expired contact events and compacts past days of crm_daily_stats per tenant (ventros.run_per_tenant), prunes finished HTTP requests older than http_retention; platform administrators only (42501)';

CREATE OR REPLACE FUNCTION ventros.tick_automation(now timestamptz DEFAULT now())
RETURNS TABLE (tenant_id text, campaign_steps integer, sequence_steps integer, broadcast_sends integer,
               message_groups integer, credentials_expired integer, error text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.require_platform_admin();
    RETURN QUERY
    SELECT r.tenant_id, (r.result->>'campaign_steps')::integer, (r.result->>'sequence_steps')::integer,
           (r.result->>'broadcast_sends')::integer, (r.result->>'message_groups')::integer,
           (r.result->>'credentials_expired')::integer, r.error
      FROM ventros.run_per_tenant('ventros-tick-automation',
               -- in this order (a CTE each, each evaluated once, in turn)
               $s$WITH c AS (SELECT ventros.tick_campaigns($1) AS n),
                       s AS (SELECT ventros.tick_sequences($1) AS n FROM c),
                       b AS (SELECT ventros.tick_broadcasts($1) AS n FROM s),
                       g AS (SELECT (SELECT pg_catalog.count(*) FROM ventros.tick_message_groups($1))::integer AS n FROM b),
                       e AS (SELECT ventros.expire_credentials() AS n FROM g)
                  SELECT pg_catalog.jsonb_build_object('campaign_steps', c.n, 'sequence_steps', s.n,
                                                       'broadcast_sends', b.n, 'message_groups', g.n,
                                                       'credentials_expired', e.n)
                    FROM c, s, b, g, e$s$,
               now => tick_automation.now) r;
END
$$;
COMMENT ON FUNCTION ventros.tick_automation(timestamptz) IS
    'Runs every tenant''s automation ticks (campaigns, sequences, broadcasts, message groups, credential expiry), one subtransaction per tenant (ventros.run_per_tenant); platform administrators only (42501)';

CREATE OR REPLACE FUNCTION ventros.tick_webhooks(now timestamptz DEFAULT now(), failing_for interval DEFAULT '5 days')
RETURNS TABLE (tenant_id text, disabled integer, error text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.require_platform_admin();
    -- the tenants with a subscription due, each through ventros.run_per_tenant
    RETURN QUERY
    SELECT r.tenant_id, (r.result #>> '{}')::integer, r.error
      FROM ventros.run_per_tenant('ventros-tick-webhooks',
               $s$SELECT pg_catalog.to_jsonb(ventros.disable_failing_webhook_subscriptions($1, ($2->>'failing_for')::interval))$s$,
               ARRAY(SELECT DISTINCT w.tenant_id FROM ventros.webhook_subscriptions w
                      WHERE w.active AND w.deleted_at IS NULL AND w.failing_since <= tick_webhooks.now - failing_for
                      ORDER BY 1),
               tick_webhooks.now, pg_catalog.jsonb_build_object('failing_for', failing_for)) r;
END
$$;
COMMENT ON FUNCTION ventros.tick_webhooks(timestamptz, interval) IS
    'Disables, in every tenant, subscriptions failing every delivery for failing_for (default 5 days); platform administrators only (42501)';

CREATE OR REPLACE FUNCTION ventros.count_channel_message(channel_id uuid, from_me boolean, at timestamptz)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
BEGIN
    -- only a live channel of the acting tenant: a count row for anything
    -- else could never be folded
    PERFORM FROM ventros.channels ch
     WHERE ch.tenant_id = tenant AND ch.id = count_channel_message.channel_id AND ch.deleted_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'channel % not found', count_channel_message.channel_id USING ERRCODE = 'P0002';
    END IF;
    INSERT INTO ventros.channel_message_counts AS c
        (tenant_id, channel_id, slot, messages_received, messages_sent, last_message_at)
    VALUES (tenant, count_channel_message.channel_id, ventros.stats_slot(),
            (NOT from_me)::integer, from_me::integer, at)
    ON CONFLICT ON CONSTRAINT channel_message_counts_pkey DO UPDATE
    SET messages_received = c.messages_received + EXCLUDED.messages_received,
        messages_sent = c.messages_sent + EXCLUDED.messages_sent,
        last_message_at = greatest(c.last_message_at, EXCLUDED.last_message_at);
END
$$;
COMMENT ON FUNCTION ventros.count_channel_message(uuid, boolean, timestamptz) IS
    'Counts a message on a live channel of the acting tenant (P0002 for any other), in the channel''s slot rows (see channel_message_counts)';

CREATE OR REPLACE FUNCTION ventros.fold_channel_message_counts()
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.current_tenant();
    folded integer;
BEGIN
    IF tenant IS NULL THEN
        -- every tenant with slots, each on its own (ventros.run_per_tenant):
        -- one tenant's bad row fails only its own fold
        PERFORM ventros.require_platform_admin();
        SELECT coalesce(sum((r.result #>> '{}')::integer), 0)::integer INTO folded
          FROM ventros.run_per_tenant('ventros-fold-channel-counts',
                   'SELECT pg_catalog.to_jsonb(ventros.fold_channel_message_counts())',
                   ARRAY(SELECT DISTINCT c.tenant_id FROM ventros.channel_message_counts c ORDER BY 1)) r;
        RETURN folded;
    END IF;
    -- The slots of the tenant's live channels; those of a channel deleted
    -- since wait (folded if it is restored).
    WITH gone AS (
        DELETE FROM ventros.channel_message_counts c
         WHERE c.tenant_id = tenant
           AND EXISTS (SELECT FROM ventros.channels ch
                        WHERE ch.tenant_id = c.tenant_id AND ch.id = c.channel_id AND ch.deleted_at IS NULL)
        RETURNING c.*),
    totals AS (
        SELECT g.tenant_id, g.channel_id, sum(g.messages_received) AS received, sum(g.messages_sent) AS sent,
               max(g.last_message_at) AS last_at
          FROM gone g GROUP BY 1, 2),
    applied AS (
        UPDATE ventros.channels ch
           SET messages_received = ch.messages_received + t.received,
               messages_sent = ch.messages_sent + t.sent,
               last_message_at = greatest(ch.last_message_at, t.last_at),
               version = ch.version
          FROM totals t
         WHERE ch.tenant_id = t.tenant_id AND ch.id = t.channel_id
        RETURNING 1)
    SELECT count(*)::integer INTO folded FROM applied;
    RETURN folded;
END
$$;
COMMENT ON FUNCTION ventros.fold_channel_message_counts() IS
    'Adds the counted slots to their live channels'' messages_received, messages_sent and last_message_at (quiet); per tenant, a failure recorded in ventros.scheduled_job_failures; returns the channels updated';

UPDATE ventros.scheduled_jobs
   SET command = 'SELECT count(*) FROM ventros.run_per_tenant(''ventros-tick-sessions'', ''SELECT pg_catalog.to_jsonb(ventros.tick_sessions($1))'')'
 WHERE name = 'ventros-tick-sessions';

-- ---- Meta channels without an app secret, reprocess_inbox_item's role check (sql/88_inbox.sql) ----

COMMENT ON COLUMN ventros.channel_webhook_rejections.last_reason IS
    'Why the last one was refused (missing_signature, invalid_signature, bad_algorithm, invalid_token, no_app_secret)';

CREATE OR REPLACE FUNCTION ventros.session_role() RETURNS name
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN pg_catalog.current_setting('role') = 'none' THEN session_user
                ELSE pg_catalog.current_setting('role')::name END
$$;
COMMENT ON FUNCTION ventros.session_role() IS
    'The role the session acts as (its SET ROLE, else its login): the caller''s role for checks inside SECURITY DEFINER functions, where current_user is the definer';

REVOKE EXECUTE ON FUNCTION ventros.session_role() FROM PUBLIC;

CREATE OR REPLACE FUNCTION ventros.reprocess_inbox_item(inbox_id uuid) RETURNS ventros.inbox
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    r ventros.inbox;
BEGIN
    -- the caller's role: current_user here is this function's owner
    IF NOT pg_has_role(ventros.session_role(), 'ventros_admin', 'MEMBER')
       AND NOT pg_has_role(ventros.session_role(), 'ventros_platform_admin', 'MEMBER') THEN
        RAISE EXCEPTION 'only administrators reprocess inbox items' USING ERRCODE = '42501',
            DETAIL = pg_catalog.format('Role "%s" is not a member of ventros_admin.', ventros.session_role());
    END IF;
    SELECT * INTO r FROM ventros.inbox i WHERE i.tenant_id = tenant AND i.id = inbox_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'inbox item % not found', inbox_id USING ERRCODE = 'P0002';
    END IF;
    IF r.status NOT IN ('failed', 'unmatched', 'unparsed', 'received') OR r.item IS NULL THEN
        RAISE EXCEPTION 'inbox item % is %', inbox_id, r.status USING ERRCODE = '55000',
            HINT = 'Only failed, unmatched, unparsed or received items with a parsed JSON item are reprocessed.';
    END IF;
    PERFORM ventros.inbox_run(r, now());
    SELECT * INTO r FROM ventros.inbox i WHERE i.tenant_id = tenant AND i.id = inbox_id;
    RETURN r;
END
$$;
COMMENT ON FUNCTION ventros.reprocess_inbox_item(uuid) IS
    'Administrators: processes one failed, unmatched or unparsed inbox item of the acting tenant again, now; returns the row';

-- Meta channels without an app secret took unsigned deliveries until now and
-- refuse them from here on: say so, so the operator sets app_secret (or, for
-- a channel that must stay open, "allow_unsigned": true).
DO $$
DECLARE
    n integer;
BEGIN
    SELECT count(*) INTO n FROM ventros.channels c
     WHERE c.type IN ('whatsapp', 'whatsapp_business', 'instagram', 'messenger') AND c.deleted_at IS NULL
       AND nullif(c.config->>'app_secret', '') IS NULL AND c.config->'allow_unsigned' IS DISTINCT FROM 'true'::jsonb;
    IF n > 0 THEN
        RAISE NOTICE '% Meta channel(s) without app_secret now refuse unsigned webhook deliveries', n
            USING HINT = 'Set config.app_secret on each (or "allow_unsigned": true to keep one open); see docs/security.md.';
    END IF;
END
$$;

-- ---- keys lead with tenant_id (sql/03_outbox.sql, sql/12_users.sql) ----------
ALTER TABLE ventros.outbox_queue DROP CONSTRAINT outbox_queue_pkey;
ALTER TABLE ventros.outbox_queue ADD PRIMARY KEY (tenant_id, seq);
CREATE INDEX outbox_queue_seq ON ventros.outbox_queue (seq);
ALTER TABLE ventros.user_refresh_tokens DROP CONSTRAINT user_refresh_tokens_pkey;
ALTER TABLE ventros.user_refresh_tokens ADD PRIMARY KEY (tenant_id, token_hash);
CREATE INDEX user_refresh_tokens_by_hash ON ventros.user_refresh_tokens (token_hash);

-- ---- processed_events: an append-only record, not an aggregate
-- (sql/66_processed_events.sql): the columns no trigger kept go ----------------
ALTER TABLE ventros.processed_events DROP COLUMN version, DROP COLUMN created_at,
    DROP COLUMN updated_at, DROP COLUMN deleted_at;

-- ---- inbox_lock_wait
-- No tenant holds up the inbox processors for the others: an item that waits
-- for a lock past ventros.inbox_lock_timeout is put off (no attempt counted),
-- with the rest of its tenant's batch.


CREATE OR REPLACE FUNCTION ventros.process_inbox(batch_size integer DEFAULT 100, now timestamptz DEFAULT now())
RETURNS TABLE (status text, items integer)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET ventros.tenant = ''
AS $$
DECLARE
    r ventros.inbox;
    outcome text;
    counts jsonb := '{}';
    held_up text[] := '{}';     -- tenants whose item waited past the lock timeout
    wait text := pg_catalog.current_setting('ventros.inbox_lock_timeout', true);
    saved_wait text := pg_catalog.current_setting('lock_timeout');
BEGIN
    PERFORM ventros.require_platform_admin();
    -- No tenant holds up the others: an item waits for a lock at most this
    -- long, and then the rest of its tenant's items in the batch are put off
    -- with it, so one tenant's open transaction costs a processor one wait
    -- every few seconds, not one per item.
    IF wait IS NOT NULL AND wait NOT IN ('0', '0ms') THEN
        PERFORM pg_catalog.set_config('lock_timeout', wait, true);
    END IF;
    FOR r IN SELECT * FROM ventros.inbox i
             WHERE i.status IN ('received', 'failed', 'unmatched') AND i.next_attempt_at <= process_inbox.now
             ORDER BY i.next_attempt_at, i.received_at, i.item_index
             LIMIT batch_size
             FOR UPDATE SKIP LOCKED LOOP
        IF r.tenant_id = ANY (held_up) THEN
            UPDATE ventros.inbox i SET next_attempt_at = process_inbox.now + interval '5 seconds'
            WHERE i.tenant_id = r.tenant_id AND i.id = r.id;
            outcome := 'deferred';
        ELSE
            PERFORM set_config('ventros.tenant', r.tenant_id, true);
            outcome := ventros.inbox_run(r, process_inbox.now);
            IF outcome = 'deferred' THEN
                held_up := held_up || r.tenant_id;
            END IF;
        END IF;
        counts := jsonb_set(counts, ARRAY[outcome], to_jsonb(coalesce((counts->>outcome)::integer, 0) + 1));
    END LOOP;
    PERFORM pg_catalog.set_config('lock_timeout', saved_wait, true);
    RETURN QUERY SELECT c.key, c.value::text::integer FROM jsonb_each(counts) c ORDER BY c.key;
END
$$;
COMMENT ON FUNCTION ventros.process_inbox(integer, timestamptz) IS
    'Platform admins / scheduler: processes up to batch_size due inbox items of every tenant (received, failed with retries left, unmatched), each in its own subtransaction; an item that waits for a lock past ventros.inbox_lock_timeout is put off 5 s with the rest of its tenant''s batch (status deferred, no attempt counted); returns how many ended in each status';

-- ---- lint_fixes
-- Lints over the catalog (test/pgtap/610_lints.sql) call every function a
-- tenant role may call that takes a tenant, naming another tenant.
-- ventros.event_log_sequence now refuses (its lock is ventros.lock_tenant_key,
-- 40_locks_cron.sql), but the activity log's trigger called it for any row,
-- so a row of another tenant failed on that lock (42501, "permission denied
-- to lock a key") before the row policy could refuse it: a widened INSERT
-- policy would have hidden behind the lock.  The trigger leaves a row of
-- another tenant unnumbered, so the row policy refuses it first.

CREATE OR REPLACE FUNCTION ventros.event_log_guard() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.tenant_id := coalesce(NEW.tenant_id, ventros.require_tenant());
        -- A row of another tenant is left unnumbered: the row policy refuses
        -- it (42501) without this trigger locking that tenant's log.
        NEW.sequence_number := CASE WHEN NEW.contact_id IS NOT NULL
                                         AND NEW.tenant_id IS NOT DISTINCT FROM coalesce(ventros.current_tenant(), NEW.tenant_id)
                                    THEN ventros.event_log_sequence(NEW.tenant_id, NEW.contact_id) END;
        RETURN NEW;
    END IF;
    IF (NEW.event_type, NEW.aggregate_type, NEW.aggregate_id, NEW.project_id, NEW.user_id, NEW.source, NEW.occurred_at)
       IS DISTINCT FROM (OLD.event_type, OLD.aggregate_type, OLD.aggregate_id, OLD.project_id, OLD.user_id, OLD.source,
                         OLD.occurred_at)
       OR (NEW.payload IS DISTINCT FROM OLD.payload
           AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user))
       OR (OLD.contact_id IS NOT NULL AND NEW.contact_id IS DISTINCT FROM OLD.contact_id)
       OR (OLD.session_id IS NOT NULL AND NEW.session_id IS DISTINCT FROM OLD.session_id)
       OR (OLD.message_id IS NOT NULL AND NEW.message_id IS DISTINCT FROM OLD.message_id)
       OR (OLD.sequence_number IS NOT NULL AND NEW.sequence_number IS DISTINCT FROM OLD.sequence_number) THEN
        RAISE EXCEPTION 'event log entry % is append-only', OLD.id
            USING ERRCODE = '55000',
                  DETAIL = 'Only a missing contact, session or message and published_at can be added to an entry.';
    END IF;
    IF OLD.contact_id IS NULL AND NEW.contact_id IS NOT NULL THEN
        NEW.sequence_number := ventros.event_log_sequence(NEW.tenant_id, NEW.contact_id);
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION ventros.event_log_guard() IS
    'Keeps the activity log append-only (55000) and numbers each contact''s entries';

-- ---- setting_units
-- Durations and sizes of the dispatcher, the inbox processors and media carry
-- their units ('5s', '64MB'); ventros.http_backoff_base is now
-- ventros.http_backoff_min, as the outbox's; SQL reads them in base units
-- through ventros.setting_number().

-- A numeric ventros.* setting in its base unit (ms, s or bytes): durations
-- and sizes are declared with units, so current_setting() shows '5s'.
CREATE FUNCTION ventros.setting_number(name text) RETURNS bigint
LANGUAGE c STABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'ventros_setting_number';
COMMENT ON FUNCTION ventros.setting_number(text) IS
    'A numeric ventros.* setting in its base unit (milliseconds, seconds or bytes, as declared), for SQL that computes with it';
GRANT EXECUTE ON FUNCTION ventros.setting_number(text) TO ventros_viewer, ventros_anon;

CREATE OR REPLACE FUNCTION ventros.http_backoff(failed_attempts integer) RETURNS interval
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT make_interval(secs => least(ventros.setting_number('ventros.http_backoff_min')::float8
                                       * power(2::float8, least(greatest(failed_attempts, 1) - 1, 40)),
                                       ventros.setting_number('ventros.http_backoff_max')::float8)
                                 * (0.9 + random() * 0.2) / 1000.0)
$$;
COMMENT ON FUNCTION ventros.http_backoff(integer) IS
    'Retry delay after n failed attempts: exponential from ventros.http_backoff_min up to ventros.http_backoff_max, +-10 % jitter';

CREATE OR REPLACE FUNCTION ventros.http_record_attempt(
    p_tenant_id text, p_id uuid, p_attempt integer,
    p_succeeded boolean, p_retryable boolean, p_retry_after_ms bigint,
    p_response_status integer, p_response_headers text, p_response_body bytea,
    p_response_truncated boolean, p_error text)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ventros.http_requests;
    new_status text;
    delay interval;
    hdrs jsonb;
    classify text;
BEGIN
    SELECT * INTO r FROM ventros.http_requests
     WHERE tenant_id = p_tenant_id AND id = p_id AND status = 'in_flight' AND attempts = p_attempt
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF p_response_headers IS NOT NULL THEN
        SELECT coalesce(jsonb_object_agg(lower(btrim(split_part(l, ':', 1))),
                                         btrim(substr(l, strpos(l, ':') + 1))), '{}')
          INTO hdrs
          FROM regexp_split_to_table(p_response_headers, E'\r?\n') AS l
         WHERE strpos(l, ':') > 1;
    END IF;
    IF NOT p_succeeded AND r.retry_policy NOT IN ('transient', 'any') THEN
        SELECT format('SELECT %s($1, $2, $3)', c.classifier::regproc) INTO classify
          FROM ventros.http_retry_classifiers c WHERE c.policy = r.retry_policy;
        IF classify IS NOT NULL THEN
            EXECUTE classify INTO p_retryable USING p_response_status, p_response_body, p_retryable;
        END IF;
    END IF;
    IF p_succeeded THEN
        new_status := 'succeeded';
    ELSIF NOT p_retryable THEN
        new_status := 'failed';
    ELSIF r.attempts >= r.max_attempts THEN
        new_status := 'dead';
    ELSE
        new_status := 'pending';
        delay := CASE WHEN cardinality(r.retry_schedule) > 0
                      THEN r.retry_schedule[least(r.attempts, cardinality(r.retry_schedule))] * (0.9 + random() * 0.2)
                      ELSE ventros.http_backoff(r.attempts) END;
        IF p_retry_after_ms IS NOT NULL THEN
            delay := greatest(delay, make_interval(secs => least(p_retry_after_ms / 1000.0,
                                         ventros.setting_number('ventros.http_retry_after_max')::float8)));
        END IF;
    END IF;
    UPDATE ventros.http_requests
       SET status = new_status,
           next_attempt_at = CASE WHEN new_status = 'pending' THEN clock_timestamp() + delay ELSE next_attempt_at END,
           lease_until = NULL, claimed_by = NULL,
           response_status = p_response_status,
           response_headers = hdrs,
           response_body = p_response_body,
           response_truncated = coalesce(p_response_truncated, false),
           last_error = CASE WHEN p_succeeded THEN NULL ELSE p_error END,
           completed_at = CASE WHEN new_status IN ('succeeded', 'failed', 'dead') THEN clock_timestamp() END,
           updated_at = now()
     WHERE tenant_id = p_tenant_id AND id = p_id
    RETURNING * INTO r;
    IF new_status <> 'pending' THEN
        PERFORM ventros.run_http_request_handler(r);
    END IF;
    RETURN new_status;
END
$$;
COMMENT ON FUNCTION ventros.http_record_attempt(text, uuid, integer, boolean, boolean, bigint, integer, text, bytea, boolean, text) IS
    'Dispatcher: stores an attempt''s answer and decides succeeded, failed, dead or a retry after backoff (Retry-After honoured)';

CREATE OR REPLACE FUNCTION ventros.media_download_cap(req jsonb) RETURNS integer
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN req->>'step' = 'lookup' THEN NULL ELSE ventros.setting_number('ventros.media_max_size')::integer END
$$;
COMMENT ON FUNCTION ventros.media_download_cap(jsonb) IS
    'ventros.media_max_size for a media download request, NULL (the dispatcher''s default cap) for a Cloud API media lookup';

CREATE OR REPLACE FUNCTION ventros.handle_media_lookup(r ventros.http_requests) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    answer jsonb := ventros.json_body(r.response_body);
BEGIN
    IF r.status <> 'succeeded' THEN
        PERFORM ventros.fail_media_download(r, ventros.provider_error_text(r));
    ELSIF coalesce(answer->>'url', '') !~* '^https?://' THEN
        PERFORM ventros.fail_media_download(r, 'the media lookup answer has no url');
    ELSE
        UPDATE ventros.message_media mm
           SET content_type = coalesce(answer->>'mime_type', mm.content_type),
               expected_sha256 = coalesce(answer->>'sha256', mm.expected_sha256)
         WHERE mm.tenant_id = r.tenant_id AND mm.message_id = r.correlation_id;
        PERFORM ventros.enqueue_http_request(answer->>'url', 'GET', r.headers, NULL, 'media.download', r.correlation_id,
                                             retry_policy => r.retry_policy,
                                             max_response_size => ventros.setting_number('ventros.media_max_size')::integer);
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.handle_media_lookup(ventros.http_requests) IS
    'Completion handler of media.lookup (Cloud API step 1): queues the download of the returned URL with the same headers, keeping mime_type and sha256';

CREATE OR REPLACE FUNCTION ventros.handle_media_download(r ventros.http_requests) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mm ventros.message_media;
    bytes bytea := coalesce(r.response_body, '');
    digest bytea;
BEGIN
    SELECT * INTO mm FROM ventros.message_media x
     WHERE x.tenant_id = r.tenant_id AND x.message_id = r.correlation_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    digest := sha256(bytes);
    IF r.status <> 'succeeded' THEN
        PERFORM ventros.fail_media_download(r, ventros.provider_error_text(r));
    ELSIF r.response_truncated THEN
        PERFORM ventros.fail_media_download(r, format('the media is larger than %s bytes (ventros.media_max_size)',
                                                      coalesce(r.max_response_size, ventros.setting_number('ventros.http_max_response_size')::integer)));
    ELSIF mm.expected_sha256 IS NOT NULL AND lower(mm.expected_sha256) <> encode(digest, 'hex')
          AND mm.expected_sha256 <> encode(digest, 'base64') THEN
        PERFORM ventros.fail_media_download(r, format('sha256 mismatch: expected %s, got %s', mm.expected_sha256,
                                                      encode(digest, 'hex')));
    ELSE
        UPDATE ventros.message_media x
           SET status = 'downloaded', data = bytes, size = length(bytes), sha256 = encode(digest, 'hex'), error = NULL,
               content_type = coalesce(nullif(split_part(r.response_headers->>'content-type', ';', 1), ''), x.content_type),
               downloaded_at = now()
         WHERE x.tenant_id = mm.tenant_id AND x.message_id = mm.message_id
        RETURNING * INTO mm;
        PERFORM ventros.finish_media_download(mm);
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.handle_media_download(ventros.http_requests) IS
    'Completion handler of media.download: stores the bytes in ventros.message_media with content type, size and sha256 (checked against the provider''s when known), or the failure; then metadata.media_download on the message';


-- ---- register_verb
-- One verb for declaring things to the catalog: register_* (as
-- register_aggregate, register_event_type).  The declare_* functions of 0.1.0
-- are dropped and their register_* successors created; the rows they wrote
-- stay.
DROP FUNCTION ventros.declare_quiet_columns(text, name[]);
DROP FUNCTION ventros.declare_http_request_preparer(text, regprocedure);
DROP FUNCTION ventros.declare_http_retry_classifier(text, regprocedure);
DROP FUNCTION ventros.declare_http_request_handler(text, regprocedure);
DROP FUNCTION ventros.declare_channel_provider(text, text, regprocedure, regprocedure, regprocedure, text, integer);
-- (its successor, register_channel_provider, takes two more arguments: 71_inbound_registry.sql)

CREATE OR REPLACE FUNCTION ventros.register_quiet_columns(aggregate text, columns name[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target regclass;
    missing name;
BEGIN
    SELECT a.table_name INTO target FROM ventros.aggregates a WHERE a.aggregate = register_quiet_columns.aggregate;
    IF target IS NULL THEN
        RAISE EXCEPTION 'aggregate "%" is not registered', aggregate USING ERRCODE = '22023';
    END IF;
    SELECT c INTO missing FROM unnest(columns) c
    WHERE NOT EXISTS (SELECT 1 FROM pg_attribute
                      WHERE attrelid = target AND attname = c AND attnum > 0 AND NOT attisdropped)
    LIMIT 1;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'aggregate table % has no column %', target, missing USING ERRCODE = '22023';
    END IF;
    UPDATE ventros.aggregates a SET quiet_columns = coalesce(columns, '{}')
    WHERE a.aggregate = register_quiet_columns.aggregate;
END
$$;
COMMENT ON FUNCTION ventros.register_quiet_columns(text, name[]) IS
    'Registers the columns whose changes alone neither bump an aggregate''s version nor emit events';

GRANT EXECUTE ON FUNCTION ventros.register_quiet_columns(text, name[]) TO ventros_platform_admin;

CREATE OR REPLACE FUNCTION ventros.register_http_request_preparer(purpose text, preparer regprocedure) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.require_function_shape(preparer, ARRAY['ventros.http_requests']::regtype[], 'jsonb', 'preparer');
    INSERT INTO ventros.http_request_preparers AS h (purpose, preparer)
    VALUES (register_http_request_preparer.purpose, register_http_request_preparer.preparer)
    ON CONFLICT ON CONSTRAINT http_request_preparers_pkey DO UPDATE SET preparer = EXCLUDED.preparer;
END
$$;
COMMENT ON FUNCTION ventros.register_http_request_preparer(text, regprocedure) IS
    'Registers the function that computes the headers of each attempt of requests of one purpose';

CREATE OR REPLACE FUNCTION ventros.register_http_retry_classifier(policy text, classifier regprocedure) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.require_function_shape(classifier, ARRAY['integer', 'bytea', 'boolean']::regtype[], 'boolean',
                                           'classifier');
    INSERT INTO ventros.http_retry_classifiers AS c (policy, classifier)
    VALUES (register_http_retry_classifier.policy, register_http_retry_classifier.classifier)
    ON CONFLICT ON CONSTRAINT http_retry_classifiers_pkey DO UPDATE SET classifier = EXCLUDED.classifier;
END
$$;
COMMENT ON FUNCTION ventros.register_http_retry_classifier(text, regprocedure) IS
    'Registers the function that decides whether failed answers of requests with this retry_policy are retried';

CREATE OR REPLACE FUNCTION ventros.register_http_request_handler(purpose text, handler regprocedure) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.require_function_shape(handler, ARRAY['ventros.http_requests']::regtype[], NULL, 'handler');
    INSERT INTO ventros.http_request_handlers AS h (purpose, handler)
    VALUES (register_http_request_handler.purpose, register_http_request_handler.handler)
    ON CONFLICT ON CONSTRAINT http_request_handlers_pkey DO UPDATE SET handler = EXCLUDED.handler;
END
$$;
COMMENT ON FUNCTION ventros.register_http_request_handler(text, regprocedure) IS
    'Registers the function that handles the final outcome of requests of one purpose';

-- its hint names the classifier registration
CREATE OR REPLACE FUNCTION ventros.enqueue_http_request(
    url text,
    method text DEFAULT 'POST',
    headers jsonb DEFAULT '{}',
    body bytea DEFAULT NULL,
    purpose text DEFAULT 'generic',
    correlation_id uuid DEFAULT NULL,
    max_attempts integer DEFAULT NULL,
    timeout_ms integer DEFAULT NULL,
    not_before timestamptz DEFAULT NULL,
    retry_policy text DEFAULT 'transient',
    max_response_size integer DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    new_id uuid;
BEGIN
    IF url IS NULL OR url !~* '^https?://[^/?#]' THEN
        RAISE EXCEPTION 'url must be an http or https URL'
            USING ERRCODE = '22023', DETAIL = format('Got %s.', coalesce(quote_literal(left(url, 200)), 'NULL'));
    END IF;
    IF headers IS NOT NULL AND EXISTS (SELECT 1 FROM jsonb_each(headers) h
                                        WHERE jsonb_typeof(h.value) <> 'string' OR h.key !~ '^[!#$%&''*+.^_`|~0-9A-Za-z-]+$'
                                           OR (h.value #>> '{}') ~ '[\r\n]') THEN
        RAISE EXCEPTION 'headers must be an object of header names to string values'
            USING ERRCODE = '22023',
                  DETAIL = 'Names are HTTP tokens; values are strings without line breaks.';
    END IF;
    IF retry_policy IS NOT NULL AND retry_policy NOT IN ('transient', 'any')
       AND NOT EXISTS (SELECT 1 FROM ventros.http_retry_classifiers c WHERE c.policy = retry_policy) THEN
        RAISE EXCEPTION 'unknown retry policy "%"', left(retry_policy, 64) USING ERRCODE = '22023',
            HINT = 'Use transient, any, or a policy registered with ventros.register_http_retry_classifier.';
    END IF;
    INSERT INTO ventros.http_requests AS r
        (tenant_id, method, url, headers, body, purpose, correlation_id, retry_policy, max_attempts,
         timeout_ms, next_attempt_at, max_response_size)
    VALUES (tenant, upper(method), url, coalesce(headers, '{}'), body, coalesce(purpose, 'generic'),
            correlation_id, coalesce(retry_policy, 'transient'),
            coalesce(max_attempts, current_setting('ventros.http_max_attempts')::integer),
            timeout_ms, coalesce(not_before, now()), max_response_size)
    RETURNING r.id INTO new_id;
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION ventros.enqueue_http_request(text, text, jsonb, bytea, text, uuid, integer, integer, timestamptz, text, integer) IS
    'Queues an outbound HTTP call for the acting tenant; the dispatcher sends it after commit. Returns its id';


-- ---- inbound_registry
-- The inbound provider registry (sql/88_inbox.sql): per provider, its verify,
-- split, process and challenge functions as data, instead of CASE branches
-- on provider names; the registry is the one list of providers, which the
-- inbox and ventros.channel_providers refer to by foreign key instead of
-- repeating the names in CHECK constraints.

CREATE TABLE ventros.inbound_providers (
    provider  text PRIMARY KEY,
    verify    regprocedure NOT NULL,
    split     regprocedure NOT NULL,
    process   regprocedure NOT NULL,
    challenge regprocedure,
    -- the URL segment: lower case, and short enough for the front (15 bytes)
    CONSTRAINT inbound_providers_name_format CHECK (provider ~ '^[a-z][a-z0-9_]{0,14}$')
);
COMMENT ON TABLE ventros.inbound_providers IS
    'Per webhook provider: verify(config jsonb, headers jsonb, body bytea) -> NULL or why not authentic; split(config jsonb, doc jsonb, body bytea, headers jsonb) -> SETOF ventros.inbox_item; process(ventros.inbox, ventros.channels) -> ventros.inbox_outcome; challenge(config jsonb, mode text, verify_token text, challenge text) -> the text to echo or NULL (no handshake when NULL)';

-- A catalogue shared by every tenant: readable by all, written by registrations only.
ALTER TABLE ventros.inbound_providers ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.inbound_providers FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_catalog_read ON ventros.inbound_providers FOR SELECT USING (true);
GRANT SELECT ON ventros.inbound_providers TO ventros_viewer;

CREATE OR REPLACE FUNCTION ventros.register_inbound_provider(provider text, verify regprocedure, split regprocedure,
                                                  process regprocedure, challenge regprocedure DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.require_function_shape(verify, ARRAY['jsonb', 'jsonb', 'bytea']::regtype[], 'text', 'verify');
    PERFORM ventros.require_function_shape(split, ARRAY['jsonb', 'jsonb', 'bytea', 'jsonb']::regtype[],
                                           'ventros.inbox_item', 'split');
    PERFORM ventros.require_function_shape(process, ARRAY['ventros.inbox', 'ventros.channels']::regtype[],
                                           'ventros.inbox_outcome', 'process');
    IF challenge IS NOT NULL THEN
        PERFORM ventros.require_function_shape(challenge, ARRAY['jsonb', 'text', 'text', 'text']::regtype[], 'text',
                                               'challenge');
    END IF;
    INSERT INTO ventros.inbound_providers AS p (provider, verify, split, process, challenge)
    VALUES (register_inbound_provider.provider, register_inbound_provider.verify, register_inbound_provider.split,
            register_inbound_provider.process, register_inbound_provider.challenge)
    ON CONFLICT ON CONSTRAINT inbound_providers_pkey DO UPDATE
       SET verify = EXCLUDED.verify, split = EXCLUDED.split, process = EXCLUDED.process, challenge = EXCLUDED.challenge;
END
$$;
COMMENT ON FUNCTION ventros.register_inbound_provider(text, regprocedure, regprocedure, regprocedure, regprocedure) IS
    'Registers how the webhooks of a provider are verified, split into inbox items, processed and (optionally) subscribed to (see ventros.inbound_providers)';

-- the providers' functions (sql/89_inbound_meta.sql, sql/89_inbound_waha.sql)
CREATE OR REPLACE FUNCTION ventros.verify_meta_webhook(config jsonb, headers jsonb, body bytea) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    secret text := nullif(config->>'app_secret', '');
    given text := headers->>'x-hub-signature-256';
    given_bytes bytea;
BEGIN
    IF secret IS NULL THEN
        -- no secret to check against: unsigned only when the channel says so explicitly
        IF config->'allow_unsigned' = 'true'::jsonb THEN
            RETURN NULL;
        END IF;
        RETURN 'no_app_secret';
    END IF;
    IF given IS NULL THEN
        RETURN 'missing_signature';
    END IF;
    given_bytes := CASE WHEN left(given, 7) = 'sha256=' THEN ventros.decode_hex_signature(substr(given, 8), 32) END;
    IF given_bytes IS NULL
       OR NOT ventros.timing_safe_equal(ventros.webhook_hmac(body, secret, 'sha256'), given_bytes) THEN
        RETURN 'invalid_signature';
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.verify_meta_webhook(jsonb, jsonb, bytea) IS
    'Meta webhooks: NULL when X-Hub-Signature-256 is the HMAC-SHA256 of the body with config.app_secret (constant-time), or the channel has no app_secret and "allow_unsigned": true; else missing_signature, invalid_signature or no_app_secret';

CREATE OR REPLACE FUNCTION ventros.meta_webhook_challenge(config jsonb, mode text, verify_token text, challenge text) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    expected text := nullif(config->>'verify_token', '');
BEGIN
    IF expected IS NULL OR mode IS DISTINCT FROM 'subscribe' OR verify_token IS NULL
       OR challenge IS NULL OR length(challenge) > 1024 THEN
        RETURN NULL;
    END IF;
    IF NOT ventros.timing_safe_equal(sha256(convert_to(expected, 'UTF8')), sha256(convert_to(verify_token, 'UTF8'))) THEN
        RETURN NULL;
    END IF;
    RETURN challenge;
END
$$;
COMMENT ON FUNCTION ventros.meta_webhook_challenge(jsonb, text, text, text) IS
    'Meta''s verification handshake: the challenge to echo when mode is subscribe and the verify token matches config.verify_token (constant-time), else NULL';

CREATE OR REPLACE FUNCTION ventros.verify_waha_webhook(config jsonb, headers jsonb, body bytea) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    secret text := nullif(config->>'webhook_secret', '');
    token text := nullif(config->>'webhook_token', '');
    given text;
    given_bytes bytea;
BEGIN
    IF secret IS NOT NULL THEN
        given := headers->>'x-webhook-hmac';
        IF given IS NULL THEN
            RETURN 'missing_signature';
        END IF;
        IF lower(coalesce(headers->>'x-webhook-hmac-algorithm', 'sha512')) <> 'sha512' THEN
            RETURN 'bad_algorithm';
        END IF;
        given_bytes := ventros.decode_hex_signature(given, 64);
        IF given_bytes IS NULL
           OR NOT ventros.timing_safe_equal(ventros.webhook_hmac(body, secret, 'sha512'), given_bytes) THEN
            RETURN 'invalid_signature';
        END IF;
    END IF;
    IF token IS NOT NULL THEN
        given := headers->>'x-ventros-token';
        IF given IS NULL
           OR NOT ventros.timing_safe_equal(sha256(convert_to(token, 'UTF8')), sha256(convert_to(given, 'UTF8'))) THEN
            RETURN 'invalid_token';
        END IF;
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.verify_waha_webhook(jsonb, jsonb, bytea) IS
    'WAHA webhooks: NULL when X-Webhook-Hmac is the HMAC-SHA512 of the body with config.webhook_secret (when set; algorithm sha512) and X-Ventros-Token equals config.webhook_token (when set), constant-time; else missing_signature, bad_algorithm, invalid_signature or invalid_token';

-- split_whatsapp takes the headers argument of the registry's shape
DROP FUNCTION ventros.split_whatsapp(jsonb, jsonb, bytea);
CREATE OR REPLACE FUNCTION ventros.split_whatsapp(config jsonb, doc jsonb, body bytea, headers jsonb)
RETURNS SETOF ventros.inbox_item
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ventros.inbox_item;
    e jsonb;
    c jsonb;
    v jsonb;
    x jsonb;
    ctx jsonb;
    ours text := nullif(config->>'phone_number_id', '');
    foreign_item boolean;
    emitted boolean;
BEGIN
    IF jsonb_typeof(doc) IS DISTINCT FROM 'object' OR jsonb_typeof(doc->'entry') IS DISTINCT FROM 'array' THEN
        r := ROW('invalid', ventros.body_sha256(body), doc, NULL, 'failed',
                 '22P02: a WhatsApp webhook body must be an object with an entry array');
        RETURN NEXT r;
        RETURN;
    END IF;
    IF doc->>'object' IS DISTINCT FROM 'whatsapp_business_account' THEN
        r := ROW('unknown', ventros.body_sha256(body), doc, NULL, 'unparsed',
                 format('unexpected object %s', coalesce(doc->>'object', 'null')));
        RETURN NEXT r;
        RETURN;
    END IF;
    FOR e IN SELECT * FROM jsonb_array_elements(doc->'entry') LOOP
        FOR c IN SELECT * FROM jsonb_array_elements(CASE WHEN jsonb_typeof(e->'changes') = 'array' THEN e->'changes' ELSE '[]' END) LOOP
            v := c->'value';
            ctx := jsonb_build_object('object', doc->'object', 'entry_id', e->'id', 'field', c->'field',
                                      'metadata', v->'metadata');
            -- Ours unless it names another number (or, without metadata, another WABA).
            foreign_item := CASE WHEN jsonb_typeof(v->'metadata'->'phone_number_id') = 'string'
                                 THEN ours IS NOT NULL AND v->'metadata'->>'phone_number_id' <> ours
                                 ELSE nullif(config->>'waba_id', '') IS NOT NULL AND ventros.json_text(e, 'id') IS NOT NULL
                                      AND ventros.json_text(e, 'id') <> config->>'waba_id' END;
            emitted := false;
            IF c->>'field' = 'messages' AND jsonb_typeof(v) = 'object' THEN
                FOR x IN SELECT * FROM jsonb_array_elements(CASE WHEN jsonb_typeof(v->'messages') = 'array' THEN v->'messages' ELSE '[]' END) LOOP
                    r.item := ctx || jsonb_build_object('contacts', v->'contacts', 'message', x);
                    r.event := 'messages';
                    r.dedupe_key := coalesce('msg:' || ventros.json_text(x, 'id'), ventros.json_sha256(r.item));
                    r.ref_id := CASE WHEN x->>'type' = 'reaction' THEN ventros.json_text(x, 'reaction', 'message_id') END;
                    r.status := CASE WHEN foreign_item THEN 'foreign' ELSE 'received' END;
                    r.last_error := NULL;
                    RETURN NEXT r;
                    emitted := true;
                END LOOP;
                FOR x IN SELECT * FROM jsonb_array_elements(CASE WHEN jsonb_typeof(v->'statuses') = 'array' THEN v->'statuses' ELSE '[]' END) LOOP
                    r.item := ctx || jsonb_build_object('status', x);
                    r.event := 'statuses';
                    r.dedupe_key := coalesce('st:' || ventros.json_text(x, 'id') || ':' || ventros.json_text(x, 'status'),
                                             ventros.json_sha256(r.item));
                    r.ref_id := ventros.json_text(x, 'id');
                    r.status := CASE WHEN foreign_item THEN 'foreign' ELSE 'received' END;
                    r.last_error := NULL;
                    RETURN NEXT r;
                    emitted := true;
                END LOOP;
            END IF;
            IF NOT emitted THEN
                -- errors, other fields (templates, account updates, ...): stored.
                r.item := ctx || jsonb_build_object('value', v);
                r.event := left(coalesce(ventros.json_text(c, 'field'), 'unknown'), 200);
                r.dedupe_key := ventros.json_sha256(r.item);
                r.ref_id := NULL;
                r.status := CASE WHEN foreign_item THEN 'foreign' ELSE 'unparsed' END;
                r.last_error := NULL;
                RETURN NEXT r;
            END IF;
        END LOOP;
    END LOOP;
END
$$;
COMMENT ON FUNCTION ventros.split_whatsapp(jsonb, jsonb, bytea, jsonb) IS
    'The inbox items of a WhatsApp Cloud delivery: one per message (msg:<wamid>) and status (st:<wamid>:<status>); other changes stored unparsed; foreign when phone_number_id is not the channel''s';

CREATE OR REPLACE FUNCTION ventros.whatsapp_process(r ventros.inbox, ch ventros.channels) RETURNS ventros.inbox_outcome
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE r.event WHEN 'messages' THEN ventros.whatsapp_message(ch, r.item)
                        WHEN 'statuses' THEN ventros.whatsapp_status(ch, r.item)
                        ELSE ventros.inbox_outcome('unparsed') END
$$;
COMMENT ON FUNCTION ventros.whatsapp_process(ventros.inbox, ventros.channels) IS
    'Processes a WhatsApp Cloud inbox item: messages (ventros.whatsapp_message), statuses (ventros.whatsapp_status); anything else unparsed';

CREATE OR REPLACE FUNCTION ventros.split_instagram(config jsonb, doc jsonb, body bytea, headers jsonb)
RETURNS SETOF ventros.inbox_item
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM ventros.split_meta_messaging('instagram', config, doc, body) $$;
COMMENT ON FUNCTION ventros.split_instagram(jsonb, jsonb, bytea, jsonb) IS
    'The inbox items of an Instagram delivery (ventros.split_meta_messaging)';

CREATE OR REPLACE FUNCTION ventros.split_messenger(config jsonb, doc jsonb, body bytea, headers jsonb)
RETURNS SETOF ventros.inbox_item
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM ventros.split_meta_messaging('messenger', config, doc, body) $$;
COMMENT ON FUNCTION ventros.split_messenger(jsonb, jsonb, bytea, jsonb) IS
    'The inbox items of a Messenger delivery (ventros.split_meta_messaging)';

-- the registrations, as in the providers' files
SELECT ventros.register_inbound_provider(p, 'ventros.verify_meta_webhook(jsonb, jsonb, bytea)',
           format('ventros.split_%s(jsonb, jsonb, bytea, jsonb)', p)::regprocedure,
           'ventros.meta_messaging_process(ventros.inbox, ventros.channels)',
           'ventros.meta_webhook_challenge(jsonb, text, text, text)')
  FROM unnest('{instagram,messenger}'::text[]) p;

SELECT ventros.register_inbound_provider('waha', 'ventros.verify_waha_webhook(jsonb, jsonb, bytea)',
           'ventros.split_waha(jsonb, jsonb, bytea, jsonb)', 'ventros.waha_process(ventros.inbox, ventros.channels)');

SELECT ventros.register_inbound_provider('whatsapp', 'ventros.verify_meta_webhook(jsonb, jsonb, bytea)',
           'ventros.split_whatsapp(jsonb, jsonb, bytea, jsonb)', 'ventros.whatsapp_process(ventros.inbox, ventros.channels)',
           'ventros.meta_webhook_challenge(jsonb, text, text, text)');

GRANT EXECUTE ON FUNCTION ventros.verify_meta_webhook(jsonb, jsonb, bytea) TO ventros_admin;
GRANT EXECUTE ON FUNCTION ventros.verify_waha_webhook(jsonb, jsonb, bytea) TO ventros_admin;

-- one list of providers
ALTER TABLE ventros.inbox DROP CONSTRAINT inbox_provider_known,
    ADD CONSTRAINT inbox_provider_registered FOREIGN KEY (provider) REFERENCES ventros.inbound_providers (provider);
ALTER TABLE ventros.channel_providers DROP CONSTRAINT channel_providers_provider_known,
    ADD CONSTRAINT channel_providers_provider_registered FOREIGN KEY (provider)
        REFERENCES ventros.inbound_providers (provider);
COMMENT ON COLUMN ventros.inbox.provider IS 'The provider of the webhook URL the item came in by (ventros.inbound_providers: waha, whatsapp, instagram, messenger, ...)';
COMMENT ON TABLE ventros.channel_providers IS
    'Per channel type, its provider (ventros.inbound_providers: the webhook URL serving the type) and how its messages are sent: build_send(channels, messages) -> request jsonb {method,url,headers,body} or NULL (not configured); sent_id(jsonb answer) -> provider message id; build_media(channels, messages) -> media download request; the retry policy of its requests; the free-form window in hours (NULL: none); config_error(response_status integer, response_body bytea) -> whether a failed send means the channel is misconfigured (kept on the channel); the retry policy of its media downloads';

-- the outbound registry says what is provider-specific in the shared send
-- mechanics: which failed answers mean a misconfigured channel, and the
-- retry policy of media downloads
ALTER TABLE ventros.channel_providers ADD COLUMN config_error regprocedure,
    ADD COLUMN media_retry_policy text NOT NULL DEFAULT 'transient';
CREATE OR REPLACE FUNCTION ventros.register_channel_provider(channel_type text, provider text, build_send regprocedure,
                                                 sent_id regprocedure, build_media regprocedure DEFAULT NULL,
                                                 retry_policy text DEFAULT 'transient', window_hours integer DEFAULT NULL,
                                                 config_error regprocedure DEFAULT NULL,
                                                 media_retry_policy text DEFAULT 'transient')
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO ventros.channel_providers AS p (channel_type, provider, build_send, sent_id, build_media, retry_policy,
                                                window_hours, config_error, media_retry_policy)
    VALUES (channel_type, provider, build_send, sent_id, build_media, retry_policy, window_hours, config_error,
            media_retry_policy)
    ON CONFLICT ON CONSTRAINT channel_providers_pkey DO UPDATE
       SET provider = EXCLUDED.provider, build_send = EXCLUDED.build_send, sent_id = EXCLUDED.sent_id,
           build_media = EXCLUDED.build_media, retry_policy = EXCLUDED.retry_policy,
           window_hours = EXCLUDED.window_hours, config_error = EXCLUDED.config_error,
           media_retry_policy = EXCLUDED.media_retry_policy
$$;
COMMENT ON FUNCTION ventros.register_channel_provider(text, text, regprocedure, regprocedure, regprocedure, text, integer, regprocedure, text) IS
    'Registers how messages of a channel type are sent (see ventros.channel_providers)';

CREATE OR REPLACE FUNCTION ventros.waha_config_error(status integer, body bytea) RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce(status IN (401, 404), false) $$;
COMMENT ON FUNCTION ventros.waha_config_error(integer, bytea) IS
    'Whether a failed WAHA answer means the channel is misconfigured: 401 (API key) or 404 (session)';

CREATE OR REPLACE FUNCTION ventros.graph_config_error(status integer, body bytea) RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce(ventros.graph_error_class(status, body) = 'config', false) $$;
COMMENT ON FUNCTION ventros.graph_config_error(integer, bytea) IS
    'Whether a failed Graph answer means the channel is misconfigured: error class config (190, 10, 200-299, 100/33)';

SELECT ventros.register_channel_provider('waha', 'waha', 'ventros.waha_send_request(ventros.channels, ventros.messages)',
           'ventros.waha_sent_id(jsonb)', 'ventros.waha_media_request(ventros.channels, ventros.messages)', 'waha',
           config_error => 'ventros.waha_config_error(integer, bytea)');

SELECT ventros.register_channel_provider(t, 'whatsapp', 'ventros.whatsapp_send_request(ventros.channels, ventros.messages)',
           'ventros.whatsapp_sent_id(jsonb)', 'ventros.whatsapp_media_request(ventros.channels, ventros.messages)', 'graph', 24,
           'ventros.graph_config_error(integer, bytea)', 'graph')
  FROM unnest('{whatsapp,whatsapp_business}'::text[]) t;

SELECT ventros.register_channel_provider(t, t, 'ventros.graph_messaging_send_request(ventros.channels, ventros.messages)',
           'ventros.graph_messaging_sent_id(jsonb)', 'ventros.graph_messaging_media_request(ventros.channels, ventros.messages)',
           'graph', config_error => 'ventros.graph_config_error(integer, bytea)', media_retry_policy => 'graph')
  FROM unnest('{instagram,messenger}'::text[]) t;

GRANT EXECUTE ON FUNCTION ventros.waha_config_error(integer, bytea), ventros.graph_config_error(integer, bytea) TO ventros_viewer;

CREATE OR REPLACE FUNCTION ventros.handle_message_send(r ventros.http_requests) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m ventros.messages;
    p ventros.channel_providers;
    provider_id text;
    failure text;
    misconfigured boolean;
BEGIN
    SELECT * INTO m FROM ventros.messages x WHERE x.tenant_id = r.tenant_id AND x.id = r.correlation_id FOR UPDATE;
    IF NOT FOUND OR m.status <> 'queued' THEN
        RETURN;     -- deleted, or already moved on (a status webhook came first)
    END IF;
    SELECT x.* INTO p FROM ventros.channel_providers x JOIN ventros.channels c ON c.type = x.channel_type
     WHERE c.tenant_id = m.tenant_id AND c.id = m.channel_id;
    IF r.status = 'succeeded' THEN
        IF p.sent_id IS NOT NULL THEN
            EXECUTE format('SELECT %s($1)', p.sent_id::regproc) INTO provider_id USING ventros.json_body(r.response_body);
        END IF;
        -- An answer without an id (some WAHA releases answer 201 with an
        -- empty body) still means sent; the id stays unknown.
        PERFORM ventros.mark_message_sent(m.id, provider_id);
    ELSE
        failure := ventros.provider_error_text(r);
        PERFORM ventros.confirm_message_status('failed', message_id => m.id, error => failure);
        -- A configuration error (token, permission, API key, session) fails
        -- every send of the channel: it says so on the channel too.  What
        -- is one is the provider's to say (its config_error function).
        IF p.config_error IS NOT NULL THEN
            EXECUTE format('SELECT %s($1, $2)', p.config_error::regproc) INTO misconfigured
                USING r.response_status, r.response_body;
        END IF;
        IF misconfigured THEN
            UPDATE ventros.channels c SET last_error = left(failure, 1000), last_error_at = now(), version = c.version
             WHERE c.tenant_id = m.tenant_id AND c.id = m.channel_id;
        END IF;
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.handle_message_send(ventros.http_requests) IS
    'Completion handler of message.send: succeeded -> mark_message_sent with the provider id from the answer (message.sent); failed or dead -> the message fails with the provider''s error (message.failed), and a configuration error (the provider''s config_error function: Graph 190, 10, 200-299, 100/33; WAHA 401, 404) is kept on the channel (last_error, channel.updated)';

CREATE OR REPLACE FUNCTION ventros.request_media_download(message_id uuid) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    m ventros.messages;
    ch ventros.channels;
    p ventros.channel_providers;
    req jsonb;
BEGIN
    SELECT * INTO m FROM ventros.messages x WHERE x.tenant_id = tenant AND x.id = message_id AND x.deleted_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'message % not found', message_id USING ERRCODE = 'P0002';
    END IF;
    IF m.content_type NOT IN ('image', 'video', 'audio', 'voice', 'document', 'sticker') THEN
        RAISE EXCEPTION 'message % has no media', message_id USING ERRCODE = '22023',
            DETAIL = format('Its content type is %s.', m.content_type);
    END IF;
    SELECT * INTO ch FROM ventros.channels c WHERE c.tenant_id = tenant AND c.id = m.channel_id;
    SELECT * INTO p FROM ventros.channel_providers x WHERE x.channel_type = ch.type;
    IF p.build_media IS NOT NULL THEN
        EXECUTE format('SELECT %s($1, $2)', p.build_media::regproc) INTO req USING ch, m;
    END IF;
    IF req IS NULL THEN
        IF m.media_url IS NULL THEN
            RAISE EXCEPTION 'message % has no media URL and its channel cannot look it up', message_id USING ERRCODE = '22023';
        END IF;
        req := jsonb_build_object('method', 'GET', 'url', m.media_url, 'headers', '{}'::jsonb);
    END IF;
    INSERT INTO ventros.message_media AS mm (tenant_id, message_id, content_type, expected_sha256)
    VALUES (tenant, m.id, m.media_mimetype,
            coalesce(m.metadata->>'media_sha256', m.metadata->'media'->>'sha256'))
    ON CONFLICT ON CONSTRAINT message_media_pkey DO UPDATE
       SET status = 'requested', error = NULL, requested_at = now();
    RETURN ventros.enqueue_provider_request(req, CASE WHEN req->>'step' = 'lookup' THEN 'media.lookup' ELSE 'media.download' END,
                                            m.id, coalesce(p.media_retry_policy, 'transient'),
                                            ventros.media_download_cap(req));
END
$$;
COMMENT ON FUNCTION ventros.request_media_download(uuid) IS
    'Queues the download of a message''s media (WAHA: GET its URL on the WAHA host with X-Api-Key; Cloud API: media lookup then download with the Bearer token; Messenger / Instagram: the CDN URL); the handlers fill ventros.message_media';

-- the mechanism, dispatching through the registry
CREATE OR REPLACE FUNCTION ventros.verify_webhook(provider text, config jsonb, headers jsonb, body bytea) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fn regprocedure := (SELECT p.verify FROM ventros.inbound_providers p WHERE p.provider = verify_webhook.provider);
    failure text;
BEGIN
    IF fn IS NULL THEN
        RETURN 'unknown_provider';
    END IF;
    EXECUTE format('SELECT %s($1, $2, $3)', fn::regproc) INTO failure USING config, headers, body;
    RETURN failure;
END
$$;
COMMENT ON FUNCTION ventros.verify_webhook(text, jsonb, jsonb, bytea) IS
    'NULL when a delivery''s signature/token match the channel config by its provider''s verify function (ventros.inbound_providers), else the reason; unknown_provider for a provider not registered';

CREATE OR REPLACE FUNCTION ventros.webhook_channel(provider text, channel_id text) RETURNS ventros.channels
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch ventros.channels;
BEGIN
    SELECT c.* INTO ch FROM ventros.channels c
    WHERE c.id = CASE WHEN channel_id ~* '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$'
                      THEN channel_id::uuid END
      AND c.deleted_at IS NULL
      AND c.type IN (SELECT p.channel_type FROM ventros.channel_providers p WHERE p.provider = webhook_channel.provider);
    RETURN ch;
END
$$;
COMMENT ON FUNCTION ventros.webhook_channel(text, text) IS
    'The live channel a webhook URL names (its channel type must be one the provider serves, ventros.channel_providers), of any tenant; NULL when none';

CREATE OR REPLACE FUNCTION ventros.accept_webhook(provider text, channel_id text, headers jsonb, body bytea)
RETURNS TABLE (http_status integer, response jsonb)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- the tenant chosen inside is restored when the function returns
SET ventros.tenant = ''
AS $$
DECLARE
    ch ventros.channels;
    hdrs jsonb;
    failure text;
    doc jsonb;
    parse_error text;
    it ventros.inbox_item;
    new_id uuid;
    head uuid;
    n integer := 0;
    stored uuid[] := '{}';
    kept jsonb;
    row_ ventros.inbox;
    p ventros.inbound_providers;
BEGIN
    provider := lower(provider);
    SELECT * INTO p FROM ventros.inbound_providers x WHERE x.provider = accept_webhook.provider;
    ch := ventros.webhook_channel(provider, channel_id);
    IF p.provider IS NULL OR ch.id IS NULL THEN
        RETURN QUERY SELECT 404, '{"error":"channel_not_found"}'::jsonb;
        RETURN;
    END IF;
    PERFORM set_config('ventros.tenant', ch.tenant_id, true);
    SELECT coalesce(jsonb_object_agg(lower(h.key), h.value), '{}') INTO hdrs
    FROM jsonb_each(CASE WHEN jsonb_typeof(headers) = 'object' THEN headers ELSE '{}' END) h
    WHERE jsonb_typeof(h.value) = 'string';
    body := coalesce(body, ''::bytea);

    failure := ventros.verify_webhook(provider, ch.config, hdrs, body);
    IF failure IS NOT NULL THEN
        INSERT INTO ventros.channel_webhook_rejections AS x (tenant_id, channel_id, rejected, last_rejected_at, last_reason)
        VALUES (ch.tenant_id, ch.id, 1, now(), failure)
        ON CONFLICT ON CONSTRAINT channel_webhook_rejections_pkey DO UPDATE
            SET rejected = x.rejected + 1, last_rejected_at = now(), last_reason = EXCLUDED.last_reason;
        RETURN QUERY SELECT 401, '{"error":"invalid_signature"}'::jsonb;
        RETURN;
    END IF;

    kept := ventros.webhook_headers_to_keep(hdrs);
    BEGIN
        doc := convert_from(body, 'UTF8')::jsonb;
    EXCEPTION WHEN OTHERS THEN
        parse_error := SQLERRM;
    END;
    IF parse_error IS NOT NULL OR doc IS NULL THEN
        -- Stored with its error (nothing is lost), answered 400.
        new_id := gen_random_uuid();
        INSERT INTO ventros.inbox (tenant_id, id, channel_id, provider, event, dedupe_key, delivery_id, body, headers,
                                   status, last_error)
        VALUES (ch.tenant_id, new_id, ch.id, provider, 'invalid', ventros.body_sha256(body), new_id, body, kept,
                'failed', left('22P02: body is not JSON: ' || coalesce(parse_error, 'empty'), 2000))
        ON CONFLICT ON CONSTRAINT inbox_unique_dedupe_key DO NOTHING;
        RETURN QUERY SELECT 400, '{"error":"invalid_json"}'::jsonb;
        RETURN;
    END IF;

    FOR it IN EXECUTE format('SELECT * FROM %s($1, $2, $3, $4)', p.split::regproc) USING ch.config, doc, body, hdrs
    LOOP
        new_id := gen_random_uuid();
        INSERT INTO ventros.inbox AS i (tenant_id, id, channel_id, provider, event, dedupe_key, delivery_id, item_index,
                                        body, item, headers, ref_id, status, last_error, next_attempt_at)
        VALUES (ch.tenant_id, new_id, ch.id, provider, it.event, left(it.dedupe_key, 1024), coalesce(head, new_id), n,
                CASE WHEN head IS NULL THEN body END, it.item, kept, it.ref_id, it.status, it.last_error,
                CASE WHEN it.status = 'received' THEN now() END)
        ON CONFLICT ON CONSTRAINT inbox_unique_dedupe_key DO NOTHING
        RETURNING i.id INTO new_id;
        n := n + 1;
        IF FOUND THEN
            head := coalesce(head, new_id);
            stored := stored || new_id;
        END IF;
    END LOOP;

    IF head IS NULL THEN
        RETURN QUERY SELECT 200, '{"status":"duplicate"}'::jsonb;
        RETURN;
    END IF;
    -- Deferred (the default): the inbox processor takes the new items right
    -- after this transaction commits (src/inbox_worker.c; the statement
    -- trigger ventros_inbox_wake wakes it).  Inline: process what is new
    -- here, each item in its own subtransaction (inbox_run).
    IF current_setting('ventros.inbox_processing') = 'inline' THEN
        FOR row_ IN SELECT * FROM ventros.inbox i
                    WHERE i.tenant_id = ch.tenant_id AND i.id = ANY (stored) AND i.status = 'received'
                    ORDER BY i.item_index LOOP
            PERFORM ventros.inbox_run(row_, now());
        END LOOP;
    END IF;
    RETURN QUERY SELECT 200, jsonb_build_object('status', 'accepted', 'inbox_id', head);
END
$$;
COMMENT ON FUNCTION ventros.accept_webhook(text, text, jsonb, bytea) IS
    'A provider webhook for a channel (any tenant: the channel names it): 404 unknown channel, 401 bad signature (counted), 400 not JSON (stored with its error), else 200 accepted (items stored idempotently; processed here when ventros.inbox_processing is inline, else by the inbox processor after commit) or duplicate';

CREATE OR REPLACE FUNCTION ventros.webhook_challenge(provider text, channel_id text, mode text, verify_token text, challenge text)
RETURNS text
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p ventros.inbound_providers;
    ch ventros.channels;
    answer text;
BEGIN
    SELECT * INTO p FROM ventros.inbound_providers x WHERE x.provider = lower(webhook_challenge.provider);
    IF NOT FOUND THEN
        -- the front answers 404, as accept_webhook does for an unknown provider
        RAISE EXCEPTION 'unknown webhook provider "%"', left(provider, 64) USING ERRCODE = 'P0002';
    END IF;
    IF p.challenge IS NULL THEN
        RETURN NULL;
    END IF;
    ch := ventros.webhook_channel(p.provider, channel_id);
    IF ch.id IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT %s($1, $2, $3, $4)', p.challenge::regproc) INTO answer USING ch.config, mode, verify_token, challenge;
    RETURN answer;
END
$$;
COMMENT ON FUNCTION ventros.webhook_challenge(text, text, text, text, text) IS
    'A provider''s verification handshake (Meta''s): the challenge to echo when the provider''s challenge function accepts mode and verify token for the channel, else NULL (answer 403); P0002 for a provider not registered (answer 404)';

CREATE OR REPLACE FUNCTION ventros.inbox_process(r ventros.inbox, ch ventros.channels) RETURNS ventros.inbox_outcome
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o ventros.inbox_outcome;
BEGIN
    IF ch.id IS NULL THEN
        RAISE EXCEPTION 'channel % of inbox item % not found', r.channel_id, r.id USING ERRCODE = 'P0002';
    END IF;
    IF r.item IS NULL THEN
        RAISE EXCEPTION 'inbox item % has no parsed JSON', r.id USING ERRCODE = '22P02';
    END IF;
    -- the provider's process function (ventros.inbound_providers; the
    -- foreign key of inbox.provider guarantees the row)
    EXECUTE format('SELECT * FROM %s($1, $2)',
                   (SELECT p.process FROM ventros.inbound_providers p WHERE p.provider = r.provider)::regproc)
        INTO o USING r, ch;
    RETURN o;
END
$$;
COMMENT ON FUNCTION ventros.inbox_process(ventros.inbox, ventros.channels) IS
    'Turns one inbox item into the domain by its provider''s process function (ventros.inbound_providers); returns its outcome (processed, unmatched, ignored, unparsed) or raises';


-- ---- channel_kinds
-- The kinds a channel may be of are the system catalogue's
-- (ventros.channel_types of tenant "ventros"), checked by one function and a
-- trigger, instead of a CHECK constraint and create_channel both repeating
-- the list.

CREATE OR REPLACE FUNCTION ventros.require_channel_type(type text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ventros.channel_types t
                    WHERE t.tenant_id = 'ventros' AND t.name = require_channel_type.type AND t.deleted_at IS NULL) THEN
        RAISE EXCEPTION 'unknown channel type "%"', left(type, 64)
            USING ERRCODE = '22023',
                  HINT = (SELECT 'Use ' || string_agg(t.name, ', ' ORDER BY t.type_id) || '.' FROM ventros.channel_types t
                           WHERE t.tenant_id = 'ventros' AND t.deleted_at IS NULL);
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.require_channel_type(text) IS
    'Raises 22023 unless a channel kind of that name is in the system catalogue (ventros.channel_types of tenant "ventros")';

CREATE OR REPLACE FUNCTION ventros.channels_type_known() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.type IS NOT NULL THEN
        PERFORM ventros.require_channel_type(NEW.type);
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION ventros.channels_type_known() IS
    'Trigger: a channel''s type must be a kind of the system catalogue (ventros.require_channel_type)';

CREATE TRIGGER channels_type_known BEFORE INSERT OR UPDATE OF type ON ventros.channels
    FOR EACH ROW EXECUTE FUNCTION ventros.channels_type_known();
ALTER TABLE ventros.channels DROP CONSTRAINT channels_type_known;
GRANT EXECUTE ON FUNCTION ventros.require_channel_type(text) TO ventros_admin;

CREATE OR REPLACE FUNCTION ventros.create_channel(
    name        text,
    type        text,
    project_id  uuid    DEFAULT NULL,
    config      jsonb   DEFAULT '{}',
    external_id text    DEFAULT NULL,
    pipeline_id uuid    DEFAULT NULL,
    session_timeout_minutes integer DEFAULT NULL)
RETURNS ventros.channels
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.channels;
BEGIN
    IF name IS NULL OR type IS NULL THEN
        RAISE EXCEPTION 'channel % must not be null', CASE WHEN name IS NULL THEN 'name' ELSE 'type' END
            USING ERRCODE = '23502';
    END IF;
    PERFORM ventros.require_channel_type(type);     -- sql/31_channel_types.sql
    IF config IS NOT NULL AND jsonb_typeof(config) <> 'object' THEN
        RAISE EXCEPTION 'channel config must be a JSON object' USING ERRCODE = '22023';
    END IF;
    INSERT INTO ventros.channels (project_id, name, type, config, external_id, pipeline_id, session_timeout_minutes)
    VALUES (coalesce(project_id, ventros.default_project()), ventros.check_length(btrim(name), 200, 'channel name'),
            type, coalesce(config, '{}'), ventros.check_length(external_id, 200, 'channel external id'),
            pipeline_id, session_timeout_minutes)
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.create_channel(text, text, uuid, jsonb, text, uuid, integer) IS
    'Creates an inactive channel in the acting tenant; emits channel.created';


-- ---- worker_kit
-- Issue 13: the worker kit (src/worker.c) and its status function (sql/03_workers.sql).

CREATE FUNCTION ventros.worker_status(
    OUT kind text, OUT slot integer, OUT pid integer, OUT database text,
    OUT started_at timestamptz, OUT last_error text, OUT last_error_at timestamptz)
RETURNS SETOF record
LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'ventros_worker_status';
COMMENT ON FUNCTION ventros.worker_status() IS
    'Every background worker of the kit (src/worker.c), one row per slot: its kind (the backend_type in pg_stat_activity), pid (NULL when not running), database, start, and last error (55000 when ventros is not preloaded)';

REVOKE ALL ON FUNCTION ventros.worker_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ventros.worker_status() TO ventros_authenticator, ventros_platform_admin;

-- ---- shared_helpers
-- Issue 13: logic that stood in several places of sql/ becomes one helper
-- each (the duplicates tool over sql/): the optimistic lock of commands that
-- check the version themselves (ventros.require_version), the locks and
-- lookups by id that copied ventros.lock_row / get_row, the draft campaign
-- or sequence whose steps change and the active enrollment a step starts
-- from (sql/74_enrollments.sql), the Meta envelope check and unparsed change
-- of WhatsApp Cloud, Instagram and Messenger (sql/89_inbound_meta.sql), and a
-- template component's parameter count.  Messages and codes are unchanged
-- (VN001 now always carries its hint).

CREATE FUNCTION ventros.require_version(aggregate text, row_id uuid, expected_version integer, current_version integer)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF expected_version IS NOT NULL AND expected_version <> current_version THEN
        RAISE EXCEPTION '% % has changed since version % was read', aggregate, row_id, expected_version
            USING ERRCODE = 'VN001', DETAIL = format('Current version is %s.', current_version),
                  HINT = format('Read the %s again and retry with its current version.', aggregate);
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.require_version(text, uuid, integer, integer) IS
    'Raises VN001 when expected_version is given and is not the current version';

CREATE FUNCTION ventros.lock_draft(row_type anyelement, aggregate text, row_id uuid)
RETURNS anyelement
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ALIAS FOR $0;
BEGIN
    r := ventros.lock_row(row_type, aggregate, row_id);
    IF r.status <> 'draft' THEN
        RAISE EXCEPTION '% % is %; steps change only in draft', aggregate, row_id, r.status USING ERRCODE = 'VN002';
    END IF;
    RETURN r;
END
$$;
COMMENT ON FUNCTION ventros.lock_draft(anyelement, text, uuid) IS
    'Locks a campaign or sequence of the acting tenant (P0002 when absent) and checks it is a draft (VN002 otherwise)';

CREATE FUNCTION ventros.lock_active_enrollment(row_type anyelement, parent text, enrollment_id uuid)
RETURNS anyelement
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e ALIAS FOR $0;
BEGIN
    e := ventros.lock_row(row_type, parent || ' enrollment', enrollment_id);
    IF e.status <> 'active' THEN
        RAISE EXCEPTION '% enrollment % is %; only active enrollments advance', parent, e.id, e.status USING ERRCODE = 'VN002';
    END IF;
    RETURN e;
END
$$;
COMMENT ON FUNCTION ventros.lock_active_enrollment(anyelement, text, uuid) IS
    'Locks an enrollment of the acting tenant (P0002 when absent) and checks it is active (VN002 otherwise)';

CREATE FUNCTION ventros.meta_envelope_refusal(doc jsonb, body bytea, expected_object text, what text)
RETURNS SETOF ventros.inbox_item
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ROW('invalid', ventros.body_sha256(body), doc, NULL, 'failed',
               format('22P02: a %s webhook body must be an object with an entry array', what))::ventros.inbox_item
     WHERE jsonb_typeof(doc) IS DISTINCT FROM 'object' OR jsonb_typeof(doc->'entry') IS DISTINCT FROM 'array'
    UNION ALL
    SELECT ROW('unknown', ventros.body_sha256(body), doc, NULL, 'unparsed',
               format('unexpected object %s', coalesce(doc->>'object', 'null')))::ventros.inbox_item
     WHERE jsonb_typeof(doc) = 'object' AND jsonb_typeof(doc->'entry') = 'array'
       AND doc->>'object' IS DISTINCT FROM expected_object
$$;
COMMENT ON FUNCTION ventros.meta_envelope_refusal(jsonb, bytea, text, text) IS
    'The one item of a Meta delivery that is not an object with an entry array (invalid) or is about another kind of object (unknown); none for a good envelope';

CREATE FUNCTION ventros.meta_unparsed_change(item jsonb, change jsonb, foreign_item boolean)
RETURNS ventros.inbox_item
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ROW(left(coalesce(ventros.json_text(change, 'field'), 'unknown'), 200), ventros.json_sha256(item), item, NULL,
               CASE WHEN foreign_item THEN 'foreign' ELSE 'unparsed' END, NULL)::ventros.inbox_item
$$;
COMMENT ON FUNCTION ventros.meta_unparsed_change(jsonb, jsonb, boolean) IS
    'The inbox item of a Meta change no parser reads: unparsed (foreign when the entry is not the channel''s), keyed by its content';

CREATE FUNCTION ventros.require_template_params(template_name text, component text, want integer, params jsonb)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF coalesce(jsonb_array_length(params), 0) <> want THEN
        RAISE EXCEPTION 'template % % expects % parameter(s), got %', template_name, component, want,
                coalesce(jsonb_array_length(params), 0)
            USING ERRCODE = '22023';
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.require_template_params(text, text, integer, jsonb) IS
    'Refuses (22023) the parameters of a template component when they are not as many as its variables';

CREATE OR REPLACE FUNCTION ventros.delete_row(target regclass, aggregate text, row_id uuid, expected_version integer)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current_version integer;
BEGIN
    EXECUTE format('SELECT version FROM %s WHERE tenant_id = ventros.require_tenant() AND id = $1 FOR UPDATE', target)
        INTO current_version USING row_id;
    IF current_version IS NULL THEN
        RAISE EXCEPTION '% % not found', aggregate, row_id USING ERRCODE = 'P0002';
    END IF;
    PERFORM ventros.require_version(aggregate, row_id, expected_version, current_version);
    EXECUTE format('DELETE FROM %s WHERE tenant_id = ventros.require_tenant() AND id = $1', target) USING row_id;
END
$$;

CREATE OR REPLACE FUNCTION ventros.remove_pipeline_status(status_id uuid, expected_version integer DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st ventros.pipeline_statuses;
BEGIN
    st := ventros.get_row(NULL::ventros.pipeline_statuses, 'pipeline status', status_id);
    IF EXISTS (SELECT 1 FROM ventros.contact_pipeline_statuses c
               WHERE c.tenant_id = st.tenant_id AND c.status_id = st.id AND c.exited_at IS NULL AND c.deleted_at IS NULL) THEN
        RAISE EXCEPTION 'pipeline status % still holds contacts', status_id USING ERRCODE = '23503',
            HINT = 'Move the contacts to another status first.';
    END IF;
    PERFORM ventros.delete_row('ventros.pipeline_statuses', 'pipeline status', status_id, expected_version);
    PERFORM ventros.emit('pipeline.status_removed', 'pipeline', st.pipeline_id,
                         jsonb_build_object('status_id', status_id, 'name', st.name), NULL);
END
$$;

CREATE OR REPLACE FUNCTION ventros.lock_session(session_id uuid, expected_version integer DEFAULT NULL)
RETURNS ventros.sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.sessions := ventros.lock_row(NULL::ventros.sessions, 'session', session_id);
BEGIN
    PERFORM ventros.require_version('session', session_id, expected_version, result.version);
    RETURN result;
END
$$;

CREATE OR REPLACE FUNCTION ventros.leave_session(agent_session_id uuid, expected_version integer DEFAULT NULL)
RETURNS ventros.agent_sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current ventros.agent_sessions;
    result ventros.agent_sessions;
BEGIN
    current := ventros.lock_row(NULL::ventros.agent_sessions, 'agent session', agent_session_id);
    IF NOT current.is_active THEN
        RAISE EXCEPTION 'agent session % cannot change status from "false" to "false"', agent_session_id
            USING ERRCODE = 'VN002', DETAIL = 'The agent has left the session already.';
    END IF;
    UPDATE ventros.agent_sessions a
    SET is_active = false, left_at = greatest(clock_timestamp(), a.joined_at), version = coalesce(expected_version, current.version)
    WHERE a.tenant_id = current.tenant_id AND a.id = current.id
    RETURNING * INTO result;
    RETURN result;
END
$$;

CREATE OR REPLACE FUNCTION ventros.change_agent_session_role(agent_session_id uuid, role_in_session text,
                                                  expected_version integer DEFAULT NULL)
RETURNS ventros.agent_sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current ventros.agent_sessions;
    result ventros.agent_sessions;
BEGIN
    current := ventros.lock_row(NULL::ventros.agent_sessions, 'agent session', agent_session_id);
    IF NOT current.is_active THEN
        RAISE EXCEPTION 'agent session % has ended', agent_session_id USING ERRCODE = 'VN002';
    END IF;
    UPDATE ventros.agent_sessions a
    SET role_in_session = change_agent_session_role.role_in_session, version = coalesce(expected_version, current.version)
    WHERE a.tenant_id = current.tenant_id AND a.id = current.id
    RETURNING * INTO result;
    PERFORM ventros.emit('agent_session.role_changed', 'agent_session', agent_session_id,
                         jsonb_build_object('from', current.role_in_session, 'to', role_in_session), result.version);
    RETURN result;
EXCEPTION
    WHEN unique_violation THEN
        RAISE EXCEPTION 'session % already has an active primary agent', current.session_id USING ERRCODE = '23505';
    WHEN check_violation THEN
        RAISE EXCEPTION 'unknown role in session "%"', left(role_in_session, 32) USING ERRCODE = '22023';
END
$$;

CREATE OR REPLACE FUNCTION ventros.lock_chat(chat_id uuid) RETURNS ventros.chats
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.lock_row(NULL::ventros.chats, 'chat', chat_id) $$;


CREATE OR REPLACE FUNCTION ventros.request_saga_compensation(saga_id uuid, expected_version integer, target text,
                                                  target_id uuid DEFAULT NULL, details jsonb DEFAULT '{}')
RETURNS ventros.sagas
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current ventros.sagas := ventros.get_saga(saga_id);
    result ventros.sagas := current;
BEGIN
    PERFORM ventros.require_value(target, ventros.saga_compensation_targets(), 'compensation target');
    PERFORM ventros.require_json(details, 'object', 'compensation details');
    IF current.status = 'failed' THEN
        result := ventros.change_row(NULL::ventros.sagas, 'saga', saga_id, expected_version, '{"status": "compensating"}');
    ELSIF current.status <> 'compensating' THEN
        RAISE EXCEPTION 'saga % is %; only failed sagas compensate', saga_id, current.status USING ERRCODE = 'VN002';
    ELSE
        PERFORM ventros.require_version('saga', saga_id, expected_version, current.version);
    END IF;
    PERFORM ventros.emit('saga.compensation_requested', 'saga', result.id,
        jsonb_build_object('correlation_id', result.correlation_id, 'saga_type', result.saga_type,
                           'target', target, 'target_id', target_id, 'details', coalesce(details, '{}')),
        result.version);
    RETURN result;
END
$$;

CREATE OR REPLACE FUNCTION ventros.add_campaign_step(campaign_id uuid, "order" integer, name text, type text, config jsonb DEFAULT '{}',
                                          conditions jsonb DEFAULT NULL)
RETURNS ventros.campaign_steps
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c ventros.campaigns := ventros.lock_draft(NULL::ventros.campaigns, 'campaign', campaign_id);
    result ventros.campaign_steps;
BEGIN
    PERFORM ventros.require_value(type, ARRAY['broadcast', 'sequence', 'delay', 'condition', 'wait'], 'campaign step type');
    INSERT INTO ventros.campaign_steps (campaign_id, "order", name, type, config, conditions)
    VALUES (campaign_id, "order", ventros.check_length(btrim(name), 200, 'step name'), type,
            coalesce(ventros.require_json(config, 'object', 'step config'), '{}'), conditions)
    RETURNING * INTO result;
    PERFORM ventros.emit('campaign.step_added', 'campaign', c.id,
        jsonb_build_object('step_id', result.id, 'order', result."order", 'type', result.type), c.version);
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'campaign % has a step % already', campaign_id, "order" USING ERRCODE = '23505';
END
$$;

CREATE OR REPLACE FUNCTION ventros.update_campaign_step(campaign_step_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.campaign_steps
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.campaign_steps := ventros.get_row(NULL::ventros.campaign_steps, 'campaign step', campaign_step_id);
BEGIN
    PERFORM ventros.lock_draft(NULL::ventros.campaigns, 'campaign', s.campaign_id);
    RETURN ventros.apply_changes(NULL::ventros.campaign_steps, 'campaign step', campaign_step_id, expected_version, changes,
                                 ARRAY['order', 'name', 'type', 'config', 'conditions']);
END
$$;

CREATE OR REPLACE FUNCTION ventros.remove_campaign_step(campaign_step_id uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.campaign_steps := ventros.get_row(NULL::ventros.campaign_steps, 'campaign step', campaign_step_id);
    c ventros.campaigns := ventros.lock_draft(NULL::ventros.campaigns, 'campaign', s.campaign_id);
BEGIN
    PERFORM ventros.delete_row('ventros.campaign_steps', 'campaign step', campaign_step_id, NULL);
    PERFORM ventros.emit('campaign.step_removed', 'campaign', c.id,
                         jsonb_build_object('step_id', s.id, 'order', s."order"), c.version);
END
$$;


CREATE OR REPLACE FUNCTION ventros.require_draft_sequence(sequence_id uuid) RETURNS ventros.sequences
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.lock_draft(NULL::ventros.sequences, 'sequence', sequence_id) $$;

CREATE OR REPLACE FUNCTION ventros.update_sequence_step(sequence_step_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.sequence_steps
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    step ventros.sequence_steps := ventros.get_row(NULL::ventros.sequence_steps, 'sequence step', sequence_step_id);
    s ventros.sequences := ventros.require_draft_sequence(step.sequence_id);
    result ventros.sequence_steps;
BEGIN
    result := ventros.apply_changes(NULL::ventros.sequence_steps, 'sequence step', sequence_step_id, expected_version, changes,
                                    ARRAY['order', 'name', 'delay_amount', 'delay_unit', 'message_template', 'conditions']);
    PERFORM ventros.emit('sequence.step_updated', 'sequence', s.id,
        jsonb_build_object('step_id', result.id, 'fields', (SELECT jsonb_agg(k) FROM jsonb_object_keys(changes) k)), s.version);
    RETURN result;
END
$$;

CREATE OR REPLACE FUNCTION ventros.remove_sequence_step(sequence_step_id uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    step ventros.sequence_steps := ventros.get_row(NULL::ventros.sequence_steps, 'sequence step', sequence_step_id);
    s ventros.sequences := ventros.require_draft_sequence(step.sequence_id);
BEGIN
    PERFORM ventros.delete_row('ventros.sequence_steps', 'sequence step', sequence_step_id, NULL);
    PERFORM ventros.emit('sequence.step_removed', 'sequence', s.id, jsonb_build_object('step_id', step.id, 'order', step."order"), s.version);
END
$$;


CREATE OR REPLACE FUNCTION ventros.split_meta_messaging(provider text, config jsonb, doc jsonb, body bytea)
RETURNS SETOF ventros.inbox_item
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ventros.inbox_item;
    e jsonb;
    m jsonb;
    x jsonb;
    expected_object CONSTANT text := CASE provider WHEN 'instagram' THEN 'instagram' ELSE 'page' END;
    ours text := nullif(CASE provider WHEN 'instagram' THEN config->>'ig_account_id' ELSE config->>'page_id' END, '');
    foreign_item boolean;
    sender text;
    stamp text;
BEGIN
    RETURN QUERY SELECT * FROM ventros.meta_envelope_refusal(doc, body, expected_object, 'Meta');
    IF FOUND THEN
        RETURN;
    END IF;
    FOR e IN SELECT * FROM jsonb_array_elements(doc->'entry') LOOP
        foreign_item := ours IS NOT NULL AND ventros.json_text(e, 'id') IS DISTINCT FROM ours;
        FOR m IN SELECT * FROM jsonb_array_elements(CASE WHEN jsonb_typeof(e->'messaging') = 'array' THEN e->'messaging' ELSE '[]' END) LOOP
            r.item := jsonb_build_object('object', doc->'object', 'entry_id', e->'id', 'entry_time', e->'time', 'event', m);
            r.ref_id := NULL;
            r.status := 'received';
            r.last_error := NULL;
            sender := ventros.json_text(m, 'sender', 'id');
            stamp := ventros.json_text(m, 'timestamp');
            x := NULL;
            IF jsonb_typeof(m->'message') = 'object' THEN
                x := m->'message';
                r.event := CASE WHEN x->>'is_deleted' = 'true' THEN 'message_deleted'
                                WHEN x->>'is_echo' = 'true' THEN 'message_echo' ELSE 'message' END;
                -- A deletion carries the mid of the message it deletes: its own key.
                r.dedupe_key := CASE r.event WHEN 'message_deleted' THEN 'del:' ELSE 'msg:' END || ventros.json_text(x, 'mid');
                r.ref_id := ventros.json_text(x, 'mid');
            ELSIF jsonb_typeof(m->'message_edit') = 'object' THEN
                r.event := 'message_edit';
                r.dedupe_key := 'edit:' || ventros.json_text(m, 'message_edit', 'mid') || ':'
                                || coalesce(ventros.json_text(m, 'message_edit', 'num_edit'), stamp);
                r.ref_id := ventros.json_text(m, 'message_edit', 'mid');
            ELSIF jsonb_typeof(m->'read') = 'object' THEN
                r.event := 'read';
                r.dedupe_key := coalesce('read:' || ventros.json_text(m, 'read', 'mid'),
                                         'read:' || sender || ':' || ventros.json_text(m, 'read', 'watermark'));
                r.ref_id := ventros.json_text(m, 'read', 'mid');
            ELSIF jsonb_typeof(m->'delivery') = 'object' THEN
                r.event := 'delivery';
                r.dedupe_key := 'dlv:' || sender || ':' || coalesce(ventros.json_text(m, 'delivery', 'watermark'),
                                                                     ventros.json_sha256(m->'delivery'));
            ELSIF jsonb_typeof(m->'reaction') = 'object' THEN
                r.event := 'reaction';
                r.dedupe_key := 'react:' || ventros.json_text(m, 'reaction', 'mid') || ':' || sender || ':' || stamp;
                r.ref_id := ventros.json_text(m, 'reaction', 'mid');
            ELSIF jsonb_typeof(m->'postback') = 'object' THEN
                r.event := 'postback';
                r.dedupe_key := 'pb:' || coalesce(ventros.json_text(m, 'postback', 'mid'), sender || ':' || stamp);
            ELSIF jsonb_typeof(m->'referral') = 'object' THEN
                r.event := 'referral';
                r.dedupe_key := 'ref:' || sender || ':' || stamp;
            ELSE
                r.event := 'unknown';
                r.dedupe_key := NULL;
                r.status := 'unparsed';
            END IF;
            r.dedupe_key := coalesce(r.dedupe_key, ventros.json_sha256(r.item));
            IF foreign_item THEN
                r.status := 'foreign';
            END IF;
            RETURN NEXT r;
        END LOOP;
        IF jsonb_typeof(e->'changes') = 'array' THEN
            -- comments, mentions and other fields: stored unparsed.
            FOR x IN SELECT * FROM jsonb_array_elements(e->'changes') LOOP
                RETURN NEXT ventros.meta_unparsed_change(
                    jsonb_build_object('object', doc->'object', 'entry_id', e->'id', 'entry_time', e->'time', 'change', x),
                    x, foreign_item);
            END LOOP;
        END IF;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION ventros.split_whatsapp(config jsonb, doc jsonb, body bytea, headers jsonb)
RETURNS SETOF ventros.inbox_item
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ventros.inbox_item;
    e jsonb;
    c jsonb;
    v jsonb;
    x jsonb;
    ctx jsonb;
    ours text := nullif(config->>'phone_number_id', '');
    foreign_item boolean;
    emitted boolean;
BEGIN
    RETURN QUERY SELECT * FROM ventros.meta_envelope_refusal(doc, body, 'whatsapp_business_account', 'WhatsApp');
    IF FOUND THEN
        RETURN;
    END IF;
    FOR e IN SELECT * FROM jsonb_array_elements(doc->'entry') LOOP
        FOR c IN SELECT * FROM jsonb_array_elements(CASE WHEN jsonb_typeof(e->'changes') = 'array' THEN e->'changes' ELSE '[]' END) LOOP
            v := c->'value';
            ctx := jsonb_build_object('object', doc->'object', 'entry_id', e->'id', 'field', c->'field',
                                      'metadata', v->'metadata');
            -- Ours unless it names another number (or, without metadata, another WABA).
            foreign_item := CASE WHEN jsonb_typeof(v->'metadata'->'phone_number_id') = 'string'
                                 THEN ours IS NOT NULL AND v->'metadata'->>'phone_number_id' <> ours
                                 ELSE nullif(config->>'waba_id', '') IS NOT NULL AND ventros.json_text(e, 'id') IS NOT NULL
                                      AND ventros.json_text(e, 'id') <> config->>'waba_id' END;
            emitted := false;
            IF c->>'field' = 'messages' AND jsonb_typeof(v) = 'object' THEN
                FOR x IN SELECT * FROM jsonb_array_elements(CASE WHEN jsonb_typeof(v->'messages') = 'array' THEN v->'messages' ELSE '[]' END) LOOP
                    r.item := ctx || jsonb_build_object('contacts', v->'contacts', 'message', x);
                    r.event := 'messages';
                    r.dedupe_key := coalesce('msg:' || ventros.json_text(x, 'id'), ventros.json_sha256(r.item));
                    r.ref_id := CASE WHEN x->>'type' = 'reaction' THEN ventros.json_text(x, 'reaction', 'message_id') END;
                    r.status := CASE WHEN foreign_item THEN 'foreign' ELSE 'received' END;
                    r.last_error := NULL;
                    RETURN NEXT r;
                    emitted := true;
                END LOOP;
                FOR x IN SELECT * FROM jsonb_array_elements(CASE WHEN jsonb_typeof(v->'statuses') = 'array' THEN v->'statuses' ELSE '[]' END) LOOP
                    r.item := ctx || jsonb_build_object('status', x);
                    r.event := 'statuses';
                    r.dedupe_key := coalesce('st:' || ventros.json_text(x, 'id') || ':' || ventros.json_text(x, 'status'),
                                             ventros.json_sha256(r.item));
                    r.ref_id := ventros.json_text(x, 'id');
                    r.status := CASE WHEN foreign_item THEN 'foreign' ELSE 'received' END;
                    r.last_error := NULL;
                    RETURN NEXT r;
                    emitted := true;
                END LOOP;
            END IF;
            IF NOT emitted THEN
                -- errors, other fields (templates, account updates, ...): stored.
                RETURN NEXT ventros.meta_unparsed_change(ctx || jsonb_build_object('value', v), c, foreign_item);
            END IF;
        END LOOP;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION ventros.prepare_template_message(channel_id uuid, template_name text, template_language text,
                                                 template_components jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    tpl ventros.whatsapp_templates;
    matches integer;
    c jsonb;
    given jsonb := coalesce(template_components, '[]');
    used integer[] := '{}';
    idx integer;
    want integer;
    what text;
    fmt text;
    params jsonb;
    body_text text;
    b jsonb;
    b_index integer;
    body_params jsonb := '[]';
    p text;
    pos integer;
BEGIN
    IF jsonb_typeof(given) <> 'array' THEN
        RAISE EXCEPTION 'template components must be a JSON array' USING ERRCODE = '22023';
    END IF;
    SELECT count(*) INTO matches FROM ventros.whatsapp_templates t
     WHERE t.tenant_id = tenant AND t.channel_id = prepare_template_message.channel_id AND t.name = template_name
       AND (template_language IS NULL OR t.language = template_language) AND t.deleted_at IS NULL;
    IF matches = 0 THEN
        RAISE EXCEPTION 'WhatsApp template % (%) not found on channel %', template_name, coalesce(template_language, 'any language'),
                channel_id
            USING ERRCODE = 'P0002', HINT = 'Sync the channel''s templates (ventros.sync_whatsapp_templates).';
    ELSIF matches > 1 THEN
        RAISE EXCEPTION 'WhatsApp template % exists in % languages', template_name, matches USING ERRCODE = '22023',
            HINT = 'Pass template_language.';
    END IF;
    SELECT * INTO tpl FROM ventros.whatsapp_templates t
     WHERE t.tenant_id = tenant AND t.channel_id = prepare_template_message.channel_id AND t.name = template_name
       AND (template_language IS NULL OR t.language = template_language) AND t.deleted_at IS NULL;
    IF tpl.status <> 'APPROVED' THEN
        RAISE EXCEPTION 'WhatsApp template % (%) is %', tpl.name, tpl.language, lower(tpl.status) USING ERRCODE = '22023',
            HINT = 'Only approved templates are sent.';
    END IF;
    -- Each component the template defines with variables must be given once,
    -- with exactly its number of parameters; nothing else may be given.
    FOR c IN SELECT * FROM jsonb_array_elements(tpl.components) LOOP
        CASE upper(c->>'type')
            WHEN 'HEADER' THEN
                fmt := upper(coalesce(c->>'format', 'TEXT'));
                want := CASE WHEN fmt = 'TEXT' THEN cardinality(ventros.template_placeholders(c->>'text'))
                             WHEN fmt IN ('IMAGE', 'VIDEO', 'DOCUMENT') THEN 1 ELSE 0 END;
                what := 'header';
                SELECT x.n - 1, x.e->'parameters' INTO idx, params FROM jsonb_array_elements(given) WITH ORDINALITY x(e, n)
                 WHERE lower(x.e->>'type') = 'header';
                IF fmt IN ('IMAGE', 'VIDEO', 'DOCUMENT') AND params IS NOT NULL
                   AND (lower(params->0->>'type') IS DISTINCT FROM lower(fmt)
                        OR NOT (params->0->lower(fmt) ? 'link' OR params->0->lower(fmt) ? 'id')) THEN
                    RAISE EXCEPTION 'template % header needs a % parameter with a link or id', tpl.name, lower(fmt)
                        USING ERRCODE = '22023';
                END IF;
            WHEN 'BODY' THEN
                body_text := c->>'text';
                want := cardinality(ventros.template_placeholders(body_text));
                what := 'body';
                SELECT x.n - 1, x.e->'parameters' INTO idx, params FROM jsonb_array_elements(given) WITH ORDINALITY x(e, n)
                 WHERE lower(x.e->>'type') = 'body';
                body_params := coalesce(params, '[]');
            WHEN 'BUTTONS' THEN
                FOR b, b_index IN SELECT x.e, x.n - 1 FROM jsonb_array_elements(c->'buttons') WITH ORDINALITY x(e, n) LOOP
                    want := CASE upper(b->>'type') WHEN 'URL' THEN cardinality(ventros.template_placeholders(b->>'url'))
                                                   WHEN 'COPY_CODE' THEN 1 ELSE 0 END;
                    what := format('button %s', b_index);
                    idx := NULL;
                    params := NULL;
                    SELECT x.n - 1, x.e->'parameters' INTO idx, params FROM jsonb_array_elements(given) WITH ORDINALITY x(e, n)
                     WHERE lower(x.e->>'type') = 'button' AND (x.e->>'index')::integer = b_index;
                    PERFORM ventros.require_template_params(tpl.name, what, want, params);
                    IF idx IS NOT NULL THEN
                        used := used || idx;
                    END IF;
                END LOOP;
                CONTINUE;
            ELSE
                CONTINUE;   -- FOOTER and others take no parameters
        END CASE;
        PERFORM ventros.require_template_params(tpl.name, what, want, params);
        IF idx IS NOT NULL THEN
            used := used || idx;
        END IF;
        idx := NULL;
        params := NULL;
    END LOOP;
    SELECT min(x.n - 1) INTO idx FROM jsonb_array_elements(given) WITH ORDINALITY x(e, n)
     WHERE NOT ((x.n - 1)::integer = ANY (used));
    IF idx IS NOT NULL THEN
        RAISE EXCEPTION 'template % has no variables for component %', tpl.name, given->idx USING ERRCODE = '22023';
    END IF;
    -- The text kept on the message: the body with its variables filled in.
    pos := 0;
    FOREACH p IN ARRAY ventros.template_placeholders(body_text) LOOP
        body_text := replace(body_text, '{{' || p || '}}',
                             coalesce((SELECT e->>'text' FROM jsonb_array_elements(body_params) e WHERE e->>'parameter_name' = p),
                                      body_params->(CASE WHEN p ~ '^[0-9]+$' THEN p::integer - 1 ELSE pos END)->>'text',
                                      ''));
        pos := pos + 1;
    END LOOP;
    RETURN jsonb_build_object('text', coalesce(nullif(body_text, ''), tpl.name),
                              'template', jsonb_build_object('name', tpl.name, 'language', tpl.language,
                                                             'components', given));
END
$$;

GRANT EXECUTE ON FUNCTION ventros.require_version(text, uuid, integer, integer)
    TO ventros_viewer, ventros_anon, ventros_authenticator, ventros_platform_admin;
GRANT EXECUTE ON FUNCTION ventros.lock_draft(anyelement, text, uuid), ventros.lock_active_enrollment(anyelement, text, uuid)
    TO ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.require_template_params(text, text, integer, jsonb) TO ventros_viewer;

-- ---- http_rpc
-- Every command over HTTP (issue 14): ventros-http serves under /rpc/ every
-- function of ventros a tenant role may execute, as ventros.http_rpc_functions
-- lists them (sql/96_http_rpc.sql); the OpenAPI document describes them from
-- the same view.  export_contacts_csv returns the media-type domain
-- ventros."text/csv", so that it answers Accept: text/csv with the document
-- itself (its value is the same text).

CREATE DOMAIN ventros."text/csv" AS text;
COMMENT ON DOMAIN ventros."text/csv" IS
    'A CSV document: a function returning it answers /rpc/<name> with the document itself (Content-Type text/csv)';

DROP FUNCTION ventros.export_contacts_csv(uuid, text);
CREATE FUNCTION ventros.export_contacts_csv(project_id uuid DEFAULT NULL, tag text DEFAULT NULL)
RETURNS ventros."text/csv"
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'id,name,phone,email,external_id,language,timezone,tags,source_channel,created_at' || E'\n' ||
           coalesce(string_agg(concat_ws(',', e.id, ventros.csv_field(e.name), ventros.csv_field(e.phone),
                                         ventros.csv_field(e.email), ventros.csv_field(e.external_id),
                                         ventros.csv_field(e.language), ventros.csv_field(e.timezone),
                                         ventros.csv_field(e.tags), ventros.csv_field(e.source_channel),
                                         to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')),
                               E'\n' ORDER BY e.created_at, e.id) || E'\n', '')
    FROM ventros.export_contacts(project_id, tag) e
$$;
COMMENT ON FUNCTION ventros.export_contacts_csv(uuid, text) IS 'Live contacts as one CSV document with a header line';
GRANT EXECUTE ON FUNCTION ventros.export_contacts_csv(uuid, text) TO ventros_admin;

CREATE VIEW ventros.http_rpc_functions WITH (security_invoker = true) AS
SELECT p.oid::pg_catalog.regprocedure AS function,
       p.proname::text AS name,
       n.nspname::text AS schema_name,
       coalesce(a.names, '{}') AS arg_names,
       coalesce(a.types, '{}') AS arg_types,
       coalesce(a.categories, '') AS arg_categories,
       p.pronargs - p.pronargdefaults AS required_args,
       pg_catalog.format_type(p.prorettype, NULL) AS result_type,
       rt.typtype AS result_kind,
       rt.typrelid AS result_relid,
       p.proretset AS returns_set,
       coalesce(o.columns, c.columns) AS result_columns,
       CASE WHEN rt.typtype = 'd' AND rt.typname ~ '^[a-z]+/[-+.a-z0-9]+$' THEN rt.typname::text END AS result_media_type,
       p.provolatile <> 'v' AS read_only,
       coalesce(pg_catalog.obj_description(p.oid, 'pg_proc'), '') AS description,
       ARRAY(SELECT r FROM pg_catalog.unnest(ARRAY['ventros_viewer', 'ventros_agent', 'ventros_admin']) r
             WHERE pg_catalog.has_function_privilege(r, p.oid, 'EXECUTE')) AS roles
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
JOIN pg_catalog.pg_type rt ON rt.oid = p.prorettype
-- the input arguments (IN, INOUT, VARIADIC), in order
LEFT JOIN LATERAL (
    SELECT pg_catalog.array_agg(coalesce(x.name, '') ORDER BY x.n) AS names,
           pg_catalog.array_agg(pg_catalog.format_type(x.type, NULL) ORDER BY x.n) AS types,
           pg_catalog.string_agg(t.typcategory::text, '' ORDER BY x.n) AS categories,
           pg_catalog.bool_or(t.typtype = 'p' OR coalesce(x.name, '') = '') AS unservable
    FROM unnest(coalesce(p.proallargtypes, p.proargtypes::pg_catalog.oid[]),
                           coalesce(p.proargnames, '{}'),
                           coalesce(p.proargmodes, '{}')) WITH ORDINALITY AS x(type, name, mode, n)
    JOIN pg_catalog.pg_type t ON t.oid = x.type
    WHERE coalesce(x.mode, 'i') IN ('i', 'b', 'v')
) a ON true
-- the result's columns: its OUT, INOUT and TABLE arguments ...
LEFT JOIN LATERAL (
    SELECT pg_catalog.json_agg(pg_catalog.json_build_object('name', x.name, 'type', pg_catalog.format_type(x.type, NULL))
                               ORDER BY x.n) AS columns
    FROM unnest(p.proallargtypes, p.proargnames, p.proargmodes) WITH ORDINALITY AS x(type, name, mode, n)
    WHERE x.mode IN ('o', 'b', 't')
) o ON true
-- ... or its composite type's attributes (multi-argument unnest is
-- syntax, ROWS FROM, which takes no schema)
LEFT JOIN LATERAL (
    SELECT pg_catalog.json_agg(pg_catalog.json_build_object('name', att.attname,
                                                            'type', pg_catalog.format_type(att.atttypid, att.atttypmod))
                               ORDER BY att.attnum) AS columns
    FROM pg_catalog.pg_attribute att
    WHERE att.attrelid = rt.typrelid AND att.attnum > 0 AND NOT att.attisdropped
) c ON rt.typtype = 'c'
WHERE p.prokind = 'f'
  AND p.prorettype NOT IN ('pg_catalog.trigger'::pg_catalog.regtype, 'pg_catalog.event_trigger'::pg_catalog.regtype)
  AND NOT coalesce(a.unservable, false)
  AND p.provariadic = 0
  AND NOT (p.prorettype = 'pg_catalog.record'::pg_catalog.regtype AND o.columns IS NULL)
  AND (n.nspname = 'api'
       OR (n.nspname = 'ventros'
           AND EXISTS (SELECT 1 FROM pg_catalog.unnest(ARRAY['ventros_viewer', 'ventros_agent', 'ventros_admin']) r
                       WHERE pg_catalog.has_function_privilege(r, p.oid, 'EXECUTE'))
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_proc q JOIN pg_catalog.pg_namespace qn ON qn.oid = q.pronamespace
                           WHERE qn.nspname = 'api' AND q.proname = p.proname)));
COMMENT ON VIEW ventros.http_rpc_functions IS
    'The functions ventros-http serves under /rpc/<name>: schema api''s, and those of ventros a tenant role may execute (arguments, result, comment, roles)';
GRANT SELECT ON ventros.http_rpc_functions TO ventros_viewer, ventros_anon, ventros_authenticator;

-- The JSON Schema of a value of a PostgreSQL type, for the OpenAPI document:
-- {type, format}, items for arrays; json and jsonb take any JSON value.  By
-- oid: a type's name would have to be parsed, and a caller may send any text.
CREATE FUNCTION ventros.http_json_schema(type_oid oid) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN t.typname IN ('json', 'jsonb') THEN jsonb_build_object('format', format_type(t.oid, NULL))
        WHEN t.typcategory = 'A' THEN jsonb_build_object('type', 'array', 'format', format_type(t.oid, NULL),
                                                         'items', ventros.http_json_schema(t.typelem))
        ELSE jsonb_build_object('type', CASE
                 WHEN b.typname IN ('int2', 'int4', 'int8') THEN 'integer'
                 WHEN b.typname IN ('numeric', 'float4', 'float8') THEN 'number'
                 WHEN b.typname = 'bool' THEN 'boolean'
                 WHEN b.typtype = 'c' THEN 'object'
                 ELSE 'string' END, 'format', format_type(t.oid, NULL)) END
    FROM pg_type t
    JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
    WHERE t.oid = type_oid
$$;
COMMENT ON FUNCTION ventros.http_json_schema(oid) IS
    'The JSON Schema ({type, format}, items for arrays) of a value of a PostgreSQL type, for the OpenAPI document';

-- OpenAPI 3 description of what the calling role may use: the views of
-- schema api it may read, and the functions of ventros.http_rpc_functions it
-- may execute, with their arguments, results and the first line of their
-- COMMENT as summary.
CREATE OR REPLACE FUNCTION ventros.http_openapi() RETURNS json
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH rels AS (
        SELECT c.oid, c.relname, coalesce(obj_description(c.oid, 'pg_class'), '') AS description,
               coalesce((SELECT d.refobjid FROM pg_rewrite r JOIN pg_depend d
                           ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                          WHERE r.ev_class = c.oid AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> c.oid
                          LIMIT 1), c.oid) AS base
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'api' AND c.relkind IN ('v', 'r', 'm')
          AND has_table_privilege(c.oid, 'SELECT')
    ), cols AS (
        SELECT r.relname, jsonb_object_agg(a.attname, ventros.http_json_schema(a.atttypid)) AS props
        FROM rels r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
        GROUP BY r.relname
    ), funcs AS (
        -- one description per name: api's before ventros', then the fewest arguments
        SELECT DISTINCT ON (f.name) f.*,
               (SELECT r.relname FROM rels r WHERE r.base = f.result_relid AND f.result_relid <> 0 LIMIT 1) AS result_rel
        FROM ventros.http_rpc_functions f
        WHERE has_function_privilege(f.function, 'EXECUTE')
        ORDER BY f.name, f.schema_name, cardinality(f.arg_names)
    ), shaped AS (
        SELECT f.*,
               CASE
                   WHEN f.result_rel IS NOT NULL THEN jsonb_build_object('$ref', '#/components/schemas/' || f.result_rel)
                   WHEN f.result_columns IS NOT NULL THEN jsonb_build_object('type', 'object', 'properties',
                       (SELECT jsonb_object_agg(c ->> 'name', ventros.http_json_schema(to_regtype(c ->> 'type')))
                        FROM json_array_elements(f.result_columns) c))
                   ELSE ventros.http_json_schema(to_regtype(f.result_type)) END AS item,
               (SELECT jsonb_object_agg(x.name, ventros.http_json_schema(to_regtype(x.type)))
                FROM unnest(f.arg_names, f.arg_types) AS x(name, type)) AS props,
               to_jsonb(f.arg_names[1:f.required_args]) AS required,
               split_part(f.description, E'\n', 1) AS summary
        FROM funcs f
    ), ops AS (
        SELECT s.name, jsonb_build_object('summary', s.summary, 'description', s.description,
                   'tags', jsonb_build_array(CASE WHEN s.schema_name = 'api' THEN 'auth' ELSE 'commands' END),
                   'responses', CASE WHEN s.result_type = 'void' THEN
                           jsonb_build_object('204', jsonb_build_object('description', 'No Content'))
                       ELSE jsonb_build_object('200', jsonb_build_object('description', 'OK', 'content',
                           CASE WHEN s.result_media_type IS NOT NULL THEN
                               jsonb_build_object(s.result_media_type, jsonb_build_object('schema', jsonb_build_object('type', 'string')))
                           ELSE '{}'::jsonb END
                           || jsonb_build_object('application/json', jsonb_build_object('schema',
                               CASE WHEN s.returns_set THEN jsonb_build_object('type', 'array', 'items', s.item)
                                    ELSE s.item END)))) END) AS common,
               s.props, s.required, s.read_only, s.arg_names, s.arg_types, s.required_args
        FROM shaped s
    ), rel_paths AS (
        SELECT '/' || r.relname AS path, jsonb_build_object(
            'get', jsonb_build_object('summary', r.description, 'tags', jsonb_build_array(r.relname),
                'responses', jsonb_build_object('200', jsonb_build_object('description', 'OK',
                    'content', jsonb_build_object('application/json', jsonb_build_object('schema',
                        jsonb_build_object('type', 'array', 'items',
                            jsonb_build_object('$ref', '#/components/schemas/' || r.relname))))))),
            'post', jsonb_build_object('tags', jsonb_build_array(r.relname),
                'responses', jsonb_build_object('201', jsonb_build_object('description', 'Created'))),
            'patch', jsonb_build_object('tags', jsonb_build_array(r.relname),
                'responses', jsonb_build_object('200', jsonb_build_object('description', 'OK'))),
            'delete', jsonb_build_object('tags', jsonb_build_array(r.relname),
                'responses', jsonb_build_object('200', jsonb_build_object('description', 'OK')))) AS item
        FROM rels r
    ), rpc_paths AS (
        SELECT '/rpc/' || o.name AS path,
               jsonb_build_object('post', o.common || jsonb_build_object('requestBody', jsonb_build_object(
                   'required', o.required_args > 0,
                   'content', jsonb_build_object('application/json', jsonb_build_object('schema',
                       jsonb_build_object('type', 'object', 'properties', coalesce(o.props, '{}'), 'required', o.required)))
                   -- the one required text argument may come as the raw body (docs/http.md)
                   || CASE WHEN o.required_args = 1 AND o.arg_types[1] = 'text' THEN
                          jsonb_build_object('text/csv', jsonb_build_object('schema', jsonb_build_object('type', 'string')),
                                             'text/plain', jsonb_build_object('schema', jsonb_build_object('type', 'string')))
                      ELSE '{}'::jsonb END)))
               || CASE WHEN o.read_only THEN jsonb_build_object('get', o.common || jsonb_build_object('parameters',
                      (SELECT coalesce(jsonb_agg(jsonb_build_object('name', x.name, 'in', 'query', 'required', x.n <= o.required_args,
                                                                    'schema', ventros.http_json_schema(to_regtype(x.type))) ORDER BY x.n), '[]')
                       FROM unnest(o.arg_names, o.arg_types) WITH ORDINALITY AS x(name, type, n))))
                  ELSE '{}'::jsonb END AS item
        FROM ops o
    )
    SELECT json_build_object(
        'openapi', '3.0.3',
        'info', json_build_object('title', 'Ventros API', 'version', (SELECT e.extversion FROM pg_catalog.pg_extension e WHERE e.extname = 'ventros'),
                                  'description', 'PostgREST dialect over schema api and the commands of schema ventros (ventros-http)'),
        'paths', coalesce((SELECT jsonb_object_agg(path, item) FROM (SELECT * FROM rel_paths UNION ALL SELECT * FROM rpc_paths) p),
                          '{}'::jsonb),
        'components', json_build_object('schemas', coalesce((SELECT jsonb_object_agg(c.relname,
                          jsonb_build_object('type', 'object', 'properties', c.props)) FROM cols c), '{}'::jsonb)))
$$;
COMMENT ON FUNCTION ventros.http_openapi() IS 'OpenAPI 3 description of schema api and the /rpc/ commands as the calling role may use them (GET /)';

GRANT EXECUTE ON FUNCTION ventros.http_json_schema(oid), ventros.http_openapi() TO ventros_viewer, ventros_anon;

-- ---- automation_rules
-- Issue 15: automation rules run (sql/74_automations.sql, sql/83_automation_rules.sql,
-- src/automation_worker.c, src/webhook_fanout.c): triggers on any event type or
-- pattern, conditions as data (all/any/not), the executor's queue, run log,
-- waits and time triggers, per-tenant settings, the dry run.


CREATE FUNCTION ventros.automation_condition_valid(c jsonb) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF jsonb_typeof(c) <> 'object' THEN
        RETURN false;
    ELSIF c ? 'all' OR c ? 'any' THEN
        RETURN jsonb_typeof(coalesce(c->'all', c->'any')) = 'array'
           AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(coalesce(c->'all', c->'any')) x
                           WHERE NOT ventros.automation_condition_valid(x));
    ELSIF c ? 'not' THEN
        RETURN ventros.automation_condition_valid(c->'not');
    ELSIF c ? 'keyword' THEN
        RETURN jsonb_typeof(c->'keyword') IN ('string', 'array');
    ELSIF c ? 'regex' THEN
        RETURN jsonb_typeof(c->'regex') = 'string';
    ELSIF c ? 'tag' THEN
        RETURN jsonb_typeof(c->'tag') = 'string';
    ELSIF c ? 'time_window' THEN
        RETURN jsonb_typeof(c->'time_window') = 'object'
           AND coalesce(c->'time_window'->>'from', '') ~ '^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$'
           AND coalesce(c->'time_window'->>'to', '') ~ '^([01][0-9]|2[0-4]):[0-5][0-9](:[0-5][0-9])?$'
           AND (NOT c->'time_window' ? 'weekdays' OR jsonb_typeof(c->'time_window'->'weekdays') = 'array');
    ELSIF c ? 'weekdays' THEN
        RETURN jsonb_typeof(c->'weekdays') = 'array';
    END IF;
    RETURN c ? 'field' AND jsonb_typeof(c->'field') = 'string'
       AND coalesce((c->'operator') <@ (ventros.automation_catalogue()->'condition_operators'), false);
END
$$;
COMMENT ON FUNCTION ventros.automation_condition_valid(jsonb) IS
    'True when one automation condition has a documented shape: {field, operator, value}, {keyword}, {regex}, {tag}, {time_window}, {weekdays}, or {all}/{any}/{not} of conditions';

CREATE OR REPLACE FUNCTION ventros.automation_rules_valid(conditions jsonb, actions jsonb, schedule jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT pg_catalog.jsonb_typeof(conditions) = 'array' AND pg_catalog.jsonb_typeof(actions) = 'array'
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.jsonb_array_elements(conditions) c
                       WHERE NOT ventros.automation_condition_valid(c)
                          OR (c ? 'logic' AND NOT (c->'logic') <@ (ventros.automation_catalogue()->'logic_operators')))
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.jsonb_array_elements(actions) a
                       WHERE pg_catalog.jsonb_typeof(a) <> 'object'
                          OR NOT coalesce((a->'type') <@ (ventros.automation_catalogue()->'actions'), false)
                          OR (a ? 'params' AND pg_catalog.jsonb_typeof(a->'params') <> 'object')
                          OR (a ? 'delay_minutes' AND NOT (pg_catalog.jsonb_typeof(a->'delay_minutes') = 'number'
                                                           AND (a->>'delay_minutes')::numeric >= 0)))
       AND (schedule IS NULL OR (pg_catalog.jsonb_typeof(schedule) = 'object'
                                 AND coalesce((schedule->'type') <@ (ventros.automation_catalogue()->'schedule_types'), false)))
$$;
COMMENT ON FUNCTION ventros.automation_rules_valid(jsonb, jsonb, jsonb) IS
    'True when conditions, actions and schedule have the documented shapes (field/operator/value, type/params/delay_minutes, type)';

ALTER TABLE ventros.automations ADD COLUMN stop_processing boolean NOT NULL DEFAULT false,
    ADD COLUMN trigger_config jsonb NOT NULL DEFAULT '{}',
    DROP CONSTRAINT automations_trigger_format,
    ADD CONSTRAINT automations_trigger_format CHECK (trigger ~ '^(\*|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*(\.\*)?)$' AND length(trigger) <= 100),
    ADD CONSTRAINT automations_trigger_config_object CHECK (jsonb_typeof(trigger_config) = 'object');
-- the HTTP API's view of automations shows the new columns
SELECT ventros.expose_api();

CREATE FUNCTION ventros.automation_trigger_matches(trigger text, event_type text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT trigger = '*' OR trigger = event_type
        OR (pg_catalog.right(trigger, 2) = '.*' AND pg_catalog.starts_with(event_type, pg_catalog.left(trigger, -1)))
        -- the built-in message.received: an inbound message.created (the executor checks from_me)
        OR (trigger = 'message.received' AND event_type = 'message.created')
$$;
COMMENT ON FUNCTION ventros.automation_trigger_matches(text, text) IS
    'Whether an automation trigger selects an event type: "*" all, "message.*" every message.<action>, message.received the message.created of inbound messages, else equality';

CREATE OR REPLACE FUNCTION ventros.is_known_trigger(trigger text) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM jsonb_each(ventros.automation_catalogue()->'triggers') c, jsonb_array_elements_text(c.value) t
                   WHERE t = trigger)
        OR EXISTS (SELECT 1 FROM ventros.automation_triggers x WHERE x.tenant_id = ventros.require_tenant() AND x.code = trigger)
        OR EXISTS (SELECT 1 FROM ventros.event_types e WHERE ventros.automation_trigger_matches(trigger, e.event_type))
        OR trigger LIKE 'custom.%'
$$;
COMMENT ON FUNCTION ventros.is_known_trigger(text) IS
    'Whether a trigger is built in, a custom code of the acting tenant, a custom.<name> event, or an event type of the catalog or a pattern matching one ("message.*", "*")';

DROP FUNCTION ventros.create_automation(text, text, jsonb, jsonb, text, uuid, integer, jsonb, text, uuid);
CREATE FUNCTION ventros.create_automation(name text, trigger text, actions jsonb, conditions jsonb DEFAULT '[]',
                                          automation_type text DEFAULT 'pipeline_based', pipeline_id uuid DEFAULT NULL,
                                          priority integer DEFAULT 0, schedule jsonb DEFAULT NULL,
                                          description text DEFAULT NULL, project_id uuid DEFAULT NULL,
                                          stop_processing boolean DEFAULT false, trigger_config jsonb DEFAULT '{}')
RETURNS ventros.automations
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.automations;
BEGIN
    IF name IS NULL OR trigger IS NULL THEN
        RAISE EXCEPTION 'automation % must not be null', CASE WHEN name IS NULL THEN 'name' ELSE 'trigger' END USING ERRCODE = '23502';
    END IF;
    PERFORM ventros.require_value(coalesce(automation_type, 'pipeline_based'), ARRAY(
        SELECT jsonb_array_elements_text(ventros.automation_catalogue()->'types')), 'automation type');
    IF NOT ventros.is_known_trigger(trigger) THEN
        RAISE EXCEPTION 'unknown automation trigger "%"', left(trigger, 100) USING ERRCODE = '22023',
            HINT = 'Use a built-in trigger or register a custom one with ventros.register_automation_trigger().';
    END IF;
    IF coalesce(automation_type, 'pipeline_based') = 'pipeline_based' AND pipeline_id IS NULL THEN
        RAISE EXCEPTION 'a pipeline_based automation needs a pipeline' USING ERRCODE = '23502';
    END IF;
    IF NOT ventros.automation_rules_valid(coalesce(conditions, '[]'), coalesce(actions, '[]'), schedule) THEN
        RAISE EXCEPTION 'malformed automation conditions, actions or schedule' USING ERRCODE = '22023',
            HINT = 'Conditions are {field, operator, value, logic}; actions {type, params, delay_minutes}; see ventros.automation_catalogue().';
    END IF;
    INSERT INTO ventros.automations (project_id, automation_type, pipeline_id, name, description, trigger, conditions, actions,
                                     priority, schedule, stop_processing, trigger_config)
    VALUES (coalesce(project_id, ventros.default_project()), coalesce(automation_type, 'pipeline_based'), pipeline_id,
            ventros.check_length(btrim(name), 200, 'automation name'), description, trigger, coalesce(conditions, '[]'),
            coalesce(actions, '[]'), coalesce(priority, 0), schedule, coalesce(stop_processing, false),
            coalesce(ventros.require_json(trigger_config, 'object', 'trigger configuration'), '{}'))
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.create_automation(text, text, jsonb, jsonb, text, uuid, integer, jsonb, text, uuid, boolean, jsonb) IS
    'Creates an enabled automation (known trigger or event pattern, shaped rules: 22023; pipeline_based needs a pipeline: 23502; stop_processing: no lower-priority rule runs after it for the same event; trigger_config: parameters of time triggers); emits automation.created';

CREATE OR REPLACE FUNCTION ventros.update_automation(automation_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.automations
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF jsonb_typeof(changes->'trigger') = 'string' AND NOT ventros.is_known_trigger(changes->>'trigger') THEN
        RAISE EXCEPTION 'unknown automation trigger "%"', left(changes->>'trigger', 100) USING ERRCODE = '22023';
    END IF;
    RETURN ventros.apply_changes(NULL::ventros.automations, 'automation', automation_id, expected_version, changes,
        ARRAY['name', 'description', 'trigger', 'conditions', 'actions', 'priority', 'enabled', 'schedule', 'pipeline_id',
              'automation_type', 'next_execution', 'stop_processing', 'trigger_config']);
EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION 'invalid automation: %', SQLERRM USING ERRCODE = '23514';
END
$$;
COMMENT ON FUNCTION ventros.update_automation(uuid, integer, jsonb) IS
    'Changes an automation (rules shaped, 23514); emits automation.updated, or .enabled / .disabled';

GRANT EXECUTE ON FUNCTION ventros.automation_condition_valid(jsonb), ventros.automation_trigger_matches(text, text)
    TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.create_automation(text, text, jsonb, jsonb, text, uuid, integer, jsonb, text, uuid, boolean, jsonb)
    TO ventros_agent;

-- ---- per-tenant settings ------------------------------------------------------

CREATE TABLE ventros.automation_settings (
    tenant_id  text        NOT NULL,
    enabled    boolean     NOT NULL DEFAULT true,
    timezone   text        NOT NULL DEFAULT 'UTC',
    max_depth  integer     NOT NULL DEFAULT 5,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id),
    CONSTRAINT automation_settings_timezone_size CHECK (length(timezone) <= 64),
    CONSTRAINT automation_settings_max_depth CHECK (max_depth BETWEEN 1 AND 20)
);
COMMENT ON TABLE ventros.automation_settings IS
    'Per tenant: whether its automation rules run, the timezone of their schedules and time windows, the cascade depth limit';
ALTER TABLE ventros.automation_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.automation_settings FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant ON ventros.automation_settings
    USING (tenant_id = (SELECT ventros.current_tenant()))
    WITH CHECK (tenant_id = (SELECT ventros.current_tenant()));
REVOKE ALL ON ventros.automation_settings FROM PUBLIC;
GRANT SELECT ON ventros.automation_settings TO ventros_viewer;
GRANT INSERT, UPDATE ON ventros.automation_settings TO ventros_admin;

CREATE FUNCTION ventros.current_automation_settings() RETURNS ventros.automation_settings
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT s FROM ventros.automation_settings s WHERE s.tenant_id = ventros.require_tenant()),
                    ROW(ventros.require_tenant(), true, 'UTC', 5, NULL)::ventros.automation_settings)
$$;
COMMENT ON FUNCTION ventros.current_automation_settings() IS
    'The acting tenant''s automation settings (enabled, timezone UTC, max_depth 5 when never set)';

CREATE FUNCTION ventros.set_automation_settings(enabled boolean DEFAULT NULL, timezone text DEFAULT NULL,
                                                max_depth integer DEFAULT NULL)
RETURNS ventros.automation_settings
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    cur ventros.automation_settings := ventros.current_automation_settings();
    result ventros.automation_settings;
BEGIN
    IF timezone IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_timezone_names z WHERE z.name = timezone) THEN
        RAISE EXCEPTION 'unknown timezone "%"', left(timezone, 64) USING ERRCODE = '22023',
            HINT = 'Use a name of pg_timezone_names, such as America/Sao_Paulo.';
    END IF;
    IF max_depth IS NOT NULL AND max_depth NOT BETWEEN 1 AND 20 THEN
        RAISE EXCEPTION 'max_depth must be between 1 and 20' USING ERRCODE = '22023';
    END IF;
    INSERT INTO ventros.automation_settings AS s (tenant_id, enabled, timezone, max_depth)
    VALUES (tenant, coalesce(enabled, cur.enabled), coalesce(timezone, cur.timezone), coalesce(max_depth, cur.max_depth))
    ON CONFLICT (tenant_id) DO UPDATE
    SET enabled = EXCLUDED.enabled, timezone = EXCLUDED.timezone, max_depth = EXCLUDED.max_depth, updated_at = now()
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.set_automation_settings(boolean, text, integer) IS
    'Administrators: enables or disables every automation rule of the acting tenant, sets their timezone (22023 unknown) and cascade depth limit (1..20)';

-- ---- the executor's queue, run log, waits and timers --------------------------

CREATE TABLE ventros.automation_queue (
    tenant_id       text        NOT NULL,
    seq             bigint      NOT NULL,
    event_id        uuid        NOT NULL,
    aggregate_id    uuid        NOT NULL,
    automation_id   uuid,
    depth           integer     NOT NULL DEFAULT 0,
    origin_event_id uuid        NOT NULL,
    queued_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX automation_queue_seq ON ventros.automation_queue (seq);
CREATE INDEX automation_queue_aggregate ON ventros.automation_queue (tenant_id, aggregate_id, seq);
COMMENT ON TABLE ventros.automation_queue IS
    'Committed events some automation rule may want, not yet run (seq = the event''s outbox seq; automation_id: a time-triggered rule to run as well; depth and originating event of a cascade)';
ALTER TABLE ventros.automation_queue ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.automation_queue FORCE ROW LEVEL SECURITY;
REVOKE ALL ON ventros.automation_queue FROM PUBLIC;
CREATE POLICY ventros_tenant_read ON ventros.automation_queue FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.automation_queue TO ventros_viewer;

CREATE TABLE ventros.automation_runs (
    tenant_id       text        NOT NULL,
    id              uuid        NOT NULL DEFAULT gen_random_uuid(),
    automation_id   uuid        NOT NULL,
    event_id        uuid        NOT NULL,
    event_type      text        NOT NULL,
    origin_event_id uuid        NOT NULL,
    depth           integer     NOT NULL,
    outcome         text        NOT NULL DEFAULT 'waiting',
    actions_done    jsonb       NOT NULL DEFAULT '[]',
    error           text,
    started_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at     timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, automation_id) REFERENCES ventros.automations (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT automation_runs_once UNIQUE (tenant_id, automation_id, event_id),
    CONSTRAINT automation_runs_outcome_known CHECK (outcome IN ('executed', 'skipped', 'failed', 'waiting'))
);
CREATE INDEX automation_runs_origin ON ventros.automation_runs (tenant_id, automation_id, origin_event_id);
COMMENT ON TABLE ventros.automation_runs IS
    'Run log: one row per rule and event (executed, skipped by its conditions, failed with its error, waiting to continue), with the actions done';
ALTER TABLE ventros.automation_runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.automation_runs FORCE ROW LEVEL SECURITY;
REVOKE ALL ON ventros.automation_runs FROM PUBLIC;
CREATE POLICY ventros_tenant_read ON ventros.automation_runs FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.automation_runs TO ventros_viewer;

CREATE TABLE ventros.automation_waits (
    tenant_id text        NOT NULL,
    run_id    uuid        NOT NULL,
    due_at    timestamptz NOT NULL,
    actions   jsonb       NOT NULL DEFAULT '[]',
    PRIMARY KEY (tenant_id, run_id),
    FOREIGN KEY (tenant_id, run_id) REFERENCES ventros.automation_runs (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT automation_waits_actions_array CHECK (jsonb_typeof(actions) = 'array')
);
CREATE INDEX automation_waits_due ON ventros.automation_waits (due_at);
COMMENT ON TABLE ventros.automation_waits IS
    'A run waiting ("wait N minutes then continue"): the actions left, resumed by the executor when due';
ALTER TABLE ventros.automation_waits ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.automation_waits FORCE ROW LEVEL SECURITY;
REVOKE ALL ON ventros.automation_waits FROM PUBLIC;
CREATE POLICY ventros_tenant_read ON ventros.automation_waits FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.automation_waits TO ventros_viewer;

CREATE TABLE ventros.automation_timers (
    tenant_id     text        NOT NULL,
    automation_id uuid        NOT NULL,
    fire_key      text        NOT NULL,
    fired_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, automation_id, fire_key),
    FOREIGN KEY (tenant_id, automation_id) REFERENCES ventros.automations (tenant_id, id) ON DELETE CASCADE
);
COMMENT ON TABLE ventros.automation_timers IS
    'Time triggers already fired (a schedule''s occurrence, a session''s unanswered message, a contact''s date): each fires once';
ALTER TABLE ventros.automation_timers ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.automation_timers FORCE ROW LEVEL SECURITY;
REVOKE ALL ON ventros.automation_timers FROM PUBLIC;
CREATE POLICY ventros_tenant_read ON ventros.automation_timers FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.automation_timers TO ventros_viewer;

SELECT ventros.register_event_type('automation.time_reached', 'A time trigger of an automation fired (schedule, no reply, contact date).');
SELECT ventros.register_event_type('automation.agents_notified', 'An automation notified agents (for a front end to show).');

-- ---- enqueue: in the event's transaction --------------------------------------

-- Called by src/webhook_fanout.c, as the table owner, right after the event's
-- outbox row was written (currval of ventros.outbox_seq is its seq).
CREATE FUNCTION ventros.automation_enqueue(event_tenant text, event_id uuid, event_type text, aggregate_id uuid)
RETURNS integer
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH q AS (
        INSERT INTO ventros.automation_queue (tenant_id, seq, event_id, aggregate_id, depth, origin_event_id)
        SELECT $1, currval('ventros.outbox_seq'), $2, $4,
               coalesce(nullif(current_setting('ventros.automation_depth', true), '')::integer, 0),
               coalesce(nullif(current_setting('ventros.automation_origin', true), '')::uuid, $2)
         WHERE EXISTS (SELECT 1 FROM ventros.automations a
                        WHERE a.tenant_id = $1 AND a.enabled AND a.deleted_at IS NULL
                          AND ventros.automation_trigger_matches(a.trigger, $3))
        ON CONFLICT (tenant_id, seq) DO NOTHING
        RETURNING 1)
    SELECT count(*)::integer FROM q
$$;
COMMENT ON FUNCTION ventros.automation_enqueue(text, uuid, text, uuid) IS
    'Internal (the emitter, as table owner): queues the event just written for the automation executor when an enabled rule of its tenant selects it; returns 1 or 0';

CREATE FUNCTION ventros.automation_wake() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'ventros_automation_wake';
COMMENT ON FUNCTION ventros.automation_wake() IS
    'Trigger: wakes the automation executor when the transaction that queued events commits (src/automation_worker.c)';
CREATE TRIGGER automation_wake AFTER INSERT ON ventros.automation_queue
    FOR EACH STATEMENT EXECUTE FUNCTION ventros.automation_wake();

-- The fan-out cache holds the rules' triggers too: the same invalidation.
CREATE FUNCTION ventros.automation_rules_changed() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'ventros_webhook_subscriptions_changed';
COMMENT ON FUNCTION ventros.automation_rules_changed() IS
    'Trigger: every backend drops its fan-out cache of which tenants'' rules select which events (src/webhook_fanout.c)';
CREATE TRIGGER ventros_automation_fanout_changed AFTER INSERT OR DELETE OR TRUNCATE ON ventros.automations
    FOR EACH STATEMENT EXECUTE FUNCTION ventros.automation_rules_changed();
CREATE TRIGGER ventros_automation_fanout_updated AFTER UPDATE ON ventros.automations
    FOR EACH ROW
    WHEN ((OLD.tenant_id, OLD.enabled, OLD.deleted_at, OLD.trigger) IS DISTINCT FROM (NEW.tenant_id, NEW.enabled, NEW.deleted_at, NEW.trigger))
    EXECUTE FUNCTION ventros.automation_rules_changed();

-- ---- what a rule sees: the event's context ------------------------------------

CREATE FUNCTION ventros.automation_uuid(value text) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN value ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN value::uuid END
$$;
COMMENT ON FUNCTION ventros.automation_uuid(text) IS 'A text as a uuid, NULL when it is not one';

-- The event, its payload, and the contact, custom fields, pipeline statuses,
-- message, session and channel it concerns, as one JSON document; a
-- condition's field is a path into it.  Called with the event's tenant acting.
CREATE FUNCTION ventros.automation_context(ev ventros.outbox, at timestamptz) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m ventros.messages;
    s ventros.sessions;
    c ventros.contacts;
    ch ventros.channels;
    message_id uuid := coalesce(CASE WHEN ev.aggregate_type = 'message' THEN ev.aggregate_id END,
                                ventros.automation_uuid(ev.payload->>'message_id'));
    session_id uuid := coalesce(CASE WHEN ev.aggregate_type = 'session' THEN ev.aggregate_id END,
                                ventros.automation_uuid(ev.payload->>'session_id'));
    contact_id uuid := coalesce(CASE WHEN ev.aggregate_type = 'contact' THEN ev.aggregate_id END,
                                ventros.automation_uuid(ev.payload->>'contact_id'));
    channel_id uuid := ventros.automation_uuid(ev.payload->>'channel_id');
    ctx jsonb;
BEGIN
    IF message_id IS NOT NULL THEN
        SELECT * INTO m FROM ventros.messages x WHERE x.tenant_id = ev.tenant_id AND x.id = message_id;
        session_id := coalesce(session_id, m.session_id);
        contact_id := coalesce(contact_id, m.contact_id);
        channel_id := coalesce(channel_id, m.channel_id);
    END IF;
    IF session_id IS NOT NULL THEN
        SELECT * INTO s FROM ventros.sessions x WHERE x.tenant_id = ev.tenant_id AND x.id = session_id;
        contact_id := coalesce(contact_id, s.contact_id);
        channel_id := coalesce(channel_id, s.channel_id);
    END IF;
    IF contact_id IS NOT NULL THEN
        SELECT * INTO c FROM ventros.contacts x WHERE x.tenant_id = ev.tenant_id AND x.id = contact_id;
    END IF;
    IF channel_id IS NOT NULL THEN
        SELECT * INTO ch FROM ventros.channels x WHERE x.tenant_id = ev.tenant_id AND x.id = channel_id;
    END IF;
    ctx := jsonb_build_object(
        'event', jsonb_build_object('id', ev.event_id, 'type', ev.event_type, 'aggregate_type', ev.aggregate_type,
                                    'aggregate_id', ev.aggregate_id, 'actor', ev.actor, 'occurred_at', ev.occurred_at),
        'payload', ev.payload);
    IF c.id IS NOT NULL THEN
        ctx := ctx || jsonb_build_object('contact', to_jsonb(c) - 'tenant_id'
            || jsonb_build_object('custom', coalesce((SELECT jsonb_object_agg(f.field_key, f.field_value)
                                                       FROM ventros.contact_custom_fields f
                                                      WHERE f.tenant_id = ev.tenant_id AND f.contact_id = c.id
                                                        AND f.deleted_at IS NULL), '{}')),
            'pipeline', (SELECT jsonb_build_object('status_ids', coalesce(jsonb_agg(p.status_id), '[]'),
                                                   'statuses', coalesce(jsonb_agg(st.name), '[]'),
                                                   'pipeline_ids', coalesce(jsonb_agg(p.pipeline_id), '[]'))
                           FROM ventros.contact_pipeline_statuses p
                           JOIN ventros.pipeline_statuses st ON st.tenant_id = p.tenant_id AND st.id = p.status_id
                          WHERE p.tenant_id = ev.tenant_id AND p.contact_id = c.id AND p.exited_at IS NULL
                            AND p.deleted_at IS NULL));
    END IF;
    IF m.id IS NOT NULL THEN
        ctx := ctx || jsonb_build_object('message', to_jsonb(m) - 'tenant_id');
    END IF;
    IF s.id IS NOT NULL THEN
        ctx := ctx || jsonb_build_object('session', to_jsonb(s) - 'tenant_id'
            || jsonb_build_object('duration_minutes',
                   round(extract(epoch FROM coalesce(s.ended_at, at) - s.started_at) / 60, 2)));
    END IF;
    IF ch.id IS NOT NULL THEN
        ctx := ctx || jsonb_build_object('channel', jsonb_build_object('id', ch.id, 'name', ch.name, 'type', ch.type,
                                                                       'status', ch.status));
    END IF;
    RETURN ctx;
END
$$;
COMMENT ON FUNCTION ventros.automation_context(ventros.outbox, timestamptz) IS
    'What an automation rule sees of an event: event, payload, contact (with custom fields), pipeline statuses, message, session (with duration_minutes) and channel';

-- ---- conditions ----------------------------------------------------------------

CREATE FUNCTION ventros.automation_compare(actual jsonb, op text, expected jsonb) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a text := actual #>> '{}';
    e text := expected #>> '{}';
    missing boolean := actual IS NULL OR jsonb_typeof(actual) = 'null';
BEGIN
    CASE op
    WHEN 'is_null' THEN RETURN missing;
    WHEN 'is_not_null' THEN RETURN NOT missing;
    WHEN 'ne' THEN RETURN missing OR NOT ventros.automation_compare(actual, 'eq', expected);
    WHEN 'not_in' THEN RETURN missing OR NOT ventros.automation_compare(actual, 'in', expected);
    WHEN 'not_contains' THEN RETURN missing OR NOT ventros.automation_compare(actual, 'contains', expected);
    ELSE
        IF missing THEN
            RETURN false;
        END IF;
    END CASE;
    CASE op
    WHEN 'eq' THEN RETURN actual = expected OR a = e;
    WHEN 'gt', 'lt', 'gte', 'lte' THEN
        IF jsonb_typeof(actual) = 'number' AND jsonb_typeof(expected) = 'number' THEN
            RETURN CASE op WHEN 'gt' THEN a::numeric > e::numeric WHEN 'lt' THEN a::numeric < e::numeric
                           WHEN 'gte' THEN a::numeric >= e::numeric ELSE a::numeric <= e::numeric END;
        END IF;
        RETURN CASE op WHEN 'gt' THEN a > e WHEN 'lt' THEN a < e WHEN 'gte' THEN a >= e ELSE a <= e END;
    WHEN 'contains' THEN
        IF jsonb_typeof(actual) = 'array' THEN
            RETURN actual @> CASE WHEN jsonb_typeof(expected) = 'array' THEN expected ELSE jsonb_build_array(expected) END;
        END IF;
        RETURN strpos(lower(a), lower(e)) > 0;
    WHEN 'starts_with' THEN RETURN starts_with(lower(a), lower(e));
    WHEN 'ends_with' THEN RETURN right(lower(a), length(e)) = lower(e);
    WHEN 'in' THEN
        RETURN jsonb_typeof(expected) = 'array'
           AND (expected @> jsonb_build_array(actual) OR EXISTS (SELECT 1 FROM jsonb_array_elements_text(expected) x WHERE x = a));
    WHEN 'matches' THEN RETURN a ~* e;
    ELSE
        RAISE EXCEPTION 'unknown condition operator "%"', left(op, 32) USING ERRCODE = '22023';
    END CASE;
END
$$;
COMMENT ON FUNCTION ventros.automation_compare(jsonb, text, jsonb) IS
    'One condition operator (eq, ne, gt, lt, gte, lte, contains, not_contains, starts_with, ends_with, in, not_in, is_null, is_not_null, matches) on JSON values';

-- A condition's field as a path of the context: a bare name is a payload field.
CREATE FUNCTION ventros.automation_field(ctx jsonb, field text) RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ctx #> CASE WHEN split_part(field, '.', 1) IN ('payload', 'event', 'contact', 'message', 'session', 'channel', 'pipeline')
                       THEN string_to_array(field, '.')
                       ELSE ARRAY['payload'] || string_to_array(field, '.') END
$$;
COMMENT ON FUNCTION ventros.automation_field(jsonb, text) IS
    'The value of a condition field in a rule''s context (payload.<path>, contact.<column>, contact.custom.<key>, session.<column>, message.<column>, channel.<column>, event.<attribute>, pipeline.statuses; a bare name is payload.<name>)';

CREATE FUNCTION ventros.automation_condition_holds(c jsonb, ctx jsonb, tz text, at timestamptz) RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    local timestamp := at AT TIME ZONE tz;
    t time := (at AT TIME ZONE tz)::time;
    txt text := lower(coalesce(ctx #>> '{message,text}', ctx #>> '{payload,text}', ''));
    w jsonb;
BEGIN
    IF c ? 'all' THEN
        RETURN NOT EXISTS (SELECT 1 FROM jsonb_array_elements(c->'all') x
                           WHERE NOT ventros.automation_condition_holds(x, ctx, tz, at));
    ELSIF c ? 'any' THEN
        RETURN EXISTS (SELECT 1 FROM jsonb_array_elements(c->'any') x
                       WHERE ventros.automation_condition_holds(x, ctx, tz, at));
    ELSIF c ? 'not' THEN
        RETURN NOT ventros.automation_condition_holds(c->'not', ctx, tz, at);
    ELSIF c ? 'keyword' THEN
        -- whole words, case-insensitive; any of a list
        RETURN EXISTS (SELECT 1 FROM jsonb_array_elements_text(CASE jsonb_typeof(c->'keyword') WHEN 'array' THEN c->'keyword'
                                                                    ELSE jsonb_build_array(c->'keyword') END) k
                       WHERE btrim(k) <> ''
                         AND strpos(' ' || regexp_replace(txt, '[^[:alnum:]_]+', ' ', 'g') || ' ',
                                    ' ' || btrim(regexp_replace(lower(k), '[^[:alnum:]_]+', ' ', 'g')) || ' ') > 0);
    ELSIF c ? 'regex' THEN
        RETURN txt ~* (c->>'regex');
    ELSIF c ? 'tag' THEN
        RETURN coalesce(ctx #> '{contact,tags}' ? (c->>'tag'), false);
    ELSIF c ? 'time_window' THEN
        w := c->'time_window';
        IF w ? 'weekdays' AND NOT (w->'weekdays') @> to_jsonb(extract(isodow FROM local)::integer) THEN
            RETURN false;
        END IF;
        RETURN CASE WHEN (w->>'from')::time <= (w->>'to')::time
                    THEN t >= (w->>'from')::time AND (t < (w->>'to')::time OR w->>'to' LIKE '24:%')
                    ELSE t >= (w->>'from')::time OR t < (w->>'to')::time END;
    ELSIF c ? 'weekdays' THEN
        RETURN (c->'weekdays') @> to_jsonb(extract(isodow FROM local)::integer);
    END IF;
    RETURN ventros.automation_compare(ventros.automation_field(ctx, c->>'field'), c->>'operator', c->'value');
END
$$;
COMMENT ON FUNCTION ventros.automation_condition_holds(jsonb, jsonb, text, timestamptz) IS
    'Whether one condition holds in a rule''s context at an instant, in the tenant''s timezone (time windows and weekdays: ISO, 1 = Monday)';

-- A rule's list of conditions: all of them, except that an element with
-- "logic": "OR" is or-ed with what precedes it (the stored shape).
CREATE FUNCTION ventros.automation_conditions_hold(conditions jsonb, ctx jsonb, tz text, at timestamptz) RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result boolean := true;
    c jsonb;
    first boolean := true;
BEGIN
    FOR c IN SELECT x FROM jsonb_array_elements(conditions) x LOOP
        IF first THEN
            result := ventros.automation_condition_holds(c, ctx, tz, at);
            first := false;
        ELSIF upper(coalesce(c->>'logic', 'AND')) = 'OR' THEN
            result := result OR ventros.automation_condition_holds(c, ctx, tz, at);
        ELSE
            result := result AND ventros.automation_condition_holds(c, ctx, tz, at);
        END IF;
    END LOOP;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.automation_conditions_hold(jsonb, jsonb, text, timestamptz) IS
    'Whether a rule''s conditions hold: all of them, an element with "logic": "OR" or-ed with what precedes it; none: true';

-- ---- actions -------------------------------------------------------------------

CREATE FUNCTION ventros.automation_require(value text, what text, action text) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF value IS NULL OR value = '' THEN
        RAISE EXCEPTION 'action % needs %', action, what USING ERRCODE = '23502';
    END IF;
    RETURN value;
END
$$;
COMMENT ON FUNCTION ventros.automation_require(text, text, text) IS
    'A value an action needs (its parameter or the contact/session of the event), or 23502 naming it';

-- One action, through the command a user would call.  Returns what it did.
CREATE FUNCTION ventros.automation_act(a jsonb, ctx jsonb, rule ventros.automations) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    kind text := a->>'type';
    p jsonb := coalesce(a->'params', '{}');
    contact uuid := ventros.automation_uuid(ctx #>> '{contact,id}');
    session uuid := ventros.automation_uuid(ctx #>> '{session,id}');
    channel uuid := coalesce(ventros.automation_uuid(p->>'channel_id'), ventros.automation_uuid(ctx #>> '{channel,id}'));
    c ventros.contacts;
    tags text[];
    txt text;
    id uuid;
    e ventros.sequence_enrollments;
BEGIN
    CASE kind
    WHEN 'add_tag', 'remove_tag' THEN
        PERFORM ventros.automation_require(contact::text, 'a contact', kind);
        SELECT * INTO c FROM ventros.contacts x WHERE x.tenant_id = rule.tenant_id AND x.id = contact FOR UPDATE;
        tags := CASE kind WHEN 'add_tag' THEN (SELECT array_agg(DISTINCT t ORDER BY t) FROM unnest(c.tags || (p->>'tag')) t)
                          ELSE array_remove(c.tags, p->>'tag') END;
        PERFORM ventros.automation_require(p->>'tag', 'params.tag', kind);
        IF tags IS DISTINCT FROM c.tags AND NOT (tags @> c.tags AND c.tags @> tags) THEN
            PERFORM ventros.update_contact(contact, c.version, jsonb_build_object('tags', tags));
        END IF;
    WHEN 'set_field' THEN
        PERFORM ventros.automation_require(contact::text, 'a contact', kind);
        SELECT * INTO c FROM ventros.contacts x WHERE x.tenant_id = rule.tenant_id AND x.id = contact FOR UPDATE;
        PERFORM ventros.update_contact(contact, c.version,
                                       jsonb_build_object(ventros.automation_require(p->>'field', 'params.field', kind), p->'value'));
    WHEN 'set_custom_field', 'update_custom_field' THEN
        PERFORM ventros.set_contact_custom_field(ventros.automation_require(contact::text, 'a contact', kind)::uuid,
                                                 ventros.automation_require(coalesce(p->>'key', p->>'field'), 'params.key', kind),
                                                 coalesce(p->>'field_type', 'text'), p->'value');
    WHEN 'change_pipeline_status' THEN
        PERFORM ventros.change_contact_pipeline_status(ventros.automation_require(contact::text, 'a contact', kind)::uuid,
                                                       ventros.automation_require(p->>'status_id', 'params.status_id', kind)::uuid,
                                                       notes => 'automation ' || rule.name);
    WHEN 'assign_agent' THEN
        PERFORM ventros.assign_session_agent(ventros.automation_require(session::text, 'a session', kind)::uuid,
                                             ventros.automation_require(p->>'agent_id', 'params.agent_id', kind)::uuid);
    WHEN 'assign_team' THEN
        PERFORM ventros.assign_session_to_team(ventros.automation_require(session::text, 'a session', kind)::uuid,
                                               ventros.automation_require(p->>'team_id', 'params.team_id', kind)::uuid);
    WHEN 'send_message', 'send_canned_response' THEN
        PERFORM ventros.automation_require(contact::text, 'a contact', kind);
        txt := CASE kind WHEN 'send_message' THEN ventros.automation_require(p->>'text', 'params.text', kind)
                         ELSE ventros.render_canned_response(ventros.automation_require(p->>'shortcut', 'params.shortcut', kind),
                                                             contact) END;
        txt := replace(replace(txt, '{{contact.name}}', coalesce(ctx #>> '{contact,name}', '')),
                       '{{contact.phone}}', coalesce(ctx #>> '{contact,phone}', ''));
        SELECT m.id INTO id FROM ventros.send_message(ventros.automation_require(channel::text, 'a channel', kind)::uuid,
                                                      contact, txt, source => 'trigger') m;
        RETURN jsonb_build_object('type', kind, 'message_id', id);
    WHEN 'send_template' THEN
        SELECT m.id INTO id FROM ventros.send_message(ventros.automation_require(channel::text, 'a channel', kind)::uuid,
                                                      ventros.automation_require(contact::text, 'a contact', kind)::uuid,
                                                      source => 'trigger',
                                                      template_name => ventros.automation_require(p->>'template_name', 'params.template_name', kind),
                                                      template_language => coalesce(p->>'template_language', p->>'language'),
                                                      template_components => p->'template_components') m;
        RETURN jsonb_build_object('type', kind, 'message_id', id);
    WHEN 'add_note', 'create_note' THEN
        SELECT n.id INTO id FROM ventros.add_note(ventros.automation_require(contact::text, 'a contact', kind)::uuid,
                                                  ventros.automation_require(coalesce(p->>'content', p->>'text'), 'params.content', kind),
                                                  ventros.system_agent_id('trigger'), author_type => 'system',
                                                  author_name => 'automation ' || rule.name, session_id => session) n;
        RETURN jsonb_build_object('type', kind, 'note_id', id);
    WHEN 'enroll_sequence' THEN
        PERFORM ventros.enroll_in_sequence(ventros.automation_require(p->>'sequence_id', 'params.sequence_id', kind)::uuid,
                                           ventros.automation_require(contact::text, 'a contact', kind)::uuid);
    WHEN 'unenroll_sequence' THEN
        FOR e IN SELECT * FROM ventros.sequence_enrollments x
                  WHERE x.tenant_id = rule.tenant_id AND x.contact_id = contact AND x.status IN ('active', 'paused')
                    AND x.sequence_id = ventros.automation_require(p->>'sequence_id', 'params.sequence_id', kind)::uuid LOOP
            PERFORM ventros.set_sequence_enrollment_status(e.id, e.version, 'exited', 'automation');
        END LOOP;
    WHEN 'add_to_list' THEN
        PERFORM ventros.add_contact_to_list(ventros.automation_require(p->>'list_id', 'params.list_id', kind)::uuid,
                                            ventros.automation_require(contact::text, 'a contact', kind)::uuid);
    WHEN 'remove_from_list' THEN
        PERFORM ventros.remove_contact_from_list(ventros.automation_require(p->>'list_id', 'params.list_id', kind)::uuid,
                                                 ventros.automation_require(contact::text, 'a contact', kind)::uuid);
    WHEN 'close_session' THEN
        PERFORM ventros.close_session(ventros.automation_require(session::text, 'a session', kind)::uuid,
                                      end_reason => 'system_close');
    WHEN 'call_webhook', 'send_webhook' THEN
        RETURN ventros.automation_call_webhook(p, ctx, rule);
    WHEN 'emit_event' THEN
        RETURN jsonb_build_object('type', kind, 'event_type',
            ventros.emit_custom_event(ventros.automation_require(p->>'name', 'params.name', kind),
                                      coalesce(p->'payload', '{}') || jsonb_build_object('automation_id', rule.id,
                                                                                        'contact_id', contact)));
    WHEN 'notify_agents', 'notify_agent', 'notify_coordinator' THEN
        PERFORM ventros.emit('automation.agents_notified', 'automation', rule.id,
            jsonb_build_object('message', coalesce(p->>'message', p->>'text', rule.name), 'agent_ids', p->'agent_ids',
                               'agent_id', p->'agent_id', 'team_id', p->'team_id', 'contact_id', contact,
                               'session_id', session, 'event_id', ctx #> '{event,id}'),
            rule.version);
    ELSE
        RAISE EXCEPTION 'action "%" is not supported by the automation executor', left(kind, 64) USING ERRCODE = '0A000',
            HINT = 'See docs/automation.md for the actions the executor runs.';
    END CASE;
    RETURN jsonb_build_object('type', kind);
END
$$;
COMMENT ON FUNCTION ventros.automation_act(jsonb, jsonb, ventros.automations) IS
    'Runs one automation action through the command a user would call (tags and fields: update_contact; send_message; add_note; enroll_in_sequence; ...); returns what it did; 0A000 for an action the executor does not run';

-- call_webhook: a delivery of the triggering event to one of the tenant's
-- webhook subscriptions, through the dispatcher, signed per attempt with the
-- subscription's secret as every delivery (sql/92_webhook_deliveries.sql).
CREATE FUNCTION ventros.automation_call_webhook(p jsonb, ctx jsonb, rule ventros.automations) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    w ventros.webhook_subscriptions;
    delivery uuid := gen_random_uuid();
    request uuid := gen_random_uuid();
    ev_id uuid := (ctx #>> '{event,id}')::uuid;
    body bytea;
BEGIN
    SELECT * INTO w FROM ventros.webhook_subscriptions x
     WHERE x.tenant_id = rule.tenant_id AND x.deleted_at IS NULL
       AND x.id = ventros.automation_require(p->>'webhook_subscription_id', 'params.webhook_subscription_id', 'call_webhook')::uuid;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'webhook subscription % not found', p->>'webhook_subscription_id' USING ERRCODE = 'P0002';
    END IF;
    IF w.secret IS NULL THEN
        RAISE EXCEPTION 'webhook subscription % has no secret: automation calls are signed', w.id USING ERRCODE = '22023';
    END IF;
    body := convert_to(ventros.webhook_cloudevent(rule.tenant_id, ev_id, ctx #>> '{event,type}', ctx #>> '{event,aggregate_type}',
                                                  (ctx #>> '{event,aggregate_id}')::uuid,
                                                  coalesce(p->'body', ctx->'payload') || jsonb_build_object('automation_id', rule.id),
                                                  (ctx #>> '{event,occurred_at}')::timestamptz), 'UTF8');
    INSERT INTO ventros.http_requests (tenant_id, id, method, url, headers, body, purpose, correlation_id,
                                       retry_policy, retry_schedule, max_attempts, timeout_ms)
    VALUES (rule.tenant_id, request, 'POST', w.url, ventros.webhook_request_headers(ev_id, delivery), body,
            'webhook.delivery', delivery, 'any', ventros.webhook_retry_schedule(),
            1 + least(w.retry_count, cardinality(ventros.webhook_retry_schedule())), w.timeout_seconds * 1000);
    INSERT INTO ventros.webhook_deliveries (tenant_id, id, subscription_id, event_id, event_type, aggregate_type,
                                            aggregate_id, request_id)
    VALUES (rule.tenant_id, delivery, w.id, ev_id, ctx #>> '{event,type}', ctx #>> '{event,aggregate_type}',
            (ctx #>> '{event,aggregate_id}')::uuid, request);
    RETURN jsonb_build_object('type', 'call_webhook', 'delivery_id', delivery);
END
$$;
COMMENT ON FUNCTION ventros.automation_call_webhook(jsonb, jsonb, ventros.automations) IS
    'Action call_webhook: one signed delivery of the triggering event (CloudEvents body, or params.body) to a webhook subscription of the tenant, through the HTTP dispatcher';

-- ---- running one rule for one event ---------------------------------------------

-- The run's events: automation.triggered, .executed or .failed.
CREATE FUNCTION ventros.automation_report(rule ventros.automations, outcome text, run ventros.automation_runs) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.emit('automation.' || outcome, 'automation', rule.id,
        jsonb_strip_nulls(jsonb_build_object('trigger', rule.trigger, 'run_id', run.id, 'event_id', run.event_id,
                                             'event_type', run.event_type, 'origin_event_id', run.origin_event_id,
                                             'depth', run.depth, 'actions', run.actions_done, 'error', run.error)),
        rule.version)
$$;
COMMENT ON FUNCTION ventros.automation_report(ventros.automations, text, ventros.automation_runs) IS
    'Emits automation.triggered, .executed or .failed for a run';

-- Runs a list of actions in order until a wait: the rest is stored as the
-- run's continuation.  Returns the actions done and whether it waits.
CREATE FUNCTION ventros.automation_run_actions(rule ventros.automations, ctx jsonb, actions jsonb, run_id uuid,
                                               at timestamptz, OUT done jsonb, OUT waiting boolean)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a jsonb;
    i integer := 0;
    n integer := jsonb_array_length(actions);
    minutes numeric;
BEGIN
    done := '[]';
    waiting := false;
    WHILE i < n LOOP
        a := actions->i;
        minutes := CASE WHEN a->>'type' = 'wait' THEN coalesce((a->'params'->>'minutes')::numeric, (a->>'delay_minutes')::numeric, 0)
                        ELSE coalesce((a->>'delay_minutes')::numeric, 0) END;
        IF minutes > 0 THEN
            -- the rest, with this action's own delay spent
            INSERT INTO ventros.automation_waits (tenant_id, run_id, due_at, actions)
            VALUES (rule.tenant_id, run_id, at + make_interval(secs => minutes * 60),
                    CASE WHEN a->>'type' = 'wait' THEN '[]'::jsonb ELSE jsonb_build_array(a - 'delay_minutes') END
                    || coalesce((SELECT jsonb_agg(x ORDER BY o) FROM jsonb_array_elements(actions) WITH ORDINALITY r(x, o)
                                  WHERE o > i + 1), '[]'));
            done := done || jsonb_build_object('type', 'wait', 'minutes', minutes);
            waiting := true;
            RETURN;
        END IF;
        IF a->>'type' <> 'wait' THEN
            done := done || ventros.automation_act(a, ctx, rule);
        END IF;
        i := i + 1;
    END LOOP;
END
$$;
COMMENT ON FUNCTION ventros.automation_run_actions(ventros.automations, jsonb, jsonb, uuid, timestamptz) IS
    'Runs actions in order; a wait (or an action''s delay_minutes) stores the rest in ventros.automation_waits and stops';

-- The actions of a run, in a subtransaction; finishes the run row and
-- reports it.
CREATE FUNCTION ventros.automation_execute(rule ventros.automations, run ventros.automation_runs, ctx jsonb,
                                           actions jsonb, at timestamptz)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
    err text;
    state text;
BEGIN
    BEGIN
        r := ventros.automation_run_actions(rule, ctx, actions, run.id, at);
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS err = MESSAGE_TEXT, state = RETURNED_SQLSTATE;
    END;
    IF err IS NOT NULL THEN
        UPDATE ventros.automation_runs x SET outcome = 'failed', error = left(state || ': ' || err, 2000),
                                             finished_at = clock_timestamp()
         WHERE x.tenant_id = run.tenant_id AND x.id = run.id RETURNING * INTO run;
        PERFORM ventros.automation_report(rule, 'failed', run);
    ELSE
        UPDATE ventros.automation_runs x
           SET outcome = CASE WHEN r.waiting THEN 'waiting' ELSE 'executed' END, actions_done = x.actions_done || r.done,
               finished_at = CASE WHEN NOT r.waiting THEN clock_timestamp() END
         WHERE x.tenant_id = run.tenant_id AND x.id = run.id RETURNING * INTO run;
        IF NOT r.waiting THEN
            PERFORM ventros.automation_report(rule, 'executed', run);
        END IF;
    END IF;
    RETURN run.outcome;
END
$$;
COMMENT ON FUNCTION ventros.automation_execute(ventros.automations, ventros.automation_runs, jsonb, jsonb, timestamptz) IS
    'Runs a run''s actions in a subtransaction (a failure rolls them back and fails the run with its error), reports automation.executed or .failed';

CREATE FUNCTION ventros.automation_run_rule(rule ventros.automations, ev ventros.outbox, depth integer,
                                            origin_event_id uuid, at timestamptz)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    settings ventros.automation_settings := ventros.current_automation_settings();
    run ventros.automation_runs;
    ctx jsonb;
    holds boolean;
    reason text;
    err text;
    state text;
BEGIN
    IF EXISTS (SELECT 1 FROM ventros.automation_runs x
                WHERE x.tenant_id = ev.tenant_id AND x.automation_id = rule.id AND x.event_id = ev.event_id) THEN
        RETURN 'duplicate';
    END IF;
    IF depth >= settings.max_depth THEN
        reason := format('cascade depth limit %s reached (event %s at depth %s, originating event %s)',
                         settings.max_depth, ev.event_type, depth, origin_event_id);
    ELSIF depth > 0 AND EXISTS (SELECT 1 FROM ventros.automation_runs x
                                 WHERE x.tenant_id = ev.tenant_id AND x.automation_id = rule.id
                                   AND x.origin_event_id = automation_run_rule.origin_event_id) THEN
        reason := format('loop: rule already ran for the originating event %s', origin_event_id);
    END IF;
    IF reason IS NULL THEN
        BEGIN
            ctx := ventros.automation_context(ev, at);
            holds := ventros.automation_conditions_hold(rule.conditions, ctx, settings.timezone, at);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS err = MESSAGE_TEXT, state = RETURNED_SQLSTATE;
            reason := 'conditions failed: ' || state || ': ' || err;
        END;
    END IF;
    INSERT INTO ventros.automation_runs (tenant_id, automation_id, event_id, event_type, origin_event_id, depth, outcome,
                                         error, finished_at)
    VALUES (ev.tenant_id, rule.id, ev.event_id, ev.event_type, origin_event_id, depth,
            CASE WHEN reason IS NOT NULL THEN 'failed' WHEN holds THEN 'waiting' ELSE 'skipped' END,
            left(reason, 2000), CASE WHEN reason IS NOT NULL OR NOT holds THEN clock_timestamp() END)
    RETURNING * INTO run;
    IF reason IS NOT NULL THEN
        PERFORM ventros.automation_report(rule, 'failed', run);
        RETURN 'failed';
    ELSIF NOT holds THEN
        RETURN 'skipped';
    END IF;
    PERFORM ventros.automation_report(rule, 'triggered', run);
    RETURN ventros.automation_execute(rule, run, ctx, rule.actions, at);
END
$$;
COMMENT ON FUNCTION ventros.automation_run_rule(ventros.automations, ventros.outbox, integer, uuid, timestamptz) IS
    'Runs one rule for one event once: refuses past the depth limit or a second run for the same originating event (failed, with the reason), evaluates its conditions (skipped), runs its actions (executed, waiting, failed); returns the outcome';

-- The cascade marks of the events emitted from here on (the queue rows
-- ventros.automation_enqueue writes): one level deeper, the same origin.
-- NULL depth clears them.
CREATE FUNCTION ventros.automation_mark_cascade(depth integer, origin_event_id uuid) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT FROM set_config('ventros.automation_depth', coalesce(depth + 1, 0)::text, true) d,
                set_config('ventros.automation_origin', CASE WHEN depth IS NOT NULL THEN origin_event_id::text ELSE '' END, true) o
$$;
COMMENT ON FUNCTION ventros.automation_mark_cascade(integer, uuid) IS
    'Marks the events emitted from now on in this transaction as a cascade one level below depth from an originating event (NULL: unmarks)';

-- One queued event: every rule it triggers, highest priority first, until a
-- rule that ran with stop_processing.
CREATE FUNCTION ventros.automation_process(q ventros.automation_queue, at timestamptz) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ev ventros.outbox;
    rule ventros.automations;
    outcome text;
    n integer := 0;
BEGIN
    IF NOT (ventros.current_automation_settings()).enabled THEN
        RETURN 0;
    END IF;
    SELECT * INTO ev FROM ventros.outbox o WHERE o.tenant_id = q.tenant_id AND o.seq = q.seq;
    IF NOT FOUND THEN
        RETURN 0;   -- pruned or erased meanwhile
    END IF;
    -- everything the rules emit (their actions', their own reports) is one level deeper
    PERFORM ventros.automation_mark_cascade(q.depth, q.origin_event_id);
    FOR rule IN SELECT * FROM ventros.automations a
                 WHERE a.tenant_id = q.tenant_id AND a.enabled AND a.deleted_at IS NULL
                   AND (ventros.automation_trigger_matches(a.trigger, ev.event_type) OR a.id = q.automation_id)
                   AND NOT (a.trigger = 'message.received' AND coalesce((ev.payload->>'from_me')::boolean, false))
                 ORDER BY a.priority DESC, a.created_at, a.id LOOP
        outcome := ventros.automation_run_rule(rule, ev, q.depth, q.origin_event_id, at);
        n := n + 1;
        EXIT WHEN rule.stop_processing AND outcome IN ('executed', 'waiting');
    END LOOP;
    PERFORM ventros.automation_mark_cascade(NULL, NULL);
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.automation_process(ventros.automation_queue, timestamptz) IS
    'Runs the rules a queued event triggers, highest priority first, stopping after a rule with stop_processing that ran; nothing when the tenant disabled its automations';

-- A due wait: the rest of the run's actions.
CREATE FUNCTION ventros.automation_resume(w ventros.automation_waits, at timestamptz) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    run ventros.automation_runs;
    rule ventros.automations;
    ev ventros.outbox;
BEGIN
    DELETE FROM ventros.automation_waits x WHERE x.tenant_id = w.tenant_id AND x.run_id = w.run_id;
    SELECT * INTO run FROM ventros.automation_runs x WHERE x.tenant_id = w.tenant_id AND x.id = w.run_id;
    SELECT * INTO rule FROM ventros.automations a WHERE a.tenant_id = w.tenant_id AND a.id = run.automation_id;
    SELECT * INTO ev FROM ventros.outbox o WHERE o.tenant_id = w.tenant_id AND o.event_id = run.event_id;
    PERFORM ventros.automation_mark_cascade(run.depth, run.origin_event_id);
    IF NOT rule.enabled OR rule.deleted_at IS NOT NULL OR ev.event_id IS NULL
       OR NOT (ventros.current_automation_settings()).enabled THEN
        UPDATE ventros.automation_runs x SET outcome = 'failed', finished_at = clock_timestamp(),
               error = CASE WHEN ev.event_id IS NULL THEN 'the triggering event is gone' ELSE 'the rule was disabled while waiting' END
         WHERE x.tenant_id = run.tenant_id AND x.id = run.id RETURNING * INTO run;
        PERFORM ventros.automation_report(rule, 'failed', run);
        PERFORM ventros.automation_mark_cascade(NULL, NULL);
        RETURN 'failed';
    END IF;
    run.outcome := ventros.automation_execute(rule, run, ventros.automation_context(ev, at), w.actions, at);
    PERFORM ventros.automation_mark_cascade(NULL, NULL);
    RETURN run.outcome;
END
$$;
COMMENT ON FUNCTION ventros.automation_resume(ventros.automation_waits, timestamptz) IS
    'Continues a waiting run with the actions left (failed when its rule was disabled or its event is gone)';

-- ---- the executor's entry point ---------------------------------------------------

CREATE FUNCTION ventros.run_automations(batch_size integer DEFAULT 100, now timestamptz DEFAULT now())
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET ventros.tenant = ''
AS $$
DECLARE
    q ventros.automation_queue;
    w ventros.automation_waits;
    n integer := 0;
    saved_wait text := pg_catalog.current_setting('lock_timeout');
BEGIN
    PERFORM ventros.require_platform_admin();
    -- a tenant's open transaction holding a row a rule needs fails that
    -- rule's run (55P03), not the executor
    PERFORM pg_catalog.set_config('lock_timeout', '2s', true);
    FOR q IN SELECT * FROM ventros.automation_queue x
              WHERE NOT EXISTS (SELECT 1 FROM ventros.automation_queue y
                                 WHERE y.tenant_id = x.tenant_id AND y.aggregate_id = x.aggregate_id AND y.seq < x.seq)
              ORDER BY x.seq
              LIMIT batch_size
              FOR UPDATE SKIP LOCKED LOOP
        PERFORM pg_catalog.set_config('ventros.tenant', q.tenant_id, true);
        BEGIN
            PERFORM ventros.automation_process(q, run_automations.now);
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'automation executor: event % of tenant % failed: %', q.event_id, q.tenant_id, SQLERRM;
        END;
        DELETE FROM ventros.automation_queue x WHERE x.tenant_id = q.tenant_id AND x.seq = q.seq;
        n := n + 1;
    END LOOP;
    FOR w IN SELECT * FROM ventros.automation_waits x WHERE x.due_at <= run_automations.now
              ORDER BY x.due_at LIMIT batch_size FOR UPDATE SKIP LOCKED LOOP
        PERFORM pg_catalog.set_config('ventros.tenant', w.tenant_id, true);
        BEGIN
            PERFORM ventros.automation_resume(w, run_automations.now);
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'automation executor: wait of run % of tenant % failed: %', w.run_id, w.tenant_id, SQLERRM;
            DELETE FROM ventros.automation_waits x WHERE x.tenant_id = w.tenant_id AND x.run_id = w.run_id;
        END;
        n := n + 1;
    END LOOP;
    PERFORM pg_catalog.set_config('lock_timeout', saved_wait, true);
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.run_automations(integer, timestamptz) IS
    'The automation executor (src/automation_worker.c; platform admins): runs the rules of up to batch_size queued events (the first of each aggregate, SKIP LOCKED) and due waits, each tenant''s as that tenant, in this transaction; returns how many it took';

-- ---- dry run ------------------------------------------------------------------------

CREATE FUNCTION ventros.test_automation(automation_id uuid, event_id uuid, at timestamptz DEFAULT now())
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    settings ventros.automation_settings := ventros.current_automation_settings();
    rule ventros.automations;
    ev ventros.outbox;
    ctx jsonb;
    holds boolean;
BEGIN
    SELECT * INTO rule FROM ventros.automations a WHERE a.tenant_id = tenant AND a.id = test_automation.automation_id;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('automation', automation_id);
    END IF;
    SELECT * INTO ev FROM ventros.outbox o WHERE o.tenant_id = tenant AND o.event_id = test_automation.event_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'event % not found', event_id USING ERRCODE = 'P0002';
    END IF;
    ctx := ventros.automation_context(ev, at);
    holds := ventros.automation_conditions_hold(rule.conditions, ctx, settings.timezone, at);
    RETURN jsonb_build_object(
        'trigger_matches', ventros.automation_trigger_matches(rule.trigger, ev.event_type),
        'conditions_hold', holds,
        'conditions', coalesce((SELECT jsonb_agg(jsonb_build_object('condition', c,
                                     'holds', ventros.automation_condition_holds(c, ctx, settings.timezone, at)) ORDER BY o)
                                  FROM jsonb_array_elements(rule.conditions) WITH ORDINALITY x(c, o)), '[]'),
        'enabled', rule.enabled AND settings.enabled,
        'would_run', rule.enabled AND settings.enabled AND holds
                     AND ventros.automation_trigger_matches(rule.trigger, ev.event_type),
        'actions', rule.actions,
        'already_ran', EXISTS (SELECT 1 FROM ventros.automation_runs r
                                WHERE r.tenant_id = tenant AND r.automation_id = rule.id AND r.event_id = ev.event_id),
        'context', ctx);
END
$$;
COMMENT ON FUNCTION ventros.test_automation(uuid, uuid, timestamptz) IS
    'Dry run: whether an automation of the acting tenant would run for one of its past events (trigger, each condition, enabled) and the actions it would take, without doing them';

-- ---- time triggers --------------------------------------------------------------------

-- The next occurrence of a schedule after an instant, in a timezone:
-- {"type": "daily", "at": "09:00"}, {"type": "weekly", "at": "09:00",
-- "weekdays": [1, 5]}, {"type": "monthly", "at": "09:00", "day": 1},
-- {"type": "once", "at": "<timestamptz>"}.
CREATE FUNCTION ventros.automation_next_occurrence(schedule jsonb, tz text, after timestamptz) RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    local_day date := (after AT TIME ZONE tz)::date;
    at_time time := coalesce(nullif(schedule->>'at', '')::time, '00:00');
    candidate timestamptz;
BEGIN
    IF schedule->>'type' = 'once' THEN
        candidate := (schedule->>'at')::timestamptz;
        RETURN CASE WHEN candidate > after THEN candidate END;
    END IF;
    FOR i IN 0..62 LOOP
        candidate := ((local_day + i) + at_time) AT TIME ZONE tz;
        CONTINUE WHEN candidate <= after;
        IF schedule->>'type' = 'weekly' AND NOT coalesce(schedule->'weekdays', '[1,2,3,4,5,6,7]')
                                                   @> to_jsonb(extract(isodow FROM local_day + i)::integer) THEN
            CONTINUE;
        END IF;
        IF schedule->>'type' = 'monthly' AND extract(day FROM local_day + i) <> coalesce((schedule->>'day')::integer, 1) THEN
            CONTINUE;
        END IF;
        RETURN candidate;
    END LOOP;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.automation_next_occurrence(jsonb, text, timestamptz) IS
    'The next instant after a given one at which a schedule (once, daily, weekly with ISO weekdays, monthly on a day) falls, in a timezone';

-- Fires a time trigger once per key: automation.time_reached, queued for the rule.
CREATE FUNCTION ventros.automation_fire(rule ventros.automations, fire_key text, payload jsonb) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO ventros.automation_timers (tenant_id, automation_id, fire_key)
    VALUES (rule.tenant_id, rule.id, fire_key) ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM ventros.emit('automation.time_reached', 'automation', rule.id, payload || jsonb_build_object('trigger', rule.trigger),
                         rule.version);
    INSERT INTO ventros.automation_queue AS q (tenant_id, seq, event_id, aggregate_id, automation_id, origin_event_id)
    SELECT o.tenant_id, o.seq, o.event_id, o.aggregate_id, rule.id, o.event_id
      FROM ventros.outbox o
     WHERE o.tenant_id = rule.tenant_id AND o.aggregate_id = rule.id AND o.event_type = 'automation.time_reached'
     ORDER BY o.seq DESC LIMIT 1
    ON CONFLICT (tenant_id, seq) DO UPDATE SET automation_id = EXCLUDED.automation_id;
    RETURN true;
END
$$;
COMMENT ON FUNCTION ventros.automation_fire(ventros.automations, text, jsonb) IS
    'Fires a time trigger of a rule once per key: emits automation.time_reached and queues it for that rule';

CREATE FUNCTION ventros.tick_automation_rules(now timestamptz DEFAULT now()) RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    settings ventros.automation_settings := ventros.current_automation_settings();
    tz text := settings.timezone;
    rule ventros.automations;
    due timestamptz;
    minutes integer;
    days integer;
    field text;
    x record;
    n integer := 0;
BEGIN
    PERFORM ventros.require_platform_admin();
    IF NOT settings.enabled THEN
        RETURN 0;
    END IF;
    FOR rule IN SELECT * FROM ventros.automations a
                 WHERE a.tenant_id = tenant AND a.enabled AND a.deleted_at IS NULL
                   AND a.trigger IN ('scheduled', 'no_response.timeout', 'date_field.reached')
                 ORDER BY a.priority DESC, a.created_at, a.id LOOP
        IF rule.trigger = 'scheduled' AND rule.schedule IS NOT NULL THEN
            due := rule.next_execution;
            IF due IS NOT NULL AND due <= now THEN
                IF ventros.automation_fire(rule, 'schedule:' || due::text, jsonb_build_object('reason', 'schedule', 'due_at', due)) THEN
                    n := n + 1;
                END IF;
            END IF;
            IF due IS NULL OR due <= now THEN
                UPDATE ventros.automations a SET next_execution = ventros.automation_next_occurrence(rule.schedule, tz, now),
                                                 last_executed = CASE WHEN due IS NOT NULL THEN now ELSE a.last_executed END,
                                                 version = a.version
                 WHERE a.tenant_id = tenant AND a.id = rule.id;
            END IF;
        ELSIF rule.trigger = 'no_response.timeout' THEN
            -- active sessions whose last message is the contact's, older than N minutes
            minutes := coalesce((rule.trigger_config->>'minutes')::integer, 60);
            FOR x IN SELECT s.id AS session_id, s.contact_id, s.channel_id, m.id AS message_id, m."timestamp"
                       FROM ventros.sessions s
                       CROSS JOIN LATERAL (SELECT mm.id, mm.from_me, mm."timestamp" FROM ventros.messages mm
                                            WHERE mm.tenant_id = s.tenant_id AND mm.session_id = s.id AND mm.deleted_at IS NULL
                                            ORDER BY mm."timestamp" DESC, mm.id DESC LIMIT 1) m
                      WHERE s.tenant_id = tenant AND s.status = 'active' AND s.deleted_at IS NULL
                        AND NOT m.from_me AND m."timestamp" <= now - make_interval(mins => minutes) LOOP
                IF ventros.automation_fire(rule, 'no_reply:' || x.message_id,
                       jsonb_build_object('reason', 'no_reply', 'session_id', x.session_id, 'contact_id', x.contact_id,
                                          'channel_id', x.channel_id, 'message_id', x.message_id, 'minutes', minutes)) THEN
                    n := n + 1;
                END IF;
            END LOOP;
        ELSIF rule.trigger = 'date_field.reached' THEN
            -- contacts whose date (a custom field, or created_at) plus N days is today, at "at" local time
            days := coalesce((rule.trigger_config->>'days')::integer, 0);
            field := coalesce(rule.trigger_config->>'field', 'created_at');
            CONTINUE WHEN (now AT TIME ZONE tz)::time < coalesce(nullif(rule.trigger_config->>'at', '')::time, '00:00');
            FOR x IN SELECT c.id AS contact_id, d.day
                       FROM ventros.contacts c
                       CROSS JOIN LATERAL (SELECT CASE WHEN field = 'created_at' THEN (c.created_at AT TIME ZONE tz)::date
                                                       ELSE (SELECT (f.field_value #>> '{}')::date FROM ventros.contact_custom_fields f
                                                              WHERE f.tenant_id = c.tenant_id AND f.contact_id = c.id
                                                                AND f.field_key = field AND f.deleted_at IS NULL
                                                                AND f.field_type = 'date' LIMIT 1) END AS day) d
                      WHERE c.tenant_id = tenant AND c.deleted_at IS NULL
                        AND d.day + days = (now AT TIME ZONE tz)::date LOOP
                IF ventros.automation_fire(rule, 'date:' || x.contact_id || ':' || (x.day + days),
                       jsonb_build_object('reason', 'date_field', 'contact_id', x.contact_id, 'field', field,
                                          'date', x.day, 'days', days)) THEN
                    n := n + 1;
                END IF;
            END LOOP;
        END IF;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.tick_automation_rules(timestamptz) IS
    'Scheduler (platform admins, per tenant through run_per_tenant): fires the acting tenant''s time triggers due at now, each once (scheduled: next_execution in the tenant''s timezone; no_response.timeout: trigger_config.minutes since the contact''s unanswered message; date_field.reached: trigger_config.field + days); returns how many fired';

GRANT EXECUTE ON FUNCTION ventros.current_automation_settings(), ventros.automation_uuid(text),
    ventros.automation_compare(jsonb, text, jsonb), ventros.automation_field(jsonb, text),
    ventros.automation_condition_holds(jsonb, jsonb, text, timestamptz),
    ventros.automation_conditions_hold(jsonb, jsonb, text, timestamptz),
    ventros.automation_next_occurrence(jsonb, text, timestamptz),
    ventros.automation_context(ventros.outbox, timestamptz), ventros.test_automation(uuid, uuid, timestamptz) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.set_automation_settings(boolean, text, integer) TO ventros_admin;
GRANT EXECUTE ON FUNCTION ventros.run_automations(integer, timestamptz), ventros.tick_automation_rules(timestamptz)
    TO ventros_platform_admin;

INSERT INTO ventros.scheduled_jobs (name, schedule, command, purpose) VALUES
    ('ventros-tick-automation-rules', '* * * * *',
     'SELECT count(*) FROM ventros.run_per_tenant(''ventros-tick-automation-rules'', ''SELECT pg_catalog.to_jsonb(ventros.tick_automation_rules($1))'')',
     'time triggers of automation rules: schedules, no reply for N minutes, contact dates'),
    ('ventros-run-automations', '* * * * *', 'SELECT ventros.run_automations(1000)',
     'the automation executor''s fallback when its background worker is not running');

-- ---- broadcast_accounting
-- Issue 14: broadcast accounting tells the truth (sql/77_broadcasts.sql).  An
-- execution stays sending until its message's outcome: a trigger on messages
-- makes it sent or failed (a sent one may fail later) and keeps the counts;
-- a broadcast completes when nothing is pending or sending.  Executions a
-- 0.1.0 database counted as sent stay sent unless their message fails.

CREATE INDEX broadcast_executions_by_message ON ventros.broadcast_executions (tenant_id, message_id)
    WHERE message_id IS NOT NULL;
INSERT INTO ventros.aggregate_transitions (aggregate, from_state, to_state, event_type)
VALUES ('broadcast_execution', 'sent', 'failed', NULL);

CREATE FUNCTION ventros.finish_broadcast(b ventros.broadcasts) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE ventros.broadcasts x SET status = 'completed', completed_at = now(), version = x.version
    WHERE x.tenant_id = b.tenant_id AND x.id = b.id AND x.status = 'running'
      AND NOT EXISTS (SELECT 1 FROM ventros.broadcast_executions e
                      WHERE e.tenant_id = b.tenant_id AND e.broadcast_id = b.id AND e.status IN ('pending', 'sending'))
$$;
COMMENT ON FUNCTION ventros.finish_broadcast(ventros.broadcasts) IS
    'Completes a running broadcast once no execution is pending or sending (broadcast.completed); call it holding the broadcast''s row lock';


CREATE FUNCTION ventros.broadcast_message_outcome() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    outcome text := CASE WHEN NEW.status = 'failed' THEN 'failed' ELSE 'sent' END;
    e ventros.broadcast_executions;
    b ventros.broadcasts;
BEGIN
    SELECT * INTO e FROM ventros.broadcast_executions x WHERE x.tenant_id = NEW.tenant_id AND x.message_id = NEW.id;
    IF NOT FOUND OR e.status = outcome OR e.status NOT IN ('sending', 'sent') THEN
        RETURN NULL;    -- not a broadcast's send, or its outcome is known
    END IF;
    -- The broadcast's row lock first, as send_broadcast_batch takes it.
    SELECT * INTO b FROM ventros.broadcasts x WHERE x.tenant_id = e.tenant_id AND x.id = e.broadcast_id FOR UPDATE;
    UPDATE ventros.broadcast_executions x
    SET status = outcome,
        sent_at = CASE WHEN outcome = 'sent' THEN coalesce(NEW.sent_at, now()) ELSE x.sent_at END,
        error = CASE WHEN outcome = 'failed' THEN left(coalesce(NEW.error, 'the provider did not send the message'), 1000) END,
        version = x.version
    WHERE x.tenant_id = e.tenant_id AND x.id = e.id;
    UPDATE ventros.broadcasts x
    SET sent_count = x.sent_count + CASE WHEN outcome = 'sent' THEN 1 WHEN e.status = 'sent' THEN -1 ELSE 0 END,
        failed_count = x.failed_count + (outcome = 'failed')::integer, version = x.version
    WHERE x.tenant_id = b.tenant_id AND x.id = b.id;
    PERFORM ventros.finish_broadcast(b);
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.broadcast_message_outcome() IS
    'Trigger on broadcast messages: sent (or further) makes the execution sent, failed makes it failed with the message''s error (a sent one too); keeps the broadcast''s counts and completes it when nothing is pending or sending';
-- Named to fire after messages_inbox_rematch (triggers fire in name order):
-- that one may wait for an inbox processor, which may need this broadcast's
-- row for another of its messages; holding it while waiting would deadlock.
CREATE TRIGGER messages_settle_broadcast AFTER UPDATE OF status ON ventros.messages
    FOR EACH ROW WHEN (NEW.from_me AND NEW.source = 'broadcast' AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION ventros.broadcast_message_outcome();

CREATE OR REPLACE FUNCTION ventros.broadcast_stats(broadcast_id uuid) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object('broadcast_id', b.id, 'status', b.status, 'total_contacts', b.total_contacts,
                              'sent', b.sent_count, 'failed', b.failed_count, 'pending', b.pending_count,
                              'sending', (SELECT count(*) FROM ventros.broadcast_executions e
                                          WHERE e.tenant_id = b.tenant_id AND e.broadcast_id = b.id AND e.status = 'sending'),
                              'skipped', (SELECT count(*) FROM ventros.broadcast_executions e
                                          WHERE e.tenant_id = b.tenant_id AND e.broadcast_id = b.id AND e.status = 'skipped'))
    FROM ventros.get_broadcast(broadcast_id) b
$$;
COMMENT ON FUNCTION ventros.broadcast_stats(uuid) IS
    'Counts of a broadcast''s sends: sent (accepted by the provider), failed (refused, or reported failed by the provider), sending (waiting for the provider), pending (not sent yet), skipped';

GRANT EXECUTE ON FUNCTION ventros.finish_broadcast(ventros.broadcasts) TO ventros_agent;

-- ---- inbox_rematch_race
-- Issue 14 (found by the demo round trip): a receipt a processor found
-- unmatched while the send's answer recorded the provider id waited for its
-- 30 s retry.  The processor and the rematch trigger now take the id's lock
-- before they look (sql/88_inbox_processing.sql).

-- A receipt waits (unmatched) for the provider id of our send, which the
-- send's answer records (mark_message_sent) in the dispatcher's transaction
-- while a processor may be deciding, unable to see it, that the receipt is
-- unmatched.  Both sides take this lock before they look at the other's
-- side (inbox_run, inbox_rematch): whichever comes second sees what the first
-- committed, so no receipt waits for its backoff while its message has the id
-- (test/isolation/specs/inbox_receipt_before_id.spec).
CREATE FUNCTION ventros.lock_inbox_ref(tenant text, channel_id uuid, ref_id text) RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.lock_tenant_key('inbox_ref:' || channel_id || ':' || ref_id, tenant) $$;
COMMENT ON FUNCTION ventros.lock_inbox_ref(text, uuid, text) IS
    'Takes the lock of a provider message id on a channel (ventros.lock_tenant_key) that a receipt found unmatched and the send recording that id share';

CREATE OR REPLACE FUNCTION ventros.inbox_run(r ventros.inbox, now timestamptz) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o ventros.inbox_outcome;
    ch ventros.channels;
    state text;
    message text;
    tries integer := r.attempts + 1;
    id_arrived boolean := false;
BEGIN
    BEGIN
        SELECT * INTO ch FROM ventros.channels c WHERE c.tenant_id = r.tenant_id AND c.id = r.channel_id;
        o := ventros.inbox_process(r, ch);
        IF o.status = 'unmatched' AND r.ref_id IS NOT NULL THEN
            -- the send recording this id now may have committed while we looked
            PERFORM ventros.lock_inbox_ref(r.tenant_id, r.channel_id, r.ref_id);
            id_arrived := EXISTS (SELECT 1 FROM ventros.messages m
                                  WHERE m.tenant_id = r.tenant_id AND m.channel_id = r.channel_id
                                    AND m.channel_message_id = r.ref_id AND m.deleted_at IS NULL);
        END IF;
        UPDATE ventros.inbox i
        SET status = o.status, attempts = tries, message_id = coalesce(o.message_id, i.message_id),
            contact_id = coalesce(o.contact_id, i.contact_id), result = o.result, last_error = NULL,
            processed_at = CASE WHEN o.status <> 'unmatched' THEN now END,
            next_attempt_at = CASE WHEN o.status = 'unmatched' AND tries < ventros.inbox_max_attempts()
                                   THEN CASE WHEN id_arrived THEN now ELSE now + ventros.inbox_backoff(tries) END END
        WHERE i.tenant_id = r.tenant_id AND i.id = r.id;
        RETURN o.status;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
    END;
    IF state = '55P03' THEN
        -- a lock held past ventros.inbox_lock_timeout (a tenant's own open
        -- transaction): not the item's fault, so no attempt is counted
        UPDATE ventros.inbox i
        SET last_error = left(state || ': ' || message, 2000), next_attempt_at = now + interval '5 seconds'
        WHERE i.tenant_id = r.tenant_id AND i.id = r.id;
        RETURN 'deferred';
    END IF;
    UPDATE ventros.inbox i
    SET status = 'failed', attempts = tries, last_error = left(state || ': ' || message, 2000),
        next_attempt_at = CASE WHEN NOT ventros.inbox_error_is_permanent(state) AND tries < ventros.inbox_max_attempts()
                               THEN now + ventros.inbox_backoff(tries) END
    WHERE i.tenant_id = r.tenant_id AND i.id = r.id;
    RETURN 'failed';
END
$$;

-- Receipts that arrived before the send recorded the provider id become due
-- as soon as a message gets that id (mark_message_sent, an echo binding it).
-- The id's lock first (lock_inbox_ref): a processor deciding right now that
-- a receipt for it is unmatched has committed when we look.
CREATE OR REPLACE FUNCTION ventros.inbox_rematch() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.lock_inbox_ref(NEW.tenant_id, NEW.channel_id, NEW.channel_message_id);
    UPDATE ventros.inbox i SET next_attempt_at = now()
    WHERE i.tenant_id = NEW.tenant_id AND i.channel_id = NEW.channel_id AND i.ref_id = NEW.channel_message_id
      AND i.status = 'unmatched';
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.inbox_rematch() IS
    'Trigger: a message got a provider id; receipts for it that were unmatched are due now (after the id''s lock, lock_inbox_ref)';
-- ---- direct_writes
-- Issue 14, "No write that skips a rule": what a tenant role's direct INSERT,
-- UPDATE or DELETE of an aggregate is, declared per aggregate
-- (ventros.aggregate_writes, register_writes) and enforced by the engine's
-- first trigger, _ventros_direct_writes (src/direct_writes.c); declared
-- parent guards (campaign and sequence steps change only in draft); the
-- contact's normalisation on every write (sql/01_catalog.sql,
-- sql/04_register.sql, sql/20_contacts.sql and each aggregate's file).

-- What a direct write of an aggregate's table by a tenant role is, per
-- operation (ventros.register_writes; src/direct_writes.c): the same as its
-- first command (direct), or refused with 42501 and a hint naming the
-- commands.  columns: the fields a direct write may set (INSERT: the others
-- stay NULL) or change (UPDATE), those of that command.  An operation
-- without a row is refused.
CREATE TABLE ventros.aggregate_writes (
    aggregate text    NOT NULL REFERENCES ventros.aggregates ON DELETE CASCADE,
    operation text    NOT NULL CHECK (operation IN ('INSERT', 'UPDATE', 'DELETE')),
    direct    boolean NOT NULL,
    commands  text[]  NOT NULL,
    columns   name[],
    PRIMARY KEY (aggregate, operation),
    CONSTRAINT aggregate_writes_direct_command CHECK (NOT direct OR cardinality(commands) >= 1),
    CONSTRAINT aggregate_writes_columns_direct CHECK (columns IS NULL OR (direct AND operation <> 'DELETE'))
);
COMMENT ON TABLE ventros.aggregate_writes IS
    'Per aggregate and operation, what a direct write by a tenant role is: the same as its first command (direct), or refused naming the commands';

-- Rules of a child aggregate that belong to its parent's state ("steps change
-- only while the campaign is a draft"), checked on every write of the child,
-- whoever writes it (ventros.register_parent_guard).
CREATE TABLE ventros.aggregate_guards (
    aggregate        text   NOT NULL REFERENCES ventros.aggregates ON DELETE CASCADE,
    parent_column    name   NOT NULL,
    parent_aggregate text   NOT NULL REFERENCES ventros.aggregates ON DELETE CASCADE,
    states           text[] NOT NULL CHECK (cardinality(states) > 0),
    rule             text   NOT NULL,
    PRIMARY KEY (aggregate, parent_column)
);
COMMENT ON TABLE ventros.aggregate_guards IS
    'A child aggregate changes only while the parent its column names is in one of states (VN002 otherwise, with rule)';

CREATE FUNCTION ventros.engine_direct_writes() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'ventros_engine_direct_writes';
COMMENT ON FUNCTION ventros.engine_direct_writes() IS
    'Aggregate engine, BEFORE ROW, first of all: a tenant role''s direct write gets its declared outcome (ventros.aggregate_writes)';
CREATE TRIGGER ventros_catalog_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON ventros.aggregate_writes FOR EACH STATEMENT EXECUTE FUNCTION ventros.catalog_changed();
CREATE TRIGGER ventros_catalog_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON ventros.aggregate_guards FOR EACH STATEMENT EXECUTE FUNCTION ventros.catalog_changed();
DO $catalog$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['aggregate_writes', 'aggregate_guards'] LOOP
        EXECUTE pg_catalog.format('ALTER TABLE ventros.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE pg_catalog.format('ALTER TABLE ventros.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE pg_catalog.format('CREATE POLICY ventros_catalog_read ON ventros.%I FOR SELECT USING (true)', t);
        EXECUTE pg_catalog.format('GRANT SELECT ON ventros.%I TO ventros_viewer, ventros_anon', t);
    END LOOP;
END
$catalog$;

CREATE OR REPLACE FUNCTION ventros.register_aggregate(
    aggregate        text,
    table_name       regclass,
    context          text,
    state_column     name    DEFAULT NULL,
    transitions      jsonb   DEFAULT '[]',
    redacted_columns name[]  DEFAULT '{}',
    privileges       jsonb   DEFAULT '{"ventros_viewer": ["SELECT"], "ventros_agent": ["INSERT", "UPDATE"], "ventros_admin": ["DELETE"]}',
    description      text    DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    required   CONSTANT text[][] := ARRAY[['id', 'uuid'], ['tenant_id', 'text'], ['version', 'integer'],
                                          ['created_at', 'timestamp with time zone'],
                                          ['updated_at', 'timestamp with time zone'],
                                          ['deleted_at', 'timestamp with time zone']];
    col        text[];
    found_type text;
    t          jsonb;
    event_name text;
    role_name  text;
    privilege  text;
    tenant_expr CONSTANT text := 'tenant_id = (SELECT ventros.current_tenant())';
BEGIN
    FOREACH col SLICE 1 IN ARRAY required LOOP
        SELECT format_type(a.atttypid, a.atttypmod) INTO found_type
        FROM pg_attribute a
        WHERE a.attrelid = table_name AND a.attname = col[1] AND NOT a.attisdropped;
        IF found_type IS DISTINCT FROM col[2] THEN
            RAISE EXCEPTION 'aggregate table % needs column % %', table_name, col[1], col[2]
                USING ERRCODE = '22023', DETAIL = coalesce('It has type ' || found_type || '.', 'It is missing.');
        END IF;
    END LOOP;
    IF (SELECT a.attname FROM pg_index i JOIN pg_attribute a
          ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
        WHERE i.indrelid = table_name AND i.indisprimary) IS DISTINCT FROM 'tenant_id' THEN
        RAISE EXCEPTION 'primary key of % must lead with tenant_id', table_name
            USING ERRCODE = '22023', HINT = 'Declare PRIMARY KEY (tenant_id, id).';
    END IF;
    IF state_column IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM pg_attribute WHERE attrelid = table_name AND attname = state_column AND NOT attisdropped) THEN
        RAISE EXCEPTION 'aggregate table % has no state column %', table_name, state_column USING ERRCODE = '22023';
    END IF;
    IF jsonb_typeof(transitions) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'transitions of % must be a JSON array', aggregate USING ERRCODE = '22023';
    END IF;

    INSERT INTO ventros.aggregates AS a (aggregate, table_name, context, state_column, redacted_columns, description)
    VALUES (aggregate, table_name, context, state_column, redacted_columns, description)
    ON CONFLICT ON CONSTRAINT aggregates_pkey DO UPDATE
        SET table_name = EXCLUDED.table_name, context = EXCLUDED.context,
            state_column = EXCLUDED.state_column, redacted_columns = EXCLUDED.redacted_columns,
            description = coalesce(EXCLUDED.description, a.description);

    FOREACH event_name IN ARRAY ARRAY['created', 'updated', 'deleted'] LOOP
        -- <aggregate>.created only when some creation has no initial-state
        -- event of its own (see engine.c: it would never be written).
        CONTINUE WHEN event_name = 'created'
            AND jsonb_path_exists(transitions, '$[*] ? (!exists(@.from) || @.from == null)')
            AND NOT jsonb_path_exists(transitions, '$[*] ? ((!exists(@.from) || @.from == null) && (!exists(@.event) || @.event == null))');
        PERFORM ventros.register_event_type(aggregate || '.' || event_name,
                                            format('A %s was %s.', aggregate, event_name));
    END LOOP;

    DELETE FROM ventros.aggregate_transitions tr WHERE tr.aggregate = register_aggregate.aggregate;
    FOR t IN SELECT * FROM jsonb_array_elements(transitions) LOOP
        IF t->>'to' IS NULL THEN
            RAISE EXCEPTION 'transition % of % has no "to" state', t, aggregate USING ERRCODE = '22023';
        END IF;
        IF t->>'event' IS NOT NULL THEN
            PERFORM ventros.register_event_type(t->>'event', t->>'description');
        END IF;
        INSERT INTO ventros.aggregate_transitions (aggregate, from_state, to_state, event_type)
        VALUES (aggregate, t->>'from', t->>'to', t->>'event');
    END LOOP;

    EXECUTE format('DROP TRIGGER IF EXISTS ventros_engine_before ON %s', table_name);
    EXECUTE format('DROP TRIGGER IF EXISTS ventros_engine_after ON %s', table_name);
    EXECUTE format('DROP TRIGGER IF EXISTS ventros_engine_truncate ON %s', table_name);
    EXECUTE format('DROP TRIGGER IF EXISTS _ventros_direct_writes ON %s', table_name);
    -- named to fire before every other trigger of the table (name order)
    EXECUTE format('CREATE TRIGGER _ventros_direct_writes BEFORE INSERT OR UPDATE OR DELETE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION ventros.engine_direct_writes()', table_name);
    EXECUTE format('CREATE TRIGGER ventros_engine_before BEFORE INSERT OR UPDATE OR DELETE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION ventros.engine_before()', table_name);
    EXECUTE format('CREATE TRIGGER ventros_engine_after AFTER INSERT OR UPDATE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION ventros.engine_after()', table_name);
    EXECUTE format('CREATE TRIGGER ventros_engine_truncate BEFORE TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION ventros.engine_refuse_truncate()', table_name);

    -- Tenancy: forced row-level security, owner included.  Soft-deleted rows
    -- are hidden unless ventros.include_deleted is on.
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', table_name);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', table_name);
    EXECUTE format('DROP POLICY IF EXISTS ventros_tenant_select ON %s', table_name);
    EXECUTE format('DROP POLICY IF EXISTS ventros_tenant_insert ON %s', table_name);
    EXECUTE format('DROP POLICY IF EXISTS ventros_tenant_update ON %s', table_name);
    EXECUTE format('DROP POLICY IF EXISTS ventros_tenant_delete ON %s', table_name);
    EXECUTE format('CREATE POLICY ventros_tenant_select ON %s FOR SELECT USING (%s AND '
                   '(deleted_at IS NULL OR (SELECT ventros.include_deleted())))', table_name, tenant_expr);
    EXECUTE format('CREATE POLICY ventros_tenant_insert ON %s FOR INSERT WITH CHECK (%s)', table_name, tenant_expr);
    EXECUTE format('CREATE POLICY ventros_tenant_update ON %s FOR UPDATE USING (%s) WITH CHECK (%s)',
                   table_name, tenant_expr, tenant_expr);
    EXECUTE format('CREATE POLICY ventros_tenant_delete ON %s FOR DELETE USING (%s)', table_name, tenant_expr);

    EXECUTE format('REVOKE ALL ON %s FROM PUBLIC', table_name);
    FOR role_name IN SELECT jsonb_object_keys(privileges) LOOP
        IF role_name NOT IN ('ventros_admin', 'ventros_agent', 'ventros_viewer', 'ventros_anon') THEN
            RAISE EXCEPTION 'unknown tenant role "%" in privileges of %', role_name, aggregate USING ERRCODE = '22023';
        END IF;
        FOR privilege IN SELECT jsonb_array_elements_text(privileges->role_name) LOOP
            IF privilege NOT IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE') THEN
                RAISE EXCEPTION 'unknown privilege "%" in privileges of %', privilege, aggregate USING ERRCODE = '22023';
            END IF;
            EXECUTE format('GRANT %s ON %s TO %I', privilege, table_name, role_name);
        END LOOP;
    END LOOP;
END
$$;
COMMENT ON FUNCTION ventros.register_aggregate(text, regclass, text, name, jsonb, name[], jsonb, text) IS
    'Puts a table under the aggregate engine: catalog entry, events, triggers, forced RLS and grants';

-- the aggregates registered by 0.1.0 get the new first trigger
DO $direct$
DECLARE
    t regclass;
BEGIN
    FOR t IN SELECT a.table_name FROM ventros.aggregates a ORDER BY a.aggregate LOOP
        EXECUTE pg_catalog.format('CREATE TRIGGER _ventros_direct_writes BEFORE INSERT OR UPDATE OR DELETE ON %s '
                                  'FOR EACH ROW EXECUTE FUNCTION ventros.engine_direct_writes()', t);
    END LOOP;
END
$direct$;

-- register_writes: what a direct write of an aggregate's table by a tenant
-- role is (SQL, or the api views over HTTP), declared next to the aggregate.
-- inserts, updates and deletes name the commands that do each operation
-- (functions of schema ventros, or api.<name>, which may be defined later in
-- the install script: test/pgtap/620_direct_writes.sql checks they exist;
-- '{}': only the system does it).  direct lists the operations whose direct write is the same as the
-- first command named: every rule and effect of that command lives in the
-- data, so the write is allowed.  insert_columns and update_columns are that
-- command's fields: a direct INSERT may set only those (the others stay
-- NULL), a direct UPDATE change only those.  Every other operation is refused
-- with 42501 and a hint naming its commands (src/direct_writes.c;
-- docs/sql.md, "Direct writes").
CREATE FUNCTION ventros.register_writes(
    aggregate      text,
    inserts        text[],
    updates        text[],
    deletes        text[],
    direct         text[] DEFAULT '{}',
    insert_columns name[] DEFAULT NULL,
    update_columns name[] DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target    regclass;
    operation text;
    commands  text[];
    columns   name[];
    missing   text;
BEGIN
    SELECT a.table_name INTO target FROM ventros.aggregates a WHERE a.aggregate = register_writes.aggregate;
    IF target IS NULL THEN
        RAISE EXCEPTION 'aggregate "%" is not registered', aggregate USING ERRCODE = '22023';
    END IF;
    direct := coalesce(direct, '{}');
    SELECT d INTO missing FROM unnest(direct) d WHERE d NOT IN ('INSERT', 'UPDATE', 'DELETE') LIMIT 1;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'unknown operation "%" in direct writes of %', missing, aggregate
            USING ERRCODE = '22023', HINT = 'Use INSERT, UPDATE or DELETE.';
    END IF;
    SELECT c INTO missing FROM unnest(coalesce(insert_columns, '{}') || coalesce(update_columns, '{}')) c
    WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = target AND a.attname = c AND a.attnum > 0 AND NOT a.attisdropped)
    LIMIT 1;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'aggregate table % has no column %', target, missing USING ERRCODE = '22023';
    END IF;
    -- a direct INSERT leaves the columns it may not set NULL: they must allow it
    SELECT a.attname INTO missing FROM pg_attribute a
    WHERE 'INSERT' = ANY (direct) AND insert_columns IS NOT NULL
      AND a.attrelid = target AND a.attnum > 0 AND NOT a.attisdropped
      AND a.attname NOT IN ('id', 'tenant_id', 'version', 'created_at', 'updated_at', 'deleted_at')
      AND NOT a.attname = ANY (insert_columns) AND (a.attnotnull OR a.atthasdef)
    LIMIT 1;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'column % of % is left out of its direct inserts but has a default or is NOT NULL', missing, target
            USING ERRCODE = '22023', HINT = 'List it in insert_columns.';
    END IF;
    DELETE FROM ventros.aggregate_writes w WHERE w.aggregate = register_writes.aggregate;
    FOREACH operation IN ARRAY ARRAY['INSERT', 'UPDATE', 'DELETE'] LOOP
        commands := coalesce(CASE operation WHEN 'INSERT' THEN inserts WHEN 'UPDATE' THEN updates ELSE deletes END, '{}');
        IF operation = ANY (direct) AND cardinality(commands) = 0 THEN
            RAISE EXCEPTION 'a direct % of % must name the command it is the same as', operation, aggregate
                USING ERRCODE = '22023';
        END IF;
        columns := CASE WHEN operation = ANY (direct) THEN
                       CASE operation WHEN 'INSERT' THEN insert_columns WHEN 'UPDATE' THEN update_columns END END;
        INSERT INTO ventros.aggregate_writes (aggregate, operation, direct, commands, columns)
        VALUES (aggregate, operation, operation = ANY (direct), commands, columns);
    END LOOP;
END
$$;
COMMENT ON FUNCTION ventros.register_writes(text, text[], text[], text[], text[], name[], name[]) IS
    'Declares what direct INSERT, UPDATE and DELETE of an aggregate''s table by tenant roles are: the same as its first command, or refused naming the commands';
GRANT EXECUTE ON FUNCTION ventros.register_writes(text, text[], text[], text[], text[], name[], name[]) TO ventros_platform_admin;

-- guard_parent_state: the trigger of ventros.aggregate_guards.  The row's
-- parent (old and new, when an update moves it) is read FOR SHARE, so its
-- state cannot change until the writer commits, and must be in one of the
-- declared states.
CREATE FUNCTION ventros.guard_parent_state() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g       record;
    rows    jsonb[];
    r       jsonb;
    parent  uuid;
    state   text;
BEGIN
    rows := CASE TG_OP WHEN 'INSERT' THEN ARRAY[to_jsonb(NEW)] WHEN 'DELETE' THEN ARRAY[to_jsonb(OLD)]
                       ELSE ARRAY[to_jsonb(NEW), to_jsonb(OLD)] END;
    FOR g IN SELECT gd.parent_column, gd.parent_aggregate, gd.states, gd.rule, p.table_name, p.state_column
             FROM ventros.aggregate_guards gd
             JOIN ventros.aggregates a ON a.aggregate = gd.aggregate
             JOIN ventros.aggregates p ON p.aggregate = gd.parent_aggregate
             WHERE a.table_name = TG_RELID
    LOOP
        FOREACH r IN ARRAY rows LOOP
            CONTINUE WHEN r IS DISTINCT FROM rows[1] AND (r->>g.parent_column) IS NOT DISTINCT FROM (rows[1]->>g.parent_column);
            parent := (r->>g.parent_column)::uuid;
            EXECUTE format('SELECT %I::text FROM %s WHERE tenant_id = $1 AND id = $2 FOR SHARE', g.state_column, g.table_name)
                INTO state USING r->>'tenant_id', parent;
            -- no parent in sight: the foreign key, or the row policy for a row of
            -- another tenant, refuses the write after this trigger
            IF state IS NOT NULL AND NOT state = ANY (g.states) THEN
                RAISE EXCEPTION '% % is %; %', g.parent_aggregate, parent, state, g.rule USING ERRCODE = 'VN002';
            END IF;
        END LOOP;
    END LOOP;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END
$$;
COMMENT ON FUNCTION ventros.guard_parent_state() IS
    'Trigger: refuses (VN002) a write of a child aggregate while its parent is not in a declared state (ventros.aggregate_guards)';

-- register_parent_guard: a child aggregate changes (insert, update, delete)
-- only while the parent its column references is in one of states; rule is
-- the reason the refusal gives.  Holds on every path: commands, direct
-- writes, HTTP and the system's workers.
CREATE FUNCTION ventros.register_parent_guard(aggregate text, parent_column name, parent_aggregate text,
                                              states text[], rule text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target regclass;
BEGIN
    SELECT a.table_name INTO target FROM ventros.aggregates a WHERE a.aggregate = register_parent_guard.aggregate;
    IF target IS NULL OR NOT EXISTS (SELECT 1 FROM ventros.aggregates p
                                     WHERE p.aggregate = parent_aggregate AND p.state_column IS NOT NULL) THEN
        RAISE EXCEPTION 'aggregates % and % must be registered, the parent with a state column', aggregate, parent_aggregate
            USING ERRCODE = '22023';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = target AND a.attname = parent_column AND NOT a.attisdropped) THEN
        RAISE EXCEPTION 'aggregate table % has no column %', target, parent_column USING ERRCODE = '22023';
    END IF;
    INSERT INTO ventros.aggregate_guards AS g (aggregate, parent_column, parent_aggregate, states, rule)
    VALUES (aggregate, parent_column, parent_aggregate, states, rule)
    ON CONFLICT ON CONSTRAINT aggregate_guards_pkey DO UPDATE
        SET parent_aggregate = EXCLUDED.parent_aggregate, states = EXCLUDED.states, rule = EXCLUDED.rule;
    EXECUTE format('DROP TRIGGER IF EXISTS ventros_parent_guard ON %s', target);
    EXECUTE format('CREATE TRIGGER ventros_parent_guard BEFORE INSERT OR UPDATE OR DELETE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION ventros.guard_parent_state()', target);
END
$$;
COMMENT ON FUNCTION ventros.register_parent_guard(text, name, text, text[], text) IS
    'Declares that a child aggregate changes only while its parent is in one of the given states, on every path';
GRANT EXECUTE ON FUNCTION ventros.register_parent_guard(text, name, text, text[], text) TO ventros_platform_admin;

-- normalize_contact: the contact's own rules on every write, whoever writes:
-- the name trimmed, the phone in E.164, the email lowercased (22P02 when they
-- are not one), tags distinct and sorted, sizes checked (54000), the language
-- 'en' unless given.  create_contact and update_contact store the same, so a
-- direct write is the same as them (register_writes below).  Fires before
-- the engine (trigger names sort), which then sees the stored values.
CREATE FUNCTION ventros.normalize_contact() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.name IS DISTINCT FROM OLD.name THEN
        NEW.name := ventros.check_length(btrim(NEW.name), 200, 'contact name');
    END IF;
    IF TG_OP = 'INSERT' OR NEW.phone IS DISTINCT FROM OLD.phone THEN
        NEW.phone := ventros.normalize_phone(NEW.phone);
    END IF;
    IF TG_OP = 'INSERT' OR NEW.email IS DISTINCT FROM OLD.email THEN
        NEW.email := ventros.normalize_email(NEW.email);
    END IF;
    IF TG_OP = 'INSERT' OR NEW.external_id IS DISTINCT FROM OLD.external_id THEN
        NEW.external_id := ventros.check_length(NEW.external_id, 200, 'contact external id');
    END IF;
    IF NEW.tags IS NOT NULL AND (TG_OP = 'INSERT' OR NEW.tags IS DISTINCT FROM OLD.tags) THEN
        NEW.tags := ARRAY(SELECT DISTINCT t FROM unnest(NEW.tags) t ORDER BY t);
    END IF;
    IF TG_OP = 'INSERT' THEN
        NEW.language := coalesce(NEW.language, 'en');
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION ventros.normalize_contact() IS
    'Trigger: trims the name, normalises phone (E.164) and email, makes tags distinct and sorted, on every write of a contact';
CREATE TRIGGER contacts_normalize BEFORE INSERT OR UPDATE ON ventros.contacts
    FOR EACH ROW EXECUTE FUNCTION ventros.normalize_contact();
ALTER TABLE ventros.contacts ALTER COLUMN project_id SET DEFAULT ventros.default_project();
-- the table's default now serves the api view too (sql/95_api.sql sets one only where the table has none)
ALTER VIEW api.contacts ALTER COLUMN project_id DROP DEFAULT;

SELECT ventros.register_parent_guard('campaign_step', 'campaign_id', 'campaign', '{draft}', 'steps change only in draft');
SELECT ventros.register_parent_guard('sequence_step', 'sequence_id', 'sequence', '{draft}', 'steps change only in draft');

SELECT ventros.register_writes('project', inserts => '{create_project}', updates => '{update_project}', deletes => '{delete_project}',
    direct => '{UPDATE,DELETE}',
    update_columns => '{name,description,configuration,active,session_timeout_minutes,agent_assignment}');
SELECT ventros.register_writes('user', inserts => '{create_user,api.register}', updates => '{}', deletes => '{}');
SELECT ventros.register_writes('user_api_key', inserts => '{api.create_api_key}', updates => '{}', deletes => '{}');
SELECT ventros.register_writes('contact', inserts => '{create_contact}', updates => '{update_contact,merge_contacts,erase_contact}', deletes => '{delete_contact,merge_contacts}',
    direct => '{INSERT,UPDATE,DELETE}',
    insert_columns => '{name,phone,email,project_id,external_id,source_channel,language,timezone,tags}',
    update_columns => '{name,email,phone,external_id,source_channel,language,timezone,tags,profile_picture_url,profile_picture_fetched_at,first_interaction_at,last_interaction_at}');
SELECT ventros.register_writes('channel', inserts => '{create_channel}', updates => '{update_channel,set_channel_status}', deletes => '{delete_channel}',
    direct => '{DELETE}');
SELECT ventros.register_writes('channel_type', inserts => '{create_channel_type}', updates => '{update_channel_type}', deletes => '{}',
    direct => '{UPDATE}',
    update_columns => '{description,configuration,active,provider}');
SELECT ventros.register_writes('agent', inserts => '{create_agent,create_virtual_agent}', updates => '{update_agent,set_agent_presence,set_agent_permission,end_virtual_period}', deletes => '{delete_agent}',
    direct => '{DELETE}');
SELECT ventros.register_writes('team', inserts => '{create_team}', updates => '{update_team}', deletes => '{delete_team}',
    direct => '{UPDATE,DELETE}',
    update_columns => '{name,description,assignment_strategy,active}');
SELECT ventros.register_writes('team_member', inserts => '{add_team_member}', updates => '{}', deletes => '{remove_team_member}');
SELECT ventros.register_writes('pipeline', inserts => '{create_pipeline}', updates => '{update_pipeline}', deletes => '{delete_pipeline}',
    direct => '{DELETE}');
SELECT ventros.register_writes('pipeline_status', inserts => '{add_pipeline_status}', updates => '{update_pipeline_status}', deletes => '{remove_pipeline_status}');
SELECT ventros.register_writes('pipeline_custom_field', inserts => '{set_pipeline_custom_field}', updates => '{set_pipeline_custom_field}', deletes => '{}');
SELECT ventros.register_writes('contact_pipeline_status', inserts => '{change_contact_pipeline_status}', updates => '{change_contact_pipeline_status,remove_contact_from_pipeline}', deletes => '{}');
SELECT ventros.register_writes('contact_custom_field', inserts => '{set_contact_custom_field}', updates => '{set_contact_custom_field}', deletes => '{remove_contact_custom_field}');
SELECT ventros.register_writes('contact_identity', inserts => '{add_contact_identity}', updates => '{merge_contacts}', deletes => '{remove_contact_identity}');
SELECT ventros.register_writes('contact_merge_suggestion', inserts => '{add_contact_identity}', updates => '{dismiss_merge_suggestion,merge_contacts}', deletes => '{}');
SELECT ventros.register_writes('contact_consent', inserts => '{set_contact_consent}', updates => '{set_contact_consent}', deletes => '{}');
SELECT ventros.register_writes('channel_label', inserts => '{upsert_channel_label}', updates => '{upsert_channel_label}', deletes => '{delete_channel_label}');
SELECT ventros.register_writes('session', inserts => '{start_or_continue_session}', updates => '{close_session,resolve_session,assign_session_agent,assign_session_to_team,escalate_session,summarize_session}', deletes => '{}');
SELECT ventros.register_writes('session_custom_field', inserts => '{set_session_custom_field}', updates => '{set_session_custom_field}', deletes => '{}');
SELECT ventros.register_writes('agent_session', inserts => '{join_session}', updates => '{leave_session,change_agent_session_role}', deletes => '{}');
SELECT ventros.register_writes('chat', inserts => '{create_chat}', updates => '{update_chat,set_chat_status,set_chat_label}', deletes => '{}');
SELECT ventros.register_writes('chat_participant', inserts => '{add_chat_participant}', updates => '{set_chat_participant_admin,remove_chat_participant}', deletes => '{}');
SELECT ventros.register_writes('message', inserts => '{send_message,receive_message,import_message}', updates => '{confirm_message_status,mark_message_sent}', deletes => '{delete_message}',
    direct => '{DELETE}');
SELECT ventros.register_writes('note', inserts => '{add_note}', updates => '{update_note,set_note_pinned}', deletes => '{delete_note}',
    direct => '{UPDATE,DELETE}',
    update_columns => '{content,priority,visible_to_client,pinned,tags,mentions,attachments,note_type}');
SELECT ventros.register_writes('canned_response', inserts => '{create_canned_response}', updates => '{update_canned_response}', deletes => '{delete_canned_response}',
    direct => '{UPDATE,DELETE}',
    update_columns => '{shortcut,title,content,tags,team_id}');
SELECT ventros.register_writes('billing_account', inserts => '{create_billing_account}', updates => '{update_billing_account,activate_billing_payment,suspend_billing_account,reactivate_billing_account,cancel_billing_account,link_stripe_customer}', deletes => '{}');
SELECT ventros.register_writes('subscription', inserts => '{create_subscription}', updates => '{set_subscription_status,update_subscription_period,change_subscription_price,schedule_subscription_cancellation,cancel_subscription,reactivate_subscription}', deletes => '{}');
SELECT ventros.register_writes('invoice', inserts => '{create_invoice}', updates => '{finalize_invoice,pay_invoice,record_invoice_payment_failure,mark_invoice_uncollectible,void_invoice,set_invoice_links}', deletes => '{}');
SELECT ventros.register_writes('usage_meter', inserts => '{create_usage_meter}', updates => '{increment_usage,report_usage,reset_usage_period}', deletes => '{}');
SELECT ventros.register_writes('saga', inserts => '{start_saga}', updates => '{complete_saga_step,complete_saga,fail_saga,request_saga_compensation,mark_saga_compensated}', deletes => '{}');
SELECT ventros.register_writes('credential', inserts => '{create_credential}', updates => '{update_credential,set_credential_value,set_credential_oauth,activate_credential,deactivate_credential}', deletes => '{}',
    direct => '{UPDATE}',
    update_columns => '{name,description,metadata,project_id,expires_at}');
SELECT ventros.register_writes('project_member', inserts => '{invite_project_member}', updates => '{change_project_member_role}', deletes => '{remove_project_member}');
SELECT ventros.register_writes('webhook_subscription', inserts => '{create_webhook_subscription}', updates => '{update_webhook_subscription,set_webhook_subscription_active,rotate_webhook_secret}', deletes => '{delete_webhook_subscription}',
    direct => '{DELETE}');
SELECT ventros.register_writes('contact_list', inserts => '{create_contact_list}', updates => '{update_contact_list}', deletes => '{delete_contact_list}',
    direct => '{UPDATE,DELETE}',
    update_columns => '{name,description,logical_operator}');
SELECT ventros.register_writes('contact_list_filter', inserts => '{add_contact_list_filter}', updates => '{}', deletes => '{remove_contact_list_filter,clear_contact_list_filters}');
SELECT ventros.register_writes('contact_list_member', inserts => '{add_contact_to_list}', updates => '{}', deletes => '{remove_contact_from_list}');
SELECT ventros.register_writes('contact_event', inserts => '{create_contact_event}', updates => '{update_contact_event,mark_contact_event_delivered,mark_contact_event_read}', deletes => '{}',
    direct => '{UPDATE}',
    update_columns => '{session_id,visible_to_client,visible_to_agent,expires_at,priority,metadata}');
SELECT ventros.register_writes('event_log', inserts => '{append_event_log}', updates => '{}', deletes => '{}');
SELECT ventros.register_writes('automation', inserts => '{create_automation}', updates => '{update_automation,set_automation_enabled,add_automation_rule}', deletes => '{delete_automation}',
    direct => '{DELETE}');
SELECT ventros.register_writes('automation_trigger', inserts => '{register_automation_trigger}', updates => '{}', deletes => '{unregister_automation_trigger}');
SELECT ventros.register_writes('campaign', inserts => '{create_campaign}', updates => '{update_campaign,set_campaign_status}', deletes => '{delete_campaign}',
    direct => '{UPDATE,DELETE}',
    update_columns => '{name,description,goal_type,goal_value,start_date,end_date}');
SELECT ventros.register_writes('campaign_step', inserts => '{add_campaign_step}', updates => '{update_campaign_step}', deletes => '{remove_campaign_step}');
SELECT ventros.register_writes('campaign_enrollment', inserts => '{enroll_in_campaign}', updates => '{set_campaign_enrollment_status,advance_campaign_enrollment}', deletes => '{}');
SELECT ventros.register_writes('sequence', inserts => '{create_sequence}', updates => '{update_sequence,set_sequence_status}', deletes => '{delete_sequence}',
    direct => '{UPDATE,DELETE}',
    update_columns => '{name,description,trigger_type,trigger_data,exit_on_reply}');
SELECT ventros.register_writes('sequence_step', inserts => '{add_sequence_step}', updates => '{update_sequence_step}', deletes => '{remove_sequence_step}');
SELECT ventros.register_writes('sequence_enrollment', inserts => '{enroll_in_sequence}', updates => '{set_sequence_enrollment_status,advance_sequence_enrollment}', deletes => '{}');
SELECT ventros.register_writes('broadcast', inserts => '{create_broadcast}', updates => '{update_broadcast,schedule_broadcast,execute_broadcast,cancel_broadcast}', deletes => '{delete_broadcast}',
    direct => '{DELETE}');
SELECT ventros.register_writes('broadcast_execution', inserts => '{execute_broadcast}', updates => '{cancel_broadcast}', deletes => '{}');
SELECT ventros.register_writes('tracking', inserts => '{create_tracking}', updates => '{update_tracking}', deletes => '{}',
    direct => '{UPDATE}',
    update_columns => '{session_id,campaign,ad_id,ad_url,click_id,utm_source,utm_medium,utm_campaign,utm_term,utm_content,metadata}');
SELECT ventros.register_writes('tracking_enrichment', inserts => '{enrich_tracking}', updates => '{enrich_tracking}', deletes => '{}');
SELECT ventros.register_writes('message_group', inserts => '{add_message_to_group}', updates => '{start_message_group_processing,complete_message_group,expire_message_group}', deletes => '{}');
SELECT ventros.register_writes('agent_ai_interaction', inserts => '{complete_message_group}', updates => '{}', deletes => '{}');
SELECT ventros.register_writes('message_enrichment', inserts => '{create_message_enrichment}', updates => '{start_message_enrichment,complete_message_enrichment,fail_message_enrichment}', deletes => '{}');
SELECT ventros.register_writes('ai_process', inserts => '{create_ai_process}', updates => '{finish_ai_process}', deletes => '{}');
SELECT ventros.register_writes('whatsapp_template', inserts => '{upsert_whatsapp_template,sync_whatsapp_templates}', updates => '{upsert_whatsapp_template}', deletes => '{delete_whatsapp_template}',
    direct => '{DELETE}');

-- ---- journeys
-- Issue 15: sequences, campaigns and broadcasts run on one step engine
-- (sql/74_enrollments.sql): sequences enroll by their own automation rule,
-- exit on a reply in the reply's transaction, on an exit tag, status or an
-- opt-out; step conditions and send windows; campaign steps (broadcast,
-- sequence, condition, wait) run over ticks; reach and conversions counted.

ALTER TABLE ventros.sequences ADD COLUMN exit_on jsonb NOT NULL DEFAULT '{}';
ALTER TABLE ventros.sequences ADD COLUMN send_window jsonb;
ALTER TABLE ventros.sequences ADD CONSTRAINT sequences_exit_on_object CHECK (jsonb_typeof(exit_on) = 'object');
ALTER TABLE ventros.sequences ADD CONSTRAINT sequences_send_window
    CHECK (send_window IS NULL OR ventros.automation_condition_valid(jsonb_build_object('time_window', send_window)));
ALTER TABLE ventros.sequences DROP CONSTRAINT sequences_trigger_known;
ALTER TABLE ventros.sequences ADD CONSTRAINT sequences_trigger_known
    CHECK (trigger_type IN ('manual', 'tag_added', 'list_joined', 'form_submit', 'pipeline_entered', 'contact_created', 'custom'));
ALTER TABLE ventros.campaigns ADD COLUMN conversion_status_id uuid;
ALTER TABLE ventros.campaign_enrollments ALTER COLUMN current_step_order SET DEFAULT -1;
ALTER TABLE ventros.campaign_enrollments ADD COLUMN reached_at timestamptz;
ALTER TABLE ventros.campaign_enrollments ADD COLUMN converted_at timestamptz;
-- the HTTP API's views show the new columns
SELECT ventros.expose_api();
CREATE INDEX campaign_enrollments_by_contact ON ventros.campaign_enrollments (tenant_id, contact_id) WHERE converted_at IS NULL;
SELECT ventros.register_event_type('campaign.contact_converted',
                                   'A contact of a campaign converted (a reply, a tracking conversion, its conversion status).');
SELECT ventros.register_quiet_columns('campaign_enrollment', '{reached_at,converted_at}');
DROP FUNCTION ventros.sequence_enrollment_changed(ventros.sequence_enrollments, text);

-- enroll_contact: a contact's enrollment in a parent, due at a time; counts
-- it with the parent's counters (an SQL assignment list, or NULL) and emits
-- <parent>.contact_enrolled.  One current enrollment per contact (23505).
CREATE OR REPLACE FUNCTION ventros.enroll_contact(row_type anyelement, parent text, parent_id uuid, parent_version integer,
                                       contact_id uuid, due timestamptz, counters text)
RETURNS anyelement
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ALIAS FOR $0;
BEGIN
    PERFORM ventros.get_contact(contact_id);
    EXECUTE format('INSERT INTO %s (%I, contact_id, next_scheduled_at) VALUES ($1, $2, $3) RETURNING *',
                   pg_typeof(row_type)::text::regclass, parent || '_id')
        INTO result USING parent_id, contact_id, due;
    IF counters IS NOT NULL THEN
        EXECUTE format('UPDATE ventros.%I x SET %s, version = x.version WHERE x.tenant_id = ventros.require_tenant() AND x.id = $1',
                       parent || 's', counters)
            USING parent_id;
    END IF;
    PERFORM ventros.emit(parent || '.contact_enrolled', parent, parent_id,
        jsonb_build_object('enrollment_id', (to_jsonb(result))->'id', 'contact_id', contact_id), parent_version);
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'contact % is enrolled in % % already', contact_id, parent, parent_id USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.enroll_contact(anyelement, text, uuid, integer, uuid, timestamptz, text) IS
    'Enrolls a contact in a campaign or sequence (once at a time, 23505), due at a time; keeps the parent''s counters; emits <parent>_enrollment.created and <parent>.contact_enrolled';

-- set_enrollment_due: an active enrollment done with a step, due again at a time.
CREATE OR REPLACE FUNCTION ventros.set_enrollment_due(row_type anyelement, parent text, enrollment_id uuid, step_order integer,
                                            due timestamptz)
RETURNS anyelement
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ALIAS FOR $0;
BEGIN
    EXECUTE format('UPDATE %s x SET current_step_order = coalesce($2, x.current_step_order), next_scheduled_at = $3, '
                   'version = x.version WHERE x.tenant_id = ventros.require_tenant() AND x.id = $1 RETURNING *',
                   pg_typeof(row_type)::text::regclass)
        INTO result USING enrollment_id, step_order, due;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.set_enrollment_due(anyelement, text, uuid, integer, timestamptz) IS
    'Records the step an enrollment reached (NULL: unchanged) and when it is due again';

-- finish_enrollment: an active enrollment completed or exited (with a reason)
-- at an instant; emits the parent's enrollment event.
CREATE OR REPLACE FUNCTION ventros.finish_enrollment(row_type anyelement, parent text, enrollment_id uuid, status text,
                                          exit_reason text, at timestamptz)
RETURNS anyelement
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ALIAS FOR $0;
BEGIN
    PERFORM ventros.require_value(status, ARRAY['completed', 'exited'], 'enrollment end');
    EXECUTE format('UPDATE %s x SET status = $2, next_scheduled_at = NULL, '
                   'completed_at = CASE $2 WHEN ''completed'' THEN $4 END, exited_at = CASE $2 WHEN ''exited'' THEN $4 END, '
                   'exit_reason = CASE $2 WHEN ''exited'' THEN $3 END, version = x.version '
                   'WHERE x.tenant_id = ventros.require_tenant() AND x.id = $1 RETURNING *',
                   pg_typeof(row_type)::text::regclass)
        INTO result USING enrollment_id, status, left(exit_reason, 500), at;
    PERFORM ventros.emit_enrollment_event(parent, result);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.finish_enrollment(anyelement, text, uuid, text, text, timestamptz) IS
    'Completes or exits (with a reason) an enrollment at an instant; emits <enrollment>.updated and the parent''s enrollment_completed or _exited';

-- next_step: the first step of a parent after an order (NULL fields: none).
CREATE OR REPLACE FUNCTION ventros.next_step(row_type anyelement, parent text, parent_id uuid, after_order integer)
RETURNS anyelement
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ALIAS FOR $0;
BEGIN
    EXECUTE format('SELECT * FROM %s x WHERE x.tenant_id = ventros.require_tenant() AND %I = $1 AND x."order" > $2 '
                   'AND x.deleted_at IS NULL ORDER BY x."order" LIMIT 1',
                   pg_typeof(row_type)::text::regclass, parent || '_id')
        INTO result USING parent_id, after_order;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.next_step(anyelement, text, uuid, integer) IS
    'The first live step of a campaign or sequence after an order (all NULL when none)';

-- tick_enrollments: the due active enrollments of active parents, each
-- advanced by ventros.advance_<parent>_enrollment(id, now).  The contact is
-- locked first (FOR SHARE, the lock a send takes), then the enrollment, both
-- SKIP LOCKED: a contact or enrollment being written (a reply exiting it)
-- waits for the next tick, and a reply and a step never deadlock.
CREATE OR REPLACE FUNCTION ventros.tick_enrollments(parent text, now timestamptz, batch_size integer)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e record;
    n integer := 0;
    got uuid;
BEGIN
    FOR e IN EXECUTE format('SELECT x.id, x.contact_id FROM ventros.%I x '
                            'JOIN ventros.%I p ON p.tenant_id = x.tenant_id AND p.id = x.%I AND p.status = ''active'' '
                            'WHERE x.tenant_id = ventros.require_tenant() AND x.status = ''active'' AND x.next_scheduled_at <= $1 '
                            'ORDER BY x.next_scheduled_at LIMIT $2',
                            parent || '_enrollments', parent || 's', parent || '_id')
             USING now, batch_size
    LOOP
        got := NULL;
        SELECT c.id INTO got FROM ventros.contacts c
        WHERE c.tenant_id = ventros.require_tenant() AND c.id = e.contact_id FOR SHARE SKIP LOCKED;
        CONTINUE WHEN got IS NULL;
        got := NULL;
        EXECUTE format('SELECT x.id FROM ventros.%I x WHERE x.tenant_id = ventros.require_tenant() AND x.id = $1 '
                       'AND x.status = ''active'' AND x.next_scheduled_at <= $2 FOR UPDATE SKIP LOCKED', parent || '_enrollments')
            INTO got USING e.id, now;
        CONTINUE WHEN got IS NULL;
        EXECUTE format('SELECT ventros.%I($1, $2)', 'advance_' || parent || '_enrollment') USING e.id, now;
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.tick_enrollments(text, timestamptz, integer) IS
    'Advances the due active enrollments of active campaigns or sequences (contact then enrollment locked, SKIP LOCKED); returns how many';

-- journey_timezone: the contact's timezone when it is a known one, else the
-- tenant's automation timezone.
CREATE OR REPLACE FUNCTION ventros.journey_timezone(contact_id uuid) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tz text;
BEGIN
    SELECT c.timezone INTO tz FROM ventros.contacts c WHERE c.tenant_id = ventros.require_tenant() AND c.id = contact_id;
    IF tz IS NOT NULL THEN
        BEGIN
            PERFORM now() AT TIME ZONE tz;
            RETURN tz;
        EXCEPTION WHEN invalid_parameter_value THEN
            NULL;   -- not a timezone: the tenant's
        END;
    END IF;
    RETURN (ventros.current_automation_settings()).timezone;
END
$$;
COMMENT ON FUNCTION ventros.journey_timezone(uuid) IS
    'The timezone of a contact''s send window: its own when known, else the tenant''s automation timezone';

-- journey_window_open: at itself when inside a send window ({"from": "09:00",
-- "to": "18:00", "weekdays": [1..5]}, in tz; no window: always), else the
-- window's next opening.
CREATE OR REPLACE FUNCTION ventros.journey_window_open(send_window jsonb, tz text, at timestamptz) RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    opening timestamptz;
    day date := (at AT TIME ZONE tz)::date;
BEGIN
    IF send_window IS NULL OR ventros.automation_condition_holds(jsonb_build_object('time_window', send_window), '{}', tz, at) THEN
        RETURN at;
    END IF;
    FOR d IN 0..7 LOOP
        opening := ((day + d) + (send_window->>'from')::time) AT TIME ZONE tz;
        IF opening > at AND (NOT send_window ? 'weekdays'
                             OR (send_window->'weekdays') @> to_jsonb(extract(isodow FROM day + d)::integer)) THEN
            RETURN opening;
        END IF;
    END LOOP;
    RETURN NULL;    -- a window without any weekday never opens
END
$$;
COMMENT ON FUNCTION ventros.journey_window_open(jsonb, text, timestamptz) IS
    'An instant inside a send window (from included, to excluded, ISO weekdays, in a timezone): at itself, or the next opening';

-- journey_context: what a step condition sees of a contact, the context of
-- an automation rule for an event on the contact (ventros.automation_context).
CREATE OR REPLACE FUNCTION ventros.journey_context(contact_id uuid, at timestamptz) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN ventros.automation_context(jsonb_populate_record(NULL::ventros.outbox,
        jsonb_build_object('tenant_id', ventros.require_tenant(), 'seq', 0, 'event_id', contact_id,
                           'event_type', 'journey.step', 'aggregate_type', 'contact', 'aggregate_id', contact_id,
                           'payload', '{}'::jsonb, 'occurred_at', at)), at);
END
$$;
COMMENT ON FUNCTION ventros.journey_context(uuid, timestamptz) IS
    'The context a step condition is evaluated in: the contact, its custom fields and pipeline statuses (as for an automation rule)';

-- journey_conditions_hold: a step's conditions (a list or one condition, in
-- the language of automation rules, docs/automation.md) on a contact at an
-- instant, in the contact's timezone; none: true.
CREATE OR REPLACE FUNCTION ventros.journey_conditions_hold(conditions jsonb, contact_id uuid, at timestamptz) RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF conditions IS NULL OR conditions IN ('[]', '{}', 'null') THEN
        RETURN true;
    END IF;
    RETURN coalesce(ventros.automation_conditions_hold(CASE jsonb_typeof(conditions) WHEN 'array' THEN conditions
                                                                                     ELSE jsonb_build_array(conditions) END,
                                                       ventros.journey_context(contact_id, at),
                                                       ventros.journey_timezone(contact_id), at), false);
END
$$;
COMMENT ON FUNCTION ventros.journey_conditions_hold(jsonb, uuid, timestamptz) IS
    'Whether a step''s conditions (automation rule conditions) hold for a contact at an instant; none: true';

-- journey_exit_reason: why a contact leaves a journey before its next step:
-- opted out of the channel, one of the exit tags, one of the exit pipeline
-- statuses ({"tags": [...], "status_ids": [...]}); NULL: it stays.
CREATE OR REPLACE FUNCTION ventros.journey_exit_reason(contact_id uuid, channel_id uuid, exit_on jsonb) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN channel_id IS NOT NULL AND NOT ventros.may_message(contact_id, channel_id) THEN 'opted_out'
        WHEN jsonb_typeof(exit_on->'tags') = 'array' AND EXISTS (
            SELECT 1 FROM ventros.contacts c, jsonb_array_elements_text(exit_on->'tags') t
            WHERE c.tenant_id = ventros.require_tenant() AND c.id = contact_id AND t = ANY (c.tags)) THEN 'tag'
        WHEN jsonb_typeof(exit_on->'status_ids') = 'array' AND EXISTS (
            SELECT 1 FROM ventros.contact_pipeline_statuses p
            WHERE p.tenant_id = ventros.require_tenant() AND p.contact_id = journey_exit_reason.contact_id
              AND p.exited_at IS NULL AND p.deleted_at IS NULL AND exit_on->'status_ids' ? p.status_id::text) THEN 'status'
        END
$$;
COMMENT ON FUNCTION ventros.journey_exit_reason(uuid, uuid, jsonb) IS
    'Why a contact leaves a journey before a step: opted_out (of the channel), tag or status (exit_on.tags, exit_on.status_ids); NULL when it stays';

-- journey_send: a step's message to a contact, through send_message (the
-- template's content as text, or a provider template by name); an opt-out
-- raises VN010 as for any send.
CREATE OR REPLACE FUNCTION ventros.journey_send(channel_id uuid, contact_id uuid, template jsonb, source text, metadata jsonb)
RETURNS ventros.messages
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.send_message(channel_id, contact_id, text => template->>'content', source => source, metadata => metadata,
                                template_name => CASE WHEN template->>'content' IS NULL
                                                      THEN coalesce(template->>'template_name', template->>'template_id') END,
                                template_language => template->>'language',
                                template_components => template->'components')
$$;
COMMENT ON FUNCTION ventros.journey_send(uuid, uuid, jsonb, text, jsonb) IS
    'Sends a step''s message template (content, or template_name/template_id with language and components) to a contact through send_message';

-- send_broadcast_execution: one pending execution sent (the step of the
-- journey engine, ventros.journey_send, source broadcast): sending with its
-- message until the message's outcome (broadcast_message_outcome), or failed
-- at once with the error (opt-outs included); the caller counts.
CREATE OR REPLACE FUNCTION ventros.send_broadcast_execution(b ventros.broadcasts, e ventros.broadcast_executions, metadata jsonb)
RETURNS ventros.broadcast_executions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m ventros.messages;
    message text;
    result ventros.broadcast_executions;
BEGIN
    UPDATE ventros.broadcast_executions x SET status = 'sending', version = x.version WHERE x.tenant_id = e.tenant_id AND x.id = e.id;
    BEGIN
        m := ventros.journey_send(b.channel_id, e.contact_id, b.message_template, 'broadcast',
                                  jsonb_build_object('broadcast_id', b.id, 'template', b.message_template) || coalesce(metadata, '{}'));
        UPDATE ventros.broadcast_executions x SET message_id = m.id, version = x.version
        WHERE x.tenant_id = e.tenant_id AND x.id = e.id RETURNING * INTO result;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS message = MESSAGE_TEXT;
        UPDATE ventros.broadcast_executions x SET status = 'failed', error = left(message, 1000), version = x.version
        WHERE x.tenant_id = e.tenant_id AND x.id = e.id RETURNING * INTO result;
    END;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.send_broadcast_execution(ventros.broadcasts, ventros.broadcast_executions, jsonb) IS
    'Sends one pending broadcast execution through journey_send (source broadcast): sending with its message until the provider''s outcome, or failed with the error';

-- broadcast_to_contact: a campaign's broadcast step: the broadcast's message
-- to one contact, once per broadcast and contact (its execution), counted on
-- the broadcast (sent when the provider accepts it, as every execution);
-- an opted-out contact is skipped.  Returns the execution.
CREATE OR REPLACE FUNCTION ventros.broadcast_to_contact(broadcast_id uuid, contact_id uuid, metadata jsonb DEFAULT NULL)
RETURNS ventros.broadcast_executions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    b ventros.broadcasts := ventros.get_broadcast(broadcast_id, true);
    e ventros.broadcast_executions;
BEGIN
    IF b.status IN ('cancelled', 'failed') THEN
        RAISE EXCEPTION 'broadcast % is %', broadcast_id, b.status USING ERRCODE = 'VN002';
    END IF;
    INSERT INTO ventros.broadcast_executions (broadcast_id, contact_id, status)
    VALUES (b.id, contact_id, CASE WHEN ventros.may_message(contact_id, b.channel_id) THEN 'pending' ELSE 'skipped' END)
    ON CONFLICT (tenant_id, broadcast_id, contact_id) DO NOTHING
    RETURNING * INTO e;
    IF e.id IS NULL THEN
        SELECT * INTO e FROM ventros.broadcast_executions x
        WHERE x.tenant_id = b.tenant_id AND x.broadcast_id = b.id AND x.contact_id = broadcast_to_contact.contact_id;
        RETURN e;   -- sent (or tried) once already
    END IF;
    IF e.status = 'pending' THEN
        e := ventros.send_broadcast_execution(b, e, metadata);
    END IF;
    UPDATE ventros.broadcasts x
    SET total_contacts = x.total_contacts + 1, failed_count = x.failed_count + (e.status = 'failed')::integer,
        version = x.version
    WHERE x.tenant_id = b.tenant_id AND x.id = b.id;
    RETURN e;
END
$$;
COMMENT ON FUNCTION ventros.broadcast_to_contact(uuid, uuid, jsonb) IS
    'A campaign''s broadcast step: sends a broadcast''s template to one contact, once per broadcast and contact (opted out: skipped), counted on the broadcast; VN002 for a cancelled or failed broadcast';

-- send_broadcast_batch: up to limit pending sends of one running broadcast.
-- Each send queues its message (and its provider request); the execution
-- stays sending until the message's outcome (broadcast_message_outcome).
CREATE OR REPLACE FUNCTION ventros.send_broadcast_batch(broadcast_id uuid, batch integer DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b ventros.broadcasts := ventros.get_broadcast(broadcast_id, true);
    e ventros.broadcast_executions;
    n integer := 0;
    failed integer := 0;
BEGIN
    IF b.status <> 'running' THEN
        RAISE EXCEPTION 'broadcast % is %, not running', broadcast_id, b.status USING ERRCODE = 'VN002';
    END IF;
    FOR e IN SELECT * FROM ventros.broadcast_executions x
             WHERE x.tenant_id = b.tenant_id AND x.broadcast_id = b.id AND x.status = 'pending'
             ORDER BY x.created_at, x.id
             LIMIT coalesce(batch, nullif(b.rate_limit, 0), 1000)
             FOR UPDATE SKIP LOCKED
    LOOP
        IF (ventros.send_broadcast_execution(b, e, NULL)).status = 'failed' THEN
            failed := failed + 1;
        END IF;
        n := n + 1;
    END LOOP;
    UPDATE ventros.broadcasts x
    SET failed_count = x.failed_count + failed, pending_count = greatest(x.pending_count - n, 0), version = x.version
    WHERE x.tenant_id = b.tenant_id AND x.id = b.id;
    PERFORM ventros.finish_broadcast(b);
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.send_broadcast_batch(uuid, integer) IS
    'Sends up to batch (default: the rate limit) pending executions of a running broadcast through send_message (source broadcast): each stays sending until its message is sent or failed by the provider; a send refused at once (opt-out, no recipient) fails its execution; completes the broadcast when nothing is pending or sending (broadcast.completed)';

CREATE OR REPLACE FUNCTION ventros.update_campaign(campaign_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.campaigns
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.apply_changes(NULL::ventros.campaigns, 'campaign', campaign_id, expected_version, changes,
                                 ARRAY['name', 'description', 'goal_type', 'goal_value', 'start_date', 'end_date',
                                       'conversion_status_id'])
$$;
COMMENT ON FUNCTION ventros.update_campaign(uuid, integer, jsonb) IS
    'Changes name, description, goal, dates or conversion_status_id (the pipeline status that counts as a conversion); emits campaign.updated';

CREATE OR REPLACE FUNCTION ventros.enroll_in_campaign(campaign_id uuid, contact_id uuid)
RETURNS ventros.campaign_enrollments
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c ventros.campaigns := ventros.get_campaign(campaign_id);
BEGIN
    IF c.status NOT IN ('scheduled', 'active') THEN
        RAISE EXCEPTION 'campaign % is %; contacts enroll in scheduled or active campaigns', campaign_id, c.status
            USING ERRCODE = 'VN002';
    END IF;
    RETURN ventros.enroll_contact(NULL::ventros.campaign_enrollments, 'campaign', c.id, c.version, contact_id,
                                  greatest(now(), coalesce(c.start_date, now())), NULL);
END
$$;
COMMENT ON FUNCTION ventros.enroll_in_campaign(uuid, uuid) IS
    'Enrolls a contact in a scheduled or active campaign (VN002 otherwise; once at a time, 23505), due at the start; emits campaign_enrollment.created and campaign.contact_enrolled';

-- campaign_reached: the first broadcast or sequence step that acts on an
-- enrollment's contact counts it in contacts_reached.
CREATE OR REPLACE FUNCTION ventros.campaign_reached(e ventros.campaign_enrollments, at timestamptz) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE ventros.campaign_enrollments x SET reached_at = at, version = x.version
    WHERE x.tenant_id = e.tenant_id AND x.id = e.id AND x.reached_at IS NULL;
    IF FOUND THEN
        UPDATE ventros.campaigns c SET contacts_reached = c.contacts_reached + 1, version = c.version
        WHERE c.tenant_id = e.tenant_id AND c.id = e.campaign_id;
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.campaign_reached(ventros.campaign_enrollments, timestamptz) IS
    'Counts an enrollment''s contact in its campaign''s contacts_reached, once';

-- execute_campaign_step: one step for one enrollment.  Returns what happened:
-- {"outcome": "done" | "skipped" | "wait" | "exit" | "goto", "minutes",
-- "to" (the order a goto or skip goes on before), "message_id"}.
--   broadcast  config.broadcast_id: the broadcast's message to the contact;
--   sequence   config.sequence_id: enrolls the contact unless enrolled;
--   condition  config.conditions (automation rule conditions on the contact)
--              hold: go on; else config.else: "exit" (default), "continue",
--              "skip" (the next step), or {"goto": order};
--   wait, delay  config.minutes or config.delay_minutes, then go on.
CREATE OR REPLACE FUNCTION ventros.execute_campaign_step(e ventros.campaign_enrollments, step ventros.campaign_steps, at timestamptz)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg jsonb := step.config;
    x ventros.broadcast_executions;
    following ventros.campaign_steps;
    minutes numeric;
BEGIN
    IF NOT ventros.journey_conditions_hold(step.conditions, e.contact_id, at) THEN
        RETURN '{"outcome": "skipped"}';
    END IF;
    CASE step.type
    WHEN 'broadcast' THEN
        x := ventros.broadcast_to_contact((cfg->>'broadcast_id')::uuid, e.contact_id,
                                          jsonb_build_object('campaign_id', e.campaign_id, 'step_order', step."order"));
        PERFORM ventros.campaign_reached(e, at);
        RETURN jsonb_build_object('outcome', 'done', 'message_id', x.message_id, 'send', x.status);
    WHEN 'sequence' THEN
        IF NOT EXISTS (SELECT 1 FROM ventros.sequence_enrollments s
                       WHERE s.tenant_id = e.tenant_id AND s.sequence_id = (cfg->>'sequence_id')::uuid
                         AND s.contact_id = e.contact_id AND s.status IN ('active', 'paused')) THEN
            PERFORM ventros.enroll_in_sequence((cfg->>'sequence_id')::uuid, e.contact_id);
        END IF;
        PERFORM ventros.campaign_reached(e, at);
        RETURN '{"outcome": "done"}';
    WHEN 'condition' THEN
        IF ventros.journey_conditions_hold(coalesce(cfg->'conditions', '[]'), e.contact_id, at) THEN
            RETURN '{"outcome": "done", "held": true}';
        ELSIF cfg->>'else' = 'continue' THEN
            RETURN '{"outcome": "done", "held": false}';
        ELSIF cfg->>'else' = 'skip' THEN
            following := ventros.next_step(NULL::ventros.campaign_steps, 'campaign', e.campaign_id, step."order");
            RETURN jsonb_build_object('outcome', 'goto', 'held', false, 'to', coalesce(following."order" + 1, step."order" + 1));
        ELSIF jsonb_typeof(cfg->'else'->'goto') = 'number' THEN
            RETURN jsonb_build_object('outcome', 'goto', 'held', false, 'to', (cfg->'else'->>'goto')::integer);
        END IF;
        RETURN '{"outcome": "exit", "held": false}';
    ELSE
        minutes := coalesce((cfg->>'minutes')::numeric, (cfg->>'delay_minutes')::numeric, 0);
        RETURN jsonb_build_object('outcome', CASE WHEN minutes > 0 THEN 'wait' ELSE 'done' END, 'minutes', minutes);
    END CASE;
END
$$;
COMMENT ON FUNCTION ventros.execute_campaign_step(ventros.campaign_enrollments, ventros.campaign_steps, timestamptz) IS
    'Runs one campaign step for an enrollment (broadcast to the contact, sequence enrollment, condition, wait or delay; passed over when its conditions do not hold); returns the outcome';

-- advance_campaign_enrollment: the enrollment's steps from the next one on,
-- until a wait (due again after its minutes), an exit, or the end.
CREATE OR REPLACE FUNCTION ventros.advance_campaign_enrollment(campaign_enrollment_id uuid, now timestamptz DEFAULT now())
RETURNS ventros.campaign_enrollments
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e ventros.campaign_enrollments := ventros.lock_active_enrollment(NULL::ventros.campaign_enrollments, 'campaign',
                                                                     campaign_enrollment_id);
    step ventros.campaign_steps;
    after_order integer := e.current_step_order;
    r jsonb;
BEGIN
    FOR n IN 1..100 LOOP
        step := ventros.next_step(NULL::ventros.campaign_steps, 'campaign', e.campaign_id, after_order);
        IF step.id IS NULL THEN
            RETURN ventros.finish_enrollment(NULL::ventros.campaign_enrollments, 'campaign', e.id, 'completed', NULL, now);
        END IF;
        r := ventros.execute_campaign_step(e, step, now);
        PERFORM ventros.emit('campaign.enrollment_advanced', 'campaign', e.campaign_id,
            jsonb_build_object('enrollment_id', e.id, 'contact_id', e.contact_id, 'step_order', step."order",
                               'step_type', step.type) || r, NULL);
        CASE r->>'outcome'
        WHEN 'exit' THEN
            RETURN ventros.finish_enrollment(NULL::ventros.campaign_enrollments, 'campaign', e.id, 'exited', 'condition', now);
        WHEN 'wait' THEN
            RETURN ventros.set_enrollment_due(NULL::ventros.campaign_enrollments, 'campaign', e.id, step."order",
                                               now + make_interval(secs => (r->>'minutes')::numeric * 60));
        WHEN 'goto' THEN
            after_order := (r->>'to')::integer - 1;
        ELSE
            after_order := step."order";
        END CASE;
    END LOOP;
    RAISE EXCEPTION 'campaign % ran 100 steps in one advance of enrollment %: a condition step loops', e.campaign_id, e.id
        USING ERRCODE = '54000', HINT = 'Put a wait step in the loop, or change the goto.';
END
$$;
COMMENT ON FUNCTION ventros.advance_campaign_enrollment(uuid, timestamptz) IS
    'Runs an active enrollment''s steps from the next one on until a wait step (due again after its minutes), a condition''s exit, or the end (completed); more than 100 steps at once is a loop (54000); emits campaign.enrollment_advanced per step, campaign.enrollment_completed or _exited';

CREATE OR REPLACE FUNCTION ventros.tick_campaigns(now timestamptz DEFAULT now(), batch_size integer DEFAULT 1000)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- scheduled campaigns whose start has come
    UPDATE ventros.campaigns c SET status = 'active', version = c.version
    WHERE c.tenant_id = ventros.require_tenant() AND c.status = 'scheduled' AND c.start_date <= tick_campaigns.now;
    RETURN ventros.tick_enrollments('campaign', now, batch_size);
END
$$;
COMMENT ON FUNCTION ventros.tick_campaigns(timestamptz, integer) IS
    'Starts due scheduled campaigns and advances due enrollments of active campaigns (ventros.tick_enrollments); returns how many advanced';

CREATE OR REPLACE FUNCTION ventros.create_sequence(name text, trigger_type text DEFAULT 'manual', trigger_data jsonb DEFAULT NULL,
                                        exit_on_reply boolean DEFAULT true, description text DEFAULT NULL,
                                        project_id uuid DEFAULT NULL)
RETURNS ventros.sequences
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.sequences;
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'sequence name must not be null' USING ERRCODE = '23502';
    END IF;
    PERFORM ventros.require_value(coalesce(trigger_type, 'manual'), ARRAY['manual', 'tag_added', 'list_joined', 'form_submit',
                                                                          'pipeline_entered', 'contact_created', 'custom'],
                                  'sequence trigger');
    INSERT INTO ventros.sequences (project_id, name, description, trigger_type, trigger_data, exit_on_reply)
    VALUES (coalesce(project_id, ventros.default_project()), ventros.check_length(btrim(name), 200, 'sequence name'),
            description, coalesce(trigger_type, 'manual'), trigger_data, coalesce(exit_on_reply, true))
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.create_sequence(text, text, jsonb, boolean, text, uuid) IS 'Creates a draft sequence; emits sequence.created';

CREATE OR REPLACE FUNCTION ventros.update_sequence(sequence_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.sequences
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.sequences;
BEGIN
    result := ventros.apply_changes(NULL::ventros.sequences, 'sequence', sequence_id, expected_version, changes,
                                    ARRAY['name', 'description', 'trigger_type', 'trigger_data', 'exit_on_reply', 'exit_on',
                                          'send_window']);
    PERFORM ventros.sync_sequence_rule(result);
    RETURN result;
EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION 'invalid sequence: %', SQLERRM USING ERRCODE = '23514';
END
$$;
COMMENT ON FUNCTION ventros.update_sequence(uuid, integer, jsonb) IS
    'Changes a sequence''s name, description, trigger, exit_on_reply, exit_on ({"tags": [...], "status_ids": [...]}) or send_window ({"from", "to", "weekdays"}; 23514); keeps its enrollment rule; emits sequence.updated';

CREATE OR REPLACE FUNCTION ventros.delete_sequence(sequence_id uuid, expected_version integer DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rule uuid;
BEGIN
    PERFORM ventros.delete_row('ventros.sequences', 'sequence', sequence_id, expected_version);
    -- the rule that enrolled contacts in it goes with it (ventros.sync_sequence_rule)
    FOR rule IN SELECT a.id FROM ventros.automations a
                WHERE a.tenant_id = ventros.require_tenant() AND a.trigger_config->>'sequence_id' = delete_sequence.sequence_id::text
                  AND a.deleted_at IS NULL LOOP
        PERFORM ventros.delete_automation(rule);
    END LOOP;
END
$$;
COMMENT ON FUNCTION ventros.delete_sequence(uuid, integer) IS
    'Soft-deletes a sequence and the automation rule that enrolled contacts in it; emits sequence.deleted and automation.deleted';

CREATE OR REPLACE FUNCTION ventros.set_sequence_status(sequence_id uuid, expected_version integer, status text)
RETURNS ventros.sequences
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.sequences := ventros.get_sequence(sequence_id, true);
BEGIN
    PERFORM ventros.require_value(status, ARRAY['draft', 'active', 'paused', 'archived'], 'sequence status');
    IF status = 'active' AND NOT EXISTS (SELECT 1 FROM ventros.sequence_steps x WHERE x.tenant_id = s.tenant_id AND x.sequence_id = s.id) THEN
        RAISE EXCEPTION 'sequence % has no steps', sequence_id USING ERRCODE = '23514',
            HINT = 'Add a step with ventros.add_sequence_step() first.';
    END IF;
    s := ventros.change_row(NULL::ventros.sequences, 'sequence', sequence_id, expected_version, jsonb_build_object('status', status));
    PERFORM ventros.sync_sequence_rule(s);
    RETURN s;
END
$$;
COMMENT ON FUNCTION ventros.set_sequence_status(uuid, integer, text) IS
    'Moves a sequence along its machine (VN002; archived is terminal); activation needs a step (23514); enables its enrollment rule while active; emits sequence.activated, .paused, .resumed or .archived';

CREATE OR REPLACE FUNCTION ventros.enroll_in_sequence(sequence_id uuid, contact_id uuid)
RETURNS ventros.sequence_enrollments
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.sequences := ventros.get_sequence(sequence_id);
BEGIN
    IF s.status <> 'active' THEN
        RAISE EXCEPTION 'sequence % is %; contacts enroll in active sequences', sequence_id, s.status USING ERRCODE = 'VN002';
    END IF;
    RETURN ventros.enroll_contact(NULL::ventros.sequence_enrollments, 'sequence', s.id, s.version, contact_id,
        now() + coalesce(ventros.sequence_step_delay(ventros.next_step(NULL::ventros.sequence_steps, 'sequence', s.id, -1)), '0'),
        'total_enrolled = x.total_enrolled + 1, active_count = x.active_count + 1');
END
$$;
COMMENT ON FUNCTION ventros.enroll_in_sequence(uuid, uuid) IS
    'Enrolls a contact in an active sequence (VN002 otherwise; once at a time, 23505), due after the first step''s delay; emits sequence_enrollment.created and sequence.contact_enrolled';

-- end_sequence_enrollment: an active enrollment completed or exited at an
-- instant, with the sequence's counters.
CREATE OR REPLACE FUNCTION ventros.end_sequence_enrollment(e ventros.sequence_enrollments, status text, exit_reason text, at timestamptz)
RETURNS ventros.sequence_enrollments
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.sequence_enrollments := ventros.finish_enrollment(NULL::ventros.sequence_enrollments, 'sequence', e.id,
                                                                     status, exit_reason, at);
BEGIN
    PERFORM ventros.count_sequence_enrollment(result, e.status);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.end_sequence_enrollment(ventros.sequence_enrollments, text, text, timestamptz) IS
    'Completes or exits an enrollment and keeps its sequence''s counters; emits sequence.enrollment_completed or _exited';

-- advance_sequence_enrollment: the due step of an active enrollment.  In
-- this order: no step left completes it; an opt-out of the channel, an exit
-- tag or an exit status exits it; outside the send window it is due again
-- at the window's opening; a step whose conditions do not hold is passed
-- over; else the step's message is sent on the channel of the contact's
-- latest session (source sequence; without a session the event carries the
-- template for a sender that knows the channel).  Then the next step is due
-- after its delay.
CREATE OR REPLACE FUNCTION ventros.advance_sequence_enrollment(sequence_enrollment_id uuid, now timestamptz DEFAULT now())
RETURNS ventros.sequence_enrollments
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e ventros.sequence_enrollments := ventros.lock_active_enrollment(NULL::ventros.sequence_enrollments, 'sequence',
                                                                     sequence_enrollment_id);
    s ventros.sequences := ventros.get_sequence(e.sequence_id);
    step ventros.sequence_steps := ventros.next_step(NULL::ventros.sequence_steps, 'sequence', e.sequence_id, e.current_step_order);
    channel uuid;
    reason text;
    opening timestamptz;
    held boolean;
    sent uuid;
BEGIN
    IF step.id IS NULL THEN
        RETURN ventros.end_sequence_enrollment(e, 'completed', NULL, now);
    END IF;
    SELECT x.channel_id INTO channel FROM ventros.sessions x
    WHERE x.tenant_id = e.tenant_id AND x.contact_id = e.contact_id ORDER BY x.started_at DESC LIMIT 1;
    reason := ventros.journey_exit_reason(e.contact_id, channel, s.exit_on);
    IF reason IS NOT NULL THEN
        RETURN ventros.end_sequence_enrollment(e, 'exited', reason, now);
    END IF;
    opening := ventros.journey_window_open(s.send_window, ventros.journey_timezone(e.contact_id), now);
    IF opening IS DISTINCT FROM now THEN
        RETURN ventros.set_enrollment_due(NULL::ventros.sequence_enrollments, 'sequence', e.id, NULL, opening);
    END IF;
    held := ventros.journey_conditions_hold(step.conditions, e.contact_id, now);
    IF held AND channel IS NOT NULL THEN
        sent := (ventros.journey_send(channel, e.contact_id, step.message_template, 'sequence',
                                      jsonb_build_object('sequence_id', e.sequence_id, 'step_order', step."order"))).id;
    END IF;
    PERFORM ventros.emit('sequence.enrollment_advanced', 'sequence', e.sequence_id,
        jsonb_build_object('enrollment_id', e.id, 'contact_id', e.contact_id, 'step_order', step."order",
                           'message_template', step.message_template, 'message_id', sent, 'skipped', NOT held), NULL);
    RETURN ventros.set_enrollment_due(NULL::ventros.sequence_enrollments, 'sequence', e.id, step."order",
        now + coalesce(ventros.sequence_step_delay(ventros.next_step(NULL::ventros.sequence_steps, 'sequence', e.sequence_id,
                                                                     step."order")), '0'));
END
$$;
COMMENT ON FUNCTION ventros.advance_sequence_enrollment(uuid, timestamptz) IS
    'Runs the due step of an active enrollment: completes it past the last step; exits it on an opt-out, exit tag or exit status; waits for the send window; passes over a step whose conditions do not hold; sends the step on the contact''s latest session channel (source sequence); schedules the next; emits message.created, sequence.enrollment_advanced, _completed or _exited';

CREATE OR REPLACE FUNCTION ventros.tick_sequences(now timestamptz DEFAULT now(), batch_size integer DEFAULT 1000)
RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.tick_enrollments('sequence', now, batch_size) $$;
COMMENT ON FUNCTION ventros.tick_sequences(timestamptz, integer) IS
    'Advances the due enrollments of active sequences (ventros.tick_enrollments: contact and enrollment locked, SKIP LOCKED); returns how many';

-- exit_sequences: the contact's active or paused enrollments of the
-- sequences a filter selects, exited with a reason.
CREATE OR REPLACE FUNCTION ventros.exit_sequences(contact_id uuid, reason text, exit_on_reply boolean DEFAULT NULL,
                                       status_id uuid DEFAULT NULL, at timestamptz DEFAULT now())
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e ventros.sequence_enrollments;
    n integer := 0;
BEGIN
    FOR e IN SELECT x.* FROM ventros.sequence_enrollments x
             JOIN ventros.sequences s ON s.tenant_id = x.tenant_id AND s.id = x.sequence_id
             WHERE x.tenant_id = ventros.require_tenant() AND x.contact_id = exit_sequences.contact_id
               AND x.status IN ('active', 'paused') AND x.deleted_at IS NULL
               AND (exit_sequences.exit_on_reply IS NULL OR (s.exit_on_reply AND x.status = 'active'))
               AND (exit_sequences.status_id IS NULL OR coalesce(s.exit_on->'status_ids' ? exit_sequences.status_id::text, false))
             ORDER BY x.id
             FOR UPDATE OF x
    LOOP
        PERFORM ventros.end_sequence_enrollment(e, 'exited', reason, at);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.exit_sequences(uuid, text, boolean, uuid, timestamptz) IS
    'Exits a contact''s current enrollments of the sequences with exit_on_reply (when exit_on_reply) or with a status in exit_on.status_ids (when status_id); returns how many';

CREATE OR REPLACE FUNCTION ventros.exit_sequences_on_reply(contact_id uuid) RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.exit_sequences(contact_id, 'replied', exit_on_reply => true) $$;
COMMENT ON FUNCTION ventros.exit_sequences_on_reply(uuid) IS
    'An inbound reply: exits the contact''s active enrollments of sequences with exit_on_reply; emits sequence.enrollment_exited for each; returns how many';

-- sequence_trigger_rule: the trigger and conditions of the automation rule
-- that enrolls contacts in a sequence, from its trigger_type and
-- trigger_data (plus trigger_data.conditions, more rule conditions).
CREATE OR REPLACE FUNCTION ventros.sequence_trigger_rule(s ventros.sequences, OUT trigger text, OUT conditions jsonb)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d jsonb := coalesce(s.trigger_data, '{}');
    what text;
BEGIN
    what := CASE s.trigger_type WHEN 'tag_added' THEN 'tag' WHEN 'list_joined' THEN 'list_id' WHEN 'custom' THEN 'event'
                                WHEN 'pipeline_entered' THEN CASE WHEN d ? 'pipeline_id' THEN 'pipeline_id' ELSE 'status_id' END END;
    IF what IS NOT NULL AND coalesce(d->>what, '') = '' THEN
        RAISE EXCEPTION 'a % sequence needs trigger_data.%', s.trigger_type, what USING ERRCODE = '22023';
    END IF;
    conditions := '[]';
    CASE s.trigger_type
    WHEN 'tag_added' THEN
        trigger := 'contact.updated';
        conditions := jsonb_build_array(
            jsonb_build_object('field', 'payload.changed.tags', 'operator', 'contains', 'value', d->'tag'),
            jsonb_build_object('field', 'payload.previous.tags', 'operator', 'not_contains', 'value', d->'tag'));
    WHEN 'list_joined' THEN
        trigger := 'contact_list.contact_added';
        conditions := jsonb_build_array(jsonb_build_object('field', 'event.aggregate_id', 'operator', 'eq', 'value', d->'list_id'));
    WHEN 'pipeline_entered' THEN
        trigger := 'contact.pipeline_status_changed';
        conditions := jsonb_build_array(jsonb_build_object('field', 'payload.' || what, 'operator', 'eq', 'value', d->what))
            || CASE WHEN what = 'pipeline_id'
                    THEN jsonb_build_array(jsonb_build_object('field', 'payload.previous_status_id', 'operator', 'is_null'))
                    ELSE '[]' END;
    WHEN 'contact_created' THEN
        trigger := 'contact.created';
    WHEN 'form_submit' THEN
        trigger := 'custom.' || coalesce(d->>'event', 'form_submitted');
        IF d ? 'form_id' THEN
            conditions := jsonb_build_array(jsonb_build_object('field', 'payload.form_id', 'operator', 'eq', 'value', d->'form_id'));
        END IF;
    WHEN 'custom' THEN
        trigger := 'custom.' || (d->>'event');
    ELSE
        trigger := NULL;    -- manual: no rule
    END CASE;
    IF jsonb_typeof(d->'conditions') = 'array' THEN
        conditions := conditions || (d->'conditions');
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.sequence_trigger_rule(ventros.sequences) IS
    'The trigger and conditions of the rule enrolling contacts in a sequence: tag_added (contact.updated adding trigger_data.tag), list_joined (contact_list.contact_added of list_id), pipeline_entered (contact.pipeline_status_changed to status_id, or into pipeline_id), contact_created, form_submit (custom.form_submitted or custom.<event>, form_id), custom (custom.<event>); 22023 when the trigger_data it needs is missing';

-- sync_sequence_rule: an active sequence with a trigger owns one enabled
-- automation rule (trigger_config.sequence_id) whose action enrolls the
-- event's contact unless it is enrolled; otherwise that rule is disabled.
-- Made and changed through the automation commands, so the executor runs
-- it after the triggering write commits, once per event (docs/automation.md).
CREATE OR REPLACE FUNCTION ventros.sync_sequence_rule(s ventros.sequences) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rule ventros.automations;
    t record;
    actions jsonb := jsonb_build_array(jsonb_build_object('type', 'enroll_sequence',
                                                          'params', jsonb_build_object('sequence_id', s.id, 'unless_enrolled', true)));
BEGIN
    SELECT * INTO rule FROM ventros.automations a
    WHERE a.tenant_id = s.tenant_id AND a.trigger_config->>'sequence_id' = s.id::text AND a.deleted_at IS NULL
    ORDER BY a.created_at LIMIT 1
    FOR UPDATE;
    IF s.status <> 'active' OR s.trigger_type = 'manual' OR s.deleted_at IS NOT NULL THEN
        IF rule.id IS NOT NULL AND rule.enabled THEN
            PERFORM ventros.set_automation_enabled(rule.id, rule.version, false);
        END IF;
        RETURN;
    END IF;
    t := ventros.sequence_trigger_rule(s);
    IF rule.id IS NULL THEN
        PERFORM ventros.create_automation(left('sequence ' || s.name, 200), t.trigger, actions, t.conditions,
                                          automation_type => 'event', project_id => s.project_id,
                                          description => 'Enrolls contacts in the sequence (kept by the sequence)',
                                          trigger_config => jsonb_build_object('sequence_id', s.id));
    ELSIF NOT rule.enabled OR rule.trigger <> t.trigger OR rule.conditions <> t.conditions OR rule.actions <> actions THEN
        PERFORM ventros.update_automation(rule.id, rule.version,
            jsonb_build_object('trigger', t.trigger, 'conditions', t.conditions, 'actions', actions, 'enabled', true));
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.sync_sequence_rule(ventros.sequences) IS
    'Keeps the automation rule that enrolls contacts in a sequence: enabled with the trigger''s event and conditions while the sequence is active and not manual, disabled otherwise; emits automation.created, .updated, .enabled or .disabled';

-- journey_converted: counts a conversion of the contact's current and
-- completed enrollments of active campaigns, once per enrollment: a reply,
-- a tracking conversion, or (kind status) the campaign's conversion status.
CREATE OR REPLACE FUNCTION ventros.journey_converted(contact_id uuid, kind text, status_id uuid, at timestamptz) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e ventros.campaign_enrollments;
    n integer := 0;
BEGIN
    FOR e IN UPDATE ventros.campaign_enrollments x SET converted_at = at, version = x.version
             FROM ventros.campaigns c
             WHERE x.tenant_id = ventros.require_tenant() AND x.contact_id = journey_converted.contact_id
               AND x.converted_at IS NULL AND x.status IN ('active', 'completed') AND x.deleted_at IS NULL
               AND c.tenant_id = x.tenant_id AND c.id = x.campaign_id AND c.status = 'active'
               AND (kind <> 'status' OR c.conversion_status_id = journey_converted.status_id)
             RETURNING x.*
    LOOP
        UPDATE ventros.campaigns c SET conversions_count = c.conversions_count + 1, version = c.version
        WHERE c.tenant_id = e.tenant_id AND c.id = e.campaign_id;
        PERFORM ventros.emit('campaign.contact_converted', 'campaign', e.campaign_id,
            jsonb_build_object('enrollment_id', e.id, 'contact_id', e.contact_id, 'kind', kind), NULL);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.journey_converted(uuid, text, uuid, timestamptz) IS
    'Counts a conversion (reply, tracking, status) of a contact''s unconverted enrollments of active campaigns (status: those whose conversion_status_id it is); emits campaign.contact_converted; returns how many';

-- journey_reply: an inbound message of a contact, in receive_message's
-- transaction before the session is touched.  When the contact has a
-- current enrollment, the contact is locked first (the order of a tick:
-- contact, then enrollment), then its enrollments of sequences with
-- exit_on_reply exit and its campaigns count the conversion.  A step being
-- sent holds the contact: the reply waits and exits after it; a reply
-- first makes the tick pass the enrollment over (isolation spec
-- sequence_reply_exit).
CREATE OR REPLACE FUNCTION ventros.journey_reply(contact_id uuid, at timestamptz) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ventros.sequence_enrollments x
                   WHERE x.tenant_id = tenant AND x.contact_id = journey_reply.contact_id AND x.status = 'active')
       AND NOT EXISTS (SELECT 1 FROM ventros.campaign_enrollments x
                       JOIN ventros.campaigns c ON c.tenant_id = x.tenant_id AND c.id = x.campaign_id AND c.status = 'active'
                       WHERE x.tenant_id = tenant AND x.contact_id = journey_reply.contact_id AND x.converted_at IS NULL
                         AND x.status IN ('active', 'completed')) THEN
        RETURN;     -- the hot path of every inbound message
    END IF;
    PERFORM 1 FROM ventros.contacts c WHERE c.tenant_id = tenant AND c.id = journey_reply.contact_id FOR NO KEY UPDATE;
    PERFORM ventros.exit_sequences(contact_id, 'replied', exit_on_reply => true, at => at);
    PERFORM ventros.journey_converted(contact_id, 'reply', NULL, at);
END
$$;
COMMENT ON FUNCTION ventros.journey_reply(uuid, timestamptz) IS
    'An inbound message: exits the contact''s enrollments of sequences with exit_on_reply and counts the reply as a conversion of its campaigns (contact locked first, as a tick)';

-- journey_status_reached: a contact moved to a pipeline status (in
-- change_contact_pipeline_status, which holds the contact): exits the
-- sequences that list it in exit_on.status_ids, counts the campaigns'
-- conversions whose conversion status it is.
CREATE OR REPLACE FUNCTION ventros.journey_status_reached(contact_id uuid, status_id uuid, at timestamptz) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.exit_sequences(contact_id, 'status', status_id => status_id, at => at);
    PERFORM ventros.journey_converted(contact_id, 'status', status_id, at);
END
$$;
COMMENT ON FUNCTION ventros.journey_status_reached(uuid, uuid, timestamptz) IS
    'A contact reached a pipeline status: exits the sequences with it in exit_on.status_ids, counts conversions of the campaigns with it as conversion status';

-- receive_message: the inbound pipeline, in one transaction.

-- change_contact_pipeline_status: closes the contact's open row in the
-- pipeline (exited_at, duration) and opens one in the new status.  The
-- contact row is locked first, so two moves of one contact serialise.
CREATE OR REPLACE FUNCTION ventros.change_contact_pipeline_status(contact_id uuid, status_id uuid, notes text DEFAULT NULL,
                                                       metadata jsonb DEFAULT NULL)
RETURNS ventros.contact_pipeline_statuses
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    st ventros.pipeline_statuses;
    previous ventros.contact_pipeline_statuses;
    result ventros.contact_pipeline_statuses;
    contact_version integer;
    at timestamptz := clock_timestamp();
BEGIN
    SELECT c.version INTO contact_version FROM ventros.contacts c
    WHERE c.tenant_id = tenant AND c.id = change_contact_pipeline_status.contact_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'contact % not found', contact_id USING ERRCODE = 'P0002';
    END IF;
    SELECT * INTO st FROM ventros.pipeline_statuses s WHERE s.tenant_id = tenant AND s.id = change_contact_pipeline_status.status_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pipeline status % not found', status_id USING ERRCODE = 'P0002';
    END IF;
    IF NOT st.active THEN
        RAISE EXCEPTION 'pipeline status % is inactive', status_id USING ERRCODE = '22023';
    END IF;
    SELECT * INTO previous FROM ventros.contact_pipeline_statuses c
    WHERE c.tenant_id = tenant AND c.contact_id = change_contact_pipeline_status.contact_id
      AND c.pipeline_id = st.pipeline_id AND c.exited_at IS NULL AND c.deleted_at IS NULL;
    IF FOUND THEN
        IF previous.status_id = st.id THEN
            RETURN previous;    -- already there: nothing happens
        END IF;
        UPDATE ventros.contact_pipeline_statuses c
        SET exited_at = greatest(at, c.entered_at),
            duration = extract(epoch FROM greatest(at, c.entered_at) - c.entered_at)::bigint, version = previous.version
        WHERE c.tenant_id = tenant AND c.id = previous.id;
    END IF;
    INSERT INTO ventros.contact_pipeline_statuses (contact_id, pipeline_id, status_id, entered_at, notes, metadata)
    VALUES (change_contact_pipeline_status.contact_id, st.pipeline_id, st.id, at, notes, metadata)
    RETURNING * INTO result;
    PERFORM ventros.emit('contact.pipeline_status_changed', 'contact', contact_id,
                         jsonb_build_object('pipeline_id', st.pipeline_id, 'status_id', st.id, 'status_name', st.name,
                                            'previous_status_id', previous.status_id, 'entered_at', at,
                                            'notes', notes), contact_version);
    IF previous.id IS NULL THEN
        PERFORM ventros.emit('contact.entered_pipeline', 'contact', contact_id,
                             jsonb_build_object('pipeline_id', st.pipeline_id, 'status_id', st.id), contact_version);
    END IF;
    PERFORM ventros.journey_status_reached(contact_id, st.id, at);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.change_contact_pipeline_status(uuid, uuid, text, jsonb) IS
    'Moves a contact to a status: closes the open row of that pipeline, opens a new one, exits the sequences and converts the campaigns that name the status (ventros.journey_status_reached); emits contact.pipeline_status_changed (with previous_status_id) and, on first entry, contact.entered_pipeline';

CREATE OR REPLACE FUNCTION ventros.create_tracking(contact_id uuid, source text, platform text, campaign text DEFAULT NULL,
                                        ad_id text DEFAULT NULL, ad_url text DEFAULT NULL, click_id text DEFAULT NULL,
                                        utm jsonb DEFAULT '{}', session_id uuid DEFAULT NULL,
                                        conversion_data text DEFAULT NULL, metadata jsonb DEFAULT '{}')
RETURNS ventros.trackings
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c ventros.contacts := ventros.get_contact(contact_id);
    result ventros.trackings;
BEGIN
    PERFORM ventros.require_value(source, ARRAY(SELECT jsonb_array_elements_text(ventros.tracking_enums()->'sources')), 'tracking source');
    PERFORM ventros.require_value(platform, ARRAY(SELECT jsonb_array_elements_text(ventros.tracking_enums()->'platforms')), 'tracking platform');
    PERFORM ventros.require_json(utm, 'object', 'utm parameters');
    INSERT INTO ventros.trackings (contact_id, session_id, project_id, source, platform, campaign, ad_id, ad_url, click_id,
                                   conversion_data, utm_source, utm_medium, utm_campaign, utm_term, utm_content, metadata)
    VALUES (contact_id, session_id, c.project_id, source, platform, campaign, ad_id, ad_url, click_id,
            CASE WHEN conversion_data IS NOT NULL THEN ventros.encrypt_secret(conversion_data) END,
            utm->>'utm_source', utm->>'utm_medium', utm->>'utm_campaign', utm->>'utm_term', utm->>'utm_content',
            coalesce(ventros.require_json(metadata, 'object', 'tracking metadata'), '{}'))
    RETURNING * INTO result;
    IF source IN ('meta_ads', 'google_ads', 'tiktok_ads') THEN
        PERFORM ventros.emit('contact.ad_conversion_tracked', 'contact', contact_id,
            jsonb_build_object('tracking_id', result.id, 'source', source, 'platform', platform, 'campaign', campaign,
                               'ad_id', ad_id, 'click_id', click_id), c.version);
        PERFORM ventros.journey_converted(contact_id, 'tracking', NULL, now());
    END IF;
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'click id % is tracked already', click_id USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.create_tracking(uuid, text, text, text, text, text, text, jsonb, uuid, text, jsonb) IS
    'Records a contact''s attribution (click id unique, 23505); emits tracking.created and, from an ad, contact.ad_conversion_tracked (a conversion of the contact''s campaigns, ventros.journey_converted)';

-- One action, through the command a user would call.  Returns what it did.

GRANT EXECUTE ON FUNCTION ventros.next_step(anyelement, text, uuid, integer), ventros.journey_timezone(uuid),
    ventros.journey_window_open(jsonb, text, timestamptz), ventros.journey_context(uuid, timestamptz),
    ventros.journey_conditions_hold(jsonb, uuid, timestamptz), ventros.journey_exit_reason(uuid, uuid, jsonb),
    ventros.sequence_trigger_rule(ventros.sequences)
    TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.enroll_contact(anyelement, text, uuid, integer, uuid, timestamptz, text),
    ventros.set_enrollment_due(anyelement, text, uuid, integer, timestamptz),
    ventros.finish_enrollment(anyelement, text, uuid, text, text, timestamptz),
    ventros.journey_send(uuid, uuid, jsonb, text, jsonb),
    ventros.send_broadcast_execution(ventros.broadcasts, ventros.broadcast_executions, jsonb),
    ventros.broadcast_to_contact(uuid, uuid, jsonb),
    ventros.campaign_reached(ventros.campaign_enrollments, timestamptz),
    ventros.execute_campaign_step(ventros.campaign_enrollments, ventros.campaign_steps, timestamptz),
    ventros.end_sequence_enrollment(ventros.sequence_enrollments, text, text, timestamptz),
    ventros.exit_sequences(uuid, text, boolean, uuid, timestamptz),
    ventros.sync_sequence_rule(ventros.sequences), ventros.journey_reply(uuid, timestamptz),
    ventros.journey_converted(uuid, text, uuid, timestamptz), ventros.journey_status_reached(uuid, uuid, timestamptz)
    TO ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.tick_enrollments(text, timestamptz, integer) TO ventros_platform_admin;

-- ---- contact_field_events (sql/35_contact_field_events.sql)
-- Granular contact events: besides contact.updated (which keeps its
-- changed/previous payload), a change of a contact's field emits the event
-- that names it, in the transaction of the change, so automation rules and
-- sequences can trigger on "a tag was added" without reading change sets.
-- Triggers, not the commands: every writer (update_contact, merge, inbound
-- profiles, a direct UPDATE) gets them alike.  Soft deletes and erasure emit
-- none (contact.deleted / contact.erased say it).  last_interaction_at and
-- first_interaction_at are quiet columns: their change is the message's event.
-- These events carry no aggregate_version (NULL, as business events emitted
-- without one): the contact's engine events keep consecutive versions, which
-- consumers check (docs/outbox.md).

SELECT ventros.register_event_type(e, d) FROM (VALUES
    ('contact.name_changed', 'A contact''s name changed.'),
    ('contact.email_set', 'A contact''s email was set, changed or cleared.'),
    ('contact.phone_set', 'A contact''s phone was set, changed or cleared.'),
    ('contact.external_id_set', 'A contact''s external id was set, changed or cleared.'),
    ('contact.source_channel_set', 'A contact''s source channel was set or changed.'),
    ('contact.language_changed', 'A contact''s language changed.'),
    ('contact.timezone_set', 'A contact''s timezone was set, changed or cleared.'),
    ('contact.tag_added', 'A tag was added to a contact (one event per tag, also at creation).'),
    ('contact.tag_removed', 'A tag was removed from a contact (one event per tag).'),
    ('contact.tags_cleared', 'Every tag of a contact was removed at once.'),
    ('contact.profile_picture_updated', 'A contact''s profile picture URL changed.'),
    ('contact.custom_field_set', 'A custom field of a contact was set or changed.'),
    ('contact.lead_qualified', 'A contact qualified as a lead of a pipeline (score at or above its min_score).')) v(e, d);

-- The field events of one changed contact row (OLD NULL: an insert).
CREATE FUNCTION ventros.emit_contact_field_events() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t text;
    field record;
BEGIN
    IF TG_OP = 'INSERT' THEN
        FOR t IN SELECT x FROM unnest(NEW.tags) x ORDER BY x LOOP
            PERFORM ventros.emit('contact.tag_added', 'contact', NEW.id, jsonb_build_object('tag', t));
        END LOOP;
        RETURN NULL;
    END IF;
    FOR field IN
        SELECT * FROM (VALUES
            ('contact.name_changed', 'name', to_jsonb(NEW.name), to_jsonb(OLD.name)),
            ('contact.email_set', 'email', to_jsonb(NEW.email), to_jsonb(OLD.email)),
            ('contact.phone_set', 'phone', to_jsonb(NEW.phone), to_jsonb(OLD.phone)),
            ('contact.external_id_set', 'external_id', to_jsonb(NEW.external_id), to_jsonb(OLD.external_id)),
            ('contact.source_channel_set', 'source_channel', to_jsonb(NEW.source_channel), to_jsonb(OLD.source_channel)),
            ('contact.language_changed', 'language', to_jsonb(NEW.language), to_jsonb(OLD.language)),
            ('contact.timezone_set', 'timezone', to_jsonb(NEW.timezone), to_jsonb(OLD.timezone)),
            ('contact.profile_picture_updated', 'profile_picture_url', to_jsonb(NEW.profile_picture_url),
             to_jsonb(OLD.profile_picture_url))) f(event_type, name, value, previous)
        WHERE f.value IS DISTINCT FROM f.previous
    LOOP
        PERFORM ventros.emit(field.event_type, 'contact', NEW.id,
                             jsonb_build_object(field.name, field.value, 'previous_' || field.name, field.previous));
    END LOOP;
    IF NEW.tags IS DISTINCT FROM OLD.tags THEN
        FOR t IN SELECT x FROM unnest(NEW.tags) x EXCEPT SELECT y FROM unnest(OLD.tags) y ORDER BY 1 LOOP
            PERFORM ventros.emit('contact.tag_added', 'contact', NEW.id, jsonb_build_object('tag', t));
        END LOOP;
        FOR t IN SELECT y FROM unnest(OLD.tags) y EXCEPT SELECT x FROM unnest(NEW.tags) x ORDER BY 1 LOOP
            PERFORM ventros.emit('contact.tag_removed', 'contact', NEW.id, jsonb_build_object('tag', t));
        END LOOP;
        IF cardinality(NEW.tags) = 0 AND cardinality(OLD.tags) > 0 THEN
            PERFORM ventros.emit('contact.tags_cleared', 'contact', NEW.id,
                                 jsonb_build_object('previous_tags', to_jsonb(OLD.tags)));
        END IF;
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.emit_contact_field_events() IS
    'Trigger: emits contact.name_changed, .email_set, .phone_set, .external_id_set, .source_channel_set, .language_changed, .timezone_set, .profile_picture_updated, .tag_added/.tag_removed (one per tag) and .tags_cleared for a live contact''s changed fields (tag_added also at creation)';
-- Named to fire after ventros_engine_after (triggers fire in name order):
-- contact.updated comes first in the stream, then its granular events.
CREATE TRIGGER ventros_events_contact_fields AFTER UPDATE ON ventros.contacts
    FOR EACH ROW WHEN (OLD.deleted_at IS NULL AND NEW.deleted_at IS NULL)
    EXECUTE FUNCTION ventros.emit_contact_field_events();
CREATE TRIGGER ventros_events_contact_tags AFTER INSERT ON ventros.contacts
    FOR EACH ROW WHEN (cardinality(NEW.tags) > 0)
    EXECUTE FUNCTION ventros.emit_contact_field_events();

-- contact.custom_field_set: on the contact's stream, whoever wrote the field.
CREATE FUNCTION ventros.emit_contact_custom_field_set() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.field_value IS NOT DISTINCT FROM OLD.field_value
       AND NEW.field_type IS NOT DISTINCT FROM OLD.field_type THEN
        RETURN NULL;
    END IF;
    PERFORM ventros.emit('contact.custom_field_set', 'contact', NEW.contact_id,
                         jsonb_build_object('field_key', NEW.field_key, 'field_type', NEW.field_type,
                                            'value', NEW.field_value,
                                            'previous_value', CASE WHEN TG_OP = 'UPDATE' THEN OLD.field_value END));
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.emit_contact_custom_field_set() IS
    'Trigger: emits contact.custom_field_set (key, type, value, previous value) on the contact when a live custom field is written with a new value';
CREATE TRIGGER ventros_events_contact_custom_field AFTER INSERT OR UPDATE ON ventros.contact_custom_fields
    FOR EACH ROW WHEN (NEW.deleted_at IS NULL)
    EXECUTE FUNCTION ventros.emit_contact_custom_field_set();

-- qualify_contact_lead: records the score of a contact against a pipeline's
-- lead qualification (its min_score, 0-10); at or above it, the contact is a
-- qualified lead: contact.lead_qualified.  Returns whether it qualified.
CREATE FUNCTION ventros.qualify_contact_lead(contact_id uuid, pipeline_id uuid, score numeric,
                                             answers jsonb DEFAULT '{}')
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    config jsonb;
    min_score numeric;
BEGIN
    IF score IS NULL OR score < 0 OR score > 10 THEN
        RAISE EXCEPTION 'lead score must be between 0 and 10' USING ERRCODE = '22023';
    END IF;
    IF answers IS NOT NULL AND jsonb_typeof(answers) <> 'object' THEN
        RAISE EXCEPTION 'lead qualification answers must be a JSON object' USING ERRCODE = '22023';
    END IF;
    SELECT p.lead_qualification INTO config FROM ventros.pipelines p
    WHERE p.tenant_id = tenant AND p.id = qualify_contact_lead.pipeline_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pipeline % not found', pipeline_id USING ERRCODE = 'P0002';
    END IF;
    IF NOT coalesce((config->>'enabled')::boolean, false) THEN
        RAISE EXCEPTION 'pipeline % has no lead qualification enabled', pipeline_id USING ERRCODE = 'VN002',
            HINT = 'Enable it with update_pipeline(..., ''{"lead_qualification": {"enabled": true, "min_score": 7}}'').';
    END IF;
    PERFORM 1 FROM ventros.contacts c
    WHERE c.tenant_id = tenant AND c.id = qualify_contact_lead.contact_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'contact % not found', contact_id USING ERRCODE = 'P0002';
    END IF;
    min_score := coalesce((config->>'min_score')::numeric, 0);
    IF score < min_score THEN
        RETURN false;
    END IF;
    PERFORM ventros.emit('contact.lead_qualified', 'contact', contact_id,
                         jsonb_build_object('pipeline_id', pipeline_id, 'score', score, 'min_score', min_score,
                                            'answers', coalesce(answers, '{}')));
    RETURN true;
END
$$;
COMMENT ON FUNCTION ventros.qualify_contact_lead(uuid, uuid, numeric, jsonb) IS
    'Scores a contact against a pipeline''s lead qualification (VN002 when not enabled); at or above min_score emits contact.lead_qualified and returns true';

GRANT EXECUTE ON FUNCTION ventros.qualify_contact_lead(uuid, uuid, numeric, jsonb) TO ventros_agent;

-- ---- assignment (sql/30_channels.sql, 33_teams.sql, 37_sessions.sql, 37_sessions_handling.sql, 40_messages.sql, 97_schedule.sql)
-- New inbound sessions are assigned by their channel's rule (channels.team_id,
-- channels.assignment_strategy, else the team's strategy: round_robin,
-- capacity, least_open); teams store reassignment rules (agent offline, no
-- first response in N minutes) that tick_assignments applies; sessions record
-- when their agent got them (assigned_at).
ALTER TABLE ventros.teams ADD COLUMN reassign_when_offline boolean NOT NULL DEFAULT false,
    ADD COLUMN reassign_after_minutes integer,
    ADD COLUMN max_reassignments integer NOT NULL DEFAULT 3,
    DROP CONSTRAINT teams_strategy_known,
    ADD CONSTRAINT teams_strategy_known CHECK (assignment_strategy IN ('round_robin', 'capacity', 'least_open', 'manual')),
    ADD CONSTRAINT teams_reassign_after_range CHECK (reassign_after_minutes BETWEEN 1 AND 10080),
    ADD CONSTRAINT teams_max_reassignments_range CHECK (max_reassignments BETWEEN 0 AND 100);
ALTER TABLE ventros.channels ADD COLUMN team_id uuid,
    ADD COLUMN assignment_strategy text,
    ADD CONSTRAINT channels_assignment_strategy_known CHECK (assignment_strategy IS NULL
        OR (assignment_strategy IN ('round_robin', 'capacity', 'least_open', 'manual') AND team_id IS NOT NULL)),
    ADD CONSTRAINT channels_team_fk FOREIGN KEY (tenant_id, team_id) REFERENCES ventros.teams (tenant_id, id);
ALTER TABLE ventros.sessions ADD COLUMN assigned_at timestamptz;
-- the HTTP API's views of teams, channels and sessions show the new columns
SELECT ventros.expose_api();

CREATE OR REPLACE FUNCTION ventros.create_team(name text, assignment_strategy text DEFAULT 'round_robin',
                                    description text DEFAULT NULL, project_id uuid DEFAULT NULL)
RETURNS ventros.teams
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.teams;
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'team name must not be null' USING ERRCODE = '23502';
    END IF;
    IF assignment_strategy NOT IN ('round_robin', 'capacity', 'least_open', 'manual') THEN
        RAISE EXCEPTION 'unknown assignment strategy "%"', left(assignment_strategy, 32) USING ERRCODE = '22023',
            HINT = 'Use round_robin, capacity, least_open or manual.';
    END IF;
    INSERT INTO ventros.teams (project_id, name, assignment_strategy, description)
    VALUES (coalesce(project_id, ventros.default_project()), ventros.check_length(btrim(name), 200, 'team name'),
            assignment_strategy, description)
    RETURNING * INTO result;
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'a team named "%" already exists', name USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.create_team(text, text, text, uuid) IS 'Creates a team; emits team.created';

CREATE OR REPLACE FUNCTION ventros.update_team(team_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.teams
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.apply_changes(NULL::ventros.teams, 'team', team_id, expected_version, changes,
                                 ARRAY['name', 'description', 'assignment_strategy', 'active', 'reassign_when_offline',
                                       'reassign_after_minutes', 'max_reassignments'])
$$;
COMMENT ON FUNCTION ventros.update_team(uuid, integer, jsonb) IS
    'Changes fields of a team (name, description, strategy, active, reassignment rules: reassign_when_offline, reassign_after_minutes, max_reassignments); emits team.updated';

CREATE OR REPLACE FUNCTION ventros.update_channel(channel_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.channels
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.apply_changes(NULL::ventros.channels, 'channel', channel_id, expected_version, changes,
        ARRAY['name', 'status', 'connection_mode', 'external_id', 'config', 'webhook_url', 'webhook_configured_at',
              'webhook_active', 'pipeline_id', 'session_timeout_minutes', 'ai_enabled', 'ai_agents_enabled',
              'allow_groups', 'tracking_enabled', 'debounce_timeout_ms', 'custom_field_definitions',
              'last_error_at', 'last_error', 'history_import_enabled', 'default_agent_id',
              'history_import_max_days', 'history_import_max_messages_per_chat', 'team_id', 'assignment_strategy'])
$$;
COMMENT ON FUNCTION ventros.update_channel(uuid, integer, jsonb) IS
    'Changes fields of a channel; a status change must follow the channel state machine (VN002); emits channel.updated or the transition''s event';

-- One way an agent gets a session: set_session_agent (the lock held by the
-- caller).  assign_session_agent is the user's command; auto_assign_session
-- (a new inbound session, by its channel's or team's rule) and
-- tick_assignments (the stored reassignment rules) call it with their instant.
SELECT ventros.register_event_type('session.queued',
    'A session was put on a team with no agent available to take it; it waits for one (tick_assignments).');

CREATE FUNCTION ventros.set_session_agent(s ventros.sessions, agent_id uuid, reason text, at timestamptz)
RETURNS ventros.sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a ventros.agents;
    result ventros.sessions;
BEGIN
    IF reason IS NULL OR reason NOT IN ('manual', 'round_robin', 'capacity', 'least_open', 'inactivity', 'no_response',
                                        'agent_offline', 'workload_balance') THEN
        RAISE EXCEPTION 'unknown assignment reason "%"', left(reason, 32) USING ERRCODE = '22023',
            HINT = 'Use manual, round_robin, capacity, least_open, inactivity, no_response, agent_offline or workload_balance.';
    END IF;
    IF s.status <> 'active' THEN
        RAISE EXCEPTION 'session % is %', s.id, s.status USING ERRCODE = 'VN002',
            DETAIL = 'Agents are assigned to active sessions only.';
    END IF;
    SELECT * INTO a FROM ventros.agents g WHERE g.tenant_id = s.tenant_id AND g.id = set_session_agent.agent_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'agent % not found', agent_id USING ERRCODE = 'P0002';
    END IF;
    IF a.type IN ('virtual', 'system') OR NOT a.active THEN
        RAISE EXCEPTION 'agent % cannot be assigned', agent_id USING ERRCODE = '22023',
            DETAIL = 'Virtual, system and inactive agents are never assigned.';
    END IF;
    IF s.assigned_agent_id = a.id THEN
        RETURN s;
    END IF;
    UPDATE ventros.sessions t
    SET assigned_agent_id = a.id, assigned_at = coalesce(at, now()),
        agent_ids = CASE WHEN a.id = ANY (t.agent_ids) THEN t.agent_ids ELSE t.agent_ids || a.id END,
        agent_transfers = t.agent_transfers + (t.assigned_agent_id IS NOT NULL)::integer,
        version = s.version
    WHERE t.tenant_id = s.tenant_id AND t.id = s.id
    RETURNING * INTO result;
    PERFORM ventros.emit('session.agent_assigned', 'session', s.id,
                         jsonb_build_object('agent_id', a.id, 'previous_agent_id', s.assigned_agent_id,
                                            'team_id', s.team_id, 'reason', reason,
                                            'transfer', s.assigned_agent_id IS NOT NULL), result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.set_session_agent(ventros.sessions, uuid, text, timestamptz) IS
    'Assigns (or transfers, counting agent_transfers) a locked active session to an agent at an instant (internal: the commands and ticks call it); emits session.updated and session.agent_assigned with the reason';

CREATE OR REPLACE FUNCTION ventros.assign_session_agent(session_id uuid, agent_id uuid, expected_version integer DEFAULT NULL,
                                             reason text DEFAULT 'manual')
RETURNS ventros.sessions
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.set_session_agent(ventros.lock_session(session_id, expected_version), agent_id, reason, now())
$$;
COMMENT ON FUNCTION ventros.assign_session_agent(uuid, uuid, integer, text) IS
    'Assigns (or transfers, counting agent_transfers) an active session to a human, AI or bot agent; VN001 on a stale version; emits session.updated and session.agent_assigned';

-- next_team_agent: the next agent of a team by a strategy, its membership
-- row locked (SKIP LOCKED: two concurrent picks get different agents).
-- round_robin: assigned longest ago first; capacity: the lowest load (open
-- sessions / max_open_sessions); least_open: the fewest open sessions.  Only
-- available, active agents under their max_open_sessions qualify; excluded
-- agents (the one a session is taken from) never.
CREATE FUNCTION ventros.next_team_agent(team_id uuid, strategy text, excluded uuid[] DEFAULT '{}')
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    member ventros.team_members;
    tried uuid[] := '{}';
    open_count integer;
    capacity integer;
BEGIN
    IF strategy IS NULL THEN
        SELECT t.assignment_strategy INTO strategy FROM ventros.teams t WHERE t.tenant_id = tenant AND t.id = next_team_agent.team_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'team % not found', team_id USING ERRCODE = 'P0002';
        END IF;
    END IF;
    -- One candidate at a time (LIMIT 1): a cursor would lock every row it
    -- prefetches and starve concurrent pickers.
    LOOP
        SELECT m.* INTO member FROM ventros.team_members m
        JOIN ventros.agents a ON a.tenant_id = m.tenant_id AND a.id = m.agent_id
        CROSS JOIN LATERAL (SELECT count(*) AS n FROM ventros.sessions s WHERE s.tenant_id = tenant
                            AND s.assigned_agent_id = m.agent_id AND s.status = 'active' AND s.deleted_at IS NULL
                            AND strategy IN ('capacity', 'least_open')) open
        WHERE m.tenant_id = tenant AND m.team_id = next_team_agent.team_id AND m.id <> ALL (tried)
          AND m.agent_id <> ALL (coalesce(excluded, '{}'))
          AND a.active AND a.status = 'available' AND a.type NOT IN ('virtual', 'system')
        ORDER BY CASE strategy WHEN 'least_open' THEN open.n::numeric
                               WHEN 'capacity' THEN open.n::numeric / greatest(a.max_open_sessions, 1) END,
                 m.last_assigned_at NULLS FIRST, m.agent_id
        LIMIT 1
        FOR UPDATE OF m SKIP LOCKED;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
        tried := tried || member.id;
        -- Counted again under the lock: a committed assignment is seen now.
        SELECT count(*) INTO open_count FROM ventros.sessions s
        WHERE s.tenant_id = tenant AND s.assigned_agent_id = member.agent_id AND s.status = 'active' AND s.deleted_at IS NULL;
        SELECT a.max_open_sessions INTO capacity FROM ventros.agents a WHERE a.tenant_id = tenant AND a.id = member.agent_id;
        IF open_count < capacity THEN
            UPDATE ventros.team_members m SET last_assigned_at = clock_timestamp(), version = m.version
            WHERE m.tenant_id = tenant AND m.id = member.id;
            RETURN member.agent_id;
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION ventros.next_team_agent(uuid, text, uuid[]) IS
    'The next available agent of a team under its capacity by a strategy (round_robin, capacity, least_open; NULL: the team''s), never one of excluded, or NULL';

CREATE OR REPLACE FUNCTION ventros.pick_team_agent(team_id uuid)
RETURNS uuid
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.next_team_agent(team_id, NULL, '{}') $$;
COMMENT ON FUNCTION ventros.pick_team_agent(uuid) IS
    'The next available agent of a team under its capacity, by the team''s strategy (round_robin, capacity or least_open), or NULL';

-- put_session_on_team: the locked session on a team, and the team's next
-- agent by strategy assigned at the instant; none available: session.queued.
CREATE FUNCTION ventros.put_session_on_team(s ventros.sessions, team_id uuid, strategy text, at timestamptz)
RETURNS ventros.sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    picked uuid;
BEGIN
    IF s.status <> 'active' THEN
        RAISE EXCEPTION 'session % is %', s.id, s.status USING ERRCODE = 'VN002',
            DETAIL = 'Agents are assigned to active sessions only.';
    END IF;
    IF s.team_id IS DISTINCT FROM team_id THEN
        UPDATE ventros.sessions t SET team_id = put_session_on_team.team_id, version = s.version
        WHERE t.tenant_id = s.tenant_id AND t.id = s.id RETURNING * INTO s;
    END IF;
    IF strategy = 'manual' THEN
        RETURN s;
    END IF;
    picked := ventros.next_team_agent(team_id, strategy, '{}');
    IF picked IS NULL THEN
        PERFORM ventros.emit('session.queued', 'session', s.id,
                             jsonb_build_object('team_id', team_id, 'strategy', strategy, 'at', at), s.version);
        RETURN s;       -- queued on the team: nobody available under capacity
    END IF;
    RETURN ventros.set_session_agent(s, picked, strategy, at);
END
$$;
COMMENT ON FUNCTION ventros.put_session_on_team(ventros.sessions, uuid, text, timestamptz) IS
    'Puts a locked session on a team and assigns its next agent by strategy (manual: none); nobody available: emits session.queued (internal)';

CREATE OR REPLACE FUNCTION ventros.assign_session_to_team(session_id uuid, team_id uuid, expected_version integer DEFAULT NULL)
RETURNS ventros.sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.sessions := ventros.lock_session(session_id, expected_version);
    strategy text;
BEGIN
    IF s.status <> 'active' THEN
        RAISE EXCEPTION 'session % is %', session_id, s.status USING ERRCODE = 'VN002',
            DETAIL = 'Agents are assigned to active sessions only.';
    END IF;
    SELECT t.assignment_strategy INTO strategy FROM ventros.teams t
    WHERE t.tenant_id = s.tenant_id AND t.id = assign_session_to_team.team_id AND t.active;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'team % not found', team_id USING ERRCODE = 'P0002';
    END IF;
    RETURN ventros.put_session_on_team(s, team_id, strategy, now());
END
$$;
COMMENT ON FUNCTION ventros.assign_session_to_team(uuid, uuid, integer) IS
    'Puts a session on a team and assigns the team''s next agent by its strategy (none when nobody is available: the session waits on the team, session.queued); emits session.updated and session.agent_assigned';

-- auto_assign_session: a new inbound session by its channel's rule (the
-- channel's team, with the channel's strategy, else the team's).  A channel
-- without a team, or an inactive team, leaves the session unassigned.
CREATE FUNCTION ventros.auto_assign_session(s ventros.sessions, at timestamptz)
RETURNS ventros.sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rule record;
BEGIN
    SELECT c.team_id, coalesce(c.assignment_strategy, t.assignment_strategy) AS strategy INTO rule
    FROM ventros.channels c JOIN ventros.teams t ON t.tenant_id = c.tenant_id AND t.id = c.team_id
    WHERE c.tenant_id = s.tenant_id AND c.id = s.channel_id AND t.active AND t.deleted_at IS NULL;
    IF NOT FOUND THEN
        RETURN s;
    END IF;
    RETURN ventros.put_session_on_team(s, rule.team_id, rule.strategy, at);
END
$$;
COMMENT ON FUNCTION ventros.auto_assign_session(ventros.sessions, timestamptz) IS
    'Assigns a new inbound session (locked) by its channel''s rule: the channel''s team, by the channel''s strategy else the team''s (internal; receive_message calls it)';

-- tick_assignments: the stored reassignment rules of the acting tenant's
-- teams at an instant, then the sessions waiting on a team.  An active session
-- on a team is reassigned to another agent of the team when its agent is
-- offline or inactive (reassign_when_offline), or when the contact's first
-- message has waited reassign_after_minutes since it arrived or since the
-- agent got it, unanswered; at most max_reassignments transfers per session.
-- Returns how many sessions got an agent.
CREATE FUNCTION ventros.tick_assignments(now timestamptz DEFAULT now(), batch_size integer DEFAULT 500)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    job record;
    picked uuid;
    n integer := 0;
BEGIN
    FOR job IN
        SELECT s.id, t.assignment_strategy AS strategy,
               CASE WHEN s.assigned_agent_id IS NULL THEN NULL
                    WHEN t.reassign_when_offline AND (a.status = 'offline' OR NOT a.active) THEN 'agent_offline'
                    ELSE 'no_response' END AS reason
        FROM ventros.sessions s
        JOIN ventros.teams t ON t.tenant_id = s.tenant_id AND t.id = s.team_id
        LEFT JOIN ventros.agents a ON a.tenant_id = s.tenant_id AND a.id = s.assigned_agent_id
        WHERE s.tenant_id = tenant AND s.status = 'active' AND s.deleted_at IS NULL
          AND t.active AND t.deleted_at IS NULL AND t.assignment_strategy <> 'manual'
          AND (s.assigned_agent_id IS NULL
               OR (s.agent_transfers < t.max_reassignments
                   AND ((t.reassign_when_offline AND (a.status = 'offline' OR NOT a.active))
                        OR (s.first_contact_message_at IS NOT NULL AND s.first_agent_response_at IS NULL
                            AND greatest(s.first_contact_message_at, s.assigned_at)
                                + make_interval(mins => t.reassign_after_minutes) <= tick_assignments.now))))
        ORDER BY s.started_at, s.id
        LIMIT batch_size
    LOOP
        DECLARE
            s ventros.sessions;
        BEGIN
            SELECT * INTO s FROM ventros.sessions x WHERE x.tenant_id = tenant AND x.id = job.id AND x.status = 'active'
            FOR UPDATE SKIP LOCKED;
            CONTINUE WHEN NOT FOUND;
            picked := ventros.next_team_agent(s.team_id, job.strategy, CASE WHEN s.assigned_agent_id IS NULL THEN '{}'::uuid[]
                                                                            ELSE ARRAY[s.assigned_agent_id] END);
            CONTINUE WHEN picked IS NULL;
            PERFORM ventros.set_session_agent(s, picked, coalesce(job.reason, job.strategy), tick_assignments.now);
            n := n + 1;
        END;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.tick_assignments(timestamptz, integer) IS
    'Applies the acting tenant''s teams'' reassignment rules at now (agent offline or inactive: reason agent_offline; first message unanswered reassign_after_minutes after it came or the agent got it: no_response; at most max_reassignments) and assigns sessions waiting on a team; returns how many got an agent; emits session.agent_assigned';


INSERT INTO ventros.scheduled_jobs (name, schedule, command, purpose) VALUES
    ('ventros-tick-assignments', '* * * * *',
     'SELECT count(*) FROM ventros.run_per_tenant(''ventros-tick-assignments'', ''SELECT pg_catalog.to_jsonb(ventros.tick_assignments($1))'')',
     'reassignment rules of teams (agent offline, no first response in N minutes) and sessions waiting on a team');
GRANT EXECUTE ON FUNCTION ventros.set_session_agent(ventros.sessions, uuid, text, timestamptz),
    ventros.next_team_agent(uuid, text, uuid[]), ventros.put_session_on_team(ventros.sessions, uuid, text, timestamptz),
    ventros.auto_assign_session(ventros.sessions, timestamptz) TO ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.tick_assignments(timestamptz, integer) TO ventros_platform_admin;

-- ---- group chats (sql/89_inbound.sql, sql/89_inbound_waha.sql)
-- WAHA group messages create or update their chat (chats.external_id = the
-- @g.us id) and participants; inbound_message gains chat_id, which the
-- message points at.
DROP FUNCTION ventros.inbound_message(ventros.channels, text, boolean, text, text, text, timestamptz, text, text, text, jsonb, text);
CREATE FUNCTION ventros.inbound_message(
    ch             ventros.channels,
    sender         text,
    from_me        boolean,
    provider_id    text,
    content_type   text,
    body           text,
    at             timestamptz,
    sender_name    text DEFAULT NULL,
    media_url      text DEFAULT NULL,
    media_mimetype text DEFAULT NULL,
    metadata       jsonb DEFAULT NULL,
    replied_id     text DEFAULT NULL,
    chat_id        uuid DEFAULT NULL)
RETURNS ventros.inbox_outcome
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m ventros.messages;
    contact uuid;
    s ventros.sessions;
    extra jsonb;
    placeholder text;
BEGIN
    provider_id := ventros.inbound_require(provider_id, 'message id');
    sender := ventros.inbound_require(sender, CASE WHEN from_me THEN 'recipient' ELSE 'sender' END);
    at := coalesce(at, now());
    body := nullif(body, '');
    -- Media without a usable URL (not downloaded by WAHA, expired, ...): the
    -- message is kept as text saying so, the media details in metadata.
    IF content_type IN ('image', 'video', 'audio', 'voice', 'document', 'sticker') AND media_url IS NULL THEN
        placeholder := '[' || content_type || ']';
        metadata := coalesce(metadata, '{}') || jsonb_build_object('media_missing', true, 'media_type', content_type);
        content_type := 'text';
        body := coalesce(body, placeholder);
    END IF;
    IF content_type = 'text' AND body IS NULL THEN
        RAISE EXCEPTION 'webhook message % has no text', provider_id USING ERRCODE = '22023';
    END IF;
    IF NOT from_me THEN
        m := ventros.receive_message(ch.id, sender, body, content_type, provider_id, at, sender_name, media_url,
                                     media_mimetype, metadata, chat_id);
        m := ventros.inbound_link_reply(ch, m, replied_id);
        extra := ventros.inbound_media_hook(m);
        RETURN ventros.inbox_outcome('processed', m.id, m.contact_id, extra);
    END IF;

    -- An echo: ours (known id), ours still being sent, or sent from another device.
    m := ventros.inbound_find_message(ch, provider_id);
    IF m.id IS NOT NULL THEN
        RETURN ventros.inbox_outcome('processed', m.id, m.contact_id, '{"echo": "known"}');
    END IF;
    contact := ventros.inbound_contact(ch, sender);
    SELECT * INTO m FROM ventros.messages x
    WHERE x.tenant_id = ch.tenant_id AND x.channel_id = ch.id AND x.contact_id = contact AND x.from_me
      AND x.channel_message_id IS NULL AND x.deleted_at IS NULL AND x.status IN ('queued', 'sent')
      AND x.text IS NOT DISTINCT FROM body
      -- sent moments ago (by our clock or the provider's, whichever is earlier)
      AND x."timestamp" BETWEEN least(at, now()) - interval '10 minutes' AND greatest(at, now()) + interval '10 minutes'
    ORDER BY x."timestamp", x.id LIMIT 1
    FOR UPDATE;
    IF m.id IS NOT NULL AND m.status = 'queued' THEN
        -- Our send has not recorded its answer yet: wait for it (the id will match).
        RETURN ventros.inbox_outcome('unmatched', m.id, contact, '{"echo": "send in progress"}');
    ELSIF m.id IS NOT NULL THEN
        -- Sent, but the provider answered without an id: this echo tells it.
        UPDATE ventros.messages x SET channel_message_id = provider_id, version = m.version
        WHERE x.tenant_id = m.tenant_id AND x.id = m.id RETURNING * INTO m;
        RETURN ventros.inbox_outcome('processed', m.id, contact, '{"echo": "bound"}');
    END IF;
    s := ventros.start_or_continue_session(contact, ch.id, at);
    INSERT INTO ventros.messages ("timestamp", project_id, channel_id, channel_type_id, session_id, contact_id, from_me,
                                  content_type, text, media_url, media_mimetype, channel_message_id, status, agent_id,
                                  source, metadata)
    VALUES (at, ch.project_id, ch.id, s.channel_type_id, s.id, contact, true, content_type,
            ventros.check_length(body, 4096, 'message text'), media_url, media_mimetype, provider_id, 'sent',
            coalesce(ch.default_agent_id, ventros.system_agent_id('default')), 'manual',
            coalesce(metadata, '{}') || '{"echo": true}')
    ON CONFLICT (tenant_id, channel_id, channel_message_id) WHERE deleted_at IS NULL AND channel_message_id IS NOT NULL
    DO NOTHING
    RETURNING * INTO m;
    IF m.id IS NULL THEN
        m := ventros.inbound_find_message(ch, provider_id);
        RETURN ventros.inbox_outcome('processed', m.id, m.contact_id, '{"echo": "known"}');
    END IF;
    PERFORM ventros.record_message_effects(m, s);
    m := ventros.inbound_link_reply(ch, m, replied_id);
    RETURN ventros.inbox_outcome('processed', m.id, contact, '{"echo": "other_device"}');
EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION 'invalid webhook message: %', SQLERRM USING ERRCODE = '23514';
END
$$;
COMMENT ON FUNCTION ventros.inbound_message(ventros.channels, text, boolean, text, text, text, timestamptz, text, text, text, jsonb, text, uuid) IS
    'Records an inbound message (receive_message), or an echo of an outbound one: matched to the message we sent (by provider id; an id-less sent one with the same text gets the id; a queued one makes the echo wait, unmatched), else stored as sent from another device; chat_id: the group chat an inbound message belongs to';

CREATE FUNCTION ventros.inbound_group_chat(ch ventros.channels, group_id text, at timestamptz) RETURNS ventros.chats
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c ventros.chats;
BEGIN
    group_id := ventros.check_length(ventros.inbound_require(group_id, 'group id'), 200, 'group id');
    FOR attempt IN 1..2 LOOP
        SELECT * INTO c FROM ventros.chats x
        WHERE x.tenant_id = ch.tenant_id AND x.channel_id = ch.id AND x.external_id = group_id AND x.deleted_at IS NULL
        FOR UPDATE;
        IF FOUND THEN
            IF c.status <> 'closed' AND (c.last_message_at IS NULL OR c.last_message_at < at) THEN
                UPDATE ventros.chats x SET last_message_at = at, version = c.version
                WHERE x.tenant_id = c.tenant_id AND x.id = c.id RETURNING * INTO c;
            END IF;
            RETURN c;
        END IF;
        INSERT INTO ventros.chats (project_id, channel_id, chat_type, external_id, subject, created_by, last_message_at, metadata)
        VALUES (ch.project_id, ch.id, 'group', group_id, group_id,
                coalesce(ch.default_agent_id, ventros.system_agent_id('default')), at,
                jsonb_build_object('provider', ch.type))
        ON CONFLICT (tenant_id, channel_id, external_id) WHERE deleted_at IS NULL AND external_id IS NOT NULL DO NOTHING
        RETURNING * INTO c;
        IF c.id IS NOT NULL THEN
            RETURN c;
        END IF;
        -- Another transaction created it first: take that one.
    END LOOP;
    RAISE EXCEPTION 'could not create the chat of group %', group_id USING ERRCODE = '40001';
END
$$;
COMMENT ON FUNCTION ventros.inbound_group_chat(ventros.channels, text, timestamptz) IS
    'The live group chat of a channel with a provider group id, created at its first message (emits chat.created), last_message_at kept; race-free on chats_unique_external_id';

CREATE FUNCTION ventros.inbound_chat_participant(c ventros.chats, contact_id uuid, at timestamptz) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    added uuid;
BEGIN
    IF c.status = 'closed' OR contact_id IS NULL THEN
        RETURN false;
    END IF;
    INSERT INTO ventros.chat_participants (chat_id, participant_id, participant_type, joined_at)
    VALUES (c.id, contact_id, 'contact', at)
    ON CONFLICT (tenant_id, chat_id, participant_id) WHERE left_at IS NULL AND deleted_at IS NULL DO NOTHING
    RETURNING id INTO added;
    IF added IS NULL THEN
        RETURN false;
    END IF;
    PERFORM ventros.emit('chat.participant_added', 'chat', c.id,
                         jsonb_build_object('participant_id', contact_id, 'participant_type', 'contact', 'is_admin', false,
                                            'source', 'inbound'), c.version);
    RETURN true;
END
$$;
COMMENT ON FUNCTION ventros.inbound_chat_participant(ventros.chats, uuid, timestamptz) IS
    'Adds the contact who wrote in a group chat as a participant when not one yet (emits chat_participant.created and chat.participant_added); returns whether it was added';

CREATE OR REPLACE FUNCTION ventros.waha_message(ch ventros.channels, doc jsonb) RETURNS ventros.inbox_outcome
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p jsonb := doc->'payload';
    info jsonb := p->'_data'->'Info';
    msg jsonb := p->'_data'->'Message';
    from_me boolean;
    chat text;
    sender text;
    jids text[];
    kind text;
    body text;
    media_url text;
    mime text;
    meta jsonb := '{}';
    loc jsonb;
    ctx jsonb;
    ad jsonb;
    o ventros.inbox_outcome;
    extra jsonb;
    at timestamptz;
    grp ventros.chats;
BEGIN
    IF jsonb_typeof(p) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'WAHA message.any without a payload object' USING ERRCODE = '22023';
    END IF;
    from_me := coalesce(p->>'fromMe' = 'true', false);
    chat := CASE WHEN from_me THEN coalesce(ventros.json_text(p, 'to'), ventros.json_text(info, 'Chat'))
                 ELSE ventros.json_text(p, 'from') END;
    chat := ventros.inbound_require(chat, CASE WHEN from_me THEN 'recipient (payload.to)' ELSE 'sender (payload.from)' END);
    IF chat = 'status@broadcast' OR chat LIKE '%@broadcast' OR chat LIKE '%@newsletter' THEN
        RETURN ventros.inbox_outcome('ignored', NULL, NULL, '{"reason": "status or broadcast, not a conversation"}');
    END IF;
    IF chat LIKE '%@g.us' THEN
        IF NOT ch.allow_groups OR from_me THEN
            RETURN ventros.inbox_outcome('ignored', NULL, NULL, '{"reason": "group message on a channel without groups"}');
        END IF;
        meta := meta || jsonb_build_object('group_id', chat);
        jids := ARRAY[ventros.json_text(p, 'participant'), ventros.json_text(info, 'Sender'), ventros.json_text(info, 'SenderAlt')];
    ELSIF from_me THEN
        jids := ARRAY[chat, ventros.json_text(info, 'Chat'), ventros.json_text(info, 'RecipientAlt'), ventros.json_text(info, 'ChatAlt')];
    ELSE
        jids := ARRAY[chat, ventros.json_text(info, 'Sender'), ventros.json_text(info, 'SenderAlt'), ventros.json_text(info, 'Chat')];
    END IF;
    sender := ventros.inbound_whatsapp_sender(ch, array_remove(jids, NULL),
                                              CASE WHEN NOT from_me THEN coalesce(ventros.json_text(info, 'PushName'),
                                                                                  ventros.json_text(p, '_data', 'notifyName')) END);
    kind := ventros.waha_content_type(p);
    body := coalesce(nullif(ventros.json_text(p, 'body'), ''), ventros.json_text(msg, 'conversation'),
                     ventros.json_text(msg, 'extendedTextMessage', 'text'), ventros.json_text(msg, 'imageMessage', 'caption'),
                     ventros.json_text(msg, 'videoMessage', 'caption'), ventros.json_text(msg, 'documentMessage', 'caption'));
    IF kind IN ('image', 'video', 'audio', 'voice', 'document', 'sticker') THEN
        media_url := CASE WHEN p->>'hasMedia' = 'true' OR jsonb_typeof(p->'media') = 'object'
                          THEN ventros.inbound_http_url(p->'media'->>'url') END;
        mime := coalesce(ventros.json_text(p, 'media', 'mimetype'), ventros.json_text(msg, kind || 'Message', 'mimetype'));
        meta := meta || jsonb_build_object('media', jsonb_strip_nulls(jsonb_build_object(
            'provider', 'waha', 'url', p->'media'->'url', 'mimetype', mime,
            'filename', coalesce(p->'media'->'filename', msg->'documentMessage'->'fileName'),
            's3', p->'media'->'s3', 'error', p->'media'->'error')));
    ELSIF kind = 'location' THEN
        loc := coalesce(msg->'locationMessage', msg->'liveLocationMessage', p->'location');
        meta := meta || jsonb_build_object('location', jsonb_strip_nulls(jsonb_build_object(
            'latitude', coalesce(loc->'degreesLatitude', loc->'latitude'), 'longitude', coalesce(loc->'degreesLongitude', loc->'longitude'),
            'name', loc->'name', 'address', coalesce(loc->'address', loc->'description'))));
        body := coalesce(nullif(ventros.json_text(loc, 'name'), ''), nullif(ventros.json_text(loc, 'address'), ''),
                         nullif(ventros.json_text(loc, 'description'), ''), body);
    ELSIF kind = 'contact' THEN
        meta := meta || jsonb_build_object('vcard', coalesce(msg->'contactMessage'->'vcard', p->'vCards'));
        body := coalesce(ventros.json_text(msg, 'contactMessage', 'displayName'), body, '[contact]');
    END IF;
    -- Click-to-WhatsApp ads (the original kept them as tracking data).
    ctx := coalesce(msg->'extendedTextMessage'->'contextInfo', msg->'imageMessage'->'contextInfo',
                    msg->'videoMessage'->'contextInfo');
    ad := ctx->'externalAdReply';
    IF jsonb_typeof(ad) = 'object' THEN
        meta := meta || jsonb_build_object('ad', jsonb_strip_nulls(jsonb_build_object(
            'conversion_source', ctx->'conversionSource', 'entry_point', ctx->'entryPointConversionSource',
            'entry_point_app', ctx->'entryPointConversionApp', 'source_type', ad->'sourceType', 'source_id', ad->'sourceID',
            'source_app', ad->'sourceApp', 'source_url', ad->'sourceURL', 'ctwa_clid', ad->'ctwaClid', 'title', ad->'title')));
    END IF;
    at := coalesce(ventros.inbound_time(ventros.json_text(p, 'timestamp')), ventros.inbound_time(ventros.json_text(doc, 'timestamp')));
    IF chat LIKE '%@g.us' THEN
        grp := ventros.inbound_group_chat(ch, chat, coalesce(at, now()));
    END IF;
    o := ventros.inbound_message(ch, sender, from_me, ventros.json_text(p, 'id'), kind, body, at,
                                 CASE WHEN NOT from_me THEN coalesce(ventros.json_text(info, 'PushName'), ventros.json_text(p, '_data', 'notifyName')) END,
                                 media_url, mime, CASE WHEN meta <> '{}' THEN meta END,
                                 coalesce(ventros.json_text(p, 'replyTo', 'id'), ventros.json_text(p, 'replyTo'),
                                          ventros.json_text(ctx, 'stanzaId')), grp.id);
    IF grp.id IS NOT NULL THEN
        PERFORM ventros.inbound_chat_participant(grp, o.contact_id, coalesce(at, now()));
    END IF;
    IF jsonb_typeof(ad) = 'object' AND NOT from_me AND o.message_id IS NOT NULL THEN
        extra := ventros.inbound_tracking(o.contact_id, (SELECT m.session_id FROM ventros.messages m WHERE m.tenant_id = ch.tenant_id AND m.id = o.message_id),
                                          'meta_ads', 'whatsapp', ventros.json_text(ad, 'sourceID'), ventros.json_text(ad, 'sourceURL'),
                                          ventros.json_text(ad, 'ctwaClid'), ventros.json_text(ad, 'title'), ad);
        o.result := coalesce(o.result, '{}') || extra;
    END IF;
    RETURN o;
END
$$;
COMMENT ON FUNCTION ventros.waha_message(ventros.channels, jsonb) IS
    'A WAHA message.any: sender (@c.us / @lid linked), content type, text, media URL and mimetype, location, contact card, reply, click-to-WhatsApp ad tracking; fromMe echoes matched to our sends; a group message (@g.us) creates or updates its chat and participant, the message points at the chat';

-- ---- session snooze (sql/37_sessions.sql, 45_contact_merge.sql, 50_crm_reports.sql, 74_automations.sql, 83_automation_rules.sql)
-- Sessions can be snoozed: a state of the session machine (active -> snoozed
-- -> active, session.snoozed / session.unsnoozed; a snoozed one can end),
-- woken by tick_sessions at snoozed_until, by a message, or by hand.  A
-- snoozed session stays the contact's one open session on its channel.
ALTER TABLE ventros.sessions ADD COLUMN snoozed_until timestamptz,
    DROP CONSTRAINT sessions_status_known,
    ADD CONSTRAINT sessions_status_known CHECK (status IN ('active', 'snoozed', 'ended', 'expired', 'manually_closed')),
    DROP CONSTRAINT sessions_ended_consistent,
    ADD CONSTRAINT sessions_ended_consistent CHECK ((status IN ('active', 'snoozed')) = (ended_at IS NULL)
                                                    AND (status IN ('active', 'snoozed')) = (end_reason IS NULL)),
    ADD CONSTRAINT sessions_snoozed_until_set CHECK ((status = 'snoozed') = (snoozed_until IS NOT NULL)),
    DROP CONSTRAINT sessions_resolved_after_end,
    ADD CONSTRAINT sessions_resolved_after_end CHECK (NOT resolved OR status NOT IN ('active', 'snoozed'));
DROP INDEX ventros.sessions_one_active;
CREATE UNIQUE INDEX sessions_one_active ON ventros.sessions (tenant_id, contact_id, channel_id)
    WHERE status IN ('active', 'snoozed') AND deleted_at IS NULL;
CREATE INDEX sessions_snoozed ON ventros.sessions (snoozed_until) WHERE status = 'snoozed' AND deleted_at IS NULL;
SELECT ventros.expose_api();
SELECT ventros.register_event_type('session.snoozed', 'A session was snoozed until an instant (snoozed_until).');
SELECT ventros.register_event_type('session.unsnoozed', 'A snoozed session woke up: its time came (tick_sessions), a message arrived, or it was woken by hand.');
INSERT INTO ventros.aggregate_transitions (aggregate, from_state, to_state, event_type) VALUES
    ('session', 'active', 'snoozed', 'session.snoozed'),
    ('session', 'snoozed', 'active', 'session.unsnoozed'),
    ('session', 'snoozed', 'ended', 'session.ended'),
    ('session', 'snoozed', 'expired', 'session.ended'),
    ('session', 'snoozed', 'manually_closed', 'session.ended');

CREATE OR REPLACE FUNCTION ventros.complete_session_end() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.status <> 'snoozed' THEN
        NEW.snoozed_until := NULL;
    END IF;
    IF OLD.status IN ('active', 'snoozed') AND NEW.status NOT IN ('active', 'snoozed') THEN
        NEW.ended_at := coalesce(NEW.ended_at, greatest(now(), NEW.started_at));
        NEW.end_reason := coalesce(NEW.end_reason, CASE NEW.status WHEN 'expired' THEN 'inactivity_timeout'
                                                                   WHEN 'manually_closed' THEN 'manual_close'
                                                                   ELSE 'system_close' END);
        NEW.duration_seconds := extract(epoch FROM NEW.ended_at - NEW.started_at)::integer;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION ventros.complete_session_end() IS
    'Trigger: a session ending (leaving active or snoozed) gets ended_at, end_reason (by status) and duration when the writer did not set them; one not snoozed has no snoozed_until';

CREATE FUNCTION ventros.wake_session(s ventros.sessions, at timestamptz)
RETURNS ventros.sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.sessions;
BEGIN
    UPDATE ventros.sessions t
    SET status = 'active', snoozed_until = NULL,
        expires_at = greatest(t.expires_at, at + make_interval(secs => t.timeout_seconds)), version = s.version
    WHERE t.tenant_id = s.tenant_id AND t.id = s.id
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.wake_session(ventros.sessions, timestamptz) IS
    'Makes a locked snoozed session active again at an instant, expiring no earlier than a timeout later (internal); emits session.unsnoozed';

CREATE OR REPLACE FUNCTION ventros.start_or_continue_session(contact_id uuid, channel_id uuid, at timestamptz DEFAULT now())
RETURNS ventros.sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    tenant text := ventros.require_tenant();
    result ventros.sessions;
    ch ventros.channels;
    timeout integer;
BEGIN
    at := coalesce(at, now());
    FOR attempt IN 1..3 LOOP
        SELECT * INTO result FROM ventros.sessions s
        WHERE s.tenant_id = tenant AND s.contact_id = start_or_continue_session.contact_id
          AND s.channel_id = start_or_continue_session.channel_id AND s.status IN ('active', 'snoozed')
          AND s.deleted_at IS NULL
        FOR UPDATE;
        IF FOUND THEN
            IF result.status = 'snoozed' THEN
                result := ventros.wake_session(result, at);     -- a message wakes it
            END IF;
            IF at <= result.expires_at THEN
                RETURN result;
            END IF;
            PERFORM ventros.finish_session(result, 'inactivity_timeout', result.expires_at);
        END IF;
        IF ch.id IS NULL THEN
            SELECT * INTO ch FROM ventros.channels c WHERE c.tenant_id = tenant AND c.id = start_or_continue_session.channel_id;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'channel % not found', channel_id USING ERRCODE = 'P0002';
            END IF;
            timeout := ventros.session_timeout_seconds(ch.id);
        END IF;
        INSERT INTO ventros.sessions (project_id, contact_id, channel_id, channel_type_id, pipeline_id, started_at,
                                      last_activity_at, timeout_seconds, expires_at)
        VALUES (ch.project_id, contact_id, channel_id, ventros.channel_type_id(ch.type), ch.pipeline_id, at, at,
                timeout, at + make_interval(secs => timeout))
        ON CONFLICT (tenant_id, contact_id, channel_id) WHERE status IN ('active', 'snoozed') AND deleted_at IS NULL DO NOTHING
        RETURNING * INTO result;
        IF result.id IS NOT NULL THEN
            RETURN result;
        END IF;
        result := NULL;
        -- Another transaction started it first: continue that one.
    END LOOP;
    RAISE EXCEPTION 'could not start or continue a session for contact % on channel %', contact_id, channel_id
        USING ERRCODE = '40001';
EXCEPTION WHEN foreign_key_violation THEN
    RAISE EXCEPTION 'contact % not found', contact_id USING ERRCODE = 'P0002';
END
$$;
COMMENT ON FUNCTION ventros.start_or_continue_session(uuid, uuid, timestamptz) IS
    'The active session of a contact on a channel, started if there is none or it expired, woken if snoozed (race-free on sessions_one_active); emits session.started, session.unsnoozed, and session.ended for an expired one';

CREATE OR REPLACE FUNCTION ventros.close_session(session_id uuid, expected_version integer DEFAULT NULL,
                                      end_reason text DEFAULT 'manual_close', at timestamptz DEFAULT now())
RETURNS ventros.sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.sessions;
BEGIN
    IF end_reason IS NULL OR end_reason NOT IN ('inactivity_timeout', 'manual_close', 'contact_request', 'agent_close',
                                                'system_close', 'saga_rollback') THEN
        RAISE EXCEPTION 'unknown end reason "%"', left(end_reason, 32) USING ERRCODE = '22023',
            HINT = 'Use manual_close, agent_close, contact_request, system_close, inactivity_timeout or saga_rollback.';
    END IF;
    s := ventros.lock_session(session_id, expected_version);
    IF s.status NOT IN ('active', 'snoozed') THEN
        RAISE EXCEPTION 'session % cannot change status from "%" to "%"', session_id, s.status,
            ventros.session_status_for(end_reason)
            USING ERRCODE = 'VN002', DETAIL = 'Only an active or snoozed session can end.';
    END IF;
    RETURN ventros.finish_session(s, end_reason, coalesce(at, now()));
END
$$;
COMMENT ON FUNCTION ventros.close_session(uuid, integer, text, timestamptz) IS
    'Ends an active or snoozed session with a reason: expired, manually_closed or ended (VN002 otherwise); emits session.ended';

CREATE FUNCTION ventros.snooze_session(session_id uuid, until timestamptz, expected_version integer DEFAULT NULL)
RETURNS ventros.sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.sessions;
    result ventros.sessions;
BEGIN
    IF until IS NULL OR until <= now() THEN
        RAISE EXCEPTION 'a session is snoozed until a later instant' USING ERRCODE = '22023',
            DETAIL = format('until %s is not after now (%s).', until, now());
    END IF;
    s := ventros.lock_session(session_id, expected_version);
    IF s.status <> 'active' THEN
        RAISE EXCEPTION 'session % cannot change status from "%" to "snoozed"', session_id, s.status
            USING ERRCODE = 'VN002', DETAIL = 'Only an active session can be snoozed.';
    END IF;
    UPDATE ventros.sessions t SET status = 'snoozed', snoozed_until = until, version = s.version
    WHERE t.tenant_id = s.tenant_id AND t.id = s.id
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.snooze_session(uuid, timestamptz, integer) IS
    'Snoozes an active session until a later instant (22023 otherwise; VN002 unless active); tick_sessions or a message wakes it; emits session.snoozed';

CREATE FUNCTION ventros.unsnooze_session(session_id uuid, expected_version integer DEFAULT NULL)
RETURNS ventros.sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.sessions := ventros.lock_session(session_id, expected_version);
BEGIN
    IF s.status <> 'snoozed' THEN
        RAISE EXCEPTION 'session % cannot change status from "%" to "active"', session_id, s.status
            USING ERRCODE = 'VN002', DETAIL = 'Only a snoozed session can be woken.';
    END IF;
    RETURN ventros.wake_session(s, now());
END
$$;
COMMENT ON FUNCTION ventros.unsnooze_session(uuid, integer) IS
    'Wakes a snoozed session before its time (VN002 unless snoozed); emits session.unsnoozed';

CREATE OR REPLACE FUNCTION ventros.tick_sessions(now timestamptz DEFAULT now(), batch_size integer DEFAULT 1000)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.sessions;
    tenant text := ventros.current_tenant();
    n integer := 0;
BEGIN
    -- Snoozed sessions whose time came wake up first (and expire no earlier
    -- than a timeout later).
    FOR s IN
        SELECT * FROM ventros.sessions t
        WHERE t.status = 'snoozed' AND t.deleted_at IS NULL AND t.snoozed_until <= tick_sessions.now
          AND (tenant IS NULL OR t.tenant_id = tenant)
        ORDER BY t.snoozed_until
        LIMIT batch_size
        FOR UPDATE SKIP LOCKED
    LOOP
        PERFORM ventros.wake_session(s, s.snoozed_until);
        n := n + 1;
    END LOOP;
    FOR s IN
        SELECT * FROM ventros.sessions t
        WHERE t.status = 'active' AND t.deleted_at IS NULL AND t.expires_at < tick_sessions.now
          AND (tenant IS NULL OR t.tenant_id = tenant)
        ORDER BY t.expires_at
        LIMIT batch_size
        FOR UPDATE SKIP LOCKED
    LOOP
        PERFORM ventros.finish_session(s, 'inactivity_timeout', s.expires_at);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.tick_sessions(timestamptz, integer) IS
    'Wakes snoozed sessions whose snoozed_until is at or before now (session.unsnoozed), then expires active sessions whose last activity + timeout is before now (end_reason inactivity_timeout, ended_at = the expiry; session.ended); returns how many it woke or ended';

CREATE OR REPLACE FUNCTION ventros.stats_count_session_change() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    first_response boolean := OLD.first_agent_response_at IS NULL AND NEW.first_agent_response_at IS NOT NULL;
    ended boolean := OLD.ended_at IS NULL AND NEW.ended_at IS NOT NULL;     -- not a snooze
BEGIN
    IF first_response THEN
        INSERT INTO ventros.crm_daily_stats AS d (tenant_id, day, channel_id, agent_id, team_id, slot,
                                                  first_responses, first_response_seconds)
        VALUES (NEW.tenant_id, (NEW.first_agent_response_at AT TIME ZONE 'UTC')::date, NEW.channel_id,
                coalesce(NEW.assigned_agent_id, '00000000-0000-0000-0000-000000000000'),
                coalesce(NEW.team_id, '00000000-0000-0000-0000-000000000000'), ventros.stats_slot(),
                1, coalesce(NEW.agent_response_time_seconds, 0))
        ON CONFLICT (tenant_id, day, channel_id, agent_id, team_id, slot) DO UPDATE
        SET first_responses = d.first_responses + 1,
            first_response_seconds = d.first_response_seconds + EXCLUDED.first_response_seconds;
    END IF;
    IF ended THEN
        INSERT INTO ventros.crm_daily_stats AS d (tenant_id, day, channel_id, agent_id, team_id, slot,
                                                  sessions_ended, resolutions, resolution_seconds)
        VALUES (NEW.tenant_id, (NEW.ended_at AT TIME ZONE 'UTC')::date, NEW.channel_id,
                coalesce(NEW.assigned_agent_id, '00000000-0000-0000-0000-000000000000'),
                coalesce(NEW.team_id, '00000000-0000-0000-0000-000000000000'), ventros.stats_slot(),
                1, (NEW.first_agent_response_at IS NOT NULL)::integer,
                CASE WHEN NEW.first_agent_response_at IS NOT NULL
                     THEN extract(epoch FROM NEW.ended_at - NEW.started_at)::bigint ELSE 0 END)
        ON CONFLICT (tenant_id, day, channel_id, agent_id, team_id, slot) DO UPDATE
        SET sessions_ended = d.sessions_ended + 1, resolutions = d.resolutions + EXCLUDED.resolutions,
            resolution_seconds = d.resolution_seconds + EXCLUDED.resolution_seconds;
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.stats_count_session_change() IS
    'Row trigger: counts a session''s first agent response and its end (resolution time = end - start of sessions that got a response)';

DROP TRIGGER stats_count_session_change ON ventros.sessions;
CREATE TRIGGER stats_count_session_change AFTER UPDATE ON ventros.sessions
    FOR EACH ROW
    WHEN ((OLD.first_agent_response_at IS NULL AND NEW.first_agent_response_at IS NOT NULL)
          OR (OLD.ended_at IS NULL AND NEW.ended_at IS NOT NULL))
    EXECUTE FUNCTION ventros.stats_count_session_change();

CREATE OR REPLACE FUNCTION ventros.merge_contacts(primary_id uuid, merged_ids uuid[], strategy text DEFAULT 'keep_primary',
                                       expected_version integer DEFAULT NULL)
RETURNS ventros.contacts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    p ventros.contacts;
    other ventros.contacts;
    locked integer;
    s ventros.sessions;
    moved_sessions integer := 0;
    moved_messages integer := 0;
    moved_notes integer := 0;
    moved_lists integer := 0;
    n integer;
    all_tags text[];
    fill jsonb := '{}';
    result ventros.contacts;
BEGIN
    IF primary_id IS NULL OR merged_ids IS NULL OR cardinality(merged_ids) = 0 THEN
        RAISE EXCEPTION 'a merge needs a primary contact and at least one other' USING ERRCODE = '23502';
    END IF;
    IF primary_id = ANY (merged_ids) OR NOT ventros.is_distinct_array(merged_ids::text[]) THEN
        RAISE EXCEPTION 'merged contacts must be distinct and other than the primary' USING ERRCODE = '22023';
    END IF;
    IF cardinality(merged_ids) > 100 THEN
        RAISE EXCEPTION 'at most 100 contacts are merged at once' USING ERRCODE = '54000';
    END IF;
    IF strategy NOT IN ('keep_primary', 'fill_empty') THEN
        RAISE EXCEPTION 'unknown merge strategy "%"', left(strategy, 32) USING ERRCODE = '22023',
            HINT = 'Use keep_primary (the primary''s fields win) or fill_empty (empty fields of the primary are filled).';
    END IF;
    SELECT count(*) INTO locked FROM (
        SELECT c.id FROM ventros.contacts c
        WHERE c.tenant_id = tenant AND (c.id = primary_id OR c.id = ANY (merged_ids))
        ORDER BY c.id FOR UPDATE) l;
    IF locked <> 1 + cardinality(merged_ids) THEN
        RAISE EXCEPTION 'contact % not found', (SELECT x FROM unnest(primary_id || merged_ids) x
                                                WHERE NOT EXISTS (SELECT 1 FROM ventros.contacts c
                                                                  WHERE c.tenant_id = tenant AND c.id = x) LIMIT 1)
            USING ERRCODE = 'P0002';
    END IF;
    SELECT * INTO p FROM ventros.contacts c WHERE c.tenant_id = tenant AND c.id = primary_id;
    PERFORM ventros.require_version('contact', primary_id, expected_version, p.version);
    all_tags := p.tags;

    FOR other IN SELECT * FROM ventros.contacts c WHERE c.tenant_id = tenant AND c.id = ANY (merged_ids) ORDER BY c.created_at, c.id LOOP
        -- Sessions: an open one (active or snoozed) where the primary has one on the same channel ends first.
        FOR s IN SELECT * FROM ventros.sessions x
                 WHERE x.tenant_id = tenant AND x.contact_id = other.id AND x.status IN ('active', 'snoozed')
                   AND EXISTS (SELECT 1 FROM ventros.sessions y WHERE y.tenant_id = tenant AND y.contact_id = p.id
                               AND y.channel_id = x.channel_id AND y.status IN ('active', 'snoozed'))
                 FOR UPDATE LOOP
            PERFORM ventros.finish_session(s, 'system_close', now());
        END LOOP;
        UPDATE ventros.sessions x SET contact_id = p.id, version = x.version WHERE x.tenant_id = tenant AND x.contact_id = other.id;
        GET DIAGNOSTICS n = ROW_COUNT; moved_sessions := moved_sessions + n;
        UPDATE ventros.messages x SET contact_id = p.id, version = x.version WHERE x.tenant_id = tenant AND x.contact_id = other.id;
        GET DIAGNOSTICS n = ROW_COUNT; moved_messages := moved_messages + n;
        UPDATE ventros.notes x SET contact_id = p.id, version = x.version WHERE x.tenant_id = tenant AND x.contact_id = other.id;
        GET DIAGNOSTICS n = ROW_COUNT; moved_notes := moved_notes + n;
        -- Pipeline stays: the primary's open row in a pipeline wins; the other's closes.
        UPDATE ventros.contact_pipeline_statuses x
        SET exited_at = greatest(now(), x.entered_at), duration = extract(epoch FROM greatest(now(), x.entered_at) - x.entered_at)::bigint,
            version = x.version
        WHERE x.tenant_id = tenant AND x.contact_id = other.id AND x.exited_at IS NULL
          AND EXISTS (SELECT 1 FROM ventros.contact_pipeline_statuses y WHERE y.tenant_id = tenant AND y.contact_id = p.id
                      AND y.pipeline_id = x.pipeline_id AND y.exited_at IS NULL);
        UPDATE ventros.contact_pipeline_statuses x SET contact_id = p.id, version = x.version
        WHERE x.tenant_id = tenant AND x.contact_id = other.id;
        -- Identities, custom fields, consents: what the primary lacks moves, duplicates go.
        DELETE FROM ventros.contact_identities x WHERE x.tenant_id = tenant AND x.contact_id = other.id
          AND EXISTS (SELECT 1 FROM ventros.contact_identities y WHERE y.tenant_id = tenant AND y.contact_id = p.id
                      AND y.identity_type = x.identity_type AND y.value = x.value);
        UPDATE ventros.contact_identities x SET contact_id = p.id, version = x.version
        WHERE x.tenant_id = tenant AND x.contact_id = other.id;
        DELETE FROM ventros.contact_custom_fields x WHERE x.tenant_id = tenant AND x.contact_id = other.id
          AND EXISTS (SELECT 1 FROM ventros.contact_custom_fields y WHERE y.tenant_id = tenant AND y.contact_id = p.id
                      AND y.field_key = x.field_key);
        UPDATE ventros.contact_custom_fields x SET contact_id = p.id, version = x.version
        WHERE x.tenant_id = tenant AND x.contact_id = other.id;
        -- Consent: an opt-out of either contact survives.
        UPDATE ventros.contact_consents y SET status = 'opted_out', source = 'manual', reason = 'merged', version = y.version
        WHERE y.tenant_id = tenant AND y.contact_id = p.id AND y.status = 'opted_in'
          AND EXISTS (SELECT 1 FROM ventros.contact_consents x WHERE x.tenant_id = tenant AND x.contact_id = other.id
                      AND x.channel_id IS NOT DISTINCT FROM y.channel_id AND x.status = 'opted_out');
        DELETE FROM ventros.contact_consents x WHERE x.tenant_id = tenant AND x.contact_id = other.id
          AND EXISTS (SELECT 1 FROM ventros.contact_consents y WHERE y.tenant_id = tenant AND y.contact_id = p.id
                      AND y.channel_id IS NOT DISTINCT FROM x.channel_id);
        UPDATE ventros.contact_consents x SET contact_id = p.id, version = x.version
        WHERE x.tenant_id = tenant AND x.contact_id = other.id;
        UPDATE ventros.chat_participants x SET participant_id = p.id, version = x.version
        WHERE x.tenant_id = tenant AND x.participant_id = other.id AND x.participant_type = 'contact'
          AND NOT EXISTS (SELECT 1 FROM ventros.chat_participants y WHERE y.tenant_id = tenant AND y.chat_id = x.chat_id
                          AND y.participant_id = p.id AND y.left_at IS NULL);
        -- List memberships belong to another part of the domain; moved when it is installed.
        IF to_regclass('ventros.contact_list_members') IS NOT NULL THEN
            EXECUTE 'DELETE FROM ventros.contact_list_members x WHERE x.tenant_id = $1 AND x.contact_id = $2
                     AND EXISTS (SELECT 1 FROM ventros.contact_list_members y WHERE y.tenant_id = $1
                                 AND y.contact_id = $3 AND y.contact_list_id = x.contact_list_id)'
                USING tenant, other.id, p.id;
            EXECUTE 'UPDATE ventros.contact_list_members x SET contact_id = $3, version = x.version
                     WHERE x.tenant_id = $1 AND x.contact_id = $2'
                USING tenant, other.id, p.id;
            GET DIAGNOSTICS n = ROW_COUNT; moved_lists := moved_lists + n;
        END IF;
        UPDATE ventros.contact_merge_suggestions x SET status = 'accepted', version = x.version
        WHERE x.tenant_id = tenant AND x.status = 'open'
          AND ((x.contact_id = least(p.id, other.id) AND x.other_contact_id = greatest(p.id, other.id)));
        all_tags := all_tags || other.tags;
        IF strategy = 'fill_empty' THEN
            fill := jsonb_strip_nulls(jsonb_build_object(
                        'email', CASE WHEN p.email IS NULL AND NOT fill ? 'email' THEN other.email END,
                        'phone', CASE WHEN p.phone IS NULL AND NOT fill ? 'phone' THEN other.phone END,
                        'external_id', CASE WHEN p.external_id IS NULL AND NOT fill ? 'external_id' THEN other.external_id END,
                        'timezone', CASE WHEN p.timezone IS NULL AND NOT fill ? 'timezone' THEN other.timezone END)) || fill;
        END IF;
        DELETE FROM ventros.contacts c WHERE c.tenant_id = tenant AND c.id = other.id;
    END LOOP;

    UPDATE ventros.contacts c
    SET tags = ARRAY(SELECT DISTINCT t FROM unnest(all_tags) t ORDER BY t),
        email = coalesce(c.email, fill->>'email'), phone = coalesce(c.phone, fill->>'phone'),
        external_id = coalesce(c.external_id, fill->>'external_id'), timezone = coalesce(c.timezone, fill->>'timezone'),
        first_interaction_at = (SELECT min(m."timestamp") FROM ventros.messages m WHERE m.tenant_id = tenant AND m.contact_id = p.id),
        last_interaction_at = (SELECT max(m."timestamp") FROM ventros.messages m WHERE m.tenant_id = tenant AND m.contact_id = p.id),
        version = p.version
    WHERE c.tenant_id = tenant AND c.id = p.id
    RETURNING * INTO result;
    PERFORM ventros.emit('contact.merged', 'contact', p.id,
                         jsonb_build_object('primary_id', p.id, 'merged_ids', to_jsonb(merged_ids), 'strategy', strategy,
                                            'moved', jsonb_build_object('sessions', moved_sessions, 'messages', moved_messages,
                                                                        'notes', moved_notes, 'list_memberships', moved_lists)),
                         result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.merge_contacts(uuid, uuid[], text, integer) IS
    'Merges contacts into a primary: moves sessions (ending an active one that would collide), messages, notes, pipeline history, identities, custom fields, consents (an opt-out survives), chat and list memberships, unions tags; soft-deletes the others; emits contact.merged (and the moved rows'' events, contact.deleted per merged contact)';

CREATE OR REPLACE FUNCTION ventros.automation_catalogue() RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT '{
        "types": ["pipeline_based", "follow_up", "reengagement", "onboarding", "event", "scheduled", "scheduled_report",
                  "time_notification", "webhook", "custom"],
        "triggers": {"session": ["session.ended", "session.timeout", "session.resolved", "session.escalated", "no_response.timeout"],
                     "message": ["message.received"],
                     "pipeline": ["status.changed", "stage.completed"],
                     "temporal": ["after.delay", "scheduled", "date_field.reached"],
                     "transaction": ["purchase.completed", "payment.received", "refund.issued", "cart.abandoned", "order.shipped"],
                     "behavior": ["page.visited", "form.submitted", "file.downloaded"]},
        "actions": ["send_message", "send_template", "change_pipeline_status", "assign_agent", "assign_to_queue", "create_task",
                    "add_tag", "remove_tag", "update_custom_field", "create_note", "create_agent_report", "send_webhook",
                    "trigger_workflow", "notify_agent", "notify_coordinator", "send_email",
                    "assign_team", "set_field", "set_custom_field", "send_canned_response", "add_note",
                    "enroll_sequence", "unenroll_sequence", "add_to_list", "remove_from_list", "close_session",
                    "call_webhook", "emit_event", "notify_agents", "wait", "snooze_session"],
        "condition_operators": ["eq", "ne", "gt", "lt", "gte", "lte", "contains", "not_contains", "starts_with", "ends_with",
                                "in", "not_in", "is_null", "is_not_null", "matches"],
        "logic_operators": ["AND", "OR"],
        "schedule_types": ["once", "daily", "weekly", "monthly", "cron"]
    }'::jsonb
$$;
COMMENT ON FUNCTION ventros.automation_catalogue() IS
    'Discovery: automation types, built-in triggers by category, actions, condition and logic operators, schedule types';


GRANT EXECUTE ON FUNCTION ventros.wake_session(ventros.sessions, timestamptz),
    ventros.snooze_session(uuid, timestamptz, integer), ventros.unsnooze_session(uuid, integer) TO ventros_agent;

-- ---- journeys_and_assignment
-- receive_message and automation_act were changed by two sections above (the
-- journeys: a reply exits sequences; assignment: a new inbound session is
-- assigned; snooze is an action): their final text, as in sql/.

CREATE OR REPLACE FUNCTION ventros.receive_message(
    channel_id         uuid,
    sender             text,
    text               text        DEFAULT NULL,
    content_type       text        DEFAULT 'text',
    channel_message_id text        DEFAULT NULL,
    sent_at            timestamptz DEFAULT NULL,
    sender_name        text        DEFAULT NULL,
    media_url          text        DEFAULT NULL,
    media_mimetype     text        DEFAULT NULL,
    metadata           jsonb       DEFAULT NULL,
    chat_id            uuid        DEFAULT NULL)
RETURNS ventros.messages
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    tenant text := ventros.require_tenant();
    ch ventros.channels;
    contact uuid;
    s ventros.sessions;
    result ventros.messages;
    at timestamptz := coalesce(sent_at, now());
BEGIN
    IF sender IS NULL OR btrim(sender) = '' THEN
        RAISE EXCEPTION 'sender of an inbound message must not be empty' USING ERRCODE = '23502';
    END IF;
    SELECT * INTO ch FROM ventros.channels c WHERE c.tenant_id = tenant AND c.id = receive_message.channel_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'channel % not found', channel_id USING ERRCODE = 'P0002';
    END IF;
    IF channel_message_id IS NOT NULL THEN
        SELECT * INTO result FROM ventros.messages m
        WHERE m.tenant_id = tenant AND m.channel_id = ch.id AND m.channel_message_id = receive_message.channel_message_id
          AND m.deleted_at IS NULL;
        IF FOUND THEN
            RETURN result;      -- a repeated webhook: nothing happens
        END IF;
    END IF;
    contact := ventros.upsert_contact_by_identity(ventros.sender_identity_type(ch.type, sender), sender, sender_name,
                                                  ch.project_id, ch.id, ch.type);
    -- a reply exits sequences and converts campaigns (before the session: the lock order of a tick)
    PERFORM ventros.journey_reply(contact, at);
    s := ventros.start_or_continue_session(contact, ch.id, at);
    IF s.message_count = 0 AND s.assigned_agent_id IS NULL AND s.team_id IS NULL AND ch.team_id IS NOT NULL THEN
        s := ventros.auto_assign_session(s, at);     -- a new inbound session: the channel's rule
    END IF;
    INSERT INTO ventros.messages ("timestamp", project_id, channel_id, channel_type_id, chat_id, session_id, contact_id,
                                  from_me, content_type, text, media_url, media_mimetype, channel_message_id, status,
                                  source, metadata)
    VALUES (at, ch.project_id, ch.id, s.channel_type_id, chat_id, s.id, contact, false, coalesce(content_type, 'text'),
            ventros.check_length(text, 4096, 'message text'), media_url, media_mimetype, channel_message_id, 'delivered',
            'manual', metadata)
    ON CONFLICT (tenant_id, channel_id, channel_message_id) WHERE deleted_at IS NULL AND channel_message_id IS NOT NULL
    DO NOTHING
    RETURNING * INTO result;
    IF result.id IS NULL THEN
        -- The same provider message was stored by a concurrent transaction.
        SELECT * INTO result FROM ventros.messages m
        WHERE m.tenant_id = tenant AND m.channel_id = ch.id AND m.channel_message_id = receive_message.channel_message_id
          AND m.deleted_at IS NULL;
        RETURN result;
    END IF;
    PERFORM ventros.record_message_effects(result, s);
    IF ch.ai_enabled AND result.content_type IN ('image', 'video', 'audio', 'voice')
       AND coalesce((ch.config->'ai'->>result.content_type)::boolean, false) THEN
        PERFORM ventros.emit('message.' || result.content_type || '_processing_requested', 'message', result.id,
                             jsonb_build_object('session_id', s.id, 'media_url', result.media_url,
                                                'media_mimetype', result.media_mimetype), result.version);
    END IF;
    RETURN result;
EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION 'invalid inbound message: %', SQLERRM USING ERRCODE = '23514';
END
$$;
COMMENT ON FUNCTION ventros.receive_message(uuid, text, text, text, text, timestamptz, text, text, text, jsonb, uuid) IS
    'Inbound message: contact by sender identity (created if new), its journeys told of the reply (ventros.journey_reply), session started or continued (a new one assigned by its channel''s rule), message stored (idempotent on channel_message_id), counters kept; emits message.created, session.message_recorded (and contact.created, session.started, session.agent_assigned or session.queued, message.*_processing_requested, sequence.enrollment_exited, campaign.contact_converted when they apply)';

CREATE OR REPLACE FUNCTION ventros.automation_act(a jsonb, ctx jsonb, rule ventros.automations) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    kind text := a->>'type';
    p jsonb := coalesce(a->'params', '{}');
    contact uuid := ventros.automation_uuid(ctx #>> '{contact,id}');
    session uuid := ventros.automation_uuid(ctx #>> '{session,id}');
    channel uuid := coalesce(ventros.automation_uuid(p->>'channel_id'), ventros.automation_uuid(ctx #>> '{channel,id}'));
    c ventros.contacts;
    tags text[];
    txt text;
    id uuid;
    e ventros.sequence_enrollments;
BEGIN
    CASE kind
    WHEN 'add_tag', 'remove_tag' THEN
        PERFORM ventros.automation_require(contact::text, 'a contact', kind);
        SELECT * INTO c FROM ventros.contacts x WHERE x.tenant_id = rule.tenant_id AND x.id = contact FOR UPDATE;
        tags := CASE kind WHEN 'add_tag' THEN (SELECT array_agg(DISTINCT t ORDER BY t) FROM unnest(c.tags || (p->>'tag')) t)
                          ELSE array_remove(c.tags, p->>'tag') END;
        PERFORM ventros.automation_require(p->>'tag', 'params.tag', kind);
        IF tags IS DISTINCT FROM c.tags AND NOT (tags @> c.tags AND c.tags @> tags) THEN
            PERFORM ventros.update_contact(contact, c.version, jsonb_build_object('tags', tags));
        END IF;
    WHEN 'set_field' THEN
        PERFORM ventros.automation_require(contact::text, 'a contact', kind);
        SELECT * INTO c FROM ventros.contacts x WHERE x.tenant_id = rule.tenant_id AND x.id = contact FOR UPDATE;
        PERFORM ventros.update_contact(contact, c.version,
                                       jsonb_build_object(ventros.automation_require(p->>'field', 'params.field', kind), p->'value'));
    WHEN 'set_custom_field', 'update_custom_field' THEN
        PERFORM ventros.set_contact_custom_field(ventros.automation_require(contact::text, 'a contact', kind)::uuid,
                                                 ventros.automation_require(coalesce(p->>'key', p->>'field'), 'params.key', kind),
                                                 coalesce(p->>'field_type', 'text'), p->'value');
    WHEN 'change_pipeline_status' THEN
        PERFORM ventros.change_contact_pipeline_status(ventros.automation_require(contact::text, 'a contact', kind)::uuid,
                                                       ventros.automation_require(p->>'status_id', 'params.status_id', kind)::uuid,
                                                       notes => 'automation ' || rule.name);
    WHEN 'assign_agent' THEN
        PERFORM ventros.assign_session_agent(ventros.automation_require(session::text, 'a session', kind)::uuid,
                                             ventros.automation_require(p->>'agent_id', 'params.agent_id', kind)::uuid);
    WHEN 'assign_team' THEN
        PERFORM ventros.assign_session_to_team(ventros.automation_require(session::text, 'a session', kind)::uuid,
                                               ventros.automation_require(p->>'team_id', 'params.team_id', kind)::uuid);
    WHEN 'send_message', 'send_canned_response' THEN
        PERFORM ventros.automation_require(contact::text, 'a contact', kind);
        txt := CASE kind WHEN 'send_message' THEN ventros.automation_require(p->>'text', 'params.text', kind)
                         ELSE ventros.render_canned_response(ventros.automation_require(p->>'shortcut', 'params.shortcut', kind),
                                                             contact) END;
        txt := replace(replace(txt, '{{contact.name}}', coalesce(ctx #>> '{contact,name}', '')),
                       '{{contact.phone}}', coalesce(ctx #>> '{contact,phone}', ''));
        SELECT m.id INTO id FROM ventros.send_message(ventros.automation_require(channel::text, 'a channel', kind)::uuid,
                                                      contact, txt, source => 'trigger') m;
        RETURN jsonb_build_object('type', kind, 'message_id', id);
    WHEN 'send_template' THEN
        SELECT m.id INTO id FROM ventros.send_message(ventros.automation_require(channel::text, 'a channel', kind)::uuid,
                                                      ventros.automation_require(contact::text, 'a contact', kind)::uuid,
                                                      source => 'trigger',
                                                      template_name => ventros.automation_require(p->>'template_name', 'params.template_name', kind),
                                                      template_language => coalesce(p->>'template_language', p->>'language'),
                                                      template_components => p->'template_components') m;
        RETURN jsonb_build_object('type', kind, 'message_id', id);
    WHEN 'add_note', 'create_note' THEN
        SELECT n.id INTO id FROM ventros.add_note(ventros.automation_require(contact::text, 'a contact', kind)::uuid,
                                                  ventros.automation_require(coalesce(p->>'content', p->>'text'), 'params.content', kind),
                                                  ventros.system_agent_id('trigger'), author_type => 'system',
                                                  author_name => 'automation ' || rule.name, session_id => session) n;
        RETURN jsonb_build_object('type', kind, 'note_id', id);
    WHEN 'enroll_sequence' THEN
        -- unless_enrolled (the rule a sequence keeps): a contact enrolled already is left alone
        IF coalesce((p->>'unless_enrolled')::boolean, false) AND EXISTS (
            SELECT 1 FROM ventros.sequence_enrollments x
             WHERE x.tenant_id = rule.tenant_id AND x.contact_id = contact AND x.status IN ('active', 'paused')
               AND x.sequence_id = ventros.automation_uuid(p->>'sequence_id')) THEN
            RETURN jsonb_build_object('type', kind, 'enrolled', false, 'reason', 'enrolled already');
        END IF;
        SELECT x.id INTO id FROM ventros.enroll_in_sequence(ventros.automation_require(p->>'sequence_id', 'params.sequence_id', kind)::uuid,
                                                            ventros.automation_require(contact::text, 'a contact', kind)::uuid) x;
        RETURN jsonb_build_object('type', kind, 'enrolled', true, 'enrollment_id', id);
    WHEN 'unenroll_sequence' THEN
        FOR e IN SELECT * FROM ventros.sequence_enrollments x
                  WHERE x.tenant_id = rule.tenant_id AND x.contact_id = contact AND x.status IN ('active', 'paused')
                    AND x.sequence_id = ventros.automation_require(p->>'sequence_id', 'params.sequence_id', kind)::uuid LOOP
            PERFORM ventros.set_sequence_enrollment_status(e.id, e.version, 'exited', 'automation');
        END LOOP;
    WHEN 'add_to_list' THEN
        PERFORM ventros.add_contact_to_list(ventros.automation_require(p->>'list_id', 'params.list_id', kind)::uuid,
                                            ventros.automation_require(contact::text, 'a contact', kind)::uuid);
    WHEN 'remove_from_list' THEN
        PERFORM ventros.remove_contact_from_list(ventros.automation_require(p->>'list_id', 'params.list_id', kind)::uuid,
                                                 ventros.automation_require(contact::text, 'a contact', kind)::uuid);
    WHEN 'close_session' THEN
        PERFORM ventros.close_session(ventros.automation_require(session::text, 'a session', kind)::uuid,
                                      end_reason => 'system_close');
    WHEN 'snooze_session' THEN
        -- params.minutes from now, or params.until (an instant)
        PERFORM ventros.snooze_session(ventros.automation_require(session::text, 'a session', kind)::uuid,
            coalesce((p->>'until')::timestamptz,
                     now() + make_interval(mins => ventros.automation_require(p->>'minutes', 'params.minutes or params.until', kind)::integer)));
    WHEN 'call_webhook', 'send_webhook' THEN
        RETURN ventros.automation_call_webhook(p, ctx, rule);
    WHEN 'emit_event' THEN
        RETURN jsonb_build_object('type', kind, 'event_type',
            ventros.emit_custom_event(ventros.automation_require(p->>'name', 'params.name', kind),
                                      coalesce(p->'payload', '{}') || jsonb_build_object('automation_id', rule.id,
                                                                                        'contact_id', contact)));
    WHEN 'notify_agents', 'notify_agent', 'notify_coordinator' THEN
        PERFORM ventros.emit('automation.agents_notified', 'automation', rule.id,
            jsonb_build_object('message', coalesce(p->>'message', p->>'text', rule.name), 'agent_ids', p->'agent_ids',
                               'agent_id', p->'agent_id', 'team_id', p->'team_id', 'contact_id', contact,
                               'session_id', session, 'event_id', ctx #> '{event,id}'),
            rule.version);
    ELSE
        RAISE EXCEPTION 'action "%" is not supported by the automation executor', left(kind, 64) USING ERRCODE = '0A000',
            HINT = 'See docs/automation.md for the actions the executor runs.';
    END CASE;
    RETURN jsonb_build_object('type', kind);
END
$$;
COMMENT ON FUNCTION ventros.automation_act(jsonb, jsonb, ventros.automations) IS
    'Runs one automation action through the command a user would call (tags and fields: update_contact; send_message; add_note; enroll_in_sequence; ...); returns what it did; 0A000 for an action the executor does not run';

-- the session's direct writes name the snooze commands too (sql/37_sessions_handling.sql)
SELECT ventros.register_writes('session', inserts => '{start_or_continue_session}', updates => '{close_session,resolve_session,assign_session_agent,assign_session_to_team,escalate_session,summarize_session,snooze_session,unsnooze_session}', deletes => '{}');

-- ---- one snapshot per answer (sql/71_contact_lists.sql, 75_campaigns.sql, 76_sequences.sql, 77_broadcasts.sql)
-- These STABLE queries read their aggregate through get_<aggregate>, which is
-- VOLATILE (it can lock) and so reads in a newer snapshot than the rest of
-- the query: broadcast_stats could say "completed" beside sends still
-- "sending".  They read with the stable get_row now.

CREATE OR REPLACE FUNCTION ventros.contact_list_predicate(contact_list_id uuid) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    list ventros.contact_lists := ventros.get_row(NULL::ventros.contact_lists, 'contact list', contact_list_id);
    f ventros.contact_list_filters;
    subject text;
    v text;
    cond text;
    parts text[] := '{}';
BEGIN
    IF list.is_static THEN
        RETURN format('EXISTS (SELECT 1 FROM ventros.contact_list_members m WHERE m.tenant_id = c.tenant_id '
                      'AND m.contact_list_id = %L AND m.contact_id = c.id AND m.deleted_at IS NULL)', list.id);
    END IF;
    FOR f IN SELECT * FROM ventros.contact_list_filters x
             WHERE x.tenant_id = list.tenant_id AND x.contact_list_id = list.id ORDER BY x.created_at, x.id LOOP
        v := f.value #>> '{}';
        IF f.filter_type = 'tag' THEN
            cond := CASE f.operator
                WHEN 'eq' THEN format('c.tags @> ARRAY[%L]', v)
                WHEN 'contains' THEN format('c.tags @> ARRAY[%L]', v)
                WHEN 'ne' THEN format('NOT c.tags @> ARRAY[%L]', v)
                WHEN 'not_contains' THEN format('NOT c.tags @> ARRAY[%L]', v)
                WHEN 'in' THEN format('c.tags && ARRAY(SELECT jsonb_array_elements_text(%L::jsonb))', f.value)
                WHEN 'not_in' THEN format('NOT c.tags && ARRAY(SELECT jsonb_array_elements_text(%L::jsonb))', f.value)
                WHEN 'is_null' THEN 'cardinality(c.tags) = 0'
                WHEN 'is_not_null' THEN 'cardinality(c.tags) > 0'
                ELSE format('EXISTS (SELECT 1 FROM unnest(c.tags) t WHERE %s)',
                            ventros.filter_condition('t', f.operator, f.value)) END;
        ELSE
            IF f.filter_type = 'attribute' THEN
                subject := format('c.%I::text', f.field_key);
                cond := ventros.filter_condition(subject, f.operator, f.value);
            ELSIF f.filter_type = 'custom_field' AND to_regclass('ventros.contact_custom_fields') IS NOT NULL THEN
                cond := format('EXISTS (SELECT 1 FROM ventros.contact_custom_fields cf WHERE cf.tenant_id = c.tenant_id '
                               'AND cf.contact_id = c.id AND cf.field_key = %L AND cf.deleted_at IS NULL AND %s)',
                               f.field_key, ventros.filter_condition('(cf.field_value #>> ''{}'')', f.operator, f.value));
            ELSIF f.filter_type = 'pipeline_status' AND to_regclass('ventros.contact_pipeline_statuses') IS NOT NULL THEN
                cond := format('EXISTS (SELECT 1 FROM ventros.contact_pipeline_statuses ps WHERE ps.tenant_id = c.tenant_id '
                               'AND ps.contact_id = c.id AND ps.exited_at IS NULL AND ps.deleted_at IS NULL '
                               'AND (%L::uuid IS NULL OR ps.pipeline_id = %L::uuid) AND %s)',
                               f.pipeline_id, f.pipeline_id, ventros.filter_condition('ps.status_id::text', f.operator, f.value));
            ELSE
                RAISE EXCEPTION '% filters cannot be evaluated in this installation', f.filter_type USING ERRCODE = '0A000';
            END IF;
        END IF;
        parts := parts || ('(' || cond || ')');
    END LOOP;
    IF cardinality(parts) = 0 THEN
        RETURN 'false';         -- a dynamic list without rules is empty
    END IF;
    RETURN array_to_string(parts, ' ' || list.logical_operator || ' ');
END
$$;
COMMENT ON FUNCTION ventros.contact_list_predicate(uuid) IS
    'The SQL condition over contacts c described by a list (members, or filter rules joined by its operator)';

CREATE OR REPLACE FUNCTION ventros.campaign_stats(campaign_id uuid) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object('campaign_id', c.id, 'status', c.status, 'goal_type', c.goal_type, 'goal_value', c.goal_value,
        'contacts_reached', c.contacts_reached, 'conversions', c.conversions_count,
        'progress', CASE WHEN c.goal_value > 0 THEN round(100.0 * CASE c.goal_type WHEN 'conversions' THEN c.conversions_count
                                                                     ELSE c.contacts_reached END / c.goal_value, 1) END,
        'enrollments', (SELECT coalesce(jsonb_object_agg(s.status, s.n), '{}')
                        FROM (SELECT e.status, count(*) AS n FROM ventros.campaign_enrollments e
                              WHERE e.tenant_id = c.tenant_id AND e.campaign_id = c.id GROUP BY e.status) s))
    FROM ventros.get_row(NULL::ventros.campaigns, 'campaign', campaign_id) c
$$;
COMMENT ON FUNCTION ventros.campaign_stats(uuid) IS 'Progress of a campaign against its goal and its enrollments per status';

CREATE OR REPLACE FUNCTION ventros.sequence_stats(sequence_id uuid) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object('sequence_id', s.id, 'status', s.status, 'total_enrolled', s.total_enrolled,
                              'active', s.active_count, 'completed', s.completed_count, 'exited', s.exited_count,
                              'steps', (SELECT count(*) FROM ventros.sequence_steps x WHERE x.tenant_id = s.tenant_id AND x.sequence_id = s.id))
    FROM ventros.get_row(NULL::ventros.sequences, 'sequence', sequence_id) s
$$;
COMMENT ON FUNCTION ventros.sequence_stats(uuid) IS 'Enrollment counts and step count of a sequence';

CREATE OR REPLACE FUNCTION ventros.broadcast_stats(broadcast_id uuid) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object('broadcast_id', b.id, 'status', b.status, 'total_contacts', b.total_contacts,
                              'sent', b.sent_count, 'failed', b.failed_count, 'pending', b.pending_count,
                              'sending', (SELECT count(*) FROM ventros.broadcast_executions e
                                          WHERE e.tenant_id = b.tenant_id AND e.broadcast_id = b.id AND e.status = 'sending'),
                              'skipped', (SELECT count(*) FROM ventros.broadcast_executions e
                                          WHERE e.tenant_id = b.tenant_id AND e.broadcast_id = b.id AND e.status = 'skipped'))
    FROM ventros.get_row(NULL::ventros.broadcasts, 'broadcast', broadcast_id) b
$$;
COMMENT ON FUNCTION ventros.broadcast_stats(uuid) IS
    'Counts of a broadcast''s sends: sent (accepted by the provider), failed (refused, or reported failed by the provider), sending (waiting for the provider), pending (not sent yet), skipped';

-- ---- Stripe webhooks (sql/66_stripe_webhooks.sql, sql/88_inbox.sql)
-- POST /webhooks/stripe: platform webhooks (a registry beside the channels'
-- providers), the Stripe endpoint's signing secrets, its events received
-- once, applied in state order to billing accounts, subscriptions and
-- invoices.  accept_webhook reads its headers through webhook_headers.

-- ---- platform webhooks: endpoints of the platform, not of a channel ----------

-- What a webhook entry point answers: the HTTP status and a JSON body.
CREATE TYPE ventros.webhook_answer AS (
    http_status integer,
    response    jsonb
);
COMMENT ON TYPE ventros.webhook_answer IS 'The answer of a webhook entry point: HTTP status and JSON body';

-- POST /webhooks/<name> (one segment): webhooks of the platform itself, not
-- of a tenant's channel (those are ventros.inbound_providers').  Adding one
-- is a row (ventros.register_platform_webhook) and its accept function.
CREATE TABLE ventros.platform_webhooks (
    name   text PRIMARY KEY,
    accept regprocedure NOT NULL,
    CONSTRAINT platform_webhooks_name_format CHECK (name ~ '^[a-z][a-z0-9_]{0,14}$')
);
COMMENT ON TABLE ventros.platform_webhooks IS
    'Webhook endpoints of the platform (POST /webhooks/<name>): accept(headers jsonb, body bytea) -> ventros.webhook_answer, run as the extension owner';
ALTER TABLE ventros.platform_webhooks ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.platform_webhooks FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_catalog_read ON ventros.platform_webhooks FOR SELECT USING (true);
GRANT SELECT ON ventros.platform_webhooks TO ventros_viewer;

CREATE FUNCTION ventros.register_platform_webhook(name text, accept regprocedure) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.require_function_shape(accept, ARRAY['jsonb', 'bytea']::regtype[], 'ventros.webhook_answer', 'accept');
    INSERT INTO ventros.platform_webhooks AS w (name, accept)
    VALUES (register_platform_webhook.name, register_platform_webhook.accept)
    ON CONFLICT ON CONSTRAINT platform_webhooks_pkey DO UPDATE SET accept = EXCLUDED.accept;
END
$$;
COMMENT ON FUNCTION ventros.register_platform_webhook(text, regprocedure) IS
    'Registers the accept function of a platform webhook endpoint POST /webhooks/<name> (see ventros.platform_webhooks)';

-- A webhook's headers as the front hands them over ({"Name": "value"}), with
-- lower-case names and only string values: what every verifier reads.
CREATE FUNCTION ventros.webhook_headers(headers jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_object_agg(lower(h.key), h.value), '{}')
    FROM jsonb_each(CASE WHEN jsonb_typeof(headers) = 'object' THEN headers ELSE '{}' END) h
    WHERE jsonb_typeof(h.value) = 'string'
$$;
COMMENT ON FUNCTION ventros.webhook_headers(jsonb) IS
    'A webhook''s headers with lower-case names and only string values (non-objects: {})';

-- The front's entry: the endpoint's answer, or 404 for a name not registered.
CREATE FUNCTION ventros.accept_platform_webhook(name text, headers jsonb, body bytea)
RETURNS TABLE (http_status integer, response jsonb)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET ventros.tenant = ''
AS $$
DECLARE
    fn regprocedure := (SELECT w.accept FROM ventros.platform_webhooks w WHERE w.name = lower(accept_platform_webhook.name));
    answer ventros.webhook_answer;
BEGIN
    IF fn IS NULL THEN
        -- (the answer of every unknown webhook path: nothing tells names apart)
        RETURN QUERY SELECT 404, '{"error":"channel_not_found"}'::jsonb;
        RETURN;
    END IF;
    EXECUTE format('SELECT * FROM %s($1, $2)', fn::regproc) INTO answer
        USING ventros.webhook_headers(headers), coalesce(body, ''::bytea);
    RETURN QUERY SELECT answer.http_status, answer.response;
END
$$;
COMMENT ON FUNCTION ventros.accept_platform_webhook(text, jsonb, bytea) IS
    'Anonymous entry of POST /webhooks/<name>: the registered endpoint''s answer (ventros.platform_webhooks), 404 for another name';

-- ---- the signing secrets -------------------------------------------------------

-- The endpoint's signing secrets (whsec_...), encrypted with
-- ventros.secret_key.  Rolling a secret in Stripe keeps the old one valid
-- for a while: add the new one and give the old one an expiry.  Only the
-- extension owner reads this table (no policy); platform admins manage it
-- through the functions below, which never return a secret.
CREATE TABLE ventros.stripe_webhook_secrets (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    secret     bytea       NOT NULL,
    added_at   timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz
);
COMMENT ON TABLE ventros.stripe_webhook_secrets IS
    'Signing secrets of the Stripe webhook endpoint (encrypted); several while one is rolled; read by accept_stripe_webhook only';
ALTER TABLE ventros.stripe_webhook_secrets ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.stripe_webhook_secrets FORCE ROW LEVEL SECURITY;
REVOKE ALL ON ventros.stripe_webhook_secrets FROM PUBLIC;

CREATE FUNCTION ventros.add_stripe_webhook_secret(secret text, expire_others_in interval DEFAULT NULL) RETURNS uuid
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result uuid;
BEGIN
    PERFORM ventros.require_platform_admin();
    IF secret IS NULL OR secret !~ '^whsec_[A-Za-z0-9+/=_-]{8,200}$' THEN
        RAISE EXCEPTION 'a Stripe webhook signing secret looks like whsec_...' USING ERRCODE = '22023',
            HINT = 'Copy it from the endpoint''s page in the Stripe dashboard (Signing secret).';
    END IF;
    IF expire_others_in IS NOT NULL THEN
        UPDATE ventros.stripe_webhook_secrets s SET expires_at = least(coalesce(s.expires_at, 'infinity'), now() + expire_others_in);
    END IF;
    INSERT INTO ventros.stripe_webhook_secrets (secret) VALUES (ventros.encrypt_secret(secret)) RETURNING id INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.add_stripe_webhook_secret(text, interval) IS
    'Platform admins: adds a signing secret of the Stripe endpoint (whsec_..., 22023 otherwise); expire_others_in gives the others an expiry (rolling a secret); returns its id';

CREATE FUNCTION ventros.remove_stripe_webhook_secret(secret_id uuid) RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.require_platform_admin();
    DELETE FROM ventros.stripe_webhook_secrets s WHERE s.id = secret_id;
    RETURN FOUND;
END
$$;
COMMENT ON FUNCTION ventros.remove_stripe_webhook_secret(uuid) IS
    'Platform admins: removes a signing secret of the Stripe endpoint; false when there was none';

CREATE FUNCTION ventros.stripe_webhook_secrets()
RETURNS TABLE (id uuid, added_at timestamptz, expires_at timestamptz, active boolean)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.require_platform_admin();
    RETURN QUERY SELECT s.id, s.added_at, s.expires_at, coalesce(s.expires_at > now(), true)
                 FROM ventros.stripe_webhook_secrets s ORDER BY s.added_at, s.id;
END
$$;
COMMENT ON FUNCTION ventros.stripe_webhook_secrets() IS
    'Platform admins: the Stripe endpoint''s signing secrets, without the secrets: when added, when they expire, whether they still verify';

-- ---- the signature ---------------------------------------------------------------

-- NULL when header signs body under one of secrets at a time within
-- tolerance seconds of now; else missing_signature, malformed_signature,
-- timestamp_outside_tolerance or invalid_signature.  Every v1 (at most 8)
-- is compared with every secret's HMAC in constant time
-- (ventros.timing_safe_equal).
CREATE FUNCTION ventros.verify_stripe_signature(header text, body bytea, secrets text[], now timestamptz,
                                                tolerance integer DEFAULT 300)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    item text;
    t text;
    given bytea[] := '{}';
    signed bytea;
    secret text;
    matched boolean := false;
BEGIN
    IF header IS NULL OR btrim(header) = '' THEN
        RETURN 'missing_signature';
    END IF;
    FOREACH item IN ARRAY string_to_array(left(header, 4096), ',') LOOP
        item := btrim(item);
        IF item ~ '^t=[0-9]{1,12}$' AND t IS NULL THEN
            t := substr(item, 3);
        ELSIF item LIKE 'v1=%' THEN
            given := given || ventros.decode_hex_signature(substr(item, 4), 32);
        END IF;
    END LOOP;
    -- (Stripe sends one v1 per secret of the endpoint: a few.  More would
    -- make an anonymous caller buy many HMACs of the body for one request.)
    IF t IS NULL OR cardinality(given) NOT BETWEEN 1 AND 8 OR array_position(given, NULL) IS NOT NULL THEN
        RETURN 'malformed_signature';
    END IF;
    IF abs(extract(epoch FROM now) - t::bigint) > tolerance THEN
        RETURN 'timestamp_outside_tolerance';
    END IF;
    signed := convert_to(t || '.', 'UTF8') || body;
    FOREACH secret IN ARRAY coalesce(secrets, '{}') LOOP
        FOR i IN 1 .. cardinality(given) LOOP
            matched := ventros.timing_safe_equal(ventros.webhook_hmac(signed, secret, 'sha256'), given[i]) OR matched;
        END LOOP;
    END LOOP;
    RETURN CASE WHEN matched THEN NULL ELSE 'invalid_signature' END;
END
$$;
COMMENT ON FUNCTION ventros.verify_stripe_signature(text, bytea, text[], timestamptz, integer) IS
    'NULL when a Stripe-Signature header (t=..., v1=...) signs the body under one of the secrets within tolerance seconds (default 300) of now; else missing_signature, malformed_signature, timestamp_outside_tolerance or invalid_signature';

-- ---- the events received -------------------------------------------------------

-- A platform table: an event is received before its tenant is known (and
-- some never have one), so its key is Stripe's id alone and the tenant is
-- what the customer matched (matched_tenant).  A tenant's admins read their
-- own events with ventros.list_stripe_events().
CREATE TABLE ventros.stripe_events (
    id             text        PRIMARY KEY,
    matched_tenant text,
    type        text        NOT NULL,
    object_id   text,
    created     timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    outcome     text        NOT NULL DEFAULT 'received',
    detail      text,
    CONSTRAINT stripe_events_id_format CHECK (id ~ '^evt_[A-Za-z0-9]{1,200}$'),
    CONSTRAINT stripe_events_outcome_known CHECK (outcome IN ('received', 'applied', 'ignored', 'stale', 'unmatched', 'failed'))
);
CREATE INDEX stripe_events_by_object ON ventros.stripe_events (object_id, created) WHERE outcome = 'applied';
CREATE INDEX stripe_events_by_tenant ON ventros.stripe_events (matched_tenant, received_at);
COMMENT ON TABLE ventros.stripe_events IS
    'Stripe events received, once each (the id is the idempotency key): type, object, Stripe''s creation time, the tenant matched and the outcome (applied, ignored, stale, unmatched, failed)';
ALTER TABLE ventros.stripe_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.stripe_events FORCE ROW LEVEL SECURITY;
REVOKE ALL ON ventros.stripe_events FROM PUBLIC;

CREATE FUNCTION ventros.list_stripe_events(received_before timestamptz DEFAULT NULL, page_size integer DEFAULT 50)
RETURNS TABLE (id text, type text, object_id text, created timestamptz, received_at timestamptz, outcome text, detail text)
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT e.id, e.type, e.object_id, e.created, e.received_at, e.outcome, e.detail
    FROM ventros.stripe_events e
    WHERE e.matched_tenant = ventros.require_tenant()
      AND (received_before IS NULL OR e.received_at < received_before)
    ORDER BY e.received_at DESC, e.id
    LIMIT ventros.check_page_size(page_size)
$$;
COMMENT ON FUNCTION ventros.list_stripe_events(timestamptz, integer) IS
    'The acting tenant''s Stripe events, newest first (received before a time): type, object, Stripe''s time, outcome and reason';
GRANT EXECUTE ON FUNCTION ventros.list_stripe_events(timestamptz, integer) TO ventros_admin;

-- ---- state order -----------------------------------------------------------------

-- The shortest walk of allowed transitions of an aggregate from one state to
-- another (the states after from, in order; '{}' when equal; NULL when no
-- walk exists).  Stripe reports where an object is now; this says which
-- transitions, each with its event, lead there.
CREATE FUNCTION ventros.transition_path(aggregate text, from_state text, to_state text) RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE walk (state, path) AS (
        SELECT from_state, ARRAY[]::text[]
        UNION ALL
        SELECT t.to_state, w.path || t.to_state
        FROM walk w JOIN ventros.aggregate_transitions t ON t.aggregate = transition_path.aggregate AND t.from_state = w.state
        WHERE NOT t.to_state = ANY (w.path) AND t.to_state <> from_state AND cardinality(w.path) < 10
    )
    SELECT w.path FROM walk w WHERE w.state = to_state ORDER BY cardinality(w.path) LIMIT 1
$$;
COMMENT ON FUNCTION ventros.transition_path(text, text, text) IS
    'The shortest walk of declared transitions of an aggregate from one state to another (states after from; {} when equal; NULL when none)';

-- ---- applying each kind of event ----------------------------------------------

CREATE FUNCTION ventros.stripe_time(value jsonb) RETURNS timestamptz
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT CASE WHEN jsonb_typeof(value) = 'number' THEN to_timestamp((value #>> '{}')::double precision) END $$;
COMMENT ON FUNCTION ventros.stripe_time(jsonb) IS 'A Stripe timestamp (Unix seconds) as timestamptz; NULL when absent';

-- checkout.session.completed: the account has a payment method now.
CREATE FUNCTION ventros.apply_stripe_checkout(b ventros.billing_accounts, obj jsonb) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF b.payment_status <> 'pending' THEN
        RETURN 'ignored';
    END IF;
    PERFORM ventros.activate_billing_payment(b.id, b.version,
        jsonb_build_object('id', obj->>'id', 'type', 'stripe_checkout', 'subscription', obj->>'subscription'));
    RETURN 'applied';
END
$$;
COMMENT ON FUNCTION ventros.apply_stripe_checkout(ventros.billing_accounts, jsonb) IS
    'checkout.session.completed: a pending billing account gets the checkout as its payment method (billing_account.payment_activated)';

-- customer.updated: the account's name and billing email follow Stripe's.
CREATE FUNCTION ventros.apply_stripe_customer(b ventros.billing_accounts, obj jsonb) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    changes jsonb := '{}';
BEGIN
    IF nullif(obj->>'email', '') IS NOT NULL AND lower(obj->>'email') <> b.billing_email THEN
        changes := changes || jsonb_build_object('billing_email', obj->>'email');
    END IF;
    IF nullif(obj->>'name', '') IS NOT NULL AND obj->>'name' <> b.name THEN
        changes := changes || jsonb_build_object('name', obj->>'name');
    END IF;
    IF changes = '{}' THEN
        RETURN 'ignored';
    END IF;
    PERFORM ventros.update_billing_account(b.id, b.version, changes);
    RETURN 'applied';
END
$$;
COMMENT ON FUNCTION ventros.apply_stripe_customer(ventros.billing_accounts, jsonb) IS
    'customer.updated: the billing account''s name and email follow the Stripe customer''s';

-- customer.subscription.created / updated / deleted: the subscription is
-- mirrored (created when new), walked to Stripe's status, and its period,
-- price and scheduled cancellation follow.  Newer API versions keep the
-- period on the items.
CREATE FUNCTION ventros.apply_stripe_subscription(b ventros.billing_accounts, obj jsonb, deleted boolean) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.subscriptions;
    target text := CASE WHEN deleted THEN 'canceled' ELSE obj->>'status' END;
    item jsonb := obj #> '{items,data,0}';
    price text := coalesce(item #>> '{price,id}', obj #>> '{plan,id}');
    period_start timestamptz := ventros.stripe_time(coalesce(obj->'current_period_start', item->'current_period_start'));
    period_end timestamptz := ventros.stripe_time(coalesce(obj->'current_period_end', item->'current_period_end'));
    walk text[];
    state text;
BEGIN
    SELECT * INTO s FROM ventros.subscriptions x
    WHERE x.tenant_id = b.tenant_id AND x.stripe_subscription_id = obj->>'id' AND x.deleted_at IS NULL FOR UPDATE;
    IF s.id IS NULL THEN
        s := ventros.create_subscription(b.id, obj->>'id', price,
                 CASE WHEN target IN ('trialing', 'active') THEN target ELSE 'incomplete' END,
                 period_start, period_end, ventros.stripe_time(obj->'trial_end'),
                 metadata => jsonb_build_object('stripe_customer', obj->>'customer'));
    END IF;
    walk := ventros.transition_path('subscription', s.status, target);
    IF walk IS NULL THEN
        RAISE EXCEPTION 'subscription % cannot go from % to %', s.id, s.status, target USING ERRCODE = 'VN002';
    END IF;
    FOREACH state IN ARRAY walk LOOP
        s := ventros.set_subscription_status(s.id, s.version, state);
    END LOOP;
    IF period_start IS NOT NULL AND period_end IS NOT NULL
       AND (period_start, period_end) IS DISTINCT FROM (s.current_period_start, s.current_period_end) THEN
        s := ventros.update_subscription_period(s.id, s.version, period_start, period_end);
    END IF;
    IF price IS NOT NULL AND price <> s.stripe_price_id THEN
        s := ventros.change_subscription_price(s.id, s.version, price);
    END IF;
    IF obj->'cancel_at_period_end' = 'true'::jsonb AND NOT s.cancel_at_period_end AND s.status <> 'canceled' THEN
        s := ventros.schedule_subscription_cancellation(s.id, s.version);
    END IF;
    RETURN 'applied';
END
$$;
COMMENT ON FUNCTION ventros.apply_stripe_subscription(ventros.billing_accounts, jsonb, boolean) IS
    'customer.subscription.created/updated/deleted: the subscription mirrored (created when new), walked through its allowed transitions to Stripe''s status, with its period, price and scheduled cancellation';

-- invoice.finalized / paid / payment_failed (and the other invoice events):
-- the invoice is mirrored (created when new), walked to Stripe's status; a
-- failed payment is recorded on the open invoice.
CREATE FUNCTION ventros.apply_stripe_invoice(b ventros.billing_accounts, obj jsonb, event_type text) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    i ventros.invoices;
    sub uuid;
    target text := obj->>'status';
    state text;
BEGIN
    SELECT * INTO i FROM ventros.invoices x
    WHERE x.tenant_id = b.tenant_id AND x.stripe_invoice_id = obj->>'id' AND x.deleted_at IS NULL FOR UPDATE;
    IF i.id IS NULL THEN
        SELECT x.id INTO sub FROM ventros.subscriptions x
        WHERE x.tenant_id = b.tenant_id AND x.stripe_subscription_id = obj->>'subscription' AND x.deleted_at IS NULL;
        i := ventros.create_invoice(b.id, obj->>'id', (obj->>'amount_due')::bigint, obj->>'currency', 'draft', sub,
                                    ventros.stripe_time(obj->'due_date'));
    END IF;
    FOREACH state IN ARRAY coalesce(ventros.transition_path('invoice', i.status, target), ARRAY['(none)']) LOOP
        i := CASE state WHEN 'open' THEN ventros.finalize_invoice(i.id, i.version)
                        WHEN 'paid' THEN ventros.pay_invoice(i.id, i.version)
                        WHEN 'uncollectible' THEN ventros.mark_invoice_uncollectible(i.id, i.version)
                        WHEN 'void' THEN ventros.void_invoice(i.id, i.version) END;
        IF i.id IS NULL THEN
            RAISE EXCEPTION 'invoice % cannot become %', obj->>'id', target USING ERRCODE = 'VN002';
        END IF;
    END LOOP;
    IF event_type = 'invoice.payment_failed' AND i.status = 'open' THEN
        i := ventros.record_invoice_payment_failure(i.id, i.version,
                 coalesce(obj #>> '{last_finalization_error,message}', 'the payment failed at Stripe'));
    END IF;
    IF (obj->>'hosted_invoice_url', obj->>'invoice_pdf') IS DISTINCT FROM (i.hosted_invoice_url, i.invoice_pdf)
       AND obj->>'hosted_invoice_url' LIKE 'https://%' AND obj->>'invoice_pdf' LIKE 'https://%' THEN
        i := ventros.set_invoice_links(i.id, i.version, obj->>'hosted_invoice_url', obj->>'invoice_pdf',
                                       coalesce(ventros.stripe_time(obj->'due_date'), i.due_date));
    END IF;
    RETURN 'applied';
END
$$;
COMMENT ON FUNCTION ventros.apply_stripe_invoice(ventros.billing_accounts, jsonb, text) IS
    'invoice.*: the invoice mirrored (created when new) and walked through its allowed transitions to Stripe''s status (finalized, paid, uncollectible, void); a failed payment recorded on the open invoice; links kept';

-- ---- the endpoint ------------------------------------------------------------------

-- The billing account of a Stripe customer: the one live account of all
-- tenants that carries it, or NULL (none, or more than one).
CREATE FUNCTION ventros.stripe_customer_account(customer text) RETURNS ventros.billing_accounts
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN count(*) = 1 THEN (array_agg(b))[1] END
    FROM ventros.billing_accounts b
    WHERE b.stripe_customer_id = customer AND b.deleted_at IS NULL
$$;
COMMENT ON FUNCTION ventros.stripe_customer_account(text) IS
    'The one live billing account (any tenant) linked to a Stripe customer; NULL when none or several claim it';

-- Records the outcome of an event on its row, with the tenant matched.
CREATE FUNCTION ventros.stripe_answer(event_id text, tenant text, outcome text, detail text) RETURNS ventros.webhook_answer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE ventros.stripe_events e SET matched_tenant = tenant, outcome = stripe_answer.outcome, detail = left(stripe_answer.detail, 1000)
    WHERE e.id = event_id;
    RETURN ROW(200, jsonb_build_object('received', true, 'outcome', outcome))::ventros.webhook_answer;
END
$$;
COMMENT ON FUNCTION ventros.stripe_answer(text, text, text, text) IS
    'Keeps an event''s outcome (and tenant) on ventros.stripe_events and answers Stripe 200 with it';

CREATE FUNCTION ventros.apply_stripe_event(b ventros.billing_accounts, event_type text, obj jsonb) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN CASE
        WHEN event_type = 'checkout.session.completed' THEN ventros.apply_stripe_checkout(b, obj)
        WHEN event_type = 'customer.updated' THEN ventros.apply_stripe_customer(b, obj)
        WHEN event_type IN ('customer.subscription.created', 'customer.subscription.updated', 'customer.subscription.deleted')
            THEN ventros.apply_stripe_subscription(b, obj, event_type = 'customer.subscription.deleted')
        WHEN event_type LIKE 'invoice.%' AND obj->>'object' = 'invoice' THEN ventros.apply_stripe_invoice(b, obj, event_type)
        ELSE 'ignored' END;
END
$$;
COMMENT ON FUNCTION ventros.apply_stripe_event(ventros.billing_accounts, text, jsonb) IS
    'Applies a Stripe event to a tenant''s billing: checkout.session.completed, customer.updated, customer.subscription.*, invoice.*; other types are ignored';

CREATE FUNCTION ventros.accept_stripe_webhook(headers jsonb, body bytea) RETURNS ventros.webhook_answer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET ventros.tenant = ''
AS $$
DECLARE
    secrets text[] := ARRAY(SELECT ventros.decrypt_secret(s.secret) FROM ventros.stripe_webhook_secrets s
                            WHERE s.expires_at IS NULL OR s.expires_at > now());
    failure text;
    doc jsonb;
    obj jsonb;
    event_at timestamptz;
    b ventros.billing_accounts;
    outcome text;
    state text;
    message text;
BEGIN
    IF cardinality(secrets) = 0 THEN
        -- not configured yet: Stripe keeps retrying for days
        RETURN ROW(503, '{"error":"not_configured"}')::ventros.webhook_answer;
    END IF;
    failure := ventros.verify_stripe_signature(headers->>'stripe-signature', body, secrets, now());
    IF failure IS NOT NULL THEN
        RETURN ROW(400, jsonb_build_object('error', failure))::ventros.webhook_answer;
    END IF;
    BEGIN
        doc := convert_from(body, 'UTF8')::jsonb;
    EXCEPTION WHEN data_exception OR invalid_text_representation OR character_not_in_repertoire THEN
        doc := NULL;
    END;
    obj := doc #> '{data,object}';
    event_at := ventros.stripe_time(doc->'created');
    IF jsonb_typeof(obj) IS DISTINCT FROM 'object' OR coalesce(doc->>'id', '') !~ '^evt_[A-Za-z0-9]{1,200}$'
       OR jsonb_typeof(doc->'type') IS DISTINCT FROM 'string' OR event_at IS NULL THEN
        RETURN ROW(400, '{"error":"malformed_event"}')::ventros.webhook_answer;
    END IF;
    INSERT INTO ventros.stripe_events AS e (id, type, object_id, created)
    VALUES (doc->>'id', left(doc->>'type', 200), left(obj->>'id', 255), event_at)
    ON CONFLICT ON CONSTRAINT stripe_events_pkey DO NOTHING;
    IF NOT FOUND THEN
        RETURN ROW(200, '{"received":true,"duplicate":true}')::ventros.webhook_answer;
    END IF;

    b := ventros.stripe_customer_account(CASE WHEN obj->>'object' = 'customer' THEN obj->>'id' ELSE obj->>'customer' END);
    IF b.id IS NULL THEN
        RETURN ventros.stripe_answer(doc->>'id', NULL, 'unmatched', 'no single billing account is linked to this customer');
    END IF;
    PERFORM set_config('ventros.tenant', b.tenant_id, true);
    IF EXISTS (SELECT 1 FROM ventros.stripe_events e
               WHERE e.object_id = obj->>'id' AND e.outcome = 'applied' AND e.created > event_at) THEN
        RETURN ventros.stripe_answer(doc->>'id', b.tenant_id, 'stale', 'a newer event of this object was applied');
    END IF;
    BEGIN
        outcome := ventros.apply_stripe_event(b, doc->>'type', obj);
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
        IF state IN ('40001', '40P01', '55P03', '57014') THEN
            RAISE;  -- transient: the front answers 503 and Stripe retries
        END IF;
        RETURN ventros.stripe_answer(doc->>'id', b.tenant_id, 'failed', state || ': ' || message);
    END;
    RETURN ventros.stripe_answer(doc->>'id', b.tenant_id, outcome, NULL);
END
$$;
COMMENT ON FUNCTION ventros.accept_stripe_webhook(jsonb, bytea) IS
    'POST /webhooks/stripe: a signed Stripe event (Stripe-Signature, the endpoint''s secrets), recorded once, matched to its tenant by the customer and applied in state order to billing accounts, subscriptions and invoices; 400 unsigned or malformed, 503 when no secret is configured, else 200 with the outcome';

SELECT ventros.register_platform_webhook('stripe', 'ventros.accept_stripe_webhook(jsonb, bytea)');

GRANT EXECUTE ON FUNCTION ventros.accept_platform_webhook(text, jsonb, bytea) TO ventros_anon;
GRANT EXECUTE ON FUNCTION ventros.add_stripe_webhook_secret(text, interval), ventros.remove_stripe_webhook_secret(uuid),
    ventros.stripe_webhook_secrets() TO ventros_platform_admin;

CREATE OR REPLACE FUNCTION ventros.accept_webhook(provider text, channel_id text, headers jsonb, body bytea)
RETURNS TABLE (http_status integer, response jsonb)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- the tenant chosen inside is restored when the function returns
SET ventros.tenant = ''
AS $$
DECLARE
    ch ventros.channels;
    hdrs jsonb;
    failure text;
    doc jsonb;
    parse_error text;
    it ventros.inbox_item;
    new_id uuid;
    head uuid;
    n integer := 0;
    stored uuid[] := '{}';
    kept jsonb;
    row_ ventros.inbox;
    p ventros.inbound_providers;
BEGIN
    provider := lower(provider);
    SELECT * INTO p FROM ventros.inbound_providers x WHERE x.provider = accept_webhook.provider;
    ch := ventros.webhook_channel(provider, channel_id);
    IF p.provider IS NULL OR ch.id IS NULL THEN
        RETURN QUERY SELECT 404, '{"error":"channel_not_found"}'::jsonb;
        RETURN;
    END IF;
    PERFORM set_config('ventros.tenant', ch.tenant_id, true);
    hdrs := ventros.webhook_headers(headers);
    body := coalesce(body, ''::bytea);

    failure := ventros.verify_webhook(provider, ch.config, hdrs, body);
    IF failure IS NOT NULL THEN
        INSERT INTO ventros.channel_webhook_rejections AS x (tenant_id, channel_id, rejected, last_rejected_at, last_reason)
        VALUES (ch.tenant_id, ch.id, 1, now(), failure)
        ON CONFLICT ON CONSTRAINT channel_webhook_rejections_pkey DO UPDATE
            SET rejected = x.rejected + 1, last_rejected_at = now(), last_reason = EXCLUDED.last_reason;
        RETURN QUERY SELECT 401, '{"error":"invalid_signature"}'::jsonb;
        RETURN;
    END IF;

    kept := ventros.webhook_headers_to_keep(hdrs);
    BEGIN
        doc := convert_from(body, 'UTF8')::jsonb;
    EXCEPTION WHEN OTHERS THEN
        parse_error := SQLERRM;
    END;
    IF parse_error IS NOT NULL OR doc IS NULL THEN
        -- Stored with its error (nothing is lost), answered 400.
        new_id := gen_random_uuid();
        INSERT INTO ventros.inbox (tenant_id, id, channel_id, provider, event, dedupe_key, delivery_id, body, headers,
                                   status, last_error)
        VALUES (ch.tenant_id, new_id, ch.id, provider, 'invalid', ventros.body_sha256(body), new_id, body, kept,
                'failed', left('22P02: body is not JSON: ' || coalesce(parse_error, 'empty'), 2000))
        ON CONFLICT ON CONSTRAINT inbox_unique_dedupe_key DO NOTHING;
        RETURN QUERY SELECT 400, '{"error":"invalid_json"}'::jsonb;
        RETURN;
    END IF;

    FOR it IN EXECUTE format('SELECT * FROM %s($1, $2, $3, $4)', p.split::regproc) USING ch.config, doc, body, hdrs
    LOOP
        new_id := gen_random_uuid();
        INSERT INTO ventros.inbox AS i (tenant_id, id, channel_id, provider, event, dedupe_key, delivery_id, item_index,
                                        body, item, headers, ref_id, status, last_error, next_attempt_at)
        VALUES (ch.tenant_id, new_id, ch.id, provider, it.event, left(it.dedupe_key, 1024), coalesce(head, new_id), n,
                CASE WHEN head IS NULL THEN body END, it.item, kept, it.ref_id, it.status, it.last_error,
                CASE WHEN it.status = 'received' THEN now() END)
        ON CONFLICT ON CONSTRAINT inbox_unique_dedupe_key DO NOTHING
        RETURNING i.id INTO new_id;
        n := n + 1;
        IF FOUND THEN
            head := coalesce(head, new_id);
            stored := stored || new_id;
        END IF;
    END LOOP;

    IF head IS NULL THEN
        RETURN QUERY SELECT 200, '{"status":"duplicate"}'::jsonb;
        RETURN;
    END IF;
    -- Deferred (the default): the inbox processor takes the new items right
    -- after this transaction commits (src/inbox_worker.c; the statement
    -- trigger ventros_inbox_wake wakes it).  Inline: process what is new
    -- here, each item in its own subtransaction (inbox_run).
    IF current_setting('ventros.inbox_processing') = 'inline' THEN
        FOR row_ IN SELECT * FROM ventros.inbox i
                    WHERE i.tenant_id = ch.tenant_id AND i.id = ANY (stored) AND i.status = 'received'
                    ORDER BY i.item_index LOOP
            PERFORM ventros.inbox_run(row_, now());
        END LOOP;
    END IF;
    RETURN QUERY SELECT 200, jsonb_build_object('status', 'accepted', 'inbox_id', head);
END
$$;
COMMENT ON FUNCTION ventros.accept_webhook(text, text, jsonb, bytea) IS
    'A provider webhook for a channel (any tenant: the channel names it): 404 unknown channel, 401 bad signature (counted), 400 not JSON (stored with its error), else 200 accepted (items stored idempotently; processed here when ventros.inbox_processing is inline, else by the inbox processor after commit) or duplicate';

-- ---- actions: cron schedules, exits at the moment, run records, campaign conversion status
-- (sql/74_automations.sql, 74_enrollments.sql, 75_campaigns.sql, 76_sequences.sql,
-- 84_automation_time_triggers.sql; docs/automation.md, docs/security.md)
--
-- record_automation_run let an agent write automation.triggered/.executed/
-- .failed with any details and set last_executed, as if the executor had run
-- the rule: the executor records runs itself (ventros.automation_runs and
-- ventros.automation_report), so the function is gone.
DROP FUNCTION ventros.record_automation_run(uuid, text, jsonb);

-- cron schedules: parsed (refused at create with 22023), and fired by the tick

CREATE OR REPLACE FUNCTION ventros.cron_field(field text, what text, lo integer, hi integer, names text[] DEFAULT NULL)
RETURNS integer[]
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    item text;
    m text[];
    bounds integer[];
    step integer;
    result integer[] := '{}';
BEGIN
    FOREACH item IN ARRAY string_to_array(lower(field), ',') LOOP
        m := regexp_match(item, '^(\*|([a-z]{3}|[0-9]{1,2})(-([a-z]{3}|[0-9]{1,2}))?)(/([0-9]{1,2}))?$');
        IF m IS NULL OR (m[2] IS NOT NULL AND m[4] IS NULL AND m[6] IS NOT NULL) THEN
            RAISE EXCEPTION 'invalid % field "%" in cron expression', what, left(field, 40) USING ERRCODE = '22023',
                HINT = 'Each field is a list of *, n, a-b, */step or a-b/step.';
        END IF;
        bounds := ARRAY[lo, hi];
        IF m[1] <> '*' THEN
            SELECT array_agg(CASE WHEN v ~ '^[0-9]+$' THEN v::integer ELSE array_position(names, v) - 1 + lo END ORDER BY o)
              INTO bounds FROM unnest(ARRAY[m[2], coalesce(m[4], m[2])]) WITH ORDINALITY x(v, o);
        END IF;
        step := coalesce(m[6]::integer, 1);
        IF bounds[1] IS NULL OR bounds[2] IS NULL OR bounds[1] < lo OR bounds[2] > hi OR bounds[1] > bounds[2] OR step < 1 THEN
            RAISE EXCEPTION 'invalid % field "%" in cron expression', what, left(field, 40) USING ERRCODE = '22023',
                DETAIL = format('Values of the %s field go from %s to %s, ranges upwards, steps from 1.', what, lo, hi);
        END IF;
        result := result || ARRAY(SELECT generate_series(bounds[1], bounds[2], step));
    END LOOP;
    RETURN ARRAY(SELECT DISTINCT x FROM unnest(result) x ORDER BY x);
END
$$;
COMMENT ON FUNCTION ventros.cron_field(text, text, integer, integer, text[]) IS
    'The values one field of a cron expression selects (lists, ranges, steps, names), or 22023';

CREATE OR REPLACE FUNCTION ventros.cron_parse(expression text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    expr text := lower(btrim(coalesce(expression, '')));
    f text[];
    dow integer[];
    dom integer[];
    month integer[];
BEGIN
    IF length(expr) > 200 THEN
        RAISE EXCEPTION 'cron expression is longer than 200 characters' USING ERRCODE = '22023';
    END IF;
    expr := CASE expr WHEN '@yearly' THEN '0 0 1 1 *' WHEN '@annually' THEN '0 0 1 1 *' WHEN '@monthly' THEN '0 0 1 * *'
                      WHEN '@weekly' THEN '0 0 * * 0' WHEN '@daily' THEN '0 0 * * *' WHEN '@midnight' THEN '0 0 * * *'
                      WHEN '@hourly' THEN '0 * * * *' ELSE expr END;
    f := regexp_split_to_array(expr, '\s+');
    IF expr = '' OR cardinality(f) <> 5 THEN
        RAISE EXCEPTION 'invalid cron expression "%"', left(expression, 60) USING ERRCODE = '22023',
            DETAIL = 'A cron expression has five fields: minute hour day-of-month month day-of-week (or @hourly, @daily, @weekly, @monthly, @yearly).',
            HINT = 'For example "*/15 9-17 * * MON-FRI".';
    END IF;
    dow := ventros.cron_field(f[5], 'day-of-week', 0, 7, '{sun,mon,tue,wed,thu,fri,sat}');
    dom := ventros.cron_field(f[3], 'day-of-month', 1, 31);
    month := ventros.cron_field(f[4], 'month', 1, 12, '{jan,feb,mar,apr,may,jun,jul,aug,sep,oct,nov,dec}');
    -- days matched by day-of-month alone (the weekday field "*..."): one must exist
    IF left(f[5], 1) = '*' AND NOT EXISTS (
        SELECT 1 FROM unnest(month) m, unnest(dom) d
         WHERE d <= ('{31,29,31,30,31,30,31,31,30,31,30,31}'::integer[])[m]) THEN
        RAISE EXCEPTION 'cron expression "%" never matches', left(expression, 60) USING ERRCODE = '22023',
            DETAIL = 'None of its months has one of its days of the month.';
    END IF;
    RETURN jsonb_build_object(
        'minute', ventros.cron_field(f[1], 'minute', 0, 59),
        'hour', ventros.cron_field(f[2], 'hour', 0, 23),
        'dom', dom,
        'month', month,
        'dow', ARRAY(SELECT DISTINCT x % 7 FROM unnest(dow) x ORDER BY 1),
        'dom_star', left(f[3], 1) = '*', 'dow_star', left(f[5], 1) = '*',
        'fixed', left(f[1], 1) <> '*' AND left(f[2], 1) <> '*');
END
$$;
COMMENT ON FUNCTION ventros.cron_parse(text) IS
    'Parses a cron expression (5 fields as pg_cron: lists, ranges, steps, month and weekday names, @hourly..@yearly) into the sets of values it matches; 22023 when invalid';

CREATE OR REPLACE FUNCTION ventros.cron_valid(expression text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.cron_parse(expression);
    RETURN true;
EXCEPTION WHEN invalid_parameter_value THEN
    RETURN false;
END
$$;
COMMENT ON FUNCTION ventros.cron_valid(text) IS 'Whether a cron expression parses (ventros.cron_parse)';

CREATE OR REPLACE FUNCTION ventros.automation_rules_valid(conditions jsonb, actions jsonb, schedule jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT pg_catalog.jsonb_typeof(conditions) = 'array' AND pg_catalog.jsonb_typeof(actions) = 'array'
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.jsonb_array_elements(conditions) c
                       WHERE NOT ventros.automation_condition_valid(c)
                          OR (c ? 'logic' AND NOT (c->'logic') <@ (ventros.automation_catalogue()->'logic_operators')))
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.jsonb_array_elements(actions) a
                       WHERE pg_catalog.jsonb_typeof(a) <> 'object'
                          OR NOT coalesce((a->'type') <@ (ventros.automation_catalogue()->'actions'), false)
                          OR (a ? 'params' AND pg_catalog.jsonb_typeof(a->'params') <> 'object')
                          OR (a ? 'delay_minutes' AND NOT (pg_catalog.jsonb_typeof(a->'delay_minutes') = 'number'
                                                           AND (a->>'delay_minutes')::numeric >= 0)))
       AND (schedule IS NULL OR (pg_catalog.jsonb_typeof(schedule) = 'object'
                                 AND coalesce((schedule->'type') <@ (ventros.automation_catalogue()->'schedule_types'), false)
                                 AND (schedule->>'type' <> 'cron' OR ventros.cron_valid(schedule->>'expression'))))
$$;
COMMENT ON FUNCTION ventros.automation_rules_valid(jsonb, jsonb, jsonb) IS
    'True when conditions, actions and schedule have the documented shapes (field/operator/value, type/params/delay_minutes, type; a cron schedule''s expression parses)';

CREATE OR REPLACE FUNCTION ventros.create_automation(name text, trigger text, actions jsonb, conditions jsonb DEFAULT '[]',
                                          automation_type text DEFAULT 'pipeline_based', pipeline_id uuid DEFAULT NULL,
                                          priority integer DEFAULT 0, schedule jsonb DEFAULT NULL,
                                          description text DEFAULT NULL, project_id uuid DEFAULT NULL,
                                          stop_processing boolean DEFAULT false, trigger_config jsonb DEFAULT '{}')
RETURNS ventros.automations
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.automations;
BEGIN
    IF name IS NULL OR trigger IS NULL THEN
        RAISE EXCEPTION 'automation % must not be null', CASE WHEN name IS NULL THEN 'name' ELSE 'trigger' END USING ERRCODE = '23502';
    END IF;
    PERFORM ventros.require_value(coalesce(automation_type, 'pipeline_based'), ARRAY(
        SELECT jsonb_array_elements_text(ventros.automation_catalogue()->'types')), 'automation type');
    IF NOT ventros.is_known_trigger(trigger) THEN
        RAISE EXCEPTION 'unknown automation trigger "%"', left(trigger, 100) USING ERRCODE = '22023',
            HINT = 'Use a built-in trigger or register a custom one with ventros.register_automation_trigger().';
    END IF;
    IF coalesce(automation_type, 'pipeline_based') = 'pipeline_based' AND pipeline_id IS NULL THEN
        RAISE EXCEPTION 'a pipeline_based automation needs a pipeline' USING ERRCODE = '23502';
    END IF;
    IF jsonb_typeof(schedule) = 'object' AND schedule->>'type' = 'cron' THEN
        PERFORM ventros.cron_parse(schedule->>'expression');   -- 22023 saying what is wrong
    END IF;
    IF NOT ventros.automation_rules_valid(coalesce(conditions, '[]'), coalesce(actions, '[]'), schedule) THEN
        RAISE EXCEPTION 'malformed automation conditions, actions or schedule' USING ERRCODE = '22023',
            HINT = 'Conditions are {field, operator, value, logic}; actions {type, params, delay_minutes}; see ventros.automation_catalogue().';
    END IF;
    INSERT INTO ventros.automations (project_id, automation_type, pipeline_id, name, description, trigger, conditions, actions,
                                     priority, schedule, stop_processing, trigger_config)
    VALUES (coalesce(project_id, ventros.default_project()), coalesce(automation_type, 'pipeline_based'), pipeline_id,
            ventros.check_length(btrim(name), 200, 'automation name'), description, trigger, coalesce(conditions, '[]'),
            coalesce(actions, '[]'), coalesce(priority, 0), schedule, coalesce(stop_processing, false),
            coalesce(ventros.require_json(trigger_config, 'object', 'trigger configuration'), '{}'))
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.create_automation(text, text, jsonb, jsonb, text, uuid, integer, jsonb, text, uuid, boolean, jsonb) IS
    'Creates an enabled automation (known trigger or event pattern, shaped rules: 22023; pipeline_based needs a pipeline: 23502; stop_processing: no lower-priority rule runs after it for the same event; trigger_config: parameters of time triggers); emits automation.created';


-- a new schedule is armed again by the next tick
CREATE OR REPLACE FUNCTION ventros.update_automation(automation_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.automations
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF jsonb_typeof(changes->'trigger') = 'string' AND NOT ventros.is_known_trigger(changes->>'trigger') THEN
        RAISE EXCEPTION 'unknown automation trigger "%"', left(changes->>'trigger', 100) USING ERRCODE = '22023';
    END IF;
    -- a new schedule: the next tick arms it again (next_execution of the old one means nothing)
    IF changes ? 'schedule' AND NOT changes ? 'next_execution' THEN
        changes := changes || '{"next_execution": null}';
    END IF;
    RETURN ventros.apply_changes(NULL::ventros.automations, 'automation', automation_id, expected_version, changes,
        ARRAY['name', 'description', 'trigger', 'conditions', 'actions', 'priority', 'enabled', 'schedule', 'pipeline_id',
              'automation_type', 'next_execution', 'stop_processing', 'trigger_config']);
EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION 'invalid automation: %', SQLERRM USING ERRCODE = '23514';
END
$$;
COMMENT ON FUNCTION ventros.update_automation(uuid, integer, jsonb) IS
    'Changes an automation (rules shaped, 23514; a new schedule is armed again by the next tick); emits automation.updated, or .enabled / .disabled';


GRANT EXECUTE ON FUNCTION ventros.cron_field(text, text, integer, integer, text[]), ventros.cron_parse(text),
    ventros.cron_valid(text) TO ventros_viewer;

CREATE OR REPLACE FUNCTION ventros.cron_day_matches(cron jsonb, local timestamp) RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (cron->'month') @> to_jsonb(extract(month FROM local)::integer)
       AND CASE WHEN (cron->>'dom_star')::boolean OR (cron->>'dow_star')::boolean
                THEN (cron->'dom') @> to_jsonb(extract(day FROM local)::integer)
                     AND (cron->'dow') @> to_jsonb(extract(dow FROM local)::integer)
                ELSE (cron->'dom') @> to_jsonb(extract(day FROM local)::integer)
                     OR (cron->'dow') @> to_jsonb(extract(dow FROM local)::integer) END
$$;
COMMENT ON FUNCTION ventros.cron_day_matches(jsonb, timestamp) IS
    'Whether the day of a local time matches a parsed cron expression (month; day of month and weekday: both when either field is "*...", else either)';

CREATE OR REPLACE FUNCTION ventros.cron_matches(cron jsonb, local timestamp) RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (cron->'minute') @> to_jsonb(extract(minute FROM local)::integer)
       AND (cron->'hour') @> to_jsonb(extract(hour FROM local)::integer)
       AND ventros.cron_day_matches(cron, local)
$$;
COMMENT ON FUNCTION ventros.cron_matches(jsonb, timestamp) IS
    'Whether a local wall-clock minute matches a parsed cron expression';

CREATE OR REPLACE FUNCTION ventros.cron_next(cron jsonb, tz text, after timestamptz, OUT at timestamptz, OUT local_at timestamp)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fixed boolean := (cron->>'fixed')::boolean;
    m timestamptz := to_timestamp(floor(extract(epoch FROM after) / 60) * 60 + 60);
    l timestamp;
    p timestamp;
BEGIN
    FOR i IN 1..20000 LOOP
        l := m AT TIME ZONE tz;
        IF fixed THEN
            -- the clocks went forward just before m: the skipped local minutes fire now
            p := (m - interval '1 minute') AT TIME ZONE tz;
            IF l - p > interval '1 minute' THEN
                SELECT g INTO local_at FROM generate_series(p + interval '1 minute', l - interval '1 minute', interval '1 minute') g
                 WHERE ventros.cron_matches(cron, g) LIMIT 1;
                IF local_at IS NOT NULL THEN
                    at := m;
                    RETURN;
                END IF;
            END IF;
        END IF;
        -- skip to the next local day or hour: the earlier of the real minutes
        -- left in it and its start in tz (which is the later instant of an
        -- ambiguous local time)
        IF NOT ventros.cron_day_matches(cron, l) THEN
            m := greatest(m + interval '1 minute', least(m + ((l::date + 1) - l), (l::date + 1)::timestamp AT TIME ZONE tz));
        ELSIF NOT (cron->'hour') @> to_jsonb(extract(hour FROM l)::integer) THEN
            m := greatest(m + interval '1 minute', least(m + (date_trunc('hour', l) + interval '1 hour' - l),
                                                          (date_trunc('hour', l) + interval '1 hour') AT TIME ZONE tz));
        ELSIF (cron->'minute') @> to_jsonb(extract(minute FROM l)::integer)
              -- a fixed time fires at the first occurrence of a repeated local minute only
              AND NOT (fixed AND EXISTS (SELECT 1 FROM generate_series(1, 180) k
                                          WHERE (m - make_interval(mins => k)) AT TIME ZONE tz >= l)) THEN
            at := m;
            local_at := l;
            RETURN;
        ELSE
            m := m + interval '1 minute';
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION ventros.cron_next(jsonb, text, timestamptz) IS
    'The first minute after an instant''s minute at which a parsed cron expression fires in a timezone, and the local minute it fires for (a fixed time skipped by a spring-forward gap fires right after it; a repeated local minute fires once); NULL when none';

CREATE OR REPLACE FUNCTION ventros.automation_next_occurrence(schedule jsonb, tz text, after timestamptz) RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    local_day date := (after AT TIME ZONE tz)::date;
    at_time time := coalesce(nullif(schedule->>'at', '')::time, '00:00');
    candidate timestamptz;
BEGIN
    IF schedule->>'type' = 'once' THEN
        candidate := (schedule->>'at')::timestamptz;
        RETURN CASE WHEN candidate > after THEN candidate END;
    ELSIF schedule->>'type' = 'cron' THEN
        RETURN (ventros.cron_next(ventros.cron_parse(schedule->>'expression'), tz, after)).at;
    END IF;
    FOR i IN 0..62 LOOP
        candidate := ((local_day + i) + at_time) AT TIME ZONE tz;
        CONTINUE WHEN candidate <= after;
        IF schedule->>'type' = 'weekly' AND NOT coalesce(schedule->'weekdays', '[1,2,3,4,5,6,7]')
                                                   @> to_jsonb(extract(isodow FROM local_day + i)::integer) THEN
            CONTINUE;
        END IF;
        IF schedule->>'type' = 'monthly' AND extract(day FROM local_day + i) <> coalesce((schedule->>'day')::integer, 1) THEN
            CONTINUE;
        END IF;
        RETURN candidate;
    END LOOP;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.automation_next_occurrence(jsonb, text, timestamptz) IS
    'The next instant after a given one at which a schedule (once, daily, weekly with ISO weekdays, monthly on a day, cron) falls, in a timezone';

CREATE OR REPLACE FUNCTION ventros.automation_tick_cron(rule ventros.automations, tz text, now timestamptz) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cron jsonb := ventros.cron_parse(rule.schedule->>'expression');
    due record;
    n integer := 0;
BEGIN
    IF rule.next_execution IS NULL THEN
        due := ventros.cron_next(cron, tz, now);
    ELSE
        due := ventros.cron_next(cron, tz, greatest(rule.next_execution, now - interval '1 hour') - interval '1 minute');
        WHILE due.at <= now LOOP
            IF ventros.automation_fire(rule, 'cron:' || to_char(due.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI"Z"'),
                                       jsonb_build_object('reason', 'schedule', 'due_at', due.at, 'local_time', due.local_at,
                                                          'timezone', tz, 'expression', rule.schedule->>'expression')) THEN
                n := n + 1;
            END IF;
            due := ventros.cron_next(cron, tz, due.at);
        END LOOP;
        -- the keys no tick reaches any more (it looks an hour back) go: a
        -- rule firing every minute would otherwise keep 1,440 a day
        DELETE FROM ventros.automation_timers t
         WHERE t.tenant_id = rule.tenant_id AND t.automation_id = rule.id AND t.fire_key LIKE 'cron:%'
           AND t.fire_key < 'cron:' || to_char((now - interval '2 hours') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI"Z"');
    END IF;
    UPDATE ventros.automations a SET next_execution = due.at,
                                     last_executed = CASE WHEN n > 0 THEN now ELSE a.last_executed END, version = a.version
     WHERE a.tenant_id = rule.tenant_id AND a.id = rule.id;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.automation_tick_cron(ventros.automations, text, timestamptz) IS
    'A tick for a cron-scheduled rule: fires once each minute it matched in the tenant''s timezone since next_execution (at most an hour back), keyed by the minute (keys older than two hours pruned); sets next_execution; returns how many fired';


CREATE OR REPLACE FUNCTION ventros.tick_automation_rules(now timestamptz DEFAULT now()) RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    settings ventros.automation_settings := ventros.current_automation_settings();
    tz text := settings.timezone;
    rule ventros.automations;
    due timestamptz;
    minutes integer;
    days integer;
    field text;
    x record;
    n integer := 0;
BEGIN
    PERFORM ventros.require_platform_admin();
    IF NOT settings.enabled THEN
        RETURN 0;
    END IF;
    FOR rule IN SELECT * FROM ventros.automations a
                 WHERE a.tenant_id = tenant AND a.enabled AND a.deleted_at IS NULL
                   AND a.trigger IN ('scheduled', 'no_response.timeout', 'date_field.reached')
                 ORDER BY a.priority DESC, a.created_at, a.id LOOP
        IF rule.trigger = 'scheduled' AND rule.schedule->>'type' = 'cron' THEN
            n := n + ventros.automation_tick_cron(rule, tz, now);
        ELSIF rule.trigger = 'scheduled' AND rule.schedule IS NOT NULL THEN
            due := rule.next_execution;
            IF due IS NOT NULL AND due <= now THEN
                IF ventros.automation_fire(rule, 'schedule:' || due::text, jsonb_build_object('reason', 'schedule', 'due_at', due)) THEN
                    n := n + 1;
                END IF;
            END IF;
            IF due IS NULL OR due <= now THEN
                UPDATE ventros.automations a SET next_execution = ventros.automation_next_occurrence(rule.schedule, tz, now),
                                                 last_executed = CASE WHEN due IS NOT NULL THEN now ELSE a.last_executed END,
                                                 version = a.version
                 WHERE a.tenant_id = tenant AND a.id = rule.id;
            END IF;
        ELSIF rule.trigger = 'no_response.timeout' THEN
            -- active sessions whose last message is the contact's, older than N minutes
            minutes := coalesce((rule.trigger_config->>'minutes')::integer, 60);
            FOR x IN SELECT s.id AS session_id, s.contact_id, s.channel_id, m.id AS message_id, m."timestamp"
                       FROM ventros.sessions s
                       CROSS JOIN LATERAL (SELECT mm.id, mm.from_me, mm."timestamp" FROM ventros.messages mm
                                            WHERE mm.tenant_id = s.tenant_id AND mm.session_id = s.id AND mm.deleted_at IS NULL
                                            ORDER BY mm."timestamp" DESC, mm.id DESC LIMIT 1) m
                      WHERE s.tenant_id = tenant AND s.status = 'active' AND s.deleted_at IS NULL
                        AND NOT m.from_me AND m."timestamp" <= now - make_interval(mins => minutes) LOOP
                IF ventros.automation_fire(rule, 'no_reply:' || x.message_id,
                       jsonb_build_object('reason', 'no_reply', 'session_id', x.session_id, 'contact_id', x.contact_id,
                                          'channel_id', x.channel_id, 'message_id', x.message_id, 'minutes', minutes)) THEN
                    n := n + 1;
                END IF;
            END LOOP;
        ELSIF rule.trigger = 'date_field.reached' THEN
            -- contacts whose date (a custom field, or created_at) plus N days is today, at "at" local time
            days := coalesce((rule.trigger_config->>'days')::integer, 0);
            field := coalesce(rule.trigger_config->>'field', 'created_at');
            CONTINUE WHEN (now AT TIME ZONE tz)::time < coalesce(nullif(rule.trigger_config->>'at', '')::time, '00:00');
            FOR x IN SELECT c.id AS contact_id, d.day
                       FROM ventros.contacts c
                       CROSS JOIN LATERAL (SELECT CASE WHEN field = 'created_at' THEN (c.created_at AT TIME ZONE tz)::date
                                                       ELSE (SELECT (f.field_value #>> '{}')::date FROM ventros.contact_custom_fields f
                                                              WHERE f.tenant_id = c.tenant_id AND f.contact_id = c.id
                                                                AND f.field_key = field AND f.deleted_at IS NULL
                                                                AND f.field_type = 'date' LIMIT 1) END AS day) d
                      WHERE c.tenant_id = tenant AND c.deleted_at IS NULL
                        AND d.day + days = (now AT TIME ZONE tz)::date LOOP
                IF ventros.automation_fire(rule, 'date:' || x.contact_id || ':' || (x.day + days),
                       jsonb_build_object('reason', 'date_field', 'contact_id', x.contact_id, 'field', field,
                                          'date', x.day, 'days', days)) THEN
                    n := n + 1;
                END IF;
            END LOOP;
        END IF;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.tick_automation_rules(timestamptz) IS
    'Scheduler (platform admins, per tenant through run_per_tenant): fires the acting tenant''s time triggers due at now, each once (scheduled: next_execution in the tenant''s timezone, every matching minute of a cron schedule; no_response.timeout: trigger_config.minutes since the contact''s unanswered message; date_field.reached: trigger_config.field + days); returns how many fired';


GRANT EXECUTE ON FUNCTION ventros.cron_day_matches(jsonb, timestamp), ventros.cron_matches(jsonb, timestamp),
    ventros.cron_next(jsonb, text, timestamptz) TO ventros_viewer;

-- a tag of exit_on added, a consent withdrawn: the enrollments exit at that moment

CREATE OR REPLACE FUNCTION ventros.journey_exit_reason(contact_id uuid, channel_id uuid, exit_on jsonb) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        -- no channel (no session yet): an opt-out of every channel still counts
        WHEN NOT ventros.may_message(contact_id, channel_id) THEN 'opted_out'
        WHEN jsonb_typeof(exit_on->'tags') = 'array' AND EXISTS (
            SELECT 1 FROM ventros.contacts c, jsonb_array_elements_text(exit_on->'tags') t
            WHERE c.tenant_id = ventros.require_tenant() AND c.id = contact_id AND t = ANY (c.tags)) THEN 'tag'
        WHEN jsonb_typeof(exit_on->'status_ids') = 'array' AND EXISTS (
            SELECT 1 FROM ventros.contact_pipeline_statuses p
            WHERE p.tenant_id = ventros.require_tenant() AND p.contact_id = journey_exit_reason.contact_id
              AND p.exited_at IS NULL AND p.deleted_at IS NULL AND exit_on->'status_ids' ? p.status_id::text) THEN 'status'
        END
$$;
COMMENT ON FUNCTION ventros.journey_exit_reason(uuid, uuid, jsonb) IS
    'Why a contact leaves a journey before a step: opted_out (of the channel, or of every channel), tag or status (exit_on.tags, exit_on.status_ids); NULL when it stays';

CREATE OR REPLACE FUNCTION ventros.journey_exits(contact_id uuid, at timestamptz) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    channel uuid;
    e ventros.sequence_enrollments;
    reason text;
    n integer := 0;
BEGIN
    -- the channel a step sends on (advance_sequence_enrollment): the latest session's
    SELECT x.channel_id INTO channel FROM ventros.sessions x
     WHERE x.tenant_id = tenant AND x.contact_id = journey_exits.contact_id ORDER BY x.started_at DESC LIMIT 1;
    FOR e IN SELECT x.* FROM ventros.sequence_enrollments x
              WHERE x.tenant_id = tenant AND x.contact_id = journey_exits.contact_id
                AND x.status IN ('active', 'paused') AND x.deleted_at IS NULL
              ORDER BY x.id
              FOR UPDATE OF x
    LOOP
        reason := ventros.journey_exit_reason(contact_id, channel,
                      (SELECT s.exit_on FROM ventros.sequences s WHERE s.tenant_id = tenant AND s.id = e.sequence_id));
        CONTINUE WHEN reason IS NULL;
        PERFORM ventros.end_sequence_enrollment(e, 'exited', reason, at);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.journey_exits(uuid, timestamptz) IS
    'Exits a contact''s current sequence enrollments that must end now (opted out, exit tag, exit status: journey_exit_reason) with that reason; emits sequence.enrollment_exited for each; returns how many';

CREATE OR REPLACE FUNCTION ventros.journey_contact_tagged() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM ventros.sequences s
                JOIN ventros.sequence_enrollments x ON x.tenant_id = s.tenant_id AND x.sequence_id = s.id
                 AND x.contact_id = NEW.id AND x.status IN ('active', 'paused') AND x.deleted_at IS NULL
               WHERE s.tenant_id = NEW.tenant_id AND jsonb_typeof(s.exit_on->'tags') = 'array'
                 AND s.exit_on->'tags' ?| ARRAY(SELECT unnest(NEW.tags) EXCEPT SELECT unnest(OLD.tags))) THEN
        PERFORM ventros.journey_exits(NEW.id, now());
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.journey_contact_tagged() IS
    'Trigger: a tag added to a contact exits its current enrollments of sequences with that tag in exit_on.tags, at once (ventros.journey_exits)';


CREATE TRIGGER ventros_journeys_contact_tagged AFTER UPDATE OF tags ON ventros.contacts
    FOR EACH ROW WHEN (OLD.deleted_at IS NULL AND NEW.deleted_at IS NULL AND NOT (OLD.tags @> NEW.tags))
    EXECUTE FUNCTION ventros.journey_contact_tagged();

CREATE OR REPLACE FUNCTION ventros.journey_contact_opted_out() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM ventros.sequences s
                JOIN ventros.sequence_enrollments x ON x.tenant_id = s.tenant_id AND x.sequence_id = s.id
                 AND x.contact_id = NEW.contact_id AND x.status IN ('active', 'paused') AND x.deleted_at IS NULL
               WHERE s.tenant_id = NEW.tenant_id) THEN
        PERFORM ventros.journey_exits(NEW.contact_id, now());
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.journey_contact_opted_out() IS
    'Trigger: a contact''s consent withdrawn exits its current sequence enrollments whose next step it forbids, at once (ventros.journey_exits)';


CREATE TRIGGER ventros_journeys_contact_opted_out AFTER INSERT OR UPDATE OF status ON ventros.contact_consents
    FOR EACH ROW WHEN (NEW.status = 'opted_out' AND NEW.deleted_at IS NULL)
    EXECUTE FUNCTION ventros.journey_contact_opted_out();
GRANT EXECUTE ON FUNCTION ventros.journey_exits(uuid, timestamptz) TO ventros_agent;

-- call_webhook: an inactive subscription is not called (sql/84_automation_executor.sql)
CREATE OR REPLACE FUNCTION ventros.automation_call_webhook(p jsonb, ctx jsonb, rule ventros.automations) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    w ventros.webhook_subscriptions;
    delivery uuid := gen_random_uuid();
    request uuid := gen_random_uuid();
    ev_id uuid := (ctx #>> '{event,id}')::uuid;
    body bytea;
BEGIN
    SELECT * INTO w FROM ventros.webhook_subscriptions x
     WHERE x.tenant_id = rule.tenant_id AND x.deleted_at IS NULL
       AND x.id = ventros.automation_require(p->>'webhook_subscription_id', 'params.webhook_subscription_id', 'call_webhook')::uuid;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'webhook subscription % not found', p->>'webhook_subscription_id' USING ERRCODE = 'P0002';
    END IF;
    IF w.secret IS NULL THEN
        RAISE EXCEPTION 'webhook subscription % has no secret: automation calls are signed', w.id USING ERRCODE = '22023';
    END IF;
    -- deactivated (by hand, on 410 Gone, after days of failures): no more deliveries, as for events
    IF NOT w.active THEN
        RAISE EXCEPTION 'webhook subscription % is inactive', w.id USING ERRCODE = '55000',
            HINT = 'Activate it again with ventros.set_webhook_subscription_active.';
    END IF;
    body := convert_to(ventros.webhook_cloudevent(rule.tenant_id, ev_id, ctx #>> '{event,type}', ctx #>> '{event,aggregate_type}',
                                                  (ctx #>> '{event,aggregate_id}')::uuid,
                                                  coalesce(p->'body', ctx->'payload') || jsonb_build_object('automation_id', rule.id),
                                                  (ctx #>> '{event,occurred_at}')::timestamptz), 'UTF8');
    INSERT INTO ventros.http_requests (tenant_id, id, method, url, headers, body, purpose, correlation_id,
                                       retry_policy, retry_schedule, max_attempts, timeout_ms)
    VALUES (rule.tenant_id, request, 'POST', w.url, ventros.webhook_request_headers(ev_id, delivery), body,
            'webhook.delivery', delivery, 'any', ventros.webhook_retry_schedule(),
            1 + least(w.retry_count, cardinality(ventros.webhook_retry_schedule())), w.timeout_seconds * 1000);
    INSERT INTO ventros.webhook_deliveries (tenant_id, id, subscription_id, event_id, event_type, aggregate_type,
                                            aggregate_id, request_id)
    VALUES (rule.tenant_id, delivery, w.id, ev_id, ctx #>> '{event,type}', ctx #>> '{event,aggregate_type}',
            (ctx #>> '{event,aggregate_id}')::uuid, request);
    RETURN jsonb_build_object('type', 'call_webhook', 'delivery_id', delivery);
END
$$;
COMMENT ON FUNCTION ventros.automation_call_webhook(jsonb, jsonb, ventros.automations) IS
    'Action call_webhook: one signed delivery of the triggering event (CloudEvents body, or params.body) to an active webhook subscription of the tenant (inactive: 55000), through the HTTP dispatcher';


-- campaigns.conversion_status_id references a pipeline status of the tenant.
-- A campaign naming a status that does not exist (or another tenant's) could
-- never count a conversion by status: its conversion_status_id is cleared,
-- as the campaign's own change (campaign.updated), and the operator is told.
DO $$
DECLARE
    r record;
    n integer := 0;
BEGIN
    FOR r IN SELECT c.tenant_id, c.id FROM ventros.campaigns c
              WHERE c.conversion_status_id IS NOT NULL
                AND NOT EXISTS (SELECT 1 FROM ventros.pipeline_statuses p
                                 WHERE p.tenant_id = c.tenant_id AND p.id = c.conversion_status_id)
              ORDER BY c.tenant_id, c.id LOOP
        PERFORM pg_catalog.set_config('ventros.tenant', r.tenant_id, true);
        UPDATE ventros.campaigns c SET conversion_status_id = NULL, version = c.version
         WHERE c.tenant_id = r.tenant_id AND c.id = r.id;
        n := n + 1;
    END LOOP;
    PERFORM pg_catalog.set_config('ventros.tenant', '', true);
    IF n > 0 THEN
        RAISE NOTICE '% campaign(s) named a conversion status that is not a pipeline status of their tenant: conversion_status_id cleared', n
            USING HINT = 'Set it again with ventros.update_campaign to a status of the tenant''s pipelines.';
    END IF;
END
$$;
ALTER TABLE ventros.campaigns
    ADD FOREIGN KEY (tenant_id, conversion_status_id) REFERENCES ventros.pipeline_statuses (tenant_id, id)
        ON DELETE SET NULL (conversion_status_id);

-- ---- billing states are the platform's (sql/12_users.sql, 62_billing_accounts.sql .. 65_usage_meters.sql)
-- A tenant's admins could activate their own billing account, claim any
-- Stripe customer, mark invoices paid, move subscriptions and reset their
-- usage.  These commands now belong to platform admins (and to the Stripe
-- webhook, which runs as the extension owner); tenants keep naming the
-- account and reading everything (docs/billing.md).
REVOKE EXECUTE ON FUNCTION ventros.activate_billing_payment(uuid, integer, jsonb), ventros.suspend_billing_account(uuid, integer, text),
    ventros.reactivate_billing_account(uuid, integer), ventros.cancel_billing_account(uuid, integer),
    ventros.link_stripe_customer(uuid, integer, text),
    ventros.create_subscription(uuid, text, text, text, timestamptz, timestamptz, timestamptz, ventros.product, jsonb),
    ventros.set_subscription_status(uuid, integer, text),
    ventros.update_subscription_period(uuid, integer, timestamptz, timestamptz),
    ventros.change_subscription_price(uuid, integer, text), ventros.schedule_subscription_cancellation(uuid, integer),
    ventros.cancel_subscription(uuid, integer), ventros.reactivate_subscription(uuid, integer),
    ventros.create_invoice(uuid, text, bigint, text, text, uuid, timestamptz, jsonb),
    ventros.finalize_invoice(uuid, integer), ventros.pay_invoice(uuid, integer),
    ventros.record_invoice_payment_failure(uuid, integer, text), ventros.mark_invoice_uncollectible(uuid, integer),
    ventros.void_invoice(uuid, integer), ventros.set_invoice_links(uuid, integer, text, text, timestamptz),
    ventros.create_usage_meter(uuid, text, text, text, timestamptz, timestamptz),
    ventros.report_usage(uuid, integer), ventros.reset_usage_period(uuid, integer, timestamptz, timestamptz)
    FROM ventros_admin;
REVOKE EXECUTE ON FUNCTION ventros.increment_usage(uuid, bigint) FROM ventros_agent;
-- Their tables: written by the platform only; a tenant role with a write
-- privilege could also emit their events (ventros.emit's check).
REVOKE INSERT, UPDATE, DELETE ON ventros.subscriptions, ventros.invoices, ventros.usage_meters FROM ventros_admin, ventros_agent;
GRANT INSERT, UPDATE, DELETE ON ventros.subscriptions, ventros.invoices, ventros.usage_meters TO ventros_platform_admin;
REVOKE INSERT, UPDATE, DELETE ON api.subscriptions, api.invoices, api.usage_meters FROM ventros_admin, ventros_agent;
-- Their direct writes: only the system's (a tenant's hint names no command it cannot call).
SELECT ventros.register_writes('billing_account', inserts => '{create_billing_account}', updates => '{update_billing_account}', deletes => '{}');
SELECT ventros.register_writes('subscription', inserts => '{}', updates => '{}', deletes => '{}');
SELECT ventros.register_writes('invoice', inserts => '{}', updates => '{}', deletes => '{}');
SELECT ventros.register_writes('usage_meter', inserts => '{}', updates => '{}', deletes => '{}');
GRANT EXECUTE ON FUNCTION ventros.activate_billing_payment(uuid, integer, jsonb), ventros.suspend_billing_account(uuid, integer, text),
    ventros.reactivate_billing_account(uuid, integer), ventros.cancel_billing_account(uuid, integer),
    ventros.link_stripe_customer(uuid, integer, text),
    ventros.create_subscription(uuid, text, text, text, timestamptz, timestamptz, timestamptz, ventros.product, jsonb),
    ventros.set_subscription_status(uuid, integer, text),
    ventros.update_subscription_period(uuid, integer, timestamptz, timestamptz),
    ventros.change_subscription_price(uuid, integer, text), ventros.schedule_subscription_cancellation(uuid, integer),
    ventros.cancel_subscription(uuid, integer), ventros.reactivate_subscription(uuid, integer),
    ventros.create_invoice(uuid, text, bigint, text, text, uuid, timestamptz, jsonb),
    ventros.finalize_invoice(uuid, integer), ventros.pay_invoice(uuid, integer),
    ventros.record_invoice_payment_failure(uuid, integer, text), ventros.mark_invoice_uncollectible(uuid, integer),
    ventros.void_invoice(uuid, integer), ventros.set_invoice_links(uuid, integer, text, text, timestamptz),
    ventros.create_usage_meter(uuid, text, text, text, timestamptz, timestamptz),
    ventros.report_usage(uuid, integer), ventros.reset_usage_period(uuid, integer, timestamptz, timestamptz),
    ventros.increment_usage(uuid, bigint)
    TO ventros_platform_admin;
CREATE OR REPLACE FUNCTION api.register(email text, password text, name text, tenant_name text DEFAULT NULL,
                             payment_method jsonb DEFAULT NULL)
RETURNS api.auth_grant
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    normalized text := ventros.normalize_email(email);
    acting     text := ventros.current_tenant();
    -- the caller's choice of tenant, restored on return (a SET clause would
    -- clear it before acting is read)
    previous   text := current_setting('ventros.tenant', true);
    new_tenant text;
    workspace  text;
    u          ventros.users;
    account    ventros.billing_accounts;
    project    ventros.projects;
    grant_     api.auth_grant;
BEGIN
    IF password IS NULL OR length(password) < 8 OR length(password) > 72 THEN
        RAISE EXCEPTION 'password must have 8 to 72 characters' USING ERRCODE = '22023';
    END IF;
    IF name IS NULL THEN
        RAISE EXCEPTION 'user name must not be null' USING ERRCODE = '23502';
    END IF;
    -- Idempotent by email: the same email and password answer as a login.
    SELECT * INTO u FROM ventros.users x WHERE x.email = normalized AND x.deleted_at IS NULL;
    IF FOUND THEN
        IF ventros.password_matches(password, u.password_hash) THEN
            PERFORM set_config('ventros.tenant', u.tenant_id, true);
            grant_ := ventros.issue_grant(u);
            PERFORM set_config('ventros.tenant', coalesce(previous, ''), true);
            RETURN grant_;
        END IF;
        RAISE EXCEPTION 'a user with email % already exists', normalized USING ERRCODE = '23505';
    END IF;
    IF acting IS NOT NULL THEN
        -- An administrator of a tenant adds a user to it.
        IF NOT ventros.caller_is_admin() THEN
            RAISE EXCEPTION 'only administrators add users to a tenant' USING ERRCODE = '42501';
        END IF;
        IF payment_method IS NOT NULL THEN
            RAISE EXCEPTION 'a payment method is given at sign-up only' USING ERRCODE = '22023',
                HINT = 'The billing account is activated from Stripe (a completed checkout; docs/billing.md).';
        END IF;
        new_tenant := acting;
    ELSE
        new_tenant := 't' || substr(replace(gen_random_uuid()::text, '-', ''), 1, 20);
    END IF;
    PERFORM set_config('ventros.tenant', new_tenant, true);
    INSERT INTO ventros.users (tenant_id, name, email, password_hash, role)
    VALUES (new_tenant, ventros.check_length(btrim(name), 200, 'user name'), normalized,
            ventros.hash_password(password), CASE WHEN acting IS NULL THEN 'admin' ELSE 'user' END)
    RETURNING * INTO u;
    IF acting IS NULL THEN
        -- Sign-up, in this one transaction: what a new tenant needs (domain
        -- 29): the owner's billing account (active when a payment method
        -- comes with the sign-up, else pending until one is added), the
        -- default project (under the account once it is active), the
        -- default pipeline, and the owner as a human agent.  API keys are
        -- made on demand (api.create_api_key): one made here could never be
        -- shown.
        workspace := ventros.check_length(coalesce(tenant_name, btrim(name) || '''s workspace'), 200, 'workspace name');
        account := ventros.create_billing_account(workspace, normalized, u.id);
        IF payment_method IS NOT NULL THEN
            account := ventros.activate_billing_payment(account.id, account.version, payment_method);
        END IF;
        INSERT INTO ventros.projects (tenant_id, name, user_id, billing_account_id)
        VALUES (new_tenant, workspace, u.id, CASE WHEN account.payment_status = 'active' THEN account.id END)
        RETURNING * INTO project;
        PERFORM ventros.create_pipeline('Default pipeline', project_id => project.id,
                                        statuses => ARRAY['New', 'In progress', 'Done']);
        PERFORM ventros.create_agent(u.name, 'human', email => u.email, user_id => u.id, role => 'admin',
                                     project_id => project.id);
    END IF;
    PERFORM ventros.emit('user.registered', 'user', u.id, jsonb_build_object('email', u.email, 'role', u.role), u.version);
    grant_ := ventros.issue_grant(u);
    PERFORM set_config('ventros.tenant', coalesce(previous, ''), true);
    RETURN grant_;
END
$$;
COMMENT ON FUNCTION api.register(text, text, text, text, jsonb) IS
    'Registers a user (idempotent by email): anonymous callers sign up a new tenant as its admin, with its billing account (active when a payment method is given), default project, default pipeline and the owner as a human agent; a tenant admin adds a user to the tenant. Returns a login grant';

-- ---- enrichment (sql/45_http_requests.sql, 80_message_enrichments.sql, 98_enrichment.sql, 98_enrichment_providers.sql)
-- Media enrichment (issue 16, docs/ai.md): the dispatcher builds request
-- bodies from downloaded media (body_form: multipart or inline base64), the
-- enrichment rows get the provider chain's columns and a full-text vector,
-- and the routes, providers, per-tenant settings, chain and answer handlers
-- are new.
ALTER TABLE ventros.http_requests ADD COLUMN body_form jsonb, ADD COLUMN media_id uuid,
    ADD CONSTRAINT http_requests_body_form_shape CHECK (body_form IS NULL
        OR (media_id IS NOT NULL
            AND (jsonb_typeof(body_form->'multipart') = 'array' OR jsonb_typeof(body_form->'inline_base64') = 'string')));
COMMENT ON COLUMN ventros.http_requests.body_form IS
    'NULL: body is sent as is. {"multipart": [{name, value} | {name, media: true, filename, content_type}]}: a multipart/form-data body whose media part is the message''s downloaded media; {"inline_base64": marker}: body with marker replaced by the media''s base64. Built by the dispatcher at each attempt';
COMMENT ON COLUMN ventros.http_requests.media_id IS
    'Whose downloaded media the body_form streams: a message (ventros.message_media) or an enrichment (ventros.enrichment_media, e.g. a profile picture); never copied into the row';

-- The bytes a body_form streams: a message's media as its download stored
-- it (sql/90_channel_send.sql), or an enrichment's own download (a profile
-- picture, sql/98_enrichment.sql).  plpgsql, so those tables may come later.
CREATE FUNCTION ventros.http_request_media(tenant_id text, media_id uuid) RETURNS bytea
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN coalesce((SELECT mm.data FROM ventros.message_media mm
                      WHERE mm.tenant_id = http_request_media.tenant_id AND mm.message_id = http_request_media.media_id
                        AND mm.status = 'downloaded'),
                    (SELECT em.data FROM ventros.enrichment_media em
                      WHERE em.tenant_id = http_request_media.tenant_id AND em.enrichment_id = http_request_media.media_id
                        AND em.status = 'downloaded'));
END
$$;
COMMENT ON FUNCTION ventros.http_request_media(text, uuid) IS
    'Dispatcher: the downloaded media of a message or of an enrichment (NULL when it is not downloaded), streamed by a request''s body_form';

-- Claims up to batch_size due rows: SKIP LOCKED, one attempt counted, a lease.
-- Rows whose lease expired (a dispatcher died mid-flight) are due again.
DROP FUNCTION ventros.http_claim(integer, interval);
CREATE FUNCTION ventros.http_claim(batch_size integer, lease interval)
RETURNS TABLE (tenant_id text, id uuid, method text, url text, headers jsonb, body bytea,
               attempts integer, timeout_ms integer, retry_policy text, max_response_size integer,
               body_form jsonb, media bytea)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH due_now AS (
        SELECT r.tenant_id, r.id FROM ventros.http_requests r
         WHERE r.status = 'pending' AND r.next_attempt_at <= now()
         ORDER BY r.next_attempt_at LIMIT batch_size FOR UPDATE SKIP LOCKED),
    lease_expired AS (
        SELECT r.tenant_id, r.id FROM ventros.http_requests r
         WHERE r.status = 'in_flight' AND r.lease_until < now()
         ORDER BY r.lease_until LIMIT batch_size FOR UPDATE SKIP LOCKED),
    due AS (
        SELECT * FROM due_now UNION ALL SELECT * FROM lease_expired LIMIT batch_size)
    UPDATE ventros.http_requests r
       SET status = 'in_flight', attempts = r.attempts + 1, lease_until = now() + lease,
           claimed_by = pg_backend_pid(), last_attempt_at = now(), updated_at = now()
      FROM due
     WHERE r.tenant_id = due.tenant_id AND r.id = due.id
    RETURNING r.tenant_id, r.id, r.method, r.url,
              CASE WHEN EXISTS (SELECT 1 FROM ventros.http_request_preparers p WHERE p.purpose = r.purpose)
                   THEN ventros.http_attempt_headers(r) ELSE r.headers END,
              r.body, r.attempts, r.timeout_ms, r.retry_policy, r.max_response_size, r.body_form,
              -- the media a body_form streams, as the media download stored it
              CASE WHEN r.body_form IS NOT NULL THEN ventros.http_request_media(r.tenant_id, r.media_id) END
$$;
COMMENT ON FUNCTION ventros.http_claim(integer, interval) IS
    'Dispatcher: claims due requests (and requests whose lease expired) with a lease, counting an attempt; with the media a body_form streams';

ALTER TABLE ventros.message_enrichments ALTER COLUMN message_group_id DROP NOT NULL, ALTER COLUMN message_id DROP NOT NULL,
    ADD COLUMN kind text, ADD COLUMN model text, ADD COLUMN language text, ADD COLUMN confidence numeric,
    ADD COLUMN usage jsonb, ADD COLUMN cost numeric, ADD COLUMN route text[], ADD COLUMN route_position integer,
    ADD COLUMN request_id uuid, ADD COLUMN job_id text, ADD COLUMN error_code text, ADD COLUMN retry_at timestamptz,
    ADD COLUMN attempts jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, coalesce(extracted_text, ''))) STORED,
    DROP CONSTRAINT message_enrichments_provider,
    ADD CONSTRAINT message_enrichments_provider CHECK (provider IN ('whisper', 'deepgram', 'vision', 'llamaparse', 'ffmpeg', 'tesseract',
                                                                'groq', 'openai', 'gemini')),
    ADD CONSTRAINT message_enrichments_kind CHECK (kind IN ('transcription', 'vision', 'document', 'profile_score')),
    ADD CONSTRAINT message_enrichments_error_code CHECK (error_code IN ('providers_failed', 'no_provider', 'too_large', 'spending_cap',
                                                                    'disabled', 'no_media')),
    ADD CONSTRAINT message_enrichments_numbers CHECK (confidence BETWEEN 0 AND 1 AND cost >= 0),
    ADD CONSTRAINT message_enrichments_subject CHECK (message_id IS NOT NULL OR context = 'profile_picture');
CREATE INDEX message_enrichments_search ON ventros.message_enrichments USING gin (search_vector);
CREATE INDEX message_enrichments_retry ON ventros.message_enrichments (retry_at) WHERE status = 'failed' AND retry_at IS NOT NULL;
COMMENT ON COLUMN ventros.message_enrichments.kind IS 'transcription (audio), vision (image: text in it and a description), document (parsed to markdown), profile_score';
COMMENT ON COLUMN ventros.message_enrichments.usage IS 'What the provider counted: seconds (audio), input_tokens / output_tokens (vision), pages (documents)';
COMMENT ON COLUMN ventros.message_enrichments.cost IS 'US dollars, from usage and the provider''s declared prices (ventros.enrichment_providers.prices)';
COMMENT ON COLUMN ventros.message_enrichments.route IS 'The providers tried in order (the route of the media kind, the tenant''s override first)';
COMMENT ON COLUMN ventros.message_enrichments.request_id IS 'The http_requests row of the current attempt: answers of older attempts are ignored';
COMMENT ON COLUMN ventros.message_enrichments.error_code IS 'Why it failed: providers_failed, no_provider, too_large, spending_cap, disabled, no_media';
COMMENT ON COLUMN ventros.message_enrichments.retry_at IS 'When a failed enrichment is tried again (ventros.retry_enrichments); NULL: never by itself';
COMMENT ON COLUMN ventros.message_enrichments.attempts IS 'One entry per provider tried: provider, request id, outcome, error';
COMMENT ON COLUMN ventros.message_enrichments.search_vector IS 'Full-text vector of extracted_text (simple configuration), for search over messages';
-- the api view of the table gets the new columns
SELECT ventros.expose_api();
SELECT ventros.register_aggregate('message_enrichment', 'ventros.message_enrichments', 'crm',
    state_column => 'status',
    transitions => '[
        {"from": null, "to": "pending"},
        {"from": "pending", "to": "processing"},
        {"from": "processing", "to": "completed", "event": "message_enrichment.completed", "description": "Text was extracted from a media message."},
        {"from": "processing", "to": "failed", "event": "message_enrichment.failed", "description": "Extracting text from a media message failed."},
        {"from": "failed", "to": "pending", "event": "message_enrichment.retried", "description": "A failed enrichment was queued again."},
        {"from": "completed", "to": "pending", "event": "message_enrichment.retried"}
    ]',
    description => 'Text extracted from a media message');
CREATE OR REPLACE FUNCTION ventros.create_message_enrichment(message_id uuid, message_group_id uuid, provider text,
                                                  context text DEFAULT 'chat_message')
RETURNS ventros.message_enrichments
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m ventros.messages;
    result ventros.message_enrichments;
BEGIN
    SELECT * INTO m FROM ventros.messages x WHERE x.tenant_id = ventros.require_tenant() AND x.id = message_id;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('message', message_id);
    END IF;
    IF m.content_type NOT IN ('audio', 'voice', 'image', 'video', 'document') OR m.media_url IS NULL THEN
        RAISE EXCEPTION 'message % has no media to enrich', message_id USING ERRCODE = '22023';
    END IF;
    PERFORM ventros.require_value(provider, ARRAY['whisper', 'deepgram', 'vision', 'llamaparse', 'ffmpeg', 'tesseract',
                                                  'groq', 'openai', 'gemini'], 'enrichment provider');
    INSERT INTO ventros.message_enrichments (message_id, message_group_id, contact_id, content_type, provider, media_url, context)
    VALUES (m.id, message_group_id, m.contact_id, m.content_type, provider, m.media_url, coalesce(context, 'chat_message'))
    RETURNING * INTO result;
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'message % is enriched by % already', message_id, provider USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.create_message_enrichment(uuid, uuid, text, text) IS
    'Queues text extraction for a media message (no media: 22023); emits message_enrichment.created';

-- Media enrichment: the text of a media message (an audio transcript, the
-- text in an image and its description, a document as markdown) obtained
-- from AI providers through the HTTP dispatcher, with a fallback chain per
-- media kind.  docs/ai.md; wire formats in design channels.md section 5.
--
-- One mechanism for every provider:
--   - a provider is a row of ventros.enrichment_providers (base URL, default
--     model, media size limit, prices, how its key is sent) plus what is
--     truly its own: the function building its request, and its answer
--     handler registered for the purpose enrichment.<provider> in
--     ventros.http_request_handlers (sql/98_enrichment_providers.sql);
--   - a route is data: ventros.enrichment_routes per media kind (audio ->
--     groq, openai; image -> gemini; document -> llamaparse;
--     profile_picture -> gemini), overridden per tenant by
--     ventros.enrichment_route_overrides;
--   - the chain (enrichment_advance) tries the route's providers in order:
--     a provider that is disabled, has no key or cannot take the media's
--     size is skipped; a failed attempt (error, timeout, 429, malformed
--     answer) moves to the next; when none is left the enrichment fails with
--     an error code and a retry time (ventros.retry_enrichments).
--
-- Keys: a tenant names one of its credentials (sql/68_credentials.sql) per
-- provider.  The key is never on a request row: the purpose's preparer
-- (ventros.enrichment_request_headers) decrypts it when the dispatcher claims
-- the attempt, and only the dispatcher sees the header.
--
-- Media: the request row names the message whose downloaded bytes
-- (ventros.message_media) are its body's file part (multipart) or its inline
-- base64 (body_form, media_id on ventros.http_requests); the
-- dispatcher reads them at claim time and streams them to libcurl, never
-- copying them into the queue.

-- ---- catalogue ------------------------------------------------------------------

CREATE TABLE ventros.enrichment_providers (
    provider       text PRIMARY KEY,
    kind           text    NOT NULL,
    base_url       text    NOT NULL,
    model          text,
    build_request  regprocedure NOT NULL,
    max_media_size bigint  NOT NULL,
    timeout_ms     integer NOT NULL DEFAULT 120000,
    max_attempts   integer NOT NULL DEFAULT 1,
    auth_header    text    NOT NULL DEFAULT 'Authorization',
    auth_scheme    text    DEFAULT 'Bearer',
    prices         jsonb   NOT NULL DEFAULT '{}',
    description    text,
    CONSTRAINT enrichment_providers_name CHECK (provider ~ '^[a-z][a-z0-9_]{0,30}$'),
    CONSTRAINT enrichment_providers_kind CHECK (kind IN ('transcription', 'vision', 'document')),
    CONSTRAINT enrichment_providers_url CHECK (base_url ~* '^https?://[^/?#]'),
    CONSTRAINT enrichment_providers_numbers CHECK (max_media_size > 0 AND timeout_ms BETWEEN 100 AND 600000
                                                   AND max_attempts BETWEEN 1 AND 10),
    CONSTRAINT enrichment_providers_prices CHECK (jsonb_typeof(prices) = 'object')
);
COMMENT ON TABLE ventros.enrichment_providers IS
    'AI providers of media enrichment: kind, default base URL and model, the function building a request (f(ventros.message_enrichments, jsonb config) RETURNS jsonb), media size limit, timeout, attempts, the key''s header, prices in USD (per_second, per_input_token, per_output_token, per_page)';
ALTER TABLE ventros.enrichment_providers ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.enrichment_providers FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_catalog_read ON ventros.enrichment_providers FOR SELECT USING (true);
GRANT SELECT ON ventros.enrichment_providers TO ventros_viewer;

CREATE TABLE ventros.enrichment_routes (
    media_kind text    NOT NULL,
    position   integer NOT NULL,
    provider   text    NOT NULL REFERENCES ventros.enrichment_providers (provider),
    PRIMARY KEY (media_kind, position),
    CONSTRAINT enrichment_routes_media_kind CHECK (media_kind IN ('audio', 'image', 'document', 'profile_picture')),
    CONSTRAINT enrichment_routes_position CHECK (position BETWEEN 1 AND 10)
);
COMMENT ON TABLE ventros.enrichment_routes IS
    'The default route of each media kind: its providers in the order they are tried';
ALTER TABLE ventros.enrichment_routes ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.enrichment_routes FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_catalog_read ON ventros.enrichment_routes FOR SELECT USING (true);
GRANT SELECT ON ventros.enrichment_routes TO ventros_viewer;

CREATE FUNCTION ventros.register_enrichment_provider(provider text, kind text, base_url text, model text,
                                                    build_request regprocedure, max_media_size bigint,
                                                    prices jsonb DEFAULT '{}', auth_header text DEFAULT 'Authorization',
                                                    auth_scheme text DEFAULT 'Bearer', timeout_ms integer DEFAULT 120000,
                                                    description text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.require_function_shape(build_request, ARRAY['ventros.message_enrichments', 'jsonb']::regtype[], 'jsonb',
                                           'request builder');
    INSERT INTO ventros.enrichment_providers AS p (provider, kind, base_url, model, build_request, max_media_size, prices,
                                                   auth_header, auth_scheme, timeout_ms, description)
    VALUES (provider, kind, base_url, model, build_request, max_media_size, coalesce(prices, '{}'), auth_header,
            auth_scheme, timeout_ms, description)
    ON CONFLICT ON CONSTRAINT enrichment_providers_pkey DO UPDATE
       SET kind = EXCLUDED.kind, base_url = EXCLUDED.base_url, model = EXCLUDED.model,
           build_request = EXCLUDED.build_request, max_media_size = EXCLUDED.max_media_size, prices = EXCLUDED.prices,
           auth_header = EXCLUDED.auth_header, auth_scheme = EXCLUDED.auth_scheme, timeout_ms = EXCLUDED.timeout_ms,
           description = EXCLUDED.description;
END
$$;
COMMENT ON FUNCTION ventros.register_enrichment_provider(text, text, text, text, regprocedure, bigint, jsonb, text, text, integer, text) IS
    'Declares an enrichment provider (see ventros.enrichment_providers); its answer handler is registered for the purpose enrichment.<provider>';

-- ---- per tenant -----------------------------------------------------------------

CREATE TABLE ventros.enrichment_settings (
    tenant_id         text        NOT NULL DEFAULT ventros.current_tenant(),
    enabled           boolean     NOT NULL DEFAULT false,
    auto              boolean     NOT NULL DEFAULT true,
    monthly_cap       numeric,
    language          text,
    retry_delay       interval    NOT NULL DEFAULT interval '15 minutes',
    cap_reached_month date,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id),
    CONSTRAINT enrichment_settings_cap CHECK (monthly_cap >= 0),
    CONSTRAINT enrichment_settings_language CHECK (language ~ '^[a-z]{2}$'),
    CONSTRAINT enrichment_settings_retry_delay CHECK (retry_delay >= interval '1 second')
);
COMMENT ON TABLE ventros.enrichment_settings IS
    'A tenant''s enrichment: on or off (off by default), automatic on media download, the monthly spending cap in USD (NULL: none), the language hint, the delay before a failed enrichment is retried';
ALTER TABLE ventros.enrichment_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.enrichment_settings FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_select ON ventros.enrichment_settings FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.enrichment_settings TO ventros_viewer;

CREATE TABLE ventros.enrichment_provider_settings (
    tenant_id     text        NOT NULL DEFAULT ventros.current_tenant(),
    provider      text        NOT NULL REFERENCES ventros.enrichment_providers (provider),
    enabled       boolean     NOT NULL DEFAULT true,
    credential_id uuid,
    base_url      text,
    model         text,
    options       jsonb       NOT NULL DEFAULT '{}',
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, provider),
    FOREIGN KEY (tenant_id, credential_id) REFERENCES ventros.credentials (tenant_id, id),
    CONSTRAINT enrichment_provider_settings_url CHECK (base_url ~* '^https?://[^/?#]' AND length(base_url) <= 2048),
    CONSTRAINT enrichment_provider_settings_model CHECK (btrim(model) <> '' AND length(model) <= 200),
    CONSTRAINT enrichment_provider_settings_options CHECK (jsonb_typeof(options) = 'object')
);
COMMENT ON TABLE ventros.enrichment_provider_settings IS
    'A tenant''s use of a provider: enabled, the credential holding its key, base URL and model overrides (a self-hosted OpenAI-compatible server), options (timeout_ms, prompt, poll_ms, poll_max_ms, poll_timeout_s)';
ALTER TABLE ventros.enrichment_provider_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.enrichment_provider_settings FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_select ON ventros.enrichment_provider_settings FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.enrichment_provider_settings TO ventros_viewer;

CREATE TABLE ventros.enrichment_route_overrides (
    tenant_id  text   NOT NULL DEFAULT ventros.current_tenant(),
    media_kind text   NOT NULL,
    providers  text[] NOT NULL,
    PRIMARY KEY (tenant_id, media_kind),
    CONSTRAINT enrichment_route_overrides_media_kind CHECK (media_kind IN ('audio', 'image', 'document', 'profile_picture')),
    CONSTRAINT enrichment_route_overrides_size CHECK (cardinality(providers) BETWEEN 1 AND 10)
);
COMMENT ON TABLE ventros.enrichment_route_overrides IS 'A tenant''s own route for a media kind, instead of ventros.enrichment_routes';
ALTER TABLE ventros.enrichment_route_overrides ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.enrichment_route_overrides FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_select ON ventros.enrichment_route_overrides FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.enrichment_route_overrides TO ventros_viewer;

-- The media an enrichment downloads itself (a contact's profile picture; a
-- message's media is ventros.message_media, the channels' download).
CREATE TABLE ventros.enrichment_media (
    tenant_id     text        NOT NULL,
    enrichment_id uuid        NOT NULL,
    status        text        NOT NULL DEFAULT 'requested',
    content_type  text,
    size          bigint,
    sha256        text,
    data          bytea,
    error         text,
    requested_at  timestamptz NOT NULL DEFAULT now(),
    downloaded_at timestamptz,
    PRIMARY KEY (tenant_id, enrichment_id),
    FOREIGN KEY (tenant_id, enrichment_id) REFERENCES ventros.message_enrichments (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT enrichment_media_status_known CHECK (status IN ('requested', 'downloaded', 'failed')),
    CONSTRAINT enrichment_media_downloaded_complete CHECK (status <> 'downloaded'
                                                           OR (data IS NOT NULL AND size = length(data) AND sha256 IS NOT NULL))
);
COMMENT ON TABLE ventros.enrichment_media IS
    'Media an enrichment downloads itself (a contact''s profile picture): requested, downloaded (bytes, type, size, sha256) or failed';
ALTER TABLE ventros.enrichment_media ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.enrichment_media FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_select ON ventros.enrichment_media FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.enrichment_media TO ventros_viewer;

SELECT ventros.register_event_type('contact.profile_picture_scored', 'A contact''s profile picture was scored 0-10 by a vision provider.');
SELECT ventros.register_event_type('message.enriched', 'A media message''s text was extracted by an AI provider (transcript, image text, document).');
SELECT ventros.register_event_type('message.enrichment_failed', 'Every provider of a media message''s route failed or was refused; the error code and the retry time say why and when.');
SELECT ventros.register_event_type('message_enrichment.spending_cap_reached', 'The tenant''s monthly enrichment spending reached its cap: no new provider request this month.');

-- ---- configuration (tenant administrators) ------------------------------------------

CREATE FUNCTION ventros.configure_enrichment(enabled boolean DEFAULT NULL, monthly_cap numeric DEFAULT NULL,
                                            language text DEFAULT NULL, auto boolean DEFAULT NULL,
                                            retry_delay interval DEFAULT NULL, remove_cap boolean DEFAULT false)
RETURNS ventros.enrichment_settings
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    result ventros.enrichment_settings;
BEGIN
    -- SECURITY DEFINER: the settings are written by this function only
    IF monthly_cap < 0 THEN
        RAISE EXCEPTION 'monthly_cap must not be negative' USING ERRCODE = '22023';
    END IF;
    IF language !~ '^[a-z]{2}$' THEN
        RAISE EXCEPTION 'language must be an ISO-639-1 code (two lower-case letters)' USING ERRCODE = '22023';
    END IF;
    INSERT INTO ventros.enrichment_settings AS s (tenant_id, enabled, monthly_cap, language, auto, retry_delay)
    VALUES (tenant, coalesce(configure_enrichment.enabled, false), configure_enrichment.monthly_cap,
            configure_enrichment.language, coalesce(configure_enrichment.auto, true),
            coalesce(configure_enrichment.retry_delay, interval '15 minutes'))
    ON CONFLICT ON CONSTRAINT enrichment_settings_pkey DO UPDATE
       SET enabled = coalesce(configure_enrichment.enabled, s.enabled),
           monthly_cap = CASE WHEN remove_cap THEN NULL ELSE coalesce(configure_enrichment.monthly_cap, s.monthly_cap) END,
           cap_reached_month = CASE WHEN remove_cap OR configure_enrichment.monthly_cap IS NOT NULL THEN NULL
                                    ELSE s.cap_reached_month END,
           language = coalesce(configure_enrichment.language, s.language),
           auto = coalesce(configure_enrichment.auto, s.auto),
           retry_delay = coalesce(configure_enrichment.retry_delay, s.retry_delay),
           updated_at = now()
    RETURNING * INTO result;
    RETURN result;
EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION 'invalid enrichment settings: %', SQLERRM USING ERRCODE = '22023';
END
$$;
COMMENT ON FUNCTION ventros.configure_enrichment(boolean, numeric, text, boolean, interval, boolean) IS
    'Turns enrichment on or off for the tenant and sets its monthly spending cap in USD (remove_cap: none), language hint, automatic enrichment of downloaded media, retry delay; NULL keeps a value';

CREATE FUNCTION ventros.configure_enrichment_provider(provider text, credential_id uuid DEFAULT NULL, enabled boolean DEFAULT NULL,
                                                     base_url text DEFAULT NULL, model text DEFAULT NULL,
                                                     options jsonb DEFAULT NULL)
RETURNS ventros.enrichment_provider_settings
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    result ventros.enrichment_provider_settings;
BEGIN
    -- SECURITY DEFINER: the settings are written by this function only
    IF NOT EXISTS (SELECT 1 FROM ventros.enrichment_providers p WHERE p.provider = configure_enrichment_provider.provider) THEN
        RAISE EXCEPTION 'unknown enrichment provider "%"', left(provider, 64) USING ERRCODE = '22023',
            HINT = 'See ventros.enrichment_providers.';
    END IF;
    IF credential_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ventros.credentials c
                                                  WHERE c.tenant_id = tenant AND c.id = credential_id AND c.deleted_at IS NULL) THEN
        PERFORM ventros.not_found('credential', credential_id);
    END IF;
    IF options IS NOT NULL THEN
        PERFORM ventros.require_json(options, 'object', 'provider options');
    END IF;
    INSERT INTO ventros.enrichment_provider_settings AS s (tenant_id, provider, enabled, credential_id, base_url, model, options)
    VALUES (tenant, provider, coalesce(configure_enrichment_provider.enabled, true), credential_id, base_url, model,
            coalesce(options, '{}'))
    ON CONFLICT ON CONSTRAINT enrichment_provider_settings_pkey DO UPDATE
       SET enabled = coalesce(configure_enrichment_provider.enabled, s.enabled),
           credential_id = coalesce(configure_enrichment_provider.credential_id, s.credential_id),
           base_url = coalesce(configure_enrichment_provider.base_url, s.base_url),
           model = coalesce(configure_enrichment_provider.model, s.model),
           options = coalesce(configure_enrichment_provider.options, s.options),
           updated_at = now()
    RETURNING * INTO result;
    RETURN result;
EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION 'invalid provider settings: %', SQLERRM USING ERRCODE = '22023';
END
$$;
COMMENT ON FUNCTION ventros.configure_enrichment_provider(text, uuid, boolean, text, text, jsonb) IS
    'Sets a tenant''s use of an enrichment provider: the credential holding its key (never shown), enabled, base URL and model (a self-hosted OpenAI-compatible server), options; NULL keeps a value';

CREATE FUNCTION ventros.set_enrichment_route(media_kind text, providers text[])
RETURNS text[]
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    unknown text;
BEGIN
    -- SECURITY DEFINER: the overrides are written by this function only
    PERFORM ventros.require_value(media_kind, ARRAY['audio', 'image', 'document', 'profile_picture'], 'media kind');
    IF providers IS NULL THEN
        DELETE FROM ventros.enrichment_route_overrides o WHERE o.tenant_id = tenant AND o.media_kind = set_enrichment_route.media_kind;
        RETURN ventros.enrichment_route(media_kind);
    END IF;
    SELECT x INTO unknown FROM unnest(providers) x
     WHERE NOT EXISTS (SELECT 1 FROM ventros.enrichment_providers p WHERE p.provider = x) LIMIT 1;
    IF unknown IS NOT NULL OR cardinality(providers) NOT BETWEEN 1 AND 10 THEN
        RAISE EXCEPTION 'a route is 1 to 10 known providers' USING ERRCODE = '22023',
            DETAIL = format('Unknown: %s.', coalesce(unknown, 'none'));
    END IF;
    INSERT INTO ventros.enrichment_route_overrides AS o (tenant_id, media_kind, providers)
    VALUES (tenant, media_kind, providers)
    ON CONFLICT ON CONSTRAINT enrichment_route_overrides_pkey DO UPDATE SET providers = EXCLUDED.providers;
    RETURN providers;
END
$$;
COMMENT ON FUNCTION ventros.set_enrichment_route(text, text[]) IS
    'Sets the tenant''s route of a media kind (audio, image, document, profile_picture) to these providers in order; NULL: back to the default route';

CREATE FUNCTION ventros.enrichment_route(media_kind text) RETURNS text[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- plpgsql: its plans are kept (it runs for every enrichment)
    RETURN coalesce((SELECT o.providers FROM ventros.enrichment_route_overrides o
                      WHERE o.tenant_id = ventros.require_tenant() AND o.media_kind = enrichment_route.media_kind),
                    ARRAY(SELECT r.provider FROM ventros.enrichment_routes r
                           WHERE r.media_kind = enrichment_route.media_kind ORDER BY r.position));
END
$$;
COMMENT ON FUNCTION ventros.enrichment_route(text) IS 'The providers the acting tenant''s enrichments of a media kind try, in order';

-- The media kind of a message: audio/voice, image, document (PDF, Word,
-- spreadsheets, presentations, text), or NULL (video, stickers: not routed).
CREATE FUNCTION ventros.enrichment_media_kind(content_type text, mimetype text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- (no SET clause: small enough to be inlined; every name is qualified)
AS $$
    SELECT CASE
        WHEN content_type OPERATOR(pg_catalog.=) ANY (ARRAY['audio', 'voice']) THEN 'audio'
        WHEN content_type OPERATOR(pg_catalog.=) 'image' THEN 'image'
        WHEN content_type OPERATOR(pg_catalog.=) 'document' THEN 'document'
        WHEN content_type IS NULL AND mimetype OPERATOR(pg_catalog.~~) 'audio/%' THEN 'audio'
        WHEN content_type IS NULL AND mimetype OPERATOR(pg_catalog.~~) 'image/%' THEN 'image'
    END
$$;
COMMENT ON FUNCTION ventros.enrichment_media_kind(text, text) IS
    'The enrichment route of a message''s content type: audio (audio, voice), image, document; NULL when none';

-- The month's spending of the acting tenant, in USD.
CREATE FUNCTION ventros.enrichment_spending(month date DEFAULT NULL) RETURNS numeric
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(sum(e.cost), 0) FROM ventros.message_enrichments e
     WHERE e.tenant_id = ventros.require_tenant() AND e.cost IS NOT NULL
       AND e.processed_at >= date_trunc('month', coalesce(month::timestamptz, now()))
       AND e.processed_at < date_trunc('month', coalesce(month::timestamptz, now())) + interval '1 month'
$$;
COMMENT ON FUNCTION ventros.enrichment_spending(date) IS 'What the acting tenant''s enrichments cost in a month (default: this one), USD';

CREATE VIEW ventros.enrichment_status WITH (security_invoker = true) AS
    SELECT s.tenant_id, s.enabled, s.auto, s.monthly_cap, sp.spent AS spent_this_month,
           s.monthly_cap IS NOT NULL AND sp.spent >= s.monthly_cap AS cap_reached,
           (SELECT coalesce(jsonb_object_agg(p.provider, jsonb_build_object(
                   'enabled', coalesce(ps.enabled, false), 'has_key', ps.credential_id IS NOT NULL,
                   'base_url', coalesce(ps.base_url, p.base_url), 'model', coalesce(ps.model, p.model))), '{}')
              FROM ventros.enrichment_providers p
              LEFT JOIN ventros.enrichment_provider_settings ps ON ps.tenant_id = s.tenant_id AND ps.provider = p.provider) AS providers
      FROM ventros.enrichment_settings s,
           LATERAL (SELECT coalesce(sum(e.cost), 0) AS spent FROM ventros.message_enrichments e
                     WHERE e.tenant_id = s.tenant_id AND e.cost IS NOT NULL
                       AND e.processed_at >= date_trunc('month', now())) sp;
COMMENT ON VIEW ventros.enrichment_status IS
    'The acting tenant''s enrichment: on or off, cap and this month''s spending, per provider whether it is enabled and has a key (never the key)';
GRANT SELECT ON ventros.enrichment_status TO ventros_viewer;

-- ---- the chain -----------------------------------------------------------------------

-- What a provider's request builder gets: the tenant's settings over the
-- provider's defaults.
CREATE FUNCTION ventros.enrichment_config(p ventros.enrichment_providers, ps ventros.enrichment_provider_settings,
                                          s ventros.enrichment_settings)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(ps.options, '{}') || jsonb_strip_nulls(jsonb_build_object(
        'provider', p.provider, 'base_url', rtrim(coalesce(ps.base_url, p.base_url), '/'),
        'model', coalesce(ps.model, p.model), 'language', s.language))
$$;
COMMENT ON FUNCTION ventros.enrichment_config(ventros.enrichment_providers, ventros.enrichment_provider_settings, ventros.enrichment_settings) IS
    'The configuration a provider''s request builder gets: options, base_url, model, language';

-- The cost of an attempt from its usage and the provider's prices.
CREATE FUNCTION ventros.enrichment_cost(prices jsonb, usage jsonb) RETURNS numeric
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    total numeric := coalesce((prices->>'per_request')::numeric, 0);
    k text;
BEGIN
    FOREACH k IN ARRAY ARRAY['seconds:per_second', 'input_tokens:per_input_token', 'output_tokens:per_output_token',
                             'pages:per_page'] LOOP
        total := total + coalesce((usage->>split_part(k, ':', 1))::numeric * (prices->>split_part(k, ':', 2))::numeric, 0);
    END LOOP;
    RETURN round(total, 8);
END
$$;
COMMENT ON FUNCTION ventros.enrichment_cost(jsonb, jsonb) IS 'USD: usage (seconds, input_tokens, output_tokens, pages) times prices';

-- Ends an enrichment that cannot go on: failed with a code, why, and when to
-- try again; the message says so (message.enrichment_failed).
CREATE FUNCTION ventros.enrichment_fail(e ventros.message_enrichments, code text, why text, retry_at timestamptz)
RETURNS ventros.message_enrichments
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.message_enrichments;
BEGIN
    -- (failed is reached through processing, the aggregate's state machine)
    IF e.status = 'pending' THEN
        UPDATE ventros.message_enrichments x SET status = 'processing', version = x.version
         WHERE x.tenant_id = e.tenant_id AND x.id = e.id;
    END IF;
    UPDATE ventros.message_enrichments x
       SET status = 'failed', error_code = code, error = left(why, 2000), retry_at = enrichment_fail.retry_at,
           request_id = NULL, processed_at = now(), version = x.version,
           processing_time_ms = (extract(epoch FROM now() - x.updated_at) * 1000)::integer
     WHERE x.tenant_id = e.tenant_id AND x.id = e.id
    RETURNING * INTO result;
    IF result.message_id IS NOT NULL THEN     -- (a profile picture: message_enrichment.failed says it)
        PERFORM ventros.emit('message.enrichment_failed', 'message', result.message_id,
            jsonb_build_object('enrichment_id', result.id, 'kind', result.kind, 'error_code', code, 'error', result.error,
                               'retry_at', result.retry_at, 'attempts', result.attempts));
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.enrichment_fail(ventros.message_enrichments, text, text, timestamptz) IS
    'Fails an enrichment with an error code, a message and a retry time; emits message.enrichment_failed';

-- One entry of an enrichment's trail: the current attempt's outcome.
CREATE FUNCTION ventros.enrichment_attempt(e ventros.message_enrichments, outcome text, detail text) RETURNS jsonb
LANGUAGE sql STABLE
-- (no SET clause: small enough to be inlined; every name is qualified)
AS $$
    SELECT pg_catalog.jsonb_build_array(pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
        'provider', e.provider, 'request_id', e.request_id, 'outcome', outcome, 'error', pg_catalog.left(detail, 500),
        'at', pg_catalog.now())))
$$;
COMMENT ON FUNCTION ventros.enrichment_attempt(ventros.message_enrichments, text, text) IS
    'An entry of an enrichment''s trail (a one-element array): provider, request, outcome, error, time';

-- Records the outcome of the current attempt in the enrichment's trail.
CREATE FUNCTION ventros.enrichment_note(e ventros.message_enrichments, outcome text, detail text)
RETURNS ventros.message_enrichments
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE ventros.message_enrichments x
       SET attempts = x.attempts || ventros.enrichment_attempt(e, outcome, detail), version = x.version
     WHERE x.tenant_id = e.tenant_id AND x.id = e.id
    RETURNING * INTO e;
    RETURN e;
END
$$;
COMMENT ON FUNCTION ventros.enrichment_note(ventros.message_enrichments, text, text) IS
    'Appends an attempt (provider, request, outcome, error) to an enrichment''s trail';

-- Whether the tenant's monthly cap is reached; the first time in a month it
-- says so with message_enrichment.spending_cap_reached.
CREATE FUNCTION ventros.enrichment_cap_reached(e ventros.message_enrichments, s ventros.enrichment_settings)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    spent numeric;
BEGIN
    IF s.monthly_cap IS NULL THEN
        RETURN false;
    END IF;
    spent := ventros.enrichment_spending();
    IF spent < s.monthly_cap THEN
        RETURN false;
    END IF;
    UPDATE ventros.enrichment_settings x SET cap_reached_month = date_trunc('month', now())::date
     WHERE x.tenant_id = s.tenant_id AND x.cap_reached_month IS DISTINCT FROM date_trunc('month', now())::date;
    IF FOUND THEN
        PERFORM ventros.emit('message_enrichment.spending_cap_reached', 'message_enrichment', e.id,
            jsonb_build_object('monthly_cap', s.monthly_cap, 'spent', spent, 'month', date_trunc('month', now())::date));
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION ventros.enrichment_cap_reached(ventros.message_enrichments, ventros.enrichment_settings) IS
    'True when this month''s spending reached the tenant''s cap; emits message_enrichment.spending_cap_reached once a month';

-- Queues one provider request for an enrichment: the builder's
-- {method, url, headers, body, form (multipart parts), inline_base64 (the
-- marker in body replaced by the media's base64), media (bool)}.  The key is
-- not in it: the preparer adds it per attempt.
CREATE FUNCTION ventros.enrichment_enqueue(e ventros.message_enrichments, p ventros.enrichment_providers, cfg jsonb, req jsonb,
                                           not_before timestamptz DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id uuid;
    form jsonb;
BEGIN
    IF req IS NULL OR coalesce(req->>'url', '') !~* '^https?://[^/?#]' THEN
        RAISE EXCEPTION 'the request builder of % gave no URL', p.provider USING ERRCODE = '22023';
    END IF;
    form := CASE WHEN req ? 'form' THEN jsonb_build_object('multipart', req->'form')
                 WHEN req ? 'inline_base64' THEN jsonb_build_object('inline_base64', req->>'inline_base64') END;
    INSERT INTO ventros.http_requests AS r (tenant_id, method, url, headers, body, purpose, correlation_id, max_attempts,
                                            timeout_ms, next_attempt_at, body_form, media_id)
    VALUES (e.tenant_id, coalesce(req->>'method', 'POST'), req->>'url', coalesce(req->'headers', '{}'),
            CASE WHEN req ? 'body' THEN convert_to(CASE jsonb_typeof(req->'body') WHEN 'string' THEN req->>'body'
                                                        ELSE (req->'body')::text END, 'UTF8') END,
            'enrichment.' || p.provider, e.id, p.max_attempts,
            coalesce((cfg->>'timeout_ms')::integer, p.timeout_ms), coalesce(not_before, now()), form,
            CASE WHEN form IS NOT NULL THEN coalesce(e.message_id, e.id) END)
    RETURNING r.id INTO new_id;
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION ventros.enrichment_enqueue(ventros.message_enrichments, ventros.enrichment_providers, jsonb, jsonb, timestamptz) IS
    'Queues a provider request built for an enrichment (purpose enrichment.<provider>, the media by reference)';

-- enrichment_advance: the next provider of the route after the current one
-- gets the enrichment; when none is left it fails.  Runs as the tenant.
CREATE FUNCTION ventros.enrichment_advance(enrichment_id uuid)
RETURNS ventros.message_enrichments
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    e ventros.message_enrichments;
    s ventros.enrichment_settings;
    mm ventros.message_media;
    p ventros.enrichment_providers;
    ps ventros.enrichment_provider_settings;
    pos integer;
    cfg jsonb;
    req jsonb;
    rid uuid;
    tried boolean;
    too_large boolean := false;
    retry_after timestamptz;
BEGIN
    SELECT * INTO e FROM ventros.message_enrichments x WHERE x.tenant_id = tenant AND x.id = enrichment_id FOR UPDATE;
    SELECT * INTO s FROM ventros.enrichment_settings x WHERE x.tenant_id = tenant;
    IF NOT coalesce(s.enabled, false) THEN
        RETURN ventros.enrichment_fail(e, 'disabled', 'enrichment is disabled for this tenant', NULL);
    END IF;
    -- (not the bytes: only the dispatcher reads them)
    IF e.message_id IS NOT NULL THEN
        SELECT x.status, x.size, x.error INTO mm.status, mm.size, mm.error
          FROM ventros.message_media x WHERE x.tenant_id = tenant AND x.message_id = e.message_id;
    ELSE
        SELECT x.status, x.size, x.error INTO mm.status, mm.size, mm.error
          FROM ventros.enrichment_media x WHERE x.tenant_id = tenant AND x.enrichment_id = e.id;
    END IF;
    IF mm.status IS DISTINCT FROM 'downloaded' THEN
        RETURN ventros.enrichment_fail(e, 'no_media', coalesce('the media download failed: ' || mm.error,
                                                               'the media is not downloaded'), NULL);
    END IF;
    tried := EXISTS (SELECT 1 FROM jsonb_array_elements(e.attempts) a WHERE a->>'outcome' = 'failed');
    pos := coalesce(e.route_position, 0);
    LOOP
        pos := pos + 1;
        EXIT WHEN pos > coalesce(cardinality(e.route), 0);
        SELECT * INTO p FROM ventros.enrichment_providers x WHERE x.provider = e.route[pos];
        SELECT * INTO ps FROM ventros.enrichment_provider_settings x WHERE x.tenant_id = tenant AND x.provider = p.provider;
        e.provider := p.provider;
        e.request_id := NULL;
        IF p.provider IS NULL OR NOT coalesce(ps.enabled, false) OR ps.credential_id IS NULL THEN
            e := ventros.enrichment_note(e, 'skipped', 'not configured for this tenant (no key, or disabled)');
            CONTINUE;
        END IF;
        IF mm.size > p.max_media_size THEN
            too_large := true;
            e := ventros.enrichment_note(e, 'skipped', format('the media has %s bytes; %s takes at most %s', mm.size,
                                                              p.provider, p.max_media_size));
            CONTINUE;
        END IF;
        IF ventros.enrichment_cap_reached(e, s) THEN
            RETURN ventros.enrichment_fail(e, 'spending_cap',
                format('the monthly enrichment spending cap (%s USD) is reached', s.monthly_cap),
                date_trunc('month', now()) + interval '1 month');
        END IF;
        cfg := ventros.enrichment_config(p, ps, s);
        EXECUTE format('SELECT %s($1, $2)', p.build_request::regproc) INTO req USING e, cfg;
        rid := ventros.enrichment_enqueue(e, p, cfg, req);
        UPDATE ventros.message_enrichments x
           SET status = 'processing', provider = p.provider, route_position = pos, request_id = rid,
               model = cfg->>'model', job_id = NULL, error = NULL, error_code = NULL, retry_at = NULL,
               version = x.version
         WHERE x.tenant_id = tenant AND x.id = e.id
        RETURNING * INTO e;
        RETURN e;
    END LOOP;
    IF tried THEN
        SELECT max((a->>'retry_after')::timestamptz) INTO retry_after FROM jsonb_array_elements(e.attempts) a;
        RETURN ventros.enrichment_fail(e, 'providers_failed',
            format('every provider of the route failed (%s)',
                   (SELECT string_agg(format('%s: %s', a->>'provider', a->>'error'), '; ')
                      FROM jsonb_array_elements(e.attempts) a WHERE a->>'outcome' = 'failed')),
            greatest(now() + s.retry_delay, retry_after));
    ELSIF too_large THEN
        RETURN ventros.enrichment_fail(e, 'too_large',
            format('the media (%s bytes) is larger than every provider of the route takes', mm.size), NULL);
    END IF;
    RETURN ventros.enrichment_fail(e, 'no_provider',
        format('no provider of the route (%s) is configured for this tenant', array_to_string(e.route, ', ')), NULL);
END
$$;
COMMENT ON FUNCTION ventros.enrichment_advance(uuid) IS
    'Gives an enrichment to the next provider of its route that is enabled, has a key and takes the media''s size, unless the spending cap is reached; fails it when none is left';

-- A profile picture's download (purpose enrichment.picture): the contact's
-- picture URL, its bytes kept in ventros.enrichment_media.
CREATE FUNCTION ventros.enrichment_download_picture(e ventros.message_enrichments) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO ventros.enrichment_media AS em (tenant_id, enrichment_id) VALUES (e.tenant_id, e.id)
    ON CONFLICT ON CONSTRAINT enrichment_media_pkey DO UPDATE
       SET status = 'requested', error = NULL, data = NULL, size = NULL, sha256 = NULL, requested_at = now();
    RETURN ventros.enqueue_http_request(e.media_url, 'GET', '{}', NULL, 'enrichment.picture', e.id,
                                        max_response_size => ventros.setting_number('ventros.media_max_size')::integer);
END
$$;
COMMENT ON FUNCTION ventros.enrichment_download_picture(ventros.message_enrichments) IS
    'Queues the download of a profile picture enrichment''s image (purpose enrichment.picture) into ventros.enrichment_media';

CREATE FUNCTION ventros.enrichment_picture_downloaded(r ventros.http_requests) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    bytes bytea := coalesce(r.response_body, '');
    why text;
    e ventros.message_enrichments;
BEGIN
    why := CASE WHEN r.status <> 'succeeded' THEN 'the picture download failed: ' || ventros.enrichment_error_text(r)
                WHEN r.response_truncated THEN 'the picture is larger than ventros.media_max_size' END;
    UPDATE ventros.enrichment_media x
       SET status = CASE WHEN why IS NULL THEN 'downloaded' ELSE 'failed' END, error = why,
           data = CASE WHEN why IS NULL THEN bytes END, size = CASE WHEN why IS NULL THEN length(bytes) END,
           sha256 = CASE WHEN why IS NULL THEN encode(sha256(bytes), 'hex') END,
           content_type = nullif(split_part(r.response_headers->>'content-type', ';', 1), ''),
           downloaded_at = CASE WHEN why IS NULL THEN now() END
     WHERE x.tenant_id = r.tenant_id AND x.enrichment_id = r.correlation_id;
    SELECT * INTO e FROM ventros.message_enrichments x
     WHERE x.tenant_id = r.tenant_id AND x.id = r.correlation_id AND x.status = 'pending' FOR UPDATE;
    IF FOUND THEN
        PERFORM ventros.enrichment_advance(e.id);
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.enrichment_picture_downloaded(ventros.http_requests) IS
    'Completion handler of enrichment.picture: keeps the picture (or why it failed) and moves the enrichment to its first provider';
SELECT ventros.register_http_request_handler('enrichment.picture', 'ventros.enrichment_picture_downloaded(ventros.http_requests)');

-- Starts (or restarts) the chain of an enrichment from the route's first provider.
CREATE FUNCTION ventros.enrichment_start(e ventros.message_enrichments)
RETURNS ventros.message_enrichments
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    download text;
BEGIN
    -- a new enrichment (pending, nothing tried) is at the start already
    IF NOT (e.status = 'pending' AND e.route_position = 0 AND e.attempts = '[]') THEN
        UPDATE ventros.message_enrichments x
           SET status = 'pending', route = ventros.enrichment_route(ventros.enrichment_media_kind(x.content_type, NULL)),
               route_position = 0, request_id = NULL, attempts = '[]', error = NULL, error_code = NULL, retry_at = NULL,
               version = x.version
         WHERE x.tenant_id = e.tenant_id AND x.id = e.id
        RETURNING * INTO e;
    END IF;
    IF e.message_id IS NULL THEN
        SELECT x.status INTO download FROM ventros.enrichment_media x WHERE x.tenant_id = e.tenant_id AND x.enrichment_id = e.id;
        IF download IS DISTINCT FROM 'downloaded' THEN
            PERFORM ventros.enrichment_download_picture(e);
            RETURN e;       -- the download's handler moves it on
        END IF;
        RETURN ventros.enrichment_advance(e.id);
    END IF;
    SELECT x.status INTO download FROM ventros.message_media x WHERE x.tenant_id = e.tenant_id AND x.message_id = e.message_id;
    IF NOT FOUND THEN
        PERFORM ventros.request_media_download(e.message_id);
        RETURN e;       -- the download's end moves it on (trigger below)
    ELSIF download = 'requested' THEN
        RETURN e;
    END IF;
    RETURN ventros.enrichment_advance(e.id);
END
$$;
COMMENT ON FUNCTION ventros.enrichment_start(ventros.message_enrichments) IS
    'Puts an enrichment back at the start of its route; it goes to the first provider once its media is downloaded';

-- The enrichment of a message: found, or created pending with its route.
CREATE FUNCTION ventros.enrichment_of(m ventros.messages) RETURNS ventros.message_enrichments
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e ventros.message_enrichments;
    media_kind text := ventros.enrichment_media_kind(m.content_type, m.media_mimetype);
    route text[];
BEGIN
    SELECT * INTO e FROM ventros.message_enrichments x
     WHERE x.tenant_id = m.tenant_id AND x.message_id = m.id AND x.kind IS NOT NULL AND x.deleted_at IS NULL
     FOR UPDATE;
    IF FOUND THEN
        RETURN e;
    END IF;
    route := ventros.enrichment_route(media_kind);
    INSERT INTO ventros.message_enrichments (tenant_id, message_id, contact_id, content_type, provider, media_url, kind, route,
                                             route_position)
    VALUES (m.tenant_id, m.id, m.contact_id, m.content_type, coalesce(route[1], 'openai'), m.media_url,
            CASE media_kind WHEN 'audio' THEN 'transcription' WHEN 'image' THEN 'vision' ELSE 'document' END, route, 0)
    RETURNING * INTO e;
    RETURN e;
END
$$;
COMMENT ON FUNCTION ventros.enrichment_of(ventros.messages) IS 'A media message''s enrichment, created pending with its route when it has none';

CREATE FUNCTION ventros.enrich_message(message_id uuid) RETURNS ventros.message_enrichments
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    m ventros.messages;
    e ventros.message_enrichments;
BEGIN
    -- SECURITY DEFINER: queues provider requests (tenant administrators only
    -- read the queue) for the acting tenant's message
    SELECT * INTO m FROM ventros.messages x WHERE x.tenant_id = tenant AND x.id = message_id AND x.deleted_at IS NULL;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('message', message_id);
    END IF;
    IF ventros.enrichment_media_kind(m.content_type, m.media_mimetype) IS NULL THEN
        RAISE EXCEPTION 'message % has no media to enrich', message_id USING ERRCODE = '22023',
            DETAIL = format('Its content type is %s; audio, voice, image and document messages are enriched.', m.content_type);
    END IF;
    IF NOT coalesce((SELECT s.enabled FROM ventros.enrichment_settings s WHERE s.tenant_id = tenant), false) THEN
        RAISE EXCEPTION 'enrichment is disabled for this tenant' USING ERRCODE = '55000',
            HINT = 'A tenant administrator turns it on with ventros.configure_enrichment(enabled => true).';
    END IF;
    e := ventros.enrichment_of(m);
    IF e.status IN ('processing') THEN
        RETURN e;
    END IF;
    RETURN ventros.enrichment_start(e);
END
$$;
COMMENT ON FUNCTION ventros.enrich_message(uuid) IS
    'Enriches a media message (audio: transcript; image: text and description; document: markdown) through its route''s providers, again when it failed or completed; 55000 when enrichment is off; emits message.enriched or message.enrichment_failed when done';

CREATE FUNCTION ventros.enrich_profile_picture(contact_id uuid) RETURNS ventros.message_enrichments
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    c ventros.contacts;
    e ventros.message_enrichments;
    route text[];
BEGIN
    -- SECURITY DEFINER: queues provider requests for the acting tenant's contact
    SELECT * INTO c FROM ventros.contacts x WHERE x.tenant_id = tenant AND x.id = contact_id AND x.deleted_at IS NULL;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('contact', contact_id);
    END IF;
    IF c.profile_picture_url !~* '^https?://' THEN
        RAISE EXCEPTION 'contact % has no profile picture URL', contact_id USING ERRCODE = '22023';
    END IF;
    IF NOT coalesce((SELECT s.enabled FROM ventros.enrichment_settings s WHERE s.tenant_id = tenant), false) THEN
        RAISE EXCEPTION 'enrichment is disabled for this tenant' USING ERRCODE = '55000',
            HINT = 'A tenant administrator turns it on with ventros.configure_enrichment(enabled => true).';
    END IF;
    SELECT * INTO e FROM ventros.message_enrichments x
     WHERE x.tenant_id = tenant AND x.contact_id = c.id AND x.context = 'profile_picture' AND x.kind IS NOT NULL
       AND x.deleted_at IS NULL
     FOR UPDATE;
    IF FOUND AND e.status = 'processing' THEN
        RETURN e;
    ELSIF FOUND THEN
        UPDATE ventros.message_enrichments x SET media_url = c.profile_picture_url, version = x.version
         WHERE x.tenant_id = tenant AND x.id = e.id AND x.media_url IS DISTINCT FROM c.profile_picture_url;
        SELECT * INTO e FROM ventros.message_enrichments x WHERE x.tenant_id = tenant AND x.id = e.id;
        DELETE FROM ventros.enrichment_media em WHERE em.tenant_id = tenant AND em.enrichment_id = e.id;
    ELSE
        route := ventros.enrichment_route('profile_picture');
        INSERT INTO ventros.message_enrichments (tenant_id, contact_id, content_type, provider, media_url, context, kind, route,
                                                 route_position)
        VALUES (tenant, c.id, 'image', coalesce(route[1], 'gemini'), c.profile_picture_url, 'profile_picture',
                'profile_score', route, 0)
        RETURNING * INTO e;
    END IF;
    RETURN ventros.enrichment_start(e);
END
$$;
COMMENT ON FUNCTION ventros.enrich_profile_picture(uuid) IS
    'Scores a contact''s profile picture 0-10 (metadata.score) through the profile_picture route: downloads it, then asks the vision provider; 55000 when enrichment is off; emits contact.profile_picture_scored';

-- A media download ended: the enrichment waiting for it goes on, or a new
-- one starts when the tenant enriches automatically.
CREATE FUNCTION ventros.enrichment_on_media() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m ventros.messages;
    e ventros.message_enrichments;
    previous text := current_setting('ventros.tenant', true);
BEGIN
    IF NEW.status = OLD.status OR NEW.status = 'requested' THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('ventros.tenant', NEW.tenant_id, true);
    SELECT * INTO e FROM ventros.message_enrichments x
     WHERE x.tenant_id = NEW.tenant_id AND x.message_id = NEW.message_id AND x.kind IS NOT NULL
       AND x.status = 'pending' AND x.deleted_at IS NULL;
    IF NOT FOUND AND NEW.status = 'downloaded'
       AND EXISTS (SELECT 1 FROM ventros.enrichment_settings s WHERE s.tenant_id = NEW.tenant_id AND s.enabled AND s.auto) THEN
        SELECT * INTO m FROM ventros.messages x WHERE x.tenant_id = NEW.tenant_id AND x.id = NEW.message_id;
        IF ventros.enrichment_media_kind(m.content_type, m.media_mimetype) IS NOT NULL AND NOT m.from_me
           AND NOT EXISTS (SELECT 1 FROM ventros.message_enrichments x
                            WHERE x.tenant_id = m.tenant_id AND x.message_id = m.id AND x.kind IS NOT NULL AND x.deleted_at IS NULL) THEN
            e := ventros.enrichment_of(m);
        END IF;
    END IF;
    IF e.id IS NOT NULL THEN
        PERFORM ventros.enrichment_advance(e.id);
    END IF;
    PERFORM set_config('ventros.tenant', coalesce(previous, ''), true);
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.enrichment_on_media() IS
    'Trigger: when a message''s media download ends, the enrichment waiting for it goes to its first provider (or fails, no_media); with automatic enrichment on, a new inbound media message gets one';
CREATE TRIGGER ventros_enrichment_on_media AFTER UPDATE OF status ON ventros.message_media
    FOR EACH ROW EXECUTE FUNCTION ventros.enrichment_on_media();

-- ---- answers ----------------------------------------------------------------------

-- The enrichment a finished request served, locked, while that request is
-- still its current attempt (an answer to an older attempt is ignored).
CREATE FUNCTION ventros.enrichment_for_request(r ventros.http_requests) RETURNS ventros.message_enrichments
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e ventros.message_enrichments;
BEGIN
    SELECT * INTO e FROM ventros.message_enrichments x
     WHERE x.tenant_id = r.tenant_id AND x.id = r.correlation_id AND x.request_id = r.id AND x.status = 'processing'
     FOR UPDATE;
    RETURN e;
END
$$;
COMMENT ON FUNCTION ventros.enrichment_for_request(ventros.http_requests) IS
    'The processing enrichment whose current attempt is this request (NULL for an older attempt)';

-- Why a provider request failed: the provider's error message when it gave
-- one (OpenAI, Groq, Gemini and LlamaParse shapes), else the dispatcher's.
CREATE FUNCTION ventros.enrichment_error_text(r ventros.http_requests) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT left(CASE WHEN r.response_status IS NULL THEN coalesce(r.last_error, 'request ' || r.status)
                     ELSE format('HTTP %s%s', r.response_status,
                                 ': ' || coalesce(a->'error'->>'message', a->>'detail', a->>'error', a->>'message'))
                END, 1000)
      FROM (SELECT ventros.json_body(r.response_body) AS a) x
$$;
COMMENT ON FUNCTION ventros.enrichment_error_text(ventros.http_requests) IS
    'A failed provider request as text: HTTP status and the provider''s message, or the dispatcher''s error';

-- A failed attempt: noted (with a 429's Retry-After), then the next provider.
CREATE FUNCTION ventros.enrichment_attempt_failed(r ventros.http_requests, why text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e ventros.message_enrichments := ventros.enrichment_for_request(r);
    after_s text := r.response_headers->>'retry-after';
BEGIN
    IF e.id IS NULL THEN
        RETURN;
    END IF;
    e := ventros.enrichment_note(e, 'failed', coalesce(why, ventros.enrichment_error_text(r)));
    IF after_s ~ '^[0-9]{1,7}$' THEN
        UPDATE ventros.message_enrichments x
           SET attempts = jsonb_set(x.attempts, ARRAY[(jsonb_array_length(x.attempts) - 1)::text, 'retry_after'],
                                    to_jsonb(now() + make_interval(secs => after_s::integer))),
               version = x.version
         WHERE x.tenant_id = e.tenant_id AND x.id = e.id;
    END IF;
    PERFORM ventros.enrichment_advance(e.id);
END
$$;
COMMENT ON FUNCTION ventros.enrichment_attempt_failed(ventros.http_requests, text) IS
    'Notes a failed provider attempt (why, Retry-After) and moves the enrichment to the next provider of its route';

-- A result: {text, language, confidence, usage, model, metadata}.
CREATE FUNCTION ventros.enrichment_attempt_succeeded(r ventros.http_requests, result jsonb) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e ventros.message_enrichments;
BEGIN
    -- one statement (the dispatcher runs this for every answer): only while
    -- this request is the enrichment's current attempt
    UPDATE ventros.message_enrichments x
       SET status = 'completed', extracted_text = result->>'text', language = left(result->>'language', 35),
           attempts = x.attempts || jsonb_build_array(jsonb_build_object('provider', x.provider, 'request_id', r.id,
                                                                         'outcome', 'succeeded', 'at', now())),
           confidence = (result->>'confidence')::numeric, usage = result->'usage',
           cost = ventros.enrichment_cost((SELECT p.prices FROM ventros.enrichment_providers p WHERE p.provider = x.provider),
                                          coalesce(result->'usage', '{}')),
           model = coalesce(result->>'model', x.model),
           metadata = coalesce(x.metadata, '{}') || coalesce(result->'metadata', '{}'),
           request_id = NULL, processed_at = now(), version = x.version,
           processing_time_ms = (extract(epoch FROM now() - x.created_at) * 1000)::integer
     WHERE x.tenant_id = r.tenant_id AND x.id = r.correlation_id AND x.request_id = r.id AND x.status = 'processing'
    RETURNING * INTO e;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF e.message_id IS NULL THEN
        PERFORM ventros.emit('contact.profile_picture_scored', 'contact', e.contact_id,
            jsonb_strip_nulls(jsonb_build_object('enrichment_id', e.id, 'score', e.metadata->'score', 'provider', e.provider,
                                                 'model', e.model, 'text', left(e.extracted_text, 500), 'cost', e.cost)));
        RETURN;
    END IF;
    PERFORM ventros.emit('message.enriched', 'message', e.message_id,
        jsonb_strip_nulls(jsonb_build_object('enrichment_id', e.id, 'kind', e.kind, 'provider', e.provider, 'model', e.model,
                           'language', e.language, 'confidence', e.confidence, 'usage', e.usage, 'cost', e.cost,
                           'text', left(e.extracted_text, 2000), 'text_length', length(e.extracted_text))));
END
$$;
COMMENT ON FUNCTION ventros.enrichment_attempt_succeeded(ventros.http_requests, jsonb) IS
    'Completes an enrichment with a provider''s result (text, language, confidence, usage, model) and its cost; emits message.enriched';

-- The key of a provider attempt, added when the dispatcher claims it (the
-- preparer of every enrichment.<provider> purpose).
CREATE FUNCTION ventros.enrichment_request_headers(r ventros.http_requests) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p ventros.enrichment_providers;
    cred uuid;
    secret text;
    slot text;
BEGIN
    SELECT * INTO p FROM ventros.enrichment_providers x WHERE x.provider = substr(r.purpose, length('enrichment.') + 1);
    SELECT ps.credential_id INTO cred FROM ventros.enrichment_provider_settings ps
     WHERE ps.tenant_id = r.tenant_id AND ps.provider = p.provider;
    IF cred IS NULL THEN
        RETURN r.headers;
    END IF;
    -- A claim prepares many attempts in one transaction: the key is
    -- decrypted (and its use recorded, credential.used) once per credential
    -- and transaction, and kept only until that transaction ends (is_local),
    -- in the dispatcher's own backend.
    slot := 'ventros_enrichment_keys.k' || replace(cred::text, '-', '');   -- (ventros.* is reserved)
    secret := nullif(current_setting(slot, true), '');
    IF secret IS NULL THEN
        secret := (ventros.reveal_credential(cred)).value;
        PERFORM set_config(slot, secret, true);
    END IF;
    RETURN r.headers || jsonb_build_object(p.auth_header, concat_ws(' ', p.auth_scheme, secret));
END
$$;
COMMENT ON FUNCTION ventros.enrichment_request_headers(ventros.http_requests) IS
    'Preparer of enrichment requests: the stored headers plus the provider''s key from the tenant''s credential (never stored on the request)';

-- ---- retries --------------------------------------------------------------------------

-- Failed enrichments whose retry time passed start again (per tenant, from
-- the scheduled job).
CREATE FUNCTION ventros.retry_enrichments(now timestamptz DEFAULT now(), batch_size integer DEFAULT 100)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    e ventros.message_enrichments;
    n integer := 0;
BEGIN
    -- SECURITY DEFINER: queues provider requests for the acting tenant only
    IF NOT coalesce((SELECT s.enabled FROM ventros.enrichment_settings s WHERE s.tenant_id = tenant), false) THEN
        RETURN 0;
    END IF;
    FOR e IN SELECT * FROM ventros.message_enrichments x
              WHERE x.tenant_id = tenant AND x.status = 'failed' AND x.retry_at <= retry_enrichments.now
                AND x.kind IS NOT NULL AND x.deleted_at IS NULL
              ORDER BY x.retry_at LIMIT batch_size FOR UPDATE SKIP LOCKED
    LOOP
        PERFORM ventros.enrichment_start(e);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.retry_enrichments(timestamptz, integer) IS
    'Starts again the acting tenant''s failed enrichments whose retry time passed (at most batch_size); returns how many';

INSERT INTO ventros.scheduled_jobs (name, schedule, command, purpose) VALUES
    ('ventros-retry-enrichments', '* * * * *',
     'SELECT count(*) FROM ventros.run_per_tenant(''ventros-retry-enrichments'', ''SELECT pg_catalog.to_jsonb(ventros.retry_enrichments($1))'')',
     'failed media enrichments whose retry time passed');

GRANT EXECUTE ON FUNCTION ventros.enrichment_route(text), ventros.enrichment_spending(date),
    ventros.enrichment_media_kind(text, text) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.enrich_message(uuid), ventros.enrich_profile_picture(uuid) TO ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.configure_enrichment(boolean, numeric, text, boolean, interval, boolean),
    ventros.configure_enrichment_provider(text, uuid, boolean, text, text, jsonb),
    ventros.set_enrichment_route(text, text[]), ventros.retry_enrichments(timestamptz, integer) TO ventros_admin;

-- The enrichment providers (design channels.md 5.2-5.4, docs/ai.md): for
-- each, its declaration, the function building its request and its answer
-- handler.  The chain, keys, caps and events are sql/98_enrichment.sql's.
--
--   groq, openai  Whisper transcriptions (the OpenAI API; a self-hosted
--                 OpenAI-compatible server is the openai provider with its
--                 own base_url and model): multipart, the file part streamed
--                 from the downloaded media, response_format verbose_json;
--   gemini        generateContent with the image inline as base64;
--   llamaparse    upload (multipart) -> poll the job -> fetch the markdown.

-- The marker a JSON body carries where the dispatcher writes the media's
-- base64 (src/http_worker.c, body_form.inline_base64).
CREATE FUNCTION ventros.enrichment_media_marker() RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT '@@ventros-media-base64@@'::text $$;
COMMENT ON FUNCTION ventros.enrichment_media_marker() IS
    'The placeholder of a JSON request body that the dispatcher replaces with the base64 of the request''s media';

-- The downloaded media's content type (type/subtype, without parameters).
CREATE FUNCTION ventros.enrichment_media_type(e ventros.message_enrichments) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF e.message_id IS NULL THEN
        RETURN coalesce((SELECT nullif(btrim(split_part(em.content_type, ';', 1)), '') FROM ventros.enrichment_media em
                          WHERE em.tenant_id = e.tenant_id AND em.enrichment_id = e.id), 'image/jpeg');
    END IF;
    RETURN (SELECT coalesce(nullif(btrim(split_part(coalesce(mm.content_type, m.media_mimetype), ';', 1)), ''),
                            'application/octet-stream')
              FROM ventros.messages m
              LEFT JOIN ventros.message_media mm ON mm.tenant_id = m.tenant_id AND mm.message_id = m.id
             WHERE m.tenant_id = e.tenant_id AND m.id = e.message_id);
END
$$;
COMMENT ON FUNCTION ventros.enrichment_media_type(ventros.message_enrichments) IS
    'The content type of an enrichment''s media (the download''s, else the message''s), without parameters';

-- ---- Whisper (Groq, OpenAI) ------------------------------------------------------

CREATE FUNCTION ventros.whisper_request(e ventros.message_enrichments, cfg jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mt text := ventros.enrichment_media_type(e);
    ext text;
BEGIN
    -- the file name's extension tells Whisper the format
    ext := CASE WHEN mt IN ('audio/ogg', 'audio/opus', 'application/ogg') THEN 'ogg'
                WHEN mt IN ('audio/mpeg', 'audio/mp3') THEN 'mp3'
                WHEN mt IN ('audio/mp4', 'audio/m4a', 'audio/x-m4a', 'audio/aac') THEN 'm4a'
                WHEN mt IN ('audio/wav', 'audio/x-wav', 'audio/wave') THEN 'wav'
                WHEN mt = 'audio/webm' THEN 'webm'
                WHEN mt = 'audio/flac' THEN 'flac'
                WHEN mt = 'video/mp4' THEN 'mp4'
                ELSE 'ogg' END;
    RETURN jsonb_build_object(
        'method', 'POST',
        'url', (cfg->>'base_url') || '/v1/audio/transcriptions',
        'form', jsonb_build_array(
                    jsonb_build_object('name', 'file', 'media', true, 'filename', 'audio.' || ext, 'content_type', mt),
                    jsonb_build_object('name', 'model', 'value', cfg->>'model'),
                    jsonb_build_object('name', 'response_format', 'value', 'verbose_json'))
                || CASE WHEN cfg ? 'language' THEN jsonb_build_array(jsonb_build_object('name', 'language', 'value', cfg->>'language'))
                        ELSE '[]' END
                || CASE WHEN cfg ? 'prompt' THEN jsonb_build_array(jsonb_build_object('name', 'prompt', 'value', cfg->>'prompt'))
                        ELSE '[]' END);
END
$$;
COMMENT ON FUNCTION ventros.whisper_request(ventros.message_enrichments, jsonb) IS
    'Groq / OpenAI transcription request: POST <base_url>/v1/audio/transcriptions, multipart file (audio.<ext>), model, response_format verbose_json, language, prompt';

-- Whisper's verbose_json names the language ("portuguese"): ISO-639-1 for
-- the common ones, else as given.
CREATE FUNCTION ventros.whisper_language(name text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- (no SET clause: small enough to be inlined; every name is qualified)
AS $$
    SELECT CASE pg_catalog.lower(name) WHEN 'portuguese' THEN 'pt' WHEN 'english' THEN 'en' WHEN 'spanish' THEN 'es'
                            WHEN 'french' THEN 'fr' WHEN 'german' THEN 'de' WHEN 'italian' THEN 'it'
                            ELSE pg_catalog.lower(name) END
$$;
COMMENT ON FUNCTION ventros.whisper_language(text) IS 'Whisper''s language name as an ISO-639-1 code for common languages';

CREATE FUNCTION ventros.whisper_answer(r ventros.http_requests) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a jsonb := ventros.json_body(r.response_body);
BEGIN
    IF r.status <> 'succeeded' THEN
        PERFORM ventros.enrichment_attempt_failed(r, NULL);
    ELSIF jsonb_typeof(a) IS DISTINCT FROM 'object' OR jsonb_typeof(a->'text') IS DISTINCT FROM 'string' THEN
        PERFORM ventros.enrichment_attempt_failed(r, 'malformed answer: no "text" in ' ||
                                                     left(convert_from(coalesce(r.response_body, ''), 'SQL_ASCII'), 200));
    ELSE
        PERFORM ventros.enrichment_attempt_succeeded(r, jsonb_strip_nulls(jsonb_build_object(
            'text', btrim(a->>'text'),
            'language', ventros.whisper_language(a->>'language'),
            -- the mean token probability of the segments, where given
            'confidence', (SELECT round(exp(avg((s->>'avg_logprob')::float8))::numeric, 4)
                             FROM jsonb_array_elements(CASE WHEN jsonb_typeof(a->'segments') = 'array' THEN a->'segments' END) s
                            WHERE jsonb_typeof(s->'avg_logprob') = 'number'),
            'usage', jsonb_strip_nulls(jsonb_build_object('seconds', CASE WHEN jsonb_typeof(a->'duration') = 'number'
                                                                          THEN a->'duration' END)))));
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.whisper_answer(ventros.http_requests) IS
    'Answer handler of Groq and OpenAI transcriptions: text, language, confidence (mean segment probability), seconds; else the next provider';

-- ---- Gemini vision ---------------------------------------------------------------

CREATE FUNCTION ventros.gemini_request(e ventros.message_enrichments, cfg jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    prompt text := coalesce(cfg->>'prompt', CASE WHEN e.context = 'profile_picture'
        THEN 'Rate this profile picture from 0 to 10 for how clearly it shows a real person''s face. Answer with the number on the first line, then one sentence.'
        ELSE 'Extract all readable text from this image, then describe it in one paragraph.' END)
        || CASE WHEN cfg ? 'language' THEN format(' Answer in the language with ISO-639-1 code "%s".', cfg->>'language') ELSE '' END;
BEGIN
    RETURN jsonb_build_object(
        'method', 'POST',
        'url', format('%s/v1beta/models/%s:generateContent', cfg->>'base_url', cfg->>'model'),
        'headers', jsonb_build_object('Content-Type', 'application/json'),
        'inline_base64', ventros.enrichment_media_marker(),
        'body', jsonb_build_object(
            'contents', jsonb_build_array(jsonb_build_object('role', 'user', 'parts', jsonb_build_array(
                jsonb_build_object('text', prompt),
                jsonb_build_object('inline_data', jsonb_build_object('mime_type', ventros.enrichment_media_type(e),
                                                                     'data', ventros.enrichment_media_marker()))))),
            'generationConfig', jsonb_build_object('temperature', 0.1, 'topK', 40, 'topP', 0.95, 'maxOutputTokens', 1024)));
END
$$;
COMMENT ON FUNCTION ventros.gemini_request(ventros.message_enrichments, jsonb) IS
    'Gemini request: POST <base_url>/v1beta/models/<model>:generateContent, the image inline as base64 (written by the dispatcher), a prompt for text + description (or a profile picture score)';

CREATE FUNCTION ventros.gemini_answer(r ventros.http_requests) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a jsonb := ventros.json_body(r.response_body);
    txt text;
BEGIN
    IF r.status <> 'succeeded' THEN
        PERFORM ventros.enrichment_attempt_failed(r, NULL);
        RETURN;
    END IF;
    IF a->'promptFeedback' ? 'blockReason' THEN
        PERFORM ventros.enrichment_attempt_failed(r, 'blocked: ' || (a->'promptFeedback'->>'blockReason'));
        RETURN;
    END IF;
    IF jsonb_typeof(a->'candidates'->0->'content'->'parts') = 'array' THEN
        SELECT string_agg(p->>'text', '' ORDER BY n) INTO txt
          FROM jsonb_array_elements(a->'candidates'->0->'content'->'parts') WITH ORDINALITY AS x(p, n)
         WHERE jsonb_typeof(p->'text') = 'string';
    END IF;
    IF txt IS NULL OR btrim(txt) = '' THEN
        PERFORM ventros.enrichment_attempt_failed(r, 'malformed answer: no candidate text in ' ||
                                                     left(convert_from(coalesce(r.response_body, ''), 'SQL_ASCII'), 200));
        RETURN;
    END IF;
    PERFORM ventros.enrichment_attempt_succeeded(r, jsonb_strip_nulls(jsonb_build_object(
        'text', btrim(txt),
        'model', a->>'modelVersion',
        'metadata', CASE WHEN substring(txt FROM '^\s*(10|[0-9])(\.[0-9]+)?\M') IS NOT NULL
                              AND (SELECT x.context FROM ventros.message_enrichments x
                                    WHERE x.tenant_id = r.tenant_id AND x.id = r.correlation_id) = 'profile_picture'
                         THEN jsonb_build_object('score', substring(txt FROM '^\s*(10|[0-9](?:\.[0-9]+)?)')::numeric) END,
        'usage', jsonb_strip_nulls(jsonb_build_object(
            'input_tokens', a->'usageMetadata'->'promptTokenCount',
            'output_tokens', a->'usageMetadata'->'candidatesTokenCount')))));
END
$$;
COMMENT ON FUNCTION ventros.gemini_answer(ventros.http_requests) IS
    'Answer handler of Gemini: the first candidate''s text parts, tokens used; a blocked prompt or no text is a failure (next provider)';

-- ---- LlamaParse (upload -> poll -> result) ---------------------------------------------

CREATE FUNCTION ventros.llamaparse_request(e ventros.message_enrichments, cfg jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m ventros.messages;
    mt text := ventros.enrichment_media_type(e);
BEGIN
    SELECT * INTO m FROM ventros.messages x WHERE x.tenant_id = e.tenant_id AND x.id = e.message_id;
    RETURN jsonb_build_object(
        'method', 'POST',
        'url', (cfg->>'base_url') || '/api/v1/parsing/upload',
        'headers', jsonb_build_object('Accept', 'application/json'),
        'form', jsonb_build_array(
                    jsonb_build_object('name', 'file', 'media', true, 'content_type', mt,
                                       'filename', coalesce(ventros.media_filename(m), 'document')),
                    jsonb_build_object('name', 'parsing_instruction', 'value',
                                       coalesce(cfg->>'prompt', 'Extract all text, tables and structure as markdown.')))
                || CASE WHEN cfg ? 'language' THEN jsonb_build_array(jsonb_build_object('name', 'language', 'value', cfg->>'language'))
                        ELSE '[]' END);
END
$$;
COMMENT ON FUNCTION ventros.llamaparse_request(ventros.message_enrichments, jsonb) IS
    'LlamaParse step 1: POST <base_url>/api/v1/parsing/upload, multipart file, parsing_instruction, language';

-- The next GET of a LlamaParse job (poll or result), after a delay.
CREATE FUNCTION ventros.llamaparse_follow(r ventros.http_requests, e ventros.message_enrichments, path text, delay_ms integer)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p ventros.enrichment_providers;
    ps ventros.enrichment_provider_settings;
    s ventros.enrichment_settings;
    cfg jsonb;
    rid uuid;
BEGIN
    SELECT * INTO p FROM ventros.enrichment_providers x WHERE x.provider = e.provider;
    SELECT * INTO ps FROM ventros.enrichment_provider_settings x WHERE x.tenant_id = e.tenant_id AND x.provider = e.provider;
    SELECT * INTO s FROM ventros.enrichment_settings x WHERE x.tenant_id = e.tenant_id;
    cfg := ventros.enrichment_config(p, ps, s);
    rid := ventros.enrichment_enqueue(e, p, cfg,
               jsonb_build_object('method', 'GET', 'url', (cfg->>'base_url') || path,
                                  'headers', jsonb_build_object('Accept', 'application/json')),
               clock_timestamp() + make_interval(secs => delay_ms / 1000.0));
    UPDATE ventros.message_enrichments x SET request_id = rid, version = x.version
     WHERE x.tenant_id = e.tenant_id AND x.id = e.id;
END
$$;
COMMENT ON FUNCTION ventros.llamaparse_follow(ventros.http_requests, ventros.message_enrichments, text, integer) IS
    'Queues the next GET of a LlamaParse job (status poll or result) after delay_ms; it becomes the enrichment''s current attempt';

CREATE FUNCTION ventros.llamaparse_answer(r ventros.http_requests) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a jsonb := ventros.json_body(r.response_body);
    e ventros.message_enrichments := ventros.enrichment_for_request(r);
    ps ventros.enrichment_provider_settings;
    poll_ms integer;
    started timestamptz;
BEGIN
    IF e.id IS NULL THEN
        RETURN;
    END IF;
    IF r.status <> 'succeeded' THEN
        PERFORM ventros.enrichment_attempt_failed(r, NULL);
        RETURN;
    END IF;
    SELECT * INTO ps FROM ventros.enrichment_provider_settings x WHERE x.tenant_id = e.tenant_id AND x.provider = e.provider;
    IF r.method = 'POST' THEN
        -- step 1 answered: the job id; poll at poll_ms (default 2 s)
        IF jsonb_typeof(a->'id') IS DISTINCT FROM 'string' OR a->>'id' !~ '^[A-Za-z0-9-]{1,100}$' THEN
            PERFORM ventros.enrichment_attempt_failed(r, 'malformed answer: no job id');
            RETURN;
        END IF;
        poll_ms := coalesce((ps.options->>'poll_ms')::integer, 2000);
        UPDATE ventros.message_enrichments x
           SET job_id = a->>'id', version = x.version,
               metadata = coalesce(x.metadata, '{}') || jsonb_build_object('job_started_at', now(), 'poll_ms', poll_ms)
         WHERE x.tenant_id = e.tenant_id AND x.id = e.id
        RETURNING * INTO e;
        PERFORM ventros.llamaparse_follow(r, e, format('/api/v1/parsing/job/%s', e.job_id), poll_ms);
    ELSIF r.url ~ '/result/markdown$' THEN
        IF jsonb_typeof(a->'markdown') IS DISTINCT FROM 'string' THEN
            PERFORM ventros.enrichment_attempt_failed(r, 'malformed answer: no markdown');
            RETURN;
        END IF;
        PERFORM ventros.enrichment_attempt_succeeded(r, jsonb_build_object(
            'text', a->>'markdown',
            'metadata', jsonb_build_object('job_id', e.job_id),
            'usage', jsonb_strip_nulls(jsonb_build_object('pages', a->'job_metadata'->'job_pages',
                                                          'credits', a->'job_metadata'->'credits_used'))));
    ELSE
        -- a poll: SUCCESS -> the result; PENDING -> again, x1.5 up to poll_max_ms, until poll_timeout_s
        CASE a->>'status'
        WHEN 'SUCCESS', 'PARTIAL_SUCCESS' THEN
            PERFORM ventros.llamaparse_follow(r, e, format('/api/v1/parsing/job/%s/result/markdown', e.job_id), 0);
        WHEN 'PENDING' THEN
            started := (e.metadata->>'job_started_at')::timestamptz;
            IF now() - started > make_interval(secs => coalesce((ps.options->>'poll_timeout_s')::integer, 600)) THEN
                PERFORM ventros.enrichment_attempt_failed(r, format('the parsing job %s did not finish in %s s', e.job_id,
                                                                    coalesce((ps.options->>'poll_timeout_s')::integer, 600)));
                RETURN;
            END IF;
            poll_ms := least((coalesce((e.metadata->>'poll_ms')::integer, 2000) * 1.5)::integer,
                             coalesce((ps.options->>'poll_max_ms')::integer, 30000));
            UPDATE ventros.message_enrichments x
               SET metadata = x.metadata || jsonb_build_object('poll_ms', poll_ms,
                                                               'polls', coalesce((x.metadata->>'polls')::integer, 0) + 1),
                   version = x.version
             WHERE x.tenant_id = e.tenant_id AND x.id = e.id
            RETURNING * INTO e;
            PERFORM ventros.llamaparse_follow(r, e, format('/api/v1/parsing/job/%s', e.job_id), poll_ms);
        WHEN 'ERROR', 'CANCELLED' THEN
            PERFORM ventros.enrichment_attempt_failed(r, format('parsing job %s: %s%s', a->>'status', a->>'error_code',
                                                                ' ' || (a->>'error_message')));
        ELSE
            PERFORM ventros.enrichment_attempt_failed(r, 'malformed answer: unknown job status ' ||
                                                         coalesce(left(a->>'status', 50), 'none'));
        END CASE;
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.llamaparse_answer(ventros.http_requests) IS
    'Answer handler of LlamaParse: upload -> job id, polls (x1.5 up to poll_max_ms, until poll_timeout_s) -> SUCCESS -> the markdown and pages; ERROR, CANCELLED, timeouts and malformed answers fail the attempt';

-- ---- declarations ----------------------------------------------------------------

-- Prices: USD, public list prices at the time of writing (docs/ai.md); a
-- platform administrator updates them with register_enrichment_provider.
SELECT ventros.register_enrichment_provider('groq', 'transcription', 'https://api.groq.com/openai', 'whisper-large-v3-turbo',
    'ventros.whisper_request(ventros.message_enrichments, jsonb)', 25 * 1024 * 1024,
    '{"per_second": 0.0000111}', description => 'Groq Whisper transcriptions (OpenAI-compatible API)');
SELECT ventros.register_enrichment_provider('openai', 'transcription', 'https://api.openai.com', 'whisper-1',
    'ventros.whisper_request(ventros.message_enrichments, jsonb)', 25 * 1024 * 1024,
    '{"per_second": 0.0001}', description => 'OpenAI Whisper transcriptions, or any OpenAI-compatible server (base_url, model)');
SELECT ventros.register_enrichment_provider('gemini', 'vision', 'https://generativelanguage.googleapis.com', 'gemini-2.5-flash',
    'ventros.gemini_request(ventros.message_enrichments, jsonb)', 15 * 1024 * 1024,
    '{"per_input_token": 0.0000003, "per_output_token": 0.0000025}', 'x-goog-api-key', NULL,
    description => 'Gemini vision: the text in an image and its description, profile picture scores');
SELECT ventros.register_enrichment_provider('llamaparse', 'document', 'https://api.cloud.llamaindex.ai', NULL,
    'ventros.llamaparse_request(ventros.message_enrichments, jsonb)', 50 * 1024 * 1024,
    '{"per_page": 0.003}', description => 'LlamaParse: PDF, Word, spreadsheets and presentations to markdown (upload, poll, result)');

INSERT INTO ventros.enrichment_routes (media_kind, position, provider) VALUES
    ('audio', 1, 'groq'), ('audio', 2, 'openai'),
    ('image', 1, 'gemini'),
    ('document', 1, 'llamaparse'),
    ('profile_picture', 1, 'gemini');

SELECT ventros.register_http_request_handler('enrichment.groq', 'ventros.whisper_answer(ventros.http_requests)');
SELECT ventros.register_http_request_handler('enrichment.openai', 'ventros.whisper_answer(ventros.http_requests)');
SELECT ventros.register_http_request_handler('enrichment.gemini', 'ventros.gemini_answer(ventros.http_requests)');
SELECT ventros.register_http_request_handler('enrichment.llamaparse', 'ventros.llamaparse_answer(ventros.http_requests)');
SELECT ventros.register_http_request_preparer('enrichment.' || p.provider,
                                              'ventros.enrichment_request_headers(ventros.http_requests)')
  FROM ventros.enrichment_providers p;

-- ---- search (sql/82_search.sql, sql/40_messages.sql, sql/51_crm_queries.sql, ventros.control)
-- Ranked, language-aware search with typo matches (docs/ai.md, "Search").  0.2.0
-- requires pg_trgm: CREATE EXTENSION pg_trgm before this update (docs/sql.md,
-- "Upgrading").  Messages stored before it name no language and stay indexed
-- with 'simple' (no rewrite of every message, no events).
DROP INDEX ventros.messages_text_search;

-- search_config: the text search configuration of a language code (ISO
-- 639-1, optionally with a region: 'pt-BR'); 'simple' for any other.  No SET
-- clause: it runs in the index expression of every message written.
CREATE FUNCTION ventros.search_config(language text) RETURNS regconfig
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE pg_catalog.split_part(pg_catalog.lower(language), '-', 1)
        WHEN 'pt' THEN 'pg_catalog.portuguese'::pg_catalog.regconfig WHEN 'es' THEN 'pg_catalog.spanish'::pg_catalog.regconfig
        WHEN 'en' THEN 'pg_catalog.english'::pg_catalog.regconfig WHEN 'fr' THEN 'pg_catalog.french'::pg_catalog.regconfig
        WHEN 'de' THEN 'pg_catalog.german'::pg_catalog.regconfig WHEN 'it' THEN 'pg_catalog.italian'::pg_catalog.regconfig
        WHEN 'nl' THEN 'pg_catalog.dutch'::pg_catalog.regconfig WHEN 'ca' THEN 'pg_catalog.catalan'::pg_catalog.regconfig
        WHEN 'ro' THEN 'pg_catalog.romanian'::pg_catalog.regconfig WHEN 'ru' THEN 'pg_catalog.russian'::pg_catalog.regconfig
        WHEN 'tr' THEN 'pg_catalog.turkish'::pg_catalog.regconfig WHEN 'id' THEN 'pg_catalog.indonesian'::pg_catalog.regconfig
        ELSE 'pg_catalog.simple'::pg_catalog.regconfig END
$$;
COMMENT ON FUNCTION ventros.search_config(text) IS
    'The text search configuration of a language code (pt, es, en, fr, de, it, nl, ca, ro, ru, tr, id; ''pt-BR'' counts as pt), else simple';

-- search_tsquery: a web-search style query parsed with every configuration
-- search_config yields, OR'ed (without the ones that are only stop words), so
-- one GIN scan finds the candidates of every language.
CREATE FUNCTION ventros.search_tsquery(query text) RETURNS tsquery
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
AS $$
DECLARE
    result tsquery;
    part tsquery;
BEGIN
    FOR part IN
        SELECT DISTINCT websearch_to_tsquery(ventros.search_config(l), query)
        FROM unnest(ARRAY['pt', 'es', 'en', 'fr', 'de', 'it', 'nl', 'ca', 'ro', 'ru', 'tr', 'id', NULL]) l
    LOOP
        CONTINUE WHEN numnode(part) = 0;
        result := CASE WHEN result IS NULL THEN part ELSE result || part END;
    END LOOP;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.search_tsquery(text) IS
    'A web-search style query parsed with every configuration of ventros.search_config, OR''ed (the index condition of a search)';

-- The search text of a contact: name, email and phone (trigram indexed).
CREATE FUNCTION ventros.contact_search_text(name text, email text, phone text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT name OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) coalesce(email, '') OPERATOR(pg_catalog.||) ' '
             OPERATOR(pg_catalog.||) coalesce(phone, '') $$;
COMMENT ON FUNCTION ventros.contact_search_text(text, text, text) IS
    'The text a contact is found by: its name, email and phone';

-- A message names its language, or takes its contact's when written.
CREATE FUNCTION ventros.fill_message_language() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    SELECT c.language INTO NEW.language FROM ventros.contacts c
    WHERE c.tenant_id = coalesce(NEW.tenant_id, ventros.current_tenant()) AND c.id = NEW.contact_id;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION ventros.fill_message_language() IS
    'Trigger: a new message without a language takes its contact''s (the text search configuration of its index entry)';
CREATE TRIGGER messages_search_language BEFORE INSERT ON ventros.messages
    FOR EACH ROW WHEN (NEW.language IS NULL) EXECUTE FUNCTION ventros.fill_message_language();

CREATE INDEX messages_search ON ventros.messages
    USING gin (to_tsvector(ventros.search_config(language), coalesce(text, ''))) WITH (fastupdate = on);
-- (enrichment text: message_enrichments.search_vector and its index
-- message_enrichments_search, sql/80_message_enrichments.sql)
CREATE INDEX notes_search ON ventros.notes USING gin (to_tsvector('simple'::regconfig, content));

DO $trgm$
DECLARE
    s text := (SELECT n.nspname FROM pg_catalog.pg_extension e
               JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm');
BEGIN
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION ventros.search_similar(query text, body text) RETURNS boolean
        LANGUAGE sql STABLE PARALLEL SAFE
        AS 'SELECT query OPERATOR(%1$I.<%%) body'$f$, s);
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION ventros.search_similarity(query text, body text) RETURNS real
        LANGUAGE sql STABLE PARALLEL SAFE
        AS 'SELECT %1$I.word_similarity(query, body)'$f$, s);
    EXECUTE pg_catalog.format('CREATE INDEX messages_search_trgm ON ventros.messages USING gin (text %1$I.gin_trgm_ops) '
                              'WITH (fastupdate = on)', s);
    EXECUTE pg_catalog.format('CREATE INDEX message_enrichments_search_trgm ON ventros.message_enrichments '
                              'USING gin (extracted_text %1$I.gin_trgm_ops)', s);
    EXECUTE pg_catalog.format('CREATE INDEX notes_search_trgm ON ventros.notes USING gin (content %1$I.gin_trgm_ops)', s);
    EXECUTE pg_catalog.format('CREATE INDEX contacts_search_trgm ON ventros.contacts '
                              'USING gin (ventros.contact_search_text(name, email, phone) %1$I.gin_trgm_ops)', s);
END
$trgm$;
COMMENT ON FUNCTION ventros.search_similar(text, text) IS
    'Whether a query is like a part of a text (pg_trgm''s <%: word similarity over its threshold); inlined, so trigram indexes serve it';
COMMENT ON FUNCTION ventros.search_similarity(text, text) IS
    'How like a part of a text a query is, 0 to 1 (pg_trgm''s word_similarity)';

-- search_cursor / search_after: the keyset token of a hit, (rank, id) in
-- base64url, and its reading (22P02 when it is not one).
CREATE FUNCTION ventros.search_cursor(rank real, id uuid) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT pg_catalog.rtrim(pg_catalog.translate(pg_catalog.encode(pg_catalog.convert_to(rank::text || ',' || id::text, 'UTF8'),
                                                                   'base64'), '+/', '-_'), '=')
$$;
COMMENT ON FUNCTION ventros.search_cursor(real, uuid) IS 'The keyset token of a search hit: its rank and id in base64url';

CREATE FUNCTION ventros.search_after(token text, OUT rank real, OUT id uuid)
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    plain text;
BEGIN
    BEGIN
        plain := convert_from(decode(translate(token, '-_', '+/') || repeat('=', (4 - length(token) % 4) % 4), 'base64'), 'UTF8');
        IF plain !~ '^[0-9.e+-]{1,20},[0-9a-f-]{36}$' THEN
            RAISE EXCEPTION USING ERRCODE = '22P02';
        END IF;
        rank := split_part(plain, ',', 1)::real;
        id := split_part(plain, ',', 2)::uuid;
    EXCEPTION WHEN data_exception OR invalid_parameter_value OR character_not_in_repertoire THEN
        RAISE EXCEPTION 'malformed search cursor "%"', left(token, 64) USING ERRCODE = '22P02',
            HINT = 'Pass the cursor of the last row of the previous page, unchanged.';
    END;
END
$$;
COMMENT ON FUNCTION ventros.search_after(text) IS 'Reads a search cursor token (22P02 when malformed)';

-- search: the hits of a query over the acting tenant's messages, enrichment
-- text, notes and contacts, best first (rank, then id), one page per call.
--   rank: 1 + r / (1 + r) for a full-text match, r = ts_rank_cd divided by
--   1 + log(length) (normalization 1|32: denser and shorter texts first),
--   1 + word similarity for a contact whose name, email or phone contains the
--   query, word similarity alone (0.4 .. 1) for a typo match (pg_trgm).
--   fuzzy: true adds typo matches, false never; NULL (default) adds them when
--   the exact matches are fewer than 20.
-- A generic plan: planning this query for each call's values (a custom plan)
-- took longer than running it (about 60 ms against 1 for a rare word); its
-- branches are switched by one-time filters on the arguments, and the index
-- conditions are the same whatever the values.
CREATE FUNCTION ventros.search(query text, kinds text[] DEFAULT NULL, contact uuid DEFAULT NULL,
                               fuzzy boolean DEFAULT NULL, after text DEFAULT NULL, page_size integer DEFAULT 20)
RETURNS TABLE (kind text, id uuid, contact_id uuid, session_id uuid, message_id uuid, at timestamptz, rank real,
               snippet text, cursor text)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
SET pg_trgm.word_similarity_threshold = 0.4
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    tenant text := ventros.require_tenant();
    n integer := ventros.check_page_size(page_size);
    k text[] := coalesce(kinds, ARRAY['message', 'enrichment', 'note', 'contact']);
    q text;
    q_any tsquery;
    q_simple tsquery;
    digits text;
    pattern text;
    c_rank real := 'infinity';
    c_id uuid := '00000000-0000-0000-0000-000000000000';
    kind_name text;
BEGIN
    IF query IS NULL OR btrim(query) = '' THEN
        RAISE EXCEPTION 'search query must not be empty' USING ERRCODE = '22023';
    END IF;
    q := btrim(ventros.check_length(query, 500, 'search query'));
    FOREACH kind_name IN ARRAY k LOOP
        PERFORM ventros.require_value(kind_name, ARRAY['message', 'enrichment', 'note', 'contact'], 'search kind');
    END LOOP;
    IF after IS NOT NULL THEN
        SELECT a.rank, a.id INTO c_rank, c_id FROM ventros.search_after(after) a;
    END IF;
    q_any := ventros.search_tsquery(q);
    q_simple := websearch_to_tsquery('simple', q);
    pattern := '%' || replace(replace(replace(lower(q), '\', '\\'), '%', '\%'), '_', '\_') || '%';
    digits := CASE WHEN q ~ '^\+?[0-9\s().\-/]{3,}$' THEN '%' || regexp_replace(q, '[^0-9]', '', 'g') || '%' END;
    RETURN QUERY
    WITH exact AS MATERIALIZED (
        SELECT 'message'::text AS kind, m.id, m.contact_id, m.session_id, m.id AS message_id, m."timestamp" AS at,
               (1 + ts_rank_cd(v.tsv, v.tsq, 33))::real AS rank, v.cfg, m.text AS body
        FROM ventros.messages m
        -- each candidate's vector and query once, in its own language (OFFSET 0: not flattened into copies)
        CROSS JOIN LATERAL (SELECT c.cfg, to_tsvector(c.cfg, coalesce(m.text, '')) AS tsv, websearch_to_tsquery(c.cfg, q) AS tsq
                            FROM (SELECT ventros.search_config(m.language) AS cfg) c OFFSET 0) v
        WHERE 'message' = ANY (k) AND m.tenant_id = tenant AND m.deleted_at IS NULL
          AND to_tsvector(ventros.search_config(m.language), coalesce(m.text, '')) @@ q_any
          AND v.tsv @@ v.tsq
          AND (search.contact IS NULL OR m.contact_id = search.contact)
        UNION ALL
        SELECT 'enrichment', e.id, e.contact_id, m.session_id, e.message_id, m."timestamp",
               (1 + ts_rank_cd(e.search_vector, q_simple, 33))::real,
               'simple'::regconfig, e.extracted_text
        FROM ventros.message_enrichments e
        JOIN ventros.messages m ON m.tenant_id = e.tenant_id AND m.id = e.message_id AND m.deleted_at IS NULL
        WHERE 'enrichment' = ANY (k) AND e.tenant_id = tenant AND e.deleted_at IS NULL AND e.status = 'completed'
          AND e.search_vector @@ q_simple
          AND (search.contact IS NULL OR e.contact_id = search.contact)
        UNION ALL
        SELECT 'note', x.id, x.contact_id, x.session_id, NULL::uuid, x.created_at,
               (1 + ts_rank_cd(to_tsvector('simple'::regconfig, x.content), q_simple, 33))::real,
               'simple'::regconfig, x.content
        FROM ventros.notes x
        WHERE 'note' = ANY (k) AND x.tenant_id = tenant AND x.deleted_at IS NULL
          AND to_tsvector('simple'::regconfig, x.content) @@ q_simple
          AND (search.contact IS NULL OR x.contact_id = search.contact)
        UNION ALL
        SELECT 'contact', c.id, c.id, NULL::uuid, NULL::uuid, c.created_at,
               (1 + ventros.search_similarity(q, ventros.contact_search_text(c.name, c.email, c.phone)))::real,
               'simple'::regconfig, ventros.contact_search_text(c.name, c.email, c.phone)
        FROM ventros.contacts c
        WHERE 'contact' = ANY (k) AND c.tenant_id = tenant AND c.deleted_at IS NULL
          AND (ventros.contact_search_text(c.name, c.email, c.phone) ILIKE pattern
               OR (digits IS NOT NULL AND ventros.contact_search_text(c.name, c.email, c.phone) LIKE digits))
          AND (search.contact IS NULL OR c.id = search.contact)
    ), typo AS (
        SELECT 'message'::text AS kind, m.id, m.contact_id, m.session_id, m.id AS message_id, m."timestamp" AS at,
               ventros.search_similarity(q, m.text)::real AS rank, 'simple'::regconfig AS cfg, m.text AS body
        FROM ventros.messages m
        WHERE 'message' = ANY (k) AND m.tenant_id = tenant AND m.deleted_at IS NULL
          AND ventros.search_similar(q, m.text)
          AND (search.contact IS NULL OR m.contact_id = search.contact)
        UNION ALL
        SELECT 'enrichment', e.id, e.contact_id, m.session_id, e.message_id, m."timestamp",
               ventros.search_similarity(q, e.extracted_text)::real, 'simple'::regconfig, e.extracted_text
        FROM ventros.message_enrichments e
        JOIN ventros.messages m ON m.tenant_id = e.tenant_id AND m.id = e.message_id AND m.deleted_at IS NULL
        WHERE 'enrichment' = ANY (k) AND e.tenant_id = tenant AND e.deleted_at IS NULL AND e.status = 'completed'
          AND ventros.search_similar(q, e.extracted_text)
          AND (search.contact IS NULL OR e.contact_id = search.contact)
        UNION ALL
        SELECT 'note', x.id, x.contact_id, x.session_id, NULL::uuid, x.created_at,
               ventros.search_similarity(q, x.content)::real, 'simple'::regconfig, x.content
        FROM ventros.notes x
        WHERE 'note' = ANY (k) AND x.tenant_id = tenant AND x.deleted_at IS NULL
          AND ventros.search_similar(q, x.content)
          AND (search.contact IS NULL OR x.contact_id = search.contact)
        UNION ALL
        SELECT 'contact', c.id, c.id, NULL::uuid, NULL::uuid, c.created_at,
               ventros.search_similarity(q, ventros.contact_search_text(c.name, c.email, c.phone))::real,
               'simple'::regconfig, ventros.contact_search_text(c.name, c.email, c.phone)
        FROM ventros.contacts c
        WHERE 'contact' = ANY (k) AND c.tenant_id = tenant AND c.deleted_at IS NULL
          AND ventros.search_similar(q, ventros.contact_search_text(c.name, c.email, c.phone))
          AND (search.contact IS NULL OR c.id = search.contact)
    ), hits AS (
        SELECT * FROM exact
        UNION ALL
        SELECT t.* FROM typo t
        WHERE (fuzzy OR (fuzzy IS NULL AND (SELECT count(*) FROM exact) < 20))
          AND NOT EXISTS (SELECT 1 FROM exact x WHERE x.id = t.id)
    ), page AS (
        SELECT * FROM hits h
        WHERE h.rank < c_rank OR (h.rank = c_rank AND h.id > c_id)
        ORDER BY h.rank DESC, h.id
        LIMIT n
    )
    SELECT p.kind, p.id, p.contact_id, p.session_id, p.message_id, p.at, p.rank,
           CASE WHEN p.rank > 1 AND p.kind <> 'contact'
                THEN ts_headline(p.cfg, p.body, websearch_to_tsquery(p.cfg, q), 'MaxFragments=1, MaxWords=24, MinWords=8')
                ELSE left(p.body, 200) END,
           ventros.search_cursor(p.rank, p.id)
    FROM page p
    ORDER BY p.rank DESC, p.id;
END
$$;
COMMENT ON FUNCTION ventros.search(text, text[], uuid, boolean, text, integer) IS
    'Messages, media text, notes and contacts matching a web-search style query, best first (language-aware full text, then typo matches); next page: pass the last row''s cursor as after';

-- search_contacts: the contact hits of ventros.search, with the contact.
CREATE FUNCTION ventros.search_contacts(query text, fuzzy boolean DEFAULT NULL, after text DEFAULT NULL,
                                        page_size integer DEFAULT 20)
RETURNS TABLE (id uuid, name text, phone text, email text, language text, tags text[], rank real, cursor text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.id, c.name, c.phone, c.email, c.language, c.tags, s.rank, s.cursor
    FROM ventros.search(query, ARRAY['contact'], NULL, fuzzy, after, page_size) s
    JOIN ventros.contacts c ON c.tenant_id = ventros.require_tenant() AND c.id = s.id
    ORDER BY s.rank DESC, s.id
$$;
COMMENT ON FUNCTION ventros.search_contacts(text, boolean, text, integer) IS
    'Contacts by part of their name, phone or email, or a misspelling of it, best first; next page: pass the last row''s cursor as after';

-- The functions of index expressions run as whoever writes the rows.
GRANT EXECUTE ON FUNCTION ventros.search_config(text), ventros.contact_search_text(text, text, text) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.search(text, text[], uuid, boolean, text, integer), ventros.search_contacts(text, boolean, text, integer)
    TO ventros_viewer;

-- search_messages: the language-aware index (sql/51_crm_queries.sql)
CREATE OR REPLACE FUNCTION ventros.search_messages(query text, channel_id uuid DEFAULT NULL, contact_id uuid DEFAULT NULL,
                                        before_timestamp timestamptz DEFAULT NULL, before_id uuid DEFAULT NULL,
                                        page_size integer DEFAULT 50)
RETURNS SETOF ventros.messages
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q_any tsquery;
    tenant text := ventros.require_tenant();
BEGIN
    IF query IS NULL OR btrim(query) = '' THEN
        RAISE EXCEPTION 'search query must not be empty' USING ERRCODE = '22023';
    END IF;
    q_any := ventros.search_tsquery(ventros.check_length(query, 500, 'search query'));
    RETURN QUERY
    SELECT m.* FROM ventros.messages m
    WHERE m.tenant_id = tenant AND m.deleted_at IS NULL
      AND to_tsvector(ventros.search_config(m.language), coalesce(m.text, '')) @@ q_any
      AND to_tsvector(ventros.search_config(m.language), coalesce(m.text, ''))
          @@ websearch_to_tsquery(ventros.search_config(m.language), query)
      AND (search_messages.channel_id IS NULL OR m.channel_id = search_messages.channel_id)
      AND (search_messages.contact_id IS NULL OR m.contact_id = search_messages.contact_id)
      AND (before_id IS NULL OR (m."timestamp", m.id) < (before_timestamp, before_id))
    ORDER BY m."timestamp" DESC, m.id DESC
    LIMIT ventros.check_page_size(page_size);
END
$$;
COMMENT ON FUNCTION ventros.search_messages(text, uuid, uuid, timestamptz, uuid, integer) IS
    'Messages whose text matches a web-search style query (full text in each message''s language, GIN), newest first, keyset paged by (timestamp, id)';

-- ---- lead scores (sql/85_lead_scores.sql)
-- A contact's lead score computed from a pipeline's rules (docs/ai.md, "Lead qualification").
-- lead_engagement: what a contact did, as the rules see it (payload.engagement).
CREATE FUNCTION ventros.lead_engagement(contact_id uuid) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'messages_from_contact', count(*) FILTER (WHERE NOT m.from_me),
        'messages_to_contact', count(*) FILTER (WHERE m.from_me),
        'sessions', (SELECT count(*) FROM ventros.sessions s
                     WHERE s.tenant_id = ventros.require_tenant() AND s.contact_id = lead_engagement.contact_id
                       AND s.deleted_at IS NULL),
        'days_since_last_message', floor(extract(epoch FROM now() - max(m."timestamp")) / 86400))
    FROM ventros.messages m
    WHERE m.tenant_id = ventros.require_tenant() AND m.contact_id = lead_engagement.contact_id AND m.deleted_at IS NULL
$$;
COMMENT ON FUNCTION ventros.lead_engagement(uuid) IS
    'A contact''s engagement as lead rules see it: messages from and to it, sessions, days since its last message';

-- score_contact_lead: the score of a contact against a pipeline's rules; at
-- or above min_score the contact qualifies (qualify_contact_lead: VN002 when
-- the pipeline has lead qualification disabled, contact.lead_qualified with
-- the rules that held and the model's score as its answers).
CREATE FUNCTION ventros.score_contact_lead(contact_id uuid, pipeline_id uuid, model_score numeric DEFAULT NULL)
RETURNS TABLE (score numeric, qualified boolean, rules jsonb)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    tenant text := ventros.require_tenant();
    config jsonb;
    ctx jsonb;
    r jsonb;
    held boolean;
    total numeric := 0;
    detail jsonb := '[]';
    weight numeric;
BEGIN
    SELECT p.lead_qualification INTO config FROM ventros.pipelines p
    WHERE p.tenant_id = tenant AND p.id = score_contact_lead.pipeline_id;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('pipeline', pipeline_id);
    END IF;
    PERFORM 1 FROM ventros.contacts c WHERE c.tenant_id = tenant AND c.id = score_contact_lead.contact_id;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('contact', contact_id);
    END IF;
    IF jsonb_typeof(coalesce(config->'rules', '[]')) <> 'array' THEN
        RAISE EXCEPTION 'lead rules of pipeline % must be a JSON array', pipeline_id USING ERRCODE = '22023';
    END IF;
    IF model_score IS NOT NULL AND (model_score < 0 OR model_score > 10) THEN
        RAISE EXCEPTION 'model score must be between 0 and 10' USING ERRCODE = '22023';
    END IF;
    -- the context an automation rule would see of an event on this contact
    ctx := ventros.automation_context(jsonb_populate_record(NULL::ventros.outbox, jsonb_build_object(
               'tenant_id', tenant, 'aggregate_type', 'contact', 'aggregate_id', contact_id,
               'event_type', 'contact.lead_scored', 'occurred_at', now(),
               'payload', jsonb_build_object('engagement', ventros.lead_engagement(contact_id)))), now());
    FOR r IN SELECT x FROM jsonb_array_elements(coalesce(config->'rules', '[]')) x LOOP
        IF jsonb_typeof(r->'when') IS DISTINCT FROM 'object' OR jsonb_typeof(r->'points') IS DISTINCT FROM 'number' THEN
            RAISE EXCEPTION 'lead rule % of pipeline % needs "when" (a condition) and "points" (a number)', left(r::text, 64), pipeline_id
                USING ERRCODE = '22023', HINT = 'For example {"name": "has email", "when": {"field": "contact.email", "operator": "is_not_null"}, "points": 2}.';
        END IF;
        held := ventros.automation_condition_holds(r->'when', ctx, 'UTC', now());
        IF held THEN
            total := total + (r->>'points')::numeric;
        END IF;
        detail := detail || jsonb_build_object('name', r->'name', 'points', r->'points', 'held', held);
    END LOOP;
    total := least(10, greatest(0, total));
    IF model_score IS NOT NULL THEN
        weight := coalesce((config->>'model_weight')::numeric, 0.5);
        IF weight < 0 OR weight > 1 THEN
            RAISE EXCEPTION 'model_weight of pipeline % must be between 0 and 1', pipeline_id USING ERRCODE = '22023';
        END IF;
        total := (1 - weight) * total + weight * model_score;
    END IF;
    score := round(total, 2);
    rules := detail;
    qualified := ventros.qualify_contact_lead(contact_id, pipeline_id, score,
                                              jsonb_build_object('rules', detail, 'model_score', model_score));
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION ventros.score_contact_lead(uuid, uuid, numeric) IS
    'Scores a contact by a pipeline''s lead rules (conditions as data, points summed within 0..10, optionally blended with a model''s score); at or above min_score emits contact.lead_qualified';

GRANT EXECUTE ON FUNCTION ventros.lead_engagement(uuid) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.score_contact_lead(uuid, uuid, numeric) TO ventros_agent;

-- ---- automation executor (sql/83_automation_rules.sql, 84_automation_conditions.sql, 84_automation_executor.sql)
-- The executor, made fast with the same guarantees (docs/automation.md,
-- "Throughput and lag"): the rules of a whole batch matched in one query,
-- the context built once per event, one subtransaction per event with a
-- second, per-rule pass only when it fails, skipped runs written at once,
-- the hot helpers planned once; the loop check's index by origin, partial.
DROP FUNCTION ventros.automation_process(ventros.automation_queue, timestamptz);
DROP FUNCTION ventros.automation_run_rule(ventros.automations, ventros.outbox, integer, uuid, timestamptz);
DROP INDEX ventros.automation_runs_origin;
CREATE INDEX automation_runs_origin ON ventros.automation_runs (tenant_id, origin_event_id, automation_id) WHERE depth > 0;

CREATE OR REPLACE FUNCTION ventros.automation_enqueue(event_tenant text, event_id uuid, event_type text, aggregate_id uuid)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO ventros.automation_queue (tenant_id, seq, event_id, aggregate_id, depth, origin_event_id)
    SELECT event_tenant, currval('ventros.outbox_seq'), automation_enqueue.event_id, automation_enqueue.aggregate_id,
           coalesce(nullif(current_setting('ventros.automation_depth', true), '')::integer, 0),
           coalesce(nullif(current_setting('ventros.automation_origin', true), '')::uuid, automation_enqueue.event_id)
     WHERE EXISTS (SELECT 1 FROM ventros.automations a
                    WHERE a.tenant_id = event_tenant AND a.enabled AND a.deleted_at IS NULL
                      AND ventros.automation_trigger_matches(a.trigger, automation_enqueue.event_type))
    ON CONFLICT (tenant_id, seq) DO NOTHING;
    RETURN CASE WHEN FOUND THEN 1 ELSE 0 END;
END
$$;
COMMENT ON FUNCTION ventros.automation_enqueue(text, uuid, text, uuid) IS
    'Internal (the emitter, as table owner): queues the event just written for the automation executor when an enabled rule of its tenant selects it; returns 1 or 0';

CREATE OR REPLACE FUNCTION ventros.automation_compare(actual jsonb, op text, expected jsonb) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE
AS $$
DECLARE
    a text := actual #>> '{}';
    e text := expected #>> '{}';
    missing boolean := actual IS NULL OR jsonb_typeof(actual) = 'null';
BEGIN
    CASE op
    WHEN 'is_null' THEN RETURN missing;
    WHEN 'is_not_null' THEN RETURN NOT missing;
    WHEN 'ne' THEN RETURN missing OR NOT ventros.automation_compare(actual, 'eq', expected);
    WHEN 'not_in' THEN RETURN missing OR NOT ventros.automation_compare(actual, 'in', expected);
    WHEN 'not_contains' THEN RETURN missing OR NOT ventros.automation_compare(actual, 'contains', expected);
    ELSE
        IF missing THEN
            RETURN false;
        END IF;
    END CASE;
    CASE op
    WHEN 'eq' THEN RETURN actual = expected OR a = e;
    WHEN 'gt', 'lt', 'gte', 'lte' THEN
        IF jsonb_typeof(actual) = 'number' AND jsonb_typeof(expected) = 'number' THEN
            RETURN CASE op WHEN 'gt' THEN a::numeric > e::numeric WHEN 'lt' THEN a::numeric < e::numeric
                           WHEN 'gte' THEN a::numeric >= e::numeric ELSE a::numeric <= e::numeric END;
        END IF;
        RETURN CASE op WHEN 'gt' THEN a > e WHEN 'lt' THEN a < e WHEN 'gte' THEN a >= e ELSE a <= e END;
    WHEN 'contains' THEN
        IF jsonb_typeof(actual) = 'array' THEN
            RETURN actual @> CASE WHEN jsonb_typeof(expected) = 'array' THEN expected ELSE jsonb_build_array(expected) END;
        END IF;
        RETURN strpos(lower(a), lower(e)) > 0;
    WHEN 'starts_with' THEN RETURN starts_with(lower(a), lower(e));
    WHEN 'ends_with' THEN RETURN right(lower(a), length(e)) = lower(e);
    WHEN 'in' THEN
        RETURN jsonb_typeof(expected) = 'array'
           AND (expected @> jsonb_build_array(actual) OR EXISTS (SELECT 1 FROM jsonb_array_elements_text(expected) x WHERE x = a));
    WHEN 'matches' THEN RETURN a ~* e;
    ELSE
        RAISE EXCEPTION 'unknown condition operator "%"', left(op, 32) USING ERRCODE = '22023';
    END CASE;
END
$$;
COMMENT ON FUNCTION ventros.automation_compare(jsonb, text, jsonb) IS
    'One condition operator (eq, ne, gt, lt, gte, lte, contains, not_contains, starts_with, ends_with, in, not_in, is_null, is_not_null, matches) on JSON values';

CREATE OR REPLACE FUNCTION ventros.automation_field(ctx jsonb, field text) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT ctx OPERATOR(pg_catalog.#>)
           CASE WHEN pg_catalog.split_part(field, '.', 1) IN ('payload', 'event', 'contact', 'message', 'session', 'channel', 'pipeline')
                THEN pg_catalog.string_to_array(field, '.')
                ELSE ARRAY['payload'] OPERATOR(pg_catalog.||) pg_catalog.string_to_array(field, '.') END
$$;
COMMENT ON FUNCTION ventros.automation_field(jsonb, text) IS
    'The value of a condition field in a rule''s context (payload.<path>, contact.<column>, contact.custom.<key>, session.<column>, message.<column>, channel.<column>, event.<attribute>, pipeline.statuses; a bare name is payload.<name>)';

CREATE OR REPLACE FUNCTION ventros.automation_condition_holds(c jsonb, ctx jsonb, tz text, at timestamptz) RETURNS boolean
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    txt text;
    w jsonb;
BEGIN
    -- the common shape first: a field, an operator, a value (and no other kind)
    IF c ? 'field' AND NOT c ?| ARRAY['all', 'any', 'not', 'keyword', 'regex', 'tag', 'time_window', 'weekdays'] THEN
        RETURN ventros.automation_compare(ventros.automation_field(ctx, c->>'field'), c->>'operator', c->'value');
    ELSIF c ? 'all' THEN
        RETURN NOT EXISTS (SELECT 1 FROM jsonb_array_elements(c->'all') x
                           WHERE NOT ventros.automation_condition_holds(x, ctx, tz, at));
    ELSIF c ? 'any' THEN
        RETURN EXISTS (SELECT 1 FROM jsonb_array_elements(c->'any') x
                       WHERE ventros.automation_condition_holds(x, ctx, tz, at));
    ELSIF c ? 'not' THEN
        RETURN NOT ventros.automation_condition_holds(c->'not', ctx, tz, at);
    ELSIF c ? 'keyword' THEN
        -- whole words, case-insensitive; any of a list
        txt := lower(coalesce(ctx #>> '{message,text}', ctx #>> '{payload,text}', ''));
        RETURN EXISTS (SELECT 1 FROM jsonb_array_elements_text(CASE jsonb_typeof(c->'keyword') WHEN 'array' THEN c->'keyword'
                                                                    ELSE jsonb_build_array(c->'keyword') END) k
                       WHERE btrim(k) <> ''
                         AND strpos(' ' || regexp_replace(txt, '[^[:alnum:]_]+', ' ', 'g') || ' ',
                                    ' ' || btrim(regexp_replace(lower(k), '[^[:alnum:]_]+', ' ', 'g')) || ' ') > 0);
    ELSIF c ? 'regex' THEN
        RETURN lower(coalesce(ctx #>> '{message,text}', ctx #>> '{payload,text}', '')) ~* (c->>'regex');
    ELSIF c ? 'tag' THEN
        RETURN coalesce(ctx #> '{contact,tags}' ? (c->>'tag'), false);
    ELSIF c ? 'time_window' THEN
        w := c->'time_window';
        IF w ? 'weekdays' AND NOT (w->'weekdays') @> to_jsonb(extract(isodow FROM at AT TIME ZONE tz)::integer) THEN
            RETURN false;
        END IF;
        RETURN CASE WHEN (w->>'from')::time <= (w->>'to')::time
                    THEN (at AT TIME ZONE tz)::time >= (w->>'from')::time
                         AND ((at AT TIME ZONE tz)::time < (w->>'to')::time OR w->>'to' LIKE '24:%')
                    ELSE (at AT TIME ZONE tz)::time >= (w->>'from')::time OR (at AT TIME ZONE tz)::time < (w->>'to')::time END;
    ELSIF c ? 'weekdays' THEN
        RETURN (c->'weekdays') @> to_jsonb(extract(isodow FROM at AT TIME ZONE tz)::integer);
    END IF;
    RETURN ventros.automation_compare(ventros.automation_field(ctx, c->>'field'), c->>'operator', c->'value');
END
$$;
COMMENT ON FUNCTION ventros.automation_condition_holds(jsonb, jsonb, text, timestamptz) IS
    'Whether one condition holds in a rule''s context at an instant, in the tenant''s timezone (time windows and weekdays: ISO, 1 = Monday)';

CREATE OR REPLACE FUNCTION ventros.automation_conditions_hold(conditions jsonb, ctx jsonb, tz text, at timestamptz) RETURNS boolean
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    result boolean := true;
    c jsonb;
    n integer := coalesce(jsonb_array_length(conditions), 0);
BEGIN
    -- an index loop, not a query over jsonb_array_elements: this runs for
    -- every rule of every event
    FOR i IN 0 .. n - 1 LOOP
        c := conditions->i;
        IF i = 0 THEN
            result := ventros.automation_condition_holds(c, ctx, tz, at);
        ELSIF upper(coalesce(c->>'logic', 'AND')) = 'OR' THEN
            result := result OR ventros.automation_condition_holds(c, ctx, tz, at);
        ELSE
            result := result AND ventros.automation_condition_holds(c, ctx, tz, at);
        END IF;
    END LOOP;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.automation_conditions_hold(jsonb, jsonb, text, timestamptz) IS
    'Whether a rule''s conditions hold: all of them, an element with "logic": "OR" or-ed with what precedes it; none: true';

CREATE OR REPLACE FUNCTION ventros.automation_report(rule ventros.automations, outcome text, run ventros.automation_runs) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.emit('automation.' || outcome, 'automation', rule.id,
        jsonb_strip_nulls(jsonb_build_object('trigger', rule.trigger, 'run_id', run.id, 'event_id', run.event_id,
                                             'event_type', run.event_type, 'origin_event_id', run.origin_event_id,
                                             'depth', run.depth, 'actions', run.actions_done, 'error', run.error)),
        rule.version);
END
$$;
COMMENT ON FUNCTION ventros.automation_report(ventros.automations, text, ventros.automation_runs) IS
    'Emits automation.triggered, .executed or .failed for a run';

CREATE OR REPLACE FUNCTION ventros.automation_ran_for_origin(tenant text, automation_id uuid, origin_event_id uuid) RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT EXISTS (SELECT 1 FROM ventros.automation_runs x
                    WHERE x.tenant_id OPERATOR(pg_catalog.=) $1 AND x.automation_id OPERATOR(pg_catalog.=) $2
                      AND x.event_id OPERATOR(pg_catalog.=) $3)
        OR EXISTS (SELECT 1 FROM ventros.automation_runs x
                    WHERE x.tenant_id OPERATOR(pg_catalog.=) $1 AND x.origin_event_id OPERATOR(pg_catalog.=) $3
                      AND x.automation_id OPERATOR(pg_catalog.=) $2 AND x.depth OPERATOR(pg_catalog.>) 0)
$$;
COMMENT ON FUNCTION ventros.automation_ran_for_origin(text, uuid, uuid) IS
    'Whether an automation rule ran (any outcome) for an originating event: for the event itself or for an event of its cascade';

CREATE OR REPLACE FUNCTION ventros.automation_run_rule(rule ventros.automations, ev ventros.outbox, ctx jsonb, ctx_error text,
                                            settings ventros.automation_settings, depth integer,
                                            origin_event_id uuid, at timestamptz)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    run ventros.automation_runs;
    holds boolean;
    reason text;
    err text;
    state text;
BEGIN
    -- ran already (the event was queued again): nothing twice
    SELECT * INTO run FROM ventros.automation_runs x
     WHERE x.tenant_id = ev.tenant_id AND x.automation_id = rule.id AND x.event_id = ev.event_id;
    IF FOUND THEN
        RETURN 'ran ' || run.outcome;
    END IF;
    IF depth >= settings.max_depth THEN
        reason := format('cascade depth limit %s reached (event %s at depth %s, originating event %s)',
                         settings.max_depth, ev.event_type, depth, origin_event_id);
    ELSIF depth > 0 AND ventros.automation_ran_for_origin(ev.tenant_id, rule.id, origin_event_id) THEN
        reason := format('loop: rule already ran for the originating event %s', origin_event_id);
    ELSIF ctx_error IS NOT NULL THEN
        reason := 'conditions failed: ' || ctx_error;
    ELSE
        BEGIN
            holds := coalesce(ventros.automation_conditions_hold(rule.conditions, ctx, settings.timezone, at), false);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS err = MESSAGE_TEXT, state = RETURNED_SQLSTATE;
            reason := 'conditions failed: ' || state || ': ' || err;
        END;
    END IF;
    INSERT INTO ventros.automation_runs (tenant_id, automation_id, event_id, event_type, origin_event_id, depth, outcome,
                                         error, finished_at)
    VALUES (ev.tenant_id, rule.id, ev.event_id, ev.event_type, origin_event_id, depth,
            CASE WHEN reason IS NOT NULL THEN 'failed' WHEN holds THEN 'waiting' ELSE 'skipped' END,
            left(reason, 2000), CASE WHEN reason IS NOT NULL OR NOT holds THEN clock_timestamp() END)
    RETURNING * INTO run;
    IF reason IS NOT NULL THEN
        PERFORM ventros.automation_report(rule, 'failed', run);
        RETURN 'failed';
    ELSIF NOT holds THEN
        RETURN 'skipped';
    END IF;
    PERFORM ventros.automation_report(rule, 'triggered', run);
    RETURN ventros.automation_execute(rule, run, ctx, rule.actions, at);
END
$$;
COMMENT ON FUNCTION ventros.automation_run_rule(ventros.automations, ventros.outbox, jsonb, text, ventros.automation_settings, integer, uuid, timestamptz) IS
    'Runs one rule for one event once, each step in a subtransaction: refuses past the depth limit or a second run for the same originating event (failed, with the reason), evaluates its conditions (skipped; failed when they or the context cannot be evaluated), runs its actions (executed, waiting, failed); returns the outcome, or ''ran <outcome>'' when it ran for the event already';

CREATE OR REPLACE FUNCTION ventros.automation_mark_cascade(depth integer, origin_event_id uuid) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM set_config('ventros.automation_depth', coalesce(depth + 1, 0)::text, true),
            set_config('ventros.automation_origin', CASE WHEN depth IS NOT NULL THEN origin_event_id::text ELSE '' END, true);
END
$$;
COMMENT ON FUNCTION ventros.automation_mark_cascade(integer, uuid) IS
    'Marks the events emitted from now on in this transaction as a cascade one level below depth from an originating event (NULL: unmarks)';

CREATE OR REPLACE FUNCTION ventros.automation_run_event(q ventros.automation_queue, ev ventros.outbox, rules ventros.automations[],
                                             settings ventros.automation_settings, at timestamptz)
RETURNS uuid[]
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rule ventros.automations;
    ctx jsonb;
    run ventros.automation_runs;
    r record;
    skipped uuid[] := '{}';
BEGIN
    -- everything the rules emit (their actions', their own reports) is one level deeper
    PERFORM ventros.automation_mark_cascade(q.depth, q.origin_event_id);
    FOREACH rule IN ARRAY rules LOOP
        IF q.depth = 0 AND rule.conditions <> '[]' THEN
            -- the common case first: no cascade to check, conditions to evaluate
            ctx := coalesce(ctx, ventros.automation_context(ev, at));
            IF NOT coalesce(ventros.automation_conditions_hold(rule.conditions, ctx, settings.timezone, at), false) THEN
                skipped := skipped || rule.id;
                CONTINUE;
            END IF;
        END IF;
        run := ROW(q.tenant_id, gen_random_uuid(), rule.id, ev.event_id, ev.event_type, q.origin_event_id, q.depth,
                   'waiting', '[]'::jsonb, NULL, clock_timestamp(), NULL)::ventros.automation_runs;
        IF q.depth >= settings.max_depth THEN
            run.error := format('cascade depth limit %s reached (event %s at depth %s, originating event %s)',
                                settings.max_depth, ev.event_type, q.depth, q.origin_event_id);
        ELSIF q.depth > 0 AND ventros.automation_ran_for_origin(q.tenant_id, rule.id, q.origin_event_id) THEN
            run.error := format('loop: rule already ran for the originating event %s', q.origin_event_id);
        END IF;
        IF run.error IS NOT NULL THEN
            run.outcome := 'failed';
            run.finished_at := clock_timestamp();
            INSERT INTO ventros.automation_runs VALUES (run.*);
            PERFORM ventros.automation_report(rule, 'failed', run);
            CONTINUE;
        END IF;
        ctx := coalesce(ctx, ventros.automation_context(ev, at));
        IF q.depth > 0
           AND NOT coalesce(ventros.automation_conditions_hold(rule.conditions, ctx, settings.timezone, at), false) THEN
            skipped := skipped || rule.id;
            CONTINUE;
        END IF;
        PERFORM ventros.automation_report(rule, 'triggered', run);
        IF rule.actions @? '$[*] ? (@.type == "wait" || exists(@.delay_minutes))' THEN
            INSERT INTO ventros.automation_runs VALUES (run.*);
            r := ventros.automation_run_actions(rule, ctx, rule.actions, run.id, at);
            UPDATE ventros.automation_runs x
               SET outcome = CASE WHEN r.waiting THEN 'waiting' ELSE 'executed' END, actions_done = r.done,
                   finished_at = CASE WHEN NOT r.waiting THEN clock_timestamp() END
             WHERE x.tenant_id = run.tenant_id AND x.id = run.id RETURNING * INTO run;
        ELSE
            r := ventros.automation_run_actions(rule, ctx, rule.actions, run.id, at);
            run.outcome := 'executed';
            run.actions_done := r.done;
            run.finished_at := clock_timestamp();
            INSERT INTO ventros.automation_runs VALUES (run.*);
        END IF;
        IF run.outcome = 'executed' THEN
            PERFORM ventros.automation_report(rule, 'executed', run);
        END IF;
        EXIT WHEN rule.stop_processing;
    END LOOP;
    RETURN skipped;
END
$$;
COMMENT ON FUNCTION ventros.automation_run_event(ventros.automation_queue, ventros.outbox, ventros.automations[], ventros.automation_settings, timestamptz) IS
    'Runs the rules a queued event triggers (given in priority order), stopping after a rule with stop_processing that ran, without subtransactions: any error, a second run of an acting rule for the event too, propagates (the executor then runs the event with ventros.automation_run_event_carefully); returns the rules its conditions skipped, whose runs the caller writes';

CREATE OR REPLACE FUNCTION ventros.automation_run_event_carefully(q ventros.automation_queue, ev ventros.outbox,
                                                       rules ventros.automations[],
                                                       settings ventros.automation_settings, at timestamptz)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rule ventros.automations;
    ctx jsonb;
    ctx_error text;
    outcome text;
    n integer := 0;
    err text;
    state text;
BEGIN
    PERFORM ventros.automation_mark_cascade(q.depth, q.origin_event_id);
    BEGIN
        ctx := ventros.automation_context(ev, at);
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS err = MESSAGE_TEXT, state = RETURNED_SQLSTATE;
        ctx_error := state || ': ' || err;
    END;
    FOREACH rule IN ARRAY rules LOOP
        outcome := ventros.automation_run_rule(rule, ev, ctx, ctx_error, settings, q.depth, q.origin_event_id, at);
        n := n + 1;
        EXIT WHEN rule.stop_processing AND outcome IN ('executed', 'waiting', 'ran executed', 'ran waiting');
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.automation_run_event_carefully(ventros.automation_queue, ventros.outbox, ventros.automations[], ventros.automation_settings, timestamptz) IS
    'Runs the rules a queued event triggers as ventros.automation_run_event does, each rule in its own subtransactions, so a failing rule is its own failed run and a rule that ran for the event already is left alone; returns how many rules ran';

CREATE OR REPLACE FUNCTION ventros.automation_log_skipped(qs ventros.automation_queue[], evs ventros.outbox[], skipped_rule uuid[],
                                               skipped_of integer[], skipped_at timestamptz[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF cardinality(skipped_rule) > 0 THEN
        INSERT INTO ventros.automation_runs (tenant_id, automation_id, event_id, event_type, origin_event_id, depth, outcome,
                                             started_at, finished_at)
        SELECT bq.tenant_id, s.rule, bo.event_id, bo.event_type, bq.origin_event_id, bq.depth, 'skipped', s.at, s.at
          FROM unnest(skipped_rule, skipped_of, skipped_at) s(rule, i, at)
          JOIN unnest(qs) WITH ORDINALITY bq ON bq.ordinality = s.i
          JOIN unnest(evs) WITH ORDINALITY bo ON bo.ordinality = s.i
        ON CONFLICT ON CONSTRAINT automation_runs_once DO NOTHING;
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.automation_log_skipped(ventros.automation_queue[], ventros.outbox[], uuid[], integer[], timestamptz[]) IS
    'Writes the runs of automation rules skipped by their conditions for many events at once (a run already there stays)';

CREATE OR REPLACE FUNCTION ventros.automation_run_batch(qs ventros.automation_queue[], evs ventros.outbox[],
                                             rules ventros.automations[], of_event integer[], at_rule integer[],
                                             per_event boolean, at timestamptz)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    event_rules ventros.automations[];
    k integer := 1;
    j integer;
    skipped uuid[];
    skipped_rule uuid[] := '{}';
    skipped_of integer[] := '{}';
    skipped_at timestamptz[] := '{}';
    q ventros.automation_queue;
    ev ventros.outbox;
    settings ventros.automation_settings;
    tenant text;
BEGIN
    FOR i IN 1 .. cardinality(qs) LOOP
        q := qs[i];
        ev := evs[i];
        -- this event's rules (element by element: a slice of a big array
        -- would flatten all of it for every event)
        event_rules := '{}';
        j := k;
        WHILE j <= cardinality(of_event) AND of_event[j] = i LOOP
            event_rules := event_rules || rules[at_rule[j]];
            j := j + 1;
        END LOOP;
        IF tenant IS DISTINCT FROM q.tenant_id THEN
            tenant := q.tenant_id;
            PERFORM pg_catalog.set_config('ventros.tenant', tenant, true);
            settings := ventros.current_automation_settings();
        END IF;
        -- nothing when no rule wants it (any more), the tenant disabled its
        -- rules, or the event was pruned or erased meanwhile
        IF q.depth > 0 AND cardinality(skipped_rule) > 0 THEN
            -- the loop check of a cascade reads the runs: write those waiting
            PERFORM ventros.automation_log_skipped(qs, evs, skipped_rule, skipped_of, skipped_at);
            skipped_rule := '{}';
            skipped_of := '{}';
            skipped_at := '{}';
        END IF;
        IF j > k AND settings.enabled AND ev.event_id IS NOT NULL THEN
            IF NOT per_event THEN
                skipped := ventros.automation_run_event(q, ev, event_rules, settings, at);
            ELSE
                BEGIN
                    skipped := ventros.automation_run_event(q, ev, event_rules, settings, at);
                EXCEPTION WHEN OTHERS THEN
                    -- a rule failed: all this event did is rolled back; again, a subtransaction per rule
                    skipped := '{}';
                    BEGIN
                        PERFORM ventros.automation_run_event_carefully(q, ev, event_rules, settings, at);
                    EXCEPTION WHEN OTHERS THEN
                        RAISE WARNING 'automation executor: event % of tenant % failed: %', q.event_id, q.tenant_id, SQLERRM;
                    END;
                END;
            END IF;
            skipped_rule := skipped_rule || skipped;
            skipped_of := skipped_of || array_fill(i, ARRAY[cardinality(skipped)]);
            skipped_at := skipped_at || array_fill(clock_timestamp(), ARRAY[cardinality(skipped)]);
        END IF;
        k := j;
    END LOOP;
    PERFORM ventros.automation_log_skipped(qs, evs, skipped_rule, skipped_of, skipped_at);
END
$$;
COMMENT ON FUNCTION ventros.automation_run_batch(ventros.automation_queue[], ventros.outbox[], ventros.automations[], integer[], integer[], boolean, timestamptz) IS
    'Runs the rules of a batch of queued events in order, each tenant''s as that tenant: without subtransactions (any error propagates), or with one per event and a per-rule second pass for an event whose rules failed; writes the skipped runs';

CREATE OR REPLACE FUNCTION ventros.run_automations(batch_size integer DEFAULT 100, now timestamptz DEFAULT now())
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET ventros.tenant = ''
AS $$
DECLARE
    qs ventros.automation_queue[];
    evs ventros.outbox[];
    of_event integer[];
    at_rule integer[];
    rules ventros.automations[];
    w ventros.automation_waits;
    n integer := 0;
    saved_wait text := pg_catalog.current_setting('lock_timeout');
BEGIN
    PERFORM ventros.require_platform_admin();
    -- a tenant's open transaction holding a row a rule needs fails that
    -- rule's run (55P03), not the executor
    PERFORM pg_catalog.set_config('lock_timeout', '2s', true);
    SELECT coalesce(array_agg(c.x ORDER BY (c.x).seq), '{}'), coalesce(array_agg(o ORDER BY (c.x).seq), '{}')
      INTO qs, evs
      FROM (SELECT x FROM ventros.automation_queue x
             WHERE NOT EXISTS (SELECT 1 FROM ventros.automation_queue y
                                WHERE y.tenant_id = x.tenant_id AND y.aggregate_id = x.aggregate_id AND y.seq < x.seq)
             ORDER BY x.seq
             LIMIT batch_size
             FOR UPDATE SKIP LOCKED) c
      LEFT JOIN ventros.outbox o ON o.tenant_id = (c.x).tenant_id AND o.seq = (c.x).seq;
    -- the rules of every event of the batch: rules holds the enabled rules
    -- of the batch's tenants (each tenant's in priority order), one query
    -- matches them with the events: of_event[m] is the event of
    -- rules[at_rule[m]], each event's in priority order
    SELECT coalesce(array_agg(a ORDER BY a.tenant_id, a.priority DESC, a.created_at, a.id), '{}') INTO rules
      FROM ventros.automations a
     WHERE a.tenant_id IN (SELECT DISTINCT x.tenant_id FROM unnest(qs) x) AND a.enabled AND a.deleted_at IS NULL;
    SELECT coalesce(array_agg(bq.ordinality ORDER BY bq.ordinality, r.ordinality), '{}'),
           coalesce(array_agg(r.ordinality ORDER BY bq.ordinality, r.ordinality), '{}')
      INTO of_event, at_rule
      FROM unnest(qs) WITH ORDINALITY bq
      JOIN unnest(evs) WITH ORDINALITY bo ON bo.ordinality = bq.ordinality
      JOIN unnest(rules) WITH ORDINALITY r ON r.tenant_id = bq.tenant_id
     WHERE (ventros.automation_trigger_matches(r.trigger, bo.event_type) OR r.id = bq.automation_id)
       AND NOT (r.trigger = 'message.received' AND coalesce((bo.payload->>'from_me')::boolean, false));
    -- the whole batch in one subtransaction; if anything in it fails, it
    -- is rolled back and run again with a subtransaction per event
    BEGIN
        PERFORM ventros.automation_run_batch(qs, evs, rules, of_event, at_rule, false, run_automations.now);
    EXCEPTION WHEN OTHERS THEN
        PERFORM ventros.automation_run_batch(qs, evs, rules, of_event, at_rule, true, run_automations.now);
    END;
    DELETE FROM ventros.automation_queue x USING unnest(qs) u WHERE x.tenant_id = u.tenant_id AND x.seq = u.seq;
    n := cardinality(qs);
    PERFORM ventros.automation_mark_cascade(NULL, NULL);
    FOR w IN SELECT * FROM ventros.automation_waits x WHERE x.due_at <= run_automations.now
              ORDER BY x.due_at LIMIT batch_size FOR UPDATE SKIP LOCKED LOOP
        PERFORM pg_catalog.set_config('ventros.tenant', w.tenant_id, true);
        BEGIN
            PERFORM ventros.automation_resume(w, run_automations.now);
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'automation executor: wait of run % of tenant % failed: %', w.run_id, w.tenant_id, SQLERRM;
            DELETE FROM ventros.automation_waits x WHERE x.tenant_id = w.tenant_id AND x.run_id = w.run_id;
        END;
        n := n + 1;
    END LOOP;
    PERFORM pg_catalog.set_config('lock_timeout', saved_wait, true);
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.run_automations(integer, timestamptz) IS
    'The automation executor (src/automation_worker.c; platform admins): runs the rules of up to batch_size queued events (the first of each aggregate, SKIP LOCKED) and due waits, each tenant''s as that tenant, in this transaction; returns how many it took';

-- ---- set-based send
-- Issue 15: a broadcast sends each batch as one set (sql/90_channel_send.sql
-- send_messages; sql/77_broadcasts.sql).  send_message, journey_send,
-- start_or_continue_session, record_session_message, record_message_effects,
-- count_channel_message, queue_message_send, enqueue_provider_request and
-- enqueue_http_request become the one-row cases of set-based functions that
-- write one statement per table; the address helpers become PL/pgSQL (plans
-- kept across calls).  A batch reads its pending executions in
-- order off the index (created_at, id), not all of them sorted.

DROP INDEX ventros.broadcast_executions_pending;
CREATE INDEX broadcast_executions_pending ON ventros.broadcast_executions (tenant_id, broadcast_id, created_at, id)
    WHERE status = 'pending';

CREATE OR REPLACE FUNCTION ventros.plan_for_set(n integer) RETURNS void
LANGUAGE sql VOLATILE
AS $$
    SELECT CASE WHEN n > 1 THEN pg_catalog.set_config('plan_cache_mode', 'force_custom_plan', true) END;
    SELECT NULL::void
$$;
COMMENT ON FUNCTION ventros.plan_for_set(integer) IS
    'In a set-based function declared with SET plan_cache_mode = force_generic_plan: custom plans for a set of more than one row, the generic ones (planned once per session) for one row';

CREATE OR REPLACE FUNCTION ventros.start_or_continue_sessions(contact_ids uuid[], channel_id uuid, at timestamptz DEFAULT now())
RETURNS SETOF ventros.sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    tenant text := ventros.require_tenant();
    todo uuid[] := ARRAY(SELECT DISTINCT x FROM unnest(contact_ids) x ORDER BY 1);
    kept uuid[];
    started ventros.sessions[];
    s ventros.sessions;
    ch ventros.channels;
    timeout integer;
    type_id integer;
BEGIN
    PERFORM ventros.plan_for_set(cardinality(contact_ids));
    at := coalesce(at, now());
    FOR attempt IN 1..3 LOOP
        kept := '{}';
        FOR s IN SELECT * FROM ventros.sessions x
                 WHERE x.tenant_id = tenant AND x.contact_id = ANY (todo)
                   AND x.channel_id = start_or_continue_sessions.channel_id AND x.status IN ('active', 'snoozed')
                   AND x.deleted_at IS NULL
                 ORDER BY x.contact_id
                 FOR UPDATE
        LOOP
            IF s.status = 'snoozed' THEN
                s := ventros.wake_session(s, at);     -- a message wakes it
            END IF;
            IF at <= s.expires_at THEN
                kept := kept || s.contact_id;
                RETURN NEXT s;
            ELSE
                PERFORM ventros.finish_session(s, 'inactivity_timeout', s.expires_at);
            END IF;
        END LOOP;
        todo := ARRAY(SELECT d.x FROM (SELECT unnest(todo) EXCEPT SELECT unnest(kept)) d(x) ORDER BY 1);
        IF cardinality(todo) = 0 THEN
            RETURN;
        END IF;
        IF ch.id IS NULL THEN
            SELECT * INTO ch FROM ventros.channels c WHERE c.tenant_id = tenant AND c.id = start_or_continue_sessions.channel_id;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'channel % not found', channel_id USING ERRCODE = 'P0002';
            END IF;
            timeout := ventros.session_timeout_seconds(ch.id);
            type_id := ventros.channel_type_id(ch.type);
        END IF;
        WITH inserted AS (
            INSERT INTO ventros.sessions (project_id, contact_id, channel_id, channel_type_id, pipeline_id, started_at,
                                          last_activity_at, timeout_seconds, expires_at)
            SELECT ch.project_id, x, ch.id, type_id, ch.pipeline_id, at, at,
                   timeout, at + make_interval(secs => timeout)
            FROM unnest(todo) x ORDER BY x
            ON CONFLICT (tenant_id, contact_id, channel_id) WHERE status IN ('active', 'snoozed') AND deleted_at IS NULL
            DO NOTHING
            RETURNING *)
        SELECT coalesce(array_agg(i), '{}') INTO started FROM inserted i;
        RETURN QUERY SELECT * FROM unnest(started);
        -- Those another transaction started first: continue theirs next round.
        todo := ARRAY(SELECT d.x FROM (SELECT unnest(todo) EXCEPT SELECT i.contact_id FROM unnest(started) i) d(x) ORDER BY 1);
        IF cardinality(todo) = 0 THEN
            RETURN;
        END IF;
    END LOOP;
    RAISE EXCEPTION 'could not start or continue a session for contact % on channel %', todo[1], channel_id
        USING ERRCODE = '40001';
EXCEPTION WHEN foreign_key_violation THEN
    RAISE EXCEPTION 'contact % not found', CASE WHEN cardinality(contact_ids) = 1 THEN contact_ids[1]::text
                                                 ELSE 'of ' || cardinality(contact_ids) END
        USING ERRCODE = 'P0002';
END
$$;
COMMENT ON FUNCTION ventros.start_or_continue_sessions(uuid[], uuid, timestamptz) IS
    'The active session of each contact on a channel, started if there is none or it expired, woken if snoozed (race-free on sessions_one_active; set-based, locked in contact order); emits session.started, session.unsnoozed, and session.ended for an expired one';

CREATE OR REPLACE FUNCTION ventros.start_or_continue_session(contact_id uuid, channel_id uuid, at timestamptz DEFAULT now())
RETURNS ventros.sessions
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s FROM ventros.start_or_continue_sessions(ARRAY[contact_id], channel_id, at) s
$$;
COMMENT ON FUNCTION ventros.start_or_continue_session(uuid, uuid, timestamptz) IS
    'The active session of a contact on a channel, started if there is none or it expired, woken if snoozed (race-free on sessions_one_active); emits session.started, session.unsnoozed, and session.ended for an expired one';

CREATE OR REPLACE FUNCTION ventros.record_session_messages(sessions ventros.sessions[], from_me boolean[], ats timestamptz[],
                                                message_ids uuid[])
RETURNS SETOF ventros.sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    session_ids uuid[] := ARRAY(SELECT s.id FROM unnest(sessions) s);
    bad ventros.sessions;
    recorded ventros.sessions[];
BEGIN
    PERFORM ventros.plan_for_set(cardinality(sessions));
    IF (SELECT count(DISTINCT x) <> count(*) FROM unnest(session_ids) x) THEN
        RAISE EXCEPTION 'a session is recorded at most once per call' USING ERRCODE = '22023';
    END IF;
    SELECT s.* INTO bad FROM unnest(sessions) s WHERE s.status IS DISTINCT FROM 'active' LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'session % is %', bad.id, bad.status USING ERRCODE = 'VN002',
            DETAIL = 'Messages are recorded on active sessions only.';
    END IF;
    WITH m AS (SELECT * FROM unnest(session_ids, from_me, ats, message_ids) AS m(session_id, from_me, at, message_id)),
    updated AS (
        UPDATE ventros.sessions t
        SET message_count = t.message_count + 1,
            messages_from_contact = t.messages_from_contact + (NOT m.from_me)::integer,
            messages_from_agent = t.messages_from_agent + m.from_me::integer,
            last_activity_at = greatest(t.last_activity_at, m.at),
            expires_at = greatest(t.last_activity_at, m.at) + make_interval(secs => t.timeout_seconds),
            duration_seconds = extract(epoch FROM greatest(t.last_activity_at, m.at) - t.started_at)::integer,
            first_contact_message_at = CASE WHEN NOT m.from_me THEN coalesce(t.first_contact_message_at, m.at)
                                            ELSE t.first_contact_message_at END,
            first_agent_response_at = CASE WHEN m.from_me AND t.first_contact_message_at IS NOT NULL
                                           THEN coalesce(t.first_agent_response_at, m.at) ELSE t.first_agent_response_at END,
            agent_response_time_seconds = CASE WHEN m.from_me AND t.first_contact_message_at IS NOT NULL
                                                AND t.first_agent_response_at IS NULL
                                               THEN greatest(0, extract(epoch FROM m.at - t.first_contact_message_at))::integer
                                               ELSE t.agent_response_time_seconds END,
            contact_wait_time_seconds = CASE WHEN m.from_me AND t.first_contact_message_at IS NOT NULL
                                              AND t.first_agent_response_at IS NULL
                                             THEN greatest(0, extract(epoch FROM m.at - t.first_contact_message_at))::integer
                                             ELSE t.contact_wait_time_seconds END,
            version = t.version
        FROM m
        WHERE t.tenant_id = tenant AND t.id = m.session_id
        RETURNING t, m.message_id, m.from_me, m.at)
    SELECT coalesce(array_agg(u.t ORDER BY (u.t).id), '{}') INTO recorded
    FROM updated u
    CROSS JOIN LATERAL ventros.emit('session.message_recorded', 'session', (u.t).id,
                                    jsonb_build_object('message_id', u.message_id, 'from_me', u.from_me, 'at', u.at,
                                                       'message_count', (u.t).message_count), (u.t).version) e;
    RETURN QUERY SELECT * FROM unnest(recorded);
END
$$;
COMMENT ON FUNCTION ventros.record_session_messages(ventros.sessions[], boolean[], timestamptz[], uuid[]) IS
    'Records one message on each of a set of locked active sessions (internal; VN002 for one that is not active): counters, first response, last activity, expiry; emits session.message_recorded per session';

CREATE OR REPLACE FUNCTION ventros.record_session_message(s ventros.sessions, from_me boolean, at timestamptz, message_id uuid)
RETURNS ventros.sessions
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r FROM ventros.record_session_messages(ARRAY[s], ARRAY[from_me], ARRAY[at], ARRAY[message_id]) r
$$;
COMMENT ON FUNCTION ventros.record_session_message(ventros.sessions, boolean, timestamptz, uuid) IS
    'Records a message on a locked active session (internal): counters, first response, last activity, expiry; emits session.message_recorded';

CREATE OR REPLACE FUNCTION ventros.count_channel_messages(channel_id uuid, received bigint, sent bigint, at timestamptz)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
BEGIN
    -- only a live channel of the acting tenant: a count row for anything
    -- else could never be folded
    PERFORM FROM ventros.channels ch
     WHERE ch.tenant_id = tenant AND ch.id = count_channel_messages.channel_id AND ch.deleted_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'channel % not found', count_channel_messages.channel_id USING ERRCODE = 'P0002';
    END IF;
    IF received < 0 OR sent < 0 THEN
        RAISE EXCEPTION 'message counts are not negative' USING ERRCODE = '22023';
    END IF;
    INSERT INTO ventros.channel_message_counts AS c
        (tenant_id, channel_id, slot, messages_received, messages_sent, last_message_at)
    VALUES (tenant, count_channel_messages.channel_id, ventros.stats_slot(), received, sent, at)
    ON CONFLICT ON CONSTRAINT channel_message_counts_pkey DO UPDATE
    SET messages_received = c.messages_received + EXCLUDED.messages_received,
        messages_sent = c.messages_sent + EXCLUDED.messages_sent,
        last_message_at = greatest(c.last_message_at, EXCLUDED.last_message_at);
END
$$;
COMMENT ON FUNCTION ventros.count_channel_messages(uuid, bigint, bigint, timestamptz) IS
    'Counts messages received and sent (last at an instant) on a live channel of the acting tenant (P0002 for any other), in the channel''s slot rows (see channel_message_counts)';

CREATE OR REPLACE FUNCTION ventros.count_channel_message(channel_id uuid, from_me boolean, at timestamptz)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.count_channel_messages(channel_id, (NOT from_me)::integer, from_me::integer, at) $$;
COMMENT ON FUNCTION ventros.count_channel_message(uuid, boolean, timestamptz) IS
    'Counts a message on a live channel of the acting tenant (P0002 for any other), in the channel''s slot rows (see channel_message_counts)';

CREATE OR REPLACE FUNCTION ventros.record_messages_effects(ms ventros.messages[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    counted record;
    sessions ventros.sessions[];
    from_me boolean[];
    ats timestamptz[];
    ids uuid[];
BEGIN
    PERFORM ventros.plan_for_set(cardinality(ms));
    SELECT array_agg(s ORDER BY s.id), array_agg(m.from_me ORDER BY s.id), array_agg(m."timestamp" ORDER BY s.id),
           array_agg(m.id ORDER BY s.id)
    INTO sessions, from_me, ats, ids
    FROM unnest(ms) m JOIN ventros.sessions s ON s.tenant_id = m.tenant_id AND s.id = m.session_id;
    IF sessions IS NOT NULL THEN
        PERFORM ventros.record_session_messages(sessions, from_me, ats, ids);
    END IF;
    -- Interaction times are kept to the minute: a burst of messages writes
    -- the contact once (the session and the message hold the exact times).
    UPDATE ventros.contacts c
    SET first_interaction_at = coalesce(c.first_interaction_at, m.first_at),
        last_interaction_at = greatest(c.last_interaction_at, m.last_at), version = c.version
    FROM (SELECT m.tenant_id, m.contact_id, min(m."timestamp") AS first_at, max(m."timestamp") AS last_at
          FROM unnest(ms) m GROUP BY 1, 2) m
    WHERE c.tenant_id = m.tenant_id AND c.id = m.contact_id
      AND (c.last_interaction_at IS NULL OR c.last_interaction_at < m.last_at - interval '1 minute'
           OR c.first_interaction_at > m.first_at);
    FOR counted IN SELECT m.channel_id, count(*) FILTER (WHERE NOT m.from_me) AS received,
                          count(*) FILTER (WHERE m.from_me) AS sent, max(m."timestamp") AS last_at
                   FROM unnest(ms) m GROUP BY 1 ORDER BY 1
    LOOP
        PERFORM ventros.count_channel_messages(counted.channel_id, counted.received, counted.sent, counted.last_at);
    END LOOP;
    UPDATE ventros.chats c SET last_message_at = greatest(c.last_message_at, m.last_at), version = c.version
    FROM (SELECT m.tenant_id, m.chat_id, max(m."timestamp") AS last_at FROM unnest(ms) m
          WHERE m.chat_id IS NOT NULL GROUP BY 1, 2) m
    WHERE c.tenant_id = m.tenant_id AND c.id = m.chat_id;
END
$$;
COMMENT ON FUNCTION ventros.record_messages_effects(ventros.messages[]) IS
    'Records new messages on their sessions (locked by the caller, one message each), contacts (interaction times), channels (counters) and chats, one statement per table (internal)';

CREATE OR REPLACE FUNCTION ventros.record_message_effects(m ventros.messages, s ventros.sessions)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.record_messages_effects(ARRAY[m]) $$;
COMMENT ON FUNCTION ventros.record_message_effects(ventros.messages, ventros.sessions) IS
    'Records a new message on its session, contact (interaction times), channel (counters) and chat (internal)';

CREATE TYPE ventros.message_send AS (
    contact_id   uuid,
    message      ventros.messages,
    request_id   uuid,
    error_code   text,
    error        text,
    error_detail text,
    error_hint   text
);
COMMENT ON TYPE ventros.message_send IS
    'One send of a set (ventros.send_messages, ventros.queue_message_sends): the contact, its queued message and provider request, or the refusal (SQLSTATE, message, detail, hint)';

CREATE OR REPLACE FUNCTION ventros.raise_refusal(r ventros.message_send) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF r.error_code IS NULL THEN
        RETURN;
    ELSIF r.error_detail IS NOT NULL AND r.error_hint IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = r.error_code, MESSAGE = r.error, DETAIL = r.error_detail, HINT = r.error_hint;
    ELSIF r.error_detail IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = r.error_code, MESSAGE = r.error, DETAIL = r.error_detail;
    ELSIF r.error_hint IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = r.error_code, MESSAGE = r.error, HINT = r.error_hint;
    ELSE
        RAISE EXCEPTION USING ERRCODE = r.error_code, MESSAGE = r.error;
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.raise_refusal(ventros.message_send) IS
    'Raises the refusal of a send (its SQLSTATE, message, detail and hint); nothing when it was not refused';

CREATE OR REPLACE FUNCTION ventros.send_message(
    channel_id   uuid,
    contact_id   uuid,
    text         text    DEFAULT NULL,
    agent_id     uuid    DEFAULT NULL,
    source       text    DEFAULT 'manual',
    content_type text    DEFAULT 'text',
    media_url    text    DEFAULT NULL,
    media_mimetype text  DEFAULT NULL,
    reply_to_id  uuid    DEFAULT NULL,
    chat_id      uuid    DEFAULT NULL,
    metadata     jsonb   DEFAULT NULL,
    template_name       text  DEFAULT NULL,
    template_language   text  DEFAULT NULL,
    template_components jsonb DEFAULT NULL)
RETURNS ventros.messages
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ventros.message_send;
BEGIN
    SELECT * INTO r FROM ventros.send_messages(channel_id, ARRAY[contact_id], text, agent_id, source, content_type,
                                               media_url, media_mimetype, reply_to_id, chat_id, metadata,
                                               template_name, template_language, template_components) x;
    PERFORM ventros.raise_refusal(r);
    RETURN r.message;
END
$$;
COMMENT ON FUNCTION ventros.send_message(uuid, uuid, text, uuid, text, text, text, text, uuid, uuid, jsonb, text, text, jsonb) IS
    'Outbound message, queued for the channel with its provider request (message.send, when the channel type is declared and configured): refuses opted-out contacts (VN010), virtual or inactive agents (22023), free-form WhatsApp Cloud messages outside the 24-hour window (22023) and templates that do not match their definition (22023, P0002); automated sources send as their system agent; emits message.created and session.message_recorded';

CREATE OR REPLACE FUNCTION ventros.enqueue_http_requests(
    urls text[],
    methods text[],
    headers jsonb[],
    bodies bytea[],
    correlation_ids uuid[],
    purpose text DEFAULT 'generic',
    max_attempts integer DEFAULT NULL,
    timeout_ms integer DEFAULT NULL,
    not_before timestamptz DEFAULT NULL,
    retry_policy text DEFAULT 'transient',
    max_response_size integer DEFAULT NULL)
RETURNS TABLE (id uuid, correlation_id uuid)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    bad text;
BEGIN
    PERFORM ventros.plan_for_set(cardinality(urls));
    IF cardinality(urls) IS DISTINCT FROM cardinality(methods) OR cardinality(urls) IS DISTINCT FROM cardinality(headers)
       OR cardinality(urls) IS DISTINCT FROM cardinality(bodies)
       OR cardinality(urls) IS DISTINCT FROM cardinality(correlation_ids) THEN
        RAISE EXCEPTION 'urls, methods, headers, bodies and correlation_ids must have one element per call'
            USING ERRCODE = '22023';
    END IF;
    SELECT coalesce(quote_literal(left(u, 200)), 'NULL') INTO bad FROM unnest(urls) u
    WHERE u IS NULL OR u !~* '^https?://[^/?#]' LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'url must be an http or https URL'
            USING ERRCODE = '22023', DETAIL = format('Got %s.', bad);
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(headers) x, jsonb_each(x) h
                WHERE jsonb_typeof(h.value) <> 'string' OR h.key !~ '^[!#$%&''*+.^_`|~0-9A-Za-z-]+$'
                   OR (h.value #>> '{}') ~ '[\r\n]') THEN
        RAISE EXCEPTION 'headers must be an object of header names to string values'
            USING ERRCODE = '22023',
                  DETAIL = 'Names are HTTP tokens; values are strings without line breaks.';
    END IF;
    IF retry_policy IS NOT NULL AND retry_policy NOT IN ('transient', 'any')
       AND NOT EXISTS (SELECT 1 FROM ventros.http_retry_classifiers c WHERE c.policy = retry_policy) THEN
        RAISE EXCEPTION 'unknown retry policy "%"', left(retry_policy, 64) USING ERRCODE = '22023',
            HINT = 'Use transient, any, or a policy registered with ventros.register_http_retry_classifier.';
    END IF;
    RETURN QUERY
    INSERT INTO ventros.http_requests AS r
        (tenant_id, method, url, headers, body, purpose, correlation_id, retry_policy, max_attempts,
         timeout_ms, next_attempt_at, max_response_size)
    SELECT tenant, upper(coalesce(c.method, 'POST')), c.url, coalesce(c.headers, '{}'), c.body,
           coalesce(enqueue_http_requests.purpose, 'generic'), c.correlation_id,
           coalesce(enqueue_http_requests.retry_policy, 'transient'),
           coalesce(enqueue_http_requests.max_attempts, current_setting('ventros.http_max_attempts')::integer),
           enqueue_http_requests.timeout_ms, coalesce(not_before, now()), enqueue_http_requests.max_response_size
    FROM unnest(urls, methods, headers, bodies, correlation_ids) AS c(url, method, headers, body, correlation_id)
    RETURNING r.id, r.correlation_id;
END
$$;
COMMENT ON FUNCTION ventros.enqueue_http_requests(text[], text[], jsonb[], bytea[], uuid[], text, integer, integer, timestamptz, text, integer) IS
    'Queues a set of outbound HTTP calls for the acting tenant in one INSERT (one element per call in each array; the other arguments shared); the dispatcher sends them after commit. Returns each id with its correlation id';

CREATE OR REPLACE FUNCTION ventros.enqueue_http_request(
    url text,
    method text DEFAULT 'POST',
    headers jsonb DEFAULT '{}',
    body bytea DEFAULT NULL,
    purpose text DEFAULT 'generic',
    correlation_id uuid DEFAULT NULL,
    max_attempts integer DEFAULT NULL,
    timeout_ms integer DEFAULT NULL,
    not_before timestamptz DEFAULT NULL,
    retry_policy text DEFAULT 'transient',
    max_response_size integer DEFAULT NULL)
RETURNS uuid
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.id FROM ventros.enqueue_http_requests(ARRAY[url], ARRAY[method], ARRAY[headers], ARRAY[body], ARRAY[correlation_id],
                                                   purpose, max_attempts, timeout_ms, not_before, retry_policy,
                                                   max_response_size) r
$$;
COMMENT ON FUNCTION ventros.enqueue_http_request(text, text, jsonb, bytea, text, uuid, integer, integer, timestamptz, text, integer) IS
    'Queues an outbound HTTP call for the acting tenant; the dispatcher sends it after commit. Returns its id';

CREATE OR REPLACE FUNCTION ventros.contact_identity_of(contact_id uuid, types text[]) RETURNS ventros.contact_identities
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.contact_identities;
BEGIN
    SELECT i.* INTO result FROM ventros.contact_identities i
     WHERE i.tenant_id = ventros.require_tenant() AND i.contact_id = contact_identity_of.contact_id
       AND i.identity_type = ANY (types) AND i.deleted_at IS NULL
     ORDER BY array_position(types, i.identity_type), i.created_at, i.id
     LIMIT 1;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.contact_identity_of(uuid, text[]) IS
    'A contact''s first live identity among the given types, preferring earlier types, then older identities';

CREATE OR REPLACE FUNCTION ventros.reply_provider_id(m ventros.messages) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF m.reply_to_id IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN (SELECT r.channel_message_id FROM ventros.messages r
             WHERE r.tenant_id = m.tenant_id AND r.id = m.reply_to_id AND r.channel_id = m.channel_id);
END
$$;
COMMENT ON FUNCTION ventros.reply_provider_id(ventros.messages) IS
    'The provider message id of the message m replies to, when it is on the same channel';

CREATE OR REPLACE FUNCTION ventros.enqueue_provider_requests(reqs jsonb[], purpose text, correlation_ids uuid[], retry_policy text,
                                                  max_response_size integer DEFAULT NULL)
RETURNS TABLE (id uuid, correlation_id uuid)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY
    SELECT r.id, r.correlation_id
    FROM ventros.enqueue_http_requests(
             ARRAY(SELECT q->>'url' FROM unnest(reqs) WITH ORDINALITY x(q, n) ORDER BY n),
             ARRAY(SELECT coalesce(q->>'method', 'POST') FROM unnest(reqs) WITH ORDINALITY x(q, n) ORDER BY n),
             ARRAY(SELECT coalesce(q->'headers', '{}') FROM unnest(reqs) WITH ORDINALITY x(q, n) ORDER BY n),
             ARRAY(SELECT CASE WHEN q->'body' IS NOT NULL AND q->'body' <> 'null'::jsonb
                               THEN convert_to((q->'body')::text, 'UTF8') END
                   FROM unnest(reqs) WITH ORDINALITY x(q, n) ORDER BY n),
             correlation_ids, purpose, retry_policy => enqueue_provider_requests.retry_policy,
             max_response_size => enqueue_provider_requests.max_response_size) r;
END
$$;
COMMENT ON FUNCTION ventros.enqueue_provider_requests(jsonb[], text, uuid[], text, integer) IS
    'Queues requests built by a provider function ({method, url, headers, body}) for the acting tenant, in one INSERT; returns each id with its correlation id';

CREATE OR REPLACE FUNCTION ventros.enqueue_provider_request(req jsonb, purpose text, correlation_id uuid, retry_policy text,
                                                 max_response_size integer DEFAULT NULL)
RETURNS uuid
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.id FROM ventros.enqueue_provider_requests(ARRAY[req], purpose, ARRAY[correlation_id], retry_policy,
                                                       max_response_size) r
$$;
COMMENT ON FUNCTION ventros.enqueue_provider_request(jsonb, text, uuid, text, integer) IS
    'Queues a request built by a provider function ({method, url, headers, body}) for the acting tenant';

CREATE OR REPLACE FUNCTION ventros.message_send_request(ch ventros.channels, p ventros.channel_providers, m ventros.messages)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    req jsonb;
BEGIN
    IF p.channel_type IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT %s($1, $2)', p.build_send::regproc) INTO req USING ch, m;
    IF req IS NULL THEN
        RETURN NULL;    -- the channel is not configured for sending
    END IF;
    PERFORM ventros.check_message_window(m, p.window_hours);
    RETURN req;
END
$$;
COMMENT ON FUNCTION ventros.message_send_request(ventros.channels, ventros.channel_providers, ventros.messages) IS
    'The provider request ({method, url, headers, body}) sending an outbound message on a channel, NULL when its type is not declared or not configured; 22023 when the contact has no address on the provider, or outside the WhatsApp 24-hour window for a free-form message';

CREATE OR REPLACE FUNCTION ventros.queue_message_sends(message_ids uuid[]) RETURNS SETOF ventros.message_send
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    ms ventros.messages[];
    built ventros.message_send[];
    requests jsonb;
    queued jsonb := '{}';
    policy text;
BEGIN
    PERFORM ventros.plan_for_set(cardinality(message_ids));
    -- Locked in id order: two calls for one message queue one request (the second sees the first's).
    WITH locked AS (SELECT x.* FROM ventros.messages x
                    WHERE x.tenant_id = tenant AND x.id = ANY (message_ids) AND x.deleted_at IS NULL
                    ORDER BY x.id FOR UPDATE)
    SELECT coalesce(array_agg(l ORDER BY l.id), '{}') INTO ms FROM locked l;
    RETURN QUERY
        SELECT NULL::uuid, NULL::ventros.messages, NULL::uuid, 'P0002', format('message %s not found', coalesce(d.x::text, '<NULL>')),
               NULL::text, NULL::text
        FROM (SELECT unnest(message_ids) EXCEPT SELECT m.id FROM unnest(ms) m) d(x);
    -- One request per queued outbound message that has none yet, on a
    -- channel whose type is declared; the others are answered without one.
    WITH todo AS (
        SELECT m, ch, p,
               m.from_me AND m.status = 'queued' AND p.channel_type IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM ventros.http_requests r
                               WHERE r.tenant_id = tenant AND r.correlation_id = m.id AND r.purpose = 'message.send') AS due
        FROM unnest(ms) m
        JOIN ventros.channels ch ON ch.tenant_id = tenant AND ch.id = m.channel_id
        LEFT JOIN ventros.channel_providers p ON p.channel_type = ch.type)
    SELECT coalesce(array_agg(ROW((t.m).contact_id, t.m, NULL, r.error_code, r.error, r.error_detail, r.error_hint)::ventros.message_send
                              ORDER BY (t.m).id), '{}'),
           coalesce(jsonb_object_agg((t.m).id, jsonb_build_object('request', r.request, 'retry_policy', (t.p).retry_policy))
                        FILTER (WHERE r.request IS NOT NULL), '{}')
    INTO built, requests
    FROM todo t
    LEFT JOIN LATERAL (SELECT * FROM ventros.try_message_send_request(t.ch, t.p, t.m) WHERE t.due) r ON true;
    -- The requests, one INSERT per retry policy (one per channel type).
    FOR policy IN SELECT DISTINCT q.value->>'retry_policy' FROM jsonb_each(requests) q LOOP
        SELECT coalesce(jsonb_object_agg(e.correlation_id, e.id), '{}') || queued INTO queued
        FROM ventros.enqueue_provider_requests(
                 ARRAY(SELECT q.value->'request' FROM jsonb_each(requests) q WHERE q.value->>'retry_policy' = policy ORDER BY q.key),
                 'message.send',
                 ARRAY(SELECT q.key::uuid FROM jsonb_each(requests) q WHERE q.value->>'retry_policy' = policy ORDER BY q.key),
                 policy) e;
    END LOOP;
    RETURN QUERY
        SELECT b.contact_id, b.message, (queued->>((b.message).id::text))::uuid, b.error_code, b.error, b.error_detail,
               b.error_hint
        FROM unnest(built) b;
END
$$;
COMMENT ON FUNCTION ventros.queue_message_sends(uuid[]) IS
    'Queues the provider requests (purpose message.send) of queued outbound messages, once each; returns one row per message: its request (NULL when its channel type is not declared or not configured, or it has one already), or its refusal (P0002 for a message not found; 22023 for a contact without an address on the provider, or outside the WhatsApp 24-hour window for a free-form message)';

CREATE OR REPLACE FUNCTION ventros.try_message_send_request(ch ventros.channels, p ventros.channel_providers, m ventros.messages,
                                                 OUT request jsonb, OUT error_code text, OUT error text,
                                                 OUT error_detail text, OUT error_hint text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    request := ventros.message_send_request(ch, p, m);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_code = RETURNED_SQLSTATE, error = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    error_detail := nullif(error_detail, '');
    error_hint := nullif(error_hint, '');
END
$$;
COMMENT ON FUNCTION ventros.try_message_send_request(ventros.channels, ventros.channel_providers, ventros.messages) IS
    'ventros.message_send_request, its error returned (SQLSTATE, message, detail, hint) instead of raised';

CREATE OR REPLACE FUNCTION ventros.queue_message_send(message_id uuid) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ventros.message_send;
BEGIN
    SELECT * INTO r FROM ventros.queue_message_sends(ARRAY[message_id]) x;
    PERFORM ventros.raise_refusal(r);
    RETURN r.request_id;
END
$$;
COMMENT ON FUNCTION ventros.queue_message_send(uuid) IS
    'Queues the provider request (purpose message.send) of a queued outbound message, once; NULL when its channel type is not declared or not configured; 22023 outside the WhatsApp 24-hour window for a free-form message';

CREATE OR REPLACE FUNCTION ventros.consent_refusal(contact_id uuid, channel_id uuid) RETURNS ventros.message_send
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ventros.message_send;
BEGIN
    r.contact_id := contact_id;
    PERFORM ventros.require_consent(contact_id, channel_id);
    RETURN r;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS r.error_code = RETURNED_SQLSTATE, r.error = MESSAGE_TEXT,
                            r.error_detail = PG_EXCEPTION_DETAIL, r.error_hint = PG_EXCEPTION_HINT;
    r.error_detail := nullif(r.error_detail, '');
    r.error_hint := nullif(r.error_hint, '');
    RETURN r;
END
$$;
COMMENT ON FUNCTION ventros.consent_refusal(uuid, uuid) IS
    'The refusal of require_consent (VN010) for a contact on a channel, as a ventros.message_send row (error_code NULL when it may be messaged)';

CREATE OR REPLACE FUNCTION ventros.send_messages(
    channel_id   uuid,
    contact_ids  uuid[],
    text         text    DEFAULT NULL,
    agent_id     uuid    DEFAULT NULL,
    source       text    DEFAULT 'manual',
    content_type text    DEFAULT 'text',
    media_url    text    DEFAULT NULL,
    media_mimetype text  DEFAULT NULL,
    reply_to_id  uuid    DEFAULT NULL,
    chat_id      uuid    DEFAULT NULL,
    metadata     jsonb   DEFAULT NULL,
    template_name       text  DEFAULT NULL,
    template_language   text  DEFAULT NULL,
    template_components jsonb DEFAULT NULL)
RETURNS SETOF ventros.message_send
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    ch ventros.channels;
    sender ventros.agents;
    tpl jsonb;
    body text;
    known uuid[];
    ready uuid[];
    sessions ventros.sessions[];
    sent ventros.messages[];
    queued ventros.message_send[];
    refused ventros.message_send[];
    state text;
BEGIN
    PERFORM ventros.plan_for_set(cardinality(contact_ids));
    IF source IS NULL OR source NOT IN ('manual', 'broadcast', 'sequence', 'trigger', 'bot', 'system', 'webhook',
                                        'scheduled', 'test') THEN
        RAISE EXCEPTION 'unknown message source "%"', left(source, 32) USING ERRCODE = '22023';
    END IF;
    SELECT * INTO ch FROM ventros.channels c WHERE c.tenant_id = tenant AND c.id = send_messages.channel_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'channel % not found', channel_id USING ERRCODE = 'P0002';
    END IF;
    -- The contacts, share-locked in id order: a concurrent opt-out waits for this send, or this send sees it.
    WITH locked AS (SELECT c.id FROM ventros.contacts c WHERE c.tenant_id = tenant AND c.id = ANY (contact_ids)
                    ORDER BY c.id FOR SHARE)
    SELECT coalesce(array_agg(l.id ORDER BY l.id), '{}') INTO known FROM locked l;
    RETURN QUERY
        SELECT u.x, NULL::ventros.messages, NULL::uuid, 'P0002', format('contact %s not found', coalesce(u.x::text, '<NULL>')),
               NULL::text, NULL::text
        FROM (SELECT unnest(contact_ids) EXCEPT SELECT unnest(known)) u(x);
    -- Consent: those who opted out are refused (VN010).
    refused := ARRAY(SELECT ventros.consent_refusal(x, ch.id) FROM unnest(known) x
                     WHERE NOT ventros.may_message(x, ch.id) ORDER BY x);
    RETURN QUERY SELECT * FROM unnest(refused);
    ready := ARRAY(SELECT d.x FROM (SELECT unnest(known) EXCEPT SELECT r.contact_id FROM unnest(refused) r) d(x) ORDER BY 1);
    IF cardinality(ready) = 0 THEN
        RETURN;
    END IF;
    agent_id := coalesce(agent_id, CASE WHEN source NOT IN ('manual', 'bot') THEN ventros.system_agent_id(source) END);
    IF agent_id IS NULL THEN
        RAISE EXCEPTION 'an outbound message needs its sending agent' USING ERRCODE = '23502',
            HINT = 'Pass agent_id, or a source such as broadcast whose system agent sends.';
    END IF;
    SELECT * INTO sender FROM ventros.agents a WHERE a.tenant_id = tenant AND a.id = send_messages.agent_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'agent % not found', agent_id USING ERRCODE = 'P0002';
    END IF;
    IF sender.type = 'virtual' OR NOT sender.active THEN
        RAISE EXCEPTION 'agent % cannot send messages', agent_id USING ERRCODE = '22023',
            DETAIL = 'Virtual and inactive agents never send.';
    END IF;
    IF template_name IS NOT NULL THEN
        -- A WhatsApp template (sql/91_whatsapp_templates.sql): validated now,
        -- kept in metadata.template, its body text as the message text.
        IF ch.type NOT IN ('whatsapp', 'whatsapp_business') THEN
            RAISE EXCEPTION 'templates are sent on WhatsApp Cloud channels only' USING ERRCODE = '22023';
        END IF;
        tpl := ventros.prepare_template_message(ch.id, template_name, template_language, template_components);
        content_type := 'text';
        text := coalesce(text, tpl->>'text');
        metadata := coalesce(metadata, '{}') || jsonb_build_object('template', tpl->'template');
    END IF;
    body := ventros.check_length(text, 4096, 'message text');
    -- Sessions, messages, effects and requests for the contacts still ready.
    -- A contact whose request cannot be built (no address on the provider,
    -- the window closed) is refused: the round is undone (a subtransaction)
    -- and done again without it, so nothing stays written for it.
    FOR round IN 1..3 LOOP
        BEGIN
            sessions := ARRAY(SELECT s FROM ventros.start_or_continue_sessions(ready, ch.id, now()) s);
            WITH inserted AS (
                INSERT INTO ventros.messages ("timestamp", project_id, channel_id, channel_type_id, chat_id, session_id,
                                              contact_id, from_me, content_type, text, media_url, media_mimetype, reply_to_id,
                                              status, agent_id, source, metadata)
                SELECT now(), ch.project_id, ch.id, s.channel_type_id, send_messages.chat_id, s.id, s.contact_id, true,
                       coalesce(send_messages.content_type, 'text'), body, send_messages.media_url,
                       send_messages.media_mimetype, send_messages.reply_to_id, 'queued', sender.id, send_messages.source,
                       send_messages.metadata
                FROM unnest(sessions) s ORDER BY s.contact_id
                RETURNING *)
            SELECT coalesce(array_agg(i ORDER BY i.contact_id), '{}') INTO sent FROM inserted i;
            PERFORM ventros.record_messages_effects(sent);
            -- The provider requests, in this transaction (queue_message_sends).
            queued := ARRAY(SELECT q FROM ventros.queue_message_sends(ARRAY(SELECT m.id FROM unnest(sent) m)) q);
            refused := ARRAY(SELECT q FROM unnest(queued) q WHERE q.error_code IS NOT NULL);
            IF cardinality(refused) > 0 THEN
                RAISE EXCEPTION 'ventros.send_messages: undo the round of refused contacts' USING ERRCODE = 'P0001';
            END IF;
            RETURN QUERY SELECT * FROM unnest(queued);
            RETURN;
        EXCEPTION
            WHEN raise_exception THEN
                GET STACKED DIAGNOSTICS state = MESSAGE_TEXT;
                IF state <> 'ventros.send_messages: undo the round of refused contacts' THEN
                    RAISE;
                END IF;
            WHEN check_violation THEN
                RAISE EXCEPTION 'invalid outbound message: %', SQLERRM USING ERRCODE = '23514';
        END;
        RETURN QUERY SELECT r.contact_id, NULL::ventros.messages, NULL::uuid, r.error_code, r.error, r.error_detail,
                            r.error_hint
                     FROM unnest(refused) r;
        ready := ARRAY(SELECT d.x FROM (SELECT unnest(ready) EXCEPT SELECT r.contact_id FROM unnest(refused) r) d(x)
                       ORDER BY 1);
        IF cardinality(ready) = 0 THEN
            RETURN;
        END IF;
    END LOOP;
    RAISE EXCEPTION 'could not send to % contacts on channel %', cardinality(ready), channel_id USING ERRCODE = '40001';
END
$$;
COMMENT ON FUNCTION ventros.send_messages(uuid, uuid[], text, uuid, text, text, text, text, uuid, uuid, jsonb, text, text, jsonb) IS
    'One outbound message to each of a set of contacts, queued with its provider request (message.send), one statement per table for the set: a contact not found (P0002), opted out (VN010), without an address on the provider or outside the WhatsApp 24-hour window (22023) is refused alone (a row with its error; nothing written for it); the source, channel, agent (virtual or inactive: 22023) and template are checked once and refuse the call; automated sources send as their system agent; emits message.created and session.message_recorded per message (and session.started for a new session)';

CREATE OR REPLACE FUNCTION ventros.waha_chat_id(contact_id uuid) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    i ventros.contact_identities := ventros.contact_identity_of(contact_id, '{whatsapp,whatsapp_lid}');
BEGIN
    IF i.id IS NOT NULL THEN
        RETURN CASE WHEN i.identity_type = 'whatsapp' THEN split_part(i.value, '@', 1) || '@c.us' ELSE i.value END;
    END IF;
    RETURN (SELECT ltrim(c.phone, '+') || '@c.us' FROM ventros.contacts c
             WHERE c.tenant_id = ventros.require_tenant() AND c.id = waha_chat_id.contact_id AND c.phone IS NOT NULL);
END
$$;
COMMENT ON FUNCTION ventros.waha_chat_id(uuid) IS
    'WAHA chatId of a contact: its WhatsApp id (<digits>@c.us) first, else its @lid id, else <phone digits>@c.us';

CREATE OR REPLACE FUNCTION ventros.journey_sends(channel_id uuid, contact_ids uuid[], template jsonb, source text, metadata jsonb)
RETURNS SETOF ventros.message_send
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY
        SELECT * FROM ventros.send_messages(channel_id, contact_ids, text => template->>'content', source => source,
                                            metadata => metadata,
                                            template_name => CASE WHEN template->>'content' IS NULL
                                                                  THEN coalesce(template->>'template_name', template->>'template_id') END,
                                            template_language => template->>'language',
                                            template_components => template->'components');
END
$$;
COMMENT ON FUNCTION ventros.journey_sends(uuid, uuid[], jsonb, text, jsonb) IS
    'Sends a step''s message template (content, or template_name/template_id with language and components) to a set of contacts through send_messages; a refused contact is a row with its error';

CREATE OR REPLACE FUNCTION ventros.journey_send(channel_id uuid, contact_id uuid, template jsonb, source text, metadata jsonb)
RETURNS ventros.messages
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ventros.message_send;
BEGIN
    SELECT * INTO r FROM ventros.journey_sends(channel_id, ARRAY[contact_id], template, source, metadata) x;
    PERFORM ventros.raise_refusal(r);
    RETURN r.message;
END
$$;
COMMENT ON FUNCTION ventros.journey_send(uuid, uuid, jsonb, text, jsonb) IS
    'Sends a step''s message template (content, or template_name/template_id with language and components) to a contact through send_message';

CREATE OR REPLACE FUNCTION ventros.send_broadcast_executions(b ventros.broadcasts, es ventros.broadcast_executions[], metadata jsonb)
RETURNS SETOF ventros.broadcast_executions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    meta jsonb := jsonb_build_object('broadcast_id', b.id, 'template', b.message_template) || coalesce(metadata, '{}');
    ids uuid[] := ARRAY(SELECT e.id FROM unnest(es) e WHERE e.status = 'pending');
    contacts uuid[] := ARRAY(SELECT e.contact_id FROM unnest(es) e WHERE e.status = 'pending' ORDER BY e.contact_id);
    sends ventros.message_send[];
    one ventros.message_send[];
    contact uuid;
    failure text;
    outcome jsonb;
BEGIN
    PERFORM ventros.plan_for_set(cardinality(es));
    IF cardinality(ids) = 0 THEN
        RETURN;
    END IF;
    BEGIN
        sends := ARRAY(SELECT s FROM ventros.journey_sends(b.channel_id, contacts, b.message_template, 'broadcast', meta) s);
    EXCEPTION WHEN OTHERS THEN
        sends := '{}';
        FOREACH contact IN ARRAY contacts LOOP
            BEGIN
                one := ARRAY(SELECT s FROM ventros.journey_sends(b.channel_id, ARRAY[contact], b.message_template,
                                                                   'broadcast', meta) s);
            EXCEPTION WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS failure = MESSAGE_TEXT;
                one := ARRAY[ROW(contact, NULL, NULL, 'XX000', failure, NULL, NULL)::ventros.message_send];
            END;
            sends := sends || one;
        END LOOP;
    END;
    -- Each execution's outcome by its contact (a map: no join of two sets).
    SELECT coalesce(jsonb_object_agg(s.contact_id, jsonb_build_object('message_id', (s.message).id, 'error', s.error)), '{}')
    INTO outcome FROM unnest(sends) s;
    -- pending -> sending, with the message queued for it
    UPDATE ventros.broadcast_executions x
    SET status = 'sending', message_id = (outcome->(x.contact_id::text)->>'message_id')::uuid, version = x.version
    WHERE x.tenant_id = b.tenant_id AND x.id = ANY (ids) AND x.status = 'pending';
    -- sending -> failed, with the refusal (a send with no answer at all fails too, never left hanging)
    UPDATE ventros.broadcast_executions x
    SET status = 'failed', error = left(coalesce(outcome->(x.contact_id::text)->>'error', 'the message was not sent'), 1000),
        version = x.version
    WHERE x.tenant_id = b.tenant_id AND x.id = ANY (ids) AND x.status = 'sending' AND x.message_id IS NULL;
    RETURN QUERY SELECT x.* FROM ventros.broadcast_executions x WHERE x.tenant_id = b.tenant_id AND x.id = ANY (ids)
                 ORDER BY x.created_at, x.id;
END
$$;
COMMENT ON FUNCTION ventros.send_broadcast_executions(ventros.broadcasts, ventros.broadcast_executions[], jsonb) IS
    'Sends pending executions of a broadcast as one set through journey_sends (source broadcast): each sending with its message until the provider''s outcome, or failed with its refusal (opt-out, no recipient)';

CREATE OR REPLACE FUNCTION ventros.send_broadcast_execution(b ventros.broadcasts, e ventros.broadcast_executions, metadata jsonb)
RETURNS ventros.broadcast_executions
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT x FROM ventros.send_broadcast_executions(b, ARRAY[e], metadata) x
$$;
COMMENT ON FUNCTION ventros.send_broadcast_execution(ventros.broadcasts, ventros.broadcast_executions, jsonb) IS
    'Sends one pending broadcast execution through journey_send (source broadcast): sending with its message until the provider''s outcome, or failed with the error';

CREATE OR REPLACE FUNCTION ventros.send_broadcast_batch(broadcast_id uuid, batch integer DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b ventros.broadcasts := ventros.get_broadcast(broadcast_id, true);
    es ventros.broadcast_executions[];
    n integer;
    failed integer;
BEGIN
    IF b.status <> 'running' THEN
        RAISE EXCEPTION 'broadcast % is %, not running', broadcast_id, b.status USING ERRCODE = 'VN002';
    END IF;
    es := ARRAY(SELECT x FROM ventros.broadcast_executions x
                WHERE x.tenant_id = b.tenant_id AND x.broadcast_id = b.id AND x.status = 'pending'
                ORDER BY x.created_at, x.id
                LIMIT coalesce(batch, nullif(b.rate_limit, 0), 1000)
                FOR UPDATE SKIP LOCKED);
    SELECT count(*), count(*) FILTER (WHERE x.status = 'failed') INTO n, failed
    FROM ventros.send_broadcast_executions(b, es, NULL) x;
    UPDATE ventros.broadcasts x
    SET failed_count = x.failed_count + failed, pending_count = greatest(x.pending_count - n, 0), version = x.version
    WHERE x.tenant_id = b.tenant_id AND x.id = b.id;
    PERFORM ventros.finish_broadcast(b);
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.send_broadcast_batch(uuid, integer) IS
    'Sends up to batch (default: the rate limit) pending executions of a running broadcast as one set through send_messages (source broadcast): each stays sending until its message is sent or failed by the provider; a send refused at once (opt-out, no recipient) fails its execution; completes the broadcast when nothing is pending or sending (broadcast.completed)';

GRANT EXECUTE ON FUNCTION ventros.start_or_continue_sessions(uuid[], uuid, timestamptz),
    ventros.record_session_messages(ventros.sessions[], boolean[], timestamptz[], uuid[]),
    ventros.count_channel_messages(uuid, bigint, bigint, timestamptz),
    ventros.record_messages_effects(ventros.messages[]),
    ventros.queue_message_sends(uuid[]),
    ventros.send_messages(uuid, uuid[], text, uuid, text, text, text, text, uuid, uuid, jsonb, text, text, jsonb),
    ventros.journey_sends(uuid, uuid[], jsonb, text, jsonb),
    ventros.send_broadcast_executions(ventros.broadcasts, ventros.broadcast_executions[], jsonb) TO ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.raise_refusal(ventros.message_send), ventros.consent_refusal(uuid, uuid),
    ventros.plan_for_set(integer) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.enqueue_http_requests(text[], text[], jsonb[], bytea[], uuid[], text, integer, integer, timestamptz, text, integer)
    TO ventros_admin;

-- ---- reserved event types (sql/01_catalog.sql, 62_billing_accounts.sql, 74_automations.sql, 83_automation_rules.sql)
-- Event types only the platform says: ventros.emit of them needs the role
-- in emitted_by, whoever may change the aggregate (src/emit.c).
ALTER TABLE ventros.event_types ADD COLUMN emitted_by name;
COMMENT ON COLUMN ventros.event_types.emitted_by IS
    'The role whose privileges ventros.emit needs for this type, whoever may change its aggregate (ventros.reserve_event_type); NULL: whoever may change the aggregate';
CREATE FUNCTION ventros.reserve_event_type(event_type text, emitted_by name)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname = reserve_event_type.emitted_by) THEN
        RAISE EXCEPTION 'role "%" does not exist', emitted_by USING ERRCODE = '42704';
    END IF;
    UPDATE ventros.event_types e SET emitted_by = reserve_event_type.emitted_by
     WHERE e.event_type = reserve_event_type.event_type;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown event type "%"', event_type USING ERRCODE = '22023',
            HINT = 'Register it with ventros.register_event_type first.';
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.reserve_event_type(text, name) IS
    'Reserves an event type to a role: ventros.emit of it then needs that role''s privileges (or a superuser, or a SECURITY DEFINER command of the owner), whoever may change its aggregate; unknown types raise 22023, unknown roles 42704';
SELECT ventros.reserve_event_type(t, 'ventros_platform_admin')
  FROM unnest(ARRAY['automation.triggered', 'automation.executed', 'automation.failed',
                    'automation.time_reached', 'automation.agents_notified',
                    'billing_account.payment_activated', 'billing_account.suspended', 'billing_account.reactivated',
                    'billing_account.canceled', 'billing_account.stripe_customer_linked']) t;

-- ---- channel counts by the inserting statement (sql/40_messages.sql, 40_messages_counts.sql)
-- Messages are counted on their channels by an AFTER INSERT statement trigger
-- running as the owner; count_channel_message(s) are no longer a tenant
-- role's to call (an agent could add any number of messages to a channel's
-- counts).
REVOKE EXECUTE ON FUNCTION ventros.count_channel_message(uuid, boolean, timestamptz),
    ventros.count_channel_messages(uuid, bigint, bigint, timestamptz) FROM ventros_agent;
CREATE OR REPLACE FUNCTION ventros.record_messages_effects(ms ventros.messages[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    sessions ventros.sessions[];
    from_me boolean[];
    ats timestamptz[];
    ids uuid[];
BEGIN
    PERFORM ventros.plan_for_set(cardinality(ms));
    SELECT array_agg(s ORDER BY s.id), array_agg(m.from_me ORDER BY s.id), array_agg(m."timestamp" ORDER BY s.id),
           array_agg(m.id ORDER BY s.id)
    INTO sessions, from_me, ats, ids
    FROM unnest(ms) m JOIN ventros.sessions s ON s.tenant_id = m.tenant_id AND s.id = m.session_id;
    IF sessions IS NOT NULL THEN
        PERFORM ventros.record_session_messages(sessions, from_me, ats, ids);
    END IF;
    -- Interaction times are kept to the minute: a burst of messages writes
    -- the contact once (the session and the message hold the exact times).
    UPDATE ventros.contacts c
    SET first_interaction_at = coalesce(c.first_interaction_at, m.first_at),
        last_interaction_at = greatest(c.last_interaction_at, m.last_at), version = c.version
    FROM (SELECT m.tenant_id, m.contact_id, min(m."timestamp") AS first_at, max(m."timestamp") AS last_at
          FROM unnest(ms) m GROUP BY 1, 2) m
    WHERE c.tenant_id = m.tenant_id AND c.id = m.contact_id
      AND (c.last_interaction_at IS NULL OR c.last_interaction_at < m.last_at - interval '1 minute'
           OR c.first_interaction_at > m.first_at);
    UPDATE ventros.chats c SET last_message_at = greatest(c.last_message_at, m.last_at), version = c.version
    FROM (SELECT m.tenant_id, m.chat_id, max(m."timestamp") AS last_at FROM unnest(ms) m
          WHERE m.chat_id IS NOT NULL GROUP BY 1, 2) m
    WHERE c.tenant_id = m.tenant_id AND c.id = m.chat_id;
END
$$;
COMMENT ON FUNCTION ventros.record_messages_effects(ventros.messages[]) IS
    'Records new messages on their sessions (locked by the caller, one message each), contacts (interaction times) and chats, one statement per table (internal)';

CREATE FUNCTION ventros.count_new_messages() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    counted record;
BEGIN
    FOR counted IN SELECT m.channel_id, count(*) FILTER (WHERE NOT m.from_me) AS received,
                          count(*) FILTER (WHERE m.from_me) AS sent, max(m."timestamp") AS last_at
                   FROM new_messages m GROUP BY 1 ORDER BY 1
    LOOP
        PERFORM ventros.count_channel_messages(counted.channel_id, counted.received, counted.sent, counted.last_at);
    END LOOP;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.count_new_messages() IS
    'AFTER INSERT statement trigger of ventros.messages: counts the inserted messages on their channels (count_channel_messages), as the owner';
CREATE TRIGGER messages_counted AFTER INSERT ON ventros.messages
    REFERENCING NEW TABLE AS new_messages FOR EACH STATEMENT EXECUTE FUNCTION ventros.count_new_messages();

-- ---- manual campaign conversions dropped (sql/75_campaigns.sql)
-- Conversions are counted as they happen (journey_converted); the manual
-- counter let an agent inflate a campaign's results without an enrollment
-- or an event.
DROP FUNCTION ventros.record_campaign_conversion(uuid);

-- ---- automation executor throughput
-- Issue 15: the executor's and the writers' cost per event.  The executor's
-- internal functions inherit the search_path run_automations pins (no SET
-- clause of their own); automation_enqueue (in every writer's transaction)
-- has no SET clause and no ON CONFLICT (sql/83_automation_rules.sql,
-- sql/84_automation_executor.sql).
CREATE OR REPLACE FUNCTION ventros.automation_enqueue(event_tenant text, event_id uuid, event_type text, aggregate_id uuid)
RETURNS integer
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    INSERT INTO ventros.automation_queue (tenant_id, seq, event_id, aggregate_id, depth, origin_event_id)
    SELECT event_tenant, pg_catalog.currval('ventros.outbox_seq'), automation_enqueue.event_id, automation_enqueue.aggregate_id,
           coalesce(CAST(nullif(pg_catalog.current_setting('ventros.automation_depth', true), '') AS pg_catalog.int4), 0),
           coalesce(CAST(nullif(pg_catalog.current_setting('ventros.automation_origin', true), '') AS pg_catalog.uuid),
                    automation_enqueue.event_id);
    RETURN 1;
END
$$;
COMMENT ON FUNCTION ventros.automation_enqueue(text, uuid, text, uuid) IS
    'Internal (the emitter, as table owner, when the fan-out cache says an enabled rule of the tenant selects the event): queues the event just written for the automation executor; returns 1';


CREATE OR REPLACE FUNCTION ventros.automation_require(value text, what text, action text) RETURNS text
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    IF value IS NULL OR value = '' THEN
        RAISE EXCEPTION 'action % needs %', action, what USING ERRCODE = '23502';
    END IF;
    RETURN value;
END
$$;
COMMENT ON FUNCTION ventros.automation_require(text, text, text) IS
    'A value an action needs (its parameter or the contact/session of the event), or 23502 naming it';

CREATE OR REPLACE FUNCTION ventros.automation_act(a jsonb, ctx jsonb, rule ventros.automations) RETURNS jsonb
LANGUAGE plpgsql
AS $$
DECLARE
    kind text := a->>'type';
    p jsonb := coalesce(a->'params', '{}');
    contact uuid := ventros.automation_uuid(ctx #>> '{contact,id}');
    session uuid := ventros.automation_uuid(ctx #>> '{session,id}');
    channel uuid := coalesce(ventros.automation_uuid(p->>'channel_id'), ventros.automation_uuid(ctx #>> '{channel,id}'));
    c ventros.contacts;
    tags text[];
    txt text;
    id uuid;
    e ventros.sequence_enrollments;
BEGIN
    CASE kind
    WHEN 'add_tag', 'remove_tag' THEN
        PERFORM ventros.automation_require(contact::text, 'a contact', kind);
        SELECT * INTO c FROM ventros.contacts x WHERE x.tenant_id = rule.tenant_id AND x.id = contact FOR UPDATE;
        tags := CASE kind WHEN 'add_tag' THEN (SELECT array_agg(DISTINCT t ORDER BY t) FROM unnest(c.tags || (p->>'tag')) t)
                          ELSE array_remove(c.tags, p->>'tag') END;
        PERFORM ventros.automation_require(p->>'tag', 'params.tag', kind);
        IF tags IS DISTINCT FROM c.tags AND NOT (tags @> c.tags AND c.tags @> tags) THEN
            PERFORM ventros.update_contact(contact, c.version, jsonb_build_object('tags', tags));
        END IF;
    WHEN 'set_field' THEN
        PERFORM ventros.automation_require(contact::text, 'a contact', kind);
        SELECT * INTO c FROM ventros.contacts x WHERE x.tenant_id = rule.tenant_id AND x.id = contact FOR UPDATE;
        PERFORM ventros.update_contact(contact, c.version,
                                       jsonb_build_object(ventros.automation_require(p->>'field', 'params.field', kind), p->'value'));
    WHEN 'set_custom_field', 'update_custom_field' THEN
        PERFORM ventros.set_contact_custom_field(ventros.automation_require(contact::text, 'a contact', kind)::uuid,
                                                 ventros.automation_require(coalesce(p->>'key', p->>'field'), 'params.key', kind),
                                                 coalesce(p->>'field_type', 'text'), p->'value');
    WHEN 'change_pipeline_status' THEN
        PERFORM ventros.change_contact_pipeline_status(ventros.automation_require(contact::text, 'a contact', kind)::uuid,
                                                       ventros.automation_require(p->>'status_id', 'params.status_id', kind)::uuid,
                                                       notes => 'automation ' || rule.name);
    WHEN 'assign_agent' THEN
        PERFORM ventros.assign_session_agent(ventros.automation_require(session::text, 'a session', kind)::uuid,
                                             ventros.automation_require(p->>'agent_id', 'params.agent_id', kind)::uuid);
    WHEN 'assign_team' THEN
        PERFORM ventros.assign_session_to_team(ventros.automation_require(session::text, 'a session', kind)::uuid,
                                               ventros.automation_require(p->>'team_id', 'params.team_id', kind)::uuid);
    WHEN 'send_message', 'send_canned_response' THEN
        PERFORM ventros.automation_require(contact::text, 'a contact', kind);
        txt := CASE kind WHEN 'send_message' THEN ventros.automation_require(p->>'text', 'params.text', kind)
                         ELSE ventros.render_canned_response(ventros.automation_require(p->>'shortcut', 'params.shortcut', kind),
                                                             contact) END;
        txt := replace(replace(txt, '{{contact.name}}', coalesce(ctx #>> '{contact,name}', '')),
                       '{{contact.phone}}', coalesce(ctx #>> '{contact,phone}', ''));
        SELECT m.id INTO id FROM ventros.send_message(ventros.automation_require(channel::text, 'a channel', kind)::uuid,
                                                      contact, txt, source => 'trigger') m;
        RETURN jsonb_build_object('type', kind, 'message_id', id);
    WHEN 'send_template' THEN
        SELECT m.id INTO id FROM ventros.send_message(ventros.automation_require(channel::text, 'a channel', kind)::uuid,
                                                      ventros.automation_require(contact::text, 'a contact', kind)::uuid,
                                                      source => 'trigger',
                                                      template_name => ventros.automation_require(p->>'template_name', 'params.template_name', kind),
                                                      template_language => coalesce(p->>'template_language', p->>'language'),
                                                      template_components => p->'template_components') m;
        RETURN jsonb_build_object('type', kind, 'message_id', id);
    WHEN 'add_note', 'create_note' THEN
        SELECT n.id INTO id FROM ventros.add_note(ventros.automation_require(contact::text, 'a contact', kind)::uuid,
                                                  ventros.automation_require(coalesce(p->>'content', p->>'text'), 'params.content', kind),
                                                  ventros.system_agent_id('trigger'), author_type => 'system',
                                                  author_name => 'automation ' || rule.name, session_id => session) n;
        RETURN jsonb_build_object('type', kind, 'note_id', id);
    WHEN 'enroll_sequence' THEN
        -- unless_enrolled (the rule a sequence keeps): a contact enrolled already is left alone
        IF coalesce((p->>'unless_enrolled')::boolean, false) AND EXISTS (
            SELECT 1 FROM ventros.sequence_enrollments x
             WHERE x.tenant_id = rule.tenant_id AND x.contact_id = contact AND x.status IN ('active', 'paused')
               AND x.sequence_id = ventros.automation_uuid(p->>'sequence_id')) THEN
            RETURN jsonb_build_object('type', kind, 'enrolled', false, 'reason', 'enrolled already');
        END IF;
        SELECT x.id INTO id FROM ventros.enroll_in_sequence(ventros.automation_require(p->>'sequence_id', 'params.sequence_id', kind)::uuid,
                                                            ventros.automation_require(contact::text, 'a contact', kind)::uuid) x;
        RETURN jsonb_build_object('type', kind, 'enrolled', true, 'enrollment_id', id);
    WHEN 'unenroll_sequence' THEN
        FOR e IN SELECT * FROM ventros.sequence_enrollments x
                  WHERE x.tenant_id = rule.tenant_id AND x.contact_id = contact AND x.status IN ('active', 'paused')
                    AND x.sequence_id = ventros.automation_require(p->>'sequence_id', 'params.sequence_id', kind)::uuid LOOP
            PERFORM ventros.set_sequence_enrollment_status(e.id, e.version, 'exited', 'automation');
        END LOOP;
    WHEN 'add_to_list' THEN
        PERFORM ventros.add_contact_to_list(ventros.automation_require(p->>'list_id', 'params.list_id', kind)::uuid,
                                            ventros.automation_require(contact::text, 'a contact', kind)::uuid);
    WHEN 'remove_from_list' THEN
        PERFORM ventros.remove_contact_from_list(ventros.automation_require(p->>'list_id', 'params.list_id', kind)::uuid,
                                                 ventros.automation_require(contact::text, 'a contact', kind)::uuid);
    WHEN 'close_session' THEN
        PERFORM ventros.close_session(ventros.automation_require(session::text, 'a session', kind)::uuid,
                                      end_reason => 'system_close');
    WHEN 'snooze_session' THEN
        -- params.minutes from now, or params.until (an instant)
        PERFORM ventros.snooze_session(ventros.automation_require(session::text, 'a session', kind)::uuid,
            coalesce((p->>'until')::timestamptz,
                     now() + make_interval(mins => ventros.automation_require(p->>'minutes', 'params.minutes or params.until', kind)::integer)));
    WHEN 'call_webhook', 'send_webhook' THEN
        RETURN ventros.automation_call_webhook(p, ctx, rule);
    WHEN 'emit_event' THEN
        RETURN jsonb_build_object('type', kind, 'event_type',
            ventros.emit_custom_event(ventros.automation_require(p->>'name', 'params.name', kind),
                                      coalesce(p->'payload', '{}') || jsonb_build_object('automation_id', rule.id,
                                                                                        'contact_id', contact)));
    WHEN 'notify_agents', 'notify_agent', 'notify_coordinator' THEN
        PERFORM ventros.emit('automation.agents_notified', 'automation', rule.id,
            jsonb_build_object('message', coalesce(p->>'message', p->>'text', rule.name), 'agent_ids', p->'agent_ids',
                               'agent_id', p->'agent_id', 'team_id', p->'team_id', 'contact_id', contact,
                               'session_id', session, 'event_id', ctx #> '{event,id}'),
            rule.version);
    ELSE
        RAISE EXCEPTION 'action "%" is not supported by the automation executor', left(kind, 64) USING ERRCODE = '0A000',
            HINT = 'See docs/automation.md for the actions the executor runs.';
    END CASE;
    RETURN jsonb_build_object('type', kind);
END
$$;
COMMENT ON FUNCTION ventros.automation_act(jsonb, jsonb, ventros.automations) IS
    'Runs one automation action through the command a user would call (tags and fields: update_contact; send_message; add_note; enroll_in_sequence; ...); returns what it did; 0A000 for an action the executor does not run';

CREATE OR REPLACE FUNCTION ventros.automation_call_webhook(p jsonb, ctx jsonb, rule ventros.automations) RETURNS jsonb
LANGUAGE plpgsql
AS $$
DECLARE
    w ventros.webhook_subscriptions;
    delivery uuid := gen_random_uuid();
    request uuid := gen_random_uuid();
    ev_id uuid := (ctx #>> '{event,id}')::uuid;
    body bytea;
BEGIN
    SELECT * INTO w FROM ventros.webhook_subscriptions x
     WHERE x.tenant_id = rule.tenant_id AND x.deleted_at IS NULL
       AND x.id = ventros.automation_require(p->>'webhook_subscription_id', 'params.webhook_subscription_id', 'call_webhook')::uuid;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'webhook subscription % not found', p->>'webhook_subscription_id' USING ERRCODE = 'P0002';
    END IF;
    IF w.secret IS NULL THEN
        RAISE EXCEPTION 'webhook subscription % has no secret: automation calls are signed', w.id USING ERRCODE = '22023';
    END IF;
    -- deactivated (by hand, on 410 Gone, after days of failures): no more deliveries, as for events
    IF NOT w.active THEN
        RAISE EXCEPTION 'webhook subscription % is inactive', w.id USING ERRCODE = '55000',
            HINT = 'Activate it again with ventros.set_webhook_subscription_active.';
    END IF;
    body := convert_to(ventros.webhook_cloudevent(rule.tenant_id, ev_id, ctx #>> '{event,type}', ctx #>> '{event,aggregate_type}',
                                                  (ctx #>> '{event,aggregate_id}')::uuid,
                                                  coalesce(p->'body', ctx->'payload') || jsonb_build_object('automation_id', rule.id),
                                                  (ctx #>> '{event,occurred_at}')::timestamptz), 'UTF8');
    INSERT INTO ventros.http_requests (tenant_id, id, method, url, headers, body, purpose, correlation_id,
                                       retry_policy, retry_schedule, max_attempts, timeout_ms)
    VALUES (rule.tenant_id, request, 'POST', w.url, ventros.webhook_request_headers(ev_id, delivery), body,
            'webhook.delivery', delivery, 'any', ventros.webhook_retry_schedule(),
            1 + least(w.retry_count, cardinality(ventros.webhook_retry_schedule())), w.timeout_seconds * 1000);
    INSERT INTO ventros.webhook_deliveries (tenant_id, id, subscription_id, event_id, event_type, aggregate_type,
                                            aggregate_id, request_id)
    VALUES (rule.tenant_id, delivery, w.id, ev_id, ctx #>> '{event,type}', ctx #>> '{event,aggregate_type}',
            (ctx #>> '{event,aggregate_id}')::uuid, request);
    RETURN jsonb_build_object('type', 'call_webhook', 'delivery_id', delivery);
END
$$;
COMMENT ON FUNCTION ventros.automation_call_webhook(jsonb, jsonb, ventros.automations) IS
    'Action call_webhook: one signed delivery of the triggering event (CloudEvents body, or params.body) to an active webhook subscription of the tenant (inactive: 55000), through the HTTP dispatcher';

CREATE OR REPLACE FUNCTION ventros.automation_report(rule ventros.automations, outcome text, run ventros.automation_runs) RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM ventros.emit('automation.' || outcome, 'automation', rule.id,
        jsonb_strip_nulls(jsonb_build_object('trigger', rule.trigger, 'run_id', run.id, 'event_id', run.event_id,
                                             'event_type', run.event_type, 'origin_event_id', run.origin_event_id,
                                             'depth', run.depth, 'actions', run.actions_done, 'error', run.error)),
        rule.version);
END
$$;
COMMENT ON FUNCTION ventros.automation_report(ventros.automations, text, ventros.automation_runs) IS
    'Emits automation.triggered, .executed or .failed for a run';

CREATE OR REPLACE FUNCTION ventros.automation_run_actions(rule ventros.automations, ctx jsonb, actions jsonb, run_id uuid,
                                               at timestamptz, OUT done jsonb, OUT waiting boolean)
LANGUAGE plpgsql
AS $$
DECLARE
    a jsonb;
    i integer := 0;
    n integer := jsonb_array_length(actions);
    minutes numeric;
BEGIN
    done := '[]';
    waiting := false;
    WHILE i < n LOOP
        a := actions->i;
        minutes := CASE WHEN a->>'type' = 'wait' THEN coalesce((a->'params'->>'minutes')::numeric, (a->>'delay_minutes')::numeric, 0)
                        ELSE coalesce((a->>'delay_minutes')::numeric, 0) END;
        IF minutes > 0 THEN
            -- the rest, with this action's own delay spent
            INSERT INTO ventros.automation_waits (tenant_id, run_id, due_at, actions)
            VALUES (rule.tenant_id, run_id, at + make_interval(secs => minutes * 60),
                    CASE WHEN a->>'type' = 'wait' THEN '[]'::jsonb ELSE jsonb_build_array(a - 'delay_minutes') END
                    || coalesce((SELECT jsonb_agg(x ORDER BY o) FROM jsonb_array_elements(actions) WITH ORDINALITY r(x, o)
                                  WHERE o > i + 1), '[]'));
            done := done || jsonb_build_object('type', 'wait', 'minutes', minutes);
            waiting := true;
            RETURN;
        END IF;
        IF a->>'type' <> 'wait' THEN
            done := done || ventros.automation_act(a, ctx, rule);
        END IF;
        i := i + 1;
    END LOOP;
END
$$;
COMMENT ON FUNCTION ventros.automation_run_actions(ventros.automations, jsonb, jsonb, uuid, timestamptz) IS
    'Runs actions in order; a wait (or an action''s delay_minutes) stores the rest in ventros.automation_waits and stops';

CREATE OR REPLACE FUNCTION ventros.automation_execute(rule ventros.automations, run ventros.automation_runs, ctx jsonb,
                                           actions jsonb, at timestamptz)
RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    r record;
    err text;
    state text;
BEGIN
    BEGIN
        r := ventros.automation_run_actions(rule, ctx, actions, run.id, at);
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS err = MESSAGE_TEXT, state = RETURNED_SQLSTATE;
    END;
    IF err IS NOT NULL THEN
        UPDATE ventros.automation_runs x SET outcome = 'failed', error = left(state || ': ' || err, 2000),
                                             finished_at = clock_timestamp()
         WHERE x.tenant_id = run.tenant_id AND x.id = run.id RETURNING * INTO run;
        PERFORM ventros.automation_report(rule, 'failed', run);
    ELSE
        UPDATE ventros.automation_runs x
           SET outcome = CASE WHEN r.waiting THEN 'waiting' ELSE 'executed' END, actions_done = x.actions_done || r.done,
               finished_at = CASE WHEN NOT r.waiting THEN clock_timestamp() END
         WHERE x.tenant_id = run.tenant_id AND x.id = run.id RETURNING * INTO run;
        IF NOT r.waiting THEN
            PERFORM ventros.automation_report(rule, 'executed', run);
        END IF;
    END IF;
    RETURN run.outcome;
END
$$;
COMMENT ON FUNCTION ventros.automation_execute(ventros.automations, ventros.automation_runs, jsonb, jsonb, timestamptz) IS
    'Runs a run''s actions in a subtransaction (a failure rolls them back and fails the run with its error), reports automation.executed or .failed';

CREATE OR REPLACE FUNCTION ventros.automation_run_rule(rule ventros.automations, ev ventros.outbox, ctx jsonb, ctx_error text,
                                            settings ventros.automation_settings, depth integer,
                                            origin_event_id uuid, at timestamptz)
RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    run ventros.automation_runs;
    holds boolean;
    reason text;
    err text;
    state text;
BEGIN
    -- ran already (the event was queued again): nothing twice
    SELECT * INTO run FROM ventros.automation_runs x
     WHERE x.tenant_id = ev.tenant_id AND x.automation_id = rule.id AND x.event_id = ev.event_id;
    IF FOUND THEN
        RETURN 'ran ' || run.outcome;
    END IF;
    IF depth >= settings.max_depth THEN
        reason := format('cascade depth limit %s reached (event %s at depth %s, originating event %s)',
                         settings.max_depth, ev.event_type, depth, origin_event_id);
    ELSIF depth > 0 AND ventros.automation_ran_for_origin(ev.tenant_id, rule.id, origin_event_id) THEN
        reason := format('loop: rule already ran for the originating event %s', origin_event_id);
    ELSIF ctx_error IS NOT NULL THEN
        reason := 'conditions failed: ' || ctx_error;
    ELSE
        BEGIN
            holds := coalesce(ventros.automation_conditions_hold(rule.conditions, ctx, settings.timezone, at), false);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS err = MESSAGE_TEXT, state = RETURNED_SQLSTATE;
            reason := 'conditions failed: ' || state || ': ' || err;
        END;
    END IF;
    INSERT INTO ventros.automation_runs (tenant_id, automation_id, event_id, event_type, origin_event_id, depth, outcome,
                                         error, finished_at)
    VALUES (ev.tenant_id, rule.id, ev.event_id, ev.event_type, origin_event_id, depth,
            CASE WHEN reason IS NOT NULL THEN 'failed' WHEN holds THEN 'waiting' ELSE 'skipped' END,
            left(reason, 2000), CASE WHEN reason IS NOT NULL OR NOT holds THEN clock_timestamp() END)
    RETURNING * INTO run;
    IF reason IS NOT NULL THEN
        PERFORM ventros.automation_report(rule, 'failed', run);
        RETURN 'failed';
    ELSIF NOT holds THEN
        RETURN 'skipped';
    END IF;
    PERFORM ventros.automation_report(rule, 'triggered', run);
    RETURN ventros.automation_execute(rule, run, ctx, rule.actions, at);
END
$$;
COMMENT ON FUNCTION ventros.automation_run_rule(ventros.automations, ventros.outbox, jsonb, text, ventros.automation_settings, integer, uuid, timestamptz) IS
    'Runs one rule for one event once, each step in a subtransaction: refuses past the depth limit or a second run for the same originating event (failed, with the reason), evaluates its conditions (skipped; failed when they or the context cannot be evaluated), runs its actions (executed, waiting, failed); returns the outcome, or ''ran <outcome>'' when it ran for the event already';

CREATE OR REPLACE FUNCTION ventros.automation_mark_cascade(depth integer, origin_event_id uuid) RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM set_config('ventros.automation_depth', coalesce(depth + 1, 0)::text, true),
            set_config('ventros.automation_origin', CASE WHEN depth IS NOT NULL THEN origin_event_id::text ELSE '' END, true);
END
$$;
COMMENT ON FUNCTION ventros.automation_mark_cascade(integer, uuid) IS
    'Marks the events emitted from now on in this transaction as a cascade one level below depth from an originating event (NULL: unmarks)';

CREATE OR REPLACE FUNCTION ventros.automation_run_event(q ventros.automation_queue, ev ventros.outbox, rules ventros.automations[],
                                             settings ventros.automation_settings, at timestamptz)
RETURNS uuid[]
LANGUAGE plpgsql
AS $$
DECLARE
    rule ventros.automations;
    ctx jsonb;
    run ventros.automation_runs;
    r record;
    skipped uuid[] := '{}';
BEGIN
    -- everything the rules emit (their actions', their own reports) is one level deeper
    PERFORM ventros.automation_mark_cascade(q.depth, q.origin_event_id);
    FOREACH rule IN ARRAY rules LOOP
        IF q.depth = 0 AND rule.conditions <> '[]' THEN
            -- the common case first: no cascade to check, conditions to evaluate
            ctx := coalesce(ctx, ventros.automation_context(ev, at));
            IF NOT coalesce(ventros.automation_conditions_hold(rule.conditions, ctx, settings.timezone, at), false) THEN
                skipped := skipped || rule.id;
                CONTINUE;
            END IF;
        END IF;
        run := ROW(q.tenant_id, gen_random_uuid(), rule.id, ev.event_id, ev.event_type, q.origin_event_id, q.depth,
                   'waiting', '[]'::jsonb, NULL, clock_timestamp(), NULL)::ventros.automation_runs;
        IF q.depth >= settings.max_depth THEN
            run.error := format('cascade depth limit %s reached (event %s at depth %s, originating event %s)',
                                settings.max_depth, ev.event_type, q.depth, q.origin_event_id);
        ELSIF q.depth > 0 AND ventros.automation_ran_for_origin(q.tenant_id, rule.id, q.origin_event_id) THEN
            run.error := format('loop: rule already ran for the originating event %s', q.origin_event_id);
        END IF;
        IF run.error IS NOT NULL THEN
            run.outcome := 'failed';
            run.finished_at := clock_timestamp();
            INSERT INTO ventros.automation_runs VALUES (run.*);
            PERFORM ventros.automation_report(rule, 'failed', run);
            CONTINUE;
        END IF;
        ctx := coalesce(ctx, ventros.automation_context(ev, at));
        IF q.depth > 0
           AND NOT coalesce(ventros.automation_conditions_hold(rule.conditions, ctx, settings.timezone, at), false) THEN
            skipped := skipped || rule.id;
            CONTINUE;
        END IF;
        PERFORM ventros.automation_report(rule, 'triggered', run);
        IF rule.actions @? '$[*] ? (@.type == "wait" || exists(@.delay_minutes))' THEN
            INSERT INTO ventros.automation_runs VALUES (run.*);
            r := ventros.automation_run_actions(rule, ctx, rule.actions, run.id, at);
            UPDATE ventros.automation_runs x
               SET outcome = CASE WHEN r.waiting THEN 'waiting' ELSE 'executed' END, actions_done = r.done,
                   finished_at = CASE WHEN NOT r.waiting THEN clock_timestamp() END
             WHERE x.tenant_id = run.tenant_id AND x.id = run.id RETURNING * INTO run;
        ELSE
            r := ventros.automation_run_actions(rule, ctx, rule.actions, run.id, at);
            run.outcome := 'executed';
            run.actions_done := r.done;
            run.finished_at := clock_timestamp();
            INSERT INTO ventros.automation_runs VALUES (run.*);
        END IF;
        IF run.outcome = 'executed' THEN
            PERFORM ventros.automation_report(rule, 'executed', run);
        END IF;
        EXIT WHEN rule.stop_processing;
    END LOOP;
    RETURN skipped;
END
$$;
COMMENT ON FUNCTION ventros.automation_run_event(ventros.automation_queue, ventros.outbox, ventros.automations[], ventros.automation_settings, timestamptz) IS
    'Runs the rules a queued event triggers (given in priority order), stopping after a rule with stop_processing that ran, without subtransactions: any error, a second run of an acting rule for the event too, propagates (the executor then runs the event with ventros.automation_run_event_carefully); returns the rules its conditions skipped, whose runs the caller writes';

CREATE OR REPLACE FUNCTION ventros.automation_run_event_carefully(q ventros.automation_queue, ev ventros.outbox,
                                                       rules ventros.automations[],
                                                       settings ventros.automation_settings, at timestamptz)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    rule ventros.automations;
    ctx jsonb;
    ctx_error text;
    outcome text;
    n integer := 0;
    err text;
    state text;
BEGIN
    PERFORM ventros.automation_mark_cascade(q.depth, q.origin_event_id);
    BEGIN
        ctx := ventros.automation_context(ev, at);
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS err = MESSAGE_TEXT, state = RETURNED_SQLSTATE;
        ctx_error := state || ': ' || err;
    END;
    FOREACH rule IN ARRAY rules LOOP
        outcome := ventros.automation_run_rule(rule, ev, ctx, ctx_error, settings, q.depth, q.origin_event_id, at);
        n := n + 1;
        EXIT WHEN rule.stop_processing AND outcome IN ('executed', 'waiting', 'ran executed', 'ran waiting');
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.automation_run_event_carefully(ventros.automation_queue, ventros.outbox, ventros.automations[], ventros.automation_settings, timestamptz) IS
    'Runs the rules a queued event triggers as ventros.automation_run_event does, each rule in its own subtransactions, so a failing rule is its own failed run and a rule that ran for the event already is left alone; returns how many rules ran';

CREATE OR REPLACE FUNCTION ventros.automation_resume(w ventros.automation_waits, at timestamptz) RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    run ventros.automation_runs;
    rule ventros.automations;
    ev ventros.outbox;
BEGIN
    DELETE FROM ventros.automation_waits x WHERE x.tenant_id = w.tenant_id AND x.run_id = w.run_id;
    SELECT * INTO run FROM ventros.automation_runs x WHERE x.tenant_id = w.tenant_id AND x.id = w.run_id;
    SELECT * INTO rule FROM ventros.automations a WHERE a.tenant_id = w.tenant_id AND a.id = run.automation_id;
    SELECT * INTO ev FROM ventros.outbox o WHERE o.tenant_id = w.tenant_id AND o.event_id = run.event_id;
    PERFORM ventros.automation_mark_cascade(run.depth, run.origin_event_id);
    IF NOT rule.enabled OR rule.deleted_at IS NOT NULL OR ev.event_id IS NULL
       OR NOT (ventros.current_automation_settings()).enabled THEN
        UPDATE ventros.automation_runs x SET outcome = 'failed', finished_at = clock_timestamp(),
               error = CASE WHEN ev.event_id IS NULL THEN 'the triggering event is gone' ELSE 'the rule was disabled while waiting' END
         WHERE x.tenant_id = run.tenant_id AND x.id = run.id RETURNING * INTO run;
        PERFORM ventros.automation_report(rule, 'failed', run);
        PERFORM ventros.automation_mark_cascade(NULL, NULL);
        RETURN 'failed';
    END IF;
    run.outcome := ventros.automation_execute(rule, run, ventros.automation_context(ev, at), w.actions, at);
    PERFORM ventros.automation_mark_cascade(NULL, NULL);
    RETURN run.outcome;
END
$$;
COMMENT ON FUNCTION ventros.automation_resume(ventros.automation_waits, timestamptz) IS
    'Continues a waiting run with the actions left (failed when its rule was disabled or its event is gone)';

CREATE OR REPLACE FUNCTION ventros.automation_log_skipped(qs ventros.automation_queue[], evs ventros.outbox[], skipped_rule uuid[],
                                               skipped_of integer[], skipped_at timestamptz[])
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    IF cardinality(skipped_rule) = 0 THEN
        RETURN;
    END IF;
    -- A plain insert first: with ON CONFLICT every row is looked up in the
    -- run log's key before it is inserted into it (7 % of the executor's
    -- CPU with 10 rules of which one acts).  A run already there only
    -- when an event was queued again: then, all of them again, with it.
    BEGIN
        INSERT INTO ventros.automation_runs (tenant_id, automation_id, event_id, event_type, origin_event_id, depth, outcome,
                                             started_at, finished_at)
        SELECT bq.tenant_id, s.rule, bo.event_id, bo.event_type, bq.origin_event_id, bq.depth, 'skipped', s.at, s.at
          FROM unnest(skipped_rule, skipped_of, skipped_at) s(rule, i, at)
          JOIN unnest(qs) WITH ORDINALITY bq ON bq.ordinality = s.i
          JOIN unnest(evs) WITH ORDINALITY bo ON bo.ordinality = s.i;
    EXCEPTION WHEN unique_violation THEN
        INSERT INTO ventros.automation_runs (tenant_id, automation_id, event_id, event_type, origin_event_id, depth, outcome,
                                             started_at, finished_at)
        SELECT bq.tenant_id, s.rule, bo.event_id, bo.event_type, bq.origin_event_id, bq.depth, 'skipped', s.at, s.at
          FROM unnest(skipped_rule, skipped_of, skipped_at) s(rule, i, at)
          JOIN unnest(qs) WITH ORDINALITY bq ON bq.ordinality = s.i
          JOIN unnest(evs) WITH ORDINALITY bo ON bo.ordinality = s.i
        ON CONFLICT ON CONSTRAINT automation_runs_once DO NOTHING;
    END;
END
$$;
COMMENT ON FUNCTION ventros.automation_log_skipped(ventros.automation_queue[], ventros.outbox[], uuid[], integer[], timestamptz[]) IS
    'Writes the runs of automation rules skipped by their conditions for many events at once (a run already there stays)';

CREATE OR REPLACE FUNCTION ventros.automation_run_batch(qs ventros.automation_queue[], evs ventros.outbox[],
                                             rules ventros.automations[], of_event integer[], at_rule integer[],
                                             per_event boolean, at timestamptz)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    event_rules ventros.automations[];
    k integer := 1;
    j integer;
    skipped uuid[];
    skipped_rule uuid[] := '{}';
    skipped_of integer[] := '{}';
    skipped_at timestamptz[] := '{}';
    q ventros.automation_queue;
    ev ventros.outbox;
    settings ventros.automation_settings;
    tenant text;
BEGIN
    FOR i IN 1 .. cardinality(qs) LOOP
        q := qs[i];
        ev := evs[i];
        -- this event's rules (element by element: a slice of a big array
        -- would flatten all of it for every event)
        event_rules := '{}';
        j := k;
        WHILE j <= cardinality(of_event) AND of_event[j] = i LOOP
            event_rules := event_rules || rules[at_rule[j]];
            j := j + 1;
        END LOOP;
        IF tenant IS DISTINCT FROM q.tenant_id THEN
            tenant := q.tenant_id;
            PERFORM pg_catalog.set_config('ventros.tenant', tenant, true);
            settings := ventros.current_automation_settings();
        END IF;
        -- nothing when no rule wants it (any more), the tenant disabled its
        -- rules, or the event was pruned or erased meanwhile
        IF q.depth > 0 AND cardinality(skipped_rule) > 0 THEN
            -- the loop check of a cascade reads the runs: write those waiting
            PERFORM ventros.automation_log_skipped(qs, evs, skipped_rule, skipped_of, skipped_at);
            skipped_rule := '{}';
            skipped_of := '{}';
            skipped_at := '{}';
        END IF;
        IF j > k AND settings.enabled AND ev.event_id IS NOT NULL THEN
            IF NOT per_event THEN
                skipped := ventros.automation_run_event(q, ev, event_rules, settings, at);
            ELSE
                BEGIN
                    skipped := ventros.automation_run_event(q, ev, event_rules, settings, at);
                EXCEPTION WHEN OTHERS THEN
                    -- a rule failed: all this event did is rolled back; again, a subtransaction per rule
                    skipped := '{}';
                    BEGIN
                        PERFORM ventros.automation_run_event_carefully(q, ev, event_rules, settings, at);
                    EXCEPTION WHEN OTHERS THEN
                        RAISE WARNING 'automation executor: event % of tenant % failed: %', q.event_id, q.tenant_id, SQLERRM;
                    END;
                END;
            END IF;
            skipped_rule := skipped_rule || skipped;
            skipped_of := skipped_of || array_fill(i, ARRAY[cardinality(skipped)]);
            skipped_at := skipped_at || array_fill(clock_timestamp(), ARRAY[cardinality(skipped)]);
        END IF;
        k := j;
    END LOOP;
    PERFORM ventros.automation_log_skipped(qs, evs, skipped_rule, skipped_of, skipped_at);
END
$$;
COMMENT ON FUNCTION ventros.automation_run_batch(ventros.automation_queue[], ventros.outbox[], ventros.automations[], integer[], integer[], boolean, timestamptz) IS
    'Runs the rules of a batch of queued events in order, each tenant''s as that tenant: without subtransactions (any error propagates), or with one per event and a per-rule second pass for an event whose rules failed; writes the skipped runs';


-- ---- operator (sql/93_operator.sql, sql/45_http_requests.sql, sql/02_tenant.sql)
-- The operator's surface (docs/operations.md): queue status, dead letters and
-- replay, paused sends held by the dispatcher's claim, secret rotation,
-- the database's side of GET /metrics; require_platform_admin looks at the
-- role the session acts as, so a platform administrator's token can reach
-- these functions through ventros-http while tenant tokens cannot.

CREATE OR REPLACE FUNCTION ventros.require_platform_admin() RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- The role the session acts as (its SET ROLE, else its login): the
    -- HTTP front's login may hold ventros_platform_admin so that a platform
    -- administrator's token can SET ROLE to it, and then only a request
    -- running as that role is one (a tenant's runs as its tenant role).
    IF NOT ventros.session_is_trusted()
       OR NOT (pg_has_role(CASE WHEN current_setting('role') = 'none' THEN session_user
                                ELSE current_setting('role')::name END,
                           'ventros_platform_admin', 'MEMBER')
               OR (SELECT rolsuper FROM pg_roles WHERE rolname = session_user)) THEN
        RAISE EXCEPTION 'permission denied: only platform administrators may do this'
            USING ERRCODE = '42501',
                  DETAIL = pg_catalog.format('Role "%s" is not a member of ventros_platform_admin.',
                                             CASE WHEN current_setting('role') = 'none' THEN session_user
                                                  ELSE current_setting('role')::name END);
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.require_platform_admin() IS
    'Raises 42501 unless the session user is a superuser, or the role the session acts as (its SET ROLE, else its login) is a member of ventros_platform_admin';

CREATE TABLE ventros.send_pauses (
    tenant_id  text        NOT NULL,
    id         uuid        NOT NULL DEFAULT gen_random_uuid(),
    scope      text        NOT NULL,
    target_id  uuid,
    paused_at  timestamptz NOT NULL DEFAULT now(),
    paused_by  text,
    reason     text,
    CONSTRAINT send_pauses_scope_known CHECK (scope IN ('tenant', 'channel', 'webhook_subscription')),
    CONSTRAINT send_pauses_target CHECK ((scope = 'tenant') = (target_id IS NULL)),
    CONSTRAINT send_pauses_reason_size CHECK (length(reason) <= 500),
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT send_pauses_once UNIQUE NULLS NOT DISTINCT (tenant_id, scope, target_id)
);
COMMENT ON TABLE ventros.send_pauses IS
    'Paused sends: while a row covers a request (a tenant''s, a channel''s, a webhook subscription''s), the HTTP dispatcher leaves it queued (ventros.pause_sends, resume_sends)';
ALTER TABLE ventros.send_pauses ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.send_pauses FORCE ROW LEVEL SECURITY;
-- Tenants see their own pauses; only the operator functions write.
CREATE POLICY ventros_tenant_read ON ventros.send_pauses FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.send_pauses TO ventros_viewer;

-- http_request_held: does a pause cover this request?  plpgsql: the tables
-- it asks (messages, webhook_deliveries) are resolved when it runs.  The
-- claim calls it only for tenants that have a pause.
CREATE FUNCTION ventros.http_request_held(tenant text, purpose text, correlation uuid)
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN EXISTS (
        SELECT 1 FROM ventros.send_pauses p
         WHERE p.tenant_id = tenant
           AND (p.scope = 'tenant'
                OR (p.scope = 'channel' AND correlation IS NOT NULL
                    AND EXISTS (SELECT 1 FROM ventros.messages m
                                 WHERE m.tenant_id = tenant AND m.id = correlation AND m.channel_id = p.target_id))
                OR (p.scope = 'webhook_subscription' AND purpose = 'webhook.delivery' AND correlation IS NOT NULL
                    AND EXISTS (SELECT 1 FROM ventros.webhook_deliveries d
                                 WHERE d.tenant_id = tenant AND d.id = correlation
                                   AND d.subscription_id = p.target_id))));
END
$$;
COMMENT ON FUNCTION ventros.http_request_held(text, text, uuid) IS
    'Dispatcher: whether a pause (ventros.send_pauses) covers a request of this tenant, purpose and correlation id';

CREATE OR REPLACE FUNCTION ventros.http_claim(batch_size integer, lease interval)
RETURNS TABLE (tenant_id text, id uuid, method text, url text, headers jsonb, body bytea,
               attempts integer, timeout_ms integer, retry_policy text, max_response_size integer,
               body_form jsonb, media bytea)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH due_now AS (
        SELECT r.tenant_id, r.id FROM ventros.http_requests r
         WHERE r.status = 'pending' AND r.next_attempt_at <= now()
           AND NOT (EXISTS (SELECT 1 FROM ventros.send_pauses p WHERE p.tenant_id = r.tenant_id)
                    AND ventros.http_request_held(r.tenant_id, r.purpose, r.correlation_id))
         ORDER BY r.next_attempt_at LIMIT batch_size FOR UPDATE SKIP LOCKED),
    lease_expired AS (
        SELECT r.tenant_id, r.id FROM ventros.http_requests r
         WHERE r.status = 'in_flight' AND r.lease_until < now()
         ORDER BY r.lease_until LIMIT batch_size FOR UPDATE SKIP LOCKED),
    due AS (
        SELECT * FROM due_now UNION ALL SELECT * FROM lease_expired LIMIT batch_size)
    UPDATE ventros.http_requests r
       SET status = 'in_flight', attempts = r.attempts + 1, lease_until = now() + lease,
           claimed_by = pg_backend_pid(), last_attempt_at = now(), updated_at = now()
      FROM due
     WHERE r.tenant_id = due.tenant_id AND r.id = due.id
    RETURNING r.tenant_id, r.id, r.method, r.url,
              CASE WHEN EXISTS (SELECT 1 FROM ventros.http_request_preparers p WHERE p.purpose = r.purpose)
                   THEN ventros.http_attempt_headers(r) ELSE r.headers END,
              r.body, r.attempts, r.timeout_ms, r.retry_policy, r.max_response_size, r.body_form,
              -- the media a body_form streams, as the media download stored it
              CASE WHEN r.body_form IS NOT NULL THEN ventros.http_request_media(r.tenant_id, r.media_id) END
$$;
COMMENT ON FUNCTION ventros.http_claim(integer, interval) IS
    'Dispatcher: claims due requests not held by a pause (and requests whose lease expired) with a lease, counting an attempt; with the media a body_form streams';

CREATE FUNCTION ventros.http_next_due() RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT min(r.next_attempt_at) FROM ventros.http_requests r
     WHERE r.status = 'pending'
       AND NOT (EXISTS (SELECT 1 FROM ventros.send_pauses p WHERE p.tenant_id = r.tenant_id)
                AND ventros.http_request_held(r.tenant_id, r.purpose, r.correlation_id))
$$;
COMMENT ON FUNCTION ventros.http_next_due() IS
    'Dispatcher: the earliest next_attempt_at of the pending requests no pause holds (NULL: none), to sleep until';

-- The operator's surface: what a platform administrator runs the queues
-- with (docs/operations.md).  Three work queues carry everything Ventros
-- does after a commit: the outbox (events to RabbitMQ), the inbox (provider
-- webhooks into the CRM) and the HTTP dispatcher's requests (sends, webhook
-- deliveries, downloads, AI calls).  Here, for all three in one shape:
--   queue_status    depth, due, in flight, held, dead, oldest age, recent arrivals and completions
--   dead_letters    what gave up, filtered by queue, tenant, type and time
--   replay_dead_letters  puts them back (the outbox's replay_dead_events, the
--                   dispatcher's replay_http_request, the inbox's retry)
-- and the levers: pause_sends / resume_sends (a tenant's, a channel's or a
-- webhook subscription's outbound requests stay queued while paused:
-- ventros.send_pauses, sql/45_http_requests.sql), rotate_channel_secret and
-- rotate_subscription_secret.
--
-- Every function here is SECURITY DEFINER (it reads and writes across
-- tenants), checks ventros.require_platform_admin(), and is granted to
-- ventros_platform_admin only: tenant roles get 42501.  Every action is
-- audited as an event with its actor (ventros.actor(): the token's subject
-- over HTTP, else the login): on the channel or the webhook subscription it
-- concerns, or, for what concerns a whole tenant, on the tenant's first
-- project (the tenant's own aggregate).
-- ventros.metrics() gives ventros-http's GET /metrics the database's figures
-- in one call of bounded cost (counts over partial or BRIN indexes).

-- ---- indexes the figures use -------------------------------------------------

-- Dead letters of the inbox and the dispatcher are found without a scan of
-- everything they ever held; recent arrivals through BRIN indexes of the
-- arrival time (rows are appended in that order; next to nothing to keep).
CREATE INDEX inbox_dead ON ventros.inbox (received_at)
    WHERE status IN ('failed', 'unmatched') AND next_attempt_at IS NULL;
CREATE INDEX inbox_received ON ventros.inbox USING brin (received_at) WITH (autosummarize = on);
CREATE INDEX http_requests_dead ON ventros.http_requests (created_at) WHERE status IN ('dead', 'failed');
CREATE INDEX http_requests_created ON ventros.http_requests USING brin (created_at) WITH (autosummarize = on);
CREATE INDEX message_enrichments_created ON ventros.message_enrichments USING brin (created_at)
    WITH (autosummarize = on);

-- ---- queue figures ------------------------------------------------------------

-- queue_figures: the figures of the three queues, one row each (internal:
-- queue_status and metrics call it).  Completions are counted among what
-- arrived in the last hour (BRIN-bounded): work that waited longer is not
-- in done_last_5m.
CREATE FUNCTION ventros.queue_figures(
    OUT queue text, OUT depth bigint, OUT due bigint, OUT in_flight bigint, OUT held bigint,
    OUT dead bigint, OUT oldest_age interval, OUT arrived_last_5m bigint, OUT done_last_5m bigint)
RETURNS SETOF record
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'outbox',
           (SELECT count(*) FROM ventros.outbox_queue q WHERE NOT q.dead),
           (SELECT count(*) FROM ventros.outbox_queue q
             WHERE NOT q.dead AND (q.next_attempt_at IS NULL OR q.next_attempt_at <= now())),
           NULL::bigint, 0::bigint,
           (SELECT count(*) FROM ventros.outbox_queue q WHERE q.dead),
           now() - (SELECT o.occurred_at FROM ventros.outbox_queue q
                      JOIN ventros.outbox o ON o.tenant_id = q.tenant_id AND o.seq = q.seq
                     WHERE NOT q.dead ORDER BY q.seq LIMIT 1),
           (SELECT count(*) FROM ventros.outbox o WHERE o.occurred_at > now() - interval '5 minutes'),
           (SELECT count(*) FROM ventros.outbox o
             WHERE o.occurred_at > now() - interval '1 hour' AND o.status = 'published'
               AND o.published_at > now() - interval '5 minutes')
    UNION ALL
    SELECT 'inbox', x.depth, x.due, NULL::bigint, 0::bigint,
           (SELECT count(*) FROM ventros.inbox i
             WHERE i.status IN ('failed', 'unmatched') AND i.next_attempt_at IS NULL),
           now() - x.oldest,
           (SELECT count(*) FROM ventros.inbox i WHERE i.received_at > now() - interval '5 minutes'),
           (SELECT count(*) FROM ventros.inbox i
             WHERE i.received_at > now() - interval '1 hour' AND i.processed_at > now() - interval '5 minutes')
      FROM (SELECT count(*) AS depth, count(*) FILTER (WHERE i.next_attempt_at <= now()) AS due,
                   min(i.received_at) AS oldest
              FROM ventros.inbox i
             WHERE i.status IN ('received', 'failed', 'unmatched') AND i.next_attempt_at IS NOT NULL) x
    UNION ALL
    SELECT 'http', x.depth, x.due,
           (SELECT count(*) FROM ventros.http_requests r WHERE r.status = 'in_flight'),
           x.held,
           (SELECT count(*) FROM ventros.http_requests r WHERE r.status IN ('dead', 'failed')),
           now() - x.oldest,
           (SELECT count(*) FROM ventros.http_requests r WHERE r.created_at > now() - interval '5 minutes'),
           (SELECT count(*) FROM ventros.http_requests r
             WHERE r.created_at > now() - interval '1 hour' AND r.completed_at > now() - interval '5 minutes')
      FROM (SELECT count(*) AS depth, count(*) FILTER (WHERE r.next_attempt_at <= now()) AS due,
                   count(*) FILTER (WHERE EXISTS (SELECT 1 FROM ventros.send_pauses p WHERE p.tenant_id = r.tenant_id)
                                      AND ventros.http_request_held(r.tenant_id, r.purpose, r.correlation_id)) AS held,
                   min(r.created_at) AS oldest
              FROM ventros.http_requests r WHERE r.status = 'pending') x
$$;
COMMENT ON FUNCTION ventros.queue_figures() IS
    'Internal: the figures of the outbox, inbox and HTTP dispatcher queues (ventros.queue_status, ventros.metrics)';

CREATE FUNCTION ventros.queue_status(
    OUT queue text, OUT depth bigint, OUT due bigint, OUT in_flight bigint, OUT held bigint,
    OUT dead bigint, OUT oldest_age interval, OUT arrived_last_5m bigint, OUT done_last_5m bigint)
RETURNS SETOF record
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.require_platform_admin();
    RETURN QUERY SELECT * FROM ventros.queue_figures();
END
$$;
COMMENT ON FUNCTION ventros.queue_status() IS
    'Platform admins: the outbox, inbox and HTTP dispatcher queues, one row each: depth (waiting), due now, in flight, held by a pause, dead letters, age of the oldest waiting item, arrivals and completions in the last 5 minutes';

-- ---- dead letters -------------------------------------------------------------

-- The queue argument: outbox, inbox, http or NULL (all three).
CREATE FUNCTION ventros.check_queue_name(queue text) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF queue IS NOT NULL AND queue NOT IN ('outbox', 'inbox', 'http') THEN
        RAISE EXCEPTION 'unknown queue "%"', left(queue, 64)
            USING ERRCODE = '22023', HINT = 'Queues are outbox, inbox and http.';
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.check_queue_name(text) IS
    'Raises 22023 unless the queue is outbox, inbox, http or NULL (all)';

-- What gave up: outbox events dead after their attempts, inbox items given
-- up (failed or unmatched with no retry left), requests dead (attempts spent)
-- or failed (refused for good).  type: the event type, the provider's event
-- name, the request's purpose; at: when it occurred, arrived, was queued.
CREATE FUNCTION ventros.dead_letter_rows(queue text, tenant text, type text, since timestamptz, until timestamptz)
RETURNS TABLE (queue_name text, tenant_id text, id uuid, item_type text, at timestamptz, attempts integer,
               last_error text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'outbox'::text, o.tenant_id, o.event_id, o.event_type, o.occurred_at, o.attempts, o.last_error
      FROM ventros.outbox_queue q
      JOIN ventros.outbox o ON o.tenant_id = q.tenant_id AND o.seq = q.seq
     WHERE q.dead AND coalesce(dead_letter_rows.queue, 'outbox') = 'outbox'
       AND (dead_letter_rows.tenant IS NULL OR q.tenant_id = dead_letter_rows.tenant)
       AND (dead_letter_rows.type IS NULL OR o.event_type = dead_letter_rows.type)
       AND (since IS NULL OR o.occurred_at >= since) AND (until IS NULL OR o.occurred_at < until)
    UNION ALL
    SELECT 'inbox', i.tenant_id, i.id, i.event, i.received_at, i.attempts, i.last_error
      FROM ventros.inbox i
     WHERE i.status IN ('failed', 'unmatched') AND i.next_attempt_at IS NULL
       AND coalesce(dead_letter_rows.queue, 'inbox') = 'inbox'
       AND (dead_letter_rows.tenant IS NULL OR i.tenant_id = dead_letter_rows.tenant)
       AND (dead_letter_rows.type IS NULL OR i.event = dead_letter_rows.type)
       AND (since IS NULL OR i.received_at >= since) AND (until IS NULL OR i.received_at < until)
    UNION ALL
    SELECT 'http', r.tenant_id, r.id, r.purpose, r.created_at, r.attempts, r.last_error
      FROM ventros.http_requests r
     WHERE r.status IN ('dead', 'failed') AND coalesce(dead_letter_rows.queue, 'http') = 'http'
       AND (dead_letter_rows.tenant IS NULL OR r.tenant_id = dead_letter_rows.tenant)
       AND (dead_letter_rows.type IS NULL OR r.purpose = dead_letter_rows.type)
       AND (since IS NULL OR r.created_at >= since) AND (until IS NULL OR r.created_at < until)
$$;
COMMENT ON FUNCTION ventros.dead_letter_rows(text, text, text, timestamptz, timestamptz) IS
    'Internal: the dead letters of ventros.dead_letters, unordered and unbounded (replay_dead_letters chooses from them)';

CREATE FUNCTION ventros.dead_letters(queue text DEFAULT NULL, tenant text DEFAULT NULL, type text DEFAULT NULL,
                                     since timestamptz DEFAULT NULL, until timestamptz DEFAULT NULL,
                                     max_rows integer DEFAULT 100)
RETURNS TABLE (queue_name text, tenant_id text, id uuid, item_type text, at timestamptz, attempts integer,
               last_error text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.require_platform_admin();
    PERFORM ventros.check_queue_name(dead_letters.queue);
    RETURN QUERY
    SELECT d.* FROM ventros.dead_letter_rows(dead_letters.queue, dead_letters.tenant, dead_letters.type,
                                             since, until) d
    ORDER BY d.at DESC, d.id
    LIMIT ventros.check_page_size(max_rows);
END
$$;
COMMENT ON FUNCTION ventros.dead_letters(text, text, text, timestamptz, timestamptz, integer) IS
    'Platform admins: dead letters of the outbox, inbox and HTTP dispatcher (queue NULL: all), newest first, filtered by tenant, type (event type, provider event, request purpose) and time range [since, until); at most max_rows (ventros.max_page_size)';

-- ---- audit ----------------------------------------------------------------------

-- operator_emit: an operator action's event, in the tenant it concerns.
-- aggregate NULL: the tenant as a whole, on its first project (nothing is
-- emitted for a tenant without one: nothing of it exists to audit).
CREATE FUNCTION ventros.operator_emit(tenant text, event_type text, aggregate_type text, aggregate_id uuid,
                                      payload jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target uuid := aggregate_id;
BEGIN
    PERFORM set_config('ventros.tenant', tenant, true);
    IF aggregate_type = 'project' AND target IS NULL THEN
        SELECT p.id INTO target FROM ventros.projects p WHERE p.tenant_id = tenant
         ORDER BY p.created_at, p.id LIMIT 1;
        IF target IS NULL THEN
            RETURN;
        END IF;
    END IF;
    PERFORM ventros.emit(event_type, aggregate_type, target, payload);
END
$$;
COMMENT ON FUNCTION ventros.operator_emit(text, text, text, uuid, jsonb) IS
    'Internal: emits an operator action''s event in the tenant it concerns (a tenant-wide one on the tenant''s first project)';

SELECT ventros.register_event_type('project.sends_paused',
    'A platform administrator paused the outbound requests of the whole tenant (they stay queued).');
SELECT ventros.register_event_type('project.sends_resumed',
    'A platform administrator resumed the outbound requests of the whole tenant.');
SELECT ventros.register_event_type('project.dead_letters_replayed',
    'A platform administrator put dead letters of the tenant back in their queue.');
SELECT ventros.register_event_type('channel.sends_paused',
    'A platform administrator paused the outbound requests of a channel (they stay queued).');
SELECT ventros.register_event_type('channel.sends_resumed',
    'A platform administrator resumed the outbound requests of a channel.');
SELECT ventros.register_event_type('channel.secret_rotated',
    'A platform administrator replaced the webhook secret of a channel (the payload names the key, never the value).');
SELECT ventros.register_event_type('webhook_subscription.sends_paused',
    'A platform administrator paused the deliveries of a webhook subscription (they stay queued).');
SELECT ventros.register_event_type('webhook_subscription.sends_resumed',
    'A platform administrator resumed the deliveries of a webhook subscription.');
SELECT ventros.register_event_type('webhook_subscription.secret_rotated',
    'A platform administrator replaced the signing secret of a webhook subscription.');

-- ---- replay ---------------------------------------------------------------------

-- replay_dead_letters: dead letters back in their queue, chosen by ids
-- and/or tenant, type and time range (the filters of dead_letters).  The
-- outbox's are replayed by ventros.replay_dead_events, the dispatcher's by
-- ventros.replay_http_request (with a fresh ventros.http_max_attempts), the
-- inbox's made due again with their attempts reset (the processors take
-- them at their next poll).  One project.dead_letters_replayed event per
-- tenant touched.  Returns how many.
CREATE FUNCTION ventros.replay_dead_letters(queue text DEFAULT NULL, ids uuid[] DEFAULT NULL,
                                            tenant text DEFAULT NULL, type text DEFAULT NULL,
                                            since timestamptz DEFAULT NULL, until timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- the tenants chosen inside are forgotten when it returns
SET ventros.tenant = ''
AS $$
DECLARE
    t record;
    n bigint;
    total bigint := 0;
BEGIN
    PERFORM ventros.require_platform_admin();
    PERFORM ventros.check_queue_name(replay_dead_letters.queue);
    FOR t IN
        SELECT d.queue_name AS queue, d.tenant_id, array_agg(d.id) AS ids
          FROM ventros.dead_letter_rows(replay_dead_letters.queue, replay_dead_letters.tenant,
                                        replay_dead_letters.type, since, until) d
         WHERE replay_dead_letters.ids IS NULL OR d.id = ANY (replay_dead_letters.ids)
         GROUP BY d.queue_name, d.tenant_id ORDER BY d.tenant_id, d.queue_name
    LOOP
        PERFORM set_config('ventros.tenant', t.tenant_id, true);
        IF t.queue = 'outbox' THEN
            n := ventros.replay_dead_events(t.tenant_id, t.ids, NULL);
        ELSIF t.queue = 'http' THEN
            PERFORM ventros.replay_http_request(x) FROM unnest(t.ids) x;
            n := cardinality(t.ids);
        ELSE
            UPDATE ventros.inbox i SET next_attempt_at = now(), attempts = 0
             WHERE i.tenant_id = t.tenant_id AND i.id = ANY (t.ids)
               AND i.status IN ('failed', 'unmatched') AND i.next_attempt_at IS NULL;
            GET DIAGNOSTICS n = ROW_COUNT;
        END IF;
        PERFORM ventros.operator_emit(t.tenant_id, 'project.dead_letters_replayed', 'project', NULL,
            jsonb_build_object('queue', t.queue, 'count', n, 'ids', to_jsonb(t.ids),
                               'filters', jsonb_strip_nulls(jsonb_build_object(
                                   'type', replay_dead_letters.type, 'since', since, 'until', until))));
        total := total + n;
    END LOOP;
    RETURN total;
END
$$;
COMMENT ON FUNCTION ventros.replay_dead_letters(text, uuid[], text, text, timestamptz, timestamptz) IS
    'Platform admins: puts dead letters back in their queue (queue NULL: all three), chosen by ids and/or tenant, type and time range [since, until); emits project.dead_letters_replayed per tenant; returns how many';

-- ---- pause and resume -----------------------------------------------------------

-- The scope of a pause from the ids given (none: the tenant), its target
-- checked to exist (P0002).
CREATE FUNCTION ventros.send_pause_target(tenant text, channel_id uuid, webhook_subscription_id uuid,
                                          OUT scope text, OUT target_id uuid)
RETURNS record
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF tenant IS NULL OR NOT EXISTS (SELECT 1 FROM ventros.projects p WHERE p.tenant_id = tenant) THEN
        RAISE EXCEPTION 'tenant "%" not found', left(tenant, 128) USING ERRCODE = 'P0002';
    END IF;
    IF channel_id IS NOT NULL AND webhook_subscription_id IS NOT NULL THEN
        RAISE EXCEPTION 'name a channel or a webhook subscription, not both' USING ERRCODE = '22023',
            HINT = 'Without either, the pause covers the whole tenant.';
    END IF;
    IF channel_id IS NOT NULL THEN
        IF NOT EXISTS (SELECT 1 FROM ventros.channels c
                        WHERE c.tenant_id = tenant AND c.id = channel_id AND c.deleted_at IS NULL) THEN
            PERFORM ventros.not_found('channel', channel_id);
        END IF;
        scope := 'channel';
        target_id := channel_id;
    ELSIF webhook_subscription_id IS NOT NULL THEN
        IF NOT EXISTS (SELECT 1 FROM ventros.webhook_subscriptions w
                        WHERE w.tenant_id = tenant AND w.id = webhook_subscription_id AND w.deleted_at IS NULL) THEN
            PERFORM ventros.not_found('webhook subscription', webhook_subscription_id);
        END IF;
        scope := 'webhook_subscription';
        target_id := webhook_subscription_id;
    ELSE
        scope := 'tenant';
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.send_pause_target(text, uuid, uuid) IS
    'Internal: the scope and target of a pause (tenant, channel or webhook subscription), checked to exist (P0002)';

CREATE FUNCTION ventros.pause_sends(tenant text, channel_id uuid DEFAULT NULL,
                                    webhook_subscription_id uuid DEFAULT NULL, reason text DEFAULT NULL)
RETURNS ventros.send_pauses
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET ventros.tenant = ''
AS $$
DECLARE
    target record;
    result ventros.send_pauses;
BEGIN
    PERFORM ventros.require_platform_admin();
    SELECT * INTO target FROM ventros.send_pause_target(tenant, channel_id, webhook_subscription_id);
    INSERT INTO ventros.send_pauses AS p (tenant_id, scope, target_id, paused_by, reason)
    VALUES (tenant, target.scope, target.target_id, ventros.actor(), ventros.check_length(reason, 500, 'reason'))
    ON CONFLICT ON CONSTRAINT send_pauses_once DO NOTHING
    RETURNING * INTO result;
    IF result IS NULL THEN
        RAISE EXCEPTION 'sends of % are already paused', coalesce(target.scope || ' ' || target.target_id, 'tenant ' || tenant)
            USING ERRCODE = '23505', HINT = 'ventros.resume_sends resumes them.';
    END IF;
    PERFORM ventros.operator_emit(tenant,
        CASE target.scope WHEN 'tenant' THEN 'project' ELSE target.scope END || '.sends_paused',
        CASE target.scope WHEN 'tenant' THEN 'project' ELSE target.scope END, target.target_id,
        jsonb_strip_nulls(jsonb_build_object('scope', target.scope, 'reason', reason)));
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.pause_sends(text, uuid, uuid, text) IS
    'Platform admins: pauses the outbound requests of a tenant, or of one of its channels or webhook subscriptions; they stay queued until resume_sends (23505 when already paused); emits <project|channel|webhook_subscription>.sends_paused';

CREATE FUNCTION ventros.resume_sends(tenant text, channel_id uuid DEFAULT NULL,
                                     webhook_subscription_id uuid DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET ventros.tenant = ''
AS $$
DECLARE
    target record;
    held uuid[];
    released integer;
BEGIN
    PERFORM ventros.require_platform_admin();
    SELECT * INTO target FROM ventros.send_pause_target(tenant, channel_id, webhook_subscription_id);
    SELECT array_agg(r.id) INTO held FROM ventros.http_requests r
     WHERE r.tenant_id = tenant AND r.status = 'pending'
       AND ventros.http_request_held(r.tenant_id, r.purpose, r.correlation_id);
    DELETE FROM ventros.send_pauses p
     WHERE p.tenant_id = tenant AND p.scope = target.scope AND p.target_id IS NOT DISTINCT FROM target.target_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'sends of % are not paused', coalesce(target.scope || ' ' || target.target_id, 'tenant ' || tenant)
            USING ERRCODE = 'P0002';
    END IF;
    -- The requests it held and no other pause holds are released: touched,
    -- which wakes the dispatcher at commit (ventros_http_wake), and counted.
    UPDATE ventros.http_requests r SET updated_at = now()
     WHERE r.tenant_id = tenant AND r.id = ANY (held) AND r.status = 'pending'
       AND NOT ventros.http_request_held(r.tenant_id, r.purpose, r.correlation_id);
    GET DIAGNOSTICS released = ROW_COUNT;
    PERFORM ventros.operator_emit(tenant,
        CASE target.scope WHEN 'tenant' THEN 'project' ELSE target.scope END || '.sends_resumed',
        CASE target.scope WHEN 'tenant' THEN 'project' ELSE target.scope END, target.target_id,
        jsonb_build_object('scope', target.scope));
    RETURN released;
END
$$;
COMMENT ON FUNCTION ventros.resume_sends(text, uuid, uuid) IS
    'Platform admins: resumes what pause_sends paused (P0002 when not paused); the held requests go out in their order; returns how many it released (those no other pause holds); emits <project|channel|webhook_subscription>.sends_resumed';

-- ---- secrets --------------------------------------------------------------------

-- A channel's webhook secret is a key of its (redacted) config: WAHA's
-- webhook_secret, which Ventros may choose (random when not given), or
-- Meta's app_secret, which Meta issues (new_secret required).  The change
-- goes through update_channel (version, channel.updated without config).
CREATE FUNCTION ventros.rotate_channel_secret(tenant text, channel_id uuid, new_secret text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET ventros.tenant = ''
AS $$
DECLARE
    c ventros.channels;
    key text;
    secret text;
BEGIN
    PERFORM ventros.require_platform_admin();
    PERFORM set_config('ventros.tenant', tenant, true);
    SELECT * INTO c FROM ventros.channels ch
     WHERE ch.tenant_id = tenant AND ch.id = channel_id AND ch.deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('channel', channel_id);
    END IF;
    key := CASE (SELECT p.provider FROM ventros.channel_providers p WHERE p.channel_type = c.type)
           WHEN 'waha' THEN 'webhook_secret' ELSE 'app_secret' END;
    IF new_secret IS NULL AND key = 'app_secret' THEN
        RAISE EXCEPTION 'a % channel''s app secret must be given', c.type USING ERRCODE = '22023',
            HINT = 'Meta issues the app secret: reset it in the app''s settings and pass it as new_secret.';
    END IF;
    IF length(new_secret) NOT BETWEEN 16 AND 256 THEN
        RAISE EXCEPTION 'a channel secret has 16 to 256 characters' USING ERRCODE = '22023';
    END IF;
    secret := coalesce(new_secret, replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''));
    PERFORM ventros.update_channel(channel_id, c.version,
                                   jsonb_build_object('config', c.config || jsonb_build_object(key, secret)));
    PERFORM ventros.operator_emit(tenant, 'channel.secret_rotated', 'channel', channel_id,
                                  jsonb_build_object('key', key));
    RETURN secret;
END
$$;
COMMENT ON FUNCTION ventros.rotate_channel_secret(text, uuid, text) IS
    'Platform admins: replaces a channel''s webhook secret (WAHA webhook_secret, random when not given; Meta app_secret, given); returns it once (the provider must be told); emits channel.updated and channel.secret_rotated';

CREATE FUNCTION ventros.rotate_subscription_secret(tenant text, webhook_subscription_id uuid,
                                                   new_secret text DEFAULT NULL,
                                                   overlap interval DEFAULT '24 hours')
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET ventros.tenant = ''
AS $$
DECLARE
    current_version integer;
    result ventros.webhook_subscriptions;
BEGIN
    PERFORM ventros.require_platform_admin();
    PERFORM set_config('ventros.tenant', tenant, true);
    SELECT w.version INTO current_version FROM ventros.webhook_subscriptions w
     WHERE w.tenant_id = tenant AND w.id = webhook_subscription_id AND w.deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('webhook subscription', webhook_subscription_id);
    END IF;
    result := ventros.rotate_webhook_secret(webhook_subscription_id, current_version, new_secret, overlap);
    PERFORM ventros.operator_emit(tenant, 'webhook_subscription.secret_rotated', 'webhook_subscription',
                                  webhook_subscription_id,
                                  jsonb_build_object('previous_secret_expires_at', result.previous_secret_expires_at));
    RETURN result.secret;
END
$$;
COMMENT ON FUNCTION ventros.rotate_subscription_secret(text, uuid, text, interval) IS
    'Platform admins: replaces a webhook subscription''s signing secret (ventros.rotate_webhook_secret: the previous one also signs until the overlap ends); returns the new one; emits webhook_subscription.updated and webhook_subscription.secret_rotated';

-- ---- metrics --------------------------------------------------------------------

-- metrics: the database's side of GET /metrics (ventros-http), one row per
-- sample: metric name, type, help, labels (Prometheus text: k="v",...),
-- value.  Called once per scrape by the front's login (granted to
-- ventros_authenticator); its cost is bounded by the queues' depths (the
-- figures above) and this month's enrichments (a BRIN range).  No tenant
-- appears in a label: the series do not grow with tenants.
CREATE FUNCTION ventros.metrics(OUT metric text, OUT kind text, OUT help text, OUT labels text,
                                OUT value double precision)
RETURNS SETOF record
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q record;
    w record;
    o record;
    h record;
    preloaded boolean := true;
BEGIN
    FOR q IN SELECT * FROM ventros.queue_figures() LOOP
        labels := format('queue="%s"', q.queue);
        metric := 'ventros_queue_depth'; kind := 'gauge';
        help := 'Items waiting in the queue (due or not)'; value := q.depth; RETURN NEXT;
        metric := 'ventros_queue_due'; help := 'Items waiting whose time has come'; value := q.due; RETURN NEXT;
        metric := 'ventros_queue_held';
        help := 'Items a pause holds (http only; ventros.pause_sends)'; value := q.held; RETURN NEXT;
        IF q.in_flight IS NOT NULL THEN
            metric := 'ventros_queue_in_flight'; help := 'Items claimed by a worker, not yet finished';
            value := q.in_flight; RETURN NEXT;
        END IF;
        metric := 'ventros_queue_oldest_age_seconds'; help := 'Age of the oldest waiting item (0 when empty)';
        value := coalesce(extract(epoch FROM q.oldest_age), 0); RETURN NEXT;
        metric := 'ventros_dead_letters'; help := 'Dead letters of the queue (ventros.dead_letters)';
        value := q.dead; RETURN NEXT;
        metric := 'ventros_queue_arrived_last_5m'; help := 'Items that arrived in the last 5 minutes';
        value := q.arrived_last_5m; RETURN NEXT;
        metric := 'ventros_queue_done_last_5m';
        help := 'Items finished in the last 5 minutes (of those that arrived within the hour)';
        value := q.done_last_5m; RETURN NEXT;
    END LOOP;
    labels := '';
    metric := 'ventros_sends_paused'; kind := 'gauge';
    help := 'Pauses in force (ventros.send_pauses)';
    value := (SELECT count(*) FROM ventros.send_pauses); RETURN NEXT;
    metric := 'ventros_enrichment_spend_usd'; kind := 'gauge';
    help := 'What enrichments cost this month across tenants, in US dollars';
    value := (SELECT coalesce(sum(e.cost), 0) FROM ventros.message_enrichments e
               WHERE e.created_at >= date_trunc('month', now()) AND e.cost IS NOT NULL);
    RETURN NEXT;
    -- The workers' shared counters need ventros preloaded (55000 without:
    -- then no worker series at all).
    BEGIN
        SELECT * INTO o FROM ventros.outbox_worker_state();
        SELECT * INTO h FROM ventros.http_dispatcher_state();
    EXCEPTION WHEN object_not_in_prerequisite_state THEN
        preloaded := false;
    END;
    IF NOT preloaded THEN
        RETURN;
    END IF;
    metric := 'ventros_worker_up'; kind := 'gauge';
    help := 'A background worker slot is running (1) or not (0)';
    FOR w IN SELECT * FROM ventros.worker_status() LOOP
        labels := format('kind="%s",slot="%s"', w.kind, w.slot);
        value := CASE WHEN w.pid IS NOT NULL THEN 1 ELSE 0 END;
        RETURN NEXT;
    END LOOP;
    labels := '';
    metric := 'ventros_broker_connected'; kind := 'gauge';
    help := 'The outbox publisher is connected to RabbitMQ (1) or not (0)';
    value := CASE WHEN o.connected THEN 1 ELSE 0 END; RETURN NEXT;
    metric := 'ventros_events_published_total'; kind := 'counter';
    help := 'Events the outbox publisher published (since the worker started)';
    value := coalesce(o.published_total, 0); RETURN NEXT;
    metric := 'ventros_events_publish_failures_total';
    help := 'Failed publish attempts of the outbox publisher (since the worker started)';
    value := coalesce(o.failed_total, 0); RETURN NEXT;
    metric := 'ventros_dispatcher_attempts_total'; kind := 'counter';
    help := 'Attempts of the HTTP dispatcher by outcome (since the server started)';
    labels := 'outcome="succeeded"'; value := coalesce(h.succeeded, 0); RETURN NEXT;
    labels := 'outcome="failed"'; value := coalesce(h.failed_attempts, 0); RETURN NEXT;
    labels := 'outcome="refused"'; value := coalesce(h.refused, 0); RETURN NEXT;
END
$$;
COMMENT ON FUNCTION ventros.metrics() IS
    'The database''s samples for GET /metrics (ventros-http): queue figures, workers, broker connection, events published, dispatcher attempts, pauses, enrichment spend; one row per sample, no tenant labels';

GRANT EXECUTE ON FUNCTION ventros.queue_status(), ventros.dead_letters(text, text, text, timestamptz, timestamptz, integer),
    ventros.replay_dead_letters(text, uuid[], text, text, timestamptz, timestamptz),
    ventros.pause_sends(text, uuid, uuid, text), ventros.resume_sends(text, uuid, uuid),
    ventros.rotate_channel_secret(text, uuid, text),
    ventros.rotate_subscription_secret(text, uuid, text, interval)
    TO ventros_platform_admin;
GRANT EXECUTE ON FUNCTION ventros.metrics() TO ventros_authenticator, ventros_platform_admin;

CREATE OR REPLACE VIEW ventros.http_rpc_functions WITH (security_invoker = true) AS
SELECT p.oid::pg_catalog.regprocedure AS function,
       p.proname::text AS name,
       n.nspname::text AS schema_name,
       coalesce(a.names, '{}') AS arg_names,
       coalesce(a.types, '{}') AS arg_types,
       coalesce(a.categories, '') AS arg_categories,
       p.pronargs - p.pronargdefaults AS required_args,
       pg_catalog.format_type(p.prorettype, NULL) AS result_type,
       rt.typtype AS result_kind,
       rt.typrelid AS result_relid,
       p.proretset AS returns_set,
       coalesce(o.columns, c.columns) AS result_columns,
       CASE WHEN rt.typtype = 'd' AND rt.typname ~ '^[a-z]+/[-+.a-z0-9]+$' THEN rt.typname::text END AS result_media_type,
       p.provolatile <> 'v' AS read_only,
       coalesce(pg_catalog.obj_description(p.oid, 'pg_proc'), '') AS description,
       ARRAY(SELECT r FROM pg_catalog.unnest(ARRAY['ventros_viewer', 'ventros_agent', 'ventros_admin']) r
             WHERE pg_catalog.has_function_privilege(r, p.oid, 'EXECUTE')) AS roles,
       coalesce(pa.platform_only, false) AS platform_only
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
JOIN pg_catalog.pg_type rt ON rt.oid = p.prorettype
-- the input arguments (IN, INOUT, VARIADIC), in order
LEFT JOIN LATERAL (
    SELECT pg_catalog.array_agg(coalesce(x.name, '') ORDER BY x.n) AS names,
           pg_catalog.array_agg(pg_catalog.format_type(x.type, NULL) ORDER BY x.n) AS types,
           pg_catalog.string_agg(t.typcategory::text, '' ORDER BY x.n) AS categories,
           pg_catalog.bool_or(t.typtype = 'p' OR coalesce(x.name, '') = '') AS unservable
    FROM unnest(coalesce(p.proallargtypes, p.proargtypes::pg_catalog.oid[]),
                           coalesce(p.proargnames, '{}'),
                           coalesce(p.proargmodes, '{}')) WITH ORDINALITY AS x(type, name, mode, n)
    JOIN pg_catalog.pg_type t ON t.oid = x.type
    WHERE coalesce(x.mode, 'i') IN ('i', 'b', 'v')
) a ON true
-- the result's columns: its OUT, INOUT and TABLE arguments ...
LEFT JOIN LATERAL (
    SELECT pg_catalog.json_agg(pg_catalog.json_build_object('name', x.name, 'type', pg_catalog.format_type(x.type, NULL))
                               ORDER BY x.n) AS columns
    FROM unnest(p.proallargtypes, p.proargnames, p.proargmodes) WITH ORDINALITY AS x(type, name, mode, n)
    WHERE x.mode IN ('o', 'b', 't')
) o ON true
-- ... or its composite type's attributes (multi-argument unnest is
-- syntax, ROWS FROM, which takes no schema)
LEFT JOIN LATERAL (
    SELECT pg_catalog.json_agg(pg_catalog.json_build_object('name', att.attname,
                                                            'type', pg_catalog.format_type(att.atttypid, att.atttypmod))
                               ORDER BY att.attnum) AS columns
    FROM pg_catalog.pg_attribute att
    WHERE att.attrelid = rt.typrelid AND att.attnum > 0 AND NOT att.attisdropped
) c ON rt.typtype = 'c'
-- platform functions: granted to ventros_platform_admin itself (not through
-- a tenant role it holds) and to no tenant role; served to a request acting
-- as ventros_platform_admin only (src/http/rpc.c), never listed for tenants
LEFT JOIN LATERAL (
    SELECT true AS platform_only
    WHERE n.nspname = 'ventros'
      AND EXISTS (SELECT 1 FROM pg_catalog.aclexplode(p.proacl) x
                  JOIN pg_catalog.pg_roles g ON g.oid = x.grantee
                  WHERE g.rolname = 'ventros_platform_admin' AND x.privilege_type = 'EXECUTE')
      AND NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(ARRAY['ventros_viewer', 'ventros_agent', 'ventros_admin']) r
                      WHERE pg_catalog.has_function_privilege(r, p.oid, 'EXECUTE'))
) pa ON true
WHERE p.prokind = 'f'
  AND p.prorettype NOT IN ('pg_catalog.trigger'::pg_catalog.regtype, 'pg_catalog.event_trigger'::pg_catalog.regtype)
  AND NOT coalesce(a.unservable, false)
  AND p.provariadic = 0
  AND NOT (p.prorettype = 'pg_catalog.record'::pg_catalog.regtype AND o.columns IS NULL)
  AND (n.nspname = 'api'
       OR (n.nspname = 'ventros'
           AND (EXISTS (SELECT 1 FROM pg_catalog.unnest(ARRAY['ventros_viewer', 'ventros_agent', 'ventros_admin']) r
                        WHERE pg_catalog.has_function_privilege(r, p.oid, 'EXECUTE'))
                OR pa.platform_only)
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_proc q JOIN pg_catalog.pg_namespace qn ON qn.oid = q.pronamespace
                           WHERE qn.nspname = 'api' AND q.proname = p.proname)));
COMMENT ON VIEW ventros.http_rpc_functions IS
    'The functions ventros-http serves under /rpc/<name>: schema api''s, those of ventros a tenant role may execute (arguments, result, comment, roles), and those granted to ventros_platform_admin only (platform_only: served to platform administrators'' tokens alone)';

-- ---- conversation intelligence and the AI agent (sql/98_intelligence.sql, sql/98_intelligence_agent.sql)
-- Chat providers on the enrichment mechanism, ai_completions, summaries on
-- demand and by the automation action summarize_session, conditions on the
-- session's sentiment and topics, assignment of an ended session for review,
-- and the AI agent with hand-off (docs/ai.md).  The changed functions first,
-- then the two new files as they are.

CREATE OR REPLACE FUNCTION ventros.automation_catalogue() RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT '{
        "types": ["pipeline_based", "follow_up", "reengagement", "onboarding", "event", "scheduled", "scheduled_report",
                  "time_notification", "webhook", "custom"],
        "triggers": {"session": ["session.ended", "session.timeout", "session.resolved", "session.escalated", "no_response.timeout"],
                     "message": ["message.received"],
                     "pipeline": ["status.changed", "stage.completed"],
                     "temporal": ["after.delay", "scheduled", "date_field.reached"],
                     "transaction": ["purchase.completed", "payment.received", "refund.issued", "cart.abandoned", "order.shipped"],
                     "behavior": ["page.visited", "form.submitted", "file.downloaded"]},
        "actions": ["send_message", "send_template", "change_pipeline_status", "assign_agent", "assign_to_queue", "create_task",
                    "add_tag", "remove_tag", "update_custom_field", "create_note", "create_agent_report", "send_webhook",
                    "trigger_workflow", "notify_agent", "notify_coordinator", "send_email",
                    "assign_team", "set_field", "set_custom_field", "send_canned_response", "add_note",
                    "enroll_sequence", "unenroll_sequence", "add_to_list", "remove_from_list", "close_session",
                    "call_webhook", "emit_event", "notify_agents", "wait", "snooze_session", "summarize_session"],
        "condition_operators": ["eq", "ne", "gt", "lt", "gte", "lte", "contains", "not_contains", "starts_with", "ends_with",
                                "in", "not_in", "is_null", "is_not_null", "matches"],
        "logic_operators": ["AND", "OR"],
        "schedule_types": ["once", "daily", "weekly", "monthly", "cron"]
    }'::jsonb
$$;
COMMENT ON FUNCTION ventros.automation_catalogue() IS
    'Discovery: automation types, built-in triggers by category, actions, condition and logic operators, schedule types';


CREATE OR REPLACE FUNCTION ventros.automation_condition_valid(c jsonb) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF jsonb_typeof(c) <> 'object' THEN
        RETURN false;
    ELSIF c ? 'all' OR c ? 'any' THEN
        RETURN jsonb_typeof(coalesce(c->'all', c->'any')) = 'array'
           AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(coalesce(c->'all', c->'any')) x
                           WHERE NOT ventros.automation_condition_valid(x));
    ELSIF c ? 'not' THEN
        RETURN ventros.automation_condition_valid(c->'not');
    ELSIF c ? 'keyword' THEN
        RETURN jsonb_typeof(c->'keyword') IN ('string', 'array');
    ELSIF c ? 'regex' THEN
        RETURN jsonb_typeof(c->'regex') = 'string';
    ELSIF c ? 'tag' THEN
        RETURN jsonb_typeof(c->'tag') = 'string';
    ELSIF c ? 'time_window' THEN
        RETURN jsonb_typeof(c->'time_window') = 'object'
           AND coalesce(c->'time_window'->>'from', '') ~ '^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$'
           AND coalesce(c->'time_window'->>'to', '') ~ '^([01][0-9]|2[0-4]):[0-5][0-9](:[0-5][0-9])?$'
           AND (NOT c->'time_window' ? 'weekdays' OR jsonb_typeof(c->'time_window'->'weekdays') = 'array');
    ELSIF c ? 'weekdays' THEN
        RETURN jsonb_typeof(c->'weekdays') = 'array';
    ELSIF c ? 'sentiment' THEN
        RETURN jsonb_typeof(c->'sentiment') IN ('string', 'array');
    ELSIF c ? 'sentiment_below' THEN
        RETURN jsonb_typeof(c->'sentiment_below') = 'number';
    ELSIF c ? 'topic' THEN
        RETURN jsonb_typeof(c->'topic') IN ('string', 'array');
    END IF;
    RETURN c ? 'field' AND jsonb_typeof(c->'field') = 'string'
       AND coalesce((c->'operator') <@ (ventros.automation_catalogue()->'condition_operators'), false);
END
$$;
COMMENT ON FUNCTION ventros.automation_condition_valid(jsonb) IS
    'True when one automation condition has a documented shape: {field, operator, value}, {keyword}, {regex}, {tag}, {time_window}, {weekdays}, {sentiment}, {sentiment_below}, {topic}, or {all}/{any}/{not} of conditions';


CREATE OR REPLACE FUNCTION ventros.automation_condition_holds(c jsonb, ctx jsonb, tz text, at timestamptz) RETURNS boolean
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    txt text;
    w jsonb;
BEGIN
    -- the common shape first: a field, an operator, a value (and no other kind)
    IF c ? 'field' AND NOT c ?| ARRAY['all', 'any', 'not', 'keyword', 'regex', 'tag', 'time_window', 'weekdays',
                                      'sentiment', 'sentiment_below', 'topic'] THEN
        RETURN ventros.automation_compare(ventros.automation_field(ctx, c->>'field'), c->>'operator', c->'value');
    ELSIF c ? 'all' THEN
        RETURN NOT EXISTS (SELECT 1 FROM jsonb_array_elements(c->'all') x
                           WHERE NOT ventros.automation_condition_holds(x, ctx, tz, at));
    ELSIF c ? 'any' THEN
        RETURN EXISTS (SELECT 1 FROM jsonb_array_elements(c->'any') x
                       WHERE ventros.automation_condition_holds(x, ctx, tz, at));
    ELSIF c ? 'not' THEN
        RETURN NOT ventros.automation_condition_holds(c->'not', ctx, tz, at);
    ELSIF c ? 'keyword' THEN
        -- whole words, case-insensitive; any of a list
        txt := lower(coalesce(ctx #>> '{message,text}', ctx #>> '{payload,text}', ''));
        RETURN EXISTS (SELECT 1 FROM jsonb_array_elements_text(CASE jsonb_typeof(c->'keyword') WHEN 'array' THEN c->'keyword'
                                                                    ELSE jsonb_build_array(c->'keyword') END) k
                       WHERE btrim(k) <> ''
                         AND strpos(' ' || regexp_replace(txt, '[^[:alnum:]_]+', ' ', 'g') || ' ',
                                    ' ' || btrim(regexp_replace(lower(k), '[^[:alnum:]_]+', ' ', 'g')) || ' ') > 0);
    ELSIF c ? 'regex' THEN
        RETURN lower(coalesce(ctx #>> '{message,text}', ctx #>> '{payload,text}', '')) ~* (c->>'regex');
    ELSIF c ? 'tag' THEN
        RETURN coalesce(ctx #> '{contact,tags}' ? (c->>'tag'), false);
    ELSIF c ? 'time_window' THEN
        w := c->'time_window';
        IF w ? 'weekdays' AND NOT (w->'weekdays') @> to_jsonb(extract(isodow FROM at AT TIME ZONE tz)::integer) THEN
            RETURN false;
        END IF;
        RETURN CASE WHEN (w->>'from')::time <= (w->>'to')::time
                    THEN (at AT TIME ZONE tz)::time >= (w->>'from')::time
                         AND ((at AT TIME ZONE tz)::time < (w->>'to')::time OR w->>'to' LIKE '24:%')
                    ELSE (at AT TIME ZONE tz)::time >= (w->>'from')::time OR (at AT TIME ZONE tz)::time < (w->>'to')::time END;
    ELSIF c ? 'weekdays' THEN
        RETURN (c->'weekdays') @> to_jsonb(extract(isodow FROM at AT TIME ZONE tz)::integer);
    ELSIF c ? 'sentiment' THEN
        -- the session's sentiment label (its AI summary, sql/98_intelligence.sql): one or any of a list
        RETURN coalesce(CASE jsonb_typeof(c->'sentiment') WHEN 'array' THEN c->'sentiment'
                             ELSE jsonb_build_array(c->'sentiment') END @> jsonb_build_array(ctx #> '{session,sentiment}'), false);
    ELSIF c ? 'sentiment_below' THEN
        RETURN (ctx #>> '{session,sentiment_score}')::numeric < (c->>'sentiment_below')::numeric;
    ELSIF c ? 'topic' THEN
        -- any of the topics, case-insensitive
        RETURN EXISTS (SELECT 1 FROM jsonb_array_elements_text(CASE jsonb_typeof(c->'topic') WHEN 'array' THEN c->'topic'
                                                                    ELSE jsonb_build_array(c->'topic') END) t,
                                     jsonb_array_elements_text(CASE jsonb_typeof(ctx #> '{session,topics}') WHEN 'array'
                                                                    THEN ctx #> '{session,topics}' END) st
                       WHERE lower(st) = lower(t));
    END IF;
    RETURN ventros.automation_compare(ventros.automation_field(ctx, c->>'field'), c->>'operator', c->'value');
END
$$;
COMMENT ON FUNCTION ventros.automation_condition_holds(jsonb, jsonb, text, timestamptz) IS
    'Whether one condition holds in a rule''s context at an instant, in the tenant''s timezone (time windows and weekdays: ISO, 1 = Monday)';


CREATE OR REPLACE FUNCTION ventros.automation_act(a jsonb, ctx jsonb, rule ventros.automations) RETURNS jsonb
LANGUAGE plpgsql
AS $$
DECLARE
    kind text := a->>'type';
    p jsonb := coalesce(a->'params', '{}');
    contact uuid := ventros.automation_uuid(ctx #>> '{contact,id}');
    session uuid := ventros.automation_uuid(ctx #>> '{session,id}');
    channel uuid := coalesce(ventros.automation_uuid(p->>'channel_id'), ventros.automation_uuid(ctx #>> '{channel,id}'));
    c ventros.contacts;
    tags text[];
    txt text;
    id uuid;
    e ventros.sequence_enrollments;
BEGIN
    CASE kind
    WHEN 'add_tag', 'remove_tag' THEN
        PERFORM ventros.automation_require(contact::text, 'a contact', kind);
        SELECT * INTO c FROM ventros.contacts x WHERE x.tenant_id = rule.tenant_id AND x.id = contact FOR UPDATE;
        tags := CASE kind WHEN 'add_tag' THEN (SELECT array_agg(DISTINCT t ORDER BY t) FROM unnest(c.tags || (p->>'tag')) t)
                          ELSE array_remove(c.tags, p->>'tag') END;
        PERFORM ventros.automation_require(p->>'tag', 'params.tag', kind);
        IF tags IS DISTINCT FROM c.tags AND NOT (tags @> c.tags AND c.tags @> tags) THEN
            PERFORM ventros.update_contact(contact, c.version, jsonb_build_object('tags', tags));
        END IF;
    WHEN 'set_field' THEN
        PERFORM ventros.automation_require(contact::text, 'a contact', kind);
        SELECT * INTO c FROM ventros.contacts x WHERE x.tenant_id = rule.tenant_id AND x.id = contact FOR UPDATE;
        PERFORM ventros.update_contact(contact, c.version,
                                       jsonb_build_object(ventros.automation_require(p->>'field', 'params.field', kind), p->'value'));
    WHEN 'set_custom_field', 'update_custom_field' THEN
        PERFORM ventros.set_contact_custom_field(ventros.automation_require(contact::text, 'a contact', kind)::uuid,
                                                 ventros.automation_require(coalesce(p->>'key', p->>'field'), 'params.key', kind),
                                                 coalesce(p->>'field_type', 'text'), p->'value');
    WHEN 'change_pipeline_status' THEN
        PERFORM ventros.change_contact_pipeline_status(ventros.automation_require(contact::text, 'a contact', kind)::uuid,
                                                       ventros.automation_require(p->>'status_id', 'params.status_id', kind)::uuid,
                                                       notes => 'automation ' || rule.name);
    WHEN 'assign_agent' THEN
        -- params.reason review: an ended session too (a supervisor after a negative summary)
        PERFORM ventros.assign_session_agent(ventros.automation_require(session::text, 'a session', kind)::uuid,
                                             ventros.automation_require(p->>'agent_id', 'params.agent_id', kind)::uuid,
                                             reason => coalesce(p->>'reason', 'manual'));
    WHEN 'assign_team' THEN
        PERFORM ventros.assign_session_to_team(ventros.automation_require(session::text, 'a session', kind)::uuid,
                                               ventros.automation_require(p->>'team_id', 'params.team_id', kind)::uuid);
    WHEN 'send_message', 'send_canned_response' THEN
        PERFORM ventros.automation_require(contact::text, 'a contact', kind);
        txt := CASE kind WHEN 'send_message' THEN ventros.automation_require(p->>'text', 'params.text', kind)
                         ELSE ventros.render_canned_response(ventros.automation_require(p->>'shortcut', 'params.shortcut', kind),
                                                             contact) END;
        txt := replace(replace(txt, '{{contact.name}}', coalesce(ctx #>> '{contact,name}', '')),
                       '{{contact.phone}}', coalesce(ctx #>> '{contact,phone}', ''));
        SELECT m.id INTO id FROM ventros.send_message(ventros.automation_require(channel::text, 'a channel', kind)::uuid,
                                                      contact, txt, source => 'trigger') m;
        RETURN jsonb_build_object('type', kind, 'message_id', id);
    WHEN 'send_template' THEN
        SELECT m.id INTO id FROM ventros.send_message(ventros.automation_require(channel::text, 'a channel', kind)::uuid,
                                                      ventros.automation_require(contact::text, 'a contact', kind)::uuid,
                                                      source => 'trigger',
                                                      template_name => ventros.automation_require(p->>'template_name', 'params.template_name', kind),
                                                      template_language => coalesce(p->>'template_language', p->>'language'),
                                                      template_components => p->'template_components') m;
        RETURN jsonb_build_object('type', kind, 'message_id', id);
    WHEN 'add_note', 'create_note' THEN
        SELECT n.id INTO id FROM ventros.add_note(ventros.automation_require(contact::text, 'a contact', kind)::uuid,
                                                  ventros.automation_require(coalesce(p->>'content', p->>'text'), 'params.content', kind),
                                                  ventros.system_agent_id('trigger'), author_type => 'system',
                                                  author_name => 'automation ' || rule.name, session_id => session) n;
        RETURN jsonb_build_object('type', kind, 'note_id', id);
    WHEN 'enroll_sequence' THEN
        -- unless_enrolled (the rule a sequence keeps): a contact enrolled already is left alone
        IF coalesce((p->>'unless_enrolled')::boolean, false) AND EXISTS (
            SELECT 1 FROM ventros.sequence_enrollments x
             WHERE x.tenant_id = rule.tenant_id AND x.contact_id = contact AND x.status IN ('active', 'paused')
               AND x.sequence_id = ventros.automation_uuid(p->>'sequence_id')) THEN
            RETURN jsonb_build_object('type', kind, 'enrolled', false, 'reason', 'enrolled already');
        END IF;
        SELECT x.id INTO id FROM ventros.enroll_in_sequence(ventros.automation_require(p->>'sequence_id', 'params.sequence_id', kind)::uuid,
                                                            ventros.automation_require(contact::text, 'a contact', kind)::uuid) x;
        RETURN jsonb_build_object('type', kind, 'enrolled', true, 'enrollment_id', id);
    WHEN 'unenroll_sequence' THEN
        FOR e IN SELECT * FROM ventros.sequence_enrollments x
                  WHERE x.tenant_id = rule.tenant_id AND x.contact_id = contact AND x.status IN ('active', 'paused')
                    AND x.sequence_id = ventros.automation_require(p->>'sequence_id', 'params.sequence_id', kind)::uuid LOOP
            PERFORM ventros.set_sequence_enrollment_status(e.id, e.version, 'exited', 'automation');
        END LOOP;
    WHEN 'add_to_list' THEN
        PERFORM ventros.add_contact_to_list(ventros.automation_require(p->>'list_id', 'params.list_id', kind)::uuid,
                                            ventros.automation_require(contact::text, 'a contact', kind)::uuid);
    WHEN 'remove_from_list' THEN
        PERFORM ventros.remove_contact_from_list(ventros.automation_require(p->>'list_id', 'params.list_id', kind)::uuid,
                                                 ventros.automation_require(contact::text, 'a contact', kind)::uuid);
    WHEN 'close_session' THEN
        PERFORM ventros.close_session(ventros.automation_require(session::text, 'a session', kind)::uuid,
                                      end_reason => 'system_close');
    WHEN 'snooze_session' THEN
        -- params.minutes from now, or params.until (an instant)
        PERFORM ventros.snooze_session(ventros.automation_require(session::text, 'a session', kind)::uuid,
            coalesce((p->>'until')::timestamptz,
                     now() + make_interval(mins => ventros.automation_require(p->>'minutes', 'params.minutes or params.until', kind)::integer)));
    WHEN 'summarize_session' THEN
        -- a chat completion asked now, answered after commit (sql/98_intelligence.sql)
        RETURN jsonb_build_object('type', kind, 'completion_id',
            (ventros.summarize_session(ventros.automation_require(session::text, 'a session', kind)::uuid)).id);
    WHEN 'call_webhook', 'send_webhook' THEN
        RETURN ventros.automation_call_webhook(p, ctx, rule);
    WHEN 'emit_event' THEN
        RETURN jsonb_build_object('type', kind, 'event_type',
            ventros.emit_custom_event(ventros.automation_require(p->>'name', 'params.name', kind),
                                      coalesce(p->'payload', '{}') || jsonb_build_object('automation_id', rule.id,
                                                                                        'contact_id', contact)));
    WHEN 'notify_agents', 'notify_agent', 'notify_coordinator' THEN
        PERFORM ventros.emit('automation.agents_notified', 'automation', rule.id,
            jsonb_build_object('message', coalesce(p->>'message', p->>'text', rule.name), 'agent_ids', p->'agent_ids',
                               'agent_id', p->'agent_id', 'team_id', p->'team_id', 'contact_id', contact,
                               'session_id', session, 'event_id', ctx #> '{event,id}'),
            rule.version);
    ELSE
        RAISE EXCEPTION 'action "%" is not supported by the automation executor', left(kind, 64) USING ERRCODE = '0A000',
            HINT = 'See docs/automation.md for the actions the executor runs.';
    END CASE;
    RETURN jsonb_build_object('type', kind);
END
$$;
COMMENT ON FUNCTION ventros.automation_act(jsonb, jsonb, ventros.automations) IS
    'Runs one automation action through the command a user would call (tags and fields: update_contact; send_message; add_note; enroll_in_sequence; ...); returns what it did; 0A000 for an action the executor does not run';


CREATE OR REPLACE FUNCTION ventros.set_session_agent(s ventros.sessions, agent_id uuid, reason text, at timestamptz)
RETURNS ventros.sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a ventros.agents;
    result ventros.sessions;
BEGIN
    IF reason IS NULL OR reason NOT IN ('manual', 'round_robin', 'capacity', 'least_open', 'inactivity', 'no_response',
                                        'agent_offline', 'workload_balance', 'review') THEN
        RAISE EXCEPTION 'unknown assignment reason "%"', left(reason, 32) USING ERRCODE = '22023',
            HINT = 'Use manual, round_robin, capacity, least_open, inactivity, no_response, agent_offline, workload_balance or review.';
    END IF;
    -- review: an ended session given to someone to look at (a supervisor
    -- after a negative summary, docs/ai.md); every other reason needs it active
    IF s.status <> 'active' AND NOT (reason = 'review' AND s.status IN ('ended', 'expired', 'manually_closed')) THEN
        RAISE EXCEPTION 'session % is %', s.id, s.status USING ERRCODE = 'VN002',
            DETAIL = 'Agents are assigned to active sessions only.';
    END IF;
    SELECT * INTO a FROM ventros.agents g WHERE g.tenant_id = s.tenant_id AND g.id = set_session_agent.agent_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'agent % not found', agent_id USING ERRCODE = 'P0002';
    END IF;
    IF a.type IN ('virtual', 'system') OR NOT a.active THEN
        RAISE EXCEPTION 'agent % cannot be assigned', agent_id USING ERRCODE = '22023',
            DETAIL = 'Virtual, system and inactive agents are never assigned.';
    END IF;
    IF s.assigned_agent_id = a.id THEN
        RETURN s;
    END IF;
    UPDATE ventros.sessions t
    SET assigned_agent_id = a.id, assigned_at = coalesce(at, now()),
        agent_ids = CASE WHEN a.id = ANY (t.agent_ids) THEN t.agent_ids ELSE t.agent_ids || a.id END,
        agent_transfers = t.agent_transfers + (t.assigned_agent_id IS NOT NULL)::integer,
        version = s.version
    WHERE t.tenant_id = s.tenant_id AND t.id = s.id
    RETURNING * INTO result;
    PERFORM ventros.emit('session.agent_assigned', 'session', s.id,
                         jsonb_build_object('agent_id', a.id, 'previous_agent_id', s.assigned_agent_id,
                                            'team_id', s.team_id, 'reason', reason,
                                            'transfer', s.assigned_agent_id IS NOT NULL), result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.set_session_agent(ventros.sessions, uuid, text, timestamptz) IS
    'Assigns (or transfers, counting agent_transfers) a locked active session to an agent at an instant (internal: the commands and ticks call it), or an ended one for review (reason review); emits session.updated and session.agent_assigned with the reason';


-- Conversation intelligence (docs/ai.md, "Conversation intelligence"): a
-- session's summary, sentiment, language, topics and next best action from
-- a chat-completions provider (the OpenAI-compatible API: OpenAI, Groq, a
-- self-hosted server), and the completions the AI agent asks for
-- (sql/98_intelligence_agent.sql).
--
-- The enrichment mechanism, reused (sql/98_enrichment*.sql):
--   - the providers are rows of ventros.enrichment_providers of kind chat
--     (openai_chat, groq_chat) with their prices; a tenant gives each its
--     key, base URL and model with configure_enrichment_provider, as for
--     transcription;
--   - a completion's request is a dispatcher request of purpose
--     enrichment.<provider> (enrichment_enqueue), whose preparer
--     (enrichment_request_headers) adds the key at claim time: no key on any
--     row, view or event;
--   - cost = usage x prices (enrichment_cost); the tenant's monthly cap
--     (enrichment_settings.monthly_cap) counts enrichments and completions.
-- What is its own: ventros.ai_completions (one row per request for a
-- summary or an agent reply, its status, attempts, retry time, usage, cost
-- and the validated answer), the tenant's prompts and retry policy
-- (ventros.ai_settings), and the answer handler ai_chat_answer.
--
-- When: on demand (ventros.summarize_session(session_id)) and when a
-- session ends, through an automation rule on session.ended with the action
-- summarize_session (the executor runs it after the session's transaction
-- committed, never inside it).  A malformed answer or a provider failure
-- fails the completion with an error code and an event; it is tried again
-- after retry_delay x 2^(attempts - 1) (or the provider's Retry-After), at
-- most max_attempts times (ventros.retry_ai_completions, scheduled).

-- ---- providers ----------------------------------------------------------------------

ALTER TABLE ventros.enrichment_providers DROP CONSTRAINT enrichment_providers_kind;
ALTER TABLE ventros.enrichment_providers ADD CONSTRAINT enrichment_providers_kind
    CHECK (kind IN ('transcription', 'vision', 'document', 'chat'));

-- The request of a chat provider: POST <base_url>/v1/chat/completions with
-- cfg.messages, asking for a JSON object.  (The enrichment builders' shape;
-- a chat provider is never on a media route: no messages, 22023.)
CREATE FUNCTION ventros.chat_completion_request(e ventros.message_enrichments, cfg jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF jsonb_typeof(cfg->'messages') IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'a chat completion needs messages' USING ERRCODE = '22023',
            HINT = 'Chat providers answer summaries and the AI agent, not media routes.';
    END IF;
    RETURN jsonb_build_object(
        'method', 'POST',
        'url', (cfg->>'base_url') || '/v1/chat/completions',
        'headers', jsonb_build_object('Content-Type', 'application/json'),
        'body', jsonb_build_object('model', cfg->>'model', 'messages', cfg->'messages',
                                   'temperature', coalesce((cfg->>'temperature')::numeric, 0.2),
                                   'response_format', jsonb_build_object('type', 'json_object')));
END
$$;
COMMENT ON FUNCTION ventros.chat_completion_request(ventros.message_enrichments, jsonb) IS
    'Chat-completions request (OpenAI-compatible): POST <base_url>/v1/chat/completions, model, messages, temperature, response_format json_object';

SELECT ventros.register_enrichment_provider('openai_chat', 'chat', 'https://api.openai.com', 'gpt-4o-mini',
    'ventros.chat_completion_request(ventros.message_enrichments, jsonb)', 1,
    '{"per_input_token": 0.00000015, "per_output_token": 0.0000006}', timeout_ms => 60000,
    description => 'OpenAI chat completions (or any OpenAI-compatible server: set its base_url and model)');
SELECT ventros.register_enrichment_provider('groq_chat', 'chat', 'https://api.groq.com/openai', 'llama-3.1-8b-instant',
    'ventros.chat_completion_request(ventros.message_enrichments, jsonb)', 1,
    '{"per_input_token": 0.00000005, "per_output_token": 0.00000008}', timeout_ms => 60000,
    description => 'Groq chat completions (OpenAI-compatible)');

-- ---- per tenant -------------------------------------------------------------------------

CREATE TABLE ventros.ai_settings (
    tenant_id          text        NOT NULL DEFAULT ventros.current_tenant(),
    provider           text        NOT NULL DEFAULT 'openai_chat' REFERENCES ventros.enrichment_providers (provider),
    summary_prompt     text,
    agent_prompt       text,
    temperature        numeric     NOT NULL DEFAULT 0.2,
    retry_delay        interval    NOT NULL DEFAULT interval '1 minute',
    max_attempts       integer     NOT NULL DEFAULT 5,
    handoff_keywords   text[]      NOT NULL DEFAULT '{falar com humano,atendente,human agent}',
    negative_threshold numeric     NOT NULL DEFAULT -0.5,
    max_turns          integer     NOT NULL DEFAULT 10,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id),
    CONSTRAINT ai_settings_prompts CHECK (length(summary_prompt) <= 8000 AND length(agent_prompt) <= 8000),
    CONSTRAINT ai_settings_numbers CHECK (temperature BETWEEN 0 AND 2 AND max_attempts BETWEEN 1 AND 20
                                          AND negative_threshold BETWEEN -1 AND 1 AND max_turns BETWEEN 1 AND 100
                                          AND retry_delay >= interval '1 second')
);
COMMENT ON TABLE ventros.ai_settings IS
    'A tenant''s conversation intelligence and AI agent: the chat provider, the summary and agent prompts (NULL: the defaults), temperature, retry delay and attempts, hand-off keywords, the sentiment at or below which the agent hands off, the turns after which it does';
ALTER TABLE ventros.ai_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.ai_settings FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_select ON ventros.ai_settings FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.ai_settings TO ventros_viewer;

CREATE TABLE ventros.ai_completions (
    tenant_id    text        NOT NULL,
    id           uuid        NOT NULL DEFAULT gen_random_uuid(),
    kind         text        NOT NULL,
    session_id   uuid        NOT NULL,
    group_id     uuid,
    provider     text,
    model        text,
    status       text        NOT NULL DEFAULT 'queued',
    request_id   uuid,
    attempts     integer     NOT NULL DEFAULT 0,
    error_code   text,
    error        text,
    retry_at     timestamptz,
    usage        jsonb,
    cost         numeric,
    result       jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES ventros.sessions (tenant_id, id),
    FOREIGN KEY (tenant_id, group_id) REFERENCES ventros.message_groups (tenant_id, id),
    CONSTRAINT ai_completions_kind CHECK (kind IN ('session_summary', 'agent_reply')),
    CONSTRAINT ai_completions_status CHECK (status IN ('queued', 'processing', 'completed', 'failed')),
    CONSTRAINT ai_completions_group CHECK ((kind = 'agent_reply') = (group_id IS NOT NULL)),
    CONSTRAINT ai_completions_error_size CHECK (length(error) <= 2000)
);
CREATE INDEX ai_completions_by_session ON ventros.ai_completions (tenant_id, session_id, created_at);
CREATE INDEX ai_completions_retry ON ventros.ai_completions (tenant_id, retry_at) WHERE status = 'failed' AND retry_at IS NOT NULL;
CREATE INDEX ai_completions_spending ON ventros.ai_completions (tenant_id, completed_at) WHERE cost IS NOT NULL;
COMMENT ON TABLE ventros.ai_completions IS
    'A chat completion asked for a session''s summary or an AI agent reply: provider, model, status, attempts, error code and retry time, usage and cost (USD), the validated answer';
ALTER TABLE ventros.ai_completions ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.ai_completions FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_select ON ventros.ai_completions FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.ai_completions TO ventros_viewer;

SELECT ventros.register_event_type(e, d) FROM (VALUES
    ('session.ai_requested', 'A chat completion was asked for a session (a summary or an AI agent reply): provider, model, attempt.'),
    ('session.summary_failed', 'A session''s summary failed (provider error, malformed answer, cap): the error code and when it is tried again.')) v(e, d);

CREATE FUNCTION ventros.configure_ai(provider text DEFAULT NULL, summary_prompt text DEFAULT NULL, agent_prompt text DEFAULT NULL,
                                     temperature numeric DEFAULT NULL, retry_delay interval DEFAULT NULL,
                                     max_attempts integer DEFAULT NULL, handoff_keywords text[] DEFAULT NULL,
                                     negative_threshold numeric DEFAULT NULL, max_turns integer DEFAULT NULL)
RETURNS ventros.ai_settings
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    result ventros.ai_settings;
BEGIN
    -- SECURITY DEFINER: the settings are written by this function only
    IF provider IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ventros.enrichment_providers p
                                             WHERE p.provider = configure_ai.provider AND p.kind = 'chat') THEN
        RAISE EXCEPTION 'unknown chat provider "%"', left(provider, 64) USING ERRCODE = '22023',
            HINT = 'See ventros.enrichment_providers where kind = ''chat''.';
    END IF;
    INSERT INTO ventros.ai_settings AS s (tenant_id) VALUES (tenant) ON CONFLICT ON CONSTRAINT ai_settings_pkey DO NOTHING;
    UPDATE ventros.ai_settings s
       SET provider = coalesce(configure_ai.provider, s.provider),
           summary_prompt = coalesce(nullif(configure_ai.summary_prompt, ''), s.summary_prompt),
           agent_prompt = coalesce(nullif(configure_ai.agent_prompt, ''), s.agent_prompt),
           temperature = coalesce(configure_ai.temperature, s.temperature),
           retry_delay = coalesce(configure_ai.retry_delay, s.retry_delay),
           max_attempts = coalesce(configure_ai.max_attempts, s.max_attempts),
           handoff_keywords = coalesce(configure_ai.handoff_keywords, s.handoff_keywords),
           negative_threshold = coalesce(configure_ai.negative_threshold, s.negative_threshold),
           max_turns = coalesce(configure_ai.max_turns, s.max_turns),
           updated_at = now()
     WHERE s.tenant_id = tenant
    RETURNING * INTO result;
    RETURN result;
EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION 'invalid AI settings: %', SQLERRM USING ERRCODE = '22023';
END
$$;
COMMENT ON FUNCTION ventros.configure_ai(text, text, text, numeric, interval, integer, text[], numeric, integer) IS
    'Sets the tenant''s chat provider (openai_chat, groq_chat; its key, base URL and model: configure_enrichment_provider), summary and agent prompts, temperature, retry delay and attempts, hand-off keywords, negative sentiment threshold and turns; NULL keeps a value';

-- The acting tenant's settings (the defaults when it set none).
CREATE FUNCTION ventros.current_ai_settings() RETURNS ventros.ai_settings
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    s ventros.ai_settings;
BEGIN
    SELECT * INTO s FROM ventros.ai_settings x WHERE x.tenant_id = tenant;
    IF NOT FOUND THEN
        s := jsonb_populate_record(NULL::ventros.ai_settings, jsonb_build_object(
                 'tenant_id', tenant, 'provider', 'openai_chat', 'temperature', 0.2, 'retry_delay', '1 minute',
                 'max_attempts', 5, 'handoff_keywords', ARRAY['falar com humano', 'atendente', 'human agent'],
                 'negative_threshold', -0.5, 'max_turns', 10));
    END IF;
    RETURN s;
END
$$;
COMMENT ON FUNCTION ventros.current_ai_settings() IS 'The acting tenant''s AI settings, the defaults when it set none';

-- What the acting tenant's completions cost in a month, USD.
CREATE FUNCTION ventros.ai_spending(month date DEFAULT NULL) RETURNS numeric
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(sum(c.cost), 0) FROM ventros.ai_completions c
     WHERE c.tenant_id = ventros.require_tenant() AND c.cost IS NOT NULL
       AND c.completed_at >= date_trunc('month', coalesce(month::timestamptz, now()))
       AND c.completed_at < date_trunc('month', coalesce(month::timestamptz, now())) + interval '1 month'
$$;
COMMENT ON FUNCTION ventros.ai_spending(date) IS 'What the acting tenant''s chat completions cost in a month (default: this one), USD';

-- ---- the default prompts -------------------------------------------------------------------

CREATE FUNCTION ventros.ai_default_summary_prompt() RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'You analyse a customer service conversation for the business''s team.'::text
$$;
COMMENT ON FUNCTION ventros.ai_default_summary_prompt() IS 'The instructions of a session summary when the tenant set none';

-- The answer a summary must be, appended to any prompt (the tenant's
-- prompt changes the instructions, never the shape the handler validates).
CREATE FUNCTION ventros.ai_summary_format() RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'Answer with one JSON object only, with these keys: '
        || '"summary" (string, at most 5 sentences, in the conversation''s language), '
        || '"sentiment" (object: "score", a number from -1 (very negative) to 1 (very positive), and "label", one of '
        || '"positive", "neutral", "negative", "mixed"), "language" (ISO-639-1 code of the customer''s language), '
        || '"topics" (array of at most 5 short lower-case strings), "next_best_action" (string: what the business should do next).'
$$;
COMMENT ON FUNCTION ventros.ai_summary_format() IS 'The JSON answer a session summary asks for (appended to the tenant''s prompt or the default)';

-- A session's conversation as chat messages: the customer is the user, the
-- business the assistant; text only (with a media message's extracted
-- text); the last max_messages, oldest first.
CREATE FUNCTION ventros.ai_conversation(session_id uuid, max_messages integer DEFAULT 50) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('role', CASE WHEN x.from_me THEN 'assistant' ELSE 'user' END,
                                                 'content', x.content) ORDER BY x."timestamp", x.id), '[]')
      FROM (SELECT m.id, m.from_me, m."timestamp",
                   left(concat_ws(E'\n', m.text, (SELECT e.extracted_text FROM ventros.message_enrichments e
                                                   WHERE e.tenant_id = m.tenant_id AND e.message_id = m.id
                                                     AND e.status = 'completed' AND e.deleted_at IS NULL
                                                   ORDER BY e.processed_at DESC LIMIT 1)), 4000) AS content
              FROM ventros.messages m
             WHERE m.tenant_id = ventros.require_tenant() AND m.session_id = ai_conversation.session_id
               AND m.deleted_at IS NULL
             ORDER BY m."timestamp" DESC, m.id DESC
             LIMIT max_messages) x
     WHERE x.content <> ''
$$;
COMMENT ON FUNCTION ventros.ai_conversation(uuid, integer) IS
    'A session''s last messages as chat-completion messages (customer: user, business: assistant; media by their extracted text), oldest first';

-- ---- one completion -------------------------------------------------------------------------

-- The messages of a completion: a summary's system prompt and the
-- conversation as one user message; an agent reply's are the agent's
-- (ventros.ai_agent_messages, sql/98_intelligence_agent.sql).
CREATE FUNCTION ventros.ai_completion_messages(c ventros.ai_completions, s ventros.ai_settings) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF c.kind = 'agent_reply' THEN
        RETURN ventros.ai_agent_messages(c, s);
    END IF;
    RETURN jsonb_build_array(
        jsonb_build_object('role', 'system', 'content',
                           coalesce(s.summary_prompt, ventros.ai_default_summary_prompt()) || ' ' || ventros.ai_summary_format()),
        jsonb_build_object('role', 'user', 'content',
            'The conversation (JSON, oldest first):' || E'\n' || ventros.ai_conversation(c.session_id)::text));
END
$$;
COMMENT ON FUNCTION ventros.ai_completion_messages(ventros.ai_completions, ventros.ai_settings) IS
    'The chat messages of a completion: the summary prompt and the conversation, or the AI agent''s';

-- Fails a completion: error code, why, and (when it may be tried again and
-- attempts remain) a retry time with backoff; emits its kind's failure.
CREATE FUNCTION ventros.ai_completion_fail(c ventros.ai_completions, code text, why text, retryable boolean,
                                           not_before timestamptz DEFAULT NULL)
RETURNS ventros.ai_completions
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.ai_settings := ventros.current_ai_settings();
    next_at timestamptz;
BEGIN
    IF retryable AND c.attempts < s.max_attempts THEN
        next_at := greatest(now() + s.retry_delay * power(2, greatest(c.attempts - 1, 0)), not_before);
    ELSIF code = 'spending_cap' THEN
        next_at := not_before;
    END IF;
    UPDATE ventros.ai_completions x
       SET status = 'failed', error_code = code, error = left(why, 2000), retry_at = next_at, request_id = NULL,
           updated_at = now()
     WHERE x.tenant_id = c.tenant_id AND x.id = c.id
    RETURNING * INTO c;
    IF c.kind = 'session_summary' THEN
        PERFORM ventros.emit('session.summary_failed', 'session', c.session_id,
            jsonb_build_object('completion_id', c.id, 'error_code', code, 'error', c.error, 'attempts', c.attempts,
                               'retry_at', c.retry_at));
    ELSE
        PERFORM ventros.ai_agent_failed(c);
    END IF;
    RETURN c;
END
$$;
COMMENT ON FUNCTION ventros.ai_completion_fail(ventros.ai_completions, text, text, boolean, timestamptz) IS
    'Fails a completion with an error code and a retry time (retry_delay x 2^(attempts-1), at most max_attempts); emits session.summary_failed or the agent''s failure';

-- Whether the tenant's monthly AI cap (enrichment_settings.monthly_cap) is
-- reached by its enrichments and completions together.
CREATE FUNCTION ventros.ai_cap_reached() RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cap numeric := (SELECT s.monthly_cap FROM ventros.enrichment_settings s WHERE s.tenant_id = ventros.require_tenant());
BEGIN
    RETURN cap IS NOT NULL AND ventros.enrichment_spending() + ventros.ai_spending() >= cap;
END
$$;
COMMENT ON FUNCTION ventros.ai_cap_reached() IS
    'True when this month''s enrichments and chat completions together reached the tenant''s monthly cap';

-- Starts (or starts again) a completion: the tenant's chat provider with
-- its key, unless the cap is reached; one dispatcher request.
CREATE FUNCTION ventros.ai_completion_start(c ventros.ai_completions) RETURNS ventros.ai_completions
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.ai_settings := ventros.current_ai_settings();
    p ventros.enrichment_providers;
    ps ventros.enrichment_provider_settings;
    es ventros.enrichment_settings;
    cfg jsonb;
    rid uuid;
BEGIN
    SELECT * INTO p FROM ventros.enrichment_providers x WHERE x.provider = s.provider;
    SELECT * INTO ps FROM ventros.enrichment_provider_settings x WHERE x.tenant_id = c.tenant_id AND x.provider = s.provider;
    SELECT * INTO es FROM ventros.enrichment_settings x WHERE x.tenant_id = c.tenant_id;
    c.provider := s.provider;
    IF NOT coalesce(ps.enabled, false) OR ps.credential_id IS NULL THEN
        RETURN ventros.ai_completion_fail(c, 'no_provider',
            format('the chat provider %s has no key for this tenant (configure_enrichment_provider)', s.provider), false);
    END IF;
    IF ventros.ai_cap_reached() THEN
        RETURN ventros.ai_completion_fail(c, 'spending_cap',
            format('the monthly AI spending cap (%s USD) is reached', es.monthly_cap), false,
            date_trunc('month', now()) + interval '1 month');
    END IF;
    cfg := ventros.enrichment_config(p, ps, es)
        || jsonb_build_object('temperature', s.temperature, 'messages', ventros.ai_completion_messages(c, s));
    rid := ventros.enrichment_enqueue(jsonb_populate_record(NULL::ventros.message_enrichments,
                                          jsonb_build_object('tenant_id', c.tenant_id, 'id', c.id)),
                                      p, cfg, ventros.chat_completion_request(NULL, cfg));
    UPDATE ventros.ai_completions x
       SET status = 'processing', provider = p.provider, model = cfg->>'model', request_id = rid,
           attempts = x.attempts + 1, error_code = NULL, error = NULL, retry_at = NULL, updated_at = now()
     WHERE x.tenant_id = c.tenant_id AND x.id = c.id
    RETURNING * INTO c;
    PERFORM ventros.emit('session.ai_requested', 'session', c.session_id,
        jsonb_strip_nulls(jsonb_build_object('completion_id', c.id, 'kind', c.kind, 'group_id', c.group_id,
                                             'provider', c.provider, 'model', c.model, 'attempt', c.attempts)));
    RETURN c;
END
$$;
COMMENT ON FUNCTION ventros.ai_completion_start(ventros.ai_completions) IS
    'Asks the tenant''s chat provider for a completion (one dispatcher request, the key added at claim time) unless it has no key or the cap is reached; emits session.ai_requested';

-- summarize_session(session_id): on demand, or the automation action
-- summarize_session.  Returns the completion; its answer lands on the
-- session (summarize_session with the answer's fields).
CREATE FUNCTION ventros.summarize_session(session_id uuid) RETURNS ventros.ai_completions
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    c ventros.ai_completions;
BEGIN
    -- SECURITY DEFINER: completions and their requests are written here only,
    -- for the acting tenant's session
    PERFORM 1 FROM ventros.sessions x WHERE x.tenant_id = tenant AND x.id = summarize_session.session_id AND x.deleted_at IS NULL;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('session', session_id);
    END IF;
    -- one summary in flight per session
    SELECT * INTO c FROM ventros.ai_completions x
     WHERE x.tenant_id = tenant AND x.session_id = summarize_session.session_id AND x.kind = 'session_summary'
       AND x.status IN ('queued', 'processing');
    IF FOUND THEN
        RETURN c;
    END IF;
    INSERT INTO ventros.ai_completions (tenant_id, kind, session_id) VALUES (tenant, 'session_summary', session_id)
    RETURNING * INTO c;
    RETURN ventros.ai_completion_start(c);
END
$$;
COMMENT ON FUNCTION ventros.summarize_session(uuid) IS
    'Asks the tenant''s chat provider for a session''s summary, sentiment, language, topics and next best action (one in flight per session); the answer sets them on the session with session.summarized';

-- ---- answers -----------------------------------------------------------------------------

-- A number within bounds, or NULL.
CREATE FUNCTION ventros.ai_number(v jsonb, lo numeric, hi numeric) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN jsonb_typeof(v) = 'number' AND (v #>> '{}')::numeric BETWEEN lo AND hi THEN (v #>> '{}')::numeric END
$$;
COMMENT ON FUNCTION ventros.ai_number(jsonb, numeric, numeric) IS 'A JSON number within [lo, hi], else NULL';

-- A summary answer validated and set on the session: NULL when done, else
-- what is wrong with it.
CREATE FUNCTION ventros.ai_summary_apply(c ventros.ai_completions, j jsonb) RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    score numeric := ventros.ai_number(coalesce(j->'sentiment'->'score', j->'sentiment_score'), -1, 1);
    label text := coalesce(j->'sentiment'->>'label', j->>'sentiment_label');
    topics jsonb := j->'topics';
BEGIN
    IF jsonb_typeof(j->'summary') IS DISTINCT FROM 'string' OR btrim(j->>'summary') = '' THEN
        RETURN 'no "summary" string';
    ELSIF score IS NULL THEN
        RETURN 'no "sentiment.score" number between -1 and 1';
    ELSIF label IS NULL OR label NOT IN ('positive', 'neutral', 'negative', 'mixed') THEN
        RETURN 'no "sentiment.label" among positive, neutral, negative, mixed';
    ELSIF topics IS NOT NULL AND (jsonb_typeof(topics) <> 'array'
                                  OR EXISTS (SELECT 1 FROM jsonb_array_elements(topics) t WHERE jsonb_typeof(t) <> 'string')) THEN
        RETURN '"topics" is not an array of strings';
    ELSIF j ? 'language' AND coalesce(j->>'language', '') !~ '^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?$' THEN
        RETURN '"language" is not a language code';
    END IF;
    PERFORM ventros.summarize_session(c.session_id, left(j->>'summary', 20000), label, score,
        (SELECT jsonb_agg(lower(left(t, 100))) FROM jsonb_array_elements_text(coalesce(topics, '[]')) t),
        CASE WHEN jsonb_typeof(j->'next_best_action') = 'string' THEN jsonb_build_array(left(j->>'next_best_action', 2000)) END);
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.ai_summary_apply(ventros.ai_completions, jsonb) IS
    'Validates a summary answer (summary, sentiment score and label, language, topics) and sets it on the session (session.summarized); returns what is wrong, NULL when done';

-- The handler of every chat provider's requests (purpose enrichment.<chat
-- provider>): usage and cost, the JSON answer validated, then the
-- completion's kind applies it; a failure is retried with backoff.
CREATE FUNCTION ventros.ai_chat_answer(r ventros.http_requests) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c ventros.ai_completions;
    a jsonb := ventros.json_body(r.response_body);
    content text;
    j jsonb;
    u jsonb;
    wrong text;
    after_s text := r.response_headers->>'retry-after';
BEGIN
    SELECT * INTO c FROM ventros.ai_completions x
     WHERE x.tenant_id = r.tenant_id AND x.id = r.correlation_id AND x.request_id = r.id AND x.status = 'processing'
     FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;                 -- an answer to an older attempt
    END IF;
    IF r.status <> 'succeeded' THEN
        PERFORM ventros.ai_completion_fail(c, CASE r.response_status WHEN 429 THEN 'rate_limited' ELSE 'provider_error' END,
            ventros.enrichment_error_text(r), true,
            CASE WHEN after_s ~ '^[0-9]{1,7}$' THEN now() + make_interval(secs => after_s::integer) END);
        RETURN;
    END IF;
    -- tokens are spent even when the answer is unusable: usage and cost
    -- first, summed over the completion's attempts
    u := jsonb_strip_nulls(jsonb_build_object('input_tokens', a->'usage'->'prompt_tokens',
                                              'output_tokens', a->'usage'->'completion_tokens'));
    UPDATE ventros.ai_completions x
       SET usage = (SELECT jsonb_object_agg(k, coalesce((x.usage->>k)::numeric, 0) + (u->>k)::numeric)
                      FROM jsonb_object_keys(u) k),
           model = coalesce(a->>'model', x.model), completed_at = now(),
           cost = coalesce(x.cost, 0)
                  + ventros.enrichment_cost((SELECT p.prices FROM ventros.enrichment_providers p WHERE p.provider = x.provider), u)
     WHERE x.tenant_id = c.tenant_id AND x.id = c.id
    RETURNING * INTO c;
    content := a->'choices'->0->'message'->>'content';
    -- a JSON object, possibly in a markdown code fence
    j := ventros.json_body(convert_to(regexp_replace(coalesce(content, ''), '^\s*```(json)?\s*|\s*```\s*$', '', 'g'), 'UTF8'));
    IF jsonb_typeof(j) IS DISTINCT FROM 'object' THEN
        PERFORM ventros.ai_completion_fail(c, 'malformed_answer',
            'the answer is not a JSON object: ' || left(coalesce(content, convert_from(coalesce(r.response_body, ''), 'SQL_ASCII')), 200),
            true);
        RETURN;
    END IF;
    wrong := CASE c.kind WHEN 'session_summary' THEN ventros.ai_summary_apply(c, j) ELSE ventros.ai_agent_apply(c, j) END;
    IF wrong IS NOT NULL THEN
        PERFORM ventros.ai_completion_fail(c, 'malformed_answer', 'the answer has ' || wrong, true);
        RETURN;
    END IF;
    UPDATE ventros.ai_completions x SET status = 'completed', result = j, updated_at = now()
     WHERE x.tenant_id = c.tenant_id AND x.id = c.id;
END
$$;
COMMENT ON FUNCTION ventros.ai_chat_answer(ventros.http_requests) IS
    'Answer handler of chat providers: records usage and cost, validates the JSON answer and applies it (summary or agent reply); an error, 429 or malformed answer fails the completion with a retry time';

-- ---- retries -------------------------------------------------------------------------------

CREATE FUNCTION ventros.retry_ai_completions(now timestamptz DEFAULT now(), batch_size integer DEFAULT 100)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    c ventros.ai_completions;
    n integer := 0;
BEGIN
    -- SECURITY DEFINER: queues provider requests for the acting tenant only
    FOR c IN SELECT * FROM ventros.ai_completions x
              WHERE x.tenant_id = tenant AND x.status = 'failed' AND x.retry_at <= retry_ai_completions.now
              ORDER BY x.retry_at LIMIT batch_size FOR UPDATE SKIP LOCKED
    LOOP
        -- an agent reply whose group closed meanwhile (handed off, agent
        -- off) is not asked again: its retry time goes
        IF c.kind = 'agent_reply' AND NOT EXISTS (SELECT 1 FROM ventros.message_groups g
                                                   WHERE g.tenant_id = tenant AND g.id = c.group_id AND g.status = 'processing') THEN
            UPDATE ventros.ai_completions x SET retry_at = NULL, updated_at = now()
             WHERE x.tenant_id = tenant AND x.id = c.id;
            CONTINUE;
        END IF;
        PERFORM ventros.ai_completion_start(c);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.retry_ai_completions(timestamptz, integer) IS
    'Starts again the acting tenant''s failed completions whose retry time passed (at most batch_size; an agent reply whose group closed meanwhile loses its retry time instead); returns how many';

INSERT INTO ventros.scheduled_jobs (name, schedule, command, purpose) VALUES
    ('ventros-retry-ai-completions', '* * * * *',
     'SELECT count(*) FROM ventros.run_per_tenant(''ventros-retry-ai-completions'', ''SELECT pg_catalog.to_jsonb(ventros.retry_ai_completions($1))'')',
     'failed chat completions (summaries, AI agent replies) whose retry time passed');

SELECT ventros.register_http_request_handler('enrichment.' || p.provider, 'ventros.ai_chat_answer(ventros.http_requests)'),
       ventros.register_http_request_preparer('enrichment.' || p.provider,
                                              'ventros.enrichment_request_headers(ventros.http_requests)')
  FROM ventros.enrichment_providers p WHERE p.kind = 'chat';

GRANT EXECUTE ON FUNCTION ventros.current_ai_settings(), ventros.ai_spending(date) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.summarize_session(uuid) TO ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.configure_ai(text, text, text, numeric, interval, integer, text[], numeric, integer),
    ventros.retry_ai_completions(timestamptz, integer) TO ventros_admin;


-- The AI agent with hand-off (docs/ai.md, "The AI agent"): per channel, off
-- by default, an AI agent answers inbound messages until it hands the
-- session to a human.
--
--   1. An inbound message on a channel whose agent is on, in a session not
--      handed off, joins its contact's pending message group (the
--      message_groups aggregate, sql/79_message_groups.sql): each message
--      pushes the group's expiry to its time + the channel's
--      debounce_timeout_ms (trigger ai_agent_on_message: one lookup).
--   2. ventros.tick_ai_agent(now) (pg_cron, ventros-tick-ai-agent; tests
--      pass any instant) moves the due groups to processing.  A group whose
--      messages hold a hand-off keyword hands off at once; a session that
--      reached max_turns too; else one chat completion
--      (sql/98_intelligence.sql) gets the agent prompt, the tenant's
--      knowledge snippets, the contact's fields and the conversation so far.
--   3. The answer {"reply", "handoff", "handoff_reason", "sentiment"} is
--      validated; the reply goes out with send_message as the channel's AI
--      agent (source bot), the group completes with it
--      (agent_ai_interactions); then the agent hands off when the model asks,
--      when the sentiment is at or below the tenant's negative_threshold, or
--      after max_turns replies.
--   4. Hand-off: the session is put on the channel agent's hand-off team (else
--      the channel's team) by the team's rule (assign_session_to_team), the
--      agent stops for that session (ai_agent_sessions.handed_off_at) and
--      session.ai_handed_off says why.

CREATE TABLE ventros.ai_channel_agents (
    tenant_id    text        NOT NULL DEFAULT ventros.current_tenant(),
    channel_id   uuid        NOT NULL,
    enabled      boolean     NOT NULL DEFAULT false,
    agent_id     uuid        NOT NULL,
    handoff_team_id uuid,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, channel_id),
    FOREIGN KEY (tenant_id, channel_id) REFERENCES ventros.channels (tenant_id, id),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES ventros.agents (tenant_id, id),
    FOREIGN KEY (tenant_id, handoff_team_id) REFERENCES ventros.teams (tenant_id, id)
);
COMMENT ON TABLE ventros.ai_channel_agents IS
    'A channel''s AI agent: on or off (off by default), the agent it answers as, the team it hands sessions off to (NULL: the channel''s team)';
ALTER TABLE ventros.ai_channel_agents ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.ai_channel_agents FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_select ON ventros.ai_channel_agents FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.ai_channel_agents TO ventros_viewer;

CREATE TABLE ventros.ai_agent_sessions (
    tenant_id      text        NOT NULL,
    session_id     uuid        NOT NULL,
    turns          integer     NOT NULL DEFAULT 0,
    handed_off_at  timestamptz,
    handoff_reason text,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, session_id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES ventros.sessions (tenant_id, id),
    CONSTRAINT ai_agent_sessions_reason CHECK (handoff_reason IN ('keyword', 'model', 'negative_sentiment', 'max_turns',
                                                                  'failed', 'manual'))
);
COMMENT ON TABLE ventros.ai_agent_sessions IS
    'The AI agent in one session: replies sent (turns), and when and why it handed the session to a human (it stays silent after)';
ALTER TABLE ventros.ai_agent_sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.ai_agent_sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_select ON ventros.ai_agent_sessions FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.ai_agent_sessions TO ventros_viewer;

CREATE TABLE ventros.knowledge_snippets (
    tenant_id  text        NOT NULL DEFAULT ventros.current_tenant(),
    id         uuid        NOT NULL DEFAULT gen_random_uuid(),
    title      text        NOT NULL,
    content    text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT knowledge_snippets_sizes CHECK (btrim(title) <> '' AND length(title) <= 200
                                               AND btrim(content) <> '' AND length(content) <= 4000)
);
COMMENT ON TABLE ventros.knowledge_snippets IS 'What the tenant''s AI agent knows: short texts (title, content) given with every question';
ALTER TABLE ventros.knowledge_snippets ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.knowledge_snippets FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_select ON ventros.knowledge_snippets FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.knowledge_snippets TO ventros_viewer;

SELECT ventros.register_event_type(e, d) FROM (VALUES
    ('session.ai_replied', 'The channel''s AI agent answered a group of inbound messages (the message sent, the turn).'),
    ('session.ai_reply_failed', 'The AI agent could not answer a group (provider error, malformed answer): the error and the retry time.'),
    ('session.ai_handed_off', 'The AI agent handed the session to a human (keyword, model, negative_sentiment, max_turns, failed, manual) and stopped for it.')) v(e, d);

-- ---- configuration (tenant administrators) -------------------------------------------------

CREATE FUNCTION ventros.configure_ai_agent(channel_id uuid, enabled boolean DEFAULT NULL, agent_id uuid DEFAULT NULL,
                                           handoff_team_id uuid DEFAULT NULL)
RETURNS ventros.ai_channel_agents
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    result ventros.ai_channel_agents;
BEGIN
    -- SECURITY DEFINER: the settings are written by this function only
    PERFORM 1 FROM ventros.channels c WHERE c.tenant_id = tenant AND c.id = configure_ai_agent.channel_id AND c.deleted_at IS NULL;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('channel', channel_id);
    END IF;
    IF agent_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ventros.agents a WHERE a.tenant_id = tenant
                                             AND a.id = configure_ai_agent.agent_id AND a.deleted_at IS NULL) THEN
        PERFORM ventros.not_found('agent', agent_id);
    END IF;
    IF handoff_team_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ventros.teams t WHERE t.tenant_id = tenant
                                                    AND t.id = configure_ai_agent.handoff_team_id AND t.deleted_at IS NULL) THEN
        PERFORM ventros.not_found('team', handoff_team_id);
    END IF;
    UPDATE ventros.ai_channel_agents x
       SET enabled = coalesce(configure_ai_agent.enabled, x.enabled),
           agent_id = coalesce(configure_ai_agent.agent_id, x.agent_id),
           handoff_team_id = coalesce(configure_ai_agent.handoff_team_id, x.handoff_team_id), updated_at = now()
     WHERE x.tenant_id = tenant AND x.channel_id = configure_ai_agent.channel_id
    RETURNING * INTO result;
    IF NOT FOUND THEN
        IF agent_id IS NULL THEN
            RAISE EXCEPTION 'the AI agent of a channel needs the agent it answers as' USING ERRCODE = '23502',
                HINT = 'Pass agent_id: an agent with the role ai_agent.';
        END IF;
        INSERT INTO ventros.ai_channel_agents (tenant_id, channel_id, enabled, agent_id, handoff_team_id)
        VALUES (tenant, channel_id, coalesce(enabled, false), agent_id, handoff_team_id)
        RETURNING * INTO result;
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.configure_ai_agent(uuid, boolean, uuid, uuid) IS
    'Turns a channel''s AI agent on or off (off by default), the agent it answers as and the team it hands sessions off to (NULL: the channel''s team); NULL keeps a value';

CREATE FUNCTION ventros.add_knowledge_snippet(title text, content text) RETURNS ventros.knowledge_snippets
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.knowledge_snippets;
BEGIN
    -- SECURITY DEFINER: snippets are written by these functions only
    INSERT INTO ventros.knowledge_snippets (tenant_id, title, content) VALUES (ventros.require_tenant(), title, content)
    RETURNING * INTO result;
    RETURN result;
EXCEPTION WHEN check_violation OR not_null_violation THEN
    RAISE EXCEPTION 'a knowledge snippet needs a title (at most 200 characters) and content (at most 4000)'
        USING ERRCODE = '22023';
END
$$;
COMMENT ON FUNCTION ventros.add_knowledge_snippet(text, text) IS 'Adds a text the tenant''s AI agent is given with every question';

CREATE FUNCTION ventros.delete_knowledge_snippet(snippet_id uuid) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM ventros.knowledge_snippets k WHERE k.tenant_id = ventros.require_tenant() AND k.id = snippet_id;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('knowledge snippet', snippet_id);
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.delete_knowledge_snippet(uuid) IS 'Removes a knowledge snippet of the tenant''s AI agent';

-- ---- 1. grouping ----------------------------------------------------------------------------

CREATE FUNCTION ventros.ai_agent_on_message() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM ventros.ai_channel_agents a
                WHERE a.tenant_id = NEW.tenant_id AND a.channel_id = NEW.channel_id AND a.enabled)
       AND NOT EXISTS (SELECT 1 FROM ventros.ai_agent_sessions s
                        WHERE s.tenant_id = NEW.tenant_id AND s.session_id = NEW.session_id AND s.handed_off_at IS NOT NULL) THEN
        PERFORM ventros.add_message_to_group(NEW.id);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.ai_agent_on_message() IS
    'Trigger: an inbound message on a channel whose AI agent is on joins its pending message group, unless the session was handed off';
CREATE TRIGGER ai_agent_on_message AFTER INSERT ON ventros.messages
    FOR EACH ROW WHEN (NOT NEW.from_me AND NEW.session_id IS NOT NULL)
    EXECUTE FUNCTION ventros.ai_agent_on_message();

-- ---- 2. closing groups, the question --------------------------------------------------------

-- The agent's messages: its prompt with the knowledge snippets and the
-- contact's fields, then the conversation so far.
CREATE FUNCTION ventros.ai_agent_messages(c ventros.ai_completions, s ventros.ai_settings) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    contact jsonb;
    knowledge text;
BEGIN
    SELECT jsonb_strip_nulls(jsonb_build_object('name', x.name, 'language', x.language, 'tags', x.tags,
               'custom', (SELECT jsonb_object_agg(f.field_key, f.field_value) FROM ventros.contact_custom_fields f
                           WHERE f.tenant_id = x.tenant_id AND f.contact_id = x.id AND f.deleted_at IS NULL)))
      INTO contact
      FROM ventros.sessions se JOIN ventros.contacts x ON x.tenant_id = se.tenant_id AND x.id = se.contact_id
     WHERE se.tenant_id = c.tenant_id AND se.id = c.session_id;
    SELECT string_agg(format('## %s%s%s', k.title, E'\n', k.content), E'\n\n' ORDER BY k.created_at, k.id)
      INTO knowledge
      FROM (SELECT * FROM ventros.knowledge_snippets k WHERE k.tenant_id = c.tenant_id ORDER BY k.created_at, k.id LIMIT 50) k;
    RETURN jsonb_build_array(jsonb_build_object('role', 'system', 'content',
               coalesce(s.agent_prompt, 'You are the customer service assistant of this business. Be brief, kind and accurate; '
                                        || 'answer only from what you know below; never invent prices or promises.')
               || E'\n\nAnswer with one JSON object only: {"reply": string (your message to the customer, in their language), '
               || '"handoff": boolean (true when a human should take over: the customer asks for one, is upset, or you cannot help), '
               || '"handoff_reason": string, "sentiment": number from -1 (very negative) to 1 (very positive) for the customer''s mood}.'
               || E'\n\nThe customer: ' || coalesce(contact::text, '{}')
               || coalesce(E'\n\nWhat you know:\n' || knowledge, '')))
        || ventros.ai_conversation(c.session_id);
END
$$;
COMMENT ON FUNCTION ventros.ai_agent_messages(ventros.ai_completions, ventros.ai_settings) IS
    'The AI agent''s chat messages: its prompt (the tenant''s or the default) with the JSON it must answer, the contact''s fields, the knowledge snippets, then the conversation';

-- Whether a text holds one of the hand-off keywords (case and accents as
-- written; whole words).
CREATE FUNCTION ventros.ai_handoff_keyword(txt text, keywords text[]) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT k FROM unnest(keywords) k
     WHERE btrim(k) <> ''
       AND strpos(' ' || regexp_replace(lower(coalesce(txt, '')), '[^[:alnum:]_]+', ' ', 'g') || ' ',
                  ' ' || btrim(regexp_replace(lower(k), '[^[:alnum:]_]+', ' ', 'g')) || ' ') > 0
     LIMIT 1
$$;
COMMENT ON FUNCTION ventros.ai_handoff_keyword(text, text[]) IS 'The first hand-off keyword a text holds as whole words, case-insensitive; NULL when none';

-- Hands a session to a human: the hand-off team's rule assigns it, the
-- agent stops for it, its open groups expire (an answer still out is then
-- never sent).  Returns the session.
CREATE FUNCTION ventros.ai_agent_hand_off(session_id uuid, reason text, detail text DEFAULT NULL)
RETURNS ventros.sessions
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    s ventros.sessions;
    team uuid;
    g ventros.message_groups;
BEGIN
    SELECT * INTO s FROM ventros.sessions x WHERE x.tenant_id = tenant AND x.id = ai_agent_hand_off.session_id FOR UPDATE;
    INSERT INTO ventros.ai_agent_sessions AS a (tenant_id, session_id, handed_off_at, handoff_reason)
    VALUES (tenant, s.id, now(), reason)
    ON CONFLICT ON CONSTRAINT ai_agent_sessions_pkey DO UPDATE
       SET handed_off_at = coalesce(a.handed_off_at, now()), handoff_reason = coalesce(a.handoff_reason, reason), updated_at = now();
    SELECT coalesce(a.handoff_team_id, ch.team_id) INTO team
      FROM ventros.channels ch LEFT JOIN ventros.ai_channel_agents a ON a.tenant_id = ch.tenant_id AND a.channel_id = ch.id
     WHERE ch.tenant_id = tenant AND ch.id = s.channel_id;
    IF team IS NOT NULL AND s.status = 'active' THEN
        s := ventros.assign_session_to_team(s.id, team);
    END IF;
    FOR g IN SELECT * FROM ventros.message_groups x
              WHERE x.tenant_id = tenant AND x.session_id = s.id AND x.status IN ('pending', 'processing') FOR UPDATE LOOP
        PERFORM ventros.expire_message_group(g.id, g.version);
    END LOOP;
    PERFORM ventros.emit('session.ai_handed_off', 'session', s.id,
        jsonb_strip_nulls(jsonb_build_object('reason', reason, 'detail', left(detail, 500), 'team_id', team,
                                             'assigned_agent_id', s.assigned_agent_id)));
    RETURN s;
END
$$;
COMMENT ON FUNCTION ventros.ai_agent_hand_off(uuid, text, text) IS
    'Hands a session from the AI agent to a human: assigned by the hand-off team''s rule (else the channel''s team), the agent silent for it after; emits session.ai_handed_off (internal)';

-- tick_ai_agent: the due groups of the acting tenant (pg_cron once a
-- minute; any instant in tests).  Returns how many groups it handled.
CREATE FUNCTION ventros.tick_ai_agent(now timestamptz DEFAULT now(), batch_size integer DEFAULT 100)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    s ventros.ai_settings := ventros.current_ai_settings();
    g ventros.message_groups;
    a ventros.ai_channel_agents;
    st ventros.ai_agent_sessions;
    c ventros.ai_completions;
    word text;
    n integer := 0;
BEGIN
    FOR g IN SELECT * FROM ventros.tick_message_groups(now, batch_size) LOOP
        n := n + 1;
        SELECT * INTO a FROM ventros.ai_channel_agents x WHERE x.tenant_id = tenant AND x.channel_id = g.channel_id;
        SELECT * INTO st FROM ventros.ai_agent_sessions x WHERE x.tenant_id = tenant AND x.session_id = g.session_id;
        IF NOT coalesce(a.enabled, false) OR st.handed_off_at IS NOT NULL
           OR NOT EXISTS (SELECT 1 FROM ventros.sessions x WHERE x.tenant_id = tenant AND x.id = g.session_id
                            AND x.status = 'active') THEN
            PERFORM ventros.expire_message_group(g.id, g.version);
            CONTINUE;
        END IF;
        SELECT ventros.ai_handoff_keyword(m.text, s.handoff_keywords) INTO word
          FROM ventros.messages m WHERE m.tenant_id = tenant AND m.id = ANY (g.message_ids)
               AND ventros.ai_handoff_keyword(m.text, s.handoff_keywords) IS NOT NULL
         LIMIT 1;
        IF word IS NOT NULL THEN
            PERFORM ventros.expire_message_group(g.id, g.version);
            PERFORM ventros.ai_agent_hand_off(g.session_id, 'keyword', format('the customer wrote "%s"', word));
        ELSIF coalesce(st.turns, 0) >= s.max_turns THEN
            PERFORM ventros.expire_message_group(g.id, g.version);
            PERFORM ventros.ai_agent_hand_off(g.session_id, 'max_turns', format('%s replies', st.turns));
        ELSE
            INSERT INTO ventros.ai_completions (tenant_id, kind, session_id, group_id)
            VALUES (tenant, 'agent_reply', g.session_id, g.id)
            RETURNING * INTO c;
            PERFORM ventros.ai_completion_start(c);
        END IF;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.tick_ai_agent(timestamptz, integer) IS
    'Closes the acting tenant''s message groups due at now: a hand-off keyword or max_turns hands the session off, else the AI agent is asked (one chat completion); a group of a channel whose agent is off, or of a session handed off or ended, expires';

INSERT INTO ventros.scheduled_jobs (name, schedule, command, purpose) VALUES
    ('ventros-tick-ai-agent', '* * * * *',
     'SELECT count(*) FROM ventros.run_per_tenant(''ventros-tick-ai-agent'', ''SELECT pg_catalog.to_jsonb(ventros.tick_ai_agent($1))'')',
     'the AI agent: message groups past their debounce window are answered or handed off');

-- ---- 3. the answer ---------------------------------------------------------------------------

CREATE FUNCTION ventros.ai_agent_apply(c ventros.ai_completions, j jsonb) RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.ai_settings := ventros.current_ai_settings();
    g ventros.message_groups;
    a ventros.ai_channel_agents;
    handoff boolean;
    sentiment numeric := ventros.ai_number(j->'sentiment', -1, 1);
    reply text := btrim(j->>'reply');
    sent ventros.messages;
    turns integer;
BEGIN
    IF j ? 'handoff' AND jsonb_typeof(j->'handoff') <> 'boolean' THEN
        RETURN '"handoff" that is not a boolean';
    END IF;
    handoff := coalesce((j->>'handoff')::boolean, false);
    IF j ? 'sentiment' AND sentiment IS NULL THEN
        RETURN 'a "sentiment" that is not a number between -1 and 1';
    ELSIF (j ? 'reply' AND jsonb_typeof(j->'reply') <> 'string') OR (NOT handoff AND coalesce(reply, '') = '') THEN
        RETURN 'no "reply" string';
    END IF;
    SELECT * INTO g FROM ventros.message_groups x WHERE x.tenant_id = c.tenant_id AND x.id = c.group_id FOR UPDATE;
    SELECT * INTO a FROM ventros.ai_channel_agents x WHERE x.tenant_id = c.tenant_id AND x.channel_id = g.channel_id;
    -- a human took the session (or the agent was turned off) while the
    -- question was out: the answer is kept on the completion, never sent
    IF g.status <> 'processing' OR NOT coalesce(a.enabled, false)
       OR EXISTS (SELECT 1 FROM ventros.ai_agent_sessions x WHERE x.tenant_id = c.tenant_id AND x.session_id = c.session_id
                    AND x.handed_off_at IS NOT NULL) THEN
        IF g.status = 'processing' THEN
            PERFORM ventros.expire_message_group(g.id, g.version);
        END IF;
        RETURN NULL;
    END IF;
    PERFORM ventros.complete_message_group(g.id, g.version,
        left((SELECT string_agg(m.text, E'\n' ORDER BY m."timestamp", m.id) FROM ventros.messages m
               WHERE m.tenant_id = c.tenant_id AND m.id = ANY (g.message_ids)), 65536),
        left(reply, 65536), c.provider, c.model, (extract(epoch FROM now() - c.updated_at) * 1000)::integer);
    IF coalesce(reply, '') <> '' THEN
        sent := ventros.send_message(g.channel_id, g.contact_id, left(reply, 4096), agent_id => a.agent_id, source => 'bot',
                                  metadata => jsonb_build_object('ai_completion_id', c.id));
        INSERT INTO ventros.ai_agent_sessions AS x (tenant_id, session_id, turns) VALUES (c.tenant_id, c.session_id, 1)
        ON CONFLICT ON CONSTRAINT ai_agent_sessions_pkey DO UPDATE SET turns = x.turns + 1, updated_at = now()
        RETURNING x.turns INTO turns;
        PERFORM ventros.emit('session.ai_replied', 'session', c.session_id,
            jsonb_strip_nulls(jsonb_build_object('message_id', sent.id, 'group_id', g.id, 'completion_id', c.id,
                                                 'turn', turns, 'sentiment', sentiment)));
    END IF;
    IF handoff THEN
        PERFORM ventros.ai_agent_hand_off(c.session_id, 'model', j->>'handoff_reason');
    ELSIF sentiment <= s.negative_threshold THEN
        PERFORM ventros.ai_agent_hand_off(c.session_id, 'negative_sentiment', format('sentiment %s', sentiment));
    ELSIF turns >= s.max_turns THEN
        PERFORM ventros.ai_agent_hand_off(c.session_id, 'max_turns', format('%s replies', turns));
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.ai_agent_apply(ventros.ai_completions, jsonb) IS
    'Validates an AI agent answer (reply, handoff, sentiment), sends the reply as the channel''s AI agent (session.ai_replied), completes the group, and hands off on the model''s signal, negative sentiment or max_turns (a session handed off meanwhile: nothing sent); returns what is wrong, NULL when done';

-- A failed reply: said (session.ai_reply_failed); when it will not be tried
-- again (or only next month: the spending cap), the group expires and a
-- human takes the session.
CREATE FUNCTION ventros.ai_agent_failed(c ventros.ai_completions) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g ventros.message_groups;
BEGIN
    PERFORM ventros.emit('session.ai_reply_failed', 'session', c.session_id,
        jsonb_build_object('completion_id', c.id, 'group_id', c.group_id, 'error_code', c.error_code, 'error', c.error,
                           'attempts', c.attempts, 'retry_at', c.retry_at));
    -- no retry, or not before next month (the cap): a human answers now
    IF c.retry_at IS NULL OR c.error_code = 'spending_cap' THEN
        SELECT * INTO g FROM ventros.message_groups x
         WHERE x.tenant_id = c.tenant_id AND x.id = c.group_id AND x.status IN ('pending', 'processing') FOR UPDATE;
        IF FOUND THEN
            PERFORM ventros.expire_message_group(g.id, g.version);
        END IF;
        PERFORM ventros.ai_agent_hand_off(c.session_id, 'failed', c.error);
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.ai_agent_failed(ventros.ai_completions) IS
    'A failed AI agent reply: emits session.ai_reply_failed; when it will not be retried (or only after the spending cap), expires the group and hands the session off';

-- resume_ai_agent: a human gives the session back to the AI agent.
CREATE FUNCTION ventros.resume_ai_agent(session_id uuid) RETURNS ventros.ai_agent_sessions
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.ai_agent_sessions;
BEGIN
    -- SECURITY DEFINER: the agent's state is written here and by its own functions only
    UPDATE ventros.ai_agent_sessions x SET handed_off_at = NULL, handoff_reason = NULL, turns = 0, updated_at = now()
     WHERE x.tenant_id = ventros.require_tenant() AND x.session_id = resume_ai_agent.session_id
    RETURNING * INTO result;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('AI agent session', session_id);
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.resume_ai_agent(uuid) IS 'Gives a handed-off session back to the AI agent (turns counted from zero again)';

-- hand_off_session: an agent takes the session from the AI agent by hand.
CREATE FUNCTION ventros.hand_off_session(session_id uuid) RETURNS ventros.sessions
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- SECURITY DEFINER: the agent's state is written by these functions only
    PERFORM 1 FROM ventros.sessions x WHERE x.tenant_id = ventros.require_tenant() AND x.id = hand_off_session.session_id
                                        AND x.deleted_at IS NULL;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('session', session_id);
    END IF;
    RETURN ventros.ai_agent_hand_off(session_id, 'manual');
END
$$;
COMMENT ON FUNCTION ventros.hand_off_session(uuid) IS
    'Takes a session from the AI agent: assigned by the hand-off team''s rule, the agent silent for it; emits session.ai_handed_off';

GRANT EXECUTE ON FUNCTION ventros.resume_ai_agent(uuid), ventros.hand_off_session(uuid) TO ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.configure_ai_agent(uuid, boolean, uuid, uuid), ventros.add_knowledge_snippet(text, text),
    ventros.delete_knowledge_snippet(uuid) TO ventros_admin;
-- The scheduler's (pg_cron runs it as a platform administrator), never a
-- tenant's: its `now` is the caller's to choose (docs/security.md).
GRANT EXECUTE ON FUNCTION ventros.tick_ai_agent(timestamptz, integer) TO ventros_platform_admin;

-- ---- event stream (sql/40_outbox_stream.sql)
-- ventros-http's GET /events/stream: what a subscriber may see and the gap
-- a resumed subscription missed (docs/realtime.md).

-- Aggregate types whose events a role may see: those of the registered
-- aggregates whose table it may read, and custom events (tenants' own,
-- aggregate custom, no table) for every role that may read the outbox.
CREATE FUNCTION ventros.stream_open()
RETURNS TABLE (tenant_id text, aggregate_types text[])
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT pg_catalog.has_table_privilege('ventros.outbox', 'SELECT') THEN
        RAISE EXCEPTION 'permission denied for the event stream'
            USING ERRCODE = '42501', DETAIL = pg_catalog.format('Role %s may not read ventros.outbox.', current_user),
                  HINT = 'Subscribe as ventros_viewer, ventros_agent or ventros_admin.';
    END IF;
    RETURN QUERY
    SELECT ventros.current_tenant(),
           ARRAY(SELECT a.aggregate FROM ventros.aggregates a
                  WHERE pg_catalog.has_table_privilege(a.table_name, 'SELECT')
                 UNION ALL SELECT 'custom'
                 ORDER BY 1);
END
$$;
COMMENT ON FUNCTION ventros.stream_open() IS
    'The acting tenant and the aggregate types whose events the current role may see on the event stream (registered aggregates whose table it may read, and custom); 42501 when it may not read the outbox';

-- The gap of a resumed subscription: the tenant's events after after_seq
-- (Last-Event-ID) still in the outbox, of the aggregate types the role may
-- see, in seq order, at most max_events (the front asks one more to know
-- the gap is larger).  Pending events are included: they are committed,
-- and the live feed's copy is dropped by seq.
CREATE FUNCTION ventros.stream_gap(after_seq bigint, max_events integer)
RETURNS TABLE (seq bigint, event_type text, aggregate_type text, aggregate_id uuid, envelope text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT o.seq, o.event_type, o.aggregate_type, o.aggregate_id, ventros.envelope(o)::text
      FROM ventros.outbox o
     WHERE o.tenant_id = ventros.current_tenant()
       AND o.seq > after_seq
       AND o.aggregate_type IN (SELECT pg_catalog.unnest(s.aggregate_types) FROM ventros.stream_open() s)
     ORDER BY o.seq
     LIMIT max_events
$$;
COMMENT ON FUNCTION ventros.stream_gap(bigint, integer) IS
    'Events of the acting tenant after after_seq still in the outbox, of the aggregate types the current role may see (ventros.stream_open), in seq order, at most max_events: the gap an event-stream subscriber resuming with Last-Event-ID missed';

GRANT EXECUTE ON FUNCTION ventros.stream_open() TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.stream_gap(bigint, integer) TO ventros_viewer;

-- ---- usage metering and plan limits (sql/65_usage_metering.sql; sql/40_messages_counts.sql,
-- sql/90_channel_send.sql, sql/98_enrichment_chain.sql, sql/97_schedule.sql)
-- Usage appended as deltas on the hot path, folded every minute; plan limits
-- as data, enforced with VN020 and billing.limit_reached (docs/billing.md).

-- Usage metered as it happens, and the plan limits it is held to
-- (docs/billing.md).
--
-- The hot path never takes a shared row lock: a message, an enrichment or an
-- AI answer appends one delta row (ventros.usage_deltas, insert only, no
-- unique key and no foreign key another writer could meet), and
-- ventros.fold_usage() (a scheduled job, every minute, one tenant at a time)
-- moves the deltas into ventros.usage_totals (per metric, channel and UTC
-- day) and the quantities of the live usage meters (sql/65_usage_meters.sql).
-- Readers add the folded totals and the deltas not folded yet, so they are
-- exact at any moment.
--
-- Limits are data: ventros.billing_plans maps a plan (the Stripe price of
-- the tenant's current subscription, or "default" without one) to limits per
-- metric and period.  A command that would go over a limit is refused with
-- VN020 (402 over HTTP); the command that reaches a limit, or the fold that
-- finds it reached by usage no command refuses (inbound messages), emits
-- billing.limit_reached once per period and metric (ventros.usage_limit_hits).

-- The metrics metered.  active_contacts is counted when read (contacts with a
-- message in the period), never appended.
CREATE FUNCTION ventros.usage_metrics() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ARRAY['messages_sent', 'messages_received', 'enrichments', 'ai_tokens', 'active_contacts'] $$;
COMMENT ON FUNCTION ventros.usage_metrics() IS
    'The usage metrics: messages_sent and messages_received (per channel), enrichments, ai_tokens, active_contacts';

CREATE TABLE ventros.usage_deltas (
    tenant_id  text        NOT NULL,
    id         bigint      GENERATED ALWAYS AS IDENTITY,
    metric     text        NOT NULL,
    channel_id uuid,
    quantity   bigint      NOT NULL,
    at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT usage_deltas_metric_format CHECK (metric ~ '^[a-z][a-z0-9_]{0,62}$'),
    CONSTRAINT usage_deltas_quantity_positive CHECK (quantity > 0)
);
CREATE INDEX usage_deltas_by_metric ON ventros.usage_deltas (tenant_id, metric, at);
COMMENT ON TABLE ventros.usage_deltas IS
    'Usage counted since the last fold, one appended row per counted change (no row is ever updated, so writers never queue); folded by ventros.fold_usage';
ALTER TABLE ventros.usage_deltas ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.usage_deltas FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_select ON ventros.usage_deltas FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.usage_deltas TO ventros_viewer;

CREATE TABLE ventros.usage_totals (
    tenant_id  text    NOT NULL,
    metric     text    NOT NULL,
    day        date    NOT NULL,
    -- the nil uuid: usage of no channel (enrichments, tokens)
    channel_id uuid    NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000',
    quantity   bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, metric, day, channel_id),
    CONSTRAINT usage_totals_quantity_not_negative CHECK (quantity >= 0)
);
COMMENT ON TABLE ventros.usage_totals IS
    'Folded usage per metric, UTC day and channel (nil uuid: none); written only by ventros.fold_usage';
ALTER TABLE ventros.usage_totals ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.usage_totals FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_select ON ventros.usage_totals FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.usage_totals TO ventros_viewer;

-- The plans and their limits: platform data, readable by every tenant.
CREATE TABLE ventros.billing_plans (
    plan    text PRIMARY KEY,
    name    text NOT NULL,
    product ventros.product NOT NULL DEFAULT 'crm',
    limits  jsonb NOT NULL DEFAULT '{}',
    CONSTRAINT billing_plans_plan_format CHECK (plan = 'default' OR plan ~ '^price_[A-Za-z0-9]{1,200}$'),
    CONSTRAINT billing_plans_limits_shape CHECK (jsonb_typeof(limits) = 'object')
);
COMMENT ON TABLE ventros.billing_plans IS
    'Plans by Stripe price id ("default": tenants without a current subscription) and their limits per metric and billing period, e.g. {"messages_sent": 10000}';
ALTER TABLE ventros.billing_plans ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.billing_plans FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_catalog_read ON ventros.billing_plans FOR SELECT USING (true);
GRANT SELECT ON ventros.billing_plans TO ventros_viewer;

-- Limits reached, once per tenant, metric and period: the key that makes
-- billing.limit_reached an event of its own period only once.
CREATE TABLE ventros.usage_limit_hits (
    tenant_id    text        NOT NULL,
    metric       text        NOT NULL,
    period_start timestamptz NOT NULL,
    usage_limit  bigint      NOT NULL,
    reached_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, metric, period_start)
);
COMMENT ON TABLE ventros.usage_limit_hits IS
    'The plan limits a tenant reached, one row per metric and period (billing.limit_reached is emitted with the row)';
ALTER TABLE ventros.usage_limit_hits ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.usage_limit_hits FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_select ON ventros.usage_limit_hits FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.usage_limit_hits TO ventros_viewer;

SELECT ventros.register_event_type('billing.limit_reached',
    'A tenant reached a limit of its plan in the current billing period (once per period and metric).');

-- ---- metering ----------------------------------------------------------------

-- meter_usage: appends usage of the acting tenant.  Internal: called by the
-- commands that count (messages, enrichments), never granted to a tenant.
CREATE FUNCTION ventros.meter_usage(metrics text[], quantities bigint[], channel_id uuid DEFAULT NULL,
                                    at timestamptz DEFAULT now())
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
BEGIN
    IF EXISTS (SELECT 1 FROM unnest(metrics) m WHERE m IS NULL OR m <> ALL (ventros.usage_metrics())
                                                     OR m = 'active_contacts') THEN
        RAISE EXCEPTION 'unknown usage metric in %', metrics USING ERRCODE = '22023',
            HINT = 'Metered are messages_sent, messages_received, enrichments and ai_tokens.';
    END IF;
    INSERT INTO ventros.usage_deltas (tenant_id, metric, channel_id, quantity, at)
    SELECT tenant, u.metric, meter_usage.channel_id, u.quantity, coalesce(meter_usage.at, now())
    FROM unnest(metrics, quantities) u(metric, quantity)
    WHERE u.quantity > 0;
END
$$;
COMMENT ON FUNCTION ventros.meter_usage(text[], bigint[], uuid, timestamptz) IS
    'Appends usage of the acting tenant (one row per metric with a positive quantity; no row lock); internal';

-- ---- periods, plans and reading ---------------------------------------------

-- The acting tenant's billing period: its current subscription's (active,
-- trialing or past due), else the calendar month (UTC).
CREATE FUNCTION ventros.usage_period(OUT period_start timestamptz, OUT period_end timestamptz, OUT plan text)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    SELECT s.current_period_start, s.current_period_end, s.stripe_price_id INTO period_start, period_end, plan
      FROM ventros.subscriptions s
     WHERE s.tenant_id = ventros.require_tenant() AND s.deleted_at IS NULL
       AND s.status IN ('active', 'trialing', 'past_due')
       AND s.current_period_start <= now() AND s.current_period_end > now()
     ORDER BY s.current_period_start DESC LIMIT 1;
    IF NOT FOUND THEN
        period_start := date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
        period_end := period_start + interval '1 month';
        plan := 'default';
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.usage_period() IS
    'The acting tenant''s billing period and plan: its current subscription''s (price id), else the UTC calendar month and "default"';

-- The limits of the acting tenant's plan ({} when its plan has none).
CREATE FUNCTION ventros.plan_limits(plan text) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce((SELECT p.limits FROM ventros.billing_plans p WHERE p.plan = plan_limits.plan), '{}') $$;
COMMENT ON FUNCTION ventros.plan_limits(text) IS 'The limits of a plan ({} for a plan without a row)';

-- Usage of one metric since an instant: folded days from that instant's day
-- (periods are counted in whole UTC days) plus the deltas not folded yet.
CREATE FUNCTION ventros.usage_since(metric text, since timestamptz) RETURNS bigint
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT sum(t.quantity) FROM ventros.usage_totals t
                      WHERE t.tenant_id = ventros.require_tenant() AND t.metric = usage_since.metric
                        AND t.day >= (since AT TIME ZONE 'UTC')::date), 0)::bigint
         + coalesce((SELECT sum(d.quantity) FROM ventros.usage_deltas d
                      WHERE d.tenant_id = ventros.require_tenant() AND d.metric = usage_since.metric
                        AND d.at >= date_trunc('day', since AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'), 0)::bigint
$$;
COMMENT ON FUNCTION ventros.usage_since(text, timestamptz) IS
    'The acting tenant''s usage of a metric from the UTC day of an instant: folded totals plus deltas not folded yet';

-- Contacts with a message (either way) in the period.
CREATE FUNCTION ventros.active_contacts_since(since timestamptz) RETURNS bigint
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(*) FROM ventros.contacts c
     WHERE c.tenant_id = ventros.require_tenant() AND c.deleted_at IS NULL AND c.last_interaction_at >= since
$$;
COMMENT ON FUNCTION ventros.active_contacts_since(timestamptz) IS
    'The acting tenant''s contacts with a message since an instant (their last interaction, kept to the minute)';

CREATE FUNCTION ventros.usage_status()
RETURNS TABLE (metric text, quantity bigint, usage_limit bigint, period_start timestamptz, period_end timestamptz,
               plan text, limit_reached boolean)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    p record := ventros.usage_period();
    limits jsonb := ventros.plan_limits(p.plan);
BEGIN
    RETURN QUERY
    SELECT m, q, (limits->>m)::bigint, p.period_start, p.period_end, p.plan, q >= (limits->>m)::bigint
    FROM unnest(ventros.usage_metrics()) m,
         LATERAL (SELECT CASE WHEN m = 'active_contacts' THEN ventros.active_contacts_since(p.period_start)
                              ELSE ventros.usage_since(m, p.period_start) END) x(q);
END
$$;
COMMENT ON FUNCTION ventros.usage_status() IS
    'The acting tenant''s usage in its current billing period, per metric, exact (folded + pending), with its plan''s limit and whether it is reached';

CREATE FUNCTION ventros.usage_by_channel(since timestamptz DEFAULT NULL)
RETURNS TABLE (channel_id uuid, messages_sent bigint, messages_received bigint)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    start timestamptz := coalesce(since, (ventros.usage_period()).period_start);
BEGIN
    RETURN QUERY
    SELECT u.channel_id, sum(u.q) FILTER (WHERE u.metric = 'messages_sent')::bigint,
           sum(u.q) FILTER (WHERE u.metric = 'messages_received')::bigint
    FROM (SELECT t.channel_id, t.metric, t.quantity AS q FROM ventros.usage_totals t
           WHERE t.tenant_id = tenant AND t.day >= (start AT TIME ZONE 'UTC')::date
             AND t.metric IN ('messages_sent', 'messages_received')
          UNION ALL
          SELECT d.channel_id, d.metric, d.quantity FROM ventros.usage_deltas d
           WHERE d.tenant_id = tenant AND d.at >= date_trunc('day', start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
             AND d.metric IN ('messages_sent', 'messages_received')) u
    GROUP BY u.channel_id ORDER BY u.channel_id;
END
$$;
COMMENT ON FUNCTION ventros.usage_by_channel(timestamptz) IS
    'The acting tenant''s messages sent and received per channel since an instant (default: the start of the billing period), exact';

-- ---- limits --------------------------------------------------------------------

-- note_limit_reached: the row of a reached limit, and billing.limit_reached
-- with it the first time in the period (SECURITY DEFINER: the event belongs
-- to no table a tenant may change).
CREATE FUNCTION ventros.note_limit_reached(metric text, usage_limit bigint, used bigint,
                                           period_start timestamptz, period_end timestamptz)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    account uuid;
BEGIN
    INSERT INTO ventros.usage_limit_hits (tenant_id, metric, period_start, usage_limit)
    VALUES (tenant, note_limit_reached.metric, note_limit_reached.period_start, usage_limit)
    ON CONFLICT ON CONSTRAINT usage_limit_hits_pkey DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    SELECT b.id INTO account FROM ventros.billing_accounts b
     WHERE b.tenant_id = tenant AND b.deleted_at IS NULL ORDER BY b.created_at LIMIT 1;
    PERFORM ventros.emit('billing.limit_reached', 'billing', coalesce(account, '00000000-0000-0000-0000-000000000000'),
        jsonb_build_object('metric', metric, 'limit', usage_limit, 'usage', used,
                           'period_start', period_start, 'period_end', period_end, 'billing_account_id', account));
    RETURN true;
END
$$;
COMMENT ON FUNCTION ventros.note_limit_reached(text, bigint, bigint, timestamptz, timestamptz) IS
    'Records that the acting tenant reached a limit in a period and emits billing.limit_reached, once per metric and period; internal';

-- check_usage_limit: refuses (VN020) what would take the acting tenant over
-- its plan's limit of a metric in the current period; notes the limit
-- reached when this use reaches it exactly.  Reads only (no lock) until a
-- limit is reached.
CREATE FUNCTION ventros.check_usage_limit(metric text, adding bigint DEFAULT 1)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    p record := ventros.usage_period();
    cap bigint := (ventros.plan_limits(p.plan)->>metric)::bigint;
    used bigint;
BEGIN
    IF cap IS NULL OR coalesce(adding, 0) <= 0 THEN
        RETURN;
    END IF;
    used := ventros.usage_since(metric, p.period_start);
    IF used + adding > cap THEN
        RAISE EXCEPTION 'plan limit reached: % %', cap, replace(metric, '_', ' ')
            USING ERRCODE = 'VN020',
                  DETAIL = format('%s of %s used in the period from %s to %s; this needs %s more.', used, cap,
                                  p.period_start, p.period_end, adding),
                  HINT = 'Upgrade the plan, or wait for the next billing period.';
    END IF;
    IF used + adding = cap THEN
        PERFORM ventros.note_limit_reached(metric, cap, used + adding, p.period_start, p.period_end);
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.check_usage_limit(text, bigint) IS
    'Raises VN020 when adding to a metric would take the acting tenant over its plan''s limit in the current period; emits billing.limit_reached when this use reaches it';

CREATE FUNCTION ventros.set_billing_plan(plan text, name text, limits jsonb DEFAULT '{}',
                                         product ventros.product DEFAULT 'crm')
RETURNS ventros.billing_plans
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.billing_plans;
BEGIN
    PERFORM ventros.require_platform_admin();
    IF jsonb_typeof(limits) IS DISTINCT FROM 'object'
       OR EXISTS (SELECT 1 FROM jsonb_each(limits) l
                   WHERE l.key <> ALL (ventros.usage_metrics()) OR jsonb_typeof(l.value) <> 'number'
                      OR (l.value #>> '{}')::numeric < 0 OR (l.value #>> '{}')::numeric <> trunc((l.value #>> '{}')::numeric)) THEN
        RAISE EXCEPTION 'plan limits are an object of metric to a whole number of zero or more' USING ERRCODE = '22023',
            DETAIL = format('Metrics: %s.', array_to_string(ventros.usage_metrics(), ', '));
    END IF;
    INSERT INTO ventros.billing_plans AS p (plan, name, product, limits)
    VALUES (set_billing_plan.plan, set_billing_plan.name, set_billing_plan.product, set_billing_plan.limits)
    ON CONFLICT ON CONSTRAINT billing_plans_pkey
    DO UPDATE SET name = EXCLUDED.name, product = EXCLUDED.product, limits = EXCLUDED.limits
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.set_billing_plan(text, text, jsonb, ventros.product) IS
    'Platform admins: declares a plan (a Stripe price id, or "default") with its limits per metric and period';

-- ---- the fold -------------------------------------------------------------------

-- fold_usage: moves the acting tenant's deltas into usage_totals, sets the
-- quantities of its live usage meters of the current period (each change a
-- usage_meter.updated of the engine) and notes limits reached
-- by usage no command refused.  Without a tenant (the scheduled job, a
-- platform administrator): every tenant with deltas, each on its own
-- (ventros.run_per_tenant).
CREATE FUNCTION ventros.fold_usage()
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.current_tenant();
    folded integer;
    p record;
    lim record;
    used bigint;
BEGIN
    IF tenant IS NULL THEN
        PERFORM ventros.require_platform_admin();
        SELECT coalesce(sum((r.result #>> '{}')::integer), 0)::integer INTO folded
          FROM ventros.run_per_tenant('ventros-fold-usage', 'SELECT pg_catalog.to_jsonb(ventros.fold_usage())',
                   ARRAY(SELECT DISTINCT d.tenant_id FROM ventros.usage_deltas d ORDER BY 1)) r;
        RETURN folded;
    END IF;
    WITH gone AS (
        DELETE FROM ventros.usage_deltas d WHERE d.tenant_id = tenant RETURNING d.*),
    sums AS (
        INSERT INTO ventros.usage_totals AS t (tenant_id, metric, day, channel_id, quantity)
        SELECT g.tenant_id, g.metric, (g.at AT TIME ZONE 'UTC')::date,
               coalesce(g.channel_id, '00000000-0000-0000-0000-000000000000'), sum(g.quantity)
          FROM gone g GROUP BY 1, 2, 3, 4
        ON CONFLICT ON CONSTRAINT usage_totals_pkey DO UPDATE SET quantity = t.quantity + EXCLUDED.quantity
        RETURNING 1)
    SELECT count(*)::integer INTO folded FROM sums;
    -- the meters of the current period follow the totals
    UPDATE ventros.usage_meters m
       SET quantity = greatest(m.reported_quantity, x.q), version = m.version
      FROM (SELECT mm.id, CASE WHEN mm.metric_name = 'active_contacts' THEN ventros.active_contacts_since(mm.period_start)
                               ELSE ventros.usage_since(mm.metric_name, mm.period_start) END AS q
              FROM ventros.usage_meters mm
             WHERE mm.tenant_id = tenant AND mm.deleted_at IS NULL AND mm.metric_name = ANY (ventros.usage_metrics())
               AND mm.period_start <= now() AND mm.period_end > now()) x
     WHERE m.tenant_id = tenant AND m.id = x.id AND m.quantity IS DISTINCT FROM greatest(m.reported_quantity, x.q);
    -- limits reached by usage that nothing refuses (inbound messages)
    p := ventros.usage_period();
    FOR lim IN SELECT l.key AS metric, (l.value #>> '{}')::bigint AS cap
                 FROM jsonb_each(ventros.plan_limits(p.plan)) l
                WHERE NOT EXISTS (SELECT 1 FROM ventros.usage_limit_hits h
                                   WHERE h.tenant_id = tenant AND h.metric = l.key AND h.period_start = p.period_start)
    LOOP
        used := CASE WHEN lim.metric = 'active_contacts' THEN ventros.active_contacts_since(p.period_start)
                     ELSE ventros.usage_since(lim.metric, p.period_start) END;
        IF used >= lim.cap THEN
            PERFORM ventros.note_limit_reached(lim.metric, lim.cap, used, p.period_start, p.period_end);
        END IF;
    END LOOP;
    RETURN folded;
END
$$;
COMMENT ON FUNCTION ventros.fold_usage() IS
    'Folds usage deltas into usage_totals and the quantities of the current usage meters, and notes limits reached; per tenant (ventros.run_per_tenant) without one; returns the totals rows written';

GRANT EXECUTE ON FUNCTION ventros.usage_metrics(), ventros.usage_status(), ventros.usage_by_channel(timestamptz)
    TO ventros_viewer;
-- The commands that consume (send_messages) check as their caller.
GRANT EXECUTE ON FUNCTION ventros.check_usage_limit(text, bigint) TO ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.set_billing_plan(text, text, jsonb, ventros.product), ventros.fold_usage()
    TO ventros_platform_admin;

CREATE OR REPLACE FUNCTION ventros.count_channel_messages(channel_id uuid, received bigint, sent bigint, at timestamptz)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
BEGIN
    -- only a live channel of the acting tenant: a count row for anything
    -- else could never be folded
    PERFORM FROM ventros.channels ch
     WHERE ch.tenant_id = tenant AND ch.id = count_channel_messages.channel_id AND ch.deleted_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'channel % not found', count_channel_messages.channel_id USING ERRCODE = 'P0002';
    END IF;
    IF received < 0 OR sent < 0 THEN
        RAISE EXCEPTION 'message counts are not negative' USING ERRCODE = '22023';
    END IF;
    INSERT INTO ventros.channel_message_counts AS c
        (tenant_id, channel_id, slot, messages_received, messages_sent, last_message_at)
    VALUES (tenant, count_channel_messages.channel_id, ventros.stats_slot(), received, sent, at)
    ON CONFLICT ON CONSTRAINT channel_message_counts_pkey DO UPDATE
    SET messages_received = c.messages_received + EXCLUDED.messages_received,
        messages_sent = c.messages_sent + EXCLUDED.messages_sent,
        last_message_at = greatest(c.last_message_at, EXCLUDED.last_message_at);
    -- the tenant's usage, appended (sql/65_usage_metering.sql)
    PERFORM ventros.meter_usage(ARRAY['messages_received', 'messages_sent'], ARRAY[received, sent],
                                count_channel_messages.channel_id, at);
END
$$;
COMMENT ON FUNCTION ventros.count_channel_messages(uuid, bigint, bigint, timestamptz) IS
    'Counts messages received and sent (last at an instant) on a live channel of the acting tenant (P0002 for any other), in the channel''s slot rows (see channel_message_counts)';

CREATE OR REPLACE FUNCTION ventros.send_messages(
    channel_id   uuid,
    contact_ids  uuid[],
    text         text    DEFAULT NULL,
    agent_id     uuid    DEFAULT NULL,
    source       text    DEFAULT 'manual',
    content_type text    DEFAULT 'text',
    media_url    text    DEFAULT NULL,
    media_mimetype text  DEFAULT NULL,
    reply_to_id  uuid    DEFAULT NULL,
    chat_id      uuid    DEFAULT NULL,
    metadata     jsonb   DEFAULT NULL,
    template_name       text  DEFAULT NULL,
    template_language   text  DEFAULT NULL,
    template_components jsonb DEFAULT NULL)
RETURNS SETOF ventros.message_send
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    ch ventros.channels;
    sender ventros.agents;
    tpl jsonb;
    body text;
    known uuid[];
    ready uuid[];
    sessions ventros.sessions[];
    sent ventros.messages[];
    queued ventros.message_send[];
    refused ventros.message_send[];
    state text;
BEGIN
    PERFORM ventros.plan_for_set(cardinality(contact_ids));
    IF source IS NULL OR source NOT IN ('manual', 'broadcast', 'sequence', 'trigger', 'bot', 'system', 'webhook',
                                        'scheduled', 'test') THEN
        RAISE EXCEPTION 'unknown message source "%"', left(source, 32) USING ERRCODE = '22023';
    END IF;
    SELECT * INTO ch FROM ventros.channels c WHERE c.tenant_id = tenant AND c.id = send_messages.channel_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'channel % not found', channel_id USING ERRCODE = 'P0002';
    END IF;
    -- The contacts, share-locked in id order: a concurrent opt-out waits for this send, or this send sees it.
    WITH locked AS (SELECT c.id FROM ventros.contacts c WHERE c.tenant_id = tenant AND c.id = ANY (contact_ids)
                    ORDER BY c.id FOR SHARE)
    SELECT coalesce(array_agg(l.id ORDER BY l.id), '{}') INTO known FROM locked l;
    RETURN QUERY
        SELECT u.x, NULL::ventros.messages, NULL::uuid, 'P0002', format('contact %s not found', coalesce(u.x::text, '<NULL>')),
               NULL::text, NULL::text
        FROM (SELECT unnest(contact_ids) EXCEPT SELECT unnest(known)) u(x);
    -- Consent: those who opted out are refused (VN010).
    refused := ARRAY(SELECT ventros.consent_refusal(x, ch.id) FROM unnest(known) x
                     WHERE NOT ventros.may_message(x, ch.id) ORDER BY x);
    RETURN QUERY SELECT * FROM unnest(refused);
    ready := ARRAY(SELECT d.x FROM (SELECT unnest(known) EXCEPT SELECT r.contact_id FROM unnest(refused) r) d(x) ORDER BY 1);
    IF cardinality(ready) = 0 THEN
        RETURN;
    END IF;
    -- the plan's limit of messages sent (VN020; sql/65_usage_metering.sql)
    PERFORM ventros.check_usage_limit('messages_sent', cardinality(ready));
    agent_id := coalesce(agent_id, CASE WHEN source NOT IN ('manual', 'bot') THEN ventros.system_agent_id(source) END);
    IF agent_id IS NULL THEN
        RAISE EXCEPTION 'an outbound message needs its sending agent' USING ERRCODE = '23502',
            HINT = 'Pass agent_id, or a source such as broadcast whose system agent sends.';
    END IF;
    SELECT * INTO sender FROM ventros.agents a WHERE a.tenant_id = tenant AND a.id = send_messages.agent_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'agent % not found', agent_id USING ERRCODE = 'P0002';
    END IF;
    IF sender.type = 'virtual' OR NOT sender.active THEN
        RAISE EXCEPTION 'agent % cannot send messages', agent_id USING ERRCODE = '22023',
            DETAIL = 'Virtual and inactive agents never send.';
    END IF;
    IF template_name IS NOT NULL THEN
        -- A WhatsApp template (sql/91_whatsapp_templates.sql): validated now,
        -- kept in metadata.template, its body text as the message text.
        IF ch.type NOT IN ('whatsapp', 'whatsapp_business') THEN
            RAISE EXCEPTION 'templates are sent on WhatsApp Cloud channels only' USING ERRCODE = '22023';
        END IF;
        tpl := ventros.prepare_template_message(ch.id, template_name, template_language, template_components);
        content_type := 'text';
        text := coalesce(text, tpl->>'text');
        metadata := coalesce(metadata, '{}') || jsonb_build_object('template', tpl->'template');
    END IF;
    body := ventros.check_length(text, 4096, 'message text');
    -- Sessions, messages, effects and requests for the contacts still ready.
    -- A contact whose request cannot be built (no address on the provider,
    -- the window closed) is refused: the round is undone (a subtransaction)
    -- and done again without it, so nothing stays written for it.
    FOR round IN 1..3 LOOP
        BEGIN
            sessions := ARRAY(SELECT s FROM ventros.start_or_continue_sessions(ready, ch.id, now()) s);
            WITH inserted AS (
                INSERT INTO ventros.messages ("timestamp", project_id, channel_id, channel_type_id, chat_id, session_id,
                                              contact_id, from_me, content_type, text, media_url, media_mimetype, reply_to_id,
                                              status, agent_id, source, metadata)
                SELECT now(), ch.project_id, ch.id, s.channel_type_id, send_messages.chat_id, s.id, s.contact_id, true,
                       coalesce(send_messages.content_type, 'text'), body, send_messages.media_url,
                       send_messages.media_mimetype, send_messages.reply_to_id, 'queued', sender.id, send_messages.source,
                       send_messages.metadata
                FROM unnest(sessions) s ORDER BY s.contact_id
                RETURNING *)
            SELECT coalesce(array_agg(i ORDER BY i.contact_id), '{}') INTO sent FROM inserted i;
            PERFORM ventros.record_messages_effects(sent);
            -- The provider requests, in this transaction (queue_message_sends).
            queued := ARRAY(SELECT q FROM ventros.queue_message_sends(ARRAY(SELECT m.id FROM unnest(sent) m)) q);
            refused := ARRAY(SELECT q FROM unnest(queued) q WHERE q.error_code IS NOT NULL);
            IF cardinality(refused) > 0 THEN
                RAISE EXCEPTION 'ventros.send_messages: undo the round of refused contacts' USING ERRCODE = 'P0001';
            END IF;
            RETURN QUERY SELECT * FROM unnest(queued);
            RETURN;
        EXCEPTION
            WHEN raise_exception THEN
                GET STACKED DIAGNOSTICS state = MESSAGE_TEXT;
                IF state <> 'ventros.send_messages: undo the round of refused contacts' THEN
                    RAISE;
                END IF;
            WHEN check_violation THEN
                RAISE EXCEPTION 'invalid outbound message: %', SQLERRM USING ERRCODE = '23514';
        END;
        RETURN QUERY SELECT r.contact_id, NULL::ventros.messages, NULL::uuid, r.error_code, r.error, r.error_detail,
                            r.error_hint
                     FROM unnest(refused) r;
        ready := ARRAY(SELECT d.x FROM (SELECT unnest(ready) EXCEPT SELECT r.contact_id FROM unnest(refused) r) d(x)
                       ORDER BY 1);
        IF cardinality(ready) = 0 THEN
            RETURN;
        END IF;
    END LOOP;
    RAISE EXCEPTION 'could not send to % contacts on channel %', cardinality(ready), channel_id USING ERRCODE = '40001';
END
$$;
COMMENT ON FUNCTION ventros.send_messages(uuid, uuid[], text, uuid, text, text, text, text, uuid, uuid, jsonb, text, text, jsonb) IS
    'One outbound message to each of a set of contacts, queued with its provider request (message.send), one statement per table for the set: a contact not found (P0002), opted out (VN010), without an address on the provider or outside the WhatsApp 24-hour window (22023) is refused alone (a row with its error; nothing written for it); the source, channel, agent (virtual or inactive: 22023) and template are checked once and refuse the call; automated sources send as their system agent; emits message.created and session.message_recorded per message (and session.started for a new session)';

CREATE OR REPLACE FUNCTION ventros.enrichment_attempt_succeeded(r ventros.http_requests, result jsonb) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e ventros.message_enrichments;
BEGIN
    -- one statement (the dispatcher runs this for every answer): only while
    -- this request is the enrichment's current attempt
    UPDATE ventros.message_enrichments x
       SET status = 'completed', extracted_text = result->>'text', language = left(result->>'language', 35),
           attempts = x.attempts || jsonb_build_array(jsonb_build_object('provider', x.provider, 'request_id', r.id,
                                                                         'outcome', 'succeeded', 'at', now())),
           confidence = (result->>'confidence')::numeric, usage = result->'usage',
           cost = ventros.enrichment_cost((SELECT p.prices FROM ventros.enrichment_providers p WHERE p.provider = x.provider),
                                          coalesce(result->'usage', '{}')),
           model = coalesce(result->>'model', x.model),
           metadata = coalesce(x.metadata, '{}') || coalesce(result->'metadata', '{}'),
           request_id = NULL, processed_at = now(), version = x.version,
           processing_time_ms = (extract(epoch FROM now() - x.created_at) * 1000)::integer
     WHERE x.tenant_id = r.tenant_id AND x.id = r.correlation_id AND x.request_id = r.id AND x.status = 'processing'
    RETURNING * INTO e;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    -- the tenant's usage: one enrichment and the provider's tokens (sql/65_usage_metering.sql)
    PERFORM ventros.meter_usage(ARRAY['enrichments', 'ai_tokens'],
        ARRAY[1, (coalesce((e.usage->>'input_tokens')::numeric, 0) + coalesce((e.usage->>'output_tokens')::numeric, 0))::bigint]);
    IF e.message_id IS NULL THEN
        PERFORM ventros.emit('contact.profile_picture_scored', 'contact', e.contact_id,
            jsonb_strip_nulls(jsonb_build_object('enrichment_id', e.id, 'score', e.metadata->'score', 'provider', e.provider,
                                                 'model', e.model, 'text', left(e.extracted_text, 500), 'cost', e.cost)));
        RETURN;
    END IF;
    PERFORM ventros.emit('message.enriched', 'message', e.message_id,
        jsonb_strip_nulls(jsonb_build_object('enrichment_id', e.id, 'kind', e.kind, 'provider', e.provider, 'model', e.model,
                           'language', e.language, 'confidence', e.confidence, 'usage', e.usage, 'cost', e.cost,
                           'text', left(e.extracted_text, 2000), 'text_length', length(e.extracted_text))));
END
$$;
COMMENT ON FUNCTION ventros.enrichment_attempt_succeeded(ventros.http_requests, jsonb) IS
    'Completes an enrichment with a provider''s result (text, language, confidence, usage, model) and its cost; emits message.enriched';

INSERT INTO ventros.scheduled_jobs (name, schedule, command, purpose) VALUES
    ('ventros-fold-usage', '* * * * *', 'SELECT ventros.fold_usage()',
     'moves usage deltas into the usage totals and meters, notes plan limits reached'),
    ('ventros-report-usage', '5 * * * *', 'SELECT ventros.report_usage_to_stripe()',
     'reports the usage meters'' unreported usage to Stripe as meter events');


-- ---- Stripe outbound calls (sql/66_stripe_outbound.sql; api.register in sql/12_users.sql)
-- Customers, subscriptions and meter events through the dispatcher with an
-- Idempotency-Key; sign-up no longer activates the account (docs/billing.md).

-- Calls to Stripe's API (docs/billing.md): the customer of a new tenant,
-- subscriptions created and changed, usage reported as meter events.
--
-- Every call is a row of the HTTP dispatcher's queue (sql/45_http_requests.sql),
-- written in the transaction that decided it, of the tenant it bills:
--   - form-encoded as Stripe's API takes it (ventros.stripe_form), with an
--     Idempotency-Key chosen once per intent and kept on the row, so a retry
--     of the dispatcher (a timeout after Stripe acted, say) is answered by
--     Stripe with the first answer instead of a second customer or charge;
--   - the platform's secret key is added per attempt by the purposes'
--     preparer (ventros.stripe_request_headers): it is stored encrypted in
--     ventros.stripe_settings and never on the row a tenant's admin may read;
--   - Stripe's answer is applied by the purpose's handler through the
--     platform-only commands (link_stripe_customer, the webhook's
--     apply_stripe_subscription, the usage meter's report).
-- Until a key is configured (ventros.configure_stripe) nothing is queued:
-- a platform without Stripe keeps working, its accounts pending.

CREATE TABLE ventros.stripe_settings (
    id         boolean     PRIMARY KEY DEFAULT true,
    api_key    bytea       NOT NULL,
    api_base   text        NOT NULL DEFAULT 'https://api.stripe.com',
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT stripe_settings_one_row CHECK (id),
    CONSTRAINT stripe_settings_api_base_http CHECK (api_base ~* '^https?://[^/?#]+$')
);
COMMENT ON TABLE ventros.stripe_settings IS
    'The platform''s Stripe API key (encrypted with ventros.secret_key) and API base URL; one row; read by the dispatcher''s preparer only';
ALTER TABLE ventros.stripe_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.stripe_settings FORCE ROW LEVEL SECURITY;
REVOKE ALL ON ventros.stripe_settings FROM PUBLIC;

CREATE FUNCTION ventros.configure_stripe(api_key text, api_base text DEFAULT 'https://api.stripe.com')
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.require_platform_admin();
    IF api_key IS NULL OR api_key !~ '^(sk|rk)_(test|live)_[A-Za-z0-9]{8,247}$' THEN
        RAISE EXCEPTION 'a Stripe secret key looks like sk_live_... or rk_live_...' USING ERRCODE = '22023',
            HINT = 'Copy a secret or restricted key from the Stripe dashboard (Developers, API keys).';
    END IF;
    IF api_base IS NULL OR api_base !~* '^https?://[^/?#]+$' THEN
        RAISE EXCEPTION 'the Stripe API base is a URL without a path, like https://api.stripe.com' USING ERRCODE = '22023';
    END IF;
    INSERT INTO ventros.stripe_settings AS s (id, api_key, api_base)
    VALUES (true, ventros.encrypt_secret(api_key), api_base)
    ON CONFLICT ON CONSTRAINT stripe_settings_pkey
    DO UPDATE SET api_key = EXCLUDED.api_key, api_base = EXCLUDED.api_base, updated_at = now();
END
$$;
COMMENT ON FUNCTION ventros.configure_stripe(text, text) IS
    'Platform admins: stores the Stripe secret key (encrypted) and API base URL the outbound calls use';

-- application/x-www-form-urlencoded as Stripe reads it: nested objects and
-- arrays as bracketed keys (items[0][price]=price_1), values percent-encoded.
CREATE FUNCTION ventros.stripe_form_encode(value text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT string_agg(CASE WHEN b ~ '^[A-Za-z0-9_.~-]$' THEN b ELSE upper(regexp_replace(encode(convert_to(b, 'UTF8'), 'hex'), '(..)', '%\1', 'g')) END, '' ORDER BY n)
    FROM regexp_split_to_table(value, '') WITH ORDINALITY x(b, n)
$$;
COMMENT ON FUNCTION ventros.stripe_form_encode(text) IS 'Percent-encodes a form value (UTF-8; unreserved characters kept)';

CREATE FUNCTION ventros.stripe_form(params jsonb, prefix text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parts text[] := '{}';
    k text;
    v jsonb;
BEGIN
    FOR k, v IN
        SELECT CASE WHEN prefix IS NULL THEN e.key ELSE prefix || '[' || e.key || ']' END, e.value
          FROM jsonb_each(CASE WHEN jsonb_typeof(params) = 'object' THEN params ELSE '{}' END) e
        UNION ALL
        SELECT prefix || '[' || (a.n - 1) || ']', a.value
          FROM jsonb_array_elements(CASE WHEN jsonb_typeof(params) = 'array' THEN params ELSE '[]' END)
               WITH ORDINALITY a(value, n)
    LOOP
        IF jsonb_typeof(v) IN ('object', 'array') THEN
            parts := parts || nullif(ventros.stripe_form(v, k), '');
        ELSIF jsonb_typeof(v) <> 'null' THEN
            parts := parts || (k || '=' || ventros.stripe_form_encode(v #>> '{}'));
        END IF;
    END LOOP;
    RETURN array_to_string(parts, '&');
END
$$;
COMMENT ON FUNCTION ventros.stripe_form(jsonb, text) IS
    'A JSON object as a Stripe form body: nested keys in brackets (metadata[tenant]=x, items[0][price]=y), nulls left out';

-- stripe_call: queues one call to Stripe for the acting tenant; NULL when
-- Stripe is not configured.  Internal (the commands below and api.register).
CREATE FUNCTION ventros.stripe_call(purpose text, method text, path text, params jsonb, idempotency_key text,
                                    correlation_id uuid)
RETURNS uuid
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    base text := (SELECT s.api_base FROM ventros.stripe_settings s);
BEGIN
    IF base IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN ventros.enqueue_http_request(base || path, method,
        jsonb_build_object('Content-Type', 'application/x-www-form-urlencoded', 'Idempotency-Key', idempotency_key),
        convert_to(ventros.stripe_form(params), 'UTF8'), purpose, correlation_id);
END
$$;
COMMENT ON FUNCTION ventros.stripe_call(text, text, text, jsonb, text, uuid) IS
    'Queues a form-encoded call to Stripe with an Idempotency-Key for the acting tenant (the key is added per attempt); NULL when Stripe is not configured; internal';

-- The preparer of every stripe.* purpose: the stored headers plus the key.
CREATE FUNCTION ventros.stripe_request_headers(r ventros.http_requests) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    key text := (SELECT ventros.decrypt_secret(s.api_key) FROM ventros.stripe_settings s);
BEGIN
    IF key IS NULL THEN
        RETURN r.headers;
    END IF;
    RETURN r.headers || jsonb_build_object('Authorization', 'Bearer ' || key);
END
$$;
COMMENT ON FUNCTION ventros.stripe_request_headers(ventros.http_requests) IS
    'Dispatcher: the headers of an attempt to Stripe, with the platform''s secret key (never stored on the request)';

-- Stripe's answer as JSON (NULL unless the request succeeded with an object).
CREATE FUNCTION ventros.stripe_answer_object(r ventros.http_requests) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    doc jsonb;
BEGIN
    IF r.status <> 'succeeded' OR r.response_body IS NULL THEN
        RETURN NULL;
    END IF;
    doc := convert_from(r.response_body, 'UTF8')::jsonb;
    RETURN CASE WHEN jsonb_typeof(doc) = 'object' THEN doc END;
EXCEPTION WHEN data_exception OR invalid_text_representation OR character_not_in_repertoire THEN
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.stripe_answer_object(ventros.http_requests) IS
    'The JSON object Stripe answered a succeeded request with; NULL otherwise';

-- ---- customers ---------------------------------------------------------------

CREATE FUNCTION ventros.stripe_customer_request(b ventros.billing_accounts) RETURNS uuid
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.stripe_call('stripe.customer', 'POST', '/v1/customers',
        jsonb_build_object('email', b.billing_email, 'name', b.name,
                           'metadata', jsonb_build_object('tenant_id', b.tenant_id, 'billing_account_id', b.id)),
        'ventros-customer-' || b.id, b.id)
$$;
COMMENT ON FUNCTION ventros.stripe_customer_request(ventros.billing_accounts) IS
    'Queues the creation of the Stripe customer of a billing account (Idempotency-Key from the account: never two customers); internal';

CREATE FUNCTION ventros.request_stripe_customer(billing_account_id uuid) RETURNS uuid
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b ventros.billing_accounts := ventros.get_billing_account(billing_account_id);
BEGIN
    PERFORM ventros.require_platform_admin();
    IF b.stripe_customer_id IS NOT NULL THEN
        RAISE EXCEPTION 'billing account % has Stripe customer % already', b.id, b.stripe_customer_id
            USING ERRCODE = '23505';
    END IF;
    RETURN ventros.stripe_customer_request(b);
END
$$;
COMMENT ON FUNCTION ventros.request_stripe_customer(uuid) IS
    'Platform admins: queues the creation of a billing account''s Stripe customer (23505 when it has one); NULL when Stripe is not configured';

-- Handler of stripe.customer: the answer's customer is linked to the account.
CREATE FUNCTION ventros.stripe_customer_answered(r ventros.http_requests) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    obj jsonb := ventros.stripe_answer_object(r);
    b ventros.billing_accounts;
BEGIN
    IF obj IS NULL THEN
        RETURN;   -- refused or dead: the request keeps Stripe's answer for an operator
    END IF;
    b := ventros.get_billing_account(r.correlation_id);
    IF b.stripe_customer_id IS DISTINCT FROM obj->>'id' THEN
        PERFORM ventros.link_stripe_customer(b.id, b.version, obj->>'id');
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.stripe_customer_answered(ventros.http_requests) IS
    'Handler of stripe.customer: links the customer Stripe created to the billing account (link_stripe_customer)';

-- ---- subscriptions -------------------------------------------------------------

CREATE FUNCTION ventros.request_stripe_subscription(billing_account_id uuid, price_id text) RETURNS uuid
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b ventros.billing_accounts := ventros.get_billing_account(billing_account_id);
BEGIN
    PERFORM ventros.require_platform_admin();
    IF price_id IS NULL OR price_id !~ '^price_[A-Za-z0-9]{1,200}$' THEN
        RAISE EXCEPTION 'malformed Stripe price id "%"', left(price_id, 64) USING ERRCODE = '22P02';
    END IF;
    IF b.stripe_customer_id IS NULL THEN
        RAISE EXCEPTION 'billing account % has no Stripe customer', b.id USING ERRCODE = '23502',
            HINT = 'Its customer is created at sign-up (ventros.request_stripe_customer).';
    END IF;
    RETURN ventros.stripe_call('stripe.subscription', 'POST', '/v1/subscriptions',
        jsonb_build_object('customer', b.stripe_customer_id, 'items', jsonb_build_array(jsonb_build_object('price', price_id)),
                           'metadata', jsonb_build_object('tenant_id', b.tenant_id, 'billing_account_id', b.id)),
        'ventros-subscription-' || gen_random_uuid(), b.id);
END
$$;
COMMENT ON FUNCTION ventros.request_stripe_subscription(uuid, text) IS
    'Platform admins: queues a Stripe subscription of a billing account''s customer to a price; Stripe''s answer creates the mirrored subscription';

CREATE FUNCTION ventros.request_stripe_subscription_change(subscription_id uuid, price_id text DEFAULT NULL,
                                                           cancel_at_period_end boolean DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.subscriptions := ventros.get_subscription(subscription_id);
BEGIN
    PERFORM ventros.require_platform_admin();
    IF price_id IS NOT NULL AND price_id !~ '^price_[A-Za-z0-9]{1,200}$' THEN
        RAISE EXCEPTION 'malformed Stripe price id "%"', left(price_id, 64) USING ERRCODE = '22P02';
    END IF;
    IF price_id IS NULL AND cancel_at_period_end IS NULL THEN
        RAISE EXCEPTION 'nothing to change: give a price or cancel_at_period_end' USING ERRCODE = '22023';
    END IF;
    IF price_id IS NOT NULL AND s.metadata->>'stripe_item_id' IS NULL THEN
        RAISE EXCEPTION 'subscription % has no known Stripe item to change', s.id USING ERRCODE = '55000',
            HINT = 'Its item is learnt from Stripe''s answer when Ventros created it.';
    END IF;
    RETURN ventros.stripe_call('stripe.subscription', 'POST', '/v1/subscriptions/' || s.stripe_subscription_id,
        jsonb_build_object('items', CASE WHEN price_id IS NOT NULL THEN
                               jsonb_build_array(jsonb_build_object('id', s.metadata->>'stripe_item_id', 'price', price_id)) END,
                           'proration_behavior', CASE WHEN price_id IS NOT NULL THEN 'create_prorations' END,
                           'cancel_at_period_end', cancel_at_period_end),
        'ventros-subscription-' || gen_random_uuid(), s.billing_account_id);
END
$$;
COMMENT ON FUNCTION ventros.request_stripe_subscription_change(uuid, text, boolean) IS
    'Platform admins: queues a change of a Stripe subscription (its price, with prorations; cancellation at period end); Stripe''s answer updates the mirror';

-- Handler of stripe.subscription: the answer is applied as the webhook
-- applies customer.subscription.updated, and the item id kept for changes.
CREATE FUNCTION ventros.stripe_subscription_answered(r ventros.http_requests) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    obj jsonb := ventros.stripe_answer_object(r);
    s ventros.subscriptions;
    item text;
BEGIN
    IF obj IS NULL OR obj->>'object' IS DISTINCT FROM 'subscription' THEN
        RETURN;
    END IF;
    BEGIN
        PERFORM ventros.apply_stripe_subscription(ventros.get_billing_account(r.correlation_id), obj, false);
    EXCEPTION WHEN unique_violation THEN
        -- Stripe's webhook of the same subscription mirrored it meanwhile:
        -- it is committed now, so this applies to it
        PERFORM ventros.apply_stripe_subscription(ventros.get_billing_account(r.correlation_id), obj, false);
    END;
    item := obj #>> '{items,data,0,id}';
    SELECT * INTO s FROM ventros.subscriptions x
     WHERE x.tenant_id = r.tenant_id AND x.stripe_subscription_id = obj->>'id' AND x.deleted_at IS NULL;
    IF item IS NOT NULL AND s.metadata->>'stripe_item_id' IS DISTINCT FROM item THEN
        PERFORM ventros.change_row(NULL::ventros.subscriptions, 'subscription', s.id, s.version,
                                   jsonb_build_object('metadata', s.metadata || jsonb_build_object('stripe_item_id', item)));
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.stripe_subscription_answered(ventros.http_requests) IS
    'Handler of stripe.subscription: applies Stripe''s subscription as customer.subscription.updated would, keeping its item id';

-- ---- usage -------------------------------------------------------------------

-- report_usage_to_stripe: one meter event per live meter with usage not
-- reported yet, for the difference.  Its identifier (and Idempotency-Key)
-- is the meter and the quantity reached: the same report twice is one event
-- for Stripe.  Without a tenant: every tenant with such meters.
CREATE FUNCTION ventros.report_usage_to_stripe() RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.current_tenant();
    queued integer := 0;
    m ventros.usage_meters;
    ident text;
BEGIN
    PERFORM ventros.require_platform_admin();
    IF tenant IS NULL THEN
        SELECT coalesce(sum((r.result #>> '{}')::integer), 0)::integer INTO queued
          FROM ventros.run_per_tenant('ventros-report-usage', 'SELECT pg_catalog.to_jsonb(ventros.report_usage_to_stripe())',
                   ARRAY(SELECT DISTINCT u.tenant_id FROM ventros.usage_meters u
                          WHERE u.deleted_at IS NULL AND u.quantity > u.reported_quantity ORDER BY 1)) r;
        RETURN queued;
    END IF;
    FOR m IN SELECT * FROM ventros.usage_meters u
              WHERE u.tenant_id = tenant AND u.deleted_at IS NULL AND u.quantity > u.reported_quantity
                AND NOT EXISTS (SELECT 1 FROM ventros.http_requests q
                                 WHERE q.tenant_id = tenant AND q.correlation_id = u.id AND q.purpose = 'stripe.meter_event'
                                   AND q.status IN ('pending', 'in_flight'))
              ORDER BY u.id
    LOOP
        ident := 'usage-' || m.id || '-' || m.quantity;
        IF ventros.stripe_call('stripe.meter_event', 'POST', '/v1/billing/meter_events',
               jsonb_build_object('event_name', m.event_name, 'identifier', ident,
                                  'timestamp', extract(epoch FROM least(now(), m.period_end - interval '1 second'))::bigint,
                                  'payload', jsonb_build_object('stripe_customer_id', m.stripe_customer_id,
                                                                'value', m.quantity - m.reported_quantity)),
               ident, m.id) IS NOT NULL THEN
            queued := queued + 1;
        END IF;
    END LOOP;
    RETURN queued;
END
$$;
COMMENT ON FUNCTION ventros.report_usage_to_stripe() IS
    'Platform admins and the scheduled job: queues a Stripe meter event for the unreported usage of each live meter (identifier and Idempotency-Key: meter and quantity); per tenant without one; returns the events queued';

-- Handler of stripe.meter_event: the quantity Stripe accepted is reported.
CREATE FUNCTION ventros.stripe_meter_event_answered(r ventros.http_requests) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m ventros.usage_meters;
    upto bigint := substring(r.headers->>'Idempotency-Key' FROM '-([0-9]+)$')::bigint;
    before bigint;
BEGIN
    IF r.status <> 'succeeded' OR upto IS NULL THEN
        RETURN;
    END IF;
    m := ventros.get_usage_meter(r.correlation_id);
    before := m.reported_quantity;
    IF before >= upto THEN
        RETURN;
    END IF;
    m := ventros.change_row(NULL::ventros.usage_meters, 'usage_meter', m.id, m.version,
                            jsonb_build_object('reported_quantity', least(upto, m.quantity), 'last_reported_at', now()));
    PERFORM ventros.emit('usage_meter.reported', 'usage_meter', m.id,
        jsonb_build_object('metric_name', m.metric_name, 'stripe_meter_id', m.stripe_meter_id,
                           'quantity', m.reported_quantity, 'delta', m.reported_quantity - before),
        m.version);
END
$$;
COMMENT ON FUNCTION ventros.stripe_meter_event_answered(ventros.http_requests) IS
    'Handler of stripe.meter_event: marks the quantity Stripe accepted as reported on the meter; emits usage_meter.updated and usage_meter.reported';

SELECT ventros.register_http_request_preparer(p, 'ventros.stripe_request_headers(ventros.http_requests)')
  FROM unnest(ARRAY['stripe.customer', 'stripe.subscription', 'stripe.meter_event']) p;
SELECT ventros.register_http_request_handler('stripe.customer', 'ventros.stripe_customer_answered(ventros.http_requests)');
SELECT ventros.register_http_request_handler('stripe.subscription', 'ventros.stripe_subscription_answered(ventros.http_requests)');
SELECT ventros.register_http_request_handler('stripe.meter_event', 'ventros.stripe_meter_event_answered(ventros.http_requests)');

GRANT EXECUTE ON FUNCTION ventros.configure_stripe(text, text), ventros.request_stripe_customer(uuid),
    ventros.request_stripe_subscription(uuid, text), ventros.request_stripe_subscription_change(uuid, text, boolean),
    ventros.report_usage_to_stripe()
    TO ventros_platform_admin;

CREATE OR REPLACE FUNCTION api.register(email text, password text, name text, tenant_name text DEFAULT NULL,
                             payment_method jsonb DEFAULT NULL)
RETURNS api.auth_grant
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    normalized text := ventros.normalize_email(email);
    acting     text := ventros.current_tenant();
    -- the caller's choice of tenant, restored on return (a SET clause would
    -- clear it before acting is read)
    previous   text := current_setting('ventros.tenant', true);
    new_tenant text;
    workspace  text;
    u          ventros.users;
    account    ventros.billing_accounts;
    project    ventros.projects;
    grant_     api.auth_grant;
BEGIN
    -- A payment method is Stripe's to confirm (a completed checkout, then
    -- its webhook): one given here would activate an account nobody charged.
    IF payment_method IS NOT NULL THEN
        RAISE EXCEPTION 'a payment method is not taken at sign-up' USING ERRCODE = '22023',
            HINT = 'The billing account is activated when Stripe confirms a checkout (docs/billing.md).';
    END IF;
    IF password IS NULL OR length(password) < 8 OR length(password) > 72 THEN
        RAISE EXCEPTION 'password must have 8 to 72 characters' USING ERRCODE = '22023';
    END IF;
    IF name IS NULL THEN
        RAISE EXCEPTION 'user name must not be null' USING ERRCODE = '23502';
    END IF;
    -- Idempotent by email: the same email and password answer as a login.
    SELECT * INTO u FROM ventros.users x WHERE x.email = normalized AND x.deleted_at IS NULL;
    IF FOUND THEN
        IF ventros.password_matches(password, u.password_hash) THEN
            PERFORM set_config('ventros.tenant', u.tenant_id, true);
            grant_ := ventros.issue_grant(u);
            PERFORM set_config('ventros.tenant', coalesce(previous, ''), true);
            RETURN grant_;
        END IF;
        RAISE EXCEPTION 'a user with email % already exists', normalized USING ERRCODE = '23505';
    END IF;
    IF acting IS NOT NULL THEN
        -- An administrator of a tenant adds a user to it.
        IF NOT ventros.caller_is_admin() THEN
            RAISE EXCEPTION 'only administrators add users to a tenant' USING ERRCODE = '42501';
        END IF;
        new_tenant := acting;
    ELSE
        new_tenant := 't' || substr(replace(gen_random_uuid()::text, '-', ''), 1, 20);
    END IF;
    PERFORM set_config('ventros.tenant', new_tenant, true);
    INSERT INTO ventros.users (tenant_id, name, email, password_hash, role)
    VALUES (new_tenant, ventros.check_length(btrim(name), 200, 'user name'), normalized,
            ventros.hash_password(password), CASE WHEN acting IS NULL THEN 'admin' ELSE 'user' END)
    RETURNING * INTO u;
    IF acting IS NULL THEN
        -- Sign-up, in this one transaction: what a new tenant needs (domain
        -- 29): the owner's billing account (pending until Stripe confirms a
        -- checkout; its Stripe customer is requested here, through the
        -- dispatcher, when Stripe is configured: sql/66_stripe_outbound.sql),
        -- the default project (under the account once it is active), the
        -- default pipeline, and the owner as a human agent.  API keys are
        -- made on demand (api.create_api_key): one made here could never be
        -- shown.
        workspace := ventros.check_length(coalesce(tenant_name, btrim(name) || '''s workspace'), 200, 'workspace name');
        account := ventros.create_billing_account(workspace, normalized, u.id);
        PERFORM ventros.stripe_customer_request(account);
        INSERT INTO ventros.projects (tenant_id, name, user_id, billing_account_id)
        VALUES (new_tenant, workspace, u.id, CASE WHEN account.payment_status = 'active' THEN account.id END)
        RETURNING * INTO project;
        PERFORM ventros.create_pipeline('Default pipeline', project_id => project.id,
                                        statuses => ARRAY['New', 'In progress', 'Done']);
        PERFORM ventros.create_agent(u.name, 'human', email => u.email, user_id => u.id, role => 'admin',
                                     project_id => project.id);
    END IF;
    PERFORM ventros.emit('user.registered', 'user', u.id, jsonb_build_object('email', u.email, 'role', u.role), u.version);
    grant_ := ventros.issue_grant(u);
    PERFORM set_config('ventros.tenant', coalesce(previous, ''), true);
    RETURN grant_;
END
$$;
COMMENT ON FUNCTION api.register(text, text, text, text, jsonb) IS
    'Registers a user (idempotent by email): anonymous callers sign up a new tenant as its admin, with its billing account (pending until Stripe confirms a checkout; its Stripe customer requested), default project, default pipeline and the owner as a human agent; a tenant admin adds a user to the tenant; a payment method is refused (22023). Returns a login grant';

-- ---- inbound without channel locks
-- Issue 19: the inbox processors take the items of one channel in parallel
-- and keep each conversation's order.  A provider may register a
-- conversation function (the chat or sender of an item: a new column of
-- ventros.inbound_providers and a new last parameter of
-- register_inbound_provider, defaulting to none); accept_webhook stores its
-- answer in the new column ventros.inbox.conversation, and process_inbox
-- leaves an item due ("waiting") while an earlier item of its conversation
-- is still received (test/isolation/specs/inbox_conversation_order.spec).
ALTER TABLE ventros.inbound_providers ADD COLUMN conversation regprocedure;
COMMENT ON TABLE ventros.inbound_providers IS
    'Per webhook provider: verify(config jsonb, headers jsonb, body bytea) -> NULL or why not authentic; split(config jsonb, doc jsonb, body bytea, headers jsonb) -> SETOF ventros.inbox_item; process(ventros.inbox, ventros.channels) -> ventros.inbox_outcome; challenge(config jsonb, mode text, verify_token text, challenge text) -> the text to echo or NULL (no handshake when NULL); conversation(item jsonb) -> the chat or sender an item belongs to, or NULL (items of one conversation are processed in order; none kept when NULL)';
ALTER TABLE ventros.inbox ADD COLUMN conversation text;
CREATE INDEX inbox_conversation_pending ON ventros.inbox (tenant_id, channel_id, conversation, received_at, item_index)
    WHERE status = 'received' AND conversation IS NOT NULL;
COMMENT ON COLUMN ventros.inbox.conversation IS
    'The conversation of the item on its channel as its provider''s conversation function says it (the chat or sender id; NULL: none): the processors keep the order of the items of one conversation and take different conversations in parallel';
DROP FUNCTION ventros.register_inbound_provider(text, regprocedure, regprocedure, regprocedure, regprocedure);

CREATE FUNCTION ventros.register_inbound_provider(provider text, verify regprocedure, split regprocedure,
                                                  process regprocedure, challenge regprocedure DEFAULT NULL,
                                                  conversation regprocedure DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.require_function_shape(verify, ARRAY['jsonb', 'jsonb', 'bytea']::regtype[], 'text', 'verify');
    PERFORM ventros.require_function_shape(split, ARRAY['jsonb', 'jsonb', 'bytea', 'jsonb']::regtype[],
                                           'ventros.inbox_item', 'split');
    PERFORM ventros.require_function_shape(process, ARRAY['ventros.inbox', 'ventros.channels']::regtype[],
                                           'ventros.inbox_outcome', 'process');
    IF challenge IS NOT NULL THEN
        PERFORM ventros.require_function_shape(challenge, ARRAY['jsonb', 'text', 'text', 'text']::regtype[], 'text',
                                               'challenge');
    END IF;
    IF conversation IS NOT NULL THEN
        PERFORM ventros.require_function_shape(conversation, ARRAY['jsonb']::regtype[], 'text', 'conversation');
    END IF;
    INSERT INTO ventros.inbound_providers AS p (provider, verify, split, process, challenge, conversation)
    VALUES (register_inbound_provider.provider, register_inbound_provider.verify, register_inbound_provider.split,
            register_inbound_provider.process, register_inbound_provider.challenge,
            register_inbound_provider.conversation)
    ON CONFLICT ON CONSTRAINT inbound_providers_pkey DO UPDATE
       SET verify = EXCLUDED.verify, split = EXCLUDED.split, process = EXCLUDED.process, challenge = EXCLUDED.challenge,
           conversation = EXCLUDED.conversation;
END
$$;

COMMENT ON FUNCTION ventros.register_inbound_provider(text, regprocedure, regprocedure, regprocedure, regprocedure, regprocedure) IS
    'Registers how the webhooks of a provider are verified, split into inbox items, processed, (optionally) subscribed to, and which conversation an item belongs to (optional; see ventros.inbound_providers)';

CREATE OR REPLACE FUNCTION ventros.accept_webhook(provider text, channel_id text, headers jsonb, body bytea)
RETURNS TABLE (http_status integer, response jsonb)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- the tenant chosen inside is restored when the function returns
SET ventros.tenant = ''
AS $$
DECLARE
    ch ventros.channels;
    hdrs jsonb;
    failure text;
    doc jsonb;
    parse_error text;
    it ventros.inbox_item;
    new_id uuid;
    head uuid;
    n integer := 0;
    stored uuid[] := '{}';
    kept jsonb;
    row_ ventros.inbox;
    p ventros.inbound_providers;
    conv text;
BEGIN
    provider := lower(provider);
    SELECT * INTO p FROM ventros.inbound_providers x WHERE x.provider = accept_webhook.provider;
    ch := ventros.webhook_channel(provider, channel_id);
    IF p.provider IS NULL OR ch.id IS NULL THEN
        RETURN QUERY SELECT 404, '{"error":"channel_not_found"}'::jsonb;
        RETURN;
    END IF;
    PERFORM set_config('ventros.tenant', ch.tenant_id, true);
    hdrs := ventros.webhook_headers(headers);
    body := coalesce(body, ''::bytea);

    failure := ventros.verify_webhook(provider, ch.config, hdrs, body);
    IF failure IS NOT NULL THEN
        INSERT INTO ventros.channel_webhook_rejections AS x (tenant_id, channel_id, rejected, last_rejected_at, last_reason)
        VALUES (ch.tenant_id, ch.id, 1, now(), failure)
        ON CONFLICT ON CONSTRAINT channel_webhook_rejections_pkey DO UPDATE
            SET rejected = x.rejected + 1, last_rejected_at = now(), last_reason = EXCLUDED.last_reason;
        RETURN QUERY SELECT 401, '{"error":"invalid_signature"}'::jsonb;
        RETURN;
    END IF;

    kept := ventros.webhook_headers_to_keep(hdrs);
    BEGIN
        doc := convert_from(body, 'UTF8')::jsonb;
    EXCEPTION WHEN OTHERS THEN
        parse_error := SQLERRM;
    END;
    IF parse_error IS NOT NULL OR doc IS NULL THEN
        -- Stored with its error (nothing is lost), answered 400.
        new_id := gen_random_uuid();
        INSERT INTO ventros.inbox (tenant_id, id, channel_id, provider, event, dedupe_key, delivery_id, body, headers,
                                   status, last_error)
        VALUES (ch.tenant_id, new_id, ch.id, provider, 'invalid', ventros.body_sha256(body), new_id, body, kept,
                'failed', left('22P02: body is not JSON: ' || coalesce(parse_error, 'empty'), 2000))
        ON CONFLICT ON CONSTRAINT inbox_unique_dedupe_key DO NOTHING;
        RETURN QUERY SELECT 400, '{"error":"invalid_json"}'::jsonb;
        RETURN;
    END IF;

    FOR it IN EXECUTE format('SELECT * FROM %s($1, $2, $3, $4)', p.split::regproc) USING ch.config, doc, body, hdrs
    LOOP
        new_id := gen_random_uuid();
        conv := NULL;
        IF p.conversation IS NOT NULL AND it.status = 'received' THEN
            EXECUTE format('SELECT %s($1)', p.conversation::regproc) INTO conv USING it.item;
        END IF;
        INSERT INTO ventros.inbox AS i (tenant_id, id, channel_id, provider, event, dedupe_key, delivery_id, item_index,
                                        body, item, headers, ref_id, status, last_error, next_attempt_at, conversation)
        VALUES (ch.tenant_id, new_id, ch.id, provider, it.event, left(it.dedupe_key, 1024), coalesce(head, new_id), n,
                CASE WHEN head IS NULL THEN body END, it.item, kept, it.ref_id, it.status, it.last_error,
                CASE WHEN it.status = 'received' THEN now() END, left(conv, 256))
        ON CONFLICT ON CONSTRAINT inbox_unique_dedupe_key DO NOTHING
        RETURNING i.id INTO new_id;
        n := n + 1;
        IF FOUND THEN
            head := coalesce(head, new_id);
            stored := stored || new_id;
        END IF;
    END LOOP;

    IF head IS NULL THEN
        RETURN QUERY SELECT 200, '{"status":"duplicate"}'::jsonb;
        RETURN;
    END IF;
    -- Deferred (the default): the inbox processor takes the new items right
    -- after this transaction commits (src/inbox_worker.c; the statement
    -- trigger ventros_inbox_wake wakes it).  Inline: process what is new
    -- here, each item in its own subtransaction (inbox_run).
    IF current_setting('ventros.inbox_processing') = 'inline' THEN
        FOR row_ IN SELECT * FROM ventros.inbox i
                    WHERE i.tenant_id = ch.tenant_id AND i.id = ANY (stored) AND i.status = 'received'
                    ORDER BY i.item_index LOOP
            PERFORM ventros.inbox_run(row_, now());
        END LOOP;
    END IF;
    RETURN QUERY SELECT 200, jsonb_build_object('status', 'accepted', 'inbox_id', head);
END
$$;

CREATE OR REPLACE FUNCTION ventros.process_inbox(batch_size integer DEFAULT 100, now timestamptz DEFAULT now())
RETURNS TABLE (status text, items integer)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET ventros.tenant = ''
AS $$
DECLARE
    r ventros.inbox;
    outcome text;
    counts jsonb := '{}';
    held_up text[] := '{}';     -- tenants whose item waited past the lock timeout
    wait text := pg_catalog.current_setting('ventros.inbox_lock_timeout', true);
    saved_wait text := pg_catalog.current_setting('lock_timeout');
BEGIN
    PERFORM ventros.require_platform_admin();
    -- No tenant holds up the others: an item waits for a lock at most this
    -- long, and then the rest of its tenant's items in the batch are put off
    -- with it, so one tenant's open transaction costs a processor one wait
    -- every few seconds, not one per item.
    IF wait IS NOT NULL AND wait NOT IN ('0', '0ms') THEN
        PERFORM pg_catalog.set_config('lock_timeout', wait, true);
    END IF;
    FOR r IN SELECT * FROM ventros.inbox i
             WHERE i.status IN ('received', 'failed', 'unmatched') AND i.next_attempt_at <= process_inbox.now
             ORDER BY i.next_attempt_at, i.received_at, i.item_index
             LIMIT batch_size
             FOR UPDATE SKIP LOCKED LOOP
        IF r.tenant_id = ANY (held_up) THEN
            UPDATE ventros.inbox i SET next_attempt_at = process_inbox.now + interval '5 seconds'
            WHERE i.tenant_id = r.tenant_id AND i.id = r.id;
            outcome := 'deferred';
        ELSIF r.conversation IS NOT NULL AND r.status = 'received'
              AND EXISTS (SELECT 1 FROM ventros.inbox e
                           WHERE e.tenant_id = r.tenant_id AND e.channel_id = r.channel_id
                             AND e.conversation = r.conversation AND e.status = 'received'
                             AND (e.received_at, e.item_index) < (r.received_at, r.item_index)) THEN
            -- an earlier item of its conversation is not done (another
            -- processor has it, or it was not claimed): this one waits
            outcome := 'waiting';
        ELSE
            PERFORM set_config('ventros.tenant', r.tenant_id, true);
            outcome := ventros.inbox_run(r, process_inbox.now);
            IF outcome = 'deferred' THEN
                held_up := held_up || r.tenant_id;
            END IF;
        END IF;
        counts := jsonb_set(counts, ARRAY[outcome], to_jsonb(coalesce((counts->>outcome)::integer, 0) + 1));
    END LOOP;
    PERFORM pg_catalog.set_config('lock_timeout', saved_wait, true);
    RETURN QUERY SELECT c.key, c.value::text::integer FROM jsonb_each(counts) c ORDER BY c.key;
END
$$;

COMMENT ON FUNCTION ventros.process_inbox(integer, timestamptz) IS
    'Platform admins / scheduler: processes up to batch_size due inbox items of every tenant (received, failed with retries left, unmatched), each in its own subtransaction, in the order of each conversation (an item whose conversation has an earlier item still received is left due: status waiting); an item that waits for a lock past ventros.inbox_lock_timeout is put off 5 s with the rest of its tenant''s batch (status deferred, no attempt counted); returns how many ended in each status';

CREATE FUNCTION ventros.waha_conversation(item jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- (no SET clause: small enough to be inlined; every name is qualified)
AS $$
    SELECT CASE WHEN ventros.json_text(item, 'payload', 'fromMe') = 'true' THEN ventros.json_text(item, 'payload', 'to')
                ELSE ventros.json_text(item, 'payload', 'from') END
$$;

COMMENT ON FUNCTION ventros.waha_conversation(jsonb) IS
    'The chat of a WAHA inbox item (payload.to for our own messages, else payload.from): the processors keep its items in order';

CREATE FUNCTION ventros.whatsapp_conversation(item jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- (no SET clause: small enough to be inlined; every name is qualified)
AS $$ SELECT coalesce(ventros.json_text(item, 'message', 'from'), ventros.json_text(item, 'status', 'recipient_id')) $$;

COMMENT ON FUNCTION ventros.whatsapp_conversation(jsonb) IS
    'The customer of a WhatsApp Cloud inbox item (message.from, status.recipient_id): the processors keep its items in order';

CREATE FUNCTION ventros.meta_messaging_conversation(item jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- (no SET clause: small enough to be inlined; every name is qualified)
AS $$
    SELECT CASE WHEN ventros.json_text(item, 'event', 'message', 'is_echo') = 'true'
                THEN ventros.json_text(item, 'event', 'recipient', 'id')
                ELSE ventros.json_text(item, 'event', 'sender', 'id') END
$$;

COMMENT ON FUNCTION ventros.meta_messaging_conversation(jsonb) IS
    'The other party of an Instagram/Messenger inbox item (event.sender.id, event.recipient.id for echoes): the processors keep its items in order';

-- the providers of this extension, with their conversations
SELECT ventros.register_inbound_provider('waha', 'ventros.verify_waha_webhook(jsonb, jsonb, bytea)',
           'ventros.split_waha(jsonb, jsonb, bytea, jsonb)', 'ventros.waha_process(ventros.inbox, ventros.channels)',
           conversation => 'ventros.waha_conversation(jsonb)');
SELECT ventros.register_inbound_provider('whatsapp', 'ventros.verify_meta_webhook(jsonb, jsonb, bytea)',
           'ventros.split_whatsapp(jsonb, jsonb, bytea, jsonb)', 'ventros.whatsapp_process(ventros.inbox, ventros.channels)',
           'ventros.meta_webhook_challenge(jsonb, text, text, text)', 'ventros.whatsapp_conversation(jsonb)');
SELECT ventros.register_inbound_provider(p, 'ventros.verify_meta_webhook(jsonb, jsonb, bytea)',
           format('ventros.split_%s(jsonb, jsonb, bytea, jsonb)', p)::regprocedure,
           'ventros.meta_messaging_process(ventros.inbox, ventros.channels)',
           'ventros.meta_webhook_challenge(jsonb, text, text, text)', 'ventros.meta_messaging_conversation(jsonb)')
  FROM unnest('{instagram,messenger}'::text[]) p;

-- Channel counters: a message is only metered (the usage delta is the
-- channel's count too, folded into the channel's columns by fold_usage); the
-- slot rows are no longer written, and those left from 0.1.0 are still read
-- and folded by fold_channel_message_counts.
COMMENT ON TABLE ventros.channel_message_counts IS
    'Messages counted per channel before 0.2.0 and not folded yet, spread over 16 slots (no longer written: messages are counted by their usage deltas, folded by ventros.fold_usage)';

CREATE OR REPLACE FUNCTION ventros.count_channel_messages(channel_id uuid, received bigint, sent bigint, at timestamptz)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
BEGIN
    -- only a live channel of the acting tenant: a count row for anything
    -- else could never be folded
    PERFORM FROM ventros.channels ch
     WHERE ch.tenant_id = tenant AND ch.id = count_channel_messages.channel_id AND ch.deleted_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'channel % not found', count_channel_messages.channel_id USING ERRCODE = 'P0002';
    END IF;
    IF received < 0 OR sent < 0 THEN
        RAISE EXCEPTION 'message counts are not negative' USING ERRCODE = '22023';
    END IF;
    -- the tenant's usage and the channel's counts: appended deltas, no row
    -- lock (sql/65_usage_metering.sql; fold_usage folds them into both)
    PERFORM ventros.meter_usage(ARRAY['messages_received', 'messages_sent'], ARRAY[received, sent],
                                count_channel_messages.channel_id, at);
END
$$;

COMMENT ON FUNCTION ventros.count_channel_messages(uuid, bigint, bigint, timestamptz) IS
    'Counts messages received and sent (last at an instant) on a live channel of the acting tenant (P0002 for any other): appended usage deltas, folded into the channel''s counters by fold_usage (no row lock)';

COMMENT ON FUNCTION ventros.count_channel_message(uuid, boolean, timestamptz) IS
    'Counts a message on a live channel of the acting tenant (P0002 for any other): an appended usage delta (see count_channel_messages)';

CREATE OR REPLACE FUNCTION ventros.channel_message_counts(channel_id uuid,
    OUT messages_received bigint, OUT messages_sent bigint, OUT last_message_at timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ch.messages_received + coalesce(c.received, 0) + coalesce(d.received, 0),
           ch.messages_sent + coalesce(c.sent, 0) + coalesce(d.sent, 0),
           greatest(ch.last_message_at, c.last_at, d.last_at)
      FROM ventros.channels ch
      LEFT JOIN LATERAL (SELECT sum(x.messages_received) AS received, sum(x.messages_sent) AS sent,
                                max(x.last_message_at) AS last_at
                           FROM ventros.channel_message_counts x
                          WHERE x.tenant_id = ch.tenant_id AND x.channel_id = ch.id) c ON true
      LEFT JOIN LATERAL (SELECT sum(x.quantity) FILTER (WHERE x.metric = 'messages_received') AS received,
                                sum(x.quantity) FILTER (WHERE x.metric = 'messages_sent') AS sent, max(x.at) AS last_at
                           FROM ventros.usage_deltas x
                          WHERE x.tenant_id = ch.tenant_id AND x.channel_id = ch.id
                            AND x.metric IN ('messages_received', 'messages_sent')) d ON true
     WHERE ch.tenant_id = ventros.require_tenant() AND ch.id = channel_message_counts.channel_id
$$;

COMMENT ON FUNCTION ventros.channel_message_counts(uuid) IS
    'A channel''s exact message totals and last message time: its columns plus the usage deltas (and pre-0.2.0 slots) not folded yet';

CREATE OR REPLACE FUNCTION ventros.fold_usage()
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.current_tenant();
    folded integer;
    p record;
    lim record;
    used bigint;
BEGIN
    IF tenant IS NULL THEN
        PERFORM ventros.require_platform_admin();
        SELECT coalesce(sum((r.result #>> '{}')::integer), 0)::integer INTO folded
          FROM ventros.run_per_tenant('ventros-fold-usage', 'SELECT pg_catalog.to_jsonb(ventros.fold_usage())',
                   ARRAY(SELECT DISTINCT d.tenant_id FROM ventros.usage_deltas d ORDER BY 1)) r;
        RETURN folded;
    END IF;
    WITH gone AS (
        DELETE FROM ventros.usage_deltas d WHERE d.tenant_id = tenant RETURNING d.*),
    -- the channels' message counters (quiet columns: no version, no event),
    -- counted by these deltas only (sql/40_messages_counts.sql)
    counted AS (
        UPDATE ventros.channels ch
           SET messages_received = ch.messages_received + c.received,
               messages_sent = ch.messages_sent + c.sent,
               last_message_at = greatest(ch.last_message_at, c.last_at),
               version = ch.version
          FROM (SELECT g.channel_id, coalesce(sum(g.quantity) FILTER (WHERE g.metric = 'messages_received'), 0) AS received,
                       coalesce(sum(g.quantity) FILTER (WHERE g.metric = 'messages_sent'), 0) AS sent, max(g.at) AS last_at
                  FROM gone g WHERE g.metric IN ('messages_received', 'messages_sent') AND g.channel_id IS NOT NULL
                 GROUP BY 1) c
         WHERE ch.tenant_id = tenant AND ch.id = c.channel_id
        RETURNING 1),
    sums AS (
        INSERT INTO ventros.usage_totals AS t (tenant_id, metric, day, channel_id, quantity)
        SELECT g.tenant_id, g.metric, (g.at AT TIME ZONE 'UTC')::date,
               coalesce(g.channel_id, '00000000-0000-0000-0000-000000000000'), sum(g.quantity)
          FROM gone g GROUP BY 1, 2, 3, 4
        ON CONFLICT ON CONSTRAINT usage_totals_pkey DO UPDATE SET quantity = t.quantity + EXCLUDED.quantity
        RETURNING 1)
    SELECT count(*)::integer INTO folded FROM sums;
    -- the meters of the current period follow the totals
    UPDATE ventros.usage_meters m
       SET quantity = greatest(m.reported_quantity, x.q), version = m.version
      FROM (SELECT mm.id, CASE WHEN mm.metric_name = 'active_contacts' THEN ventros.active_contacts_since(mm.period_start)
                               ELSE ventros.usage_since(mm.metric_name, mm.period_start) END AS q
              FROM ventros.usage_meters mm
             WHERE mm.tenant_id = tenant AND mm.deleted_at IS NULL AND mm.metric_name = ANY (ventros.usage_metrics())
               AND mm.period_start <= now() AND mm.period_end > now()) x
     WHERE m.tenant_id = tenant AND m.id = x.id AND m.quantity IS DISTINCT FROM greatest(m.reported_quantity, x.q);
    -- limits reached by usage that nothing refuses (inbound messages)
    p := ventros.usage_period();
    FOR lim IN SELECT l.key AS metric, (l.value #>> '{}')::bigint AS cap
                 FROM jsonb_each(ventros.plan_limits(p.plan)) l
                WHERE NOT EXISTS (SELECT 1 FROM ventros.usage_limit_hits h
                                   WHERE h.tenant_id = tenant AND h.metric = l.key AND h.period_start = p.period_start)
    LOOP
        used := CASE WHEN lim.metric = 'active_contacts' THEN ventros.active_contacts_since(p.period_start)
                     ELSE ventros.usage_since(lim.metric, p.period_start) END;
        IF used >= lim.cap THEN
            PERFORM ventros.note_limit_reached(lim.metric, lim.cap, used, p.period_start, p.period_end);
        END IF;
    END LOOP;
    RETURN folded;
END
$$;

COMMENT ON FUNCTION ventros.fold_usage() IS
    'Folds usage deltas into usage_totals, the channels'' message counters (quiet) and the quantities of the current usage meters, and notes limits reached; per tenant (ventros.run_per_tenant) without one; returns the totals rows written';

-- ---- dump
-- pg_dump keeps the tenants' data: every tenant table and sequence is marked
-- with pg_extension_config_dump (sql/99_dump.sql).

CREATE FUNCTION ventros.mark_dumped_tables() RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT c.oid::regclass AS rel, c.relkind
        FROM pg_catalog.pg_depend d
        JOIN pg_catalog.pg_class c ON c.oid = d.objid AND d.classid = 'pg_catalog.pg_class'::regclass
        WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
          AND d.refobjid = (SELECT e.oid FROM pg_catalog.pg_extension e WHERE e.extname = 'ventros')
          AND (c.relkind = 'S'
               OR (c.relkind IN ('r', 'p') AND EXISTS (
                   SELECT 1 FROM pg_catalog.pg_attribute a
                   WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)))
          AND c.oid <> 'ventros.outbox_in_flight_id_seq'::regclass
    LOOP
        PERFORM pg_catalog.pg_extension_config_dump(r.rel,
            CASE WHEN r.rel = 'ventros.channel_types'::regclass THEN 'WHERE type_id >= 100' ELSE '' END);
    END LOOP;
END
$$;
COMMENT ON FUNCTION ventros.mark_dumped_tables() IS
    'Install and upgrade use: marks every tenant table and sequence of the extension for pg_dump (pg_extension_config_dump)';
REVOKE ALL ON FUNCTION ventros.mark_dumped_tables() FROM PUBLIC;
SELECT ventros.mark_dumped_tables();

-- ---- grants
-- Last fragment, as sql/99_grants.sql is the last file of the install:
-- nothing in schema ventros is executable by PUBLIC, whatever the fragments
-- before created.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA ventros FROM PUBLIC;
