-- Lints over the catalog (test/pgtap/610_lints.sql) call every function a
-- tenant role may call that takes a tenant, naming another tenant.
-- ventros.event_log_sequence now refuses (its lock is ventros.lock_tenant_key,
-- 40_locks_cron.sql), but the activity log's trigger called it for any row,
-- so a row of another tenant failed on that lock (42501, "permission denied
-- to lock a key") before the row policy could refuse it: a widened INSERT
-- policy would have hidden behind the lock.  The trigger leaves a row of
-- another tenant unnumbered, so the row policy refuses it first.

CREATE OR REPLACE FUNCTION ventros.event_log_guard() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.tenant_id := coalesce(NEW.tenant_id, ventros.require_tenant());
        -- A row of another tenant is left unnumbered: the row policy refuses
        -- it (42501) without this trigger locking that tenant's log.
        NEW.sequence_number := CASE WHEN NEW.contact_id IS NOT NULL
                                         AND NEW.tenant_id IS NOT DISTINCT FROM coalesce(ventros.current_tenant(), NEW.tenant_id)
                                    THEN ventros.event_log_sequence(NEW.tenant_id, NEW.contact_id) END;
        RETURN NEW;
    END IF;
    IF (NEW.event_type, NEW.aggregate_type, NEW.aggregate_id, NEW.project_id, NEW.user_id, NEW.source, NEW.occurred_at)
       IS DISTINCT FROM (OLD.event_type, OLD.aggregate_type, OLD.aggregate_id, OLD.project_id, OLD.user_id, OLD.source,
                         OLD.occurred_at)
       OR (NEW.payload IS DISTINCT FROM OLD.payload
           AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user))
       OR (OLD.contact_id IS NOT NULL AND NEW.contact_id IS DISTINCT FROM OLD.contact_id)
       OR (OLD.session_id IS NOT NULL AND NEW.session_id IS DISTINCT FROM OLD.session_id)
       OR (OLD.message_id IS NOT NULL AND NEW.message_id IS DISTINCT FROM OLD.message_id)
       OR (OLD.sequence_number IS NOT NULL AND NEW.sequence_number IS DISTINCT FROM OLD.sequence_number) THEN
        RAISE EXCEPTION 'event log entry % is append-only', OLD.id
            USING ERRCODE = '55000',
                  DETAIL = 'Only a missing contact, session or message and published_at can be added to an entry.';
    END IF;
    IF OLD.contact_id IS NULL AND NEW.contact_id IS NOT NULL THEN
        NEW.sequence_number := ventros.event_log_sequence(NEW.tenant_id, NEW.contact_id);
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION ventros.event_log_guard() IS
    'Keeps the activity log append-only (55000) and numbers each contact''s entries';
