-- Inbound parsers: one inbox item (sql/88_inbox.sql) into the domain.
--
-- Entry: ventros.inbox_process(item, channel) -> ventros.inbox_outcome, run by
-- ventros.inbox_run in a subtransaction as the item's tenant.  An error
-- raised here fails the item (kept on its row, retried unless the item is
-- malformed); the outcome's status is one of processed, unmatched, ignored,
-- unparsed.
--
-- What is parsed (docs/channels.md has the table):
--   WAHA       message.any (text, media, location, contact card, fromMe echo,
--              click-to-WhatsApp ad data), message.ack, message.reaction,
--              message.revoked, message.edited, session.status
--   WhatsApp   messages (text, image, audio/voice, video, document, sticker,
--              location, contacts, reaction, interactive/button replies,
--              context replies, system; referral -> tracking), statuses
--   Instagram, Messenger
--              message (text, attachments, reply_to, quick_reply, referral),
--              echo, is_deleted, message_edit, read, delivery, reaction,
--              postback, referral
-- Everything else is stored and left unparsed.
--
-- Invariants:
--   * one provider message is one message: receive_message is idempotent on
--     (channel, provider id), an echo of what we sent is matched to it (by
--     id, or by an unsent-yet message with the same text), never duplicated;
--   * statuses only move forward (queued < sent < delivered < read/played;
--     failed from queued or sent only): a late receipt changes nothing;
--   * WhatsApp ids: @s.whatsapp.net is stored as @c.us, device suffixes
--     (":3") dropped; an event carrying both the phone and the @lid form of a
--     sender links both identities to one contact.

-- ---- shared helpers -----------------------------------------------------------

-- A WhatsApp JID in its stored form: digits@c.us, digits@lid, or NULL when it
-- is neither (groups, broadcast, malformed).
CREATE FUNCTION ventros.canonical_whatsapp_id(jid text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- (no SET clause: small enough to be inlined; every name is qualified)
AS $$
    SELECT CASE
        WHEN jid OPERATOR(pg_catalog.~) '^\+?[0-9]{8,15}(:[0-9]+)?@(c\.us|s\.whatsapp\.net)$'
            THEN pg_catalog.regexp_replace(jid, '^\+?([0-9]+)(:[0-9]+)?@.*$', '\1') OPERATOR(pg_catalog.||) '@c.us'
        WHEN jid OPERATOR(pg_catalog.~) '^[0-9]{6,20}(:[0-9]+)?@lid$'
            THEN pg_catalog.regexp_replace(jid, '^([0-9]+)(:[0-9]+)?@lid$', '\1') OPERATOR(pg_catalog.||) '@lid'
        WHEN jid OPERATOR(pg_catalog.~) '^[0-9]{8,15}$' THEN jid OPERATOR(pg_catalog.||) '@c.us'
        END
$$;
COMMENT ON FUNCTION ventros.canonical_whatsapp_id(text) IS
    'The stored form of a WhatsApp id: <digits>@c.us for phone ids (from @c.us, @s.whatsapp.net or bare digits), <digits>@lid for privacy ids; NULL otherwise';

-- inbound_whatsapp_sender: the sender id to record a message under, after
-- linking the phone and @lid forms an event carries to one contact.  Locks
-- both identities (in a fixed order) so two deliveries naming the same
-- person in different forms cannot create two contacts.
CREATE FUNCTION ventros.inbound_whatsapp_sender(ch ventros.channels, jids text[], name text) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    ids text[] := ARRAY(SELECT DISTINCT ventros.canonical_whatsapp_id(j) FROM unnest(jids) j
                        WHERE ventros.canonical_whatsapp_id(j) IS NOT NULL ORDER BY 1);
    phone_id text := (SELECT i FROM unnest(ids) i WHERE i LIKE '%@c.us' LIMIT 1);
    lid_id text := (SELECT i FROM unnest(ids) i WHERE i LIKE '%@lid' LIMIT 1);
    by_phone uuid;
    by_lid uuid;
    x text;
BEGIN
    IF phone_id IS NULL AND lid_id IS NULL THEN
        RAISE EXCEPTION 'no WhatsApp sender id in %', array_to_string(jids, ', ') USING ERRCODE = '22023';
    END IF;
    IF phone_id IS NULL OR lid_id IS NULL THEN
        RETURN coalesce(phone_id, lid_id);      -- one form: receive_message upserts it
    END IF;
    FOREACH x IN ARRAY ARRAY[phone_id, lid_id] LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended(tenant || '/' || CASE WHEN x LIKE '%@lid' THEN 'whatsapp_lid' ELSE 'whatsapp' END
                                                       || '/' || x, 0));
    END LOOP;
    by_phone := ventros.find_contact_by_identity('whatsapp', phone_id);
    by_lid := ventros.find_contact_by_identity('whatsapp_lid', lid_id);
    IF by_phone IS NULL AND by_lid IS NULL THEN
        by_phone := ventros.upsert_contact_by_identity('whatsapp', phone_id, name, ch.project_id, ch.id, ch.type);
    END IF;
    IF by_phone IS NULL THEN
        PERFORM ventros.add_contact_identity(by_lid, 'whatsapp', phone_id, ch.id);
    ELSIF by_lid IS DISTINCT FROM by_phone THEN
        -- (another contact with the @lid: add_contact_identity opens a merge suggestion)
        PERFORM ventros.add_contact_identity(by_phone, 'whatsapp_lid', lid_id, ch.id);
    END IF;
    RETURN phone_id;
