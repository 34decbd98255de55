-- Media enrichment in SQL (docs/ai.md), without the dispatcher: the requests
-- enrich_message queues (multipart and inline base64 forms, the media by
-- reference, no key on the row), the key the preparer adds, and the chain
-- driven by answers written here and handed to the purposes' handlers:
-- 429 -> next provider -> transcript (message.enriched), every provider
-- failing (message.enrichment_failed, a retry time, retry_enrichments), the
-- spending cap (billing.ai_spending_cap_reached), a disabled tenant,
-- and a profile picture scored (contact.profile_picture_scored).
-- End to end over HTTP: test/integration/enrichment*.test.mjs.
BEGIN;
SELECT * FROM no_plan();

SELECT ventros.create_tenant('enr_t1', 'Enrich SQL');
SET LOCAL ventros.tenant = 'enr_t1';
CREATE TEMP TABLE ids (k text PRIMARY KEY, id uuid);
CREATE FUNCTION pg_temp.id(k text) RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM ids WHERE ids.k = $1 $$;

INSERT INTO ids SELECT 'ch', id FROM ventros.create_channel('WAHA', 'waha', config => '{"base_url": "https://waha.example", "session": "s", "api_key": "k"}');
INSERT INTO ids SELECT 'groq_key', id FROM ventros.create_credential('groq', 'api_key', 'gsk_pgtap_secret_1');
INSERT INTO ids SELECT 'openai_key', id FROM ventros.create_credential('openai', 'api_key', 'sk-pgtap-secret-2');
INSERT INTO ids SELECT 'gemini_key', id FROM ventros.create_credential('gemini', 'api_key', 'AIza-pgtap-secret-3');

-- a voice note whose media is downloaded (as the media download stores it)
CREATE FUNCTION pg_temp.voice(n integer) RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    m uuid;
BEGIN
    SELECT id INTO m FROM ventros.receive_message(pg_temp.id('ch'), '5511999990000@c.us', NULL, 'voice', 'enr_voice_' || n,
                                                  media_url => 'https://waha.example/f' || n || '.oga',
                                                  media_mimetype => 'audio/ogg; codecs=opus');
    INSERT INTO ventros.message_media (tenant_id, message_id, status, content_type, size, sha256, data, downloaded_at)
    VALUES ('enr_t1', m, 'downloaded', 'audio/ogg', 4, encode(sha256('\x01020304'), 'hex'), '\x01020304', now());
    RETURN m;
END
$$;
-- the pending request of an enrichment answered: status, HTTP status, body, headers; then its handler
CREATE FUNCTION pg_temp.answer(e uuid, st text, code integer, answer text, hdrs jsonb DEFAULT '{}') RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r ventros.http_requests;
BEGIN
    UPDATE ventros.http_requests x
       SET status = st, response_status = code, response_body = convert_to(answer, 'UTF8'), response_headers = hdrs,
           attempts = 1, completed_at = now(), last_error = CASE WHEN st <> 'succeeded' THEN 'HTTP ' || code END
     WHERE x.tenant_id = 'enr_t1' AND x.correlation_id = e AND x.status = 'pending'
    RETURNING * INTO r;
    PERFORM ventros.run_http_request_handler(r);
    RETURN r.purpose;
END
$$;
CREATE FUNCTION pg_temp.enr(m uuid) RETURNS ventros.message_enrichments LANGUAGE sql AS $$
    SELECT * FROM ventros.message_enrichments WHERE message_id = m AND kind IS NOT NULL
$$;
CREATE FUNCTION pg_temp.events(agg uuid) RETURNS text[] LANGUAGE sql AS $$
    SELECT array_agg(event_type ORDER BY seq) FROM ventros.outbox WHERE aggregate_id = agg
$$;

INSERT INTO ids VALUES ('m1', pg_temp.voice(1));
SELECT throws_ok($$SELECT ventros.enrich_message(pg_temp.id('m1'))$$, '55000', 'enrichment is disabled for this tenant',
                 'off until a tenant administrator turns it on');
SELECT ventros.configure_enrichment(enabled => true, language => 'pt', auto => false);
SELECT ventros.configure_enrichment_provider('groq', pg_temp.id('groq_key'), base_url => 'https://groq.example/openai');
SELECT ventros.configure_enrichment_provider('openai', pg_temp.id('openai_key'), base_url => 'https://openai.example');
SELECT is(ventros.enrichment_route('audio'), '{groq,openai}', 'audio: Groq, then OpenAI');

