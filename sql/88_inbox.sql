-- The inbox: every webhook a provider (WAHA, WhatsApp Cloud, Instagram,
-- Messenger) delivers to POST /webhooks/<provider>/<channel_id>, verified and
-- stored before anything else, then turned into the domain (contacts,
-- sessions, messages, statuses) by the parsers of sql/89_inbound*.sql.
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
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, channel_id) REFERENCES ventros.channels (tenant_id, id),
    CONSTRAINT inbox_unique_dedupe_key UNIQUE (tenant_id, channel_id, dedupe_key),
    CONSTRAINT inbox_provider_known CHECK (provider IN ('waha', 'whatsapp', 'instagram', 'messenger')),
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
COMMENT ON TABLE ventros.inbox IS
    'Inbound webhook items: verified, stored idempotently per (channel, dedupe key), then processed into the domain';
COMMENT ON COLUMN ventros.inbox.provider IS 'waha, whatsapp (Meta Cloud API), instagram or messenger';
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
-- why not.  Rules (docs/channels.md):
--   Meta (whatsapp, instagram, messenger): X-Hub-Signature-256 must be
--     "sha256=" + hex HMAC-SHA256(config.app_secret, body); a channel without
--     an app secret refuses every delivery (no_app_secret) unless its config
--     says "allow_unsigned": true;
--   WAHA: when config.webhook_secret is set, X-Webhook-Hmac must be hex
--     HMAC-SHA512(webhook_secret, body) and X-Webhook-Hmac-Algorithm, when
--     sent, sha512; when config.webhook_token is set, X-Ventros-Token must
--     equal it.
-- Every comparison is constant-time (ventros.timing_safe_equal); the expected
-- token is hashed with SHA-256 first so both sides have the same length and
-- the comparison reveals nothing about the token's length either.
CREATE FUNCTION ventros.verify_webhook(provider text, config jsonb, headers jsonb, body bytea) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    secret text;
    token text;
    given text;
    given_bytes bytea;
BEGIN
    IF provider IN ('whatsapp', 'instagram', 'messenger') THEN
        secret := nullif(config->>'app_secret', '');
        IF secret IS NULL THEN
            -- no secret to check against: unsigned only when the channel
            -- says so explicitly
            IF config->'allow_unsigned' = 'true'::jsonb THEN
                RETURN NULL;
            END IF;
            RETURN 'no_app_secret';
        END IF;
        IF secret IS NOT NULL THEN
            given := headers->>'x-hub-signature-256';
            IF given IS NULL THEN
                RETURN 'missing_signature';
            END IF;
            given_bytes := CASE WHEN left(given, 7) = 'sha256=' THEN ventros.decode_hex_signature(substr(given, 8), 32) END;
            IF given_bytes IS NULL
               OR NOT ventros.timing_safe_equal(ventros.webhook_hmac(body, secret, 'sha256'), given_bytes) THEN
                RETURN 'invalid_signature';
            END IF;
        END IF;
        RETURN NULL;
    END IF;
    -- waha
    secret := nullif(config->>'webhook_secret', '');
    IF secret IS NOT NULL THEN
        given := headers->>'x-webhook-hmac';
        IF given IS NULL THEN
            RETURN 'missing_signature';
        END IF;
        IF lower(coalesce(headers->>'x-webhook-hmac-algorithm', 'sha512')) <> 'sha512' THEN
            RETURN 'bad_algorithm';
        END IF;
        given_bytes := ventros.decode_hex_signature(given, 64);
        IF given_bytes IS NULL
           OR NOT ventros.timing_safe_equal(ventros.webhook_hmac(body, secret, 'sha512'), given_bytes) THEN
            RETURN 'invalid_signature';
        END IF;
    END IF;
    token := nullif(config->>'webhook_token', '');
    IF token IS NOT NULL THEN
        given := headers->>'x-ventros-token';
        IF given IS NULL
           OR NOT ventros.timing_safe_equal(sha256(convert_to(token, 'UTF8')), sha256(convert_to(given, 'UTF8'))) THEN
            RETURN 'invalid_token';
        END IF;
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.verify_webhook(text, jsonb, jsonb, bytea) IS
    'NULL when a delivery''s signature/token match the channel config (Meta X-Hub-Signature-256, required unless the channel has no app_secret and "allow_unsigned": true; WAHA X-Webhook-Hmac sha512 and X-Ventros-Token), else the reason; constant-time comparisons';

