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
CREATE OR REPLACE FUNCTION ventros.verify_webhook(provider text, config jsonb, headers jsonb, body bytea) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    secret text;
    token text;
    given text;
    given_bytes bytea;
BEGIN
    IF provider IN ('whatsapp', 'instagram', 'messenger') THEN
        secret := nullif(config->>'app_secret', '');
        IF secret IS NULL THEN
            -- no secret to check against: unsigned only when the channel
            -- says so explicitly
            IF config->'allow_unsigned' = 'true'::jsonb THEN
                RETURN NULL;
            END IF;
            RETURN 'no_app_secret';
        END IF;
        IF secret IS NOT NULL THEN
            given := headers->>'x-hub-signature-256';
            IF given IS NULL THEN
                RETURN 'missing_signature';
            END IF;
            given_bytes := CASE WHEN left(given, 7) = 'sha256=' THEN ventros.decode_hex_signature(substr(given, 8), 32) END;
            IF given_bytes IS NULL
               OR NOT ventros.timing_safe_equal(ventros.webhook_hmac(body, secret, 'sha256'), given_bytes) THEN
                RETURN 'invalid_signature';
            END IF;
        END IF;
        RETURN NULL;
    END IF;
    -- waha
    secret := nullif(config->>'webhook_secret', '');
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
    token := nullif(config->>'webhook_token', '');
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
COMMENT ON FUNCTION ventros.verify_webhook(text, jsonb, jsonb, bytea) IS
    'NULL when a delivery''s signature/token match the channel config (Meta X-Hub-Signature-256, required unless the channel has no app_secret and "allow_unsigned": true; WAHA X-Webhook-Hmac sha512 and X-Ventros-Token), else the reason; constant-time comparisons';

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
