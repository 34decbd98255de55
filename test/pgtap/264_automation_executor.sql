-- The automation executor's batches (sql/84_automation_executor_run.sql): many
-- events in one call, in one subtransaction; when a rule fails, the batch
-- again with one per event and that event with one per rule; a failing
-- rule in a batch;
-- order per aggregate; one context per event; an event queued again after a
-- rule with stop_processing ran; the loop check between events of one batch;
-- an event queued again whose rules were skipped; a queued event no rule wants.
BEGIN;
SELECT plan(30);
SELECT ventros.create_tenant('t_exec', 'Executor');
SET LOCAL ventros.tenant = 't_exec';
SET LOCAL ROLE ventros_admin;
CREATE TEMP TABLE ids (name text PRIMARY KEY, id uuid);
GRANT ALL ON ids TO PUBLIC;
CREATE FUNCTION pg_temp.id(n text) RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM ids WHERE name = n $$;
-- one call of the executor (one batch, one transaction step), as the worker makes it
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
-- the automation.* events of one triggering event, as rule:outcome in outbox order
CREATE FUNCTION pg_temp.reports(ev uuid) RETURNS text[] LANGUAGE sql AS $$
    SELECT array_agg(a.name || ':' || split_part(o.event_type, '.', 2) ORDER BY o.seq)
      FROM ventros.outbox o JOIN ventros.automations a ON a.id = o.aggregate_id
     WHERE o.event_type IN ('automation.triggered', 'automation.executed', 'automation.failed') AND o.payload->>'event_id' = ev::text
$$;
CREATE FUNCTION pg_temp.qualify(contact uuid, score integer) RETURNS uuid LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ventros.emit('contact.lead_qualified', 'contact', contact, jsonb_build_object('score', score));
    RETURN (SELECT event_id FROM ventros.outbox WHERE aggregate_id = contact AND event_type = 'contact.lead_qualified'
             ORDER BY seq DESC LIMIT 1);
END
$$;

-- 1. A batch of three events, one of which makes a rule fail: that event's
--    other rules act, the failing rule's actions roll back, and the events
--    before and after it in the batch are untouched.
INSERT INTO ids SELECT 'c' || i, ventros_test.new_contact() FROM generate_series(1, 3) i;
INSERT INTO ids SELECT 'tag', id FROM ventros.create_automation('Tag', 'contact.lead_qualified',
    '[{"type": "add_tag", "params": {"tag": "qualified"}}]', '[{"field": "score", "operator": "gte", "value": 5}]',
    automation_type => 'event');
INSERT INTO ids SELECT 'broken', id FROM ventros.create_automation('Broken', 'contact.lead_qualified',
    '[{"type": "add_tag", "params": {"tag": "half"}}, {"type": "create_task", "params": {}}]',
    '[{"field": "score", "operator": "eq", "value": 9}]', priority => 10, automation_type => 'event');
INSERT INTO ids SELECT 'skip', id FROM ventros.create_automation('Skip', 'contact.lead_qualified',
    '[{"type": "add_tag", "params": {"tag": "never"}}]', '[{"field": "score", "operator": "gte", "value": 100}]',
    priority => 5, automation_type => 'event');
INSERT INTO ids SELECT 'e1', pg_temp.qualify(pg_temp.id('c1'), 8);
INSERT INTO ids SELECT 'e2', pg_temp.qualify(pg_temp.id('c2'), 9);
INSERT INTO ids SELECT 'e3', pg_temp.qualify(pg_temp.id('c3'), 8);
SELECT is(pg_temp.run_once(), 3, 'one call takes the three events (three aggregates)');
SELECT is((SELECT array_agg(array_to_string(tags, ',') ORDER BY n) FROM (SELECT c.tags, i.name AS n FROM ventros.contacts c JOIN ids i ON i.id = c.id
            WHERE i.name IN ('c1', 'c2', 'c3')) x), '{qualified,qualified,qualified}',
          'every contact tagged; the failing rule''s first action rolled back');
SELECT is((SELECT outcome || ': ' || error FROM ventros.automation_runs WHERE automation_id = pg_temp.id('broken') AND event_id = pg_temp.id('e2')),
          'failed: 0A000: action "create_task" is not supported by the automation executor', 'the failing rule''s run: failed, with its reason');
SELECT is((SELECT array_agg(outcome || '=' || n ORDER BY outcome) FROM (SELECT outcome, count(*) AS n FROM ventros.automation_runs GROUP BY outcome) x),
          '{executed=3,failed=1,skipped=5}', 'one run per rule and event: 3 executed, 1 failed, 5 skipped by their conditions');
SELECT is(pg_temp.reports(pg_temp.id('e2')), '{Broken:triggered,Broken:failed,Tag:triggered,Tag:executed}',
          'the event whose rule failed (second, per-rule pass): its reports in priority order');
