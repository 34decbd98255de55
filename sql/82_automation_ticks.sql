-- One tick for every tenant, for a scheduler (pg_cron, once a minute):
-- starts due campaigns and broadcasts, advances due campaign and sequence
-- enrollments, sends a rate-limited batch of each running broadcast, hands
-- due message groups to processing and expires credentials.  Each tenant
-- runs in a subtransaction, so one tenant's failure (logged as a warning)
-- neither stops nor undoes the others'.  Platform administrators only.

CREATE FUNCTION ventros.tick_automation(now timestamptz DEFAULT now())
RETURNS TABLE (tenant_id text, campaign_steps integer, sequence_steps integer, broadcast_sends integer,
               message_groups integer, credentials_expired integer, error text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- the tenant chosen inside is restored when the function returns
SET ventros.tenant = ''
AS $$
DECLARE
    t text;
BEGIN
    PERFORM ventros.require_platform_admin();
    FOR t IN SELECT DISTINCT p.tenant_id FROM ventros.projects p WHERE p.deleted_at IS NULL ORDER BY 1 LOOP
        PERFORM set_config('ventros.tenant', t, true);
        tenant_id := t;
        error := NULL;
        BEGIN
            campaign_steps := ventros.tick_campaigns(now);
            sequence_steps := ventros.tick_sequences(now);
            broadcast_sends := ventros.tick_broadcasts(now);
            message_groups := (SELECT count(*) FROM ventros.tick_message_groups(now));
            credentials_expired := ventros.expire_credentials();
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS error = MESSAGE_TEXT;
            campaign_steps := NULL; sequence_steps := NULL; broadcast_sends := NULL;
            message_groups := NULL; credentials_expired := NULL;
            RAISE WARNING 'tick of tenant % failed: %', t, error;
        END;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION ventros.tick_automation(timestamptz) IS
    'Runs every tenant''s automation ticks (campaigns, sequences, broadcasts, message groups, credential expiry), one subtransaction per tenant; platform administrators only (42501)';

GRANT EXECUTE ON FUNCTION ventros.tick_automation(timestamptz) TO ventros_platform_admin;
