-- Aggregate 16, MessageGroup (CRM): a debounce batch of consecutive inbound
-- messages of one contact on one channel, handed to the AI agent as one unit
-- (agent_ai_interactions, a child aggregate).
--   pending -> processing -> completed; pending | processing -> expired.
-- Messages join only a pending group, each one pushing expires_at to its
-- time plus the channel's debounce_timeout_ms; processing starts once a
-- pending group is past expires_at.  One pending group per (contact,
-- channel) is a partial unique index; two first messages racing open one
-- group (ON CONFLICT), then both append under its row lock.

CREATE TABLE ventros.message_groups (
    id           uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id    text        NOT NULL,
    version      integer     NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz,
    contact_id   uuid        NOT NULL,
    channel_id   uuid        NOT NULL,
    session_id   uuid        NOT NULL,
    message_ids  uuid[]      NOT NULL DEFAULT '{}',
    status       text        NOT NULL DEFAULT 'pending',
    started_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES ventros.contacts (tenant_id, id),
    FOREIGN KEY (tenant_id, channel_id) REFERENCES ventros.channels (tenant_id, id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES ventros.sessions (tenant_id, id),
    CONSTRAINT message_groups_status_known CHECK (status IN ('pending', 'processing', 'completed', 'expired')),
    CONSTRAINT message_groups_ids_distinct CHECK (ventros.is_distinct_array(message_ids::text[]))
);
CREATE UNIQUE INDEX message_groups_one_pending ON ventros.message_groups (tenant_id, contact_id, channel_id)
    WHERE status = 'pending' AND deleted_at IS NULL;
CREATE INDEX message_groups_due ON ventros.message_groups (tenant_id, expires_at) WHERE status = 'pending';
CREATE INDEX message_groups_by_session ON ventros.message_groups (tenant_id, session_id);
COMMENT ON TABLE ventros.message_groups IS 'MessageGroup: a debounce batch of inbound messages for the AI agent';

CREATE TABLE ventros.agent_ai_interactions (
    id                   uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id            text        NOT NULL,
    version              integer     NOT NULL DEFAULT 1,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    deleted_at           timestamptz,
    group_id             uuid        NOT NULL,
    session_id           uuid        NOT NULL,
    contact_id           uuid        NOT NULL,
    channel_id           uuid        NOT NULL,
    concatenated_content text        NOT NULL,
    message_count        integer     NOT NULL DEFAULT 0,
    enrichment_count     integer     NOT NULL DEFAULT 0,
    sent_to_ai           boolean     NOT NULL DEFAULT false,
    ai_response          text,
    ai_provider          text,
    ai_model             text,
    processing_time_ms   integer,
    sent_at              timestamptz,
    response_received_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, group_id) REFERENCES ventros.message_groups (tenant_id, id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES ventros.sessions (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES ventros.contacts (tenant_id, id),
    FOREIGN KEY (tenant_id, channel_id) REFERENCES ventros.channels (tenant_id, id),
    CONSTRAINT agent_ai_interactions_counts CHECK (message_count >= 0 AND enrichment_count >= 0 AND processing_time_ms >= 0),
    CONSTRAINT agent_ai_interactions_sizes CHECK (length(concatenated_content) <= 65536 AND length(ai_response) <= 65536)
);
CREATE UNIQUE INDEX agent_ai_interactions_one_per_group ON ventros.agent_ai_interactions (tenant_id, group_id) WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.agent_ai_interactions IS 'The hand-off of a message group to the AI agent, and its answer';

SELECT ventros.register_aggregate('message_group', 'ventros.message_groups', 'crm',
    state_column => 'status',
    transitions => '[
        {"from": null, "to": "pending"},
        {"from": "pending", "to": "processing", "event": "message_group.processing_started", "description": "A message group was handed to processing."},
        {"from": "processing", "to": "completed", "event": "message_group.completed", "description": "A message group was processed by the AI agent."},
        {"from": "pending", "to": "expired", "event": "message_group.expired", "description": "A message group expired unprocessed."},
        {"from": "processing", "to": "expired", "event": "message_group.expired"}
    ]',
    description => 'A debounce batch of inbound messages');
SELECT ventros.register_aggregate('agent_ai_interaction', 'ventros.agent_ai_interactions', 'crm',
    description => 'The AI hand-off of a message group (child of message_group)');
SELECT ventros.register_event_type('message_group.message_added', 'An inbound message joined a pending message group.');

-- add_message_to_group: the message's pending group, opened when there is none.
CREATE FUNCTION ventros.add_message_to_group(message_id uuid)
RETURNS ventros.message_groups
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    m ventros.messages;
    debounce integer;
    due timestamptz;
    g ventros.message_groups;
BEGIN
    SELECT * INTO m FROM ventros.messages x WHERE x.tenant_id = tenant AND x.id = message_id;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('message', message_id);
    END IF;
    IF m.from_me THEN
        RAISE EXCEPTION 'message % is outbound; groups hold inbound messages', message_id USING ERRCODE = '22023';
    END IF;
    IF m.session_id IS NULL THEN
        RAISE EXCEPTION 'message % has no session', message_id USING ERRCODE = '23502';
    END IF;
    SELECT c.debounce_timeout_ms INTO debounce FROM ventros.channels c WHERE c.tenant_id = tenant AND c.id = m.channel_id;
    due := greatest(m."timestamp", now()) + make_interval(secs => debounce / 1000.0);
    INSERT INTO ventros.message_groups (contact_id, channel_id, session_id, message_ids, expires_at)
    VALUES (m.contact_id, m.channel_id, m.session_id, ARRAY[m.id], due)
    ON CONFLICT (tenant_id, contact_id, channel_id) WHERE status = 'pending' AND deleted_at IS NULL DO NOTHING
    RETURNING * INTO g;
    IF g.id IS NOT NULL THEN
        RETURN g;               -- a new group: message_group.created carries the message
    END IF;
    SELECT * INTO g FROM ventros.message_groups x
    WHERE x.tenant_id = tenant AND x.contact_id = m.contact_id AND x.channel_id = m.channel_id AND x.status = 'pending'
    FOR UPDATE;
    IF m.id = ANY (g.message_ids) THEN
        RETURN g;               -- added already: nothing happens
    END IF;
    UPDATE ventros.message_groups x SET message_ids = x.message_ids || m.id, expires_at = greatest(x.expires_at, due), version = x.version
    WHERE x.tenant_id = tenant AND x.id = g.id RETURNING * INTO g;
    PERFORM ventros.emit('message_group.message_added', 'message_group', g.id,
        jsonb_build_object('message_id', m.id, 'message_count', cardinality(g.message_ids), 'expires_at', g.expires_at), g.version);
    RETURN g;
END
$$;
COMMENT ON FUNCTION ventros.add_message_to_group(uuid) IS
    'Adds an inbound message to its contact''s pending group on the channel, opening one if needed (outbound: 22023; idempotent); emits message_group.created or message_group.updated and message_group.message_added';

CREATE FUNCTION ventros.start_message_group_processing(message_group_id uuid, expected_version integer, now timestamptz DEFAULT now())
RETURNS ventros.message_groups
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g ventros.message_groups;
BEGIN
    SELECT * INTO g FROM ventros.message_groups x WHERE x.tenant_id = ventros.require_tenant() AND x.id = message_group_id;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('message group', message_group_id);
    END IF;
    IF g.status = 'pending' AND g.expires_at > start_message_group_processing.now THEN
        RAISE EXCEPTION 'message group % is still collecting until %', message_group_id, g.expires_at USING ERRCODE = '55000';
    END IF;
    RETURN ventros.change_row(NULL::ventros.message_groups, 'message group', message_group_id, expected_version, '{"status": "processing"}');
END
$$;
COMMENT ON FUNCTION ventros.start_message_group_processing(uuid, integer, timestamptz) IS
    'Starts processing a pending group past its expires_at (55000 before); emits message_group.processing_started';

CREATE FUNCTION ventros.complete_message_group(message_group_id uuid, expected_version integer, concatenated_content text,
                                               ai_response text DEFAULT NULL, ai_provider text DEFAULT NULL,
                                               ai_model text DEFAULT NULL, processing_time_ms integer DEFAULT NULL,
                                               enrichment_count integer DEFAULT 0)
RETURNS ventros.agent_ai_interactions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g ventros.message_groups;
    result ventros.agent_ai_interactions;
BEGIN
    g := ventros.change_row(NULL::ventros.message_groups, 'message group', message_group_id, expected_version,
                            jsonb_build_object('status', 'completed', 'completed_at', now()));
    IF concatenated_content IS NULL THEN
        RAISE EXCEPTION 'concatenated content must not be null' USING ERRCODE = '23502';
    END IF;
    INSERT INTO ventros.agent_ai_interactions (group_id, session_id, contact_id, channel_id, concatenated_content, message_count,
                                               enrichment_count, sent_to_ai, ai_response, ai_provider, ai_model,
                                               processing_time_ms, sent_at, response_received_at)
    VALUES (g.id, g.session_id, g.contact_id, g.channel_id, concatenated_content, cardinality(g.message_ids),
            coalesce(enrichment_count, 0), true, ai_response, ai_provider, ai_model, processing_time_ms, now(),
            CASE WHEN ai_response IS NOT NULL THEN now() END)
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.complete_message_group(uuid, integer, text, text, text, text, integer, integer) IS
    'Completes a processing group and records its AI hand-off; emits message_group.completed and agent_ai_interaction.created';

CREATE FUNCTION ventros.expire_message_group(message_group_id uuid, expected_version integer)
RETURNS ventros.message_groups
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.change_row(NULL::ventros.message_groups, 'message group', message_group_id, expected_version, '{"status": "expired"}') $$;
COMMENT ON FUNCTION ventros.expire_message_group(uuid, integer) IS 'Expires a pending or processing group; emits message_group.expired';

CREATE FUNCTION ventros.tick_message_groups(now timestamptz DEFAULT now(), batch_size integer DEFAULT 100)
RETURNS SETOF ventros.message_groups
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT x.id, x.version FROM ventros.message_groups x
             WHERE x.tenant_id = ventros.require_tenant() AND x.status = 'pending' AND x.expires_at <= tick_message_groups.now
             ORDER BY x.expires_at LIMIT batch_size FOR UPDATE SKIP LOCKED
    LOOP
        RETURN NEXT ventros.start_message_group_processing(g.id, g.version, now);
    END LOOP;
END
$$;
COMMENT ON FUNCTION ventros.tick_message_groups(timestamptz, integer) IS
    'Moves the due pending groups to processing and returns them (SKIP LOCKED); emits message_group.processing_started for each';

CREATE FUNCTION ventros.list_message_groups(status text DEFAULT NULL, session_id uuid DEFAULT NULL, contact_id uuid DEFAULT NULL,
                                            channel_id uuid DEFAULT NULL)
RETURNS SETOF ventros.message_groups
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT g.* FROM ventros.message_groups g
    WHERE g.tenant_id = ventros.require_tenant()
      AND (list_message_groups.status IS NULL OR g.status = list_message_groups.status)
      AND (list_message_groups.session_id IS NULL OR g.session_id = list_message_groups.session_id)
      AND (list_message_groups.contact_id IS NULL OR g.contact_id = list_message_groups.contact_id)
      AND (list_message_groups.channel_id IS NULL OR g.channel_id = list_message_groups.channel_id)
    ORDER BY g.started_at, g.id
    LIMIT current_setting('ventros.max_page_size')::integer
$$;
COMMENT ON FUNCTION ventros.list_message_groups(text, uuid, uuid, uuid) IS
    'Message groups by status, session, contact and channel (the pending one of a contact on a channel)';

GRANT EXECUTE ON FUNCTION ventros.list_message_groups(text, uuid, uuid, uuid) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.add_message_to_group(uuid), ventros.start_message_group_processing(uuid, integer, timestamptz),
    ventros.complete_message_group(uuid, integer, text, text, text, text, integer, integer),
    ventros.expire_message_group(uuid, integer)
    TO ventros_agent;
-- The scheduler's (pg_cron runs it as a platform administrator), never a tenant's:
-- its `now` is the caller's to choose (docs/security.md).
GRANT EXECUTE ON FUNCTION ventros.tick_message_groups(timestamptz, integer) TO ventros_platform_admin;

-- Direct writes of message_group, agent_ai_interaction by tenant roles: the same as the first
-- command named, or refused naming them (docs/sql.md, "Direct writes").
SELECT ventros.register_writes('message_group', inserts => '{add_message_to_group}', updates => '{start_message_group_processing,complete_message_group,expire_message_group}', deletes => '{}');
SELECT ventros.register_writes('agent_ai_interaction', inserts => '{complete_message_group}', updates => '{}', deletes => '{}');
