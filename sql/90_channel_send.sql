-- Outbound channel traffic: a message queued by ventros.send_message becomes
-- the provider's HTTP request (a row of ventros.http_requests, purpose
-- message.send, correlation_id = the message id) in the same transaction;
-- the dispatcher delivers it, and the message.send completion handler moves
-- the message to sent (with the provider's id) or failed.  Media downloads
-- (purpose media.download) follow the same path.  Wire formats: design
-- channels.md sections 1.8, 1.10, 2.3, 2.4, 3.2 and 4.2; docs/channels-outbound.md.
--
-- One registration per channel type (ventros.channel_providers) names the
-- functions that build its requests and read its answers: adding a provider
-- is a row and three functions, never a branch in send_message.
--
-- This file is the mechanism, the same for every provider: the registry,
-- the helpers the providers' functions share, queueing a send, and the
-- completion handlers of message.send and the media downloads.  The
-- providers' functions and registrations are in one file per family:
-- sql/90_channel_send_meta.sql (Graph API: WhatsApp Cloud, Instagram,
-- Messenger) and sql/90_channel_send_waha.sql; one message to many contacts
-- (send_messages): sql/90_channel_send_many.sql; the channel tokens a request
-- names and the dispatcher puts in per attempt: sql/90_channel_send_credentials.sql.
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
    config_error  regprocedure,
    media_retry_policy text    NOT NULL DEFAULT 'transient',
    CONSTRAINT channel_providers_provider_registered FOREIGN KEY (provider) REFERENCES ventros.inbound_providers (provider),
    CONSTRAINT channel_providers_window_positive CHECK (window_hours > 0)
);
COMMENT ON TABLE ventros.channel_providers IS
    'Per channel type, its provider (ventros.inbound_providers: the webhook URL serving the type) and how its messages are sent: build_send(channels, messages) -> request jsonb {method,url,headers,body} or NULL (not configured); sent_id(jsonb answer) -> provider message id; build_media(channels, messages) -> media download request; the retry policy of its requests; the free-form window in hours (NULL: none); config_error(response_status integer, response_body bytea) -> whether a failed send means the channel is misconfigured (kept on the channel); the retry policy of its media downloads';

-- A catalogue shared by every tenant: readable by all, written by registrations only.
ALTER TABLE ventros.channel_providers ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.channel_providers FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_catalog_read ON ventros.channel_providers FOR SELECT USING (true);

CREATE FUNCTION ventros.register_channel_provider(channel_type text, provider text, build_send regprocedure,
                                                 sent_id regprocedure, build_media regprocedure DEFAULT NULL,
                                                 retry_policy text DEFAULT 'transient', window_hours integer DEFAULT NULL,
                                                 config_error regprocedure DEFAULT NULL,
                                                 media_retry_policy text DEFAULT 'transient')
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO ventros.channel_providers AS p (channel_type, provider, build_send, sent_id, build_media, retry_policy,
                                                window_hours, config_error, media_retry_policy)
    VALUES (channel_type, provider, build_send, sent_id, build_media, retry_policy, window_hours, config_error,
            media_retry_policy)
    ON CONFLICT ON CONSTRAINT channel_providers_pkey DO UPDATE
       SET provider = EXCLUDED.provider, build_send = EXCLUDED.build_send, sent_id = EXCLUDED.sent_id,
           build_media = EXCLUDED.build_media, retry_policy = EXCLUDED.retry_policy,
           window_hours = EXCLUDED.window_hours, config_error = EXCLUDED.config_error,
           media_retry_policy = EXCLUDED.media_retry_policy
$$;
COMMENT ON FUNCTION ventros.register_channel_provider(text, text, regprocedure, regprocedure, regprocedure, text, integer, regprocedure, text) IS
    'Registers how messages of a channel type are sent (see ventros.channel_providers)';

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
-- PL/pgSQL, as the helpers below: a provider builds one request per message
-- of a batch, and a PL/pgSQL function keeps its plans for the session where a
-- SQL function nested in another would be planned again at every call.
CREATE FUNCTION ventros.contact_identity_of(contact_id uuid, types text[]) RETURNS ventros.contact_identities
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.contact_identities;
BEGIN
    SELECT i.* INTO result FROM ventros.contact_identities i
     WHERE i.tenant_id = ventros.require_tenant() AND i.contact_id = contact_identity_of.contact_id
       AND i.identity_type = ANY (types) AND i.deleted_at IS NULL
     ORDER BY array_position(types, i.identity_type), i.created_at, i.id
     LIMIT 1;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.contact_identity_of(uuid, text[]) IS
    'A contact''s first live identity among the given types, preferring earlier types, then older identities';

