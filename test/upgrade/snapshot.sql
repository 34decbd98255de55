-- Every tenant row of every extension table, as JSON, into
-- public.upgrade_snapshot (outside the extension); check.sql later asserts each
-- one is still there.  The system tenant's rows are the install's, compared by
-- catalog_rows.sql instead.
\set ON_ERROR_STOP on
CREATE TABLE public.upgrade_snapshot (rel text, row jsonb);
CREATE FUNCTION pg_temp.snapshot() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    r regclass;
BEGIN
    FOR r IN
        SELECT c.oid::regclass FROM pg_catalog.pg_depend d
        JOIN pg_catalog.pg_class c ON c.oid = d.objid AND d.classid = 'pg_catalog.pg_class'::regclass
        WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
          AND d.refobjid = (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'ventros')
          AND c.relkind IN ('r', 'p')
          AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                      WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
    LOOP
        EXECUTE format('INSERT INTO public.upgrade_snapshot SELECT %L::text, to_jsonb(t) FROM %s t WHERE t.tenant_id <> ''ventros''', r, r);
    END LOOP;
END
$$;
SELECT pg_temp.snapshot();
