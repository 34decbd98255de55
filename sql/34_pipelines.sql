-- Aggregate 7, Pipeline (CRM): a funnel of ordered statuses that contacts
-- move through, plus the session settings of conversations under it.
--
-- Child aggregates: pipeline_status (the statuses), pipeline_custom_field,
-- contact_pipeline_status (membership and history: one open row, exited_at
-- NULL, per contact and pipeline, enforced by a partial unique index).  The
-- engine writes their row events; the commands add the domain's
-- pipeline.status_* events on the pipeline and contact.pipeline_status_changed.

CREATE TABLE ventros.pipelines (
    id                      uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id               text        NOT NULL,
    version                 integer     NOT NULL DEFAULT 1,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    deleted_at              timestamptz,
    project_id              uuid        NOT NULL,
    name                    text        NOT NULL,
    description             text,
    color                   text,
    position                integer     NOT NULL DEFAULT 0,
    active                  boolean     NOT NULL DEFAULT true,
    session_timeout_minutes integer,
    enable_ai_summary       boolean     NOT NULL DEFAULT false,
    ai_provider             text,
    ai_model                text,
    lead_qualification      jsonb,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id),
    CONSTRAINT pipelines_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT pipelines_color_hex CHECK (color ~ '^#[0-9A-Fa-f]{6}$'),
    CONSTRAINT pipelines_session_timeout_range CHECK (session_timeout_minutes BETWEEN 1 AND 1440),
    CONSTRAINT pipelines_lead_qualification_shape CHECK (lead_qualification IS NULL
        OR (jsonb_typeof(lead_qualification) = 'object'
            AND coalesce((lead_qualification->>'min_score')::numeric, 0) BETWEEN 0 AND 10))
);
CREATE INDEX pipelines_by_project ON ventros.pipelines (tenant_id, project_id, position) WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.pipelines IS 'Pipeline: a funnel of ordered statuses, and the session settings under it';

SELECT ventros.register_aggregate('pipeline', 'ventros.pipelines', 'crm',
    state_column => 'active',
    transitions => '[
        {"from": null, "to": "true"},
        {"from": null, "to": "false"},
        {"from": "false", "to": "true", "event": "pipeline.activated", "description": "A pipeline was activated."},
        {"from": "true", "to": "false", "event": "pipeline.deactivated", "description": "A pipeline was deactivated."}
    ]',
    privileges => '{"ventros_viewer": ["SELECT"], "ventros_admin": ["INSERT", "UPDATE", "DELETE"]}',
    description => 'A funnel of ordered statuses');
SELECT ventros.register_event_type(e, d) FROM (VALUES
    ('pipeline.status_added', 'A status was added to a pipeline.'),
    ('pipeline.status_removed', 'A status was removed from a pipeline.'),
    ('pipeline.status_updated', 'A status of a pipeline was changed.'),
    ('pipeline.status_activated', 'A status of a pipeline was activated.'),
    ('pipeline.status_deactivated', 'A status of a pipeline was deactivated.'),
    ('pipeline.lead_qualification_enabled', 'Lead qualification was enabled on a pipeline.'),
    ('pipeline.lead_qualification_disabled', 'Lead qualification was disabled on a pipeline.'),
    ('pipeline.lead_qualification_config_updated', 'The lead qualification of a pipeline was reconfigured.'),
    ('contact.pipeline_status_changed', 'A contact moved to another status of a pipeline.'),
    ('contact.entered_pipeline', 'A contact entered a pipeline.'),
    ('contact.exited_pipeline', 'A contact left a pipeline.')) v(e, d);

-- Channels point at their default pipeline (declared here, where pipelines exist).
ALTER TABLE ventros.channels ADD CONSTRAINT channels_pipeline_fk
    FOREIGN KEY (tenant_id, pipeline_id) REFERENCES ventros.pipelines (tenant_id, id);

CREATE TABLE ventros.pipeline_statuses (
    id          uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id   text        NOT NULL,
    version     integer     NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    pipeline_id uuid        NOT NULL,
    name        text        NOT NULL,
    description text,
    color       text,
    status_type text        NOT NULL DEFAULT 'open',
    position    integer     NOT NULL DEFAULT 0,
    active      boolean     NOT NULL DEFAULT true,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, pipeline_id) REFERENCES ventros.pipelines (tenant_id, id),
    CONSTRAINT pipeline_statuses_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT pipeline_statuses_type_known CHECK (status_type IN ('open', 'active', 'closed')),
    CONSTRAINT pipeline_statuses_color_hex CHECK (color ~ '^#[0-9A-Fa-f]{6}$')
);
CREATE UNIQUE INDEX pipeline_statuses_unique_name ON ventros.pipeline_statuses (tenant_id, pipeline_id, name)
    WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.pipeline_statuses IS 'A status (stage) of a pipeline';

