-- Sequences and campaigns that run (docs/automation.md): automatic enrollment
-- by every trigger, exit on reply, on a tag, a status and an opt-out, step
-- conditions, send windows at the boundary +- 1 s, campaign steps (broadcast,
-- wait, condition, sequence), reach and conversions.  Every tick is called
-- with a chosen instant.
BEGIN;
SELECT plan(77);
SELECT ventros.create_tenant('t_journeys', 'Journeys');
SET LOCAL ventros.tenant = 't_journeys';
SET LOCAL ROLE ventros_admin;
CREATE TEMP TABLE ids (name text PRIMARY KEY, id uuid);
GRANT ALL ON ids TO PUBLIC;
CREATE FUNCTION pg_temp.id(n text) RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM ids WHERE name = n $$;
-- a tick of sequences or campaigns at an instant, as the scheduler
CREATE FUNCTION pg_temp.tick(what text, at timestamptz) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE n integer;
BEGIN
    SET LOCAL ROLE ventros_platform_admin;
    EXECUTE format('SELECT ventros.%I($1)', 'tick_' || what) INTO n USING at;
    SET LOCAL ROLE ventros_admin;
    RETURN n;
END $$;
-- an instant of the day after tomorrow, UTC
CREATE FUNCTION pg_temp.at(t text) RETURNS timestamptz LANGUAGE sql AS
    $$ SELECT (date_trunc('day', now() AT TIME ZONE 'UTC') + interval '2 days' + t::interval) AT TIME ZONE 'UTC' $$;
CREATE FUNCTION pg_temp.enrollment(seq text, contact text) RETURNS ventros.sequence_enrollments LANGUAGE sql AS
    $$ SELECT * FROM ventros.sequence_enrollments WHERE sequence_id = pg_temp.id(seq) AND contact_id = pg_temp.id(contact)
       ORDER BY enrolled_at DESC LIMIT 1 $$;
CREATE FUNCTION pg_temp.sent(contact text) RETURNS integer LANGUAGE sql AS
    $$ SELECT count(*)::integer FROM ventros.messages WHERE contact_id = pg_temp.id(contact) AND from_me $$;
CREATE FUNCTION pg_temp.sequence(name text, trigger_type text, trigger_data jsonb, steps integer DEFAULT 2,
                                 delay_minutes integer DEFAULT 10) RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE s uuid := (ventros.create_sequence(name, trigger_type, trigger_data)).id;
BEGIN
    FOR i IN 0..steps - 1 LOOP
        PERFORM ventros.add_sequence_step(s, i, 'Step ' || i, jsonb_build_object('type', 'text', 'content', name || ' step ' || i),
                                          delay_minutes);
    END LOOP;
    PERFORM ventros.set_sequence_status(s, (ventros.get_sequence(s)).version, 'active');
    RETURN s;
END $$;

INSERT INTO ids SELECT 'ch', ventros_test.new_channel();
INSERT INTO ids SELECT 'list', id FROM ventros.create_contact_list('Leads', is_static => true);
INSERT INTO ids SELECT 'pipe', id FROM ventros.create_pipeline('Sales', statuses => ARRAY['New', 'Won', 'Lost']);
INSERT INTO ids SELECT 'won', id FROM ventros.pipeline_statuses WHERE pipeline_id = pg_temp.id('pipe') AND name = 'Won';
INSERT INTO ids SELECT 'lost', id FROM ventros.pipeline_statuses WHERE pipeline_id = pg_temp.id('pipe') AND name = 'Lost';
-- Ana writes in (a session on the channel: the steps have a channel)
INSERT INTO ids SELECT 'ana', contact_id FROM ventros.receive_message(pg_temp.id('ch'), '+5511900000101', 'hi', sender_name => 'Ana');
INSERT INTO ids SELECT 'bob', contact_id FROM ventros.receive_message(pg_temp.id('ch'), '+5511900000102', 'hi', sender_name => 'Bob');
SELECT ventros_test.run_automations();

