-- Campaigns, sequences and broadcasts: machines, guards, enrollments, ticks.
BEGIN;
SELECT plan(63);
SELECT ventros.create_tenant('t_auto', 'Automation');
SET LOCAL ventros.tenant = 't_auto';
SET LOCAL ROLE ventros_admin;
CREATE TEMP TABLE ids (name text PRIMARY KEY, id uuid);
CREATE FUNCTION pg_temp.id(n text) RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM ids WHERE name = n $$;
CREATE FUNCTION pg_temp.events(agg uuid) RETURNS text[] LANGUAGE sql AS
    $$ SELECT array_agg(event_type ORDER BY seq) FROM ventros.outbox WHERE aggregate_id = agg $$;
CREATE FUNCTION pg_temp.v(t regclass, i uuid) RETURNS integer LANGUAGE plpgsql AS
    $$ DECLARE v integer; BEGIN EXECUTE format('SELECT version FROM %s WHERE id = $1', t) INTO v USING i; RETURN v; END $$;
INSERT INTO ids SELECT 'ann', id FROM ventros.create_contact('Ann', email => 'ann@example.com');
INSERT INTO ids SELECT 'bob', id FROM ventros.create_contact('Bob', email => 'bob@example.com');

-- campaigns
INSERT INTO ids SELECT 'c', id FROM ventros.create_campaign('Launch', 'reach_contacts', 10, start_date => now() + interval '1 day');
SELECT throws_ok($$SELECT ventros.set_campaign_status(pg_temp.id('c'), 1, 'active')$$, '23514', NULL, 'activation needs a step');
SELECT throws_ok($$SELECT ventros.add_campaign_step(pg_temp.id('c'), 0, 'Bad', 'delay', '{}')$$, '23514', NULL, 'a delay step needs minutes');
SELECT throws_ok($$SELECT ventros.add_campaign_step(pg_temp.id('c'), 0, 'Bad', 'teleport')$$, '22023', NULL, 'unknown step type');
INSERT INTO ids SELECT 's0', id FROM ventros.add_campaign_step(pg_temp.id('c'), 0, 'Welcome', 'wait');
INSERT INTO ids SELECT 's1', id FROM ventros.add_campaign_step(pg_temp.id('c'), 1, 'Pause', 'delay', '{"delay_minutes": 60}');
INSERT INTO ids SELECT 's2', id FROM ventros.add_campaign_step(pg_temp.id('c'), 2, 'Extra', 'wait');
SELECT throws_ok($$SELECT ventros.add_campaign_step(pg_temp.id('c'), 1, 'Dup', 'wait')$$, '23505', NULL, 'step order is unique');
SELECT lives_ok($$SELECT ventros.remove_campaign_step(pg_temp.id('s2'))$$, 'step removed in draft');
SELECT is((ventros.set_campaign_status(pg_temp.id('c'), 1, 'scheduled')).status, 'scheduled', 'draft -> scheduled');
SELECT throws_ok($$SELECT ventros.add_campaign_step(pg_temp.id('c'), 5, 'Late', 'wait')$$, 'VN002', NULL, 'steps only in draft');
SELECT is((ventros.enroll_in_campaign(pg_temp.id('c'), pg_temp.id('ann'))).status, 'active', 'enrolled while scheduled');
SELECT throws_ok($$SELECT ventros.enroll_in_campaign(pg_temp.id('c'), pg_temp.id('ann'))$$, '23505', NULL, 'one current enrollment');
SET LOCAL ROLE ventros_platform_admin;  -- the scheduler's (500_security_authz.sql)
SELECT is(ventros.tick_campaigns(now() + interval '2 days'), 1, 'tick starts the campaign and advances the due enrollment');
SET LOCAL ROLE ventros_admin;
SELECT is((ventros.get_campaign(pg_temp.id('c'))).status, 'active', 'scheduled -> active by the tick');
INSERT INTO ids SELECT 'e', id FROM ventros.campaign_enrollments WHERE campaign_id = pg_temp.id('c');
SELECT is((SELECT current_step_order FROM ventros.campaign_enrollments WHERE id = pg_temp.id('e')), 1, 'at the delay step');
SELECT is((ventros.set_campaign_enrollment_status(pg_temp.id('e'), pg_temp.v('ventros.campaign_enrollments', pg_temp.id('e')), 'paused')).status,
          'paused', 'enrollment active -> paused');
