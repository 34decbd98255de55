-- Aggregate 11, ContactList (CRM): a named set of contacts, static (explicit
-- members) or dynamic (filter rules combined with AND or OR).  Broadcasts
-- target lists.  Filters and members are child aggregates of their own
-- (contact_list_filter, contact_list_member: versioned, tenant-scoped, with
-- the engine's created/updated/deleted events); the list emits the domain's
-- business events (contact_list.filter_rule_added, .contact_added, ...).
-- Members only on static lists, rules only on dynamic ones: checked under a
-- lock of the list row, which also serialises concurrent recalculations.

CREATE TABLE ventros.contact_lists (
    id                 uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id          text        NOT NULL,
    version            integer     NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at         timestamptz,
    project_id         uuid        NOT NULL,
    name               text        NOT NULL,
    description        text,
    logical_operator   text        NOT NULL DEFAULT 'AND',
    is_static          boolean     NOT NULL DEFAULT false,
    contact_count      integer     NOT NULL DEFAULT 0,
    last_calculated_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id),
    CONSTRAINT contact_lists_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT contact_lists_operator_known CHECK (logical_operator IN ('AND', 'OR')),
    CONSTRAINT contact_lists_count_not_negative CHECK (contact_count >= 0)
);
CREATE UNIQUE INDEX contact_lists_unique_name ON ventros.contact_lists (tenant_id, project_id, name) WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.contact_lists IS 'ContactList: a static or dynamic set of contacts';

CREATE TABLE ventros.contact_list_filters (
    id              uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id       text        NOT NULL,
    version         integer     NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    contact_list_id uuid        NOT NULL,
    filter_type     text        NOT NULL,
    operator        text        NOT NULL,
    field_key       text        NOT NULL,
    field_type      text,
    value           jsonb,
    pipeline_id     uuid,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_list_id) REFERENCES ventros.contact_lists (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT contact_list_filters_type_known CHECK (filter_type IN ('custom_field', 'pipeline_status', 'tag', 'event',
                                                                      'interaction', 'attribute')),
    CONSTRAINT contact_list_filters_operator_known CHECK (operator IN ('eq', 'ne', 'gt', 'lt', 'gte', 'lte', 'contains',
        'not_contains', 'starts_with', 'ends_with', 'in', 'not_in', 'is_null', 'is_not_null')),
    CONSTRAINT contact_list_filters_key_format CHECK (field_key ~ '^[A-Za-z_][A-Za-z0-9_.-]{0,99}$'),
    CONSTRAINT contact_list_filters_value_present CHECK (operator IN ('is_null', 'is_not_null') OR value IS NOT NULL),
    CONSTRAINT contact_list_filters_list_value CHECK (operator NOT IN ('in', 'not_in') OR jsonb_typeof(value) = 'array')
);
CREATE INDEX contact_list_filters_by_list ON ventros.contact_list_filters (tenant_id, contact_list_id) WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.contact_list_filters IS 'A filter rule of a dynamic contact list';

