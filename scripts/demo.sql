-- Demo data for scripts/up: two tenants with a channel and 20 contacts each,
-- a login bound to the demo tenant, and the demo tenant's console user
-- (agent@<tenant>.example, the same password; scripts/demo_channels.sql
-- makes it the demo agent).  Idempotent: run it as often as you like.
\set ON_ERROR_STOP on

SELECT ventros.create_tenant(t, initcap(t) || ' Inc.')
FROM unnest(ARRAY[:'demo_tenant', :'other_tenant']) t
WHERE NOT EXISTS (SELECT 1 FROM ventros.projects p WHERE p.tenant_id = t);

CREATE FUNCTION pg_temp.seed(tenant text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('ventros.tenant', tenant, true);
    -- (run by a superuser, whom row-level security does not scope to the tenant)
    IF NOT EXISTS (SELECT 1 FROM ventros.channels c WHERE c.tenant_id = tenant) THEN
        -- the demo tenant's sends go to the WAHA stand-in (scripts/demo_channels.sql sets
        -- base_url); the other tenant's stay queued, with no provider to send them
        PERFORM ventros.create_channel('WhatsApp (WAHA)', 'waha', config => jsonb_build_object('session', 'default'));
    END IF;
    PERFORM ventros.create_contact(format('%s contact %s', initcap(tenant), lpad(i::text, 2, '0')),
                                   phone => '+55119' || lpad((i * 7919 + length(tenant))::text, 8, '0'),
                                   email => format('contact%s@%s.example', i, tenant),
                                   tags => CASE WHEN i % 3 = 0 THEN ARRAY['vip'] ELSE '{}' END)
    FROM generate_series(1, 20) i
    WHERE NOT EXISTS (SELECT 1 FROM ventros.contacts c
                      WHERE c.tenant_id = tenant AND c.email = format('contact%s@%s.example', i, tenant));
END
$$;

BEGIN;
SELECT pg_temp.seed(:'demo_tenant');
COMMIT;
BEGIN;
SELECT pg_temp.seed(:'other_tenant');
COMMIT;

SELECT ventros.bind_login(:'demo_login', :'demo_tenant', 'ventros_agent', :'demo_password');

BEGIN;
SELECT set_config('ventros.tenant', :'demo_tenant', true) \g /dev/null
SELECT ventros.create_user('Demo Agent', format('agent@%s.example', :'demo_tenant'), :'demo_password', 'user')
WHERE NOT EXISTS (SELECT 1 FROM ventros.users u
                  WHERE u.tenant_id = :'demo_tenant' AND u.email = format('agent@%s.example', :'demo_tenant')) \g /dev/null
COMMIT;
