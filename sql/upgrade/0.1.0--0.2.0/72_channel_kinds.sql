-- The kinds a channel may be of are the system catalogue's
-- (ventros.channel_types of tenant "ventros"), checked by one function and a
-- trigger, instead of a CHECK constraint and create_channel both repeating
-- the list.

CREATE OR REPLACE FUNCTION ventros.require_channel_type(type text) RETURNS void
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

CREATE OR REPLACE FUNCTION ventros.channels_type_known() RETURNS trigger
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
ALTER TABLE ventros.channels DROP CONSTRAINT channels_type_known;
GRANT EXECUTE ON FUNCTION ventros.require_channel_type(text) TO ventros_admin;

CREATE OR REPLACE FUNCTION ventros.create_channel(
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

