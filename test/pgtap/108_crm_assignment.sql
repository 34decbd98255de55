-- Assignment: new inbound sessions assigned by their channel's or team's rule
-- (round robin, capacity, least open sessions, availability), sessions waiting
-- on a team, and the teams' stored reassignment rules applied by
-- tick_assignments at chosen instants (agent offline, no first response in N
-- minutes, at most max_reassignments).
BEGIN;
SELECT plan(43);
SELECT ventros.create_tenant('t_asg', 'Assignment');
SET LOCAL ventros.tenant = 't_asg';
SET LOCAL ROLE ventros_admin;
CREATE TEMP TABLE ids (name text PRIMARY KEY, id uuid);
GRANT ALL ON ids TO PUBLIC;
CREATE FUNCTION pg_temp.id(n text) RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM ids WHERE name = n $$;
CREATE FUNCTION pg_temp.name_of(agent uuid) RETURNS text LANGUAGE sql AS $$ SELECT name FROM ids WHERE id = agent $$;
-- An inbound message at an instant from a sender; returns its session's agent's name.
CREATE FUNCTION pg_temp.inbound(ch text, sender text, at timestamptz, body text DEFAULT 'hello') RETURNS text LANGUAGE plpgsql AS $$
DECLARE m ventros.messages;
BEGIN
    m := ventros.receive_message(pg_temp.id(ch), sender, body, sent_at => at);
    RETURN (SELECT coalesce(pg_temp.name_of(s.assigned_agent_id), '-') FROM ventros.sessions s WHERE s.id = m.session_id);
END $$;
CREATE FUNCTION pg_temp.session_of(sender text) RETURNS ventros.sessions LANGUAGE sql AS $$
    SELECT s.* FROM ventros.sessions s JOIN ventros.contacts c ON c.id = s.contact_id
    WHERE c.phone = sender AND s.status = 'active'
$$;
CREATE FUNCTION pg_temp.tick(at timestamptz) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE n integer;
BEGIN
    SET LOCAL ROLE ventros_platform_admin;
    n := ventros.tick_assignments(at);
    SET LOCAL ROLE ventros_admin;
    RETURN n;
END $$;

-- a and b named in id order: the round robin's tie-break among never-assigned agents
CREATE TEMP TABLE two AS SELECT (ventros.create_agent('agent ' || i, email => i || '@agents.example')).id FROM generate_series(1, 2) i;
INSERT INTO ids SELECT CASE WHEN row_number() OVER (ORDER BY id) = 1 THEN 'a' ELSE 'b' END, id FROM two;
INSERT INTO ids SELECT 'c', id FROM ventros.create_agent('c', email => 'c@agents.example');
SELECT ventros.set_agent_presence(pg_temp.id('a'), 'available');
SELECT ventros.set_agent_presence(pg_temp.id('b'), 'available');
INSERT INTO ids SELECT 'team', id FROM ventros.create_team('Support');
SELECT ventros.add_team_member(pg_temp.id('team'), pg_temp.id(n)) FROM unnest(ARRAY['a', 'b', 'c']) n;
INSERT INTO ids SELECT 'ch', ventros_test.new_channel();
INSERT INTO ids SELECT 'plain', ventros_test.new_channel();

-- a channel without a team: nothing is assigned
SELECT is(pg_temp.inbound('plain', '+5511900000000', '2026-01-05 10:00:00+00'), '-', 'a channel without an assignment rule leaves the session unassigned');

-- the channel's rule: its team, the team's strategy (round robin over the available agents)
SELECT throws_ok(format($$SELECT ventros.update_channel(%L, 1, '{"assignment_strategy": "least_open"}')$$, pg_temp.id('ch')),
                 '23514', NULL, 'a channel strategy without a team is refused (23514)');
