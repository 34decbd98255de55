-- Aggregate 4, Chat (CRM): a conversation container, one-to-one (individual),
-- a group (a WhatsApp @g.us group) or a broadcast channel.  Participants are
-- the child aggregate chat_participant (a jsonb array in the original).
--
-- Invariants: an individual chat has exactly one contact, no subject and no
-- removals; groups and channels need a subject and a creator; no duplicate
-- live participants; admins only in groups; external_id unique per channel;
-- a closed chat is terminal and immutable (the engine's state machine, and a
-- guard against other changes).

CREATE TABLE ventros.chats (
    id              uuid         NOT NULL DEFAULT gen_random_uuid(),
    tenant_id       text         NOT NULL,
    version         integer      NOT NULL DEFAULT 1,
    created_at      timestamptz  NOT NULL DEFAULT now(),
    updated_at      timestamptz  NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    project_id      uuid         NOT NULL,
    channel_id      uuid,
    chat_type       text         NOT NULL,
    external_id     text,
    subject         varchar(255),
    description     text,
    status          text         NOT NULL DEFAULT 'active',
    created_by      uuid,
    metadata        jsonb,
    custom_fields   jsonb        NOT NULL DEFAULT '{}',
    last_message_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id),
    FOREIGN KEY (tenant_id, channel_id) REFERENCES ventros.channels (tenant_id, id),
    CONSTRAINT chats_type_known CHECK (chat_type IN ('individual', 'group', 'channel')),
    CONSTRAINT chats_status_known CHECK (status IN ('active', 'archived', 'closed')),
    CONSTRAINT chats_subject_rule CHECK (CASE WHEN chat_type = 'individual' THEN subject IS NULL
                                              ELSE btrim(subject) <> '' AND created_by IS NOT NULL END)
);
CREATE UNIQUE INDEX chats_unique_external_id ON ventros.chats (tenant_id, channel_id, external_id)
    WHERE deleted_at IS NULL AND external_id IS NOT NULL;
COMMENT ON TABLE ventros.chats IS 'Chat: a conversation container (individual, group or broadcast channel)';

SELECT ventros.register_aggregate('chat', 'ventros.chats', 'crm',
    state_column => 'status',
    transitions => '[
        {"from": null, "to": "active"},
        {"from": "active", "to": "archived", "event": "chat.archived", "description": "A chat was archived."},
        {"from": "archived", "to": "active", "event": "chat.unarchived", "description": "A chat was unarchived."},
        {"from": "active", "to": "closed", "event": "chat.closed", "description": "A chat was closed."},
        {"from": "archived", "to": "closed", "event": "chat.closed"}
    ]',
    description => 'A conversation container');
SELECT ventros.register_quiet_columns('chat', '{last_message_at}');
SELECT ventros.register_event_type(e, d) FROM (VALUES
    ('chat.participant_added', 'A participant joined a chat.'),
    ('chat.participant_removed', 'A participant left or was removed from a chat.'),
    ('chat.participant_promoted', 'A participant of a group became an admin.'),
    ('chat.participant_demoted', 'A participant of a group stopped being an admin.'),
    ('chat.subject_updated', 'The subject of a chat changed.'),
    ('chat.description_updated', 'The description of a chat changed.'),
    ('chat.label_added', 'A label was put on a chat.'),
    ('chat.label_removed', 'A label was taken off a chat.')) v(e, d);

-- A closed chat is immutable (its status is terminal by the state machine).
CREATE FUNCTION ventros.guard_closed_chat() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF OLD.status = 'closed' AND OLD.deleted_at IS NULL AND NEW.deleted_at IS NULL
       AND (NEW.status, NEW.subject, NEW.description, NEW.metadata, NEW.custom_fields, NEW.external_id)
           IS DISTINCT FROM (OLD.status, OLD.subject, OLD.description, OLD.metadata, OLD.custom_fields, OLD.external_id)
       AND NEW.status = 'closed' THEN
        RAISE EXCEPTION 'chat % is closed', OLD.id USING ERRCODE = 'VN002', DETAIL = 'A closed chat cannot change.';
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION ventros.guard_closed_chat() IS 'Trigger: a closed chat cannot change';
CREATE TRIGGER chats_guard_closed BEFORE UPDATE ON ventros.chats
    FOR EACH ROW EXECUTE FUNCTION ventros.guard_closed_chat();

