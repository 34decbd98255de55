-- Aggregate 8, Automation (CRM): a rule that runs its actions when its
-- trigger fires and its conditions hold, or on a schedule.  enabled is the
-- state column (automation.enabled / automation.disabled).  Runs are
-- recorded by the automation executor alone (sql/83_automation_rules.sql:
-- the run log ventros.automation_runs and the events automation.triggered,
-- .executed, .failed); no tenant role can write a run (docs/security.md).
-- Custom trigger codes live in automation_triggers (a child aggregate),
-- unique per tenant.

-- The built-in catalogue (discovery).
CREATE FUNCTION ventros.automation_catalogue() RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT '{
        "types": ["pipeline_based", "follow_up", "reengagement", "onboarding", "event", "scheduled", "scheduled_report",
                  "time_notification", "webhook", "custom"],
        "triggers": {"session": ["session.ended", "session.timeout", "session.resolved", "session.escalated", "no_response.timeout"],
                     "message": ["message.received"],
                     "pipeline": ["status.changed", "stage.completed"],
                     "temporal": ["after.delay", "scheduled", "date_field.reached"],
                     "transaction": ["purchase.completed", "payment.received", "refund.issued", "cart.abandoned", "order.shipped"],
                     "behavior": ["page.visited", "form.submitted", "file.downloaded"]},
        "actions": ["send_message", "send_template", "change_pipeline_status", "assign_agent", "assign_to_queue", "create_task",
                    "add_tag", "remove_tag", "update_custom_field", "create_note", "create_agent_report", "send_webhook",
                    "trigger_workflow", "notify_agent", "notify_coordinator", "send_email",
                    "assign_team", "set_field", "set_custom_field", "send_canned_response", "add_note",
                    "enroll_sequence", "unenroll_sequence", "add_to_list", "remove_from_list", "close_session",
                    "call_webhook", "emit_event", "notify_agents", "wait", "snooze_session", "summarize_session"],
        "condition_operators": ["eq", "ne", "gt", "lt", "gte", "lte", "contains", "not_contains", "starts_with", "ends_with",
                                "in", "not_in", "is_null", "is_not_null", "matches"],
        "logic_operators": ["AND", "OR"],
        "schedule_types": ["once", "daily", "weekly", "monthly", "cron"]
    }'::jsonb
$$;
COMMENT ON FUNCTION ventros.automation_catalogue() IS
    'Discovery: automation types, built-in triggers by category, actions, condition and logic operators, schedule types';

-- One condition: a leaf {field, operator, value} (field: payload.<path>,
-- contact.<column>, contact.custom.<key>, session.<column>, message.<column>,
-- channel.<column>, event.<attribute>, pipeline.status; a bare name is a
-- payload field), a typed leaf ({keyword: [...]}, {regex: "..."}, {tag: "..."},
-- {time_window: {from, to, weekdays}}, {weekdays: [1..7]}, the session's
-- AI analysis: {sentiment: label or [labels]}, {sentiment_below: n},
-- {topic: t or [t, ...]}), or a combination
-- ({all: [...]}, {any: [...]}, {not: {...}}).  docs/automation.md.
CREATE FUNCTION ventros.automation_condition_valid(c jsonb) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF jsonb_typeof(c) <> 'object' THEN
        RETURN false;
    ELSIF c ? 'all' OR c ? 'any' THEN
        RETURN jsonb_typeof(coalesce(c->'all', c->'any')) = 'array'
           AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(coalesce(c->'all', c->'any')) x
                           WHERE NOT ventros.automation_condition_valid(x));
    ELSIF c ? 'not' THEN
        RETURN ventros.automation_condition_valid(c->'not');
    ELSIF c ? 'keyword' THEN
        RETURN jsonb_typeof(c->'keyword') IN ('string', 'array');
    ELSIF c ? 'regex' THEN
        RETURN jsonb_typeof(c->'regex') = 'string';
    ELSIF c ? 'tag' THEN
        RETURN jsonb_typeof(c->'tag') = 'string';
    ELSIF c ? 'time_window' THEN
        RETURN jsonb_typeof(c->'time_window') = 'object'
           AND coalesce(c->'time_window'->>'from', '') ~ '^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$'
           AND coalesce(c->'time_window'->>'to', '') ~ '^([01][0-9]|2[0-4]):[0-5][0-9](:[0-5][0-9])?$'
           AND (NOT c->'time_window' ? 'weekdays' OR jsonb_typeof(c->'time_window'->'weekdays') = 'array');
    ELSIF c ? 'weekdays' THEN
        RETURN jsonb_typeof(c->'weekdays') = 'array';
    ELSIF c ? 'sentiment' THEN
        RETURN jsonb_typeof(c->'sentiment') IN ('string', 'array');
    ELSIF c ? 'sentiment_below' THEN
        RETURN jsonb_typeof(c->'sentiment_below') = 'number';
    ELSIF c ? 'topic' THEN
        RETURN jsonb_typeof(c->'topic') IN ('string', 'array');
    END IF;
    RETURN c ? 'field' AND jsonb_typeof(c->'field') = 'string'
       AND coalesce((c->'operator') <@ (ventros.automation_catalogue()->'condition_operators'), false);
