-- Automation rules (sql/83_automation_rules.sql): what a rule sees of an
-- event (its context) and the conditions evaluated on it.

-- ---- what a rule sees: the event's context ------------------------------------

CREATE FUNCTION ventros.automation_uuid(value text) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN value ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN value::uuid END
$$;
COMMENT ON FUNCTION ventros.automation_uuid(text) IS 'A text as a uuid, NULL when it is not one';

-- The event, its payload, and the contact, custom fields, pipeline statuses,
-- message, session and channel it concerns, as one JSON document; a
-- condition's field is a path into it.  Called with the event's tenant acting.
-- No SET search_path (as the condition functions below): it runs once per
-- event in the executor, which pins its own path, and a SET clause saves,
-- sets and restores the path at every call and makes the caller's next
-- statements look the path up again; it is not SECURITY DEFINER and names
-- every object but pg_catalog's with its schema.
CREATE FUNCTION ventros.automation_context(ev ventros.outbox, at timestamptz) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    m ventros.messages;
    s ventros.sessions;
    c ventros.contacts;
    ch ventros.channels;
    message_id uuid := coalesce(CASE WHEN ev.aggregate_type = 'message' THEN ev.aggregate_id END,
                                ventros.automation_uuid(ev.payload->>'message_id'));
    session_id uuid := coalesce(CASE WHEN ev.aggregate_type = 'session' THEN ev.aggregate_id END,
                                ventros.automation_uuid(ev.payload->>'session_id'));
    contact_id uuid := coalesce(CASE WHEN ev.aggregate_type = 'contact' THEN ev.aggregate_id END,
                                ventros.automation_uuid(ev.payload->>'contact_id'));
    channel_id uuid := ventros.automation_uuid(ev.payload->>'channel_id');
    ctx jsonb;
BEGIN
    IF message_id IS NOT NULL THEN
        SELECT * INTO m FROM ventros.messages x WHERE x.tenant_id = ev.tenant_id AND x.id = message_id;
        session_id := coalesce(session_id, m.session_id);
        contact_id := coalesce(contact_id, m.contact_id);
        channel_id := coalesce(channel_id, m.channel_id);
    END IF;
    IF session_id IS NOT NULL THEN
        SELECT * INTO s FROM ventros.sessions x WHERE x.tenant_id = ev.tenant_id AND x.id = session_id;
        contact_id := coalesce(contact_id, s.contact_id);
        channel_id := coalesce(channel_id, s.channel_id);
    END IF;
    IF contact_id IS NOT NULL THEN
        SELECT * INTO c FROM ventros.contacts x WHERE x.tenant_id = ev.tenant_id AND x.id = contact_id;
    END IF;
    IF channel_id IS NOT NULL THEN
        SELECT * INTO ch FROM ventros.channels x WHERE x.tenant_id = ev.tenant_id AND x.id = channel_id;
    END IF;
    ctx := jsonb_build_object(
        'event', jsonb_build_object('id', ev.event_id, 'type', ev.event_type, 'aggregate_type', ev.aggregate_type,
                                    'aggregate_id', ev.aggregate_id, 'actor', ev.actor, 'occurred_at', ev.occurred_at),
        'payload', ev.payload);
    IF c.id IS NOT NULL THEN
        ctx := ctx || jsonb_build_object('contact', to_jsonb(c) - 'tenant_id'
            || jsonb_build_object('custom', coalesce((SELECT jsonb_object_agg(f.field_key, f.field_value)
                                                       FROM ventros.contact_custom_fields f
                                                      WHERE f.tenant_id = ev.tenant_id AND f.contact_id = c.id
                                                        AND f.deleted_at IS NULL), '{}')),
            'pipeline', (SELECT jsonb_build_object('status_ids', coalesce(jsonb_agg(p.status_id), '[]'),
                                                   'statuses', coalesce(jsonb_agg(st.name), '[]'),
                                                   'pipeline_ids', coalesce(jsonb_agg(p.pipeline_id), '[]'))
                           FROM ventros.contact_pipeline_statuses p
                           JOIN ventros.pipeline_statuses st ON st.tenant_id = p.tenant_id AND st.id = p.status_id
                          WHERE p.tenant_id = ev.tenant_id AND p.contact_id = c.id AND p.exited_at IS NULL
                            AND p.deleted_at IS NULL));
    END IF;
    IF m.id IS NOT NULL THEN
        ctx := ctx || jsonb_build_object('message', to_jsonb(m) - 'tenant_id');
    END IF;
    IF s.id IS NOT NULL THEN
        ctx := ctx || jsonb_build_object('session', to_jsonb(s) - 'tenant_id'
            || jsonb_build_object('duration_minutes',
                   round(extract(epoch FROM coalesce(s.ended_at, at) - s.started_at) / 60, 2)));
    END IF;
    IF ch.id IS NOT NULL THEN
        ctx := ctx || jsonb_build_object('channel', jsonb_build_object('id', ch.id, 'name', ch.name, 'type', ch.type,
                                                                       'status', ch.status));
    END IF;
    RETURN ctx;
