-- Media enrichment: the text of a media message (an audio transcript, the
-- text in an image and its description, a document as markdown) obtained
-- from AI providers through the HTTP dispatcher, with a fallback chain per
-- media kind.  docs/ai.md; wire formats in design channels.md section 5.
--
-- One mechanism for every provider:
--   - a provider is a row of ventros.enrichment_providers (base URL, default
--     model, media size limit, prices, how its key is sent) plus what is
--     truly its own: the function building its request, and its answer
--     handler registered for the purpose enrichment.<provider> in
--     ventros.http_request_handlers (sql/98_enrichment_providers.sql);
--   - a route is data: ventros.enrichment_routes per media kind (audio ->
--     groq, openai; image -> gemini; document -> llamaparse;
--     profile_picture -> gemini), overridden per tenant by
--     ventros.enrichment_route_overrides;
--   - the chain (enrichment_advance) tries the route's providers in order:
--     a provider that is disabled, has no key or cannot take the media's
--     size is skipped; a failed attempt (error, timeout, 429, malformed
--     answer) moves to the next; when none is left the enrichment fails with
--     an error code and a retry time (ventros.retry_enrichments).
--
-- Keys: a tenant names one of its credentials (sql/68_credentials.sql) per
-- provider.  The key is never on a request row: the purpose's preparer
-- (ventros.enrichment_request_headers) decrypts it when the dispatcher claims
-- the attempt, and only the dispatcher sees the header.
--
-- Media: the request row names the message whose downloaded bytes
-- (ventros.message_media) are its body's file part (multipart) or its inline
-- base64 (body_form, media_id on ventros.http_requests); the
-- dispatcher reads them at claim time and streams them to libcurl, never
-- copying them into the queue.

-- ---- catalogue ------------------------------------------------------------------

CREATE TABLE ventros.enrichment_providers (
    provider       text PRIMARY KEY,
    kind           text    NOT NULL,
    base_url       text    NOT NULL,
    model          text,
    build_request  regprocedure NOT NULL,
    max_media_size bigint  NOT NULL,
    timeout_ms     integer NOT NULL DEFAULT 120000,
    max_attempts   integer NOT NULL DEFAULT 1,
    auth_header    text    NOT NULL DEFAULT 'Authorization',
    auth_scheme    text    DEFAULT 'Bearer',
    prices         jsonb   NOT NULL DEFAULT '{}',
    description    text,
    CONSTRAINT enrichment_providers_name CHECK (provider ~ '^[a-z][a-z0-9_]{0,30}$'),
    CONSTRAINT enrichment_providers_kind CHECK (kind IN ('transcription', 'vision', 'document')),
    CONSTRAINT enrichment_providers_url CHECK (base_url ~* '^https?://[^/?#]'),
    CONSTRAINT enrichment_providers_numbers CHECK (max_media_size > 0 AND timeout_ms BETWEEN 100 AND 600000
                                                   AND max_attempts BETWEEN 1 AND 10),
    CONSTRAINT enrichment_providers_prices CHECK (jsonb_typeof(prices) = 'object')
);
COMMENT ON TABLE ventros.enrichment_providers IS
    'AI providers of media enrichment: kind, default base URL and model, the function building a request (f(ventros.message_enrichments, jsonb config) RETURNS jsonb), media size limit, timeout, attempts, the key''s header, prices in USD (per_second, per_input_token, per_output_token, per_page)';
ALTER TABLE ventros.enrichment_providers ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.enrichment_providers FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_catalog_read ON ventros.enrichment_providers FOR SELECT USING (true);
GRANT SELECT ON ventros.enrichment_providers TO ventros_viewer;

CREATE TABLE ventros.enrichment_routes (
    media_kind text    NOT NULL,
    position   integer NOT NULL,
    provider   text    NOT NULL REFERENCES ventros.enrichment_providers (provider),
    PRIMARY KEY (media_kind, position),
    CONSTRAINT enrichment_routes_media_kind CHECK (media_kind IN ('audio', 'image', 'document', 'profile_picture', 'chat')),
    CONSTRAINT enrichment_routes_position CHECK (position BETWEEN 1 AND 10)
);
COMMENT ON TABLE ventros.enrichment_routes IS
    'The default route of each media kind (and of chat completions, chat): its providers in the order they are tried';
