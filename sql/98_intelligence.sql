-- Conversation intelligence (docs/ai.md, "Conversation intelligence"): a
-- session's summary, sentiment, language, topics and next best action from
-- a chat-completions provider (the OpenAI-compatible API: OpenAI, Groq, a
-- self-hosted server), and the completions the AI agent asks for
-- (sql/98_intelligence_agent.sql).
--
-- The enrichment mechanism, reused (sql/98_enrichment*.sql):
--   - the providers are rows of ventros.enrichment_providers of kind chat
--     (openai_chat, groq_chat) with their prices; a tenant gives each its
--     key, base URL and model with configure_enrichment_provider, as for
--     transcription;
--   - a completion's request is a dispatcher request of purpose
--     enrichment.<provider> (enrichment_enqueue), whose preparer
--     (enrichment_request_headers) adds the key at claim time: no key on any
--     row, view or event;
--   - cost = usage x prices (enrichment_cost), on the one AI spending
--     ledger (ai_spending: enrichments and completions); before a request
--     is queued the one gate, ai_request_refusal, holds it to the tenant's
--     monthly cap and its plan's limits of ai_completions and ai_tokens;
--   - usage is metered as an enrichment's is (meter_usage: one
--     ai_completions and the answer's tokens per provider answer).
-- What is its own: ventros.ai_completions (one row per request for a
-- summary or an agent reply, its status, attempts, retry time, usage, cost
-- and the validated answer), the tenant's prompts and retry policy
-- (ventros.ai_settings), and the answer handler ai_chat_answer.
--
-- When: on demand (ventros.summarize_session(session_id)) and when a
-- session ends, through an automation rule on session.ended with the action
-- summarize_session (the executor runs it after the session's transaction
-- committed, never inside it).  A malformed answer or a provider failure
-- fails the completion with an error code and an event; it is tried again
-- after retry_delay x 2^(attempts - 1) (or the provider's Retry-After), at
-- most max_attempts times (ventros.retry_ai_completions, scheduled).

-- ---- providers ----------------------------------------------------------------------

ALTER TABLE ventros.enrichment_providers DROP CONSTRAINT enrichment_providers_kind;
ALTER TABLE ventros.enrichment_providers ADD CONSTRAINT enrichment_providers_kind
    CHECK (kind IN ('transcription', 'vision', 'document', 'chat'));

-- The request of a chat provider: POST <base_url>/v1/chat/completions with
-- cfg.messages, asking for a JSON object.  (The enrichment builders' shape;
-- a chat provider is never on a media route: no messages, 22023.)
CREATE FUNCTION ventros.chat_completion_request(e ventros.message_enrichments, cfg jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF jsonb_typeof(cfg->'messages') IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'a chat completion needs messages' USING ERRCODE = '22023',
            HINT = 'Chat providers answer summaries and the AI agent, not media routes.';
    END IF;
    RETURN jsonb_build_object(
        'method', 'POST',
        'url', (cfg->>'base_url') || '/v1/chat/completions',
        'headers', jsonb_build_object('Content-Type', 'application/json'),
        'body', jsonb_build_object('model', cfg->>'model', 'messages', cfg->'messages',
                                   'temperature', coalesce((cfg->>'temperature')::numeric, 0.2),
                                   'response_format', jsonb_build_object('type', 'json_object')));
END
$$;
COMMENT ON FUNCTION ventros.chat_completion_request(ventros.message_enrichments, jsonb) IS
    'Chat-completions request (OpenAI-compatible): POST <base_url>/v1/chat/completions, model, messages, temperature, response_format json_object';

SELECT ventros.register_enrichment_provider('openai_chat', 'chat', 'https://api.openai.com', 'gpt-4o-mini',
    'ventros.chat_completion_request(ventros.message_enrichments, jsonb)', 1,
    '{"per_input_token": 0.00000015, "per_output_token": 0.0000006}', timeout_ms => 60000,
    description => 'OpenAI chat completions (or any OpenAI-compatible server: set its base_url and model)');
SELECT ventros.register_enrichment_provider('groq_chat', 'chat', 'https://api.groq.com/openai', 'llama-3.1-8b-instant',
    'ventros.chat_completion_request(ventros.message_enrichments, jsonb)', 1,
    '{"per_input_token": 0.00000005, "per_output_token": 0.00000008}', timeout_ms => 60000,
    description => 'Groq chat completions (OpenAI-compatible)');

-- The default chat route: a completion that fails on the tenant's provider
-- (an error, 429, timeout, malformed answer) goes to the next of these that
-- has a key for the tenant (ventros.ai_chat_route).
INSERT INTO ventros.enrichment_routes (media_kind, position, provider) VALUES ('chat', 1, 'openai_chat'), ('chat', 2, 'groq_chat');

-- ---- per tenant -------------------------------------------------------------------------

CREATE TABLE ventros.ai_settings (
    tenant_id          text        NOT NULL DEFAULT ventros.current_tenant(),
    provider           text        NOT NULL DEFAULT 'openai_chat' REFERENCES ventros.enrichment_providers (provider),
    summary_prompt     text,
    agent_prompt       text,
    temperature        numeric     NOT NULL DEFAULT 0.2,
    retry_delay        interval    NOT NULL DEFAULT interval '1 minute',
    max_attempts       integer     NOT NULL DEFAULT 5,
    handoff_keywords   text[]      NOT NULL DEFAULT '{falar com humano,atendente,human agent}',
    negative_threshold numeric     NOT NULL DEFAULT -0.5,
    max_turns          integer     NOT NULL DEFAULT 10,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    knowledge_snippets integer     NOT NULL DEFAULT 5,
    PRIMARY KEY (tenant_id),
    CONSTRAINT ai_settings_knowledge CHECK (knowledge_snippets BETWEEN 0 AND 50),
    CONSTRAINT ai_settings_prompts CHECK (length(summary_prompt) <= 8000 AND length(agent_prompt) <= 8000),
    CONSTRAINT ai_settings_numbers CHECK (temperature BETWEEN 0 AND 2 AND max_attempts BETWEEN 1 AND 20
                                          AND negative_threshold BETWEEN -1 AND 1 AND max_turns BETWEEN 1 AND 100
                                          AND retry_delay >= interval '1 second')
);
COMMENT ON TABLE ventros.ai_settings IS
    'A tenant''s conversation intelligence and AI agent: the chat provider, the summary and agent prompts (NULL: the defaults), temperature, retry delay and attempts, hand-off keywords, the sentiment at or below which the agent hands off, the turns after which it does, how many knowledge snippets (the most relevant) a question gets';
ALTER TABLE ventros.ai_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.ai_settings FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_select ON ventros.ai_settings FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.ai_settings TO ventros_viewer;

CREATE TABLE ventros.ai_completions (
    tenant_id    text        NOT NULL,
    id           uuid        NOT NULL DEFAULT gen_random_uuid(),
    kind         text        NOT NULL,
    session_id   uuid        NOT NULL,
    group_id     uuid,
    provider     text,
    model        text,
    status       text        NOT NULL DEFAULT 'queued',
    request_id   uuid,
    attempts     integer     NOT NULL DEFAULT 0,
    error_code   text,
    error        text,
    retry_at     timestamptz,
    usage        jsonb,
    cost         numeric,
    result       jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    route_position integer,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES ventros.sessions (tenant_id, id),
    FOREIGN KEY (tenant_id, group_id) REFERENCES ventros.message_groups (tenant_id, id),
    CONSTRAINT ai_completions_kind CHECK (kind IN ('session_summary', 'agent_reply')),
    CONSTRAINT ai_completions_status CHECK (status IN ('queued', 'processing', 'completed', 'failed')),
    CONSTRAINT ai_completions_group CHECK ((kind = 'agent_reply') = (group_id IS NOT NULL)),
    CONSTRAINT ai_completions_error_size CHECK (length(error) <= 2000)
);
CREATE INDEX ai_completions_by_session ON ventros.ai_completions (tenant_id, session_id, created_at);
CREATE INDEX ai_completions_retry ON ventros.ai_completions (tenant_id, retry_at) WHERE status = 'failed' AND retry_at IS NOT NULL;
CREATE INDEX ai_completions_spending ON ventros.ai_completions (tenant_id, completed_at) WHERE cost IS NOT NULL;
COMMENT ON TABLE ventros.ai_completions IS
    'A chat completion asked for a session''s summary or an AI agent reply: provider (and its position on the tenant''s chat route), model, status, attempts (every provider request), error code and retry time, usage and cost (USD), the validated answer';
ALTER TABLE ventros.ai_completions ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.ai_completions FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_select ON ventros.ai_completions FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.ai_completions TO ventros_viewer;

CREATE VIEW ventros.enrichment_status WITH (security_invoker = true) AS
    SELECT s.tenant_id, s.enabled, s.auto, s.monthly_cap, sp.spent AS spent_this_month,
           s.monthly_cap IS NOT NULL AND sp.spent >= s.monthly_cap AS cap_reached,
           (SELECT coalesce(jsonb_object_agg(p.provider, jsonb_build_object(
                   'enabled', coalesce(ps.enabled, false), 'has_key', ps.credential_id IS NOT NULL,
                   'base_url', coalesce(ps.base_url, p.base_url), 'model', coalesce(ps.model, p.model))), '{}')
              FROM ventros.enrichment_providers p
              LEFT JOIN ventros.enrichment_provider_settings ps ON ps.tenant_id = s.tenant_id AND ps.provider = p.provider) AS providers
      FROM ventros.enrichment_settings s,
           -- the one ledger (as ai_spending), of the row's tenant: readable
           -- without an acting tenant (platform administrators)
           LATERAL (SELECT coalesce((SELECT sum(e.cost) FROM ventros.message_enrichments e
                                      WHERE e.tenant_id = s.tenant_id AND e.cost IS NOT NULL
                                        AND e.processed_at >= date_trunc('month', now())), 0)
                         + coalesce((SELECT sum(c.cost) FROM ventros.ai_completions c
                                      WHERE c.tenant_id = s.tenant_id AND c.cost IS NOT NULL
                                        AND c.completed_at >= date_trunc('month', now())), 0) AS spent) sp;
COMMENT ON VIEW ventros.enrichment_status IS
    'The acting tenant''s enrichment: on or off, the AI cap and this month''s AI spending (enrichments and chat completions), per provider whether it is enabled and has a key (never the key)';
GRANT SELECT ON ventros.enrichment_status TO ventros_viewer;

SELECT ventros.register_event_type(e, d) FROM (VALUES
    ('session.ai_requested', 'A chat completion was asked for a session (a summary or an AI agent reply): provider, model, attempt.'),
    ('session.summary_failed', 'A session''s summary failed (provider error, malformed answer, cap): the error code and when it is tried again.')) v(e, d);

CREATE FUNCTION ventros.configure_ai(provider text DEFAULT NULL, summary_prompt text DEFAULT NULL, agent_prompt text DEFAULT NULL,
                                     temperature numeric DEFAULT NULL, retry_delay interval DEFAULT NULL,
                                     max_attempts integer DEFAULT NULL, handoff_keywords text[] DEFAULT NULL,
                                     negative_threshold numeric DEFAULT NULL, max_turns integer DEFAULT NULL,
                                     knowledge_snippets integer DEFAULT NULL)
RETURNS ventros.ai_settings
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    result ventros.ai_settings;
BEGIN
    -- SECURITY DEFINER: the settings are written by this function only
    IF provider IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ventros.enrichment_providers p
                                             WHERE p.provider = configure_ai.provider AND p.kind = 'chat') THEN
        RAISE EXCEPTION 'unknown chat provider "%"', left(provider, 64) USING ERRCODE = '22023',
            HINT = 'See ventros.enrichment_providers where kind = ''chat''.';
    END IF;
    INSERT INTO ventros.ai_settings AS s (tenant_id) VALUES (tenant) ON CONFLICT ON CONSTRAINT ai_settings_pkey DO NOTHING;
    UPDATE ventros.ai_settings s
       SET provider = coalesce(configure_ai.provider, s.provider),
           summary_prompt = coalesce(nullif(configure_ai.summary_prompt, ''), s.summary_prompt),
           agent_prompt = coalesce(nullif(configure_ai.agent_prompt, ''), s.agent_prompt),
           temperature = coalesce(configure_ai.temperature, s.temperature),
           retry_delay = coalesce(configure_ai.retry_delay, s.retry_delay),
           max_attempts = coalesce(configure_ai.max_attempts, s.max_attempts),
           handoff_keywords = coalesce(configure_ai.handoff_keywords, s.handoff_keywords),
           negative_threshold = coalesce(configure_ai.negative_threshold, s.negative_threshold),
           max_turns = coalesce(configure_ai.max_turns, s.max_turns),
           knowledge_snippets = coalesce(configure_ai.knowledge_snippets, s.knowledge_snippets),
           updated_at = now()
     WHERE s.tenant_id = tenant
    RETURNING * INTO result;
    RETURN result;
EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION 'invalid AI settings: %', SQLERRM USING ERRCODE = '22023';
END
$$;
COMMENT ON FUNCTION ventros.configure_ai(text, text, text, numeric, interval, integer, text[], numeric, integer, integer) IS
    'Sets the tenant''s chat provider (openai_chat, groq_chat; its key, base URL and model: configure_enrichment_provider), summary and agent prompts, temperature, retry delay and attempts, hand-off keywords, negative sentiment threshold and turns, how many knowledge snippets (0-50, the most relevant; default 5) a question gets; NULL keeps a value';

-- The acting tenant's settings (the defaults when it set none).
CREATE FUNCTION ventros.current_ai_settings() RETURNS ventros.ai_settings
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    s ventros.ai_settings;
BEGIN
    SELECT * INTO s FROM ventros.ai_settings x WHERE x.tenant_id = tenant;
    IF NOT FOUND THEN
        s := jsonb_populate_record(NULL::ventros.ai_settings, jsonb_build_object(
                 'tenant_id', tenant, 'provider', 'openai_chat', 'temperature', 0.2, 'retry_delay', '1 minute',
                 'max_attempts', 5, 'handoff_keywords', ARRAY['falar com humano', 'atendente', 'human agent'],
                 'negative_threshold', -0.5, 'max_turns', 10, 'knowledge_snippets', 5));
    END IF;
    RETURN s;
END
$$;
COMMENT ON FUNCTION ventros.current_ai_settings() IS 'The acting tenant''s AI settings, the defaults when it set none';

-- ---- the default prompts -------------------------------------------------------------------

CREATE FUNCTION ventros.ai_default_summary_prompt() RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'You analyse a customer service conversation for the business''s team.'::text
$$;
COMMENT ON FUNCTION ventros.ai_default_summary_prompt() IS 'The instructions of a session summary when the tenant set none';

-- The answer a summary must be, appended to any prompt (the tenant's
-- prompt changes the instructions, never the shape the handler validates).
CREATE FUNCTION ventros.ai_summary_format() RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'Answer with one JSON object only, with these keys: '
        || '"summary" (string, at most 5 sentences, in the conversation''s language), '
        || '"sentiment" (object: "score", a number from -1 (very negative) to 1 (very positive), and "label", one of '
        || '"positive", "neutral", "negative", "mixed"), "language" (ISO-639-1 code of the customer''s language), '
        || '"topics" (array of at most 5 short lower-case strings), "next_best_action" (string: what the business should do next).'
$$;
COMMENT ON FUNCTION ventros.ai_summary_format() IS 'The JSON answer a session summary asks for (appended to the tenant''s prompt or the default)';

-- A session's conversation as chat messages: the customer is the user, the
-- business the assistant; text only (with a media message's extracted
-- text); the last max_messages, oldest first.
CREATE FUNCTION ventros.ai_conversation(session_id uuid, max_messages integer DEFAULT 50) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('role', CASE WHEN x.from_me THEN 'assistant' ELSE 'user' END,
                                                 'content', x.content) ORDER BY x."timestamp", x.id), '[]')
      FROM (SELECT m.id, m.from_me, m."timestamp",
                   left(concat_ws(E'\n', m.text, (SELECT e.extracted_text FROM ventros.message_enrichments e
                                                   WHERE e.tenant_id = m.tenant_id AND e.message_id = m.id
                                                     AND e.status = 'completed' AND e.deleted_at IS NULL
                                                   ORDER BY e.processed_at DESC LIMIT 1)), 4000) AS content
              FROM ventros.messages m
             WHERE m.tenant_id = ventros.require_tenant() AND m.session_id = ai_conversation.session_id
               AND m.deleted_at IS NULL
             ORDER BY m."timestamp" DESC, m.id DESC
             LIMIT max_messages) x
     WHERE x.content <> ''
