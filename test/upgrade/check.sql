-- How many rows of public.upgrade_snapshot are gone (no row of their table
-- holds all their old values) and how many there were: "lost total".
\pset format unaligned
\pset tuples_only on
CREATE FUNCTION pg_temp.lost() RETURNS TABLE (lost bigint, total bigint) LANGUAGE plpgsql AS $$
DECLARE
    r text;
    n bigint;
BEGIN
    lost := 0;
    SELECT count(*) INTO total FROM public.upgrade_snapshot;
    FOR r IN SELECT DISTINCT rel FROM public.upgrade_snapshot LOOP
        EXECUTE format('SELECT count(*) FROM public.upgrade_snapshot s WHERE s.rel = %L
                        AND NOT EXISTS (SELECT 1 FROM %s t WHERE to_jsonb(t) @> s.row)', r, r) INTO n;
        IF n > 0 THEN
            RAISE WARNING 'table %: % rows lost', r, n;
        END IF;
        lost := lost + n;
    END LOOP;
    RETURN NEXT;
END
$$;
SET ventros.include_deleted = on;
SELECT lost || ' ' || total FROM pg_temp.lost();
