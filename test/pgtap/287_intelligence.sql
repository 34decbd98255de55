-- Conversation intelligence in SQL (docs/ai.md), without the dispatcher: the
-- chat-completions request summarize_session queues (no key on the row, the
-- key added by the preparer), answers written here and handed to the
-- handler: malformed (failure, event, retry with backoff), valid (summary,
-- sentiment, topics on the session, session.summarized, cost), 429 with
-- Retry-After, no key, the cap; the automation action summarize_session on
-- session.ended and rules conditioned on sentiment and topics.
-- End to end over HTTP: test/integration/intelligence.test.mjs.
BEGIN;
SELECT * FROM no_plan();

SELECT ventros.create_tenant('intel_t1', 'Intelligence SQL');
SET LOCAL ventros.tenant = 'intel_t1';
CREATE TEMP TABLE ids (k text PRIMARY KEY, id uuid);
CREATE FUNCTION pg_temp.id(k text) RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM ids WHERE ids.k = $1 $$;

INSERT INTO ids SELECT 'ch', ventros_test.new_channel();
INSERT INTO ids SELECT 'key', id FROM ventros.create_credential('llm', 'api_key', 'sk-intel-pgtap-secret');
INSERT INTO ids SELECT 'm1', id FROM ventros.receive_message(pg_temp.id('ch'), '+5511900001111', 'Meu pedido chegou quebrado, quero reembolso!',
                                                            sender_name => 'Bia');
INSERT INTO ids SELECT 's1', session_id FROM ventros.messages WHERE id = pg_temp.id('m1');

-- the completion's pending request answered: status, HTTP status, body, headers; then its handler
CREATE FUNCTION pg_temp.answer(c uuid, st text, code integer, answer text, hdrs jsonb DEFAULT '{}') RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r ventros.http_requests;
BEGIN
    UPDATE ventros.http_requests x
       SET status = st, response_status = code, response_body = convert_to(answer, 'UTF8'), response_headers = hdrs,
           attempts = 1, completed_at = now(), last_error = CASE WHEN st <> 'succeeded' THEN 'HTTP ' || code END
     WHERE x.tenant_id = 'intel_t1' AND x.correlation_id = c AND x.status = 'pending'
    RETURNING * INTO r;
    PERFORM ventros.run_http_request_handler(r);
    RETURN r.purpose;
END
$$;
-- an OpenAI chat-completions answer whose message content is `content`
CREATE FUNCTION pg_temp.chat(content text) RETURNS text LANGUAGE sql AS $$
    SELECT jsonb_build_object('id', 'chatcmpl-1', 'object', 'chat.completion', 'model', 'gpt-4o-mini-2024-07-18',
        'choices', jsonb_build_array(jsonb_build_object('index', 0, 'finish_reason', 'stop',
                                                        'message', jsonb_build_object('role', 'assistant', 'content', content))),
        'usage', jsonb_build_object('prompt_tokens', 1000, 'completion_tokens', 100, 'total_tokens', 1100))::text
$$;
CREATE FUNCTION pg_temp.comp(c uuid) RETURNS ventros.ai_completions LANGUAGE sql AS $$
    SELECT * FROM ventros.ai_completions WHERE id = c
$$;
CREATE FUNCTION pg_temp.events(agg uuid) RETURNS text[] LANGUAGE sql AS $$
    SELECT array_agg(event_type ORDER BY seq) FROM ventros.outbox WHERE aggregate_id = agg
$$;
CREATE FUNCTION pg_temp.good(label text, score numeric) RETURNS text LANGUAGE sql AS $$
    SELECT pg_temp.chat(jsonb_build_object('summary', 'A cliente recebeu o pedido quebrado e pede reembolso.',
        'sentiment', jsonb_build_object('score', score, 'label', label), 'language', 'pt',
        'topics', jsonb_build_array('Refund', 'delivery'), 'next_best_action', 'Oferecer reembolso imediato.')::text)
$$;

-- ---- the providers and the request -------------------------------------------------------
SELECT is((SELECT array_agg(provider ORDER BY provider) FROM ventros.enrichment_providers WHERE kind = 'chat'),
          '{groq_chat,openai_chat}', 'two chat providers are declared');
