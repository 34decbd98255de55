-- Automation rules (sql/83_automation_rules.sql): time triggers, fired by
-- the scheduler once a minute per tenant.

-- ---- time triggers --------------------------------------------------------------------

-- ---- cron schedules ---------------------------------------------------------------
--
-- A cron expression (ventros.cron_parse, sql/74_automations.sql) is matched
-- against the tenant's wall-clock time of each real minute.  Around a change
-- of the clocks it behaves as cron does for "fixed" expressions (neither
-- minute nor hour starts with "*"): a local time skipped when the clocks go
-- forward fires at the first minute after the gap, and a local time that
-- occurs twice when they go back fires at its first occurrence only.  Other
-- expressions ("*/15 * * * *") follow real time: nothing to catch up in the
-- gap, both occurrences of a repeated hour.

-- Whether a local wall-clock minute's day (month, and day of month or
-- weekday as cron combines them) and time match a parsed expression.
CREATE FUNCTION ventros.cron_day_matches(cron jsonb, local timestamp) RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (cron->'month') @> to_jsonb(extract(month FROM local)::integer)
       AND CASE WHEN (cron->>'dom_star')::boolean OR (cron->>'dow_star')::boolean
                THEN (cron->'dom') @> to_jsonb(extract(day FROM local)::integer)
                     AND (cron->'dow') @> to_jsonb(extract(dow FROM local)::integer)
                ELSE (cron->'dom') @> to_jsonb(extract(day FROM local)::integer)
                     OR (cron->'dow') @> to_jsonb(extract(dow FROM local)::integer) END
$$;
COMMENT ON FUNCTION ventros.cron_day_matches(jsonb, timestamp) IS
    'Whether the day of a local time matches a parsed cron expression (month; day of month and weekday: both when either field is "*...", else either)';

CREATE FUNCTION ventros.cron_matches(cron jsonb, local timestamp) RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (cron->'minute') @> to_jsonb(extract(minute FROM local)::integer)
       AND (cron->'hour') @> to_jsonb(extract(hour FROM local)::integer)
       AND ventros.cron_day_matches(cron, local)
$$;
COMMENT ON FUNCTION ventros.cron_matches(jsonb, timestamp) IS
    'Whether a local wall-clock minute matches a parsed cron expression';

-- The first minute strictly after an instant's minute at which a parsed
-- expression fires in a timezone (NULL: none within about 50 years), and
-- the local minute it fires for (not the same in a spring-forward gap).
-- Walks real minutes, skipping non-matching days and hours at once.
CREATE FUNCTION ventros.cron_next(cron jsonb, tz text, after timestamptz, OUT at timestamptz, OUT local_at timestamp)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fixed boolean := (cron->>'fixed')::boolean;
    m timestamptz := to_timestamp(floor(extract(epoch FROM after) / 60) * 60 + 60);
    l timestamp;
    p timestamp;
BEGIN
    FOR i IN 1..20000 LOOP
        l := m AT TIME ZONE tz;
        IF fixed THEN
            -- the clocks went forward just before m: the skipped local minutes fire now
            p := (m - interval '1 minute') AT TIME ZONE tz;
            IF l - p > interval '1 minute' THEN
                SELECT g INTO local_at FROM generate_series(p + interval '1 minute', l - interval '1 minute', interval '1 minute') g
                 WHERE ventros.cron_matches(cron, g) LIMIT 1;
                IF local_at IS NOT NULL THEN
                    at := m;
                    RETURN;
                END IF;
            END IF;
        END IF;
        -- skip to the next local day or hour: the earlier of the real minutes
        -- left in it and its start in tz (which is the later instant of an
        -- ambiguous local time)
        IF NOT ventros.cron_day_matches(cron, l) THEN
            m := greatest(m + interval '1 minute', least(m + ((l::date + 1) - l), (l::date + 1)::timestamp AT TIME ZONE tz));
        ELSIF NOT (cron->'hour') @> to_jsonb(extract(hour FROM l)::integer) THEN
            m := greatest(m + interval '1 minute', least(m + (date_trunc('hour', l) + interval '1 hour' - l),
                                                          (date_trunc('hour', l) + interval '1 hour') AT TIME ZONE tz));
        ELSIF (cron->'minute') @> to_jsonb(extract(minute FROM l)::integer)
              -- a fixed time fires at the first occurrence of a repeated local minute only
              AND NOT (fixed AND EXISTS (SELECT 1 FROM generate_series(1, 180) k
                                          WHERE (m - make_interval(mins => k)) AT TIME ZONE tz >= l)) THEN
            at := m;
            local_at := l;
            RETURN;
        ELSE
            m := m + interval '1 minute';
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION ventros.cron_next(jsonb, text, timestamptz) IS
    'The first minute after an instant''s minute at which a parsed cron expression fires in a timezone, and the local minute it fires for (a fixed time skipped by a spring-forward gap fires right after it; a repeated local minute fires once); NULL when none';

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
    ELSIF schedule->>'type' = 'cron' THEN
        RETURN (ventros.cron_next(ventros.cron_parse(schedule->>'expression'), tz, after)).at;
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
    'The next instant after a given one at which a schedule (once, daily, weekly with ISO weekdays, monthly on a day, cron) falls, in a timezone';

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