SELECT ventros.update_channel(pg_temp.id('ch'), 1, jsonb_build_object('team_id', pg_temp.id('team')));
SELECT is(pg_temp.inbound('ch', '+5511900000001', '2026-01-05 10:00:00+00'), 'a', 'round robin: the first new session goes to a');
SELECT is(pg_temp.inbound('ch', '+5511900000002', '2026-01-05 10:00:01+00'), 'b', '... the second to b');
SELECT is(pg_temp.inbound('ch', '+5511900000003', '2026-01-05 10:00:02+00'), 'a', '... the third to a again; c (offline) never');
SELECT is(pg_temp.inbound('ch', '+5511900000001', '2026-01-05 10:00:03+00', 'again'), 'a', 'a continued session keeps its agent');
SELECT is((SELECT assigned_at FROM pg_temp.session_of('+5511900000002')), '2026-01-05 10:00:01+00'::timestamptz,
          'assigned_at is the message''s instant');
SELECT is((SELECT payload->>'reason' || ' ' || (payload->>'transfer') || ' ' || (payload->>'team_id' = pg_temp.id('team')::text)
           FROM ventros.outbox WHERE event_type = 'session.agent_assigned' AND aggregate_id = (pg_temp.session_of('+5511900000002')).id),
          'round_robin false true', 'session.agent_assigned with the reason, the team and transfer false');
SELECT is((SELECT team_id FROM pg_temp.session_of('+5511900000001')), pg_temp.id('team'), 'the session is on the channel''s team');

