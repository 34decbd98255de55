-- Inbound parsers for WAHA (channels.md section 1): message.any, message.ack,
-- message.reaction, message.revoked, message.edited, session.status.  The
-- entry (ventros.inbox_process) and the shared helpers are in sql/89_inbound.sql.

-- ---- webhooks: verification, items ---------------------------------------------

-- WAHA: when config.webhook_secret is set, X-Webhook-Hmac must be hex
-- HMAC-SHA512(webhook_secret, body) and X-Webhook-Hmac-Algorithm, when sent,
-- sha512; when config.webhook_token is set, X-Ventros-Token must equal it.
-- Every comparison is constant-time (ventros.timing_safe_equal); the expected
-- token is hashed with SHA-256 first so both sides have the same length and
-- the comparison reveals nothing about the token's length either.
CREATE FUNCTION ventros.verify_waha_webhook(config jsonb, headers jsonb, body bytea) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    secret text := nullif(config->>'webhook_secret', '');
    token text := nullif(config->>'webhook_token', '');
    given text;
    given_bytes bytea;
BEGIN
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
COMMENT ON FUNCTION ventros.verify_waha_webhook(jsonb, jsonb, bytea) IS
    'WAHA webhooks: NULL when X-Webhook-Hmac is the HMAC-SHA512 of the body with config.webhook_secret (when set; algorithm sha512) and X-Ventros-Token equals config.webhook_token (when set), constant-time; else missing_signature, bad_algorithm, invalid_signature or invalid_token';

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

-- ---- processing ----------------------------------------------------------------

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
    grp ventros.chats;
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
    IF chat LIKE '%@g.us' THEN
        grp := ventros.inbound_group_chat(ch, chat, coalesce(at, now()));
    END IF;
    o := ventros.inbound_message(ch, sender, from_me, ventros.json_text(p, 'id'), kind, body, at,
                                 CASE WHEN NOT from_me THEN coalesce(ventros.json_text(info, 'PushName'), ventros.json_text(p, '_data', 'notifyName')) END,
                                 media_url, mime, CASE WHEN meta <> '{}' THEN meta END,
                                 coalesce(ventros.json_text(p, 'replyTo', 'id'), ventros.json_text(p, 'replyTo'),
                                          ventros.json_text(ctx, 'stanzaId')), grp.id);
    IF grp.id IS NOT NULL THEN
        PERFORM ventros.inbound_chat_participant(grp, o.contact_id, coalesce(at, now()));
    END IF;
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
    'A WAHA message.any: sender (@c.us / @lid linked), content type, text, media URL and mimetype, location, contact card, reply, click-to-WhatsApp ad tracking; fromMe echoes matched to our sends; a group message (@g.us) creates or updates its chat and participant, the message points at the chat';

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

-- The conversation of a WAHA item: its chat, the other party of the message
-- (the group for a group's), for the processors' order.
CREATE FUNCTION ventros.waha_conversation(item jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- (no SET clause: small enough to be inlined; every name is qualified)
AS $$
    SELECT CASE WHEN ventros.json_text(item, 'payload', 'fromMe') = 'true' THEN ventros.json_text(item, 'payload', 'to')
                ELSE ventros.json_text(item, 'payload', 'from') END
$$;
COMMENT ON FUNCTION ventros.waha_conversation(jsonb) IS
    'The chat of a WAHA inbox item (payload.to for our own messages, else payload.from): the processors keep its items in order';

-- ---- registration ---------------------------------------------------------------

SELECT ventros.register_inbound_provider('waha', 'ventros.verify_waha_webhook(jsonb, jsonb, bytea)',
           'ventros.split_waha(jsonb, jsonb, bytea, jsonb)', 'ventros.waha_process(ventros.inbox, ventros.channels)',
           conversation => 'ventros.waha_conversation(jsonb)');

GRANT EXECUTE ON FUNCTION ventros.verify_waha_webhook(jsonb, jsonb, bytea) TO ventros_admin;
