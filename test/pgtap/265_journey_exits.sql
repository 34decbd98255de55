-- Sequence enrollments leave at the moment their exit comes, in the
-- transaction that brings it: a tag of exit_on.tags added, a consent
-- withdrawn (an exit status: 263_journeys.sql).  No tick runs here.
BEGIN;
SELECT plan(21);
SELECT ventros.create_tenant('t_exits', 'Exits');
SET LOCAL ventros.tenant = 't_exits';
SET LOCAL ROLE ventros_admin;
CREATE TEMP TABLE ids (name text PRIMARY KEY, id uuid);
GRANT ALL ON ids TO PUBLIC;
CREATE FUNCTION pg_temp.id(n text) RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM ids WHERE name = n $$;
CREATE FUNCTION pg_temp.enrollment(seq text, contact text) RETURNS ventros.sequence_enrollments LANGUAGE sql AS
    $$ SELECT * FROM ventros.sequence_enrollments WHERE sequence_id = pg_temp.id(seq) AND contact_id = pg_temp.id(contact)
       ORDER BY status IN ('active', 'paused') DESC, exited_at DESC LIMIT 1 $$;
CREATE FUNCTION pg_temp.state(seq text, contact text) RETURNS text LANGUAGE sql AS
    $$ SELECT e.status || coalesce('/' || e.exit_reason, '') FROM pg_temp.enrollment(seq, contact) e $$;
CREATE FUNCTION pg_temp.tag(contact text, tags text[]) RETURNS void LANGUAGE sql AS
    $$ SELECT ventros.update_contact(pg_temp.id(contact), (ventros.get_contact(pg_temp.id(contact))).version,
                                     jsonb_build_object('tags', tags)) $$;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA pg_temp TO PUBLIC;

INSERT INTO ids SELECT 'ch', ventros_test.new_channel();
INSERT INTO ids SELECT 'ch2', ventros_test.new_channel();
INSERT INTO ids SELECT 'ana', contact_id FROM ventros.receive_message(pg_temp.id('ch'), '+5511900000201', 'hi');
INSERT INTO ids SELECT 'bob', contact_id FROM ventros.receive_message(pg_temp.id('ch'), '+5511900000202', 'hi');
INSERT INTO ids SELECT 'cid', ventros_test.new_contact();
INSERT INTO ids SELECT 's', (ventros.create_sequence('Drip', exit_on_reply => false)).id;
SELECT ventros.add_sequence_step(pg_temp.id('s'), 0, 'One', '{"type": "text", "content": "one"}', 60);
SELECT ventros.add_sequence_step(pg_temp.id('s'), 1, 'Two', '{"type": "text", "content": "two"}', 60);
SELECT ventros.update_sequence(pg_temp.id('s'), 1, '{"exit_on": {"tags": ["stop", "customer"]}}');
SELECT ventros.set_sequence_status(pg_temp.id('s'), (ventros.get_sequence(pg_temp.id('s'))).version, 'active');
INSERT INTO ids SELECT 'e_ana', id FROM ventros.enroll_in_sequence(pg_temp.id('s'), pg_temp.id('ana'));
INSERT INTO ids SELECT 'e_bob', id FROM ventros.enroll_in_sequence(pg_temp.id('s'), pg_temp.id('bob'));

-- ---- a tag
SELECT pg_temp.tag('ana', '{vip}');
SELECT is(pg_temp.state('s', 'ana'), 'active', 'a tag not in exit_on.tags: the enrollment stays');
SELECT is(ventros_test.run_as('ventros_agent', 't_exits', $$SELECT pg_temp.tag('ana', '{vip,stop}')$$), NULL, 'an agent tags the contact "stop"');
SELECT is(pg_temp.state('s', 'ana'), 'exited/tag', 'the enrollment exits at once, before any tick');
SELECT is((pg_temp.enrollment('s', 'ana')).exited_at, now(), 'exited in the tag''s transaction');
SELECT is((SELECT payload->>'exit_reason' FROM ventros.outbox WHERE aggregate_id = pg_temp.id('s')
             AND event_type = 'sequence.enrollment_exited' AND payload->>'contact_id' = pg_temp.id('ana')::text),
          'tag', 'sequence.enrollment_exited with its reason');
SELECT is((SELECT array_agg(event_type ORDER BY seq) FROM ventros.outbox
            WHERE seq > (SELECT max(seq) FROM ventros.outbox WHERE aggregate_id = pg_temp.id('ana') AND event_type = 'contact.updated')
              AND event_type IN ('contact.tag_added', 'sequence.enrollment_exited')),
          '{contact.tag_added,sequence.enrollment_exited}', 'after the tag''s own event');
