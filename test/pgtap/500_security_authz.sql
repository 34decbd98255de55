-- Tenant users and admins (docs/security.md): what a login of a tenant cannot
-- do.  Each block is one hole of issue 12 and failed before its fix:
--   3. a suspended user gets no token, whichever path issues it;
--   7. claims (actor, role) are read only in trusted sessions, and a bound
--      login stays untrusted even when it also holds a trusted role;
--   8. scheduler and maintenance functions are not executable by tenant roles
--      (a walk over the catalog, so a new one cannot slip in);
--   6. agents cannot forge events of aggregates they cannot change; custom
--      events have a namespace of their own.
BEGIN;
SELECT plan(46);

-- ---- 3. one status check for every token ---------------------------------
CREATE TEMP TABLE g3 AS SELECT * FROM api.register('sus@example.com', 'correct horse', 'Sus');
CREATE TEMP TABLE k3 AS SELECT ventros.random_token('vnk_') AS key;
INSERT INTO ventros.user_api_keys (tenant_id, user_id, name, key_hash, key_prefix)
SELECT u.tenant_id, u.id, 'k', ventros.token_hash((SELECT key FROM k3)), 'vnk_'
FROM ventros.users u WHERE u.email = 'sus@example.com';
SELECT ok((SELECT ventros.api_key_claims((SELECT key FROM k3))->>'sub') IS NOT NULL, 'an active user''s API key gives claims');
UPDATE ventros.users SET status = 'suspended', version = version WHERE email = 'sus@example.com';

SELECT throws_ok($$SELECT api.register('sus@example.com', 'correct horse', 'Sus')$$, '28000', 'user account is not active',
                 'a suspended user gets no token through register''s "already registered" answer');
SELECT throws_ok($$SELECT api.login('sus@example.com', 'correct horse')$$, '28000', 'user account is not active',
                 'nor through login');
SELECT throws_ok($$SELECT api.login('sus@example.com', 'wrong horse')$$, '28P01', NULL,
                 'a wrong password is still a wrong password');
SELECT throws_ok(format('SELECT api.refresh(%L)', (SELECT refresh_token FROM g3)), '28000', NULL,
                 'nor through refresh');
SELECT throws_ok(format('SELECT ventros.api_key_claims(%L)', (SELECT key FROM k3)), '28000', NULL,
                 'nor through an API key');
UPDATE ventros.users SET status = 'inactive', version = version WHERE email = 'sus@example.com';
SELECT throws_ok($$SELECT api.register('sus@example.com', 'correct horse', 'Sus')$$, '28000', NULL,
                 'an inactive user neither');
SELECT is((SELECT count(*)::int FROM ventros.user_refresh_tokens t JOIN ventros.users u ON u.id = t.user_id
           WHERE u.email = 'sus@example.com'), 1, 'no refresh token was issued to the suspended user');
UPDATE ventros.users SET status = 'active', version = version WHERE email = 'sus@example.com';
SELECT is((SELECT claims->>'sub' FROM api.register('sus@example.com', 'correct horse', 'Sus')),
          (SELECT claims->>'sub' FROM g3), 'once active again, register answers as a login');
-- the one place: every function that issues a grant or key claims goes through user_claims
SELECT is(array(SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE n.nspname IN ('api', 'ventros') AND p.prosrc ~ '''sub'''
                  AND p.proname <> 'user_claims' ORDER BY 1),
          '{}'::text[], 'only ventros.user_claims builds a token''s subject');
SELECT ok((SELECT bool_and(p.prosrc ~ 'ventros\.user_claims\(') FROM pg_proc p
           WHERE p.oid IN ('ventros.issue_grant(ventros.users, uuid)'::regprocedure, 'ventros.api_key_claims(text)'::regprocedure)),
          'grants and API keys take their claims from ventros.user_claims');

-- ---- 7. claims are read only in trusted sessions --------------------------
SELECT ventros.create_tenant(t, t) FROM unnest(ARRAY['authz_a', 'authz_b']) t;
SELECT ventros.bind_login('authz_bound', 'authz_a', 'ventros_admin');
SET LOCAL ventros.tenant = 'authz_a';
CREATE TEMP TABLE m7 AS SELECT * FROM ventros.invite_project_member('authz_bound', 'admin');
SELECT ventros.invite_project_member('authz_other', 'admin');
RESET ventros.tenant;
GRANT SELECT ON m7 TO PUBLIC;
CREATE TEMP TABLE r7 AS SELECT ventros_test.run_as_login('authz_bound', 'authz_a', ARRAY[
    $$SELECT set_config('request.jwt.claims', '{"sub": "ceo", "role": "ventros_platform_admin"}', false)$$,
    $$SELECT ventros.actor()$$,
    $$SELECT ventros.caller_role()$$,
    $$SELECT (ventros.create_contact('Forged by a claim')).id$$,
    format($$SELECT ventros.change_project_member_role(%L, %s, 'viewer')$$, (SELECT id FROM m7), (SELECT version FROM m7)),
    $$SELECT ventros.session_is_trusted()$$
]) AS r;
SELECT is((SELECT r[2] FROM r7), 'authz_bound', 'a bound login''s sub claim does not choose the actor');
SELECT is((SELECT r[3] FROM r7), 'authz_bound', 'nor does its role claim choose the caller''s role');
SELECT is((SELECT actor FROM ventros.outbox WHERE aggregate_id = (SELECT r[4]::uuid FROM r7) LIMIT 1), 'authz_bound',
          'its events are recorded with the login as the actor');
