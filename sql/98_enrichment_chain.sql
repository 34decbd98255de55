-- Media enrichment, the running part: the fallback chain that tries a
-- route's providers in order, the answers of the providers' requests, and
-- the retries of failed enrichments.  The tables, routes, settings and keys
-- it works on, and the mechanism as a whole: sql/98_enrichment.sql; the
-- providers: sql/98_enrichment_providers.sql.

-- ---- the chain -----------------------------------------------------------------------

-- What a provider's request builder gets: the tenant's settings over the
-- provider's defaults.
CREATE FUNCTION ventros.enrichment_config(p ventros.enrichment_providers, ps ventros.enrichment_provider_settings,
                                          s ventros.enrichment_settings)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(ps.options, '{}') || jsonb_strip_nulls(jsonb_build_object(
        'provider', p.provider, 'base_url', rtrim(coalesce(ps.base_url, p.base_url), '/'),
        'model', coalesce(ps.model, p.model), 'language', s.language))
$$;
COMMENT ON FUNCTION ventros.enrichment_config(ventros.enrichment_providers, ventros.enrichment_provider_settings, ventros.enrichment_settings) IS
    'The configuration a provider''s request builder gets: options, base_url, model, language';

-- The cost of an attempt from its usage and the provider's prices.
CREATE FUNCTION ventros.enrichment_cost(prices jsonb, usage jsonb) RETURNS numeric
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    total numeric := coalesce((prices->>'per_request')::numeric, 0);
    k text;
BEGIN
    FOREACH k IN ARRAY ARRAY['seconds:per_second', 'input_tokens:per_input_token', 'output_tokens:per_output_token',
                             'pages:per_page'] LOOP
        total := total + coalesce((usage->>split_part(k, ':', 1))::numeric * (prices->>split_part(k, ':', 2))::numeric, 0);
    END LOOP;
    RETURN round(total, 8);
END
$$;
COMMENT ON FUNCTION ventros.enrichment_cost(jsonb, jsonb) IS 'USD: usage (seconds, input_tokens, output_tokens, pages) times prices';

-- Ends an enrichment that cannot go on: failed with a code, why, and when to
-- try again; the message says so (message.enrichment_failed).
CREATE FUNCTION ventros.enrichment_fail(e ventros.message_enrichments, code text, why text, retry_at timestamptz)
RETURNS ventros.message_enrichments
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.message_enrichments;
BEGIN
    -- (failed is reached through processing, the aggregate's state machine)
    IF e.status = 'pending' THEN
        UPDATE ventros.message_enrichments x SET status = 'processing', version = x.version
         WHERE x.tenant_id = e.tenant_id AND x.id = e.id;
    END IF;
    UPDATE ventros.message_enrichments x
       SET status = 'failed', error_code = code, error = left(why, 2000), retry_at = enrichment_fail.retry_at,
           request_id = NULL, processed_at = now(), version = x.version,
           processing_time_ms = (extract(epoch FROM now() - x.updated_at) * 1000)::integer
     WHERE x.tenant_id = e.tenant_id AND x.id = e.id
    RETURNING * INTO result;
    IF result.message_id IS NOT NULL THEN     -- (a profile picture: message_enrichment.failed says it)
        PERFORM ventros.emit('message.enrichment_failed', 'message', result.message_id,
            jsonb_build_object('enrichment_id', result.id, 'kind', result.kind, 'error_code', code, 'error', result.error,
                               'retry_at', result.retry_at, 'attempts', result.attempts));
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.enrichment_fail(ventros.message_enrichments, text, text, timestamptz) IS
    'Fails an enrichment with an error code, a message and a retry time; emits message.enrichment_failed';

-- One entry of an enrichment's trail: the current attempt's outcome.
CREATE FUNCTION ventros.enrichment_attempt(e ventros.message_enrichments, outcome text, detail text) RETURNS jsonb
LANGUAGE sql STABLE
-- (no SET clause: small enough to be inlined; every name is qualified)
AS $$
    SELECT pg_catalog.jsonb_build_array(pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
        'provider', e.provider, 'request_id', e.request_id, 'outcome', outcome, 'error', pg_catalog.left(detail, 500),
        'at', pg_catalog.now())))
$$;
COMMENT ON FUNCTION ventros.enrichment_attempt(ventros.message_enrichments, text, text) IS
    'An entry of an enrichment''s trail (a one-element array): provider, request, outcome, error, time';

