-- Chats and participants, notes, canned responses, agent sessions.
BEGIN;
SELECT plan(33);

SELECT ventros.create_tenant('crm_c', 'Chats');
SET LOCAL ventros.tenant = 'crm_c';
SET LOCAL ROLE ventros_admin;
CREATE TEMP TABLE ids AS SELECT ventros_test.new_contact() AS contact, ventros_test.new_contact() AS contact2,
                                ventros_test.new_agent() AS agent, ventros_test.new_channel('waha') AS channel;

-- chats
SELECT throws_ok($$SELECT ventros.create_chat('individual')$$, '23502', 'an individual chat needs its contact', 'individual needs a contact');
SELECT throws_ok($$SELECT ventros.create_chat('individual', contact_id => (SELECT contact FROM ids), subject => 'x')$$, '23514', NULL,
                 'an individual chat has no subject');
SELECT throws_ok($$SELECT ventros.create_chat('group', subject => 'G')$$, '23502', NULL, 'a group needs a creator');
SELECT throws_ok($$SELECT ventros.create_chat('party')$$, '22023', NULL, 'an unknown chat type is refused');
CREATE TEMP TABLE ind AS SELECT * FROM ventros.create_chat('individual', (SELECT channel FROM ids), (SELECT contact FROM ids),
                                                           external_id => '5511@c.us');
SELECT is((SELECT count(*)::int FROM ventros.chat_participants WHERE chat_id = (SELECT id FROM ind)), 1, 'an individual chat has its contact');
SELECT throws_ok($$SELECT ventros.add_chat_participant((SELECT id FROM ind), (SELECT contact2 FROM ids))$$, '23514', NULL,
                 'an individual chat has exactly one contact');
SELECT throws_ok($$SELECT ventros.remove_chat_participant((SELECT id FROM ind), (SELECT contact FROM ids))$$, '23514', NULL,
                 'no removals from an individual chat');
SELECT throws_ok($$SELECT ventros.create_chat('individual', (SELECT channel FROM ids), (SELECT contact2 FROM ids), external_id => '5511@c.us')$$,
                 '23505', NULL, 'external ids are unique per channel');
CREATE TEMP TABLE g AS SELECT * FROM ventros.create_chat('group', (SELECT channel FROM ids), subject => 'Buyers', created_by => (SELECT agent FROM ids));
SELECT lives_ok($$SELECT ventros.add_chat_participant((SELECT id FROM g), (SELECT contact FROM ids))$$, 'a contact joins a group');
SELECT throws_ok($$SELECT ventros.add_chat_participant((SELECT id FROM g), (SELECT contact FROM ids))$$, '23505', NULL, 'no duplicates');
SELECT lives_ok($$SELECT ventros.set_chat_participant_admin((SELECT id FROM g), (SELECT contact FROM ids), true)$$, 'a participant is promoted');
SELECT lives_ok($$SELECT ventros.remove_chat_participant((SELECT id FROM g), (SELECT contact FROM ids))$$, 'a participant is removed');
SELECT lives_ok($$SELECT ventros.update_chat((SELECT id FROM g), 1, 'Buyers 2026')$$, 'the subject changes');
SELECT lives_ok($$SELECT ventros.set_chat_label((SELECT id FROM g), 'vip', true)$$, 'a label is added');
SELECT results_eq($$SELECT event_type FROM ventros.outbox WHERE aggregate_type = 'chat' AND aggregate_id = (SELECT id FROM g) ORDER BY seq$$,
                  $$VALUES ('chat.created'::text), ('chat.participant_added'), ('chat.participant_promoted'),
                           ('chat.participant_removed'), ('chat.updated'), ('chat.subject_updated'), ('chat.updated'), ('chat.label_added')$$,
                  'the chat''s events, in order');
