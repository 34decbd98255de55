-- CRM reports from summary tables kept incrementally (never from scans of
-- all messages): messages in and out, sessions started and ended, first
-- response time and resolution time, per tenant, UTC day, channel, agent and
-- team.
--
-- The summaries are projections, not aggregates: no version, no events.
-- The hot path takes no shared row lock: statement triggers (with
-- transition tables) on messages and sessions, and row triggers on sessions
-- (first responses and endings), only append delta rows
-- (ventros.crm_stats_deltas, insert only, no unique key), and
-- ventros.fold_crm_stats() (a scheduled job, every minute, one tenant at a
-- time) adds them to two summaries:
--   crm_daily_stats   per tenant, day, channel, agent and team (agent and
--                     team reports; agent_id and team_id use the nil uuid
--                     for "none", so they can be part of the key);
--   crm_channel_days  per tenant, day and channel (reports by day and
--                     channel: one row per channel and day whatever the
--                     number of agents and teams);
--   crm_staff_days    per tenant, day, agent and team (reports by agent or
--                     team over every channel: one row per agent and day
--                     whatever the number of channels).
-- So a report reads one row per day and key of its grouping (crm_daily_stats
-- only for an agent or team report of one channel), and its cost does not
-- grow with the history.
-- Reports add the folded rows and the deltas not folded yet, so they are
-- exact at any moment.  crm_daily_stats' slot rows were written by 0.1.0
-- (a hot key spread over a few rows); compact_crm_daily_stats folds them.
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
    'CRM report counters per tenant, UTC day, channel, agent and team (nil uuid = none), folded from crm_stats_deltas by fold_crm_stats; sum over slot (slots > 0: written by 0.1.0)';

ALTER TABLE ventros.crm_daily_stats ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.crm_daily_stats FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_read ON ventros.crm_daily_stats FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
REVOKE ALL ON ventros.crm_daily_stats FROM PUBLIC;
GRANT SELECT ON ventros.crm_daily_stats TO ventros_viewer;


-- The deltas the hot path appends: one row per statement and key (no row is
-- ever updated, so writers never queue), moved into the summaries by
-- fold_crm_stats.
CREATE TABLE ventros.crm_stats_deltas (
    tenant_id              text     NOT NULL,
    id                     bigint   GENERATED ALWAYS AS IDENTITY,
    day                    date     NOT NULL,
    channel_id             uuid     NOT NULL,
    agent_id               uuid     NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000',
    team_id                uuid     NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000',
    messages_in            bigint   NOT NULL DEFAULT 0,
    messages_out           bigint   NOT NULL DEFAULT 0,
    sessions_started       bigint   NOT NULL DEFAULT 0,
    sessions_ended         bigint   NOT NULL DEFAULT 0,
    first_responses        bigint   NOT NULL DEFAULT 0,
    first_response_seconds bigint   NOT NULL DEFAULT 0,
    resolutions            bigint   NOT NULL DEFAULT 0,
    resolution_seconds     bigint   NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX crm_stats_deltas_by_day ON ventros.crm_stats_deltas (tenant_id, day);
COMMENT ON TABLE ventros.crm_stats_deltas IS
    'CRM report counters appended by the triggers since the last fold (insert only: writers never queue); folded into crm_daily_stats, crm_channel_days and crm_staff_days by fold_crm_stats';
ALTER TABLE ventros.crm_stats_deltas ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.crm_stats_deltas FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_read ON ventros.crm_stats_deltas FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
REVOKE ALL ON ventros.crm_stats_deltas FROM PUBLIC;
GRANT SELECT ON ventros.crm_stats_deltas TO ventros_viewer;

-- The same counters per tenant, day and channel only: what reports by day
-- and channel read (1,800 rows for 90 days of 20 channels, where
-- crm_daily_stats holds one per agent and team too).
CREATE TABLE ventros.crm_channel_days (
    tenant_id              text     NOT NULL,
    day                    date     NOT NULL,
    channel_id             uuid     NOT NULL,
    messages_in            bigint   NOT NULL DEFAULT 0,
    messages_out           bigint   NOT NULL DEFAULT 0,
    sessions_started       bigint   NOT NULL DEFAULT 0,
    sessions_ended         bigint   NOT NULL DEFAULT 0,
    first_responses        bigint   NOT NULL DEFAULT 0,
    first_response_seconds bigint   NOT NULL DEFAULT 0,
    resolutions            bigint   NOT NULL DEFAULT 0,
    resolution_seconds     bigint   NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day, channel_id)
);
COMMENT ON TABLE ventros.crm_channel_days IS
    'CRM report counters per tenant, UTC day and channel, folded from crm_stats_deltas by fold_crm_stats (reports by day and channel)';
