-- The inbound provider registry (sql/88_inbox.sql): per provider, its verify,
-- split, process and challenge functions as data, instead of CASE branches
-- on provider names; the registry is the one list of providers, which the
-- inbox and ventros.channel_providers refer to by foreign key instead of
-- repeating the names in CHECK constraints.

CREATE TABLE ventros.inbound_providers (
    provider  text PRIMARY KEY,
    verify    regprocedure NOT NULL,
    split     regprocedure NOT NULL,
    process   regprocedure NOT NULL,
    challenge regprocedure,
    -- the URL segment: lower case, and short enough for the front (15 bytes)
    CONSTRAINT inbound_providers_name_format CHECK (provider ~ '^[a-z][a-z0-9_]{0,14}$')
);
COMMENT ON TABLE ventros.inbound_providers IS
    'Per webhook provider: verify(config jsonb, headers jsonb, body bytea) -> NULL or why not authentic; split(config jsonb, doc jsonb, body bytea, headers jsonb) -> SETOF ventros.inbox_item; process(ventros.inbox, ventros.channels) -> ventros.inbox_outcome; challenge(config jsonb, mode text, verify_token text, challenge text) -> the text to echo or NULL (no handshake when NULL)';

-- A catalogue shared by every tenant: readable by all, written by registrations only.
ALTER TABLE ventros.inbound_providers ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.inbound_providers FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_catalog_read ON ventros.inbound_providers FOR SELECT USING (true);
GRANT SELECT ON ventros.inbound_providers TO ventros_viewer;

CREATE OR REPLACE FUNCTION ventros.register_inbound_provider(provider text, verify regprocedure, split regprocedure,
                                                  process regprocedure, challenge regprocedure DEFAULT NULL)
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
    INSERT INTO ventros.inbound_providers AS p (provider, verify, split, process, challenge)
    VALUES (register_inbound_provider.provider, register_inbound_provider.verify, register_inbound_provider.split,
            register_inbound_provider.process, register_inbound_provider.challenge)
    ON CONFLICT ON CONSTRAINT inbound_providers_pkey DO UPDATE
       SET verify = EXCLUDED.verify, split = EXCLUDED.split, process = EXCLUDED.process, challenge = EXCLUDED.challenge;
END
$$;
COMMENT ON FUNCTION ventros.register_inbound_provider(text, regprocedure, regprocedure, regprocedure, regprocedure) IS
    'Registers how the webhooks of a provider are verified, split into inbox items, processed and (optionally) subscribed to (see ventros.inbound_providers)';

-- the providers' functions (sql/89_inbound_meta.sql, sql/89_inbound_waha.sql)
CREATE OR REPLACE FUNCTION ventros.verify_meta_webhook(config jsonb, headers jsonb, body bytea) RETURNS text
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

CREATE OR REPLACE FUNCTION ventros.meta_webhook_challenge(config jsonb, mode text, verify_token text, challenge text) RETURNS text
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

CREATE OR REPLACE FUNCTION ventros.verify_waha_webhook(config jsonb, headers jsonb, body bytea) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    secret text := nullif(config->>'webhook_secret', '');
    token text := nullif(config->>'webhook_token', '');
    given text;
    given_bytes bytea;
BEGIN
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
COMMENT ON FUNCTION ventros.verify_waha_webhook(jsonb, jsonb, bytea) IS
    'WAHA webhooks: NULL when X-Webhook-Hmac is the HMAC-SHA512 of the body with config.webhook_secret (when set; algorithm sha512) and X-Ventros-Token equals config.webhook_token (when set), constant-time; else missing_signature, bad_algorithm, invalid_signature or invalid_token';

-- split_whatsapp takes the headers argument of the registry's shape
DROP FUNCTION ventros.split_whatsapp(jsonb, jsonb, bytea);
CREATE OR REPLACE FUNCTION ventros.split_whatsapp(config jsonb, doc jsonb, body bytea, headers jsonb)
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
COMMENT ON FUNCTION ventros.split_whatsapp(jsonb, jsonb, bytea, jsonb) IS
    'The inbox items of a WhatsApp Cloud delivery: one per message (msg:<wamid>) and status (st:<wamid>:<status>); other changes stored unparsed; foreign when phone_number_id is not the channel''s';

CREATE OR REPLACE FUNCTION ventros.whatsapp_process(r ventros.inbox, ch ventros.channels) RETURNS ventros.inbox_outcome
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE r.event WHEN 'messages' THEN ventros.whatsapp_message(ch, r.item)
                        WHEN 'statuses' THEN ventros.whatsapp_status(ch, r.item)
                        ELSE ventros.inbox_outcome('unparsed') END