-- A cron rule at a tick: every minute it matched since the last tick
-- (next_execution) up to now fires once, keyed by the minute (a late,
-- repeated or concurrent tick fires nothing twice); minutes more than an
-- hour old are not replayed.  The first tick only arms next_execution.
CREATE FUNCTION ventros.automation_tick_cron(rule ventros.automations, tz text, now timestamptz) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cron jsonb := ventros.cron_parse(rule.schedule->>'expression');
    due record;
    n integer := 0;
BEGIN
    IF rule.next_execution IS NULL THEN
        due := ventros.cron_next(cron, tz, now);
    ELSE
        due := ventros.cron_next(cron, tz, greatest(rule.next_execution, now - interval '1 hour') - interval '1 minute');
        WHILE due.at <= now LOOP
            IF ventros.automation_fire(rule, 'cron:' || to_char(due.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI"Z"'),
                                       jsonb_build_object('reason', 'schedule', 'due_at', due.at, 'local_time', due.local_at,
                                                          'timezone', tz, 'expression', rule.schedule->>'expression')) THEN
                n := n + 1;
            END IF;
            due := ventros.cron_next(cron, tz, due.at);
        END LOOP;
        -- the keys no tick reaches any more (it looks an hour back) go: a
        -- rule firing every minute would otherwise keep 1,440 a day
        DELETE FROM ventros.automation_timers t
         WHERE t.tenant_id = rule.tenant_id AND t.automation_id = rule.id AND t.fire_key LIKE 'cron:%'
           AND t.fire_key < 'cron:' || to_char((now - interval '2 hours') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI"Z"');
    END IF;
    UPDATE ventros.automations a SET next_execution = due.at,
                                     last_executed = CASE WHEN n > 0 THEN now ELSE a.last_executed END, version = a.version
     WHERE a.tenant_id = rule.tenant_id AND a.id = rule.id;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.automation_tick_cron(ventros.automations, text, timestamptz) IS
    'A tick for a cron-scheduled rule: fires once each minute it matched in the tenant''s timezone since next_execution (at most an hour back), keyed by the minute (keys older than two hours pruned); sets next_execution; returns how many fired';

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
        IF rule.trigger = 'scheduled' AND rule.schedule->>'type' = 'cron' THEN
            n := n + ventros.automation_tick_cron(rule, tz, now);
        ELSIF rule.trigger = 'scheduled' AND rule.schedule IS NOT NULL THEN
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
    'Scheduler (platform admins, per tenant through run_per_tenant): fires the acting tenant''s time triggers due at now, each once (scheduled: next_execution in the tenant''s timezone, every matching minute of a cron schedule; no_response.timeout: trigger_config.minutes since the contact''s unanswered message; date_field.reached: trigger_config.field + days); returns how many fired';

GRANT EXECUTE ON FUNCTION ventros.automation_next_occurrence(jsonb, text, timestamptz), ventros.cron_day_matches(jsonb, timestamp),
    ventros.cron_matches(jsonb, timestamp), ventros.cron_next(jsonb, text, timestamptz) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.tick_automation_rules(timestamptz) TO ventros_platform_admin;
