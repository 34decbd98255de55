-- The webhook tick as a scheduled job (sql/97_schedule.sql): hourly, it
-- disables subscriptions whose deliveries have all failed for 5 days, also
-- those no longer receiving events (a failed delivery checks its own
-- subscription at once; sql/92_webhook_deliveries.sql).
INSERT INTO ventros.scheduled_jobs (name, schedule, command, purpose) VALUES
    ('ventros-tick-webhooks', '41 * * * *', 'SELECT count(*) FROM ventros.tick_webhooks()',
     'disables webhook subscriptions whose deliveries have all failed for 5 days');
