-- Aggregate 24, Project (core): the customer workspace.  Its tenant_id is the
-- tenant; a tenant may hold several projects, and its first one is created
-- with the tenant (ventros.create_tenant).

CREATE TABLE ventros.projects (
    id                      uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id               text        NOT NULL,
    version                 integer     NOT NULL DEFAULT 1,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    deleted_at              timestamptz,
    user_id                 uuid,
    billing_account_id      uuid,
    name                    text        NOT NULL,
    description             text,
    configuration           jsonb       NOT NULL DEFAULT '{}',
    active                  boolean     NOT NULL DEFAULT true,
    session_timeout_minutes integer     NOT NULL DEFAULT 30,
    agent_assignment        jsonb,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT projects_tenant_id_format CHECK (tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$'),
    CONSTRAINT projects_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT projects_session_timeout_range CHECK (session_timeout_minutes BETWEEN 1 AND 1440),
    CONSTRAINT projects_configuration_object CHECK (jsonb_typeof(configuration) = 'object')
);
CREATE UNIQUE INDEX projects_id ON ventros.projects (id);
COMMENT ON TABLE ventros.projects IS 'Project: a customer workspace; tenant_id is the tenant';

SELECT ventros.register_aggregate('project', 'ventros.projects', 'core',
    state_column => 'active',
    transitions => '[
        {"from": null, "to": "true"},
        {"from": null, "to": "false"},
        {"from": "false", "to": "true", "event": "project.activated", "description": "A project was activated."},
        {"from": "true", "to": "false", "event": "project.deactivated", "description": "A project was deactivated."}
    ]',
    privileges => '{"ventros_viewer": ["SELECT"], "ventros_admin": ["INSERT", "UPDATE", "DELETE"]}',
    description => 'A customer workspace; the tenant');

-- The tenant's default project: its oldest live one.
CREATE FUNCTION ventros.default_project() RETURNS uuid
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
-- (PL/pgSQL: a column default called on every insert keeps its plan)
AS $$
BEGIN
    RETURN (SELECT id FROM ventros.projects
             WHERE tenant_id = ventros.require_tenant() AND deleted_at IS NULL
             ORDER BY created_at, id LIMIT 1);
END
$$;
COMMENT ON FUNCTION ventros.default_project() IS 'The acting tenant''s default (oldest live) project';

CREATE FUNCTION ventros.create_tenant(tenant_id text, project_name text, description text DEFAULT NULL)
RETURNS ventros.projects
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- the tenant chosen inside is restored when the function returns
SET ventros.tenant = ''
AS $$
DECLARE
    result ventros.projects;
BEGIN
    PERFORM ventros.require_platform_admin();
    IF tenant_id IS NULL OR tenant_id !~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$' THEN
        RAISE EXCEPTION 'malformed tenant id "%"', left(tenant_id, 64)
            USING ERRCODE = '22023', DETAIL = 'A tenant id has 1 to 128 letters, digits, ".", "_" or "-".';
    END IF;
    PERFORM set_config('ventros.tenant', tenant_id, true);
    IF EXISTS (SELECT 1 FROM ventros.projects p WHERE p.tenant_id = create_tenant.tenant_id) THEN
        RAISE EXCEPTION 'tenant "%" already exists', tenant_id USING ERRCODE = '23505';
    END IF;
    INSERT INTO ventros.projects (tenant_id, name, description)
    VALUES (tenant_id, ventros.check_length(project_name, 200, 'project name'), description)
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.create_tenant(text, text, text) IS
    'Creates a tenant with its first project (platform administrators only); emits project.created';

CREATE FUNCTION ventros.create_project(name text, description text DEFAULT NULL,
                                       session_timeout_minutes integer DEFAULT 30,
                                       configuration jsonb DEFAULT '{}')
RETURNS ventros.projects
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO ventros.projects (tenant_id, name, description, session_timeout_minutes, configuration)
    VALUES (ventros.require_tenant(), ventros.check_length(name, 200, 'project name'), description,
            session_timeout_minutes, coalesce(configuration, '{}'))
    RETURNING *
$$;
COMMENT ON FUNCTION ventros.create_project(text, text, integer, jsonb) IS
    'Creates another project of the acting tenant; emits project.created';

CREATE FUNCTION ventros.update_project(project_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.projects
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.apply_changes(NULL::ventros.projects, 'project', project_id, expected_version, changes,
        ARRAY['name', 'description', 'configuration', 'active', 'session_timeout_minutes', 'agent_assignment'])
$$;
COMMENT ON FUNCTION ventros.update_project(uuid, integer, jsonb) IS
    'Changes fields of a project; emits project.updated, or project.activated / project.deactivated when active changes';

CREATE FUNCTION ventros.delete_project(project_id uuid, expected_version integer DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.delete_row('ventros.projects', 'project', project_id, expected_version) $$;
COMMENT ON FUNCTION ventros.delete_project(uuid, integer) IS 'Soft-deletes a project; emits project.deleted';

CREATE FUNCTION ventros.get_project(project_id uuid) RETURNS ventros.projects
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.get_row(NULL::ventros.projects, 'project', project_id) $$;
COMMENT ON FUNCTION ventros.get_project(uuid) IS 'A project of the acting tenant, or P0002';

CREATE FUNCTION ventros.list_projects() RETURNS SETOF ventros.projects
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM ventros.projects WHERE tenant_id = ventros.require_tenant() ORDER BY created_at, id
$$;
COMMENT ON FUNCTION ventros.list_projects() IS 'The acting tenant''s live projects, oldest first';

GRANT EXECUTE ON FUNCTION ventros.default_project(), ventros.get_project(uuid), ventros.list_projects()
    TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.create_project(text, text, integer, jsonb), ventros.update_project(uuid, integer, jsonb),
    ventros.delete_project(uuid, integer)
    TO ventros_admin;
GRANT EXECUTE ON FUNCTION ventros.create_tenant(text, text, text) TO ventros_platform_admin;

-- Direct writes of project by tenant roles: the same as the first
-- command named, or refused naming them (docs/sql.md, "Direct writes").
SELECT ventros.register_writes('project', inserts => '{create_project}', updates => '{update_project}', deletes => '{delete_project}',
    direct => '{UPDATE,DELETE}',
    update_columns => '{name,description,configuration,active,session_timeout_minutes,agent_assignment}');