SELECT throws_ok($$SELECT ventros.advance_campaign_enrollment(pg_temp.id('e'))$$, 'VN002', NULL, 'paused enrollments do not advance');
SELECT is((ventros.set_campaign_enrollment_status(pg_temp.id('e'), pg_temp.v('ventros.campaign_enrollments', pg_temp.id('e')), 'active')).status,
          'active', 'enrollment paused -> active');
SELECT is((ventros.advance_campaign_enrollment(pg_temp.id('e'))).status, 'completed', 'past the last step: completed');
SELECT throws_ok($$SELECT ventros.set_campaign_enrollment_status(pg_temp.id('e'), pg_temp.v('ventros.campaign_enrollments', pg_temp.id('e')), 'active')$$,
                 'VN002', NULL, 'completed enrollments stay completed');
INSERT INTO ids SELECT 'e2', id FROM ventros.enroll_in_campaign(pg_temp.id('c'), pg_temp.id('bob'));
SELECT is((ventros.set_campaign_enrollment_status(pg_temp.id('e2'), 1, 'exited', 'unsubscribed')).exit_reason, 'unsubscribed', 'active -> exited');
SELECT is((ventros.set_campaign_status(pg_temp.id('c'), pg_temp.v('ventros.campaigns', pg_temp.id('c')), 'paused')).status, 'paused', 'active -> paused');
SELECT is((ventros.set_campaign_status(pg_temp.id('c'), pg_temp.v('ventros.campaigns', pg_temp.id('c')), 'active')).status, 'active', 'paused -> active');
SELECT is((ventros.set_campaign_status(pg_temp.id('c'), pg_temp.v('ventros.campaigns', pg_temp.id('c')), 'completed')).status, 'completed', 'active -> completed');
SELECT throws_ok($$SELECT ventros.set_campaign_status(pg_temp.id('c'), pg_temp.v('ventros.campaigns', pg_temp.id('c')), 'active')$$, 'VN002', NULL,
                 'completed -> active refused');
SELECT is((ventros.set_campaign_status(pg_temp.id('c'), pg_temp.v('ventros.campaigns', pg_temp.id('c')), 'archived')).status, 'archived', 'completed -> archived');
SELECT is((ventros.campaign_stats(pg_temp.id('c')))->>'progress', '0.0', 'progress against the goal: no broadcast or sequence step reached a contact');
SELECT ok(pg_temp.events(pg_temp.id('c')) @> ARRAY['campaign.created', 'campaign.step_added', 'campaign.step_removed', 'campaign.scheduled',
    'campaign.contact_enrolled', 'campaign.activated', 'campaign.enrollment_advanced', 'campaign.enrollment_paused',
    'campaign.enrollment_resumed', 'campaign.enrollment_completed', 'campaign.enrollment_exited', 'campaign.paused',
    'campaign.resumed', 'campaign.completed', 'campaign.archived'], 'every campaign event');
INSERT INTO ids SELECT 'c2', id FROM ventros.create_campaign('Now');
SELECT throws_ok($$SELECT ventros.set_campaign_status(pg_temp.id('c2'), 1, 'scheduled')$$, '23514', NULL, 'scheduling needs steps and a start');

