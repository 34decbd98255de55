-- Tenancy: the acting tenant, who may choose it, and the spoofing paths a
-- tenant-bound login might try.  Each must be refused with 42501.
BEGIN;
SELECT plan(32);

SELECT ventros.create_tenant('ten_a', 'Tenant A');
SELECT ventros.create_tenant('ten_b', 'Tenant B');
SET LOCAL ventros.tenant = 'ten_b';
SELECT ventros.create_contact('Bea of B', phone => '+5511911110000');
SET LOCAL ventros.tenant = 'ten_a';
SELECT ventros.create_contact('Ana of A', phone => '+5511922220000');
SET LOCAL ventros.tenant = '';

CREATE ROLE vt_bound LOGIN;
GRANT ventros_agent TO vt_bound;
CREATE ROLE vt_unbound LOGIN;
GRANT ventros_agent TO vt_unbound;
CREATE ROLE vt_front LOGIN;
GRANT ventros_authenticator TO vt_front;

-- A tenant-bound login (ALTER ROLE vt_bound SET ventros.bound_tenant = 'ten_a').
SELECT results_eq(
    $$SELECT unnest(ventros_test.run_as_login('vt_bound', 'ten_a', ARRAY[
        'SELECT ventros.current_tenant()',
        'SELECT count(*) FROM ventros.contacts',
        'SELECT string_agg(name, '','') FROM ventros.contacts'
    ]))$$,
    $$VALUES ('ten_a'), ('1'), ('Ana of A')$$,
    'a bound login acts for its tenant and sees only its rows');

SELECT matches(r, '^ERROR 42501', 'bound login: ' || s || ' is refused with 42501')
FROM unnest(ARRAY[
        'SET ventros.tenant = ''ten_b''',
        'SELECT set_config(''ventros.tenant'', ''ten_b'', false)',
        'SET LOCAL ventros.tenant = ''ten_b''',
        'SET ventros.bound_tenant = ''ten_b''',
        'RESET ventros.bound_tenant',
        'SELECT set_config(''ventros.bound_tenant'', '''', true)',
        'SET ROLE ventros_admin',
        'SET ROLE ventros_platform_admin',
        'SET ROLE ventros_authenticator',
        'SELECT ventros.create_tenant(''evil'', ''Evil'')',
        'SELECT ventros.bind_login(''vt_bound'', ''ten_b'', ''ventros_admin'')',
        'INSERT INTO ventros.contacts (tenant_id, project_id, name) SELECT ''ten_b'', id, ''Intruder'' FROM ventros.projects LIMIT 1'
    ]) WITH ORDINALITY AS s(s, n)
    CROSS JOIN LATERAL unnest(ventros_test.run_as_login('vt_bound', 'ten_a', ARRAY[s])) AS r;

SELECT is(
    (ventros_test.run_as_login('vt_bound', 'ten_a', ARRAY[
        'SELECT set_config(''request.jwt.claims'', ''{"tenant_id": "ten_b", "role": "ventros_admin"}'', false)',
        'SELECT ventros.current_tenant()']))[2] ~ '^ERROR 42501',
    true, 'bound login: a crafted JWT claim for another tenant is refused with 42501');

SELECT is(
    (ventros_test.run_as_login('vt_bound', 'ten_a', ARRAY[
        'SELECT set_config(''request.jwt.claims'', ''{"tenant_id": "ten_b"}'', false)',
        'SELECT count(*) FROM ventros.contacts']))[2] ~ '^ERROR 42501',
    true, 'bound login: no row is read under a crafted claim');

SELECT is(
    (ventros_test.run_as_login('vt_bound', 'ten_a', ARRAY[
        'SET ventros.tenant = ''ten_a''', 'SELECT ventros.current_tenant()'])),
    ARRAY['NULL', 'ten_a'], 'bound login: naming its own tenant is harmless');

SELECT is(
    (ventros_test.run_as_login('vt_bound', 'ten_a', ARRAY[
        'SET ROLE ventros_viewer', 'SELECT ventros.current_tenant()', 'SELECT count(*) FROM ventros.contacts'])),
    ARRAY['NULL', 'ten_a', '1'], 'bound login: SET ROLE to a role it holds keeps its tenant');

-- An unbound, untrusted login acts for nobody.
SELECT is(
    ventros_test.run_as_login('vt_unbound', NULL, ARRAY[
        'SELECT coalesce(ventros.current_tenant(), ''none'')',
        'SELECT count(*) FROM ventros.contacts']),
    ARRAY['none', '0'], 'an unbound login has no tenant and sees nothing');
