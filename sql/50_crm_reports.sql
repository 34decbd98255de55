-- CRM reports from a summary table kept incrementally (never from scans of
-- all messages): messages in and out, sessions started and ended, first
-- response time and resolution time, per tenant, UTC day, channel, agent and
-- team.
--
-- ventros.crm_daily_stats is a projection, not an aggregate: no version, no
-- events.  Statement triggers (with transition tables) on messages and
-- sessions add each batch of rows in one upsert; row triggers on sessions
-- count first responses and endings.  slot spreads a hot key (one busy
-- channel on one day) over a few rows so that concurrent writers do not queue
-- on one row lock; reports sum the slots.  agent_id and team_id use the nil
-- uuid for "none", so they can be part of the key.
--
-- Attribution: an outbound message counts for its sending agent, an inbound
-- one for the session's assigned agent; first response and resolution count
-- for the session's assigned agent and team.

CREATE TABLE ventros.crm_daily_stats (
    tenant_id              text     NOT NULL,
    day                    date     NOT NULL,
    channel_id             uuid     NOT NULL,
    agent_id               uuid     NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000',
    team_id                uuid     NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000',
    slot                   smallint NOT NULL DEFAULT 0,
    messages_in            bigint   NOT NULL DEFAULT 0,
    messages_out           bigint   NOT NULL DEFAULT 0,
    sessions_started       bigint   NOT NULL DEFAULT 0,
    sessions_ended         bigint   NOT NULL DEFAULT 0,
    first_responses        bigint   NOT NULL DEFAULT 0,
    first_response_seconds bigint   NOT NULL DEFAULT 0,
    resolutions            bigint   NOT NULL DEFAULT 0,
    resolution_seconds     bigint   NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day, channel_id, agent_id, team_id, slot)
);
COMMENT ON TABLE ventros.crm_daily_stats IS
    'CRM report counters per tenant, UTC day, channel, agent and team (nil uuid = none), kept by triggers; sum over slot';

ALTER TABLE ventros.crm_daily_stats ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.crm_daily_stats FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_read ON ventros.crm_daily_stats FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
REVOKE ALL ON ventros.crm_daily_stats FROM PUBLIC;
GRANT SELECT ON ventros.crm_daily_stats TO ventros_viewer;


-- The triggers run as the extension's owner: tenants read the table only.
CREATE FUNCTION ventros.stats_count_messages() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO ventros.crm_daily_stats AS d (tenant_id, day, channel_id, agent_id, team_id, slot, messages_in, messages_out)
    SELECT m.tenant_id, (m."timestamp" AT TIME ZONE 'UTC')::date, m.channel_id,
           coalesce(CASE WHEN m.from_me THEN m.agent_id ELSE s.assigned_agent_id END, '00000000-0000-0000-0000-000000000000'),
           coalesce(s.team_id, '00000000-0000-0000-0000-000000000000'), ventros.stats_slot(),
           count(*) FILTER (WHERE NOT m.from_me), count(*) FILTER (WHERE m.from_me)
    FROM new_rows m
    LEFT JOIN ventros.sessions s ON s.tenant_id = m.tenant_id AND s.id = m.session_id
    GROUP BY 1, 2, 3, 4, 5
    ON CONFLICT (tenant_id, day, channel_id, agent_id, team_id, slot) DO UPDATE
    SET messages_in = d.messages_in + EXCLUDED.messages_in, messages_out = d.messages_out + EXCLUDED.messages_out;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.stats_count_messages() IS 'Statement trigger: counts inserted messages in crm_daily_stats';
CREATE TRIGGER stats_count_messages AFTER INSERT ON ventros.messages
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ventros.stats_count_messages();

CREATE FUNCTION ventros.stats_count_sessions_started() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO ventros.crm_daily_stats AS d (tenant_id, day, channel_id, agent_id, team_id, slot, sessions_started)
    SELECT s.tenant_id, (s.started_at AT TIME ZONE 'UTC')::date, s.channel_id,
           coalesce(s.assigned_agent_id, '00000000-0000-0000-0000-000000000000'),
           coalesce(s.team_id, '00000000-0000-0000-0000-000000000000'), ventros.stats_slot(), count(*)
    FROM new_rows s
    GROUP BY 1, 2, 3, 4, 5
    ON CONFLICT (tenant_id, day, channel_id, agent_id, team_id, slot) DO UPDATE
    SET sessions_started = d.sessions_started + EXCLUDED.sessions_started;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.stats_count_sessions_started() IS 'Statement trigger: counts started sessions in crm_daily_stats';
CREATE TRIGGER stats_count_sessions_started AFTER INSERT ON ventros.sessions
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ventros.stats_count_sessions_started();

CREATE FUNCTION ventros.stats_count_session_change() RETURNS trigger
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
CREATE TRIGGER stats_count_session_change AFTER UPDATE ON ventros.sessions
    FOR EACH ROW
    WHEN ((OLD.first_agent_response_at IS NULL AND NEW.first_agent_response_at IS NOT NULL)
          OR (OLD.ended_at IS NULL AND NEW.ended_at IS NOT NULL))
    EXECUTE FUNCTION ventros.stats_count_session_change();

