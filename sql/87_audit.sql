-- The audit trail: who changed which field of which aggregate, and when,
-- answered by one query over the outbox.  Every write of an aggregate leaves
-- an event with its actor; an update's payload is {changed, previous}, a
-- creation's payload the new row; business events without a change set
-- appear as one line with their payload as the new value.

CREATE FUNCTION ventros.audit_trail(aggregate_type text DEFAULT NULL, aggregate_id uuid DEFAULT NULL,
                                    field text DEFAULT NULL, actor text DEFAULT NULL,
                                    since timestamptz DEFAULT NULL, until timestamptz DEFAULT NULL,
                                    after_seq bigint DEFAULT NULL, page_size integer DEFAULT 100)
RETURNS TABLE (seq bigint, occurred_at timestamptz, actor text, event_type text, aggregate_type text,
               aggregate_id uuid, aggregate_version integer, field text, old_value jsonb, new_value jsonb)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- A page is whole events (keyset on seq), expanded into one line per field.
    WITH page AS (
        SELECT o.* FROM ventros.outbox o
        WHERE o.tenant_id = ventros.require_tenant()
          AND (audit_trail.aggregate_type IS NULL OR o.aggregate_type = audit_trail.aggregate_type)
          AND (audit_trail.aggregate_id IS NULL OR o.aggregate_id = audit_trail.aggregate_id)
          AND (audit_trail.actor IS NULL OR o.actor = audit_trail.actor)
          AND (since IS NULL OR o.occurred_at >= since)
          AND (until IS NULL OR o.occurred_at < until)
          AND (after_seq IS NULL OR o.seq > after_seq)
          AND (audit_trail.field IS NULL OR o.payload->'changed' ? audit_trail.field
               OR (o.event_type = o.aggregate_type || '.created' AND o.payload ? audit_trail.field))
        ORDER BY o.seq
        LIMIT ventros.check_page_size(page_size))
    SELECT o.seq, o.occurred_at, o.actor, o.event_type, o.aggregate_type, o.aggregate_id, o.aggregate_version,
           f.field, f.old_value, f.new_value
    FROM page o
    CROSS JOIN LATERAL (
        SELECT c.key AS field, o.payload->'previous'->c.key AS old_value, c.value AS new_value
        FROM jsonb_each(CASE WHEN jsonb_typeof(o.payload->'changed') = 'object' THEN o.payload->'changed' END) c
        UNION ALL
        SELECT n.key, NULL, n.value
        FROM jsonb_each(o.payload) n
        WHERE o.event_type = o.aggregate_type || '.created'
          AND n.key NOT IN ('id', 'tenant_id', 'version', 'created_at', 'updated_at', 'deleted_at')
        UNION ALL
        SELECT NULL, NULL, o.payload
        WHERE jsonb_typeof(o.payload->'changed') IS DISTINCT FROM 'object'
          AND o.event_type <> o.aggregate_type || '.created') f
    WHERE audit_trail.field IS NULL OR f.field = audit_trail.field
    ORDER BY o.seq, f.field
$$;
COMMENT ON FUNCTION ventros.audit_trail(text, uuid, text, text, timestamptz, timestamptz, bigint, integer) IS
    'Who changed which field of which aggregate and when (old and new value), from the outbox; pages of whole events, keyset on seq';

GRANT EXECUTE ON FUNCTION ventros.audit_trail(text, uuid, text, text, timestamptz, timestamptz, bigint, integer) TO ventros_viewer;
