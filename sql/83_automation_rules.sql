-- Automation rules that run (docs/automation.md).
--
-- A rule (ventros.automations, sql/74_automations.sql) runs after the event
-- that triggers it commits, never in the writer's transaction:
--   1. the emitter asks the fan-out cache (src/webhook_fanout.c) whether an
--      enabled rule of the event's tenant may want the event; when one may,
--      ventros.automation_enqueue writes a row of ventros.automation_queue in
--      the event's transaction (so the row exists iff the event committed);
--   2. the automation executor (src/automation_worker.c), woken at that
--      commit, calls ventros.run_automations: it takes the first queued
--      event of each aggregate (order per aggregate; SKIP LOCKED between
--      executors), runs each matching rule in priority order, each in its
--      own subtransaction, records each run in ventros.automation_runs and
--      deletes the queue row, all in one transaction.  The run log's key
--      (tenant, rule, event) makes a second run of a rule for an event
--      impossible; a crash loses the whole transaction and re-runs nothing
--      twice.
-- Actions call the commands a user calls.  Their own events may trigger
-- rules again: each queue row carries its depth and originating event
-- (ventros.automation_depth / ventros.automation_origin, set by the
-- executor while a rule acts), the chain stops at the tenant's max_depth
-- (5), and a rule never runs twice for one originating event; either is a
-- failed run with its reason.  Time triggers (a schedule, "no reply for N
-- minutes", N days before/after a contact date) are fired by
-- ventros.tick_automation_rules (pg_cron, once a minute), which emits
-- automation.time_reached and queues it for the rule.

-- ---- per-tenant settings ------------------------------------------------------

CREATE TABLE ventros.automation_settings (
    tenant_id  text        NOT NULL,
    enabled    boolean     NOT NULL DEFAULT true,
    timezone   text        NOT NULL DEFAULT 'UTC',
    max_depth  integer     NOT NULL DEFAULT 5,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id),
    CONSTRAINT automation_settings_timezone_size CHECK (length(timezone) <= 64),
    CONSTRAINT automation_settings_max_depth CHECK (max_depth BETWEEN 1 AND 20)
);
COMMENT ON TABLE ventros.automation_settings IS
    'Per tenant: whether its automation rules run, the timezone of their schedules and time windows, the cascade depth limit';
ALTER TABLE ventros.automation_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.automation_settings FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant ON ventros.automation_settings
    USING (tenant_id = (SELECT ventros.current_tenant()))
    WITH CHECK (tenant_id = (SELECT ventros.current_tenant()));
REVOKE ALL ON ventros.automation_settings FROM PUBLIC;
GRANT SELECT ON ventros.automation_settings TO ventros_viewer;
GRANT INSERT, UPDATE ON ventros.automation_settings TO ventros_admin;

CREATE FUNCTION ventros.current_automation_settings() RETURNS ventros.automation_settings
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT s FROM ventros.automation_settings s WHERE s.tenant_id = ventros.require_tenant()),
                    ROW(ventros.require_tenant(), true, 'UTC', 5, NULL)::ventros.automation_settings)
$$;
COMMENT ON FUNCTION ventros.current_automation_settings() IS
    'The acting tenant''s automation settings (enabled, timezone UTC, max_depth 5 when never set)';

CREATE FUNCTION ventros.set_automation_settings(enabled boolean DEFAULT NULL, timezone text DEFAULT NULL,
                                                max_depth integer DEFAULT NULL)
RETURNS ventros.automation_settings
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    cur ventros.automation_settings := ventros.current_automation_settings();
    result ventros.automation_settings;
BEGIN
    IF timezone IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_timezone_names z WHERE z.name = timezone) THEN
        RAISE EXCEPTION 'unknown timezone "%"', left(timezone, 64) USING ERRCODE = '22023',
            HINT = 'Use a name of pg_timezone_names, such as America/Sao_Paulo.';
    END IF;
    IF max_depth IS NOT NULL AND max_depth NOT BETWEEN 1 AND 20 THEN
        RAISE EXCEPTION 'max_depth must be between 1 and 20' USING ERRCODE = '22023';
    END IF;
    INSERT INTO ventros.automation_settings AS s (tenant_id, enabled, timezone, max_depth)
    VALUES (tenant, coalesce(enabled, cur.enabled), coalesce(timezone, cur.timezone), coalesce(max_depth, cur.max_depth))
    ON CONFLICT (tenant_id) DO UPDATE
    SET enabled = EXCLUDED.enabled, timezone = EXCLUDED.timezone, max_depth = EXCLUDED.max_depth, updated_at = now()
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.set_automation_settings(boolean, text, integer) IS
    'Administrators: enables or disables every automation rule of the acting tenant, sets their timezone (22023 unknown) and cascade depth limit (1..20)';

-- ---- the executor's queue, run log, waits and timers --------------------------

