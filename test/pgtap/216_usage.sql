-- Usage metering, plan limits and the Stripe outbound calls
-- (sql/65_usage_metering.sql, sql/66_stripe_outbound.sql, docs/billing.md):
-- messages counted as appended deltas, folded into totals and meters, read
-- exactly before and after the fold; limits from the plan refused with VN020
-- and billing.limit_reached once per period and metric; Stripe calls queued
-- form-encoded with an Idempotency-Key and the key added per attempt only;
-- the answers applied by their handlers; tenant roles refused throughout.
BEGIN;
SELECT plan(56);

SELECT ventros.create_tenant('t_usage', 'Usage');
SET LOCAL ventros.tenant = 't_usage';
SET LOCAL ROLE ventros_admin;
CREATE TEMP TABLE ids AS SELECT ventros_test.new_channel('waha') AS channel, ventros_test.new_agent() AS agent,
                                NULL::uuid AS contact, NULL::uuid AS account, NULL::uuid AS meter;
GRANT ALL ON ids TO PUBLIC;
CREATE FUNCTION pg_temp.send(text) RETURNS uuid LANGUAGE sql AS
    $$ SELECT (ventros.send_message(i.channel, i.contact, $1, i.agent)).id FROM ids i $$;
CREATE FUNCTION pg_temp.receive(text) RETURNS uuid LANGUAGE sql AS
    $$ SELECT (ventros.receive_message(i.channel, '5511977770000@c.us', $1, channel_message_id => $1)).contact_id FROM ids i $$;
CREATE FUNCTION pg_temp.used(text) RETURNS bigint LANGUAGE sql AS
    $$ SELECT quantity FROM ventros.usage_status() WHERE metric = $1 $$;
CREATE FUNCTION pg_temp.limit_events(text) RETURNS bigint LANGUAGE sql AS
    $$ SELECT count(*) FROM ventros.outbox WHERE event_type = 'billing.limit_reached' AND payload->>'metric' = $1
                                            AND tenant_id = 't_usage' $$;
GRANT EXECUTE ON FUNCTION pg_temp.send(text), pg_temp.receive(text), pg_temp.used(text), pg_temp.limit_events(text) TO PUBLIC;

-- ---- metering: appended, read exactly before and after the fold
SET LOCAL ROLE ventros_agent;
UPDATE ids SET contact = pg_temp.receive('in-1');
SELECT is((SELECT count(*) FROM ventros.usage_deltas WHERE metric = 'messages_received' AND channel_id = (SELECT channel FROM ids)),
          1::bigint, 'an inbound message appends a delta for its channel');
SELECT is(pg_temp.used('messages_received'), 1::bigint, 'read before the fold: the pending delta counts');
SELECT lives_ok($$SELECT pg_temp.send('one')$$, 'a reply sent');
SELECT lives_ok($$SELECT pg_temp.send('two')$$, 'another');
SELECT is((SELECT count(*) FROM ventros.usage_deltas WHERE metric = 'messages_sent'), 2::bigint,
          'each send appends its own row: no row is updated, so writers never queue on one');
SELECT is(pg_temp.used('messages_sent'), 2::bigint, 'messages sent, pending');
SET LOCAL ROLE ventros_platform_admin;
SELECT is(ventros.fold_usage(), 2, 'the fold writes one totals row per metric, channel and day');
SET LOCAL ROLE ventros_agent;
SELECT is((SELECT count(*) FROM ventros.usage_deltas), 0::bigint, 'the deltas are gone once folded');
SELECT results_eq($$SELECT metric, quantity FROM ventros.usage_status() WHERE metric LIKE 'messages%' ORDER BY 1$$,
                  $$VALUES ('messages_received', 1::bigint), ('messages_sent', 2::bigint)$$, 'read after the fold: the same');
SELECT results_eq($$SELECT channel_id, messages_sent, messages_received FROM ventros.usage_by_channel()$$,
                  $$SELECT channel, 2::bigint, 1::bigint FROM ids$$, 'usage per channel');
SELECT lives_ok($$SELECT pg_temp.send('three')$$, 'one more after the fold');
SELECT is(pg_temp.used('messages_sent'), 3::bigint, 'folded plus pending');
SELECT is(pg_temp.used('active_contacts'), 1::bigint, 'one contact with messages in the period');

-- ---- enrichments and AI tokens
RESET ROLE;
SELECT lives_ok($$SELECT ventros.meter_usage(ARRAY['enrichments', 'ai_tokens'], ARRAY[1, 1234]::bigint[])$$,
                'an enrichment with its tokens is metered');
SET LOCAL ROLE ventros_agent;
SELECT results_eq($$SELECT metric, quantity FROM ventros.usage_status() WHERE metric IN ('enrichments', 'ai_tokens') ORDER BY 1$$,
                  $$VALUES ('ai_tokens', 1234::bigint), ('enrichments', 1::bigint)$$, 'enrichments and tokens read');
RESET ROLE;
SELECT throws_ok($$SELECT ventros.meter_usage(ARRAY['coffees'], ARRAY[1]::bigint[])$$, '22023', NULL, 'an unknown metric is refused');