-- ---- the channel of a webhook URL -----------------------------------------

-- The live channel of a provider by the id in the URL, any tenant (callers
-- are SECURITY DEFINER and run as the extension owner, who bypasses RLS).
CREATE FUNCTION ventros.webhook_channel(provider text, channel_id text) RETURNS ventros.channels
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.* FROM ventros.channels c
    WHERE c.id = CASE WHEN channel_id ~* '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$'
                      THEN channel_id::uuid END
      AND c.deleted_at IS NULL
      AND CASE provider WHEN 'waha' THEN c.type = 'waha'
                        WHEN 'whatsapp' THEN c.type IN ('whatsapp', 'whatsapp_business')
                        WHEN 'instagram' THEN c.type = 'instagram'
                        WHEN 'messenger' THEN c.type = 'messenger'
                        ELSE false END
$$;
COMMENT ON FUNCTION ventros.webhook_channel(text, text) IS
    'The live channel a webhook URL names (provider and channel type must agree), of any tenant; NULL when none';

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

-- WAHA: one item per delivery.
CREATE FUNCTION ventros.split_waha(config jsonb, doc jsonb, body bytea, headers jsonb)
RETURNS SETOF ventros.inbox_item
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ventros.inbox_item;
    payload jsonb := CASE WHEN jsonb_typeof(doc) = 'object' THEN doc->'payload' END;
    pid text := ventros.json_text(payload, 'id');
    fallback text := coalesce(ventros.json_text(doc, 'id'), nullif(headers->>'x-webhook-request-id', ''),
                              ventros.body_sha256(body));
BEGIN
    r.item := doc;
    r.status := 'received';
    IF jsonb_typeof(doc) IS DISTINCT FROM 'object' THEN
        r.event := 'invalid';
        r.dedupe_key := ventros.body_sha256(body);
        r.status := 'failed';
        r.last_error := '22P02: a WAHA webhook body must be a JSON object';
        RETURN NEXT r;
        RETURN;
    END IF;
    r.event := coalesce(left(ventros.json_text(doc, 'event'), 200), 'unknown');
    CASE r.event
        WHEN 'message.any' THEN
            r.dedupe_key := coalesce('msg:' || pid, fallback);
            r.ref_id := pid;    -- an echo of our own send waits for that id (unmatched)
        WHEN 'message' THEN
            -- The subset of message.any: stored, not processed.  Its own key, so
            -- it never shadows the message.any delivery of the same message.
            r.dedupe_key := coalesce('message:' || pid, fallback);
            r.status := 'ignored';
        WHEN 'message.ack' THEN
            r.dedupe_key := coalesce('ack:' || pid || ':' || ventros.json_text(payload, 'ack'), fallback);
            r.ref_id := pid;
        WHEN 'message.reaction' THEN
            r.dedupe_key := fallback;
            r.ref_id := ventros.json_text(payload, 'reaction', 'messageId');
        WHEN 'message.revoked' THEN
            r.dedupe_key := fallback;
            r.ref_id := coalesce(ventros.json_text(payload, 'revokedMessageId'), ventros.json_text(payload, 'before', 'id'));
        WHEN 'message.edited' THEN
            r.dedupe_key := fallback;
            r.ref_id := ventros.json_text(payload, 'editedMessageId');
        WHEN 'session.status' THEN
            r.dedupe_key := fallback;
        ELSE
            r.dedupe_key := fallback;
            r.status := 'unparsed';
    END CASE;
    IF nullif(config->>'session', '') IS NOT NULL AND ventros.json_text(doc, 'session') IS NOT NULL
       AND config->>'session' <> ventros.json_text(doc, 'session') THEN
        r.status := 'foreign';
    END IF;
    RETURN NEXT r;
