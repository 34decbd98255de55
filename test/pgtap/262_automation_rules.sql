-- Automation rules that run: the executor, conditions, actions, loops, time triggers.
BEGIN;
SELECT plan(83);
SELECT ventros.create_tenant('t_rules', 'Rules');
SET LOCAL ventros.tenant = 't_rules';
SET LOCAL ROLE ventros_admin;
CREATE TEMP TABLE ids (name text PRIMARY KEY, id uuid);
GRANT ALL ON ids TO PUBLIC;
CREATE FUNCTION pg_temp.id(n text) RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM ids WHERE name = n $$;
INSERT INTO ids SELECT 'ch', ventros_test.new_channel();
INSERT INTO ids SELECT 'price', id FROM ventros.create_automation('Price question', 'message.received',
    '[{"type": "add_tag", "params": {"tag": "lead"}}, {"type": "send_message", "params": {"text": "Hi {{contact.name}}, our prices: ..."}}]',
    '[{"keyword": ["price", "cost"]}]', automation_type => 'event');
INSERT INTO ids SELECT 'm1', id FROM ventros.receive_message(pg_temp.id('ch'), '+5511900000001', 'What is the PRICE?', sender_name => 'Ana');
INSERT INTO ids SELECT 'ana', contact_id FROM ventros.messages WHERE id = pg_temp.id('m1');
SELECT is((SELECT count(*)::int FROM ventros.automation_queue), 1, 'the inbound message is queued for the executor');
SELECT is((SELECT tags FROM ventros.contacts WHERE id = pg_temp.id('ana')), '{}'::text[], 'nothing runs in the writer''s transaction');
SELECT ok(ventros_test.run_automations() >= 1, 'the executor takes it');
SELECT is((SELECT outcome FROM ventros.automation_runs WHERE automation_id = pg_temp.id('price')), 'executed', 'run executed');
SELECT is((SELECT tags FROM ventros.contacts WHERE id = pg_temp.id('ana')), '{lead}'::text[], 'the rule tagged the contact');
SELECT is((SELECT text FROM ventros.messages WHERE contact_id = pg_temp.id('ana') AND from_me), 'Hi Ana, our prices: ...', 'the rule replied');
SELECT is((SELECT array_agg(event_type ORDER BY seq) FROM ventros.outbox WHERE aggregate_id = pg_temp.id('price') AND event_type LIKE 'automation.%ed'),
          '{automation.created,automation.triggered,automation.executed}', 'automation.triggered and .executed');
SELECT is((SELECT count(*)::int FROM ventros.automation_queue), 0, 'queue drained');
INSERT INTO ids SELECT 'm2', id FROM ventros.receive_message(pg_temp.id('ch'), '+5511900000002', 'hello there');
SELECT ok(ventros_test.run_automations() >= 1, 'executor');
SELECT is((SELECT outcome FROM ventros.automation_runs r JOIN ventros.outbox o ON o.event_id = r.event_id WHERE o.aggregate_id = pg_temp.id('m2')),
          'skipped', 'no keyword: skipped by condition');

-- a failing rule: its actions roll back and it is logged failed; the write and the other rules stand
INSERT INTO ids SELECT 'bad', id FROM ventros.create_automation('Broken', 'message.received',
    '[{"type": "add_tag", "params": {"tag": "half_done"}}, {"type": "create_task", "params": {}}]', priority => 10, automation_type => 'event');
INSERT INTO ids SELECT 'm3', id FROM ventros.receive_message(pg_temp.id('ch'), '+5511900000003', 'price please');
INSERT INTO ids SELECT 'c3', contact_id FROM ventros.messages WHERE id = pg_temp.id('m3');
SELECT ok(ventros_test.run_automations() >= 1, 'executor');
SELECT is((SELECT outcome || ': ' || error FROM ventros.automation_runs WHERE automation_id = pg_temp.id('bad') AND event_type = 'message.created'
           ORDER BY started_at DESC LIMIT 1), 'failed: 0A000: action "create_task" is not supported by the automation executor', 'the failing rule is logged failed with its reason');
