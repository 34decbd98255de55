-- The operator's surface (sql/93_operator.sql): queue status, dead letters
-- and replay across the outbox, inbox and dispatcher, paused sends that the
-- dispatcher's claim leaves queued (and takes after resume), secret
-- rotation, the audit events with their actor, ventros.metrics(), and the
-- refusals: tenant roles get 42501, and a front session holding
-- ventros_platform_admin is a platform administrator only while it acts as
-- that role.
BEGIN;
SELECT plan(62);

SELECT ventros.create_tenant('op_a', 'Operator A');
SELECT ventros.create_tenant('op_b', 'Operator B');
SET LOCAL ventros.tenant = 'op_a';
CREATE TEMP TABLE k (name text PRIMARY KEY, id uuid);
INSERT INTO k VALUES
    ('ch1', (ventros.create_channel('One', 'waha', config => '{"webhook_secret": "old-secret-0123456789"}')).id),
    ('ch2', (ventros.create_channel('Two', 'waha')).id),
    ('wa', (ventros.create_channel('Cloud', 'whatsapp', config => '{"app_secret": "meta-secret-0123456789"}')).id);
INSERT INTO k VALUES
    ('m1', (ventros.receive_message((SELECT id FROM k WHERE name = 'ch1'), '5511999990001@c.us', 'Oi', channel_message_id => 'op1')).id),
    ('m2', (ventros.receive_message((SELECT id FROM k WHERE name = 'ch2'), '5511999990002@c.us', 'Oi', channel_message_id => 'op2')).id),
    ('sub', (ventros.create_webhook_subscription('Hook', 'https://example.com/hook', '{contact.created}')).id);
CREATE FUNCTION pg_temp.k(n text) RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM k WHERE name = n $$;
INSERT INTO k VALUES
    ('r1', ventros.enqueue_http_request('https://example.com/1', purpose => 'message.send', correlation_id => pg_temp.k('m1'))),
    ('r2', ventros.enqueue_http_request('https://example.com/2', purpose => 'message.send', correlation_id => pg_temp.k('m2'))),
    ('rs', ventros.enqueue_http_request('https://example.com/hook', purpose => 'webhook.delivery')),
    ('d1', gen_random_uuid());
INSERT INTO ventros.webhook_deliveries (tenant_id, id, subscription_id, event_id, event_type, aggregate_type, aggregate_id, request_id)
VALUES ('op_a', pg_temp.k('d1'), pg_temp.k('sub'), gen_random_uuid(), 'contact.created', 'contact', gen_random_uuid(), pg_temp.k('rs'));
UPDATE ventros.http_requests SET correlation_id = pg_temp.k('d1') WHERE id = pg_temp.k('rs');
SET LOCAL ventros.tenant = 'op_b';
INSERT INTO k VALUES ('rb', ventros.enqueue_http_request('https://example.com/b'));
RESET ventros.tenant;
GRANT SELECT ON k TO PUBLIC;

-- ---- refusals: tenant roles ----
SET LOCAL ventros.tenant = 'op_a';
SET LOCAL ROLE ventros_admin;
SELECT throws_ok($$SELECT * FROM ventros.queue_status()$$, '42501', NULL, 'a tenant admin may not see the queues');
SELECT throws_ok($$SELECT * FROM ventros.dead_letters()$$, '42501', NULL, 'nor the dead letters');
SELECT throws_ok($$SELECT ventros.replay_dead_letters()$$, '42501', NULL, 'nor replay them');
SELECT throws_ok($$SELECT ventros.pause_sends('op_a')$$, '42501', NULL, 'nor pause sends');
SELECT throws_ok($$SELECT ventros.resume_sends('op_a')$$, '42501', NULL, 'nor resume them');
SELECT throws_ok($$SELECT ventros.rotate_channel_secret('op_a', pg_temp.k('ch1'))$$, '42501', NULL,
                 'nor rotate a channel secret');
SELECT throws_ok($$SELECT ventros.rotate_subscription_secret('op_a', pg_temp.k('sub'))$$, '42501', NULL,
                 'nor a subscription secret');