SELECT is((ventros.summarize_session(pg_temp.id('s1'))).error_code, 'no_provider', 'no key: the completion fails with no_provider');
SELECT is((SELECT retry_at FROM ventros.ai_completions WHERE session_id = pg_temp.id('s1')), NULL, '... and is not retried');
SELECT ventros.configure_enrichment_provider('openai_chat', pg_temp.id('key'), base_url => 'https://llm.example/');
SELECT ventros.configure_ai(retry_delay => '1 minute', max_attempts => 3);
INSERT INTO ids SELECT 'c1', id FROM ventros.summarize_session(pg_temp.id('s1'));
SELECT is((pg_temp.comp(pg_temp.id('c1'))).status, 'processing', 'summarize_session queues a request');
SELECT is(ventros.summarize_session(pg_temp.id('s1')), pg_temp.comp(pg_temp.id('c1')), 'one summary in flight per session');
SELECT is((SELECT jsonb_build_object('url', url, 'purpose', purpose, 'auth', headers ? 'Authorization', 'attempts', max_attempts)
             FROM ventros.http_requests WHERE correlation_id = pg_temp.id('c1')),
          '{"url": "https://llm.example/v1/chat/completions", "purpose": "enrichment.openai_chat", "auth": false, "attempts": 1}'::jsonb,
          'the request: the tenant''s base URL, no key stored, one attempt');
SELECT is((SELECT jsonb_build_object('model', b->'model', 'format', b->'response_format', 'roles', jsonb_path_query_array(b, '$.messages[*].role'))
             FROM (SELECT convert_from(body, 'UTF8')::jsonb b FROM ventros.http_requests WHERE correlation_id = pg_temp.id('c1')) x),
          '{"model": "gpt-4o-mini", "format": {"type": "json_object"}, "roles": ["system", "user"]}'::jsonb,
          'the body: the default model, a JSON object asked for, the prompt and the conversation');
SELECT ok((SELECT convert_from(body, 'UTF8') LIKE '%quero reembolso%' FROM ventros.http_requests WHERE correlation_id = pg_temp.id('c1')),
          'the conversation is in it');
SELECT is((SELECT ventros.http_attempt_headers(r) FROM ventros.http_requests r WHERE correlation_id = pg_temp.id('c1')),
          '{"Content-Type": "application/json", "Authorization": "Bearer sk-intel-pgtap-secret"}'::jsonb,
          'the preparer adds the key when the attempt is claimed');
SELECT ok('session.ai_requested' = ANY (pg_temp.events(pg_temp.id('s1'))), 'session.ai_requested');

-- ---- a malformed answer: failure, event, retry with backoff --------------------------------
SELECT pg_temp.answer(pg_temp.id('c1'), 'succeeded', 200, pg_temp.chat('Claro! Aqui está o resumo: a cliente está chateada.'));
SELECT is((SELECT jsonb_build_object('status', status, 'code', error_code, 'attempts', attempts,
                                     'retry', retry_at BETWEEN now() + interval '59 seconds' AND now() + interval '61 seconds',
                                     'usage', usage, 'cost', cost > 0)
             FROM pg_temp.comp(pg_temp.id('c1'))),
          '{"status": "failed", "code": "malformed_answer", "attempts": 1, "retry": true,
            "usage": {"input_tokens": 1000, "output_tokens": 100}, "cost": true}'::jsonb,
          'malformed: failed, retried after retry_delay, the tokens spent still counted');
SELECT ok('session.summary_failed' = ANY (pg_temp.events(pg_temp.id('s1'))), 'session.summary_failed');
SELECT is((SELECT summary FROM ventros.sessions WHERE id = pg_temp.id('s1')), NULL, 'nothing stored on the session');
SELECT is(ventros.retry_ai_completions(now()), 0, 'not before its retry time');
SELECT is(ventros.retry_ai_completions(now() + interval '2 minutes'), 1, 'then it starts again');
-- a JSON answer of the wrong shape is malformed too; the second retry waits twice as long
SELECT pg_temp.answer(pg_temp.id('c1'), 'succeeded', 200, pg_temp.chat('{"summary": "ok", "sentiment": {"score": 3, "label": "negative"}}'));
SELECT is((SELECT error FROM pg_temp.comp(pg_temp.id('c1'))),
          'the answer has no "sentiment.score" number between -1 and 1', 'the error says what is wrong');
