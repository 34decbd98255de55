-- WhatsApp Cloud, Instagram and Messenger webhooks into the domain: text and
-- media messages, statuses in and out of order (failed with its error),
-- replies, reactions, referral tracking, unsupported types, batches, echoes,
-- read watermarks and delivery mids, deletions.
BEGIN;
-- processed inside accept_webhook, so the outcome is visible in this transaction
SET LOCAL ventros.inbox_processing = inline;
SELECT plan(65);

SELECT ventros.create_tenant('inb_meta', 'Inbox Meta');
SET LOCAL ventros.tenant = 'inb_meta';
CREATE TEMP TABLE ids AS
SELECT (ventros.create_channel('Cloud', 'whatsapp', config => '{"phone_number_id": "106540352242922", "allow_unsigned": true}')).id AS wa,
       (ventros.create_channel('IG', 'instagram', config => '{"ig_account_id": "17841400000000000", "graph_base_url": "http://127.0.0.1:9/ig", "allow_unsigned": true}')).id AS ig,
       (ventros.create_channel('FB', 'messenger', config => '{"page_id": "106000000000001", "allow_unsigned": true}')).id AS fb,
       ventros_test.new_agent() AS agent;
GRANT ALL ON ids TO PUBLIC;
CREATE FUNCTION pg_temp.post(provider text, name text, doc jsonb DEFAULT NULL) RETURNS text LANGUAGE sql AS $$
    SELECT ventros_test.post_webhook(provider,
        (SELECT CASE provider WHEN 'whatsapp' THEN wa WHEN 'instagram' THEN ig ELSE fb END FROM ids),
        coalesce(ventros_test.body(doc), ventros_test.webhook(name)))
$$;
CREATE FUNCTION pg_temp.msg(provider_id text) RETURNS ventros.messages LANGUAGE sql AS $$
    SELECT * FROM ventros.messages WHERE channel_message_id = provider_id AND tenant_id = 'inb_meta'
$$;
CREATE FUNCTION pg_temp.item(key text) RETURNS ventros.inbox LANGUAGE sql AS $$
    SELECT * FROM ventros.inbox WHERE dedupe_key = key AND tenant_id = 'inb_meta'
$$;
-- Our outbound messages, sent with the ids the status webhooks name.
CREATE FUNCTION pg_temp.sent(channel uuid, contact uuid, body text, provider_id text) RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    m ventros.messages;
BEGIN
    SET LOCAL ROLE ventros_agent;
    m := ventros.send_message(channel, contact, body, (SELECT agent FROM ids));
    m := ventros.mark_message_sent(m.id, provider_id);
    RESET ROLE;
    RETURN m.id;
END
$$;
CREATE TEMP TABLE o (name text PRIMARY KEY, id uuid);
GRANT ALL ON o TO PUBLIC;
CREATE FUNCTION pg_temp.o(n text) RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM o WHERE name = n $$;
DO $$
BEGIN
    IF to_regprocedure('ventros.request_media_download(uuid)') IS NULL THEN
        CREATE FUNCTION ventros.request_media_download(message_id uuid) RETURNS void LANGUAGE sql AS '';
    END IF;
END
$$;

-- WhatsApp Cloud
SELECT matches(pg_temp.post('whatsapp', 'whatsapp_text'), '^200 \{"status": "accepted"', 'WhatsApp: a text message is accepted');
CREATE TEMP TABLE w1 AS SELECT * FROM pg_temp.msg('wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=');
GRANT ALL ON w1 TO PUBLIC;
SELECT results_eq($$SELECT content_type, text, from_me, "timestamp" FROM w1$$,
                  $$VALUES ('text'::text, 'Does it come in another color?'::text, false, to_timestamp(1749416383))$$, 'an inbound text message');
SELECT results_eq($$SELECT c.name, c.phone, i.value FROM ventros.contacts c JOIN ventros.contact_identities i ON i.contact_id = c.id
                    WHERE c.id = (SELECT contact_id FROM w1)$$,
                  $$VALUES ('Sheena Nelson'::text, '+16505551234'::text, '16505551234@c.us'::text)$$,
                  'the contact: profile name, phone, WhatsApp id (the same id WAHA channels use)');
