-- Scheduled work is done per tenant (issue 12, hole 5): one tenant's bad
-- data fails only its own part of a job, the failure is recorded and shown
-- in ventros.scheduled_job_status, and count_channel_message accepts only
-- the caller's live channels.
BEGIN;
SELECT plan(21);
-- (the failures below are also warnings: expected)
SET LOCAL client_min_messages = error;

SELECT ventros.create_tenant('sched_a', 'Tenant A');
SELECT ventros.create_tenant('sched_b', 'Tenant B');
SET LOCAL ventros.tenant = 'sched_a';
CREATE TEMP TABLE ch AS SELECT 'a' AS tenant, ventros_test.new_channel() AS id, ventros_test.new_channel() AS spare;
SET LOCAL ventros.tenant = 'sched_b';
INSERT INTO ch SELECT 'b', ventros_test.new_channel(), ventros_test.new_channel();
GRANT SELECT ON ch TO PUBLIC;
-- other tests' slots out of the way
DELETE FROM ventros.channel_message_counts WHERE tenant_id NOT IN ('sched_a', 'sched_b');

-- count_channel_message(s): the owner's (messages are counted as they are
-- inserted, ventros.count_new_messages); no tenant role adds counts
SET LOCAL ROLE ventros_agent;
SELECT throws_ok($$SELECT ventros.count_channel_messages((SELECT id FROM ch WHERE tenant = 'b'), 1000000, 0, now())$$,
                 '42501', NULL, 'an agent adds no count to a channel, not even of its tenant');
RESET ROLE;
-- and the owner only on the acting tenant's live channels
SELECT lives_ok($$SELECT ventros.count_channel_message((SELECT id FROM ch WHERE tenant = 'b'), false, now())$$,
                'a message counted on a live channel of the acting tenant');
SELECT throws_ok($$SELECT ventros.count_channel_message((SELECT id FROM ch WHERE tenant = 'a'), false, now())$$,
                 'P0002', NULL, 'not on another tenant''s channel');
SELECT throws_ok($$SELECT ventros.count_channel_message(gen_random_uuid(), false, now())$$,
                 'P0002', NULL, 'nor on a channel that does not exist');
SET LOCAL ROLE ventros_admin;
SELECT ventros.delete_channel((SELECT spare FROM ch WHERE tenant = 'b'));
RESET ROLE;
SELECT throws_ok($$SELECT ventros.count_channel_message((SELECT spare FROM ch WHERE tenant = 'b'), false, now())$$,
                 'P0002', NULL, 'nor on a deleted channel');