SELECT ventros.register_aggregate('pipeline_status', 'ventros.pipeline_statuses', 'crm',
    state_column => 'active',
    transitions => '[
        {"from": null, "to": "true"},
        {"from": null, "to": "false"},
        {"from": "false", "to": "true", "event": "pipeline_status.activated", "description": "A pipeline status was activated."},
        {"from": "true", "to": "false", "event": "pipeline_status.deactivated", "description": "A pipeline status was deactivated."}
    ]',
    privileges => '{"ventros_viewer": ["SELECT"], "ventros_admin": ["INSERT", "UPDATE", "DELETE"]}',
    description => 'A status of a pipeline');

CREATE TABLE ventros.pipeline_custom_fields (
    id          uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id   text        NOT NULL,
    version     integer     NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    pipeline_id uuid        NOT NULL,
    field_key   text        NOT NULL,
    field_type  text        NOT NULL,
    field_value jsonb,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, pipeline_id) REFERENCES ventros.pipelines (tenant_id, id),
    CONSTRAINT pipeline_custom_fields_key_format CHECK (field_key ~ '^[a-z][a-z0-9_]{0,63}$'),
    CONSTRAINT pipeline_custom_fields_type_known CHECK (field_type IN ('text', 'number', 'boolean', 'date', 'json', 'url',
        'email', 'phone', 'select', 'multi_select', 'label'))
);
CREATE UNIQUE INDEX pipeline_custom_fields_unique ON ventros.pipeline_custom_fields (tenant_id, pipeline_id, field_key)
    WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.pipeline_custom_fields IS 'A custom field of a pipeline; key and type are immutable';

SELECT ventros.register_aggregate('pipeline_custom_field', 'ventros.pipeline_custom_fields', 'crm',
    privileges => '{"ventros_viewer": ["SELECT"], "ventros_admin": ["INSERT", "UPDATE", "DELETE"]}',
    description => 'A custom field of a pipeline');

CREATE TABLE ventros.contact_pipeline_statuses (
    id          uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id   text        NOT NULL,
    version     integer     NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    contact_id  uuid        NOT NULL,
    pipeline_id uuid        NOT NULL,
    status_id   uuid        NOT NULL,
    entered_at  timestamptz NOT NULL DEFAULT now(),
    exited_at   timestamptz,
    duration    bigint,
    notes       text,
    metadata    jsonb,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES ventros.contacts (tenant_id, id),
    FOREIGN KEY (tenant_id, pipeline_id) REFERENCES ventros.pipelines (tenant_id, id),
    FOREIGN KEY (tenant_id, status_id) REFERENCES ventros.pipeline_statuses (tenant_id, id),
    CONSTRAINT contact_pipeline_statuses_exit_after_entry CHECK (exited_at >= entered_at),
    CONSTRAINT contact_pipeline_statuses_duration CHECK ((exited_at IS NULL) = (duration IS NULL) AND duration >= 0)
);
CREATE UNIQUE INDEX contact_pipeline_statuses_one_open ON ventros.contact_pipeline_statuses (tenant_id, contact_id, pipeline_id)
    WHERE exited_at IS NULL AND deleted_at IS NULL;
CREATE INDEX contact_pipeline_statuses_by_contact ON ventros.contact_pipeline_statuses (tenant_id, contact_id, entered_at DESC, id DESC);
CREATE INDEX contact_pipeline_statuses_board ON ventros.contact_pipeline_statuses (tenant_id, pipeline_id, status_id, entered_at DESC, id DESC)
    WHERE exited_at IS NULL AND deleted_at IS NULL;
COMMENT ON TABLE ventros.contact_pipeline_statuses IS
    'A contact''s stay in a status of a pipeline: the open row (exited_at NULL) is the current status, closed rows the history';

SELECT ventros.register_aggregate('contact_pipeline_status', 'ventros.contact_pipeline_statuses', 'crm',
    description => 'A contact''s stay in a status of a pipeline');

