-- Aggregate 3, Message (CRM): one inbound or outbound message on a channel.
--
-- Status machine: queued -> sent -> delivered -> read -> played with forward
-- skips, queued | sent -> failed, never backwards; played for audio and voice
-- only.  A BEFORE trigger stamps sent_at / delivered_at / read_at / played_at
-- / failed_at on each move (a skip stamps the skipped steps too).
--
-- Idempotency: (tenant, channel, channel_message_id) is unique on live rows;
-- receive_message() returns the existing message for a repeated provider id.
--
-- Paths that write messages: receive_message (inbound: contact upsert by
-- identity, session continue, message, session, contact and channel
-- counters), send_message (outbound: consent, agent rules, session continue,
-- message queued), import_message (history import, idempotent).  Every path
-- refuses an opted-out contact for outbound messages (VN010).

CREATE TABLE ventros.messages (
    id                 uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id          text        NOT NULL,
    version            integer     NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at         timestamptz,
    "timestamp"        timestamptz NOT NULL DEFAULT now(),
    user_id            uuid,
    project_id         uuid        NOT NULL,
    channel_id         uuid        NOT NULL,
    channel_type_id    integer,
    chat_id            uuid,
    session_id         uuid,
    contact_id         uuid        NOT NULL,
    from_me            boolean     NOT NULL DEFAULT false,
    content_type       text        NOT NULL DEFAULT 'text',
    text               text,
    media_url          text,
    media_mimetype     text,
    channel_message_id text,
    reply_to_id        uuid,
    status             text        NOT NULL DEFAULT 'sent',
    language           text,
    agent_id           uuid,
    source             text        NOT NULL DEFAULT 'manual',
    metadata           jsonb,
    mentions           text[]      NOT NULL DEFAULT '{}',
    sent_at            timestamptz,
    delivered_at       timestamptz,
    read_at            timestamptz,
    played_at          timestamptz,
    failed_at          timestamptz,
    error              text,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id),
    FOREIGN KEY (tenant_id, channel_id) REFERENCES ventros.channels (tenant_id, id) ON DELETE RESTRICT,
    FOREIGN KEY (tenant_id, chat_id) REFERENCES ventros.chats (tenant_id, id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES ventros.sessions (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES ventros.contacts (tenant_id, id),
    FOREIGN KEY (tenant_id, reply_to_id) REFERENCES ventros.messages (tenant_id, id),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES ventros.agents (tenant_id, id),
    CONSTRAINT messages_content_type_known CHECK (content_type IN ('text', 'image', 'video', 'audio', 'voice', 'document',
                                                                   'location', 'contact', 'sticker', 'system')),
    CONSTRAINT messages_status_known CHECK (status IN ('queued', 'sent', 'delivered', 'read', 'played', 'failed')),
    CONSTRAINT messages_source_known CHECK (source IN ('manual', 'broadcast', 'sequence', 'trigger', 'bot', 'system',
                                                       'webhook', 'scheduled', 'test', 'history_import')),
    CONSTRAINT messages_text_size CHECK (length(text) <= 4096),
    CONSTRAINT messages_text_required CHECK (content_type NOT IN ('text', 'system') OR (text IS NOT NULL AND text <> '')),
    CONSTRAINT messages_media_required CHECK (content_type NOT IN ('image', 'video', 'audio', 'voice', 'document', 'sticker')
                                              OR media_url IS NOT NULL),
    CONSTRAINT messages_media_url_valid CHECK (media_url ~ '^https?://[^\s]+$' AND length(media_url) <= 2048),
    CONSTRAINT messages_outbound_agent CHECK (NOT from_me OR agent_id IS NOT NULL),
    CONSTRAINT messages_played_audio CHECK (status <> 'played' OR content_type IN ('audio', 'voice'))
);
CREATE UNIQUE INDEX messages_unique_channel_message_id ON ventros.messages (tenant_id, channel_id, channel_message_id)
    WHERE deleted_at IS NULL AND channel_message_id IS NOT NULL;
CREATE INDEX messages_by_session ON ventros.messages (tenant_id, session_id, "timestamp", id);
CREATE INDEX messages_by_contact ON ventros.messages (tenant_id, contact_id, "timestamp" DESC, id DESC);
-- Full-text and trigram indexes: sql/82_search.sql.
COMMENT ON TABLE ventros.messages IS 'Message: one inbound or outbound message on a channel';

SELECT ventros.register_aggregate('message', 'ventros.messages', 'crm',
    state_column => 'status',
    transitions => '[
        {"from": null, "to": "queued", "event": "message.created", "description": "A message was created (received, queued to send, or imported)."},
        {"from": null, "to": "sent", "event": "message.created"},
        {"from": null, "to": "delivered", "event": "message.created"},
        {"from": null, "to": "read", "event": "message.created"},
        {"from": "queued", "to": "sent", "event": "message.sent", "description": "The provider accepted an outbound message."},
        {"from": "queued", "to": "delivered", "event": "message.delivered", "description": "A message reached the recipient''s device."},
        {"from": "sent", "to": "delivered", "event": "message.delivered"},
        {"from": "queued", "to": "read", "event": "message.read", "description": "A message was read."},
        {"from": "sent", "to": "read", "event": "message.read"},
        {"from": "delivered", "to": "read", "event": "message.read"},
        {"from": "queued", "to": "played", "event": "message.played", "description": "An audio or voice message was played."},
        {"from": "sent", "to": "played", "event": "message.played"},
        {"from": "delivered", "to": "played", "event": "message.played"},
        {"from": "read", "to": "played", "event": "message.played"},
        {"from": "queued", "to": "failed", "event": "message.failed", "description": "Sending a message failed."},
        {"from": "sent", "to": "failed", "event": "message.failed"}
    ]',
    description => 'One inbound or outbound message on a channel');