ALTER TABLE ventros.enrichment_routes ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.enrichment_routes FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_catalog_read ON ventros.enrichment_routes FOR SELECT USING (true);
GRANT SELECT ON ventros.enrichment_routes TO ventros_viewer;

CREATE FUNCTION ventros.register_enrichment_provider(provider text, kind text, base_url text, model text,
                                                    build_request regprocedure, max_media_size bigint,
                                                    prices jsonb DEFAULT '{}', auth_header text DEFAULT 'Authorization',
                                                    auth_scheme text DEFAULT 'Bearer', timeout_ms integer DEFAULT 120000,
                                                    description text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.require_function_shape(build_request, ARRAY['ventros.message_enrichments', 'jsonb']::regtype[], 'jsonb',
                                           'request builder');
    INSERT INTO ventros.enrichment_providers AS p (provider, kind, base_url, model, build_request, max_media_size, prices,
                                                   auth_header, auth_scheme, timeout_ms, description)
    VALUES (provider, kind, base_url, model, build_request, max_media_size, coalesce(prices, '{}'), auth_header,
            auth_scheme, timeout_ms, description)
    ON CONFLICT ON CONSTRAINT enrichment_providers_pkey DO UPDATE
       SET kind = EXCLUDED.kind, base_url = EXCLUDED.base_url, model = EXCLUDED.model,
           build_request = EXCLUDED.build_request, max_media_size = EXCLUDED.max_media_size, prices = EXCLUDED.prices,
           auth_header = EXCLUDED.auth_header, auth_scheme = EXCLUDED.auth_scheme, timeout_ms = EXCLUDED.timeout_ms,
           description = EXCLUDED.description;
END
$$;
COMMENT ON FUNCTION ventros.register_enrichment_provider(text, text, text, text, regprocedure, bigint, jsonb, text, text, integer, text) IS
    'Declares an enrichment provider (see ventros.enrichment_providers); its answer handler is registered for the purpose enrichment.<provider>';

-- ---- per tenant -----------------------------------------------------------------

CREATE TABLE ventros.enrichment_settings (
    tenant_id         text        NOT NULL DEFAULT ventros.current_tenant(),
    enabled           boolean     NOT NULL DEFAULT false,
    auto              boolean     NOT NULL DEFAULT true,
    monthly_cap       numeric,
    language          text,
    retry_delay       interval    NOT NULL DEFAULT interval '15 minutes',
    cap_reached_month date,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id),
    CONSTRAINT enrichment_settings_cap CHECK (monthly_cap >= 0),
    CONSTRAINT enrichment_settings_language CHECK (language ~ '^[a-z]{2}$'),
    CONSTRAINT enrichment_settings_retry_delay CHECK (retry_delay >= interval '1 second')
);
COMMENT ON TABLE ventros.enrichment_settings IS
    'A tenant''s enrichment: on or off (off by default), automatic on media download, the monthly spending cap in USD (NULL: none), the language hint, the delay before a failed enrichment is retried';
ALTER TABLE ventros.enrichment_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.enrichment_settings FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_select ON ventros.enrichment_settings FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.enrichment_settings TO ventros_viewer;

CREATE TABLE ventros.enrichment_provider_settings (
    tenant_id     text        NOT NULL DEFAULT ventros.current_tenant(),
    provider      text        NOT NULL REFERENCES ventros.enrichment_providers (provider),
    enabled       boolean     NOT NULL DEFAULT true,
    credential_id uuid,
    base_url      text,
    model         text,
    options       jsonb       NOT NULL DEFAULT '{}',
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, provider),
    FOREIGN KEY (tenant_id, credential_id) REFERENCES ventros.credentials (tenant_id, id),
    CONSTRAINT enrichment_provider_settings_url CHECK (base_url ~* '^https?://[^/?#]' AND length(base_url) <= 2048),
    CONSTRAINT enrichment_provider_settings_model CHECK (btrim(model) <> '' AND length(model) <= 200),
    CONSTRAINT enrichment_provider_settings_options CHECK (jsonb_typeof(options) = 'object')
);
COMMENT ON TABLE ventros.enrichment_provider_settings IS
    'A tenant''s use of a provider: enabled, the credential holding its key, base URL and model overrides (a self-hosted OpenAI-compatible server), options (timeout_ms, prompt, poll_ms, poll_max_ms, poll_timeout_s)';