-- Records the outcome of the current attempt in the enrichment's trail.
CREATE FUNCTION ventros.enrichment_note(e ventros.message_enrichments, outcome text, detail text)
RETURNS ventros.message_enrichments
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE ventros.message_enrichments x
       SET attempts = x.attempts || ventros.enrichment_attempt(e, outcome, detail), version = x.version
     WHERE x.tenant_id = e.tenant_id AND x.id = e.id
    RETURNING * INTO e;
    RETURN e;
END
$$;
COMMENT ON FUNCTION ventros.enrichment_note(ventros.message_enrichments, text, text) IS
    'Appends an attempt (provider, request, outcome, error) to an enrichment''s trail';

-- Queues one provider request for an enrichment: the builder's
-- {method, url, headers, body, form (multipart parts), inline_base64 (the
-- marker in body replaced by the media's base64), media (bool)}.  The key is
-- not in it: the preparer adds it per attempt.
CREATE FUNCTION ventros.enrichment_enqueue(e ventros.message_enrichments, p ventros.enrichment_providers, cfg jsonb, req jsonb,
                                           not_before timestamptz DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id uuid;
    form jsonb;
BEGIN
    IF req IS NULL OR coalesce(req->>'url', '') !~* '^https?://[^/?#]' THEN
        RAISE EXCEPTION 'the request builder of % gave no URL', p.provider USING ERRCODE = '22023';
    END IF;
    form := CASE WHEN req ? 'form' THEN jsonb_build_object('multipart', req->'form')
                 WHEN req ? 'inline_base64' THEN jsonb_build_object('inline_base64', req->>'inline_base64') END;
    INSERT INTO ventros.http_requests AS r (tenant_id, method, url, headers, body, purpose, correlation_id, max_attempts,
                                            timeout_ms, next_attempt_at, body_form, media_id)
    VALUES (e.tenant_id, coalesce(req->>'method', 'POST'), req->>'url', coalesce(req->'headers', '{}'),
            CASE WHEN req ? 'body' THEN convert_to(CASE jsonb_typeof(req->'body') WHEN 'string' THEN req->>'body'
                                                        ELSE (req->'body')::text END, 'UTF8') END,
            'enrichment.' || p.provider, e.id, p.max_attempts,
            coalesce((cfg->>'timeout_ms')::integer, p.timeout_ms), coalesce(not_before, now()), form,
            CASE WHEN form IS NOT NULL THEN coalesce(e.message_id, e.id) END)
    RETURNING r.id INTO new_id;
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION ventros.enrichment_enqueue(ventros.message_enrichments, ventros.enrichment_providers, jsonb, jsonb, timestamptz) IS
    'Queues a provider request built for an enrichment (purpose enrichment.<provider>, the media by reference)';

-- enrichment_advance: the next provider of the route after the current one
-- gets the enrichment; when none is left it fails.  Runs as the tenant.
CREATE FUNCTION ventros.enrichment_advance(enrichment_id uuid)
RETURNS ventros.message_enrichments
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    e ventros.message_enrichments;
    mm ventros.message_media;
BEGIN
    SELECT * INTO e FROM ventros.message_enrichments x WHERE x.tenant_id = tenant AND x.id = enrichment_id FOR UPDATE;
    -- (not the bytes: only the dispatcher reads them)
    IF e.message_id IS NOT NULL THEN
        SELECT x.status, x.size, x.error INTO mm.status, mm.size, mm.error
          FROM ventros.message_media x WHERE x.tenant_id = tenant AND x.message_id = e.message_id;
    ELSE
        SELECT x.status, x.size, x.error INTO mm.status, mm.size, mm.error
          FROM ventros.enrichment_media x WHERE x.tenant_id = tenant AND x.enrichment_id = e.id;
    END IF;
    RETURN ventros.enrichment_advance_from(e, mm);
END
$$;
COMMENT ON FUNCTION ventros.enrichment_advance(uuid) IS
    'Gives an enrichment to the next provider of its route that is enabled, has a key and takes the media''s size, unless the AI gate refuses (spending cap, plan limit); fails it when none is left';

-- The same, for an enrichment its caller holds locked with its media's
-- status, size and error (mm; not the bytes: only the dispatcher reads them):
-- enrichment_start has read both, so they are not read again.
CREATE FUNCTION ventros.enrichment_advance_from(e ventros.message_enrichments, mm ventros.message_media)
RETURNS ventros.message_enrichments
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := e.tenant_id;
    s ventros.enrichment_settings;
    p ventros.enrichment_providers;
    ps ventros.enrichment_provider_settings;
    pos integer;
    cfg jsonb;
    req jsonb;
    rid uuid;
    tried boolean;
    too_large boolean := false;
    retry_after timestamptz;
    refusal record;
BEGIN
    SELECT * INTO s FROM ventros.enrichment_settings x WHERE x.tenant_id = tenant;
    IF NOT coalesce(s.enabled, false) THEN
        RETURN ventros.enrichment_fail(e, 'disabled', 'enrichment is disabled for this tenant', NULL);
    END IF;
    IF mm.status IS DISTINCT FROM 'downloaded' THEN
        RETURN ventros.enrichment_fail(e, 'no_media', coalesce('the media download failed: ' || mm.error,
                                                               'the media is not downloaded'), NULL);
    END IF;
    tried := EXISTS (SELECT 1 FROM jsonb_array_elements(e.attempts) a WHERE a->>'outcome' = 'failed');
    pos := coalesce(e.route_position, 0);
    LOOP
        pos := pos + 1;
        EXIT WHEN pos > coalesce(cardinality(e.route), 0);
        SELECT * INTO p FROM ventros.enrichment_providers x WHERE x.provider = e.route[pos];
        SELECT * INTO ps FROM ventros.enrichment_provider_settings x WHERE x.tenant_id = tenant AND x.provider = p.provider;
        e.provider := p.provider;
        e.request_id := NULL;
        IF p.provider IS NULL OR NOT coalesce(ps.enabled, false) OR ps.credential_id IS NULL THEN
            e := ventros.enrichment_note(e, 'skipped', 'not configured for this tenant (no key, or disabled)');
            CONTINUE;
        END IF;
        IF mm.size > p.max_media_size THEN
            too_large := true;
            e := ventros.enrichment_note(e, 'skipped', format('the media has %s bytes; %s takes at most %s', mm.size,
                                                              p.provider, p.max_media_size));
            CONTINUE;
        END IF;
        refusal := ventros.ai_request_refusal('enrichments', 'message_enrichment', e.id);
        IF refusal.error_code IS NOT NULL THEN
            RETURN ventros.enrichment_fail(e, refusal.error_code, refusal.error, refusal.retry_at);
        END IF;
        cfg := ventros.enrichment_config(p, ps, s);
        EXECUTE format('SELECT %s($1, $2)', p.build_request::regproc) INTO req USING e, cfg;
        rid := ventros.enrichment_enqueue(e, p, cfg, req);
        UPDATE ventros.message_enrichments x
           SET status = 'processing', provider = p.provider, route_position = pos, request_id = rid,
               model = cfg->>'model', job_id = NULL, error = NULL, error_code = NULL, retry_at = NULL,
               version = x.version
         WHERE x.tenant_id = tenant AND x.id = e.id
        RETURNING * INTO e;
        RETURN e;
    END LOOP;
    IF tried THEN
        SELECT max((a->>'retry_after')::timestamptz) INTO retry_after FROM jsonb_array_elements(e.attempts) a;
        RETURN ventros.enrichment_fail(e, 'providers_failed',
            format('every provider of the route failed (%s)',
                   (SELECT string_agg(format('%s: %s', a->>'provider', a->>'error'), '; ')
                      FROM jsonb_array_elements(e.attempts) a WHERE a->>'outcome' = 'failed')),
            greatest(now() + s.retry_delay, retry_after));
    ELSIF too_large THEN
        RETURN ventros.enrichment_fail(e, 'too_large',
            format('the media (%s bytes) is larger than every provider of the route takes', mm.size), NULL);
    END IF;
    RETURN ventros.enrichment_fail(e, 'no_provider',
        format('no provider of the route (%s) is configured for this tenant', array_to_string(e.route, ', ')), NULL);
END
$$;
COMMENT ON FUNCTION ventros.enrichment_advance_from(ventros.message_enrichments, ventros.message_media) IS
    'enrichment_advance for an enrichment its caller holds locked, with its media''s status, size and error';

-- A profile picture's download (purpose enrichment.picture): the contact's
-- picture URL, its bytes kept in ventros.enrichment_media.
CREATE FUNCTION ventros.enrichment_download_picture(e ventros.message_enrichments) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO ventros.enrichment_media AS em (tenant_id, enrichment_id) VALUES (e.tenant_id, e.id)
    ON CONFLICT ON CONSTRAINT enrichment_media_pkey DO UPDATE
       SET status = 'requested', error = NULL, data = NULL, size = NULL, sha256 = NULL, requested_at = now();
    RETURN ventros.enqueue_http_request(e.media_url, 'GET', '{}', NULL, 'enrichment.picture', e.id,
                                        max_response_size => ventros.setting_number('ventros.media_max_size')::integer);
END
$$;
COMMENT ON FUNCTION ventros.enrichment_download_picture(ventros.message_enrichments) IS
    'Queues the download of a profile picture enrichment''s image (purpose enrichment.picture) into ventros.enrichment_media';

CREATE FUNCTION ventros.enrichment_picture_downloaded(r ventros.http_requests) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    bytes bytea := coalesce(r.response_body, '');
    why text;
    e ventros.message_enrichments;
BEGIN
    why := CASE WHEN r.status <> 'succeeded' THEN 'the picture download failed: ' || ventros.enrichment_error_text(r)
                WHEN r.response_truncated THEN 'the picture is larger than ventros.media_max_size' END;
    UPDATE ventros.enrichment_media x
       SET status = CASE WHEN why IS NULL THEN 'downloaded' ELSE 'failed' END, error = why,
           data = CASE WHEN why IS NULL THEN bytes END, size = CASE WHEN why IS NULL THEN length(bytes) END,
           sha256 = CASE WHEN why IS NULL THEN encode(sha256(bytes), 'hex') END,
           content_type = nullif(split_part(r.response_headers->>'content-type', ';', 1), ''),
           downloaded_at = CASE WHEN why IS NULL THEN now() END
     WHERE x.tenant_id = r.tenant_id AND x.enrichment_id = r.correlation_id;
    SELECT * INTO e FROM ventros.message_enrichments x
     WHERE x.tenant_id = r.tenant_id AND x.id = r.correlation_id AND x.status = 'pending' FOR UPDATE;
    IF FOUND THEN
        PERFORM ventros.enrichment_advance(e.id);
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.enrichment_picture_downloaded(ventros.http_requests) IS
    'Completion handler of enrichment.picture: keeps the picture (or why it failed) and moves the enrichment to its first provider';
SELECT ventros.register_http_request_handler('enrichment.picture', 'ventros.enrichment_picture_downloaded(ventros.http_requests)');

-- Starts (or restarts) the chain of an enrichment from the route's first provider.
CREATE FUNCTION ventros.enrichment_start(e ventros.message_enrichments)
RETURNS ventros.message_enrichments
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mm ventros.message_media;
BEGIN
    -- a new enrichment (pending, nothing tried) is at the start already
    IF NOT (e.status = 'pending' AND e.route_position = 0 AND e.attempts = '[]') THEN
        UPDATE ventros.message_enrichments x
           SET status = 'pending', route = ventros.enrichment_route(ventros.enrichment_media_kind(x.content_type, NULL)),
               route_position = 0, request_id = NULL, attempts = '[]', error = NULL, error_code = NULL, retry_at = NULL,
               version = x.version
         WHERE x.tenant_id = e.tenant_id AND x.id = e.id
        RETURNING * INTO e;
    END IF;
    IF e.message_id IS NULL THEN
        SELECT x.status, x.size, x.error INTO mm.status, mm.size, mm.error
          FROM ventros.enrichment_media x WHERE x.tenant_id = e.tenant_id AND x.enrichment_id = e.id;
        IF mm.status IS DISTINCT FROM 'downloaded' THEN
            PERFORM ventros.enrichment_download_picture(e);
            RETURN e;       -- the download's handler moves it on
        END IF;
        RETURN ventros.enrichment_advance_from(e, mm);
    END IF;
    SELECT x.status, x.size, x.error INTO mm.status, mm.size, mm.error
      FROM ventros.message_media x WHERE x.tenant_id = e.tenant_id AND x.message_id = e.message_id;
    IF NOT FOUND THEN
        PERFORM ventros.request_media_download(e.message_id);
        RETURN e;       -- the download's end moves it on (trigger below)
    ELSIF mm.status = 'requested' THEN
        RETURN e;
    END IF;
    -- (e is locked: enrichment_of, or the reset above)
    RETURN ventros.enrichment_advance_from(e, mm);
END
$$;
COMMENT ON FUNCTION ventros.enrichment_start(ventros.message_enrichments) IS
    'Puts an enrichment back at the start of its route; it goes to the first provider once its media is downloaded';

-- The enrichment of a message: found, or created pending with its route.
CREATE FUNCTION ventros.enrichment_of(m ventros.messages) RETURNS ventros.message_enrichments
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e ventros.message_enrichments;
    media_kind text := ventros.enrichment_media_kind(m.content_type, m.media_mimetype);
    route text[];
BEGIN
    SELECT * INTO e FROM ventros.message_enrichments x
     WHERE x.tenant_id = m.tenant_id AND x.message_id = m.id AND x.kind IS NOT NULL AND x.deleted_at IS NULL
     FOR UPDATE;
    IF FOUND THEN
        RETURN e;
    END IF;
    route := ventros.enrichment_route(media_kind);
    INSERT INTO ventros.message_enrichments (tenant_id, message_id, contact_id, content_type, provider, media_url, kind, route,
                                             route_position)
    VALUES (m.tenant_id, m.id, m.contact_id, m.content_type, coalesce(route[1], 'openai'), m.media_url,
            CASE media_kind WHEN 'audio' THEN 'transcription' WHEN 'image' THEN 'vision' ELSE 'document' END, route, 0)
    RETURNING * INTO e;
    RETURN e;
END
$$;
COMMENT ON FUNCTION ventros.enrichment_of(ventros.messages) IS 'A media message''s enrichment, created pending with its route when it has none';

CREATE FUNCTION ventros.enrich_message(message_id uuid) RETURNS ventros.message_enrichments
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    m ventros.messages;
    e ventros.message_enrichments;
BEGIN
    -- SECURITY DEFINER: queues provider requests (tenant administrators only
    -- read the queue) for the acting tenant's message
    SELECT * INTO m FROM ventros.messages x WHERE x.tenant_id = tenant AND x.id = message_id AND x.deleted_at IS NULL;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('message', message_id);
    END IF;
    IF ventros.enrichment_media_kind(m.content_type, m.media_mimetype) IS NULL THEN
        RAISE EXCEPTION 'message % has no media to enrich', message_id USING ERRCODE = '22023',
            DETAIL = format('Its content type is %s; audio, voice, image and document messages are enriched.', m.content_type);
    END IF;
    IF NOT coalesce((SELECT s.enabled FROM ventros.enrichment_settings s WHERE s.tenant_id = tenant), false) THEN
        RAISE EXCEPTION 'enrichment is disabled for this tenant' USING ERRCODE = '55000',
            HINT = 'A tenant administrator turns it on with ventros.configure_enrichment(enabled => true).';
    END IF;
    PERFORM ventros.check_plan_limit('enrichments', 1);     -- VN020 (sql/65_usage_metering.sql)
    e := ventros.enrichment_of(m);
    IF e.status IN ('processing') THEN
        RETURN e;
    END IF;
    RETURN ventros.enrichment_start(e);
END
$$;
COMMENT ON FUNCTION ventros.enrich_message(uuid) IS
    'Enriches a media message (audio: transcript; image: text and description; document: markdown) through its route''s providers, again when it failed or completed; 55000 when enrichment is off; emits message.enriched or message.enrichment_failed when done';

CREATE FUNCTION ventros.enrich_profile_picture(contact_id uuid) RETURNS ventros.message_enrichments
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    c ventros.contacts;
    e ventros.message_enrichments;
    route text[];
BEGIN
    -- SECURITY DEFINER: queues provider requests for the acting tenant's contact
    SELECT * INTO c FROM ventros.contacts x WHERE x.tenant_id = tenant AND x.id = contact_id AND x.deleted_at IS NULL;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('contact', contact_id);
    END IF;
    IF c.profile_picture_url !~* '^https?://' THEN
        RAISE EXCEPTION 'contact % has no profile picture URL', contact_id USING ERRCODE = '22023';
    END IF;
    PERFORM ventros.check_plan_limit('enrichments', 1);     -- VN020 (sql/65_usage_metering.sql)
    IF NOT coalesce((SELECT s.enabled FROM ventros.enrichment_settings s WHERE s.tenant_id = tenant), false) THEN
        RAISE EXCEPTION 'enrichment is disabled for this tenant' USING ERRCODE = '55000',
            HINT = 'A tenant administrator turns it on with ventros.configure_enrichment(enabled => true).';
    END IF;
    SELECT * INTO e FROM ventros.message_enrichments x
     WHERE x.tenant_id = tenant AND x.contact_id = c.id AND x.context = 'profile_picture' AND x.kind IS NOT NULL
       AND x.deleted_at IS NULL
     FOR UPDATE;
    IF FOUND AND e.status = 'processing' THEN
        RETURN e;
    ELSIF FOUND THEN
        UPDATE ventros.message_enrichments x SET media_url = c.profile_picture_url, version = x.version
         WHERE x.tenant_id = tenant AND x.id = e.id AND x.media_url IS DISTINCT FROM c.profile_picture_url;
        SELECT * INTO e FROM ventros.message_enrichments x WHERE x.tenant_id = tenant AND x.id = e.id;
        DELETE FROM ventros.enrichment_media em WHERE em.tenant_id = tenant AND em.enrichment_id = e.id;
    ELSE
        route := ventros.enrichment_route('profile_picture');
        INSERT INTO ventros.message_enrichments (tenant_id, contact_id, content_type, provider, media_url, context, kind, route,
                                                 route_position)
        VALUES (tenant, c.id, 'image', coalesce(route[1], 'gemini'), c.profile_picture_url, 'profile_picture',
                'profile_score', route, 0)
        RETURNING * INTO e;
    END IF;
    RETURN ventros.enrichment_start(e);
END
$$;
COMMENT ON FUNCTION ventros.enrich_profile_picture(uuid) IS
    'Scores a contact''s profile picture 0-10 (metadata.score) through the profile_picture route: downloads it, then asks the vision provider; 55000 when enrichment is off; emits contact.profile_picture_scored';

-- A media download ended: the enrichment waiting for it goes on, or a new
-- one starts when the tenant enriches automatically.
CREATE FUNCTION ventros.enrichment_on_media() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m ventros.messages;
    e ventros.message_enrichments;
    previous text := current_setting('ventros.tenant', true);
BEGIN
    IF NEW.status = OLD.status OR NEW.status = 'requested' THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('ventros.tenant', NEW.tenant_id, true);
    SELECT * INTO e FROM ventros.message_enrichments x
     WHERE x.tenant_id = NEW.tenant_id AND x.message_id = NEW.message_id AND x.kind IS NOT NULL
       AND x.status = 'pending' AND x.deleted_at IS NULL;
    IF NOT FOUND AND NEW.status = 'downloaded'
       AND EXISTS (SELECT 1 FROM ventros.enrichment_settings s WHERE s.tenant_id = NEW.tenant_id AND s.enabled AND s.auto) THEN
        SELECT * INTO m FROM ventros.messages x WHERE x.tenant_id = NEW.tenant_id AND x.id = NEW.message_id;
        IF ventros.enrichment_media_kind(m.content_type, m.media_mimetype) IS NOT NULL AND NOT m.from_me
           AND NOT EXISTS (SELECT 1 FROM ventros.message_enrichments x
                            WHERE x.tenant_id = m.tenant_id AND x.message_id = m.id AND x.kind IS NOT NULL AND x.deleted_at IS NULL) THEN
            e := ventros.enrichment_of(m);
        END IF;
    END IF;
    IF e.id IS NOT NULL THEN
        PERFORM ventros.enrichment_advance(e.id);
    END IF;
    PERFORM set_config('ventros.tenant', coalesce(previous, ''), true);
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.enrichment_on_media() IS
    'Trigger: when a message''s media download ends, the enrichment waiting for it goes to its first provider (or fails, no_media); with automatic enrichment on, a new inbound media message gets one';
CREATE TRIGGER ventros_enrichment_on_media AFTER UPDATE OF status ON ventros.message_media
    FOR EACH ROW EXECUTE FUNCTION ventros.enrichment_on_media();

-- ---- answers ----------------------------------------------------------------------

-- The enrichment a finished request served, locked, while that request is
-- still its current attempt (an answer to an older attempt is ignored).
CREATE FUNCTION ventros.enrichment_for_request(r ventros.http_requests) RETURNS ventros.message_enrichments
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e ventros.message_enrichments;
BEGIN
    SELECT * INTO e FROM ventros.message_enrichments x
     WHERE x.tenant_id = r.tenant_id AND x.id = r.correlation_id AND x.request_id = r.id AND x.status = 'processing'
     FOR UPDATE;
    RETURN e;
END
$$;
COMMENT ON FUNCTION ventros.enrichment_for_request(ventros.http_requests) IS
    'The processing enrichment whose current attempt is this request (NULL for an older attempt)';

-- Why a provider request failed: the provider's error message when it gave
-- one (OpenAI, Groq, Gemini and LlamaParse shapes), else the dispatcher's.
CREATE FUNCTION ventros.enrichment_error_text(r ventros.http_requests) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT left(CASE WHEN r.response_status IS NULL THEN coalesce(r.last_error, 'request ' || r.status)
                     ELSE format('HTTP %s%s', r.response_status,
                                 ': ' || coalesce(a->'error'->>'message', a->>'detail', a->>'error', a->>'message'))
                END, 1000)
      FROM (SELECT ventros.json_body(r.response_body) AS a) x
$$;
COMMENT ON FUNCTION ventros.enrichment_error_text(ventros.http_requests) IS
    'A failed provider request as text: HTTP status and the provider''s message, or the dispatcher''s error';

-- A failed attempt: noted (with a 429's Retry-After), then the next provider.
CREATE FUNCTION ventros.enrichment_attempt_failed(r ventros.http_requests, why text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e ventros.message_enrichments := ventros.enrichment_for_request(r);
    after_s text := r.response_headers->>'retry-after';
BEGIN
    IF e.id IS NULL THEN
        RETURN;
    END IF;
    e := ventros.enrichment_note(e, 'failed', coalesce(why, ventros.enrichment_error_text(r)));
    IF after_s ~ '^[0-9]{1,7}$' THEN
        UPDATE ventros.message_enrichments x
           SET attempts = jsonb_set(x.attempts, ARRAY[(jsonb_array_length(x.attempts) - 1)::text, 'retry_after'],
                                    to_jsonb(now() + make_interval(secs => after_s::integer))),
               version = x.version
         WHERE x.tenant_id = e.tenant_id AND x.id = e.id;
    END IF;
    PERFORM ventros.enrichment_advance(e.id);
END
$$;
COMMENT ON FUNCTION ventros.enrichment_attempt_failed(ventros.http_requests, text) IS
    'Notes a failed provider attempt (why, Retry-After) and moves the enrichment to the next provider of its route';

-- A result: {text, language, confidence, usage, model, metadata}.
CREATE FUNCTION ventros.enrichment_attempt_succeeded(r ventros.http_requests, result jsonb) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e ventros.message_enrichments;
BEGIN
    -- one statement (the dispatcher runs this for every answer): only while
    -- this request is the enrichment's current attempt
    UPDATE ventros.message_enrichments x
       SET status = 'completed', extracted_text = result->>'text', language = left(result->>'language', 35),
           attempts = x.attempts || jsonb_build_array(jsonb_build_object('provider', x.provider, 'request_id', r.id,
                                                                         'outcome', 'succeeded', 'at', now())),
           confidence = (result->>'confidence')::numeric, usage = result->'usage',
           cost = ventros.enrichment_cost((SELECT p.prices FROM ventros.enrichment_providers p WHERE p.provider = x.provider),
                                          coalesce(result->'usage', '{}')),
           model = coalesce(result->>'model', x.model),
           metadata = coalesce(x.metadata, '{}') || coalesce(result->'metadata', '{}'),
           request_id = NULL, processed_at = now(), version = x.version,
           processing_time_ms = (extract(epoch FROM now() - x.created_at) * 1000)::integer
     WHERE x.tenant_id = r.tenant_id AND x.id = r.correlation_id AND x.request_id = r.id AND x.status = 'processing'
    RETURNING * INTO e;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    -- the tenant's usage: one enrichment and the provider's tokens (sql/65_usage_metering.sql)
    PERFORM ventros.meter_usage(ARRAY['enrichments', 'ai_tokens'],
        ARRAY[1, (coalesce((e.usage->>'input_tokens')::numeric, 0) + coalesce((e.usage->>'output_tokens')::numeric, 0))::bigint]);
    IF e.message_id IS NULL THEN
        PERFORM ventros.emit('contact.profile_picture_scored', 'contact', e.contact_id,
            jsonb_strip_nulls(jsonb_build_object('enrichment_id', e.id, 'score', e.metadata->'score', 'provider', e.provider,
                                                 'model', e.model, 'text', left(e.extracted_text, 500), 'cost', e.cost)));
        RETURN;
    END IF;
    PERFORM ventros.emit('message.enriched', 'message', e.message_id,
        jsonb_strip_nulls(jsonb_build_object('enrichment_id', e.id, 'kind', e.kind, 'provider', e.provider, 'model', e.model,
                           'language', e.language, 'confidence', e.confidence, 'usage', e.usage, 'cost', e.cost,
                           'text', left(e.extracted_text, 2000), 'text_length', length(e.extracted_text))));
END
$$;
COMMENT ON FUNCTION ventros.enrichment_attempt_succeeded(ventros.http_requests, jsonb) IS
    'Completes an enrichment with a provider''s result (text, language, confidence, usage, model) and its cost; emits message.enriched';

-- The key of a provider attempt, added when the dispatcher claims it (the
-- preparer of every enrichment.<provider> purpose).
CREATE FUNCTION ventros.enrichment_request_headers(r ventros.http_requests) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p ventros.enrichment_providers;
    cred uuid;
    secret text;
    slot text;
BEGIN
    SELECT x.provider, x.auth_header, x.auth_scheme, ps.credential_id INTO p.provider, p.auth_header, p.auth_scheme, cred
      FROM ventros.enrichment_providers x
      JOIN ventros.enrichment_provider_settings ps ON ps.tenant_id = r.tenant_id AND ps.provider = x.provider
     WHERE x.provider = substr(r.purpose, length('enrichment.') + 1);
    IF cred IS NULL THEN
        RETURN r.headers;
    END IF;
    -- A claim prepares many attempts in one transaction: the key is
    -- decrypted (and its use recorded, credential.used) once per credential
    -- and transaction, and kept only until that transaction ends (is_local),
    -- in the dispatcher's own backend.
    slot := 'ventros_enrichment_keys.k' || replace(cred::text, '-', '');   -- (ventros.* is reserved)
    secret := nullif(current_setting(slot, true), '');
    IF secret IS NULL THEN
        secret := (ventros.reveal_credential(cred)).value;
        PERFORM set_config(slot, secret, true);
    END IF;
    RETURN r.headers || jsonb_build_object(p.auth_header, concat_ws(' ', p.auth_scheme, secret));
END
$$;
COMMENT ON FUNCTION ventros.enrichment_request_headers(ventros.http_requests) IS
    'Preparer of enrichment requests: the stored headers plus the provider''s key from the tenant''s credential (never stored on the request)';

-- ---- retries --------------------------------------------------------------------------

-- Failed enrichments whose retry time passed start again (per tenant, from
-- the scheduled job).
CREATE FUNCTION ventros.retry_enrichments(now timestamptz DEFAULT now(), batch_size integer DEFAULT 100)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    e ventros.message_enrichments;
    n integer := 0;
BEGIN
    -- SECURITY DEFINER: queues provider requests for the acting tenant only
    IF NOT coalesce((SELECT s.enabled FROM ventros.enrichment_settings s WHERE s.tenant_id = tenant), false) THEN
        RETURN 0;
    END IF;
    FOR e IN SELECT * FROM ventros.message_enrichments x
              WHERE x.tenant_id = tenant AND x.status = 'failed' AND x.retry_at <= retry_enrichments.now
                AND x.kind IS NOT NULL AND x.deleted_at IS NULL
              ORDER BY x.retry_at LIMIT batch_size FOR UPDATE SKIP LOCKED
    LOOP
        PERFORM ventros.enrichment_start(e);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.retry_enrichments(timestamptz, integer) IS
    'Starts again the acting tenant''s failed enrichments whose retry time passed (at most batch_size); returns how many';

INSERT INTO ventros.scheduled_jobs (name, schedule, command, purpose) VALUES
    ('ventros-retry-enrichments', '* * * * *',
     'SELECT count(*) FROM ventros.run_per_tenant(''ventros-retry-enrichments'', ''SELECT pg_catalog.to_jsonb(ventros.retry_enrichments($1))'')',
     'failed media enrichments whose retry time passed');

GRANT EXECUTE ON FUNCTION ventros.enrichment_route(text),
    ventros.enrichment_media_kind(text, text) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.enrich_message(uuid), ventros.enrich_profile_picture(uuid) TO ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.configure_enrichment(boolean, numeric, text, boolean, interval, boolean),
    ventros.configure_enrichment_provider(text, uuid, boolean, text, text, jsonb),
    ventros.set_enrichment_route(text, text[]), ventros.retry_enrichments(timestamptz, integer) TO ventros_admin;
