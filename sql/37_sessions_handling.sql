-- Handling a session (CRM): assigning it to an agent or to a team (by the
-- team's rule), resolving and escalating it, its summary and its custom
-- fields.  The session itself, its life cycle and timeouts: 37_sessions.sql.

-- ---- assignment -----------------------------------------------------------
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

CREATE FUNCTION ventros.assign_session_agent(session_id uuid, agent_id uuid, expected_version integer DEFAULT NULL,
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

CREATE FUNCTION ventros.pick_team_agent(team_id uuid)
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

CREATE FUNCTION ventros.assign_session_to_team(session_id uuid, team_id uuid, expected_version integer DEFAULT NULL)
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


CREATE FUNCTION ventros.resolve_session(session_id uuid, expected_version integer DEFAULT NULL)
RETURNS ventros.sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.sessions;
    result ventros.sessions;
BEGIN
    s := ventros.lock_session(session_id, expected_version);
    IF s.status = 'active' THEN
        RAISE EXCEPTION 'session % is still active', session_id USING ERRCODE = 'VN002',
            DETAIL = 'A session can be resolved only after it ends.';
    END IF;
    IF s.resolved THEN
        RETURN s;
    END IF;
    UPDATE ventros.sessions t SET resolved = true, version = s.version
    WHERE t.tenant_id = s.tenant_id AND t.id = s.id RETURNING * INTO result;
    PERFORM ventros.emit('session.resolved', 'session', s.id, jsonb_build_object('ended_at', s.ended_at), result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.resolve_session(uuid, integer) IS
    'Marks an ended session resolved (VN002 while active); emits session.updated and session.resolved';

CREATE FUNCTION ventros.escalate_session(session_id uuid, expected_version integer DEFAULT NULL, reason text DEFAULT NULL)
RETURNS ventros.sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.sessions;
    result ventros.sessions;
BEGIN
    s := ventros.lock_session(session_id, expected_version);
    IF s.escalated THEN
        RETURN s;
    END IF;
    UPDATE ventros.sessions t SET escalated = true, version = s.version
    WHERE t.tenant_id = s.tenant_id AND t.id = s.id RETURNING * INTO result;
    PERFORM ventros.emit('session.escalated', 'session', s.id, jsonb_build_object('reason', reason), result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.escalate_session(uuid, integer, text) IS
    'Marks a session escalated (at any time); emits session.updated and session.escalated';

CREATE FUNCTION ventros.summarize_session(session_id uuid, summary text, sentiment text DEFAULT NULL,
                                          sentiment_score numeric DEFAULT NULL, topics jsonb DEFAULT NULL,
                                          next_steps jsonb DEFAULT NULL, expected_version integer DEFAULT NULL)
RETURNS ventros.sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.sessions;
    result ventros.sessions;
BEGIN
    IF summary IS NULL OR btrim(summary) = '' THEN
        RAISE EXCEPTION 'session summary must not be empty' USING ERRCODE = '23502';
    END IF;
    IF sentiment IS NOT NULL AND sentiment NOT IN ('positive', 'neutral', 'negative', 'mixed') THEN
        RAISE EXCEPTION 'unknown sentiment "%"', left(sentiment, 32) USING ERRCODE = '22023';
    END IF;
    s := ventros.lock_session(session_id, expected_version);
    UPDATE ventros.sessions t
    SET summary = ventros.check_length(summarize_session.summary, 20000, 'session summary'),
        sentiment = summarize_session.sentiment, sentiment_score = summarize_session.sentiment_score,
        topics = summarize_session.topics, next_steps = summarize_session.next_steps, version = s.version
    WHERE t.tenant_id = s.tenant_id AND t.id = s.id RETURNING * INTO result;
    PERFORM ventros.emit('session.summarized', 'session', s.id,
                         jsonb_build_object('sentiment', sentiment, 'sentiment_score', sentiment_score), result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.summarize_session(uuid, text, text, numeric, jsonb, jsonb, integer) IS
    'Sets the AI summary and sentiment of a session; emits session.updated and session.summarized';

CREATE FUNCTION ventros.set_session_custom_field(session_id uuid, field_key text, field_type text, field_value jsonb)
RETURNS ventros.session_custom_fields
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    existing ventros.session_custom_fields;
    result ventros.session_custom_fields;
BEGIN
    PERFORM 1 FROM ventros.sessions s WHERE s.tenant_id = tenant AND s.id = set_session_custom_field.session_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'session % not found', session_id USING ERRCODE = 'P0002';
    END IF;
    SELECT * INTO existing FROM ventros.session_custom_fields f
    WHERE f.tenant_id = tenant AND f.session_id = set_session_custom_field.session_id
      AND f.field_key = set_session_custom_field.field_key FOR UPDATE;
    IF FOUND THEN
        UPDATE ventros.session_custom_fields f SET field_type = set_session_custom_field.field_type,
            field_value = set_session_custom_field.field_value, version = existing.version
        WHERE f.tenant_id = tenant AND f.id = existing.id RETURNING * INTO result;
    ELSE
        INSERT INTO ventros.session_custom_fields (session_id, field_key, field_type, field_value)
        VALUES (session_id, field_key, field_type, field_value) RETURNING * INTO result;
    END IF;
    RETURN result;
EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION 'malformed custom field "%" of type "%"', left(field_key, 64), left(field_type, 32) USING ERRCODE = '22023';
END
$$;
COMMENT ON FUNCTION ventros.set_session_custom_field(uuid, text, text, jsonb) IS
    'Sets a custom field of a session; emits session_custom_field.created / .updated';

GRANT EXECUTE ON FUNCTION ventros.assign_session_agent(uuid, uuid, integer, text), ventros.pick_team_agent(uuid),
    ventros.assign_session_to_team(uuid, uuid, integer), ventros.resolve_session(uuid, integer),
    ventros.escalate_session(uuid, integer, text),
    ventros.summarize_session(uuid, text, text, numeric, jsonb, jsonb, integer),
    ventros.set_session_custom_field(uuid, text, text, jsonb),
    ventros.set_session_agent(ventros.sessions, uuid, text, timestamptz), ventros.next_team_agent(uuid, text, uuid[]),
    ventros.put_session_on_team(ventros.sessions, uuid, text, timestamptz),
    ventros.auto_assign_session(ventros.sessions, timestamptz) TO ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.tick_assignments(timestamptz, integer) TO ventros_platform_admin;

-- Direct writes of session, session_custom_field by tenant roles: the same as the first
-- command named, or refused naming them (docs/sql.md, "Direct writes").
SELECT ventros.register_writes('session', inserts => '{start_or_continue_session}', updates => '{close_session,resolve_session,assign_session_agent,assign_session_to_team,escalate_session,summarize_session,snooze_session,unsnooze_session}', deletes => '{}');
SELECT ventros.register_writes('session_custom_field', inserts => '{set_session_custom_field}', updates => '{set_session_custom_field}', deletes => '{}');
