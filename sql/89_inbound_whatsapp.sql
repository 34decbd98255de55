-- Inbound parsers for WhatsApp Cloud (channels.md section 2): its webhook
-- items, messages and statuses.  It shares Meta's signature and handshake
-- (sql/89_inbound_meta.sql); the entry (ventros.inbox_process) and the
-- shared helpers are in sql/89_inbound.sql.

-- ---- webhooks: items -----------------------------------------------------------

-- WhatsApp Cloud: one item per messages[] / statuses[] element of every change.
CREATE FUNCTION ventros.split_whatsapp(config jsonb, doc jsonb, body bytea, headers jsonb)
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
    RETURN QUERY SELECT * FROM ventros.meta_envelope_refusal(doc, body, 'whatsapp_business_account', 'WhatsApp');
    IF FOUND THEN
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
                RETURN NEXT ventros.meta_unparsed_change(ctx || jsonb_build_object('value', v), c, foreign_item);
            END IF;
        END LOOP;
    END LOOP;
END
$$;
COMMENT ON FUNCTION ventros.split_whatsapp(jsonb, jsonb, bytea, jsonb) IS
    'The inbox items of a WhatsApp Cloud delivery: one per message (msg:<wamid>) and status (st:<wamid>:<status>); other changes stored unparsed; foreign when phone_number_id is not the channel''s';

-- ---- processing ----------------------------------------------------------------

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
-- WhatsApp Cloud: messages and statuses are parsed, other changes stored unparsed.
CREATE FUNCTION ventros.whatsapp_process(r ventros.inbox, ch ventros.channels) RETURNS ventros.inbox_outcome
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE r.event WHEN 'messages' THEN ventros.whatsapp_message(ch, r.item)
                        WHEN 'statuses' THEN ventros.whatsapp_status(ch, r.item)
                        ELSE ventros.inbox_outcome('unparsed') END
$$;
COMMENT ON FUNCTION ventros.whatsapp_process(ventros.inbox, ventros.channels) IS
    'Processes a WhatsApp Cloud inbox item: messages (ventros.whatsapp_message), statuses (ventros.whatsapp_status); anything else unparsed';

-- The conversation of a WhatsApp Cloud item: the customer's wa_id (the
-- sender of a message, the recipient of a status), for the processors' order.
CREATE FUNCTION ventros.whatsapp_conversation(item jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- (no SET clause: small enough to be inlined; every name is qualified)
AS $$ SELECT coalesce(ventros.json_text(item, 'message', 'from'), ventros.json_text(item, 'status', 'recipient_id')) $$;
COMMENT ON FUNCTION ventros.whatsapp_conversation(jsonb) IS
    'The customer of a WhatsApp Cloud inbox item (message.from, status.recipient_id): the processors keep its items in order';

-- ---- registration ---------------------------------------------------------------

SELECT ventros.register_inbound_provider('whatsapp', 'ventros.verify_meta_webhook(jsonb, jsonb, bytea)',
           'ventros.split_whatsapp(jsonb, jsonb, bytea, jsonb)', 'ventros.whatsapp_process(ventros.inbox, ventros.channels)',
           'ventros.meta_webhook_challenge(jsonb, text, text, text)', 'ventros.whatsapp_conversation(jsonb)');
