-- Aggregate 9, Agent (CRM): anyone or anything acting in conversations.
--
-- System agents: the senders of automated messages have fixed ids
-- 00000000-0000-0000-0000-0000000000{01,02,03,04,05,10,99}.  They are seeded
-- per tenant (same ids in every tenant) by a trigger on the tenant's first
-- project, not once globally: keys lead with tenant_id, and a message's
-- composite foreign key (tenant_id, agent_id) can only point at an agent of
-- its own tenant.  System agents cannot be created, changed or deleted
-- (42501) once seeded.  Virtual agents (stand-ins for a past person) are
-- always offline and cannot send or be assigned.

CREATE TABLE ventros.agents (
    id                  uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id           text        NOT NULL,
    version             integer     NOT NULL DEFAULT 1,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    project_id          uuid        NOT NULL,
    user_id             uuid,
    name                text        NOT NULL,
    email               text,
    type                text        NOT NULL DEFAULT 'human',
    status              text        NOT NULL DEFAULT 'offline',
    role                text,
    active              boolean     NOT NULL DEFAULT true,
    config              jsonb       NOT NULL DEFAULT '{}',
    permissions         jsonb       NOT NULL DEFAULT '{}',
    settings            jsonb       NOT NULL DEFAULT '{}',
    virtual_metadata    jsonb,
    max_open_sessions   integer     NOT NULL DEFAULT 10,
    sessions_handled    integer     NOT NULL DEFAULT 0,
    average_response_ms integer     NOT NULL DEFAULT 0,
    last_activity_at    timestamptz,
    last_login_at       timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id),
    CONSTRAINT agents_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT agents_email_normalized CHECK (email = lower(email) AND email ~ '^[^@\s]+@[^@\s]+\.[^@\s.]+$'),
    CONSTRAINT agents_type_known CHECK (type IN ('human', 'ai', 'bot', 'channel', 'virtual', 'system')),
    CONSTRAINT agents_status_known CHECK (status IN ('available', 'busy', 'away', 'offline')),
    CONSTRAINT agents_role_known CHECK (role IN ('human_agent', 'supervisor', 'admin', 'ai_agent', 'ai_assistant',
                                                 'channel_bot', 'workflow_bot', 'analytics_bot', 'summarizer_bot')),
    CONSTRAINT agents_system_ids CHECK ((type = 'system') = (id::text LIKE '00000000-0000-0000-0000-0000000000__')),
    CONSTRAINT agents_virtual_offline CHECK (type <> 'virtual' OR status = 'offline'),
    CONSTRAINT agents_virtual_metadata CHECK (type <> 'virtual' OR virtual_metadata ? 'represents_person_name'),
    CONSTRAINT agents_virtual_period CHECK ((virtual_metadata->>'period_end') IS NULL
        OR (virtual_metadata->>'period_end')::timestamptz >= (virtual_metadata->>'period_start')::timestamptz),
    CONSTRAINT agents_capacity_range CHECK (max_open_sessions BETWEEN 0 AND 1000),
    CONSTRAINT agents_jsonb_objects CHECK (jsonb_typeof(config) = 'object' AND jsonb_typeof(permissions) = 'object'
                                           AND jsonb_typeof(settings) = 'object'),
    CONSTRAINT agents_counters_positive CHECK (sessions_handled >= 0 AND average_response_ms >= 0)
);
CREATE UNIQUE INDEX agents_unique_email ON ventros.agents (tenant_id, email) WHERE deleted_at IS NULL AND email IS NOT NULL;
CREATE INDEX agents_by_project ON ventros.agents (tenant_id, project_id, type) WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.agents IS 'Agent: a human, AI, bot, channel, virtual stand-in or system sender';

SELECT ventros.register_aggregate('agent', 'ventros.agents', 'crm',
    state_column => 'active',
    transitions => '[
        {"from": null, "to": "true"},
        {"from": null, "to": "false"},
        {"from": "false", "to": "true", "event": "agent.activated", "description": "An agent was activated."},
        {"from": "true", "to": "false", "event": "agent.deactivated", "description": "An agent was deactivated."}
    ]',
    description => 'Anyone or anything acting in conversations');
SELECT ventros.register_quiet_columns('agent', '{sessions_handled,average_response_ms,last_activity_at}');
SELECT ventros.register_event_type('agent.logged_in', 'An agent logged in.');
SELECT ventros.register_event_type('agent.permission_granted', 'A permission was granted to an agent.');
SELECT ventros.register_event_type('agent.permission_revoked', 'A permission was revoked from an agent.');
SELECT ventros.register_event_type('agent.virtual_period_ended', 'The period a virtual agent stands for was ended.');

