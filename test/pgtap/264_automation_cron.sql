-- Cron schedules of automation rules: the syntax (pg_cron's five fields),
-- refused expressions, and ticks at chosen instants in the tenant's
-- timezone: boundary +/- 1 s, late and repeated ticks, both DST changes.
BEGIN;
SELECT plan(51);
SELECT ventros.create_tenant('t_cron', 'Cron');
SET LOCAL ventros.tenant = 't_cron';
SET LOCAL ROLE ventros_admin;
SET LOCAL TimeZone = 'UTC';
CREATE TEMP TABLE ids (name text PRIMARY KEY, id uuid);
GRANT ALL ON ids TO PUBLIC;
CREATE FUNCTION pg_temp.id(n text) RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM ids WHERE name = n $$;
-- a cron rule (the others of the tenant disabled, so a tick's count is its own)
CREATE FUNCTION pg_temp.cron_rule(n text, expression text) RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT id, version FROM ventros.automations WHERE enabled LOOP
        PERFORM ventros.set_automation_enabled(r.id, r.version, false);
    END LOOP;
    INSERT INTO ids SELECT n, id FROM ventros.create_automation(n, 'scheduled', '[{"type": "emit_event", "params": {"name": "cron_fired"}}]',
        automation_type => 'scheduled', schedule => jsonb_build_object('type', 'cron', 'expression', expression));
    RETURN pg_temp.id(n);
END
$$;
CREATE FUNCTION pg_temp.tick(at timestamptz) RETURNS integer LANGUAGE sql AS $$
    SELECT ventros_test.run_as('ventros_platform_admin', 't_cron', format('SELECT ventros.tick_automation_rules(%L)', at))::integer
$$;
CREATE FUNCTION pg_temp.next(n text) RETURNS timestamptz LANGUAGE sql AS $$
    SELECT next_execution FROM ventros.automations WHERE id = pg_temp.id(n)
$$;
CREATE FUNCTION pg_temp.fired(n text) RETURNS text[] LANGUAGE sql AS $$
    SELECT coalesce(array_agg(fire_key ORDER BY fire_key), '{}') FROM ventros.automation_timers WHERE automation_id = pg_temp.id(n)
$$;

-- the syntax
SELECT is(ventros.cron_parse('*/15 9-17 * * MON-FRI')->'minute', '[0, 15, 30, 45]', 'a step over *');
SELECT is(ventros.cron_parse('*/15 9-17 * * MON-FRI')->'hour', '[9, 10, 11, 12, 13, 14, 15, 16, 17]', 'a range');
SELECT is(ventros.cron_parse('*/15 9-17 * * MON-FRI')->'dow', '[1, 2, 3, 4, 5]', 'weekday names, any case');
SELECT is(ventros.cron_parse('0,30 1-9/4 1,15 jan-mar,dec 0,7')->'hour', '[1, 5, 9]', 'a step over a range');
SELECT is(ventros.cron_parse('0,30 1-9/4 1,15 jan-mar,dec 0,7')->'month', '[1, 2, 3, 12]', 'month names in a list');
SELECT is(ventros.cron_parse('0,30 1-9/4 1,15 jan-mar,dec 0,7')->'dow', '[0]', 'weekday 7 is Sunday');
SELECT is(ventros.cron_parse('@hourly'), ventros.cron_parse('0 * * * *'), '@hourly');
SELECT is(ventros.cron_parse('@weekly'), ventros.cron_parse('0 0 * * sun'), '@weekly');
SELECT ok(ventros.cron_matches(ventros.cron_parse('0 9 1 * mon'), '2026-12-14 09:00') AND ventros.cron_matches(ventros.cron_parse('0 9 1 * mon'), '2027-01-01 09:00')
          AND NOT ventros.cron_matches(ventros.cron_parse('0 9 1 * mon'), '2026-12-15 09:00'), 'both day fields restricted: either matches');
SELECT ok(NOT ventros.cron_matches(ventros.cron_parse('0 9 1 * */2'), '2026-12-14 09:00'), 'a day field starting with *: both must match');

-- refused at create: 22023 saying what is wrong
SELECT throws_ok($$SELECT pg_temp.cron_rule('bad', '* * * *')$$, '22023', 'invalid cron expression "* * * *"', 'four fields');
SELECT throws_ok($$SELECT pg_temp.cron_rule('bad', '60 * * * *')$$, '22023', 'invalid minute field "60" in cron expression', 'out of range');
SELECT throws_ok($$SELECT pg_temp.cron_rule('bad', '5/15 * * * *')$$, '22023', 'invalid minute field "5/15" in cron expression', 'a step after a single number');
SELECT throws_ok($$SELECT pg_temp.cron_rule('bad', '0 9 * * fri-mon')$$, '22023', 'invalid day-of-week field "fri-mon" in cron expression', 'a downward range');
SELECT throws_ok($$SELECT pg_temp.cron_rule('bad', '*/0 * * * *')$$, '22023', NULL, 'a step of 0');
SELECT throws_ok($$SELECT pg_temp.cron_rule('bad', '@reboot')$$, '22023', NULL, '@reboot');
SELECT throws_ok($$SELECT pg_temp.cron_rule('bad', '0 0 30 feb *')$$, '22023', 'cron expression "0 0 30 feb *" never matches', 'a day no month has');
SELECT throws_ok($$SELECT ventros.create_automation('bad', 'scheduled', '[]', automation_type => 'scheduled', schedule => '{"type": "cron"}')$$,
                 '22023', NULL, 'no expression');
SELECT pg_temp.cron_rule('weekdays', '0 9 * * MON-FRI');
SELECT throws_ok($$SELECT ventros.update_automation(pg_temp.id('weekdays'), 1, '{"schedule": {"type": "cron", "expression": "0 25 * * *"}}')$$,
                 '23514', NULL, 'nor by an update');

-- boundary +/- 1 s, repeated and late ticks, in the tenant's timezone (New York: EST -5, EDT -4 from 2026-03-08)
SELECT ventros_test.run_as('ventros_admin', 't_cron', $$SELECT ventros.set_automation_settings(timezone => 'America/New_York')$$);
SELECT is(pg_temp.tick('2026-03-06 13:00:00+00'), 0, 'the first tick arms the schedule');
SELECT is(pg_temp.next('weekdays'), '2026-03-06 14:00:00+00'::timestamptz, 'next: Friday 09:00 EST');
SELECT is(pg_temp.tick('2026-03-06 13:59:59+00'), 0, '1 s before: nothing');
SELECT is(pg_temp.tick('2026-03-06 14:00:00+00'), 1, 'at 09:00: fired');
SELECT is(pg_temp.tick('2026-03-06 14:00:01+00'), 0, '1 s after: not again');
SELECT is(pg_temp.tick('2026-03-06 14:00:00+00'), 0, 'the same tick repeated: not again');
SELECT is(pg_temp.fired('weekdays'), '{cron:2026-03-06T14:00Z}', 'once for the minute, keyed by it');
SELECT is(pg_temp.next('weekdays'), '2026-03-09 13:00:00+00'::timestamptz, 'next: Monday 09:00, EDT (after the weekend and the change)');
SELECT is(pg_temp.tick('2026-03-09 13:20:00+00'), 1, 'a tick 20 minutes late still fires Monday 09:00');
SELECT is(pg_temp.fired('weekdays'), '{cron:2026-03-09T13:00Z}', 'keyed by its minute (Friday''s key, older than two hours, pruned)');
SELECT ok(ventros_test.run_automations() >= 2, 'executor');
SELECT is((SELECT count(*)::integer FROM ventros.automation_runs WHERE automation_id = pg_temp.id('weekdays') AND outcome = 'executed'), 2,
          'the rule ran once per firing');
SELECT is((SELECT count(*)::integer FROM ventros.outbox WHERE event_type = 'custom.cron_fired'), 2, 'its action twice');

-- a new schedule is armed again: the old next_execution means nothing
SELECT ventros_test.run_as('ventros_admin', 't_cron', format($$SELECT ventros.update_automation(%L, %s, '{"schedule": {"type": "cron", "expression": "30 9 * * *"}}')$$,
                                                             pg_temp.id('weekdays'), (SELECT version FROM ventros.automations WHERE id = pg_temp.id('weekdays'))));
SELECT is(pg_temp.next('weekdays'), NULL, 'a schedule changed: next_execution cleared');
SELECT is(pg_temp.tick('2026-03-09 13:25:00+00'), 0, 'the next tick arms it');
SELECT is(pg_temp.next('weekdays'), '2026-03-09 13:30:00+00'::timestamptz, 'next: 09:30 today');

-- a late tick fires every minute it missed, but not more than an hour back
SELECT pg_temp.cron_rule('every5', '*/5 * * * *');
SELECT is(pg_temp.tick('2026-03-10 10:00:30+00'), 0, 'armed');
SELECT is(pg_temp.tick('2026-03-10 10:17:00+00'), 3, '17 minutes later: 10:05, 10:10 and 10:15 fire');
SELECT is(pg_temp.tick('2026-03-10 10:17:59+00'), 0, 'nothing more in the same minute');
SELECT is(pg_temp.tick('2026-03-10 13:00:00+00'), 13, 'three hours later: the last hour only (12:00 to 13:00, 13 minutes)');
SELECT is((SELECT min(fire_key) || ' ' || count(*) FROM ventros.automation_timers WHERE automation_id = pg_temp.id('every5')),
          'cron:2026-03-10T12:00Z 13', 'the keys no tick reaches any more (older than two hours) are pruned');

-- clocks go forward (2026-03-08 02:00 EST -> 03:00 EDT): a fixed 02:30 fires right after the gap; */30 has nothing to catch up
SELECT pg_temp.cron_rule('gap', '30 2 * * *');
SELECT pg_temp.tick('2026-03-08 06:00:00+00');
SELECT is(pg_temp.next('gap'), '2026-03-08 07:00:00+00'::timestamptz, 'the skipped 02:30 is due at 03:00 EDT');
SELECT is(pg_temp.tick('2026-03-08 06:59:59+00'), 0, '1 s before the change: nothing');
SELECT is(pg_temp.tick('2026-03-08 07:00:00+00'), 1, 'at the change: fired');
SELECT is(pg_temp.tick('2026-03-08 07:30:00+00'), 0, 'not again at 03:30 EDT');
SELECT is(pg_temp.next('gap'), '2026-03-09 06:30:00+00'::timestamptz, 'next: 02:30 EDT');

-- clocks go back (2026-11-01 02:00 EDT -> 01:00 EST): a fixed 01:30 fires once, */30 in both 01:xx hours
SELECT pg_temp.cron_rule('repeat', '30 1 * * *');
SELECT pg_temp.tick('2026-11-01 04:00:00+00');
SELECT is(pg_temp.next('repeat'), '2026-11-01 05:30:00+00'::timestamptz, '01:30 EDT');
SELECT is(pg_temp.tick('2026-11-01 05:30:00+00'), 1, 'fired at 01:30 EDT');
SELECT is(pg_temp.tick('2026-11-01 06:30:00+00'), 0, 'not at 01:30 EST');
SELECT is(pg_temp.next('repeat'), '2026-11-02 06:30:00+00'::timestamptz, 'next: 01:30 EST the day after');
SELECT pg_temp.cron_rule('half', '*/30 * * * *');
SELECT pg_temp.tick('2026-11-01 05:10:00+00');
SELECT is(pg_temp.tick('2026-11-01 05:30:00+00'), 1, '*/30: 01:30 EDT');
SELECT is(pg_temp.tick('2026-11-01 06:30:00+00'), 2, '*/30: then 01:00 and 01:30 EST (real time)');

SELECT * FROM finish();
ROLLBACK;
