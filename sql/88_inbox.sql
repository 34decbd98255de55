-- The inbox: every webhook a provider (WAHA, WhatsApp Cloud, Instagram,
-- Messenger) delivers to POST /webhooks/<provider>/<channel_id>, verified and
-- stored before anything else, then turned into the domain (contacts,
-- sessions, messages, statuses) by the parsers of sql/89_inbound*.sql.
--
-- This file is the mechanism, the same for every provider: the registry
-- (ventros.inbound_providers), the queue and the webhook entry points;
-- sql/88_inbox_processing.sql runs the stored items (retries, the
-- processors' loop, reprocessing, retention).
-- What is particular to a provider (signature, items, parsing, handshake) is
-- in its functions, registered as data by its own file
-- (sql/89_inbound_meta.sql, sql/89_inbound_whatsapp.sql, sql/89_inbound_waha.sql).
--
-- Not an aggregate: a work queue like ventros.outbox and ventros.http_requests
-- (no version, no events of its own).  The domain changes an item causes emit
-- their own events (message.created, message.read, contact.created, ...).
-- Row-level security is enabled and forced, with the tenant policies.
--
-- Invariants:
--   * one row per (tenant, channel, dedupe_key): a repeated delivery, or the
--     same item in another batch, is acknowledged and never stored twice;
--     the keys per provider are documented in docs/channels.md;
--   * a delivery is stored before it is processed, in the same transaction
--     but outside the item's subtransaction, so a failing parser never loses
--     the delivery nor changes the HTTP answer;
--   * the raw body is kept byte for byte (what was verified) on the first
--     new item of its delivery; Meta batches are split into one row per item,
--     each with its JSON and delivery_id pointing at the row holding the body.
--
-- Status:
--   received   stored, not yet processed (due at next_attempt_at)
--   processed  turned into the domain (message_id / result say what it did)
--   failed     processing raised: retried at next_attempt_at with backoff;
--              next_attempt_at NULL = given up (malformed item or attempts spent)
--   unmatched  a status/reaction/edit for a message we do not know (yet): the
--              send may not be recorded yet; retried with backoff, and made due
--              at once when a message gets that provider id
--   ignored    understood and deliberately not processed (WAHA "message"
--              events duplicate "message.any"; groups on channels that do not
--              allow them; status@broadcast; late receipts change nothing)
--   unparsed   an event we store but do not parse (call.*, label.*, unknown)
--   foreign    addressed to another business number/account/session than the
--              channel's (WhatsApp phone_number_id, Instagram/Page id, WAHA
--              session): stored, never processed

-- ---- the providers ----------------------------------------------------------

-- One row per provider of a webhook URL (/webhooks/<provider>/<channel_id>):
-- the functions that verify, split and process its deliveries, and answer
-- its subscription handshake.  Adding a provider is a row and its functions
-- (ventros.register_inbound_provider), never a branch in accept_webhook or
-- inbox_process; which channel types a provider's URL serves is said once,
-- by ventros.channel_providers (sql/90_channel_send.sql).  This table is the
-- one list of providers: inbox rows and channel_providers refer to it.
CREATE TABLE ventros.inbound_providers (
    provider  text PRIMARY KEY,
    verify    regprocedure NOT NULL,
    split     regprocedure NOT NULL,
    process   regprocedure NOT NULL,
    challenge regprocedure,
    conversation regprocedure,
    -- the URL segment: lower case, and short enough for the front (15 bytes)
    CONSTRAINT inbound_providers_name_format CHECK (provider ~ '^[a-z][a-z0-9_]{0,14}$')
);
COMMENT ON TABLE ventros.inbound_providers IS
    'Per webhook provider: verify(config jsonb, headers jsonb, body bytea) -> NULL or why not authentic; split(config jsonb, doc jsonb, body bytea, headers jsonb) -> SETOF ventros.inbox_item; process(ventros.inbox, ventros.channels) -> ventros.inbox_outcome; challenge(config jsonb, mode text, verify_token text, challenge text) -> the text to echo or NULL (no handshake when NULL); conversation(item jsonb) -> the chat or sender an item belongs to, or NULL (items of one conversation are processed in order; none kept when NULL)';

