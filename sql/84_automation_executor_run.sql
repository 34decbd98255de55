-- Automation rules (sql/83_automation_rules.sql), continued from
-- sql/84_automation_executor.sql (the actions): one rule run for one event,
-- an event, a batch, the executor's entry point, the dry run.
--
-- search_path: as in sql/84_automation_executor.sql, only
-- ventros.run_automations (SECURITY DEFINER) pins it, and the functions it
-- calls inherit it.

-- ---- running one rule for one event ---------------------------------------------

-- The run's events: automation.triggered, .executed or .failed.  PL/pgSQL,
-- not SQL: a SQL function with a SET clause is never inlined and is planned
-- again at every call (some 0.1 ms, twice per rule run).
CREATE FUNCTION ventros.automation_report(rule ventros.automations, outcome text, run ventros.automation_runs) RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM ventros.emit('automation.' || outcome, 'automation', rule.id,
        jsonb_strip_nulls(jsonb_build_object('trigger', rule.trigger, 'run_id', run.id, 'event_id', run.event_id,
                                             'event_type', run.event_type, 'origin_event_id', run.origin_event_id,
                                             'depth', run.depth, 'actions', run.actions_done, 'error', run.error)),
        rule.version);
END
$$;
COMMENT ON FUNCTION ventros.automation_report(ventros.automations, text, ventros.automation_runs) IS
    'Emits automation.triggered, .executed or .failed for a run';

-- Runs a list of actions in order until a wait: the rest is stored as the
-- run's continuation.  Returns the actions done and whether it waits.
CREATE FUNCTION ventros.automation_run_actions(rule ventros.automations, ctx jsonb, actions jsonb, run_id uuid,
                                               at timestamptz, OUT done jsonb, OUT waiting boolean)
LANGUAGE plpgsql
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
        UPDATE ventros.automation_rule_runs x SET outcome = 'failed', error = left(state || ': ' || err, 2000),
                                             finished_at = clock_timestamp()
         WHERE x.tenant_id = run.tenant_id AND x.id = run.id RETURNING * INTO run;
        PERFORM ventros.automation_report(rule, 'failed', run);
    ELSE
        UPDATE ventros.automation_rule_runs x
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

-- The loop check: whether a rule ran (any outcome, skipped by its
-- conditions too) for an originating event, at depth 0 (the event itself)
-- or in its cascade.  SQL without SET: inlined into the caller's expression.
CREATE FUNCTION ventros.automation_ran_for_origin(tenant text, automation_id uuid, origin_event_id uuid) RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT EXISTS (SELECT 1 FROM ventros.automation_rule_runs x
                    WHERE x.tenant_id OPERATOR(pg_catalog.=) $1 AND x.automation_id OPERATOR(pg_catalog.=) $2
                      AND x.event_id OPERATOR(pg_catalog.=) $3)
        OR EXISTS (SELECT 1 FROM ventros.automation_rule_runs x
                    WHERE x.tenant_id OPERATOR(pg_catalog.=) $1 AND x.origin_event_id OPERATOR(pg_catalog.=) $3
                      AND x.automation_id OPERATOR(pg_catalog.=) $2 AND x.depth OPERATOR(pg_catalog.>) 0)
        OR EXISTS (SELECT 1 FROM ventros.automation_event_runs e
                    WHERE e.tenant_id OPERATOR(pg_catalog.=) $1 AND e.event_id OPERATOR(pg_catalog.=) $3
                      AND $2 OPERATOR(pg_catalog.=) ANY (e.skipped))
        OR EXISTS (SELECT 1 FROM ventros.automation_event_runs e
                    WHERE e.tenant_id OPERATOR(pg_catalog.=) $1 AND e.origin_event_id OPERATOR(pg_catalog.=) $3
                      AND e.depth OPERATOR(pg_catalog.>) 0 AND $2 OPERATOR(pg_catalog.=) ANY (e.skipped))
$$;
COMMENT ON FUNCTION ventros.automation_ran_for_origin(text, uuid, uuid) IS
    'Whether an automation rule ran (any outcome) for an originating event: for the event itself or for an event of its cascade';

