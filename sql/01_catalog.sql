-- The engine's catalog: event types, registered aggregates and their state
-- machines.  Global (not per tenant): every tenant reads it, only the
-- extension's owner writes it.  A statement trigger invalidates the caches the
-- C engine builds from these tables in every backend.

CREATE FUNCTION ventros.is_valid_event_name(event_type text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    -- aggregate.action: lowercase words joined by underscores, with a verb in
    -- the past tense among the action's words (created, sent, logged_in).
    SELECT event_type ~ '^[a-z][a-z0-9]*(_[a-z0-9]+)*\.[a-z][a-z0-9]*(_[a-z0-9]+)*$'
       AND pg_catalog.length(event_type) <= 120
       AND EXISTS (
           SELECT 1
           FROM pg_catalog.unnest(pg_catalog.string_to_array(pg_catalog.split_part(event_type, '.', 2), '_')) AS word
           WHERE word ~ '[a-z]ed$'
              OR word = ANY (ARRAY['sent', 'read', 'paid', 'left', 'set', 'reset', 'built', 'made',
                                   'done', 'held', 'lost', 'won', 'sold', 'bought', 'begun', 'run',
                                   'put', 'cut', 'split', 'shut', 'withdrawn', 'taken', 'given',
                                   'seen', 'chosen', 'written', 'rewritten', 'undone', 'hidden',
                                   'shown', 'known', 'thrown', 'sent', 'bound', 'found', 'met',
                                   'kept', 'spent', 'lent', 'led', 'sped'])
       )
$$;
COMMENT ON FUNCTION ventros.is_valid_event_name(text) IS
    'True when the name has the form aggregate.action, lowercase, with a past-tense verb';

CREATE TABLE ventros.event_types (
    event_type  text PRIMARY KEY,
    aggregate   text NOT NULL,
    description text,
    CONSTRAINT event_types_name_valid CHECK (ventros.is_valid_event_name(event_type)),
    CONSTRAINT event_types_aggregate_prefix CHECK (pg_catalog.split_part(event_type, '.', 1) = aggregate),
    -- custom.<name> is the tenants' own namespace (ventros.emit_custom_event)
    CONSTRAINT event_types_not_custom CHECK (aggregate <> 'custom'),
    emitted_by  name
);
COMMENT ON TABLE ventros.event_types IS
    'Catalog of every event type Ventros may emit; an unregistered name fails loudly';
COMMENT ON COLUMN ventros.event_types.emitted_by IS
    'The role whose privileges ventros.emit needs for this type, whoever may change its aggregate (ventros.reserve_event_type); NULL: whoever may change the aggregate';

CREATE TABLE ventros.aggregates (
    aggregate        text PRIMARY KEY CHECK (aggregate ~ '^[a-z][a-z0-9]*(_[a-z0-9]+)*$'),
    table_name       regclass NOT NULL UNIQUE,
    context          text NOT NULL CHECK (context IN ('crm', 'automation', 'core')),
    state_column     name,
    redacted_columns name[] NOT NULL DEFAULT '{}',
    quiet_columns    name[] NOT NULL DEFAULT '{}',
    description      text
);
COMMENT ON TABLE ventros.aggregates IS
    'Aggregates registered with the engine (ventros.register_aggregate)';

CREATE TABLE ventros.aggregate_transitions (
    aggregate  text NOT NULL REFERENCES ventros.aggregates ON DELETE CASCADE,
    from_state text,
    to_state   text NOT NULL,
    event_type text REFERENCES ventros.event_types,
    CONSTRAINT aggregate_transitions_unique UNIQUE NULLS NOT DISTINCT (aggregate, from_state, to_state)
);
COMMENT ON TABLE ventros.aggregate_transitions IS
    'Allowed status transitions per aggregate; from_state NULL lists the allowed initial states';

-- What a direct write of an aggregate's table by a tenant role is, per
-- operation (ventros.register_writes; src/direct_writes.c): the same as its
-- first command (direct), or refused with 42501 and a hint naming the
-- commands.  columns: the fields a direct write may set (INSERT: the others
-- stay NULL) or change (UPDATE), those of that command.  An operation
-- without a row is refused.
CREATE TABLE ventros.aggregate_writes (
    aggregate text    NOT NULL REFERENCES ventros.aggregates ON DELETE CASCADE,
    operation text    NOT NULL CHECK (operation IN ('INSERT', 'UPDATE', 'DELETE')),
    direct    boolean NOT NULL,
    commands  text[]  NOT NULL,
    columns   name[],
    PRIMARY KEY (aggregate, operation),
    CONSTRAINT aggregate_writes_direct_command CHECK (NOT direct OR cardinality(commands) >= 1),
    CONSTRAINT aggregate_writes_columns_direct CHECK (columns IS NULL OR (direct AND operation <> 'DELETE'))
);
COMMENT ON TABLE ventros.aggregate_writes IS
    'Per aggregate and operation, what a direct write by a tenant role is: the same as its first command (direct), or refused naming the commands';

-- Rules of a child aggregate that belong to its parent's state ("steps change
-- only while the campaign is a draft"), checked on every write of the child,
-- whoever writes it (ventros.register_parent_guard).
CREATE TABLE ventros.aggregate_guards (
    aggregate        text   NOT NULL REFERENCES ventros.aggregates ON DELETE CASCADE,
    parent_column    name   NOT NULL,
    parent_aggregate text   NOT NULL REFERENCES ventros.aggregates ON DELETE CASCADE,
    states           text[] NOT NULL CHECK (cardinality(states) > 0),
    rule             text   NOT NULL,
    PRIMARY KEY (aggregate, parent_column)
);
COMMENT ON TABLE ventros.aggregate_guards IS
    'A child aggregate changes only while the parent its column names is in one of states (VN002 otherwise, with rule)';

-- The events that name a field's change (contact.name_changed), written by
-- the engine after the aggregate's own updated event for each declared
-- column a live row's update changed, with the payload
-- {"<column>": new, "previous_<column>": old} (ventros.register_field_events).
CREATE TABLE ventros.aggregate_field_events (
    aggregate   text NOT NULL REFERENCES ventros.aggregates ON DELETE CASCADE,
    column_name name NOT NULL,
    event_type  text NOT NULL REFERENCES ventros.event_types,
    PRIMARY KEY (aggregate, column_name)
);
COMMENT ON TABLE ventros.aggregate_field_events IS
    'Per aggregate column, the event the engine writes when an update of a live row changes it (ventros.register_field_events)';

-- The engine's C entry points.
CREATE FUNCTION ventros.engine_before() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'ventros_engine_before';
COMMENT ON FUNCTION ventros.engine_before() IS
    'Aggregate engine, BEFORE ROW: version, timestamps, tenant, state machine, soft delete';
CREATE FUNCTION ventros.engine_after() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'ventros_engine_after';
COMMENT ON FUNCTION ventros.engine_after() IS
    'Aggregate engine, AFTER ROW: writes the event of the row that was written';
CREATE FUNCTION ventros.engine_direct_writes() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'ventros_engine_direct_writes';
COMMENT ON FUNCTION ventros.engine_direct_writes() IS
    'Aggregate engine, BEFORE ROW, first of all: a tenant role''s direct write gets its declared outcome (ventros.aggregate_writes)';
CREATE FUNCTION ventros.engine_refuse_truncate() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'ventros_engine_refuse_truncate';
COMMENT ON FUNCTION ventros.engine_refuse_truncate() IS
    'Refuses TRUNCATE of aggregate tables: rows would change without events';
CREATE FUNCTION ventros.catalog_changed() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'ventros_catalog_changed';
COMMENT ON FUNCTION ventros.catalog_changed() IS
    'Invalidates the engine caches in every backend after a catalog change';

CREATE TRIGGER ventros_catalog_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON ventros.event_types FOR EACH STATEMENT EXECUTE FUNCTION ventros.catalog_changed();
CREATE TRIGGER ventros_catalog_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON ventros.aggregates FOR EACH STATEMENT EXECUTE FUNCTION ventros.catalog_changed();
CREATE TRIGGER ventros_catalog_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON ventros.aggregate_transitions FOR EACH STATEMENT EXECUTE FUNCTION ventros.catalog_changed();
CREATE TRIGGER ventros_catalog_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON ventros.aggregate_writes FOR EACH STATEMENT EXECUTE FUNCTION ventros.catalog_changed();
CREATE TRIGGER ventros_catalog_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON ventros.aggregate_guards FOR EACH STATEMENT EXECUTE FUNCTION ventros.catalog_changed();
CREATE TRIGGER ventros_catalog_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON ventros.aggregate_field_events FOR EACH STATEMENT EXECUTE FUNCTION ventros.catalog_changed();

-- Readable by all, written by the owner only (RLS forced: no write policy).
DO $catalog$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['event_types', 'aggregates', 'aggregate_transitions', 'aggregate_writes', 'aggregate_guards',
                              'aggregate_field_events'] LOOP
        EXECUTE pg_catalog.format('ALTER TABLE ventros.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE pg_catalog.format('ALTER TABLE ventros.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE pg_catalog.format('CREATE POLICY ventros_catalog_read ON ventros.%I FOR SELECT USING (true)', t);
        EXECUTE pg_catalog.format('GRANT SELECT ON ventros.%I TO ventros_viewer, ventros_anon', t);
    END LOOP;
END
$catalog$;

CREATE FUNCTION ventros.register_event_type(event_type text, description text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT ventros.is_valid_event_name(event_type) THEN
        RAISE EXCEPTION 'malformed event type "%"', event_type
            USING ERRCODE = '22023',
                  DETAIL = 'Event types are aggregate.action, lowercase, with the action in the past tense.',
                  HINT = 'For example contact.merged or message.delivered.';
    END IF;
    INSERT INTO ventros.event_types AS e (event_type, aggregate, description)
    VALUES (event_type, split_part(event_type, '.', 1), description)
    ON CONFLICT ON CONSTRAINT event_types_pkey
    DO UPDATE SET description = coalesce(EXCLUDED.description, e.description);
END
$$;
COMMENT ON FUNCTION ventros.register_event_type(text, text) IS
    'Adds an event type to the catalog (idempotent); malformed names raise 22023';

-- Some events are the platform's word, not a change anyone who may edit the
-- aggregate could report: the executor's runs of a rule agents may edit, an
-- account's payment state that only Stripe or a platform admin sets.
CREATE FUNCTION ventros.reserve_event_type(event_type text, emitted_by name)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname = reserve_event_type.emitted_by) THEN
        RAISE EXCEPTION 'role "%" does not exist', emitted_by USING ERRCODE = '42704';
    END IF;
    UPDATE ventros.event_types e SET emitted_by = reserve_event_type.emitted_by
     WHERE e.event_type = reserve_event_type.event_type;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown event type "%"', event_type USING ERRCODE = '22023',
            HINT = 'Register it with ventros.register_event_type first.';
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.reserve_event_type(text, name) IS
    'Reserves an event type to a role: ventros.emit of it then needs that role''s privileges (or a superuser, or a SECURITY DEFINER command of the owner), whoever may change its aggregate; unknown types raise 22023, unknown roles 42704';

GRANT EXECUTE ON FUNCTION ventros.is_valid_event_name(text)
    TO ventros_viewer, ventros_anon, ventros_authenticator, ventros_platform_admin;
GRANT EXECUTE ON FUNCTION ventros.register_event_type(text, text) TO ventros_platform_admin;
