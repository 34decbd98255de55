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

-- Direct writes of contact_custom_field, contact_identity, contact_merge_suggestion, contact_consent by tenant roles: the same as the first
-- command named, or refused naming them (docs/sql.md, "Direct writes").
SELECT ventros.register_writes('contact_custom_field', inserts => '{set_contact_custom_field}', updates => '{set_contact_custom_field}', deletes => '{remove_contact_custom_field}');
SELECT ventros.register_writes('contact_identity', inserts => '{add_contact_identity}', updates => '{merge_contacts}', deletes => '{remove_contact_identity}');
SELECT ventros.register_writes('contact_merge_suggestion', inserts => '{add_contact_identity}', updates => '{dismiss_merge_suggestion,merge_contacts}', deletes => '{}');
SELECT ventros.register_writes('contact_consent', inserts => '{set_contact_consent}', updates => '{set_contact_consent}', deletes => '{}');
