-- Event types only the platform says (docs/security.md, "Reserved event
-- types"): the executor's reports on rules that agents may edit, and a
-- billing account's payment state that tenant admins, who may rename the
-- account, may not announce.  ventros.emit of a reserved type needs the
-- role of ventros.event_types.emitted_by.
BEGIN;
SELECT plan(13);
SELECT ventros.create_tenant('t_reserved', 'Reserved');
SET LOCAL ventros.tenant = 't_reserved';
CREATE TEMP TABLE ids (name text PRIMARY KEY, id uuid);
GRANT ALL ON ids TO PUBLIC;
CREATE FUNCTION pg_temp.id(n text) RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM ids WHERE name = n $$;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA pg_temp TO PUBLIC;
INSERT INTO ids SELECT 'rule', id FROM ventros.create_automation('Tag', 'contact.created', '[{"type": "add_tag", "params": {"tag": "x"}}]',
                                                               automation_type => 'event');
INSERT INTO ids VALUES ('account', gen_random_uuid()); -- the check comes before any row is looked at

SELECT is(array(SELECT event_type || ' by ' || emitted_by FROM ventros.event_types WHERE emitted_by IS NOT NULL ORDER BY 1),
          ARRAY['automation.agents_notified by ventros_platform_admin', 'automation.executed by ventros_platform_admin',
                'automation.failed by ventros_platform_admin', 'automation.time_reached by ventros_platform_admin',
                'automation.triggered by ventros_platform_admin', 'billing_account.canceled by ventros_platform_admin',
                'billing_account.payment_activated by ventros_platform_admin', 'billing_account.reactivated by ventros_platform_admin',
                'billing_account.stripe_customer_linked by ventros_platform_admin', 'billing_account.suspended by ventros_platform_admin'],
          'the reserved event types');

-- ---- the executor's reports
SELECT is(has_table_privilege('ventros_agent', 'ventros.automations', 'UPDATE'), true, 'agents may change rules');
SELECT is(array(SELECT t || ': ' || ventros_test.run_as('ventros_agent', 't_reserved',
                         format($$SELECT ventros.emit(%L, 'automation', %L, '{"actions": "forged"}')$$, t, pg_temp.id('rule')))
                  FROM unnest(ARRAY['automation.triggered', 'automation.executed', 'automation.failed',
                                    'automation.time_reached', 'automation.agents_notified']) t),
          array(SELECT t || ': ERROR 42501: permission denied to emit event "' || t || '"'
                  FROM unnest(ARRAY['automation.triggered', 'automation.executed', 'automation.failed',
                                    'automation.time_reached', 'automation.agents_notified']) t),
          'an agent reports no run of a rule, though it may edit the rule');
SELECT alike(ventros_test.run_as('ventros_admin', 't_reserved',
                  format($$SELECT ventros.emit('automation.executed', 'automation', %L, '{}')$$, pg_temp.id('rule'))),
             'ERROR 42501:%', 'nor does an administrator');
SELECT is(ventros_test.run_as('ventros_agent', 't_reserved',
              format($$SELECT ventros.emit('automation.updated', 'automation', %L, '{}')$$, pg_temp.id('rule'))),
          '', 'the rule''s other events stay the agent''s to emit');
SELECT is((SELECT count(*)::integer FROM ventros.outbox WHERE aggregate_id = pg_temp.id('rule') AND event_type <> ALL ('{automation.created,automation.updated}')),
          0, 'nothing reported');
SELECT ventros_test.new_contact();
SELECT ok(ventros_test.run_automations() >= 1, 'the executor runs the rule');
SELECT is((SELECT array_agg(event_type ORDER BY seq) FROM ventros.outbox WHERE aggregate_id = pg_temp.id('rule') AND event_type LIKE 'automation.%ed'
              AND event_type <> ALL ('{automation.created,automation.updated}')),
          '{automation.triggered,automation.executed}', 'and reports it');

-- ---- a billing account's payment state
SELECT is(has_table_privilege('ventros_admin', 'ventros.billing_accounts', 'UPDATE'), true, 'tenant admins may rename the account');
SELECT is(array(SELECT t || ': ' || ventros_test.run_as('ventros_admin', 't_reserved',
                         format($$SELECT ventros.emit(%L, 'billing_account', %L, '{}')$$, t, pg_temp.id('account')))
                  FROM unnest(ARRAY['billing_account.payment_activated', 'billing_account.reactivated',
                                    'billing_account.stripe_customer_linked']) t),
          array(SELECT t || ': ERROR 42501: permission denied to emit event "' || t || '"'
                  FROM unnest(ARRAY['billing_account.payment_activated', 'billing_account.reactivated',
                                    'billing_account.stripe_customer_linked']) t),
          'a tenant admin announces no payment state of its account');

-- ---- the declaration
SELECT throws_ok($$SELECT ventros.reserve_event_type('contact.nothing_like_it', 'ventros_platform_admin')$$, '22023', NULL,
                 'an unknown type: 22023');
SELECT throws_ok($$SELECT ventros.reserve_event_type('contact.merged', 'no_such_role')$$, '42704', NULL,
                 'an unknown role: 42704');
-- no command a tenant role may run (invoker rights) emits a type reserved to
-- a role it does not have: the command would fail for it
SELECT is(array(SELECT DISTINCT e.r || ' runs ' || f.oid::regprocedure::text || ', which emits ' || t.event_type
                FROM pg_proc f
                CROSS JOIN LATERAL (SELECT m[1] AS lit, m[2] AS prefix
                                      FROM regexp_matches(f.prosrc, 'ventros\.emit\(\s*''([a-z_]+\.[a-z_.]+)''|ventros\.emit\(\s*''([a-z_]+)\.''\s*\|\|', 'g') m) x
                JOIN ventros.event_types t ON t.emitted_by IS NOT NULL
                                          AND (t.event_type = x.lit OR t.aggregate = x.prefix)
                CROSS JOIN unnest(ARRAY['ventros_viewer', 'ventros_agent', 'ventros_admin']) e(r)
                WHERE f.pronamespace = 'ventros'::regnamespace AND NOT f.prosecdef
                  AND has_function_privilege(e.r, f.oid, 'EXECUTE') AND NOT pg_has_role(e.r, t.emitted_by, 'USAGE')
                ORDER BY 1),
          '{}'::text[], 'every command a tenant role may run emits only types it may');

SELECT * FROM finish();
ROLLBACK;
