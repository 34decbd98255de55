-- Part of aggregate 30, Outbox (core): processed_events, the consumers' inbox
-- for idempotency.  A consumer records (event_id, consumer_name) in the
-- transaction of its work; a second delivery of the same event finds the row
-- and skips.  This table is deliberately not an engine aggregate: an outbox
-- event for every consumed event would double the outbox's traffic and
-- describe no business fact.  A row is written once and never changed, so
-- it has none of an aggregate's version or update and deletion times (no
-- engine trigger would keep them): its id, tenant, the event and consumer,
-- when and how long.  Forced RLS, as every tenant table.

CREATE TABLE ventros.processed_events (
    id                     uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id              text        NOT NULL DEFAULT ventros.require_tenant(),
    event_id               uuid        NOT NULL,
    consumer_name          text        NOT NULL,
    processed_at           timestamptz NOT NULL DEFAULT now(),
    processing_duration_ms integer,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT processed_events_unique UNIQUE (tenant_id, event_id, consumer_name),
    CONSTRAINT processed_events_consumer_format CHECK (consumer_name ~ '^[a-z][a-z0-9_.-]{0,99}$'),
    CONSTRAINT processed_events_duration CHECK (processing_duration_ms >= 0)
);
COMMENT ON TABLE ventros.processed_events IS
    'Consumer inbox: which consumer processed which event (idempotency); not an engine aggregate, so no events';

ALTER TABLE ventros.processed_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.processed_events FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_select ON ventros.processed_events FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
CREATE POLICY ventros_tenant_insert ON ventros.processed_events FOR INSERT
    WITH CHECK (tenant_id = (SELECT ventros.current_tenant()));
REVOKE ALL ON ventros.processed_events FROM PUBLIC;
GRANT SELECT ON ventros.processed_events TO ventros_viewer;
GRANT INSERT ON ventros.processed_events TO ventros_agent;

-- mark_event_processed: true the first time a consumer records an event, false
-- for a redelivery.  Call it first in the consumer's transaction and skip the
-- work on false; concurrent deliveries wait on the unique index, and the
-- loser sees false once the winner commits.
CREATE FUNCTION ventros.mark_event_processed(event_id uuid, consumer_name text, processing_duration_ms integer DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    inserted integer;
BEGIN
    IF event_id IS NULL OR consumer_name IS NULL THEN
        RAISE EXCEPTION '% must not be null', CASE WHEN event_id IS NULL THEN 'event_id' ELSE 'consumer_name' END
            USING ERRCODE = '23502';
    END IF;
    IF consumer_name !~ '^[a-z][a-z0-9_.-]{0,99}$' THEN
        RAISE EXCEPTION 'malformed consumer name "%"', left(consumer_name, 64)
            USING ERRCODE = '22023', HINT = 'Consumer names are lowercase, like crm.webhooks.';
    END IF;
    INSERT INTO ventros.processed_events AS p (tenant_id, event_id, consumer_name, processing_duration_ms)
    VALUES (ventros.require_tenant(), event_id, consumer_name, processing_duration_ms)
    ON CONFLICT ON CONSTRAINT processed_events_unique DO NOTHING;
    GET DIAGNOSTICS inserted = ROW_COUNT;
    RETURN inserted = 1;
END
$$;
COMMENT ON FUNCTION ventros.mark_event_processed(uuid, text, integer) IS
    'Records that a consumer processed an event: true the first time, false for a redelivery';

CREATE FUNCTION ventros.is_event_processed(event_id uuid, consumer_name text)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM ventros.processed_events p
                   WHERE p.tenant_id = ventros.require_tenant() AND p.event_id = is_event_processed.event_id
                     AND p.consumer_name = is_event_processed.consumer_name)
$$;
COMMENT ON FUNCTION ventros.is_event_processed(uuid, text) IS 'Whether a consumer has processed an event';

GRANT EXECUTE ON FUNCTION ventros.is_event_processed(uuid, text) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.mark_event_processed(uuid, text, integer) TO ventros_agent;
