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
--      executors), runs each matching rule in priority order (a failing
--      rule's actions roll back alone: the batch runs in one
--      subtransaction, and again per event and per rule when a rule failed
--      in it), records each run in the run log (ventros.automation_runs) and deletes the
--      queue rows, all in one transaction.  The run log's key
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
--
-- The parts, in order: this file (settings, the queue, the run log, waits
-- and timers, enqueueing), sql/84_automation_conditions.sql (what a rule
-- sees and its conditions), sql/84_automation_executor.sql (actions),
-- sql/84_automation_executor_run.sql (one rule run, the executor's entry
-- point, the dry run) and sql/84_automation_time_triggers.sql.

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

-- The run log.  A rule that ran for an event (executed, failed, waiting)
-- has its row in ventros.automation_rule_runs; the rules an event's
-- conditions skipped are one row per event in ventros.automation_event_runs
-- (their ids in an array: a row per skipped rule cost the executor 20 us of
-- CPU each, two thirds of its work with 10 rules of which one acts).  The
-- view ventros.automation_runs shows both as one entry per rule and event.
-- Exactly once: automation_rule_runs_once refuses a second run of a rule
-- for an event, and the event row's key (tenant, event) a second pass over
-- its rules; the executor falls back to its per-rule path, which checks both.
CREATE TABLE ventros.automation_rule_runs (
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
    CONSTRAINT automation_rule_runs_once UNIQUE (tenant_id, automation_id, event_id),
    CONSTRAINT automation_rule_runs_outcome_known CHECK (outcome IN ('executed', 'skipped', 'failed', 'waiting'))
);
-- The loop check's index: the runs of a cascade (depth > 0) by originating
-- event; a run at depth 0 is its own origin, found by automation_rule_runs_once.
-- Not (tenant, rule, origin): with the rule first, a generic plan of the
-- executor's "did this rule run for this event" probe could take it over
-- automation_rule_runs_once and read every run of the rule.
CREATE INDEX automation_rule_runs_origin ON ventros.automation_rule_runs (tenant_id, origin_event_id, automation_id) WHERE depth > 0;
COMMENT ON TABLE ventros.automation_rule_runs IS
    'Run log, the rules that ran: one row per rule and event (executed, failed with its error, waiting to continue), with the actions done; read ventros.automation_runs for every rule';
ALTER TABLE ventros.automation_rule_runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.automation_rule_runs FORCE ROW LEVEL SECURITY;
REVOKE ALL ON ventros.automation_rule_runs FROM PUBLIC;
CREATE POLICY ventros_tenant_read ON ventros.automation_rule_runs FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.automation_rule_runs TO ventros_viewer;

CREATE TABLE ventros.automation_event_runs (
    tenant_id       text        NOT NULL,
    event_id        uuid        NOT NULL,
    event_type      text        NOT NULL,
    origin_event_id uuid        NOT NULL,
    depth           integer     NOT NULL,
    skipped         uuid[]      NOT NULL DEFAULT '{}',
    ran_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, event_id)
);
-- The loop check reads the skipped rules of a cascade's events too.
CREATE INDEX automation_event_runs_origin ON ventros.automation_event_runs (tenant_id, origin_event_id) WHERE depth > 0;
COMMENT ON TABLE ventros.automation_event_runs IS
    'Run log, per event: one row per event whose rules ran, with the rules its conditions skipped (automation ids); read ventros.automation_runs for one entry per rule';
ALTER TABLE ventros.automation_event_runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.automation_event_runs FORCE ROW LEVEL SECURITY;
REVOKE ALL ON ventros.automation_event_runs FROM PUBLIC;
CREATE POLICY ventros_tenant_read ON ventros.automation_event_runs FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.automation_event_runs TO ventros_viewer;

