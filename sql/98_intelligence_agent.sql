-- The AI agent with hand-off (docs/ai.md, "The AI agent"): per channel, off
-- by default, an AI agent answers inbound messages until it hands the
-- session to a human.
--
--   1. An inbound message on a channel whose agent is on, in a session not
--      handed off, joins its contact's pending message group (the
--      message_groups aggregate, sql/79_message_groups.sql): each message
--      pushes the group's expiry to its time + the channel's
--      debounce_timeout_ms (trigger ai_agent_on_message: one lookup).
--   2. ventros.tick_ai_agent(now) moves the due groups to processing, at
--      their due time: the automation executor's wake (every second, for
--      its waits) calls it for every tenant with a group due
--      (close_due_message_groups); tests pass any instant.  A group whose
--      messages hold a hand-off keyword hands off at once; a session that
--      reached max_turns too; else one chat completion
--      (sql/98_intelligence.sql) gets the agent prompt, the tenant's
--      knowledge snippets, the contact's fields and the conversation so far.
--   3. The answer {"reply", "handoff", "handoff_reason", "sentiment"} is
--      validated; the reply goes out with send_message as the channel's AI
--      agent (source bot), the group completes with it
--      (agent_ai_interactions); then the agent hands off when the model asks,
--      when the sentiment is at or below the tenant's negative_threshold, or
--      after max_turns replies.
--   4. Hand-off: the session is put on the channel agent's hand-off team (else
--      the channel's team) by the team's rule (assign_session_to_team), the
--      agent stops for that session (ai_agent_sessions.handed_off_at) and
--      session.ai_handed_off says why.

CREATE TABLE ventros.ai_channel_agents (
    tenant_id    text        NOT NULL DEFAULT ventros.current_tenant(),
    channel_id   uuid        NOT NULL,
    enabled      boolean     NOT NULL DEFAULT false,
    agent_id     uuid        NOT NULL,
    handoff_team_id uuid,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, channel_id),
    FOREIGN KEY (tenant_id, channel_id) REFERENCES ventros.channels (tenant_id, id),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES ventros.agents (tenant_id, id),
    FOREIGN KEY (tenant_id, handoff_team_id) REFERENCES ventros.teams (tenant_id, id)
);
COMMENT ON TABLE ventros.ai_channel_agents IS
    'A channel''s AI agent: on or off (off by default), the agent it answers as, the team it hands sessions off to (NULL: the channel''s team)';
ALTER TABLE ventros.ai_channel_agents ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.ai_channel_agents FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_select ON ventros.ai_channel_agents FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.ai_channel_agents TO ventros_viewer;

CREATE TABLE ventros.ai_agent_sessions (
    tenant_id      text        NOT NULL,
    session_id     uuid        NOT NULL,
    turns          integer     NOT NULL DEFAULT 0,
    handed_off_at  timestamptz,
    handoff_reason text,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, session_id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES ventros.sessions (tenant_id, id),
    CONSTRAINT ai_agent_sessions_reason CHECK (handoff_reason IN ('keyword', 'model', 'negative_sentiment', 'max_turns',
                                                                  'failed', 'manual'))
);
COMMENT ON TABLE ventros.ai_agent_sessions IS
    'The AI agent in one session: replies sent (turns), and when and why it handed the session to a human (it stays silent after)';
ALTER TABLE ventros.ai_agent_sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.ai_agent_sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_select ON ventros.ai_agent_sessions FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.ai_agent_sessions TO ventros_viewer;

CREATE TABLE ventros.knowledge_snippets (
    tenant_id  text        NOT NULL DEFAULT ventros.current_tenant(),
    id         uuid        NOT NULL DEFAULT gen_random_uuid(),
    title      text        NOT NULL,
    content    text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    language   text,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT knowledge_snippets_sizes CHECK (btrim(title) <> '' AND length(title) <= 200
                                               AND btrim(content) <> '' AND length(content) <= 4000),
    CONSTRAINT knowledge_snippets_language CHECK (language ~ '^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$')
);
COMMENT ON TABLE ventros.knowledge_snippets IS 'What the tenant''s AI agent knows: short texts (title, content); a question gets the most relevant (ai_settings.knowledge_snippets)';
ALTER TABLE ventros.knowledge_snippets ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.knowledge_snippets FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_select ON ventros.knowledge_snippets FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.knowledge_snippets TO ventros_viewer;
COMMENT ON COLUMN ventros.knowledge_snippets.language IS
    'The language of the snippet (a code, as contacts.language): its words are indexed with that language''s text search configuration (search_config); NULL: simple (exact words)';