SELECT matches((SELECT r[5] FROM r7), '^ERROR 42501: members cannot change their own role',
               'a claim does not let a member change its own role');
SELECT is((SELECT r[6] FROM r7), 'false', 'a bound login is not trusted');

-- a bound login that is also a member of the trusted roles stays untrusted
GRANT ventros_authenticator, ventros_platform_admin TO authz_bound;
CREATE TEMP TABLE r7b AS SELECT ventros_test.run_as_login('authz_bound', 'authz_a', ARRAY[
    $$SELECT ventros.session_is_trusted()$$,
    $$SELECT set_config('ventros.tenant', 'authz_b', true)$$,
    $$SELECT set_config('request.jwt.claims', '{"sub": "ceo", "tenant_id": "authz_a"}', true) IS NOT NULL$$,
    $$SELECT ventros.actor()$$,
    $$SELECT set_config('request.jwt.claims', '{"tenant_id": "authz_b"}', true) IS NOT NULL$$,
    $$SELECT ventros.current_tenant()$$
]) AS r;
SELECT is((SELECT r[1] FROM r7b), 'false', 'a bound member of ventros_authenticator/ventros_platform_admin is not trusted');
SELECT matches((SELECT r[2] FROM r7b), '^ERROR 42501: permission denied to choose the acting tenant',
               'it cannot choose another tenant');
SELECT is((SELECT r[4] FROM r7b), 'authz_bound', 'nor choose the actor by a claim');
SELECT matches((SELECT r[6] FROM r7b), '^ERROR 42501: .*cannot act for tenant "authz_b"',
               'nor the tenant by a claim');
REVOKE ventros_authenticator, ventros_platform_admin FROM authz_bound;
SELECT is(ventros.actor(), session_user::text, 'a trusted session without claims acts as its login');
SELECT set_config('request.jwt.claims', '{"sub": "front-user"}', true);
SELECT is(ventros.actor(), 'front-user', 'a trusted session (the front''s) names the actor by its claim');
SELECT set_config('request.jwt.claims', '', true);

-- ---- 8. scheduler and maintenance functions: not for tenant roles ---------
-- Every function named like the scheduler's work, walked from the catalog so
-- that a new one cannot slip in.  Two tenant commands share the schedule_
-- prefix (they schedule one thing of the caller's own; `now` is not theirs
-- to choose): they are named here.
CREATE TEMP TABLE sched8 AS
SELECT p.oid::regprocedure AS fn FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'ventros'
  AND (p.proname ~ '^(tick|prune|fold|schedule|unschedule|run|purge|compact)_' OR p.proname ~ 'maintenance'
       OR p.proname IN ('expire_credentials', 'disable_failing_webhook_subscriptions'))
  AND p.oid NOT IN ('ventros.schedule_broadcast(uuid, integer, timestamptz)'::regprocedure,
                    'ventros.schedule_subscription_cancellation(uuid, integer)'::regprocedure);
SELECT cmp_ok((SELECT count(*)::int FROM sched8), '>=', 14, 'the walk finds the scheduler''s functions');
SELECT is(array(SELECT s.fn::text || ' by ' || r FROM sched8 s,
                unnest(ARRAY['ventros_viewer', 'ventros_agent', 'ventros_admin', 'ventros_anon']) r
                WHERE has_function_privilege(r, s.fn, 'EXECUTE') ORDER BY 1),
          '{}'::text[], 'no tenant role may execute a scheduler or maintenance function');
SELECT is(array(SELECT s.fn::text FROM sched8 s
                WHERE (s.fn::text ~ '^ventros\.(tick|fold)_') AND NOT has_function_privilege('ventros_platform_admin', s.fn, 'EXECUTE')
                ORDER BY 1),
          '{}'::text[], 'platform administrators (the scheduler) run every tick');
SET LOCAL ventros.tenant = 'authz_a';
SET LOCAL ROLE ventros_agent;
SELECT throws_ok($$SELECT ventros.tick_sessions('2999-01-01')$$, '42501', NULL,
                 'an agent cannot end every conversation of its tenant with a tick from the future');
SELECT throws_ok($$SELECT ventros.fold_channel_message_counts()$$, '42501', NULL, 'nor fold the message counts');
SET LOCAL ROLE ventros_admin;
SELECT throws_ok($$SELECT ventros.tick_broadcasts('2999-01-01')$$, '42501', NULL, 'nor can an admin run the scheduler');
SET LOCAL ROLE ventros_platform_admin;
SELECT lives_ok($$SELECT ventros.tick_sessions('2999-01-01')$$, 'a platform administrator can');
RESET ROLE;
RESET ventros.tenant;

