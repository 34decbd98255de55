-- The HTTP API's views: one per registered aggregate, made generically from
-- ventros.aggregates, so an aggregate registered in any earlier file is
-- exposed with no further declaration.  Each view is named like its table,
-- runs with the caller's rights (security_invoker: the table's grants and
-- forced RLS policies decide), leaves the aggregate's redacted columns out,
-- and exposes version for optimistic locking.  A view over one table with
-- plain columns is automatically updatable: POST, PATCH and DELETE go through
-- it to the engine's triggers.  Call ventros.expose_api() again after
-- registering an aggregate at run time.

CREATE FUNCTION ventros.expose_api() RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    agg        record;
    view_name  text;
    columns    text;
    role_name  text;
    privilege  text;
BEGIN
    FOR agg IN SELECT a.aggregate, a.table_name, a.redacted_columns, a.description,
                      c.relname
               FROM ventros.aggregates a JOIN pg_class c ON c.oid = a.table_name
               ORDER BY a.aggregate
    LOOP
        view_name := pg_catalog.format('api.%I', agg.relname);
        SELECT string_agg(pg_catalog.format('%I', attname), ', ' ORDER BY attnum) INTO columns
        FROM pg_attribute
        WHERE attrelid = agg.table_name AND attnum > 0 AND NOT attisdropped
          AND NOT attname = ANY (agg.redacted_columns);
        EXECUTE pg_catalog.format('DROP VIEW IF EXISTS %s', view_name);
        EXECUTE pg_catalog.format('CREATE VIEW %s WITH (security_invoker = true) AS SELECT %s FROM %s',
                                  view_name, columns, agg.table_name);
        -- Rows of a project default to the tenant's default project, as the commands do.
        IF EXISTS (SELECT 1 FROM pg_attribute a
                   WHERE a.attrelid = agg.table_name AND a.attname = 'project_id' AND NOT a.attisdropped
                     AND a.atttypid = 'uuid'::regtype AND NOT a.atthasdef)
           AND agg.table_name <> 'ventros.projects'::regclass THEN
            EXECUTE pg_catalog.format('ALTER VIEW %s ALTER COLUMN project_id SET DEFAULT ventros.default_project()', view_name);
        END IF;
        EXECUTE pg_catalog.format('COMMENT ON VIEW %s IS %L', view_name,
                                  coalesce(agg.description, 'Aggregate ' || agg.aggregate));
        -- The view grants what the table grants; the table's own checks still run.
        FOREACH role_name IN ARRAY ARRAY['ventros_viewer', 'ventros_agent', 'ventros_admin', 'ventros_anon'] LOOP
            FOREACH privilege IN ARRAY ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE'] LOOP
                IF has_table_privilege(role_name, agg.table_name, privilege) THEN
                    EXECUTE pg_catalog.format('GRANT %s ON %s TO %I', privilege, view_name, role_name);
                END IF;
            END LOOP;
        END LOOP;
    END LOOP;
END
$$;
COMMENT ON FUNCTION ventros.expose_api() IS
    'Creates or re-creates one security_invoker view in schema api per registered aggregate';

SELECT ventros.expose_api();

-- Helpers of the HTTP front, called in the statements it builds.

-- A version=eq.N filter of PATCH or DELETE: a row that matches the other
-- filters but has another version is a conflict (VN001), not a silent miss.
CREATE FUNCTION ventros.http_expect_version(current_version integer, expected_version integer, row_id uuid)
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF current_version IS DISTINCT FROM expected_version THEN
        RAISE EXCEPTION 'row % has changed since version % was read', row_id, expected_version
            USING ERRCODE = 'VN001', DETAIL = format('Current version is %s.', current_version),
                  HINT = 'Read the row again and retry with its current version.';
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION ventros.http_expect_version(integer, integer, uuid) IS
    'True when the versions agree, else VN001 naming the current version (optimistic locking over HTTP)';

-- Prefer: max-affected=N on PATCH/DELETE: more rows than N rolls everything back.
CREATE FUNCTION ventros.http_check_affected(affected bigint, maximum bigint) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF affected > maximum THEN
        RAISE EXCEPTION 'the request affects % rows, more than max-affected=%', affected, maximum
            USING ERRCODE = 'P0001', HINT = 'Narrow the filters; nothing was changed.';
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION ventros.http_check_affected(bigint, bigint) IS
    'True when affected <= maximum, else an error that rolls the request back (Prefer: max-affected)';

-- CSV (RFC 4180) of a JSON array of flat objects, columns in the first row's order.
CREATE FUNCTION ventros.http_csv(rows json) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH keys AS (
        SELECT k, n FROM json_object_keys(rows -> 0) WITH ORDINALITY AS x(k, n)
    ), quoted AS (
        SELECT r.n AS rn, string_agg(
                   CASE WHEN v IS NULL THEN ''
                        WHEN v ~ '[",\r\n]' OR v <> btrim(v) THEN '"' || replace(v, '"', '""') || '"'
                        ELSE v END, ',' ORDER BY keys.n) AS line
        FROM json_array_elements(rows) WITH ORDINALITY AS r(o, n)
        CROSS JOIN keys
        CROSS JOIN LATERAL (SELECT r.o ->> keys.k AS v) val
        GROUP BY r.n
    )
    SELECT coalesce((SELECT string_agg(CASE WHEN k ~ '[",\r\n]' THEN '"' || replace(k, '"', '""') || '"' ELSE k END,
                                       ',' ORDER BY n) FROM keys), '')
           || coalesce(E'\n' || (SELECT string_agg(line, E'\n' ORDER BY rn) FROM quoted), '')
$$;
COMMENT ON FUNCTION ventros.http_csv(json) IS 'CSV with a header line from a JSON array of flat objects (Accept: text/csv)';

GRANT EXECUTE ON FUNCTION ventros.http_expect_version(integer, integer, uuid), ventros.http_csv(json),
    ventros.http_check_affected(bigint, bigint)
    TO ventros_viewer, ventros_anon;

-- /health: the background workers the front reports.  Their rows in
-- pg_stat_activity show a backend type only to privileged roles, and
-- pg_read_all_stats would also show the front every session's queries; this
-- function shows it names and states, nothing else.
CREATE FUNCTION ventros.http_worker_status() RETURNS json
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(json_agg(json_build_object('name', a.backend_type, 'state', coalesce(a.state, 'running'))
                             ORDER BY a.backend_type, a.pid), '[]')
    FROM pg_stat_activity a
    WHERE a.backend_type NOT IN ('client backend', 'autovacuum launcher', 'autovacuum worker',
                                 'logical replication launcher', 'background writer', 'checkpointer',
                                 'walwriter', 'archiver', 'startup', 'walsender', 'walreceiver')
$$;
COMMENT ON FUNCTION ventros.http_worker_status() IS
    'The background workers (outbox publisher, inbox processors, HTTP dispatcher, pg_cron) and their states, for GET /health';
REVOKE ALL ON FUNCTION ventros.http_worker_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ventros.http_worker_status() TO ventros_authenticator;