CREATE TABLE ventros.contact_list_members (
    id              uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id       text        NOT NULL,
    version         integer     NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    contact_list_id uuid        NOT NULL,
    contact_id      uuid        NOT NULL,
    added_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_list_id) REFERENCES ventros.contact_lists (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, contact_id) REFERENCES ventros.contacts (tenant_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX contact_list_members_unique ON ventros.contact_list_members (tenant_id, contact_list_id, contact_id)
    WHERE deleted_at IS NULL;
CREATE INDEX contact_list_members_by_contact ON ventros.contact_list_members (tenant_id, contact_id) WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.contact_list_members IS 'A member of a static contact list';

SELECT ventros.register_aggregate('contact_list', 'ventros.contact_lists', 'crm',
    description => 'A static or dynamic set of contacts');
-- The count is a quiet column: recounting or a member joining does not make
-- an editor's version stale; contact_list.recalculated / .contact_added say it.
SELECT ventros.register_quiet_columns('contact_list', '{contact_count,last_calculated_at}');
SELECT ventros.register_aggregate('contact_list_filter', 'ventros.contact_list_filters', 'crm',
    description => 'A filter rule of a dynamic contact list (child of contact_list)');
SELECT ventros.register_aggregate('contact_list_member', 'ventros.contact_list_members', 'crm',
    description => 'A member of a static contact list (child of contact_list)');
SELECT ventros.register_event_type('contact_list.filter_rule_added', 'A filter rule was added to a dynamic list.');
SELECT ventros.register_event_type('contact_list.filter_rule_removed', 'A filter rule was removed from a dynamic list.');
SELECT ventros.register_event_type('contact_list.filter_rules_cleared', 'All filter rules of a dynamic list were removed.');
SELECT ventros.register_event_type('contact_list.recalculated', 'The member count of a list was recalculated.');
SELECT ventros.register_event_type('contact_list.contact_added', 'A contact was added to a static list.');
SELECT ventros.register_event_type('contact_list.contact_removed', 'A contact was removed from a static list.');

CREATE FUNCTION ventros.get_contact_list(contact_list_id uuid, for_update boolean DEFAULT false) RETURNS ventros.contact_lists
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN for_update THEN ventros.lock_row(NULL::ventros.contact_lists, 'contact list', contact_list_id)
                ELSE ventros.get_row(NULL::ventros.contact_lists, 'contact list', contact_list_id) END
$$;
COMMENT ON FUNCTION ventros.get_contact_list(uuid, boolean) IS 'A live contact list (locked when for_update), or P0002';

CREATE FUNCTION ventros.create_contact_list(name text, is_static boolean DEFAULT false, logical_operator text DEFAULT 'AND',
                                            description text DEFAULT NULL, project_id uuid DEFAULT NULL)
RETURNS ventros.contact_lists
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.contact_lists;
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'contact list name must not be null' USING ERRCODE = '23502';
    END IF;
    PERFORM ventros.require_value(coalesce(logical_operator, 'AND'), ARRAY['AND', 'OR'], 'logical operator');
    INSERT INTO ventros.contact_lists (project_id, name, description, logical_operator, is_static)
    VALUES (coalesce(project_id, ventros.default_project()), ventros.check_length(btrim(name), 200, 'contact list name'),
            description, coalesce(logical_operator, 'AND'), coalesce(is_static, false))
    RETURNING * INTO result;
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'a contact list named "%" exists already', name USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.create_contact_list(text, boolean, text, text, uuid) IS
    'Creates a static or dynamic contact list; emits contact_list.created';

CREATE FUNCTION ventros.update_contact_list(contact_list_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.contact_lists
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN ventros.apply_changes(NULL::ventros.contact_lists, 'contact list', contact_list_id, expected_version, changes,
                                 ARRAY['name', 'description', 'logical_operator']);
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'a contact list named "%" exists already', changes->>'name' USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.update_contact_list(uuid, integer, jsonb) IS
    'Changes the name, description or logical operator of a list; emits contact_list.updated';

CREATE FUNCTION ventros.delete_contact_list(contact_list_id uuid, expected_version integer DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.delete_row('ventros.contact_lists', 'contact list', contact_list_id, expected_version) $$;
COMMENT ON FUNCTION ventros.delete_contact_list(uuid, integer) IS 'Soft-deletes a list; emits contact_list.deleted';

CREATE FUNCTION ventros.add_contact_list_filter(contact_list_id uuid, filter_type text, operator text, field_key text,
                                                value jsonb DEFAULT NULL, field_type text DEFAULT NULL,
                                                pipeline_id uuid DEFAULT NULL)
RETURNS ventros.contact_list_filters
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    list ventros.contact_lists := ventros.get_contact_list(contact_list_id, true);
    result ventros.contact_list_filters;
BEGIN
    IF list.is_static THEN
        RAISE EXCEPTION 'contact list % is static; filter rules belong to dynamic lists', contact_list_id
            USING ERRCODE = '23514';
    END IF;
    PERFORM ventros.require_value(filter_type, ARRAY['custom_field', 'pipeline_status', 'tag', 'event', 'interaction',
                                                     'attribute'], 'filter type');
    PERFORM ventros.require_value(operator, ARRAY['eq', 'ne', 'gt', 'lt', 'gte', 'lte', 'contains', 'not_contains',
        'starts_with', 'ends_with', 'in', 'not_in', 'is_null', 'is_not_null'], 'filter operator');
    IF filter_type = 'attribute' THEN
        PERFORM ventros.require_value(field_key, ARRAY['name', 'email', 'phone', 'external_id', 'source_channel',
            'language', 'timezone', 'created_at', 'first_interaction_at', 'last_interaction_at'], 'contact attribute');
    ELSIF filter_type IN ('event', 'interaction') THEN
        RAISE EXCEPTION '% filters are not evaluated yet', filter_type USING ERRCODE = '0A000',
            HINT = 'Use attribute, tag, custom_field or pipeline_status filters.';
    END IF;
    INSERT INTO ventros.contact_list_filters (contact_list_id, filter_type, operator, field_key, field_type, value, pipeline_id)
    VALUES (contact_list_id, filter_type, operator, field_key, field_type, value, pipeline_id)
    RETURNING * INTO result;
    PERFORM ventros.emit('contact_list.filter_rule_added', 'contact_list', contact_list_id,
        jsonb_build_object('filter_id', result.id, 'filter_type', filter_type, 'operator', operator,
                           'field_key', field_key, 'value', value), list.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.add_contact_list_filter(uuid, text, text, text, jsonb, text, uuid) IS
    'Adds a filter rule to a dynamic list (static: 23514; bad type or operator: 22023); emits contact_list_filter.created and contact_list.filter_rule_added';

CREATE FUNCTION ventros.remove_contact_list_filter(contact_list_filter_id uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f ventros.contact_list_filters;
    list ventros.contact_lists;
BEGIN
    SELECT * INTO f FROM ventros.contact_list_filters x
    WHERE x.tenant_id = ventros.require_tenant() AND x.id = contact_list_filter_id;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('contact list filter', contact_list_filter_id);
    END IF;
    list := ventros.get_contact_list(f.contact_list_id, true);
    PERFORM ventros.delete_row('ventros.contact_list_filters', 'contact list filter', contact_list_filter_id, NULL);
    PERFORM ventros.emit('contact_list.filter_rule_removed', 'contact_list', list.id,
                         jsonb_build_object('filter_id', f.id), list.version);
END
$$;
COMMENT ON FUNCTION ventros.remove_contact_list_filter(uuid) IS
    'Removes a filter rule; emits contact_list_filter.deleted and contact_list.filter_rule_removed';

CREATE FUNCTION ventros.clear_contact_list_filters(contact_list_id uuid)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    list ventros.contact_lists := ventros.get_contact_list(contact_list_id, true);
    n integer;
BEGIN
    -- soft deletes skip the physical delete, so ROW_COUNT is 0: count first.
    SELECT count(*) INTO n FROM ventros.contact_list_filters f
    WHERE f.tenant_id = list.tenant_id AND f.contact_list_id = list.id;
    DELETE FROM ventros.contact_list_filters f
    WHERE f.tenant_id = list.tenant_id AND f.contact_list_id = list.id;
    PERFORM ventros.emit('contact_list.filter_rules_cleared', 'contact_list', list.id,
                         jsonb_build_object('removed', n), list.version);
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.clear_contact_list_filters(uuid) IS
    'Removes all filter rules of a list; emits contact_list_filter.deleted for each and contact_list.filter_rules_cleared';

CREATE FUNCTION ventros.add_contact_to_list(contact_list_id uuid, contact_id uuid)
RETURNS ventros.contact_list_members
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    list ventros.contact_lists := ventros.get_contact_list(contact_list_id, true);
    result ventros.contact_list_members;
BEGIN
    IF NOT list.is_static THEN
        RAISE EXCEPTION 'contact list % is dynamic; its members come from its filter rules', contact_list_id
            USING ERRCODE = '23514';
    END IF;
    PERFORM ventros.get_contact(contact_id);
    INSERT INTO ventros.contact_list_members (contact_list_id, contact_id)
    VALUES (contact_list_id, contact_id)
    RETURNING * INTO result;
    UPDATE ventros.contact_lists l SET contact_count = l.contact_count + 1, version = l.version
    WHERE l.tenant_id = list.tenant_id AND l.id = list.id;
    PERFORM ventros.emit('contact_list.contact_added', 'contact_list', list.id,
                         jsonb_build_object('contact_id', contact_id), list.version);
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'contact % is in list % already', contact_id, contact_list_id USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.add_contact_to_list(uuid, uuid) IS
    'Adds a contact to a static list (dynamic: 23514; twice: 23505); emits contact_list_member.created and contact_list.contact_added';

CREATE FUNCTION ventros.remove_contact_from_list(contact_list_id uuid, contact_id uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    list ventros.contact_lists := ventros.get_contact_list(contact_list_id, true);
    member_id uuid;
BEGIN
    SELECT m.id INTO member_id FROM ventros.contact_list_members m
    WHERE m.tenant_id = list.tenant_id AND m.contact_list_id = list.id AND m.contact_id = remove_contact_from_list.contact_id;
    IF member_id IS NULL THEN
        RAISE EXCEPTION 'contact % is not in list %', contact_id, contact_list_id USING ERRCODE = 'P0002';
    END IF;
    PERFORM ventros.delete_row('ventros.contact_list_members', 'contact list member', member_id, NULL);
    UPDATE ventros.contact_lists l SET contact_count = greatest(l.contact_count - 1, 0), version = l.version
    WHERE l.tenant_id = list.tenant_id AND l.id = list.id;
    PERFORM ventros.emit('contact_list.contact_removed', 'contact_list', list.id,
                         jsonb_build_object('contact_id', contact_id), list.version);
END
$$;
COMMENT ON FUNCTION ventros.remove_contact_from_list(uuid, uuid) IS
    'Removes a contact from a static list (P0002 when absent); emits contact_list_member.deleted and contact_list.contact_removed';

-- contact_list_predicate: the SQL condition over contacts c that a dynamic
-- list's rules describe.  Values enter as literals (format %L), keys only
-- from the attribute whitelist or as literals, so nothing is injected.
CREATE FUNCTION ventros.contact_list_predicate(contact_list_id uuid) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    list ventros.contact_lists := ventros.get_row(NULL::ventros.contact_lists, 'contact list', contact_list_id);
    f ventros.contact_list_filters;
    subject text;
    v text;
    cond text;
    parts text[] := '{}';
BEGIN
    IF list.is_static THEN
        RETURN format('EXISTS (SELECT 1 FROM ventros.contact_list_members m WHERE m.tenant_id = c.tenant_id '
                      'AND m.contact_list_id = %L AND m.contact_id = c.id AND m.deleted_at IS NULL)', list.id);
    END IF;
    FOR f IN SELECT * FROM ventros.contact_list_filters x
             WHERE x.tenant_id = list.tenant_id AND x.contact_list_id = list.id ORDER BY x.created_at, x.id LOOP
        v := f.value #>> '{}';
        IF f.filter_type = 'tag' THEN
            cond := CASE f.operator
                WHEN 'eq' THEN format('c.tags @> ARRAY[%L]', v)
                WHEN 'contains' THEN format('c.tags @> ARRAY[%L]', v)
                WHEN 'ne' THEN format('NOT c.tags @> ARRAY[%L]', v)
                WHEN 'not_contains' THEN format('NOT c.tags @> ARRAY[%L]', v)
                WHEN 'in' THEN format('c.tags && ARRAY(SELECT jsonb_array_elements_text(%L::jsonb))', f.value)
                WHEN 'not_in' THEN format('NOT c.tags && ARRAY(SELECT jsonb_array_elements_text(%L::jsonb))', f.value)
                WHEN 'is_null' THEN 'cardinality(c.tags) = 0'
                WHEN 'is_not_null' THEN 'cardinality(c.tags) > 0'
                ELSE format('EXISTS (SELECT 1 FROM unnest(c.tags) t WHERE %s)',
                            ventros.filter_condition('t', f.operator, f.value)) END;
        ELSE
            IF f.filter_type = 'attribute' THEN
                subject := format('c.%I::text', f.field_key);
                cond := ventros.filter_condition(subject, f.operator, f.value);
            ELSIF f.filter_type = 'custom_field' AND to_regclass('ventros.contact_custom_fields') IS NOT NULL THEN
                cond := format('EXISTS (SELECT 1 FROM ventros.contact_custom_fields cf WHERE cf.tenant_id = c.tenant_id '
                               'AND cf.contact_id = c.id AND cf.field_key = %L AND cf.deleted_at IS NULL AND %s)',
                               f.field_key, ventros.filter_condition('(cf.field_value #>> ''{}'')', f.operator, f.value));
            ELSIF f.filter_type = 'pipeline_status' AND to_regclass('ventros.contact_pipeline_statuses') IS NOT NULL THEN
                cond := format('EXISTS (SELECT 1 FROM ventros.contact_pipeline_statuses ps WHERE ps.tenant_id = c.tenant_id '
                               'AND ps.contact_id = c.id AND ps.exited_at IS NULL AND ps.deleted_at IS NULL '
                               'AND (%L::uuid IS NULL OR ps.pipeline_id = %L::uuid) AND %s)',
                               f.pipeline_id, f.pipeline_id, ventros.filter_condition('ps.status_id::text', f.operator, f.value));
            ELSE
                RAISE EXCEPTION '% filters cannot be evaluated in this installation', f.filter_type USING ERRCODE = '0A000';
            END IF;
        END IF;
        parts := parts || ('(' || cond || ')');
    END LOOP;
    IF cardinality(parts) = 0 THEN
        RETURN 'false';         -- a dynamic list without rules is empty
    END IF;
    RETURN array_to_string(parts, ' ' || list.logical_operator || ' ');
END
$$;
COMMENT ON FUNCTION ventros.contact_list_predicate(uuid) IS
    'The SQL condition over contacts c described by a list (members, or filter rules joined by its operator)';

-- filter_condition: one operator applied to a text expression.
CREATE FUNCTION ventros.filter_condition(subject text, operator text, value jsonb) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE operator
        WHEN 'eq' THEN format('%s = %L', subject, value #>> '{}')
        WHEN 'ne' THEN format('%s IS DISTINCT FROM %L', subject, value #>> '{}')
        WHEN 'gt' THEN format('%s > %L', subject, value #>> '{}')
        WHEN 'lt' THEN format('%s < %L', subject, value #>> '{}')
        WHEN 'gte' THEN format('%s >= %L', subject, value #>> '{}')
        WHEN 'lte' THEN format('%s <= %L', subject, value #>> '{}')
        WHEN 'contains' THEN format('strpos(lower(%s), lower(%L)) > 0', subject, value #>> '{}')
        WHEN 'not_contains' THEN format('coalesce(strpos(lower(%s), lower(%L)) = 0, true)', subject, value #>> '{}')
        WHEN 'starts_with' THEN format('left(lower(%s), length(%L)) = lower(%L)', subject, value #>> '{}', value #>> '{}')
        WHEN 'ends_with' THEN format('right(lower(%s), length(%L)) = lower(%L)', subject, value #>> '{}', value #>> '{}')
        WHEN 'in' THEN format('%s IN (SELECT jsonb_array_elements_text(%L::jsonb))', subject, value)
        WHEN 'not_in' THEN format('%s NOT IN (SELECT jsonb_array_elements_text(%L::jsonb))', subject, value)
        WHEN 'is_null' THEN format('%s IS NULL', subject)
        WHEN 'is_not_null' THEN format('%s IS NOT NULL', subject)
    END
$$;
COMMENT ON FUNCTION ventros.filter_condition(text, text, jsonb) IS 'SQL text of one filter operator applied to an expression';

CREATE FUNCTION ventros.list_contact_list_contacts(contact_list_id uuid, after_id uuid DEFAULT NULL, page_size integer DEFAULT 50)
RETURNS SETOF ventros.contacts
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY EXECUTE format('SELECT c.* FROM ventros.contacts c WHERE c.tenant_id = ventros.require_tenant() '
                                'AND ($1 IS NULL OR c.id > $1) AND (%s) ORDER BY c.id LIMIT $2',
                                ventros.contact_list_predicate(contact_list_id))
        USING after_id, ventros.check_page_size(page_size);
END
$$;
COMMENT ON FUNCTION ventros.list_contact_list_contacts(uuid, uuid, integer) IS
    'The live contacts of a list (members or rule matches), in id order, one keyset page at a time';

CREATE FUNCTION ventros.is_in_contact_list(contact_list_id uuid, contact_id uuid) RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found boolean;
BEGIN
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM ventros.contacts c WHERE c.tenant_id = ventros.require_tenant() '
                   'AND c.id = $1 AND (%s))', ventros.contact_list_predicate(contact_list_id))
        INTO found USING contact_id;
    RETURN found;
END
$$;
COMMENT ON FUNCTION ventros.is_in_contact_list(uuid, uuid) IS 'Whether a contact belongs to a list';

CREATE FUNCTION ventros.recalculate_contact_list(contact_list_id uuid)
RETURNS ventros.contact_lists
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    list ventros.contact_lists := ventros.get_contact_list(contact_list_id, true);
    n integer;
    result ventros.contact_lists;
BEGIN
    EXECUTE format('SELECT count(*) FROM ventros.contacts c WHERE c.tenant_id = ventros.require_tenant() AND (%s)',
                   ventros.contact_list_predicate(contact_list_id)) INTO n;
    UPDATE ventros.contact_lists l SET contact_count = n, last_calculated_at = now(), version = l.version
    WHERE l.tenant_id = list.tenant_id AND l.id = list.id
    RETURNING * INTO result;
    PERFORM ventros.emit('contact_list.recalculated', 'contact_list', list.id,
                         jsonb_build_object('contact_count', n, 'previous_count', list.contact_count), result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.recalculate_contact_list(uuid) IS
    'Recounts a list''s contacts (a quiet change: the version stays); emits contact_list.recalculated';

CREATE FUNCTION ventros.list_contact_lists(project_id uuid DEFAULT NULL) RETURNS SETOF ventros.contact_lists
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT l.* FROM ventros.contact_lists l
    WHERE l.tenant_id = ventros.require_tenant()
      AND (list_contact_lists.project_id IS NULL OR l.project_id = list_contact_lists.project_id)
    ORDER BY l.name, l.id
    LIMIT current_setting('ventros.max_page_size')::integer
$$;
COMMENT ON FUNCTION ventros.list_contact_lists(uuid) IS 'Contact lists of the acting tenant, by project, in name order';

GRANT EXECUTE ON FUNCTION ventros.get_contact_list(uuid, boolean), ventros.contact_list_predicate(uuid),
    ventros.filter_condition(text, text, jsonb), ventros.list_contact_list_contacts(uuid, uuid, integer),
    ventros.is_in_contact_list(uuid, uuid), ventros.list_contact_lists(uuid) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.create_contact_list(text, boolean, text, text, uuid),
    ventros.update_contact_list(uuid, integer, jsonb), ventros.add_contact_list_filter(uuid, text, text, text, jsonb, text, uuid),
    ventros.remove_contact_list_filter(uuid), ventros.clear_contact_list_filters(uuid),
    ventros.add_contact_to_list(uuid, uuid), ventros.remove_contact_from_list(uuid, uuid),
    ventros.recalculate_contact_list(uuid)
    TO ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.delete_contact_list(uuid, integer) TO ventros_admin;

-- Direct writes of contact_list, contact_list_filter, contact_list_member by tenant roles: the same as the first
-- command named, or refused naming them (docs/sql.md, "Direct writes").
SELECT ventros.register_writes('contact_list', inserts => '{create_contact_list}', updates => '{update_contact_list}', deletes => '{delete_contact_list}',
    direct => '{UPDATE,DELETE}',
    update_columns => '{name,description,logical_operator}');
SELECT ventros.register_writes('contact_list_filter', inserts => '{add_contact_list_filter}', updates => '{}', deletes => '{remove_contact_list_filter,clear_contact_list_filters}');
SELECT ventros.register_writes('contact_list_member', inserts => '{add_contact_to_list}', updates => '{}', deletes => '{remove_contact_from_list}');