-- ---- every trigger enrolls by itself (the sequence's own rule, run by the executor)
SELECT throws_ok($$SELECT pg_temp.sequence('No tag', 'tag_added', '{}')$$, '22023', 'a tag_added sequence needs trigger_data.tag',
                 'a trigger without what it needs is refused at activation');
INSERT INTO ids VALUES ('s_tag', pg_temp.sequence('Tagged', 'tag_added', '{"tag": "vip"}'));
INSERT INTO ids VALUES ('s_list', pg_temp.sequence('Listed', 'list_joined', jsonb_build_object('list_id', pg_temp.id('list'))));
INSERT INTO ids VALUES ('s_pipe', pg_temp.sequence('Won', 'pipeline_entered', jsonb_build_object('status_id', pg_temp.id('won'))));
INSERT INTO ids VALUES ('s_new', pg_temp.sequence('Welcome', 'contact_created', NULL));
INSERT INTO ids VALUES ('s_custom', pg_temp.sequence('Custom', 'custom', '{"event": "quiz_done"}'));
INSERT INTO ids VALUES ('s_form', pg_temp.sequence('Form', 'form_submit', '{"form_id": "f1"}'));
INSERT INTO ids VALUES ('s_manual', pg_temp.sequence('Manual', 'manual', NULL));
SELECT is((SELECT count(*)::int FROM ventros.automations WHERE trigger_config ? 'sequence_id' AND enabled), 6,
          'each active sequence with a trigger keeps one enabled rule; manual ones none');
SELECT is((SELECT trigger FROM ventros.automations WHERE trigger_config->>'sequence_id' = pg_temp.id('s_tag')::text), 'contact.updated',
          'tag_added listens to contact.updated');
SELECT ventros_test.run_automations();
INSERT INTO ids SELECT 'cid', id FROM ventros.create_contact('Cid', email => 'cid@example.com');
SELECT is(pg_temp.enrollment('s_new', 'cid') IS NULL, true, 'nothing is enrolled in the writer''s transaction');
SELECT ok(ventros_test.run_automations() >= 1, 'the executor runs');
SELECT is((pg_temp.enrollment('s_new', 'cid')).status, 'active', 'contact_created: a new contact is enrolled');
SELECT is((pg_temp.enrollment('s_tag', 'cid')).status, NULL, 'no tag, no enrollment');
SELECT lives_ok($$SELECT ventros.update_contact(pg_temp.id('cid'), (ventros.get_contact(pg_temp.id('cid'))).version, '{"tags": ["vip"]}')$$,
                'tag added');
SELECT lives_ok($$SELECT ventros.add_contact_to_list(pg_temp.id('list'), pg_temp.id('cid'))$$, 'list joined');
SELECT lives_ok($$SELECT ventros.change_contact_pipeline_status(pg_temp.id('cid'), pg_temp.id('won'))$$, 'status entered');
SELECT lives_ok($$SELECT ventros.emit_custom_event('quiz_done', jsonb_build_object('contact_id', pg_temp.id('cid')))$$, 'custom event');
SELECT lives_ok($$SELECT ventros.emit_custom_event('form_submitted', jsonb_build_object('contact_id', pg_temp.id('cid'), 'form_id', 'f2'))$$,
                'another form');
SELECT ok(ventros_test.run_automations() >= 4, 'the executor runs');
SELECT is((pg_temp.enrollment('s_tag', 'cid')).status, 'active', 'tag_added enrolls');
SELECT is((pg_temp.enrollment('s_list', 'cid')).status, 'active', 'list_joined enrolls');
SELECT is((pg_temp.enrollment('s_pipe', 'cid')).status, 'active', 'pipeline_entered enrolls');
SELECT is((pg_temp.enrollment('s_custom', 'cid')).status, 'active', 'custom event enrolls');
SELECT is((pg_temp.enrollment('s_form', 'cid')).status, NULL, 'form_submit of another form does not');
SELECT lives_ok($$SELECT ventros.emit_custom_event('form_submitted', jsonb_build_object('contact_id', pg_temp.id('cid'), 'form_id', 'f1'))$$,
                'the form');
SELECT lives_ok($$SELECT ventros.update_contact(pg_temp.id('cid'), (ventros.get_contact(pg_temp.id('cid'))).version, '{"tags": ["vip", "x"]}')$$,
                'another tag (vip was there)');
SELECT ok(ventros_test.run_automations() >= 1, 'the executor runs');
SELECT is((pg_temp.enrollment('s_form', 'cid')).status, 'active', 'form_submit of the form enrolls');
SELECT is((SELECT count(*)::int FROM ventros.automation_runs r JOIN ventros.automations a ON a.id = r.automation_id
            WHERE a.trigger_config->>'sequence_id' = pg_temp.id('s_tag')::text AND r.outcome = 'failed'), 0,
          'no failed run: an enrolled contact is left alone');
SELECT is((SELECT count(*)::int FROM ventros.sequence_enrollments WHERE sequence_id = pg_temp.id('s_tag')), 1, 'enrolled once');
-- a paused sequence's rule is disabled
SELECT is((ventros.set_sequence_status(pg_temp.id('s_list'), (ventros.get_sequence(pg_temp.id('s_list'))).version, 'paused')).status,
          'paused', 'paused');
SELECT is((SELECT enabled FROM ventros.automations WHERE trigger_config->>'sequence_id' = pg_temp.id('s_list')::text), false,
          'its rule is disabled');
SELECT lives_ok($$SELECT ventros.add_contact_to_list(pg_temp.id('list'), pg_temp.id('bob'))$$, 'bob joins the list');
SELECT ventros_test.run_automations();
SELECT is((pg_temp.enrollment('s_list', 'bob')).status, NULL, 'a paused sequence enrolls no one');
INSERT INTO ids VALUES ('s_gone', pg_temp.sequence('Gone', 'custom', '{"event": "gone"}'));
SELECT ventros.delete_sequence(pg_temp.id('s_gone'));
SELECT is((SELECT count(*)::int FROM ventros.automations WHERE trigger_config->>'sequence_id' = pg_temp.id('s_gone')::text
            AND deleted_at IS NULL), 0, 'a deleted sequence''s rule is deleted with it');

-- ---- exit on reply, in the reply's transaction; no step after it
INSERT INTO ids SELECT 'e_ana', id FROM ventros.enroll_in_sequence(pg_temp.id('s_manual'), pg_temp.id('ana'));
SELECT pg_temp.tick('sequences', now() + interval '9 minutes 59 seconds');
SELECT is(pg_temp.sent('ana'), 0, 'nothing sent 1 s before the first step''s time');
SELECT is(pg_temp.tick('sequences', now() + interval '10 minutes') >= 1, true, 'a tick at its time');
SELECT is((SELECT text FROM ventros.messages WHERE contact_id = pg_temp.id('ana') AND from_me AND source = 'sequence'),
          'Manual step 0', 'the first step is sent on the contact''s channel');
SELECT lives_ok($$SELECT ventros.receive_message(pg_temp.id('ch'), '+5511900000101', 'stop please')$$, 'Ana replies');
SELECT is((pg_temp.enrollment('s_manual', 'ana')).status || '/' || (pg_temp.enrollment('s_manual', 'ana')).exit_reason, 'exited/replied',
          'the reply exits the enrollment at once');
SELECT is((SELECT exited_count FROM ventros.sequences WHERE id = pg_temp.id('s_manual')), 1, 'counted as exited');
SELECT pg_temp.tick('sequences', now() + interval '1 hour');
SELECT is(pg_temp.sent('ana'), 1, 'and the next tick sends no second step');
-- exit_on_reply false: the reply leaves it
SELECT lives_ok($$SELECT ventros.update_sequence(pg_temp.id('s_custom'), (ventros.get_sequence(pg_temp.id('s_custom'))).version,
                                                 '{"exit_on_reply": false}')$$, 'a sequence that ignores replies');
INSERT INTO ids SELECT 'e_bob', id FROM ventros.enroll_in_sequence(pg_temp.id('s_custom'), pg_temp.id('bob'));
SELECT lives_ok($$SELECT ventros.receive_message(pg_temp.id('ch'), '+5511900000102', 'ok')$$, 'Bob replies');
SELECT is((pg_temp.enrollment('s_custom', 'bob')).status, 'active', 'exit_on_reply false: still active');

-- ---- step conditions, exit tags and statuses, opt-out
INSERT INTO ids SELECT 's_cond', (ventros.create_sequence('Gold only', exit_on_reply => false)).id;
SELECT ventros.add_sequence_step(pg_temp.id('s_cond'), 0, 'Gold', '{"type": "text", "content": "gold offer"}', 0,
                                 conditions => '[{"tag": "gold"}]');
SELECT ventros.add_sequence_step(pg_temp.id('s_cond'), 1, 'All', '{"type": "text", "content": "for all"}', 0);
SELECT lives_ok($$SELECT ventros.update_sequence(pg_temp.id('s_cond'), 1, jsonb_build_object('exit_on',
                  jsonb_build_object('tags', '["stop"]'::jsonb, 'status_ids', jsonb_build_array(pg_temp.id('lost')))))$$, 'exit_on set');
SELECT ventros.set_sequence_status(pg_temp.id('s_cond'), (ventros.get_sequence(pg_temp.id('s_cond'))).version, 'active');
SELECT ventros.enroll_in_sequence(pg_temp.id('s_cond'), pg_temp.id('bob'));
SELECT pg_temp.tick('sequences', pg_temp.at('02:00:00'));
SELECT is((SELECT count(*)::int FROM ventros.messages WHERE contact_id = pg_temp.id('bob') AND text = 'gold offer'), 0,
          'a step whose conditions do not hold is not sent');
SELECT is((SELECT payload->>'skipped' FROM ventros.outbox WHERE aggregate_id = pg_temp.id('s_cond')
             AND event_type = 'sequence.enrollment_advanced' ORDER BY seq LIMIT 1), 'true', 'it is passed over (skipped: true)');
SELECT is((pg_temp.enrollment('s_cond', 'bob')).current_step_order, 0, 'and the enrollment moves on');
SELECT ventros.update_contact(pg_temp.id('bob'), (ventros.get_contact(pg_temp.id('bob'))).version, '{"tags": ["stop"]}');
SELECT pg_temp.tick('sequences', pg_temp.at('02:00:01'));
SELECT is((pg_temp.enrollment('s_cond', 'bob')).exit_reason, 'tag', 'an exit tag exits before the next step');
SELECT is((SELECT count(*)::int FROM ventros.messages WHERE contact_id = pg_temp.id('bob') AND text = 'for all'), 0, 'unsent');
-- an exit status exits in the status change's transaction
SELECT ventros.enroll_in_sequence(pg_temp.id('s_cond'), pg_temp.id('ana'));
SELECT ventros.change_contact_pipeline_status(pg_temp.id('ana'), pg_temp.id('lost'));
SELECT is((pg_temp.enrollment('s_cond', 'ana')).status || '/' || (pg_temp.enrollment('s_cond', 'ana')).exit_reason, 'exited/status',
          'an exit status exits at once');
-- opt-out honoured
SELECT ventros.update_contact(pg_temp.id('ana'), (ventros.get_contact(pg_temp.id('ana'))).version, '{"tags": ["gold"]}');
INSERT INTO ids SELECT 's_plain', (ventros.create_sequence('Plain')).id;
SELECT ventros.add_sequence_step(pg_temp.id('s_plain'), 0, 'One', '{"type": "text", "content": "plain one"}', 0);
SELECT ventros.set_sequence_status(pg_temp.id('s_plain'), (ventros.get_sequence(pg_temp.id('s_plain'))).version, 'active');
SELECT ventros.enroll_in_sequence(pg_temp.id('s_plain'), pg_temp.id('ana'));
SELECT ventros.set_contact_consent(pg_temp.id('ana'), false, pg_temp.id('ch'));
SELECT pg_temp.tick('sequences', pg_temp.at('03:00:00'));
SELECT is((pg_temp.enrollment('s_plain', 'ana')).exit_reason, 'opted_out', 'an opted-out contact exits');
SELECT is((SELECT count(*)::int FROM ventros.messages WHERE contact_id = pg_temp.id('ana') AND text = 'plain one'), 0, 'and gets nothing');
SELECT ventros.set_contact_consent(pg_temp.id('ana'), true, pg_temp.id('ch'));

-- ---- send windows, in the tenant's timezone (America/Sao_Paulo, UTC-3) or the contact's
SELECT ventros.set_automation_settings(timezone => 'America/Sao_Paulo');
INSERT INTO ids SELECT 's_win', (ventros.create_sequence('Office hours')).id;
SELECT ventros.add_sequence_step(pg_temp.id('s_win'), 0, 'One', '{"type": "text", "content": "in hours"}', 0);
SELECT ventros.update_sequence(pg_temp.id('s_win'), (ventros.get_sequence(pg_temp.id('s_win'))).version,
                               '{"send_window": {"from": "09:00", "to": "18:00"}}');
SELECT throws_ok($$SELECT ventros.update_sequence(pg_temp.id('s_win'), (ventros.get_sequence(pg_temp.id('s_win'))).version,
                                                  '{"send_window": {"from": "9"}}')$$, '23514', NULL, 'a malformed window is refused');
SELECT ventros.set_sequence_status(pg_temp.id('s_win'), (ventros.get_sequence(pg_temp.id('s_win'))).version, 'active');
SELECT ventros.enroll_in_sequence(pg_temp.id('s_win'), pg_temp.id('bob'));
SELECT ventros.enroll_in_sequence(pg_temp.id('s_win'), pg_temp.id('ana'));
SELECT is(ventros.journey_window_open('{"from": "09:00", "to": "18:00"}', 'America/Sao_Paulo', pg_temp.at('20:59:59')),
          pg_temp.at('20:59:59'), '17:59:59 local: inside');
SELECT is(ventros.journey_window_open('{"from": "09:00", "to": "18:00"}', 'America/Sao_Paulo', pg_temp.at('21:00:00')),
          pg_temp.at('1 day 12:00:00'), '18:00:00 local: the next opening, 09:00 tomorrow');
SELECT is(ventros.journey_window_open('{"from": "09:00", "to": "18:00"}', 'America/Sao_Paulo', pg_temp.at('11:59:59')),
          pg_temp.at('12:00:00'), '08:59:59 local: at 09:00');
SELECT is(ventros.journey_window_open('{"from": "09:00", "to": "18:00", "weekdays": [1]}', 'UTC', pg_temp.at('10:00:00'))
          AT TIME ZONE 'UTC' >= (pg_temp.at('10:00:00') AT TIME ZONE 'UTC'), true, 'a weekday window opens on its weekday');
SELECT ventros.update_contact(pg_temp.id('ana'), (ventros.get_contact(pg_temp.id('ana'))).version, '{"timezone": "Asia/Tokyo"}');
SELECT pg_temp.tick('sequences', pg_temp.at('21:00:00'));
SELECT is((pg_temp.enrollment('s_win', 'bob')).next_scheduled_at, pg_temp.at('1 day 12:00:00'),
          'outside the tenant''s window (18:00 local): due again at its opening');
SELECT is((SELECT count(*)::int FROM ventros.messages WHERE contact_id = pg_temp.id('bob') AND text = 'in hours'), 0, 'not sent');
SELECT is((SELECT count(*)::int FROM ventros.messages WHERE contact_id = pg_temp.id('ana') AND text = 'in hours'), 0,
          'the contact''s own timezone (06:00 in Tokyo): not sent either');
SELECT is((pg_temp.enrollment('s_win', 'ana')).next_scheduled_at, pg_temp.at('1 day 00:00:00'), 'due at 09:00 Tokyo');
SELECT pg_temp.tick('sequences', pg_temp.at('1 day 12:00:00'));
SELECT is((SELECT count(*)::int FROM ventros.messages WHERE contact_id = pg_temp.id('bob') AND text = 'in hours'), 1, 'sent at the opening');

-- ---- a campaign walks broadcast -> wait -> condition -> sequence
SELECT ventros.update_contact(pg_temp.id('ana'), (ventros.get_contact(pg_temp.id('ana'))).version, '{"tags": ["gold"], "timezone": null}');
INSERT INTO ids SELECT 'b', id FROM ventros.create_broadcast('Promo', pg_temp.id('list'), pg_temp.id('ch'), '{"type": "text", "content": "promo!"}');
INSERT INTO ids SELECT 'camp', id FROM ventros.create_campaign('Journey', 'conversions', 4);
SELECT ventros.add_campaign_step(pg_temp.id('camp'), 0, 'Promo', 'broadcast', jsonb_build_object('broadcast_id', pg_temp.id('b')));
SELECT ventros.add_campaign_step(pg_temp.id('camp'), 1, 'Wait', 'wait', '{"minutes": 60}');
SELECT ventros.add_campaign_step(pg_temp.id('camp'), 2, 'Gold?', 'condition', '{"conditions": [{"tag": "gold"}]}');
INSERT INTO ids VALUES ('s_drip', pg_temp.sequence('Drip', 'manual', NULL));
SELECT ventros.add_campaign_step(pg_temp.id('camp'), 3, 'Drip', 'sequence', jsonb_build_object('sequence_id', pg_temp.id('s_drip')));
SELECT ventros.update_campaign(pg_temp.id('camp'), (ventros.get_campaign(pg_temp.id('camp'))).version,
                               jsonb_build_object('conversion_status_id', pg_temp.id('won')));
SELECT ventros.set_campaign_status(pg_temp.id('camp'), (ventros.get_campaign(pg_temp.id('camp'))).version, 'active');
INSERT INTO ids SELECT 'ce_ana', id FROM ventros.enroll_in_campaign(pg_temp.id('camp'), pg_temp.id('ana'));
INSERT INTO ids SELECT 'ce_bob', id FROM ventros.enroll_in_campaign(pg_temp.id('camp'), pg_temp.id('bob'));
SELECT is((ventros.get_campaign(pg_temp.id('camp'))).contacts_reached, 0, 'enrolled is not reached yet');
SELECT is(pg_temp.tick('campaigns', pg_temp.at('04:00:00')), 2, 'the tick runs both enrollments');
SELECT is((SELECT count(*)::int FROM ventros.messages WHERE text = 'promo!' AND source = 'broadcast'
             AND contact_id IN (pg_temp.id('ana'), pg_temp.id('bob'))), 2, 'the broadcast step sent the promo to both');
SELECT is((SELECT count(*)::int FROM ventros.broadcast_executions WHERE broadcast_id = pg_temp.id('b') AND status = 'sending'
             AND message_id IS NOT NULL), 2, 'as executions of the broadcast, sending until the provider''s outcome');
SELECT is((ventros.get_campaign(pg_temp.id('camp'))).contacts_reached, 2, 'contacts_reached counts them as it happens');
SELECT is((SELECT current_step_order FROM ventros.campaign_enrollments WHERE id = pg_temp.id('ce_bob')), 1, 'at the wait step');
SELECT is(pg_temp.tick('campaigns', pg_temp.at('04:59:59')), 0, 'the wait is not over 1 s before');
SELECT is(pg_temp.tick('campaigns', pg_temp.at('05:00:00')), 2, 'over after 60 minutes');
SELECT is((SELECT status || '/' || exit_reason FROM ventros.campaign_enrollments WHERE id = pg_temp.id('ce_bob')), 'exited/condition',
          'the condition does not hold for Bob: he exits');
SELECT is((SELECT status FROM ventros.campaign_enrollments WHERE id = pg_temp.id('ce_ana')), 'completed', 'Ana walks on to the end');
SELECT is((pg_temp.enrollment('s_drip', 'ana')).status, 'active', 'the sequence step enrolled her');
-- conversions, counted once per enrollment
SELECT ventros.receive_message(pg_temp.id('ch'), '+5511900000101', 'I want it');
SELECT is((ventros.get_campaign(pg_temp.id('camp'))).conversions_count, 1, 'a reply is a conversion');
SELECT ventros.receive_message(pg_temp.id('ch'), '+5511900000101', 'really');
SELECT is((ventros.get_campaign(pg_temp.id('camp'))).conversions_count, 1, 'once per enrollment');
SELECT is((pg_temp.enrollment('s_drip', 'ana')).exit_reason, 'replied', 'and the reply exited the sequence');
INSERT INTO ids SELECT 'dee', id FROM ventros.create_contact('Dee', email => 'dee@example.com');
INSERT INTO ids SELECT 'eve', id FROM ventros.create_contact('Eve', email => 'eve@example.com');
SELECT ventros.enroll_in_campaign(pg_temp.id('camp'), pg_temp.id('dee'));
SELECT ventros.enroll_in_campaign(pg_temp.id('camp'), pg_temp.id('eve'));
SELECT ventros.change_contact_pipeline_status(pg_temp.id('dee'), pg_temp.id('lost'));
SELECT is((ventros.get_campaign(pg_temp.id('camp'))).conversions_count, 1, 'another status is not the conversion status');
SELECT ventros.change_contact_pipeline_status(pg_temp.id('dee'), pg_temp.id('won'));
SELECT is((ventros.get_campaign(pg_temp.id('camp'))).conversions_count, 2, 'the conversion status is');
SELECT ventros.create_tracking(pg_temp.id('eve'), 'meta_ads', 'instagram', 'Summer', 'ad9', click_id => 'journey-click');
SELECT is((ventros.get_campaign(pg_temp.id('camp'))).conversions_count, 3, 'a tracking conversion is');
SELECT is((ventros.campaign_stats(pg_temp.id('camp')))->>'progress', '75.0', 'progress against the conversions goal');
SELECT ok((SELECT array_agg(DISTINCT payload->>'kind') FROM ventros.outbox WHERE aggregate_id = pg_temp.id('camp')
            AND event_type = 'campaign.contact_converted') @> '{reply,status,tracking}', 'campaign.contact_converted says which');

SELECT * FROM finish();
ROLLBACK;