-- sequences
INSERT INTO ids SELECT 'q', id FROM ventros.create_sequence('Drip');
SELECT throws_ok($$SELECT ventros.set_sequence_status(pg_temp.id('q'), 1, 'active')$$, '23514', NULL, 'activation needs a step');
SELECT throws_ok($$SELECT ventros.add_sequence_step(pg_temp.id('q'), 0, 'Bad', '{"content": "x"}')$$, '23514', NULL, 'template needs a type');
INSERT INTO ids SELECT 'q0', id FROM ventros.add_sequence_step(pg_temp.id('q'), 0, 'Hi', '{"type": "text", "content": "Hi"}');
INSERT INTO ids SELECT 'q1', id FROM ventros.add_sequence_step(pg_temp.id('q'), 1, 'Later', '{"type": "text", "content": "Still there?"}', 2, 'days');
SELECT is((ventros.update_sequence_step(pg_temp.id('q1'), 1, '{"delay_amount": 1}')).delay_amount, 1, 'step updated in draft');
INSERT INTO ids SELECT 'q2', id FROM ventros.add_sequence_step(pg_temp.id('q'), 2, 'Gone', '{"type": "text", "content": "x"}');
SELECT lives_ok($$SELECT ventros.remove_sequence_step(pg_temp.id('q2'))$$, 'step removed in draft');
SELECT is((ventros.set_sequence_status(pg_temp.id('q'), 1, 'active')).status, 'active', 'draft -> active');
SELECT throws_ok($$SELECT ventros.update_sequence_step(pg_temp.id('q1'), 2, '{"delay_amount": 3}')$$, 'VN002', NULL, 'steps only in draft');
INSERT INTO ids SELECT 'qe', id FROM ventros.enroll_in_sequence(pg_temp.id('q'), pg_temp.id('ann'));
INSERT INTO ids SELECT 'qe2', id FROM ventros.enroll_in_sequence(pg_temp.id('q'), pg_temp.id('bob'));
SET LOCAL ROLE ventros_platform_admin;  -- the scheduler's (500_security_authz.sql)
SELECT is(ventros.tick_sequences(now() + interval '1 minute'), 2, 'first step due at once');
SET LOCAL ROLE ventros_admin;
SELECT is((SELECT next_scheduled_at - now() FROM ventros.sequence_enrollments WHERE id = pg_temp.id('qe')), interval '1 day 00:01',
          'next step after its delay');
SELECT is(ventros.exit_sequences_on_reply(pg_temp.id('bob')), 1, 'a reply exits the enrollment');
SELECT is((ventros.set_sequence_enrollment_status(pg_temp.id('qe'), pg_temp.v('ventros.sequence_enrollments', pg_temp.id('qe')), 'paused')).status,
          'paused', 'enrollment paused');
SELECT is((ventros.set_sequence_enrollment_status(pg_temp.id('qe'), pg_temp.v('ventros.sequence_enrollments', pg_temp.id('qe')), 'active')).status,
          'active', 'enrollment resumed');
SELECT is((SELECT (ventros.advance_sequence_enrollment(pg_temp.id('qe'))).status || '/' || (ventros.advance_sequence_enrollment(pg_temp.id('qe'))).status),
          'active/completed', 'last step sent, then completed');
SELECT is((ventros.sequence_stats(pg_temp.id('q')))->>'completed', '1', 'counters kept');
SELECT is((ventros.set_sequence_status(pg_temp.id('q'), pg_temp.v('ventros.sequences', pg_temp.id('q')), 'paused')).status, 'paused', 'active -> paused');
SELECT is((ventros.set_sequence_status(pg_temp.id('q'), pg_temp.v('ventros.sequences', pg_temp.id('q')), 'active')).status, 'active', 'paused -> active');
SELECT is((ventros.set_sequence_status(pg_temp.id('q'), pg_temp.v('ventros.sequences', pg_temp.id('q')), 'archived')).status, 'archived', 'active -> archived');
SELECT throws_ok($$SELECT ventros.set_sequence_status(pg_temp.id('q'), pg_temp.v('ventros.sequences', pg_temp.id('q')), 'active')$$, 'VN002', NULL,
                 'archived is terminal');
