-- The AI agent with hand-off in SQL (docs/ai.md), ticks at chosen instants,
-- answers written here: off by default; two inbound messages in the debounce
-- window are one group and one question (the conversation, the contact, the
-- knowledge snippets), answered with one reply sent as the channel's AI agent;
-- hand-off on a keyword (no question asked), the model's signal, negative
-- sentiment, max_turns and a reply that fails for good, each assigning the
-- session by the team's rule and silencing the agent for it.
-- End to end over HTTP: test/integration/intelligence.test.mjs.
BEGIN;
SELECT * FROM no_plan();

SELECT ventros.create_tenant('agent_t1', 'AI agent SQL');
SET LOCAL ventros.tenant = 'agent_t1';
CREATE TEMP TABLE ids (k text PRIMARY KEY, id uuid);
GRANT ALL ON ids TO PUBLIC;
CREATE FUNCTION pg_temp.id(k text) RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM ids WHERE ids.k = $1 $$;

INSERT INTO ids SELECT 'ch', ventros_test.new_channel();
INSERT INTO ids SELECT 'key', id FROM ventros.create_credential('groq', 'api_key', 'gsk-agent-pgtap-secret');
SELECT ventros.configure_enrichment_provider('groq_chat', pg_temp.id('key'), base_url => 'https://groq.example/openai');
SELECT ventros.configure_ai(provider => 'groq_chat', retry_delay => '30 seconds', max_attempts => 2);
INSERT INTO ids SELECT 'bot', id FROM ventros.create_agent('Vera (AI)', type => 'ai', role => 'ai_agent');
INSERT INTO ids SELECT 'human', id FROM ventros.create_agent('Hugo', email => 'hugo@agent.example');
SELECT ventros.set_agent_presence(pg_temp.id('human'), 'available');
INSERT INTO ids SELECT 'team', id FROM ventros.create_team('Humans');
SELECT ventros.add_team_member(pg_temp.id('team'), pg_temp.id('human'));
SELECT ventros.add_knowledge_snippet('Horário', 'Atendemos de segunda a sexta, das 9h às 18h.');

CREATE TEMP SEQUENCE ms;
GRANT ALL ON SEQUENCE ms TO PUBLIC;
CREATE FUNCTION pg_temp.inbound(sender text, body text) RETURNS uuid LANGUAGE sql AS $$
    -- messages of one transaction in the order written, a millisecond apart
    SELECT id FROM ventros.receive_message(pg_temp.id('ch'), sender, body, sender_name => 'Carla',
                                           sent_at => now() + nextval('pg_temp.ms') * interval '1 millisecond')
$$;
CREATE FUNCTION pg_temp.session_of(sender text) RETURNS uuid LANGUAGE sql AS $$
    SELECT s.id FROM ventros.sessions s JOIN ventros.contacts c ON c.id = s.contact_id WHERE c.phone = sender AND s.status = 'active'
$$;
CREATE FUNCTION pg_temp.tick(after interval) RETURNS integer LANGUAGE sql AS $$ SELECT ventros.tick_ai_agent(now() + after) $$;
CREATE FUNCTION pg_temp.pending(sender text) RETURNS ventros.ai_completions LANGUAGE sql AS $$
    SELECT * FROM ventros.ai_completions WHERE session_id = pg_temp.session_of(sender) ORDER BY status = 'completed', updated_at DESC LIMIT 1