-- A catalogue shared by every tenant: readable by all, written by registrations only.
ALTER TABLE ventros.inbound_providers ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.inbound_providers FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_catalog_read ON ventros.inbound_providers FOR SELECT USING (true);
GRANT SELECT ON ventros.inbound_providers TO ventros_viewer;

CREATE FUNCTION ventros.register_inbound_provider(provider text, verify regprocedure, split regprocedure,
                                                  process regprocedure, challenge regprocedure DEFAULT NULL,
                                                  conversation regprocedure DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.require_function_shape(verify, ARRAY['jsonb', 'jsonb', 'bytea']::regtype[], 'text', 'verify');
    PERFORM ventros.require_function_shape(split, ARRAY['jsonb', 'jsonb', 'bytea', 'jsonb']::regtype[],
                                           'ventros.inbox_item', 'split');
    PERFORM ventros.require_function_shape(process, ARRAY['ventros.inbox', 'ventros.channels']::regtype[],
                                           'ventros.inbox_outcome', 'process');
    IF challenge IS NOT NULL THEN
        PERFORM ventros.require_function_shape(challenge, ARRAY['jsonb', 'text', 'text', 'text']::regtype[], 'text',
                                               'challenge');
    END IF;
    IF conversation IS NOT NULL THEN
        PERFORM ventros.require_function_shape(conversation, ARRAY['jsonb']::regtype[], 'text', 'conversation');
    END IF;
    INSERT INTO ventros.inbound_providers AS p (provider, verify, split, process, challenge, conversation)
    VALUES (register_inbound_provider.provider, register_inbound_provider.verify, register_inbound_provider.split,
            register_inbound_provider.process, register_inbound_provider.challenge,
            register_inbound_provider.conversation)
    ON CONFLICT ON CONSTRAINT inbound_providers_pkey DO UPDATE
       SET verify = EXCLUDED.verify, split = EXCLUDED.split, process = EXCLUDED.process, challenge = EXCLUDED.challenge,
           conversation = EXCLUDED.conversation;
END
$$;
COMMENT ON FUNCTION ventros.register_inbound_provider(text, regprocedure, regprocedure, regprocedure, regprocedure, regprocedure) IS
    'Registers how the webhooks of a provider are verified, split into inbox items, processed, (optionally) subscribed to, and which conversation an item belongs to (optional; see ventros.inbound_providers)';

-- ---- the inbox --------------------------------------------------------------

CREATE TABLE ventros.inbox (
    tenant_id       text        NOT NULL,
    id              uuid        NOT NULL DEFAULT gen_random_uuid(),
    channel_id      uuid        NOT NULL,
    provider        text        NOT NULL,
    event           text        NOT NULL,
    dedupe_key      text        NOT NULL,
    delivery_id     uuid        NOT NULL,
    item_index      integer     NOT NULL DEFAULT 0,
    body            bytea,
    item            jsonb,
    headers         jsonb       NOT NULL DEFAULT '{}',
    ref_id          text,
    status          text        NOT NULL DEFAULT 'received',
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text,
    next_attempt_at timestamptz,
    received_at     timestamptz NOT NULL DEFAULT now(),
    processed_at    timestamptz,
    message_id      uuid,
    contact_id      uuid,
    result          jsonb,
    conversation    text,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, channel_id) REFERENCES ventros.channels (tenant_id, id),
    CONSTRAINT inbox_unique_dedupe_key UNIQUE (tenant_id, channel_id, dedupe_key),
    CONSTRAINT inbox_provider_registered FOREIGN KEY (provider) REFERENCES ventros.inbound_providers (provider),
    CONSTRAINT inbox_status_known CHECK (status IN ('received', 'processed', 'failed', 'unmatched', 'ignored',
                                                    'unparsed', 'foreign')),
    CONSTRAINT inbox_dedupe_key_size CHECK (length(dedupe_key) BETWEEN 1 AND 1024),
    CONSTRAINT inbox_event_size CHECK (length(event) BETWEEN 1 AND 200),
    CONSTRAINT inbox_headers_object CHECK (jsonb_typeof(headers) = 'object'),
    CONSTRAINT inbox_attempts_positive CHECK (attempts >= 0)
);
-- process_inbox's claim: due rows that may still change.
CREATE INDEX inbox_due ON ventros.inbox (next_attempt_at)
    WHERE status IN ('received', 'failed', 'unmatched') AND next_attempt_at IS NOT NULL;
