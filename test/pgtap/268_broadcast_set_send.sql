-- A broadcast sends each batch as one set (ventros.send_messages, through
-- journey_sends and send_broadcast_executions): the rules of send_message
-- hold for every contact of the batch, a contact refused (opted out since
-- the broadcast started, no address on the provider) fails alone with
-- nothing written for it, the others get exactly one message and one
-- provider request each, with the same content, request and events as
-- send_message gives one contact; sessions are started, continued or woken
-- as for one send; the counts are exact.
BEGIN;
SELECT plan(35);

SELECT ventros.create_tenant('setsend_t', 'Set-based send');
SET LOCAL ventros.tenant = 'setsend_t';

SET LOCAL ROLE ventros_admin;
CREATE TEMP TABLE ids (name text PRIMARY KEY, id uuid);
GRANT SELECT, INSERT ON ids TO PUBLIC;
CREATE FUNCTION pg_temp.id(n text) RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM ids WHERE name = n $$;
INSERT INTO ids SELECT 'ch', id FROM ventros.create_channel('WAHA', 'waha',
    config => '{"base_url": "http://waha.test:3000", "session": "default", "api_key": "k1"}');
INSERT INTO ids SELECT 'l', id FROM ventros.create_contact_list('Five', true);
INSERT INTO ids SELECT 'new', id FROM ventros.create_contact('New', phone => '+5511900000001');
INSERT INTO ids SELECT 'active', id FROM ventros.create_contact('Active', phone => '+5511900000002');
INSERT INTO ids SELECT 'optout', id FROM ventros.create_contact('Opted out', phone => '+5511900000003');
INSERT INTO ids SELECT 'noaddr', id FROM ventros.create_contact('No address');
INSERT INTO ids SELECT 'snoozed', id FROM ventros.create_contact('Snoozed', phone => '+5511900000005');
INSERT INTO ids SELECT 'single', id FROM ventros.create_contact('Single', phone => '+5511900000006');
INSERT INTO ids SELECT 'other', id FROM ventros.create_contact('Other', phone => '+5511900000007');
SELECT ventros.add_contact_to_list(pg_temp.id('l'), pg_temp.id(n)) FROM unnest('{new,active,optout,noaddr,snoozed}'::text[]) n;
-- an active session, and a snoozed one, before the broadcast
INSERT INTO ids SELECT 's_active', id FROM ventros.start_or_continue_session(pg_temp.id('active'), pg_temp.id('ch'));
INSERT INTO ids SELECT 's_snoozed', id FROM ventros.start_or_continue_session(pg_temp.id('snoozed'), pg_temp.id('ch'));
SELECT ventros.snooze_session(pg_temp.id('s_snoozed'), now() + interval '1 day');
INSERT INTO ids SELECT 'b', id FROM ventros.create_broadcast('Five sends', pg_temp.id('l'), pg_temp.id('ch'),
                                                            '{"type": "text", "content": "Promo: 20% off"}');
SELECT ventros.execute_broadcast(pg_temp.id('b'));
-- opted out after the broadcast started: its execution is pending, its send refused
SELECT ventros.set_contact_consent(pg_temp.id('optout'), false, pg_temp.id('ch'));
RESET ROLE;

CREATE FUNCTION pg_temp.stats(b uuid) RETURNS text LANGUAGE sql AS $$
    SELECT format('total %s, sent %s, failed %s, sending %s, pending %s, skipped %s, %s', s->>'total_contacts', s->>'sent',
                  s->>'failed', s->>'sending', s->>'pending', s->>'skipped', s->>'status')
    FROM ventros.broadcast_stats(b) s
$$;
CREATE FUNCTION pg_temp.execution(n text) RETURNS ventros.broadcast_executions LANGUAGE sql AS $$
    SELECT e FROM ventros.broadcast_executions e WHERE e.broadcast_id = pg_temp.id('b') AND e.contact_id = pg_temp.id(n)
$$;
CREATE FUNCTION pg_temp.message(n text) RETURNS ventros.messages LANGUAGE sql AS $$
    SELECT m FROM ventros.messages m WHERE m.id = (pg_temp.execution(n)).message_id
$$;

SELECT is(pg_temp.stats(pg_temp.id('b')), 'total 5, sent 0, failed 0, sending 0, pending 5, skipped 0, running',
          'five pending before the batch');

-- ---- one batch: three sent, two refused -----------------------------------------
SET LOCAL ROLE ventros_agent;
SELECT is(ventros.send_broadcast_batch(pg_temp.id('b')), 5, 'the batch sends five');
RESET ROLE;
SELECT is(pg_temp.stats(pg_temp.id('b')), 'total 5, sent 0, failed 2, sending 3, pending 0, skipped 0, running',
          'three wait for the provider, two failed at once; exact counts');