END
$$;
COMMENT ON FUNCTION ventros.automation_context(ventros.outbox, timestamptz) IS
    'What an automation rule sees of an event: event, payload, contact (with custom fields), pipeline statuses, message, session (with duration_minutes) and channel';

-- ---- conditions ----------------------------------------------------------------

-- The three functions that evaluate conditions run for every rule of every
-- event, so they have no SET search_path: with one, every call saves and
-- restores the setting and invalidates the cached search path (a few
-- microseconds each, three calls per condition).  They are not SECURITY
-- DEFINER (they run with their caller's rights, and the executor pins its
-- own path), and no tenant can create a function or an operator in a
-- schema they would find.

CREATE FUNCTION ventros.automation_compare(actual jsonb, op text, expected jsonb) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE
AS $$
DECLARE
    a text := actual #>> '{}';
    e text := expected #>> '{}';
    missing boolean := actual IS NULL OR jsonb_typeof(actual) = 'null';
BEGIN
    CASE op
    WHEN 'is_null' THEN RETURN missing;
    WHEN 'is_not_null' THEN RETURN NOT missing;
    WHEN 'ne' THEN RETURN missing OR NOT ventros.automation_compare(actual, 'eq', expected);
    WHEN 'not_in' THEN RETURN missing OR NOT ventros.automation_compare(actual, 'in', expected);
    WHEN 'not_contains' THEN RETURN missing OR NOT ventros.automation_compare(actual, 'contains', expected);
    ELSE
        IF missing THEN
            RETURN false;
        END IF;
    END CASE;
    CASE op
    WHEN 'eq' THEN RETURN actual = expected OR a = e;
    WHEN 'gt', 'lt', 'gte', 'lte' THEN
        IF jsonb_typeof(actual) = 'number' AND jsonb_typeof(expected) = 'number' THEN
            RETURN CASE op WHEN 'gt' THEN a::numeric > e::numeric WHEN 'lt' THEN a::numeric < e::numeric
                           WHEN 'gte' THEN a::numeric >= e::numeric ELSE a::numeric <= e::numeric END;
        END IF;
        RETURN CASE op WHEN 'gt' THEN a > e WHEN 'lt' THEN a < e WHEN 'gte' THEN a >= e ELSE a <= e END;
    WHEN 'contains' THEN
        IF jsonb_typeof(actual) = 'array' THEN
            RETURN actual @> CASE WHEN jsonb_typeof(expected) = 'array' THEN expected ELSE jsonb_build_array(expected) END;
        END IF;
        RETURN strpos(lower(a), lower(e)) > 0;
    WHEN 'starts_with' THEN RETURN starts_with(lower(a), lower(e));
    WHEN 'ends_with' THEN RETURN right(lower(a), length(e)) = lower(e);
    WHEN 'in' THEN
        RETURN jsonb_typeof(expected) = 'array'
           AND (expected @> jsonb_build_array(actual) OR EXISTS (SELECT 1 FROM jsonb_array_elements_text(expected) x WHERE x = a));
    WHEN 'matches' THEN RETURN a ~* e;
    ELSE
        RAISE EXCEPTION 'unknown condition operator "%"', left(op, 32) USING ERRCODE = '22023';
    END CASE;
END
$$;
COMMENT ON FUNCTION ventros.automation_compare(jsonb, text, jsonb) IS
    'One condition operator (eq, ne, gt, lt, gte, lte, contains, not_contains, starts_with, ends_with, in, not_in, is_null, is_not_null, matches) on JSON values';

