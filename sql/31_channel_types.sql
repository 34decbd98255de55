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
    -- The system catalogue is part of the install, not a change anyone made:
    -- its creation events would be published as noise, and a restore (which
    -- installs afresh, then loads the dumped events) would meet them twice.
    DELETE FROM ventros.outbox WHERE tenant_id = 'ventros' AND aggregate_type = 'channel_type';
    PERFORM pg_catalog.set_config('ventros.tenant', '', true);
END
$seed$;

-- The kinds a channel may be of are the system catalogue's (one list: a new
-- kind, such as a new provider's, is a row here, not a constraint to alter).
CREATE FUNCTION ventros.require_channel_type(type text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ventros.channel_types t
                    WHERE t.tenant_id = 'ventros' AND t.name = require_channel_type.type AND t.deleted_at IS NULL) THEN
        RAISE EXCEPTION 'unknown channel type "%"', left(type, 64)
            USING ERRCODE = '22023',
                  HINT = (SELECT 'Use ' || string_agg(t.name, ', ' ORDER BY t.type_id) || '.' FROM ventros.channel_types t
                           WHERE t.tenant_id = 'ventros' AND t.deleted_at IS NULL);
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.require_channel_type(text) IS
    'Raises 22023 unless a channel kind of that name is in the system catalogue (ventros.channel_types of tenant "ventros")';

CREATE FUNCTION ventros.channels_type_known() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.type IS NOT NULL THEN
        PERFORM ventros.require_channel_type(NEW.type);
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION ventros.channels_type_known() IS
    'Trigger: a channel''s type must be a kind of the system catalogue (ventros.require_channel_type)';
CREATE TRIGGER channels_type_known BEFORE INSERT OR UPDATE OF type ON ventros.channels
    FOR EACH ROW EXECUTE FUNCTION ventros.channels_type_known();

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
    ventros.update_channel_type(uuid, integer, jsonb), ventros.require_channel_type(text) TO ventros_admin;
GRANT EXECUTE ON FUNCTION ventros.set_system_channel_type_active(text, boolean) TO ventros_platform_admin;

-- Direct writes of channel_type by tenant roles: the same as the first
-- command named, or refused naming them (docs/sql.md, "Direct writes").
SELECT ventros.register_writes('channel_type', inserts => '{create_channel_type}', updates => '{update_channel_type}', deletes => '{}',
    direct => '{UPDATE}',
    update_columns => '{description,configuration,active,provider}');