ALTER TABLE ventros.enrichment_provider_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.enrichment_provider_settings FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_select ON ventros.enrichment_provider_settings FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.enrichment_provider_settings TO ventros_viewer;

CREATE TABLE ventros.enrichment_route_overrides (
    tenant_id  text   NOT NULL DEFAULT ventros.current_tenant(),
    media_kind text   NOT NULL,
    providers  text[] NOT NULL,
    PRIMARY KEY (tenant_id, media_kind),
    CONSTRAINT enrichment_route_overrides_media_kind CHECK (media_kind IN ('audio', 'image', 'document', 'profile_picture', 'chat')),
    CONSTRAINT enrichment_route_overrides_size CHECK (cardinality(providers) BETWEEN 1 AND 10)
);
COMMENT ON TABLE ventros.enrichment_route_overrides IS 'A tenant''s own route for a media kind, instead of ventros.enrichment_routes';
ALTER TABLE ventros.enrichment_route_overrides ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.enrichment_route_overrides FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_select ON ventros.enrichment_route_overrides FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.enrichment_route_overrides TO ventros_viewer;

-- The media an enrichment downloads itself (a contact's profile picture; a
-- message's media is ventros.message_media, the channels' download).
CREATE TABLE ventros.enrichment_media (
    tenant_id     text        NOT NULL,
    enrichment_id uuid        NOT NULL,
    status        text        NOT NULL DEFAULT 'requested',
    content_type  text,
    size          bigint,
    sha256        text,
    data          bytea,
    error         text,
    requested_at  timestamptz NOT NULL DEFAULT now(),
    downloaded_at timestamptz,
    PRIMARY KEY (tenant_id, enrichment_id),
    FOREIGN KEY (tenant_id, enrichment_id) REFERENCES ventros.message_enrichments (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT enrichment_media_status_known CHECK (status IN ('requested', 'downloaded', 'failed')),
    CONSTRAINT enrichment_media_downloaded_complete CHECK (status <> 'downloaded'
                                                           OR (data IS NOT NULL AND size = length(data) AND sha256 IS NOT NULL))
);
COMMENT ON TABLE ventros.enrichment_media IS
    'Media an enrichment downloads itself (a contact''s profile picture): requested, downloaded (bytes, type, size, sha256) or failed';
ALTER TABLE ventros.enrichment_media ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.enrichment_media FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_select ON ventros.enrichment_media FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.enrichment_media TO ventros_viewer;

SELECT ventros.register_event_type('contact.profile_picture_scored', 'A contact''s profile picture was scored 0-10 by a vision provider.');
SELECT ventros.register_event_type('message.enriched', 'A media message''s text was extracted by an AI provider (transcript, image text, document).');
SELECT ventros.register_event_type('message.enrichment_failed', 'Every provider of a media message''s route failed or was refused; the error code and the retry time say why and when.');
SELECT ventros.register_event_type('billing.ai_spending_cap_reached', 'The tenant''s monthly AI spending (enrichments and chat completions, one ledger) reached its cap: no new provider request this month.');

-- ---- configuration (tenant administrators) ------------------------------------------

CREATE FUNCTION ventros.configure_enrichment(enabled boolean DEFAULT NULL, monthly_cap numeric DEFAULT NULL,
                                            language text DEFAULT NULL, auto boolean DEFAULT NULL,
                                            retry_delay interval DEFAULT NULL, remove_cap boolean DEFAULT false)
RETURNS ventros.enrichment_settings
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    result ventros.enrichment_settings;
BEGIN
    -- SECURITY DEFINER: the settings are written by this function only
    IF monthly_cap < 0 THEN
        RAISE EXCEPTION 'monthly_cap must not be negative' USING ERRCODE = '22023';
    END IF;
    IF language !~ '^[a-z]{2}$' THEN
        RAISE EXCEPTION 'language must be an ISO-639-1 code (two lower-case letters)' USING ERRCODE = '22023';
    END IF;
    INSERT INTO ventros.enrichment_settings AS s (tenant_id, enabled, monthly_cap, language, auto, retry_delay)
    VALUES (tenant, coalesce(configure_enrichment.enabled, false), configure_enrichment.monthly_cap,
            configure_enrichment.language, coalesce(configure_enrichment.auto, true),
            coalesce(configure_enrichment.retry_delay, interval '15 minutes'))
    ON CONFLICT ON CONSTRAINT enrichment_settings_pkey DO UPDATE
       SET enabled = coalesce(configure_enrichment.enabled, s.enabled),
           monthly_cap = CASE WHEN remove_cap THEN NULL ELSE coalesce(configure_enrichment.monthly_cap, s.monthly_cap) END,
           cap_reached_month = CASE WHEN remove_cap OR configure_enrichment.monthly_cap IS NOT NULL THEN NULL
                                    ELSE s.cap_reached_month END,
           language = coalesce(configure_enrichment.language, s.language),
           auto = coalesce(configure_enrichment.auto, s.auto),
           retry_delay = coalesce(configure_enrichment.retry_delay, s.retry_delay),
           updated_at = now()
    RETURNING * INTO result;
    RETURN result;
EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION 'invalid enrichment settings: %', SQLERRM USING ERRCODE = '22023';
END
$$;
COMMENT ON FUNCTION ventros.configure_enrichment(boolean, numeric, text, boolean, interval, boolean) IS
    'Turns enrichment on or off for the tenant and sets its monthly spending cap in USD (remove_cap: none), language hint, automatic enrichment of downloaded media, retry delay; NULL keeps a value';

CREATE FUNCTION ventros.configure_enrichment_provider(provider text, credential_id uuid DEFAULT NULL, enabled boolean DEFAULT NULL,
                                                     base_url text DEFAULT NULL, model text DEFAULT NULL,
                                                     options jsonb DEFAULT NULL)
RETURNS ventros.enrichment_provider_settings
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    result ventros.enrichment_provider_settings;
BEGIN
    -- SECURITY DEFINER: the settings are written by this function only
    IF NOT EXISTS (SELECT 1 FROM ventros.enrichment_providers p WHERE p.provider = configure_enrichment_provider.provider) THEN
        RAISE EXCEPTION 'unknown enrichment provider "%"', left(provider, 64) USING ERRCODE = '22023',
            HINT = 'See ventros.enrichment_providers.';
    END IF;
    IF credential_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ventros.credentials c
                                                  WHERE c.tenant_id = tenant AND c.id = credential_id AND c.deleted_at IS NULL) THEN
        PERFORM ventros.not_found('credential', credential_id);
    END IF;
    IF options IS NOT NULL THEN
        PERFORM ventros.require_json(options, 'object', 'provider options');
    END IF;
    INSERT INTO ventros.enrichment_provider_settings AS s (tenant_id, provider, enabled, credential_id, base_url, model, options)
    VALUES (tenant, provider, coalesce(configure_enrichment_provider.enabled, true), credential_id, base_url, model,
            coalesce(options, '{}'))
    ON CONFLICT ON CONSTRAINT enrichment_provider_settings_pkey DO UPDATE
       SET enabled = coalesce(configure_enrichment_provider.enabled, s.enabled),
           credential_id = coalesce(configure_enrichment_provider.credential_id, s.credential_id),
           base_url = coalesce(configure_enrichment_provider.base_url, s.base_url),
           model = coalesce(configure_enrichment_provider.model, s.model),
           options = coalesce(configure_enrichment_provider.options, s.options),
           updated_at = now()
    RETURNING * INTO result;
    RETURN result;
EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION 'invalid provider settings: %', SQLERRM USING ERRCODE = '22023';
END
$$;
COMMENT ON FUNCTION ventros.configure_enrichment_provider(text, uuid, boolean, text, text, jsonb) IS
    'Sets a tenant''s use of an enrichment provider: the credential holding its key (never shown), enabled, base URL and model (a self-hosted OpenAI-compatible server), options; NULL keeps a value';

CREATE FUNCTION ventros.set_enrichment_route(media_kind text, providers text[])
RETURNS text[]
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    unknown text;
BEGIN
    -- SECURITY DEFINER: the overrides are written by this function only
    PERFORM ventros.require_value(media_kind, ARRAY['audio', 'image', 'document', 'profile_picture', 'chat'], 'media kind');
    IF providers IS NULL THEN
        DELETE FROM ventros.enrichment_route_overrides o WHERE o.tenant_id = tenant AND o.media_kind = set_enrichment_route.media_kind;
        RETURN ventros.enrichment_route(media_kind);
    END IF;
    SELECT x INTO unknown FROM unnest(providers) x
     WHERE NOT EXISTS (SELECT 1 FROM ventros.enrichment_providers p WHERE p.provider = x) LIMIT 1;
    IF unknown IS NOT NULL OR cardinality(providers) NOT BETWEEN 1 AND 10 THEN
        RAISE EXCEPTION 'a route is 1 to 10 known providers' USING ERRCODE = '22023',
            DETAIL = format('Unknown: %s.', coalesce(unknown, 'none'));
    END IF;
    -- chat providers answer the chat route only, and only they do
    SELECT x INTO unknown FROM unnest(providers) x JOIN ventros.enrichment_providers p ON p.provider = x
     WHERE (p.kind = 'chat') <> (set_enrichment_route.media_kind = 'chat') LIMIT 1;
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION 'provider "%" does not answer the % route', unknown, media_kind USING ERRCODE = '22023',
            HINT = 'The chat route takes chat providers (kind chat) only; media routes take the others.';
    END IF;
    INSERT INTO ventros.enrichment_route_overrides AS o (tenant_id, media_kind, providers)
    VALUES (tenant, media_kind, providers)
    ON CONFLICT ON CONSTRAINT enrichment_route_overrides_pkey DO UPDATE SET providers = EXCLUDED.providers;
    RETURN providers;