END
$$;
COMMENT ON FUNCTION ventros.inbound_whatsapp_sender(ventros.channels, text[], text) IS
    'Links the phone (@c.us) and privacy (@lid) ids of one WhatsApp sender to one contact (creating it if new); returns the id to record the message under';

-- The contact of a recipient/sender id on a channel (echo, referral, receipts).
CREATE FUNCTION ventros.inbound_contact(ch ventros.channels, sender text, name text DEFAULT NULL) RETURNS uuid
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.upsert_contact_by_identity(ventros.sender_identity_type(ch.type, sender), sender, name,
                                              ch.project_id, ch.id, ch.type)
$$;
COMMENT ON FUNCTION ventros.inbound_contact(ventros.channels, text, text) IS
    'The contact of a provider id on a channel, created if new';

-- A live message of the channel by provider id.
CREATE FUNCTION ventros.inbound_find_message(ch ventros.channels, provider_id text) RETURNS ventros.messages
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m.* FROM ventros.messages m
    WHERE m.tenant_id = ch.tenant_id AND m.channel_id = ch.id AND m.channel_message_id = provider_id AND m.deleted_at IS NULL
$$;
COMMENT ON FUNCTION ventros.inbound_find_message(ventros.channels, text) IS 'The live message of a channel with a provider id, if any';

CREATE FUNCTION ventros.inbox_outcome(status text, message_id uuid DEFAULT NULL, contact_id uuid DEFAULT NULL,
                                      result jsonb DEFAULT NULL) RETURNS ventros.inbox_outcome
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ROW(status, message_id, contact_id, result)::ventros.inbox_outcome $$;
COMMENT ON FUNCTION ventros.inbox_outcome(text, uuid, uuid, jsonb) IS 'Builds an inbox outcome';

CREATE FUNCTION ventros.inbound_require(value text, what text) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF value IS NULL OR value = '' THEN
        RAISE EXCEPTION 'webhook item has no %', what USING ERRCODE = '22023';
    END IF;
    RETURN value;
END
$$;
COMMENT ON FUNCTION ventros.inbound_require(text, text) IS 'A required field of a webhook item, or 22023 naming it';

