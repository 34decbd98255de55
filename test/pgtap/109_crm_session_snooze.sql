-- Snoozing a session: active -> snoozed -> active in the declared state
-- machine (session.snoozed, session.unsnoozed), woken by tick_sessions at its
-- instant (boundary ± 1 s), by a message, or by hand; a snoozed session does
-- not expire, can be closed, and keeps the contact's one open session.
BEGIN;
SELECT plan(27);
SELECT ventros.create_tenant('t_snz', 'Snooze');
SET LOCAL ventros.tenant = 't_snz';
SET LOCAL ROLE ventros_admin;
CREATE TEMP TABLE ids (name text PRIMARY KEY, id uuid);
GRANT ALL ON ids TO PUBLIC;
CREATE FUNCTION pg_temp.id(n text) RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM ids WHERE name = n $$;
CREATE FUNCTION pg_temp.s(n text) RETURNS ventros.sessions LANGUAGE sql AS $$ SELECT * FROM ventros.sessions WHERE id = pg_temp.id(n) $$;
CREATE FUNCTION pg_temp.tick(at timestamptz) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE n integer;
BEGIN
    SET LOCAL ROLE ventros_platform_admin;
    n := ventros.tick_sessions(at);
    SET LOCAL ROLE ventros_admin;
    RETURN n;
END $$;
INSERT INTO ids SELECT 'ch', ventros_test.new_channel();
INSERT INTO ids SELECT 'm1', id FROM ventros.receive_message(pg_temp.id('ch'), '+5511900000001', 'hello');
INSERT INTO ids SELECT 's1', session_id FROM ventros.messages WHERE id = pg_temp.id('m1');
INSERT INTO ids SELECT 'c1', contact_id FROM ventros.messages WHERE id = pg_temp.id('m1');

SELECT results_eq($$SELECT from_state, to_state, event_type FROM ventros.aggregate_transitions
                    WHERE aggregate = 'session' AND 'snoozed' IN (from_state, to_state) ORDER BY 1, 2$$,
                  $$VALUES ('active', 'snoozed', 'session.snoozed'), ('snoozed', 'active', 'session.unsnoozed'),
                           ('snoozed', 'ended', 'session.ended'), ('snoozed', 'expired', 'session.ended'),
                           ('snoozed', 'manually_closed', 'session.ended')$$,
                  'the session state machine declares snoozed, its events and its ends');
SELECT throws_ok(format($$SELECT ventros.snooze_session(%L, now() - interval '1 minute')$$, pg_temp.id('s1')), '22023', NULL,
                 'snoozing until a past instant: 22023');
SELECT throws_ok(format($$SELECT ventros.snooze_session(%L, now() + interval '1 hour', 99)$$, pg_temp.id('s1')), 'VN001', NULL,
                 'a stale version: VN001');
SELECT is((ventros.snooze_session(pg_temp.id('s1'), now() + interval '2 hours')).status, 'snoozed', 'an active session is snoozed');
SELECT is((SELECT payload->'changed' FROM ventros.outbox WHERE aggregate_id = pg_temp.id('s1') AND event_type = 'session.snoozed'),
          jsonb_build_object('status', 'snoozed', 'snoozed_until', now() + interval '2 hours'), 'session.snoozed with the status and snoozed_until');
SELECT throws_ok(format($$SELECT ventros.snooze_session(%L, now() + interval '3 hours')$$, pg_temp.id('s1')), 'VN002', NULL,
                 'a snoozed session cannot be snoozed again (VN002)');
