-- The actions send_template and call_webhook, run by the executor: the
-- provider request a template send writes (the WhatsApp Cloud API's template
-- format, channels.md), and the signed delivery a webhook call writes for the
-- dispatcher (docs/webhooks.md); what makes either fail its run.
BEGIN;
SELECT plan(23);
SELECT ventros.create_tenant('t_acts', 'Actions');
SELECT ventros.create_tenant('t_acts2', 'Other');
SET LOCAL ventros.tenant = 't_acts';
CREATE TEMP TABLE ids (name text PRIMARY KEY, id uuid);
GRANT ALL ON ids TO PUBLIC;
CREATE FUNCTION pg_temp.id(n text) RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM ids WHERE name = n $$;
-- one rule at a time: the others are disabled
CREATE FUNCTION pg_temp.rule(n text, actions jsonb) RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT id, version FROM ventros.automations WHERE enabled LOOP
        PERFORM ventros.set_automation_enabled(r.id, r.version, false);
    END LOOP;
    INSERT INTO ids SELECT n, id FROM ventros.create_automation(n, 'message.received', actions, automation_type => 'event');
    RETURN pg_temp.id(n);
END
$$;
-- an inbound message on the Cloud channel, then the executor; the rule's run
CREATE FUNCTION pg_temp.run(n text, sender text) RETURNS ventros.automation_runs LANGUAGE plpgsql AS $$
DECLARE
    m uuid;
    result ventros.automation_runs;
BEGIN
    m := (ventros.receive_message(pg_temp.id('wa'), sender, 'where is my order?')).id;
    PERFORM ventros_test.run_automations();
    INSERT INTO ids VALUES (n || '_event', (SELECT event_id FROM ventros.outbox WHERE aggregate_id = m AND event_type = 'message.created'))
        ON CONFLICT (name) DO UPDATE SET id = EXCLUDED.id;
    SELECT * INTO result FROM ventros.automation_runs WHERE automation_id = pg_temp.id(n) AND event_id = pg_temp.id(n || '_event');
    RETURN result;
END
$$;

INSERT INTO ids SELECT 'wa', id FROM ventros.create_channel('Cloud', 'whatsapp', config => '{"phone_number_id": "106540352242922",
    "waba_id": "102290129340398", "access_token": "EAAG-token", "graph_base_url": "https://graph.example.com", "graph_version": "v23.0"}');
SELECT ventros.upsert_whatsapp_template(pg_temp.id('wa'), 'order_update', 'pt_BR', 'APPROVED',
    '[{"type": "BODY", "text": "Olá {{1}}, seu pedido {{2}} saiu."}]');