$$;
COMMENT ON FUNCTION ventros.whatsapp_process(ventros.inbox, ventros.channels) IS
    'Processes a WhatsApp Cloud inbox item: messages (ventros.whatsapp_message), statuses (ventros.whatsapp_status); anything else unparsed';

CREATE OR REPLACE FUNCTION ventros.split_instagram(config jsonb, doc jsonb, body bytea, headers jsonb)
RETURNS SETOF ventros.inbox_item
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM ventros.split_meta_messaging('instagram', config, doc, body) $$;
COMMENT ON FUNCTION ventros.split_instagram(jsonb, jsonb, bytea, jsonb) IS
    'The inbox items of an Instagram delivery (ventros.split_meta_messaging)';

CREATE OR REPLACE FUNCTION ventros.split_messenger(config jsonb, doc jsonb, body bytea, headers jsonb)
RETURNS SETOF ventros.inbox_item
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM ventros.split_meta_messaging('messenger', config, doc, body) $$;
COMMENT ON FUNCTION ventros.split_messenger(jsonb, jsonb, bytea, jsonb) IS
    'The inbox items of a Messenger delivery (ventros.split_meta_messaging)';

-- the registrations, as in the providers' files
SELECT ventros.register_inbound_provider(p, 'ventros.verify_meta_webhook(jsonb, jsonb, bytea)',
           format('ventros.split_%s(jsonb, jsonb, bytea, jsonb)', p)::regprocedure,
           'ventros.meta_messaging_process(ventros.inbox, ventros.channels)',
           'ventros.meta_webhook_challenge(jsonb, text, text, text)')
  FROM unnest('{instagram,messenger}'::text[]) p;

SELECT ventros.register_inbound_provider('waha', 'ventros.verify_waha_webhook(jsonb, jsonb, bytea)',
           'ventros.split_waha(jsonb, jsonb, bytea, jsonb)', 'ventros.waha_process(ventros.inbox, ventros.channels)');

SELECT ventros.register_inbound_provider('whatsapp', 'ventros.verify_meta_webhook(jsonb, jsonb, bytea)',
           'ventros.split_whatsapp(jsonb, jsonb, bytea, jsonb)', 'ventros.whatsapp_process(ventros.inbox, ventros.channels)',
           'ventros.meta_webhook_challenge(jsonb, text, text, text)');

GRANT EXECUTE ON FUNCTION ventros.verify_meta_webhook(jsonb, jsonb, bytea) TO ventros_admin;
GRANT EXECUTE ON FUNCTION ventros.verify_waha_webhook(jsonb, jsonb, bytea) TO ventros_admin;

-- one list of providers
ALTER TABLE ventros.inbox DROP CONSTRAINT inbox_provider_known,
    ADD CONSTRAINT inbox_provider_registered FOREIGN KEY (provider) REFERENCES ventros.inbound_providers (provider);
ALTER TABLE ventros.channel_providers DROP CONSTRAINT channel_providers_provider_known,
    ADD CONSTRAINT channel_providers_provider_registered FOREIGN KEY (provider)
        REFERENCES ventros.inbound_providers (provider);
COMMENT ON COLUMN ventros.inbox.provider IS 'The provider of the webhook URL the item came in by (ventros.inbound_providers: waha, whatsapp, instagram, messenger, ...)';
COMMENT ON TABLE ventros.channel_providers IS
    'Per channel type, its provider (ventros.inbound_providers: the webhook URL serving the type) and how its messages are sent: build_send(channels, messages) -> request jsonb {method,url,headers,body} or NULL (not configured); sent_id(jsonb answer) -> provider message id; build_media(channels, messages) -> media download request; the retry policy of its requests; the free-form window in hours (NULL: none); config_error(response_status integer, response_body bytea) -> whether a failed send means the channel is misconfigured (kept on the channel); the retry policy of its media downloads';

-- the outbound registry says what is provider-specific in the shared send
-- mechanics: which failed answers mean a misconfigured channel, and the
-- retry policy of media downloads
ALTER TABLE ventros.channel_providers ADD COLUMN config_error regprocedure,
    ADD COLUMN media_retry_policy text NOT NULL DEFAULT 'transient';
