-- Lead scores from rules as data (sql/85_lead_scores.sql): fields, custom
-- fields, tags, pipeline status and engagement, points capped to 0..10, a
-- model's score blended in, contact.lead_qualified at or above min_score
-- (with the rules that held), and bad input.
BEGIN;
SELECT plan(16);

SELECT ventros.create_tenant('lead_a', 'Leads A');
SELECT ventros.create_tenant('lead_b', 'Leads B');
SET LOCAL ventros.tenant = 'lead_a';
SET LOCAL ROLE ventros_admin;
CREATE TEMP TABLE ids (name text PRIMARY KEY, id uuid);
GRANT SELECT, INSERT ON ids TO PUBLIC;
CREATE FUNCTION pg_temp.id(n text) RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM ids WHERE name = n $$;
CREATE FUNCTION pg_temp.qualified_events(c uuid) RETURNS jsonb[] LANGUAGE sql AS
    $$ SELECT coalesce(array_agg(payload ORDER BY seq), '{}') FROM ventros.outbox
       WHERE aggregate_id = c AND event_type = 'contact.lead_qualified' $$;
INSERT INTO ids SELECT 'p', id FROM ventros.create_pipeline('Sales', statuses => ARRAY['new', 'qualified']);
INSERT INTO ids SELECT 'off', id FROM ventros.create_pipeline('Off', statuses => ARRAY['new']);
INSERT INTO ids SELECT 'st_qualified', id FROM ventros.pipeline_statuses WHERE pipeline_id = pg_temp.id('p') AND name = 'qualified';
SELECT ventros.update_pipeline(pg_temp.id('p'), 1, $${"lead_qualification": {"enabled": true, "min_score": 7, "model_weight": 0.5,
    "rules": [
        {"name": "has email", "when": {"field": "contact.email", "operator": "is_not_null"}, "points": 2},
        {"name": "vip", "when": {"tag": "vip"}, "points": 3},
        {"name": "budget", "when": {"field": "contact.custom.budget", "operator": "gte", "value": 1000}, "points": 2},
        {"name": "qualified stage", "when": {"field": "pipeline.statuses", "operator": "contains", "value": "qualified"}, "points": 2},
        {"name": "engaged", "when": {"field": "engagement.messages_from_contact", "operator": "gte", "value": 3}, "points": 2},
        {"name": "spam", "when": {"tag": "spam"}, "points": -5}]}}$$);
INSERT INTO ids VALUES ('ch', ventros_test.new_channel('waha'));
INSERT INTO ids SELECT 'hot', id FROM ventros.create_contact('Hot Lead', email => 'hot@lead.example', phone => '+5511933332222', tags => '{vip}');
INSERT INTO ids SELECT 'cold', id FROM ventros.create_contact('Cold Lead', email => 'cold@lead.example');
INSERT INTO ids SELECT 'spam', id FROM ventros.create_contact('Spam Lead', tags => '{spam,vip}');
SELECT ventros.set_contact_custom_field(pg_temp.id('hot'), 'budget', 'number', '5000');
SELECT ventros.change_contact_pipeline_status(pg_temp.id('hot'), pg_temp.id('st_qualified'));
SELECT ventros.add_contact_identity(pg_temp.id('hot'), 'whatsapp', '5511933332222@c.us');
SELECT ventros.receive_message(pg_temp.id('ch'), '5511933332222@c.us', 'quero comprar ' || i) FROM generate_series(1, 3) i;
SET LOCAL ROLE ventros_agent;

SELECT results_eq($$SELECT score, qualified FROM ventros.score_contact_lead(pg_temp.id('hot'), pg_temp.id('p'))$$,
                  $$VALUES (10::numeric, true)$$, 'every rule holds: 11 points, capped to 10, qualified');
SELECT is((SELECT r->>'name' FROM ventros.score_contact_lead(pg_temp.id('hot'), pg_temp.id('p')) s, jsonb_array_elements(s.rules) r
           WHERE NOT (r->>'held')::boolean), 'spam', 'the one rule that does not hold is named as such');
SELECT is(cardinality(pg_temp.qualified_events(pg_temp.id('hot'))), 2, 'each qualifying score emits contact.lead_qualified');
SELECT is((pg_temp.qualified_events(pg_temp.id('hot')))[1] - 'answers',
          jsonb_build_object('pipeline_id', pg_temp.id('p'), 'score', 10, 'min_score', 7), 'the event names pipeline, score and minimum');
SELECT is(jsonb_path_query_array((pg_temp.qualified_events(pg_temp.id('hot')))[1], '$.answers.rules[*] ? (@.held == true).name'),
          '["has email", "vip", "budget", "qualified stage", "engaged"]', 'its answers list the rules that held');

SELECT results_eq($$SELECT score, qualified FROM ventros.score_contact_lead(pg_temp.id('cold'), pg_temp.id('p'))$$,
                  $$VALUES (2::numeric, false)$$, 'an email alone: 2 points, not qualified');
SELECT is(cardinality(pg_temp.qualified_events(pg_temp.id('cold'))), 0, 'below the minimum: no event');
SELECT is((SELECT score FROM ventros.score_contact_lead(pg_temp.id('spam'), pg_temp.id('p'))), 0::numeric,
          'negative points: vip 3, spam -5, the score stays at 0');
SELECT results_eq($$SELECT score, qualified FROM ventros.score_contact_lead(pg_temp.id('cold'), pg_temp.id('p'), model_score => 10)$$,
                  $$VALUES (6::numeric, false)$$, 'a model''s 10 blended half and half with the rules'' 2: 6');
SELECT ventros.update_contact(pg_temp.id('cold'), (SELECT version FROM ventros.contacts WHERE id = pg_temp.id('cold')), '{"tags": ["vip"]}');
SELECT results_eq($$SELECT score, qualified FROM ventros.score_contact_lead(pg_temp.id('cold'), pg_temp.id('p'), model_score => 9)$$,
                  $$VALUES (7::numeric, true)$$, 'rules 5 and model 9: 7, qualified');
SELECT is((pg_temp.qualified_events(pg_temp.id('cold')))[1]->'answers'->'model_score', '9', 'the model''s score is in the answers');

-- bad input
SELECT throws_ok($$SELECT * FROM ventros.score_contact_lead(pg_temp.id('cold'), pg_temp.id('off'))$$, 'VN002', NULL,
                 'a pipeline without lead qualification');
SELECT throws_ok($$SELECT * FROM ventros.score_contact_lead(pg_temp.id('cold'), pg_temp.id('p'), model_score => 11)$$, '22023', NULL,
                 'a model score over 10');
RESET ROLE; SET LOCAL ROLE ventros_admin;
SELECT ventros.update_pipeline(pg_temp.id('off'), 1, '{"lead_qualification": {"enabled": true, "rules": [{"when": {"tag": "x"}}]}}');
SET LOCAL ROLE ventros_agent;
SELECT throws_ok($$SELECT * FROM ventros.score_contact_lead(pg_temp.id('cold'), pg_temp.id('off'))$$, '22023', NULL,
                 'a rule without points');
SET LOCAL ventros.tenant = 'lead_b';
SELECT throws_ok($$SELECT * FROM ventros.score_contact_lead(pg_temp.id('hot'), pg_temp.id('p'))$$, 'P0002', NULL,
                 'another tenant''s pipeline and contact are not found');
SET LOCAL ventros.tenant = 'lead_a';
SELECT is(ventros.lead_engagement(pg_temp.id('hot'))->'messages_from_contact', '3', 'engagement counts the contact''s messages');

SELECT * FROM finish();
ROLLBACK;