-- ---- 6. events: only from those who may change the aggregate ------------
SET LOCAL ventros.tenant = 'authz_a';
CREATE TEMP TABLE ch6 AS SELECT ventros_test.new_channel('waha') AS id;
GRANT SELECT ON ch6 TO PUBLIC;
SELECT is(has_table_privilege('ventros_agent', 'ventros.invoices', 'UPDATE'), false, 'agents may not change invoices');
SET LOCAL ROLE ventros_agent;
SELECT throws_ok($$SELECT ventros.emit('invoice.paid', 'invoice', gen_random_uuid(), '{"amount_paid": 999999}')$$,
                 '42501', 'permission denied to emit event "invoice.paid"',
                 'an agent cannot forge invoice.paid');
SELECT lives_ok($$SELECT ventros.emit('contact.merged', 'contact', gen_random_uuid(), '{"merged_ids": []}')$$,
                'an agent may emit an event of an aggregate it may change');
SELECT lives_ok($$SELECT ventros.upsert_channel_label((SELECT id FROM ch6), 'l1', 'Hot')$$,
                'commands that emit for the agent keep working (channel.label_upserted)');
SET LOCAL ROLE ventros_viewer;
SELECT throws_ok($$SELECT ventros.emit('contact.merged', 'contact', gen_random_uuid(), '{}')$$, '42501', NULL,
                 'a viewer emits nothing');
SELECT throws_ok($$SELECT ventros.emit_custom_event('order.shipped', '{}')$$, '42501', NULL,
                 'a viewer emits no custom event either');
RESET ROLE;
-- the engine's path is unchanged: an invoice paid by someone who may pay it
SELECT is(array(SELECT e.r || ' emits ' || f.oid::regprocedure::text || ' on ' || a.table_name::text
                FROM pg_proc f
                CROSS JOIN LATERAL (SELECT DISTINCT m[1] AS agg FROM regexp_matches(f.prosrc, 'ventros\.emit\(\s*''([a-z_]+)\.', 'g') m) x
                JOIN ventros.aggregates a ON a.aggregate = x.agg
                CROSS JOIN unnest(ARRAY['ventros_viewer', 'ventros_agent', 'ventros_admin']) e(r)
                WHERE NOT f.prosecdef AND has_function_privilege(e.r, f.oid, 'EXECUTE')
                  AND NOT has_table_privilege(e.r, a.table_name, 'UPDATE') ORDER BY 1),
          '{}'::text[], 'every command a tenant role may run emits only for aggregates that role may change');

-- custom events: a namespace of their own
SELECT ventros.create_webhook_subscription('custom', 'https://hooks.example.com/custom', ARRAY['custom.*']);
SET LOCAL ROLE ventros_agent;
SELECT is(ventros.emit_custom_event('order.shipped', '{"order": 42}'), 'custom.order.shipped',
          'an agent emits a custom event, typed custom.<name>');
SELECT is(ventros.emit_custom_event('order.shipped', '{"order": 43}'), 'custom.order.shipped', 'twice');
SELECT throws_ok($$SELECT ventros.emit_custom_event('Invoice.Paid', '{}')$$, '22023', NULL, 'names are lowercase words');
SELECT throws_ok($$SELECT ventros.emit_custom_event('order..shipped', '{}')$$, '22023', NULL, 'joined by single dots');
SELECT throws_ok($$SELECT ventros.emit_custom_event(repeat('a', 101), '{}')$$, '22023', NULL, 'of at most 100 characters');
SELECT throws_ok($$SELECT ventros.emit_custom_event('order.shipped', '[1]')$$, '22023', NULL, 'with an object payload');
RESET ROLE;
SELECT is((SELECT array_agg(DISTINCT o.aggregate_type || ' ' || (ventros.envelope(o)->>'source') || ' ' || o.actor)
           FROM ventros.outbox o WHERE o.tenant_id = 'authz_a' AND o.event_type = 'custom.order.shipped'),
          ARRAY['custom /ventros/authz_a/custom ' || session_user],
          'a custom event is of aggregate custom, its source says so, and it names who emitted it');
SELECT is((SELECT count(DISTINCT o.aggregate_id)::int FROM ventros.outbox o WHERE o.event_type = 'custom.order.shipped'), 1,
          'the events of one custom name are one stream (published in order)');
SELECT is((SELECT array_agg(d.event_type ORDER BY o.seq) FROM ventros.webhook_deliveries d
           JOIN ventros.outbox o ON o.event_id = d.event_id
           JOIN ventros.webhook_subscriptions w ON w.id = d.subscription_id WHERE w.name = 'custom'),
          ARRAY['custom.order.shipped', 'custom.order.shipped'], 'a custom.* subscription gets them, with their distinct type');
SELECT throws_ok($$INSERT INTO ventros.event_types VALUES ('custom.happened', 'custom')$$, '23514', NULL,
                 'no registered event type may take the custom namespace');
RESET ventros.tenant;

SELECT * FROM finish();
ROLLBACK;