-- System agents: fixed, immutable.
CREATE FUNCTION ventros.system_agent_id(source text) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT (CASE source WHEN 'broadcast' THEN '00000000-0000-0000-0000-000000000001'
                        WHEN 'sequence' THEN '00000000-0000-0000-0000-000000000002'
                        WHEN 'trigger' THEN '00000000-0000-0000-0000-000000000003'
                        WHEN 'webhook' THEN '00000000-0000-0000-0000-000000000004'
                        WHEN 'scheduled' THEN '00000000-0000-0000-0000-000000000005'
                        WHEN 'test' THEN '00000000-0000-0000-0000-000000000010'
                        ELSE '00000000-0000-0000-0000-000000000099' END)::uuid
$$;
COMMENT ON FUNCTION ventros.system_agent_id(text) IS
    'The fixed id of the system agent sending messages of a source (broadcast …01, sequence …02, trigger …03, webhook …04, scheduled …05, test …10, any other …99)';

CREATE FUNCTION ventros.seed_system_agents() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO ventros.agents (id, tenant_id, project_id, name, type, role, status)
    SELECT ventros.system_agent_id(s), NEW.tenant_id, NEW.id, 'System (' || s || ')', 'system', 'workflow_bot', 'available'
    FROM unnest(ARRAY['broadcast', 'sequence', 'trigger', 'webhook', 'scheduled', 'test', 'default']) s
    ON CONFLICT (tenant_id, id) DO NOTHING;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.seed_system_agents() IS
    'Trigger: seeds the tenant''s system agents when its first project is created';
CREATE TRIGGER seed_system_agents AFTER INSERT ON ventros.projects
    FOR EACH ROW EXECUTE FUNCTION ventros.seed_system_agents();

CREATE FUNCTION ventros.guard_system_agents() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        -- Only the seeding trigger (SECURITY DEFINER: runs as the superuser
        -- owning the extension) may insert a system agent.
        IF NEW.type = 'system' AND NOT (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user) THEN
            RAISE EXCEPTION 'system agents cannot be created' USING ERRCODE = '42501',
                DETAIL = 'System agents are seeded with every tenant.';
        END IF;
        RETURN NEW;
    END IF;
    IF OLD.type = 'system' THEN
        RAISE EXCEPTION 'system agent % cannot be changed or deleted', OLD.id USING ERRCODE = '42501';
    END IF;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END
$$;
COMMENT ON FUNCTION ventros.guard_system_agents() IS 'Trigger: system agents are seeded only and immutable';
-- Named so that it fires before ventros_engine_before.
CREATE TRIGGER agents_guard_system BEFORE INSERT OR UPDATE OR DELETE ON ventros.agents
    FOR EACH ROW EXECUTE FUNCTION ventros.guard_system_agents();

CREATE FUNCTION ventros.create_agent(
    name        text,
    type        text    DEFAULT 'human',
    email       text    DEFAULT NULL,
    user_id     uuid    DEFAULT NULL,
    role        text    DEFAULT NULL,
    project_id  uuid    DEFAULT NULL,
    config      jsonb   DEFAULT '{}',
    max_open_sessions integer DEFAULT 10)
RETURNS ventros.agents
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.agents;
BEGIN
    IF name IS NULL OR type IS NULL THEN
        RAISE EXCEPTION 'agent name and type must not be null' USING ERRCODE = '23502';
    END IF;
    IF type NOT IN ('human', 'ai', 'bot', 'channel') THEN
        RAISE EXCEPTION 'agents of type "%" cannot be created here', left(type, 32)
            USING ERRCODE = '22023',
                  HINT = 'Use human, ai, bot or channel; virtual agents come from create_virtual_agent(), system agents are seeded.';
    END IF;
    INSERT INTO ventros.agents (project_id, name, type, email, user_id, role, config, max_open_sessions)
    VALUES (coalesce(project_id, ventros.default_project()), ventros.check_length(btrim(name), 200, 'agent name'),
            type, ventros.normalize_email(email), user_id, role, coalesce(config, '{}'), coalesce(max_open_sessions, 10))
    RETURNING * INTO result;
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'an agent with email % already exists', ventros.normalize_email(email)
        USING ERRCODE = '23505', CONSTRAINT = 'agents_unique_email';