SELECT ventros.register_event_type(e, d) FROM (VALUES
    ('message.image_processing_requested', 'AI processing of an inbound image was requested.'),
    ('message.video_processing_requested', 'AI processing of an inbound video was requested.'),
    ('message.audio_processing_requested', 'AI transcription of an inbound audio was requested.'),
    ('message.voice_processing_requested', 'AI transcription of an inbound voice note was requested.')) v(e, d);

-- Channels, contacts and chats: counters and marks kept by every message.
SELECT ventros.register_quiet_columns('channel', '{messages_received,messages_sent,last_message_at}');
SELECT ventros.register_quiet_columns('contact', '{first_interaction_at,last_interaction_at}');

CREATE FUNCTION ventros.stamp_message_status() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    at timestamptz := clock_timestamp();
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.status IS NOT DISTINCT FROM OLD.status THEN
        RETURN NEW;
    END IF;
    IF NEW.status IN ('sent', 'delivered', 'read', 'played') AND NEW.from_me THEN
        NEW.sent_at := coalesce(NEW.sent_at, at);
    END IF;
    IF NEW.status IN ('delivered', 'read', 'played') THEN
        NEW.delivered_at := coalesce(NEW.delivered_at, at);
    END IF;
    IF NEW.status IN ('read', 'played') THEN
        NEW.read_at := coalesce(NEW.read_at, at);
    END IF;
    IF NEW.status = 'played' THEN
        NEW.played_at := coalesce(NEW.played_at, at);
    END IF;
    IF NEW.status = 'failed' THEN
        NEW.failed_at := coalesce(NEW.failed_at, at);
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION ventros.stamp_message_status() IS
    'Trigger: stamps the *_at column of each status a message reaches (skipped steps included)';
CREATE TRIGGER messages_stamp_status BEFORE INSERT OR UPDATE OF status ON ventros.messages
    FOR EACH ROW EXECUTE FUNCTION ventros.stamp_message_status();