-- Messages are counted by usage deltas (folded by fold_usage); the slot rows
-- fold_channel_message_counts folds are those left from 0.1.0: one of B's
INSERT INTO ventros.channel_message_counts (tenant_id, channel_id, slot, messages_received)
VALUES ('sched_b', (SELECT id FROM ch WHERE tenant = 'b'), 0, 1);
-- A channel counted, then deleted (an ordinary admin action): the fold
-- leaves its slots alone instead of failing
SET LOCAL ventros.tenant = 'sched_a';
INSERT INTO ventros.channel_message_counts (tenant_id, channel_id, slot, messages_sent)
VALUES ('sched_a', (SELECT spare FROM ch WHERE tenant = 'a'), 0, 1);
SELECT ventros.delete_channel((SELECT spare FROM ch WHERE tenant = 'a'));
-- and a row no fold can add (the channel's counter would overflow): bad data
INSERT INTO ventros.channel_message_counts (tenant_id, channel_id, slot, messages_received)
VALUES ('sched_a', (SELECT id FROM ch WHERE tenant = 'a'), 0, 3000000000);
SET LOCAL ventros.tenant = '';

-- the scheduled job, as pg_cron runs it (no tenant)
SELECT is(ventros.fold_channel_message_counts(), 1, 'the fold of every tenant folds tenant B''s channel');
SELECT is((SELECT messages_received FROM ventros.channels WHERE id = (SELECT id FROM ch WHERE tenant = 'b')), 1,
          'into B''s counter');
SELECT results_eq($$SELECT job, tenant_id, sqlstate, failures FROM ventros.scheduled_job_status
                    WHERE tenant_id IN ('sched_a', 'sched_b')$$,
                  $$VALUES ('ventros-fold-channel-counts', 'sched_a', '22003', 1)$$,
                  'the status view shows tenant A''s failure, and only A''s');
SELECT ok((SELECT error ~ 'out of range' AND failed_at IS NOT NULL FROM ventros.scheduled_job_status WHERE tenant_id = 'sched_a'),
          'with its error and time');
SELECT is((SELECT count(*)::int FROM ventros.channel_message_counts WHERE tenant_id = 'sched_a'), 2,
          'A''s slots stay (its failed fold undone, the deleted channel''s kept)');
SELECT is(ventros.fold_channel_message_counts(), 0, 'the next run folds nothing new');
SELECT is((SELECT failures FROM ventros.scheduled_job_status WHERE tenant_id = 'sched_a'), 2, 'and counts A''s failure again');

-- tenant A's administrator sees A's failure; not B's, not the platform view
SET LOCAL ventros.tenant = 'sched_a';
SET LOCAL ROLE ventros_admin;
SELECT is((SELECT count(*)::int FROM ventros.scheduled_job_failures WHERE tenant_id IN ('sched_a', 'sched_b')), 1,
          'a tenant administrator sees its own tenant''s failures');
SELECT throws_ok($$SELECT * FROM ventros.scheduled_job_status$$, '42501', NULL, 'but not the platform''s status view');
SELECT throws_ok($$SELECT * FROM ventros.run_per_tenant('x', 'SELECT NULL::jsonb')$$, '42501', NULL,
                 'nor run per-tenant work');
RESET ROLE;

-- the bad row gone, the job succeeds for A and its failure is cleared
DELETE FROM ventros.channel_message_counts WHERE tenant_id = 'sched_a' AND messages_received = 3000000000;
SET LOCAL ventros.tenant = '';
SELECT is(ventros.fold_channel_message_counts(), 0, 'A''s fold succeeds (nothing of a live channel left)');
SELECT is((SELECT count(*)::int FROM ventros.scheduled_job_status WHERE tenant_id = 'sched_a'), 0,
          'and its failure is gone from the status view');

-- the other per-tenant jobs record failures the same way: a step failing
-- for one tenant only
SELECT results_eq($$SELECT tenant_id, error IS NULL FROM ventros.run_per_tenant('ventros-tick-sessions',
                        $s$SELECT to_jsonb(1 / (ventros.current_tenant() <> 'sched_a')::integer)$s$,
                        ARRAY['sched_a', 'sched_b'])$$,
                  $$VALUES ('sched_a', false), ('sched_b', true)$$, 'run_per_tenant: one tenant fails, the next still runs');

-- a step waits at most 10 s for a lock (a tenant's open transaction must not
-- stall the job for the others; test/integration/scheduled_jobs.test.mjs
-- holds one), less when the caller set less; the caller's setting is back after
SET LOCAL lock_timeout = 0;
SELECT is((SELECT result #>> '{}' FROM ventros.run_per_tenant('ventros-test', 'SELECT to_jsonb(current_setting(''lock_timeout''))',
                                                              ARRAY['sched_b'])),
          '10s', 'a step waits at most 10 s for a lock');
SELECT is(current_setting('lock_timeout'), '0', 'the caller''s lock_timeout is back after the run');
SET LOCAL lock_timeout = '150ms';
SELECT is((SELECT result #>> '{}' FROM ventros.run_per_tenant('ventros-test', 'SELECT to_jsonb(current_setting(''lock_timeout''))',
                                                              ARRAY['sched_b'])),
          '150ms', 'a shorter lock_timeout of the caller is kept');

SELECT * FROM finish();
ROLLBACK;
