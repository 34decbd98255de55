-- Processing the inbox (sql/88_inbox.sql): each stored item is run in its own
-- subtransaction by ventros.inbox_run, which calls ventros.inbox_process
-- (sql/89_inbound.sql: the item's provider's process function) and records
-- the outcome on the row; failures are retried with backoff.  Entry points:
-- the processors' loop (process_inbox: src/inbox_worker.c, or the pg_cron
-- job of sql/98_inbox_jobs.sql), an administrator's retry of one item
-- (reprocess_inbox_item), retention (prune_inbox), and the trigger that
-- makes receipts waiting for a provider id due when a message gets it.

-- ---- retries ----------------------------------------------------------------

CREATE FUNCTION ventros.inbox_max_attempts() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 8 $$;
COMMENT ON FUNCTION ventros.inbox_max_attempts() IS 'Processing attempts of an inbox item before it is given up (8)';

-- 30 s, 1 min, 2 min, ... doubling, at most 1 h: 8 attempts span about 2 h.
CREATE FUNCTION ventros.inbox_backoff(attempts integer) RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- (no SET clause: small enough to be inlined; every name is qualified)
AS $$
    SELECT pg_catalog.make_interval(secs => least(30 OPERATOR(pg_catalog.*) pg_catalog.power(2, least(greatest(attempts, 1) OPERATOR(pg_catalog.-) 1, 20)), 3600))
$$;
COMMENT ON FUNCTION ventros.inbox_backoff(integer) IS
    'Delay before the next processing attempt after n attempts: 30 s doubling, at most 1 h';

