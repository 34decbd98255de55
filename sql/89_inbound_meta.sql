-- Inbound parsers for Meta's platforms (channels.md sections 2-4): what the
-- three share (the signature, the handshake, Graph URLs), and Instagram and
-- Messenger messaging events.  WhatsApp Cloud is in sql/89_inbound_whatsapp.sql;
-- the entry (ventros.inbox_process) and the shared helpers are in
-- sql/89_inbound.sql.

-- ---- webhooks: verification, handshake, items ----------------------------------

-- Meta (whatsapp, instagram, messenger): X-Hub-Signature-256 must be
-- "sha256=" + hex HMAC-SHA256(config.app_secret, body); a channel without an
-- app secret refuses every delivery (no_app_secret) unless its config says
-- "allow_unsigned": true.  The comparison is constant-time
-- (ventros.timing_safe_equal).
CREATE FUNCTION ventros.verify_meta_webhook(config jsonb, headers jsonb, body bytea) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    secret text := nullif(config->>'app_secret', '');
    given text := headers->>'x-hub-signature-256';
    given_bytes bytea;
BEGIN
    IF secret IS NULL THEN
        -- no secret to check against: unsigned only when the channel says so explicitly
        IF config->'allow_unsigned' = 'true'::jsonb THEN
            RETURN NULL;
        END IF;
        RETURN 'no_app_secret';
    END IF;
    IF given IS NULL THEN
        RETURN 'missing_signature';
    END IF;
    given_bytes := CASE WHEN left(given, 7) = 'sha256=' THEN ventros.decode_hex_signature(substr(given, 8), 32) END;
    IF given_bytes IS NULL
       OR NOT ventros.timing_safe_equal(ventros.webhook_hmac(body, secret, 'sha256'), given_bytes) THEN
        RETURN 'invalid_signature';
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.verify_meta_webhook(jsonb, jsonb, bytea) IS
    'Meta webhooks: NULL when X-Hub-Signature-256 is the HMAC-SHA256 of the body with config.app_secret (constant-time), or the channel has no app_secret and "allow_unsigned": true; else missing_signature, invalid_signature or no_app_secret';

-- Meta's GET verification handshake: the challenge when mode is subscribe
-- and the verify token is the channel's (constant-time: both hashed first,
-- so the comparison reveals nothing about the token's length either).
CREATE FUNCTION ventros.meta_webhook_challenge(config jsonb, mode text, verify_token text, challenge text) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    expected text := nullif(config->>'verify_token', '');
BEGIN
    IF expected IS NULL OR mode IS DISTINCT FROM 'subscribe' OR verify_token IS NULL
       OR challenge IS NULL OR length(challenge) > 1024 THEN
        RETURN NULL;
    END IF;
    IF NOT ventros.timing_safe_equal(sha256(convert_to(expected, 'UTF8')), sha256(convert_to(verify_token, 'UTF8'))) THEN
        RETURN NULL;
    END IF;
    RETURN challenge;
END
$$;
COMMENT ON FUNCTION ventros.meta_webhook_challenge(jsonb, text, text, text) IS
    'Meta''s verification handshake: the challenge to echo when mode is subscribe and the verify token matches config.verify_token (constant-time), else NULL';

-- The Graph URL of an object of the channel's API: a WhatsApp Cloud media id
-- (step 1 of the download, channels.md §2.4), a PSID or IGSID (profile).
CREATE FUNCTION ventros.graph_url(ch ventros.channels, media_id text) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN media_id ~ '^[A-Za-z0-9_.-]{1,200}$' THEN
        rtrim(coalesce(nullif(ch.config->>'graph_base_url', ''),
                       CASE ch.type WHEN 'instagram' THEN 'https://graph.instagram.com' ELSE 'https://graph.facebook.com' END), '/')
        || '/' || coalesce(nullif(ch.config->>'graph_version', ''), 'v23.0') || '/' || media_id END
