-- Aggregate 17, MessageEnrichment (CRM): text extracted from one media
-- message (transcription, OCR, document parsing), and ai_processes, generic
-- AI jobs (a child aggregate).  Both: pending -> processing -> completed |
-- failed.  Voice goes first: ventros.next_message_enrichments orders voice,
-- then audio, then the rest.

CREATE TABLE ventros.message_enrichments (
    id                 uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id          text        NOT NULL,
    version            integer     NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at         timestamptz,
    message_id         uuid,
    message_group_id   uuid,
    contact_id         uuid        NOT NULL,
    content_type       text        NOT NULL,
    provider           text        NOT NULL,
    media_url          text        NOT NULL,
    status             text        NOT NULL DEFAULT 'pending',
    extracted_text     text,
    metadata           jsonb,
    processing_time_ms integer,
    error              text,
    context            text        NOT NULL DEFAULT 'chat_message',
    processed_at       timestamptz,
    -- the provider fallback chain (sql/98_enrichment_chain.sql, docs/ai.md)
    kind               text,
    model              text,
    language           text,
    confidence         numeric,
    usage              jsonb,
    cost               numeric,
    route              text[],
    route_position     integer,
    request_id         uuid,
    job_id             text,
    error_code         text,
    retry_at           timestamptz,
    attempts           jsonb       NOT NULL DEFAULT '[]',
    search_vector      tsvector    GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, coalesce(extracted_text, ''))) STORED,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, message_id) REFERENCES ventros.messages (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, message_group_id) REFERENCES ventros.message_groups (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, contact_id) REFERENCES ventros.contacts (tenant_id, id),
    CONSTRAINT message_enrichments_content_type CHECK (content_type IN ('audio', 'voice', 'image', 'video', 'document')),
    CONSTRAINT message_enrichments_provider CHECK (provider IN ('whisper', 'deepgram', 'vision', 'llamaparse', 'ffmpeg', 'tesseract',
                                                                'groq', 'openai', 'gemini')),
    CONSTRAINT message_enrichments_status CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    CONSTRAINT message_enrichments_context CHECK (context IN ('chat_message', 'profile_picture')),
    CONSTRAINT message_enrichments_outcome CHECK ((status <> 'completed' OR extracted_text IS NOT NULL)
                                                  AND (status <> 'failed' OR error IS NOT NULL)),
    CONSTRAINT message_enrichments_kind CHECK (kind IN ('transcription', 'vision', 'document', 'profile_score')),
    CONSTRAINT message_enrichments_error_code CHECK (error_code IN ('providers_failed', 'no_provider', 'too_large', 'spending_cap', 'usage_limit',
                                                                    'disabled', 'no_media')),
    CONSTRAINT message_enrichments_numbers CHECK (confidence BETWEEN 0 AND 1 AND cost >= 0),
    CONSTRAINT message_enrichments_subject CHECK (message_id IS NOT NULL OR context = 'profile_picture')
);
CREATE UNIQUE INDEX message_enrichments_one_per_message ON ventros.message_enrichments (tenant_id, message_id, provider)
    WHERE deleted_at IS NULL;
CREATE INDEX message_enrichments_pending ON ventros.message_enrichments (tenant_id, status, created_at)
    WHERE status IN ('pending', 'processing');