-- Errors that no retry can fix: the item itself is malformed or refused.
CREATE FUNCTION ventros.inbox_error_is_permanent(sqlstate text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- (no SET clause: small enough to be inlined; every name is qualified)
AS $$ SELECT pg_catalog.left(sqlstate, 2) IN ('22', '54') OR sqlstate IN ('23502', '23514', 'VN002') $$;
COMMENT ON FUNCTION ventros.inbox_error_is_permanent(text) IS
    'Whether a processing error is the item''s own fault (data exceptions, not-null/check violations, size limits, refused transitions): no retry';

-- What processing one item did (sql/89_inbound.sql: ventros.inbox_process).
CREATE TYPE ventros.inbox_outcome AS (
    status     text,
    message_id uuid,
    contact_id uuid,
    result     jsonb
);
COMMENT ON TYPE ventros.inbox_outcome IS 'The outcome of processing an inbox item: its new status, the message and contact it concerned, details';

-- A receipt waits (unmatched) for the provider id of our send, which the
-- send's answer records (mark_message_sent) in the dispatcher's transaction
-- while a processor may be deciding, unable to see it, that the receipt is
-- unmatched.  Both sides take this lock before they look at the other's
-- side (inbox_run, inbox_rematch): whichever comes second sees what the first
-- committed, so no receipt waits for its backoff while its message has the id
-- (test/isolation/specs/inbox_receipt_before_id.spec).
CREATE FUNCTION ventros.lock_inbox_ref(tenant text, channel_id uuid, ref_id text) RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.lock_tenant_key('inbox_ref:' || channel_id || ':' || ref_id, tenant) $$;
COMMENT ON FUNCTION ventros.lock_inbox_ref(text, uuid, text) IS
    'Takes the lock of a provider message id on a channel (ventros.lock_tenant_key) that a receipt found unmatched and the send recording that id share';

-- inbox_run: processes one stored item in a subtransaction and records the
-- outcome on its row.  The caller has chosen the item's tenant and holds
-- (or just inserted) the row.  Never raises for the item's own errors.
CREATE FUNCTION ventros.inbox_run(r ventros.inbox, now timestamptz) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o ventros.inbox_outcome;
    ch ventros.channels;
    state text;
    message text;
    tries integer := r.attempts + 1;
    id_arrived boolean := false;
BEGIN
    BEGIN
        SELECT * INTO ch FROM ventros.channels c WHERE c.tenant_id = r.tenant_id AND c.id = r.channel_id;
        o := ventros.inbox_process(r, ch);
        IF o.status = 'unmatched' AND r.ref_id IS NOT NULL THEN
            -- the send recording this id now may have committed while we looked
            PERFORM ventros.lock_inbox_ref(r.tenant_id, r.channel_id, r.ref_id);
            id_arrived := EXISTS (SELECT 1 FROM ventros.messages m
                                  WHERE m.tenant_id = r.tenant_id AND m.channel_id = r.channel_id
                                    AND m.channel_message_id = r.ref_id AND m.deleted_at IS NULL);
        END IF;
        UPDATE ventros.inbox i
        SET status = o.status, attempts = tries, message_id = coalesce(o.message_id, i.message_id),
            contact_id = coalesce(o.contact_id, i.contact_id), result = o.result, last_error = NULL,
            processed_at = CASE WHEN o.status <> 'unmatched' THEN now END,
            next_attempt_at = CASE WHEN o.status = 'unmatched' AND tries < ventros.inbox_max_attempts()
                                   THEN CASE WHEN id_arrived THEN now ELSE now + ventros.inbox_backoff(tries) END END
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

-- process_inbox: the retry loop, across tenants, for a scheduler (pg_cron
-- job ventros-process-inbox, sql/98_inbox_jobs.sql) or an operator.  Time is a parameter.
-- SECURITY DEFINER to read every tenant's rows; platform admins only.
--
-- Several processors run it at once (src/inbox_worker.c), on the items of
-- one channel as well as of many: nothing is locked per channel.  Each
-- claims its batch FOR UPDATE SKIP LOCKED (an item is processed by one
-- processor once), and keeps each conversation's order (inbox.conversation:
-- the chat its provider's conversation function names): an item is processed only when no
-- earlier item of its conversation is still received, as the committed state
-- shows it, so an item that another processor holds uncommitted holds the
-- later ones back.  Those are left due and counted "waiting" (the caller
-- takes them again once the earlier ones are done); the processor holding
-- the earlier items processes the later ones of its own batch in order.
-- test/isolation/specs/inbox_conversation_order.spec.
CREATE FUNCTION ventros.process_inbox(batch_size integer DEFAULT 100, now timestamptz DEFAULT now())
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
        ELSIF r.conversation IS NOT NULL AND r.status = 'received'
              AND EXISTS (SELECT 1 FROM ventros.inbox e
                           WHERE e.tenant_id = r.tenant_id AND e.channel_id = r.channel_id
                             AND e.conversation = r.conversation AND e.status = 'received'
                             AND (e.received_at, e.item_index) < (r.received_at, r.item_index)) THEN
            -- an earlier item of its conversation is not done (another
            -- processor has it, or it was not claimed): this one waits
            outcome := 'waiting';
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
    'Platform admins / scheduler: processes up to batch_size due inbox items of every tenant (received, failed with retries left, unmatched), each in its own subtransaction, in the order of each conversation (an item whose conversation has an earlier item still received is left due: status waiting); an item that waits for a lock past ventros.inbox_lock_timeout is put off 5 s with the rest of its tenant''s batch (status deferred, no attempt counted); returns how many ended in each status';

-- The role the session acts as: its SET ROLE, else its login.  Inside a
-- SECURITY DEFINER function current_user is the definer (a superuser, a
-- member of every role), so a role check there asks this instead.
CREATE FUNCTION ventros.session_role() RETURNS name
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN pg_catalog.current_setting('role') = 'none' THEN session_user
                ELSE pg_catalog.current_setting('role')::name END
$$;
COMMENT ON FUNCTION ventros.session_role() IS
    'The role the session acts as (its SET ROLE, else its login): the caller''s role for checks inside SECURITY DEFINER functions, where current_user is the definer';

-- reprocess_inbox_item: an administrator retries one item now (after fixing
-- a channel's configuration, or an unparsed/failed item after an upgrade).
CREATE FUNCTION ventros.reprocess_inbox_item(inbox_id uuid) RETURNS ventros.inbox
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    r ventros.inbox;
BEGIN
    -- the caller's role: current_user here is this function's owner
    IF NOT pg_has_role(ventros.session_role(), 'ventros_admin', 'MEMBER')
       AND NOT pg_has_role(ventros.session_role(), 'ventros_platform_admin', 'MEMBER') THEN
        RAISE EXCEPTION 'only administrators reprocess inbox items' USING ERRCODE = '42501',
            DETAIL = pg_catalog.format('Role "%s" is not a member of ventros_admin.', ventros.session_role());
    END IF;
    SELECT * INTO r FROM ventros.inbox i WHERE i.tenant_id = tenant AND i.id = inbox_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'inbox item % not found', inbox_id USING ERRCODE = 'P0002';
    END IF;
    IF r.status NOT IN ('failed', 'unmatched', 'unparsed', 'received') OR r.item IS NULL THEN
        RAISE EXCEPTION 'inbox item % is %', inbox_id, r.status USING ERRCODE = '55000',
            HINT = 'Only failed, unmatched, unparsed or received items with a parsed JSON item are reprocessed.';
    END IF;
    PERFORM ventros.inbox_run(r, now());
    SELECT * INTO r FROM ventros.inbox i WHERE i.tenant_id = tenant AND i.id = inbox_id;
    RETURN r;
END
$$;
COMMENT ON FUNCTION ventros.reprocess_inbox_item(uuid) IS
    'Administrators: processes one failed, unmatched or unparsed inbox item of the acting tenant again, now; returns the row';

-- prune_inbox: retention, for a scheduler.  Finished rows only.
CREATE FUNCTION ventros.prune_inbox(received_before timestamptz, batch_size integer DEFAULT 10000)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    PERFORM ventros.require_platform_admin();
    WITH gone AS (
        DELETE FROM ventros.inbox r
         WHERE (r.tenant_id, r.id) IN (SELECT x.tenant_id, x.id FROM ventros.inbox x
                                        WHERE x.received_at < received_before
                                          AND (x.status IN ('processed', 'ignored', 'unparsed', 'foreign')
                                               OR x.next_attempt_at IS NULL)
                                        LIMIT batch_size)
        RETURNING 1)
    SELECT count(*)::integer INTO n FROM gone;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.prune_inbox(timestamptz, integer) IS
    'Platform admins: deletes up to batch_size finished inbox rows received before the given time; returns how many. Deleting a row forgets its dedupe key: keep more than the providers'' retry horizon (Meta: days)';

-- Receipts that arrived before the send recorded the provider id become due
-- as soon as a message gets that id (mark_message_sent, an echo binding it).
-- The id's lock first (lock_inbox_ref): a processor deciding right now that
-- a receipt for it is unmatched has committed when we look.
CREATE FUNCTION ventros.inbox_rematch() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.lock_inbox_ref(NEW.tenant_id, NEW.channel_id, NEW.channel_message_id);
    UPDATE ventros.inbox i SET next_attempt_at = now()
    WHERE i.tenant_id = NEW.tenant_id AND i.channel_id = NEW.channel_id AND i.ref_id = NEW.channel_message_id
      AND i.status = 'unmatched';
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.inbox_rematch() IS
    'Trigger: a message got a provider id; receipts for it that were unmatched are due now (after the id''s lock, lock_inbox_ref)';
CREATE TRIGGER messages_inbox_rematch AFTER INSERT OR UPDATE OF channel_message_id ON ventros.messages
    FOR EACH ROW WHEN (NEW.channel_message_id IS NOT NULL AND NEW.from_me)
    EXECUTE FUNCTION ventros.inbox_rematch();
GRANT EXECUTE ON FUNCTION ventros.reprocess_inbox_item(uuid) TO ventros_admin;
GRANT EXECUTE ON FUNCTION ventros.process_inbox(integer, timestamptz), ventros.prune_inbox(timestamptz, integer)
    TO ventros_platform_admin;