SELECT matches(pg_temp.post('whatsapp', 'whatsapp_image'), '^200 ', 'an image');
SELECT results_eq($$SELECT content_type, text, media_url, media_mimetype, metadata->'media'->>'id' FROM pg_temp.msg('wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQA1')$$,
                  $$VALUES ('image'::text, 'this one'::text, 'https://graph.facebook.com/v23.0/1003383421387256'::text, 'image/jpeg'::text, '1003383421387256'::text)$$,
                  'is an image message with the Graph URL of its media id');
SELECT matches(pg_temp.post('whatsapp', 'whatsapp_audio'), '^200 ', 'a voice note');
SELECT is((SELECT content_type FROM pg_temp.msg('wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQA2')), 'voice', 'audio with voice: true is a voice message');
SELECT matches(pg_temp.post('whatsapp', 'whatsapp_document'), '^200 ', 'a document');
SELECT results_eq($$SELECT content_type, text, metadata->'media'->>'filename' FROM pg_temp.msg('wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQA3')$$,
                  $$VALUES ('document'::text, 'quote'::text, 'orcamento.pdf'::text)$$, 'keeps caption and file name');
SELECT matches(pg_temp.post('whatsapp', 'whatsapp_location'), '^200 ', 'a location');
SELECT results_eq($$SELECT content_type, text, (metadata->'location'->>'latitude')::numeric FROM pg_temp.msg('wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQA4')$$,
                  $$VALUES ('location'::text, 'Loja Centro'::text, -23.5505)$$, 'is a location message');

-- statuses of our message, out of order
INSERT INTO o SELECT 'out', pg_temp.sent((SELECT wa FROM ids), (SELECT contact_id FROM w1), 'Yes, it comes in blue.',
                    'wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA');
SELECT matches(pg_temp.post('whatsapp', 'whatsapp_status_read'), '^200 ', 'read comes first');
SELECT is((SELECT status FROM ventros.messages WHERE id = pg_temp.o('out')), 'read', 'our message is read');
SELECT matches(pg_temp.post('whatsapp', 'whatsapp_status_delivered'), '^200 ', 'delivered comes after');
SELECT results_eq($$SELECT m.status, m.read_at IS NOT NULL FROM ventros.messages m WHERE id = pg_temp.o('out')$$,
                  $$VALUES ('read'::text, true)$$, 'and changes nothing');
SELECT is((SELECT count(*)::int FROM ventros.outbox WHERE aggregate_id = pg_temp.o('out') AND event_type IN ('message.read', 'message.delivered')), 1,
          'one status event: message.read');
INSERT INTO o SELECT 'fail', pg_temp.sent((SELECT wa FROM ids), (SELECT contact_id FROM w1), 'Will fail', 'wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcB');
SELECT matches(pg_temp.post('whatsapp', 'whatsapp_status_failed'), '^200 ', 'a failed status');
SELECT results_eq($$SELECT status, error FROM ventros.messages WHERE id = pg_temp.o('fail')$$,
                  $$VALUES ('failed'::text, '(#131026) Message undeliverable: Message could not be delivered to the recipient.'::text)$$,
                  'fails the message with the error code and details');

-- reply, reaction, referral, unsupported
SELECT matches(pg_temp.post('whatsapp', 'whatsapp_reply_interactive'), '^200 ', 'a button reply to our message');
SELECT results_eq($$SELECT text, reply_to_id::text, metadata->'interactive'->'button_reply'->>'id' FROM pg_temp.msg('wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQA5')$$,
                  $$VALUES ('Blue, please'::text, pg_temp.o('out')::text, 'blue'::text)$$, 'has the button title as text and replies to our message');
SELECT matches(pg_temp.post('whatsapp', 'whatsapp_reaction'), '^200 ', 'a reaction');
SELECT is((SELECT metadata->'reactions' FROM ventros.messages WHERE id = pg_temp.o('out')), '{"16505551234@c.us": "❤️"}'::jsonb,
          'is kept on the message it reacts to');
