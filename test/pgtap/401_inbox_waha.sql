-- WAHA webhooks into the domain: text and media messages, @lid/@c.us of one
-- person as one contact, echoes of our sends (matched, bound, or waiting for
-- the send) and of other devices, acks in and out of order, reactions,
-- edits, revocations, session status, idempotency under repetition, poisoned
-- items, groups, events stored unparsed.
BEGIN;
-- processed inside accept_webhook, so the outcome is visible in this transaction
SET LOCAL ventros.inbox_processing = inline;
SELECT plan(56);

SELECT ventros.create_tenant('inb_waha', 'Inbox WAHA');
SET LOCAL ventros.tenant = 'inb_waha';
CREATE TEMP TABLE ids AS
SELECT (ventros.create_channel('WAHA', 'waha', config => '{"session": "acme-sales", "base_url": "http://waha:3000"}')).id AS ch,
       ventros_test.new_agent() AS agent;
GRANT ALL ON ids TO PUBLIC;
CREATE FUNCTION pg_temp.ch() RETURNS uuid LANGUAGE sql AS $$ SELECT ch FROM ids $$;
CREATE FUNCTION pg_temp.post(name text, doc jsonb DEFAULT NULL) RETURNS text LANGUAGE sql AS $$
    SELECT ventros_test.post_webhook('waha', pg_temp.ch(), coalesce(ventros_test.body(doc), ventros_test.webhook(name)))
$$;
CREATE FUNCTION pg_temp.item(key text) RETURNS ventros.inbox LANGUAGE sql AS $$
    SELECT * FROM ventros.inbox WHERE channel_id = pg_temp.ch() AND dedupe_key = key
$$;
CREATE FUNCTION pg_temp.msg(provider_id text) RETURNS ventros.messages LANGUAGE sql AS $$
    SELECT * FROM ventros.messages WHERE channel_id = pg_temp.ch() AND channel_message_id = provider_id
$$;
-- Media downloads: the send side's hook when it is installed, else a recorder.
CREATE TEMP TABLE media_requests (message_id uuid);
GRANT ALL ON media_requests TO PUBLIC;
DO $$
BEGIN
    IF to_regprocedure('ventros.request_media_download(uuid)') IS NULL THEN
        CREATE FUNCTION ventros.request_media_download(message_id uuid) RETURNS void LANGUAGE sql
            AS 'INSERT INTO media_requests VALUES (message_id)';
    END IF;
END
$$;

-- text
SELECT matches(pg_temp.post('waha_text'), '^200 \{"status": "accepted"', 'a text message is accepted');
CREATE TEMP TABLE m1 AS SELECT * FROM pg_temp.msg('false_5511999998888@c.us_2AF14CD157D1CF76DC78');
GRANT ALL ON m1 TO PUBLIC;
SELECT results_eq($$SELECT content_type, text, from_me, status, "timestamp" FROM m1$$,
                  $$VALUES ('text'::text, 'Olá! Queria mais informações, por favor.'::text, false, 'delivered'::text, to_timestamp(1759425214))$$,
                  'it becomes an inbound message: text, time of the provider');
SELECT results_eq($$SELECT name, phone FROM ventros.contacts WHERE id = (SELECT contact_id FROM m1)$$,
                  $$VALUES ('Ana Alves'::text, '+5511999998888'::text)$$, 'the sender is a contact named by PushName, with the phone');
SELECT results_eq($$SELECT identity_type, value FROM ventros.contact_identities WHERE contact_id = (SELECT contact_id FROM m1) ORDER BY 1$$,
                  $$VALUES ('whatsapp'::text, '5511999998888@c.us'::text), ('whatsapp_lid', '19104132006020@lid')$$,
                  'the phone id and the @lid of the event are both the contact''s identities');
SELECT results_eq($$SELECT status, message_id, contact_id, attempts FROM pg_temp.item('msg:false_5511999998888@c.us_2AF14CD157D1CF76DC78')$$,
                  $$SELECT 'processed'::text, id, contact_id, 1 FROM m1$$, 'the inbox row is processed and names the message');
SELECT isnt((SELECT session_id FROM m1), NULL, 'the message is in a session');

-- @lid form of the same person
SELECT matches(pg_temp.post('waha_lid_text'), '^200 ', 'a message from the @lid form is accepted');
SELECT is((SELECT contact_id FROM pg_temp.msg('false_19104132006020@lid_3BF14CD157D1CF76DC79')), (SELECT contact_id FROM m1),
          'the @lid form reaches the same contact');
