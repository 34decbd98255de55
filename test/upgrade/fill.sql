-- Data for the upgrade and dump tests, written through the commands of the
-- oldest supported release (0.1.0): two tenants, channels, contacts, messages
-- in and out, a note, a pipeline.  Only functions that exist in 0.1.0.
\set ON_ERROR_STOP on
SELECT ventros.create_tenant(t, initcap(t) || ' Ltd') FROM unnest(ARRAY['up_a', 'up_b']) t;

CREATE FUNCTION pg_temp.fill(tenant text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    ch uuid;
    c record;
BEGIN
    PERFORM set_config('ventros.tenant', tenant, true);
    SELECT id INTO ch FROM ventros.create_channel('WhatsApp ' || tenant, 'waha',
        config => jsonb_build_object('base_url', 'http://127.0.0.1:9', 'session', 'default'));
    PERFORM ventros.create_contact(format('%s contact %s', tenant, i),
                                   phone => '+55119' || lpad((i * 7919 + length(tenant))::text, 8, '0'),
                                   email => format('c%s@%s.example', i, tenant),
                                   tags => CASE WHEN i % 3 = 0 THEN ARRAY['vip'] ELSE '{}' END)
    FROM generate_series(1, 12) i;
    FOR c IN SELECT id, phone FROM ventros.contacts ORDER BY email LIMIT 6 LOOP
        PERFORM ventros.receive_message(ch, substr(c.phone, 2) || '@c.us', 'hello from ' || c.phone,
                                        channel_message_id => 'in-' || c.id);
    END LOOP;
END
$$;
BEGIN; SELECT pg_temp.fill('up_a'); COMMIT;
BEGIN; SELECT pg_temp.fill('up_b'); COMMIT;
BEGIN;
SET LOCAL ventros.tenant = 'up_a';
SELECT ventros.update_contact(c.id, c.version, '{"tags": ["updated"]}')
FROM (SELECT id, version FROM ventros.contacts WHERE tenant_id = 'up_a' ORDER BY email LIMIT 3) c;
COMMIT;
