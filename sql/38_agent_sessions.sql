-- Aggregate 10, AgentSession (CRM): an agent's participation in a session,
-- with a role.  One active row per (session, agent) and at most one active
-- primary per session, both by partial unique indexes.  is_active is the
-- state column: true -> false is agent_session.left, and never back.

CREATE TABLE ventros.agent_sessions (
    id              uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id       text        NOT NULL,
    version         integer     NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    agent_id        uuid        NOT NULL,
    session_id      uuid        NOT NULL,
    role_in_session text        NOT NULL DEFAULT 'primary',
    joined_at       timestamptz NOT NULL DEFAULT now(),
    left_at         timestamptz,
    is_active       boolean     NOT NULL DEFAULT true,
    metadata        jsonb,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES ventros.agents (tenant_id, id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES ventros.sessions (tenant_id, id),
    CONSTRAINT agent_sessions_role_known CHECK (role_in_session IN ('primary', 'support', 'observer', 'handoff',
                                                                    'ai_assistant', 'ai_primary', 'bot')),
    CONSTRAINT agent_sessions_left_consistent CHECK (is_active = (left_at IS NULL)),
    CONSTRAINT agent_sessions_left_after_join CHECK (left_at >= joined_at)
);
CREATE UNIQUE INDEX agent_sessions_one_active ON ventros.agent_sessions (tenant_id, session_id, agent_id)
    WHERE is_active AND deleted_at IS NULL;
CREATE UNIQUE INDEX agent_sessions_one_primary ON ventros.agent_sessions (tenant_id, session_id)
    WHERE is_active AND role_in_session = 'primary' AND deleted_at IS NULL;
CREATE INDEX agent_sessions_by_agent ON ventros.agent_sessions (tenant_id, agent_id, joined_at DESC) WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.agent_sessions IS 'AgentSession: an agent''s participation in a session, with a role';

SELECT ventros.register_aggregate('agent_session', 'ventros.agent_sessions', 'crm',
    state_column => 'is_active',
    transitions => '[
        {"from": null, "to": "true", "event": "agent_session.joined", "description": "An agent joined a session."},
        {"from": "true", "to": "false", "event": "agent_session.left", "description": "An agent left a session."}
    ]',
    description => 'An agent''s participation in a session');
SELECT ventros.register_event_type('agent_session.role_changed', 'An agent''s role in a session changed.');

-- Leaving written directly (is_active = false) stamps left_at too.
CREATE FUNCTION ventros.complete_agent_session_leave() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF OLD.is_active AND NOT NEW.is_active THEN
        NEW.left_at := coalesce(NEW.left_at, greatest(now(), NEW.joined_at));
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION ventros.complete_agent_session_leave() IS 'Trigger: an agent session that ends gets left_at when the writer did not set it';
CREATE TRIGGER agent_sessions_complete_leave BEFORE UPDATE OF is_active ON ventros.agent_sessions
    FOR EACH ROW EXECUTE FUNCTION ventros.complete_agent_session_leave();

CREATE FUNCTION ventros.join_session(session_id uuid, agent_id uuid, role_in_session text DEFAULT 'primary',
                                     metadata jsonb DEFAULT NULL)
RETURNS ventros.agent_sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.agent_sessions;
    constraint_name text;
BEGIN
    IF role_in_session NOT IN ('primary', 'support', 'observer', 'handoff', 'ai_assistant', 'ai_primary', 'bot') THEN
        RAISE EXCEPTION 'unknown role in session "%"', left(role_in_session, 32) USING ERRCODE = '22023';
    END IF;
    PERFORM ventros.lock_session(session_id);
    INSERT INTO ventros.agent_sessions (agent_id, session_id, role_in_session, metadata, joined_at)
    VALUES (agent_id, session_id, role_in_session, metadata, clock_timestamp())
    RETURNING * INTO result;
    RETURN result;
EXCEPTION
    WHEN unique_violation THEN
        GET STACKED DIAGNOSTICS constraint_name = CONSTRAINT_NAME;
        IF constraint_name = 'agent_sessions_one_primary' THEN
            RAISE EXCEPTION 'session % already has an active primary agent', session_id USING ERRCODE = '23505',
                CONSTRAINT = constraint_name;
        END IF;
        RAISE EXCEPTION 'agent % is already in session %', agent_id, session_id USING ERRCODE = '23505',
            CONSTRAINT = constraint_name;
    WHEN foreign_key_violation THEN
        RAISE EXCEPTION 'agent % not found', agent_id USING ERRCODE = 'P0002';
END
$$;
COMMENT ON FUNCTION ventros.join_session(uuid, uuid, text, jsonb) IS
    'An agent joins a session with a role (one active row per agent, one active primary: 23505); emits agent_session.joined';

CREATE FUNCTION ventros.leave_session(agent_session_id uuid, expected_version integer DEFAULT NULL)
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
COMMENT ON FUNCTION ventros.leave_session(uuid, integer) IS
    'An agent leaves a session (only while active: VN002 otherwise); emits agent_session.left';

CREATE FUNCTION ventros.change_agent_session_role(agent_session_id uuid, role_in_session text,
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
COMMENT ON FUNCTION ventros.change_agent_session_role(uuid, text, integer) IS
    'Changes an active participation''s role; emits agent_session.updated and agent_session.role_changed';

GRANT EXECUTE ON FUNCTION ventros.join_session(uuid, uuid, text, jsonb), ventros.leave_session(uuid, integer),
    ventros.change_agent_session_role(uuid, text, integer) TO ventros_agent;

-- Direct writes of agent_session by tenant roles: the same as the first
-- command named, or refused naming them (docs/sql.md, "Direct writes").
SELECT ventros.register_writes('agent_session', inserts => '{join_session}', updates => '{leave_session,change_agent_session_role}', deletes => '{}');