SELECT matches(pg_temp.post('whatsapp', 'whatsapp_referral'), '^200 ', 'a message from a click-to-WhatsApp ad');
SELECT results_eq($$SELECT t.source, t.platform, t.ad_id, t.click_id, t.campaign, t.session_id = m.session_id
                    FROM ventros.trackings t JOIN ventros.messages m ON m.contact_id = t.contact_id
                    WHERE m.channel_message_id = 'wamid.HBgLMTYzMTU1NTExODEVAgASGBQR1'$$,
                  $$VALUES ('meta_ads'::text, 'whatsapp'::text, '120226305854810726'::text,
                            'ARAkLkA8rmlFeiCktEJQ-QTwRiyYHAFDLMNDBH0CD3qpjd0HR4irJ6LEkR7JwFF4XvnO2E4Nx0-eM-s1wtGTB7J5tyNY'::text, 'Summer sale'::text, true)$$,
                  'records the ad as the contact''s tracking');
SELECT matches(pg_temp.post('whatsapp', 'whatsapp_unsupported'), '^200 ', 'an unsupported message type');
SELECT results_eq($$SELECT status, result->>'type' FROM pg_temp.item('msg:wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQA7')$$,
                  $$VALUES ('unparsed'::text, 'unsupported'::text)$$, 'is stored unparsed');
-- a batch
SELECT matches(pg_temp.post('whatsapp', 'whatsapp_batch'), '^200 ', 'a batch of two messages and a status');
SELECT is((SELECT count(DISTINCT contact_id)::int FROM ventros.messages WHERE channel_message_id IN ('wamid.BATCH1', 'wamid.BATCH2')), 2,
          'two messages by two contacts');

-- Instagram
SELECT matches(pg_temp.post('instagram', 'instagram_text'), '^200 ', 'Instagram: a message with an image');
CREATE TEMP TABLE i1 AS SELECT * FROM pg_temp.msg('aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEMTc4NDE0MDAwMDAwMDAwMDA6MzQwMjgyMzY2ODQxNzEwMzAxMjQ0MjU5NjAwMzk0NDkZD');
GRANT ALL ON i1 TO PUBLIC;
SELECT results_eq($$SELECT m.content_type, m.text, m.media_url, i.identity_type, i.value FROM i1 m JOIN ventros.contact_identities i ON i.contact_id = m.contact_id$$,
                  $$VALUES ('image'::text, 'Oi, tem esse modelo em azul?'::text,
                            'https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=17912345678901234&signature=abc'::text, 'igsid'::text, '1234567890123456'::text)$$,
                  'an image message with its text and CDN URL, from the IGSID');
SELECT matches(pg_temp.post('instagram', 'instagram_echo'), '^200 ', 'an echo');
SELECT results_eq($$SELECT from_me, status, contact_id FROM pg_temp.msg('aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEECHO0000000001')$$,
                  $$SELECT true, 'sent'::text, contact_id FROM i1$$, 'is an outbound message to the IGSID');
INSERT INTO o SELECT 'ig', pg_temp.sent((SELECT ig FROM ids), (SELECT contact_id FROM i1), 'Temos sim!', 'aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlESENT000000001');
SELECT matches(pg_temp.post('instagram', 'instagram_read'), '^200 ', 'a read of our message');
SELECT is((SELECT status FROM ventros.messages WHERE id = pg_temp.o('ig')), 'read', 'marks it read');
SELECT matches(pg_temp.post('instagram', 'instagram_reaction'), '^200 ', 'a reaction');
SELECT is((SELECT metadata->'reactions'->>'1234567890123456' FROM ventros.messages WHERE id = pg_temp.o('ig')), '❤️', 'is kept on our message');
SELECT matches(pg_temp.post('instagram', 'instagram_deleted'), '^200 ', 'an unsent message');
SELECT isnt((SELECT deleted_at FROM ventros.messages WHERE id = (SELECT id FROM i1)), NULL, 'is deleted');

-- Messenger
SELECT matches(pg_temp.post('messenger', 'messenger_text'), '^200 ', 'Messenger: a message with a file');
CREATE TEMP TABLE f1 AS SELECT * FROM pg_temp.msg('m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM_QPpz5jdCK48PnKAjSdjfipqxqMvK8ma6AC8fplw');
GRANT ALL ON f1 TO PUBLIC;
SELECT results_eq($$SELECT m.content_type, m.text, i.identity_type FROM f1 m JOIN ventros.contact_identities i ON i.contact_id = m.contact_id$$,
                  $$VALUES ('document'::text, 'hello, world!'::text, 'psid'::text)$$, 'a document message from the PSID');