-- One entry per rule and event: the rules that ran, and the rules skipped
-- by their conditions (no id, no actions; started and finished when the
-- event's rules were evaluated).
CREATE VIEW ventros.automation_runs WITH (security_invoker = true) AS
    SELECT r.tenant_id, r.id, r.automation_id, r.event_id, r.event_type, r.origin_event_id, r.depth, r.outcome,
           r.actions_done, r.error, r.started_at, r.finished_at
      FROM ventros.automation_rule_runs r
    UNION ALL
    SELECT e.tenant_id, NULL::uuid, s.automation_id, e.event_id, e.event_type, e.origin_event_id, e.depth, 'skipped'::text,
           '[]'::jsonb, NULL::text, e.ran_at, e.ran_at
      FROM ventros.automation_event_runs e
     CROSS JOIN LATERAL unnest(e.skipped) s(automation_id);
COMMENT ON VIEW ventros.automation_runs IS
    'Run log: one entry per rule and event (executed, skipped by its conditions, failed with its error, waiting to continue), with the actions done; skipped entries have no id';
GRANT SELECT ON ventros.automation_runs TO ventros_viewer;

CREATE TABLE ventros.automation_waits (
    tenant_id text        NOT NULL,
    run_id    uuid        NOT NULL,
    due_at    timestamptz NOT NULL,
    actions   jsonb       NOT NULL DEFAULT '[]',
    PRIMARY KEY (tenant_id, run_id),
    FOREIGN KEY (tenant_id, run_id) REFERENCES ventros.automation_rule_runs (tenant_id, id) ON DELETE CASCADE,
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
SELECT ventros.reserve_event_type(t, 'ventros_platform_admin')
  FROM unnest(ARRAY['automation.time_reached', 'automation.agents_notified']) t;

-- ---- enqueue: in the event's transaction --------------------------------------

-- Called by src/webhook_fanout.c, as the table owner, right after the event's
-- outbox row was written (currval of ventros.outbox_seq is its seq).  It runs
-- in every writer's transaction, so it does nothing but the insert: it is
-- PL/pgSQL (its plan is cached; a SQL function would be planned at every
-- call); it has no SET clause (saving, setting and restoring search_path at
-- every call: every name is qualified instead, and no tenant can create an
-- object in a schema it would find); no ON CONFLICT (the seq was drawn for
-- this event just now: no row can have it, and a speculative insertion
-- costs more than a plain one); and it does not look for the rules again:
-- the caller asked the fan-out cache, which holds the triggers of the
-- tenant's enabled rules and is invalidated with them.  (A row queued on a
-- cache a concurrent change made stale finds no rule and is deleted by the
-- executor, as it would be when the rule is disabled after the commit.)
-- (event_type stays in the signature, for that caller.)  Measured with 10
-- rules, CPU per emit of a writer: 34 us without rules, 87-134 us with the
-- lookup, SET and ON CONFLICT, 45-55 us without (docs/automation.md).
CREATE FUNCTION ventros.automation_enqueue(event_tenant text, event_id uuid, event_type text, aggregate_id uuid)
RETURNS integer
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    INSERT INTO ventros.automation_queue (tenant_id, seq, event_id, aggregate_id, depth, origin_event_id)
    SELECT event_tenant, pg_catalog.currval('ventros.outbox_seq'), automation_enqueue.event_id, automation_enqueue.aggregate_id,
           coalesce(CAST(nullif(pg_catalog.current_setting('ventros.automation_depth', true), '') AS pg_catalog.int4), 0),
           coalesce(CAST(nullif(pg_catalog.current_setting('ventros.automation_origin', true), '') AS pg_catalog.uuid),
                    automation_enqueue.event_id);
    RETURN 1;
END
$$;
COMMENT ON FUNCTION ventros.automation_enqueue(text, uuid, text, uuid) IS
    'Internal (the emitter, as table owner, when the fan-out cache says an enabled rule of the tenant selects the event): queues the event just written for the automation executor; returns 1';

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

GRANT EXECUTE ON FUNCTION ventros.current_automation_settings() TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.set_automation_settings(boolean, text, integer) TO ventros_admin;
