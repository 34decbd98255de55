-- Conversation intelligence (sql/98_intelligence.sql), continued: the
-- retries of failed completions, the chat providers' answer handler and
-- preparer, and the grants.

-- ---- retries -------------------------------------------------------------------------------

CREATE FUNCTION ventros.retry_ai_completions(now timestamptz DEFAULT now(), batch_size integer DEFAULT 100)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    c ventros.ai_completions;
    n integer := 0;
BEGIN
    -- SECURITY DEFINER: queues provider requests for the acting tenant only
    FOR c IN SELECT * FROM ventros.ai_completions x
              WHERE x.tenant_id = tenant AND x.status = 'failed' AND x.retry_at <= retry_ai_completions.now
              ORDER BY x.retry_at LIMIT batch_size FOR UPDATE SKIP LOCKED
    LOOP
        -- an agent reply whose group closed meanwhile (handed off, agent
        -- off) is not asked again: its retry time goes
        IF c.kind = 'agent_reply' AND NOT EXISTS (SELECT 1 FROM ventros.message_groups g
                                                   WHERE g.tenant_id = tenant AND g.id = c.group_id AND g.status = 'processing') THEN
            UPDATE ventros.ai_completions x SET retry_at = NULL, updated_at = now()
             WHERE x.tenant_id = tenant AND x.id = c.id;
            CONTINUE;
        END IF;
        PERFORM ventros.ai_completion_start(c);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.retry_ai_completions(timestamptz, integer) IS
    'Starts again the acting tenant''s failed completions whose retry time passed (at most batch_size; an agent reply whose group closed meanwhile loses its retry time instead); returns how many';

INSERT INTO ventros.scheduled_jobs (name, schedule, command, purpose) VALUES
    ('ventros-retry-ai-completions', '* * * * *',
     'SELECT count(*) FROM ventros.run_per_tenant(''ventros-retry-ai-completions'', ''SELECT pg_catalog.to_jsonb(ventros.retry_ai_completions($1))'')',
     'failed chat completions (summaries, AI agent replies) whose retry time passed');

SELECT ventros.register_http_request_handler('enrichment.' || p.provider, 'ventros.ai_chat_answer(ventros.http_requests)'),
       ventros.register_http_request_preparer('enrichment.' || p.provider,
                                              'ventros.enrichment_request_headers(ventros.http_requests)')
  FROM ventros.enrichment_providers p WHERE p.kind = 'chat';

GRANT EXECUTE ON FUNCTION ventros.current_ai_settings() TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.summarize_session(uuid) TO ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.configure_ai(text, text, text, numeric, interval, integer, text[], numeric, integer, integer),
    ventros.retry_ai_completions(timestamptz, integer) TO ventros_admin;
