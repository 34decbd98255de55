-- Funnels of broadcasts, sequences and campaigns: sent, delivered, read and
-- replied, from summary tables kept incrementally by triggers on messages
-- (never from scans of all messages).
--
-- Automated sends carry their origin in messages.metadata (broadcast_id or
-- sequence_id; send_broadcast_batch and advance_sequence_enrollment set it).
--   sent       an automated message was inserted (statement trigger);
--   delivered  it reached delivered, read or played (row trigger on the
--              status of automated messages only);
--   read       it reached read or played;
--   replied    the recipient wrote back within 7 days of the last send
--              (each recipient counts once per origin: automation_recipients).
-- Both tables are projections (no version, no events), readable by the
-- tenant, written only by the triggers (SECURITY DEFINER).  slot spreads one
-- busy origin over a few rows, as crm_daily_stats does; readers sum it.

CREATE TABLE ventros.automation_funnel_stats (
    tenant_id   text     NOT NULL,
    origin_type text     NOT NULL CHECK (origin_type IN ('broadcast', 'sequence')),
    origin_id   uuid     NOT NULL,
    slot        smallint NOT NULL DEFAULT 0,
    sent        bigint   NOT NULL DEFAULT 0,
    delivered   bigint   NOT NULL DEFAULT 0,
    read        bigint   NOT NULL DEFAULT 0,
    replied     bigint   NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, origin_type, origin_id, slot)
);
COMMENT ON TABLE ventros.automation_funnel_stats IS
    'Funnel counters (sent, delivered, read, replied) per broadcast or sequence, kept by triggers; sum over slot';

CREATE TABLE ventros.automation_recipients (
    tenant_id   text        NOT NULL,
    origin_type text        NOT NULL CHECK (origin_type IN ('broadcast', 'sequence')),
    origin_id   uuid        NOT NULL,
    contact_id  uuid        NOT NULL,
    sent_at     timestamptz NOT NULL,
    replied_at  timestamptz,
    PRIMARY KEY (tenant_id, origin_type, origin_id, contact_id)
);
CREATE INDEX automation_recipients_awaiting ON ventros.automation_recipients (tenant_id, contact_id, sent_at)
    WHERE replied_at IS NULL;
COMMENT ON TABLE ventros.automation_recipients IS
    'Who received an automated message and whether they replied (each recipient counts once per origin)';