CREATE INDEX message_enrichments_search ON ventros.message_enrichments USING gin (search_vector);
CREATE INDEX message_enrichments_retry ON ventros.message_enrichments (retry_at) WHERE status = 'failed' AND retry_at IS NOT NULL;
COMMENT ON TABLE ventros.message_enrichments IS 'MessageEnrichment: text extracted from a media message';
COMMENT ON COLUMN ventros.message_enrichments.kind IS 'transcription (audio), vision (image: text in it and a description), document (parsed to markdown), profile_score';
COMMENT ON COLUMN ventros.message_enrichments.usage IS 'What the provider counted: seconds (audio), input_tokens / output_tokens (vision), pages (documents)';
COMMENT ON COLUMN ventros.message_enrichments.cost IS 'US dollars, from usage and the provider''s declared prices (ventros.enrichment_providers.prices)';
COMMENT ON COLUMN ventros.message_enrichments.route IS 'The providers tried in order (the route of the media kind, the tenant''s override first)';
COMMENT ON COLUMN ventros.message_enrichments.request_id IS 'The http_requests row of the current attempt: answers of older attempts are ignored';
COMMENT ON COLUMN ventros.message_enrichments.error_code IS 'Why it failed: providers_failed, no_provider, too_large, spending_cap (the tenant''s monthly AI cap), usage_limit (its plan''s limit), disabled, no_media';
COMMENT ON COLUMN ventros.message_enrichments.retry_at IS 'When a failed enrichment is tried again (ventros.retry_enrichments); NULL: never by itself';
COMMENT ON COLUMN ventros.message_enrichments.attempts IS 'One entry per provider tried: provider, request id, outcome, error';
COMMENT ON COLUMN ventros.message_enrichments.search_vector IS 'Full-text vector of extracted_text (simple configuration), for search over messages';

CREATE TABLE ventros.ai_processes (
    id              uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id       text        NOT NULL,
    version         integer     NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    target_type     text        NOT NULL,
    target_id       uuid        NOT NULL,
    session_id      uuid,
    contact_id      uuid,
    channel_id      uuid,
    processing_type text        NOT NULL,
    status          text        NOT NULL DEFAULT 'pending',
    provider        text,
    model           text,
    input           jsonb,
    output          jsonb,
    tokens_used     integer,
    duration_ms     integer,
    cost            numeric,
    error_message   text,
    retry_count     integer     NOT NULL DEFAULT 0,
    started_at      timestamptz,
    completed_at    timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES ventros.sessions (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES ventros.contacts (tenant_id, id),
    FOREIGN KEY (tenant_id, channel_id) REFERENCES ventros.channels (tenant_id, id),
    CONSTRAINT ai_processes_target_format CHECK (target_type ~ '^[a-z][a-z0-9_]*$'),
    CONSTRAINT ai_processes_type CHECK (processing_type IN ('transcription', 'ocr', 'sentiment', 'summary', 'profile_analysis')),
    CONSTRAINT ai_processes_status CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    CONSTRAINT ai_processes_numbers CHECK (tokens_used >= 0 AND duration_ms >= 0 AND cost >= 0 AND retry_count >= 0)
);
CREATE INDEX ai_processes_by_target ON ventros.ai_processes (tenant_id, target_type, target_id);
COMMENT ON TABLE ventros.ai_processes IS 'A generic AI job on some entity';

SELECT ventros.register_aggregate('message_enrichment', 'ventros.message_enrichments', 'crm',
    state_column => 'status',
    transitions => '[
        {"from": null, "to": "pending"},
        {"from": "pending", "to": "processing"},
        {"from": "processing", "to": "completed", "event": "message_enrichment.completed", "description": "Text was extracted from a media message."},
        {"from": "processing", "to": "failed", "event": "message_enrichment.failed", "description": "Extracting text from a media message failed."},
        {"from": "failed", "to": "pending", "event": "message_enrichment.retried", "description": "A failed enrichment was queued again."},
        {"from": "completed", "to": "pending", "event": "message_enrichment.retried"}
    ]',
    description => 'Text extracted from a media message');
SELECT ventros.register_aggregate('ai_process', 'ventros.ai_processes', 'crm',
    state_column => 'status',
    transitions => '[
        {"from": null, "to": "pending"},
        {"from": "pending", "to": "processing"},
        {"from": "processing", "to": "completed"},
        {"from": "processing", "to": "failed"},
        {"from": "failed", "to": "pending"}
    ]',
    description => 'A generic AI job (child of message_enrichment''s context)');

CREATE FUNCTION ventros.create_message_enrichment(message_id uuid, message_group_id uuid, provider text,
                                                  context text DEFAULT 'chat_message')
RETURNS ventros.message_enrichments
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m ventros.messages;
    result ventros.message_enrichments;
