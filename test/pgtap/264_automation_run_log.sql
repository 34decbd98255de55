-- The run log's compact form (sql/83_automation_rules.sql): the rules an
-- event's conditions skipped are one row per event (automation_event_runs),
-- the rules that ran one row each (automation_rule_runs), and the view
-- automation_runs shows one entry per rule and event.  Exactly once still:
-- an event queued again runs no rule twice, a rule skipped before included
-- (its conditions hold now); a rule skipped at depth 0 counts for the loop
-- check of the cascade; the dry run sees a skipped run.
BEGIN;
SELECT plan(22);
SELECT ventros.create_tenant('t_runlog', 'Run log');
SET LOCAL ventros.tenant = 't_runlog';
CREATE TEMP TABLE ids (name text PRIMARY KEY, id uuid);
GRANT ALL ON ids TO PUBLIC;
CREATE FUNCTION pg_temp.id(n text) RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM ids WHERE name = n $$;
CREATE FUNCTION pg_temp.run_once() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    caller text := current_user;
    n integer;
BEGIN
    SET LOCAL ROLE ventros_platform_admin;
    n := ventros.run_automations(100, now());
    EXECUTE format('SET LOCAL ROLE %I', caller);
    RETURN n;
END
$$;
CREATE FUNCTION pg_temp.qualify(contact uuid, score integer) RETURNS uuid LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ventros.emit('contact.lead_qualified', 'contact', contact, jsonb_build_object('score', score));
    RETURN (SELECT event_id FROM ventros.outbox WHERE aggregate_id = contact AND event_type = 'contact.lead_qualified'
             ORDER BY seq DESC LIMIT 1);
END
$$;
-- calls until nothing is left; how many events and waits they took
CREATE FUNCTION pg_temp.drain() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer := 0;
    k integer;
BEGIN
    LOOP
        k := pg_temp.run_once();
        EXIT WHEN k = 0;
        n := n + k;
    END LOOP;
    RETURN n;
END
$$;
-- the view's entries of one event, as rule=outcome in priority order
CREATE FUNCTION pg_temp.runs(ev uuid) RETURNS text[] LANGUAGE sql AS $$
    SELECT array_agg(a.name || '=' || r.outcome ORDER BY a.priority DESC, a.name)
      FROM ventros.automation_runs r JOIN ventros.automations a ON a.id = r.automation_id WHERE r.event_id = ev
$$;
CREATE FUNCTION pg_temp.requeue(ev uuid) RETURNS void LANGUAGE sql SECURITY DEFINER AS $$
    INSERT INTO ventros.automation_queue (tenant_id, seq, event_id, aggregate_id, origin_event_id)
    SELECT tenant_id, seq, event_id, aggregate_id, event_id FROM ventros.outbox WHERE event_id = ev
$$;
SET LOCAL ROLE ventros_admin;

-- 1. One event, three rules: one acts, two are skipped by their conditions.
INSERT INTO ids SELECT 'c1', ventros_test.new_contact();
INSERT INTO ids SELECT 'act', id FROM ventros.create_automation('Act', 'contact.lead_qualified',
    '[{"type": "add_tag", "params": {"tag": "hot"}}]', '[{"field": "score", "operator": "gte", "value": 5}]',
    priority => 10, automation_type => 'event');
INSERT INTO ids SELECT 'vip', id FROM ventros.create_automation('Vip', 'contact.lead_qualified',
    '[{"type": "add_tag", "params": {"tag": "vip"}}]', '[{"tag": "vip_candidate"}]', priority => 5, automation_type => 'event');
INSERT INTO ids SELECT 'big', id FROM ventros.create_automation('Big', 'contact.lead_qualified',
    '[{"type": "add_tag", "params": {"tag": "big"}}]', '[{"field": "score", "operator": "gte", "value": 100}]',
    priority => 1, automation_type => 'event');
INSERT INTO ids SELECT 'e1', pg_temp.qualify(pg_temp.id('c1'), 8);
SELECT is(pg_temp.run_once(), 1, 'executor');
SELECT is(pg_temp.runs(pg_temp.id('e1')), '{Act=executed,Vip=skipped,Big=skipped}',
          'the view: one entry per rule, the skipped ones too');
SELECT is((SELECT count(*)::int FROM ventros.automation_rule_runs WHERE event_id = pg_temp.id('e1')), 1,
          'one row for the rule that ran');
SELECT is((SELECT skipped FROM ventros.automation_event_runs WHERE event_id = pg_temp.id('e1')),
          ARRAY[pg_temp.id('vip'), pg_temp.id('big')], 'one row for the event, naming the rules skipped in priority order');
SELECT is((SELECT array_agg(event_type || '@' || depth || ' ' || (id IS NULL) || ' ' || (actions_done = '[]') || ' '
                            || (finished_at = started_at) ORDER BY automation_id)
             FROM ventros.automation_runs WHERE event_id = pg_temp.id('e1') AND outcome = 'skipped'),
          '{"contact.lead_qualified@0 true true true","contact.lead_qualified@0 true true true"}',
          'a skipped entry: the event''s type and depth, no id, no actions, evaluated at one instant');