SELECT ok((SELECT retry_at BETWEEN now() + interval '119 seconds' AND now() + interval '121 seconds' FROM pg_temp.comp(pg_temp.id('c1'))),
          'backoff: retry_delay x 2');
SELECT is(ventros.retry_ai_completions(now() + interval '3 minutes'), 1, 'third attempt');

-- ---- a valid answer ------------------------------------------------------------------------
SELECT pg_temp.answer(pg_temp.id('c1'), 'succeeded', 200, pg_temp.good('negative', -0.8));
SELECT is((SELECT jsonb_build_object('summary', summary, 'sentiment', sentiment, 'score', sentiment_score, 'topics', topics,
                                     'next', next_steps)
             FROM ventros.sessions WHERE id = pg_temp.id('s1')),
          '{"summary": "A cliente recebeu o pedido quebrado e pede reembolso.", "sentiment": "negative", "score": -0.8,
            "topics": ["refund", "delivery"], "next": ["Oferecer reembolso imediato."]}'::jsonb,
          'summary, sentiment, topics and next best action are on the session');
SELECT ok('session.summarized' = ANY (pg_temp.events(pg_temp.id('s1'))), 'session.summarized');
SELECT is((SELECT jsonb_build_object('status', status, 'language', result->>'language', 'model', model, 'cost', cost)
             FROM pg_temp.comp(pg_temp.id('c1'))),
          '{"status": "completed", "language": "pt", "model": "gpt-4o-mini-2024-07-18", "cost": 0.00063}'::jsonb,
          'the completion: completed, the language, the model the provider named, the cost of its three answers (3 x (1000 x 0.15 + 100 x 0.6 per M))');
SELECT is((pg_temp.comp(pg_temp.id('c1'))).usage, '{"input_tokens": 3000, "output_tokens": 300}'::jsonb, 'usage summed over the attempts');
SELECT is(ventros.ai_spending(), 0.00063, 'the month''s AI spending counts every answer''s tokens');
-- metered as an enrichment is: one ai_completions per provider answer, and its tokens
SELECT results_eq($$SELECT metric, quantity FROM ventros.usage_status() WHERE metric IN ('ai_completions', 'ai_tokens') ORDER BY 1$$,
                  $$VALUES ('ai_completions', 3::bigint), ('ai_tokens', 3300::bigint)$$,
                  'completions are metered: three answers and their 3300 tokens');
SELECT is(pg_temp.answer(pg_temp.id('c1'), 'succeeded', 200, pg_temp.good('positive', 1)), NULL, 'nothing pending any more');

-- ---- 429 with Retry-After; attempts run out -------------------------------------------------
INSERT INTO ids SELECT 's2', (ventros.start_or_continue_session(ventros_test.new_contact(), pg_temp.id('ch'))).id;
INSERT INTO ids SELECT 'c2', id FROM ventros.summarize_session(pg_temp.id('s2'));
SELECT pg_temp.answer(pg_temp.id('c2'), 'dead', 429, '{"error": {"message": "Rate limit reached for gpt-4o-mini"}}', '{"retry-after": "600"}');
SELECT is((SELECT jsonb_build_object('code', error_code, 'error', error, 'retry', retry_at >= now() + interval '600 seconds')
             FROM pg_temp.comp(pg_temp.id('c2'))),
          '{"code": "rate_limited", "error": "HTTP 429: Rate limit reached for gpt-4o-mini", "retry": true}'::jsonb,
          '429: rate_limited, retried no sooner than Retry-After');
SELECT ventros.retry_ai_completions(now() + interval '1 hour');
SELECT pg_temp.answer(pg_temp.id('c2'), 'dead', 500, '{"error": {"message": "boom"}}');
SELECT ventros.retry_ai_completions(now() + interval '1 hour');
SELECT pg_temp.answer(pg_temp.id('c2'), 'dead', 500, '{"error": {"message": "boom"}}');
SELECT is((SELECT jsonb_build_object('attempts', attempts, 'code', error_code, 'retry', retry_at) FROM pg_temp.comp(pg_temp.id('c2'))),
          '{"attempts": 3, "code": "provider_error", "retry": null}'::jsonb, 'after max_attempts: failed for good');