SELECT is((SELECT tags FROM ventros.contacts WHERE id = pg_temp.id('c3')), '{lead}'::text[], 'its first action rolled back; the other rule tagged');
SELECT is((SELECT count(*)::int FROM ventros.messages WHERE id = pg_temp.id('m3')), 1, 'the user''s write stands');
SELECT ok((SELECT array_agg(event_type) FROM ventros.outbox WHERE aggregate_id = pg_temp.id('bad')) @> '{automation.triggered,automation.failed}', 'automation.failed emitted');

-- idempotence: the same event queued again runs nothing twice
SELECT throws_ok($$INSERT INTO ventros.automation_queue (tenant_id, seq, event_id, aggregate_id, origin_event_id) VALUES ('t_rules', 1, gen_random_uuid(), gen_random_uuid(), gen_random_uuid())$$,
                 '42501', NULL, 'tenants cannot queue (forge) runs');
SELECT throws_ok($$SET ventros.automation_depth = 99$$, '42501', NULL, 'nor set the cascade marks');
RESET ROLE;
INSERT INTO ventros.automation_queue (tenant_id, seq, event_id, aggregate_id, origin_event_id)
SELECT tenant_id, seq, event_id, aggregate_id, event_id FROM ventros.outbox WHERE aggregate_id = pg_temp.id('m3') AND event_type = 'message.created';
SET LOCAL ROLE ventros_admin;
SELECT is(ventros_test.run_automations(), 1, 'the repeated queue row is taken');
SELECT is((SELECT count(*)::int FROM ventros.automation_runs r JOIN ventros.outbox o ON o.event_id = r.event_id WHERE o.aggregate_id = pg_temp.id('m3')),
          2, 'still one run per rule and event');
SELECT is((SELECT count(*)::int FROM ventros.messages WHERE contact_id = pg_temp.id('c3') AND from_me), 1, 'one reply only');

-- stop flag and priority; per-tenant disable
SELECT ventros.update_automation(pg_temp.id('bad'), 1, '{"actions": [{"type": "add_tag", "params": {"tag": "first"}}], "stop_processing": true}');
INSERT INTO ids SELECT 'm4', id FROM ventros.receive_message(pg_temp.id('ch'), '+5511900000004', 'price?');
INSERT INTO ids SELECT 'c4', contact_id FROM ventros.messages WHERE id = pg_temp.id('m4');
SELECT ok(ventros_test.run_automations() >= 1, 'executor');
SELECT is((SELECT tags FROM ventros.contacts WHERE id = pg_temp.id('c4')), '{first}'::text[], 'the higher-priority rule ran and stopped the rest');
SELECT set_automation_settings FROM ventros.set_automation_settings(enabled => false);
INSERT INTO ids SELECT 'm5', id FROM ventros.receive_message(pg_temp.id('ch'), '+5511900000005', 'price?');
SELECT ok(ventros_test.run_automations() >= 1, 'executor');
SELECT is((SELECT count(*)::int FROM ventros.automation_runs r JOIN ventros.outbox o ON o.event_id = r.event_id WHERE o.aggregate_id = pg_temp.id('m5')),
          0, 'a tenant that disabled its automations runs none');
SELECT ventros.set_automation_settings(enabled => true);
SELECT ventros.set_automation_enabled(pg_temp.id('bad'), 2, false);
SELECT ventros.set_automation_enabled(pg_temp.id('price'), 1, false);

-- loops: a chain of rules on custom events stops at the depth limit (5)
SELECT ventros.create_automation('Step ' || i, 'custom.step' || i,
    jsonb_build_array(jsonb_build_object('type', 'emit_event', 'params', jsonb_build_object('name', 'step' || (i + 1)))),
    automation_type => 'custom') FROM generate_series(1, 7) i;
SELECT ventros.emit_custom_event('step1');
SELECT ok(ventros_test.run_automations() >= 5, 'executor follows the cascade');
SELECT is((SELECT array_agg(a.name || '=' || r.outcome || '@' || r.depth ORDER BY r.depth) FROM ventros.automation_runs r JOIN ventros.automations a ON a.id = r.automation_id
            WHERE a.name LIKE 'Step %'),
          '{Step 1=executed@0,Step 2=executed@1,Step 3=executed@2,Step 4=executed@3,Step 5=executed@4,Step 6=failed@5}', 'the chain stops at depth 5');
