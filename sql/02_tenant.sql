-- Tenancy: which tenant a transaction acts for (see src/tenant.c for the
-- rules), and binding logins to tenants.

CREATE FUNCTION ventros.current_tenant() RETURNS text
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'ventros_current_tenant';
COMMENT ON FUNCTION ventros.current_tenant() IS
    'The tenant this transaction acts for: the login''s bound tenant, else (trusted sessions only) ventros.tenant or the JWT tenant_id claim; NULL for none';

CREATE FUNCTION ventros.actor() RETURNS text
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'ventros_actor';
COMMENT ON FUNCTION ventros.actor() IS
    'Who acts: the JWT sub claim of a trusted session (the front''s), else the session user';

CREATE FUNCTION ventros.session_is_trusted() RETURNS boolean
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'ventros_session_is_trusted';
COMMENT ON FUNCTION ventros.session_is_trusted() IS
    'True when the session user may choose the acting tenant (superuser, authenticator or platform admin, not bound)';

CREATE FUNCTION ventros.include_deleted() RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT pg_catalog.current_setting('ventros.include_deleted')::boolean $$;
COMMENT ON FUNCTION ventros.include_deleted() IS
    'Whether queries show soft-deleted rows (setting ventros.include_deleted)';

CREATE FUNCTION ventros.require_tenant() RETURNS text
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'ventros_require_tenant';
COMMENT ON FUNCTION ventros.require_tenant() IS
    'The acting tenant, or 42501 when there is none';

CREATE FUNCTION ventros.require_platform_admin() RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- The role the session acts as (its SET ROLE, else its login): the
    -- HTTP front's login may hold ventros_platform_admin so that a platform
    -- administrator's token can SET ROLE to it, and then only a request
    -- running as that role is one (a tenant's runs as its tenant role).
    IF NOT ventros.session_is_trusted()
       OR NOT (pg_has_role(CASE WHEN current_setting('role') = 'none' THEN session_user
                                ELSE current_setting('role')::name END,
                           'ventros_platform_admin', 'MEMBER')
               OR (SELECT rolsuper FROM pg_roles WHERE rolname = session_user)) THEN
        RAISE EXCEPTION 'permission denied: only platform administrators may do this'
            USING ERRCODE = '42501',
                  DETAIL = pg_catalog.format('Role "%s" is not a member of ventros_platform_admin.',
                                             CASE WHEN current_setting('role') = 'none' THEN session_user
                                                  ELSE current_setting('role')::name END);
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.require_platform_admin() IS
    'Raises 42501 unless the session user is a superuser, or the role the session acts as (its SET ROLE, else its login) is a member of ventros_platform_admin';

-- bind_login: create or update a login that acts for one tenant only, with one
-- of the tenant roles.  SECURITY DEFINER because ventros.bound_tenant is a
-- superuser setting; it re-checks that the caller is a platform administrator.
CREATE FUNCTION ventros.bind_login(login name, tenant text, tenant_role name, password text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old_role name;
BEGIN
    PERFORM ventros.require_platform_admin();
    IF tenant_role NOT IN ('ventros_admin', 'ventros_agent', 'ventros_viewer') THEN
        RAISE EXCEPTION 'unknown tenant role "%"', tenant_role
            USING ERRCODE = '22023', HINT = 'Use ventros_admin, ventros_agent or ventros_viewer.';
    END IF;
    IF tenant IS NULL OR tenant !~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$' THEN
        RAISE EXCEPTION 'malformed tenant id "%"', tenant USING ERRCODE = '22023';
    END IF;
    IF login LIKE 'ventros\_%' THEN
        RAISE EXCEPTION 'cannot bind Ventros'' own role "%"', login USING ERRCODE = '42501';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = login AND (rolsuper OR rolcreaterole OR rolbypassrls)) THEN
        RAISE EXCEPTION 'cannot bind privileged role "%"', login USING ERRCODE = '42501',
            DETAIL = 'Superusers and roles with CREATEROLE or BYPASSRLS would escape the binding.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = login) THEN
        EXECUTE format('CREATE ROLE %I LOGIN', login);
    END IF;
    IF password IS NOT NULL THEN
        EXECUTE format('ALTER ROLE %I PASSWORD %L', login, password);
    END IF;
    FOR old_role IN
        SELECT r.rolname FROM pg_auth_members m
        JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
        WHERE u.rolname = login AND r.rolname IN ('ventros_admin', 'ventros_agent', 'ventros_viewer')
    LOOP
        EXECUTE format('REVOKE %I FROM %I', old_role, login);
    END LOOP;
    EXECUTE format('GRANT %I TO %I', tenant_role, login);
    EXECUTE format('ALTER ROLE %I IN DATABASE %I SET ventros.bound_tenant = %L',
                   login, current_database(), tenant);
END
$$;
COMMENT ON FUNCTION ventros.bind_login(name, text, name, text) IS
    'Creates or updates a login bound to one tenant with one tenant role (platform administrators only)';

GRANT EXECUTE ON FUNCTION ventros.current_tenant(), ventros.actor(), ventros.session_is_trusted(),
    ventros.include_deleted(), ventros.require_tenant()
    TO ventros_viewer, ventros_anon, ventros_authenticator, ventros_platform_admin;
GRANT EXECUTE ON FUNCTION ventros.require_platform_admin(), ventros.bind_login(name, text, name, text)
    TO ventros_platform_admin;