BEGIN
    SELECT * INTO m FROM ventros.messages x WHERE x.tenant_id = ventros.require_tenant() AND x.id = message_id;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('message', message_id);
    END IF;
    IF m.content_type NOT IN ('audio', 'voice', 'image', 'video', 'document') OR m.media_url IS NULL THEN
        RAISE EXCEPTION 'message % has no media to enrich', message_id USING ERRCODE = '22023';
    END IF;
    PERFORM ventros.require_value(provider, ARRAY['whisper', 'deepgram', 'vision', 'llamaparse', 'ffmpeg', 'tesseract',
                                                  'groq', 'openai', 'gemini'], 'enrichment provider');
    INSERT INTO ventros.message_enrichments (message_id, message_group_id, contact_id, content_type, provider, media_url, context)
    VALUES (m.id, message_group_id, m.contact_id, m.content_type, provider, m.media_url, coalesce(context, 'chat_message'))
    RETURNING * INTO result;
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'message % is enriched by % already', message_id, provider USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.create_message_enrichment(uuid, uuid, text, text) IS
    'Queues text extraction for a media message (no media: 22023); emits message_enrichment.created';

CREATE FUNCTION ventros.start_message_enrichment(message_enrichment_id uuid, expected_version integer)
RETURNS ventros.message_enrichments
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.change_row(NULL::ventros.message_enrichments, 'message enrichment', message_enrichment_id, expected_version, '{"status": "processing"}') $$;
COMMENT ON FUNCTION ventros.start_message_enrichment(uuid, integer) IS 'Marks an enrichment processing; emits message_enrichment.updated';

CREATE FUNCTION ventros.complete_message_enrichment(message_enrichment_id uuid, expected_version integer, extracted_text text,
                                                    processing_time_ms integer DEFAULT NULL, metadata jsonb DEFAULT NULL)
RETURNS ventros.message_enrichments
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.change_row(NULL::ventros.message_enrichments, 'message enrichment', message_enrichment_id, expected_version,
        jsonb_build_object('status', 'completed', 'extracted_text', extracted_text, 'processing_time_ms', processing_time_ms,
                           'metadata', metadata, 'processed_at', now()))
$$;
COMMENT ON FUNCTION ventros.complete_message_enrichment(uuid, integer, text, integer, jsonb) IS
    'Stores the extracted text (required, 23514) of a processing enrichment; emits message_enrichment.completed';

CREATE FUNCTION ventros.fail_message_enrichment(message_enrichment_id uuid, expected_version integer, error text)
RETURNS ventros.message_enrichments
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.change_row(NULL::ventros.message_enrichments, 'message enrichment', message_enrichment_id, expected_version,
        jsonb_build_object('status', 'failed', 'error', ventros.check_length(error, 2000, 'enrichment error'), 'processed_at', now()))
$$;
COMMENT ON FUNCTION ventros.fail_message_enrichment(uuid, integer, text) IS 'Records a failed extraction (error required, 23514); emits message_enrichment.failed';

CREATE FUNCTION ventros.next_message_enrichments(batch_size integer DEFAULT 10)
RETURNS SETOF ventros.message_enrichments
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT e.* FROM ventros.message_enrichments e
    WHERE e.tenant_id = ventros.require_tenant() AND e.status = 'pending'
    ORDER BY (e.content_type = 'voice') DESC, (e.content_type = 'audio') DESC, e.created_at, e.id
    LIMIT ventros.check_page_size(batch_size)
$$;
COMMENT ON FUNCTION ventros.next_message_enrichments(integer) IS 'Pending enrichments, voice first, then audio, then oldest';

CREATE FUNCTION ventros.list_message_enrichments(message_id uuid DEFAULT NULL, message_group_id uuid DEFAULT NULL,
                                                 status text DEFAULT NULL, stuck_since timestamptz DEFAULT NULL)
RETURNS SETOF ventros.message_enrichments
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT e.* FROM ventros.message_enrichments e
    WHERE e.tenant_id = ventros.require_tenant()
      AND (list_message_enrichments.message_id IS NULL OR e.message_id = list_message_enrichments.message_id)
      AND (list_message_enrichments.message_group_id IS NULL OR e.message_group_id = list_message_enrichments.message_group_id)
      AND (list_message_enrichments.status IS NULL OR e.status = list_message_enrichments.status)
      AND (stuck_since IS NULL OR (e.status = 'processing' AND e.updated_at < stuck_since))
    ORDER BY e.created_at, e.id
    LIMIT current_setting('ventros.max_page_size')::integer
