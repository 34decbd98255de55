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

-- Scheduled work runs per tenant: one tenant's bad data must fail only its
-- own part of a job, not the job for every tenant.  ventros.run_per_tenant is
-- the one loop that does it: for each tenant it sets the acting tenant, runs
-- the job's step in a subtransaction (an error undoes that tenant's step
-- only), and records the outcome in ventros.scheduled_job_failures (a row
-- per job and failing tenant, gone at its next success).  The jobs of
-- ventros.scheduled_jobs either go through it (ticks of sessions,
-- automation, maintenance, webhooks, the channel counter fold), work row by
-- row in subtransactions of their own (process_inbox), or are retention
-- deletes across tenants that no tenant's data can make fail (the prunes).
CREATE TABLE ventros.scheduled_job_failures (
    tenant_id       text        NOT NULL,
    job             text        NOT NULL,
    error           text        NOT NULL,
    sqlstate        text        NOT NULL,
    first_failed_at timestamptz NOT NULL DEFAULT now(),
    failed_at       timestamptz NOT NULL DEFAULT now(),
    failures        integer     NOT NULL DEFAULT 1,
    PRIMARY KEY (tenant_id, job)
);
COMMENT ON TABLE ventros.scheduled_job_failures IS
    'The tenants whose part of a scheduled job failed at its last run: the error, since when, how many runs in a row (the row goes at the next success)';
ALTER TABLE ventros.scheduled_job_failures ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.scheduled_job_failures FORCE ROW LEVEL SECURITY;
-- tenant administrators see their own tenant's; the runner writes as the
-- tenant it acts for
CREATE POLICY ventros_tenant_all ON ventros.scheduled_job_failures
    USING (tenant_id = (SELECT ventros.current_tenant()));
REVOKE ALL ON ventros.scheduled_job_failures FROM PUBLIC;
GRANT SELECT ON ventros.scheduled_job_failures TO ventros_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON ventros.scheduled_job_failures TO ventros_platform_admin;

CREATE FUNCTION ventros.run_per_tenant(job text, step text, tenants text[] DEFAULT NULL,
                                       now timestamptz DEFAULT now(), args jsonb DEFAULT '{}')
RETURNS TABLE (tenant_id text, result jsonb, error text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- the tenant chosen inside is restored when the function returns
SET ventros.tenant = ''
AS $$
DECLARE
    t text;
    state text;
    caller_lock_timeout text := pg_catalog.current_setting('lock_timeout');
BEGIN
    PERFORM ventros.require_platform_admin();
    IF job IS NULL OR step IS NULL THEN
        RAISE EXCEPTION 'run_per_tenant needs a job name and a step' USING ERRCODE = '22023';
    END IF;
    -- A tenant's open transaction holding a row lock a step needs (its
    -- channel, say) must not stall the job for the tenants after it: a step
    -- waits at most 10 s for a lock (less when the caller set less), then
    -- fails for its tenant only (55P03).
    IF caller_lock_timeout::interval = interval '0' OR caller_lock_timeout::interval > interval '10 s' THEN
        PERFORM pg_catalog.set_config('lock_timeout', '10s', true);
    END IF;
    FOR t IN SELECT x.t FROM unnest(coalesce(tenants,
                 ARRAY(SELECT DISTINCT p.tenant_id FROM ventros.projects p WHERE p.deleted_at IS NULL ORDER BY 1))) AS x(t)
    LOOP
        PERFORM pg_catalog.set_config('ventros.tenant', t, true);
        tenant_id := t;
        result := NULL;
        error := NULL;
        BEGIN
            EXECUTE step INTO result USING now, args;
            DELETE FROM ventros.scheduled_job_failures f
             WHERE f.tenant_id = t AND f.job = run_per_tenant.job;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS error = MESSAGE_TEXT, state = RETURNED_SQLSTATE;
            RAISE WARNING 'scheduled job % failed for tenant %: %', job, t, error;
            INSERT INTO ventros.scheduled_job_failures AS f (tenant_id, job, error, sqlstate)
            VALUES (t, job, error, state)
            ON CONFLICT ON CONSTRAINT scheduled_job_failures_pkey DO UPDATE
            SET error = EXCLUDED.error, sqlstate = EXCLUDED.sqlstate, failed_at = EXCLUDED.failed_at,
                failures = f.failures + 1;
        END;
        RETURN NEXT;
    END LOOP;
    PERFORM pg_catalog.set_config('lock_timeout', caller_lock_timeout, true);
END
$$;
COMMENT ON FUNCTION ventros.run_per_tenant(text, text, text[], timestamptz, jsonb) IS
    'The per-tenant loop of scheduled work: runs step (SQL returning one jsonb; $1 = now, $2 = args) as each tenant (default: every tenant with a live project), each in a subtransaction waiting at most 10 s for a lock; a failure is a warning and a row of ventros.scheduled_job_failures, a success clears it; platform administrators only (42501)';

