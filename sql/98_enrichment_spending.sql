-- The one AI spending ledger and the one gate of every AI provider request
-- (docs/ai.md, "Costs and the monthly cap"): an enrichment's attempt
-- (sql/98_enrichment_chain.sql) and a chat completion
-- (sql/98_intelligence.sql) are both held to the tenant's monthly cap over
-- the ledger and to its plan's limits of the AI metrics
-- (sql/65_usage_metering.sql).

-- The one spending ledger of the acting tenant's AI provider calls, in USD:
-- its enrichments and its chat completions (summaries, AI agent replies,
-- sql/98_intelligence.sql) of a month.  The monthly cap
-- (enrichment_settings.monthly_cap) is held against it by the one gate of
-- every provider request, ventros.ai_request_refusal.  (PL/pgSQL: the
-- completions' table is created after this file.)
CREATE FUNCTION ventros.ai_spending(month date DEFAULT NULL) RETURNS numeric
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    since timestamptz := date_trunc('month', coalesce(month::timestamptz, now()));
BEGIN
    RETURN coalesce((SELECT sum(e.cost) FROM ventros.message_enrichments e
                      WHERE e.tenant_id = tenant AND e.cost IS NOT NULL
                        AND e.processed_at >= since AND e.processed_at < since + interval '1 month'), 0)
         + coalesce((SELECT sum(c.cost) FROM ventros.ai_completions c
                      WHERE c.tenant_id = tenant AND c.cost IS NOT NULL
                        AND c.completed_at >= since AND c.completed_at < since + interval '1 month'), 0);
END
$$;
COMMENT ON FUNCTION ventros.ai_spending(date) IS
    'What the acting tenant''s AI provider calls cost in a month (default: this one), USD: enrichments and chat completions, the ledger the monthly cap holds';

-- ai_request_refusal: the one gate of every AI provider request (an
-- enrichment's attempt, a chat completion), run before it is queued.  NULL
-- when it may go; else why not, with an error code and when to try again:
--   - spending_cap: this month's AI spending (ai_spending: enrichments and
--     completions, one ledger) reached the tenant's monthly cap; the first
--     time in a month, billing.ai_spending_cap_reached says so;
--   - usage_limit: the tenant's plan limit of the request's metric
--     (enrichments or ai_completions) or of ai_tokens is used up in its
--     billing period (sql/65_usage_metering.sql); billing.limit_reached says
--     so, once per period.
-- aggregate_type and aggregate_id: the refused request's subject (named in
-- the event).
CREATE FUNCTION ventros.ai_request_refusal(metric text, aggregate_type text, aggregate_id uuid,
                                           OUT error_code text, OUT error text, OUT retry_at timestamptz)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    cap numeric;
    spent numeric;
    m text;
    l record;
BEGIN
    SELECT s.monthly_cap INTO cap FROM ventros.enrichment_settings s WHERE s.tenant_id = tenant;
    IF cap IS NOT NULL THEN
        spent := ventros.ai_spending();
        IF spent >= cap THEN
            error_code := 'spending_cap';
            error := format('the monthly AI spending cap (%s USD) is reached: %s USD spent this month on enrichments and chat completions',
                            cap, spent);
            retry_at := date_trunc('month', now()) + interval '1 month';
            UPDATE ventros.enrichment_settings x SET cap_reached_month = date_trunc('month', now())::date
             WHERE x.tenant_id = tenant AND x.cap_reached_month IS DISTINCT FROM date_trunc('month', now())::date;
            IF FOUND THEN
                -- the tenant's, as billing.limit_reached: on its billing account
                PERFORM ventros.emit('billing.ai_spending_cap_reached', 'billing',
                    coalesce((SELECT b.id FROM ventros.billing_accounts b WHERE b.tenant_id = tenant AND b.deleted_at IS NULL
                               ORDER BY b.created_at LIMIT 1), '00000000-0000-0000-0000-000000000000'),
                    jsonb_build_object('monthly_cap', cap, 'spent', spent, 'month', date_trunc('month', now())::date,
                                       'refused', jsonb_build_object('metric', metric, 'type', aggregate_type, 'id', aggregate_id)));
            END IF;
            RETURN;
        END IF;
    END IF;
    -- most plans limit no AI metric: one look at the plan first
    IF NOT ventros.plan_limits((ventros.usage_period()).plan) ?| ARRAY[metric, 'ai_tokens'] THEN
        RETURN;
    END IF;
    FOREACH m IN ARRAY ARRAY[metric, 'ai_tokens'] LOOP
        l := ventros.usage_against_limit(m);
        IF l.usage_limit IS NOT NULL AND l.used >= l.usage_limit THEN
            error_code := 'usage_limit';
            error := format('the plan''s limit of %s %s in this billing period is used up', l.usage_limit, replace(m, '_', ' '));
            retry_at := l.period_end;
            PERFORM ventros.note_limit_reached(m, l.usage_limit, l.used, l.period_start, l.period_end);
            RETURN;
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION ventros.ai_request_refusal(text, text, uuid) IS
    'The gate of every AI provider request (enrichment, chat completion): NULL when it may go, else spending_cap (the month''s AI spending reached the tenant''s cap; billing.ai_spending_cap_reached once a month) or usage_limit (the plan''s limit of the metric or of ai_tokens; billing.limit_reached), the error and the retry time';

GRANT EXECUTE ON FUNCTION ventros.ai_spending(date) TO ventros_viewer;
