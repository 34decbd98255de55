-- Scheduled work: the declared pg_cron jobs, their commands, and installing
-- them into pg_cron (inside this test's transaction, rolled back).
BEGIN;
SELECT plan(13);

SELECT results_eq($$SELECT name FROM ventros.scheduled_jobs ORDER BY 1$$,
                  $$VALUES ('ventros-fold-channel-counts'), ('ventros-fold-crm-stats'), ('ventros-fold-usage'), ('ventros-process-inbox'),
                           ('ventros-prune-inbox'), ('ventros-report-usage'),
                           ('ventros-retry-ai-completions'), ('ventros-retry-enrichments'), ('ventros-run-automations'),
                           ('ventros-tick-ai-agent'), ('ventros-tick-assignments'),
                           ('ventros-tick-automation'), ('ventros-tick-automation-rules'), ('ventros-tick-maintenance'),
                           ('ventros-tick-sessions'), ('ventros-tick-webhooks')$$,
                  'the sixteen jobs are declared');
SELECT throws_ok($$INSERT INTO ventros.scheduled_jobs VALUES ('Bad Name', '* * * * *', 'SELECT 1', 'x')$$, '23514', NULL,
                 'job names are ventros-<words>');

-- every declared command runs as pg_cron would run it (a superuser, no tenant)
CREATE FUNCTION pg_temp.run_all_jobs() RETURNS integer LANGUAGE plpgsql AS $f$
DECLARE j record; n integer := 0;
BEGIN
    FOR j IN SELECT * FROM ventros.scheduled_jobs ORDER BY name LOOP
        EXECUTE j.command;
        n := n + 1;
    END LOOP;
    RETURN n;
END $f$;
SELECT is(pg_temp.run_all_jobs(), (SELECT count(*)::int FROM ventros.scheduled_jobs), 'every job''s command runs');

-- maintenance does its work (time is a parameter)
SET LOCAL ventros.tenant = 'sched_t1';
SELECT ventros.create_project('Scheduling');
SELECT ventros.enqueue_http_request('https://example.com/old');
UPDATE ventros.http_requests SET status = 'succeeded', completed_at = now() - interval '8 days'
 WHERE url = 'https://example.com/old';
SELECT ventros.enqueue_http_request('https://example.com/recent');
UPDATE ventros.http_requests SET status = 'succeeded', completed_at = now() - interval '1 day'
 WHERE url = 'https://example.com/recent';
SET LOCAL ventros.tenant = '';
SELECT ok((SELECT count(*) > 0 FROM ventros.tick_maintenance() WHERE tenant_id = 'sched_t1' AND error IS NULL),
          'maintenance visits each tenant without error');
SELECT results_eq($$SELECT url FROM ventros.http_requests WHERE url LIKE 'https://example.com/%' ORDER BY 1$$,
                  $$VALUES ('https://example.com/recent')$$, 'finished requests older than the retention are pruned');
SELECT throws_ok($$SELECT * FROM ventros.tick_maintenance(now(), interval '-1 day')$$, '22023', NULL,
                 'a negative retention is refused');

-- only platform administrators
SET LOCAL ventros.tenant = 'sched_t1';
SET LOCAL ROLE ventros_admin;
SELECT throws_ok($$SELECT * FROM ventros.schedule_jobs()$$, '42501', NULL, 'tenant admins cannot schedule jobs');
SELECT throws_ok($$SELECT * FROM ventros.tick_maintenance()$$, '42501', NULL, 'nor run maintenance');
RESET ROLE;
SET LOCAL ventros.tenant = '';

-- into pg_cron
CREATE EXTENSION IF NOT EXISTS pg_cron;
SELECT results_eq($$SELECT name FROM ventros.schedule_jobs() ORDER BY 1$$,
                  $$SELECT name FROM ventros.scheduled_jobs ORDER BY 1$$, 'schedule_jobs installs every job');
SELECT results_eq($$SELECT j.schedule, j.command FROM cron.job j JOIN ventros.scheduled_jobs s ON s.name = j.jobname ORDER BY s.name$$,
                  $$SELECT schedule, command FROM ventros.scheduled_jobs ORDER BY name$$,
                  'pg_cron holds each job with its schedule and command');
SELECT is((SELECT count(*)::int FROM ventros.schedule_jobs()), (SELECT count(*)::int FROM ventros.scheduled_jobs),
          'scheduling again reports every job');
SELECT is((SELECT count(*)::int FROM cron.job WHERE jobname LIKE 'ventros-%'), (SELECT count(*)::int FROM ventros.scheduled_jobs), 'and replaces them, not duplicates');
SELECT is(ventros.unschedule_jobs(), (SELECT count(*)::int FROM ventros.scheduled_jobs), 'unschedule_jobs removes them');

SELECT * FROM finish();
ROLLBACK;
