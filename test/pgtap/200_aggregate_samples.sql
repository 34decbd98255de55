-- Every sample of the billing, integration, list, automation and messaging
-- aggregates (test/fixtures/samples) creates its row as ventros_admin, then
-- updates and deletes it through the engine as the table's owner (a tenant
-- role's direct write meets the declared outcome: 620_direct_writes.sql),
-- and the outbox gets the events.
BEGIN;
SELECT plan(3);
SELECT ventros.create_tenant('t_samples', 'Samples');
SET LOCAL ventros.tenant = 't_samples';

CREATE TEMP TABLE sampled_aggregates (aggregate text PRIMARY KEY);
INSERT INTO sampled_aggregates VALUES ('billing_account'), ('subscription'), ('invoice'), ('usage_meter'), ('saga'),
    ('credential'), ('project_member'), ('webhook_subscription'), ('contact_list'), ('contact_list_filter'),
    ('contact_list_member'), ('contact_event'), ('event_log'), ('campaign'), ('campaign_step'), ('campaign_enrollment'),
    ('sequence'), ('sequence_step'), ('sequence_enrollment'), ('broadcast'), ('broadcast_execution'),
    ('automation'), ('automation_trigger'), ('tracking'), ('tracking_enrichment'), ('message_group'), ('agent_ai_interaction'),
    ('message_enrichment'), ('ai_process');
GRANT SELECT ON sampled_aggregates TO PUBLIC;
CREATE TEMP TABLE sample_results (aggregate text, created boolean, updated boolean, deleted boolean);
GRANT ALL ON sample_results TO PUBLIC;

SET LOCAL ROLE ventros_admin;
DO $$
DECLARE
    s record;
    row_id uuid;
BEGIN
    FOR s IN SELECT a.* FROM ventros_test.aggregate_samples a JOIN sampled_aggregates r USING (aggregate) LOOP
        EXECUTE format('SET LOCAL ROLE %I', s.role);
        EXECUTE s.create_sql INTO row_id;
        RESET ROLE;
        EXECUTE s.update_sql USING row_id, 1;
        EXECUTE format('DELETE FROM %s WHERE id = $1', (SELECT table_name FROM ventros.aggregates a WHERE a.aggregate = s.aggregate))
            USING row_id;
        SET LOCAL ROLE ventros_admin;
        INSERT INTO sample_results VALUES (s.aggregate,
            EXISTS (SELECT 1 FROM ventros.outbox o WHERE o.aggregate_id = row_id AND o.aggregate_version = 1),
            EXISTS (SELECT 1 FROM ventros.outbox o WHERE o.aggregate_id = row_id AND o.event_type = s.aggregate || '.updated'),
            EXISTS (SELECT 1 FROM ventros.outbox o WHERE o.aggregate_id = row_id AND o.event_type = s.aggregate || '.deleted'));
    END LOOP;
END
$$;
RESET ROLE;

SELECT is_empty($$SELECT aggregate FROM sampled_aggregates EXCEPT SELECT aggregate FROM ventros_test.aggregate_samples$$,
                'every sampled aggregate has a sample');
SELECT is_empty($$SELECT aggregate FROM sample_results WHERE NOT (created AND updated AND deleted)
                  UNION ALL SELECT aggregate FROM sampled_aggregates EXCEPT SELECT aggregate FROM sample_results$$,
                'every sample creates, updates and soft-deletes its row with events');
SELECT cmp_ok((SELECT count(*)::integer FROM sample_results), '>=', 8, 'the samples ran');
SELECT * FROM finish();
ROLLBACK;
