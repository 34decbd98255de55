-- Webhook acceptance: channel lookup (404), signatures and tokens (401,
-- counted), bodies that are not JSON (400, stored with the error), storage
-- idempotent per (channel, dedupe key), Meta batches split into items, the
-- foreign rule, the GET handshake, tenant isolation of the inbox.
BEGIN;
-- processed inside accept_webhook, so the outcome is visible in this transaction
SET LOCAL ventros.inbox_processing = inline;
SELECT plan(47);

SELECT ventros.create_tenant('inb_a', 'Inbox A');
SELECT ventros.create_tenant('inb_b', 'Inbox B');
SET LOCAL ventros.tenant = 'inb_a';
CREATE TEMP TABLE ch (name text PRIMARY KEY, id uuid);
GRANT ALL ON ch TO PUBLIC;
INSERT INTO ch
SELECT 'waha', (ventros.create_channel('WAHA', 'waha', config => '{"session": "acme-sales", "webhook_secret": "waha-secret", "webhook_token": "tok-123"}')).id
UNION ALL SELECT 'waha_open', (ventros.create_channel('WAHA open', 'waha')).id
UNION ALL SELECT 'wa', (ventros.create_channel('Cloud', 'whatsapp', config => '{"phone_number_id": "106540352242922", "app_secret": "meta-secret", "verify_token": "verify-me"}')).id
UNION ALL SELECT 'ig', (ventros.create_channel('IG', 'instagram', config => '{"ig_account_id": "17841400000000000", "app_secret": "ig-secret", "verify_token": "ig-verify"}')).id
UNION ALL SELECT 'fb', (ventros.create_channel('FB', 'messenger', config => '{"page_id": "106000000000001", "app_secret": "fb-secret", "verify_token": "fb-verify"}')).id;
SET LOCAL ventros.tenant = 'inb_b';
INSERT INTO ch SELECT 'b_wa', (ventros.create_channel('Cloud B', 'whatsapp', config => '{"phone_number_id": "106540352242922", "app_secret": "meta-secret"}')).id;
RESET ventros.tenant;
CREATE FUNCTION pg_temp.ch(n text) RETURNS text LANGUAGE sql AS $$ SELECT id::text FROM ch WHERE name = n $$;

-- What the front does: SET LOCAL ROLE ventros_anon, no tenant, one call.
CREATE FUNCTION pg_temp.post(provider text, channel text, headers jsonb, body bytea) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    result text;
BEGIN
    SET LOCAL ROLE ventros_anon;
    SELECT a.http_status || ' ' || a.response::text INTO result FROM ventros.accept_webhook(provider, channel, headers, body) a;
    RESET ROLE;
    RETURN result;
END
$$;
CREATE FUNCTION pg_temp.waha(name text, secret text DEFAULT 'waha-secret', token text DEFAULT 'tok-123') RETURNS text
LANGUAGE sql AS $$
    SELECT pg_temp.post('waha', pg_temp.ch('waha'),
                        ventros_test.waha_headers(ventros_test.webhook(name), secret) || jsonb_build_object('x-ventros-token', token),
                        ventros_test.webhook(name))
$$;
CREATE FUNCTION pg_temp.meta(provider text, channel text, body bytea, secret text) RETURNS text
LANGUAGE sql AS $$ SELECT pg_temp.post(provider, pg_temp.ch(channel), ventros_test.meta_headers(body, secret), body) $$;
CREATE FUNCTION pg_temp.inbox(channel text) RETURNS SETOF ventros.inbox LANGUAGE sql AS $$
    SELECT * FROM ventros.inbox WHERE channel_id = pg_temp.ch(channel)::uuid ORDER BY received_at, item_index
$$;
CREATE FUNCTION pg_temp.rejected(channel text) RETURNS bigint LANGUAGE sql AS $$
    SELECT coalesce((SELECT rejected FROM ventros.channel_webhook_rejections WHERE channel_id = pg_temp.ch(channel)::uuid), 0)
$$;

