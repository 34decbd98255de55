-- What pg_dump keeps of a database using Ventros.
--
-- Every table and sequence here belongs to the extension, and pg_dump skips an
-- extension's objects (a restore creates them by CREATE EXTENSION) unless the
-- install marks them with pg_extension_config_dump.  Marked:
--   * every table with tenant_id: the tenants' data, whole, except the system
--     catalogue of channel kinds (type_id under 100, the install's own rows);
--   * every sequence, so that restored rows keep their numbers and new ones
--     continue after them (the outbox's seq above all).
-- Not marked: the registries without tenant_id (aggregates, event types,
-- transitions, providers, handlers, scheduled jobs), which the install script
-- writes and a restore writes again, and outbox_in_flight, the publisher's
-- leases (a restored event not yet published is published again: at least
-- once).  How to restore (the engine's triggers must not rewrite restored rows
-- as new ones): docs/sql.md, "Dump and restore".
CREATE FUNCTION ventros.mark_dumped_tables() RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT c.oid::regclass AS rel, c.relkind
        FROM pg_catalog.pg_depend d
        JOIN pg_catalog.pg_class c ON c.oid = d.objid AND d.classid = 'pg_catalog.pg_class'::regclass
        WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
          AND d.refobjid = (SELECT e.oid FROM pg_catalog.pg_extension e WHERE e.extname = 'ventros')
          AND (c.relkind = 'S'
               OR (c.relkind IN ('r', 'p') AND EXISTS (
                   SELECT 1 FROM pg_catalog.pg_attribute a
                   WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)))
          AND c.oid <> 'ventros.outbox_in_flight_id_seq'::regclass
    LOOP
        PERFORM pg_catalog.pg_extension_config_dump(r.rel,
            CASE WHEN r.rel = 'ventros.channel_types'::regclass THEN 'WHERE type_id >= 100' ELSE '' END);
    END LOOP;
END
$$;
COMMENT ON FUNCTION ventros.mark_dumped_tables() IS
    'Install and upgrade use: marks every tenant table and sequence of the extension for pg_dump (pg_extension_config_dump)';
REVOKE ALL ON FUNCTION ventros.mark_dumped_tables() FROM PUBLIC;
SELECT ventros.mark_dumped_tables();