ALTER TABLE ventros.crm_channel_days ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.crm_channel_days FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_read ON ventros.crm_channel_days FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
REVOKE ALL ON ventros.crm_channel_days FROM PUBLIC;
GRANT SELECT ON ventros.crm_channel_days TO ventros_viewer;

-- The same counters per tenant, day, agent and team, over every channel:
-- what reports by agent or team read.
CREATE TABLE ventros.crm_staff_days (
    tenant_id              text     NOT NULL,
    day                    date     NOT NULL,
    agent_id               uuid     NOT NULL,
    team_id                uuid     NOT NULL,
    messages_in            bigint   NOT NULL DEFAULT 0,
    messages_out           bigint   NOT NULL DEFAULT 0,
    sessions_started       bigint   NOT NULL DEFAULT 0,
    sessions_ended         bigint   NOT NULL DEFAULT 0,
    first_responses        bigint   NOT NULL DEFAULT 0,
    first_response_seconds bigint   NOT NULL DEFAULT 0,
    resolutions            bigint   NOT NULL DEFAULT 0,
    resolution_seconds     bigint   NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day, agent_id, team_id)
);
COMMENT ON TABLE ventros.crm_staff_days IS
    'CRM report counters per tenant, UTC day, agent and team (nil uuid = none) over every channel, folded from crm_stats_deltas by fold_crm_stats (reports by agent or team)';
ALTER TABLE ventros.crm_staff_days ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.crm_staff_days FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_read ON ventros.crm_staff_days FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
REVOKE ALL ON ventros.crm_staff_days FROM PUBLIC;
GRANT SELECT ON ventros.crm_staff_days TO ventros_viewer;

-- The triggers run as the extension's owner: tenants read the tables only.
CREATE FUNCTION ventros.stats_count_messages() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO ventros.crm_stats_deltas (tenant_id, day, channel_id, agent_id, team_id, messages_in, messages_out)
    SELECT m.tenant_id, (m."timestamp" AT TIME ZONE 'UTC')::date, m.channel_id,
           coalesce(CASE WHEN m.from_me THEN m.agent_id ELSE s.assigned_agent_id END, '00000000-0000-0000-0000-000000000000'),
           coalesce(s.team_id, '00000000-0000-0000-0000-000000000000'),
           count(*) FILTER (WHERE NOT m.from_me), count(*) FILTER (WHERE m.from_me)
    FROM new_rows m
    LEFT JOIN ventros.sessions s ON s.tenant_id = m.tenant_id AND s.id = m.session_id
    GROUP BY 1, 2, 3, 4, 5;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.stats_count_messages() IS 'Statement trigger: counts inserted messages (appended crm_stats_deltas)';
CREATE TRIGGER stats_count_messages AFTER INSERT ON ventros.messages
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ventros.stats_count_messages();

CREATE FUNCTION ventros.stats_count_sessions_started() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO ventros.crm_stats_deltas (tenant_id, day, channel_id, agent_id, team_id, sessions_started)
    SELECT s.tenant_id, (s.started_at AT TIME ZONE 'UTC')::date, s.channel_id,
           coalesce(s.assigned_agent_id, '00000000-0000-0000-0000-000000000000'),
           coalesce(s.team_id, '00000000-0000-0000-0000-000000000000'), count(*)
    FROM new_rows s
    GROUP BY 1, 2, 3, 4, 5;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.stats_count_sessions_started() IS 'Statement trigger: counts started sessions (appended crm_stats_deltas)';
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
        INSERT INTO ventros.crm_stats_deltas (tenant_id, day, channel_id, agent_id, team_id,
                                              first_responses, first_response_seconds)
        VALUES (NEW.tenant_id, (NEW.first_agent_response_at AT TIME ZONE 'UTC')::date, NEW.channel_id,
                coalesce(NEW.assigned_agent_id, '00000000-0000-0000-0000-000000000000'),
                coalesce(NEW.team_id, '00000000-0000-0000-0000-000000000000'),
                1, coalesce(NEW.agent_response_time_seconds, 0));
    END IF;
    IF ended THEN
        INSERT INTO ventros.crm_stats_deltas (tenant_id, day, channel_id, agent_id, team_id,
                                              sessions_ended, resolutions, resolution_seconds)
        VALUES (NEW.tenant_id, (NEW.ended_at AT TIME ZONE 'UTC')::date, NEW.channel_id,
                coalesce(NEW.assigned_agent_id, '00000000-0000-0000-0000-000000000000'),
                coalesce(NEW.team_id, '00000000-0000-0000-0000-000000000000'),
                1, (NEW.first_agent_response_at IS NOT NULL)::integer,
                CASE WHEN NEW.first_agent_response_at IS NOT NULL
                     THEN extract(epoch FROM NEW.ended_at - NEW.started_at)::bigint ELSE 0 END);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.stats_count_session_change() IS
    'Row trigger: counts a session''s first agent response and its end (resolution time = end - start of sessions that got a response; appended crm_stats_deltas)';
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

