-- Media of inbound messages, downloaded from the provider through the HTTP
-- dispatcher (purpose media.download) the way sends are delivered
-- (sql/90_channel_send.sql), and kept with the message.

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
    ch := ventros.channel_with_secrets(ch);    -- its token (sql/68_credentials_channels.sql)
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
                                            m.id, coalesce(p.media_retry_policy, 'transient'),
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

SELECT ventros.register_http_request_handler('media.lookup', 'ventros.handle_media_lookup(ventros.http_requests)');
SELECT ventros.register_http_request_handler('media.download', 'ventros.handle_media_download(ventros.http_requests)');

GRANT EXECUTE ON FUNCTION ventros.json_body(bytea), ventros.contact_identity_of(uuid, text[]),
    ventros.reply_provider_id(ventros.messages), ventros.media_filename(ventros.messages),
    ventros.unsupported_content(text, text), ventros.no_recipient(text, uuid, text),
    ventros.check_message_window(ventros.messages, integer) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.queue_message_send(uuid), ventros.queue_message_sends(uuid[]),
    ventros.request_media_download(uuid),
    ventros.send_messages(uuid, uuid[], text, uuid, text, text, text, text, uuid, uuid, jsonb, text, text, jsonb) TO ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.consent_refusal(uuid, uuid) TO ventros_viewer;
-- message_send_request and try_message_send_request return the channel's
-- credentials: queue_message_sends (SECURITY DEFINER) only calls them.
GRANT SELECT ON ventros.channel_providers TO ventros_viewer;
