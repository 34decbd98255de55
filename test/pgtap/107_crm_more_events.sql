-- The CRM events not covered by the other files: each emitted by the
-- operation that names it.
BEGIN;
SELECT plan(17);

SELECT ventros.create_tenant('crm_e', 'Events');
SET LOCAL ventros.tenant = 'crm_e';
SET LOCAL ROLE ventros_admin;
CREATE FUNCTION pg_temp.emitted(event text) RETURNS integer LANGUAGE sql AS $$
    SELECT count(*)::integer FROM ventros.outbox WHERE event_type = event
$$;

-- agents, channel types
CREATE TEMP TABLE a AS SELECT * FROM ventros.create_agent('Eva', email => 'eva@example.com');
SELECT ventros.update_agent((SELECT id FROM a), 1, '{"active": false}');
SELECT ventros.update_agent((SELECT id FROM a), 2, '{"active": true}');
SELECT is(pg_temp.emitted('agent.activated'), 1, 'agent.activated');
CREATE TEMP TABLE t AS SELECT * FROM ventros.create_channel_type(2001, 'kiosk', 'acme');
SELECT ventros.update_channel_type((SELECT id FROM t), 1, '{"active": false}');
SELECT ventros.update_channel_type((SELECT id FROM t), 2, '{"active": true}');
SELECT is(pg_temp.emitted('channel_type.deactivated') + pg_temp.emitted('channel_type.activated'), 2,
          'channel_type.deactivated and channel_type.activated');
RESET ROLE;
SELECT ventros.set_system_channel_type_active('wechat', false);
SELECT is((SELECT active FROM ventros.channel_types WHERE tenant_id = 'ventros' AND name = 'wechat'), false,
          'a platform administrator deactivates a system kind');
SET LOCAL ROLE ventros_admin;

-- agent sessions
CREATE TEMP TABLE j AS SELECT * FROM ventros.join_session(ventros_test.new_session(), (SELECT id FROM a), 'support');
SELECT ventros.change_agent_session_role((SELECT id FROM j), 'primary');
SELECT is(pg_temp.emitted('agent_session.role_changed'), 1, 'agent_session.role_changed');

-- labels, chats
CREATE TEMP TABLE ch AS SELECT ventros_test.new_channel('waha') AS id;
SELECT ventros.upsert_channel_label((SELECT id FROM ch), 'l9', 'Cold');
SELECT ventros.delete_channel_label((SELECT id FROM ch), 'l9');
SELECT is(pg_temp.emitted('channel.label_deleted'), 1, 'channel.label_deleted');
CREATE TEMP TABLE g AS SELECT * FROM ventros.create_chat('group', subject => 'G', created_by => (SELECT id FROM a));
CREATE TEMP TABLE c AS SELECT ventros_test.new_contact() AS id;
SELECT ventros.add_chat_participant((SELECT id FROM g), (SELECT id FROM c), is_admin => true);
SELECT ventros.set_chat_participant_admin((SELECT id FROM g), (SELECT id FROM c), false);
SELECT ventros.update_chat((SELECT id FROM g), 1, description => 'about G');
SELECT ventros.set_chat_label((SELECT id FROM g), 'x', true);
SELECT ventros.set_chat_label((SELECT id FROM g), 'x', false);
SELECT is(pg_temp.emitted('chat.participant_demoted'), 1, 'chat.participant_demoted');
SELECT is(pg_temp.emitted('chat.description_updated'), 1, 'chat.description_updated');
SELECT is(pg_temp.emitted('chat.label_removed'), 1, 'chat.label_removed');

-- pipelines
CREATE TEMP TABLE p AS SELECT * FROM ventros.create_pipeline('Funnel', statuses => ARRAY['a', 'b']);
SELECT ventros.update_pipeline((SELECT id FROM p), 1, '{"active": false}');
SELECT ventros.update_pipeline((SELECT id FROM p), 2, '{"active": true}');
SELECT is(pg_temp.emitted('pipeline.activated'), 1, 'pipeline.activated');
SELECT ventros.update_pipeline((SELECT id FROM p), 3, '{"lead_qualification": {"enabled": true, "min_score": 3}}');
SELECT ventros.update_pipeline((SELECT id FROM p), 4, '{"lead_qualification": {"enabled": true, "min_score": 4}}');
SELECT ventros.update_pipeline((SELECT id FROM p), 5, '{"lead_qualification": {"enabled": false}}');
SELECT is(pg_temp.emitted('pipeline.lead_qualification_config_updated') + pg_temp.emitted('pipeline.lead_qualification_disabled'), 2,
          'pipeline.lead_qualification_config_updated and _disabled');
CREATE TEMP TABLE st AS SELECT id FROM ventros.pipeline_statuses WHERE pipeline_id = (SELECT id FROM p) AND name = 'b';
SELECT ventros.update_pipeline_status((SELECT id FROM st), 1, '{"color": "#00FF00"}');
SELECT ventros.update_pipeline_status((SELECT id FROM st), 2, '{"active": false}');
SELECT ventros.update_pipeline_status((SELECT id FROM st), 3, '{"active": true}');
SELECT is(pg_temp.emitted('pipeline.status_updated') + pg_temp.emitted('pipeline.status_deactivated') + pg_temp.emitted('pipeline.status_activated'), 3,
          'pipeline.status_updated, _deactivated, _activated');
SELECT is(pg_temp.emitted('pipeline_status.deactivated') + pg_temp.emitted('pipeline_status.activated'), 2,
          'pipeline_status.deactivated and .activated (row events)');
SELECT ventros.change_contact_pipeline_status((SELECT id FROM c), (SELECT id FROM st));
SELECT ventros.remove_contact_from_pipeline((SELECT id FROM c), (SELECT id FROM p));
SELECT is(pg_temp.emitted('contact.exited_pipeline'), 1, 'contact.exited_pipeline');

-- merge suggestions
SELECT ventros.dismiss_merge_suggestion(ventros_test.new_merge_suggestion(), 1);
SELECT is(pg_temp.emitted('contact_merge_suggestion.dismissed'), 1, 'contact_merge_suggestion.dismissed');

-- media processing requests, abandoned sessions
-- as the owner, as the system writes (a tenant role's direct write is refused: 620_direct_writes.sql)
RESET ROLE;
UPDATE ventros.channels SET ai_enabled = true, config = '{"ai": {"image": true, "video": true, "audio": true}}', version = version
WHERE id = (SELECT id FROM ch);
SET LOCAL ROLE ventros_admin;
SELECT ventros.receive_message((SELECT id FROM ch), '5511977770000@c.us', NULL, k, 'media-' || k, '2026-02-01 10:00Z',
                               media_url => 'https://media.example/' || k)
FROM unnest(ARRAY['image', 'video', 'audio']) k;
SELECT is(pg_temp.emitted('message.image_processing_requested') + pg_temp.emitted('message.video_processing_requested')
          + pg_temp.emitted('message.audio_processing_requested'), 3, 'image, video and audio processing requests');
SET LOCAL ROLE ventros_platform_admin;  -- the scheduler's (500_security_authz.sql)
SELECT is(ventros.tick_sessions('2026-02-01 12:00Z'), 1, 'the unanswered session expires');
SET LOCAL ROLE ventros_admin;
SELECT is(pg_temp.emitted('session.abandoned'), 1, 'session.abandoned: it expired with the contact waiting');

SELECT * FROM finish();
ROLLBACK;