SELECT is(pg_temp.reports(pg_temp.id('e1')) || pg_temp.reports(pg_temp.id('e3')), '{Tag:triggered,Tag:executed,Tag:triggered,Tag:executed}',
          'the events around it (fast pass): the same shape');
SELECT is((SELECT array_agg(payload->>'tag') FROM ventros.outbox WHERE aggregate_id = pg_temp.id('c2') AND event_type = 'contact.tag_added'),
          '{qualified}', 'no event of the rolled-back action remains');
SELECT is((SELECT count(*)::int FROM ventros.outbox WHERE aggregate_id = pg_temp.id('c1') AND event_type = 'contact.tag_added'), 1,
          'the event before it, run again after the batch''s first pass rolled back, acted once');
SELECT is((SELECT count(*)::int FROM ventros.automation_queue), 0, 'the batch''s queue rows are gone');

-- 2. Order per aggregate: a call takes only the first queued event of each
--    aggregate; the next call the one after it.
SELECT count(ventros.set_automation_enabled(id, version, false)) FROM ventros.automations WHERE name IN ('Tag', 'Broken', 'Skip');
INSERT INTO ids SELECT 'step', id FROM ventros.create_automation('Step', 'custom.step',
    '[{"type": "notify_agents", "params": {"message": "step"}}]', automation_type => 'custom');
INSERT INTO ids SELECT 'other', id FROM ventros.create_automation('Other', 'custom.other',
    '[{"type": "notify_agents", "params": {"message": "other"}}]', automation_type => 'custom');
SELECT ventros.emit_custom_event('step', '{"n": 1}');
SELECT ventros.emit_custom_event('step', '{"n": 2}');
SELECT ventros.emit_custom_event('other', '{"n": 3}');
SELECT is(pg_temp.run_once(), 2, 'first call: the first event of each of the two aggregates');
SELECT is((SELECT array_agg((SELECT payload->>'n' FROM ventros.outbox o WHERE o.event_id = r.event_id) ORDER BY r.started_at)
             FROM ventros.automation_runs r WHERE r.automation_id IN (pg_temp.id('step'), pg_temp.id('other'))),
          '{1,3}', 'the second event of custom.step waits');
SELECT is(pg_temp.run_once(), 1, 'second call: the next one');
SELECT is((SELECT array_agg((SELECT payload->>'n' FROM ventros.outbox o WHERE o.event_id = r.event_id) ORDER BY r.started_at)
             FROM ventros.automation_runs r WHERE r.automation_id = pg_temp.id('step')),
          '{1,2}', 'the events of one aggregate run in their order');
SELECT is(pg_temp.run_once(), 0, 'then nothing');

-- 3. One context per event: every rule of an event sees the event as it was
--    before its first rule acted.
SELECT count(ventros.set_automation_enabled(id, version, false)) FROM ventros.automations WHERE name IN ('Step', 'Other');
INSERT INTO ids SELECT 'c4', ventros_test.new_contact();
INSERT INTO ids SELECT 'mark', id FROM ventros.create_automation('Mark', 'contact.lead_qualified',
    '[{"type": "add_tag", "params": {"tag": "seen"}}]', priority => 10, automation_type => 'event');
INSERT INTO ids SELECT 'seen', id FROM ventros.create_automation('Seen', 'contact.lead_qualified',
    '[{"type": "add_tag", "params": {"tag": "seen_before"}}]', '[{"tag": "seen"}]', automation_type => 'event');
INSERT INTO ids SELECT 'e4', pg_temp.qualify(pg_temp.id('c4'), 1);
SELECT is(pg_temp.run_once(), 1, 'executor');
SELECT is((SELECT array_agg(a.name || '=' || r.outcome ORDER BY a.priority DESC) FROM ventros.automation_runs r JOIN ventros.automations a ON a.id = r.automation_id
            WHERE r.event_id = pg_temp.id('e4')),
          '{Mark=executed,Seen=skipped}', 'the lower rule did not see the tag the higher one added for the same event');
INSERT INTO ids SELECT 'e5', pg_temp.qualify(pg_temp.id('c4'), 1);
SELECT is(pg_temp.run_once(), 1, 'executor');
SELECT is((SELECT tags FROM ventros.contacts WHERE id = pg_temp.id('c4')), '{seen,seen_before}'::text[], 'the next event sees it');

