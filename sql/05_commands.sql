-- Shared building blocks of the aggregate commands: value normalisation,
-- limits, the generic update / delete used by every update_<aggregate> and
-- delete_<aggregate> command, and smaller blocks every aggregate file uses: a command
-- that changes named fields of one row, a lookup that raises P0002, and a
-- check that an enumerated argument is one of its values (22023, nothing
-- written).  They wrap apply_changes so every command goes through the engine
-- (version check VN001, state machine VN002, event with changed/previous).

CREATE FUNCTION ventros.normalize_phone(phone text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    digits text;
BEGIN
    -- Formatting characters go; a leading 00 is the international prefix; a
    -- WhatsApp id (5511999998888@c.us) keeps its number.
    digits := regexp_replace(split_part(btrim(phone), '@', 1), '[\s().\-/]', '', 'g');
    IF digits ~ '^00' THEN
        digits := '+' || substr(digits, 3);
    END IF;
    IF digits !~ '^\+?[1-9][0-9]{7,14}$' THEN
        RAISE EXCEPTION 'invalid phone number "%"', left(phone, 64)
            USING ERRCODE = '22P02',
                  DETAIL = 'A phone number has a country code and 8 to 15 digits in all.',
                  HINT = 'Write it in E.164 form, for example +5511999998888.';
    END IF;
    RETURN '+' || ltrim(digits, '+');
END
$$;
COMMENT ON FUNCTION ventros.normalize_phone(text) IS
    'Normalises a phone number to E.164 (+ and 8–15 digits); 22P02 when it is not one';

CREATE FUNCTION ventros.normalize_email(email text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    normalized text := lower(btrim(email));
BEGIN
    IF length(normalized) > 254 OR normalized !~ '^[^@\s]+@[^@\s]+\.[^@\s.]+$' THEN
        RAISE EXCEPTION 'invalid email address "%"', left(email, 64)
            USING ERRCODE = '22P02', HINT = 'An email address looks like name@example.com.';
    END IF;
    RETURN normalized;
END
$$;
COMMENT ON FUNCTION ventros.normalize_email(text) IS
    'Trims and lowercases an email address; 22P02 when it is not one';

CREATE FUNCTION ventros.check_length(value text, max_length integer, what text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF length(value) > max_length THEN
        RAISE EXCEPTION '% is too long', what
            USING ERRCODE = '54000',
                  DETAIL = format('It has %s characters; at most %s are allowed.', length(value), max_length);
    END IF;
    RETURN value;
END
$$;
COMMENT ON FUNCTION ventros.check_length(text, integer, text) IS
    'Returns value, or 54000 naming what when it is longer than max_length';

CREATE FUNCTION ventros.check_page_size(page_size integer) RETURNS integer
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    maximum integer := current_setting('ventros.max_page_size')::integer;
BEGIN
    IF page_size IS NULL OR page_size < 1 THEN
        RAISE EXCEPTION 'page_size must be a positive number' USING ERRCODE = '22023';
    END IF;
    IF page_size > maximum THEN
        RAISE EXCEPTION 'page_size % is over the maximum of %', page_size, maximum
            USING ERRCODE = '54000', HINT = 'Page with the keyset cursor of the last row.';
    END IF;
    RETURN page_size;
END
$$;
COMMENT ON FUNCTION ventros.check_page_size(integer) IS
    'Returns page_size, or an error when it is not positive (22023) or over ventros.max_page_size (54000)';

-- apply_changes: the generic update behind every update_<aggregate> command.
-- row_type is NULL::<table> (it fixes the result type), changes a JSON object
-- of field -> new value, updatable the fields a caller may change.
CREATE FUNCTION ventros.apply_changes(row_type anyelement, aggregate text, row_id uuid,
                                      expected_version integer, changes jsonb, updatable text[])
RETURNS anyelement
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target      regclass := pg_typeof(row_type)::text::regclass;
    field       text;
    assignments text;
    result      ALIAS FOR $0;
    updated     bigint;
BEGIN
    IF row_id IS NULL THEN
        RAISE EXCEPTION '% id must not be null', aggregate USING ERRCODE = '23502';
    END IF;
    IF expected_version IS NULL THEN
        RAISE EXCEPTION 'expected_version of % % must not be null', aggregate, row_id
            USING ERRCODE = '23502', HINT = 'Pass the version you read.';
    END IF;
    IF changes IS NULL OR jsonb_typeof(changes) <> 'object' THEN
        RAISE EXCEPTION 'changes to % must be a JSON object', aggregate USING ERRCODE = '22023';
    END IF;
    FOR field IN SELECT jsonb_object_keys(changes) LOOP
        IF NOT field = ANY (updatable) THEN
            RAISE EXCEPTION 'unknown or read-only % field "%"', aggregate, left(field, 64)
                USING ERRCODE = '22023',
                      HINT = format('Fields that can change: %s.', array_to_string(updatable, ', '));
        END IF;
    END LOOP;
    SELECT string_agg(format('%I = r.%I', k, k), ', ') INTO assignments FROM jsonb_object_keys(changes) k;
    IF assignments IS NULL THEN
        assignments := 'version = t.version';
    ELSE
        assignments := assignments || ', version = $3';
    END IF;
    EXECUTE format('UPDATE %s t SET %s FROM jsonb_populate_record($4, $1) r '
                   'WHERE t.tenant_id = ventros.require_tenant() AND t.id = $2 RETURNING t.*',
                   target, assignments)
        INTO result USING changes, row_id, expected_version, row_type;
    GET DIAGNOSTICS updated = ROW_COUNT;  -- EXECUTE does not set FOUND
    IF updated = 0 THEN
        RAISE EXCEPTION '% % not found', aggregate, row_id USING ERRCODE = 'P0002';
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.apply_changes(anyelement, text, uuid, integer, jsonb, text[]) IS
    'Generic optimistic update: P0002 when absent, VN001 when expected_version is stale, 22023 for unknown fields';

-- get_row: the generic read behind every get_<aggregate> query.
CREATE FUNCTION ventros.get_row(row_type anyelement, aggregate text, row_id uuid)
RETURNS anyelement
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ALIAS FOR $0;
    found_rows bigint;
BEGIN
    EXECUTE format('SELECT * FROM %s WHERE tenant_id = ventros.require_tenant() AND id = $1',
                   pg_typeof(row_type)::text::regclass)
        INTO result USING row_id;
    GET DIAGNOSTICS found_rows = ROW_COUNT;
    IF found_rows = 0 THEN
        RAISE EXCEPTION '% % not found', aggregate, row_id USING ERRCODE = 'P0002';
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.get_row(anyelement, text, uuid) IS
    'Generic read of one live row of the acting tenant (row_type is NULL::<table>); P0002 when absent';

-- lock_row: get_row, with the row locked FOR UPDATE until the transaction ends.
CREATE FUNCTION ventros.lock_row(row_type anyelement, aggregate text, row_id uuid)
RETURNS anyelement
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('SELECT 1 FROM %s WHERE tenant_id = ventros.require_tenant() AND id = $1 FOR UPDATE',
                   pg_typeof(row_type)::text::regclass)
        USING row_id;
    RETURN ventros.get_row(row_type, aggregate, row_id);
END
$$;
COMMENT ON FUNCTION ventros.lock_row(anyelement, text, uuid) IS
    'Generic read of one live row of the acting tenant, locked FOR UPDATE; P0002 when absent';

-- delete_row: the generic soft delete behind every delete_<aggregate> command.
CREATE FUNCTION ventros.delete_row(target regclass, aggregate text, row_id uuid, expected_version integer)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current_version integer;
BEGIN
    EXECUTE format('SELECT version FROM %s WHERE tenant_id = ventros.require_tenant() AND id = $1 FOR UPDATE', target)
        INTO current_version USING row_id;
    IF current_version IS NULL THEN
        RAISE EXCEPTION '% % not found', aggregate, row_id USING ERRCODE = 'P0002';
    END IF;
    PERFORM ventros.require_version(aggregate, row_id, expected_version, current_version);
    EXECUTE format('DELETE FROM %s WHERE tenant_id = ventros.require_tenant() AND id = $1', target) USING row_id;
END
$$;
COMMENT ON FUNCTION ventros.delete_row(regclass, text, uuid, integer) IS
    'Generic soft delete: P0002 when absent or deleted, VN001 when expected_version is stale';

CREATE FUNCTION ventros.is_distinct_array(items text[]) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
-- (no SET clause: CHECKs call it on every write; every name is qualified)
AS $$
BEGIN
    -- (count skips NULLs: a NULL element fails, as a repeated one does)
    RETURN pg_catalog.cardinality(items) OPERATOR(pg_catalog.=)
           (SELECT pg_catalog.count(DISTINCT x) FROM pg_catalog.unnest(items) x);
END
$$;
COMMENT ON FUNCTION ventros.is_distinct_array(text[]) IS 'True when no element repeats (used by CHECKs on tag arrays)';

GRANT EXECUTE ON FUNCTION ventros.normalize_phone(text), ventros.normalize_email(text),
    ventros.check_length(text, integer, text), ventros.check_page_size(integer), ventros.is_distinct_array(text[])
    TO ventros_viewer, ventros_anon, ventros_authenticator, ventros_platform_admin;
GRANT EXECUTE ON FUNCTION ventros.get_row(anyelement, text, uuid) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.lock_row(anyelement, text, uuid) TO ventros_agent;
-- plan_for_set: the plans of a set-based function (one declared with SET
-- plan_cache_mode = force_generic_plan) for a set of n rows.  Its one-row
-- case keeps the generic plans, planned once per session (a custom plan
-- sized for a one-element array would look cheaper every time and be
-- planned again at every call); a set of more rows gets custom plans, sized
-- for it and for the tables as they are now (a generic plan made while a
-- table was empty would scan it whole for every row of a batch).  Local to
-- the calling function, whose SET clause restores the setting on return.
CREATE FUNCTION ventros.plan_for_set(n integer) RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    -- no SET clause: the setting is the calling function's, restored by its own
    IF n > 1 THEN
        PERFORM pg_catalog.set_config('plan_cache_mode', 'force_custom_plan', true);
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.plan_for_set(integer) IS
    'In a set-based function declared with SET plan_cache_mode = force_generic_plan: custom plans for a set of more than one row, the generic ones (planned once per session) for one row';

-- stats_slot: which of a hot counter's slot rows this backend adds to.
CREATE FUNCTION ventros.stats_slot() RETURNS smallint
LANGUAGE sql VOLATILE PARALLEL SAFE
AS $$ SELECT (pg_catalog.pg_backend_pid() % 16)::smallint $$;
COMMENT ON FUNCTION ventros.stats_slot() IS 'The counter slot of this backend (0-15) for counters kept in slot rows (channel message counts, crm_daily_stats, automation_funnel_stats): concurrent writers of one hot key rarely share a row';

GRANT EXECUTE ON FUNCTION ventros.stats_slot(), ventros.plan_for_set(integer) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.apply_changes(anyelement, text, uuid, integer, jsonb, text[]),
    ventros.delete_row(regclass, text, uuid, integer)
    TO ventros_agent;

-- A numeric ventros.* setting in its base unit (ms, s or bytes): durations
-- and sizes are declared with units, so current_setting() shows '5s'.
CREATE FUNCTION ventros.setting_number(name text) RETURNS bigint
LANGUAGE c STABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'ventros_setting_number';
COMMENT ON FUNCTION ventros.setting_number(text) IS
    'A numeric ventros.* setting in its base unit (milliseconds, seconds or bytes, as declared), for SQL that computes with it';
GRANT EXECUTE ON FUNCTION ventros.setting_number(text) TO ventros_viewer, ventros_anon;

-- ---- command building blocks ------------------------------------------------

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

-- require_version: the optimistic lock of a command that checks the version
-- itself (the engine checks it for apply_changes and change_row).
CREATE FUNCTION ventros.require_version(aggregate text, row_id uuid, expected_version integer, current_version integer)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF expected_version IS NOT NULL AND expected_version <> current_version THEN
        RAISE EXCEPTION '% % has changed since version % was read', aggregate, row_id, expected_version
            USING ERRCODE = 'VN001', DETAIL = format('Current version is %s.', current_version),
                  HINT = format('Read the %s again and retry with its current version.', aggregate);
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.require_version(text, uuid, integer, integer) IS
    'Raises VN001 when expected_version is given and is not the current version';

GRANT EXECUTE ON FUNCTION ventros.require_value(text, text[], text), ventros.require_json(jsonb, text, text),
    ventros.not_found(text, uuid), ventros.require_version(text, uuid, integer, integer)
    TO ventros_viewer, ventros_anon, ventros_authenticator, ventros_platform_admin;
GRANT EXECUTE ON FUNCTION ventros.change_row(anyelement, text, uuid, integer, jsonb) TO ventros_agent;
