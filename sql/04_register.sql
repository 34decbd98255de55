-- register_aggregate: the one declaration that puts a table under the engine.
--
-- It checks the common columns, records the aggregate and its state machine
-- in the catalog, registers its events, attaches the engine's triggers,
-- enables and forces row-level security with the tenant policies, and grants
-- the tenant roles their privileges.  Calling it again re-declares.

CREATE FUNCTION ventros.register_aggregate(
    aggregate        text,
    table_name       regclass,
    context          text,
    state_column     name    DEFAULT NULL,
    transitions      jsonb   DEFAULT '[]',
    redacted_columns name[]  DEFAULT '{}',
    privileges       jsonb   DEFAULT '{"ventros_viewer": ["SELECT"], "ventros_agent": ["INSERT", "UPDATE"], "ventros_admin": ["DELETE"]}',
    description      text    DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    required   CONSTANT text[][] := ARRAY[['id', 'uuid'], ['tenant_id', 'text'], ['version', 'integer'],
                                          ['created_at', 'timestamp with time zone'],
                                          ['updated_at', 'timestamp with time zone'],
                                          ['deleted_at', 'timestamp with time zone']];
    col        text[];
    found_type text;
    t          jsonb;
    event_name text;
    role_name  text;
    privilege  text;
    tenant_expr CONSTANT text := 'tenant_id = (SELECT ventros.current_tenant())';
BEGIN
    FOREACH col SLICE 1 IN ARRAY required LOOP
        SELECT format_type(a.atttypid, a.atttypmod) INTO found_type
        FROM pg_attribute a
        WHERE a.attrelid = table_name AND a.attname = col[1] AND NOT a.attisdropped;
        IF found_type IS DISTINCT FROM col[2] THEN
            RAISE EXCEPTION 'aggregate table % needs column % %', table_name, col[1], col[2]
                USING ERRCODE = '22023', DETAIL = coalesce('It has type ' || found_type || '.', 'It is missing.');
        END IF;
    END LOOP;
    IF (SELECT a.attname FROM pg_index i JOIN pg_attribute a
          ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
        WHERE i.indrelid = table_name AND i.indisprimary) IS DISTINCT FROM 'tenant_id' THEN
        RAISE EXCEPTION 'primary key of % must lead with tenant_id', table_name
            USING ERRCODE = '22023', HINT = 'Declare PRIMARY KEY (tenant_id, id).';
    END IF;
    IF state_column IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM pg_attribute WHERE attrelid = table_name AND attname = state_column AND NOT attisdropped) THEN
        RAISE EXCEPTION 'aggregate table % has no state column %', table_name, state_column USING ERRCODE = '22023';
    END IF;
    IF jsonb_typeof(transitions) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'transitions of % must be a JSON array', aggregate USING ERRCODE = '22023';
    END IF;

    INSERT INTO ventros.aggregates AS a (aggregate, table_name, context, state_column, redacted_columns, description)
    VALUES (aggregate, table_name, context, state_column, redacted_columns, description)
    ON CONFLICT ON CONSTRAINT aggregates_pkey DO UPDATE
        SET table_name = EXCLUDED.table_name, context = EXCLUDED.context,
            state_column = EXCLUDED.state_column, redacted_columns = EXCLUDED.redacted_columns,
            description = coalesce(EXCLUDED.description, a.description);

    FOREACH event_name IN ARRAY ARRAY['created', 'updated', 'deleted'] LOOP
        -- <aggregate>.created only when some creation has no initial-state
        -- event of its own (see engine.c: it would never be written).
        CONTINUE WHEN event_name = 'created'
            AND jsonb_path_exists(transitions, '$[*] ? (!exists(@.from) || @.from == null)')
            AND NOT jsonb_path_exists(transitions, '$[*] ? ((!exists(@.from) || @.from == null) && (!exists(@.event) || @.event == null))');
        PERFORM ventros.register_event_type(aggregate || '.' || event_name,
                                            format('A %s was %s.', aggregate, event_name));
    END LOOP;

    DELETE FROM ventros.aggregate_transitions tr WHERE tr.aggregate = register_aggregate.aggregate;
    FOR t IN SELECT * FROM jsonb_array_elements(transitions) LOOP
        IF t->>'to' IS NULL THEN
            RAISE EXCEPTION 'transition % of % has no "to" state', t, aggregate USING ERRCODE = '22023';
        END IF;
        IF t->>'event' IS NOT NULL THEN
            PERFORM ventros.register_event_type(t->>'event', t->>'description');
        END IF;
        INSERT INTO ventros.aggregate_transitions (aggregate, from_state, to_state, event_type)
        VALUES (aggregate, t->>'from', t->>'to', t->>'event');
    END LOOP;

    EXECUTE format('DROP TRIGGER IF EXISTS ventros_engine_before ON %s', table_name);
    EXECUTE format('DROP TRIGGER IF EXISTS ventros_engine_after ON %s', table_name);
    EXECUTE format('DROP TRIGGER IF EXISTS ventros_engine_truncate ON %s', table_name);
    EXECUTE format('DROP TRIGGER IF EXISTS _ventros_direct_writes ON %s', table_name);
    -- named to fire before every other trigger of the table (name order)
    EXECUTE format('CREATE TRIGGER _ventros_direct_writes BEFORE INSERT OR UPDATE OR DELETE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION ventros.engine_direct_writes()', table_name);
    EXECUTE format('CREATE TRIGGER ventros_engine_before BEFORE INSERT OR UPDATE OR DELETE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION ventros.engine_before()', table_name);
    EXECUTE format('CREATE TRIGGER ventros_engine_after AFTER INSERT OR UPDATE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION ventros.engine_after()', table_name);
    EXECUTE format('CREATE TRIGGER ventros_engine_truncate BEFORE TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION ventros.engine_refuse_truncate()', table_name);

    -- Tenancy: forced row-level security, owner included.  Soft-deleted rows
    -- are hidden unless ventros.include_deleted is on.
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', table_name);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', table_name);
    EXECUTE format('DROP POLICY IF EXISTS ventros_tenant_select ON %s', table_name);
    EXECUTE format('DROP POLICY IF EXISTS ventros_tenant_insert ON %s', table_name);
    EXECUTE format('DROP POLICY IF EXISTS ventros_tenant_update ON %s', table_name);
    EXECUTE format('DROP POLICY IF EXISTS ventros_tenant_delete ON %s', table_name);
    EXECUTE format('CREATE POLICY ventros_tenant_select ON %s FOR SELECT USING (%s AND '
                   '(deleted_at IS NULL OR (SELECT ventros.include_deleted())))', table_name, tenant_expr);
    EXECUTE format('CREATE POLICY ventros_tenant_insert ON %s FOR INSERT WITH CHECK (%s)', table_name, tenant_expr);
    EXECUTE format('CREATE POLICY ventros_tenant_update ON %s FOR UPDATE USING (%s) WITH CHECK (%s)',
                   table_name, tenant_expr, tenant_expr);
    EXECUTE format('CREATE POLICY ventros_tenant_delete ON %s FOR DELETE USING (%s)', table_name, tenant_expr);

    EXECUTE format('REVOKE ALL ON %s FROM PUBLIC', table_name);
    FOR role_name IN SELECT jsonb_object_keys(privileges) LOOP
        IF role_name NOT IN ('ventros_admin', 'ventros_agent', 'ventros_viewer', 'ventros_anon') THEN
            RAISE EXCEPTION 'unknown tenant role "%" in privileges of %', role_name, aggregate USING ERRCODE = '22023';
        END IF;
        FOR privilege IN SELECT jsonb_array_elements_text(privileges->role_name) LOOP
            IF privilege NOT IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE') THEN
                RAISE EXCEPTION 'unknown privilege "%" in privileges of %', privilege, aggregate USING ERRCODE = '22023';
            END IF;
            EXECUTE format('GRANT %s ON %s TO %I', privilege, table_name, role_name);
        END LOOP;
    END LOOP;