-- A message getting a provider id makes the receipts waiting for it due.
-- Stored items wake the inbox processor when their transaction commits
-- (only when ventros.inbox_processing is deferred: inline items are done).
CREATE FUNCTION ventros.inbox_wake() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'ventros_inbox_wake';
COMMENT ON FUNCTION ventros.inbox_wake() IS
    'Statement trigger: wakes the inbox processor when the transaction commits (deferred processing)';
CREATE TRIGGER ventros_inbox_wake AFTER INSERT ON ventros.inbox
    FOR EACH STATEMENT EXECUTE FUNCTION ventros.inbox_wake();
CREATE INDEX inbox_unmatched ON ventros.inbox (tenant_id, channel_id, ref_id) WHERE status = 'unmatched';
CREATE INDEX inbox_by_channel ON ventros.inbox (tenant_id, channel_id, received_at);
CREATE INDEX inbox_by_contact ON ventros.inbox (tenant_id, contact_id) WHERE contact_id IS NOT NULL;
-- process_inbox keeps each conversation's order: an item waits while an
-- earlier item of its conversation is still to be processed.
CREATE INDEX inbox_conversation_pending ON ventros.inbox (tenant_id, channel_id, conversation, received_at, item_index)
    WHERE status = 'received' AND conversation IS NOT NULL;
COMMENT ON TABLE ventros.inbox IS
    'Inbound webhook items: verified, stored idempotently per (channel, dedupe key), then processed into the domain';
COMMENT ON COLUMN ventros.inbox.provider IS 'The provider of the webhook URL the item came in by (ventros.inbound_providers: waha, whatsapp, instagram, messenger, ...)';
COMMENT ON COLUMN ventros.inbox.event IS
    'The item''s kind: WAHA event name (message.any, message.ack, ...), or for Meta messages, statuses, message, message_echo, read, delivery, reaction, ...';
COMMENT ON COLUMN ventros.inbox.dedupe_key IS
    'Idempotency key of the item on its channel (msg:<id>, ack:<id>:<n>, st:<id>:<status>, ...; see docs/channels.md)';
COMMENT ON COLUMN ventros.inbox.delivery_id IS 'The inbox row holding the raw body of the delivery this item came in (itself for the first)';
COMMENT ON COLUMN ventros.inbox.item_index IS 'Position of the item in its delivery (Meta batches)';
COMMENT ON COLUMN ventros.inbox.body IS 'The raw request body, byte for byte as verified; on the delivery''s first stored item only';
COMMENT ON COLUMN ventros.inbox.item IS
    'The item as JSON: the whole document (WAHA), or one message/status/messaging event with its entry context (Meta)';
COMMENT ON COLUMN ventros.inbox.headers IS 'Request headers worth keeping (never tokens nor keys)';
COMMENT ON COLUMN ventros.inbox.ref_id IS 'The provider message id the item refers to (acks, statuses, reactions, edits, deletions)';
COMMENT ON COLUMN ventros.inbox.status IS 'received, processed, failed, unmatched, ignored, unparsed or foreign';
COMMENT ON COLUMN ventros.inbox.attempts IS 'Processing attempts so far';
COMMENT ON COLUMN ventros.inbox.next_attempt_at IS 'When ventros.process_inbox takes the row (again); NULL: never';
COMMENT ON COLUMN ventros.inbox.message_id IS 'The message the item created or changed';
COMMENT ON COLUMN ventros.inbox.contact_id IS 'The contact the item concerned (erasure deletes the contact''s inbox rows)';
COMMENT ON COLUMN ventros.inbox.result IS 'What processing did or why it did nothing';
COMMENT ON COLUMN ventros.inbox.conversation IS
    'The conversation of the item on its channel as its provider''s conversation function says it (the chat or sender id; NULL: none): the processors keep the order of the items of one conversation and take different conversations in parallel';