CREATE TABLE ventros.chat_participants (
    id               uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id        text        NOT NULL,
    version          integer     NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz,
    chat_id          uuid        NOT NULL,
    participant_id   uuid        NOT NULL,
    participant_type text        NOT NULL,
    joined_at        timestamptz NOT NULL DEFAULT now(),
    left_at          timestamptz,
    is_admin         boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, chat_id) REFERENCES ventros.chats (tenant_id, id),
    CONSTRAINT chat_participants_type_known CHECK (participant_type IN ('contact', 'agent')),
    CONSTRAINT chat_participants_left_after_join CHECK (left_at >= joined_at)
);
CREATE UNIQUE INDEX chat_participants_unique ON ventros.chat_participants (tenant_id, chat_id, participant_id)
    WHERE left_at IS NULL AND deleted_at IS NULL;
CREATE INDEX chat_participants_by_participant ON ventros.chat_participants (tenant_id, participant_id)
    WHERE left_at IS NULL AND deleted_at IS NULL;
COMMENT ON TABLE ventros.chat_participants IS 'A contact or agent in a chat';

SELECT ventros.register_aggregate('chat_participant', 'ventros.chat_participants', 'crm',
    description => 'A contact or agent in a chat');

CREATE FUNCTION ventros.lock_chat(chat_id uuid) RETURNS ventros.chats
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.lock_row(NULL::ventros.chats, 'chat', chat_id) $$;
COMMENT ON FUNCTION ventros.lock_chat(uuid) IS 'Locks a chat for a command, or P0002';

CREATE FUNCTION ventros.create_chat(chat_type text, channel_id uuid DEFAULT NULL, contact_id uuid DEFAULT NULL,
                                    subject text DEFAULT NULL, created_by uuid DEFAULT NULL,
                                    external_id text DEFAULT NULL, description text DEFAULT NULL,
                                    project_id uuid DEFAULT NULL)
RETURNS ventros.chats
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.chats;
BEGIN
    IF chat_type IS NULL OR chat_type NOT IN ('individual', 'group', 'channel') THEN
        RAISE EXCEPTION 'unknown chat type "%"', left(chat_type, 32) USING ERRCODE = '22023',
            HINT = 'Use individual, group or channel.';
    END IF;
    IF chat_type = 'individual' AND contact_id IS NULL THEN
        RAISE EXCEPTION 'an individual chat needs its contact' USING ERRCODE = '23502';
    END IF;
    IF chat_type = 'individual' AND subject IS NOT NULL THEN
        RAISE EXCEPTION 'an individual chat has no subject' USING ERRCODE = '23514';
    END IF;
    IF chat_type <> 'individual' AND (subject IS NULL OR btrim(subject) = '' OR created_by IS NULL) THEN
        RAISE EXCEPTION 'a % chat needs a subject and a creator', chat_type USING ERRCODE = '23502';
    END IF;
    INSERT INTO ventros.chats (project_id, channel_id, chat_type, external_id, subject, description, created_by)
    VALUES (coalesce(project_id, ventros.default_project()), channel_id, chat_type, external_id,
            ventros.check_length(subject, 255, 'chat subject'), description, created_by)
    RETURNING * INTO result;
    IF contact_id IS NOT NULL THEN
        IF NOT EXISTS (SELECT 1 FROM ventros.contacts c WHERE c.tenant_id = result.tenant_id AND c.id = contact_id) THEN
            RAISE EXCEPTION 'contact % not found', contact_id USING ERRCODE = 'P0002';
        END IF;
        INSERT INTO ventros.chat_participants (chat_id, participant_id, participant_type)
        VALUES (result.id, contact_id, 'contact');
    END IF;
    IF created_by IS NOT NULL THEN
        INSERT INTO ventros.chat_participants (chat_id, participant_id, participant_type, is_admin)
        VALUES (result.id, created_by, 'agent', chat_type = 'group');
    END IF;
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'a chat with external id % already exists on channel %', external_id, channel_id USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.create_chat(text, uuid, uuid, text, uuid, text, text, uuid) IS
    'Creates an individual chat (with its one contact) or a group or channel chat (subject and creator required); emits chat.created and chat_participant.created';

CREATE FUNCTION ventros.add_chat_participant(chat_id uuid, participant_id uuid, participant_type text DEFAULT 'contact',
                                             is_admin boolean DEFAULT false)
