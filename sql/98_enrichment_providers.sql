-- The enrichment providers (design channels.md 5.2-5.4, docs/ai.md): for
-- each, its declaration, the function building its request and its answer
-- handler.  Keys and caps are sql/98_enrichment.sql's; the chain and its events
-- sql/98_enrichment_chain.sql's.
--
--   groq, openai  Whisper transcriptions (the OpenAI API; a self-hosted
--                 OpenAI-compatible server is the openai provider with its
--                 own base_url and model): multipart, the file part streamed
--                 from the downloaded media, response_format verbose_json;
--   gemini        generateContent with the image inline as base64;
--   llamaparse    upload (multipart) -> poll the job -> fetch the markdown.

-- The marker a JSON body carries where the dispatcher writes the media's
-- base64 (src/http_worker.c, body_form.inline_base64).
CREATE FUNCTION ventros.enrichment_media_marker() RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT '@@ventros-media-base64@@'::text $$;
COMMENT ON FUNCTION ventros.enrichment_media_marker() IS
    'The placeholder of a JSON request body that the dispatcher replaces with the base64 of the request''s media';

-- The downloaded media's content type (type/subtype, without parameters).
CREATE FUNCTION ventros.enrichment_media_type(e ventros.message_enrichments) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF e.message_id IS NULL THEN
        RETURN coalesce((SELECT nullif(btrim(split_part(em.content_type, ';', 1)), '') FROM ventros.enrichment_media em
                          WHERE em.tenant_id = e.tenant_id AND em.enrichment_id = e.id), 'image/jpeg');
    END IF;
    RETURN (SELECT coalesce(nullif(btrim(split_part(coalesce(mm.content_type, m.media_mimetype), ';', 1)), ''),
                            'application/octet-stream')
              FROM ventros.messages m
              LEFT JOIN ventros.message_media mm ON mm.tenant_id = m.tenant_id AND mm.message_id = m.id
             WHERE m.tenant_id = e.tenant_id AND m.id = e.message_id);
END
$$;
COMMENT ON FUNCTION ventros.enrichment_media_type(ventros.message_enrichments) IS
    'The content type of an enrichment''s media (the download''s, else the message''s), without parameters';

-- ---- Whisper (Groq, OpenAI) ------------------------------------------------------