SELECT is((SELECT count(*)::int FROM ventros.contacts WHERE tenant_id = 'inb_waha'), 1, 'one contact');
-- A new person first seen by @lid only, then with both forms: still one contact.
SELECT matches(pg_temp.post(NULL, jsonb_set(jsonb_set(jsonb_set(ventros_test.webhook_json('waha_lid_text'),
                   '{payload,id}', '"false_77700011122233@lid_AAA1"'), '{payload,from}', '"77700011122233@lid"'),
                   '{payload,_data,Info}', '{"Type": "text", "PushName": "Bia"}')), '^200 ', 'a first message by @lid only');
SELECT matches(pg_temp.post(NULL, jsonb_set(jsonb_set(jsonb_set(ventros_test.webhook_json('waha_text'),
                   '{payload,id}', '"false_5521988776655@c.us_AAA2"'), '{payload,from}', '"5521988776655@c.us"'),
                   '{payload,_data,Info}', '{"Type": "text", "Sender": "5521988776655@s.whatsapp.net", "SenderAlt": "77700011122233@lid"}')),
               '^200 ', 'then one by phone carrying the @lid');
SELECT is((SELECT contact_id FROM pg_temp.msg('false_5521988776655@c.us_AAA2')), (SELECT contact_id FROM pg_temp.msg('false_77700011122233@lid_AAA1')),
          'both messages belong to one contact');
SELECT is((SELECT count(*)::int FROM ventros.contact_identities WHERE contact_id = (SELECT contact_id FROM pg_temp.msg('false_77700011122233@lid_AAA1'))),
          2, 'which gained the phone id next to the @lid');

-- media
SELECT matches(pg_temp.post('waha_image'), '^200 ', 'an image is accepted');
SELECT results_eq($$SELECT content_type, text, media_url, media_mimetype, metadata->'media'->>'provider'
                    FROM pg_temp.msg('false_5511999998888@c.us_AC94411C453CBE7D20F5EC3EB01DF066')$$,
                  $$VALUES ('image'::text, 'segue a foto'::text, 'http://waha:3000/api/files/acme-sales/AC94411C453CBE7D20F5EC3EB01DF066.jpeg'::text,
                            'image/jpeg'::text, 'waha'::text)$$, 'an image message with its caption, WAHA media URL and mimetype');
SELECT is((SELECT result->>'media_download' FROM pg_temp.item('msg:false_5511999998888@c.us_AC94411C453CBE7D20F5EC3EB01DF066')), 'requested',
          'its download is requested through ventros.request_media_download');
SELECT matches(pg_temp.post('waha_voice'), '^200 ', 'a voice note is accepted');
SELECT results_eq($$SELECT content_type, text, media_mimetype FROM pg_temp.msg('false_5511999998888@c.us_BD94411C453CBE7D20F5EC3EB01DF067')$$,
                  $$VALUES ('voice'::text, NULL::text, 'audio/ogg; codecs=opus'::text)$$, 'PTT audio is a voice message');
SELECT matches(pg_temp.post('waha_document'), '^200 ', 'a document is accepted');
SELECT results_eq($$SELECT content_type, media_mimetype, metadata->'media'->>'filename' FROM pg_temp.msg('false_5511999998888@c.us_CE94411C453CBE7D20F5EC3EB01DF068')$$,
                  $$VALUES ('document'::text, 'application/pdf'::text, 'orcamento.pdf'::text)$$, 'a document keeps its file name');
SELECT matches(pg_temp.post(NULL, jsonb_set(jsonb_set(ventros_test.webhook_json('waha_image'), '{payload,id}', '"false_5511999998888@c.us_NOMEDIA1"'),
                                            '{payload,media}', 'null')), '^200 ', 'an image WAHA did not download');
SELECT results_eq($$SELECT content_type, text, (metadata->>'media_missing')::boolean FROM pg_temp.msg('false_5511999998888@c.us_NOMEDIA1')$$,
                  $$VALUES ('text'::text, 'segue a foto'::text, true)$$, 'is kept as text, the missing media noted');

-- echoes
SELECT matches(pg_temp.post('waha_echo'), '^200 ', 'an own message sent from the phone is accepted');
SELECT results_eq($$SELECT from_me, status, text, contact_id, agent_id, metadata->>'echo' FROM pg_temp.msg('true_5511999998888@c.us_3EB0378E606CA43FEF38D9')$$,
                  $$SELECT true, 'sent'::text, 'Respondi pelo celular.'::text, contact_id, ventros.system_agent_id('default'), 'true'::text FROM m1$$,
                  'it is recorded as outbound, sent, to the contact, by the default system agent');
