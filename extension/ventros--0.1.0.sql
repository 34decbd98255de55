-- Generated from sql/ by make: do not edit. Ventros 0.1.0.
\echo Use "CREATE EXTENSION ventros" to load this file. \quit

-- ---- sql/00_schema.sql
-- Ventros install script, part 0: roles and the schema's base privileges.
--
-- Roles are cluster-wide and outlive the extension; they are created only when
-- missing.  The hierarchy is ventros_admin > ventros_agent > ventros_viewer by
-- membership, so a grant to the viewer reaches agents and admins too.
--
--   ventros_admin, ventros_agent, ventros_viewer, ventros_anon
--       what a tenant's users may do: GRANTs per table and function.
--   ventros_authenticator
--       the HTTP front's login group (NOINHERIT, as PostgREST's authenticator):
--       it may SET ROLE to the four roles above and choose the acting tenant
--       from the request's JWT claims.
--   ventros_platform_admin
--       operators: may choose any tenant (SET LOCAL ventros.tenant), create
--       tenants and bind logins to them.

DO $roles$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['ventros_viewer', 'ventros_agent', 'ventros_admin',
                                     'ventros_anon', 'ventros_authenticator',
                                     'ventros_platform_admin']
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) role_name) THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', role_name);
        END IF;
    END LOOP;
END
$roles$;

ALTER ROLE ventros_authenticator NOINHERIT;
GRANT ventros_viewer TO ventros_agent;
GRANT ventros_agent TO ventros_admin;
GRANT ventros_admin, ventros_agent, ventros_viewer, ventros_anon TO ventros_authenticator;
GRANT ventros_admin TO ventros_platform_admin;

GRANT USAGE ON SCHEMA ventros TO ventros_admin, ventros_agent, ventros_viewer, ventros_anon,
    ventros_authenticator, ventros_platform_admin;

COMMENT ON SCHEMA ventros IS 'Ventros: multi-channel CRM — aggregates, commands, queries and the event outbox';

-- ---- sql/01_catalog.sql
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
    CONSTRAINT event_types_aggregate_prefix CHECK (pg_catalog.split_part(event_type, '.', 1) = aggregate)
);
COMMENT ON TABLE ventros.event_types IS
    'Catalog of every event type Ventros may emit; an unregistered name fails loudly';

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

-- The engine's C entry points.
CREATE FUNCTION ventros.engine_before() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'ventros_engine_before';
COMMENT ON FUNCTION ventros.engine_before() IS
    'Aggregate engine, BEFORE ROW: version, timestamps, tenant, state machine, soft delete';
CREATE FUNCTION ventros.engine_after() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'ventros_engine_after';
COMMENT ON FUNCTION ventros.engine_after() IS
    'Aggregate engine, AFTER ROW: writes the event of the row that was written';
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

-- Readable by all, written by the owner only (RLS forced: no write policy).
DO $catalog$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['event_types', 'aggregates', 'aggregate_transitions'] LOOP
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

GRANT EXECUTE ON FUNCTION ventros.is_valid_event_name(text)
    TO ventros_viewer, ventros_anon, ventros_authenticator, ventros_platform_admin;
GRANT EXECUTE ON FUNCTION ventros.register_event_type(text, text) TO ventros_platform_admin;

-- ---- sql/02_tenant.sql
-- Tenancy: which tenant a transaction acts for (see src/tenant.c for the
-- rules), and binding logins to tenants.

CREATE FUNCTION ventros.current_tenant() RETURNS text
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'ventros_current_tenant';
COMMENT ON FUNCTION ventros.current_tenant() IS
    'The tenant this transaction acts for: the login''s bound tenant, else (trusted sessions only) ventros.tenant or the JWT tenant_id claim; NULL for none';

CREATE FUNCTION ventros.actor() RETURNS text
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'ventros_actor';
COMMENT ON FUNCTION ventros.actor() IS
    'Who acts: the JWT sub claim when present, else the session user';

CREATE FUNCTION ventros.session_is_trusted() RETURNS boolean
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'ventros_session_is_trusted';
COMMENT ON FUNCTION ventros.session_is_trusted() IS
    'True when the session user may choose the acting tenant (superuser, authenticator or platform admin, not bound)';

CREATE FUNCTION ventros.include_deleted() RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT pg_catalog.current_setting('ventros.include_deleted')::boolean $$;
COMMENT ON FUNCTION ventros.include_deleted() IS
    'Whether queries show soft-deleted rows (setting ventros.include_deleted)';

CREATE FUNCTION ventros.require_tenant() RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.current_tenant();
BEGIN
    IF tenant IS NULL THEN
        RAISE EXCEPTION 'no acting tenant'
            USING ERRCODE = '42501',
                  HINT = 'Trusted sessions run SET LOCAL ventros.tenant = ''<tenant id>''; logins are bound with ventros.bind_login().';
    END IF;
    RETURN tenant;
END
$$;
COMMENT ON FUNCTION ventros.require_tenant() IS
    'The acting tenant, or 42501 when there is none';

CREATE FUNCTION ventros.require_platform_admin() RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT ventros.session_is_trusted()
       OR NOT (pg_has_role(session_user, 'ventros_platform_admin', 'MEMBER')
               OR (SELECT rolsuper FROM pg_roles WHERE rolname = session_user)) THEN
        RAISE EXCEPTION 'permission denied: only platform administrators may do this'
            USING ERRCODE = '42501',
                  DETAIL = pg_catalog.format('Role "%s" is not a member of ventros_platform_admin.', session_user);
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.require_platform_admin() IS
    'Raises 42501 unless the session user is a superuser or a member of ventros_platform_admin';

-- bind_login: create or update a login that acts for one tenant only, with one
-- of the tenant roles.  SECURITY DEFINER because ventros.bound_tenant is a
-- superuser setting; it re-checks that the caller is a platform administrator.
CREATE FUNCTION ventros.bind_login(login name, tenant text, tenant_role name, password text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old_role name;
BEGIN
    PERFORM ventros.require_platform_admin();
    IF tenant_role NOT IN ('ventros_admin', 'ventros_agent', 'ventros_viewer') THEN
        RAISE EXCEPTION 'unknown tenant role "%"', tenant_role
            USING ERRCODE = '22023', HINT = 'Use ventros_admin, ventros_agent or ventros_viewer.';
    END IF;
    IF tenant IS NULL OR tenant !~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$' THEN
        RAISE EXCEPTION 'malformed tenant id "%"', tenant USING ERRCODE = '22023';
    END IF;
    IF login LIKE 'ventros\_%' THEN
        RAISE EXCEPTION 'cannot bind Ventros'' own role "%"', login USING ERRCODE = '42501';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = login AND (rolsuper OR rolcreaterole OR rolbypassrls)) THEN
        RAISE EXCEPTION 'cannot bind privileged role "%"', login USING ERRCODE = '42501',
            DETAIL = 'Superusers and roles with CREATEROLE or BYPASSRLS would escape the binding.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = login) THEN
        EXECUTE format('CREATE ROLE %I LOGIN', login);
    END IF;
    IF password IS NOT NULL THEN
        EXECUTE format('ALTER ROLE %I PASSWORD %L', login, password);
    END IF;
    FOR old_role IN
        SELECT r.rolname FROM pg_auth_members m
        JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
        WHERE u.rolname = login AND r.rolname IN ('ventros_admin', 'ventros_agent', 'ventros_viewer')
    LOOP
        EXECUTE format('REVOKE %I FROM %I', old_role, login);
    END LOOP;
    EXECUTE format('GRANT %I TO %I', tenant_role, login);
    EXECUTE format('ALTER ROLE %I IN DATABASE %I SET ventros.bound_tenant = %L',
                   login, current_database(), tenant);
END
$$;
COMMENT ON FUNCTION ventros.bind_login(name, text, name, text) IS
    'Creates or updates a login bound to one tenant with one tenant role (platform administrators only)';

GRANT EXECUTE ON FUNCTION ventros.current_tenant(), ventros.actor(), ventros.session_is_trusted(),
    ventros.include_deleted(), ventros.require_tenant()
    TO ventros_viewer, ventros_anon, ventros_authenticator, ventros_platform_admin;
GRANT EXECUTE ON FUNCTION ventros.require_platform_admin(), ventros.bind_login(name, text, name, text)
    TO ventros_platform_admin;

-- ---- sql/03_outbox.sql
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
-- No index of ventros.outbox covers a column the publisher writes (status,
-- attempts, next_attempt_at, last_error, published_at), not even in a
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
-- entry); the claim walks its primary key in seq order, which holds only
-- what is left to publish (and dead index entries until vacuum or the
-- claim's own scans remove them).  A row that failed waits here for its
-- retry time (next_attempt_at); dead rows stay (dead) until replayed.
-- Invariant: an event has a queue row exactly while its outbox status is
-- pending or dead (sql/40_outbox_publisher.sql keeps both in one statement).
CREATE TABLE ventros.outbox_queue (
    seq             bigint      PRIMARY KEY,
    tenant_id       text        NOT NULL,
    aggregate_id    uuid        NOT NULL,
    next_attempt_at timestamptz,
    dead            boolean     NOT NULL DEFAULT false
);
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

-- Events deleted from the outbox (pruning, tests, a bulk clean-up) leave
-- the queue with them: a queue row whose event is gone would be pending
-- for ever.  A statement trigger: pruning deletes published events, which
-- have no queue row, in chunks.
CREATE FUNCTION ventros.outbox_forget_deleted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        TRUNCATE ventros.outbox_queue;
    ELSE
        DELETE FROM ventros.outbox_queue q USING gone g WHERE q.seq = g.seq;
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.outbox_forget_deleted() IS
    'Trigger: deleted (or truncated) outbox events leave ventros.outbox_queue too';
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
    'Writes a registered business event (contact.merged, ...) to the outbox in the current transaction';

GRANT EXECUTE ON FUNCTION ventros.envelope(ventros.outbox) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.emit(text, text, uuid, jsonb, integer) TO ventros_agent;

-- ---- sql/04_register.sql
-- register_aggregate: the one declaration that puts a table under the engine.
--
-- It checks the common columns, records the aggregate and its state machine
-- in the catalog, registers its events, attaches the engine's triggers,
-- enables and forces row-level security with the tenant policies, and grants
-- the tenant roles their privileges.  Calling it again re-declares.

CREATE FUNCTION ventros.register_aggregate(
    aggregate        text,
    table_name       regclass,
    context          text,
    state_column     name    DEFAULT NULL,
    transitions      jsonb   DEFAULT '[]',
    redacted_columns name[]  DEFAULT '{}',
    privileges       jsonb   DEFAULT '{"ventros_viewer": ["SELECT"], "ventros_agent": ["INSERT", "UPDATE"], "ventros_admin": ["DELETE"]}',
    description      text    DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    required   CONSTANT text[][] := ARRAY[['id', 'uuid'], ['tenant_id', 'text'], ['version', 'integer'],
                                          ['created_at', 'timestamp with time zone'],
                                          ['updated_at', 'timestamp with time zone'],
                                          ['deleted_at', 'timestamp with time zone']];
    col        text[];
    found_type text;
    t          jsonb;
    event_name text;
    role_name  text;
    privilege  text;
    tenant_expr CONSTANT text := 'tenant_id = (SELECT ventros.current_tenant())';
BEGIN
    FOREACH col SLICE 1 IN ARRAY required LOOP
        SELECT format_type(a.atttypid, a.atttypmod) INTO found_type
        FROM pg_attribute a
        WHERE a.attrelid = table_name AND a.attname = col[1] AND NOT a.attisdropped;
        IF found_type IS DISTINCT FROM col[2] THEN
            RAISE EXCEPTION 'aggregate table % needs column % %', table_name, col[1], col[2]
                USING ERRCODE = '22023', DETAIL = coalesce('It has type ' || found_type || '.', 'It is missing.');
        END IF;
    END LOOP;
    IF (SELECT a.attname FROM pg_index i JOIN pg_attribute a
          ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
        WHERE i.indrelid = table_name AND i.indisprimary) IS DISTINCT FROM 'tenant_id' THEN
        RAISE EXCEPTION 'primary key of % must lead with tenant_id', table_name
            USING ERRCODE = '22023', HINT = 'Declare PRIMARY KEY (tenant_id, id).';
    END IF;
    IF state_column IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM pg_attribute WHERE attrelid = table_name AND attname = state_column AND NOT attisdropped) THEN
        RAISE EXCEPTION 'aggregate table % has no state column %', table_name, state_column USING ERRCODE = '22023';
    END IF;
    IF jsonb_typeof(transitions) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'transitions of % must be a JSON array', aggregate USING ERRCODE = '22023';
    END IF;

    INSERT INTO ventros.aggregates AS a (aggregate, table_name, context, state_column, redacted_columns, description)
    VALUES (aggregate, table_name, context, state_column, redacted_columns, description)
    ON CONFLICT ON CONSTRAINT aggregates_pkey DO UPDATE
        SET table_name = EXCLUDED.table_name, context = EXCLUDED.context,
            state_column = EXCLUDED.state_column, redacted_columns = EXCLUDED.redacted_columns,
            description = coalesce(EXCLUDED.description, a.description);

    FOREACH event_name IN ARRAY ARRAY['created', 'updated', 'deleted'] LOOP
        -- <aggregate>.created only when some creation has no initial-state
        -- event of its own (see engine.c: it would never be written).
        CONTINUE WHEN event_name = 'created'
            AND jsonb_path_exists(transitions, '$[*] ? (!exists(@.from) || @.from == null)')
            AND NOT jsonb_path_exists(transitions, '$[*] ? ((!exists(@.from) || @.from == null) && (!exists(@.event) || @.event == null))');
        PERFORM ventros.register_event_type(aggregate || '.' || event_name,
                                            format('A %s was %s.', aggregate, event_name));
    END LOOP;

    DELETE FROM ventros.aggregate_transitions tr WHERE tr.aggregate = register_aggregate.aggregate;
    FOR t IN SELECT * FROM jsonb_array_elements(transitions) LOOP
        IF t->>'to' IS NULL THEN
            RAISE EXCEPTION 'transition % of % has no "to" state', t, aggregate USING ERRCODE = '22023';
        END IF;
        IF t->>'event' IS NOT NULL THEN
            PERFORM ventros.register_event_type(t->>'event', t->>'description');
        END IF;
        INSERT INTO ventros.aggregate_transitions (aggregate, from_state, to_state, event_type)
        VALUES (aggregate, t->>'from', t->>'to', t->>'event');
    END LOOP;

    EXECUTE format('DROP TRIGGER IF EXISTS ventros_engine_before ON %s', table_name);
    EXECUTE format('DROP TRIGGER IF EXISTS ventros_engine_after ON %s', table_name);
    EXECUTE format('DROP TRIGGER IF EXISTS ventros_engine_truncate ON %s', table_name);
    EXECUTE format('CREATE TRIGGER ventros_engine_before BEFORE INSERT OR UPDATE OR DELETE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION ventros.engine_before()', table_name);
    EXECUTE format('CREATE TRIGGER ventros_engine_after AFTER INSERT OR UPDATE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION ventros.engine_after()', table_name);
    EXECUTE format('CREATE TRIGGER ventros_engine_truncate BEFORE TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION ventros.engine_refuse_truncate()', table_name);

    -- Tenancy: forced row-level security, owner included.  Soft-deleted rows
    -- are hidden unless ventros.include_deleted is on.
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', table_name);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', table_name);
    EXECUTE format('DROP POLICY IF EXISTS ventros_tenant_select ON %s', table_name);
    EXECUTE format('DROP POLICY IF EXISTS ventros_tenant_insert ON %s', table_name);
    EXECUTE format('DROP POLICY IF EXISTS ventros_tenant_update ON %s', table_name);
    EXECUTE format('DROP POLICY IF EXISTS ventros_tenant_delete ON %s', table_name);
    EXECUTE format('CREATE POLICY ventros_tenant_select ON %s FOR SELECT USING (%s AND '
                   '(deleted_at IS NULL OR (SELECT ventros.include_deleted())))', table_name, tenant_expr);
    EXECUTE format('CREATE POLICY ventros_tenant_insert ON %s FOR INSERT WITH CHECK (%s)', table_name, tenant_expr);
    EXECUTE format('CREATE POLICY ventros_tenant_update ON %s FOR UPDATE USING (%s) WITH CHECK (%s)',
                   table_name, tenant_expr, tenant_expr);
    EXECUTE format('CREATE POLICY ventros_tenant_delete ON %s FOR DELETE USING (%s)', table_name, tenant_expr);

    EXECUTE format('REVOKE ALL ON %s FROM PUBLIC', table_name);
    FOR role_name IN SELECT jsonb_object_keys(privileges) LOOP
        IF role_name NOT IN ('ventros_admin', 'ventros_agent', 'ventros_viewer', 'ventros_anon') THEN
            RAISE EXCEPTION 'unknown tenant role "%" in privileges of %', role_name, aggregate USING ERRCODE = '22023';
        END IF;
        FOR privilege IN SELECT jsonb_array_elements_text(privileges->role_name) LOOP
            IF privilege NOT IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE') THEN
                RAISE EXCEPTION 'unknown privilege "%" in privileges of %', privilege, aggregate USING ERRCODE = '22023';
            END IF;
            EXECUTE format('GRANT %s ON %s TO %I', privilege, table_name, role_name);
        END LOOP;
    END LOOP;
END
$$;
COMMENT ON FUNCTION ventros.register_aggregate(text, regclass, text, name, jsonb, name[], jsonb, text) IS
    'Puts a table under the aggregate engine: catalog entry, events, triggers, forced RLS and grants';

-- declare_quiet_columns: the counters and marks of an aggregate that the
-- system keeps under the row lock (a session's message counts, a channel's
-- last_message_at).  An update that changes only them keeps version and
-- updated_at and emits nothing: the event of what caused them says it.
-- Declared apart from register_aggregate because the aggregate that keeps
-- them up to date (messages) may load after the one that owns them.
CREATE FUNCTION ventros.declare_quiet_columns(aggregate text, columns name[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target regclass;
    missing name;
BEGIN
    SELECT a.table_name INTO target FROM ventros.aggregates a WHERE a.aggregate = declare_quiet_columns.aggregate;
    IF target IS NULL THEN
        RAISE EXCEPTION 'aggregate "%" is not registered', aggregate USING ERRCODE = '22023';
    END IF;
    SELECT c INTO missing FROM unnest(columns) c
    WHERE NOT EXISTS (SELECT 1 FROM pg_attribute
                      WHERE attrelid = target AND attname = c AND attnum > 0 AND NOT attisdropped)
    LIMIT 1;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'aggregate table % has no column %', target, missing USING ERRCODE = '22023';
    END IF;
    UPDATE ventros.aggregates a SET quiet_columns = coalesce(columns, '{}')
    WHERE a.aggregate = declare_quiet_columns.aggregate;
END
$$;
COMMENT ON FUNCTION ventros.declare_quiet_columns(text, name[]) IS
    'Declares the columns whose changes alone neither bump an aggregate''s version nor emit events';
GRANT EXECUTE ON FUNCTION ventros.declare_quiet_columns(text, name[]) TO ventros_platform_admin;

GRANT EXECUTE ON FUNCTION ventros.register_aggregate(text, regclass, text, name, jsonb, name[], jsonb, text)
    TO ventros_platform_admin;

-- ---- sql/05_commands.sql
-- Shared building blocks of the aggregate commands: value normalisation,
-- limits, and the generic update / delete used by every update_<aggregate>
-- and delete_<aggregate> command.

CREATE FUNCTION ventros.normalize_phone(phone text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    digits text;
BEGIN
    -- Formatting characters go; a leading 00 is the international prefix; a
    -- WhatsApp id (5511999998888@c.us) keeps its number.
    digits := regexp_replace(split_part(btrim(phone), '@', 1), '[\s().\-/]', '', 'g');
    IF digits ~ '^00' THEN
        digits := '+' || substr(digits, 3);
    END IF;
    IF digits !~ '^\+?[1-9][0-9]{7,14}$' THEN
        RAISE EXCEPTION 'invalid phone number "%"', left(phone, 64)
            USING ERRCODE = '22P02',
                  DETAIL = 'A phone number has a country code and 8 to 15 digits in all.',
                  HINT = 'Write it in E.164 form, for example +5511999998888.';
    END IF;
    RETURN '+' || ltrim(digits, '+');
END
$$;
COMMENT ON FUNCTION ventros.normalize_phone(text) IS
    'Normalises a phone number to E.164 (+ and 8–15 digits); 22P02 when it is not one';

CREATE FUNCTION ventros.normalize_email(email text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    normalized text := lower(btrim(email));
BEGIN
    IF length(normalized) > 254 OR normalized !~ '^[^@\s]+@[^@\s]+\.[^@\s.]+$' THEN
        RAISE EXCEPTION 'invalid email address "%"', left(email, 64)
            USING ERRCODE = '22P02', HINT = 'An email address looks like name@example.com.';
    END IF;
    RETURN normalized;
END
$$;
COMMENT ON FUNCTION ventros.normalize_email(text) IS
    'Trims and lowercases an email address; 22P02 when it is not one';

CREATE FUNCTION ventros.check_length(value text, max_length integer, what text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF length(value) > max_length THEN
        RAISE EXCEPTION '% is too long', what
            USING ERRCODE = '54000',
                  DETAIL = format('It has %s characters; at most %s are allowed.', length(value), max_length);
    END IF;
    RETURN value;
END
$$;
COMMENT ON FUNCTION ventros.check_length(text, integer, text) IS
    'Returns value, or 54000 naming what when it is longer than max_length';

CREATE FUNCTION ventros.check_page_size(page_size integer) RETURNS integer
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    maximum integer := current_setting('ventros.max_page_size')::integer;
BEGIN
    IF page_size IS NULL OR page_size < 1 THEN
        RAISE EXCEPTION 'page_size must be a positive number' USING ERRCODE = '22023';
    END IF;
    IF page_size > maximum THEN
        RAISE EXCEPTION 'page_size % is over the maximum of %', page_size, maximum
            USING ERRCODE = '54000', HINT = 'Page with the keyset cursor of the last row.';
    END IF;
    RETURN page_size;
END
$$;
COMMENT ON FUNCTION ventros.check_page_size(integer) IS
    'Returns page_size, or an error when it is not positive (22023) or over ventros.max_page_size (54000)';

-- apply_changes: the generic update behind every update_<aggregate> command.
-- row_type is NULL::<table> (it fixes the result type), changes a JSON object
-- of field -> new value, updatable the fields a caller may change.
CREATE FUNCTION ventros.apply_changes(row_type anyelement, aggregate text, row_id uuid,
                                      expected_version integer, changes jsonb, updatable text[])
RETURNS anyelement
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target      regclass := pg_typeof(row_type)::text::regclass;
    field       text;
    assignments text;
    result      ALIAS FOR $0;
    updated     bigint;
BEGIN
    IF row_id IS NULL THEN
        RAISE EXCEPTION '% id must not be null', aggregate USING ERRCODE = '23502';
    END IF;
    IF expected_version IS NULL THEN
        RAISE EXCEPTION 'expected_version of % % must not be null', aggregate, row_id
            USING ERRCODE = '23502', HINT = 'Pass the version you read.';
    END IF;
    IF changes IS NULL OR jsonb_typeof(changes) <> 'object' THEN
        RAISE EXCEPTION 'changes to % must be a JSON object', aggregate USING ERRCODE = '22023';
    END IF;
    FOR field IN SELECT jsonb_object_keys(changes) LOOP
        IF NOT field = ANY (updatable) THEN
            RAISE EXCEPTION 'unknown or read-only % field "%"', aggregate, left(field, 64)
                USING ERRCODE = '22023',
                      HINT = format('Fields that can change: %s.', array_to_string(updatable, ', '));
        END IF;
    END LOOP;
    SELECT string_agg(format('%I = r.%I', k, k), ', ') INTO assignments FROM jsonb_object_keys(changes) k;
    IF assignments IS NULL THEN
        assignments := 'version = t.version';
    ELSE
        assignments := assignments || ', version = $3';
    END IF;
    EXECUTE format('UPDATE %s t SET %s FROM jsonb_populate_record($4, $1) r '
                   'WHERE t.tenant_id = ventros.require_tenant() AND t.id = $2 RETURNING t.*',
                   target, assignments)
        INTO result USING changes, row_id, expected_version, row_type;
    GET DIAGNOSTICS updated = ROW_COUNT;  -- EXECUTE does not set FOUND
    IF updated = 0 THEN
        RAISE EXCEPTION '% % not found', aggregate, row_id USING ERRCODE = 'P0002';
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.apply_changes(anyelement, text, uuid, integer, jsonb, text[]) IS
    'Generic optimistic update: P0002 when absent, VN001 when expected_version is stale, 22023 for unknown fields';

-- get_row: the generic read behind every get_<aggregate> query.
CREATE FUNCTION ventros.get_row(row_type anyelement, aggregate text, row_id uuid)
RETURNS anyelement
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ALIAS FOR $0;
    found_rows bigint;
BEGIN
    EXECUTE format('SELECT * FROM %s WHERE tenant_id = ventros.require_tenant() AND id = $1',
                   pg_typeof(row_type)::text::regclass)
        INTO result USING row_id;
    GET DIAGNOSTICS found_rows = ROW_COUNT;
    IF found_rows = 0 THEN
        RAISE EXCEPTION '% % not found', aggregate, row_id USING ERRCODE = 'P0002';
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.get_row(anyelement, text, uuid) IS
    'Generic read of one live row of the acting tenant (row_type is NULL::<table>); P0002 when absent';

-- lock_row: get_row, with the row locked FOR UPDATE until the transaction ends.
CREATE FUNCTION ventros.lock_row(row_type anyelement, aggregate text, row_id uuid)
RETURNS anyelement
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('SELECT 1 FROM %s WHERE tenant_id = ventros.require_tenant() AND id = $1 FOR UPDATE',
                   pg_typeof(row_type)::text::regclass)
        USING row_id;
    RETURN ventros.get_row(row_type, aggregate, row_id);
END
$$;
COMMENT ON FUNCTION ventros.lock_row(anyelement, text, uuid) IS
    'Generic read of one live row of the acting tenant, locked FOR UPDATE; P0002 when absent';

-- delete_row: the generic soft delete behind every delete_<aggregate> command.
CREATE FUNCTION ventros.delete_row(target regclass, aggregate text, row_id uuid, expected_version integer)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current_version integer;
BEGIN
    EXECUTE format('SELECT version FROM %s WHERE tenant_id = ventros.require_tenant() AND id = $1 FOR UPDATE', target)
        INTO current_version USING row_id;
    IF current_version IS NULL THEN
        RAISE EXCEPTION '% % not found', aggregate, row_id USING ERRCODE = 'P0002';
    END IF;
    IF expected_version IS NOT NULL AND expected_version <> current_version THEN
        RAISE EXCEPTION '% % has changed since version % was read', aggregate, row_id, expected_version
            USING ERRCODE = 'VN001', DETAIL = format('Current version is %s.', current_version),
                  HINT = format('Read the %s again and retry with its current version.', aggregate);
    END IF;
    EXECUTE format('DELETE FROM %s WHERE tenant_id = ventros.require_tenant() AND id = $1', target) USING row_id;
END
$$;
COMMENT ON FUNCTION ventros.delete_row(regclass, text, uuid, integer) IS
    'Generic soft delete: P0002 when absent or deleted, VN001 when expected_version is stale';

CREATE FUNCTION ventros.is_distinct_array(items text[]) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT pg_catalog.cardinality(items) = (SELECT pg_catalog.count(DISTINCT x) FROM pg_catalog.unnest(items) x) $$;
COMMENT ON FUNCTION ventros.is_distinct_array(text[]) IS 'True when no element repeats (used by CHECKs on tag arrays)';

GRANT EXECUTE ON FUNCTION ventros.normalize_phone(text), ventros.normalize_email(text),
    ventros.check_length(text, integer, text), ventros.check_page_size(integer), ventros.is_distinct_array(text[])
    TO ventros_viewer, ventros_anon, ventros_authenticator, ventros_platform_admin;
GRANT EXECUTE ON FUNCTION ventros.get_row(anyelement, text, uuid) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.lock_row(anyelement, text, uuid) TO ventros_agent;
-- stats_slot: which of a hot counter's slot rows this backend adds to.
CREATE FUNCTION ventros.stats_slot() RETURNS smallint
LANGUAGE sql VOLATILE PARALLEL SAFE
AS $$ SELECT (pg_catalog.pg_backend_pid() % 16)::smallint $$;
COMMENT ON FUNCTION ventros.stats_slot() IS 'The counter slot of this backend (0-15) for counters kept in slot rows (channel message counts, crm_daily_stats, automation_funnel_stats): concurrent writers of one hot key rarely share a row';

GRANT EXECUTE ON FUNCTION ventros.stats_slot() TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.apply_changes(anyelement, text, uuid, integer, jsonb, text[]),
    ventros.delete_row(regclass, text, uuid, integer)
    TO ventros_agent;

-- ---- sql/06_api_schema.sql
-- The exposed schema of the HTTP front (ventros-http, PostgREST's dialect).
--
-- Schema api holds only what HTTP clients may name: views over the
-- aggregates (sql/95_api.sql makes them, one per registered aggregate) and the
-- functions served under /rpc/.  The front resolves every identifier of a
-- request against this schema's catalog entries before it builds SQL.
--
-- api.auth_grant is the result type of the functions that log a user in: the
-- front signs the claims into an access token (the JWT secret never enters
-- the database) and answers {access_token, token_type, expires_in,
-- refresh_token} instead of the row.

CREATE SCHEMA api;
COMMENT ON SCHEMA api IS 'Ventros HTTP API: views over the aggregates and the functions served under /rpc/';
GRANT USAGE ON SCHEMA api TO ventros_admin, ventros_agent, ventros_viewer, ventros_anon, ventros_authenticator;

CREATE TYPE api.auth_grant AS (
    claims        jsonb,
    refresh_token text,
    expires_in    integer
);
COMMENT ON TYPE api.auth_grant IS
    'Claims for the front to sign into an access token, with a refresh token; the front never returns the claims as such';

-- ---- sql/10_projects.sql
-- Aggregate 24, Project (core): the customer workspace.  Its tenant_id is the
-- tenant; a tenant may hold several projects, and its first one is created
-- with the tenant (ventros.create_tenant).

CREATE TABLE ventros.projects (
    id                      uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id               text        NOT NULL,
    version                 integer     NOT NULL DEFAULT 1,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    deleted_at              timestamptz,
    user_id                 uuid,
    billing_account_id      uuid,
    name                    text        NOT NULL,
    description             text,
    configuration           jsonb       NOT NULL DEFAULT '{}',
    active                  boolean     NOT NULL DEFAULT true,
    session_timeout_minutes integer     NOT NULL DEFAULT 30,
    agent_assignment        jsonb,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT projects_tenant_id_format CHECK (tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$'),
    CONSTRAINT projects_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT projects_session_timeout_range CHECK (session_timeout_minutes BETWEEN 1 AND 1440),
    CONSTRAINT projects_configuration_object CHECK (jsonb_typeof(configuration) = 'object')
);
CREATE UNIQUE INDEX projects_id ON ventros.projects (id);
COMMENT ON TABLE ventros.projects IS 'Project: a customer workspace; tenant_id is the tenant';

SELECT ventros.register_aggregate('project', 'ventros.projects', 'core',
    state_column => 'active',
    transitions => '[
        {"from": null, "to": "true"},
        {"from": null, "to": "false"},
        {"from": "false", "to": "true", "event": "project.activated", "description": "A project was activated."},
        {"from": "true", "to": "false", "event": "project.deactivated", "description": "A project was deactivated."}
    ]',
    privileges => '{"ventros_viewer": ["SELECT"], "ventros_admin": ["INSERT", "UPDATE", "DELETE"]}',
    description => 'A customer workspace; the tenant');

-- The tenant's default project: its oldest live one.
CREATE FUNCTION ventros.default_project() RETURNS uuid
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT id FROM ventros.projects
    WHERE tenant_id = ventros.require_tenant() AND deleted_at IS NULL
    ORDER BY created_at, id LIMIT 1
$$;
COMMENT ON FUNCTION ventros.default_project() IS 'The acting tenant''s default (oldest live) project';

CREATE FUNCTION ventros.create_tenant(tenant_id text, project_name text, description text DEFAULT NULL)
RETURNS ventros.projects
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- the tenant chosen inside is restored when the function returns
SET ventros.tenant = ''
AS $$
DECLARE
    result ventros.projects;
BEGIN
    PERFORM ventros.require_platform_admin();
    IF tenant_id IS NULL OR tenant_id !~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$' THEN
        RAISE EXCEPTION 'malformed tenant id "%"', left(tenant_id, 64)
            USING ERRCODE = '22023', DETAIL = 'A tenant id has 1 to 128 letters, digits, ".", "_" or "-".';
    END IF;
    PERFORM set_config('ventros.tenant', tenant_id, true);
    IF EXISTS (SELECT 1 FROM ventros.projects p WHERE p.tenant_id = create_tenant.tenant_id) THEN
        RAISE EXCEPTION 'tenant "%" already exists', tenant_id USING ERRCODE = '23505';
    END IF;
    INSERT INTO ventros.projects (tenant_id, name, description)
    VALUES (tenant_id, ventros.check_length(project_name, 200, 'project name'), description)
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.create_tenant(text, text, text) IS
    'Creates a tenant with its first project (platform administrators only); emits project.created';

CREATE FUNCTION ventros.create_project(name text, description text DEFAULT NULL,
                                       session_timeout_minutes integer DEFAULT 30,
                                       configuration jsonb DEFAULT '{}')
RETURNS ventros.projects
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO ventros.projects (tenant_id, name, description, session_timeout_minutes, configuration)
    VALUES (ventros.require_tenant(), ventros.check_length(name, 200, 'project name'), description,
            session_timeout_minutes, coalesce(configuration, '{}'))
    RETURNING *
$$;
COMMENT ON FUNCTION ventros.create_project(text, text, integer, jsonb) IS
    'Creates another project of the acting tenant; emits project.created';

CREATE FUNCTION ventros.update_project(project_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.projects
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.apply_changes(NULL::ventros.projects, 'project', project_id, expected_version, changes,
        ARRAY['name', 'description', 'configuration', 'active', 'session_timeout_minutes', 'agent_assignment'])
$$;
COMMENT ON FUNCTION ventros.update_project(uuid, integer, jsonb) IS
    'Changes fields of a project; emits project.updated, or project.activated / project.deactivated when active changes';

CREATE FUNCTION ventros.delete_project(project_id uuid, expected_version integer DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.delete_row('ventros.projects', 'project', project_id, expected_version) $$;
COMMENT ON FUNCTION ventros.delete_project(uuid, integer) IS 'Soft-deletes a project; emits project.deleted';

CREATE FUNCTION ventros.get_project(project_id uuid) RETURNS ventros.projects
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.get_row(NULL::ventros.projects, 'project', project_id) $$;
COMMENT ON FUNCTION ventros.get_project(uuid) IS 'A project of the acting tenant, or P0002';

CREATE FUNCTION ventros.list_projects() RETURNS SETOF ventros.projects
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM ventros.projects WHERE tenant_id = ventros.require_tenant() ORDER BY created_at, id
$$;
COMMENT ON FUNCTION ventros.list_projects() IS 'The acting tenant''s live projects, oldest first';

GRANT EXECUTE ON FUNCTION ventros.default_project(), ventros.get_project(uuid), ventros.list_projects()
    TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.create_project(text, text, integer, jsonb), ventros.update_project(uuid, integer, jsonb),
    ventros.delete_project(uuid, integer)
    TO ventros_admin;
GRANT EXECUTE ON FUNCTION ventros.create_tenant(text, text, text) TO ventros_platform_admin;

-- ---- sql/12_users.sql
-- Aggregate 29, User (core): a login identity, a person or an API client, of
-- one home tenant.  Passwords are bcrypt hashes (pgcrypto); API keys and
-- refresh tokens are stored as SHA-256 hashes only.  The hashes never reach
-- an event payload (redacted_columns) nor the api views (sql/95_api.sql
-- leaves redacted columns out).
--
-- Sign-in is served over HTTP by the api functions below.  They return
-- api.auth_grant: the claims of the access token and a refresh token; the
-- front adds exp/iat/aud and signs the claims with its secret, which never
-- enters the database.  Refresh tokens rotate: each use revokes the token and
-- issues the next of its family; using a revoked token again revokes the
-- whole family (a stolen token is useless once its owner refreshed).

-- pgcrypto's functions, reached through its schema whatever it is.
DO $pgcrypto$
DECLARE
    s text := (SELECT n.nspname FROM pg_catalog.pg_extension e
               JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pgcrypto');
BEGIN
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION ventros.hash_password(password text) RETURNS text
        LANGUAGE sql VOLATILE STRICT SET search_path = pg_catalog, pg_temp
        AS 'SELECT %1$I.crypt(password, %1$I.gen_salt(''bf'', 8))'$f$, s);
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION ventros.password_matches(password text, password_hash text) RETURNS boolean
        LANGUAGE sql STABLE STRICT SET search_path = pg_catalog, pg_temp
        AS 'SELECT %1$I.crypt(password, password_hash) = password_hash'$f$, s);
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION ventros.random_token(prefix text) RETURNS text
        LANGUAGE sql VOLATILE STRICT SET search_path = pg_catalog, pg_temp
        AS 'SELECT prefix || translate(encode(%1$I.gen_random_bytes(32), ''base64''), ''+/='', ''-_'')'$f$, s);
END
$pgcrypto$;
COMMENT ON FUNCTION ventros.hash_password(text) IS 'A bcrypt hash of a password (pgcrypto, cost 8)';
COMMENT ON FUNCTION ventros.password_matches(text, text) IS 'Whether a password matches its bcrypt hash';
COMMENT ON FUNCTION ventros.random_token(text) IS 'A prefix and 256 random bits, URL-safe base64: refresh tokens and API keys';

CREATE FUNCTION ventros.token_hash(token text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(token, 'UTF8')), 'hex') $$;
COMMENT ON FUNCTION ventros.token_hash(text) IS 'SHA-256 (hex) of a token: what is stored of refresh tokens and API keys';

CREATE TABLE ventros.users (
    id            uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id     text        NOT NULL,
    version       integer     NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz,
    name          text        NOT NULL,
    email         text        NOT NULL,
    password_hash text        NOT NULL,
    status        text        NOT NULL DEFAULT 'active',
    role          text        NOT NULL DEFAULT 'user',
    settings      jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT users_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT users_email_normalized CHECK (email = lower(email) AND email ~ '^[^@\s]+@[^@\s]+\.[^@\s.]+$'),
    CONSTRAINT users_status_known CHECK (status IN ('active', 'inactive', 'suspended')),
    CONSTRAINT users_role_known CHECK (role IN ('admin', 'manager', 'user', 'readonly')),
    CONSTRAINT users_settings_object CHECK (jsonb_typeof(settings) = 'object')
);
-- Email is the login: unique among all live users, whatever their tenant.
CREATE UNIQUE INDEX users_unique_email ON ventros.users (email) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX users_id ON ventros.users (id);
COMMENT ON TABLE ventros.users IS 'User: a login identity (person or API client) of one home tenant';

SELECT ventros.register_aggregate('user', 'ventros.users', 'core',
    redacted_columns => '{password_hash}',
    privileges => '{"ventros_viewer": ["SELECT"], "ventros_admin": ["INSERT", "UPDATE", "DELETE"]}',
    description => 'A login identity of one home tenant');

CREATE TABLE ventros.user_api_keys (
    id         uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id  text        NOT NULL,
    version    integer     NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    user_id    uuid        NOT NULL,
    name       text        NOT NULL,
    key_hash   text        NOT NULL,
    key_prefix text        NOT NULL,
    active     boolean     NOT NULL DEFAULT true,
    last_used  timestamptz,
    expires_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES ventros.users (tenant_id, id),
    CONSTRAINT user_api_keys_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT user_api_keys_hash_format CHECK (key_hash ~ '^[0-9a-f]{64}$')
);
CREATE UNIQUE INDEX user_api_keys_unique_hash ON ventros.user_api_keys (key_hash);
CREATE INDEX user_api_keys_by_user ON ventros.user_api_keys (tenant_id, user_id);
COMMENT ON TABLE ventros.user_api_keys IS 'An API key of a user for machine clients; only its SHA-256 is kept';

SELECT ventros.register_aggregate('user_api_key', 'ventros.user_api_keys', 'core',
    redacted_columns => '{key_hash}',
    privileges => '{"ventros_viewer": ["SELECT"], "ventros_admin": ["INSERT", "UPDATE", "DELETE"]}',
    description => 'An API key of a user');

-- last_used is marked by the front's requests (api_key_claims): no event each time.
SELECT ventros.declare_quiet_columns('user_api_key', '{last_used}');

SELECT ventros.register_event_type('user.registered', 'A user registered.');
SELECT ventros.register_event_type('user.logged_in', 'A user logged in.');
SELECT ventros.register_event_type('user.api_key_generated', 'An API key was generated for a user.');

-- Refresh tokens: not an aggregate (no events, no versions); reached only by
-- the SECURITY DEFINER functions below.
CREATE TABLE ventros.user_refresh_tokens (
    token_hash  text        PRIMARY KEY,
    tenant_id   text        NOT NULL,
    user_id     uuid        NOT NULL,
    family      uuid        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    FOREIGN KEY (tenant_id, user_id) REFERENCES ventros.users (tenant_id, id)
);
CREATE INDEX user_refresh_tokens_by_family ON ventros.user_refresh_tokens (family);
ALTER TABLE ventros.user_refresh_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.user_refresh_tokens FORCE ROW LEVEL SECURITY;
REVOKE ALL ON ventros.user_refresh_tokens FROM PUBLIC;
-- Administrators may see their tenant's tokens (hashes and dates only); the
-- functions below, as the owner, do the rest.
CREATE POLICY ventros_tenant_select ON ventros.user_refresh_tokens FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.user_refresh_tokens TO ventros_admin;
COMMENT ON TABLE ventros.user_refresh_tokens IS
    'Refresh tokens (SHA-256 only), rotated on use; a family is revoked when a revoked member is used again';

-- The tenant role of a user role.
CREATE FUNCTION ventros.user_db_role(user_role text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT CASE user_role WHEN 'admin' THEN 'ventros_admin' WHEN 'readonly' THEN 'ventros_viewer'
                          ELSE 'ventros_agent' END
$$;
COMMENT ON FUNCTION ventros.user_db_role(text) IS
    'Maps a user role to its tenant role: admin -> ventros_admin, manager/user -> ventros_agent, readonly -> ventros_viewer';

-- caller_role: the tenant role the caller acts with, as SECURITY DEFINER
-- functions see it: the JWT role claim in a trusted (HTTP front) session,
-- else the role SET by the session, else the login itself.  A claim set by
-- an untrusted session is ignored.
CREATE FUNCTION ventros.caller_role() RETURNS name
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN ventros.session_is_trusted() AND coalesce(current_setting('request.jwt.claims', true), '') <> ''
            THEN coalesce(current_setting('request.jwt.claims', true)::jsonb->>'role', 'ventros_anon')
        ELSE coalesce(nullif(current_setting('role'), 'none'), session_user)
    END::name
$$;
COMMENT ON FUNCTION ventros.caller_role() IS
    'The role the caller acts with: the JWT role claim of a trusted session, else the SET role, else the login';

CREATE FUNCTION ventros.caller_is_admin() RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = ventros.caller_role())
       AND pg_has_role(ventros.caller_role(), 'ventros_admin', 'MEMBER')
$$;
COMMENT ON FUNCTION ventros.caller_is_admin() IS 'Whether the caller acts as (a member of) ventros_admin';

-- create_user: an administrator adds a user to the acting tenant.
CREATE FUNCTION ventros.create_user(name text, email text, password text, role text DEFAULT 'user')
RETURNS ventros.users
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.users;
BEGIN
    IF password IS NULL OR length(password) < 8 OR length(password) > 72 THEN
        RAISE EXCEPTION 'password must have 8 to 72 characters' USING ERRCODE = '22023';
    END IF;
    INSERT INTO ventros.users (tenant_id, name, email, password_hash, role)
    VALUES (ventros.require_tenant(), ventros.check_length(btrim(name), 200, 'user name'),
            ventros.normalize_email(email), ventros.hash_password(password), coalesce(role, 'user'))
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.create_user(text, text, text, text) IS
    'Adds a user to the acting tenant (administrators); emits user.created';

-- issue_grant: claims and a new refresh token (in family, or a new family).
CREATE FUNCTION ventros.issue_grant(u ventros.users, family uuid DEFAULT NULL) RETURNS api.auth_grant
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    token text := ventros.random_token('vnr_');
    result api.auth_grant;
BEGIN
    INSERT INTO ventros.user_refresh_tokens (token_hash, tenant_id, user_id, family, expires_at)
    VALUES (ventros.token_hash(token), u.tenant_id, u.id, coalesce(family, gen_random_uuid()),
            now() + interval '30 days');
    result.claims := jsonb_build_object('role', ventros.user_db_role(u.role), 'tenant_id', u.tenant_id,
                                        'sub', u.id::text, 'email', u.email);
    result.refresh_token := token;
    result.expires_in := 900;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.issue_grant(ventros.users, uuid) IS
    'Access-token claims of a user and a new refresh token (30 days); the front signs the claims';

CREATE FUNCTION api.register(email text, password text, name text, tenant_name text DEFAULT NULL,
                             payment_method jsonb DEFAULT NULL)
RETURNS api.auth_grant
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    normalized text := ventros.normalize_email(email);
    acting     text := ventros.current_tenant();
    -- the caller's choice of tenant, restored on return (a SET clause would
    -- clear it before acting is read)
    previous   text := current_setting('ventros.tenant', true);
    new_tenant text;
    workspace  text;
    u          ventros.users;
    account    ventros.billing_accounts;
    project    ventros.projects;
    grant_     api.auth_grant;
BEGIN
    IF password IS NULL OR length(password) < 8 OR length(password) > 72 THEN
        RAISE EXCEPTION 'password must have 8 to 72 characters' USING ERRCODE = '22023';
    END IF;
    IF name IS NULL THEN
        RAISE EXCEPTION 'user name must not be null' USING ERRCODE = '23502';
    END IF;
    -- Idempotent by email: the same email and password answer as a login.
    SELECT * INTO u FROM ventros.users x WHERE x.email = normalized AND x.deleted_at IS NULL;
    IF FOUND THEN
        IF ventros.password_matches(password, u.password_hash) THEN
            PERFORM set_config('ventros.tenant', u.tenant_id, true);
            grant_ := ventros.issue_grant(u);
            PERFORM set_config('ventros.tenant', coalesce(previous, ''), true);
            RETURN grant_;
        END IF;
        RAISE EXCEPTION 'a user with email % already exists', normalized USING ERRCODE = '23505';
    END IF;
    IF acting IS NOT NULL THEN
        -- An administrator of a tenant adds a user to it.
        IF NOT ventros.caller_is_admin() THEN
            RAISE EXCEPTION 'only administrators add users to a tenant' USING ERRCODE = '42501';
        END IF;
        IF payment_method IS NOT NULL THEN
            RAISE EXCEPTION 'a payment method is given at sign-up only' USING ERRCODE = '22023',
                HINT = 'Activate the tenant''s billing account with ventros.activate_billing_payment().';
        END IF;
        new_tenant := acting;
    ELSE
        new_tenant := 't' || substr(replace(gen_random_uuid()::text, '-', ''), 1, 20);
    END IF;
    PERFORM set_config('ventros.tenant', new_tenant, true);
    INSERT INTO ventros.users (tenant_id, name, email, password_hash, role)
    VALUES (new_tenant, ventros.check_length(btrim(name), 200, 'user name'), normalized,
            ventros.hash_password(password), CASE WHEN acting IS NULL THEN 'admin' ELSE 'user' END)
    RETURNING * INTO u;
    IF acting IS NULL THEN
        -- Sign-up, in this one transaction: what a new tenant needs (domain
        -- 29): the owner's billing account (active when a payment method
        -- comes with the sign-up, else pending until one is added), the
        -- default project (under the account once it is active), the
        -- default pipeline, and the owner as a human agent.  API keys are
        -- made on demand (api.create_api_key): one made here could never be
        -- shown.
        workspace := ventros.check_length(coalesce(tenant_name, btrim(name) || '''s workspace'), 200, 'workspace name');
        account := ventros.create_billing_account(workspace, normalized, u.id);
        IF payment_method IS NOT NULL THEN
            account := ventros.activate_billing_payment(account.id, account.version, payment_method);
        END IF;
        INSERT INTO ventros.projects (tenant_id, name, user_id, billing_account_id)
        VALUES (new_tenant, workspace, u.id, CASE WHEN account.payment_status = 'active' THEN account.id END)
        RETURNING * INTO project;
        PERFORM ventros.create_pipeline('Default pipeline', project_id => project.id,
                                        statuses => ARRAY['New', 'In progress', 'Done']);
        PERFORM ventros.create_agent(u.name, 'human', email => u.email, user_id => u.id, role => 'admin',
                                     project_id => project.id);
    END IF;
    PERFORM ventros.emit('user.registered', 'user', u.id, jsonb_build_object('email', u.email, 'role', u.role), u.version);
    grant_ := ventros.issue_grant(u);
    PERFORM set_config('ventros.tenant', coalesce(previous, ''), true);
    RETURN grant_;
END
$$;
COMMENT ON FUNCTION api.register(text, text, text, text, jsonb) IS
    'Registers a user (idempotent by email): anonymous callers sign up a new tenant as its admin, with its billing account (active when a payment method is given), default project, default pipeline and the owner as a human agent; a tenant admin adds a user to the tenant. Returns a login grant';

CREATE FUNCTION api.login(email text, password text) RETURNS api.auth_grant
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET ventros.tenant = ''
AS $$
DECLARE
    u ventros.users;
BEGIN
    SELECT * INTO u FROM ventros.users x
    WHERE x.email = lower(btrim(login.email)) AND x.deleted_at IS NULL AND x.status = 'active';
    -- The same bcrypt work whether or not the user exists.
    IF NOT coalesce(ventros.password_matches(password, coalesce(u.password_hash,
                    '$2a$08$0000000000000000000000000000000000000000000000000000u')), false)
       OR u.id IS NULL THEN
        RAISE EXCEPTION 'invalid email or password' USING ERRCODE = '28P01';
    END IF;
    PERFORM set_config('ventros.tenant', u.tenant_id, true);
    PERFORM ventros.emit('user.logged_in', 'user', u.id, '{}', u.version);
    RETURN ventros.issue_grant(u);
END
$$;
COMMENT ON FUNCTION api.login(text, text) IS 'Checks email and password (bcrypt); returns a login grant; 28P01 when they do not match';

CREATE FUNCTION api.refresh(refresh_token text) RETURNS api.auth_grant
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET ventros.tenant = ''
AS $$
DECLARE
    t ventros.user_refresh_tokens;
    u ventros.users;
BEGIN
    SELECT * INTO t FROM ventros.user_refresh_tokens r
    WHERE r.token_hash = ventros.token_hash(refresh_token) FOR UPDATE;
    IF NOT FOUND OR t.expires_at < now() THEN
        RAISE EXCEPTION 'invalid or expired refresh token' USING ERRCODE = '28000';
    END IF;
    IF t.revoked_at IS NOT NULL THEN
        -- Reuse of a rotated token: revoke the family.
        UPDATE ventros.user_refresh_tokens SET revoked_at = now() WHERE family = t.family AND revoked_at IS NULL;
        RETURN NULL;  -- committed: the caller gets no grant (the front answers 401 on a null grant)
    END IF;
    UPDATE ventros.user_refresh_tokens SET revoked_at = now() WHERE token_hash = t.token_hash;
    SELECT * INTO u FROM ventros.users x
    WHERE x.tenant_id = t.tenant_id AND x.id = t.user_id AND x.deleted_at IS NULL AND x.status = 'active';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'invalid or expired refresh token' USING ERRCODE = '28000';
    END IF;
    PERFORM set_config('ventros.tenant', u.tenant_id, true);
    RETURN ventros.issue_grant(u, t.family);
END
$$;
COMMENT ON FUNCTION api.refresh(text) IS
    'Rotates a refresh token: revokes it and returns a new grant; a revoked token revokes its whole family and gets none';

CREATE FUNCTION api.logout(refresh_token text) RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE ventros.user_refresh_tokens SET revoked_at = now()
    WHERE revoked_at IS NULL
      AND family = (SELECT family FROM ventros.user_refresh_tokens WHERE token_hash = ventros.token_hash(refresh_token))
$$;
COMMENT ON FUNCTION api.logout(text) IS 'Revokes a refresh token and every token of its family';

CREATE FUNCTION api.me() RETURNS json
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT json_build_object('id', u.id, 'tenant_id', u.tenant_id, 'name', u.name, 'email', u.email,
                             'role', u.role, 'status', u.status, 'settings', u.settings, 'version', u.version)
    FROM ventros.users u
    WHERE u.tenant_id = ventros.require_tenant()
      AND u.id::text = ventros.actor()
$$;
COMMENT ON FUNCTION api.me() IS 'The user of the access token (no row for API clients without a user)';

CREATE FUNCTION api.create_api_key(name text, expires_at timestamptz DEFAULT NULL) RETURNS json
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    key    text := ventros.random_token('vnk_');
    k      ventros.user_api_keys;
BEGIN
    IF NOT ventros.caller_is_admin() THEN
        RAISE EXCEPTION 'only administrators create API keys' USING ERRCODE = '42501';
    END IF;
    INSERT INTO ventros.user_api_keys (tenant_id, user_id, name, key_hash, key_prefix, expires_at)
    SELECT tenant, u.id, ventros.check_length(create_api_key.name, 200, 'API key name'),
           ventros.token_hash(key), left(key, 12), create_api_key.expires_at
    FROM ventros.users u WHERE u.tenant_id = tenant AND u.id::text = ventros.actor() AND u.deleted_at IS NULL
    RETURNING * INTO k;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'API keys belong to users: log in as a user first' USING ERRCODE = 'P0002';
    END IF;
    PERFORM ventros.emit('user.api_key_generated', 'user', k.user_id, jsonb_build_object('api_key_id', k.id), NULL);
    RETURN json_build_object('id', k.id, 'name', k.name, 'key', key, 'expires_at', k.expires_at);
END
$$;
COMMENT ON FUNCTION api.create_api_key(text, timestamptz) IS
    'Creates an API key for the calling user (admins); the key is shown once, only its hash is kept';

-- api_key_claims: the claims an API key stands for; called by the front in
-- the request's first statement, before SET ROLE.
CREATE FUNCTION ventros.api_key_claims(key text) RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    claims jsonb;
BEGIN
    SELECT jsonb_build_object('role', ventros.user_db_role(u.role), 'tenant_id', u.tenant_id,
                              'sub', u.id::text, 'api_key_id', k.id::text)
    INTO claims
    FROM ventros.user_api_keys k JOIN ventros.users u ON u.tenant_id = k.tenant_id AND u.id = k.user_id
    WHERE k.key_hash = ventros.token_hash(key) AND k.active AND k.deleted_at IS NULL
      AND (k.expires_at IS NULL OR k.expires_at > now()) AND u.deleted_at IS NULL AND u.status = 'active';
    IF claims IS NULL THEN
        RAISE EXCEPTION 'invalid API key' USING ERRCODE = '28000';
    END IF;
    -- last_used, at most once a minute per key (so a busy key is not a write
    -- per request), and never waiting: a request that finds the row locked
    -- by another one marking it leaves the mark to that one.  A quiet
    -- column: no version bump, no event.
    UPDATE ventros.user_api_keys k SET last_used = now(), version = k.version
    WHERE (k.tenant_id, k.id) = (SELECT x.tenant_id, x.id FROM ventros.user_api_keys x
                                 WHERE x.key_hash = ventros.token_hash(key)
                                   AND (x.last_used IS NULL OR x.last_used < now() - interval '1 minute')
                                 FOR UPDATE SKIP LOCKED);
    RETURN claims;
END
$$;
COMMENT ON FUNCTION ventros.api_key_claims(text) IS
    'The JWT-style claims of a valid API key, marking its last_used (at most once a minute); 28000 otherwise';

REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA api FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ventros.token_hash(text), ventros.user_db_role(text), ventros.caller_role(),
    ventros.caller_is_admin() TO ventros_viewer, ventros_anon;
GRANT EXECUTE ON FUNCTION api.register(text, text, text, text, jsonb), api.login(text, text), api.refresh(text),
    api.logout(text) TO ventros_anon, ventros_viewer;
GRANT EXECUTE ON FUNCTION api.me() TO ventros_viewer;
GRANT EXECUTE ON FUNCTION api.create_api_key(text, timestamptz),
    ventros.create_user(text, text, text, text), ventros.hash_password(text) TO ventros_admin;
GRANT EXECUTE ON FUNCTION ventros.api_key_claims(text) TO ventros_authenticator;

-- ---- sql/20_contacts.sql
-- Aggregate 1, Contact (CRM): a person the business talks to.
-- Phones are stored in E.164 and emails lowercased; both are unique among the
-- live contacts of a project.

CREATE TABLE ventros.contacts (
    id                         uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id                  text        NOT NULL,
    version                    integer     NOT NULL DEFAULT 1,
    created_at                 timestamptz NOT NULL DEFAULT now(),
    updated_at                 timestamptz NOT NULL DEFAULT now(),
    deleted_at                 timestamptz,
    project_id                 uuid        NOT NULL,
    name                       text        NOT NULL,
    email                      text,
    phone                      text,
    external_id                text,
    source_channel             text,
    language                   text        NOT NULL DEFAULT 'en',
    timezone                   text,
    tags                       text[]      NOT NULL DEFAULT '{}',
    profile_picture_url        text,
    profile_picture_fetched_at timestamptz,
    first_interaction_at       timestamptz,
    last_interaction_at        timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id),
    CONSTRAINT contacts_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT contacts_phone_e164 CHECK (phone ~ '^\+[1-9][0-9]{7,14}$'),
    CONSTRAINT contacts_email_normalized CHECK (email = lower(email) AND email ~ '^[^@\s]+@[^@\s]+\.[^@\s.]+$'),
    CONSTRAINT contacts_tags_distinct CHECK (ventros.is_distinct_array(tags)),
    CONSTRAINT contacts_language_format CHECK (language ~ '^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$'),
    CONSTRAINT contacts_text_sizes CHECK (length(external_id) <= 200 AND length(source_channel) <= 50
                                          AND length(timezone) <= 64 AND length(profile_picture_url) <= 2048)
);
CREATE UNIQUE INDEX contacts_unique_phone ON ventros.contacts (tenant_id, project_id, phone)
    WHERE deleted_at IS NULL AND phone IS NOT NULL;
CREATE UNIQUE INDEX contacts_unique_email ON ventros.contacts (tenant_id, project_id, email)
    WHERE deleted_at IS NULL AND email IS NOT NULL;
CREATE UNIQUE INDEX contacts_unique_external_id ON ventros.contacts (tenant_id, project_id, external_id)
    WHERE deleted_at IS NULL AND external_id IS NOT NULL;
CREATE INDEX contacts_by_name ON ventros.contacts (tenant_id, lower(name), id) WHERE deleted_at IS NULL;
CREATE INDEX contacts_by_tags ON ventros.contacts USING gin (tags);
COMMENT ON TABLE ventros.contacts IS 'Contact: a person the business talks to over any channel';

SELECT ventros.register_aggregate('contact', 'ventros.contacts', 'crm',
    description => 'A person the business talks to over any channel');

-- Normalises the fields of a contact change set (phone, email, name, tags).
CREATE FUNCTION ventros.normalize_contact_changes(changes jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result jsonb := changes;
BEGIN
    IF jsonb_typeof(changes) IS DISTINCT FROM 'object' THEN
        RETURN changes;  -- apply_changes reports it
    END IF;
    IF changes ? 'name' AND jsonb_typeof(changes->'name') = 'string' THEN
        result := jsonb_set(result, '{name}', to_jsonb(ventros.check_length(btrim(changes->>'name'), 200, 'contact name')));
    END IF;
    IF changes ? 'phone' AND jsonb_typeof(changes->'phone') = 'string' THEN
        result := jsonb_set(result, '{phone}', to_jsonb(ventros.normalize_phone(changes->>'phone')));
    END IF;
    IF changes ? 'email' AND jsonb_typeof(changes->'email') = 'string' THEN
        result := jsonb_set(result, '{email}', to_jsonb(ventros.normalize_email(changes->>'email')));
    END IF;
    IF changes ? 'tags' AND jsonb_typeof(changes->'tags') = 'array' THEN
        result := jsonb_set(result, '{tags}',
            coalesce((SELECT jsonb_agg(DISTINCT t) FROM jsonb_array_elements_text(changes->'tags') t), '[]'));
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.normalize_contact_changes(jsonb) IS
    'Normalises phone (E.164), email (lowercase), name (trimmed) and tags (distinct) in a contact change set';

-- Re-raises a unique violation of the contacts table with a message that
-- names the duplicate.
CREATE FUNCTION ventros.raise_contact_duplicate(constraint_name text, phone text, email text, external_id text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION '%', CASE constraint_name
            WHEN 'contacts_unique_phone' THEN format('a contact with phone %s already exists', phone)
            WHEN 'contacts_unique_email' THEN format('a contact with email %s already exists', email)
            WHEN 'contacts_unique_external_id' THEN format('a contact with external id %s already exists', external_id)
            ELSE format('duplicate contact (%s)', constraint_name) END
        USING ERRCODE = '23505', CONSTRAINT = constraint_name,
              HINT = 'Look the contact up with ventros.find_contact() and update it instead.';
END
$$;
COMMENT ON FUNCTION ventros.raise_contact_duplicate(text, text, text, text) IS
    'Raises 23505 naming the duplicate phone, email or external id of a contact';

CREATE FUNCTION ventros.create_contact(
    name           text,
    phone          text    DEFAULT NULL,
    email          text    DEFAULT NULL,
    project_id     uuid    DEFAULT NULL,
    external_id    text    DEFAULT NULL,
    source_channel text    DEFAULT NULL,
    language       text    DEFAULT 'en',
    timezone       text    DEFAULT NULL,
    tags           text[]  DEFAULT '{}')
RETURNS ventros.contacts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.contacts;
    constraint_name text;
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'contact name must not be null' USING ERRCODE = '23502';
    END IF;
    INSERT INTO ventros.contacts (project_id, name, phone, email, external_id, source_channel,
                                  language, timezone, tags)
    VALUES (coalesce(project_id, ventros.default_project()),
            ventros.check_length(btrim(name), 200, 'contact name'),
            ventros.normalize_phone(phone), ventros.normalize_email(email),
            ventros.check_length(external_id, 200, 'contact external id'), source_channel,
            coalesce(language, 'en'), timezone,
            ARRAY(SELECT DISTINCT t FROM unnest(coalesce(tags, '{}')) t ORDER BY t))
    RETURNING * INTO result;
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    GET STACKED DIAGNOSTICS constraint_name = CONSTRAINT_NAME;
    PERFORM ventros.raise_contact_duplicate(constraint_name, ventros.normalize_phone(phone),
                                            ventros.normalize_email(email), external_id);
END
$$;
COMMENT ON FUNCTION ventros.create_contact(text, text, text, uuid, text, text, text, text, text[]) IS
    'Creates a contact in the acting tenant (default project unless given); emits contact.created';

CREATE FUNCTION ventros.update_contact(contact_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.contacts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    normalized jsonb := ventros.normalize_contact_changes(changes);
    constraint_name text;
BEGIN
    RETURN ventros.apply_changes(NULL::ventros.contacts, 'contact', contact_id, expected_version, normalized,
        ARRAY['name', 'email', 'phone', 'external_id', 'source_channel', 'language', 'timezone', 'tags',
              'profile_picture_url', 'profile_picture_fetched_at', 'first_interaction_at', 'last_interaction_at']);
EXCEPTION WHEN unique_violation THEN
    GET STACKED DIAGNOSTICS constraint_name = CONSTRAINT_NAME;
    PERFORM ventros.raise_contact_duplicate(constraint_name, normalized->>'phone', normalized->>'email',
                                            normalized->>'external_id');
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.update_contact(uuid, integer, jsonb) IS
    'Changes fields of a contact (a JSON object of field -> value) if expected_version is current; emits contact.updated';

CREATE FUNCTION ventros.delete_contact(contact_id uuid, expected_version integer DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.delete_row('ventros.contacts', 'contact', contact_id, expected_version) $$;
COMMENT ON FUNCTION ventros.delete_contact(uuid, integer) IS
    'Soft-deletes a contact (P0002 if absent, VN001 if expected_version is stale); emits contact.deleted';

CREATE FUNCTION ventros.get_contact(contact_id uuid) RETURNS ventros.contacts
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.get_row(NULL::ventros.contacts, 'contact', contact_id) $$;
COMMENT ON FUNCTION ventros.get_contact(uuid) IS 'A live contact of the acting tenant, or P0002';

-- find_contact: the one contact with this phone or email (normalised first).
CREATE FUNCTION ventros.find_contact(phone text DEFAULT NULL, email text DEFAULT NULL,
                                     project_id uuid DEFAULT NULL)
RETURNS SETOF ventros.contacts
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.* FROM ventros.contacts c
    WHERE c.tenant_id = ventros.require_tenant()
      AND c.project_id = coalesce(find_contact.project_id, ventros.default_project())
      AND (find_contact.phone IS NULL OR c.phone = ventros.normalize_phone(find_contact.phone))
      AND (find_contact.email IS NULL OR c.email = ventros.normalize_email(find_contact.email))
      AND (find_contact.phone IS NOT NULL OR find_contact.email IS NOT NULL)
    LIMIT 1
$$;
COMMENT ON FUNCTION ventros.find_contact(text, text, uuid) IS
    'The live contact with this phone and/or email (normalised), or no row';

-- list_contacts: lookup by name prefix, phone, email or tag with keyset paging
-- in (lower(name), id) order.  Pass the last row's name and id as after_name
-- and after_id for the next page.
CREATE FUNCTION ventros.list_contacts(
    name_prefix text    DEFAULT NULL,
    phone       text    DEFAULT NULL,
    email       text    DEFAULT NULL,
    tag         text    DEFAULT NULL,
    after_name  text    DEFAULT NULL,
    after_id    uuid    DEFAULT NULL,
    page_size   integer DEFAULT 50)
RETURNS SETOF ventros.contacts
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.* FROM ventros.contacts c
    WHERE c.tenant_id = ventros.require_tenant()
      AND (name_prefix IS NULL
           OR lower(c.name) LIKE replace(replace(replace(lower(name_prefix), '\', '\\'), '%', '\%'), '_', '\_') || '%')
      AND (list_contacts.phone IS NULL OR c.phone = ventros.normalize_phone(list_contacts.phone))
      AND (list_contacts.email IS NULL OR c.email = ventros.normalize_email(list_contacts.email))
      AND (tag IS NULL OR c.tags @> ARRAY[tag])
      AND (after_id IS NULL OR (lower(c.name), c.id) > (lower(after_name), after_id))
    ORDER BY lower(c.name), c.id
    LIMIT ventros.check_page_size(page_size)
$$;
COMMENT ON FUNCTION ventros.list_contacts(text, text, text, text, text, uuid, integer) IS
    'Live contacts by name prefix, phone, email or tag, in name order, one keyset page at a time';

GRANT EXECUTE ON FUNCTION ventros.get_contact(uuid), ventros.find_contact(text, text, uuid),
    ventros.list_contacts(text, text, text, text, text, uuid, integer)
    TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.normalize_contact_changes(jsonb), ventros.raise_contact_duplicate(text, text, text, text),
    ventros.create_contact(text, text, text, uuid, text, text, text, text, text[]),
    ventros.update_contact(uuid, integer, jsonb)
    TO ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.delete_contact(uuid, integer) TO ventros_admin;

-- ---- sql/30_channels.sql
-- Aggregate 5, Channel (CRM): a connected messaging endpoint (a WhatsApp
-- session or number, an Instagram or Messenger page, ...).  Its status machine
-- is declared below; the engine refuses any other transition with VN002.

CREATE TABLE ventros.channels (
    id                                    uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id                             text        NOT NULL,
    version                               integer     NOT NULL DEFAULT 1,
    created_at                            timestamptz NOT NULL DEFAULT now(),
    updated_at                            timestamptz NOT NULL DEFAULT now(),
    deleted_at                            timestamptz,
    user_id                               uuid,
    project_id                            uuid        NOT NULL,
    name                                  text        NOT NULL,
    type                                  text        NOT NULL,
    status                                text        NOT NULL DEFAULT 'inactive',
    connection_mode                       text        NOT NULL DEFAULT 'manual',
    external_id                           text,
    config                                jsonb       NOT NULL DEFAULT '{}',
    webhook_id                            text        NOT NULL DEFAULT replace(gen_random_uuid()::text, '-', ''),
    webhook_url                           text,
    webhook_configured_at                 timestamptz,
    webhook_active                        boolean     NOT NULL DEFAULT false,
    pipeline_id                           uuid,
    session_timeout_minutes               integer,
    ai_enabled                            boolean     NOT NULL DEFAULT false,
    ai_agents_enabled                     boolean     NOT NULL DEFAULT false,
    allow_groups                          boolean     NOT NULL DEFAULT false,
    tracking_enabled                      boolean     NOT NULL DEFAULT false,
    debounce_timeout_ms                   integer     NOT NULL DEFAULT 15000,
    custom_field_definitions              jsonb       NOT NULL DEFAULT '{}',
    messages_received                     integer     NOT NULL DEFAULT 0,
    messages_sent                         integer     NOT NULL DEFAULT 0,
    last_message_at                       timestamptz,
    last_error_at                         timestamptz,
    last_error                            text,
    history_import_enabled                boolean     NOT NULL DEFAULT false,
    history_import_status                 text        NOT NULL DEFAULT 'idle',
    history_import_stats                  jsonb,
    history_import_correlation_id         text,
    last_import_date                      timestamptz,
    default_agent_id                      uuid,
    history_import_max_days               integer,
    history_import_max_messages_per_chat  integer,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id),
    CONSTRAINT channels_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT channels_type_known CHECK (type IN ('waha', 'whatsapp_business', 'whatsapp', 'messenger', 'instagram',
                                                   'telegram', 'wechat', 'twilio_sms', 'web_form')),
    CONSTRAINT channels_status_known CHECK (status IN ('inactive', 'activating', 'active', 'connecting',
                                                       'disconnected', 'error')),
    CONSTRAINT channels_connection_mode_known CHECK (connection_mode IN ('manual', 'auto')),
    CONSTRAINT channels_config_object CHECK (jsonb_typeof(config) = 'object'),
    CONSTRAINT channels_session_timeout_range CHECK (session_timeout_minutes BETWEEN 1 AND 1440),
    CONSTRAINT channels_debounce_range CHECK (debounce_timeout_ms BETWEEN 0 AND 300000),
    CONSTRAINT channels_history_import_status_known CHECK (history_import_status IN ('idle', 'importing', 'completed', 'failed')),
    CONSTRAINT channels_history_limits_positive CHECK (history_import_max_days > 0 AND history_import_max_messages_per_chat > 0),
    CONSTRAINT channels_counters_positive CHECK (messages_received >= 0 AND messages_sent >= 0)
);
CREATE UNIQUE INDEX channels_unique_webhook_id ON ventros.channels (tenant_id, webhook_id);
CREATE UNIQUE INDEX channels_id ON ventros.channels (id);
CREATE INDEX channels_by_external_id ON ventros.channels (tenant_id, type, external_id) WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.channels IS 'Channel: a connected messaging endpoint through which messages flow';

SELECT ventros.register_aggregate('channel', 'ventros.channels', 'crm',
    state_column => 'status',
    transitions => '[
        {"from": null, "to": "inactive"},
        {"from": "inactive", "to": "activating", "event": "channel.activation_requested", "description": "Activation of a channel was requested."},
        {"from": "activating", "to": "active", "event": "channel.activated", "description": "A channel became active."},
        {"from": "activating", "to": "inactive", "event": "channel.deactivated", "description": "A channel was deactivated."},
        {"from": "activating", "to": "error", "event": "channel.activation_failed", "description": "Activation of a channel failed."},
        {"from": "active", "to": "connecting", "event": "channel.reconnection_started", "description": "A channel lost its session and is reconnecting."},
        {"from": "active", "to": "disconnected", "event": "channel.disconnected", "description": "A channel was disconnected."},
        {"from": "active", "to": "error", "event": "channel.failed", "description": "A channel failed."},
        {"from": "active", "to": "inactive", "event": "channel.deactivated"},
        {"from": "connecting", "to": "active", "event": "channel.reconnected", "description": "A channel reconnected."},
        {"from": "connecting", "to": "error", "event": "channel.failed"},
        {"from": "connecting", "to": "disconnected", "event": "channel.disconnected"},
        {"from": "disconnected", "to": "connecting", "event": "channel.reconnection_started"},
        {"from": "disconnected", "to": "activating", "event": "channel.activation_requested"},
        {"from": "disconnected", "to": "inactive", "event": "channel.deactivated"},
        {"from": "error", "to": "activating", "event": "channel.activation_requested"},
        {"from": "error", "to": "inactive", "event": "channel.deactivated"}
    ]',
    redacted_columns => '{config}',
    privileges => '{"ventros_viewer": ["SELECT"], "ventros_admin": ["INSERT", "UPDATE", "DELETE"]}',
    description => 'A connected messaging endpoint');

CREATE FUNCTION ventros.create_channel(
    name        text,
    type        text,
    project_id  uuid    DEFAULT NULL,
    config      jsonb   DEFAULT '{}',
    external_id text    DEFAULT NULL,
    pipeline_id uuid    DEFAULT NULL,
    session_timeout_minutes integer DEFAULT NULL)
RETURNS ventros.channels
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.channels;
BEGIN
    IF name IS NULL OR type IS NULL THEN
        RAISE EXCEPTION 'channel % must not be null', CASE WHEN name IS NULL THEN 'name' ELSE 'type' END
            USING ERRCODE = '23502';
    END IF;
    IF type NOT IN ('waha', 'whatsapp_business', 'whatsapp', 'messenger', 'instagram', 'telegram', 'wechat',
                    'twilio_sms', 'web_form') THEN
        RAISE EXCEPTION 'unknown channel type "%"', left(type, 64)
            USING ERRCODE = '22023',
                  HINT = 'Use waha, whatsapp, whatsapp_business, instagram, messenger, telegram, wechat, twilio_sms or web_form.';
    END IF;
    IF config IS NOT NULL AND jsonb_typeof(config) <> 'object' THEN
        RAISE EXCEPTION 'channel config must be a JSON object' USING ERRCODE = '22023';
    END IF;
    INSERT INTO ventros.channels (project_id, name, type, config, external_id, pipeline_id, session_timeout_minutes)
    VALUES (coalesce(project_id, ventros.default_project()), ventros.check_length(btrim(name), 200, 'channel name'),
            type, coalesce(config, '{}'), ventros.check_length(external_id, 200, 'channel external id'),
            pipeline_id, session_timeout_minutes)
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.create_channel(text, text, uuid, jsonb, text, uuid, integer) IS
    'Creates an inactive channel in the acting tenant; emits channel.created';

CREATE FUNCTION ventros.update_channel(channel_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.channels
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.apply_changes(NULL::ventros.channels, 'channel', channel_id, expected_version, changes,
        ARRAY['name', 'status', 'connection_mode', 'external_id', 'config', 'webhook_url', 'webhook_configured_at',
              'webhook_active', 'pipeline_id', 'session_timeout_minutes', 'ai_enabled', 'ai_agents_enabled',
              'allow_groups', 'tracking_enabled', 'debounce_timeout_ms', 'custom_field_definitions',
              'last_error_at', 'last_error', 'history_import_enabled', 'default_agent_id',
              'history_import_max_days', 'history_import_max_messages_per_chat'])
$$;
COMMENT ON FUNCTION ventros.update_channel(uuid, integer, jsonb) IS
    'Changes fields of a channel; a status change must follow the channel state machine (VN002); emits channel.updated or the transition''s event';

CREATE FUNCTION ventros.set_channel_status(channel_id uuid, expected_version integer, status text)
RETURNS ventros.channels
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.update_channel(channel_id, expected_version, jsonb_build_object('status', status)) $$;
COMMENT ON FUNCTION ventros.set_channel_status(uuid, integer, text) IS
    'Moves a channel along its state machine (VN002 when not allowed); emits the transition''s event';

CREATE FUNCTION ventros.delete_channel(channel_id uuid, expected_version integer DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.delete_row('ventros.channels', 'channel', channel_id, expected_version) $$;
COMMENT ON FUNCTION ventros.delete_channel(uuid, integer) IS 'Soft-deletes a channel; emits channel.deleted';

CREATE FUNCTION ventros.get_channel(channel_id uuid) RETURNS ventros.channels
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.get_row(NULL::ventros.channels, 'channel', channel_id) $$;
COMMENT ON FUNCTION ventros.get_channel(uuid) IS 'A live channel of the acting tenant, or P0002';

CREATE FUNCTION ventros.list_channels(type text DEFAULT NULL, status text DEFAULT NULL)
RETURNS SETOF ventros.channels
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.* FROM ventros.channels c
    WHERE c.tenant_id = ventros.require_tenant()
      AND (list_channels.type IS NULL OR c.type = list_channels.type)
      AND (list_channels.status IS NULL OR c.status = list_channels.status)
    ORDER BY c.created_at, c.id
    LIMIT current_setting('ventros.max_page_size')::integer
$$;
COMMENT ON FUNCTION ventros.list_channels(text, text) IS 'The acting tenant''s live channels, oldest first';

GRANT EXECUTE ON FUNCTION ventros.get_channel(uuid), ventros.list_channels(text, text) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.create_channel(text, text, uuid, jsonb, text, uuid, integer),
    ventros.update_channel(uuid, integer, jsonb), ventros.set_channel_status(uuid, integer, text),
    ventros.delete_channel(uuid, integer)
    TO ventros_admin;

-- ---- sql/31_channel_types.sql
-- Aggregate 6, ChannelType (CRM): the catalogue of channel kinds.
--
-- The extension seeds one row per kind under the system tenant "ventros"
-- (ids 1-99 are reserved for it); every tenant reads those rows through an
-- extra SELECT policy, and writes only rows of its own (custom kinds, ids
-- from 1000).  type_id is the original's fixed integer key; rows keep the
-- common uuid id and (tenant_id, id) primary key of every aggregate.  A
-- session or message stores the type_id of its channel's kind.

CREATE TABLE ventros.channel_types (
    id            uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id     text        NOT NULL,
    version       integer     NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz,
    type_id       integer     NOT NULL,
    name          text        NOT NULL,
    description   text,
    provider      text        NOT NULL,
    configuration jsonb       NOT NULL DEFAULT '{}',
    active        boolean     NOT NULL DEFAULT true,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT channel_types_name_format CHECK (name ~ '^[a-z][a-z0-9_]{0,63}$'),
    CONSTRAINT channel_types_provider_not_blank CHECK (btrim(provider) <> '' AND length(provider) <= 100),
    CONSTRAINT channel_types_reserved_ids CHECK ((tenant_id = 'ventros' AND type_id BETWEEN 1 AND 99)
                                                 OR (tenant_id <> 'ventros' AND type_id >= 1000)),
    CONSTRAINT channel_types_configuration_object CHECK (jsonb_typeof(configuration) = 'object')
);
CREATE UNIQUE INDEX channel_types_unique_type_id ON ventros.channel_types (tenant_id, type_id);
CREATE UNIQUE INDEX channel_types_unique_name ON ventros.channel_types (tenant_id, name) WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.channel_types IS
    'ChannelType: catalogue of channel kinds; seeded rows under tenant "ventros" are readable by every tenant';

SELECT ventros.register_aggregate('channel_type', 'ventros.channel_types', 'crm',
    state_column => 'active',
    transitions => '[
        {"from": null, "to": "true"},
        {"from": null, "to": "false"},
        {"from": "false", "to": "true", "event": "channel_type.activated", "description": "A channel type was activated."},
        {"from": "true", "to": "false", "event": "channel_type.deactivated", "description": "A channel type was deactivated."}
    ]',
    privileges => '{"ventros_viewer": ["SELECT"], "ventros_admin": ["INSERT", "UPDATE", "DELETE"]}',
    description => 'A kind of channel (WhatsApp, Instagram, ...)');

-- Every tenant reads the system tenant's catalogue (permissive policies OR).
CREATE POLICY ventros_system_catalog_read ON ventros.channel_types FOR SELECT
    USING (tenant_id = 'ventros' AND deleted_at IS NULL);

-- Seed: the channel kinds of channels.type, under the system tenant.
DO $seed$
BEGIN
    PERFORM pg_catalog.set_config('ventros.tenant', 'ventros', true);
    INSERT INTO ventros.channel_types (tenant_id, type_id, name, description, provider)
    VALUES ('ventros', 1, 'waha', 'WhatsApp through a WAHA session', 'waha'),
           ('ventros', 2, 'whatsapp_business', 'WhatsApp Business app', 'meta'),
           ('ventros', 3, 'whatsapp', 'WhatsApp Cloud API', 'meta'),
           ('ventros', 4, 'messenger', 'Facebook Messenger page', 'meta'),
           ('ventros', 5, 'instagram', 'Instagram Direct', 'meta'),
           ('ventros', 6, 'telegram', 'Telegram bot', 'telegram'),
           ('ventros', 7, 'wechat', 'WeChat official account', 'tencent'),
           ('ventros', 8, 'twilio_sms', 'SMS through Twilio', 'twilio'),
           ('ventros', 9, 'web_form', 'Web form or chat widget', 'ventros');
    PERFORM pg_catalog.set_config('ventros.tenant', '', true);
END
$seed$;

-- The type_id of a channel kind: the tenant's own row first, then the system's.
CREATE FUNCTION ventros.channel_type_id(type_name text) RETURNS integer
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.type_id FROM ventros.channel_types t
    WHERE t.name = type_name AND t.tenant_id IN (ventros.current_tenant(), 'ventros')
    ORDER BY t.tenant_id = 'ventros' LIMIT 1
$$;
COMMENT ON FUNCTION ventros.channel_type_id(text) IS
    'The type_id of a channel kind by name (the tenant''s own kind first, then the system catalogue), or NULL';

CREATE FUNCTION ventros.create_channel_type(type_id integer, name text, provider text,
                                           description text DEFAULT NULL, configuration jsonb DEFAULT '{}')
RETURNS ventros.channel_types
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.channel_types;
BEGIN
    IF type_id IS NULL OR name IS NULL OR provider IS NULL THEN
        RAISE EXCEPTION 'channel type id, name and provider must not be null' USING ERRCODE = '23502';
    END IF;
    INSERT INTO ventros.channel_types (type_id, name, provider, description, configuration)
    VALUES (type_id, name, provider, description, coalesce(configuration, '{}'))
    RETURNING * INTO result;
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'a channel type with id % or name "%" already exists', type_id, name
        USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.create_channel_type(integer, text, text, text, jsonb) IS
    'Creates a tenant''s own channel kind (type_id >= 1000; 1-99 belong to the system catalogue); emits channel_type.created';

CREATE FUNCTION ventros.update_channel_type(channel_type_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.channel_types
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.apply_changes(NULL::ventros.channel_types, 'channel_type', channel_type_id, expected_version,
                                 changes, ARRAY['description', 'configuration', 'active', 'provider'])
$$;
COMMENT ON FUNCTION ventros.update_channel_type(uuid, integer, jsonb) IS
    'Changes description, configuration, provider or active of the tenant''s own channel kind; emits channel_type.updated, .activated or .deactivated';

-- Platform administrators (de)activate a kind of the system catalogue.
CREATE FUNCTION ventros.set_system_channel_type_active(type_name text, active boolean)
RETURNS ventros.channel_types
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET ventros.tenant = 'ventros'
AS $$
DECLARE
    result ventros.channel_types;
BEGIN
    PERFORM ventros.require_platform_admin();
    UPDATE ventros.channel_types t SET active = set_system_channel_type_active.active, version = t.version
    WHERE t.tenant_id = 'ventros' AND t.name = type_name
    RETURNING * INTO result;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'channel type "%" not found', type_name USING ERRCODE = 'P0002';
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.set_system_channel_type_active(text, boolean) IS
    'Activates or deactivates a kind of the system catalogue (platform administrators); emits channel_type.activated / .deactivated';

CREATE FUNCTION ventros.list_channel_types(only_active boolean DEFAULT false)
RETURNS SETOF ventros.channel_types
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM ventros.channel_types t
    WHERE t.tenant_id IN (ventros.require_tenant(), 'ventros') AND (NOT only_active OR t.active)
    ORDER BY t.type_id
$$;
COMMENT ON FUNCTION ventros.list_channel_types(boolean) IS
    'The system catalogue of channel kinds plus the tenant''s own, by type_id';

GRANT EXECUTE ON FUNCTION ventros.channel_type_id(text), ventros.list_channel_types(boolean) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.create_channel_type(integer, text, text, text, jsonb),
    ventros.update_channel_type(uuid, integer, jsonb) TO ventros_admin;
GRANT EXECUTE ON FUNCTION ventros.set_system_channel_type_active(text, boolean) TO ventros_platform_admin;

-- ---- sql/32_agents.sql
-- Aggregate 9, Agent (CRM): anyone or anything acting in conversations.
--
-- System agents: the senders of automated messages have fixed ids
-- 00000000-0000-0000-0000-0000000000{01,02,03,04,05,10,99}.  They are seeded
-- per tenant (same ids in every tenant) by a trigger on the tenant's first
-- project, not once globally: keys lead with tenant_id, and a message's
-- composite foreign key (tenant_id, agent_id) can only point at an agent of
-- its own tenant.  System agents cannot be created, changed or deleted
-- (42501) once seeded.  Virtual agents (stand-ins for a past person) are
-- always offline and cannot send or be assigned.

CREATE TABLE ventros.agents (
    id                  uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id           text        NOT NULL,
    version             integer     NOT NULL DEFAULT 1,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    project_id          uuid        NOT NULL,
    user_id             uuid,
    name                text        NOT NULL,
    email               text,
    type                text        NOT NULL DEFAULT 'human',
    status              text        NOT NULL DEFAULT 'offline',
    role                text,
    active              boolean     NOT NULL DEFAULT true,
    config              jsonb       NOT NULL DEFAULT '{}',
    permissions         jsonb       NOT NULL DEFAULT '{}',
    settings            jsonb       NOT NULL DEFAULT '{}',
    virtual_metadata    jsonb,
    max_open_sessions   integer     NOT NULL DEFAULT 10,
    sessions_handled    integer     NOT NULL DEFAULT 0,
    average_response_ms integer     NOT NULL DEFAULT 0,
    last_activity_at    timestamptz,
    last_login_at       timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id),
    CONSTRAINT agents_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT agents_email_normalized CHECK (email = lower(email) AND email ~ '^[^@\s]+@[^@\s]+\.[^@\s.]+$'),
    CONSTRAINT agents_type_known CHECK (type IN ('human', 'ai', 'bot', 'channel', 'virtual', 'system')),
    CONSTRAINT agents_status_known CHECK (status IN ('available', 'busy', 'away', 'offline')),
    CONSTRAINT agents_role_known CHECK (role IN ('human_agent', 'supervisor', 'admin', 'ai_agent', 'ai_assistant',
                                                 'channel_bot', 'workflow_bot', 'analytics_bot', 'summarizer_bot')),
    CONSTRAINT agents_system_ids CHECK ((type = 'system') = (id::text LIKE '00000000-0000-0000-0000-0000000000__')),
    CONSTRAINT agents_virtual_offline CHECK (type <> 'virtual' OR status = 'offline'),
    CONSTRAINT agents_virtual_metadata CHECK (type <> 'virtual' OR virtual_metadata ? 'represents_person_name'),
    CONSTRAINT agents_virtual_period CHECK ((virtual_metadata->>'period_end') IS NULL
        OR (virtual_metadata->>'period_end')::timestamptz >= (virtual_metadata->>'period_start')::timestamptz),
    CONSTRAINT agents_capacity_range CHECK (max_open_sessions BETWEEN 0 AND 1000),
    CONSTRAINT agents_jsonb_objects CHECK (jsonb_typeof(config) = 'object' AND jsonb_typeof(permissions) = 'object'
                                           AND jsonb_typeof(settings) = 'object'),
    CONSTRAINT agents_counters_positive CHECK (sessions_handled >= 0 AND average_response_ms >= 0)
);
CREATE UNIQUE INDEX agents_unique_email ON ventros.agents (tenant_id, email) WHERE deleted_at IS NULL AND email IS NOT NULL;
CREATE INDEX agents_by_project ON ventros.agents (tenant_id, project_id, type) WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.agents IS 'Agent: a human, AI, bot, channel, virtual stand-in or system sender';

SELECT ventros.register_aggregate('agent', 'ventros.agents', 'crm',
    state_column => 'active',
    transitions => '[
        {"from": null, "to": "true"},
        {"from": null, "to": "false"},
        {"from": "false", "to": "true", "event": "agent.activated", "description": "An agent was activated."},
        {"from": "true", "to": "false", "event": "agent.deactivated", "description": "An agent was deactivated."}
    ]',
    description => 'Anyone or anything acting in conversations');
SELECT ventros.declare_quiet_columns('agent', '{sessions_handled,average_response_ms,last_activity_at}');
SELECT ventros.register_event_type('agent.logged_in', 'An agent logged in.');
SELECT ventros.register_event_type('agent.permission_granted', 'A permission was granted to an agent.');
SELECT ventros.register_event_type('agent.permission_revoked', 'A permission was revoked from an agent.');
SELECT ventros.register_event_type('agent.virtual_period_ended', 'The period a virtual agent stands for was ended.');

-- System agents: fixed, immutable.
CREATE FUNCTION ventros.system_agent_id(source text) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT (CASE source WHEN 'broadcast' THEN '00000000-0000-0000-0000-000000000001'
                        WHEN 'sequence' THEN '00000000-0000-0000-0000-000000000002'
                        WHEN 'trigger' THEN '00000000-0000-0000-0000-000000000003'
                        WHEN 'webhook' THEN '00000000-0000-0000-0000-000000000004'
                        WHEN 'scheduled' THEN '00000000-0000-0000-0000-000000000005'
                        WHEN 'test' THEN '00000000-0000-0000-0000-000000000010'
                        ELSE '00000000-0000-0000-0000-000000000099' END)::uuid
$$;
COMMENT ON FUNCTION ventros.system_agent_id(text) IS
    'The fixed id of the system agent sending messages of a source (broadcast …01, sequence …02, trigger …03, webhook …04, scheduled …05, test …10, any other …99)';

CREATE FUNCTION ventros.seed_system_agents() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO ventros.agents (id, tenant_id, project_id, name, type, role, status)
    SELECT ventros.system_agent_id(s), NEW.tenant_id, NEW.id, 'System (' || s || ')', 'system', 'workflow_bot', 'available'
    FROM unnest(ARRAY['broadcast', 'sequence', 'trigger', 'webhook', 'scheduled', 'test', 'default']) s
    ON CONFLICT (tenant_id, id) DO NOTHING;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.seed_system_agents() IS
    'Trigger: seeds the tenant''s system agents when its first project is created';
CREATE TRIGGER seed_system_agents AFTER INSERT ON ventros.projects
    FOR EACH ROW EXECUTE FUNCTION ventros.seed_system_agents();

CREATE FUNCTION ventros.guard_system_agents() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        -- Only the seeding trigger (SECURITY DEFINER: runs as the superuser
        -- owning the extension) may insert a system agent.
        IF NEW.type = 'system' AND NOT (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user) THEN
            RAISE EXCEPTION 'system agents cannot be created' USING ERRCODE = '42501',
                DETAIL = 'System agents are seeded with every tenant.';
        END IF;
        RETURN NEW;
    END IF;
    IF OLD.type = 'system' THEN
        RAISE EXCEPTION 'system agent % cannot be changed or deleted', OLD.id USING ERRCODE = '42501';
    END IF;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END
$$;
COMMENT ON FUNCTION ventros.guard_system_agents() IS 'Trigger: system agents are seeded only and immutable';
-- Named so that it fires before ventros_engine_before.
CREATE TRIGGER agents_guard_system BEFORE INSERT OR UPDATE OR DELETE ON ventros.agents
    FOR EACH ROW EXECUTE FUNCTION ventros.guard_system_agents();

CREATE FUNCTION ventros.create_agent(
    name        text,
    type        text    DEFAULT 'human',
    email       text    DEFAULT NULL,
    user_id     uuid    DEFAULT NULL,
    role        text    DEFAULT NULL,
    project_id  uuid    DEFAULT NULL,
    config      jsonb   DEFAULT '{}',
    max_open_sessions integer DEFAULT 10)
RETURNS ventros.agents
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.agents;
BEGIN
    IF name IS NULL OR type IS NULL THEN
        RAISE EXCEPTION 'agent name and type must not be null' USING ERRCODE = '23502';
    END IF;
    IF type NOT IN ('human', 'ai', 'bot', 'channel') THEN
        RAISE EXCEPTION 'agents of type "%" cannot be created here', left(type, 32)
            USING ERRCODE = '22023',
                  HINT = 'Use human, ai, bot or channel; virtual agents come from create_virtual_agent(), system agents are seeded.';
    END IF;
    INSERT INTO ventros.agents (project_id, name, type, email, user_id, role, config, max_open_sessions)
    VALUES (coalesce(project_id, ventros.default_project()), ventros.check_length(btrim(name), 200, 'agent name'),
            type, ventros.normalize_email(email), user_id, role, coalesce(config, '{}'), coalesce(max_open_sessions, 10))
    RETURNING * INTO result;
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'an agent with email % already exists', ventros.normalize_email(email)
        USING ERRCODE = '23505', CONSTRAINT = 'agents_unique_email';
END
$$;
COMMENT ON FUNCTION ventros.create_agent(text, text, text, uuid, text, uuid, jsonb, integer) IS
    'Creates a human, AI, bot or channel agent; emits agent.created';

CREATE FUNCTION ventros.create_virtual_agent(represents_person_name text, reason text,
                                             period_start timestamptz DEFAULT NULL, project_id uuid DEFAULT NULL)
RETURNS ventros.agents
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.agents;
BEGIN
    IF represents_person_name IS NULL OR btrim(represents_person_name) = '' THEN
        RAISE EXCEPTION 'a virtual agent needs the name of the person it represents' USING ERRCODE = '23502';
    END IF;
    INSERT INTO ventros.agents (project_id, name, type, status, virtual_metadata)
    VALUES (coalesce(project_id, ventros.default_project()), ventros.check_length(btrim(represents_person_name), 200, 'agent name'),
            'virtual', 'offline',
            jsonb_strip_nulls(jsonb_build_object('represents_person_name', represents_person_name, 'reason', reason,
                                                 'period_start', period_start)))
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.create_virtual_agent(text, text, timestamptz, uuid) IS
    'Creates a virtual agent standing in for a past person (always offline, never sends); emits agent.created';

CREATE FUNCTION ventros.end_virtual_period(agent_id uuid, expected_version integer, period_end timestamptz)
RETURNS ventros.agents
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.agents;
BEGIN
    UPDATE ventros.agents a
    SET virtual_metadata = a.virtual_metadata || jsonb_build_object('period_end', period_end), version = expected_version
    WHERE a.tenant_id = ventros.require_tenant() AND a.id = agent_id AND a.type = 'virtual'
    RETURNING * INTO result;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'virtual agent % not found', agent_id USING ERRCODE = 'P0002';
    END IF;
    PERFORM ventros.emit('agent.virtual_period_ended', 'agent', agent_id,
                         jsonb_build_object('period_end', period_end), result.version);
    RETURN result;
EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION 'the virtual period of agent % cannot end before it starts', agent_id USING ERRCODE = '23514';
END
$$;
COMMENT ON FUNCTION ventros.end_virtual_period(uuid, integer, timestamptz) IS
    'Ends the period a virtual agent stands for (end >= start, else 23514); emits agent.updated and agent.virtual_period_ended';

CREATE FUNCTION ventros.update_agent(agent_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.agents
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    normalized jsonb := changes;
BEGIN
    IF jsonb_typeof(changes) = 'object' AND changes ? 'email' AND jsonb_typeof(changes->'email') = 'string' THEN
        normalized := jsonb_set(changes, '{email}', to_jsonb(ventros.normalize_email(changes->>'email')));
    END IF;
    RETURN ventros.apply_changes(NULL::ventros.agents, 'agent', agent_id, expected_version, normalized,
        ARRAY['name', 'email', 'status', 'role', 'active', 'config', 'settings', 'max_open_sessions', 'user_id']);
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'an agent with email % already exists', normalized->>'email'
        USING ERRCODE = '23505', CONSTRAINT = 'agents_unique_email';
END
$$;
COMMENT ON FUNCTION ventros.update_agent(uuid, integer, jsonb) IS
    'Changes fields of an agent (name, email, presence status, role, active, config, settings, capacity); emits agent.updated, .activated or .deactivated';

CREATE FUNCTION ventros.set_agent_presence(agent_id uuid, status text)
RETURNS ventros.agents
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.agents;
BEGIN
    UPDATE ventros.agents a SET status = set_agent_presence.status, version = a.version
    WHERE a.tenant_id = ventros.require_tenant() AND a.id = agent_id
    RETURNING * INTO result;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'agent % not found', agent_id USING ERRCODE = 'P0002';
    END IF;
    RETURN result;
EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION 'invalid presence "%" for agent %', left(status, 32), agent_id USING ERRCODE = '22023',
        HINT = 'Use available, busy, away or offline; virtual agents are always offline.';
END
$$;
COMMENT ON FUNCTION ventros.set_agent_presence(uuid, text) IS
    'Sets an agent''s presence (available, busy, away, offline) whatever its version; emits agent.updated';

CREATE FUNCTION ventros.record_agent_login(agent_id uuid)
RETURNS ventros.agents
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.agents;
BEGIN
    UPDATE ventros.agents a SET last_login_at = now(), version = a.version
    WHERE a.tenant_id = ventros.require_tenant() AND a.id = agent_id AND a.type NOT IN ('virtual', 'system')
    RETURNING * INTO result;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'agent % not found', agent_id USING ERRCODE = 'P0002';
    END IF;
    PERFORM ventros.emit('agent.logged_in', 'agent', agent_id, jsonb_build_object('at', result.last_login_at), result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.record_agent_login(uuid) IS 'Records a login of an agent; emits agent.updated and agent.logged_in';

CREATE FUNCTION ventros.set_agent_permission(agent_id uuid, permission text, granted boolean)
RETURNS ventros.agents
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.agents;
BEGIN
    IF permission IS NULL OR permission !~ '^[a-z_]+(\.[a-z_]+)*$' THEN
        RAISE EXCEPTION 'malformed permission "%"', left(permission, 64) USING ERRCODE = '22023',
            HINT = 'Permissions look like sessions.manage or messages.send.';
    END IF;
    UPDATE ventros.agents a
    SET permissions = CASE WHEN granted THEN a.permissions || jsonb_build_object(permission, true)
                           ELSE a.permissions - permission END,
        version = a.version
    WHERE a.tenant_id = ventros.require_tenant() AND a.id = agent_id
    RETURNING * INTO result;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'agent % not found', agent_id USING ERRCODE = 'P0002';
    END IF;
    PERFORM ventros.emit(CASE WHEN granted THEN 'agent.permission_granted' ELSE 'agent.permission_revoked' END,
                         'agent', agent_id, jsonb_build_object('permission', permission), result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.set_agent_permission(uuid, text, boolean) IS
    'Grants or revokes a permission of an agent; emits agent.updated and agent.permission_granted / agent.permission_revoked';

CREATE FUNCTION ventros.delete_agent(agent_id uuid, expected_version integer DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.delete_row('ventros.agents', 'agent', agent_id, expected_version) $$;
COMMENT ON FUNCTION ventros.delete_agent(uuid, integer) IS 'Soft-deletes an agent (not a system agent: 42501); emits agent.deleted';

CREATE FUNCTION ventros.get_agent(agent_id uuid) RETURNS ventros.agents
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.get_row(NULL::ventros.agents, 'agent', agent_id) $$;
COMMENT ON FUNCTION ventros.get_agent(uuid) IS 'A live agent of the acting tenant, or P0002';

CREATE FUNCTION ventros.list_agents(type text DEFAULT NULL, status text DEFAULT NULL, only_active boolean DEFAULT NULL,
                                    after_name text DEFAULT NULL, after_id uuid DEFAULT NULL, page_size integer DEFAULT 50)
RETURNS SETOF ventros.agents
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT a.* FROM ventros.agents a
    WHERE a.tenant_id = ventros.require_tenant()
      AND (list_agents.type IS NULL OR a.type = list_agents.type)
      AND (list_agents.status IS NULL OR a.status = list_agents.status)
      AND (only_active IS NULL OR a.active = only_active)
      AND (after_id IS NULL OR (lower(a.name), a.id) > (lower(after_name), after_id))
    ORDER BY lower(a.name), a.id
    LIMIT ventros.check_page_size(page_size)
$$;
COMMENT ON FUNCTION ventros.list_agents(text, text, boolean, text, uuid, integer) IS
    'Live agents by type, presence and active flag, in name order, one keyset page at a time';

GRANT EXECUTE ON FUNCTION ventros.system_agent_id(text), ventros.get_agent(uuid),
    ventros.list_agents(text, text, boolean, text, uuid, integer) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.set_agent_presence(uuid, text), ventros.record_agent_login(uuid)
    TO ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.create_agent(text, text, text, uuid, text, uuid, jsonb, integer),
    ventros.create_virtual_agent(text, text, timestamptz, uuid), ventros.end_virtual_period(uuid, integer, timestamptz),
    ventros.update_agent(uuid, integer, jsonb), ventros.set_agent_permission(uuid, text, boolean),
    ventros.delete_agent(uuid, integer)
    TO ventros_admin;

-- ---- sql/33_teams.sql
-- Teams (CRM, new): groups of agents that sessions are assigned to.  A team
-- picks the next agent by its strategy: round_robin (the member assigned
-- longest ago) or capacity (the member with the fewest open sessions); both
-- skip members who are not available, inactive, virtual, or at their
-- max_open_sessions.  team_members is a child aggregate (team_member).

CREATE TABLE ventros.teams (
    id                  uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id           text        NOT NULL,
    version             integer     NOT NULL DEFAULT 1,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    project_id          uuid        NOT NULL,
    name                text        NOT NULL,
    description         text,
    assignment_strategy text        NOT NULL DEFAULT 'round_robin',
    active              boolean     NOT NULL DEFAULT true,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id),
    CONSTRAINT teams_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT teams_strategy_known CHECK (assignment_strategy IN ('round_robin', 'capacity', 'manual'))
);
CREATE UNIQUE INDEX teams_unique_name ON ventros.teams (tenant_id, project_id, lower(name)) WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.teams IS 'Team: a group of agents that sessions are assigned to, with an assignment strategy';

SELECT ventros.register_aggregate('team', 'ventros.teams', 'crm',
    privileges => '{"ventros_viewer": ["SELECT"], "ventros_admin": ["INSERT", "UPDATE", "DELETE"]}',
    description => 'A group of agents with an assignment strategy');

CREATE TABLE ventros.team_members (
    id               uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id        text        NOT NULL,
    version          integer     NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz,
    team_id          uuid        NOT NULL,
    agent_id         uuid        NOT NULL,
    role             text        NOT NULL DEFAULT 'member',
    last_assigned_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, team_id) REFERENCES ventros.teams (tenant_id, id),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES ventros.agents (tenant_id, id),
    CONSTRAINT team_members_role_known CHECK (role IN ('member', 'lead'))
);
CREATE UNIQUE INDEX team_members_unique ON ventros.team_members (tenant_id, team_id, agent_id) WHERE deleted_at IS NULL;
CREATE INDEX team_members_by_agent ON ventros.team_members (tenant_id, agent_id) WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.team_members IS 'Membership of an agent in a team';

SELECT ventros.register_aggregate('team_member', 'ventros.team_members', 'crm',
    privileges => '{"ventros_viewer": ["SELECT"], "ventros_agent": ["UPDATE"], "ventros_admin": ["INSERT", "DELETE"]}',
    description => 'An agent''s membership in a team');
-- last_assigned_at is the round-robin cursor, moved by every assignment.
SELECT ventros.declare_quiet_columns('team_member', '{last_assigned_at}');

CREATE FUNCTION ventros.create_team(name text, assignment_strategy text DEFAULT 'round_robin',
                                    description text DEFAULT NULL, project_id uuid DEFAULT NULL)
RETURNS ventros.teams
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.teams;
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'team name must not be null' USING ERRCODE = '23502';
    END IF;
    IF assignment_strategy NOT IN ('round_robin', 'capacity', 'manual') THEN
        RAISE EXCEPTION 'unknown assignment strategy "%"', left(assignment_strategy, 32) USING ERRCODE = '22023',
            HINT = 'Use round_robin, capacity or manual.';
    END IF;
    INSERT INTO ventros.teams (project_id, name, assignment_strategy, description)
    VALUES (coalesce(project_id, ventros.default_project()), ventros.check_length(btrim(name), 200, 'team name'),
            assignment_strategy, description)
    RETURNING * INTO result;
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'a team named "%" already exists', name USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.create_team(text, text, text, uuid) IS 'Creates a team; emits team.created';

CREATE FUNCTION ventros.update_team(team_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.teams
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.apply_changes(NULL::ventros.teams, 'team', team_id, expected_version, changes,
                                 ARRAY['name', 'description', 'assignment_strategy', 'active'])
$$;
COMMENT ON FUNCTION ventros.update_team(uuid, integer, jsonb) IS 'Changes fields of a team; emits team.updated';

CREATE FUNCTION ventros.delete_team(team_id uuid, expected_version integer DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.delete_row('ventros.teams', 'team', team_id, expected_version) $$;
COMMENT ON FUNCTION ventros.delete_team(uuid, integer) IS 'Soft-deletes a team; emits team.deleted';

CREATE FUNCTION ventros.add_team_member(team_id uuid, agent_id uuid, role text DEFAULT 'member')
RETURNS ventros.team_members
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.team_members;
    agent_type text;
BEGIN
    SELECT a.type INTO agent_type FROM ventros.agents a
    WHERE a.tenant_id = ventros.require_tenant() AND a.id = add_team_member.agent_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'agent % not found', agent_id USING ERRCODE = 'P0002';
    END IF;
    IF agent_type IN ('virtual', 'system') THEN
        RAISE EXCEPTION '% agents cannot join a team', agent_type USING ERRCODE = '22023';
    END IF;
    PERFORM 1 FROM ventros.teams t WHERE t.tenant_id = ventros.require_tenant() AND t.id = add_team_member.team_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'team % not found', team_id USING ERRCODE = 'P0002';
    END IF;
    INSERT INTO ventros.team_members (team_id, agent_id, role)
    VALUES (add_team_member.team_id, add_team_member.agent_id, coalesce(role, 'member'))
    RETURNING * INTO result;
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'agent % is already a member of team %', agent_id, team_id USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.add_team_member(uuid, uuid, text) IS
    'Adds an agent (not virtual or system) to a team; emits team_member.created';

CREATE FUNCTION ventros.remove_team_member(team_id uuid, agent_id uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    member_id uuid;
BEGIN
    SELECT m.id INTO member_id FROM ventros.team_members m
    WHERE m.tenant_id = ventros.require_tenant() AND m.team_id = remove_team_member.team_id
      AND m.agent_id = remove_team_member.agent_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'agent % is not a member of team %', agent_id, team_id USING ERRCODE = 'P0002';
    END IF;
    PERFORM ventros.delete_row('ventros.team_members', 'team_member', member_id, NULL);
END
$$;
COMMENT ON FUNCTION ventros.remove_team_member(uuid, uuid) IS 'Removes an agent from a team; emits team_member.deleted';

GRANT EXECUTE ON FUNCTION ventros.create_team(text, text, text, uuid), ventros.update_team(uuid, integer, jsonb),
    ventros.delete_team(uuid, integer), ventros.add_team_member(uuid, uuid, text), ventros.remove_team_member(uuid, uuid)
    TO ventros_admin;

-- ---- sql/34_pipelines.sql
-- Aggregate 7, Pipeline (CRM): a funnel of ordered statuses that contacts
-- move through, plus the session settings of conversations under it.
--
-- Child aggregates: pipeline_status (the statuses), pipeline_custom_field,
-- contact_pipeline_status (membership and history: one open row, exited_at
-- NULL, per contact and pipeline, enforced by a partial unique index).  The
-- engine writes their row events; the commands add the domain's
-- pipeline.status_* events on the pipeline and contact.pipeline_status_changed.

CREATE TABLE ventros.pipelines (
    id                      uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id               text        NOT NULL,
    version                 integer     NOT NULL DEFAULT 1,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    deleted_at              timestamptz,
    project_id              uuid        NOT NULL,
    name                    text        NOT NULL,
    description             text,
    color                   text,
    position                integer     NOT NULL DEFAULT 0,
    active                  boolean     NOT NULL DEFAULT true,
    session_timeout_minutes integer,
    enable_ai_summary       boolean     NOT NULL DEFAULT false,
    ai_provider             text,
    ai_model                text,
    lead_qualification      jsonb,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id),
    CONSTRAINT pipelines_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT pipelines_color_hex CHECK (color ~ '^#[0-9A-Fa-f]{6}$'),
    CONSTRAINT pipelines_session_timeout_range CHECK (session_timeout_minutes BETWEEN 1 AND 1440),
    CONSTRAINT pipelines_lead_qualification_shape CHECK (lead_qualification IS NULL
        OR (jsonb_typeof(lead_qualification) = 'object'
            AND coalesce((lead_qualification->>'min_score')::numeric, 0) BETWEEN 0 AND 10))
);
CREATE INDEX pipelines_by_project ON ventros.pipelines (tenant_id, project_id, position) WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.pipelines IS 'Pipeline: a funnel of ordered statuses, and the session settings under it';

SELECT ventros.register_aggregate('pipeline', 'ventros.pipelines', 'crm',
    state_column => 'active',
    transitions => '[
        {"from": null, "to": "true"},
        {"from": null, "to": "false"},
        {"from": "false", "to": "true", "event": "pipeline.activated", "description": "A pipeline was activated."},
        {"from": "true", "to": "false", "event": "pipeline.deactivated", "description": "A pipeline was deactivated."}
    ]',
    privileges => '{"ventros_viewer": ["SELECT"], "ventros_admin": ["INSERT", "UPDATE", "DELETE"]}',
    description => 'A funnel of ordered statuses');
SELECT ventros.register_event_type(e, d) FROM (VALUES
    ('pipeline.status_added', 'A status was added to a pipeline.'),
    ('pipeline.status_removed', 'A status was removed from a pipeline.'),
    ('pipeline.status_updated', 'A status of a pipeline was changed.'),
    ('pipeline.status_activated', 'A status of a pipeline was activated.'),
    ('pipeline.status_deactivated', 'A status of a pipeline was deactivated.'),
    ('pipeline.lead_qualification_enabled', 'Lead qualification was enabled on a pipeline.'),
    ('pipeline.lead_qualification_disabled', 'Lead qualification was disabled on a pipeline.'),
    ('pipeline.lead_qualification_config_updated', 'The lead qualification of a pipeline was reconfigured.'),
    ('contact.pipeline_status_changed', 'A contact moved to another status of a pipeline.'),
    ('contact.entered_pipeline', 'A contact entered a pipeline.'),
    ('contact.exited_pipeline', 'A contact left a pipeline.')) v(e, d);

-- Channels point at their default pipeline (declared here, where pipelines exist).
ALTER TABLE ventros.channels ADD CONSTRAINT channels_pipeline_fk
    FOREIGN KEY (tenant_id, pipeline_id) REFERENCES ventros.pipelines (tenant_id, id);

CREATE TABLE ventros.pipeline_statuses (
    id          uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id   text        NOT NULL,
    version     integer     NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    pipeline_id uuid        NOT NULL,
    name        text        NOT NULL,
    description text,
    color       text,
    status_type text        NOT NULL DEFAULT 'open',
    position    integer     NOT NULL DEFAULT 0,
    active      boolean     NOT NULL DEFAULT true,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, pipeline_id) REFERENCES ventros.pipelines (tenant_id, id),
    CONSTRAINT pipeline_statuses_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT pipeline_statuses_type_known CHECK (status_type IN ('open', 'active', 'closed')),
    CONSTRAINT pipeline_statuses_color_hex CHECK (color ~ '^#[0-9A-Fa-f]{6}$')
);
CREATE UNIQUE INDEX pipeline_statuses_unique_name ON ventros.pipeline_statuses (tenant_id, pipeline_id, name)
    WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.pipeline_statuses IS 'A status (stage) of a pipeline';

SELECT ventros.register_aggregate('pipeline_status', 'ventros.pipeline_statuses', 'crm',
    state_column => 'active',
    transitions => '[
        {"from": null, "to": "true"},
        {"from": null, "to": "false"},
        {"from": "false", "to": "true", "event": "pipeline_status.activated", "description": "A pipeline status was activated."},
        {"from": "true", "to": "false", "event": "pipeline_status.deactivated", "description": "A pipeline status was deactivated."}
    ]',
    privileges => '{"ventros_viewer": ["SELECT"], "ventros_admin": ["INSERT", "UPDATE", "DELETE"]}',
    description => 'A status of a pipeline');

CREATE TABLE ventros.pipeline_custom_fields (
    id          uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id   text        NOT NULL,
    version     integer     NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    pipeline_id uuid        NOT NULL,
    field_key   text        NOT NULL,
    field_type  text        NOT NULL,
    field_value jsonb,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, pipeline_id) REFERENCES ventros.pipelines (tenant_id, id),
    CONSTRAINT pipeline_custom_fields_key_format CHECK (field_key ~ '^[a-z][a-z0-9_]{0,63}$'),
    CONSTRAINT pipeline_custom_fields_type_known CHECK (field_type IN ('text', 'number', 'boolean', 'date', 'json', 'url',
        'email', 'phone', 'select', 'multi_select', 'label'))
);
CREATE UNIQUE INDEX pipeline_custom_fields_unique ON ventros.pipeline_custom_fields (tenant_id, pipeline_id, field_key)
    WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.pipeline_custom_fields IS 'A custom field of a pipeline; key and type are immutable';

SELECT ventros.register_aggregate('pipeline_custom_field', 'ventros.pipeline_custom_fields', 'crm',
    privileges => '{"ventros_viewer": ["SELECT"], "ventros_admin": ["INSERT", "UPDATE", "DELETE"]}',
    description => 'A custom field of a pipeline');

CREATE TABLE ventros.contact_pipeline_statuses (
    id          uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id   text        NOT NULL,
    version     integer     NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    contact_id  uuid        NOT NULL,
    pipeline_id uuid        NOT NULL,
    status_id   uuid        NOT NULL,
    entered_at  timestamptz NOT NULL DEFAULT now(),
    exited_at   timestamptz,
    duration    bigint,
    notes       text,
    metadata    jsonb,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES ventros.contacts (tenant_id, id),
    FOREIGN KEY (tenant_id, pipeline_id) REFERENCES ventros.pipelines (tenant_id, id),
    FOREIGN KEY (tenant_id, status_id) REFERENCES ventros.pipeline_statuses (tenant_id, id),
    CONSTRAINT contact_pipeline_statuses_exit_after_entry CHECK (exited_at >= entered_at),
    CONSTRAINT contact_pipeline_statuses_duration CHECK ((exited_at IS NULL) = (duration IS NULL) AND duration >= 0)
);
CREATE UNIQUE INDEX contact_pipeline_statuses_one_open ON ventros.contact_pipeline_statuses (tenant_id, contact_id, pipeline_id)
    WHERE exited_at IS NULL AND deleted_at IS NULL;
CREATE INDEX contact_pipeline_statuses_by_contact ON ventros.contact_pipeline_statuses (tenant_id, contact_id, entered_at DESC, id DESC);
CREATE INDEX contact_pipeline_statuses_board ON ventros.contact_pipeline_statuses (tenant_id, pipeline_id, status_id, entered_at DESC, id DESC)
    WHERE exited_at IS NULL AND deleted_at IS NULL;
COMMENT ON TABLE ventros.contact_pipeline_statuses IS
    'A contact''s stay in a status of a pipeline: the open row (exited_at NULL) is the current status, closed rows the history';

SELECT ventros.register_aggregate('contact_pipeline_status', 'ventros.contact_pipeline_statuses', 'crm',
    description => 'A contact''s stay in a status of a pipeline');

CREATE FUNCTION ventros.create_pipeline(name text, description text DEFAULT NULL, color text DEFAULT NULL,
                                        session_timeout_minutes integer DEFAULT NULL, project_id uuid DEFAULT NULL,
                                        statuses text[] DEFAULT '{}', sort_position integer DEFAULT 0)
RETURNS ventros.pipelines
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.pipelines;
    status_name text;
    n integer := 0;
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'pipeline name must not be null' USING ERRCODE = '23502';
    END IF;
    INSERT INTO ventros.pipelines (project_id, name, description, color, session_timeout_minutes, position)
    VALUES (coalesce(project_id, ventros.default_project()), ventros.check_length(btrim(name), 200, 'pipeline name'),
            description, color, session_timeout_minutes, coalesce(sort_position, 0))
    RETURNING * INTO result;
    FOREACH status_name IN ARRAY coalesce(statuses, '{}') LOOP
        PERFORM ventros.add_pipeline_status(result.id, status_name, sort_position => n);
        n := n + 1;
    END LOOP;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.create_pipeline(text, text, text, integer, uuid, text[], integer) IS
    'Creates a pipeline, optionally with statuses in order; emits pipeline.created (and per status pipeline_status.created, pipeline.status_added)';

CREATE FUNCTION ventros.update_pipeline(pipeline_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.pipelines
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    before ventros.pipelines;
    result ventros.pipelines;
BEGIN
    SELECT * INTO before FROM ventros.pipelines p WHERE p.tenant_id = ventros.require_tenant() AND p.id = pipeline_id;
    result := ventros.apply_changes(NULL::ventros.pipelines, 'pipeline', pipeline_id, expected_version, changes,
        ARRAY['name', 'description', 'color', 'position', 'active', 'session_timeout_minutes', 'enable_ai_summary',
              'ai_provider', 'ai_model', 'lead_qualification']);
    IF before.lead_qualification IS DISTINCT FROM result.lead_qualification THEN
        PERFORM ventros.emit(CASE
                WHEN coalesce((result.lead_qualification->>'enabled')::boolean, false)
                     AND NOT coalesce((before.lead_qualification->>'enabled')::boolean, false)
                    THEN 'pipeline.lead_qualification_enabled'
                WHEN NOT coalesce((result.lead_qualification->>'enabled')::boolean, false)
                     AND coalesce((before.lead_qualification->>'enabled')::boolean, false)
                    THEN 'pipeline.lead_qualification_disabled'
                ELSE 'pipeline.lead_qualification_config_updated' END,
            'pipeline', pipeline_id, jsonb_build_object('lead_qualification', result.lead_qualification), result.version);
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.update_pipeline(uuid, integer, jsonb) IS
    'Changes fields of a pipeline; emits pipeline.updated / .activated / .deactivated, and pipeline.lead_qualification_* when that changes';

CREATE FUNCTION ventros.delete_pipeline(pipeline_id uuid, expected_version integer DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.delete_row('ventros.pipelines', 'pipeline', pipeline_id, expected_version) $$;
COMMENT ON FUNCTION ventros.delete_pipeline(uuid, integer) IS 'Soft-deletes a pipeline; emits pipeline.deleted';

CREATE FUNCTION ventros.add_pipeline_status(pipeline_id uuid, name text, status_type text DEFAULT 'open',
                                            color text DEFAULT NULL, sort_position integer DEFAULT NULL,
                                            description text DEFAULT NULL)
RETURNS ventros.pipeline_statuses
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.pipeline_statuses;
    pipeline_version integer;
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'pipeline status name must not be null' USING ERRCODE = '23502';
    END IF;
    -- Lock the pipeline: statuses of one pipeline are added one at a time.
    SELECT p.version INTO pipeline_version FROM ventros.pipelines p
    WHERE p.tenant_id = ventros.require_tenant() AND p.id = add_pipeline_status.pipeline_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pipeline % not found', pipeline_id USING ERRCODE = 'P0002';
    END IF;
    IF status_type NOT IN ('open', 'active', 'closed') THEN
        RAISE EXCEPTION 'unknown status type "%"', left(status_type, 32) USING ERRCODE = '22023',
            HINT = 'Use open, active or closed.';
    END IF;
    INSERT INTO ventros.pipeline_statuses (pipeline_id, name, status_type, color, position, description)
    VALUES (add_pipeline_status.pipeline_id, ventros.check_length(btrim(name), 200, 'status name'), status_type, color,
            coalesce(sort_position, (SELECT coalesce(max(s.position) + 1, 0) FROM ventros.pipeline_statuses s
                                WHERE s.tenant_id = ventros.require_tenant() AND s.pipeline_id = add_pipeline_status.pipeline_id)),
            description)
    RETURNING * INTO result;
    PERFORM ventros.emit('pipeline.status_added', 'pipeline', pipeline_id,
                         jsonb_build_object('status_id', result.id, 'name', result.name, 'status_type', result.status_type,
                                            'position', result.position), pipeline_version);
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'pipeline % already has a status named "%"', pipeline_id, name USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.add_pipeline_status(uuid, text, text, text, integer, text) IS
    'Adds a status to a pipeline (at the end unless position is given); emits pipeline_status.created and pipeline.status_added';

CREATE FUNCTION ventros.update_pipeline_status(status_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.pipeline_statuses
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    before ventros.pipeline_statuses;
    result ventros.pipeline_statuses;
BEGIN
    SELECT * INTO before FROM ventros.pipeline_statuses s WHERE s.tenant_id = ventros.require_tenant() AND s.id = status_id;
    result := ventros.apply_changes(NULL::ventros.pipeline_statuses, 'pipeline status', status_id, expected_version, changes,
        ARRAY['name', 'description', 'color', 'status_type', 'position', 'active']);
    IF result.version <> before.version THEN
        PERFORM ventros.emit(CASE WHEN before.active AND NOT result.active THEN 'pipeline.status_deactivated'
                                  WHEN NOT before.active AND result.active THEN 'pipeline.status_activated'
                                  ELSE 'pipeline.status_updated' END,
                             'pipeline', result.pipeline_id,
                             jsonb_build_object('status_id', status_id, 'changes', changes), NULL);
    END IF;
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'the pipeline already has a status named "%"', changes->>'name' USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.update_pipeline_status(uuid, integer, jsonb) IS
    'Changes a status; emits pipeline_status.updated (or .activated / .deactivated) and pipeline.status_updated / .status_activated / .status_deactivated';

CREATE FUNCTION ventros.remove_pipeline_status(status_id uuid, expected_version integer DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st ventros.pipeline_statuses;
BEGIN
    SELECT * INTO st FROM ventros.pipeline_statuses s WHERE s.tenant_id = ventros.require_tenant() AND s.id = status_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pipeline status % not found', status_id USING ERRCODE = 'P0002';
    END IF;
    IF EXISTS (SELECT 1 FROM ventros.contact_pipeline_statuses c
               WHERE c.tenant_id = st.tenant_id AND c.status_id = st.id AND c.exited_at IS NULL AND c.deleted_at IS NULL) THEN
        RAISE EXCEPTION 'pipeline status % still holds contacts', status_id USING ERRCODE = '23503',
            HINT = 'Move the contacts to another status first.';
    END IF;
    PERFORM ventros.delete_row('ventros.pipeline_statuses', 'pipeline status', status_id, expected_version);
    PERFORM ventros.emit('pipeline.status_removed', 'pipeline', st.pipeline_id,
                         jsonb_build_object('status_id', status_id, 'name', st.name), NULL);
END
$$;
COMMENT ON FUNCTION ventros.remove_pipeline_status(uuid, integer) IS
    'Removes a status that holds no contact (else 23503); emits pipeline_status.deleted and pipeline.status_removed';

-- change_contact_pipeline_status: closes the contact's open row in the
-- pipeline (exited_at, duration) and opens one in the new status.  The
-- contact row is locked first, so two moves of one contact serialise.
CREATE FUNCTION ventros.change_contact_pipeline_status(contact_id uuid, status_id uuid, notes text DEFAULT NULL,
                                                       metadata jsonb DEFAULT NULL)
RETURNS ventros.contact_pipeline_statuses
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    st ventros.pipeline_statuses;
    previous ventros.contact_pipeline_statuses;
    result ventros.contact_pipeline_statuses;
    contact_version integer;
    at timestamptz := clock_timestamp();
BEGIN
    SELECT c.version INTO contact_version FROM ventros.contacts c
    WHERE c.tenant_id = tenant AND c.id = change_contact_pipeline_status.contact_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'contact % not found', contact_id USING ERRCODE = 'P0002';
    END IF;
    SELECT * INTO st FROM ventros.pipeline_statuses s WHERE s.tenant_id = tenant AND s.id = change_contact_pipeline_status.status_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pipeline status % not found', status_id USING ERRCODE = 'P0002';
    END IF;
    IF NOT st.active THEN
        RAISE EXCEPTION 'pipeline status % is inactive', status_id USING ERRCODE = '22023';
    END IF;
    SELECT * INTO previous FROM ventros.contact_pipeline_statuses c
    WHERE c.tenant_id = tenant AND c.contact_id = change_contact_pipeline_status.contact_id
      AND c.pipeline_id = st.pipeline_id AND c.exited_at IS NULL AND c.deleted_at IS NULL;
    IF FOUND THEN
        IF previous.status_id = st.id THEN
            RETURN previous;    -- already there: nothing happens
        END IF;
        UPDATE ventros.contact_pipeline_statuses c
        SET exited_at = greatest(at, c.entered_at),
            duration = extract(epoch FROM greatest(at, c.entered_at) - c.entered_at)::bigint, version = previous.version
        WHERE c.tenant_id = tenant AND c.id = previous.id;
    END IF;
    INSERT INTO ventros.contact_pipeline_statuses (contact_id, pipeline_id, status_id, entered_at, notes, metadata)
    VALUES (change_contact_pipeline_status.contact_id, st.pipeline_id, st.id, at, notes, metadata)
    RETURNING * INTO result;
    PERFORM ventros.emit('contact.pipeline_status_changed', 'contact', contact_id,
                         jsonb_build_object('pipeline_id', st.pipeline_id, 'status_id', st.id, 'status_name', st.name,
                                            'previous_status_id', previous.status_id, 'entered_at', at,
                                            'notes', notes), contact_version);
    IF previous.id IS NULL THEN
        PERFORM ventros.emit('contact.entered_pipeline', 'contact', contact_id,
                             jsonb_build_object('pipeline_id', st.pipeline_id, 'status_id', st.id), contact_version);
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.change_contact_pipeline_status(uuid, uuid, text, jsonb) IS
    'Moves a contact to a status: closes the open row of that pipeline, opens a new one; emits contact.pipeline_status_changed (with previous_status_id) and, on first entry, contact.entered_pipeline';

CREATE FUNCTION ventros.remove_contact_from_pipeline(contact_id uuid, pipeline_id uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    open_row ventros.contact_pipeline_statuses;
    at timestamptz := clock_timestamp();
BEGIN
    SELECT * INTO open_row FROM ventros.contact_pipeline_statuses c
    WHERE c.tenant_id = tenant AND c.contact_id = remove_contact_from_pipeline.contact_id
      AND c.pipeline_id = remove_contact_from_pipeline.pipeline_id AND c.exited_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'contact % is not in pipeline %', contact_id, pipeline_id USING ERRCODE = 'P0002';
    END IF;
    UPDATE ventros.contact_pipeline_statuses c
    SET exited_at = greatest(at, c.entered_at),
        duration = extract(epoch FROM greatest(at, c.entered_at) - c.entered_at)::bigint, version = open_row.version
    WHERE c.tenant_id = tenant AND c.id = open_row.id;
    PERFORM ventros.emit('contact.exited_pipeline', 'contact', contact_id,
                         jsonb_build_object('pipeline_id', pipeline_id, 'status_id', open_row.status_id), NULL);
END
$$;
COMMENT ON FUNCTION ventros.remove_contact_from_pipeline(uuid, uuid) IS
    'Closes a contact''s open row in a pipeline; emits contact_pipeline_status.updated and contact.exited_pipeline';

CREATE FUNCTION ventros.set_pipeline_custom_field(pipeline_id uuid, field_key text, field_type text, field_value jsonb)
RETURNS ventros.pipeline_custom_fields
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    existing ventros.pipeline_custom_fields;
    result ventros.pipeline_custom_fields;
BEGIN
    SELECT * INTO existing FROM ventros.pipeline_custom_fields f
    WHERE f.tenant_id = ventros.require_tenant() AND f.pipeline_id = set_pipeline_custom_field.pipeline_id
      AND f.field_key = set_pipeline_custom_field.field_key FOR UPDATE;
    IF FOUND THEN
        IF existing.field_type <> field_type THEN
            RAISE EXCEPTION 'the type of custom field "%" is %, not %', field_key, existing.field_type, left(field_type, 32)
                USING ERRCODE = '22023', DETAIL = 'The key and type of a pipeline custom field are immutable.';
        END IF;
        UPDATE ventros.pipeline_custom_fields f SET field_value = set_pipeline_custom_field.field_value, version = existing.version
        WHERE f.tenant_id = existing.tenant_id AND f.id = existing.id RETURNING * INTO result;
    ELSE
        INSERT INTO ventros.pipeline_custom_fields (pipeline_id, field_key, field_type, field_value)
        VALUES (pipeline_id, field_key, field_type, field_value) RETURNING * INTO result;
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.set_pipeline_custom_field(uuid, text, text, jsonb) IS
    'Sets a custom field of a pipeline (key and type fixed once created); emits pipeline_custom_field.created / .updated';

CREATE FUNCTION ventros.get_pipeline(pipeline_id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result jsonb;
BEGIN
    SELECT to_jsonb(p) || jsonb_build_object('statuses', coalesce((
               SELECT jsonb_agg(to_jsonb(s) ORDER BY s.position, s.id) FROM ventros.pipeline_statuses s
               WHERE s.tenant_id = p.tenant_id AND s.pipeline_id = p.id), '[]'))
    INTO result FROM ventros.pipelines p WHERE p.tenant_id = ventros.require_tenant() AND p.id = pipeline_id;
    IF result IS NULL THEN
        RAISE EXCEPTION 'pipeline % not found', pipeline_id USING ERRCODE = 'P0002';
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.get_pipeline(uuid) IS 'A pipeline with its statuses (in position order) as JSON, or P0002';

CREATE FUNCTION ventros.contact_pipeline_history(contact_id uuid, pipeline_id uuid DEFAULT NULL)
RETURNS SETOF ventros.contact_pipeline_statuses
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.* FROM ventros.contact_pipeline_statuses c
    WHERE c.tenant_id = ventros.require_tenant() AND c.contact_id = contact_pipeline_history.contact_id
      AND (contact_pipeline_history.pipeline_id IS NULL OR c.pipeline_id = contact_pipeline_history.pipeline_id)
    ORDER BY c.entered_at DESC, c.id DESC
    LIMIT current_setting('ventros.max_page_size')::integer
$$;
COMMENT ON FUNCTION ventros.contact_pipeline_history(uuid, uuid) IS
    'A contact''s stays in pipeline statuses, newest first (the open one is its current status)';

GRANT EXECUTE ON FUNCTION ventros.get_pipeline(uuid), ventros.contact_pipeline_history(uuid, uuid) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.change_contact_pipeline_status(uuid, uuid, text, jsonb),
    ventros.remove_contact_from_pipeline(uuid, uuid) TO ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.create_pipeline(text, text, text, integer, uuid, text[], integer),
    ventros.update_pipeline(uuid, integer, jsonb), ventros.delete_pipeline(uuid, integer),
    ventros.add_pipeline_status(uuid, text, text, text, integer, text),
    ventros.update_pipeline_status(uuid, integer, jsonb), ventros.remove_pipeline_status(uuid, integer),
    ventros.set_pipeline_custom_field(uuid, text, text, jsonb)
    TO ventros_admin;

-- ---- sql/35_contact_extras.sql
-- Contact extras (CRM): custom fields, identities, merge suggestions and
-- consent of a contact.  Each table is a child aggregate of the contact.
--
-- contact_custom_fields: one value per (contact, field_key); WhatsApp WID, LID
--   and JID live here as in the original.
-- contact_identities: the several ways a contact is reached (phones, emails,
--   WhatsApp ids including @lid, Messenger PSID, Instagram IGSID, Telegram
--   ids, external ids).  An identity is unique per contact, not per tenant:
--   when a second live contact gains an identity another already has, a merge
--   suggestion is opened instead of refusing it.
-- contact_consents: opt-in / opt-out per contact and channel (channel_id NULL
--   = every channel).  Every send path calls ventros.require_consent(), which
--   refuses an opted-out contact with VN010.

CREATE TABLE ventros.contact_custom_fields (
    id          uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id   text        NOT NULL,
    version     integer     NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    contact_id  uuid        NOT NULL,
    field_key   text        NOT NULL,
    field_type  text        NOT NULL,
    field_value jsonb,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES ventros.contacts (tenant_id, id),
    CONSTRAINT contact_custom_fields_key_format CHECK (field_key ~ '^[a-z][a-z0-9_]{0,63}$'),
    CONSTRAINT contact_custom_fields_type_known CHECK (field_type IN ('text', 'number', 'boolean', 'date', 'json', 'url',
        'email', 'phone', 'select', 'multi_select', 'label')),
    CONSTRAINT contact_custom_fields_value_size CHECK (pg_column_size(field_value) <= 65536)
);
CREATE UNIQUE INDEX contact_custom_fields_unique ON ventros.contact_custom_fields (tenant_id, contact_id, field_key)
    WHERE deleted_at IS NULL;
CREATE INDEX contact_custom_fields_by_value ON ventros.contact_custom_fields (tenant_id, field_key, field_value)
    WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.contact_custom_fields IS 'A custom field value of a contact';

SELECT ventros.register_aggregate('contact_custom_field', 'ventros.contact_custom_fields', 'crm',
    description => 'A custom field value of a contact');

CREATE TABLE ventros.contact_identities (
    id            uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id     text        NOT NULL,
    version       integer     NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz,
    contact_id    uuid        NOT NULL,
    identity_type text        NOT NULL,
    value         text        NOT NULL,
    channel_id    uuid,
    verified      boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES ventros.contacts (tenant_id, id),
    FOREIGN KEY (tenant_id, channel_id) REFERENCES ventros.channels (tenant_id, id),
    CONSTRAINT contact_identities_type_known CHECK (identity_type IN ('phone', 'email', 'whatsapp', 'whatsapp_lid',
        'psid', 'igsid', 'telegram', 'external')),
    CONSTRAINT contact_identities_value_format CHECK (length(value) BETWEEN 1 AND 320 AND CASE identity_type
        WHEN 'phone' THEN value ~ '^\+[1-9][0-9]{7,14}$'
        WHEN 'email' THEN value = lower(value) AND value ~ '^[^@\s]+@[^@\s]+\.[^@\s.]+$'
        WHEN 'whatsapp' THEN value ~ '^[0-9]{8,15}@(c\.us|s\.whatsapp\.net)$'
        WHEN 'whatsapp_lid' THEN value ~ '^[0-9]{6,20}@lid$'
        WHEN 'psid' THEN value ~ '^[0-9]{5,32}$'
        WHEN 'igsid' THEN value ~ '^[0-9]{5,32}$'
        ELSE true END)
);
CREATE UNIQUE INDEX contact_identities_unique ON ventros.contact_identities (tenant_id, contact_id, identity_type, value)
    WHERE deleted_at IS NULL;
CREATE INDEX contact_identities_lookup ON ventros.contact_identities (tenant_id, identity_type, value)
    WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.contact_identities IS
    'A way a contact is reached: phone, email, WhatsApp id (@c.us or @lid), PSID, IGSID, Telegram or external id';

SELECT ventros.register_aggregate('contact_identity', 'ventros.contact_identities', 'crm',
    description => 'A phone, email or provider id of a contact');

CREATE TABLE ventros.contact_merge_suggestions (
    id                uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id         text        NOT NULL,
    version           integer     NOT NULL DEFAULT 1,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz,
    contact_id        uuid        NOT NULL,
    other_contact_id  uuid        NOT NULL,
    identity_type     text        NOT NULL,
    value             text        NOT NULL,
    status            text        NOT NULL DEFAULT 'open',
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES ventros.contacts (tenant_id, id),
    FOREIGN KEY (tenant_id, other_contact_id) REFERENCES ventros.contacts (tenant_id, id),
    CONSTRAINT contact_merge_suggestions_ordered CHECK (contact_id < other_contact_id),
    CONSTRAINT contact_merge_suggestions_status_known CHECK (status IN ('open', 'accepted', 'dismissed'))
);
CREATE UNIQUE INDEX contact_merge_suggestions_unique ON ventros.contact_merge_suggestions
    (tenant_id, contact_id, other_contact_id, identity_type, value) WHERE deleted_at IS NULL;
CREATE INDEX contact_merge_suggestions_open ON ventros.contact_merge_suggestions (tenant_id, created_at, id)
    WHERE status = 'open' AND deleted_at IS NULL;
COMMENT ON TABLE ventros.contact_merge_suggestions IS
    'Two live contacts share an identity: a suggestion to merge them (open, accepted by merge_contacts, or dismissed)';

SELECT ventros.register_aggregate('contact_merge_suggestion', 'ventros.contact_merge_suggestions', 'crm',
    state_column => 'status',
    transitions => '[
        {"from": null, "to": "open", "event": "contact_merge_suggestion.opened", "description": "Two contacts share an identity: a merge was suggested."},
        {"from": "open", "to": "accepted", "event": "contact_merge_suggestion.accepted", "description": "A suggested merge was done."},
        {"from": "open", "to": "dismissed", "event": "contact_merge_suggestion.dismissed", "description": "A suggested merge was dismissed."}
    ]',
    description => 'A suggestion to merge two contacts that share an identity');

CREATE TABLE ventros.contact_consents (
    id          uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id   text        NOT NULL,
    version     integer     NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    contact_id  uuid        NOT NULL,
    channel_id  uuid,
    status      text        NOT NULL,
    source      text        NOT NULL DEFAULT 'manual',
    reason      text,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES ventros.contacts (tenant_id, id),
    FOREIGN KEY (tenant_id, channel_id) REFERENCES ventros.channels (tenant_id, id),
    CONSTRAINT contact_consents_status_known CHECK (status IN ('opted_in', 'opted_out')),
    CONSTRAINT contact_consents_source_known CHECK (source IN ('manual', 'inbound_keyword', 'import', 'api', 'form', 'provider'))
);
CREATE UNIQUE INDEX contact_consents_unique ON ventros.contact_consents
    (tenant_id, contact_id, coalesce(channel_id, '00000000-0000-0000-0000-000000000000'::uuid)) WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.contact_consents IS
    'Consent of a contact to be messaged on a channel (channel_id NULL: on every channel); opted_out blocks every send';

SELECT ventros.register_aggregate('contact_consent', 'ventros.contact_consents', 'crm',
    state_column => 'status',
    transitions => '[
        {"from": null, "to": "opted_in", "event": "contact_consent.granted", "description": "A contact opted in to messages."},
        {"from": null, "to": "opted_out", "event": "contact_consent.withdrawn", "description": "A contact opted out of messages."},
        {"from": "opted_out", "to": "opted_in", "event": "contact_consent.granted"},
        {"from": "opted_in", "to": "opted_out", "event": "contact_consent.withdrawn"}
    ]',
    description => 'Consent (opt-in or opt-out) of a contact, per channel or for all channels');

-- ---- custom fields -----------------------------------------------------
CREATE FUNCTION ventros.set_contact_custom_field(contact_id uuid, field_key text, field_type text, field_value jsonb)
RETURNS ventros.contact_custom_fields
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    existing ventros.contact_custom_fields;
    result ventros.contact_custom_fields;
BEGIN
    IF field_key IS NULL OR field_type IS NULL THEN
        RAISE EXCEPTION 'custom field key and type must not be null' USING ERRCODE = '23502';
    END IF;
    IF field_type NOT IN ('text', 'number', 'boolean', 'date', 'json', 'url', 'email', 'phone', 'select',
                          'multi_select', 'label') THEN
        RAISE EXCEPTION 'unknown custom field type "%"', left(field_type, 32) USING ERRCODE = '22023';
    END IF;
    IF (field_type = 'number' AND jsonb_typeof(field_value) <> 'number')
       OR (field_type = 'boolean' AND jsonb_typeof(field_value) <> 'boolean')
       OR (field_type IN ('text', 'url', 'email', 'phone', 'select', 'date', 'label') AND jsonb_typeof(field_value) <> 'string')
       OR (field_type = 'multi_select' AND jsonb_typeof(field_value) <> 'array') THEN
        RAISE EXCEPTION 'value of custom field "%" is not a %', field_key, field_type USING ERRCODE = '22P02';
    END IF;
    PERFORM 1 FROM ventros.contacts c WHERE c.tenant_id = tenant AND c.id = set_contact_custom_field.contact_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'contact % not found', contact_id USING ERRCODE = 'P0002';
    END IF;
    SELECT * INTO existing FROM ventros.contact_custom_fields f
    WHERE f.tenant_id = tenant AND f.contact_id = set_contact_custom_field.contact_id
      AND f.field_key = set_contact_custom_field.field_key FOR UPDATE;
    IF FOUND THEN
        UPDATE ventros.contact_custom_fields f
        SET field_type = set_contact_custom_field.field_type, field_value = set_contact_custom_field.field_value,
            version = existing.version
        WHERE f.tenant_id = tenant AND f.id = existing.id RETURNING * INTO result;
    ELSE
        INSERT INTO ventros.contact_custom_fields (contact_id, field_key, field_type, field_value)
        VALUES (contact_id, field_key, field_type, field_value) RETURNING * INTO result;
    END IF;
    RETURN result;
EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION 'malformed custom field key "%"', left(field_key, 64) USING ERRCODE = '22023',
        HINT = 'Keys are lowercase letters, digits and underscores, starting with a letter.';
END
$$;
COMMENT ON FUNCTION ventros.set_contact_custom_field(uuid, text, text, jsonb) IS
    'Sets a custom field of a contact (value checked against the type: 22P02); emits contact_custom_field.created / .updated';

CREATE FUNCTION ventros.remove_contact_custom_field(contact_id uuid, field_key text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    field_id uuid;
BEGIN
    SELECT f.id INTO field_id FROM ventros.contact_custom_fields f
    WHERE f.tenant_id = ventros.require_tenant() AND f.contact_id = remove_contact_custom_field.contact_id
      AND f.field_key = remove_contact_custom_field.field_key;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'contact % has no custom field "%"', contact_id, left(field_key, 64) USING ERRCODE = 'P0002';
    END IF;
    PERFORM ventros.delete_row('ventros.contact_custom_fields', 'contact_custom_field', field_id, NULL);
END
$$;
COMMENT ON FUNCTION ventros.remove_contact_custom_field(uuid, text) IS
    'Removes a custom field of a contact; emits contact_custom_field.deleted';

-- ---- identities -------------------------------------------------------
CREATE FUNCTION ventros.normalize_identity(identity_type text, value text) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF value IS NULL THEN
        RAISE EXCEPTION 'identity value must not be null' USING ERRCODE = '23502';
    END IF;
    RETURN CASE identity_type
        WHEN 'phone' THEN ventros.normalize_phone(value)
        WHEN 'email' THEN ventros.normalize_email(value)
        WHEN 'whatsapp' THEN regexp_replace(lower(btrim(value)), '^\+', '')
        WHEN 'whatsapp_lid' THEN lower(btrim(value))
        WHEN 'psid' THEN btrim(value)
        WHEN 'igsid' THEN btrim(value)
        WHEN 'telegram' THEN btrim(value)
        WHEN 'external' THEN btrim(value)
        ELSE NULL END;
END
$$;
COMMENT ON FUNCTION ventros.normalize_identity(text, text) IS
    'The stored form of an identity (E.164 phone, lowercase email, WhatsApp id without +)';

CREATE FUNCTION ventros.add_contact_identity(contact_id uuid, identity_type text, value text, channel_id uuid DEFAULT NULL)
RETURNS ventros.contact_identities
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    tenant text := ventros.require_tenant();
    normalized text;
    result ventros.contact_identities;
    other uuid;
BEGIN
    IF identity_type IS NULL OR identity_type NOT IN ('phone', 'email', 'whatsapp', 'whatsapp_lid', 'psid', 'igsid',
                                                      'telegram', 'external') THEN
        RAISE EXCEPTION 'unknown identity type "%"', left(identity_type, 32) USING ERRCODE = '22023',
            HINT = 'Use phone, email, whatsapp, whatsapp_lid, psid, igsid, telegram or external.';
    END IF;
    normalized := ventros.normalize_identity(identity_type, value);
    PERFORM 1 FROM ventros.contacts c WHERE c.tenant_id = tenant AND c.id = add_contact_identity.contact_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'contact % not found', contact_id USING ERRCODE = 'P0002';
    END IF;
    INSERT INTO ventros.contact_identities (contact_id, identity_type, value, channel_id)
    VALUES (contact_id, identity_type, normalized, channel_id)
    ON CONFLICT (tenant_id, contact_id, identity_type, value) WHERE deleted_at IS NULL DO NOTHING
    RETURNING * INTO result;
    IF result.id IS NULL THEN
        SELECT * INTO result FROM ventros.contact_identities i
        WHERE i.tenant_id = tenant AND i.contact_id = add_contact_identity.contact_id
          AND i.identity_type = add_contact_identity.identity_type AND i.value = normalized;
        RETURN result;
    END IF;
    -- Other live contacts with the same identity: suggest merging.
    FOR other IN
        SELECT DISTINCT i.contact_id FROM ventros.contact_identities i
        WHERE i.tenant_id = tenant AND i.identity_type = add_contact_identity.identity_type AND i.value = normalized AND i.deleted_at IS NULL
          AND i.contact_id <> add_contact_identity.contact_id
    LOOP
        INSERT INTO ventros.contact_merge_suggestions (contact_id, other_contact_id, identity_type, value)
        VALUES (least(contact_id, other), greatest(contact_id, other), identity_type, normalized)
        ON CONFLICT (tenant_id, contact_id, other_contact_id, identity_type, value) WHERE deleted_at IS NULL DO NOTHING;
    END LOOP;
    RETURN result;
EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION 'malformed % identity "%"', identity_type, left(value, 64) USING ERRCODE = '22P02';
END
$$;
COMMENT ON FUNCTION ventros.add_contact_identity(uuid, text, text, uuid) IS
    'Adds an identity to a contact (idempotent); when another live contact has it, opens a merge suggestion. Emits contact_identity.created (and contact_merge_suggestion.opened)';

CREATE FUNCTION ventros.remove_contact_identity(identity_id uuid)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.delete_row('ventros.contact_identities', 'contact_identity', identity_id, NULL) $$;
COMMENT ON FUNCTION ventros.remove_contact_identity(uuid) IS 'Removes an identity of a contact; emits contact_identity.deleted';

-- The oldest live contact with this identity, if any.
CREATE FUNCTION ventros.find_contact_by_identity(identity_type text, value text)
RETURNS uuid
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT i.contact_id FROM ventros.contact_identities i
    WHERE i.tenant_id = ventros.require_tenant() AND i.identity_type = find_contact_by_identity.identity_type
      AND i.value = ventros.normalize_identity(find_contact_by_identity.identity_type, find_contact_by_identity.value)
      AND i.deleted_at IS NULL  -- states the partial index's predicate (RLS alone does not)
    ORDER BY i.created_at, i.contact_id LIMIT 1
$$;
COMMENT ON FUNCTION ventros.find_contact_by_identity(text, text) IS
    'The id of the (oldest) live contact holding an identity, or NULL';

CREATE FUNCTION ventros.list_merge_suggestions(after_created_at timestamptz DEFAULT NULL, after_id uuid DEFAULT NULL,
                                               page_size integer DEFAULT 50)
RETURNS SETOF ventros.contact_merge_suggestions
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.* FROM ventros.contact_merge_suggestions s
    WHERE s.tenant_id = ventros.require_tenant() AND s.status = 'open'
      AND (after_id IS NULL OR (s.created_at, s.id) > (after_created_at, after_id))
    ORDER BY s.created_at, s.id
    LIMIT ventros.check_page_size(page_size)
$$;
COMMENT ON FUNCTION ventros.list_merge_suggestions(timestamptz, uuid, integer) IS
    'Open merge suggestions, oldest first, one keyset page at a time';

CREATE FUNCTION ventros.dismiss_merge_suggestion(suggestion_id uuid, expected_version integer)
RETURNS ventros.contact_merge_suggestions
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.apply_changes(NULL::ventros.contact_merge_suggestions, 'contact_merge_suggestion', suggestion_id,
                                 expected_version, '{"status": "dismissed"}', ARRAY['status'])
$$;
COMMENT ON FUNCTION ventros.dismiss_merge_suggestion(uuid, integer) IS
    'Dismisses an open merge suggestion (VN002 unless open); emits contact_merge_suggestion.dismissed';

-- ---- consent ----------------------------------------------------------
CREATE FUNCTION ventros.set_contact_consent(contact_id uuid, opted_in boolean, channel_id uuid DEFAULT NULL,
                                            source text DEFAULT 'manual', reason text DEFAULT NULL)
RETURNS ventros.contact_consents
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    existing ventros.contact_consents;
    result ventros.contact_consents;
    new_status text := CASE WHEN opted_in THEN 'opted_in' ELSE 'opted_out' END;
BEGIN
    IF opted_in IS NULL THEN
        RAISE EXCEPTION 'opted_in must not be null' USING ERRCODE = '23502';
    END IF;
    IF source NOT IN ('manual', 'inbound_keyword', 'import', 'api', 'form', 'provider') THEN
        RAISE EXCEPTION 'unknown consent source "%"', left(source, 32) USING ERRCODE = '22023';
    END IF;
    -- The contact row lock serialises consent changes with sends to it.
    PERFORM 1 FROM ventros.contacts c WHERE c.tenant_id = tenant AND c.id = set_contact_consent.contact_id FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'contact % not found', contact_id USING ERRCODE = 'P0002';
    END IF;
    SELECT * INTO existing FROM ventros.contact_consents k
    WHERE k.tenant_id = tenant AND k.contact_id = set_contact_consent.contact_id
      AND k.channel_id IS NOT DISTINCT FROM set_contact_consent.channel_id FOR UPDATE;
    IF FOUND THEN
        UPDATE ventros.contact_consents k
        SET status = new_status, source = set_contact_consent.source, reason = set_contact_consent.reason,
            recorded_at = now(), version = existing.version
        WHERE k.tenant_id = tenant AND k.id = existing.id RETURNING * INTO result;
    ELSE
        INSERT INTO ventros.contact_consents (contact_id, channel_id, status, source, reason)
        VALUES (contact_id, channel_id, new_status, source, reason) RETURNING * INTO result;
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.set_contact_consent(uuid, boolean, uuid, text, text) IS
    'Records an opt-in or opt-out of a contact for one channel (or all: channel_id NULL); emits contact_consent.granted / .withdrawn';

-- Whether a contact may be messaged on a channel: no opt-out for that channel
-- and none for all channels (the channel-specific record wins over the
-- general one).
CREATE FUNCTION ventros.may_message(contact_id uuid, channel_id uuid)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT k.status = 'opted_in' FROM ventros.contact_consents k
                     WHERE k.tenant_id = ventros.require_tenant() AND k.contact_id = may_message.contact_id
                       AND (k.channel_id = may_message.channel_id OR k.channel_id IS NULL)
                     ORDER BY k.channel_id NULLS LAST LIMIT 1), true)
$$;
COMMENT ON FUNCTION ventros.may_message(uuid, uuid) IS
    'False when the contact opted out of the channel (or of all channels without a later opt-in for this one)';

CREATE FUNCTION ventros.require_consent(contact_id uuid, channel_id uuid)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT ventros.may_message(contact_id, channel_id) THEN
        RAISE EXCEPTION 'contact % opted out of messages on channel %', contact_id, channel_id
            USING ERRCODE = 'VN010', DETAIL = 'The contact withdrew consent for this channel or for all channels.',
                  HINT = 'Record a new opt-in with ventros.set_contact_consent() before sending.';
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.require_consent(uuid, uuid) IS
    'Raises VN010 when the contact opted out of the channel; called by every send path';

GRANT EXECUTE ON FUNCTION ventros.normalize_identity(text, text), ventros.find_contact_by_identity(text, text),
    ventros.list_merge_suggestions(timestamptz, uuid, integer), ventros.may_message(uuid, uuid),
    ventros.require_consent(uuid, uuid) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.set_contact_custom_field(uuid, text, text, jsonb),
    ventros.remove_contact_custom_field(uuid, text), ventros.add_contact_identity(uuid, text, text, uuid),
    ventros.remove_contact_identity(uuid), ventros.dismiss_merge_suggestion(uuid, integer),
    ventros.set_contact_consent(uuid, boolean, uuid, text, text) TO ventros_agent;

-- ---- sql/36_channel_labels.sql
-- channel_labels (CRM): the labels of a WAHA-based channel, synced with the
-- provider (inside channels.config in the original).  A child aggregate of
-- the channel: channel_label.created / .updated / .deleted, plus the
-- channel's domain events channel.label_upserted and channel.label_deleted.

CREATE TABLE ventros.channel_labels (
    id         uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id  text        NOT NULL,
    version    integer     NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    channel_id uuid        NOT NULL,
    label_id   text        NOT NULL,
    name       text        NOT NULL,
    color      integer,
    color_hex  text,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, channel_id) REFERENCES ventros.channels (tenant_id, id),
    CONSTRAINT channel_labels_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 100),
    CONSTRAINT channel_labels_label_id_not_blank CHECK (btrim(label_id) <> '' AND length(label_id) <= 100),
    CONSTRAINT channel_labels_color_hex CHECK (color_hex ~ '^#[0-9A-Fa-f]{6}$')
);
CREATE UNIQUE INDEX channel_labels_unique ON ventros.channel_labels (tenant_id, channel_id, label_id) WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.channel_labels IS 'A label of a WAHA-based channel, synced with the provider';

SELECT ventros.register_aggregate('channel_label', 'ventros.channel_labels', 'crm',
    privileges => '{"ventros_viewer": ["SELECT"], "ventros_agent": ["INSERT", "UPDATE"], "ventros_admin": ["DELETE"]}',
    description => 'A label of a channel');
SELECT ventros.register_event_type('channel.label_upserted', 'A label of a channel was created or changed.');
SELECT ventros.register_event_type('channel.label_deleted', 'A label of a channel was deleted.');

CREATE FUNCTION ventros.upsert_channel_label(channel_id uuid, label_id text, name text, color integer DEFAULT NULL,
                                             color_hex text DEFAULT NULL)
RETURNS ventros.channel_labels
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    channel_type text;
    existing ventros.channel_labels;
    result ventros.channel_labels;
BEGIN
    SELECT c.type INTO channel_type FROM ventros.channels c WHERE c.tenant_id = tenant AND c.id = upsert_channel_label.channel_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'channel % not found', channel_id USING ERRCODE = 'P0002';
    END IF;
    IF channel_type <> 'waha' THEN
        RAISE EXCEPTION 'channel % of type % has no labels', channel_id, channel_type USING ERRCODE = '22023',
            DETAIL = 'Labels exist on WAHA-based channels only.';
    END IF;
    IF label_id IS NULL OR name IS NULL THEN
        RAISE EXCEPTION 'label id and name must not be null' USING ERRCODE = '23502';
    END IF;
    SELECT * INTO existing FROM ventros.channel_labels l
    WHERE l.tenant_id = tenant AND l.channel_id = upsert_channel_label.channel_id AND l.label_id = upsert_channel_label.label_id
    FOR UPDATE;
    IF FOUND THEN
        UPDATE ventros.channel_labels l SET name = upsert_channel_label.name, color = upsert_channel_label.color,
            color_hex = upsert_channel_label.color_hex, version = existing.version
        WHERE l.tenant_id = tenant AND l.id = existing.id RETURNING * INTO result;
    ELSE
        INSERT INTO ventros.channel_labels (channel_id, label_id, name, color, color_hex)
        VALUES (channel_id, label_id, name, color, color_hex) RETURNING * INTO result;
    END IF;
    PERFORM ventros.emit('channel.label_upserted', 'channel', channel_id,
                         jsonb_build_object('label_id', label_id, 'name', name, 'color', color, 'color_hex', color_hex), NULL);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.upsert_channel_label(uuid, text, text, integer, text) IS
    'Creates or changes a label of a WAHA channel (22023 for other types); emits channel_label.created / .updated and channel.label_upserted';

CREATE FUNCTION ventros.delete_channel_label(channel_id uuid, label_id text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    row_id uuid;
BEGIN
    SELECT l.id INTO row_id FROM ventros.channel_labels l
    WHERE l.tenant_id = ventros.require_tenant() AND l.channel_id = delete_channel_label.channel_id
      AND l.label_id = delete_channel_label.label_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'channel % has no label "%"', channel_id, left(label_id, 64) USING ERRCODE = 'P0002';
    END IF;
    PERFORM ventros.delete_row('ventros.channel_labels', 'channel_label', row_id, NULL);
    PERFORM ventros.emit('channel.label_deleted', 'channel', channel_id, jsonb_build_object('label_id', label_id), NULL);
END
$$;
COMMENT ON FUNCTION ventros.delete_channel_label(uuid, text) IS
    'Deletes a label of a channel; emits channel_label.deleted and channel.label_deleted';

GRANT EXECUTE ON FUNCTION ventros.upsert_channel_label(uuid, text, text, integer, text) TO ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.delete_channel_label(uuid, text) TO ventros_admin;

-- ---- sql/37_sessions.sql
-- Aggregate 2, Session (CRM): a conversation window between a contact and the
-- business on one channel.
--
-- Invariant: at most one active session per (tenant, contact, channel), held
-- by the partial unique index sessions_one_active, not by a check that could
-- race.  start_or_continue_session() inserts with ON CONFLICT DO NOTHING on
-- that index: of two transactions starting a session for the same pair at
-- once, the second waits for the first and then continues its session.
--
-- Timeout at creation: the channel's pipeline's session_timeout_minutes, else
-- the channel's, else the project's, else 30 minutes.  expires_at =
-- last_activity_at + timeout is kept with every message, and
-- ventros.tick_sessions(now) expires what has passed it.
--
-- The counters and response metrics are quiet columns (see engine.c): a
-- message changes them under the session's row lock without bumping the
-- session's version; the message's own event and session.message_recorded
-- carry the fact.

CREATE TABLE ventros.sessions (
    id                          uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id                   text        NOT NULL,
    version                     integer     NOT NULL DEFAULT 1,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    deleted_at                  timestamptz,
    project_id                  uuid        NOT NULL,
    contact_id                  uuid        NOT NULL,
    channel_id                  uuid        NOT NULL,
    channel_type_id             integer,
    pipeline_id                 uuid,
    team_id                     uuid,
    assigned_agent_id           uuid,
    started_at                  timestamptz NOT NULL DEFAULT now(),
    ended_at                    timestamptz,
    status                      text        NOT NULL DEFAULT 'active',
    end_reason                  text,
    timeout_seconds             integer     NOT NULL DEFAULT 1800,
    last_activity_at            timestamptz NOT NULL DEFAULT now(),
    expires_at                  timestamptz NOT NULL DEFAULT now() + interval '30 minutes',
    message_count               integer     NOT NULL DEFAULT 0,
    messages_from_contact       integer     NOT NULL DEFAULT 0,
    messages_from_agent         integer     NOT NULL DEFAULT 0,
    duration_seconds            integer     NOT NULL DEFAULT 0,
    first_contact_message_at    timestamptz,
    first_agent_response_at     timestamptz,
    agent_response_time_seconds integer,
    contact_wait_time_seconds   integer,
    agent_ids                   uuid[]      NOT NULL DEFAULT '{}',
    agent_transfers             integer     NOT NULL DEFAULT 0,
    summary                     text,
    sentiment                   text,
    sentiment_score             numeric,
    topics                      jsonb,
    next_steps                  jsonb,
    key_entities                jsonb,
    outcome_tags                jsonb,
    resolved                    boolean     NOT NULL DEFAULT false,
    escalated                   boolean     NOT NULL DEFAULT false,
    converted                   boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES ventros.contacts (tenant_id, id),
    FOREIGN KEY (tenant_id, channel_id) REFERENCES ventros.channels (tenant_id, id),
    FOREIGN KEY (tenant_id, pipeline_id) REFERENCES ventros.pipelines (tenant_id, id),
    FOREIGN KEY (tenant_id, team_id) REFERENCES ventros.teams (tenant_id, id),
    FOREIGN KEY (tenant_id, assigned_agent_id) REFERENCES ventros.agents (tenant_id, id),
    CONSTRAINT sessions_status_known CHECK (status IN ('active', 'ended', 'expired', 'manually_closed')),
    CONSTRAINT sessions_end_reason_known CHECK (end_reason IN ('inactivity_timeout', 'manual_close', 'contact_request',
                                                               'agent_close', 'system_close', 'saga_rollback')),
    CONSTRAINT sessions_ended_consistent CHECK ((status = 'active') = (ended_at IS NULL)
                                                AND (status = 'active') = (end_reason IS NULL)),
    CONSTRAINT sessions_ended_after_start CHECK (ended_at >= started_at),
    CONSTRAINT sessions_timeout_range CHECK (timeout_seconds BETWEEN 60 AND 86400),
    CONSTRAINT sessions_resolved_after_end CHECK (NOT resolved OR status <> 'active'),
    CONSTRAINT sessions_sentiment_known CHECK (sentiment IN ('positive', 'neutral', 'negative', 'mixed')),
    CONSTRAINT sessions_counters_positive CHECK (message_count >= 0 AND messages_from_contact >= 0
                                                 AND messages_from_agent >= 0 AND agent_transfers >= 0)
);
CREATE UNIQUE INDEX sessions_one_active ON ventros.sessions (tenant_id, contact_id, channel_id)
    WHERE status = 'active' AND deleted_at IS NULL;
CREATE INDEX sessions_expiry ON ventros.sessions (expires_at) WHERE status = 'active' AND deleted_at IS NULL;
CREATE INDEX sessions_by_contact ON ventros.sessions (tenant_id, contact_id, started_at DESC, id DESC);
CREATE INDEX sessions_open_by_agent ON ventros.sessions (tenant_id, assigned_agent_id, channel_id, last_activity_at DESC, id DESC)
    WHERE status = 'active' AND deleted_at IS NULL;
COMMENT ON TABLE ventros.sessions IS 'Session: a conversation window between a contact and the business on one channel';

SELECT ventros.register_aggregate('session', 'ventros.sessions', 'crm',
    state_column => 'status',
    transitions => '[
        {"from": null, "to": "active", "event": "session.started", "description": "A session started."},
        {"from": "active", "to": "ended", "event": "session.ended", "description": "A session ended (status ended, expired or manually_closed; see end_reason)."},
        {"from": "active", "to": "expired", "event": "session.ended"},
        {"from": "active", "to": "manually_closed", "event": "session.ended"}
    ]',
    description => 'A conversation window between a contact and the business on one channel');
SELECT ventros.declare_quiet_columns('session', '{last_activity_at,expires_at,message_count,messages_from_contact,messages_from_agent,duration_seconds,first_contact_message_at,first_agent_response_at,agent_response_time_seconds,contact_wait_time_seconds}');
SELECT ventros.register_event_type(e, d) FROM (VALUES
    ('session.message_recorded', 'A message was recorded on a session.'),
    ('session.agent_assigned', 'An agent was assigned to a session (also on a transfer).'),
    ('session.resolved', 'A session was marked resolved.'),
    ('session.escalated', 'A session was escalated.'),
    ('session.summarized', 'A summary was set on a session.'),
    ('session.abandoned', 'A session expired with the contact waiting for a first response.'),
    ('session.consolidated', 'Sessions of one contact and channel were merged into this one after a history import.')) v(e, d);

-- A status change written directly (not through close_session) still ends
-- the session consistently: ended_at, end_reason and duration are filled in.
CREATE FUNCTION ventros.complete_session_end() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF OLD.status = 'active' AND NEW.status <> 'active' THEN
        NEW.ended_at := coalesce(NEW.ended_at, greatest(now(), NEW.started_at));
        NEW.end_reason := coalesce(NEW.end_reason, CASE NEW.status WHEN 'expired' THEN 'inactivity_timeout'
                                                                   WHEN 'manually_closed' THEN 'manual_close'
                                                                   ELSE 'system_close' END);
        NEW.duration_seconds := extract(epoch FROM NEW.ended_at - NEW.started_at)::integer;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION ventros.complete_session_end() IS
    'Trigger: a session leaving active gets ended_at, end_reason (by status) and duration when the writer did not set them';
CREATE TRIGGER sessions_complete_end BEFORE UPDATE OF status ON ventros.sessions
    FOR EACH ROW EXECUTE FUNCTION ventros.complete_session_end();

CREATE TABLE ventros.session_custom_fields (
    id          uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id   text        NOT NULL,
    version     integer     NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    session_id  uuid        NOT NULL,
    field_key   text        NOT NULL,
    field_type  text        NOT NULL,
    field_value jsonb,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES ventros.sessions (tenant_id, id),
    CONSTRAINT session_custom_fields_key_format CHECK (field_key ~ '^[a-z][a-z0-9_]{0,63}$'),
    CONSTRAINT session_custom_fields_type_known CHECK (field_type IN ('text', 'number', 'boolean', 'date', 'json', 'url',
        'email', 'phone', 'select', 'multi_select', 'label'))
);
CREATE UNIQUE INDEX session_custom_fields_unique ON ventros.session_custom_fields (tenant_id, session_id, field_key)
    WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.session_custom_fields IS 'A custom field value of a session';

SELECT ventros.register_aggregate('session_custom_field', 'ventros.session_custom_fields', 'crm',
    description => 'A custom field value of a session');

-- Timeout of a new session on a channel, in seconds.
CREATE FUNCTION ventros.session_timeout_seconds(channel_id uuid) RETURNS integer
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 60 * coalesce(pl.session_timeout_minutes, c.session_timeout_minutes, p.session_timeout_minutes, 30)
    FROM ventros.channels c
    JOIN ventros.projects p ON p.tenant_id = c.tenant_id AND p.id = c.project_id
    LEFT JOIN ventros.pipelines pl ON pl.tenant_id = c.tenant_id AND pl.id = c.pipeline_id
    WHERE c.tenant_id = ventros.require_tenant() AND c.id = session_timeout_seconds.channel_id
$$;
COMMENT ON FUNCTION ventros.session_timeout_seconds(uuid) IS
    'Session timeout for a channel: its pipeline''s, else its own, else its project''s, else 30 minutes (in seconds)';

-- end_reason -> status
CREATE FUNCTION ventros.session_status_for(end_reason text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE end_reason WHEN 'inactivity_timeout' THEN 'expired'
                           WHEN 'manual_close' THEN 'manually_closed'
                           WHEN 'agent_close' THEN 'manually_closed'
                           ELSE 'ended' END
$$;
COMMENT ON FUNCTION ventros.session_status_for(text) IS
    'The status a session ends in for an end reason: expired (inactivity_timeout), manually_closed (manual_close, agent_close), else ended';

-- Ends one active session; the caller holds its row lock.
CREATE FUNCTION ventros.finish_session(s ventros.sessions, end_reason text, at timestamptz)
RETURNS ventros.sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.sessions;
    ended timestamptz := greatest(at, s.started_at);
BEGIN
    UPDATE ventros.sessions t
    SET status = ventros.session_status_for(finish_session.end_reason), end_reason = finish_session.end_reason,
        ended_at = ended, duration_seconds = extract(epoch FROM ended - t.started_at)::integer, version = s.version
    WHERE t.tenant_id = s.tenant_id AND t.id = s.id
    RETURNING * INTO result;
    -- The handling agent's running metrics (quiet columns of the agent).
    IF s.assigned_agent_id IS NOT NULL THEN
        UPDATE ventros.agents a
        SET sessions_handled = a.sessions_handled + 1,
            average_response_ms = CASE WHEN s.agent_response_time_seconds IS NULL THEN a.average_response_ms
                                       ELSE ((a.average_response_ms::bigint * a.sessions_handled
                                              + s.agent_response_time_seconds::bigint * 1000) / (a.sessions_handled + 1))::integer END,
            last_activity_at = greatest(a.last_activity_at, ended), version = a.version
        WHERE a.tenant_id = s.tenant_id AND a.id = s.assigned_agent_id;
    END IF;
    IF finish_session.end_reason = 'inactivity_timeout' AND s.first_contact_message_at IS NOT NULL
       AND s.first_agent_response_at IS NULL THEN
        PERFORM ventros.emit('session.abandoned', 'session', s.id,
                             jsonb_build_object('contact_id', s.contact_id, 'channel_id', s.channel_id,
                                                'waiting_since', s.first_contact_message_at), result.version);
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.finish_session(ventros.sessions, text, timestamptz) IS
    'Ends a locked active session with an end reason (internal); emits session.ended (and session.abandoned)';

-- start_or_continue_session: the active session of (contact, channel), or a
-- new one.  An active session past its expiry is expired first.  Race-free:
-- the insert arbitrates on sessions_one_active.
CREATE FUNCTION ventros.start_or_continue_session(contact_id uuid, channel_id uuid, at timestamptz DEFAULT now())
RETURNS ventros.sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    tenant text := ventros.require_tenant();
    result ventros.sessions;
    ch ventros.channels;
    timeout integer;
BEGIN
    at := coalesce(at, now());
    FOR attempt IN 1..3 LOOP
        SELECT * INTO result FROM ventros.sessions s
        WHERE s.tenant_id = tenant AND s.contact_id = start_or_continue_session.contact_id
          AND s.channel_id = start_or_continue_session.channel_id AND s.status = 'active' AND s.deleted_at IS NULL
        FOR UPDATE;
        IF FOUND THEN
            IF at <= result.expires_at THEN
                RETURN result;
            END IF;
            PERFORM ventros.finish_session(result, 'inactivity_timeout', result.expires_at);
        END IF;
        IF ch.id IS NULL THEN
            SELECT * INTO ch FROM ventros.channels c WHERE c.tenant_id = tenant AND c.id = start_or_continue_session.channel_id;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'channel % not found', channel_id USING ERRCODE = 'P0002';
            END IF;
            timeout := ventros.session_timeout_seconds(ch.id);
        END IF;
        INSERT INTO ventros.sessions (project_id, contact_id, channel_id, channel_type_id, pipeline_id, started_at,
                                      last_activity_at, timeout_seconds, expires_at)
        VALUES (ch.project_id, contact_id, channel_id, ventros.channel_type_id(ch.type), ch.pipeline_id, at, at,
                timeout, at + make_interval(secs => timeout))
        ON CONFLICT (tenant_id, contact_id, channel_id) WHERE status = 'active' AND deleted_at IS NULL DO NOTHING
        RETURNING * INTO result;
        IF result.id IS NOT NULL THEN
            RETURN result;
        END IF;
        result := NULL;
        -- Another transaction started it first: continue that one.
    END LOOP;
    RAISE EXCEPTION 'could not start or continue a session for contact % on channel %', contact_id, channel_id
        USING ERRCODE = '40001';
EXCEPTION WHEN foreign_key_violation THEN
    RAISE EXCEPTION 'contact % not found', contact_id USING ERRCODE = 'P0002';
END
$$;
COMMENT ON FUNCTION ventros.start_or_continue_session(uuid, uuid, timestamptz) IS
    'The active session of a contact on a channel, started if there is none or it expired (race-free on sessions_one_active); emits session.started, and session.ended for an expired one';

-- record_session_message: counters, response metrics, last activity.  The
-- caller holds the session's row lock (start_or_continue_session).
CREATE FUNCTION ventros.record_session_message(s ventros.sessions, from_me boolean, at timestamptz, message_id uuid)
RETURNS ventros.sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.sessions;
BEGIN
    IF s.status <> 'active' THEN
        RAISE EXCEPTION 'session % is %', s.id, s.status USING ERRCODE = 'VN002',
            DETAIL = 'Messages are recorded on active sessions only.';
    END IF;
    UPDATE ventros.sessions t
    SET message_count = t.message_count + 1,
        messages_from_contact = t.messages_from_contact + (NOT from_me)::integer,
        messages_from_agent = t.messages_from_agent + from_me::integer,
        last_activity_at = greatest(t.last_activity_at, at),
        expires_at = greatest(t.last_activity_at, at) + make_interval(secs => t.timeout_seconds),
        duration_seconds = extract(epoch FROM greatest(t.last_activity_at, at) - t.started_at)::integer,
        first_contact_message_at = CASE WHEN NOT from_me THEN coalesce(t.first_contact_message_at, at)
                                        ELSE t.first_contact_message_at END,
        first_agent_response_at = CASE WHEN from_me AND t.first_contact_message_at IS NOT NULL
                                       THEN coalesce(t.first_agent_response_at, at) ELSE t.first_agent_response_at END,
        agent_response_time_seconds = CASE WHEN from_me AND t.first_contact_message_at IS NOT NULL
                                            AND t.first_agent_response_at IS NULL
                                           THEN greatest(0, extract(epoch FROM at - t.first_contact_message_at))::integer
                                           ELSE t.agent_response_time_seconds END,
        contact_wait_time_seconds = CASE WHEN from_me AND t.first_contact_message_at IS NOT NULL
                                          AND t.first_agent_response_at IS NULL
                                         THEN greatest(0, extract(epoch FROM at - t.first_contact_message_at))::integer
                                         ELSE t.contact_wait_time_seconds END,
        version = s.version
    WHERE t.tenant_id = s.tenant_id AND t.id = s.id
    RETURNING * INTO result;
    PERFORM ventros.emit('session.message_recorded', 'session', s.id,
                         jsonb_build_object('message_id', message_id, 'from_me', from_me, 'at', at,
                                            'message_count', result.message_count), result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.record_session_message(ventros.sessions, boolean, timestamptz, uuid) IS
    'Records a message on a locked active session (internal): counters, first response, last activity, expiry; emits session.message_recorded';

CREATE FUNCTION ventros.lock_session(session_id uuid, expected_version integer DEFAULT NULL)
RETURNS ventros.sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.sessions;
BEGIN
    SELECT * INTO result FROM ventros.sessions s
    WHERE s.tenant_id = ventros.require_tenant() AND s.id = session_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'session % not found', session_id USING ERRCODE = 'P0002';
    END IF;
    IF expected_version IS NOT NULL AND expected_version <> result.version THEN
        RAISE EXCEPTION 'session % has changed since version % was read', session_id, expected_version
            USING ERRCODE = 'VN001', DETAIL = format('Current version is %s.', result.version),
                  HINT = 'Read the session again and retry with its current version.';
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.lock_session(uuid, integer) IS
    'Locks a session for a command: P0002 when absent, VN001 when expected_version is stale';

CREATE FUNCTION ventros.close_session(session_id uuid, expected_version integer DEFAULT NULL,
                                      end_reason text DEFAULT 'manual_close', at timestamptz DEFAULT now())
RETURNS ventros.sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.sessions;
BEGIN
    IF end_reason IS NULL OR end_reason NOT IN ('inactivity_timeout', 'manual_close', 'contact_request', 'agent_close',
                                                'system_close', 'saga_rollback') THEN
        RAISE EXCEPTION 'unknown end reason "%"', left(end_reason, 32) USING ERRCODE = '22023',
            HINT = 'Use manual_close, agent_close, contact_request, system_close, inactivity_timeout or saga_rollback.';
    END IF;
    s := ventros.lock_session(session_id, expected_version);
    IF s.status <> 'active' THEN
        RAISE EXCEPTION 'session % cannot change status from "%" to "%"', session_id, s.status,
            ventros.session_status_for(end_reason)
            USING ERRCODE = 'VN002', DETAIL = 'Only an active session can end.';
    END IF;
    RETURN ventros.finish_session(s, end_reason, coalesce(at, now()));
END
$$;
COMMENT ON FUNCTION ventros.close_session(uuid, integer, text, timestamptz) IS
    'Ends an active session with a reason: expired, manually_closed or ended (VN002 if not active); emits session.ended';

-- tick_sessions: expire every active session of the acting tenant (or, for a
-- session without a tenant, such as pg_cron's superuser, of every tenant)
-- whose expiry has passed.  Returns how many ended.
CREATE FUNCTION ventros.tick_sessions(now timestamptz DEFAULT now(), batch_size integer DEFAULT 1000)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.sessions;
    tenant text := ventros.current_tenant();
    n integer := 0;
BEGIN
    FOR s IN
        SELECT * FROM ventros.sessions t
        WHERE t.status = 'active' AND t.deleted_at IS NULL AND t.expires_at < tick_sessions.now
          AND (tenant IS NULL OR t.tenant_id = tenant)
        ORDER BY t.expires_at
        LIMIT batch_size
        FOR UPDATE SKIP LOCKED
    LOOP
        PERFORM ventros.finish_session(s, 'inactivity_timeout', s.expires_at);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.tick_sessions(timestamptz, integer) IS
    'Expires active sessions whose last activity + timeout is before now (end_reason inactivity_timeout, ended_at = the expiry); returns the count; emits session.ended';

-- ---- assignment ---------------------------------------------------------
CREATE FUNCTION ventros.assign_session_agent(session_id uuid, agent_id uuid, expected_version integer DEFAULT NULL,
                                             reason text DEFAULT 'manual')
RETURNS ventros.sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.sessions;
    a ventros.agents;
    result ventros.sessions;
BEGIN
    IF reason NOT IN ('manual', 'round_robin', 'capacity', 'inactivity', 'no_response', 'workload_balance') THEN
        RAISE EXCEPTION 'unknown assignment reason "%"', left(reason, 32) USING ERRCODE = '22023';
    END IF;
    s := ventros.lock_session(session_id, expected_version);
    IF s.status <> 'active' THEN
        RAISE EXCEPTION 'session % is %', session_id, s.status USING ERRCODE = 'VN002',
            DETAIL = 'Agents are assigned to active sessions only.';
    END IF;
    SELECT * INTO a FROM ventros.agents g WHERE g.tenant_id = s.tenant_id AND g.id = assign_session_agent.agent_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'agent % not found', agent_id USING ERRCODE = 'P0002';
    END IF;
    IF a.type IN ('virtual', 'system') OR NOT a.active THEN
        RAISE EXCEPTION 'agent % cannot be assigned', agent_id USING ERRCODE = '22023',
            DETAIL = 'Virtual, system and inactive agents are never assigned.';
    END IF;
    IF s.assigned_agent_id = a.id THEN
        RETURN s;
    END IF;
    UPDATE ventros.sessions t
    SET assigned_agent_id = a.id,
        agent_ids = CASE WHEN a.id = ANY (t.agent_ids) THEN t.agent_ids ELSE t.agent_ids || a.id END,
        agent_transfers = t.agent_transfers + (t.assigned_agent_id IS NOT NULL)::integer,
        version = s.version
    WHERE t.tenant_id = s.tenant_id AND t.id = s.id
    RETURNING * INTO result;
    PERFORM ventros.emit('session.agent_assigned', 'session', s.id,
                         jsonb_build_object('agent_id', a.id, 'previous_agent_id', s.assigned_agent_id,
                                            'team_id', s.team_id, 'reason', reason,
                                            'transfer', s.assigned_agent_id IS NOT NULL), result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.assign_session_agent(uuid, uuid, integer, text) IS
    'Assigns (or transfers, counting agent_transfers) an active session to a human, AI or bot agent; VN001 on a stale version; emits session.updated and session.agent_assigned';

-- pick_team_agent: the next agent of a team by its strategy, its membership
-- row locked (SKIP LOCKED: two concurrent picks get different agents).
-- round_robin: assigned longest ago first; capacity: fewest open sessions.
-- Only available, active agents under their max_open_sessions qualify.
CREATE FUNCTION ventros.pick_team_agent(team_id uuid)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    strategy text;
    member ventros.team_members;
    tried uuid[] := '{}';
    open_count integer;
    capacity integer;
BEGIN
    SELECT t.assignment_strategy INTO strategy FROM ventros.teams t WHERE t.tenant_id = tenant AND t.id = pick_team_agent.team_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'team % not found', team_id USING ERRCODE = 'P0002';
    END IF;
    -- One candidate at a time (LIMIT 1): a cursor would lock every row it
    -- prefetches and starve concurrent pickers.
    LOOP
        SELECT m.* INTO member FROM ventros.team_members m
        JOIN ventros.agents a ON a.tenant_id = m.tenant_id AND a.id = m.agent_id
        WHERE m.tenant_id = tenant AND m.team_id = pick_team_agent.team_id AND m.id <> ALL (tried)
          AND a.active AND a.status = 'available' AND a.type NOT IN ('virtual', 'system')
        ORDER BY CASE WHEN strategy = 'capacity'
                      THEN (SELECT count(*) FROM ventros.sessions s WHERE s.tenant_id = tenant
                            AND s.assigned_agent_id = m.agent_id AND s.status = 'active' AND s.deleted_at IS NULL) END,
                 m.last_assigned_at NULLS FIRST, m.agent_id
        LIMIT 1
        FOR UPDATE OF m SKIP LOCKED;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
        tried := tried || member.id;
        -- Counted again under the lock: a committed assignment is seen now.
        SELECT count(*) INTO open_count FROM ventros.sessions s
        WHERE s.tenant_id = tenant AND s.assigned_agent_id = member.agent_id AND s.status = 'active' AND s.deleted_at IS NULL;
        SELECT a.max_open_sessions INTO capacity FROM ventros.agents a WHERE a.tenant_id = tenant AND a.id = member.agent_id;
        IF open_count < capacity THEN
            UPDATE ventros.team_members m SET last_assigned_at = clock_timestamp(), version = m.version
            WHERE m.tenant_id = tenant AND m.id = member.id;
            RETURN member.agent_id;
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION ventros.pick_team_agent(uuid) IS
    'The next available agent of a team under its capacity, by the team''s strategy (round_robin or capacity), or NULL';

CREATE FUNCTION ventros.assign_session_to_team(session_id uuid, team_id uuid, expected_version integer DEFAULT NULL)
RETURNS ventros.sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.sessions;
    strategy text;
    picked uuid;
BEGIN
    s := ventros.lock_session(session_id, expected_version);
    IF s.status <> 'active' THEN
        RAISE EXCEPTION 'session % is %', session_id, s.status USING ERRCODE = 'VN002',
            DETAIL = 'Agents are assigned to active sessions only.';
    END IF;
    SELECT t.assignment_strategy INTO strategy FROM ventros.teams t
    WHERE t.tenant_id = s.tenant_id AND t.id = assign_session_to_team.team_id AND t.active;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'team % not found', team_id USING ERRCODE = 'P0002';
    END IF;
    IF s.team_id IS DISTINCT FROM team_id THEN
        UPDATE ventros.sessions t SET team_id = assign_session_to_team.team_id, version = s.version
        WHERE t.tenant_id = s.tenant_id AND t.id = s.id RETURNING * INTO s;
    END IF;
    IF strategy = 'manual' THEN
        RETURN s;
    END IF;
    picked := ventros.pick_team_agent(team_id);
    IF picked IS NULL THEN
        RETURN s;       -- queued on the team: nobody available under capacity
    END IF;
    RETURN ventros.assign_session_agent(session_id, picked, NULL, strategy);
END
$$;
COMMENT ON FUNCTION ventros.assign_session_to_team(uuid, uuid, integer) IS
    'Puts a session on a team and assigns the team''s next agent by its strategy (none when nobody is available: the session waits on the team); emits session.updated and session.agent_assigned';

CREATE FUNCTION ventros.resolve_session(session_id uuid, expected_version integer DEFAULT NULL)
RETURNS ventros.sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.sessions;
    result ventros.sessions;
BEGIN
    s := ventros.lock_session(session_id, expected_version);
    IF s.status = 'active' THEN
        RAISE EXCEPTION 'session % is still active', session_id USING ERRCODE = 'VN002',
            DETAIL = 'A session can be resolved only after it ends.';
    END IF;
    IF s.resolved THEN
        RETURN s;
    END IF;
    UPDATE ventros.sessions t SET resolved = true, version = s.version
    WHERE t.tenant_id = s.tenant_id AND t.id = s.id RETURNING * INTO result;
    PERFORM ventros.emit('session.resolved', 'session', s.id, jsonb_build_object('ended_at', s.ended_at), result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.resolve_session(uuid, integer) IS
    'Marks an ended session resolved (VN002 while active); emits session.updated and session.resolved';

CREATE FUNCTION ventros.escalate_session(session_id uuid, expected_version integer DEFAULT NULL, reason text DEFAULT NULL)
RETURNS ventros.sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.sessions;
    result ventros.sessions;
BEGIN
    s := ventros.lock_session(session_id, expected_version);
    IF s.escalated THEN
        RETURN s;
    END IF;
    UPDATE ventros.sessions t SET escalated = true, version = s.version
    WHERE t.tenant_id = s.tenant_id AND t.id = s.id RETURNING * INTO result;
    PERFORM ventros.emit('session.escalated', 'session', s.id, jsonb_build_object('reason', reason), result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.escalate_session(uuid, integer, text) IS
    'Marks a session escalated (at any time); emits session.updated and session.escalated';

CREATE FUNCTION ventros.summarize_session(session_id uuid, summary text, sentiment text DEFAULT NULL,
                                          sentiment_score numeric DEFAULT NULL, topics jsonb DEFAULT NULL,
                                          next_steps jsonb DEFAULT NULL, expected_version integer DEFAULT NULL)
RETURNS ventros.sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.sessions;
    result ventros.sessions;
BEGIN
    IF summary IS NULL OR btrim(summary) = '' THEN
        RAISE EXCEPTION 'session summary must not be empty' USING ERRCODE = '23502';
    END IF;
    IF sentiment IS NOT NULL AND sentiment NOT IN ('positive', 'neutral', 'negative', 'mixed') THEN
        RAISE EXCEPTION 'unknown sentiment "%"', left(sentiment, 32) USING ERRCODE = '22023';
    END IF;
    s := ventros.lock_session(session_id, expected_version);
    UPDATE ventros.sessions t
    SET summary = ventros.check_length(summarize_session.summary, 20000, 'session summary'),
        sentiment = summarize_session.sentiment, sentiment_score = summarize_session.sentiment_score,
        topics = summarize_session.topics, next_steps = summarize_session.next_steps, version = s.version
    WHERE t.tenant_id = s.tenant_id AND t.id = s.id RETURNING * INTO result;
    PERFORM ventros.emit('session.summarized', 'session', s.id,
                         jsonb_build_object('sentiment', sentiment, 'sentiment_score', sentiment_score), result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.summarize_session(uuid, text, text, numeric, jsonb, jsonb, integer) IS
    'Sets the AI summary and sentiment of a session; emits session.updated and session.summarized';

CREATE FUNCTION ventros.set_session_custom_field(session_id uuid, field_key text, field_type text, field_value jsonb)
RETURNS ventros.session_custom_fields
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    existing ventros.session_custom_fields;
    result ventros.session_custom_fields;
BEGIN
    PERFORM 1 FROM ventros.sessions s WHERE s.tenant_id = tenant AND s.id = set_session_custom_field.session_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'session % not found', session_id USING ERRCODE = 'P0002';
    END IF;
    SELECT * INTO existing FROM ventros.session_custom_fields f
    WHERE f.tenant_id = tenant AND f.session_id = set_session_custom_field.session_id
      AND f.field_key = set_session_custom_field.field_key FOR UPDATE;
    IF FOUND THEN
        UPDATE ventros.session_custom_fields f SET field_type = set_session_custom_field.field_type,
            field_value = set_session_custom_field.field_value, version = existing.version
        WHERE f.tenant_id = tenant AND f.id = existing.id RETURNING * INTO result;
    ELSE
        INSERT INTO ventros.session_custom_fields (session_id, field_key, field_type, field_value)
        VALUES (session_id, field_key, field_type, field_value) RETURNING * INTO result;
    END IF;
    RETURN result;
EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION 'malformed custom field "%" of type "%"', left(field_key, 64), left(field_type, 32) USING ERRCODE = '22023';
END
$$;
COMMENT ON FUNCTION ventros.set_session_custom_field(uuid, text, text, jsonb) IS
    'Sets a custom field of a session; emits session_custom_field.created / .updated';

-- consolidate_sessions: after a history import, the ended sessions of one
-- contact on one channel whose gap (next start - previous last activity) is
-- at most the earlier one's timeout are merged: their messages move to the
-- earliest session of each run, its counters and end are recomputed, and the
-- emptied sessions are soft-deleted.  Active sessions are left alone.
CREATE FUNCTION ventros.consolidate_sessions(contact_id uuid, channel_id uuid)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    s ventros.sessions;
    keep ventros.sessions;
    merged uuid[] := '{}';
    run_merged uuid[] := '{}';
    total integer := 0;
BEGIN
    PERFORM 1 FROM ventros.contacts c WHERE c.tenant_id = tenant AND c.id = consolidate_sessions.contact_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'contact % not found', contact_id USING ERRCODE = 'P0002';
    END IF;
    FOR s IN
        SELECT * FROM ventros.sessions x
        WHERE x.tenant_id = tenant AND x.contact_id = consolidate_sessions.contact_id
          AND x.channel_id = consolidate_sessions.channel_id AND x.status <> 'active' AND x.deleted_at IS NULL
        ORDER BY x.started_at, x.id
        FOR UPDATE
    LOOP
        IF keep.id IS NOT NULL AND s.started_at - keep.last_activity_at <= make_interval(secs => keep.timeout_seconds) THEN
            UPDATE ventros.messages m SET session_id = keep.id, version = m.version
            WHERE m.tenant_id = tenant AND m.session_id = s.id;
            UPDATE ventros.notes n SET session_id = keep.id, version = n.version
            WHERE n.tenant_id = tenant AND n.session_id = s.id;
            DELETE FROM ventros.sessions x WHERE x.tenant_id = tenant AND x.id = s.id;
            keep.last_activity_at := greatest(keep.last_activity_at, s.last_activity_at);
            keep.ended_at := greatest(keep.ended_at, s.ended_at);
            run_merged := run_merged || s.id;
            CONTINUE;
        END IF;
        IF cardinality(run_merged) > 0 THEN
            PERFORM ventros.recount_session(keep, run_merged);
            merged := merged || run_merged;
        END IF;
        keep := s;
        run_merged := '{}';
    END LOOP;
    IF cardinality(run_merged) > 0 THEN
        PERFORM ventros.recount_session(keep, run_merged);
        merged := merged || run_merged;
    END IF;
    RETURN cardinality(merged);
END
$$;
COMMENT ON FUNCTION ventros.consolidate_sessions(uuid, uuid) IS
    'Merges a contact''s ended sessions on a channel whose gaps are within the timeout (history import); returns how many were merged away; emits message.updated per moved message, session.deleted per emptied session, session.updated and session.consolidated for each kept one';

-- recount_session: a kept session's counters and end after consolidation.
CREATE FUNCTION ventros.recount_session(keep ventros.sessions, merged_ids uuid[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.sessions;
BEGIN
    UPDATE ventros.sessions t
    SET (message_count, messages_from_contact, messages_from_agent, first_contact_message_at, last_activity_at) =
            (SELECT count(*), count(*) FILTER (WHERE NOT m.from_me), count(*) FILTER (WHERE m.from_me),
                    min(m."timestamp") FILTER (WHERE NOT m.from_me), greatest(t.started_at, max(m."timestamp"))
             FROM ventros.messages m WHERE m.tenant_id = t.tenant_id AND m.session_id = t.id),
        ended_at = keep.ended_at,
        duration_seconds = extract(epoch FROM keep.ended_at - t.started_at)::integer,
        version = t.version
    WHERE t.tenant_id = keep.tenant_id AND t.id = keep.id
    RETURNING * INTO result;
    PERFORM ventros.emit('session.consolidated', 'session', keep.id,
                         jsonb_build_object('merged_session_ids', to_jsonb(merged_ids), 'message_count', result.message_count),
                         result.version);
END
$$;
COMMENT ON FUNCTION ventros.recount_session(ventros.sessions, uuid[]) IS
    'Recomputes a consolidated session''s counters and end (internal); emits session.consolidated';

CREATE FUNCTION ventros.get_session(session_id uuid) RETURNS ventros.sessions
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.get_row(NULL::ventros.sessions, 'session', session_id) $$;
COMMENT ON FUNCTION ventros.get_session(uuid) IS 'A session of the acting tenant, or P0002';

GRANT EXECUTE ON FUNCTION ventros.session_timeout_seconds(uuid), ventros.session_status_for(text),
    ventros.get_session(uuid) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.finish_session(ventros.sessions, text, timestamptz),
    ventros.start_or_continue_session(uuid, uuid, timestamptz),
    ventros.record_session_message(ventros.sessions, boolean, timestamptz, uuid), ventros.lock_session(uuid, integer),
    ventros.close_session(uuid, integer, text, timestamptz), ventros.tick_sessions(timestamptz, integer),
    ventros.assign_session_agent(uuid, uuid, integer, text), ventros.pick_team_agent(uuid),
    ventros.assign_session_to_team(uuid, uuid, integer), ventros.resolve_session(uuid, integer),
    ventros.escalate_session(uuid, integer, text),
    ventros.summarize_session(uuid, text, text, numeric, jsonb, jsonb, integer),
    ventros.set_session_custom_field(uuid, text, text, jsonb) TO ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.consolidate_sessions(uuid, uuid), ventros.recount_session(ventros.sessions, uuid[])
    TO ventros_admin;

-- ---- sql/38_agent_sessions.sql
-- Aggregate 10, AgentSession (CRM): an agent's participation in a session,
-- with a role.  One active row per (session, agent) and at most one active
-- primary per session, both by partial unique indexes.  is_active is the
-- state column: true -> false is agent_session.left, and never back.

CREATE TABLE ventros.agent_sessions (
    id              uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id       text        NOT NULL,
    version         integer     NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    agent_id        uuid        NOT NULL,
    session_id      uuid        NOT NULL,
    role_in_session text        NOT NULL DEFAULT 'primary',
    joined_at       timestamptz NOT NULL DEFAULT now(),
    left_at         timestamptz,
    is_active       boolean     NOT NULL DEFAULT true,
    metadata        jsonb,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES ventros.agents (tenant_id, id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES ventros.sessions (tenant_id, id),
    CONSTRAINT agent_sessions_role_known CHECK (role_in_session IN ('primary', 'support', 'observer', 'handoff',
                                                                    'ai_assistant', 'ai_primary', 'bot')),
    CONSTRAINT agent_sessions_left_consistent CHECK (is_active = (left_at IS NULL)),
    CONSTRAINT agent_sessions_left_after_join CHECK (left_at >= joined_at)
);
CREATE UNIQUE INDEX agent_sessions_one_active ON ventros.agent_sessions (tenant_id, session_id, agent_id)
    WHERE is_active AND deleted_at IS NULL;
CREATE UNIQUE INDEX agent_sessions_one_primary ON ventros.agent_sessions (tenant_id, session_id)
    WHERE is_active AND role_in_session = 'primary' AND deleted_at IS NULL;
CREATE INDEX agent_sessions_by_agent ON ventros.agent_sessions (tenant_id, agent_id, joined_at DESC) WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.agent_sessions IS 'AgentSession: an agent''s participation in a session, with a role';

SELECT ventros.register_aggregate('agent_session', 'ventros.agent_sessions', 'crm',
    state_column => 'is_active',
    transitions => '[
        {"from": null, "to": "true", "event": "agent_session.joined", "description": "An agent joined a session."},
        {"from": "true", "to": "false", "event": "agent_session.left", "description": "An agent left a session."}
    ]',
    description => 'An agent''s participation in a session');
SELECT ventros.register_event_type('agent_session.role_changed', 'An agent''s role in a session changed.');

-- Leaving written directly (is_active = false) stamps left_at too.
CREATE FUNCTION ventros.complete_agent_session_leave() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF OLD.is_active AND NOT NEW.is_active THEN
        NEW.left_at := coalesce(NEW.left_at, greatest(now(), NEW.joined_at));
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION ventros.complete_agent_session_leave() IS 'Trigger: an agent session that ends gets left_at when the writer did not set it';
CREATE TRIGGER agent_sessions_complete_leave BEFORE UPDATE OF is_active ON ventros.agent_sessions
    FOR EACH ROW EXECUTE FUNCTION ventros.complete_agent_session_leave();

CREATE FUNCTION ventros.join_session(session_id uuid, agent_id uuid, role_in_session text DEFAULT 'primary',
                                     metadata jsonb DEFAULT NULL)
RETURNS ventros.agent_sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.agent_sessions;
    constraint_name text;
BEGIN
    IF role_in_session NOT IN ('primary', 'support', 'observer', 'handoff', 'ai_assistant', 'ai_primary', 'bot') THEN
        RAISE EXCEPTION 'unknown role in session "%"', left(role_in_session, 32) USING ERRCODE = '22023';
    END IF;
    PERFORM ventros.lock_session(session_id);
    INSERT INTO ventros.agent_sessions (agent_id, session_id, role_in_session, metadata, joined_at)
    VALUES (agent_id, session_id, role_in_session, metadata, clock_timestamp())
    RETURNING * INTO result;
    RETURN result;
EXCEPTION
    WHEN unique_violation THEN
        GET STACKED DIAGNOSTICS constraint_name = CONSTRAINT_NAME;
        IF constraint_name = 'agent_sessions_one_primary' THEN
            RAISE EXCEPTION 'session % already has an active primary agent', session_id USING ERRCODE = '23505',
                CONSTRAINT = constraint_name;
        END IF;
        RAISE EXCEPTION 'agent % is already in session %', agent_id, session_id USING ERRCODE = '23505',
            CONSTRAINT = constraint_name;
    WHEN foreign_key_violation THEN
        RAISE EXCEPTION 'agent % not found', agent_id USING ERRCODE = 'P0002';
END
$$;
COMMENT ON FUNCTION ventros.join_session(uuid, uuid, text, jsonb) IS
    'An agent joins a session with a role (one active row per agent, one active primary: 23505); emits agent_session.joined';

CREATE FUNCTION ventros.leave_session(agent_session_id uuid, expected_version integer DEFAULT NULL)
RETURNS ventros.agent_sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current ventros.agent_sessions;
    result ventros.agent_sessions;
BEGIN
    SELECT * INTO current FROM ventros.agent_sessions a
    WHERE a.tenant_id = ventros.require_tenant() AND a.id = agent_session_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'agent session % not found', agent_session_id USING ERRCODE = 'P0002';
    END IF;
    IF NOT current.is_active THEN
        RAISE EXCEPTION 'agent session % cannot change status from "false" to "false"', agent_session_id
            USING ERRCODE = 'VN002', DETAIL = 'The agent has left the session already.';
    END IF;
    UPDATE ventros.agent_sessions a
    SET is_active = false, left_at = greatest(clock_timestamp(), a.joined_at), version = coalesce(expected_version, current.version)
    WHERE a.tenant_id = current.tenant_id AND a.id = current.id
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.leave_session(uuid, integer) IS
    'An agent leaves a session (only while active: VN002 otherwise); emits agent_session.left';

CREATE FUNCTION ventros.change_agent_session_role(agent_session_id uuid, role_in_session text,
                                                  expected_version integer DEFAULT NULL)
RETURNS ventros.agent_sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current ventros.agent_sessions;
    result ventros.agent_sessions;
BEGIN
    SELECT * INTO current FROM ventros.agent_sessions a
    WHERE a.tenant_id = ventros.require_tenant() AND a.id = agent_session_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'agent session % not found', agent_session_id USING ERRCODE = 'P0002';
    END IF;
    IF NOT current.is_active THEN
        RAISE EXCEPTION 'agent session % has ended', agent_session_id USING ERRCODE = 'VN002';
    END IF;
    UPDATE ventros.agent_sessions a
    SET role_in_session = change_agent_session_role.role_in_session, version = coalesce(expected_version, current.version)
    WHERE a.tenant_id = current.tenant_id AND a.id = current.id
    RETURNING * INTO result;
    PERFORM ventros.emit('agent_session.role_changed', 'agent_session', agent_session_id,
                         jsonb_build_object('from', current.role_in_session, 'to', role_in_session), result.version);
    RETURN result;
EXCEPTION
    WHEN unique_violation THEN
        RAISE EXCEPTION 'session % already has an active primary agent', current.session_id USING ERRCODE = '23505';
    WHEN check_violation THEN
        RAISE EXCEPTION 'unknown role in session "%"', left(role_in_session, 32) USING ERRCODE = '22023';
END
$$;
COMMENT ON FUNCTION ventros.change_agent_session_role(uuid, text, integer) IS
    'Changes an active participation''s role; emits agent_session.updated and agent_session.role_changed';

GRANT EXECUTE ON FUNCTION ventros.join_session(uuid, uuid, text, jsonb), ventros.leave_session(uuid, integer),
    ventros.change_agent_session_role(uuid, text, integer) TO ventros_agent;

-- ---- sql/39_chats.sql
-- Aggregate 4, Chat (CRM): a conversation container, one-to-one (individual),
-- a group (a WhatsApp @g.us group) or a broadcast channel.  Participants are
-- the child aggregate chat_participant (a jsonb array in the original).
--
-- Invariants: an individual chat has exactly one contact, no subject and no
-- removals; groups and channels need a subject and a creator; no duplicate
-- live participants; admins only in groups; external_id unique per channel;
-- a closed chat is terminal and immutable (the engine's state machine, and a
-- guard against other changes).

CREATE TABLE ventros.chats (
    id              uuid         NOT NULL DEFAULT gen_random_uuid(),
    tenant_id       text         NOT NULL,
    version         integer      NOT NULL DEFAULT 1,
    created_at      timestamptz  NOT NULL DEFAULT now(),
    updated_at      timestamptz  NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    project_id      uuid         NOT NULL,
    channel_id      uuid,
    chat_type       text         NOT NULL,
    external_id     text,
    subject         varchar(255),
    description     text,
    status          text         NOT NULL DEFAULT 'active',
    created_by      uuid,
    metadata        jsonb,
    custom_fields   jsonb        NOT NULL DEFAULT '{}',
    last_message_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id),
    FOREIGN KEY (tenant_id, channel_id) REFERENCES ventros.channels (tenant_id, id),
    CONSTRAINT chats_type_known CHECK (chat_type IN ('individual', 'group', 'channel')),
    CONSTRAINT chats_status_known CHECK (status IN ('active', 'archived', 'closed')),
    CONSTRAINT chats_subject_rule CHECK (CASE WHEN chat_type = 'individual' THEN subject IS NULL
                                              ELSE btrim(subject) <> '' AND created_by IS NOT NULL END)
);
CREATE UNIQUE INDEX chats_unique_external_id ON ventros.chats (tenant_id, channel_id, external_id)
    WHERE deleted_at IS NULL AND external_id IS NOT NULL;
COMMENT ON TABLE ventros.chats IS 'Chat: a conversation container (individual, group or broadcast channel)';

SELECT ventros.register_aggregate('chat', 'ventros.chats', 'crm',
    state_column => 'status',
    transitions => '[
        {"from": null, "to": "active"},
        {"from": "active", "to": "archived", "event": "chat.archived", "description": "A chat was archived."},
        {"from": "archived", "to": "active", "event": "chat.unarchived", "description": "A chat was unarchived."},
        {"from": "active", "to": "closed", "event": "chat.closed", "description": "A chat was closed."},
        {"from": "archived", "to": "closed", "event": "chat.closed"}
    ]',
    description => 'A conversation container');
SELECT ventros.declare_quiet_columns('chat', '{last_message_at}');
SELECT ventros.register_event_type(e, d) FROM (VALUES
    ('chat.participant_added', 'A participant joined a chat.'),
    ('chat.participant_removed', 'A participant left or was removed from a chat.'),
    ('chat.participant_promoted', 'A participant of a group became an admin.'),
    ('chat.participant_demoted', 'A participant of a group stopped being an admin.'),
    ('chat.subject_updated', 'The subject of a chat changed.'),
    ('chat.description_updated', 'The description of a chat changed.'),
    ('chat.label_added', 'A label was put on a chat.'),
    ('chat.label_removed', 'A label was taken off a chat.')) v(e, d);

-- A closed chat is immutable (its status is terminal by the state machine).
CREATE FUNCTION ventros.guard_closed_chat() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF OLD.status = 'closed' AND OLD.deleted_at IS NULL AND NEW.deleted_at IS NULL
       AND (NEW.status, NEW.subject, NEW.description, NEW.metadata, NEW.custom_fields, NEW.external_id)
           IS DISTINCT FROM (OLD.status, OLD.subject, OLD.description, OLD.metadata, OLD.custom_fields, OLD.external_id)
       AND NEW.status = 'closed' THEN
        RAISE EXCEPTION 'chat % is closed', OLD.id USING ERRCODE = 'VN002', DETAIL = 'A closed chat cannot change.';
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION ventros.guard_closed_chat() IS 'Trigger: a closed chat cannot change';
CREATE TRIGGER chats_guard_closed BEFORE UPDATE ON ventros.chats
    FOR EACH ROW EXECUTE FUNCTION ventros.guard_closed_chat();

CREATE TABLE ventros.chat_participants (
    id               uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id        text        NOT NULL,
    version          integer     NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz,
    chat_id          uuid        NOT NULL,
    participant_id   uuid        NOT NULL,
    participant_type text        NOT NULL,
    joined_at        timestamptz NOT NULL DEFAULT now(),
    left_at          timestamptz,
    is_admin         boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, chat_id) REFERENCES ventros.chats (tenant_id, id),
    CONSTRAINT chat_participants_type_known CHECK (participant_type IN ('contact', 'agent')),
    CONSTRAINT chat_participants_left_after_join CHECK (left_at >= joined_at)
);
CREATE UNIQUE INDEX chat_participants_unique ON ventros.chat_participants (tenant_id, chat_id, participant_id)
    WHERE left_at IS NULL AND deleted_at IS NULL;
CREATE INDEX chat_participants_by_participant ON ventros.chat_participants (tenant_id, participant_id)
    WHERE left_at IS NULL AND deleted_at IS NULL;
COMMENT ON TABLE ventros.chat_participants IS 'A contact or agent in a chat';

SELECT ventros.register_aggregate('chat_participant', 'ventros.chat_participants', 'crm',
    description => 'A contact or agent in a chat');

CREATE FUNCTION ventros.lock_chat(chat_id uuid) RETURNS ventros.chats
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.chats;
BEGIN
    SELECT * INTO result FROM ventros.chats c WHERE c.tenant_id = ventros.require_tenant() AND c.id = chat_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'chat % not found', chat_id USING ERRCODE = 'P0002';
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.lock_chat(uuid) IS 'Locks a chat for a command, or P0002';

CREATE FUNCTION ventros.create_chat(chat_type text, channel_id uuid DEFAULT NULL, contact_id uuid DEFAULT NULL,
                                    subject text DEFAULT NULL, created_by uuid DEFAULT NULL,
                                    external_id text DEFAULT NULL, description text DEFAULT NULL,
                                    project_id uuid DEFAULT NULL)
RETURNS ventros.chats
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.chats;
BEGIN
    IF chat_type IS NULL OR chat_type NOT IN ('individual', 'group', 'channel') THEN
        RAISE EXCEPTION 'unknown chat type "%"', left(chat_type, 32) USING ERRCODE = '22023',
            HINT = 'Use individual, group or channel.';
    END IF;
    IF chat_type = 'individual' AND contact_id IS NULL THEN
        RAISE EXCEPTION 'an individual chat needs its contact' USING ERRCODE = '23502';
    END IF;
    IF chat_type = 'individual' AND subject IS NOT NULL THEN
        RAISE EXCEPTION 'an individual chat has no subject' USING ERRCODE = '23514';
    END IF;
    IF chat_type <> 'individual' AND (subject IS NULL OR btrim(subject) = '' OR created_by IS NULL) THEN
        RAISE EXCEPTION 'a % chat needs a subject and a creator', chat_type USING ERRCODE = '23502';
    END IF;
    INSERT INTO ventros.chats (project_id, channel_id, chat_type, external_id, subject, description, created_by)
    VALUES (coalesce(project_id, ventros.default_project()), channel_id, chat_type, external_id,
            ventros.check_length(subject, 255, 'chat subject'), description, created_by)
    RETURNING * INTO result;
    IF contact_id IS NOT NULL THEN
        IF NOT EXISTS (SELECT 1 FROM ventros.contacts c WHERE c.tenant_id = result.tenant_id AND c.id = contact_id) THEN
            RAISE EXCEPTION 'contact % not found', contact_id USING ERRCODE = 'P0002';
        END IF;
        INSERT INTO ventros.chat_participants (chat_id, participant_id, participant_type)
        VALUES (result.id, contact_id, 'contact');
    END IF;
    IF created_by IS NOT NULL THEN
        INSERT INTO ventros.chat_participants (chat_id, participant_id, participant_type, is_admin)
        VALUES (result.id, created_by, 'agent', chat_type = 'group');
    END IF;
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'a chat with external id % already exists on channel %', external_id, channel_id USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.create_chat(text, uuid, uuid, text, uuid, text, text, uuid) IS
    'Creates an individual chat (with its one contact) or a group or channel chat (subject and creator required); emits chat.created and chat_participant.created';

CREATE FUNCTION ventros.add_chat_participant(chat_id uuid, participant_id uuid, participant_type text DEFAULT 'contact',
                                             is_admin boolean DEFAULT false)
RETURNS ventros.chat_participants
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    chat ventros.chats := ventros.lock_chat(chat_id);
    result ventros.chat_participants;
BEGIN
    IF chat.status = 'closed' THEN
        RAISE EXCEPTION 'chat % is closed', chat_id USING ERRCODE = 'VN002';
    END IF;
    IF chat.chat_type = 'individual' AND participant_type = 'contact' THEN
        RAISE EXCEPTION 'an individual chat has exactly one contact' USING ERRCODE = '23514';
    END IF;
    IF is_admin AND chat.chat_type <> 'group' THEN
        RAISE EXCEPTION 'admins exist only in group chats' USING ERRCODE = '23514';
    END IF;
    IF participant_type NOT IN ('contact', 'agent') THEN
        RAISE EXCEPTION 'unknown participant type "%"', left(participant_type, 32) USING ERRCODE = '22023';
    END IF;
    INSERT INTO ventros.chat_participants (chat_id, participant_id, participant_type, is_admin)
    VALUES (chat_id, participant_id, participant_type, coalesce(is_admin, false))
    RETURNING * INTO result;
    PERFORM ventros.emit('chat.participant_added', 'chat', chat_id,
                         jsonb_build_object('participant_id', participant_id, 'participant_type', participant_type,
                                            'is_admin', result.is_admin), chat.version);
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION '% is already a participant of chat %', participant_id, chat_id USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.add_chat_participant(uuid, uuid, text, boolean) IS
    'Adds a participant (no duplicates: 23505; admins in groups only); emits chat_participant.created and chat.participant_added';

CREATE FUNCTION ventros.remove_chat_participant(chat_id uuid, participant_id uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    chat ventros.chats := ventros.lock_chat(chat_id);
    p ventros.chat_participants;
BEGIN
    IF chat.chat_type = 'individual' THEN
        RAISE EXCEPTION 'participants cannot be removed from an individual chat' USING ERRCODE = '23514';
    END IF;
    SELECT * INTO p FROM ventros.chat_participants x
    WHERE x.tenant_id = chat.tenant_id AND x.chat_id = chat.id AND x.participant_id = remove_chat_participant.participant_id
      AND x.left_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% is not a participant of chat %', participant_id, chat_id USING ERRCODE = 'P0002';
    END IF;
    UPDATE ventros.chat_participants x SET left_at = greatest(clock_timestamp(), x.joined_at), version = p.version
    WHERE x.tenant_id = p.tenant_id AND x.id = p.id;
    PERFORM ventros.emit('chat.participant_removed', 'chat', chat_id,
                         jsonb_build_object('participant_id', participant_id, 'participant_type', p.participant_type),
                         chat.version);
END
$$;
COMMENT ON FUNCTION ventros.remove_chat_participant(uuid, uuid) IS
    'Removes a participant of a group or channel chat (never of an individual one: 23514); emits chat_participant.updated and chat.participant_removed';

CREATE FUNCTION ventros.set_chat_participant_admin(chat_id uuid, participant_id uuid, is_admin boolean)
RETURNS ventros.chat_participants
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    chat ventros.chats := ventros.lock_chat(chat_id);
    result ventros.chat_participants;
BEGIN
    IF chat.chat_type <> 'group' THEN
        RAISE EXCEPTION 'admins exist only in group chats' USING ERRCODE = '23514';
    END IF;
    UPDATE ventros.chat_participants x SET is_admin = set_chat_participant_admin.is_admin, version = x.version
    WHERE x.tenant_id = chat.tenant_id AND x.chat_id = chat.id AND x.participant_id = set_chat_participant_admin.participant_id
      AND x.left_at IS NULL
    RETURNING * INTO result;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% is not a participant of chat %', participant_id, chat_id USING ERRCODE = 'P0002';
    END IF;
    PERFORM ventros.emit(CASE WHEN is_admin THEN 'chat.participant_promoted' ELSE 'chat.participant_demoted' END,
                         'chat', chat_id, jsonb_build_object('participant_id', participant_id), chat.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.set_chat_participant_admin(uuid, uuid, boolean) IS
    'Promotes or demotes a participant of a group; emits chat_participant.updated and chat.participant_promoted / .participant_demoted';

CREATE FUNCTION ventros.set_chat_status(chat_id uuid, expected_version integer, status text)
RETURNS ventros.chats
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.apply_changes(NULL::ventros.chats, 'chat', chat_id, expected_version,
                                 jsonb_build_object('status', status), ARRAY['status'])
$$;
COMMENT ON FUNCTION ventros.set_chat_status(uuid, integer, text) IS
    'Archives, unarchives or closes a chat (VN002 when not allowed; closed is terminal); emits chat.archived / .unarchived / .closed';

CREATE FUNCTION ventros.update_chat(chat_id uuid, expected_version integer, subject text DEFAULT NULL,
                                    description text DEFAULT NULL)
RETURNS ventros.chats
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    chat ventros.chats := ventros.lock_chat(chat_id);
    result ventros.chats;
BEGIN
    IF subject IS NOT NULL AND chat.chat_type = 'individual' THEN
        RAISE EXCEPTION 'an individual chat has no subject' USING ERRCODE = '23514';
    END IF;
    IF subject IS NOT NULL AND btrim(subject) = '' THEN
        RAISE EXCEPTION 'chat subject must not be empty' USING ERRCODE = '23514';
    END IF;
    UPDATE ventros.chats c
    SET subject = coalesce(ventros.check_length(update_chat.subject, 255, 'chat subject'), c.subject),
        description = coalesce(update_chat.description, c.description), version = expected_version
    WHERE c.tenant_id = chat.tenant_id AND c.id = chat.id RETURNING * INTO result;
    IF result.subject IS DISTINCT FROM chat.subject THEN
        PERFORM ventros.emit('chat.subject_updated', 'chat', chat_id,
                             jsonb_build_object('subject', result.subject, 'previous', chat.subject), result.version);
    END IF;
    IF result.description IS DISTINCT FROM chat.description THEN
        PERFORM ventros.emit('chat.description_updated', 'chat', chat_id,
                             jsonb_build_object('description', result.description), result.version);
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.update_chat(uuid, integer, text, text) IS
    'Changes the subject and/or description of a chat; emits chat.updated and chat.subject_updated / chat.description_updated';

CREATE FUNCTION ventros.set_chat_label(chat_id uuid, label_id text, present boolean)
RETURNS ventros.chats
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    chat ventros.chats := ventros.lock_chat(chat_id);
    labels jsonb := coalesce(chat.custom_fields->'labels', '[]');
    result ventros.chats;
BEGIN
    IF label_id IS NULL OR btrim(label_id) = '' THEN
        RAISE EXCEPTION 'label id must not be empty' USING ERRCODE = '23502';
    END IF;
    IF present = (labels ? label_id) THEN
        RETURN chat;
    END IF;
    labels := CASE WHEN present THEN labels || to_jsonb(label_id) ELSE labels - label_id END;
    UPDATE ventros.chats c SET custom_fields = jsonb_set(c.custom_fields, '{labels}', labels), version = chat.version
    WHERE c.tenant_id = chat.tenant_id AND c.id = chat.id RETURNING * INTO result;
    PERFORM ventros.emit(CASE WHEN present THEN 'chat.label_added' ELSE 'chat.label_removed' END, 'chat', chat_id,
                         jsonb_build_object('label_id', label_id), result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.set_chat_label(uuid, text, boolean) IS
    'Puts a label on a chat or takes it off (custom_fields.labels); emits chat.updated and chat.label_added / .label_removed';

GRANT EXECUTE ON FUNCTION ventros.lock_chat(uuid), ventros.create_chat(text, uuid, uuid, text, uuid, text, text, uuid),
    ventros.add_chat_participant(uuid, uuid, text, boolean), ventros.remove_chat_participant(uuid, uuid),
    ventros.set_chat_participant_admin(uuid, uuid, boolean), ventros.set_chat_status(uuid, integer, text),
    ventros.update_chat(uuid, integer, text, text), ventros.set_chat_label(uuid, text, boolean) TO ventros_agent;

-- ---- sql/40_messages.sql
-- Aggregate 3, Message (CRM): one inbound or outbound message on a channel.
--
-- Status machine: queued -> sent -> delivered -> read -> played with forward
-- skips, queued | sent -> failed, never backwards; played for audio and voice
-- only.  A BEFORE trigger stamps sent_at / delivered_at / read_at / played_at
-- / failed_at on each move (a skip stamps the skipped steps too).
--
-- Idempotency: (tenant, channel, channel_message_id) is unique on live rows;
-- receive_message() returns the existing message for a repeated provider id.
--
-- Paths that write messages: receive_message (inbound: contact upsert by
-- identity, session continue, message, session, contact and channel
-- counters), send_message (outbound: consent, agent rules, session continue,
-- message queued), import_message (history import, idempotent).  Every path
-- refuses an opted-out contact for outbound messages (VN010).

CREATE TABLE ventros.messages (
    id                 uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id          text        NOT NULL,
    version            integer     NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at         timestamptz,
    "timestamp"        timestamptz NOT NULL DEFAULT now(),
    user_id            uuid,
    project_id         uuid        NOT NULL,
    channel_id         uuid        NOT NULL,
    channel_type_id    integer,
    chat_id            uuid,
    session_id         uuid,
    contact_id         uuid        NOT NULL,
    from_me            boolean     NOT NULL DEFAULT false,
    content_type       text        NOT NULL DEFAULT 'text',
    text               text,
    media_url          text,
    media_mimetype     text,
    channel_message_id text,
    reply_to_id        uuid,
    status             text        NOT NULL DEFAULT 'sent',
    language           text,
    agent_id           uuid,
    source             text        NOT NULL DEFAULT 'manual',
    metadata           jsonb,
    mentions           text[]      NOT NULL DEFAULT '{}',
    sent_at            timestamptz,
    delivered_at       timestamptz,
    read_at            timestamptz,
    played_at          timestamptz,
    failed_at          timestamptz,
    error              text,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id),
    FOREIGN KEY (tenant_id, channel_id) REFERENCES ventros.channels (tenant_id, id) ON DELETE RESTRICT,
    FOREIGN KEY (tenant_id, chat_id) REFERENCES ventros.chats (tenant_id, id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES ventros.sessions (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES ventros.contacts (tenant_id, id),
    FOREIGN KEY (tenant_id, reply_to_id) REFERENCES ventros.messages (tenant_id, id),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES ventros.agents (tenant_id, id),
    CONSTRAINT messages_content_type_known CHECK (content_type IN ('text', 'image', 'video', 'audio', 'voice', 'document',
                                                                   'location', 'contact', 'sticker', 'system')),
    CONSTRAINT messages_status_known CHECK (status IN ('queued', 'sent', 'delivered', 'read', 'played', 'failed')),
    CONSTRAINT messages_source_known CHECK (source IN ('manual', 'broadcast', 'sequence', 'trigger', 'bot', 'system',
                                                       'webhook', 'scheduled', 'test', 'history_import')),
    CONSTRAINT messages_text_size CHECK (length(text) <= 4096),
    CONSTRAINT messages_text_required CHECK (content_type NOT IN ('text', 'system') OR (text IS NOT NULL AND text <> '')),
    CONSTRAINT messages_media_required CHECK (content_type NOT IN ('image', 'video', 'audio', 'voice', 'document', 'sticker')
                                              OR media_url IS NOT NULL),
    CONSTRAINT messages_media_url_valid CHECK (media_url ~ '^https?://[^\s]+$' AND length(media_url) <= 2048),
    CONSTRAINT messages_outbound_agent CHECK (NOT from_me OR agent_id IS NOT NULL),
    CONSTRAINT messages_played_audio CHECK (status <> 'played' OR content_type IN ('audio', 'voice'))
);
CREATE UNIQUE INDEX messages_unique_channel_message_id ON ventros.messages (tenant_id, channel_id, channel_message_id)
    WHERE deleted_at IS NULL AND channel_message_id IS NOT NULL;
CREATE INDEX messages_by_session ON ventros.messages (tenant_id, session_id, "timestamp", id);
CREATE INDEX messages_by_contact ON ventros.messages (tenant_id, contact_id, "timestamp" DESC, id DESC);
CREATE INDEX messages_text_search ON ventros.messages USING gin (to_tsvector('simple'::regconfig, coalesce(text, '')))
    WITH (fastupdate = on);
COMMENT ON TABLE ventros.messages IS 'Message: one inbound or outbound message on a channel';

SELECT ventros.register_aggregate('message', 'ventros.messages', 'crm',
    state_column => 'status',
    transitions => '[
        {"from": null, "to": "queued", "event": "message.created", "description": "A message was created (received, queued to send, or imported)."},
        {"from": null, "to": "sent", "event": "message.created"},
        {"from": null, "to": "delivered", "event": "message.created"},
        {"from": null, "to": "read", "event": "message.created"},
        {"from": "queued", "to": "sent", "event": "message.sent", "description": "The provider accepted an outbound message."},
        {"from": "queued", "to": "delivered", "event": "message.delivered", "description": "A message reached the recipient''s device."},
        {"from": "sent", "to": "delivered", "event": "message.delivered"},
        {"from": "queued", "to": "read", "event": "message.read", "description": "A message was read."},
        {"from": "sent", "to": "read", "event": "message.read"},
        {"from": "delivered", "to": "read", "event": "message.read"},
        {"from": "queued", "to": "played", "event": "message.played", "description": "An audio or voice message was played."},
        {"from": "sent", "to": "played", "event": "message.played"},
        {"from": "delivered", "to": "played", "event": "message.played"},
        {"from": "read", "to": "played", "event": "message.played"},
        {"from": "queued", "to": "failed", "event": "message.failed", "description": "Sending a message failed."},
        {"from": "sent", "to": "failed", "event": "message.failed"}
    ]',
    description => 'One inbound or outbound message on a channel');
SELECT ventros.register_event_type(e, d) FROM (VALUES
    ('message.image_processing_requested', 'AI processing of an inbound image was requested.'),
    ('message.video_processing_requested', 'AI processing of an inbound video was requested.'),
    ('message.audio_processing_requested', 'AI transcription of an inbound audio was requested.'),
    ('message.voice_processing_requested', 'AI transcription of an inbound voice note was requested.')) v(e, d);

-- Channels, contacts and chats: counters and marks kept by every message.
SELECT ventros.declare_quiet_columns('channel', '{messages_received,messages_sent,last_message_at}');
SELECT ventros.declare_quiet_columns('contact', '{first_interaction_at,last_interaction_at}');

CREATE FUNCTION ventros.stamp_message_status() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    at timestamptz := clock_timestamp();
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.status IS NOT DISTINCT FROM OLD.status THEN
        RETURN NEW;
    END IF;
    IF NEW.status IN ('sent', 'delivered', 'read', 'played') AND NEW.from_me THEN
        NEW.sent_at := coalesce(NEW.sent_at, at);
    END IF;
    IF NEW.status IN ('delivered', 'read', 'played') THEN
        NEW.delivered_at := coalesce(NEW.delivered_at, at);
    END IF;
    IF NEW.status IN ('read', 'played') THEN
        NEW.read_at := coalesce(NEW.read_at, at);
    END IF;
    IF NEW.status = 'played' THEN
        NEW.played_at := coalesce(NEW.played_at, at);
    END IF;
    IF NEW.status = 'failed' THEN
        NEW.failed_at := coalesce(NEW.failed_at, at);
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION ventros.stamp_message_status() IS
    'Trigger: stamps the *_at column of each status a message reaches (skipped steps included)';
CREATE TRIGGER messages_stamp_status BEFORE INSERT OR UPDATE OF status ON ventros.messages
    FOR EACH ROW EXECUTE FUNCTION ventros.stamp_message_status();

-- Which identity type a channel kind delivers senders as.
CREATE FUNCTION ventros.sender_identity_type(channel_type text, sender text) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE
        WHEN sender LIKE '%@lid' THEN 'whatsapp_lid'
        WHEN sender LIKE '%@c.us' OR sender LIKE '%@s.whatsapp.net' THEN 'whatsapp'
        WHEN channel_type = 'messenger' THEN 'psid'
        WHEN channel_type = 'instagram' THEN 'igsid'
        WHEN channel_type = 'telegram' THEN 'telegram'
        WHEN sender LIKE '%@%' THEN 'email'
        WHEN sender ~ '^\+?[0-9 ()-]{8,20}$' THEN 'phone'
        ELSE 'external' END
$$;
COMMENT ON FUNCTION ventros.sender_identity_type(text, text) IS
    'The identity type of an inbound sender id on a channel kind (WhatsApp @c.us / @lid, PSID, IGSID, phone, ...)';

-- upsert_contact_by_identity: the contact holding an identity, created with
-- it when there is none.  An advisory lock on the identity serialises two
-- first messages of one new sender, so only one contact is created.
CREATE FUNCTION ventros.upsert_contact_by_identity(identity_type text, sender text, name text DEFAULT NULL,
                                                   project_id uuid DEFAULT NULL, channel_id uuid DEFAULT NULL,
                                                   source_channel text DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    norm_value text := ventros.normalize_identity(identity_type, sender);
    found_id uuid;
    phone_e164 text;
    c ventros.contacts;
BEGIN
    IF norm_value IS NULL THEN
        RAISE EXCEPTION 'unknown identity type "%"', left(identity_type, 32) USING ERRCODE = '22023';
    END IF;
    -- (the lookup of find_contact_by_identity, inline: the hot path of every inbound message)
    SELECT i.contact_id INTO found_id FROM ventros.contact_identities i
    WHERE i.tenant_id = tenant AND i.identity_type = upsert_contact_by_identity.identity_type AND i.value = norm_value
      AND i.deleted_at IS NULL
    ORDER BY i.created_at, i.contact_id LIMIT 1;
    IF found_id IS NOT NULL THEN
        RETURN found_id;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended(tenant || '/' || identity_type || '/' || norm_value, 0));
    found_id := ventros.find_contact_by_identity(identity_type, norm_value);
    IF found_id IS NOT NULL THEN
        RETURN found_id;
    END IF;
    phone_e164 := CASE WHEN identity_type = 'phone' THEN norm_value
                  WHEN identity_type = 'whatsapp' THEN '+' || split_part(norm_value, '@', 1) END;
    -- A contact with that phone but without the identity yet.
    IF phone_e164 IS NOT NULL THEN
        SELECT x.id INTO found_id FROM ventros.contacts x
        WHERE x.tenant_id = tenant AND x.project_id = coalesce(upsert_contact_by_identity.project_id, ventros.default_project())
          AND x.phone = phone_e164 AND x.deleted_at IS NULL;
    END IF;
    IF found_id IS NULL THEN
        c := ventros.create_contact(coalesce(nullif(btrim(name), ''), sender), phone => phone_e164,
                                    email => CASE WHEN identity_type = 'email' THEN norm_value END,
                                    project_id => project_id, source_channel => source_channel);
        found_id := c.id;
    END IF;
    PERFORM ventros.add_contact_identity(found_id, identity_type, norm_value, channel_id);
    RETURN found_id;
END
$$;
COMMENT ON FUNCTION ventros.upsert_contact_by_identity(text, text, text, uuid, uuid, text) IS
    'The contact holding an identity, else one with its phone, else a new contact; race-free per identity (advisory lock); emits contact.created and contact_identity.created for a new sender';

-- count_channel_message: a channel's message counters.  SECURITY DEFINER:
-- agents receive and send messages but may not write counters; it touches
-- the acting tenant's channel only.
--
-- Channel counters are slotted.  Every message of a channel used to update
-- the channel's row, so all messages of one channel queued behind each
-- other's row lock until commit (one busy WhatsApp number = one lane).  A
-- message now adds to one of 16 slot rows of its channel (ventros.stats_slot),
-- so concurrent writers rarely meet; ventros.fold_channel_message_counts()
-- (a scheduled job, every minute) moves the slots into the channel's quiet
-- columns, and ventros.channel_message_counts() reads the exact totals.
CREATE TABLE ventros.channel_message_counts (
    tenant_id         text        NOT NULL DEFAULT ventros.current_tenant(),
    channel_id        uuid        NOT NULL,
    slot              smallint    NOT NULL,
    messages_received bigint      NOT NULL DEFAULT 0,
    messages_sent     bigint      NOT NULL DEFAULT 0,
    last_message_at   timestamptz,
    PRIMARY KEY (tenant_id, channel_id, slot),
    CONSTRAINT channel_message_counts_slot_range CHECK (slot BETWEEN 0 AND 15)
);
COMMENT ON TABLE ventros.channel_message_counts IS
    'Messages counted per channel since the last fold, spread over 16 slots so concurrent writers do not queue on one row';
ALTER TABLE ventros.channel_message_counts ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.channel_message_counts FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_select ON ventros.channel_message_counts FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.channel_message_counts TO ventros_viewer;

CREATE FUNCTION ventros.count_channel_message(channel_id uuid, from_me boolean, at timestamptz)
RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO ventros.channel_message_counts AS c
        (tenant_id, channel_id, slot, messages_received, messages_sent, last_message_at)
    VALUES (ventros.require_tenant(), count_channel_message.channel_id, ventros.stats_slot(),
            (NOT from_me)::integer, from_me::integer, at)
    ON CONFLICT (tenant_id, channel_id, slot) DO UPDATE
    SET messages_received = c.messages_received + EXCLUDED.messages_received,
        messages_sent = c.messages_sent + EXCLUDED.messages_sent,
        last_message_at = greatest(c.last_message_at, EXCLUDED.last_message_at)
$$;
COMMENT ON FUNCTION ventros.count_channel_message(uuid, boolean, timestamptz) IS
    'Counts a message on a channel of the acting tenant, in the channel''s slot rows (see channel_message_counts)';

-- channel_message_counts: a channel's exact totals (folded + not yet folded).
CREATE FUNCTION ventros.channel_message_counts(channel_id uuid,
    OUT messages_received bigint, OUT messages_sent bigint, OUT last_message_at timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ch.messages_received + coalesce(sum(c.messages_received), 0),
           ch.messages_sent + coalesce(sum(c.messages_sent), 0),
           greatest(ch.last_message_at, max(c.last_message_at))
      FROM ventros.channels ch
      LEFT JOIN ventros.channel_message_counts c ON c.tenant_id = ch.tenant_id AND c.channel_id = ch.id
     WHERE ch.tenant_id = ventros.require_tenant() AND ch.id = channel_message_counts.channel_id
     GROUP BY ch.messages_received, ch.messages_sent, ch.last_message_at
$$;
COMMENT ON FUNCTION ventros.channel_message_counts(uuid) IS
    'A channel''s exact message totals and last message time: its columns plus the slots not folded yet';

-- fold_channel_message_counts: moves the slots into the channels' quiet
-- columns (no version, no event).  The acting tenant's channels, or every
-- tenant's for a platform administrator without a tenant (the scheduled job).
CREATE FUNCTION ventros.fold_channel_message_counts()
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.current_tenant();
    folded integer;
BEGIN
    IF tenant IS NULL THEN
        PERFORM ventros.require_platform_admin();
    END IF;
    WITH gone AS (
        DELETE FROM ventros.channel_message_counts c
         WHERE tenant IS NULL OR c.tenant_id = tenant
        RETURNING c.*),
    totals AS (
        SELECT g.tenant_id, g.channel_id, sum(g.messages_received) AS received, sum(g.messages_sent) AS sent,
               max(g.last_message_at) AS last_at
          FROM gone g GROUP BY 1, 2),
    applied AS (
        UPDATE ventros.channels ch
           SET messages_received = ch.messages_received + t.received,
               messages_sent = ch.messages_sent + t.sent,
               last_message_at = greatest(ch.last_message_at, t.last_at),
               version = ch.version
          FROM totals t
         WHERE ch.tenant_id = t.tenant_id AND ch.id = t.channel_id
        RETURNING 1)
    SELECT count(*)::integer INTO folded FROM applied;
    RETURN folded;
END
$$;
COMMENT ON FUNCTION ventros.fold_channel_message_counts() IS
    'Adds the counted slots to their channels'' messages_received, messages_sent and last_message_at (quiet); returns the channels updated';

-- record_message_effects: what every new message does to its session (given,
-- locked), contact, channel and chat.
CREATE FUNCTION ventros.record_message_effects(m ventros.messages, s ventros.sessions)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF s.id IS NOT NULL THEN
        PERFORM ventros.record_session_message(s, m.from_me, m."timestamp", m.id);
    END IF;
    -- Interaction times are kept to the minute: a burst of messages writes
    -- the contact once (the session and the message hold the exact times).
    UPDATE ventros.contacts c
    SET first_interaction_at = coalesce(c.first_interaction_at, m."timestamp"),
        last_interaction_at = greatest(c.last_interaction_at, m."timestamp"), version = c.version
    WHERE c.tenant_id = m.tenant_id AND c.id = m.contact_id
      AND (c.last_interaction_at IS NULL OR c.last_interaction_at < m."timestamp" - interval '1 minute'
           OR c.first_interaction_at > m."timestamp");
    PERFORM ventros.count_channel_message(m.channel_id, m.from_me, m."timestamp");
    IF m.chat_id IS NOT NULL THEN
        UPDATE ventros.chats c SET last_message_at = greatest(c.last_message_at, m."timestamp"), version = c.version
        WHERE c.tenant_id = m.tenant_id AND c.id = m.chat_id;
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.record_message_effects(ventros.messages, ventros.sessions) IS
    'Records a new message on its session, contact (interaction times), channel (counters) and chat (internal)';

-- receive_message: the inbound pipeline, in one transaction.
CREATE FUNCTION ventros.receive_message(
    channel_id         uuid,
    sender             text,
    text               text        DEFAULT NULL,
    content_type       text        DEFAULT 'text',
    channel_message_id text        DEFAULT NULL,
    sent_at            timestamptz DEFAULT NULL,
    sender_name        text        DEFAULT NULL,
    media_url          text        DEFAULT NULL,
    media_mimetype     text        DEFAULT NULL,
    metadata           jsonb       DEFAULT NULL,
    chat_id            uuid        DEFAULT NULL)
RETURNS ventros.messages
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    tenant text := ventros.require_tenant();
    ch ventros.channels;
    contact uuid;
    s ventros.sessions;
    result ventros.messages;
    at timestamptz := coalesce(sent_at, now());
BEGIN
    IF sender IS NULL OR btrim(sender) = '' THEN
        RAISE EXCEPTION 'sender of an inbound message must not be empty' USING ERRCODE = '23502';
    END IF;
    SELECT * INTO ch FROM ventros.channels c WHERE c.tenant_id = tenant AND c.id = receive_message.channel_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'channel % not found', channel_id USING ERRCODE = 'P0002';
    END IF;
    IF channel_message_id IS NOT NULL THEN
        SELECT * INTO result FROM ventros.messages m
        WHERE m.tenant_id = tenant AND m.channel_id = ch.id AND m.channel_message_id = receive_message.channel_message_id
          AND m.deleted_at IS NULL;
        IF FOUND THEN
            RETURN result;      -- a repeated webhook: nothing happens
        END IF;
    END IF;
    contact := ventros.upsert_contact_by_identity(ventros.sender_identity_type(ch.type, sender), sender, sender_name,
                                                  ch.project_id, ch.id, ch.type);
    s := ventros.start_or_continue_session(contact, ch.id, at);
    INSERT INTO ventros.messages ("timestamp", project_id, channel_id, channel_type_id, chat_id, session_id, contact_id,
                                  from_me, content_type, text, media_url, media_mimetype, channel_message_id, status,
                                  source, metadata)
    VALUES (at, ch.project_id, ch.id, s.channel_type_id, chat_id, s.id, contact, false, coalesce(content_type, 'text'),
            ventros.check_length(text, 4096, 'message text'), media_url, media_mimetype, channel_message_id, 'delivered',
            'manual', metadata)
    ON CONFLICT (tenant_id, channel_id, channel_message_id) WHERE deleted_at IS NULL AND channel_message_id IS NOT NULL
    DO NOTHING
    RETURNING * INTO result;
    IF result.id IS NULL THEN
        -- The same provider message was stored by a concurrent transaction.
        SELECT * INTO result FROM ventros.messages m
        WHERE m.tenant_id = tenant AND m.channel_id = ch.id AND m.channel_message_id = receive_message.channel_message_id
          AND m.deleted_at IS NULL;
        RETURN result;
    END IF;
    PERFORM ventros.record_message_effects(result, s);
    IF ch.ai_enabled AND result.content_type IN ('image', 'video', 'audio', 'voice')
       AND coalesce((ch.config->'ai'->>result.content_type)::boolean, false) THEN
        PERFORM ventros.emit('message.' || result.content_type || '_processing_requested', 'message', result.id,
                             jsonb_build_object('session_id', s.id, 'media_url', result.media_url,
                                                'media_mimetype', result.media_mimetype), result.version);
    END IF;
    RETURN result;
EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION 'invalid inbound message: %', SQLERRM USING ERRCODE = '23514';
END
$$;
COMMENT ON FUNCTION ventros.receive_message(uuid, text, text, text, text, timestamptz, text, text, text, jsonb, uuid) IS
    'Inbound message: contact by sender identity (created if new), session started or continued, message stored (idempotent on channel_message_id), counters kept; emits message.created, session.message_recorded (and contact.created, session.started, message.*_processing_requested when they apply)';

-- send_message: an outbound message, queued for the channel's sender.
CREATE FUNCTION ventros.send_message(
    channel_id   uuid,
    contact_id   uuid,
    text         text    DEFAULT NULL,
    agent_id     uuid    DEFAULT NULL,
    source       text    DEFAULT 'manual',
    content_type text    DEFAULT 'text',
    media_url    text    DEFAULT NULL,
    media_mimetype text  DEFAULT NULL,
    reply_to_id  uuid    DEFAULT NULL,
    chat_id      uuid    DEFAULT NULL,
    metadata     jsonb   DEFAULT NULL,
    template_name       text  DEFAULT NULL,
    template_language   text  DEFAULT NULL,
    template_components jsonb DEFAULT NULL)
RETURNS ventros.messages
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    ch ventros.channels;
    sender ventros.agents;
    s ventros.sessions;
    result ventros.messages;
    tpl jsonb;
BEGIN
    IF source IS NULL OR source NOT IN ('manual', 'broadcast', 'sequence', 'trigger', 'bot', 'system', 'webhook',
                                        'scheduled', 'test') THEN
        RAISE EXCEPTION 'unknown message source "%"', left(source, 32) USING ERRCODE = '22023';
    END IF;
    SELECT * INTO ch FROM ventros.channels c WHERE c.tenant_id = tenant AND c.id = send_message.channel_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'channel % not found', channel_id USING ERRCODE = 'P0002';
    END IF;
    -- The contact row is share-locked: a concurrent opt-out waits for this send, or this send sees it.
    PERFORM 1 FROM ventros.contacts c WHERE c.tenant_id = tenant AND c.id = send_message.contact_id FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'contact % not found', contact_id USING ERRCODE = 'P0002';
    END IF;
    PERFORM ventros.require_consent(contact_id, channel_id);
    agent_id := coalesce(agent_id, CASE WHEN source NOT IN ('manual', 'bot') THEN ventros.system_agent_id(source) END);
    IF agent_id IS NULL THEN
        RAISE EXCEPTION 'an outbound message needs its sending agent' USING ERRCODE = '23502',
            HINT = 'Pass agent_id, or a source such as broadcast whose system agent sends.';
    END IF;
    SELECT * INTO sender FROM ventros.agents a WHERE a.tenant_id = tenant AND a.id = send_message.agent_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'agent % not found', agent_id USING ERRCODE = 'P0002';
    END IF;
    IF sender.type = 'virtual' OR NOT sender.active THEN
        RAISE EXCEPTION 'agent % cannot send messages', agent_id USING ERRCODE = '22023',
            DETAIL = 'Virtual and inactive agents never send.';
    END IF;
    IF template_name IS NOT NULL THEN
        -- A WhatsApp template (sql/91_whatsapp_templates.sql): validated now,
        -- kept in metadata.template, its body text as the message text.
        IF ch.type NOT IN ('whatsapp', 'whatsapp_business') THEN
            RAISE EXCEPTION 'templates are sent on WhatsApp Cloud channels only' USING ERRCODE = '22023';
        END IF;
        tpl := ventros.prepare_template_message(ch.id, template_name, template_language, template_components);
        content_type := 'text';
        text := coalesce(text, tpl->>'text');
        metadata := coalesce(metadata, '{}') || jsonb_build_object('template', tpl->'template');
    END IF;
    s := ventros.start_or_continue_session(contact_id, channel_id, now());
    INSERT INTO ventros.messages ("timestamp", project_id, channel_id, channel_type_id, chat_id, session_id, contact_id,
                                  from_me, content_type, text, media_url, media_mimetype, reply_to_id, status, agent_id,
                                  source, metadata)
    VALUES (now(), ch.project_id, ch.id, s.channel_type_id, chat_id, s.id, contact_id, true, coalesce(content_type, 'text'),
            ventros.check_length(text, 4096, 'message text'), media_url, media_mimetype, reply_to_id, 'queued',
            sender.id, source, metadata)
    RETURNING * INTO result;
    PERFORM ventros.record_message_effects(result, s);
    -- The provider request, in this transaction (sql/90_channel_send.sql).
    PERFORM ventros.queue_message_send(result.id);
    RETURN result;
EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION 'invalid outbound message: %', SQLERRM USING ERRCODE = '23514';
END
$$;
COMMENT ON FUNCTION ventros.send_message(uuid, uuid, text, uuid, text, text, text, text, uuid, uuid, jsonb, text, text, jsonb) IS
    'Outbound message, queued for the channel with its provider request (message.send, when the channel type is declared and configured): refuses opted-out contacts (VN010), virtual or inactive agents (22023), free-form WhatsApp Cloud messages outside the 24-hour window (22023) and templates that do not match their definition (22023, P0002); automated sources send as their system agent; emits message.created and session.message_recorded';

-- confirm_message_status: a provider acknowledgement (by message id, or by
-- channel and provider id).  Repeats and late acks of an earlier status are
-- no-ops; backwards moves other than those are VN002 by the state machine.
CREATE FUNCTION ventros.confirm_message_status(status text, message_id uuid DEFAULT NULL, channel_id uuid DEFAULT NULL,
                                               channel_message_id text DEFAULT NULL, error text DEFAULT NULL)
RETURNS ventros.messages
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    m ventros.messages;
    result ventros.messages;
    rank CONSTANT text[] := ARRAY['queued', 'sent', 'delivered', 'read', 'played'];
BEGIN
    IF status IS NULL OR status NOT IN ('sent', 'delivered', 'read', 'played', 'failed') THEN
        RAISE EXCEPTION 'unknown confirmation status "%"', left(status, 32) USING ERRCODE = '22023',
            HINT = 'Use sent, delivered, read, played or failed.';
    END IF;
    IF message_id IS NOT NULL THEN
        SELECT * INTO m FROM ventros.messages x WHERE x.tenant_id = tenant AND x.id = message_id FOR UPDATE;
    ELSIF channel_id IS NOT NULL AND channel_message_id IS NOT NULL THEN
        SELECT * INTO m FROM ventros.messages x
        WHERE x.tenant_id = tenant AND x.channel_id = confirm_message_status.channel_id
          AND x.channel_message_id = confirm_message_status.channel_message_id AND x.deleted_at IS NULL FOR UPDATE;
    ELSE
        RAISE EXCEPTION 'confirm a message by its id or by channel and provider id' USING ERRCODE = '22023';
    END IF;
    IF m.id IS NULL THEN
        RAISE EXCEPTION 'message % not found', coalesce(message_id::text, channel_message_id) USING ERRCODE = 'P0002';
    END IF;
    IF m.status = status OR (status <> 'failed' AND m.status <> 'failed'
                             AND array_position(rank, status) < array_position(rank, m.status)) THEN
        RETURN m;   -- a repeated or late acknowledgement
    END IF;
    UPDATE ventros.messages x
    SET status = confirm_message_status.status,
        error = CASE WHEN confirm_message_status.status = 'failed' THEN confirm_message_status.error ELSE x.error END,
        version = m.version
    WHERE x.tenant_id = m.tenant_id AND x.id = m.id
    RETURNING * INTO result;
    RETURN result;
EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION 'message % cannot be %', m.id, status USING ERRCODE = '23514',
        DETAIL = 'Only audio and voice messages are played.';
END
$$;
COMMENT ON FUNCTION ventros.confirm_message_status(text, uuid, uuid, text, text) IS
    'Provider confirmation of a message (sent, delivered, read, played, failed), by id or by (channel, provider id); late or repeated acks change nothing, a failed message stays failed (VN002); emits message.sent / .delivered / .read / .played / .failed';

-- mark_message_sent: the channel's sender reports the provider's id.
CREATE FUNCTION ventros.mark_message_sent(message_id uuid, channel_message_id text)
RETURNS ventros.messages
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m ventros.messages;
BEGIN
    SELECT * INTO m FROM ventros.messages x WHERE x.tenant_id = ventros.require_tenant() AND x.id = message_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'message % not found', message_id USING ERRCODE = 'P0002';
    END IF;
    UPDATE ventros.messages x SET status = 'sent', channel_message_id = mark_message_sent.channel_message_id, version = m.version
    WHERE x.tenant_id = m.tenant_id AND x.id = m.id RETURNING * INTO m;
    RETURN m;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'provider message id % is already used on this channel', channel_message_id USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.mark_message_sent(uuid, text) IS
    'Marks a queued message sent with the provider''s message id (VN002 unless queued); emits message.sent';

-- import_message: history import, idempotent on the provider id; no consent
-- check (nothing is sent), sessions are continued in time order.
CREATE FUNCTION ventros.import_message(channel_id uuid, contact_id uuid, from_me boolean, "timestamp" timestamptz,
                                       channel_message_id text, text text DEFAULT NULL, content_type text DEFAULT 'text',
                                       media_url text DEFAULT NULL, agent_id uuid DEFAULT NULL)
RETURNS ventros.messages
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    tenant text := ventros.require_tenant();
    ch ventros.channels;
    s ventros.sessions;
    result ventros.messages;
BEGIN
    IF channel_message_id IS NULL OR "timestamp" IS NULL OR from_me IS NULL THEN
        RAISE EXCEPTION 'an imported message needs from_me, timestamp and its provider id' USING ERRCODE = '23502';
    END IF;
    SELECT * INTO ch FROM ventros.channels c WHERE c.tenant_id = tenant AND c.id = import_message.channel_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'channel % not found', channel_id USING ERRCODE = 'P0002';
    END IF;
    SELECT * INTO result FROM ventros.messages m
    WHERE m.tenant_id = tenant AND m.channel_id = ch.id AND m.channel_message_id = import_message.channel_message_id AND m.deleted_at IS NULL;
    IF FOUND THEN
        RETURN result;
    END IF;
    s := ventros.start_or_continue_session(contact_id, ch.id, "timestamp");
    INSERT INTO ventros.messages ("timestamp", project_id, channel_id, channel_type_id, session_id, contact_id, from_me,
                                  content_type, text, media_url, channel_message_id, status, agent_id, source)
    VALUES ("timestamp", ch.project_id, ch.id, s.channel_type_id, s.id, contact_id, from_me, content_type,
            ventros.check_length(text, 4096, 'message text'), media_url, channel_message_id, 'delivered',
            CASE WHEN from_me THEN coalesce(agent_id, ch.default_agent_id, ventros.system_agent_id('default')) END,
            'history_import')
    ON CONFLICT (tenant_id, channel_id, channel_message_id) WHERE deleted_at IS NULL AND channel_message_id IS NOT NULL
    DO NOTHING
    RETURNING * INTO result;
    IF result.id IS NOT NULL THEN
        PERFORM ventros.record_message_effects(result, s);
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.import_message(uuid, uuid, boolean, timestamptz, text, text, text, text, uuid) IS
    'Imports one historical message (idempotent on channel_message_id; outbound ones sent by the channel''s default agent or the default system agent); emits message.created';

CREATE FUNCTION ventros.delete_message(message_id uuid, expected_version integer DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.delete_row('ventros.messages', 'message', message_id, expected_version) $$;
COMMENT ON FUNCTION ventros.delete_message(uuid, integer) IS 'Soft-deletes a message; emits message.deleted';

CREATE FUNCTION ventros.get_message(message_id uuid) RETURNS ventros.messages
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.get_row(NULL::ventros.messages, 'message', message_id) $$;
COMMENT ON FUNCTION ventros.get_message(uuid) IS 'A live message of the acting tenant, or P0002';

GRANT EXECUTE ON FUNCTION ventros.sender_identity_type(text, text), ventros.get_message(uuid) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.count_channel_message(uuid, boolean, timestamptz),
    ventros.upsert_contact_by_identity(text, text, text, uuid, uuid, text),
    ventros.record_message_effects(ventros.messages, ventros.sessions),
    ventros.receive_message(uuid, text, text, text, text, timestamptz, text, text, text, jsonb, uuid),
    ventros.send_message(uuid, uuid, text, uuid, text, text, text, text, uuid, uuid, jsonb, text, text, jsonb),
    ventros.confirm_message_status(text, uuid, uuid, text, text), ventros.mark_message_sent(uuid, text),
    ventros.import_message(uuid, uuid, boolean, timestamptz, text, text, text, text, uuid) TO ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.delete_message(uuid, integer) TO ventros_admin;
GRANT EXECUTE ON FUNCTION ventros.channel_message_counts(uuid) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.fold_channel_message_counts() TO ventros_agent, ventros_platform_admin;

-- ---- sql/40_outbox_publisher.sql
-- The outbox publisher's side of ventros.outbox (the C worker is
-- src/outbox_worker.c): claiming, recording outcomes, dead letters and their
-- replay, pruning, and the status view.
--
-- Row states: pending -> published, or pending -> dead after
-- ventros.outbox_max_attempts failed attempts; replay puts dead rows back to
-- pending.  Progress is this per-row state, never a "last published seq": seq
-- is assigned before commit, so a slow transaction commits a lower seq after
-- a higher one was published.
--
-- Pending and dead rows are found through ventros.outbox_queue
-- (sql/03_outbox.sql), which holds a row per event not yet published; the
-- functions here keep it in step with ventros.outbox.status.  The claim
-- writes nothing.  An event is written once when it is published
-- (outbox_published: its queue row deleted, its outbox row updated HOT), and
-- once per failed attempt (outbox_failed, which counts it).  What keeps two publishers from publishing a row at once is
-- the publisher lock: a session-level advisory lock that the claim takes and
-- the publisher holds for as long as it runs, so there is one publisher per
-- database at a time and a second one claims nothing.  It is released when
-- the publisher's session ends, however it ends.  The rows a publisher has
-- in flight (published, not yet recorded) it keeps in memory and passes to
-- each claim, which skips their aggregates.
--
-- Order per aggregate: a row is claimable only when no earlier row of its
-- aggregate is dead, waiting for its retry time, or in flight.  An earlier row
-- that is itself claimable sorts first (ORDER BY seq), so it is in the same
-- batch, ahead.  Rows of one aggregate commit in seq order (sql/03_outbox.sql),
-- so a claim that sees a row sees every earlier row of its aggregate.
-- The order check runs per row only when some row may block (the first
-- NOT EXISTS, evaluated once per claim, in the same snapshot): usually none.

CREATE FUNCTION ventros.outbox_claim(batch_size integer, in_flight uuid[] DEFAULT '{}')
RETURNS TABLE (tenant_id text, seq bigint, event_id uuid, event_type text,
               aggregate_type text, aggregate_id uuid, aggregate_version integer,
               payload jsonb, actor text, occurred_at timestamptz, attempts integer,
               outbox_row tid, queue_row tid)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
-- The queue swings between empty and a large backlog faster than its
-- statistics follow; a plan made while it looked empty (seq scan, sort of
-- every pending row, a scan of the whole outbox per queue row) makes each
-- claim read the whole backlog.  Walk the queue's primary key in seq order
-- and fetch each event by its key, always (the LATERAL subquery with
-- OFFSET 0 is planned on its own, for one key at a time; the key is the
-- whole (tenant_id, aggregate_id, seq), so that either index of the outbox
-- finds the row in one descent: with seq alone after tenant_id,
-- outbox_aggregate would be read across the whole tenant).
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET enable_sort = off
AS $$
#variable_conflict use_column
BEGIN
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION 'outbox_claim: batch_size must be positive'
            USING ERRCODE = '22023';
    END IF;
    -- the publisher lock, for the rest of this session; held by another
    -- session: nothing to claim
    IF NOT ventros.outbox_publisher_lock() THEN
        RETURN;
    END IF;
    -- Few aggregates in flight (a publisher keeping up, the usual case): a
    -- cached plan, each candidate compared with each of them.  Many (a
    -- backlog in full flow): a plan for the values at hand, where in_flight
    -- is a hashed set; planning it costs less than the comparisons.
    IF pg_catalog.cardinality(in_flight) > 64 THEN
        RETURN QUERY EXECUTE $q$
        SELECT o.tenant_id, o.seq, o.event_id, o.event_type, o.aggregate_type, o.aggregate_id,
               o.aggregate_version, o.payload, o.actor, o.occurred_at, o.attempts, o.outbox_row, q.ctid
          FROM ventros.outbox_queue q
          CROSS JOIN LATERAL (SELECT o.ctid AS outbox_row, o.* FROM ventros.outbox o
                               WHERE o.tenant_id = q.tenant_id AND o.aggregate_id = q.aggregate_id AND o.seq = q.seq OFFSET 0) o
         WHERE NOT q.dead
           AND (q.next_attempt_at IS NULL OR q.next_attempt_at <= pg_catalog.now())
           AND q.aggregate_id <> ALL ($2)
           AND (NOT EXISTS (SELECT FROM ventros.outbox_queue x WHERE x.dead OR x.next_attempt_at IS NOT NULL)
                OR NOT EXISTS (SELECT FROM ventros.outbox_queue b
                                WHERE b.tenant_id = q.tenant_id AND b.aggregate_id = q.aggregate_id
                                  AND b.seq < q.seq
                                  AND (b.dead OR b.next_attempt_at IS NOT NULL)
                                  AND (b.dead OR b.next_attempt_at > pg_catalog.now())))
         ORDER BY q.seq
         LIMIT $1 $q$ USING batch_size, in_flight;
        RETURN;
    END IF;
    RETURN QUERY
    SELECT o.tenant_id, o.seq, o.event_id, o.event_type, o.aggregate_type, o.aggregate_id,
           o.aggregate_version, o.payload, o.actor, o.occurred_at, o.attempts, o.outbox_row, q.ctid
      FROM ventros.outbox_queue q
      CROSS JOIN LATERAL (SELECT o.ctid AS outbox_row, o.* FROM ventros.outbox o
                           WHERE o.tenant_id = q.tenant_id AND o.aggregate_id = q.aggregate_id AND o.seq = q.seq OFFSET 0) o
     WHERE NOT q.dead
       AND (q.next_attempt_at IS NULL OR q.next_attempt_at <= pg_catalog.now())
       AND q.aggregate_id <> ALL (COALESCE(in_flight, '{}'))
       AND (NOT EXISTS (SELECT FROM ventros.outbox_queue x WHERE x.dead OR x.next_attempt_at IS NOT NULL)
            OR NOT EXISTS (SELECT FROM ventros.outbox_queue b
                            WHERE b.tenant_id = q.tenant_id AND b.aggregate_id = q.aggregate_id
                              AND b.seq < q.seq
                              AND (b.dead OR b.next_attempt_at IS NOT NULL)
                              AND (b.dead OR b.next_attempt_at > pg_catalog.now())))
     ORDER BY q.seq
     LIMIT batch_size;
END
$$;
COMMENT ON FUNCTION ventros.outbox_claim(integer, uuid[]) IS
    'Takes the publisher lock and returns up to batch_size publishable events in seq order, skipping aggregates with an earlier event dead, waiting to retry, or in flight (in_flight: their aggregate ids), with the row addresses of each event in ventros.outbox and ventros.outbox_queue (for ventros.outbox_published); writes nothing (publisher use)';

CREATE FUNCTION ventros.outbox_publisher_lock() RETURNS boolean
LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'ventros_outbox_publisher_lock';
COMMENT ON FUNCTION ventros.outbox_publisher_lock() IS
    'Takes the publisher lock of this database for the rest of the session, without waiting (the session-level advisory lock 1986948706, 1886741100); whether this session holds it (publisher use)';

CREATE FUNCTION ventros.outbox_release_publisher() RETURNS boolean
LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'ventros_outbox_release_publisher';
COMMENT ON FUNCTION ventros.outbox_release_publisher() IS
    'Releases the publisher lock this session holds (taken by ventros.outbox_claim); false when it held none';

-- Recording deletes the events' queue rows (found by seq, unique: one
-- sequence for all tenants) and updates their outbox rows one by one
-- through the primary key: a join, planned while the tables looked empty,
-- could scan the whole outbox for every row.  The outbox updates are HOT
-- (no index covers the columns they change).  The publisher uses the
-- faster variant below; this one is its fallback (and the tests').
-- An event whose queue row is gone marked published in the outbox, through
-- its primary key (both ways of recording below come here by key).
CREATE FUNCTION ventros.outbox_mark_published(tenant text, aggregate uuid, event_seq bigint)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE ventros.outbox o
       SET status = 'published', published_at = pg_catalog.now(), next_attempt_at = NULL
     WHERE o.tenant_id = tenant AND o.aggregate_id = aggregate AND o.seq = event_seq AND o.status = 'pending'
$$;
COMMENT ON FUNCTION ventros.outbox_mark_published(text, uuid, bigint) IS
    'Marks one pending event published by its key (tenant, aggregate, seq); its queue row is already deleted (publisher use)';

CREATE FUNCTION ventros.outbox_published(seqs bigint[])
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
DECLARE
    r record;
    n integer := 0;
BEGIN
    FOR r IN DELETE FROM ventros.outbox_queue q
              WHERE q.seq = ANY (seqs) AND NOT q.dead
             RETURNING q.tenant_id, q.aggregate_id, q.seq LOOP
        PERFORM ventros.outbox_mark_published(r.tenant_id, r.aggregate_id, r.seq);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.outbox_published(bigint[]) IS
    'Marks events published after the broker confirmed them: their queue rows go (publisher use)';

-- The publisher's way: the same, finding the rows by the addresses its claim
-- returned (outbox_row, queue_row), without an index probe.  A row updated
-- since its claim (its address is then that of a dead version: no match) is
-- found by its key instead.
CREATE FUNCTION ventros.outbox_published(seqs bigint[], outbox_rows tid[], queue_rows tid[])
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
-- row addresses only: whatever the statistics say, a TID scan per row
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_indexscan = off
SET enable_indexonlyscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
DECLARE
    ndone integer;
    gone_tenants text[];
    gone_aggregates uuid[];
    gone_seqs bigint[];
BEGIN
    WITH gone AS (
        DELETE FROM ventros.outbox_queue q
         USING unnest(seqs, outbox_rows, queue_rows) AS u(seq, outbox_row, queue_row)
         WHERE q.ctid = u.queue_row AND q.seq = u.seq AND NOT q.dead
        RETURNING q.tenant_id, q.aggregate_id, q.seq, u.outbox_row),
    done AS (
        UPDATE ventros.outbox o
           SET status = 'published', published_at = pg_catalog.now(), next_attempt_at = NULL
          FROM gone g
         WHERE o.ctid = g.outbox_row AND o.tenant_id = g.tenant_id AND o.seq = g.seq
        RETURNING 1)
    SELECT (SELECT pg_catalog.count(*)::integer FROM done),
           (SELECT pg_catalog.array_agg(g.tenant_id) FROM gone g),
           (SELECT pg_catalog.array_agg(g.aggregate_id) FROM gone g),
           (SELECT pg_catalog.array_agg(g.seq) FROM gone g)
      INTO ndone, gone_tenants, gone_aggregates, gone_seqs;
    IF ndone < COALESCE(pg_catalog.cardinality(gone_seqs), 0) THEN
        -- queue rows gone whose outbox rows moved: by the primary key
        PERFORM ventros.outbox_mark_published(g.tenant_id, g.aggregate_id, g.seq)
           FROM unnest(gone_tenants, gone_aggregates, gone_seqs) AS g(tenant_id, aggregate_id, seq);
    END IF;
    IF COALESCE(pg_catalog.cardinality(gone_seqs), 0) < pg_catalog.cardinality(seqs) THEN
        -- queue rows that moved (or are not pending any more): by seq
        RETURN COALESCE(pg_catalog.cardinality(gone_seqs), 0) + ventros.outbox_published(seqs);
    END IF;
    RETURN COALESCE(pg_catalog.cardinality(gone_seqs), 0);
END
$$;
COMMENT ON FUNCTION ventros.outbox_published(bigint[], tid[], tid[]) IS
    'Marks events published after the broker confirmed them, found by the row addresses ventros.outbox_claim returned (by seq when they moved) (publisher use)';

CREATE FUNCTION ventros.outbox_failed(seqs bigint[], errors text[],
                                      max_attempts integer, backoff_min_ms integer,
                                      backoff_max_ms integer)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
-- Counts the attempt; retry after backoff_min * 2^(attempts-1), capped,
-- with jitter in [50%, 100%]; dead at max_attempts.  Returns the number of
-- rows dead-lettered.  The queue row gets the same retry time and state (it
-- is what the claim reads).  Row by row through the primary keys, as
-- outbox_published: failures are few, and no plan can go wrong.
DECLARE
    r record;
    st text;
    retry timestamptz;
    ndead integer := 0;
BEGIN
    FOR r IN SELECT u.seq, u.error, q.tenant_id, q.aggregate_id
               FROM unnest(seqs, errors) AS u(seq, error)
              CROSS JOIN LATERAL (SELECT q.tenant_id, q.aggregate_id FROM ventros.outbox_queue q
                                   WHERE q.seq = u.seq AND NOT q.dead OFFSET 0) q LOOP
        UPDATE ventros.outbox o
           SET attempts = o.attempts + 1,
               status = CASE WHEN o.attempts + 1 >= max_attempts THEN 'dead' ELSE 'pending' END,
               last_error = r.error,
               next_attempt_at = pg_catalog.now() + pg_catalog.make_interval(secs =>
                   LEAST(backoff_max_ms::float8,
                         backoff_min_ms * pg_catalog.power(2::float8, LEAST(o.attempts, 30)))
                   * (0.5 + pg_catalog.random() / 2) / 1000.0)
         WHERE o.tenant_id = r.tenant_id AND o.aggregate_id = r.aggregate_id AND o.seq = r.seq
           AND o.status = 'pending'
        RETURNING o.status, o.next_attempt_at INTO st, retry;
        CONTINUE WHEN NOT FOUND;
        UPDATE ventros.outbox_queue q
           SET dead = st = 'dead', next_attempt_at = retry
         WHERE q.seq = r.seq;
        IF st = 'dead' THEN
            ndead := ndead + 1;
        END IF;
    END LOOP;
    RETURN ndead;
END
$$;
COMMENT ON FUNCTION ventros.outbox_failed(bigint[], text[], integer, integer, integer) IS
    'Records a failed publish attempt per event: counts it, then retry after an exponential backoff with jitter, or dead letter at max_attempts (publisher use)';

-- The batches a publisher has sent and not yet recorded, one row per batch
-- (not per event: one insert when claimed, one delete when recorded, in the
-- same transactions as the claim and the record).  A publisher that dies
-- without recording (a crash; SIGTERM drains and records) leaves its rows;
-- the next one counts a failed attempt for their events before it claims,
-- so an event that keeps killing the publisher is dead-lettered after
-- ventros.outbox_max_attempts instead of retried without end.
CREATE TABLE ventros.outbox_in_flight (
    id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seqs bigint[] NOT NULL
);
COMMENT ON TABLE ventros.outbox_in_flight IS
    'Batches the outbox publisher has sent but not recorded yet (seqs); left over only by a publisher that crashed';
ALTER TABLE ventros.outbox_in_flight ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.outbox_in_flight FORCE ROW LEVEL SECURITY;
-- the publisher runs as a superuser; nobody else reads or writes it
REVOKE ALL ON ventros.outbox_in_flight FROM PUBLIC;

CREATE FUNCTION ventros.outbox_recover_in_flight(max_attempts integer, backoff_min_ms integer, backoff_max_ms integer)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    left_behind bigint[];
BEGIN
    -- One failed attempt for every event of the batches a dead publisher
    -- left (outbox_failed touches only the ones still pending).
    WITH gone AS (DELETE FROM ventros.outbox_in_flight f RETURNING f.seqs)
    SELECT array_agg(DISTINCT s.seq) INTO left_behind FROM gone g, unnest(g.seqs) AS s(seq);
    IF left_behind IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM ventros.outbox_failed(left_behind,
                                  array_fill('the publisher stopped before these events were confirmed (a crash)'::text,
                                             ARRAY[cardinality(left_behind)]),
                                  max_attempts, backoff_min_ms, backoff_max_ms);
    RETURN cardinality(left_behind);
END
$$;
COMMENT ON FUNCTION ventros.outbox_recover_in_flight(integer, integer, integer) IS
    'Publisher start: counts a failed attempt (dead letter at max_attempts) for the pending events of batches a crashed publisher left in ventros.outbox_in_flight; returns how many';

CREATE FUNCTION ventros.outbox_prune(retention interval, max_rows integer DEFAULT 10000)
RETURNS integer
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH gone AS (
        DELETE FROM ventros.outbox o
         WHERE (o.tenant_id, o.seq) IN (
                SELECT p.tenant_id, p.seq FROM ventros.outbox p
                 WHERE p.occurred_at < pg_catalog.now() - retention   -- outbox_occurred
                   AND p.status = 'published' AND p.published_at < pg_catalog.now() - retention
                 LIMIT max_rows)
        RETURNING 1)
    SELECT pg_catalog.count(*)::integer FROM gone
$$;
COMMENT ON FUNCTION ventros.outbox_prune(interval, integer) IS
    'Deletes up to max_rows events published longer than retention ago (the publisher calls it with ventros.outbox_retention)';

CREATE FUNCTION ventros.outbox_wake() RETURNS void
LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'ventros_outbox_wake';
COMMENT ON FUNCTION ventros.outbox_wake() IS
    'Wakes this database''s outbox publisher when the current transaction commits';

CREATE FUNCTION ventros.replay_dead_events(tenant text DEFAULT NULL, event_ids uuid[] DEFAULT NULL,
                                           event_type text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
    n bigint := 0;
BEGIN
    -- Dead rows are never in flight, and a claim that still sees them dead
    -- holds back their aggregates: replay needs no lock of the publisher's.
    -- Dead rows are found through the queue (outbox_queue_blocking), each
    -- event by its primary key.
    FOR r IN SELECT q.tenant_id, q.aggregate_id, q.seq FROM ventros.outbox_queue q WHERE q.dead LOOP
        UPDATE ventros.outbox o
           SET status = 'pending', attempts = 0, next_attempt_at = NULL
         WHERE o.tenant_id = r.tenant_id AND o.aggregate_id = r.aggregate_id AND o.seq = r.seq
           AND o.status = 'dead'
           AND (replay_dead_events.tenant IS NULL OR o.tenant_id = replay_dead_events.tenant)
           AND (replay_dead_events.event_ids IS NULL OR o.event_id = ANY (replay_dead_events.event_ids))
           AND (replay_dead_events.event_type IS NULL OR o.event_type = replay_dead_events.event_type);
        CONTINUE WHEN NOT FOUND;
        UPDATE ventros.outbox_queue q SET dead = false, next_attempt_at = NULL WHERE q.seq = r.seq;
        n := n + 1;
    END LOOP;
    IF n > 0 THEN
        PERFORM ventros.outbox_wake();
    END IF;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.replay_dead_events(text, uuid[], text) IS
    'Puts dead-lettered events back to pending (all, or those of a tenant, of given ids, of an event type), with their attempts reset; returns how many';

CREATE FUNCTION ventros.outbox_worker_state(
    OUT database text, OUT pid integer, OUT connected boolean, OUT connected_since timestamptz,
    OUT published_total bigint, OUT failed_total bigint, OUT last_publish_at timestamptz,
    OUT last_error text, OUT last_error_at timestamptz)
RETURNS record
LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'ventros_outbox_worker_state';
COMMENT ON FUNCTION ventros.outbox_worker_state() IS
    'The shared counters of this database''s outbox publisher (55000 when ventros is not preloaded)';

CREATE VIEW ventros.outbox_status AS
SELECT (SELECT pg_catalog.count(*) FROM ventros.outbox_queue WHERE NOT dead) AS pending,
       (SELECT pg_catalog.count(*) FROM ventros.outbox WHERE status = 'published') AS published,
       (SELECT pg_catalog.count(*) FROM ventros.outbox_queue WHERE dead) AS dead,
       pg_catalog.now() - (SELECT pg_catalog.min(o.occurred_at)
                             FROM ventros.outbox_queue q
                             CROSS JOIN LATERAL (SELECT o.occurred_at FROM ventros.outbox o
                                                  WHERE o.tenant_id = q.tenant_id AND o.aggregate_id = q.aggregate_id AND o.seq = q.seq OFFSET 0) o
                            WHERE NOT q.dead) AS oldest_pending_age,
       w.last_publish_at,
       COALESCE(w.last_error,
                (SELECT o.last_error
                   FROM ventros.outbox_queue q
                   CROSS JOIN LATERAL (SELECT o.last_error FROM ventros.outbox o
                                        WHERE o.tenant_id = q.tenant_id AND o.aggregate_id = q.aggregate_id AND o.seq = q.seq OFFSET 0) o
                  WHERE o.last_error IS NOT NULL
                  ORDER BY q.seq DESC LIMIT 1)) AS last_error,
       w.last_error_at,
       w.connected AS worker_connected,
       w.pid AS worker_pid,
       w.connected_since,
       w.published_total,
       w.failed_total
  FROM ventros.outbox_worker_state() w;
COMMENT ON VIEW ventros.outbox_status IS
    'The outbox publisher at a glance: pending, published and dead counts, oldest pending age, last publish, last error, whether the worker is connected to the broker, and its counters since start';

GRANT SELECT ON ventros.outbox_status TO ventros_platform_admin;
GRANT EXECUTE ON FUNCTION ventros.outbox_worker_state() TO ventros_platform_admin;
GRANT EXECUTE ON FUNCTION ventros.replay_dead_events(text, uuid[], text) TO ventros_platform_admin;

-- ---- sql/41_notes.sql
-- Aggregate 14, Note (CRM): a free-text annotation on a contact, optionally
-- on a session, by an agent, the system or a user.  pinned is the state
-- column: creation is note.added, false -> true note.pinned, true -> false
-- note.unpinned (the original emitted nothing on unpinning).

CREATE TABLE ventros.notes (
    id                uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id         text        NOT NULL,
    version           integer     NOT NULL DEFAULT 1,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz,
    contact_id        uuid        NOT NULL,
    session_id        uuid,
    author_id         uuid        NOT NULL,
    author_type       text        NOT NULL,
    author_name       text        NOT NULL,
    content           text        NOT NULL,
    note_type         text        NOT NULL DEFAULT 'general',
    priority          text        NOT NULL DEFAULT 'normal',
    visible_to_client boolean     NOT NULL DEFAULT false,
    pinned            boolean     NOT NULL DEFAULT false,
    tags              text[]      NOT NULL DEFAULT '{}',
    mentions          uuid[]      NOT NULL DEFAULT '{}',
    attachments       text[]      NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES ventros.contacts (tenant_id, id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES ventros.sessions (tenant_id, id),
    CONSTRAINT notes_content_not_blank CHECK (btrim(content) <> '' AND length(content) <= 20000),
    CONSTRAINT notes_author_type_known CHECK (author_type IN ('agent', 'system', 'user')),
    CONSTRAINT notes_author_name_not_blank CHECK (btrim(author_name) <> '' AND length(author_name) <= 200),
    CONSTRAINT notes_type_known CHECK (note_type IN ('general', 'follow_up', 'complaint', 'resolution', 'escalation',
        'internal', 'customer', 'session_summary', 'session_handoff', 'session_feedback', 'ad_conversion', 'ad_campaign',
        'ad_attribution', 'tracking_insight')),
    CONSTRAINT notes_priority_known CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    CONSTRAINT notes_tags_distinct CHECK (ventros.is_distinct_array(tags)),
    CONSTRAINT notes_attachments_urls CHECK (array_to_string(attachments, ' ') !~ '(^| )(?!https?://)\S')
);
CREATE INDEX notes_by_contact ON ventros.notes (tenant_id, contact_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX notes_by_session ON ventros.notes (tenant_id, session_id) WHERE deleted_at IS NULL AND session_id IS NOT NULL;
COMMENT ON TABLE ventros.notes IS 'Note: a free-text annotation on a contact, optionally on a session';

SELECT ventros.register_aggregate('note', 'ventros.notes', 'crm',
    state_column => 'pinned',
    transitions => '[
        {"from": null, "to": "false", "event": "note.added", "description": "A note was added to a contact."},
        {"from": null, "to": "true", "event": "note.added"},
        {"from": "false", "to": "true", "event": "note.pinned", "description": "A note was pinned."},
        {"from": "true", "to": "false", "event": "note.unpinned", "description": "A note was unpinned."}
    ]',
    description => 'A free-text annotation on a contact');

CREATE FUNCTION ventros.add_note(contact_id uuid, content text, author_id uuid, author_type text DEFAULT 'agent',
                                 author_name text DEFAULT NULL, note_type text DEFAULT 'general',
                                 session_id uuid DEFAULT NULL, priority text DEFAULT 'normal',
                                 visible_to_client boolean DEFAULT false, pinned boolean DEFAULT false,
                                 tags text[] DEFAULT '{}', mentions uuid[] DEFAULT '{}', attachments text[] DEFAULT '{}')
RETURNS ventros.notes
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.notes;
    name_of_author text := author_name;
BEGIN
    IF content IS NULL OR btrim(content) = '' THEN
        RAISE EXCEPTION 'note content must not be empty' USING ERRCODE = '23502';
    END IF;
    IF author_id IS NULL THEN
        RAISE EXCEPTION 'a note needs its author' USING ERRCODE = '23502';
    END IF;
    IF author_type = 'agent' AND name_of_author IS NULL THEN
        SELECT a.name INTO name_of_author FROM ventros.agents a
        WHERE a.tenant_id = ventros.require_tenant() AND a.id = author_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'agent % not found', author_id USING ERRCODE = 'P0002';
        END IF;
    END IF;
    INSERT INTO ventros.notes (contact_id, session_id, author_id, author_type, author_name, content, note_type, priority,
                               visible_to_client, pinned, tags, mentions, attachments)
    VALUES (contact_id, session_id, author_id, author_type, coalesce(name_of_author, author_type),
            ventros.check_length(content, 20000, 'note content'), note_type, priority, visible_to_client, pinned,
            ARRAY(SELECT DISTINCT t FROM unnest(coalesce(tags, '{}')) t ORDER BY t), coalesce(mentions, '{}'),
            coalesce(attachments, '{}'))
    RETURNING * INTO result;
    RETURN result;
EXCEPTION
    WHEN foreign_key_violation THEN
        RAISE EXCEPTION 'contact % or session % not found', contact_id, session_id USING ERRCODE = 'P0002';
    WHEN check_violation THEN
        RAISE EXCEPTION 'invalid note: %', SQLERRM USING ERRCODE = '23514';
END
$$;
COMMENT ON FUNCTION ventros.add_note(uuid, text, uuid, text, text, text, uuid, text, boolean, boolean, text[], uuid[], text[]) IS
    'Adds a note to a contact (content and author required); emits note.added';

CREATE FUNCTION ventros.update_note(note_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.notes
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.apply_changes(NULL::ventros.notes, 'note', note_id, expected_version, changes,
        ARRAY['content', 'priority', 'visible_to_client', 'pinned', 'tags', 'mentions', 'attachments', 'note_type'])
$$;
COMMENT ON FUNCTION ventros.update_note(uuid, integer, jsonb) IS
    'Changes a note (content, priority, visibility, pinned, tags, mentions, attachments); emits note.updated, or note.pinned / note.unpinned';

CREATE FUNCTION ventros.set_note_pinned(note_id uuid, expected_version integer, pinned boolean)
RETURNS ventros.notes
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.update_note(note_id, expected_version, jsonb_build_object('pinned', pinned)) $$;
COMMENT ON FUNCTION ventros.set_note_pinned(uuid, integer, boolean) IS 'Pins or unpins a note; emits note.pinned / note.unpinned';

CREATE FUNCTION ventros.delete_note(note_id uuid, expected_version integer DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.delete_row('ventros.notes', 'note', note_id, expected_version) $$;
COMMENT ON FUNCTION ventros.delete_note(uuid, integer) IS 'Soft-deletes a note; emits note.deleted';

CREATE FUNCTION ventros.list_notes(contact_id uuid, pinned_only boolean DEFAULT false,
                                   before_created_at timestamptz DEFAULT NULL, before_id uuid DEFAULT NULL,
                                   page_size integer DEFAULT 50)
RETURNS SETOF ventros.notes
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT n.* FROM ventros.notes n
    WHERE n.tenant_id = ventros.require_tenant() AND n.contact_id = list_notes.contact_id
      AND (NOT pinned_only OR n.pinned)
      AND (before_id IS NULL OR (n.created_at, n.id) < (before_created_at, before_id))
    ORDER BY n.created_at DESC, n.id DESC
    LIMIT ventros.check_page_size(page_size)
$$;
COMMENT ON FUNCTION ventros.list_notes(uuid, boolean, timestamptz, uuid, integer) IS
    'A contact''s notes, newest first (optionally pinned only), one keyset page at a time';

GRANT EXECUTE ON FUNCTION ventros.list_notes(uuid, boolean, timestamptz, uuid, integer) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.add_note(uuid, text, uuid, text, text, text, uuid, text, boolean, boolean, text[], uuid[], text[]),
    ventros.update_note(uuid, integer, jsonb), ventros.set_note_pinned(uuid, integer, boolean),
    ventros.delete_note(uuid, integer) TO ventros_agent;

-- ---- sql/42_canned_responses.sql
-- Canned responses (CRM, new): saved replies an agent inserts by shortcut.
-- A shortcut is unique per project among live rows; {{contact.name}} style
-- placeholders are filled by ventros.render_canned_response().

CREATE TABLE ventros.canned_responses (
    id         uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id  text        NOT NULL,
    version    integer     NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    project_id uuid        NOT NULL,
    team_id    uuid,
    shortcut   text        NOT NULL,
    title      text        NOT NULL,
    content    text        NOT NULL,
    tags       text[]      NOT NULL DEFAULT '{}',
    usage_count integer    NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id),
    FOREIGN KEY (tenant_id, team_id) REFERENCES ventros.teams (tenant_id, id),
    CONSTRAINT canned_responses_shortcut_format CHECK (shortcut ~ '^[a-z0-9][a-z0-9_-]{0,49}$'),
    CONSTRAINT canned_responses_title_not_blank CHECK (btrim(title) <> '' AND length(title) <= 200),
    CONSTRAINT canned_responses_content_size CHECK (btrim(content) <> '' AND length(content) <= 4096)
);
CREATE UNIQUE INDEX canned_responses_unique_shortcut ON ventros.canned_responses (tenant_id, project_id, shortcut)
    WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.canned_responses IS 'A saved reply that agents insert by its shortcut';

SELECT ventros.register_aggregate('canned_response', 'ventros.canned_responses', 'crm',
    description => 'A saved reply inserted by shortcut');
SELECT ventros.declare_quiet_columns('canned_response', '{usage_count}');

CREATE FUNCTION ventros.create_canned_response(shortcut text, title text, content text, team_id uuid DEFAULT NULL,
                                              tags text[] DEFAULT '{}', project_id uuid DEFAULT NULL)
RETURNS ventros.canned_responses
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.canned_responses;
BEGIN
    IF shortcut IS NULL OR title IS NULL OR content IS NULL THEN
        RAISE EXCEPTION 'shortcut, title and content of a canned response must not be null' USING ERRCODE = '23502';
    END IF;
    INSERT INTO ventros.canned_responses (project_id, team_id, shortcut, title, content, tags)
    VALUES (coalesce(project_id, ventros.default_project()), team_id, lower(btrim(shortcut)), title,
            ventros.check_length(content, 4096, 'canned response'), coalesce(tags, '{}'))
    RETURNING * INTO result;
    RETURN result;
EXCEPTION
    WHEN unique_violation THEN
        RAISE EXCEPTION 'a canned response with shortcut "%" already exists', shortcut USING ERRCODE = '23505';
    WHEN check_violation THEN
        RAISE EXCEPTION 'invalid canned response: %', SQLERRM USING ERRCODE = '23514';
END
$$;
COMMENT ON FUNCTION ventros.create_canned_response(text, text, text, uuid, text[], uuid) IS
    'Creates a canned response (shortcut unique per project: 23505); emits canned_response.created';

CREATE FUNCTION ventros.update_canned_response(canned_response_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.canned_responses
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.apply_changes(NULL::ventros.canned_responses, 'canned_response', canned_response_id, expected_version,
                                 changes, ARRAY['shortcut', 'title', 'content', 'tags', 'team_id'])
$$;
COMMENT ON FUNCTION ventros.update_canned_response(uuid, integer, jsonb) IS 'Changes a canned response; emits canned_response.updated';

CREATE FUNCTION ventros.delete_canned_response(canned_response_id uuid, expected_version integer DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.delete_row('ventros.canned_responses', 'canned_response', canned_response_id, expected_version) $$;
COMMENT ON FUNCTION ventros.delete_canned_response(uuid, integer) IS 'Soft-deletes a canned response; emits canned_response.deleted';

-- The text of a canned response for a contact, placeholders filled, and its
-- use counted.
CREATE FUNCTION ventros.render_canned_response(shortcut text, contact_id uuid DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ventros.canned_responses;
    c ventros.contacts;
BEGIN
    UPDATE ventros.canned_responses x SET usage_count = x.usage_count + 1, version = x.version
    WHERE x.tenant_id = ventros.require_tenant() AND x.shortcut = lower(render_canned_response.shortcut)
    RETURNING * INTO r;
    IF r.id IS NULL THEN
        RAISE EXCEPTION 'canned response "%" not found', left(shortcut, 64) USING ERRCODE = 'P0002';
    END IF;
    IF contact_id IS NOT NULL THEN
        c := ventros.get_contact(contact_id);
    END IF;
    RETURN replace(replace(replace(r.content, '{{contact.name}}', coalesce(c.name, '')),
                           '{{contact.phone}}', coalesce(c.phone, '')), '{{contact.email}}', coalesce(c.email, ''));
END
$$;
COMMENT ON FUNCTION ventros.render_canned_response(text, uuid) IS
    'The content of a canned response with {{contact.name}}, {{contact.phone}} and {{contact.email}} filled; counts its use';

CREATE FUNCTION ventros.list_canned_responses(prefix text DEFAULT NULL, after_shortcut text DEFAULT NULL,
                                              page_size integer DEFAULT 50)
RETURNS SETOF ventros.canned_responses
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.* FROM ventros.canned_responses r
    WHERE r.tenant_id = ventros.require_tenant()
      AND (prefix IS NULL OR r.shortcut LIKE replace(replace(lower(prefix), '_', '\_'), '%', '\%') || '%')
      AND (after_shortcut IS NULL OR r.shortcut > after_shortcut)
    ORDER BY r.shortcut
    LIMIT ventros.check_page_size(page_size)
$$;
COMMENT ON FUNCTION ventros.list_canned_responses(text, text, integer) IS
    'Canned responses by shortcut prefix, in shortcut order, one keyset page at a time';

GRANT EXECUTE ON FUNCTION ventros.list_canned_responses(text, text, integer) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.create_canned_response(text, text, text, uuid, text[], uuid),
    ventros.update_canned_response(uuid, integer, jsonb), ventros.delete_canned_response(uuid, integer),
    ventros.render_canned_response(text, uuid) TO ventros_agent;

-- ---- sql/45_contact_merge.sql
-- Contact merge (CRM): the others' sessions, messages, notes, pipeline
-- history, identities, custom fields, consents, chat memberships, list
-- memberships (when ventros.contact_list_members exists) and tags move to
-- the primary contact; the others are soft-deleted; contact.merged is
-- emitted on the primary.
--
-- Locking: every contact involved is locked FOR UPDATE in id order before
-- anything moves, so two merges over overlapping contacts cannot deadlock,
-- and an update of any of them waits: it then fails with P0002 (a merged
-- contact is deleted) or VN001 (the primary's version moved on).

SELECT ventros.register_event_type('contact.merged', 'Contacts were merged into a primary contact.');

CREATE FUNCTION ventros.merge_contacts(primary_id uuid, merged_ids uuid[], strategy text DEFAULT 'keep_primary',
                                       expected_version integer DEFAULT NULL)
RETURNS ventros.contacts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    p ventros.contacts;
    other ventros.contacts;
    locked integer;
    s ventros.sessions;
    moved_sessions integer := 0;
    moved_messages integer := 0;
    moved_notes integer := 0;
    moved_lists integer := 0;
    n integer;
    all_tags text[];
    fill jsonb := '{}';
    result ventros.contacts;
BEGIN
    IF primary_id IS NULL OR merged_ids IS NULL OR cardinality(merged_ids) = 0 THEN
        RAISE EXCEPTION 'a merge needs a primary contact and at least one other' USING ERRCODE = '23502';
    END IF;
    IF primary_id = ANY (merged_ids) OR NOT ventros.is_distinct_array(merged_ids::text[]) THEN
        RAISE EXCEPTION 'merged contacts must be distinct and other than the primary' USING ERRCODE = '22023';
    END IF;
    IF cardinality(merged_ids) > 100 THEN
        RAISE EXCEPTION 'at most 100 contacts are merged at once' USING ERRCODE = '54000';
    END IF;
    IF strategy NOT IN ('keep_primary', 'fill_empty') THEN
        RAISE EXCEPTION 'unknown merge strategy "%"', left(strategy, 32) USING ERRCODE = '22023',
            HINT = 'Use keep_primary (the primary''s fields win) or fill_empty (empty fields of the primary are filled).';
    END IF;
    SELECT count(*) INTO locked FROM (
        SELECT c.id FROM ventros.contacts c
        WHERE c.tenant_id = tenant AND (c.id = primary_id OR c.id = ANY (merged_ids))
        ORDER BY c.id FOR UPDATE) l;
    IF locked <> 1 + cardinality(merged_ids) THEN
        RAISE EXCEPTION 'contact % not found', (SELECT x FROM unnest(primary_id || merged_ids) x
                                                WHERE NOT EXISTS (SELECT 1 FROM ventros.contacts c
                                                                  WHERE c.tenant_id = tenant AND c.id = x) LIMIT 1)
            USING ERRCODE = 'P0002';
    END IF;
    SELECT * INTO p FROM ventros.contacts c WHERE c.tenant_id = tenant AND c.id = primary_id;
    IF expected_version IS NOT NULL AND expected_version <> p.version THEN
        RAISE EXCEPTION 'contact % has changed since version % was read', primary_id, expected_version
            USING ERRCODE = 'VN001', DETAIL = format('Current version is %s.', p.version);
    END IF;
    all_tags := p.tags;

    FOR other IN SELECT * FROM ventros.contacts c WHERE c.tenant_id = tenant AND c.id = ANY (merged_ids) ORDER BY c.created_at, c.id LOOP
        -- Sessions: an active one where the primary has one on the same channel ends first.
        FOR s IN SELECT * FROM ventros.sessions x
                 WHERE x.tenant_id = tenant AND x.contact_id = other.id AND x.status = 'active'
                   AND EXISTS (SELECT 1 FROM ventros.sessions y WHERE y.tenant_id = tenant AND y.contact_id = p.id
                               AND y.channel_id = x.channel_id AND y.status = 'active')
                 FOR UPDATE LOOP
            PERFORM ventros.finish_session(s, 'system_close', now());
        END LOOP;
        UPDATE ventros.sessions x SET contact_id = p.id, version = x.version WHERE x.tenant_id = tenant AND x.contact_id = other.id;
        GET DIAGNOSTICS n = ROW_COUNT; moved_sessions := moved_sessions + n;
        UPDATE ventros.messages x SET contact_id = p.id, version = x.version WHERE x.tenant_id = tenant AND x.contact_id = other.id;
        GET DIAGNOSTICS n = ROW_COUNT; moved_messages := moved_messages + n;
        UPDATE ventros.notes x SET contact_id = p.id, version = x.version WHERE x.tenant_id = tenant AND x.contact_id = other.id;
        GET DIAGNOSTICS n = ROW_COUNT; moved_notes := moved_notes + n;
        -- Pipeline stays: the primary's open row in a pipeline wins; the other's closes.
        UPDATE ventros.contact_pipeline_statuses x
        SET exited_at = greatest(now(), x.entered_at), duration = extract(epoch FROM greatest(now(), x.entered_at) - x.entered_at)::bigint,
            version = x.version
        WHERE x.tenant_id = tenant AND x.contact_id = other.id AND x.exited_at IS NULL
          AND EXISTS (SELECT 1 FROM ventros.contact_pipeline_statuses y WHERE y.tenant_id = tenant AND y.contact_id = p.id
                      AND y.pipeline_id = x.pipeline_id AND y.exited_at IS NULL);
        UPDATE ventros.contact_pipeline_statuses x SET contact_id = p.id, version = x.version
        WHERE x.tenant_id = tenant AND x.contact_id = other.id;
        -- Identities, custom fields, consents: what the primary lacks moves, duplicates go.
        DELETE FROM ventros.contact_identities x WHERE x.tenant_id = tenant AND x.contact_id = other.id
          AND EXISTS (SELECT 1 FROM ventros.contact_identities y WHERE y.tenant_id = tenant AND y.contact_id = p.id
                      AND y.identity_type = x.identity_type AND y.value = x.value);
        UPDATE ventros.contact_identities x SET contact_id = p.id, version = x.version
        WHERE x.tenant_id = tenant AND x.contact_id = other.id;
        DELETE FROM ventros.contact_custom_fields x WHERE x.tenant_id = tenant AND x.contact_id = other.id
          AND EXISTS (SELECT 1 FROM ventros.contact_custom_fields y WHERE y.tenant_id = tenant AND y.contact_id = p.id
                      AND y.field_key = x.field_key);
        UPDATE ventros.contact_custom_fields x SET contact_id = p.id, version = x.version
        WHERE x.tenant_id = tenant AND x.contact_id = other.id;
        -- Consent: an opt-out of either contact survives.
        UPDATE ventros.contact_consents y SET status = 'opted_out', source = 'manual', reason = 'merged', version = y.version
        WHERE y.tenant_id = tenant AND y.contact_id = p.id AND y.status = 'opted_in'
          AND EXISTS (SELECT 1 FROM ventros.contact_consents x WHERE x.tenant_id = tenant AND x.contact_id = other.id
                      AND x.channel_id IS NOT DISTINCT FROM y.channel_id AND x.status = 'opted_out');
        DELETE FROM ventros.contact_consents x WHERE x.tenant_id = tenant AND x.contact_id = other.id
          AND EXISTS (SELECT 1 FROM ventros.contact_consents y WHERE y.tenant_id = tenant AND y.contact_id = p.id
                      AND y.channel_id IS NOT DISTINCT FROM x.channel_id);
        UPDATE ventros.contact_consents x SET contact_id = p.id, version = x.version
        WHERE x.tenant_id = tenant AND x.contact_id = other.id;
        UPDATE ventros.chat_participants x SET participant_id = p.id, version = x.version
        WHERE x.tenant_id = tenant AND x.participant_id = other.id AND x.participant_type = 'contact'
          AND NOT EXISTS (SELECT 1 FROM ventros.chat_participants y WHERE y.tenant_id = tenant AND y.chat_id = x.chat_id
                          AND y.participant_id = p.id AND y.left_at IS NULL);
        -- List memberships belong to another part of the domain; moved when it is installed.
        IF to_regclass('ventros.contact_list_members') IS NOT NULL THEN
            EXECUTE 'DELETE FROM ventros.contact_list_members x WHERE x.tenant_id = $1 AND x.contact_id = $2
                     AND EXISTS (SELECT 1 FROM ventros.contact_list_members y WHERE y.tenant_id = $1
                                 AND y.contact_id = $3 AND y.contact_list_id = x.contact_list_id)'
                USING tenant, other.id, p.id;
            EXECUTE 'UPDATE ventros.contact_list_members x SET contact_id = $3, version = x.version
                     WHERE x.tenant_id = $1 AND x.contact_id = $2'
                USING tenant, other.id, p.id;
            GET DIAGNOSTICS n = ROW_COUNT; moved_lists := moved_lists + n;
        END IF;
        UPDATE ventros.contact_merge_suggestions x SET status = 'accepted', version = x.version
        WHERE x.tenant_id = tenant AND x.status = 'open'
          AND ((x.contact_id = least(p.id, other.id) AND x.other_contact_id = greatest(p.id, other.id)));
        all_tags := all_tags || other.tags;
        IF strategy = 'fill_empty' THEN
            fill := jsonb_strip_nulls(jsonb_build_object(
                        'email', CASE WHEN p.email IS NULL AND NOT fill ? 'email' THEN other.email END,
                        'phone', CASE WHEN p.phone IS NULL AND NOT fill ? 'phone' THEN other.phone END,
                        'external_id', CASE WHEN p.external_id IS NULL AND NOT fill ? 'external_id' THEN other.external_id END,
                        'timezone', CASE WHEN p.timezone IS NULL AND NOT fill ? 'timezone' THEN other.timezone END)) || fill;
        END IF;
        DELETE FROM ventros.contacts c WHERE c.tenant_id = tenant AND c.id = other.id;
    END LOOP;

    UPDATE ventros.contacts c
    SET tags = ARRAY(SELECT DISTINCT t FROM unnest(all_tags) t ORDER BY t),
        email = coalesce(c.email, fill->>'email'), phone = coalesce(c.phone, fill->>'phone'),
        external_id = coalesce(c.external_id, fill->>'external_id'), timezone = coalesce(c.timezone, fill->>'timezone'),
        first_interaction_at = (SELECT min(m."timestamp") FROM ventros.messages m WHERE m.tenant_id = tenant AND m.contact_id = p.id),
        last_interaction_at = (SELECT max(m."timestamp") FROM ventros.messages m WHERE m.tenant_id = tenant AND m.contact_id = p.id),
        version = p.version
    WHERE c.tenant_id = tenant AND c.id = p.id
    RETURNING * INTO result;
    PERFORM ventros.emit('contact.merged', 'contact', p.id,
                         jsonb_build_object('primary_id', p.id, 'merged_ids', to_jsonb(merged_ids), 'strategy', strategy,
                                            'moved', jsonb_build_object('sessions', moved_sessions, 'messages', moved_messages,
                                                                        'notes', moved_notes, 'list_memberships', moved_lists)),
                         result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.merge_contacts(uuid, uuid[], text, integer) IS
    'Merges contacts into a primary: moves sessions (ending an active one that would collide), messages, notes, pipeline history, identities, custom fields, consents (an opt-out survives), chat and list memberships, unions tags; soft-deletes the others; emits contact.merged (and the moved rows'' events, contact.deleted per merged contact)';

GRANT EXECUTE ON FUNCTION ventros.merge_contacts(uuid, uuid[], text, integer) TO ventros_admin;

-- ---- sql/45_http_requests.sql
-- The outbound HTTP queue: every call Ventros makes to the outside world
-- (channel sends, webhook deliveries, media downloads, AI providers) is a row
-- here, written in the transaction that decided to make it, and delivered at
-- least once by the HTTP dispatcher (src/http_worker.c).
--
-- Not an aggregate: rows carry no version and no domain events; they are a
-- work queue like ventros.outbox, updated by the dispatcher on every attempt.
-- Row-level security is enabled and forced here, with the tenant policies.
--
-- Status:
--   pending    waiting for next_attempt_at (first attempt or a retry)
--   in_flight  claimed by the dispatcher until lease_until
--   succeeded  a 2xx answer was received (final)
--   failed     refused for good: SSRF guard, bad URL, 3xx or 4xx (final)
--   dead       every allowed attempt failed with a transient error (final)

CREATE TABLE ventros.http_requests (
    tenant_id          text        NOT NULL DEFAULT ventros.current_tenant(),
    id                 uuid        NOT NULL DEFAULT gen_random_uuid(),
    method             text        NOT NULL DEFAULT 'POST',
    url                text        NOT NULL,
    headers            jsonb       NOT NULL DEFAULT '{}',
    body               bytea,
    purpose            text        NOT NULL DEFAULT 'generic',
    correlation_id     uuid,
    retry_policy       text        NOT NULL DEFAULT 'transient',
    retry_schedule     interval[],
    status             text        NOT NULL DEFAULT 'pending',
    attempts           integer     NOT NULL DEFAULT 0,
    max_attempts       integer     NOT NULL,
    timeout_ms         integer,
    max_response_size  integer,
    next_attempt_at    timestamptz NOT NULL DEFAULT now(),
    lease_until        timestamptz,
    claimed_by         integer,
    last_attempt_at    timestamptz,
    response_status    integer,
    response_headers   jsonb,
    response_body      bytea,
    response_truncated boolean     NOT NULL DEFAULT false,
    last_error         text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    completed_at       timestamptz,
    handler_error      text,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT http_requests_method_known CHECK (method IN ('GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS')),
    CONSTRAINT http_requests_url_http CHECK (url ~* '^https?://' AND length(url) <= 8192),
    CONSTRAINT http_requests_headers_object CHECK (jsonb_typeof(headers) = 'object'),
    CONSTRAINT http_requests_purpose_not_blank CHECK (btrim(purpose) <> '' AND length(purpose) <= 100),
    CONSTRAINT http_requests_retry_policy_known CHECK (retry_policy ~ '^[a-z][a-z0-9_]{0,62}$'),
    CONSTRAINT http_requests_status_known CHECK (status IN ('pending', 'in_flight', 'succeeded', 'failed', 'dead')),
    CONSTRAINT http_requests_attempts_range CHECK (attempts >= 0 AND max_attempts BETWEEN 1 AND 100),
    CONSTRAINT http_requests_timeout_range CHECK (timeout_ms BETWEEN 100 AND 600000),
    CONSTRAINT http_requests_max_response_size_range CHECK (max_response_size BETWEEN 0 AND 268435456)
);
-- The dispatcher's two claims: due rows, and leases of a dead dispatcher.
CREATE INDEX http_requests_due ON ventros.http_requests (next_attempt_at) WHERE status = 'pending';
CREATE INDEX http_requests_leased ON ventros.http_requests (lease_until) WHERE status = 'in_flight';
CREATE INDEX http_requests_correlation ON ventros.http_requests (tenant_id, correlation_id)
    WHERE correlation_id IS NOT NULL;
COMMENT ON TABLE ventros.http_requests IS
    'Outbound HTTP calls, delivered at least once by the HTTP dispatcher with retries, an SSRF guard and response capture';
COMMENT ON COLUMN ventros.http_requests.purpose IS 'What the call is for (message.send, webhook.delivery, media.download, ...)';
COMMENT ON COLUMN ventros.http_requests.correlation_id IS 'The row the call serves: a message id, a webhook delivery id, ...';
COMMENT ON COLUMN ventros.http_requests.retry_policy IS
    'transient: retry network errors, timeouts, 408, 425, 429 and 5xx only; any: retry every non-2xx answer except 410';
COMMENT ON COLUMN ventros.http_requests.retry_schedule IS
    'Delays before attempts 2, 3, ... (+-10 % jitter; the last repeats); NULL: exponential backoff (ventros.http_backoff)';
COMMENT ON COLUMN ventros.http_requests.status IS 'pending, in_flight, succeeded, failed (refused for good) or dead (attempts exhausted)';
COMMENT ON COLUMN ventros.http_requests.attempts IS 'Attempts started, counted when claimed';
COMMENT ON COLUMN ventros.http_requests.max_response_size IS
    'Bytes of the answer''s body kept (the transfer stops beyond, response_truncated); NULL: ventros.http_max_response_size. Media downloads ask for ventros.media_max_size';
COMMENT ON COLUMN ventros.http_requests.timeout_ms IS 'Total time limit of one attempt; NULL: ventros.http_timeout';
COMMENT ON COLUMN ventros.http_requests.lease_until IS 'While in_flight: when another dispatcher may take the row back';
COMMENT ON COLUMN ventros.http_requests.response_body IS 'The last answer''s body, at most ventros.http_max_response_size bytes';
COMMENT ON COLUMN ventros.http_requests.handler_error IS
    'Why the purpose''s completion handler failed (NULL: it ran, or there is none); see rerun_http_request_handler';
COMMENT ON COLUMN ventros.http_requests.response_truncated IS 'The last answer''s body was longer than what was kept';

ALTER TABLE ventros.http_requests ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.http_requests FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_select ON ventros.http_requests FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
CREATE POLICY ventros_tenant_insert ON ventros.http_requests FOR INSERT
    WITH CHECK (tenant_id = (SELECT ventros.current_tenant()));
CREATE POLICY ventros_tenant_update ON ventros.http_requests FOR UPDATE
    USING (tenant_id = (SELECT ventros.current_tenant()))
    WITH CHECK (tenant_id = (SELECT ventros.current_tenant()));
-- Requests carry credentials in their headers: only tenant administrators see them.
GRANT SELECT, INSERT, UPDATE ON ventros.http_requests TO ventros_admin;

-- Any insert or update of the queue wakes the dispatcher when it commits.
CREATE FUNCTION ventros.http_requests_wake() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'ventros_http_requests_wake';
COMMENT ON FUNCTION ventros.http_requests_wake() IS
    'Statement trigger: wakes the HTTP dispatcher when the transaction commits';
CREATE TRIGGER ventros_http_wake AFTER INSERT OR UPDATE ON ventros.http_requests
    FOR EACH STATEMENT EXECUTE FUNCTION ventros.http_requests_wake();

CREATE FUNCTION ventros.enqueue_http_request(
    url text,
    method text DEFAULT 'POST',
    headers jsonb DEFAULT '{}',
    body bytea DEFAULT NULL,
    purpose text DEFAULT 'generic',
    correlation_id uuid DEFAULT NULL,
    max_attempts integer DEFAULT NULL,
    timeout_ms integer DEFAULT NULL,
    not_before timestamptz DEFAULT NULL,
    retry_policy text DEFAULT 'transient',
    max_response_size integer DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    new_id uuid;
BEGIN
    IF url IS NULL OR url !~* '^https?://[^/?#]' THEN
        RAISE EXCEPTION 'url must be an http or https URL'
            USING ERRCODE = '22023', DETAIL = format('Got %s.', coalesce(quote_literal(left(url, 200)), 'NULL'));
    END IF;
    IF headers IS NOT NULL AND EXISTS (SELECT 1 FROM jsonb_each(headers) h
                                        WHERE jsonb_typeof(h.value) <> 'string' OR h.key !~ '^[!#$%&''*+.^_`|~0-9A-Za-z-]+$'
                                           OR (h.value #>> '{}') ~ '[\r\n]') THEN
        RAISE EXCEPTION 'headers must be an object of header names to string values'
            USING ERRCODE = '22023',
                  DETAIL = 'Names are HTTP tokens; values are strings without line breaks.';
    END IF;
    IF retry_policy IS NOT NULL AND retry_policy NOT IN ('transient', 'any')
       AND NOT EXISTS (SELECT 1 FROM ventros.http_retry_classifiers c WHERE c.policy = retry_policy) THEN
        RAISE EXCEPTION 'unknown retry policy "%"', left(retry_policy, 64) USING ERRCODE = '22023',
            HINT = 'Use transient, any, or a policy declared with ventros.declare_http_retry_classifier.';
    END IF;
    INSERT INTO ventros.http_requests AS r
        (tenant_id, method, url, headers, body, purpose, correlation_id, retry_policy, max_attempts,
         timeout_ms, next_attempt_at, max_response_size)
    VALUES (tenant, upper(method), url, coalesce(headers, '{}'), body, coalesce(purpose, 'generic'),
            correlation_id, coalesce(retry_policy, 'transient'),
            coalesce(max_attempts, current_setting('ventros.http_max_attempts')::integer),
            timeout_ms, coalesce(not_before, now()), max_response_size)
    RETURNING r.id INTO new_id;
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION ventros.enqueue_http_request(text, text, jsonb, bytea, text, uuid, integer, integer, timestamptz, text, integer) IS
    'Queues an outbound HTTP call for the acting tenant; the dispatcher sends it after commit. Returns its id';

CREATE FUNCTION ventros.replay_http_request(request_id uuid, max_attempts integer DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
BEGIN
    UPDATE ventros.http_requests r
       SET status = 'pending', next_attempt_at = now(), lease_until = NULL, claimed_by = NULL,
           max_attempts = r.attempts + coalesce(replay_http_request.max_attempts,
                                                current_setting('ventros.http_max_attempts')::integer),
           completed_at = NULL, updated_at = now()
     WHERE r.tenant_id = tenant AND r.id = request_id AND r.status IN ('failed', 'dead');
    IF NOT FOUND THEN
        RAISE EXCEPTION 'http request % not found or not finished unsuccessfully', request_id
            USING ERRCODE = 'P0002',
                  HINT = 'Only failed and dead requests of the acting tenant can be replayed.';
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.replay_http_request(uuid, integer) IS
    'Puts a failed or dead request back in the queue with max_attempts more attempts (default ventros.http_max_attempts)';

-- Time is a parameter: pg_cron calls this with now() - a retention period.
CREATE FUNCTION ventros.prune_http_requests(completed_before timestamptz, batch_size integer DEFAULT 10000)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    -- SECURITY DEFINER: across tenants; the caller must be a platform admin
    PERFORM ventros.require_platform_admin();
    WITH gone AS (
        DELETE FROM ventros.http_requests r
         WHERE (r.tenant_id, r.id) IN (SELECT x.tenant_id, x.id FROM ventros.http_requests x
                                        WHERE x.status IN ('succeeded', 'failed', 'dead')
                                          AND x.completed_at < completed_before
                                        LIMIT batch_size)
        RETURNING 1)
    SELECT count(*)::integer INTO n FROM gone;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.prune_http_requests(timestamptz, integer) IS
    'Platform admins: deletes up to batch_size finished requests completed before the given time; returns how many';

-- ---- the dispatcher's side (called by src/http_worker.c as superuser) -------

-- The dispatcher's extension points (preparers, retry classifiers,
-- completion handlers) are functions named in a table; these two helpers
-- check a declared function's shape and call one for a request.

-- require_function_shape: 22023 unless fn takes exactly argtypes and returns
-- rettype (any return type when rettype is NULL).
CREATE FUNCTION ventros.require_function_shape(fn regprocedure, argtypes regtype[], rettype regtype, what text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_proc p
                    -- (oidvector subscripts start at 0: compare the lists, not the arrays)
                    WHERE p.oid = fn AND array_to_string(p.proargtypes::oid[], ',') = array_to_string(argtypes::oid[], ',')
                      AND (rettype IS NULL OR p.prorettype = rettype)) THEN
        RAISE EXCEPTION '% % must be f(%)%', what, fn, array_to_string(argtypes, ', '),
                        CASE WHEN rettype IS NULL THEN '' ELSE ' RETURNS ' || rettype::text END
            USING ERRCODE = '22023';
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.require_function_shape(regprocedure, regtype[], regtype, text) IS
    'Raises 22023 unless a declared function takes exactly the given argument types and returns the given type';

-- call_for_request: fn(r) as the request's tenant, in a subtransaction: its
-- result as text, or why it failed (its work then undone).  The caller
-- decides what a failure means.
CREATE FUNCTION ventros.call_for_request(fn regprocedure, r ventros.http_requests, OUT result text, OUT failure text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    previous_tenant text := current_setting('ventros.tenant', true);
BEGIN
    -- only the dispatcher (no tenant) switches; an administrator's rerun
    -- already acts for the request's tenant
    IF ventros.current_tenant() IS DISTINCT FROM r.tenant_id THEN
        PERFORM set_config('ventros.tenant', r.tenant_id, true);
    END IF;
    BEGIN
        EXECUTE format('SELECT %s($1)::text', fn::regproc) INTO result USING r;
    EXCEPTION WHEN OTHERS THEN
        failure := format('%s: %s', SQLSTATE, SQLERRM);
    END;
    IF current_setting('ventros.tenant', true) IS DISTINCT FROM coalesce(previous_tenant, '') THEN
        PERFORM set_config('ventros.tenant', coalesce(previous_tenant, ''), true);
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.call_for_request(regprocedure, ventros.http_requests) IS
    'Calls a declared function with a request, as its tenant, catching its error: (result as text, failure)';

-- Per purpose, an optional preparer f(r ventros.http_requests) RETURNS jsonb
-- gives the headers of each attempt when it is claimed (a webhook delivery
-- is signed anew per attempt with a secret that is not stored on the row).
CREATE TABLE ventros.http_request_preparers (
    purpose  text PRIMARY KEY,
    preparer regprocedure NOT NULL
);
COMMENT ON TABLE ventros.http_request_preparers IS
    'Per purpose, the function that gives the headers of each attempt when it is claimed (e.g. a fresh signature)';
ALTER TABLE ventros.http_request_preparers ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.http_request_preparers FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_catalog_read ON ventros.http_request_preparers FOR SELECT USING (true);
GRANT SELECT ON ventros.http_request_preparers TO ventros_viewer;

CREATE FUNCTION ventros.declare_http_request_preparer(purpose text, preparer regprocedure) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.require_function_shape(preparer, ARRAY['ventros.http_requests']::regtype[], 'jsonb', 'preparer');
    INSERT INTO ventros.http_request_preparers AS h (purpose, preparer)
    VALUES (declare_http_request_preparer.purpose, declare_http_request_preparer.preparer)
    ON CONFLICT ON CONSTRAINT http_request_preparers_pkey DO UPDATE SET preparer = EXCLUDED.preparer;
END
$$;
COMMENT ON FUNCTION ventros.declare_http_request_preparer(text, regprocedure) IS
    'Declares the function that computes the headers of each attempt of requests of one purpose';

-- The headers of the attempt just claimed (attempts already counted): the
-- purpose's preparer, run as the request's tenant, or the stored headers.
-- A failing preparer must not stop the dispatcher's claim: the stored
-- headers are sent (the receiver refuses them) and a warning is logged.
CREATE FUNCTION ventros.http_attempt_headers(r ventros.http_requests) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fn regprocedure;
    prepared record;
BEGIN
    SELECT h.preparer INTO fn FROM ventros.http_request_preparers h WHERE h.purpose = r.purpose;
    IF fn IS NULL THEN
        RETURN r.headers;
    END IF;
    prepared := ventros.call_for_request(fn, r);
    IF prepared.failure IS NOT NULL THEN
        RAISE WARNING 'preparer of http request % (%) failed: %', r.id, r.purpose, prepared.failure;
    END IF;
    RETURN coalesce(prepared.result::jsonb, r.headers);
END
$$;
COMMENT ON FUNCTION ventros.http_attempt_headers(ventros.http_requests) IS
    'Dispatcher: the headers of a claimed attempt (the purpose''s preparer, else the stored headers)';

-- Claims up to batch_size due rows: SKIP LOCKED, one attempt counted, a lease.
-- Rows whose lease expired (a dispatcher died mid-flight) are due again.
CREATE FUNCTION ventros.http_claim(batch_size integer, lease interval)
RETURNS TABLE (tenant_id text, id uuid, method text, url text, headers jsonb, body bytea,
               attempts integer, timeout_ms integer, retry_policy text, max_response_size integer)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH due_now AS (
        SELECT r.tenant_id, r.id FROM ventros.http_requests r
         WHERE r.status = 'pending' AND r.next_attempt_at <= now()
         ORDER BY r.next_attempt_at LIMIT batch_size FOR UPDATE SKIP LOCKED),
    lease_expired AS (
        SELECT r.tenant_id, r.id FROM ventros.http_requests r
         WHERE r.status = 'in_flight' AND r.lease_until < now()
         ORDER BY r.lease_until LIMIT batch_size FOR UPDATE SKIP LOCKED),
    due AS (
        SELECT * FROM due_now UNION ALL SELECT * FROM lease_expired LIMIT batch_size)
    UPDATE ventros.http_requests r
       SET status = 'in_flight', attempts = r.attempts + 1, lease_until = now() + lease,
           claimed_by = pg_backend_pid(), last_attempt_at = now(), updated_at = now()
      FROM due
     WHERE r.tenant_id = due.tenant_id AND r.id = due.id
    RETURNING r.tenant_id, r.id, r.method, r.url,
              CASE WHEN EXISTS (SELECT 1 FROM ventros.http_request_preparers p WHERE p.purpose = r.purpose)
                   THEN ventros.http_attempt_headers(r) ELSE r.headers END,
              r.body, r.attempts, r.timeout_ms, r.retry_policy, r.max_response_size
$$;
COMMENT ON FUNCTION ventros.http_claim(integer, interval) IS
    'Dispatcher: claims due requests (and requests whose lease expired) with a lease, counting an attempt';

-- Frees the rows a previous dispatcher process left in flight (it died).
CREATE FUNCTION ventros.http_release_orphans() RETURNS integer
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH freed AS (
        UPDATE ventros.http_requests r
           SET status = 'pending', lease_until = NULL, claimed_by = NULL, next_attempt_at = now(),
               last_error = coalesce(r.last_error, 'dispatcher stopped during the attempt'), updated_at = now()
         WHERE r.status = 'in_flight' AND r.claimed_by IS DISTINCT FROM pg_backend_pid()
        RETURNING 1)
    SELECT count(*)::integer FROM freed
$$;
COMMENT ON FUNCTION ventros.http_release_orphans() IS
    'Dispatcher, at start: puts requests a dead dispatcher left in flight back in the queue';

-- The delay before attempt n+1 after n failed attempts: base * 2^(n-1), at most
-- ventros.http_backoff_max, with +-10 % jitter.
CREATE FUNCTION ventros.http_backoff(failed_attempts integer) RETURNS interval
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT make_interval(secs => least(current_setting('ventros.http_backoff_base')::float8
                                       * power(2::float8, least(greatest(failed_attempts, 1) - 1, 40)),
                                       current_setting('ventros.http_backoff_max')::float8)
                                 * (0.9 + random() * 0.2) / 1000.0)
$$;
COMMENT ON FUNCTION ventros.http_backoff(integer) IS
    'Retry delay after n failed attempts: exponential from ventros.http_backoff_base up to ventros.http_backoff_max, +-10 % jitter';

-- ---- Retry classifiers ------------------------------------------------------
-- Whether a failed answer is worth another attempt is decided by the HTTP
-- status (retry_policy transient or any), unless the request names another
-- policy: then the function declared for it reads the answer (Meta's Graph
-- API, for one, answers 400 to throttling and says so only in its body).

CREATE TABLE ventros.http_retry_classifiers (
    policy text PRIMARY KEY,
    classifier regprocedure NOT NULL,
    CONSTRAINT http_retry_classifiers_policy_name CHECK (policy ~ '^[a-z][a-z0-9_]{0,62}$'
                                                         AND policy NOT IN ('transient', 'any'))
);
COMMENT ON TABLE ventros.http_retry_classifiers IS
    'Retry policies besides transient and any (http_requests.retry_policy): per policy, f(response_status integer, response_body bytea, retryable boolean) RETURNS boolean: whether a failed attempt is retried (retryable is the dispatcher''s own verdict by status)';
ALTER TABLE ventros.http_retry_classifiers ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.http_retry_classifiers FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_catalog_read ON ventros.http_retry_classifiers FOR SELECT USING (true);

CREATE FUNCTION ventros.declare_http_retry_classifier(policy text, classifier regprocedure) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.require_function_shape(classifier, ARRAY['integer', 'bytea', 'boolean']::regtype[], 'boolean',
                                           'classifier');
    INSERT INTO ventros.http_retry_classifiers AS c (policy, classifier)
    VALUES (declare_http_retry_classifier.policy, declare_http_retry_classifier.classifier)
    ON CONFLICT ON CONSTRAINT http_retry_classifiers_pkey DO UPDATE SET classifier = EXCLUDED.classifier;
END
$$;
COMMENT ON FUNCTION ventros.declare_http_retry_classifier(text, regprocedure) IS
    'Declares the function that decides whether failed answers of requests with this retry_policy are retried';

-- ---- Completion handlers ----------------------------------------------------
-- What a finished request means is the business of whoever queued it: a
-- channel send marks its message sent or failed, a webhook delivery updates
-- its subscription's counters.  Each purpose declares its handler here (one
-- row, no new dispatcher code); it runs in the transaction that records the
-- final outcome, as the request's tenant.  A handler that fails does not lose
-- the outcome: the error is kept on the request (handler_error) and
-- ventros.rerun_http_request_handler() runs it again.

CREATE TABLE ventros.http_request_handlers (
    purpose text PRIMARY KEY,
    handler regprocedure NOT NULL,
    CONSTRAINT http_request_handlers_purpose_not_blank CHECK (btrim(purpose) <> '' AND length(purpose) <= 100)
);
COMMENT ON TABLE ventros.http_request_handlers IS
    'Per purpose, the function called with the request row (ventros.http_requests) when it succeeded, failed or died';

-- Readable by all tenant roles (nothing secret), written by the owner only.
ALTER TABLE ventros.http_request_handlers ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.http_request_handlers FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_catalog_read ON ventros.http_request_handlers FOR SELECT USING (true);
GRANT SELECT ON ventros.http_request_handlers TO ventros_viewer;

CREATE FUNCTION ventros.declare_http_request_handler(purpose text, handler regprocedure) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.require_function_shape(handler, ARRAY['ventros.http_requests']::regtype[], NULL, 'handler');
    INSERT INTO ventros.http_request_handlers AS h (purpose, handler)
    VALUES (declare_http_request_handler.purpose, declare_http_request_handler.handler)
    ON CONFLICT ON CONSTRAINT http_request_handlers_pkey DO UPDATE SET handler = EXCLUDED.handler;
END
$$;
COMMENT ON FUNCTION ventros.declare_http_request_handler(text, regprocedure) IS
    'Declares the function that handles the final outcome of requests of one purpose';

CREATE FUNCTION ventros.run_http_request_handler(r ventros.http_requests) RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fn regprocedure;
    failure text;
BEGIN
    SELECT h.handler INTO fn FROM ventros.http_request_handlers h WHERE h.purpose = r.purpose;
    IF fn IS NULL THEN
        RETURN true;
    END IF;
    failure := (ventros.call_for_request(fn, r)).failure;
    UPDATE ventros.http_requests q SET handler_error = failure
     WHERE q.tenant_id = r.tenant_id AND q.id = r.id AND q.handler_error IS DISTINCT FROM failure;
    RETURN failure IS NULL;
END
$$;
COMMENT ON FUNCTION ventros.run_http_request_handler(ventros.http_requests) IS
    'Runs the declared handler of a finished request as its tenant; a failure is kept in handler_error, never raised';

-- SECURITY DEFINER: the handler runs as it does for the dispatcher (as the
-- owner), for the caller's tenant only (require_tenant below).
CREATE FUNCTION ventros.rerun_http_request_handler(request_id uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ventros.http_requests;
BEGIN
    SELECT * INTO r FROM ventros.http_requests q
     WHERE q.tenant_id = ventros.require_tenant() AND q.id = request_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'http request % not found', request_id USING ERRCODE = 'P0002';
    END IF;
    IF r.status NOT IN ('succeeded', 'failed', 'dead') THEN
        RAISE EXCEPTION 'http request % is still %', request_id, r.status USING ERRCODE = '55000',
            HINT = 'Handlers run once a request has succeeded, failed or died.';
    END IF;
    RETURN ventros.run_http_request_handler(r);
END
$$;
COMMENT ON FUNCTION ventros.rerun_http_request_handler(uuid) IS
    'Runs a finished request''s handler again (after its handler_error was fixed); true when it succeeded';

-- Records one attempt's outcome.  Ignored unless the row is still in flight
-- with this attempt number (a lease taken over by another dispatcher wins).
CREATE FUNCTION ventros.http_record_attempt(
    p_tenant_id text, p_id uuid, p_attempt integer,
    p_succeeded boolean, p_retryable boolean, p_retry_after_ms bigint,
    p_response_status integer, p_response_headers text, p_response_body bytea,
    p_response_truncated boolean, p_error text)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ventros.http_requests;
    new_status text;
    delay interval;
    hdrs jsonb;
    classify text;
BEGIN
    SELECT * INTO r FROM ventros.http_requests
     WHERE tenant_id = p_tenant_id AND id = p_id AND status = 'in_flight' AND attempts = p_attempt
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF p_response_headers IS NOT NULL THEN
        SELECT coalesce(jsonb_object_agg(lower(btrim(split_part(l, ':', 1))),
                                         btrim(substr(l, strpos(l, ':') + 1))), '{}')
          INTO hdrs
          FROM regexp_split_to_table(p_response_headers, E'\r?\n') AS l
         WHERE strpos(l, ':') > 1;
    END IF;
    IF NOT p_succeeded AND r.retry_policy NOT IN ('transient', 'any') THEN
        SELECT format('SELECT %s($1, $2, $3)', c.classifier::regproc) INTO classify
          FROM ventros.http_retry_classifiers c WHERE c.policy = r.retry_policy;
        IF classify IS NOT NULL THEN
            EXECUTE classify INTO p_retryable USING p_response_status, p_response_body, p_retryable;
        END IF;
    END IF;
    IF p_succeeded THEN
        new_status := 'succeeded';
    ELSIF NOT p_retryable THEN
        new_status := 'failed';
    ELSIF r.attempts >= r.max_attempts THEN
        new_status := 'dead';
    ELSE
        new_status := 'pending';
        delay := CASE WHEN cardinality(r.retry_schedule) > 0
                      THEN r.retry_schedule[least(r.attempts, cardinality(r.retry_schedule))] * (0.9 + random() * 0.2)
                      ELSE ventros.http_backoff(r.attempts) END;
        IF p_retry_after_ms IS NOT NULL THEN
            delay := greatest(delay, make_interval(secs => least(p_retry_after_ms / 1000.0,
                                         current_setting('ventros.http_retry_after_max')::float8)));
        END IF;
    END IF;
    UPDATE ventros.http_requests
       SET status = new_status,
           next_attempt_at = CASE WHEN new_status = 'pending' THEN clock_timestamp() + delay ELSE next_attempt_at END,
           lease_until = NULL, claimed_by = NULL,
           response_status = p_response_status,
           response_headers = hdrs,
           response_body = p_response_body,
           response_truncated = coalesce(p_response_truncated, false),
           last_error = CASE WHEN p_succeeded THEN NULL ELSE p_error END,
           completed_at = CASE WHEN new_status IN ('succeeded', 'failed', 'dead') THEN clock_timestamp() END,
           updated_at = now()
     WHERE tenant_id = p_tenant_id AND id = p_id
    RETURNING * INTO r;
    IF new_status <> 'pending' THEN
        PERFORM ventros.run_http_request_handler(r);
    END IF;
    RETURN new_status;
END
$$;
COMMENT ON FUNCTION ventros.http_record_attempt(text, uuid, integer, boolean, boolean, bigint, integer, text, bytea, boolean, text) IS
    'Dispatcher: stores an attempt''s answer and decides succeeded, failed, dead or a retry after backoff (Retry-After honoured)';

-- ---- SSRF guard and status --------------------------------------------------

CREATE FUNCTION ventros.check_url(url text) RETURNS text
    LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'ventros_check_url';
COMMENT ON FUNCTION ventros.check_url(text) IS
    'SSRF guard: NULL when the dispatcher may call this URL, else why not (scheme, userinfo, name, or a resolved address in a refused range)';

CREATE FUNCTION ventros.http_dispatcher_state(
    OUT pid integer, OUT database text, OUT started_at timestamptz, OUT in_flight integer,
    OUT succeeded bigint, OUT failed_attempts bigint, OUT refused bigint, OUT last_activity_at timestamptz,
    OUT last_error_at timestamptz, OUT last_error text)
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'ventros_http_dispatcher_state';
COMMENT ON FUNCTION ventros.http_dispatcher_state() IS
    'The HTTP dispatcher''s shared-memory counters (since server start)';

CREATE VIEW ventros.http_dispatcher_status AS
    SELECT s.pid, s.database, s.started_at, s.in_flight, s.succeeded, s.failed_attempts, s.refused,
           s.last_activity_at, s.last_error_at, s.last_error,
           q.pending, q.due, q.leased, q.oldest_due_at, q.dead, q.failed
      FROM ventros.http_dispatcher_state() s,
           LATERAL (SELECT count(*) FILTER (WHERE r.status = 'pending') AS pending,
                           count(*) FILTER (WHERE r.status = 'pending' AND r.next_attempt_at <= now()) AS due,
                           count(*) FILTER (WHERE r.status = 'in_flight') AS leased,
                           min(r.next_attempt_at) FILTER (WHERE r.status = 'pending') AS oldest_due_at,
                           count(*) FILTER (WHERE r.status = 'dead') AS dead,
                           count(*) FILTER (WHERE r.status = 'failed') AS failed
                      FROM ventros.http_requests r) q;
COMMENT ON VIEW ventros.http_dispatcher_status IS
    'The HTTP dispatcher: its process, counters since start, last error, and the queue across all tenants';

GRANT SELECT ON ventros.http_dispatcher_status TO ventros_platform_admin;
GRANT EXECUTE ON FUNCTION ventros.enqueue_http_request(text, text, jsonb, bytea, text, uuid, integer, integer, timestamptz, text, integer)
    TO ventros_admin;
GRANT SELECT ON ventros.http_retry_classifiers TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.replay_http_request(uuid, integer) TO ventros_admin;
GRANT EXECUTE ON FUNCTION ventros.rerun_http_request_handler(uuid) TO ventros_admin;
GRANT EXECUTE ON FUNCTION ventros.prune_http_requests(timestamptz, integer) TO ventros_platform_admin;
GRANT EXECUTE ON FUNCTION ventros.check_url(text) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.http_requests_wake() TO ventros_viewer;

-- ---- sql/50_crm_reports.sql
-- CRM reports from a summary table kept incrementally (never from scans of
-- all messages): messages in and out, sessions started and ended, first
-- response time and resolution time, per tenant, UTC day, channel, agent and
-- team.
--
-- ventros.crm_daily_stats is a projection, not an aggregate: no version, no
-- events.  Statement triggers (with transition tables) on messages and
-- sessions add each batch of rows in one upsert; row triggers on sessions
-- count first responses and endings.  slot spreads a hot key (one busy
-- channel on one day) over a few rows so that concurrent writers do not queue
-- on one row lock; reports sum the slots.  agent_id and team_id use the nil
-- uuid for "none", so they can be part of the key.
--
-- Attribution: an outbound message counts for its sending agent, an inbound
-- one for the session's assigned agent; first response and resolution count
-- for the session's assigned agent and team.

CREATE TABLE ventros.crm_daily_stats (
    tenant_id              text     NOT NULL,
    day                    date     NOT NULL,
    channel_id             uuid     NOT NULL,
    agent_id               uuid     NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000',
    team_id                uuid     NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000',
    slot                   smallint NOT NULL DEFAULT 0,
    messages_in            bigint   NOT NULL DEFAULT 0,
    messages_out           bigint   NOT NULL DEFAULT 0,
    sessions_started       bigint   NOT NULL DEFAULT 0,
    sessions_ended         bigint   NOT NULL DEFAULT 0,
    first_responses        bigint   NOT NULL DEFAULT 0,
    first_response_seconds bigint   NOT NULL DEFAULT 0,
    resolutions            bigint   NOT NULL DEFAULT 0,
    resolution_seconds     bigint   NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day, channel_id, agent_id, team_id, slot)
);
COMMENT ON TABLE ventros.crm_daily_stats IS
    'CRM report counters per tenant, UTC day, channel, agent and team (nil uuid = none), kept by triggers; sum over slot';

ALTER TABLE ventros.crm_daily_stats ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.crm_daily_stats FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_read ON ventros.crm_daily_stats FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
REVOKE ALL ON ventros.crm_daily_stats FROM PUBLIC;
GRANT SELECT ON ventros.crm_daily_stats TO ventros_viewer;


-- The triggers run as the extension's owner: tenants read the table only.
CREATE FUNCTION ventros.stats_count_messages() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO ventros.crm_daily_stats AS d (tenant_id, day, channel_id, agent_id, team_id, slot, messages_in, messages_out)
    SELECT m.tenant_id, (m."timestamp" AT TIME ZONE 'UTC')::date, m.channel_id,
           coalesce(CASE WHEN m.from_me THEN m.agent_id ELSE s.assigned_agent_id END, '00000000-0000-0000-0000-000000000000'),
           coalesce(s.team_id, '00000000-0000-0000-0000-000000000000'), ventros.stats_slot(),
           count(*) FILTER (WHERE NOT m.from_me), count(*) FILTER (WHERE m.from_me)
    FROM new_rows m
    LEFT JOIN ventros.sessions s ON s.tenant_id = m.tenant_id AND s.id = m.session_id
    GROUP BY 1, 2, 3, 4, 5
    ON CONFLICT (tenant_id, day, channel_id, agent_id, team_id, slot) DO UPDATE
    SET messages_in = d.messages_in + EXCLUDED.messages_in, messages_out = d.messages_out + EXCLUDED.messages_out;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.stats_count_messages() IS 'Statement trigger: counts inserted messages in crm_daily_stats';
CREATE TRIGGER stats_count_messages AFTER INSERT ON ventros.messages
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ventros.stats_count_messages();

CREATE FUNCTION ventros.stats_count_sessions_started() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO ventros.crm_daily_stats AS d (tenant_id, day, channel_id, agent_id, team_id, slot, sessions_started)
    SELECT s.tenant_id, (s.started_at AT TIME ZONE 'UTC')::date, s.channel_id,
           coalesce(s.assigned_agent_id, '00000000-0000-0000-0000-000000000000'),
           coalesce(s.team_id, '00000000-0000-0000-0000-000000000000'), ventros.stats_slot(), count(*)
    FROM new_rows s
    GROUP BY 1, 2, 3, 4, 5
    ON CONFLICT (tenant_id, day, channel_id, agent_id, team_id, slot) DO UPDATE
    SET sessions_started = d.sessions_started + EXCLUDED.sessions_started;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.stats_count_sessions_started() IS 'Statement trigger: counts started sessions in crm_daily_stats';
CREATE TRIGGER stats_count_sessions_started AFTER INSERT ON ventros.sessions
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ventros.stats_count_sessions_started();

CREATE FUNCTION ventros.stats_count_session_change() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    first_response boolean := OLD.first_agent_response_at IS NULL AND NEW.first_agent_response_at IS NOT NULL;
    ended boolean := OLD.status = 'active' AND NEW.status <> 'active';
BEGIN
    IF first_response THEN
        INSERT INTO ventros.crm_daily_stats AS d (tenant_id, day, channel_id, agent_id, team_id, slot,
                                                  first_responses, first_response_seconds)
        VALUES (NEW.tenant_id, (NEW.first_agent_response_at AT TIME ZONE 'UTC')::date, NEW.channel_id,
                coalesce(NEW.assigned_agent_id, '00000000-0000-0000-0000-000000000000'),
                coalesce(NEW.team_id, '00000000-0000-0000-0000-000000000000'), ventros.stats_slot(),
                1, coalesce(NEW.agent_response_time_seconds, 0))
        ON CONFLICT (tenant_id, day, channel_id, agent_id, team_id, slot) DO UPDATE
        SET first_responses = d.first_responses + 1,
            first_response_seconds = d.first_response_seconds + EXCLUDED.first_response_seconds;
    END IF;
    IF ended THEN
        INSERT INTO ventros.crm_daily_stats AS d (tenant_id, day, channel_id, agent_id, team_id, slot,
                                                  sessions_ended, resolutions, resolution_seconds)
        VALUES (NEW.tenant_id, (NEW.ended_at AT TIME ZONE 'UTC')::date, NEW.channel_id,
                coalesce(NEW.assigned_agent_id, '00000000-0000-0000-0000-000000000000'),
                coalesce(NEW.team_id, '00000000-0000-0000-0000-000000000000'), ventros.stats_slot(),
                1, (NEW.first_agent_response_at IS NOT NULL)::integer,
                CASE WHEN NEW.first_agent_response_at IS NOT NULL
                     THEN extract(epoch FROM NEW.ended_at - NEW.started_at)::bigint ELSE 0 END)
        ON CONFLICT (tenant_id, day, channel_id, agent_id, team_id, slot) DO UPDATE
        SET sessions_ended = d.sessions_ended + 1, resolutions = d.resolutions + EXCLUDED.resolutions,
            resolution_seconds = d.resolution_seconds + EXCLUDED.resolution_seconds;
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.stats_count_session_change() IS
    'Row trigger: counts a session''s first agent response and its end (resolution time = end - start of sessions that got a response)';
CREATE TRIGGER stats_count_session_change AFTER UPDATE ON ventros.sessions
    FOR EACH ROW
    WHEN ((OLD.first_agent_response_at IS NULL AND NEW.first_agent_response_at IS NOT NULL)
          OR (OLD.status = 'active' AND NEW.status <> 'active'))
    EXECUTE FUNCTION ventros.stats_count_session_change();

-- compact_crm_daily_stats: folds the slots of past days into slot 0.  Slots
-- only spread concurrent writers of the current day; once a day is over they
-- just multiply the rows a report reads.  Run daily (pg_cron) for every
-- tenant, or by a tenant's session for its own rows.  Returns the slot
-- rows folded away.
CREATE FUNCTION ventros.compact_crm_daily_stats(before_day date DEFAULT current_date)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.current_tenant();
    removed bigint;
BEGIN
    IF tenant IS NULL THEN
        PERFORM ventros.require_platform_admin();
    END IF;
    WITH gone AS (
        DELETE FROM ventros.crm_daily_stats d
        WHERE d.day < before_day AND d.slot <> 0 AND (tenant IS NULL OR d.tenant_id = tenant)
        RETURNING d.*),
    folded AS (
        INSERT INTO ventros.crm_daily_stats AS d
            (tenant_id, day, channel_id, agent_id, team_id, slot, messages_in, messages_out, sessions_started,
             sessions_ended, first_responses, first_response_seconds, resolutions, resolution_seconds)
        SELECT g.tenant_id, g.day, g.channel_id, g.agent_id, g.team_id, 0, sum(g.messages_in), sum(g.messages_out),
               sum(g.sessions_started), sum(g.sessions_ended), sum(g.first_responses), sum(g.first_response_seconds),
               sum(g.resolutions), sum(g.resolution_seconds)
        FROM gone g GROUP BY 1, 2, 3, 4, 5
        ON CONFLICT (tenant_id, day, channel_id, agent_id, team_id, slot) DO UPDATE
        SET messages_in = d.messages_in + EXCLUDED.messages_in, messages_out = d.messages_out + EXCLUDED.messages_out,
            sessions_started = d.sessions_started + EXCLUDED.sessions_started,
            sessions_ended = d.sessions_ended + EXCLUDED.sessions_ended,
            first_responses = d.first_responses + EXCLUDED.first_responses,
            first_response_seconds = d.first_response_seconds + EXCLUDED.first_response_seconds,
            resolutions = d.resolutions + EXCLUDED.resolutions,
            resolution_seconds = d.resolution_seconds + EXCLUDED.resolution_seconds
        RETURNING 1)
    SELECT count(*) INTO removed FROM gone;   -- folded runs too: DML in WITH always does
    RETURN removed;
END
$$;
COMMENT ON FUNCTION ventros.compact_crm_daily_stats(date) IS
    'Folds the slots of days before before_day into slot 0 (the acting tenant''s, or every tenant''s for a platform administrator); returns the slot rows folded away';

-- crm_report: the counters summed by day, channel, agent or team over a date
-- range (UTC days, both ends included), with the average first response and
-- resolution times in seconds.
CREATE FUNCTION ventros.crm_report(from_day date, to_day date, group_by text DEFAULT 'day',
                                   channel_id uuid DEFAULT NULL, agent_id uuid DEFAULT NULL, team_id uuid DEFAULT NULL)
RETURNS TABLE (day date, key uuid, messages_in bigint, messages_out bigint, sessions_started bigint,
               sessions_ended bigint, first_responses bigint, avg_first_response_seconds numeric,
               resolutions bigint, avg_resolution_seconds numeric)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF group_by IS NULL OR group_by NOT IN ('day', 'channel', 'agent', 'team', 'day_channel', 'day_agent', 'day_team') THEN
        RAISE EXCEPTION 'unknown report grouping "%"', left(group_by, 32) USING ERRCODE = '22023',
            HINT = 'Use day, channel, agent, team, day_channel, day_agent or day_team.';
    END IF;
    IF from_day IS NULL OR to_day IS NULL OR to_day < from_day OR to_day - from_day > 366 THEN
        RAISE EXCEPTION 'report range must be 1 to 367 days' USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
    SELECT CASE WHEN group_by LIKE 'day%' THEN d.day END,
           CASE WHEN group_by LIKE '%channel' THEN d.channel_id WHEN group_by LIKE '%agent' THEN d.agent_id
                WHEN group_by LIKE '%team' THEN d.team_id END,
           sum(d.messages_in)::bigint, sum(d.messages_out)::bigint, sum(d.sessions_started)::bigint,
           sum(d.sessions_ended)::bigint, sum(d.first_responses)::bigint,
           round(sum(d.first_response_seconds)::numeric / nullif(sum(d.first_responses), 0), 1),
           sum(d.resolutions)::bigint,
           round(sum(d.resolution_seconds)::numeric / nullif(sum(d.resolutions), 0), 1)
    FROM ventros.crm_daily_stats d
    WHERE d.tenant_id = ventros.require_tenant() AND d.day BETWEEN from_day AND to_day
      AND (crm_report.channel_id IS NULL OR d.channel_id = crm_report.channel_id)
      AND (crm_report.agent_id IS NULL OR d.agent_id = crm_report.agent_id)
      AND (crm_report.team_id IS NULL OR d.team_id = crm_report.team_id)
    GROUP BY 1, 2
    ORDER BY 1, 2;
END
$$;
COMMENT ON FUNCTION ventros.crm_report(date, date, text, uuid, uuid, uuid) IS
    'Messages in/out, sessions started/ended, average first response and resolution times per day, channel, agent or team (nil uuid key = none), from crm_daily_stats';

GRANT EXECUTE ON FUNCTION ventros.crm_report(date, date, text, uuid, uuid, uuid) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.compact_crm_daily_stats(date) TO ventros_admin, ventros_platform_admin;

-- ---- sql/51_crm_queries.sql
-- The queries a CRM screen needs, each with keyset paging (the caller passes
-- the last row's sort key) and the hard maximum page size of
-- ventros.check_page_size() (54000 above ventros.max_page_size).  Each one is
-- served by an index in the order it returns.

-- contact_timeline: sessions, messages, notes and pipeline moves of a
-- contact, newest first.  Each branch reads at most page_size rows from its
-- own index (tenant, contact, time DESC, id DESC).
CREATE FUNCTION ventros.contact_timeline(contact_id uuid, before_at timestamptz DEFAULT NULL, before_id uuid DEFAULT NULL,
                                         page_size integer DEFAULT 50)
RETURNS TABLE (kind text, at timestamptz, id uuid, detail jsonb)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    n integer := ventros.check_page_size(page_size);
    b_at timestamptz := coalesce(before_at, 'infinity');
    b_id uuid := coalesce(before_id, 'ffffffff-ffff-ffff-ffff-ffffffffffff');
BEGIN
    RETURN QUERY
    SELECT t.kind, t.at, t.id, t.detail FROM (
        (SELECT 'session'::text AS kind, s.started_at AS at, s.id,
                jsonb_build_object('status', s.status, 'channel_id', s.channel_id, 'ended_at', s.ended_at,
                                   'end_reason', s.end_reason, 'message_count', s.message_count,
                                   'assigned_agent_id', s.assigned_agent_id) AS detail
         FROM ventros.sessions s
         WHERE s.tenant_id = tenant AND s.contact_id = contact_timeline.contact_id AND (s.started_at, s.id) < (b_at, b_id)
         ORDER BY s.started_at DESC, s.id DESC LIMIT n)
        UNION ALL
        (SELECT 'message', m."timestamp", m.id,
                jsonb_build_object('from_me', m.from_me, 'content_type', m.content_type, 'text', left(m.text, 200),
                                   'status', m.status, 'session_id', m.session_id, 'channel_id', m.channel_id)
         FROM ventros.messages m
         WHERE m.tenant_id = tenant AND m.contact_id = contact_timeline.contact_id AND (m."timestamp", m.id) < (b_at, b_id)
         ORDER BY m."timestamp" DESC, m.id DESC LIMIT n)
        UNION ALL
        (SELECT 'note', x.created_at, x.id,
                jsonb_build_object('note_type', x.note_type, 'content', left(x.content, 200), 'author_name', x.author_name,
                                   'pinned', x.pinned, 'priority', x.priority)
         FROM ventros.notes x
         WHERE x.tenant_id = tenant AND x.contact_id = contact_timeline.contact_id AND (x.created_at, x.id) < (b_at, b_id)
         ORDER BY x.created_at DESC, x.id DESC LIMIT n)
        UNION ALL
        (SELECT 'pipeline_move', c.entered_at, c.id,
                jsonb_build_object('pipeline_id', c.pipeline_id, 'status_id', c.status_id, 'exited_at', c.exited_at)
         FROM ventros.contact_pipeline_statuses c
         WHERE c.tenant_id = tenant AND c.contact_id = contact_timeline.contact_id AND (c.entered_at, c.id) < (b_at, b_id)
         ORDER BY c.entered_at DESC, c.id DESC LIMIT n)
    ) t
    ORDER BY t.at DESC, t.id DESC
    LIMIT n;
END
$$;
COMMENT ON FUNCTION ventros.contact_timeline(uuid, timestamptz, uuid, integer) IS
    'A contact''s sessions, messages, notes and pipeline moves, newest first; next page: pass the last row''s at and id';

-- open_sessions: active sessions of an agent (NULL: unassigned ones), on one
-- channel or all, most recently active first.
CREATE FUNCTION ventros.open_sessions(agent_id uuid DEFAULT NULL, channel_id uuid DEFAULT NULL,
                                      before_activity_at timestamptz DEFAULT NULL, before_id uuid DEFAULT NULL,
                                      page_size integer DEFAULT 50)
RETURNS SETOF ventros.sessions
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.* FROM ventros.sessions s
    WHERE s.tenant_id = ventros.require_tenant() AND s.status = 'active' AND s.deleted_at IS NULL
      AND s.assigned_agent_id IS NOT DISTINCT FROM open_sessions.agent_id
      AND (open_sessions.channel_id IS NULL OR s.channel_id = open_sessions.channel_id)
      AND (before_id IS NULL OR (s.last_activity_at, s.id) < (before_activity_at, before_id))
    ORDER BY s.last_activity_at DESC, s.id DESC
    LIMIT ventros.check_page_size(page_size)
$$;
COMMENT ON FUNCTION ventros.open_sessions(uuid, uuid, timestamptz, uuid, integer) IS
    'Active sessions of an agent (NULL: the unassigned queue), optionally of one channel, most recently active first, keyset paged';

CREATE FUNCTION ventros.open_session_counts()
RETURNS TABLE (agent_id uuid, channel_id uuid, open_sessions bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.assigned_agent_id, s.channel_id, count(*) FROM ventros.sessions s
    WHERE s.tenant_id = ventros.require_tenant() AND s.status = 'active' AND s.deleted_at IS NULL
    GROUP BY 1, 2 ORDER BY 1 NULLS FIRST, 2
    LIMIT current_setting('ventros.max_page_size')::integer
$$;
COMMENT ON FUNCTION ventros.open_session_counts() IS 'Number of active sessions per agent (NULL: unassigned) and channel';

-- session_messages: a session's messages in conversation order.
CREATE FUNCTION ventros.session_messages(session_id uuid, after_timestamp timestamptz DEFAULT NULL,
                                         after_id uuid DEFAULT NULL, page_size integer DEFAULT 50)
RETURNS SETOF ventros.messages
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m.* FROM ventros.messages m
    WHERE m.tenant_id = ventros.require_tenant() AND m.session_id = session_messages.session_id
      AND (after_id IS NULL OR (m."timestamp", m.id) > (after_timestamp, after_id))
    ORDER BY m."timestamp", m.id
    LIMIT ventros.check_page_size(page_size)
$$;
COMMENT ON FUNCTION ventros.session_messages(uuid, timestamptz, uuid, integer) IS
    'A session''s messages, oldest first; next page: pass the last row''s timestamp and id';

-- pipeline_board: the statuses of a pipeline with the number of contacts in each.
CREATE FUNCTION ventros.pipeline_board(pipeline_id uuid)
RETURNS TABLE (status_id uuid, name text, status_type text, "position" integer, color text, contacts bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
BEGIN
    PERFORM 1 FROM ventros.pipelines p WHERE p.tenant_id = tenant AND p.id = pipeline_board.pipeline_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pipeline % not found', pipeline_id USING ERRCODE = 'P0002';
    END IF;
    RETURN QUERY
    SELECT s.id, s.name, s.status_type, s.position, s.color,
           (SELECT count(*) FROM ventros.contact_pipeline_statuses c
            WHERE c.tenant_id = tenant AND c.pipeline_id = s.pipeline_id AND c.status_id = s.id AND c.exited_at IS NULL AND c.deleted_at IS NULL)
    FROM ventros.pipeline_statuses s
    WHERE s.tenant_id = tenant AND s.pipeline_id = pipeline_board.pipeline_id AND s.active
    ORDER BY s.position, s.id;
END
$$;
COMMENT ON FUNCTION ventros.pipeline_board(uuid) IS
    'The active statuses of a pipeline in position order, each with the number of contacts in it';

-- pipeline_status_contacts: the contacts in one status (a board column), most recent entry first.
CREATE FUNCTION ventros.pipeline_status_contacts(status_id uuid, before_entered_at timestamptz DEFAULT NULL,
                                                 before_id uuid DEFAULT NULL, page_size integer DEFAULT 50)
RETURNS TABLE (id uuid, contact_id uuid, name text, phone text, email text, entered_at timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.id, k.id, k.name, k.phone, k.email, c.entered_at
    FROM ventros.contact_pipeline_statuses c
    JOIN ventros.pipeline_statuses s ON s.tenant_id = c.tenant_id AND s.id = c.status_id
    JOIN ventros.contacts k ON k.tenant_id = c.tenant_id AND k.id = c.contact_id
    WHERE c.tenant_id = ventros.require_tenant() AND c.status_id = pipeline_status_contacts.status_id
      AND c.pipeline_id = s.pipeline_id AND c.exited_at IS NULL AND c.deleted_at IS NULL
      AND (before_id IS NULL OR (c.entered_at, c.id) < (before_entered_at, before_id))
    ORDER BY c.entered_at DESC, c.id DESC
    LIMIT ventros.check_page_size(page_size)
$$;
COMMENT ON FUNCTION ventros.pipeline_status_contacts(uuid, timestamptz, uuid, integer) IS
    'The contacts currently in a pipeline status (a board column), most recent entry first, keyset paged by (entered_at, id)';

-- search_messages: full-text search over message text (GIN index
-- messages_text_search, 'simple' configuration: no stemming, any language),
-- newest first.  The query is in web search syntax ("a b", a OR b, -a).
-- SECURITY DEFINER: under row-level security the planner may not use the GIN
-- index for @@ (not leakproof, so it must run after the policy's filter);
-- the function states the tenant and live-row conditions itself instead.
CREATE FUNCTION ventros.search_messages(query text, channel_id uuid DEFAULT NULL, contact_id uuid DEFAULT NULL,
                                        before_timestamp timestamptz DEFAULT NULL, before_id uuid DEFAULT NULL,
                                        page_size integer DEFAULT 50)
RETURNS SETOF ventros.messages
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q tsquery;
    tenant text := ventros.require_tenant();
BEGIN
    IF query IS NULL OR btrim(query) = '' THEN
        RAISE EXCEPTION 'search query must not be empty' USING ERRCODE = '22023';
    END IF;
    q := websearch_to_tsquery('simple', ventros.check_length(query, 500, 'search query'));
    RETURN QUERY
    SELECT m.* FROM ventros.messages m
    WHERE m.tenant_id = tenant AND m.deleted_at IS NULL
      AND to_tsvector('simple'::regconfig, coalesce(m.text, '')) @@ q
      AND (search_messages.channel_id IS NULL OR m.channel_id = search_messages.channel_id)
      AND (search_messages.contact_id IS NULL OR m.contact_id = search_messages.contact_id)
      AND (before_id IS NULL OR (m."timestamp", m.id) < (before_timestamp, before_id))
    ORDER BY m."timestamp" DESC, m.id DESC
    LIMIT ventros.check_page_size(page_size);
END
$$;
COMMENT ON FUNCTION ventros.search_messages(text, uuid, uuid, timestamptz, uuid, integer) IS
    'Messages whose text matches a web-search style query (full text, GIN), newest first, keyset paged by (timestamp, id)';

GRANT EXECUTE ON FUNCTION ventros.contact_timeline(uuid, timestamptz, uuid, integer),
    ventros.open_sessions(uuid, uuid, timestamptz, uuid, integer), ventros.open_session_counts(),
    ventros.session_messages(uuid, timestamptz, uuid, integer), ventros.pipeline_board(uuid),
    ventros.pipeline_status_contacts(uuid, timestamptz, uuid, integer),
    ventros.search_messages(text, uuid, uuid, timestamptz, uuid, integer) TO ventros_viewer;

-- ---- sql/60_rest_commands.sql
-- Building blocks of the part-B aggregates (sql/61_* .. sql/89_*): a command
-- that changes named fields of one row, a lookup that raises P0002, and a
-- check that an enumerated argument is one of its values (22023, nothing
-- written).  They wrap apply_changes so every command goes through the engine
-- (version check VN001, state machine VN002, event with changed/previous).

-- change_row: apply_changes with the keys of changes as the updatable fields;
-- for commands whose fields are fixed by the command itself, not the caller.
CREATE FUNCTION ventros.change_row(row_type anyelement, aggregate text, row_id uuid,
                                   expected_version integer, changes jsonb)
RETURNS anyelement
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.apply_changes(row_type, aggregate, row_id, expected_version, changes,
                                 ARRAY(SELECT jsonb_object_keys(changes)))
$$;
COMMENT ON FUNCTION ventros.change_row(anyelement, text, uuid, integer, jsonb) IS
    'A command''s update of the fields it names (P0002 absent, VN001 stale, VN002 transition refused)';

-- require_value: value when it is one of allowed, else 22023 naming what.
CREATE FUNCTION ventros.require_value(value text, allowed text[], what text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF value IS NULL THEN
        RAISE EXCEPTION '% must not be null', what USING ERRCODE = '23502';
    END IF;
    IF NOT value = ANY (allowed) THEN
        RAISE EXCEPTION 'unknown % "%"', what, left(value, 64)
            USING ERRCODE = '22023', HINT = format('Use one of: %s.', array_to_string(allowed, ', '));
    END IF;
    RETURN value;
END
$$;
COMMENT ON FUNCTION ventros.require_value(text, text[], text) IS
    'Returns value when it is one of allowed; 23502 when null, 22023 otherwise';

-- require_object: a jsonb argument that must be an object (or array).
CREATE FUNCTION ventros.require_json(value jsonb, json_type text, what text)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF value IS NOT NULL AND jsonb_typeof(value) <> json_type THEN
        RAISE EXCEPTION '% must be a JSON %', what, json_type
            USING ERRCODE = '22023', DETAIL = format('It is a JSON %s.', jsonb_typeof(value));
    END IF;
    RETURN value;
END
$$;
COMMENT ON FUNCTION ventros.require_json(jsonb, text, text) IS
    'Returns value when it is null or a JSON value of json_type (object, array); 22023 otherwise';

-- not_found: raises P0002 for aggregate id (a shorthand of the lookups).
CREATE FUNCTION ventros.not_found(aggregate text, row_id uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION '% % not found', aggregate, row_id USING ERRCODE = 'P0002';
END
$$;
COMMENT ON FUNCTION ventros.not_found(text, uuid) IS 'Raises P0002: aggregate id not found';

GRANT EXECUTE ON FUNCTION ventros.require_value(text, text[], text), ventros.require_json(jsonb, text, text),
    ventros.not_found(text, uuid)
    TO ventros_viewer, ventros_anon, ventros_authenticator, ventros_platform_admin;
GRANT EXECUTE ON FUNCTION ventros.change_row(anyelement, text, uuid, integer, jsonb) TO ventros_agent;

-- ---- sql/61_products.sql
-- Aggregate 32, Product (core): the product line a feature belongs to.  An
-- enumeration only, used in billing and subscription metadata; no table and
-- no events.

CREATE TYPE ventros.product AS ENUM ('crm', 'bi', 'automation');
COMMENT ON TYPE ventros.product IS 'Product line of a feature (crm, bi, automation), used by billing metadata';

CREATE FUNCTION ventros.list_products() RETURNS SETOF ventros.product
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT unnest(enum_range(NULL::ventros.product)) $$;
COMMENT ON FUNCTION ventros.list_products() IS 'The product lines, in declaration order';

GRANT USAGE ON TYPE ventros.product TO ventros_viewer, ventros_anon;
GRANT EXECUTE ON FUNCTION ventros.list_products() TO ventros_viewer, ventros_anon;

-- ---- sql/62_billing_accounts.sql
-- Aggregate 25, BillingAccount (core): the paying customer.  Its
-- payment_status machine is declared below; the invariant "an active account
-- has a payment method" is a CHECK, and suspended mirrors the status.
-- user_id names the owning user (sql/12_users.sql of the http part); it has
-- no foreign key here so billing loads without the users table.

CREATE TABLE ventros.billing_accounts (
    id                 uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id          text        NOT NULL,
    version            integer     NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at         timestamptz,
    user_id            uuid        NOT NULL,
    name               text        NOT NULL,
    stripe_customer_id text,
    payment_status     text        NOT NULL DEFAULT 'pending',
    payment_methods    jsonb       NOT NULL DEFAULT '[]',
    billing_email      text        NOT NULL,
    suspended          boolean     NOT NULL DEFAULT false,
    suspended_at       timestamptz,
    suspension_reason  text,
    canceled_at        timestamptz,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT billing_accounts_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT billing_accounts_status_known CHECK (payment_status IN ('pending', 'active', 'suspended', 'canceled')),
    CONSTRAINT billing_accounts_email_valid CHECK (billing_email = lower(billing_email)
                                                   AND billing_email ~ '^[^@\s]+@[^@\s]+\.[^@\s.]+$'),
    CONSTRAINT billing_accounts_methods_array CHECK (jsonb_typeof(payment_methods) = 'array'),
    CONSTRAINT billing_accounts_active_has_method CHECK (payment_status <> 'active' OR jsonb_array_length(payment_methods) > 0),
    CONSTRAINT billing_accounts_suspended_flag CHECK (suspended = (payment_status = 'suspended')),
    CONSTRAINT billing_accounts_stripe_id_format CHECK (stripe_customer_id ~ '^cus_[A-Za-z0-9]{1,200}$')
);
CREATE UNIQUE INDEX billing_accounts_unique_stripe ON ventros.billing_accounts (tenant_id, stripe_customer_id)
    WHERE deleted_at IS NULL AND stripe_customer_id IS NOT NULL;
CREATE INDEX billing_accounts_by_user ON ventros.billing_accounts (tenant_id, user_id) WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.billing_accounts IS 'BillingAccount: the paying customer, its payment status and Stripe link';

SELECT ventros.register_aggregate('billing_account', 'ventros.billing_accounts', 'core',
    state_column => 'payment_status',
    transitions => '[
        {"from": null, "to": "pending"},
        {"from": "pending", "to": "active", "event": "billing_account.payment_activated", "description": "A payment method was activated on a billing account."},
        {"from": "pending", "to": "suspended", "event": "billing_account.suspended", "description": "A billing account was suspended."},
        {"from": "active", "to": "suspended", "event": "billing_account.suspended"},
        {"from": "suspended", "to": "active", "event": "billing_account.reactivated", "description": "A suspended billing account was reactivated."},
        {"from": "pending", "to": "canceled", "event": "billing_account.canceled", "description": "A billing account was canceled."},
        {"from": "active", "to": "canceled", "event": "billing_account.canceled"},
        {"from": "suspended", "to": "canceled", "event": "billing_account.canceled"}
    ]',
    redacted_columns => '{payment_methods}',
    privileges => '{"ventros_viewer": ["SELECT"], "ventros_admin": ["INSERT", "UPDATE", "DELETE"]}',
    description => 'The paying customer');
SELECT ventros.register_event_type('billing_account.stripe_customer_linked', 'A Stripe customer was linked to a billing account.');

-- Invariant of the domain: a project is created (or moved) only under an
-- active, unsuspended billing account.  The account row is share-locked, so
-- a concurrent suspension waits for the project or the project sees it.
ALTER TABLE ventros.projects
    ADD CONSTRAINT projects_billing_account_fk FOREIGN KEY (tenant_id, billing_account_id)
        REFERENCES ventros.billing_accounts (tenant_id, id);

CREATE FUNCTION ventros.projects_require_active_billing() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    status text;
BEGIN
    IF NEW.billing_account_id IS NULL
       OR (TG_OP = 'UPDATE' AND NEW.billing_account_id IS NOT DISTINCT FROM OLD.billing_account_id) THEN
        RETURN NEW;
    END IF;
    SELECT b.payment_status INTO status FROM ventros.billing_accounts b
    WHERE b.tenant_id = coalesce(NEW.tenant_id, ventros.require_tenant()) AND b.id = NEW.billing_account_id
    FOR SHARE;
    IF status IS DISTINCT FROM 'active' THEN
        RAISE EXCEPTION 'billing account % cannot create projects', NEW.billing_account_id
            USING ERRCODE = '23514', DETAIL = format('Its payment status is %s.', coalesce(status, 'unknown')),
                  HINT = 'Activate the account''s payment first.';
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION ventros.projects_require_active_billing() IS
    'Refuses a project under a billing account that is not active (23514)';
CREATE TRIGGER projects_require_active_billing BEFORE INSERT OR UPDATE OF billing_account_id ON ventros.projects
    FOR EACH ROW EXECUTE FUNCTION ventros.projects_require_active_billing();

CREATE FUNCTION ventros.create_billing_account(name text, billing_email text, user_id uuid, payment_methods jsonb DEFAULT '[]')
RETURNS ventros.billing_accounts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.billing_accounts;
BEGIN
    IF name IS NULL OR billing_email IS NULL OR user_id IS NULL THEN
        RAISE EXCEPTION 'billing account % must not be null',
            CASE WHEN name IS NULL THEN 'name' WHEN billing_email IS NULL THEN 'billing_email' ELSE 'user_id' END
            USING ERRCODE = '23502';
    END IF;
    INSERT INTO ventros.billing_accounts (user_id, name, billing_email, payment_methods)
    VALUES (user_id, ventros.check_length(btrim(name), 200, 'billing account name'), ventros.normalize_email(billing_email),
            coalesce(ventros.require_json(payment_methods, 'array', 'payment methods'), '[]'))
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.create_billing_account(text, text, uuid, jsonb) IS
    'Creates a pending billing account (with the payment methods known at registration, if any); emits billing_account.created';

CREATE FUNCTION ventros.activate_billing_payment(billing_account_id uuid, expected_version integer, payment_method jsonb)
RETURNS ventros.billing_accounts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current ventros.billing_accounts := ventros.get_billing_account(billing_account_id);
BEGIN
    IF payment_method IS NULL OR jsonb_typeof(payment_method) <> 'object' OR NOT payment_method ? 'id' THEN
        RAISE EXCEPTION 'payment method must be a JSON object with an id' USING ERRCODE = '22023',
            HINT = 'For example {"id": "pm_123", "type": "card"}.';
    END IF;
    IF current.payment_status <> 'pending' THEN
        RAISE EXCEPTION 'billing account % is %; payment activation needs a pending account', billing_account_id,
            current.payment_status
            USING ERRCODE = 'VN002', HINT = 'Reactivate a suspended account with ventros.reactivate_billing_account().';
    END IF;
    RETURN ventros.change_row(NULL::ventros.billing_accounts, 'billing_account', billing_account_id, expected_version,
        jsonb_build_object('payment_status', 'active',
                           'payment_methods', current.payment_methods || jsonb_build_array(payment_method)));
END
$$;
COMMENT ON FUNCTION ventros.activate_billing_payment(uuid, integer, jsonb) IS
    'Adds a payment method and activates a pending account (VN002 when suspended or canceled); emits billing_account.payment_activated';

CREATE FUNCTION ventros.suspend_billing_account(billing_account_id uuid, expected_version integer, reason text)
RETURNS ventros.billing_accounts
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.change_row(NULL::ventros.billing_accounts, 'billing_account', billing_account_id, expected_version,
        jsonb_build_object('payment_status', 'suspended', 'suspended', true, 'suspended_at', now(),
                           'suspension_reason', ventros.check_length(reason, 500, 'suspension reason')))
$$;
COMMENT ON FUNCTION ventros.suspend_billing_account(uuid, integer, text) IS
    'Suspends a pending or active account; emits billing_account.suspended';

CREATE FUNCTION ventros.reactivate_billing_account(billing_account_id uuid, expected_version integer)
RETURNS ventros.billing_accounts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current ventros.billing_accounts := ventros.get_billing_account(billing_account_id);
BEGIN
    IF current.payment_status <> 'suspended' THEN
        RAISE EXCEPTION 'billing account % is %, not suspended', billing_account_id, current.payment_status
            USING ERRCODE = 'VN002';
    END IF;
    RETURN ventros.change_row(NULL::ventros.billing_accounts, 'billing_account', billing_account_id, expected_version,
        jsonb_build_object('payment_status', 'active', 'suspended', false, 'suspended_at', NULL, 'suspension_reason', NULL));
END
$$;
COMMENT ON FUNCTION ventros.reactivate_billing_account(uuid, integer) IS
    'Reactivates a suspended account; needs a payment method (23514); emits billing_account.reactivated';

CREATE FUNCTION ventros.cancel_billing_account(billing_account_id uuid, expected_version integer)
RETURNS ventros.billing_accounts
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.change_row(NULL::ventros.billing_accounts, 'billing_account', billing_account_id, expected_version,
        jsonb_build_object('payment_status', 'canceled', 'suspended', false, 'canceled_at', now()))
$$;
COMMENT ON FUNCTION ventros.cancel_billing_account(uuid, integer) IS
    'Cancels an account (terminal); emits billing_account.canceled';

CREATE FUNCTION ventros.update_billing_account(billing_account_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.billing_accounts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    normalized jsonb := changes;
BEGIN
    IF jsonb_typeof(changes) = 'object' AND jsonb_typeof(changes->'billing_email') = 'string' THEN
        normalized := jsonb_set(normalized, '{billing_email}', to_jsonb(ventros.normalize_email(changes->>'billing_email')));
    END IF;
    RETURN ventros.apply_changes(NULL::ventros.billing_accounts, 'billing_account', billing_account_id,
                                 expected_version, normalized, ARRAY['name', 'billing_email']);
END
$$;
COMMENT ON FUNCTION ventros.update_billing_account(uuid, integer, jsonb) IS
    'Changes the name or billing email of an account; emits billing_account.updated';

CREATE FUNCTION ventros.link_stripe_customer(billing_account_id uuid, expected_version integer, stripe_customer_id text)
RETURNS ventros.billing_accounts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.billing_accounts;
BEGIN
    IF stripe_customer_id IS NULL OR stripe_customer_id !~ '^cus_[A-Za-z0-9]{1,200}$' THEN
        RAISE EXCEPTION 'malformed Stripe customer id "%"', left(stripe_customer_id, 64)
            USING ERRCODE = '22P02', HINT = 'Stripe customer ids look like cus_NffrFeUfNV2Hib.';
    END IF;
    result := ventros.change_row(NULL::ventros.billing_accounts, 'billing_account', billing_account_id,
                                 expected_version, jsonb_build_object('stripe_customer_id', stripe_customer_id));
    PERFORM ventros.emit('billing_account.stripe_customer_linked', 'billing_account', result.id,
                         jsonb_build_object('stripe_customer_id', stripe_customer_id), result.version);
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'Stripe customer % is linked to another billing account', stripe_customer_id
        USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.link_stripe_customer(uuid, integer, text) IS
    'Links the Stripe customer; emits billing_account.updated and billing_account.stripe_customer_linked';

CREATE FUNCTION ventros.get_billing_account(billing_account_id uuid) RETURNS ventros.billing_accounts
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.get_row(NULL::ventros.billing_accounts, 'billing account', billing_account_id) $$;
COMMENT ON FUNCTION ventros.get_billing_account(uuid) IS 'A live billing account of the acting tenant, or P0002';

CREATE FUNCTION ventros.list_billing_accounts(user_id uuid DEFAULT NULL, only_active boolean DEFAULT false)
RETURNS SETOF ventros.billing_accounts
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT b.* FROM ventros.billing_accounts b
    WHERE b.tenant_id = ventros.require_tenant()
      AND (list_billing_accounts.user_id IS NULL OR b.user_id = list_billing_accounts.user_id)
      AND (NOT only_active OR b.payment_status = 'active')
    ORDER BY b.created_at, b.id
    LIMIT current_setting('ventros.max_page_size')::integer
$$;
COMMENT ON FUNCTION ventros.list_billing_accounts(uuid, boolean) IS
    'Billing accounts of the acting tenant, by user and optionally only active ones, oldest first';

GRANT EXECUTE ON FUNCTION ventros.get_billing_account(uuid), ventros.list_billing_accounts(uuid, boolean) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.create_billing_account(text, text, uuid, jsonb),
    ventros.activate_billing_payment(uuid, integer, jsonb), ventros.suspend_billing_account(uuid, integer, text),
    ventros.reactivate_billing_account(uuid, integer), ventros.cancel_billing_account(uuid, integer),
    ventros.update_billing_account(uuid, integer, jsonb), ventros.link_stripe_customer(uuid, integer, text)
    TO ventros_admin;

-- ---- sql/63_subscriptions.sql
-- Aggregate 26, Subscription (core): a Stripe subscription of a billing
-- account to a price.  The status machine is Stripe's; at most one active or
-- trialing subscription per account is a partial unique index.

CREATE TABLE ventros.subscriptions (
    id                     uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id              text        NOT NULL,
    version                integer     NOT NULL DEFAULT 1,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    deleted_at             timestamptz,
    billing_account_id     uuid        NOT NULL,
    stripe_subscription_id text        NOT NULL,
    stripe_price_id        text        NOT NULL,
    status                 text        NOT NULL,
    current_period_start   timestamptz NOT NULL,
    current_period_end     timestamptz NOT NULL,
    trial_start            timestamptz,
    trial_end              timestamptz,
    cancel_at              timestamptz,
    canceled_at            timestamptz,
    cancel_at_period_end   boolean     NOT NULL DEFAULT false,
    product                ventros.product NOT NULL DEFAULT 'crm',
    metadata               jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, billing_account_id) REFERENCES ventros.billing_accounts (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT subscriptions_status_known CHECK (status IN ('trialing', 'active', 'incomplete', 'incomplete_expired',
                                                            'past_due', 'canceled', 'unpaid', 'paused')),
    CONSTRAINT subscriptions_period_order CHECK (current_period_end > current_period_start),
    CONSTRAINT subscriptions_trial_order CHECK (trial_end > trial_start),
    CONSTRAINT subscriptions_stripe_ids CHECK (stripe_subscription_id ~ '^sub_[A-Za-z0-9]{1,200}$'
                                               AND stripe_price_id ~ '^price_[A-Za-z0-9]{1,200}$'),
    CONSTRAINT subscriptions_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
);
CREATE UNIQUE INDEX subscriptions_unique_stripe ON ventros.subscriptions (tenant_id, stripe_subscription_id);
CREATE UNIQUE INDEX subscriptions_one_current ON ventros.subscriptions (tenant_id, billing_account_id)
    WHERE status IN ('active', 'trialing') AND deleted_at IS NULL;
CREATE INDEX subscriptions_trial_end ON ventros.subscriptions (tenant_id, trial_end) WHERE status = 'trialing';
COMMENT ON TABLE ventros.subscriptions IS 'Subscription: a Stripe subscription of a billing account to a price';

SELECT ventros.register_aggregate('subscription', 'ventros.subscriptions', 'core',
    state_column => 'status',
    transitions => '[
        {"from": null, "to": "incomplete"},
        {"from": null, "to": "trialing"},
        {"from": null, "to": "active"},
        {"from": "incomplete", "to": "active", "event": "subscription.status_changed", "description": "The status of a subscription changed."},
        {"from": "incomplete", "to": "incomplete_expired", "event": "subscription.status_changed"},
        {"from": "trialing", "to": "active", "event": "subscription.status_changed"},
        {"from": "trialing", "to": "past_due", "event": "subscription.status_changed"},
        {"from": "trialing", "to": "canceled", "event": "subscription.canceled", "description": "A subscription was canceled."},
        {"from": "active", "to": "past_due", "event": "subscription.status_changed"},
        {"from": "active", "to": "unpaid", "event": "subscription.status_changed"},
        {"from": "active", "to": "paused", "event": "subscription.status_changed"},
        {"from": "active", "to": "canceled", "event": "subscription.canceled"},
        {"from": "past_due", "to": "active", "event": "subscription.status_changed"},
        {"from": "past_due", "to": "unpaid", "event": "subscription.status_changed"},
        {"from": "past_due", "to": "canceled", "event": "subscription.canceled"},
        {"from": "unpaid", "to": "active", "event": "subscription.status_changed"},
        {"from": "unpaid", "to": "canceled", "event": "subscription.canceled"},
        {"from": "paused", "to": "active", "event": "subscription.status_changed"},
        {"from": "paused", "to": "canceled", "event": "subscription.canceled"},
        {"from": "canceled", "to": "active", "event": "subscription.reactivated", "description": "A canceled subscription was reactivated."}
    ]',
    privileges => '{"ventros_viewer": ["SELECT"], "ventros_admin": ["INSERT", "UPDATE", "DELETE"]}',
    description => 'A Stripe subscription of a billing account');
SELECT ventros.register_event_type('subscription.trial_started', 'A subscription started a trial.');
SELECT ventros.register_event_type('subscription.period_updated', 'The billing period of a subscription moved.');
SELECT ventros.register_event_type('subscription.price_changed', 'The price of a subscription changed.');
SELECT ventros.register_event_type('subscription.cancellation_scheduled', 'A subscription was set to cancel at the end of its period.');

CREATE FUNCTION ventros.create_subscription(
    billing_account_id     uuid,
    stripe_subscription_id text,
    stripe_price_id        text,
    status                 text,
    current_period_start   timestamptz,
    current_period_end     timestamptz,
    trial_end              timestamptz DEFAULT NULL,
    product                ventros.product DEFAULT 'crm',
    metadata               jsonb DEFAULT '{}')
RETURNS ventros.subscriptions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.subscriptions;
    constraint_name text;
BEGIN
    PERFORM ventros.get_billing_account(billing_account_id);
    PERFORM ventros.require_value(status, ARRAY['incomplete', 'trialing', 'active'], 'initial subscription status');
    IF status = 'trialing' AND trial_end IS NULL THEN
        RAISE EXCEPTION 'a trialing subscription needs trial_end' USING ERRCODE = '23502';
    END IF;
    INSERT INTO ventros.subscriptions (billing_account_id, stripe_subscription_id, stripe_price_id, status,
        current_period_start, current_period_end, trial_start, trial_end, product, metadata)
    VALUES (billing_account_id, stripe_subscription_id, stripe_price_id, status, current_period_start,
        current_period_end, CASE WHEN trial_end IS NOT NULL THEN current_period_start END, trial_end,
        coalesce(product, 'crm'), coalesce(ventros.require_json(metadata, 'object', 'subscription metadata'), '{}'))
    RETURNING * INTO result;
    IF result.status = 'trialing' THEN
        PERFORM ventros.emit('subscription.trial_started', 'subscription', result.id,
                             jsonb_build_object('trial_start', result.trial_start, 'trial_end', result.trial_end),
                             result.version);
    END IF;
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    GET STACKED DIAGNOSTICS constraint_name = CONSTRAINT_NAME;
    RAISE EXCEPTION '%', CASE constraint_name
            WHEN 'subscriptions_one_current' THEN 'billing account already has an active or trialing subscription'
            ELSE format('Stripe subscription %s exists already', stripe_subscription_id) END
        USING ERRCODE = '23505', CONSTRAINT = constraint_name;
END
$$;
COMMENT ON FUNCTION ventros.create_subscription(uuid, text, text, text, timestamptz, timestamptz, timestamptz, ventros.product, jsonb) IS
    'Creates a subscription (incomplete, trialing or active); emits subscription.created and, for a trial, subscription.trial_started';

CREATE FUNCTION ventros.set_subscription_status(subscription_id uuid, expected_version integer, status text)
RETURNS ventros.subscriptions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.require_value(status, ARRAY['trialing', 'active', 'incomplete', 'incomplete_expired',
                                                'past_due', 'canceled', 'unpaid', 'paused'], 'subscription status');
    RETURN ventros.change_row(NULL::ventros.subscriptions, 'subscription', subscription_id, expected_version,
        jsonb_build_object('status', status)
        || CASE WHEN status = 'canceled' THEN jsonb_build_object('canceled_at', now()) ELSE '{}' END);
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'billing account already has an active or trialing subscription' USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.set_subscription_status(uuid, integer, text) IS
    'Moves a subscription along Stripe''s machine (VN002 otherwise); emits subscription.status_changed, .canceled or .reactivated';

CREATE FUNCTION ventros.update_subscription_period(subscription_id uuid, expected_version integer,
                                                   period_start timestamptz, period_end timestamptz)
RETURNS ventros.subscriptions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.subscriptions;
BEGIN
    result := ventros.change_row(NULL::ventros.subscriptions, 'subscription', subscription_id, expected_version,
        jsonb_build_object('current_period_start', period_start, 'current_period_end', period_end));
    PERFORM ventros.emit('subscription.period_updated', 'subscription', result.id,
        jsonb_build_object('current_period_start', period_start, 'current_period_end', period_end), result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.update_subscription_period(uuid, integer, timestamptz, timestamptz) IS
    'Moves the billing period (end after start, 23514); emits subscription.updated and subscription.period_updated';

CREATE FUNCTION ventros.change_subscription_price(subscription_id uuid, expected_version integer, stripe_price_id text)
RETURNS ventros.subscriptions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    previous ventros.subscriptions := ventros.get_subscription(subscription_id);
    result ventros.subscriptions;
BEGIN
    result := ventros.change_row(NULL::ventros.subscriptions, 'subscription', subscription_id, expected_version,
        jsonb_build_object('stripe_price_id', stripe_price_id));
    PERFORM ventros.emit('subscription.price_changed', 'subscription', result.id,
        jsonb_build_object('stripe_price_id', stripe_price_id, 'previous_price_id', previous.stripe_price_id), result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.change_subscription_price(uuid, integer, text) IS
    'Changes the price; emits subscription.updated and subscription.price_changed';

CREATE FUNCTION ventros.schedule_subscription_cancellation(subscription_id uuid, expected_version integer)
RETURNS ventros.subscriptions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current ventros.subscriptions := ventros.get_subscription(subscription_id);
    result ventros.subscriptions;
BEGIN
    IF current.status IN ('canceled', 'incomplete_expired') THEN
        RAISE EXCEPTION 'subscription % is %', subscription_id, current.status
            USING ERRCODE = 'VN002', HINT = 'Only a live subscription can be set to cancel.';
    END IF;
    result := ventros.change_row(NULL::ventros.subscriptions, 'subscription', subscription_id, expected_version,
        jsonb_build_object('cancel_at_period_end', true, 'cancel_at', current.current_period_end));
    PERFORM ventros.emit('subscription.cancellation_scheduled', 'subscription', result.id,
        jsonb_build_object('cancel_at', result.cancel_at), result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.schedule_subscription_cancellation(uuid, integer) IS
    'Sets a subscription to cancel at its period end (VN002 when canceled); emits subscription.updated and subscription.cancellation_scheduled';

CREATE FUNCTION ventros.cancel_subscription(subscription_id uuid, expected_version integer)
RETURNS ventros.subscriptions
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.set_subscription_status(subscription_id, expected_version, 'canceled') $$;
COMMENT ON FUNCTION ventros.cancel_subscription(uuid, integer) IS 'Cancels now; emits subscription.canceled';

CREATE FUNCTION ventros.reactivate_subscription(subscription_id uuid, expected_version integer)
RETURNS ventros.subscriptions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN ventros.change_row(NULL::ventros.subscriptions, 'subscription', subscription_id, expected_version,
        '{"status": "active", "canceled_at": null, "cancel_at": null, "cancel_at_period_end": false}');
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'billing account already has an active or trialing subscription' USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.reactivate_subscription(uuid, integer) IS
    'Reactivates a canceled subscription; emits subscription.reactivated';

CREATE FUNCTION ventros.get_subscription(subscription_id uuid) RETURNS ventros.subscriptions
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.get_row(NULL::ventros.subscriptions, 'subscription', subscription_id) $$;
COMMENT ON FUNCTION ventros.get_subscription(uuid) IS 'A live subscription of the acting tenant, or P0002';

CREATE FUNCTION ventros.list_subscriptions(billing_account_id uuid DEFAULT NULL, status text DEFAULT NULL,
                                           stripe_subscription_id text DEFAULT NULL, trial_ends_before timestamptz DEFAULT NULL)
RETURNS SETOF ventros.subscriptions
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.* FROM ventros.subscriptions s
    WHERE s.tenant_id = ventros.require_tenant()
      AND (list_subscriptions.billing_account_id IS NULL OR s.billing_account_id = list_subscriptions.billing_account_id)
      AND (list_subscriptions.status IS NULL OR s.status = list_subscriptions.status)
      AND (list_subscriptions.stripe_subscription_id IS NULL OR s.stripe_subscription_id = list_subscriptions.stripe_subscription_id)
      AND (trial_ends_before IS NULL OR (s.status = 'trialing' AND s.trial_end < trial_ends_before))
    ORDER BY s.created_at, s.id
    LIMIT current_setting('ventros.max_page_size')::integer
$$;
COMMENT ON FUNCTION ventros.list_subscriptions(uuid, text, text, timestamptz) IS
    'Subscriptions by account, status, Stripe id, or trials ending before a time';

GRANT EXECUTE ON FUNCTION ventros.get_subscription(uuid), ventros.list_subscriptions(uuid, text, text, timestamptz)
    TO ventros_viewer;
GRANT EXECUTE ON FUNCTION
    ventros.create_subscription(uuid, text, text, text, timestamptz, timestamptz, timestamptz, ventros.product, jsonb),
    ventros.set_subscription_status(uuid, integer, text),
    ventros.update_subscription_period(uuid, integer, timestamptz, timestamptz),
    ventros.change_subscription_price(uuid, integer, text), ventros.schedule_subscription_cancellation(uuid, integer),
    ventros.cancel_subscription(uuid, integer), ventros.reactivate_subscription(uuid, integer)
    TO ventros_admin;

-- ---- sql/64_invoices.sql
-- Aggregate 27, Invoice (core): a Stripe invoice mirrored locally.  Amounts
-- are minor units and never negative; amount_remaining is computed from the
-- other two, so it cannot disagree with them.

CREATE TABLE ventros.invoices (
    id                     uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id              text        NOT NULL,
    version                integer     NOT NULL DEFAULT 1,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    deleted_at             timestamptz,
    billing_account_id     uuid        NOT NULL,
    subscription_id        uuid,
    stripe_invoice_id      text        NOT NULL,
    stripe_subscription_id text,
    amount_due             bigint      NOT NULL,
    amount_paid            bigint      NOT NULL DEFAULT 0,
    amount_remaining       bigint      GENERATED ALWAYS AS (amount_due - amount_paid) STORED,
    currency               text        NOT NULL,
    status                 text        NOT NULL DEFAULT 'draft',
    hosted_invoice_url     text,
    invoice_pdf            text,
    due_date               timestamptz,
    paid_at                timestamptz,
    payment_failures       integer     NOT NULL DEFAULT 0,
    last_payment_error     text,
    metadata               jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, billing_account_id) REFERENCES ventros.billing_accounts (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, subscription_id) REFERENCES ventros.subscriptions (tenant_id, id) ON DELETE SET NULL (subscription_id),
    CONSTRAINT invoices_status_known CHECK (status IN ('draft', 'open', 'paid', 'uncollectible', 'void')),
    CONSTRAINT invoices_amounts_not_negative CHECK (amount_due >= 0 AND amount_paid >= 0 AND amount_paid <= amount_due),
    CONSTRAINT invoices_currency_iso CHECK (currency ~ '^[a-z]{3}$'),
    CONSTRAINT invoices_stripe_id CHECK (stripe_invoice_id ~ '^in_[A-Za-z0-9]{1,200}$'),
    CONSTRAINT invoices_urls CHECK (hosted_invoice_url ~ '^https://' AND invoice_pdf ~ '^https://'),
    CONSTRAINT invoices_paid_complete CHECK (status <> 'paid' OR (amount_paid = amount_due AND paid_at IS NOT NULL)),
    CONSTRAINT invoices_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
);
CREATE UNIQUE INDEX invoices_unique_stripe ON ventros.invoices (tenant_id, stripe_invoice_id);
CREATE INDEX invoices_by_account ON ventros.invoices (tenant_id, billing_account_id, created_at);
CREATE INDEX invoices_open_due ON ventros.invoices (tenant_id, due_date) WHERE status = 'open';
COMMENT ON TABLE ventros.invoices IS 'Invoice: a Stripe invoice mirrored locally (amounts in minor units)';

SELECT ventros.register_aggregate('invoice', 'ventros.invoices', 'core',
    state_column => 'status',
    transitions => '[
        {"from": null, "to": "draft"},
        {"from": null, "to": "open"},
        {"from": "draft", "to": "open", "event": "invoice.finalized", "description": "A draft invoice was finalized and is open for payment."},
        {"from": "open", "to": "paid", "event": "invoice.paid", "description": "An invoice was paid."},
        {"from": "open", "to": "uncollectible", "event": "invoice.marked_uncollectible", "description": "An invoice was marked uncollectible."},
        {"from": "open", "to": "void", "event": "invoice.voided", "description": "An invoice was voided."},
        {"from": "uncollectible", "to": "paid", "event": "invoice.paid"},
        {"from": "uncollectible", "to": "void", "event": "invoice.voided"}
    ]',
    privileges => '{"ventros_viewer": ["SELECT"], "ventros_admin": ["INSERT", "UPDATE", "DELETE"]}',
    description => 'A Stripe invoice');
SELECT ventros.register_event_type('invoice.payment_failed', 'A payment of an open invoice failed; it stays open.');

CREATE FUNCTION ventros.create_invoice(
    billing_account_id uuid,
    stripe_invoice_id  text,
    amount_due         bigint,
    currency           text,
    status             text DEFAULT 'draft',
    subscription_id    uuid DEFAULT NULL,
    due_date           timestamptz DEFAULT NULL,
    metadata           jsonb DEFAULT '{}')
RETURNS ventros.invoices
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.invoices;
    sub ventros.subscriptions;
BEGIN
    PERFORM ventros.get_billing_account(billing_account_id);
    PERFORM ventros.require_value(status, ARRAY['draft', 'open'], 'initial invoice status');
    IF subscription_id IS NOT NULL THEN
        sub := ventros.get_subscription(subscription_id);
        IF sub.billing_account_id <> billing_account_id THEN
            RAISE EXCEPTION 'subscription % belongs to another billing account', subscription_id USING ERRCODE = '22023';
        END IF;
    END IF;
    INSERT INTO ventros.invoices (billing_account_id, subscription_id, stripe_invoice_id, stripe_subscription_id,
                                  amount_due, currency, status, due_date, metadata)
    VALUES (billing_account_id, subscription_id, stripe_invoice_id, sub.stripe_subscription_id, amount_due,
            lower(currency), status, due_date,
            coalesce(ventros.require_json(metadata, 'object', 'invoice metadata'), '{}'))
    RETURNING * INTO result;
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'Stripe invoice % exists already', stripe_invoice_id USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.create_invoice(uuid, text, bigint, text, text, uuid, timestamptz, jsonb) IS
    'Mirrors a Stripe invoice (draft or open; amounts >= 0, 23514); emits invoice.created';

CREATE FUNCTION ventros.finalize_invoice(invoice_id uuid, expected_version integer)
RETURNS ventros.invoices
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.change_row(NULL::ventros.invoices, 'invoice', invoice_id, expected_version, '{"status": "open"}') $$;
COMMENT ON FUNCTION ventros.finalize_invoice(uuid, integer) IS 'Opens a draft invoice for payment; emits invoice.finalized';

CREATE FUNCTION ventros.pay_invoice(invoice_id uuid, expected_version integer)
RETURNS ventros.invoices
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current ventros.invoices := ventros.get_invoice(invoice_id);
BEGIN
    RETURN ventros.change_row(NULL::ventros.invoices, 'invoice', invoice_id, expected_version,
        jsonb_build_object('status', 'paid', 'amount_paid', current.amount_due, 'paid_at', now()));
END
$$;
COMMENT ON FUNCTION ventros.pay_invoice(uuid, integer) IS
    'Marks an open or uncollectible invoice paid in full; emits invoice.paid';

CREATE FUNCTION ventros.record_invoice_payment_failure(invoice_id uuid, expected_version integer, error text)
RETURNS ventros.invoices
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current ventros.invoices := ventros.get_invoice(invoice_id);
    result ventros.invoices;
BEGIN
    IF current.status <> 'open' THEN
        RAISE EXCEPTION 'invoice % is %, not open', invoice_id, current.status
            USING ERRCODE = 'VN002', HINT = 'Only open invoices have payment attempts.';
    END IF;
    result := ventros.change_row(NULL::ventros.invoices, 'invoice', invoice_id, expected_version,
        jsonb_build_object('payment_failures', current.payment_failures + 1,
                           'last_payment_error', ventros.check_length(error, 1000, 'payment error')));
    PERFORM ventros.emit('invoice.payment_failed', 'invoice', result.id,
        jsonb_build_object('error', result.last_payment_error, 'payment_failures', result.payment_failures,
                           'amount_remaining', result.amount_remaining), result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.record_invoice_payment_failure(uuid, integer, text) IS
    'Records a failed payment of an open invoice (VN002 otherwise), which stays open; emits invoice.updated and invoice.payment_failed';

CREATE FUNCTION ventros.mark_invoice_uncollectible(invoice_id uuid, expected_version integer)
RETURNS ventros.invoices
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.change_row(NULL::ventros.invoices, 'invoice', invoice_id, expected_version, '{"status": "uncollectible"}') $$;
COMMENT ON FUNCTION ventros.mark_invoice_uncollectible(uuid, integer) IS 'Marks an open invoice uncollectible; emits invoice.marked_uncollectible';

CREATE FUNCTION ventros.void_invoice(invoice_id uuid, expected_version integer)
RETURNS ventros.invoices
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.change_row(NULL::ventros.invoices, 'invoice', invoice_id, expected_version, '{"status": "void"}') $$;
COMMENT ON FUNCTION ventros.void_invoice(uuid, integer) IS 'Voids an open or uncollectible invoice; emits invoice.voided';

CREATE FUNCTION ventros.set_invoice_links(invoice_id uuid, expected_version integer, hosted_invoice_url text,
                                          invoice_pdf text, due_date timestamptz)
RETURNS ventros.invoices
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.change_row(NULL::ventros.invoices, 'invoice', invoice_id, expected_version,
        jsonb_build_object('hosted_invoice_url', hosted_invoice_url, 'invoice_pdf', invoice_pdf, 'due_date', due_date))
$$;
COMMENT ON FUNCTION ventros.set_invoice_links(uuid, integer, text, text, timestamptz) IS
    'Sets the hosted and PDF URLs (https, 23514) and the due date; emits invoice.updated';

CREATE FUNCTION ventros.get_invoice(invoice_id uuid) RETURNS ventros.invoices
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.get_row(NULL::ventros.invoices, 'invoice', invoice_id) $$;
COMMENT ON FUNCTION ventros.get_invoice(uuid) IS 'A live invoice of the acting tenant, or P0002';

CREATE FUNCTION ventros.list_invoices(billing_account_id uuid DEFAULT NULL, status text DEFAULT NULL,
                                      subscription_id uuid DEFAULT NULL, overdue boolean DEFAULT false,
                                      due_from timestamptz DEFAULT NULL, due_to timestamptz DEFAULT NULL)
RETURNS SETOF ventros.invoices
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT i.* FROM ventros.invoices i
    WHERE i.tenant_id = ventros.require_tenant()
      AND (list_invoices.billing_account_id IS NULL OR i.billing_account_id = list_invoices.billing_account_id)
      AND (list_invoices.status IS NULL OR i.status = list_invoices.status)
      AND (list_invoices.subscription_id IS NULL OR i.subscription_id = list_invoices.subscription_id)
      AND (NOT overdue OR (i.status = 'open' AND i.due_date < now()))
      AND (due_from IS NULL OR i.due_date >= due_from)
      AND (due_to IS NULL OR i.due_date < due_to)
    ORDER BY i.created_at, i.id
    LIMIT current_setting('ventros.max_page_size')::integer
$$;
COMMENT ON FUNCTION ventros.list_invoices(uuid, text, uuid, boolean, timestamptz, timestamptz) IS
    'Invoices by account, status, subscription, overdue, or due in [due_from, due_to)';

GRANT EXECUTE ON FUNCTION ventros.get_invoice(uuid), ventros.list_invoices(uuid, text, uuid, boolean, timestamptz, timestamptz)
    TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.create_invoice(uuid, text, bigint, text, text, uuid, timestamptz, jsonb),
    ventros.finalize_invoice(uuid, integer), ventros.pay_invoice(uuid, integer),
    ventros.record_invoice_payment_failure(uuid, integer, text), ventros.mark_invoice_uncollectible(uuid, integer),
    ventros.void_invoice(uuid, integer), ventros.set_invoice_links(uuid, integer, text, text, timestamptz)
    TO ventros_admin;

-- ---- sql/65_usage_meters.sql
-- Aggregate 28, UsageMeter (core): a metered-usage counter for one metric and
-- billing period, reported to Stripe.  Increments are commutative and take no
-- expected version: two concurrent increments both count.

CREATE TABLE ventros.usage_meters (
    id                 uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id          text        NOT NULL,
    version            integer     NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at         timestamptz,
    billing_account_id uuid        NOT NULL,
    stripe_customer_id text        NOT NULL,
    stripe_meter_id    text        NOT NULL,
    metric_name        varchar(100) NOT NULL,
    event_name         varchar(100) NOT NULL,
    quantity           bigint      NOT NULL DEFAULT 0,
    reported_quantity  bigint      NOT NULL DEFAULT 0,
    period_start       timestamptz NOT NULL,
    period_end         timestamptz NOT NULL,
    last_reported_at   timestamptz,
    metadata           jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, billing_account_id) REFERENCES ventros.billing_accounts (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT usage_meters_period_order CHECK (period_end > period_start),
    CONSTRAINT usage_meters_quantity_not_negative CHECK (quantity >= 0 AND reported_quantity BETWEEN 0 AND quantity),
    CONSTRAINT usage_meters_metric_format CHECK (metric_name ~ '^[a-z][a-z0-9_]*$'),
    CONSTRAINT usage_meters_event_name_format CHECK (event_name ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$'),
    CONSTRAINT usage_meters_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
);
CREATE UNIQUE INDEX usage_meters_unique_period ON ventros.usage_meters (tenant_id, billing_account_id, metric_name, period_start)
    WHERE deleted_at IS NULL;
CREATE INDEX usage_meters_by_event ON ventros.usage_meters (tenant_id, event_name, period_end) WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.usage_meters IS 'UsageMeter: metered usage of one metric in one billing period';

SELECT ventros.register_aggregate('usage_meter', 'ventros.usage_meters', 'core',
    privileges => '{"ventros_viewer": ["SELECT"], "ventros_agent": ["UPDATE"], "ventros_admin": ["INSERT", "DELETE"]}',
    description => 'A metered-usage counter for one metric and period');
SELECT ventros.register_event_type('usage_meter.incremented', 'Usage of a metric was counted.');
SELECT ventros.register_event_type('usage_meter.reported', 'Usage of a metric was reported to Stripe.');
SELECT ventros.register_event_type('usage_meter.period_reset', 'A usage meter started a new period at zero.');

CREATE FUNCTION ventros.create_usage_meter(billing_account_id uuid, metric_name text, event_name text,
                                           stripe_meter_id text, period_start timestamptz, period_end timestamptz)
RETURNS ventros.usage_meters
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    account ventros.billing_accounts := ventros.get_billing_account(billing_account_id);
    result ventros.usage_meters;
BEGIN
    IF account.stripe_customer_id IS NULL THEN
        RAISE EXCEPTION 'billing account % has no Stripe customer', billing_account_id
            USING ERRCODE = '23502', HINT = 'Link one with ventros.link_stripe_customer() first.';
    END IF;
    INSERT INTO ventros.usage_meters (billing_account_id, stripe_customer_id, stripe_meter_id, metric_name,
                                      event_name, period_start, period_end)
    VALUES (billing_account_id, account.stripe_customer_id, stripe_meter_id, metric_name, event_name,
            period_start, period_end)
    RETURNING * INTO result;
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'a usage meter for % in the period starting % exists already', metric_name, period_start
        USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.create_usage_meter(uuid, text, text, text, timestamptz, timestamptz) IS
    'Creates a meter for one metric and period (unique per account, metric and start); emits usage_meter.created';

CREATE FUNCTION ventros.increment_usage(usage_meter_id uuid, quantity bigint DEFAULT 1)
RETURNS ventros.usage_meters
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.usage_meters;
BEGIN
    IF quantity IS NULL OR quantity < 0 THEN
        RAISE EXCEPTION 'usage quantity must be zero or more' USING ERRCODE = '22023';
    END IF;
    UPDATE ventros.usage_meters m SET quantity = m.quantity + increment_usage.quantity, version = m.version
    WHERE m.tenant_id = ventros.require_tenant() AND m.id = usage_meter_id
    RETURNING * INTO result;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('usage meter', usage_meter_id);
    END IF;
    PERFORM ventros.emit('usage_meter.incremented', 'usage_meter', result.id,
        jsonb_build_object('metric_name', result.metric_name, 'increment', quantity, 'quantity', result.quantity),
        result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.increment_usage(uuid, bigint) IS
    'Adds quantity (>= 0, 22023) to a meter without a version check; emits usage_meter.updated and usage_meter.incremented';

CREATE FUNCTION ventros.report_usage(usage_meter_id uuid, expected_version integer)
RETURNS ventros.usage_meters
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current ventros.usage_meters := ventros.get_usage_meter(usage_meter_id);
    result ventros.usage_meters;
BEGIN
    result := ventros.change_row(NULL::ventros.usage_meters, 'usage_meter', usage_meter_id, expected_version,
        jsonb_build_object('reported_quantity', current.quantity, 'last_reported_at', now()));
    PERFORM ventros.emit('usage_meter.reported', 'usage_meter', result.id,
        jsonb_build_object('metric_name', result.metric_name, 'stripe_meter_id', result.stripe_meter_id,
                           'quantity', result.quantity, 'delta', result.quantity - current.reported_quantity),
        result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.report_usage(uuid, integer) IS
    'Marks the current quantity reported to Stripe; emits usage_meter.updated and usage_meter.reported';

CREATE FUNCTION ventros.reset_usage_period(usage_meter_id uuid, expected_version integer,
                                           period_start timestamptz, period_end timestamptz)
RETURNS ventros.usage_meters
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.usage_meters;
BEGIN
    result := ventros.change_row(NULL::ventros.usage_meters, 'usage_meter', usage_meter_id, expected_version,
        jsonb_build_object('quantity', 0, 'reported_quantity', 0, 'period_start', period_start,
                           'period_end', period_end, 'last_reported_at', NULL));
    PERFORM ventros.emit('usage_meter.period_reset', 'usage_meter', result.id,
        jsonb_build_object('period_start', period_start, 'period_end', period_end), result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.reset_usage_period(uuid, integer, timestamptz, timestamptz) IS
    'Starts a new period at zero; emits usage_meter.updated and usage_meter.period_reset';

CREATE FUNCTION ventros.get_usage_meter(usage_meter_id uuid) RETURNS ventros.usage_meters
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.get_row(NULL::ventros.usage_meters, 'usage meter', usage_meter_id) $$;
COMMENT ON FUNCTION ventros.get_usage_meter(uuid) IS 'A live usage meter of the acting tenant, or P0002';

CREATE FUNCTION ventros.list_usage_meters(billing_account_id uuid DEFAULT NULL, metric_name text DEFAULT NULL,
                                          current_only boolean DEFAULT false, pending_report boolean DEFAULT false)
RETURNS SETOF ventros.usage_meters
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m.* FROM ventros.usage_meters m
    WHERE m.tenant_id = ventros.require_tenant()
      AND (list_usage_meters.billing_account_id IS NULL OR m.billing_account_id = list_usage_meters.billing_account_id)
      AND (list_usage_meters.metric_name IS NULL OR m.metric_name = list_usage_meters.metric_name)
      AND (NOT current_only OR now() >= m.period_start AND now() < m.period_end)
      AND (NOT pending_report OR m.quantity > m.reported_quantity)
    ORDER BY m.period_start, m.id
    LIMIT current_setting('ventros.max_page_size')::integer
$$;
COMMENT ON FUNCTION ventros.list_usage_meters(uuid, text, boolean, boolean) IS
    'Usage meters by account and metric; the current period only, or only those with unreported usage';

GRANT EXECUTE ON FUNCTION ventros.get_usage_meter(uuid), ventros.list_usage_meters(uuid, text, boolean, boolean) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.increment_usage(uuid, bigint) TO ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.create_usage_meter(uuid, text, text, text, timestamptz, timestamptz),
    ventros.report_usage(uuid, integer), ventros.reset_usage_period(uuid, integer, timestamptz, timestamptz)
    TO ventros_admin;

-- ---- sql/66_processed_events.sql
-- Part of aggregate 30, Outbox (core): processed_events, the consumers' inbox
-- for idempotency.  A consumer records (event_id, consumer_name) in the
-- transaction of its work; a second delivery of the same event finds the row
-- and skips.  This table is deliberately not an engine aggregate: an outbox
-- event for every consumed event would double the outbox's traffic and
-- describe no business fact.  It has the common columns and forced RLS.

CREATE TABLE ventros.processed_events (
    id                     uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id              text        NOT NULL DEFAULT ventros.require_tenant(),
    version                integer     NOT NULL DEFAULT 1,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    deleted_at             timestamptz,
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

-- ---- sql/67_sagas.sql
-- Aggregate 31, Saga (core): a multi-step asynchronous process tracked by its
-- correlation id.  Work done in one SQL transaction needs no saga; sagas
-- track what crosses the network (Stripe, providers, AI).  A failed saga asks
-- for compensation of its completed steps with saga.compensation_requested,
-- one event per target (the original's 22 compensate.<target> events).

CREATE TABLE ventros.sagas (
    id             uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id      text        NOT NULL,
    version        integer     NOT NULL DEFAULT 1,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    deleted_at     timestamptz,
    correlation_id uuid        NOT NULL DEFAULT gen_random_uuid(),
    saga_type      text        NOT NULL,
    status         text        NOT NULL DEFAULT 'running',
    current_step   text,
    step_number    integer     NOT NULL DEFAULT 0,
    completed_steps text[]     NOT NULL DEFAULT '{}',
    started_at     timestamptz NOT NULL DEFAULT now(),
    completed_at   timestamptz,
    error          text,
    context        jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT sagas_type_known CHECK (saga_type IN ('process_inbound_message', 'change_pipeline_status',
        'create_contact_with_session', 'track_ad_conversion', 'process_waha_webhook', 'onboard_customer',
        'renew_subscription', 'import_waha_history', 'process_media_with_ai', 'compensate')),
    CONSTRAINT sagas_status_known CHECK (status IN ('running', 'completed', 'failed', 'compensating', 'compensated')),
    CONSTRAINT sagas_step_number CHECK (step_number >= 0),
    CONSTRAINT sagas_step_format CHECK (current_step ~ '^[a-z][a-z0-9_.]{0,99}$'),
    CONSTRAINT sagas_context_object CHECK (jsonb_typeof(context) = 'object'),
    CONSTRAINT sagas_error_size CHECK (length(error) <= 4000)
);
CREATE UNIQUE INDEX sagas_unique_correlation ON ventros.sagas (tenant_id, correlation_id);
CREATE INDEX sagas_running ON ventros.sagas (tenant_id, saga_type, started_at) WHERE status IN ('running', 'compensating');
COMMENT ON TABLE ventros.sagas IS 'Saga: a multi-step asynchronous process, by correlation id';

SELECT ventros.register_aggregate('saga', 'ventros.sagas', 'core',
    state_column => 'status',
    transitions => '[
        {"from": null, "to": "running"},
        {"from": "running", "to": "completed", "event": "saga.completed", "description": "A saga completed all its steps."},
        {"from": "running", "to": "failed", "event": "saga.failed", "description": "A step of a saga failed."},
        {"from": "failed", "to": "compensating", "event": "saga.compensation_started", "description": "A failed saga started compensating its completed steps."},
        {"from": "compensating", "to": "compensated", "event": "saga.compensated", "description": "A saga finished compensating."}
    ]',
    description => 'A multi-step asynchronous process');
-- saga.created is the row; saga.started, emitted with it by start_saga, is the
-- process event consumers correlate on (the engine needs both catalogued).
SELECT ventros.register_event_type('saga.started', 'A saga started.');
SELECT ventros.register_event_type('saga.step_completed', 'A step of a saga completed.');
SELECT ventros.register_event_type('saga.compensation_requested',
    'Compensation of one completed step was requested (target: the original compensate.<target>).');

-- The original's 22 compensation targets (compensate.<target>).
CREATE FUNCTION ventros.saga_compensation_targets() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT ARRAY['contact.created', 'contact.updated', 'contact.merged', 'contact.pipeline_changed',
                 'session.started', 'session.assigned', 'session.escalated',
                 'message.created', 'message.sent', 'note.added', 'note.updated',
                 'pipeline.created', 'pipeline.status_changed', 'status.created',
                 'channel.created', 'channel.activated', 'agent.created', 'agent.permission_granted',
                 'billing.account_created', 'billing.payment_method_activated',
                 'automation.executed', 'tracking.created']
$$;
COMMENT ON FUNCTION ventros.saga_compensation_targets() IS
    'The 22 compensation targets of the original (compensate.<target>), all emitted as saga.compensation_requested';

CREATE FUNCTION ventros.start_saga(saga_type text, correlation_id uuid DEFAULT NULL, first_step text DEFAULT NULL,
                                   context jsonb DEFAULT '{}')
RETURNS ventros.sagas
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.sagas;
BEGIN
    PERFORM ventros.require_value(saga_type, ARRAY['process_inbound_message', 'change_pipeline_status',
        'create_contact_with_session', 'track_ad_conversion', 'process_waha_webhook', 'onboard_customer',
        'renew_subscription', 'import_waha_history', 'process_media_with_ai', 'compensate'], 'saga type');
    INSERT INTO ventros.sagas (saga_type, correlation_id, current_step, context)
    VALUES (saga_type, coalesce(correlation_id, gen_random_uuid()), first_step,
            coalesce(ventros.require_json(context, 'object', 'saga context'), '{}'))
    RETURNING * INTO result;
    PERFORM ventros.emit('saga.started', 'saga', result.id,
        jsonb_build_object('correlation_id', result.correlation_id, 'saga_type', result.saga_type,
                           'current_step', result.current_step), result.version);
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'a saga with correlation id % exists already', correlation_id USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.start_saga(text, uuid, text, jsonb) IS 'Starts a saga; emits saga.created and saga.started';

CREATE FUNCTION ventros.complete_saga_step(saga_id uuid, expected_version integer, step text, next_step text DEFAULT NULL)
RETURNS ventros.sagas
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current ventros.sagas := ventros.get_saga(saga_id);
    result ventros.sagas;
BEGIN
    IF current.status <> 'running' THEN
        RAISE EXCEPTION 'saga % is %, not running', saga_id, current.status USING ERRCODE = 'VN002';
    END IF;
    IF step IS NULL OR step !~ '^[a-z][a-z0-9_.]{0,99}$' THEN
        RAISE EXCEPTION 'malformed saga step "%"', left(step, 64) USING ERRCODE = '22023';
    END IF;
    result := ventros.change_row(NULL::ventros.sagas, 'saga', saga_id, expected_version,
        jsonb_build_object('step_number', current.step_number + 1, 'current_step', next_step,
                           'completed_steps', current.completed_steps || step));
    PERFORM ventros.emit('saga.step_completed', 'saga', result.id,
        jsonb_build_object('correlation_id', result.correlation_id, 'saga_type', result.saga_type, 'step', step,
                           'step_number', result.step_number), result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.complete_saga_step(uuid, integer, text, text) IS
    'Records a completed step of a running saga (VN002 otherwise); emits saga.updated and saga.step_completed';

CREATE FUNCTION ventros.complete_saga(saga_id uuid, expected_version integer)
RETURNS ventros.sagas
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.change_row(NULL::ventros.sagas, 'saga', saga_id, expected_version,
        jsonb_build_object('status', 'completed', 'completed_at', now(), 'current_step', NULL))
$$;
COMMENT ON FUNCTION ventros.complete_saga(uuid, integer) IS 'Completes a running saga; emits saga.completed';

CREATE FUNCTION ventros.fail_saga(saga_id uuid, expected_version integer, error text)
RETURNS ventros.sagas
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.change_row(NULL::ventros.sagas, 'saga', saga_id, expected_version,
        jsonb_build_object('status', 'failed', 'completed_at', now(), 'error', ventros.check_length(error, 4000, 'saga error')))
$$;
COMMENT ON FUNCTION ventros.fail_saga(uuid, integer, text) IS 'Marks a running saga failed; emits saga.failed';

-- request_saga_compensation: moves a failed saga to compensating (first call)
-- and asks for compensation of one target.
CREATE FUNCTION ventros.request_saga_compensation(saga_id uuid, expected_version integer, target text,
                                                  target_id uuid DEFAULT NULL, details jsonb DEFAULT '{}')
RETURNS ventros.sagas
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current ventros.sagas := ventros.get_saga(saga_id);
    result ventros.sagas := current;
BEGIN
    PERFORM ventros.require_value(target, ventros.saga_compensation_targets(), 'compensation target');
    PERFORM ventros.require_json(details, 'object', 'compensation details');
    IF current.status = 'failed' THEN
        result := ventros.change_row(NULL::ventros.sagas, 'saga', saga_id, expected_version, '{"status": "compensating"}');
    ELSIF current.status <> 'compensating' THEN
        RAISE EXCEPTION 'saga % is %; only failed sagas compensate', saga_id, current.status USING ERRCODE = 'VN002';
    ELSIF current.version <> expected_version THEN
        RAISE EXCEPTION 'saga % has changed since version % was read', saga_id, expected_version
            USING ERRCODE = 'VN001', DETAIL = format('Current version is %s.', current.version);
    END IF;
    PERFORM ventros.emit('saga.compensation_requested', 'saga', result.id,
        jsonb_build_object('correlation_id', result.correlation_id, 'saga_type', result.saga_type,
                           'target', target, 'target_id', target_id, 'details', coalesce(details, '{}')),
        result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.request_saga_compensation(uuid, integer, text, uuid, jsonb) IS
    'Asks for compensation of one target (one of saga_compensation_targets(), 22023 otherwise) of a failed saga; emits saga.compensation_started (first time) and saga.compensation_requested';

CREATE FUNCTION ventros.mark_saga_compensated(saga_id uuid, expected_version integer)
RETURNS ventros.sagas
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.change_row(NULL::ventros.sagas, 'saga', saga_id, expected_version, '{"status": "compensated"}') $$;
COMMENT ON FUNCTION ventros.mark_saga_compensated(uuid, integer) IS 'Ends the compensation of a saga; emits saga.compensated';

CREATE FUNCTION ventros.get_saga(saga_id uuid) RETURNS ventros.sagas
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.get_row(NULL::ventros.sagas, 'saga', saga_id) $$;
COMMENT ON FUNCTION ventros.get_saga(uuid) IS 'A live saga of the acting tenant, or P0002';

CREATE FUNCTION ventros.find_saga(correlation_id uuid) RETURNS SETOF ventros.sagas
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.* FROM ventros.sagas s
    WHERE s.tenant_id = ventros.require_tenant() AND s.correlation_id = find_saga.correlation_id
$$;
COMMENT ON FUNCTION ventros.find_saga(uuid) IS 'The saga with this correlation id, or no row';

GRANT EXECUTE ON FUNCTION ventros.saga_compensation_targets() TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.get_saga(uuid), ventros.find_saga(uuid) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.start_saga(text, uuid, text, jsonb), ventros.complete_saga_step(uuid, integer, text, text),
    ventros.complete_saga(uuid, integer), ventros.fail_saga(uuid, integer, text),
    ventros.request_saga_compensation(uuid, integer, text, uuid, jsonb), ventros.mark_saga_compensated(uuid, integer)
    TO ventros_agent;

-- ---- sql/68_credentials.sql
-- Aggregate 15, Credential (CRM): an integration secret (API key, basic auth,
-- OAuth token pair).
--
-- Secrets are never stored in plaintext: encrypted_value and the OAuth tokens
-- hold pgcrypto's pgp_sym_encrypt() output (OpenPGP symmetric encryption,
-- AES-256 with a random session key and an integrity check, so no separate
-- nonce column is needed).  The key is the setting ventros.secret_key, which
-- only superusers can read or set (src/guc.c): it lives in postgresql.conf,
-- not in the database, its dumps or its WAL.  Tenant roles cannot read it, so
-- encryption and decryption run in two SECURITY DEFINER functions owned by
-- the installing superuser; they filter by the acting tenant themselves,
-- since RLS does not bind their owner.  The ciphertext columns are redacted
-- from every event payload.

CREATE TABLE ventros.credentials (
    id                  uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id           text        NOT NULL,
    version             integer     NOT NULL DEFAULT 1,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    project_id          uuid,
    credential_type     text        NOT NULL,
    name                text        NOT NULL,
    description         text,
    encrypted_value     bytea       NOT NULL,
    oauth_access_token  bytea,
    oauth_refresh_token bytea,
    oauth_token_type    text        NOT NULL DEFAULT 'Bearer',
    oauth_expires_at    timestamptz,
    metadata            jsonb       NOT NULL DEFAULT '{}',
    is_active           boolean     NOT NULL DEFAULT true,
    expires_at          timestamptz,
    last_used_at        timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id) ON DELETE SET NULL (project_id),
    CONSTRAINT credentials_type_known CHECK (credential_type IN ('meta_whatsapp_cloud', 'meta_ads', 'meta_conversions_api',
        'google_ads', 'google_analytics', 'webhook_auth', 'api_key', 'basic_auth', 'waha_instance')),
    CONSTRAINT credentials_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT credentials_oauth_types CHECK (oauth_access_token IS NULL OR credential_type ~ '^(meta|google)_'),
    CONSTRAINT credentials_metadata_object CHECK (jsonb_typeof(metadata) = 'object'),
    CONSTRAINT credentials_description_size CHECK (length(description) <= 2000)
);
CREATE UNIQUE INDEX credentials_unique_name ON ventros.credentials
    (tenant_id, coalesce(project_id, '00000000-0000-0000-0000-000000000000'::uuid), name) WHERE deleted_at IS NULL;
CREATE INDEX credentials_expiring ON ventros.credentials (tenant_id, expires_at) WHERE is_active AND deleted_at IS NULL;
COMMENT ON TABLE ventros.credentials IS 'Credential: an integration secret, encrypted with pgp_sym_encrypt under ventros.secret_key';

SELECT ventros.register_aggregate('credential', 'ventros.credentials', 'crm',
    state_column => 'is_active',
    transitions => '[
        {"from": null, "to": "true"},
        {"from": "true", "to": "false", "event": "credential.deactivated", "description": "A credential was deactivated."},
        {"from": "false", "to": "true", "event": "credential.activated", "description": "A credential was activated."}
    ]',
    redacted_columns => '{encrypted_value, oauth_access_token, oauth_refresh_token}',
    privileges => '{"ventros_viewer": ["SELECT"], "ventros_admin": ["INSERT", "UPDATE", "DELETE"]}',
    description => 'An encrypted integration secret');
SELECT ventros.declare_quiet_columns('credential', '{last_used_at}');
SELECT ventros.register_event_type('credential.oauth_refreshed', 'The OAuth tokens of a credential were set or refreshed.');
SELECT ventros.register_event_type('credential.used', 'The secret of a credential was read for use.');
SELECT ventros.register_event_type('credential.expired', 'A credential passed its expiry and was deactivated.');

-- The two functions that touch the key; pgcrypto's schema is found at install
-- time (CREATE EXTENSION ventros CASCADE puts it where the caller chose).
DO $crypto$
DECLARE
    crypto_schema text := (SELECT n.nspname FROM pg_catalog.pg_extension e
                           JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace
                           WHERE e.extname OPERATOR(pg_catalog.=) 'pgcrypto');
BEGIN
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION ventros.encrypt_secret(plaintext text) RETURNS bytea
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER
        SET search_path = pg_catalog, pg_temp
        AS $body$
        DECLARE
            key text := current_setting('ventros.secret_key');
        BEGIN
            IF plaintext IS NULL OR btrim(plaintext) = '' THEN
                RAISE EXCEPTION 'secret value must not be empty' USING ERRCODE = '23502';
            END IF;
            IF length(key) < 16 THEN
                RAISE EXCEPTION 'ventros.secret_key is not set'
                    USING ERRCODE = '55000',
                          HINT = 'A superuser sets ventros.secret_key (16 characters or more) in postgresql.conf.';
            END IF;
            RETURN %1$I.pgp_sym_encrypt(ventros.check_length(plaintext, 16384, 'secret value'), key,
                                        'cipher-algo=aes256, compress-algo=0');
        END
        $body$$f$, crypto_schema);
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION ventros.decrypt_secret(ciphertext bytea) RETURNS text
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER
        SET search_path = pg_catalog, pg_temp
        AS $body$
        BEGIN
            RETURN %1$I.pgp_sym_decrypt(ciphertext, current_setting('ventros.secret_key'));
        EXCEPTION WHEN external_routine_exception OR data_exception THEN
            RAISE EXCEPTION 'secret cannot be decrypted with the current ventros.secret_key'
                USING ERRCODE = '55000', HINT = 'Was the key changed? Re-enter the secret.';
        END
        $body$$f$, crypto_schema);
END
$crypto$;
COMMENT ON FUNCTION ventros.encrypt_secret(text) IS
    'Encrypts a secret with pgp_sym_encrypt under ventros.secret_key (55000 when unset); SECURITY DEFINER';
COMMENT ON FUNCTION ventros.decrypt_secret(bytea) IS
    'Decrypts a secret (internal: granted to nobody; reveal_credential is the only caller)';
REVOKE EXECUTE ON FUNCTION ventros.decrypt_secret(bytea) FROM PUBLIC;

CREATE FUNCTION ventros.create_credential(name text, credential_type text, value text, project_id uuid DEFAULT NULL,
                                          description text DEFAULT NULL, expires_at timestamptz DEFAULT NULL,
                                          metadata jsonb DEFAULT '{}')
RETURNS ventros.credentials
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.credentials;
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'credential name must not be null' USING ERRCODE = '23502';
    END IF;
    PERFORM ventros.require_value(credential_type, ARRAY['meta_whatsapp_cloud', 'meta_ads', 'meta_conversions_api',
        'google_ads', 'google_analytics', 'webhook_auth', 'api_key', 'basic_auth', 'waha_instance'], 'credential type');
    INSERT INTO ventros.credentials (project_id, credential_type, name, description, encrypted_value, expires_at, metadata)
    VALUES (project_id, credential_type, ventros.check_length(btrim(name), 200, 'credential name'), description,
            ventros.encrypt_secret(value), expires_at,
            coalesce(ventros.require_json(metadata, 'object', 'credential metadata'), '{}'))
    RETURNING * INTO result;
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'a credential named "%" exists already', name USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.create_credential(text, text, text, uuid, text, timestamptz, jsonb) IS
    'Creates a credential, encrypting value (never stored in plaintext); emits credential.created';

CREATE FUNCTION ventros.update_credential(credential_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.credentials
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN ventros.apply_changes(NULL::ventros.credentials, 'credential', credential_id, expected_version, changes,
        ARRAY['name', 'description', 'metadata', 'project_id', 'expires_at']);
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'a credential named "%" exists already', changes->>'name' USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.update_credential(uuid, integer, jsonb) IS
    'Changes name, description, metadata, project or expiry; emits credential.updated';

CREATE FUNCTION ventros.set_credential_value(credential_id uuid, expected_version integer, value text)
RETURNS ventros.credentials
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    -- encrypted_value is redacted from payloads: the event says that the
    -- secret changed (the version moved), not what it is.
    SELECT ventros.apply_changes(NULL::ventros.credentials, 'credential', credential_id, expected_version,
        jsonb_build_object('encrypted_value', ventros.encrypt_secret(value)), ARRAY['encrypted_value'])
$$;
COMMENT ON FUNCTION ventros.set_credential_value(uuid, integer, text) IS
    'Replaces the secret (encrypted); emits credential.updated without the value';

CREATE FUNCTION ventros.set_credential_oauth(credential_id uuid, expected_version integer, access_token text,
                                             refresh_token text DEFAULT NULL, expires_at timestamptz DEFAULT NULL,
                                             token_type text DEFAULT 'Bearer')
RETURNS ventros.credentials
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current ventros.credentials := ventros.get_credential(credential_id);
    result ventros.credentials;
BEGIN
    IF current.credential_type !~ '^(meta|google)_' THEN
        RAISE EXCEPTION 'credential % of type % has no OAuth tokens', credential_id, current.credential_type
            USING ERRCODE = '22023', HINT = 'Only meta_* and google_* credentials hold OAuth tokens.';
    END IF;
    -- bytea travels through jsonb as its text form; jsonb_populate_record reads it back.
    result := ventros.change_row(NULL::ventros.credentials, 'credential', credential_id, expected_version,
        jsonb_build_object('oauth_access_token', ventros.encrypt_secret(access_token),
                           'oauth_refresh_token', CASE WHEN refresh_token IS NOT NULL THEN ventros.encrypt_secret(refresh_token)
                                                       ELSE current.oauth_refresh_token END,
                           'oauth_expires_at', expires_at, 'oauth_token_type', coalesce(token_type, 'Bearer')));
    PERFORM ventros.emit('credential.oauth_refreshed', 'credential', result.id,
        jsonb_build_object('oauth_expires_at', expires_at, 'oauth_token_type', result.oauth_token_type), result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.set_credential_oauth(uuid, integer, text, text, timestamptz, text) IS
    'Sets or refreshes the OAuth tokens (meta_* and google_* types only, 22023); emits credential.updated and credential.oauth_refreshed';

CREATE FUNCTION ventros.activate_credential(credential_id uuid, expected_version integer)
RETURNS ventros.credentials
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.change_row(NULL::ventros.credentials, 'credential', credential_id, expected_version, '{"is_active": true}') $$;
COMMENT ON FUNCTION ventros.activate_credential(uuid, integer) IS 'Activates a credential; emits credential.activated';

CREATE FUNCTION ventros.deactivate_credential(credential_id uuid, expected_version integer)
RETURNS ventros.credentials
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.change_row(NULL::ventros.credentials, 'credential', credential_id, expected_version, '{"is_active": false}') $$;
COMMENT ON FUNCTION ventros.deactivate_credential(uuid, integer) IS 'Deactivates a credential; emits credential.deactivated';

-- reveal_credential: the plaintext for a caller about to use it (a channel
-- worker, the webhook sender).  SECURITY DEFINER to decrypt; it reads only
-- the acting tenant's row and records the use.
CREATE FUNCTION ventros.reveal_credential(credential_id uuid)
RETURNS TABLE (value text, oauth_access_token text, oauth_refresh_token text, oauth_token_type text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    current ventros.credentials;
BEGIN
    SELECT * INTO current FROM ventros.credentials c
    WHERE c.tenant_id = tenant AND c.id = credential_id AND c.deleted_at IS NULL
    FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('credential', credential_id);
    END IF;
    IF NOT current.is_active OR current.expires_at <= now() THEN
        RAISE EXCEPTION 'credential % is %', credential_id, CASE WHEN current.is_active THEN 'expired' ELSE 'inactive' END
            USING ERRCODE = '55000', HINT = 'Activate it, or renew it with ventros.set_credential_value().';
    END IF;
    UPDATE ventros.credentials c SET last_used_at = now(), version = c.version
    WHERE c.tenant_id = tenant AND c.id = credential_id;
    PERFORM ventros.emit('credential.used', 'credential', credential_id, jsonb_build_object('credential_type', current.credential_type),
                         current.version);
    RETURN QUERY SELECT ventros.decrypt_secret(current.encrypted_value),
                        CASE WHEN current.oauth_access_token IS NOT NULL THEN ventros.decrypt_secret(current.oauth_access_token) END,
                        CASE WHEN current.oauth_refresh_token IS NOT NULL THEN ventros.decrypt_secret(current.oauth_refresh_token) END,
                        current.oauth_token_type;
END
$$;
COMMENT ON FUNCTION ventros.reveal_credential(uuid) IS
    'Decrypts an active, unexpired credential of the acting tenant for use (55000 otherwise); sets last_used_at (quiet) and emits credential.used';

-- expire_credentials: deactivates the acting tenant's credentials past expires_at.
CREATE FUNCTION ventros.expire_credentials() RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    expired ventros.credentials;
    n integer := 0;
BEGIN
    FOR expired IN
        UPDATE ventros.credentials c SET is_active = false, version = c.version
        WHERE c.tenant_id = ventros.require_tenant() AND c.is_active AND c.expires_at <= now()
        RETURNING c.*
    LOOP
        PERFORM ventros.emit('credential.expired', 'credential', expired.id,
                             jsonb_build_object('expires_at', expired.expires_at), expired.version);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.expire_credentials() IS
    'Deactivates the acting tenant''s expired credentials; emits credential.deactivated and credential.expired for each; returns how many';

CREATE FUNCTION ventros.get_credential(credential_id uuid) RETURNS ventros.credentials
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.get_row(NULL::ventros.credentials, 'credential', credential_id) $$;
COMMENT ON FUNCTION ventros.get_credential(uuid) IS 'A live credential (ciphertext only), or P0002';

CREATE FUNCTION ventros.list_credentials(credential_type text DEFAULT NULL, project_id uuid DEFAULT NULL,
                                         only_active boolean DEFAULT false, expiring_within interval DEFAULT NULL)
RETURNS SETOF ventros.credentials
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.* FROM ventros.credentials c
    WHERE c.tenant_id = ventros.require_tenant()
      AND (list_credentials.credential_type IS NULL OR c.credential_type = list_credentials.credential_type)
      AND (list_credentials.project_id IS NULL OR c.project_id = list_credentials.project_id)
      AND (NOT only_active OR c.is_active)
      AND (expiring_within IS NULL OR (c.is_active AND c.expires_at <= now() + expiring_within))
    ORDER BY c.name, c.id
    LIMIT current_setting('ventros.max_page_size')::integer
$$;
COMMENT ON FUNCTION ventros.list_credentials(text, uuid, boolean, interval) IS
    'Credentials by type or project, active ones, or those expiring within an interval';

GRANT EXECUTE ON FUNCTION ventros.get_credential(uuid), ventros.list_credentials(text, uuid, boolean, interval) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.encrypt_secret(text),
    ventros.create_credential(text, text, text, uuid, text, timestamptz, jsonb),
    ventros.update_credential(uuid, integer, jsonb), ventros.set_credential_value(uuid, integer, text),
    ventros.set_credential_oauth(uuid, integer, text, text, timestamptz, text),
    ventros.activate_credential(uuid, integer), ventros.deactivate_credential(uuid, integer),
    ventros.reveal_credential(uuid), ventros.expire_credentials()
    TO ventros_admin;

-- ---- sql/69_project_members.sql
-- Aggregate 18, ProjectMember (CRM): a member's role in a project (RBAC).
-- The role column is the state machine: any change of role is
-- project_member.role_changed; invite_project_member emits
-- project_member.invited with the row's project_member.created.  A member never changes their own role, and a
-- project never loses its last admin; both are checked under a lock of the
-- project's admin rows, so two concurrent demotions cannot both pass.

CREATE TABLE ventros.project_members (
    id         uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id  text        NOT NULL,
    version    integer     NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    project_id uuid        NOT NULL,
    agent_id   text        NOT NULL,
    role       text        NOT NULL,
    invited_by text        NOT NULL,
    invited_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT project_members_role_known CHECK (role IN ('admin', 'supervisor', 'agent', 'viewer')),
    CONSTRAINT project_members_subject_format CHECK (btrim(agent_id) <> '' AND length(agent_id) <= 200
                                                     AND length(invited_by) <= 200)
);
CREATE UNIQUE INDEX project_members_unique ON ventros.project_members (tenant_id, project_id, agent_id)
    WHERE deleted_at IS NULL;
CREATE INDEX project_members_by_member ON ventros.project_members (tenant_id, agent_id) WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.project_members IS 'ProjectMember: a member''s role in a project';

SELECT ventros.register_aggregate('project_member', 'ventros.project_members', 'crm',
    state_column => 'role',
    transitions => (
        SELECT jsonb_agg(t) FROM (
            SELECT jsonb_build_object('from', NULL, 'to', r) AS t
            FROM unnest(ARRAY['admin', 'supervisor', 'agent', 'viewer']) r
            UNION ALL
            SELECT jsonb_build_object('from', a, 'to', b, 'event', 'project_member.role_changed',
                                      'description', 'The role of a project member changed.')
            FROM unnest(ARRAY['admin', 'supervisor', 'agent', 'viewer']) a,
                 unnest(ARRAY['admin', 'supervisor', 'agent', 'viewer']) b
            WHERE a <> b) s),
    privileges => '{"ventros_viewer": ["SELECT"], "ventros_admin": ["INSERT", "UPDATE", "DELETE"]}',
    description => 'A member''s role in a project');
SELECT ventros.register_event_type('project_member.invited', 'A member was invited to a project.');
SELECT ventros.register_event_type('project_member.removed', 'A member was removed from a project.');

-- The 23 permissions and what each project role holds (no role holds billing).
CREATE FUNCTION ventros.project_role_permissions(role text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE role
        WHEN 'admin' THEN ARRAY['sessions.view', 'sessions.manage', 'messages.send', 'messages.view', 'contacts.view',
            'contacts.manage', 'contacts.export', 'pipelines.view', 'pipelines.manage', 'campaigns.view',
            'campaigns.manage', 'sequences.view', 'sequences.manage', 'analytics.view', 'analytics.export',
            'members.view', 'members.manage', 'channels.view', 'channels.manage', 'settings.view', 'settings.manage']
        WHEN 'supervisor' THEN ARRAY['sessions.view', 'sessions.manage', 'messages.send', 'messages.view',
            'contacts.view', 'contacts.manage', 'contacts.export', 'pipelines.view', 'pipelines.manage',
            'campaigns.view', 'campaigns.manage', 'sequences.view', 'sequences.manage', 'analytics.view',
            'analytics.export', 'members.view', 'channels.view', 'settings.view']
        WHEN 'agent' THEN ARRAY['sessions.view', 'sessions.manage', 'messages.send', 'messages.view', 'contacts.view',
            'contacts.manage', 'pipelines.view', 'campaigns.view', 'sequences.view', 'analytics.view',
            'members.view', 'channels.view', 'settings.view']
        WHEN 'viewer' THEN ARRAY['sessions.view', 'messages.view', 'contacts.view', 'pipelines.view',
            'campaigns.view', 'sequences.view']
    END
$$;
COMMENT ON FUNCTION ventros.project_role_permissions(text) IS
    'The permissions a project role holds (billing.view and billing.manage belong to no project role)';

-- Locks the project row (serialising membership changes of one project),
-- then counts its admins.  Two statements on purpose: under READ COMMITTED
-- the count must take its snapshot after the lock is granted, so that it
-- sees the demotion that the lock waited for.
CREATE FUNCTION ventros.lock_project_admins(project_id uuid) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    admins integer;
BEGIN
    PERFORM 1 FROM ventros.projects p
    WHERE p.tenant_id = ventros.require_tenant() AND p.id = lock_project_admins.project_id FOR UPDATE;
    SELECT count(*) INTO admins FROM ventros.project_members m
    WHERE m.tenant_id = ventros.require_tenant() AND m.project_id = lock_project_admins.project_id AND m.role = 'admin';
    RETURN admins;
END
$$;
COMMENT ON FUNCTION ventros.lock_project_admins(uuid) IS
    'Locks a project row (serialising membership changes of the project) and then counts its admins';

CREATE FUNCTION ventros.invite_project_member(agent_id text, role text, project_id uuid DEFAULT NULL)
RETURNS ventros.project_members
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.project_members;
BEGIN
    IF agent_id IS NULL THEN
        RAISE EXCEPTION 'member agent_id must not be null' USING ERRCODE = '23502';
    END IF;
    PERFORM ventros.require_value(role, ARRAY['admin', 'supervisor', 'agent', 'viewer'], 'project role');
    INSERT INTO ventros.project_members (project_id, agent_id, role, invited_by)
    VALUES (coalesce(project_id, ventros.default_project()), ventros.check_length(btrim(agent_id), 200, 'member id'),
            role, ventros.actor())
    RETURNING * INTO result;
    PERFORM ventros.emit('project_member.invited', 'project_member', result.id,
        jsonb_build_object('project_id', result.project_id, 'agent_id', result.agent_id, 'role', result.role,
                           'invited_by', result.invited_by), result.version);
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION '% is a member of the project already', agent_id USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.invite_project_member(text, text, uuid) IS
    'Adds a member with a role to a project (default project unless given); emits project_member.created and project_member.invited';

CREATE FUNCTION ventros.change_project_member_role(project_member_id uuid, expected_version integer, role text)
RETURNS ventros.project_members
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current ventros.project_members := ventros.get_project_member(project_member_id);
BEGIN
    PERFORM ventros.require_value(role, ARRAY['admin', 'supervisor', 'agent', 'viewer'], 'project role');
    IF current.agent_id = ventros.actor() THEN
        RAISE EXCEPTION 'members cannot change their own role' USING ERRCODE = '42501',
            HINT = 'Ask another admin of the project.';
    END IF;
    IF current.role = 'admin' AND role <> 'admin' AND ventros.lock_project_admins(current.project_id) <= 1 THEN
        RAISE EXCEPTION 'project % would lose its last admin', current.project_id USING ERRCODE = '23514',
            HINT = 'Make another member admin first.';
    END IF;
    RETURN ventros.change_row(NULL::ventros.project_members, 'project_member', project_member_id, expected_version,
                              jsonb_build_object('role', role));
END
$$;
COMMENT ON FUNCTION ventros.change_project_member_role(uuid, integer, text) IS
    'Changes a member''s role (never one''s own: 42501; never the last admin: 23514); emits project_member.role_changed';

CREATE FUNCTION ventros.remove_project_member(project_member_id uuid, expected_version integer)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current ventros.project_members := ventros.get_project_member(project_member_id);
BEGIN
    IF current.role = 'admin' AND ventros.lock_project_admins(current.project_id) <= 1 THEN
        RAISE EXCEPTION 'project % would lose its last admin', current.project_id USING ERRCODE = '23514',
            HINT = 'Make another member admin first.';
    END IF;
    PERFORM ventros.delete_row('ventros.project_members', 'project_member', project_member_id, expected_version);
    PERFORM ventros.emit('project_member.removed', 'project_member', project_member_id,
        jsonb_build_object('project_id', current.project_id, 'agent_id', current.agent_id, 'role', current.role),
        current.version + 1);
END
$$;
COMMENT ON FUNCTION ventros.remove_project_member(uuid, integer) IS
    'Removes a member (never the last admin: 23514); emits project_member.deleted and project_member.removed';

CREATE FUNCTION ventros.get_project_member(project_member_id uuid) RETURNS ventros.project_members
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.get_row(NULL::ventros.project_members, 'project member', project_member_id) $$;
COMMENT ON FUNCTION ventros.get_project_member(uuid) IS 'A live project member, or P0002';

CREATE FUNCTION ventros.list_project_members(project_id uuid DEFAULT NULL, agent_id text DEFAULT NULL,
                                             role text DEFAULT NULL)
RETURNS SETOF ventros.project_members
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m.* FROM ventros.project_members m
    WHERE m.tenant_id = ventros.require_tenant()
      AND (list_project_members.project_id IS NULL OR m.project_id = list_project_members.project_id)
      AND (list_project_members.agent_id IS NULL OR m.agent_id = list_project_members.agent_id)
      AND (list_project_members.role IS NULL OR m.role = list_project_members.role)
    ORDER BY m.invited_at, m.id
    LIMIT current_setting('ventros.max_page_size')::integer
$$;
COMMENT ON FUNCTION ventros.list_project_members(uuid, text, text) IS 'Members by project, member or role';

CREATE FUNCTION ventros.has_project_permission(project_id uuid, agent_id text, permission text) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM ventros.project_members m
                   WHERE m.tenant_id = ventros.require_tenant() AND m.project_id = has_project_permission.project_id
                     AND m.agent_id = has_project_permission.agent_id
                     AND has_project_permission.permission = ANY (ventros.project_role_permissions(m.role)))
$$;
COMMENT ON FUNCTION ventros.has_project_permission(uuid, text, text) IS 'Whether a member holds a permission in a project';

GRANT EXECUTE ON FUNCTION ventros.project_role_permissions(text), ventros.get_project_member(uuid),
    ventros.list_project_members(uuid, text, text), ventros.has_project_permission(uuid, text, text) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.lock_project_admins(uuid), ventros.invite_project_member(text, text, uuid),
    ventros.change_project_member_role(uuid, integer, text), ventros.remove_project_member(uuid, integer)
    TO ventros_admin;

-- ---- sql/70_webhook_subscriptions.sql
-- Aggregate 20, WebhookSubscription (CRM): a tenant URL that receives the
-- selected domain events and contact timeline events.
--
-- SSRF: the URL must be http(s), carry no user info, and not name a literal
-- loopback, private, link-local, CGNAT, multicast or unspecified address, nor
-- localhost.  A host name that resolves to such an address cannot be seen
-- from SQL; the sender re-checks the resolved address at delivery time.
-- The operator allow-list ventros.http_allow_hosts (the dispatcher's, see
-- src/ssrf.c) also admits its hosts and literal addresses here: that is how
-- tests subscribe loopback receivers.
-- Subscriptions may not select webhook_subscription.* events: recording a
-- delivery changes the subscription, which would feed back into itself.
-- Events are names from the catalogue, "<aggregate>.*" or "*".
-- Deliveries, signatures and retries: sql/92_webhook_deliveries.sql.

CREATE FUNCTION ventros.is_public_http_url(url text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parts text[];
    host text;
    address inet;
BEGIN
    parts := regexp_match(url, '^https?://([^/?#@\s]+)([/?#][^\s]*)?$', 'i');
    IF parts IS NULL OR length(url) > 2048 THEN
        RETURN false;           -- not http(s), user info, spaces, or too long
    END IF;
    host := lower(parts[1]);
    IF host ~ '^\[.*\](:[0-9]{1,5})?$' THEN
        host := substring(host FROM '^\[(.*)\]');
    ELSE
        host := regexp_replace(host, ':[0-9]{1,5}$', '');
        IF host ~ ':' THEN
            RETURN false;       -- a bad port
        END IF;
    END IF;
    host := rtrim(host, '.');
    IF host = '' OR host = 'localhost' OR host LIKE '%.localhost' OR host LIKE '%.local' OR host LIKE '%.internal' THEN
        RETURN false;
    END IF;
    -- Decimal, octal or hex single-number hosts reach loopback on many stacks.
    IF host ~ '^(0x[0-9a-f]+|[0-9]+)$' THEN
        RETURN false;
    END IF;
    IF host ~ '^[0-9.]+$' OR host ~ ':' THEN
        BEGIN
            address := host::inet;
        EXCEPTION WHEN invalid_text_representation THEN
            RETURN false;
        END;
        IF family(address) = 6 AND address <<= '::ffff:0:0/96'::inet THEN
            address := regexp_replace(host(address), '^::ffff:', '')::inet;
        END IF;
        RETURN NOT (address <<= ANY (ARRAY['0.0.0.0/8', '10.0.0.0/8', '100.64.0.0/10', '127.0.0.0/8',
                                           '169.254.0.0/16', '172.16.0.0/12', '192.0.0.0/24', '192.168.0.0/16',
                                           '198.18.0.0/15', '224.0.0.0/4', '240.0.0.0/4',
                                           '::/128', '::1/128', 'fc00::/7', 'fe80::/10', 'ff00::/8']::inet[]));
    END IF;
    RETURN host ~ '^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$';
END
$$;
COMMENT ON FUNCTION ventros.is_public_http_url(text) IS
    'True for an http(s) URL without user info whose host is not localhost or a literal private, loopback or link-local address';

-- The literal host of the URL is named by the operator allow-list: a host
-- name (exact or "*.suffix") or an address inside one of its CIDRs.  Names
-- are not resolved here (the dispatcher checks resolved addresses).
CREATE FUNCTION ventros.is_allow_listed_url(url text) RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parts text[];
    host text;
    entry text;
    address inet;
BEGIN
    parts := regexp_match(url, '^https?://([^/?#@\s]+)([/?#][^\s]*)?$', 'i');
    IF parts IS NULL OR length(url) > 2048 THEN
        RETURN false;
    END IF;
    host := lower(parts[1]);
    IF host ~ '^\[.*\](:[0-9]{1,5})?$' THEN
        host := substring(host FROM '^\[(.*)\]');
    ELSE
        host := regexp_replace(host, ':[0-9]{1,5}$', '');
    END IF;
    host := rtrim(host, '.');
    IF host ~ '^[0-9.]+$' OR host ~ ':' THEN
        BEGIN
            address := host::inet;
        EXCEPTION WHEN invalid_text_representation THEN
            RETURN false;
        END;
    END IF;
    FOR entry IN SELECT lower(btrim(x)) FROM unnest(string_to_array(current_setting('ventros.http_allow_hosts', true), ',')) x
                 WHERE btrim(x) <> '' LOOP
        IF entry ~ '^[0-9.]+(/[0-9]{1,2})?$' OR entry ~ '^[0-9a-f:]*:[0-9a-f:.]*(/[0-9]{1,3})?$' THEN
            IF address IS NOT NULL AND family(address) = family(entry::inet) AND address <<= entry::inet THEN
                RETURN true;
            END IF;
        ELSIF entry LIKE '*.%' THEN
            IF right(host, length(entry) - 1) = substr(entry, 2) AND length(host) > length(entry) - 1 THEN
                RETURN true;
            END IF;
        ELSIF host = rtrim(entry, '.') THEN
            RETURN true;
        END IF;
    END LOOP;
    RETURN false;
END
$$;
COMMENT ON FUNCTION ventros.is_allow_listed_url(text) IS
    'True when the URL''s literal host is named by the operator allow-list ventros.http_allow_hosts (host names or CIDRs)';

-- A subscription URL: https to a public host, or any http(s) URL whose host
-- the operator allow-listed (channels.md 6.3, rule 1).
CREATE FUNCTION ventros.is_webhook_url_allowed(url text) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((url ~* '^https://' AND ventros.is_public_http_url(url)) OR ventros.is_allow_listed_url(url), false)
$$;
COMMENT ON FUNCTION ventros.is_webhook_url_allowed(text) IS
    'True for an https URL to a public host, or an http(s) URL whose host is in ventros.http_allow_hosts';

-- The one rule for which events a subscription's patterns select.
CREATE FUNCTION ventros.webhook_event_matches(patterns text[], event_type text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT event_type NOT LIKE 'webhook\_subscription.%'
       AND EXISTS (SELECT 1 FROM unnest(patterns) p
                    WHERE p = event_type OR p = '*' OR (p LIKE '%.*' AND starts_with(event_type, left(p, -1))))
$$;
COMMENT ON FUNCTION ventros.webhook_event_matches(text[], text) IS
    'True when an event type is selected by subscription patterns (exact names, "<aggregate>.*", "*"); never webhook_subscription.*';

CREATE TABLE ventros.webhook_subscriptions (
    id                       uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id                text        NOT NULL,
    version                  integer     NOT NULL DEFAULT 1,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    deleted_at               timestamptz,
    user_id                  uuid,
    project_id               uuid        NOT NULL,
    name                     text        NOT NULL,
    url                      text        NOT NULL,
    events                   text[]      NOT NULL,
    subscribe_contact_events boolean     NOT NULL DEFAULT false,
    contact_event_types      text[]      NOT NULL DEFAULT '{}',
    contact_event_categories text[]      NOT NULL DEFAULT '{}',
    active                   boolean     NOT NULL DEFAULT true,
    secret                   text,
    previous_secret          text,
    previous_secret_expires_at timestamptz,
    headers                  jsonb       NOT NULL DEFAULT '{}',
    retry_count              integer     NOT NULL DEFAULT 7,
    timeout_seconds          integer     NOT NULL DEFAULT 10,
    last_triggered_at        timestamptz,
    last_success_at          timestamptz,
    last_failure_at          timestamptz,
    success_count            integer     NOT NULL DEFAULT 0,
    failure_count            integer     NOT NULL DEFAULT 0,
    failing_since            timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id),
    CONSTRAINT webhook_subscriptions_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT webhook_subscriptions_events_present CHECK (cardinality(events) > 0 OR subscribe_contact_events),
    CONSTRAINT webhook_subscriptions_events_distinct CHECK (ventros.is_distinct_array(events)),
    CONSTRAINT webhook_subscriptions_no_self_events CHECK (NOT events && ARRAY['webhook_subscription.created',
        'webhook_subscription.updated', 'webhook_subscription.activated', 'webhook_subscription.deactivated',
        'webhook_subscription.deleted']),
    CONSTRAINT webhook_subscriptions_categories_known CHECK (contact_event_categories <@ ARRAY['general', 'status',
        'pipeline', 'assignment', 'tag', 'note', 'session', 'custom_field', 'system', 'notification', 'tracking']),
    CONSTRAINT webhook_subscriptions_headers_object CHECK (jsonb_typeof(headers) = 'object'),
    CONSTRAINT webhook_subscriptions_retry_range CHECK (retry_count BETWEEN 0 AND 10),
    CONSTRAINT webhook_subscriptions_timeout_range CHECK (timeout_seconds BETWEEN 1 AND 60),
    CONSTRAINT webhook_subscriptions_secret_size CHECK (length(secret) BETWEEN 16 AND 256 AND length(previous_secret) BETWEEN 16 AND 256),
    CONSTRAINT webhook_subscriptions_counters CHECK (success_count >= 0 AND failure_count >= 0)
);
CREATE INDEX webhook_subscriptions_by_event ON ventros.webhook_subscriptions USING gin (events) WHERE active AND deleted_at IS NULL;
COMMENT ON TABLE ventros.webhook_subscriptions IS 'WebhookSubscription: an outbound webhook for selected events';

-- The URL rule is a trigger, not a CHECK: it depends on the allow-list, and a
-- row must stay updatable (counters, deletion) after the allow-list shrinks.
CREATE FUNCTION ventros.check_webhook_url() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT ventros.is_webhook_url_allowed(NEW.url) THEN
        RAISE EXCEPTION 'webhook URL "%" is not a public https URL', left(NEW.url, 200)
            USING ERRCODE = '23514', CONSTRAINT = 'webhook_subscriptions_url_public',
                  DETAIL = 'Plain http, loopback, private, link-local and localhost addresses are refused, as are URLs with user info.';
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION ventros.check_webhook_url() IS
    'Trigger: a new or changed subscription URL must be public (SSRF rules) or named by ventros.http_allow_hosts (23514)';
CREATE TRIGGER webhook_subscriptions_url_public BEFORE INSERT ON ventros.webhook_subscriptions
    FOR EACH ROW EXECUTE FUNCTION ventros.check_webhook_url();
CREATE TRIGGER webhook_subscriptions_url_changed BEFORE UPDATE OF url ON ventros.webhook_subscriptions
    FOR EACH ROW WHEN (OLD.url IS DISTINCT FROM NEW.url) EXECUTE FUNCTION ventros.check_webhook_url();

SELECT ventros.register_aggregate('webhook_subscription', 'ventros.webhook_subscriptions', 'crm',
    state_column => 'active',
    transitions => '[
        {"from": null, "to": "true"},
        {"from": null, "to": "false"},
        {"from": "false", "to": "true", "event": "webhook_subscription.activated", "description": "A webhook subscription was activated."},
        {"from": "true", "to": "false", "event": "webhook_subscription.deactivated", "description": "A webhook subscription was deactivated."}
    ]',
    redacted_columns => '{secret, previous_secret, headers}',
    privileges => '{"ventros_viewer": ["SELECT"], "ventros_admin": ["INSERT", "UPDATE", "DELETE"]}',
    description => 'An outbound webhook');

-- Delivery statistics are quiet columns: recording a delivery neither moves
-- the version nor emits an event.
SELECT ventros.declare_quiet_columns('webhook_subscription', '{last_triggered_at,last_success_at,last_failure_at,success_count,failure_count,failing_since}');

-- Normalises and validates a change set of a subscription (URL and events).
CREATE FUNCTION ventros.check_webhook_changes(changes jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    unknown text;
BEGIN
    IF jsonb_typeof(changes) IS DISTINCT FROM 'object' THEN
        RETURN changes;
    END IF;
    IF changes ? 'url' AND NOT ventros.is_webhook_url_allowed(changes->>'url') THEN
        RAISE EXCEPTION 'webhook URL "%" is not a public https URL', left(changes->>'url', 200)
            USING ERRCODE = '22023',
                  DETAIL = 'Plain http, loopback, private, link-local and localhost addresses are refused, as are URLs with user info.',
                  HINT = 'Operators allow internal receivers with ventros.http_allow_hosts.';
    END IF;
    IF changes ? 'headers' AND jsonb_typeof(changes->'headers') = 'object' THEN
        SELECT h.key INTO unknown FROM jsonb_each(changes->'headers') h
         WHERE jsonb_typeof(h.value) <> 'string' OR h.key !~ '^[!#$%&''*+.^_`|~0-9A-Za-z-]{1,100}$'
            OR (h.value #>> '{}') ~ '[\r\n]' OR length(h.value #>> '{}') > 4096
            OR lower(h.key) IN ('content-type', 'content-length', 'user-agent', 'host', 'transfer-encoding',
                                'connection', 'expect') OR lower(h.key) LIKE 'x-ventros-%'
         LIMIT 1;
        IF unknown IS NOT NULL THEN
            RAISE EXCEPTION 'webhook header "%" is not allowed', left(unknown, 100)
                USING ERRCODE = '22023',
                      DETAIL = 'Custom headers are HTTP tokens with string values without line breaks; Content-Type, User-Agent, Host and X-Ventros-* are set by Ventros.';
        END IF;
    END IF;
    IF changes ? 'events' THEN
        IF jsonb_typeof(changes->'events') <> 'array' THEN
            RAISE EXCEPTION 'webhook events must be a JSON array of event types' USING ERRCODE = '22023';
        END IF;
        SELECT e INTO unknown FROM jsonb_array_elements_text(changes->'events') e
        WHERE NOT (e = '*' OR EXISTS (SELECT 1 FROM ventros.event_types t WHERE t.event_type = e)
                   OR (e ~ '^[a-z][a-z0-9_]*\.\*$'
                       AND EXISTS (SELECT 1 FROM ventros.event_types t WHERE t.aggregate = left(e, -2))))
           OR e LIKE 'webhook\_subscription.%'
        LIMIT 1;
        IF unknown IS NOT NULL THEN
            RAISE EXCEPTION 'webhook cannot subscribe to "%"', left(unknown, 120)
                USING ERRCODE = '22023', HINT = 'Pick event types from ventros.list_webhook_event_types().';
        END IF;
    END IF;
    RETURN changes;
END
$$;
COMMENT ON FUNCTION ventros.check_webhook_changes(jsonb) IS
    'Validates the URL (SSRF rules) and the event types of a webhook subscription change set (22023)';

CREATE FUNCTION ventros.create_webhook_subscription(name text, url text, events text[],
                                                    project_id uuid DEFAULT NULL, secret text DEFAULT NULL,
                                                    headers jsonb DEFAULT '{}',
                                                    subscribe_contact_events boolean DEFAULT false,
                                                    contact_event_types text[] DEFAULT '{}',
                                                    contact_event_categories text[] DEFAULT '{}')
RETURNS ventros.webhook_subscriptions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.webhook_subscriptions;
BEGIN
    IF name IS NULL OR url IS NULL OR events IS NULL THEN
        RAISE EXCEPTION 'webhook subscription % must not be null',
            CASE WHEN name IS NULL THEN 'name' WHEN url IS NULL THEN 'url' ELSE 'events' END USING ERRCODE = '23502';
    END IF;
    PERFORM ventros.check_webhook_changes(jsonb_build_object('url', url, 'events', to_jsonb(events), 'headers', headers));
    IF cardinality(events) = 0 AND NOT coalesce(subscribe_contact_events, false) THEN
        RAISE EXCEPTION 'a webhook subscription needs at least one event' USING ERRCODE = '23514';
    END IF;
    INSERT INTO ventros.webhook_subscriptions (project_id, name, url, events, secret, headers, subscribe_contact_events,
                                               contact_event_types, contact_event_categories)
    VALUES (coalesce(project_id, ventros.default_project()), ventros.check_length(btrim(name), 200, 'webhook name'),
            url, ARRAY(SELECT DISTINCT e FROM unnest(events) e ORDER BY e),
            coalesce(secret, replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '')),
            coalesce(ventros.require_json(headers, 'object', 'webhook headers'), '{}'),
            coalesce(subscribe_contact_events, false), coalesce(contact_event_types, '{}'),
            coalesce(contact_event_categories, '{}'))
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.create_webhook_subscription(text, text, text[], uuid, text, jsonb, boolean, text[], text[]) IS
    'Creates an active subscription (public http(s) URL and known events: 22023); emits webhook_subscription.created';

CREATE FUNCTION ventros.update_webhook_subscription(webhook_subscription_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.webhook_subscriptions
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.apply_changes(NULL::ventros.webhook_subscriptions, 'webhook_subscription', webhook_subscription_id,
        expected_version, ventros.check_webhook_changes(changes),
        ARRAY['name', 'url', 'events', 'subscribe_contact_events', 'contact_event_types', 'contact_event_categories',
              'secret', 'headers', 'retry_count', 'timeout_seconds', 'active'])
$$;
COMMENT ON FUNCTION ventros.update_webhook_subscription(uuid, integer, jsonb) IS
    'Changes a subscription (URL and events validated, 22023); emits webhook_subscription.updated, .activated or .deactivated';

CREATE FUNCTION ventros.set_webhook_subscription_active(webhook_subscription_id uuid, expected_version integer, active boolean)
RETURNS ventros.webhook_subscriptions
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.change_row(NULL::ventros.webhook_subscriptions, 'webhook_subscription', webhook_subscription_id,
                              expected_version, jsonb_build_object('active', active))
$$;
COMMENT ON FUNCTION ventros.set_webhook_subscription_active(uuid, integer, boolean) IS
    'Activates or deactivates a subscription; emits webhook_subscription.activated or .deactivated';

CREATE FUNCTION ventros.delete_webhook_subscription(webhook_subscription_id uuid, expected_version integer DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.delete_row('ventros.webhook_subscriptions', 'webhook_subscription', webhook_subscription_id, expected_version) $$;
COMMENT ON FUNCTION ventros.delete_webhook_subscription(uuid, integer) IS 'Soft-deletes a subscription; emits webhook_subscription.deleted';

CREATE FUNCTION ventros.record_webhook_delivery(webhook_subscription_id uuid, succeeded boolean)
RETURNS ventros.webhook_subscriptions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.webhook_subscriptions;
BEGIN
    UPDATE ventros.webhook_subscriptions w
    SET last_triggered_at = now(),
        last_success_at = CASE WHEN succeeded THEN now() ELSE w.last_success_at END,
        last_failure_at = CASE WHEN succeeded THEN w.last_failure_at ELSE now() END,
        success_count = w.success_count + CASE WHEN succeeded THEN 1 ELSE 0 END,
        failure_count = w.failure_count + CASE WHEN succeeded THEN 0 ELSE 1 END,
        failing_since = CASE WHEN succeeded THEN NULL ELSE coalesce(w.failing_since, now()) END,
        version = w.version
    WHERE w.tenant_id = ventros.require_tenant() AND w.id = webhook_subscription_id
    RETURNING * INTO result;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('webhook subscription', webhook_subscription_id);
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.record_webhook_delivery(uuid, boolean) IS
    'Counts a finished delivery, success or failure (quiet columns: no version check, no event)';

-- Rotation: the old secret keeps signing (as a second v1) until the overlap ends.
CREATE FUNCTION ventros.rotate_webhook_secret(webhook_subscription_id uuid, expected_version integer,
                                              new_secret text DEFAULT NULL, overlap interval DEFAULT '24 hours')
RETURNS ventros.webhook_subscriptions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.webhook_subscriptions;
BEGIN
    IF expected_version IS NULL THEN
        RAISE EXCEPTION 'expected_version of webhook subscription % must not be null', webhook_subscription_id
            USING ERRCODE = '23502', HINT = 'Pass the version you read.';
    END IF;
    IF overlap IS NULL OR overlap < interval '0' OR overlap > interval '30 days' THEN
        RAISE EXCEPTION 'overlap must be between 0 and 30 days' USING ERRCODE = '22023';
    END IF;
    UPDATE ventros.webhook_subscriptions w
    SET previous_secret = CASE WHEN overlap > interval '0' THEN w.secret END,
        previous_secret_expires_at = CASE WHEN overlap > interval '0' THEN now() + overlap END,
        secret = coalesce(new_secret, replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '')),
        version = expected_version
    WHERE w.tenant_id = ventros.require_tenant() AND w.id = webhook_subscription_id
    RETURNING * INTO result;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('webhook subscription', webhook_subscription_id);
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.rotate_webhook_secret(uuid, integer, text, interval) IS
    'Replaces the signing secret (random when not given); the previous one also signs (a second v1) until the overlap ends';

CREATE FUNCTION ventros.get_webhook_subscription(webhook_subscription_id uuid) RETURNS ventros.webhook_subscriptions
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.get_row(NULL::ventros.webhook_subscriptions, 'webhook subscription', webhook_subscription_id) $$;
COMMENT ON FUNCTION ventros.get_webhook_subscription(uuid) IS 'A live webhook subscription, or P0002';

CREATE FUNCTION ventros.list_webhook_subscriptions(event_type text DEFAULT NULL, only_active boolean DEFAULT false)
RETURNS SETOF ventros.webhook_subscriptions
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT w.* FROM ventros.webhook_subscriptions w
    WHERE w.tenant_id = ventros.require_tenant()
      AND (event_type IS NULL OR (w.active AND w.deleted_at IS NULL AND ventros.webhook_event_matches(w.events, event_type)))
      AND (NOT only_active OR w.active)
    ORDER BY w.created_at, w.id
    LIMIT current_setting('ventros.max_page_size')::integer
$$;
COMMENT ON FUNCTION ventros.list_webhook_subscriptions(text, boolean) IS
    'Subscriptions of the acting tenant; with event_type, the active ones that receive it';

CREATE FUNCTION ventros.list_webhook_event_types() RETURNS SETOF ventros.event_types
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM ventros.event_types WHERE aggregate <> 'webhook_subscription' ORDER BY event_type $$;
COMMENT ON FUNCTION ventros.list_webhook_event_types() IS 'The event types a webhook may subscribe to (the catalogue)';

GRANT EXECUTE ON FUNCTION ventros.is_public_http_url(text), ventros.is_allow_listed_url(text), ventros.is_webhook_url_allowed(text)
    TO ventros_viewer, ventros_anon;
GRANT EXECUTE ON FUNCTION ventros.webhook_event_matches(text[], text), ventros.check_webhook_url() TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.get_webhook_subscription(uuid), ventros.list_webhook_subscriptions(text, boolean),
    ventros.list_webhook_event_types() TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.check_webhook_changes(jsonb), ventros.record_webhook_delivery(uuid, boolean),
    ventros.create_webhook_subscription(text, text, text[], uuid, text, jsonb, boolean, text[], text[]),
    ventros.update_webhook_subscription(uuid, integer, jsonb), ventros.set_webhook_subscription_active(uuid, integer, boolean),
    ventros.delete_webhook_subscription(uuid, integer), ventros.rotate_webhook_secret(uuid, integer, text, interval)
    TO ventros_admin;

-- ---- sql/71_contact_lists.sql
-- Aggregate 11, ContactList (CRM): a named set of contacts, static (explicit
-- members) or dynamic (filter rules combined with AND or OR).  Broadcasts
-- target lists.  Filters and members are child aggregates of their own
-- (contact_list_filter, contact_list_member: versioned, tenant-scoped, with
-- the engine's created/updated/deleted events); the list emits the domain's
-- business events (contact_list.filter_rule_added, .contact_added, ...).
-- Members only on static lists, rules only on dynamic ones: checked under a
-- lock of the list row, which also serialises concurrent recalculations.

CREATE TABLE ventros.contact_lists (
    id                 uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id          text        NOT NULL,
    version            integer     NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at         timestamptz,
    project_id         uuid        NOT NULL,
    name               text        NOT NULL,
    description        text,
    logical_operator   text        NOT NULL DEFAULT 'AND',
    is_static          boolean     NOT NULL DEFAULT false,
    contact_count      integer     NOT NULL DEFAULT 0,
    last_calculated_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id),
    CONSTRAINT contact_lists_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT contact_lists_operator_known CHECK (logical_operator IN ('AND', 'OR')),
    CONSTRAINT contact_lists_count_not_negative CHECK (contact_count >= 0)
);
CREATE UNIQUE INDEX contact_lists_unique_name ON ventros.contact_lists (tenant_id, project_id, name) WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.contact_lists IS 'ContactList: a static or dynamic set of contacts';

CREATE TABLE ventros.contact_list_filters (
    id              uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id       text        NOT NULL,
    version         integer     NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    contact_list_id uuid        NOT NULL,
    filter_type     text        NOT NULL,
    operator        text        NOT NULL,
    field_key       text        NOT NULL,
    field_type      text,
    value           jsonb,
    pipeline_id     uuid,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_list_id) REFERENCES ventros.contact_lists (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT contact_list_filters_type_known CHECK (filter_type IN ('custom_field', 'pipeline_status', 'tag', 'event',
                                                                      'interaction', 'attribute')),
    CONSTRAINT contact_list_filters_operator_known CHECK (operator IN ('eq', 'ne', 'gt', 'lt', 'gte', 'lte', 'contains',
        'not_contains', 'starts_with', 'ends_with', 'in', 'not_in', 'is_null', 'is_not_null')),
    CONSTRAINT contact_list_filters_key_format CHECK (field_key ~ '^[A-Za-z_][A-Za-z0-9_.-]{0,99}$'),
    CONSTRAINT contact_list_filters_value_present CHECK (operator IN ('is_null', 'is_not_null') OR value IS NOT NULL),
    CONSTRAINT contact_list_filters_list_value CHECK (operator NOT IN ('in', 'not_in') OR jsonb_typeof(value) = 'array')
);
CREATE INDEX contact_list_filters_by_list ON ventros.contact_list_filters (tenant_id, contact_list_id) WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.contact_list_filters IS 'A filter rule of a dynamic contact list';

CREATE TABLE ventros.contact_list_members (
    id              uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id       text        NOT NULL,
    version         integer     NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    contact_list_id uuid        NOT NULL,
    contact_id      uuid        NOT NULL,
    added_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_list_id) REFERENCES ventros.contact_lists (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, contact_id) REFERENCES ventros.contacts (tenant_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX contact_list_members_unique ON ventros.contact_list_members (tenant_id, contact_list_id, contact_id)
    WHERE deleted_at IS NULL;
CREATE INDEX contact_list_members_by_contact ON ventros.contact_list_members (tenant_id, contact_id) WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.contact_list_members IS 'A member of a static contact list';

SELECT ventros.register_aggregate('contact_list', 'ventros.contact_lists', 'crm',
    description => 'A static or dynamic set of contacts');
-- The count is a quiet column: recounting or a member joining does not make
-- an editor's version stale; contact_list.recalculated / .contact_added say it.
SELECT ventros.declare_quiet_columns('contact_list', '{contact_count,last_calculated_at}');
SELECT ventros.register_aggregate('contact_list_filter', 'ventros.contact_list_filters', 'crm',
    description => 'A filter rule of a dynamic contact list (child of contact_list)');
SELECT ventros.register_aggregate('contact_list_member', 'ventros.contact_list_members', 'crm',
    description => 'A member of a static contact list (child of contact_list)');
SELECT ventros.register_event_type('contact_list.filter_rule_added', 'A filter rule was added to a dynamic list.');
SELECT ventros.register_event_type('contact_list.filter_rule_removed', 'A filter rule was removed from a dynamic list.');
SELECT ventros.register_event_type('contact_list.filter_rules_cleared', 'All filter rules of a dynamic list were removed.');
SELECT ventros.register_event_type('contact_list.recalculated', 'The member count of a list was recalculated.');
SELECT ventros.register_event_type('contact_list.contact_added', 'A contact was added to a static list.');
SELECT ventros.register_event_type('contact_list.contact_removed', 'A contact was removed from a static list.');

CREATE FUNCTION ventros.get_contact_list(contact_list_id uuid, for_update boolean DEFAULT false) RETURNS ventros.contact_lists
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN for_update THEN ventros.lock_row(NULL::ventros.contact_lists, 'contact list', contact_list_id)
                ELSE ventros.get_row(NULL::ventros.contact_lists, 'contact list', contact_list_id) END
$$;
COMMENT ON FUNCTION ventros.get_contact_list(uuid, boolean) IS 'A live contact list (locked when for_update), or P0002';

CREATE FUNCTION ventros.create_contact_list(name text, is_static boolean DEFAULT false, logical_operator text DEFAULT 'AND',
                                            description text DEFAULT NULL, project_id uuid DEFAULT NULL)
RETURNS ventros.contact_lists
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.contact_lists;
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'contact list name must not be null' USING ERRCODE = '23502';
    END IF;
    PERFORM ventros.require_value(coalesce(logical_operator, 'AND'), ARRAY['AND', 'OR'], 'logical operator');
    INSERT INTO ventros.contact_lists (project_id, name, description, logical_operator, is_static)
    VALUES (coalesce(project_id, ventros.default_project()), ventros.check_length(btrim(name), 200, 'contact list name'),
            description, coalesce(logical_operator, 'AND'), coalesce(is_static, false))
    RETURNING * INTO result;
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'a contact list named "%" exists already', name USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.create_contact_list(text, boolean, text, text, uuid) IS
    'Creates a static or dynamic contact list; emits contact_list.created';

CREATE FUNCTION ventros.update_contact_list(contact_list_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.contact_lists
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN ventros.apply_changes(NULL::ventros.contact_lists, 'contact list', contact_list_id, expected_version, changes,
                                 ARRAY['name', 'description', 'logical_operator']);
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'a contact list named "%" exists already', changes->>'name' USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.update_contact_list(uuid, integer, jsonb) IS
    'Changes the name, description or logical operator of a list; emits contact_list.updated';

CREATE FUNCTION ventros.delete_contact_list(contact_list_id uuid, expected_version integer DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.delete_row('ventros.contact_lists', 'contact list', contact_list_id, expected_version) $$;
COMMENT ON FUNCTION ventros.delete_contact_list(uuid, integer) IS 'Soft-deletes a list; emits contact_list.deleted';

CREATE FUNCTION ventros.add_contact_list_filter(contact_list_id uuid, filter_type text, operator text, field_key text,
                                                value jsonb DEFAULT NULL, field_type text DEFAULT NULL,
                                                pipeline_id uuid DEFAULT NULL)
RETURNS ventros.contact_list_filters
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    list ventros.contact_lists := ventros.get_contact_list(contact_list_id, true);
    result ventros.contact_list_filters;
BEGIN
    IF list.is_static THEN
        RAISE EXCEPTION 'contact list % is static; filter rules belong to dynamic lists', contact_list_id
            USING ERRCODE = '23514';
    END IF;
    PERFORM ventros.require_value(filter_type, ARRAY['custom_field', 'pipeline_status', 'tag', 'event', 'interaction',
                                                     'attribute'], 'filter type');
    PERFORM ventros.require_value(operator, ARRAY['eq', 'ne', 'gt', 'lt', 'gte', 'lte', 'contains', 'not_contains',
        'starts_with', 'ends_with', 'in', 'not_in', 'is_null', 'is_not_null'], 'filter operator');
    IF filter_type = 'attribute' THEN
        PERFORM ventros.require_value(field_key, ARRAY['name', 'email', 'phone', 'external_id', 'source_channel',
            'language', 'timezone', 'created_at', 'first_interaction_at', 'last_interaction_at'], 'contact attribute');
    ELSIF filter_type IN ('event', 'interaction') THEN
        RAISE EXCEPTION '% filters are not evaluated yet', filter_type USING ERRCODE = '0A000',
            HINT = 'Use attribute, tag, custom_field or pipeline_status filters.';
    END IF;
    INSERT INTO ventros.contact_list_filters (contact_list_id, filter_type, operator, field_key, field_type, value, pipeline_id)
    VALUES (contact_list_id, filter_type, operator, field_key, field_type, value, pipeline_id)
    RETURNING * INTO result;
    PERFORM ventros.emit('contact_list.filter_rule_added', 'contact_list', contact_list_id,
        jsonb_build_object('filter_id', result.id, 'filter_type', filter_type, 'operator', operator,
                           'field_key', field_key, 'value', value), list.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.add_contact_list_filter(uuid, text, text, text, jsonb, text, uuid) IS
    'Adds a filter rule to a dynamic list (static: 23514; bad type or operator: 22023); emits contact_list_filter.created and contact_list.filter_rule_added';

CREATE FUNCTION ventros.remove_contact_list_filter(contact_list_filter_id uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f ventros.contact_list_filters;
    list ventros.contact_lists;
BEGIN
    SELECT * INTO f FROM ventros.contact_list_filters x
    WHERE x.tenant_id = ventros.require_tenant() AND x.id = contact_list_filter_id;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('contact list filter', contact_list_filter_id);
    END IF;
    list := ventros.get_contact_list(f.contact_list_id, true);
    PERFORM ventros.delete_row('ventros.contact_list_filters', 'contact list filter', contact_list_filter_id, NULL);
    PERFORM ventros.emit('contact_list.filter_rule_removed', 'contact_list', list.id,
                         jsonb_build_object('filter_id', f.id), list.version);
END
$$;
COMMENT ON FUNCTION ventros.remove_contact_list_filter(uuid) IS
    'Removes a filter rule; emits contact_list_filter.deleted and contact_list.filter_rule_removed';

CREATE FUNCTION ventros.clear_contact_list_filters(contact_list_id uuid)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    list ventros.contact_lists := ventros.get_contact_list(contact_list_id, true);
    n integer;
BEGIN
    -- soft deletes skip the physical delete, so ROW_COUNT is 0: count first.
    SELECT count(*) INTO n FROM ventros.contact_list_filters f
    WHERE f.tenant_id = list.tenant_id AND f.contact_list_id = list.id;
    DELETE FROM ventros.contact_list_filters f
    WHERE f.tenant_id = list.tenant_id AND f.contact_list_id = list.id;
    PERFORM ventros.emit('contact_list.filter_rules_cleared', 'contact_list', list.id,
                         jsonb_build_object('removed', n), list.version);
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.clear_contact_list_filters(uuid) IS
    'Removes all filter rules of a list; emits contact_list_filter.deleted for each and contact_list.filter_rules_cleared';

CREATE FUNCTION ventros.add_contact_to_list(contact_list_id uuid, contact_id uuid)
RETURNS ventros.contact_list_members
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    list ventros.contact_lists := ventros.get_contact_list(contact_list_id, true);
    result ventros.contact_list_members;
BEGIN
    IF NOT list.is_static THEN
        RAISE EXCEPTION 'contact list % is dynamic; its members come from its filter rules', contact_list_id
            USING ERRCODE = '23514';
    END IF;
    PERFORM ventros.get_contact(contact_id);
    INSERT INTO ventros.contact_list_members (contact_list_id, contact_id)
    VALUES (contact_list_id, contact_id)
    RETURNING * INTO result;
    UPDATE ventros.contact_lists l SET contact_count = l.contact_count + 1, version = l.version
    WHERE l.tenant_id = list.tenant_id AND l.id = list.id;
    PERFORM ventros.emit('contact_list.contact_added', 'contact_list', list.id,
                         jsonb_build_object('contact_id', contact_id), list.version);
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'contact % is in list % already', contact_id, contact_list_id USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.add_contact_to_list(uuid, uuid) IS
    'Adds a contact to a static list (dynamic: 23514; twice: 23505); emits contact_list_member.created and contact_list.contact_added';

CREATE FUNCTION ventros.remove_contact_from_list(contact_list_id uuid, contact_id uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    list ventros.contact_lists := ventros.get_contact_list(contact_list_id, true);
    member_id uuid;
BEGIN
    SELECT m.id INTO member_id FROM ventros.contact_list_members m
    WHERE m.tenant_id = list.tenant_id AND m.contact_list_id = list.id AND m.contact_id = remove_contact_from_list.contact_id;
    IF member_id IS NULL THEN
        RAISE EXCEPTION 'contact % is not in list %', contact_id, contact_list_id USING ERRCODE = 'P0002';
    END IF;
    PERFORM ventros.delete_row('ventros.contact_list_members', 'contact list member', member_id, NULL);
    UPDATE ventros.contact_lists l SET contact_count = greatest(l.contact_count - 1, 0), version = l.version
    WHERE l.tenant_id = list.tenant_id AND l.id = list.id;
    PERFORM ventros.emit('contact_list.contact_removed', 'contact_list', list.id,
                         jsonb_build_object('contact_id', contact_id), list.version);
END
$$;
COMMENT ON FUNCTION ventros.remove_contact_from_list(uuid, uuid) IS
    'Removes a contact from a static list (P0002 when absent); emits contact_list_member.deleted and contact_list.contact_removed';

-- contact_list_predicate: the SQL condition over contacts c that a dynamic
-- list's rules describe.  Values enter as literals (format %L), keys only
-- from the attribute whitelist or as literals, so nothing is injected.
CREATE FUNCTION ventros.contact_list_predicate(contact_list_id uuid) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    list ventros.contact_lists := ventros.get_contact_list(contact_list_id);
    f ventros.contact_list_filters;
    subject text;
    v text;
    cond text;
    parts text[] := '{}';
BEGIN
    IF list.is_static THEN
        RETURN format('EXISTS (SELECT 1 FROM ventros.contact_list_members m WHERE m.tenant_id = c.tenant_id '
                      'AND m.contact_list_id = %L AND m.contact_id = c.id AND m.deleted_at IS NULL)', list.id);
    END IF;
    FOR f IN SELECT * FROM ventros.contact_list_filters x
             WHERE x.tenant_id = list.tenant_id AND x.contact_list_id = list.id ORDER BY x.created_at, x.id LOOP
        v := f.value #>> '{}';
        IF f.filter_type = 'tag' THEN
            cond := CASE f.operator
                WHEN 'eq' THEN format('c.tags @> ARRAY[%L]', v)
                WHEN 'contains' THEN format('c.tags @> ARRAY[%L]', v)
                WHEN 'ne' THEN format('NOT c.tags @> ARRAY[%L]', v)
                WHEN 'not_contains' THEN format('NOT c.tags @> ARRAY[%L]', v)
                WHEN 'in' THEN format('c.tags && ARRAY(SELECT jsonb_array_elements_text(%L::jsonb))', f.value)
                WHEN 'not_in' THEN format('NOT c.tags && ARRAY(SELECT jsonb_array_elements_text(%L::jsonb))', f.value)
                WHEN 'is_null' THEN 'cardinality(c.tags) = 0'
                WHEN 'is_not_null' THEN 'cardinality(c.tags) > 0'
                ELSE format('EXISTS (SELECT 1 FROM unnest(c.tags) t WHERE %s)',
                            ventros.filter_condition('t', f.operator, f.value)) END;
        ELSE
            IF f.filter_type = 'attribute' THEN
                subject := format('c.%I::text', f.field_key);
                cond := ventros.filter_condition(subject, f.operator, f.value);
            ELSIF f.filter_type = 'custom_field' AND to_regclass('ventros.contact_custom_fields') IS NOT NULL THEN
                cond := format('EXISTS (SELECT 1 FROM ventros.contact_custom_fields cf WHERE cf.tenant_id = c.tenant_id '
                               'AND cf.contact_id = c.id AND cf.field_key = %L AND cf.deleted_at IS NULL AND %s)',
                               f.field_key, ventros.filter_condition('(cf.field_value #>> ''{}'')', f.operator, f.value));
            ELSIF f.filter_type = 'pipeline_status' AND to_regclass('ventros.contact_pipeline_statuses') IS NOT NULL THEN
                cond := format('EXISTS (SELECT 1 FROM ventros.contact_pipeline_statuses ps WHERE ps.tenant_id = c.tenant_id '
                               'AND ps.contact_id = c.id AND ps.exited_at IS NULL AND ps.deleted_at IS NULL '
                               'AND (%L::uuid IS NULL OR ps.pipeline_id = %L::uuid) AND %s)',
                               f.pipeline_id, f.pipeline_id, ventros.filter_condition('ps.status_id::text', f.operator, f.value));
            ELSE
                RAISE EXCEPTION '% filters cannot be evaluated in this installation', f.filter_type USING ERRCODE = '0A000';
            END IF;
        END IF;
        parts := parts || ('(' || cond || ')');
    END LOOP;
    IF cardinality(parts) = 0 THEN
        RETURN 'false';         -- a dynamic list without rules is empty
    END IF;
    RETURN array_to_string(parts, ' ' || list.logical_operator || ' ');
END
$$;
COMMENT ON FUNCTION ventros.contact_list_predicate(uuid) IS
    'The SQL condition over contacts c described by a list (members, or filter rules joined by its operator)';

-- filter_condition: one operator applied to a text expression.
CREATE FUNCTION ventros.filter_condition(subject text, operator text, value jsonb) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE operator
        WHEN 'eq' THEN format('%s = %L', subject, value #>> '{}')
        WHEN 'ne' THEN format('%s IS DISTINCT FROM %L', subject, value #>> '{}')
        WHEN 'gt' THEN format('%s > %L', subject, value #>> '{}')
        WHEN 'lt' THEN format('%s < %L', subject, value #>> '{}')
        WHEN 'gte' THEN format('%s >= %L', subject, value #>> '{}')
        WHEN 'lte' THEN format('%s <= %L', subject, value #>> '{}')
        WHEN 'contains' THEN format('strpos(lower(%s), lower(%L)) > 0', subject, value #>> '{}')
        WHEN 'not_contains' THEN format('coalesce(strpos(lower(%s), lower(%L)) = 0, true)', subject, value #>> '{}')
        WHEN 'starts_with' THEN format('left(lower(%s), length(%L)) = lower(%L)', subject, value #>> '{}', value #>> '{}')
        WHEN 'ends_with' THEN format('right(lower(%s), length(%L)) = lower(%L)', subject, value #>> '{}', value #>> '{}')
        WHEN 'in' THEN format('%s IN (SELECT jsonb_array_elements_text(%L::jsonb))', subject, value)
        WHEN 'not_in' THEN format('%s NOT IN (SELECT jsonb_array_elements_text(%L::jsonb))', subject, value)
        WHEN 'is_null' THEN format('%s IS NULL', subject)
        WHEN 'is_not_null' THEN format('%s IS NOT NULL', subject)
    END
$$;
COMMENT ON FUNCTION ventros.filter_condition(text, text, jsonb) IS 'SQL text of one filter operator applied to an expression';

CREATE FUNCTION ventros.list_contact_list_contacts(contact_list_id uuid, after_id uuid DEFAULT NULL, page_size integer DEFAULT 50)
RETURNS SETOF ventros.contacts
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY EXECUTE format('SELECT c.* FROM ventros.contacts c WHERE c.tenant_id = ventros.require_tenant() '
                                'AND ($1 IS NULL OR c.id > $1) AND (%s) ORDER BY c.id LIMIT $2',
                                ventros.contact_list_predicate(contact_list_id))
        USING after_id, ventros.check_page_size(page_size);
END
$$;
COMMENT ON FUNCTION ventros.list_contact_list_contacts(uuid, uuid, integer) IS
    'The live contacts of a list (members or rule matches), in id order, one keyset page at a time';

CREATE FUNCTION ventros.is_in_contact_list(contact_list_id uuid, contact_id uuid) RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found boolean;
BEGIN
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM ventros.contacts c WHERE c.tenant_id = ventros.require_tenant() '
                   'AND c.id = $1 AND (%s))', ventros.contact_list_predicate(contact_list_id))
        INTO found USING contact_id;
    RETURN found;
END
$$;
COMMENT ON FUNCTION ventros.is_in_contact_list(uuid, uuid) IS 'Whether a contact belongs to a list';

CREATE FUNCTION ventros.recalculate_contact_list(contact_list_id uuid)
RETURNS ventros.contact_lists
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    list ventros.contact_lists := ventros.get_contact_list(contact_list_id, true);
    n integer;
    result ventros.contact_lists;
BEGIN
    EXECUTE format('SELECT count(*) FROM ventros.contacts c WHERE c.tenant_id = ventros.require_tenant() AND (%s)',
                   ventros.contact_list_predicate(contact_list_id)) INTO n;
    UPDATE ventros.contact_lists l SET contact_count = n, last_calculated_at = now(), version = l.version
    WHERE l.tenant_id = list.tenant_id AND l.id = list.id
    RETURNING * INTO result;
    PERFORM ventros.emit('contact_list.recalculated', 'contact_list', list.id,
                         jsonb_build_object('contact_count', n, 'previous_count', list.contact_count), result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.recalculate_contact_list(uuid) IS
    'Recounts a list''s contacts (a quiet change: the version stays); emits contact_list.recalculated';

CREATE FUNCTION ventros.list_contact_lists(project_id uuid DEFAULT NULL) RETURNS SETOF ventros.contact_lists
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT l.* FROM ventros.contact_lists l
    WHERE l.tenant_id = ventros.require_tenant()
      AND (list_contact_lists.project_id IS NULL OR l.project_id = list_contact_lists.project_id)
    ORDER BY l.name, l.id
    LIMIT current_setting('ventros.max_page_size')::integer
$$;
COMMENT ON FUNCTION ventros.list_contact_lists(uuid) IS 'Contact lists of the acting tenant, by project, in name order';

GRANT EXECUTE ON FUNCTION ventros.get_contact_list(uuid, boolean), ventros.contact_list_predicate(uuid),
    ventros.filter_condition(text, text, jsonb), ventros.list_contact_list_contacts(uuid, uuid, integer),
    ventros.is_in_contact_list(uuid, uuid), ventros.list_contact_lists(uuid) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.create_contact_list(text, boolean, text, text, uuid),
    ventros.update_contact_list(uuid, integer, jsonb), ventros.add_contact_list_filter(uuid, text, text, text, jsonb, text, uuid),
    ventros.remove_contact_list_filter(uuid), ventros.clear_contact_list_filters(uuid),
    ventros.add_contact_to_list(uuid, uuid), ventros.remove_contact_from_list(uuid, uuid),
    ventros.recalculate_contact_list(uuid)
    TO ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.delete_contact_list(uuid, integer) TO ventros_admin;

-- ---- sql/72_contact_events.sql
-- Aggregate 12, ContactEvent (CRM): the contact's customer-facing timeline
-- (an ad conversion, a profile-picture update, a note...), pushed to clients
-- in real time.  It is a projection of domain events; the engine still
-- versions it and records its own contact_event.* events, which the
-- real-time push (webhook subscriptions with subscribe_contact_events) reads.

CREATE TABLE ventros.contact_events (
    id                 uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id          text        NOT NULL,
    version            integer     NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at         timestamptz,
    contact_id         uuid        NOT NULL,
    session_id         uuid,
    event_type         text        NOT NULL,
    category           text        NOT NULL DEFAULT 'general',
    priority           text        NOT NULL DEFAULT 'normal',
    title              text,
    description        text,
    payload            jsonb       NOT NULL DEFAULT '{}',
    metadata           jsonb       NOT NULL DEFAULT '{}',
    source             text        NOT NULL DEFAULT 'system',
    triggered_by       uuid,
    integration_source text,
    is_realtime        boolean     NOT NULL DEFAULT true,
    delivered          boolean     NOT NULL DEFAULT false,
    delivered_at       timestamptz,
    read               boolean     NOT NULL DEFAULT false,
    read_at            timestamptz,
    visible_to_client  boolean     NOT NULL DEFAULT true,
    visible_to_agent   boolean     NOT NULL DEFAULT true,
    expires_at         timestamptz,
    occurred_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES ventros.contacts (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, session_id) REFERENCES ventros.sessions (tenant_id, id) ON DELETE SET NULL (session_id),
    FOREIGN KEY (tenant_id, triggered_by) REFERENCES ventros.agents (tenant_id, id) ON DELETE SET NULL (triggered_by),
    CONSTRAINT contact_events_type_format CHECK (event_type ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$' AND length(event_type) <= 120),
    CONSTRAINT contact_events_category_known CHECK (category IN ('general', 'status', 'pipeline', 'assignment', 'tag', 'note',
        'session', 'custom_field', 'system', 'notification', 'tracking')),
    CONSTRAINT contact_events_priority_known CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    CONSTRAINT contact_events_source_known CHECK (source IN ('system', 'agent', 'webhook', 'workflow', 'automation', 'integration')),
    CONSTRAINT contact_events_expiry_after CHECK (expires_at > occurred_at),
    CONSTRAINT contact_events_delivery_marks CHECK ((delivered = (delivered_at IS NOT NULL)) AND (read = (read_at IS NOT NULL))),
    CONSTRAINT contact_events_json_objects CHECK (jsonb_typeof(payload) = 'object' AND jsonb_typeof(metadata) = 'object'),
    CONSTRAINT contact_events_text_sizes CHECK (length(title) <= 500 AND length(description) <= 4000)
);
CREATE INDEX contact_events_by_contact ON ventros.contact_events (tenant_id, contact_id, occurred_at DESC, id DESC)
    WHERE deleted_at IS NULL;
CREATE INDEX contact_events_undelivered ON ventros.contact_events (tenant_id, occurred_at)
    WHERE is_realtime AND NOT delivered AND deleted_at IS NULL;
CREATE INDEX contact_events_by_session ON ventros.contact_events (tenant_id, session_id) WHERE session_id IS NOT NULL;
COMMENT ON TABLE ventros.contact_events IS 'ContactEvent: an entry of a contact''s customer-facing timeline';

SELECT ventros.register_aggregate('contact_event', 'ventros.contact_events', 'crm',
    description => 'An entry of a contact''s customer-facing timeline (a projection)');

CREATE FUNCTION ventros.create_contact_event(contact_id uuid, event_type text, category text DEFAULT 'general',
                                             title text DEFAULT NULL, description text DEFAULT NULL,
                                             payload jsonb DEFAULT '{}', priority text DEFAULT 'normal',
                                             source text DEFAULT 'system', session_id uuid DEFAULT NULL,
                                             triggered_by uuid DEFAULT NULL, visible_to_client boolean DEFAULT true,
                                             expires_at timestamptz DEFAULT NULL, occurred_at timestamptz DEFAULT NULL)
RETURNS ventros.contact_events
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.contact_events;
BEGIN
    PERFORM ventros.get_contact(contact_id);
    IF event_type IS NULL THEN
        RAISE EXCEPTION 'contact event type must not be null' USING ERRCODE = '23502';
    END IF;
    PERFORM ventros.require_value(coalesce(category, 'general'), ARRAY['general', 'status', 'pipeline', 'assignment', 'tag',
        'note', 'session', 'custom_field', 'system', 'notification', 'tracking'], 'contact event category');
    PERFORM ventros.require_value(coalesce(priority, 'normal'), ARRAY['low', 'normal', 'high', 'urgent'], 'contact event priority');
    PERFORM ventros.require_value(coalesce(source, 'system'), ARRAY['system', 'agent', 'webhook', 'workflow', 'automation',
        'integration'], 'contact event source');
    INSERT INTO ventros.contact_events (contact_id, session_id, event_type, category, priority, title, description, payload,
                                        source, triggered_by, visible_to_client, expires_at, occurred_at)
    VALUES (contact_id, session_id, event_type, coalesce(category, 'general'), coalesce(priority, 'normal'),
            ventros.check_length(title, 500, 'contact event title'),
            ventros.check_length(description, 4000, 'contact event description'),
            coalesce(ventros.require_json(payload, 'object', 'contact event payload'), '{}'), coalesce(source, 'system'),
            triggered_by, coalesce(visible_to_client, true), expires_at, coalesce(occurred_at, now()))
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.create_contact_event(uuid, text, text, text, text, jsonb, text, text, uuid, uuid, boolean, timestamptz, timestamptz) IS
    'Adds an entry to a contact''s timeline; emits contact_event.created';

CREATE FUNCTION ventros.mark_contact_event_delivered(contact_event_id uuid) RETURNS ventros.contact_events
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.contact_events;
BEGIN
    -- idempotent: a second delivery keeps the first time
    UPDATE ventros.contact_events e SET delivered = true, delivered_at = coalesce(e.delivered_at, now()), version = e.version
    WHERE e.tenant_id = ventros.require_tenant() AND e.id = contact_event_id
    RETURNING * INTO result;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('contact event', contact_event_id);
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.mark_contact_event_delivered(uuid) IS 'Marks an entry delivered (idempotent); emits contact_event.updated once';

CREATE FUNCTION ventros.mark_contact_event_read(contact_event_id uuid) RETURNS ventros.contact_events
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.contact_events;
BEGIN
    UPDATE ventros.contact_events e
    SET delivered = true, delivered_at = coalesce(e.delivered_at, now()), read = true, read_at = coalesce(e.read_at, now()),
        version = e.version
    WHERE e.tenant_id = ventros.require_tenant() AND e.id = contact_event_id
    RETURNING * INTO result;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('contact event', contact_event_id);
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.mark_contact_event_read(uuid) IS 'Marks an entry read (and delivered; idempotent); emits contact_event.updated once';

CREATE FUNCTION ventros.update_contact_event(contact_event_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.contact_events
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.apply_changes(NULL::ventros.contact_events, 'contact event', contact_event_id, expected_version, changes,
        ARRAY['session_id', 'visible_to_client', 'visible_to_agent', 'expires_at', 'priority', 'metadata'])
$$;
COMMENT ON FUNCTION ventros.update_contact_event(uuid, integer, jsonb) IS
    'Attaches an entry to a session, sets visibility, expiry, priority or metadata; emits contact_event.updated';

CREATE FUNCTION ventros.purge_expired_contact_events(now timestamptz DEFAULT now()) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    SELECT count(*) INTO n FROM ventros.contact_events e
    WHERE e.tenant_id = ventros.require_tenant() AND e.expires_at <= purge_expired_contact_events.now;
    DELETE FROM ventros.contact_events e
    WHERE e.tenant_id = ventros.require_tenant() AND e.expires_at <= purge_expired_contact_events.now;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.purge_expired_contact_events(timestamptz) IS
    'Soft-deletes the acting tenant''s expired entries; emits contact_event.deleted for each; returns how many';

CREATE FUNCTION ventros.list_contact_events(contact_id uuid DEFAULT NULL, session_id uuid DEFAULT NULL,
                                            client_only boolean DEFAULT false, undelivered_only boolean DEFAULT false,
                                            category text DEFAULT NULL, since timestamptz DEFAULT NULL,
                                            before_occurred_at timestamptz DEFAULT NULL, before_id uuid DEFAULT NULL,
                                            page_size integer DEFAULT 50)
RETURNS SETOF ventros.contact_events
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT e.* FROM ventros.contact_events e
    WHERE e.tenant_id = ventros.require_tenant()
      AND (list_contact_events.contact_id IS NULL OR e.contact_id = list_contact_events.contact_id)
      AND (list_contact_events.session_id IS NULL OR e.session_id = list_contact_events.session_id)
      AND (NOT client_only OR e.visible_to_client)
      AND (NOT undelivered_only OR (e.is_realtime AND NOT e.delivered))
      AND (list_contact_events.category IS NULL OR e.category = list_contact_events.category)
      AND (since IS NULL OR e.occurred_at >= since)
      AND (before_id IS NULL OR (e.occurred_at, e.id) < (before_occurred_at, before_id))
      AND (e.expires_at IS NULL OR e.expires_at > now())
    ORDER BY e.occurred_at DESC, e.id DESC
    LIMIT ventros.check_page_size(page_size)
$$;
COMMENT ON FUNCTION ventros.list_contact_events(uuid, uuid, boolean, boolean, text, timestamptz, timestamptz, uuid, integer) IS
    'Unexpired timeline entries, newest first, by contact, session, visibility, delivery or category; keyset paging on (occurred_at, id)';

GRANT EXECUTE ON FUNCTION ventros.list_contact_events(uuid, uuid, boolean, boolean, text, timestamptz, timestamptz, uuid, integer)
    TO ventros_viewer;
GRANT EXECUTE ON FUNCTION
    ventros.create_contact_event(uuid, text, text, text, text, jsonb, text, text, uuid, uuid, boolean, timestamptz, timestamptz),
    ventros.mark_contact_event_delivered(uuid), ventros.mark_contact_event_read(uuid),
    ventros.update_contact_event(uuid, integer, jsonb)
    TO ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.purge_expired_contact_events(timestamptz) TO ventros_admin;

-- ---- sql/73_event_log.sql
-- Aggregate 13, Event (CRM): the append-only activity log of contacts,
-- sessions and messages.  Its facts (type, source, payload, time, subject)
-- never change: a trigger refuses it.  Two things may be added later: the
-- contact, session or message an entry belongs to (each once, from NULL) and
-- published_at.  The only exception is erasure (ventros.erase_contact), which
-- runs as the extension owner and may redact a payload.  sequence_number
-- counts a contact's entries, 1, 2, 3..., under a transaction lock per
-- (tenant, contact), so concurrent appends never share a number.

CREATE TABLE ventros.event_log (
    id              uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id       text        NOT NULL,
    version         integer     NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    event_type      text        NOT NULL,
    aggregate_type  text,
    aggregate_id    uuid,
    contact_id      uuid,
    session_id      uuid,
    message_id      uuid,
    project_id      uuid,
    user_id         uuid,
    payload         jsonb       NOT NULL DEFAULT '{}',
    source          text        NOT NULL DEFAULT 'system',
    sequence_number bigint,
    occurred_at     timestamptz NOT NULL DEFAULT now(),
    published_at    timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES ventros.contacts (tenant_id, id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES ventros.sessions (tenant_id, id),
    FOREIGN KEY (tenant_id, message_id) REFERENCES ventros.messages (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id),
    CONSTRAINT event_log_type_known CHECK (event_type IN ('contact.created', 'contact.updated', 'contact.deleted',
        'session.started', 'session.ended', 'session.summarized', 'message.received', 'message.sent', 'message.read',
        'message.failed', 'agent.assigned', 'agent.transferred', 'agent.typing_started', 'custom_field.updated',
        'tag.added', 'tag.removed', 'note.added')),
    CONSTRAINT event_log_source_known CHECK (source IN ('system', 'webhook', 'manual', 'cron', 'workflow')),
    CONSTRAINT event_log_payload_object CHECK (jsonb_typeof(payload) = 'object'),
    CONSTRAINT event_log_sequence_with_contact CHECK ((sequence_number IS NULL) = (contact_id IS NULL))
);
CREATE UNIQUE INDEX event_log_contact_sequence ON ventros.event_log (tenant_id, contact_id, sequence_number)
    WHERE contact_id IS NOT NULL;
CREATE INDEX event_log_by_type ON ventros.event_log (tenant_id, event_type, occurred_at);
CREATE INDEX event_log_by_session ON ventros.event_log (tenant_id, session_id, occurred_at) WHERE session_id IS NOT NULL;
COMMENT ON TABLE ventros.event_log IS 'Event: the append-only activity log (17 activity types)';

SELECT ventros.register_aggregate('event_log', 'ventros.event_log', 'crm',
    privileges => '{"ventros_viewer": ["SELECT"], "ventros_agent": ["INSERT", "UPDATE"], "ventros_admin": ["DELETE"]}',
    description => 'The append-only activity log');

-- Numbers a contact's entries; runs before the engine (trigger name order).
CREATE FUNCTION ventros.event_log_sequence(tenant text, contact_id uuid) RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_advisory_xact_lock(hashtextextended(tenant || '/' || contact_id::text, 13));
    SELECT coalesce(max(l.sequence_number), 0) + 1 FROM ventros.event_log l
    WHERE l.tenant_id = tenant AND l.contact_id = event_log_sequence.contact_id
$$;
COMMENT ON FUNCTION ventros.event_log_sequence(text, uuid) IS
    'The next sequence number of a contact''s activity log (locks the contact''s log until commit)';

CREATE FUNCTION ventros.event_log_guard() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.tenant_id := coalesce(NEW.tenant_id, ventros.require_tenant());
        NEW.sequence_number := CASE WHEN NEW.contact_id IS NOT NULL
                                    THEN ventros.event_log_sequence(NEW.tenant_id, NEW.contact_id) END;
        RETURN NEW;
    END IF;
    IF (NEW.event_type, NEW.aggregate_type, NEW.aggregate_id, NEW.project_id, NEW.user_id, NEW.source, NEW.occurred_at)
       IS DISTINCT FROM (OLD.event_type, OLD.aggregate_type, OLD.aggregate_id, OLD.project_id, OLD.user_id, OLD.source,
                         OLD.occurred_at)
       OR (NEW.payload IS DISTINCT FROM OLD.payload
           AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user))
       OR (OLD.contact_id IS NOT NULL AND NEW.contact_id IS DISTINCT FROM OLD.contact_id)
       OR (OLD.session_id IS NOT NULL AND NEW.session_id IS DISTINCT FROM OLD.session_id)
       OR (OLD.message_id IS NOT NULL AND NEW.message_id IS DISTINCT FROM OLD.message_id)
       OR (OLD.sequence_number IS NOT NULL AND NEW.sequence_number IS DISTINCT FROM OLD.sequence_number) THEN
        RAISE EXCEPTION 'event log entry % is append-only', OLD.id
            USING ERRCODE = '55000',
                  DETAIL = 'Only a missing contact, session or message and published_at can be added to an entry.';
    END IF;
    IF OLD.contact_id IS NULL AND NEW.contact_id IS NOT NULL THEN
        NEW.sequence_number := ventros.event_log_sequence(NEW.tenant_id, NEW.contact_id);
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION ventros.event_log_guard() IS
    'Keeps the activity log append-only (55000) and numbers each contact''s entries';
CREATE TRIGGER event_log_guard BEFORE INSERT OR UPDATE ON ventros.event_log
    FOR EACH ROW EXECUTE FUNCTION ventros.event_log_guard();

CREATE FUNCTION ventros.append_event_log(event_type text, payload jsonb DEFAULT '{}', source text DEFAULT 'system',
                                         contact_id uuid DEFAULT NULL, session_id uuid DEFAULT NULL,
                                         message_id uuid DEFAULT NULL, aggregate_type text DEFAULT NULL,
                                         aggregate_id uuid DEFAULT NULL, occurred_at timestamptz DEFAULT NULL)
RETURNS ventros.event_log
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.event_log;
BEGIN
    PERFORM ventros.require_value(event_type, ARRAY['contact.created', 'contact.updated', 'contact.deleted',
        'session.started', 'session.ended', 'session.summarized', 'message.received', 'message.sent', 'message.read',
        'message.failed', 'agent.assigned', 'agent.transferred', 'agent.typing_started', 'custom_field.updated',
        'tag.added', 'tag.removed', 'note.added'], 'activity type');
    PERFORM ventros.require_value(coalesce(source, 'system'), ARRAY['system', 'webhook', 'manual', 'cron', 'workflow'], 'activity source');
    INSERT INTO ventros.event_log (event_type, aggregate_type, aggregate_id, contact_id, session_id, message_id, project_id,
                                   payload, source, occurred_at)
    VALUES (event_type, aggregate_type, aggregate_id, contact_id, session_id, message_id, ventros.default_project(),
            coalesce(ventros.require_json(payload, 'object', 'activity payload'), '{}'), coalesce(source, 'system'),
            coalesce(occurred_at, now()))
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.append_event_log(text, jsonb, text, uuid, uuid, uuid, text, uuid, timestamptz) IS
    'Appends an activity (one of the 17 types, 22023 otherwise); emits event_log.created';

CREATE FUNCTION ventros.attach_event_log(event_log_id uuid, contact_id uuid DEFAULT NULL, session_id uuid DEFAULT NULL,
                                         message_id uuid DEFAULT NULL)
RETURNS ventros.event_log
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.event_log;
BEGIN
    UPDATE ventros.event_log l
    SET contact_id = coalesce(attach_event_log.contact_id, l.contact_id),
        session_id = coalesce(attach_event_log.session_id, l.session_id),
        message_id = coalesce(attach_event_log.message_id, l.message_id),
        version = l.version
    WHERE l.tenant_id = ventros.require_tenant() AND l.id = event_log_id
    RETURNING * INTO result;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('event log entry', event_log_id);
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.attach_event_log(uuid, uuid, uuid, uuid) IS
    'Attaches an entry to a contact, session or message it lacked (55000 when it would change one); emits event_log.updated';

CREATE FUNCTION ventros.list_event_log(contact_id uuid DEFAULT NULL, session_id uuid DEFAULT NULL,
                                       event_type text DEFAULT NULL, since timestamptz DEFAULT NULL,
                                       until timestamptz DEFAULT NULL, after_occurred_at timestamptz DEFAULT NULL,
                                       after_id uuid DEFAULT NULL, page_size integer DEFAULT 50)
RETURNS SETOF ventros.event_log
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT l.* FROM ventros.event_log l
    WHERE l.tenant_id = ventros.require_tenant()
      AND (list_event_log.contact_id IS NULL OR l.contact_id = list_event_log.contact_id)
      AND (list_event_log.session_id IS NULL OR l.session_id = list_event_log.session_id)
      AND (list_event_log.event_type IS NULL OR l.event_type = list_event_log.event_type)
      AND (since IS NULL OR l.occurred_at >= since)
      AND (until IS NULL OR l.occurred_at < until)
      AND (after_id IS NULL OR (l.occurred_at, l.id) > (after_occurred_at, after_id))
    ORDER BY l.occurred_at, l.id
    LIMIT ventros.check_page_size(page_size)
$$;
COMMENT ON FUNCTION ventros.list_event_log(uuid, uuid, text, timestamptz, timestamptz, timestamptz, uuid, integer) IS
    'Activity entries by contact, session, type and time range, oldest first, keyset paging on (occurred_at, id)';

CREATE FUNCTION ventros.count_event_log(event_type text DEFAULT NULL, since timestamptz DEFAULT NULL)
RETURNS TABLE (event_type text, entries bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT l.event_type, count(*) FROM ventros.event_log l
    WHERE l.tenant_id = ventros.require_tenant()
      AND (count_event_log.event_type IS NULL OR l.event_type = count_event_log.event_type)
      AND (since IS NULL OR l.occurred_at >= since)
    GROUP BY l.event_type ORDER BY l.event_type
$$;
COMMENT ON FUNCTION ventros.count_event_log(text, timestamptz) IS 'Activity counts per type';

GRANT EXECUTE ON FUNCTION ventros.list_event_log(uuid, uuid, text, timestamptz, timestamptz, timestamptz, uuid, integer),
    ventros.count_event_log(text, timestamptz) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.event_log_sequence(text, uuid),
    ventros.append_event_log(text, jsonb, text, uuid, uuid, uuid, text, uuid, timestamptz),
    ventros.attach_event_log(uuid, uuid, uuid, uuid)
    TO ventros_agent;

-- ---- sql/74_automations.sql
-- Aggregate 8, Automation (CRM): a rule that runs its actions when its
-- trigger fires and its conditions hold, or on a schedule.  enabled is the
-- state column (automation.enabled / automation.disabled).  Runs are
-- recorded by ventros.record_automation_run, which emits
-- automation.triggered, automation.executed or automation.failed (the
-- executor belongs to the automation issue).  Custom trigger codes live in
-- automation_triggers (a child aggregate), unique per tenant.

-- The built-in catalogue (discovery).
CREATE FUNCTION ventros.automation_catalogue() RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT '{
        "types": ["pipeline_based", "follow_up", "reengagement", "onboarding", "event", "scheduled", "scheduled_report",
                  "time_notification", "webhook", "custom"],
        "triggers": {"session": ["session.ended", "session.timeout", "session.resolved", "session.escalated", "no_response.timeout"],
                     "message": ["message.received"],
                     "pipeline": ["status.changed", "stage.completed"],
                     "temporal": ["after.delay", "scheduled"],
                     "transaction": ["purchase.completed", "payment.received", "refund.issued", "cart.abandoned", "order.shipped"],
                     "behavior": ["page.visited", "form.submitted", "file.downloaded"]},
        "actions": ["send_message", "send_template", "change_pipeline_status", "assign_agent", "assign_to_queue", "create_task",
                    "add_tag", "remove_tag", "update_custom_field", "create_note", "create_agent_report", "send_webhook",
                    "trigger_workflow", "notify_agent", "notify_coordinator", "send_email"],
        "condition_operators": ["eq", "ne", "gt", "lt", "gte", "lte", "contains", "not_contains", "starts_with", "ends_with",
                                "in", "not_in", "is_null", "is_not_null"],
        "logic_operators": ["AND", "OR"],
        "schedule_types": ["once", "daily", "weekly", "monthly", "cron"]
    }'::jsonb
$$;
COMMENT ON FUNCTION ventros.automation_catalogue() IS
    'Discovery: automation types, built-in triggers by category, actions, condition and logic operators, schedule types';

-- Shapes of conditions, actions and schedule (used by CHECKs).
CREATE FUNCTION ventros.automation_rules_valid(conditions jsonb, actions jsonb, schedule jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT pg_catalog.jsonb_typeof(conditions) = 'array' AND pg_catalog.jsonb_typeof(actions) = 'array'
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.jsonb_array_elements(conditions) c
                       WHERE pg_catalog.jsonb_typeof(c) <> 'object' OR NOT c ? 'field'
                          OR NOT coalesce((c->'operator') <@ (ventros.automation_catalogue()->'condition_operators'), false)
                          OR (c ? 'logic' AND NOT (c->'logic') <@ (ventros.automation_catalogue()->'logic_operators')))
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.jsonb_array_elements(actions) a
                       WHERE pg_catalog.jsonb_typeof(a) <> 'object'
                          OR NOT coalesce((a->'type') <@ (ventros.automation_catalogue()->'actions'), false)
                          OR (a ? 'params' AND pg_catalog.jsonb_typeof(a->'params') <> 'object')
                          OR (a ? 'delay_minutes' AND NOT (pg_catalog.jsonb_typeof(a->'delay_minutes') = 'number'
                                                           AND (a->>'delay_minutes')::numeric >= 0)))
       AND (schedule IS NULL OR (pg_catalog.jsonb_typeof(schedule) = 'object'
                                 AND coalesce((schedule->'type') <@ (ventros.automation_catalogue()->'schedule_types'), false)))
$$;
COMMENT ON FUNCTION ventros.automation_rules_valid(jsonb, jsonb, jsonb) IS
    'True when conditions, actions and schedule have the documented shapes (field/operator/value, type/params/delay_minutes, type)';

CREATE TABLE ventros.automations (
    id              uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id       text        NOT NULL,
    version         integer     NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    project_id      uuid        NOT NULL,
    automation_type text        NOT NULL DEFAULT 'pipeline_based',
    pipeline_id     uuid,
    name            text        NOT NULL,
    description     text,
    trigger         text        NOT NULL,
    conditions      jsonb       NOT NULL DEFAULT '[]',
    actions         jsonb       NOT NULL DEFAULT '[]',
    priority        integer     NOT NULL DEFAULT 0,
    enabled         boolean     NOT NULL DEFAULT true,
    schedule        jsonb,
    last_executed   timestamptz,
    next_execution  timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id),
    FOREIGN KEY (tenant_id, pipeline_id) REFERENCES ventros.pipelines (tenant_id, id) ON DELETE SET NULL (pipeline_id),
    CONSTRAINT automations_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT automations_type_known CHECK (automation_type IN ('pipeline_based', 'follow_up', 'reengagement', 'onboarding',
        'event', 'scheduled', 'scheduled_report', 'time_notification', 'webhook', 'custom')),
    CONSTRAINT automations_pipeline_bound CHECK (automation_type <> 'pipeline_based' OR pipeline_id IS NOT NULL OR deleted_at IS NOT NULL),
    CONSTRAINT automations_trigger_format CHECK (trigger ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$' AND length(trigger) <= 100),
    CONSTRAINT automations_priority CHECK (priority >= 0),
    CONSTRAINT automations_rules_valid CHECK (ventros.automation_rules_valid(conditions, actions, schedule))
);
CREATE INDEX automations_by_trigger ON ventros.automations (tenant_id, trigger, priority DESC) WHERE enabled AND deleted_at IS NULL;
COMMENT ON TABLE ventros.automations IS 'Automation: a trigger, conditions and actions';

CREATE TABLE ventros.automation_triggers (
    id          uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id   text        NOT NULL,
    version     integer     NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    code        text        NOT NULL,
    name        text        NOT NULL,
    category    text        NOT NULL DEFAULT 'custom',
    parameters  jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT automation_triggers_code_format CHECK (code ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$' AND length(code) <= 100),
    CONSTRAINT automation_triggers_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT automation_triggers_category_known CHECK (category IN ('session', 'message', 'pipeline', 'temporal', 'transaction',
                                                                      'behavior', 'custom', 'webhook')),
    CONSTRAINT automation_triggers_parameters_object CHECK (jsonb_typeof(parameters) = 'object')
);
CREATE UNIQUE INDEX automation_triggers_unique_code ON ventros.automation_triggers (tenant_id, code) WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.automation_triggers IS 'A custom trigger code of a tenant';

SELECT ventros.register_aggregate('automation', 'ventros.automations', 'crm',
    state_column => 'enabled',
    transitions => '[
        {"from": null, "to": "true"},
        {"from": null, "to": "false"},
        {"from": "false", "to": "true", "event": "automation.enabled", "description": "An automation was enabled."},
        {"from": "true", "to": "false", "event": "automation.disabled", "description": "An automation was disabled."}
    ]',
    description => 'A trigger, conditions and actions');
SELECT ventros.declare_quiet_columns('automation', '{last_executed,next_execution}');
SELECT ventros.register_aggregate('automation_trigger', 'ventros.automation_triggers', 'crm',
    description => 'A custom automation trigger code');
SELECT ventros.register_event_type('automation.triggered', 'The trigger of an automation fired and its conditions held.');
SELECT ventros.register_event_type('automation.executed', 'An automation ran its actions.');
SELECT ventros.register_event_type('automation.failed', 'An automation failed to run its actions.');

-- Known triggers: the built-in ones and the tenant's custom codes.
CREATE FUNCTION ventros.is_known_trigger(trigger text) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM jsonb_each(ventros.automation_catalogue()->'triggers') c, jsonb_array_elements_text(c.value) t
                   WHERE t = trigger)
        OR EXISTS (SELECT 1 FROM ventros.automation_triggers x WHERE x.tenant_id = ventros.require_tenant() AND x.code = trigger)
$$;
COMMENT ON FUNCTION ventros.is_known_trigger(text) IS 'Whether a trigger is built in or a custom code of the acting tenant';

CREATE FUNCTION ventros.create_automation(name text, trigger text, actions jsonb, conditions jsonb DEFAULT '[]',
                                          automation_type text DEFAULT 'pipeline_based', pipeline_id uuid DEFAULT NULL,
                                          priority integer DEFAULT 0, schedule jsonb DEFAULT NULL,
                                          description text DEFAULT NULL, project_id uuid DEFAULT NULL)
RETURNS ventros.automations
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.automations;
BEGIN
    IF name IS NULL OR trigger IS NULL THEN
        RAISE EXCEPTION 'automation % must not be null', CASE WHEN name IS NULL THEN 'name' ELSE 'trigger' END USING ERRCODE = '23502';
    END IF;
    PERFORM ventros.require_value(coalesce(automation_type, 'pipeline_based'), ARRAY(
        SELECT jsonb_array_elements_text(ventros.automation_catalogue()->'types')), 'automation type');
    IF NOT ventros.is_known_trigger(trigger) THEN
        RAISE EXCEPTION 'unknown automation trigger "%"', left(trigger, 100) USING ERRCODE = '22023',
            HINT = 'Use a built-in trigger or register a custom one with ventros.register_automation_trigger().';
    END IF;
    IF coalesce(automation_type, 'pipeline_based') = 'pipeline_based' AND pipeline_id IS NULL THEN
        RAISE EXCEPTION 'a pipeline_based automation needs a pipeline' USING ERRCODE = '23502';
    END IF;
    IF NOT ventros.automation_rules_valid(coalesce(conditions, '[]'), coalesce(actions, '[]'), schedule) THEN
        RAISE EXCEPTION 'malformed automation conditions, actions or schedule' USING ERRCODE = '22023',
            HINT = 'Conditions are {field, operator, value, logic}; actions {type, params, delay_minutes}; see ventros.automation_catalogue().';
    END IF;
    INSERT INTO ventros.automations (project_id, automation_type, pipeline_id, name, description, trigger, conditions, actions,
                                     priority, schedule)
    VALUES (coalesce(project_id, ventros.default_project()), coalesce(automation_type, 'pipeline_based'), pipeline_id,
            ventros.check_length(btrim(name), 200, 'automation name'), description, trigger, coalesce(conditions, '[]'),
            coalesce(actions, '[]'), coalesce(priority, 0), schedule)
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.create_automation(text, text, jsonb, jsonb, text, uuid, integer, jsonb, text, uuid) IS
    'Creates an enabled automation (known trigger, shaped rules: 22023; pipeline_based needs a pipeline: 23502); emits automation.created';

CREATE FUNCTION ventros.update_automation(automation_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.automations
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF jsonb_typeof(changes->'trigger') = 'string' AND NOT ventros.is_known_trigger(changes->>'trigger') THEN
        RAISE EXCEPTION 'unknown automation trigger "%"', left(changes->>'trigger', 100) USING ERRCODE = '22023';
    END IF;
    RETURN ventros.apply_changes(NULL::ventros.automations, 'automation', automation_id, expected_version, changes,
        ARRAY['name', 'description', 'trigger', 'conditions', 'actions', 'priority', 'enabled', 'schedule', 'pipeline_id',
              'automation_type', 'next_execution']);
EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION 'invalid automation: %', SQLERRM USING ERRCODE = '23514';
END
$$;
COMMENT ON FUNCTION ventros.update_automation(uuid, integer, jsonb) IS
    'Changes an automation (rules shaped, 23514); emits automation.updated, or .enabled / .disabled';

CREATE FUNCTION ventros.set_automation_enabled(automation_id uuid, expected_version integer, enabled boolean)
RETURNS ventros.automations
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.change_row(NULL::ventros.automations, 'automation', automation_id, expected_version, jsonb_build_object('enabled', enabled)) $$;
COMMENT ON FUNCTION ventros.set_automation_enabled(uuid, integer, boolean) IS 'Enables or disables an automation; emits automation.enabled or automation.disabled';

CREATE FUNCTION ventros.add_automation_rule(automation_id uuid, expected_version integer, kind text, rule jsonb)
RETURNS ventros.automations
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a ventros.automations;
BEGIN
    PERFORM ventros.require_value(kind, ARRAY['condition', 'action'], 'rule kind');
    SELECT * INTO a FROM ventros.automations x WHERE x.tenant_id = ventros.require_tenant() AND x.id = automation_id;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('automation', automation_id);
    END IF;
    RETURN ventros.update_automation(automation_id, expected_version,
        CASE kind WHEN 'condition' THEN jsonb_build_object('conditions', a.conditions || jsonb_build_array(rule))
                  ELSE jsonb_build_object('actions', a.actions || jsonb_build_array(rule)) END);
END
$$;
COMMENT ON FUNCTION ventros.add_automation_rule(uuid, integer, text, jsonb) IS
    'Appends a condition or an action (shaped, 23514); emits automation.updated';

CREATE FUNCTION ventros.delete_automation(automation_id uuid, expected_version integer DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.delete_row('ventros.automations', 'automation', automation_id, expected_version) $$;
COMMENT ON FUNCTION ventros.delete_automation(uuid, integer) IS 'Soft-deletes an automation; emits automation.deleted';

-- record_automation_run: what the executor reports.
CREATE FUNCTION ventros.record_automation_run(automation_id uuid, outcome text, details jsonb DEFAULT '{}')
RETURNS ventros.automations
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.automations;
BEGIN
    PERFORM ventros.require_value(outcome, ARRAY['triggered', 'executed', 'failed'], 'automation outcome');
    UPDATE ventros.automations a
    SET last_executed = CASE WHEN outcome = 'executed' THEN now() ELSE a.last_executed END, version = a.version
    WHERE a.tenant_id = ventros.require_tenant() AND a.id = automation_id
    RETURNING * INTO result;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('automation', automation_id);
    END IF;
    IF NOT result.enabled THEN
        RAISE EXCEPTION 'automation % is disabled', automation_id USING ERRCODE = 'VN002';
    END IF;
    PERFORM ventros.emit('automation.' || outcome, 'automation', result.id,
        jsonb_build_object('trigger', result.trigger, 'details', coalesce(ventros.require_json(details, 'object', 'run details'), '{}')),
        result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.record_automation_run(uuid, text, jsonb) IS
    'Records that an enabled automation triggered, executed or failed (VN002 when disabled); emits automation.triggered, .executed or .failed';

CREATE FUNCTION ventros.list_automations(trigger text DEFAULT NULL, pipeline_id uuid DEFAULT NULL, only_enabled boolean DEFAULT false)
RETURNS SETOF ventros.automations
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT a.* FROM ventros.automations a
    WHERE a.tenant_id = ventros.require_tenant()
      AND (list_automations.trigger IS NULL OR a.trigger = list_automations.trigger)
      AND (list_automations.pipeline_id IS NULL OR a.pipeline_id = list_automations.pipeline_id)
      AND (NOT only_enabled OR a.enabled)
    ORDER BY a.priority DESC, a.created_at, a.id
    LIMIT current_setting('ventros.max_page_size')::integer
$$;
COMMENT ON FUNCTION ventros.list_automations(text, uuid, boolean) IS
    'Automations by trigger and pipeline, highest priority first (what an event should run)';

CREATE FUNCTION ventros.register_automation_trigger(code text, name text, category text DEFAULT 'custom',
                                                    parameters jsonb DEFAULT '{}')
RETURNS ventros.automation_triggers
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.automation_triggers;
BEGIN
    IF EXISTS (SELECT 1 FROM jsonb_each(ventros.automation_catalogue()->'triggers') c, jsonb_array_elements_text(c.value) t
               WHERE t = code) THEN
        RAISE EXCEPTION 'trigger "%" is built in', code USING ERRCODE = '23505';
    END IF;
    INSERT INTO ventros.automation_triggers (code, name, category, parameters)
    VALUES (code, ventros.check_length(btrim(name), 200, 'trigger name'), coalesce(category, 'custom'),
            coalesce(ventros.require_json(parameters, 'object', 'trigger parameters'), '{}'))
    RETURNING * INTO result;
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'trigger "%" exists already', code USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.register_automation_trigger(text, text, text, jsonb) IS
    'Registers a custom trigger code (unique per tenant, not a built-in one: 23505); emits automation_trigger.created';

CREATE FUNCTION ventros.unregister_automation_trigger(code text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    trigger_id uuid;
BEGIN
    SELECT t.id INTO trigger_id FROM ventros.automation_triggers t WHERE t.tenant_id = ventros.require_tenant() AND t.code = unregister_automation_trigger.code;
    IF trigger_id IS NULL THEN
        RAISE EXCEPTION 'trigger "%" not found', code USING ERRCODE = 'P0002';
    END IF;
    IF EXISTS (SELECT 1 FROM ventros.automations a WHERE a.tenant_id = ventros.require_tenant() AND a.trigger = unregister_automation_trigger.code) THEN
        RAISE EXCEPTION 'trigger "%" is used by automations', code USING ERRCODE = '23503';
    END IF;
    PERFORM ventros.delete_row('ventros.automation_triggers', 'automation trigger', trigger_id, NULL);
END
$$;
COMMENT ON FUNCTION ventros.unregister_automation_trigger(text) IS
    'Removes a custom trigger no automation uses (23503 otherwise); emits automation_trigger.deleted';

GRANT EXECUTE ON FUNCTION ventros.automation_catalogue(), ventros.automation_rules_valid(jsonb, jsonb, jsonb),
    ventros.is_known_trigger(text), ventros.list_automations(text, uuid, boolean) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.create_automation(text, text, jsonb, jsonb, text, uuid, integer, jsonb, text, uuid),
    ventros.update_automation(uuid, integer, jsonb), ventros.set_automation_enabled(uuid, integer, boolean),
    ventros.add_automation_rule(uuid, integer, text, jsonb), ventros.record_automation_run(uuid, text, jsonb),
    ventros.register_automation_trigger(text, text, text, jsonb), ventros.unregister_automation_trigger(text)
    TO ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.delete_automation(uuid, integer) TO ventros_admin;

-- ---- sql/74_enrollments.sql
-- Enrollments: a contact's way through a campaign or a sequence.
--
-- Campaigns and sequences enroll contacts the same way: an enrollment row
-- (<parent>_enrollments, with <parent>_id, contact_id, status, exited_at,
-- exit_reason, next_scheduled_at) whose status follows one machine —
-- active <-> paused, then completed or exited — and whose changes are told
-- as business events on the parent (<parent>.contact_enrolled,
-- <parent>.enrollment_advanced / _paused / _resumed / _completed / _exited),
-- so a consumer of campaign.* or sequence.* sees its whole story in order.
-- This file is that one mechanism; a parent declares itself with
-- ventros.register_enrollment and its commands call the functions below.

-- register_enrollment: the enrollment aggregate of a parent and its events.
CREATE FUNCTION ventros.register_enrollment(parent text, enrollment_table regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.register_aggregate(parent || '_enrollment', enrollment_table, 'automation',
        state_column => 'status',
        transitions => '[
            {"from": null, "to": "active"},
            {"from": "active", "to": "paused"},
            {"from": "paused", "to": "active"},
            {"from": "active", "to": "completed"},
            {"from": "active", "to": "exited"},
            {"from": "paused", "to": "exited"}
        ]',
        description => format('A contact''s enrollment in a %s (child of %s; events on the %s)', parent, parent, parent));
    PERFORM ventros.register_event_type(parent || '.contact_enrolled', format('A contact was enrolled in a %s.', parent));
    PERFORM ventros.register_event_type(parent || '.enrollment_advanced',
                                        format('An enrollment moved to the next step of a %s.', parent));
    PERFORM ventros.register_event_type(parent || '.enrollment_paused', format('A %s enrollment was paused.', parent));
    PERFORM ventros.register_event_type(parent || '.enrollment_resumed', format('A %s enrollment was resumed.', parent));
    PERFORM ventros.register_event_type(parent || '.enrollment_completed', format('A contact completed a %s.', parent));
    PERFORM ventros.register_event_type(parent || '.enrollment_exited',
                                        format('A contact left a %s before its end.', parent));
END
$$;
COMMENT ON FUNCTION ventros.register_enrollment(text, regclass) IS
    'Declares <parent>_enrollment (the enrollment state machine) and the parent''s six enrollment events';

-- emit_enrollment_event: tells a status change of an enrollment on its parent.
CREATE FUNCTION ventros.emit_enrollment_event(parent text, enrollment anyelement)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e jsonb := to_jsonb(enrollment);
BEGIN
    PERFORM ventros.emit(parent || '.enrollment_' || CASE e->>'status' WHEN 'paused' THEN 'paused'
                                                                       WHEN 'active' THEN 'resumed'
                                                                       WHEN 'completed' THEN 'completed'
                                                                       ELSE 'exited' END,
        parent, (e->>(parent || '_id'))::uuid,
        jsonb_build_object('enrollment_id', e->'id', 'contact_id', e->'contact_id', 'exit_reason', e->'exit_reason'), NULL);
END
$$;
COMMENT ON FUNCTION ventros.emit_enrollment_event(text, anyelement) IS
    'Emits <parent>.enrollment_paused, _resumed, _completed or _exited for an enrollment row, on its parent';

-- set_enrollment_status: pause, resume or exit one enrollment (the machine
-- refuses the rest with VN002).  Returns the enrollment as it was before and
-- after, so a parent can keep its own counters.
CREATE FUNCTION ventros.set_enrollment_status(row_type anyelement, parent text, enrollment_id uuid,
                                              expected_version integer, status text, exit_reason text,
                                              OUT before anyelement, OUT after anyelement)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    what text := parent || ' enrollment';
BEGIN
    PERFORM ventros.require_value(status, ARRAY['active', 'paused', 'exited'], 'enrollment status');
    before := ventros.get_row(row_type, what, enrollment_id);
    after := ventros.change_row(row_type, what, enrollment_id, expected_version,
        jsonb_build_object('status', status)
        || CASE WHEN status = 'exited' THEN jsonb_build_object('exited_at', now(), 'exit_reason',
                                                               ventros.check_length(coalesce(exit_reason, 'manual'), 500, 'exit reason'))
                WHEN status = 'active' THEN jsonb_build_object('next_scheduled_at', now()) ELSE '{}' END);
    PERFORM ventros.emit_enrollment_event(parent, after);
END
$$;
COMMENT ON FUNCTION ventros.set_enrollment_status(anyelement, text, uuid, integer, text, text) IS
    'Pauses, resumes (due now) or exits (with a reason, default manual) an enrollment; emits <enrollment>.updated and the parent''s enrollment event';

GRANT EXECUTE ON FUNCTION ventros.emit_enrollment_event(text, anyelement),
    ventros.set_enrollment_status(anyelement, text, uuid, integer, text, text) TO ventros_agent;

-- ---- sql/75_campaigns.sql
-- Aggregate 21, Campaign (automation): a multi-step marketing journey.
-- Contacts are enrolled and advance through steps (broadcast, sequence,
-- delay, condition, wait).  Steps and enrollments are child aggregates
-- (campaign_step, campaign_enrollment) with their own versions; the domain's
-- events (campaign.step_added, campaign.enrollment_paused, ...) are emitted
-- on the campaign by the commands.  Steps change only while the campaign is
-- a draft, checked under a lock of the campaign row.  The enrollment machine:
-- active <-> paused, active -> completed, active | paused -> exited; at most
-- one active or paused enrollment per (campaign, contact).  Executing steps
-- belongs to the automation issue; ventros.tick_campaigns advances due
-- enrollments through the step list.

CREATE TABLE ventros.campaigns (
    id                uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id         text        NOT NULL,
    version           integer     NOT NULL DEFAULT 1,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz,
    project_id        uuid        NOT NULL,
    name              text        NOT NULL,
    description       text,
    status            text        NOT NULL DEFAULT 'draft',
    goal_type         text        NOT NULL DEFAULT 'reach_contacts',
    goal_value        integer     NOT NULL DEFAULT 0,
    contacts_reached  integer     NOT NULL DEFAULT 0,
    conversions_count integer     NOT NULL DEFAULT 0,
    start_date        timestamptz,
    end_date          timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id),
    CONSTRAINT campaigns_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT campaigns_status_known CHECK (status IN ('draft', 'scheduled', 'active', 'paused', 'completed', 'archived')),
    CONSTRAINT campaigns_goal_type_known CHECK (goal_type IN ('reach_contacts', 'conversions', 'engagement')),
    CONSTRAINT campaigns_counts_not_negative CHECK (goal_value >= 0 AND contacts_reached >= 0 AND conversions_count >= 0),
    CONSTRAINT campaigns_dates_order CHECK (end_date > start_date),
    CONSTRAINT campaigns_scheduled_start CHECK (status <> 'scheduled' OR start_date IS NOT NULL)
);
CREATE INDEX campaigns_by_status ON ventros.campaigns (tenant_id, status, start_date) WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.campaigns IS 'Campaign: a multi-step marketing journey';

CREATE TABLE ventros.campaign_steps (
    id          uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id   text        NOT NULL,
    version     integer     NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    campaign_id uuid        NOT NULL,
    "order"     integer     NOT NULL,
    name        text        NOT NULL,
    type        text        NOT NULL,
    config      jsonb       NOT NULL DEFAULT '{}',
    conditions  jsonb,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, campaign_id) REFERENCES ventros.campaigns (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT campaign_steps_order_not_negative CHECK ("order" >= 0),
    CONSTRAINT campaign_steps_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT campaign_steps_type_known CHECK (type IN ('broadcast', 'sequence', 'delay', 'condition', 'wait')),
    CONSTRAINT campaign_steps_config_object CHECK (jsonb_typeof(config) = 'object'),
    CONSTRAINT campaign_steps_config_complete CHECK (CASE type
        WHEN 'broadcast' THEN config ? 'broadcast_id'
        WHEN 'sequence' THEN config ? 'sequence_id'
        WHEN 'delay' THEN coalesce(jsonb_typeof(config->'delay_minutes') = 'number' AND (config->>'delay_minutes')::numeric >= 0, false)
        ELSE true END)
);
CREATE UNIQUE INDEX campaign_steps_unique_order ON ventros.campaign_steps (tenant_id, campaign_id, "order") WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.campaign_steps IS 'A step of a campaign';

CREATE TABLE ventros.campaign_enrollments (
    id                 uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id          text        NOT NULL,
    version            integer     NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at         timestamptz,
    campaign_id        uuid        NOT NULL,
    contact_id         uuid        NOT NULL,
    status             text        NOT NULL DEFAULT 'active',
    current_step_order integer     NOT NULL DEFAULT 0,
    next_scheduled_at  timestamptz,
    exited_at          timestamptz,
    exit_reason        text,
    completed_at       timestamptz,
    enrolled_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, campaign_id) REFERENCES ventros.campaigns (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, contact_id) REFERENCES ventros.contacts (tenant_id, id),
    CONSTRAINT campaign_enrollments_status_known CHECK (status IN ('active', 'paused', 'completed', 'exited')),
    CONSTRAINT campaign_enrollments_exit_reason CHECK (length(exit_reason) <= 500)
);
CREATE UNIQUE INDEX campaign_enrollments_one_current ON ventros.campaign_enrollments (tenant_id, campaign_id, contact_id)
    WHERE status IN ('active', 'paused') AND deleted_at IS NULL;
CREATE INDEX campaign_enrollments_due ON ventros.campaign_enrollments (tenant_id, next_scheduled_at)
    WHERE status = 'active' AND deleted_at IS NULL;
COMMENT ON TABLE ventros.campaign_enrollments IS 'A contact''s way through a campaign';

SELECT ventros.register_aggregate('campaign', 'ventros.campaigns', 'automation',
    state_column => 'status',
    transitions => '[
        {"from": null, "to": "draft"},
        {"from": "draft", "to": "scheduled", "event": "campaign.scheduled", "description": "A campaign was scheduled to start."},
        {"from": "draft", "to": "active", "event": "campaign.activated", "description": "A campaign was activated."},
        {"from": "scheduled", "to": "active", "event": "campaign.activated"},
        {"from": "active", "to": "paused", "event": "campaign.paused", "description": "A campaign was paused."},
        {"from": "paused", "to": "active", "event": "campaign.resumed", "description": "A paused campaign was resumed."},
        {"from": "active", "to": "completed", "event": "campaign.completed", "description": "A campaign was completed."},
        {"from": "draft", "to": "archived", "event": "campaign.archived", "description": "A campaign was archived."},
        {"from": "scheduled", "to": "archived", "event": "campaign.archived"},
        {"from": "active", "to": "archived", "event": "campaign.archived"},
        {"from": "paused", "to": "archived", "event": "campaign.archived"},
        {"from": "completed", "to": "archived", "event": "campaign.archived"}
    ]',
    description => 'A multi-step marketing journey');
SELECT ventros.declare_quiet_columns('campaign', '{contacts_reached,conversions_count}');
SELECT ventros.register_aggregate('campaign_step', 'ventros.campaign_steps', 'automation',
    description => 'A step of a campaign (child of campaign)');
SELECT ventros.register_enrollment('campaign', 'ventros.campaign_enrollments');
SELECT ventros.register_event_type('campaign.step_added', 'A step was added to a draft campaign.');
SELECT ventros.register_event_type('campaign.step_removed', 'A step was removed from a draft campaign.');

CREATE FUNCTION ventros.get_campaign(campaign_id uuid, for_update boolean DEFAULT false) RETURNS ventros.campaigns
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN for_update THEN ventros.lock_row(NULL::ventros.campaigns, 'campaign', campaign_id)
                ELSE ventros.get_row(NULL::ventros.campaigns, 'campaign', campaign_id) END
$$;
COMMENT ON FUNCTION ventros.get_campaign(uuid, boolean) IS 'A live campaign (locked when for_update), or P0002';

CREATE FUNCTION ventros.create_campaign(name text, goal_type text DEFAULT 'reach_contacts', goal_value integer DEFAULT 0,
                                        description text DEFAULT NULL, start_date timestamptz DEFAULT NULL,
                                        end_date timestamptz DEFAULT NULL, project_id uuid DEFAULT NULL)
RETURNS ventros.campaigns
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.campaigns;
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'campaign name must not be null' USING ERRCODE = '23502';
    END IF;
    PERFORM ventros.require_value(coalesce(goal_type, 'reach_contacts'), ARRAY['reach_contacts', 'conversions', 'engagement'], 'goal type');
    INSERT INTO ventros.campaigns (project_id, name, description, goal_type, goal_value, start_date, end_date)
    VALUES (coalesce(project_id, ventros.default_project()), ventros.check_length(btrim(name), 200, 'campaign name'),
            description, coalesce(goal_type, 'reach_contacts'), coalesce(goal_value, 0), start_date, end_date)
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.create_campaign(text, text, integer, text, timestamptz, timestamptz, uuid) IS
    'Creates a draft campaign; emits campaign.created';

CREATE FUNCTION ventros.update_campaign(campaign_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.campaigns
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.apply_changes(NULL::ventros.campaigns, 'campaign', campaign_id, expected_version, changes,
                                 ARRAY['name', 'description', 'goal_type', 'goal_value', 'start_date', 'end_date'])
$$;
COMMENT ON FUNCTION ventros.update_campaign(uuid, integer, jsonb) IS 'Changes name, description, goal or dates; emits campaign.updated';

CREATE FUNCTION ventros.delete_campaign(campaign_id uuid, expected_version integer DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.delete_row('ventros.campaigns', 'campaign', campaign_id, expected_version) $$;
COMMENT ON FUNCTION ventros.delete_campaign(uuid, integer) IS 'Soft-deletes a campaign; emits campaign.deleted';

-- set_campaign_status: the one entry for every campaign transition, with the
-- guards the state machine cannot express (steps, start date).
CREATE FUNCTION ventros.set_campaign_status(campaign_id uuid, expected_version integer, status text)
RETURNS ventros.campaigns
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c ventros.campaigns := ventros.get_campaign(campaign_id, true);
BEGIN
    PERFORM ventros.require_value(status, ARRAY['draft', 'scheduled', 'active', 'paused', 'completed', 'archived'], 'campaign status');
    IF status IN ('scheduled', 'active') AND c.status IN ('draft', 'scheduled') AND NOT EXISTS (
        SELECT 1 FROM ventros.campaign_steps s WHERE s.tenant_id = c.tenant_id AND s.campaign_id = c.id) THEN
        RAISE EXCEPTION 'campaign % has no steps', campaign_id USING ERRCODE = '23514',
            HINT = 'Add a step with ventros.add_campaign_step() first.';
    END IF;
    IF status = 'scheduled' AND (c.start_date IS NULL OR c.start_date <= now()) THEN
        RAISE EXCEPTION 'campaign % needs a future start date to be scheduled', campaign_id USING ERRCODE = '23514';
    END IF;
    RETURN ventros.change_row(NULL::ventros.campaigns, 'campaign', campaign_id, expected_version, jsonb_build_object('status', status));
END
$$;
COMMENT ON FUNCTION ventros.set_campaign_status(uuid, integer, text) IS
    'Moves a campaign along its machine (VN002); scheduling and activation need a step (23514), scheduling a future start date; emits campaign.scheduled, .activated, .paused, .resumed, .completed or .archived';

CREATE FUNCTION ventros.add_campaign_step(campaign_id uuid, "order" integer, name text, type text, config jsonb DEFAULT '{}',
                                          conditions jsonb DEFAULT NULL)
RETURNS ventros.campaign_steps
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c ventros.campaigns := ventros.get_campaign(campaign_id, true);
    result ventros.campaign_steps;
BEGIN
    IF c.status <> 'draft' THEN
        RAISE EXCEPTION 'campaign % is %; steps change only in draft', campaign_id, c.status USING ERRCODE = 'VN002';
    END IF;
    PERFORM ventros.require_value(type, ARRAY['broadcast', 'sequence', 'delay', 'condition', 'wait'], 'campaign step type');
    INSERT INTO ventros.campaign_steps (campaign_id, "order", name, type, config, conditions)
    VALUES (campaign_id, "order", ventros.check_length(btrim(name), 200, 'step name'), type,
            coalesce(ventros.require_json(config, 'object', 'step config'), '{}'), conditions)
    RETURNING * INTO result;
    PERFORM ventros.emit('campaign.step_added', 'campaign', c.id,
        jsonb_build_object('step_id', result.id, 'order', result."order", 'type', result.type), c.version);
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'campaign % has a step % already', campaign_id, "order" USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.add_campaign_step(uuid, integer, text, text, jsonb, jsonb) IS
    'Adds a step to a draft campaign (VN002 otherwise; order unique, 23505; config per type, 23514); emits campaign_step.created and campaign.step_added';

CREATE FUNCTION ventros.update_campaign_step(campaign_step_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.campaign_steps
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.campaign_steps;
    c ventros.campaigns;
BEGIN
    SELECT * INTO s FROM ventros.campaign_steps x WHERE x.tenant_id = ventros.require_tenant() AND x.id = campaign_step_id;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('campaign step', campaign_step_id);
    END IF;
    c := ventros.get_campaign(s.campaign_id, true);
    IF c.status <> 'draft' THEN
        RAISE EXCEPTION 'campaign % is %; steps change only in draft', c.id, c.status USING ERRCODE = 'VN002';
    END IF;
    RETURN ventros.apply_changes(NULL::ventros.campaign_steps, 'campaign step', campaign_step_id, expected_version, changes,
                                 ARRAY['order', 'name', 'type', 'config', 'conditions']);
END
$$;
COMMENT ON FUNCTION ventros.update_campaign_step(uuid, integer, jsonb) IS
    'Changes a step of a draft campaign (VN002 otherwise); emits campaign_step.updated';

CREATE FUNCTION ventros.remove_campaign_step(campaign_step_id uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.campaign_steps;
    c ventros.campaigns;
BEGIN
    SELECT * INTO s FROM ventros.campaign_steps x WHERE x.tenant_id = ventros.require_tenant() AND x.id = campaign_step_id;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('campaign step', campaign_step_id);
    END IF;
    c := ventros.get_campaign(s.campaign_id, true);
    IF c.status <> 'draft' THEN
        RAISE EXCEPTION 'campaign % is %; steps change only in draft', c.id, c.status USING ERRCODE = 'VN002';
    END IF;
    PERFORM ventros.delete_row('ventros.campaign_steps', 'campaign step', campaign_step_id, NULL);
    PERFORM ventros.emit('campaign.step_removed', 'campaign', c.id,
                         jsonb_build_object('step_id', s.id, 'order', s."order"), c.version);
END
$$;
COMMENT ON FUNCTION ventros.remove_campaign_step(uuid) IS
    'Removes a step of a draft campaign (VN002 otherwise); emits campaign_step.deleted and campaign.step_removed';

CREATE FUNCTION ventros.enroll_in_campaign(campaign_id uuid, contact_id uuid)
RETURNS ventros.campaign_enrollments
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c ventros.campaigns := ventros.get_campaign(campaign_id);
    result ventros.campaign_enrollments;
BEGIN
    IF c.status NOT IN ('scheduled', 'active') THEN
        RAISE EXCEPTION 'campaign % is %; contacts enroll in scheduled or active campaigns', campaign_id, c.status
            USING ERRCODE = 'VN002';
    END IF;
    PERFORM ventros.get_contact(contact_id);
    INSERT INTO ventros.campaign_enrollments (campaign_id, contact_id, next_scheduled_at)
    VALUES (campaign_id, contact_id, greatest(now(), coalesce(c.start_date, now())))
    RETURNING * INTO result;
    UPDATE ventros.campaigns x SET contacts_reached = x.contacts_reached + 1, version = x.version
    WHERE x.tenant_id = c.tenant_id AND x.id = c.id;
    PERFORM ventros.emit('campaign.contact_enrolled', 'campaign', c.id,
        jsonb_build_object('enrollment_id', result.id, 'contact_id', contact_id), c.version);
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'contact % is enrolled in campaign % already', contact_id, campaign_id USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.enroll_in_campaign(uuid, uuid) IS
    'Enrolls a contact in a scheduled or active campaign (VN002 otherwise; once at a time, 23505); emits campaign_enrollment.created and campaign.contact_enrolled';

-- set_campaign_enrollment_status: pause, resume or exit one enrollment.
CREATE FUNCTION ventros.set_campaign_enrollment_status(campaign_enrollment_id uuid, expected_version integer, status text,
                                                       exit_reason text DEFAULT NULL)
RETURNS ventros.campaign_enrollments
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (ventros.set_enrollment_status(NULL::ventros.campaign_enrollments, 'campaign', campaign_enrollment_id,
                                          expected_version, status, exit_reason)).after
$$;
COMMENT ON FUNCTION ventros.set_campaign_enrollment_status(uuid, integer, text, text) IS
    'Pauses, resumes or exits an enrollment (VN002 when the machine refuses); emits campaign_enrollment.updated and campaign.enrollment_paused, _resumed or _exited';

-- advance_campaign_enrollment: the next step, or completion after the last.
CREATE FUNCTION ventros.advance_campaign_enrollment(campaign_enrollment_id uuid, now timestamptz DEFAULT now())
RETURNS ventros.campaign_enrollments
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e ventros.campaign_enrollments;
    next_step ventros.campaign_steps;
    result ventros.campaign_enrollments;
BEGIN
    SELECT * INTO e FROM ventros.campaign_enrollments x
    WHERE x.tenant_id = ventros.require_tenant() AND x.id = campaign_enrollment_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('campaign enrollment', campaign_enrollment_id);
    END IF;
    IF e.status <> 'active' THEN
        RAISE EXCEPTION 'campaign enrollment % is %; only active enrollments advance', e.id, e.status USING ERRCODE = 'VN002';
    END IF;
    SELECT * INTO next_step FROM ventros.campaign_steps s
    WHERE s.tenant_id = e.tenant_id AND s.campaign_id = e.campaign_id AND s."order" > e.current_step_order
    ORDER BY s."order" LIMIT 1;
    IF NOT FOUND THEN
        UPDATE ventros.campaign_enrollments x SET status = 'completed', completed_at = now, next_scheduled_at = NULL, version = x.version
        WHERE x.tenant_id = e.tenant_id AND x.id = e.id RETURNING * INTO result;
        PERFORM ventros.emit_enrollment_event('campaign', result);
    ELSE
        UPDATE ventros.campaign_enrollments x
        SET current_step_order = next_step."order",
            next_scheduled_at = now + make_interval(mins => coalesce((next_step.config->>'delay_minutes')::integer, 0)),
            version = x.version
        WHERE x.tenant_id = e.tenant_id AND x.id = e.id RETURNING * INTO result;
        PERFORM ventros.emit('campaign.enrollment_advanced', 'campaign', e.campaign_id,
            jsonb_build_object('enrollment_id', e.id, 'contact_id', e.contact_id, 'step_order', next_step."order",
                               'step_type', next_step.type), NULL);
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.advance_campaign_enrollment(uuid, timestamptz) IS
    'Moves an active enrollment to the next step (scheduled after a delay step''s minutes) or completes it; emits campaign.enrollment_advanced or campaign.enrollment_completed';

CREATE FUNCTION ventros.tick_campaigns(now timestamptz DEFAULT now(), batch_size integer DEFAULT 1000)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e record;
    n integer := 0;
BEGIN
    -- scheduled campaigns whose start has come
    UPDATE ventros.campaigns c SET status = 'active', version = c.version
    WHERE c.tenant_id = ventros.require_tenant() AND c.status = 'scheduled' AND c.start_date <= tick_campaigns.now;
    FOR e IN SELECT x.id FROM ventros.campaign_enrollments x
             JOIN ventros.campaigns c ON c.tenant_id = x.tenant_id AND c.id = x.campaign_id AND c.status = 'active'
             WHERE x.tenant_id = ventros.require_tenant() AND x.status = 'active' AND x.next_scheduled_at <= tick_campaigns.now
             ORDER BY x.next_scheduled_at LIMIT batch_size
             FOR UPDATE OF x SKIP LOCKED
    LOOP
        PERFORM ventros.advance_campaign_enrollment(e.id, now);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.tick_campaigns(timestamptz, integer) IS
    'Starts due scheduled campaigns and advances due enrollments of active campaigns (SKIP LOCKED); returns how many advanced';

CREATE FUNCTION ventros.record_campaign_conversion(campaign_id uuid) RETURNS ventros.campaigns
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.campaigns;
BEGIN
    UPDATE ventros.campaigns c SET conversions_count = c.conversions_count + 1, version = c.version
    WHERE c.tenant_id = ventros.require_tenant() AND c.id = campaign_id RETURNING * INTO result;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('campaign', campaign_id);
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.record_campaign_conversion(uuid) IS 'Counts a conversion (quiet: no version change, no event)';

CREATE FUNCTION ventros.campaign_stats(campaign_id uuid) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object('campaign_id', c.id, 'status', c.status, 'goal_type', c.goal_type, 'goal_value', c.goal_value,
        'contacts_reached', c.contacts_reached, 'conversions', c.conversions_count,
        'progress', CASE WHEN c.goal_value > 0 THEN round(100.0 * CASE c.goal_type WHEN 'conversions' THEN c.conversions_count
                                                                     ELSE c.contacts_reached END / c.goal_value, 1) END,
        'enrollments', (SELECT coalesce(jsonb_object_agg(s.status, s.n), '{}')
                        FROM (SELECT e.status, count(*) AS n FROM ventros.campaign_enrollments e
                              WHERE e.tenant_id = c.tenant_id AND e.campaign_id = c.id GROUP BY e.status) s))
    FROM ventros.get_campaign(campaign_id) c
$$;
COMMENT ON FUNCTION ventros.campaign_stats(uuid) IS 'Progress of a campaign against its goal and its enrollments per status';

CREATE FUNCTION ventros.list_campaigns(status text DEFAULT NULL) RETURNS SETOF ventros.campaigns
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.* FROM ventros.campaigns c
    WHERE c.tenant_id = ventros.require_tenant() AND (list_campaigns.status IS NULL OR c.status = list_campaigns.status)
    ORDER BY c.created_at, c.id
    LIMIT current_setting('ventros.max_page_size')::integer
$$;
COMMENT ON FUNCTION ventros.list_campaigns(text) IS 'Campaigns of the acting tenant, by status';

CREATE FUNCTION ventros.list_campaign_enrollments(campaign_id uuid, status text DEFAULT NULL, due_before timestamptz DEFAULT NULL,
                                                  after_id uuid DEFAULT NULL, page_size integer DEFAULT 50)
RETURNS SETOF ventros.campaign_enrollments
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT e.* FROM ventros.campaign_enrollments e
    WHERE e.tenant_id = ventros.require_tenant() AND e.campaign_id = list_campaign_enrollments.campaign_id
      AND (list_campaign_enrollments.status IS NULL OR e.status = list_campaign_enrollments.status)
      AND (due_before IS NULL OR (e.status = 'active' AND e.next_scheduled_at <= due_before))
      AND (after_id IS NULL OR e.id > after_id)
    ORDER BY e.id
    LIMIT ventros.check_page_size(page_size)
$$;
COMMENT ON FUNCTION ventros.list_campaign_enrollments(uuid, text, timestamptz, uuid, integer) IS
    'Enrollments of a campaign by status, or those due before a time; keyset paging on id';

GRANT EXECUTE ON FUNCTION ventros.get_campaign(uuid, boolean), ventros.campaign_stats(uuid), ventros.list_campaigns(text),
    ventros.list_campaign_enrollments(uuid, text, timestamptz, uuid, integer) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.create_campaign(text, text, integer, text, timestamptz, timestamptz, uuid),
    ventros.update_campaign(uuid, integer, jsonb), ventros.set_campaign_status(uuid, integer, text),
    ventros.add_campaign_step(uuid, integer, text, text, jsonb, jsonb), ventros.update_campaign_step(uuid, integer, jsonb),
    ventros.remove_campaign_step(uuid), ventros.enroll_in_campaign(uuid, uuid),
    ventros.set_campaign_enrollment_status(uuid, integer, text, text), ventros.advance_campaign_enrollment(uuid, timestamptz),
    ventros.tick_campaigns(timestamptz, integer), ventros.record_campaign_conversion(uuid)
    TO ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.delete_campaign(uuid, integer) TO ventros_admin;

-- ---- sql/76_sequences.sql
-- Aggregate 22, Sequence (automation): a drip sequence of timed message
-- steps for enrolled contacts.  draft | paused -> active (needs a step),
-- active -> paused, draft | active | paused -> archived (terminal: the
-- original could reactivate archived sequences).  Steps change only in
-- draft.  Enrollments follow the campaign machine; an inbound reply exits
-- the active enrollments of sequences with exit_on_reply
-- (ventros.exit_sequences_on_reply).  Steps and enrollments are child
-- aggregates; the domain's events are emitted on the sequence.

CREATE TABLE ventros.sequences (
    id              uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id       text        NOT NULL,
    version         integer     NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    project_id      uuid        NOT NULL,
    name            text        NOT NULL,
    description     text,
    status          text        NOT NULL DEFAULT 'draft',
    trigger_type    text        NOT NULL DEFAULT 'manual',
    trigger_data    jsonb,
    exit_on_reply   boolean     NOT NULL DEFAULT true,
    total_enrolled  integer     NOT NULL DEFAULT 0,
    active_count    integer     NOT NULL DEFAULT 0,
    completed_count integer     NOT NULL DEFAULT 0,
    exited_count    integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id),
    CONSTRAINT sequences_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT sequences_status_known CHECK (status IN ('draft', 'active', 'paused', 'archived')),
    CONSTRAINT sequences_trigger_known CHECK (trigger_type IN ('manual', 'tag_added', 'list_joined', 'form_submit', 'pipeline_entered')),
    CONSTRAINT sequences_counts_not_negative CHECK (total_enrolled >= 0 AND active_count >= 0 AND completed_count >= 0
                                                    AND exited_count >= 0)
);
COMMENT ON TABLE ventros.sequences IS 'Sequence: a drip sequence of timed messages';

CREATE TABLE ventros.sequence_steps (
    id               uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id        text        NOT NULL,
    version          integer     NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz,
    sequence_id      uuid        NOT NULL,
    "order"          integer     NOT NULL,
    name             text        NOT NULL,
    delay_amount     integer     NOT NULL DEFAULT 0,
    delay_unit       text        NOT NULL DEFAULT 'minutes',
    message_template jsonb       NOT NULL,
    conditions       jsonb,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, sequence_id) REFERENCES ventros.sequences (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT sequence_steps_order_not_negative CHECK ("order" >= 0),
    CONSTRAINT sequence_steps_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT sequence_steps_delay CHECK (delay_amount >= 0 AND delay_unit IN ('minutes', 'hours', 'days')),
    CONSTRAINT sequence_steps_template CHECK (jsonb_typeof(message_template) = 'object' AND message_template ? 'type'
                                              AND (message_template ? 'content' OR message_template ? 'template_id'))
);
CREATE UNIQUE INDEX sequence_steps_unique_order ON ventros.sequence_steps (tenant_id, sequence_id, "order") WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.sequence_steps IS 'A timed message step of a sequence';

CREATE TABLE ventros.sequence_enrollments (
    id                 uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id          text        NOT NULL,
    version            integer     NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at         timestamptz,
    sequence_id        uuid        NOT NULL,
    contact_id         uuid        NOT NULL,
    status             text        NOT NULL DEFAULT 'active',
    current_step_order integer     NOT NULL DEFAULT -1,
    next_scheduled_at  timestamptz,
    exited_at          timestamptz,
    exit_reason        text,
    completed_at       timestamptz,
    enrolled_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, sequence_id) REFERENCES ventros.sequences (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, contact_id) REFERENCES ventros.contacts (tenant_id, id),
    CONSTRAINT sequence_enrollments_status_known CHECK (status IN ('active', 'paused', 'completed', 'exited')),
    CONSTRAINT sequence_enrollments_exit_reason CHECK (length(exit_reason) <= 500)
);
CREATE UNIQUE INDEX sequence_enrollments_one_current ON ventros.sequence_enrollments (tenant_id, sequence_id, contact_id)
    WHERE status IN ('active', 'paused') AND deleted_at IS NULL;
CREATE INDEX sequence_enrollments_due ON ventros.sequence_enrollments (tenant_id, next_scheduled_at)
    WHERE status = 'active' AND deleted_at IS NULL;
CREATE INDEX sequence_enrollments_by_contact ON ventros.sequence_enrollments (tenant_id, contact_id) WHERE status = 'active';
COMMENT ON TABLE ventros.sequence_enrollments IS 'A contact''s way through a sequence';

SELECT ventros.register_aggregate('sequence', 'ventros.sequences', 'automation',
    state_column => 'status',
    transitions => '[
        {"from": null, "to": "draft"},
        {"from": "draft", "to": "active", "event": "sequence.activated", "description": "A sequence was activated."},
        {"from": "paused", "to": "active", "event": "sequence.resumed", "description": "A paused sequence was resumed."},
        {"from": "active", "to": "paused", "event": "sequence.paused", "description": "A sequence was paused."},
        {"from": "draft", "to": "archived", "event": "sequence.archived", "description": "A sequence was archived."},
        {"from": "active", "to": "archived", "event": "sequence.archived"},
        {"from": "paused", "to": "archived", "event": "sequence.archived"}
    ]',
    description => 'A drip sequence');
SELECT ventros.declare_quiet_columns('sequence', '{total_enrolled,active_count,completed_count,exited_count}');
SELECT ventros.register_aggregate('sequence_step', 'ventros.sequence_steps', 'automation',
    description => 'A step of a sequence (child of sequence)');
SELECT ventros.register_enrollment('sequence', 'ventros.sequence_enrollments');
SELECT ventros.register_event_type('sequence.step_added', 'A step was added to a draft sequence.');
SELECT ventros.register_event_type('sequence.step_updated', 'A step of a draft sequence was changed.');
SELECT ventros.register_event_type('sequence.step_removed', 'A step was removed from a draft sequence.');

CREATE FUNCTION ventros.get_sequence(sequence_id uuid, for_update boolean DEFAULT false) RETURNS ventros.sequences
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN for_update THEN ventros.lock_row(NULL::ventros.sequences, 'sequence', sequence_id)
                ELSE ventros.get_row(NULL::ventros.sequences, 'sequence', sequence_id) END
$$;
COMMENT ON FUNCTION ventros.get_sequence(uuid, boolean) IS 'A live sequence (locked when for_update), or P0002';

CREATE FUNCTION ventros.create_sequence(name text, trigger_type text DEFAULT 'manual', trigger_data jsonb DEFAULT NULL,
                                        exit_on_reply boolean DEFAULT true, description text DEFAULT NULL,
                                        project_id uuid DEFAULT NULL)
RETURNS ventros.sequences
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.sequences;
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'sequence name must not be null' USING ERRCODE = '23502';
    END IF;
    PERFORM ventros.require_value(coalesce(trigger_type, 'manual'), ARRAY['manual', 'tag_added', 'list_joined', 'form_submit',
                                                                          'pipeline_entered'], 'sequence trigger');
    INSERT INTO ventros.sequences (project_id, name, description, trigger_type, trigger_data, exit_on_reply)
    VALUES (coalesce(project_id, ventros.default_project()), ventros.check_length(btrim(name), 200, 'sequence name'),
            description, coalesce(trigger_type, 'manual'), trigger_data, coalesce(exit_on_reply, true))
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.create_sequence(text, text, jsonb, boolean, text, uuid) IS 'Creates a draft sequence; emits sequence.created';

CREATE FUNCTION ventros.update_sequence(sequence_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.sequences
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.apply_changes(NULL::ventros.sequences, 'sequence', sequence_id, expected_version, changes,
                                 ARRAY['name', 'description', 'trigger_type', 'trigger_data', 'exit_on_reply'])
$$;
COMMENT ON FUNCTION ventros.update_sequence(uuid, integer, jsonb) IS 'Changes a sequence''s name, description, trigger or exit_on_reply; emits sequence.updated';

CREATE FUNCTION ventros.delete_sequence(sequence_id uuid, expected_version integer DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.delete_row('ventros.sequences', 'sequence', sequence_id, expected_version) $$;
COMMENT ON FUNCTION ventros.delete_sequence(uuid, integer) IS 'Soft-deletes a sequence; emits sequence.deleted';

CREATE FUNCTION ventros.set_sequence_status(sequence_id uuid, expected_version integer, status text)
RETURNS ventros.sequences
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.sequences := ventros.get_sequence(sequence_id, true);
BEGIN
    PERFORM ventros.require_value(status, ARRAY['draft', 'active', 'paused', 'archived'], 'sequence status');
    IF status = 'active' AND NOT EXISTS (SELECT 1 FROM ventros.sequence_steps x WHERE x.tenant_id = s.tenant_id AND x.sequence_id = s.id) THEN
        RAISE EXCEPTION 'sequence % has no steps', sequence_id USING ERRCODE = '23514',
            HINT = 'Add a step with ventros.add_sequence_step() first.';
    END IF;
    RETURN ventros.change_row(NULL::ventros.sequences, 'sequence', sequence_id, expected_version, jsonb_build_object('status', status));
END
$$;
COMMENT ON FUNCTION ventros.set_sequence_status(uuid, integer, text) IS
    'Moves a sequence along its machine (VN002; archived is terminal); activation needs a step (23514); emits sequence.activated, .paused, .resumed or .archived';

CREATE FUNCTION ventros.require_draft_sequence(sequence_id uuid) RETURNS ventros.sequences
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.sequences := ventros.get_sequence(sequence_id, true);
BEGIN
    IF s.status <> 'draft' THEN
        RAISE EXCEPTION 'sequence % is %; steps change only in draft', sequence_id, s.status USING ERRCODE = 'VN002';
    END IF;
    RETURN s;
END
$$;
COMMENT ON FUNCTION ventros.require_draft_sequence(uuid) IS 'Locks a sequence and checks it is a draft (VN002 otherwise)';

CREATE FUNCTION ventros.add_sequence_step(sequence_id uuid, "order" integer, name text, message_template jsonb,
                                          delay_amount integer DEFAULT 0, delay_unit text DEFAULT 'minutes',
                                          conditions jsonb DEFAULT NULL)
RETURNS ventros.sequence_steps
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.sequences := ventros.require_draft_sequence(sequence_id);
    result ventros.sequence_steps;
BEGIN
    PERFORM ventros.require_value(coalesce(delay_unit, 'minutes'), ARRAY['minutes', 'hours', 'days'], 'delay unit');
    INSERT INTO ventros.sequence_steps (sequence_id, "order", name, delay_amount, delay_unit, message_template, conditions)
    VALUES (sequence_id, "order", ventros.check_length(btrim(name), 200, 'step name'), coalesce(delay_amount, 0),
            coalesce(delay_unit, 'minutes'), message_template, conditions)
    RETURNING * INTO result;
    PERFORM ventros.emit('sequence.step_added', 'sequence', s.id,
        jsonb_build_object('step_id', result.id, 'order', result."order"), s.version);
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'sequence % has a step % already', sequence_id, "order" USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.add_sequence_step(uuid, integer, text, jsonb, integer, text, jsonb) IS
    'Adds a step to a draft sequence (VN002 otherwise; template needs type and content or template_id, 23514); emits sequence_step.created and sequence.step_added';

CREATE FUNCTION ventros.update_sequence_step(sequence_step_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.sequence_steps
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    step ventros.sequence_steps;
    s ventros.sequences;
    result ventros.sequence_steps;
BEGIN
    SELECT * INTO step FROM ventros.sequence_steps x WHERE x.tenant_id = ventros.require_tenant() AND x.id = sequence_step_id;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('sequence step', sequence_step_id);
    END IF;
    s := ventros.require_draft_sequence(step.sequence_id);
    result := ventros.apply_changes(NULL::ventros.sequence_steps, 'sequence step', sequence_step_id, expected_version, changes,
                                    ARRAY['order', 'name', 'delay_amount', 'delay_unit', 'message_template', 'conditions']);
    PERFORM ventros.emit('sequence.step_updated', 'sequence', s.id,
        jsonb_build_object('step_id', result.id, 'fields', (SELECT jsonb_agg(k) FROM jsonb_object_keys(changes) k)), s.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.update_sequence_step(uuid, integer, jsonb) IS
    'Changes a step of a draft sequence (VN002 otherwise); emits sequence_step.updated and sequence.step_updated';

CREATE FUNCTION ventros.remove_sequence_step(sequence_step_id uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    step ventros.sequence_steps;
    s ventros.sequences;
BEGIN
    SELECT * INTO step FROM ventros.sequence_steps x WHERE x.tenant_id = ventros.require_tenant() AND x.id = sequence_step_id;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('sequence step', sequence_step_id);
    END IF;
    s := ventros.require_draft_sequence(step.sequence_id);
    PERFORM ventros.delete_row('ventros.sequence_steps', 'sequence step', sequence_step_id, NULL);
    PERFORM ventros.emit('sequence.step_removed', 'sequence', s.id, jsonb_build_object('step_id', step.id, 'order', step."order"), s.version);
END
$$;
COMMENT ON FUNCTION ventros.remove_sequence_step(uuid) IS
    'Removes a step of a draft sequence (VN002 otherwise); emits sequence_step.deleted and sequence.step_removed';

-- The delay of a step as an interval.
CREATE FUNCTION ventros.sequence_step_delay(step ventros.sequence_steps) RETURNS interval
LANGUAGE sql IMMUTABLE
AS $$ SELECT pg_catalog.make_interval(mins => CASE step.delay_unit WHEN 'hours' THEN step.delay_amount * 60
                                                           WHEN 'days' THEN step.delay_amount * 1440
                                                           ELSE step.delay_amount END) $$;
COMMENT ON FUNCTION ventros.sequence_step_delay(ventros.sequence_steps) IS 'A step''s delay as an interval';

CREATE FUNCTION ventros.enroll_in_sequence(sequence_id uuid, contact_id uuid)
RETURNS ventros.sequence_enrollments
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.sequences := ventros.get_sequence(sequence_id);
    first_step ventros.sequence_steps;
    result ventros.sequence_enrollments;
BEGIN
    IF s.status <> 'active' THEN
        RAISE EXCEPTION 'sequence % is %; contacts enroll in active sequences', sequence_id, s.status USING ERRCODE = 'VN002';
    END IF;
    PERFORM ventros.get_contact(contact_id);
    SELECT * INTO first_step FROM ventros.sequence_steps x WHERE x.tenant_id = s.tenant_id AND x.sequence_id = s.id
    ORDER BY x."order" LIMIT 1;
    INSERT INTO ventros.sequence_enrollments (sequence_id, contact_id, next_scheduled_at)
    VALUES (sequence_id, contact_id, now() + ventros.sequence_step_delay(first_step))
    RETURNING * INTO result;
    UPDATE ventros.sequences x SET total_enrolled = x.total_enrolled + 1, active_count = x.active_count + 1, version = x.version
    WHERE x.tenant_id = s.tenant_id AND x.id = s.id;
    PERFORM ventros.emit('sequence.contact_enrolled', 'sequence', s.id,
        jsonb_build_object('enrollment_id', result.id, 'contact_id', contact_id), s.version);
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'contact % is enrolled in sequence % already', contact_id, sequence_id USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.enroll_in_sequence(uuid, uuid) IS
    'Enrolls a contact in an active sequence (VN002 otherwise; once at a time, 23505), due after the first step''s delay; emits sequence_enrollment.created and sequence.contact_enrolled';

-- A sequence's counters after one of its enrollments changed status.
CREATE FUNCTION ventros.count_sequence_enrollment(e ventros.sequence_enrollments, from_status text) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE ventros.sequences x
    SET active_count = x.active_count - CASE WHEN from_status = 'active' THEN 1 ELSE 0 END
                                      + CASE WHEN e.status = 'active' THEN 1 ELSE 0 END,
        completed_count = x.completed_count + CASE WHEN e.status = 'completed' THEN 1 ELSE 0 END,
        exited_count = x.exited_count + CASE WHEN e.status = 'exited' THEN 1 ELSE 0 END,
        version = x.version
    WHERE x.tenant_id = e.tenant_id AND x.id = e.sequence_id
$$;
COMMENT ON FUNCTION ventros.count_sequence_enrollment(ventros.sequence_enrollments, text) IS
    'Keeps a sequence''s active, completed and exited counters after an enrollment left from_status';

-- Counters and business event of an enrollment that completed or exited while advancing.
CREATE FUNCTION ventros.sequence_enrollment_changed(e ventros.sequence_enrollments, from_status text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.count_sequence_enrollment(e, from_status);
    PERFORM ventros.emit_enrollment_event('sequence', e);
END
$$;
COMMENT ON FUNCTION ventros.sequence_enrollment_changed(ventros.sequence_enrollments, text) IS
    'Keeps a sequence''s counters and emits the enrollment''s event after a status change';

CREATE FUNCTION ventros.set_sequence_enrollment_status(sequence_enrollment_id uuid, expected_version integer, status text,
                                                       exit_reason text DEFAULT NULL)
RETURNS ventros.sequence_enrollments
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    changed record := ventros.set_enrollment_status(NULL::ventros.sequence_enrollments, 'sequence', sequence_enrollment_id,
                                                    expected_version, status, exit_reason);
BEGIN
    PERFORM ventros.count_sequence_enrollment(changed.after, (changed.before).status);
    RETURN changed.after;
END
$$;
COMMENT ON FUNCTION ventros.set_sequence_enrollment_status(uuid, integer, text, text) IS
    'Pauses, resumes or exits an enrollment (VN002 when the machine refuses); emits sequence_enrollment.updated and sequence.enrollment_paused, _resumed or _exited';

CREATE FUNCTION ventros.advance_sequence_enrollment(sequence_enrollment_id uuid, now timestamptz DEFAULT now())
RETURNS ventros.sequence_enrollments
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e ventros.sequence_enrollments;
    step ventros.sequence_steps;
    following ventros.sequence_steps;
    result ventros.sequence_enrollments;
    channel uuid;
    sent uuid;
BEGIN
    SELECT * INTO e FROM ventros.sequence_enrollments x
    WHERE x.tenant_id = ventros.require_tenant() AND x.id = sequence_enrollment_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('sequence enrollment', sequence_enrollment_id);
    END IF;
    IF e.status <> 'active' THEN
        RAISE EXCEPTION 'sequence enrollment % is %; only active enrollments advance', e.id, e.status USING ERRCODE = 'VN002';
    END IF;
    -- the step now due (its message goes out with source = sequence when the sender runs)
    SELECT * INTO step FROM ventros.sequence_steps x WHERE x.tenant_id = e.tenant_id AND x.sequence_id = e.sequence_id
      AND x."order" > e.current_step_order ORDER BY x."order" LIMIT 1;
    IF NOT FOUND THEN
        UPDATE ventros.sequence_enrollments x SET status = 'completed', completed_at = now, next_scheduled_at = NULL, version = x.version
        WHERE x.tenant_id = e.tenant_id AND x.id = e.id RETURNING * INTO result;
        PERFORM ventros.sequence_enrollment_changed(result, 'active');
        RETURN result;
    END IF;
    -- Send on the channel of the contact's latest session (source sequence,
    -- its system agent); consent is checked by send_message: an opted-out
    -- contact leaves the sequence.  Without a session the event carries the
    -- template for a sender that knows the channel.
    SELECT s.channel_id INTO channel FROM ventros.sessions s
    WHERE s.tenant_id = e.tenant_id AND s.contact_id = e.contact_id ORDER BY s.started_at DESC LIMIT 1;
    IF channel IS NOT NULL AND step.message_template ? 'content' THEN
        BEGIN
            sent := (ventros.send_message(channel, e.contact_id, text => step.message_template->>'content', source => 'sequence',
                                          metadata => jsonb_build_object('sequence_id', e.sequence_id, 'step_order', step."order"))).id;
        EXCEPTION WHEN SQLSTATE 'VN010' THEN
            UPDATE ventros.sequence_enrollments x
            SET status = 'exited', exited_at = now, exit_reason = 'opted_out', next_scheduled_at = NULL, version = x.version
            WHERE x.tenant_id = e.tenant_id AND x.id = e.id RETURNING * INTO result;
            PERFORM ventros.sequence_enrollment_changed(result, 'active');
            RETURN result;
        END;
    END IF;
    SELECT * INTO following FROM ventros.sequence_steps x WHERE x.tenant_id = e.tenant_id AND x.sequence_id = e.sequence_id
      AND x."order" > step."order" ORDER BY x."order" LIMIT 1;
    UPDATE ventros.sequence_enrollments x
    SET current_step_order = step."order",
        next_scheduled_at = now + coalesce(ventros.sequence_step_delay(following), '0'),
        version = x.version
    WHERE x.tenant_id = e.tenant_id AND x.id = e.id RETURNING * INTO result;
    PERFORM ventros.emit('sequence.enrollment_advanced', 'sequence', e.sequence_id,
        jsonb_build_object('enrollment_id', e.id, 'contact_id', e.contact_id, 'step_order', step."order",
                           'message_template', step.message_template, 'message_id', sent), NULL);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.advance_sequence_enrollment(uuid, timestamptz) IS
    'Sends the due step of an active enrollment on the contact''s latest session channel (source sequence; an opted-out contact exits) and schedules the next, or completes; emits message.created, sequence.enrollment_advanced, sequence.enrollment_completed or sequence.enrollment_exited';

CREATE FUNCTION ventros.tick_sequences(now timestamptz DEFAULT now(), batch_size integer DEFAULT 1000)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e record;
    n integer := 0;
BEGIN
    FOR e IN SELECT x.id FROM ventros.sequence_enrollments x
             JOIN ventros.sequences s ON s.tenant_id = x.tenant_id AND s.id = x.sequence_id AND s.status = 'active'
             WHERE x.tenant_id = ventros.require_tenant() AND x.status = 'active' AND x.next_scheduled_at <= tick_sequences.now
             ORDER BY x.next_scheduled_at LIMIT batch_size
             FOR UPDATE OF x SKIP LOCKED
    LOOP
        PERFORM ventros.advance_sequence_enrollment(e.id, now);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.tick_sequences(timestamptz, integer) IS
    'Advances the due enrollments of active sequences (SKIP LOCKED); returns how many';

CREATE FUNCTION ventros.exit_sequences_on_reply(contact_id uuid) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e ventros.sequence_enrollments;
    n integer := 0;
BEGIN
    FOR e IN
        UPDATE ventros.sequence_enrollments x
        SET status = 'exited', exited_at = now(), exit_reason = 'replied', next_scheduled_at = NULL, version = x.version
        FROM ventros.sequences s
        WHERE x.tenant_id = ventros.require_tenant() AND x.contact_id = exit_sequences_on_reply.contact_id
          AND x.status = 'active' AND s.tenant_id = x.tenant_id AND s.id = x.sequence_id AND s.exit_on_reply
        RETURNING x.*
    LOOP
        PERFORM ventros.sequence_enrollment_changed(e, 'active');
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.exit_sequences_on_reply(uuid) IS
    'An inbound reply: exits the contact''s active enrollments of sequences with exit_on_reply; emits sequence.enrollment_exited for each; returns how many';

CREATE FUNCTION ventros.sequence_stats(sequence_id uuid) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object('sequence_id', s.id, 'status', s.status, 'total_enrolled', s.total_enrolled,
                              'active', s.active_count, 'completed', s.completed_count, 'exited', s.exited_count,
                              'steps', (SELECT count(*) FROM ventros.sequence_steps x WHERE x.tenant_id = s.tenant_id AND x.sequence_id = s.id))
    FROM ventros.get_sequence(sequence_id) s
$$;
COMMENT ON FUNCTION ventros.sequence_stats(uuid) IS 'Enrollment counts and step count of a sequence';

CREATE FUNCTION ventros.list_sequences(status text DEFAULT NULL) RETURNS SETOF ventros.sequences
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.* FROM ventros.sequences s
    WHERE s.tenant_id = ventros.require_tenant() AND (list_sequences.status IS NULL OR s.status = list_sequences.status)
    ORDER BY s.created_at, s.id
    LIMIT current_setting('ventros.max_page_size')::integer
$$;
COMMENT ON FUNCTION ventros.list_sequences(text) IS 'Sequences of the acting tenant, by status';

CREATE FUNCTION ventros.list_sequence_enrollments(sequence_id uuid, status text DEFAULT NULL, after_id uuid DEFAULT NULL,
                                                  page_size integer DEFAULT 50)
RETURNS SETOF ventros.sequence_enrollments
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT e.* FROM ventros.sequence_enrollments e
    WHERE e.tenant_id = ventros.require_tenant() AND e.sequence_id = list_sequence_enrollments.sequence_id
      AND (list_sequence_enrollments.status IS NULL OR e.status = list_sequence_enrollments.status)
      AND (after_id IS NULL OR e.id > after_id)
    ORDER BY e.id
    LIMIT ventros.check_page_size(page_size)
$$;
COMMENT ON FUNCTION ventros.list_sequence_enrollments(uuid, text, uuid, integer) IS 'Enrollments of a sequence; keyset paging on id';

GRANT EXECUTE ON FUNCTION ventros.get_sequence(uuid, boolean), ventros.sequence_stats(uuid), ventros.list_sequences(text),
    ventros.list_sequence_enrollments(uuid, text, uuid, integer), ventros.sequence_step_delay(ventros.sequence_steps)
    TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.create_sequence(text, text, jsonb, boolean, text, uuid),
    ventros.update_sequence(uuid, integer, jsonb), ventros.set_sequence_status(uuid, integer, text),
    ventros.require_draft_sequence(uuid), ventros.add_sequence_step(uuid, integer, text, jsonb, integer, text, jsonb),
    ventros.update_sequence_step(uuid, integer, jsonb), ventros.remove_sequence_step(uuid),
    ventros.enroll_in_sequence(uuid, uuid), ventros.sequence_enrollment_changed(ventros.sequence_enrollments, text),
    ventros.count_sequence_enrollment(ventros.sequence_enrollments, text),
    ventros.set_sequence_enrollment_status(uuid, integer, text, text), ventros.advance_sequence_enrollment(uuid, timestamptz),
    ventros.tick_sequences(timestamptz, integer), ventros.exit_sequences_on_reply(uuid)
    TO ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.delete_sequence(uuid, integer) TO ventros_admin;

-- ---- sql/77_broadcasts.sql
-- Aggregate 23, Broadcast (automation): a one-off, rate-limited mass send of a
-- message template to a contact list, now or at a scheduled time.
--   draft -> scheduled (a future time); draft | scheduled -> running ->
--   completed; scheduled | running -> failed; draft | scheduled | running ->
--   cancelled.  Name, template and rate limit change only in draft.
-- Executing expands the list into broadcast_executions (one per contact,
-- unique), skipping contacts who opted out of the channel.  Execution
-- machine: pending -> sending -> sent | failed; pending -> skipped.
-- ventros.tick_broadcasts starts due scheduled broadcasts and sends up to
-- rate_limit pending executions per call (one call a minute) through
-- ventros.send_message (source broadcast, its system agent); a broadcast
-- completes when nothing is pending.  Counters are quiet columns.

CREATE TABLE ventros.broadcasts (
    id               uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id        text        NOT NULL,
    version          integer     NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz,
    project_id       uuid        NOT NULL,
    name             text        NOT NULL,
    list_id          uuid        NOT NULL,
    channel_id       uuid        NOT NULL,
    message_template jsonb       NOT NULL,
    status           text        NOT NULL DEFAULT 'draft',
    scheduled_for    timestamptz,
    started_at       timestamptz,
    completed_at     timestamptz,
    failure_reason   text,
    total_contacts   integer     NOT NULL DEFAULT 0,
    sent_count       integer     NOT NULL DEFAULT 0,
    failed_count     integer     NOT NULL DEFAULT 0,
    pending_count    integer     NOT NULL DEFAULT 0,
    rate_limit       integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id),
    FOREIGN KEY (tenant_id, list_id) REFERENCES ventros.contact_lists (tenant_id, id),
    FOREIGN KEY (tenant_id, channel_id) REFERENCES ventros.channels (tenant_id, id),
    CONSTRAINT broadcasts_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT broadcasts_status_known CHECK (status IN ('draft', 'scheduled', 'running', 'completed', 'failed', 'cancelled')),
    CONSTRAINT broadcasts_template CHECK (jsonb_typeof(message_template) = 'object' AND message_template ? 'type'
                                          AND (message_template ? 'content' OR message_template ? 'template_id')),
    CONSTRAINT broadcasts_counts CHECK (total_contacts >= 0 AND sent_count >= 0 AND failed_count >= 0 AND pending_count >= 0),
    CONSTRAINT broadcasts_rate_limit CHECK (rate_limit >= 0),
    CONSTRAINT broadcasts_scheduled_time CHECK (status <> 'scheduled' OR scheduled_for IS NOT NULL)
);
CREATE INDEX broadcasts_due ON ventros.broadcasts (tenant_id, scheduled_for) WHERE status = 'scheduled' AND deleted_at IS NULL;
COMMENT ON TABLE ventros.broadcasts IS 'Broadcast: a rate-limited mass send of a template to a contact list';

CREATE TABLE ventros.broadcast_executions (
    id           uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id    text        NOT NULL,
    version      integer     NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz,
    broadcast_id uuid        NOT NULL,
    contact_id   uuid        NOT NULL,
    status       text        NOT NULL DEFAULT 'pending',
    message_id   uuid,
    error        text,
    sent_at      timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, broadcast_id) REFERENCES ventros.broadcasts (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, contact_id) REFERENCES ventros.contacts (tenant_id, id),
    FOREIGN KEY (tenant_id, message_id) REFERENCES ventros.messages (tenant_id, id),
    CONSTRAINT broadcast_executions_status_known CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'skipped')),
    CONSTRAINT broadcast_executions_sent_message CHECK (status <> 'sent' OR message_id IS NOT NULL),
    CONSTRAINT broadcast_executions_error_size CHECK (length(error) <= 1000)
);
CREATE UNIQUE INDEX broadcast_executions_unique ON ventros.broadcast_executions (tenant_id, broadcast_id, contact_id);
CREATE INDEX broadcast_executions_pending ON ventros.broadcast_executions (tenant_id, broadcast_id, created_at)
    WHERE status = 'pending';
COMMENT ON TABLE ventros.broadcast_executions IS 'The send of a broadcast to one contact';

SELECT ventros.register_aggregate('broadcast', 'ventros.broadcasts', 'automation',
    state_column => 'status',
    transitions => '[
        {"from": null, "to": "draft"},
        {"from": "draft", "to": "scheduled", "event": "broadcast.scheduled", "description": "A broadcast was scheduled."},
        {"from": "draft", "to": "running", "event": "broadcast.started", "description": "A broadcast started sending."},
        {"from": "scheduled", "to": "running", "event": "broadcast.started"},
        {"from": "running", "to": "completed", "event": "broadcast.completed", "description": "A broadcast sent to every contact."},
        {"from": "scheduled", "to": "failed", "event": "broadcast.failed", "description": "A broadcast failed."},
        {"from": "running", "to": "failed", "event": "broadcast.failed"},
        {"from": "draft", "to": "cancelled", "event": "broadcast.cancelled", "description": "A broadcast was cancelled."},
        {"from": "scheduled", "to": "cancelled", "event": "broadcast.cancelled"},
        {"from": "running", "to": "cancelled", "event": "broadcast.cancelled"}
    ]',
    description => 'A rate-limited mass send to a contact list');
SELECT ventros.declare_quiet_columns('broadcast', '{total_contacts,sent_count,failed_count,pending_count}');
SELECT ventros.register_aggregate('broadcast_execution', 'ventros.broadcast_executions', 'automation',
    state_column => 'status',
    transitions => '[
        {"from": null, "to": "pending"},
        {"from": null, "to": "skipped"},
        {"from": "pending", "to": "sending"},
        {"from": "sending", "to": "sent"},
        {"from": "sending", "to": "failed"},
        {"from": "pending", "to": "skipped"}
    ]',
    description => 'The send of a broadcast to one contact (child of broadcast)');

CREATE FUNCTION ventros.get_broadcast(broadcast_id uuid, for_update boolean DEFAULT false) RETURNS ventros.broadcasts
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN for_update THEN ventros.lock_row(NULL::ventros.broadcasts, 'broadcast', broadcast_id)
                ELSE ventros.get_row(NULL::ventros.broadcasts, 'broadcast', broadcast_id) END
$$;
COMMENT ON FUNCTION ventros.get_broadcast(uuid, boolean) IS 'A live broadcast (locked when for_update), or P0002';

CREATE FUNCTION ventros.create_broadcast(name text, list_id uuid, channel_id uuid, message_template jsonb,
                                         rate_limit integer DEFAULT 0, project_id uuid DEFAULT NULL)
RETURNS ventros.broadcasts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.broadcasts;
BEGIN
    IF name IS NULL OR message_template IS NULL THEN
        RAISE EXCEPTION 'broadcast % must not be null', CASE WHEN name IS NULL THEN 'name' ELSE 'message_template' END
            USING ERRCODE = '23502';
    END IF;
    PERFORM ventros.get_contact_list(list_id);
    PERFORM ventros.get_channel(channel_id);
    INSERT INTO ventros.broadcasts (project_id, name, list_id, channel_id, message_template, rate_limit)
    VALUES (coalesce(project_id, ventros.default_project()), ventros.check_length(btrim(name), 200, 'broadcast name'),
            list_id, channel_id, ventros.require_json(message_template, 'object', 'message template'), coalesce(rate_limit, 0))
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.create_broadcast(text, uuid, uuid, jsonb, integer, uuid) IS
    'Creates a draft broadcast of a template (type and content or template_id, 23514) to a list on a channel; emits broadcast.created';

CREATE FUNCTION ventros.update_broadcast(broadcast_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.broadcasts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b ventros.broadcasts := ventros.get_broadcast(broadcast_id);
BEGIN
    IF b.status <> 'draft' THEN
        RAISE EXCEPTION 'broadcast % is %; it changes only in draft', broadcast_id, b.status USING ERRCODE = 'VN002';
    END IF;
    RETURN ventros.apply_changes(NULL::ventros.broadcasts, 'broadcast', broadcast_id, expected_version, changes,
                                 ARRAY['name', 'message_template', 'rate_limit', 'list_id', 'channel_id']);
END
$$;
COMMENT ON FUNCTION ventros.update_broadcast(uuid, integer, jsonb) IS
    'Changes name, template, rate limit, list or channel of a draft broadcast (VN002 otherwise); emits broadcast.updated';

CREATE FUNCTION ventros.delete_broadcast(broadcast_id uuid, expected_version integer DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.delete_row('ventros.broadcasts', 'broadcast', broadcast_id, expected_version) $$;
COMMENT ON FUNCTION ventros.delete_broadcast(uuid, integer) IS 'Soft-deletes a broadcast; emits broadcast.deleted';

CREATE FUNCTION ventros.schedule_broadcast(broadcast_id uuid, expected_version integer, scheduled_for timestamptz)
RETURNS ventros.broadcasts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF scheduled_for IS NULL OR scheduled_for <= now() THEN
        RAISE EXCEPTION 'a broadcast is scheduled for a future time' USING ERRCODE = '22023';
    END IF;
    RETURN ventros.change_row(NULL::ventros.broadcasts, 'broadcast', broadcast_id, expected_version,
                              jsonb_build_object('status', 'scheduled', 'scheduled_for', scheduled_for));
END
$$;
COMMENT ON FUNCTION ventros.schedule_broadcast(uuid, integer, timestamptz) IS
    'Schedules a draft broadcast for a future time (22023 otherwise); emits broadcast.scheduled';

-- execute_broadcast: expands the list into executions and starts sending.
CREATE FUNCTION ventros.execute_broadcast(broadcast_id uuid, expected_version integer DEFAULT NULL)
RETURNS ventros.broadcasts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b ventros.broadcasts := ventros.get_broadcast(broadcast_id, true);
    total integer;
    pending integer;
    result ventros.broadcasts;
BEGIN
    result := ventros.change_row(NULL::ventros.broadcasts, 'broadcast', broadcast_id, coalesce(expected_version, b.version),
                                 jsonb_build_object('status', 'running', 'started_at', now()));
    EXECUTE format('INSERT INTO ventros.broadcast_executions (broadcast_id, contact_id, status) '
                   'SELECT $1, c.id, CASE WHEN ventros.may_message(c.id, $2) THEN ''pending'' ELSE ''skipped'' END '
                   'FROM ventros.contacts c WHERE c.tenant_id = ventros.require_tenant() AND (%s) '
                   'ON CONFLICT (tenant_id, broadcast_id, contact_id) DO NOTHING',
                   ventros.contact_list_predicate(b.list_id))
        USING b.id, b.channel_id;
    SELECT count(*), count(*) FILTER (WHERE e.status = 'pending') INTO total, pending
    FROM ventros.broadcast_executions e WHERE e.tenant_id = b.tenant_id AND e.broadcast_id = b.id;
    UPDATE ventros.broadcasts x SET total_contacts = total, pending_count = pending, version = x.version
    WHERE x.tenant_id = b.tenant_id AND x.id = b.id RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.execute_broadcast(uuid, integer) IS
    'Starts a draft or scheduled broadcast: one execution per contact of its list (opted-out contacts skipped); emits broadcast.started and broadcast_execution.created per contact';

CREATE FUNCTION ventros.cancel_broadcast(broadcast_id uuid, expected_version integer)
RETURNS ventros.broadcasts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.broadcasts;
BEGIN
    result := ventros.change_row(NULL::ventros.broadcasts, 'broadcast', broadcast_id, expected_version,
                                 jsonb_build_object('status', 'cancelled', 'completed_at', now()));
    UPDATE ventros.broadcast_executions e SET status = 'skipped', error = 'broadcast cancelled', version = e.version
    WHERE e.tenant_id = result.tenant_id AND e.broadcast_id = result.id AND e.status = 'pending';
    UPDATE ventros.broadcasts x SET pending_count = 0, version = x.version
    WHERE x.tenant_id = result.tenant_id AND x.id = result.id RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.cancel_broadcast(uuid, integer) IS
    'Cancels a draft, scheduled or running broadcast; pending sends are skipped; emits broadcast.cancelled';

CREATE FUNCTION ventros.fail_broadcast(broadcast_id uuid, expected_version integer, reason text)
RETURNS ventros.broadcasts
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.change_row(NULL::ventros.broadcasts, 'broadcast', broadcast_id, expected_version,
        jsonb_build_object('status', 'failed', 'completed_at', now(),
                           'failure_reason', ventros.check_length(coalesce(reason, 'unknown'), 1000, 'failure reason')))
$$;
COMMENT ON FUNCTION ventros.fail_broadcast(uuid, integer, text) IS 'Marks a scheduled or running broadcast failed; emits broadcast.failed';

-- send_broadcast_batch: up to limit pending sends of one running broadcast.
CREATE FUNCTION ventros.send_broadcast_batch(broadcast_id uuid, batch integer DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b ventros.broadcasts := ventros.get_broadcast(broadcast_id, true);
    e ventros.broadcast_executions;
    m ventros.messages;
    n integer := 0;
    sent integer := 0;
    failed integer := 0;
    message text;
BEGIN
    IF b.status <> 'running' THEN
        RAISE EXCEPTION 'broadcast % is %, not running', broadcast_id, b.status USING ERRCODE = 'VN002';
    END IF;
    FOR e IN SELECT * FROM ventros.broadcast_executions x
             WHERE x.tenant_id = b.tenant_id AND x.broadcast_id = b.id AND x.status = 'pending'
             ORDER BY x.created_at, x.id
             LIMIT coalesce(batch, nullif(b.rate_limit, 0), 1000)
             FOR UPDATE SKIP LOCKED
    LOOP
        UPDATE ventros.broadcast_executions x SET status = 'sending', version = x.version WHERE x.tenant_id = e.tenant_id AND x.id = e.id;
        BEGIN
            m := ventros.send_message(b.channel_id, e.contact_id, text => b.message_template->>'content', source => 'broadcast',
                                      metadata => jsonb_build_object('broadcast_id', b.id, 'template', b.message_template));
            UPDATE ventros.broadcast_executions x SET status = 'sent', message_id = m.id, sent_at = now(), version = x.version
            WHERE x.tenant_id = e.tenant_id AND x.id = e.id;
            sent := sent + 1;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS message = MESSAGE_TEXT;
            UPDATE ventros.broadcast_executions x SET status = 'failed', error = left(message, 1000), version = x.version
            WHERE x.tenant_id = e.tenant_id AND x.id = e.id;
            failed := failed + 1;
        END;
        n := n + 1;
    END LOOP;
    UPDATE ventros.broadcasts x
    SET sent_count = x.sent_count + sent, failed_count = x.failed_count + failed,
        pending_count = greatest(x.pending_count - n, 0), version = x.version
    WHERE x.tenant_id = b.tenant_id AND x.id = b.id;
    IF NOT EXISTS (SELECT 1 FROM ventros.broadcast_executions x
                   WHERE x.tenant_id = b.tenant_id AND x.broadcast_id = b.id AND x.status IN ('pending', 'sending')) THEN
        UPDATE ventros.broadcasts x SET status = 'completed', completed_at = now(), version = x.version
        WHERE x.tenant_id = b.tenant_id AND x.id = b.id;
    END IF;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.send_broadcast_batch(uuid, integer) IS
    'Sends up to batch (default: the rate limit) pending executions of a running broadcast through send_message (source broadcast); failures, opt-outs included, mark the execution failed; completes the broadcast when nothing is pending (broadcast.completed)';

CREATE FUNCTION ventros.tick_broadcasts(now timestamptz DEFAULT now()) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b record;
    n integer := 0;
BEGIN
    FOR b IN SELECT x.id FROM ventros.broadcasts x
             WHERE x.tenant_id = ventros.require_tenant() AND x.status = 'scheduled' AND x.scheduled_for <= tick_broadcasts.now
             FOR UPDATE SKIP LOCKED
    LOOP
        PERFORM ventros.execute_broadcast(b.id);
    END LOOP;
    FOR b IN SELECT x.id FROM ventros.broadcasts x
             WHERE x.tenant_id = ventros.require_tenant() AND x.status = 'running'
             FOR UPDATE SKIP LOCKED
    LOOP
        n := n + ventros.send_broadcast_batch(b.id);
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.tick_broadcasts(timestamptz) IS
    'Starts due scheduled broadcasts and sends one rate-limited batch of each running one (call once a minute); returns sends attempted';

CREATE FUNCTION ventros.broadcast_stats(broadcast_id uuid) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object('broadcast_id', b.id, 'status', b.status, 'total_contacts', b.total_contacts,
                              'sent', b.sent_count, 'failed', b.failed_count, 'pending', b.pending_count,
                              'skipped', (SELECT count(*) FROM ventros.broadcast_executions e
                                          WHERE e.tenant_id = b.tenant_id AND e.broadcast_id = b.id AND e.status = 'skipped'))
    FROM ventros.get_broadcast(broadcast_id) b
$$;
COMMENT ON FUNCTION ventros.broadcast_stats(uuid) IS 'Counts of a broadcast''s sends';

CREATE FUNCTION ventros.list_broadcasts(status text DEFAULT NULL, due_before timestamptz DEFAULT NULL)
RETURNS SETOF ventros.broadcasts
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT b.* FROM ventros.broadcasts b
    WHERE b.tenant_id = ventros.require_tenant()
      AND (list_broadcasts.status IS NULL OR b.status = list_broadcasts.status)
      AND (due_before IS NULL OR (b.status = 'scheduled' AND b.scheduled_for <= due_before))
    ORDER BY b.created_at, b.id
    LIMIT current_setting('ventros.max_page_size')::integer
$$;
COMMENT ON FUNCTION ventros.list_broadcasts(text, timestamptz) IS 'Broadcasts by status, or the scheduled ones due before a time';

GRANT EXECUTE ON FUNCTION ventros.get_broadcast(uuid, boolean), ventros.broadcast_stats(uuid),
    ventros.list_broadcasts(text, timestamptz) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.create_broadcast(text, uuid, uuid, jsonb, integer, uuid),
    ventros.update_broadcast(uuid, integer, jsonb), ventros.schedule_broadcast(uuid, integer, timestamptz),
    ventros.execute_broadcast(uuid, integer), ventros.cancel_broadcast(uuid, integer), ventros.fail_broadcast(uuid, integer, text),
    ventros.send_broadcast_batch(uuid, integer), ventros.tick_broadcasts(timestamptz)
    TO ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.delete_broadcast(uuid, integer) TO ventros_admin;

-- ---- sql/78_trackings.sql
-- Aggregate 19, Tracking (CRM): ad and campaign attribution of a contact
-- (Meta click-to-WhatsApp, UTM parameters), optionally enriched from the ad
-- platform (tracking_enrichments, 1:1, a child aggregate).  conversion_data
-- is encrypted like a credential (ventros.encrypt_secret) and redacted from
-- events.  A tracking from an ad also records contact.ad_conversion_tracked
-- on the contact.  The "invisible code" carries a tracking id inside
-- outbound text as zero-width characters (ventros.encode_tracking_code /
-- decode_tracking_code): each hex digit of the id becomes three ternary
-- digits (U+200B, U+200C, U+200D) between two U+2060 word joiners.

CREATE TABLE ventros.trackings (
    id              uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id       text        NOT NULL,
    version         integer     NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    contact_id      uuid        NOT NULL,
    session_id      uuid,
    project_id      uuid        NOT NULL,
    source          text        NOT NULL,
    platform        text        NOT NULL,
    campaign        text,
    ad_id           text,
    ad_url          text,
    click_id        text,
    conversion_data bytea,
    utm_source      text,
    utm_medium      text,
    utm_campaign    text,
    utm_term        text,
    utm_content     text,
    metadata        jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES ventros.contacts (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, session_id) REFERENCES ventros.sessions (tenant_id, id) ON DELETE SET NULL (session_id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id),
    CONSTRAINT trackings_source_known CHECK (source IN ('meta_ads', 'google_ads', 'tiktok_ads', 'linkedin', 'organic', 'direct',
                                                        'referral', 'other')),
    CONSTRAINT trackings_platform_known CHECK (platform IN ('instagram', 'facebook', 'google', 'tiktok', 'linkedin', 'whatsapp', 'other')),
    CONSTRAINT trackings_ad_url CHECK (ad_url ~ '^https?://[^\s]+$' AND length(ad_url) <= 2048),
    CONSTRAINT trackings_text_sizes CHECK (length(campaign) <= 200 AND length(ad_id) <= 200 AND length(click_id) <= 500
        AND length(utm_source) <= 200 AND length(utm_medium) <= 200 AND length(utm_campaign) <= 200
        AND length(utm_term) <= 200 AND length(utm_content) <= 200),
    CONSTRAINT trackings_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
);
CREATE UNIQUE INDEX trackings_unique_click ON ventros.trackings (tenant_id, click_id) WHERE click_id IS NOT NULL AND deleted_at IS NULL;
CREATE INDEX trackings_by_contact ON ventros.trackings (tenant_id, contact_id, created_at);
CREATE INDEX trackings_by_campaign ON ventros.trackings (tenant_id, source, campaign) WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.trackings IS 'Tracking: ad and campaign attribution of a contact';

CREATE TABLE ventros.tracking_enrichments (
    id               uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id        text        NOT NULL,
    version          integer     NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz,
    tracking_id      uuid        NOT NULL,
    source           text        NOT NULL,
    ad_account_id    text,
    ad_account_name  text,
    campaign_id      text,
    campaign_name    text,
    adset_id         text,
    adset_name       text,
    ad_id            text,
    ad_name          text,
    ad_creative_id   text,
    creative_type    text,
    creative_format  text,
    creative_body    text,
    creative_title   text,
    creative_url     text,
    targeting_data   jsonb,
    audience_name    text,
    impressions      bigint,
    clicks           bigint,
    spend            numeric,
    ctr              numeric,
    cpc              numeric,
    raw_api_data     jsonb,
    enriched_at      timestamptz NOT NULL DEFAULT now(),
    enrichment_type  text        NOT NULL DEFAULT 'automatic',
    api_version      text,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, tracking_id) REFERENCES ventros.trackings (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT tracking_enrichments_creative_type CHECK (creative_type IN ('image', 'video', 'carousel', 'collection')),
    CONSTRAINT tracking_enrichments_creative_format CHECK (creative_format IN ('stories', 'feed', 'reels')),
    CONSTRAINT tracking_enrichments_type_known CHECK (enrichment_type IN ('automatic', 'manual', 'scheduled')),
    CONSTRAINT tracking_enrichments_metrics CHECK (impressions >= 0 AND clicks >= 0 AND spend >= 0 AND ctr >= 0 AND cpc >= 0)
);
CREATE UNIQUE INDEX tracking_enrichments_one ON ventros.tracking_enrichments (tenant_id, tracking_id) WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.tracking_enrichments IS 'Ad-platform data of a tracking (1:1)';

SELECT ventros.register_aggregate('tracking', 'ventros.trackings', 'crm',
    redacted_columns => '{conversion_data}', description => 'Ad and campaign attribution of a contact');
SELECT ventros.register_aggregate('tracking_enrichment', 'ventros.tracking_enrichments', 'crm',
    redacted_columns => '{raw_api_data}', description => 'Ad-platform data of a tracking (child of tracking)');
SELECT ventros.register_event_type('tracking.enriched', 'A tracking was enriched with ad-platform data.');
SELECT ventros.register_event_type('contact.ad_conversion_tracked', 'A contact arrived from an ad (click-to-message referral).');

CREATE FUNCTION ventros.tracking_enums() RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT '{
        "sources": ["meta_ads", "google_ads", "tiktok_ads", "linkedin", "organic", "direct", "referral", "other"],
        "platforms": ["instagram", "facebook", "google", "tiktok", "linkedin", "whatsapp", "other"],
        "utm_platforms": {"mkt-direto": {"sources": ["email", "sms", "whatsapp"], "mediums": ["direct", "crm"]},
                          "meta": {"sources": ["facebook", "instagram", "messenger", "whatsapp"], "mediums": ["cpc", "paid_social", "social"]},
                          "google": {"sources": ["google", "youtube"], "mediums": ["cpc", "display", "video"]},
                          "tiktok": {"sources": ["tiktok"], "mediums": ["cpc", "paid_social"]},
                          "linkedin": {"sources": ["linkedin"], "mediums": ["cpc", "paid_social"]},
                          "offline": {"sources": ["event", "print", "radio", "tv"], "mediums": ["offline"]},
                          "other": {"sources": [], "mediums": []}},
        "creative_types": ["image", "video", "carousel", "collection"],
        "creative_formats": ["stories", "feed", "reels"],
        "enrichment_types": ["automatic", "manual", "scheduled"]
    }'::jsonb
$$;
COMMENT ON FUNCTION ventros.tracking_enums() IS 'The tracking catalogue: sources, platforms, UTM platforms with their sources and mediums, creative kinds';

CREATE FUNCTION ventros.create_tracking(contact_id uuid, source text, platform text, campaign text DEFAULT NULL,
                                        ad_id text DEFAULT NULL, ad_url text DEFAULT NULL, click_id text DEFAULT NULL,
                                        utm jsonb DEFAULT '{}', session_id uuid DEFAULT NULL,
                                        conversion_data text DEFAULT NULL, metadata jsonb DEFAULT '{}')
RETURNS ventros.trackings
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c ventros.contacts := ventros.get_contact(contact_id);
    result ventros.trackings;
BEGIN
    PERFORM ventros.require_value(source, ARRAY(SELECT jsonb_array_elements_text(ventros.tracking_enums()->'sources')), 'tracking source');
    PERFORM ventros.require_value(platform, ARRAY(SELECT jsonb_array_elements_text(ventros.tracking_enums()->'platforms')), 'tracking platform');
    PERFORM ventros.require_json(utm, 'object', 'utm parameters');
    INSERT INTO ventros.trackings (contact_id, session_id, project_id, source, platform, campaign, ad_id, ad_url, click_id,
                                   conversion_data, utm_source, utm_medium, utm_campaign, utm_term, utm_content, metadata)
    VALUES (contact_id, session_id, c.project_id, source, platform, campaign, ad_id, ad_url, click_id,
            CASE WHEN conversion_data IS NOT NULL THEN ventros.encrypt_secret(conversion_data) END,
            utm->>'utm_source', utm->>'utm_medium', utm->>'utm_campaign', utm->>'utm_term', utm->>'utm_content',
            coalesce(ventros.require_json(metadata, 'object', 'tracking metadata'), '{}'))
    RETURNING * INTO result;
    IF source IN ('meta_ads', 'google_ads', 'tiktok_ads') THEN
        PERFORM ventros.emit('contact.ad_conversion_tracked', 'contact', contact_id,
            jsonb_build_object('tracking_id', result.id, 'source', source, 'platform', platform, 'campaign', campaign,
                               'ad_id', ad_id, 'click_id', click_id), c.version);
    END IF;
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'click id % is tracked already', click_id USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.create_tracking(uuid, text, text, text, text, text, text, jsonb, uuid, text, jsonb) IS
    'Records a contact''s attribution (click id unique, 23505); emits tracking.created and, from an ad, contact.ad_conversion_tracked';

CREATE FUNCTION ventros.update_tracking(tracking_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.trackings
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.apply_changes(NULL::ventros.trackings, 'tracking', tracking_id, expected_version, changes,
        ARRAY['session_id', 'campaign', 'ad_id', 'ad_url', 'click_id', 'utm_source', 'utm_medium', 'utm_campaign', 'utm_term',
              'utm_content', 'metadata'])
$$;
COMMENT ON FUNCTION ventros.update_tracking(uuid, integer, jsonb) IS 'Sets campaign, ad, click id, UTM, session or metadata; emits tracking.updated';

CREATE FUNCTION ventros.enrich_tracking(tracking_id uuid, source text, data jsonb, enrichment_type text DEFAULT 'automatic')
RETURNS ventros.tracking_enrichments
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t ventros.trackings;
    existing ventros.tracking_enrichments;
    result ventros.tracking_enrichments;
    unknown text;
    fields CONSTANT text[] := ARRAY['ad_account_id', 'ad_account_name', 'campaign_id', 'campaign_name', 'adset_id', 'adset_name',
        'ad_id', 'ad_name', 'ad_creative_id', 'creative_type', 'creative_format', 'creative_body', 'creative_title',
        'creative_url', 'targeting_data', 'audience_name', 'impressions', 'clicks', 'spend', 'ctr', 'cpc', 'raw_api_data',
        'api_version'];
BEGIN
    SELECT * INTO t FROM ventros.trackings x WHERE x.tenant_id = ventros.require_tenant() AND x.id = tracking_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('tracking', tracking_id);
    END IF;
    PERFORM ventros.require_json(data, 'object', 'enrichment data');
    SELECT k INTO unknown FROM jsonb_object_keys(coalesce(data, '{}')) k WHERE NOT k = ANY (fields) LIMIT 1;
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION 'unknown tracking enrichment field "%"', left(unknown, 64)
            USING ERRCODE = '22023', HINT = format('Fields: %s.', array_to_string(fields, ', '));
    END IF;
    SELECT * INTO existing FROM ventros.tracking_enrichments e WHERE e.tenant_id = t.tenant_id AND e.tracking_id = t.id;
    IF existing.id IS NULL THEN
        EXECUTE format('INSERT INTO ventros.tracking_enrichments (tracking_id, source, enrichment_type, %s) '
                       'SELECT $1, $2, $3, %s FROM jsonb_populate_record(NULL::ventros.tracking_enrichments, $4) r RETURNING *',
                       (SELECT string_agg(format('%I', f), ', ') FROM unnest(fields) f),
                       (SELECT string_agg(format('r.%I', f), ', ') FROM unnest(fields) f))
            INTO result USING t.id, source, coalesce(enrichment_type, 'automatic'), coalesce(data, '{}');
    ELSE
        result := ventros.apply_changes(NULL::ventros.tracking_enrichments, 'tracking enrichment', existing.id, existing.version,
            coalesce(data, '{}') || jsonb_build_object('enriched_at', now(), 'source', source,
                                                       'enrichment_type', coalesce(enrichment_type, 'automatic')),
            fields || ARRAY['enriched_at', 'source', 'enrichment_type']);
    END IF;
    PERFORM ventros.emit('tracking.enriched', 'tracking', t.id,
        jsonb_build_object('enrichment_id', result.id, 'source', source, 'campaign_name', result.campaign_name,
                           'ad_name', result.ad_name), t.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.enrich_tracking(uuid, text, jsonb, text) IS
    'Creates or refreshes the 1:1 ad-platform data of a tracking (unknown fields: 22023); emits tracking_enrichment.created / .updated and tracking.enriched';

CREATE FUNCTION ventros.encode_tracking_code(tracking_id uuid) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT pg_catalog.chr(8288) || pg_catalog.string_agg(
               pg_catalog.chr(8203 + (d / 9)) || pg_catalog.chr(8203 + (d / 3) % 3) || pg_catalog.chr(8203 + d % 3), '' ORDER BY i)
           || pg_catalog.chr(8288)
    FROM (SELECT i, ('x' || pg_catalog.substr(pg_catalog.replace(tracking_id::text, '-', ''), i, 1))::bit(4)::integer AS d
          FROM pg_catalog.generate_series(1, 32) i) digits
$$;
COMMENT ON FUNCTION ventros.encode_tracking_code(uuid) IS
    'The invisible code of a tracking id: 96 zero-width characters between two U+2060 word joiners, appended to outbound text';

CREATE FUNCTION ventros.decode_tracking_code(text text) RETURNS uuid
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    code text := substring(text FROM chr(8288) || '([' || chr(8203) || chr(8204) || chr(8205) || ']{96})' || chr(8288));
    hex text := '';
BEGIN
    IF code IS NULL THEN
        RETURN NULL;
    END IF;
    FOR i IN 0 .. 31 LOOP
        hex := hex || to_hex((ascii(substr(code, i * 3 + 1, 1)) - 8203) * 9 + (ascii(substr(code, i * 3 + 2, 1)) - 8203) * 3
                             + (ascii(substr(code, i * 3 + 3, 1)) - 8203));
    END LOOP;
    RETURN hex::uuid;
EXCEPTION WHEN invalid_text_representation THEN
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.decode_tracking_code(text) IS 'The tracking id hidden in a text by encode_tracking_code, or NULL';

CREATE FUNCTION ventros.get_tracking(tracking_id uuid) RETURNS ventros.trackings
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.get_row(NULL::ventros.trackings, 'tracking', tracking_id) $$;
COMMENT ON FUNCTION ventros.get_tracking(uuid) IS 'A live tracking, or P0002';

CREATE FUNCTION ventros.list_trackings(contact_id uuid DEFAULT NULL, session_id uuid DEFAULT NULL, source text DEFAULT NULL,
                                       campaign text DEFAULT NULL, click_id text DEFAULT NULL,
                                       after_id uuid DEFAULT NULL, page_size integer DEFAULT 50)
RETURNS SETOF ventros.trackings
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.* FROM ventros.trackings t
    WHERE t.tenant_id = ventros.require_tenant()
      AND (list_trackings.contact_id IS NULL OR t.contact_id = list_trackings.contact_id)
      AND (list_trackings.session_id IS NULL OR t.session_id = list_trackings.session_id)
      AND (list_trackings.source IS NULL OR t.source = list_trackings.source)
      AND (list_trackings.campaign IS NULL OR t.campaign = list_trackings.campaign)
      AND (list_trackings.click_id IS NULL OR t.click_id = list_trackings.click_id)
      AND (after_id IS NULL OR t.id > after_id)
    ORDER BY t.id
    LIMIT ventros.check_page_size(page_size)
$$;
COMMENT ON FUNCTION ventros.list_trackings(uuid, uuid, text, text, text, uuid, integer) IS
    'Trackings by contact, session, source, campaign or click id; keyset paging on id';

GRANT EXECUTE ON FUNCTION ventros.tracking_enums(), ventros.encode_tracking_code(uuid), ventros.decode_tracking_code(text)
    TO ventros_viewer, ventros_anon;
GRANT EXECUTE ON FUNCTION ventros.get_tracking(uuid), ventros.list_trackings(uuid, uuid, text, text, text, uuid, integer) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.encrypt_secret(text) TO ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.create_tracking(uuid, text, text, text, text, text, text, jsonb, uuid, text, jsonb),
    ventros.update_tracking(uuid, integer, jsonb), ventros.enrich_tracking(uuid, text, jsonb, text)
    TO ventros_agent;

-- ---- sql/79_message_groups.sql
-- Aggregate 16, MessageGroup (CRM): a debounce batch of consecutive inbound
-- messages of one contact on one channel, handed to the AI agent as one unit
-- (agent_ai_interactions, a child aggregate).
--   pending -> processing -> completed; pending | processing -> expired.
-- Messages join only a pending group, each one pushing expires_at to its
-- time plus the channel's debounce_timeout_ms; processing starts once a
-- pending group is past expires_at.  One pending group per (contact,
-- channel) is a partial unique index; two first messages racing open one
-- group (ON CONFLICT), then both append under its row lock.

CREATE TABLE ventros.message_groups (
    id           uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id    text        NOT NULL,
    version      integer     NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz,
    contact_id   uuid        NOT NULL,
    channel_id   uuid        NOT NULL,
    session_id   uuid        NOT NULL,
    message_ids  uuid[]      NOT NULL DEFAULT '{}',
    status       text        NOT NULL DEFAULT 'pending',
    started_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES ventros.contacts (tenant_id, id),
    FOREIGN KEY (tenant_id, channel_id) REFERENCES ventros.channels (tenant_id, id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES ventros.sessions (tenant_id, id),
    CONSTRAINT message_groups_status_known CHECK (status IN ('pending', 'processing', 'completed', 'expired')),
    CONSTRAINT message_groups_ids_distinct CHECK (ventros.is_distinct_array(message_ids::text[]))
);
CREATE UNIQUE INDEX message_groups_one_pending ON ventros.message_groups (tenant_id, contact_id, channel_id)
    WHERE status = 'pending' AND deleted_at IS NULL;
CREATE INDEX message_groups_due ON ventros.message_groups (tenant_id, expires_at) WHERE status = 'pending';
CREATE INDEX message_groups_by_session ON ventros.message_groups (tenant_id, session_id);
COMMENT ON TABLE ventros.message_groups IS 'MessageGroup: a debounce batch of inbound messages for the AI agent';

CREATE TABLE ventros.agent_ai_interactions (
    id                   uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id            text        NOT NULL,
    version              integer     NOT NULL DEFAULT 1,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    deleted_at           timestamptz,
    group_id             uuid        NOT NULL,
    session_id           uuid        NOT NULL,
    contact_id           uuid        NOT NULL,
    channel_id           uuid        NOT NULL,
    concatenated_content text        NOT NULL,
    message_count        integer     NOT NULL DEFAULT 0,
    enrichment_count     integer     NOT NULL DEFAULT 0,
    sent_to_ai           boolean     NOT NULL DEFAULT false,
    ai_response          text,
    ai_provider          text,
    ai_model             text,
    processing_time_ms   integer,
    sent_at              timestamptz,
    response_received_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, group_id) REFERENCES ventros.message_groups (tenant_id, id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES ventros.sessions (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES ventros.contacts (tenant_id, id),
    FOREIGN KEY (tenant_id, channel_id) REFERENCES ventros.channels (tenant_id, id),
    CONSTRAINT agent_ai_interactions_counts CHECK (message_count >= 0 AND enrichment_count >= 0 AND processing_time_ms >= 0),
    CONSTRAINT agent_ai_interactions_sizes CHECK (length(concatenated_content) <= 65536 AND length(ai_response) <= 65536)
);
CREATE UNIQUE INDEX agent_ai_interactions_one_per_group ON ventros.agent_ai_interactions (tenant_id, group_id) WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.agent_ai_interactions IS 'The hand-off of a message group to the AI agent, and its answer';

SELECT ventros.register_aggregate('message_group', 'ventros.message_groups', 'crm',
    state_column => 'status',
    transitions => '[
        {"from": null, "to": "pending"},
        {"from": "pending", "to": "processing", "event": "message_group.processing_started", "description": "A message group was handed to processing."},
        {"from": "processing", "to": "completed", "event": "message_group.completed", "description": "A message group was processed by the AI agent."},
        {"from": "pending", "to": "expired", "event": "message_group.expired", "description": "A message group expired unprocessed."},
        {"from": "processing", "to": "expired", "event": "message_group.expired"}
    ]',
    description => 'A debounce batch of inbound messages');
SELECT ventros.register_aggregate('agent_ai_interaction', 'ventros.agent_ai_interactions', 'crm',
    description => 'The AI hand-off of a message group (child of message_group)');
SELECT ventros.register_event_type('message_group.message_added', 'An inbound message joined a pending message group.');

-- add_message_to_group: the message's pending group, opened when there is none.
CREATE FUNCTION ventros.add_message_to_group(message_id uuid)
RETURNS ventros.message_groups
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    m ventros.messages;
    debounce integer;
    due timestamptz;
    g ventros.message_groups;
BEGIN
    SELECT * INTO m FROM ventros.messages x WHERE x.tenant_id = tenant AND x.id = message_id;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('message', message_id);
    END IF;
    IF m.from_me THEN
        RAISE EXCEPTION 'message % is outbound; groups hold inbound messages', message_id USING ERRCODE = '22023';
    END IF;
    IF m.session_id IS NULL THEN
        RAISE EXCEPTION 'message % has no session', message_id USING ERRCODE = '23502';
    END IF;
    SELECT c.debounce_timeout_ms INTO debounce FROM ventros.channels c WHERE c.tenant_id = tenant AND c.id = m.channel_id;
    due := greatest(m."timestamp", now()) + make_interval(secs => debounce / 1000.0);
    INSERT INTO ventros.message_groups (contact_id, channel_id, session_id, message_ids, expires_at)
    VALUES (m.contact_id, m.channel_id, m.session_id, ARRAY[m.id], due)
    ON CONFLICT (tenant_id, contact_id, channel_id) WHERE status = 'pending' AND deleted_at IS NULL DO NOTHING
    RETURNING * INTO g;
    IF g.id IS NOT NULL THEN
        RETURN g;               -- a new group: message_group.created carries the message
    END IF;
    SELECT * INTO g FROM ventros.message_groups x
    WHERE x.tenant_id = tenant AND x.contact_id = m.contact_id AND x.channel_id = m.channel_id AND x.status = 'pending'
    FOR UPDATE;
    IF m.id = ANY (g.message_ids) THEN
        RETURN g;               -- added already: nothing happens
    END IF;
    UPDATE ventros.message_groups x SET message_ids = x.message_ids || m.id, expires_at = greatest(x.expires_at, due), version = x.version
    WHERE x.tenant_id = tenant AND x.id = g.id RETURNING * INTO g;
    PERFORM ventros.emit('message_group.message_added', 'message_group', g.id,
        jsonb_build_object('message_id', m.id, 'message_count', cardinality(g.message_ids), 'expires_at', g.expires_at), g.version);
    RETURN g;
END
$$;
COMMENT ON FUNCTION ventros.add_message_to_group(uuid) IS
    'Adds an inbound message to its contact''s pending group on the channel, opening one if needed (outbound: 22023; idempotent); emits message_group.created or message_group.updated and message_group.message_added';

CREATE FUNCTION ventros.start_message_group_processing(message_group_id uuid, expected_version integer, now timestamptz DEFAULT now())
RETURNS ventros.message_groups
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g ventros.message_groups;
BEGIN
    SELECT * INTO g FROM ventros.message_groups x WHERE x.tenant_id = ventros.require_tenant() AND x.id = message_group_id;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('message group', message_group_id);
    END IF;
    IF g.status = 'pending' AND g.expires_at > start_message_group_processing.now THEN
        RAISE EXCEPTION 'message group % is still collecting until %', message_group_id, g.expires_at USING ERRCODE = '55000';
    END IF;
    RETURN ventros.change_row(NULL::ventros.message_groups, 'message group', message_group_id, expected_version, '{"status": "processing"}');
END
$$;
COMMENT ON FUNCTION ventros.start_message_group_processing(uuid, integer, timestamptz) IS
    'Starts processing a pending group past its expires_at (55000 before); emits message_group.processing_started';

CREATE FUNCTION ventros.complete_message_group(message_group_id uuid, expected_version integer, concatenated_content text,
                                               ai_response text DEFAULT NULL, ai_provider text DEFAULT NULL,
                                               ai_model text DEFAULT NULL, processing_time_ms integer DEFAULT NULL,
                                               enrichment_count integer DEFAULT 0)
RETURNS ventros.agent_ai_interactions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g ventros.message_groups;
    result ventros.agent_ai_interactions;
BEGIN
    g := ventros.change_row(NULL::ventros.message_groups, 'message group', message_group_id, expected_version,
                            jsonb_build_object('status', 'completed', 'completed_at', now()));
    IF concatenated_content IS NULL THEN
        RAISE EXCEPTION 'concatenated content must not be null' USING ERRCODE = '23502';
    END IF;
    INSERT INTO ventros.agent_ai_interactions (group_id, session_id, contact_id, channel_id, concatenated_content, message_count,
                                               enrichment_count, sent_to_ai, ai_response, ai_provider, ai_model,
                                               processing_time_ms, sent_at, response_received_at)
    VALUES (g.id, g.session_id, g.contact_id, g.channel_id, concatenated_content, cardinality(g.message_ids),
            coalesce(enrichment_count, 0), true, ai_response, ai_provider, ai_model, processing_time_ms, now(),
            CASE WHEN ai_response IS NOT NULL THEN now() END)
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.complete_message_group(uuid, integer, text, text, text, text, integer, integer) IS
    'Completes a processing group and records its AI hand-off; emits message_group.completed and agent_ai_interaction.created';

CREATE FUNCTION ventros.expire_message_group(message_group_id uuid, expected_version integer)
RETURNS ventros.message_groups
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.change_row(NULL::ventros.message_groups, 'message group', message_group_id, expected_version, '{"status": "expired"}') $$;
COMMENT ON FUNCTION ventros.expire_message_group(uuid, integer) IS 'Expires a pending or processing group; emits message_group.expired';

CREATE FUNCTION ventros.tick_message_groups(now timestamptz DEFAULT now(), batch_size integer DEFAULT 100)
RETURNS SETOF ventros.message_groups
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT x.id, x.version FROM ventros.message_groups x
             WHERE x.tenant_id = ventros.require_tenant() AND x.status = 'pending' AND x.expires_at <= tick_message_groups.now
             ORDER BY x.expires_at LIMIT batch_size FOR UPDATE SKIP LOCKED
    LOOP
        RETURN NEXT ventros.start_message_group_processing(g.id, g.version, now);
    END LOOP;
END
$$;
COMMENT ON FUNCTION ventros.tick_message_groups(timestamptz, integer) IS
    'Moves the due pending groups to processing and returns them (SKIP LOCKED); emits message_group.processing_started for each';

CREATE FUNCTION ventros.list_message_groups(status text DEFAULT NULL, session_id uuid DEFAULT NULL, contact_id uuid DEFAULT NULL,
                                            channel_id uuid DEFAULT NULL)
RETURNS SETOF ventros.message_groups
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT g.* FROM ventros.message_groups g
    WHERE g.tenant_id = ventros.require_tenant()
      AND (list_message_groups.status IS NULL OR g.status = list_message_groups.status)
      AND (list_message_groups.session_id IS NULL OR g.session_id = list_message_groups.session_id)
      AND (list_message_groups.contact_id IS NULL OR g.contact_id = list_message_groups.contact_id)
      AND (list_message_groups.channel_id IS NULL OR g.channel_id = list_message_groups.channel_id)
    ORDER BY g.started_at, g.id
    LIMIT current_setting('ventros.max_page_size')::integer
$$;
COMMENT ON FUNCTION ventros.list_message_groups(text, uuid, uuid, uuid) IS
    'Message groups by status, session, contact and channel (the pending one of a contact on a channel)';

GRANT EXECUTE ON FUNCTION ventros.list_message_groups(text, uuid, uuid, uuid) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.add_message_to_group(uuid), ventros.start_message_group_processing(uuid, integer, timestamptz),
    ventros.complete_message_group(uuid, integer, text, text, text, text, integer, integer),
    ventros.expire_message_group(uuid, integer), ventros.tick_message_groups(timestamptz, integer)
    TO ventros_agent;

-- ---- sql/80_message_enrichments.sql
-- Aggregate 17, MessageEnrichment (CRM): text extracted from one media
-- message (transcription, OCR, document parsing), and ai_processes, generic
-- AI jobs (a child aggregate).  Both: pending -> processing -> completed |
-- failed.  Voice goes first: ventros.next_message_enrichments orders voice,
-- then audio, then the rest.

CREATE TABLE ventros.message_enrichments (
    id                 uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id          text        NOT NULL,
    version            integer     NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at         timestamptz,
    message_id         uuid        NOT NULL,
    message_group_id   uuid        NOT NULL,
    contact_id         uuid        NOT NULL,
    content_type       text        NOT NULL,
    provider           text        NOT NULL,
    media_url          text        NOT NULL,
    status             text        NOT NULL DEFAULT 'pending',
    extracted_text     text,
    metadata           jsonb,
    processing_time_ms integer,
    error              text,
    context            text        NOT NULL DEFAULT 'chat_message',
    processed_at       timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, message_id) REFERENCES ventros.messages (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, message_group_id) REFERENCES ventros.message_groups (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, contact_id) REFERENCES ventros.contacts (tenant_id, id),
    CONSTRAINT message_enrichments_content_type CHECK (content_type IN ('audio', 'voice', 'image', 'video', 'document')),
    CONSTRAINT message_enrichments_provider CHECK (provider IN ('whisper', 'deepgram', 'vision', 'llamaparse', 'ffmpeg', 'tesseract')),
    CONSTRAINT message_enrichments_status CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    CONSTRAINT message_enrichments_context CHECK (context IN ('chat_message', 'profile_picture')),
    CONSTRAINT message_enrichments_outcome CHECK ((status <> 'completed' OR extracted_text IS NOT NULL)
                                                  AND (status <> 'failed' OR error IS NOT NULL))
);
CREATE UNIQUE INDEX message_enrichments_one_per_message ON ventros.message_enrichments (tenant_id, message_id, provider)
    WHERE deleted_at IS NULL;
CREATE INDEX message_enrichments_pending ON ventros.message_enrichments (tenant_id, status, created_at)
    WHERE status IN ('pending', 'processing');
COMMENT ON TABLE ventros.message_enrichments IS 'MessageEnrichment: text extracted from a media message';

CREATE TABLE ventros.ai_processes (
    id              uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id       text        NOT NULL,
    version         integer     NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    target_type     text        NOT NULL,
    target_id       uuid        NOT NULL,
    session_id      uuid,
    contact_id      uuid,
    channel_id      uuid,
    processing_type text        NOT NULL,
    status          text        NOT NULL DEFAULT 'pending',
    provider        text,
    model           text,
    input           jsonb,
    output          jsonb,
    tokens_used     integer,
    duration_ms     integer,
    cost            numeric,
    error_message   text,
    retry_count     integer     NOT NULL DEFAULT 0,
    started_at      timestamptz,
    completed_at    timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES ventros.sessions (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES ventros.contacts (tenant_id, id),
    FOREIGN KEY (tenant_id, channel_id) REFERENCES ventros.channels (tenant_id, id),
    CONSTRAINT ai_processes_target_format CHECK (target_type ~ '^[a-z][a-z0-9_]*$'),
    CONSTRAINT ai_processes_type CHECK (processing_type IN ('transcription', 'ocr', 'sentiment', 'summary', 'profile_analysis')),
    CONSTRAINT ai_processes_status CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    CONSTRAINT ai_processes_numbers CHECK (tokens_used >= 0 AND duration_ms >= 0 AND cost >= 0 AND retry_count >= 0)
);
CREATE INDEX ai_processes_by_target ON ventros.ai_processes (tenant_id, target_type, target_id);
COMMENT ON TABLE ventros.ai_processes IS 'A generic AI job on some entity';

SELECT ventros.register_aggregate('message_enrichment', 'ventros.message_enrichments', 'crm',
    state_column => 'status',
    transitions => '[
        {"from": null, "to": "pending"},
        {"from": "pending", "to": "processing"},
        {"from": "processing", "to": "completed", "event": "message_enrichment.completed", "description": "Text was extracted from a media message."},
        {"from": "processing", "to": "failed", "event": "message_enrichment.failed", "description": "Extracting text from a media message failed."}
    ]',
    description => 'Text extracted from a media message');
SELECT ventros.register_aggregate('ai_process', 'ventros.ai_processes', 'crm',
    state_column => 'status',
    transitions => '[
        {"from": null, "to": "pending"},
        {"from": "pending", "to": "processing"},
        {"from": "processing", "to": "completed"},
        {"from": "processing", "to": "failed"},
        {"from": "failed", "to": "pending"}
    ]',
    description => 'A generic AI job (child of message_enrichment''s context)');

CREATE FUNCTION ventros.create_message_enrichment(message_id uuid, message_group_id uuid, provider text,
                                                  context text DEFAULT 'chat_message')
RETURNS ventros.message_enrichments
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m ventros.messages;
    result ventros.message_enrichments;
BEGIN
    SELECT * INTO m FROM ventros.messages x WHERE x.tenant_id = ventros.require_tenant() AND x.id = message_id;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('message', message_id);
    END IF;
    IF m.content_type NOT IN ('audio', 'voice', 'image', 'video', 'document') OR m.media_url IS NULL THEN
        RAISE EXCEPTION 'message % has no media to enrich', message_id USING ERRCODE = '22023';
    END IF;
    PERFORM ventros.require_value(provider, ARRAY['whisper', 'deepgram', 'vision', 'llamaparse', 'ffmpeg', 'tesseract'], 'enrichment provider');
    INSERT INTO ventros.message_enrichments (message_id, message_group_id, contact_id, content_type, provider, media_url, context)
    VALUES (m.id, message_group_id, m.contact_id, m.content_type, provider, m.media_url, coalesce(context, 'chat_message'))
    RETURNING * INTO result;
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'message % is enriched by % already', message_id, provider USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.create_message_enrichment(uuid, uuid, text, text) IS
    'Queues text extraction for a media message (no media: 22023); emits message_enrichment.created';

CREATE FUNCTION ventros.start_message_enrichment(message_enrichment_id uuid, expected_version integer)
RETURNS ventros.message_enrichments
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.change_row(NULL::ventros.message_enrichments, 'message enrichment', message_enrichment_id, expected_version, '{"status": "processing"}') $$;
COMMENT ON FUNCTION ventros.start_message_enrichment(uuid, integer) IS 'Marks an enrichment processing; emits message_enrichment.updated';

CREATE FUNCTION ventros.complete_message_enrichment(message_enrichment_id uuid, expected_version integer, extracted_text text,
                                                    processing_time_ms integer DEFAULT NULL, metadata jsonb DEFAULT NULL)
RETURNS ventros.message_enrichments
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.change_row(NULL::ventros.message_enrichments, 'message enrichment', message_enrichment_id, expected_version,
        jsonb_build_object('status', 'completed', 'extracted_text', extracted_text, 'processing_time_ms', processing_time_ms,
                           'metadata', metadata, 'processed_at', now()))
$$;
COMMENT ON FUNCTION ventros.complete_message_enrichment(uuid, integer, text, integer, jsonb) IS
    'Stores the extracted text (required, 23514) of a processing enrichment; emits message_enrichment.completed';

CREATE FUNCTION ventros.fail_message_enrichment(message_enrichment_id uuid, expected_version integer, error text)
RETURNS ventros.message_enrichments
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.change_row(NULL::ventros.message_enrichments, 'message enrichment', message_enrichment_id, expected_version,
        jsonb_build_object('status', 'failed', 'error', ventros.check_length(error, 2000, 'enrichment error'), 'processed_at', now()))
$$;
COMMENT ON FUNCTION ventros.fail_message_enrichment(uuid, integer, text) IS 'Records a failed extraction (error required, 23514); emits message_enrichment.failed';

CREATE FUNCTION ventros.next_message_enrichments(batch_size integer DEFAULT 10)
RETURNS SETOF ventros.message_enrichments
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT e.* FROM ventros.message_enrichments e
    WHERE e.tenant_id = ventros.require_tenant() AND e.status = 'pending'
    ORDER BY (e.content_type = 'voice') DESC, (e.content_type = 'audio') DESC, e.created_at, e.id
    LIMIT ventros.check_page_size(batch_size)
$$;
COMMENT ON FUNCTION ventros.next_message_enrichments(integer) IS 'Pending enrichments, voice first, then audio, then oldest';

CREATE FUNCTION ventros.list_message_enrichments(message_id uuid DEFAULT NULL, message_group_id uuid DEFAULT NULL,
                                                 status text DEFAULT NULL, stuck_since timestamptz DEFAULT NULL)
RETURNS SETOF ventros.message_enrichments
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT e.* FROM ventros.message_enrichments e
    WHERE e.tenant_id = ventros.require_tenant()
      AND (list_message_enrichments.message_id IS NULL OR e.message_id = list_message_enrichments.message_id)
      AND (list_message_enrichments.message_group_id IS NULL OR e.message_group_id = list_message_enrichments.message_group_id)
      AND (list_message_enrichments.status IS NULL OR e.status = list_message_enrichments.status)
      AND (stuck_since IS NULL OR (e.status = 'processing' AND e.updated_at < stuck_since))
    ORDER BY e.created_at, e.id
    LIMIT current_setting('ventros.max_page_size')::integer
$$;
COMMENT ON FUNCTION ventros.list_message_enrichments(uuid, uuid, text, timestamptz) IS
    'Enrichments by message, group or status, or those stuck in processing since a time';

CREATE FUNCTION ventros.create_ai_process(target_type text, target_id uuid, processing_type text, provider text DEFAULT NULL,
                                          model text DEFAULT NULL, input jsonb DEFAULT NULL, session_id uuid DEFAULT NULL,
                                          contact_id uuid DEFAULT NULL, channel_id uuid DEFAULT NULL)
RETURNS ventros.ai_processes
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.ai_processes;
BEGIN
    PERFORM ventros.require_value(processing_type, ARRAY['transcription', 'ocr', 'sentiment', 'summary', 'profile_analysis'], 'processing type');
    INSERT INTO ventros.ai_processes (target_type, target_id, session_id, contact_id, channel_id, processing_type, provider, model, input)
    VALUES (target_type, target_id, session_id, contact_id, channel_id, processing_type, provider, model, input)
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.create_ai_process(text, uuid, text, text, text, jsonb, uuid, uuid, uuid) IS 'Queues an AI job; emits ai_process.created';

CREATE FUNCTION ventros.finish_ai_process(ai_process_id uuid, expected_version integer, status text, output jsonb DEFAULT NULL,
                                          tokens_used integer DEFAULT NULL, cost numeric DEFAULT NULL, error_message text DEFAULT NULL)
RETURNS ventros.ai_processes
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p ventros.ai_processes;
BEGIN
    PERFORM ventros.require_value(status, ARRAY['processing', 'completed', 'failed', 'pending'], 'AI process status');
    SELECT * INTO p FROM ventros.ai_processes x WHERE x.tenant_id = ventros.require_tenant() AND x.id = ai_process_id;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('AI process', ai_process_id);
    END IF;
    RETURN ventros.change_row(NULL::ventros.ai_processes, 'AI process', ai_process_id, expected_version,
        jsonb_build_object('status', status)
        || CASE status WHEN 'processing' THEN jsonb_build_object('started_at', now())
                       WHEN 'pending' THEN jsonb_build_object('retry_count', p.retry_count + 1)
                       ELSE jsonb_build_object('completed_at', now(), 'output', output, 'tokens_used', tokens_used, 'cost', cost,
                                               'error_message', error_message,
                                               'duration_ms', (extract(epoch FROM now() - coalesce(p.started_at, now())) * 1000)::integer)
           END);
END
$$;
COMMENT ON FUNCTION ventros.finish_ai_process(uuid, integer, text, jsonb, integer, numeric, text) IS
    'Moves an AI job: processing, completed, failed, or back to pending for a retry (VN002 otherwise); emits ai_process.updated';

GRANT EXECUTE ON FUNCTION ventros.next_message_enrichments(integer),
    ventros.list_message_enrichments(uuid, uuid, text, timestamptz) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.create_message_enrichment(uuid, uuid, text, text), ventros.start_message_enrichment(uuid, integer),
    ventros.complete_message_enrichment(uuid, integer, text, integer, jsonb), ventros.fail_message_enrichment(uuid, integer, text),
    ventros.create_ai_process(text, uuid, text, text, text, jsonb, uuid, uuid, uuid),
    ventros.finish_ai_process(uuid, integer, text, jsonb, integer, numeric, text)
    TO ventros_agent;

-- ---- sql/81_automation_funnels.sql
-- Funnels of broadcasts, sequences and campaigns: sent, delivered, read and
-- replied, from summary tables kept incrementally by triggers on messages
-- (never from scans of all messages).
--
-- Automated sends carry their origin in messages.metadata (broadcast_id or
-- sequence_id; send_broadcast_batch and advance_sequence_enrollment set it).
--   sent       an automated message was inserted (statement trigger);
--   delivered  it reached delivered, read or played (row trigger on the
--              status of automated messages only);
--   read       it reached read or played;
--   replied    the recipient wrote back within 7 days of the last send
--              (each recipient counts once per origin: automation_recipients).
-- Both tables are projections (no version, no events), readable by the
-- tenant, written only by the triggers (SECURITY DEFINER).  slot spreads one
-- busy origin over a few rows, as crm_daily_stats does; readers sum it.

CREATE TABLE ventros.automation_funnel_stats (
    tenant_id   text     NOT NULL,
    origin_type text     NOT NULL CHECK (origin_type IN ('broadcast', 'sequence')),
    origin_id   uuid     NOT NULL,
    slot        smallint NOT NULL DEFAULT 0,
    sent        bigint   NOT NULL DEFAULT 0,
    delivered   bigint   NOT NULL DEFAULT 0,
    read        bigint   NOT NULL DEFAULT 0,
    replied     bigint   NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, origin_type, origin_id, slot)
);
COMMENT ON TABLE ventros.automation_funnel_stats IS
    'Funnel counters (sent, delivered, read, replied) per broadcast or sequence, kept by triggers; sum over slot';

CREATE TABLE ventros.automation_recipients (
    tenant_id   text        NOT NULL,
    origin_type text        NOT NULL CHECK (origin_type IN ('broadcast', 'sequence')),
    origin_id   uuid        NOT NULL,
    contact_id  uuid        NOT NULL,
    sent_at     timestamptz NOT NULL,
    replied_at  timestamptz,
    PRIMARY KEY (tenant_id, origin_type, origin_id, contact_id)
);
CREATE INDEX automation_recipients_awaiting ON ventros.automation_recipients (tenant_id, contact_id, sent_at)
    WHERE replied_at IS NULL;
COMMENT ON TABLE ventros.automation_recipients IS
    'Who received an automated message and whether they replied (each recipient counts once per origin)';

DO $rls$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['automation_funnel_stats', 'automation_recipients'] LOOP
        EXECUTE pg_catalog.format('ALTER TABLE ventros.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE pg_catalog.format('ALTER TABLE ventros.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE pg_catalog.format('CREATE POLICY ventros_tenant_read ON ventros.%I FOR SELECT '
                                  'USING (tenant_id = (SELECT ventros.current_tenant()))', t);
        EXECUTE pg_catalog.format('REVOKE ALL ON ventros.%I FROM PUBLIC', t);
        EXECUTE pg_catalog.format('GRANT SELECT ON ventros.%I TO ventros_viewer', t);
    END LOOP;
END
$rls$;

-- The origin of an automated message, or NULL.
CREATE FUNCTION ventros.message_origin(metadata jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN metadata ? 'broadcast_id' THEN ARRAY['broadcast', metadata->>'broadcast_id']
                WHEN metadata ? 'sequence_id' THEN ARRAY['sequence', metadata->>'sequence_id'] END
$$;
COMMENT ON FUNCTION ventros.message_origin(jsonb) IS 'The (origin_type, origin_id) an automated message carries in its metadata, or NULL';

CREATE FUNCTION ventros.funnel_count_inserts() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- sends
    INSERT INTO ventros.automation_funnel_stats AS f (tenant_id, origin_type, origin_id, slot, sent)
    SELECT m.tenant_id, o[1], o[2]::uuid, ventros.stats_slot(), count(*)
    FROM new_rows m, LATERAL (SELECT ventros.message_origin(m.metadata) AS o) x
    WHERE m.from_me AND o IS NOT NULL
    GROUP BY 1, 2, 3
    ON CONFLICT (tenant_id, origin_type, origin_id, slot) DO UPDATE SET sent = f.sent + EXCLUDED.sent;
    INSERT INTO ventros.automation_recipients AS r (tenant_id, origin_type, origin_id, contact_id, sent_at)
    SELECT DISTINCT ON (m.tenant_id, o[1], o[2], m.contact_id) m.tenant_id, o[1], o[2]::uuid, m.contact_id, m."timestamp"
    FROM new_rows m, LATERAL (SELECT ventros.message_origin(m.metadata) AS o) x
    WHERE m.from_me AND o IS NOT NULL
    ORDER BY m.tenant_id, o[1], o[2], m.contact_id, m."timestamp" DESC
    ON CONFLICT (tenant_id, origin_type, origin_id, contact_id) DO UPDATE SET sent_at = greatest(r.sent_at, EXCLUDED.sent_at);
    -- replies: an inbound message answers the sends of the last 7 days it has not answered yet
    WITH answered AS (
        UPDATE ventros.automation_recipients r SET replied_at = m."timestamp"
        FROM (SELECT tenant_id, contact_id, min("timestamp") AS "timestamp" FROM new_rows WHERE NOT from_me
              GROUP BY tenant_id, contact_id) m
        WHERE r.tenant_id = m.tenant_id AND r.contact_id = m.contact_id AND r.replied_at IS NULL
          AND r.sent_at <= m."timestamp" AND r.sent_at > m."timestamp" - interval '7 days'
        RETURNING r.tenant_id, r.origin_type, r.origin_id)
    INSERT INTO ventros.automation_funnel_stats AS f (tenant_id, origin_type, origin_id, slot, replied)
    SELECT tenant_id, origin_type, origin_id, ventros.stats_slot(), count(*) FROM answered GROUP BY 1, 2, 3
    ON CONFLICT (tenant_id, origin_type, origin_id, slot) DO UPDATE SET replied = f.replied + EXCLUDED.replied;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.funnel_count_inserts() IS
    'Statement trigger on messages: counts automated sends and the replies to them';
CREATE TRIGGER funnel_count_inserts AFTER INSERT ON ventros.messages
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ventros.funnel_count_inserts();

CREATE FUNCTION ventros.funnel_count_status() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o text[] := ventros.message_origin(NEW.metadata);
    reached_delivered boolean := NEW.status IN ('delivered', 'read', 'played') AND OLD.status IN ('queued', 'sent');
    reached_read boolean := NEW.status IN ('read', 'played') AND OLD.status IN ('queued', 'sent', 'delivered');
BEGIN
    IF reached_delivered OR reached_read THEN
        INSERT INTO ventros.automation_funnel_stats AS f (tenant_id, origin_type, origin_id, slot, delivered, read)
        VALUES (NEW.tenant_id, o[1], o[2]::uuid, ventros.stats_slot(), reached_delivered::integer, reached_read::integer)
        ON CONFLICT (tenant_id, origin_type, origin_id, slot) DO UPDATE
        SET delivered = f.delivered + EXCLUDED.delivered, read = f.read + EXCLUDED.read;
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.funnel_count_status() IS 'Row trigger on automated messages: counts deliveries and reads once each';
CREATE TRIGGER funnel_count_status AFTER UPDATE OF status ON ventros.messages
    FOR EACH ROW WHEN (NEW.from_me AND OLD.status IS DISTINCT FROM NEW.status
                       AND (NEW.metadata ? 'broadcast_id' OR NEW.metadata ? 'sequence_id'))
    EXECUTE FUNCTION ventros.funnel_count_status();

-- funnel: one origin's counters, or a campaign's (the sum over the
-- broadcasts and sequences its steps name).
CREATE FUNCTION ventros.automation_funnel(origin_type text, origin_id uuid)
RETURNS TABLE (sent bigint, delivered bigint, read bigint, replied bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(sum(f.sent), 0)::bigint, coalesce(sum(f.delivered), 0)::bigint, coalesce(sum(f.read), 0)::bigint,
           coalesce(sum(f.replied), 0)::bigint
    FROM ventros.automation_funnel_stats f
    WHERE f.tenant_id = ventros.require_tenant()
      AND ((automation_funnel.origin_type IN ('broadcast', 'sequence') AND f.origin_type = automation_funnel.origin_type
            AND f.origin_id = automation_funnel.origin_id)
           OR (automation_funnel.origin_type = 'campaign' AND (f.origin_type, f.origin_id) IN (
                SELECT s.type, (s.config->>(s.type || '_id'))::uuid FROM ventros.campaign_steps s
                WHERE s.tenant_id = ventros.require_tenant() AND s.campaign_id = automation_funnel.origin_id
                  AND s.type IN ('broadcast', 'sequence'))))
$$;
COMMENT ON FUNCTION ventros.automation_funnel(text, uuid) IS
    'Sent, delivered, read and replied of a broadcast, a sequence, or a campaign (its broadcast and sequence steps), from the summary table';

GRANT EXECUTE ON FUNCTION ventros.message_origin(jsonb), ventros.automation_funnel(text, uuid) TO ventros_viewer;

-- ---- sql/82_automation_ticks.sql
-- One tick for every tenant, for a scheduler (pg_cron, once a minute):
-- starts due campaigns and broadcasts, advances due campaign and sequence
-- enrollments, sends a rate-limited batch of each running broadcast, hands
-- due message groups to processing and expires credentials.  Each tenant
-- runs in a subtransaction, so one tenant's failure (logged as a warning)
-- neither stops nor undoes the others'.  Platform administrators only.

CREATE FUNCTION ventros.tick_automation(now timestamptz DEFAULT now())
RETURNS TABLE (tenant_id text, campaign_steps integer, sequence_steps integer, broadcast_sends integer,
               message_groups integer, credentials_expired integer, error text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- the tenant chosen inside is restored when the function returns
SET ventros.tenant = ''
AS $$
DECLARE
    t text;
BEGIN
    PERFORM ventros.require_platform_admin();
    FOR t IN SELECT DISTINCT p.tenant_id FROM ventros.projects p WHERE p.deleted_at IS NULL ORDER BY 1 LOOP
        PERFORM set_config('ventros.tenant', t, true);
        tenant_id := t;
        error := NULL;
        BEGIN
            campaign_steps := ventros.tick_campaigns(now);
            sequence_steps := ventros.tick_sequences(now);
            broadcast_sends := ventros.tick_broadcasts(now);
            message_groups := (SELECT count(*) FROM ventros.tick_message_groups(now));
            credentials_expired := ventros.expire_credentials();
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS error = MESSAGE_TEXT;
            campaign_steps := NULL; sequence_steps := NULL; broadcast_sends := NULL;
            message_groups := NULL; credentials_expired := NULL;
            RAISE WARNING 'tick of tenant % failed: %', t, error;
        END;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION ventros.tick_automation(timestamptz) IS
    'Runs every tenant''s automation ticks (campaigns, sequences, broadcasts, message groups, credential expiry), one subtransaction per tenant; platform administrators only (42501)';

GRANT EXECUTE ON FUNCTION ventros.tick_automation(timestamptz) TO ventros_platform_admin;

-- ---- sql/85_contact_privacy.sql
-- Data-subject rights for contacts: erasure of a contact's personal data
-- everywhere in one transaction (ventros.erase_contact), and a subject
-- export as one JSON document (ventros.export_contact_data).
--
-- Erasure finds the contact's data three ways:
--   1. rows that belong to the contact (every table with a contact_id or
--      other_contact_id column, found in the catalog, so tables added later
--      are covered): free-text content is blanked by per-table rules,
--      identities, custom fields and merge suggestions are removed, and
--      every remaining text, jsonb and text[] value is redacted;
--   2. the contact's distinctive values (email, phone and its digits,
--      external id, provider ids, custom-field strings) in every text, jsonb
--      and text[] column of every tenant table, outbox payloads included;
--   3. its name, in the rows of (1) and in the outbox events of those rows.
-- It runs as the extension owner (SECURITY DEFINER): the outbox has no write
-- policy and the activity log is append-only for everyone else.  It sets
-- session_replication_role = replica so that the engine does not write new
-- events carrying the old values; it bumps version and updated_at itself,
-- and writes one contact.erased event with counts only.  Every statement
-- filters by the acting tenant explicitly, because RLS does not bind the
-- owner.  Events already published to RabbitMQ cannot be recalled; consumers
-- should honour contact.erased.

SELECT ventros.register_event_type('contact.erased', 'The personal data of a contact was erased everywhere.');

-- redact_text: value with every secret replaced by [erased].
CREATE FUNCTION ventros.redact_text(value text, secrets text[]) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s text;
BEGIN
    IF value IS NULL THEN
        RETURN NULL;
    END IF;
    FOREACH s IN ARRAY secrets LOOP
        value := replace(value, s, '[erased]');
    END LOOP;
    RETURN value;
END
$$;
COMMENT ON FUNCTION ventros.redact_text(text, text[]) IS 'Replaces every occurrence of each secret in value with [erased]';

-- redact_jsonb: the same inside every string, number and key of a document.
CREATE FUNCTION ventros.redact_jsonb(value jsonb, secrets text[]) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN CASE jsonb_typeof(value)
        WHEN 'object' THEN (SELECT coalesce(jsonb_object_agg(ventros.redact_text(key, secrets), ventros.redact_jsonb(v, secrets)), '{}')
                            FROM jsonb_each(value) AS e(key, v))
        WHEN 'array' THEN (SELECT coalesce(jsonb_agg(ventros.redact_jsonb(v, secrets) ORDER BY n), '[]')
                           FROM jsonb_array_elements(value) WITH ORDINALITY AS e(v, n))
        WHEN 'string' THEN to_jsonb(ventros.redact_text(value #>> '{}', secrets))
        WHEN 'number' THEN CASE WHEN ventros.redact_text(value::text, secrets) = value::text THEN value
                                ELSE to_jsonb(ventros.redact_text(value::text, secrets)) END
        ELSE value END;
END
$$;
COMMENT ON FUNCTION ventros.redact_jsonb(jsonb, text[]) IS 'Redacts secrets in every string, number and key of a JSON document';

-- The text-bearing columns of every Ventros table that has tenant rows.
CREATE FUNCTION ventros.text_columns()
RETURNS TABLE (table_name regclass, column_name name, kind text, not_null boolean, has_contact boolean, has_other_contact boolean,
               has_version boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.oid::regclass, a.attname,
           CASE WHEN a.atttypid = 'jsonb'::regtype THEN 'jsonb' WHEN a.atttypid = 'text[]'::regtype THEN 'text[]'
                ELSE 'text' END,
           a.attnotnull,
           EXISTS (SELECT 1 FROM pg_attribute x WHERE x.attrelid = c.oid AND x.attname = 'contact_id' AND NOT x.attisdropped),
           EXISTS (SELECT 1 FROM pg_attribute x WHERE x.attrelid = c.oid AND x.attname = 'other_contact_id' AND NOT x.attisdropped),
           EXISTS (SELECT 1 FROM pg_attribute x WHERE x.attrelid = c.oid AND x.attname = 'version' AND NOT x.attisdropped)
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    WHERE n.nspname = 'ventros' AND c.relkind IN ('r', 'p')
      AND a.atttypid IN ('text'::regtype, 'varchar'::regtype, 'bpchar'::regtype, 'jsonb'::regtype, 'text[]'::regtype)
      AND a.attgenerated = ''
      AND a.attname NOT IN ('tenant_id')
      AND EXISTS (SELECT 1 FROM pg_attribute t WHERE t.attrelid = c.oid AND t.attname = 'tenant_id' AND NOT t.attisdropped)
    ORDER BY 1, 2
$$;
COMMENT ON FUNCTION ventros.text_columns() IS
    'Every text, varchar, char, jsonb and text[] column of the tenant tables of schema ventros (erasure scans these)';

-- redact_column: one column of one table, in the rows chosen by scope
-- ('tenant': every row of the tenant; 'contact': the contact's own rows;
-- 'outbox': events of the given aggregate ids).  Returns rows changed.
CREATE FUNCTION ventros.redact_column(tenant text, rel regclass, col name, kind text, has_version boolean,
                                      secrets text[], scope text, contact_id uuid, related uuid[])
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    patterns text[];
    setter text;
    filter text;
    n bigint;
BEGIN
    IF cardinality(secrets) = 0 THEN
        RETURN 0;
    END IF;
    -- LIKE patterns of each secret, plain and as JSON escapes it.
    SELECT array_agg(DISTINCT '%' || replace(replace(replace(p, '\', '\\'), '%', '\%'), '_', '\_') || '%')
    INTO patterns
    FROM unnest(secrets) s, LATERAL (VALUES (s), (substr(to_jsonb(s)::text, 2, length(to_jsonb(s)::text) - 2))) v(p);
    setter := CASE kind
        WHEN 'jsonb' THEN format('%I = ventros.redact_jsonb(%I, $2)', col, col)
        WHEN 'text[]' THEN format('%I = ARRAY(SELECT ventros.redact_text(x, $2) FROM unnest(%I) WITH ORDINALITY u(x, i) ORDER BY i)', col, col)
        ELSE format('%I = ventros.redact_text(%I, $2)', col, col) END;
    IF has_version THEN
        setter := setter || ', version = version + 1, updated_at = now()';
    END IF;
    filter := CASE scope
        WHEN 'tenant' THEN ''
        WHEN 'contact' THEN CASE WHEN rel = 'ventros.contacts'::regclass THEN ' AND id = $4'
                                 ELSE ' AND (contact_id = $4' ||
                                      CASE WHEN EXISTS (SELECT 1 FROM pg_attribute x WHERE x.attrelid = rel
                                                        AND x.attname = 'other_contact_id')
                                           THEN ' OR other_contact_id = $4)' ELSE ')' END END
        WHEN 'outbox' THEN ' AND aggregate_id = ANY ($5)' END;
    EXECUTE format('UPDATE %s SET %s WHERE tenant_id = $1%s AND %I::text LIKE ANY ($3)', rel, setter, filter, col)
        USING tenant, secrets, patterns, contact_id, related;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
EXCEPTION WHEN check_violation OR unique_violation OR not_null_violation OR invalid_text_representation THEN
    -- The redacted value breaks a rule of the column (an email or URL format):
    -- the column's value goes instead, or the row when the column is required.
    IF NOT (SELECT attnotnull FROM pg_attribute WHERE attrelid = rel AND attname = col) THEN
        EXECUTE format('UPDATE %s SET %I = NULL%s WHERE tenant_id = $1%s AND %I::text LIKE ANY ($3)', rel, col,
                       CASE WHEN has_version THEN ', version = version + 1, updated_at = now()' ELSE '' END, filter, col)
            USING tenant, secrets, patterns, contact_id, related;
    ELSE
        EXECUTE format('DELETE FROM %s WHERE tenant_id = $1%s AND %I::text LIKE ANY ($3)', rel, filter, col)
            USING tenant, secrets, patterns, contact_id, related;
    END IF;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.redact_column(text, regclass, name, text, boolean, text[], text, uuid, uuid[]) IS
    'Erasure step: redacts secrets in one column of one table for a tenant, a contact''s rows or some aggregates'' events';

-- blank_contact_content: per-table rules for the contact's free text, which
-- may hold personal data that matches no known value.  Tables of parts not
-- installed are skipped.
CREATE FUNCTION ventros.blank_contact_content(tenant text, contact_id uuid) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rule text[];
    n bigint;
    total bigint := 0;
BEGIN
    FOREACH rule SLICE 1 IN ARRAY ARRAY[
        ['ventros.messages', 'text = CASE WHEN content_type IN (''text'', ''system'') THEN ''[erased]'' END, '
                             'media_url = CASE WHEN media_url IS NOT NULL THEN ''https://erased.invalid/'' END, '
                             'metadata = NULL, mentions = ''{}'', error = NULL'],
        ['ventros.sessions', 'summary = NULL, topics = NULL, next_steps = NULL, key_entities = NULL, outcome_tags = NULL'],
        ['ventros.notes', 'content = ''[erased]'', attachments = ''{}'''],
        ['ventros.contact_events', 'title = NULL, description = NULL, payload = ''{}'', metadata = ''{}'''],
        ['ventros.event_log', 'payload = ''{}'''],
        ['ventros.trackings', 'ad_url = NULL, click_id = NULL, conversion_data = NULL, utm_term = NULL, utm_content = NULL, metadata = ''{}'''],
        ['ventros.contact_consents', 'reason = NULL'],
        ['ventros.agent_ai_interactions', 'concatenated_content = ''[erased]'', ai_response = NULL'],
        ['ventros.message_enrichments', 'extracted_text = NULL, media_url = ''https://erased.invalid/'', metadata = NULL'],
        ['ventros.broadcast_executions', 'error = NULL']]
    LOOP
        IF to_regclass(rule[1]) IS NULL THEN
            CONTINUE;
        END IF;
        BEGIN
            EXECUTE format('UPDATE %s SET %s, version = version + 1, updated_at = now() WHERE tenant_id = $1 AND contact_id = $2',
                           rule[1], rule[2]) USING tenant, contact_id;
            GET DIAGNOSTICS n = ROW_COUNT;
            total := total + n;
        EXCEPTION WHEN undefined_column OR not_null_violation OR check_violation THEN
            NULL;               -- the table's shape differs from the rule's: the value scan still covers it
        END;
    END LOOP;
    -- Identities, custom fields and merge suggestions are personal data
    -- themselves: they go.
    FOREACH rule SLICE 1 IN ARRAY ARRAY[['ventros.contact_identities', 'contact_id = $2'],
                                        ['ventros.contact_custom_fields', 'contact_id = $2'],
                                        ['ventros.contact_merge_suggestions', '(contact_id = $2 OR other_contact_id = $2)'],
                                        ['ventros.inbox', 'contact_id = $2']]
    LOOP
        IF to_regclass(rule[1]) IS NOT NULL THEN
            EXECUTE format('DELETE FROM %s WHERE tenant_id = $1 AND %s', rule[1], rule[2]) USING tenant, contact_id;
            GET DIAGNOSTICS n = ROW_COUNT;
            total := total + n;
        END IF;
    END LOOP;
    RETURN total;
END
$$;
COMMENT ON FUNCTION ventros.blank_contact_content(text, uuid) IS
    'Erasure step: blanks a contact''s messages, notes, summaries, timeline and activity payloads; removes identities, custom fields and merge suggestions';

CREATE FUNCTION ventros.erase_contact(contact_id uuid, reason text DEFAULT 'data subject request')
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET session_replication_role = replica
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    c ventros.contacts;
    distinctive text[];
    all_secrets text[];
    related uuid[] := ARRAY[contact_id];
    ids uuid[];
    t record;
    n bigint;
    blanked bigint;
    redacted bigint := 0;
    events bigint := 0;
BEGIN
    SELECT * INTO c FROM ventros.contacts x WHERE x.tenant_id = tenant AND x.id = erase_contact.contact_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('contact', contact_id);
    END IF;

    -- The contact's distinctive values; short ones would redact unrelated text.
    SELECT coalesce(array_agg(DISTINCT v ORDER BY v) FILTER (WHERE length(v) >= 5), '{}') INTO distinctive
    FROM (SELECT unnest(ARRAY[c.email, c.phone, ltrim(c.phone, '+'), c.external_id, c.profile_picture_url]) v
          UNION ALL
          SELECT unnest(ARRAY[i.value, split_part(i.value, '@', 1)]) FROM ventros.contact_identities i
          WHERE to_regclass('ventros.contact_identities') IS NOT NULL AND i.tenant_id = tenant AND i.contact_id = c.id
          UNION ALL
          SELECT f.field_value #>> '{}' FROM ventros.contact_custom_fields f
          WHERE to_regclass('ventros.contact_custom_fields') IS NOT NULL AND f.tenant_id = tenant AND f.contact_id = c.id
            AND jsonb_typeof(f.field_value) IN ('string', 'number')
          UNION ALL
          -- earlier values, from the contact's own events
          SELECT unnest(ARRAY[p->>'email', p->>'phone', ltrim(p->>'phone', '+'), p->>'external_id', p->>'profile_picture_url'])
          FROM ventros.outbox o, LATERAL (VALUES (o.payload), (o.payload->'previous'), (o.payload->'changed')) AS x(p)
          WHERE o.tenant_id = tenant AND o.aggregate_id = c.id AND o.aggregate_type = 'contact') s
    WHERE v IS NOT NULL AND v <> '[erased]';
    SELECT distinctive || coalesce(array_agg(DISTINCT v) FILTER (WHERE length(v) >= 2 AND v <> '[erased]'), '{}')
    INTO all_secrets
    FROM (SELECT c.name AS v
          UNION ALL
          SELECT p->>'name' FROM ventros.outbox o,
               LATERAL (VALUES (o.payload), (o.payload->'previous'), (o.payload->'changed')) AS x(p)
          WHERE o.tenant_id = tenant AND o.aggregate_id = c.id AND o.aggregate_type = 'contact') names;

    -- Ids of the contact's rows, whose outbox events are redacted too.
    FOR t IN SELECT DISTINCT table_name FROM ventros.text_columns() WHERE has_contact LOOP
        EXECUTE format('SELECT array_agg((to_jsonb(x)->>''id'')::uuid) FROM %s x WHERE tenant_id = $1 AND contact_id = $2', t.table_name)
            INTO ids USING tenant, c.id;
        related := related || coalesce(ids, '{}');
    END LOOP;

    blanked := ventros.blank_contact_content(tenant, c.id);

    UPDATE ventros.contacts x
    SET name = '[erased]', email = NULL, phone = NULL, external_id = NULL, timezone = NULL, tags = '{}',
        source_channel = NULL, profile_picture_url = NULL, profile_picture_fetched_at = NULL,
        deleted_at = coalesce(x.deleted_at, now()), version = x.version + 1, updated_at = now()
    WHERE x.tenant_id = tenant AND x.id = c.id;

    FOR t IN SELECT * FROM ventros.text_columns() LOOP
        IF t.table_name = 'ventros.outbox'::regclass THEN
            n := ventros.redact_column(tenant, t.table_name, t.column_name, t.kind, false, all_secrets, 'outbox', c.id, related)
               + ventros.redact_column(tenant, t.table_name, t.column_name, t.kind, false, distinctive, 'tenant', c.id, related);
            events := events + n;
        ELSE
            n := ventros.redact_column(tenant, t.table_name, t.column_name, t.kind, t.has_version, distinctive, 'tenant', c.id, related);
            IF t.has_contact OR t.table_name = 'ventros.contacts'::regclass THEN
                n := n + ventros.redact_column(tenant, t.table_name, t.column_name, t.kind, t.has_version, all_secrets,
                                               'contact', c.id, related);
            END IF;
        END IF;
        redacted := redacted + n;
    END LOOP;

    PERFORM ventros.emit('contact.erased', 'contact', c.id,
        jsonb_build_object('reason', ventros.check_length(reason, 500, 'erasure reason'), 'rows_blanked', blanked,
                           'values_redacted', redacted, 'events_redacted', events),
        c.version + 1);
    RETURN jsonb_build_object('contact_id', c.id, 'rows_blanked', blanked, 'values_redacted', redacted,
                              'events_redacted', events);
END
$$;
COMMENT ON FUNCTION ventros.erase_contact(uuid, text) IS
    'Erases a contact''s personal data in every table and in the outbox, in one transaction; the contact stays as a soft-deleted [erased] row; emits contact.erased (counts only)';

-- export_contact_data: everything Ventros holds about a contact, as one JSON
-- document: the contact, every row of every table that has a contact_id
-- (soft-deleted rows included), and the events about the contact and those
-- rows.  Runs with the caller's rights: RLS keeps it to the acting tenant.
CREATE FUNCTION ventros.export_contact_data(contact_id uuid)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET ventros.include_deleted = on
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    contact jsonb;
    doc jsonb;
    t record;
    rows jsonb;
    related uuid[] := ARRAY[contact_id];
    ids uuid[];
BEGIN
    SELECT to_jsonb(x) INTO contact FROM ventros.contacts x WHERE x.tenant_id = tenant AND x.id = export_contact_data.contact_id;
    IF contact IS NULL THEN
        PERFORM ventros.not_found('contact', contact_id);
    END IF;
    doc := jsonb_build_object('format', 'ventros.subject_export.v1', 'tenant_id', tenant, 'exported_at', now(),
                              'contact', contact);
    FOR t IN SELECT DISTINCT table_name FROM ventros.text_columns() WHERE has_contact ORDER BY 1 LOOP
        BEGIN
            EXECUTE format('SELECT jsonb_agg(to_jsonb(x) ORDER BY to_jsonb(x)->>''created_at'', to_jsonb(x)->>''id''), '
                           'array_agg((to_jsonb(x)->>''id'')::uuid) FROM %s x '
                           'WHERE x.tenant_id = $1 AND x.contact_id = $2', t.table_name)
                INTO rows, ids USING tenant, contact_id;
        EXCEPTION WHEN insufficient_privilege THEN
            CONTINUE;           -- a table the caller may not read
        END;
        IF rows IS NOT NULL THEN
            doc := doc || jsonb_build_object(split_part(t.table_name::text, '.', 2), rows);
            related := related || ids;
        END IF;
    END LOOP;
    SELECT coalesce(jsonb_agg(jsonb_build_object('seq', o.seq, 'event_type', o.event_type, 'aggregate_type', o.aggregate_type,
                                                 'aggregate_id', o.aggregate_id, 'occurred_at', o.occurred_at,
                                                 'actor', o.actor, 'payload', o.payload) ORDER BY o.seq), '[]')
    INTO rows
    FROM ventros.outbox o WHERE o.tenant_id = tenant AND o.aggregate_id = ANY (related);
    RETURN doc || jsonb_build_object('events', rows);
END
$$;
COMMENT ON FUNCTION ventros.export_contact_data(uuid) IS
    'One JSON document with a contact, its rows in every table with a contact_id (deleted ones too) and the events about them';

GRANT EXECUTE ON FUNCTION ventros.redact_text(text, text[]), ventros.redact_jsonb(jsonb, text[]), ventros.text_columns()
    TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.erase_contact(uuid, text), ventros.export_contact_data(uuid) TO ventros_admin;
REVOKE EXECUTE ON FUNCTION ventros.redact_column(text, regclass, name, text, boolean, text[], text, uuid, uuid[]),
    ventros.blank_contact_content(text, uuid) FROM PUBLIC;

-- ---- sql/86_contact_import_export.sql
-- Contact import and export as CSV.
--
-- Export: ventros.export_contacts() returns rows shaped for
--     COPY (SELECT * FROM ventros.export_contacts()) TO STDOUT WITH (FORMAT csv, HEADER)
-- and ventros.export_contacts_csv() returns the same as one CSV text (HTTP).
-- Import: all or nothing.  Every row is validated by ventros.create_contact
-- in a subtransaction; if any row fails, everything is rolled back and the
-- result lists each failing line with its SQLSTATE and message; otherwise it
-- lists each line with the new contact's id.  Two entry points:
--     SELECT * FROM ventros.import_contacts(<csv text>);          -- HTTP, psql
--     CREATE TEMP TABLE staging OF ventros.contact_import_row;   -- COPY
--     \copy staging FROM 'contacts.csv' WITH (FORMAT csv, HEADER)
--     SELECT * FROM ventros.import_contacts_from('staging');
-- Columns: name, phone, email, external_id, language, timezone, tags
-- (separated by ";") and source_channel; an export's id and created_at
-- columns are accepted and ignored, so an export imports into another tenant.

CREATE TYPE ventros.contact_import_row AS (
    name           text,
    phone          text,
    email          text,
    external_id    text,
    language       text,
    timezone       text,
    tags           text,
    source_channel text
);
COMMENT ON TYPE ventros.contact_import_row IS 'One CSV row of a contact import (tags separated by ";")';

CREATE TYPE ventros.import_result AS (
    line       integer,
    contact_id uuid,
    sqlstate   text,
    error      text
);
COMMENT ON TYPE ventros.import_result IS
    'One line of an import''s outcome: the new contact, or (when the import was refused) the line''s error';

-- parse_csv: RFC 4180 records (quoted fields, doubled quotes, newlines in
-- quotes, CRLF or LF).  line is the record's first line number.
CREATE FUNCTION ventros.parse_csv(csv text)
RETURNS TABLE (line integer, fields text[])
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pos integer := 1;
    len integer := length(csv);
    ch text;
    field text := '';
    record text[] := '{}';
    in_quotes boolean := false;
    line_no integer := 1;
    record_line integer := 1;
    quoted boolean := false;
BEGIN
    IF csv IS NULL THEN
        RETURN;
    END IF;
    WHILE pos <= len LOOP
        ch := substr(csv, pos, 1);
        IF in_quotes THEN
            IF ch = '"' THEN
                IF substr(csv, pos + 1, 1) = '"' THEN
                    field := field || '"';
                    pos := pos + 1;
                ELSE
                    in_quotes := false;
                END IF;
            ELSE
                IF ch = E'\n' THEN
                    line_no := line_no + 1;
                END IF;
                field := field || ch;
            END IF;
        ELSIF ch = '"' AND field = '' AND NOT quoted THEN
            in_quotes := true;
            quoted := true;
        ELSIF ch = ',' THEN
            record := record || CASE WHEN field = '' AND NOT quoted THEN NULL ELSE field END;
            field := '';
            quoted := false;
        ELSIF ch = E'\r' AND substr(csv, pos + 1, 1) = E'\n' THEN
            NULL;               -- the LF ends the record
        ELSIF ch = E'\n' THEN
            record := record || CASE WHEN field = '' AND NOT quoted THEN NULL ELSE field END;
            IF NOT (cardinality(record) = 1 AND record[1] IS NULL) THEN
                line := record_line;
                fields := record;
                RETURN NEXT;
            END IF;
            record := '{}';
            field := '';
            quoted := false;
            line_no := line_no + 1;
            record_line := line_no;
        ELSE
            field := field || ch;
        END IF;
        pos := pos + 1;
    END LOOP;
    IF in_quotes THEN
        RAISE EXCEPTION 'unterminated quoted field in CSV line %', record_line USING ERRCODE = '22P02';
    END IF;
    IF field <> '' OR quoted OR cardinality(record) > 0 THEN
        line := record_line;
        fields := record || CASE WHEN field = '' AND NOT quoted THEN NULL ELSE field END;
        RETURN NEXT;
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.parse_csv(text) IS 'Parses RFC 4180 CSV text into records (empty unquoted fields are NULL)';

-- import_contact_rows: the all-or-nothing core of both import entry points.
CREATE FUNCTION ventros.import_contact_rows(lines integer[], rows ventros.contact_import_row[], project_id uuid DEFAULT NULL)
RETURNS SETOF ventros.import_result
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ventros.contact_import_row;
    i integer;
    created ventros.import_result[] := '{}';
    failed ventros.import_result[] := '{}';
    c ventros.contacts;
    state text;
    message text;
    maximum CONSTANT integer := 100000;
BEGIN
    IF cardinality(rows) > maximum THEN
        RAISE EXCEPTION 'an import holds at most % rows', maximum USING ERRCODE = '54000',
            DETAIL = format('This one has %s.', cardinality(rows)), HINT = 'Split the file.';
    END IF;
    BEGIN
        FOR i IN 1 .. coalesce(cardinality(rows), 0) LOOP
            r := rows[i];
            BEGIN
                c := ventros.create_contact(r.name, phone => r.phone, email => r.email, project_id => project_id,
                                            external_id => r.external_id, source_channel => r.source_channel,
                                            language => coalesce(r.language, 'en'), timezone => r.timezone,
                                            tags => coalesce(ARRAY(SELECT btrim(t) FROM unnest(string_to_array(r.tags, ';')) t
                                                                   WHERE btrim(t) <> ''), '{}'));
                created := created || ROW(lines[i], c.id, NULL, NULL)::ventros.import_result;
            EXCEPTION WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
                failed := failed || ROW(lines[i], NULL, state, message)::ventros.import_result;
            END;
        END LOOP;
        IF cardinality(failed) > 0 THEN
            -- undo every row of this import: nothing half-imported
            RAISE EXCEPTION 'import refused' USING ERRCODE = 'VN900';
        END IF;
    EXCEPTION WHEN SQLSTATE 'VN900' THEN
        RETURN QUERY SELECT * FROM unnest(failed);
        RETURN;
    END;
    RETURN QUERY SELECT * FROM unnest(created);
END
$$;
COMMENT ON FUNCTION ventros.import_contact_rows(integer[], ventros.contact_import_row[], uuid) IS
    'Creates a contact per row, all or nothing: the new ids, or each failing line''s SQLSTATE and message with nothing written';

CREATE FUNCTION ventros.import_contacts(csv text, project_id uuid DEFAULT NULL)
RETURNS SETOF ventros.import_result
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    header text[];
    known CONSTANT text[] := ARRAY['name', 'phone', 'email', 'external_id', 'language', 'timezone', 'tags', 'source_channel'];
    ignored CONSTANT text[] := ARRAY['id', 'created_at', 'updated_at'];
    unknown text;
    lines integer[];
    rows ventros.contact_import_row[];
BEGIN
    IF csv IS NULL THEN
        RAISE EXCEPTION 'import CSV must not be null' USING ERRCODE = '23502';
    END IF;
    PERFORM ventros.check_length(csv, 64 * 1024 * 1024, 'import CSV');
    SELECT ARRAY(SELECT lower(btrim(f)) FROM unnest(p.fields) f) INTO header
    FROM ventros.parse_csv(csv) p ORDER BY p.line LIMIT 1;
    IF header IS NULL THEN
        RAISE EXCEPTION 'import CSV is empty' USING ERRCODE = '22023', HINT = 'The first line names the columns.';
    END IF;
    SELECT h INTO unknown FROM unnest(header) h WHERE h IS NULL OR NOT (h = ANY (known) OR h = ANY (ignored)) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'unknown import column "%"', coalesce(left(unknown, 64), '')
            USING ERRCODE = '22023', HINT = format('Columns: %s.', array_to_string(known, ', '));
    END IF;
    IF NOT 'name' = ANY (header) THEN
        RAISE EXCEPTION 'import CSV has no name column' USING ERRCODE = '22023';
    END IF;
    SELECT array_agg(p.line ORDER BY p.line),
           array_agg(ROW(p.fields[array_position(header, 'name')], p.fields[array_position(header, 'phone')],
                         p.fields[array_position(header, 'email')], p.fields[array_position(header, 'external_id')],
                         p.fields[array_position(header, 'language')], p.fields[array_position(header, 'timezone')],
                         p.fields[array_position(header, 'tags')], p.fields[array_position(header, 'source_channel')]
                        )::ventros.contact_import_row ORDER BY p.line)
    INTO lines, rows
    FROM ventros.parse_csv(csv) p WHERE p.line > (SELECT min(q.line) FROM ventros.parse_csv(csv) q);
    RETURN QUERY SELECT * FROM ventros.import_contact_rows(coalesce(lines, '{}'), coalesce(rows, '{}'), project_id);
END
$$;
COMMENT ON FUNCTION ventros.import_contacts(text, uuid) IS
    'Imports contacts from CSV text with a header line, all or nothing (errors per line); emits contact.created per contact';

CREATE FUNCTION ventros.import_contacts_from(staging regclass, project_id uuid DEFAULT NULL)
RETURNS SETOF ventros.import_result
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    lines integer[];
    rows ventros.contact_import_row[];
BEGIN
    IF (SELECT reloftype FROM pg_class WHERE oid = staging) IS DISTINCT FROM 'ventros.contact_import_row'::regtype THEN
        RAISE EXCEPTION 'table % is not OF ventros.contact_import_row', staging USING ERRCODE = '22023',
            HINT = 'CREATE TEMP TABLE staging OF ventros.contact_import_row, then COPY into it.';
    END IF;
    -- Line numbers count the header line, as a spreadsheet does.
    EXECUTE format('SELECT array_agg(n + 1 ORDER BY n), array_agg(r ORDER BY n) FROM '
                   '(SELECT row_number() OVER ()::integer AS n, ROW(s.*)::ventros.contact_import_row AS r FROM %s s) x',
                   staging)
        INTO lines, rows;
    RETURN QUERY SELECT * FROM ventros.import_contact_rows(coalesce(lines, '{}'), coalesce(rows, '{}'), project_id);
END
$$;
COMMENT ON FUNCTION ventros.import_contacts_from(regclass, uuid) IS
    'Imports contacts from a table OF ventros.contact_import_row filled by COPY, all or nothing (errors per line)';

CREATE FUNCTION ventros.export_contacts(project_id uuid DEFAULT NULL, tag text DEFAULT NULL)
RETURNS TABLE (id uuid, name text, phone text, email text, external_id text, language text, timezone text,
               tags text, source_channel text, created_at timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.id, c.name, c.phone, c.email, c.external_id, c.language, c.timezone, array_to_string(c.tags, ';'),
           c.source_channel, c.created_at
    FROM ventros.contacts c
    WHERE c.tenant_id = ventros.require_tenant()
      AND (export_contacts.project_id IS NULL OR c.project_id = export_contacts.project_id)
      AND (tag IS NULL OR c.tags @> ARRAY[tag])
    ORDER BY c.created_at, c.id
$$;
COMMENT ON FUNCTION ventros.export_contacts(uuid, text) IS
    'Live contacts as CSV-shaped rows for COPY (SELECT * FROM ventros.export_contacts()) TO STDOUT WITH (FORMAT csv, HEADER)';

CREATE FUNCTION ventros.csv_field(value text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN value IS NULL THEN ''
                WHEN value ~ '[",\r\n]' OR value <> pg_catalog.btrim(value) OR value = ''
                    THEN '"' || pg_catalog.replace(value, '"', '""') || '"'
                ELSE value END
$$;
COMMENT ON FUNCTION ventros.csv_field(text) IS 'One CSV field, quoted when it needs to be (NULL is empty)';

CREATE FUNCTION ventros.export_contacts_csv(project_id uuid DEFAULT NULL, tag text DEFAULT NULL)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'id,name,phone,email,external_id,language,timezone,tags,source_channel,created_at' || E'\n' ||
           coalesce(string_agg(concat_ws(',', e.id, ventros.csv_field(e.name), ventros.csv_field(e.phone),
                                         ventros.csv_field(e.email), ventros.csv_field(e.external_id),
                                         ventros.csv_field(e.language), ventros.csv_field(e.timezone),
                                         ventros.csv_field(e.tags), ventros.csv_field(e.source_channel),
                                         to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')),
                               E'\n' ORDER BY e.created_at, e.id) || E'\n', '')
    FROM ventros.export_contacts(project_id, tag) e
$$;
COMMENT ON FUNCTION ventros.export_contacts_csv(uuid, text) IS 'Live contacts as one CSV document with a header line';

GRANT USAGE ON TYPE ventros.contact_import_row, ventros.import_result TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.parse_csv(text), ventros.csv_field(text) TO ventros_viewer, ventros_anon;
GRANT EXECUTE ON FUNCTION ventros.export_contacts(uuid, text), ventros.export_contacts_csv(uuid, text) TO ventros_admin;
GRANT EXECUTE ON FUNCTION ventros.import_contact_rows(integer[], ventros.contact_import_row[], uuid),
    ventros.import_contacts(text, uuid), ventros.import_contacts_from(regclass, uuid)
    TO ventros_agent;

-- ---- sql/87_audit.sql
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

-- ---- sql/88_inbox.sql
-- The inbox: every webhook a provider (WAHA, WhatsApp Cloud, Instagram,
-- Messenger) delivers to POST /webhooks/<provider>/<channel_id>, verified and
-- stored before anything else, then turned into the domain (contacts,
-- sessions, messages, statuses) by the parsers of sql/89_inbound*.sql.
--
-- Not an aggregate: a work queue like ventros.outbox and ventros.http_requests
-- (no version, no events of its own).  The domain changes an item causes emit
-- their own events (message.created, message.read, contact.created, ...).
-- Row-level security is enabled and forced, with the tenant policies.
--
-- Invariants:
--   * one row per (tenant, channel, dedupe_key): a repeated delivery, or the
--     same item in another batch, is acknowledged and never stored twice;
--     the keys per provider are documented in docs/channels.md;
--   * a delivery is stored before it is processed, in the same transaction
--     but outside the item's subtransaction, so a failing parser never loses
--     the delivery nor changes the HTTP answer;
--   * the raw body is kept byte for byte (what was verified) on the first
--     new item of its delivery; Meta batches are split into one row per item,
--     each with its JSON and delivery_id pointing at the row holding the body.
--
-- Status:
--   received   stored, not yet processed (due at next_attempt_at)
--   processed  turned into the domain (message_id / result say what it did)
--   failed     processing raised: retried at next_attempt_at with backoff;
--              next_attempt_at NULL = given up (malformed item or attempts spent)
--   unmatched  a status/reaction/edit for a message we do not know (yet): the
--              send may not be recorded yet; retried with backoff, and made due
--              at once when a message gets that provider id
--   ignored    understood and deliberately not processed (WAHA "message"
--              events duplicate "message.any"; groups on channels that do not
--              allow them; status@broadcast; late receipts change nothing)
--   unparsed   an event we store but do not parse (call.*, label.*, unknown)
--   foreign    addressed to another business number/account/session than the
--              channel's (WhatsApp phone_number_id, Instagram/Page id, WAHA
--              session): stored, never processed

CREATE TABLE ventros.inbox (
    tenant_id       text        NOT NULL,
    id              uuid        NOT NULL DEFAULT gen_random_uuid(),
    channel_id      uuid        NOT NULL,
    provider        text        NOT NULL,
    event           text        NOT NULL,
    dedupe_key      text        NOT NULL,
    delivery_id     uuid        NOT NULL,
    item_index      integer     NOT NULL DEFAULT 0,
    body            bytea,
    item            jsonb,
    headers         jsonb       NOT NULL DEFAULT '{}',
    ref_id          text,
    status          text        NOT NULL DEFAULT 'received',
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text,
    next_attempt_at timestamptz,
    received_at     timestamptz NOT NULL DEFAULT now(),
    processed_at    timestamptz,
    message_id      uuid,
    contact_id      uuid,
    result          jsonb,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, channel_id) REFERENCES ventros.channels (tenant_id, id),
    CONSTRAINT inbox_unique_dedupe_key UNIQUE (tenant_id, channel_id, dedupe_key),
    CONSTRAINT inbox_provider_known CHECK (provider IN ('waha', 'whatsapp', 'instagram', 'messenger')),
    CONSTRAINT inbox_status_known CHECK (status IN ('received', 'processed', 'failed', 'unmatched', 'ignored',
                                                    'unparsed', 'foreign')),
    CONSTRAINT inbox_dedupe_key_size CHECK (length(dedupe_key) BETWEEN 1 AND 1024),
    CONSTRAINT inbox_event_size CHECK (length(event) BETWEEN 1 AND 200),
    CONSTRAINT inbox_headers_object CHECK (jsonb_typeof(headers) = 'object'),
    CONSTRAINT inbox_attempts_positive CHECK (attempts >= 0)
);
-- process_inbox's claim: due rows that may still change.
CREATE INDEX inbox_due ON ventros.inbox (next_attempt_at)
    WHERE status IN ('received', 'failed', 'unmatched') AND next_attempt_at IS NOT NULL;
-- A message getting a provider id makes the receipts waiting for it due.
-- Stored items wake the inbox processor when their transaction commits
-- (only when ventros.inbox_processing is deferred: inline items are done).
CREATE FUNCTION ventros.inbox_wake() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'ventros_inbox_wake';
COMMENT ON FUNCTION ventros.inbox_wake() IS
    'Statement trigger: wakes the inbox processor when the transaction commits (deferred processing)';
CREATE TRIGGER ventros_inbox_wake AFTER INSERT ON ventros.inbox
    FOR EACH STATEMENT EXECUTE FUNCTION ventros.inbox_wake();
CREATE INDEX inbox_unmatched ON ventros.inbox (tenant_id, channel_id, ref_id) WHERE status = 'unmatched';
CREATE INDEX inbox_by_channel ON ventros.inbox (tenant_id, channel_id, received_at);
CREATE INDEX inbox_by_contact ON ventros.inbox (tenant_id, contact_id) WHERE contact_id IS NOT NULL;
COMMENT ON TABLE ventros.inbox IS
    'Inbound webhook items: verified, stored idempotently per (channel, dedupe key), then processed into the domain';
COMMENT ON COLUMN ventros.inbox.provider IS 'waha, whatsapp (Meta Cloud API), instagram or messenger';
COMMENT ON COLUMN ventros.inbox.event IS
    'The item''s kind: WAHA event name (message.any, message.ack, ...), or for Meta messages, statuses, message, message_echo, read, delivery, reaction, ...';
COMMENT ON COLUMN ventros.inbox.dedupe_key IS
    'Idempotency key of the item on its channel (msg:<id>, ack:<id>:<n>, st:<id>:<status>, ...; see docs/channels.md)';
COMMENT ON COLUMN ventros.inbox.delivery_id IS 'The inbox row holding the raw body of the delivery this item came in (itself for the first)';
COMMENT ON COLUMN ventros.inbox.item_index IS 'Position of the item in its delivery (Meta batches)';
COMMENT ON COLUMN ventros.inbox.body IS 'The raw request body, byte for byte as verified; on the delivery''s first stored item only';
COMMENT ON COLUMN ventros.inbox.item IS
    'The item as JSON: the whole document (WAHA), or one message/status/messaging event with its entry context (Meta)';
COMMENT ON COLUMN ventros.inbox.headers IS 'Request headers worth keeping (never tokens nor keys)';
COMMENT ON COLUMN ventros.inbox.ref_id IS 'The provider message id the item refers to (acks, statuses, reactions, edits, deletions)';
COMMENT ON COLUMN ventros.inbox.status IS 'received, processed, failed, unmatched, ignored, unparsed or foreign';
COMMENT ON COLUMN ventros.inbox.attempts IS 'Processing attempts so far';
COMMENT ON COLUMN ventros.inbox.next_attempt_at IS 'When ventros.process_inbox takes the row (again); NULL: never';
COMMENT ON COLUMN ventros.inbox.message_id IS 'The message the item created or changed';
COMMENT ON COLUMN ventros.inbox.contact_id IS 'The contact the item concerned (erasure deletes the contact''s inbox rows)';
COMMENT ON COLUMN ventros.inbox.result IS 'What processing did or why it did nothing';

ALTER TABLE ventros.inbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.inbox FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_select ON ventros.inbox FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
CREATE POLICY ventros_tenant_insert ON ventros.inbox FOR INSERT
    WITH CHECK (tenant_id = (SELECT ventros.current_tenant()));
CREATE POLICY ventros_tenant_update ON ventros.inbox FOR UPDATE
    USING (tenant_id = (SELECT ventros.current_tenant()))
    WITH CHECK (tenant_id = (SELECT ventros.current_tenant()));
CREATE POLICY ventros_tenant_delete ON ventros.inbox FOR DELETE
    USING (tenant_id = (SELECT ventros.current_tenant()));
-- Raw bodies carry personal data: tenant administrators only.
GRANT SELECT ON ventros.inbox TO ventros_admin;

-- Rejected signatures per channel: a counter, not an aggregate (an attacker
-- must not be able to fill the outbox with events by posting garbage).
CREATE TABLE ventros.channel_webhook_rejections (
    tenant_id        text        NOT NULL,
    channel_id       uuid        NOT NULL,
    rejected         bigint      NOT NULL DEFAULT 0,
    last_rejected_at timestamptz,
    last_reason      text,
    PRIMARY KEY (tenant_id, channel_id),
    FOREIGN KEY (tenant_id, channel_id) REFERENCES ventros.channels (tenant_id, id)
);
COMMENT ON TABLE ventros.channel_webhook_rejections IS
    'Webhook deliveries refused with 401 (signature or token missing or wrong), counted per channel';
COMMENT ON COLUMN ventros.channel_webhook_rejections.last_reason IS
    'Why the last one was refused (missing_signature, invalid_signature, bad_algorithm, invalid_token)';
ALTER TABLE ventros.channel_webhook_rejections ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.channel_webhook_rejections FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_select ON ventros.channel_webhook_rejections FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.channel_webhook_rejections TO ventros_viewer;

-- ---- verification ----------------------------------------------------------

CREATE FUNCTION ventros.timing_safe_equal(a bytea, b bytea) RETURNS boolean
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'ventros_timing_safe_equal';
COMMENT ON FUNCTION ventros.timing_safe_equal(bytea, bytea) IS
    'Equality of two byte strings in time independent of where they differ (signature and token checks)';

-- pgcrypto's hmac(), reached through its schema whatever it is.
DO $pgcrypto$
DECLARE
    s text := (SELECT n.nspname FROM pg_catalog.pg_extension e
               JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pgcrypto');
BEGIN
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION ventros.webhook_hmac(body bytea, key text, algorithm text) RETURNS bytea
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp
        AS 'SELECT %1$I.hmac(body, pg_catalog.convert_to(key, ''UTF8''), algorithm)'$f$, s);
END
$pgcrypto$;
COMMENT ON FUNCTION ventros.webhook_hmac(bytea, text, text) IS
    'HMAC of a raw body with a text key (pgcrypto): sha256 for Meta, sha512 for WAHA';

-- A hex signature as bytes, or NULL when it is not hex of the expected length.
CREATE FUNCTION ventros.decode_hex_signature(value text, bytes integer) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- (no SET clause: small enough to be inlined; every name is qualified)
AS $$
    SELECT CASE WHEN value OPERATOR(pg_catalog.~) ('^[0-9a-fA-F]{' OPERATOR(pg_catalog.||) (bytes OPERATOR(pg_catalog.*) 2)
                                                    OPERATOR(pg_catalog.||) '}$')
                THEN pg_catalog.decode(pg_catalog.lower(value), 'hex') END
$$;
COMMENT ON FUNCTION ventros.decode_hex_signature(text, integer) IS
    'The bytes of a hex-encoded signature of the given length, NULL when malformed';

-- verify_webhook: NULL when the delivery is authentic for the channel, else
-- why not.  Rules (docs/channels.md):
--   Meta (whatsapp, instagram, messenger): when config.app_secret is set,
--     X-Hub-Signature-256 must be "sha256=" + hex HMAC-SHA256(app_secret, body);
--   WAHA: when config.webhook_secret is set, X-Webhook-Hmac must be hex
--     HMAC-SHA512(webhook_secret, body) and X-Webhook-Hmac-Algorithm, when
--     sent, sha512; when config.webhook_token is set, X-Ventros-Token must
--     equal it.
-- Every comparison is constant-time (ventros.timing_safe_equal); the expected
-- token is hashed with SHA-256 first so both sides have the same length and
-- the comparison reveals nothing about the token's length either.
CREATE FUNCTION ventros.verify_webhook(provider text, config jsonb, headers jsonb, body bytea) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    secret text;
    token text;
    given text;
    given_bytes bytea;
BEGIN
    IF provider IN ('whatsapp', 'instagram', 'messenger') THEN
        secret := nullif(config->>'app_secret', '');
        IF secret IS NOT NULL THEN
            given := headers->>'x-hub-signature-256';
            IF given IS NULL THEN
                RETURN 'missing_signature';
            END IF;
            given_bytes := CASE WHEN left(given, 7) = 'sha256=' THEN ventros.decode_hex_signature(substr(given, 8), 32) END;
            IF given_bytes IS NULL
               OR NOT ventros.timing_safe_equal(ventros.webhook_hmac(body, secret, 'sha256'), given_bytes) THEN
                RETURN 'invalid_signature';
            END IF;
        END IF;
        RETURN NULL;
    END IF;
    -- waha
    secret := nullif(config->>'webhook_secret', '');
    IF secret IS NOT NULL THEN
        given := headers->>'x-webhook-hmac';
        IF given IS NULL THEN
            RETURN 'missing_signature';
        END IF;
        IF lower(coalesce(headers->>'x-webhook-hmac-algorithm', 'sha512')) <> 'sha512' THEN
            RETURN 'bad_algorithm';
        END IF;
        given_bytes := ventros.decode_hex_signature(given, 64);
        IF given_bytes IS NULL
           OR NOT ventros.timing_safe_equal(ventros.webhook_hmac(body, secret, 'sha512'), given_bytes) THEN
            RETURN 'invalid_signature';
        END IF;
    END IF;
    token := nullif(config->>'webhook_token', '');
    IF token IS NOT NULL THEN
        given := headers->>'x-ventros-token';
        IF given IS NULL
           OR NOT ventros.timing_safe_equal(sha256(convert_to(token, 'UTF8')), sha256(convert_to(given, 'UTF8'))) THEN
            RETURN 'invalid_token';
        END IF;
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.verify_webhook(text, jsonb, jsonb, bytea) IS
    'NULL when a delivery''s signature/token match the channel config (Meta X-Hub-Signature-256, WAHA X-Webhook-Hmac sha512 and X-Ventros-Token), else the reason; constant-time comparisons';

-- ---- the channel of a webhook URL -----------------------------------------

-- The live channel of a provider by the id in the URL, any tenant (callers
-- are SECURITY DEFINER and run as the extension owner, who bypasses RLS).
CREATE FUNCTION ventros.webhook_channel(provider text, channel_id text) RETURNS ventros.channels
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.* FROM ventros.channels c
    WHERE c.id = CASE WHEN channel_id ~* '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$'
                      THEN channel_id::uuid END
      AND c.deleted_at IS NULL
      AND CASE provider WHEN 'waha' THEN c.type = 'waha'
                        WHEN 'whatsapp' THEN c.type IN ('whatsapp', 'whatsapp_business')
                        WHEN 'instagram' THEN c.type = 'instagram'
                        WHEN 'messenger' THEN c.type = 'messenger'
                        ELSE false END
$$;
COMMENT ON FUNCTION ventros.webhook_channel(text, text) IS
    'The live channel a webhook URL names (provider and channel type must agree), of any tenant; NULL when none';

-- ---- splitting a delivery into items ---------------------------------------

CREATE TYPE ventros.inbox_item AS (
    event      text,
    dedupe_key text,
    item       jsonb,
    ref_id     text,
    status     text,
    last_error text
);
COMMENT ON TYPE ventros.inbox_item IS 'One item of a webhook delivery, before it is stored';

CREATE FUNCTION ventros.body_sha256(data bytea) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
-- (no SET clause: small enough to be inlined; every name is qualified)
AS $$ SELECT 'sha256:' OPERATOR(pg_catalog.||) pg_catalog.encode(pg_catalog.sha256(data), 'hex') $$;
COMMENT ON FUNCTION ventros.body_sha256(bytea) IS 'The fallback dedupe key of a body or item: sha256:<hex>';

CREATE FUNCTION ventros.json_sha256(item jsonb) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
-- (no SET clause: small enough to be inlined; every name is qualified)
AS $$ SELECT ventros.body_sha256(pg_catalog.convert_to(item::text, 'UTF8')) $$;
COMMENT ON FUNCTION ventros.json_sha256(jsonb) IS 'The fallback dedupe key of a JSON item: sha256:<hex of its canonical text>';

-- A string field, or NULL when absent or not a string/number.
CREATE FUNCTION ventros.json_text(doc jsonb, VARIADIC path text[]) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- (no SET clause: small enough to be inlined; every name is qualified)
AS $$
    SELECT CASE WHEN pg_catalog.jsonb_typeof(doc OPERATOR(pg_catalog.#>) path) IN ('string', 'number', 'boolean')
                THEN doc OPERATOR(pg_catalog.#>>) path END
$$;
COMMENT ON FUNCTION ventros.json_text(jsonb, text[]) IS 'A scalar at a JSON path as text; NULL for objects, arrays, null or absent';

-- WAHA: one item per delivery.
CREATE FUNCTION ventros.split_waha(config jsonb, doc jsonb, body bytea, headers jsonb)
RETURNS SETOF ventros.inbox_item
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ventros.inbox_item;
    payload jsonb := CASE WHEN jsonb_typeof(doc) = 'object' THEN doc->'payload' END;
    pid text := ventros.json_text(payload, 'id');
    fallback text := coalesce(ventros.json_text(doc, 'id'), nullif(headers->>'x-webhook-request-id', ''),
                              ventros.body_sha256(body));
BEGIN
    r.item := doc;
    r.status := 'received';
    IF jsonb_typeof(doc) IS DISTINCT FROM 'object' THEN
        r.event := 'invalid';
        r.dedupe_key := ventros.body_sha256(body);
        r.status := 'failed';
        r.last_error := '22P02: a WAHA webhook body must be a JSON object';
        RETURN NEXT r;
        RETURN;
    END IF;
    r.event := coalesce(left(ventros.json_text(doc, 'event'), 200), 'unknown');
    CASE r.event
        WHEN 'message.any' THEN
            r.dedupe_key := coalesce('msg:' || pid, fallback);
            r.ref_id := pid;    -- an echo of our own send waits for that id (unmatched)
        WHEN 'message' THEN
            -- The subset of message.any: stored, not processed.  Its own key, so
            -- it never shadows the message.any delivery of the same message.
            r.dedupe_key := coalesce('message:' || pid, fallback);
            r.status := 'ignored';
        WHEN 'message.ack' THEN
            r.dedupe_key := coalesce('ack:' || pid || ':' || ventros.json_text(payload, 'ack'), fallback);
            r.ref_id := pid;
        WHEN 'message.reaction' THEN
            r.dedupe_key := fallback;
            r.ref_id := ventros.json_text(payload, 'reaction', 'messageId');
        WHEN 'message.revoked' THEN
            r.dedupe_key := fallback;
            r.ref_id := coalesce(ventros.json_text(payload, 'revokedMessageId'), ventros.json_text(payload, 'before', 'id'));
        WHEN 'message.edited' THEN
            r.dedupe_key := fallback;
            r.ref_id := ventros.json_text(payload, 'editedMessageId');
        WHEN 'session.status' THEN
            r.dedupe_key := fallback;
        ELSE
            r.dedupe_key := fallback;
            r.status := 'unparsed';
    END CASE;
    IF nullif(config->>'session', '') IS NOT NULL AND ventros.json_text(doc, 'session') IS NOT NULL
       AND config->>'session' <> ventros.json_text(doc, 'session') THEN
        r.status := 'foreign';
    END IF;
    RETURN NEXT r;
END
$$;
COMMENT ON FUNCTION ventros.split_waha(jsonb, jsonb, bytea, jsonb) IS
    'The inbox item of a WAHA delivery: its event, dedupe key (msg:<id>, ack:<id>:<ack>, else envelope id, X-Webhook-Request-Id or sha256) and initial status';

-- WhatsApp Cloud: one item per messages[] / statuses[] element of every change.
CREATE FUNCTION ventros.split_whatsapp(config jsonb, doc jsonb, body bytea)
RETURNS SETOF ventros.inbox_item
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ventros.inbox_item;
    e jsonb;
    c jsonb;
    v jsonb;
    x jsonb;
    ctx jsonb;
    ours text := nullif(config->>'phone_number_id', '');
    foreign_item boolean;
    emitted boolean;
BEGIN
    IF jsonb_typeof(doc) IS DISTINCT FROM 'object' OR jsonb_typeof(doc->'entry') IS DISTINCT FROM 'array' THEN
        r := ROW('invalid', ventros.body_sha256(body), doc, NULL, 'failed',
                 '22P02: a WhatsApp webhook body must be an object with an entry array');
        RETURN NEXT r;
        RETURN;
    END IF;
    IF doc->>'object' IS DISTINCT FROM 'whatsapp_business_account' THEN
        r := ROW('unknown', ventros.body_sha256(body), doc, NULL, 'unparsed',
                 format('unexpected object %s', coalesce(doc->>'object', 'null')));
        RETURN NEXT r;
        RETURN;
    END IF;
    FOR e IN SELECT * FROM jsonb_array_elements(doc->'entry') LOOP
        FOR c IN SELECT * FROM jsonb_array_elements(CASE WHEN jsonb_typeof(e->'changes') = 'array' THEN e->'changes' ELSE '[]' END) LOOP
            v := c->'value';
            ctx := jsonb_build_object('object', doc->'object', 'entry_id', e->'id', 'field', c->'field',
                                      'metadata', v->'metadata');
            -- Ours unless it names another number (or, without metadata, another WABA).
            foreign_item := CASE WHEN jsonb_typeof(v->'metadata'->'phone_number_id') = 'string'
                                 THEN ours IS NOT NULL AND v->'metadata'->>'phone_number_id' <> ours
                                 ELSE nullif(config->>'waba_id', '') IS NOT NULL AND ventros.json_text(e, 'id') IS NOT NULL
                                      AND ventros.json_text(e, 'id') <> config->>'waba_id' END;
            emitted := false;
            IF c->>'field' = 'messages' AND jsonb_typeof(v) = 'object' THEN
                FOR x IN SELECT * FROM jsonb_array_elements(CASE WHEN jsonb_typeof(v->'messages') = 'array' THEN v->'messages' ELSE '[]' END) LOOP
                    r.item := ctx || jsonb_build_object('contacts', v->'contacts', 'message', x);
                    r.event := 'messages';
                    r.dedupe_key := coalesce('msg:' || ventros.json_text(x, 'id'), ventros.json_sha256(r.item));
                    r.ref_id := CASE WHEN x->>'type' = 'reaction' THEN ventros.json_text(x, 'reaction', 'message_id') END;
                    r.status := CASE WHEN foreign_item THEN 'foreign' ELSE 'received' END;
                    r.last_error := NULL;
                    RETURN NEXT r;
                    emitted := true;
                END LOOP;
                FOR x IN SELECT * FROM jsonb_array_elements(CASE WHEN jsonb_typeof(v->'statuses') = 'array' THEN v->'statuses' ELSE '[]' END) LOOP
                    r.item := ctx || jsonb_build_object('status', x);
                    r.event := 'statuses';
                    r.dedupe_key := coalesce('st:' || ventros.json_text(x, 'id') || ':' || ventros.json_text(x, 'status'),
                                             ventros.json_sha256(r.item));
                    r.ref_id := ventros.json_text(x, 'id');
                    r.status := CASE WHEN foreign_item THEN 'foreign' ELSE 'received' END;
                    r.last_error := NULL;
                    RETURN NEXT r;
                    emitted := true;
                END LOOP;
            END IF;
            IF NOT emitted THEN
                -- errors, other fields (templates, account updates, ...): stored.
                r.item := ctx || jsonb_build_object('value', v);
                r.event := left(coalesce(ventros.json_text(c, 'field'), 'unknown'), 200);
                r.dedupe_key := ventros.json_sha256(r.item);
                r.ref_id := NULL;
                r.status := CASE WHEN foreign_item THEN 'foreign' ELSE 'unparsed' END;
                r.last_error := NULL;
                RETURN NEXT r;
            END IF;
        END LOOP;
    END LOOP;
END
$$;
COMMENT ON FUNCTION ventros.split_whatsapp(jsonb, jsonb, bytea) IS
    'The inbox items of a WhatsApp Cloud delivery: one per message (msg:<wamid>) and status (st:<wamid>:<status>); other changes stored unparsed; foreign when phone_number_id is not the channel''s';

-- Instagram and Messenger: one item per entry[].messaging[] event.
CREATE FUNCTION ventros.split_meta_messaging(provider text, config jsonb, doc jsonb, body bytea)
RETURNS SETOF ventros.inbox_item
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ventros.inbox_item;
    e jsonb;
    m jsonb;
    x jsonb;
    expected_object CONSTANT text := CASE provider WHEN 'instagram' THEN 'instagram' ELSE 'page' END;
    ours text := nullif(CASE provider WHEN 'instagram' THEN config->>'ig_account_id' ELSE config->>'page_id' END, '');
    foreign_item boolean;
    sender text;
    stamp text;
BEGIN
    IF jsonb_typeof(doc) IS DISTINCT FROM 'object' OR jsonb_typeof(doc->'entry') IS DISTINCT FROM 'array' THEN
        r := ROW('invalid', ventros.body_sha256(body), doc, NULL, 'failed',
                 '22P02: a Meta webhook body must be an object with an entry array');
        RETURN NEXT r;
        RETURN;
    END IF;
    IF doc->>'object' IS DISTINCT FROM expected_object THEN
        r := ROW('unknown', ventros.body_sha256(body), doc, NULL, 'unparsed',
                 format('unexpected object %s', coalesce(doc->>'object', 'null')));
        RETURN NEXT r;
        RETURN;
    END IF;
    FOR e IN SELECT * FROM jsonb_array_elements(doc->'entry') LOOP
        foreign_item := ours IS NOT NULL AND ventros.json_text(e, 'id') IS DISTINCT FROM ours;
        FOR m IN SELECT * FROM jsonb_array_elements(CASE WHEN jsonb_typeof(e->'messaging') = 'array' THEN e->'messaging' ELSE '[]' END) LOOP
            r.item := jsonb_build_object('object', doc->'object', 'entry_id', e->'id', 'entry_time', e->'time', 'event', m);
            r.ref_id := NULL;
            r.status := 'received';
            r.last_error := NULL;
            sender := ventros.json_text(m, 'sender', 'id');
            stamp := ventros.json_text(m, 'timestamp');
            x := NULL;
            IF jsonb_typeof(m->'message') = 'object' THEN
                x := m->'message';
                r.event := CASE WHEN x->>'is_deleted' = 'true' THEN 'message_deleted'
                                WHEN x->>'is_echo' = 'true' THEN 'message_echo' ELSE 'message' END;
                -- A deletion carries the mid of the message it deletes: its own key.
                r.dedupe_key := CASE r.event WHEN 'message_deleted' THEN 'del:' ELSE 'msg:' END || ventros.json_text(x, 'mid');
                r.ref_id := ventros.json_text(x, 'mid');
            ELSIF jsonb_typeof(m->'message_edit') = 'object' THEN
                r.event := 'message_edit';
                r.dedupe_key := 'edit:' || ventros.json_text(m, 'message_edit', 'mid') || ':'
                                || coalesce(ventros.json_text(m, 'message_edit', 'num_edit'), stamp);
                r.ref_id := ventros.json_text(m, 'message_edit', 'mid');
            ELSIF jsonb_typeof(m->'read') = 'object' THEN
                r.event := 'read';
                r.dedupe_key := coalesce('read:' || ventros.json_text(m, 'read', 'mid'),
                                         'read:' || sender || ':' || ventros.json_text(m, 'read', 'watermark'));
                r.ref_id := ventros.json_text(m, 'read', 'mid');
            ELSIF jsonb_typeof(m->'delivery') = 'object' THEN
                r.event := 'delivery';
                r.dedupe_key := 'dlv:' || sender || ':' || coalesce(ventros.json_text(m, 'delivery', 'watermark'),
                                                                     ventros.json_sha256(m->'delivery'));
            ELSIF jsonb_typeof(m->'reaction') = 'object' THEN
                r.event := 'reaction';
                r.dedupe_key := 'react:' || ventros.json_text(m, 'reaction', 'mid') || ':' || sender || ':' || stamp;
                r.ref_id := ventros.json_text(m, 'reaction', 'mid');
            ELSIF jsonb_typeof(m->'postback') = 'object' THEN
                r.event := 'postback';
                r.dedupe_key := 'pb:' || coalesce(ventros.json_text(m, 'postback', 'mid'), sender || ':' || stamp);
            ELSIF jsonb_typeof(m->'referral') = 'object' THEN
                r.event := 'referral';
                r.dedupe_key := 'ref:' || sender || ':' || stamp;
            ELSE
                r.event := 'unknown';
                r.dedupe_key := NULL;
                r.status := 'unparsed';
            END IF;
            r.dedupe_key := coalesce(r.dedupe_key, ventros.json_sha256(r.item));
            IF foreign_item THEN
                r.status := 'foreign';
            END IF;
            RETURN NEXT r;
        END LOOP;
        IF jsonb_typeof(e->'changes') = 'array' THEN
            -- comments, mentions and other fields: stored unparsed.
            FOR x IN SELECT * FROM jsonb_array_elements(e->'changes') LOOP
                r.item := jsonb_build_object('object', doc->'object', 'entry_id', e->'id', 'entry_time', e->'time', 'change', x);
                r.event := left(coalesce(ventros.json_text(x, 'field'), 'unknown'), 200);
                r.dedupe_key := ventros.json_sha256(r.item);
                r.ref_id := NULL;
                r.status := CASE WHEN foreign_item THEN 'foreign' ELSE 'unparsed' END;
                r.last_error := NULL;
                RETURN NEXT r;
            END LOOP;
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION ventros.split_meta_messaging(text, jsonb, jsonb, bytea) IS
    'The inbox items of an Instagram or Messenger delivery: one per messaging event (msg:, del:, edit:, read:, dlv:, react:, pb:, ref: keys); changes stored unparsed; foreign when the entry is not the channel''s account/page';

-- The headers kept with a delivery: no tokens, keys nor cookies.
CREATE FUNCTION ventros.webhook_headers_to_keep(headers jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_object_agg(lower(h.key), left(h.value #>> '{}', 1024)), '{}')
    FROM jsonb_each(CASE WHEN jsonb_typeof(headers) = 'object' THEN headers ELSE '{}' END) h
    WHERE lower(h.key) IN ('content-type', 'user-agent', 'x-webhook-request-id', 'x-webhook-timestamp',
                           'x-webhook-hmac-algorithm', 'x-webhook-hmac', 'x-hub-signature-256', 'x-request-id',
                           'x-forwarded-for', 'x-real-ip')
      AND jsonb_typeof(h.value) = 'string'
$$;
COMMENT ON FUNCTION ventros.webhook_headers_to_keep(jsonb) IS
    'The request headers stored with a delivery (content type, user agent, request ids, signatures); tokens and keys never';

-- ---- retries ----------------------------------------------------------------

CREATE FUNCTION ventros.inbox_max_attempts() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 8 $$;
COMMENT ON FUNCTION ventros.inbox_max_attempts() IS 'Processing attempts of an inbox item before it is given up (8)';

-- 30 s, 1 min, 2 min, ... doubling, at most 1 h: 8 attempts span about 2 h.
CREATE FUNCTION ventros.inbox_backoff(attempts integer) RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- (no SET clause: small enough to be inlined; every name is qualified)
AS $$
    SELECT pg_catalog.make_interval(secs => least(30 OPERATOR(pg_catalog.*) pg_catalog.power(2, least(greatest(attempts, 1) OPERATOR(pg_catalog.-) 1, 20)), 3600))
$$;
COMMENT ON FUNCTION ventros.inbox_backoff(integer) IS
    'Delay before the next processing attempt after n attempts: 30 s doubling, at most 1 h';

-- Errors that no retry can fix: the item itself is malformed or refused.
CREATE FUNCTION ventros.inbox_error_is_permanent(sqlstate text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- (no SET clause: small enough to be inlined; every name is qualified)
AS $$ SELECT pg_catalog.left(sqlstate, 2) IN ('22', '54') OR sqlstate IN ('23502', '23514', 'VN002') $$;
COMMENT ON FUNCTION ventros.inbox_error_is_permanent(text) IS
    'Whether a processing error is the item''s own fault (data exceptions, not-null/check violations, size limits, refused transitions): no retry';

-- What processing one item did (sql/89_inbound.sql: ventros.inbox_process).
CREATE TYPE ventros.inbox_outcome AS (
    status     text,
    message_id uuid,
    contact_id uuid,
    result     jsonb
);
COMMENT ON TYPE ventros.inbox_outcome IS 'The outcome of processing an inbox item: its new status, the message and contact it concerned, details';

-- inbox_run: processes one stored item in a subtransaction and records the
-- outcome on its row.  The caller has chosen the item's tenant and holds
-- (or just inserted) the row.  Never raises for the item's own errors.
CREATE FUNCTION ventros.inbox_run(r ventros.inbox, now timestamptz) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o ventros.inbox_outcome;
    ch ventros.channels;
    state text;
    message text;
    tries integer := r.attempts + 1;
BEGIN
    BEGIN
        SELECT * INTO ch FROM ventros.channels c WHERE c.tenant_id = r.tenant_id AND c.id = r.channel_id;
        o := ventros.inbox_process(r, ch);
        UPDATE ventros.inbox i
        SET status = o.status, attempts = tries, message_id = coalesce(o.message_id, i.message_id),
            contact_id = coalesce(o.contact_id, i.contact_id), result = o.result, last_error = NULL,
            processed_at = CASE WHEN o.status <> 'unmatched' THEN now END,
            next_attempt_at = CASE WHEN o.status = 'unmatched' AND tries < ventros.inbox_max_attempts()
                                   THEN now + ventros.inbox_backoff(tries) END
        WHERE i.tenant_id = r.tenant_id AND i.id = r.id;
        RETURN o.status;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
    END;
    UPDATE ventros.inbox i
    SET status = 'failed', attempts = tries, last_error = left(state || ': ' || message, 2000),
        next_attempt_at = CASE WHEN NOT ventros.inbox_error_is_permanent(state) AND tries < ventros.inbox_max_attempts()
                               THEN now + ventros.inbox_backoff(tries) END
    WHERE i.tenant_id = r.tenant_id AND i.id = r.id;
    RETURN 'failed';
END
$$;

-- ---- entry points -------------------------------------------------------------

-- accept_webhook: what the HTTP front calls for POST /webhooks/<provider>/<id>.
-- SECURITY DEFINER: the caller is ventros_anon without a tenant; the channel
-- (found by its global id) names the tenant, chosen for this call only.
CREATE FUNCTION ventros.accept_webhook(provider text, channel_id text, headers jsonb, body bytea)
RETURNS TABLE (http_status integer, response jsonb)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- the tenant chosen inside is restored when the function returns
SET ventros.tenant = ''
AS $$
DECLARE
    ch ventros.channels;
    hdrs jsonb;
    failure text;
    doc jsonb;
    parse_error text;
    it ventros.inbox_item;
    new_id uuid;
    head uuid;
    n integer := 0;
    stored uuid[] := '{}';
    kept jsonb;
    row_ ventros.inbox;
BEGIN
    provider := lower(provider);
    ch := ventros.webhook_channel(provider, channel_id);
    IF ch.id IS NULL THEN
        RETURN QUERY SELECT 404, '{"error":"channel_not_found"}'::jsonb;
        RETURN;
    END IF;
    PERFORM set_config('ventros.tenant', ch.tenant_id, true);
    SELECT coalesce(jsonb_object_agg(lower(h.key), h.value), '{}') INTO hdrs
    FROM jsonb_each(CASE WHEN jsonb_typeof(headers) = 'object' THEN headers ELSE '{}' END) h
    WHERE jsonb_typeof(h.value) = 'string';
    body := coalesce(body, ''::bytea);

    failure := ventros.verify_webhook(provider, ch.config, hdrs, body);
    IF failure IS NOT NULL THEN
        INSERT INTO ventros.channel_webhook_rejections AS x (tenant_id, channel_id, rejected, last_rejected_at, last_reason)
        VALUES (ch.tenant_id, ch.id, 1, now(), failure)
        ON CONFLICT ON CONSTRAINT channel_webhook_rejections_pkey DO UPDATE
            SET rejected = x.rejected + 1, last_rejected_at = now(), last_reason = EXCLUDED.last_reason;
        RETURN QUERY SELECT 401, '{"error":"invalid_signature"}'::jsonb;
        RETURN;
    END IF;

    kept := ventros.webhook_headers_to_keep(hdrs);
    BEGIN
        doc := convert_from(body, 'UTF8')::jsonb;
    EXCEPTION WHEN OTHERS THEN
        parse_error := SQLERRM;
    END;
    IF parse_error IS NOT NULL OR doc IS NULL THEN
        -- Stored with its error (nothing is lost), answered 400.
        new_id := gen_random_uuid();
        INSERT INTO ventros.inbox (tenant_id, id, channel_id, provider, event, dedupe_key, delivery_id, body, headers,
                                   status, last_error)
        VALUES (ch.tenant_id, new_id, ch.id, provider, 'invalid', ventros.body_sha256(body), new_id, body, kept,
                'failed', left('22P02: body is not JSON: ' || coalesce(parse_error, 'empty'), 2000))
        ON CONFLICT ON CONSTRAINT inbox_unique_dedupe_key DO NOTHING;
        RETURN QUERY SELECT 400, '{"error":"invalid_json"}'::jsonb;
        RETURN;
    END IF;

    FOR it IN
        SELECT * FROM ventros.split_waha(ch.config, doc, body, hdrs) WHERE provider = 'waha'
        UNION ALL
        SELECT * FROM ventros.split_whatsapp(ch.config, doc, body) WHERE provider = 'whatsapp'
        UNION ALL
        SELECT * FROM ventros.split_meta_messaging(provider, ch.config, doc, body) WHERE provider IN ('instagram', 'messenger')
    LOOP
        new_id := gen_random_uuid();
        INSERT INTO ventros.inbox AS i (tenant_id, id, channel_id, provider, event, dedupe_key, delivery_id, item_index,
                                        body, item, headers, ref_id, status, last_error, next_attempt_at)
        VALUES (ch.tenant_id, new_id, ch.id, provider, it.event, left(it.dedupe_key, 1024), coalesce(head, new_id), n,
                CASE WHEN head IS NULL THEN body END, it.item, kept, it.ref_id, it.status, it.last_error,
                CASE WHEN it.status = 'received' THEN now() END)
        ON CONFLICT ON CONSTRAINT inbox_unique_dedupe_key DO NOTHING
        RETURNING i.id INTO new_id;
        n := n + 1;
        IF FOUND THEN
            head := coalesce(head, new_id);
            stored := stored || new_id;
        END IF;
    END LOOP;

    IF head IS NULL THEN
        RETURN QUERY SELECT 200, '{"status":"duplicate"}'::jsonb;
        RETURN;
    END IF;
    -- Deferred (the default): the inbox processor takes the new items right
    -- after this transaction commits (src/inbox_worker.c; the statement
    -- trigger ventros_inbox_wake wakes it).  Inline: process what is new
    -- here, each item in its own subtransaction (inbox_run).
    IF current_setting('ventros.inbox_processing') = 'inline' THEN
        FOR row_ IN SELECT * FROM ventros.inbox i
                    WHERE i.tenant_id = ch.tenant_id AND i.id = ANY (stored) AND i.status = 'received'
                    ORDER BY i.item_index LOOP
            PERFORM ventros.inbox_run(row_, now());
        END LOOP;
    END IF;
    RETURN QUERY SELECT 200, jsonb_build_object('status', 'accepted', 'inbox_id', head);
END
$$;
COMMENT ON FUNCTION ventros.accept_webhook(text, text, jsonb, bytea) IS
    'A provider webhook for a channel (any tenant: the channel names it): 404 unknown channel, 401 bad signature (counted), 400 not JSON (stored with its error), else 200 accepted (items stored idempotently; processed here when ventros.inbox_processing is inline, else by the inbox processor after commit) or duplicate';

-- webhook_challenge: Meta's GET verification handshake.
CREATE FUNCTION ventros.webhook_challenge(provider text, channel_id text, mode text, verify_token text, challenge text)
RETURNS text
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch ventros.channels;
    expected text;
BEGIN
    IF lower(provider) NOT IN ('whatsapp', 'instagram', 'messenger') THEN
        RETURN NULL;
    END IF;
    ch := ventros.webhook_channel(lower(provider), channel_id);
    expected := nullif(ch.config->>'verify_token', '');
    IF ch.id IS NULL OR expected IS NULL OR mode IS DISTINCT FROM 'subscribe' OR verify_token IS NULL
       OR challenge IS NULL OR length(challenge) > 1024 THEN
        RETURN NULL;
    END IF;
    IF NOT ventros.timing_safe_equal(sha256(convert_to(expected, 'UTF8')), sha256(convert_to(verify_token, 'UTF8'))) THEN
        RETURN NULL;
    END IF;
    RETURN challenge;
END
$$;
COMMENT ON FUNCTION ventros.webhook_challenge(text, text, text, text, text) IS
    'Meta''s verification handshake: the challenge to echo when mode is subscribe and the verify token matches the channel''s (constant-time), else NULL (answer 403)';

-- process_inbox: the retry loop, across tenants, for a scheduler (pg_cron
-- job ventros-process-inbox, sql/98_inbox_jobs.sql) or an operator.  Time is a parameter.
-- SECURITY DEFINER to read every tenant's rows; platform admins only.
CREATE FUNCTION ventros.process_inbox(batch_size integer DEFAULT 100, now timestamptz DEFAULT now())
RETURNS TABLE (status text, items integer)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET ventros.tenant = ''
AS $$
DECLARE
    r ventros.inbox;
    outcome text;
    counts jsonb := '{}';
BEGIN
    PERFORM ventros.require_platform_admin();
    FOR r IN SELECT * FROM ventros.inbox i
             WHERE i.status IN ('received', 'failed', 'unmatched') AND i.next_attempt_at <= process_inbox.now
             ORDER BY i.next_attempt_at, i.received_at, i.item_index
             LIMIT batch_size
             FOR UPDATE SKIP LOCKED LOOP
        PERFORM set_config('ventros.tenant', r.tenant_id, true);
        outcome := ventros.inbox_run(r, process_inbox.now);
        counts := jsonb_set(counts, ARRAY[outcome], to_jsonb(coalesce((counts->>outcome)::integer, 0) + 1));
    END LOOP;
    RETURN QUERY SELECT c.key, c.value::text::integer FROM jsonb_each(counts) c ORDER BY c.key;
END
$$;
COMMENT ON FUNCTION ventros.process_inbox(integer, timestamptz) IS
    'Platform admins / scheduler: processes up to batch_size due inbox items of every tenant (received, failed with retries left, unmatched), each in its own subtransaction; returns how many ended in each status';

-- reprocess_inbox_item: an administrator retries one item now (after fixing
-- a channel's configuration, or an unparsed/failed item after an upgrade).
CREATE FUNCTION ventros.reprocess_inbox_item(inbox_id uuid) RETURNS ventros.inbox
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    r ventros.inbox;
BEGIN
    IF NOT pg_has_role(current_user, 'ventros_admin', 'MEMBER') AND NOT ventros.session_is_trusted() THEN
        RAISE EXCEPTION 'only administrators reprocess inbox items' USING ERRCODE = '42501';
    END IF;
    SELECT * INTO r FROM ventros.inbox i WHERE i.tenant_id = tenant AND i.id = inbox_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'inbox item % not found', inbox_id USING ERRCODE = 'P0002';
    END IF;
    IF r.status NOT IN ('failed', 'unmatched', 'unparsed', 'received') OR r.item IS NULL THEN
        RAISE EXCEPTION 'inbox item % is %', inbox_id, r.status USING ERRCODE = '55000',
            HINT = 'Only failed, unmatched, unparsed or received items with a parsed JSON item are reprocessed.';
    END IF;
    PERFORM ventros.inbox_run(r, now());
    SELECT * INTO r FROM ventros.inbox i WHERE i.tenant_id = tenant AND i.id = inbox_id;
    RETURN r;
END
$$;
COMMENT ON FUNCTION ventros.reprocess_inbox_item(uuid) IS
    'Administrators: processes one failed, unmatched or unparsed inbox item of the acting tenant again, now; returns the row';

-- prune_inbox: retention, for a scheduler.  Finished rows only.
CREATE FUNCTION ventros.prune_inbox(received_before timestamptz, batch_size integer DEFAULT 10000)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    PERFORM ventros.require_platform_admin();
    WITH gone AS (
        DELETE FROM ventros.inbox r
         WHERE (r.tenant_id, r.id) IN (SELECT x.tenant_id, x.id FROM ventros.inbox x
                                        WHERE x.received_at < received_before
                                          AND (x.status IN ('processed', 'ignored', 'unparsed', 'foreign')
                                               OR x.next_attempt_at IS NULL)
                                        LIMIT batch_size)
        RETURNING 1)
    SELECT count(*)::integer INTO n FROM gone;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.prune_inbox(timestamptz, integer) IS
    'Platform admins: deletes up to batch_size finished inbox rows received before the given time; returns how many. Deleting a row forgets its dedupe key: keep more than the providers'' retry horizon (Meta: days)';

-- Receipts that arrived before the send recorded the provider id become due
-- as soon as a message gets that id (mark_message_sent, an echo binding it).
CREATE FUNCTION ventros.inbox_rematch() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE ventros.inbox i SET next_attempt_at = now()
    WHERE i.tenant_id = NEW.tenant_id AND i.channel_id = NEW.channel_id AND i.ref_id = NEW.channel_message_id
      AND i.status = 'unmatched';
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.inbox_rematch() IS
    'Trigger: a message got a provider id; receipts for it that were unmatched are due now';
CREATE TRIGGER messages_inbox_rematch AFTER INSERT OR UPDATE OF channel_message_id ON ventros.messages
    FOR EACH ROW WHEN (NEW.channel_message_id IS NOT NULL AND NEW.from_me)
    EXECUTE FUNCTION ventros.inbox_rematch();

GRANT EXECUTE ON FUNCTION ventros.accept_webhook(text, text, jsonb, bytea),
    ventros.webhook_challenge(text, text, text, text, text) TO ventros_anon, ventros_authenticator;
GRANT EXECUTE ON FUNCTION ventros.reprocess_inbox_item(uuid) TO ventros_admin;
GRANT EXECUTE ON FUNCTION ventros.process_inbox(integer, timestamptz), ventros.prune_inbox(timestamptz, integer)
    TO ventros_platform_admin;
GRANT EXECUTE ON FUNCTION ventros.timing_safe_equal(bytea, bytea), ventros.webhook_hmac(bytea, text, text),
    ventros.verify_webhook(text, jsonb, jsonb, bytea) TO ventros_admin;

-- ---- sql/89_inbound.sql
-- Inbound parsers: one inbox item (sql/88_inbox.sql) into the domain.
--
-- This file: the entry (inbox_process, dispatching on the provider) and the
-- helpers every provider uses; sql/89_inbound_meta.sql (WhatsApp Cloud,
-- Instagram, Messenger) and sql/89_inbound_waha.sql hold the providers.
--
-- Entry: ventros.inbox_process(item, channel) -> ventros.inbox_outcome, run by
-- ventros.inbox_run in a subtransaction as the item's tenant.  An error
-- raised here fails the item (kept on its row, retried unless the item is
-- malformed); the outcome's status is one of processed, unmatched, ignored,
-- unparsed.
--
-- What is parsed (docs/channels.md has the table):
--   WAHA       message.any (text, media, location, contact card, fromMe echo,
--              click-to-WhatsApp ad data), message.ack, message.reaction,
--              message.revoked, message.edited, session.status
--   WhatsApp   messages (text, image, audio/voice, video, document, sticker,
--              location, contacts, reaction, interactive/button replies,
--              context replies, system; referral -> tracking), statuses
--   Instagram, Messenger
--              message (text, attachments, reply_to, quick_reply, referral),
--              echo, is_deleted, message_edit, read, delivery, reaction,
--              postback, referral
-- Everything else is stored and left unparsed.
--
-- Invariants:
--   * one provider message is one message: receive_message is idempotent on
--     (channel, provider id), an echo of what we sent is matched to it (by
--     id, or by an unsent-yet message with the same text), never duplicated;
--   * statuses only move forward (queued < sent < delivered < read/played;
--     failed from queued or sent only): a late receipt changes nothing;
--   * WhatsApp ids: @s.whatsapp.net is stored as @c.us, device suffixes
--     (":3") dropped; an event carrying both the phone and the @lid form of a
--     sender links both identities to one contact.

-- ---- dispatch -----------------------------------------------------------------

CREATE FUNCTION ventros.inbox_process(r ventros.inbox, ch ventros.channels) RETURNS ventros.inbox_outcome
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF ch.id IS NULL THEN
        RAISE EXCEPTION 'channel % of inbox item % not found', r.channel_id, r.id USING ERRCODE = 'P0002';
    END IF;
    IF r.item IS NULL THEN
        RAISE EXCEPTION 'inbox item % has no parsed JSON', r.id USING ERRCODE = '22P02';
    END IF;
    RETURN CASE r.provider
        WHEN 'waha' THEN ventros.waha_process(r, ch)
        WHEN 'whatsapp' THEN CASE r.event WHEN 'messages' THEN ventros.whatsapp_message(ch, r.item)
                                          WHEN 'statuses' THEN ventros.whatsapp_status(ch, r.item)
                                          ELSE ventros.inbox_outcome('unparsed') END
        ELSE ventros.meta_messaging_process(r, ch) END;
END
$$;
COMMENT ON FUNCTION ventros.inbox_process(ventros.inbox, ventros.channels) IS
    'Turns one inbox item into the domain by provider and event; returns its outcome (processed, unmatched, ignored, unparsed) or raises';

-- ---- shared helpers -----------------------------------------------------------

-- A WhatsApp JID in its stored form: digits@c.us, digits@lid, or NULL when it
-- is neither (groups, broadcast, malformed).
CREATE FUNCTION ventros.canonical_whatsapp_id(jid text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- (no SET clause: small enough to be inlined; every name is qualified)
AS $$
    SELECT CASE
        WHEN jid OPERATOR(pg_catalog.~) '^\+?[0-9]{8,15}(:[0-9]+)?@(c\.us|s\.whatsapp\.net)$'
            THEN pg_catalog.regexp_replace(jid, '^\+?([0-9]+)(:[0-9]+)?@.*$', '\1') OPERATOR(pg_catalog.||) '@c.us'
        WHEN jid OPERATOR(pg_catalog.~) '^[0-9]{6,20}(:[0-9]+)?@lid$'
            THEN pg_catalog.regexp_replace(jid, '^([0-9]+)(:[0-9]+)?@lid$', '\1') OPERATOR(pg_catalog.||) '@lid'
        WHEN jid OPERATOR(pg_catalog.~) '^[0-9]{8,15}$' THEN jid OPERATOR(pg_catalog.||) '@c.us'
        END
$$;
COMMENT ON FUNCTION ventros.canonical_whatsapp_id(text) IS
    'The stored form of a WhatsApp id: <digits>@c.us for phone ids (from @c.us, @s.whatsapp.net or bare digits), <digits>@lid for privacy ids; NULL otherwise';

-- inbound_whatsapp_sender: the sender id to record a message under, after
-- linking the phone and @lid forms an event carries to one contact.  Locks
-- both identities (in a fixed order) so two deliveries naming the same
-- person in different forms cannot create two contacts.
CREATE FUNCTION ventros.inbound_whatsapp_sender(ch ventros.channels, jids text[], name text) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    ids text[] := ARRAY(SELECT DISTINCT ventros.canonical_whatsapp_id(j) FROM unnest(jids) j
                        WHERE ventros.canonical_whatsapp_id(j) IS NOT NULL ORDER BY 1);
    phone_id text := (SELECT i FROM unnest(ids) i WHERE i LIKE '%@c.us' LIMIT 1);
    lid_id text := (SELECT i FROM unnest(ids) i WHERE i LIKE '%@lid' LIMIT 1);
    by_phone uuid;
    by_lid uuid;
    x text;
BEGIN
    IF phone_id IS NULL AND lid_id IS NULL THEN
        RAISE EXCEPTION 'no WhatsApp sender id in %', array_to_string(jids, ', ') USING ERRCODE = '22023';
    END IF;
    IF phone_id IS NULL OR lid_id IS NULL THEN
        RETURN coalesce(phone_id, lid_id);      -- one form: receive_message upserts it
    END IF;
    FOREACH x IN ARRAY ARRAY[phone_id, lid_id] LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended(tenant || '/' || CASE WHEN x LIKE '%@lid' THEN 'whatsapp_lid' ELSE 'whatsapp' END
                                                       || '/' || x, 0));
    END LOOP;
    by_phone := ventros.find_contact_by_identity('whatsapp', phone_id);
    by_lid := ventros.find_contact_by_identity('whatsapp_lid', lid_id);
    IF by_phone IS NULL AND by_lid IS NULL THEN
        by_phone := ventros.upsert_contact_by_identity('whatsapp', phone_id, name, ch.project_id, ch.id, ch.type);
    END IF;
    IF by_phone IS NULL THEN
        PERFORM ventros.add_contact_identity(by_lid, 'whatsapp', phone_id, ch.id);
    ELSIF by_lid IS DISTINCT FROM by_phone THEN
        -- (another contact with the @lid: add_contact_identity opens a merge suggestion)
        PERFORM ventros.add_contact_identity(by_phone, 'whatsapp_lid', lid_id, ch.id);
    END IF;
    RETURN phone_id;
END
$$;
COMMENT ON FUNCTION ventros.inbound_whatsapp_sender(ventros.channels, text[], text) IS
    'Links the phone (@c.us) and privacy (@lid) ids of one WhatsApp sender to one contact (creating it if new); returns the id to record the message under';

-- The contact of a recipient/sender id on a channel (echo, referral, receipts).
CREATE FUNCTION ventros.inbound_contact(ch ventros.channels, sender text, name text DEFAULT NULL) RETURNS uuid
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.upsert_contact_by_identity(ventros.sender_identity_type(ch.type, sender), sender, name,
                                              ch.project_id, ch.id, ch.type)
$$;
COMMENT ON FUNCTION ventros.inbound_contact(ventros.channels, text, text) IS
    'The contact of a provider id on a channel, created if new';

-- A live message of the channel by provider id.
CREATE FUNCTION ventros.inbound_find_message(ch ventros.channels, provider_id text) RETURNS ventros.messages
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m.* FROM ventros.messages m
    WHERE m.tenant_id = ch.tenant_id AND m.channel_id = ch.id AND m.channel_message_id = provider_id AND m.deleted_at IS NULL
$$;
COMMENT ON FUNCTION ventros.inbound_find_message(ventros.channels, text) IS 'The live message of a channel with a provider id, if any';

CREATE FUNCTION ventros.inbox_outcome(status text, message_id uuid DEFAULT NULL, contact_id uuid DEFAULT NULL,
                                      result jsonb DEFAULT NULL) RETURNS ventros.inbox_outcome
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ROW(status, message_id, contact_id, result)::ventros.inbox_outcome $$;
COMMENT ON FUNCTION ventros.inbox_outcome(text, uuid, uuid, jsonb) IS 'Builds an inbox outcome';

CREATE FUNCTION ventros.inbound_require(value text, what text) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF value IS NULL OR value = '' THEN
        RAISE EXCEPTION 'webhook item has no %', what USING ERRCODE = '22023';
    END IF;
    RETURN value;
END
$$;
COMMENT ON FUNCTION ventros.inbound_require(text, text) IS 'A required field of a webhook item, or 22023 naming it';

-- Unix seconds or milliseconds (number or string) as a timestamp; NULL if absent.
CREATE FUNCTION ventros.inbound_time(value text) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- (no SET clause: small enough to be inlined; every name is qualified)
AS $$
    SELECT CASE WHEN value OPERATOR(pg_catalog.~) '^[0-9]{1,16}(\.[0-9]+)?$'
                THEN pg_catalog.to_timestamp(CASE WHEN value::numeric OPERATOR(pg_catalog.>) 100000000000
                                                  THEN value::numeric OPERATOR(pg_catalog./) 1000 ELSE value::numeric END::float8)
           END
$$;
COMMENT ON FUNCTION ventros.inbound_time(text) IS 'A provider timestamp (unix seconds or milliseconds) as timestamptz';

CREATE FUNCTION ventros.inbound_http_url(url text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- (no SET clause: small enough to be inlined; every name is qualified)
AS $$ SELECT CASE WHEN url OPERATOR(pg_catalog.~) '^https?://[^\s]+$' AND pg_catalog.length(url) OPERATOR(pg_catalog.<=) 2048 THEN url END $$;
COMMENT ON FUNCTION ventros.inbound_http_url(text) IS 'The URL when it is an http(s) URL a message may store, else NULL';

-- The hook for media downloads: the send helper's ventros.request_media_download
-- (a media.download dispatcher request) when installed.  A failure is noted,
-- never fatal: the message and its media URL are stored either way.
CREATE FUNCTION ventros.inbound_media_hook(m ventros.messages) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF m.media_url IS NULL OR to_regprocedure('ventros.request_media_download(uuid)') IS NULL THEN
        RETURN NULL;
    END IF;
    BEGIN
        EXECUTE 'SELECT ventros.request_media_download($1)' USING m.id;
        RETURN '{"media_download": "requested"}';
    EXCEPTION WHEN OTHERS THEN
        RETURN jsonb_build_object('media_download_error', SQLSTATE || ': ' || SQLERRM);
    END;
END
$$;
COMMENT ON FUNCTION ventros.inbound_media_hook(ventros.messages) IS
    'Asks for the download of a new inbound message''s media through ventros.request_media_download(message_id) when that function exists';

-- A reply: the message replied to, when we have it.
CREATE FUNCTION ventros.inbound_link_reply(ch ventros.channels, m ventros.messages, replied_provider_id text) RETURNS ventros.messages
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target ventros.messages;
BEGIN
    IF replied_provider_id IS NULL OR m.reply_to_id IS NOT NULL THEN
        RETURN m;
    END IF;
    target := ventros.inbound_find_message(ch, replied_provider_id);
    IF target.id IS NULL OR target.id = m.id THEN
        RETURN m;
    END IF;
    UPDATE ventros.messages x SET reply_to_id = target.id, version = m.version
    WHERE x.tenant_id = m.tenant_id AND x.id = m.id RETURNING * INTO m;
    RETURN m;
END
$$;
COMMENT ON FUNCTION ventros.inbound_link_reply(ventros.channels, ventros.messages, text) IS
    'Sets reply_to_id of a message to the message with the replied provider id, when it is known';

-- inbound_message: an inbound message (or an echo of an outbound one) with
-- what every provider parser extracted.
CREATE FUNCTION ventros.inbound_message(
    ch             ventros.channels,
    sender         text,
    from_me        boolean,
    provider_id    text,
    content_type   text,
    body           text,
    at             timestamptz,
    sender_name    text DEFAULT NULL,
    media_url      text DEFAULT NULL,
    media_mimetype text DEFAULT NULL,
    metadata       jsonb DEFAULT NULL,
    replied_id     text DEFAULT NULL)
RETURNS ventros.inbox_outcome
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m ventros.messages;
    contact uuid;
    s ventros.sessions;
    extra jsonb;
    placeholder text;
BEGIN
    provider_id := ventros.inbound_require(provider_id, 'message id');
    sender := ventros.inbound_require(sender, CASE WHEN from_me THEN 'recipient' ELSE 'sender' END);
    at := coalesce(at, now());
    body := nullif(body, '');
    -- Media without a usable URL (not downloaded by WAHA, expired, ...): the
    -- message is kept as text saying so, the media details in metadata.
    IF content_type IN ('image', 'video', 'audio', 'voice', 'document', 'sticker') AND media_url IS NULL THEN
        placeholder := '[' || content_type || ']';
        metadata := coalesce(metadata, '{}') || jsonb_build_object('media_missing', true, 'media_type', content_type);
        content_type := 'text';
        body := coalesce(body, placeholder);
    END IF;
    IF content_type = 'text' AND body IS NULL THEN
        RAISE EXCEPTION 'webhook message % has no text', provider_id USING ERRCODE = '22023';
    END IF;
    IF NOT from_me THEN
        m := ventros.receive_message(ch.id, sender, body, content_type, provider_id, at, sender_name, media_url,
                                     media_mimetype, metadata);
        m := ventros.inbound_link_reply(ch, m, replied_id);
        extra := ventros.inbound_media_hook(m);
        RETURN ventros.inbox_outcome('processed', m.id, m.contact_id, extra);
    END IF;

    -- An echo: ours (known id), ours still being sent, or sent from another device.
    m := ventros.inbound_find_message(ch, provider_id);
    IF m.id IS NOT NULL THEN
        RETURN ventros.inbox_outcome('processed', m.id, m.contact_id, '{"echo": "known"}');
    END IF;
    contact := ventros.inbound_contact(ch, sender);
    SELECT * INTO m FROM ventros.messages x
    WHERE x.tenant_id = ch.tenant_id AND x.channel_id = ch.id AND x.contact_id = contact AND x.from_me
      AND x.channel_message_id IS NULL AND x.deleted_at IS NULL AND x.status IN ('queued', 'sent')
      AND x.text IS NOT DISTINCT FROM body
      -- sent moments ago (by our clock or the provider's, whichever is earlier)
      AND x."timestamp" BETWEEN least(at, now()) - interval '10 minutes' AND greatest(at, now()) + interval '10 minutes'
    ORDER BY x."timestamp", x.id LIMIT 1
    FOR UPDATE;
    IF m.id IS NOT NULL AND m.status = 'queued' THEN
        -- Our send has not recorded its answer yet: wait for it (the id will match).
        RETURN ventros.inbox_outcome('unmatched', m.id, contact, '{"echo": "send in progress"}');
    ELSIF m.id IS NOT NULL THEN
        -- Sent, but the provider answered without an id: this echo tells it.
        UPDATE ventros.messages x SET channel_message_id = provider_id, version = m.version
        WHERE x.tenant_id = m.tenant_id AND x.id = m.id RETURNING * INTO m;
        RETURN ventros.inbox_outcome('processed', m.id, contact, '{"echo": "bound"}');
    END IF;
    s := ventros.start_or_continue_session(contact, ch.id, at);
    INSERT INTO ventros.messages ("timestamp", project_id, channel_id, channel_type_id, session_id, contact_id, from_me,
                                  content_type, text, media_url, media_mimetype, channel_message_id, status, agent_id,
                                  source, metadata)
    VALUES (at, ch.project_id, ch.id, s.channel_type_id, s.id, contact, true, content_type,
            ventros.check_length(body, 4096, 'message text'), media_url, media_mimetype, provider_id, 'sent',
            coalesce(ch.default_agent_id, ventros.system_agent_id('default')), 'manual',
            coalesce(metadata, '{}') || '{"echo": true}')
    ON CONFLICT (tenant_id, channel_id, channel_message_id) WHERE deleted_at IS NULL AND channel_message_id IS NOT NULL
    DO NOTHING
    RETURNING * INTO m;
    IF m.id IS NULL THEN
        m := ventros.inbound_find_message(ch, provider_id);
        RETURN ventros.inbox_outcome('processed', m.id, m.contact_id, '{"echo": "known"}');
    END IF;
    PERFORM ventros.record_message_effects(m, s);
    m := ventros.inbound_link_reply(ch, m, replied_id);
    RETURN ventros.inbox_outcome('processed', m.id, contact, '{"echo": "other_device"}');
EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION 'invalid webhook message: %', SQLERRM USING ERRCODE = '23514';
END
$$;
COMMENT ON FUNCTION ventros.inbound_message(ventros.channels, text, boolean, text, text, text, timestamptz, text, text, text, jsonb, text) IS
    'Records an inbound message (receive_message), or an echo of an outbound one: matched to the message we sent (by provider id; an id-less sent one with the same text gets the id; a queued one makes the echo wait, unmatched), else stored as sent from another device';

-- inbound_lock_message: inbound_find_message's row, locked for the change a
-- receipt, reaction or edit makes (all NULL: none).  Still live once locked.
CREATE FUNCTION ventros.inbound_lock_message(ch ventros.channels, provider_id text) RETURNS ventros.messages
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT x.* FROM ventros.messages x
     WHERE x.tenant_id = ch.tenant_id AND x.id = (ventros.inbound_find_message(ch, provider_id)).id AND x.deleted_at IS NULL
       FOR UPDATE
$$;
COMMENT ON FUNCTION ventros.inbound_lock_message(ventros.channels, text) IS
    'inbound_find_message, locked FOR UPDATE (a row of NULLs when there is none)';

-- inbound_status: a delivery receipt for a message of the channel.
CREATE FUNCTION ventros.inbound_status(ch ventros.channels, provider_id text, status text, error text DEFAULT NULL)
RETURNS ventros.inbox_outcome
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m ventros.messages;
    rank CONSTANT text[] := ARRAY['queued', 'sent', 'delivered', 'read', 'played'];
BEGIN
    m := ventros.inbound_lock_message(ch, ventros.inbound_require(provider_id, 'message id'));
    IF m.id IS NULL THEN
        RETURN ventros.inbox_outcome('unmatched', NULL, NULL, jsonb_build_object('status', status));
    END IF;
    IF status = 'played' AND m.content_type NOT IN ('audio', 'voice') THEN
        status := 'read';   -- a played video or image: read is what our machine knows
    END IF;
    IF m.status = status OR m.status = 'failed'
       OR (status = 'failed' AND m.status NOT IN ('queued', 'sent'))
       OR (status <> 'failed' AND array_position(rank, status) < array_position(rank, m.status)) THEN
        RETURN ventros.inbox_outcome('processed', m.id, m.contact_id,
                                     jsonb_build_object('status', status, 'applied', false, 'message_status', m.status));
    END IF;
    m := ventros.confirm_message_status(status, message_id => m.id, error => error);
    RETURN ventros.inbox_outcome('processed', m.id, m.contact_id, jsonb_build_object('status', status, 'applied', true));
END
$$;
COMMENT ON FUNCTION ventros.inbound_status(ventros.channels, text, text, text) IS
    'Applies a provider receipt to the channel''s message with that provider id (confirm_message_status); late, repeated and regressing receipts change nothing; unknown id: unmatched';

-- inbound_read_until: every outbound message of a contact on the channel up
-- to a time is read (Messenger watermarks, Instagram read of one mid).
CREATE FUNCTION ventros.inbound_read_until(ch ventros.channels, contact uuid, up_to timestamptz, new_status text DEFAULT 'read')
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m ventros.messages;
    n integer := 0;
BEGIN
    FOR m IN SELECT * FROM ventros.messages x
             WHERE x.tenant_id = ch.tenant_id AND x.channel_id = ch.id AND x.contact_id = contact AND x.from_me
               AND x.deleted_at IS NULL AND x."timestamp" <= up_to
               AND x.status IN ('sent', 'delivered') AND (new_status = 'read' OR x.status = 'sent')
             ORDER BY x."timestamp", x.id
             FOR UPDATE LOOP
        PERFORM ventros.confirm_message_status(new_status, message_id => m.id);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.inbound_read_until(ventros.channels, uuid, timestamptz, text) IS
    'Marks read (or delivered) every sent outbound message of a contact on a channel up to a time; returns how many changed';

-- inbound_reaction: a reaction (empty emoji: removed) on a message, kept in
-- its metadata.reactions as {reactor: emoji}.
CREATE FUNCTION ventros.inbound_reaction(ch ventros.channels, provider_id text, reactor text, emoji text)
RETURNS ventros.inbox_outcome
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m ventros.messages;
    reactions jsonb;
BEGIN
    m := ventros.inbound_lock_message(ch, ventros.inbound_require(provider_id, 'reacted message id'));
    reactor := ventros.inbound_require(reactor, 'reactor');
    IF m.id IS NULL THEN
        RETURN ventros.inbox_outcome('unmatched', NULL, NULL, jsonb_build_object('reaction', emoji));
    END IF;
    reactions := coalesce(m.metadata->'reactions', '{}');
    reactions := CASE WHEN coalesce(emoji, '') = '' THEN reactions - reactor
                      ELSE reactions || jsonb_build_object(reactor, left(emoji, 32)) END;
    IF reactions IS NOT DISTINCT FROM m.metadata->'reactions' OR (reactions = '{}' AND m.metadata->'reactions' IS NULL) THEN
        RETURN ventros.inbox_outcome('processed', m.id, m.contact_id, '{"applied": false}');
    END IF;
    UPDATE ventros.messages x SET metadata = coalesce(x.metadata, '{}') || jsonb_build_object('reactions', reactions),
                                  version = m.version
    WHERE x.tenant_id = m.tenant_id AND x.id = m.id;
    RETURN ventros.inbox_outcome('processed', m.id, m.contact_id, jsonb_build_object('reaction', emoji));
END
$$;
COMMENT ON FUNCTION ventros.inbound_reaction(ventros.channels, text, text, text) IS
    'Records (or removes, for an empty emoji) a reaction on a message in metadata.reactions; emits message.updated; unknown message: unmatched';

-- inbound_edit: a message's new text (the previous one kept in metadata).
CREATE FUNCTION ventros.inbound_edit(ch ventros.channels, provider_id text, new_text text, at timestamptz)
RETURNS ventros.inbox_outcome
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m ventros.messages;
BEGIN
    m := ventros.inbound_lock_message(ch, ventros.inbound_require(provider_id, 'edited message id'));
    new_text := ventros.inbound_require(new_text, 'edited text');
    IF m.id IS NULL THEN
        RETURN ventros.inbox_outcome('unmatched', NULL, NULL, '{"edit": true}');
    END IF;
    IF m.text IS NOT DISTINCT FROM new_text THEN
        RETURN ventros.inbox_outcome('processed', m.id, m.contact_id, '{"applied": false}');
    END IF;
    UPDATE ventros.messages x
    SET text = ventros.check_length(new_text, 4096, 'message text'),
        metadata = coalesce(x.metadata, '{}') || jsonb_build_object('edited_at', coalesce(at, now()), 'previous_text', m.text),
        version = m.version
    WHERE x.tenant_id = m.tenant_id AND x.id = m.id;
    RETURN ventros.inbox_outcome('processed', m.id, m.contact_id, '{"edited": true}');
END
$$;
COMMENT ON FUNCTION ventros.inbound_edit(ventros.channels, text, text, timestamptz) IS
    'Replaces a message''s text with the edited one (previous text and time kept in metadata); emits message.updated; unknown message: unmatched';

-- inbound_delete: the sender revoked/unsent a message: soft-deleted.
CREATE FUNCTION ventros.inbound_delete(ch ventros.channels, provider_id text) RETURNS ventros.inbox_outcome
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m ventros.messages;
BEGIN
    provider_id := ventros.inbound_require(provider_id, 'deleted message id');
    m := ventros.inbound_find_message(ch, provider_id);
    IF m.id IS NULL THEN
        RETURN ventros.inbox_outcome('unmatched', NULL, NULL, '{"delete": true}');
    END IF;
    PERFORM ventros.delete_message(m.id, NULL);
    RETURN ventros.inbox_outcome('processed', m.id, m.contact_id, '{"deleted": true}');
END
$$;
COMMENT ON FUNCTION ventros.inbound_delete(ventros.channels, text) IS
    'Soft-deletes the message a provider says was revoked or unsent; emits message.deleted; unknown message: unmatched';

-- inbound_tracking: ad/referral attribution of a contact.  Never fails the
-- item: a repeated click id or bad field is noted in the result instead.
CREATE FUNCTION ventros.inbound_tracking(contact uuid, session uuid, source text, platform text, ad_id text, ad_url text,
                                         click_id text, campaign text, referral jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t ventros.trackings;
BEGIN
    IF click_id IS NOT NULL THEN
        SELECT * INTO t FROM ventros.trackings x
        WHERE x.tenant_id = ventros.require_tenant() AND x.click_id = inbound_tracking.click_id AND x.deleted_at IS NULL;
        IF FOUND THEN
            RETURN jsonb_build_object('tracking_id', t.id);
        END IF;
    END IF;
    BEGIN
        t := ventros.create_tracking(contact, source, platform, campaign => left(campaign, 200), ad_id => left(ad_id, 200),
                                     ad_url => ventros.inbound_http_url(ad_url), click_id => left(click_id, 500),
                                     session_id => session, metadata => jsonb_build_object('referral', referral));
        RETURN jsonb_build_object('tracking_id', t.id);
    EXCEPTION WHEN OTHERS THEN
        RETURN jsonb_build_object('tracking_error', SQLSTATE || ': ' || SQLERRM);
    END;
END
$$;
COMMENT ON FUNCTION ventros.inbound_tracking(uuid, uuid, text, text, text, text, text, text, jsonb) IS
    'Records ad/referral attribution for a contact (create_tracking, once per click id); errors are returned, not raised';

-- The channel status a WAHA session status stands for.
CREATE FUNCTION ventros.waha_channel_status(session_status text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE session_status WHEN 'WORKING' THEN 'active' WHEN 'STARTING' THEN 'connecting'
                               WHEN 'SCAN_QR_CODE' THEN 'connecting' WHEN 'STOPPED' THEN 'inactive'
                               WHEN 'FAILED' THEN 'error' END
$$;
COMMENT ON FUNCTION ventros.waha_channel_status(text) IS
    'WAHA session status to channel status: WORKING active, STARTING and SCAN_QR_CODE connecting, STOPPED inactive, FAILED error';

-- inbound_channel_status: moves a channel towards a status through allowed
-- transitions only (directly, or through one intermediate state such as
-- activating); otherwise nothing changes.
CREATE FUNCTION ventros.inbound_channel_status(ch ventros.channels, target text) RETURNS ventros.inbox_outcome
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    via text;
    v integer;
    current_status text;
BEGIN
    IF target IS NULL THEN
        RETURN ventros.inbox_outcome('ignored', NULL, NULL, '{"reason": "unknown session status"}');
    END IF;
    SELECT c.version, c.status INTO v, current_status FROM ventros.channels c
    WHERE c.tenant_id = ch.tenant_id AND c.id = ch.id FOR UPDATE;
    IF current_status = target THEN
        RETURN ventros.inbox_outcome('processed', NULL, NULL, jsonb_build_object('channel_status', target, 'applied', false));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM ventros.aggregate_transitions t
                   WHERE t.aggregate = 'channel' AND t.from_state = current_status AND t.to_state = target) THEN
        SELECT t1.to_state INTO via FROM ventros.aggregate_transitions t1
        JOIN ventros.aggregate_transitions t2 ON t2.aggregate = 'channel' AND t2.from_state = t1.to_state AND t2.to_state = target
        WHERE t1.aggregate = 'channel' AND t1.from_state = current_status
        ORDER BY t1.to_state LIMIT 1;
        IF via IS NULL THEN
            RETURN ventros.inbox_outcome('ignored', NULL, NULL,
                jsonb_build_object('reason', 'transition not allowed', 'from', current_status, 'to', target));
        END IF;
        UPDATE ventros.channels c SET status = via, version = v WHERE c.tenant_id = ch.tenant_id AND c.id = ch.id
        RETURNING c.version INTO v;
    END IF;
    UPDATE ventros.channels c SET status = target, version = v WHERE c.tenant_id = ch.tenant_id AND c.id = ch.id;
    RETURN ventros.inbox_outcome('processed', NULL, NULL,
        jsonb_build_object('channel_status', target, 'applied', true, 'via', via));
END
$$;
COMMENT ON FUNCTION ventros.inbound_channel_status(ventros.channels, text) IS
    'Moves a channel to a status reported by its provider through allowed transitions (at most one intermediate state); ignored when no such path exists';

-- ---- sql/89_inbound_meta.sql
-- Inbound parsers for Meta's platforms (channels.md sections 2-4): WhatsApp
-- Cloud messages and statuses, Instagram and Messenger messaging events.  The
-- entry (ventros.inbox_process) and the shared helpers are in sql/89_inbound.sql.

-- ---- Meta ----------------------------------------------------------------------

-- The Graph URL of an object of the channel's API: a WhatsApp Cloud media id
-- (step 1 of the download, channels.md §2.4), a PSID or IGSID (profile).
CREATE FUNCTION ventros.graph_url(ch ventros.channels, media_id text) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN media_id ~ '^[A-Za-z0-9_.-]{1,200}$' THEN
        rtrim(coalesce(nullif(ch.config->>'graph_base_url', ''),
                       CASE ch.type WHEN 'instagram' THEN 'https://graph.instagram.com' ELSE 'https://graph.facebook.com' END), '/')
        || '/' || coalesce(nullif(ch.config->>'graph_version', ''), 'v23.0') || '/' || media_id END
$$;
COMMENT ON FUNCTION ventros.graph_url(ventros.channels, text) IS
    'The Graph URL of an object id on the channel''s API (<graph_base_url>/<graph_version>/<id>): media ids, PSIDs, IGSIDs';

CREATE FUNCTION ventros.whatsapp_message(ch ventros.channels, item jsonb) RETURNS ventros.inbox_outcome
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    x jsonb := item->'message';
    kind text := ventros.json_text(item, 'message', 'type');
    from_id text := ventros.json_text(item, 'message', 'from');
    profile jsonb;
    media jsonb;
    content text;
    body text;
    media_url text;
    meta jsonb := '{}';
    ref jsonb := x->'referral';
    o ventros.inbox_outcome;
    extra jsonb;
BEGIN
    from_id := ventros.inbound_require(from_id, 'sender (messages[].from)');
    kind := ventros.inbound_require(kind, 'message type');
    SELECT c INTO profile FROM jsonb_array_elements(CASE WHEN jsonb_typeof(item->'contacts') = 'array' THEN item->'contacts' ELSE '[]' END) c
    WHERE c->>'wa_id' = from_id LIMIT 1;
    IF kind = 'reaction' THEN
        RETURN ventros.inbound_reaction(ch, ventros.json_text(x, 'reaction', 'message_id'),
                                        ventros.canonical_whatsapp_id(from_id), coalesce(ventros.json_text(x, 'reaction', 'emoji'), ''));
    END IF;
    CASE kind
        WHEN 'text' THEN
            content := 'text';
            body := ventros.json_text(x, 'text', 'body');
        WHEN 'image', 'video', 'audio', 'document', 'sticker' THEN
            media := x->kind;
            content := CASE WHEN kind = 'audio' AND media->>'voice' = 'true' THEN 'voice' ELSE kind END;
            body := ventros.json_text(media, 'caption');
            media_url := ventros.graph_url(ch, ventros.inbound_require(ventros.json_text(media, 'id'), 'media id'));
            meta := jsonb_build_object('media', jsonb_strip_nulls(jsonb_build_object(
                'provider', 'whatsapp', 'id', media->'id', 'mime_type', media->'mime_type', 'sha256', media->'sha256',
                'filename', media->'filename', 'voice', media->'voice', 'animated', media->'animated')));
        WHEN 'location' THEN
            content := 'location';
            body := coalesce(nullif(ventros.json_text(x, 'location', 'name'), ''), nullif(ventros.json_text(x, 'location', 'address'), ''),
                             ventros.json_text(x, 'location', 'latitude') || ',' || ventros.json_text(x, 'location', 'longitude'));
            meta := jsonb_build_object('location', x->'location');
        WHEN 'contacts' THEN
            content := 'contact';
            body := coalesce(ventros.json_text(x, 'contacts', '0', 'name', 'formatted_name'), '[contact]');
            meta := jsonb_build_object('contacts', x->'contacts');
        WHEN 'interactive' THEN
            content := 'text';
            body := coalesce(ventros.json_text(x, 'interactive', 'button_reply', 'title'),
                             ventros.json_text(x, 'interactive', 'list_reply', 'title'),
                             ventros.json_text(x, 'interactive', 'nfm_reply', 'body'));
            meta := jsonb_build_object('interactive', x->'interactive');
        WHEN 'button' THEN
            content := 'text';
            body := coalesce(ventros.json_text(x, 'button', 'text'), ventros.json_text(x, 'button', 'payload'));
            meta := jsonb_build_object('button', x->'button');
        WHEN 'system' THEN
            content := 'system';
            body := ventros.json_text(x, 'system', 'body');
            meta := jsonb_build_object('system', x->'system');
        ELSE
            -- order, unsupported, unknown types: stored, not parsed.
            RETURN ventros.inbox_outcome('unparsed', NULL, NULL,
                                         jsonb_build_object('type', kind, 'errors', x->'errors'));
    END CASE;
    IF jsonb_typeof(ref) = 'object' THEN
        meta := meta || jsonb_build_object('referral', ref);
    END IF;
    o := ventros.inbound_message(ch, from_id || '@c.us', false, ventros.json_text(x, 'id'), content, body,
                                 ventros.inbound_time(ventros.json_text(x, 'timestamp')),
                                 ventros.json_text(profile, 'profile', 'name'), media_url,
                                 ventros.json_text(media, 'mime_type'), CASE WHEN meta <> '{}' THEN meta END,
                                 ventros.json_text(x, 'context', 'id'));
    IF jsonb_typeof(ref) = 'object' THEN
        extra := ventros.inbound_tracking(o.contact_id, (SELECT m.session_id FROM ventros.messages m WHERE m.tenant_id = ch.tenant_id AND m.id = o.message_id),
                                          CASE WHEN ref->>'source_type' = 'ad' OR ref ? 'ctwa_clid' THEN 'meta_ads' ELSE 'referral' END,
                                          'whatsapp', ventros.json_text(ref, 'source_id'), ventros.json_text(ref, 'source_url'),
                                          ventros.json_text(ref, 'ctwa_clid'), ventros.json_text(ref, 'headline'), ref);
        o.result := coalesce(o.result, '{}') || extra;
    END IF;
    RETURN o;
END
$$;
COMMENT ON FUNCTION ventros.whatsapp_message(ventros.channels, jsonb) IS
    'A WhatsApp Cloud messages[] item: contact by wa_id (profile name), text/media (Graph media URL, id, sha256)/location/contacts/interactive/button/system, reactions, context replies, referral tracking';

CREATE FUNCTION ventros.whatsapp_status(ch ventros.channels, item jsonb) RETURNS ventros.inbox_outcome
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st jsonb := item->'status';
    status text := ventros.json_text(st, 'status');
    err jsonb := st->'errors'->0;
BEGIN
    status := ventros.inbound_require(status, 'status');
    IF status NOT IN ('sent', 'delivered', 'read', 'played', 'failed') THEN
        RETURN ventros.inbox_outcome('unparsed', NULL, NULL, jsonb_build_object('status', status));
    END IF;
    RETURN ventros.inbound_status(ch, ventros.json_text(st, 'id'), status,
        CASE WHEN status = 'failed' THEN
            left(format('(#%s) %s%s', coalesce(ventros.json_text(err, 'code'), '?'),
                        coalesce(ventros.json_text(err, 'title'), ventros.json_text(err, 'message'), 'failed'),
                        coalesce(': ' || ventros.json_text(err, 'error_data', 'details'), '')), 1000) END);
END
$$;
COMMENT ON FUNCTION ventros.whatsapp_status(ventros.channels, jsonb) IS
    'A WhatsApp Cloud statuses[] item: sent, delivered, read, played (read unless audio), failed with "(#code) title: details" stored as the message error';

-- Instagram and Messenger webhooks carry no name: a contact they create is
-- named by its id, and its profile is asked of the Graph API (a dispatcher
-- request of purpose contact.profile; ventros.contact_profile_received names
-- the contact when the answer comes).  Only for a contact created by this
-- transaction and still named by its id, once, when the channel has a token.
CREATE FUNCTION ventros.inbound_request_profile(ch ventros.channels, contact uuid, scoped_id text) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    token text := nullif(ch.config->>'access_token', '');
    c ventros.contacts;
    request uuid;
BEGIN
    IF ch.type NOT IN ('instagram', 'messenger') OR token IS NULL OR contact IS NULL OR scoped_id !~ '^[0-9]{5,32}$' THEN
        RETURN NULL;
    END IF;
    SELECT * INTO c FROM ventros.contacts x WHERE x.tenant_id = ch.tenant_id AND x.id = contact;
    IF c.name IS DISTINCT FROM scoped_id OR c.created_at <> now()
       OR EXISTS (SELECT 1 FROM ventros.http_requests r
                  WHERE r.tenant_id = ch.tenant_id AND r.correlation_id = contact AND r.purpose = 'contact.profile') THEN
        RETURN NULL;
    END IF;
    request := ventros.enqueue_http_request(
        ventros.graph_url(ch, scoped_id)
            || CASE ch.type WHEN 'instagram' THEN '?fields=name,username,profile_pic' ELSE '?fields=first_name,last_name,profile_pic' END,
        'GET', jsonb_build_object('Authorization', 'Bearer ' || token), NULL, 'contact.profile', contact, 3);
    RETURN jsonb_build_object('profile_request', request);
END
$$;
COMMENT ON FUNCTION ventros.inbound_request_profile(ventros.channels, uuid, text) IS
    'Queues a Graph profile lookup (purpose contact.profile) for an Instagram/Messenger contact created now and named by its scoped id, when the channel has an access token';

-- The handler of contact.profile requests: names the contact (and sets its
-- picture) from the Graph answer, unless someone renamed it meanwhile.
CREATE FUNCTION ventros.contact_profile_received(r ventros.http_requests) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    doc jsonb;
    new_name text;
    picture text;
BEGIN
    IF r.status <> 'succeeded' OR r.response_body IS NULL OR r.correlation_id IS NULL THEN
        RETURN;
    END IF;
    BEGIN
        doc := convert_from(r.response_body, 'UTF8')::jsonb;
    EXCEPTION WHEN OTHERS THEN
        RETURN;             -- not JSON: nothing to learn
    END;
    IF jsonb_typeof(doc) IS DISTINCT FROM 'object' THEN
        RETURN;
    END IF;
    new_name := left(coalesce(nullif(btrim(ventros.json_text(doc, 'name')), ''),
                          nullif(btrim(concat_ws(' ', ventros.json_text(doc, 'first_name'), ventros.json_text(doc, 'last_name'))), ''),
                          nullif(btrim(ventros.json_text(doc, 'username')), '')), 200);
    picture := ventros.inbound_http_url(ventros.json_text(doc, 'profile_pic'));
    IF new_name IS NULL THEN
        RETURN;
    END IF;
    UPDATE ventros.contacts c
    SET name = new_name,
        profile_picture_url = coalesce(picture, c.profile_picture_url),
        profile_picture_fetched_at = CASE WHEN picture IS NOT NULL THEN now() ELSE c.profile_picture_fetched_at END,
        version = c.version
    WHERE c.tenant_id = r.tenant_id AND c.id = r.correlation_id AND c.deleted_at IS NULL
      AND EXISTS (SELECT 1 FROM ventros.contact_identities i
                  WHERE i.tenant_id = c.tenant_id AND i.contact_id = c.id AND i.identity_type IN ('psid', 'igsid')
                    AND i.value = c.name AND i.deleted_at IS NULL);
END
$$;
COMMENT ON FUNCTION ventros.contact_profile_received(ventros.http_requests) IS
    'Handler of contact.profile requests: names a contact still named by its PSID/IGSID from the Graph profile (name, or first and last name, or username) and sets its picture; emits contact.updated';
SELECT ventros.declare_http_request_handler('contact.profile', 'ventros.contact_profile_received(ventros.http_requests)');

-- Instagram / Messenger attachments: the first decides the content type.
CREATE FUNCTION ventros.meta_messaging_message(ch ventros.channels, item jsonb, echo boolean) RETURNS ventros.inbox_outcome
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m jsonb := item->'event';
    x jsonb := item->'event'->'message';
    att jsonb := x->'attachments'->0;
    att_type text := ventros.json_text(x, 'attachments', '0', 'type');
    content text := 'text';
    body text := ventros.json_text(x, 'text');
    media_url text;
    meta jsonb := '{}';
    ref jsonb := coalesce(x->'referral', m->'referral');
    o ventros.inbox_outcome;
    extra jsonb;
    counterpart text := CASE WHEN echo THEN ventros.json_text(m, 'recipient', 'id') ELSE ventros.json_text(m, 'sender', 'id') END;
BEGIN
    IF att IS NOT NULL THEN
        media_url := ventros.inbound_http_url(ventros.json_text(att, 'payload', 'url'));
        content := CASE att_type WHEN 'image' THEN 'image' WHEN 'video' THEN 'video' WHEN 'audio' THEN 'audio'
                                 WHEN 'file' THEN 'document' WHEN 'sticker' THEN 'sticker' ELSE 'text' END;
        IF content = 'text' THEN
            -- shares, story mentions, reels, posts, templates, fallbacks: a link.
            body := coalesce(body, ventros.json_text(att, 'payload', 'title'), ventros.json_text(att, 'title'), media_url,
                             '[' || coalesce(att_type, 'attachment') || ']');
            media_url := NULL;
        END IF;
        meta := jsonb_build_object('attachments', x->'attachments');
    END IF;
    IF jsonb_typeof(x->'quick_reply') = 'object' THEN
        meta := meta || jsonb_build_object('quick_reply', x->'quick_reply');
    END IF;
    IF jsonb_typeof(x->'reply_to'->'story') = 'object' THEN
        meta := meta || jsonb_build_object('reply_to_story', x->'reply_to'->'story');
    END IF;
    IF jsonb_typeof(ref) = 'object' THEN
        meta := meta || jsonb_build_object('referral', ref);
    END IF;
    IF echo AND ventros.json_text(x, 'app_id') IS NOT NULL THEN
        meta := meta || jsonb_build_object('app_id', x->'app_id');
    END IF;
    o := ventros.inbound_message(ch, counterpart, echo, ventros.json_text(x, 'mid'), content, body,
                                 ventros.inbound_time(ventros.json_text(m, 'timestamp')), NULL, media_url, NULL,
                                 CASE WHEN meta <> '{}' THEN meta END, ventros.json_text(x, 'reply_to', 'mid'));
    IF jsonb_typeof(ref) = 'object' AND NOT echo THEN
        extra := ventros.meta_referral_tracking(ch, o.contact_id, o.message_id, ref);
        o.result := coalesce(o.result, '{}') || extra;
    END IF;
    extra := ventros.inbound_request_profile(ch, o.contact_id, counterpart);
    IF extra IS NOT NULL THEN
        o.result := coalesce(o.result, '{}') || extra;
    END IF;
    RETURN o;
END
$$;

COMMENT ON FUNCTION ventros.meta_messaging_message(ventros.channels, jsonb, boolean) IS
    'An Instagram/Messenger message or echo: text, first attachment as media (image, video, audio, file as document, sticker; shares and the like as a link), reply_to, quick_reply, referral tracking';

CREATE FUNCTION ventros.meta_referral_tracking(ch ventros.channels, contact uuid, message_id uuid, ref jsonb) RETURNS jsonb
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.inbound_tracking(contact,
        (SELECT m.session_id FROM ventros.messages m WHERE m.tenant_id = ch.tenant_id AND m.id = message_id),
        CASE WHEN upper(ref->>'source') = 'ADS' OR ref ? 'ad_id' THEN 'meta_ads' ELSE 'referral' END,
        CASE ch.type WHEN 'instagram' THEN 'instagram' ELSE 'facebook' END,
        ventros.json_text(ref, 'ad_id'), ventros.json_text(ref, 'source_url'), NULL,
        coalesce(ventros.json_text(ref, 'ads_context_data', 'ad_title'), ventros.json_text(ref, 'ref')), ref)
$$;
COMMENT ON FUNCTION ventros.meta_referral_tracking(ventros.channels, uuid, uuid, jsonb) IS
    'Tracking of an Instagram/Messenger referral (ads: meta_ads, else referral; campaign from the ad title or ref)';

CREATE FUNCTION ventros.meta_messaging_process(r ventros.inbox, ch ventros.channels) RETURNS ventros.inbox_outcome
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m jsonb := r.item->'event';
    sender text := ventros.json_text(r.item, 'event', 'sender', 'id');
    contact uuid;
    target ventros.messages;
    o ventros.inbox_outcome;
    mid text;
    n integer := 0;
    pending boolean := false;
BEGIN
    IF jsonb_typeof(m) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'Meta messaging item without an event object' USING ERRCODE = '22023';
    END IF;
    CASE r.event
        WHEN 'message' THEN
            RETURN ventros.meta_messaging_message(ch, r.item, false);
        WHEN 'message_echo' THEN
            RETURN ventros.meta_messaging_message(ch, r.item, true);
        WHEN 'message_deleted' THEN
            RETURN ventros.inbound_delete(ch, ventros.json_text(m, 'message', 'mid'));
        WHEN 'message_edit' THEN
            RETURN ventros.inbound_edit(ch, ventros.json_text(m, 'message_edit', 'mid'), ventros.json_text(m, 'message_edit', 'text'),
                                        ventros.inbound_time(ventros.json_text(m, 'timestamp')));
        WHEN 'reaction' THEN
            RETURN ventros.inbound_reaction(ch, ventros.json_text(m, 'reaction', 'mid'), ventros.inbound_require(sender, 'sender'),
                CASE WHEN m->'reaction'->>'action' = 'unreact' THEN ''
                     ELSE coalesce(ventros.json_text(m, 'reaction', 'emoji'), ventros.json_text(m, 'reaction', 'reaction'), '') END);
        WHEN 'read' THEN
            contact := ventros.inbound_contact(ch, ventros.inbound_require(sender, 'sender'));
            mid := ventros.json_text(m, 'read', 'mid');
            IF mid IS NOT NULL THEN
                -- Instagram: this message, and every earlier one to the contact, was read.
                target := ventros.inbound_find_message(ch, mid);
                IF target.id IS NULL THEN
                    RETURN ventros.inbox_outcome('unmatched', NULL, contact, '{"status": "read"}');
                END IF;
                n := ventros.inbound_read_until(ch, contact, target."timestamp");
                RETURN ventros.inbox_outcome('processed', target.id, contact, jsonb_build_object('status', 'read', 'messages', n));
            END IF;
            n := ventros.inbound_read_until(ch, contact,
                     ventros.inbound_time(ventros.inbound_require(ventros.json_text(m, 'read', 'watermark'), 'read watermark')));
            RETURN ventros.inbox_outcome('processed', NULL, contact, jsonb_build_object('status', 'read', 'messages', n));
        WHEN 'delivery' THEN
            contact := ventros.inbound_contact(ch, ventros.inbound_require(sender, 'sender'));
            IF jsonb_typeof(m->'delivery'->'mids') = 'array' AND jsonb_array_length(m->'delivery'->'mids') > 0 THEN
                FOR mid IN SELECT jsonb_array_elements_text(m->'delivery'->'mids') LOOP
                    o := ventros.inbound_status(ch, mid, 'delivered');
                    pending := pending OR o.status = 'unmatched';
                    n := n + CASE WHEN o.result->>'applied' = 'true' THEN 1 ELSE 0 END;
                END LOOP;
                RETURN ventros.inbox_outcome(CASE WHEN pending THEN 'unmatched' ELSE 'processed' END, NULL, contact,
                                             jsonb_build_object('status', 'delivered', 'messages', n));
            END IF;
            n := ventros.inbound_read_until(ch, contact,
                     ventros.inbound_time(ventros.inbound_require(ventros.json_text(m, 'delivery', 'watermark'), 'delivery watermark')),
                     'delivered');
            RETURN ventros.inbox_outcome('processed', NULL, contact, jsonb_build_object('status', 'delivered', 'messages', n));
        WHEN 'postback' THEN
            -- A button tapped: an inbound text message with the button's title.
            RETURN ventros.inbound_message(ch, sender, false,
                coalesce(ventros.json_text(m, 'postback', 'mid'), 'pb:' || sender || ':' || ventros.json_text(m, 'timestamp')),
                'text', coalesce(ventros.json_text(m, 'postback', 'title'), ventros.json_text(m, 'postback', 'payload')),
                ventros.inbound_time(ventros.json_text(m, 'timestamp')), NULL, NULL, NULL,
                jsonb_build_object('postback', m->'postback'));
        WHEN 'referral' THEN
            contact := ventros.inbound_contact(ch, ventros.inbound_require(sender, 'sender'));
            RETURN ventros.inbox_outcome('processed', NULL, contact, ventros.meta_referral_tracking(ch, contact, NULL, m->'referral'));
        ELSE
            RETURN ventros.inbox_outcome('unparsed');
    END CASE;
END
$$;
COMMENT ON FUNCTION ventros.meta_messaging_process(ventros.inbox, ventros.channels) IS
    'Processes an Instagram/Messenger messaging event: message, echo, deletion, edit, reaction, read (mid or watermark), delivery (mids or watermark), postback, referral';

-- ---- sql/89_inbound_waha.sql
-- Inbound parsers for WAHA (channels.md section 1): message.any, message.ack,
-- message.reaction, message.revoked, message.edited, session.status.  The
-- entry (ventros.inbox_process) and the shared helpers are in sql/89_inbound.sql.

-- ---- WAHA ----------------------------------------------------------------------

-- The content type of a WAHA message (the original's order, then the mimetype).
CREATE FUNCTION ventros.waha_content_type(payload jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    info jsonb := payload->'_data'->'Info';
    msg jsonb := payload->'_data'->'Message';
    webjs text := payload->'_data'->>'type';
    mime text := lower(payload->'media'->>'mimetype');
BEGIN
    IF info->>'Type' = 'text' THEN
        RETURN 'text';
    END IF;
    IF jsonb_typeof(msg) = 'object' THEN
        IF msg ? 'imageMessage' THEN RETURN 'image'; END IF;
        IF msg ? 'videoMessage' THEN RETURN 'video'; END IF;
        IF msg ? 'audioMessage' THEN
            RETURN CASE WHEN msg->'audioMessage'->>'PTT' = 'true' OR msg->'audioMessage'->>'ptt' = 'true' THEN 'voice' ELSE 'audio' END;
        END IF;
        IF msg ? 'documentMessage' OR msg ? 'documentWithCaptionMessage' THEN RETURN 'document'; END IF;
        IF msg ? 'stickerMessage' THEN RETURN 'sticker'; END IF;
        IF msg ? 'locationMessage' OR msg ? 'liveLocationMessage' THEN RETURN 'location'; END IF;
        IF msg ? 'contactMessage' OR msg ? 'contactsArrayMessage' THEN RETURN 'contact'; END IF;
        IF msg ? 'conversation' OR msg ? 'extendedTextMessage' THEN RETURN 'text'; END IF;
    END IF;
    IF webjs IS NOT NULL THEN
        CASE webjs
            WHEN 'chat' THEN RETURN 'text';
            WHEN 'image' THEN RETURN 'image';
            WHEN 'video' THEN RETURN 'video';
            WHEN 'ptt' THEN RETURN 'voice';
            WHEN 'audio' THEN RETURN 'audio';
            WHEN 'document' THEN RETURN 'document';
            WHEN 'sticker' THEN RETURN 'sticker';
            WHEN 'location' THEN RETURN 'location';
            WHEN 'vcard' THEN RETURN 'contact';
            WHEN 'multi_vcard' THEN RETURN 'contact';
            ELSE NULL;
        END CASE;
    END IF;
    CASE info->>'MediaType'
        WHEN 'image' THEN RETURN 'image';
        WHEN 'video' THEN RETURN 'video';
        WHEN 'audio' THEN RETURN 'audio';
        WHEN 'ptt' THEN RETURN 'voice';
        WHEN 'document' THEN RETURN 'document';
        WHEN 'sticker' THEN RETURN 'sticker';
        WHEN 'vcard' THEN RETURN 'contact';
        ELSE NULL;
    END CASE;
    IF mime IS NOT NULL THEN
        RETURN CASE WHEN mime LIKE 'image/webp%' AND payload->'_data'->'Info'->>'MediaType' = 'sticker' THEN 'sticker'
                    WHEN mime LIKE 'image/%' THEN 'image' WHEN mime LIKE 'video/%' THEN 'video'
                    WHEN mime LIKE 'audio/%' THEN 'audio' ELSE 'document' END;
    END IF;
    IF jsonb_typeof(payload->'location') = 'object' THEN
        RETURN 'location';
    END IF;
    RETURN CASE WHEN payload->>'hasMedia' = 'true' THEN 'document' ELSE 'text' END;
END
$$;
COMMENT ON FUNCTION ventros.waha_content_type(jsonb) IS
    'Content type of a WAHA message: _data.Info.Type, the _data.Message key, WEBJS _data.type, _data.Info.MediaType, then media.mimetype';

CREATE FUNCTION ventros.waha_message(ch ventros.channels, doc jsonb) RETURNS ventros.inbox_outcome
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p jsonb := doc->'payload';
    info jsonb := p->'_data'->'Info';
    msg jsonb := p->'_data'->'Message';
    from_me boolean;
    chat text;
    sender text;
    jids text[];
    kind text;
    body text;
    media_url text;
    mime text;
    meta jsonb := '{}';
    loc jsonb;
    ctx jsonb;
    ad jsonb;
    o ventros.inbox_outcome;
    extra jsonb;
    at timestamptz;
BEGIN
    IF jsonb_typeof(p) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'WAHA message.any without a payload object' USING ERRCODE = '22023';
    END IF;
    from_me := coalesce(p->>'fromMe' = 'true', false);
    chat := CASE WHEN from_me THEN coalesce(ventros.json_text(p, 'to'), ventros.json_text(info, 'Chat'))
                 ELSE ventros.json_text(p, 'from') END;
    chat := ventros.inbound_require(chat, CASE WHEN from_me THEN 'recipient (payload.to)' ELSE 'sender (payload.from)' END);
    IF chat = 'status@broadcast' OR chat LIKE '%@broadcast' OR chat LIKE '%@newsletter' THEN
        RETURN ventros.inbox_outcome('ignored', NULL, NULL, '{"reason": "status or broadcast, not a conversation"}');
    END IF;
    IF chat LIKE '%@g.us' THEN
        IF NOT ch.allow_groups OR from_me THEN
            RETURN ventros.inbox_outcome('ignored', NULL, NULL, '{"reason": "group message on a channel without groups"}');
        END IF;
        meta := meta || jsonb_build_object('group_id', chat);
        jids := ARRAY[ventros.json_text(p, 'participant'), ventros.json_text(info, 'Sender'), ventros.json_text(info, 'SenderAlt')];
    ELSIF from_me THEN
        jids := ARRAY[chat, ventros.json_text(info, 'Chat'), ventros.json_text(info, 'RecipientAlt'), ventros.json_text(info, 'ChatAlt')];
    ELSE
        jids := ARRAY[chat, ventros.json_text(info, 'Sender'), ventros.json_text(info, 'SenderAlt'), ventros.json_text(info, 'Chat')];
    END IF;
    sender := ventros.inbound_whatsapp_sender(ch, array_remove(jids, NULL),
                                              CASE WHEN NOT from_me THEN coalesce(ventros.json_text(info, 'PushName'),
                                                                                  ventros.json_text(p, '_data', 'notifyName')) END);
    kind := ventros.waha_content_type(p);
    body := coalesce(nullif(ventros.json_text(p, 'body'), ''), ventros.json_text(msg, 'conversation'),
                     ventros.json_text(msg, 'extendedTextMessage', 'text'), ventros.json_text(msg, 'imageMessage', 'caption'),
                     ventros.json_text(msg, 'videoMessage', 'caption'), ventros.json_text(msg, 'documentMessage', 'caption'));
    IF kind IN ('image', 'video', 'audio', 'voice', 'document', 'sticker') THEN
        media_url := CASE WHEN p->>'hasMedia' = 'true' OR jsonb_typeof(p->'media') = 'object'
                          THEN ventros.inbound_http_url(p->'media'->>'url') END;
        mime := coalesce(ventros.json_text(p, 'media', 'mimetype'), ventros.json_text(msg, kind || 'Message', 'mimetype'));
        meta := meta || jsonb_build_object('media', jsonb_strip_nulls(jsonb_build_object(
            'provider', 'waha', 'url', p->'media'->'url', 'mimetype', mime,
            'filename', coalesce(p->'media'->'filename', msg->'documentMessage'->'fileName'),
            's3', p->'media'->'s3', 'error', p->'media'->'error')));
    ELSIF kind = 'location' THEN
        loc := coalesce(msg->'locationMessage', msg->'liveLocationMessage', p->'location');
        meta := meta || jsonb_build_object('location', jsonb_strip_nulls(jsonb_build_object(
            'latitude', coalesce(loc->'degreesLatitude', loc->'latitude'), 'longitude', coalesce(loc->'degreesLongitude', loc->'longitude'),
            'name', loc->'name', 'address', coalesce(loc->'address', loc->'description'))));
        body := coalesce(nullif(ventros.json_text(loc, 'name'), ''), nullif(ventros.json_text(loc, 'address'), ''),
                         nullif(ventros.json_text(loc, 'description'), ''), body);
    ELSIF kind = 'contact' THEN
        meta := meta || jsonb_build_object('vcard', coalesce(msg->'contactMessage'->'vcard', p->'vCards'));
        body := coalesce(ventros.json_text(msg, 'contactMessage', 'displayName'), body, '[contact]');
    END IF;
    -- Click-to-WhatsApp ads (the original kept them as tracking data).
    ctx := coalesce(msg->'extendedTextMessage'->'contextInfo', msg->'imageMessage'->'contextInfo',
                    msg->'videoMessage'->'contextInfo');
    ad := ctx->'externalAdReply';
    IF jsonb_typeof(ad) = 'object' THEN
        meta := meta || jsonb_build_object('ad', jsonb_strip_nulls(jsonb_build_object(
            'conversion_source', ctx->'conversionSource', 'entry_point', ctx->'entryPointConversionSource',
            'entry_point_app', ctx->'entryPointConversionApp', 'source_type', ad->'sourceType', 'source_id', ad->'sourceID',
            'source_app', ad->'sourceApp', 'source_url', ad->'sourceURL', 'ctwa_clid', ad->'ctwaClid', 'title', ad->'title')));
    END IF;
    at := coalesce(ventros.inbound_time(ventros.json_text(p, 'timestamp')), ventros.inbound_time(ventros.json_text(doc, 'timestamp')));
    o := ventros.inbound_message(ch, sender, from_me, ventros.json_text(p, 'id'), kind, body, at,
                                 CASE WHEN NOT from_me THEN coalesce(ventros.json_text(info, 'PushName'), ventros.json_text(p, '_data', 'notifyName')) END,
                                 media_url, mime, CASE WHEN meta <> '{}' THEN meta END,
                                 coalesce(ventros.json_text(p, 'replyTo', 'id'), ventros.json_text(p, 'replyTo'),
                                          ventros.json_text(ctx, 'stanzaId')));
    IF jsonb_typeof(ad) = 'object' AND NOT from_me AND o.message_id IS NOT NULL THEN
        extra := ventros.inbound_tracking(o.contact_id, (SELECT m.session_id FROM ventros.messages m WHERE m.tenant_id = ch.tenant_id AND m.id = o.message_id),
                                          'meta_ads', 'whatsapp', ventros.json_text(ad, 'sourceID'), ventros.json_text(ad, 'sourceURL'),
                                          ventros.json_text(ad, 'ctwaClid'), ventros.json_text(ad, 'title'), ad);
        o.result := coalesce(o.result, '{}') || extra;
    END IF;
    RETURN o;
END
$$;
COMMENT ON FUNCTION ventros.waha_message(ventros.channels, jsonb) IS
    'A WAHA message.any: sender (@c.us / @lid linked), content type, text, media URL and mimetype, location, contact card, reply, click-to-WhatsApp ad tracking; fromMe echoes matched to our sends';

CREATE FUNCTION ventros.waha_process(r ventros.inbox, ch ventros.channels) RETURNS ventros.inbox_outcome
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    doc jsonb := r.item;
    p jsonb := r.item->'payload';
    ack text;
BEGIN
    IF jsonb_typeof(p) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'WAHA % event without a payload object', r.event USING ERRCODE = '22023';
    END IF;
    CASE r.event
        WHEN 'message.any' THEN
            RETURN ventros.waha_message(ch, doc);
        WHEN 'message.ack' THEN
            ack := ventros.inbound_require(ventros.json_text(p, 'ack'), 'ack');
            IF ack NOT IN ('-1', '0', '1', '2', '3', '4') THEN
                RAISE EXCEPTION 'unknown WAHA ack %', left(ack, 16) USING ERRCODE = '22023';
            END IF;
            IF ack = '0' THEN
                RETURN ventros.inbox_outcome('ignored', NULL, NULL, '{"reason": "pending ack"}');
            END IF;
            RETURN ventros.inbound_status(ch, ventros.json_text(p, 'id'),
                CASE ack WHEN '-1' THEN 'failed' WHEN '1' THEN 'sent' WHEN '2' THEN 'delivered' WHEN '3' THEN 'read' ELSE 'played' END,
                CASE WHEN ack = '-1' THEN 'WAHA ack ERROR' END);
        WHEN 'message.reaction' THEN
            RETURN ventros.inbound_reaction(ch, ventros.json_text(p, 'reaction', 'messageId'),
                CASE WHEN p->>'fromMe' = 'true' THEN 'me'
                     ELSE coalesce(ventros.canonical_whatsapp_id(coalesce(ventros.json_text(p, 'participant'), ventros.json_text(p, 'from'))),
                                   ventros.json_text(p, 'from')) END,
                ventros.json_text(p, 'reaction', 'text'));
        WHEN 'message.revoked' THEN
            RETURN ventros.inbound_delete(ch, r.ref_id);
        WHEN 'message.edited' THEN
            RETURN ventros.inbound_edit(ch, ventros.json_text(p, 'editedMessageId'), ventros.json_text(p, 'body'),
                                        ventros.inbound_time(ventros.json_text(p, 'timestamp')));
        WHEN 'session.status' THEN
            RETURN ventros.inbound_channel_status(ch, ventros.waha_channel_status(ventros.json_text(p, 'status')));
        ELSE
            RETURN ventros.inbox_outcome('unparsed');
    END CASE;
END
$$;
COMMENT ON FUNCTION ventros.waha_process(ventros.inbox, ventros.channels) IS
    'Processes a WAHA inbox item: message.any, message.ack (-1 failed, 1 sent, 2 delivered, 3 read, 4 played/read), message.reaction, message.revoked, message.edited, session.status';

-- ---- sql/90_channel_send.sql
-- Outbound channel traffic: a message queued by ventros.send_message becomes
-- the provider's HTTP request (a row of ventros.http_requests, purpose
-- message.send, correlation_id = the message id) in the same transaction;
-- the dispatcher delivers it, and the message.send completion handler moves
-- the message to sent (with the provider's id) or failed.  Media downloads
-- (purpose media.download) follow the same path.  Wire formats: design
-- channels.md sections 1.8, 1.10, 2.3, 2.4, 3.2 and 4.2; docs/channels-outbound.md.
--
-- One declaration per channel type (ventros.channel_providers) names the
-- functions that build its requests and read its answers: adding a provider
-- is a row and three functions, never a branch in send_message.
--
-- Invariants:
--   - A channel whose type is not declared, or whose config lacks what its
--     provider needs (WAHA base_url + session; Meta access_token, and the
--     phone_number_id for WhatsApp Cloud), queues its messages without any
--     request, as before this file: another sender (or nobody) moves them.
--   - At most one message.send request per message (queue_message_send is
--     idempotent), so calling it again cannot send a message twice.
--   - The request carries the channel's credentials: http_requests rows are
--     readable by tenant administrators only, and the functions that write
--     them for agents are SECURITY DEFINER, acting on the caller's tenant.

CREATE TABLE ventros.channel_providers (
    channel_type  text PRIMARY KEY,
    provider      text         NOT NULL,
    build_send    regprocedure NOT NULL,
    sent_id       regprocedure NOT NULL,
    build_media   regprocedure,
    retry_policy  text         NOT NULL DEFAULT 'transient',
    window_hours  integer,
    CONSTRAINT channel_providers_provider_known CHECK (provider IN ('waha', 'whatsapp', 'instagram', 'messenger')),
    CONSTRAINT channel_providers_window_positive CHECK (window_hours > 0)
);
COMMENT ON TABLE ventros.channel_providers IS
    'Per channel type, how its messages are sent: build_send(channels, messages) -> request jsonb {method,url,headers,body} or NULL (not configured); sent_id(jsonb answer) -> provider message id; build_media(channels, messages) -> media download request; the retry policy of its requests; the free-form window in hours (NULL: none)';

-- A catalogue shared by every tenant: readable by all, written by declarations only.
ALTER TABLE ventros.channel_providers ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.channel_providers FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_catalog_read ON ventros.channel_providers FOR SELECT USING (true);

CREATE FUNCTION ventros.declare_channel_provider(channel_type text, provider text, build_send regprocedure,
                                                 sent_id regprocedure, build_media regprocedure DEFAULT NULL,
                                                 retry_policy text DEFAULT 'transient', window_hours integer DEFAULT NULL)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO ventros.channel_providers AS p
    VALUES (channel_type, provider, build_send, sent_id, build_media, retry_policy, window_hours)
    ON CONFLICT ON CONSTRAINT channel_providers_pkey DO UPDATE
       SET provider = EXCLUDED.provider, build_send = EXCLUDED.build_send, sent_id = EXCLUDED.sent_id,
           build_media = EXCLUDED.build_media, retry_policy = EXCLUDED.retry_policy,
           window_hours = EXCLUDED.window_hours
$$;
COMMENT ON FUNCTION ventros.declare_channel_provider(text, text, regprocedure, regprocedure, regprocedure, text, integer) IS
    'Declares how messages of a channel type are sent (see ventros.channel_providers)';

-- ---- helpers ------------------------------------------------------------------

-- A JSON body as bytes, or NULL for none.
CREATE FUNCTION ventros.json_body(b bytea) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF b IS NULL OR length(b) = 0 THEN
        RETURN NULL;
    END IF;
    RETURN convert_from(b, 'UTF8')::jsonb;
EXCEPTION WHEN OTHERS THEN
    RETURN NULL;    -- not JSON (or not UTF-8): callers treat it as no body
END
$$;
COMMENT ON FUNCTION ventros.json_body(bytea) IS 'A response body parsed as JSON, NULL when empty or not JSON';

-- The first live identity of a contact among the given types, in that order.
CREATE FUNCTION ventros.contact_identity_of(contact_id uuid, types text[]) RETURNS ventros.contact_identities
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT i.* FROM ventros.contact_identities i
     WHERE i.tenant_id = ventros.require_tenant() AND i.contact_id = contact_identity_of.contact_id
       AND i.identity_type = ANY (types) AND i.deleted_at IS NULL
     ORDER BY array_position(types, i.identity_type), i.created_at, i.id
     LIMIT 1
$$;
COMMENT ON FUNCTION ventros.contact_identity_of(uuid, text[]) IS
    'A contact''s first live identity among the given types, preferring earlier types, then older identities';

-- The provider id of the message a reply refers to (NULL if none or unknown).
CREATE FUNCTION ventros.reply_provider_id(m ventros.messages) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.channel_message_id FROM ventros.messages r
     WHERE r.tenant_id = m.tenant_id AND r.id = m.reply_to_id AND r.channel_id = m.channel_id
$$;
COMMENT ON FUNCTION ventros.reply_provider_id(ventros.messages) IS
    'The provider message id of the message m replies to, when it is on the same channel';

-- The file name of a media message: metadata.filename, else the URL's last segment.
CREATE FUNCTION ventros.media_filename(m ventros.messages) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(nullif(m.metadata->>'filename', ''),
                    nullif(substring(m.media_url FROM '/([^/?#]+)(?:[?#].*)?$'), ''))
$$;
COMMENT ON FUNCTION ventros.media_filename(ventros.messages) IS
    'File name sent with a media message: metadata.filename, else the last path segment of media_url';

-- Raising helpers, usable inside CASE.  VOLATILE: an immutable function with
-- constant arguments could be folded, and raise, while planning.
CREATE FUNCTION ventros.unsupported_content(provider text, content_type text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION '% channels do not send % messages', provider, content_type USING ERRCODE = '22023',
        HINT = 'See docs/channels-outbound.md for the content types each provider sends.';
END
$$;
COMMENT ON FUNCTION ventros.unsupported_content(text, text) IS 'Raises 22023: this provider does not send this content type';

CREATE FUNCTION ventros.no_recipient(provider text, contact_id uuid, wanted text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'contact % has no % to send to on a % channel', contact_id, wanted, provider USING ERRCODE = '22023',
        HINT = 'Add the identity to the contact (ventros.add_contact_identity), or wait for the contact to write first.';
END
$$;
COMMENT ON FUNCTION ventros.no_recipient(text, uuid, text) IS 'Raises 22023: the contact has no address on this provider';

-- ---- WAHA (channels.md 1.8) --------------------------------------------------

-- chatId: the contact's WhatsApp id as <digits>@c.us, else its @lid, else its phone.
CREATE FUNCTION ventros.waha_chat_id(contact_id uuid) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(
        (SELECT CASE WHEN i.identity_type = 'whatsapp' THEN split_part(i.value, '@', 1) || '@c.us' ELSE i.value END
           FROM ventros.contact_identity_of(contact_id, '{whatsapp,whatsapp_lid}') i WHERE i.id IS NOT NULL),
        (SELECT ltrim(c.phone, '+') || '@c.us' FROM ventros.contacts c
          WHERE c.tenant_id = ventros.require_tenant() AND c.id = waha_chat_id.contact_id AND c.phone IS NOT NULL))
$$;
COMMENT ON FUNCTION ventros.waha_chat_id(uuid) IS
    'WAHA chatId of a contact: its WhatsApp id (<digits>@c.us) first, else its @lid id, else <phone digits>@c.us';

CREATE FUNCTION ventros.waha_send_request(ch ventros.channels, m ventros.messages) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    base text := rtrim(ch.config->>'base_url', '/');
    session text := ch.config->>'session';
    chat text;
    file jsonb;
    path text;
    body jsonb;
BEGIN
    IF coalesce(base, '') = '' OR coalesce(session, '') = '' THEN
        RETURN NULL;
    END IF;
    chat := ventros.waha_chat_id(m.contact_id);
    IF chat IS NULL THEN
        RETURN ventros.no_recipient('waha', m.contact_id, 'WhatsApp id or phone');
    END IF;
    file := jsonb_strip_nulls(jsonb_build_object(
        'mimetype', coalesce(m.media_mimetype, CASE m.content_type WHEN 'image' THEN 'image/jpeg'
                                                   WHEN 'voice' THEN 'audio/ogg; codecs=opus' WHEN 'audio' THEN 'audio/ogg; codecs=opus'
                                                   WHEN 'video' THEN 'video/mp4' ELSE 'application/octet-stream' END),
        'filename', CASE WHEN m.content_type IN ('image', 'document') THEN ventros.media_filename(m) END,
        'url', m.media_url));
    body := jsonb_build_object('session', session, 'chatId', chat);
    CASE m.content_type
        WHEN 'text' THEN
            path := '/api/sendText';
            body := body || jsonb_build_object('text', m.text, 'reply_to', ventros.reply_provider_id(m), 'linkPreview', true);
        WHEN 'image' THEN
            path := '/api/sendImage';
            body := body || jsonb_build_object('file', file, 'caption', m.text);
        WHEN 'document' THEN
            path := '/api/sendFile';
            body := body || jsonb_build_object('file', file, 'caption', m.text);
        WHEN 'voice', 'audio' THEN
            path := '/api/sendVoice';
            body := body || jsonb_build_object('file', file, 'convert', true);
        WHEN 'video' THEN
            path := '/api/sendVideo';
            body := body || jsonb_build_object('file', file, 'caption', m.text, 'asNote', false, 'convert', true);
        ELSE
            RETURN ventros.unsupported_content('WAHA', m.content_type);
    END CASE;
    IF m.content_type <> 'text' AND m.reply_to_id IS NOT NULL THEN
        body := body || jsonb_build_object('reply_to', ventros.reply_provider_id(m));
    END IF;
    RETURN jsonb_build_object(
        'method', 'POST', 'url', base || path, 'body', body,
        'headers', jsonb_strip_nulls(jsonb_build_object('Content-Type', 'application/json',
                                                        'X-Api-Key', nullif(ch.config->>'api_key', ''))));
END
$$;
COMMENT ON FUNCTION ventros.waha_send_request(ventros.channels, ventros.messages) IS
    'The WAHA request sending a message: POST <base_url>/api/sendText|sendImage|sendFile|sendVoice|sendVideo with X-Api-Key; NULL when the channel has no base_url or session';

-- The id in WAHA's answer: id (a string), id._serialized, _data.id._serialized,
-- then NOWEB's key.id; NULL for an empty or unknown body.
CREATE FUNCTION ventros.waha_sent_id(answer jsonb) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(CASE WHEN jsonb_typeof(answer->'id') = 'string' THEN answer->>'id' END,
                    answer->'id'->>'_serialized', answer->'_data'->'id'->>'_serialized', answer->'key'->>'id')
$$;
COMMENT ON FUNCTION ventros.waha_sent_id(jsonb) IS
    'Provider message id in a WAHA send answer (id, id._serialized, _data.id._serialized, NOWEB key.id), NULL if absent';

-- Media of an inbound WAHA message is served by the WAHA host itself: fetched
-- with the channel's API key, and only from that host (channels.md 6.3).
CREATE FUNCTION ventros.waha_media_request(ch ventros.channels, m ventros.messages) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    base text := rtrim(ch.config->>'base_url', '/');
BEGIN
    IF m.media_url IS NULL THEN
        RAISE EXCEPTION 'message % has no media URL', m.id USING ERRCODE = '22023';
    END IF;
    IF coalesce(base, '') <> '' AND substring(m.media_url FROM '^https?://[^/?#]+') = substring(base FROM '^https?://[^/?#]+') THEN
        RETURN jsonb_build_object('method', 'GET', 'url', m.media_url,
                                  'headers', jsonb_strip_nulls(jsonb_build_object('X-Api-Key', nullif(ch.config->>'api_key', ''))));
    END IF;
    -- Another host (S3 storage, a CDN): no credentials go there; the
    -- dispatcher's SSRF guard judges the URL.
    RETURN jsonb_build_object('method', 'GET', 'url', m.media_url, 'headers', '{}'::jsonb);
END
$$;
COMMENT ON FUNCTION ventros.waha_media_request(ventros.channels, ventros.messages) IS
    'The request fetching a WAHA message''s media: GET media_url, with X-Api-Key only when it is on the channel''s WAHA host';

-- WAHA: 422 (session not WORKING yet) is retried, other 4xx are final.
CREATE FUNCTION ventros.classify_waha_answer(status integer, body bytea, retryable boolean) RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT CASE WHEN status = 422 THEN true ELSE retryable END $$;
COMMENT ON FUNCTION ventros.classify_waha_answer(integer, bytea, boolean) IS
    'Retry classifier "waha": 422 (session not WORKING) is retried; otherwise the dispatcher''s verdict by status';

-- ---- Meta Graph API: WhatsApp Cloud (2.3), Instagram (3.2), Messenger (4.2) ----

CREATE FUNCTION ventros.graph_base(ch ventros.channels) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT rtrim(coalesce(nullif(ch.config->>'graph_base_url', ''),
                          CASE WHEN ch.type = 'instagram' THEN 'https://graph.instagram.com' ELSE 'https://graph.facebook.com' END),
                 '/')
           || '/' || coalesce(nullif(ch.config->>'graph_version', ''), 'v23.0')
$$;
COMMENT ON FUNCTION ventros.graph_base(ventros.channels) IS
    'A Meta channel''s Graph root with version: graph_base_url (default graph.facebook.com, graph.instagram.com for Instagram) / graph_version (default v23.0)';

CREATE FUNCTION ventros.graph_headers(ch ventros.channels, json boolean DEFAULT true) RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object('Authorization', 'Bearer ' || (ch.config->>'access_token'))
           || CASE WHEN json THEN '{"Content-Type": "application/json"}'::jsonb ELSE '{}'::jsonb END
$$;
COMMENT ON FUNCTION ventros.graph_headers(ventros.channels, boolean) IS
    'Headers of a Graph call: Authorization: Bearer <access_token> (never the access_token query parameter), and the JSON content type';

-- WhatsApp Cloud "to": the contact's WhatsApp number (digits), else its phone.
CREATE FUNCTION ventros.whatsapp_to(contact_id uuid) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(
        (SELECT split_part(i.value, '@', 1) FROM ventros.contact_identity_of(contact_id, '{whatsapp}') i WHERE i.id IS NOT NULL),
        (SELECT ltrim(c.phone, '+') FROM ventros.contacts c
          WHERE c.tenant_id = ventros.require_tenant() AND c.id = whatsapp_to.contact_id AND c.phone IS NOT NULL))
$$;
COMMENT ON FUNCTION ventros.whatsapp_to(uuid) IS 'WhatsApp Cloud recipient: the contact''s WhatsApp number (digits), else its phone digits';

CREATE FUNCTION ventros.whatsapp_send_request(ch ventros.channels, m ventros.messages) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    phone_number_id text := ch.config->>'phone_number_id';
    recipient text;
    kind text;
    payload jsonb;
    body jsonb;
    reply text;
BEGIN
    IF coalesce(phone_number_id, '') = '' OR coalesce(ch.config->>'access_token', '') = '' THEN
        RETURN NULL;
    END IF;
    recipient := ventros.whatsapp_to(m.contact_id);
    IF recipient IS NULL THEN
        RETURN ventros.no_recipient('whatsapp', m.contact_id, 'WhatsApp number or phone');
    END IF;
    IF m.metadata ? 'template' THEN
        kind := 'template';
        payload := jsonb_strip_nulls(jsonb_build_object(
            'name', m.metadata->'template'->>'name',
            'language', jsonb_build_object('code', m.metadata->'template'->>'language'),
            'components', nullif(m.metadata->'template'->'components', '[]'::jsonb)));
    ELSE
        kind := CASE m.content_type WHEN 'voice' THEN 'audio' ELSE m.content_type END;
        payload := CASE m.content_type
            WHEN 'text' THEN jsonb_build_object('preview_url', coalesce((m.metadata->>'preview_url')::boolean, false),
                                                'body', m.text)
            WHEN 'image' THEN jsonb_strip_nulls(jsonb_build_object('link', m.media_url, 'caption', m.text))
            WHEN 'video' THEN jsonb_strip_nulls(jsonb_build_object('link', m.media_url, 'caption', m.text))
            WHEN 'document' THEN jsonb_strip_nulls(jsonb_build_object('link', m.media_url, 'filename', ventros.media_filename(m),
                                                                      'caption', m.text))
            WHEN 'audio' THEN jsonb_build_object('link', m.media_url)
            WHEN 'voice' THEN jsonb_build_object('link', m.media_url)
            WHEN 'sticker' THEN jsonb_build_object('link', m.media_url)
            ELSE ventros.unsupported_content('WhatsApp Cloud', m.content_type) END;
    END IF;
    body := jsonb_build_object('messaging_product', 'whatsapp', 'recipient_type', 'individual', 'to', recipient,
                               'type', kind, kind, payload);
    reply := ventros.reply_provider_id(m);
    IF reply IS NOT NULL THEN
        body := body || jsonb_build_object('context', jsonb_build_object('message_id', reply));
    END IF;
    RETURN jsonb_build_object('method', 'POST', 'url', ventros.graph_base(ch) || '/' || phone_number_id || '/messages',
                              'headers', ventros.graph_headers(ch), 'body', body);
END
$$;
COMMENT ON FUNCTION ventros.whatsapp_send_request(ventros.channels, ventros.messages) IS
    'The Cloud API request sending a message: POST <graph>/<version>/<phone_number_id>/messages (text, image, audio, video, document, sticker, template; reply context); NULL without phone_number_id and access_token';

CREATE FUNCTION ventros.whatsapp_sent_id(answer jsonb) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT answer->'messages'->0->>'id' $$;
COMMENT ON FUNCTION ventros.whatsapp_sent_id(jsonb) IS 'Provider message id (wamid) in a Cloud API send answer: messages[0].id';

-- Step 1 of a Cloud API media download: the media id's metadata (URL, type,
-- sha256, size); the media.download handler queues step 2.
CREATE FUNCTION ventros.whatsapp_media_request(ch ventros.channels, m ventros.messages) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    media_id text := coalesce(m.metadata->>'media_id', m.metadata->'media'->>'id');
BEGIN
    IF coalesce(ch.config->>'access_token', '') = '' THEN
        RETURN NULL;
    END IF;
    IF media_id IS NULL THEN
        RAISE EXCEPTION 'message % has no media id', m.id USING ERRCODE = '22023',
            HINT = 'Cloud API media is found by metadata.media_id (the webhook''s image.id, audio.id, ...).';
    END IF;
    IF media_id !~ '^[0-9A-Za-z_.-]{1,128}$' THEN
        RAISE EXCEPTION 'malformed media id "%"', left(media_id, 64) USING ERRCODE = '22P02';
    END IF;
    RETURN jsonb_build_object('method', 'GET', 'url', ventros.graph_base(ch) || '/' || media_id,
                              'headers', ventros.graph_headers(ch, false), 'step', 'lookup');
END
$$;
COMMENT ON FUNCTION ventros.whatsapp_media_request(ventros.channels, ventros.messages) IS
    'Step 1 of a Cloud API media download: GET <graph>/<version>/<metadata.media_id> with the Bearer token';

-- Messenger and Instagram share the Send API shape.
CREATE FUNCTION ventros.graph_messaging_send_request(ch ventros.channels, m ventros.messages) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    own_id text := nullif(CASE WHEN ch.type = 'instagram' THEN ch.config->>'ig_account_id' ELSE ch.config->>'page_id' END, '');
    recipient ventros.contact_identities;
    message jsonb;
BEGIN
    IF coalesce(ch.config->>'access_token', '') = '' THEN
        RETURN NULL;
    END IF;
    recipient := ventros.contact_identity_of(m.contact_id, CASE WHEN ch.type = 'instagram' THEN '{igsid}'::text[] ELSE '{psid}' END);
    IF recipient.id IS NULL THEN
        RETURN ventros.no_recipient(ch.type, m.contact_id, CASE WHEN ch.type = 'instagram' THEN 'IGSID' ELSE 'PSID' END);
    END IF;
    message := CASE
        WHEN m.content_type = 'text' THEN jsonb_build_object('text', m.text)
        WHEN m.content_type IN ('image', 'video', 'audio', 'voice', 'document') THEN
            jsonb_build_object('attachment', jsonb_build_object(
                'type', CASE m.content_type WHEN 'voice' THEN 'audio' WHEN 'document' THEN 'file' ELSE m.content_type END,
                'payload', jsonb_build_object('url', m.media_url, 'is_reusable', true)))
        ELSE ventros.unsupported_content(ch.type, m.content_type) END;
    RETURN jsonb_build_object(
        'method', 'POST', 'url', ventros.graph_base(ch) || '/' || coalesce(own_id, 'me') || '/messages',
        'headers', ventros.graph_headers(ch),
        'body', jsonb_build_object('recipient', jsonb_build_object('id', recipient.value),
                                   'messaging_type', 'RESPONSE', 'message', message));
END
$$;
COMMENT ON FUNCTION ventros.graph_messaging_send_request(ventros.channels, ventros.messages) IS
    'The Send API request of Messenger and Instagram: POST <graph>/<version>/<page_id or ig_account_id or me>/messages, recipient.id = PSID / IGSID, messaging_type RESPONSE, text or attachment (a media caption is not sent); NULL without access_token';

CREATE FUNCTION ventros.graph_messaging_sent_id(answer jsonb) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT answer->>'message_id' $$;
COMMENT ON FUNCTION ventros.graph_messaging_sent_id(jsonb) IS 'Provider message id (mid) in a Messenger / Instagram send answer: message_id';

-- Instagram and Messenger attachments arrive as CDN URLs that need no token.
CREATE FUNCTION ventros.graph_messaging_media_request(ch ventros.channels, m ventros.messages) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF m.media_url IS NULL THEN
        RAISE EXCEPTION 'message % has no media URL', m.id USING ERRCODE = '22023';
    END IF;
    RETURN jsonb_build_object('method', 'GET', 'url', m.media_url, 'headers', '{}'::jsonb);
END
$$;
COMMENT ON FUNCTION ventros.graph_messaging_media_request(ventros.channels, ventros.messages) IS
    'The request fetching a Messenger / Instagram attachment: GET its CDN URL, no credentials';

-- Graph errors: classified by error.code (and subcode), not by HTTP status
-- (channels.md 1.10): Meta answers 400 to throttling.
CREATE FUNCTION ventros.graph_error_class(status integer, body bytea) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e jsonb := ventros.json_body(body)->'error';
    code integer;
BEGIN
    IF jsonb_typeof(e->'code') IS DISTINCT FROM 'number' THEN
        RETURN NULL;
    END IF;
    code := (e->>'code')::integer;
    IF code IN (1, 2, 4, 17, 32, 613, 80007, 130429, 131000, 131016, 131056, 133004) THEN
        RETURN 'retry';
    ELSIF code = 10 AND (e->>'error_subcode') = '2018278' THEN
        RETURN 'message';   -- Messenger: outside the messaging window
    ELSIF code IN (190, 10) OR code BETWEEN 200 AND 299 OR (code = 100 AND (e->>'error_subcode') = '33') THEN
        RETURN 'config';
    ELSE
        RETURN 'message';
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.graph_error_class(integer, bytea) IS
    'Class of a Graph error answer by error.code: retry (throttling, transient), config (token, permission, missing object), message (this message cannot be sent, including Messenger''s 10/2018278 outside the window); NULL without a Graph error body';

CREATE FUNCTION ventros.classify_graph_answer(status integer, body bytea, retryable boolean) RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE ventros.graph_error_class(status, body)
               WHEN 'retry' THEN true
               WHEN 'config' THEN false
               WHEN 'message' THEN false
               ELSE retryable END
$$;
COMMENT ON FUNCTION ventros.classify_graph_answer(integer, bytea, boolean) IS
    'Retry classifier "graph": retried when error.code is transient (1, 2, 4, 17, 32, 613, 80007, 130429, 131000, 131016, 131056, 133004) whatever the status; final for any other Graph error code; else the dispatcher''s verdict by status';

-- A failed request, said in one line for messages.error.
CREATE FUNCTION ventros.provider_error_text(r ventros.http_requests) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    answer jsonb := ventros.json_body(r.response_body);
    e jsonb := answer->'error';
    msg text;
BEGIN
    IF jsonb_typeof(e) = 'object' AND e ? 'code' THEN
        RETURN left(format('Graph error %s%s: %s%s', e->>'code',
                           CASE WHEN e ? 'error_subcode' THEN '/' || (e->>'error_subcode') ELSE '' END,
                           coalesce(e->>'message', 'no message'),
                           CASE WHEN e->'error_data' ? 'details' THEN ' (' || (e->'error_data'->>'details') || ')' ELSE '' END),
                    1000);
    END IF;
    IF r.response_status IS NOT NULL THEN
        msg := CASE
            WHEN jsonb_typeof(answer->'message') = 'array' THEN (SELECT string_agg(x, '; ') FROM jsonb_array_elements_text(answer->'message') x)
            WHEN jsonb_typeof(answer->'message') = 'string' THEN answer->>'message'
            WHEN jsonb_typeof(answer->'exception') = 'object' THEN answer->'exception'->>'message'
            WHEN jsonb_typeof(answer->'error') = 'string' THEN answer->>'error' END;
        RETURN left(format('HTTP %s%s', r.response_status, ': ' || msg), 1000);
    END IF;
    RETURN left(coalesce(r.last_error, 'request ' || r.status), 1000);
END
$$;
COMMENT ON FUNCTION ventros.provider_error_text(ventros.http_requests) IS
    'Why a provider request failed: the Graph error (code/subcode: message (details)), else HTTP status and the provider''s message, else the transport error';

-- ---- declarations -------------------------------------------------------------

SELECT ventros.declare_http_retry_classifier('waha', 'ventros.classify_waha_answer(integer, bytea, boolean)');
SELECT ventros.declare_http_retry_classifier('graph', 'ventros.classify_graph_answer(integer, bytea, boolean)');

SELECT ventros.declare_channel_provider('waha', 'waha', 'ventros.waha_send_request(ventros.channels, ventros.messages)',
           'ventros.waha_sent_id(jsonb)', 'ventros.waha_media_request(ventros.channels, ventros.messages)', 'waha');
SELECT ventros.declare_channel_provider(t, 'whatsapp', 'ventros.whatsapp_send_request(ventros.channels, ventros.messages)',
           'ventros.whatsapp_sent_id(jsonb)', 'ventros.whatsapp_media_request(ventros.channels, ventros.messages)', 'graph', 24)
  FROM unnest('{whatsapp,whatsapp_business}'::text[]) t;
SELECT ventros.declare_channel_provider(t, t, 'ventros.graph_messaging_send_request(ventros.channels, ventros.messages)',
           'ventros.graph_messaging_sent_id(jsonb)', 'ventros.graph_messaging_media_request(ventros.channels, ventros.messages)',
           'graph')
  FROM unnest('{instagram,messenger}'::text[]) t;

-- ---- queueing a send ------------------------------------------------------------

-- A request described as jsonb {method, url, headers, body, ...} queued.
CREATE FUNCTION ventros.enqueue_provider_request(req jsonb, purpose text, correlation_id uuid, retry_policy text,
                                                 max_response_size integer DEFAULT NULL)
RETURNS uuid
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.enqueue_http_request(req->>'url', coalesce(req->>'method', 'POST'), coalesce(req->'headers', '{}'),
                                        CASE WHEN req->'body' IS NOT NULL AND req->'body' <> 'null'::jsonb
                                             THEN convert_to((req->'body')::text, 'UTF8') END,
                                        purpose, correlation_id, retry_policy => retry_policy,
                                        max_response_size => max_response_size)
$$;
COMMENT ON FUNCTION ventros.enqueue_provider_request(jsonb, text, uuid, text, integer) IS
    'Queues a request built by a provider function ({method, url, headers, body}) for the acting tenant';

-- The 24-hour customer service window: free-form messages need an inbound
-- message from the contact on this channel within window_hours.
CREATE FUNCTION ventros.check_message_window(m ventros.messages, window_hours integer) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    last_inbound timestamptz;
BEGIN
    IF window_hours IS NULL OR m.metadata ? 'template' THEN
        RETURN;
    END IF;
    SELECT max(x."timestamp") INTO last_inbound FROM ventros.messages x
     WHERE x.tenant_id = m.tenant_id AND x.contact_id = m.contact_id AND x.channel_id = m.channel_id
       AND NOT x.from_me AND x.deleted_at IS NULL;
    IF last_inbound IS NULL OR last_inbound < now() - make_interval(hours => window_hours) THEN
        RAISE EXCEPTION 'the %-hour customer service window of contact % on channel % is closed', window_hours,
                m.contact_id, m.channel_id
            USING ERRCODE = '22023',
                  DETAIL = CASE WHEN last_inbound IS NULL THEN 'The contact never wrote on this channel.'
                                ELSE format('The contact last wrote at %s.', last_inbound) END,
                  HINT = 'Outside the window WhatsApp accepts only an approved template: pass template_name and template_language (and template_components for its variables).';
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.check_message_window(ventros.messages, integer) IS
    'Refuses (22023, hint: a template is needed) a free-form message when the contact''s last inbound message on the channel is older than window_hours or absent';

-- Builds and queues the provider request of a queued outbound message.
-- SECURITY DEFINER: agents send messages but may not write http_requests
-- (their headers hold the channel's credentials); it acts on the caller's
-- tenant only, reads the message itself and queues at most one request.
CREATE FUNCTION ventros.queue_message_send(message_id uuid) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    m ventros.messages;
    ch ventros.channels;
    p ventros.channel_providers;
    req jsonb;
BEGIN
    -- Locked: two calls for one message queue one request (the second sees the first's).
    SELECT * INTO m FROM ventros.messages x WHERE x.tenant_id = tenant AND x.id = message_id AND x.deleted_at IS NULL
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'message % not found', message_id USING ERRCODE = 'P0002';
    END IF;
    IF NOT m.from_me OR m.status <> 'queued'
       OR EXISTS (SELECT 1 FROM ventros.http_requests r
                   WHERE r.tenant_id = tenant AND r.correlation_id = m.id AND r.purpose = 'message.send') THEN
        RETURN NULL;
    END IF;
    SELECT * INTO ch FROM ventros.channels c WHERE c.tenant_id = tenant AND c.id = m.channel_id;
    SELECT * INTO p FROM ventros.channel_providers x WHERE x.channel_type = ch.type;
    IF p.channel_type IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT %s($1, $2)', p.build_send::regproc) INTO req USING ch, m;
    IF req IS NULL THEN
        RETURN NULL;    -- the channel is not configured for sending
    END IF;
    PERFORM ventros.check_message_window(m, p.window_hours);
    RETURN ventros.enqueue_provider_request(req, 'message.send', m.id, p.retry_policy);
END
$$;
COMMENT ON FUNCTION ventros.queue_message_send(uuid) IS
    'Queues the provider request (purpose message.send) of a queued outbound message, once; NULL when its channel type is not declared or not configured; 22023 outside the WhatsApp 24-hour window for a free-form message';

-- ---- the message.send completion handler ----------------------------------------

CREATE FUNCTION ventros.handle_message_send(r ventros.http_requests) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m ventros.messages;
    p ventros.channel_providers;
    provider_id text;
    failure text;
BEGIN
    SELECT * INTO m FROM ventros.messages x WHERE x.tenant_id = r.tenant_id AND x.id = r.correlation_id FOR UPDATE;
    IF NOT FOUND OR m.status <> 'queued' THEN
        RETURN;     -- deleted, or already moved on (a status webhook came first)
    END IF;
    IF r.status = 'succeeded' THEN
        SELECT x.* INTO p FROM ventros.channel_providers x JOIN ventros.channels c ON c.type = x.channel_type
         WHERE c.tenant_id = m.tenant_id AND c.id = m.channel_id;
        IF p.sent_id IS NOT NULL THEN
            EXECUTE format('SELECT %s($1)', p.sent_id::regproc) INTO provider_id USING ventros.json_body(r.response_body);
        END IF;
        -- An answer without an id (some WAHA releases answer 201 with an
        -- empty body) still means sent; the id stays unknown.
        PERFORM ventros.mark_message_sent(m.id, provider_id);
    ELSE
        failure := ventros.provider_error_text(r);
        PERFORM ventros.confirm_message_status('failed', message_id => m.id, error => failure);
        -- A configuration error (token, permission, API key, session) fails
        -- every send of the channel: it says so on the channel too.
        IF ventros.graph_error_class(r.response_status, r.response_body) = 'config'
           OR (r.retry_policy = 'waha' AND r.response_status IN (401, 404)) THEN
            UPDATE ventros.channels c SET last_error = left(failure, 1000), last_error_at = now(), version = c.version
             WHERE c.tenant_id = m.tenant_id AND c.id = m.channel_id;
        END IF;
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.handle_message_send(ventros.http_requests) IS
    'Completion handler of message.send: succeeded -> mark_message_sent with the provider id from the answer (message.sent); failed or dead -> the message fails with the provider''s error (message.failed), and a configuration error (Graph 190, 10, 200-299, 100/33; WAHA 401, 404) is kept on the channel (last_error, channel.updated)';

SELECT ventros.declare_http_request_handler('message.send', 'ventros.handle_message_send(ventros.http_requests)');

-- ---- media download (channels.md 1.4, 2.4, 3.1, 4.1) ------------------------------

-- The media of a message and its download, one row per message.  The bytes
-- are kept in the database (TOAST-compressed bytea, at most
-- ventros.http_max_response_size): they survive the provider's URL expiry
-- and are read with the same tenancy as the message.  The message itself is
-- touched once, when the download ends (metadata.media_download: status,
-- content type, size, sha256 or the error).
CREATE TABLE ventros.message_media (
    tenant_id       text        NOT NULL,
    message_id      uuid        NOT NULL,
    status          text        NOT NULL DEFAULT 'requested',
    content_type    text,
    size            bigint,
    sha256          text,
    expected_sha256 text,
    data            bytea,
    error           text,
    requested_at    timestamptz NOT NULL DEFAULT now(),
    downloaded_at   timestamptz,
    PRIMARY KEY (tenant_id, message_id),
    FOREIGN KEY (tenant_id, message_id) REFERENCES ventros.messages (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT message_media_status_known CHECK (status IN ('requested', 'downloaded', 'failed')),
    CONSTRAINT message_media_downloaded_complete CHECK (status <> 'downloaded'
                                                        OR (data IS NOT NULL AND size = length(data) AND sha256 IS NOT NULL))
);
COMMENT ON TABLE ventros.message_media IS
    'A message''s media download: requested, downloaded (bytes, content type, size, sha256 hex) or failed (error); the expected sha256 is the provider''s when known';
ALTER TABLE ventros.message_media ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.message_media FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_select ON ventros.message_media FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.message_media TO ventros_viewer;

-- Queues the download of a message's media.  SECURITY DEFINER like
-- queue_message_send (the request may carry the channel's credentials).
-- The body size a media request may bring back: the bytes themselves for a
-- download, the (small) JSON answer for a Cloud API lookup.
CREATE FUNCTION ventros.media_download_cap(req jsonb) RETURNS integer
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN req->>'step' = 'lookup' THEN NULL ELSE current_setting('ventros.media_max_size')::integer END
$$;
COMMENT ON FUNCTION ventros.media_download_cap(jsonb) IS
    'ventros.media_max_size for a media download request, NULL (the dispatcher''s default cap) for a Cloud API media lookup';

CREATE FUNCTION ventros.request_media_download(message_id uuid) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    m ventros.messages;
    ch ventros.channels;
    p ventros.channel_providers;
    req jsonb;
BEGIN
    SELECT * INTO m FROM ventros.messages x WHERE x.tenant_id = tenant AND x.id = message_id AND x.deleted_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'message % not found', message_id USING ERRCODE = 'P0002';
    END IF;
    IF m.content_type NOT IN ('image', 'video', 'audio', 'voice', 'document', 'sticker') THEN
        RAISE EXCEPTION 'message % has no media', message_id USING ERRCODE = '22023',
            DETAIL = format('Its content type is %s.', m.content_type);
    END IF;
    SELECT * INTO ch FROM ventros.channels c WHERE c.tenant_id = tenant AND c.id = m.channel_id;
    SELECT * INTO p FROM ventros.channel_providers x WHERE x.channel_type = ch.type;
    IF p.build_media IS NOT NULL THEN
        EXECUTE format('SELECT %s($1, $2)', p.build_media::regproc) INTO req USING ch, m;
    END IF;
    IF req IS NULL THEN
        IF m.media_url IS NULL THEN
            RAISE EXCEPTION 'message % has no media URL and its channel cannot look it up', message_id USING ERRCODE = '22023';
        END IF;
        req := jsonb_build_object('method', 'GET', 'url', m.media_url, 'headers', '{}'::jsonb);
    END IF;
    INSERT INTO ventros.message_media AS mm (tenant_id, message_id, content_type, expected_sha256)
    VALUES (tenant, m.id, m.media_mimetype,
            coalesce(m.metadata->>'media_sha256', m.metadata->'media'->>'sha256'))
    ON CONFLICT ON CONSTRAINT message_media_pkey DO UPDATE
       SET status = 'requested', error = NULL, requested_at = now();
    RETURN ventros.enqueue_provider_request(req, CASE WHEN req->>'step' = 'lookup' THEN 'media.lookup' ELSE 'media.download' END,
                                            m.id, CASE WHEN p.retry_policy = 'graph' THEN 'graph' ELSE 'transient' END,
                                            ventros.media_download_cap(req));
END
$$;
COMMENT ON FUNCTION ventros.request_media_download(uuid) IS
    'Queues the download of a message''s media (WAHA: GET its URL on the WAHA host with X-Api-Key; Cloud API: media lookup then download with the Bearer token; Messenger / Instagram: the CDN URL); the handlers fill ventros.message_media';

-- A download ended: the message says so once (metadata.media_download) and
-- takes the content type when it had none.
CREATE FUNCTION ventros.finish_media_download(mm ventros.message_media) RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE ventros.messages x
       SET metadata = coalesce(x.metadata, '{}') || jsonb_build_object('media_download', jsonb_strip_nulls(jsonb_build_object(
               'status', mm.status, 'content_type', mm.content_type, 'size', mm.size, 'sha256', mm.sha256, 'error', mm.error))),
           media_mimetype = coalesce(x.media_mimetype, mm.content_type), version = x.version
     WHERE x.tenant_id = mm.tenant_id AND x.id = mm.message_id
$$;
COMMENT ON FUNCTION ventros.finish_media_download(ventros.message_media) IS
    'Records the end of a media download on its message (metadata.media_download; media_mimetype when unknown); emits message.updated';

CREATE FUNCTION ventros.fail_media_download(r ventros.http_requests, why text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mm ventros.message_media;
BEGIN
    UPDATE ventros.message_media x SET status = 'failed', error = left(why, 1000)
     WHERE x.tenant_id = r.tenant_id AND x.message_id = r.correlation_id
    RETURNING * INTO mm;
    IF FOUND THEN
        PERFORM ventros.finish_media_download(mm);
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.fail_media_download(ventros.http_requests, text) IS 'Marks a media download failed, with why';

-- Cloud API step 1 answered: queue step 2 at once (the URL expires in about
-- five minutes), with the same Bearer header, remembering type and sha256.
CREATE FUNCTION ventros.handle_media_lookup(r ventros.http_requests) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    answer jsonb := ventros.json_body(r.response_body);
BEGIN
    IF r.status <> 'succeeded' THEN
        PERFORM ventros.fail_media_download(r, ventros.provider_error_text(r));
    ELSIF coalesce(answer->>'url', '') !~* '^https?://' THEN
        PERFORM ventros.fail_media_download(r, 'the media lookup answer has no url');
    ELSE
        UPDATE ventros.message_media mm
           SET content_type = coalesce(answer->>'mime_type', mm.content_type),
               expected_sha256 = coalesce(answer->>'sha256', mm.expected_sha256)
         WHERE mm.tenant_id = r.tenant_id AND mm.message_id = r.correlation_id;
        PERFORM ventros.enqueue_http_request(answer->>'url', 'GET', r.headers, NULL, 'media.download', r.correlation_id,
                                             retry_policy => r.retry_policy,
                                             max_response_size => current_setting('ventros.media_max_size')::integer);
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.handle_media_lookup(ventros.http_requests) IS
    'Completion handler of media.lookup (Cloud API step 1): queues the download of the returned URL with the same headers, keeping mime_type and sha256';

-- The bytes arrived: stored with their type, size and sha256; a sha256
-- announced by the provider that does not match fails the download.
-- Hex (Cloud API media lookup) and base64 (Cloud API webhooks) are accepted.
CREATE FUNCTION ventros.handle_media_download(r ventros.http_requests) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mm ventros.message_media;
    bytes bytea := coalesce(r.response_body, '');
    digest bytea;
BEGIN
    SELECT * INTO mm FROM ventros.message_media x
     WHERE x.tenant_id = r.tenant_id AND x.message_id = r.correlation_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    digest := sha256(bytes);
    IF r.status <> 'succeeded' THEN
        PERFORM ventros.fail_media_download(r, ventros.provider_error_text(r));
    ELSIF r.response_truncated THEN
        PERFORM ventros.fail_media_download(r, format('the media is larger than %s bytes (ventros.media_max_size)',
                                                      coalesce(r.max_response_size, current_setting('ventros.http_max_response_size')::integer)));
    ELSIF mm.expected_sha256 IS NOT NULL AND lower(mm.expected_sha256) <> encode(digest, 'hex')
          AND mm.expected_sha256 <> encode(digest, 'base64') THEN
        PERFORM ventros.fail_media_download(r, format('sha256 mismatch: expected %s, got %s', mm.expected_sha256,
                                                      encode(digest, 'hex')));
    ELSE
        UPDATE ventros.message_media x
           SET status = 'downloaded', data = bytes, size = length(bytes), sha256 = encode(digest, 'hex'), error = NULL,
               content_type = coalesce(nullif(split_part(r.response_headers->>'content-type', ';', 1), ''), x.content_type),
               downloaded_at = now()
         WHERE x.tenant_id = mm.tenant_id AND x.message_id = mm.message_id
        RETURNING * INTO mm;
        PERFORM ventros.finish_media_download(mm);
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.handle_media_download(ventros.http_requests) IS
    'Completion handler of media.download: stores the bytes in ventros.message_media with content type, size and sha256 (checked against the provider''s when known), or the failure; then metadata.media_download on the message';

SELECT ventros.declare_http_request_handler('media.lookup', 'ventros.handle_media_lookup(ventros.http_requests)');
SELECT ventros.declare_http_request_handler('media.download', 'ventros.handle_media_download(ventros.http_requests)');

GRANT EXECUTE ON FUNCTION ventros.json_body(bytea), ventros.contact_identity_of(uuid, text[]),
    ventros.reply_provider_id(ventros.messages), ventros.media_filename(ventros.messages),
    ventros.unsupported_content(text, text), ventros.no_recipient(text, uuid, text), ventros.waha_chat_id(uuid),
    ventros.waha_sent_id(jsonb), ventros.whatsapp_to(uuid), ventros.whatsapp_sent_id(jsonb),
    ventros.graph_messaging_sent_id(jsonb), ventros.graph_error_class(integer, bytea),
    ventros.classify_graph_answer(integer, bytea, boolean), ventros.classify_waha_answer(integer, bytea, boolean),
    ventros.check_message_window(ventros.messages, integer), ventros.graph_base(ventros.channels),
    ventros.graph_headers(ventros.channels, boolean) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.queue_message_send(uuid), ventros.request_media_download(uuid) TO ventros_agent;
GRANT SELECT ON ventros.channel_providers TO ventros_viewer;

-- ---- sql/91_whatsapp_templates.sql
-- whatsapp_templates (CRM): the message templates of a WhatsApp Cloud
-- channel, synced from the Cloud API (GET /<ver>/<waba_id>/message_templates,
-- a dispatcher request of purpose template.sync whose handler upserts them).
-- A child aggregate of the channel, like channel_labels: the engine gives it
-- versions, RLS, and the events whatsapp_template.created / .updated /
-- .deleted, so subscribers learn when Meta approves, pauses or rejects one.
--
-- send_message with a template validates the call's components against the
-- stored template before anything is queued (prepare_template_message):
-- the template must exist for the channel and language and be APPROVED, and
-- each component must carry exactly as many parameters as the template has
-- {{n}} placeholders (body, text header, URL / copy-code buttons) and the
-- media of a media header.

CREATE TABLE ventros.whatsapp_templates (
    id                   uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id            text        NOT NULL,
    version              integer     NOT NULL DEFAULT 1,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    deleted_at           timestamptz,
    channel_id           uuid        NOT NULL,
    name                 text        NOT NULL,
    language             text        NOT NULL,
    category             text,
    status               text        NOT NULL,
    provider_template_id text,
    parameter_format     text,
    components           jsonb       NOT NULL DEFAULT '[]',
    synced_at            timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, channel_id) REFERENCES ventros.channels (tenant_id, id),
    CONSTRAINT whatsapp_templates_name_format CHECK (name ~ '^[a-z0-9_]+$' AND length(name) <= 512),
    CONSTRAINT whatsapp_templates_language_format CHECK (language ~ '^[A-Za-z]{2,3}(_[A-Za-z0-9]{2,8})*$'),
    CONSTRAINT whatsapp_templates_status_format CHECK (status ~ '^[A-Z_]{1,40}$'),
    CONSTRAINT whatsapp_templates_category_size CHECK (length(category) <= 64),
    CONSTRAINT whatsapp_templates_components_array CHECK (jsonb_typeof(components) = 'array')
);
CREATE UNIQUE INDEX whatsapp_templates_unique ON ventros.whatsapp_templates (tenant_id, channel_id, name, language)
    WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.whatsapp_templates IS
    'A message template of a WhatsApp Cloud channel (name, language, category, status, components), synced from the Cloud API';

SELECT ventros.register_aggregate('whatsapp_template', 'ventros.whatsapp_templates', 'crm',
    privileges => '{"ventros_viewer": ["SELECT"], "ventros_admin": ["INSERT", "UPDATE", "DELETE"]}',
    description => 'A WhatsApp Cloud message template of a channel');

-- upsert_whatsapp_template: one template as the Cloud API lists it.
CREATE FUNCTION ventros.upsert_whatsapp_template(channel_id uuid, name text, language text, status text,
                                                 components jsonb DEFAULT '[]', category text DEFAULT NULL,
                                                 provider_template_id text DEFAULT NULL,
                                                 parameter_format text DEFAULT NULL)
RETURNS ventros.whatsapp_templates
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    channel_type text;
    existing ventros.whatsapp_templates;
    result ventros.whatsapp_templates;
BEGIN
    SELECT c.type INTO channel_type FROM ventros.channels c
     WHERE c.tenant_id = tenant AND c.id = upsert_whatsapp_template.channel_id AND c.deleted_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'channel % not found', channel_id USING ERRCODE = 'P0002';
    END IF;
    IF channel_type NOT IN ('whatsapp', 'whatsapp_business') THEN
        RAISE EXCEPTION 'channel % of type % has no WhatsApp templates', channel_id, channel_type USING ERRCODE = '22023',
            DETAIL = 'Templates exist on WhatsApp Cloud API channels only.';
    END IF;
    IF name IS NULL OR language IS NULL OR status IS NULL THEN
        RAISE EXCEPTION 'template name, language and status must not be null' USING ERRCODE = '23502';
    END IF;
    IF components IS NULL OR jsonb_typeof(components) <> 'array' THEN
        RAISE EXCEPTION 'template components must be a JSON array' USING ERRCODE = '22023';
    END IF;
    SELECT * INTO existing FROM ventros.whatsapp_templates t
     WHERE t.tenant_id = tenant AND t.channel_id = upsert_whatsapp_template.channel_id
       AND t.name = upsert_whatsapp_template.name AND t.language = upsert_whatsapp_template.language
       AND t.deleted_at IS NULL
       FOR UPDATE;
    IF FOUND THEN
        IF (existing.status, existing.category, existing.components, existing.provider_template_id, existing.parameter_format)
           IS NOT DISTINCT FROM (upper(upsert_whatsapp_template.status), upsert_whatsapp_template.category,
                                 upsert_whatsapp_template.components, upsert_whatsapp_template.provider_template_id,
                                 upsert_whatsapp_template.parameter_format) THEN
            RETURN existing;    -- unchanged: no new version, no event
        END IF;
        UPDATE ventros.whatsapp_templates t
           SET status = upper(upsert_whatsapp_template.status), category = upsert_whatsapp_template.category,
               components = upsert_whatsapp_template.components,
               provider_template_id = upsert_whatsapp_template.provider_template_id,
               parameter_format = upsert_whatsapp_template.parameter_format, synced_at = now(), version = existing.version
         WHERE t.tenant_id = tenant AND t.id = existing.id
        RETURNING * INTO result;
    ELSE
        INSERT INTO ventros.whatsapp_templates (channel_id, name, language, status, category, components,
                                                provider_template_id, parameter_format, synced_at)
        VALUES (channel_id, name, language, upper(status), category, components, provider_template_id,
                parameter_format, now())
        RETURNING * INTO result;
    END IF;
    RETURN result;
EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION 'invalid WhatsApp template: %', SQLERRM USING ERRCODE = '23514';
END
$$;
COMMENT ON FUNCTION ventros.upsert_whatsapp_template(uuid, text, text, text, jsonb, text, text, text) IS
    'Creates or changes a template of a WhatsApp Cloud channel (by name and language; an unchanged one writes nothing); emits whatsapp_template.created / .updated';

CREATE FUNCTION ventros.delete_whatsapp_template(template_id uuid, expected_version integer DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.delete_row('ventros.whatsapp_templates', 'whatsapp_template', template_id, expected_version) $$;
COMMENT ON FUNCTION ventros.delete_whatsapp_template(uuid, integer) IS 'Soft-deletes a template; emits whatsapp_template.deleted';

CREATE FUNCTION ventros.list_whatsapp_templates(channel_id uuid)
RETURNS SETOF ventros.whatsapp_templates
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.* FROM ventros.whatsapp_templates t
     WHERE t.tenant_id = ventros.require_tenant() AND t.channel_id = list_whatsapp_templates.channel_id
     ORDER BY t.name, t.language
     LIMIT current_setting('ventros.max_page_size')::integer
$$;
COMMENT ON FUNCTION ventros.list_whatsapp_templates(uuid) IS 'The live templates of a channel, by name and language';

-- ---- sync from the Cloud API --------------------------------------------------

CREATE FUNCTION ventros.template_sync_url(ch ventros.channels, after text DEFAULT NULL) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.graph_base(ch) || '/' || (ch.config->>'waba_id')
           || '/message_templates?fields=id,name,language,status,category,parameter_format,components&limit=100'
           || coalesce('&after=' || after, '')
$$;
COMMENT ON FUNCTION ventros.template_sync_url(ventros.channels, text) IS
    'GET <graph>/<version>/<waba_id>/message_templates with the fields we store, 100 a page, after a paging cursor';

CREATE FUNCTION ventros.sync_whatsapp_templates(channel_id uuid) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch ventros.channels;
BEGIN
    SELECT * INTO ch FROM ventros.channels c
     WHERE c.tenant_id = ventros.require_tenant() AND c.id = sync_whatsapp_templates.channel_id AND c.deleted_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'channel % not found', channel_id USING ERRCODE = 'P0002';
    END IF;
    IF ch.type NOT IN ('whatsapp', 'whatsapp_business') OR coalesce(ch.config->>'waba_id', '') = ''
       OR coalesce(ch.config->>'access_token', '') = '' THEN
        RAISE EXCEPTION 'channel % cannot sync WhatsApp templates', channel_id USING ERRCODE = '22023',
            HINT = 'Templates are synced for WhatsApp Cloud channels whose config has waba_id and access_token.';
    END IF;
    IF ch.config->>'waba_id' !~ '^[0-9A-Za-z_]{1,64}$' THEN
        RAISE EXCEPTION 'malformed waba_id "%"', left(ch.config->>'waba_id', 64) USING ERRCODE = '22P02';
    END IF;
    RETURN ventros.enqueue_http_request(ventros.template_sync_url(ch), 'GET', ventros.graph_headers(ch, false), NULL,
                                        'template.sync', ch.id, retry_policy => 'graph');
END
$$;
COMMENT ON FUNCTION ventros.sync_whatsapp_templates(uuid) IS
    'Queues the sync of a WhatsApp Cloud channel''s templates from GET /<ver>/<waba_id>/message_templates (purpose template.sync); returns the request id';

-- The template.sync handler: upserts every listed template, follows the
-- paging cursor, and -- when the whole listing fitted in one page -- deletes
-- the channel's templates Meta no longer lists.
CREATE FUNCTION ventros.handle_template_sync(r ventros.http_requests) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    answer jsonb := ventros.json_body(r.response_body);
    ch ventros.channels;
    t jsonb;
    seen uuid[] := '{}';
    gone uuid;
BEGIN
    IF r.status <> 'succeeded' THEN
        RETURN;     -- the request keeps its error (http_requests.last_error); nothing changes
    END IF;
    IF jsonb_typeof(answer->'data') <> 'array' THEN
        RAISE EXCEPTION 'message_templates answer has no data array' USING ERRCODE = '22P02';
    END IF;
    SELECT * INTO ch FROM ventros.channels c WHERE c.tenant_id = r.tenant_id AND c.id = r.correlation_id AND c.deleted_at IS NULL;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    FOR t IN SELECT * FROM jsonb_array_elements(answer->'data') LOOP
        seen := seen || (ventros.upsert_whatsapp_template(ch.id, t->>'name', t->>'language', t->>'status',
                                                          coalesce(t->'components', '[]'), t->>'category', t->>'id',
                                                          t->>'parameter_format')).id;
    END LOOP;
    IF answer->'paging' ? 'next' AND answer->'paging'->'cursors'->>'after' IS NOT NULL THEN
        PERFORM ventros.enqueue_http_request(ventros.template_sync_url(ch, answer->'paging'->'cursors'->>'after'), 'GET',
                                             r.headers, NULL, 'template.sync', ch.id, retry_policy => r.retry_policy);
    ELSIF r.url !~ '[?&]after=' THEN
        FOR gone IN SELECT x.id FROM ventros.whatsapp_templates x
                     WHERE x.tenant_id = r.tenant_id AND x.channel_id = ch.id AND x.deleted_at IS NULL
                       AND x.id <> ALL (seen) LOOP
            PERFORM ventros.delete_whatsapp_template(gone);
        END LOOP;
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.handle_template_sync(ventros.http_requests) IS
    'Completion handler of template.sync: upserts the listed templates, queues the next page, and deletes templates no longer listed when the listing had one page';

SELECT ventros.declare_http_request_handler('template.sync', 'ventros.handle_template_sync(ventros.http_requests)');

-- ---- sending a template ------------------------------------------------------

-- The distinct placeholders {{1}}, {{name}} of a template text, in order of first use.
CREATE FUNCTION ventros.template_placeholders(txt text) RETURNS text[]
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(p ORDER BY first), '{}')
      FROM (SELECT m[1] AS p, min(n) AS first
              FROM regexp_matches(coalesce(txt, ''), '\{\{\s*([A-Za-z0-9_]+)\s*\}\}', 'g') WITH ORDINALITY AS x(m, n)
             GROUP BY m[1]) s
$$;
COMMENT ON FUNCTION ventros.template_placeholders(text) IS 'The distinct {{n}} / {{name}} placeholders of a template text';

-- Validates the components of a template send against the stored template
-- and returns {"text": the body with its variables, "template": {name,
-- language, components}} for send_message.
CREATE FUNCTION ventros.prepare_template_message(channel_id uuid, template_name text, template_language text,
                                                 template_components jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    tpl ventros.whatsapp_templates;
    matches integer;
    c jsonb;
    given jsonb := coalesce(template_components, '[]');
    used integer[] := '{}';
    idx integer;
    want integer;
    what text;
    fmt text;
    params jsonb;
    body_text text;
    b jsonb;
    b_index integer;
    body_params jsonb := '[]';
    p text;
    pos integer;
BEGIN
    IF jsonb_typeof(given) <> 'array' THEN
        RAISE EXCEPTION 'template components must be a JSON array' USING ERRCODE = '22023';
    END IF;
    SELECT count(*) INTO matches FROM ventros.whatsapp_templates t
     WHERE t.tenant_id = tenant AND t.channel_id = prepare_template_message.channel_id AND t.name = template_name
       AND (template_language IS NULL OR t.language = template_language) AND t.deleted_at IS NULL;
    IF matches = 0 THEN
        RAISE EXCEPTION 'WhatsApp template % (%) not found on channel %', template_name, coalesce(template_language, 'any language'),
                channel_id
            USING ERRCODE = 'P0002', HINT = 'Sync the channel''s templates (ventros.sync_whatsapp_templates).';
    ELSIF matches > 1 THEN
        RAISE EXCEPTION 'WhatsApp template % exists in % languages', template_name, matches USING ERRCODE = '22023',
            HINT = 'Pass template_language.';
    END IF;
    SELECT * INTO tpl FROM ventros.whatsapp_templates t
     WHERE t.tenant_id = tenant AND t.channel_id = prepare_template_message.channel_id AND t.name = template_name
       AND (template_language IS NULL OR t.language = template_language) AND t.deleted_at IS NULL;
    IF tpl.status <> 'APPROVED' THEN
        RAISE EXCEPTION 'WhatsApp template % (%) is %', tpl.name, tpl.language, lower(tpl.status) USING ERRCODE = '22023',
            HINT = 'Only approved templates are sent.';
    END IF;
    -- Each component the template defines with variables must be given once,
    -- with exactly its number of parameters; nothing else may be given.
    FOR c IN SELECT * FROM jsonb_array_elements(tpl.components) LOOP
        CASE upper(c->>'type')
            WHEN 'HEADER' THEN
                fmt := upper(coalesce(c->>'format', 'TEXT'));
                want := CASE WHEN fmt = 'TEXT' THEN cardinality(ventros.template_placeholders(c->>'text'))
                             WHEN fmt IN ('IMAGE', 'VIDEO', 'DOCUMENT') THEN 1 ELSE 0 END;
                what := 'header';
                SELECT x.n - 1, x.e->'parameters' INTO idx, params FROM jsonb_array_elements(given) WITH ORDINALITY x(e, n)
                 WHERE lower(x.e->>'type') = 'header';
                IF fmt IN ('IMAGE', 'VIDEO', 'DOCUMENT') AND params IS NOT NULL
                   AND (lower(params->0->>'type') IS DISTINCT FROM lower(fmt)
                        OR NOT (params->0->lower(fmt) ? 'link' OR params->0->lower(fmt) ? 'id')) THEN
                    RAISE EXCEPTION 'template % header needs a % parameter with a link or id', tpl.name, lower(fmt)
                        USING ERRCODE = '22023';
                END IF;
            WHEN 'BODY' THEN
                body_text := c->>'text';
                want := cardinality(ventros.template_placeholders(body_text));
                what := 'body';
                SELECT x.n - 1, x.e->'parameters' INTO idx, params FROM jsonb_array_elements(given) WITH ORDINALITY x(e, n)
                 WHERE lower(x.e->>'type') = 'body';
                body_params := coalesce(params, '[]');
            WHEN 'BUTTONS' THEN
                FOR b, b_index IN SELECT x.e, x.n - 1 FROM jsonb_array_elements(c->'buttons') WITH ORDINALITY x(e, n) LOOP
                    want := CASE upper(b->>'type') WHEN 'URL' THEN cardinality(ventros.template_placeholders(b->>'url'))
                                                   WHEN 'COPY_CODE' THEN 1 ELSE 0 END;
                    what := format('button %s', b_index);
                    idx := NULL;
                    params := NULL;
                    SELECT x.n - 1, x.e->'parameters' INTO idx, params FROM jsonb_array_elements(given) WITH ORDINALITY x(e, n)
                     WHERE lower(x.e->>'type') = 'button' AND (x.e->>'index')::integer = b_index;
                    IF coalesce(jsonb_array_length(params), 0) <> want THEN
                        RAISE EXCEPTION 'template % % expects % parameter(s), got %', tpl.name, what, want,
                                coalesce(jsonb_array_length(params), 0)
                            USING ERRCODE = '22023';
                    END IF;
                    IF idx IS NOT NULL THEN
                        used := used || idx;
                    END IF;
                END LOOP;
                CONTINUE;
            ELSE
                CONTINUE;   -- FOOTER and others take no parameters
        END CASE;
        IF coalesce(jsonb_array_length(params), 0) <> want THEN
            RAISE EXCEPTION 'template % % expects % parameter(s), got %', tpl.name, what, want,
                    coalesce(jsonb_array_length(params), 0)
                USING ERRCODE = '22023';
        END IF;
        IF idx IS NOT NULL THEN
            used := used || idx;
        END IF;
        idx := NULL;
        params := NULL;
    END LOOP;
    SELECT min(x.n - 1) INTO idx FROM jsonb_array_elements(given) WITH ORDINALITY x(e, n)
     WHERE NOT ((x.n - 1)::integer = ANY (used));
    IF idx IS NOT NULL THEN
        RAISE EXCEPTION 'template % has no variables for component %', tpl.name, given->idx USING ERRCODE = '22023';
    END IF;
    -- The text kept on the message: the body with its variables filled in.
    pos := 0;
    FOREACH p IN ARRAY ventros.template_placeholders(body_text) LOOP
        body_text := replace(body_text, '{{' || p || '}}',
                             coalesce((SELECT e->>'text' FROM jsonb_array_elements(body_params) e WHERE e->>'parameter_name' = p),
                                      body_params->(CASE WHEN p ~ '^[0-9]+$' THEN p::integer - 1 ELSE pos END)->>'text',
                                      ''));
        pos := pos + 1;
    END LOOP;
    RETURN jsonb_build_object('text', coalesce(nullif(body_text, ''), tpl.name),
                              'template', jsonb_build_object('name', tpl.name, 'language', tpl.language,
                                                             'components', given));
END
$$;
COMMENT ON FUNCTION ventros.prepare_template_message(uuid, text, text, jsonb) IS
    'Validates a template send (template exists for the channel and language, APPROVED, each component with as many parameters as the template has variables, media headers with a link or id) and returns {text, template} for send_message';

GRANT EXECUTE ON FUNCTION ventros.list_whatsapp_templates(uuid), ventros.template_placeholders(text),
    ventros.prepare_template_message(uuid, text, text, jsonb), ventros.template_sync_url(ventros.channels, text)
    TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.upsert_whatsapp_template(uuid, text, text, text, jsonb, text, text, text),
    ventros.delete_whatsapp_template(uuid, integer), ventros.sync_whatsapp_templates(uuid) TO ventros_admin;

-- ---- sql/92_webhook_deliveries.sql
-- Webhook deliveries (design channels.md section 6): every committed event
-- that matches an active subscription of its tenant becomes exactly one
-- delivery, a signed CloudEvents POST retried on the section 6.2 schedule.
--
-- Fan-out: src/webhook_fanout.c, called by the emitter for every event,
-- answers "may a subscription of this tenant want it?" from a backend-local
-- cache and only then calls ventros.webhook_fanout() below, in the event's
-- transaction: the delivery commits or rolls back with the event, and no
-- broker is involved.  The cache is dropped by the triggers at the end of
-- this file whenever a subscription changes what it receives.
--
-- A delivery is one row here and one request of the HTTP queue
-- (ventros.http_requests, purpose webhook.delivery, correlation_id = the
-- delivery's id) which the dispatcher sends, retries and records.  The
-- request carries the CloudEvents body and the fixed headers; the signature
-- (X-Ventros-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "t.body")>),
-- the attempt number and the subscription's custom headers are added when
-- each attempt is claimed (ventros.webhook_attempt_headers, a declared
-- preparer), so the secret never sits on the queue and every attempt is
-- signed afresh.  When the request is final, ventros.webhook_delivery_completed
-- counts it on the subscription and disables the subscription on 410 Gone
-- or after 5 days of nothing but failures (also checked by the hourly
-- ventros.tick_webhooks, sql/98_webhook_jobs.sql).  A deactivated or
-- deleted subscription stops its deliveries still waiting for an attempt.
--
-- A redelivery (ventros.redeliver_webhook) is a new delivery of the same
-- event (same CloudEvents id and body) with its own attempts, pointing at
-- the one it repeats.

-- pgcrypto's HMAC, reached through its schema whatever it is.
DO $pgcrypto$
DECLARE
    s text := (SELECT n.nspname FROM pg_catalog.pg_extension e
               JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pgcrypto');
BEGIN
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION ventros.hmac_sha256_hex(key text, message bytea) RETURNS text
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp
        AS 'SELECT pg_catalog.encode(%1$I.hmac(message, pg_catalog.convert_to(key, ''UTF8''), ''sha256''), ''hex'')'$f$, s);
END
$pgcrypto$;
COMMENT ON FUNCTION ventros.hmac_sha256_hex(text, bytea) IS 'Lowercase hex HMAC-SHA256 of a message under a UTF-8 key (pgcrypto)';

CREATE FUNCTION ventros.webhook_signature(secret text, body bytea, signed_at timestamptz DEFAULT now(),
                                          previous_secret text DEFAULT NULL)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 't=' || t || ',v1=' || ventros.hmac_sha256_hex(secret, convert_to(t || '.', 'UTF8') || coalesce(body, ''::bytea))
           || coalesce(',v1=' || ventros.hmac_sha256_hex(previous_secret, convert_to(t || '.', 'UTF8') || coalesce(body, ''::bytea)), '')
      FROM (SELECT floor(extract(epoch FROM signed_at))::bigint::text AS t) s
$$;
COMMENT ON FUNCTION ventros.webhook_signature(text, bytea, timestamptz, text) IS
    'X-Ventros-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "t.body")>, and a second v1 for the previous secret while rotating';

-- ventros.webhook_retry_schedule (a GUC of src/webhook_fanout.c, checked
-- there, so this never fails) as intervals.
CREATE FUNCTION ventros.webhook_retry_schedule() RETURNS interval[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(make_interval(secs => m[1]::float8 * CASE m[2] WHEN 'ms' THEN 0.001 WHEN 's' THEN 1
                                                                  WHEN 'min' THEN 60 WHEN 'h' THEN 3600 ELSE 86400 END)
                              ORDER BY x.n), '{}')
      FROM unnest(string_to_array(current_setting('ventros.webhook_retry_schedule'), ',')) WITH ORDINALITY AS x(item, n),
           LATERAL regexp_match(x.item, '^\s*([0-9]*\.?[0-9]*)\s*([a-z]+)\s*$') AS m
$$;
COMMENT ON FUNCTION ventros.webhook_retry_schedule() IS
    'The delays between attempts of a new webhook delivery (ventros.webhook_retry_schedule), without jitter';

CREATE TABLE ventros.webhook_deliveries (
    tenant_id       text        NOT NULL,
    id              uuid        NOT NULL DEFAULT gen_random_uuid(),
    subscription_id uuid        NOT NULL,
    event_id        uuid        NOT NULL,
    event_type      text        NOT NULL,
    aggregate_type  text        NOT NULL,
    aggregate_id    uuid        NOT NULL,
    request_id      uuid        NOT NULL,
    redelivery_of   uuid,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, subscription_id) REFERENCES ventros.webhook_subscriptions (tenant_id, id),
    -- pruning the HTTP queue (ventros.prune_http_requests) prunes the log
    FOREIGN KEY (tenant_id, request_id) REFERENCES ventros.http_requests (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, redelivery_of) REFERENCES ventros.webhook_deliveries (tenant_id, id)
        ON DELETE SET NULL (redelivery_of)
);
-- The fan-out writes one delivery per (subscription, event); redeliveries add more.
CREATE UNIQUE INDEX webhook_deliveries_once ON ventros.webhook_deliveries (tenant_id, subscription_id, event_id)
    WHERE redelivery_of IS NULL;
CREATE INDEX webhook_deliveries_by_subscription ON ventros.webhook_deliveries
    (tenant_id, subscription_id, created_at DESC, id DESC);
CREATE INDEX webhook_deliveries_by_event ON ventros.webhook_deliveries (tenant_id, event_id);
CREATE INDEX webhook_deliveries_by_request ON ventros.webhook_deliveries (tenant_id, request_id);
CREATE INDEX webhook_deliveries_redelivery ON ventros.webhook_deliveries (tenant_id, redelivery_of)
    WHERE redelivery_of IS NOT NULL;
COMMENT ON TABLE ventros.webhook_deliveries IS
    'One delivery of an event to a webhook subscription; its attempts are the HTTP request request_id';
COMMENT ON COLUMN ventros.webhook_deliveries.event_id IS 'The outbox event id: the CloudEvents id, the same on every attempt and redelivery';
COMMENT ON COLUMN ventros.webhook_deliveries.request_id IS 'The ventros.http_requests row that carries the attempts';
COMMENT ON COLUMN ventros.webhook_deliveries.redelivery_of IS 'For a manual redelivery: the delivery it repeats';

ALTER TABLE ventros.webhook_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.webhook_deliveries FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_select ON ventros.webhook_deliveries FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
CREATE POLICY ventros_tenant_insert ON ventros.webhook_deliveries FOR INSERT
    WITH CHECK (tenant_id = (SELECT ventros.current_tenant()));
-- Like the HTTP queue, the log is for tenant administrators.
GRANT SELECT, INSERT ON ventros.webhook_deliveries TO ventros_admin;

-- The delivery log: a delivery with the state of its attempts.
CREATE VIEW ventros.webhook_delivery_log WITH (security_invoker = true) AS
    SELECT d.tenant_id, d.id, d.subscription_id, d.event_id, d.event_type, d.aggregate_type, d.aggregate_id,
           d.redelivery_of, d.request_id, q.url,
           CASE q.status WHEN 'in_flight' THEN 'pending' WHEN 'dead' THEN 'failed' ELSE q.status END AS status,
           q.status AS request_status, q.attempts, q.max_attempts, q.last_attempt_at,
           CASE WHEN q.status = 'pending' THEN q.next_attempt_at END AS next_attempt_at,
           q.response_status, q.last_error, q.response_body, q.response_truncated, q.completed_at, d.created_at
      FROM ventros.webhook_deliveries d
      JOIN ventros.http_requests q ON q.tenant_id = d.tenant_id AND q.id = d.request_id;
COMMENT ON VIEW ventros.webhook_delivery_log IS
    'Webhook deliveries with their status (pending, succeeded, failed), attempts, last answer or error and next attempt';
GRANT SELECT ON ventros.webhook_delivery_log TO ventros_admin;

-- The CloudEvents 1.0 structured-mode body of an event (channels.md 6.1).
CREATE FUNCTION ventros.webhook_cloudevent(tenant_id text, event_id uuid, event_type text, aggregate_type text,
                                           aggregate_id uuid, payload jsonb, occurred_at timestamptz,
                                           aggregate_version integer DEFAULT NULL)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- compact JSON in the order of the specification (jsonb would reorder it)
    SELECT '{"specversion":"1.0","id":' || to_json($2::text)
        || ',"source":' || to_json('/ventros/tenants/' || $1)
        || ',"type":' || to_json('com.ventros.' || $3)
        || ',"subject":' || to_json(coalesce((SELECT c.relname::text FROM ventros.aggregates a
                                               JOIN pg_class c ON c.oid = a.table_name
                                              WHERE a.aggregate = $4), $4) || '/' || $5)
        || ',"time":' || to_json(to_char($7 AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
        || ',"datacontenttype":"application/json","tenantid":' || to_json($1)
        || coalesce(',"aggregateversion":' || $8, '')
        || ',"data":' || coalesce($6::text, 'null') || '}'
$$;
COMMENT ON FUNCTION ventros.webhook_cloudevent(text, uuid, text, text, uuid, jsonb, timestamptz, integer) IS
    'The CloudEvents 1.0 JSON body of a webhook delivery: id = event id, type com.ventros.<event>, source /ventros/tenants/<tenant>, extensions tenantid and aggregateversion';

-- The headers stored on the request; the rest are added per attempt.
CREATE FUNCTION ventros.webhook_request_headers(event_id uuid, delivery_id uuid) RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object('Content-Type', 'application/cloudevents+json; charset=utf-8',
                              'User-Agent', 'Ventros-Webhooks/1.0',
                              'X-Ventros-Event-Id', event_id::text,
                              'X-Ventros-Delivery-Id', delivery_id::text)
$$;
COMMENT ON FUNCTION ventros.webhook_request_headers(uuid, uuid) IS
    'The fixed headers of a webhook delivery (content type, user agent, event and delivery ids)';

-- Called by src/webhook_fanout.c for an event some active subscription of
-- its tenant may want, as the owner of the tables (no row security), in the
-- event's transaction.  Matches exactly and writes one delivery and one
-- request per matching subscription.  Returns how many.
CREATE FUNCTION ventros.webhook_fanout(event_tenant text, event_id uuid, event_type text, aggregate_type text,
                                       aggregate_id uuid, aggregate_version integer, payload jsonb,
                                       occurred_at timestamptz)
RETURNS integer
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH subs AS MATERIALIZED (
        SELECT w.id, w.url, w.retry_count, w.timeout_seconds, gen_random_uuid() AS delivery_id
          FROM ventros.webhook_subscriptions w
         WHERE w.tenant_id = $1 AND w.active AND w.deleted_at IS NULL
           AND (ventros.webhook_event_matches(w.events, $3)
                OR (w.subscribe_contact_events AND $3 = 'contact_event.created'
                    AND (cardinality(w.contact_event_types) = 0 OR $7->>'event_type' = ANY (w.contact_event_types))
                    AND (cardinality(w.contact_event_categories) = 0
                         OR $7->>'category' = ANY (w.contact_event_categories))))),
    body AS MATERIALIZED (
        SELECT convert_to(ventros.webhook_cloudevent($1, $2, $3, $4, $5, $7, $8, $6), 'UTF8') AS bytes,
               ventros.webhook_retry_schedule() AS schedule
         WHERE EXISTS (SELECT 1 FROM subs)),
    requests AS (
        INSERT INTO ventros.http_requests (tenant_id, id, method, url, headers, body, purpose, correlation_id,
                                           retry_policy, retry_schedule, max_attempts, timeout_ms)
        SELECT $1, gen_random_uuid(), 'POST', s.url, ventros.webhook_request_headers($2, s.delivery_id), b.bytes,
               'webhook.delivery', s.delivery_id, 'any', b.schedule,
               1 + least(s.retry_count, cardinality(b.schedule)), s.timeout_seconds * 1000
          FROM subs s, body b
        RETURNING id, correlation_id),
    deliveries AS (
        INSERT INTO ventros.webhook_deliveries (tenant_id, id, subscription_id, event_id, event_type, aggregate_type,
                                                aggregate_id, request_id)
        SELECT $1, s.delivery_id, s.id, $2, $3, $4, $5, r.id
          FROM subs s JOIN requests r ON r.correlation_id = s.delivery_id
        RETURNING 1)
    SELECT count(*)::integer FROM deliveries
$$;
COMMENT ON FUNCTION ventros.webhook_fanout(text, uuid, text, text, uuid, integer, jsonb, timestamptz) IS
    'Internal (the emitter, as table owner): one delivery per active subscription of the tenant that selects the event';

-- The preparer of webhook.delivery requests: the headers of one attempt.
-- Custom headers and secrets are the subscription's current ones; Ventros'
-- own headers win over custom ones.
CREATE FUNCTION ventros.webhook_attempt_headers(r ventros.http_requests) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT jsonb_object_agg(h.key, h.value) FROM jsonb_each(w.headers) h
                      WHERE jsonb_typeof(h.value) = 'string'
                        AND lower(h.key) NOT IN ('content-type', 'content-length', 'user-agent', 'host',
                                                 'transfer-encoding', 'connection', 'expect')
                        AND lower(h.key) NOT LIKE 'x-ventros-%'), '{}')
           || r.headers
           || jsonb_build_object('X-Ventros-Attempt', r.attempts::text,
                                 'X-Ventros-Signature',
                                 ventros.webhook_signature(w.secret, r.body, now(),
                                     CASE WHEN w.previous_secret_expires_at > now() THEN w.previous_secret END))
      FROM ventros.webhook_deliveries d
      JOIN ventros.webhook_subscriptions w ON w.tenant_id = d.tenant_id AND w.id = d.subscription_id
     WHERE d.tenant_id = r.tenant_id AND d.id = r.correlation_id AND w.secret IS NOT NULL
$$;
COMMENT ON FUNCTION ventros.webhook_attempt_headers(ventros.http_requests) IS
    'Dispatcher (preparer of webhook.delivery): stored headers + custom headers + X-Ventros-Attempt + a fresh X-Ventros-Signature';

-- A subscription deactivated or deleted (by hand, on 410, after 5 days of
-- failures) stops its deliveries still waiting for an attempt; an attempt
-- already in flight finishes.
CREATE FUNCTION ventros.webhook_subscription_stopped() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE ventros.http_requests q
       SET status = 'failed', completed_at = now(), updated_at = now(),
           last_error = CASE WHEN NEW.deleted_at IS NOT NULL THEN 'not sent: the subscription was deleted'
                             ELSE 'not sent: the subscription was deactivated' END
      FROM ventros.webhook_deliveries d
     WHERE d.tenant_id = NEW.tenant_id AND d.subscription_id = NEW.id
       AND q.tenant_id = d.tenant_id AND q.id = d.request_id AND q.status = 'pending';
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.webhook_subscription_stopped() IS
    'Trigger: a deactivated or deleted subscription''s deliveries waiting for an attempt fail without being sent';

-- Deactivates a subscription (emits webhook_subscription.deactivated).
CREATE FUNCTION ventros.disable_webhook_subscription(webhook_subscription_id uuid, reason text) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
BEGIN
    UPDATE ventros.webhook_subscriptions w SET active = false, version = w.version
     WHERE w.tenant_id = tenant AND w.id = webhook_subscription_id AND w.active AND w.deleted_at IS NULL;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    RAISE LOG 'webhook subscription % of tenant % disabled: %', webhook_subscription_id, tenant, reason;
    RETURN true;
END
$$;
COMMENT ON FUNCTION ventros.disable_webhook_subscription(uuid, text) IS
    'Deactivates a subscription (webhook_subscription.deactivated), logging why; false when it was not active';

-- Time is a parameter: subscriptions of the acting tenant whose deliveries
-- have all failed since before now - failing_for are disabled.
CREATE FUNCTION ventros.disable_failing_webhook_subscriptions(now timestamptz DEFAULT now(),
                                                              failing_for interval DEFAULT '5 days')
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer := 0;
    sub uuid;
BEGIN
    FOR sub IN SELECT w.id FROM ventros.webhook_subscriptions w
                WHERE w.tenant_id = ventros.require_tenant() AND w.active AND w.deleted_at IS NULL
                  AND w.failing_since <= disable_failing_webhook_subscriptions.now - failing_for
                ORDER BY w.id LOOP
        IF ventros.disable_webhook_subscription(sub, format('every delivery failed since %s', failing_for)) THEN
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.disable_failing_webhook_subscriptions(timestamptz, interval) IS
    'Disables the acting tenant''s subscriptions whose deliveries have all failed for failing_for (default 5 days) at now; returns how many';

-- One tick for every tenant, for a scheduler (pg_cron): platform admins.
CREATE FUNCTION ventros.tick_webhooks(now timestamptz DEFAULT now(), failing_for interval DEFAULT '5 days')
RETURNS TABLE (tenant_id text, disabled integer, error text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET ventros.tenant = ''
AS $$
DECLARE
    t text;
BEGIN
    PERFORM ventros.require_platform_admin();
    FOR t IN SELECT DISTINCT w.tenant_id FROM ventros.webhook_subscriptions w
              WHERE w.active AND w.deleted_at IS NULL AND w.failing_since <= tick_webhooks.now - failing_for
              ORDER BY 1 LOOP
        PERFORM set_config('ventros.tenant', t, true);
        tenant_id := t;
        error := NULL;
        BEGIN
            disabled := ventros.disable_failing_webhook_subscriptions(tick_webhooks.now, failing_for);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS error = MESSAGE_TEXT;
            disabled := NULL;
            RAISE WARNING 'webhook tick of tenant % failed: %', t, error;
        END;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION ventros.tick_webhooks(timestamptz, interval) IS
    'Disables, in every tenant, subscriptions failing every delivery for failing_for (default 5 days); platform administrators only (42501)';

-- The completion handler of webhook.delivery requests (run by the
-- dispatcher as the request's tenant when the request is final).
CREATE FUNCTION ventros.webhook_delivery_completed(r ventros.http_requests) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sub uuid;
    gone boolean;
BEGIN
    SELECT d.subscription_id, w.deleted_at IS NOT NULL INTO sub, gone
      FROM ventros.webhook_deliveries d
      JOIN ventros.webhook_subscriptions w ON w.tenant_id = d.tenant_id AND w.id = d.subscription_id
     WHERE d.tenant_id = r.tenant_id AND d.id = r.correlation_id;
    IF sub IS NULL THEN
        RAISE EXCEPTION 'webhook delivery % not found', r.correlation_id USING ERRCODE = 'P0002';
    END IF;
    IF gone THEN
        RETURN;                 -- a deleted subscription keeps its last counters
    END IF;
    PERFORM ventros.record_webhook_delivery(sub, r.status = 'succeeded');
    IF r.status = 'failed' AND r.response_status = 410 THEN
        PERFORM ventros.disable_webhook_subscription(sub, 'the receiver answered 410 Gone');
    ELSIF r.status <> 'succeeded' THEN
        PERFORM ventros.disable_failing_webhook_subscriptions(now());
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.webhook_delivery_completed(ventros.http_requests) IS
    'Handler of webhook.delivery: counts the outcome on the subscription; 410 Gone or 5 days of failures disable it';

SELECT ventros.declare_http_request_handler('webhook.delivery',
    'ventros.webhook_delivery_completed(ventros.http_requests)');
SELECT ventros.declare_http_request_preparer('webhook.delivery',
    'ventros.webhook_attempt_headers(ventros.http_requests)');

-- ---- commands and queries ----------------------------------------------

CREATE FUNCTION ventros.redeliver_webhook(delivery_id uuid) RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    d ventros.webhook_deliveries;
    q ventros.http_requests;
    w ventros.webhook_subscriptions;
    schedule interval[] := ventros.webhook_retry_schedule();
    new_id uuid := gen_random_uuid();
    request uuid := gen_random_uuid();
BEGIN
    SELECT * INTO d FROM ventros.webhook_deliveries x WHERE x.tenant_id = tenant AND x.id = delivery_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'webhook delivery % not found', delivery_id USING ERRCODE = 'P0002';
    END IF;
    SELECT * INTO q FROM ventros.http_requests x WHERE x.tenant_id = tenant AND x.id = d.request_id;
    IF q.status NOT IN ('succeeded', 'failed', 'dead') THEN
        RAISE EXCEPTION 'webhook delivery % is still being delivered', delivery_id
            USING ERRCODE = '55000', HINT = 'Redeliver once it has succeeded or failed.';
    END IF;
    SELECT * INTO w FROM ventros.webhook_subscriptions x WHERE x.tenant_id = tenant AND x.id = d.subscription_id;
    IF NOT w.active OR w.deleted_at IS NOT NULL THEN
        RAISE EXCEPTION 'webhook subscription % is not active', d.subscription_id
            USING ERRCODE = '55000', HINT = 'Activate the subscription before redelivering.';
    END IF;
    INSERT INTO ventros.http_requests (tenant_id, id, method, url, headers, body, purpose, correlation_id,
                                       retry_policy, retry_schedule, max_attempts, timeout_ms)
    VALUES (tenant, request, 'POST', w.url, ventros.webhook_request_headers(d.event_id, new_id), q.body,
            'webhook.delivery', new_id, 'any', schedule, 1 + least(w.retry_count, cardinality(schedule)),
            w.timeout_seconds * 1000);
    INSERT INTO ventros.webhook_deliveries (tenant_id, id, subscription_id, event_id, event_type, aggregate_type,
                                            aggregate_id, request_id, redelivery_of)
    VALUES (tenant, new_id, d.subscription_id, d.event_id, d.event_type, d.aggregate_type, d.aggregate_id, request,
            d.id);
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION ventros.redeliver_webhook(uuid) IS
    'Sends a finished delivery''s event again (same CloudEvents id and body) as a new delivery with its own attempts; returns its id';

CREATE FUNCTION ventros.get_webhook_delivery(delivery_id uuid) RETURNS ventros.webhook_delivery_log
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.webhook_delivery_log;
BEGIN
    SELECT * INTO result FROM ventros.webhook_delivery_log l
     WHERE l.tenant_id = ventros.require_tenant() AND l.id = delivery_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'webhook delivery % not found', delivery_id USING ERRCODE = 'P0002';
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.get_webhook_delivery(uuid) IS 'One delivery with its attempts'' state, or P0002';

-- Newest first; pass the last row's created_at and id for the next page.
CREATE FUNCTION ventros.list_webhook_deliveries(
    webhook_subscription_id uuid        DEFAULT NULL,
    status                  text        DEFAULT NULL,
    event_id                uuid        DEFAULT NULL,
    before_created_at       timestamptz DEFAULT NULL,
    before_id               uuid        DEFAULT NULL,
    page_size               integer     DEFAULT 50)
RETURNS SETOF ventros.webhook_delivery_log
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT l.* FROM ventros.webhook_delivery_log l
     WHERE l.tenant_id = ventros.require_tenant()
       AND (list_webhook_deliveries.webhook_subscription_id IS NULL
            OR l.subscription_id = list_webhook_deliveries.webhook_subscription_id)
       AND (list_webhook_deliveries.status IS NULL
            OR l.status = ventros.require_value(list_webhook_deliveries.status, ARRAY['pending', 'succeeded', 'failed'],
                                                'webhook delivery status'))
       AND (list_webhook_deliveries.event_id IS NULL OR l.event_id = list_webhook_deliveries.event_id)
       AND (before_id IS NULL OR (l.created_at, l.id) < (before_created_at, before_id))
     ORDER BY l.created_at DESC, l.id DESC
     LIMIT ventros.check_page_size(page_size)
$$;
COMMENT ON FUNCTION ventros.list_webhook_deliveries(uuid, text, uuid, timestamptz, uuid, integer) IS
    'Deliveries of the acting tenant (of one subscription, status or event), newest first, one keyset page at a time';

-- ---- the fan-out cache's invalidation -----------------------------------

CREATE FUNCTION ventros.webhook_subscriptions_changed() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'ventros_webhook_subscriptions_changed';
COMMENT ON FUNCTION ventros.webhook_subscriptions_changed() IS
    'Trigger: every backend drops its cache of which tenants subscribe to which events (src/webhook_fanout.c)';
CREATE TRIGGER ventros_webhook_fanout_changed AFTER INSERT OR DELETE OR TRUNCATE ON ventros.webhook_subscriptions
    FOR EACH STATEMENT EXECUTE FUNCTION ventros.webhook_subscriptions_changed();
-- Only changes of what a subscription receives: not its delivery counters.
CREATE TRIGGER ventros_webhook_fanout_updated AFTER UPDATE ON ventros.webhook_subscriptions
    FOR EACH ROW
    WHEN ((OLD.tenant_id, OLD.active, OLD.deleted_at, OLD.events, OLD.subscribe_contact_events)
          IS DISTINCT FROM (NEW.tenant_id, NEW.active, NEW.deleted_at, NEW.events, NEW.subscribe_contact_events))
    EXECUTE FUNCTION ventros.webhook_subscriptions_changed();

CREATE TRIGGER ventros_webhook_stopped AFTER UPDATE ON ventros.webhook_subscriptions
    FOR EACH ROW
    WHEN ((OLD.active AND NOT NEW.active) OR (OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL))
    EXECUTE FUNCTION ventros.webhook_subscription_stopped();

GRANT EXECUTE ON FUNCTION ventros.webhook_subscriptions_changed(), ventros.webhook_subscription_stopped() TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.webhook_retry_schedule(),
    ventros.webhook_signature(text, bytea, timestamptz, text), ventros.hmac_sha256_hex(text, bytea),
    ventros.webhook_request_headers(uuid, uuid) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.redeliver_webhook(uuid), ventros.get_webhook_delivery(uuid),
    ventros.list_webhook_deliveries(uuid, text, uuid, timestamptz, uuid, integer),
    ventros.disable_failing_webhook_subscriptions(timestamptz, interval),
    ventros.disable_webhook_subscription(uuid, text)
    TO ventros_admin;
GRANT EXECUTE ON FUNCTION ventros.tick_webhooks(timestamptz, interval) TO ventros_platform_admin;

-- ---- sql/95_api.sql
-- The HTTP API's views: one per registered aggregate, made generically from
-- ventros.aggregates, so an aggregate registered in any earlier file is
-- exposed with no further declaration.  Each view is named like its table,
-- runs with the caller's rights (security_invoker: the table's grants and
-- forced RLS policies decide), leaves the aggregate's redacted columns out,
-- and exposes version for optimistic locking.  A view over one table with
-- plain columns is automatically updatable: POST, PATCH and DELETE go through
-- it to the engine's triggers.  Call ventros.expose_api() again after
-- registering an aggregate at run time.

CREATE FUNCTION ventros.expose_api() RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    agg        record;
    view_name  text;
    columns    text;
    role_name  text;
    privilege  text;
BEGIN
    FOR agg IN SELECT a.aggregate, a.table_name, a.redacted_columns, a.description,
                      c.relname
               FROM ventros.aggregates a JOIN pg_class c ON c.oid = a.table_name
               ORDER BY a.aggregate
    LOOP
        view_name := pg_catalog.format('api.%I', agg.relname);
        SELECT string_agg(pg_catalog.format('%I', attname), ', ' ORDER BY attnum) INTO columns
        FROM pg_attribute
        WHERE attrelid = agg.table_name AND attnum > 0 AND NOT attisdropped
          AND NOT attname = ANY (agg.redacted_columns);
        EXECUTE pg_catalog.format('DROP VIEW IF EXISTS %s', view_name);
        EXECUTE pg_catalog.format('CREATE VIEW %s WITH (security_invoker = true) AS SELECT %s FROM %s',
                                  view_name, columns, agg.table_name);
        -- Rows of a project default to the tenant's default project, as the commands do.
        IF EXISTS (SELECT 1 FROM pg_attribute a
                   WHERE a.attrelid = agg.table_name AND a.attname = 'project_id' AND NOT a.attisdropped
                     AND a.atttypid = 'uuid'::regtype AND NOT a.atthasdef)
           AND agg.table_name <> 'ventros.projects'::regclass THEN
            EXECUTE pg_catalog.format('ALTER VIEW %s ALTER COLUMN project_id SET DEFAULT ventros.default_project()', view_name);
        END IF;
        EXECUTE pg_catalog.format('COMMENT ON VIEW %s IS %L', view_name,
                                  coalesce(agg.description, 'Aggregate ' || agg.aggregate));
        -- The view grants what the table grants; the table's own checks still run.
        FOREACH role_name IN ARRAY ARRAY['ventros_viewer', 'ventros_agent', 'ventros_admin', 'ventros_anon'] LOOP
            FOREACH privilege IN ARRAY ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE'] LOOP
                IF has_table_privilege(role_name, agg.table_name, privilege) THEN
                    EXECUTE pg_catalog.format('GRANT %s ON %s TO %I', privilege, view_name, role_name);
                END IF;
            END LOOP;
        END LOOP;
    END LOOP;
END
$$;
COMMENT ON FUNCTION ventros.expose_api() IS
    'Creates or re-creates one security_invoker view in schema api per registered aggregate';

SELECT ventros.expose_api();

-- Helpers of the HTTP front, called in the statements it builds.

-- A version=eq.N filter of PATCH or DELETE: a row that matches the other
-- filters but has another version is a conflict (VN001), not a silent miss.
CREATE FUNCTION ventros.http_expect_version(current_version integer, expected_version integer, row_id uuid)
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF current_version IS DISTINCT FROM expected_version THEN
        RAISE EXCEPTION 'row % has changed since version % was read', row_id, expected_version
            USING ERRCODE = 'VN001', DETAIL = format('Current version is %s.', current_version),
                  HINT = 'Read the row again and retry with its current version.';
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION ventros.http_expect_version(integer, integer, uuid) IS
    'True when the versions agree, else VN001 naming the current version (optimistic locking over HTTP)';

-- Prefer: max-affected=N on PATCH/DELETE: more rows than N rolls everything back.
CREATE FUNCTION ventros.http_check_affected(affected bigint, maximum bigint) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF affected > maximum THEN
        RAISE EXCEPTION 'the request affects % rows, more than max-affected=%', affected, maximum
            USING ERRCODE = 'P0001', HINT = 'Narrow the filters; nothing was changed.';
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION ventros.http_check_affected(bigint, bigint) IS
    'True when affected <= maximum, else an error that rolls the request back (Prefer: max-affected)';

-- CSV (RFC 4180) of a JSON array of flat objects, columns in the first row's order.
CREATE FUNCTION ventros.http_csv(rows json) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH keys AS (
        SELECT k, n FROM json_object_keys(rows -> 0) WITH ORDINALITY AS x(k, n)
    ), quoted AS (
        SELECT r.n AS rn, string_agg(
                   CASE WHEN v IS NULL THEN ''
                        WHEN v ~ '[",\r\n]' OR v <> btrim(v) THEN '"' || replace(v, '"', '""') || '"'
                        ELSE v END, ',' ORDER BY keys.n) AS line
        FROM json_array_elements(rows) WITH ORDINALITY AS r(o, n)
        CROSS JOIN keys
        CROSS JOIN LATERAL (SELECT r.o ->> keys.k AS v) val
        GROUP BY r.n
    )
    SELECT coalesce((SELECT string_agg(CASE WHEN k ~ '[",\r\n]' THEN '"' || replace(k, '"', '""') || '"' ELSE k END,
                                       ',' ORDER BY n) FROM keys), '')
           || coalesce(E'\n' || (SELECT string_agg(line, E'\n' ORDER BY rn) FROM quoted), '')
$$;
COMMENT ON FUNCTION ventros.http_csv(json) IS 'CSV with a header line from a JSON array of flat objects (Accept: text/csv)';

-- OpenAPI 3 description of schema api, as the calling role sees it.
CREATE FUNCTION ventros.http_openapi() RETURNS json
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH rels AS (
        SELECT c.oid, c.relname, coalesce(obj_description(c.oid, 'pg_class'), '') AS description
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'api' AND c.relkind IN ('v', 'r', 'm')
          AND has_table_privilege(c.oid, 'SELECT')
    ), cols AS (
        SELECT r.relname, json_object_agg(a.attname, json_build_object(
                   'type', CASE WHEN t.typcategory = 'N' THEN CASE WHEN t.typname IN ('int2', 'int4', 'int8') THEN 'integer' ELSE 'number' END
                                WHEN t.typcategory = 'B' THEN 'boolean'
                                WHEN t.typcategory = 'A' THEN 'array'
                                WHEN t.typname IN ('json', 'jsonb') THEN 'object'
                                ELSE 'string' END,
                   'format', format_type(a.atttypid, a.atttypmod)) ORDER BY a.attnum) AS props
        FROM rels r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
        JOIN pg_type t ON t.oid = a.atttypid
        GROUP BY r.relname
    ), funcs AS (
        SELECT p.proname, coalesce(obj_description(p.oid, 'pg_proc'), '') AS description,
               p.provolatile <> 'v' AS stable,
               coalesce((SELECT json_object_agg(nm, json_build_object('type', 'string', 'format', format_type(ty, NULL)))
                         FROM unnest(p.proargnames[1:p.pronargs], p.proargtypes::oid[]) AS x(nm, ty)), '{}') AS args
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'api' AND has_function_privilege(p.oid, 'EXECUTE')
    )
    , rel_paths AS (
        SELECT '/' || r.relname AS path, jsonb_build_object(
            'get', jsonb_build_object('summary', r.description, 'tags', jsonb_build_array(r.relname),
                'responses', jsonb_build_object('200', jsonb_build_object('description', 'OK',
                    'content', jsonb_build_object('application/json', jsonb_build_object('schema',
                        jsonb_build_object('type', 'array', 'items',
                            jsonb_build_object('$ref', '#/components/schemas/' || r.relname))))))),
            'post', jsonb_build_object('tags', jsonb_build_array(r.relname),
                'responses', jsonb_build_object('201', jsonb_build_object('description', 'Created'))),
            'patch', jsonb_build_object('tags', jsonb_build_array(r.relname),
                'responses', jsonb_build_object('200', jsonb_build_object('description', 'OK'))),
            'delete', jsonb_build_object('tags', jsonb_build_array(r.relname),
                'responses', jsonb_build_object('200', jsonb_build_object('description', 'OK')))) AS item
        FROM rels r
    ), rpc_paths AS (
        SELECT '/rpc/' || f.proname AS path, jsonb_build_object('post', jsonb_build_object(
            'summary', f.description, 'tags', jsonb_build_array('rpc'),
            'requestBody', jsonb_build_object('content', jsonb_build_object('application/json',
                jsonb_build_object('schema', jsonb_build_object('type', 'object', 'properties', f.args::jsonb)))),
            'responses', jsonb_build_object('200', jsonb_build_object('description', 'OK')))) AS item
        FROM funcs f
    )
    SELECT json_build_object(
        'openapi', '3.0.3',
        'info', json_build_object('title', 'Ventros API', 'version', '0.1.0',
                                  'description', 'PostgREST dialect over schema api (ventros-http)'),
        'paths', coalesce((SELECT jsonb_object_agg(path, item) FROM (SELECT * FROM rel_paths UNION ALL SELECT * FROM rpc_paths) p),
                          '{}'::jsonb),
        'components', json_build_object('schemas', coalesce((SELECT json_object_agg(c.relname,
                          json_build_object('type', 'object', 'properties', c.props)) FROM cols c), '{}'::json)))
$$;
COMMENT ON FUNCTION ventros.http_openapi() IS 'OpenAPI 3 description of schema api as the calling role may use it (GET /)';

-- Prefer: count=planned/estimated: the planner's estimate of the rows of the
-- front's count query (SELECT 1 FROM api.<view> _t WHERE <filters>, values
-- inlined as literals), planned as the caller, so row-level security is in
-- the estimate.  Security invoker: whoever calls it could run the query
-- themselves; only a plain count query over api is accepted.
CREATE FUNCTION ventros.http_plan_rows(query text) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
-- the literals were quoted for it (doubled quotes, backslashes plain)
SET standard_conforming_strings = on
AS $$
DECLARE
    plan json;
BEGIN
    IF query !~ '^SELECT 1 FROM api\."[^"]+" _t WHERE ' THEN
        RAISE EXCEPTION 'http_plan_rows plans the front''s count queries only' USING ERRCODE = '22023';
    END IF;
    EXECUTE 'EXPLAIN (FORMAT JSON) ' || query INTO plan;
    RETURN (plan -> 0 -> 'Plan' ->> 'Plan Rows')::numeric::bigint;
END
$$;
COMMENT ON FUNCTION ventros.http_plan_rows(text) IS
    'The planner''s row estimate of a count query of the HTTP front (Prefer: count=planned/estimated)';

GRANT EXECUTE ON FUNCTION ventros.http_expect_version(integer, integer, uuid), ventros.http_csv(json),
    ventros.http_check_affected(bigint, bigint), ventros.http_plan_rows(text),
    ventros.http_openapi()
    TO ventros_viewer, ventros_anon;

-- /health: the background workers the front reports.  Their rows in
-- pg_stat_activity show a backend type only to privileged roles, and
-- pg_read_all_stats would also show the front every session's queries; this
-- function shows it names and states, nothing else.
CREATE FUNCTION ventros.http_worker_status() RETURNS json
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(json_agg(json_build_object('name', a.backend_type, 'state', coalesce(a.state, 'running'))
                             ORDER BY a.backend_type, a.pid), '[]')
    FROM pg_stat_activity a
    WHERE a.backend_type NOT IN ('client backend', 'autovacuum launcher', 'autovacuum worker',
                                 'logical replication launcher', 'background writer', 'checkpointer',
                                 'walwriter', 'archiver', 'startup', 'walsender', 'walreceiver')
$$;
COMMENT ON FUNCTION ventros.http_worker_status() IS
    'The background workers (outbox publisher, inbox processors, HTTP dispatcher, pg_cron) and their states, for GET /health';
REVOKE ALL ON FUNCTION ventros.http_worker_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ventros.http_worker_status() TO ventros_authenticator;

-- ---- sql/97_schedule.sql
-- Time-based work, scheduled by pg_cron.
--
-- Every timed rule of the domain is a function of `now` (architecture.md,
-- "time is a parameter"): tests call them with any instant, and in
-- production pg_cron calls them.  What runs when is data — one row per job in
-- ventros.scheduled_jobs — and ventros.schedule_jobs() puts those rows into
-- pg_cron.  pg_cron is optional: without it nothing here fails, the jobs are
-- simply not scheduled (and an operator may call the functions from any
-- other scheduler).

CREATE TABLE ventros.scheduled_jobs (
    name     text PRIMARY KEY,
    schedule text NOT NULL,
    command  text NOT NULL,
    purpose  text NOT NULL,
    CONSTRAINT scheduled_jobs_name_format CHECK (name ~ '^ventros-[a-z0-9-]+$'),
    CONSTRAINT scheduled_jobs_schedule_not_blank CHECK (btrim(schedule) <> '')
);
COMMENT ON TABLE ventros.scheduled_jobs IS
    'The pg_cron jobs Ventros needs (name, cron schedule, SQL command); ventros.schedule_jobs() installs them';

-- Readable by all tenant roles (nothing secret), written by the owner only.
ALTER TABLE ventros.scheduled_jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.scheduled_jobs FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_catalog_read ON ventros.scheduled_jobs FOR SELECT USING (true);
GRANT SELECT ON ventros.scheduled_jobs TO ventros_viewer;

-- tick_maintenance: the daily housekeeping of every tenant and of the queues.
-- One subtransaction per tenant, as tick_automation does, so one tenant's
-- failure neither stops nor undoes the others'.
CREATE FUNCTION ventros.tick_maintenance(now timestamptz DEFAULT now(),
                                         http_retention interval DEFAULT interval '7 days')
RETURNS TABLE (tenant_id text, contact_events_purged integer, error text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- the tenant chosen inside is restored when the function returns
SET ventros.tenant = ''
AS $$
DECLARE
    t text;
BEGIN
    PERFORM ventros.require_platform_admin();
    IF http_retention IS NULL OR http_retention < interval '0' THEN
        RAISE EXCEPTION 'http_retention must be a non-negative interval' USING ERRCODE = '22023';
    END IF;
    FOR t IN SELECT DISTINCT p.tenant_id FROM ventros.projects p WHERE p.deleted_at IS NULL ORDER BY 1 LOOP
        PERFORM set_config('ventros.tenant', t, true);
        tenant_id := t;
        error := NULL;
        BEGIN
            contact_events_purged := ventros.purge_expired_contact_events(now);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS error = MESSAGE_TEXT;
            contact_events_purged := NULL;
            RAISE WARNING 'maintenance of tenant % failed: %', t, error;
        END;
        RETURN NEXT;
    END LOOP;
    PERFORM set_config('ventros.tenant', '', true);
    -- Across tenants (both check for a platform administrator themselves).
    PERFORM ventros.compact_crm_daily_stats((now AT TIME ZONE 'UTC')::date);
    PERFORM ventros.prune_http_requests(now - http_retention);
END
$$;
COMMENT ON FUNCTION ventros.tick_maintenance(timestamptz, interval) IS
    'Daily housekeeping: purges expired contact events per tenant (one subtransaction each), compacts past days of crm_daily_stats, prunes finished HTTP requests older than http_retention; platform administrators only (42501)';

INSERT INTO ventros.scheduled_jobs (name, schedule, command, purpose) VALUES
    ('ventros-tick-sessions', '* * * * *', 'SELECT ventros.tick_sessions()',
     'ends sessions whose inactivity timeout passed'),
    ('ventros-tick-automation', '* * * * *', 'SELECT count(*) FROM ventros.tick_automation()',
     'campaign and sequence steps, scheduled and running broadcasts, message groups, credential expiry'),
    ('ventros-tick-maintenance', '17 3 * * *', 'SELECT count(*) FROM ventros.tick_maintenance()',
     'expired contact events, daily statistics compaction, finished HTTP requests'),
    ('ventros-fold-channel-counts', '* * * * *', 'SELECT ventros.fold_channel_message_counts()',
     'moves the slotted message counts of channels into their counters');

-- schedule_jobs: installs (or updates) every declared job in pg_cron, in the
-- database pg_cron runs in (cron.database_name; jobs run as the caller).
-- Returns the jobs it scheduled; none when pg_cron is not installed here.
CREATE FUNCTION ventros.schedule_jobs()
RETURNS TABLE (name text, schedule text, job_id bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    j ventros.scheduled_jobs;
BEGIN
    PERFORM ventros.require_platform_admin();
    IF to_regprocedure('cron.schedule(text, text, text)') IS NULL THEN
        RAISE NOTICE 'pg_cron is not installed in this database: no job scheduled'
            USING HINT = 'CREATE EXTENSION pg_cron in the database named by cron.database_name, then call ventros.schedule_jobs() again.';
        RETURN;
    END IF;
    FOR j IN SELECT * FROM ventros.scheduled_jobs ORDER BY 1 LOOP
        name := j.name;
        schedule := j.schedule;
        -- cron.schedule(name, ...) replaces a job of the same name
        EXECUTE 'SELECT cron.schedule($1, $2, $3)' INTO job_id USING j.name, j.schedule, j.command;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION ventros.schedule_jobs() IS
    'Installs the jobs of ventros.scheduled_jobs into pg_cron (replacing same-named jobs); a notice and no rows without pg_cron';

CREATE FUNCTION ventros.unschedule_jobs()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer := 0;
    job text;
BEGIN
    PERFORM ventros.require_platform_admin();
    IF to_regclass('cron.job') IS NULL THEN
        RETURN 0;
    END IF;
    FOR job IN EXECUTE 'SELECT jobname FROM cron.job WHERE jobname IN (SELECT s.name FROM ventros.scheduled_jobs s)' LOOP
        EXECUTE 'SELECT cron.unschedule($1)' USING job;
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.unschedule_jobs() IS 'Removes Ventros'' jobs from pg_cron; returns how many';

GRANT SELECT ON ventros.scheduled_jobs TO ventros_platform_admin;
GRANT EXECUTE ON FUNCTION ventros.tick_maintenance(timestamptz, interval), ventros.schedule_jobs(),
    ventros.unschedule_jobs() TO ventros_platform_admin;

-- ---- sql/98_inbox_jobs.sql
-- The inbox's timed work (sql/88_inbox.sql), declared as jobs of
-- ventros.scheduled_jobs (sql/97_schedule.sql): ventros.schedule_jobs()
-- installs them into pg_cron when it is there.
INSERT INTO ventros.scheduled_jobs (name, schedule, command, purpose) VALUES
    ('ventros-process-inbox', '* * * * *', 'SELECT count(*) FROM ventros.process_inbox(500, now())',
     'retries inbox items that failed or wait for their message (backoff 30 s to 1 h)'),
    ('ventros-prune-inbox', '23 3 * * *', 'SELECT ventros.prune_inbox(now() - interval ''30 days'')',
     'deletes finished inbox rows received more than 30 days ago');

-- ---- sql/98_webhook_jobs.sql
-- The webhook tick as a scheduled job (sql/97_schedule.sql): hourly, it
-- disables subscriptions whose deliveries have all failed for 5 days, also
-- those no longer receiving events (a failed delivery checks its own
-- subscription at once; sql/92_webhook_deliveries.sql).
INSERT INTO ventros.scheduled_jobs (name, schedule, command, purpose) VALUES
    ('ventros-tick-webhooks', '41 * * * *', 'SELECT count(*) FROM ventros.tick_webhooks()',
     'disables webhook subscriptions whose deliveries have all failed for 5 days');

-- ---- sql/99_grants.sql
-- Last file: nothing in schema ventros is executable by PUBLIC.  Each sql/
-- file grants its own functions to the roles that may call them, right after
-- defining them; this revokes what CREATE FUNCTION gave PUBLIC by default.

REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA ventros FROM PUBLIC;