-- The provider id of the message a reply refers to (NULL if none or unknown).
CREATE FUNCTION ventros.reply_provider_id(m ventros.messages) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF m.reply_to_id IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN (SELECT r.channel_message_id FROM ventros.messages r
             WHERE r.tenant_id = m.tenant_id AND r.id = m.reply_to_id AND r.channel_id = m.channel_id);
END
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

-- ---- queueing a send ------------------------------------------------------------

-- Requests described as jsonb {method, url, headers, body, ...} queued in
-- one INSERT (one correlation id each); the one-request case is
-- enqueue_provider_request.
CREATE FUNCTION ventros.enqueue_provider_requests(reqs jsonb[], purpose text, correlation_ids uuid[], retry_policy text,
                                                  max_response_size integer DEFAULT NULL)
RETURNS TABLE (id uuid, correlation_id uuid)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY
    SELECT r.id, r.correlation_id
    FROM ventros.enqueue_http_requests(
             ARRAY(SELECT q->>'url' FROM unnest(reqs) WITH ORDINALITY x(q, n) ORDER BY n),
             ARRAY(SELECT coalesce(q->>'method', 'POST') FROM unnest(reqs) WITH ORDINALITY x(q, n) ORDER BY n),
             ARRAY(SELECT coalesce(q->'headers', '{}') FROM unnest(reqs) WITH ORDINALITY x(q, n) ORDER BY n),
             ARRAY(SELECT CASE WHEN q->'body' IS NOT NULL AND q->'body' <> 'null'::jsonb
                               THEN convert_to((q->'body')::text, 'UTF8') END
                   FROM unnest(reqs) WITH ORDINALITY x(q, n) ORDER BY n),
             correlation_ids, purpose, retry_policy => enqueue_provider_requests.retry_policy,
             max_response_size => enqueue_provider_requests.max_response_size) r;
END
$$;
COMMENT ON FUNCTION ventros.enqueue_provider_requests(jsonb[], text, uuid[], text, integer) IS
    'Queues requests built by a provider function ({method, url, headers, body}) for the acting tenant, in one INSERT; returns each id with its correlation id';

CREATE FUNCTION ventros.enqueue_provider_request(req jsonb, purpose text, correlation_id uuid, retry_policy text,
                                                 max_response_size integer DEFAULT NULL)
RETURNS uuid
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.id FROM ventros.enqueue_provider_requests(ARRAY[req], purpose, ARRAY[correlation_id], retry_policy,
                                                       max_response_size) r
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

-- The provider request of an outbound message (the channel type's
-- build_send), refused (22023) outside the customer service window; NULL
-- when the type is not declared or the channel is not configured for
-- sending.
CREATE FUNCTION ventros.message_send_request(ch ventros.channels, p ventros.channel_providers, m ventros.messages)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    req jsonb;
BEGIN
    IF p.channel_type IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT %s($1, $2)', p.build_send::regproc) INTO req USING ch, m;
    IF req IS NULL THEN
        RETURN NULL;    -- the channel is not configured for sending
    END IF;
    PERFORM ventros.check_message_window(m, p.window_hours);
    RETURN req;
END
$$;
COMMENT ON FUNCTION ventros.message_send_request(ventros.channels, ventros.channel_providers, ventros.messages) IS
    'The provider request ({method, url, headers, body}) sending an outbound message on a channel, NULL when its type is not declared or not configured; 22023 when the contact has no address on the provider, or outside the WhatsApp 24-hour window for a free-form message';