SET LOCAL ROLE ventros_agent;
CREATE TEMP TABLE sent1 AS SELECT * FROM ventros.send_message((SELECT ch FROM ids), (SELECT contact_id FROM m1), 'Olá!', (SELECT agent FROM ids));
SELECT ventros.mark_message_sent((SELECT id FROM sent1), 'true_5511999998888@c.us_3EB0378E606CA43FEF38D2');
RESET ROLE;
SELECT matches(pg_temp.post(NULL, jsonb_set(jsonb_set(ventros_test.webhook_json('waha_echo'), '{payload,id}', '"true_5511999998888@c.us_3EB0378E606CA43FEF38D2"'),
                                            '{payload,body}', '"Olá!"')), '^200 ', 'the echo of our own send is accepted');
SELECT results_eq($$SELECT count(*)::int, min(id::text) FROM ventros.messages WHERE channel_id = pg_temp.ch() AND text = 'Olá!'$$,
                  $$SELECT 1, id::text FROM sent1$$, 'and matched to it: no second message');
-- The echo arrives before the send recorded its answer.
SET LOCAL ROLE ventros_agent;
CREATE TEMP TABLE sent2 AS SELECT * FROM ventros.send_message((SELECT ch FROM ids), (SELECT contact_id FROM m1), 'Segunda resposta', (SELECT agent FROM ids));
RESET ROLE;
SELECT matches(pg_temp.post(NULL, jsonb_set(jsonb_set(ventros_test.webhook_json('waha_echo'), '{payload,id}', '"true_5511999998888@c.us_ECHOFIRST"'),
                                            '{payload,body}', '"Segunda resposta"')), '^200 ', 'an echo before the send''s answer');
SELECT results_eq($$SELECT status, message_id, next_attempt_at IS NOT NULL FROM pg_temp.item('msg:true_5511999998888@c.us_ECHOFIRST')$$,
                  $$SELECT 'unmatched'::text, id, true FROM sent2$$, 'waits, unmatched, next to the queued message');
SET LOCAL ROLE ventros_agent;
SELECT ventros.mark_message_sent((SELECT id FROM sent2), 'true_5511999998888@c.us_ECHOFIRST');
RESET ROLE;
SELECT ok((SELECT next_attempt_at <= now() FROM pg_temp.item('msg:true_5511999998888@c.us_ECHOFIRST')), 'the send''s answer makes it due at once');
SELECT ok(EXISTS (SELECT 1 FROM ventros.process_inbox(100, now() + interval '1 second') WHERE status = 'processed'), 'process_inbox takes it');
SELECT results_eq($$SELECT status, result->>'echo' FROM pg_temp.item('msg:true_5511999998888@c.us_ECHOFIRST')$$,
                  $$VALUES ('processed'::text, 'known'::text)$$, 'and finds our message');
SELECT is((SELECT count(*)::int FROM ventros.messages WHERE channel_id = pg_temp.ch() AND text = 'Segunda resposta'), 1, 'still one message');
-- The provider answered without an id: the echo binds it.
SET LOCAL ROLE ventros_agent;
CREATE TEMP TABLE sent3 AS SELECT * FROM ventros.send_message((SELECT ch FROM ids), (SELECT contact_id FROM m1), 'Terceira', (SELECT agent FROM ids));
SELECT ventros.confirm_message_status('sent', message_id => (SELECT id FROM sent3));
RESET ROLE;
SELECT matches(pg_temp.post(NULL, jsonb_set(jsonb_set(ventros_test.webhook_json('waha_echo'), '{payload,id}', '"true_5511999998888@c.us_BINDME"'),
                                            '{payload,body}', '"Terceira"')), '^200 ', 'an echo of a send answered without id');
SELECT results_eq($$SELECT channel_message_id, status FROM ventros.messages WHERE id = (SELECT id FROM sent3)$$,
                  $$VALUES ('true_5511999998888@c.us_BINDME'::text, 'sent'::text)$$, 'gives the sent message its provider id');

-- acks: in order, late, unknown
SELECT matches(pg_temp.post('waha_ack'), '^200 ', 'a READ ack is accepted');
SELECT is((SELECT status FROM ventros.messages WHERE id = (SELECT id FROM sent1)), 'read', 'our message is read');
SELECT matches(pg_temp.post('waha_ack_delivered'), '^200 ', 'a late DEVICE ack is accepted');
SELECT results_eq($$SELECT m.status, i.status, i.result->>'applied' FROM ventros.messages m,
                      pg_temp.item('ack:true_5511999998888@c.us_3EB0378E606CA43FEF38D2:2') i WHERE m.id = (SELECT id FROM sent1)$$,
                  $$VALUES ('read'::text, 'processed'::text, 'false'::text)$$, 'and changes nothing: statuses never regress');
