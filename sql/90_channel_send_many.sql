-- Sending one message to many contacts: ventros.send_messages, the set-based
-- send every single send, sequence step and broadcast batch goes through (the
-- send mechanism: sql/90_channel_send.sql).

-- A contact's refusal of consent (VN010, as require_consent raises it), as data.
CREATE FUNCTION ventros.consent_refusal(contact_id uuid, channel_id uuid) RETURNS ventros.message_send
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ventros.message_send;
BEGIN
    r.contact_id := contact_id;
    PERFORM ventros.require_consent(contact_id, channel_id);
    RETURN r;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS r.error_code = RETURNED_SQLSTATE, r.error = MESSAGE_TEXT,
                            r.error_detail = PG_EXCEPTION_DETAIL, r.error_hint = PG_EXCEPTION_HINT;
    r.error_detail := nullif(r.error_detail, '');
    r.error_hint := nullif(r.error_hint, '');
    RETURN r;
END
$$;
COMMENT ON FUNCTION ventros.consent_refusal(uuid, uuid) IS
    'The refusal of require_consent (VN010) for a contact on a channel, as a ventros.message_send row (error_code NULL when it may be messaged)';

-- send_messages: one outbound message (the same content) to each of a set of
-- contacts, queued with its provider request.  The rules of every send,
-- once: the source, the channel, the sending agent (automated sources send
-- as their system agent; virtual or inactive agents never send), a WhatsApp
-- template validated, each contact share-locked (a concurrent opt-out waits
-- for the send, or the send sees it) and its consent, its session started or
-- continued, its address on the provider and the 24-hour window.  What
-- concerns one contact refuses that contact only (a row with its error, and
-- nothing written for it); what concerns the message refuses the call.  One
-- statement per table for the set: the sessions, the messages (the engine's
-- message.created; the reports' statement triggers run once), the sessions'
-- counters (session.message_recorded), the contacts' interaction times, the
-- channel's counters folded once, the provider requests.  send_message is its
-- one-contact case; a broadcast sends each batch through it.  Plans: the
-- generic ones for one contact (planned once per session), custom ones for a
-- batch (ventros.plan_for_set); the statements join no two arrays, so that
-- either stays linear in the set.
CREATE FUNCTION ventros.send_messages(
    channel_id   uuid,
    contact_ids  uuid[],
    text         text    DEFAULT NULL,
    agent_id     uuid    DEFAULT NULL,
    source       text    DEFAULT 'manual',
    content_type text    DEFAULT 'text',
    media_url    text    DEFAULT NULL,
    media_mimetype text  DEFAULT NULL,
    reply_to_id  uuid    DEFAULT NULL,
    chat_id      uuid    DEFAULT NULL,
    metadata     jsonb   DEFAULT NULL,
    template_name       text  DEFAULT NULL,
    template_language   text  DEFAULT NULL,
    template_components jsonb DEFAULT NULL)
RETURNS SETOF ventros.message_send
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    ch ventros.channels;
    sender ventros.agents;
    tpl jsonb;
    body text;
    known uuid[];
    ready uuid[];
    sessions ventros.sessions[];
    sent ventros.messages[];
    queued ventros.message_send[];
    refused ventros.message_send[];
    state text;
BEGIN
    PERFORM ventros.plan_for_set(cardinality(contact_ids));
    IF source IS NULL OR source NOT IN ('manual', 'broadcast', 'sequence', 'trigger', 'bot', 'system', 'webhook',
                                        'scheduled', 'test') THEN
        RAISE EXCEPTION 'unknown message source "%"', left(source, 32) USING ERRCODE = '22023';
    END IF;
    SELECT * INTO ch FROM ventros.channels c WHERE c.tenant_id = tenant AND c.id = send_messages.channel_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'channel % not found', channel_id USING ERRCODE = 'P0002';
    END IF;
    -- The contacts, share-locked in id order: a concurrent opt-out waits for this send, or this send sees it.
    WITH locked AS (SELECT c.id FROM ventros.contacts c WHERE c.tenant_id = tenant AND c.id = ANY (contact_ids)
                    ORDER BY c.id FOR SHARE)
    SELECT coalesce(array_agg(l.id ORDER BY l.id), '{}') INTO known FROM locked l;
    RETURN QUERY
        SELECT u.x, NULL::ventros.messages, NULL::uuid, 'P0002', format('contact %s not found', coalesce(u.x::text, '<NULL>')),
               NULL::text, NULL::text
        FROM (SELECT unnest(contact_ids) EXCEPT SELECT unnest(known)) u(x);
    -- Consent: those who opted out are refused (VN010).
    refused := ARRAY(SELECT ventros.consent_refusal(x, ch.id) FROM unnest(known) x
                     WHERE NOT ventros.may_message(x, ch.id) ORDER BY x);
    RETURN QUERY SELECT * FROM unnest(refused);
    ready := ARRAY(SELECT d.x FROM (SELECT unnest(known) EXCEPT SELECT r.contact_id FROM unnest(refused) r) d(x) ORDER BY 1);
    IF cardinality(ready) = 0 THEN
        RETURN;
    END IF;
    -- the plan's limit of messages sent (VN020; sql/65_usage_metering.sql)
    PERFORM ventros.check_usage_limit('messages_sent', cardinality(ready));
    -- and of active contacts, for those without a message in the period yet
    PERFORM ventros.check_active_contacts_limit(ready);
    agent_id := coalesce(agent_id, CASE WHEN source NOT IN ('manual', 'bot') THEN ventros.system_agent_id(source) END);
    IF agent_id IS NULL THEN
        RAISE EXCEPTION 'an outbound message needs its sending agent' USING ERRCODE = '23502',
            HINT = 'Pass agent_id, or a source such as broadcast whose system agent sends.';
    END IF;
    SELECT * INTO sender FROM ventros.agents a WHERE a.tenant_id = tenant AND a.id = send_messages.agent_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'agent % not found', agent_id USING ERRCODE = 'P0002';
    END IF;
    IF sender.type = 'virtual' OR NOT sender.active THEN
        RAISE EXCEPTION 'agent % cannot send messages', agent_id USING ERRCODE = '22023',
            DETAIL = 'Virtual and inactive agents never send.';
    END IF;
    IF template_name IS NOT NULL THEN
        -- A WhatsApp template (sql/91_whatsapp_templates.sql): validated now,
        -- kept in metadata.template, its body text as the message text.
        IF ch.type NOT IN ('whatsapp', 'whatsapp_business') THEN
            RAISE EXCEPTION 'templates are sent on WhatsApp Cloud channels only' USING ERRCODE = '22023';
        END IF;
        tpl := ventros.prepare_template_message(ch.id, template_name, template_language, template_components);
        content_type := 'text';
        text := coalesce(text, tpl->>'text');
        metadata := coalesce(metadata, '{}') || jsonb_build_object('template', tpl->'template');
    END IF;
    body := ventros.check_length(text, 4096, 'message text');
    -- Sessions, messages, effects and requests for the contacts still ready.
    -- A contact whose request cannot be built (no address on the provider,
    -- the window closed) is refused: the round is undone (a subtransaction)
    -- and done again without it, so nothing stays written for it.
    FOR round IN 1..3 LOOP
        BEGIN
            sessions := ARRAY(SELECT s FROM ventros.start_or_continue_sessions(ready, ch.id, now()) s);
            WITH inserted AS (
                INSERT INTO ventros.messages ("timestamp", project_id, channel_id, channel_type_id, chat_id, session_id,
                                              contact_id, from_me, content_type, text, media_url, media_mimetype, reply_to_id,
                                              status, agent_id, source, metadata)
                SELECT now(), ch.project_id, ch.id, s.channel_type_id, send_messages.chat_id, s.id, s.contact_id, true,
                       coalesce(send_messages.content_type, 'text'), body, send_messages.media_url,
                       send_messages.media_mimetype, send_messages.reply_to_id, 'queued', sender.id, send_messages.source,
                       send_messages.metadata
                FROM unnest(sessions) s ORDER BY s.contact_id
                RETURNING *)
            SELECT coalesce(array_agg(i ORDER BY i.contact_id), '{}') INTO sent FROM inserted i;
            -- The provider requests, in this transaction (queue_message_sends).
            queued := ARRAY(SELECT q FROM ventros.queue_message_sends(ARRAY(SELECT m.id FROM unnest(sent) m)) q);
            refused := ARRAY(SELECT q FROM unnest(queued) q WHERE q.error_code IS NOT NULL);
            IF cardinality(refused) > 0 THEN
                RAISE EXCEPTION 'ventros.send_messages: undo the round of refused contacts' USING ERRCODE = 'P0001';
            END IF;
            RETURN QUERY SELECT * FROM unnest(queued);
            RETURN;
        EXCEPTION
            WHEN raise_exception THEN
                GET STACKED DIAGNOSTICS state = MESSAGE_TEXT;
                IF state <> 'ventros.send_messages: undo the round of refused contacts' THEN
                    RAISE;
                END IF;
            WHEN check_violation THEN
                RAISE EXCEPTION 'invalid outbound message: %', SQLERRM USING ERRCODE = '23514';
        END;
        RETURN QUERY SELECT r.contact_id, NULL::ventros.messages, NULL::uuid, r.error_code, r.error, r.error_detail,
                            r.error_hint
                     FROM unnest(refused) r;
        ready := ARRAY(SELECT d.x FROM (SELECT unnest(ready) EXCEPT SELECT r.contact_id FROM unnest(refused) r) d(x)
                       ORDER BY 1);
        IF cardinality(ready) = 0 THEN
            RETURN;
        END IF;
    END LOOP;
    RAISE EXCEPTION 'could not send to % contacts on channel %', cardinality(ready), channel_id USING ERRCODE = '40001';
END
$$;
COMMENT ON FUNCTION ventros.send_messages(uuid, uuid[], text, uuid, text, text, text, text, uuid, uuid, jsonb, text, text, jsonb) IS
    'One outbound message to each of a set of contacts, queued with its provider request (message.send), one statement per table for the set: a contact not found (P0002), opted out (VN010), without an address on the provider or outside the WhatsApp 24-hour window (22023) is refused alone (a row with its error; nothing written for it); the source, channel, agent (virtual or inactive: 22023) and template are checked once and refuse the call; automated sources send as their system agent; emits message.created and session.message_recorded per message (and session.started for a new session)';