END
$$;
COMMENT ON FUNCTION ventros.set_enrichment_route(text, text[]) IS
    'Sets the tenant''s route of a media kind (audio, image, document, profile_picture; chat: the chat providers its completions fall back to after its own) to these providers in order; NULL: back to the default route';

CREATE FUNCTION ventros.enrichment_route(media_kind text) RETURNS text[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- plpgsql: its plans are kept (it runs for every enrichment)
    RETURN coalesce((SELECT o.providers FROM ventros.enrichment_route_overrides o
                      WHERE o.tenant_id = ventros.require_tenant() AND o.media_kind = enrichment_route.media_kind),
                    ARRAY(SELECT r.provider FROM ventros.enrichment_routes r
                           WHERE r.media_kind = enrichment_route.media_kind ORDER BY r.position));
END
$$;
COMMENT ON FUNCTION ventros.enrichment_route(text) IS 'The providers the acting tenant''s enrichments of a media kind try, in order';

-- The media kind of a message: audio/voice, image, document (PDF, Word,
-- spreadsheets, presentations, text), or NULL (video, stickers: not routed).
CREATE FUNCTION ventros.enrichment_media_kind(content_type text, mimetype text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- (no SET clause: small enough to be inlined; every name is qualified)
AS $$
    SELECT CASE
        WHEN content_type OPERATOR(pg_catalog.=) ANY (ARRAY['audio', 'voice']) THEN 'audio'
        WHEN content_type OPERATOR(pg_catalog.=) 'image' THEN 'image'
        WHEN content_type OPERATOR(pg_catalog.=) 'document' THEN 'document'
        WHEN content_type IS NULL AND mimetype OPERATOR(pg_catalog.~~) 'audio/%' THEN 'audio'
        WHEN content_type IS NULL AND mimetype OPERATOR(pg_catalog.~~) 'image/%' THEN 'image'
    END
$$;
COMMENT ON FUNCTION ventros.enrichment_media_kind(text, text) IS
    'The enrichment route of a message''s content type: audio (audio, voice), image, document; NULL when none';

-- (ventros.ai_spending, the one AI spending ledger, and the gate of every
-- provider request: sql/98_enrichment_spending.sql.)

-- (ventros.enrichment_status, the tenant's enrichment and AI spending: in
-- sql/98_intelligence.sql, after the completions' table.)
