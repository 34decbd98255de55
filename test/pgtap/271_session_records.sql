-- A session's counters and response times follow the messages written on it,
-- never a caller's word (docs/security.md): the messages' insert trigger
-- records them (record_new_messages, as the owner); the functions that
-- recorded a message on request are gone or no tenant role's, so an agent
-- cannot record messages that were never written (forging counters and the
-- first response), nor an administrator recount a session at will.
BEGIN;
SELECT plan(14);
SELECT ventros.create_tenant('t_srec', 'Session records');
SET LOCAL ventros.tenant = 't_srec';
CREATE TEMP TABLE ids (name text PRIMARY KEY, id uuid);
GRANT ALL ON ids TO PUBLIC;
CREATE FUNCTION pg_temp.id(n text) RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM ids WHERE name = n $$;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA pg_temp TO PUBLIC;
INSERT INTO ids SELECT 'ch', id FROM ventros.create_channel('WA', 'whatsapp');
INSERT INTO ids SELECT 'in', id FROM ventros.receive_message(pg_temp.id('ch'), '+5511900000001', 'Oi',
                                                             sent_at => now() - interval '10 minutes');
INSERT INTO ids SELECT 's', session_id FROM ventros.messages WHERE id = pg_temp.id('in');
INSERT INTO ids SELECT 'contact', contact_id FROM ventros.messages WHERE id = pg_temp.id('in');

-- ---- written messages are recorded, whoever writes them
SELECT results_eq(format($$SELECT message_count, messages_from_contact, first_contact_message_at = now() - interval '10 minutes'
                           FROM ventros.sessions WHERE id = %L$$, pg_temp.id('s')),
                  $$VALUES (1, 1, true)$$, 'an inbound message is recorded on its session');
INSERT INTO ids SELECT 'out', ventros_test.run_as('ventros_agent', 't_srec',
    format($$SELECT (ventros.send_message(%L, %L, 'Olá', source => 'system')).id$$, pg_temp.id('ch'), pg_temp.id('contact')))::uuid;
SELECT results_eq(format($$SELECT message_count, messages_from_agent, agent_response_time_seconds FROM ventros.sessions WHERE id = %L$$,
                         pg_temp.id('s')),
                  $$VALUES (2, 1, 600)$$, 'an agent''s reply is recorded on its session, with the first response time');

-- ---- recording on request: no tenant role's
SELECT is(ventros_test.run_as('ventros_agent', 't_srec', format(
              $$SELECT count(*) FROM ventros.sessions s, ventros.record_session_messages(ARRAY[s], '{true}', ARRAY[now()], ARRAY[%L]::uuid[])
                WHERE s.id = %L$$, pg_temp.id('out'), pg_temp.id('s'))),
          'ERROR 42501: permission denied for function record_session_messages',
          'an agent cannot record a message on a session (record_session_messages: 42501)');
SELECT is(ventros_test.run_as('ventros_agent', 't_srec', format(
              $$SELECT ventros.record_messages_effects(ARRAY[m]) FROM ventros.messages m WHERE m.id = %L$$, pg_temp.id('out'))),
          'ERROR 42883: function ventros.record_messages_effects(ventros.messages[]) does not exist',
          'nor record a message again (record_messages_effects is gone)');
SELECT is(ventros_test.run_as('ventros_agent', 't_srec', format(
              $$SELECT ventros.record_message_effects(m, s) FROM ventros.messages m, ventros.sessions s WHERE m.id = %L AND s.id = m.session_id$$,
              pg_temp.id('in'))),
          'ERROR 42883: function ventros.record_message_effects(ventros.messages, ventros.sessions) does not exist',
          'nor its one-message case (gone)');
SELECT is(ventros_test.run_as('ventros_agent', 't_srec', format(
              $$SELECT ventros.record_session_message(s, false, now() - interval '1 hour', gen_random_uuid()) FROM ventros.sessions s WHERE s.id = %L$$,
              pg_temp.id('s'))),
          'ERROR 42883: function ventros.record_session_message(ventros.sessions, boolean, timestamp with time zone, uuid) does not exist',
          'nor record a message that was never written (record_session_message is gone)');
SELECT is(ventros_test.run_as('ventros_admin', 't_srec', format(
              $$SELECT ventros.recount_session(s, ARRAY[gen_random_uuid()]) FROM ventros.sessions s WHERE s.id = %L$$, pg_temp.id('s'))),
          'ERROR 42883: function ventros.recount_session(ventros.sessions, uuid[]) does not exist',
          'nor an administrator recount a session at will (recount_session is gone; consolidate_sessions recounts)');
SELECT is((SELECT array_agg(r.rolname::text ORDER BY r.rolname) FROM pg_roles r
           WHERE r.rolname IN ('ventros_viewer', 'ventros_agent', 'ventros_admin', 'ventros_anon')
             AND has_function_privilege(r.oid, 'ventros.record_session_messages(ventros.sessions[], boolean[], timestamptz[], uuid[])', 'EXECUTE')),
          NULL, 'no tenant role may execute record_session_messages (so it is not served at /rpc)');
SELECT results_eq(format($$SELECT message_count, messages_from_contact, messages_from_agent, agent_response_time_seconds,
                                  first_contact_message_at = now() - interval '10 minutes'
                           FROM ventros.sessions WHERE id = %L$$, pg_temp.id('s')),
                  $$VALUES (2, 1, 1, 600, true)$$, 'the session''s counters and response times are unchanged');
SELECT is((SELECT count(*)::integer FROM ventros.outbox WHERE aggregate_id = pg_temp.id('s') AND event_type = 'session.message_recorded'),
          2, 'one session.message_recorded per message written, none forged');

-- ---- several messages of one session in one statement: recorded in order
INSERT INTO ventros.messages ("timestamp", project_id, channel_id, session_id, contact_id, from_me, text, status)
SELECT now() - x.ago, ventros.default_project(), pg_temp.id('ch'), pg_temp.id('s'), pg_temp.id('contact'), false, x.t, 'delivered'
FROM (VALUES (interval '2 minutes', 'second'), (interval '1 minute', 'third')) x(ago, t);
SELECT results_eq(format($$SELECT message_count, messages_from_contact FROM ventros.sessions WHERE id = %L$$, pg_temp.id('s')),
                  $$VALUES (4, 3)$$, 'two messages of one session in one statement: both recorded');
SELECT is((SELECT array_agg((payload->>'message_count')::integer ORDER BY seq) FROM ventros.outbox
           WHERE aggregate_id = pg_temp.id('s') AND event_type = 'session.message_recorded'),
          '{1,2,3,4}'::integer[], 'one event per message, in order');
SELECT ok((SELECT last_interaction_at IS NOT NULL AND first_interaction_at = now() - interval '10 minutes'
           FROM ventros.contacts WHERE id = pg_temp.id('contact')), 'the contact''s interaction times follow');
-- a message written on a session that is not active is refused, as before
SELECT ventros.close_session(pg_temp.id('s'));
SELECT throws_ok(format($$INSERT INTO ventros.messages (project_id, channel_id, session_id, contact_id, from_me, text, status)
                          VALUES (ventros.default_project(), %L, %L, %L, false, 'late', 'delivered')$$,
                        pg_temp.id('ch'), pg_temp.id('s'), pg_temp.id('contact')),
                 'VN002', NULL, 'a message on a closed session: VN002');

SELECT * FROM finish();
ROLLBACK;
