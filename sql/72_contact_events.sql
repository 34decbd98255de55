-- Aggregate 12, ContactEvent (CRM): the contact's customer-facing timeline
-- (an ad conversion, a profile-picture update, a note...), pushed to clients
-- in real time.  It is a projection of domain events; the engine still
-- versions it and records its own contact_event.* events, which the
-- real-time push (webhook subscriptions with subscribe_contact_events) reads.

CREATE TABLE ventros.contact_events (
    id                 uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id          text        NOT NULL,
    version            integer     NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at         timestamptz,
    contact_id         uuid        NOT NULL,
    session_id         uuid,
    event_type         text        NOT NULL,
    category           text        NOT NULL DEFAULT 'general',
    priority           text        NOT NULL DEFAULT 'normal',
    title              text,
    description        text,
    payload            jsonb       NOT NULL DEFAULT '{}',
    metadata           jsonb       NOT NULL DEFAULT '{}',
    source             text        NOT NULL DEFAULT 'system',
    triggered_by       uuid,
    integration_source text,
    is_realtime        boolean     NOT NULL DEFAULT true,
    delivered          boolean     NOT NULL DEFAULT false,
    delivered_at       timestamptz,
    read               boolean     NOT NULL DEFAULT false,
    read_at            timestamptz,
    visible_to_client  boolean     NOT NULL DEFAULT true,
    visible_to_agent   boolean     NOT NULL DEFAULT true,
    expires_at         timestamptz,
    occurred_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES ventros.contacts (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, session_id) REFERENCES ventros.sessions (tenant_id, id) ON DELETE SET NULL (session_id),
    FOREIGN KEY (tenant_id, triggered_by) REFERENCES ventros.agents (tenant_id, id) ON DELETE SET NULL (triggered_by),
    CONSTRAINT contact_events_type_format CHECK (event_type ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$' AND length(event_type) <= 120),
    CONSTRAINT contact_events_category_known CHECK (category IN ('general', 'status', 'pipeline', 'assignment', 'tag', 'note',
        'session', 'custom_field', 'system', 'notification', 'tracking')),
    CONSTRAINT contact_events_priority_known CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    CONSTRAINT contact_events_source_known CHECK (source IN ('system', 'agent', 'webhook', 'workflow', 'automation', 'integration')),
    CONSTRAINT contact_events_expiry_after CHECK (expires_at > occurred_at),
    CONSTRAINT contact_events_delivery_marks CHECK ((delivered = (delivered_at IS NOT NULL)) AND (read = (read_at IS NOT NULL))),
    CONSTRAINT contact_events_json_objects CHECK (jsonb_typeof(payload) = 'object' AND jsonb_typeof(metadata) = 'object'),
    CONSTRAINT contact_events_text_sizes CHECK (length(title) <= 500 AND length(description) <= 4000)
);
CREATE INDEX contact_events_by_contact ON ventros.contact_events (tenant_id, contact_id, occurred_at DESC, id DESC)
    WHERE deleted_at IS NULL;
CREATE INDEX contact_events_undelivered ON ventros.contact_events (tenant_id, occurred_at)
    WHERE is_realtime AND NOT delivered AND deleted_at IS NULL;
CREATE INDEX contact_events_by_session ON ventros.contact_events (tenant_id, session_id) WHERE session_id IS NOT NULL;
COMMENT ON TABLE ventros.contact_events IS 'ContactEvent: an entry of a contact''s customer-facing timeline';

SELECT ventros.register_aggregate('contact_event', 'ventros.contact_events', 'crm',
    description => 'An entry of a contact''s customer-facing timeline (a projection)');

CREATE FUNCTION ventros.create_contact_event(contact_id uuid, event_type text, category text DEFAULT 'general',
                                             title text DEFAULT NULL, description text DEFAULT NULL,
                                             payload jsonb DEFAULT '{}', priority text DEFAULT 'normal',
                                             source text DEFAULT 'system', session_id uuid DEFAULT NULL,
                                             triggered_by uuid DEFAULT NULL, visible_to_client boolean DEFAULT true,
                                             expires_at timestamptz DEFAULT NULL, occurred_at timestamptz DEFAULT NULL)
RETURNS ventros.contact_events
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.contact_events;
BEGIN
    PERFORM ventros.get_contact(contact_id);
    IF event_type IS NULL THEN
        RAISE EXCEPTION 'contact event type must not be null' USING ERRCODE = '23502';
    END IF;
    PERFORM ventros.require_value(coalesce(category, 'general'), ARRAY['general', 'status', 'pipeline', 'assignment', 'tag',
        'note', 'session', 'custom_field', 'system', 'notification', 'tracking'], 'contact event category');
    PERFORM ventros.require_value(coalesce(priority, 'normal'), ARRAY['low', 'normal', 'high', 'urgent'], 'contact event priority');
    PERFORM ventros.require_value(coalesce(source, 'system'), ARRAY['system', 'agent', 'webhook', 'workflow', 'automation',
        'integration'], 'contact event source');
    INSERT INTO ventros.contact_events (contact_id, session_id, event_type, category, priority, title, description, payload,
                                        source, triggered_by, visible_to_client, expires_at, occurred_at)
    VALUES (contact_id, session_id, event_type, coalesce(category, 'general'), coalesce(priority, 'normal'),
            ventros.check_length(title, 500, 'contact event title'),
            ventros.check_length(description, 4000, 'contact event description'),
            coalesce(ventros.require_json(payload, 'object', 'contact event payload'), '{}'), coalesce(source, 'system'),
            triggered_by, coalesce(visible_to_client, true), expires_at, coalesce(occurred_at, now()))
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.create_contact_event(uuid, text, text, text, text, jsonb, text, text, uuid, uuid, boolean, timestamptz, timestamptz) IS
    'Adds an entry to a contact''s timeline; emits contact_event.created';

CREATE FUNCTION ventros.mark_contact_event_delivered(contact_event_id uuid) RETURNS ventros.contact_events
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.contact_events;
BEGIN
    -- idempotent: a second delivery keeps the first time
    UPDATE ventros.contact_events e SET delivered = true, delivered_at = coalesce(e.delivered_at, now()), version = e.version
    WHERE e.tenant_id = ventros.require_tenant() AND e.id = contact_event_id
    RETURNING * INTO result;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('contact event', contact_event_id);
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.mark_contact_event_delivered(uuid) IS 'Marks an entry delivered (idempotent); emits contact_event.updated once';

CREATE FUNCTION ventros.mark_contact_event_read(contact_event_id uuid) RETURNS ventros.contact_events
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.contact_events;
BEGIN
    UPDATE ventros.contact_events e
    SET delivered = true, delivered_at = coalesce(e.delivered_at, now()), read = true, read_at = coalesce(e.read_at, now()),
        version = e.version
    WHERE e.tenant_id = ventros.require_tenant() AND e.id = contact_event_id
    RETURNING * INTO result;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('contact event', contact_event_id);
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.mark_contact_event_read(uuid) IS 'Marks an entry read (and delivered; idempotent); emits contact_event.updated once';

CREATE FUNCTION ventros.update_contact_event(contact_event_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.contact_events
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.apply_changes(NULL::ventros.contact_events, 'contact event', contact_event_id, expected_version, changes,
        ARRAY['session_id', 'visible_to_client', 'visible_to_agent', 'expires_at', 'priority', 'metadata'])
$$;
COMMENT ON FUNCTION ventros.update_contact_event(uuid, integer, jsonb) IS
    'Attaches an entry to a session, sets visibility, expiry, priority or metadata; emits contact_event.updated';

CREATE FUNCTION ventros.purge_expired_contact_events(now timestamptz DEFAULT now()) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    SELECT count(*) INTO n FROM ventros.contact_events e
    WHERE e.tenant_id = ventros.require_tenant() AND e.expires_at <= purge_expired_contact_events.now;
    DELETE FROM ventros.contact_events e
    WHERE e.tenant_id = ventros.require_tenant() AND e.expires_at <= purge_expired_contact_events.now;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.purge_expired_contact_events(timestamptz) IS
    'Soft-deletes the acting tenant''s expired entries; emits contact_event.deleted for each; returns how many';

CREATE FUNCTION ventros.list_contact_events(contact_id uuid DEFAULT NULL, session_id uuid DEFAULT NULL,
                                            client_only boolean DEFAULT false, undelivered_only boolean DEFAULT false,
                                            category text DEFAULT NULL, since timestamptz DEFAULT NULL,
                                            before_occurred_at timestamptz DEFAULT NULL, before_id uuid DEFAULT NULL,
                                            page_size integer DEFAULT 50)
RETURNS SETOF ventros.contact_events
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT e.* FROM ventros.contact_events e
    WHERE e.tenant_id = ventros.require_tenant()
      AND (list_contact_events.contact_id IS NULL OR e.contact_id = list_contact_events.contact_id)
      AND (list_contact_events.session_id IS NULL OR e.session_id = list_contact_events.session_id)
      AND (NOT client_only OR e.visible_to_client)
      AND (NOT undelivered_only OR (e.is_realtime AND NOT e.delivered))
      AND (list_contact_events.category IS NULL OR e.category = list_contact_events.category)
      AND (since IS NULL OR e.occurred_at >= since)
      AND (before_id IS NULL OR (e.occurred_at, e.id) < (before_occurred_at, before_id))
      AND (e.expires_at IS NULL OR e.expires_at > now())
    ORDER BY e.occurred_at DESC, e.id DESC
    LIMIT ventros.check_page_size(page_size)
$$;
COMMENT ON FUNCTION ventros.list_contact_events(uuid, uuid, boolean, boolean, text, timestamptz, timestamptz, uuid, integer) IS
    'Unexpired timeline entries, newest first, by contact, session, visibility, delivery or category; keyset paging on (occurred_at, id)';

GRANT EXECUTE ON FUNCTION ventros.list_contact_events(uuid, uuid, boolean, boolean, text, timestamptz, timestamptz, uuid, integer)
    TO ventros_viewer;
GRANT EXECUTE ON FUNCTION
    ventros.create_contact_event(uuid, text, text, text, text, jsonb, text, text, uuid, uuid, boolean, timestamptz, timestamptz),
    ventros.mark_contact_event_delivered(uuid), ventros.mark_contact_event_read(uuid),
    ventros.update_contact_event(uuid, integer, jsonb)
    TO ventros_agent;
-- Maintenance with a clock of its own, for the scheduler and platform administrators.
GRANT EXECUTE ON FUNCTION ventros.purge_expired_contact_events(timestamptz) TO ventros_platform_admin;

-- Direct writes of contact_event by tenant roles: the same as the first
-- command named, or refused naming them (docs/sql.md, "Direct writes").
SELECT ventros.register_writes('contact_event', inserts => '{create_contact_event}', updates => '{update_contact_event,mark_contact_event_delivered,mark_contact_event_read}', deletes => '{}',
    direct => '{UPDATE}',
    update_columns => '{session_id,visible_to_client,visible_to_agent,expires_at,priority,metadata}');
