-- The rows the install script puts into the extension's own tables (the
-- registries: aggregates, event types, transitions, providers, handlers,
-- jobs, the system channel types) as sorted JSON lines, without the columns a
-- new install draws afresh (ids, timestamps).  Used with catalog.sql by
-- test/integration/upgrade.sh.
\pset format unaligned
\pset tuples_only on
\pset pager off
CREATE FUNCTION pg_temp.registry_rows() RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT c.oid::regclass AS rel,
               EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                       WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped) AS tenanted
        FROM pg_catalog.pg_depend d
        JOIN pg_catalog.pg_class c ON c.oid = d.objid AND d.classid = 'pg_catalog.pg_class'::regclass
        WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
          AND d.refobjid = (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'ventros')
          AND c.relkind IN ('r', 'p')
          AND c.oid NOT IN ('ventros.outbox'::regclass, 'ventros.outbox_queue'::regclass)
    LOOP
        -- tenants' tables hold data, except the system tenant's catalogue
        RETURN QUERY EXECUTE format(
            'SELECT %L || '' '' || (to_jsonb(t) - ''{id,created_at,updated_at,registered_at}''::text[])::text FROM %s t %s',
            r.rel, r.rel,
            CASE WHEN r.tenanted THEN 'WHERE t.tenant_id = ''ventros''' END);
    END LOOP;
END
$$;
SELECT line FROM pg_temp.registry_rows() line ORDER BY line COLLATE "C";