CREATE FUNCTION ventros.whisper_request(e ventros.message_enrichments, cfg jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mt text := ventros.enrichment_media_type(e);
    ext text;
BEGIN
    -- the file name's extension tells Whisper the format
    ext := CASE WHEN mt IN ('audio/ogg', 'audio/opus', 'application/ogg') THEN 'ogg'
                WHEN mt IN ('audio/mpeg', 'audio/mp3') THEN 'mp3'
                WHEN mt IN ('audio/mp4', 'audio/m4a', 'audio/x-m4a', 'audio/aac') THEN 'm4a'
                WHEN mt IN ('audio/wav', 'audio/x-wav', 'audio/wave') THEN 'wav'
                WHEN mt = 'audio/webm' THEN 'webm'
                WHEN mt = 'audio/flac' THEN 'flac'
                WHEN mt = 'video/mp4' THEN 'mp4'
                ELSE 'ogg' END;
    RETURN jsonb_build_object(
        'method', 'POST',
        'url', (cfg->>'base_url') || '/v1/audio/transcriptions',
        'form', jsonb_build_array(
                    jsonb_build_object('name', 'file', 'media', true, 'filename', 'audio.' || ext, 'content_type', mt),
                    jsonb_build_object('name', 'model', 'value', cfg->>'model'),
                    jsonb_build_object('name', 'response_format', 'value', 'verbose_json'))
                || CASE WHEN cfg ? 'language' THEN jsonb_build_array(jsonb_build_object('name', 'language', 'value', cfg->>'language'))
                        ELSE '[]' END
                || CASE WHEN cfg ? 'prompt' THEN jsonb_build_array(jsonb_build_object('name', 'prompt', 'value', cfg->>'prompt'))
                        ELSE '[]' END);
END
$$;
COMMENT ON FUNCTION ventros.whisper_request(ventros.message_enrichments, jsonb) IS
    'Groq / OpenAI transcription request: POST <base_url>/v1/audio/transcriptions, multipart file (audio.<ext>), model, response_format verbose_json, language, prompt';

-- Whisper's verbose_json names the language ("portuguese"): ISO-639-1 for
-- the common ones, else as given.
CREATE FUNCTION ventros.whisper_language(name text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- (no SET clause: small enough to be inlined; every name is qualified)
AS $$
    SELECT CASE pg_catalog.lower(name) WHEN 'portuguese' THEN 'pt' WHEN 'english' THEN 'en' WHEN 'spanish' THEN 'es'
                            WHEN 'french' THEN 'fr' WHEN 'german' THEN 'de' WHEN 'italian' THEN 'it'
                            ELSE pg_catalog.lower(name) END
$$;
COMMENT ON FUNCTION ventros.whisper_language(text) IS 'Whisper''s language name as an ISO-639-1 code for common languages';

CREATE FUNCTION ventros.whisper_answer(r ventros.http_requests) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a jsonb := ventros.json_body(r.response_body);
BEGIN
    IF r.status <> 'succeeded' THEN
        PERFORM ventros.enrichment_attempt_failed(r, NULL);
    ELSIF jsonb_typeof(a) IS DISTINCT FROM 'object' OR jsonb_typeof(a->'text') IS DISTINCT FROM 'string' THEN
        PERFORM ventros.enrichment_attempt_failed(r, 'malformed answer: no "text" in ' ||
                                                     left(convert_from(coalesce(r.response_body, ''), 'SQL_ASCII'), 200));
    ELSE
        PERFORM ventros.enrichment_attempt_succeeded(r, jsonb_strip_nulls(jsonb_build_object(
            'text', btrim(a->>'text'),
            'language', ventros.whisper_language(a->>'language'),
            -- the mean token probability of the segments, where given
            'confidence', (SELECT round(exp(avg((s->>'avg_logprob')::float8))::numeric, 4)
                             FROM jsonb_array_elements(CASE WHEN jsonb_typeof(a->'segments') = 'array' THEN a->'segments' END) s
                            WHERE jsonb_typeof(s->'avg_logprob') = 'number'),
            'usage', jsonb_strip_nulls(jsonb_build_object('seconds', CASE WHEN jsonb_typeof(a->'duration') = 'number'
                                                                          THEN a->'duration' END)))));
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.whisper_answer(ventros.http_requests) IS
    'Answer handler of Groq and OpenAI transcriptions: text, language, confidence (mean segment probability), seconds; else the next provider';

-- ---- Gemini vision ---------------------------------------------------------------

CREATE FUNCTION ventros.gemini_request(e ventros.message_enrichments, cfg jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    prompt text := coalesce(cfg->>'prompt', CASE WHEN e.context = 'profile_picture'
        THEN 'Rate this profile picture from 0 to 10 for how clearly it shows a real person''s face. Answer with the number on the first line, then one sentence.'
        ELSE 'Extract all readable text from this image, then describe it in one paragraph.' END)
        || CASE WHEN cfg ? 'language' THEN format(' Answer in the language with ISO-639-1 code "%s".', cfg->>'language') ELSE '' END;
BEGIN
    RETURN jsonb_build_object(
        'method', 'POST',
        'url', format('%s/v1beta/models/%s:generateContent', cfg->>'base_url', cfg->>'model'),
        'headers', jsonb_build_object('Content-Type', 'application/json'),
        'inline_base64', ventros.enrichment_media_marker(),
        'body', jsonb_build_object(
            'contents', jsonb_build_array(jsonb_build_object('role', 'user', 'parts', jsonb_build_array(
                jsonb_build_object('text', prompt),
                jsonb_build_object('inline_data', jsonb_build_object('mime_type', ventros.enrichment_media_type(e),
                                                                     'data', ventros.enrichment_media_marker()))))),
            'generationConfig', jsonb_build_object('temperature', 0.1, 'topK', 40, 'topP', 0.95, 'maxOutputTokens', 1024)));
END
$$;
COMMENT ON FUNCTION ventros.gemini_request(ventros.message_enrichments, jsonb) IS
    'Gemini request: POST <base_url>/v1beta/models/<model>:generateContent, the image inline as base64 (written by the dispatcher), a prompt for text + description (or a profile picture score)';

CREATE FUNCTION ventros.gemini_answer(r ventros.http_requests) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a jsonb := ventros.json_body(r.response_body);
    txt text;
BEGIN
    IF r.status <> 'succeeded' THEN
        PERFORM ventros.enrichment_attempt_failed(r, NULL);
        RETURN;
    END IF;
    IF a->'promptFeedback' ? 'blockReason' THEN
        PERFORM ventros.enrichment_attempt_failed(r, 'blocked: ' || (a->'promptFeedback'->>'blockReason'));
        RETURN;
    END IF;
    IF jsonb_typeof(a->'candidates'->0->'content'->'parts') = 'array' THEN
        SELECT string_agg(p->>'text', '' ORDER BY n) INTO txt
          FROM jsonb_array_elements(a->'candidates'->0->'content'->'parts') WITH ORDINALITY AS x(p, n)
         WHERE jsonb_typeof(p->'text') = 'string';
    END IF;
    IF txt IS NULL OR btrim(txt) = '' THEN
        PERFORM ventros.enrichment_attempt_failed(r, 'malformed answer: no candidate text in ' ||
                                                     left(convert_from(coalesce(r.response_body, ''), 'SQL_ASCII'), 200));
        RETURN;
    END IF;
    PERFORM ventros.enrichment_attempt_succeeded(r, jsonb_strip_nulls(jsonb_build_object(
        'text', btrim(txt),
        'model', a->>'modelVersion',
        'metadata', CASE WHEN substring(txt FROM '^\s*(10|[0-9])(\.[0-9]+)?\M') IS NOT NULL
                              AND (SELECT x.context FROM ventros.message_enrichments x
                                    WHERE x.tenant_id = r.tenant_id AND x.id = r.correlation_id) = 'profile_picture'
                         THEN jsonb_build_object('score', substring(txt FROM '^\s*(10|[0-9](?:\.[0-9]+)?)')::numeric) END,
        'usage', jsonb_strip_nulls(jsonb_build_object(
            'input_tokens', a->'usageMetadata'->'promptTokenCount',
            'output_tokens', a->'usageMetadata'->'candidatesTokenCount')))));
END
$$;
COMMENT ON FUNCTION ventros.gemini_answer(ventros.http_requests) IS
    'Answer handler of Gemini: the first candidate''s text parts, tokens used; a blocked prompt or no text is a failure (next provider)';

-- ---- LlamaParse (upload -> poll -> result) ---------------------------------------------

CREATE FUNCTION ventros.llamaparse_request(e ventros.message_enrichments, cfg jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m ventros.messages;
    mt text := ventros.enrichment_media_type(e);
BEGIN
    SELECT * INTO m FROM ventros.messages x WHERE x.tenant_id = e.tenant_id AND x.id = e.message_id;
    RETURN jsonb_build_object(
        'method', 'POST',
        'url', (cfg->>'base_url') || '/api/v1/parsing/upload',
        'headers', jsonb_build_object('Accept', 'application/json'),
        'form', jsonb_build_array(
                    jsonb_build_object('name', 'file', 'media', true, 'content_type', mt,
                                       'filename', coalesce(ventros.media_filename(m), 'document')),
                    jsonb_build_object('name', 'parsing_instruction', 'value',
                                       coalesce(cfg->>'prompt', 'Extract all text, tables and structure as markdown.')))
                || CASE WHEN cfg ? 'language' THEN jsonb_build_array(jsonb_build_object('name', 'language', 'value', cfg->>'language'))
                        ELSE '[]' END);
END
$$;
COMMENT ON FUNCTION ventros.llamaparse_request(ventros.message_enrichments, jsonb) IS
    'LlamaParse step 1: POST <base_url>/api/v1/parsing/upload, multipart file, parsing_instruction, language';

-- The next GET of a LlamaParse job (poll or result), after a delay.
CREATE FUNCTION ventros.llamaparse_follow(r ventros.http_requests, e ventros.message_enrichments, path text, delay_ms integer)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p ventros.enrichment_providers;
    ps ventros.enrichment_provider_settings;
    s ventros.enrichment_settings;
    cfg jsonb;
    rid uuid;
BEGIN
    SELECT * INTO p FROM ventros.enrichment_providers x WHERE x.provider = e.provider;
    SELECT * INTO ps FROM ventros.enrichment_provider_settings x WHERE x.tenant_id = e.tenant_id AND x.provider = e.provider;
    SELECT * INTO s FROM ventros.enrichment_settings x WHERE x.tenant_id = e.tenant_id;
    cfg := ventros.enrichment_config(p, ps, s);
    rid := ventros.enrichment_enqueue(e, p, cfg,
               jsonb_build_object('method', 'GET', 'url', (cfg->>'base_url') || path,
                                  'headers', jsonb_build_object('Accept', 'application/json')),
               clock_timestamp() + make_interval(secs => delay_ms / 1000.0));
    UPDATE ventros.message_enrichments x SET request_id = rid, version = x.version
     WHERE x.tenant_id = e.tenant_id AND x.id = e.id;
END
$$;
COMMENT ON FUNCTION ventros.llamaparse_follow(ventros.http_requests, ventros.message_enrichments, text, integer) IS
    'Queues the next GET of a LlamaParse job (status poll or result) after delay_ms; it becomes the enrichment''s current attempt';

CREATE FUNCTION ventros.llamaparse_answer(r ventros.http_requests) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a jsonb := ventros.json_body(r.response_body);
    e ventros.message_enrichments := ventros.enrichment_for_request(r);
    ps ventros.enrichment_provider_settings;
    poll_ms integer;
    started timestamptz;
BEGIN
    IF e.id IS NULL THEN
        RETURN;
    END IF;
    IF r.status <> 'succeeded' THEN
        PERFORM ventros.enrichment_attempt_failed(r, NULL);
        RETURN;
    END IF;
    SELECT * INTO ps FROM ventros.enrichment_provider_settings x WHERE x.tenant_id = e.tenant_id AND x.provider = e.provider;
    IF r.method = 'POST' THEN
        -- step 1 answered: the job id; poll at poll_ms (default 2 s)
        IF jsonb_typeof(a->'id') IS DISTINCT FROM 'string' OR a->>'id' !~ '^[A-Za-z0-9-]{1,100}$' THEN
            PERFORM ventros.enrichment_attempt_failed(r, 'malformed answer: no job id');
            RETURN;
        END IF;
        poll_ms := coalesce((ps.options->>'poll_ms')::integer, 2000);
        UPDATE ventros.message_enrichments x
           SET job_id = a->>'id', version = x.version,
               metadata = coalesce(x.metadata, '{}') || jsonb_build_object('job_started_at', now(), 'poll_ms', poll_ms)
         WHERE x.tenant_id = e.tenant_id AND x.id = e.id
        RETURNING * INTO e;
        PERFORM ventros.llamaparse_follow(r, e, format('/api/v1/parsing/job/%s', e.job_id), poll_ms);
    ELSIF r.url ~ '/result/markdown$' THEN
        IF jsonb_typeof(a->'markdown') IS DISTINCT FROM 'string' THEN
            PERFORM ventros.enrichment_attempt_failed(r, 'malformed answer: no markdown');
            RETURN;
        END IF;
        PERFORM ventros.enrichment_attempt_succeeded(r, jsonb_build_object(
            'text', a->>'markdown',
            'metadata', jsonb_build_object('job_id', e.job_id),
            'usage', jsonb_strip_nulls(jsonb_build_object('pages', a->'job_metadata'->'job_pages',
                                                          'credits', a->'job_metadata'->'credits_used'))));
    ELSE
        -- a poll: SUCCESS -> the result; PENDING -> again, x1.5 up to poll_max_ms, until poll_timeout_s
        CASE a->>'status'
        WHEN 'SUCCESS', 'PARTIAL_SUCCESS' THEN
            PERFORM ventros.llamaparse_follow(r, e, format('/api/v1/parsing/job/%s/result/markdown', e.job_id), 0);
        WHEN 'PENDING' THEN
            started := (e.metadata->>'job_started_at')::timestamptz;
            IF now() - started > make_interval(secs => coalesce((ps.options->>'poll_timeout_s')::integer, 600)) THEN
                PERFORM ventros.enrichment_attempt_failed(r, format('the parsing job %s did not finish in %s s', e.job_id,
                                                                    coalesce((ps.options->>'poll_timeout_s')::integer, 600)));
                RETURN;
            END IF;
            poll_ms := least((coalesce((e.metadata->>'poll_ms')::integer, 2000) * 1.5)::integer,
                             coalesce((ps.options->>'poll_max_ms')::integer, 30000));
            UPDATE ventros.message_enrichments x
               SET metadata = x.metadata || jsonb_build_object('poll_ms', poll_ms,
                                                               'polls', coalesce((x.metadata->>'polls')::integer, 0) + 1),
                   version = x.version
             WHERE x.tenant_id = e.tenant_id AND x.id = e.id
            RETURNING * INTO e;
            PERFORM ventros.llamaparse_follow(r, e, format('/api/v1/parsing/job/%s', e.job_id), poll_ms);
        WHEN 'ERROR', 'CANCELLED' THEN
            PERFORM ventros.enrichment_attempt_failed(r, format('parsing job %s: %s%s', a->>'status', a->>'error_code',
                                                                ' ' || (a->>'error_message')));
        ELSE
            PERFORM ventros.enrichment_attempt_failed(r, 'malformed answer: unknown job status ' ||
                                                         coalesce(left(a->>'status', 50), 'none'));
        END CASE;
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.llamaparse_answer(ventros.http_requests) IS
    'Answer handler of LlamaParse: upload -> job id, polls (x1.5 up to poll_max_ms, until poll_timeout_s) -> SUCCESS -> the markdown and pages; ERROR, CANCELLED, timeouts and malformed answers fail the attempt';

-- ---- declarations ----------------------------------------------------------------

-- Prices: USD, public list prices at the time of writing (docs/ai.md); a
-- platform administrator updates them with register_enrichment_provider.
SELECT ventros.register_enrichment_provider('groq', 'transcription', 'https://api.groq.com/openai', 'whisper-large-v3-turbo',
    'ventros.whisper_request(ventros.message_enrichments, jsonb)', 25 * 1024 * 1024,
    '{"per_second": 0.0000111}', description => 'Groq Whisper transcriptions (OpenAI-compatible API)');
SELECT ventros.register_enrichment_provider('openai', 'transcription', 'https://api.openai.com', 'whisper-1',
    'ventros.whisper_request(ventros.message_enrichments, jsonb)', 25 * 1024 * 1024,
    '{"per_second": 0.0001}', description => 'OpenAI Whisper transcriptions, or any OpenAI-compatible server (base_url, model)');
SELECT ventros.register_enrichment_provider('gemini', 'vision', 'https://generativelanguage.googleapis.com', 'gemini-2.5-flash',
    'ventros.gemini_request(ventros.message_enrichments, jsonb)', 15 * 1024 * 1024,
    '{"per_input_token": 0.0000003, "per_output_token": 0.0000025}', 'x-goog-api-key', NULL,
    description => 'Gemini vision: the text in an image and its description, profile picture scores');
SELECT ventros.register_enrichment_provider('llamaparse', 'document', 'https://api.cloud.llamaindex.ai', NULL,
    'ventros.llamaparse_request(ventros.message_enrichments, jsonb)', 50 * 1024 * 1024,
    '{"per_page": 0.003}', description => 'LlamaParse: PDF, Word, spreadsheets and presentations to markdown (upload, poll, result)');

INSERT INTO ventros.enrichment_routes (media_kind, position, provider) VALUES
    ('audio', 1, 'groq'), ('audio', 2, 'openai'),
    ('image', 1, 'gemini'),
    ('document', 1, 'llamaparse'),
    ('profile_picture', 1, 'gemini');

SELECT ventros.register_http_request_handler('enrichment.groq', 'ventros.whisper_answer(ventros.http_requests)');
SELECT ventros.register_http_request_handler('enrichment.openai', 'ventros.whisper_answer(ventros.http_requests)');
SELECT ventros.register_http_request_handler('enrichment.gemini', 'ventros.gemini_answer(ventros.http_requests)');
SELECT ventros.register_http_request_handler('enrichment.llamaparse', 'ventros.llamaparse_answer(ventros.http_requests)');
SELECT ventros.register_http_request_preparer('enrichment.' || p.provider,
                                              'ventros.enrichment_request_headers(ventros.http_requests)')
  FROM ventros.enrichment_providers p;
