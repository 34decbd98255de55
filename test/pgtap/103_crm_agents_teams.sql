-- Agents (system agents, virtual agents, permissions), teams, channel types
-- (the system catalogue readable by every tenant), channel labels, agent
-- sessions.
BEGIN;
SELECT plan(30);

SELECT ventros.create_tenant('crm_a', 'Agents');
SELECT ventros.create_tenant('crm_b', 'Other');
SET LOCAL ventros.tenant = 'crm_a';
SET LOCAL ROLE ventros_admin;

SELECT results_eq($$SELECT id FROM ventros.agents WHERE type = 'system' ORDER BY id$$,
                  $$SELECT x::uuid FROM unnest(ARRAY['00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000002',
                      '00000000-0000-0000-0000-000000000003', '00000000-0000-0000-0000-000000000004',
                      '00000000-0000-0000-0000-000000000005', '00000000-0000-0000-0000-000000000010',
                      '00000000-0000-0000-0000-000000000099']) x$$,
                  'every tenant has the seven system agents with fixed ids');
RESET ROLE;	-- the guard holds for the owner too
SELECT throws_ok($$UPDATE ventros.agents SET name = 'hacked', version = version WHERE id = '00000000-0000-0000-0000-000000000001'$$,
                 '42501', NULL, 'a system agent cannot be changed');
SET LOCAL ROLE ventros_admin;
SELECT throws_ok($$DELETE FROM ventros.agents WHERE id = '00000000-0000-0000-0000-000000000099'$$, '42501', NULL,
                 'a system agent cannot be deleted');
SELECT throws_ok($$SELECT ventros.create_agent('Sys', 'system')$$, '22023', NULL, 'create_agent refuses type system');
SELECT throws_ok($$INSERT INTO ventros.agents (id, project_id, name, type) VALUES ('00000000-0000-0000-0000-000000000042', ventros.default_project(), 'x', 'system')$$,
                 '42501', 'direct inserts of agent rows are refused', 'a system agent cannot be inserted (agents are created by their commands)');

CREATE TEMP TABLE a AS SELECT * FROM ventros.create_agent('Ana', email => 'Ana@Example.com', role => 'human_agent');
SELECT is((SELECT email FROM a), 'ana@example.com', 'the email is normalised');
SELECT throws_ok($$SELECT ventros.create_agent('Ana 2', email => 'ana@example.com')$$, '23505',
                 'an agent with email ana@example.com already exists', 'agent emails are unique per tenant');
SELECT throws_ok($$SELECT ventros.create_agent('Bad', role => 'king')$$, '23514', NULL, 'an unknown role is refused');
SELECT is((ventros.set_agent_presence((SELECT id FROM a), 'available')).status, 'available', 'presence changes freely');
SELECT throws_ok($$SELECT ventros.set_agent_presence((SELECT id FROM a), 'asleep')$$, '22023', NULL, 'an unknown presence is refused');
SELECT ventros.set_agent_permission((SELECT id FROM a), 'messages.send', true);
SELECT ventros.set_agent_permission((SELECT id FROM a), 'messages.send', false);
SELECT results_eq($$SELECT event_type FROM ventros.outbox WHERE event_type LIKE 'agent.permission%' ORDER BY seq$$,
                  $$VALUES ('agent.permission_granted'::text), ('agent.permission_revoked')$$, 'permission events');
SELECT ventros.record_agent_login((SELECT id FROM a));
SELECT is((SELECT count(*)::int FROM ventros.outbox WHERE event_type = 'agent.logged_in'), 1, 'agent.logged_in');
SELECT is((ventros.update_agent((SELECT id FROM a), (SELECT version FROM ventros.agents WHERE id = (SELECT id FROM a)), '{"active": false}')).active,
          false, 'an agent is deactivated');
SELECT is((SELECT count(*)::int FROM ventros.outbox WHERE event_type = 'agent.deactivated'), 1, 'agent.deactivated');

-- virtual agents
CREATE TEMP TABLE v AS SELECT * FROM ventros.create_virtual_agent('Old Bob', 'left', '2024-01-01');
SELECT throws_ok($$SELECT ventros.set_agent_presence((SELECT id FROM v), 'available')$$, '22023', NULL, 'a virtual agent stays offline');
SELECT throws_ok($$SELECT ventros.end_virtual_period((SELECT id FROM v), 1, '2023-01-01')$$, '23514', NULL,
                 'a virtual period cannot end before it starts');
SELECT is((ventros.end_virtual_period((SELECT id FROM v), 1, '2025-01-01')).virtual_metadata->>'period_end' IS NOT NULL, true,
          'a virtual period ends');
SELECT is((SELECT count(*)::int FROM ventros.outbox WHERE event_type = 'agent.virtual_period_ended'), 1, 'agent.virtual_period_ended');

-- teams
CREATE TEMP TABLE t AS SELECT ventros_test.new_team() AS id;
SELECT throws_ok($$SELECT ventros.add_team_member((SELECT id FROM t), (SELECT id FROM v))$$, '22023', NULL,
                 'a virtual agent cannot join a team');
SELECT lives_ok($$SELECT ventros.add_team_member((SELECT id FROM t), (SELECT id FROM a))$$, 'an agent joins a team');
SELECT throws_ok($$SELECT ventros.add_team_member((SELECT id FROM t), (SELECT id FROM a))$$, '23505', NULL, 'only once');
SELECT throws_ok($$SELECT ventros.create_team('Bad', 'random')$$, '22023', NULL, 'an unknown strategy is refused');

-- channel types
SELECT is((SELECT count(*)::int FROM ventros.list_channel_types() WHERE tenant_id = 'ventros'), 9, 'a tenant reads the system catalogue');
SELECT is(ventros.channel_type_id('instagram'), 5, 'kinds are found by name');
SELECT lives_ok($$SELECT ventros.create_channel_type(1001, 'kiosk', 'acme')$$, 'a tenant adds a kind of its own');
SELECT throws_ok($$SELECT ventros.create_channel_type(5, 'fake', 'acme')$$, '23514', NULL, 'ids under 1000 are reserved');
UPDATE ventros.channel_types SET description = 'x', version = version WHERE tenant_id = 'ventros' AND name = 'waha';
SELECT is((SELECT description FROM ventros.channel_types WHERE tenant_id = 'ventros' AND name = 'waha'),
          'WhatsApp through a WAHA session', 'a tenant cannot change the system catalogue (its rows are not updatable)');
SET LOCAL ventros.tenant = 'crm_b';
SELECT is((SELECT count(*)::int FROM ventros.channel_types WHERE name = 'kiosk'), 0, 'another tenant does not see a tenant''s own kind');
SET LOCAL ventros.tenant = 'crm_a';

-- labels
SELECT throws_ok($$SELECT ventros.upsert_channel_label(ventros_test.new_channel('instagram'), 'l1', 'Hot')$$, '22023', NULL,
                 'labels exist on WAHA channels only');
CREATE TEMP TABLE l AS SELECT * FROM ventros.upsert_channel_label(ventros_test.new_channel('waha'), 'l1', 'Hot');
SELECT is((SELECT count(*)::int FROM ventros.outbox WHERE event_type = 'channel.label_upserted'
             AND aggregate_id = (SELECT channel_id FROM l)), 1,
          'channel.label_upserted');

SELECT * FROM finish();
ROLLBACK;
