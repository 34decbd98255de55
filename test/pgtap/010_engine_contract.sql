-- The engine contract, for every aggregate registered in ventros.aggregates:
-- a new aggregate is tested the moment it is registered (it needs a sample in
-- test/fixtures/samples/).  Acting as ventros_admin of tenant contract_a, with
-- tenant contract_b as the neighbour that must see and change nothing.  The
-- rows are created through the samples' commands as ventros_admin; the
-- engine's own rules (versions, transitions, soft delete) are then driven by
-- plain UPDATE and DELETE as the table's owner, as commands and workers
-- write: a tenant role's direct write meets the aggregate's declared outcome
-- first (test/pgtap/620_direct_writes.sql).
BEGIN;
SELECT * FROM no_plan();
SET LOCAL client_min_messages = warning;

SELECT ventros.create_tenant('contract_a', 'Contract A');
SELECT ventros.create_tenant('contract_b', 'Contract B');

CREATE FUNCTION pg_temp.contract(agg ventros.aggregates) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    sample    ventros_test.aggregate_samples;
    t         text := agg.table_name::text;
    a         text := agg.aggregate;
    id        text;
    id2       text;
    res       text;
    r         record;
    events    text[];
    upd       text;
    state_now text;
    allowed   record;
    forbidden text;
BEGIN
    SELECT * INTO sample FROM ventros_test.aggregate_samples s WHERE s.aggregate = agg.aggregate;
    RETURN NEXT ok(sample.aggregate IS NOT NULL, a || ': has a sample in test/fixtures/samples');
    IF sample.aggregate IS NULL THEN RETURN; END IF;

    RETURN NEXT ok(c.relrowsecurity AND c.relforcerowsecurity, a || ': row-level security enabled and forced')
        FROM pg_class c WHERE c.oid = agg.table_name;

    -- create
    id := ventros_test.run_as(sample.role, 'contract_a', sample.create_sql);
    RETURN NEXT ok(id IS NOT NULL AND id !~ '^ERROR', a || ': created by ventros_admin (' || coalesce(id, 'NULL') || ')');
    IF id IS NULL OR id ~ '^ERROR' THEN RETURN; END IF;

    SET LOCAL ventros.include_deleted = on;
    EXECUTE format('SELECT version, tenant_id, created_at = now() AND updated_at = now() AS stamped FROM %s WHERE id = $1', t)
        INTO r USING id::uuid;
    RETURN NEXT is(r.version, 1, a || ': a new row has version 1');
    RETURN NEXT is(r.tenant_id, 'contract_a', a || ': tenant_id defaults to the acting tenant');
    RETURN NEXT ok(r.stamped, a || ': created_at and updated_at set by the engine');
    events := ventros_test.events_of(id::uuid);
    RETURN NEXT ok(a || '.created' = ANY (events)
                   OR EXISTS (SELECT 1 FROM ventros.aggregate_transitions tr
                              WHERE tr.aggregate = a AND tr.from_state IS NULL AND tr.event_type = ANY (events)),
                   a || ': creation emitted its created event (' || array_to_string(events, ',') || ')');
    RETURN NEXT is((SELECT count(*)::int FROM ventros.outbox o WHERE o.aggregate_id = id::uuid AND o.tenant_id <> 'contract_a'),
                   0, a || ': its events carry its tenant');

    -- neighbours see and change nothing; the tenant's own roles see it
    FOREACH res IN ARRAY ARRAY['ventros_viewer', 'ventros_agent', 'ventros_admin'] LOOP
        RETURN NEXT is(ventros_test.run_as(res, 'contract_b', format('SELECT count(*) FROM %s WHERE id = %L', t, id)),
                       '0', a || ': invisible to ' || res || ' of another tenant');
        RETURN NEXT is(ventros_test.run_as(res, 'contract_a', format('SELECT count(*) FROM %s WHERE id = %L', t, id)),
                       '1', a || ': visible to ' || res || ' of its tenant');
    END LOOP;
    RETURN NEXT ok(ventros_test.run_as('ventros_anon', 'contract_a', format('SELECT count(*) FROM %s', t)) LIKE 'ERROR 42501%',
                   a || ': ventros_anon may not read it');
    -- (as the role that writes it: ventros_admin, or the platform's for billing states)
    RETURN NEXT is(ventros_test.run_as(sample.role, 'contract_b',
                       format('UPDATE %s SET version = version WHERE id = %L RETURNING 1', t, id)),
                   NULL, a || ': another tenant''s ' || sample.role || ' updates nothing');
    RETURN NEXT is(ventros_test.run_as(sample.role, 'contract_b', format('DELETE FROM %s WHERE id = %L', t, id)),
                   NULL, a || ': another tenant''s ' || sample.role || ' deletes nothing');
    RETURN NEXT ok(ventros_test.run_as(sample.role, 'contract_a',
                       format('UPDATE %s SET tenant_id = %L, version = version WHERE id = %L RETURNING 1', t, 'contract_b', id))
                   LIKE 'ERROR 42501%', a || ': moving it to another tenant is refused (42501)');
    RETURN NEXT ok(ventros_test.run_as('postgres', 'contract_a',
                       format('UPDATE %s SET tenant_id = %L, version = version WHERE id = %L RETURNING 1', t, 'contract_b', id))
                   LIKE 'ERROR 42501%', a || ': tenant_id is immutable even for a superuser (42501)');

    -- optimistic locking
    upd := replace(replace(sample.update_sql, '$1', quote_literal(id) || '::uuid'), '$2', '1') || ' RETURNING version::text';
    RETURN NEXT is(ventros_test.run_as('postgres', 'contract_a', upd), '2',
                   a || ': an update stating the current version bumps it by one');
    events := ventros_test.events_of(id::uuid);
    -- The update's first event (granular ones, such as contact.name_changed, may follow it).
    RETURN NEXT is((SELECT event_type FROM ventros.outbox WHERE aggregate_id = id::uuid AND aggregate_version = 2
                    ORDER BY seq LIMIT 1), a || '.updated', a || ': the update emitted ' || a || '.updated');
    RETURN NEXT ok((SELECT payload ? 'changed' AND payload ? 'previous' AND payload->'changed' <> '{}'
                    FROM ventros.outbox WHERE aggregate_id = id::uuid AND aggregate_version = 2 ORDER BY seq LIMIT 1),
                   a || ': the updated event carries the changed fields and their previous values');
    RETURN NEXT ok(ventros_test.run_as('postgres', 'contract_a', upd) LIKE 'ERROR VN001%',
                   a || ': a stale version is refused with VN001');
    RETURN NEXT ok(ventros_test.run_as('postgres', 'contract_a',
                       format('UPDATE %s SET updated_at = now() WHERE id = %L RETURNING 1', t, id)) LIKE 'ERROR 22023%',
                   a || ': an update that does not state the version is refused (22023)');
    RETURN NEXT is(ventros_test.run_as('postgres', 'contract_a',
                       format('UPDATE %s SET version = 2 WHERE id = %L RETURNING version::text', t, id)), '2',
                   a || ': an update that changes nothing keeps the version');
    RETURN NEXT is(cardinality(ventros_test.events_of(id::uuid)), cardinality(events),
                   a || ': an update that changes nothing emits nothing');

    -- state machine: one allowed and one refused transition from the current state
    IF agg.state_column IS NOT NULL THEN
        EXECUTE format('SELECT %I::text FROM %s WHERE id = $1', agg.state_column, t) INTO state_now USING id::uuid;
        IF state_now IN ('t', 'f') THEN state_now := CASE state_now WHEN 't' THEN 'true' ELSE 'false' END; END IF;
        SELECT to_state INTO forbidden FROM ventros.aggregate_transitions tr
        WHERE tr.aggregate = a AND tr.to_state <> state_now
          AND NOT EXISTS (SELECT 1 FROM ventros.aggregate_transitions x
                          WHERE x.aggregate = a AND x.from_state = state_now AND x.to_state = tr.to_state)
        ORDER BY to_state LIMIT 1;
        IF forbidden IS NOT NULL THEN
            RETURN NEXT ok(ventros_test.run_as('postgres', 'contract_a',
                               format('UPDATE %s SET %I = %L, version = 2 WHERE id = %L RETURNING 1', t, agg.state_column, forbidden, id))
                           LIKE 'ERROR VN002%', a || ': ' || state_now || ' -> ' || forbidden || ' is refused with VN002');
        END IF;
        SELECT * INTO allowed FROM ventros.aggregate_transitions tr
        WHERE tr.aggregate = a AND tr.from_state = state_now ORDER BY to_state LIMIT 1;
        IF allowed.to_state IS NOT NULL THEN
            RETURN NEXT is(ventros_test.run_as('postgres', 'contract_a',
                               format('UPDATE %s SET %I = %L, version = 2 WHERE id = %L RETURNING version::text',
                                      t, agg.state_column, allowed.to_state, id)),
                           '3', a || ': ' || state_now || ' -> ' || allowed.to_state || ' is allowed');
            events := ventros_test.events_of(id::uuid);
            RETURN NEXT is(events[cardinality(events)], coalesce(allowed.event_type, a || '.updated'),
                           a || ': the transition emitted ' || coalesce(allowed.event_type, a || '.updated'));
        END IF;
    END IF;

    -- soft delete
    EXECUTE format('SELECT version FROM %s WHERE id = $1', t) INTO r USING id::uuid;
    RETURN NEXT is(ventros_test.run_as('postgres', 'contract_a', format('DELETE FROM %s WHERE id = %L', t, id)),
                   NULL, a || ': DELETE by the table''s owner succeeds');
    SET LOCAL ventros.include_deleted = off;
    RETURN NEXT is(ventros_test.run_as('ventros_admin', 'contract_a', format('SELECT count(*) FROM %s WHERE id = %L', t, id)),
                   '0', a || ': a soft-deleted row is hidden from queries');
    SET LOCAL ventros.include_deleted = on;
    EXECUTE format('SELECT version AS v, deleted_at IS NOT NULL AS deleted FROM %s WHERE id = $1', t) INTO r USING id::uuid;
    RETURN NEXT ok(r.deleted, a || ': DELETE keeps the row with deleted_at set');
    events := ventros_test.events_of(id::uuid);
    RETURN NEXT is(events[cardinality(events)], a || '.deleted', a || ': DELETE emitted ' || a || '.deleted');
    RETURN NEXT ok(ventros_test.run_as('postgres', 'contract_a',
                       format('UPDATE %s SET version = %s WHERE id = %L RETURNING 1', t, r.v, id)) LIKE 'ERROR P0002%',
                   a || ': a soft-deleted row refuses updates (P0002)');
    RETURN NEXT ok(ventros_test.run_as('postgres', 'contract_a', format('DELETE FROM %s WHERE id = %L', t, id)) LIKE 'ERROR P0002%',
                   a || ': deleting twice is refused (P0002)');
    RETURN NEXT ok(ventros_test.run_as('postgres', 'contract_a', format('TRUNCATE %s CASCADE', t)) LIKE 'ERROR 0A000%',
                   a || ': TRUNCATE is refused (0A000)');

    -- events roll back with their transaction
    BEGIN
        id2 := ventros_test.run_as(sample.role, 'contract_a', sample.create_sql);
        RAISE EXCEPTION 'roll back' USING ERRCODE = 'VNT01';
    EXCEPTION WHEN SQLSTATE 'VNT01' THEN
        NULL;
    END;
    RETURN NEXT is(ventros_test.events_of(id2::uuid), '{}'::text[], a || ': a rolled-back creation leaves no event');
    SET LOCAL ventros.include_deleted = off;
END
$$;

SELECT pg_temp.contract(a) FROM ventros.aggregates a ORDER BY a.aggregate;

SELECT ok((SELECT count(*) FROM ventros.aggregates) >= 3, 'at least project, contact and channel are registered');

SELECT * FROM finish();
ROLLBACK;
