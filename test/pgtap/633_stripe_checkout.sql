-- Stripe Checkout (sql/66_stripe_outbound.sql): a tenant admin's Checkout
-- Session is one dispatcher request (purpose stripe.checkout) with an
-- Idempotency-Key and no key on the row; its URL is read from Stripe's
-- answer; refusals: agents, another tenant's account or request, malformed
-- input, an account without a Stripe customer, a platform without Stripe.
BEGIN;
SELECT plan(12);

SELECT ventros.create_tenant('t_ck', 'Checkout');
SELECT ventros.create_tenant('t_ck2', 'Checkout 2');
SET LOCAL ventros.tenant = 't_ck';
CREATE TEMP TABLE ids AS
SELECT (ventros.create_billing_account('Checkout', 'pay@ck.example', gen_random_uuid())).id AS account, NULL::uuid AS request;
GRANT ALL ON ids TO PUBLIC;
CREATE FUNCTION pg_temp.checkout(price text DEFAULT 'price_Pro', url text DEFAULT 'https://app.example/ok') RETURNS uuid
LANGUAGE sql AS $$ SELECT ventros.create_stripe_checkout(account, price, url, 'https://app.example/back') FROM ids $$;
GRANT EXECUTE ON FUNCTION pg_temp.checkout(text, text) TO PUBLIC;

SET LOCAL ROLE ventros_admin;
SELECT throws_ok($$SELECT pg_temp.checkout()$$, '55000', 'billing account ' || (SELECT account FROM ids) || ' has no Stripe customer yet',
                 'an account without a Stripe customer cannot check out');
RESET ROLE;
SELECT ventros.link_stripe_customer(account, 1, 'cus_Checkout1') FROM ids;
SET LOCAL ROLE ventros_admin;
SELECT throws_ok($$SELECT pg_temp.checkout()$$, '55000', 'Stripe is not configured on this platform',
                 'nor on a platform without Stripe');
RESET ROLE;
SELECT ventros.configure_stripe('sk_test_checkout0123456789', 'http://127.0.0.1:9');
SET LOCAL ROLE ventros_admin;
SELECT throws_ok($$SELECT pg_temp.checkout('gold')$$, '22P02', NULL, 'a malformed price is refused');
SELECT throws_ok($$SELECT pg_temp.checkout(url => 'javascript:alert(1)')$$, '22023', NULL, 'a return URL that is not http(s) too');
UPDATE ids SET request = pg_temp.checkout();
SELECT ok((SELECT request IS NOT NULL FROM ids), 'a tenant admin creates a checkout session: a request id');
SELECT results_eq($$SELECT purpose, method, url, correlation_id FROM ventros.http_requests WHERE id = (SELECT request FROM ids)$$,
                  $$SELECT 'stripe.checkout'::text, 'POST'::text, 'http://127.0.0.1:9/v1/checkout/sessions'::text, account FROM ids$$,
                  'one dispatcher request to POST /v1/checkout/sessions for the account');
SELECT ok((SELECT headers->>'Idempotency-Key' ~ '^ventros-checkout-' AND NOT headers ? 'Authorization'
             FROM ventros.http_requests WHERE id = (SELECT request FROM ids)),
          'with an Idempotency-Key of its own, and never the platform''s key on the row');
SELECT is((SELECT convert_from(body, 'UTF8') ~ 'line_items%5B0%5D%5Bprice%5D=price_Pro|line_items\[0\]\[price\]=price_Pro'
             FROM ventros.http_requests WHERE id = (SELECT request FROM ids)), true, 'form-encoded with the price as a line item');
SELECT results_eq($$SELECT status, session_id, url FROM ventros.stripe_checkout_session((SELECT request FROM ids))$$,
                  $$VALUES ('pending'::text, NULL::text, NULL::text)$$, 'no URL before Stripe answered');
RESET ROLE;
SET LOCAL ventros.tenant = 't_ck2';
SET LOCAL ROLE ventros_admin;
SELECT throws_ok($$SELECT ventros.stripe_checkout_session((SELECT request FROM ids))$$, 'P0002', NULL,
                 'another tenant does not see the request');
SELECT throws_ok($$SELECT pg_temp.checkout()$$, 'P0002', NULL, 'nor check out another tenant''s account');
RESET ROLE;
SET LOCAL ventros.tenant = 't_ck';
SET LOCAL ROLE ventros_agent;
SELECT throws_ok($$SELECT pg_temp.checkout()$$, '42501', NULL, 'an agent may not check out');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