-- ---- a transcription: 429 on Groq, OpenAI answers -------------------------------------
SELECT is((ventros.enrich_message(pg_temp.id('m1'))).status, 'processing', 'enrich_message queues the first provider');
SELECT is((pg_temp.enr(pg_temp.id('m1'))).provider, 'groq', 'Groq first');
SELECT is((SELECT jsonb_build_object('url', url, 'purpose', purpose, 'media', media_id = pg_temp.id('m1'),
                                     'auth', headers ? 'Authorization', 'body', body IS NULL, 'attempts', max_attempts)
             FROM ventros.http_requests WHERE correlation_id = (pg_temp.enr(pg_temp.id('m1'))).id),
          '{"url": "https://groq.example/openai/v1/audio/transcriptions", "purpose": "enrichment.groq", "media": true,
            "auth": false, "body": true, "attempts": 1}'::jsonb,
          'the request: Groq''s URL, the media by reference, no key stored, one attempt');
SELECT is((SELECT body_form FROM ventros.http_requests WHERE correlation_id = (pg_temp.enr(pg_temp.id('m1'))).id),
          '{"multipart": [{"name": "file", "media": true, "filename": "audio.ogg", "content_type": "audio/ogg"},
                          {"name": "model", "value": "whisper-large-v3-turbo"},
                          {"name": "response_format", "value": "verbose_json"},
                          {"name": "language", "value": "pt"}]}'::jsonb,
          'the multipart parts: the file, model, response format, language');
SELECT is((SELECT ventros.http_attempt_headers(r) FROM ventros.http_requests r
            WHERE correlation_id = (pg_temp.enr(pg_temp.id('m1'))).id),
          '{"Authorization": "Bearer gsk_pgtap_secret_1"}'::jsonb, 'the preparer adds the key when the attempt is claimed');
SELECT is((SELECT octet_length(ventros.http_request_media('enr_t1', pg_temp.id('m1')))), 4, 'the dispatcher reads the downloaded media');

SELECT pg_temp.answer((pg_temp.enr(pg_temp.id('m1'))).id, 'dead', 429,
                      '{"error": {"message": "Rate limit reached", "type": "tokens"}}', '{"retry-after": "30"}');
SELECT is((pg_temp.enr(pg_temp.id('m1'))).provider, 'openai', 'a 429 moves to OpenAI');
SELECT is((pg_temp.enr(pg_temp.id('m1'))).attempts->0->>'error', 'HTTP 429: Rate limit reached', 'the trail keeps why');
SELECT ok((pg_temp.enr(pg_temp.id('m1'))).attempts->0 ? 'retry_after', 'and the Retry-After');
SELECT pg_temp.answer((pg_temp.enr(pg_temp.id('m1'))).id, 'succeeded', 200,
    '{"task": "transcribe", "language": "portuguese", "duration": 2.5, "text": " Olá, quero o orçamento. ",
      "segments": [{"id": 0, "avg_logprob": -0.1}, {"id": 1, "avg_logprob": -0.3}]}');
SELECT is((SELECT jsonb_build_object('status', status, 'text', extracted_text, 'language', language, 'confidence', confidence,
                                     'usage', usage, 'cost', cost, 'provider', provider, 'model', model)
             FROM pg_temp.enr(pg_temp.id('m1'))),
          jsonb_build_object('status', 'completed', 'text', 'Olá, quero o orçamento.', 'language', 'pt',
                             'confidence', round(exp(-0.2)::numeric, 4), 'usage', '{"seconds": 2.5}'::jsonb,
                             'cost', 0.00025, 'provider', 'openai', 'model', 'whisper-1'),
          'the result: text, language, confidence, usage and cost');
SELECT ok('message.enriched' = ANY (pg_temp.events(pg_temp.id('m1'))), 'message.enriched');
SELECT ok((SELECT search_vector @@ to_tsquery('simple', 'orçamento') FROM pg_temp.enr(pg_temp.id('m1'))), 'the text is searchable');
SELECT is(ventros.ai_spending(), 0.00025, 'the month''s spending');
SELECT is(pg_temp.answer((pg_temp.enr(pg_temp.id('m1'))).id, 'succeeded', 200, '{"text": "late"}'), NULL,
          'nothing is pending any more (an older attempt''s answer changes nothing)');

