-- Ventros install script, part 0: roles and the schema's base privileges.
--
-- Roles are cluster-wide and outlive the extension; they are created only when
-- missing.  The hierarchy is ventros_admin > ventros_agent > ventros_viewer by
-- membership, so a grant to the viewer reaches agents and admins too.
--
--   ventros_admin, ventros_agent, ventros_viewer, ventros_anon
--       what a tenant's users may do: GRANTs per table and function.
--   ventros_authenticator
--       the HTTP front's login group (NOINHERIT, as PostgREST's authenticator):
--       it may SET ROLE to the four roles above and choose the acting tenant
--       from the request's JWT claims.
--   ventros_platform_admin
--       operators: may choose any tenant (SET LOCAL ventros.tenant), create
--       tenants and bind logins to them.

DO $roles$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['ventros_viewer', 'ventros_agent', 'ventros_admin',
                                     'ventros_anon', 'ventros_authenticator',
                                     'ventros_platform_admin']
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) role_name) THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', role_name);
        END IF;
    END LOOP;
END
$roles$;

ALTER ROLE ventros_authenticator NOINHERIT;
GRANT ventros_viewer TO ventros_agent;
GRANT ventros_agent TO ventros_admin;
GRANT ventros_admin, ventros_agent, ventros_viewer, ventros_anon TO ventros_authenticator;
GRANT ventros_admin TO ventros_platform_admin;

GRANT USAGE ON SCHEMA ventros TO ventros_admin, ventros_agent, ventros_viewer, ventros_anon,
    ventros_authenticator, ventros_platform_admin;

COMMENT ON SCHEMA ventros IS 'Ventros: multi-channel CRM — aggregates, commands, queries and the event outbox';
