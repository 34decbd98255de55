-- Sagas, credentials, project members, webhook subscriptions, processed events.
BEGIN;
SELECT plan(49);
SELECT ventros.create_tenant('t_core', 'Core');
SELECT ventros.create_tenant('t_core2', 'Core 2');
SET LOCAL ventros.tenant = 't_core';
SET LOCAL ROLE ventros_admin;
CREATE TEMP TABLE ids (name text PRIMARY KEY, id uuid);
CREATE FUNCTION pg_temp.id(n text) RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM ids WHERE name = n $$;
CREATE FUNCTION pg_temp.events(agg uuid) RETURNS text[] LANGUAGE sql AS
    $$ SELECT array_agg(event_type ORDER BY seq) FROM ventros.outbox WHERE aggregate_id = agg $$;

-- sagas: running -> completed; running -> failed -> compensating -> compensated
INSERT INTO ids SELECT 's1', id FROM ventros.start_saga('onboard_customer', first_step => 'create_user');
SELECT is((ventros.complete_saga_step(pg_temp.id('s1'), 1, 'create_user', 'create_project')).step_number, 1, 'step recorded');
SELECT is((ventros.complete_saga(pg_temp.id('s1'), 2)).status, 'completed', 'running -> completed');
SELECT throws_ok($$SELECT ventros.fail_saga(pg_temp.id('s1'), 3, 'late')$$, 'VN002', NULL, 'completed -> failed refused');
SELECT throws_ok($$SELECT ventros.complete_saga_step(pg_temp.id('s1'), 3, 'x')$$, 'VN002', NULL, 'steps only while running');
SELECT is(pg_temp.events(pg_temp.id('s1')), ARRAY['saga.created', 'saga.started', 'saga.updated', 'saga.step_completed', 'saga.completed'], 'saga events');
INSERT INTO ids SELECT 's2', id FROM ventros.start_saga('process_inbound_message');
SELECT throws_ok($$SELECT ventros.start_saga('nonsense')$$, '22023', 'unknown saga type "nonsense"', 'unknown saga type');
SELECT throws_ok($$SELECT ventros.request_saga_compensation(pg_temp.id('s2'), 1, 'contact.created')$$, 'VN002', NULL,
                 'only failed sagas compensate');
SELECT is((ventros.fail_saga(pg_temp.id('s2'), 1, 'provider down')).status, 'failed', 'running -> failed');
SELECT throws_ok($$SELECT ventros.request_saga_compensation(pg_temp.id('s2'), 2, 'contact.exploded')$$, '22023', NULL,
                 'unknown compensation target');
SELECT is((ventros.request_saga_compensation(pg_temp.id('s2'), 2, 'contact.created', gen_random_uuid())).status, 'compensating',
          'failed -> compensating');
SELECT is((ventros.request_saga_compensation(pg_temp.id('s2'), 3, 'session.started')).version, 3, 'second target keeps the version');
SELECT is((ventros.mark_saga_compensated(pg_temp.id('s2'), 3)).status, 'compensated', 'compensating -> compensated');
SELECT is((SELECT count(*)::integer FROM ventros.outbox WHERE aggregate_id = pg_temp.id('s2') AND event_type = 'saga.compensation_requested'
           AND payload->>'target' IN ('contact.created', 'session.started')), 2, 'one compensation_requested per target');
SELECT is(cardinality(ventros.saga_compensation_targets()), 22, '22 compensation targets');

-- credentials
INSERT INTO ids SELECT 'c', id FROM ventros.create_credential('Meta', 'meta_ads', 'top-secret-value-42');
SELECT ok(NOT EXISTS (SELECT 1 FROM ventros.credentials WHERE position(convert_to('top-secret', 'UTF8') IN encrypted_value) > 0
                      OR encrypted_value::text LIKE '%' || encode(convert_to('top-secret', 'UTF8'), 'hex') || '%'),
          'value not stored in plaintext');
SELECT ok(NOT EXISTS (SELECT 1 FROM ventros.outbox WHERE aggregate_id = pg_temp.id('c') AND payload ? 'encrypted_value'),
          'ciphertext redacted from events');
SELECT is((SELECT value FROM ventros.reveal_credential(pg_temp.id('c'))), 'top-secret-value-42', 'reveal decrypts');
SELECT throws_ok($$SELECT ventros.create_credential('Meta', 'meta_ads', 'x')$$, '23505', 'a credential named "Meta" exists already', 'unique name');
SELECT throws_ok($$SELECT ventros.create_credential('Empty', 'api_key', '  ')$$, '23502', 'secret value must not be empty', 'empty value refused');
SELECT throws_ok($$SELECT ventros.create_credential('Bad', 'ftp', 'x')$$, '22023', NULL, 'unknown type');
SELECT is((SELECT r.oauth_access_token FROM ventros.set_credential_oauth(pg_temp.id('c'), 1, 'access-1', 'refresh-1', now() + interval '1 hour') s,
           ventros.reveal_credential(s.id) r), 'access-1', 'OAuth tokens set and revealed');