END
$$;
COMMENT ON FUNCTION ventros.automation_condition_valid(jsonb) IS
    'True when one automation condition has a documented shape: {field, operator, value}, {keyword}, {regex}, {tag}, {time_window}, {weekdays}, {sentiment}, {sentiment_below}, {topic}, or {all}/{any}/{not} of conditions';

-- ---- cron expressions (schedule {"type": "cron", "expression": "..."}) ------
--
-- The syntax pg_cron accepts for its minute schedules (docs/automation.md):
-- five fields, minute hour day-of-month month day-of-week, each a list of
-- "*", "n", "a-b", "*/s" or "a-b/s"; months JAN..DEC and weekdays SUN..SAT
-- by name (any case), weekday 7 = Sunday; the macros @yearly, @annually,
-- @monthly, @weekly, @daily, @midnight, @hourly.  As in cron, when both
-- day fields are restricted (neither starts with "*") a day matching either
-- one matches.  Not accepted: @reboot, pg_cron's "N seconds", "$" (last day
-- of the month), L/W/#, and a step after a single number ("5/15").

-- One field: the sorted set of its values, or 22023 naming the field.
CREATE FUNCTION ventros.cron_field(field text, what text, lo integer, hi integer, names text[] DEFAULT NULL)
RETURNS integer[]
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    item text;
    m text[];
    bounds integer[];
    step integer;
    result integer[] := '{}';
BEGIN
    FOREACH item IN ARRAY string_to_array(lower(field), ',') LOOP
        m := regexp_match(item, '^(\*|([a-z]{3}|[0-9]{1,2})(-([a-z]{3}|[0-9]{1,2}))?)(/([0-9]{1,2}))?$');
        IF m IS NULL OR (m[2] IS NOT NULL AND m[4] IS NULL AND m[6] IS NOT NULL) THEN
            RAISE EXCEPTION 'invalid % field "%" in cron expression', what, left(field, 40) USING ERRCODE = '22023',
                HINT = 'Each field is a list of *, n, a-b, */step or a-b/step.';
        END IF;
        bounds := ARRAY[lo, hi];
        IF m[1] <> '*' THEN
            SELECT array_agg(CASE WHEN v ~ '^[0-9]+$' THEN v::integer ELSE array_position(names, v) - 1 + lo END ORDER BY o)
              INTO bounds FROM unnest(ARRAY[m[2], coalesce(m[4], m[2])]) WITH ORDINALITY x(v, o);
        END IF;
        step := coalesce(m[6]::integer, 1);
        IF bounds[1] IS NULL OR bounds[2] IS NULL OR bounds[1] < lo OR bounds[2] > hi OR bounds[1] > bounds[2] OR step < 1 THEN
            RAISE EXCEPTION 'invalid % field "%" in cron expression', what, left(field, 40) USING ERRCODE = '22023',
                DETAIL = format('Values of the %s field go from %s to %s, ranges upwards, steps from 1.', what, lo, hi);
        END IF;
        result := result || ARRAY(SELECT generate_series(bounds[1], bounds[2], step));
    END LOOP;
    RETURN ARRAY(SELECT DISTINCT x FROM unnest(result) x ORDER BY x);
END
$$;
COMMENT ON FUNCTION ventros.cron_field(text, text, integer, integer, text[]) IS
    'The values one field of a cron expression selects (lists, ranges, steps, names), or 22023';