ALTER TABLE ventros.inbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.inbox FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_select ON ventros.inbox FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
CREATE POLICY ventros_tenant_insert ON ventros.inbox FOR INSERT
    WITH CHECK (tenant_id = (SELECT ventros.current_tenant()));
CREATE POLICY ventros_tenant_update ON ventros.inbox FOR UPDATE
    USING (tenant_id = (SELECT ventros.current_tenant()))
    WITH CHECK (tenant_id = (SELECT ventros.current_tenant()));
CREATE POLICY ventros_tenant_delete ON ventros.inbox FOR DELETE
    USING (tenant_id = (SELECT ventros.current_tenant()));
-- Raw bodies carry personal data: tenant administrators only.
GRANT SELECT ON ventros.inbox TO ventros_admin;

-- Rejected signatures per channel: a counter, not an aggregate (an attacker
-- must not be able to fill the outbox with events by posting garbage).
CREATE TABLE ventros.channel_webhook_rejections (
    tenant_id        text        NOT NULL,
    channel_id       uuid        NOT NULL,
    rejected         bigint      NOT NULL DEFAULT 0,
    last_rejected_at timestamptz,
    last_reason      text,
    PRIMARY KEY (tenant_id, channel_id),
    FOREIGN KEY (tenant_id, channel_id) REFERENCES ventros.channels (tenant_id, id)
);
COMMENT ON TABLE ventros.channel_webhook_rejections IS
    'Webhook deliveries refused with 401 (signature or token missing or wrong), counted per channel';
COMMENT ON COLUMN ventros.channel_webhook_rejections.last_reason IS
    'Why the last one was refused (missing_signature, invalid_signature, bad_algorithm, invalid_token, no_app_secret)';
ALTER TABLE ventros.channel_webhook_rejections ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.channel_webhook_rejections FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_select ON ventros.channel_webhook_rejections FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.channel_webhook_rejections TO ventros_viewer;

-- ---- verification ----------------------------------------------------------

CREATE FUNCTION ventros.timing_safe_equal(a bytea, b bytea) RETURNS boolean
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'ventros_timing_safe_equal';
COMMENT ON FUNCTION ventros.timing_safe_equal(bytea, bytea) IS
    'Equality of two byte strings in time independent of where they differ (signature and token checks)';

-- pgcrypto's hmac(), reached through its schema whatever it is.
DO $pgcrypto$
DECLARE
    s text := (SELECT n.nspname FROM pg_catalog.pg_extension e
               JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pgcrypto');
BEGIN
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION ventros.webhook_hmac(body bytea, key text, algorithm text) RETURNS bytea
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp
        AS 'SELECT %1$I.hmac(body, pg_catalog.convert_to(key, ''UTF8''), algorithm)'$f$, s);
END
$pgcrypto$;
COMMENT ON FUNCTION ventros.webhook_hmac(bytea, text, text) IS
    'HMAC of a raw body with a text key (pgcrypto): sha256 for Meta, sha512 for WAHA';

-- A hex signature as bytes, or NULL when it is not hex of the expected length.
CREATE FUNCTION ventros.decode_hex_signature(value text, bytes integer) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- (no SET clause: small enough to be inlined; every name is qualified)
AS $$
    SELECT CASE WHEN value OPERATOR(pg_catalog.~) ('^[0-9a-fA-F]{' OPERATOR(pg_catalog.||) (bytes OPERATOR(pg_catalog.*) 2)
                                                    OPERATOR(pg_catalog.||) '}$')
                THEN pg_catalog.decode(pg_catalog.lower(value), 'hex') END
$$;
COMMENT ON FUNCTION ventros.decode_hex_signature(text, integer) IS
    'The bytes of a hex-encoded signature of the given length, NULL when malformed';

-- verify_webhook: NULL when the delivery is authentic for the channel, else
-- why not (the provider's verify function: sql/89_inbound_meta.sql,
-- sql/89_inbound_waha.sql; the rules are in docs/channels.md).  An unknown
-- provider verifies nothing.
CREATE FUNCTION ventros.verify_webhook(provider text, config jsonb, headers jsonb, body bytea) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fn regprocedure := (SELECT p.verify FROM ventros.inbound_providers p WHERE p.provider = verify_webhook.provider);
    failure text;
