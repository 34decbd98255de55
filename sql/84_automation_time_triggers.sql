-- Automation rules (sql/83_automation_rules.sql): time triggers, fired by
-- the scheduler once a minute per tenant.

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

GRANT EXECUTE ON FUNCTION ventros.automation_next_occurrence(jsonb, text, timestamptz) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.tick_automation_rules(timestamptz) TO ventros_platform_admin;