$$;
CREATE FUNCTION pg_temp.answer(sender text, st text, code integer, content text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    r ventros.http_requests;
BEGIN
    UPDATE ventros.http_requests x
       SET status = st, response_status = code, attempts = 1, completed_at = now(),
           response_body = convert_to(jsonb_build_object('model', 'llama-3.1-8b-instant',
               'choices', jsonb_build_array(jsonb_build_object('index', 0, 'message',
                   jsonb_build_object('role', 'assistant', 'content', content))),
               'usage', jsonb_build_object('prompt_tokens', 500, 'completion_tokens', 50))::text, 'UTF8')
     WHERE x.tenant_id = 'agent_t1' AND x.correlation_id = (pg_temp.pending(sender)).id AND x.status = 'pending'
    RETURNING * INTO r;
    PERFORM ventros.run_http_request_handler(r);
END
$$;
CREATE FUNCTION pg_temp.events(agg uuid, pattern text) RETURNS text[] LANGUAGE sql AS $$
    SELECT coalesce(array_agg(event_type ORDER BY seq), '{}') FROM ventros.outbox WHERE aggregate_id = agg AND event_type LIKE pattern
$$;

-- ---- off by default ------------------------------------------------------------------------
SELECT pg_temp.inbound('+5511900000001', 'Oi');
SELECT is((SELECT count(*)::int FROM ventros.message_groups), 0, 'off by default: inbound messages are not grouped');
SELECT throws_ok(format($$SELECT ventros.configure_ai_agent(%L, true)$$, pg_temp.id('ch')), '23502', NULL,
                 'turning it on needs the agent it answers as');
SELECT ventros.configure_ai_agent(pg_temp.id('ch'), true, pg_temp.id('bot'), pg_temp.id('team'));

-- ---- two messages, one group, one question, one reply ----------------------------------------
SELECT pg_temp.inbound('+5511900000002', 'Olá!');
SELECT pg_temp.inbound('+5511900000002', 'Vocês abrem no sábado?');
SELECT is((SELECT cardinality(message_ids) FROM ventros.message_groups WHERE session_id = pg_temp.session_of('+5511900000002')), 2,
          'two messages in the debounce window are one group');
SELECT is(pg_temp.tick('10 seconds'), 0, 'the group is not due within the debounce window (15 s)');
SELECT is(pg_temp.tick('16 seconds'), 1, 'past it, the tick closes the group');
SELECT is((SELECT jsonb_build_object('kind', kind, 'status', status, 'provider', provider)
             FROM pg_temp.pending('+5511900000002')),
          '{"kind": "agent_reply", "status": "processing", "provider": "groq_chat"}'::jsonb, 'one question to the tenant''s provider');
SELECT is((SELECT url FROM ventros.http_requests WHERE correlation_id = (pg_temp.pending('+5511900000002')).id),
          'https://groq.example/openai/v1/chat/completions', 'Groq''s chat completions URL');
SELECT is((SELECT jsonb_build_object(
                 'system_has_knowledge', b->'messages'->0->>'content' LIKE '%Atendemos de segunda a sexta%',
                 'system_has_contact', b->'messages'->0->>'content' LIKE '%"name": "Carla"%',
                 'conversation', jsonb_path_query_array(b, '$.messages[1 to last]')
             ) FROM (SELECT convert_from(body, 'UTF8')::jsonb b FROM ventros.http_requests
                      WHERE correlation_id = (pg_temp.pending('+5511900000002')).id) x),
          '{"system_has_knowledge": true, "system_has_contact": true,
            "conversation": [{"role": "user", "content": "Olá!"}, {"role": "user", "content": "Vocês abrem no sábado?"}]}'::jsonb,
          'the question: the prompt with the knowledge snippets and the contact, then the conversation');
SELECT pg_temp.answer('+5511900000002', 'succeeded', 200,
                      '{"reply": "Olá Carla! Abrimos de segunda a sexta, das 9h às 18h.", "handoff": false, "sentiment": 0.3}');
SELECT is((SELECT jsonb_agg(jsonb_build_object('text', text, 'agent', agent_id = pg_temp.id('bot'), 'source', source))
             FROM ventros.messages WHERE session_id = pg_temp.session_of('+5511900000002') AND from_me),
          '[{"text": "Olá Carla! Abrimos de segunda a sexta, das 9h às 18h.", "agent": true, "source": "bot"}]'::jsonb,
          'one reply, sent as the channel''s AI agent');
SELECT is((SELECT status FROM ventros.message_groups WHERE session_id = pg_temp.session_of('+5511900000002')), 'completed',
          'the group completed');
SELECT is((SELECT ai_response FROM ventros.agent_ai_interactions WHERE session_id = pg_temp.session_of('+5511900000002')),
          'Olá Carla! Abrimos de segunda a sexta, das 9h às 18h.', 'the interaction keeps the answer');
SELECT is(pg_temp.events(pg_temp.session_of('+5511900000002'), 'session.ai_%'), '{session.ai_requested,session.ai_replied}',
          'session.ai_requested, session.ai_replied');
SELECT is((SELECT turns FROM ventros.ai_agent_sessions WHERE session_id = pg_temp.session_of('+5511900000002')), 1, 'one turn');

