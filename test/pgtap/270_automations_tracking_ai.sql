-- Automations, trackings, message groups, enrichments and AI processes.
BEGIN;
SELECT plan(44);
SELECT ventros.create_tenant('t_ai', 'AI');
SET LOCAL ventros.tenant = 't_ai';
SET LOCAL ROLE ventros_admin;
CREATE TEMP TABLE ids (name text PRIMARY KEY, id uuid);
CREATE FUNCTION pg_temp.id(n text) RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM ids WHERE name = n $$;
CREATE FUNCTION pg_temp.events(agg uuid) RETURNS text[] LANGUAGE sql AS
    $$ SELECT array_agg(event_type ORDER BY seq) FROM ventros.outbox WHERE aggregate_id = agg $$;

-- automations
INSERT INTO ids SELECT 'p', ventros_test.new_pipeline();
SELECT throws_ok($$SELECT ventros.create_automation('R', 'session.ended', '[]')$$, '23502', 'a pipeline_based automation needs a pipeline',
                 'pipeline_based needs a pipeline');
SELECT throws_ok($$SELECT ventros.create_automation('R', 'moon.rose', '[]', automation_type => 'event')$$, '22023', NULL, 'unknown trigger');
SELECT throws_ok($$SELECT ventros.create_automation('R', 'session.ended', '[{"type": "launch_rocket"}]', automation_type => 'event')$$,
                 '22023', NULL, 'unknown action');
SELECT throws_ok($$SELECT ventros.create_automation('R', 'session.ended', '[]', '[{"field": "tags", "operator": "like"}]', automation_type => 'event')$$,
                 '22023', NULL, 'unknown condition operator');
INSERT INTO ids SELECT 'a', id FROM ventros.create_automation('Follow up', 'session.ended',
    '[{"type": "send_template", "params": {"template": "bye"}, "delay_minutes": 30}]',
    '[{"field": "session.resolved", "operator": "eq", "value": true}]', pipeline_id => pg_temp.id('p'), priority => 5);
SELECT is((ventros.add_automation_rule(pg_temp.id('a'), 1, 'action', '{"type": "add_tag", "params": {"tag": "closed"}}')).actions->1->>'type',
          'add_tag', 'action appended');
SELECT throws_ok($$SELECT ventros.add_automation_rule(pg_temp.id('a'), 2, 'action', '{"type": "nope"}')$$, '23514', NULL, 'malformed action refused');
SELECT ok(to_regprocedure('ventros.record_automation_run(uuid, text, jsonb)') IS NULL, 'runs are recorded by the executor only (266_automation_records.sql)');
SELECT throws_ok($$INSERT INTO ventros.automation_rule_runs (automation_id, event_id, event_type, origin_event_id, depth)
                   VALUES (pg_temp.id('a'), gen_random_uuid(), 'session.ended', gen_random_uuid(), 0)$$, '42501', NULL, 'nor written directly');
SELECT is((ventros.set_automation_enabled(pg_temp.id('a'), 2, false)).enabled, false, 'true -> false');
SELECT throws_ok($$SELECT ventros.set_automation_enabled(pg_temp.id('a'), 2, true)$$, 'VN001', NULL, 'a stale version');
SELECT is((ventros.set_automation_enabled(pg_temp.id('a'), 3, true)).enabled, true, 'false -> true');
SELECT ok(pg_temp.events(pg_temp.id('a')) @> ARRAY['automation.created', 'automation.updated', 'automation.disabled', 'automation.enabled'],
          'automation events');