-- ---- every provider failing, then the retry ---------------------------------------------
INSERT INTO ids VALUES ('m2', pg_temp.voice(2));
SELECT ventros.enrich_message(pg_temp.id('m2'));
SELECT pg_temp.answer((pg_temp.enr(pg_temp.id('m2'))).id, 'dead', 500, '{"error": {"message": "boom"}}');
SELECT pg_temp.answer((pg_temp.enr(pg_temp.id('m2'))).id, 'succeeded', 200, 'not json');
SELECT is((SELECT jsonb_build_object('status', status, 'code', error_code, 'retry', retry_at > now())
             FROM pg_temp.enr(pg_temp.id('m2'))),
          '{"status": "failed", "code": "providers_failed", "retry": true}'::jsonb, 'all failed: an error code and a retry time');
SELECT matches((pg_temp.enr(pg_temp.id('m2'))).error,
               '^every provider of the route failed \(groq: HTTP 500: boom; openai: malformed answer: no "text" in not json\)$',
               'the error says what each provider did');
SELECT ok('message.enrichment_failed' = ANY (pg_temp.events(pg_temp.id('m2'))), 'message.enrichment_failed');
SELECT is(ventros.retry_enrichments(now()), 0, 'not before its retry time');
SELECT is(ventros.retry_enrichments(now() + interval '1 day'), 1, 'then it starts again');
SELECT is((pg_temp.enr(pg_temp.id('m2'))).provider, 'groq', 'from the first provider');
SELECT ok('message_enrichment.retried' = ANY (pg_temp.events((pg_temp.enr(pg_temp.id('m2'))).id)), 'message_enrichment.retried');

-- ---- a provider without a key is skipped; none configured: no_provider ---------------------
SELECT ventros.configure_enrichment_provider('groq', enabled => false);
INSERT INTO ids VALUES ('m3', pg_temp.voice(3));
SELECT is((ventros.enrich_message(pg_temp.id('m3'))).provider, 'openai', 'a disabled provider is skipped');
SELECT ventros.set_enrichment_route('audio', '{llamaparse}');
INSERT INTO ids VALUES ('m4', pg_temp.voice(4));
SELECT is((SELECT error_code FROM ventros.enrich_message(pg_temp.id('m4'))), 'no_provider', 'no configured provider: no_provider');
SELECT ventros.set_enrichment_route('audio', NULL);
SELECT ventros.configure_enrichment_provider('groq', enabled => true);

-- ---- the spending cap -------------------------------------------------------------------------
SELECT ventros.configure_enrichment(monthly_cap => 0.0001);
INSERT INTO ids VALUES ('m5', pg_temp.voice(5));
SELECT is((SELECT jsonb_build_object('code', error_code, 'retry', retry_at = date_trunc('month', now()) + interval '1 month')
             FROM ventros.enrich_message(pg_temp.id('m5'))),
          '{"code": "spending_cap", "retry": true}'::jsonb, 'over the cap: no request, retried next month');
SELECT is((SELECT count(*)::int FROM ventros.http_requests WHERE correlation_id = (pg_temp.enr(pg_temp.id('m5'))).id), 0,
          'no provider request');
SELECT is((SELECT count(*)::int FROM ventros.outbox WHERE event_type = 'billing.ai_spending_cap_reached'
             AND tenant_id = 'enr_t1'), 1, 'billing.ai_spending_cap_reached');
SELECT ventros.configure_enrichment(remove_cap => true);

-- ---- an image: Gemini, the image inline as base64 ------------------------------------------------
SELECT ventros.configure_enrichment_provider('gemini', pg_temp.id('gemini_key'), base_url => 'https://gemini.example');
INSERT INTO ids SELECT 'img', id FROM ventros.receive_message(pg_temp.id('ch'), '5511999990000@c.us', NULL, 'image', 'enr_img',
                                                          media_url => 'https://waha.example/i.jpeg', media_mimetype => 'image/jpeg');