-- ---- hand-off on a keyword: no question asked ----------------------------------------------------
SELECT pg_temp.inbound('+5511900000002', 'Quero FALAR com humano, por favor');
SELECT is(pg_temp.tick('16 seconds'), 1, 'the tick closes the group');
SELECT is((SELECT count(*)::int FROM ventros.ai_completions WHERE session_id = pg_temp.session_of('+5511900000002')), 1,
          'a hand-off keyword asks no question');
SELECT is((SELECT jsonb_build_object('agent', assigned_agent_id = pg_temp.id('human'), 'team', team_id = pg_temp.id('team'))
             FROM ventros.sessions WHERE id = pg_temp.session_of('+5511900000002')),
          '{"agent": true, "team": true}'::jsonb, 'the session is assigned by the hand-off team''s rule');
SELECT is((SELECT payload->>'reason' FROM ventros.outbox WHERE aggregate_id = pg_temp.session_of('+5511900000002')
             AND event_type = 'session.ai_handed_off'), 'keyword', 'session.ai_handed_off, reason keyword');
SELECT is((SELECT array_agg(status ORDER BY started_at) FROM ventros.message_groups WHERE session_id = pg_temp.session_of('+5511900000002')),
          '{completed,expired}', 'the keyword''s group expired unanswered');
SELECT pg_temp.inbound('+5511900000002', 'Alô?');
SELECT is((SELECT count(*)::int FROM ventros.message_groups WHERE session_id = pg_temp.session_of('+5511900000002')), 2,
          'after the hand-off the agent is silent for the session');
SELECT is((ventros.resume_ai_agent(pg_temp.session_of('+5511900000002'))).handed_off_at, NULL, 'resume_ai_agent gives it back');

-- ---- hand-off on the model's signal (the reply still goes out) --------------------------------------
SELECT pg_temp.inbound('+5511900000003', 'Meu boleto veio com valor errado');
SELECT pg_temp.tick('16 seconds');
SELECT pg_temp.answer('+5511900000003', 'succeeded', 200,
                      '{"reply": "Vou chamar um atendente.", "handoff": true, "handoff_reason": "billing dispute", "sentiment": -0.2}');
SELECT is((SELECT payload->>'reason' || ' ' || (payload->>'detail') FROM ventros.outbox
            WHERE aggregate_id = pg_temp.session_of('+5511900000003') AND event_type = 'session.ai_handed_off'),
          'model billing dispute', 'the model asked: reason model, its reason as detail');
SELECT is((SELECT count(*)::int FROM ventros.messages WHERE session_id = pg_temp.session_of('+5511900000003') AND from_me), 1,
          'its reply was sent');

-- ---- hand-off on negative sentiment -----------------------------------------------------------------
SELECT pg_temp.inbound('+5511900000004', 'Isso é um absurdo, três semanas esperando!');
SELECT pg_temp.tick('16 seconds');
SELECT pg_temp.answer('+5511900000004', 'succeeded', 200, '{"reply": "Sinto muito pela demora.", "handoff": false, "sentiment": -0.8}');
SELECT is((SELECT payload->>'reason' FROM ventros.outbox WHERE aggregate_id = pg_temp.session_of('+5511900000004')
             AND event_type = 'session.ai_handed_off'), 'negative_sentiment', 'sentiment -0.8 <= -0.5: reason negative_sentiment');

-- ---- hand-off after max_turns -------------------------------------------------------------------------
SELECT ventros.configure_ai(max_turns => 2);
SELECT pg_temp.inbound('+5511900000005', 'Oi');
SELECT pg_temp.tick('16 seconds');
SELECT pg_temp.answer('+5511900000005', 'succeeded', 200, '{"reply": "Oi! Como posso ajudar?", "sentiment": 0}');
SELECT pg_temp.inbound('+5511900000005', 'Quanto custa?');
SELECT pg_temp.tick('16 seconds');
SELECT pg_temp.answer('+5511900000005', 'succeeded', 200, '{"reply": "Depende do plano.", "sentiment": 0}');
SELECT is((SELECT payload->>'reason' FROM ventros.outbox WHERE aggregate_id = pg_temp.session_of('+5511900000005')
             AND event_type = 'session.ai_handed_off'), 'max_turns', 'the second reply reaches max_turns: hand-off');
SELECT ventros.configure_ai(max_turns => 10);