-- ---- the cap (the tenant's monthly cap counts enrichments and completions) ------------------
SELECT ventros.configure_enrichment(monthly_cap => 0.0005);
INSERT INTO ids SELECT 's3', (ventros.start_or_continue_session(ventros_test.new_contact(), pg_temp.id('ch'))).id;
SELECT is((SELECT jsonb_build_object('code', error_code, 'retry', retry_at = date_trunc('month', now()) + interval '1 month')
             FROM ventros.summarize_session(pg_temp.id('s3'))),
          '{"code": "spending_cap", "retry": true}'::jsonb, 'over the cap: no request, tried again next month');
-- one ledger: the enrichment gate sees the completions' spending too
SELECT is((SELECT jsonb_build_object('spent', spent_this_month, 'reached', cap_reached) FROM ventros.enrichment_status),
          '{"spent": 0.00063, "reached": true}'::jsonb, 'enrichment_status: the spending of enrichments and completions, against the cap');
SELECT is((SELECT error_code FROM ventros.ai_request_refusal('enrichments', 'message', pg_temp.id('m1'))), 'spending_cap',
          'an enrichment is refused by the chat completions'' spending');
SELECT is((SELECT count(*)::int FROM ventros.outbox WHERE event_type = 'billing.ai_spending_cap_reached'
             AND tenant_id = 'intel_t1'), 1, 'billing.ai_spending_cap_reached, once a month');
SELECT ventros.configure_enrichment(remove_cap => true);

-- ---- plan limits: completions count against them -------------------------------------------------
SET LOCAL ROLE ventros_platform_admin;
SELECT ventros.set_billing_plan('default', 'Free', '{"ai_completions": 3}');
RESET ROLE;
INSERT INTO ids SELECT 's3b', (ventros.start_or_continue_session(ventros_test.new_contact(), pg_temp.id('ch'))).id;
SELECT is((SELECT jsonb_build_object('code', error_code, 'error', error, 'retry', retry_at = (ventros.usage_period()).period_end)
             FROM ventros.summarize_session(pg_temp.id('s3b'))),
          '{"code": "usage_limit", "error": "the plan''s limit of 3 ai completions in this billing period is used up", "retry": true}'::jsonb,
          'the plan''s limit of ai_completions used up: no request, tried again next period');
SELECT is((SELECT payload->>'metric' FROM ventros.outbox WHERE event_type = 'billing.limit_reached' AND tenant_id = 'intel_t1'),
          'ai_completions', 'billing.limit_reached');
SET LOCAL ROLE ventros_platform_admin;
SELECT ventros.set_billing_plan('default', 'Free', '{}');
RESET ROLE;

-- ---- the chat route: a provider fails, the next one answers ------------------------------------------
INSERT INTO ids SELECT 'key2', id FROM ventros.create_credential('groq', 'api_key', 'gsk-intel-pgtap-secret');
SELECT ventros.configure_enrichment_provider('groq_chat', pg_temp.id('key2'), base_url => 'https://groq.example/openai');
SELECT is(ventros.ai_chat_route(ventros.current_ai_settings()), '{openai_chat,groq_chat}', 'the chat route: the tenant''s provider, then the others');
INSERT INTO ids SELECT 's6', (ventros.start_or_continue_session(ventros_test.new_contact(), pg_temp.id('ch'))).id;
INSERT INTO ids SELECT 'c6', id FROM ventros.summarize_session(pg_temp.id('s6'));
SELECT is((pg_temp.comp(pg_temp.id('c6'))).provider, 'openai_chat', 'the tenant''s provider is asked first');
SELECT pg_temp.answer(pg_temp.id('c6'), 'dead', 500, '{"error": {"message": "boom"}}');
SELECT is((SELECT jsonb_build_object('status', status, 'provider', provider, 'attempts', attempts, 'retry', retry_at)
             FROM pg_temp.comp(pg_temp.id('c6'))),
          '{"status": "processing", "provider": "groq_chat", "attempts": 2, "retry": null}'::jsonb,
          'a 500: the next provider of the route is asked at once');
SELECT is((SELECT url FROM ventros.http_requests WHERE correlation_id = pg_temp.id('c6') AND status = 'pending'),
          'https://groq.example/openai/v1/chat/completions', 'Groq''s chat completions, with the tenant''s base URL');
SELECT is((SELECT payload->'fallback_from' FROM ventros.outbox WHERE aggregate_id = pg_temp.id('s6')
             AND event_type = 'session.ai_requested' ORDER BY seq DESC LIMIT 1),
          '{"error_code": "provider_error", "error": "HTTP 500: boom", "provider": "openai_chat"}'::jsonb,
          'session.ai_requested names the failure it follows');
SELECT pg_temp.answer(pg_temp.id('c6'), 'succeeded', 200, pg_temp.good('neutral', 0));
SELECT is((SELECT jsonb_build_object('status', status, 'provider', provider) FROM pg_temp.comp(pg_temp.id('c6'))),
          '{"status": "completed", "provider": "groq_chat"}'::jsonb, 'the second provider answers: completed');
SELECT is((SELECT sentiment FROM ventros.sessions WHERE id = pg_temp.id('s6')), 'neutral', 'the summary is on the session');
-- a malformed answer moves on too; the last provider's 429 fails the completion, retried from the start
INSERT INTO ids SELECT 's7', (ventros.start_or_continue_session(ventros_test.new_contact(), pg_temp.id('ch'))).id;
INSERT INTO ids SELECT 'c7', id FROM ventros.summarize_session(pg_temp.id('s7'));
SELECT pg_temp.answer(pg_temp.id('c7'), 'succeeded', 200, pg_temp.chat('Claro! Aqui está o resumo.'));
SELECT is((pg_temp.comp(pg_temp.id('c7'))).provider, 'groq_chat', 'a malformed answer: the next provider is asked');
SELECT pg_temp.answer(pg_temp.id('c7'), 'dead', 429, '{"error": {"message": "slow down"}}', '{"retry-after": "120"}');
SELECT is((SELECT jsonb_build_object('status', status, 'code', error_code, 'retry', retry_at >= now() + interval '120 seconds')
             FROM pg_temp.comp(pg_temp.id('c7'))),
          '{"status": "failed", "code": "rate_limited", "retry": true}'::jsonb, 'the route''s last provider failing: failed, retried later');
SELECT is(ventros.retry_ai_completions(now() + interval '1 hour'), 1, 'the retry');
SELECT is((pg_temp.comp(pg_temp.id('c7'))).provider, 'openai_chat', 'starts from the route''s start again');
SELECT ventros.set_enrichment_route('chat', ARRAY['groq_chat']);
SELECT is(ventros.ai_chat_route(ventros.current_ai_settings()), '{openai_chat,groq_chat}', 'a tenant''s own chat route (set_enrichment_route)');
SELECT throws_ok($$SELECT ventros.set_enrichment_route('chat', ARRAY['groq'])$$, '22023', NULL, 'a media provider on the chat route is 22023');
SELECT throws_ok($$SELECT ventros.set_enrichment_route('audio', ARRAY['groq_chat'])$$, '22023', NULL, 'a chat provider on a media route is 22023');

-- ---- bad input -------------------------------------------------------------------------------
SELECT throws_ok($$SELECT ventros.summarize_session(gen_random_uuid())$$, 'P0002', NULL, 'an unknown session is P0002');
SELECT throws_ok($$SELECT ventros.configure_ai(provider => 'groq')$$, '22023', NULL, 'a provider that is not a chat provider is 22023');
SELECT throws_ok($$SELECT ventros.configure_ai(max_turns => 0)$$, '22023', NULL, 'settings out of range are 22023');

-- ---- when a session ends: the automation action; rules on sentiment and topics ----------------
INSERT INTO ids SELECT 'supervisor', id FROM ventros.create_agent('Sofia', email => 'sofia@intel.example', role => 'supervisor');
SELECT ventros.create_automation('Summarize ended sessions', 'session.ended', '[{"type": "summarize_session"}]',
                                 automation_type => 'event');
SELECT ventros.create_automation('Unhappy refunds to the supervisor', 'session.summarized',
    jsonb_build_array(jsonb_build_object('type', 'assign_agent',
                                         'params', jsonb_build_object('agent_id', pg_temp.id('supervisor'), 'reason', 'review'))),
    '[{"sentiment": ["negative", "mixed"]}, {"topic": "refund"}, {"sentiment_below": -0.5}]', automation_type => 'event');
SELECT throws_ok($$SELECT ventros.create_automation('bad', 'session.summarized', '[]', '[{"sentiment_below": "low"}]',
                                                   automation_type => 'event')$$,
                 '22023', NULL, 'a malformed sentiment condition is refused');
INSERT INTO ids SELECT 'm4', id FROM ventros.receive_message(pg_temp.id('ch'), '+5511900004444', 'Péssimo atendimento, quero reembolso');
INSERT INTO ids SELECT 's4', session_id FROM ventros.messages WHERE id = pg_temp.id('m4');
SELECT ventros.close_session(pg_temp.id('s4'));
SELECT is((SELECT count(*)::int FROM ventros.ai_completions WHERE session_id = pg_temp.id('s4')), 0,
          'nothing is asked in the transaction that ended the session');
SELECT ok(ventros_test.run_automations() >= 1, 'the executor runs the rule on session.ended');
INSERT INTO ids SELECT 'c4', id FROM ventros.ai_completions WHERE session_id = pg_temp.id('s4');
SELECT is((pg_temp.comp(pg_temp.id('c4'))).status, 'processing', 'the action summarize_session asked for the summary');
SELECT pg_temp.answer(pg_temp.id('c4'), 'succeeded', 200, pg_temp.good('negative', -0.9));
SELECT ok(ventros_test.run_automations() >= 1, 'the executor runs the rule on session.summarized');
SELECT is((SELECT assigned_agent_id FROM ventros.sessions WHERE id = pg_temp.id('s4')), pg_temp.id('supervisor'),
          'negative sentiment about a refund: the ended session is assigned to the supervisor for review');
SELECT is((SELECT payload->>'reason' FROM ventros.outbox WHERE aggregate_id = pg_temp.id('s4') AND event_type = 'session.agent_assigned'),
          'review', 'session.agent_assigned with reason review');
-- a positive summary does not meet the conditions
INSERT INTO ids SELECT 'm5', id FROM ventros.receive_message(pg_temp.id('ch'), '+5511900005555', 'Obrigada, adorei o reembolso rápido');
INSERT INTO ids SELECT 's5', session_id FROM ventros.messages WHERE id = pg_temp.id('m5');
SELECT ventros.close_session(pg_temp.id('s5'));
SELECT ventros_test.run_automations();
SELECT pg_temp.answer((SELECT id FROM ventros.ai_completions WHERE session_id = pg_temp.id('s5')), 'succeeded', 200,
                      pg_temp.good('positive', 0.9));
SELECT ventros_test.run_automations();
SELECT is((SELECT assigned_agent_id FROM ventros.sessions WHERE id = pg_temp.id('s5')), NULL, 'a positive summary: no supervisor');
SELECT throws_ok(format($$SELECT ventros.assign_session_agent(%L, %L)$$, pg_temp.id('s5'), pg_temp.id('supervisor')),
                 'VN002', NULL, 'an ended session is still assigned for review only');

-- ---- keys never in a row, view or event --------------------------------------------------------
SELECT is((SELECT count(*)::int FROM ventros.outbox WHERE payload::text LIKE '%sk-intel-pgtap-secret%'), 0, 'no event holds the key');
SELECT is((SELECT count(*)::int FROM ventros.http_requests WHERE headers::text LIKE '%sk-intel-pgtap-secret%'
                                                              OR convert_from(body, 'UTF8') LIKE '%sk-intel-pgtap-secret%'), 0,
          'no request row holds it');
SELECT is((SELECT count(*)::int FROM ventros.ai_completions c WHERE c::text LIKE '%sk-intel-pgtap-secret%'), 0,
          'no completion holds it');
SELECT is((SELECT count(*)::int FROM ventros.enrichment_status s WHERE s::text LIKE '%sk-intel-pgtap-secret%'), 0,
          'enrichment_status says has_key only');

SELECT is((SELECT string_agg(handler_error, '; ') FROM ventros.http_requests WHERE handler_error IS NOT NULL), NULL,
          'no answer handler failed');
SELECT * FROM finish();
ROLLBACK;
