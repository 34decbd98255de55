-- Lints over the catalog (test/pgtap/610_lints.sql) flag every function a
-- tenant role may call that takes a tenant argument.  ventros.event_log_sequence
-- took any tenant: a tenant login could take (and hold until its commit) the
-- advisory lock another tenant's activity log waits on.  It now serves the
-- acting tenant only (42501), and the trigger that calls it leaves a row of
-- another tenant unnumbered, so the row policy refuses it first.

CREATE OR REPLACE FUNCTION ventros.event_log_sequence(tenant text, contact_id uuid) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    acting text := ventros.current_tenant();
    seq    bigint;
BEGIN
    IF tenant IS DISTINCT FROM acting AND (acting IS NOT NULL OR NOT ventros.session_is_trusted()) THEN
        RAISE EXCEPTION 'cannot number the activity log of another tenant'
            USING ERRCODE = '42501',
                  DETAIL = format('The acting tenant is %s.', coalesce(acting, 'none'));
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended(tenant || '/' || contact_id::text, 13));
    SELECT coalesce(max(l.sequence_number), 0) + 1 INTO seq FROM ventros.event_log l
    WHERE l.tenant_id = tenant AND l.contact_id = event_log_sequence.contact_id;
    RETURN seq;
END
$$;
COMMENT ON FUNCTION ventros.event_log_sequence(text, uuid) IS
    'The next sequence number of a contact''s activity log (locks the contact''s log until commit); the acting tenant''s log only (42501)';

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