DO $rls$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['automation_funnel_stats', 'automation_recipients'] LOOP
        EXECUTE pg_catalog.format('ALTER TABLE ventros.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE pg_catalog.format('ALTER TABLE ventros.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE pg_catalog.format('CREATE POLICY ventros_tenant_read ON ventros.%I FOR SELECT '
                                  'USING (tenant_id = (SELECT ventros.current_tenant()))', t);
        EXECUTE pg_catalog.format('REVOKE ALL ON ventros.%I FROM PUBLIC', t);
        EXECUTE pg_catalog.format('GRANT SELECT ON ventros.%I TO ventros_viewer', t);
    END LOOP;
END
$rls$;

-- The origin of an automated message, or NULL.
CREATE FUNCTION ventros.message_origin(metadata jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN metadata ? 'broadcast_id' THEN ARRAY['broadcast', metadata->>'broadcast_id']
                WHEN metadata ? 'sequence_id' THEN ARRAY['sequence', metadata->>'sequence_id'] END
$$;
COMMENT ON FUNCTION ventros.message_origin(jsonb) IS 'The (origin_type, origin_id) an automated message carries in its metadata, or NULL';

CREATE FUNCTION ventros.funnel_count_inserts() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- sends
    INSERT INTO ventros.automation_funnel_stats AS f (tenant_id, origin_type, origin_id, slot, sent)
    SELECT m.tenant_id, o[1], o[2]::uuid, ventros.stats_slot(), count(*)
    FROM new_rows m, LATERAL (SELECT ventros.message_origin(m.metadata) AS o) x
    WHERE m.from_me AND o IS NOT NULL
    GROUP BY 1, 2, 3
    ON CONFLICT (tenant_id, origin_type, origin_id, slot) DO UPDATE SET sent = f.sent + EXCLUDED.sent;
    INSERT INTO ventros.automation_recipients AS r (tenant_id, origin_type, origin_id, contact_id, sent_at)
    SELECT DISTINCT ON (m.tenant_id, o[1], o[2], m.contact_id) m.tenant_id, o[1], o[2]::uuid, m.contact_id, m."timestamp"
    FROM new_rows m, LATERAL (SELECT ventros.message_origin(m.metadata) AS o) x
    WHERE m.from_me AND o IS NOT NULL
    ORDER BY m.tenant_id, o[1], o[2], m.contact_id, m."timestamp" DESC
    ON CONFLICT (tenant_id, origin_type, origin_id, contact_id) DO UPDATE SET sent_at = greatest(r.sent_at, EXCLUDED.sent_at);
    -- replies: an inbound message answers the sends of the last 7 days it has not answered yet
    WITH answered AS (
        UPDATE ventros.automation_recipients r SET replied_at = m."timestamp"
        FROM (SELECT tenant_id, contact_id, min("timestamp") AS "timestamp" FROM new_rows WHERE NOT from_me
              GROUP BY tenant_id, contact_id) m
        WHERE r.tenant_id = m.tenant_id AND r.contact_id = m.contact_id AND r.replied_at IS NULL
          AND r.sent_at <= m."timestamp" AND r.sent_at > m."timestamp" - interval '7 days'
        RETURNING r.tenant_id, r.origin_type, r.origin_id)
    INSERT INTO ventros.automation_funnel_stats AS f (tenant_id, origin_type, origin_id, slot, replied)
    SELECT tenant_id, origin_type, origin_id, ventros.stats_slot(), count(*) FROM answered GROUP BY 1, 2, 3
    ON CONFLICT (tenant_id, origin_type, origin_id, slot) DO UPDATE SET replied = f.replied + EXCLUDED.replied;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.funnel_count_inserts() IS
    'Statement trigger on messages: counts automated sends and the replies to them';
CREATE TRIGGER funnel_count_inserts AFTER INSERT ON ventros.messages
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ventros.funnel_count_inserts();

CREATE FUNCTION ventros.funnel_count_status() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o text[] := ventros.message_origin(NEW.metadata);
    reached_delivered boolean := NEW.status IN ('delivered', 'read', 'played') AND OLD.status IN ('queued', 'sent');
    reached_read boolean := NEW.status IN ('read', 'played') AND OLD.status IN ('queued', 'sent', 'delivered');
BEGIN
    IF reached_delivered OR reached_read THEN
        INSERT INTO ventros.automation_funnel_stats AS f (tenant_id, origin_type, origin_id, slot, delivered, read)
        VALUES (NEW.tenant_id, o[1], o[2]::uuid, ventros.stats_slot(), reached_delivered::integer, reached_read::integer)
        ON CONFLICT (tenant_id, origin_type, origin_id, slot) DO UPDATE
        SET delivered = f.delivered + EXCLUDED.delivered, read = f.read + EXCLUDED.read;
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.funnel_count_status() IS 'Row trigger on automated messages: counts deliveries and reads once each';
CREATE TRIGGER funnel_count_status AFTER UPDATE OF status ON ventros.messages
    FOR EACH ROW WHEN (NEW.from_me AND OLD.status IS DISTINCT FROM NEW.status
                       AND (NEW.metadata ? 'broadcast_id' OR NEW.metadata ? 'sequence_id'))
    EXECUTE FUNCTION ventros.funnel_count_status();

-- funnel: one origin's counters, or a campaign's (the sum over the
-- broadcasts and sequences its steps name).
CREATE FUNCTION ventros.automation_funnel(origin_type text, origin_id uuid)
RETURNS TABLE (sent bigint, delivered bigint, read bigint, replied bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(sum(f.sent), 0)::bigint, coalesce(sum(f.delivered), 0)::bigint, coalesce(sum(f.read), 0)::bigint,
           coalesce(sum(f.replied), 0)::bigint
    FROM ventros.automation_funnel_stats f
    WHERE f.tenant_id = ventros.require_tenant()
      AND ((automation_funnel.origin_type IN ('broadcast', 'sequence') AND f.origin_type = automation_funnel.origin_type
            AND f.origin_id = automation_funnel.origin_id)
           OR (automation_funnel.origin_type = 'campaign' AND (f.origin_type, f.origin_id) IN (
                SELECT s.type, (s.config->>(s.type || '_id'))::uuid FROM ventros.campaign_steps s
                WHERE s.tenant_id = ventros.require_tenant() AND s.campaign_id = automation_funnel.origin_id
                  AND s.type IN ('broadcast', 'sequence'))))
$$;
COMMENT ON FUNCTION ventros.automation_funnel(text, uuid) IS
    'Sent, delivered, read and replied of a broadcast, a sequence, or a campaign (its broadcast and sequence steps), from the summary table';

GRANT EXECUTE ON FUNCTION ventros.message_origin(jsonb), ventros.automation_funnel(text, uuid) TO ventros_viewer;