-- A cron expression as the sets a minute is matched against:
-- {"minute", "hour", "dom", "month", "dow": [...], "dom_star", "dow_star",
-- "fixed": neither minute nor hour starts with "*"}, or 22023.
CREATE FUNCTION ventros.cron_parse(expression text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    expr text := lower(btrim(coalesce(expression, '')));
    f text[];
    dow integer[];
    dom integer[];
    month integer[];
BEGIN
    IF length(expr) > 200 THEN
        RAISE EXCEPTION 'cron expression is longer than 200 characters' USING ERRCODE = '22023';
    END IF;
    expr := CASE expr WHEN '@yearly' THEN '0 0 1 1 *' WHEN '@annually' THEN '0 0 1 1 *' WHEN '@monthly' THEN '0 0 1 * *'
                      WHEN '@weekly' THEN '0 0 * * 0' WHEN '@daily' THEN '0 0 * * *' WHEN '@midnight' THEN '0 0 * * *'
                      WHEN '@hourly' THEN '0 * * * *' ELSE expr END;
    f := regexp_split_to_array(expr, '\s+');
    IF expr = '' OR cardinality(f) <> 5 THEN
        RAISE EXCEPTION 'invalid cron expression "%"', left(expression, 60) USING ERRCODE = '22023',
            DETAIL = 'A cron expression has five fields: minute hour day-of-month month day-of-week (or @hourly, @daily, @weekly, @monthly, @yearly).',
            HINT = 'For example "*/15 9-17 * * MON-FRI".';
    END IF;
    dow := ventros.cron_field(f[5], 'day-of-week', 0, 7, '{sun,mon,tue,wed,thu,fri,sat}');
    dom := ventros.cron_field(f[3], 'day-of-month', 1, 31);
    month := ventros.cron_field(f[4], 'month', 1, 12, '{jan,feb,mar,apr,may,jun,jul,aug,sep,oct,nov,dec}');
    -- days matched by day-of-month alone (the weekday field "*..."): one must exist
    IF left(f[5], 1) = '*' AND NOT EXISTS (
        SELECT 1 FROM unnest(month) m, unnest(dom) d
         WHERE d <= ('{31,29,31,30,31,30,31,31,30,31,30,31}'::integer[])[m]) THEN
        RAISE EXCEPTION 'cron expression "%" never matches', left(expression, 60) USING ERRCODE = '22023',
            DETAIL = 'None of its months has one of its days of the month.';
    END IF;
    RETURN jsonb_build_object(
        'minute', ventros.cron_field(f[1], 'minute', 0, 59),
        'hour', ventros.cron_field(f[2], 'hour', 0, 23),
        'dom', dom,
        'month', month,
        'dow', ARRAY(SELECT DISTINCT x % 7 FROM unnest(dow) x ORDER BY 1),
        'dom_star', left(f[3], 1) = '*', 'dow_star', left(f[5], 1) = '*',
        'fixed', left(f[1], 1) <> '*' AND left(f[2], 1) <> '*');
END
$$;
COMMENT ON FUNCTION ventros.cron_parse(text) IS
    'Parses a cron expression (5 fields as pg_cron: lists, ranges, steps, month and weekday names, @hourly..@yearly) into the sets of values it matches; 22023 when invalid';

CREATE FUNCTION ventros.cron_valid(expression text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.cron_parse(expression);
    RETURN true;
EXCEPTION WHEN invalid_parameter_value THEN
    RETURN false;
END
$$;
COMMENT ON FUNCTION ventros.cron_valid(text) IS 'Whether a cron expression parses (ventros.cron_parse)';

-- Shapes of conditions, actions and schedule (used by CHECKs).
CREATE FUNCTION ventros.automation_rules_valid(conditions jsonb, actions jsonb, schedule jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT pg_catalog.jsonb_typeof(conditions) = 'array' AND pg_catalog.jsonb_typeof(actions) = 'array'
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.jsonb_array_elements(conditions) c
                       WHERE NOT ventros.automation_condition_valid(c)
                          OR (c ? 'logic' AND NOT (c->'logic') <@ (ventros.automation_catalogue()->'logic_operators')))
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.jsonb_array_elements(actions) a
                       WHERE pg_catalog.jsonb_typeof(a) <> 'object'
                          OR NOT coalesce((a->'type') <@ (ventros.automation_catalogue()->'actions'), false)
                          OR (a ? 'params' AND pg_catalog.jsonb_typeof(a->'params') <> 'object')
                          OR (a ? 'delay_minutes' AND NOT (pg_catalog.jsonb_typeof(a->'delay_minutes') = 'number'
                                                           AND (a->>'delay_minutes')::numeric >= 0)))
       AND (schedule IS NULL OR (pg_catalog.jsonb_typeof(schedule) = 'object'
                                 AND coalesce((schedule->'type') <@ (ventros.automation_catalogue()->'schedule_types'), false)
                                 AND (schedule->>'type' <> 'cron' OR ventros.cron_valid(schedule->>'expression'))))
$$;
COMMENT ON FUNCTION ventros.automation_rules_valid(jsonb, jsonb, jsonb) IS
    'True when conditions, actions and schedule have the documented shapes (field/operator/value, type/params/delay_minutes, type; a cron schedule''s expression parses)';

CREATE TABLE ventros.automations (
    id              uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id       text        NOT NULL,
    version         integer     NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    project_id      uuid        NOT NULL,
    automation_type text        NOT NULL DEFAULT 'pipeline_based',
    pipeline_id     uuid,
    name            text        NOT NULL,
    description     text,
    trigger         text        NOT NULL,
    conditions      jsonb       NOT NULL DEFAULT '[]',
    actions         jsonb       NOT NULL DEFAULT '[]',
    priority        integer     NOT NULL DEFAULT 0,
    enabled         boolean     NOT NULL DEFAULT true,
    schedule        jsonb,
    last_executed   timestamptz,
    next_execution  timestamptz,
    stop_processing boolean     NOT NULL DEFAULT false,
    trigger_config  jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id),
    FOREIGN KEY (tenant_id, pipeline_id) REFERENCES ventros.pipelines (tenant_id, id) ON DELETE SET NULL (pipeline_id),
    CONSTRAINT automations_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT automations_type_known CHECK (automation_type IN ('pipeline_based', 'follow_up', 'reengagement', 'onboarding',
        'event', 'scheduled', 'scheduled_report', 'time_notification', 'webhook', 'custom')),
    CONSTRAINT automations_pipeline_bound CHECK (automation_type <> 'pipeline_based' OR pipeline_id IS NOT NULL OR deleted_at IS NOT NULL),
    CONSTRAINT automations_trigger_format CHECK (trigger ~ '^(\*|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*(\.\*)?)$' AND length(trigger) <= 100),
    CONSTRAINT automations_trigger_config_object CHECK (jsonb_typeof(trigger_config) = 'object'),
    CONSTRAINT automations_priority CHECK (priority >= 0),
    CONSTRAINT automations_rules_valid CHECK (ventros.automation_rules_valid(conditions, actions, schedule))
);
CREATE INDEX automations_by_trigger ON ventros.automations (tenant_id, trigger, priority DESC) WHERE enabled AND deleted_at IS NULL;
COMMENT ON TABLE ventros.automations IS 'Automation: a trigger, conditions and actions';

