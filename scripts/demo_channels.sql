-- Demo channels for scripts/up (scripts/up.d/webhooks.sh): in the demo
-- tenant, one channel per inbound provider, ready to take signed webhooks
-- and to send through the provider stand-ins (scripts/standins.sh), and a
-- demo agent to reply as.  Idempotent: the first live channel of a type gets
-- the given config keys (keys it already has stay), made when there is none.
-- Prints one line per channel ("WAHA <id>", ...) and "AGENT <id>".
-- Variables: tenant, waha_secret, app_secret, verify_token, phone_number_id,
-- waba_id, ig_account_id, page_id, waha_url, waha_api_key, graph_url,
-- access_token.
\set ON_ERROR_STOP on
CREATE FUNCTION pg_temp.demo_channel(kind text, name text, wanted jsonb) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    ch ventros.channels;
BEGIN
    -- (a superuser's session: row-level security does not scope it to the tenant)
    SELECT * INTO ch FROM ventros.channels c
    WHERE c.tenant_id = ventros.current_tenant() AND c.type = kind AND c.deleted_at IS NULL ORDER BY c.created_at, c.id LIMIT 1;
    IF ch.id IS NULL THEN
        ch := ventros.create_channel(name, kind, config => wanted);
    ELSIF NOT ch.config @> wanted THEN
        ch := ventros.update_channel(ch.id, ch.version, jsonb_build_object('config', ch.config || wanted));
    END IF;
    RETURN ch.id;
END
$$;
-- the demo agent is the console user of scripts/demo.sql, when there is one
CREATE FUNCTION pg_temp.demo_agent(tenant text) RETURNS uuid
LANGUAGE sql AS $$
    SELECT coalesce((SELECT a.id FROM ventros.agents a
                     WHERE a.tenant_id = tenant AND a.email = format('agent@%s.example', tenant) AND a.deleted_at IS NULL),
                    (ventros.create_agent('Demo Agent', email => format('agent@%s.example', tenant),
                                          user_id => (SELECT u.id FROM ventros.users u
                                                      WHERE u.tenant_id = tenant AND u.email = format('agent@%s.example', tenant)))).id)
$$;
BEGIN;
SELECT set_config('ventros.tenant', :'tenant', true) \g /dev/null
SELECT 'WAHA', pg_temp.demo_channel('waha', 'WhatsApp (WAHA)',
    jsonb_build_object('webhook_secret', :'waha_secret', 'base_url', :'waha_url', 'session', 'default',
                       'api_key', :'waha_api_key'))
UNION ALL
SELECT 'WHATSAPP', pg_temp.demo_channel('whatsapp', 'Demo WhatsApp Cloud',
    jsonb_build_object('phone_number_id', :'phone_number_id', 'waba_id', :'waba_id', 'access_token', :'access_token',
                       'app_secret', :'app_secret', 'verify_token', :'verify_token', 'graph_base_url', :'graph_url'))
UNION ALL
SELECT 'INSTAGRAM', pg_temp.demo_channel('instagram', 'Demo Instagram',
    jsonb_build_object('ig_account_id', :'ig_account_id', 'access_token', :'access_token',
                       'app_secret', :'app_secret', 'verify_token', :'verify_token', 'graph_base_url', :'graph_url'))
UNION ALL
SELECT 'MESSENGER', pg_temp.demo_channel('messenger', 'Demo Messenger',
    jsonb_build_object('page_id', :'page_id', 'access_token', :'access_token',
                       'app_secret', :'app_secret', 'verify_token', :'verify_token', 'graph_base_url', :'graph_url'))
UNION ALL
SELECT 'AGENT', pg_temp.demo_agent(:'tenant');
COMMIT;
