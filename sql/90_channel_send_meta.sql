-- Outbound Meta Graph API traffic: WhatsApp Cloud (channels.md 2.3, 2.4),
-- Instagram (3.2) and Messenger (4.2): the requests that send a message and
-- fetch media, the reading of the answers, the Graph error classes and the
-- retry classifier, registered for channel types whatsapp, whatsapp_business,
-- instagram and messenger.  The mechanism is in sql/90_channel_send.sql.

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
    SELECT jsonb_build_object('Authorization', 'Bearer ' || ventros.channel_secret_ref(ch, 'access_token'))
           || CASE WHEN json THEN '{"Content-Type": "application/json"}'::jsonb ELSE '{}'::jsonb END
$$;
COMMENT ON FUNCTION ventros.graph_headers(ventros.channels, boolean) IS
    'Headers of a Graph call: Authorization: Bearer and a reference to the channel''s access_token (the dispatcher puts the token in per attempt: ventros.channel_request_headers; never the access_token query parameter), and the JSON content type';

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

-- Token, permission or a missing object: every send of the channel fails.
CREATE FUNCTION ventros.graph_config_error(status integer, body bytea) RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce(ventros.graph_error_class(status, body) = 'config', false) $$;
COMMENT ON FUNCTION ventros.graph_config_error(integer, bytea) IS
    'Whether a failed Graph answer means the channel is misconfigured: error class config (190, 10, 200-299, 100/33)';

-- ---- registration ---------------------------------------------------------------

SELECT ventros.register_http_retry_classifier('graph', 'ventros.classify_graph_answer(integer, bytea, boolean)');
SELECT ventros.register_channel_provider(t, 'whatsapp', 'ventros.whatsapp_send_request(ventros.channels, ventros.messages)',
           'ventros.whatsapp_sent_id(jsonb)', 'ventros.whatsapp_media_request(ventros.channels, ventros.messages)', 'graph', 24,
           'ventros.graph_config_error(integer, bytea)', 'graph')
  FROM unnest('{whatsapp,whatsapp_business}'::text[]) t;
SELECT ventros.register_channel_provider(t, t, 'ventros.graph_messaging_send_request(ventros.channels, ventros.messages)',
           'ventros.graph_messaging_sent_id(jsonb)', 'ventros.graph_messaging_media_request(ventros.channels, ventros.messages)',
           'graph', config_error => 'ventros.graph_config_error(integer, bytea)', media_retry_policy => 'graph')
  FROM unnest('{instagram,messenger}'::text[]) t;

GRANT EXECUTE ON FUNCTION ventros.whatsapp_to(uuid), ventros.whatsapp_sent_id(jsonb),
    ventros.graph_messaging_sent_id(jsonb), ventros.graph_error_class(integer, bytea),
    ventros.classify_graph_answer(integer, bytea, boolean), ventros.graph_base(ventros.channels),
    ventros.graph_headers(ventros.channels, boolean), ventros.graph_config_error(integer, bytea) TO ventros_viewer;