$$;
COMMENT ON FUNCTION ventros.ai_conversation(uuid, integer) IS
    'A session''s last messages as chat-completion messages (customer: user, business: assistant; media by their extracted text), oldest first';

-- ---- one completion -------------------------------------------------------------------------

-- The messages of a completion: a summary's system prompt and the
-- conversation as one user message; an agent reply's are the agent's
-- (ventros.ai_agent_messages, sql/98_intelligence_agent.sql).
CREATE FUNCTION ventros.ai_completion_messages(c ventros.ai_completions, s ventros.ai_settings) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF c.kind = 'agent_reply' THEN
        RETURN ventros.ai_agent_messages(c, s);
    END IF;
    RETURN jsonb_build_array(
        jsonb_build_object('role', 'system', 'content',
                           coalesce(s.summary_prompt, ventros.ai_default_summary_prompt()) || ' ' || ventros.ai_summary_format()),
        jsonb_build_object('role', 'user', 'content',
            'The conversation (JSON, oldest first):' || E'\n' || ventros.ai_conversation(c.session_id)::text));
END
$$;
COMMENT ON FUNCTION ventros.ai_completion_messages(ventros.ai_completions, ventros.ai_settings) IS
    'The chat messages of a completion: the summary prompt and the conversation, or the AI agent''s';