-- (the constraints are the data's rule on every path: tried as the owner, whose
-- writes a tenant role's direct-write refusal does not stop)
RESET ROLE;
SELECT throws_ok(format($$UPDATE ventros.sessions SET snoozed_until = NULL, version = 2 WHERE id = %L$$, pg_temp.id('s1')), '23514', NULL,
                 'a snoozed session needs its snoozed_until (23514)');
SET LOCAL ROLE ventros_admin;
SELECT throws_ok(format($$SELECT ventros.assign_session_agent(%L, %L)$$, pg_temp.id('s1'), ventros_test.new_agent()), 'VN002', NULL,
                 'a snoozed session is not assigned (VN002)');

-- the tick wakes it at its instant, not a second before; it does not expire meanwhile
SELECT is(pg_temp.tick(now() + interval '2 hours' - interval '1 second'), 0, 'one second before snoozed_until: the tick leaves it (and does not expire it)');
SELECT is((pg_temp.s('s1')).status, 'snoozed', 'still snoozed although its inactivity timeout passed');
SELECT is(pg_temp.tick(now() + interval '2 hours'), 1, 'at snoozed_until: the tick wakes it');
SELECT is((SELECT status || ' ' || (snoozed_until IS NULL) || ' ' || (expires_at = now() + interval '2 hours 30 minutes') FROM pg_temp.s('s1')),
          'active true true', 'active again, no snoozed_until, expiring a full timeout after waking');
SELECT is((SELECT array_agg(event_type ORDER BY seq) FROM ventros.outbox WHERE aggregate_id = pg_temp.id('s1') AND event_type LIKE 'session.%snoozed'),
          ARRAY['session.snoozed', 'session.unsnoozed'], 'session.unsnoozed');
SELECT is(pg_temp.tick(now() + interval '2 hours 30 minutes' + interval '1 second'), 1, 'then it expires as any active session');

-- a message wakes it
INSERT INTO ids SELECT 'm2', id FROM ventros.receive_message(pg_temp.id('ch'), '+5511900000002', 'hi');
INSERT INTO ids SELECT 's2', session_id FROM ventros.messages WHERE id = pg_temp.id('m2');
SELECT ventros.snooze_session(pg_temp.id('s2'), now() + interval '1 day');
SELECT is((SELECT count(*)::int FROM ventros.sessions s JOIN ventros.contacts c ON c.id = s.contact_id WHERE c.phone = '+5511900000002'), 1, 'one session');
INSERT INTO ids SELECT 'm3', id FROM ventros.receive_message(pg_temp.id('ch'), '+5511900000002', 'are you there?');
SELECT is((SELECT session_id FROM ventros.messages WHERE id = pg_temp.id('m3')), pg_temp.id('s2'), 'the contact''s next message continues the snoozed session');
SELECT is((pg_temp.s('s2')).status || ' ' || (pg_temp.s('s2')).message_count, 'active 2', '... woken, the message recorded');

-- by hand, and closing a snoozed one
SELECT ventros.snooze_session(pg_temp.id('s2'), now() + interval '1 day');
SELECT is((ventros.unsnooze_session(pg_temp.id('s2'))).status, 'active', 'unsnooze_session wakes it by hand');
SELECT throws_ok(format($$SELECT ventros.unsnooze_session(%L)$$, pg_temp.id('s2')), 'VN002', NULL, 'an active session cannot be woken (VN002)');
SELECT ventros.snooze_session(pg_temp.id('s2'), now() + interval '1 day');
SELECT is((SELECT status || ' ' || end_reason || ' ' || (snoozed_until IS NULL) FROM ventros.close_session(pg_temp.id('s2'))),
          'manually_closed manual_close true', 'a snoozed session can be closed');
SELECT is((SELECT event_type FROM ventros.outbox WHERE aggregate_id = pg_temp.id('s2') ORDER BY seq DESC LIMIT 1), 'session.ended', 'session.ended');

-- a snoozed session is still the contact's open session on the channel
INSERT INTO ids SELECT 'm4', id FROM ventros.receive_message(pg_temp.id('ch'), '+5511900000004', 'x');
INSERT INTO ids SELECT 's4', session_id FROM ventros.messages WHERE id = pg_temp.id('m4');
SELECT ventros.snooze_session(pg_temp.id('s4'), now() + interval '1 day');
RESET ROLE;
SELECT throws_ok(format($$INSERT INTO ventros.sessions (project_id, contact_id, channel_id) SELECT project_id, contact_id, channel_id FROM ventros.sessions WHERE id = %L$$,
                        pg_temp.id('s4')), '23505', NULL, 'no second open session beside a snoozed one');
SET LOCAL ROLE ventros_admin;

-- the automation action
INSERT INTO ids SELECT 'rule', id FROM ventros.create_automation('Snooze on later', 'message.received',
    '[{"type": "snooze_session", "params": {"minutes": 90}}]', '[{"keyword": "later"}]', automation_type => 'event');
INSERT INTO ids SELECT 'm5', id FROM ventros.receive_message(pg_temp.id('ch'), '+5511900000005', 'talk later please');
INSERT INTO ids SELECT 's5', session_id FROM ventros.messages WHERE id = pg_temp.id('m5');
SET LOCAL ROLE ventros_platform_admin;
SELECT ok(ventros.run_automations(100, now()) >= 1, 'the executor runs the rule');
SET LOCAL ROLE ventros_admin;
SELECT is((SELECT outcome FROM ventros.automation_runs WHERE automation_id = pg_temp.id('rule')), 'executed', 'snooze_session executed');
SELECT is((SELECT status || ' ' || (snoozed_until = now() + interval '90 minutes') FROM pg_temp.s('s5')), 'snoozed true',
          'the rule snoozed the session for 90 minutes');
SELECT ok((ventros.automation_catalogue()->'actions') ? 'snooze_session', 'snooze_session is in the action catalogue');
SELECT is(pg_temp.tick(now() + interval '90 minutes'), 1, 'and the tick wakes it at its time');

SELECT * FROM finish();
ROLLBACK;
