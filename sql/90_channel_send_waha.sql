-- Outbound WAHA traffic (channels.md 1.8, 1.10): the requests that send a
-- message and fetch media through a WAHA session, the reading of its answers
-- and its retry classifier, registered for channel type waha.  The mechanism
-- (queueing, completion handlers) is in sql/90_channel_send.sql.

-- chatId: the contact's WhatsApp id as <digits>@c.us, else its @lid, else its phone.
CREATE FUNCTION ventros.waha_chat_id(contact_id uuid) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    i ventros.contact_identities := ventros.contact_identity_of(contact_id, '{whatsapp,whatsapp_lid}');
BEGIN
    IF i.id IS NOT NULL THEN
        RETURN CASE WHEN i.identity_type = 'whatsapp' THEN split_part(i.value, '@', 1) || '@c.us' ELSE i.value END;
    END IF;
    RETURN (SELECT ltrim(c.phone, '+') || '@c.us' FROM ventros.contacts c
             WHERE c.tenant_id = ventros.require_tenant() AND c.id = waha_chat_id.contact_id AND c.phone IS NOT NULL);
END
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
                                                        'X-Api-Key', CASE WHEN nullif(ch.config->>'api_key', '') IS NOT NULL
                                                                         THEN ventros.channel_secret_ref(ch, 'api_key') END)));
END
$$;
COMMENT ON FUNCTION ventros.waha_send_request(ventros.channels, ventros.messages) IS
    'The WAHA request sending a message: POST <base_url>/api/sendText|sendImage|sendFile|sendVoice|sendVideo with X-Api-Key (a reference to the channel''s api_key, put in per attempt: ventros.channel_request_headers); NULL when the channel has no base_url or session';

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
                                  'headers', jsonb_strip_nulls(jsonb_build_object('X-Api-Key', CASE WHEN nullif(ch.config->>'api_key', '') IS NOT NULL
                                                                                     THEN ventros.channel_secret_ref(ch, 'api_key') END)));
    END IF;
    -- Another host (S3 storage, a CDN): no credentials go there; the
    -- dispatcher's SSRF guard judges the URL.
    RETURN jsonb_build_object('method', 'GET', 'url', m.media_url, 'headers', '{}'::jsonb);
END
$$;
COMMENT ON FUNCTION ventros.waha_media_request(ventros.channels, ventros.messages) IS
    'The request fetching a WAHA message''s media: GET media_url, with X-Api-Key (a reference to the channel''s api_key, put in per attempt) only when it is on the channel''s WAHA host';

-- WAHA: 422 (session not WORKING yet) is retried, other 4xx are final.
CREATE FUNCTION ventros.classify_waha_answer(status integer, body bytea, retryable boolean) RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT CASE WHEN status = 422 THEN true ELSE retryable END $$;
COMMENT ON FUNCTION ventros.classify_waha_answer(integer, bytea, boolean) IS
    'Retry classifier "waha": 422 (session not WORKING) is retried; otherwise the dispatcher''s verdict by status';

-- The API key or the session is wrong: every send of the channel fails.
CREATE FUNCTION ventros.waha_config_error(status integer, body bytea) RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce(status IN (401, 404), false) $$;
COMMENT ON FUNCTION ventros.waha_config_error(integer, bytea) IS
    'Whether a failed WAHA answer means the channel is misconfigured: 401 (API key) or 404 (session)';

-- ---- registration ---------------------------------------------------------------

SELECT ventros.register_http_retry_classifier('waha', 'ventros.classify_waha_answer(integer, bytea, boolean)');
SELECT ventros.register_channel_provider('waha', 'waha', 'ventros.waha_send_request(ventros.channels, ventros.messages)',
           'ventros.waha_sent_id(jsonb)', 'ventros.waha_media_request(ventros.channels, ventros.messages)', 'waha',
           config_error => 'ventros.waha_config_error(integer, bytea)');

GRANT EXECUTE ON FUNCTION ventros.waha_chat_id(uuid), ventros.waha_sent_id(jsonb),
    ventros.classify_waha_answer(integer, bytea, boolean), ventros.waha_config_error(integer, bytea) TO ventros_viewer;