END
$$;
COMMENT ON FUNCTION ventros.split_waha(jsonb, jsonb, bytea, jsonb) IS
    'The inbox item of a WAHA delivery: its event, dedupe key (msg:<id>, ack:<id>:<ack>, else envelope id, X-Webhook-Request-Id or sha256) and initial status';

-- WhatsApp Cloud: one item per messages[] / statuses[] element of every change.
CREATE FUNCTION ventros.split_whatsapp(config jsonb, doc jsonb, body bytea)
RETURNS SETOF ventros.inbox_item
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ventros.inbox_item;
    e jsonb;
    c jsonb;
    v jsonb;
    x jsonb;
    ctx jsonb;
    ours text := nullif(config->>'phone_number_id', '');
    foreign_item boolean;
    emitted boolean;
BEGIN
    IF jsonb_typeof(doc) IS DISTINCT FROM 'object' OR jsonb_typeof(doc->'entry') IS DISTINCT FROM 'array' THEN
        r := ROW('invalid', ventros.body_sha256(body), doc, NULL, 'failed',
                 '22P02: a WhatsApp webhook body must be an object with an entry array');
        RETURN NEXT r;
        RETURN;
    END IF;
    IF doc->>'object' IS DISTINCT FROM 'whatsapp_business_account' THEN
        r := ROW('unknown', ventros.body_sha256(body), doc, NULL, 'unparsed',
                 format('unexpected object %s', coalesce(doc->>'object', 'null')));
        RETURN NEXT r;
        RETURN;
    END IF;
    FOR e IN SELECT * FROM jsonb_array_elements(doc->'entry') LOOP
        FOR c IN SELECT * FROM jsonb_array_elements(CASE WHEN jsonb_typeof(e->'changes') = 'array' THEN e->'changes' ELSE '[]' END) LOOP
            v := c->'value';
            ctx := jsonb_build_object('object', doc->'object', 'entry_id', e->'id', 'field', c->'field',
                                      'metadata', v->'metadata');
            -- Ours unless it names another number (or, without metadata, another WABA).
            foreign_item := CASE WHEN jsonb_typeof(v->'metadata'->'phone_number_id') = 'string'
                                 THEN ours IS NOT NULL AND v->'metadata'->>'phone_number_id' <> ours
                                 ELSE nullif(config->>'waba_id', '') IS NOT NULL AND ventros.json_text(e, 'id') IS NOT NULL
                                      AND ventros.json_text(e, 'id') <> config->>'waba_id' END;
            emitted := false;
            IF c->>'field' = 'messages' AND jsonb_typeof(v) = 'object' THEN
                FOR x IN SELECT * FROM jsonb_array_elements(CASE WHEN jsonb_typeof(v->'messages') = 'array' THEN v->'messages' ELSE '[]' END) LOOP
                    r.item := ctx || jsonb_build_object('contacts', v->'contacts', 'message', x);
                    r.event := 'messages';
                    r.dedupe_key := coalesce('msg:' || ventros.json_text(x, 'id'), ventros.json_sha256(r.item));
                    r.ref_id := CASE WHEN x->>'type' = 'reaction' THEN ventros.json_text(x, 'reaction', 'message_id') END;
                    r.status := CASE WHEN foreign_item THEN 'foreign' ELSE 'received' END;
                    r.last_error := NULL;
                    RETURN NEXT r;
                    emitted := true;
                END LOOP;
                FOR x IN SELECT * FROM jsonb_array_elements(CASE WHEN jsonb_typeof(v->'statuses') = 'array' THEN v->'statuses' ELSE '[]' END) LOOP
                    r.item := ctx || jsonb_build_object('status', x);
                    r.event := 'statuses';
                    r.dedupe_key := coalesce('st:' || ventros.json_text(x, 'id') || ':' || ventros.json_text(x, 'status'),
                                             ventros.json_sha256(r.item));
                    r.ref_id := ventros.json_text(x, 'id');
                    r.status := CASE WHEN foreign_item THEN 'foreign' ELSE 'received' END;
                    r.last_error := NULL;
                    RETURN NEXT r;
                    emitted := true;
                END LOOP;
            END IF;
            IF NOT emitted THEN
                -- errors, other fields (templates, account updates, ...): stored.
                r.item := ctx || jsonb_build_object('value', v);
                r.event := left(coalesce(ventros.json_text(c, 'field'), 'unknown'), 200);
                r.dedupe_key := ventros.json_sha256(r.item);
                r.ref_id := NULL;
                r.status := CASE WHEN foreign_item THEN 'foreign' ELSE 'unparsed' END;
                r.last_error := NULL;
                RETURN NEXT r;
            END IF;
        END LOOP;
    END LOOP;