$$;
COMMENT ON FUNCTION ventros.graph_url(ventros.channels, text) IS
    'The Graph URL of an object id on the channel''s API (<graph_base_url>/<graph_version>/<id>): media ids, PSIDs, IGSIDs';

-- Every Meta delivery (WhatsApp Cloud, Instagram, Messenger) is an object
-- with an entry array, for one kind of object.  One item saying why when a
-- body is not that (what: the delivery's name in the error); none when it is.
CREATE FUNCTION ventros.meta_envelope_refusal(doc jsonb, body bytea, expected_object text, what text)
RETURNS SETOF ventros.inbox_item
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ROW('invalid', ventros.body_sha256(body), doc, NULL, 'failed',
               format('22P02: a %s webhook body must be an object with an entry array', what))::ventros.inbox_item
     WHERE jsonb_typeof(doc) IS DISTINCT FROM 'object' OR jsonb_typeof(doc->'entry') IS DISTINCT FROM 'array'
    UNION ALL
    SELECT ROW('unknown', ventros.body_sha256(body), doc, NULL, 'unparsed',
               format('unexpected object %s', coalesce(doc->>'object', 'null')))::ventros.inbox_item
     WHERE jsonb_typeof(doc) = 'object' AND jsonb_typeof(doc->'entry') = 'array'
       AND doc->>'object' IS DISTINCT FROM expected_object
$$;
COMMENT ON FUNCTION ventros.meta_envelope_refusal(jsonb, bytea, text, text) IS
    'The one item of a Meta delivery that is not an object with an entry array (invalid) or is about another kind of object (unknown); none for a good envelope';

-- A change of a Meta entry that no parser reads (comments, templates, account
-- updates, errors, ...): stored unparsed, under the key of its content.
CREATE FUNCTION ventros.meta_unparsed_change(item jsonb, change jsonb, foreign_item boolean)
RETURNS ventros.inbox_item
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ROW(left(coalesce(ventros.json_text(change, 'field'), 'unknown'), 200), ventros.json_sha256(item), item, NULL,
               CASE WHEN foreign_item THEN 'foreign' ELSE 'unparsed' END, NULL)::ventros.inbox_item
$$;
COMMENT ON FUNCTION ventros.meta_unparsed_change(jsonb, jsonb, boolean) IS
    'The inbox item of a Meta change no parser reads: unparsed (foreign when the entry is not the channel''s), keyed by its content';

-- Instagram and Messenger: one item per entry[].messaging[] event.
CREATE FUNCTION ventros.split_meta_messaging(provider text, config jsonb, doc jsonb, body bytea)
RETURNS SETOF ventros.inbox_item
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ventros.inbox_item;
    e jsonb;
    m jsonb;
    x jsonb;
    expected_object CONSTANT text := CASE provider WHEN 'instagram' THEN 'instagram' ELSE 'page' END;
    ours text := nullif(CASE provider WHEN 'instagram' THEN config->>'ig_account_id' ELSE config->>'page_id' END, '');
    foreign_item boolean;
    sender text;
    stamp text;
BEGIN
    RETURN QUERY SELECT * FROM ventros.meta_envelope_refusal(doc, body, expected_object, 'Meta');
    IF FOUND THEN
        RETURN;
    END IF;
    FOR e IN SELECT * FROM jsonb_array_elements(doc->'entry') LOOP
        foreign_item := ours IS NOT NULL AND ventros.json_text(e, 'id') IS DISTINCT FROM ours;
        FOR m IN SELECT * FROM jsonb_array_elements(CASE WHEN jsonb_typeof(e->'messaging') = 'array' THEN e->'messaging' ELSE '[]' END) LOOP
            r.item := jsonb_build_object('object', doc->'object', 'entry_id', e->'id', 'entry_time', e->'time', 'event', m);
            r.ref_id := NULL;
            r.status := 'received';
            r.last_error := NULL;
            sender := ventros.json_text(m, 'sender', 'id');
            stamp := ventros.json_text(m, 'timestamp');
            x := NULL;
            IF jsonb_typeof(m->'message') = 'object' THEN
                x := m->'message';
                r.event := CASE WHEN x->>'is_deleted' = 'true' THEN 'message_deleted'
                                WHEN x->>'is_echo' = 'true' THEN 'message_echo' ELSE 'message' END;
                -- A deletion carries the mid of the message it deletes: its own key.
                r.dedupe_key := CASE r.event WHEN 'message_deleted' THEN 'del:' ELSE 'msg:' END || ventros.json_text(x, 'mid');
                r.ref_id := ventros.json_text(x, 'mid');
            ELSIF jsonb_typeof(m->'message_edit') = 'object' THEN
                r.event := 'message_edit';
                r.dedupe_key := 'edit:' || ventros.json_text(m, 'message_edit', 'mid') || ':'
                                || coalesce(ventros.json_text(m, 'message_edit', 'num_edit'), stamp);
                r.ref_id := ventros.json_text(m, 'message_edit', 'mid');
            ELSIF jsonb_typeof(m->'read') = 'object' THEN
                r.event := 'read';
                r.dedupe_key := coalesce('read:' || ventros.json_text(m, 'read', 'mid'),
                                         'read:' || sender || ':' || ventros.json_text(m, 'read', 'watermark'));
                r.ref_id := ventros.json_text(m, 'read', 'mid');
            ELSIF jsonb_typeof(m->'delivery') = 'object' THEN
                r.event := 'delivery';
                r.dedupe_key := 'dlv:' || sender || ':' || coalesce(ventros.json_text(m, 'delivery', 'watermark'),
                                                                     ventros.json_sha256(m->'delivery'));
            ELSIF jsonb_typeof(m->'reaction') = 'object' THEN
                r.event := 'reaction';
                r.dedupe_key := 'react:' || ventros.json_text(m, 'reaction', 'mid') || ':' || sender || ':' || stamp;
                r.ref_id := ventros.json_text(m, 'reaction', 'mid');
            ELSIF jsonb_typeof(m->'postback') = 'object' THEN
                r.event := 'postback';
                r.dedupe_key := 'pb:' || coalesce(ventros.json_text(m, 'postback', 'mid'), sender || ':' || stamp);
            ELSIF jsonb_typeof(m->'referral') = 'object' THEN
                r.event := 'referral';
                r.dedupe_key := 'ref:' || sender || ':' || stamp;
            ELSE
                r.event := 'unknown';
                r.dedupe_key := NULL;
                r.status := 'unparsed';
            END IF;
            r.dedupe_key := coalesce(r.dedupe_key, ventros.json_sha256(r.item));
            IF foreign_item THEN
                r.status := 'foreign';
            END IF;
            RETURN NEXT r;
        END LOOP;
        IF jsonb_typeof(e->'changes') = 'array' THEN
            -- comments, mentions and other fields: stored unparsed.
            FOR x IN SELECT * FROM jsonb_array_elements(e->'changes') LOOP
                RETURN NEXT ventros.meta_unparsed_change(
                    jsonb_build_object('object', doc->'object', 'entry_id', e->'id', 'entry_time', e->'time', 'change', x),
                    x, foreign_item);
            END LOOP;
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION ventros.split_meta_messaging(text, jsonb, jsonb, bytea) IS
    'The inbox items of an Instagram or Messenger delivery: one per messaging event (msg:, del:, edit:, read:, dlv:, react:, pb:, ref: keys); changes stored unparsed; foreign when the entry is not the channel''s account/page';

-- The registry's shape for each of the two: (config, doc, body, headers).
CREATE FUNCTION ventros.split_instagram(config jsonb, doc jsonb, body bytea, headers jsonb)
RETURNS SETOF ventros.inbox_item
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM ventros.split_meta_messaging('instagram', config, doc, body) $$;
COMMENT ON FUNCTION ventros.split_instagram(jsonb, jsonb, bytea, jsonb) IS
    'The inbox items of an Instagram delivery (ventros.split_meta_messaging)';

CREATE FUNCTION ventros.split_messenger(config jsonb, doc jsonb, body bytea, headers jsonb)
RETURNS SETOF ventros.inbox_item
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM ventros.split_meta_messaging('messenger', config, doc, body) $$;
COMMENT ON FUNCTION ventros.split_messenger(jsonb, jsonb, bytea, jsonb) IS
    'The inbox items of a Messenger delivery (ventros.split_meta_messaging)';

-- ---- processing ----------------------------------------------------------------

-- Instagram and Messenger webhooks carry no name: a contact they create is
-- named by its id, and its profile is asked of the Graph API (a dispatcher
-- request of purpose contact.profile; ventros.contact_profile_received names
-- the contact when the answer comes).  Only for a contact created by this
-- transaction and still named by its id, once, when the channel has a token.
CREATE FUNCTION ventros.inbound_request_profile(ch ventros.channels, contact uuid, scoped_id text) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    token text;
    c ventros.contacts;
    request uuid;
BEGIN
    IF ch.type NOT IN ('instagram', 'messenger') OR contact IS NULL OR scoped_id !~ '^[0-9]{5,32}$' THEN
        RETURN NULL;
    END IF;
    -- the token is kept encrypted (sql/68_credentials_channels.sql): decrypted only when needed
    token := nullif((ventros.channel_with_secrets(ch)).config->>'access_token', '');
    IF token IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT * INTO c FROM ventros.contacts x WHERE x.tenant_id = ch.tenant_id AND x.id = contact;
    IF c.name IS DISTINCT FROM scoped_id OR c.created_at <> now()
       OR EXISTS (SELECT 1 FROM ventros.http_requests r
                  WHERE r.tenant_id = ch.tenant_id AND r.correlation_id = contact AND r.purpose = 'contact.profile') THEN
        RETURN NULL;
    END IF;
    request := ventros.enqueue_http_request(
        ventros.graph_url(ch, scoped_id)
            || CASE ch.type WHEN 'instagram' THEN '?fields=name,username,profile_pic' ELSE '?fields=first_name,last_name,profile_pic' END,
        'GET', ventros.graph_headers(ch, false), NULL, 'contact.profile', contact, 3);
    RETURN jsonb_build_object('profile_request', request);
END
$$;
COMMENT ON FUNCTION ventros.inbound_request_profile(ventros.channels, uuid, text) IS
    'Queues a Graph profile lookup (purpose contact.profile) for an Instagram/Messenger contact created now and named by its scoped id, when the channel has an access token';

-- The handler of contact.profile requests: names the contact (and sets its
-- picture) from the Graph answer, unless someone renamed it meanwhile.
CREATE FUNCTION ventros.contact_profile_received(r ventros.http_requests) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    doc jsonb;
    new_name text;
    picture text;
BEGIN
    IF r.status <> 'succeeded' OR r.response_body IS NULL OR r.correlation_id IS NULL THEN
        RETURN;
    END IF;
    BEGIN
        doc := convert_from(r.response_body, 'UTF8')::jsonb;
    EXCEPTION WHEN OTHERS THEN
        RETURN;             -- not JSON: nothing to learn
    END;
    IF jsonb_typeof(doc) IS DISTINCT FROM 'object' THEN
        RETURN;
    END IF;
    new_name := left(coalesce(nullif(btrim(ventros.json_text(doc, 'name')), ''),
                          nullif(btrim(concat_ws(' ', ventros.json_text(doc, 'first_name'), ventros.json_text(doc, 'last_name'))), ''),
                          nullif(btrim(ventros.json_text(doc, 'username')), '')), 200);
    picture := ventros.inbound_http_url(ventros.json_text(doc, 'profile_pic'));
    IF new_name IS NULL THEN
        RETURN;
    END IF;
    UPDATE ventros.contacts c
    SET name = new_name,
        profile_picture_url = coalesce(picture, c.profile_picture_url),
        profile_picture_fetched_at = CASE WHEN picture IS NOT NULL THEN now() ELSE c.profile_picture_fetched_at END,
        version = c.version
    WHERE c.tenant_id = r.tenant_id AND c.id = r.correlation_id AND c.deleted_at IS NULL
      AND EXISTS (SELECT 1 FROM ventros.contact_identities i
                  WHERE i.tenant_id = c.tenant_id AND i.contact_id = c.id AND i.identity_type IN ('psid', 'igsid')
                    AND i.value = c.name AND i.deleted_at IS NULL);
END
$$;
COMMENT ON FUNCTION ventros.contact_profile_received(ventros.http_requests) IS
    'Handler of contact.profile requests: names a contact still named by its PSID/IGSID from the Graph profile (name, or first and last name, or username) and sets its picture; emits contact.updated';
SELECT ventros.register_http_request_handler('contact.profile', 'ventros.contact_profile_received(ventros.http_requests)');

-- Instagram / Messenger attachments: the first decides the content type.
CREATE FUNCTION ventros.meta_messaging_message(ch ventros.channels, item jsonb, echo boolean) RETURNS ventros.inbox_outcome
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m jsonb := item->'event';
    x jsonb := item->'event'->'message';
    att jsonb := x->'attachments'->0;
    att_type text := ventros.json_text(x, 'attachments', '0', 'type');
    content text := 'text';
    body text := ventros.json_text(x, 'text');
    media_url text;
    meta jsonb := '{}';
    ref jsonb := coalesce(x->'referral', m->'referral');
    o ventros.inbox_outcome;
    extra jsonb;
    counterpart text := CASE WHEN echo THEN ventros.json_text(m, 'recipient', 'id') ELSE ventros.json_text(m, 'sender', 'id') END;
BEGIN
    IF att IS NOT NULL THEN
        media_url := ventros.inbound_http_url(ventros.json_text(att, 'payload', 'url'));
        content := CASE att_type WHEN 'image' THEN 'image' WHEN 'video' THEN 'video' WHEN 'audio' THEN 'audio'
                                 WHEN 'file' THEN 'document' WHEN 'sticker' THEN 'sticker' ELSE 'text' END;
        IF content = 'text' THEN
            -- shares, story mentions, reels, posts, templates, fallbacks: a link.
            body := coalesce(body, ventros.json_text(att, 'payload', 'title'), ventros.json_text(att, 'title'), media_url,
                             '[' || coalesce(att_type, 'attachment') || ']');
            media_url := NULL;
        END IF;
        meta := jsonb_build_object('attachments', x->'attachments');
    END IF;
    IF jsonb_typeof(x->'quick_reply') = 'object' THEN
        meta := meta || jsonb_build_object('quick_reply', x->'quick_reply');
    END IF;
    IF jsonb_typeof(x->'reply_to'->'story') = 'object' THEN
        meta := meta || jsonb_build_object('reply_to_story', x->'reply_to'->'story');
    END IF;
    IF jsonb_typeof(ref) = 'object' THEN
        meta := meta || jsonb_build_object('referral', ref);
    END IF;
    IF echo AND ventros.json_text(x, 'app_id') IS NOT NULL THEN
        meta := meta || jsonb_build_object('app_id', x->'app_id');
    END IF;
    o := ventros.inbound_message(ch, counterpart, echo, ventros.json_text(x, 'mid'), content, body,
                                 ventros.inbound_time(ventros.json_text(m, 'timestamp')), NULL, media_url, NULL,
                                 CASE WHEN meta <> '{}' THEN meta END, ventros.json_text(x, 'reply_to', 'mid'));
    IF jsonb_typeof(ref) = 'object' AND NOT echo THEN
        extra := ventros.meta_referral_tracking(ch, o.contact_id, o.message_id, ref);
        o.result := coalesce(o.result, '{}') || extra;
    END IF;
    extra := ventros.inbound_request_profile(ch, o.contact_id, counterpart);
    IF extra IS NOT NULL THEN
        o.result := coalesce(o.result, '{}') || extra;
    END IF;
    RETURN o;
END
$$;

COMMENT ON FUNCTION ventros.meta_messaging_message(ventros.channels, jsonb, boolean) IS
    'An Instagram/Messenger message or echo: text, first attachment as media (image, video, audio, file as document, sticker; shares and the like as a link), reply_to, quick_reply, referral tracking';

CREATE FUNCTION ventros.meta_referral_tracking(ch ventros.channels, contact uuid, message_id uuid, ref jsonb) RETURNS jsonb
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.inbound_tracking(contact,
        (SELECT m.session_id FROM ventros.messages m WHERE m.tenant_id = ch.tenant_id AND m.id = message_id),
        CASE WHEN upper(ref->>'source') = 'ADS' OR ref ? 'ad_id' THEN 'meta_ads' ELSE 'referral' END,
        CASE ch.type WHEN 'instagram' THEN 'instagram' ELSE 'facebook' END,
        ventros.json_text(ref, 'ad_id'), ventros.json_text(ref, 'source_url'), NULL,
        coalesce(ventros.json_text(ref, 'ads_context_data', 'ad_title'), ventros.json_text(ref, 'ref')), ref)
$$;
COMMENT ON FUNCTION ventros.meta_referral_tracking(ventros.channels, uuid, uuid, jsonb) IS
    'Tracking of an Instagram/Messenger referral (ads: meta_ads, else referral; campaign from the ad title or ref)';

CREATE FUNCTION ventros.meta_messaging_process(r ventros.inbox, ch ventros.channels) RETURNS ventros.inbox_outcome
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m jsonb := r.item->'event';
    sender text := ventros.json_text(r.item, 'event', 'sender', 'id');
    contact uuid;
    target ventros.messages;
    o ventros.inbox_outcome;
    mid text;
    n integer := 0;
    pending boolean := false;
BEGIN
    IF jsonb_typeof(m) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'Meta messaging item without an event object' USING ERRCODE = '22023';
    END IF;
    CASE r.event
        WHEN 'message' THEN
            RETURN ventros.meta_messaging_message(ch, r.item, false);
        WHEN 'message_echo' THEN
            RETURN ventros.meta_messaging_message(ch, r.item, true);
        WHEN 'message_deleted' THEN
            RETURN ventros.inbound_delete(ch, ventros.json_text(m, 'message', 'mid'));
        WHEN 'message_edit' THEN
            RETURN ventros.inbound_edit(ch, ventros.json_text(m, 'message_edit', 'mid'), ventros.json_text(m, 'message_edit', 'text'),
                                        ventros.inbound_time(ventros.json_text(m, 'timestamp')));
        WHEN 'reaction' THEN
            RETURN ventros.inbound_reaction(ch, ventros.json_text(m, 'reaction', 'mid'), ventros.inbound_require(sender, 'sender'),
                CASE WHEN m->'reaction'->>'action' = 'unreact' THEN ''
                     ELSE coalesce(ventros.json_text(m, 'reaction', 'emoji'), ventros.json_text(m, 'reaction', 'reaction'), '') END);
        WHEN 'read' THEN
            contact := ventros.inbound_contact(ch, ventros.inbound_require(sender, 'sender'));
            mid := ventros.json_text(m, 'read', 'mid');
            IF mid IS NOT NULL THEN
                -- Instagram: this message, and every earlier one to the contact, was read.
                target := ventros.inbound_find_message(ch, mid);
                IF target.id IS NULL THEN
                    RETURN ventros.inbox_outcome('unmatched', NULL, contact, '{"status": "read"}');
                END IF;
                n := ventros.inbound_read_until(ch, contact, target."timestamp");
                RETURN ventros.inbox_outcome('processed', target.id, contact, jsonb_build_object('status', 'read', 'messages', n));
            END IF;
            n := ventros.inbound_read_until(ch, contact,
                     ventros.inbound_time(ventros.inbound_require(ventros.json_text(m, 'read', 'watermark'), 'read watermark')));
            RETURN ventros.inbox_outcome('processed', NULL, contact, jsonb_build_object('status', 'read', 'messages', n));
        WHEN 'delivery' THEN
            contact := ventros.inbound_contact(ch, ventros.inbound_require(sender, 'sender'));
            IF jsonb_typeof(m->'delivery'->'mids') = 'array' AND jsonb_array_length(m->'delivery'->'mids') > 0 THEN
                FOR mid IN SELECT jsonb_array_elements_text(m->'delivery'->'mids') LOOP
                    o := ventros.inbound_status(ch, mid, 'delivered');
                    pending := pending OR o.status = 'unmatched';
                    n := n + CASE WHEN o.result->>'applied' = 'true' THEN 1 ELSE 0 END;
                END LOOP;
                RETURN ventros.inbox_outcome(CASE WHEN pending THEN 'unmatched' ELSE 'processed' END, NULL, contact,
                                             jsonb_build_object('status', 'delivered', 'messages', n));
            END IF;
            n := ventros.inbound_read_until(ch, contact,
                     ventros.inbound_time(ventros.inbound_require(ventros.json_text(m, 'delivery', 'watermark'), 'delivery watermark')),
                     'delivered');
            RETURN ventros.inbox_outcome('processed', NULL, contact, jsonb_build_object('status', 'delivered', 'messages', n));
        WHEN 'postback' THEN
            -- A button tapped: an inbound text message with the button's title.
            RETURN ventros.inbound_message(ch, sender, false,
                coalesce(ventros.json_text(m, 'postback', 'mid'), 'pb:' || sender || ':' || ventros.json_text(m, 'timestamp')),
                'text', coalesce(ventros.json_text(m, 'postback', 'title'), ventros.json_text(m, 'postback', 'payload')),
                ventros.inbound_time(ventros.json_text(m, 'timestamp')), NULL, NULL, NULL,
                jsonb_build_object('postback', m->'postback'));
        WHEN 'referral' THEN
            contact := ventros.inbound_contact(ch, ventros.inbound_require(sender, 'sender'));
            RETURN ventros.inbox_outcome('processed', NULL, contact, ventros.meta_referral_tracking(ch, contact, NULL, m->'referral'));
        ELSE
            RETURN ventros.inbox_outcome('unparsed');
    END CASE;
END
$$;
COMMENT ON FUNCTION ventros.meta_messaging_process(ventros.inbox, ventros.channels) IS
    'Processes an Instagram/Messenger messaging event: message, echo, deletion, edit, reaction, read (mid or watermark), delivery (mids or watermark), postback, referral';

-- The conversation of an Instagram or Messenger item: the other party (the
-- sender, or the recipient of our echo), for the processors' order.
CREATE FUNCTION ventros.meta_messaging_conversation(item jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- (no SET clause: small enough to be inlined; every name is qualified)
AS $$
    SELECT CASE WHEN ventros.json_text(item, 'event', 'message', 'is_echo') = 'true'
                THEN ventros.json_text(item, 'event', 'recipient', 'id')
                ELSE ventros.json_text(item, 'event', 'sender', 'id') END
$$;
COMMENT ON FUNCTION ventros.meta_messaging_conversation(jsonb) IS
    'The other party of an Instagram/Messenger inbox item (event.sender.id, event.recipient.id for echoes): the processors keep its items in order';

-- ---- registration ---------------------------------------------------------------

SELECT ventros.register_inbound_provider(p, 'ventros.verify_meta_webhook(jsonb, jsonb, bytea)',
           format('ventros.split_%s(jsonb, jsonb, bytea, jsonb)', p)::regprocedure,
           'ventros.meta_messaging_process(ventros.inbox, ventros.channels)',
           'ventros.meta_webhook_challenge(jsonb, text, text, text)', 'ventros.meta_messaging_conversation(jsonb)')
  FROM unnest('{instagram,messenger}'::text[]) p;

GRANT EXECUTE ON FUNCTION ventros.verify_meta_webhook(jsonb, jsonb, bytea) TO ventros_admin;