-- The indexes of the ranking (ai_knowledge_for, knowledge_ranked): the
-- full text in the snippet's own language, the title's trigrams, and the
-- oldest first (the snippets a question gets when none is relevant).
CREATE INDEX knowledge_snippets_search ON ventros.knowledge_snippets
    USING gin (to_tsvector(ventros.search_config(language), title || ' ' || content));
CREATE INDEX knowledge_snippets_oldest ON ventros.knowledge_snippets (tenant_id, created_at, id);
DO $trgm$
BEGIN
    EXECUTE pg_catalog.format('CREATE INDEX knowledge_snippets_title_trgm ON ventros.knowledge_snippets USING gin (title %1$I.gin_trgm_ops)',
                              (SELECT n.nspname FROM pg_catalog.pg_extension e
                                 JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm'));
END
$trgm$;

SELECT ventros.register_event_type(e, d) FROM (VALUES
    ('session.ai_replied', 'The channel''s AI agent answered a group of inbound messages (the message sent, the turn).'),
    ('session.ai_reply_failed', 'The AI agent could not answer a group (provider error, malformed answer): the error and the retry time.'),
    ('session.ai_handed_off', 'The AI agent handed the session to a human (keyword, model, negative_sentiment, max_turns, failed, manual) and stopped for it.')) v(e, d);

-- ---- configuration (tenant administrators) -------------------------------------------------

CREATE FUNCTION ventros.configure_ai_agent(channel_id uuid, enabled boolean DEFAULT NULL, agent_id uuid DEFAULT NULL,
                                           handoff_team_id uuid DEFAULT NULL)
RETURNS ventros.ai_channel_agents
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    result ventros.ai_channel_agents;
BEGIN
    -- SECURITY DEFINER: the settings are written by this function only
    PERFORM 1 FROM ventros.channels c WHERE c.tenant_id = tenant AND c.id = configure_ai_agent.channel_id AND c.deleted_at IS NULL;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('channel', channel_id);
    END IF;
    IF agent_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ventros.agents a WHERE a.tenant_id = tenant
                                             AND a.id = configure_ai_agent.agent_id AND a.deleted_at IS NULL) THEN
        PERFORM ventros.not_found('agent', agent_id);
    END IF;
    IF handoff_team_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ventros.teams t WHERE t.tenant_id = tenant
                                                    AND t.id = configure_ai_agent.handoff_team_id AND t.deleted_at IS NULL) THEN
        PERFORM ventros.not_found('team', handoff_team_id);
    END IF;
    UPDATE ventros.ai_channel_agents x
       SET enabled = coalesce(configure_ai_agent.enabled, x.enabled),
           agent_id = coalesce(configure_ai_agent.agent_id, x.agent_id),
           handoff_team_id = coalesce(configure_ai_agent.handoff_team_id, x.handoff_team_id), updated_at = now()
     WHERE x.tenant_id = tenant AND x.channel_id = configure_ai_agent.channel_id
    RETURNING * INTO result;
    IF NOT FOUND THEN
        IF agent_id IS NULL THEN
            RAISE EXCEPTION 'the AI agent of a channel needs the agent it answers as' USING ERRCODE = '23502',
                HINT = 'Pass agent_id: an agent with the role ai_agent.';
        END IF;
        INSERT INTO ventros.ai_channel_agents (tenant_id, channel_id, enabled, agent_id, handoff_team_id)
        VALUES (tenant, channel_id, coalesce(enabled, false), agent_id, handoff_team_id)
        RETURNING * INTO result;
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.configure_ai_agent(uuid, boolean, uuid, uuid) IS
    'Turns a channel''s AI agent on or off (off by default), the agent it answers as and the team it hands sessions off to (NULL: the channel''s team); NULL keeps a value';

CREATE FUNCTION ventros.add_knowledge_snippet(title text, content text, language text DEFAULT NULL)
RETURNS ventros.knowledge_snippets
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.knowledge_snippets;
BEGIN
    -- SECURITY DEFINER: snippets are written by these functions only
    INSERT INTO ventros.knowledge_snippets (tenant_id, title, content, language)
    VALUES (ventros.require_tenant(), title, content, lower(language))
    RETURNING * INTO result;
    RETURN result;
