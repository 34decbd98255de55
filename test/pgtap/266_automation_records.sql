-- What no tenant role may do to the executor's records (docs/security.md,
-- issue 12's rule: tenant roles must not forge records), and the foreign key
-- of a campaign's conversion status, and its conversions.
BEGIN;
SELECT plan(17);
SELECT ventros.create_tenant('t_records', 'Records');
SELECT ventros.create_tenant('t_records2', 'Other');
SET LOCAL ventros.tenant = 't_records';
CREATE TEMP TABLE ids (name text PRIMARY KEY, id uuid);
GRANT ALL ON ids TO PUBLIC;
CREATE FUNCTION pg_temp.id(n text) RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM ids WHERE name = n $$;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA pg_temp TO PUBLIC;
INSERT INTO ids SELECT 'rule', id FROM ventros.create_automation('Tag', 'contact.created', '[{"type": "add_tag", "params": {"tag": "x"}}]',
                                                               automation_type => 'event');

-- ---- the run log and the executor's reports: the executor's alone
SELECT is(ventros_test.run_as('ventros_agent', 't_records', format($$SELECT ventros.record_automation_run(%L, 'executed', '{"actions": "forged"}')$$,
                                                                  pg_temp.id('rule'))),
          'ERROR 42883: function ventros.record_automation_run(unknown, unknown, unknown) does not exist',
          'an agent cannot report a run the executor did not make (record_automation_run is gone)');
SELECT alike(ventros_test.run_as('ventros_agent', 't_records', format($$INSERT INTO ventros.automation_rule_runs (automation_id, event_id, event_type,
                                    origin_event_id, depth, outcome) VALUES (%L, gen_random_uuid(), 'contact.created', gen_random_uuid(), 0, 'executed')
                                    RETURNING id$$, pg_temp.id('rule'))),
            'ERROR 42501:%', 'nor write a run log row');
SELECT alike(ventros_test.run_as('ventros_admin', 't_records', $$UPDATE ventros.automation_rule_runs SET outcome = 'executed' RETURNING id$$),
            'ERROR 42501:%', 'nor change one, even an administrator');
SELECT alike(ventros_test.run_as('ventros_admin', 't_records', format($$INSERT INTO ventros.automation_event_runs (event_id, event_type,
                                    origin_event_id, depth, skipped) VALUES (gen_random_uuid(), 'contact.created', gen_random_uuid(), 0, ARRAY[%L::uuid])
                                    RETURNING event_id$$, pg_temp.id('rule'))),
            'ERROR 42501:%', 'nor write the skipped rules of an event');
SELECT alike(ventros_test.run_as('ventros_admin', 't_records', $$UPDATE ventros.automation_event_runs SET skipped = '{}' RETURNING event_id$$),
            'ERROR 42501:%', 'nor change them');
SELECT alike(ventros_test.run_as('ventros_admin', 't_records', $$DELETE FROM ventros.automation_runs RETURNING id$$),
            'ERROR 55000:%', 'and the run log''s view is read only');
SELECT alike(ventros_test.run_as('ventros_agent', 't_records', format($$SELECT ventros.automation_report(a, 'executed', NULL::ventros.automation_runs)
                                                                      FROM ventros.automations a WHERE a.id = %L$$, pg_temp.id('rule'))),
            'ERROR 42501:%', 'nor call the executor''s report');
SELECT alike(ventros_test.run_as('ventros_agent', 't_records', format($$SELECT ventros.automation_fire(a, 'forged', '{}')
                                                                      FROM ventros.automations a WHERE a.id = %L$$, pg_temp.id('rule'))),
            'ERROR 42501:%', 'nor fire a time trigger');
SELECT alike(ventros_test.run_as('ventros_agent', 't_records', format($$SELECT ventros.update_automation(%L, 1, '{"last_executed": "2026-01-01"}')$$,
                                                                      pg_temp.id('rule'))),
            'ERROR 22023:%', 'nor set when a rule last ran');
SELECT is((SELECT count(*)::integer FROM ventros.outbox WHERE aggregate_id = pg_temp.id('rule') AND event_type IN ('automation.executed', 'automation.triggered')),
          0, 'nothing reported');
-- the executor records its runs
SELECT ventros_test.new_contact();
SELECT ok(ventros_test.run_automations() >= 1, 'the executor runs the rule');
SELECT is((SELECT outcome FROM ventros.automation_runs WHERE automation_id = pg_temp.id('rule')), 'executed', 'and logs the run');

-- ---- campaigns.conversion_status_id: a pipeline status of the tenant
INSERT INTO ids SELECT 'status', ventros_test.new_pipeline_status();
INSERT INTO ids SELECT 'campaign', id FROM ventros.create_campaign('Spring');
-- conversions are counted as they happen, never by hand
SELECT is(ventros_test.run_as('ventros_agent', 't_records', format($$SELECT ventros.record_campaign_conversion(%L)$$, pg_temp.id('campaign'))),
          'ERROR 42883: function ventros.record_campaign_conversion(unknown) does not exist',
          'an agent cannot add a conversion to a campaign (record_campaign_conversion is gone)');
SELECT is((SELECT conversions_count FROM ventros.campaigns WHERE id = pg_temp.id('campaign')), 0, 'nothing counted');
SELECT is((ventros.update_campaign(pg_temp.id('campaign'), 1, jsonb_build_object('conversion_status_id', pg_temp.id('status')))).conversion_status_id,
          pg_temp.id('status'), 'a status of the tenant');
SELECT throws_ok(format($$SELECT ventros.update_campaign(%L, 2, '{"conversion_status_id": "%s"}')$$, pg_temp.id('campaign'), gen_random_uuid()),
                 '23503', NULL, 'a status that does not exist: 23503');
SET LOCAL ventros.tenant = 't_records2';
INSERT INTO ids SELECT 'other_status', ventros_test.new_pipeline_status();
SET LOCAL ventros.tenant = 't_records';
SELECT throws_ok(format($$SELECT ventros.update_campaign(%L, 2, '{"conversion_status_id": "%s"}')$$, pg_temp.id('campaign'), pg_temp.id('other_status')),
                 '23503', NULL, 'another tenant''s status: 23503');

SELECT * FROM finish();
ROLLBACK;