RESET ROLE;
SET LOCAL ROLE ventros_agent;
SELECT throws_ok($$SELECT * FROM ventros.queue_status()$$, '42501', NULL, 'nor an agent');
SELECT throws_ok($$SELECT * FROM ventros.metrics()$$, '42501', NULL, 'an agent may not read the metrics function');
RESET ROLE;
RESET ventros.tenant;

-- ---- a front session: platform admin only while acting as the role ----
CREATE ROLE op_front LOGIN IN ROLE ventros_authenticator;
GRANT ventros_platform_admin TO ventros_authenticator;
GRANT EXECUTE ON FUNCTION ventros.require_platform_admin() TO ventros_agent;
SET SESSION AUTHORIZATION op_front;
SET LOCAL ROLE ventros_agent;
SELECT throws_ok($$SELECT ventros.require_platform_admin()$$, '42501', NULL,
                 'a front session acting as a tenant role is not a platform admin, whatever its login holds');
RESET ROLE;
SET LOCAL ROLE ventros_platform_admin;
SELECT lives_ok($$SELECT ventros.require_platform_admin()$$, 'acting as ventros_platform_admin it is one');
SELECT is((SELECT array_agg(queue ORDER BY queue) FROM ventros.queue_status()), '{http,inbox,outbox}',
          'queue_status: one row per queue');
RESET ROLE;
RESET SESSION AUTHORIZATION;

-- ---- queue status ----
SELECT ok((SELECT depth >= 4 AND due >= 4 AND held = 0 FROM ventros.queue_status() WHERE queue = 'http'),
          'the four requests are waiting and due, none held');
SELECT ok((SELECT oldest_age >= interval '0' AND arrived_last_5m >= 4 FROM ventros.queue_status() WHERE queue = 'http'),
          'oldest age and recent arrivals are known');
SELECT ok((SELECT depth >= 1 FROM ventros.queue_status() WHERE queue = 'outbox'),
          'the events of this transaction wait in the outbox');

-- ---- pause ----
SELECT throws_ok($$SELECT ventros.pause_sends('op_a', pg_temp.k('ch1'), pg_temp.k('sub'))$$, '22023', NULL,
                 'a channel or a subscription, not both');
SELECT throws_ok($$SELECT ventros.pause_sends('op_a', gen_random_uuid())$$, 'P0002', NULL, 'an unknown channel');
SELECT throws_ok($$SELECT ventros.pause_sends('op_b', pg_temp.k('ch1'))$$, 'P0002', NULL,
                 'another tenant''s channel is not found');
SELECT throws_ok($$SELECT ventros.pause_sends('op_nobody')$$, 'P0002', NULL, 'an unknown tenant');
SELECT is((ventros.pause_sends('op_a', pg_temp.k('ch1'), reason => 'provider outage')).scope, 'channel',
          'a channel''s sends are paused');
SELECT throws_ok($$SELECT ventros.pause_sends('op_a', pg_temp.k('ch1'))$$, '23505', NULL, 'twice is refused');
SELECT is((ventros.pause_sends('op_a', webhook_subscription_id => pg_temp.k('sub'))).scope, 'webhook_subscription',
          'a subscription''s deliveries are paused');
SELECT is((ventros.pause_sends('op_b')).scope, 'tenant', 'a tenant''s sends are paused');
SELECT is((SELECT held FROM ventros.queue_status() WHERE queue = 'http'), 3::bigint,
          'queue_status counts the three held requests');

UPDATE ventros.http_requests SET next_attempt_at = now() - interval '1 hour'
 WHERE id IN (pg_temp.k('r1'), pg_temp.k('rs'), pg_temp.k('rb'));
SELECT is(ventros.http_next_due(),
          (SELECT min(next_attempt_at) FROM ventros.http_requests
            WHERE status = 'pending' AND id NOT IN (pg_temp.k('r1'), pg_temp.k('rs'), pg_temp.k('rb'))),
          'the dispatcher''s next due time passes over held requests (it would claim in a loop)');
CREATE TEMP TABLE claimed AS SELECT c.id FROM ventros.http_claim(1000, '1 minute') c;
SELECT ok(EXISTS (SELECT 1 FROM claimed WHERE id = pg_temp.k('r2')), 'the claim takes the unpaused channel''s send');
SELECT is((SELECT count(*)::int FROM claimed WHERE id IN (pg_temp.k('r1'), pg_temp.k('rs'), pg_temp.k('rb'))), 0,
          'it passes over the paused channel''s send, the paused delivery and the paused tenant''s request');
