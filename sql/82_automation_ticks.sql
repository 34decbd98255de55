-- One tick for every tenant, for a scheduler (pg_cron, once a minute):
-- starts due campaigns and broadcasts, advances due campaign and sequence
-- enrollments, sends a rate-limited batch of each running broadcast, hands
-- due message groups to processing and expires credentials.  Each tenant
-- runs in a subtransaction of ventros.run_per_tenant (sql/97_schedule.sql),
-- so one tenant's failure (a warning, and a row of
-- ventros.scheduled_job_failures) neither stops nor undoes the others'.
-- Platform administrators only.

CREATE FUNCTION ventros.tick_automation(now timestamptz DEFAULT now())
RETURNS TABLE (tenant_id text, campaign_steps integer, sequence_steps integer, broadcast_sends integer,
               message_groups integer, credentials_expired integer, error text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.require_platform_admin();
    RETURN QUERY
    SELECT r.tenant_id, (r.result->>'campaign_steps')::integer, (r.result->>'sequence_steps')::integer,
           (r.result->>'broadcast_sends')::integer, (r.result->>'message_groups')::integer,
           (r.result->>'credentials_expired')::integer, r.error
      FROM ventros.run_per_tenant('ventros-tick-automation',
               -- in this order (a CTE each, each evaluated once, in turn)
               $s$WITH c AS (SELECT ventros.tick_campaigns($1) AS n),
                       s AS (SELECT ventros.tick_sequences($1) AS n FROM c),
                       b AS (SELECT ventros.tick_broadcasts($1) AS n FROM s),
                       g AS (SELECT (SELECT pg_catalog.count(*) FROM ventros.tick_message_groups($1))::integer AS n FROM b),
                       e AS (SELECT ventros.expire_credentials() AS n FROM g)
                  SELECT pg_catalog.jsonb_build_object('campaign_steps', c.n, 'sequence_steps', s.n,
                                                       'broadcast_sends', b.n, 'message_groups', g.n,
                                                       'credentials_expired', e.n)
                    FROM c, s, b, g, e$s$,
               now => tick_automation.now) r;
END
$$;
COMMENT ON FUNCTION ventros.tick_automation(timestamptz) IS
    'Runs every tenant''s automation ticks (campaigns, sequences, broadcasts, message groups, credential expiry), one subtransaction per tenant (ventros.run_per_tenant); platform administrators only (42501)';

GRANT EXECUTE ON FUNCTION ventros.tick_automation(timestamptz) TO ventros_platform_admin;