EXCEPTION WHEN check_violation OR not_null_violation THEN
    RAISE EXCEPTION 'a knowledge snippet needs a title (at most 200 characters) and content (at most 4000), and a language code or none'
        USING ERRCODE = '22023';
END
$$;
COMMENT ON FUNCTION ventros.add_knowledge_snippet(text, text, text) IS 'Adds a text the tenant''s AI agent knows (a question gets the most relevant: configure_ai knowledge_snippets), in a language (pt, es, en...: its words are stemmed; NULL: exact words)';

CREATE FUNCTION ventros.delete_knowledge_snippet(snippet_id uuid) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM ventros.knowledge_snippets k WHERE k.tenant_id = ventros.require_tenant() AND k.id = snippet_id;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('knowledge snippet', snippet_id);
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.delete_knowledge_snippet(uuid) IS 'Removes a knowledge snippet of the tenant''s AI agent';

-- ---- 1. grouping ----------------------------------------------------------------------------

CREATE FUNCTION ventros.ai_agent_on_message() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM ventros.ai_channel_agents a
                WHERE a.tenant_id = NEW.tenant_id AND a.channel_id = NEW.channel_id AND a.enabled)
       AND NOT EXISTS (SELECT 1 FROM ventros.ai_agent_sessions s
                        WHERE s.tenant_id = NEW.tenant_id AND s.session_id = NEW.session_id AND s.handed_off_at IS NOT NULL) THEN
        PERFORM ventros.add_message_to_group(NEW.id);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.ai_agent_on_message() IS
    'Trigger: an inbound message on a channel whose AI agent is on joins its pending message group, unless the session was handed off';
CREATE TRIGGER ai_agent_on_message AFTER INSERT ON ventros.messages
    FOR EACH ROW WHEN (NOT NEW.from_me AND NEW.session_id IS NOT NULL)
    EXECUTE FUNCTION ventros.ai_agent_on_message();

-- ---- 2. closing groups, the question --------------------------------------------------------

-- The knowledge snippets a question gets: the tenant's top n by relevance
-- to the group's messages, as search ranks (sql/82_search.sql).  The
-- candidates come from indexes only, so thousands of snippets cost what a
-- few do: the snippets matching a word of the messages in full text (each
-- snippet's vector in its own language: the question's words are parsed in
-- the messages' language and with simple, OR'ed; knowledge_snippets_search),
-- those whose title holds a word like one of the messages' (pg_trgm word
-- similarity over 0.4: typos, accents; knowledge_snippets_title_trgm), and
-- the n oldest (knowledge_snippets_oldest).  They are ranked by ts_rank_cd,
-- then by how much the title is like a part of the messages, the oldest
-- first on a tie (so with none relevant, the first n).  A plain SQL function
-- the planner inlines: 289_knowledge_index.sql reads its plan.
CREATE FUNCTION ventros.knowledge_ranked(tenant text, q tsquery, words text[], txt text, n integer)
RETURNS TABLE (ord bigint, id uuid, title text, content text, rank real)
LANGUAGE sql STABLE
-- (no SET clause, not strict: inlined; every name is qualified)
AS $$
    SELECT pg_catalog.row_number() OVER (ORDER BY r.rank DESC, r.sim DESC, r.created_at, r.id), r.id, r.title, r.content, r.rank
      FROM (SELECT c.id, c.title, c.content, c.created_at,
                   coalesce(pg_catalog.ts_rank_cd(pg_catalog.to_tsvector(ventros.search_config(c.language),
                                                                         c.title OPERATOR(pg_catalog.||) ' '
                                                                         OPERATOR(pg_catalog.||) c.content), q), 0) AS rank,
                   coalesce(ventros.search_similarity(c.title, txt), 0) AS sim
              FROM (SELECT k.id, k.title, k.content, k.created_at, k.language
                      FROM ventros.knowledge_snippets k
                     WHERE k.tenant_id OPERATOR(pg_catalog.=) tenant
                       AND pg_catalog.to_tsvector(ventros.search_config(k.language),
                                                  k.title OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) k.content)
                           OPERATOR(pg_catalog.@@) q
                    UNION
                    SELECT k.id, k.title, k.content, k.created_at, k.language
                      FROM pg_catalog.unnest(words) w, ventros.knowledge_snippets k
                     WHERE k.tenant_id OPERATOR(pg_catalog.=) tenant AND ventros.search_similar(w, k.title)
                    UNION
                    (SELECT k.id, k.title, k.content, k.created_at, k.language
                       FROM ventros.knowledge_snippets k
                      WHERE k.tenant_id OPERATOR(pg_catalog.=) tenant
                      ORDER BY k.created_at, k.id
                      LIMIT greatest(n, 0))) c) r
     ORDER BY 1
     LIMIT greatest(n, 0)
