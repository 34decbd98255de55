-- Aggregate 18, ProjectMember (CRM): a member's role in a project (RBAC).
-- The role column is the state machine: any change of role is
-- project_member.role_changed; invite_project_member emits
-- project_member.invited with the row's project_member.created.  A member never changes their own role, and a
-- project never loses its last admin; both are checked under a lock of the
-- project's admin rows, so two concurrent demotions cannot both pass.

CREATE TABLE ventros.project_members (
    id         uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id  text        NOT NULL,
    version    integer     NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    project_id uuid        NOT NULL,
    agent_id   text        NOT NULL,
    role       text        NOT NULL,
    invited_by text        NOT NULL,
    invited_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT project_members_role_known CHECK (role IN ('admin', 'supervisor', 'agent', 'viewer')),
    CONSTRAINT project_members_subject_format CHECK (btrim(agent_id) <> '' AND length(agent_id) <= 200
                                                     AND length(invited_by) <= 200)
);
CREATE UNIQUE INDEX project_members_unique ON ventros.project_members (tenant_id, project_id, agent_id)
    WHERE deleted_at IS NULL;
CREATE INDEX project_members_by_member ON ventros.project_members (tenant_id, agent_id) WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.project_members IS 'ProjectMember: a member''s role in a project';

SELECT ventros.register_aggregate('project_member', 'ventros.project_members', 'crm',
    state_column => 'role',
    transitions => (
        SELECT jsonb_agg(t) FROM (
            SELECT jsonb_build_object('from', NULL, 'to', r) AS t
            FROM unnest(ARRAY['admin', 'supervisor', 'agent', 'viewer']) r
            UNION ALL
            SELECT jsonb_build_object('from', a, 'to', b, 'event', 'project_member.role_changed',
                                      'description', 'The role of a project member changed.')
            FROM unnest(ARRAY['admin', 'supervisor', 'agent', 'viewer']) a,
                 unnest(ARRAY['admin', 'supervisor', 'agent', 'viewer']) b
            WHERE a <> b) s),
    privileges => '{"ventros_viewer": ["SELECT"], "ventros_admin": ["INSERT", "UPDATE", "DELETE"]}',
    description => 'A member''s role in a project');
SELECT ventros.register_event_type('project_member.invited', 'A member was invited to a project.');
SELECT ventros.register_event_type('project_member.removed', 'A member was removed from a project.');