-- 404s
SELECT is(pg_temp.post('waha', gen_random_uuid()::text, '{}', '{}'), '404 {"error": "channel_not_found"}', 'an unknown channel id is 404');
SELECT is(pg_temp.post('waha', 'not-a-uuid', '{}', '{}'), '404 {"error": "channel_not_found"}', 'a malformed channel id is 404');
SELECT is(pg_temp.post('waha', pg_temp.ch('wa'), '{}', '{}'), '404 {"error": "channel_not_found"}', 'a channel of another provider is 404');
SELECT is(pg_temp.post('telegram', pg_temp.ch('wa'), '{}', '{}'), '404 {"error": "channel_not_found"}', 'an unknown provider is 404');

-- WAHA signatures and token
SELECT is(pg_temp.waha('waha_call', secret => 'wrong'), '401 {"error": "invalid_signature"}', 'WAHA: a wrong HMAC key is 401');
SELECT is(pg_temp.post('waha', pg_temp.ch('waha'), '{"x-ventros-token": "tok-123"}', ventros_test.webhook('waha_call')),
          '401 {"error": "invalid_signature"}', 'WAHA: a missing X-Webhook-Hmac is 401');
SELECT is(pg_temp.waha('waha_call', token => 'tok-12'), '401 {"error": "invalid_signature"}', 'WAHA: a wrong X-Ventros-Token is 401');
SELECT is(pg_temp.post('waha', pg_temp.ch('waha'),
                       ventros_test.waha_headers(ventros_test.webhook('waha_call'), 'waha-secret')
                       || '{"x-ventros-token": "tok-123", "x-webhook-hmac-algorithm": "sha256"}', ventros_test.webhook('waha_call')),
          '401 {"error": "invalid_signature"}', 'WAHA: another HMAC algorithm is 401');
SELECT is(pg_temp.post('waha', pg_temp.ch('waha'),
                       ventros_test.waha_headers(ventros_test.webhook('waha_call'), 'waha-secret') || '{"x-ventros-token": "tok-123"}',
                       ventros_test.webhook('waha_call') || '\x20'::bytea),
          '401 {"error": "invalid_signature"}', 'WAHA: a body changed after signing is 401');
SELECT is(pg_temp.rejected('waha'), 5::bigint, 'each refusal is counted on the channel');
SELECT is((SELECT count(*)::int FROM pg_temp.inbox('waha')), 0, 'nothing refused is stored');
SELECT matches(pg_temp.waha('waha_call'), '^200 \{"status": "accepted", "inbox_id": "[0-9a-f-]{36}"\}$', 'WAHA: a signed delivery is accepted');
SELECT matches(pg_temp.post('waha', pg_temp.ch('waha'),
                            jsonb_build_object('X-Webhook-Hmac', upper(encode(ventros.webhook_hmac(ventros_test.webhook('waha_session_status'), 'waha-secret', 'sha512'), 'hex')),
                                               'X-Ventros-Token', 'tok-123'),
                            ventros_test.webhook('waha_session_status')),
               '^200 ', 'header names are matched case-insensitively; upper-case hex is accepted');
SELECT matches(pg_temp.post('waha', pg_temp.ch('waha_open'), '{}', ventros_test.webhook('waha_call')), '^200 ',
               'WAHA: a channel without secret nor token takes unsigned deliveries');

-- Meta signatures
SELECT is(pg_temp.meta('whatsapp', 'wa', ventros_test.webhook('whatsapp_text'), 'other-secret'), '401 {"error": "invalid_signature"}',
          'WhatsApp: a wrong X-Hub-Signature-256 is 401');
SELECT is(pg_temp.post('whatsapp', pg_temp.ch('wa'), '{}', ventros_test.webhook('whatsapp_text')), '401 {"error": "invalid_signature"}',
          'WhatsApp: a missing signature is 401');
SELECT is(pg_temp.post('whatsapp', pg_temp.ch('wa'), jsonb_build_object('x-hub-signature-256', encode(ventros.webhook_hmac(ventros_test.webhook('whatsapp_text'), 'meta-secret', 'sha256'), 'hex')),
                       ventros_test.webhook('whatsapp_text')), '401 {"error": "invalid_signature"}',
          'WhatsApp: a signature without its sha256= prefix is 401');