-- One rule for one event, the careful way (ventros.automation_run_event_carefully):
-- the conditions and the actions each in a subtransaction, so that a
-- failure is this rule's failed run and nothing else.
CREATE FUNCTION ventros.automation_run_rule(rule ventros.automations, ev ventros.outbox, ctx jsonb, ctx_error text,
                                            settings ventros.automation_settings, depth integer,
                                            origin_event_id uuid, at timestamptz)
RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    run ventros.automation_runs;
    holds boolean;
    reason text;
    err text;
    state text;
BEGIN
    -- ran already (the event was queued again): nothing twice
    SELECT * INTO run FROM ventros.automation_rule_runs x
     WHERE x.tenant_id = ev.tenant_id AND x.automation_id = rule.id AND x.event_id = ev.event_id;
    IF FOUND THEN
        RETURN 'ran ' || run.outcome;
    END IF;
    IF EXISTS (SELECT 1 FROM ventros.automation_event_runs e
                WHERE e.tenant_id = ev.tenant_id AND e.event_id = ev.event_id AND rule.id = ANY (e.skipped)) THEN
        RETURN 'ran skipped';
    END IF;
    IF depth >= settings.max_depth THEN
        reason := format('cascade depth limit %s reached (event %s at depth %s, originating event %s)',
                         settings.max_depth, ev.event_type, depth, origin_event_id);
    ELSIF depth > 0 AND ventros.automation_ran_for_origin(ev.tenant_id, rule.id, origin_event_id) THEN
        reason := format('loop: rule already ran for the originating event %s', origin_event_id);
    ELSIF ctx_error IS NOT NULL THEN
        reason := 'conditions failed: ' || ctx_error;
    ELSE
        BEGIN
            holds := coalesce(ventros.automation_conditions_hold_c(rule.conditions, ctx, settings.timezone, at), false);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS err = MESSAGE_TEXT, state = RETURNED_SQLSTATE;
            reason := 'conditions failed: ' || state || ': ' || err;
        END;
    END IF;
    IF reason IS NULL AND NOT holds THEN
        -- the caller writes it in the event's row of the run log
        RETURN 'skipped';
    END IF;
    INSERT INTO ventros.automation_rule_runs (tenant_id, automation_id, event_id, event_type, origin_event_id, depth, outcome,
                                              error, finished_at)
    VALUES (ev.tenant_id, rule.id, ev.event_id, ev.event_type, origin_event_id, depth,
            CASE WHEN reason IS NOT NULL THEN 'failed' ELSE 'waiting' END,
            left(reason, 2000), CASE WHEN reason IS NOT NULL THEN clock_timestamp() END)
    RETURNING * INTO run;
    IF reason IS NOT NULL THEN
        PERFORM ventros.automation_report(rule, 'failed', run);
        RETURN 'failed';
    END IF;
    PERFORM ventros.automation_report(rule, 'triggered', run);
    RETURN ventros.automation_execute(rule, run, ctx, rule.actions, at);
END
$$;
COMMENT ON FUNCTION ventros.automation_run_rule(ventros.automations, ventros.outbox, jsonb, text, ventros.automation_settings, integer, uuid, timestamptz) IS
    'Runs one rule for one event once, each step in a subtransaction: refuses past the depth limit or a second run for the same originating event (failed, with the reason), evaluates its conditions (skipped, not written: the caller writes it in the event''s row; failed when they or the context cannot be evaluated), runs its actions (executed, waiting, failed); returns the outcome, or ''ran <outcome>'' when it ran for the event already';

-- The cascade marks of the events emitted from here on (the queue rows
-- ventros.automation_enqueue writes): one level deeper, the same origin.
-- NULL depth clears them.
CREATE FUNCTION ventros.automation_mark_cascade(depth integer, origin_event_id uuid) RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM set_config('ventros.automation_depth', coalesce(depth + 1, 0)::text, true),
            set_config('ventros.automation_origin', CASE WHEN depth IS NOT NULL THEN origin_event_id::text ELSE '' END, true);