-- 4. An event queued again after a rule with stop_processing ran: nothing
--    runs twice, and the rules that rule stopped stay stopped.
SELECT ventros.update_automation(pg_temp.id('mark'), version, '{"stop_processing": true}') FROM ventros.automations WHERE id = pg_temp.id('mark');
INSERT INTO ids SELECT 'c5', ventros_test.new_contact();
INSERT INTO ids SELECT 'e6', pg_temp.qualify(pg_temp.id('c5'), 1);
SELECT is(pg_temp.run_once(), 1, 'executor');
RESET ROLE;
INSERT INTO ventros.automation_queue (tenant_id, seq, event_id, aggregate_id, origin_event_id)
SELECT tenant_id, seq, event_id, aggregate_id, event_id FROM ventros.outbox WHERE event_id = pg_temp.id('e6');
SET LOCAL ROLE ventros_admin;
SELECT is(pg_temp.run_once(), 1, 'the event queued again is taken');
SELECT is((SELECT array_agg(a.name || '=' || r.outcome) FROM ventros.automation_runs r JOIN ventros.automations a ON a.id = r.automation_id
            WHERE r.event_id = pg_temp.id('e6')),
          '{Mark=executed}', 'still one run, and the stopped rule did not run');

-- 5. The loop check between the events of one batch: a rule adds two notes
--    (two note.added events of two aggregates, one cascade); a rule on
--    note.added runs for the first and fails for the second, in one call.
SELECT count(ventros.set_automation_enabled(id, version, false)) FROM ventros.automations WHERE name IN ('Mark', 'Seen');
INSERT INTO ids SELECT 'fan', id FROM ventros.create_automation('Fan', 'contact.lead_qualified',
    '[{"type": "add_note", "params": {"content": "one"}}, {"type": "add_note", "params": {"content": "two"}}]',
    automation_type => 'event');
INSERT INTO ids SELECT 'catch', id FROM ventros.create_automation('Catch', 'note.added',
    '[{"type": "notify_agents", "params": {"message": "a note"}}]', automation_type => 'event');
INSERT INTO ids SELECT 'c6', ventros_test.new_contact();
INSERT INTO ids SELECT 'e7', pg_temp.qualify(pg_temp.id('c6'), 1);
SELECT is(pg_temp.run_once(), 1, 'the rule adds two notes');
SELECT is(pg_temp.run_once(), 2, 'one call takes both note.added events');
SELECT is((SELECT array_agg(outcome || '@' || depth || coalesce(': ' || left(error, 48), '') ORDER BY started_at)
             FROM ventros.automation_runs WHERE automation_id = pg_temp.id('catch')),
          ARRAY['executed@1', 'failed@1: loop: rule already ran for the originating event'],
          'the rule ran once for the originating event; the second is refused');


-- 6. An event queued again whose rule its conditions skipped: the skipped
--    runs are inserted plainly first, and again with ON CONFLICT when one is
--    there already (without that second try the whole call would fail).
SELECT count(ventros.set_automation_enabled(id, version, false)) FROM ventros.automations WHERE name IN ('Fan', 'Catch');
INSERT INTO ids SELECT 'never', id FROM ventros.create_automation('Never', 'contact.lead_qualified',
    '[{"type": "add_tag", "params": {"tag": "never"}}]', '[{"tag": "never"}]', automation_type => 'event');
INSERT INTO ids SELECT 'c7', ventros_test.new_contact();
INSERT INTO ids SELECT 'e8', pg_temp.qualify(pg_temp.id('c7'), 1);
SELECT is(pg_temp.run_once(), 1, 'executor');
RESET ROLE;
INSERT INTO ventros.automation_queue (tenant_id, seq, event_id, aggregate_id, origin_event_id)
SELECT tenant_id, seq, event_id, aggregate_id, event_id FROM ventros.outbox WHERE event_id = pg_temp.id('e8');
SET LOCAL ROLE ventros_admin;
SELECT is(pg_temp.run_once(), 1, 'the event queued again is taken');
SELECT is((SELECT array_agg(a.name || '=' || r.outcome) FROM ventros.automation_runs r JOIN ventros.automations a ON a.id = r.automation_id
            WHERE r.event_id = pg_temp.id('e8')),
          '{Never=skipped}', 'still one skipped run');

-- 7. A queued event no enabled rule wants (the writer queues on the fan-out
--    cache's word, which a concurrent change may have made stale): taken,
--    no run, nothing left queued.
RESET ROLE;
INSERT INTO ventros.automation_queue (tenant_id, seq, event_id, aggregate_id, origin_event_id)
SELECT tenant_id, seq, event_id, aggregate_id, event_id FROM ventros.outbox
 WHERE tenant_id = 't_exec' AND aggregate_id = pg_temp.id('c7') AND event_type = 'contact.created';
SET LOCAL ROLE ventros_admin;
SELECT is(pg_temp.run_once(), 1, 'the event is taken');
SELECT is((SELECT count(*)::int FROM ventros.automation_runs r JOIN ventros.outbox o ON o.event_id = r.event_id
            WHERE o.aggregate_id = pg_temp.id('c7') AND o.event_type = 'contact.created'), 0, 'no rule ran for it');
SELECT is((SELECT count(*)::int FROM ventros.automation_queue), 0, 'nothing left queued');

SELECT * FROM finish();
ROLLBACK;
