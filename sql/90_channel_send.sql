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
    SELECT CASE WHEN req->>'step' = 'lookup' THEN NULL ELSE ventros.setting_number('ventros.media_max_size')::integer END
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
                                             max_response_size => ventros.setting_number('ventros.media_max_size')::integer);
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
                                                      coalesce(r.max_response_size, ventros.setting_number('ventros.http_max_response_size')::integer)));
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
