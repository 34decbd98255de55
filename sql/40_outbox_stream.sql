-- The event stream of ventros-http (GET /events/stream, docs/realtime.md):
-- what a subscriber may see, and the events it missed since its last one.
-- Both run as the subscriber's role under row-level security (SECURITY
-- INVOKER): the tenant is the caller's, the outbox rows those its policy
-- shows.  The live feed itself comes from RabbitMQ, never from here: these
-- run once per subscription.

-- Aggregate types whose events a role may see: those of the registered
-- aggregates whose table it may read, and custom events (tenants' own,
-- aggregate custom, no table) for every role that may read the outbox.
CREATE FUNCTION ventros.stream_open()
RETURNS TABLE (tenant_id text, aggregate_types text[])
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT pg_catalog.has_table_privilege('ventros.outbox', 'SELECT') THEN
        RAISE EXCEPTION 'permission denied for the event stream'
            USING ERRCODE = '42501', DETAIL = pg_catalog.format('Role %s may not read ventros.outbox.', current_user),
                  HINT = 'Subscribe as ventros_viewer, ventros_agent or ventros_admin.';
    END IF;
    RETURN QUERY
    SELECT ventros.current_tenant(),
           ARRAY(SELECT a.aggregate FROM ventros.aggregates a
                  WHERE pg_catalog.has_table_privilege(a.table_name, 'SELECT')
                 UNION ALL SELECT 'custom'
                 ORDER BY 1);
END
$$;
COMMENT ON FUNCTION ventros.stream_open() IS
    'The acting tenant and the aggregate types whose events the current role may see on the event stream (registered aggregates whose table it may read, and custom); 42501 when it may not read the outbox';

-- The gap of a resumed subscription: the tenant's events after after_seq
-- (Last-Event-ID) still in the outbox, of the aggregate types the role may
-- see, in seq order, at most max_events (the front asks one more to know
-- the gap is larger).  Pending events are included: they are committed,
-- and the live feed's copy is dropped by seq.
CREATE FUNCTION ventros.stream_gap(after_seq bigint, max_events integer)
RETURNS TABLE (seq bigint, event_type text, aggregate_type text, aggregate_id uuid, envelope text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT o.seq, o.event_type, o.aggregate_type, o.aggregate_id, ventros.envelope(o)::text
      FROM ventros.outbox o
     WHERE o.tenant_id = ventros.current_tenant()
       AND o.seq > after_seq
       AND o.aggregate_type IN (SELECT pg_catalog.unnest(s.aggregate_types) FROM ventros.stream_open() s)
     ORDER BY o.seq
     LIMIT max_events
$$;
COMMENT ON FUNCTION ventros.stream_gap(bigint, integer) IS
    'Events of the acting tenant after after_seq still in the outbox, of the aggregate types the current role may see (ventros.stream_open), in seq order, at most max_events: the gap an event-stream subscriber resuming with Last-Event-ID missed';

GRANT EXECUTE ON FUNCTION ventros.stream_open() TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.stream_gap(bigint, integer) TO ventros_viewer;