END
$$;
COMMENT ON FUNCTION ventros.register_aggregate(text, regclass, text, name, jsonb, name[], jsonb, text) IS
    'Puts a table under the aggregate engine: catalog entry, events, triggers, forced RLS and grants';

-- registered_table: the table of a registered aggregate that has every one
-- of columns; 22023 naming the unknown aggregate or the first missing column.
-- The declarations that add to an aggregate (quiet columns, field events,
-- direct writes) start with it.
CREATE FUNCTION ventros.registered_table(aggregate text, columns name[] DEFAULT '{}')
RETURNS regclass
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target  regclass;
    missing name;
BEGIN
    SELECT a.table_name INTO target FROM ventros.aggregates a WHERE a.aggregate = registered_table.aggregate;
    IF target IS NULL THEN
        RAISE EXCEPTION 'aggregate "%" is not registered', aggregate USING ERRCODE = '22023';
    END IF;
    SELECT c INTO missing FROM unnest(columns) c
    WHERE NOT EXISTS (SELECT 1 FROM pg_attribute
                      WHERE attrelid = target AND attname = c AND attnum > 0 AND NOT attisdropped)
    LIMIT 1;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'aggregate table % has no column %', target, missing USING ERRCODE = '22023';
    END IF;
    RETURN target;
END
$$;
COMMENT ON FUNCTION ventros.registered_table(text, name[]) IS
    'The table of a registered aggregate having every one of columns; 22023 otherwise';