SELECT is((SELECT count(*)::integer FROM ventros.list_automations('session.ended', only_enabled => true)), 1, 'automations for a trigger');
INSERT INTO ids SELECT 't', id FROM ventros.register_automation_trigger('crm.vip_joined', 'VIP joined', 'custom', '{"tag": "vip"}');
SELECT throws_ok($$SELECT ventros.register_automation_trigger('session.ended', 'x')$$, '23505', NULL, 'built-in codes are taken');
INSERT INTO ids SELECT 'a2', id FROM ventros.create_automation('VIP', 'crm.vip_joined', '[]', automation_type => 'custom');
SELECT throws_ok($$SELECT ventros.unregister_automation_trigger('crm.vip_joined')$$, '23503', NULL, 'a used trigger stays');
SELECT ventros.delete_automation(pg_temp.id('a2'));
SELECT lives_ok($$SELECT ventros.unregister_automation_trigger('crm.vip_joined')$$, 'an unused trigger goes');
SELECT ok(ventros.automation_catalogue()->'triggers' ? 'transaction', 'discovery catalogue');

-- trackings
INSERT INTO ids SELECT 'c', ventros_test.new_contact();
INSERT INTO ids SELECT 'tr', id FROM ventros.create_tracking(pg_temp.id('c'), 'meta_ads', 'instagram', 'Summer', 'ad1',
    'https://fb.me/ad1', 'click-123', '{"utm_source": "instagram", "utm_medium": "cpc"}', conversion_data => 'secret conversion');
SELECT throws_ok($$SELECT ventros.create_tracking(pg_temp.id('c'), 'meta_ads', 'instagram', click_id => 'click-123')$$, '23505', NULL,
                 'a click id is tracked once');
SELECT throws_ok($$SELECT ventros.create_tracking(pg_temp.id('c'), 'carrier_pigeon', 'other')$$, '22023', NULL, 'unknown source');
SELECT ok((SELECT payload->>'click_id' = 'click-123' FROM ventros.outbox WHERE aggregate_id = pg_temp.id('c') AND event_type = 'contact.ad_conversion_tracked'),
          'contact.ad_conversion_tracked on the contact');
SELECT ok(NOT EXISTS (SELECT 1 FROM ventros.outbox WHERE aggregate_id = pg_temp.id('tr') AND payload ? 'conversion_data'), 'conversion data redacted');
SELECT is((ventros.enrich_tracking(pg_temp.id('tr'), 'meta', '{"campaign_name": "Summer 24", "impressions": 1000}')).impressions, 1000::bigint,
          'enriched');
SELECT is((ventros.enrich_tracking(pg_temp.id('tr'), 'meta', '{"clicks": 12}')).version, 2, 'enriched again: one enrichment, updated');
SELECT throws_ok($$SELECT ventros.enrich_tracking(pg_temp.id('tr'), 'meta', '{"bogus": 1}')$$, '22023', NULL, 'unknown enrichment field');
SELECT is(pg_temp.events(pg_temp.id('tr')), ARRAY['tracking.created', 'tracking.enriched', 'tracking.enriched'], 'tracking events');
SELECT is(ventros.decode_tracking_code('Hello' || ventros.encode_tracking_code(pg_temp.id('tr')) || '!'), pg_temp.id('tr'),
          'invisible code round trip');
SELECT is(length(ventros.encode_tracking_code(pg_temp.id('tr'))), 98, 'the code is 98 characters');
SELECT is(ventros.decode_tracking_code('plain text'), NULL, 'no code: NULL');

-- message groups
INSERT INTO ids SELECT 'm1', ventros_test.new_inbound_message('voice');
INSERT INTO ids SELECT 'g', id FROM ventros.add_message_to_group(pg_temp.id('m1'));
CREATE TEMP TABLE m1 AS SELECT * FROM ventros.messages WHERE id = pg_temp.id('m1');
INSERT INTO ids SELECT 'm2', id FROM ventros.receive_message((SELECT channel_id FROM m1),
    (SELECT value FROM ventros.contact_identities WHERE contact_id = (SELECT contact_id FROM m1) LIMIT 1), 'second');