SELECT is((SELECT active_count || '/' || exited_count FROM ventros.sequences WHERE id = pg_temp.id('s')), '1/1', 'the sequence''s counters');

-- rolled back with the tag: one transaction
SELECT throws_ok($q$DO $b$ BEGIN PERFORM pg_temp.tag('bob', '{customer}'); RAISE EXCEPTION 'undo' USING ERRCODE = 'P0001'; END $b$$q$,
                 'P0001', 'undo', 'a tag whose transaction fails');
SELECT is(pg_temp.state('s', 'bob'), 'active', 'leaves the enrollment active');

-- a paused enrollment leaves too
SELECT ventros.set_sequence_enrollment_status(pg_temp.id('e_bob'), (pg_temp.enrollment('s', 'bob')).version, 'paused');
SELECT pg_temp.tag('bob', '{customer}');
SELECT is(pg_temp.state('s', 'bob'), 'exited/tag', 'a paused enrollment exits on its exit tag');
-- a tag already there when enrolled, then another one added: the enrollment leaves at that write
SELECT ventros.enroll_in_sequence(pg_temp.id('s'), pg_temp.id('bob'));
SELECT is(pg_temp.state('s', 'bob'), 'active', 'enrolled again (with an exit tag on: the next step would exit it)');
SELECT pg_temp.tag('bob', '{customer,new}');
SELECT is(pg_temp.state('s', 'bob'), 'active', 'a tag added that is not an exit tag changes nothing');
SELECT pg_temp.tag('bob', '{new}');
SELECT pg_temp.tag('bob', '{new,stop}');
SELECT is(pg_temp.state('s', 'bob'), 'exited/tag', 'an exit tag added exits it');

-- ---- an opt-out
INSERT INTO ids SELECT 's2', (ventros.create_sequence('Plain', exit_on_reply => false)).id;
SELECT ventros.add_sequence_step(pg_temp.id('s2'), 0, 'One', '{"type": "text", "content": "one"}', 60);
SELECT ventros.set_sequence_status(pg_temp.id('s2'), (ventros.get_sequence(pg_temp.id('s2'))).version, 'active');
SELECT ventros.enroll_in_sequence(pg_temp.id('s2'), pg_temp.id('ana'));
SELECT ventros.enroll_in_sequence(pg_temp.id('s2'), pg_temp.id('bob'));
SELECT ventros.enroll_in_sequence(pg_temp.id('s2'), pg_temp.id('cid'));
SELECT ventros.set_contact_consent(pg_temp.id('ana'), false, pg_temp.id('ch2'));
SELECT is(pg_temp.state('s2', 'ana'), 'active', 'an opt-out of another channel than the step''s: stays');
SELECT ventros.set_contact_consent(pg_temp.id('ana'), true, pg_temp.id('ch2'));
SELECT is(ventros_test.run_as('ventros_agent', 't_exits', format('SELECT status FROM ventros.set_contact_consent(%L, false, %L)',
                                                                  pg_temp.id('ana'), pg_temp.id('ch'))), 'opted_out',
          'the contact opts out of the channel its steps are sent on');
SELECT is(pg_temp.state('s2', 'ana'), 'exited/opted_out', 'the enrollment exits at once');
SELECT is((SELECT count(*)::integer FROM ventros.outbox WHERE aggregate_id = pg_temp.id('s2') AND event_type = 'sequence.enrollment_exited'
             AND payload->>'exit_reason' = 'opted_out'), 1, 'sequence.enrollment_exited, opted_out');
SELECT ventros.set_contact_consent(pg_temp.id('bob'), false);
SELECT is(pg_temp.state('s2', 'bob'), 'exited/opted_out', 'an opt-out of every channel exits');
SELECT ventros.set_contact_consent(pg_temp.id('cid'), false);
SELECT is(pg_temp.state('s2', 'cid'), 'exited/opted_out', 'also a contact without a session yet (its steps would have no channel)');
SELECT ventros.set_contact_consent(pg_temp.id('cid'), true);
SELECT ventros.enroll_in_sequence(pg_temp.id('s2'), pg_temp.id('cid'));
SELECT ventros.set_contact_consent(pg_temp.id('cid'), true, pg_temp.id('ch'));
SELECT is(pg_temp.state('s2', 'cid'), 'active', 'an opt-in changes nothing');
SELECT is((SELECT active_count || '/' || exited_count FROM ventros.sequences WHERE id = pg_temp.id('s2')), '1/3', 'counters');

SELECT * FROM finish();
ROLLBACK;