RETURNS ventros.chat_participants
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    chat ventros.chats := ventros.lock_chat(chat_id);
    result ventros.chat_participants;
BEGIN
    IF chat.status = 'closed' THEN
        RAISE EXCEPTION 'chat % is closed', chat_id USING ERRCODE = 'VN002';
    END IF;
    IF chat.chat_type = 'individual' AND participant_type = 'contact' THEN
        RAISE EXCEPTION 'an individual chat has exactly one contact' USING ERRCODE = '23514';
    END IF;
    IF is_admin AND chat.chat_type <> 'group' THEN
        RAISE EXCEPTION 'admins exist only in group chats' USING ERRCODE = '23514';
    END IF;
    IF participant_type NOT IN ('contact', 'agent') THEN
        RAISE EXCEPTION 'unknown participant type "%"', left(participant_type, 32) USING ERRCODE = '22023';
    END IF;
    INSERT INTO ventros.chat_participants (chat_id, participant_id, participant_type, is_admin)
    VALUES (chat_id, participant_id, participant_type, coalesce(is_admin, false))
    RETURNING * INTO result;
    PERFORM ventros.emit('chat.participant_added', 'chat', chat_id,
                         jsonb_build_object('participant_id', participant_id, 'participant_type', participant_type,
                                            'is_admin', result.is_admin), chat.version);
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION '% is already a participant of chat %', participant_id, chat_id USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.add_chat_participant(uuid, uuid, text, boolean) IS
    'Adds a participant (no duplicates: 23505; admins in groups only); emits chat_participant.created and chat.participant_added';