-- Fails a completion: error code, why, and (when it may be tried again and
-- attempts remain) a retry time with backoff; emits its kind's failure.
CREATE FUNCTION ventros.ai_completion_fail(c ventros.ai_completions, code text, why text, retryable boolean,
                                           not_before timestamptz DEFAULT NULL)
RETURNS ventros.ai_completions
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.ai_settings := ventros.current_ai_settings();
    next_at timestamptz;
BEGIN
    IF retryable AND c.attempts < s.max_attempts THEN
        next_at := greatest(now() + s.retry_delay * power(2, greatest(c.attempts - 1, 0)), not_before);
    ELSIF code IN ('spending_cap', 'usage_limit') THEN
        next_at := not_before;
    END IF;
    UPDATE ventros.ai_completions x
       SET status = 'failed', error_code = code, error = left(why, 2000), retry_at = next_at, request_id = NULL,
           updated_at = now()
     WHERE x.tenant_id = c.tenant_id AND x.id = c.id
    RETURNING * INTO c;
    IF c.kind = 'session_summary' THEN
        PERFORM ventros.emit('session.summary_failed', 'session', c.session_id,
            jsonb_build_object('completion_id', c.id, 'error_code', code, 'error', c.error, 'attempts', c.attempts,
                               'retry_at', c.retry_at));
    ELSE
        PERFORM ventros.ai_agent_failed(c);
    END IF;
    RETURN c;