END
$$;
COMMENT ON FUNCTION ventros.split_whatsapp(jsonb, jsonb, bytea) IS
    'The inbox items of a WhatsApp Cloud delivery: one per message (msg:<wamid>) and status (st:<wamid>:<status>); other changes stored unparsed; foreign when phone_number_id is not the channel''s';

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
    IF jsonb_typeof(doc) IS DISTINCT FROM 'object' OR jsonb_typeof(doc->'entry') IS DISTINCT FROM 'array' THEN
        r := ROW('invalid', ventros.body_sha256(body), doc, NULL, 'failed',
                 '22P02: a Meta webhook body must be an object with an entry array');
        RETURN NEXT r;
        RETURN;
    END IF;
    IF doc->>'object' IS DISTINCT FROM expected_object THEN
        r := ROW('unknown', ventros.body_sha256(body), doc, NULL, 'unparsed',
                 format('unexpected object %s', coalesce(doc->>'object', 'null')));
        RETURN NEXT r;
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
                r.item := jsonb_build_object('object', doc->'object', 'entry_id', e->'id', 'entry_time', e->'time', 'change', x);
                r.event := left(coalesce(ventros.json_text(x, 'field'), 'unknown'), 200);
                r.dedupe_key := ventros.json_sha256(r.item);
                r.ref_id := NULL;
                r.status := CASE WHEN foreign_item THEN 'foreign' ELSE 'unparsed' END;
                r.last_error := NULL;
                RETURN NEXT r;
            END LOOP;
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION ventros.split_meta_messaging(text, jsonb, jsonb, bytea) IS
    'The inbox items of an Instagram or Messenger delivery: one per messaging event (msg:, del:, edit:, read:, dlv:, react:, pb:, ref: keys); changes stored unparsed; foreign when the entry is not the channel''s account/page';