SELECT is(pg_temp.meta('instagram', 'ig', ventros_test.webhook('instagram_text'), 'meta-secret'), '401 {"error": "invalid_signature"}',
          'Instagram: a signature with another channel''s secret is 401');
SELECT is(pg_temp.rejected('wa'), 3::bigint, 'Meta refusals are counted per channel');
SELECT is(pg_temp.rejected('ig'), 1::bigint, 'on the channel they were for');

-- A signature wrong in its first byte only (a comparison that looked at the
-- last byte alone would take it), and the comparison itself
CREATE FUNCTION pg_temp.flip(b bytea, i integer) RETURNS bytea LANGUAGE sql AS $$ SELECT set_byte(b, i, get_byte(b, i) # 1) $$;
SELECT is(pg_temp.post('whatsapp', pg_temp.ch('wa'),
                       jsonb_build_object('x-hub-signature-256', 'sha256=' || encode(pg_temp.flip(ventros.webhook_hmac(ventros_test.webhook('whatsapp_text'), 'meta-secret', 'sha256'), 0), 'hex')),
                       ventros_test.webhook('whatsapp_text')), '401 {"error": "invalid_signature"}',
          'WhatsApp: a signature differing only in its first byte is 401');
SELECT is(pg_temp.post('waha', pg_temp.ch('waha'),
                       jsonb_build_object('x-webhook-hmac', encode(pg_temp.flip(ventros.webhook_hmac(ventros_test.webhook('waha_call'), 'waha-secret', 'sha512'), 0), 'hex'),
                                          'x-ventros-token', 'tok-123'),
                       ventros_test.webhook('waha_call')), '401 {"error": "invalid_signature"}',
          'WAHA: a signature differing only in its first byte is 401');
SELECT is(pg_temp.waha('waha_call', token => 'Tok-123'), '401 {"error": "invalid_signature"}',
          'WAHA: a token differing only in its first character is 401');
SELECT results_eq($$SELECT ventros.timing_safe_equal('\x0102030405'::bytea, b) FROM (VALUES
                        ('\x0102030405'::bytea), ('\x0002030405'), ('\x0102030404'), ('\x0102ff0405'), ('\x01020304'), ('\x'), ('\x010203040500')) v(b)$$,
                  $$VALUES (true), (false), (false), (false), (false), (false), (false)$$,
                  'timing_safe_equal: equal only when every byte is: first, last or middle byte differing, or another length, is unequal');
SELECT ok(ventros.timing_safe_equal('\x'::bytea, '\x'::bytea), 'timing_safe_equal: two empty strings are equal');

-- Storage and idempotency
SELECT matches(pg_temp.meta('whatsapp', 'wa', ventros_test.webhook('whatsapp_text'), 'meta-secret'), '^200 \{"status": "accepted"',
               'WhatsApp: a signed delivery is accepted');
SELECT is(pg_temp.meta('whatsapp', 'wa', ventros_test.webhook('whatsapp_text'), 'meta-secret'), '200 {"status": "duplicate"}',
          'the same delivery again is a duplicate');
SELECT results_eq($$SELECT event, dedupe_key, body = ventros_test.webhook('whatsapp_text'), headers ? 'x-hub-signature-256'
                    FROM pg_temp.inbox('wa')$$,
                  $$VALUES ('messages'::text, 'msg:wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA='::text, true, true)$$,
                  'one row: its event, its key msg:<wamid>, the raw body byte for byte, the signature header');
SELECT is((SELECT count(*)::int FROM ventros.inbox i, jsonb_object_keys(i.headers) k WHERE k IN ('x-ventros-token', 'x-api-key', 'authorization')), 0,
          'tokens and keys are never kept');

-- Batches: one row per item, the body once.
SELECT matches(pg_temp.meta('whatsapp', 'wa', ventros_test.webhook('whatsapp_batch'), 'meta-secret'), '^200 \{"status": "accepted"',
               'a batched delivery is accepted');
SELECT results_eq($$SELECT item_index, event, dedupe_key, body IS NOT NULL, delivery_id = (SELECT id FROM pg_temp.inbox('wa') WHERE dedupe_key = 'msg:wamid.BATCH1')
                    FROM pg_temp.inbox('wa') WHERE dedupe_key <> 'msg:wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA='
                      AND event IN ('messages', 'statuses')$$,
                  $$VALUES (0, 'messages'::text, 'msg:wamid.BATCH1'::text, true, true),
                           (1, 'messages', 'msg:wamid.BATCH2', false, true),
                           (2, 'statuses', 'st:wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA:delivered', false, true)$$,
                  'each message and status of the batch is an item of the delivery; the raw body is on the first');
SELECT is((SELECT status FROM pg_temp.inbox('wa') WHERE event = 'message_template_status_update'), 'unparsed',
          'a change of another field is stored unparsed');
SELECT is(pg_temp.meta('whatsapp', 'wa', ventros_test.webhook('whatsapp_batch'), 'meta-secret'), '200 {"status": "duplicate"}',
          'the batch again is a duplicate');
SELECT matches(pg_temp.meta('messenger', 'fb', ventros_test.webhook('messenger_batch'), 'fb-secret'), '^200 \{"status": "accepted"',
               'Messenger: batched entries are accepted');
SELECT is(ARRAY(SELECT dedupe_key FROM pg_temp.inbox('fb')), ARRAY['msg:m_BATCH_A', 'msg:m_BATCH_B'], 'one item per entry');

-- Foreign
SELECT matches(pg_temp.meta('whatsapp', 'wa', ventros_test.webhook('whatsapp_foreign'), 'meta-secret'), '^200 ',
               'a delivery for another phone_number_id is acknowledged');
SELECT results_eq($$SELECT status, message_id FROM pg_temp.inbox('wa') WHERE dedupe_key = 'msg:wamid.FOREIGN1'$$,
                  $$VALUES ('foreign'::text, NULL::uuid)$$, 'stored as foreign, not processed');

-- Not JSON
SELECT is(pg_temp.meta('whatsapp', 'wa', convert_to('{"object": "whatsapp_business_account", "entry": [', 'UTF8'), 'meta-secret'),
          '400 {"error": "invalid_json"}', 'a body that is not JSON is 400');
SELECT results_eq($$SELECT status, last_error LIKE '22P02: body is not JSON%', next_attempt_at FROM pg_temp.inbox('wa') WHERE event = 'invalid'$$,
                  $$VALUES ('failed'::text, true, NULL::timestamptz)$$, 'and stored with its error, never retried');
SELECT is(pg_temp.meta('whatsapp', 'wa', '\xff00'::bytea, 'meta-secret'), '400 {"error": "invalid_json"}', 'bytes that are not UTF-8 are 400');

-- The handshake
SELECT is(ventros.webhook_challenge('whatsapp', pg_temp.ch('wa'), 'subscribe', 'verify-me', '1158201444'), '1158201444',
          'the handshake with the right token echoes the challenge');
SELECT is(ventros.webhook_challenge('whatsapp', pg_temp.ch('wa'), 'subscribe', 'verify-you', '1158201444'), NULL,
          'a wrong verify token gets nothing (403)');
SELECT is(ventros.webhook_challenge('whatsapp', pg_temp.ch('wa'), 'unsubscribe', 'verify-me', '1158201444'), NULL,
          'a mode other than subscribe gets nothing');
SELECT is(ventros.webhook_challenge('instagram', pg_temp.ch('wa'), 'subscribe', 'verify-me', '1'), NULL,
          'the channel must be of the provider');
SELECT is(ventros.webhook_challenge('messenger', pg_temp.ch('fb'), 'subscribe', 'fb-verify', '42'), '42', 'Messenger handshake');

-- Tenancy
SELECT is(ventros_test.run_as('ventros_admin', 'inb_b', $$SELECT count(*) FROM ventros.inbox$$), '0',
          'another tenant''s administrator sees none of these inbox rows');
SELECT matches(pg_temp.meta('whatsapp', 'b_wa', ventros_test.webhook('whatsapp_text'), 'meta-secret'), '^200 \{"status": "accepted"',
               'the same provider message on another tenant''s channel is its own item');

SELECT * FROM finish();
ROLLBACK;