CREATE TABLE ventros.automation_queue (
    tenant_id       text        NOT NULL,
    seq             bigint      NOT NULL,
    event_id        uuid        NOT NULL,
    aggregate_id    uuid        NOT NULL,
    automation_id   uuid,
    depth           integer     NOT NULL DEFAULT 0,
    origin_event_id uuid        NOT NULL,
    queued_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX automation_queue_seq ON ventros.automation_queue (seq);
CREATE INDEX automation_queue_aggregate ON ventros.automation_queue (tenant_id, aggregate_id, seq);
COMMENT ON TABLE ventros.automation_queue IS
    'Committed events some automation rule may want, not yet run (seq = the event''s outbox seq; automation_id: a time-triggered rule to run as well; depth and originating event of a cascade)';
ALTER TABLE ventros.automation_queue ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.automation_queue FORCE ROW LEVEL SECURITY;
REVOKE ALL ON ventros.automation_queue FROM PUBLIC;
CREATE POLICY ventros_tenant_read ON ventros.automation_queue FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.automation_queue TO ventros_viewer;

CREATE TABLE ventros.automation_runs (
    tenant_id       text        NOT NULL,
    id              uuid        NOT NULL DEFAULT gen_random_uuid(),
    automation_id   uuid        NOT NULL,
    event_id        uuid        NOT NULL,
    event_type      text        NOT NULL,
    origin_event_id uuid        NOT NULL,
    depth           integer     NOT NULL,
    outcome         text        NOT NULL DEFAULT 'waiting',
    actions_done    jsonb       NOT NULL DEFAULT '[]',
    error           text,
    started_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at     timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, automation_id) REFERENCES ventros.automations (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT automation_runs_once UNIQUE (tenant_id, automation_id, event_id),
    CONSTRAINT automation_runs_outcome_known CHECK (outcome IN ('executed', 'skipped', 'failed', 'waiting'))
);
CREATE INDEX automation_runs_origin ON ventros.automation_runs (tenant_id, automation_id, origin_event_id);
COMMENT ON TABLE ventros.automation_runs IS
    'Run log: one row per rule and event (executed, skipped by its conditions, failed with its error, waiting to continue), with the actions done';
ALTER TABLE ventros.automation_runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.automation_runs FORCE ROW LEVEL SECURITY;
REVOKE ALL ON ventros.automation_runs FROM PUBLIC;
CREATE POLICY ventros_tenant_read ON ventros.automation_runs FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.automation_runs TO ventros_viewer;

CREATE TABLE ventros.automation_waits (
    tenant_id text        NOT NULL,
    run_id    uuid        NOT NULL,
    due_at    timestamptz NOT NULL,
    actions   jsonb       NOT NULL DEFAULT '[]',
    PRIMARY KEY (tenant_id, run_id),
    FOREIGN KEY (tenant_id, run_id) REFERENCES ventros.automation_runs (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT automation_waits_actions_array CHECK (jsonb_typeof(actions) = 'array')
);
CREATE INDEX automation_waits_due ON ventros.automation_waits (due_at);
COMMENT ON TABLE ventros.automation_waits IS
    'A run waiting ("wait N minutes then continue"): the actions left, resumed by the executor when due';
ALTER TABLE ventros.automation_waits ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.automation_waits FORCE ROW LEVEL SECURITY;
REVOKE ALL ON ventros.automation_waits FROM PUBLIC;
CREATE POLICY ventros_tenant_read ON ventros.automation_waits FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.automation_waits TO ventros_viewer;

CREATE TABLE ventros.automation_timers (
    tenant_id     text        NOT NULL,
    automation_id uuid        NOT NULL,
    fire_key      text        NOT NULL,
    fired_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, automation_id, fire_key),
    FOREIGN KEY (tenant_id, automation_id) REFERENCES ventros.automations (tenant_id, id) ON DELETE CASCADE
);
COMMENT ON TABLE ventros.automation_timers IS
    'Time triggers already fired (a schedule''s occurrence, a session''s unanswered message, a contact''s date): each fires once';
ALTER TABLE ventros.automation_timers ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.automation_timers FORCE ROW LEVEL SECURITY;
REVOKE ALL ON ventros.automation_timers FROM PUBLIC;
CREATE POLICY ventros_tenant_read ON ventros.automation_timers FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.automation_timers TO ventros_viewer;

SELECT ventros.register_event_type('automation.time_reached', 'A time trigger of an automation fired (schedule, no reply, contact date).');
SELECT ventros.register_event_type('automation.agents_notified', 'An automation notified agents (for a front end to show).');

-- ---- enqueue: in the event's transaction --------------------------------------

-- Called by src/webhook_fanout.c, as the table owner, right after the event's
-- outbox row was written (currval of ventros.outbox_seq is its seq).
CREATE FUNCTION ventros.automation_enqueue(event_tenant text, event_id uuid, event_type text, aggregate_id uuid)
RETURNS integer
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH q AS (
        INSERT INTO ventros.automation_queue (tenant_id, seq, event_id, aggregate_id, depth, origin_event_id)
        SELECT $1, currval('ventros.outbox_seq'), $2, $4,
               coalesce(nullif(current_setting('ventros.automation_depth', true), '')::integer, 0),
               coalesce(nullif(current_setting('ventros.automation_origin', true), '')::uuid, $2)
         WHERE EXISTS (SELECT 1 FROM ventros.automations a
                        WHERE a.tenant_id = $1 AND a.enabled AND a.deleted_at IS NULL
                          AND ventros.automation_trigger_matches(a.trigger, $3))
        ON CONFLICT (tenant_id, seq) DO NOTHING
        RETURNING 1)
    SELECT count(*)::integer FROM q
$$;
COMMENT ON FUNCTION ventros.automation_enqueue(text, uuid, text, uuid) IS
    'Internal (the emitter, as table owner): queues the event just written for the automation executor when an enabled rule of its tenant selects it; returns 1 or 0';

CREATE FUNCTION ventros.automation_wake() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'ventros_automation_wake';
COMMENT ON FUNCTION ventros.automation_wake() IS
    'Trigger: wakes the automation executor when the transaction that queued events commits (src/automation_worker.c)';
CREATE TRIGGER automation_wake AFTER INSERT ON ventros.automation_queue
    FOR EACH STATEMENT EXECUTE FUNCTION ventros.automation_wake();

-- The fan-out cache holds the rules' triggers too: the same invalidation.
CREATE FUNCTION ventros.automation_rules_changed() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'ventros_webhook_subscriptions_changed';
COMMENT ON FUNCTION ventros.automation_rules_changed() IS
    'Trigger: every backend drops its fan-out cache of which tenants'' rules select which events (src/webhook_fanout.c)';
CREATE TRIGGER ventros_automation_fanout_changed AFTER INSERT OR DELETE OR TRUNCATE ON ventros.automations
    FOR EACH STATEMENT EXECUTE FUNCTION ventros.automation_rules_changed();
CREATE TRIGGER ventros_automation_fanout_updated AFTER UPDATE ON ventros.automations
    FOR EACH ROW
    WHEN ((OLD.tenant_id, OLD.enabled, OLD.deleted_at, OLD.trigger) IS DISTINCT FROM (NEW.tenant_id, NEW.enabled, NEW.deleted_at, NEW.trigger))
    EXECUTE FUNCTION ventros.automation_rules_changed();

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
CREATE FUNCTION ventros.automation_context(ev ventros.outbox, at timestamptz) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
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

CREATE FUNCTION ventros.automation_compare(actual jsonb, op text, expected jsonb) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
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
CREATE FUNCTION ventros.automation_field(ctx jsonb, field text) RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ctx #> CASE WHEN split_part(field, '.', 1) IN ('payload', 'event', 'contact', 'message', 'session', 'channel', 'pipeline')
                       THEN string_to_array(field, '.')
                       ELSE ARRAY['payload'] || string_to_array(field, '.') END
$$;
COMMENT ON FUNCTION ventros.automation_field(jsonb, text) IS
    'The value of a condition field in a rule''s context (payload.<path>, contact.<column>, contact.custom.<key>, session.<column>, message.<column>, channel.<column>, event.<attribute>, pipeline.statuses; a bare name is payload.<name>)';

CREATE FUNCTION ventros.automation_condition_holds(c jsonb, ctx jsonb, tz text, at timestamptz) RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    local timestamp := at AT TIME ZONE tz;
    t time := (at AT TIME ZONE tz)::time;
    txt text := lower(coalesce(ctx #>> '{message,text}', ctx #>> '{payload,text}', ''));
    w jsonb;
BEGIN
    IF c ? 'all' THEN
        RETURN NOT EXISTS (SELECT 1 FROM jsonb_array_elements(c->'all') x
                           WHERE NOT ventros.automation_condition_holds(x, ctx, tz, at));
    ELSIF c ? 'any' THEN
        RETURN EXISTS (SELECT 1 FROM jsonb_array_elements(c->'any') x
                       WHERE ventros.automation_condition_holds(x, ctx, tz, at));
    ELSIF c ? 'not' THEN
        RETURN NOT ventros.automation_condition_holds(c->'not', ctx, tz, at);
    ELSIF c ? 'keyword' THEN
        -- whole words, case-insensitive; any of a list
        RETURN EXISTS (SELECT 1 FROM jsonb_array_elements_text(CASE jsonb_typeof(c->'keyword') WHEN 'array' THEN c->'keyword'
                                                                    ELSE jsonb_build_array(c->'keyword') END) k
                       WHERE btrim(k) <> ''
                         AND strpos(' ' || regexp_replace(txt, '[^[:alnum:]_]+', ' ', 'g') || ' ',
                                    ' ' || btrim(regexp_replace(lower(k), '[^[:alnum:]_]+', ' ', 'g')) || ' ') > 0);
    ELSIF c ? 'regex' THEN
        RETURN txt ~* (c->>'regex');
    ELSIF c ? 'tag' THEN
        RETURN coalesce(ctx #> '{contact,tags}' ? (c->>'tag'), false);
    ELSIF c ? 'time_window' THEN
        w := c->'time_window';
        IF w ? 'weekdays' AND NOT (w->'weekdays') @> to_jsonb(extract(isodow FROM local)::integer) THEN
            RETURN false;
        END IF;
        RETURN CASE WHEN (w->>'from')::time <= (w->>'to')::time
                    THEN t >= (w->>'from')::time AND (t < (w->>'to')::time OR w->>'to' LIKE '24:%')
                    ELSE t >= (w->>'from')::time OR t < (w->>'to')::time END;
    ELSIF c ? 'weekdays' THEN
        RETURN (c->'weekdays') @> to_jsonb(extract(isodow FROM local)::integer);
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
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result boolean := true;
    c jsonb;
    first boolean := true;
BEGIN
    FOR c IN SELECT x FROM jsonb_array_elements(conditions) x LOOP
        IF first THEN
            result := ventros.automation_condition_holds(c, ctx, tz, at);
            first := false;
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

-- ---- actions -------------------------------------------------------------------

CREATE FUNCTION ventros.automation_require(value text, what text, action text) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF value IS NULL OR value = '' THEN
        RAISE EXCEPTION 'action % needs %', action, what USING ERRCODE = '23502';
    END IF;
    RETURN value;
END
$$;
COMMENT ON FUNCTION ventros.automation_require(text, text, text) IS
    'A value an action needs (its parameter or the contact/session of the event), or 23502 naming it';

-- One action, through the command a user would call.  Returns what it did.
CREATE FUNCTION ventros.automation_act(a jsonb, ctx jsonb, rule ventros.automations) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    kind text := a->>'type';
    p jsonb := coalesce(a->'params', '{}');
    contact uuid := ventros.automation_uuid(ctx #>> '{contact,id}');
    session uuid := ventros.automation_uuid(ctx #>> '{session,id}');
    channel uuid := coalesce(ventros.automation_uuid(p->>'channel_id'), ventros.automation_uuid(ctx #>> '{channel,id}'));
    c ventros.contacts;
    tags text[];
    txt text;
    id uuid;
    e ventros.sequence_enrollments;
BEGIN
    CASE kind
    WHEN 'add_tag', 'remove_tag' THEN
        PERFORM ventros.automation_require(contact::text, 'a contact', kind);
        SELECT * INTO c FROM ventros.contacts x WHERE x.tenant_id = rule.tenant_id AND x.id = contact FOR UPDATE;
        tags := CASE kind WHEN 'add_tag' THEN (SELECT array_agg(DISTINCT t ORDER BY t) FROM unnest(c.tags || (p->>'tag')) t)
                          ELSE array_remove(c.tags, p->>'tag') END;
        PERFORM ventros.automation_require(p->>'tag', 'params.tag', kind);
        IF tags IS DISTINCT FROM c.tags AND NOT (tags @> c.tags AND c.tags @> tags) THEN
            PERFORM ventros.update_contact(contact, c.version, jsonb_build_object('tags', tags));
        END IF;
    WHEN 'set_field' THEN
        PERFORM ventros.automation_require(contact::text, 'a contact', kind);
        SELECT * INTO c FROM ventros.contacts x WHERE x.tenant_id = rule.tenant_id AND x.id = contact FOR UPDATE;
        PERFORM ventros.update_contact(contact, c.version,
                                       jsonb_build_object(ventros.automation_require(p->>'field', 'params.field', kind), p->'value'));
    WHEN 'set_custom_field', 'update_custom_field' THEN
        PERFORM ventros.set_contact_custom_field(ventros.automation_require(contact::text, 'a contact', kind)::uuid,
                                                 ventros.automation_require(coalesce(p->>'key', p->>'field'), 'params.key', kind),
                                                 coalesce(p->>'field_type', 'text'), p->'value');
    WHEN 'change_pipeline_status' THEN
        PERFORM ventros.change_contact_pipeline_status(ventros.automation_require(contact::text, 'a contact', kind)::uuid,
                                                       ventros.automation_require(p->>'status_id', 'params.status_id', kind)::uuid,
                                                       notes => 'automation ' || rule.name);
    WHEN 'assign_agent' THEN
        PERFORM ventros.assign_session_agent(ventros.automation_require(session::text, 'a session', kind)::uuid,
                                             ventros.automation_require(p->>'agent_id', 'params.agent_id', kind)::uuid);
    WHEN 'assign_team' THEN
        PERFORM ventros.assign_session_to_team(ventros.automation_require(session::text, 'a session', kind)::uuid,
                                               ventros.automation_require(p->>'team_id', 'params.team_id', kind)::uuid);
    WHEN 'send_message', 'send_canned_response' THEN
        PERFORM ventros.automation_require(contact::text, 'a contact', kind);
        txt := CASE kind WHEN 'send_message' THEN ventros.automation_require(p->>'text', 'params.text', kind)
                         ELSE ventros.render_canned_response(ventros.automation_require(p->>'shortcut', 'params.shortcut', kind),
                                                             contact) END;
        txt := replace(replace(txt, '{{contact.name}}', coalesce(ctx #>> '{contact,name}', '')),
                       '{{contact.phone}}', coalesce(ctx #>> '{contact,phone}', ''));
        SELECT m.id INTO id FROM ventros.send_message(ventros.automation_require(channel::text, 'a channel', kind)::uuid,
                                                      contact, txt, source => 'trigger') m;
        RETURN jsonb_build_object('type', kind, 'message_id', id);
    WHEN 'send_template' THEN
        SELECT m.id INTO id FROM ventros.send_message(ventros.automation_require(channel::text, 'a channel', kind)::uuid,
                                                      ventros.automation_require(contact::text, 'a contact', kind)::uuid,
                                                      source => 'trigger',
                                                      template_name => ventros.automation_require(p->>'template_name', 'params.template_name', kind),
                                                      template_language => coalesce(p->>'template_language', p->>'language'),
                                                      template_components => p->'template_components') m;
        RETURN jsonb_build_object('type', kind, 'message_id', id);
    WHEN 'add_note', 'create_note' THEN
        SELECT n.id INTO id FROM ventros.add_note(ventros.automation_require(contact::text, 'a contact', kind)::uuid,
                                                  ventros.automation_require(coalesce(p->>'content', p->>'text'), 'params.content', kind),
                                                  ventros.system_agent_id('trigger'), author_type => 'system',
                                                  author_name => 'automation ' || rule.name, session_id => session) n;
        RETURN jsonb_build_object('type', kind, 'note_id', id);
    WHEN 'enroll_sequence' THEN
        -- unless_enrolled (the rule a sequence keeps): a contact enrolled already is left alone
        IF coalesce((p->>'unless_enrolled')::boolean, false) AND EXISTS (
            SELECT 1 FROM ventros.sequence_enrollments x
             WHERE x.tenant_id = rule.tenant_id AND x.contact_id = contact AND x.status IN ('active', 'paused')
               AND x.sequence_id = ventros.automation_uuid(p->>'sequence_id')) THEN
            RETURN jsonb_build_object('type', kind, 'enrolled', false, 'reason', 'enrolled already');
        END IF;
        SELECT x.id INTO id FROM ventros.enroll_in_sequence(ventros.automation_require(p->>'sequence_id', 'params.sequence_id', kind)::uuid,
                                                            ventros.automation_require(contact::text, 'a contact', kind)::uuid) x;
        RETURN jsonb_build_object('type', kind, 'enrolled', true, 'enrollment_id', id);
    WHEN 'unenroll_sequence' THEN
        FOR e IN SELECT * FROM ventros.sequence_enrollments x
                  WHERE x.tenant_id = rule.tenant_id AND x.contact_id = contact AND x.status IN ('active', 'paused')
                    AND x.sequence_id = ventros.automation_require(p->>'sequence_id', 'params.sequence_id', kind)::uuid LOOP
            PERFORM ventros.set_sequence_enrollment_status(e.id, e.version, 'exited', 'automation');
        END LOOP;
    WHEN 'add_to_list' THEN
        PERFORM ventros.add_contact_to_list(ventros.automation_require(p->>'list_id', 'params.list_id', kind)::uuid,
                                            ventros.automation_require(contact::text, 'a contact', kind)::uuid);
    WHEN 'remove_from_list' THEN
        PERFORM ventros.remove_contact_from_list(ventros.automation_require(p->>'list_id', 'params.list_id', kind)::uuid,
                                                 ventros.automation_require(contact::text, 'a contact', kind)::uuid);
    WHEN 'close_session' THEN
        PERFORM ventros.close_session(ventros.automation_require(session::text, 'a session', kind)::uuid,
                                      end_reason => 'system_close');
    WHEN 'snooze_session' THEN
        -- params.minutes from now, or params.until (an instant)
        PERFORM ventros.snooze_session(ventros.automation_require(session::text, 'a session', kind)::uuid,
            coalesce((p->>'until')::timestamptz,
                     now() + make_interval(mins => ventros.automation_require(p->>'minutes', 'params.minutes or params.until', kind)::integer)));
    WHEN 'call_webhook', 'send_webhook' THEN
        RETURN ventros.automation_call_webhook(p, ctx, rule);
    WHEN 'emit_event' THEN
        RETURN jsonb_build_object('type', kind, 'event_type',
            ventros.emit_custom_event(ventros.automation_require(p->>'name', 'params.name', kind),
                                      coalesce(p->'payload', '{}') || jsonb_build_object('automation_id', rule.id,
                                                                                        'contact_id', contact)));
    WHEN 'notify_agents', 'notify_agent', 'notify_coordinator' THEN
        PERFORM ventros.emit('automation.agents_notified', 'automation', rule.id,
            jsonb_build_object('message', coalesce(p->>'message', p->>'text', rule.name), 'agent_ids', p->'agent_ids',
                               'agent_id', p->'agent_id', 'team_id', p->'team_id', 'contact_id', contact,
                               'session_id', session, 'event_id', ctx #> '{event,id}'),
            rule.version);
    ELSE
        RAISE EXCEPTION 'action "%" is not supported by the automation executor', left(kind, 64) USING ERRCODE = '0A000',
            HINT = 'See docs/automation.md for the actions the executor runs.';
    END CASE;
    RETURN jsonb_build_object('type', kind);
END
$$;
COMMENT ON FUNCTION ventros.automation_act(jsonb, jsonb, ventros.automations) IS
    'Runs one automation action through the command a user would call (tags and fields: update_contact; send_message; add_note; enroll_in_sequence; ...); returns what it did; 0A000 for an action the executor does not run';

-- call_webhook: a delivery of the triggering event to one of the tenant's
-- webhook subscriptions, through the dispatcher, signed per attempt with the
-- subscription's secret as every delivery (sql/92_webhook_deliveries.sql).
CREATE FUNCTION ventros.automation_call_webhook(p jsonb, ctx jsonb, rule ventros.automations) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    w ventros.webhook_subscriptions;
    delivery uuid := gen_random_uuid();
    request uuid := gen_random_uuid();
    ev_id uuid := (ctx #>> '{event,id}')::uuid;
    body bytea;
BEGIN
    SELECT * INTO w FROM ventros.webhook_subscriptions x
     WHERE x.tenant_id = rule.tenant_id AND x.deleted_at IS NULL
       AND x.id = ventros.automation_require(p->>'webhook_subscription_id', 'params.webhook_subscription_id', 'call_webhook')::uuid;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'webhook subscription % not found', p->>'webhook_subscription_id' USING ERRCODE = 'P0002';
    END IF;
    IF w.secret IS NULL THEN
        RAISE EXCEPTION 'webhook subscription % has no secret: automation calls are signed', w.id USING ERRCODE = '22023';
    END IF;
    body := convert_to(ventros.webhook_cloudevent(rule.tenant_id, ev_id, ctx #>> '{event,type}', ctx #>> '{event,aggregate_type}',
                                                  (ctx #>> '{event,aggregate_id}')::uuid,
                                                  coalesce(p->'body', ctx->'payload') || jsonb_build_object('automation_id', rule.id),
                                                  (ctx #>> '{event,occurred_at}')::timestamptz), 'UTF8');
    INSERT INTO ventros.http_requests (tenant_id, id, method, url, headers, body, purpose, correlation_id,
                                       retry_policy, retry_schedule, max_attempts, timeout_ms)
    VALUES (rule.tenant_id, request, 'POST', w.url, ventros.webhook_request_headers(ev_id, delivery), body,
            'webhook.delivery', delivery, 'any', ventros.webhook_retry_schedule(),
            1 + least(w.retry_count, cardinality(ventros.webhook_retry_schedule())), w.timeout_seconds * 1000);
    INSERT INTO ventros.webhook_deliveries (tenant_id, id, subscription_id, event_id, event_type, aggregate_type,
                                            aggregate_id, request_id)
    VALUES (rule.tenant_id, delivery, w.id, ev_id, ctx #>> '{event,type}', ctx #>> '{event,aggregate_type}',
            (ctx #>> '{event,aggregate_id}')::uuid, request);
    RETURN jsonb_build_object('type', 'call_webhook', 'delivery_id', delivery);
END
$$;
COMMENT ON FUNCTION ventros.automation_call_webhook(jsonb, jsonb, ventros.automations) IS
    'Action call_webhook: one signed delivery of the triggering event (CloudEvents body, or params.body) to a webhook subscription of the tenant, through the HTTP dispatcher';

-- ---- running one rule for one event ---------------------------------------------

-- The run's events: automation.triggered, .executed or .failed.
CREATE FUNCTION ventros.automation_report(rule ventros.automations, outcome text, run ventros.automation_runs) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.emit('automation.' || outcome, 'automation', rule.id,
        jsonb_strip_nulls(jsonb_build_object('trigger', rule.trigger, 'run_id', run.id, 'event_id', run.event_id,
                                             'event_type', run.event_type, 'origin_event_id', run.origin_event_id,
                                             'depth', run.depth, 'actions', run.actions_done, 'error', run.error)),
        rule.version)
$$;
COMMENT ON FUNCTION ventros.automation_report(ventros.automations, text, ventros.automation_runs) IS
    'Emits automation.triggered, .executed or .failed for a run';

-- Runs a list of actions in order until a wait: the rest is stored as the
-- run's continuation.  Returns the actions done and whether it waits.
CREATE FUNCTION ventros.automation_run_actions(rule ventros.automations, ctx jsonb, actions jsonb, run_id uuid,
                                               at timestamptz, OUT done jsonb, OUT waiting boolean)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a jsonb;
    i integer := 0;
    n integer := jsonb_array_length(actions);
    minutes numeric;
BEGIN
    done := '[]';
    waiting := false;
    WHILE i < n LOOP
        a := actions->i;
        minutes := CASE WHEN a->>'type' = 'wait' THEN coalesce((a->'params'->>'minutes')::numeric, (a->>'delay_minutes')::numeric, 0)
                        ELSE coalesce((a->>'delay_minutes')::numeric, 0) END;
        IF minutes > 0 THEN
            -- the rest, with this action's own delay spent
            INSERT INTO ventros.automation_waits (tenant_id, run_id, due_at, actions)
            VALUES (rule.tenant_id, run_id, at + make_interval(secs => minutes * 60),
                    CASE WHEN a->>'type' = 'wait' THEN '[]'::jsonb ELSE jsonb_build_array(a - 'delay_minutes') END
                    || coalesce((SELECT jsonb_agg(x ORDER BY o) FROM jsonb_array_elements(actions) WITH ORDINALITY r(x, o)
                                  WHERE o > i + 1), '[]'));
            done := done || jsonb_build_object('type', 'wait', 'minutes', minutes);
            waiting := true;
            RETURN;
        END IF;
        IF a->>'type' <> 'wait' THEN
            done := done || ventros.automation_act(a, ctx, rule);
        END IF;
        i := i + 1;
    END LOOP;
END
$$;
COMMENT ON FUNCTION ventros.automation_run_actions(ventros.automations, jsonb, jsonb, uuid, timestamptz) IS
    'Runs actions in order; a wait (or an action''s delay_minutes) stores the rest in ventros.automation_waits and stops';

-- The actions of a run, in a subtransaction; finishes the run row and
-- reports it.
CREATE FUNCTION ventros.automation_execute(rule ventros.automations, run ventros.automation_runs, ctx jsonb,
                                           actions jsonb, at timestamptz)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
    err text;
    state text;
BEGIN
    BEGIN
        r := ventros.automation_run_actions(rule, ctx, actions, run.id, at);
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS err = MESSAGE_TEXT, state = RETURNED_SQLSTATE;
    END;
    IF err IS NOT NULL THEN
        UPDATE ventros.automation_runs x SET outcome = 'failed', error = left(state || ': ' || err, 2000),
                                             finished_at = clock_timestamp()
         WHERE x.tenant_id = run.tenant_id AND x.id = run.id RETURNING * INTO run;
        PERFORM ventros.automation_report(rule, 'failed', run);
    ELSE
        UPDATE ventros.automation_runs x
           SET outcome = CASE WHEN r.waiting THEN 'waiting' ELSE 'executed' END, actions_done = x.actions_done || r.done,
               finished_at = CASE WHEN NOT r.waiting THEN clock_timestamp() END
         WHERE x.tenant_id = run.tenant_id AND x.id = run.id RETURNING * INTO run;
        IF NOT r.waiting THEN
            PERFORM ventros.automation_report(rule, 'executed', run);
        END IF;
    END IF;
    RETURN run.outcome;
END
$$;
COMMENT ON FUNCTION ventros.automation_execute(ventros.automations, ventros.automation_runs, jsonb, jsonb, timestamptz) IS
    'Runs a run''s actions in a subtransaction (a failure rolls them back and fails the run with its error), reports automation.executed or .failed';

CREATE FUNCTION ventros.automation_run_rule(rule ventros.automations, ev ventros.outbox, depth integer,
                                            origin_event_id uuid, at timestamptz)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    settings ventros.automation_settings := ventros.current_automation_settings();
    run ventros.automation_runs;
    ctx jsonb;
    holds boolean;
    reason text;
    err text;
    state text;
BEGIN
    IF EXISTS (SELECT 1 FROM ventros.automation_runs x
                WHERE x.tenant_id = ev.tenant_id AND x.automation_id = rule.id AND x.event_id = ev.event_id) THEN
        RETURN 'duplicate';
    END IF;
    IF depth >= settings.max_depth THEN
        reason := format('cascade depth limit %s reached (event %s at depth %s, originating event %s)',
                         settings.max_depth, ev.event_type, depth, origin_event_id);
    ELSIF depth > 0 AND EXISTS (SELECT 1 FROM ventros.automation_runs x
                                 WHERE x.tenant_id = ev.tenant_id AND x.automation_id = rule.id
                                   AND x.origin_event_id = automation_run_rule.origin_event_id) THEN
        reason := format('loop: rule already ran for the originating event %s', origin_event_id);
    END IF;
    IF reason IS NULL THEN
        BEGIN
            ctx := ventros.automation_context(ev, at);
            holds := ventros.automation_conditions_hold(rule.conditions, ctx, settings.timezone, at);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS err = MESSAGE_TEXT, state = RETURNED_SQLSTATE;
            reason := 'conditions failed: ' || state || ': ' || err;
        END;
    END IF;
    INSERT INTO ventros.automation_runs (tenant_id, automation_id, event_id, event_type, origin_event_id, depth, outcome,
                                         error, finished_at)
    VALUES (ev.tenant_id, rule.id, ev.event_id, ev.event_type, origin_event_id, depth,
            CASE WHEN reason IS NOT NULL THEN 'failed' WHEN holds THEN 'waiting' ELSE 'skipped' END,
            left(reason, 2000), CASE WHEN reason IS NOT NULL OR NOT holds THEN clock_timestamp() END)
    RETURNING * INTO run;
    IF reason IS NOT NULL THEN
        PERFORM ventros.automation_report(rule, 'failed', run);
        RETURN 'failed';
    ELSIF NOT holds THEN
        RETURN 'skipped';
    END IF;
    PERFORM ventros.automation_report(rule, 'triggered', run);
    RETURN ventros.automation_execute(rule, run, ctx, rule.actions, at);
END
$$;
COMMENT ON FUNCTION ventros.automation_run_rule(ventros.automations, ventros.outbox, integer, uuid, timestamptz) IS
    'Runs one rule for one event once: refuses past the depth limit or a second run for the same originating event (failed, with the reason), evaluates its conditions (skipped), runs its actions (executed, waiting, failed); returns the outcome';

-- The cascade marks of the events emitted from here on (the queue rows
-- ventros.automation_enqueue writes): one level deeper, the same origin.
-- NULL depth clears them.
CREATE FUNCTION ventros.automation_mark_cascade(depth integer, origin_event_id uuid) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT FROM set_config('ventros.automation_depth', coalesce(depth + 1, 0)::text, true) d,
                set_config('ventros.automation_origin', CASE WHEN depth IS NOT NULL THEN origin_event_id::text ELSE '' END, true) o
$$;
COMMENT ON FUNCTION ventros.automation_mark_cascade(integer, uuid) IS
    'Marks the events emitted from now on in this transaction as a cascade one level below depth from an originating event (NULL: unmarks)';

-- One queued event: every rule it triggers, highest priority first, until a
-- rule that ran with stop_processing.
CREATE FUNCTION ventros.automation_process(q ventros.automation_queue, at timestamptz) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ev ventros.outbox;
    rule ventros.automations;
    outcome text;
    n integer := 0;
BEGIN
    IF NOT (ventros.current_automation_settings()).enabled THEN
        RETURN 0;
    END IF;
    SELECT * INTO ev FROM ventros.outbox o WHERE o.tenant_id = q.tenant_id AND o.seq = q.seq;
    IF NOT FOUND THEN
        RETURN 0;   -- pruned or erased meanwhile
    END IF;
    -- everything the rules emit (their actions', their own reports) is one level deeper
    PERFORM ventros.automation_mark_cascade(q.depth, q.origin_event_id);
    FOR rule IN SELECT * FROM ventros.automations a
                 WHERE a.tenant_id = q.tenant_id AND a.enabled AND a.deleted_at IS NULL
                   AND (ventros.automation_trigger_matches(a.trigger, ev.event_type) OR a.id = q.automation_id)
                   AND NOT (a.trigger = 'message.received' AND coalesce((ev.payload->>'from_me')::boolean, false))
                 ORDER BY a.priority DESC, a.created_at, a.id LOOP
        outcome := ventros.automation_run_rule(rule, ev, q.depth, q.origin_event_id, at);
        n := n + 1;
        EXIT WHEN rule.stop_processing AND outcome IN ('executed', 'waiting');
    END LOOP;
    PERFORM ventros.automation_mark_cascade(NULL, NULL);
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.automation_process(ventros.automation_queue, timestamptz) IS
    'Runs the rules a queued event triggers, highest priority first, stopping after a rule with stop_processing that ran; nothing when the tenant disabled its automations';

-- A due wait: the rest of the run's actions.
CREATE FUNCTION ventros.automation_resume(w ventros.automation_waits, at timestamptz) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    run ventros.automation_runs;
    rule ventros.automations;
    ev ventros.outbox;
BEGIN
    DELETE FROM ventros.automation_waits x WHERE x.tenant_id = w.tenant_id AND x.run_id = w.run_id;
    SELECT * INTO run FROM ventros.automation_runs x WHERE x.tenant_id = w.tenant_id AND x.id = w.run_id;
    SELECT * INTO rule FROM ventros.automations a WHERE a.tenant_id = w.tenant_id AND a.id = run.automation_id;
    SELECT * INTO ev FROM ventros.outbox o WHERE o.tenant_id = w.tenant_id AND o.event_id = run.event_id;
    PERFORM ventros.automation_mark_cascade(run.depth, run.origin_event_id);
    IF NOT rule.enabled OR rule.deleted_at IS NOT NULL OR ev.event_id IS NULL
       OR NOT (ventros.current_automation_settings()).enabled THEN
        UPDATE ventros.automation_runs x SET outcome = 'failed', finished_at = clock_timestamp(),
               error = CASE WHEN ev.event_id IS NULL THEN 'the triggering event is gone' ELSE 'the rule was disabled while waiting' END
         WHERE x.tenant_id = run.tenant_id AND x.id = run.id RETURNING * INTO run;
        PERFORM ventros.automation_report(rule, 'failed', run);
        PERFORM ventros.automation_mark_cascade(NULL, NULL);
        RETURN 'failed';
    END IF;
    run.outcome := ventros.automation_execute(rule, run, ventros.automation_context(ev, at), w.actions, at);
    PERFORM ventros.automation_mark_cascade(NULL, NULL);
    RETURN run.outcome;
END
$$;
COMMENT ON FUNCTION ventros.automation_resume(ventros.automation_waits, timestamptz) IS
    'Continues a waiting run with the actions left (failed when its rule was disabled or its event is gone)';

-- ---- the executor's entry point ---------------------------------------------------

CREATE FUNCTION ventros.run_automations(batch_size integer DEFAULT 100, now timestamptz DEFAULT now())
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET ventros.tenant = ''
AS $$
DECLARE
    q ventros.automation_queue;
    w ventros.automation_waits;
    n integer := 0;
    saved_wait text := pg_catalog.current_setting('lock_timeout');
BEGIN
    PERFORM ventros.require_platform_admin();
    -- a tenant's open transaction holding a row a rule needs fails that
    -- rule's run (55P03), not the executor
    PERFORM pg_catalog.set_config('lock_timeout', '2s', true);
    FOR q IN SELECT * FROM ventros.automation_queue x
              WHERE NOT EXISTS (SELECT 1 FROM ventros.automation_queue y
                                 WHERE y.tenant_id = x.tenant_id AND y.aggregate_id = x.aggregate_id AND y.seq < x.seq)
              ORDER BY x.seq
              LIMIT batch_size
              FOR UPDATE SKIP LOCKED LOOP
        PERFORM pg_catalog.set_config('ventros.tenant', q.tenant_id, true);
        BEGIN
            PERFORM ventros.automation_process(q, run_automations.now);
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'automation executor: event % of tenant % failed: %', q.event_id, q.tenant_id, SQLERRM;
        END;
        DELETE FROM ventros.automation_queue x WHERE x.tenant_id = q.tenant_id AND x.seq = q.seq;
        n := n + 1;
    END LOOP;
    FOR w IN SELECT * FROM ventros.automation_waits x WHERE x.due_at <= run_automations.now
              ORDER BY x.due_at LIMIT batch_size FOR UPDATE SKIP LOCKED LOOP
        PERFORM pg_catalog.set_config('ventros.tenant', w.tenant_id, true);
        BEGIN
            PERFORM ventros.automation_resume(w, run_automations.now);
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'automation executor: wait of run % of tenant % failed: %', w.run_id, w.tenant_id, SQLERRM;
            DELETE FROM ventros.automation_waits x WHERE x.tenant_id = w.tenant_id AND x.run_id = w.run_id;
        END;
        n := n + 1;
    END LOOP;
    PERFORM pg_catalog.set_config('lock_timeout', saved_wait, true);
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.run_automations(integer, timestamptz) IS
    'The automation executor (src/automation_worker.c; platform admins): runs the rules of up to batch_size queued events (the first of each aggregate, SKIP LOCKED) and due waits, each tenant''s as that tenant, in this transaction; returns how many it took';

-- ---- dry run ------------------------------------------------------------------------

CREATE FUNCTION ventros.test_automation(automation_id uuid, event_id uuid, at timestamptz DEFAULT now())
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    settings ventros.automation_settings := ventros.current_automation_settings();
    rule ventros.automations;
    ev ventros.outbox;
    ctx jsonb;
    holds boolean;
BEGIN
    SELECT * INTO rule FROM ventros.automations a WHERE a.tenant_id = tenant AND a.id = test_automation.automation_id;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('automation', automation_id);
    END IF;
    SELECT * INTO ev FROM ventros.outbox o WHERE o.tenant_id = tenant AND o.event_id = test_automation.event_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'event % not found', event_id USING ERRCODE = 'P0002';
    END IF;
    ctx := ventros.automation_context(ev, at);
    holds := ventros.automation_conditions_hold(rule.conditions, ctx, settings.timezone, at);
    RETURN jsonb_build_object(
        'trigger_matches', ventros.automation_trigger_matches(rule.trigger, ev.event_type),
        'conditions_hold', holds,
        'conditions', coalesce((SELECT jsonb_agg(jsonb_build_object('condition', c,
                                     'holds', ventros.automation_condition_holds(c, ctx, settings.timezone, at)) ORDER BY o)
                                  FROM jsonb_array_elements(rule.conditions) WITH ORDINALITY x(c, o)), '[]'),
        'enabled', rule.enabled AND settings.enabled,
        'would_run', rule.enabled AND settings.enabled AND holds
                     AND ventros.automation_trigger_matches(rule.trigger, ev.event_type),
        'actions', rule.actions,
        'already_ran', EXISTS (SELECT 1 FROM ventros.automation_runs r
                                WHERE r.tenant_id = tenant AND r.automation_id = rule.id AND r.event_id = ev.event_id),
        'context', ctx);
END
$$;
COMMENT ON FUNCTION ventros.test_automation(uuid, uuid, timestamptz) IS
    'Dry run: whether an automation of the acting tenant would run for one of its past events (trigger, each condition, enabled) and the actions it would take, without doing them';

-- ---- time triggers --------------------------------------------------------------------

-- The next occurrence of a schedule after an instant, in a timezone:
-- {"type": "daily", "at": "09:00"}, {"type": "weekly", "at": "09:00",
-- "weekdays": [1, 5]}, {"type": "monthly", "at": "09:00", "day": 1},
-- {"type": "once", "at": "<timestamptz>"}.
CREATE FUNCTION ventros.automation_next_occurrence(schedule jsonb, tz text, after timestamptz) RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    local_day date := (after AT TIME ZONE tz)::date;
    at_time time := coalesce(nullif(schedule->>'at', '')::time, '00:00');
    candidate timestamptz;
BEGIN
    IF schedule->>'type' = 'once' THEN
        candidate := (schedule->>'at')::timestamptz;
        RETURN CASE WHEN candidate > after THEN candidate END;
    END IF;
    FOR i IN 0..62 LOOP
        candidate := ((local_day + i) + at_time) AT TIME ZONE tz;
        CONTINUE WHEN candidate <= after;
        IF schedule->>'type' = 'weekly' AND NOT coalesce(schedule->'weekdays', '[1,2,3,4,5,6,7]')
                                                   @> to_jsonb(extract(isodow FROM local_day + i)::integer) THEN
            CONTINUE;
        END IF;
        IF schedule->>'type' = 'monthly' AND extract(day FROM local_day + i) <> coalesce((schedule->>'day')::integer, 1) THEN
            CONTINUE;
        END IF;
        RETURN candidate;
    END LOOP;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.automation_next_occurrence(jsonb, text, timestamptz) IS
    'The next instant after a given one at which a schedule (once, daily, weekly with ISO weekdays, monthly on a day) falls, in a timezone';

-- Fires a time trigger once per key: automation.time_reached, queued for the rule.
CREATE FUNCTION ventros.automation_fire(rule ventros.automations, fire_key text, payload jsonb) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO ventros.automation_timers (tenant_id, automation_id, fire_key)
    VALUES (rule.tenant_id, rule.id, fire_key) ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM ventros.emit('automation.time_reached', 'automation', rule.id, payload || jsonb_build_object('trigger', rule.trigger),
                         rule.version);
    INSERT INTO ventros.automation_queue AS q (tenant_id, seq, event_id, aggregate_id, automation_id, origin_event_id)
    SELECT o.tenant_id, o.seq, o.event_id, o.aggregate_id, rule.id, o.event_id
      FROM ventros.outbox o
     WHERE o.tenant_id = rule.tenant_id AND o.aggregate_id = rule.id AND o.event_type = 'automation.time_reached'
     ORDER BY o.seq DESC LIMIT 1
    ON CONFLICT (tenant_id, seq) DO UPDATE SET automation_id = EXCLUDED.automation_id;
    RETURN true;
END
$$;
COMMENT ON FUNCTION ventros.automation_fire(ventros.automations, text, jsonb) IS
    'Fires a time trigger of a rule once per key: emits automation.time_reached and queues it for that rule';

CREATE FUNCTION ventros.tick_automation_rules(now timestamptz DEFAULT now()) RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    settings ventros.automation_settings := ventros.current_automation_settings();
    tz text := settings.timezone;
    rule ventros.automations;
    due timestamptz;
    minutes integer;
    days integer;
    field text;
    x record;
    n integer := 0;
BEGIN
    PERFORM ventros.require_platform_admin();
    IF NOT settings.enabled THEN
        RETURN 0;
    END IF;
    FOR rule IN SELECT * FROM ventros.automations a
                 WHERE a.tenant_id = tenant AND a.enabled AND a.deleted_at IS NULL
                   AND a.trigger IN ('scheduled', 'no_response.timeout', 'date_field.reached')
                 ORDER BY a.priority DESC, a.created_at, a.id LOOP
        IF rule.trigger = 'scheduled' AND rule.schedule IS NOT NULL THEN
            due := rule.next_execution;
            IF due IS NOT NULL AND due <= now THEN
                IF ventros.automation_fire(rule, 'schedule:' || due::text, jsonb_build_object('reason', 'schedule', 'due_at', due)) THEN
                    n := n + 1;
                END IF;
            END IF;
            IF due IS NULL OR due <= now THEN
                UPDATE ventros.automations a SET next_execution = ventros.automation_next_occurrence(rule.schedule, tz, now),
                                                 last_executed = CASE WHEN due IS NOT NULL THEN now ELSE a.last_executed END,
                                                 version = a.version
                 WHERE a.tenant_id = tenant AND a.id = rule.id;
            END IF;
        ELSIF rule.trigger = 'no_response.timeout' THEN
            -- active sessions whose last message is the contact's, older than N minutes
            minutes := coalesce((rule.trigger_config->>'minutes')::integer, 60);
            FOR x IN SELECT s.id AS session_id, s.contact_id, s.channel_id, m.id AS message_id, m."timestamp"
                       FROM ventros.sessions s
                       CROSS JOIN LATERAL (SELECT mm.id, mm.from_me, mm."timestamp" FROM ventros.messages mm
                                            WHERE mm.tenant_id = s.tenant_id AND mm.session_id = s.id AND mm.deleted_at IS NULL
                                            ORDER BY mm."timestamp" DESC, mm.id DESC LIMIT 1) m
                      WHERE s.tenant_id = tenant AND s.status = 'active' AND s.deleted_at IS NULL
                        AND NOT m.from_me AND m."timestamp" <= now - make_interval(mins => minutes) LOOP
                IF ventros.automation_fire(rule, 'no_reply:' || x.message_id,
                       jsonb_build_object('reason', 'no_reply', 'session_id', x.session_id, 'contact_id', x.contact_id,
                                          'channel_id', x.channel_id, 'message_id', x.message_id, 'minutes', minutes)) THEN
                    n := n + 1;
                END IF;
            END LOOP;
        ELSIF rule.trigger = 'date_field.reached' THEN
            -- contacts whose date (a custom field, or created_at) plus N days is today, at "at" local time
            days := coalesce((rule.trigger_config->>'days')::integer, 0);
            field := coalesce(rule.trigger_config->>'field', 'created_at');
            CONTINUE WHEN (now AT TIME ZONE tz)::time < coalesce(nullif(rule.trigger_config->>'at', '')::time, '00:00');
            FOR x IN SELECT c.id AS contact_id, d.day
                       FROM ventros.contacts c
                       CROSS JOIN LATERAL (SELECT CASE WHEN field = 'created_at' THEN (c.created_at AT TIME ZONE tz)::date
                                                       ELSE (SELECT (f.field_value #>> '{}')::date FROM ventros.contact_custom_fields f
                                                              WHERE f.tenant_id = c.tenant_id AND f.contact_id = c.id
                                                                AND f.field_key = field AND f.deleted_at IS NULL
                                                                AND f.field_type = 'date' LIMIT 1) END AS day) d
                      WHERE c.tenant_id = tenant AND c.deleted_at IS NULL
                        AND d.day + days = (now AT TIME ZONE tz)::date LOOP
                IF ventros.automation_fire(rule, 'date:' || x.contact_id || ':' || (x.day + days),
                       jsonb_build_object('reason', 'date_field', 'contact_id', x.contact_id, 'field', field,
                                          'date', x.day, 'days', days)) THEN
                    n := n + 1;
                END IF;
            END LOOP;
        END IF;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.tick_automation_rules(timestamptz) IS
    'Scheduler (platform admins, per tenant through run_per_tenant): fires the acting tenant''s time triggers due at now, each once (scheduled: next_execution in the tenant''s timezone; no_response.timeout: trigger_config.minutes since the contact''s unanswered message; date_field.reached: trigger_config.field + days); returns how many fired';

GRANT EXECUTE ON FUNCTION ventros.current_automation_settings(), ventros.automation_uuid(text),
    ventros.automation_compare(jsonb, text, jsonb), ventros.automation_field(jsonb, text),
    ventros.automation_condition_holds(jsonb, jsonb, text, timestamptz),
    ventros.automation_conditions_hold(jsonb, jsonb, text, timestamptz),
    ventros.automation_next_occurrence(jsonb, text, timestamptz),
    ventros.automation_context(ventros.outbox, timestamptz), ventros.test_automation(uuid, uuid, timestamptz) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.set_automation_settings(boolean, text, integer) TO ventros_admin;
GRANT EXECUTE ON FUNCTION ventros.run_automations(integer, timestamptz), ventros.tick_automation_rules(timestamptz)
    TO ventros_platform_admin;
