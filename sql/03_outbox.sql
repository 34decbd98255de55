-- The transactional outbox: every event, written by the C emitter in the
-- transaction of the change it describes (src/emit.c).  The publisher's
-- columns (status .. published_at) are filled by the outbox publisher, which
-- writes a row once when it is published (and once per failed attempt): the
-- claim writes nothing (sql/40_outbox_publisher.sql).

-- CACHE 1 is load-bearing: events of one aggregate are written while its row
-- is locked, so their seq order is commit order only without per-backend
-- sequence caches.
CREATE SEQUENCE ventros.outbox_seq AS bigint CACHE 1;
COMMENT ON SEQUENCE ventros.outbox_seq IS 'Order of events; CACHE 1 keeps per-aggregate order';

CREATE TABLE ventros.outbox (
    tenant_id         text        NOT NULL,
    seq               bigint      NOT NULL,
    event_id          uuid        NOT NULL,
    event_type        text        NOT NULL,
    aggregate_type    text        NOT NULL,
    aggregate_id      uuid        NOT NULL,
    aggregate_version integer,
    payload           jsonb       NOT NULL,
    actor             text,
    occurred_at       timestamptz NOT NULL,
    status            text        NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'published', 'dead')),
    attempts          integer     NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz,
    last_error        text,
    published_at      timestamptz,
    PRIMARY KEY (tenant_id, seq)
)
-- Room on each page for the published version of its rows: that update
-- cannot be HOT (status is in the partial indexes' predicates), but on the
-- same page it is cheaper and does not extend the table.
WITH (fillfactor = 70);
CREATE INDEX outbox_pending ON ventros.outbox (seq) WHERE status = 'pending';
CREATE INDEX outbox_aggregate ON ventros.outbox (tenant_id, aggregate_id, seq);
-- The publisher's order check looks only at rows that may block their
-- aggregate: dead, or waiting to retry after a failed attempt
-- (sql/40_outbox_publisher.sql).  Publishing a row (pending -> published)
-- inserts into the primary key and outbox_aggregate only: neither this
-- index nor outbox_pending takes published rows, and pruning finds old rows
-- through a BRIN index of occurred_at (an event is published after it
-- occurred), which costs a write next to nothing.
CREATE INDEX outbox_blocking ON ventros.outbox (tenant_id, aggregate_id, seq)
    WHERE status = 'dead' OR (status = 'pending' AND next_attempt_at IS NOT NULL);
CREATE INDEX outbox_occurred ON ventros.outbox USING brin (occurred_at) WITH (autosummarize = on);
COMMENT ON TABLE ventros.outbox IS
    'Domain events, written in the transaction of their change, published to RabbitMQ by the outbox publisher';

ALTER TABLE ventros.outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.outbox FORCE ROW LEVEL SECURITY;
-- Tenants read their own events (the audit trail); nobody but the engine writes.
CREATE POLICY ventros_tenant_read ON ventros.outbox FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.outbox TO ventros_viewer;

-- The CloudEvents 1.0 envelope of an event; o.envelope works as a column.
CREATE FUNCTION ventros.envelope(o ventros.outbox) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT pg_catalog.jsonb_build_object(
        'specversion', '1.0',
        'id', o.event_id,
        'source', '/ventros/' || o.tenant_id || '/' || o.aggregate_type,
        'type', o.event_type,
        'subject', o.aggregate_id,
        'time', o.occurred_at,
        'datacontenttype', 'application/json',
        'tenantid', o.tenant_id,
        'aggregatetype', o.aggregate_type,
        'aggregateid', o.aggregate_id,
        'aggregateversion', o.aggregate_version,
        'sequence', o.seq,
        'actor', o.actor,
        'data', o.payload)
$$;
COMMENT ON FUNCTION ventros.envelope(ventros.outbox) IS
    'The CloudEvents 1.0 JSON envelope of an outbox event (extension attributes: tenantid, aggregatetype, aggregateid, aggregateversion, sequence, actor)';

CREATE FUNCTION ventros.emit(event_type text, aggregate_type text, aggregate_id uuid,
                             payload jsonb DEFAULT '{}', aggregate_version integer DEFAULT NULL)
RETURNS void
LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'ventros_emit';
COMMENT ON FUNCTION ventros.emit(text, text, uuid, jsonb, integer) IS
    'Writes a registered business event (contact.merged, ...) to the outbox in the current transaction';

GRANT EXECUTE ON FUNCTION ventros.envelope(ventros.outbox) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.emit(text, text, uuid, jsonb, integer) TO ventros_agent;