-- ---- send_template
SELECT pg_temp.rule('tpl', '[{"type": "send_template", "params": {"template_name": "order_update", "template_language": "pt_BR",
    "template_components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "#42"}]}]}}]');
INSERT INTO ids SELECT 'tpl_run', id FROM pg_temp.run('tpl', '+5511900000301');
SELECT is((SELECT outcome FROM ventros.automation_runs WHERE id = pg_temp.id('tpl_run')), 'executed', 'send_template: executed');
INSERT INTO ids SELECT 'tpl_msg', (actions_done->0->>'message_id')::uuid FROM ventros.automation_runs WHERE id = pg_temp.id('tpl_run');
SELECT is((SELECT text || ' | ' || source || ' | ' || status FROM ventros.messages WHERE id = pg_temp.id('tpl_msg')),
          'Olá Ana, seu pedido #42 saiu. | trigger | queued', 'a message with the template''s text, source trigger, queued');
SELECT is((SELECT url FROM ventros.http_requests WHERE correlation_id = pg_temp.id('tpl_msg') AND purpose = 'message.send'),
          'https://graph.example.com/v23.0/106540352242922/messages', 'the provider request goes to the channel''s Cloud API number');
SELECT is((SELECT convert_from(body, 'UTF8')::jsonb FROM ventros.http_requests WHERE correlation_id = pg_temp.id('tpl_msg') AND purpose = 'message.send'),
          '{"messaging_product": "whatsapp", "recipient_type": "individual", "to": "5511900000301", "type": "template",
            "template": {"name": "order_update", "language": {"code": "pt_BR"},
                         "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "#42"}]}]}}'::jsonb,
          'in the Cloud API''s template format');
-- what fails the run (and sends nothing)
SELECT pg_temp.rule('tpl_unknown', '[{"type": "send_template", "params": {"template_name": "nope", "template_language": "pt_BR"}}]');
SELECT is((pg_temp.run('tpl_unknown', '+5511900000302')).error,
          'P0002: WhatsApp template nope (pt_BR) not found on channel ' || pg_temp.id('wa'), 'an unknown template fails the run');
SELECT pg_temp.rule('tpl_params', '[{"type": "send_template", "params": {"template_name": "order_update", "template_language": "pt_BR",
    "template_components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}]}}]');
SELECT is((pg_temp.run('tpl_params', '+5511900000303')).error, '22023: template order_update body expects 2 parameter(s), got 1',
          'missing variables fail the run');
SELECT pg_temp.rule('tpl_noname', '[{"type": "send_template", "params": {"template_language": "pt_BR"}}]');
SELECT is((pg_temp.run('tpl_noname', '+5511900000304')).error, '23502: action send_template needs params.template_name', 'no template name');
SELECT is((SELECT count(*)::integer FROM ventros.messages m JOIN ventros.contacts c ON c.id = m.contact_id
            WHERE m.from_me AND c.phone IN ('+5511900000302', '+5511900000303', '+5511900000304')), 0, 'nothing sent by a failed run');

-- ---- call_webhook
INSERT INTO ids SELECT 'sub', id FROM ventros.create_webhook_subscription('Hook', 'https://hooks.example.com/ventros', '{custom.never}',
                                                                           secret => 'whsec_actions_0123456789');
INSERT INTO ids SELECT 'nosecret', id FROM ventros.create_webhook_subscription('No secret', 'https://hooks.example.com/plain', '{custom.never}');
UPDATE ventros.webhook_subscriptions SET secret = NULL, version = version WHERE id = pg_temp.id('nosecret');   -- as a row of 0.1.0 could be
SELECT pg_temp.rule('hook', jsonb_build_array(jsonb_build_object('type', 'call_webhook',
                                                                 'params', jsonb_build_object('webhook_subscription_id', pg_temp.id('sub')))));
INSERT INTO ids SELECT 'hook_run', id FROM pg_temp.run('hook', '+5511900000305');
SELECT is((SELECT outcome FROM ventros.automation_runs WHERE id = pg_temp.id('hook_run')), 'executed', 'call_webhook: executed');
INSERT INTO ids SELECT 'delivery', (actions_done->0->>'delivery_id')::uuid FROM ventros.automation_runs WHERE id = pg_temp.id('hook_run');
SELECT is((SELECT subscription_id FROM ventros.webhook_deliveries WHERE id = pg_temp.id('delivery')), pg_temp.id('sub'),
          'a delivery of the subscription');
SELECT is((SELECT event_id FROM ventros.webhook_deliveries WHERE id = pg_temp.id('delivery')), pg_temp.id('hook_event'), 'of the triggering event');
INSERT INTO ids SELECT 'hook_req', request_id FROM ventros.webhook_deliveries WHERE id = pg_temp.id('delivery');
SELECT is((SELECT method || ' ' || url || ' ' || purpose || ' ' || status FROM ventros.http_requests WHERE id = pg_temp.id('hook_req')),
          'POST https://hooks.example.com/ventros webhook.delivery pending', 'a request of the dispatcher, pending');
SELECT is((SELECT jsonb_build_object('type', b->'type', 'id', b->'id', 'automation_id', b->'data'->'automation_id', 'text', b->'data'->'text')
             FROM (SELECT convert_from(body, 'UTF8')::jsonb AS b FROM ventros.http_requests WHERE id = pg_temp.id('hook_req')) x),
          jsonb_build_object('type', 'com.ventros.message.created', 'id', pg_temp.id('hook_event'), 'automation_id', pg_temp.id('hook'),
                             'text', 'where is my order?'),
          'a CloudEvent of the triggering event, with the rule''s id in its data');
-- the signature the dispatcher sends with each attempt, checked independently (pgcrypto)
CREATE TEMP TABLE sig AS
    SELECT h->>'X-Ventros-Signature' AS header, r.body, h->>'X-Ventros-Delivery-Id' AS delivery
      FROM ventros.http_requests r, ventros.webhook_attempt_headers(r) h WHERE r.id = pg_temp.id('hook_req');
SELECT is((SELECT delivery FROM sig), pg_temp.id('delivery')::text, 'the attempt names its delivery');
SELECT is((SELECT substring(header FROM ',v1=([0-9a-f]{64})$') FROM sig),
          (SELECT encode(hmac(convert_to(substring(header FROM '^t=([0-9]+),'), 'UTF8') || '\x2e'::bytea || body,
                              'whsec_actions_0123456789', 'sha256'), 'hex') FROM sig),
          'signed: v1 = HMAC-SHA256(secret, "<t>.<body>")');
SELECT ok((SELECT abs(substring(header FROM '^t=([0-9]+),')::bigint - extract(epoch FROM now())::bigint) <= 300 FROM sig), 't is now');
-- params.body replaces the event's payload
SELECT pg_temp.rule('hook_body', jsonb_build_array(jsonb_build_object('type', 'call_webhook',
    'params', jsonb_build_object('webhook_subscription_id', pg_temp.id('sub'), 'body', '{"order": 42}'::jsonb))));
INSERT INTO ids SELECT 'body_run', id FROM pg_temp.run('hook_body', '+5511900000306');
SELECT is((SELECT convert_from(q.body, 'UTF8')::jsonb->'data' FROM ventros.automation_runs r
             JOIN ventros.webhook_deliveries d ON d.id = (r.actions_done->0->>'delivery_id')::uuid
             JOIN ventros.http_requests q ON q.id = d.request_id WHERE r.id = pg_temp.id('body_run')),
          jsonb_build_object('order', 42, 'automation_id', pg_temp.id('hook_body')), 'params.body as the data');
-- what fails the run (and delivers nothing)
SELECT pg_temp.rule('hook_plain', jsonb_build_array(jsonb_build_object('type', 'call_webhook',
                                                                       'params', jsonb_build_object('webhook_subscription_id', pg_temp.id('nosecret')))));
SELECT is((pg_temp.run('hook_plain', '+5511900000307')).error,
          '22023: webhook subscription ' || pg_temp.id('nosecret') || ' has no secret: automation calls are signed', 'a subscription without a secret');
SET LOCAL ventros.tenant = 't_acts2';
INSERT INTO ids SELECT 'foreign', id FROM ventros.create_webhook_subscription('Theirs', 'https://hooks.example.com/theirs', '{custom.never}',
                                                                              secret => 'whsec_theirs_0123456789');
SET LOCAL ventros.tenant = 't_acts';
SELECT pg_temp.rule('hook_foreign', jsonb_build_array(jsonb_build_object('type', 'call_webhook',
                                                                         'params', jsonb_build_object('webhook_subscription_id', pg_temp.id('foreign')))));
SELECT is((pg_temp.run('hook_foreign', '+5511900000308')).error,
          'P0002: webhook subscription ' || pg_temp.id('foreign') || ' not found', 'another tenant''s subscription: not found');
SELECT ventros.set_webhook_subscription_active(pg_temp.id('sub'), (SELECT version FROM ventros.webhook_subscriptions WHERE id = pg_temp.id('sub')), false);
SELECT pg_temp.rule('hook_off', jsonb_build_array(jsonb_build_object('type', 'call_webhook',
                                                                     'params', jsonb_build_object('webhook_subscription_id', pg_temp.id('sub')))));
SELECT is((pg_temp.run('hook_off', '+5511900000309')).error,
          '55000: webhook subscription ' || pg_temp.id('sub') || ' is inactive', 'an inactive subscription is not called');
SELECT pg_temp.rule('hook_none', '[{"type": "call_webhook", "params": {}}]');
SELECT is((pg_temp.run('hook_none', '+5511900000310')).error, '23502: action call_webhook needs params.webhook_subscription_id',
          'no subscription named');
SELECT is((SELECT count(*)::integer FROM ventros.webhook_deliveries WHERE tenant_id = 't_acts'), 2, 'only the two calls that ran were delivered');
SELECT is((SELECT count(*)::integer FROM ventros.automation_runs WHERE outcome = 'failed' AND tenant_id = 't_acts'), 7, 'seven failed runs');

SELECT * FROM finish();
ROLLBACK;