INSERT INTO ids SELECT 'k', id FROM ventros.create_credential('Key', 'api_key', 'k-value', expires_at => now() - interval '1 minute');
SELECT throws_ok($$SELECT ventros.set_credential_oauth(pg_temp.id('k'), 1, 'a')$$, '22023', NULL, 'OAuth only for meta/google');
SELECT throws_ok($$SELECT * FROM ventros.reveal_credential(pg_temp.id('k'))$$, '55000', NULL, 'expired credential not revealed');
SET LOCAL ventros.tenant = 't_core2';
SELECT throws_ok($$SELECT * FROM ventros.reveal_credential(pg_temp.id('c'))$$, 'P0002', NULL, 'another tenant cannot reveal it');
SET LOCAL ventros.tenant = 't_core';
SET LOCAL ROLE ventros_agent;
SELECT throws_ok($$SELECT * FROM ventros.reveal_credential(pg_temp.id('c'))$$, '42501', NULL, 'agents cannot reveal secrets');
SELECT throws_ok($$SELECT ventros.decrypt_secret(encrypted_value) FROM ventros.credentials$$, '42501', NULL, 'nobody calls decrypt_secret');
SET LOCAL ROLE ventros_admin;
SET LOCAL ROLE ventros_platform_admin;  -- maintenance is the scheduler's
SELECT is(ventros.expire_credentials(), 1, 'expired credential deactivated');
SET LOCAL ROLE ventros_admin;
SELECT is((ventros.activate_credential(pg_temp.id('k'), 2)).is_active, true, 'false -> true');
SELECT is((ventros.set_credential_value(pg_temp.id('k'), 3, 'k-value-2')).version, 4, 'value replaced');
SELECT ok(pg_temp.events(pg_temp.id('k')) @> ARRAY['credential.created', 'credential.deactivated', 'credential.expired',
    'credential.activated', 'credential.updated'], 'credential lifecycle events');
SELECT ok(pg_temp.events(pg_temp.id('c')) @> ARRAY['credential.oauth_refreshed', 'credential.used'], 'oauth and use events');
SELECT is((ventros.deactivate_credential(pg_temp.id('c'), (ventros.get_credential(pg_temp.id('c'))).version)).is_active, false, 'true -> false');

-- project members
INSERT INTO ids SELECT 'm1', id FROM ventros.invite_project_member('alice', 'admin');
INSERT INTO ids SELECT 'm2', id FROM ventros.invite_project_member('bob', 'agent');
SELECT throws_ok($$SELECT ventros.invite_project_member('bob', 'viewer')$$, '23505', NULL, 'no duplicate member');
SELECT throws_ok($$SELECT ventros.invite_project_member('carol', 'owner')$$, '22023', NULL, 'unknown role');
SELECT throws_ok($$SELECT ventros.change_project_member_role(pg_temp.id('m1'), 1, 'viewer')$$, '23514', NULL, 'last admin kept');
SELECT throws_ok($$SELECT ventros.remove_project_member(pg_temp.id('m1'), 1)$$, '23514', NULL, 'last admin not removed');
SELECT is((ventros.change_project_member_role(pg_temp.id('m2'), 1, 'admin')).role, 'admin', 'agent -> admin');
SELECT lives_ok($$SELECT ventros.remove_project_member(pg_temp.id('m1'), 1)$$, 'an admin goes when another remains');
SELECT is(pg_temp.events(pg_temp.id('m1')), ARRAY['project_member.created', 'project_member.invited', 'project_member.deleted', 'project_member.removed'], 'member events');
SELECT ok(ventros.has_project_permission(ventros.default_project(), 'bob', 'members.manage'), 'admin permission');
SELECT ok(NOT ('billing.view' = ANY (ventros.project_role_permissions('admin'))), 'no project role holds billing');

-- webhook subscriptions
SELECT throws_ok($$SELECT ventros.create_webhook_subscription('h', 'http://127.0.0.1/x', ARRAY['contact.created'])$$, '22023', NULL, 'loopback refused');
SELECT ok(NOT ventros.is_public_http_url('http://10.1.2.3/') AND NOT ventros.is_public_http_url('https://[::1]/')
          AND NOT ventros.is_public_http_url('http://169.254.169.254/latest') AND NOT ventros.is_public_http_url('ftp://example.com')
          AND NOT ventros.is_public_http_url('http://user:pw@example.com/') AND NOT ventros.is_public_http_url('http://localhost:8080/')
          AND NOT ventros.is_public_http_url('http://2130706433/') AND NOT ventros.is_public_http_url('http://[::ffff:192.168.0.1]/')
          AND ventros.is_public_http_url('https://hooks.example.com:8443/in?x=1') AND ventros.is_public_http_url('http://93.184.216.34/'),
          'SSRF rules');
SELECT throws_ok($$SELECT ventros.create_webhook_subscription('h', 'https://example.com/', ARRAY['nothing.happened'])$$, '22023', NULL, 'unknown event');
INSERT INTO ids SELECT 'w', id FROM ventros.create_webhook_subscription('Hook', 'https://example.com/hook', ARRAY['contact.created']);
SELECT is((ventros.set_webhook_subscription_active(pg_temp.id('w'), 1, false)).active, false, 'true -> false');
SELECT is((ventros.update_webhook_subscription(pg_temp.id('w'), 2, '{"active": true, "url": "https://example.org/h"}')).url, 'https://example.org/h', 'false -> true, URL changed');
SELECT lives_ok($$SELECT ventros.delete_webhook_subscription(pg_temp.id('w'), 3)$$, 'deleted');
SELECT is(pg_temp.events(pg_temp.id('w')), ARRAY['webhook_subscription.created', 'webhook_subscription.deactivated',
    'webhook_subscription.activated', 'webhook_subscription.deleted'], 'webhook events');

-- processed events
SELECT is(ARRAY[ventros.mark_event_processed('00000000-0000-0000-0000-0000000000aa', 'crm.webhooks'),
                ventros.mark_event_processed('00000000-0000-0000-0000-0000000000aa', 'crm.webhooks')], ARRAY[true, false],
          'second delivery is recognised');
SELECT * FROM finish();
ROLLBACK;