-- Unix seconds or milliseconds (number or string) as a timestamp; NULL if absent.
CREATE FUNCTION ventros.inbound_time(value text) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- (no SET clause: small enough to be inlined; every name is qualified)
AS $$
    SELECT CASE WHEN value OPERATOR(pg_catalog.~) '^[0-9]{1,16}(\.[0-9]+)?$'
                THEN pg_catalog.to_timestamp(CASE WHEN value::numeric OPERATOR(pg_catalog.>) 100000000000
                                                  THEN value::numeric OPERATOR(pg_catalog./) 1000 ELSE value::numeric END::float8)
           END
$$;
COMMENT ON FUNCTION ventros.inbound_time(text) IS 'A provider timestamp (unix seconds or milliseconds) as timestamptz';

CREATE FUNCTION ventros.inbound_http_url(url text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- (no SET clause: small enough to be inlined; every name is qualified)
AS $$ SELECT CASE WHEN url OPERATOR(pg_catalog.~) '^https?://[^\s]+$' AND pg_catalog.length(url) OPERATOR(pg_catalog.<=) 2048 THEN url END $$;
COMMENT ON FUNCTION ventros.inbound_http_url(text) IS 'The URL when it is an http(s) URL a message may store, else NULL';

-- The hook for media downloads: the send helper's ventros.request_media_download
-- (a media.download dispatcher request) when installed.  A failure is noted,
-- never fatal: the message and its media URL are stored either way.
CREATE FUNCTION ventros.inbound_media_hook(m ventros.messages) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF m.media_url IS NULL OR to_regprocedure('ventros.request_media_download(uuid)') IS NULL THEN
        RETURN NULL;
    END IF;
    BEGIN
        EXECUTE 'SELECT ventros.request_media_download($1)' USING m.id;
        RETURN '{"media_download": "requested"}';
    EXCEPTION WHEN OTHERS THEN
        RETURN jsonb_build_object('media_download_error', SQLSTATE || ': ' || SQLERRM);
    END;
END
$$;
COMMENT ON FUNCTION ventros.inbound_media_hook(ventros.messages) IS
    'Asks for the download of a new inbound message''s media through ventros.request_media_download(message_id) when that function exists';

-- A reply: the message replied to, when we have it.
CREATE FUNCTION ventros.inbound_link_reply(ch ventros.channels, m ventros.messages, replied_provider_id text) RETURNS ventros.messages
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target ventros.messages;
BEGIN
    IF replied_provider_id IS NULL OR m.reply_to_id IS NOT NULL THEN
        RETURN m;
    END IF;
    target := ventros.inbound_find_message(ch, replied_provider_id);
    IF target.id IS NULL OR target.id = m.id THEN
        RETURN m;
    END IF;
    UPDATE ventros.messages x SET reply_to_id = target.id, version = m.version
    WHERE x.tenant_id = m.tenant_id AND x.id = m.id RETURNING * INTO m;
    RETURN m;
END
$$;
COMMENT ON FUNCTION ventros.inbound_link_reply(ventros.channels, ventros.messages, text) IS
    'Sets reply_to_id of a message to the message with the replied provider id, when it is known';

-- inbound_message: an inbound message (or an echo of an outbound one) with
-- what every provider parser extracted.
CREATE FUNCTION ventros.inbound_message(
    ch             ventros.channels,
    sender         text,
    from_me        boolean,
    provider_id    text,
    content_type   text,
    body           text,
    at             timestamptz,
    sender_name    text DEFAULT NULL,
    media_url      text DEFAULT NULL,
    media_mimetype text DEFAULT NULL,
    metadata       jsonb DEFAULT NULL,
    replied_id     text DEFAULT NULL)
RETURNS ventros.inbox_outcome
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m ventros.messages;
    contact uuid;
    s ventros.sessions;
    extra jsonb;
    placeholder text;
BEGIN
    provider_id := ventros.inbound_require(provider_id, 'message id');
    sender := ventros.inbound_require(sender, CASE WHEN from_me THEN 'recipient' ELSE 'sender' END);
    at := coalesce(at, now());
    body := nullif(body, '');
    -- Media without a usable URL (not downloaded by WAHA, expired, ...): the
    -- message is kept as text saying so, the media details in metadata.
    IF content_type IN ('image', 'video', 'audio', 'voice', 'document', 'sticker') AND media_url IS NULL THEN
        placeholder := '[' || content_type || ']';
        metadata := coalesce(metadata, '{}') || jsonb_build_object('media_missing', true, 'media_type', content_type);
        content_type := 'text';
        body := coalesce(body, placeholder);
    END IF;
    IF content_type = 'text' AND body IS NULL THEN
        RAISE EXCEPTION 'webhook message % has no text', provider_id USING ERRCODE = '22023';
    END IF;
    IF NOT from_me THEN
        m := ventros.receive_message(ch.id, sender, body, content_type, provider_id, at, sender_name, media_url,
                                     media_mimetype, metadata);
        m := ventros.inbound_link_reply(ch, m, replied_id);
        extra := ventros.inbound_media_hook(m);
        RETURN ventros.inbox_outcome('processed', m.id, m.contact_id, extra);
    END IF;

    -- An echo: ours (known id), ours still being sent, or sent from another device.
    m := ventros.inbound_find_message(ch, provider_id);
    IF m.id IS NOT NULL THEN
        RETURN ventros.inbox_outcome('processed', m.id, m.contact_id, '{"echo": "known"}');
    END IF;
    contact := ventros.inbound_contact(ch, sender);
    SELECT * INTO m FROM ventros.messages x
    WHERE x.tenant_id = ch.tenant_id AND x.channel_id = ch.id AND x.contact_id = contact AND x.from_me
      AND x.channel_message_id IS NULL AND x.deleted_at IS NULL AND x.status IN ('queued', 'sent')
      AND x.text IS NOT DISTINCT FROM body
      -- sent moments ago (by our clock or the provider's, whichever is earlier)
      AND x."timestamp" BETWEEN least(at, now()) - interval '10 minutes' AND greatest(at, now()) + interval '10 minutes'
    ORDER BY x."timestamp", x.id LIMIT 1
    FOR UPDATE;
    IF m.id IS NOT NULL AND m.status = 'queued' THEN
        -- Our send has not recorded its answer yet: wait for it (the id will match).
        RETURN ventros.inbox_outcome('unmatched', m.id, contact, '{"echo": "send in progress"}');
    ELSIF m.id IS NOT NULL THEN
        -- Sent, but the provider answered without an id: this echo tells it.
        UPDATE ventros.messages x SET channel_message_id = provider_id, version = m.version
        WHERE x.tenant_id = m.tenant_id AND x.id = m.id RETURNING * INTO m;
        RETURN ventros.inbox_outcome('processed', m.id, contact, '{"echo": "bound"}');
    END IF;
    s := ventros.start_or_continue_session(contact, ch.id, at);
    INSERT INTO ventros.messages ("timestamp", project_id, channel_id, channel_type_id, session_id, contact_id, from_me,
                                  content_type, text, media_url, media_mimetype, channel_message_id, status, agent_id,
                                  source, metadata)
    VALUES (at, ch.project_id, ch.id, s.channel_type_id, s.id, contact, true, content_type,
            ventros.check_length(body, 4096, 'message text'), media_url, media_mimetype, provider_id, 'sent',
            coalesce(ch.default_agent_id, ventros.system_agent_id('default')), 'manual',
            coalesce(metadata, '{}') || '{"echo": true}')
    ON CONFLICT (tenant_id, channel_id, channel_message_id) WHERE deleted_at IS NULL AND channel_message_id IS NOT NULL
    DO NOTHING
    RETURNING * INTO m;
    IF m.id IS NULL THEN
        m := ventros.inbound_find_message(ch, provider_id);
        RETURN ventros.inbox_outcome('processed', m.id, m.contact_id, '{"echo": "known"}');
    END IF;
    PERFORM ventros.record_message_effects(m, s);
    m := ventros.inbound_link_reply(ch, m, replied_id);
    RETURN ventros.inbox_outcome('processed', m.id, contact, '{"echo": "other_device"}');
EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION 'invalid webhook message: %', SQLERRM USING ERRCODE = '23514';
END
$$;
COMMENT ON FUNCTION ventros.inbound_message(ventros.channels, text, boolean, text, text, text, timestamptz, text, text, text, jsonb, text) IS
    'Records an inbound message (receive_message), or an echo of an outbound one: matched to the message we sent (by provider id; an id-less sent one with the same text gets the id; a queued one makes the echo wait, unmatched), else stored as sent from another device';

-- inbound_lock_message: inbound_find_message's row, locked for the change a
-- receipt, reaction or edit makes (all NULL: none).  Still live once locked.
CREATE FUNCTION ventros.inbound_lock_message(ch ventros.channels, provider_id text) RETURNS ventros.messages
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT x.* FROM ventros.messages x
     WHERE x.tenant_id = ch.tenant_id AND x.id = (ventros.inbound_find_message(ch, provider_id)).id AND x.deleted_at IS NULL
       FOR UPDATE
$$;
COMMENT ON FUNCTION ventros.inbound_lock_message(ventros.channels, text) IS
    'inbound_find_message, locked FOR UPDATE (a row of NULLs when there is none)';

-- inbound_status: a delivery receipt for a message of the channel.
CREATE FUNCTION ventros.inbound_status(ch ventros.channels, provider_id text, status text, error text DEFAULT NULL)
RETURNS ventros.inbox_outcome
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m ventros.messages;
    rank CONSTANT text[] := ARRAY['queued', 'sent', 'delivered', 'read', 'played'];
BEGIN
    m := ventros.inbound_lock_message(ch, ventros.inbound_require(provider_id, 'message id'));
    IF m.id IS NULL THEN
        RETURN ventros.inbox_outcome('unmatched', NULL, NULL, jsonb_build_object('status', status));
    END IF;
    IF status = 'played' AND m.content_type NOT IN ('audio', 'voice') THEN
        status := 'read';   -- a played video or image: read is what our machine knows
    END IF;
    IF m.status = status OR m.status = 'failed'
       OR (status = 'failed' AND m.status NOT IN ('queued', 'sent'))
       OR (status <> 'failed' AND array_position(rank, status) < array_position(rank, m.status)) THEN
        RETURN ventros.inbox_outcome('processed', m.id, m.contact_id,
                                     jsonb_build_object('status', status, 'applied', false, 'message_status', m.status));
    END IF;
    m := ventros.confirm_message_status(status, message_id => m.id, error => error);
    RETURN ventros.inbox_outcome('processed', m.id, m.contact_id, jsonb_build_object('status', status, 'applied', true));
END
$$;
COMMENT ON FUNCTION ventros.inbound_status(ventros.channels, text, text, text) IS
    'Applies a provider receipt to the channel''s message with that provider id (confirm_message_status); late, repeated and regressing receipts change nothing; unknown id: unmatched';

-- inbound_read_until: every outbound message of a contact on the channel up
-- to a time is read (Messenger watermarks, Instagram read of one mid).
CREATE FUNCTION ventros.inbound_read_until(ch ventros.channels, contact uuid, up_to timestamptz, new_status text DEFAULT 'read')
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m ventros.messages;
    n integer := 0;
BEGIN
    FOR m IN SELECT * FROM ventros.messages x
             WHERE x.tenant_id = ch.tenant_id AND x.channel_id = ch.id AND x.contact_id = contact AND x.from_me
               AND x.deleted_at IS NULL AND x."timestamp" <= up_to
               AND x.status IN ('sent', 'delivered') AND (new_status = 'read' OR x.status = 'sent')
             ORDER BY x."timestamp", x.id
             FOR UPDATE LOOP
        PERFORM ventros.confirm_message_status(new_status, message_id => m.id);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.inbound_read_until(ventros.channels, uuid, timestamptz, text) IS
    'Marks read (or delivered) every sent outbound message of a contact on a channel up to a time; returns how many changed';

-- inbound_reaction: a reaction (empty emoji: removed) on a message, kept in
-- its metadata.reactions as {reactor: emoji}.
CREATE FUNCTION ventros.inbound_reaction(ch ventros.channels, provider_id text, reactor text, emoji text)
RETURNS ventros.inbox_outcome
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m ventros.messages;
    reactions jsonb;
BEGIN
    m := ventros.inbound_lock_message(ch, ventros.inbound_require(provider_id, 'reacted message id'));
    reactor := ventros.inbound_require(reactor, 'reactor');
    IF m.id IS NULL THEN
        RETURN ventros.inbox_outcome('unmatched', NULL, NULL, jsonb_build_object('reaction', emoji));
    END IF;
    reactions := coalesce(m.metadata->'reactions', '{}');
    reactions := CASE WHEN coalesce(emoji, '') = '' THEN reactions - reactor
                      ELSE reactions || jsonb_build_object(reactor, left(emoji, 32)) END;
    IF reactions IS NOT DISTINCT FROM m.metadata->'reactions' OR (reactions = '{}' AND m.metadata->'reactions' IS NULL) THEN
        RETURN ventros.inbox_outcome('processed', m.id, m.contact_id, '{"applied": false}');
    END IF;
    UPDATE ventros.messages x SET metadata = coalesce(x.metadata, '{}') || jsonb_build_object('reactions', reactions),
                                  version = m.version
    WHERE x.tenant_id = m.tenant_id AND x.id = m.id;
    RETURN ventros.inbox_outcome('processed', m.id, m.contact_id, jsonb_build_object('reaction', emoji));
END
$$;
COMMENT ON FUNCTION ventros.inbound_reaction(ventros.channels, text, text, text) IS
    'Records (or removes, for an empty emoji) a reaction on a message in metadata.reactions; emits message.updated; unknown message: unmatched';

-- inbound_edit: a message's new text (the previous one kept in metadata).
CREATE FUNCTION ventros.inbound_edit(ch ventros.channels, provider_id text, new_text text, at timestamptz)
RETURNS ventros.inbox_outcome
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m ventros.messages;
BEGIN
    m := ventros.inbound_lock_message(ch, ventros.inbound_require(provider_id, 'edited message id'));
    new_text := ventros.inbound_require(new_text, 'edited text');
    IF m.id IS NULL THEN
        RETURN ventros.inbox_outcome('unmatched', NULL, NULL, '{"edit": true}');
    END IF;
    IF m.text IS NOT DISTINCT FROM new_text THEN
        RETURN ventros.inbox_outcome('processed', m.id, m.contact_id, '{"applied": false}');
    END IF;
    UPDATE ventros.messages x
    SET text = ventros.check_length(new_text, 4096, 'message text'),
        metadata = coalesce(x.metadata, '{}') || jsonb_build_object('edited_at', coalesce(at, now()), 'previous_text', m.text),
        version = m.version
    WHERE x.tenant_id = m.tenant_id AND x.id = m.id;
    RETURN ventros.inbox_outcome('processed', m.id, m.contact_id, '{"edited": true}');
END
$$;
COMMENT ON FUNCTION ventros.inbound_edit(ventros.channels, text, text, timestamptz) IS
    'Replaces a message''s text with the edited one (previous text and time kept in metadata); emits message.updated; unknown message: unmatched';

-- inbound_delete: the sender revoked/unsent a message: soft-deleted.
CREATE FUNCTION ventros.inbound_delete(ch ventros.channels, provider_id text) RETURNS ventros.inbox_outcome
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m ventros.messages;
BEGIN
    provider_id := ventros.inbound_require(provider_id, 'deleted message id');
    m := ventros.inbound_find_message(ch, provider_id);
    IF m.id IS NULL THEN
        RETURN ventros.inbox_outcome('unmatched', NULL, NULL, '{"delete": true}');
    END IF;
    PERFORM ventros.delete_message(m.id, NULL);
    RETURN ventros.inbox_outcome('processed', m.id, m.contact_id, '{"deleted": true}');
END
$$;
COMMENT ON FUNCTION ventros.inbound_delete(ventros.channels, text) IS
    'Soft-deletes the message a provider says was revoked or unsent; emits message.deleted; unknown message: unmatched';

-- inbound_tracking: ad/referral attribution of a contact.  Never fails the
-- item: a repeated click id or bad field is noted in the result instead.
CREATE FUNCTION ventros.inbound_tracking(contact uuid, session uuid, source text, platform text, ad_id text, ad_url text,
                                         click_id text, campaign text, referral jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t ventros.trackings;
BEGIN
    IF click_id IS NOT NULL THEN
        SELECT * INTO t FROM ventros.trackings x
        WHERE x.tenant_id = ventros.require_tenant() AND x.click_id = inbound_tracking.click_id AND x.deleted_at IS NULL;
        IF FOUND THEN
            RETURN jsonb_build_object('tracking_id', t.id);
        END IF;
    END IF;
    BEGIN
        t := ventros.create_tracking(contact, source, platform, campaign => left(campaign, 200), ad_id => left(ad_id, 200),
                                     ad_url => ventros.inbound_http_url(ad_url), click_id => left(click_id, 500),
                                     session_id => session, metadata => jsonb_build_object('referral', referral));
        RETURN jsonb_build_object('tracking_id', t.id);
    EXCEPTION WHEN OTHERS THEN
        RETURN jsonb_build_object('tracking_error', SQLSTATE || ': ' || SQLERRM);
    END;
END
$$;
COMMENT ON FUNCTION ventros.inbound_tracking(uuid, uuid, text, text, text, text, text, text, jsonb) IS
    'Records ad/referral attribution for a contact (create_tracking, once per click id); errors are returned, not raised';

-- The channel status a WAHA session status stands for.
CREATE FUNCTION ventros.waha_channel_status(session_status text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE session_status WHEN 'WORKING' THEN 'active' WHEN 'STARTING' THEN 'connecting'
                               WHEN 'SCAN_QR_CODE' THEN 'connecting' WHEN 'STOPPED' THEN 'inactive'
                               WHEN 'FAILED' THEN 'error' END
$$;
COMMENT ON FUNCTION ventros.waha_channel_status(text) IS
    'WAHA session status to channel status: WORKING active, STARTING and SCAN_QR_CODE connecting, STOPPED inactive, FAILED error';

-- inbound_channel_status: moves a channel towards a status through allowed
-- transitions only (directly, or through one intermediate state such as
-- activating); otherwise nothing changes.
CREATE FUNCTION ventros.inbound_channel_status(ch ventros.channels, target text) RETURNS ventros.inbox_outcome
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    via text;
    v integer;
    current_status text;
BEGIN
    IF target IS NULL THEN
        RETURN ventros.inbox_outcome('ignored', NULL, NULL, '{"reason": "unknown session status"}');
    END IF;
    SELECT c.version, c.status INTO v, current_status FROM ventros.channels c
    WHERE c.tenant_id = ch.tenant_id AND c.id = ch.id FOR UPDATE;
    IF current_status = target THEN
        RETURN ventros.inbox_outcome('processed', NULL, NULL, jsonb_build_object('channel_status', target, 'applied', false));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM ventros.aggregate_transitions t
                   WHERE t.aggregate = 'channel' AND t.from_state = current_status AND t.to_state = target) THEN
        SELECT t1.to_state INTO via FROM ventros.aggregate_transitions t1
        JOIN ventros.aggregate_transitions t2 ON t2.aggregate = 'channel' AND t2.from_state = t1.to_state AND t2.to_state = target
        WHERE t1.aggregate = 'channel' AND t1.from_state = current_status
        ORDER BY t1.to_state LIMIT 1;
        IF via IS NULL THEN
            RETURN ventros.inbox_outcome('ignored', NULL, NULL,
                jsonb_build_object('reason', 'transition not allowed', 'from', current_status, 'to', target));
        END IF;
        UPDATE ventros.channels c SET status = via, version = v WHERE c.tenant_id = ch.tenant_id AND c.id = ch.id
        RETURNING c.version INTO v;
    END IF;
    UPDATE ventros.channels c SET status = target, version = v WHERE c.tenant_id = ch.tenant_id AND c.id = ch.id;
    RETURN ventros.inbox_outcome('processed', NULL, NULL,
        jsonb_build_object('channel_status', target, 'applied', true, 'via', via));
END
$$;
COMMENT ON FUNCTION ventros.inbound_channel_status(ventros.channels, text) IS
    'Moves a channel to a status reported by its provider through allowed transitions (at most one intermediate state); ignored when no such path exists';

-- ---- WAHA ----------------------------------------------------------------------

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
    o := ventros.inbound_message(ch, sender, from_me, ventros.json_text(p, 'id'), kind, body, at,
                                 CASE WHEN NOT from_me THEN coalesce(ventros.json_text(info, 'PushName'), ventros.json_text(p, '_data', 'notifyName')) END,
                                 media_url, mime, CASE WHEN meta <> '{}' THEN meta END,
                                 coalesce(ventros.json_text(p, 'replyTo', 'id'), ventros.json_text(p, 'replyTo'),
                                          ventros.json_text(ctx, 'stanzaId')));
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
    'A WAHA message.any: sender (@c.us / @lid linked), content type, text, media URL and mimetype, location, contact card, reply, click-to-WhatsApp ad tracking; fromMe echoes matched to our sends';

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

-- ---- Meta ----------------------------------------------------------------------

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
    token text := nullif(ch.config->>'access_token', '');
    c ventros.contacts;
    request uuid;
BEGIN
    IF ch.type NOT IN ('instagram', 'messenger') OR token IS NULL OR contact IS NULL OR scoped_id !~ '^[0-9]{5,32}$' THEN
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
        'GET', jsonb_build_object('Authorization', 'Bearer ' || token), NULL, 'contact.profile', contact, 3);
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
SELECT ventros.declare_http_request_handler('contact.profile', 'ventros.contact_profile_received(ventros.http_requests)');

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

-- ---- dispatch -----------------------------------------------------------------

CREATE FUNCTION ventros.inbox_process(r ventros.inbox, ch ventros.channels) RETURNS ventros.inbox_outcome
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF ch.id IS NULL THEN
        RAISE EXCEPTION 'channel % of inbox item % not found', r.channel_id, r.id USING ERRCODE = 'P0002';
    END IF;
    IF r.item IS NULL THEN
        RAISE EXCEPTION 'inbox item % has no parsed JSON', r.id USING ERRCODE = '22P02';
    END IF;
    RETURN CASE r.provider
        WHEN 'waha' THEN ventros.waha_process(r, ch)
        WHEN 'whatsapp' THEN CASE r.event WHEN 'messages' THEN ventros.whatsapp_message(ch, r.item)
                                          WHEN 'statuses' THEN ventros.whatsapp_status(ch, r.item)
                                          ELSE ventros.inbox_outcome('unparsed') END
        ELSE ventros.meta_messaging_process(r, ch) END;
END
$$;
COMMENT ON FUNCTION ventros.inbox_process(ventros.inbox, ventros.channels) IS
    'Turns one inbox item into the domain by provider and event; returns its outcome (processed, unmatched, ignored, unparsed) or raises';