CREATE TABLE ventros.automation_triggers (
    id          uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id   text        NOT NULL,
    version     integer     NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    code        text        NOT NULL,
    name        text        NOT NULL,
    category    text        NOT NULL DEFAULT 'custom',
    parameters  jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT automation_triggers_code_format CHECK (code ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$' AND length(code) <= 100),
    CONSTRAINT automation_triggers_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT automation_triggers_category_known CHECK (category IN ('session', 'message', 'pipeline', 'temporal', 'transaction',
                                                                      'behavior', 'custom', 'webhook')),
    CONSTRAINT automation_triggers_parameters_object CHECK (jsonb_typeof(parameters) = 'object')
);
CREATE UNIQUE INDEX automation_triggers_unique_code ON ventros.automation_triggers (tenant_id, code) WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.automation_triggers IS 'A custom trigger code of a tenant';

SELECT ventros.register_aggregate('automation', 'ventros.automations', 'crm',
    state_column => 'enabled',
    transitions => '[
        {"from": null, "to": "true"},
        {"from": null, "to": "false"},
        {"from": "false", "to": "true", "event": "automation.enabled", "description": "An automation was enabled."},
        {"from": "true", "to": "false", "event": "automation.disabled", "description": "An automation was disabled."}
    ]',
    description => 'A trigger, conditions and actions');
SELECT ventros.register_quiet_columns('automation', '{last_executed,next_execution}');
SELECT ventros.register_aggregate('automation_trigger', 'ventros.automation_triggers', 'crm',
    description => 'A custom automation trigger code');
