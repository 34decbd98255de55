-- The maintenance steps the scheduler runs (some with a clock of their own)
-- are for the scheduler and platform administrators, not tenant admins.
REVOKE EXECUTE ON FUNCTION ventros.expire_credentials(),
    ventros.disable_failing_webhook_subscriptions(timestamptz, interval),
    ventros.purge_expired_contact_events(timestamptz),
    ventros.compact_crm_daily_stats(date)
    FROM ventros_admin;
GRANT EXECUTE ON FUNCTION ventros.expire_credentials(),
    ventros.disable_failing_webhook_subscriptions(timestamptz, interval),
    ventros.purge_expired_contact_events(timestamptz)
    TO ventros_platform_admin;