INSERT INTO o SELECT 'fb', pg_temp.sent((SELECT fb FROM ids), (SELECT contact_id FROM f1), 'hello back', 'm_SENT0000000000000000000000000000000000000000000001');
SELECT matches(pg_temp.post('messenger', 'messenger_delivery'), '^200 ', 'a delivery of our message');
SELECT is((SELECT status FROM ventros.messages WHERE id = pg_temp.o('fb')), 'delivered', 'marks the listed mid delivered');
SELECT matches(pg_temp.post('messenger', 'messenger_read'), '^200 ', 'a read watermark');
SELECT is((SELECT status FROM ventros.messages WHERE id = pg_temp.o('fb')), 'read', 'marks what was sent before it read');
SELECT matches(pg_temp.post('messenger', 'messenger_echo'), '^200 ', 'an echo from the page inbox');
SELECT results_eq($$SELECT from_me, contact_id FROM pg_temp.msg('m_ECHO00000000000000000000000000000000000000000001')$$,
                  $$SELECT true, contact_id FROM f1$$, 'is an outbound message to the PSID');
SELECT matches(pg_temp.post('messenger', 'messenger_referral'), '^200 ', 'a referral from an ad');
SELECT results_eq($$SELECT t.source, t.platform, t.ad_id, t.campaign FROM ventros.trackings t JOIN ventros.contact_identities i ON i.contact_id = t.contact_id
                    WHERE i.value = '6000000000000002'$$,
                  $$VALUES ('meta_ads'::text, 'facebook'::text, '6045246247433'::text, 'Summer promo'::text)$$, 'is tracked for the new contact');

-- edits and postbacks
SELECT matches(pg_temp.post('messenger', NULL, '{"object": "page", "entry": [{"id": "106000000000001", "time": 1458692790000, "messaging": [{"sender": {"id": "6000000000000001"}, "recipient": {"id": "106000000000001"}, "timestamp": 1458692790000, "message_edit": {"mid": "m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM_QPpz5jdCK48PnKAjSdjfipqxqMvK8ma6AC8fplw", "text": "hello, edited world!", "num_edit": 1}}]}]}'),
               '^200 ', 'a message edit');
SELECT results_eq($$SELECT m.text, m.metadata->>'previous_text' FROM ventros.messages m WHERE m.id = (SELECT id FROM f1)$$,
                  $$VALUES ('hello, edited world!'::text, 'hello, world!'::text)$$, 'changes the message''s text');
SELECT matches(pg_temp.post('messenger', NULL, '{"object": "page", "entry": [{"id": "106000000000001", "time": 1458692791000, "messaging": [{"sender": {"id": "6000000000000001"}, "recipient": {"id": "106000000000001"}, "timestamp": 1458692791000, "postback": {"mid": "m_POSTBACK1", "title": "Talk to sales", "payload": "SALES"}}]}]}'),
               '^200 ', 'a postback');
SELECT results_eq($$SELECT text, from_me, metadata->'postback'->>'payload', contact_id FROM pg_temp.msg('m_POSTBACK1')$$,
                  $$SELECT 'Talk to sales'::text, false, 'SALES'::text, contact_id FROM f1$$, 'is an inbound message with the button''s title');

-- profile lookup of a new PSID, when the channel has a token
SET LOCAL ventros.tenant = 'inb_meta';
INSERT INTO o SELECT 'fb2', (ventros.create_channel('FB token', 'messenger',
    config => '{"page_id": "106000000000001", "access_token": "EAAtoken", "graph_base_url": "http://127.0.0.1:9/graph/", "allow_unsigned": true}')).id;
RESET ventros.tenant;
SELECT matches(ventros_test.post_fixture('messenger', pg_temp.o('fb2'), 'messenger_text', '{"entry": [{"id": "106000000000001", "messaging": [{"sender": {"id": "6000000000000009"}, "recipient": {"id": "106000000000001"}, "timestamp": 1458692752478, "message": {"mid": "m_PROFILE1", "text": "who am I?"}}]}]}'),
               '^200 ', 'a first message from a new PSID on a channel with a token');