-- compact_crm_daily_stats: folds the slots of past days into slot 0.  Slots
-- only spread concurrent writers of the current day; once a day is over they
-- just multiply the rows a report reads.  Run daily (pg_cron) for every
-- tenant, or by a tenant's session for its own rows.  Returns the slot
-- rows folded away.
CREATE FUNCTION ventros.compact_crm_daily_stats(before_day date DEFAULT current_date)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.current_tenant();
    removed bigint;
BEGIN
    IF tenant IS NULL THEN
        PERFORM ventros.require_platform_admin();
    END IF;
    WITH gone AS (
        DELETE FROM ventros.crm_daily_stats d
        WHERE d.day < before_day AND d.slot <> 0 AND (tenant IS NULL OR d.tenant_id = tenant)
        RETURNING d.*),
    folded AS (
        INSERT INTO ventros.crm_daily_stats AS d
            (tenant_id, day, channel_id, agent_id, team_id, slot, messages_in, messages_out, sessions_started,
             sessions_ended, first_responses, first_response_seconds, resolutions, resolution_seconds)
        SELECT g.tenant_id, g.day, g.channel_id, g.agent_id, g.team_id, 0, sum(g.messages_in), sum(g.messages_out),
               sum(g.sessions_started), sum(g.sessions_ended), sum(g.first_responses), sum(g.first_response_seconds),
               sum(g.resolutions), sum(g.resolution_seconds)
        FROM gone g GROUP BY 1, 2, 3, 4, 5
        ON CONFLICT (tenant_id, day, channel_id, agent_id, team_id, slot) DO UPDATE
        SET messages_in = d.messages_in + EXCLUDED.messages_in, messages_out = d.messages_out + EXCLUDED.messages_out,
            sessions_started = d.sessions_started + EXCLUDED.sessions_started,
            sessions_ended = d.sessions_ended + EXCLUDED.sessions_ended,
            first_responses = d.first_responses + EXCLUDED.first_responses,
            first_response_seconds = d.first_response_seconds + EXCLUDED.first_response_seconds,
            resolutions = d.resolutions + EXCLUDED.resolutions,
            resolution_seconds = d.resolution_seconds + EXCLUDED.resolution_seconds
        RETURNING 1)
    SELECT count(*) INTO removed FROM gone;   -- folded runs too: DML in WITH always does
    RETURN removed;
END
$$;
COMMENT ON FUNCTION ventros.compact_crm_daily_stats(date) IS
    'Folds the slots of days before before_day into slot 0 (the acting tenant''s, or every tenant''s for a platform administrator); returns the slot rows folded away';

-- crm_report: the counters summed by day, channel, agent or team over a date
-- range (UTC days, both ends included), with the average first response and
-- resolution times in seconds.
CREATE FUNCTION ventros.crm_report(from_day date, to_day date, group_by text DEFAULT 'day',
                                   channel_id uuid DEFAULT NULL, agent_id uuid DEFAULT NULL, team_id uuid DEFAULT NULL)
RETURNS TABLE (day date, key uuid, messages_in bigint, messages_out bigint, sessions_started bigint,
               sessions_ended bigint, first_responses bigint, avg_first_response_seconds numeric,
               resolutions bigint, avg_resolution_seconds numeric)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF group_by IS NULL OR group_by NOT IN ('day', 'channel', 'agent', 'team', 'day_channel', 'day_agent', 'day_team') THEN
        RAISE EXCEPTION 'unknown report grouping "%"', left(group_by, 32) USING ERRCODE = '22023',
            HINT = 'Use day, channel, agent, team, day_channel, day_agent or day_team.';
    END IF;
    IF from_day IS NULL OR to_day IS NULL OR to_day < from_day OR to_day - from_day > 366 THEN
        RAISE EXCEPTION 'report range must be 1 to 367 days' USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
    SELECT CASE WHEN group_by LIKE 'day%' THEN d.day END,
           CASE WHEN group_by LIKE '%channel' THEN d.channel_id WHEN group_by LIKE '%agent' THEN d.agent_id
                WHEN group_by LIKE '%team' THEN d.team_id END,
           sum(d.messages_in)::bigint, sum(d.messages_out)::bigint, sum(d.sessions_started)::bigint,
           sum(d.sessions_ended)::bigint, sum(d.first_responses)::bigint,
           round(sum(d.first_response_seconds)::numeric / nullif(sum(d.first_responses), 0), 1),
           sum(d.resolutions)::bigint,
           round(sum(d.resolution_seconds)::numeric / nullif(sum(d.resolutions), 0), 1)
    FROM ventros.crm_daily_stats d
    WHERE d.tenant_id = ventros.require_tenant() AND d.day BETWEEN from_day AND to_day
      AND (crm_report.channel_id IS NULL OR d.channel_id = crm_report.channel_id)
      AND (crm_report.agent_id IS NULL OR d.agent_id = crm_report.agent_id)
      AND (crm_report.team_id IS NULL OR d.team_id = crm_report.team_id)
    GROUP BY 1, 2
    ORDER BY 1, 2;
END
$$;
COMMENT ON FUNCTION ventros.crm_report(date, date, text, uuid, uuid, uuid) IS
    'Messages in/out, sessions started/ended, average first response and resolution times per day, channel, agent or team (nil uuid key = none), from crm_daily_stats';

GRANT EXECUTE ON FUNCTION ventros.crm_report(date, date, text, uuid, uuid, uuid) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.compact_crm_daily_stats(date) TO ventros_platform_admin;
