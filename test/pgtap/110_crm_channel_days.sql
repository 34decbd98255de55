-- Report summaries kept as appended deltas: the triggers only append rows to
-- crm_stats_deltas, fold_crm_stats moves them into crm_daily_stats and
-- crm_channel_days, and every report equals the direct counts over the
-- messages and sessions before the fold (deltas pending), after it, and
-- with both.
BEGIN;
SELECT plan(18);

SELECT ventros.create_tenant('crm_cd', 'Channel days');
SELECT ventros.create_tenant('crm_cd2', 'Other');
SET LOCAL ventros.tenant = 'crm_cd';
SET LOCAL ROLE ventros_admin;
CREATE TEMP TABLE ids AS
SELECT ventros_test.new_channel() AS ch1, ventros_test.new_channel() AS ch2, ventros_test.new_agent() AS agent;
GRANT SELECT ON ids TO PUBLIC;
SET LOCAL ROLE ventros_agent;

-- conversations on two channels and several days: inbound, assigned, answered, closed
CREATE TEMP TABLE r1 AS SELECT * FROM ventros.receive_message((SELECT ch1 FROM ids), '+5511977770001', 'oi', 'text', 'cd1', '2026-03-01 09:00Z');
SELECT ventros.assign_session_agent((SELECT session_id FROM r1), (SELECT agent FROM ids));
SELECT ventros.receive_message((SELECT ch1 FROM ids), '+5511977770001', 'alguém?', 'text', 'cd2', '2026-03-01 09:01Z');
SELECT ventros.receive_message((SELECT ch2 FROM ids), '+5511977770002', 'boa tarde', 'text', 'cd3', '2026-03-02 15:00Z');
SELECT ventros.receive_message((SELECT ch2 FROM ids), '+5511977770003', 'olá', 'text', 'cd4', '2026-03-02 23:59:59Z');
CREATE TEMP TABLE r2 AS SELECT * FROM ventros.receive_message((SELECT ch1 FROM ids), '+5511977770004', 'frete?', 'text', 'cd5',
                                                              now() - interval '5 minutes');
SELECT ventros.assign_session_agent((SELECT session_id FROM r2), (SELECT agent FROM ids));
SELECT ventros.send_message((SELECT ch1 FROM ids), (SELECT contact_id FROM r2), 'custa 10', (SELECT agent FROM ids));
SELECT ventros.send_message((SELECT ch1 FROM ids), (SELECT contact_id FROM r2), 'mais algo?', (SELECT agent FROM ids));
SELECT ventros.close_session((SELECT session_id FROM r2));
SELECT ventros.close_session((SELECT session_id FROM r1));

-- and a set of messages in one statement, over 30 days and both channels,
-- as a broadcast or an import writes them
RESET ROLE;
INSERT INTO ventros.messages (tenant_id, "timestamp", project_id, channel_id, contact_id, from_me, text, status, agent_id, source)
SELECT 'crm_cd', '2026-02-01 12:00Z'::timestamptz + (g % 30) * interval '1 day', ventros.default_project(),
       CASE WHEN g % 2 = 0 THEN i.ch1 ELSE i.ch2 END, (SELECT contact_id FROM r1), g % 3 = 0, 'set ' || g, 'delivered',
       CASE WHEN g % 3 = 0 THEN i.agent END, 'manual'
  FROM generate_series(1, 300) g, ids i;
SET LOCAL ROLE ventros_viewer;

-- the direct counts, by UTC day and channel
CREATE TEMP VIEW direct AS
SELECT day, channel_id, sum(mi)::bigint AS messages_in, sum(mo)::bigint AS messages_out, sum(ss)::bigint AS sessions_started,
       sum(se)::bigint AS sessions_ended, sum(fr)::bigint AS first_responses
  FROM (SELECT ("timestamp" AT TIME ZONE 'UTC')::date AS day, channel_id, (NOT from_me)::int AS mi, from_me::int AS mo,
               0 AS ss, 0 AS se, 0 AS fr
          FROM ventros.messages
        UNION ALL
        SELECT (started_at AT TIME ZONE 'UTC')::date, channel_id, 0, 0, 1, 0, 0 FROM ventros.sessions
        UNION ALL
        SELECT (ended_at AT TIME ZONE 'UTC')::date, channel_id, 0, 0, 0, 1, 0 FROM ventros.sessions WHERE ended_at IS NOT NULL
        UNION ALL
        SELECT (first_agent_response_at AT TIME ZONE 'UTC')::date, channel_id, 0, 0, 0, 0, 1
          FROM ventros.sessions WHERE first_agent_response_at IS NOT NULL) x
 GROUP BY 1, 2;
GRANT SELECT ON direct TO PUBLIC;
CREATE TEMP VIEW reported AS
SELECT day, key AS channel_id, messages_in, messages_out, sessions_started, sessions_ended, first_responses
  FROM ventros.crm_report('2026-01-01', current_date, 'day_channel');
GRANT SELECT ON reported TO PUBLIC;

SELECT ok((SELECT count(*) FROM ventros.crm_stats_deltas) > 0, 'the triggers appended deltas');
SELECT is((SELECT count(*)::int FROM ventros.crm_channel_days), 0, 'nothing is folded yet');
SELECT set_eq($$SELECT * FROM reported$$, $$SELECT * FROM direct$$,
              'by day and channel, the report equals the direct counts while the deltas are pending');