END
$$;
COMMENT ON FUNCTION ventros.ai_completion_fail(ventros.ai_completions, text, text, boolean, timestamptz) IS
    'Fails a completion with an error code and a retry time (retry_delay x 2^(attempts-1), at most max_attempts); emits session.summary_failed or the agent''s failure';

-- The tenant's chat route: its provider (ai_settings.provider) first, then
-- the other providers of the route of kind chat (the routing table of
-- enrichment, ventros.enrichment_routes, or the tenant's own,
-- set_enrichment_route('chat', ...)), in order.
CREATE FUNCTION ventros.ai_chat_route(s ventros.ai_settings) RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ARRAY[s.provider] || array_remove(ventros.enrichment_route('chat'), s.provider)
$$;
COMMENT ON FUNCTION ventros.ai_chat_route(ventros.ai_settings) IS
    'The chat providers a completion tries, in order: the tenant''s provider, then the rest of its chat route (enrichment_route(''chat''))';

-- ai_completion_route: the completion goes to the first provider of the
-- chat route, from a position on, that is enabled and has a key, unless
-- the AI gate refuses (one dispatcher request, the key added at claim
-- time).  failure: the previous provider's ({error_code, error,
-- not_before}), when this is a fallback; with no provider left the
-- completion fails with it (retried from the route's start), or with
-- no_provider when none was tried.
CREATE FUNCTION ventros.ai_completion_route(c ventros.ai_completions, from_position integer, failure jsonb DEFAULT NULL)
RETURNS ventros.ai_completions
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.ai_settings := ventros.current_ai_settings();
    route text[] := ventros.ai_chat_route(s);
    p ventros.enrichment_providers;
    ps ventros.enrichment_provider_settings;
    es ventros.enrichment_settings;
    pos integer;
    cfg jsonb;
    rid uuid;
    refusal record;
BEGIN
    FOR i IN greatest(from_position, 1)..coalesce(cardinality(route), 0) LOOP
        SELECT * INTO ps FROM ventros.enrichment_provider_settings x WHERE x.tenant_id = c.tenant_id AND x.provider = route[i];
        IF coalesce(ps.enabled, false) AND ps.credential_id IS NOT NULL THEN
            pos := i;
            EXIT;
        END IF;
    END LOOP;
    IF pos IS NULL AND failure IS NOT NULL THEN
        RETURN ventros.ai_completion_fail(c, failure->>'error_code', failure->>'error', true,
                                          (failure->>'not_before')::timestamptz);
    ELSIF pos IS NULL THEN
        c.provider := s.provider;
        RETURN ventros.ai_completion_fail(c, 'no_provider',
            format('no chat provider of the route (%s) has a key for this tenant (configure_enrichment_provider)',
                   array_to_string(route, ', ')), false);
    END IF;
    refusal := ventros.ai_request_refusal('ai_completions', 'session', c.session_id);
    IF refusal.error_code IS NOT NULL THEN
        RETURN ventros.ai_completion_fail(c, refusal.error_code, refusal.error, false, refusal.retry_at);
    END IF;
    SELECT * INTO p FROM ventros.enrichment_providers x WHERE x.provider = route[pos];
    SELECT * INTO es FROM ventros.enrichment_settings x WHERE x.tenant_id = c.tenant_id;
    cfg := ventros.enrichment_config(p, ps, es)
        || jsonb_build_object('temperature', s.temperature, 'messages', ventros.ai_completion_messages(c, s));
    rid := ventros.enrichment_enqueue(jsonb_populate_record(NULL::ventros.message_enrichments,
                                          jsonb_build_object('tenant_id', c.tenant_id, 'id', c.id)),
                                      p, cfg, ventros.chat_completion_request(NULL, cfg));
    UPDATE ventros.ai_completions x
       SET status = 'processing', provider = p.provider, model = cfg->>'model', request_id = rid, route_position = pos,
           attempts = x.attempts + 1, error_code = NULL, error = NULL, retry_at = NULL, updated_at = now()
     WHERE x.tenant_id = c.tenant_id AND x.id = c.id
    RETURNING * INTO c;
    PERFORM ventros.emit('session.ai_requested', 'session', c.session_id,
        jsonb_strip_nulls(jsonb_build_object('completion_id', c.id, 'kind', c.kind, 'group_id', c.group_id,
                                             'provider', c.provider, 'model', c.model, 'attempt', c.attempts,
                                             'fallback_from', failure - 'not_before')));
    RETURN c;
END
$$;
COMMENT ON FUNCTION ventros.ai_completion_route(ventros.ai_completions, integer, jsonb) IS
    'Gives a completion to the first provider of the tenant''s chat route from a position on that is enabled and has a key, unless the AI gate refuses; with none left, fails it with the previous provider''s failure (or no_provider); emits session.ai_requested (fallback_from: the failure it follows)';

-- Starts (or starts again) a completion: from the start of the route.
CREATE FUNCTION ventros.ai_completion_start(c ventros.ai_completions) RETURNS ventros.ai_completions
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.ai_completion_route(c, 1) $$;
COMMENT ON FUNCTION ventros.ai_completion_start(ventros.ai_completions) IS
    'Asks the first provider of the tenant''s chat route that has a key for a completion (ai_completion_route) unless the AI gate refuses (spending cap, plan limit); emits session.ai_requested';

-- summarize_session(session_id): on demand, or the automation action
-- summarize_session.  Returns the completion; its answer lands on the
-- session (summarize_session with the answer's fields).
CREATE FUNCTION ventros.summarize_session(session_id uuid) RETURNS ventros.ai_completions
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    c ventros.ai_completions;
BEGIN
    -- SECURITY DEFINER: completions and their requests are written here only,
    -- for the acting tenant's session
    PERFORM 1 FROM ventros.sessions x WHERE x.tenant_id = tenant AND x.id = summarize_session.session_id AND x.deleted_at IS NULL;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('session', session_id);
    END IF;
    -- one summary in flight per session
    SELECT * INTO c FROM ventros.ai_completions x
     WHERE x.tenant_id = tenant AND x.session_id = summarize_session.session_id AND x.kind = 'session_summary'
       AND x.status IN ('queued', 'processing');
    IF FOUND THEN
        RETURN c;
    END IF;
    -- refused once the period's AI tokens reached the plan's limit (VN020; sql/65_usage_metering.sql)
    PERFORM ventros.check_plan_limit('ai_tokens', 1);
    INSERT INTO ventros.ai_completions (tenant_id, kind, session_id) VALUES (tenant, 'session_summary', session_id)
    RETURNING * INTO c;
    RETURN ventros.ai_completion_start(c);
END
$$;
COMMENT ON FUNCTION ventros.summarize_session(uuid) IS
    'Asks the tenant''s chat provider for a session''s summary, sentiment, language, topics and next best action (one in flight per session); the answer sets them on the session with session.summarized';

-- ---- answers -----------------------------------------------------------------------------

-- A number within bounds, or NULL.
CREATE FUNCTION ventros.ai_number(v jsonb, lo numeric, hi numeric) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN jsonb_typeof(v) = 'number' AND (v #>> '{}')::numeric BETWEEN lo AND hi THEN (v #>> '{}')::numeric END
$$;
COMMENT ON FUNCTION ventros.ai_number(jsonb, numeric, numeric) IS 'A JSON number within [lo, hi], else NULL';

-- A summary answer validated and set on the session: NULL when done, else
-- what is wrong with it.
CREATE FUNCTION ventros.ai_summary_apply(c ventros.ai_completions, j jsonb) RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    score numeric := ventros.ai_number(coalesce(j->'sentiment'->'score', j->'sentiment_score'), -1, 1);
    label text := coalesce(j->'sentiment'->>'label', j->>'sentiment_label');
    topics jsonb := j->'topics';
BEGIN
    IF jsonb_typeof(j->'summary') IS DISTINCT FROM 'string' OR btrim(j->>'summary') = '' THEN
        RETURN 'no "summary" string';
    ELSIF score IS NULL THEN
        RETURN 'no "sentiment.score" number between -1 and 1';
    ELSIF label IS NULL OR label NOT IN ('positive', 'neutral', 'negative', 'mixed') THEN
        RETURN 'no "sentiment.label" among positive, neutral, negative, mixed';
    ELSIF topics IS NOT NULL AND (jsonb_typeof(topics) <> 'array'
                                  OR EXISTS (SELECT 1 FROM jsonb_array_elements(topics) t WHERE jsonb_typeof(t) <> 'string')) THEN
        RETURN '"topics" is not an array of strings';
    ELSIF j ? 'language' AND coalesce(j->>'language', '') !~ '^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?$' THEN
        RETURN '"language" is not a language code';
    END IF;
    PERFORM ventros.summarize_session(c.session_id, left(j->>'summary', 20000), label, score,
        (SELECT jsonb_agg(lower(left(t, 100))) FROM jsonb_array_elements_text(coalesce(topics, '[]')) t),
        CASE WHEN jsonb_typeof(j->'next_best_action') = 'string' THEN jsonb_build_array(left(j->>'next_best_action', 2000)) END);
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.ai_summary_apply(ventros.ai_completions, jsonb) IS
    'Validates a summary answer (summary, sentiment score and label, language, topics) and sets it on the session (session.summarized); returns what is wrong, NULL when done';

-- The handler of every chat provider's requests (purpose enrichment.<chat
-- provider>): usage and cost, the JSON answer validated, then the
-- completion's kind applies it; a failure is retried with backoff.
CREATE FUNCTION ventros.ai_chat_answer(r ventros.http_requests) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c ventros.ai_completions;
    a jsonb := ventros.json_body(r.response_body);
    content text;
    j jsonb;
    u jsonb;
    wrong text;
    after_s text := r.response_headers->>'retry-after';
BEGIN
    SELECT * INTO c FROM ventros.ai_completions x
     WHERE x.tenant_id = r.tenant_id AND x.id = r.correlation_id AND x.request_id = r.id AND x.status = 'processing'
     FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;                 -- an answer to an older attempt
    END IF;
    -- a failure moves to the next provider of the route at once; the last
    -- one's fails the completion (retried with backoff from the start)
    IF r.status <> 'succeeded' THEN
        PERFORM ventros.ai_completion_route(c, c.route_position + 1, jsonb_build_object(
            'error_code', CASE r.response_status WHEN 429 THEN 'rate_limited' ELSE 'provider_error' END,
            'error', ventros.enrichment_error_text(r), 'provider', c.provider,
            'not_before', CASE WHEN after_s ~ '^[0-9]{1,7}$' THEN now() + make_interval(secs => after_s::integer) END));
        RETURN;
    END IF;
    -- tokens are spent even when the answer is unusable: usage and cost
    -- first, summed over the completion's attempts
    u := jsonb_strip_nulls(jsonb_build_object('input_tokens', a->'usage'->'prompt_tokens',
                                              'output_tokens', a->'usage'->'completion_tokens'));
    UPDATE ventros.ai_completions x
       SET usage = (SELECT jsonb_object_agg(k, coalesce((x.usage->>k)::numeric, 0) + (u->>k)::numeric)
                      FROM jsonb_object_keys(u) k),
           model = coalesce(a->>'model', x.model), completed_at = now(),
           cost = coalesce(x.cost, 0)
                  + ventros.enrichment_cost((SELECT p.prices FROM ventros.enrichment_providers p WHERE p.provider = x.provider), u)
     WHERE x.tenant_id = c.tenant_id AND x.id = c.id
    RETURNING * INTO c;
    -- the tenant's usage, as an enrichment's (sql/65_usage_metering.sql)
    PERFORM ventros.meter_usage(ARRAY['ai_completions', 'ai_tokens'],
        ARRAY[1, (coalesce((u->>'input_tokens')::numeric, 0) + coalesce((u->>'output_tokens')::numeric, 0))::bigint]);
    content := a->'choices'->0->'message'->>'content';
    -- a JSON object, possibly in a markdown code fence
    j := ventros.json_body(convert_to(regexp_replace(coalesce(content, ''), '^\s*```(json)?\s*|\s*```\s*$', '', 'g'), 'UTF8'));
    IF jsonb_typeof(j) IS DISTINCT FROM 'object' THEN
        wrong := 'the answer is not a JSON object: '
                 || left(coalesce(content, convert_from(coalesce(r.response_body, ''), 'SQL_ASCII')), 200);
    ELSE
        wrong := 'the answer has '
                 || CASE c.kind WHEN 'session_summary' THEN ventros.ai_summary_apply(c, j) ELSE ventros.ai_agent_apply(c, j) END;
    END IF;
    IF wrong IS NOT NULL THEN
        PERFORM ventros.ai_completion_route(c, c.route_position + 1,
            jsonb_build_object('error_code', 'malformed_answer', 'error', wrong, 'provider', c.provider));
        RETURN;
    END IF;
    UPDATE ventros.ai_completions x SET status = 'completed', result = j, updated_at = now()
     WHERE x.tenant_id = c.tenant_id AND x.id = c.id;
END
$$;
COMMENT ON FUNCTION ventros.ai_chat_answer(ventros.http_requests) IS
    'Answer handler of chat providers: records usage and cost, meters one ai_completions and the tokens, validates the JSON answer and applies it (summary or agent reply); an error, 429 or malformed answer moves to the next provider of the chat route, and fails the completion with a retry time after the last';