SELECT matches((SELECT error FROM ventros.automation_runs r JOIN ventros.automations a ON a.id = r.automation_id WHERE a.name = 'Step 6'),
          '^cascade depth limit 5 reached', 'with a clear reason');
SELECT is((SELECT count(*)::int FROM ventros.automation_queue), 0, 'nothing left queued: no infinite cascade');
-- the same rule never twice for one originating event
INSERT INTO ids SELECT 'selfloop', id FROM ventros.create_automation('Self', 'custom.ping',
    '[{"type": "emit_event", "params": {"name": "ping"}}]', automation_type => 'custom');
SELECT ventros.emit_custom_event('ping');
SELECT ok(ventros_test.run_automations() >= 2, 'executor');
SELECT is((SELECT array_agg(outcome ORDER BY depth) FROM ventros.automation_runs WHERE automation_id = pg_temp.id('selfloop')),
          '{executed,failed}', 'a rule triggered by its own event fails the second time');
SELECT matches((SELECT error FROM ventros.automation_runs WHERE automation_id = pg_temp.id('selfloop') AND outcome = 'failed'),
               '^loop: rule already ran for the originating event', 'with a clear reason');
SELECT ventros.set_automation_enabled(pg_temp.id('selfloop'), 1, false);
SELECT count(ventros.set_automation_enabled(id, version, false)) FROM ventros.automations WHERE name LIKE 'Step %';

-- conditions, each kind, on a context
CREATE TEMP TABLE ctx AS SELECT '{"event": {"type": "message.created"}, "payload": {"amount": 150, "text": "Quero saber o preço", "nested": {"k": "v"}},
  "contact": {"name": "Ana", "language": "pt", "tags": ["vip", "lead"], "custom": {"plan": "gold", "score": 7}},
  "message": {"text": "Quero saber o preço", "content_type": "audio"}, "session": {"status": "active", "duration_minutes": 42.5},
  "channel": {"type": "whatsapp"}, "pipeline": {"statuses": ["Qualified"]}}'::jsonb AS c;
GRANT SELECT ON ctx TO PUBLIC;
CREATE FUNCTION pg_temp.holds(cond jsonb, at timestamptz DEFAULT '2026-03-02 12:00:00+00', tz text DEFAULT 'UTC') RETURNS boolean
    LANGUAGE sql AS $$ SELECT ventros.automation_condition_holds(cond, (SELECT c FROM ctx), tz, at) $$;
SELECT ok(pg_temp.holds('{"field": "amount", "operator": "gt", "value": 100}') AND NOT pg_temp.holds('{"field": "payload.amount", "operator": "lt", "value": 100}'), 'payload field');
SELECT ok(pg_temp.holds('{"field": "payload.nested.k", "operator": "eq", "value": "v"}'), 'nested payload field');
SELECT ok(pg_temp.holds('{"field": "contact.name", "operator": "starts_with", "value": "an"}'), 'contact field');
SELECT ok(pg_temp.holds('{"field": "contact.custom.plan", "operator": "in", "value": ["gold", "silver"]}')
          AND pg_temp.holds('{"field": "contact.custom.score", "operator": "gte", "value": 7}'), 'custom fields');
SELECT ok(pg_temp.holds('{"tag": "vip"}') AND NOT pg_temp.holds('{"tag": "churned"}')
          AND pg_temp.holds('{"field": "contact.tags", "operator": "contains", "value": "lead"}'), 'tags');
SELECT ok(pg_temp.holds('{"field": "channel.type", "operator": "eq", "value": "whatsapp"}'), 'channel');
SELECT ok(pg_temp.holds('{"field": "session.status", "operator": "eq", "value": "active"}')
          AND pg_temp.holds('{"field": "session.duration_minutes", "operator": "gt", "value": 30}'), 'session state and duration');