SELECT ventros.register_event_type('automation.triggered', 'The trigger of an automation fired and its conditions held.');
SELECT ventros.register_event_type('automation.executed', 'An automation ran its actions.');
SELECT ventros.register_event_type('automation.failed', 'An automation failed to run its actions.');
-- the executor's reports (it runs as the platform): agents may edit a rule,
-- not say that it ran
SELECT ventros.reserve_event_type(t, 'ventros_platform_admin')
  FROM unnest(ARRAY['automation.triggered', 'automation.executed', 'automation.failed']) t;

-- Whether a rule's trigger selects an event type: "*" every event,
-- "message.*" every message.<action>, else equality (the patterns of
-- webhook subscriptions, src/webhook_fanout.c).
CREATE FUNCTION ventros.automation_trigger_matches(trigger text, event_type text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT trigger = '*' OR trigger = event_type
        OR (pg_catalog.right(trigger, 2) = '.*' AND pg_catalog.starts_with(event_type, pg_catalog.left(trigger, -1)))
        -- the built-in message.received: an inbound message.created (the executor checks from_me)
        OR (trigger = 'message.received' AND event_type = 'message.created')
$$;
COMMENT ON FUNCTION ventros.automation_trigger_matches(text, text) IS
    'Whether an automation trigger selects an event type: "*" all, "message.*" every message.<action>, message.received the message.created of inbound messages, else equality';

-- Known triggers: the built-in ones, the tenant's custom codes, and any
-- event type of the catalog or pattern of them ("message.*", "*").
CREATE FUNCTION ventros.is_known_trigger(trigger text) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM jsonb_each(ventros.automation_catalogue()->'triggers') c, jsonb_array_elements_text(c.value) t
                   WHERE t = trigger)
        OR EXISTS (SELECT 1 FROM ventros.automation_triggers x WHERE x.tenant_id = ventros.require_tenant() AND x.code = trigger)
        OR EXISTS (SELECT 1 FROM ventros.event_types e WHERE ventros.automation_trigger_matches(trigger, e.event_type))
        OR trigger LIKE 'custom.%'
$$;
COMMENT ON FUNCTION ventros.is_known_trigger(text) IS
    'Whether a trigger is built in, a custom code of the acting tenant, a custom.<name> event, or an event type of the catalog or a pattern matching one ("message.*", "*")';

CREATE FUNCTION ventros.create_automation(name text, trigger text, actions jsonb, conditions jsonb DEFAULT '[]',
                                          automation_type text DEFAULT 'pipeline_based', pipeline_id uuid DEFAULT NULL,
                                          priority integer DEFAULT 0, schedule jsonb DEFAULT NULL,
                                          description text DEFAULT NULL, project_id uuid DEFAULT NULL,
                                          stop_processing boolean DEFAULT false, trigger_config jsonb DEFAULT '{}')
RETURNS ventros.automations
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.automations;
BEGIN
    IF name IS NULL OR trigger IS NULL THEN
        RAISE EXCEPTION 'automation % must not be null', CASE WHEN name IS NULL THEN 'name' ELSE 'trigger' END USING ERRCODE = '23502';
    END IF;
    PERFORM ventros.require_value(coalesce(automation_type, 'pipeline_based'), ARRAY(
        SELECT jsonb_array_elements_text(ventros.automation_catalogue()->'types')), 'automation type');
    IF NOT ventros.is_known_trigger(trigger) THEN
        RAISE EXCEPTION 'unknown automation trigger "%"', left(trigger, 100) USING ERRCODE = '22023',
            HINT = 'Use a built-in trigger or register a custom one with ventros.register_automation_trigger().';
    END IF;
    IF coalesce(automation_type, 'pipeline_based') = 'pipeline_based' AND pipeline_id IS NULL THEN
        RAISE EXCEPTION 'a pipeline_based automation needs a pipeline' USING ERRCODE = '23502';
    END IF;
    IF jsonb_typeof(schedule) = 'object' AND schedule->>'type' = 'cron' THEN
        PERFORM ventros.cron_parse(schedule->>'expression');   -- 22023 saying what is wrong
    END IF;
    IF NOT ventros.automation_rules_valid(coalesce(conditions, '[]'), coalesce(actions, '[]'), schedule) THEN
        RAISE EXCEPTION 'malformed automation conditions, actions or schedule' USING ERRCODE = '22023',
            HINT = 'Conditions are {field, operator, value, logic}; actions {type, params, delay_minutes}; see ventros.automation_catalogue().';
    END IF;
    INSERT INTO ventros.automations (project_id, automation_type, pipeline_id, name, description, trigger, conditions, actions,
                                     priority, schedule, stop_processing, trigger_config)
    VALUES (coalesce(project_id, ventros.default_project()), coalesce(automation_type, 'pipeline_based'), pipeline_id,
            ventros.check_length(btrim(name), 200, 'automation name'), description, trigger, coalesce(conditions, '[]'),
            coalesce(actions, '[]'), coalesce(priority, 0), schedule, coalesce(stop_processing, false),
            coalesce(ventros.require_json(trigger_config, 'object', 'trigger configuration'), '{}'))
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.create_automation(text, text, jsonb, jsonb, text, uuid, integer, jsonb, text, uuid, boolean, jsonb) IS
    'Creates an enabled automation (known trigger or event pattern, shaped rules: 22023; pipeline_based needs a pipeline: 23502; stop_processing: no lower-priority rule runs after it for the same event; trigger_config: parameters of time triggers); emits automation.created';