INSERT INTO ventros.message_media (tenant_id, message_id, status, content_type, size, sha256, data, downloaded_at)
VALUES ('enr_t1', pg_temp.id('img'), 'downloaded', 'image/jpeg', 3, encode(sha256('\xffd8ff'), 'hex'), '\xffd8ff', now());
SELECT ventros.enrich_message(pg_temp.id('img'));
SELECT is((SELECT jsonb_build_object('url', url, 'form', body_form,
                                     'data', convert_from(body, 'UTF8')::jsonb #>> '{contents,0,parts,1,inline_data,data}')
             FROM ventros.http_requests WHERE correlation_id = (pg_temp.enr(pg_temp.id('img'))).id),
          jsonb_build_object('url', 'https://gemini.example/v1beta/models/gemini-2.5-flash:generateContent',
                             'form', jsonb_build_object('inline_base64', ventros.enrichment_media_marker()),
                             'data', ventros.enrichment_media_marker()),
          'Gemini: the body carries the marker the dispatcher replaces with the base64');
SELECT is((SELECT ventros.http_attempt_headers(r) FROM ventros.http_requests r
            WHERE correlation_id = (pg_temp.enr(pg_temp.id('img'))).id),
          '{"Content-Type": "application/json", "x-goog-api-key": "AIza-pgtap-secret-3"}'::jsonb, 'Gemini''s key header');
SELECT pg_temp.answer((pg_temp.enr(pg_temp.id('img'))).id, 'succeeded', 200,
    '{"candidates": [{"content": {"parts": [{"text": "Texto: OFERTA"}, {"text": "\nDescrição: um cartaz."}]}}],
      "usageMetadata": {"promptTokenCount": 300, "candidatesTokenCount": 20}, "modelVersion": "gemini-2.5-flash"}');
SELECT is((SELECT jsonb_build_object('text', extracted_text, 'usage', usage, 'cost', cost) FROM pg_temp.enr(pg_temp.id('img'))),
          jsonb_build_object('text', E'Texto: OFERTA\nDescrição: um cartaz.', 'usage', '{"input_tokens": 300, "output_tokens": 20}'::jsonb,
                             'cost', 0.00014),
          'Gemini''s text parts, tokens and cost');
SELECT is((SELECT quantity FROM ventros.usage_status() WHERE metric = 'ai_tokens'), 320::bigint,
          'its tokens are metered as the tenant''s usage (sql/65_usage_metering.sql)');

-- ---- a profile picture ---------------------------------------------------------------------------
UPDATE ventros.contacts SET profile_picture_url = 'https://cdn.example/p.jpg', version = version
 WHERE id = (SELECT contact_id FROM ventros.messages WHERE id = pg_temp.id('m1'));
INSERT INTO ids SELECT 'pic', id FROM ventros.enrich_profile_picture((SELECT contact_id FROM ventros.messages WHERE id = pg_temp.id('m1')));
SELECT is((SELECT jsonb_build_object('purpose', purpose, 'url', url) FROM ventros.http_requests WHERE correlation_id = pg_temp.id('pic')),
          '{"purpose": "enrichment.picture", "url": "https://cdn.example/p.jpg"}'::jsonb, 'the picture is downloaded first');
SELECT pg_temp.answer(pg_temp.id('pic'), 'succeeded', 200, 'JPEGBYTES', '{"content-type": "image/jpeg"}');
SELECT is((SELECT url FROM ventros.http_requests WHERE correlation_id = pg_temp.id('pic') AND status = 'pending'),
          'https://gemini.example/v1beta/models/gemini-2.5-flash:generateContent', 'then sent to the vision provider');
SELECT pg_temp.answer(pg_temp.id('pic'), 'succeeded', 200,
    '{"candidates": [{"content": {"parts": [{"text": "7\nUm rosto nítido."}]}}], "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5}}');
SELECT is((SELECT jsonb_build_object('status', status, 'kind', kind, 'score', metadata->'score')
             FROM ventros.message_enrichments WHERE id = pg_temp.id('pic')),
          '{"status": "completed", "kind": "profile_score", "score": 7}'::jsonb, 'scored 0-10');
SELECT ok('contact.profile_picture_scored' = ANY (pg_temp.events((SELECT contact_id FROM ventros.messages WHERE id = pg_temp.id('m1')))),
          'contact.profile_picture_scored');

-- ---- keys: in no row, event or view the tenant reads ---------------------------------------------
SELECT is((SELECT count(*)::int FROM ventros.http_requests r WHERE row_to_json(r)::text ~ 'pgtap.secret'), 0, 'no request row holds a key');
SELECT is((SELECT count(*)::int FROM ventros.outbox o WHERE o.payload::text ~ 'pgtap.secret'), 0, 'no event holds a key');
SELECT is((SELECT count(*)::int FROM ventros.enrichment_status s WHERE row_to_json(s)::text ~ 'pgtap.secret'), 0,
          'the status view shows no key');
SELECT is((SELECT providers->'groq'->>'has_key' FROM ventros.enrichment_status WHERE tenant_id = 'enr_t1'), 'true', 'only that there is one');

SELECT * FROM finish();
ROLLBACK;