$$;
COMMENT ON FUNCTION ventros.knowledge_ranked(text, tsquery, text[], text, integer) IS
    'A tenant''s top n knowledge snippets for a full-text query, the words of a question and its text: candidates from the indexes (full text, title trigrams, the oldest n), ranked by ts_rank_cd, then title likeness, then age';

-- The top n snippets for a question's text in a language: its words OR'ed
-- (a question rarely holds all of a snippet's words), parsed in that
-- language and as they are (snippets with no language), and its words of
-- three letters or more (the first 64) for the titles' trigrams.
-- SECURITY DEFINER (not granted to tenants): under row-level security the
-- planner could not use the GIN indexes (@@ and <% are not leakproof), so,
-- as ventros.search does, the tenant's condition is applied here.
CREATE FUNCTION ventros.knowledge_for_text(tenant text, txt text, cfg regconfig, n integer)
RETURNS TABLE (ord bigint, id uuid, title text, content text, rank real)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET pg_trgm.word_similarity_threshold = 0.4
AS $$
DECLARE
    q tsquery;
    words text[];
BEGIN
    SELECT string_agg(quote_literal(l), ' | ')::tsquery INTO q
      FROM (SELECT unnest(tsvector_to_array(to_tsvector(coalesce(cfg, 'pg_catalog.simple'::regconfig), coalesce(txt, ''))))
            UNION
            SELECT unnest(tsvector_to_array(to_tsvector('pg_catalog.simple'::regconfig, coalesce(txt, ''))))) x(l);
    words := ARRAY(SELECT l FROM unnest(tsvector_to_array(to_tsvector('pg_catalog.simple'::regconfig, coalesce(txt, '')))) l
                    WHERE length(l) >= 3 LIMIT 64);
    RETURN QUERY SELECT * FROM ventros.knowledge_ranked(tenant, q, words, txt, n);
END
$$;
COMMENT ON FUNCTION ventros.knowledge_for_text(text, text, regconfig, integer) IS
    'A tenant''s top n knowledge snippets for a text in a language (its words OR''ed, in that language and as they are): knowledge_ranked';

-- The question of a completion: its group's messages, in their language
-- (the contact's when they name none).
CREATE FUNCTION ventros.ai_knowledge_for(c ventros.ai_completions, n integer)
RETURNS TABLE (ord bigint, id uuid, title text, content text, rank real)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    txt text;
    cfg regconfig;
BEGIN
    SELECT left(string_agg(m.text, E'\n' ORDER BY m."timestamp", m.id), 4000),
           ventros.search_config(coalesce(min(m.language), min(x.language)))
      INTO txt, cfg
      FROM ventros.message_groups g
      JOIN ventros.messages m ON m.tenant_id = g.tenant_id AND m.id = ANY (g.message_ids)
      LEFT JOIN ventros.contacts x ON x.tenant_id = g.tenant_id AND x.id = g.contact_id
     WHERE g.tenant_id = c.tenant_id AND g.id = c.group_id;
    RETURN QUERY SELECT * FROM ventros.knowledge_for_text(c.tenant_id, txt, cfg, n);
END
$$;
COMMENT ON FUNCTION ventros.ai_knowledge_for(ventros.ai_completions, integer) IS
    'The top n knowledge snippets for an AI agent question: ranked by full text (the messages'' language, their words OR''ed) against the group''s messages, then trigram likeness of the title; the oldest first on a tie; candidates from indexes only (knowledge_for_text, knowledge_ranked)';

-- The agent's messages: its prompt with the most relevant knowledge
-- snippets and the contact's fields, then the conversation so far.
CREATE FUNCTION ventros.ai_agent_messages(c ventros.ai_completions, s ventros.ai_settings) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    contact jsonb;
    knowledge text;
BEGIN
    SELECT jsonb_strip_nulls(jsonb_build_object('name', x.name, 'language', x.language, 'tags', x.tags,
               'custom', (SELECT jsonb_object_agg(f.field_key, f.field_value) FROM ventros.contact_custom_fields f
                           WHERE f.tenant_id = x.tenant_id AND f.contact_id = x.id AND f.deleted_at IS NULL)))
      INTO contact
      FROM ventros.sessions se JOIN ventros.contacts x ON x.tenant_id = se.tenant_id AND x.id = se.contact_id
     WHERE se.tenant_id = c.tenant_id AND se.id = c.session_id;
    SELECT string_agg(format('## %s%s%s', k.title, E'\n', k.content), E'\n\n' ORDER BY k.ord)
      INTO knowledge
      FROM ventros.ai_knowledge_for(c, s.knowledge_snippets) k;
    RETURN jsonb_build_array(jsonb_build_object('role', 'system', 'content',
               coalesce(s.agent_prompt, 'You are the customer service assistant of this business. Be brief, kind and accurate; '
                                        || 'answer only from what you know below; never invent prices or promises.')
               || E'\n\nAnswer with one JSON object only: {"reply": string (your message to the customer, in their language), '
               || '"handoff": boolean (true when a human should take over: the customer asks for one, is upset, or you cannot help), '
               || '"handoff_reason": string, "sentiment": number from -1 (very negative) to 1 (very positive) for the customer''s mood}.'
               || E'\n\nThe customer: ' || coalesce(contact::text, '{}')
               || coalesce(E'\n\nWhat you know:\n' || knowledge, '')))
        || ventros.ai_conversation(c.session_id);
END
$$;
COMMENT ON FUNCTION ventros.ai_agent_messages(ventros.ai_completions, ventros.ai_settings) IS
    'The AI agent''s chat messages: its prompt (the tenant''s or the default) with the JSON it must answer, the contact''s fields, the most relevant knowledge snippets (ai_knowledge_for), then the conversation';

-- Whether a text holds one of the hand-off keywords (case and accents as
-- written; whole words).
CREATE FUNCTION ventros.ai_handoff_keyword(txt text, keywords text[]) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT k FROM unnest(keywords) k
     WHERE btrim(k) <> ''
       AND strpos(' ' || regexp_replace(lower(coalesce(txt, '')), '[^[:alnum:]_]+', ' ', 'g') || ' ',
                  ' ' || btrim(regexp_replace(lower(k), '[^[:alnum:]_]+', ' ', 'g')) || ' ') > 0
     LIMIT 1
$$;
COMMENT ON FUNCTION ventros.ai_handoff_keyword(text, text[]) IS 'The first hand-off keyword a text holds as whole words, case-insensitive; NULL when none';

-- Hands a session to a human: the hand-off team's rule assigns it, the
-- agent stops for it, its open groups expire (an answer still out is then
-- never sent).  Returns the session.
CREATE FUNCTION ventros.ai_agent_hand_off(session_id uuid, reason text, detail text DEFAULT NULL)
RETURNS ventros.sessions
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    s ventros.sessions;
    team uuid;
    g ventros.message_groups;
BEGIN
    SELECT * INTO s FROM ventros.sessions x WHERE x.tenant_id = tenant AND x.id = ai_agent_hand_off.session_id FOR UPDATE;
    INSERT INTO ventros.ai_agent_sessions AS a (tenant_id, session_id, handed_off_at, handoff_reason)
    VALUES (tenant, s.id, now(), reason)
    ON CONFLICT ON CONSTRAINT ai_agent_sessions_pkey DO UPDATE
       SET handed_off_at = coalesce(a.handed_off_at, now()), handoff_reason = coalesce(a.handoff_reason, reason), updated_at = now();
    SELECT coalesce(a.handoff_team_id, ch.team_id) INTO team
      FROM ventros.channels ch LEFT JOIN ventros.ai_channel_agents a ON a.tenant_id = ch.tenant_id AND a.channel_id = ch.id
     WHERE ch.tenant_id = tenant AND ch.id = s.channel_id;
    IF team IS NOT NULL AND s.status = 'active' THEN
        s := ventros.assign_session_to_team(s.id, team);
    END IF;
    FOR g IN SELECT * FROM ventros.message_groups x
              WHERE x.tenant_id = tenant AND x.session_id = s.id AND x.status IN ('pending', 'processing') FOR UPDATE LOOP
        PERFORM ventros.expire_message_group(g.id, g.version);
    END LOOP;
    PERFORM ventros.emit('session.ai_handed_off', 'session', s.id,
        jsonb_strip_nulls(jsonb_build_object('reason', reason, 'detail', left(detail, 500), 'team_id', team,
                                             'assigned_agent_id', s.assigned_agent_id)));
    RETURN s;
END
$$;
COMMENT ON FUNCTION ventros.ai_agent_hand_off(uuid, text, text) IS
    'Hands a session from the AI agent to a human: assigned by the hand-off team''s rule (else the channel''s team), the agent silent for it after; emits session.ai_handed_off (internal)';

-- tick_ai_agent: the due groups of the acting tenant (pg_cron once a
-- minute; any instant in tests).  Returns how many groups it handled.
CREATE FUNCTION ventros.tick_ai_agent(now timestamptz DEFAULT now(), batch_size integer DEFAULT 100)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    s ventros.ai_settings := ventros.current_ai_settings();
    g ventros.message_groups;
    a ventros.ai_channel_agents;
    st ventros.ai_agent_sessions;
    c ventros.ai_completions;
    word text;
    n integer := 0;
BEGIN
    FOR g IN SELECT * FROM ventros.tick_message_groups(now, batch_size) LOOP
        n := n + 1;
        SELECT * INTO a FROM ventros.ai_channel_agents x WHERE x.tenant_id = tenant AND x.channel_id = g.channel_id;
        SELECT * INTO st FROM ventros.ai_agent_sessions x WHERE x.tenant_id = tenant AND x.session_id = g.session_id;
        IF NOT coalesce(a.enabled, false) OR st.handed_off_at IS NOT NULL
           OR NOT EXISTS (SELECT 1 FROM ventros.sessions x WHERE x.tenant_id = tenant AND x.id = g.session_id
                            AND x.status = 'active') THEN
            PERFORM ventros.expire_message_group(g.id, g.version);
            CONTINUE;
        END IF;
        SELECT ventros.ai_handoff_keyword(m.text, s.handoff_keywords) INTO word
          FROM ventros.messages m WHERE m.tenant_id = tenant AND m.id = ANY (g.message_ids)
               AND ventros.ai_handoff_keyword(m.text, s.handoff_keywords) IS NOT NULL
         LIMIT 1;
        IF word IS NOT NULL THEN
            PERFORM ventros.expire_message_group(g.id, g.version);
            PERFORM ventros.ai_agent_hand_off(g.session_id, 'keyword', format('the customer wrote "%s"', word));
        ELSIF coalesce(st.turns, 0) >= s.max_turns THEN
            PERFORM ventros.expire_message_group(g.id, g.version);
            PERFORM ventros.ai_agent_hand_off(g.session_id, 'max_turns', format('%s replies', st.turns));
        ELSE
            INSERT INTO ventros.ai_completions (tenant_id, kind, session_id, group_id)
            VALUES (tenant, 'agent_reply', g.session_id, g.id)
            RETURNING * INTO c;
            PERFORM ventros.ai_completion_start(c);
        END IF;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.tick_ai_agent(timestamptz, integer) IS
    'Closes the acting tenant''s message groups due at now: a hand-off keyword or max_turns hands the session off, else the AI agent is asked (one chat completion); a group of a channel whose agent is off, or of a session handed off or ended, expires';

-- Groups close at their due time: the automation executor, which wakes
-- every ventros.automation_poll_interval (1 s by default) for the waits that
-- become due (src/automation_worker.c), closes the due groups of every
-- tenant in the same call (ventros.run_automations): no loop of its own,
-- a look at the pending groups' index (message_groups_due: only groups in
-- their debounce window) when nothing is due.  The minute job below stays
-- as the fallback of a server without the executor (not preloaded).

CREATE FUNCTION ventros.close_due_message_groups(now timestamptz, batch_size integer DEFAULT 100) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text;
    n integer := 0;
BEGIN
    PERFORM ventros.require_platform_admin();
    FOR tenant IN SELECT DISTINCT x.tenant_id FROM ventros.message_groups x
                   WHERE x.status = 'pending' AND x.expires_at <= close_due_message_groups.now LOOP
        PERFORM pg_catalog.set_config('ventros.tenant', tenant, true);
        BEGIN
            n := n + ventros.tick_ai_agent(now, batch_size);
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'closing the due message groups of tenant % failed: %', tenant, SQLERRM;
        END;
    END LOOP;
    PERFORM pg_catalog.set_config('ventros.tenant', '', true);
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.close_due_message_groups(timestamptz, integer) IS
    'The automation executor''s (run_automations; platform admins): closes every tenant''s message groups due at now, each tenant''s as that tenant (tick_ai_agent); returns how many';

INSERT INTO ventros.scheduled_jobs (name, schedule, command, purpose) VALUES
    ('ventros-tick-ai-agent', '* * * * *',
     'SELECT count(*) FROM ventros.run_per_tenant(''ventros-tick-ai-agent'', ''SELECT pg_catalog.to_jsonb(ventros.tick_ai_agent($1))'')',
     'the AI agent: message groups past their debounce window are answered or handed off');

-- ---- 3. the answer ---------------------------------------------------------------------------

CREATE FUNCTION ventros.ai_agent_apply(c ventros.ai_completions, j jsonb) RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.ai_settings := ventros.current_ai_settings();
    g ventros.message_groups;
    a ventros.ai_channel_agents;
    handoff boolean;
    sentiment numeric := ventros.ai_number(j->'sentiment', -1, 1);
    reply text := btrim(j->>'reply');
    sent ventros.messages;
    turns integer;
BEGIN
    IF j ? 'handoff' AND jsonb_typeof(j->'handoff') <> 'boolean' THEN
        RETURN '"handoff" that is not a boolean';
    END IF;
    handoff := coalesce((j->>'handoff')::boolean, false);
    IF j ? 'sentiment' AND sentiment IS NULL THEN
        RETURN 'a "sentiment" that is not a number between -1 and 1';
    ELSIF (j ? 'reply' AND jsonb_typeof(j->'reply') <> 'string') OR (NOT handoff AND coalesce(reply, '') = '') THEN
        RETURN 'no "reply" string';
    END IF;
    SELECT * INTO g FROM ventros.message_groups x WHERE x.tenant_id = c.tenant_id AND x.id = c.group_id FOR UPDATE;
    SELECT * INTO a FROM ventros.ai_channel_agents x WHERE x.tenant_id = c.tenant_id AND x.channel_id = g.channel_id;
    -- a human took the session (or the agent was turned off) while the
    -- question was out: the answer is kept on the completion, never sent
    IF g.status <> 'processing' OR NOT coalesce(a.enabled, false)
       OR EXISTS (SELECT 1 FROM ventros.ai_agent_sessions x WHERE x.tenant_id = c.tenant_id AND x.session_id = c.session_id
                    AND x.handed_off_at IS NOT NULL) THEN
        IF g.status = 'processing' THEN
            PERFORM ventros.expire_message_group(g.id, g.version);
        END IF;
        RETURN NULL;
    END IF;
    PERFORM ventros.complete_message_group(g.id, g.version,
        left((SELECT string_agg(m.text, E'\n' ORDER BY m."timestamp", m.id) FROM ventros.messages m
               WHERE m.tenant_id = c.tenant_id AND m.id = ANY (g.message_ids)), 65536),
        left(reply, 65536), c.provider, c.model, (extract(epoch FROM now() - c.updated_at) * 1000)::integer);
    IF coalesce(reply, '') <> '' THEN
        sent := ventros.send_message(g.channel_id, g.contact_id, left(reply, 4096), agent_id => a.agent_id, source => 'bot',
                                  metadata => jsonb_build_object('ai_completion_id', c.id));
        INSERT INTO ventros.ai_agent_sessions AS x (tenant_id, session_id, turns) VALUES (c.tenant_id, c.session_id, 1)
        ON CONFLICT ON CONSTRAINT ai_agent_sessions_pkey DO UPDATE SET turns = x.turns + 1, updated_at = now()
        RETURNING x.turns INTO turns;
        PERFORM ventros.emit('session.ai_replied', 'session', c.session_id,
            jsonb_strip_nulls(jsonb_build_object('message_id', sent.id, 'group_id', g.id, 'completion_id', c.id,
                                                 'turn', turns, 'sentiment', sentiment)));
    END IF;
    IF handoff THEN
        PERFORM ventros.ai_agent_hand_off(c.session_id, 'model', j->>'handoff_reason');
    ELSIF sentiment <= s.negative_threshold THEN
        PERFORM ventros.ai_agent_hand_off(c.session_id, 'negative_sentiment', format('sentiment %s', sentiment));
    ELSIF turns >= s.max_turns THEN
        PERFORM ventros.ai_agent_hand_off(c.session_id, 'max_turns', format('%s replies', turns));
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.ai_agent_apply(ventros.ai_completions, jsonb) IS
    'Validates an AI agent answer (reply, handoff, sentiment), sends the reply as the channel''s AI agent (session.ai_replied), completes the group, and hands off on the model''s signal, negative sentiment or max_turns (a session handed off meanwhile: nothing sent); returns what is wrong, NULL when done';

-- A failed reply: said (session.ai_reply_failed); when it will not be tried
-- again (or only next month: the spending cap), the group expires and a
-- human takes the session.
CREATE FUNCTION ventros.ai_agent_failed(c ventros.ai_completions) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g ventros.message_groups;
BEGIN
    PERFORM ventros.emit('session.ai_reply_failed', 'session', c.session_id,
        jsonb_build_object('completion_id', c.id, 'group_id', c.group_id, 'error_code', c.error_code, 'error', c.error,
                           'attempts', c.attempts, 'retry_at', c.retry_at));
    -- no retry, or not before the next month or period (the cap, the
    -- plan's limit): a human answers now
    IF c.retry_at IS NULL OR c.error_code IN ('spending_cap', 'usage_limit') THEN
        SELECT * INTO g FROM ventros.message_groups x
         WHERE x.tenant_id = c.tenant_id AND x.id = c.group_id AND x.status IN ('pending', 'processing') FOR UPDATE;
        IF FOUND THEN
            PERFORM ventros.expire_message_group(g.id, g.version);
        END IF;
        PERFORM ventros.ai_agent_hand_off(c.session_id, 'failed', c.error);
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.ai_agent_failed(ventros.ai_completions) IS
    'A failed AI agent reply: emits session.ai_reply_failed; when it will not be retried (or only after the spending cap), expires the group and hands the session off';

-- resume_ai_agent: a human gives the session back to the AI agent.
CREATE FUNCTION ventros.resume_ai_agent(session_id uuid) RETURNS ventros.ai_agent_sessions
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.ai_agent_sessions;
BEGIN
    -- SECURITY DEFINER: the agent's state is written here and by its own functions only
    UPDATE ventros.ai_agent_sessions x SET handed_off_at = NULL, handoff_reason = NULL, turns = 0, updated_at = now()
     WHERE x.tenant_id = ventros.require_tenant() AND x.session_id = resume_ai_agent.session_id
    RETURNING * INTO result;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('AI agent session', session_id);
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.resume_ai_agent(uuid) IS 'Gives a handed-off session back to the AI agent (turns counted from zero again)';

-- hand_off_session: an agent takes the session from the AI agent by hand.
CREATE FUNCTION ventros.hand_off_session(session_id uuid) RETURNS ventros.sessions
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- SECURITY DEFINER: the agent's state is written by these functions only
    PERFORM 1 FROM ventros.sessions x WHERE x.tenant_id = ventros.require_tenant() AND x.id = hand_off_session.session_id
                                        AND x.deleted_at IS NULL;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('session', session_id);
    END IF;
    RETURN ventros.ai_agent_hand_off(session_id, 'manual');
END
$$;
COMMENT ON FUNCTION ventros.hand_off_session(uuid) IS
    'Takes a session from the AI agent: assigned by the hand-off team''s rule, the agent silent for it; emits session.ai_handed_off';

GRANT EXECUTE ON FUNCTION ventros.resume_ai_agent(uuid), ventros.hand_off_session(uuid) TO ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.configure_ai_agent(uuid, boolean, uuid, uuid), ventros.add_knowledge_snippet(text, text, text),
    ventros.delete_knowledge_snippet(uuid) TO ventros_admin;
-- The scheduler's (pg_cron runs it as a platform administrator), never a
-- tenant's: its `now` is the caller's to choose (docs/security.md).
GRANT EXECUTE ON FUNCTION ventros.tick_ai_agent(timestamptz, integer) TO ventros_platform_admin;
