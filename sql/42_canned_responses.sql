-- Canned responses (CRM, new): saved replies an agent inserts by shortcut.
-- A shortcut is unique per project among live rows; {{contact.name}} style
-- placeholders are filled by ventros.render_canned_response().

CREATE TABLE ventros.canned_responses (
    id         uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id  text        NOT NULL,
    version    integer     NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    project_id uuid        NOT NULL,
    team_id    uuid,
    shortcut   text        NOT NULL,
    title      text        NOT NULL,
    content    text        NOT NULL,
    tags       text[]      NOT NULL DEFAULT '{}',
    usage_count integer    NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id),
    FOREIGN KEY (tenant_id, team_id) REFERENCES ventros.teams (tenant_id, id),
    CONSTRAINT canned_responses_shortcut_format CHECK (shortcut ~ '^[a-z0-9][a-z0-9_-]{0,49}$'),
    CONSTRAINT canned_responses_title_not_blank CHECK (btrim(title) <> '' AND length(title) <= 200),
    CONSTRAINT canned_responses_content_size CHECK (btrim(content) <> '' AND length(content) <= 4096)
);
CREATE UNIQUE INDEX canned_responses_unique_shortcut ON ventros.canned_responses (tenant_id, project_id, shortcut)
    WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.canned_responses IS 'A saved reply that agents insert by its shortcut';

SELECT ventros.register_aggregate('canned_response', 'ventros.canned_responses', 'crm',
    description => 'A saved reply inserted by shortcut');
SELECT ventros.register_quiet_columns('canned_response', '{usage_count}');

CREATE FUNCTION ventros.create_canned_response(shortcut text, title text, content text, team_id uuid DEFAULT NULL,
                                              tags text[] DEFAULT '{}', project_id uuid DEFAULT NULL)
RETURNS ventros.canned_responses
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.canned_responses;
BEGIN
    IF shortcut IS NULL OR title IS NULL OR content IS NULL THEN
        RAISE EXCEPTION 'shortcut, title and content of a canned response must not be null' USING ERRCODE = '23502';
    END IF;
    INSERT INTO ventros.canned_responses (project_id, team_id, shortcut, title, content, tags)
    VALUES (coalesce(project_id, ventros.default_project()), team_id, lower(btrim(shortcut)), title,
            ventros.check_length(content, 4096, 'canned response'), coalesce(tags, '{}'))
    RETURNING * INTO result;
    RETURN result;
EXCEPTION
    WHEN unique_violation THEN
        RAISE EXCEPTION 'a canned response with shortcut "%" already exists', shortcut USING ERRCODE = '23505';
    WHEN check_violation THEN
        RAISE EXCEPTION 'invalid canned response: %', SQLERRM USING ERRCODE = '23514';
END
$$;
COMMENT ON FUNCTION ventros.create_canned_response(text, text, text, uuid, text[], uuid) IS
    'Creates a canned response (shortcut unique per project: 23505); emits canned_response.created';

CREATE FUNCTION ventros.update_canned_response(canned_response_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.canned_responses
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.apply_changes(NULL::ventros.canned_responses, 'canned_response', canned_response_id, expected_version,
                                 changes, ARRAY['shortcut', 'title', 'content', 'tags', 'team_id'])
$$;
COMMENT ON FUNCTION ventros.update_canned_response(uuid, integer, jsonb) IS 'Changes a canned response; emits canned_response.updated';

CREATE FUNCTION ventros.delete_canned_response(canned_response_id uuid, expected_version integer DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.delete_row('ventros.canned_responses', 'canned_response', canned_response_id, expected_version) $$;
COMMENT ON FUNCTION ventros.delete_canned_response(uuid, integer) IS 'Soft-deletes a canned response; emits canned_response.deleted';

-- The text of a canned response for a contact, placeholders filled, and its
-- use counted.
CREATE FUNCTION ventros.render_canned_response(shortcut text, contact_id uuid DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ventros.canned_responses;
    c ventros.contacts;
BEGIN
    UPDATE ventros.canned_responses x SET usage_count = x.usage_count + 1, version = x.version
    WHERE x.tenant_id = ventros.require_tenant() AND x.shortcut = lower(render_canned_response.shortcut)
    RETURNING * INTO r;
    IF r.id IS NULL THEN
        RAISE EXCEPTION 'canned response "%" not found', left(shortcut, 64) USING ERRCODE = 'P0002';
    END IF;
    IF contact_id IS NOT NULL THEN
        c := ventros.get_contact(contact_id);
    END IF;
    RETURN replace(replace(replace(r.content, '{{contact.name}}', coalesce(c.name, '')),
                           '{{contact.phone}}', coalesce(c.phone, '')), '{{contact.email}}', coalesce(c.email, ''));
END
$$;
COMMENT ON FUNCTION ventros.render_canned_response(text, uuid) IS
    'The content of a canned response with {{contact.name}}, {{contact.phone}} and {{contact.email}} filled; counts its use';

CREATE FUNCTION ventros.list_canned_responses(prefix text DEFAULT NULL, after_shortcut text DEFAULT NULL,
                                              page_size integer DEFAULT 50)
RETURNS SETOF ventros.canned_responses
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.* FROM ventros.canned_responses r
    WHERE r.tenant_id = ventros.require_tenant()
      AND (prefix IS NULL OR r.shortcut LIKE replace(replace(lower(prefix), '_', '\_'), '%', '\%') || '%')
      AND (after_shortcut IS NULL OR r.shortcut > after_shortcut)
    ORDER BY r.shortcut
    LIMIT ventros.check_page_size(page_size)
$$;
COMMENT ON FUNCTION ventros.list_canned_responses(text, text, integer) IS
    'Canned responses by shortcut prefix, in shortcut order, one keyset page at a time';

GRANT EXECUTE ON FUNCTION ventros.list_canned_responses(text, text, integer) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.create_canned_response(text, text, text, uuid, text[], uuid),
    ventros.update_canned_response(uuid, integer, jsonb), ventros.delete_canned_response(uuid, integer),
    ventros.render_canned_response(text, uuid) TO ventros_agent;

-- Direct writes of canned_response by tenant roles: the same as the first
-- command named, or refused naming them (docs/sql.md, "Direct writes").
SELECT ventros.register_writes('canned_response', inserts => '{create_canned_response}', updates => '{update_canned_response}', deletes => '{delete_canned_response}',
    direct => '{UPDATE,DELETE}',
    update_columns => '{shortcut,title,content,tags,team_id}');