CREATE FUNCTION ventros.remove_chat_participant(chat_id uuid, participant_id uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    chat ventros.chats := ventros.lock_chat(chat_id);
    p ventros.chat_participants;
BEGIN
    IF chat.chat_type = 'individual' THEN
        RAISE EXCEPTION 'participants cannot be removed from an individual chat' USING ERRCODE = '23514';
    END IF;
    SELECT * INTO p FROM ventros.chat_participants x
    WHERE x.tenant_id = chat.tenant_id AND x.chat_id = chat.id AND x.participant_id = remove_chat_participant.participant_id
      AND x.left_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% is not a participant of chat %', participant_id, chat_id USING ERRCODE = 'P0002';
    END IF;
    UPDATE ventros.chat_participants x SET left_at = greatest(clock_timestamp(), x.joined_at), version = p.version
    WHERE x.tenant_id = p.tenant_id AND x.id = p.id;
    PERFORM ventros.emit('chat.participant_removed', 'chat', chat_id,
                         jsonb_build_object('participant_id', participant_id, 'participant_type', p.participant_type),
                         chat.version);
END
$$;
COMMENT ON FUNCTION ventros.remove_chat_participant(uuid, uuid) IS
    'Removes a participant of a group or channel chat (never of an individual one: 23514); emits chat_participant.updated and chat.participant_removed';

CREATE FUNCTION ventros.set_chat_participant_admin(chat_id uuid, participant_id uuid, is_admin boolean)
RETURNS ventros.chat_participants
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    chat ventros.chats := ventros.lock_chat(chat_id);
    result ventros.chat_participants;
BEGIN
    IF chat.chat_type <> 'group' THEN
        RAISE EXCEPTION 'admins exist only in group chats' USING ERRCODE = '23514';
    END IF;
    UPDATE ventros.chat_participants x SET is_admin = set_chat_participant_admin.is_admin, version = x.version
    WHERE x.tenant_id = chat.tenant_id AND x.chat_id = chat.id AND x.participant_id = set_chat_participant_admin.participant_id
      AND x.left_at IS NULL
    RETURNING * INTO result;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% is not a participant of chat %', participant_id, chat_id USING ERRCODE = 'P0002';
    END IF;
    PERFORM ventros.emit(CASE WHEN is_admin THEN 'chat.participant_promoted' ELSE 'chat.participant_demoted' END,
                         'chat', chat_id, jsonb_build_object('participant_id', participant_id), chat.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.set_chat_participant_admin(uuid, uuid, boolean) IS
    'Promotes or demotes a participant of a group; emits chat_participant.updated and chat.participant_promoted / .participant_demoted';

CREATE FUNCTION ventros.set_chat_status(chat_id uuid, expected_version integer, status text)
RETURNS ventros.chats
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.apply_changes(NULL::ventros.chats, 'chat', chat_id, expected_version,
                                 jsonb_build_object('status', status), ARRAY['status'])
$$;
COMMENT ON FUNCTION ventros.set_chat_status(uuid, integer, text) IS
    'Archives, unarchives or closes a chat (VN002 when not allowed; closed is terminal); emits chat.archived / .unarchived / .closed';

CREATE FUNCTION ventros.update_chat(chat_id uuid, expected_version integer, subject text DEFAULT NULL,
                                    description text DEFAULT NULL)
RETURNS ventros.chats
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    chat ventros.chats := ventros.lock_chat(chat_id);
    result ventros.chats;
BEGIN
    IF subject IS NOT NULL AND chat.chat_type = 'individual' THEN
        RAISE EXCEPTION 'an individual chat has no subject' USING ERRCODE = '23514';
    END IF;
    IF subject IS NOT NULL AND btrim(subject) = '' THEN
        RAISE EXCEPTION 'chat subject must not be empty' USING ERRCODE = '23514';
    END IF;
    UPDATE ventros.chats c
    SET subject = coalesce(ventros.check_length(update_chat.subject, 255, 'chat subject'), c.subject),
        description = coalesce(update_chat.description, c.description), version = expected_version
    WHERE c.tenant_id = chat.tenant_id AND c.id = chat.id RETURNING * INTO result;
    IF result.subject IS DISTINCT FROM chat.subject THEN
        PERFORM ventros.emit('chat.subject_updated', 'chat', chat_id,
                             jsonb_build_object('subject', result.subject, 'previous', chat.subject), result.version);
    END IF;
    IF result.description IS DISTINCT FROM chat.description THEN
        PERFORM ventros.emit('chat.description_updated', 'chat', chat_id,
                             jsonb_build_object('description', result.description), result.version);
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.update_chat(uuid, integer, text, text) IS
    'Changes the subject and/or description of a chat; emits chat.updated and chat.subject_updated / chat.description_updated';

CREATE FUNCTION ventros.set_chat_label(chat_id uuid, label_id text, present boolean)
RETURNS ventros.chats
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    chat ventros.chats := ventros.lock_chat(chat_id);
    labels jsonb := coalesce(chat.custom_fields->'labels', '[]');
    result ventros.chats;
BEGIN
    IF label_id IS NULL OR btrim(label_id) = '' THEN
        RAISE EXCEPTION 'label id must not be empty' USING ERRCODE = '23502';
    END IF;
    IF present = (labels ? label_id) THEN
        RETURN chat;
    END IF;
    labels := CASE WHEN present THEN labels || to_jsonb(label_id) ELSE labels - label_id END;
    UPDATE ventros.chats c SET custom_fields = jsonb_set(c.custom_fields, '{labels}', labels), version = chat.version
    WHERE c.tenant_id = chat.tenant_id AND c.id = chat.id RETURNING * INTO result;
    PERFORM ventros.emit(CASE WHEN present THEN 'chat.label_added' ELSE 'chat.label_removed' END, 'chat', chat_id,
                         jsonb_build_object('label_id', label_id), result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.set_chat_label(uuid, text, boolean) IS
    'Puts a label on a chat or takes it off (custom_fields.labels); emits chat.updated and chat.label_added / .label_removed';

GRANT EXECUTE ON FUNCTION ventros.lock_chat(uuid), ventros.create_chat(text, uuid, uuid, text, uuid, text, text, uuid),
    ventros.add_chat_participant(uuid, uuid, text, boolean), ventros.remove_chat_participant(uuid, uuid),
    ventros.set_chat_participant_admin(uuid, uuid, boolean), ventros.set_chat_status(uuid, integer, text),
    ventros.update_chat(uuid, integer, text, text), ventros.set_chat_label(uuid, text, boolean) TO ventros_agent;

-- Direct writes of chat, chat_participant by tenant roles: the same as the first
-- command named, or refused naming them (docs/sql.md, "Direct writes").
SELECT ventros.register_writes('chat', inserts => '{create_chat}', updates => '{update_chat,set_chat_status,set_chat_label}', deletes => '{}');
SELECT ventros.register_writes('chat_participant', inserts => '{add_chat_participant}', updates => '{set_chat_participant_admin,remove_chat_participant}', deletes => '{}');