-- ---- plan limits
SET LOCAL ROLE ventros_platform_admin;
SELECT throws_ok($$SELECT ventros.set_billing_plan('default', 'Free', '{"messages_sent": -1}')$$, '22023', NULL,
                 'a negative limit is refused');
SELECT throws_ok($$SELECT ventros.set_billing_plan('default', 'Free', '{"coffees": 1}')$$, '22023', NULL,
                 'a limit of an unknown metric is refused');
SELECT is((ventros.set_billing_plan('default', 'Free', '{"messages_sent": 5, "messages_received": 2}')).plan, 'default',
          'the default plan limits tenants without a subscription');
SET LOCAL ROLE ventros_agent;
SELECT results_eq($$SELECT usage_limit, plan, limit_reached FROM ventros.usage_status() WHERE metric = 'messages_sent'$$,
                  $$VALUES (5::bigint, 'default'::text, false)$$, 'the limit is shown with the usage');
SELECT lives_ok($$SELECT pg_temp.send('four')$$, 'the fourth of five is sent');
SELECT is(pg_temp.limit_events('messages_sent'), 0::bigint, 'no event below the limit');
SELECT lives_ok($$SELECT pg_temp.send('five')$$, 'the fifth reaches the limit and is sent');
SELECT is(pg_temp.limit_events('messages_sent'), 1::bigint, 'billing.limit_reached when the limit is reached');
SELECT results_eq($$SELECT payload->>'limit', payload->>'usage', aggregate_type FROM ventros.outbox
                    WHERE event_type = 'billing.limit_reached' AND tenant_id = 't_usage'$$,
                  $$VALUES ('5', '5', 'billing')$$, 'the event says which limit and how much was used');
SELECT throws_ok($$SELECT pg_temp.send('six')$$, 'VN020', 'plan limit reached: 5 messages sent', 'the sixth is refused with VN020');
SELECT is(pg_temp.used('messages_sent'), 5::bigint, 'a refused send counts nothing');
SELECT throws_ok(format('SELECT ventros.send_messages(%L, ARRAY[%L, %L]::uuid[], %L, %L)', (SELECT channel FROM ids),
                        (SELECT contact FROM ids), (SELECT contact FROM ids), 'batch', (SELECT agent FROM ids)),
                 'VN020', NULL, 'a batch over the limit is refused as a whole');
-- inbound is never refused; the fold notes the limit it reaches
SELECT lives_ok($$SELECT pg_temp.receive('in-2')$$, 'an inbound message reaching the limit is received');
SELECT lives_ok($$SELECT pg_temp.receive('in-3')$$, 'and one over it');
SELECT is(pg_temp.limit_events('messages_received'), 0::bigint, 'no event from the inbound path itself');
SET LOCAL ROLE ventros_platform_admin;
SELECT ventros.fold_usage();
SELECT lives_ok($$SELECT ventros.fold_usage()$$, 'folded twice');
SELECT is(pg_temp.limit_events('messages_received'), 1::bigint, 'the fold emits billing.limit_reached, once');
SELECT is(pg_temp.limit_events('messages_sent'), 1::bigint, 'and not again for a limit already noted in the period');
-- a subscription's price names its plan
RESET ROLE;
UPDATE ids SET account = (SELECT b.id FROM ventros.create_billing_account('Usage', 'pay@usage.example', gen_random_uuid()) b);
SELECT ventros.link_stripe_customer(account, 1, 'cus_Usage1') FROM ids;
SELECT ventros.create_subscription(account, 'sub_Usage1', 'price_Pro', 'active', now() - interval '1 day', now() + interval '29 days')
  FROM ids;
SET LOCAL ROLE ventros_platform_admin;
SELECT ventros.set_billing_plan('price_Pro', 'Pro', '{"messages_sent": 100}');
SET LOCAL ROLE ventros_agent;
SELECT results_eq($$SELECT usage_limit, plan, limit_reached FROM ventros.usage_status() WHERE metric = 'messages_sent'$$,
                  $$VALUES (100::bigint, 'price_Pro'::text, false)$$, 'the subscription''s plan and period apply');
SELECT lives_ok($$SELECT pg_temp.send('six again')$$, 'so the send goes out again');

-- ---- usage meters follow the fold
RESET ROLE;
UPDATE ids SET meter = (SELECT m.id FROM ids i, ventros.create_usage_meter(i.account, 'messages_sent', 'ventros_messages.sent',
                         'mtr_Usage1', now() - interval '1 day', now() + interval '29 days') m);
SET LOCAL ROLE ventros_platform_admin;
SELECT ventros.fold_usage();
SELECT is((SELECT quantity FROM ventros.usage_meters WHERE id = (SELECT meter FROM ids)), 6::bigint,
          'the meter of the current period holds the folded usage');

-- ---- Stripe: form bodies, keys, handlers
RESET ROLE;
SELECT is(ventros.stripe_form('{"email": "a b@x.com", "items": [{"price": "price_1"}], "metadata": {"k": "ç"}, "none": null}'),
          'email=a%20b%40x.com&items[0][price]=price_1&metadata[k]=%C3%A7', 'a Stripe form body');