SELECT ok(pg_temp.holds('{"field": "pipeline.statuses", "operator": "contains", "value": "Qualified"}'), 'pipeline status');
SELECT ok(pg_temp.holds('{"keyword": ["preço", "price"]}') AND NOT pg_temp.holds('{"keyword": "pre"}'), 'keyword: whole words, any of a list');
SELECT ok(pg_temp.holds('{"regex": "saber .* pre"}') AND NOT pg_temp.holds('{"regex": "^pre"}'), 'regular expression');
SELECT ok(pg_temp.holds('{"field": "contact.language", "operator": "eq", "value": "pt"}'), 'language');
SELECT ok(pg_temp.holds('{"field": "message.content_type", "operator": "in", "value": ["audio", "voice"]}'), 'message type');
SELECT ok(pg_temp.holds('{"all": [{"tag": "vip"}, {"any": [{"tag": "x"}, {"not": {"tag": "y"}}]}]}')
          AND NOT pg_temp.holds('{"not": {"all": [{"tag": "vip"}]}}'), 'all / any / not');
SELECT ok(ventros.automation_conditions_hold('[{"tag": "x"}, {"tag": "vip", "logic": "OR"}]', (SELECT c FROM ctx), 'UTC', now()), 'the stored list with logic OR');
-- time windows in the tenant's timezone, at the boundary +- 1 s (09:00-18:00 Sao Paulo = 12:00-21:00 UTC, Monday 2026-03-02)
SELECT ok(NOT pg_temp.holds('{"time_window": {"from": "09:00", "to": "18:00"}}', '2026-03-02 11:59:59+00', 'America/Sao_Paulo'), 'window: 1 s before it opens');
SELECT ok(pg_temp.holds('{"time_window": {"from": "09:00", "to": "18:00"}}', '2026-03-02 12:00:00+00', 'America/Sao_Paulo'), 'window: as it opens');
SELECT ok(pg_temp.holds('{"time_window": {"from": "09:00", "to": "18:00"}}', '2026-03-02 20:59:59+00', 'America/Sao_Paulo'), 'window: 1 s before it closes');
SELECT ok(NOT pg_temp.holds('{"time_window": {"from": "09:00", "to": "18:00"}}', '2026-03-02 21:00:00+00', 'America/Sao_Paulo'), 'window: closed at its end');
SELECT ok(pg_temp.holds('{"time_window": {"from": "22:00", "to": "06:00"}}', '2026-03-03 01:00:00+00', 'America/Sao_Paulo')
          AND NOT pg_temp.holds('{"time_window": {"from": "22:00", "to": "06:00"}}', '2026-03-03 09:00:01+00', 'America/Sao_Paulo'), 'overnight window');
SELECT ok(pg_temp.holds('{"weekdays": [1]}', '2026-03-02 02:59:59+00', 'UTC') AND NOT pg_temp.holds('{"weekdays": [1]}', '2026-03-02 02:59:59+00', 'America/Sao_Paulo')
          AND pg_temp.holds('{"weekdays": [1]}', '2026-03-02 03:00:00+00', 'America/Sao_Paulo'), 'weekdays in the tenant''s timezone, at midnight +- 1 s');
SELECT throws_ok($$SELECT ventros.create_automation('R', 'message.*', '[]', '[{"all": [{"tag": 5}]}]', automation_type => 'event')$$, '22023', NULL,
                 'malformed nested condition refused');
SELECT lives_ok($$SELECT ventros.create_automation('Any message', 'message.*', '[]', automation_type => 'event', priority => 0)$$, 'wildcard trigger');
SELECT throws_ok($$SELECT ventros.set_automation_settings(timezone => 'Mars/Olympus')$$, '22023', NULL, 'unknown timezone refused');