-- chat state machine: every allowed move, and closed is terminal
SELECT is((ventros.set_chat_status((SELECT id FROM g), 3, 'archived')).status, 'archived', 'active -> archived');
SELECT is((ventros.set_chat_status((SELECT id FROM g), 4, 'active')).status, 'active', 'archived -> active');
SELECT is((ventros.set_chat_status((SELECT id FROM g), 5, 'closed')).status, 'closed', 'active -> closed');
SELECT is((ventros.set_chat_status((SELECT id FROM ind), 1, 'archived')).status, 'archived', 'active -> archived (individual)');
SELECT is((ventros.set_chat_status((SELECT id FROM ind), 2, 'closed')).status, 'closed', 'archived -> closed');
SELECT throws_ok($$SELECT ventros.set_chat_status((SELECT id FROM g), 6, 'active')$$, 'VN002', NULL, 'closed -> active is refused');
SELECT throws_ok($$SELECT ventros.update_chat((SELECT id FROM g), 6, 'New')$$, 'VN002', NULL, 'a closed chat is immutable');

-- notes
SELECT throws_ok($$SELECT ventros.add_note((SELECT contact FROM ids), '  ', (SELECT agent FROM ids))$$, '23502', NULL, 'empty content is refused');
SELECT throws_ok($$SELECT ventros.add_note((SELECT contact FROM ids), 'x', (SELECT agent FROM ids), note_type => 'gossip')$$, '23514', NULL,
                 'an unknown note type is refused');
CREATE TEMP TABLE n AS SELECT * FROM ventros.add_note((SELECT contact FROM ids), 'Called, wants a quote', (SELECT agent FROM ids));
SELECT is((SELECT author_name FROM n), (SELECT name FROM ventros.agents WHERE id = (SELECT agent FROM ids)), 'the author''s name is filled in');
SELECT ventros.set_note_pinned((SELECT id FROM n), 1, true);
SELECT ventros.set_note_pinned((SELECT id FROM n), 2, false);
SELECT ventros.update_note((SELECT id FROM n), 3, '{"content": "Called twice"}');
SELECT ventros.delete_note((SELECT id FROM n), 4);
SELECT results_eq($$SELECT event_type FROM ventros.outbox WHERE aggregate_id = (SELECT id FROM n) ORDER BY seq$$,
                  $$VALUES ('note.added'::text), ('note.pinned'), ('note.unpinned'), ('note.updated'), ('note.deleted')$$,
                  'note events: added, pinned, unpinned, updated, deleted');

-- canned responses
SELECT ventros.create_canned_response('hi', 'Greeting', 'Hello {{contact.name}}!');
SELECT is(ventros.render_canned_response('HI', (SELECT contact FROM ids)),
          'Hello ' || (SELECT name FROM ventros.contacts WHERE id = (SELECT contact FROM ids)) || '!', 'placeholders are filled');
SELECT throws_ok($$SELECT ventros.create_canned_response('hi', 'Again', 'x')$$, '23505', NULL, 'shortcuts are unique');
SELECT throws_ok($$SELECT ventros.render_canned_response('nope')$$, 'P0002', NULL, 'an unknown shortcut is not found');

-- agent sessions
CREATE TEMP TABLE s AS SELECT ventros_test.new_session() AS id;
CREATE TEMP TABLE j AS SELECT * FROM ventros.join_session((SELECT id FROM s), (SELECT agent FROM ids));
SELECT throws_ok($$SELECT ventros.join_session((SELECT id FROM s), ventros_test.new_agent())$$, '23505',
                 format('session %s already has an active primary agent', (SELECT id FROM s)), 'one active primary per session');
SELECT lives_ok($$SELECT ventros.join_session((SELECT id FROM s), ventros_test.new_agent(), 'observer')$$, 'an observer joins');
SELECT is((ventros.leave_session((SELECT id FROM j))).is_active, false, 'an agent leaves');
SELECT throws_ok($$SELECT ventros.leave_session((SELECT id FROM j))$$, 'VN002', NULL, 'leaving twice is refused');

SELECT * FROM finish();
ROLLBACK;
