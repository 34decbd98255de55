-- Reports from the summary table, and the CRM-screen queries with keyset
-- paging and the hard maximum page size.
BEGIN;
SELECT plan(25);

SELECT ventros.create_tenant('crm_r', 'Reports');
SELECT ventros.create_tenant('crm_r2', 'Other');
SET LOCAL ventros.tenant = 'crm_r';
SET LOCAL ROLE ventros_admin;
CREATE TEMP TABLE ids AS SELECT ventros_test.new_channel() AS ch, ventros_test.new_agent() AS agent;
GRANT SELECT ON ids TO PUBLIC;
SET LOCAL ROLE ventros_agent;

-- history on fixed days
CREATE TEMP TABLE h1 AS SELECT * FROM ventros.receive_message((SELECT ch FROM ids), '+5511955550009', 'bom dia', 'text', 'h1', '2026-03-01 09:00Z');
SELECT ventros.assign_session_agent((SELECT session_id FROM h1), (SELECT agent FROM ids));
SELECT ventros.receive_message((SELECT ch FROM ids), '+5511955550009', 'alguém?', 'text', 'h2', '2026-03-01 09:01Z');
SELECT ventros.receive_message((SELECT ch FROM ids), '+5511955550002', 'boa tarde', 'text', 'h3', '2026-03-02 15:00Z');
-- a conversation now, answered
CREATE TEMP TABLE m1 AS SELECT * FROM ventros.receive_message((SELECT ch FROM ids), '+5511955550001', 'quero um orçamento de frete',
                                                              'text', 'r1', now() - interval '5 minutes');
SELECT ventros.assign_session_agent((SELECT session_id FROM m1), (SELECT agent FROM ids));
SELECT ventros.receive_message((SELECT ch FROM ids), '+5511955550001', 'alguém?', 'text', 'r2', now() - interval '4 minutes');
CREATE TEMP TABLE o1 AS SELECT * FROM ventros.send_message((SELECT ch FROM ids), (SELECT contact_id FROM m1), 'Olá! O frete custa 10',
                                                           (SELECT agent FROM ids));

SELECT results_eq($$SELECT day, messages_in, messages_out, sessions_started FROM ventros.crm_report('2026-03-01', '2026-03-02', 'day')$$,
                  $$VALUES ('2026-03-01'::date, 2::bigint, 0::bigint, 1::bigint), ('2026-03-02', 1, 0, 1)$$,
                  'messages in and sessions started per day');
SELECT results_eq($$SELECT key, messages_in FROM ventros.crm_report('2026-03-01', '2026-03-01', 'agent')$$,
                  $$SELECT * FROM (VALUES ('00000000-0000-0000-0000-000000000000'::uuid, 1::bigint), ((SELECT agent FROM ids), 1::bigint)) v
                    ORDER BY 1$$, 'inbound messages count for the agent assigned at the time');
SELECT is((SELECT sum(messages_out)::int FROM ventros.crm_report(current_date - 1, current_date, 'agent') WHERE key = (SELECT agent FROM ids)), 1,
          'an outbound message counts for its sender');
SELECT is((SELECT first_responses::int FROM ventros.crm_report(current_date - 1, current_date, 'channel')), 1, 'the first response is counted');
SELECT ok((SELECT avg_first_response_seconds >= 299 FROM ventros.crm_report(current_date - 1, current_date, 'channel')),
          'with its response time');
SELECT ventros.close_session((SELECT session_id FROM m1));
SELECT results_eq($$SELECT sessions_handled, average_response_ms >= 299000 FROM ventros.agents WHERE id = (SELECT agent FROM ids)$$,
                  $$VALUES (1, true)$$, 'the handling agent''s sessions_handled and running average response time are kept');
SELECT results_eq($$SELECT sessions_ended, resolutions FROM ventros.crm_report(current_date - 1, current_date, 'channel')$$,
                  $$VALUES (1::bigint, 1::bigint)$$, 'ending an answered session counts a resolution');