-- actions, each through its command
INSERT INTO ids SELECT 'agent', ventros_test.new_agent();
INSERT INTO ids SELECT 'team', ventros_test.new_team();
SELECT ventros.add_team_member(pg_temp.id('team'), pg_temp.id('agent'));
INSERT INTO ids SELECT 'pipe', ventros_test.new_pipeline();
INSERT INTO ids SELECT 'won', id FROM ventros.pipeline_statuses WHERE pipeline_id = pg_temp.id('pipe') AND name = 'won';
INSERT INTO ids SELECT 'list', id FROM ventros.create_contact_list('VIPs', is_static => true);
INSERT INTO ids SELECT 'seq', id FROM ventros.create_sequence('Nurture');
SELECT ventros.add_sequence_step(pg_temp.id('seq'), 0, 'One', '{"type": "text", "content": "Hi"}');
SELECT ventros.set_sequence_status(pg_temp.id('seq'), 1, 'active');
SELECT ventros.create_canned_response('thanks', 'Thanks', 'Thanks for writing!');
INSERT INTO ids SELECT 'all', id FROM ventros.create_automation('Everything', 'message.received',
    jsonb_build_array(
        '{"type": "remove_tag", "params": {"tag": "none"}}'::jsonb,
        '{"type": "add_tag", "params": {"tag": "handled"}}'::jsonb,
        '{"type": "set_field", "params": {"field": "language", "value": "pt"}}'::jsonb,
        '{"type": "set_custom_field", "params": {"key": "plan", "value": "gold"}}'::jsonb,
        jsonb_build_object('type', 'change_pipeline_status', 'params', jsonb_build_object('status_id', pg_temp.id('won'))),
        jsonb_build_object('type', 'assign_team', 'params', jsonb_build_object('team_id', pg_temp.id('team'))),
        jsonb_build_object('type', 'assign_agent', 'params', jsonb_build_object('agent_id', pg_temp.id('agent'))),
        '{"type": "send_canned_response", "params": {"shortcut": "thanks"}}'::jsonb,
        '{"type": "add_note", "params": {"content": "handled by a rule"}}'::jsonb,
        jsonb_build_object('type', 'enroll_sequence', 'params', jsonb_build_object('sequence_id', pg_temp.id('seq'))),
        jsonb_build_object('type', 'add_to_list', 'params', jsonb_build_object('list_id', pg_temp.id('list'))),
        '{"type": "notify_agents", "params": {"message": "a hot lead"}}'::jsonb,
        '{"type": "wait", "params": {"minutes": 30}}'::jsonb,
        jsonb_build_object('type', 'unenroll_sequence', 'params', jsonb_build_object('sequence_id', pg_temp.id('seq'))),
        jsonb_build_object('type', 'remove_from_list', 'params', jsonb_build_object('list_id', pg_temp.id('list'))),
        '{"type": "close_session"}'::jsonb),
    '[{"keyword": "everything"}]', automation_type => 'event');
