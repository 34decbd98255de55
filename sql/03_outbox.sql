-- The transactional outbox: every event, written by the C emitter in the
-- transaction of the change it describes (src/emit.c), with its entry in
-- ventros.outbox_queue, the publisher's to-do list.  The publisher's columns
-- (status .. published_at) are filled by the outbox publisher, which writes
-- a row once when it is published (and once per failed attempt): the claim
-- writes nothing (sql/40_outbox_publisher.sql).

-- CACHE 1 is load-bearing: events of one aggregate are written while its row
-- is locked, so their seq order is commit order only without per-backend
-- sequence caches.
CREATE SEQUENCE ventros.outbox_seq AS bigint CACHE 1;
COMMENT ON SEQUENCE ventros.outbox_seq IS 'Order of events; CACHE 1 keeps per-aggregate order';

-- seq is taken before commit, so events commit, and are published, out of
-- seq order: a consumer that resumes "after seq N" would miss an event with
-- a lower seq published after N.  The publisher gives each event, when it
-- claims it for publishing, a position from this sequence: it alone takes
-- them (under the publisher lock), in the order it publishes, so positions
-- grow in the order a consumer of ventros.events receives the events.  A
-- position is carried in the message (header "position") and kept in
-- ventros.outbox.position once the broker confirmed the event; the event
-- stream resumes by position (sql/40_outbox_stream.sql, docs/realtime.md).
CREATE SEQUENCE ventros.outbox_position AS bigint;
COMMENT ON SEQUENCE ventros.outbox_position IS
    'Publish order of events: taken by the outbox publisher when it claims an event, carried in the message (header position), kept in ventros.outbox.position';

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
    position          bigint,
    PRIMARY KEY (tenant_id, seq)
)
-- No index of ventros.outbox covers a column the publisher writes (status,
-- attempts, next_attempt_at, last_error, published_at, position), not even in a
-- predicate, so its updates are HOT: a new version of the row on the same
-- page and no index entry at all.  Pending rows are found through
-- ventros.outbox_queue instead.  Half of each page is left free for the
-- published versions of its rows: a batch marks all the rows of a page
-- published in one transaction, before the old versions can be pruned.
WITH (fillfactor = 50);
-- an aggregate's history (audit, erasure, tests)
CREATE INDEX outbox_aggregate ON ventros.outbox (tenant_id, aggregate_id, seq);
-- pruning finds old rows through a BRIN index of occurred_at (an event is
-- published after it occurred): its maintenance costs next to nothing
CREATE INDEX outbox_occurred ON ventros.outbox USING brin (occurred_at) WITH (autosummarize = on);
COMMENT ON TABLE ventros.outbox IS
    'Domain events, written in the transaction of their change, published to RabbitMQ by the outbox publisher';

ALTER TABLE ventros.outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.outbox FORCE ROW LEVEL SECURITY;
-- Tenants read their own events (the audit trail); nobody but the engine writes.
CREATE POLICY ventros_tenant_read ON ventros.outbox FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.outbox TO ventros_viewer;

