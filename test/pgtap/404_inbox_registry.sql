-- The inbound provider registry (ventros.inbound_providers): the one list of
-- providers (inbox rows and channel_providers refer to it), registrations
-- checked for the functions' shapes, the channel kinds taken from the system
-- catalogue, and a provider whose functions live in pg_temp (named nowhere in
-- Ventros) accepted, verified, split and processed through accept_webhook and
-- answering a handshake through webhook_challenge.
-- (test/integration/webhooks_registry.test.mjs does the same through the front.)
BEGIN;
SET LOCAL ventros.inbox_processing = inline;
SELECT plan(17);

SELECT is((SELECT array_agg(provider ORDER BY provider) FROM ventros.inbound_providers),
          '{instagram,messenger,waha,whatsapp}', 'the four providers are registered');
SELECT is((SELECT count(*)::integer FROM ventros.inbound_providers p
           WHERE NOT EXISTS (SELECT 1 FROM ventros.channel_providers c WHERE c.provider = p.provider)),
          0, 'every registered provider serves a channel type');
SELECT throws_ok($$INSERT INTO ventros.channel_providers (channel_type, provider, build_send, sent_id)
                   VALUES ('fax', 'fax', 'ventros.waha_send_request(ventros.channels, ventros.messages)', 'ventros.waha_sent_id(jsonb)')$$,
                 '23503', NULL, 'a channel provider names a registered provider (one list)');

-- a provider defined here
CREATE FUNCTION pg_temp.tp_verify(config jsonb, headers jsonb, body bytea) RETURNS text LANGUAGE sql AS $$
    SELECT CASE WHEN headers->>'x-tp-token' = config->>'token' THEN NULL ELSE 'invalid_token' END
$$;
CREATE FUNCTION pg_temp.tp_split(config jsonb, doc jsonb, body bytea, headers jsonb) RETURNS SETOF ventros.inbox_item
LANGUAGE sql AS $$
    SELECT ROW('message', 'msg:' || (m->>'id'), m, NULL, 'received', NULL)::ventros.inbox_item
    FROM jsonb_array_elements(doc->'messages') m
$$;
CREATE FUNCTION pg_temp.tp_process(r ventros.inbox, ch ventros.channels) RETURNS ventros.inbox_outcome LANGUAGE sql AS $$
    SELECT ventros.inbound_message(ch, r.item->>'from', false, r.item->>'id', 'text', r.item->>'text', now())
$$;
CREATE FUNCTION pg_temp.tp_challenge(config jsonb, mode text, verify_token text, challenge text) RETURNS text
LANGUAGE sql AS $$ SELECT CASE WHEN verify_token = config->>'token' THEN 'ok:' || challenge END $$;
CREATE FUNCTION pg_temp.tp_send(ch ventros.channels, m ventros.messages) RETURNS jsonb LANGUAGE sql AS $$ SELECT NULL::jsonb $$;
CREATE FUNCTION pg_temp.tp_sent_id(answer jsonb) RETURNS text LANGUAGE sql AS $$ SELECT NULL::text $$;

SELECT throws_ok($$SELECT ventros.register_inbound_provider('tp', 'pg_temp.tp_split(jsonb, jsonb, bytea, jsonb)',
                   'pg_temp.tp_split(jsonb, jsonb, bytea, jsonb)', 'pg_temp.tp_process(ventros.inbox, ventros.channels)')$$,
                 '22023', NULL, 'a verify function of another shape is refused');
SELECT throws_ok($$SELECT ventros.register_inbound_provider('tp', 'pg_temp.tp_verify(jsonb, jsonb, bytea)',
                   'pg_temp.tp_verify(jsonb, jsonb, bytea)', 'pg_temp.tp_process(ventros.inbox, ventros.channels)')$$,
                 '22023', NULL, 'a split function of another shape is refused');
SELECT throws_ok($$SELECT ventros.register_inbound_provider('Bad-Name', 'pg_temp.tp_verify(jsonb, jsonb, bytea)',
                   'pg_temp.tp_split(jsonb, jsonb, bytea, jsonb)', 'pg_temp.tp_process(ventros.inbox, ventros.channels)')$$,
                 '23514', NULL, 'a provider name is a lower-case URL segment');