CREATE FUNCTION ventros.update_automation(automation_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.automations
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF jsonb_typeof(changes->'trigger') = 'string' AND NOT ventros.is_known_trigger(changes->>'trigger') THEN
        RAISE EXCEPTION 'unknown automation trigger "%"', left(changes->>'trigger', 100) USING ERRCODE = '22023';
    END IF;
    -- a new schedule: the next tick arms it again (next_execution of the old one means nothing)
    IF changes ? 'schedule' AND NOT changes ? 'next_execution' THEN
        changes := changes || '{"next_execution": null}';
    END IF;
    RETURN ventros.apply_changes(NULL::ventros.automations, 'automation', automation_id, expected_version, changes,
        ARRAY['name', 'description', 'trigger', 'conditions', 'actions', 'priority', 'enabled', 'schedule', 'pipeline_id',
              'automation_type', 'next_execution', 'stop_processing', 'trigger_config']);
EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION 'invalid automation: %', SQLERRM USING ERRCODE = '23514';
END
$$;
COMMENT ON FUNCTION ventros.update_automation(uuid, integer, jsonb) IS
    'Changes an automation (rules shaped, 23514; a new schedule is armed again by the next tick); emits automation.updated, or .enabled / .disabled';

CREATE FUNCTION ventros.set_automation_enabled(automation_id uuid, expected_version integer, enabled boolean)
RETURNS ventros.automations
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.change_row(NULL::ventros.automations, 'automation', automation_id, expected_version, jsonb_build_object('enabled', enabled)) $$;
COMMENT ON FUNCTION ventros.set_automation_enabled(uuid, integer, boolean) IS 'Enables or disables an automation; emits automation.enabled or automation.disabled';

CREATE FUNCTION ventros.add_automation_rule(automation_id uuid, expected_version integer, kind text, rule jsonb)
RETURNS ventros.automations
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a ventros.automations;
BEGIN
    PERFORM ventros.require_value(kind, ARRAY['condition', 'action'], 'rule kind');
    SELECT * INTO a FROM ventros.automations x WHERE x.tenant_id = ventros.require_tenant() AND x.id = automation_id;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('automation', automation_id);
    END IF;
    RETURN ventros.update_automation(automation_id, expected_version,
        CASE kind WHEN 'condition' THEN jsonb_build_object('conditions', a.conditions || jsonb_build_array(rule))
                  ELSE jsonb_build_object('actions', a.actions || jsonb_build_array(rule)) END);
END
$$;
COMMENT ON FUNCTION ventros.add_automation_rule(uuid, integer, text, jsonb) IS
    'Appends a condition or an action (shaped, 23514); emits automation.updated';

CREATE FUNCTION ventros.delete_automation(automation_id uuid, expected_version integer DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.delete_row('ventros.automations', 'automation', automation_id, expected_version) $$;
COMMENT ON FUNCTION ventros.delete_automation(uuid, integer) IS 'Soft-deletes an automation; emits automation.deleted';

CREATE FUNCTION ventros.list_automations(trigger text DEFAULT NULL, pipeline_id uuid DEFAULT NULL, only_enabled boolean DEFAULT false)
RETURNS SETOF ventros.automations
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT a.* FROM ventros.automations a
    WHERE a.tenant_id = ventros.require_tenant()
      AND (list_automations.trigger IS NULL OR a.trigger = list_automations.trigger)
      AND (list_automations.pipeline_id IS NULL OR a.pipeline_id = list_automations.pipeline_id)
      AND (NOT only_enabled OR a.enabled)
    ORDER BY a.priority DESC, a.created_at, a.id
    LIMIT current_setting('ventros.max_page_size')::integer
$$;
COMMENT ON FUNCTION ventros.list_automations(text, uuid, boolean) IS
    'Automations by trigger and pipeline, highest priority first (what an event should run)';

CREATE FUNCTION ventros.register_automation_trigger(code text, name text, category text DEFAULT 'custom',
                                                    parameters jsonb DEFAULT '{}')
RETURNS ventros.automation_triggers
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.automation_triggers;
BEGIN
    IF EXISTS (SELECT 1 FROM jsonb_each(ventros.automation_catalogue()->'triggers') c, jsonb_array_elements_text(c.value) t
               WHERE t = code) THEN
        RAISE EXCEPTION 'trigger "%" is built in', code USING ERRCODE = '23505';
    END IF;
    INSERT INTO ventros.automation_triggers (code, name, category, parameters)
    VALUES (code, ventros.check_length(btrim(name), 200, 'trigger name'), coalesce(category, 'custom'),
            coalesce(ventros.require_json(parameters, 'object', 'trigger parameters'), '{}'))
    RETURNING * INTO result;
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'trigger "%" exists already', code USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.register_automation_trigger(text, text, text, jsonb) IS
    'Registers a custom trigger code (unique per tenant, not a built-in one: 23505); emits automation_trigger.created';

CREATE FUNCTION ventros.unregister_automation_trigger(code text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    trigger_id uuid;
BEGIN
    SELECT t.id INTO trigger_id FROM ventros.automation_triggers t WHERE t.tenant_id = ventros.require_tenant() AND t.code = unregister_automation_trigger.code;
    IF trigger_id IS NULL THEN
        RAISE EXCEPTION 'trigger "%" not found', code USING ERRCODE = 'P0002';
    END IF;
    IF EXISTS (SELECT 1 FROM ventros.automations a WHERE a.tenant_id = ventros.require_tenant() AND a.trigger = unregister_automation_trigger.code) THEN
        RAISE EXCEPTION 'trigger "%" is used by automations', code USING ERRCODE = '23503';
    END IF;
    PERFORM ventros.delete_row('ventros.automation_triggers', 'automation trigger', trigger_id, NULL);
END
$$;
COMMENT ON FUNCTION ventros.unregister_automation_trigger(text) IS
    'Removes a custom trigger no automation uses (23503 otherwise); emits automation_trigger.deleted';

GRANT EXECUTE ON FUNCTION ventros.automation_catalogue(), ventros.automation_rules_valid(jsonb, jsonb, jsonb),
    ventros.cron_field(text, text, integer, integer, text[]), ventros.cron_parse(text), ventros.cron_valid(text),
    ventros.automation_condition_valid(jsonb), ventros.automation_trigger_matches(text, text),
    ventros.is_known_trigger(text), ventros.list_automations(text, uuid, boolean) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.create_automation(text, text, jsonb, jsonb, text, uuid, integer, jsonb, text, uuid, boolean, jsonb),
    ventros.update_automation(uuid, integer, jsonb), ventros.set_automation_enabled(uuid, integer, boolean),
    ventros.add_automation_rule(uuid, integer, text, jsonb),
    ventros.register_automation_trigger(text, text, text, jsonb), ventros.unregister_automation_trigger(text)
    TO ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.delete_automation(uuid, integer) TO ventros_admin;

-- Direct writes of automation, automation_trigger by tenant roles: the same as the first
-- command named, or refused naming them (docs/sql.md, "Direct writes").
SELECT ventros.register_writes('automation', inserts => '{create_automation}', updates => '{update_automation,set_automation_enabled,add_automation_rule}', deletes => '{delete_automation}',
    direct => '{DELETE}');
SELECT ventros.register_writes('automation_trigger', inserts => '{register_automation_trigger}', updates => '{}', deletes => '{unregister_automation_trigger}');