SELECT results_eq($$SELECT r.method, r.url, r.headers->>'Authorization', r.correlation_id
                    FROM ventros.http_requests r WHERE r.purpose = 'contact.profile' AND r.tenant_id = 'inb_meta'$$,
                  $$SELECT 'GET'::text, 'http://127.0.0.1:9/graph/v23.0/6000000000000009?fields=first_name,last_name,profile_pic'::text,
                           'Bearer {channel_secret:' || pg_temp.o('fb2') || ':access_token}', contact_id FROM pg_temp.msg('m_PROFILE1')$$,
                  'asks the Graph API for the profile, with (a reference to) the page token');
SELECT is((SELECT ventros.http_attempt_headers(r)->>'Authorization' FROM ventros.http_requests r
            WHERE r.purpose = 'contact.profile' AND r.tenant_id = 'inb_meta'), 'Bearer EAAtoken', 'the dispatcher sends the page token');
SELECT matches(ventros_test.post_fixture('messenger', pg_temp.o('fb2'), 'messenger_text', '{"entry": [{"id": "106000000000001", "messaging": [{"sender": {"id": "6000000000000009"}, "recipient": {"id": "106000000000001"}, "timestamp": 1458692752479, "message": {"mid": "m_PROFILE2", "text": "again"}}]}]}'),
               '^200 ', 'a second message');
SELECT is((SELECT count(*)::int FROM ventros.http_requests WHERE purpose = 'contact.profile' AND tenant_id = 'inb_meta'), 1, 'asks only once');
UPDATE ventros.http_requests SET status = 'succeeded', response_status = 200,
    response_body = convert_to('{"first_name": "Peter", "last_name": "Chang", "profile_pic": "https://cdn.example/peter.jpg", "id": "6000000000000009"}', 'UTF8')
WHERE purpose = 'contact.profile' AND tenant_id = 'inb_meta';
SELECT ok(ventros.run_http_request_handler((SELECT r FROM ventros.http_requests r WHERE purpose = 'contact.profile' AND tenant_id = 'inb_meta')),
          'the answer''s handler runs');
SELECT is((SELECT handler_error FROM ventros.http_requests WHERE purpose = 'contact.profile' AND tenant_id = 'inb_meta'), NULL, 'without error');
SELECT results_eq($$SELECT name, profile_picture_url FROM ventros.contacts WHERE id = (SELECT contact_id FROM pg_temp.msg('m_PROFILE1'))$$,
                  $$VALUES ('Peter Chang'::text, 'https://cdn.example/peter.jpg'::text)$$, 'and names the contact');

-- a Meta channel without an app secret refuses unsigned deliveries, unless
-- its config says "allow_unsigned": true (a JSON true, nothing else)
SET LOCAL ventros.tenant = 'inb_meta';
INSERT INTO o SELECT 'nosecret', (ventros.create_channel('No secret', 'whatsapp', config => '{"phone_number_id": "106540352242999"}')).id;
INSERT INTO o SELECT 'strtrue', (ventros.create_channel('String true', 'instagram',
    config => '{"ig_account_id": "17841400000000999", "allow_unsigned": "true"}')).id;
RESET ventros.tenant;
SELECT is(ventros_test.post_fixture('whatsapp', pg_temp.o('nosecret'), 'whatsapp_text'), '401 {"error": "invalid_signature"}',
          'a Meta channel without app_secret refuses an unsigned delivery');
SELECT results_eq($$SELECT rejected, last_reason FROM ventros.channel_webhook_rejections WHERE channel_id = pg_temp.o('nosecret')$$,
                  $$VALUES (1::bigint, 'no_app_secret')$$, 'counted, with the reason');
SELECT is(ventros_test.post_fixture('instagram', pg_temp.o('strtrue'), 'instagram_text'), '401 {"error": "invalid_signature"}',
          'allow_unsigned must be the JSON value true');
SELECT is((SELECT count(*)::int FROM ventros.inbox WHERE channel_id IN (pg_temp.o('nosecret'), pg_temp.o('strtrue'))), 0,
          'nothing is stored');
SELECT ok(ventros.verify_webhook('messenger', '{"allow_unsigned": true}', '{}', 'x') IS NULL
          AND ventros.verify_webhook('messenger', '{}', '{}', 'x') = 'no_app_secret',
          'verify_webhook: unsigned only with allow_unsigned');

SELECT * FROM finish();
ROLLBACK;
