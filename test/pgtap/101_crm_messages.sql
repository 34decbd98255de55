-- Messages: the inbound pipeline, idempotency, the status machine (every
-- allowed transition, a sample of disallowed ones), sending with consent and
-- agent rules, history import, bad input.
BEGIN;
SELECT plan(55);

SELECT ventros.create_tenant('crm_m', 'Messages');
SET LOCAL ventros.tenant = 'crm_m';
SET LOCAL ROLE ventros_admin;
CREATE TEMP TABLE ids AS SELECT ventros_test.new_channel('waha') AS channel, ventros_test.new_agent() AS agent;
-- as the owner, as the system writes (a tenant role's direct write is refused: 620_direct_writes.sql)
RESET ROLE;
UPDATE ventros.channels SET ai_enabled = true, config = '{"ai": {"voice": true}}', version = version
WHERE id = (SELECT channel FROM ids);
SET LOCAL ROLE ventros_admin;
GRANT SELECT ON ids TO PUBLIC;
SET LOCAL ROLE ventros_agent;

-- inbound
CREATE TEMP TABLE m1 AS SELECT * FROM ventros.receive_message((SELECT channel FROM ids), '5511988887777@c.us', 'Olá, preciso de ajuda',
                                                              channel_message_id => 'wamid.1', sender_name => 'Maria');
SELECT is((SELECT name FROM ventros.contacts WHERE id = (SELECT contact_id FROM m1)), 'Maria', 'a new sender becomes a contact');
SELECT is((SELECT phone FROM ventros.contacts WHERE id = (SELECT contact_id FROM m1)), '+5511988887777',
          'a WhatsApp sender''s phone is stored in E.164');
SELECT is((SELECT value FROM ventros.contact_identities WHERE contact_id = (SELECT contact_id FROM m1)), '5511988887777@c.us',
          'its WhatsApp id is an identity');
SELECT isnt((SELECT session_id FROM m1), NULL, 'the message belongs to a session');
SELECT results_eq($$SELECT status, from_me, delivered_at IS NOT NULL FROM m1$$, $$VALUES ('delivered'::text, false, true)$$,
                  'an inbound message is stored delivered, stamped');
SELECT results_eq($$SELECT message_count, messages_from_contact, first_contact_message_at IS NOT NULL, version
                    FROM ventros.sessions WHERE id = (SELECT session_id FROM m1)$$,
                  $$VALUES (1, 1, true, 1)$$, 'the session counts it (quiet columns: version unchanged)');
SELECT results_eq($$SELECT messages_received, messages_sent, last_message_at IS NOT NULL
                      FROM ventros.channel_message_counts((SELECT channel FROM ids))$$,
                  $$VALUES (1::bigint, 0::bigint, true)$$, 'the channel counts it');
SELECT is((SELECT count(*)::int FROM ventros.channel_message_counts), 0,
          'in no row another sender of the channel could lock (no slot row written)');
SELECT results_eq($$SELECT metric, quantity FROM ventros.usage_deltas WHERE channel_id = (SELECT channel FROM ids)$$,
                  $$VALUES ('messages_received'::text, 1::bigint)$$, 'but in an appended usage delta');
SET LOCAL ROLE ventros_platform_admin;  -- the scheduler's (500_security_authz.sql)
SELECT is(ventros.fold_usage(), 1, 'folding the usage');
SET LOCAL ROLE ventros_agent;
SELECT results_eq($$SELECT messages_received, version FROM ventros.channels WHERE id = (SELECT channel FROM ids)$$,
                  $$VALUES (1, 2)$$, 'updates the channel''s counters, without a new version');
SELECT is((SELECT count(*)::int FROM ventros.usage_deltas), 0, 'and empties the deltas');
SELECT results_eq($$SELECT messages_received FROM ventros.channel_message_counts((SELECT channel FROM ids))$$,
                  $$VALUES (1::bigint)$$, 'the exact total is the same after the fold');
SELECT isnt((SELECT last_interaction_at FROM ventros.contacts WHERE id = (SELECT contact_id FROM m1)), NULL,
            'the contact''s last interaction is set');
SELECT is((SELECT id FROM ventros.receive_message((SELECT channel FROM ids), '5511988887777@c.us', 'Olá, preciso de ajuda',
                                                  channel_message_id => 'wamid.1')), (SELECT id FROM m1),
          'a repeated provider message id returns the stored message');
SELECT is((SELECT count(*)::int FROM ventros.messages), 1, 'and writes nothing');
CREATE TEMP TABLE m2 AS SELECT * FROM ventros.receive_message((SELECT channel FROM ids), '5511988887777@c.us', 'segunda',
                                                              channel_message_id => 'wamid.2');
SELECT results_eq($$SELECT contact_id, session_id FROM m2$$, $$SELECT contact_id, session_id FROM m1$$,
                  'the next message continues the contact and session');
SELECT is((SELECT count(*)::int FROM ventros.outbox WHERE event_type = 'message.created'), 2, 'message.created per message');
SELECT is((SELECT count(*)::int FROM ventros.outbox WHERE event_type = 'session.message_recorded'), 2,
          'session.message_recorded per message');
SELECT is((SELECT count(*)::int FROM ventros.outbox WHERE event_type IN ('session.updated', 'channel.updated', 'contact.updated')
           AND seq > (SELECT min(seq) FROM ventros.outbox WHERE event_type = 'message.created')), 0,
          'counters emit no updated events');
CREATE TEMP TABLE m3 AS SELECT * FROM ventros.receive_message((SELECT channel FROM ids), '5511988887777@c.us', NULL, 'voice',
                                                              'wamid.3', media_url => 'https://media.example/v.ogg');
SELECT is((SELECT count(*)::int FROM ventros.outbox WHERE event_type = 'message.voice_processing_requested'
             AND aggregate_id = (SELECT id FROM m3)), 1, 'a voice note on an AI channel requests processing');
SELECT throws_ok(format('SELECT ventros.receive_message(%L, %L, NULL)', (SELECT channel FROM ids), '5511988887777@c.us'),
                 '23514', NULL, 'a text message without text is refused');
SELECT throws_ok(format('SELECT ventros.receive_message(%L, %L, NULL, %L)', (SELECT channel FROM ids), '5511988887777@c.us', 'image'),
                 '23514', NULL, 'a media message without media_url is refused');
SELECT throws_ok(format('SELECT ventros.receive_message(%L, %L, repeat(%L, 4097))', (SELECT channel FROM ids), '5511988887777@c.us', 'x'),
                 '54000', 'message text is too long', 'text over 4096 characters is refused');
SELECT throws_ok(format('SELECT ventros.receive_message(%L, %L, %L)', gen_random_uuid(), '5511988887777@c.us', 'x'),
                 'P0002', NULL, 'an unknown channel is not found');
SELECT throws_ok(format('SELECT ventros.receive_message(%L, %L, %L)', (SELECT channel FROM ids), ' ', 'x'),
                 '23502', NULL, 'an empty sender is refused');
SELECT is((SELECT count(*)::int FROM ventros.messages), 3, 'refused messages wrote nothing');
-- a @lid sender is another identity
CREATE TEMP TABLE lid AS SELECT * FROM ventros.receive_message((SELECT channel FROM ids), '123456789@lid', 'hi', channel_message_id => 'lid.1');
SELECT is((SELECT identity_type || ' ' || value FROM ventros.contact_identities i WHERE i.contact_id = (SELECT contact_id FROM lid)),
          'whatsapp_lid 123456789@lid', 'a WhatsApp @lid sender is stored as a whatsapp_lid identity');

-- outbound
CREATE TEMP TABLE o1 AS SELECT * FROM ventros.send_message((SELECT channel FROM ids), (SELECT contact_id FROM m1), 'Claro!',
                                                           (SELECT agent FROM ids));
SELECT results_eq($$SELECT status, from_me, session_id FROM o1$$, $$SELECT 'queued'::text, true, session_id FROM m1$$,
                  'an outbound message is queued on the contact''s session');
SELECT results_eq($$SELECT first_agent_response_at IS NOT NULL, messages_from_agent FROM ventros.sessions WHERE id = (SELECT session_id FROM m1)$$,
                  $$VALUES (true, 1)$$, 'the first agent response is recorded');
SELECT throws_ok(format('SELECT ventros.send_message(%L, %L, %L)', (SELECT channel FROM ids), (SELECT contact_id FROM m1), 'x'),
                 '23502', 'an outbound message needs its sending agent', 'a manual send needs an agent');
SELECT is((ventros.send_message((SELECT channel FROM ids), (SELECT contact_id FROM m1), 'promo', source => 'broadcast')).agent_id,
          '00000000-0000-0000-0000-000000000001'::uuid, 'a broadcast is sent by system agent …01');
SELECT throws_ok(format('SELECT ventros.send_message(%L, %L, %L, %L)', (SELECT channel FROM ids), (SELECT contact_id FROM m1), 'x',
                        (SELECT id FROM ventros.agents WHERE type = 'system' LIMIT 0)), '23502', NULL, 'a NULL agent is refused');
RESET ROLE; SET LOCAL ROLE ventros_admin;
CREATE TEMP TABLE va AS SELECT (ventros.create_virtual_agent('Former Joe', 'left the company')).id;
GRANT SELECT ON va TO PUBLIC;
SET LOCAL ROLE ventros_agent;
SELECT throws_ok(format('SELECT ventros.send_message(%L, %L, %L, %L)', (SELECT channel FROM ids), (SELECT contact_id FROM m1), 'x',
                        (SELECT id FROM va)), '22023', NULL, 'a virtual agent cannot send');
-- consent
SELECT ventros.set_contact_consent((SELECT contact_id FROM m1), false, (SELECT channel FROM ids), 'inbound_keyword', 'STOP');
SELECT throws_ok(format('SELECT ventros.send_message(%L, %L, %L, %L)', (SELECT channel FROM ids), (SELECT contact_id FROM m1), 'x',
                        (SELECT agent FROM ids)), 'VN010', NULL, 'a contact who opted out of the channel is not messaged');
SELECT throws_ok(format('SELECT ventros.send_message(%L, %L, %L, source => %L)', (SELECT channel FROM ids), (SELECT contact_id FROM m1),
                        'x', 'broadcast'), 'VN010', NULL, 'not by a broadcast either');
SELECT ventros.set_contact_consent((SELECT contact_id FROM m1), true, (SELECT channel FROM ids));
SELECT lives_ok(format('SELECT ventros.send_message(%L, %L, %L, %L)', (SELECT channel FROM ids), (SELECT contact_id FROM m1), 'x',
                       (SELECT agent FROM ids)), 'after opting in again the contact is messaged');

-- the status machine, every allowed move
CREATE FUNCTION pg_temp.out_msg(content text DEFAULT 'text') RETURNS uuid LANGUAGE sql AS $$
    SELECT (ventros.send_message((SELECT channel FROM ids), (SELECT contact_id FROM m1),
                                 CASE WHEN content = 'text' THEN 'x' END, (SELECT agent FROM ids), content_type => content,
                                 media_url => CASE WHEN content <> 'text' THEN 'https://m.example/a.ogg' END)).id
$$;
CREATE FUNCTION pg_temp.walk(content text, VARIADIC steps text[]) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    m uuid := pg_temp.out_msg(content);
    st text;
BEGIN
    FOREACH st IN ARRAY steps LOOP
        PERFORM ventros.confirm_message_status(st, m);
    END LOOP;
    RETURN (SELECT status || ':' || (sent_at IS NOT NULL) || (delivered_at IS NOT NULL) || (read_at IS NOT NULL)
            || (played_at IS NOT NULL) || (failed_at IS NOT NULL) FROM ventros.messages WHERE id = m);
END
$$;
SELECT is(pg_temp.walk('text', 'sent'), 'sent:truefalsefalsefalsefalse', 'queued -> sent stamps sent_at');
SELECT is(pg_temp.walk('text', 'sent', 'delivered', 'read'), 'read:truetruetruefalsefalse', 'sent -> delivered -> read');
SELECT is(pg_temp.walk('text', 'delivered'), 'delivered:truetruefalsefalsefalse', 'queued -> delivered (skip) stamps the skipped steps');
SELECT is(pg_temp.walk('text', 'read'), 'read:truetruetruefalsefalse', 'queued -> read');
SELECT is(pg_temp.walk('text', 'sent', 'read'), 'read:truetruetruefalsefalse', 'sent -> read');
SELECT is(pg_temp.walk('audio', 'sent', 'delivered', 'read', 'played'), 'played:truetruetruetruefalse', 'read -> played for audio');
SELECT is(pg_temp.walk('voice', 'played'), 'played:truetruetruetruefalse', 'queued -> played for voice');
SELECT is(pg_temp.walk('voice', 'sent', 'played'), 'played:truetruetruetruefalse', 'sent -> played');
SELECT is(pg_temp.walk('voice', 'delivered', 'played'), 'played:truetruetruetruefalse', 'delivered -> played');
SELECT is(pg_temp.walk('text', 'failed'), 'failed:falsefalsefalsefalsetrue', 'queued -> failed');
SELECT is(pg_temp.walk('text', 'sent', 'failed'), 'failed:truefalsefalsefalsetrue', 'sent -> failed');
SELECT is(pg_temp.walk('text', 'read', 'delivered'), 'read:truetruetruefalsefalse', 'a late delivery ack after read changes nothing');
-- disallowed
SELECT throws_ok($$SELECT pg_temp.walk('text', 'failed', 'delivered')$$, 'VN002', NULL, 'failed -> delivered is refused');
SELECT throws_ok($$SELECT pg_temp.walk('text', 'delivered', 'failed')$$, 'VN002', NULL, 'delivered -> failed is refused');
SELECT throws_ok($$SELECT pg_temp.walk('text', 'played')$$, '23514', NULL, 'played is for audio and voice only');
RESET ROLE;	-- a message's delivery state only moves forward, whoever writes
SELECT throws_ok($$UPDATE ventros.messages SET status = 'queued', version = version WHERE status = 'read'$$, 'VN002', NULL,
                 'read -> queued (backwards) is refused');
SET LOCAL ROLE ventros_agent;
SELECT throws_ok($$SELECT ventros.confirm_message_status('seen', (SELECT id FROM o1))$$, '22023', NULL, 'an unknown status is refused');
-- confirm by provider id
SELECT is((ventros.confirm_message_status('read', channel_id => (SELECT channel FROM ids),
                                          channel_message_id => (ventros.mark_message_sent((SELECT id FROM o1), 'out.1')).channel_message_id)).status,
          'read', 'a confirmation finds the message by channel and provider id');

SELECT * FROM finish();
ROLLBACK;
