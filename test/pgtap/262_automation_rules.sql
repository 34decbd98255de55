-- Automation rules that run: the executor, conditions, actions, loops, time triggers.
BEGIN;
SELECT plan(10);
SELECT ventros.create_tenant('t_rules', 'Rules');
SET LOCAL ventros.tenant = 't_rules';
SET LOCAL ROLE ventros_admin;
CREATE TEMP TABLE ids (name text PRIMARY KEY, id uuid);
GRANT ALL ON ids TO PUBLIC;
CREATE FUNCTION pg_temp.id(n text) RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM ids WHERE name = n $$;
CREATE FUNCTION pg_temp.run() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE n integer; total integer := 0;
BEGIN
    SET LOCAL ROLE ventros_platform_admin;
    LOOP
        n := ventros.run_automations(100, now());
        total := total + n;
        EXIT WHEN n = 0;
    END LOOP;
    SET LOCAL ROLE ventros_admin;
    RETURN total;
END $$;
INSERT INTO ids SELECT 'ch', ventros_test.new_channel();
INSERT INTO ids SELECT 'price', id FROM ventros.create_automation('Price question', 'message.received',
    '[{"type": "add_tag", "params": {"tag": "lead"}}, {"type": "send_message", "params": {"text": "Hi {{contact.name}}, our prices: ..."}}]',
    '[{"keyword": ["price", "cost"]}]', automation_type => 'event');
INSERT INTO ids SELECT 'm1', id FROM ventros.receive_message(pg_temp.id('ch'), '+5511900000001', 'What is the PRICE?', sender_name => 'Ana');
INSERT INTO ids SELECT 'ana', contact_id FROM ventros.messages WHERE id = pg_temp.id('m1');
SELECT is((SELECT count(*)::int FROM ventros.automation_queue), 1, 'the inbound message is queued for the executor');
SELECT is((SELECT tags FROM ventros.contacts WHERE id = pg_temp.id('ana')), '{}'::text[], 'nothing runs in the writer''s transaction');
SELECT ok(pg_temp.run() >= 1, 'the executor takes it');
SELECT is((SELECT outcome FROM ventros.automation_runs WHERE automation_id = pg_temp.id('price')), 'executed', 'run executed');
SELECT is((SELECT tags FROM ventros.contacts WHERE id = pg_temp.id('ana')), '{lead}'::text[], 'the rule tagged the contact');
SELECT is((SELECT text FROM ventros.messages WHERE contact_id = pg_temp.id('ana') AND from_me), 'Hi Ana, our prices: ...', 'the rule replied');
SELECT is((SELECT array_agg(event_type ORDER BY seq) FROM ventros.outbox WHERE aggregate_id = pg_temp.id('price') AND event_type LIKE 'automation.%ed'),
          '{automation.created,automation.triggered,automation.executed}', 'automation.triggered and .executed');
SELECT is((SELECT count(*)::int FROM ventros.automation_queue), 0, 'queue drained');
INSERT INTO ids SELECT 'm2', id FROM ventros.receive_message(pg_temp.id('ch'), '+5511900000002', 'hello there');
SELECT ok(pg_temp.run() >= 1, 'executor');
SELECT is((SELECT outcome FROM ventros.automation_runs r JOIN ventros.outbox o ON o.event_id = r.event_id WHERE o.aggregate_id = pg_temp.id('m2')),
          'skipped', 'no keyword: skipped by condition');
SELECT * FROM finish();
ROLLBACK;
