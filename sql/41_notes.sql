-- Aggregate 14, Note (CRM): a free-text annotation on a contact, optionally
-- on a session, by an agent, the system or a user.  pinned is the state
-- column: creation is note.added, false -> true note.pinned, true -> false
-- note.unpinned (the original emitted nothing on unpinning).

CREATE TABLE ventros.notes (
    id                uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id         text        NOT NULL,
    version           integer     NOT NULL DEFAULT 1,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz,
    contact_id        uuid        NOT NULL,
    session_id        uuid,
    author_id         uuid        NOT NULL,
    author_type       text        NOT NULL,
    author_name       text        NOT NULL,
    content           text        NOT NULL,
    note_type         text        NOT NULL DEFAULT 'general',
    priority          text        NOT NULL DEFAULT 'normal',
    visible_to_client boolean     NOT NULL DEFAULT false,
    pinned            boolean     NOT NULL DEFAULT false,
    tags              text[]      NOT NULL DEFAULT '{}',
    mentions          uuid[]      NOT NULL DEFAULT '{}',
    attachments       text[]      NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES ventros.contacts (tenant_id, id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES ventros.sessions (tenant_id, id),
    CONSTRAINT notes_content_not_blank CHECK (btrim(content) <> '' AND length(content) <= 20000),
    CONSTRAINT notes_author_type_known CHECK (author_type IN ('agent', 'system', 'user')),
    CONSTRAINT notes_author_name_not_blank CHECK (btrim(author_name) <> '' AND length(author_name) <= 200),
    CONSTRAINT notes_type_known CHECK (note_type IN ('general', 'follow_up', 'complaint', 'resolution', 'escalation',
        'internal', 'customer', 'session_summary', 'session_handoff', 'session_feedback', 'ad_conversion', 'ad_campaign',
        'ad_attribution', 'tracking_insight')),
    CONSTRAINT notes_priority_known CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    CONSTRAINT notes_tags_distinct CHECK (ventros.is_distinct_array(tags)),
    CONSTRAINT notes_attachments_urls CHECK (array_to_string(attachments, ' ') !~ '(^| )(?!https?://)\S')
);
-- Not partial: the tenant policies hide deleted notes with an OR the planner
-- cannot match to a predicate, so a partial index would serve no list read.
CREATE INDEX notes_by_contact ON ventros.notes (tenant_id, contact_id, created_at DESC, id DESC);
CREATE INDEX notes_by_session ON ventros.notes (tenant_id, session_id) WHERE deleted_at IS NULL AND session_id IS NOT NULL;
COMMENT ON TABLE ventros.notes IS 'Note: a free-text annotation on a contact, optionally on a session';

SELECT ventros.register_aggregate('note', 'ventros.notes', 'crm',
    state_column => 'pinned',
    transitions => '[
        {"from": null, "to": "false", "event": "note.added", "description": "A note was added to a contact."},
        {"from": null, "to": "true", "event": "note.added"},
        {"from": "false", "to": "true", "event": "note.pinned", "description": "A note was pinned."},
        {"from": "true", "to": "false", "event": "note.unpinned", "description": "A note was unpinned."}
    ]',
    description => 'A free-text annotation on a contact');

CREATE FUNCTION ventros.add_note(contact_id uuid, content text, author_id uuid, author_type text DEFAULT 'agent',
                                 author_name text DEFAULT NULL, note_type text DEFAULT 'general',
                                 session_id uuid DEFAULT NULL, priority text DEFAULT 'normal',
                                 visible_to_client boolean DEFAULT false, pinned boolean DEFAULT false,
                                 tags text[] DEFAULT '{}', mentions uuid[] DEFAULT '{}', attachments text[] DEFAULT '{}')
RETURNS ventros.notes
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.notes;
    name_of_author text := author_name;