SELECT is((SELECT sum(messages_in + messages_out) FROM ventros.crm_report('2026-01-01', current_date, 'day_agent')),
          (SELECT sum(messages_in + messages_out) FROM direct),
          'by agent too');
CREATE TEMP TABLE before_fold AS SELECT * FROM ventros.crm_report('2026-01-01', current_date, 'day_agent');

SET LOCAL ventros.tenant = 'crm_cd2';
RESET ROLE;
INSERT INTO ventros.crm_stats_deltas (tenant_id, day, channel_id, messages_in) VALUES ('crm_cd2', '2026-03-01', gen_random_uuid(), 7);
SET LOCAL ventros.tenant = 'crm_cd';
SET LOCAL ROLE ventros_platform_admin;  -- the scheduler's
SELECT is(ventros.fold_crm_stats(), (SELECT count(*) FROM ventros.crm_stats_deltas WHERE tenant_id = 'crm_cd'),
          'the fold takes every delta row of the tenant');
SET LOCAL ROLE ventros_viewer;
SELECT is((SELECT count(*)::int FROM ventros.crm_stats_deltas), 0, 'none is left');
SELECT is((SELECT count(*)::int FROM ventros.crm_channel_days), (SELECT count(*)::int FROM direct),
          'one crm_channel_days row per day and channel');
SELECT set_eq($$SELECT * FROM reported$$, $$SELECT * FROM direct$$, 'the report still equals the direct counts, folded');
SELECT results_eq($$SELECT * FROM ventros.crm_report('2026-01-01', current_date, 'day_agent')$$, $$SELECT * FROM before_fold$$,
                  'and the report by agent is unchanged');
SELECT is((SELECT count(*)::int FROM ventros.crm_staff_days),
          (SELECT count(*)::int FROM (SELECT DISTINCT day, agent_id, team_id FROM ventros.crm_daily_stats) k),
          'one crm_staff_days row per day, agent and team');
SELECT set_eq($$SELECT key, messages_in, messages_out, sessions_started, sessions_ended, first_responses
                  FROM ventros.crm_report('2026-01-01', current_date, 'agent')$$,
              $$SELECT key, sum(messages_in)::bigint AS i, sum(messages_out)::bigint AS o, sum(sessions_started)::bigint AS s,
                       sum(sessions_ended)::bigint AS e, sum(first_responses)::bigint AS f
                  FROM (SELECT r.* FROM ids, LATERAL (VALUES (ids.ch1), (ids.ch2)) c(ch),
                                        LATERAL ventros.crm_report('2026-01-01', current_date, 'agent', channel_id => c.ch) r) x
                 GROUP BY 1$$,
              'by agent over every channel (crm_staff_days) equals the sum of each channel''s (crm_daily_stats)');
SELECT results_eq($$SELECT day, messages_in, messages_out, sessions_started FROM ventros.crm_report('2026-03-01', '2026-03-02', 'day')$$,
                  $$SELECT day, sum(messages_in)::bigint, sum(messages_out)::bigint, sum(sessions_started)::bigint
                      FROM direct WHERE day BETWEEN '2026-03-01' AND '2026-03-02' GROUP BY 1 ORDER BY 1$$,
                  'by day');
SELECT results_eq($$SELECT key, messages_in FROM ventros.crm_report('2026-02-01', '2026-03-02', 'channel', channel_id => (SELECT ch2 FROM ids))$$,
                  $$SELECT (SELECT ch2 FROM ids), sum(messages_in)::bigint FROM direct
                     WHERE channel_id = (SELECT ch2 FROM ids) AND day BETWEEN '2026-02-01' AND '2026-03-02'$$,
                  'for one channel');

-- new messages after the fold: folded rows plus pending deltas
SET LOCAL ROLE ventros_agent;
SELECT ventros.receive_message((SELECT ch2 FROM ids), '+5511977770002', 'de novo', 'text', 'cd6', '2026-03-02 16:00Z');
SET LOCAL ROLE ventros_viewer;
SELECT set_eq($$SELECT * FROM reported$$, $$SELECT * FROM direct$$, 'folded rows and new deltas add up to the direct counts');
CREATE TEMP TABLE pending AS SELECT count(*) AS n FROM ventros.crm_stats_deltas;
SET LOCAL ROLE ventros_platform_admin;
SELECT is(ventros.fold_crm_stats(), (SELECT n FROM pending), 'the next fold takes the new deltas');
SET LOCAL ROLE ventros_viewer;
SELECT set_eq($$SELECT * FROM reported$$, $$SELECT * FROM direct$$, 'and adds it to the folded day');

SET LOCAL ventros.tenant = 'crm_cd2';
SELECT is((SELECT count(*)::int FROM ventros.crm_stats_deltas), 1, 'another tenant''s deltas wait for its own fold');
SELECT is((SELECT messages_in::int FROM ventros.crm_report('2026-03-01', '2026-03-01', 'day')), 7, 'and count in its reports');

SELECT * FROM finish();
ROLLBACK;