SET LOCAL ROLE ventros_platform_admin;
SELECT is(ventros.report_usage_to_stripe(), 0, 'nothing is queued while Stripe is not configured');
SELECT throws_ok($$SELECT ventros.configure_stripe('pk_test_123456789')$$, '22023', NULL, 'a publishable key is refused');
SELECT lives_ok($$SELECT ventros.configure_stripe('sk_test_usagekey123', 'http://127.0.0.1:9')$$, 'the secret key is stored');
SELECT is(ventros.report_usage_to_stripe(), 1, 'the unreported usage is queued as a meter event');
SELECT is(ventros.report_usage_to_stripe(), 0, 'not twice while the first is pending');
RESET ROLE;
SELECT results_eq($$SELECT url, headers->>'Idempotency-Key', headers ? 'Authorization',
                           convert_from(body, 'UTF8') ~ 'payload\[value\]=6' AND convert_from(body, 'UTF8') ~ 'event_name=ventros_messages.sent'
                      FROM ventros.http_requests WHERE tenant_id = 't_usage' AND purpose = 'stripe.meter_event'$$,
                  format($$VALUES ('http://127.0.0.1:9/v1/billing/meter_events', 'usage-%s-6', false, true)$$, (SELECT meter FROM ids)),
                  'a form-encoded meter event with an Idempotency-Key; no key stored on the row');
SELECT is((SELECT ventros.http_attempt_headers(r)->>'Authorization' FROM ventros.http_requests r WHERE r.tenant_id = 't_usage' AND purpose = 'stripe.meter_event'),
          'Bearer sk_test_usagekey123', 'the key is added when an attempt is prepared');
UPDATE ventros.http_requests SET status = 'succeeded', response_status = 200, response_body = convert_to('{"object": "billing.meter_event"}', 'UTF8')
 WHERE tenant_id = 't_usage' AND purpose = 'stripe.meter_event';
SELECT ventros.run_http_request_handler(r) FROM ventros.http_requests r WHERE r.tenant_id = 't_usage' AND purpose = 'stripe.meter_event';
SELECT results_eq($$SELECT quantity, reported_quantity FROM ventros.usage_meters WHERE id = (SELECT meter FROM ids)$$,
                  $$VALUES (6::bigint, 6::bigint)$$, 'Stripe''s answer marks the usage reported');
-- the customer of a new account
UPDATE ids SET account = (SELECT b.id FROM ventros.create_billing_account('Second', 'two@usage.example', gen_random_uuid()) b);
SELECT isnt(ventros.stripe_customer_request(b), NULL, 'a customer is requested') FROM ids, ventros.billing_accounts b WHERE b.id = ids.account;
SELECT results_eq($$SELECT url, headers->>'Idempotency-Key' FROM ventros.http_requests WHERE tenant_id = 't_usage' AND purpose = 'stripe.customer'$$,
                  format($$VALUES ('http://127.0.0.1:9/v1/customers', 'ventros-customer-%s')$$, (SELECT account FROM ids)),
                  'POST /v1/customers keyed by the account: never two customers');
UPDATE ventros.http_requests SET status = 'succeeded', response_status = 200,
       response_body = convert_to('{"id": "cus_Second1", "object": "customer"}', 'UTF8')
 WHERE tenant_id = 't_usage' AND purpose = 'stripe.customer';
SELECT ventros.run_http_request_handler(r) FROM ventros.http_requests r WHERE r.tenant_id = 't_usage' AND purpose = 'stripe.customer';
SELECT results_eq($$SELECT stripe_customer_id, payment_status FROM ventros.billing_accounts WHERE id = (SELECT account FROM ids)$$,
                  $$VALUES ('cus_Second1'::text, 'pending'::text)$$, 'the customer is linked; the account stays pending');

-- ---- refused to tenant roles
SET LOCAL ROLE ventros_admin;
SELECT throws_ok($$SELECT ventros.set_billing_plan('default', 'Mine', '{}')$$, '42501', NULL, 'an admin sets no plan');
SELECT throws_ok($$SELECT ventros.fold_usage()$$, '42501', NULL, 'an admin does not fold');
SELECT throws_ok($$SELECT ventros.meter_usage(ARRAY['messages_sent'], ARRAY[1]::bigint[])$$, '42501', NULL, 'an admin meters nothing');
SELECT throws_ok($$INSERT INTO ventros.usage_deltas (tenant_id, metric, quantity) VALUES ('t_usage', 'messages_sent', 1)$$,
                 '42501', NULL, 'nor writes deltas');
SELECT throws_ok($$DELETE FROM ventros.usage_totals$$, '42501', NULL, 'nor erases its totals');
SELECT throws_ok($$SELECT ventros.configure_stripe('sk_test_mine12345')$$, '42501', NULL, 'nor sets the Stripe key');
SELECT throws_ok($$SELECT ventros.request_stripe_subscription((SELECT account FROM ids), 'price_Free')$$, '42501', NULL,
                 'nor subscribes itself');

SELECT * FROM finish();
ROLLBACK;
