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
DECLARE
    target regclass;
    missing name;
BEGIN
    SELECT a.table_name INTO target FROM ventros.aggregates a WHERE a.aggregate = register_quiet_columns.aggregate;
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
    UPDATE ventros.aggregates a SET quiet_columns = coalesce(columns, '{}')
    WHERE a.aggregate = register_quiet_columns.aggregate;
END
$$;
COMMENT ON FUNCTION ventros.register_quiet_columns(text, name[]) IS
    'Registers the columns whose changes alone neither bump an aggregate''s version nor emit events';
GRANT EXECUTE ON FUNCTION ventros.register_quiet_columns(text, name[]) TO ventros_platform_admin;

GRANT EXECUTE ON FUNCTION ventros.register_aggregate(text, regclass, text, name, jsonb, name[], jsonb, text)
    TO ventros_platform_admin;
