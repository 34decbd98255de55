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
    team_id                               uuid,
    assignment_strategy                   text,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id),
    CONSTRAINT channels_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT channels_status_known CHECK (status IN ('inactive', 'activating', 'active', 'connecting',
                                                       'disconnected', 'error')),
    CONSTRAINT channels_connection_mode_known CHECK (connection_mode IN ('manual', 'auto')),
    CONSTRAINT channels_config_object CHECK (jsonb_typeof(config) = 'object'),
    CONSTRAINT channels_session_timeout_range CHECK (session_timeout_minutes BETWEEN 1 AND 1440),
    CONSTRAINT channels_debounce_range CHECK (debounce_timeout_ms BETWEEN 0 AND 300000),
    CONSTRAINT channels_history_import_status_known CHECK (history_import_status IN ('idle', 'importing', 'completed', 'failed')),
    CONSTRAINT channels_history_limits_positive CHECK (history_import_max_days > 0 AND history_import_max_messages_per_chat > 0),
    CONSTRAINT channels_counters_positive CHECK (messages_received >= 0 AND messages_sent >= 0),
    CONSTRAINT channels_assignment_strategy_known CHECK (assignment_strategy IS NULL
        OR (assignment_strategy IN ('round_robin', 'capacity', 'least_open', 'manual') AND team_id IS NOT NULL))
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
    PERFORM ventros.require_channel_type(type);     -- sql/31_channel_types.sql
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
              'history_import_max_days', 'history_import_max_messages_per_chat', 'team_id', 'assignment_strategy'])
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

-- Direct writes of channel by tenant roles: the same as the first
-- command named, or refused naming them (docs/sql.md, "Direct writes").
SELECT ventros.register_writes('channel', inserts => '{create_channel}', updates => '{update_channel,set_channel_status}', deletes => '{delete_channel}',
    direct => '{DELETE}');