END
$$;
COMMENT ON FUNCTION ventros.create_agent(text, text, text, uuid, text, uuid, jsonb, integer) IS
    'Creates a human, AI, bot or channel agent; emits agent.created';

CREATE FUNCTION ventros.create_virtual_agent(represents_person_name text, reason text,
                                             period_start timestamptz DEFAULT NULL, project_id uuid DEFAULT NULL)
RETURNS ventros.agents
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.agents;
BEGIN
    IF represents_person_name IS NULL OR btrim(represents_person_name) = '' THEN
        RAISE EXCEPTION 'a virtual agent needs the name of the person it represents' USING ERRCODE = '23502';
    END IF;
    INSERT INTO ventros.agents (project_id, name, type, status, virtual_metadata)
    VALUES (coalesce(project_id, ventros.default_project()), ventros.check_length(btrim(represents_person_name), 200, 'agent name'),
            'virtual', 'offline',
            jsonb_strip_nulls(jsonb_build_object('represents_person_name', represents_person_name, 'reason', reason,
                                                 'period_start', period_start)))
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.create_virtual_agent(text, text, timestamptz, uuid) IS
    'Creates a virtual agent standing in for a past person (always offline, never sends); emits agent.created';

CREATE FUNCTION ventros.end_virtual_period(agent_id uuid, expected_version integer, period_end timestamptz)
RETURNS ventros.agents
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.agents;
BEGIN
    UPDATE ventros.agents a
    SET virtual_metadata = a.virtual_metadata || jsonb_build_object('period_end', period_end), version = expected_version
    WHERE a.tenant_id = ventros.require_tenant() AND a.id = agent_id AND a.type = 'virtual'
    RETURNING * INTO result;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'virtual agent % not found', agent_id USING ERRCODE = 'P0002';
    END IF;
    PERFORM ventros.emit('agent.virtual_period_ended', 'agent', agent_id,
                         jsonb_build_object('period_end', period_end), result.version);
    RETURN result;
EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION 'the virtual period of agent % cannot end before it starts', agent_id USING ERRCODE = '23514';
END
$$;
COMMENT ON FUNCTION ventros.end_virtual_period(uuid, integer, timestamptz) IS
    'Ends the period a virtual agent stands for (end >= start, else 23514); emits agent.updated and agent.virtual_period_ended';