CREATE VIEW ventros.scheduled_job_status AS
SELECT j.name AS job, j.schedule, f.tenant_id, f.error, f.sqlstate, f.failed_at, f.first_failed_at, f.failures
  FROM ventros.scheduled_jobs j
  LEFT JOIN ventros.scheduled_job_failures f ON f.job = j.name;
COMMENT ON VIEW ventros.scheduled_job_status IS
    'Every scheduled job, with a row per tenant whose part failed at its last run (error, SQLSTATE, when, since when, runs in a row), or one row without a tenant when none failed (platform administrators)';
GRANT SELECT ON ventros.scheduled_job_status TO ventros_platform_admin;

-- tick_maintenance: the daily housekeeping of every tenant and of the queues,
-- per tenant through ventros.run_per_tenant.
CREATE FUNCTION ventros.tick_maintenance(now timestamptz DEFAULT now(),
                                         http_retention interval DEFAULT interval '7 days')
RETURNS TABLE (tenant_id text, contact_events_purged integer, error text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.require_platform_admin();
    IF http_retention IS NULL OR http_retention < interval '0' THEN
        RAISE EXCEPTION 'http_retention must be a non-negative interval' USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
    SELECT r.tenant_id, (r.result->>'contact_events_purged')::integer, r.error
      FROM ventros.run_per_tenant('ventros-tick-maintenance',
               $s$SELECT pg_catalog.jsonb_build_object(
                      'contact_events_purged', ventros.purge_expired_contact_events($1),
                      'crm_daily_stats_compacted', ventros.compact_crm_daily_stats(($1 AT TIME ZONE 'UTC')::date))$s$,
               now => tick_maintenance.now) r;
    -- Across tenants: retention of finished requests (no tenant's data can
    -- make a delete of its own finished rows fail).
    PERFORM ventros.prune_http_requests(now - http_retention);
END
$$;
COMMENT ON FUNCTION ventros.tick_maintenance(timestamptz, interval) IS
    'Daily housekeeping: purges expired contact events and compacts past days of crm_daily_stats per tenant (ventros.run_per_tenant), prunes finished HTTP requests older than http_retention; platform administrators only (42501)';

INSERT INTO ventros.scheduled_jobs (name, schedule, command, purpose) VALUES
    ('ventros-tick-sessions', '* * * * *',
     'SELECT count(*) FROM ventros.run_per_tenant(''ventros-tick-sessions'', ''SELECT pg_catalog.to_jsonb(ventros.tick_sessions($1))'')',
     'ends sessions whose inactivity timeout passed'),
    ('ventros-tick-assignments', '* * * * *',
     'SELECT count(*) FROM ventros.run_per_tenant(''ventros-tick-assignments'', ''SELECT pg_catalog.to_jsonb(ventros.tick_assignments($1))'')',
     'reassignment rules of teams (agent offline, no first response in N minutes) and sessions waiting on a team'),
    ('ventros-tick-automation', '* * * * *', 'SELECT count(*) FROM ventros.tick_automation()',
     'campaign and sequence steps, scheduled and running broadcasts, message groups, credential expiry'),
    ('ventros-tick-maintenance', '17 3 * * *', 'SELECT count(*) FROM ventros.tick_maintenance()',
     'expired contact events, daily statistics compaction, finished HTTP requests'),
    ('ventros-fold-channel-counts', '* * * * *', 'SELECT ventros.fold_channel_message_counts()',
     'moves the slotted message counts of channels into their counters'),
    ('ventros-fold-usage', '* * * * *', 'SELECT ventros.fold_usage()',
     'moves usage deltas into the usage totals and meters, notes plan limits reached'),
    ('ventros-fold-crm-stats', '* * * * *', 'SELECT ventros.fold_crm_stats()',
     'moves the CRM report deltas into the report summaries'),
    ('ventros-report-usage', '5 * * * *', 'SELECT ventros.report_usage_to_stripe()',
     'reports the usage meters'' unreported usage to Stripe as meter events'),
    ('ventros-tick-automation-rules', '* * * * *',
     'SELECT count(*) FROM ventros.run_per_tenant(''ventros-tick-automation-rules'', ''SELECT pg_catalog.to_jsonb(ventros.tick_automation_rules($1))'')',
     'time triggers of automation rules: schedules, no reply for N minutes, contact dates'),
    ('ventros-run-automations', '* * * * *', 'SELECT ventros.run_automations(1000)',
     'the automation executor''s fallback when its background worker is not running');

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
    ventros.run_per_tenant(text, text, text[], timestamptz, jsonb),
    ventros.unschedule_jobs() TO ventros_platform_admin;