CREATE OR REPLACE FUNCTION ventros.register_channel_provider(channel_type text, provider text, build_send regprocedure,
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

CREATE OR REPLACE FUNCTION ventros.waha_config_error(status integer, body bytea) RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce(status IN (401, 404), false) $$;
COMMENT ON FUNCTION ventros.waha_config_error(integer, bytea) IS
    'Whether a failed WAHA answer means the channel is misconfigured: 401 (API key) or 404 (session)';

CREATE OR REPLACE FUNCTION ventros.graph_config_error(status integer, body bytea) RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce(ventros.graph_error_class(status, body) = 'config', false) $$;
COMMENT ON FUNCTION ventros.graph_config_error(integer, bytea) IS
    'Whether a failed Graph answer means the channel is misconfigured: error class config (190, 10, 200-299, 100/33)';

SELECT ventros.register_channel_provider('waha', 'waha', 'ventros.waha_send_request(ventros.channels, ventros.messages)',
           'ventros.waha_sent_id(jsonb)', 'ventros.waha_media_request(ventros.channels, ventros.messages)', 'waha',
           config_error => 'ventros.waha_config_error(integer, bytea)');

SELECT ventros.register_channel_provider(t, 'whatsapp', 'ventros.whatsapp_send_request(ventros.channels, ventros.messages)',
           'ventros.whatsapp_sent_id(jsonb)', 'ventros.whatsapp_media_request(ventros.channels, ventros.messages)', 'graph', 24,
           'ventros.graph_config_error(integer, bytea)', 'graph')
  FROM unnest('{whatsapp,whatsapp_business}'::text[]) t;

SELECT ventros.register_channel_provider(t, t, 'ventros.graph_messaging_send_request(ventros.channels, ventros.messages)',
           'ventros.graph_messaging_sent_id(jsonb)', 'ventros.graph_messaging_media_request(ventros.channels, ventros.messages)',
           'graph', config_error => 'ventros.graph_config_error(integer, bytea)', media_retry_policy => 'graph')
  FROM unnest('{instagram,messenger}'::text[]) t;

GRANT EXECUTE ON FUNCTION ventros.waha_config_error(integer, bytea), ventros.graph_config_error(integer, bytea) TO ventros_viewer;

CREATE OR REPLACE FUNCTION ventros.handle_message_send(r ventros.http_requests) RETURNS void
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

CREATE OR REPLACE FUNCTION ventros.request_media_download(message_id uuid) RETURNS uuid
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
                                            m.id, coalesce(p.media_retry_policy, 'transient'),
                                            ventros.media_download_cap(req));
END
$$;
COMMENT ON FUNCTION ventros.request_media_download(uuid) IS
    'Queues the download of a message''s media (WAHA: GET its URL on the WAHA host with X-Api-Key; Cloud API: media lookup then download with the Bearer token; Messenger / Instagram: the CDN URL); the handlers fill ventros.message_media';

-- the mechanism, dispatching through the registry
CREATE OR REPLACE FUNCTION ventros.verify_webhook(provider text, config jsonb, headers jsonb, body bytea) RETURNS text
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

CREATE OR REPLACE FUNCTION ventros.webhook_channel(provider text, channel_id text) RETURNS ventros.channels
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

CREATE OR REPLACE FUNCTION ventros.accept_webhook(provider text, channel_id text, headers jsonb, body bytea)
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
BEGIN
    provider := lower(provider);
    SELECT * INTO p FROM ventros.inbound_providers x WHERE x.provider = accept_webhook.provider;
    ch := ventros.webhook_channel(provider, channel_id);
    IF p.provider IS NULL OR ch.id IS NULL THEN
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

    FOR it IN EXECUTE format('SELECT * FROM %s($1, $2, $3, $4)', p.split::regproc) USING ch.config, doc, body, hdrs
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

CREATE OR REPLACE FUNCTION ventros.webhook_challenge(provider text, channel_id text, mode text, verify_token text, challenge text)
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
    EXECUTE format('SELECT %s($1, $2, $3, $4)', p.challenge::regproc) INTO answer USING ch.config, mode, verify_token, challenge;
    RETURN answer;
END
$$;
COMMENT ON FUNCTION ventros.webhook_challenge(text, text, text, text, text) IS
    'A provider''s verification handshake (Meta''s): the challenge to echo when the provider''s challenge function accepts mode and verify token for the channel, else NULL (answer 403); P0002 for a provider not registered (answer 404)';

CREATE OR REPLACE FUNCTION ventros.inbox_process(r ventros.inbox, ch ventros.channels) RETURNS ventros.inbox_outcome
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