-- a contact with a conversation gets the step on its channel; an opted-out one leaves
INSERT INTO ids SELECT 'q3', id FROM ventros.create_sequence('Talkers');
SELECT ventros.add_sequence_step(pg_temp.id('q3'), 0, 'Hi', '{"type": "text", "content": "Hello from the sequence"}');
SELECT ventros.set_sequence_status(pg_temp.id('q3'), 1, 'active');
INSERT INTO ids SELECT 'talker', contact_id FROM ventros.receive_message(ventros_test.new_channel(), '+5511977776666', 'hi there');
INSERT INTO ids SELECT 'quiet', contact_id FROM ventros.receive_message(ventros_test.new_channel(), '+5511977775555', 'stop');
SELECT ventros.set_contact_consent(pg_temp.id('quiet'), false);
SELECT ventros.enroll_in_sequence(pg_temp.id('q3'), pg_temp.id('talker')), ventros.enroll_in_sequence(pg_temp.id('q3'), pg_temp.id('quiet'));
SET LOCAL ROLE ventros_platform_admin;  -- the scheduler's (500_security_authz.sql)
SELECT is(ventros.tick_sequences(now() + interval '1 minute'), 2, 'both due');
SET LOCAL ROLE ventros_admin;
SELECT is((SELECT m.source || '/' || m.text FROM ventros.messages m WHERE m.contact_id = pg_temp.id('talker') AND m.from_me),
          'sequence/Hello from the sequence', 'the step went out on the contact''s channel as a sequence message');
SELECT is((SELECT status || '/' || exit_reason FROM ventros.sequence_enrollments WHERE contact_id = pg_temp.id('quiet')), 'exited/opted_out',
          'an opted-out contact leaves the sequence');
SELECT ok(pg_temp.events(pg_temp.id('q')) @> ARRAY['sequence.created', 'sequence.step_added', 'sequence.step_updated', 'sequence.step_removed',
    'sequence.activated', 'sequence.contact_enrolled', 'sequence.enrollment_advanced', 'sequence.enrollment_exited',
    'sequence.enrollment_paused', 'sequence.enrollment_resumed', 'sequence.enrollment_completed', 'sequence.paused',
    'sequence.resumed', 'sequence.archived'], 'every sequence event');

-- broadcasts
INSERT INTO ids SELECT 'ch', id FROM ventros.create_channel('WA', 'whatsapp');
INSERT INTO ids SELECT 'l', id FROM ventros.create_contact_list('All', true);
SELECT ventros.add_contact_to_list(pg_temp.id('l'), pg_temp.id('ann')), ventros.add_contact_to_list(pg_temp.id('l'), pg_temp.id('bob'));
SELECT ventros.set_contact_consent(pg_temp.id('bob'), false);
INSERT INTO ids SELECT 'b', id FROM ventros.create_broadcast('Promo', pg_temp.id('l'), pg_temp.id('ch'), '{"type": "text", "content": "Sale!"}', 1);
SELECT throws_ok($$SELECT ventros.schedule_broadcast(pg_temp.id('b'), 1, now() - interval '1 hour')$$, '22023', NULL, 'schedule in the future');
SELECT is((ventros.schedule_broadcast(pg_temp.id('b'), 1, now() + interval '1 hour')).status, 'scheduled', 'draft -> scheduled');
SELECT throws_ok($$SELECT ventros.update_broadcast(pg_temp.id('b'), 2, '{"name": "x"}')$$, 'VN002', NULL, 'edits only in draft');
SET LOCAL ROLE ventros_platform_admin;  -- the scheduler's (500_security_authz.sql)
SELECT is(ventros.tick_broadcasts(now() + interval '2 hours'), 1, 'tick starts it and sends at the rate limit');
SET LOCAL ROLE ventros_admin;
SELECT is((ventros.broadcast_stats(pg_temp.id('b')))->>'skipped', '1', 'the opted-out contact is skipped');
SELECT is((ventros.get_broadcast(pg_temp.id('b'))).status, 'running', 'still running while its message waits for the provider');
SELECT is((SELECT m.source || '/' || m.text FROM ventros.broadcast_executions e JOIN ventros.messages m ON m.id = e.message_id
           WHERE e.broadcast_id = pg_temp.id('b')), 'broadcast/Sale!', 'the message went out as a broadcast');
