-- Building blocks of the part-B aggregates (sql/61_* .. sql/89_*): a command
-- that changes named fields of one row, a lookup that raises P0002, and a
-- check that an enumerated argument is one of its values (22023, nothing
-- written).  They wrap apply_changes so every command goes through the engine
-- (version check VN001, state machine VN002, event with changed/previous).

-- change_row: apply_changes with the keys of changes as the updatable fields;
-- for commands whose fields are fixed by the command itself, not the caller.
CREATE FUNCTION ventros.change_row(row_type anyelement, aggregate text, row_id uuid,
                                   expected_version integer, changes jsonb)
RETURNS anyelement
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.apply_changes(row_type, aggregate, row_id, expected_version, changes,
                                 ARRAY(SELECT jsonb_object_keys(changes)))
$$;
COMMENT ON FUNCTION ventros.change_row(anyelement, text, uuid, integer, jsonb) IS
    'A command''s update of the fields it names (P0002 absent, VN001 stale, VN002 transition refused)';

-- require_value: value when it is one of allowed, else 22023 naming what.
CREATE FUNCTION ventros.require_value(value text, allowed text[], what text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF value IS NULL THEN
        RAISE EXCEPTION '% must not be null', what USING ERRCODE = '23502';
    END IF;
    IF NOT value = ANY (allowed) THEN
        RAISE EXCEPTION 'unknown % "%"', what, left(value, 64)
            USING ERRCODE = '22023', HINT = format('Use one of: %s.', array_to_string(allowed, ', '));
    END IF;
    RETURN value;
END
$$;
COMMENT ON FUNCTION ventros.require_value(text, text[], text) IS
    'Returns value when it is one of allowed; 23502 when null, 22023 otherwise';

-- require_object: a jsonb argument that must be an object (or array).
CREATE FUNCTION ventros.require_json(value jsonb, json_type text, what text)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF value IS NOT NULL AND jsonb_typeof(value) <> json_type THEN
        RAISE EXCEPTION '% must be a JSON %', what, json_type
            USING ERRCODE = '22023', DETAIL = format('It is a JSON %s.', jsonb_typeof(value));
    END IF;
    RETURN value;
END
$$;
COMMENT ON FUNCTION ventros.require_json(jsonb, text, text) IS
    'Returns value when it is null or a JSON value of json_type (object, array); 22023 otherwise';

-- not_found: raises P0002 for aggregate id (a shorthand of the lookups).
CREATE FUNCTION ventros.not_found(aggregate text, row_id uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION '% % not found', aggregate, row_id USING ERRCODE = 'P0002';
END
$$;
COMMENT ON FUNCTION ventros.not_found(text, uuid) IS 'Raises P0002: aggregate id not found';

GRANT EXECUTE ON FUNCTION ventros.require_value(text, text[], text), ventros.require_json(jsonb, text, text),
    ventros.not_found(text, uuid)
    TO ventros_viewer, ventros_anon, ventros_authenticator, ventros_platform_admin;
GRANT EXECUTE ON FUNCTION ventros.change_row(anyelement, text, uuid, integer, jsonb) TO ventros_agent;