BEGIN
    IF content IS NULL OR btrim(content) = '' THEN
        RAISE EXCEPTION 'note content must not be empty' USING ERRCODE = '23502';
    END IF;
    IF author_id IS NULL THEN
        RAISE EXCEPTION 'a note needs its author' USING ERRCODE = '23502';
    END IF;
    IF author_type = 'agent' AND name_of_author IS NULL THEN
        SELECT a.name INTO name_of_author FROM ventros.agents a
        WHERE a.tenant_id = ventros.require_tenant() AND a.id = author_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'agent % not found', author_id USING ERRCODE = 'P0002';
        END IF;
    END IF;
    INSERT INTO ventros.notes (contact_id, session_id, author_id, author_type, author_name, content, note_type, priority,
                               visible_to_client, pinned, tags, mentions, attachments)
    VALUES (contact_id, session_id, author_id, author_type, coalesce(name_of_author, author_type),
            ventros.check_length(content, 20000, 'note content'), note_type, priority, visible_to_client, pinned,
            ARRAY(SELECT DISTINCT t FROM unnest(coalesce(tags, '{}')) t ORDER BY t), coalesce(mentions, '{}'),
            coalesce(attachments, '{}'))
    RETURNING * INTO result;
    RETURN result;
EXCEPTION
    WHEN foreign_key_violation THEN
        RAISE EXCEPTION 'contact % or session % not found', contact_id, session_id USING ERRCODE = 'P0002';
    WHEN check_violation THEN
        RAISE EXCEPTION 'invalid note: %', SQLERRM USING ERRCODE = '23514';
END
$$;
COMMENT ON FUNCTION ventros.add_note(uuid, text, uuid, text, text, text, uuid, text, boolean, boolean, text[], uuid[], text[]) IS
    'Adds a note to a contact (content and author required); emits note.added';

CREATE FUNCTION ventros.update_note(note_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.notes
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.apply_changes(NULL::ventros.notes, 'note', note_id, expected_version, changes,
        ARRAY['content', 'priority', 'visible_to_client', 'pinned', 'tags', 'mentions', 'attachments', 'note_type'])
$$;
COMMENT ON FUNCTION ventros.update_note(uuid, integer, jsonb) IS
    'Changes a note (content, priority, visibility, pinned, tags, mentions, attachments); emits note.updated, or note.pinned / note.unpinned';

CREATE FUNCTION ventros.set_note_pinned(note_id uuid, expected_version integer, pinned boolean)
RETURNS ventros.notes
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.update_note(note_id, expected_version, jsonb_build_object('pinned', pinned)) $$;
COMMENT ON FUNCTION ventros.set_note_pinned(uuid, integer, boolean) IS 'Pins or unpins a note; emits note.pinned / note.unpinned';

CREATE FUNCTION ventros.delete_note(note_id uuid, expected_version integer DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.delete_row('ventros.notes', 'note', note_id, expected_version) $$;
COMMENT ON FUNCTION ventros.delete_note(uuid, integer) IS 'Soft-deletes a note; emits note.deleted';

CREATE FUNCTION ventros.list_notes(contact_id uuid, pinned_only boolean DEFAULT false,
                                   before_created_at timestamptz DEFAULT NULL, before_id uuid DEFAULT NULL,
                                   page_size integer DEFAULT 50)
RETURNS SETOF ventros.notes
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT n.* FROM ventros.notes n
    WHERE n.tenant_id = ventros.require_tenant() AND n.contact_id = list_notes.contact_id
      AND (NOT pinned_only OR n.pinned)
      AND (before_id IS NULL OR (n.created_at, n.id) < (before_created_at, before_id))
    ORDER BY n.created_at DESC, n.id DESC
    LIMIT ventros.check_page_size(page_size)
$$;
COMMENT ON FUNCTION ventros.list_notes(uuid, boolean, timestamptz, uuid, integer) IS
    'A contact''s notes, newest first (optionally pinned only), one keyset page at a time';

GRANT EXECUTE ON FUNCTION ventros.list_notes(uuid, boolean, timestamptz, uuid, integer) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.add_note(uuid, text, uuid, text, text, text, uuid, text, boolean, boolean, text[], uuid[], text[]),
    ventros.update_note(uuid, integer, jsonb), ventros.set_note_pinned(uuid, integer, boolean),
    ventros.delete_note(uuid, integer) TO ventros_agent;

-- Direct writes of note by tenant roles: the same as the first
-- command named, or refused naming them (docs/sql.md, "Direct writes").
SELECT ventros.register_writes('note', inserts => '{add_note}', updates => '{update_note,set_note_pinned}', deletes => '{delete_note}',
    direct => '{UPDATE,DELETE}',
    update_columns => '{content,priority,visible_to_client,pinned,tags,mentions,attachments,note_type}');