INSERT INTO ids SELECT 'm6', id FROM ventros.receive_message(pg_temp.id('ch'), '+5511900000006', 'do everything');
INSERT INTO ids SELECT 'c6', contact_id FROM ventros.messages WHERE id = pg_temp.id('m6');
INSERT INTO ids SELECT 's6', session_id FROM ventros.messages WHERE id = pg_temp.id('m6');
SELECT ok(ventros_test.run_automations() >= 1, 'executor');
SELECT is((SELECT outcome || coalesce(': ' || error, '') FROM ventros.automation_runs WHERE automation_id = pg_temp.id('all')), 'waiting', 'the run waits after 12 actions');
SELECT is((SELECT tags FROM ventros.contacts WHERE id = pg_temp.id('c6')), '{handled}'::text[], 'add_tag / remove_tag');
SELECT is((SELECT language FROM ventros.contacts WHERE id = pg_temp.id('c6')), 'pt', 'set_field');
SELECT is((SELECT field_value #>> '{}' FROM ventros.contact_custom_fields WHERE contact_id = pg_temp.id('c6') AND field_key = 'plan'), 'gold', 'set_custom_field');
SELECT is((SELECT status_id FROM ventros.contact_pipeline_statuses WHERE contact_id = pg_temp.id('c6') AND exited_at IS NULL), pg_temp.id('won'), 'change_pipeline_status');
SELECT is((SELECT team_id::text || '/' || assigned_agent_id::text FROM ventros.sessions WHERE id = pg_temp.id('s6')),
          pg_temp.id('team')::text || '/' || pg_temp.id('agent')::text, 'assign_team, assign_agent');
SELECT is((SELECT text FROM ventros.messages WHERE contact_id = pg_temp.id('c6') AND from_me), 'Thanks for writing!', 'send_canned_response');
SELECT is((SELECT content FROM ventros.notes WHERE contact_id = pg_temp.id('c6')), 'handled by a rule', 'add_note');
SELECT is((SELECT status FROM ventros.sequence_enrollments WHERE contact_id = pg_temp.id('c6')), 'active', 'enroll_sequence');
SELECT ok(ventros.is_in_contact_list(pg_temp.id('list'), pg_temp.id('c6')), 'add_to_list');
SELECT is((SELECT payload->>'message' FROM ventros.outbox WHERE event_type = 'automation.agents_notified' AND aggregate_id = pg_temp.id('all')), 'a hot lead', 'notify_agents: an event');
SET LOCAL ROLE ventros_platform_admin;
SELECT is(ventros.run_automations(100, now() + interval '29 minutes'), 0, 'the wait is not due after 29 minutes');
SELECT is(ventros.run_automations(100, now() + interval '30 minutes'), 1, 'due after 30: resumed');
SET LOCAL ROLE ventros_admin;
SELECT is((SELECT outcome FROM ventros.automation_runs WHERE automation_id = pg_temp.id('all')), 'executed', 'then executed');
SELECT is((SELECT status FROM ventros.sequence_enrollments WHERE contact_id = pg_temp.id('c6')), 'exited', 'unenroll_sequence');
SELECT ok(NOT ventros.is_in_contact_list(pg_temp.id('list'), pg_temp.id('c6')), 'remove_from_list');
SELECT is((SELECT status FROM ventros.sessions WHERE id = pg_temp.id('s6')), 'ended', 'close_session');

-- dry run: says what would happen, does nothing
SELECT is((ventros.test_automation(pg_temp.id('all'), (SELECT event_id FROM ventros.outbox WHERE aggregate_id = pg_temp.id('m6') AND event_type = 'message.created')))->>'already_ran',
          'true', 'dry run: already ran');
SELECT is((ventros.test_automation(pg_temp.id('all'), (SELECT event_id FROM ventros.outbox WHERE aggregate_id = pg_temp.id('m3') AND event_type = 'message.created')))->>'conditions_hold',
          'false', 'dry run: conditions do not hold for another event');

-- time triggers: schedule, no reply, contact date
INSERT INTO ids SELECT 'daily', id FROM ventros.create_automation('Daily', 'scheduled', '[{"type": "emit_event", "params": {"name": "daily_report"}}]',
    automation_type => 'scheduled', schedule => '{"type": "daily", "at": "09:00"}');
INSERT INTO ids SELECT 'noreply', id FROM ventros.create_automation('No reply', 'no_response.timeout', '[{"type": "add_tag", "params": {"tag": "waiting"}}]',
    automation_type => 'event', trigger_config => '{"minutes": 15}');
SET LOCAL ROLE ventros_platform_admin;
SELECT ventros.set_automation_settings(timezone => 'America/Sao_Paulo');
SELECT is(ventros.tick_automation_rules('2026-03-02 11:00:00+00'), 0, 'first tick arms the schedule');
SELECT is((SELECT next_execution FROM ventros.automations WHERE id = pg_temp.id('daily')), '2026-03-02 12:00:00+00'::timestamptz, 'next 09:00 in Sao Paulo');
SELECT is(ventros.tick_automation_rules('2026-03-02 11:59:59+00'), 0, '1 s before: nothing');
SELECT is(ventros.tick_automation_rules('2026-03-02 12:00:00+00'), 1, 'at 09:00: fired (and the unanswered messages, older than 15 min, not yet: they are newer)');
SELECT is(ventros.tick_automation_rules('2026-03-02 12:00:01+00'), 0, 'once');
SELECT ok(ventros.tick_automation_rules(now() + interval '16 minutes') >= 1, 'no reply for 15 minutes fires');
SELECT ok(ventros_test.run_automations() >= 1, 'executor');
SELECT is((SELECT count(*)::int FROM ventros.automation_runs WHERE automation_id = pg_temp.id('daily') AND outcome = 'executed'), 2, 'the scheduled rule ran: at 09:00, and once for the next occurrence the later tick found past (one catch-up, then the next from now)');
SELECT is((SELECT tags FROM ventros.contacts WHERE id = pg_temp.id('c4')), '{first,waiting}'::text[], 'the unanswered contact is tagged');

SELECT * FROM finish();
ROLLBACK;