BEGIN
    IF fn IS NULL THEN
        RETURN 'unknown_provider';
    END IF;
    EXECUTE format('SELECT %s($1, $2, $3)', fn::regproc) INTO failure USING config, headers, body;
    RETURN failure;
END
$$;
COMMENT ON FUNCTION ventros.verify_webhook(text, jsonb, jsonb, bytea) IS
    'NULL when a delivery''s signature/token match the channel config by its provider''s verify function (ventros.inbound_providers), else the reason; unknown_provider for a provider not registered';

-- ---- the channel of a webhook URL -----------------------------------------

-- The live channel of a provider by the id in the URL, any tenant (callers
-- are SECURITY DEFINER and run as the extension owner, who bypasses RLS).
-- The provider serves the channel types that ventros.channel_providers maps
-- to it (plpgsql: that table is created after this file).
CREATE FUNCTION ventros.webhook_channel(provider text, channel_id text) RETURNS ventros.channels
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch ventros.channels;
BEGIN
    SELECT c.* INTO ch FROM ventros.channels c
    WHERE c.id = CASE WHEN channel_id ~* '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$'
                      THEN channel_id::uuid END
      AND c.deleted_at IS NULL
      AND c.type IN (SELECT p.channel_type FROM ventros.channel_providers p WHERE p.provider = webhook_channel.provider);
    RETURN ch;
END
$$;
COMMENT ON FUNCTION ventros.webhook_channel(text, text) IS
    'The live channel a webhook URL names (its channel type must be one the provider serves, ventros.channel_providers), of any tenant; NULL when none';

-- ---- splitting a delivery into items ---------------------------------------

CREATE TYPE ventros.inbox_item AS (
    event      text,
    dedupe_key text,
    item       jsonb,
    ref_id     text,
    status     text,
    last_error text
);
COMMENT ON TYPE ventros.inbox_item IS 'One item of a webhook delivery, before it is stored';

CREATE FUNCTION ventros.body_sha256(data bytea) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
-- (no SET clause: small enough to be inlined; every name is qualified)
AS $$ SELECT 'sha256:' OPERATOR(pg_catalog.||) pg_catalog.encode(pg_catalog.sha256(data), 'hex') $$;
COMMENT ON FUNCTION ventros.body_sha256(bytea) IS 'The fallback dedupe key of a body or item: sha256:<hex>';

CREATE FUNCTION ventros.json_sha256(item jsonb) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
-- (no SET clause: small enough to be inlined; every name is qualified)
AS $$ SELECT ventros.body_sha256(pg_catalog.convert_to(item::text, 'UTF8')) $$;
COMMENT ON FUNCTION ventros.json_sha256(jsonb) IS 'The fallback dedupe key of a JSON item: sha256:<hex of its canonical text>';

