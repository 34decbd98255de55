-- Message counts per channel (CRM): how many messages a channel received and
-- sent, kept without a shared row lock on the channel.  The messages
-- themselves: 40_messages.sql.

-- Channel counters take no shared row lock.  Every message of a channel
-- used to update the channel's row, so all messages of one channel queued
-- behind each other's row lock until commit (one busy WhatsApp number = one
-- lane); then it added to one of 16 slot rows of its channel, which
-- backends sharing a slot (and an inbox processor's batch, holding its slot
-- for the whole batch) still queued on.  A message is now only metered: the
-- usage delta appended by ventros.meter_usage (sql/65_usage_metering.sql,
-- insert only) is the channel's count too, and ventros.fold_usage (the
-- scheduled job, every minute) adds the deltas to the channel's quiet
-- columns as it folds them into the usage totals.
-- ventros.channel_message_counts() reads the exact totals: the columns,
-- plus the deltas not folded yet, plus slot rows written before 0.2.0 (folded
-- by ventros.fold_channel_message_counts, the job of the slots, kept for them).
CREATE TABLE ventros.channel_message_counts (
    tenant_id         text        NOT NULL DEFAULT ventros.current_tenant(),
    channel_id        uuid        NOT NULL,
    slot              smallint    NOT NULL,
    messages_received bigint      NOT NULL DEFAULT 0,
    messages_sent     bigint      NOT NULL DEFAULT 0,
    last_message_at   timestamptz,
    PRIMARY KEY (tenant_id, channel_id, slot),
    CONSTRAINT channel_message_counts_slot_range CHECK (slot BETWEEN 0 AND 15)
);
COMMENT ON TABLE ventros.channel_message_counts IS
    'Messages counted per channel before 0.2.0 and not folded yet, spread over 16 slots (no longer written: messages are counted by their usage deltas, folded by ventros.fold_usage)';
ALTER TABLE ventros.channel_message_counts ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.channel_message_counts FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_select ON ventros.channel_message_counts FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.channel_message_counts TO ventros_viewer;

CREATE FUNCTION ventros.count_channel_messages(channel_id uuid, received bigint, sent bigint, at timestamptz)
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

CREATE FUNCTION ventros.count_channel_message(channel_id uuid, from_me boolean, at timestamptz)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.count_channel_messages(channel_id, (NOT from_me)::integer, from_me::integer, at) $$;
COMMENT ON FUNCTION ventros.count_channel_message(uuid, boolean, timestamptz) IS
    'Counts a message on a live channel of the acting tenant (P0002 for any other): an appended usage delta (see count_channel_messages)';

-- count_new_messages: every inserted message is counted on its channel, by
-- the statement that inserts it, whoever inserts it and however (a send, a
-- broadcast's set, an inbound message, a direct write).  The counters are
-- the owner's: the tenant roles that write messages may not write counts
-- (count_channel_messages is no tenant role's to call, or an agent could
-- add a million messages to a channel's reports).
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

-- channel_message_counts: a channel's exact totals (folded + not yet folded:
-- the usage deltas, and slot rows from before 0.2.0).
CREATE FUNCTION ventros.channel_message_counts(channel_id uuid,
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

-- fold_channel_message_counts: moves the slots into the channels' quiet
-- columns (no version, no event).  The acting tenant's channels, or every
-- tenant's for a platform administrator without a tenant (the scheduled job),
-- one tenant at a time through ventros.run_per_tenant (sql/97_schedule.sql).
CREATE FUNCTION ventros.fold_channel_message_counts()
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

GRANT EXECUTE ON FUNCTION ventros.channel_message_counts(uuid) TO ventros_viewer;
-- The scheduler's, never a tenant's (docs/security.md).
GRANT EXECUTE ON FUNCTION ventros.fold_channel_message_counts() TO ventros_platform_admin;