SELECT is((SELECT array_agg(status ORDER BY url) FROM ventros.http_requests
            WHERE id IN (pg_temp.k('r1'), pg_temp.k('rs'), pg_temp.k('rb'))),
          '{pending,pending,pending}', 'held requests stay pending: not sent, not lost');

SELECT is((SELECT array_agg(event_type || ' ' || (actor IS NOT DISTINCT FROM ventros.actor()) ORDER BY seq)
             FROM ventros.outbox WHERE event_type LIKE '%.sends_paused'),
          '{"channel.sends_paused true","webhook_subscription.sends_paused true","project.sends_paused true"}',
          'each pause is an event with the actor');
SELECT is((SELECT payload FROM ventros.outbox WHERE event_type = 'channel.sends_paused'),
          '{"scope": "channel", "reason": "provider outage"}', 'with its scope and reason');
SELECT is((SELECT aggregate_id FROM ventros.outbox WHERE event_type = 'project.sends_paused'),
          (SELECT id FROM ventros.projects WHERE tenant_id = 'op_b'), 'a tenant''s pause is audited on its project');

-- ---- resume ----
SELECT throws_ok($$SELECT ventros.resume_sends('op_a')$$, 'P0002', NULL, 'resuming what is not paused');
SELECT is(ventros.resume_sends('op_a', pg_temp.k('ch1')), 1, 'resuming the channel releases its send');
SELECT is(ventros.resume_sends('op_a', webhook_subscription_id => pg_temp.k('sub')), 1, 'and the delivery');
SELECT is(ventros.resume_sends('op_b'), 1, 'and the tenant''s request');
SELECT is((SELECT array_agg(c.id ORDER BY c.id) FROM ventros.http_claim(1000, '1 minute') c
            WHERE c.id IN (pg_temp.k('r1'), pg_temp.k('rs'), pg_temp.k('rb'))),
          (SELECT array_agg(id ORDER BY id) FROM k WHERE name IN ('r1', 'rs', 'rb')),
          'after resume the claim takes every held request');
SELECT is((SELECT count(*)::int FROM ventros.outbox WHERE event_type LIKE '%.sends_resumed' AND actor IS NOT NULL), 3,
          'each resume is an event with the actor');

-- ---- dead letters ----
UPDATE ventros.http_requests SET status = 'dead', completed_at = now(), last_error = 'HTTP 503'
 WHERE id = pg_temp.k('rb');
UPDATE ventros.outbox_queue q SET dead = true
  FROM ventros.outbox o WHERE o.tenant_id = q.tenant_id AND o.seq = q.seq AND o.event_type = 'channel.sends_resumed';
UPDATE ventros.outbox SET status = 'dead', attempts = 5, last_error = 'broker refused'
 WHERE event_type = 'channel.sends_resumed';
INSERT INTO ventros.inbox (tenant_id, channel_id, provider, event, dedupe_key, delivery_id, status, attempts, last_error)
VALUES ('op_a', pg_temp.k('ch1'), 'waha', 'message.any', 'op-dead-1', gen_random_uuid(), 'failed', 5, 'parser raised');

SELECT throws_ok($$SELECT * FROM ventros.dead_letters('mail')$$, '22023', NULL, 'an unknown queue');
SELECT is((SELECT array_agg(queue_name || ' ' || tenant_id || ' ' || item_type || ' ' || last_error ORDER BY queue_name)
             FROM ventros.dead_letters() WHERE tenant_id LIKE 'op\_%'),
          '{"http op_b generic HTTP 503","inbox op_a message.any parser raised","outbox op_a channel.sends_resumed broker refused"}',
          'dead letters of the three queues');
SELECT is((SELECT count(*)::int FROM ventros.dead_letters(tenant => 'op_a') WHERE tenant_id <> 'op_a'), 0,
          'filtered by tenant');
SELECT is((SELECT array_agg(queue_name) FROM ventros.dead_letters(type => 'message.any')), '{inbox}', 'filtered by type');
SELECT is((SELECT count(*)::int FROM ventros.dead_letters(since => now() + interval '1 minute')), 0,
          'filtered by time range');