-- A string field, or NULL when absent or not a string/number.
CREATE FUNCTION ventros.json_text(doc jsonb, VARIADIC path text[]) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- (no SET clause: small enough to be inlined; every name is qualified)
AS $$
    SELECT CASE WHEN pg_catalog.jsonb_typeof(doc OPERATOR(pg_catalog.#>) path) IN ('string', 'number', 'boolean')
                THEN doc OPERATOR(pg_catalog.#>>) path END
$$;
COMMENT ON FUNCTION ventros.json_text(jsonb, text[]) IS 'A scalar at a JSON path as text; NULL for objects, arrays, null or absent';

-- The headers kept with a delivery: no tokens, keys nor cookies.
CREATE FUNCTION ventros.webhook_headers_to_keep(headers jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (SELECT coalesce(jsonb_object_agg(lower(h.key), left(h.value #>> '{}', 1024)), '{}')
              FROM jsonb_each(CASE WHEN jsonb_typeof(headers) = 'object' THEN headers ELSE '{}' END) h
             WHERE lower(h.key) IN ('content-type', 'user-agent', 'x-webhook-request-id', 'x-webhook-timestamp',
                                    'x-webhook-hmac-algorithm', 'x-webhook-hmac', 'x-hub-signature-256', 'x-request-id',
                                    'x-forwarded-for', 'x-real-ip')
               AND jsonb_typeof(h.value) = 'string');
END
$$;
COMMENT ON FUNCTION ventros.webhook_headers_to_keep(jsonb) IS
    'The request headers stored with a delivery (content type, user agent, request ids, signatures); tokens and keys never';

-- ---- entry points -------------------------------------------------------------

-- accept_webhook: what the HTTP front calls for POST /webhooks/<provider>/<id>.
-- SECURITY DEFINER: the caller is ventros_anon without a tenant; the channel
-- (found by its global id) names the tenant, chosen for this call only.
CREATE FUNCTION ventros.accept_webhook(provider text, channel_id text, headers jsonb, body bytea)
RETURNS TABLE (http_status integer, response jsonb)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- the tenant chosen inside is restored when the function returns
SET ventros.tenant = ''
AS $$
DECLARE
    ch ventros.channels;
    hdrs jsonb;
    failure text;
    doc jsonb;
    parse_error text;
    it ventros.inbox_item;
    new_id uuid;
    head uuid;
    n integer := 0;
    stored uuid[] := '{}';
    kept jsonb;
    row_ ventros.inbox;
    p ventros.inbound_providers;
    conv text;
BEGIN
    provider := lower(provider);
    SELECT * INTO p FROM ventros.inbound_providers x WHERE x.provider = accept_webhook.provider;
    ch := ventros.webhook_channel(provider, channel_id);
    IF p.provider IS NULL OR ch.id IS NULL THEN
        RETURN QUERY SELECT 404, '{"error":"channel_not_found"}'::jsonb;
        RETURN;
    END IF;
    PERFORM set_config('ventros.tenant', ch.tenant_id, true);
    hdrs := ventros.webhook_headers(headers);
    body := coalesce(body, ''::bytea);

    -- the channel's secrets, and the previous ones inside a rotation's overlap (sql/68_credentials_channels.sql)
    failure := ventros.verify_channel_webhook(provider, ch, hdrs, body);
    IF failure IS NOT NULL THEN
        INSERT INTO ventros.channel_webhook_rejections AS x (tenant_id, channel_id, rejected, last_rejected_at, last_reason)
        VALUES (ch.tenant_id, ch.id, 1, now(), failure)
        ON CONFLICT ON CONSTRAINT channel_webhook_rejections_pkey DO UPDATE
            SET rejected = x.rejected + 1, last_rejected_at = now(), last_reason = EXCLUDED.last_reason;
        RETURN QUERY SELECT 401, '{"error":"invalid_signature"}'::jsonb;
        RETURN;
    END IF;

    kept := ventros.webhook_headers_to_keep(hdrs);
    BEGIN
        doc := convert_from(body, 'UTF8')::jsonb;
    EXCEPTION WHEN OTHERS THEN
        parse_error := SQLERRM;
    END;
    IF parse_error IS NOT NULL OR doc IS NULL THEN
        -- Stored with its error (nothing is lost), answered 400.
        new_id := gen_random_uuid();
        INSERT INTO ventros.inbox (tenant_id, id, channel_id, provider, event, dedupe_key, delivery_id, body, headers,
                                   status, last_error)
        VALUES (ch.tenant_id, new_id, ch.id, provider, 'invalid', ventros.body_sha256(body), new_id, body, kept,
                'failed', left('22P02: body is not JSON: ' || coalesce(parse_error, 'empty'), 2000))
        ON CONFLICT ON CONSTRAINT inbox_unique_dedupe_key DO NOTHING;
        RETURN QUERY SELECT 400, '{"error":"invalid_json"}'::jsonb;
        RETURN;
    END IF;

    FOR it IN EXECUTE format('SELECT * FROM %s($1, $2, $3, $4)', p.split::regproc) USING ch.config, doc, body, hdrs
    LOOP
        new_id := gen_random_uuid();
        conv := NULL;
        IF p.conversation IS NOT NULL AND it.status = 'received' THEN
            EXECUTE format('SELECT %s($1)', p.conversation::regproc) INTO conv USING it.item;
        END IF;
        INSERT INTO ventros.inbox AS i (tenant_id, id, channel_id, provider, event, dedupe_key, delivery_id, item_index,
                                        body, item, headers, ref_id, status, last_error, next_attempt_at, conversation)
        VALUES (ch.tenant_id, new_id, ch.id, provider, it.event, left(it.dedupe_key, 1024), coalesce(head, new_id), n,
                CASE WHEN head IS NULL THEN body END, it.item, kept, it.ref_id, it.status, it.last_error,
                CASE WHEN it.status = 'received' THEN now() END, left(conv, 256))
        ON CONFLICT ON CONSTRAINT inbox_unique_dedupe_key DO NOTHING
        RETURNING i.id INTO new_id;
        n := n + 1;
        IF FOUND THEN
            head := coalesce(head, new_id);
            stored := stored || new_id;
        END IF;
    END LOOP;

    IF head IS NULL THEN
        RETURN QUERY SELECT 200, '{"status":"duplicate"}'::jsonb;
        RETURN;
    END IF;
    -- Deferred (the default): the inbox processor takes the new items right
    -- after this transaction commits (src/inbox_worker.c; the statement
    -- trigger ventros_inbox_wake wakes it).  Inline: process what is new
    -- here, each item in its own subtransaction (inbox_run).
    IF current_setting('ventros.inbox_processing') = 'inline' THEN
        FOR row_ IN SELECT * FROM ventros.inbox i
                    WHERE i.tenant_id = ch.tenant_id AND i.id = ANY (stored) AND i.status = 'received'
                    ORDER BY i.item_index LOOP
            PERFORM ventros.inbox_run(row_, now());
        END LOOP;
    END IF;
    RETURN QUERY SELECT 200, jsonb_build_object('status', 'accepted', 'inbox_id', head);
END
$$;
COMMENT ON FUNCTION ventros.accept_webhook(text, text, jsonb, bytea) IS
    'A provider webhook for a channel (any tenant: the channel names it): 404 unknown channel, 401 bad signature (counted), 400 not JSON (stored with its error), else 200 accepted (items stored idempotently; processed here when ventros.inbox_processing is inline, else by the inbox processor after commit) or duplicate';

-- webhook_challenge: the GET subscription handshake of the providers that
-- have one (Meta's), answered by the provider's challenge function.
CREATE FUNCTION ventros.webhook_challenge(provider text, channel_id text, mode text, verify_token text, challenge text)
RETURNS text
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p ventros.inbound_providers;
    ch ventros.channels;
    answer text;
BEGIN
    SELECT * INTO p FROM ventros.inbound_providers x WHERE x.provider = lower(webhook_challenge.provider);
    IF NOT FOUND THEN
        -- the front answers 404, as accept_webhook does for an unknown provider
        RAISE EXCEPTION 'unknown webhook provider "%"', left(provider, 64) USING ERRCODE = 'P0002';
    END IF;
    IF p.challenge IS NULL THEN
        RETURN NULL;
    END IF;
    ch := ventros.webhook_channel(p.provider, channel_id);
    IF ch.id IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT %s($1, $2, $3, $4)', p.challenge::regproc) INTO answer
        USING (ventros.channel_with_secrets(ch)).config, mode, verify_token, challenge;
    RETURN answer;
END
$$;
COMMENT ON FUNCTION ventros.webhook_challenge(text, text, text, text, text) IS
    'A provider''s verification handshake (Meta''s): the challenge to echo when the provider''s challenge function accepts mode and verify token for the channel, else NULL (answer 403); P0002 for a provider not registered (answer 404)';

GRANT EXECUTE ON FUNCTION ventros.accept_webhook(text, text, jsonb, bytea),
    ventros.webhook_challenge(text, text, text, text, text) TO ventros_anon, ventros_authenticator;
GRANT EXECUTE ON FUNCTION ventros.timing_safe_equal(bytea, bytea), ventros.webhook_hmac(bytea, text, text),
    ventros.verify_webhook(text, jsonb, jsonb, bytea) TO ventros_admin;
