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

-- SECURITY DEFINER: agents keep labels in step with the provider, and the
-- command adds channel.label_upserted to the channel, which they may not
-- change (ventros.emit wants UPDATE on the aggregate's table).  Every
-- statement names the acting tenant.
CREATE FUNCTION ventros.upsert_channel_label(channel_id uuid, label_id text, name text, color integer DEFAULT NULL,
                                             color_hex text DEFAULT NULL)
RETURNS ventros.channel_labels
LANGUAGE plpgsql
SECURITY DEFINER
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

-- Direct writes of channel_label by tenant roles: the same as the first
-- command named, or refused naming them (docs/sql.md, "Direct writes").
SELECT ventros.register_writes('channel_label', inserts => '{upsert_channel_label}', updates => '{upsert_channel_label}', deletes => '{delete_channel_label}');