SELECT is((SELECT b.failed_count FROM ventros.broadcasts b WHERE b.id = pg_temp.id('b')), 2, 'failed_count is 2');
SELECT is((SELECT b.pending_count FROM ventros.broadcasts b WHERE b.id = pg_temp.id('b')), 0, 'pending_count is 0');
SELECT is((pg_temp.execution('optout')).status || ': ' || (pg_temp.execution('optout')).error,
          format('failed: contact %s opted out of messages on channel %s', pg_temp.id('optout'), pg_temp.id('ch')),
          'the opted-out contact fails with send_message''s refusal (VN010)');
SELECT is((pg_temp.execution('noaddr')).status || ': ' || (pg_temp.execution('noaddr')).error,
          format('failed: contact %s has no WhatsApp id or phone to send to on a waha channel', pg_temp.id('noaddr')),
          'the contact without an address fails with the provider''s refusal');
SELECT is((SELECT count(*)::int FROM ventros.messages m WHERE m.contact_id IN (pg_temp.id('optout'), pg_temp.id('noaddr'))), 0,
          'no message for a refused contact');
SELECT is((SELECT count(*)::int FROM ventros.sessions s WHERE s.contact_id IN (pg_temp.id('optout'), pg_temp.id('noaddr'))), 0,
          'no session for a refused contact (its round was undone)');
SELECT is((SELECT count(*)::int FROM ventros.broadcast_executions e
           WHERE e.broadcast_id = pg_temp.id('b') AND e.status = 'sending' AND e.message_id IS NOT NULL), 3,
          'each sending execution has its message');
SELECT is((SELECT count(*)::int FROM ventros.messages m WHERE m.source = 'broadcast' AND m.metadata->>'broadcast_id' = pg_temp.id('b')::text),
          3, 'three broadcast messages');
SELECT is((SELECT count(*)::int FROM ventros.http_requests r JOIN ventros.broadcast_executions e ON e.message_id = r.correlation_id
           WHERE e.broadcast_id = pg_temp.id('b') AND r.purpose = 'message.send'), 3, 'one provider request per message sent');
SELECT is((SELECT count(DISTINCT r.correlation_id)::int FROM ventros.http_requests r WHERE r.purpose = 'message.send'), 3,
          'no message has two requests');
SELECT is((SELECT string_agg(r.body_json->>'chatId', ', ' ORDER BY r.body_json->>'chatId')
           FROM (SELECT convert_from(r.body, 'UTF8')::jsonb AS body_json FROM ventros.http_requests r
                 WHERE r.purpose = 'message.send') r),
          '5511900000001@c.us, 5511900000002@c.us, 5511900000005@c.us', 'each request to its own contact');
SELECT is((SELECT (ventros.channel_message_counts(pg_temp.id('ch'))).messages_sent), 3::bigint,
          'the channel counts three sent');

-- sessions: started, continued, woken
SELECT is((pg_temp.message('active')).session_id, pg_temp.id('s_active'), 'an active session is continued');
SELECT is((SELECT s.message_count FROM ventros.sessions s WHERE s.id = pg_temp.id('s_active')), 1,
          'the continued session counts the message');
SELECT is((SELECT s.status FROM ventros.sessions s WHERE s.id = pg_temp.id('s_snoozed')), 'active',
          'a snoozed session is woken by the send');
SELECT is((pg_temp.message('snoozed')).session_id, pg_temp.id('s_snoozed'), 'the woken session holds the message');
SELECT is((SELECT s.status || ' ' || s.message_count FROM ventros.sessions s WHERE s.id = (pg_temp.message('new')).session_id),
          'active 1', 'a contact without a session gets a new one');

-- ---- the same message, request and events as send_message ---------------------------
SET LOCAL ROLE ventros_agent;
INSERT INTO ids SELECT 'm_single', id FROM ventros.send_message(
    pg_temp.id('ch'), pg_temp.id('single'), text => 'Promo: 20% off', source => 'broadcast',
    metadata => jsonb_build_object('broadcast_id', pg_temp.id('b'), 'template', '{"type": "text", "content": "Promo: 20% off"}'::jsonb));
RESET ROLE;
SELECT is((SELECT to_jsonb(m) - '{id,contact_id,session_id,created_at,updated_at,timestamp}'::text[]
           FROM ventros.messages m WHERE m.id = pg_temp.id('m_single')),
          to_jsonb(pg_temp.message('new')) - '{id,contact_id,session_id,created_at,updated_at,timestamp}'::text[],
          'a broadcast message is the message send_message stores (content, status, agent, source, metadata)');