-- fold_crm_stats: moves the acting tenant's deltas into crm_daily_stats
-- (slot 0), crm_channel_days and crm_staff_days, in one statement (readers
-- see the deltas or their sums, never both nor neither).  Without a tenant
-- (the scheduled job, a platform administrator): every tenant with deltas,
-- each on its own (ventros.run_per_tenant).  Returns the delta rows folded.
CREATE FUNCTION ventros.fold_crm_stats()
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.current_tenant();
    folded bigint;
BEGIN
    IF tenant IS NULL THEN
        PERFORM ventros.require_platform_admin();
        SELECT coalesce(sum((r.result #>> '{}')::bigint), 0)::bigint INTO folded
          FROM ventros.run_per_tenant('ventros-fold-crm-stats', 'SELECT pg_catalog.to_jsonb(ventros.fold_crm_stats())',
                   ARRAY(SELECT DISTINCT d.tenant_id FROM ventros.crm_stats_deltas d ORDER BY 1)) r;
        RETURN folded;
    END IF;
    WITH gone AS (
        DELETE FROM ventros.crm_stats_deltas d WHERE d.tenant_id = tenant RETURNING d.*),
    by_key AS (
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
        RETURNING 1),
    by_channel AS (
        INSERT INTO ventros.crm_channel_days AS c
            (tenant_id, day, channel_id, messages_in, messages_out, sessions_started, sessions_ended,
             first_responses, first_response_seconds, resolutions, resolution_seconds)
        SELECT g.tenant_id, g.day, g.channel_id, sum(g.messages_in), sum(g.messages_out), sum(g.sessions_started),
               sum(g.sessions_ended), sum(g.first_responses), sum(g.first_response_seconds), sum(g.resolutions),
               sum(g.resolution_seconds)
        FROM gone g GROUP BY 1, 2, 3
        ON CONFLICT (tenant_id, day, channel_id) DO UPDATE
        SET messages_in = c.messages_in + EXCLUDED.messages_in, messages_out = c.messages_out + EXCLUDED.messages_out,
            sessions_started = c.sessions_started + EXCLUDED.sessions_started,
            sessions_ended = c.sessions_ended + EXCLUDED.sessions_ended,
            first_responses = c.first_responses + EXCLUDED.first_responses,
            first_response_seconds = c.first_response_seconds + EXCLUDED.first_response_seconds,
            resolutions = c.resolutions + EXCLUDED.resolutions,
            resolution_seconds = c.resolution_seconds + EXCLUDED.resolution_seconds
        RETURNING 1),
    by_staff_day AS (
        INSERT INTO ventros.crm_staff_days AS a
            (tenant_id, day, agent_id, team_id, messages_in, messages_out, sessions_started, sessions_ended,
             first_responses, first_response_seconds, resolutions, resolution_seconds)
        SELECT g.tenant_id, g.day, g.agent_id, g.team_id, sum(g.messages_in), sum(g.messages_out),
               sum(g.sessions_started), sum(g.sessions_ended), sum(g.first_responses), sum(g.first_response_seconds),
               sum(g.resolutions), sum(g.resolution_seconds)
        FROM gone g GROUP BY 1, 2, 3, 4
        ON CONFLICT (tenant_id, day, agent_id, team_id) DO UPDATE
        SET messages_in = a.messages_in + EXCLUDED.messages_in, messages_out = a.messages_out + EXCLUDED.messages_out,
            sessions_started = a.sessions_started + EXCLUDED.sessions_started,
            sessions_ended = a.sessions_ended + EXCLUDED.sessions_ended,
            first_responses = a.first_responses + EXCLUDED.first_responses,
            first_response_seconds = a.first_response_seconds + EXCLUDED.first_response_seconds,
            resolutions = a.resolutions + EXCLUDED.resolutions,
            resolution_seconds = a.resolution_seconds + EXCLUDED.resolution_seconds
        RETURNING 1)
    SELECT count(*) INTO folded FROM gone;   -- the inserts run too: DML in WITH always does
    RETURN folded;
END
$$;
COMMENT ON FUNCTION ventros.fold_crm_stats() IS
    'Folds crm_stats_deltas into crm_daily_stats, crm_channel_days and crm_staff_days (the acting tenant''s, or every tenant''s one at a time for a platform administrator); returns the delta rows folded';

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
DECLARE
    tenant text;
    by_channel boolean;
    by_staff boolean;
BEGIN
    IF group_by IS NULL OR group_by NOT IN ('day', 'channel', 'agent', 'team', 'day_channel', 'day_agent', 'day_team') THEN
        RAISE EXCEPTION 'unknown report grouping "%"', left(group_by, 32) USING ERRCODE = '22023',
            HINT = 'Use day, channel, agent, team, day_channel, day_agent or day_team.';
    END IF;
    IF from_day IS NULL OR to_day IS NULL OR to_day < from_day OR to_day - from_day > 366 THEN
        RAISE EXCEPTION 'report range must be 1 to 367 days' USING ERRCODE = '22023';
    END IF;
    tenant := ventros.require_tenant();
    -- By day and channel alone: the per-channel summary (its rows do not
    -- multiply with agents and teams); by day, agent and team over every
    -- channel: the per-agent one; otherwise crm_daily_stats.  Each with the
    -- deltas not folded yet.
    by_channel := group_by IN ('day', 'channel', 'day_channel') AND crm_report.agent_id IS NULL
                  AND crm_report.team_id IS NULL;
    by_staff := NOT by_channel AND group_by <> 'channel' AND group_by <> 'day_channel'
                AND crm_report.channel_id IS NULL;
    RETURN QUERY
    SELECT CASE WHEN group_by LIKE 'day%' THEN d.day END,
           CASE WHEN group_by LIKE '%channel' THEN d.channel_id WHEN group_by LIKE '%agent' THEN d.agent_id
                WHEN group_by LIKE '%team' THEN d.team_id END,
           sum(d.messages_in)::bigint, sum(d.messages_out)::bigint, sum(d.sessions_started)::bigint,
           sum(d.sessions_ended)::bigint, sum(d.first_responses)::bigint,
           round(sum(d.first_response_seconds)::numeric / nullif(sum(d.first_responses), 0), 1),
           sum(d.resolutions)::bigint,
           round(sum(d.resolution_seconds)::numeric / nullif(sum(d.resolutions), 0), 1)
    FROM (SELECT c.day, c.channel_id, NULL::uuid AS agent_id, NULL::uuid AS team_id, c.messages_in, c.messages_out,
                 c.sessions_started, c.sessions_ended, c.first_responses, c.first_response_seconds, c.resolutions,
                 c.resolution_seconds
            FROM ventros.crm_channel_days c
           WHERE by_channel AND c.tenant_id = tenant AND c.day BETWEEN from_day AND to_day
             AND (crm_report.channel_id IS NULL OR c.channel_id = crm_report.channel_id)
          UNION ALL
          SELECT a.day, NULL::uuid, a.agent_id, a.team_id, a.messages_in, a.messages_out, a.sessions_started,
                 a.sessions_ended, a.first_responses, a.first_response_seconds, a.resolutions, a.resolution_seconds
            FROM ventros.crm_staff_days a
           WHERE by_staff AND a.tenant_id = tenant AND a.day BETWEEN from_day AND to_day
             AND (crm_report.agent_id IS NULL OR a.agent_id = crm_report.agent_id)
             AND (crm_report.team_id IS NULL OR a.team_id = crm_report.team_id)
          UNION ALL
          SELECT s.day, s.channel_id, s.agent_id, s.team_id, s.messages_in, s.messages_out, s.sessions_started,
                 s.sessions_ended, s.first_responses, s.first_response_seconds, s.resolutions, s.resolution_seconds
            FROM ventros.crm_daily_stats s
           WHERE NOT by_channel AND NOT by_staff AND s.tenant_id = tenant AND s.day BETWEEN from_day AND to_day
             AND (crm_report.channel_id IS NULL OR s.channel_id = crm_report.channel_id)
             AND (crm_report.agent_id IS NULL OR s.agent_id = crm_report.agent_id)
             AND (crm_report.team_id IS NULL OR s.team_id = crm_report.team_id)
          UNION ALL
          SELECT x.day, x.channel_id, x.agent_id, x.team_id, x.messages_in, x.messages_out, x.sessions_started,
                 x.sessions_ended, x.first_responses, x.first_response_seconds, x.resolutions, x.resolution_seconds
            FROM ventros.crm_stats_deltas x
           WHERE x.tenant_id = tenant AND x.day BETWEEN from_day AND to_day
             AND (crm_report.channel_id IS NULL OR x.channel_id = crm_report.channel_id)
             AND (crm_report.agent_id IS NULL OR x.agent_id = crm_report.agent_id)
             AND (crm_report.team_id IS NULL OR x.team_id = crm_report.team_id)) d
    GROUP BY 1, 2
    ORDER BY 1, 2;
END
$$;
COMMENT ON FUNCTION ventros.crm_report(date, date, text, uuid, uuid, uuid) IS
    'Messages in/out, sessions started/ended, average first response and resolution times per day, channel, agent or team (nil uuid key = none), from crm_channel_days (by day and channel), crm_staff_days (by day, agent and team over every channel) or crm_daily_stats, with the deltas not folded yet';

GRANT EXECUTE ON FUNCTION ventros.crm_report(date, date, text, uuid, uuid, uuid) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.compact_crm_daily_stats(date), ventros.fold_crm_stats() TO ventros_platform_admin;