CREATE FUNCTION ventros.create_pipeline(name text, description text DEFAULT NULL, color text DEFAULT NULL,
                                        session_timeout_minutes integer DEFAULT NULL, project_id uuid DEFAULT NULL,
                                        statuses text[] DEFAULT '{}', sort_position integer DEFAULT 0)
RETURNS ventros.pipelines
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.pipelines;
    status_name text;
    n integer := 0;
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'pipeline name must not be null' USING ERRCODE = '23502';
    END IF;
    INSERT INTO ventros.pipelines (project_id, name, description, color, session_timeout_minutes, position)
    VALUES (coalesce(project_id, ventros.default_project()), ventros.check_length(btrim(name), 200, 'pipeline name'),
            description, color, session_timeout_minutes, coalesce(sort_position, 0))
    RETURNING * INTO result;
    FOREACH status_name IN ARRAY coalesce(statuses, '{}') LOOP
        PERFORM ventros.add_pipeline_status(result.id, status_name, sort_position => n);
        n := n + 1;
    END LOOP;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.create_pipeline(text, text, text, integer, uuid, text[], integer) IS
    'Creates a pipeline, optionally with statuses in order; emits pipeline.created (and per status pipeline_status.created, pipeline.status_added)';

CREATE FUNCTION ventros.update_pipeline(pipeline_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.pipelines
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    before ventros.pipelines;
    result ventros.pipelines;
BEGIN
    SELECT * INTO before FROM ventros.pipelines p WHERE p.tenant_id = ventros.require_tenant() AND p.id = pipeline_id;
    result := ventros.apply_changes(NULL::ventros.pipelines, 'pipeline', pipeline_id, expected_version, changes,
        ARRAY['name', 'description', 'color', 'position', 'active', 'session_timeout_minutes', 'enable_ai_summary',
              'ai_provider', 'ai_model', 'lead_qualification']);
    IF before.lead_qualification IS DISTINCT FROM result.lead_qualification THEN
        PERFORM ventros.emit(CASE
                WHEN coalesce((result.lead_qualification->>'enabled')::boolean, false)
                     AND NOT coalesce((before.lead_qualification->>'enabled')::boolean, false)
                    THEN 'pipeline.lead_qualification_enabled'
                WHEN NOT coalesce((result.lead_qualification->>'enabled')::boolean, false)
                     AND coalesce((before.lead_qualification->>'enabled')::boolean, false)
                    THEN 'pipeline.lead_qualification_disabled'
                ELSE 'pipeline.lead_qualification_config_updated' END,
            'pipeline', pipeline_id, jsonb_build_object('lead_qualification', result.lead_qualification), result.version);
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.update_pipeline(uuid, integer, jsonb) IS
    'Changes fields of a pipeline; emits pipeline.updated / .activated / .deactivated, and pipeline.lead_qualification_* when that changes';

CREATE FUNCTION ventros.delete_pipeline(pipeline_id uuid, expected_version integer DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.delete_row('ventros.pipelines', 'pipeline', pipeline_id, expected_version) $$;
COMMENT ON FUNCTION ventros.delete_pipeline(uuid, integer) IS 'Soft-deletes a pipeline; emits pipeline.deleted';

CREATE FUNCTION ventros.add_pipeline_status(pipeline_id uuid, name text, status_type text DEFAULT 'open',
                                            color text DEFAULT NULL, sort_position integer DEFAULT NULL,
                                            description text DEFAULT NULL)
RETURNS ventros.pipeline_statuses
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.pipeline_statuses;
    pipeline_version integer;
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'pipeline status name must not be null' USING ERRCODE = '23502';
    END IF;
    -- Lock the pipeline: statuses of one pipeline are added one at a time.
    SELECT p.version INTO pipeline_version FROM ventros.pipelines p
    WHERE p.tenant_id = ventros.require_tenant() AND p.id = add_pipeline_status.pipeline_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pipeline % not found', pipeline_id USING ERRCODE = 'P0002';
    END IF;
    IF status_type NOT IN ('open', 'active', 'closed') THEN
        RAISE EXCEPTION 'unknown status type "%"', left(status_type, 32) USING ERRCODE = '22023',
            HINT = 'Use open, active or closed.';
    END IF;
    INSERT INTO ventros.pipeline_statuses (pipeline_id, name, status_type, color, position, description)
    VALUES (add_pipeline_status.pipeline_id, ventros.check_length(btrim(name), 200, 'status name'), status_type, color,
            coalesce(sort_position, (SELECT coalesce(max(s.position) + 1, 0) FROM ventros.pipeline_statuses s
                                WHERE s.tenant_id = ventros.require_tenant() AND s.pipeline_id = add_pipeline_status.pipeline_id)),
            description)
    RETURNING * INTO result;
    PERFORM ventros.emit('pipeline.status_added', 'pipeline', pipeline_id,
                         jsonb_build_object('status_id', result.id, 'name', result.name, 'status_type', result.status_type,
                                            'position', result.position), pipeline_version);
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'pipeline % already has a status named "%"', pipeline_id, name USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.add_pipeline_status(uuid, text, text, text, integer, text) IS
    'Adds a status to a pipeline (at the end unless position is given); emits pipeline_status.created and pipeline.status_added';

CREATE FUNCTION ventros.update_pipeline_status(status_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.pipeline_statuses
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    before ventros.pipeline_statuses;
    result ventros.pipeline_statuses;
BEGIN
    SELECT * INTO before FROM ventros.pipeline_statuses s WHERE s.tenant_id = ventros.require_tenant() AND s.id = status_id;
    result := ventros.apply_changes(NULL::ventros.pipeline_statuses, 'pipeline status', status_id, expected_version, changes,
        ARRAY['name', 'description', 'color', 'status_type', 'position', 'active']);
    IF result.version <> before.version THEN
        PERFORM ventros.emit(CASE WHEN before.active AND NOT result.active THEN 'pipeline.status_deactivated'
                                  WHEN NOT before.active AND result.active THEN 'pipeline.status_activated'
                                  ELSE 'pipeline.status_updated' END,
                             'pipeline', result.pipeline_id,
                             jsonb_build_object('status_id', status_id, 'changes', changes), NULL);
    END IF;
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'the pipeline already has a status named "%"', changes->>'name' USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.update_pipeline_status(uuid, integer, jsonb) IS
    'Changes a status; emits pipeline_status.updated (or .activated / .deactivated) and pipeline.status_updated / .status_activated / .status_deactivated';

CREATE FUNCTION ventros.remove_pipeline_status(status_id uuid, expected_version integer DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st ventros.pipeline_statuses;
BEGIN
    st := ventros.get_row(NULL::ventros.pipeline_statuses, 'pipeline status', status_id);
    IF EXISTS (SELECT 1 FROM ventros.contact_pipeline_statuses c
               WHERE c.tenant_id = st.tenant_id AND c.status_id = st.id AND c.exited_at IS NULL AND c.deleted_at IS NULL) THEN
        RAISE EXCEPTION 'pipeline status % still holds contacts', status_id USING ERRCODE = '23503',
            HINT = 'Move the contacts to another status first.';
    END IF;
    PERFORM ventros.delete_row('ventros.pipeline_statuses', 'pipeline status', status_id, expected_version);
    PERFORM ventros.emit('pipeline.status_removed', 'pipeline', st.pipeline_id,
                         jsonb_build_object('status_id', status_id, 'name', st.name), NULL);
END
$$;
COMMENT ON FUNCTION ventros.remove_pipeline_status(uuid, integer) IS
    'Removes a status that holds no contact (else 23503); emits pipeline_status.deleted and pipeline.status_removed';

-- change_contact_pipeline_status: closes the contact's open row in the
-- pipeline (exited_at, duration) and opens one in the new status.  The
-- contact row is locked first, so two moves of one contact serialise.
CREATE FUNCTION ventros.change_contact_pipeline_status(contact_id uuid, status_id uuid, notes text DEFAULT NULL,
                                                       metadata jsonb DEFAULT NULL)
RETURNS ventros.contact_pipeline_statuses
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    st ventros.pipeline_statuses;
    previous ventros.contact_pipeline_statuses;
    result ventros.contact_pipeline_statuses;
    contact_version integer;
    at timestamptz := clock_timestamp();
BEGIN
    SELECT c.version INTO contact_version FROM ventros.contacts c
    WHERE c.tenant_id = tenant AND c.id = change_contact_pipeline_status.contact_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'contact % not found', contact_id USING ERRCODE = 'P0002';
    END IF;
    SELECT * INTO st FROM ventros.pipeline_statuses s WHERE s.tenant_id = tenant AND s.id = change_contact_pipeline_status.status_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pipeline status % not found', status_id USING ERRCODE = 'P0002';
    END IF;
    IF NOT st.active THEN
        RAISE EXCEPTION 'pipeline status % is inactive', status_id USING ERRCODE = '22023';
    END IF;
    SELECT * INTO previous FROM ventros.contact_pipeline_statuses c
    WHERE c.tenant_id = tenant AND c.contact_id = change_contact_pipeline_status.contact_id
      AND c.pipeline_id = st.pipeline_id AND c.exited_at IS NULL AND c.deleted_at IS NULL;
    IF FOUND THEN
        IF previous.status_id = st.id THEN
            RETURN previous;    -- already there: nothing happens
        END IF;
        UPDATE ventros.contact_pipeline_statuses c
        SET exited_at = greatest(at, c.entered_at),
            duration = extract(epoch FROM greatest(at, c.entered_at) - c.entered_at)::bigint, version = previous.version
        WHERE c.tenant_id = tenant AND c.id = previous.id;
    END IF;
    INSERT INTO ventros.contact_pipeline_statuses (contact_id, pipeline_id, status_id, entered_at, notes, metadata)
    VALUES (change_contact_pipeline_status.contact_id, st.pipeline_id, st.id, at, notes, metadata)
    RETURNING * INTO result;
    PERFORM ventros.emit('contact.pipeline_status_changed', 'contact', contact_id,
                         jsonb_build_object('pipeline_id', st.pipeline_id, 'status_id', st.id, 'status_name', st.name,
                                            'previous_status_id', previous.status_id, 'entered_at', at,
                                            'notes', notes), contact_version);
    IF previous.id IS NULL THEN
        PERFORM ventros.emit('contact.entered_pipeline', 'contact', contact_id,
                             jsonb_build_object('pipeline_id', st.pipeline_id, 'status_id', st.id), contact_version);
    END IF;
    PERFORM ventros.journey_status_reached(contact_id, st.id, at);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.change_contact_pipeline_status(uuid, uuid, text, jsonb) IS
    'Moves a contact to a status: closes the open row of that pipeline, opens a new one, exits the sequences and converts the campaigns that name the status (ventros.journey_status_reached); emits contact.pipeline_status_changed (with previous_status_id) and, on first entry, contact.entered_pipeline';

CREATE FUNCTION ventros.remove_contact_from_pipeline(contact_id uuid, pipeline_id uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    open_row ventros.contact_pipeline_statuses;
    at timestamptz := clock_timestamp();
BEGIN
    SELECT * INTO open_row FROM ventros.contact_pipeline_statuses c
    WHERE c.tenant_id = tenant AND c.contact_id = remove_contact_from_pipeline.contact_id
      AND c.pipeline_id = remove_contact_from_pipeline.pipeline_id AND c.exited_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'contact % is not in pipeline %', contact_id, pipeline_id USING ERRCODE = 'P0002';
    END IF;
    UPDATE ventros.contact_pipeline_statuses c
    SET exited_at = greatest(at, c.entered_at),
        duration = extract(epoch FROM greatest(at, c.entered_at) - c.entered_at)::bigint, version = open_row.version
    WHERE c.tenant_id = tenant AND c.id = open_row.id;
    PERFORM ventros.emit('contact.exited_pipeline', 'contact', contact_id,
                         jsonb_build_object('pipeline_id', pipeline_id, 'status_id', open_row.status_id), NULL);
END
$$;
COMMENT ON FUNCTION ventros.remove_contact_from_pipeline(uuid, uuid) IS
    'Closes a contact''s open row in a pipeline; emits contact_pipeline_status.updated and contact.exited_pipeline';

CREATE FUNCTION ventros.set_pipeline_custom_field(pipeline_id uuid, field_key text, field_type text, field_value jsonb)
RETURNS ventros.pipeline_custom_fields
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    existing ventros.pipeline_custom_fields;
    result ventros.pipeline_custom_fields;
BEGIN
    SELECT * INTO existing FROM ventros.pipeline_custom_fields f
    WHERE f.tenant_id = ventros.require_tenant() AND f.pipeline_id = set_pipeline_custom_field.pipeline_id
      AND f.field_key = set_pipeline_custom_field.field_key FOR UPDATE;
    IF FOUND THEN
        IF existing.field_type <> field_type THEN
            RAISE EXCEPTION 'the type of custom field "%" is %, not %', field_key, existing.field_type, left(field_type, 32)
                USING ERRCODE = '22023', DETAIL = 'The key and type of a pipeline custom field are immutable.';
        END IF;
        UPDATE ventros.pipeline_custom_fields f SET field_value = set_pipeline_custom_field.field_value, version = existing.version
        WHERE f.tenant_id = existing.tenant_id AND f.id = existing.id RETURNING * INTO result;
    ELSE
        INSERT INTO ventros.pipeline_custom_fields (pipeline_id, field_key, field_type, field_value)
        VALUES (pipeline_id, field_key, field_type, field_value) RETURNING * INTO result;
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.set_pipeline_custom_field(uuid, text, text, jsonb) IS
    'Sets a custom field of a pipeline (key and type fixed once created); emits pipeline_custom_field.created / .updated';

CREATE FUNCTION ventros.get_pipeline(pipeline_id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result jsonb;
BEGIN
    SELECT to_jsonb(p) || jsonb_build_object('statuses', coalesce((
               SELECT jsonb_agg(to_jsonb(s) ORDER BY s.position, s.id) FROM ventros.pipeline_statuses s
               WHERE s.tenant_id = p.tenant_id AND s.pipeline_id = p.id), '[]'))
    INTO result FROM ventros.pipelines p WHERE p.tenant_id = ventros.require_tenant() AND p.id = pipeline_id;
    IF result IS NULL THEN
        RAISE EXCEPTION 'pipeline % not found', pipeline_id USING ERRCODE = 'P0002';
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.get_pipeline(uuid) IS 'A pipeline with its statuses (in position order) as JSON, or P0002';

CREATE FUNCTION ventros.contact_pipeline_history(contact_id uuid, pipeline_id uuid DEFAULT NULL)
RETURNS SETOF ventros.contact_pipeline_statuses
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.* FROM ventros.contact_pipeline_statuses c
    WHERE c.tenant_id = ventros.require_tenant() AND c.contact_id = contact_pipeline_history.contact_id
      AND (contact_pipeline_history.pipeline_id IS NULL OR c.pipeline_id = contact_pipeline_history.pipeline_id)
    ORDER BY c.entered_at DESC, c.id DESC
    LIMIT current_setting('ventros.max_page_size')::integer
$$;
COMMENT ON FUNCTION ventros.contact_pipeline_history(uuid, uuid) IS
    'A contact''s stays in pipeline statuses, newest first (the open one is its current status)';

GRANT EXECUTE ON FUNCTION ventros.get_pipeline(uuid), ventros.contact_pipeline_history(uuid, uuid) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.change_contact_pipeline_status(uuid, uuid, text, jsonb),
    ventros.remove_contact_from_pipeline(uuid, uuid) TO ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.create_pipeline(text, text, text, integer, uuid, text[], integer),
    ventros.update_pipeline(uuid, integer, jsonb), ventros.delete_pipeline(uuid, integer),
    ventros.add_pipeline_status(uuid, text, text, text, integer, text),
    ventros.update_pipeline_status(uuid, integer, jsonb), ventros.remove_pipeline_status(uuid, integer),
    ventros.set_pipeline_custom_field(uuid, text, text, jsonb)
    TO ventros_admin;

-- Direct writes of pipeline, pipeline_status, pipeline_custom_field, contact_pipeline_status by tenant roles: the same as the first
-- command named, or refused naming them (docs/sql.md, "Direct writes").
SELECT ventros.register_writes('pipeline', inserts => '{create_pipeline}', updates => '{update_pipeline}', deletes => '{delete_pipeline}',
    direct => '{DELETE}');
SELECT ventros.register_writes('pipeline_status', inserts => '{add_pipeline_status}', updates => '{update_pipeline_status}', deletes => '{remove_pipeline_status}');
SELECT ventros.register_writes('pipeline_custom_field', inserts => '{set_pipeline_custom_field}', updates => '{set_pipeline_custom_field}', deletes => '{}');
SELECT ventros.register_writes('contact_pipeline_status', inserts => '{change_contact_pipeline_status}', updates => '{change_contact_pipeline_status,remove_contact_from_pipeline}', deletes => '{}');