END
$$;
COMMENT ON FUNCTION ventros.automation_mark_cascade(integer, uuid) IS
    'Marks the events emitted from now on in this transaction as a cascade one level below depth from an originating event (NULL: unmarks)';

-- One queued event, the fast way: the rules it triggers (in priority
-- order, ventros.run_automations matched them for the whole batch at once),
-- until a rule with stop_processing that ran, with no subtransaction of its
-- own.  The context is built once for all the rules (they all see the event
-- as it was when its rules started); the run of a rule that acts is
-- returned (runs), finished, after its actions, and the caller writes it
-- with the runs of the whole batch in one statement (a rule that may wait
-- writes it before its actions: the wait refers to it); the rules its
-- conditions skipped are returned (skipped), and the caller writes them in
-- the event's row of the run log.  Any error propagates, and so does a
-- second run of an acting rule for the event when the caller writes the
-- runs (the run log's key): the caller rolls the whole event back and runs
-- it again with ventros.automation_run_event_carefully, so the outcome is
-- the same as if every rule had had its own subtransaction.
CREATE FUNCTION ventros.automation_run_event(q ventros.automation_queue, ev ventros.outbox, rules ventros.automations[],
                                             settings ventros.automation_settings, at timestamptz,
                                             OUT skipped uuid[], OUT runs ventros.automation_runs[])
LANGUAGE plpgsql
AS $$
DECLARE
    rule ventros.automations;
    ctx jsonb;
    run ventros.automation_runs;
    r record;
    todo integer[];
    i integer;
BEGIN
    -- everything the rules emit (their actions', their own reports) is one
    -- level deeper (ventros.automation_mark_cascade, inlined: this runs for
    -- every event)
    PERFORM pg_catalog.set_config('ventros.automation_depth', (q.depth + 1)::text, true),
            pg_catalog.set_config('ventros.automation_origin', q.origin_event_id::text, true);
    skipped := '{}';
    runs := '{}';
    IF q.depth = 0 AND settings.max_depth > 0 THEN
        -- the common case: no depth limit or loop to check; the conditions
        -- of the rules in C, in priority order, up to the first rule that
        -- holds and has stop_processing (src/automation_conditions.c)
        ctx := ventros.automation_context(ev, at);
        SELECT h.acting, h.skipped INTO todo, skipped
          FROM ventros.automation_rules_holding(rules, ctx, settings.timezone, at) h;
    ELSE
        todo := ARRAY(SELECT pg_catalog.generate_series(1, cardinality(rules)));
    END IF;
    FOREACH i IN ARRAY todo LOOP
        rule := rules[i];
        run := ROW(q.tenant_id, gen_random_uuid(), rule.id, ev.event_id, ev.event_type, q.origin_event_id, q.depth,
                   'waiting', '[]'::jsonb, NULL, clock_timestamp(), NULL)::ventros.automation_runs;
        IF q.depth > 0 OR settings.max_depth <= 0 THEN
            IF q.depth >= settings.max_depth THEN
                run.error := format('cascade depth limit %s reached (event %s at depth %s, originating event %s)',
                                    settings.max_depth, ev.event_type, q.depth, q.origin_event_id);
            ELSIF ventros.automation_ran_for_origin(q.tenant_id, rule.id, q.origin_event_id) THEN
                run.error := format('loop: rule already ran for the originating event %s', q.origin_event_id);
            END IF;
            IF run.error IS NOT NULL THEN
                run.outcome := 'failed';
                run.finished_at := clock_timestamp();
                INSERT INTO ventros.automation_rule_runs VALUES (run.*);
                PERFORM ventros.automation_report(rule, 'failed', run);
                CONTINUE;
            END IF;
            ctx := coalesce(ctx, ventros.automation_context(ev, at));
            IF NOT coalesce(ventros.automation_conditions_hold_c(rule.conditions, ctx, settings.timezone, at), false) THEN
                skipped := skipped || rule.id;
                CONTINUE;
            END IF;
        END IF;
        -- the reports inlined (ventros.automation_report: the same payload)
        PERFORM ventros.emit('automation.triggered', 'automation', rule.id,
            jsonb_strip_nulls(jsonb_build_object('trigger', rule.trigger, 'run_id', run.id, 'event_id', run.event_id,
                                                 'event_type', run.event_type, 'origin_event_id', run.origin_event_id,
                                                 'depth', run.depth, 'actions', run.actions_done, 'error', run.error)),
            rule.version);
        IF rule.actions @? '$[*] ? (@.type == "wait" || exists(@.delay_minutes))' THEN
            INSERT INTO ventros.automation_rule_runs VALUES (run.*);
            r := ventros.automation_run_actions(rule, ctx, rule.actions, run.id, at);
            UPDATE ventros.automation_rule_runs x
               SET outcome = CASE WHEN r.waiting THEN 'waiting' ELSE 'executed' END, actions_done = r.done,
                   finished_at = CASE WHEN NOT r.waiting THEN clock_timestamp() END
             WHERE x.tenant_id = run.tenant_id AND x.id = run.id RETURNING * INTO run;
        ELSE
            -- no wait: ventros.automation_run_actions' loop, inlined
            FOR k IN 0 .. jsonb_array_length(rule.actions) - 1 LOOP
                IF rule.actions->k->>'type' <> 'wait' THEN
                    run.actions_done := run.actions_done || ventros.automation_act(rule.actions->k, ctx, rule);
                END IF;
            END LOOP;
            run.outcome := 'executed';
            run.finished_at := clock_timestamp();
            runs := runs || run;
        END IF;
        IF run.outcome = 'executed' THEN
            PERFORM ventros.emit('automation.executed', 'automation', rule.id,
                jsonb_strip_nulls(jsonb_build_object('trigger', rule.trigger, 'run_id', run.id, 'event_id', run.event_id,
                                                     'event_type', run.event_type, 'origin_event_id', run.origin_event_id,
                                                     'depth', run.depth, 'actions', run.actions_done, 'error', run.error)),
                rule.version);
        END IF;
        EXIT WHEN rule.stop_processing;
    END LOOP;
END
$$;
COMMENT ON FUNCTION ventros.automation_run_event(ventros.automation_queue, ventros.outbox, ventros.automations[], ventros.automation_settings, timestamptz) IS
    'Runs the rules a queued event triggers (given in priority order), stopping after a rule with stop_processing that ran, without subtransactions: any error propagates (the executor then runs the event with ventros.automation_run_event_carefully); returns the rules its conditions skipped and the finished runs of the rules that acted, which the caller writes (a second run of a rule for the event fails there, on the run log''s key)';

-- One queued event, the careful way: the same, each rule in its own
-- subtransactions (ventros.automation_run_rule), a rule that ran for the
-- event already left alone.  The executor's second attempt at an event
-- whose fast run failed.
CREATE FUNCTION ventros.automation_run_event_carefully(q ventros.automation_queue, ev ventros.outbox,
                                                       rules ventros.automations[],
                                                       settings ventros.automation_settings, at timestamptz)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    rule ventros.automations;
    ctx jsonb;
    ctx_error text;
    outcome text;
    n integer := 0;
    err text;
    state text;
    skipped uuid[] := '{}';
BEGIN
    PERFORM ventros.automation_mark_cascade(q.depth, q.origin_event_id);
    BEGIN
        ctx := ventros.automation_context(ev, at);
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS err = MESSAGE_TEXT, state = RETURNED_SQLSTATE;
        ctx_error := state || ': ' || err;
    END;
    FOREACH rule IN ARRAY rules LOOP
        outcome := ventros.automation_run_rule(rule, ev, ctx, ctx_error, settings, q.depth, q.origin_event_id, at);
        IF outcome = 'skipped' THEN
            skipped := skipped || rule.id;
        END IF;
        n := n + 1;
        EXIT WHEN rule.stop_processing AND outcome IN ('executed', 'waiting', 'ran executed', 'ran waiting');
    END LOOP;
    -- the event's row: its rules ran; those skipped now join those skipped
    -- before (an event queued again: automation_run_rule left them alone)
    INSERT INTO ventros.automation_event_runs AS x (tenant_id, event_id, event_type, origin_event_id, depth, skipped)
    VALUES (q.tenant_id, ev.event_id, ev.event_type, q.origin_event_id, q.depth, skipped)
    ON CONFLICT (tenant_id, event_id) DO UPDATE SET skipped = x.skipped || excluded.skipped;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.automation_run_event_carefully(ventros.automation_queue, ventros.outbox, ventros.automations[], ventros.automation_settings, timestamptz) IS
    'Runs the rules a queued event triggers as ventros.automation_run_event does, each rule in its own subtransactions, so a failing rule is its own failed run and a rule that ran for the event already is left alone; writes (or completes) the event''s row of the run log; returns how many rules ran';

-- A due wait: the rest of the run's actions.
CREATE FUNCTION ventros.automation_resume(w ventros.automation_waits, at timestamptz) RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    run ventros.automation_runs;
    rule ventros.automations;
    ev ventros.outbox;
BEGIN
    DELETE FROM ventros.automation_waits x WHERE x.tenant_id = w.tenant_id AND x.run_id = w.run_id;
    SELECT * INTO run FROM ventros.automation_rule_runs x WHERE x.tenant_id = w.tenant_id AND x.id = w.run_id;
    SELECT * INTO rule FROM ventros.automations a WHERE a.tenant_id = w.tenant_id AND a.id = run.automation_id;
    SELECT * INTO ev FROM ventros.outbox o WHERE o.tenant_id = w.tenant_id AND o.event_id = run.event_id;
    PERFORM ventros.automation_mark_cascade(run.depth, run.origin_event_id);
    IF NOT rule.enabled OR rule.deleted_at IS NOT NULL OR ev.event_id IS NULL
       OR NOT (ventros.current_automation_settings()).enabled THEN
        UPDATE ventros.automation_rule_runs x SET outcome = 'failed', finished_at = clock_timestamp(),
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

-- The run log's rows of many events at once: for each, the rules its
-- conditions skipped; and the runs of the rules that acted (one statement
-- for a batch, not one per run).  Plain inserts: a row already there (an
-- event queued again, a rule run again for an event) fails a key, and the
-- caller runs the event the careful way.
CREATE FUNCTION ventros.automation_log_events(event_runs ventros.automation_event_runs[],
                                              runs ventros.automation_runs[] DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    IF cardinality(event_runs) > 0 THEN
        INSERT INTO ventros.automation_event_runs SELECT * FROM unnest(event_runs);
    END IF;
    IF cardinality(runs) > 0 THEN
        INSERT INTO ventros.automation_rule_runs SELECT * FROM unnest(runs);
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.automation_log_events(ventros.automation_event_runs[], ventros.automation_runs[]) IS
    'Writes the run log''s rows of many events (the rules their conditions skipped) and the runs of the rules that acted, at once; a second row for an event, or a second run of a rule for an event, fails';

-- The events of a batch, in order, each tenant's as that tenant: rules,
-- of_event and at_rule as ventros.run_automations matched them.  Without
-- per_event, no subtransaction at all (any error propagates: the caller
-- rolls the batch back and runs it again with per_event); with per_event,
-- one per event, and an event whose fast run failed runs again with a
-- subtransaction per rule.  Each event whose rules ran has its row in the
-- run log (the rules its conditions skipped): without per_event, the rows of
-- the whole batch are written at once at the end (before an event of a
-- cascade, whose loop check reads them); with per_event, in the event's
-- subtransaction, where a row already there (an event queued again) sends
-- the event the careful way too.
CREATE FUNCTION ventros.automation_run_batch(qs ventros.automation_queue[], evs ventros.outbox[],
                                             rules ventros.automations[], of_event integer[], at_rule integer[],
                                             per_event boolean, at timestamptz)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    event_rules ventros.automations[];
    k integer := 1;
    j integer;
    done record;
    event_runs ventros.automation_event_runs[] := '{}';
    runs ventros.automation_runs[] := '{}';
    q ventros.automation_queue;
    ev ventros.outbox;
    settings ventros.automation_settings;
    tenant text;
BEGIN
    FOR i IN 1 .. cardinality(qs) LOOP
        q := qs[i];
        ev := evs[i];
        -- this event's rules (element by element: a slice of a big array
        -- would flatten all of it for every event)
        event_rules := '{}';
        j := k;
        WHILE j <= cardinality(of_event) AND of_event[j] = i LOOP
            event_rules := event_rules || rules[at_rule[j]];
            j := j + 1;
        END LOOP;
        IF tenant IS DISTINCT FROM q.tenant_id THEN
            tenant := q.tenant_id;
            PERFORM pg_catalog.set_config('ventros.tenant', tenant, true);
            settings := ventros.current_automation_settings();
        END IF;
        IF q.depth > 0 AND (cardinality(event_runs) > 0 OR cardinality(runs) > 0) THEN
            -- the loop check of a cascade reads the run log: write what waits
            PERFORM ventros.automation_log_events(event_runs, runs);
            event_runs := '{}';
            runs := '{}';
        END IF;
        -- nothing when no rule wants it (any more), the tenant disabled its
        -- rules, or the event was pruned or erased meanwhile
        IF j > k AND settings.enabled AND ev.event_id IS NOT NULL THEN
            IF NOT per_event THEN
                done := ventros.automation_run_event(q, ev, event_rules, settings, at);
                event_runs := event_runs || ROW(q.tenant_id, ev.event_id, ev.event_type, q.origin_event_id, q.depth,
                                                done.skipped, clock_timestamp())::ventros.automation_event_runs;
                runs := runs || done.runs;
                IF cardinality(runs) >= 200 THEN
                    -- (each || copies the array: written in parts, not
                    -- quadratically when every rule acts)
                    PERFORM ventros.automation_log_events(event_runs, runs);
                    event_runs := '{}';
                    runs := '{}';
                END IF;
            ELSE
                BEGIN
                    done := ventros.automation_run_event(q, ev, event_rules, settings, at);
                    PERFORM ventros.automation_log_events(
                        ARRAY[ROW(q.tenant_id, ev.event_id, ev.event_type, q.origin_event_id, q.depth, done.skipped,
                                  clock_timestamp())::ventros.automation_event_runs], done.runs);
                EXCEPTION WHEN OTHERS THEN
                    -- a rule failed, or the event ran before: all this event
                    -- did is rolled back; again, a subtransaction per rule
                    BEGIN
                        PERFORM ventros.automation_run_event_carefully(q, ev, event_rules, settings, at);
                    EXCEPTION WHEN OTHERS THEN
                        RAISE WARNING 'automation executor: event % of tenant % failed: %', q.event_id, q.tenant_id, SQLERRM;
                    END;
                END;
            END IF;
        END IF;
        k := j;
    END LOOP;
    IF cardinality(event_runs) > 0 OR cardinality(runs) > 0 THEN
        PERFORM ventros.automation_log_events(event_runs, runs);
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.automation_run_batch(ventros.automation_queue[], ventros.outbox[], ventros.automations[], integer[], integer[], boolean, timestamptz) IS
    'Runs the rules of a batch of queued events in order, each tenant''s as that tenant: without subtransactions (any error propagates), or with one per event and a per-rule second pass for an event whose rules failed or ran before; writes each event''s row of the run log (the rules its conditions skipped)';

-- ---- the executor's entry point ---------------------------------------------------

-- A batch is one transaction: the first queued event of each aggregate
-- (SKIP LOCKED), in order; their rules matched in one query; the whole
-- batch in one subtransaction and, only when something in it fails, again
-- with one per event, and the event that failed again with one per rule;
-- the queue rows deleted at once; then the due waits.
CREATE FUNCTION ventros.run_automations(batch_size integer DEFAULT 100, now timestamptz DEFAULT now())
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET ventros.tenant = ''
AS $$
DECLARE
    qs ventros.automation_queue[];
    evs ventros.outbox[];
    of_event integer[];
    at_rule integer[];
    rules ventros.automations[];
    w ventros.automation_waits;
    n integer := 0;
    saved_wait text := pg_catalog.current_setting('lock_timeout');
BEGIN
    PERFORM ventros.require_platform_admin();
    -- a tenant's open transaction holding a row a rule needs fails that
    -- rule's run (55P03), not the executor
    PERFORM pg_catalog.set_config('lock_timeout', '2s', true);
    SELECT coalesce(array_agg(c.x ORDER BY (c.x).seq), '{}'), coalesce(array_agg(o ORDER BY (c.x).seq), '{}')
      INTO qs, evs
      FROM (SELECT x FROM ventros.automation_queue x
             WHERE NOT EXISTS (SELECT 1 FROM ventros.automation_queue y
                                WHERE y.tenant_id = x.tenant_id AND y.aggregate_id = x.aggregate_id AND y.seq < x.seq)
             ORDER BY x.seq
             LIMIT batch_size
             FOR UPDATE SKIP LOCKED) c
      LEFT JOIN ventros.outbox o ON o.tenant_id = (c.x).tenant_id AND o.seq = (c.x).seq;
    -- the rules of every event of the batch: rules holds the enabled rules
    -- of the batch's tenants (each tenant's in priority order), one query
    -- matches them with the events: of_event[m] is the event of
    -- rules[at_rule[m]], each event's in priority order
    SELECT coalesce(array_agg(a ORDER BY a.tenant_id, a.priority DESC, a.created_at, a.id), '{}') INTO rules
      FROM ventros.automations a
     WHERE a.tenant_id IN (SELECT DISTINCT x.tenant_id FROM unnest(qs) x) AND a.enabled AND a.deleted_at IS NULL;
    SELECT coalesce(array_agg(bq.ordinality ORDER BY bq.ordinality, r.ordinality), '{}'),
           coalesce(array_agg(r.ordinality ORDER BY bq.ordinality, r.ordinality), '{}')
      INTO of_event, at_rule
      FROM unnest(qs) WITH ORDINALITY bq
      JOIN unnest(evs) WITH ORDINALITY bo ON bo.ordinality = bq.ordinality
      JOIN unnest(rules) WITH ORDINALITY r ON r.tenant_id = bq.tenant_id
     WHERE (ventros.automation_trigger_matches(r.trigger, bo.event_type) OR r.id = bq.automation_id)
       AND NOT (r.trigger = 'message.received' AND coalesce((bo.payload->>'from_me')::boolean, false));
    -- the whole batch in one subtransaction; if anything in it fails, it
    -- is rolled back and run again with a subtransaction per event
    BEGIN
        PERFORM ventros.automation_run_batch(qs, evs, rules, of_event, at_rule, false, run_automations.now);
    EXCEPTION WHEN OTHERS THEN
        PERFORM ventros.automation_run_batch(qs, evs, rules, of_event, at_rule, true, run_automations.now);
    END;
    DELETE FROM ventros.automation_queue x USING unnest(qs) u WHERE x.tenant_id = u.tenant_id AND x.seq = u.seq;
    n := cardinality(qs);
    PERFORM ventros.automation_mark_cascade(NULL, NULL);
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
    -- the AI agent's message groups close at their due time on the same
    -- wake (sql/98_intelligence_agent.sql)
    n := n + ventros.close_due_message_groups(run_automations.now, batch_size);
    PERFORM pg_catalog.set_config('lock_timeout', saved_wait, true);
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.run_automations(integer, timestamptz) IS
    'The automation executor (src/automation_worker.c; platform admins): runs the rules of up to batch_size queued events (the first of each aggregate, SKIP LOCKED), due waits and due AI agent message groups, each tenant''s as that tenant, in this transaction; returns how many it took';

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

GRANT EXECUTE ON FUNCTION ventros.test_automation(uuid, uuid, timestamptz) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.run_automations(integer, timestamptz) TO ventros_platform_admin;