-- The 23 permissions and what each project role holds (no role holds billing).
CREATE FUNCTION ventros.project_role_permissions(role text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE role
        WHEN 'admin' THEN ARRAY['sessions.view', 'sessions.manage', 'messages.send', 'messages.view', 'contacts.view',
            'contacts.manage', 'contacts.export', 'pipelines.view', 'pipelines.manage', 'campaigns.view',
            'campaigns.manage', 'sequences.view', 'sequences.manage', 'analytics.view', 'analytics.export',
            'members.view', 'members.manage', 'channels.view', 'channels.manage', 'settings.view', 'settings.manage']
        WHEN 'supervisor' THEN ARRAY['sessions.view', 'sessions.manage', 'messages.send', 'messages.view',
            'contacts.view', 'contacts.manage', 'contacts.export', 'pipelines.view', 'pipelines.manage',
            'campaigns.view', 'campaigns.manage', 'sequences.view', 'sequences.manage', 'analytics.view',
            'analytics.export', 'members.view', 'channels.view', 'settings.view']
        WHEN 'agent' THEN ARRAY['sessions.view', 'sessions.manage', 'messages.send', 'messages.view', 'contacts.view',
            'contacts.manage', 'pipelines.view', 'campaigns.view', 'sequences.view', 'analytics.view',
            'members.view', 'channels.view', 'settings.view']
        WHEN 'viewer' THEN ARRAY['sessions.view', 'messages.view', 'contacts.view', 'pipelines.view',
            'campaigns.view', 'sequences.view']
    END
$$;
COMMENT ON FUNCTION ventros.project_role_permissions(text) IS
    'The permissions a project role holds (billing.view and billing.manage belong to no project role)';

-- Locks the project row (serialising membership changes of one project),
-- then counts its admins.  Two statements on purpose: under READ COMMITTED
-- the count must take its snapshot after the lock is granted, so that it
-- sees the demotion that the lock waited for.
CREATE FUNCTION ventros.lock_project_admins(project_id uuid) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    admins integer;
BEGIN
    PERFORM 1 FROM ventros.projects p
    WHERE p.tenant_id = ventros.require_tenant() AND p.id = lock_project_admins.project_id FOR UPDATE;
    SELECT count(*) INTO admins FROM ventros.project_members m
    WHERE m.tenant_id = ventros.require_tenant() AND m.project_id = lock_project_admins.project_id AND m.role = 'admin';
    RETURN admins;
END
$$;
COMMENT ON FUNCTION ventros.lock_project_admins(uuid) IS
    'Locks a project row (serialising membership changes of the project) and then counts its admins';

CREATE FUNCTION ventros.invite_project_member(agent_id text, role text, project_id uuid DEFAULT NULL)
RETURNS ventros.project_members
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.project_members;
BEGIN
    IF agent_id IS NULL THEN
        RAISE EXCEPTION 'member agent_id must not be null' USING ERRCODE = '23502';
    END IF;
    PERFORM ventros.require_value(role, ARRAY['admin', 'supervisor', 'agent', 'viewer'], 'project role');
    INSERT INTO ventros.project_members (project_id, agent_id, role, invited_by)
    VALUES (coalesce(project_id, ventros.default_project()), ventros.check_length(btrim(agent_id), 200, 'member id'),
            role, ventros.actor())
    RETURNING * INTO result;
    PERFORM ventros.emit('project_member.invited', 'project_member', result.id,
        jsonb_build_object('project_id', result.project_id, 'agent_id', result.agent_id, 'role', result.role,
                           'invited_by', result.invited_by), result.version);
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION '% is a member of the project already', agent_id USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.invite_project_member(text, text, uuid) IS
    'Adds a member with a role to a project (default project unless given); emits project_member.created and project_member.invited';

CREATE FUNCTION ventros.change_project_member_role(project_member_id uuid, expected_version integer, role text)
RETURNS ventros.project_members
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current ventros.project_members := ventros.get_project_member(project_member_id);
BEGIN
    PERFORM ventros.require_value(role, ARRAY['admin', 'supervisor', 'agent', 'viewer'], 'project role');
    IF current.agent_id = ventros.actor() THEN
        RAISE EXCEPTION 'members cannot change their own role' USING ERRCODE = '42501',
            HINT = 'Ask another admin of the project.';
    END IF;
    IF current.role = 'admin' AND role <> 'admin' AND ventros.lock_project_admins(current.project_id) <= 1 THEN
        RAISE EXCEPTION 'project % would lose its last admin', current.project_id USING ERRCODE = '23514',
            HINT = 'Make another member admin first.';
    END IF;
    RETURN ventros.change_row(NULL::ventros.project_members, 'project_member', project_member_id, expected_version,
                              jsonb_build_object('role', role));
END
$$;
COMMENT ON FUNCTION ventros.change_project_member_role(uuid, integer, text) IS
    'Changes a member''s role (never one''s own: 42501; never the last admin: 23514); emits project_member.role_changed';

CREATE FUNCTION ventros.remove_project_member(project_member_id uuid, expected_version integer)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current ventros.project_members := ventros.get_project_member(project_member_id);
BEGIN
    IF current.role = 'admin' AND ventros.lock_project_admins(current.project_id) <= 1 THEN
        RAISE EXCEPTION 'project % would lose its last admin', current.project_id USING ERRCODE = '23514',
            HINT = 'Make another member admin first.';
    END IF;
    PERFORM ventros.delete_row('ventros.project_members', 'project_member', project_member_id, expected_version);
    PERFORM ventros.emit('project_member.removed', 'project_member', project_member_id,
        jsonb_build_object('project_id', current.project_id, 'agent_id', current.agent_id, 'role', current.role),
        current.version + 1);
END
$$;
COMMENT ON FUNCTION ventros.remove_project_member(uuid, integer) IS
    'Removes a member (never the last admin: 23514); emits project_member.deleted and project_member.removed';

CREATE FUNCTION ventros.get_project_member(project_member_id uuid) RETURNS ventros.project_members
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.get_row(NULL::ventros.project_members, 'project member', project_member_id) $$;
COMMENT ON FUNCTION ventros.get_project_member(uuid) IS 'A live project member, or P0002';

CREATE FUNCTION ventros.list_project_members(project_id uuid DEFAULT NULL, agent_id text DEFAULT NULL,
                                             role text DEFAULT NULL)
RETURNS SETOF ventros.project_members
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m.* FROM ventros.project_members m
    WHERE m.tenant_id = ventros.require_tenant()
      AND (list_project_members.project_id IS NULL OR m.project_id = list_project_members.project_id)
      AND (list_project_members.agent_id IS NULL OR m.agent_id = list_project_members.agent_id)
      AND (list_project_members.role IS NULL OR m.role = list_project_members.role)
    ORDER BY m.invited_at, m.id
    LIMIT current_setting('ventros.max_page_size')::integer
$$;
COMMENT ON FUNCTION ventros.list_project_members(uuid, text, text) IS 'Members by project, member or role';

CREATE FUNCTION ventros.has_project_permission(project_id uuid, agent_id text, permission text) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM ventros.project_members m
                   WHERE m.tenant_id = ventros.require_tenant() AND m.project_id = has_project_permission.project_id
                     AND m.agent_id = has_project_permission.agent_id
                     AND has_project_permission.permission = ANY (ventros.project_role_permissions(m.role)))
$$;
COMMENT ON FUNCTION ventros.has_project_permission(uuid, text, text) IS 'Whether a member holds a permission in a project';

GRANT EXECUTE ON FUNCTION ventros.project_role_permissions(text), ventros.get_project_member(uuid),
    ventros.list_project_members(uuid, text, text), ventros.has_project_permission(uuid, text, text) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.lock_project_admins(uuid), ventros.invite_project_member(text, text, uuid),
    ventros.change_project_member_role(uuid, integer, text), ventros.remove_project_member(uuid, integer)
    TO ventros_admin;

-- Direct writes of project_member by tenant roles: the same as the first
-- command named, or refused naming them (docs/sql.md, "Direct writes").
SELECT ventros.register_writes('project_member', inserts => '{invite_project_member}', updates => '{change_project_member_role}', deletes => '{remove_project_member}');
