-- No tenant holds up the inbox processors for the others: an item that waits
-- for a lock past ventros.inbox_lock_timeout is put off (no attempt counted),
-- with the rest of its tenant's batch.

CREATE OR REPLACE FUNCTION ventros.inbox_run(r ventros.inbox, now timestamptz) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o ventros.inbox_outcome;
    ch ventros.channels;
    state text;
    message text;
    tries integer := r.attempts + 1;
BEGIN
    BEGIN
        SELECT * INTO ch FROM ventros.channels c WHERE c.tenant_id = r.tenant_id AND c.id = r.channel_id;
        o := ventros.inbox_process(r, ch);
        UPDATE ventros.inbox i
        SET status = o.status, attempts = tries, message_id = coalesce(o.message_id, i.message_id),
            contact_id = coalesce(o.contact_id, i.contact_id), result = o.result, last_error = NULL,
            processed_at = CASE WHEN o.status <> 'unmatched' THEN now END,
            next_attempt_at = CASE WHEN o.status = 'unmatched' AND tries < ventros.inbox_max_attempts()
                                   THEN now + ventros.inbox_backoff(tries) END
        WHERE i.tenant_id = r.tenant_id AND i.id = r.id;
        RETURN o.status;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
    END;
    IF state = '55P03' THEN
        -- a lock held past ventros.inbox_lock_timeout (a tenant's own open
        -- transaction): not the item's fault, so no attempt is counted
        UPDATE ventros.inbox i
        SET last_error = left(state || ': ' || message, 2000), next_attempt_at = now + interval '5 seconds'
        WHERE i.tenant_id = r.tenant_id AND i.id = r.id;
        RETURN 'deferred';
    END IF;
    UPDATE ventros.inbox i
    SET status = 'failed', attempts = tries, last_error = left(state || ': ' || message, 2000),
        next_attempt_at = CASE WHEN NOT ventros.inbox_error_is_permanent(state) AND tries < ventros.inbox_max_attempts()
                               THEN now + ventros.inbox_backoff(tries) END
    WHERE i.tenant_id = r.tenant_id AND i.id = r.id;
    RETURN 'failed';
END
$$;

CREATE OR REPLACE FUNCTION ventros.process_inbox(batch_size integer DEFAULT 100, now timestamptz DEFAULT now())
RETURNS TABLE (status text, items integer)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET ventros.tenant = ''
AS $$
DECLARE
    r ventros.inbox;
    outcome text;
    counts jsonb := '{}';
    held_up text[] := '{}';     -- tenants whose item waited past the lock timeout
    wait text := pg_catalog.current_setting('ventros.inbox_lock_timeout', true);
    saved_wait text := pg_catalog.current_setting('lock_timeout');
BEGIN
    PERFORM ventros.require_platform_admin();
    -- No tenant holds up the others: an item waits for a lock at most this
    -- long, and then the rest of its tenant's items in the batch are put off
    -- with it, so one tenant's open transaction costs a processor one wait
    -- every few seconds, not one per item.
    IF wait IS NOT NULL AND wait NOT IN ('0', '0ms') THEN
        PERFORM pg_catalog.set_config('lock_timeout', wait, true);
    END IF;
    FOR r IN SELECT * FROM ventros.inbox i
             WHERE i.status IN ('received', 'failed', 'unmatched') AND i.next_attempt_at <= process_inbox.now
             ORDER BY i.next_attempt_at, i.received_at, i.item_index
             LIMIT batch_size
             FOR UPDATE SKIP LOCKED LOOP
        IF r.tenant_id = ANY (held_up) THEN
            UPDATE ventros.inbox i SET next_attempt_at = process_inbox.now + interval '5 seconds'
            WHERE i.tenant_id = r.tenant_id AND i.id = r.id;
            outcome := 'deferred';
        ELSE
            PERFORM set_config('ventros.tenant', r.tenant_id, true);
            outcome := ventros.inbox_run(r, process_inbox.now);
            IF outcome = 'deferred' THEN
                held_up := held_up || r.tenant_id;
            END IF;
        END IF;
        counts := jsonb_set(counts, ARRAY[outcome], to_jsonb(coalesce((counts->>outcome)::integer, 0) + 1));
    END LOOP;
    PERFORM pg_catalog.set_config('lock_timeout', saved_wait, true);
    RETURN QUERY SELECT c.key, c.value::text::integer FROM jsonb_each(counts) c ORDER BY c.key;
END
$$;
COMMENT ON FUNCTION ventros.process_inbox(integer, timestamptz) IS
    'Platform admins / scheduler: processes up to batch_size due inbox items of every tenant (received, failed with retries left, unmatched), each in its own subtransaction; an item that waits for a lock past ventros.inbox_lock_timeout is put off 5 s with the rest of its tenant''s batch (status deferred, no attempt counted); returns how many ended in each status';