SELECT matches((ventros_test.run_as_login('vt_unbound', NULL, ARRAY['SET ventros.tenant = ''ten_a''']))[1],
    '^ERROR 42501', 'an unbound login cannot choose a tenant by SET');
SELECT matches((ventros_test.run_as_login('vt_unbound', NULL, ARRAY[
        'SELECT set_config(''request.jwt.claims'', ''{"tenant_id": "ten_a"}'', false)',
        'SELECT ventros.current_tenant()']))[2],
    '^ERROR 42501', 'an unbound login cannot choose a tenant by a claim');
SELECT matches((ventros_test.run_as_login('vt_unbound', NULL, ARRAY[
        'SELECT ventros.create_contact(''Nobody'')']))[1],
    '^ERROR 42501', 'an unbound login cannot write: no acting tenant');

-- The HTTP front's login (ventros_authenticator) chooses the tenant from claims.
SELECT is(
    ventros_test.run_as_login('vt_front', NULL, ARRAY[
        'SELECT set_config(''request.jwt.claims'', ''{"tenant_id": "ten_b", "sub": "user-7"}'', true)',
        'SET LOCAL ROLE ventros_agent',
        'SELECT ventros.current_tenant()',
        'SELECT string_agg(name, '','') FROM ventros.contacts',
        'SELECT ventros.actor()']),
    ARRAY['{"tenant_id": "ten_b", "sub": "user-7"}', 'NULL', 'ten_b', 'Bea of B', 'user-7'],
    'the authenticator acts for the tenant of the JWT claims, as the subject');
SELECT matches((ventros_test.run_as_login('vt_front', NULL, ARRAY[
        'SELECT set_config(''request.jwt.claims'', ''{bad json'', true)', 'SELECT ventros.current_tenant()']))[2],
    '^ERROR 22P02', 'malformed claims are refused with 22P02');
SELECT matches((ventros_test.run_as_login('vt_front', NULL, ARRAY[
        'SET LOCAL ROLE ventros_agent', 'SELECT ventros.create_tenant(''x'', ''X'')']))[2],
    '^ERROR 42501', 'the authenticator acting as an agent cannot create tenants');

-- Trusted sessions choose with ventros.tenant; events are per tenant too.
SET LOCAL ventros.tenant = 'ten_b';
SELECT is(ventros.current_tenant(), 'ten_b', 'a superuser chooses the tenant with SET LOCAL ventros.tenant');
SELECT is(ventros_test.run_as('ventros_viewer', 'ten_b',
    $$SELECT string_agg(DISTINCT tenant_id, ',') FROM ventros.outbox$$), 'ten_b',
    'a viewer reads only its tenant''s events');
SELECT is(ventros_test.run_as('ventros_admin', 'ten_a',
    $$SELECT count(*) FROM ventros.contacts WHERE tenant_id = 'ten_b'$$), '0',
    'an admin of one tenant reads nothing of another even when asking for it');
SELECT matches(ventros_test.run_as('ventros_admin', 'ten_a',
    $$INSERT INTO ventros.outbox (tenant_id, seq, event_id, event_type, aggregate_type, aggregate_id, payload, occurred_at)
      VALUES ('ten_a', 1, gen_random_uuid(), 'contact.created', 'contact', gen_random_uuid(), '{}', now())$$),
    '^ERROR 42501', 'nobody but the engine writes events');
SELECT matches(ventros_test.run_as('ventros_admin', NULL, $$SELECT ventros.create_contact('No tenant')$$),
    '^ERROR 42501', 'writing without an acting tenant is refused with 42501');

-- Every Ventros table has forced row-level security.
SELECT is(
    (SELECT count(*)::int FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'ventros' AND c.relkind = 'r' AND NOT (c.relrowsecurity AND c.relforcerowsecurity)),
    0, 'every table in schema ventros has row-level security enabled and forced');
-- Every SECURITY DEFINER function pins its search_path.
SELECT is(
    (SELECT count(*)::int FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = 'ventros' AND p.prosecdef
       AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%')),
    0, 'every SECURITY DEFINER function pins its search_path');
SELECT is(
    (SELECT count(*)::int FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = 'ventros' AND has_function_privilege('public', p.oid, 'EXECUTE')),
    0, 'no Ventros function is executable by PUBLIC');

SELECT * FROM finish();
ROLLBACK;