SELECT is((ventros.test_automation(pg_temp.id('vip'), pg_temp.id('e1'))->>'already_ran')::boolean, true,
          'the dry run sees that a skipped rule ran for the event');

-- 2. An event all of whose rules were skipped, queued again after one
--    rule's conditions came to hold: the fast pass runs it (it has no run
--    row of its own to refuse it), the event's row refuses the second pass,
--    and the per-rule pass leaves it alone.
INSERT INTO ids SELECT 'c3', ventros_test.new_contact();
INSERT INTO ids SELECT 'e3', pg_temp.qualify(pg_temp.id('c3'), 1);
SELECT is(pg_temp.run_once(), 1, 'executor');
SELECT is(pg_temp.runs(pg_temp.id('e3')), '{Act=skipped,Vip=skipped,Big=skipped}', 'every rule skipped');
SELECT ok((ventros.update_contact(id, version, '{"tags": ["vip_candidate"]}')).id IS NOT NULL, 'one rule''s condition holds now')
  FROM ventros.contacts WHERE id = pg_temp.id('c3');
SELECT pg_temp.requeue(pg_temp.id('e3'));
SELECT is(pg_temp.run_once(), 1, 'the event queued again is taken');
SELECT is(pg_temp.runs(pg_temp.id('e3')), '{Act=skipped,Vip=skipped,Big=skipped}', 'still one entry per rule');
SELECT is((SELECT tags FROM ventros.contacts WHERE id = pg_temp.id('c3')), '{vip_candidate}'::text[],
          'the rule skipped before did not act now');
SELECT is((SELECT count(*)::int FROM ventros.outbox WHERE event_type IN ('automation.triggered', 'automation.executed', 'automation.failed')
             AND payload->>'event_id' = pg_temp.id('e3')::text), 0, 'no report of a run');
SELECT is((SELECT count(*)::int FROM ventros.automation_event_runs WHERE event_id = pg_temp.id('e3')), 1, 'one row for the event');

-- 3. The first event queued again, with a new rule its conditions skip: the
--    acting rule's run refuses the fast pass, and the per-rule pass adds the
--    new rule to the event's row.
INSERT INTO ids SELECT 'late', id FROM ventros.create_automation('Late', 'contact.lead_qualified',
    '[{"type": "add_tag", "params": {"tag": "late"}}]', '[{"tag": "never_set"}]', priority => 0, automation_type => 'event');
SELECT pg_temp.requeue(pg_temp.id('e1'));
SELECT is(pg_temp.run_once(), 1, 'the event queued again is taken');
SELECT is((SELECT skipped FROM ventros.automation_event_runs WHERE event_id = pg_temp.id('e1')),
          ARRAY[pg_temp.id('vip'), pg_temp.id('big'), pg_temp.id('late')], 'the new rule joins the skipped ones');
SELECT is(pg_temp.runs(pg_temp.id('e1')), '{Act=executed,Vip=skipped,Big=skipped,Late=skipped}', 'one entry per rule');
SELECT is((SELECT tags FROM ventros.contacts WHERE id = pg_temp.id('c1')), '{hot}'::text[], 'the acting rule did not act twice');

-- 4. The loop check reads the skipped rules: a rule skipped for the
--    originating event does not run for an event of its cascade.
SELECT count(ventros.set_automation_enabled(id, version, false)) FROM ventros.automations WHERE name IN ('Act', 'Vip', 'Big', 'Late');
INSERT INTO ids SELECT 'fan', id FROM ventros.create_automation('Fan', 'contact.lead_qualified',
    '[{"type": "add_tag", "params": {"tag": "fanned"}}]', priority => 10, automation_type => 'event');
INSERT INTO ids SELECT 'watch', id FROM ventros.create_automation('Watch', 'contact.*',
    '[{"type": "add_tag", "params": {"tag": "watched"}}]', '[{"tag": "fanned"}]', priority => 0, automation_type => 'event');
INSERT INTO ids SELECT 'c2', ventros_test.new_contact();
INSERT INTO ids SELECT 'e2', pg_temp.qualify(pg_temp.id('c2'), 1);
SELECT cmp_ok(pg_temp.drain(), '>=', 3, 'executor: contact.created, the event, then its cascade''s contact.tag_added');
SELECT is(pg_temp.runs(pg_temp.id('e2')), '{Fan=executed,Watch=skipped}', 'Watch was skipped for the originating event');
SELECT is((SELECT outcome || '@' || depth || ': ' || left(error, 48) FROM ventros.automation_runs
            WHERE automation_id = pg_temp.id('watch') AND event_id <> pg_temp.id('e2') AND event_type = 'contact.tag_added'),
          'failed@1: loop: rule already ran for the originating event', 'its conditions hold now, but it ran for the origin: refused');
SELECT is((SELECT tags FROM ventros.contacts WHERE id = pg_temp.id('c2')), '{fanned}'::text[], 'and did not act');

SELECT * FROM finish();
ROLLBACK;
