-- Teams (CRM, new): groups of agents that sessions are assigned to.  A team
-- picks the next agent by its strategy: round_robin (the member assigned
-- longest ago), capacity (the member with the most room: open sessions /
-- max_open_sessions lowest) or least_open (the member with the fewest open
-- sessions); all skip members who are not available, inactive, virtual, or at
-- their max_open_sessions.  A team also stores its reassignment rules (agent
-- offline, no first response in N minutes), applied by tick_assignments
-- (37_sessions_handling.sql).  team_members is a child aggregate (team_member).

CREATE TABLE ventros.teams (
    id                  uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id           text        NOT NULL,
    version             integer     NOT NULL DEFAULT 1,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    project_id          uuid        NOT NULL,
    name                text        NOT NULL,
    description         text,
    assignment_strategy text        NOT NULL DEFAULT 'round_robin',
    active              boolean     NOT NULL DEFAULT true,
    reassign_when_offline       boolean NOT NULL DEFAULT false,
    reassign_after_minutes      integer,
    max_reassignments           integer NOT NULL DEFAULT 3,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id),
    CONSTRAINT teams_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT teams_strategy_known CHECK (assignment_strategy IN ('round_robin', 'capacity', 'least_open', 'manual')),
    CONSTRAINT teams_reassign_after_range CHECK (reassign_after_minutes BETWEEN 1 AND 10080),
    CONSTRAINT teams_max_reassignments_range CHECK (max_reassignments BETWEEN 0 AND 100)
);
CREATE UNIQUE INDEX teams_unique_name ON ventros.teams (tenant_id, project_id, lower(name)) WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.teams IS 'Team: a group of agents that sessions are assigned to, with an assignment strategy';

SELECT ventros.register_aggregate('team', 'ventros.teams', 'crm',
    privileges => '{"ventros_viewer": ["SELECT"], "ventros_admin": ["INSERT", "UPDATE", "DELETE"]}',
    description => 'A group of agents with an assignment strategy');

CREATE TABLE ventros.team_members (
    id               uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id        text        NOT NULL,
    version          integer     NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz,
    team_id          uuid        NOT NULL,
    agent_id         uuid        NOT NULL,
    role             text        NOT NULL DEFAULT 'member',
    last_assigned_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, team_id) REFERENCES ventros.teams (tenant_id, id),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES ventros.agents (tenant_id, id),
    CONSTRAINT team_members_role_known CHECK (role IN ('member', 'lead'))
);
CREATE UNIQUE INDEX team_members_unique ON ventros.team_members (tenant_id, team_id, agent_id) WHERE deleted_at IS NULL;
CREATE INDEX team_members_by_agent ON ventros.team_members (tenant_id, agent_id) WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.team_members IS 'Membership of an agent in a team';

-- A channel's assignment rule: its new inbound sessions go to this team, and
-- are assigned by the channel's strategy, else the team's (declared here,
-- where teams exist).
ALTER TABLE ventros.channels ADD CONSTRAINT channels_team_fk
    FOREIGN KEY (tenant_id, team_id) REFERENCES ventros.teams (tenant_id, id);

SELECT ventros.register_aggregate('team_member', 'ventros.team_members', 'crm',
    privileges => '{"ventros_viewer": ["SELECT"], "ventros_agent": ["UPDATE"], "ventros_admin": ["INSERT", "DELETE"]}',
    description => 'An agent''s membership in a team');
-- last_assigned_at is the round-robin cursor, moved by every assignment.
SELECT ventros.register_quiet_columns('team_member', '{last_assigned_at}');

CREATE FUNCTION ventros.create_team(name text, assignment_strategy text DEFAULT 'round_robin',
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

CREATE FUNCTION ventros.update_team(team_id uuid, expected_version integer, changes jsonb)
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

CREATE FUNCTION ventros.delete_team(team_id uuid, expected_version integer DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.delete_row('ventros.teams', 'team', team_id, expected_version) $$;
COMMENT ON FUNCTION ventros.delete_team(uuid, integer) IS 'Soft-deletes a team; emits team.deleted';

CREATE FUNCTION ventros.add_team_member(team_id uuid, agent_id uuid, role text DEFAULT 'member')
RETURNS ventros.team_members
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.team_members;
    agent_type text;
BEGIN
    SELECT a.type INTO agent_type FROM ventros.agents a
    WHERE a.tenant_id = ventros.require_tenant() AND a.id = add_team_member.agent_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'agent % not found', agent_id USING ERRCODE = 'P0002';
    END IF;
    IF agent_type IN ('virtual', 'system') THEN
        RAISE EXCEPTION '% agents cannot join a team', agent_type USING ERRCODE = '22023';
    END IF;
    PERFORM 1 FROM ventros.teams t WHERE t.tenant_id = ventros.require_tenant() AND t.id = add_team_member.team_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'team % not found', team_id USING ERRCODE = 'P0002';
    END IF;
    INSERT INTO ventros.team_members (team_id, agent_id, role)
    VALUES (add_team_member.team_id, add_team_member.agent_id, coalesce(role, 'member'))
    RETURNING * INTO result;
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'agent % is already a member of team %', agent_id, team_id USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.add_team_member(uuid, uuid, text) IS
    'Adds an agent (not virtual or system) to a team; emits team_member.created';

CREATE FUNCTION ventros.remove_team_member(team_id uuid, agent_id uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    member_id uuid;
BEGIN
    SELECT m.id INTO member_id FROM ventros.team_members m
    WHERE m.tenant_id = ventros.require_tenant() AND m.team_id = remove_team_member.team_id
      AND m.agent_id = remove_team_member.agent_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'agent % is not a member of team %', agent_id, team_id USING ERRCODE = 'P0002';
    END IF;
    PERFORM ventros.delete_row('ventros.team_members', 'team_member', member_id, NULL);
END
$$;
COMMENT ON FUNCTION ventros.remove_team_member(uuid, uuid) IS 'Removes an agent from a team; emits team_member.deleted';

GRANT EXECUTE ON FUNCTION ventros.create_team(text, text, text, uuid), ventros.update_team(uuid, integer, jsonb),
    ventros.delete_team(uuid, integer), ventros.add_team_member(uuid, uuid, text), ventros.remove_team_member(uuid, uuid)
    TO ventros_admin;

-- Direct writes of team, team_member by tenant roles: the same as the first
-- command named, or refused naming them (docs/sql.md, "Direct writes").
SELECT ventros.register_writes('team', inserts => '{create_team}', updates => '{update_team}', deletes => '{delete_team}',
    direct => '{UPDATE,DELETE}',
    update_columns => '{name,description,assignment_strategy,active}');
SELECT ventros.register_writes('team_member', inserts => '{add_team_member}', updates => '{}', deletes => '{remove_team_member}');
