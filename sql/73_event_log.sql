-- Aggregate 13, Event (CRM): the append-only activity log of contacts,
-- sessions and messages.  Its facts (type, source, payload, time, subject)
-- never change: a trigger refuses it.  Two things may be added later: the
-- contact, session or message an entry belongs to (each once, from NULL) and
-- published_at.  The only exception is erasure (ventros.erase_contact), which
-- runs as the extension owner and may redact a payload.  sequence_number
-- counts a contact's entries, 1, 2, 3..., under a transaction lock per
-- (tenant, contact), so concurrent appends never share a number.

CREATE TABLE ventros.event_log (
    id              uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id       text        NOT NULL,
    version         integer     NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    event_type      text        NOT NULL,
    aggregate_type  text,
    aggregate_id    uuid,
    contact_id      uuid,
    session_id      uuid,
    message_id      uuid,
    project_id      uuid,
    user_id         uuid,
    payload         jsonb       NOT NULL DEFAULT '{}',
    source          text        NOT NULL DEFAULT 'system',
    sequence_number bigint,
    occurred_at     timestamptz NOT NULL DEFAULT now(),
    published_at    timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES ventros.contacts (tenant_id, id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES ventros.sessions (tenant_id, id),
    FOREIGN KEY (tenant_id, message_id) REFERENCES ventros.messages (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id),
    CONSTRAINT event_log_type_known CHECK (event_type IN ('contact.created', 'contact.updated', 'contact.deleted',
        'session.started', 'session.ended', 'session.summarized', 'message.received', 'message.sent', 'message.read',
        'message.failed', 'agent.assigned', 'agent.transferred', 'agent.typing_started', 'custom_field.updated',
        'tag.added', 'tag.removed', 'note.added')),
    CONSTRAINT event_log_source_known CHECK (source IN ('system', 'webhook', 'manual', 'cron', 'workflow')),
    CONSTRAINT event_log_payload_object CHECK (jsonb_typeof(payload) = 'object'),
    CONSTRAINT event_log_sequence_with_contact CHECK ((sequence_number IS NULL) = (contact_id IS NULL))
);
CREATE UNIQUE INDEX event_log_contact_sequence ON ventros.event_log (tenant_id, contact_id, sequence_number)
    WHERE contact_id IS NOT NULL;
CREATE INDEX event_log_by_type ON ventros.event_log (tenant_id, event_type, occurred_at);
CREATE INDEX event_log_by_session ON ventros.event_log (tenant_id, session_id, occurred_at) WHERE session_id IS NOT NULL;
COMMENT ON TABLE ventros.event_log IS 'Event: the append-only activity log (17 activity types)';

SELECT ventros.register_aggregate('event_log', 'ventros.event_log', 'crm',
    privileges => '{"ventros_viewer": ["SELECT"], "ventros_agent": ["INSERT", "UPDATE"], "ventros_admin": ["DELETE"]}',
    description => 'The append-only activity log');

-- Numbers a contact's entries; runs before the engine (trigger name order).
CREATE FUNCTION ventros.event_log_sequence(tenant text, contact_id uuid) RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.lock_tenant_key('event_log/' || contact_id::text, tenant);
    SELECT coalesce(max(l.sequence_number), 0) + 1 FROM ventros.event_log l
    WHERE l.tenant_id = tenant AND l.contact_id = event_log_sequence.contact_id
$$;
COMMENT ON FUNCTION ventros.event_log_sequence(text, uuid) IS
    'The next sequence number of a contact''s activity log (locks the contact''s log until commit)';

CREATE FUNCTION ventros.event_log_guard() RETURNS trigger
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
CREATE TRIGGER event_log_guard BEFORE INSERT OR UPDATE ON ventros.event_log
    FOR EACH ROW EXECUTE FUNCTION ventros.event_log_guard();

CREATE FUNCTION ventros.append_event_log(event_type text, payload jsonb DEFAULT '{}', source text DEFAULT 'system',
                                         contact_id uuid DEFAULT NULL, session_id uuid DEFAULT NULL,
                                         message_id uuid DEFAULT NULL, aggregate_type text DEFAULT NULL,
                                         aggregate_id uuid DEFAULT NULL, occurred_at timestamptz DEFAULT NULL)
RETURNS ventros.event_log
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.event_log;
BEGIN
    PERFORM ventros.require_value(event_type, ARRAY['contact.created', 'contact.updated', 'contact.deleted',
        'session.started', 'session.ended', 'session.summarized', 'message.received', 'message.sent', 'message.read',
        'message.failed', 'agent.assigned', 'agent.transferred', 'agent.typing_started', 'custom_field.updated',
        'tag.added', 'tag.removed', 'note.added'], 'activity type');
    PERFORM ventros.require_value(coalesce(source, 'system'), ARRAY['system', 'webhook', 'manual', 'cron', 'workflow'], 'activity source');
    INSERT INTO ventros.event_log (event_type, aggregate_type, aggregate_id, contact_id, session_id, message_id, project_id,
                                   payload, source, occurred_at)
    VALUES (event_type, aggregate_type, aggregate_id, contact_id, session_id, message_id, ventros.default_project(),
            coalesce(ventros.require_json(payload, 'object', 'activity payload'), '{}'), coalesce(source, 'system'),
            coalesce(occurred_at, now()))
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.append_event_log(text, jsonb, text, uuid, uuid, uuid, text, uuid, timestamptz) IS
    'Appends an activity (one of the 17 types, 22023 otherwise); emits event_log.created';

CREATE FUNCTION ventros.attach_event_log(event_log_id uuid, contact_id uuid DEFAULT NULL, session_id uuid DEFAULT NULL,
                                         message_id uuid DEFAULT NULL)
RETURNS ventros.event_log
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.event_log;
BEGIN
    UPDATE ventros.event_log l
    SET contact_id = coalesce(attach_event_log.contact_id, l.contact_id),
        session_id = coalesce(attach_event_log.session_id, l.session_id),
        message_id = coalesce(attach_event_log.message_id, l.message_id),
        version = l.version
    WHERE l.tenant_id = ventros.require_tenant() AND l.id = event_log_id
    RETURNING * INTO result;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('event log entry', event_log_id);
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.attach_event_log(uuid, uuid, uuid, uuid) IS
    'Attaches an entry to a contact, session or message it lacked (55000 when it would change one); emits event_log.updated';

CREATE FUNCTION ventros.list_event_log(contact_id uuid DEFAULT NULL, session_id uuid DEFAULT NULL,
                                       event_type text DEFAULT NULL, since timestamptz DEFAULT NULL,
                                       until timestamptz DEFAULT NULL, after_occurred_at timestamptz DEFAULT NULL,
                                       after_id uuid DEFAULT NULL, page_size integer DEFAULT 50)
RETURNS SETOF ventros.event_log
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT l.* FROM ventros.event_log l
    WHERE l.tenant_id = ventros.require_tenant()
      AND (list_event_log.contact_id IS NULL OR l.contact_id = list_event_log.contact_id)
      AND (list_event_log.session_id IS NULL OR l.session_id = list_event_log.session_id)
      AND (list_event_log.event_type IS NULL OR l.event_type = list_event_log.event_type)
      AND (since IS NULL OR l.occurred_at >= since)
      AND (until IS NULL OR l.occurred_at < until)
      AND (after_id IS NULL OR (l.occurred_at, l.id) > (after_occurred_at, after_id))
    ORDER BY l.occurred_at, l.id
    LIMIT ventros.check_page_size(page_size)
$$;
COMMENT ON FUNCTION ventros.list_event_log(uuid, uuid, text, timestamptz, timestamptz, timestamptz, uuid, integer) IS
    'Activity entries by contact, session, type and time range, oldest first, keyset paging on (occurred_at, id)';

CREATE FUNCTION ventros.count_event_log(event_type text DEFAULT NULL, since timestamptz DEFAULT NULL)
RETURNS TABLE (event_type text, entries bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT l.event_type, count(*) FROM ventros.event_log l
    WHERE l.tenant_id = ventros.require_tenant()
      AND (count_event_log.event_type IS NULL OR l.event_type = count_event_log.event_type)
      AND (since IS NULL OR l.occurred_at >= since)
    GROUP BY l.event_type ORDER BY l.event_type
$$;
COMMENT ON FUNCTION ventros.count_event_log(text, timestamptz) IS 'Activity counts per type';

GRANT EXECUTE ON FUNCTION ventros.list_event_log(uuid, uuid, text, timestamptz, timestamptz, timestamptz, uuid, integer),
    ventros.count_event_log(text, timestamptz) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.event_log_sequence(text, uuid),
    ventros.append_event_log(text, jsonb, text, uuid, uuid, uuid, text, uuid, timestamptz),
    ventros.attach_event_log(uuid, uuid, uuid, uuid)
    TO ventros_agent;

-- Direct writes of event_log by tenant roles: the same as the first
-- command named, or refused naming them (docs/sql.md, "Direct writes").
SELECT ventros.register_writes('event_log', inserts => '{append_event_log}', updates => '{}', deletes => '{}');