$$;
COMMENT ON FUNCTION ventros.list_message_enrichments(uuid, uuid, text, timestamptz) IS
    'Enrichments by message, group or status, or those stuck in processing since a time';

CREATE FUNCTION ventros.create_ai_process(target_type text, target_id uuid, processing_type text, provider text DEFAULT NULL,
                                          model text DEFAULT NULL, input jsonb DEFAULT NULL, session_id uuid DEFAULT NULL,
                                          contact_id uuid DEFAULT NULL, channel_id uuid DEFAULT NULL)
RETURNS ventros.ai_processes
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.ai_processes;
BEGIN
    PERFORM ventros.require_value(processing_type, ARRAY['transcription', 'ocr', 'sentiment', 'summary', 'profile_analysis'], 'processing type');
    INSERT INTO ventros.ai_processes (target_type, target_id, session_id, contact_id, channel_id, processing_type, provider, model, input)
    VALUES (target_type, target_id, session_id, contact_id, channel_id, processing_type, provider, model, input)
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.create_ai_process(text, uuid, text, text, text, jsonb, uuid, uuid, uuid) IS 'Queues an AI job; emits ai_process.created';

CREATE FUNCTION ventros.finish_ai_process(ai_process_id uuid, expected_version integer, status text, output jsonb DEFAULT NULL,
                                          tokens_used integer DEFAULT NULL, cost numeric DEFAULT NULL, error_message text DEFAULT NULL)
RETURNS ventros.ai_processes
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p ventros.ai_processes;
BEGIN
    PERFORM ventros.require_value(status, ARRAY['processing', 'completed', 'failed', 'pending'], 'AI process status');
    SELECT * INTO p FROM ventros.ai_processes x WHERE x.tenant_id = ventros.require_tenant() AND x.id = ai_process_id;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('AI process', ai_process_id);
    END IF;
    RETURN ventros.change_row(NULL::ventros.ai_processes, 'AI process', ai_process_id, expected_version,
        jsonb_build_object('status', status)
        || CASE status WHEN 'processing' THEN jsonb_build_object('started_at', now())
                       WHEN 'pending' THEN jsonb_build_object('retry_count', p.retry_count + 1)
                       ELSE jsonb_build_object('completed_at', now(), 'output', output, 'tokens_used', tokens_used, 'cost', cost,
                                               'error_message', error_message,
                                               'duration_ms', (extract(epoch FROM now() - coalesce(p.started_at, now())) * 1000)::integer)
           END);
END
$$;
COMMENT ON FUNCTION ventros.finish_ai_process(uuid, integer, text, jsonb, integer, numeric, text) IS
    'Moves an AI job: processing, completed, failed, or back to pending for a retry (VN002 otherwise); emits ai_process.updated';

GRANT EXECUTE ON FUNCTION ventros.next_message_enrichments(integer),
    ventros.list_message_enrichments(uuid, uuid, text, timestamptz) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.create_message_enrichment(uuid, uuid, text, text), ventros.start_message_enrichment(uuid, integer),
    ventros.complete_message_enrichment(uuid, integer, text, integer, jsonb), ventros.fail_message_enrichment(uuid, integer, text),
    ventros.create_ai_process(text, uuid, text, text, text, jsonb, uuid, uuid, uuid),
    ventros.finish_ai_process(uuid, integer, text, jsonb, integer, numeric, text)
    TO ventros_agent;

-- Direct writes of message_enrichment, ai_process by tenant roles: the same as the first
-- command named, or refused naming them (docs/sql.md, "Direct writes").
SELECT ventros.register_writes('message_enrichment', inserts => '{create_message_enrichment}', updates => '{start_message_enrichment,complete_message_enrichment,fail_message_enrichment}', deletes => '{}');
SELECT ventros.register_writes('ai_process', inserts => '{create_ai_process}', updates => '{finish_ai_process}', deletes => '{}');