RESET ROLE;
INSERT INTO ventros.crm_daily_stats (tenant_id, day, channel_id, agent_id, slot, messages_in)
SELECT 'crm_r', '2026-03-01', (SELECT ch FROM ids), '00000000-0000-4000-8000-00000000abcd', s, 10 FROM generate_series(0, 3) s;
SET LOCAL ROLE ventros_admin;
CREATE TEMP TABLE before_compaction AS SELECT * FROM ventros.crm_report('2026-03-01', '2026-03-02', 'day_agent');
SET LOCAL ROLE ventros_platform_admin;  -- maintenance is the scheduler's
SELECT ok(ventros.compact_crm_daily_stats(current_date) >= 3, 'compaction folds the slots of past days');
SET LOCAL ROLE ventros_admin;
SELECT is((SELECT count(*)::int FROM ventros.crm_daily_stats WHERE day < current_date AND slot <> 0), 0, 'no past slot is left');
SELECT results_eq($$SELECT * FROM ventros.crm_report('2026-03-01', '2026-03-02', 'day_agent')$$, $$SELECT * FROM before_compaction$$,
                  'and the report is unchanged');
SET LOCAL ROLE ventros_agent;
SELECT throws_ok($$SELECT * FROM ventros.crm_report('2026-03-02', '2026-03-01')$$, '22023', NULL, 'a reversed range is refused');
SELECT throws_ok($$SELECT * FROM ventros.crm_report('2026-03-01', '2026-03-02', 'weekday')$$, '22023', NULL, 'an unknown grouping is refused');
SET LOCAL ventros.tenant = 'crm_r2';
SELECT is((SELECT count(*)::int FROM ventros.crm_report('2026-01-01', '2026-12-31')), 0, 'another tenant sees none of it');
SET LOCAL ventros.tenant = 'crm_r';

-- timeline: newest first, keyset paged
CREATE TEMP TABLE tl AS SELECT * FROM ventros.contact_timeline((SELECT contact_id FROM m1), page_size => 3);
SELECT is((SELECT count(*)::int FROM tl), 3, 'a timeline page holds page_size rows');
SELECT is((SELECT kind FROM tl ORDER BY at DESC, id DESC LIMIT 1), 'message', 'newest first: the agent''s reply');
SELECT is((SELECT count(*)::int FROM ventros.contact_timeline((SELECT contact_id FROM m1), (SELECT at FROM tl ORDER BY at, id LIMIT 1),
                                                              (SELECT id FROM tl ORDER BY at, id LIMIT 1), 3)), 1,
          'the next page continues after the last row');
SELECT throws_ok($$SELECT * FROM ventros.contact_timeline((SELECT contact_id FROM m1), page_size => 100000)$$, '54000', NULL,
                 'a page over the maximum is refused');
SELECT throws_ok($$SELECT * FROM ventros.contact_timeline((SELECT contact_id FROM m1), page_size => 0)$$, '22023', NULL,
                 'a page size under 1 is refused');

-- session messages, open sessions, search
SELECT results_eq($$SELECT text FROM ventros.session_messages((SELECT session_id FROM m1))$$,
                  $$VALUES ('quero um orçamento de frete'::text), ('alguém?'), ('Olá! O frete custa 10')$$,
                  'a session''s messages in conversation order');
SELECT is((SELECT count(*)::int FROM ventros.session_messages((SELECT session_id FROM m1),
                                                              (SELECT "timestamp" FROM m1), (SELECT id FROM m1), 1)), 1,
          'session messages page after a keyset');
SELECT is((SELECT count(*)::int FROM ventros.open_sessions(NULL::uuid, (SELECT ch FROM ids))), 1, 'one unassigned open session on the channel');
SELECT results_eq($$SELECT channel_message_id FROM ventros.search_messages('frete')$$, $$VALUES (NULL::text), ('r1')$$,
                  'full-text search finds both messages about "frete", newest first');
SELECT is((SELECT count(*)::int FROM ventros.search_messages('frete -orçamento')), 1, 'web search syntax excludes words');
SET LOCAL ventros.tenant = 'crm_r2';
SELECT is((SELECT count(*)::int FROM ventros.search_messages('frete')), 0, 'search (SECURITY DEFINER) stays within the acting tenant');
SET LOCAL ventros.tenant = 'crm_r';
RESET ROLE; SET LOCAL ROLE ventros_admin;
SELECT ventros.delete_message((SELECT id FROM o1));
SELECT is((SELECT count(*)::int FROM ventros.search_messages('frete')), 1, 'search skips deleted messages');

SELECT * FROM finish();
ROLLBACK;