SELECT is((SELECT jsonb_build_object('method', r.method, 'url', r.url, 'headers', r.headers, 'retry', r.retry_policy,
                                     'body', convert_from(r.body, 'UTF8')::jsonb - 'chatId')
           FROM ventros.http_requests r WHERE r.correlation_id = pg_temp.id('m_single')),
          (SELECT jsonb_build_object('method', r.method, 'url', r.url, 'headers', r.headers, 'retry', r.retry_policy,
                                     'body', convert_from(r.body, 'UTF8')::jsonb - 'chatId')
           FROM ventros.http_requests r WHERE r.correlation_id = (pg_temp.message('new')).id),
          'and its provider request is send_message''s');
SELECT is(ventros_test.events_of(pg_temp.id('m_single')), ventros_test.events_of((pg_temp.message('new')).id),
          'the message''s events are send_message''s');
SELECT is(ventros_test.events_of((pg_temp.message('new')).session_id), ARRAY['session.started', 'session.message_recorded'],
          'a new session: started, then the message recorded');
SELECT is(ventros_test.events_of((pg_temp.message('new')).session_id),
          ventros_test.events_of((SELECT m.session_id FROM ventros.messages m WHERE m.id = pg_temp.id('m_single'))),
          'the session''s events are send_message''s');
SELECT is((SELECT o.payload->>'message_id' FROM ventros.outbox o
           WHERE o.aggregate_id = (pg_temp.message('active')).session_id AND o.event_type = 'session.message_recorded'),
          (pg_temp.message('active')).id::text, 'session.message_recorded names its message');

-- ---- send_messages: each contact's refusal as data, send_message raises it -------------
SET LOCAL ROLE ventros_agent;
CREATE TEMP TABLE sends AS
SELECT s.* FROM ventros.send_messages(pg_temp.id('ch'),
    ARRAY[pg_temp.id('other'), pg_temp.id('optout'), pg_temp.id('noaddr'), '00000000-0000-0000-0000-0000000000ff'::uuid],
    text => 'Hello', source => 'broadcast') s;
RESET ROLE;
SELECT is((SELECT string_agg(coalesce(s.error_code, 'queued'), ', ' ORDER BY s.error_code NULLS FIRST) FROM sends s),
          'queued, 22023, P0002, VN010', 'send_messages answers each contact: queued, no address, not found, opted out');
SELECT ok((SELECT s.request_id IS NOT NULL AND (s.message).status = 'queued' FROM sends s WHERE s.error_code IS NULL),
          'the queued one has its message and request');
SELECT is((SELECT s.error_hint FROM sends s WHERE s.error_code = 'VN010'),
          'Record a new opt-in with ventros.set_contact_consent() before sending.', 'a refusal keeps its hint');
SELECT is((SELECT count(*)::int FROM ventros.messages m WHERE m.contact_id IN (pg_temp.id('optout'), pg_temp.id('noaddr'))), 0,
          'nothing written for the refused');
SET LOCAL ROLE ventros_agent;
SELECT throws_ok(format('SELECT ventros.send_message(%L, %L, ''x'', source => ''broadcast'')', pg_temp.id('ch'), pg_temp.id('noaddr')), '22023',
                 format('contact %s has no WhatsApp id or phone to send to on a waha channel', pg_temp.id('noaddr')),
                 'send_message raises the same refusal');
SELECT throws_ok(format('SELECT ventros.send_message(%L, %L, ''x'', source => ''broadcast'')', pg_temp.id('ch'), pg_temp.id('optout')), 'VN010',
                 format('contact %s opted out of messages on channel %s', pg_temp.id('optout'), pg_temp.id('ch')),
                 'and the opt-out');
SELECT throws_ok(format('SELECT ventros.send_message(%L, %L, ''x'', source => ''broadcast'')', pg_temp.id('ch'), '00000000-0000-0000-0000-0000000000ff'),
                 'P0002', 'contact 00000000-0000-0000-0000-0000000000ff not found', 'and a contact not found');
SELECT throws_ok(format('SELECT * FROM ventros.send_messages(%L, ARRAY[%L]::uuid[], text => repeat(''x'', 5000), source => ''broadcast'')',
                        pg_temp.id('ch'), pg_temp.id('other')),
                 '54000', 'message text is too long', 'what concerns the message refuses the whole set');
RESET ROLE;

-- ---- the broadcast completes on the outcomes ---------------------------------------------
UPDATE ventros.messages m SET status = 'sent', version = m.version
WHERE m.source = 'broadcast' AND m.metadata->>'broadcast_id' = pg_temp.id('b')::text AND m.contact_id <> pg_temp.id('single');
SELECT is(pg_temp.stats(pg_temp.id('b')), 'total 5, sent 3, failed 2, sending 0, pending 0, skipped 0, completed',
          'three sent, two failed: completed');

SELECT * FROM finish();
ROLLBACK;
