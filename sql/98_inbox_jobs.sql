-- The inbox's timed work (sql/88_inbox_processing.sql), declared as jobs of
-- ventros.scheduled_jobs (sql/97_schedule.sql): ventros.schedule_jobs()
-- installs them into pg_cron when it is there.
INSERT INTO ventros.scheduled_jobs (name, schedule, command, purpose) VALUES
    ('ventros-process-inbox', '* * * * *', 'SELECT count(*) FROM ventros.process_inbox(500, now())',
     'retries inbox items that failed or wait for their message (backoff 30 s to 1 h)'),
    ('ventros-prune-inbox', '23 3 * * *', 'SELECT ventros.prune_inbox(now() - interval ''30 days'')',
     'deletes finished inbox rows received more than 30 days ago');