SELECT is((ventros.add_message_to_group(pg_temp.id('m2'))).id, pg_temp.id('g'), 'the second message joins the pending group');
SELECT is(cardinality((ventros.add_message_to_group(pg_temp.id('m2'))).message_ids), 2, 'adding twice changes nothing');
SELECT throws_ok($$SELECT ventros.start_message_group_processing(pg_temp.id('g'), 2)$$, '55000', NULL, 'still collecting');
SET LOCAL ROLE ventros_platform_admin;  -- the scheduler's (500_security_authz.sql)
SELECT is((SELECT count(*)::integer FROM ventros.tick_message_groups(now() + interval '1 hour')), 1, 'due group handed to processing');
SET LOCAL ROLE ventros_admin;
INSERT INTO ids SELECT 'out', id FROM ventros.send_message((SELECT channel_id FROM m1), (SELECT contact_id FROM m1), 'out',
    agent_id => ventros_test.new_agent());
SELECT throws_like($$SELECT ventros.add_message_to_group(pg_temp.id('out'))$$, '%is outbound; groups hold inbound messages',
                   'outbound messages are not grouped');
-- enrichments
INSERT INTO ids SELECT 'e', id FROM ventros.create_message_enrichment(pg_temp.id('m1'), pg_temp.id('g'), 'whisper');
SELECT throws_ok($$SELECT ventros.create_message_enrichment(pg_temp.id('m2'), pg_temp.id('g'), 'whisper')$$, '22023', NULL, 'text has no media');
SELECT is((SELECT content_type FROM ventros.next_message_enrichments(1)), 'voice', 'voice first');
SELECT throws_ok($$SELECT ventros.complete_message_enrichment(pg_temp.id('e'), 1, 'hi')$$, 'VN002', NULL, 'pending -> completed refused');
SELECT is((ventros.start_message_enrichment(pg_temp.id('e'), 1)).status, 'processing', 'pending -> processing');
SELECT is((ventros.complete_message_enrichment(pg_temp.id('e'), 2, 'transcribed words', 120)).status, 'completed', 'processing -> completed');
INSERT INTO ids SELECT 'e2', x.id FROM ventros.create_message_enrichment(pg_temp.id('m1'), pg_temp.id('g'), 'deepgram') c,
    ventros.start_message_enrichment(c.id, 1) s, ventros.fail_message_enrichment(c.id, 2, 'timeout') x;
SELECT is((SELECT status FROM ventros.message_enrichments WHERE id = pg_temp.id('e2')), 'failed', 'processing -> failed');
SELECT is((ventros.complete_message_group(pg_temp.id('g'), (SELECT version FROM ventros.message_groups WHERE id = pg_temp.id('g')),
           'voice transcript + second', 'ok', 'openai', 'gpt', 900, 1)).message_count, 2, 'AI hand-off recorded');
SELECT ok(pg_temp.events(pg_temp.id('g')) @> ARRAY['message_group.created', 'message_group.message_added', 'message_group.processing_started',
    'message_group.completed'] AND pg_temp.events(pg_temp.id('e')) @> ARRAY['message_enrichment.completed']
    AND pg_temp.events(pg_temp.id('e2')) @> ARRAY['message_enrichment.failed'], 'group and enrichment events');
INSERT INTO ids SELECT 'g2', ventros_test.new_message_group();
SELECT is((ventros.expire_message_group(pg_temp.id('g2'), 1)).status, 'expired', 'pending -> expired');
SELECT ok(pg_temp.events(pg_temp.id('g2')) @> ARRAY['message_group.expired'], 'expired event');
-- AI processes
INSERT INTO ids SELECT 'ai', id FROM ventros.create_ai_process('message', pg_temp.id('m1'), 'transcription', 'openai', 'whisper-1');
SELECT is((SELECT (ventros.finish_ai_process(pg_temp.id('ai'), 1, 'processing')).status || '/' ||
                  (ventros.finish_ai_process(pg_temp.id('ai'), 2, 'completed', '{"text": "hi"}', 42)).status), 'processing/completed',
          'AI job runs to completion');
SELECT * FROM finish();
ROLLBACK;
