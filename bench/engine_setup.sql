-- bench/engine: three tables of the contacts' shape, one per way of doing the
-- same work, and an outbox-shaped table for each hand-written variant.
--   floor_*    the change written by hand in one statement (no trigger)
--   ventros.contacts  through the aggregate engine
--   plpgsql_*  the same behaviour as a PL/pgSQL trigger, the usual way
\set ON_ERROR_STOP on
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS bench CASCADE;
CREATE SCHEMA bench;
SELECT ventros.create_tenant('bench', 'Bench') WHERE NOT EXISTS (SELECT 1 FROM ventros.projects WHERE tenant_id = 'bench');

CREATE TABLE bench.floor_contacts (LIKE ventros.contacts INCLUDING ALL);
CREATE TABLE bench.floor_outbox (LIKE ventros.outbox INCLUDING ALL);
CREATE SEQUENCE bench.floor_seq CACHE 1;
-- the publisher's queue rows Ventros writes beside each event (bulk_floor_queue)
CREATE TABLE bench.floor_outbox_queue (LIKE ventros.outbox_queue INCLUDING ALL);
CREATE TABLE bench.plpgsql_contacts (LIKE ventros.contacts INCLUDING ALL);
CREATE TABLE bench.plpgsql_outbox (LIKE ventros.outbox INCLUDING ALL);
CREATE SEQUENCE bench.plpgsql_seq CACHE 1;
CREATE TABLE bench.ids (n int PRIMARY KEY, id uuid NOT NULL);

CREATE FUNCTION bench.plpgsql_engine() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed jsonb;
    previous jsonb;
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.version := 1;
        NEW.created_at := now();
        NEW.updated_at := now();
        INSERT INTO bench.plpgsql_outbox (tenant_id, seq, event_id, event_type, aggregate_type, aggregate_id,
                                          aggregate_version, payload, actor, occurred_at)
        VALUES (NEW.tenant_id, nextval('bench.plpgsql_seq'), gen_random_uuid(), 'contact.created', 'contact', NEW.id,
                1, to_jsonb(NEW), session_user, statement_timestamp());
        RETURN NEW;
    END IF;
    IF NEW.version <> OLD.version THEN
        RAISE EXCEPTION 'contact % has changed since version % was read', OLD.id, NEW.version USING ERRCODE = 'VN001';
    END IF;
    NEW.version := OLD.version + 1;
    NEW.updated_at := now();
    NEW.created_at := OLD.created_at;
    SELECT jsonb_object_agg(n.key, n.value), jsonb_object_agg(n.key, to_jsonb(OLD) -> n.key)
      INTO changed, previous
      FROM jsonb_each(to_jsonb(NEW)) n
     WHERE n.key NOT IN ('version', 'updated_at', 'created_at') AND (to_jsonb(OLD) -> n.key) IS DISTINCT FROM n.value;
    INSERT INTO bench.plpgsql_outbox (tenant_id, seq, event_id, event_type, aggregate_type, aggregate_id,
                                      aggregate_version, payload, actor, occurred_at)
    VALUES (NEW.tenant_id, nextval('bench.plpgsql_seq'), gen_random_uuid(), 'contact.updated', 'contact', NEW.id,
            NEW.version, jsonb_build_object('changed', changed, 'previous', previous), session_user, statement_timestamp());
    IF NEW.name IS DISTINCT FROM OLD.name THEN
        INSERT INTO bench.plpgsql_outbox (tenant_id, seq, event_id, event_type, aggregate_type, aggregate_id,
                                          aggregate_version, payload, actor, occurred_at)
        VALUES (NEW.tenant_id, nextval('bench.plpgsql_seq'), gen_random_uuid(), 'contact.name_changed', 'contact', NEW.id,
                NULL, jsonb_build_object('name', NEW.name, 'previous_name', OLD.name), session_user, statement_timestamp());
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER plpgsql_engine BEFORE INSERT OR UPDATE ON bench.plpgsql_contacts
    FOR EACH ROW EXECUTE FUNCTION bench.plpgsql_engine();

-- :rows contacts in each table, with the same ids.
SET ventros.tenant = 'bench';
INSERT INTO ventros.contacts (id, project_id, name, phone)
SELECT gen_random_uuid(), ventros.default_project(), 'Contact ' || i, '+5511' || lpad(i::text, 9, '0')
FROM generate_series(1, :rows) i;
INSERT INTO bench.ids SELECT row_number() OVER (ORDER BY id), id FROM ventros.contacts WHERE tenant_id = 'bench';
SET session_replication_role = replica;
INSERT INTO bench.floor_contacts SELECT * FROM ventros.contacts WHERE tenant_id = 'bench';
INSERT INTO bench.plpgsql_contacts SELECT * FROM ventros.contacts WHERE tenant_id = 'bench';
RESET session_replication_role;
TRUNCATE ventros.outbox;   -- and its queue (its truncate trigger)
VACUUM ANALYZE;