CREATE FUNCTION ventros.update_agent(agent_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.agents
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    normalized jsonb := changes;
BEGIN
    IF jsonb_typeof(changes) = 'object' AND changes ? 'email' AND jsonb_typeof(changes->'email') = 'string' THEN
        normalized := jsonb_set(changes, '{email}', to_jsonb(ventros.normalize_email(changes->>'email')));
    END IF;
    RETURN ventros.apply_changes(NULL::ventros.agents, 'agent', agent_id, expected_version, normalized,
        ARRAY['name', 'email', 'status', 'role', 'active', 'config', 'settings', 'max_open_sessions', 'user_id']);
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'an agent with email % already exists', normalized->>'email'
        USING ERRCODE = '23505', CONSTRAINT = 'agents_unique_email';
END
$$;
COMMENT ON FUNCTION ventros.update_agent(uuid, integer, jsonb) IS
    'Changes fields of an agent (name, email, presence status, role, active, config, settings, capacity); emits agent.updated, .activated or .deactivated';

CREATE FUNCTION ventros.set_agent_presence(agent_id uuid, status text)
RETURNS ventros.agents
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.agents;
BEGIN
    UPDATE ventros.agents a SET status = set_agent_presence.status, version = a.version
    WHERE a.tenant_id = ventros.require_tenant() AND a.id = agent_id
    RETURNING * INTO result;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'agent % not found', agent_id USING ERRCODE = 'P0002';
    END IF;
    RETURN result;
EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION 'invalid presence "%" for agent %', left(status, 32), agent_id USING ERRCODE = '22023',
        HINT = 'Use available, busy, away or offline; virtual agents are always offline.';
END
$$;
COMMENT ON FUNCTION ventros.set_agent_presence(uuid, text) IS
    'Sets an agent''s presence (available, busy, away, offline) whatever its version; emits agent.updated';

CREATE FUNCTION ventros.record_agent_login(agent_id uuid)
RETURNS ventros.agents
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.agents;
BEGIN
    UPDATE ventros.agents a SET last_login_at = now(), version = a.version
    WHERE a.tenant_id = ventros.require_tenant() AND a.id = agent_id AND a.type NOT IN ('virtual', 'system')
    RETURNING * INTO result;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'agent % not found', agent_id USING ERRCODE = 'P0002';
    END IF;
    PERFORM ventros.emit('agent.logged_in', 'agent', agent_id, jsonb_build_object('at', result.last_login_at), result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.record_agent_login(uuid) IS 'Records a login of an agent; emits agent.updated and agent.logged_in';

CREATE FUNCTION ventros.set_agent_permission(agent_id uuid, permission text, granted boolean)
RETURNS ventros.agents
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.agents;
BEGIN
    IF permission IS NULL OR permission !~ '^[a-z_]+(\.[a-z_]+)*$' THEN
        RAISE EXCEPTION 'malformed permission "%"', left(permission, 64) USING ERRCODE = '22023',
            HINT = 'Permissions look like sessions.manage or messages.send.';
    END IF;
    UPDATE ventros.agents a
    SET permissions = CASE WHEN granted THEN a.permissions || jsonb_build_object(permission, true)
                           ELSE a.permissions - permission END,
        version = a.version
    WHERE a.tenant_id = ventros.require_tenant() AND a.id = agent_id
    RETURNING * INTO result;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'agent % not found', agent_id USING ERRCODE = 'P0002';
    END IF;
    PERFORM ventros.emit(CASE WHEN granted THEN 'agent.permission_granted' ELSE 'agent.permission_revoked' END,
                         'agent', agent_id, jsonb_build_object('permission', permission), result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.set_agent_permission(uuid, text, boolean) IS
    'Grants or revokes a permission of an agent; emits agent.updated and agent.permission_granted / agent.permission_revoked';

CREATE FUNCTION ventros.delete_agent(agent_id uuid, expected_version integer DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.delete_row('ventros.agents', 'agent', agent_id, expected_version) $$;
COMMENT ON FUNCTION ventros.delete_agent(uuid, integer) IS 'Soft-deletes an agent (not a system agent: 42501); emits agent.deleted';

CREATE FUNCTION ventros.get_agent(agent_id uuid) RETURNS ventros.agents
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.get_row(NULL::ventros.agents, 'agent', agent_id) $$;
COMMENT ON FUNCTION ventros.get_agent(uuid) IS 'A live agent of the acting tenant, or P0002';

CREATE FUNCTION ventros.list_agents(type text DEFAULT NULL, status text DEFAULT NULL, only_active boolean DEFAULT NULL,
                                    after_name text DEFAULT NULL, after_id uuid DEFAULT NULL, page_size integer DEFAULT 50)
RETURNS SETOF ventros.agents
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT a.* FROM ventros.agents a
    WHERE a.tenant_id = ventros.require_tenant()
      AND (list_agents.type IS NULL OR a.type = list_agents.type)
      AND (list_agents.status IS NULL OR a.status = list_agents.status)
      AND (only_active IS NULL OR a.active = only_active)
      AND (after_id IS NULL OR (lower(a.name), a.id) > (lower(after_name), after_id))
    ORDER BY lower(a.name), a.id
    LIMIT ventros.check_page_size(page_size)
$$;
COMMENT ON FUNCTION ventros.list_agents(text, text, boolean, text, uuid, integer) IS
    'Live agents by type, presence and active flag, in name order, one keyset page at a time';

GRANT EXECUTE ON FUNCTION ventros.system_agent_id(text), ventros.get_agent(uuid),
    ventros.list_agents(text, text, boolean, text, uuid, integer) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.set_agent_presence(uuid, text), ventros.record_agent_login(uuid)
    TO ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.create_agent(text, text, text, uuid, text, uuid, jsonb, integer),
    ventros.create_virtual_agent(text, text, timestamptz, uuid), ventros.end_virtual_period(uuid, integer, timestamptz),
    ventros.update_agent(uuid, integer, jsonb), ventros.set_agent_permission(uuid, text, boolean),
    ventros.delete_agent(uuid, integer)
    TO ventros_admin;

-- Direct writes of agent by tenant roles: the same as the first
-- command named, or refused naming them (docs/sql.md, "Direct writes").
SELECT ventros.register_writes('agent', inserts => '{create_agent,create_virtual_agent}', updates => '{update_agent,set_agent_presence,set_agent_permission,end_virtual_period}', deletes => '{delete_agent}',
    direct => '{DELETE}');