GRANT EXECUTE ON FUNCTION ventros.registered_table(text, name[]) TO ventros_platform_admin;

-- register_quiet_columns: the counters and marks of an aggregate that the
-- system keeps under the row lock (a session's message counts, a channel's
-- last_message_at).  An update that changes only them keeps version and
-- updated_at and emits nothing: the event of what caused them says it.
-- Declared apart from register_aggregate because the aggregate that keeps
-- them up to date (messages) may load after the one that owns them.
CREATE FUNCTION ventros.register_quiet_columns(aggregate text, columns name[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.registered_table(aggregate, columns);
    UPDATE ventros.aggregates a SET quiet_columns = coalesce(columns, '{}')
    WHERE a.aggregate = register_quiet_columns.aggregate;
END
$$;
COMMENT ON FUNCTION ventros.register_quiet_columns(text, name[]) IS
    'Registers the columns whose changes alone neither bump an aggregate''s version nor emit events';
GRANT EXECUTE ON FUNCTION ventros.register_quiet_columns(text, name[]) TO ventros_platform_admin;

-- register_field_events: the events that name a field's change, as
-- {"<column>": "<event type>", ...}.  The engine writes each one after the
-- aggregate's own event of an update of a live row that changed the column
-- (src/engine.c), with the payload {"<column>": new, "previous_<column>": old}
-- and no aggregate_version: the engine's own events keep consecutive
-- versions.  The event types are registered here.  Calling it again
-- re-declares the aggregate's whole set.
CREATE FUNCTION ventros.register_field_events(aggregate text, events jsonb, descriptions jsonb DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f record;
BEGIN
    IF jsonb_typeof(events) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'field events of % must be a JSON object of column: event type', aggregate
            USING ERRCODE = '22023';
    END IF;
    PERFORM ventros.registered_table(aggregate, ARRAY(SELECT jsonb_object_keys(events))::name[]);
    DELETE FROM ventros.aggregate_field_events e WHERE e.aggregate = register_field_events.aggregate;
    FOR f IN SELECT key, value FROM jsonb_each(events) LOOP
        IF jsonb_typeof(f.value) IS DISTINCT FROM 'string' THEN
            RAISE EXCEPTION 'the field event of column % of % must be an event type', f.key, aggregate
                USING ERRCODE = '22023';
        END IF;
        IF f.key IN ('id', 'tenant_id', 'version', 'created_at', 'updated_at', 'deleted_at') THEN
            RAISE EXCEPTION 'column % of % is the engine''s, not a field', f.key, aggregate USING ERRCODE = '22023';
        END IF;
        IF split_part(f.value #>> '{}', '.', 1) <> aggregate THEN
            RAISE EXCEPTION 'field event % is not an event of %', f.value #>> '{}', aggregate
                USING ERRCODE = '22023';
        END IF;
        IF EXISTS (SELECT 1 FROM ventros.event_types t
                   WHERE t.event_type = f.value #>> '{}' AND t.emitted_by IS NOT NULL) THEN
            RAISE EXCEPTION 'event type % is reserved', f.value #>> '{}' USING ERRCODE = '22023',
                DETAIL = 'A field event is written for whoever may change the field.';
        END IF;
        PERFORM ventros.register_event_type(f.value #>> '{}', descriptions ->> (f.value #>> '{}'));
        INSERT INTO ventros.aggregate_field_events (aggregate, column_name, event_type)
        VALUES (aggregate, f.key, f.value #>> '{}');
    END LOOP;
END
$$;
COMMENT ON FUNCTION ventros.register_field_events(text, jsonb, jsonb) IS
    'Declares the events the engine writes when an update changes a field of an aggregate (column: event type)';
GRANT EXECUTE ON FUNCTION ventros.register_field_events(text, jsonb, jsonb) TO ventros_platform_admin;

GRANT EXECUTE ON FUNCTION ventros.register_aggregate(text, regclass, text, name, jsonb, name[], jsonb, text)
    TO ventros_platform_admin;

-- register_writes: what a direct write of an aggregate's table by a tenant
-- role is (SQL, or the api views over HTTP), declared next to the aggregate.
-- inserts, updates and deletes name the commands that do each operation
-- (functions of schema ventros, or api.<name>, which may be defined later in
-- the install script: test/pgtap/620_direct_writes.sql checks they exist;
-- '{}': only the system does it).  direct lists the operations whose direct write is the same as the
-- first command named: every rule and effect of that command lives in the
-- data, so the write is allowed.  insert_columns and update_columns are that
-- command's fields: a direct INSERT may set only those (the others stay
-- NULL), a direct UPDATE change only those.  Every other operation is refused
-- with 42501 and a hint naming its commands (src/direct_writes.c;
-- docs/sql.md, "Direct writes").
CREATE FUNCTION ventros.register_writes(
    aggregate      text,
    inserts        text[],
    updates        text[],
    deletes        text[],
    direct         text[] DEFAULT '{}',
    insert_columns name[] DEFAULT NULL,
    update_columns name[] DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target    regclass;
    operation text;
    commands  text[];
    columns   name[];
    missing   text;
BEGIN
    target := ventros.registered_table(aggregate, coalesce(insert_columns, '{}') || coalesce(update_columns, '{}'));
    direct := coalesce(direct, '{}');
    SELECT d INTO missing FROM unnest(direct) d WHERE d NOT IN ('INSERT', 'UPDATE', 'DELETE') LIMIT 1;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'unknown operation "%" in direct writes of %', missing, aggregate
            USING ERRCODE = '22023', HINT = 'Use INSERT, UPDATE or DELETE.';
    END IF;
    -- a direct INSERT leaves the columns it may not set NULL: they must allow it
    SELECT a.attname INTO missing FROM pg_attribute a
    WHERE 'INSERT' = ANY (direct) AND insert_columns IS NOT NULL
      AND a.attrelid = target AND a.attnum > 0 AND NOT a.attisdropped
      AND a.attname NOT IN ('id', 'tenant_id', 'version', 'created_at', 'updated_at', 'deleted_at')
      AND NOT a.attname = ANY (insert_columns) AND (a.attnotnull OR a.atthasdef)
    LIMIT 1;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'column % of % is left out of its direct inserts but has a default or is NOT NULL', missing, target
            USING ERRCODE = '22023', HINT = 'List it in insert_columns.';
    END IF;
    DELETE FROM ventros.aggregate_writes w WHERE w.aggregate = register_writes.aggregate;
    FOREACH operation IN ARRAY ARRAY['INSERT', 'UPDATE', 'DELETE'] LOOP
        commands := coalesce(CASE operation WHEN 'INSERT' THEN inserts WHEN 'UPDATE' THEN updates ELSE deletes END, '{}');
        IF operation = ANY (direct) AND cardinality(commands) = 0 THEN
            RAISE EXCEPTION 'a direct % of % must name the command it is the same as', operation, aggregate
                USING ERRCODE = '22023';
        END IF;
        columns := CASE WHEN operation = ANY (direct) THEN
                       CASE operation WHEN 'INSERT' THEN insert_columns WHEN 'UPDATE' THEN update_columns END END;
        INSERT INTO ventros.aggregate_writes (aggregate, operation, direct, commands, columns)
        VALUES (aggregate, operation, operation = ANY (direct), commands, columns);
    END LOOP;
END
$$;
COMMENT ON FUNCTION ventros.register_writes(text, text[], text[], text[], text[], name[], name[]) IS
    'Declares what direct INSERT, UPDATE and DELETE of an aggregate''s table by tenant roles are: the same as its first command, or refused naming the commands';
GRANT EXECUTE ON FUNCTION ventros.register_writes(text, text[], text[], text[], text[], name[], name[]) TO ventros_platform_admin;

-- guard_parent_state: the trigger of ventros.aggregate_guards.  The row's
-- parent (old and new, when an update moves it) is read FOR SHARE, so its
-- state cannot change until the writer commits, and must be in one of the
-- declared states.
CREATE FUNCTION ventros.guard_parent_state() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g       record;
    rows    jsonb[];
    r       jsonb;
    parent  uuid;
    state   text;
BEGIN
    rows := CASE TG_OP WHEN 'INSERT' THEN ARRAY[to_jsonb(NEW)] WHEN 'DELETE' THEN ARRAY[to_jsonb(OLD)]
                       ELSE ARRAY[to_jsonb(NEW), to_jsonb(OLD)] END;
    FOR g IN SELECT gd.parent_column, gd.parent_aggregate, gd.states, gd.rule, p.table_name, p.state_column
             FROM ventros.aggregate_guards gd
             JOIN ventros.aggregates a ON a.aggregate = gd.aggregate
             JOIN ventros.aggregates p ON p.aggregate = gd.parent_aggregate
             WHERE a.table_name = TG_RELID
    LOOP
        FOREACH r IN ARRAY rows LOOP
            CONTINUE WHEN r IS DISTINCT FROM rows[1] AND (r->>g.parent_column) IS NOT DISTINCT FROM (rows[1]->>g.parent_column);
            parent := (r->>g.parent_column)::uuid;
            EXECUTE format('SELECT %I::text FROM %s WHERE tenant_id = $1 AND id = $2 FOR SHARE', g.state_column, g.table_name)
                INTO state USING r->>'tenant_id', parent;
            -- no parent in sight: the foreign key, or the row policy for a row of
            -- another tenant, refuses the write after this trigger
            IF state IS NOT NULL AND NOT state = ANY (g.states) THEN
                RAISE EXCEPTION '% % is %; %', g.parent_aggregate, parent, state, g.rule USING ERRCODE = 'VN002';
            END IF;
        END LOOP;
    END LOOP;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END
$$;
COMMENT ON FUNCTION ventros.guard_parent_state() IS
    'Trigger: refuses (VN002) a write of a child aggregate while its parent is not in a declared state (ventros.aggregate_guards)';

-- register_parent_guard: a child aggregate changes (insert, update, delete)
-- only while the parent its column references is in one of states; rule is
-- the reason the refusal gives.  Holds on every path: commands, direct
-- writes, HTTP and the system's workers.
CREATE FUNCTION ventros.register_parent_guard(aggregate text, parent_column name, parent_aggregate text,
                                              states text[], rule text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target regclass;
BEGIN
    SELECT a.table_name INTO target FROM ventros.aggregates a WHERE a.aggregate = register_parent_guard.aggregate;
    IF target IS NULL OR NOT EXISTS (SELECT 1 FROM ventros.aggregates p
                                     WHERE p.aggregate = parent_aggregate AND p.state_column IS NOT NULL) THEN
        RAISE EXCEPTION 'aggregates % and % must be registered, the parent with a state column', aggregate, parent_aggregate
            USING ERRCODE = '22023';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = target AND a.attname = parent_column AND NOT a.attisdropped) THEN
        RAISE EXCEPTION 'aggregate table % has no column %', target, parent_column USING ERRCODE = '22023';
    END IF;
    INSERT INTO ventros.aggregate_guards AS g (aggregate, parent_column, parent_aggregate, states, rule)
    VALUES (aggregate, parent_column, parent_aggregate, states, rule)
    ON CONFLICT ON CONSTRAINT aggregate_guards_pkey DO UPDATE
        SET parent_aggregate = EXCLUDED.parent_aggregate, states = EXCLUDED.states, rule = EXCLUDED.rule;
    EXECUTE format('DROP TRIGGER IF EXISTS ventros_parent_guard ON %s', target);
    EXECUTE format('CREATE TRIGGER ventros_parent_guard BEFORE INSERT OR UPDATE OR DELETE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION ventros.guard_parent_state()', target);
END
$$;
COMMENT ON FUNCTION ventros.register_parent_guard(text, name, text, text[], text) IS
    'Declares that a child aggregate changes only while its parent is in one of the given states, on every path';
GRANT EXECUTE ON FUNCTION ventros.register_parent_guard(text, name, text, text[], text) TO ventros_platform_admin;