-- A condition's field as a path of the context: a bare name is a payload field.
-- No SET search_path: a plain SQL expression, inlined into the conditions'
-- evaluation (a SQL function that is not inlined is planned at every call,
-- some 0.1 ms, once per condition of every rule and event); it calls only
-- pg_catalog and runs with its caller's rights.
CREATE FUNCTION ventros.automation_field(ctx jsonb, field text) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT ctx OPERATOR(pg_catalog.#>)
           CASE WHEN pg_catalog.split_part(field, '.', 1) IN ('payload', 'event', 'contact', 'message', 'session', 'channel', 'pipeline')
                THEN pg_catalog.string_to_array(field, '.')
                ELSE ARRAY['payload'] OPERATOR(pg_catalog.||) pg_catalog.string_to_array(field, '.') END
$$;
COMMENT ON FUNCTION ventros.automation_field(jsonb, text) IS
    'The value of a condition field in a rule''s context (payload.<path>, contact.<column>, contact.custom.<key>, session.<column>, message.<column>, channel.<column>, event.<attribute>, pipeline.statuses; a bare name is payload.<name>)';

CREATE FUNCTION ventros.automation_condition_holds(c jsonb, ctx jsonb, tz text, at timestamptz) RETURNS boolean
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    txt text;
    w jsonb;
BEGIN
    -- the common shape first: a field, an operator, a value (and no other kind)
    IF c ? 'field' AND NOT c ?| ARRAY['all', 'any', 'not', 'keyword', 'regex', 'tag', 'time_window', 'weekdays',
                                      'sentiment', 'sentiment_below', 'topic'] THEN
        RETURN ventros.automation_compare(ventros.automation_field(ctx, c->>'field'), c->>'operator', c->'value');
    ELSIF c ? 'all' THEN
        RETURN NOT EXISTS (SELECT 1 FROM jsonb_array_elements(c->'all') x
                           WHERE NOT ventros.automation_condition_holds(x, ctx, tz, at));
    ELSIF c ? 'any' THEN
        RETURN EXISTS (SELECT 1 FROM jsonb_array_elements(c->'any') x
                       WHERE ventros.automation_condition_holds(x, ctx, tz, at));
    ELSIF c ? 'not' THEN
        RETURN NOT ventros.automation_condition_holds(c->'not', ctx, tz, at);
    ELSIF c ? 'keyword' THEN
        -- whole words, case-insensitive; any of a list
        txt := lower(coalesce(ctx #>> '{message,text}', ctx #>> '{payload,text}', ''));
        RETURN EXISTS (SELECT 1 FROM jsonb_array_elements_text(CASE jsonb_typeof(c->'keyword') WHEN 'array' THEN c->'keyword'
                                                                    ELSE jsonb_build_array(c->'keyword') END) k
                       WHERE btrim(k) <> ''
                         AND strpos(' ' || regexp_replace(txt, '[^[:alnum:]_]+', ' ', 'g') || ' ',
                                    ' ' || btrim(regexp_replace(lower(k), '[^[:alnum:]_]+', ' ', 'g')) || ' ') > 0);
    ELSIF c ? 'regex' THEN
        RETURN lower(coalesce(ctx #>> '{message,text}', ctx #>> '{payload,text}', '')) ~* (c->>'regex');
    ELSIF c ? 'tag' THEN
        RETURN coalesce(ctx #> '{contact,tags}' ? (c->>'tag'), false);
    ELSIF c ? 'time_window' THEN
        w := c->'time_window';
        IF w ? 'weekdays' AND NOT (w->'weekdays') @> to_jsonb(extract(isodow FROM at AT TIME ZONE tz)::integer) THEN
            RETURN false;
        END IF;
        RETURN CASE WHEN (w->>'from')::time <= (w->>'to')::time
                    THEN (at AT TIME ZONE tz)::time >= (w->>'from')::time
                         AND ((at AT TIME ZONE tz)::time < (w->>'to')::time OR w->>'to' LIKE '24:%')
                    ELSE (at AT TIME ZONE tz)::time >= (w->>'from')::time OR (at AT TIME ZONE tz)::time < (w->>'to')::time END;
    ELSIF c ? 'weekdays' THEN
        RETURN (c->'weekdays') @> to_jsonb(extract(isodow FROM at AT TIME ZONE tz)::integer);
    ELSIF c ? 'sentiment' THEN
        -- the session's sentiment label (its AI summary, sql/98_intelligence.sql): one or any of a list
        RETURN coalesce(CASE jsonb_typeof(c->'sentiment') WHEN 'array' THEN c->'sentiment'
                             ELSE jsonb_build_array(c->'sentiment') END @> jsonb_build_array(ctx #> '{session,sentiment}'), false);
    ELSIF c ? 'sentiment_below' THEN
        RETURN (ctx #>> '{session,sentiment_score}')::numeric < (c->>'sentiment_below')::numeric;
    ELSIF c ? 'topic' THEN
        -- any of the topics, case-insensitive
        RETURN EXISTS (SELECT 1 FROM jsonb_array_elements_text(CASE jsonb_typeof(c->'topic') WHEN 'array' THEN c->'topic'
                                                                    ELSE jsonb_build_array(c->'topic') END) t,
                                     jsonb_array_elements_text(CASE jsonb_typeof(ctx #> '{session,topics}') WHEN 'array'
                                                                    THEN ctx #> '{session,topics}' END) st
                       WHERE lower(st) = lower(t));
    END IF;
    RETURN ventros.automation_compare(ventros.automation_field(ctx, c->>'field'), c->>'operator', c->'value');
END
$$;
COMMENT ON FUNCTION ventros.automation_condition_holds(jsonb, jsonb, text, timestamptz) IS
    'Whether one condition holds in a rule''s context at an instant, in the tenant''s timezone (time windows and weekdays: ISO, 1 = Monday)';

-- A rule's list of conditions: all of them, except that an element with
-- "logic": "OR" is or-ed with what precedes it (the stored shape).
CREATE FUNCTION ventros.automation_conditions_hold(conditions jsonb, ctx jsonb, tz text, at timestamptz) RETURNS boolean
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    result boolean := true;
    c jsonb;
    n integer := coalesce(jsonb_array_length(conditions), 0);
BEGIN
    -- an index loop, not a query over jsonb_array_elements: this runs for
    -- every rule of every event
    FOR i IN 0 .. n - 1 LOOP
        c := conditions->i;
        IF i = 0 THEN
            result := ventros.automation_condition_holds(c, ctx, tz, at);
        ELSIF upper(coalesce(c->>'logic', 'AND')) = 'OR' THEN
            result := result OR ventros.automation_condition_holds(c, ctx, tz, at);
        ELSE
            result := result AND ventros.automation_condition_holds(c, ctx, tz, at);
        END IF;
    END LOOP;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.automation_conditions_hold(jsonb, jsonb, text, timestamptz) IS
    'Whether a rule''s conditions hold: all of them, an element with "logic": "OR" or-ed with what precedes it; none: true';

-- The executor's evaluation, in C (src/automation_conditions.c): the same
-- answer as ventros.automation_conditions_hold, which stays the reference
-- (the C code hands it every shape it does not evaluate itself, and
-- test/pgtap/271_automation_conditions_c.sql runs both on the same cases);
-- without a PL/pgSQL call per condition and per rule.
CREATE FUNCTION ventros.automation_conditions_hold_c(conditions jsonb, ctx jsonb, tz text, at timestamptz)
RETURNS boolean
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'vn_automation_conditions_hold';
COMMENT ON FUNCTION ventros.automation_conditions_hold_c(jsonb, jsonb, text, timestamptz) IS
    'ventros.automation_conditions_hold evaluated in C (the executor''s): the same answer, NULL and errors included';

-- An event's rules at depth 0 (no depth limit or loop to check), in
-- priority order: which hold (acting: their positions in rules, from 1) and
-- which their conditions skip (skipped: their ids), up to the first rule
-- that holds and has stop_processing.
CREATE FUNCTION ventros.automation_rules_holding(rules ventros.automations[], ctx jsonb, tz text, at timestamptz,
                                                 OUT acting integer[], OUT skipped uuid[])
LANGUAGE c STABLE STRICT
AS 'MODULE_PATHNAME', 'vn_automation_rules_holding';
COMMENT ON FUNCTION ventros.automation_rules_holding(ventros.automations[], jsonb, text, timestamptz) IS
    'The rules of an event (in priority order) whose conditions hold (acting: positions from 1) and those they skip (skipped: ids), up to the first rule that holds with stop_processing; conditions as ventros.automation_conditions_hold';

GRANT EXECUTE ON FUNCTION ventros.automation_uuid(text),
    ventros.automation_compare(jsonb, text, jsonb), ventros.automation_field(jsonb, text),
    ventros.automation_condition_holds(jsonb, jsonb, text, timestamptz),
    ventros.automation_conditions_hold(jsonb, jsonb, text, timestamptz),
    ventros.automation_context(ventros.outbox, timestamptz) TO ventros_viewer;