-- funnel: sent, delivered, read, replied from the summary table
CREATE TEMP TABLE bmsg AS SELECT e.message_id AS id FROM ventros.broadcast_executions e WHERE e.broadcast_id = pg_temp.id('b') AND e.status = 'sending';
SELECT ventros.confirm_message_status('delivered', (SELECT id FROM bmsg));
SELECT is((ventros.get_broadcast(pg_temp.id('b'))).status, 'completed', 'running -> completed when every send has its outcome');
SELECT ok(pg_temp.events(pg_temp.id('b')) @> ARRAY['broadcast.created', 'broadcast.scheduled', 'broadcast.started', 'broadcast.completed'],
          'broadcast events');
SELECT ventros.confirm_message_status('read', (SELECT id FROM bmsg));
SELECT ventros.import_message(pg_temp.id('ch'), pg_temp.id('ann'), false, now(), 'reply-1', 'Thanks!');
SELECT ventros.import_message(pg_temp.id('ch'), pg_temp.id('ann'), false, now(), 'reply-2', 'Really, thanks!');
SELECT is((SELECT ROW(sent, delivered, read, replied)::text FROM ventros.automation_funnel('broadcast', pg_temp.id('b'))), '(1,1,1,1)',
          'broadcast funnel: sent, delivered, read, replied once');
INSERT INTO ids SELECT 'fc', id FROM ventros.create_campaign('Funnel');
SELECT ventros.add_campaign_step(pg_temp.id('fc'), 0, 'Promo', 'broadcast', jsonb_build_object('broadcast_id', pg_temp.id('b')));
SELECT ventros.add_campaign_step(pg_temp.id('fc'), 1, 'Drip', 'sequence', jsonb_build_object('sequence_id', pg_temp.id('q3')));
SELECT is((SELECT ROW(sent, delivered, read, replied)::text FROM ventros.automation_funnel('campaign', pg_temp.id('fc'))), '(2,1,1,1)',
          'campaign funnel sums its broadcast and sequence steps');
INSERT INTO ids SELECT 'b2', id FROM ventros.create_broadcast('Two', pg_temp.id('l'), pg_temp.id('ch'), '{"type": "text", "content": "x"}');
SELECT is((ventros.cancel_broadcast(pg_temp.id('b2'), 1)).status, 'cancelled', 'draft -> cancelled');
INSERT INTO ids SELECT 'b3', x.id FROM ventros.create_broadcast('Three', pg_temp.id('l'), pg_temp.id('ch'), '{"type": "text", "content": "x"}') b,
    ventros.execute_broadcast(b.id) x;
SELECT is((ventros.fail_broadcast(pg_temp.id('b3'), pg_temp.v('ventros.broadcasts', pg_temp.id('b3')), 'provider down')).status, 'failed', 'running -> failed');
SELECT ok(pg_temp.events(pg_temp.id('b2')) @> ARRAY['broadcast.cancelled'] AND pg_temp.events(pg_temp.id('b3')) @> ARRAY['broadcast.failed'],
          'cancelled and failed events');
-- one tick for every tenant (platform administrators only)
SELECT throws_ok($$SELECT * FROM ventros.tick_automation()$$, '42501', 'permission denied for function tick_automation', 'tenant admins cannot tick every tenant');
RESET ROLE;
SELECT is((SELECT ROW(broadcast_sends, error)::text FROM ventros.tick_automation(now() + interval '3 hours') WHERE tenant_id = 't_auto'),
          '(0,)', 'the platform tick runs each tenant');
SELECT * FROM finish();
ROLLBACK;
