-- Requests to Stripe are the platform's (sql/66_stripe_outbound.sql): a tenant
-- administrator, who may queue and change the tenant's own dispatcher requests
-- directly, can neither queue a stripe.* request (whose preparer adds the
-- platform's secret key and whose answer handler applies what the answer says)
-- nor turn an existing one elsewhere; and the preparer adds the key only on the
-- configured Stripe origin.
BEGIN;
SELECT plan(9);

SELECT ventros.create_tenant('t_sr', 'Stripe reserved');
SELECT ventros.configure_stripe('sk_test_reserved0123456789', 'http://127.0.0.1:9');
SET LOCAL ventros.tenant = 't_sr';
CREATE TEMP TABLE ids AS
SELECT (ventros.create_billing_account('Reserved', 'pay@sr.example', gen_random_uuid())).id AS account, NULL::uuid AS request;
GRANT ALL ON ids TO PUBLIC;
SELECT ventros.link_stripe_customer(account, 1, 'cus_Reserved1') FROM ids;
UPDATE ids SET request = ventros.create_stripe_checkout(account, 'price_Pro', 'https://app.example/ok', 'https://app.example/back');

SET LOCAL ROLE ventros_admin;
SELECT throws_ok($$INSERT INTO ventros.http_requests (url, purpose, max_attempts)
                   VALUES ('https://attacker.example/v1/subscriptions', 'stripe.subscription', 1)$$,
                 '42501', NULL, 'a tenant administrator cannot queue a request to Stripe');
SELECT throws_ok($$INSERT INTO ventros.http_requests (url, purpose, max_attempts)
                   VALUES ('http://127.0.0.1:9/v1/customers', 'stripe.customer', 1)$$,
                 '42501', NULL, 'not even to the configured Stripe origin');
SELECT lives_ok($$INSERT INTO ventros.http_requests (url, purpose, max_attempts)
                  VALUES ('https://hooks.example/ping', 'generic', 1)$$,
                'the tenant''s own requests of other purposes still go in');
UPDATE ventros.http_requests SET url = 'https://attacker.example/v1/checkout/sessions', status = 'pending'
 WHERE id = (SELECT request FROM ids);
SELECT throws_ok($$UPDATE ventros.http_requests SET purpose = 'stripe.checkout' WHERE url = 'https://hooks.example/ping'$$,
                 '42501', NULL, 'nor can a request of its own become one');
SELECT is((SELECT count(*)::int FROM ventros.http_requests WHERE id = (SELECT request FROM ids)), 1,
          'the administrator still sees the tenant''s checkout request');
RESET ROLE;
SELECT is((SELECT url FROM ventros.http_requests WHERE id = (SELECT request FROM ids)),
          'http://127.0.0.1:9/v1/checkout/sessions', 'and its URL was not changed by the administrator''s update');

-- the preparer: the key on the configured origin only
SELECT is((SELECT ventros.stripe_request_headers(r)->>'Authorization' FROM ventros.http_requests r
            WHERE r.id = (SELECT request FROM ids)),
          'Bearer sk_test_reserved0123456789', 'the key is added for the configured Stripe origin');
SELECT ok(NOT (SELECT ventros.stripe_request_headers(
                         jsonb_populate_record(x, '{"url": "https://attacker.example/v1/checkout/sessions"}')) ? 'Authorization'
                 FROM ventros.http_requests x WHERE x.id = (SELECT request FROM ids)),
          'never for another host');
SELECT ok(NOT (SELECT ventros.stripe_request_headers(
                         jsonb_populate_record(x, '{"url": "http://127.0.0.1:9.attacker.example/v1/customers"}')) ? 'Authorization'
                 FROM ventros.http_requests x WHERE x.id = (SELECT request FROM ids)),
          'nor for a host that only starts like it');

SELECT * FROM finish();
ROLLBACK;
