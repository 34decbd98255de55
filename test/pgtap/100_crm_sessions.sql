-- Sessions: start or continue, timeout resolution, expiry, ending, resolve,
-- escalate, assignment (manual, team round-robin and capacity).
BEGIN;
SELECT plan(45);

SELECT ventros.create_tenant('crm_s', 'Sessions');
SET LOCAL ventros.tenant = 'crm_s';
SET LOCAL ROLE ventros_admin;

CREATE TEMP TABLE ids AS
SELECT ventros_test.new_contact() AS contact, ventros_test.new_channel() AS channel,
       ventros_test.new_agent() AS agent1, ventros_test.new_agent() AS agent2;

-- timeout resolution: project (30 default) -> channel -> pipeline
SELECT is(ventros.session_timeout_seconds((SELECT channel FROM ids)), 1800, 'timeout defaults to the project''s 30 minutes');
UPDATE ventros.projects SET session_timeout_minutes = 45, version = version;
SELECT is(ventros.session_timeout_seconds((SELECT channel FROM ids)), 2700, 'the project''s timeout applies when the channel has none');
-- as the owner, as the system writes (a tenant role's direct write is refused: 620_direct_writes.sql)
RESET ROLE;
UPDATE ventros.channels SET session_timeout_minutes = 20, version = version WHERE id = (SELECT channel FROM ids);
SET LOCAL ROLE ventros_admin;
SELECT is(ventros.session_timeout_seconds((SELECT channel FROM ids)), 1200, 'the channel''s timeout wins over the project''s');
CREATE TEMP TABLE p10 AS SELECT (ventros.create_pipeline('P', session_timeout_minutes => 10)).id;
RESET ROLE;
UPDATE ventros.channels SET pipeline_id = (SELECT id FROM p10), version = version WHERE id = (SELECT channel FROM ids);
SET LOCAL ROLE ventros_admin;
SELECT is(ventros.session_timeout_seconds((SELECT channel FROM ids)), 600, 'the pipeline''s timeout wins over the channel''s');

-- start or continue
CREATE TEMP TABLE s1 AS SELECT * FROM ventros.start_or_continue_session((SELECT contact FROM ids), (SELECT channel FROM ids), '2026-01-01 10:00Z');
SELECT is((SELECT status FROM s1), 'active', 'a new session is active');
SELECT is((SELECT timeout_seconds FROM s1), 600, 'it takes the resolved timeout');
SELECT is((SELECT expires_at FROM s1), '2026-01-01 10:10Z'::timestamptz, 'expires_at = last activity + timeout');
SELECT is((SELECT count(*)::int FROM ventros.outbox WHERE event_type = 'session.started' AND aggregate_id = (SELECT id FROM s1)), 1,
          'session.started is emitted on creation');
SELECT is((ventros.start_or_continue_session((SELECT contact FROM ids), (SELECT channel FROM ids), '2026-01-01 10:05Z')).id,
          (SELECT id FROM s1), 'a message within the timeout continues the session');
RESET ROLE;	-- the index holds for the system's own writes
SELECT throws_ok($$INSERT INTO ventros.sessions (project_id, contact_id, channel_id) SELECT ventros.default_project(), contact, channel FROM ids$$,
                 '23505', NULL, 'a second active session for the same contact and channel is refused by the unique index');
SET LOCAL ROLE ventros_admin;

-- expiry by a later message
CREATE TEMP TABLE s2 AS SELECT * FROM ventros.start_or_continue_session((SELECT contact FROM ids), (SELECT channel FROM ids), '2026-01-01 11:00Z');
SELECT isnt((SELECT id FROM s2), (SELECT id FROM s1), 'a message after the expiry starts a new session');
SELECT results_eq($$SELECT status, end_reason, ended_at FROM ventros.sessions WHERE id = (SELECT id FROM s1)$$,
                  $$VALUES ('expired'::text, 'inactivity_timeout'::text, '2026-01-01 10:10Z'::timestamptz)$$,
                  'the old one expired at its expiry with end_reason inactivity_timeout');
SELECT is((SELECT count(*)::int FROM ventros.outbox WHERE event_type = 'session.ended' AND aggregate_id = (SELECT id FROM s1)), 1,
          'session.ended is emitted for the expired session');

-- tick_sessions
SET LOCAL ROLE ventros_platform_admin;  -- the scheduler's (500_security_authz.sql)
SELECT is(ventros.tick_sessions('2026-01-01 11:05Z'), 0, 'tick before the expiry ends nothing');
SET LOCAL ROLE ventros_admin;
SET LOCAL ROLE ventros_platform_admin;  -- the scheduler's (500_security_authz.sql)
SELECT is(ventros.tick_sessions('2026-01-01 11:11Z'), 1, 'tick after the expiry ends the session');
SET LOCAL ROLE ventros_admin;
SELECT is((SELECT status FROM ventros.sessions WHERE id = (SELECT id FROM s2)), 'expired', 'tick expires it');

-- close with reasons
CREATE TEMP TABLE s3 AS SELECT * FROM ventros.start_or_continue_session(ventros_test.new_contact(), (SELECT channel FROM ids), now());
SELECT throws_ok(format('SELECT ventros.close_session(%L, 1, %L)', (SELECT id FROM s3), 'bored'), '22023',
                 'unknown end reason "bored"', 'an unknown end reason is refused');
SELECT throws_ok(format('SELECT ventros.close_session(%L, 7)', (SELECT id FROM s3)), 'VN001', NULL, 'closing with a stale version is refused');
SELECT throws_ok(format('SELECT ventros.resolve_session(%L)', (SELECT id FROM s3)), 'VN002',
                 format('session %s is still active', (SELECT id FROM s3)), 'an active session cannot be resolved');
SELECT is((ventros.close_session((SELECT id FROM s3), 1, 'agent_close')).status, 'manually_closed', 'agent_close ends as manually_closed');
SELECT throws_ok(format('SELECT ventros.close_session(%L)', (SELECT id FROM s3)), 'VN002', NULL, 'an ended session cannot end again');
RESET ROLE;	-- a session closes once, whoever writes
SELECT throws_ok(format('UPDATE ventros.sessions SET status = %L, version = version WHERE id = %L', 'active', (SELECT id FROM s3)),
                 'VN002', NULL, 'manually_closed -> active is not a transition');
SET LOCAL ROLE ventros_admin;
SELECT is((ventros.resolve_session((SELECT id FROM s3))).resolved, true, 'an ended session can be resolved');
SELECT is((SELECT count(*)::int FROM ventros.outbox WHERE event_type = 'session.resolved' AND aggregate_id = (SELECT id FROM s3)), 1,
          'session.resolved is emitted');
SELECT is((ventros.close_session((ventros.start_or_continue_session(ventros_test.new_contact(), (SELECT channel FROM ids))).id,
                                 NULL, 'contact_request')).status, 'ended', 'contact_request ends as ended');
SELECT is((ventros.close_session((ventros.start_or_continue_session(ventros_test.new_contact(), (SELECT channel FROM ids))).id,
                                 NULL, 'manual_close')).status, 'manually_closed', 'manual_close ends as manually_closed');

-- escalate, summarize
CREATE TEMP TABLE s4 AS SELECT * FROM ventros.start_or_continue_session(ventros_test.new_contact(), (SELECT channel FROM ids));
RESET ROLE;	-- the CHECK holds for the system's own writes
SELECT throws_ok($$UPDATE ventros.sessions SET resolved = true, version = version WHERE id = (SELECT id FROM s4)$$, '23514', NULL,
                 'resolved may be set only after the session ends (CHECK)');
SET LOCAL ROLE ventros_admin;
SELECT is((ventros.escalate_session((SELECT id FROM s4), reason => 'angry')).escalated, true, 'an active session can be escalated');
SELECT throws_ok(format('SELECT ventros.summarize_session(%L, %L, %L)', (SELECT id FROM s4), 'sum', 'furious'), '22023',
                 'unknown sentiment "furious"', 'an unknown sentiment is refused');
SELECT is((ventros.summarize_session((SELECT id FROM s4), 'Asked for a refund', 'negative')).sentiment, 'negative',
          'a summary and sentiment are set');

-- manual assignment and transfer
SELECT is((ventros.assign_session_agent((SELECT id FROM s4), (SELECT agent1 FROM ids))).assigned_agent_id, (SELECT agent1 FROM ids),
          'an agent is assigned');
SELECT results_eq(format('SELECT agent_transfers, cardinality(agent_ids) FROM ventros.assign_session_agent(%L, %L)',
                         (SELECT id FROM s4), (SELECT agent2 FROM ids)),
                  $$VALUES (1, 2)$$, 'a second agent is a transfer, both are in agent_ids');
SELECT is((SELECT count(*)::int FROM ventros.outbox WHERE event_type = 'session.agent_assigned' AND aggregate_id = (SELECT id FROM s4)), 2,
          'session.agent_assigned is emitted per assignment');
SELECT throws_ok(format('SELECT ventros.assign_session_agent(%L, %L)', (SELECT id FROM s4), (ventros.create_virtual_agent('Old Bob', 'left')).id),
                 '22023', NULL, 'a virtual agent cannot be assigned');
SELECT throws_ok(format('SELECT ventros.assign_session_agent(%L, %L, 1)', (SELECT id FROM s4), (SELECT agent1 FROM ids)),
                 'VN001', NULL, 'an assignment stating a stale version is refused');

-- team round-robin and capacity
-- as the owner, as the system writes (a tenant role's direct write is refused: 620_direct_writes.sql)
RESET ROLE;
UPDATE ventros.agents SET status = 'available', version = version WHERE id IN ((SELECT agent1 FROM ids), (SELECT agent2 FROM ids));
SET LOCAL ROLE ventros_admin;
CREATE TEMP TABLE team AS SELECT ventros_test.new_team() AS id;
SELECT ventros.add_team_member((SELECT id FROM team), (SELECT agent1 FROM ids));
SELECT ventros.add_team_member((SELECT id FROM team), (SELECT agent2 FROM ids));
CREATE TEMP TABLE rr AS
SELECT n, (ventros.assign_session_to_team((ventros.start_or_continue_session(ventros_test.new_contact(), (SELECT channel FROM ids))).id,
                                          (SELECT id FROM team))).assigned_agent_id AS agent
FROM generate_series(1, 4) n;
SELECT is((SELECT count(DISTINCT agent)::int FROM rr), 2, 'round-robin uses both members');
SELECT ok((SELECT bool_and(a.agent <> b.agent) FROM rr a JOIN rr b ON b.n = a.n + 1), 'round-robin alternates members');
UPDATE ventros.teams SET assignment_strategy = 'capacity', version = version WHERE id = (SELECT id FROM team);
RESET ROLE;
UPDATE ventros.agents SET max_open_sessions = 3, version = version WHERE id = (SELECT agent1 FROM ids);
UPDATE ventros.agents SET max_open_sessions = 4, version = version WHERE id = (SELECT agent2 FROM ids);
SET LOCAL ROLE ventros_admin;
-- agent2 has s4 too: agent1 2 open, agent2 3 open
SELECT is((ventros.assign_session_to_team((ventros.start_or_continue_session(ventros_test.new_contact(), (SELECT channel FROM ids))).id,
                                          (SELECT id FROM team))).assigned_agent_id, (SELECT agent1 FROM ids),
          'capacity picks the member with the fewest open sessions');
SELECT is((ventros.assign_session_to_team((ventros.start_or_continue_session(ventros_test.new_contact(), (SELECT channel FROM ids))).id,
                                          (SELECT id FROM team))).assigned_agent_id, (SELECT agent2 FROM ids),
          'a member at capacity is skipped');
SELECT is((ventros.assign_session_to_team((ventros.start_or_continue_session(ventros_test.new_contact(), (SELECT channel FROM ids))).id,
                                          (SELECT id FROM team))).assigned_agent_id, NULL,
          'when every member is at capacity the session waits on the team');
SELECT is((SELECT count(*)::int FROM ventros.open_sessions(NULL::uuid)), 1, 'the waiting session is in the unassigned queue');

-- consolidation after a history import (sessions deleted need the admin role)
CREATE TEMP TABLE hc AS SELECT ventros_test.new_contact() AS contact, ventros_test.new_channel() AS channel;
SELECT ventros.import_message((SELECT channel FROM hc), (SELECT contact FROM hc), false, t, 'imp-' || n, 'msg ' || n)
FROM (VALUES (1, '2025-05-01 10:00Z'::timestamptz), (2, '2025-05-01 10:50Z'), (3, '2025-05-01 12:10Z')) v(n, t);
SET LOCAL ROLE ventros_platform_admin;  -- the scheduler's (500_security_authz.sql)
SELECT ventros.tick_sessions('2025-05-02');
RESET ROLE;	-- as the owner: sessions change through their commands only
UPDATE ventros.sessions SET timeout_seconds = 3600, version = version WHERE contact_id = (SELECT contact FROM hc);
SET LOCAL ROLE ventros_admin;
SELECT is((SELECT count(*)::int FROM ventros.sessions WHERE contact_id = (SELECT contact FROM hc)), 3, 'the import made three sessions (45 minute timeout)');
SELECT is(ventros.consolidate_sessions((SELECT contact FROM hc), (SELECT channel FROM hc)), 1,
          'with a one-hour timeout the 50-minute gap is merged, the 80-minute gap is not');
SELECT results_eq($$SELECT message_count FROM ventros.sessions WHERE contact_id = (SELECT contact FROM hc) ORDER BY started_at$$,
                  $$VALUES (2), (1)$$, 'the messages moved to the earliest session of the run, counters recomputed');
SELECT is((SELECT count(*)::int FROM ventros.outbox WHERE event_type = 'session.consolidated'), 1, 'session.consolidated is emitted');

SELECT * FROM finish();
ROLLBACK;
