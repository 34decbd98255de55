-- Inbound parsers: one inbox item (sql/88_inbox.sql) into the domain.
--
-- This file: the entry (inbox_process, calling the item's provider's process
-- function, ventros.inbound_providers) and the helpers every provider uses;
-- sql/89_inbound_meta.sql (Meta's signature and handshake, Instagram,
-- Messenger), sql/89_inbound_whatsapp.sql (WhatsApp Cloud) and
-- sql/89_inbound_waha.sql hold the providers and register them.
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

-- ---- dispatch -----------------------------------------------------------------

CREATE FUNCTION ventros.inbox_process(r ventros.inbox, ch ventros.channels) RETURNS ventros.inbox_outcome
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o ventros.inbox_outcome;
BEGIN
    IF ch.id IS NULL THEN
        RAISE EXCEPTION 'channel % of inbox item % not found', r.channel_id, r.id USING ERRCODE = 'P0002';
    END IF;
    IF r.item IS NULL THEN
        RAISE EXCEPTION 'inbox item % has no parsed JSON', r.id USING ERRCODE = '22P02';
    END IF;
    -- the provider's process function (ventros.inbound_providers; the
    -- foreign key of inbox.provider guarantees the row)
    EXECUTE format('SELECT * FROM %s($1, $2)',
                   (SELECT p.process FROM ventros.inbound_providers p WHERE p.provider = r.provider)::regproc)
        INTO o USING r, ch;
    RETURN o;
END
$$;
COMMENT ON FUNCTION ventros.inbox_process(ventros.inbox, ventros.channels) IS
    'Turns one inbox item into the domain by its provider''s process function (ventros.inbound_providers); returns its outcome (processed, unmatched, ignored, unparsed) or raises';

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
        PERFORM ventros.lock_tenant_key('identity/' || CASE WHEN x LIKE '%@lid' THEN 'whatsapp_lid' ELSE 'whatsapp' END
                                        || '/' || x);
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
    replied_id     text DEFAULT NULL,
    chat_id        uuid DEFAULT NULL)
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
                                     media_mimetype, metadata, chat_id);
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
    m := ventros.inbound_link_reply(ch, m, replied_id);
    RETURN ventros.inbox_outcome('processed', m.id, contact, '{"echo": "other_device"}');
EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION 'invalid webhook message: %', SQLERRM USING ERRCODE = '23514';
END
$$;
COMMENT ON FUNCTION ventros.inbound_message(ventros.channels, text, boolean, text, text, text, timestamptz, text, text, text, jsonb, text, uuid) IS
    'Records an inbound message (receive_message), or an echo of an outbound one: matched to the message we sent (by provider id; an id-less sent one with the same text gets the id; a queued one makes the echo wait, unmatched), else stored as sent from another device; chat_id: the group chat an inbound message belongs to';

-- ---- group chats ------------------------------------------------------------
-- inbound_group_chat: the live group chat of a channel with this provider id
-- (a WhatsApp @g.us id), created at its first message (subject: the id, until
-- the provider names it; creator: the channel's default agent, else the
-- default system agent), its last_message_at kept.  Race-free: the insert
-- arbitrates on chats_unique_external_id.
CREATE FUNCTION ventros.inbound_group_chat(ch ventros.channels, group_id text, at timestamptz) RETURNS ventros.chats
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c ventros.chats;
BEGIN
    group_id := ventros.check_length(ventros.inbound_require(group_id, 'group id'), 200, 'group id');
    FOR attempt IN 1..2 LOOP
        SELECT * INTO c FROM ventros.chats x
        WHERE x.tenant_id = ch.tenant_id AND x.channel_id = ch.id AND x.external_id = group_id AND x.deleted_at IS NULL
        FOR UPDATE;
        IF FOUND THEN
            IF c.status <> 'closed' AND (c.last_message_at IS NULL OR c.last_message_at < at) THEN
                UPDATE ventros.chats x SET last_message_at = at, version = c.version
                WHERE x.tenant_id = c.tenant_id AND x.id = c.id RETURNING * INTO c;
            END IF;
            RETURN c;
        END IF;
        INSERT INTO ventros.chats (project_id, channel_id, chat_type, external_id, subject, created_by, last_message_at, metadata)
        VALUES (ch.project_id, ch.id, 'group', group_id, group_id,
                coalesce(ch.default_agent_id, ventros.system_agent_id('default')), at,
                jsonb_build_object('provider', ch.type))
        ON CONFLICT (tenant_id, channel_id, external_id) WHERE deleted_at IS NULL AND external_id IS NOT NULL DO NOTHING
        RETURNING * INTO c;
        IF c.id IS NOT NULL THEN
            RETURN c;
        END IF;
        -- Another transaction created it first: take that one.
    END LOOP;
    RAISE EXCEPTION 'could not create the chat of group %', group_id USING ERRCODE = '40001';
END
$$;
COMMENT ON FUNCTION ventros.inbound_group_chat(ventros.channels, text, timestamptz) IS
    'The live group chat of a channel with a provider group id, created at its first message (emits chat.created), last_message_at kept; race-free on chats_unique_external_id';

-- inbound_chat_participant: the contact who wrote in a group becomes (or
-- stays) one of its participants; a closed chat changes no more.
CREATE FUNCTION ventros.inbound_chat_participant(c ventros.chats, contact_id uuid, at timestamptz) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    added uuid;
BEGIN
    IF c.status = 'closed' OR contact_id IS NULL THEN
        RETURN false;
    END IF;
    INSERT INTO ventros.chat_participants (chat_id, participant_id, participant_type, joined_at)
    VALUES (c.id, contact_id, 'contact', at)
    ON CONFLICT (tenant_id, chat_id, participant_id) WHERE left_at IS NULL AND deleted_at IS NULL DO NOTHING
    RETURNING id INTO added;
    IF added IS NULL THEN
        RETURN false;
    END IF;
    PERFORM ventros.emit('chat.participant_added', 'chat', c.id,
                         jsonb_build_object('participant_id', contact_id, 'participant_type', 'contact', 'is_admin', false,
                                            'source', 'inbound'), c.version);
    RETURN true;
END
$$;
COMMENT ON FUNCTION ventros.inbound_chat_participant(ventros.chats, uuid, timestamptz) IS
    'Adds the contact who wrote in a group chat as a participant when not one yet (emits chat_participant.created and chat.participant_added); returns whether it was added';

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