-- Builds and queues the provider requests (purpose message.send) of queued
-- outbound messages, at most one per message, in one INSERT; a message whose
-- request cannot be built (no address on the provider, the window closed)
-- gets its refusal instead, and nothing is queued for it.  SECURITY DEFINER:
-- agents send messages but may not write http_requests (their headers hold
-- the channel's credentials); it acts on the caller's tenant only and reads
-- the messages itself.  The one-message case is queue_message_send.
CREATE FUNCTION ventros.queue_message_sends(message_ids uuid[]) RETURNS SETOF ventros.message_send
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    ms ventros.messages[];
    built ventros.message_send[];
    requests jsonb := '{}';
    builder regprocedure;
    part jsonb;
    queued jsonb := '{}';
    policy text;
BEGIN
    PERFORM ventros.plan_for_set(cardinality(message_ids));
    -- Locked in id order: two calls for one message queue one request (the second sees the first's).
    WITH locked AS (SELECT x.* FROM ventros.messages x
                    WHERE x.tenant_id = tenant AND x.id = ANY (message_ids) AND x.deleted_at IS NULL
                    ORDER BY x.id FOR UPDATE)
    SELECT coalesce(array_agg(l ORDER BY l.id), '{}') INTO ms FROM locked l;
    RETURN QUERY
        SELECT NULL::uuid, NULL::ventros.messages, NULL::uuid, 'P0002', format('message %s not found', coalesce(d.x::text, '<NULL>')),
               NULL::text, NULL::text
        FROM (SELECT unnest(message_ids) EXCEPT SELECT m.id FROM unnest(ms) m) d(x);
    -- One request per queued outbound message that has none yet, on a
    -- channel whose type is declared; the others are answered without one.
    -- The set is built with one statement per provider (its builder called
    -- for each message of the set, planned once), then the customer service
    -- window checked for the set; only when a message is refused (no address
    -- on the provider, the window closed) is the set built again message by
    -- message, each refusal caught as data (try_message_send_request).
    BEGIN
        FOR builder IN SELECT DISTINCT p.build_send FROM unnest(ms) m
                       JOIN ventros.channels ch ON ch.tenant_id = tenant AND ch.id = m.channel_id
                       JOIN ventros.channel_providers p ON p.channel_type = ch.type
                       WHERE m.from_me AND m.status = 'queued' LOOP
            EXECUTE format($q$
                SELECT coalesce(jsonb_object_agg(m.id, jsonb_build_object('request', r.request, 'retry_policy', p.retry_policy))
                                    FILTER (WHERE r.request IS NOT NULL), '{}')
                FROM unnest($1) m
                -- with its secrets, decrypted once per channel (sql/68_credentials_channels.sql)
                JOIN (SELECT ventros.channel_with_secrets(c) AS ch FROM ventros.channels c
                      WHERE c.tenant_id = $2 AND c.id IN (SELECT x.channel_id FROM unnest($1) x)) cs ON (cs.ch).id = m.channel_id
                JOIN ventros.channel_providers p ON p.channel_type = (cs.ch).type AND p.build_send = $3
                CROSS JOIN LATERAL %s(cs.ch, m) AS r(request)   -- in FROM: called once per message
                WHERE m.from_me AND m.status = 'queued'
                  AND NOT EXISTS (SELECT 1 FROM ventros.http_requests x
                                  WHERE x.tenant_id = $2 AND x.correlation_id = m.id AND x.purpose = 'message.send')$q$,
                builder::regproc) INTO part USING ms, tenant, builder;
            requests := requests || part;
        END LOOP;
        PERFORM ventros.check_message_window(m, p.window_hours)
        FROM unnest(ms) m
        JOIN ventros.channels ch ON ch.tenant_id = tenant AND ch.id = m.channel_id
        JOIN ventros.channel_providers p ON p.channel_type = ch.type
        WHERE p.window_hours IS NOT NULL AND requests ? m.id::text;
        built := ARRAY(SELECT ROW(m.contact_id, m, NULL, NULL, NULL, NULL, NULL)::ventros.message_send FROM unnest(ms) m ORDER BY m.id);
    EXCEPTION WHEN OTHERS THEN
        WITH todo AS (
            SELECT m, cs.ch, p,
                   m.from_me AND m.status = 'queued' AND p.channel_type IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM ventros.http_requests r
                                   WHERE r.tenant_id = tenant AND r.correlation_id = m.id AND r.purpose = 'message.send') AS due
            FROM unnest(ms) m
            JOIN (SELECT ventros.channel_with_secrets(c) AS ch FROM ventros.channels c
                  WHERE c.tenant_id = tenant AND c.id IN (SELECT x.channel_id FROM unnest(ms) x)) cs ON (cs.ch).id = m.channel_id
            LEFT JOIN ventros.channel_providers p ON p.channel_type = (cs.ch).type)
        SELECT coalesce(array_agg(ROW((t.m).contact_id, t.m, NULL, r.error_code, r.error, r.error_detail, r.error_hint)::ventros.message_send
                                  ORDER BY (t.m).id), '{}'),
               coalesce(jsonb_object_agg((t.m).id, jsonb_build_object('request', r.request, 'retry_policy', (t.p).retry_policy))
                            FILTER (WHERE r.request IS NOT NULL), '{}')
        INTO built, requests
        FROM todo t
        LEFT JOIN LATERAL (SELECT * FROM ventros.try_message_send_request(t.ch, t.p, t.m) WHERE t.due) r ON true;
    END;
    -- The requests, one INSERT per retry policy (one per channel type).
    FOR policy IN SELECT DISTINCT q.value->>'retry_policy' FROM jsonb_each(requests) q LOOP
        SELECT coalesce(jsonb_object_agg(e.correlation_id, e.id), '{}') || queued INTO queued
        FROM ventros.enqueue_provider_requests(
                 ARRAY(SELECT q.value->'request' FROM jsonb_each(requests) q WHERE q.value->>'retry_policy' = policy ORDER BY q.key),
                 'message.send',
                 ARRAY(SELECT q.key::uuid FROM jsonb_each(requests) q WHERE q.value->>'retry_policy' = policy ORDER BY q.key),
                 policy) e;
    END LOOP;
    RETURN QUERY
        SELECT b.contact_id, b.message, (queued->>((b.message).id::text))::uuid, b.error_code, b.error, b.error_detail,
               b.error_hint
        FROM unnest(built) b;
END
$$;
COMMENT ON FUNCTION ventros.queue_message_sends(uuid[]) IS
    'Queues the provider requests (purpose message.send) of queued outbound messages, once each; returns one row per message: its request (NULL when its channel type is not declared or not configured, or it has one already), or its refusal (P0002 for a message not found; 22023 for a contact without an address on the provider, or outside the WhatsApp 24-hour window for a free-form message)';

-- The provider request of one message, or why it cannot be built (as data).
CREATE FUNCTION ventros.try_message_send_request(ch ventros.channels, p ventros.channel_providers, m ventros.messages,
                                                 OUT request jsonb, OUT error_code text, OUT error text,
                                                 OUT error_detail text, OUT error_hint text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    request := ventros.message_send_request(ch, p, m);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_code = RETURNED_SQLSTATE, error = MESSAGE_TEXT,
                            error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT;
    error_detail := nullif(error_detail, '');
    error_hint := nullif(error_hint, '');
END
$$;
COMMENT ON FUNCTION ventros.try_message_send_request(ventros.channels, ventros.channel_providers, ventros.messages) IS
    'ventros.message_send_request, its error returned (SQLSTATE, message, detail, hint) instead of raised';

-- Builds and queues the provider request of a queued outbound message: the
-- one-message case of queue_message_sends (its refusal raised).
CREATE FUNCTION ventros.queue_message_send(message_id uuid) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ventros.message_send;
BEGIN
    SELECT * INTO r FROM ventros.queue_message_sends(ARRAY[message_id]) x;
    PERFORM ventros.raise_refusal(r);
    RETURN r.request_id;
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
    misconfigured boolean;
BEGIN
    SELECT * INTO m FROM ventros.messages x WHERE x.tenant_id = r.tenant_id AND x.id = r.correlation_id FOR UPDATE;
    IF NOT FOUND OR m.status <> 'queued' THEN
        RETURN;     -- deleted, or already moved on (a status webhook came first)
    END IF;
    SELECT x.* INTO p FROM ventros.channel_providers x JOIN ventros.channels c ON c.type = x.channel_type
     WHERE c.tenant_id = m.tenant_id AND c.id = m.channel_id;
    IF r.status = 'succeeded' THEN
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
        -- every send of the channel: it says so on the channel too.  What
        -- is one is the provider's to say (its config_error function).
        IF p.config_error IS NOT NULL THEN
            EXECUTE format('SELECT %s($1, $2)', p.config_error::regproc) INTO misconfigured
                USING r.response_status, r.response_body;
        END IF;
        IF misconfigured THEN
            UPDATE ventros.channels c SET last_error = left(failure, 1000), last_error_at = now(), version = c.version
             WHERE c.tenant_id = m.tenant_id AND c.id = m.channel_id;
        END IF;
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.handle_message_send(ventros.http_requests) IS
    'Completion handler of message.send: succeeded -> mark_message_sent with the provider id from the answer (message.sent); failed or dead -> the message fails with the provider''s error (message.failed), and a configuration error (the provider''s config_error function: Graph 190, 10, 200-299, 100/33; WAHA 401, 404) is kept on the channel (last_error, channel.updated)';

SELECT ventros.register_http_request_handler('message.send', 'ventros.handle_message_send(ventros.http_requests)');

