-- Lead scores computed from rules that are data (docs/ai.md, "Lead
-- qualification").  A pipeline's lead_qualification holds, besides enabled
-- and min_score, a list of rules: {"name", "when": <condition>, "points"}.
-- A condition is the automation rules' own (sql/84_automation_conditions.sql:
-- contact fields and custom fields, tags, pipeline statuses, all/any/not),
-- evaluated on the contact's context; engagement figures are payload fields
-- (engagement.messages_from_contact ...).  The score is the sum of the points
-- of the rules that hold, within 0..10, optionally blended with a model's
-- assessment (model_weight); qualify_contact_lead then records it and emits
-- contact.lead_qualified at or above min_score.

-- lead_engagement: what a contact did, as the rules see it (payload.engagement).
CREATE FUNCTION ventros.lead_engagement(contact_id uuid) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'messages_from_contact', count(*) FILTER (WHERE NOT m.from_me),
        'messages_to_contact', count(*) FILTER (WHERE m.from_me),
        'sessions', (SELECT count(*) FROM ventros.sessions s
                     WHERE s.tenant_id = ventros.require_tenant() AND s.contact_id = lead_engagement.contact_id
                       AND s.deleted_at IS NULL),
        'days_since_last_message', floor(extract(epoch FROM now() - max(m."timestamp")) / 86400))
    FROM ventros.messages m
    WHERE m.tenant_id = ventros.require_tenant() AND m.contact_id = lead_engagement.contact_id AND m.deleted_at IS NULL
$$;
COMMENT ON FUNCTION ventros.lead_engagement(uuid) IS
    'A contact''s engagement as lead rules see it: messages from and to it, sessions, days since its last message';

-- score_contact_lead: the score of a contact against a pipeline's rules; at
-- or above min_score the contact qualifies (qualify_contact_lead: VN002 when
-- the pipeline has lead qualification disabled, contact.lead_qualified with
-- the rules that held and the model's score as its answers).
CREATE FUNCTION ventros.score_contact_lead(contact_id uuid, pipeline_id uuid, model_score numeric DEFAULT NULL)
RETURNS TABLE (score numeric, qualified boolean, rules jsonb)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    tenant text := ventros.require_tenant();
    config jsonb;
    ctx jsonb;
    r jsonb;
    held boolean;
    total numeric := 0;
    detail jsonb := '[]';
    weight numeric;
BEGIN
    SELECT p.lead_qualification INTO config FROM ventros.pipelines p
    WHERE p.tenant_id = tenant AND p.id = score_contact_lead.pipeline_id;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('pipeline', pipeline_id);
    END IF;
    PERFORM 1 FROM ventros.contacts c WHERE c.tenant_id = tenant AND c.id = score_contact_lead.contact_id;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('contact', contact_id);
    END IF;
    IF jsonb_typeof(coalesce(config->'rules', '[]')) <> 'array' THEN
        RAISE EXCEPTION 'lead rules of pipeline % must be a JSON array', pipeline_id USING ERRCODE = '22023';
    END IF;
    IF model_score IS NOT NULL AND (model_score < 0 OR model_score > 10) THEN
        RAISE EXCEPTION 'model score must be between 0 and 10' USING ERRCODE = '22023';
    END IF;
    -- the context an automation rule would see of an event on this contact
    ctx := ventros.automation_context(jsonb_populate_record(NULL::ventros.outbox, jsonb_build_object(
               'tenant_id', tenant, 'aggregate_type', 'contact', 'aggregate_id', contact_id,
               'event_type', 'contact.lead_scored', 'occurred_at', now(),
               'payload', jsonb_build_object('engagement', ventros.lead_engagement(contact_id)))), now());
    FOR r IN SELECT x FROM jsonb_array_elements(coalesce(config->'rules', '[]')) x LOOP
        IF jsonb_typeof(r->'when') IS DISTINCT FROM 'object' OR jsonb_typeof(r->'points') IS DISTINCT FROM 'number' THEN
            RAISE EXCEPTION 'lead rule % of pipeline % needs "when" (a condition) and "points" (a number)', left(r::text, 64), pipeline_id
                USING ERRCODE = '22023', HINT = 'For example {"name": "has email", "when": {"field": "contact.email", "operator": "is_not_null"}, "points": 2}.';
        END IF;
        held := ventros.automation_condition_holds(r->'when', ctx, 'UTC', now());
        IF held THEN
            total := total + (r->>'points')::numeric;
        END IF;
        detail := detail || jsonb_build_object('name', r->'name', 'points', r->'points', 'held', held);
    END LOOP;
    total := least(10, greatest(0, total));
    IF model_score IS NOT NULL THEN
        weight := coalesce((config->>'model_weight')::numeric, 0.5);
        IF weight < 0 OR weight > 1 THEN
            RAISE EXCEPTION 'model_weight of pipeline % must be between 0 and 1', pipeline_id USING ERRCODE = '22023';
        END IF;
        total := (1 - weight) * total + weight * model_score;
    END IF;
    score := round(total, 2);
    rules := detail;
    qualified := ventros.qualify_contact_lead(contact_id, pipeline_id, score,
                                              jsonb_build_object('rules', detail, 'model_score', model_score));
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION ventros.score_contact_lead(uuid, uuid, numeric) IS
    'Scores a contact by a pipeline''s lead rules (conditions as data, points summed within 0..10, optionally blended with a model''s score); at or above min_score emits contact.lead_qualified';

GRANT EXECUTE ON FUNCTION ventros.lead_engagement(uuid) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.score_contact_lead(uuid, uuid, numeric) TO ventros_agent;