-- least open sessions (the channel's own strategy): a has 2, b has 1
SELECT ventros.update_channel(pg_temp.id('ch'), 2, '{"assignment_strategy": "least_open"}');
SELECT is(pg_temp.inbound('ch', '+5511900000004', '2026-01-05 10:01:00+00'), 'b', 'least_open: the agent with the fewest open sessions (b, 1 < 2)');
SELECT is(pg_temp.inbound('ch', '+5511900000005', '2026-01-05 10:01:01+00'), 'a', 'least_open, a tie (2 and 2): the one assigned longest ago');
-- capacity: load = open / max_open_sessions; a 3/30, b 2/4
SELECT ventros.update_agent(pg_temp.id('a'), (SELECT version FROM ventros.agents WHERE id = pg_temp.id('a')), '{"max_open_sessions": 30}');
SELECT ventros.update_agent(pg_temp.id('b'), (SELECT version FROM ventros.agents WHERE id = pg_temp.id('b')), '{"max_open_sessions": 4}');
SELECT ventros.update_channel(pg_temp.id('ch'), 3, '{"assignment_strategy": "capacity"}');
SELECT is(pg_temp.inbound('ch', '+5511900000006', '2026-01-05 10:02:00+00'), 'a', 'capacity: the lowest load (a 3/30 before b 2/4)');
SELECT is((SELECT payload->>'reason' FROM ventros.outbox WHERE event_type = 'session.agent_assigned'
           AND aggregate_id = (pg_temp.session_of('+5511900000006')).id), 'capacity', 'reason capacity');
-- the team's strategy when the channel has none
SELECT ventros.update_channel(pg_temp.id('ch'), 4, '{"assignment_strategy": null}');
SELECT ventros.update_team(pg_temp.id('team'), 1, '{"assignment_strategy": "least_open"}');
SELECT is(pg_temp.inbound('ch', '+5511900000007', '2026-01-05 10:02:01+00'), 'b', 'no channel strategy: the team''s (least_open: b 2 < a 4)');
SELECT throws_ok(format($$SELECT ventros.update_team(%L, 2, '{"assignment_strategy": "random"}')$$, pg_temp.id('team')),
                 '23514', NULL, 'an unknown team strategy is refused');
SELECT throws_ok($$SELECT ventros.create_team('X', 'random')$$, '22023', NULL, 'create_team: an unknown strategy is 22023');

-- capacity full and nobody available: the session waits on the team
SELECT ventros.update_agent(pg_temp.id('b'), (SELECT version FROM ventros.agents WHERE id = pg_temp.id('b')), '{"max_open_sessions": 3}');
SELECT ventros.set_agent_presence(pg_temp.id('a'), 'away');
SELECT is(pg_temp.inbound('ch', '+5511900000008', '2026-01-05 10:03:00+00'), '-', 'nobody available under capacity: unassigned');
SELECT is((SELECT payload->>'team_id' FROM ventros.outbox WHERE event_type = 'session.queued'
           AND aggregate_id = (pg_temp.session_of('+5511900000008')).id), pg_temp.id('team')::text, 'session.queued names the team');
SELECT is(pg_temp.tick('2026-01-05 10:03:30+00'), 0, 'a tick with nobody available assigns nothing');
SELECT ventros.set_agent_presence(pg_temp.id('c'), 'available');
SELECT is(pg_temp.tick('2026-01-05 10:04:00+00'), 1, 'once an agent is available, the tick assigns the waiting session');
SELECT is(pg_temp.name_of((pg_temp.session_of('+5511900000008')).assigned_agent_id) || ' ' || (pg_temp.session_of('+5511900000008')).assigned_at,
          'c 2026-01-05 10:04:00+00', '... to c, at the tick''s instant');

-- reassignment rules: agent offline
SELECT ventros.set_agent_presence(pg_temp.id('a'), 'available');
SELECT ventros.update_agent(pg_temp.id(n), (SELECT version FROM ventros.agents WHERE id = pg_temp.id(n)), '{"max_open_sessions": 100}')
FROM unnest(ARRAY['a', 'b', 'c']) n;
SELECT ventros.set_agent_presence(pg_temp.id('c'), 'offline');
SELECT is(pg_temp.tick('2026-01-05 10:05:00+00'), 0, 'an offline agent keeps its sessions while the team has no offline rule');
SELECT ventros.update_team(pg_temp.id('team'), 2, '{"reassign_when_offline": true}');
SELECT is(pg_temp.tick('2026-01-05 10:05:00+00'), 1, 'with reassign_when_offline, the tick reassigns the offline agent''s session');
SELECT is((SELECT pg_temp.name_of(assigned_agent_id) <> 'c' AND agent_transfers = 1 FROM pg_temp.session_of('+5511900000008')), true,
          'to another agent of the team, counted as a transfer');
SELECT is((SELECT payload->>'reason' || ' ' || (payload->>'transfer') || ' ' || pg_temp.name_of((payload->>'previous_agent_id')::uuid)
           FROM ventros.outbox WHERE event_type = 'session.agent_assigned'
           AND aggregate_id = (pg_temp.session_of('+5511900000008')).id ORDER BY seq DESC LIMIT 1),
          'agent_offline true c', 'session.agent_assigned: reason agent_offline, transfer, previous agent');

-- reassignment rules: no first response in N minutes (boundary at the minute)
INSERT INTO ids SELECT 'team2', id FROM ventros.create_team('Sales', 'round_robin');
SELECT ventros.add_team_member(pg_temp.id('team2'), pg_temp.id(n)) FROM unnest(ARRAY['a', 'b']) n;
SELECT ventros.update_team(pg_temp.id('team2'), 1, '{"reassign_after_minutes": 10, "max_reassignments": 1}');
INSERT INTO ids SELECT 'ch2', ventros_test.new_channel();
SELECT ventros.update_channel(pg_temp.id('ch2'), 1, jsonb_build_object('team_id', pg_temp.id('team2')));
INSERT INTO ids SELECT 'first', (ventros.next_team_agent(pg_temp.id('team2'), NULL)) ;
SELECT ok(pg_temp.id('first') IS NOT NULL, 'next_team_agent picks (and moves the round robin on)');
SELECT isnt(pg_temp.inbound('ch2', '+5511900000010', '2026-01-05 11:00:00+00'), pg_temp.name_of(pg_temp.id('first')),
            'ch2: assigned to the next one in the round');
INSERT INTO ids SELECT 'first_agent', (pg_temp.session_of('+5511900000010')).assigned_agent_id;
-- sessions of team 1 are left alone from here on
SELECT ventros.update_team(pg_temp.id('team'), 3, '{"reassign_when_offline": false}');
SELECT is(pg_temp.tick('2026-01-05 11:09:59+00'), 0, 'unanswered for 9 min 59 s: not yet');
SELECT is(pg_temp.tick('2026-01-05 11:10:00+00'), 1, 'unanswered for 10 min: reassigned');
SELECT is((SELECT payload->>'reason' FROM ventros.outbox WHERE event_type = 'session.agent_assigned'
           AND aggregate_id = (pg_temp.session_of('+5511900000010')).id ORDER BY seq DESC LIMIT 1), 'no_response', 'reason no_response');
SELECT isnt((pg_temp.session_of('+5511900000010')).assigned_agent_id, pg_temp.id('first_agent'), 'to the other agent');
SELECT is(pg_temp.tick('2026-01-05 11:30:00+00'), 0, 'max_reassignments 1: never reassigned again');
-- an answered session is not reassigned
SELECT ventros.update_team(pg_temp.id('team2'), 2, '{"max_reassignments": 5}');
SELECT is(pg_temp.inbound('ch2', '+5511900000011', now() - interval '20 minutes') <> '-', true, 'another session on ch2');
SELECT ventros.send_message(pg_temp.id('ch2'), (pg_temp.session_of('+5511900000011')).contact_id, 'Hi!',
                            (pg_temp.session_of('+5511900000011')).assigned_agent_id);
SELECT is((SELECT count(*)::int FROM ventros.sessions s WHERE s.id = (pg_temp.session_of('+5511900000011')).id AND first_agent_response_at IS NOT NULL),
          1, 'the agent answered');
SELECT is(pg_temp.tick(now() + interval '5 minutes') >= 0 AND (SELECT agent_transfers FROM pg_temp.session_of('+5511900000011')) = 0, true,
          'an answered session is never reassigned for no response');

-- manual teams: on the team, nobody picked, no tick
INSERT INTO ids SELECT 'team3', id FROM ventros.create_team('Manual', 'manual');
SELECT ventros.add_team_member(pg_temp.id('team3'), pg_temp.id('a'));
INSERT INTO ids SELECT 'ch3', ventros_test.new_channel();
SELECT ventros.update_channel(pg_temp.id('ch3'), 1, jsonb_build_object('team_id', pg_temp.id('team3')));
SELECT is(pg_temp.inbound('ch3', '+5511900000020', '2026-01-05 14:00:00+00'), '-', 'a manual team: the session waits for a person to assign it');
SELECT is((SELECT count(*)::int FROM ventros.outbox WHERE event_type = 'session.queued' AND aggregate_id = (pg_temp.session_of('+5511900000020')).id),
          0, '... with no session.queued');

-- the user's commands share the mechanism
SELECT is((SELECT pg_temp.name_of(assigned_agent_id) FROM ventros.assign_session_agent((pg_temp.session_of('+5511900000020')).id, pg_temp.id('b'))),
          'b', 'assign_session_agent');
SELECT throws_ok(format($$SELECT ventros.assign_session_agent(%L, %L, NULL, 'whim')$$, (pg_temp.session_of('+5511900000020')).id, pg_temp.id('a')),
                 '22023', NULL, 'an unknown reason: 22023');
SELECT throws_ok($$SELECT ventros.tick_assignments()$$, '42501', NULL, 'tick_assignments is the scheduler''s (platform admins)');

-- an automation rule: a keyword → the team's next agent (round robin)
INSERT INTO ids SELECT 'team4', id FROM ventros.create_team('Rules team', 'round_robin');
SELECT ventros.add_team_member(pg_temp.id('team4'), pg_temp.id(n)) FROM unnest(ARRAY['a', 'b']) n;
INSERT INTO ids SELECT 'rule', id FROM ventros.create_automation('Route sales', 'message.received',
    jsonb_build_array(jsonb_build_object('type', 'assign_team', 'params', jsonb_build_object('team_id', pg_temp.id('team4')))),
    '[{"keyword": "price"}]', automation_type => 'event');
SELECT is(pg_temp.inbound('plain', '+5511900000030', now(), 'what is the price?'), '-', 'no channel rule: unassigned at first');
SET LOCAL ROLE ventros_platform_admin;
SELECT ok(ventros.run_automations(100, now()) >= 1, 'the executor runs the rule');
SET LOCAL ROLE ventros_admin;
SELECT is((SELECT team_id = pg_temp.id('team4') AND assigned_agent_id IS NOT NULL FROM pg_temp.session_of('+5511900000030')), true,
          'the rule put the session on the team and assigned its next agent');

SELECT * FROM finish();
ROLLBACK;