-- The publisher's to-do list: one row per event not yet published (pending
-- or dead), written by the emitter with the event and deleted when the
-- event is published.  What a publish writes in it is a deletion (no index
-- entry); the claim walks its seq index in seq order, which holds only
-- what is left to publish (and dead index entries until vacuum or the
-- claim's own scans remove them).  A row that failed waits here for its
-- retry time (next_attempt_at); dead rows stay (dead) until replayed.
-- Invariant: an event has a queue row exactly while its outbox status is
-- pending or dead (sql/40_outbox_publisher.sql keeps both in one statement).
-- The key leads with tenant_id, as every key of a tenant's rows; the claim
-- walks outbox_queue_seq (seq is unique: one sequence for all tenants).
CREATE TABLE ventros.outbox_queue (
    seq             bigint      NOT NULL,
    tenant_id       text        NOT NULL,
    aggregate_id    uuid        NOT NULL,
    next_attempt_at timestamptz,
    dead            boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX outbox_queue_seq ON ventros.outbox_queue (seq);
-- The publisher's order check looks only at rows that may block their
-- aggregate: dead, or waiting to retry after a failed attempt.  New rows
-- (never failed) are not in it.
CREATE INDEX outbox_queue_blocking ON ventros.outbox_queue (tenant_id, aggregate_id, seq)
    WHERE dead OR next_attempt_at IS NOT NULL;
COMMENT ON TABLE ventros.outbox_queue IS
    'Events of ventros.outbox not yet published (pending or dead): written with the event, deleted when it is published';
ALTER TABLE ventros.outbox_queue ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.outbox_queue FORCE ROW LEVEL SECURITY;
-- Tenants may read their own queue rows, as their events; nobody but the
-- emitter (src/emit.c writes it below the permission checks, as the
-- outbox), the publisher (a superuser) and the extension's SECURITY DEFINER
-- functions writes it.
REVOKE ALL ON ventros.outbox_queue FROM PUBLIC;
CREATE POLICY ventros_tenant_read ON ventros.outbox_queue FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.outbox_queue TO ventros_viewer;

-- The publish order of each tenant's published events, an index of
-- ventros.outbox.position kept by hand: an index of the outbox on position
-- would make every publish update a non-HOT one (a new entry in each index
-- of the outbox).  One row per published event, written in the statement
-- that marks it published (ventros.outbox_mark_published and
-- ventros.outbox_published), deleted with its event (the trigger below).
-- Read by ventros.stream_gap: the events a subscriber missed after a
-- position, in the order it would have received them.
CREATE TABLE ventros.outbox_positions (
    tenant_id text   NOT NULL,
    position  bigint NOT NULL,
    seq       bigint NOT NULL,
    PRIMARY KEY (tenant_id, position)
);
COMMENT ON TABLE ventros.outbox_positions IS
    'Published events by tenant in publish order (position, from ventros.outbox_position): the index of ventros.outbox.position the event stream resumes by';
ALTER TABLE ventros.outbox_positions ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.outbox_positions FORCE ROW LEVEL SECURITY;
REVOKE ALL ON ventros.outbox_positions FROM PUBLIC;
CREATE POLICY ventros_tenant_read ON ventros.outbox_positions FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.outbox_positions TO ventros_viewer;

-- Events deleted from the outbox (pruning, tests, a bulk clean-up) leave
-- the queue with them: a queue row whose event is gone would be pending
-- for ever; and ventros.outbox_positions (by its key, from the position
-- the deleted row held).  A statement trigger: pruning deletes published events, which
-- have no queue row, in chunks.
CREATE FUNCTION ventros.outbox_forget_deleted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        TRUNCATE ventros.outbox_queue, ventros.outbox_positions;
    ELSE
        DELETE FROM ventros.outbox_queue q USING gone g WHERE q.seq = g.seq;
        DELETE FROM ventros.outbox_positions p USING gone g
         WHERE p.tenant_id = g.tenant_id AND p.position = g.position;
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.outbox_forget_deleted() IS
    'Trigger: deleted (or truncated) outbox events leave ventros.outbox_queue and ventros.outbox_positions too';
CREATE TRIGGER outbox_forget_deleted AFTER DELETE ON ventros.outbox
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION ventros.outbox_forget_deleted();
CREATE TRIGGER outbox_forget_truncated AFTER TRUNCATE ON ventros.outbox
    FOR EACH STATEMENT EXECUTE FUNCTION ventros.outbox_forget_deleted();

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
    'Writes a registered business event (contact.merged, ...) to the outbox in the current transaction; the caller must be allowed to UPDATE the aggregate''s table (42501 otherwise)';

-- emit_custom_event: a tenant's own event, as type custom.<name> of the
-- aggregate "custom" (reserved: no registered event type may use it), so
-- that no consumer mistakes it for a domain event (docs/events.md).
CREATE FUNCTION ventros.emit_custom_event(name text, payload jsonb DEFAULT '{}')
RETURNS text
LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'ventros_emit_custom_event';
COMMENT ON FUNCTION ventros.emit_custom_event(text, jsonb) IS
    'Writes a custom event of the acting tenant (type custom.<name>, aggregate custom, one stream per name) to the outbox; returns its type';

GRANT EXECUTE ON FUNCTION ventros.envelope(ventros.outbox) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.emit(text, text, uuid, jsonb, integer) TO ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.emit_custom_event(text, jsonb) TO ventros_agent;