-- Which identity type a channel kind delivers senders as.
CREATE FUNCTION ventros.sender_identity_type(channel_type text, sender text) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE
        WHEN sender LIKE '%@lid' THEN 'whatsapp_lid'
        WHEN sender LIKE '%@c.us' OR sender LIKE '%@s.whatsapp.net' THEN 'whatsapp'
        WHEN channel_type = 'messenger' THEN 'psid'
        WHEN channel_type = 'instagram' THEN 'igsid'
        WHEN channel_type = 'telegram' THEN 'telegram'
        WHEN sender LIKE '%@%' THEN 'email'
        WHEN sender ~ '^\+?[0-9 ()-]{8,20}$' THEN 'phone'
        ELSE 'external' END
$$;
COMMENT ON FUNCTION ventros.sender_identity_type(text, text) IS
    'The identity type of an inbound sender id on a channel kind (WhatsApp @c.us / @lid, PSID, IGSID, phone, ...)';

-- upsert_contact_by_identity: the contact holding an identity, created with
-- it when there is none.  A lock on the identity within the tenant
-- (ventros.lock_tenant_key, sql/03_locks.sql) serialises two first messages
-- of one new sender, so only one contact is created.
CREATE FUNCTION ventros.upsert_contact_by_identity(identity_type text, sender text, name text DEFAULT NULL,
                                                   project_id uuid DEFAULT NULL, channel_id uuid DEFAULT NULL,
                                                   source_channel text DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    norm_value text := ventros.normalize_identity(identity_type, sender);
    found_id uuid;
    phone_e164 text;
    c ventros.contacts;
BEGIN
    IF norm_value IS NULL THEN
        RAISE EXCEPTION 'unknown identity type "%"', left(identity_type, 32) USING ERRCODE = '22023';
    END IF;
    -- (the lookup of find_contact_by_identity, inline: the hot path of every inbound message)
    SELECT i.contact_id INTO found_id FROM ventros.contact_identities i
    WHERE i.tenant_id = tenant AND i.identity_type = upsert_contact_by_identity.identity_type AND i.value = norm_value
      AND i.deleted_at IS NULL
    ORDER BY i.created_at, i.contact_id LIMIT 1;
    IF found_id IS NOT NULL THEN
        RETURN found_id;
    END IF;
    PERFORM ventros.lock_tenant_key('identity/' || identity_type || '/' || norm_value);
    found_id := ventros.find_contact_by_identity(identity_type, norm_value);
    IF found_id IS NOT NULL THEN
        RETURN found_id;
    END IF;
    phone_e164 := CASE WHEN identity_type = 'phone' THEN norm_value
                  WHEN identity_type = 'whatsapp' THEN '+' || split_part(norm_value, '@', 1) END;
    -- A contact with that phone but without the identity yet.
    IF phone_e164 IS NOT NULL THEN
        SELECT x.id INTO found_id FROM ventros.contacts x
        WHERE x.tenant_id = tenant AND x.project_id = coalesce(upsert_contact_by_identity.project_id, ventros.default_project())
          AND x.phone = phone_e164 AND x.deleted_at IS NULL;
    END IF;
    IF found_id IS NULL THEN
        c := ventros.create_contact(coalesce(nullif(btrim(name), ''), sender), phone => phone_e164,
                                    email => CASE WHEN identity_type = 'email' THEN norm_value END,
                                    project_id => project_id, source_channel => source_channel);
        found_id := c.id;
    END IF;
    PERFORM ventros.add_contact_identity(found_id, identity_type, norm_value, channel_id);
    RETURN found_id;
END
$$;
COMMENT ON FUNCTION ventros.upsert_contact_by_identity(text, text, text, uuid, uuid, text) IS
    'The contact holding an identity, else one with its phone, else a new contact; race-free per identity (a tenant key lock); emits contact.created and contact_identity.created for a new sender';

-- record_new_messages: what every inserted message does to its session,
-- contact and chat, done by the statement that inserts it, whoever inserts it
-- and however (a send, a broadcast's set, an inbound message, an import):
-- the session's counters, response times, last activity and expiry
-- (record_session_messages: session.message_recorded), the contact's
-- interaction times, the chat's last message; one statement per table for
-- the set.  As the owner: tenant roles write messages through commands but
-- may not record them (record_session_messages is no tenant role's to call,
-- or an agent could record messages that were never written and forge a
-- session's counters and first-response times; docs/security.md).  The
-- writer holds the sessions' row locks (start_or_continue_sessions).  Several
-- messages of one session in a statement are recorded one round each, in
-- order.  Channels count their messages in their own trigger
-- (count_new_messages, 40_messages_counts.sql).
CREATE FUNCTION ventros.record_new_messages() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    ms ventros.messages[] := ARRAY(SELECT m FROM new_messages m);
    sessions ventros.sessions[];
    from_me boolean[];
    ats timestamptz[];
    ids uuid[];
    rounds integer;
BEGIN
    PERFORM ventros.plan_for_set(cardinality(ms));
    SELECT max(x.n) INTO rounds
    FROM (SELECT count(*) AS n FROM unnest(ms) m WHERE m.session_id IS NOT NULL GROUP BY m.session_id) x;
    FOR round IN 1..coalesce(rounds, 0) LOOP
        SELECT array_agg(s ORDER BY s.id), array_agg(m.from_me ORDER BY s.id), array_agg(m."timestamp" ORDER BY s.id),
               array_agg(m.id ORDER BY s.id)
        INTO sessions, from_me, ats, ids
        FROM (SELECT m.*, row_number() OVER (PARTITION BY m.session_id ORDER BY m."timestamp", m.id) AS nth
              FROM unnest(ms) m) m
        JOIN ventros.sessions s ON s.tenant_id = m.tenant_id AND s.id = m.session_id
        WHERE m.nth = round;
        IF sessions IS NOT NULL THEN
            PERFORM ventros.record_session_messages(sessions, from_me, ats, ids);
        END IF;
    END LOOP;
    -- Interaction times are kept to the minute: a burst of messages writes
    -- the contact once (the session and the message hold the exact times).
    UPDATE ventros.contacts c
    SET first_interaction_at = coalesce(c.first_interaction_at, m.first_at),
        last_interaction_at = greatest(c.last_interaction_at, m.last_at), version = c.version
    FROM (SELECT m.tenant_id, m.contact_id, min(m."timestamp") AS first_at, max(m."timestamp") AS last_at
          FROM unnest(ms) m GROUP BY 1, 2) m
    WHERE c.tenant_id = m.tenant_id AND c.id = m.contact_id
      AND (c.last_interaction_at IS NULL OR c.last_interaction_at < m.last_at - interval '1 minute'
           OR c.first_interaction_at > m.first_at);
    UPDATE ventros.chats c SET last_message_at = greatest(c.last_message_at, m.last_at), version = c.version
    FROM (SELECT m.tenant_id, m.chat_id, max(m."timestamp") AS last_at FROM unnest(ms) m
          WHERE m.chat_id IS NOT NULL GROUP BY 1, 2) m
    WHERE c.tenant_id = m.tenant_id AND c.id = m.chat_id;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.record_new_messages() IS
    'AFTER INSERT statement trigger of ventros.messages: records the inserted messages on their sessions (locked by the writer; counters, first response, last activity, expiry: session.message_recorded), contacts (interaction times) and chats, as the owner';
CREATE TRIGGER messages_recorded AFTER INSERT ON ventros.messages
    REFERENCING NEW TABLE AS new_messages FOR EACH STATEMENT EXECUTE FUNCTION ventros.record_new_messages();

-- receive_message: the inbound pipeline, in one transaction.
CREATE FUNCTION ventros.receive_message(
    channel_id         uuid,
    sender             text,
    text               text        DEFAULT NULL,
    content_type       text        DEFAULT 'text',
    channel_message_id text        DEFAULT NULL,
    sent_at            timestamptz DEFAULT NULL,
    sender_name        text        DEFAULT NULL,
    media_url          text        DEFAULT NULL,
    media_mimetype     text        DEFAULT NULL,
    metadata           jsonb       DEFAULT NULL,
    chat_id            uuid        DEFAULT NULL)
RETURNS ventros.messages
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    tenant text := ventros.require_tenant();
    ch ventros.channels;
    contact uuid;
    s ventros.sessions;
    result ventros.messages;
    at timestamptz := coalesce(sent_at, now());
BEGIN
    IF sender IS NULL OR btrim(sender) = '' THEN
        RAISE EXCEPTION 'sender of an inbound message must not be empty' USING ERRCODE = '23502';
    END IF;
    SELECT * INTO ch FROM ventros.channels c WHERE c.tenant_id = tenant AND c.id = receive_message.channel_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'channel % not found', channel_id USING ERRCODE = 'P0002';
    END IF;
    IF channel_message_id IS NOT NULL THEN
        SELECT * INTO result FROM ventros.messages m
        WHERE m.tenant_id = tenant AND m.channel_id = ch.id AND m.channel_message_id = receive_message.channel_message_id
          AND m.deleted_at IS NULL;
        IF FOUND THEN
            RETURN result;      -- a repeated webhook: nothing happens
        END IF;
    END IF;
    contact := ventros.upsert_contact_by_identity(ventros.sender_identity_type(ch.type, sender), sender, sender_name,
                                                  ch.project_id, ch.id, ch.type);
    -- a reply exits sequences and converts campaigns (before the session: the lock order of a tick)
    PERFORM ventros.journey_reply(contact, at);
    s := ventros.start_or_continue_session(contact, ch.id, at);
    IF s.message_count = 0 AND s.assigned_agent_id IS NULL AND s.team_id IS NULL AND ch.team_id IS NOT NULL THEN
        s := ventros.auto_assign_session(s, at);     -- a new inbound session: the channel's rule
    END IF;
    INSERT INTO ventros.messages ("timestamp", project_id, channel_id, channel_type_id, chat_id, session_id, contact_id,
                                  from_me, content_type, text, media_url, media_mimetype, channel_message_id, status,
                                  source, metadata)
    VALUES (at, ch.project_id, ch.id, s.channel_type_id, chat_id, s.id, contact, false, coalesce(content_type, 'text'),
            ventros.check_length(text, 4096, 'message text'), media_url, media_mimetype, channel_message_id, 'delivered',
            'manual', metadata)
    ON CONFLICT (tenant_id, channel_id, channel_message_id) WHERE deleted_at IS NULL AND channel_message_id IS NOT NULL
    DO NOTHING
    RETURNING * INTO result;
    IF result.id IS NULL THEN
        -- The same provider message was stored by a concurrent transaction.
        SELECT * INTO result FROM ventros.messages m
        WHERE m.tenant_id = tenant AND m.channel_id = ch.id AND m.channel_message_id = receive_message.channel_message_id
          AND m.deleted_at IS NULL;
        RETURN result;
    END IF;
    IF ch.ai_enabled AND result.content_type IN ('image', 'video', 'audio', 'voice')
       AND coalesce((ch.config->'ai'->>result.content_type)::boolean, false) THEN
        PERFORM ventros.emit('message.' || result.content_type || '_processing_requested', 'message', result.id,
                             jsonb_build_object('session_id', s.id, 'media_url', result.media_url,
                                                'media_mimetype', result.media_mimetype), result.version);
    END IF;
    RETURN result;
EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION 'invalid inbound message: %', SQLERRM USING ERRCODE = '23514';
END
$$;
COMMENT ON FUNCTION ventros.receive_message(uuid, text, text, text, text, timestamptz, text, text, text, jsonb, uuid) IS
    'Inbound message: contact by sender identity (created if new), its journeys told of the reply (ventros.journey_reply), session started or continued (a new one assigned by its channel''s rule), message stored (idempotent on channel_message_id), counters kept; emits message.created, session.message_recorded (and contact.created, session.started, session.agent_assigned or session.queued, message.*_processing_requested, sequence.enrollment_exited, campaign.contact_converted when they apply)';

-- The outcome of one send of a set (send_messages, queue_message_sends):
-- what was done, or why it was refused (the error the one-row form raises,
-- as data, so that one contact of a batch fails alone).
CREATE TYPE ventros.message_send AS (
    contact_id   uuid,
    message      ventros.messages,
    request_id   uuid,
    error_code   text,
    error        text,
    error_detail text,
    error_hint   text
);
COMMENT ON TYPE ventros.message_send IS
    'One send of a set (ventros.send_messages, ventros.queue_message_sends): the contact, its queued message and provider request, or the refusal (SQLSTATE, message, detail, hint)';

-- A refusal raised as it was caught.
CREATE FUNCTION ventros.raise_refusal(r ventros.message_send) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF r.error_code IS NULL THEN
        RETURN;
    ELSIF r.error_detail IS NOT NULL AND r.error_hint IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = r.error_code, MESSAGE = r.error, DETAIL = r.error_detail, HINT = r.error_hint;
    ELSIF r.error_detail IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = r.error_code, MESSAGE = r.error, DETAIL = r.error_detail;
    ELSIF r.error_hint IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = r.error_code, MESSAGE = r.error, HINT = r.error_hint;
    ELSE
        RAISE EXCEPTION USING ERRCODE = r.error_code, MESSAGE = r.error;
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.raise_refusal(ventros.message_send) IS
    'Raises the refusal of a send (its SQLSTATE, message, detail and hint); nothing when it was not refused';

-- send_message: an outbound message, queued for the channel's sender: the
-- one-contact case of ventros.send_messages (sql/90_channel_send.sql), which
-- holds the rules of every send; a refusal is raised.
CREATE FUNCTION ventros.send_message(
    channel_id   uuid,
    contact_id   uuid,
    text         text    DEFAULT NULL,
    agent_id     uuid    DEFAULT NULL,
    source       text    DEFAULT 'manual',
    content_type text    DEFAULT 'text',
    media_url    text    DEFAULT NULL,
    media_mimetype text  DEFAULT NULL,
    reply_to_id  uuid    DEFAULT NULL,
    chat_id      uuid    DEFAULT NULL,
    metadata     jsonb   DEFAULT NULL,
    template_name       text  DEFAULT NULL,
    template_language   text  DEFAULT NULL,
    template_components jsonb DEFAULT NULL)
RETURNS ventros.messages
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ventros.message_send;
BEGIN
    SELECT * INTO r FROM ventros.send_messages(channel_id, ARRAY[contact_id], text, agent_id, source, content_type,
                                               media_url, media_mimetype, reply_to_id, chat_id, metadata,
                                               template_name, template_language, template_components) x;
    PERFORM ventros.raise_refusal(r);
    RETURN r.message;
END
$$;
COMMENT ON FUNCTION ventros.send_message(uuid, uuid, text, uuid, text, text, text, text, uuid, uuid, jsonb, text, text, jsonb) IS
    'Outbound message, queued for the channel with its provider request (message.send, when the channel type is declared and configured): refuses opted-out contacts (VN010), virtual or inactive agents (22023), free-form WhatsApp Cloud messages outside the 24-hour window (22023) and templates that do not match their definition (22023, P0002); automated sources send as their system agent; emits message.created and session.message_recorded';

-- confirm_message_status: a provider acknowledgement (by message id, or by
-- channel and provider id).  Repeats and late acks of an earlier status are
-- no-ops; backwards moves other than those are VN002 by the state machine.
CREATE FUNCTION ventros.confirm_message_status(status text, message_id uuid DEFAULT NULL, channel_id uuid DEFAULT NULL,
                                               channel_message_id text DEFAULT NULL, error text DEFAULT NULL)
RETURNS ventros.messages
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    m ventros.messages;
    result ventros.messages;
    rank CONSTANT text[] := ARRAY['queued', 'sent', 'delivered', 'read', 'played'];
BEGIN
    IF status IS NULL OR status NOT IN ('sent', 'delivered', 'read', 'played', 'failed') THEN
        RAISE EXCEPTION 'unknown confirmation status "%"', left(status, 32) USING ERRCODE = '22023',
            HINT = 'Use sent, delivered, read, played or failed.';
    END IF;
    IF message_id IS NOT NULL THEN
        SELECT * INTO m FROM ventros.messages x WHERE x.tenant_id = tenant AND x.id = message_id FOR UPDATE;
    ELSIF channel_id IS NOT NULL AND channel_message_id IS NOT NULL THEN
        SELECT * INTO m FROM ventros.messages x
        WHERE x.tenant_id = tenant AND x.channel_id = confirm_message_status.channel_id
          AND x.channel_message_id = confirm_message_status.channel_message_id AND x.deleted_at IS NULL FOR UPDATE;
    ELSE
        RAISE EXCEPTION 'confirm a message by its id or by channel and provider id' USING ERRCODE = '22023';
    END IF;
    IF m.id IS NULL THEN
        RAISE EXCEPTION 'message % not found', coalesce(message_id::text, channel_message_id) USING ERRCODE = 'P0002';
    END IF;
    IF m.status = status OR (status <> 'failed' AND m.status <> 'failed'
                             AND array_position(rank, status) < array_position(rank, m.status)) THEN
        RETURN m;   -- a repeated or late acknowledgement
    END IF;
    UPDATE ventros.messages x
    SET status = confirm_message_status.status,
        error = CASE WHEN confirm_message_status.status = 'failed' THEN confirm_message_status.error ELSE x.error END,
        version = m.version
    WHERE x.tenant_id = m.tenant_id AND x.id = m.id
    RETURNING * INTO result;
    RETURN result;
EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION 'message % cannot be %', m.id, status USING ERRCODE = '23514',
        DETAIL = 'Only audio and voice messages are played.';
END
$$;
COMMENT ON FUNCTION ventros.confirm_message_status(text, uuid, uuid, text, text) IS
    'Provider confirmation of a message (sent, delivered, read, played, failed), by id or by (channel, provider id); late or repeated acks change nothing, a failed message stays failed (VN002); emits message.sent / .delivered / .read / .played / .failed';

-- mark_message_sent: the channel's sender reports the provider's id.
CREATE FUNCTION ventros.mark_message_sent(message_id uuid, channel_message_id text)
RETURNS ventros.messages
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m ventros.messages;
BEGIN
    SELECT * INTO m FROM ventros.messages x WHERE x.tenant_id = ventros.require_tenant() AND x.id = message_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'message % not found', message_id USING ERRCODE = 'P0002';
    END IF;
    UPDATE ventros.messages x SET status = 'sent', channel_message_id = mark_message_sent.channel_message_id, version = m.version
    WHERE x.tenant_id = m.tenant_id AND x.id = m.id RETURNING * INTO m;
    RETURN m;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'provider message id % is already used on this channel', channel_message_id USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.mark_message_sent(uuid, text) IS
    'Marks a queued message sent with the provider''s message id (VN002 unless queued); emits message.sent';

-- import_message: history import, idempotent on the provider id; no consent
-- check (nothing is sent), sessions are continued in time order.
CREATE FUNCTION ventros.import_message(channel_id uuid, contact_id uuid, from_me boolean, "timestamp" timestamptz,
                                       channel_message_id text, text text DEFAULT NULL, content_type text DEFAULT 'text',
                                       media_url text DEFAULT NULL, agent_id uuid DEFAULT NULL)
RETURNS ventros.messages
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    tenant text := ventros.require_tenant();
    ch ventros.channels;
    s ventros.sessions;
    result ventros.messages;
BEGIN
    IF channel_message_id IS NULL OR "timestamp" IS NULL OR from_me IS NULL THEN
        RAISE EXCEPTION 'an imported message needs from_me, timestamp and its provider id' USING ERRCODE = '23502';
    END IF;
    SELECT * INTO ch FROM ventros.channels c WHERE c.tenant_id = tenant AND c.id = import_message.channel_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'channel % not found', channel_id USING ERRCODE = 'P0002';
    END IF;
    SELECT * INTO result FROM ventros.messages m
    WHERE m.tenant_id = tenant AND m.channel_id = ch.id AND m.channel_message_id = import_message.channel_message_id AND m.deleted_at IS NULL;
    IF FOUND THEN
        RETURN result;
    END IF;
    s := ventros.start_or_continue_session(contact_id, ch.id, "timestamp");
    INSERT INTO ventros.messages ("timestamp", project_id, channel_id, channel_type_id, session_id, contact_id, from_me,
                                  content_type, text, media_url, channel_message_id, status, agent_id, source)
    VALUES ("timestamp", ch.project_id, ch.id, s.channel_type_id, s.id, contact_id, from_me, content_type,
            ventros.check_length(text, 4096, 'message text'), media_url, channel_message_id, 'delivered',
            CASE WHEN from_me THEN coalesce(agent_id, ch.default_agent_id, ventros.system_agent_id('default')) END,
            'history_import')
    ON CONFLICT (tenant_id, channel_id, channel_message_id) WHERE deleted_at IS NULL AND channel_message_id IS NOT NULL
    DO NOTHING
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.import_message(uuid, uuid, boolean, timestamptz, text, text, text, text, uuid) IS
    'Imports one historical message (idempotent on channel_message_id; outbound ones sent by the channel''s default agent or the default system agent); emits message.created';

CREATE FUNCTION ventros.delete_message(message_id uuid, expected_version integer DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.delete_row('ventros.messages', 'message', message_id, expected_version) $$;
COMMENT ON FUNCTION ventros.delete_message(uuid, integer) IS 'Soft-deletes a message; emits message.deleted';

CREATE FUNCTION ventros.get_message(message_id uuid) RETURNS ventros.messages
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.get_row(NULL::ventros.messages, 'message', message_id) $$;
COMMENT ON FUNCTION ventros.get_message(uuid) IS 'A live message of the acting tenant, or P0002';

GRANT EXECUTE ON FUNCTION ventros.sender_identity_type(text, text), ventros.get_message(uuid),
    ventros.raise_refusal(ventros.message_send) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.upsert_contact_by_identity(text, text, text, uuid, uuid, text),
    ventros.receive_message(uuid, text, text, text, text, timestamptz, text, text, text, jsonb, uuid),
    ventros.send_message(uuid, uuid, text, uuid, text, text, text, text, uuid, uuid, jsonb, text, text, jsonb),
    ventros.confirm_message_status(text, uuid, uuid, text, text), ventros.mark_message_sent(uuid, text),
    ventros.import_message(uuid, uuid, boolean, timestamptz, text, text, text, text, uuid) TO ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.delete_message(uuid, integer) TO ventros_admin;

-- Direct writes of message by tenant roles: the same as the first
-- command named, or refused naming them (docs/sql.md, "Direct writes").
SELECT ventros.register_writes('message', inserts => '{send_message,receive_message,import_message}', updates => '{confirm_message_status,mark_message_sent}', deletes => '{delete_message}',
    direct => '{DELETE}');