SELECT matches(pg_temp.post(NULL, jsonb_set(ventros_test.webhook_json('waha_ack'), '{payload,ack}', '-1')), '^200 ', 'an ERROR ack after read');
SELECT is((SELECT status FROM ventros.messages WHERE id = (SELECT id FROM sent1)), 'read', 'does not fail a read message');
SELECT matches(pg_temp.post(NULL, jsonb_set(ventros_test.webhook_json('waha_ack'), '{payload,id}', '"true_x@c.us_UNKNOWN"')), '^200 ',
               'an ack for an unknown message is accepted');
SELECT results_eq($$SELECT status, attempts, next_attempt_at > now() FROM pg_temp.item('ack:true_x@c.us_UNKNOWN:3')$$,
                  $$VALUES ('unmatched'::text, 1, true)$$, 'kept unmatched, to be retried later');

-- reaction, edit, revoke
SELECT matches(pg_temp.post('waha_reaction'), '^200 ', 'a reaction is accepted');
SELECT is((SELECT metadata->'reactions' FROM ventros.messages WHERE id = (SELECT id FROM sent1)), '{"5511999998888@c.us": "👍"}'::jsonb,
          'it is kept on the message it reacts to');
SELECT matches(pg_temp.post('waha_edited'), '^200 ', 'an edit is accepted');
SELECT results_eq($$SELECT text, metadata->>'previous_text' FROM ventros.messages WHERE id = (SELECT id FROM m1)$$,
                  $$VALUES ('Olá! Queria mais informações sobre o plano anual.'::text, 'Olá! Queria mais informações, por favor.'::text)$$,
                  'the message has the new text, the previous one kept');
SELECT matches(pg_temp.post('waha_revoked'), '^200 ', 'a revocation is accepted');
SELECT isnt((SELECT deleted_at FROM ventros.messages WHERE id = (SELECT id FROM m1)), NULL, 'the revoked message is deleted');

-- session.status
SELECT matches(pg_temp.post('waha_session_status'), '^200 ', 'session WORKING is accepted');
SELECT is((SELECT status FROM ventros.channels WHERE id = pg_temp.ch()), 'active', 'the channel is active');
SELECT is(ARRAY(SELECT event_type FROM ventros.outbox WHERE aggregate_id = pg_temp.ch() AND event_type LIKE 'channel.activ%' ORDER BY seq),
          ARRAY['channel.activation_requested', 'channel.activated'], 'through allowed transitions only');
SELECT matches(pg_temp.post(NULL, ventros_test.webhook_json('waha_session_status') || '{"id": "evt_stopped"}'
                                  || '{"payload": {"name": "acme-sales", "status": "STOPPED"}}'), '^200 ', 'STOPPED');
SELECT matches(pg_temp.post(NULL, ventros_test.webhook_json('waha_session_status') || '{"id": "evt_qr"}'
                                  || '{"payload": {"name": "acme-sales", "status": "SCAN_QR_CODE"}}'), '^200 ', 'then SCAN_QR_CODE');
SELECT results_eq($$SELECT (SELECT status FROM ventros.channels WHERE id = pg_temp.ch()), status FROM pg_temp.item('evt_qr')$$,
                  $$VALUES ('inactive'::text, 'ignored'::text)$$, 'a move the channel machine does not allow is ignored');

-- groups, on a channel that allows them
UPDATE ventros.channels SET allow_groups = true, version = version WHERE id = pg_temp.ch();
SELECT matches(pg_temp.post(NULL, jsonb_set(ventros_test.webhook_json('waha_text'), '{payload}', ventros_test.webhook_json('waha_text')->'payload'
                   || '{"id": "false_120363000000000001@g.us_G2", "from": "120363000000000001@g.us", "participant": "5511977776666@c.us", "_data": null}')),
               '^200 ', 'a group message on a channel that allows groups');
SELECT results_eq($$SELECT c.phone, m.metadata->>'group_id' FROM ventros.messages m JOIN ventros.contacts c ON c.id = m.contact_id
                    WHERE m.channel_message_id = 'false_120363000000000001@g.us_G2'$$,
                  $$VALUES ('+5511977776666'::text, '120363000000000001@g.us'::text)$$, 'is recorded from its participant, the group kept');

SELECT * FROM finish();
ROLLBACK;
