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

-- The gap of a resumed subscription: the tenant's events a subscriber that
-- received the event at publish position after_position (Last-Event-ID) may
-- have missed, of the aggregate types the role may see, at most max_events
-- (the front asks one more to know the gap is larger):
--   * the events published after it, in publish order (position): through
--     ventros.outbox_positions, never by seq, since events are published
--     out of seq order (a seq taken before a higher one, committed after);
--   * then the events not recorded as published yet (pending, with no
--     position: in flight, or waiting), in seq order.  Some may have reached
--     the front before the subscription joined its feed (in flight: sent,
--     not yet confirmed); those that did not arrive live later, where the
--     front drops their copy by seq.
-- An event that is neither was received before after_position, or is dead.
CREATE FUNCTION ventros.stream_gap(after_position bigint, max_events integer)
RETURNS TABLE ("position" bigint, seq bigint, event_type text, aggregate_type text, aggregate_id uuid, envelope text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH visible AS (SELECT pg_catalog.unnest(s.aggregate_types) AS aggregate_type FROM ventros.stream_open() s),
    published AS (
        SELECT p.position, o.seq, o.event_type, o.aggregate_type, o.aggregate_id, ventros.envelope(o)::text AS envelope
          FROM ventros.outbox_positions p
          CROSS JOIN LATERAL (SELECT o.* FROM ventros.outbox o
                               WHERE o.tenant_id = p.tenant_id AND o.seq = p.seq OFFSET 0) o
         WHERE p.tenant_id = ventros.current_tenant()
           AND p.position > after_position
           AND o.aggregate_type IN (SELECT v.aggregate_type FROM visible v)
         ORDER BY p.position
         LIMIT max_events),
    pending AS (
        SELECT NULL::bigint AS position, o.seq, o.event_type, o.aggregate_type, o.aggregate_id, ventros.envelope(o)::text AS envelope
          FROM ventros.outbox_queue q
          CROSS JOIN LATERAL (SELECT o.* FROM ventros.outbox o
                               WHERE o.tenant_id = q.tenant_id AND o.seq = q.seq OFFSET 0) o
         WHERE q.tenant_id = ventros.current_tenant()
           AND NOT q.dead
           AND o.aggregate_type IN (SELECT v.aggregate_type FROM visible v)
         ORDER BY q.seq
         LIMIT max_events)
    SELECT g.* FROM (SELECT * FROM published UNION ALL SELECT * FROM pending) g
     ORDER BY g.position NULLS LAST, g.seq
     LIMIT max_events
$$;
COMMENT ON FUNCTION ventros.stream_gap(bigint, integer) IS
    'Events of the acting tenant an event-stream subscriber resuming after publish position after_position (Last-Event-ID) may have missed, of the aggregate types the current role may see (ventros.stream_open): those published after it in publish order, then those not yet recorded as published (position NULL) in seq order, at most max_events';

GRANT EXECUTE ON FUNCTION ventros.stream_open() TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.stream_gap(bigint, integer) TO ventros_viewer;
