-- Bulk variants for bench/engine: each updates every bench row and writes the
-- events Ventros writes for it (contact.updated, then contact.name_changed),
-- and returns microseconds per row.  Run inside a transaction
-- that is rolled back, so every round starts from the same tables.
CREATE FUNCTION bench.bulk_floor() RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
    n bigint;
BEGIN
    UPDATE bench.floor_contacts SET name = name || '!', version = version + 1, updated_at = now();
    GET DIAGNOSTICS n = ROW_COUNT;
    INSERT INTO bench.floor_outbox (tenant_id, seq, event_id, event_type, aggregate_type, aggregate_id,
                                    aggregate_version, payload, actor, occurred_at)
    SELECT c.tenant_id, nextval('bench.floor_seq'), gen_random_uuid(), e.type, 'contact', c.id, e.version, e.payload,
           session_user, statement_timestamp()
    FROM bench.floor_contacts c,
         LATERAL (VALUES ('contact.updated', c.version,
                          jsonb_build_object('changed', jsonb_build_object('name', c.name),
                                             'previous', jsonb_build_object('name', left(c.name, -1)))),
                         ('contact.name_changed', NULL,
                          jsonb_build_object('name', c.name, 'previous_name', left(c.name, -1)))) e(type, version, payload);
    RETURN round(extract(epoch FROM clock_timestamp() - t0) * 1e6 / n, 2);
END
$$;
-- The same, with the publisher's queue row of each event (ventros.outbox_queue:
-- seq, tenant, aggregate), which Ventros writes beside every outbox row: the
-- same rows as the Ventros side.
CREATE FUNCTION bench.bulk_floor_queue() RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
    n bigint;
BEGIN
    UPDATE bench.floor_contacts SET name = name || '!', version = version + 1, updated_at = now();
    GET DIAGNOSTICS n = ROW_COUNT;
    WITH e AS (
        INSERT INTO bench.floor_outbox (tenant_id, seq, event_id, event_type, aggregate_type, aggregate_id,
                                        aggregate_version, payload, actor, occurred_at)
        SELECT c.tenant_id, nextval('bench.floor_seq'), gen_random_uuid(), e.type, 'contact', c.id, e.version, e.payload,
               session_user, statement_timestamp()
        FROM bench.floor_contacts c,
             LATERAL (VALUES ('contact.updated', c.version,
                              jsonb_build_object('changed', jsonb_build_object('name', c.name),
                                                 'previous', jsonb_build_object('name', left(c.name, -1)))),
                             ('contact.name_changed', NULL,
                              jsonb_build_object('name', c.name, 'previous_name', left(c.name, -1)))) e(type, version, payload)
        RETURNING seq, tenant_id, aggregate_id)
    INSERT INTO bench.floor_outbox_queue (seq, tenant_id, aggregate_id) SELECT seq, tenant_id, aggregate_id FROM e;
    RETURN round(extract(epoch FROM clock_timestamp() - t0) * 1e6 / n, 2);
END
$$;
CREATE FUNCTION bench.bulk_ventros() RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
    n bigint;
BEGIN
    UPDATE ventros.contacts SET name = name || '!', version = version WHERE tenant_id = 'bench';
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN round(extract(epoch FROM clock_timestamp() - t0) * 1e6 / n, 2);
END
$$;
CREATE FUNCTION bench.bulk_plpgsql() RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
    n bigint;
BEGIN
    UPDATE bench.plpgsql_contacts SET name = name || '!';
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN round(extract(epoch FROM clock_timestamp() - t0) * 1e6 / n, 2);
END
$$;
