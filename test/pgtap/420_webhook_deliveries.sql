-- Webhook deliveries (channels.md section 6): the fan-out of events to
-- matching subscriptions (wildcards, tenants, inactive and deleted
-- subscriptions, the cache's invalidation in this session), the CloudEvents
-- body and headers, the signature (verified here with pgcrypto), the retry
-- schedule, Retry-After, 410 Gone, five days of failures, redelivery, the
-- delivery log and the SSRF rules of subscription URLs.  The dispatcher is
-- played by calling its SQL side (http_claim, http_record_attempt).
BEGIN;
SELECT plan(118);

SELECT ventros.create_tenant('wh_a', 'Webhooks A');
SELECT ventros.create_tenant('wh_b', 'Webhooks B');
CREATE TEMP TABLE ids (name text PRIMARY KEY, id uuid);
GRANT ALL ON ids TO PUBLIC;
CREATE FUNCTION pg_temp.id(n text) RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM ids WHERE name = n $$;
-- deliveries of a subscription, as event types in order
CREATE FUNCTION pg_temp.delivered(sub text) RETURNS text[] LANGUAGE sql AS $$
    SELECT coalesce(array_agg(d.event_type ORDER BY d.created_at, o.seq), '{}')
      FROM ventros.webhook_deliveries d JOIN ventros.outbox o ON o.event_id = d.event_id
     WHERE d.subscription_id = pg_temp.id(sub) AND d.redelivery_of IS NULL $$;
CREATE FUNCTION pg_temp.request(delivery uuid) RETURNS ventros.http_requests LANGUAGE sql AS $$
    SELECT r.* FROM ventros.http_requests r JOIN ventros.webhook_deliveries d ON d.request_id = r.id
     WHERE d.id = delivery $$;
-- (now() is one instant in a transaction: order by the events' sequence)
CREATE FUNCTION pg_temp.last_delivery(sub text) RETURNS uuid LANGUAGE sql AS $$
    SELECT d.id FROM ventros.webhook_deliveries d JOIN ventros.outbox o ON o.event_id = d.event_id
     WHERE d.subscription_id = pg_temp.id(sub) AND d.redelivery_of IS NULL
     ORDER BY o.seq DESC LIMIT 1 $$;
-- The dispatcher claims this delivery's request (made due before any other)
-- and returns the headers it would send.
CREATE FUNCTION pg_temp.claim(delivery uuid) RETURNS jsonb LANGUAGE sql AS $$
    UPDATE ventros.http_requests r SET next_attempt_at = now() - interval '100 years'
     WHERE r.id = (pg_temp.request(delivery)).id;
    SELECT c.headers FROM ventros.http_claim(1, interval '1 minute') c WHERE c.id = (pg_temp.request(delivery)).id $$;
-- The receiver's answer to the claimed attempt, recorded as the dispatcher does
-- (retry policy "any": every non-2xx but 410 is retried).
CREATE FUNCTION pg_temp.answer(delivery uuid, code integer, retry_after_ms bigint DEFAULT NULL) RETURNS text
LANGUAGE sql AS $$
    SELECT ventros.http_record_attempt(r.tenant_id, r.id, r.attempts, code BETWEEN 200 AND 299,
                                       code NOT BETWEEN 200 AND 299 AND code <> 410, retry_after_ms, code,
                                       'Content-Type: text/plain', convert_to('answer ' || code, 'UTF8'), false,
                                       CASE WHEN code NOT BETWEEN 200 AND 299 THEN 'HTTP ' || code END)
      FROM pg_temp.request(delivery) r $$;
-- X-Ventros-Signature verified independently: every v1 against each secret.
CREATE FUNCTION pg_temp.signature_ok(header text, body bytea, secret text) RETURNS boolean LANGUAGE sql AS $$
    SELECT EXISTS (SELECT 1 FROM regexp_split_to_table(header, ',') part
                    WHERE part = 'v1=' || encode(hmac(convert_to(substring(header FROM '^t=([0-9]+),') || '.', 'UTF8') || body,
                                                      convert_to(secret, 'UTF8'), 'sha256'), 'hex')) $$;

SELECT has_table('ventros', 'webhook_deliveries', 'the delivery table exists');
SELECT ok((SELECT relrowsecurity AND relforcerowsecurity FROM pg_class WHERE oid = 'ventros.webhook_deliveries'::regclass),
          'row-level security is enabled and forced on deliveries');

-- ---- subscription rules: patterns, custom headers, SSRF -------------------
SET LOCAL ventros.tenant = 'wh_a';
SELECT lives_ok($$SELECT ventros.create_webhook_subscription('w', 'https://hooks.example.com/w', ARRAY['contact.*', '*'])$$,
                'patterns "<aggregate>.*" and "*" are accepted');
SELECT throws_ok($$SELECT ventros.create_webhook_subscription('w', 'https://hooks.example.com/w', ARRAY['nothing.*'])$$,
                 '22023', NULL, 'a wildcard of an unknown aggregate is refused');
SELECT throws_ok($$SELECT ventros.create_webhook_subscription('w', 'https://hooks.example.com/w', ARRAY['contact.cre*'])$$,
                 '22023', NULL, 'only whole-action wildcards');
SELECT throws_ok($$SELECT ventros.create_webhook_subscription('w', 'https://hooks.example.com/w', ARRAY['webhook_subscription.*'])$$,
                 '22023', NULL, 'webhook_subscription.* cannot be subscribed');
SELECT throws_ok($$SELECT ventros.create_webhook_subscription('w', 'https://hooks.example.com/w', ARRAY['contact.created'],
                   headers => '{"X-Ventros-Signature": "forged"}')$$, '22023', NULL, 'custom headers cannot be Ventros'' own');
SELECT throws_ok($$SELECT ventros.create_webhook_subscription('w', 'https://hooks.example.com/w', ARRAY['contact.created'],
                   headers => jsonb_build_object('X-A', E'1\r\nX-B: 2'))$$, '22023', NULL, 'custom header values have no line breaks');
SELECT throws_ok(format($$SELECT ventros.create_webhook_subscription('w', %L, ARRAY['contact.created'])$$, u), '22023', NULL,
                 'refused without an allow-list: ' || u)
  FROM unnest(ARRAY['http://127.0.0.1:8080/', 'http://[::1]/', 'http://169.254.169.254/latest/meta-data/',
                    'http://0x7f000001/', 'http://localhost/', 'http://hooks.example.com/plain']) u;
SET LOCAL ventros.http_allow_hosts = '127.0.0.1/32, ::1/128';
SELECT lives_ok($$SELECT ventros.create_webhook_subscription('w', 'http://127.0.0.1:8080/hook', ARRAY['contact.created'])$$,
                'an allow-listed loopback address is accepted');
SELECT lives_ok($$SELECT ventros.create_webhook_subscription('w', 'http://[::1]:8080/hook', ARRAY['contact.created'])$$,
                'an allow-listed IPv6 loopback address is accepted');
SELECT throws_ok(format($$SELECT ventros.create_webhook_subscription('w', %L, ARRAY['contact.created'])$$, u), '22023', NULL,
                 'still refused with a loopback allow-list: ' || u)
  FROM unnest(ARRAY['http://169.254.169.254/latest/meta-data/', 'http://0x7f000001/', 'http://localhost/']) u;
RESET ventros.http_allow_hosts;
-- start from no subscription at all for wh_a
SELECT ventros.delete_webhook_subscription(id) FROM ventros.webhook_subscriptions WHERE tenant_id = 'wh_a';

-- ---- fan-out -------------------------------------------------------------
-- an event before any subscription: nothing (and the cache learns "none")
INSERT INTO ids SELECT 'c0', id FROM ventros.create_contact('Before');
SELECT is((SELECT count(*)::int FROM ventros.webhook_deliveries), 0, 'no subscription, no delivery');

-- created in this session, seen by the next statement of the same transaction
INSERT INTO ids SELECT 'contacts', id FROM ventros.create_webhook_subscription('Contacts', 'https://hooks.example.com/contacts',
    ARRAY['contact.*'], secret => 'whsec_test_secret_0123456789', headers => '{"X-Custom": "yes"}');
INSERT INTO ids SELECT 'created_only', id FROM ventros.create_webhook_subscription('Created', 'https://hooks.example.com/created',
    ARRAY['contact.created', 'contact.*']);
INSERT INTO ids SELECT 'all', id FROM ventros.create_webhook_subscription('All', 'https://hooks.example.com/all', ARRAY['*']);
INSERT INTO ids SELECT 'deleted_only', id FROM ventros.create_webhook_subscription('Deleted', 'https://hooks.example.com/del',
    ARRAY['contact.deleted']);
INSERT INTO ids SELECT 'c1', id FROM ventros.create_contact('Ana');
SELECT is(pg_temp.delivered('contacts'), ARRAY['contact.created'],
          'a subscription created earlier in the transaction gets the next event (cache invalidated)');
SELECT is(pg_temp.delivered('created_only'), ARRAY['contact.created'], 'two matching patterns still make one delivery');
SELECT is(pg_temp.delivered('deleted_only'), '{}'::text[], 'an exact pattern does not match other actions');

SELECT ventros.update_contact(pg_temp.id('c1'), 1, '{"name": "Ana Maria"}');
INSERT INTO ids SELECT 'pipeline', id FROM ventros.create_pipeline('Sales');
SELECT ventros.delete_contact(pg_temp.id('c1'), 2);
SELECT is(pg_temp.delivered('contacts'), ARRAY['contact.created', 'contact.updated', 'contact.name_changed', 'contact.deleted'],
          'contact.* selects every contact event and nothing else');
SELECT is(pg_temp.delivered('deleted_only'), ARRAY['contact.deleted'], 'the exact pattern gets its event');
SELECT ok('pipeline.created' = ANY (pg_temp.delivered('all')) AND 'contact.updated' = ANY (pg_temp.delivered('all')),
          '"*" selects events of every aggregate');
SELECT ok(NOT EXISTS (SELECT 1 FROM ventros.webhook_deliveries WHERE event_type LIKE 'webhook\_subscription.%'),
          'webhook_subscription.* events are never delivered, even to "*"');
SELECT is((SELECT count(*)::int FROM ventros.webhook_deliveries d JOIN ventros.outbox o ON o.event_id = d.event_id
            WHERE o.tenant_id <> d.tenant_id OR o.event_type <> d.event_type OR o.aggregate_id <> d.aggregate_id), 0,
          'every delivery names its outbox event');
SELECT is((SELECT count(*)::int FROM ventros.webhook_deliveries d
             JOIN ventros.http_requests r ON r.tenant_id = d.tenant_id AND r.id = d.request_id
            WHERE r.purpose = 'webhook.delivery' AND r.correlation_id = d.id AND r.status = 'pending'),
          (SELECT count(*)::int FROM ventros.webhook_deliveries), 'each delivery is one pending webhook.delivery request');

-- inactive and deleted subscriptions get nothing
SELECT ventros.set_webhook_subscription_active(pg_temp.id('deleted_only'), 1, false);
SELECT ventros.delete_webhook_subscription(pg_temp.id('all'), 1);
INSERT INTO ids SELECT 'c2', id FROM ventros.create_contact('Bruno');
SELECT ventros.delete_contact(pg_temp.id('c2'), 1);
SELECT is(pg_temp.delivered('deleted_only'), ARRAY['contact.deleted'], 'an inactive subscription gets no new delivery');
SELECT ok(NOT (pg_temp.id('c2') IN (SELECT aggregate_id FROM ventros.webhook_deliveries WHERE subscription_id = pg_temp.id('all'))),
          'a deleted subscription gets no new delivery');
SELECT is((SELECT array_agg(DISTINCT (l.status, l.attempts, l.last_error)::text) FROM ventros.webhook_delivery_log l
            WHERE l.subscription_id = pg_temp.id('deleted_only')),
          ARRAY['(failed,0,"not sent: the subscription was deactivated")'],
          'deactivating a subscription stops its deliveries waiting for an attempt');
SELECT is((SELECT array_agg(DISTINCT (l.status, l.last_error)::text) FROM ventros.webhook_delivery_log l
            WHERE l.subscription_id = pg_temp.id('all')),
          ARRAY['(failed,"not sent: the subscription was deleted")'], 'deleting one stops them too');
SELECT ventros.set_webhook_subscription_active(pg_temp.id('deleted_only'), 2, true);
INSERT INTO ids SELECT 'c3', id FROM ventros.create_contact('Carla');
SELECT ventros.delete_contact(pg_temp.id('c3'), 1);
SELECT is(pg_temp.delivered('deleted_only'), ARRAY['contact.deleted', 'contact.deleted'], 'reactivated, it receives again');

-- an agent's change fans out too (the fan-out does not need the agent's rights)
SET LOCAL ROLE ventros_agent;
SELECT lives_ok($$SELECT ventros.create_contact('By an agent')$$, 'an agent creates a contact');
RESET ROLE;
INSERT INTO ids SELECT 'c4', id FROM ventros.contacts WHERE tenant_id = 'wh_a' AND name = 'By an agent';
SELECT is((SELECT count(*)::int FROM ventros.webhook_deliveries WHERE aggregate_id = pg_temp.id('c4')), 2,
          'the agent''s event reached both contact subscriptions');

-- tenant isolation
SET LOCAL ventros.tenant = 'wh_b';
INSERT INTO ids SELECT 'b_contacts', id FROM ventros.create_webhook_subscription('B', 'https://hooks.example.com/b', ARRAY['contact.*']);
INSERT INTO ids SELECT 'b1', id FROM ventros.create_contact('Of B');
SELECT is(pg_temp.delivered('b_contacts'), ARRAY['contact.created'], 'tenant B''s subscription gets B''s event');
SELECT is((SELECT count(*)::int FROM ventros.webhook_deliveries WHERE aggregate_id = pg_temp.id('b1')), 1,
          'an event of tenant B never reaches a subscription of A');
SET LOCAL ventros.tenant = 'wh_a';
INSERT INTO ids SELECT 'a5', id FROM ventros.create_contact('Of A');
SELECT is((SELECT array_agg(DISTINCT tenant_id) FROM ventros.webhook_deliveries WHERE aggregate_id = pg_temp.id('a5')), ARRAY['wh_a'],
          'an event of tenant A never reaches a subscription of B');
SELECT is((SELECT count(*)::int FROM ventros.http_requests r JOIN ventros.webhook_deliveries d ON d.request_id = r.id
            WHERE r.tenant_id <> d.tenant_id), 0, 'requests belong to the delivery''s tenant');

-- contact timeline events, filtered by category
INSERT INTO ids SELECT 'timeline', id FROM ventros.create_webhook_subscription('Timeline', 'https://hooks.example.com/t',
    '{}', subscribe_contact_events => true, contact_event_categories => ARRAY['tag']);
SELECT ventros.create_contact_event(pg_temp.id('a5'), 'tag.added', 'tag', 'Tagged');
SELECT ventros.create_contact_event(pg_temp.id('a5'), 'note.added', 'note', 'Noted');
SELECT is((SELECT array_agg(r.body_json->'data'->>'event_type') FROM ventros.webhook_deliveries d,
                  LATERAL (SELECT convert_from(q.body, 'UTF8')::jsonb AS body_json FROM ventros.http_requests q
                            WHERE q.id = d.request_id) r
            WHERE d.subscription_id = pg_temp.id('timeline')), ARRAY['tag.added'],
          'subscribe_contact_events delivers the timeline entries of the chosen categories');

-- ---- the request ----------------------------------------------------------
INSERT INTO ids SELECT 'd_created', d.id FROM ventros.webhook_deliveries d JOIN ventros.outbox o ON o.event_id = d.event_id
 WHERE d.subscription_id = pg_temp.id('contacts') AND o.event_type = 'contact.created' AND o.aggregate_id = pg_temp.id('c1');
CREATE TEMP TABLE ce AS
SELECT convert_from(r.body, 'UTF8')::jsonb AS body, r.body AS raw, r.headers, r.url, r.method, r.timeout_ms, o.*
  FROM ventros.http_requests r JOIN ventros.webhook_deliveries d ON d.request_id = r.id
  JOIN ventros.outbox o ON o.event_id = d.event_id
 WHERE d.id = pg_temp.id('d_created');
SELECT is((SELECT body->>'specversion' FROM ce), '1.0', 'CloudEvents 1.0');
SELECT is((SELECT body->>'id' FROM ce), (SELECT event_id::text FROM ce), 'id is the outbox event id');
SELECT is((SELECT body->>'type' FROM ce), 'com.ventros.contact.created', 'type is com.ventros.<event>');
SELECT is((SELECT body->>'source' FROM ce), '/ventros/tenants/wh_a', 'source names the tenant');
SELECT is((SELECT body->>'subject' FROM ce), 'contacts/' || pg_temp.id('c1'), 'subject is <collection>/<id>');
SELECT is((SELECT (body->>'time')::timestamptz FROM ce), (SELECT date_trunc('milliseconds', occurred_at) FROM ce),
          'time is when the event occurred, in UTC with milliseconds');
SELECT ok((SELECT body->>'time' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$' FROM ce), 'time is RFC 3339 in UTC');
SELECT is((SELECT body->>'datacontenttype' FROM ce), 'application/json', 'datacontenttype');
SELECT is((SELECT body->>'tenantid' FROM ce), 'wh_a', 'tenantid extension attribute');
SELECT is((SELECT body->'data' FROM ce), (SELECT payload FROM ce), 'data is the event payload');
SELECT is((SELECT (body->'data'->>'version')::int FROM ce), 1, 'data carries the aggregate version');
SELECT is((SELECT (body->>'aggregateversion')::int FROM ce), (SELECT aggregate_version FROM ce),
          'and so does the aggregateversion extension attribute');
SELECT is((SELECT (convert_from(r.body, 'UTF8')::jsonb->>'aggregateversion')::int FROM ventros.http_requests r
             JOIN ventros.webhook_deliveries d ON d.request_id = r.id
            WHERE d.subscription_id = pg_temp.id('contacts') AND d.event_type = 'contact.updated'), 2,
          'for an update too, whose data is a diff');
SELECT ok((SELECT convert_from(raw, 'UTF8') LIKE '{"specversion":"1.0","id":%' FROM ce), 'compact JSON, specversion first');
SELECT is((SELECT method || ' ' || url FROM ce), 'POST https://hooks.example.com/contacts', 'POST to the subscription URL');
SELECT is((SELECT timeout_ms FROM ce), 10000, 'a 10 s total timeout by default');
SELECT is((SELECT headers FROM ce), jsonb_build_object('Content-Type', 'application/cloudevents+json; charset=utf-8',
          'User-Agent', 'Ventros-Webhooks/1.0', 'X-Ventros-Event-Id', (SELECT event_id::text FROM ce),
          'X-Ventros-Delivery-Id', pg_temp.id('d_created')::text), 'the stored headers: no signature, no secret');
SELECT ok(NOT EXISTS (SELECT 1 FROM ventros.http_requests r, jsonb_each_text(r.headers) h
                       WHERE h.value LIKE '%whsec_test_secret%' OR position(convert_to('whsec_test', 'UTF8') IN r.body) > 0),
          'the secret is never stored on the queue');

-- the attempt's headers, computed when the dispatcher claims it
CREATE TEMP TABLE attempt1 AS SELECT pg_temp.claim(pg_temp.id('d_created')) AS h, clock_timestamp() AS at;
SELECT is((SELECT h->>'X-Ventros-Attempt' FROM attempt1), '1', 'X-Ventros-Attempt counts from 1');
SELECT is((SELECT h->>'X-Custom' FROM attempt1), 'yes', 'the subscription''s custom headers are sent');
SELECT is((SELECT h - 'X-Ventros-Attempt' - 'X-Ventros-Signature' - 'X-Custom' FROM attempt1), (SELECT headers FROM ce),
          'with the stored headers');
SELECT ok((SELECT h->>'X-Ventros-Signature' ~ '^t=[0-9]+,v1=[0-9a-f]{64}$' FROM attempt1), 'X-Ventros-Signature: t=<unix>,v1=<hex>');
SELECT ok((SELECT abs(substring(h->>'X-Ventros-Signature' FROM '^t=([0-9]+)')::bigint - extract(epoch FROM now())) <= 1
             FROM attempt1), 't is the time of signing');
SELECT ok(pg_temp.signature_ok((SELECT h->>'X-Ventros-Signature' FROM attempt1), (SELECT raw FROM ce), 'whsec_test_secret_0123456789'),
          'v1 is HMAC-SHA256(secret, "t.body")');
SELECT ok(NOT pg_temp.signature_ok((SELECT h->>'X-Ventros-Signature' FROM attempt1), (SELECT raw FROM ce), 'another-secret-0123456789'),
          'and does not verify with another secret');
SELECT is(ventros.webhook_signature('whsec_test_secret_0123456789', convert_to('{"a":1}', 'UTF8'), to_timestamp(1760000000)),
          't=1760000000,v1=0ab997d4e9cfa7519a129fcdf76c42b2fac55b809d4a23ad1f6019aeed26c79e',
          'the signature of a known vector (computed with openssl)');
SELECT is(ventros.webhook_signature('whsec_test_secret_0123456789', convert_to('{"a":1}', 'UTF8'), to_timestamp(1760000000),
                                    'old_secret_abcdefghijklmnop'),
          't=1760000000,v1=0ab997d4e9cfa7519a129fcdf76c42b2fac55b809d4a23ad1f6019aeed26c79e'
          ',v1=bfaa8a457c3a881f3c1349ca7dfd6b00492047b6e6e69003d988ecf53ed9b7e7',
          'while rotating, the previous secret signs a second v1, after the new one');

-- ---- retries ------------------------------------------------------------------
SELECT is((SELECT retry_schedule FROM pg_temp.request(pg_temp.id('d_created'))),
          '{5s,5min,30min,2h,5h,10h,10h}'::interval[], 'the default schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h');
SELECT is((SELECT max_attempts FROM pg_temp.request(pg_temp.id('d_created'))), 8, '8 attempts');
SELECT is((SELECT retry_policy FROM pg_temp.request(pg_temp.id('d_created'))), 'any', 'every failure but 410 is retried');
CREATE TEMP TABLE t0 AS SELECT clock_timestamp() AS at;
SELECT is(pg_temp.answer(pg_temp.id('d_created'), 500), 'pending', 'a 500 schedules a retry');
SELECT ok((SELECT next_attempt_at BETWEEN (SELECT at FROM t0) + interval '4.5 s' AND clock_timestamp() + interval '5.5 s'
             FROM pg_temp.request(pg_temp.id('d_created'))), 'the first retry comes after 5 s +-10 %');
SELECT pg_temp.claim(pg_temp.id('d_created'));
UPDATE t0 SET at = clock_timestamp();
SELECT is(pg_temp.answer(pg_temp.id('d_created'), 301), 'pending', 'a 301 is a failure (not followed) and retried');
SELECT ok((SELECT next_attempt_at BETWEEN (SELECT at FROM t0) + interval '270 s' AND clock_timestamp() + interval '330 s'
             FROM pg_temp.request(pg_temp.id('d_created'))), 'the second after 5 min +-10 %');
SELECT is((pg_temp.claim(pg_temp.id('d_created')))->>'X-Ventros-Attempt', '3', 'the third attempt says so');
UPDATE t0 SET at = clock_timestamp();
SELECT is(pg_temp.answer(pg_temp.id('d_created'), 429, 7200000), 'pending', 'a 429 with Retry-After');
SELECT ok((SELECT next_attempt_at BETWEEN (SELECT at FROM t0) + interval '2 h' AND clock_timestamp() + interval '2 h'
             FROM pg_temp.request(pg_temp.id('d_created'))), 'Retry-After (2 h) wins over a shorter delay (30 min)');
SELECT pg_temp.claim(pg_temp.id('d_created'));
UPDATE t0 SET at = clock_timestamp();
SELECT is(pg_temp.answer(pg_temp.id('d_created'), 503, 172800000), 'pending', 'a 503 with a Retry-After of 2 days');
SELECT ok((SELECT next_attempt_at BETWEEN (SELECT at FROM t0) + interval '24 h' AND clock_timestamp() + interval '24 h'
             FROM pg_temp.request(pg_temp.id('d_created'))), 'Retry-After is capped at 24 h');
SELECT is((SELECT (status, attempts, next_attempt_at IS NOT NULL, response_status)::text
             FROM ventros.get_webhook_delivery(pg_temp.id('d_created'))), '(pending,4,t,503)',
          'the log shows the attempts, the last answer and the next attempt');

-- a short schedule from configuration
SET LOCAL ventros.webhook_retry_schedule = '100ms,200ms';
INSERT INTO ids SELECT 'c6', id FROM ventros.create_contact('Short');
INSERT INTO ids SELECT 'd_short', pg_temp.last_delivery('contacts');
SELECT is((SELECT (retry_schedule, max_attempts)::text FROM pg_temp.request(pg_temp.id('d_short'))),
          '("{00:00:00.1,00:00:00.2}",3)', 'the schedule is configuration: 2 delays, 3 attempts');
SELECT throws_ok($$SET LOCAL ventros.webhook_retry_schedule = '5 fortnights'$$, '22023', NULL, 'a malformed schedule is refused');
SELECT pg_temp.claim(pg_temp.id('d_short'));
SELECT pg_temp.answer(pg_temp.id('d_short'), 500);
SELECT pg_temp.claim(pg_temp.id('d_short'));
SELECT pg_temp.answer(pg_temp.id('d_short'), 502);
SELECT pg_temp.claim(pg_temp.id('d_short'));
SELECT is(pg_temp.answer(pg_temp.id('d_short'), 500), 'dead', 'after the last attempt the request is dead');
SELECT is((SELECT (status, attempts)::text FROM ventros.get_webhook_delivery(pg_temp.id('d_short'))), '(failed,3)',
          'and the delivery failed');
SELECT is((SELECT (failure_count, success_count, failing_since IS NOT NULL, active)::text
             FROM ventros.webhook_subscriptions WHERE id = pg_temp.id('contacts')), '(1,0,t,t)',
          'the handler counted a failure on the subscription');
RESET ventros.webhook_retry_schedule;

-- success
INSERT INTO ids SELECT 'd_ok', pg_temp.last_delivery('created_only');
SELECT pg_temp.claim(pg_temp.id('d_ok'));
SELECT is(pg_temp.answer(pg_temp.id('d_ok'), 204), 'succeeded', 'any 2xx is a success');
SELECT is((SELECT (success_count, failure_count, failing_since IS NULL, last_success_at IS NOT NULL)::text
             FROM ventros.webhook_subscriptions WHERE id = pg_temp.id('created_only')), '(1,0,t,t)',
          'the handler counted a success');
SELECT is((SELECT handler_error FROM pg_temp.request(pg_temp.id('d_ok'))), NULL, 'the handler ran without error');

-- ---- redelivery -----------------------------------------------------------------
SELECT throws_ok(format('SELECT ventros.redeliver_webhook(%L)', pg_temp.id('d_created')), '55000', NULL,
                 'a delivery still being delivered cannot be redelivered');
SELECT throws_ok($$SELECT ventros.redeliver_webhook(gen_random_uuid())$$, 'P0002', NULL, 'an unknown delivery');
INSERT INTO ids SELECT 'd_again', ventros.redeliver_webhook(pg_temp.id('d_short'));
SELECT is((SELECT (event_id, redelivery_of, subscription_id)::text FROM ventros.webhook_deliveries WHERE id = pg_temp.id('d_again')),
          (SELECT (event_id, id, subscription_id)::text FROM ventros.webhook_deliveries WHERE id = pg_temp.id('d_short')),
          'a redelivery is a new delivery of the same event to the same subscription');
SELECT is((pg_temp.request(pg_temp.id('d_again'))).body, (pg_temp.request(pg_temp.id('d_short'))).body,
          'with the same body (same CloudEvents id)');
SELECT is((SELECT (status, attempts)::text FROM ventros.get_webhook_delivery(pg_temp.id('d_again'))), '(pending,0)',
          'and a new series of attempts');
SELECT is((pg_temp.claim(pg_temp.id('d_again')))->>'X-Ventros-Delivery-Id', pg_temp.id('d_again')::text,
          'its own delivery id');
SELECT is((pg_temp.request(pg_temp.id('d_again'))).headers->>'X-Ventros-Event-Id',
          (pg_temp.request(pg_temp.id('d_short'))).headers->>'X-Ventros-Event-Id', 'the same event id header');
SET LOCAL ventros.tenant = 'wh_b';
SELECT throws_ok(format('SELECT ventros.redeliver_webhook(%L)', pg_temp.id('d_short')), 'P0002', NULL,
                 'another tenant''s delivery is not found');
SET LOCAL ventros.tenant = 'wh_a';

-- ---- the delivery log ----------------------------------------------------------
SET LOCAL ROLE ventros_admin;
SELECT is((SELECT count(*)::int FROM ventros.list_webhook_deliveries(pg_temp.id('contacts'))),
          (SELECT count(*)::int FROM ventros.webhook_deliveries WHERE subscription_id = pg_temp.id('contacts')),
          'an admin lists a subscription''s deliveries');
SELECT is((SELECT array_agg(id) FROM ventros.list_webhook_deliveries(pg_temp.id('contacts'), 'failed')),
          ARRAY[pg_temp.id('d_short')], 'by status');
SELECT is((SELECT array_agg(id ORDER BY redelivery_of NULLS FIRST) FROM ventros.list_webhook_deliveries(pg_temp.id('contacts'),
                   event_id => (SELECT event_id FROM ventros.webhook_deliveries WHERE id = pg_temp.id('d_short')))),
          ARRAY[pg_temp.id('d_short'), pg_temp.id('d_again')], 'by event: the delivery and its redelivery');
SELECT is((SELECT count(*)::int FROM (
             SELECT * FROM ventros.list_webhook_deliveries(pg_temp.id('contacts'), page_size => 2)
             UNION
             SELECT n.* FROM (SELECT * FROM ventros.list_webhook_deliveries(pg_temp.id('contacts'), page_size => 2)
                               ORDER BY created_at, id LIMIT 1) last,
                    LATERAL ventros.list_webhook_deliveries(pg_temp.id('contacts'), before_created_at => last.created_at,
                                                            before_id => last.id, page_size => 100) n) pages),
          (SELECT count(*)::int FROM ventros.webhook_deliveries WHERE subscription_id = pg_temp.id('contacts')),
          'keyset pages cover every delivery once');
SELECT throws_ok($$SELECT * FROM ventros.list_webhook_deliveries(status => 'lost')$$, '22023', NULL, 'unknown status');
SET LOCAL ventros.tenant = 'wh_b';
SELECT is((SELECT count(*)::int FROM ventros.webhook_delivery_log WHERE tenant_id = 'wh_a'), 0,
          'tenant B''s admin sees none of A''s deliveries');
RESET ROLE;
SET LOCAL ventros.tenant = 'wh_a';
SET LOCAL ROLE ventros_viewer;
SELECT throws_ok($$SELECT count(*) FROM ventros.webhook_deliveries$$, '42501', NULL, 'viewers do not read the delivery log');
RESET ROLE;

-- ---- 410 Gone and five days of failures ------------------------------------------
INSERT INTO ids SELECT 'c7', id FROM ventros.create_contact('Gone');
INSERT INTO ids SELECT 'd_gone', pg_temp.last_delivery('created_only');
SELECT ventros.update_contact(pg_temp.id('c7'), 1, '{"name": "Gone again"}');
INSERT INTO ids SELECT 'd_waiting', pg_temp.last_delivery('created_only');
SELECT pg_temp.claim(pg_temp.id('d_gone'));
SELECT is(pg_temp.answer(pg_temp.id('d_gone'), 410), 'failed', '410 Gone is not retried');
SELECT is((SELECT active FROM ventros.webhook_subscriptions WHERE id = pg_temp.id('created_only')), false,
          '410 Gone disables the subscription at once');
SELECT ok(EXISTS (SELECT 1 FROM ventros.outbox WHERE aggregate_id = pg_temp.id('created_only')
                   AND event_type = 'webhook_subscription.deactivated'), 'with its webhook_subscription.deactivated event');
SELECT is((SELECT (status, attempts)::text FROM ventros.get_webhook_delivery(pg_temp.id('d_waiting'))), '(failed,0)',
          'its deliveries waiting for an attempt are stopped');
INSERT INTO ids SELECT 'c8', id FROM ventros.create_contact('After gone');
SELECT is((SELECT count(*)::int FROM ventros.webhook_deliveries WHERE aggregate_id = pg_temp.id('c8')
             AND subscription_id = pg_temp.id('created_only')), 0, 'and it receives no new events');
SELECT throws_ok(format('SELECT ventros.redeliver_webhook(%L)', pg_temp.id('d_gone')), '55000', NULL,
                 'nothing is redelivered to an inactive subscription');

UPDATE ventros.webhook_subscriptions SET failing_since = now() - interval '4 days', version = version
 WHERE id = pg_temp.id('contacts');
SELECT is(ventros.disable_failing_webhook_subscriptions(now()), 0, 'failing for 4 days: still active');
SELECT is(ventros.disable_failing_webhook_subscriptions(now() + interval '1 day 1 second'), 1,
          'failing for 5 days (time is a parameter): disabled');
SELECT is((SELECT active FROM ventros.webhook_subscriptions WHERE id = pg_temp.id('contacts')), false, 'now inactive');
UPDATE ventros.webhook_subscriptions SET failing_since = now() - interval '6 days', version = version
 WHERE id IN (pg_temp.id('deleted_only'), pg_temp.id('b_contacts'));
SELECT is((SELECT array_agg((t.tenant_id, t.disabled)::text ORDER BY t.tenant_id) FROM ventros.tick_webhooks(now()) t),
          ARRAY['(wh_a,1)', '(wh_b,1)'], 'the platform tick disables them in every tenant');

-- ---- secret rotation ---------------------------------------------------------------
INSERT INTO ids SELECT 'rot', id FROM ventros.create_webhook_subscription('Rotating', 'https://hooks.example.com/r',
    ARRAY['contact.created'], secret => 'old_secret_abcdefghijklmnop');
SELECT is((ventros.rotate_webhook_secret(pg_temp.id('rot'), 1, 'new_secret_abcdefghijklmnop')).version, 2, 'rotated');
INSERT INTO ids SELECT 'c9', id FROM ventros.create_contact('Rotation');
INSERT INTO ids SELECT 'd_rot', pg_temp.last_delivery('rot');
CREATE TEMP TABLE rot AS SELECT pg_temp.claim(pg_temp.id('d_rot'))->>'X-Ventros-Signature' AS sig,
                                (pg_temp.request(pg_temp.id('d_rot'))).body AS body;
SELECT ok((SELECT sig ~ '^t=[0-9]+,v1=[0-9a-f]{64},v1=[0-9a-f]{64}$' FROM rot), 'two v1 during the overlap');
SELECT ok((SELECT pg_temp.signature_ok(sig, body, 'new_secret_abcdefghijklmnop')
              AND pg_temp.signature_ok(sig, body, 'old_secret_abcdefghijklmnop') FROM rot), 'one per secret');
SELECT ok(NOT EXISTS (SELECT 1 FROM ventros.outbox WHERE aggregate_id = pg_temp.id('rot')
                       AND (payload::text LIKE '%secret_abcdef%')), 'no secret in the events');

SELECT * FROM finish();
ROLLBACK;
