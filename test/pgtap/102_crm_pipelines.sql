-- Pipelines: statuses, a contact's status changes with history, the board,
-- lead qualification events, custom fields, bad input.
BEGIN;
SELECT plan(24);

SELECT ventros.create_tenant('crm_p', 'Pipelines');
SET LOCAL ventros.tenant = 'crm_p';
SET LOCAL ROLE ventros_admin;

CREATE TEMP TABLE p AS SELECT * FROM ventros.create_pipeline('Sales', color => '#FF0000', statuses => ARRAY['Lead', 'Qualified', 'Won']);
CREATE TEMP TABLE st AS SELECT s.name, s.id FROM ventros.pipeline_statuses s WHERE s.pipeline_id = (SELECT id FROM p);
CREATE TEMP TABLE c AS SELECT ventros_test.new_contact() AS id;

SELECT results_eq($$SELECT name, position FROM ventros.pipeline_statuses WHERE pipeline_id = (SELECT id FROM p) ORDER BY position$$,
                  $$VALUES ('Lead'::text, 0), ('Qualified', 1), ('Won', 2)$$, 'statuses are created in order');
SELECT is((SELECT count(*)::int FROM ventros.outbox WHERE event_type = 'pipeline.status_added' AND aggregate_id = (SELECT id FROM p)), 3,
          'pipeline.status_added per status');
SELECT throws_ok($$SELECT ventros.add_pipeline_status((SELECT id FROM p), 'Lead')$$, '23505', NULL, 'status names are unique per pipeline');
SELECT throws_ok($$SELECT ventros.add_pipeline_status((SELECT id FROM p), 'X', 'weird')$$, '22023', 'unknown status type "weird"',
                 'an unknown status type is refused');
SELECT throws_ok($$SELECT ventros.create_pipeline('Bad', color => 'red')$$, '23514', NULL, 'a color must be #RRGGBB');
SELECT throws_ok($$SELECT ventros.create_pipeline('Bad', session_timeout_minutes => 2000)$$, '23514', NULL,
                 'a timeout over 1440 minutes is refused');

-- change status
CREATE TEMP TABLE r1 AS SELECT * FROM ventros.change_contact_pipeline_status((SELECT id FROM c), (SELECT id FROM st WHERE name = 'Lead'));
SELECT is((SELECT payload->>'previous_status_id' FROM ventros.outbox WHERE event_type = 'contact.pipeline_status_changed'), NULL,
          'the first status has no previous one');
SELECT is((SELECT count(*)::int FROM ventros.outbox WHERE event_type = 'contact.entered_pipeline'), 1, 'contact.entered_pipeline on entry');
CREATE TEMP TABLE r2 AS SELECT * FROM ventros.change_contact_pipeline_status((SELECT id FROM c), (SELECT id FROM st WHERE name = 'Qualified'), 'called');
SELECT is((SELECT (payload->>'previous_status_id')::uuid FROM ventros.outbox WHERE event_type = 'contact.pipeline_status_changed'
           ORDER BY seq DESC LIMIT 1), (SELECT id FROM st WHERE name = 'Lead'), 'contact.pipeline_status_changed names the previous status');
SELECT results_eq($$SELECT exited_at IS NOT NULL, duration >= 0 FROM ventros.contact_pipeline_statuses WHERE id = (SELECT id FROM r1)$$,
                  $$VALUES (true, true)$$, 'the previous stay is closed with its duration');
SELECT is((SELECT count(*)::int FROM ventros.contact_pipeline_statuses WHERE contact_id = (SELECT id FROM c) AND exited_at IS NULL), 1,
          'one open row per contact and pipeline');
SELECT is((ventros.change_contact_pipeline_status((SELECT id FROM c), (SELECT id FROM st WHERE name = 'Qualified'))).id,
          (SELECT id FROM r2), 'moving to the current status changes nothing');
RESET ROLE;	-- the index holds for the system's own writes
SELECT throws_ok($$INSERT INTO ventros.contact_pipeline_statuses (contact_id, pipeline_id, status_id)
                   SELECT (SELECT id FROM c), (SELECT id FROM p), (SELECT id FROM st WHERE name = 'Won')$$,
                 '23505', NULL, 'a second open row is refused by the unique index');
SET LOCAL ROLE ventros_admin;
SELECT is((SELECT count(*)::int FROM ventros.contact_pipeline_history((SELECT id FROM c))), 2, 'the history has both stays');
SELECT throws_ok($$SELECT ventros.change_contact_pipeline_status((SELECT id FROM c), gen_random_uuid())$$, 'P0002', NULL,
                 'an unknown status is not found');
SELECT throws_ok($$SELECT ventros.change_contact_pipeline_status(gen_random_uuid(), (SELECT id FROM st WHERE name = 'Won'))$$, 'P0002',
                 NULL, 'an unknown contact is not found');

-- board
SELECT results_eq($$SELECT name, contacts FROM ventros.pipeline_board((SELECT id FROM p))$$,
                  $$VALUES ('Lead'::text, 0::bigint), ('Qualified', 1), ('Won', 0)$$, 'the board counts contacts per status');
SELECT is((SELECT count(*)::int FROM ventros.pipeline_status_contacts((SELECT id FROM st WHERE name = 'Qualified'))), 1,
          'a board column lists its contacts');
SELECT throws_ok($$SELECT ventros.remove_pipeline_status((SELECT id FROM st WHERE name = 'Qualified'))$$, '23503', NULL,
                 'a status holding contacts cannot be removed');
SELECT lives_ok($$SELECT ventros.remove_pipeline_status((SELECT id FROM st WHERE name = 'Won'))$$, 'an empty status is removed');

-- lead qualification, activation, custom fields
SELECT ventros.update_pipeline((SELECT id FROM p), 1, '{"lead_qualification": {"enabled": true, "min_score": 5}}');
SELECT is((SELECT count(*)::int FROM ventros.outbox WHERE event_type = 'pipeline.lead_qualification_enabled'), 1,
          'enabling lead qualification emits its event');
SELECT is((ventros.update_pipeline((SELECT id FROM p), 2, '{"active": false}')).active, false, 'a pipeline is deactivated');
SELECT is((SELECT count(*)::int FROM ventros.outbox WHERE event_type = 'pipeline.deactivated'), 1, 'pipeline.deactivated is emitted');
SELECT ventros.set_pipeline_custom_field((SELECT id FROM p), 'region', 'text', '"south"');
SELECT throws_ok($$SELECT ventros.set_pipeline_custom_field((SELECT id FROM p), 'region', 'number', '1')$$, '22023', NULL,
                 'the type of a pipeline custom field is immutable');

SELECT * FROM finish();
ROLLBACK;