-- The headers kept with a delivery: no tokens, keys nor cookies.
CREATE FUNCTION ventros.webhook_headers_to_keep(headers jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_object_agg(lower(h.key), left(h.value #>> '{}', 1024)), '{}')
    FROM jsonb_each(CASE WHEN jsonb_typeof(headers) = 'object' THEN headers ELSE '{}' END) h
    WHERE lower(h.key) IN ('content-type', 'user-agent', 'x-webhook-request-id', 'x-webhook-timestamp',
                           'x-webhook-hmac-algorithm', 'x-webhook-hmac', 'x-hub-signature-256', 'x-request-id',
                           'x-forwarded-for', 'x-real-ip')
      AND jsonb_typeof(h.value) = 'string'
$$;
COMMENT ON FUNCTION ventros.webhook_headers_to_keep(jsonb) IS
    'The request headers stored with a delivery (content type, user agent, request ids, signatures); tokens and keys never';

-- ---- retries ----------------------------------------------------------------

CREATE FUNCTION ventros.inbox_max_attempts() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 8 $$;
COMMENT ON FUNCTION ventros.inbox_max_attempts() IS 'Processing attempts of an inbox item before it is given up (8)';

-- 30 s, 1 min, 2 min, ... doubling, at most 1 h: 8 attempts span about 2 h.
CREATE FUNCTION ventros.inbox_backoff(attempts integer) RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- (no SET clause: small enough to be inlined; every name is qualified)
AS $$
    SELECT pg_catalog.make_interval(secs => least(30 OPERATOR(pg_catalog.*) pg_catalog.power(2, least(greatest(attempts, 1) OPERATOR(pg_catalog.-) 1, 20)), 3600))
$$;
COMMENT ON FUNCTION ventros.inbox_backoff(integer) IS
    'Delay before the next processing attempt after n attempts: 30 s doubling, at most 1 h';

-- Errors that no retry can fix: the item itself is malformed or refused.
CREATE FUNCTION ventros.inbox_error_is_permanent(sqlstate text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- (no SET clause: small enough to be inlined; every name is qualified)
AS $$ SELECT pg_catalog.left(sqlstate, 2) IN ('22', '54') OR sqlstate IN ('23502', '23514', 'VN002') $$;
COMMENT ON FUNCTION ventros.inbox_error_is_permanent(text) IS
    'Whether a processing error is the item''s own fault (data exceptions, not-null/check violations, size limits, refused transitions): no retry';

-- What processing one item did (sql/89_inbound.sql: ventros.inbox_process).
CREATE TYPE ventros.inbox_outcome AS (
    status     text,
    message_id uuid,
    contact_id uuid,
    result     jsonb
);
COMMENT ON TYPE ventros.inbox_outcome IS 'The outcome of processing an inbox item: its new status, the message and contact it concerned, details';

-- inbox_run: processes one stored item in a subtransaction and records the
-- outcome on its row.  The caller has chosen the item's tenant and holds
-- (or just inserted) the row.  Never raises for the item's own errors.
CREATE FUNCTION ventros.inbox_run(r ventros.inbox, now timestamptz) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o ventros.inbox_outcome;
    ch ventros.channels;
    state text;
    message text;
    tries integer := r.attempts + 1;
BEGIN
    BEGIN
        SELECT * INTO ch FROM ventros.channels c WHERE c.tenant_id = r.tenant_id AND c.id = r.channel_id;
        o := ventros.inbox_process(r, ch);
        UPDATE ventros.inbox i
        SET status = o.status, attempts = tries, message_id = coalesce(o.message_id, i.message_id),
            contact_id = coalesce(o.contact_id, i.contact_id), result = o.result, last_error = NULL,
            processed_at = CASE WHEN o.status <> 'unmatched' THEN now END,
            next_attempt_at = CASE WHEN o.status = 'unmatched' AND tries < ventros.inbox_max_attempts()
                                   THEN now + ventros.inbox_backoff(tries) END
        WHERE i.tenant_id = r.tenant_id AND i.id = r.id;
        RETURN o.status;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
    END;
    UPDATE ventros.inbox i
    SET status = 'failed', attempts = tries, last_error = left(state || ': ' || message, 2000),
        next_attempt_at = CASE WHEN NOT ventros.inbox_error_is_permanent(state) AND tries < ventros.inbox_max_attempts()
                               THEN now + ventros.inbox_backoff(tries) END
    WHERE i.tenant_id = r.tenant_id AND i.id = r.id;
    RETURN 'failed';
END
$$;

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
BEGIN
    provider := lower(provider);
    ch := ventros.webhook_channel(provider, channel_id);
    IF ch.id IS NULL THEN
        RETURN QUERY SELECT 404, '{"error":"channel_not_found"}'::jsonb;
        RETURN;
    END IF;
    PERFORM set_config('ventros.tenant', ch.tenant_id, true);
    SELECT coalesce(jsonb_object_agg(lower(h.key), h.value), '{}') INTO hdrs
    FROM jsonb_each(CASE WHEN jsonb_typeof(headers) = 'object' THEN headers ELSE '{}' END) h
    WHERE jsonb_typeof(h.value) = 'string';
    body := coalesce(body, ''::bytea);

    failure := ventros.verify_webhook(provider, ch.config, hdrs, body);
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

    FOR it IN
        SELECT * FROM ventros.split_waha(ch.config, doc, body, hdrs) WHERE provider = 'waha'
        UNION ALL
        SELECT * FROM ventros.split_whatsapp(ch.config, doc, body) WHERE provider = 'whatsapp'
        UNION ALL
        SELECT * FROM ventros.split_meta_messaging(provider, ch.config, doc, body) WHERE provider IN ('instagram', 'messenger')
    LOOP
        new_id := gen_random_uuid();
        INSERT INTO ventros.inbox AS i (tenant_id, id, channel_id, provider, event, dedupe_key, delivery_id, item_index,
                                        body, item, headers, ref_id, status, last_error, next_attempt_at)
        VALUES (ch.tenant_id, new_id, ch.id, provider, it.event, left(it.dedupe_key, 1024), coalesce(head, new_id), n,
                CASE WHEN head IS NULL THEN body END, it.item, kept, it.ref_id, it.status, it.last_error,
                CASE WHEN it.status = 'received' THEN now() END)
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

-- webhook_challenge: Meta's GET verification handshake.
CREATE FUNCTION ventros.webhook_challenge(provider text, channel_id text, mode text, verify_token text, challenge text)
RETURNS text
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch ventros.channels;
    expected text;
BEGIN
    IF lower(provider) NOT IN ('whatsapp', 'instagram', 'messenger') THEN
        RETURN NULL;
    END IF;
    ch := ventros.webhook_channel(lower(provider), channel_id);
    expected := nullif(ch.config->>'verify_token', '');
    IF ch.id IS NULL OR expected IS NULL OR mode IS DISTINCT FROM 'subscribe' OR verify_token IS NULL
       OR challenge IS NULL OR length(challenge) > 1024 THEN
        RETURN NULL;
    END IF;
    IF NOT ventros.timing_safe_equal(sha256(convert_to(expected, 'UTF8')), sha256(convert_to(verify_token, 'UTF8'))) THEN
        RETURN NULL;
    END IF;
    RETURN challenge;
END
$$;
COMMENT ON FUNCTION ventros.webhook_challenge(text, text, text, text, text) IS
    'Meta''s verification handshake: the challenge to echo when mode is subscribe and the verify token matches the channel''s (constant-time), else NULL (answer 403)';

-- process_inbox: the retry loop, across tenants, for a scheduler (pg_cron
-- job ventros-process-inbox, sql/98_inbox_jobs.sql) or an operator.  Time is a parameter.
-- SECURITY DEFINER to read every tenant's rows; platform admins only.
CREATE FUNCTION ventros.process_inbox(batch_size integer DEFAULT 100, now timestamptz DEFAULT now())
RETURNS TABLE (status text, items integer)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET ventros.tenant = ''
AS $$
DECLARE
    r ventros.inbox;
    outcome text;
    counts jsonb := '{}';
BEGIN
    PERFORM ventros.require_platform_admin();
    FOR r IN SELECT * FROM ventros.inbox i
             WHERE i.status IN ('received', 'failed', 'unmatched') AND i.next_attempt_at <= process_inbox.now
             ORDER BY i.next_attempt_at, i.received_at, i.item_index
             LIMIT batch_size
             FOR UPDATE SKIP LOCKED LOOP
        PERFORM set_config('ventros.tenant', r.tenant_id, true);
        outcome := ventros.inbox_run(r, process_inbox.now);
        counts := jsonb_set(counts, ARRAY[outcome], to_jsonb(coalesce((counts->>outcome)::integer, 0) + 1));
    END LOOP;
    RETURN QUERY SELECT c.key, c.value::text::integer FROM jsonb_each(counts) c ORDER BY c.key;
END
$$;
COMMENT ON FUNCTION ventros.process_inbox(integer, timestamptz) IS
    'Platform admins / scheduler: processes up to batch_size due inbox items of every tenant (received, failed with retries left, unmatched), each in its own subtransaction; returns how many ended in each status';

-- The role the session acts as: its SET ROLE, else its login.  Inside a
-- SECURITY DEFINER function current_user is the definer (a superuser, a
-- member of every role), so a role check there asks this instead.
CREATE FUNCTION ventros.session_role() RETURNS name
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN pg_catalog.current_setting('role') = 'none' THEN session_user
                ELSE pg_catalog.current_setting('role')::name END
$$;
COMMENT ON FUNCTION ventros.session_role() IS
    'The role the session acts as (its SET ROLE, else its login): the caller''s role for checks inside SECURITY DEFINER functions, where current_user is the definer';

-- reprocess_inbox_item: an administrator retries one item now (after fixing
-- a channel's configuration, or an unparsed/failed item after an upgrade).
CREATE FUNCTION ventros.reprocess_inbox_item(inbox_id uuid) RETURNS ventros.inbox
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    r ventros.inbox;
BEGIN
    -- the caller's role: current_user here is this function's owner
    IF NOT pg_has_role(ventros.session_role(), 'ventros_admin', 'MEMBER')
       AND NOT pg_has_role(ventros.session_role(), 'ventros_platform_admin', 'MEMBER') THEN
        RAISE EXCEPTION 'only administrators reprocess inbox items' USING ERRCODE = '42501',
            DETAIL = pg_catalog.format('Role "%s" is not a member of ventros_admin.', ventros.session_role());
    END IF;
    SELECT * INTO r FROM ventros.inbox i WHERE i.tenant_id = tenant AND i.id = inbox_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'inbox item % not found', inbox_id USING ERRCODE = 'P0002';
    END IF;
    IF r.status NOT IN ('failed', 'unmatched', 'unparsed', 'received') OR r.item IS NULL THEN
        RAISE EXCEPTION 'inbox item % is %', inbox_id, r.status USING ERRCODE = '55000',
            HINT = 'Only failed, unmatched, unparsed or received items with a parsed JSON item are reprocessed.';
    END IF;
    PERFORM ventros.inbox_run(r, now());
    SELECT * INTO r FROM ventros.inbox i WHERE i.tenant_id = tenant AND i.id = inbox_id;
    RETURN r;
END
$$;
COMMENT ON FUNCTION ventros.reprocess_inbox_item(uuid) IS
    'Administrators: processes one failed, unmatched or unparsed inbox item of the acting tenant again, now; returns the row';

-- prune_inbox: retention, for a scheduler.  Finished rows only.
CREATE FUNCTION ventros.prune_inbox(received_before timestamptz, batch_size integer DEFAULT 10000)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    PERFORM ventros.require_platform_admin();
    WITH gone AS (
        DELETE FROM ventros.inbox r
         WHERE (r.tenant_id, r.id) IN (SELECT x.tenant_id, x.id FROM ventros.inbox x
                                        WHERE x.received_at < received_before
                                          AND (x.status IN ('processed', 'ignored', 'unparsed', 'foreign')
                                               OR x.next_attempt_at IS NULL)
                                        LIMIT batch_size)
        RETURNING 1)
    SELECT count(*)::integer INTO n FROM gone;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.prune_inbox(timestamptz, integer) IS
    'Platform admins: deletes up to batch_size finished inbox rows received before the given time; returns how many. Deleting a row forgets its dedupe key: keep more than the providers'' retry horizon (Meta: days)';

-- Receipts that arrived before the send recorded the provider id become due
-- as soon as a message gets that id (mark_message_sent, an echo binding it).
CREATE FUNCTION ventros.inbox_rematch() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE ventros.inbox i SET next_attempt_at = now()
    WHERE i.tenant_id = NEW.tenant_id AND i.channel_id = NEW.channel_id AND i.ref_id = NEW.channel_message_id
      AND i.status = 'unmatched';
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.inbox_rematch() IS
    'Trigger: a message got a provider id; receipts for it that were unmatched are due now';
CREATE TRIGGER messages_inbox_rematch AFTER INSERT OR UPDATE OF channel_message_id ON ventros.messages
    FOR EACH ROW WHEN (NEW.channel_message_id IS NOT NULL AND NEW.from_me)
    EXECUTE FUNCTION ventros.inbox_rematch();

GRANT EXECUTE ON FUNCTION ventros.accept_webhook(text, text, jsonb, bytea),
    ventros.webhook_challenge(text, text, text, text, text) TO ventros_anon, ventros_authenticator;
GRANT EXECUTE ON FUNCTION ventros.reprocess_inbox_item(uuid) TO ventros_admin;
GRANT EXECUTE ON FUNCTION ventros.process_inbox(integer, timestamptz), ventros.prune_inbox(timestamptz, integer)
    TO ventros_platform_admin;
GRANT EXECUTE ON FUNCTION ventros.timing_safe_equal(bytea, bytea), ventros.webhook_hmac(bytea, text, text),
    ventros.verify_webhook(text, jsonb, jsonb, bytea) TO ventros_admin;