SELECT lives_ok($$SELECT ventros.register_inbound_provider('tp', 'pg_temp.tp_verify(jsonb, jsonb, bytea)',
                   'pg_temp.tp_split(jsonb, jsonb, bytea, jsonb)', 'pg_temp.tp_process(ventros.inbox, ventros.channels)',
                   'pg_temp.tp_challenge(jsonb, text, text, text)')$$, 'a provider is registered by a row of functions');
SELECT ventros.register_channel_provider('tp_kind', 'tp', 'pg_temp.tp_send(ventros.channels, ventros.messages)',
                                         'pg_temp.tp_sent_id(jsonb)');

SELECT ventros.create_tenant('reg_a', 'Registry A');
SET LOCAL ventros.tenant = 'reg_a';
SELECT throws_ok($$SELECT ventros.create_channel('TP', 'tp_kind')$$, '22023', 'unknown channel type "tp_kind"',
                 'a channel kind must be in the system catalogue');
SET LOCAL ventros.tenant = 'ventros';
INSERT INTO ventros.channel_types (tenant_id, type_id, name, provider) VALUES ('ventros', 98, 'tp_kind', 'tp');
SET LOCAL ventros.tenant = 'reg_a';
CREATE TEMP TABLE tp_ch AS SELECT (ventros.create_channel('TP', 'tp_kind', config => '{"token": "s3cret"}')).id;
GRANT SELECT ON tp_ch TO PUBLIC;
SELECT ok((SELECT id FROM tp_ch) IS NOT NULL, 'a channel of the new kind is created once the catalogue has it');
RESET ventros.tenant;

CREATE FUNCTION pg_temp.post(provider text, token text, body text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    result text;
BEGIN
    SET LOCAL ROLE ventros_anon;
    SELECT a.http_status || ' ' || a.response::text INTO result
    FROM ventros.accept_webhook(provider, (SELECT id::text FROM tp_ch), jsonb_build_object('X-Tp-Token', token),
                                convert_to(body, 'UTF8')) a;
    RESET ROLE;
    RETURN result;
END
$$;

SELECT is(pg_temp.post('tp', 'wrong', '{"messages": [{"id": "m1", "from": "+5511966660001", "text": "hi"}]}'),
          '401 {"error": "invalid_signature"}', 'the provider''s verify function refuses a wrong token');
SELECT matches(pg_temp.post('tp', 's3cret', '{"messages": [{"id": "m1", "from": "+5511966660001", "text": "hi"}, {"id": "m2", "from": "+5511966660001", "text": "there"}]}'),
               '^200 \{"status": "accepted"', 'a verified delivery is accepted');
SET LOCAL ventros.tenant = 'reg_a';
SELECT is((SELECT array_agg(i.provider || ' ' || i.dedupe_key || ' ' || i.status ORDER BY i.item_index) FROM ventros.inbox i
           WHERE i.channel_id = (SELECT id FROM tp_ch)),
          '{"tp msg:m1 processed","tp msg:m2 processed"}', 'split by the provider''s function into two items, both processed');
SELECT is((SELECT array_agg(m.text ORDER BY m.channel_message_id) FROM ventros.messages m WHERE m.channel_id = (SELECT id FROM tp_ch)),
          '{hi,there}', 'processed by the provider''s function into messages');
SELECT is((SELECT last_reason FROM ventros.channel_webhook_rejections WHERE channel_id = (SELECT id FROM tp_ch)),
          'invalid_token', 'the refusal is counted with the verify function''s reason');
RESET ventros.tenant;
SELECT is(pg_temp.post('waha', 's3cret', '{"messages": []}'), '404 {"error": "channel_not_found"}',
          'another provider''s URL does not reach the channel');
SELECT is(ventros.webhook_challenge('tp', (SELECT id::text FROM tp_ch), 'subscribe', 's3cret', '42'), 'ok:42',
          'the handshake is the provider''s challenge function');
SELECT throws_ok($$SELECT ventros.webhook_challenge('nosuchprov', (SELECT id::text FROM tp_ch), 'subscribe', 'x', '1')$$,
                 'P0002', NULL, 'a handshake for a provider not registered: P0002 (the front answers 404)');

SELECT * FROM finish();
ROLLBACK;