-- ---- a malformed answer is retried; failing for good hands off ------------------------------------------
SELECT pg_temp.inbound('+5511900000006', 'Oi');
SELECT pg_temp.tick('16 seconds');
SELECT pg_temp.answer('+5511900000006', 'succeeded', 200, 'Olá! Como posso ajudar?');
SELECT is((SELECT jsonb_build_object('status', status, 'code', error_code, 'retry', retry_at IS NOT NULL) FROM pg_temp.pending('+5511900000006')),
          '{"status": "failed", "code": "malformed_answer", "retry": true}'::jsonb, 'a reply that is not JSON: failed, retried');
SELECT is(pg_temp.events(pg_temp.session_of('+5511900000006'), 'session.ai_reply_failed'), '{session.ai_reply_failed}', 'session.ai_reply_failed');
SELECT is((SELECT status FROM ventros.message_groups WHERE session_id = pg_temp.session_of('+5511900000006')), 'processing',
          'the group waits for the retry');
SELECT is(ventros.retry_ai_completions(now() + interval '1 minute'), 1, 'retried');
SELECT pg_temp.answer('+5511900000006', 'succeeded', 200, '{"handoff": "maybe"}');
SELECT is((SELECT jsonb_build_object('error', error, 'retry', retry_at) FROM pg_temp.pending('+5511900000006')),
          '{"error": "the answer has \"handoff\" that is not a boolean", "retry": null}'::jsonb, 'max_attempts reached: no retry');
SELECT is((SELECT payload->>'reason' FROM ventros.outbox WHERE aggregate_id = pg_temp.session_of('+5511900000006')
             AND event_type = 'session.ai_handed_off'), 'failed', 'a reply failing for good hands off (reason failed)');
SELECT is((SELECT status FROM ventros.message_groups WHERE session_id = pg_temp.session_of('+5511900000006')), 'expired', 'its group expired');

-- ---- a human takes the session while the question is out: the answer is not sent -------------------
SELECT pg_temp.inbound('+5511900000008', 'Oi');
SELECT pg_temp.tick('16 seconds');
SELECT ventros.hand_off_session(pg_temp.session_of('+5511900000008'));
SELECT pg_temp.answer('+5511900000008', 'succeeded', 200, '{"reply": "Oi! Como posso ajudar?", "sentiment": 0}');
SELECT is((SELECT count(*)::int FROM ventros.messages WHERE session_id = pg_temp.session_of('+5511900000008') AND from_me), 0,
          'handed off meanwhile: the late answer is not sent');
SELECT is((SELECT status FROM ventros.message_groups WHERE session_id = pg_temp.session_of('+5511900000008')), 'expired', 'its group expired');

-- ---- a failed reply whose session was handed off meanwhile is not asked again ------------------------
SELECT pg_temp.inbound('+5511900000010', 'Oi');
SELECT pg_temp.tick('16 seconds');
SELECT pg_temp.answer('+5511900000010', 'dead', 500, 'boom');
SELECT ventros.hand_off_session(pg_temp.session_of('+5511900000010'));
SELECT is(ventros.retry_ai_completions(now() + interval '1 hour'), 0, 'its group closed: not retried');
SELECT is((SELECT retry_at FROM pg_temp.pending('+5511900000010')), NULL, 'its retry time is gone');

-- ---- the cap: a human answers now, not next month ------------------------------------------------------
SELECT ventros.configure_enrichment(monthly_cap => 0.000001);
SELECT pg_temp.inbound('+5511900000009', 'Oi');
SELECT pg_temp.tick('16 seconds');
SELECT is((SELECT error_code FROM pg_temp.pending('+5511900000009')), 'spending_cap', 'over the cap: spending_cap');
SELECT is((SELECT payload->>'reason' FROM ventros.outbox WHERE aggregate_id = pg_temp.session_of('+5511900000009')
             AND event_type = 'session.ai_handed_off'), 'failed', 'and the session goes to a human at once');
SELECT ventros.configure_enrichment(remove_cap => true);

-- ---- a channel turned off; by hand ------------------------------------------------------------------
SELECT pg_temp.inbound('+5511900000007', 'Oi');
SELECT ventros.configure_ai_agent(pg_temp.id('ch'), false);
SELECT pg_temp.tick('16 seconds');
SELECT is((SELECT status FROM ventros.message_groups WHERE session_id = pg_temp.session_of('+5511900000007')), 'expired',
          'a group of a channel turned off meanwhile expires');
