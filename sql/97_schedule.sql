-- Time-based work, scheduled by pg_cron.
--
-- Every timed rule of the domain is a function of `now` (architecture.md,
-- "time is a parameter"): tests call them with any instant, and in
-- production pg_cron calls them.  What runs when is data — one row per job in
-- ventros.scheduled_jobs — and ventros.schedule_jobs() puts those rows into
-- pg_cron.  pg_cron is optional: without it nothing here fails, the jobs are
-- simply not scheduled (and an operator may call the functions from any
-- other scheduler).

CREATE TABLE ventros.scheduled_jobs (
    name     text PRIMARY KEY,
    schedule text NOT NULL,
    command  text NOT NULL,
    purpose  text NOT NULL,
    CONSTRAINT scheduled_jobs_name_format CHECK (name ~ '^ventros-[a-z0-9-]+$'),
    CONSTRAINT scheduled_jobs_schedule_not_blank CHECK (btrim(schedule) <> '')
);
COMMENT ON TABLE ventros.scheduled_jobs IS
    'The pg_cron jobs Ventros needs (name, cron schedule, SQL command); ventros.schedule_jobs() installs them';

-- Readable by all tenant roles (nothing secret), written by the owner only.
ALTER TABLE ventros.scheduled_jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.scheduled_jobs FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_catalog_read ON ventros.scheduled_jobs FOR SELECT USING (true);
GRANT SELECT ON ventros.scheduled_jobs TO ventros_viewer;

-- tick_maintenance: the daily housekeeping of every tenant and of the queues.
-- One subtransaction per tenant, as tick_automation does, so one tenant's
-- failure neither stops nor undoes the others'.
CREATE FUNCTION ventros.tick_maintenance(now timestamptz DEFAULT now(),
                                         http_retention interval DEFAULT interval '7 days')
RETURNS TABLE (tenant_id text, contact_events_purged integer, error text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- the tenant chosen inside is restored when the function returns
SET ventros.tenant = ''
AS $$
DECLARE
    t text;
BEGIN
    PERFORM ventros.require_platform_admin();
    IF http_retention IS NULL OR http_retention < interval '0' THEN
        RAISE EXCEPTION 'http_retention must be a non-negative interval' USING ERRCODE = '22023';
    END IF;
    FOR t IN SELECT DISTINCT p.tenant_id FROM ventros.projects p WHERE p.deleted_at IS NULL ORDER BY 1 LOOP
        PERFORM set_config('ventros.tenant', t, true);
        tenant_id := t;
        error := NULL;
        BEGIN
            contact_events_purged := ventros.purge_expired_contact_events(now);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS error = MESSAGE_TEXT;
            contact_events_purged := NULL;
            RAISE WARNING 'maintenance of tenant % failed: %', t, error;
        END;
        RETURN NEXT;
    END LOOP;
    PERFORM set_config('ventros.tenant', '', true);
    -- Across tenants (both check for a platform administrator themselves).
    PERFORM ventros.compact_crm_daily_stats((now AT TIME ZONE 'UTC')::date);
    PERFORM ventros.prune_http_requests(now - http_retention);
END
$$;
COMMENT ON FUNCTION ventros.tick_maintenance(timestamptz, interval) IS
    'Daily housekeeping: purges expired contact events per tenant (one subtransaction each), compacts past days of crm_daily_stats, prunes finished HTTP requests older than http_retention; platform administrators only (42501)';

INSERT INTO ventros.scheduled_jobs (name, schedule, command, purpose) VALUES
    ('ventros-tick-sessions', '* * * * *', 'SELECT ventros.tick_sessions()',
     'ends sessions whose inactivity timeout passed'),
    ('ventros-tick-automation', '* * * * *', 'SELECT count(*) FROM ventros.tick_automation()',
     'campaign and sequence steps, scheduled and running broadcasts, message groups, credential expiry'),
    ('ventros-tick-maintenance', '17 3 * * *', 'SELECT count(*) FROM ventros.tick_maintenance()',
     'expired contact events, daily statistics compaction, finished HTTP requests'),
    ('ventros-fold-channel-counts', '* * * * *', 'SELECT ventros.fold_channel_message_counts()',
     'moves the slotted message counts of channels into their counters');

-- schedule_jobs: installs (or updates) every declared job in pg_cron, in the
-- database pg_cron runs in (cron.database_name; jobs run as the caller).
-- Returns the jobs it scheduled; none when pg_cron is not installed here.
CREATE FUNCTION ventros.schedule_jobs()
RETURNS TABLE (name text, schedule text, job_id bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    j ventros.scheduled_jobs;
BEGIN
    PERFORM ventros.require_platform_admin();
    IF to_regprocedure('cron.schedule(text, text, text)') IS NULL THEN
        RAISE NOTICE 'pg_cron is not installed in this database: no job scheduled'
            USING HINT = 'CREATE EXTENSION pg_cron in the database named by cron.database_name, then call ventros.schedule_jobs() again.';
        RETURN;
    END IF;
    FOR j IN SELECT * FROM ventros.scheduled_jobs ORDER BY 1 LOOP
        name := j.name;
        schedule := j.schedule;
        -- cron.schedule(name, ...) replaces a job of the same name
        EXECUTE 'SELECT cron.schedule($1, $2, $3)' INTO job_id USING j.name, j.schedule, j.command;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION ventros.schedule_jobs() IS
    'Installs the jobs of ventros.scheduled_jobs into pg_cron (replacing same-named jobs); a notice and no rows without pg_cron';

CREATE FUNCTION ventros.unschedule_jobs()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer := 0;
    job text;
BEGIN
    PERFORM ventros.require_platform_admin();
    IF to_regclass('cron.job') IS NULL THEN
        RETURN 0;
    END IF;
    FOR job IN EXECUTE 'SELECT jobname FROM cron.job WHERE jobname IN (SELECT s.name FROM ventros.scheduled_jobs s)' LOOP
        EXECUTE 'SELECT cron.unschedule($1)' USING job;
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.unschedule_jobs() IS 'Removes Ventros'' jobs from pg_cron; returns how many';

GRANT SELECT ON ventros.scheduled_jobs TO ventros_platform_admin;
GRANT EXECUTE ON FUNCTION ventros.tick_maintenance(timestamptz, interval), ventros.schedule_jobs(),
    ventros.unschedule_jobs() TO ventros_platform_admin;