SELECT is((SELECT count(*)::int FROM ventros.dead_letters(queue => 'http', tenant => 'op_b', max_rows => 1)), 1,
          'filtered by queue, and bounded');

-- ---- replay ----
SELECT is(ventros.replay_dead_letters('http', tenant => 'op_b'), 1::bigint, 'replay of the tenant''s dead request');
SELECT is((SELECT status FROM ventros.http_requests WHERE id = pg_temp.k('rb')), 'pending', 'it is pending again');
SELECT is(ventros.replay_dead_letters('outbox', ids => ARRAY(SELECT event_id FROM ventros.outbox
                                                               WHERE event_type = 'channel.sends_resumed')),
          1::bigint, 'replay of an event by id');
SELECT is((SELECT status FROM ventros.outbox WHERE event_type = 'channel.sends_resumed'), 'pending',
          'the event is pending again');
SELECT is(ventros.replay_dead_letters(type => 'message.any', since => now() - interval '1 hour'), 1::bigint,
          'replay by type and time range');
SELECT ok((SELECT next_attempt_at IS NOT NULL AND attempts = 0 FROM ventros.inbox WHERE dedupe_key = 'op-dead-1'),
          'the inbox item is due again with its attempts reset');
SELECT is((SELECT count(*)::int FROM ventros.dead_letters() WHERE tenant_id LIKE 'op\_%'), 0, 'no dead letter is left');
SELECT is((SELECT array_agg(tenant_id || ' ' || (payload->>'queue') || ' ' || (payload->>'count') ORDER BY seq)
             FROM ventros.outbox WHERE event_type = 'project.dead_letters_replayed'),
          '{"op_b http 1","op_a outbox 1","op_a inbox 1"}', 'each replay is audited in its tenant');

-- ---- secrets ----
SELECT is(length(ventros.rotate_channel_secret('op_a', pg_temp.k('ch1'))), 64, 'a WAHA secret is chosen when not given');
SELECT is((SELECT (ventros.channel_with_secrets(c)).config->>'webhook_secret' FROM ventros.channels c WHERE id = pg_temp.k('ch1'))
             <> 'old-secret-0123456789',
          true, 'and replaces the old one among the channel''s secrets');
SELECT throws_ok($$SELECT ventros.rotate_channel_secret('op_a', pg_temp.k('wa'))$$, '22023', NULL,
                 'Meta''s app secret must be given');
SELECT is(ventros.rotate_channel_secret('op_a', pg_temp.k('wa'), 'new-meta-secret-0123456789'), 'new-meta-secret-0123456789',
          'a given app secret is stored');
SELECT is((SELECT array_agg(payload->>'key' ORDER BY seq) FROM ventros.outbox WHERE event_type = 'channel.secret_rotated'),
          '{webhook_secret,app_secret}', 'rotations are audited, naming the key, never the value');
SELECT ok(NOT EXISTS (SELECT 1 FROM ventros.outbox WHERE payload::text LIKE '%new-meta-secret%'),
          'no event carries the secret');
SELECT is(ventros.rotate_subscription_secret('op_a', pg_temp.k('sub'), 'subscription-secret-0123456789'),
          'subscription-secret-0123456789', 'a subscription''s secret is replaced');
SELECT ok((SELECT secret = 'subscription-secret-0123456789' AND previous_secret IS NOT NULL
             FROM ventros.webhook_subscriptions WHERE id = pg_temp.k('sub')),
          'the previous one still signs during the overlap');
SELECT is((SELECT count(*)::int FROM ventros.outbox WHERE event_type = 'webhook_subscription.secret_rotated'), 1,
          'and audited');

-- ---- metrics ----
SELECT is((SELECT array_agg(labels ORDER BY labels) FROM ventros.metrics() WHERE metric = 'ventros_queue_depth'),
          '{"queue=\"http\"","queue=\"inbox\"","queue=\"outbox\""}', 'metrics: a depth per queue');
SELECT is((SELECT count(*)::int FROM ventros.metrics() WHERE kind NOT IN ('gauge', 'counter') OR help IS NULL), 0,
          'metrics: every sample has a type and a help');

SELECT * FROM finish();
ROLLBACK;