SELECT is((SELECT count(*)::int FROM ventros.ai_completions WHERE session_id = pg_temp.session_of('+5511900000007')), 0, 'no question');
SELECT is((ventros.hand_off_session(pg_temp.session_of('+5511900000007'))).assigned_agent_id, pg_temp.id('human'),
          'hand_off_session: by hand, the team''s rule');

-- ---- a group closes at its due time: the automation executor's wake, not a minute tick ----------------
SELECT ventros.configure_ai_agent(pg_temp.id('ch'), true);
SELECT pg_temp.inbound('+5511900000011', 'Qual o horário de sábado?');
CREATE TEMP TABLE due AS SELECT id, expires_at FROM ventros.message_groups
 WHERE session_id = pg_temp.session_of('+5511900000011') AND status = 'pending';
GRANT SELECT ON due TO PUBLIC;
SET LOCAL ROLE ventros_platform_admin;
SELECT ventros.run_automations(100, (SELECT expires_at - interval '1 millisecond' FROM due));
SELECT is((SELECT status FROM ventros.message_groups WHERE id = (SELECT id FROM due)), 'pending',
          'the executor''s wake a millisecond before the group''s due time leaves it pending');
SELECT ventros.run_automations(100, (SELECT expires_at FROM due));
RESET ROLE;
SELECT is((SELECT status FROM ventros.message_groups WHERE id = (SELECT id FROM due)), 'processing',
          'the executor''s wake at the due time closes it');
SELECT is((SELECT jsonb_build_object('kind', kind, 'status', status) FROM pg_temp.pending('+5511900000011')),
          '{"kind": "agent_reply", "status": "processing"}'::jsonb, 'and asks the AI agent at once');

-- ---- a question gets the most relevant knowledge snippets, not the first ones ------------------------
SELECT ventros.add_knowledge_snippet('Trocas e devoluções', 'Trocas em até 30 dias com a nota fiscal.');
SELECT ventros.add_knowledge_snippet('Entrega', 'Entregamos em todo o Brasil em até 5 dias úteis; frete grátis acima de R$ 200.');
SELECT ventros.add_knowledge_snippet('Pagamento', 'Aceitamos Pix, boleto e cartão em até 10 vezes.');
SELECT is((ventros.configure_ai(knowledge_snippets => 1)).knowledge_snippets, 1, 'a tenant sets how many snippets a question gets');
SELECT pg_temp.inbound('+5511900000012', 'Quanto tempo demora a entrega para Recife?');
SELECT pg_temp.inbound('+5511900000012', 'E o frete?');
SELECT pg_temp.tick('16 seconds');
SELECT is((SELECT jsonb_build_object('titles', (SELECT jsonb_agg(t[1]) FROM regexp_matches(b->'messages'->0->>'content', E'\n## ([^\n]+)', 'g') t))
             FROM (SELECT convert_from(body, 'UTF8')::jsonb b FROM ventros.http_requests
                    WHERE correlation_id = (pg_temp.pending('+5511900000012')).id) x),
          '{"titles": ["Entrega"]}'::jsonb, 'the snippet about delivery is the one sent, of four');
SELECT throws_ok($$SELECT ventros.configure_ai(knowledge_snippets => 51)$$, '22023', NULL, 'more than 50 snippets is 22023');
SELECT ventros.configure_ai(knowledge_snippets => 5);

-- ---- who may ---------------------------------------------------------------------------------------
SET LOCAL ROLE ventros_admin;
SELECT throws_ok($$SELECT ventros.tick_ai_agent(now() + interval '1 year')$$, '42501', NULL,
                 'a tenant cannot tick with an instant of its choosing');
SELECT throws_ok(format($$SELECT ventros.configure_ai_agent(%L, true, %L)$$, gen_random_uuid(), pg_temp.id('bot')), 'P0002', NULL,
                 'an unknown channel is P0002');
SELECT throws_ok($$SELECT ventros.add_knowledge_snippet('', 'x')$$, '22023', NULL, 'a snippet without a title is 22023');
RESET ROLE;
SELECT is((SELECT count(*)::int FROM ventros.outbox WHERE payload::text LIKE '%gsk-agent-pgtap-secret%'), 0, 'no event holds the key');

SELECT is((SELECT string_agg(handler_error, '; ') FROM ventros.http_requests WHERE handler_error IS NOT NULL), NULL,
          'no answer handler failed');
SELECT * FROM finish();
ROLLBACK;
