-- Stripe webhooks (sql/66_stripe_webhooks.sql): the signature (tolerance,
-- several v1, several secrets, rotation), once per event id, the tenant by
-- the customer, state order (stale events, walks through the transitions),
-- every kind of event applied with its events, failures kept, and who may
-- see or manage what.  Deliveries go through accept_platform_webhook, the
-- front's entry, signed here as Stripe signs them.
BEGIN;
SELECT * FROM no_plan();

SELECT ventros.create_tenant('t_stripe_a', 'Stripe A');
SELECT ventros.create_tenant('t_stripe_b', 'Stripe B');
CREATE TEMP TABLE acct (tenant text PRIMARY KEY, id uuid);
GRANT SELECT ON acct TO PUBLIC;
SET LOCAL ventros.tenant = 't_stripe_a';
INSERT INTO acct SELECT 't_stripe_a', (ventros.link_stripe_customer(b.id, b.version, 'cus_A1')).id
FROM ventros.create_billing_account('Acme', 'pay@acme.example', gen_random_uuid()) b;
SET LOCAL ventros.tenant = 't_stripe_b';
INSERT INTO acct SELECT 't_stripe_b', (ventros.link_stripe_customer(b.id, b.version, 'cus_B1')).id
FROM ventros.create_billing_account('Beta', 'pay@beta.example', gen_random_uuid()) b;
RESET ventros.tenant;

-- A delivery as Stripe makes it: Stripe-Signature t=<now>,v1=HMAC(secret, "t.body").
CREATE FUNCTION pg_temp.sign(body text, secret text, at timestamptz DEFAULT now()) RETURNS text LANGUAGE sql AS $$
    SELECT format('t=%s,v1=%s', extract(epoch FROM at)::bigint,
                  encode(ventros.webhook_hmac(convert_to(extract(epoch FROM at)::bigint || '.' || body, 'UTF8'), secret, 'sha256'), 'hex'))
$$;
CREATE FUNCTION pg_temp.deliver(body text, signature text) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('status', w.http_status) || coalesce(w.response, '{}')
    FROM ventros.accept_platform_webhook('stripe', jsonb_build_object('Stripe-Signature', signature), convert_to(body, 'UTF8')) w
$$;
CREATE FUNCTION pg_temp.event(id text, type text, obj jsonb, created integer DEFAULT 1800000000) RETURNS text LANGUAGE sql AS $$
    SELECT jsonb_build_object('id', id, 'object', 'event', 'type', type, 'created', created, 'livemode', false,
                              'data', jsonb_build_object('object', obj))::text
$$;
CREATE FUNCTION pg_temp.send(id text, type text, obj jsonb, created integer DEFAULT 1800000000) RETURNS jsonb LANGUAGE sql AS $$
    SELECT pg_temp.deliver(pg_temp.event(id, type, obj, created), pg_temp.sign(pg_temp.event(id, type, obj, created), 'whsec_first0123'))
$$;
CREATE FUNCTION pg_temp.events_of(agg uuid) RETURNS text[] LANGUAGE sql AS
    $$ SELECT array_agg(event_type ORDER BY seq) FROM ventros.outbox WHERE aggregate_id = agg $$;
CREATE FUNCTION pg_temp.account(t text) RETURNS ventros.billing_accounts LANGUAGE sql AS
    $$ SELECT b FROM ventros.billing_accounts b WHERE b.tenant_id = t $$;

-- ---- not configured, unknown endpoint --------------------------------------------
SELECT is(pg_temp.send('evt_early', 'customer.updated', '{"object": "customer", "id": "cus_A1"}')->>'status', '503',
          'no signing secret yet: 503, so Stripe retries until one is configured');
SELECT is((SELECT w.http_status FROM ventros.accept_platform_webhook('paypal', '{}', '') w), 404,
          'a platform webhook not registered answers 404');

-- ---- the signing secrets ---------------------------------------------------------------
SELECT throws_ok($$SELECT ventros.add_stripe_webhook_secret('first0123')$$, '22023', NULL, 'a secret must look like whsec_...');
SELECT ok(ventros.add_stripe_webhook_secret('whsec_first0123') IS NOT NULL, 'a platform admin adds a signing secret');
SELECT is((SELECT count(*)::integer FROM ventros.stripe_webhook_secrets() WHERE active), 1, 'listed as active, without the secret');
SELECT is((SELECT count(*)::integer FROM ventros.stripe_webhook_secrets s
           WHERE position('whsec_first0123' IN encode(s.secret, 'escape')) > 0), 0, 'the secret is stored encrypted');
SET LOCAL ROLE ventros_admin;
SET LOCAL ventros.tenant = 't_stripe_a';
SELECT throws_ok($$SELECT ventros.add_stripe_webhook_secret('whsec_mine012345')$$, '42501', NULL, 'a tenant admin cannot add a secret');
SELECT throws_ok($$SELECT * FROM ventros.stripe_webhook_secrets s$$, '42501', NULL, 'nor read the secrets table');
RESET ROLE;
RESET ventros.tenant;

-- ---- the signature ---------------------------------------------------------------------
SELECT is(ventros.verify_stripe_signature(pg_temp.sign('{}', 'whsec_k1'), '{}', '{whsec_k1}', now()), NULL, 'a valid signature');
SELECT is(ventros.verify_stripe_signature(pg_temp.sign('{}', 'whsec_k2'), '{}', '{whsec_k1}', now()), 'invalid_signature',
          'signed with another secret');
SELECT is(ventros.verify_stripe_signature(pg_temp.sign('{}', 'whsec_k1'), '{ }', '{whsec_k1}', now()), 'invalid_signature',
          'a body changed by one byte');
SELECT is(ventros.verify_stripe_signature(pg_temp.sign('{}', 'whsec_k1', now() - interval '301 seconds'), '{}', '{whsec_k1}', now()),
          'timestamp_outside_tolerance', 'signed 301 s ago: a replay, refused');
SELECT is(ventros.verify_stripe_signature(pg_temp.sign('{}', 'whsec_k1', now() - interval '299 seconds'), '{}', '{whsec_k1}', now()),
          NULL, 'signed 299 s ago: within the tolerance');
SELECT is(ventros.verify_stripe_signature(pg_temp.sign('{}', 'whsec_k1', now() + interval '301 seconds'), '{}', '{whsec_k1}', now()),
          'timestamp_outside_tolerance', 'signed in the future beyond the tolerance');
SELECT is(ventros.verify_stripe_signature(NULL, '{}', '{whsec_k1}', now()), 'missing_signature', 'no header');
SELECT is(ventros.verify_stripe_signature('v1=' || repeat('ab', 32), '{}', '{whsec_k1}', now()), 'malformed_signature', 'no timestamp');
SELECT is(ventros.verify_stripe_signature('t=' || extract(epoch FROM now())::bigint, '{}', '{whsec_k1}', now()),
          'malformed_signature', 'no v1 signature');
SELECT is(ventros.verify_stripe_signature('t=' || extract(epoch FROM now())::bigint || ',v1=zz', '{}', '{whsec_k1}', now()),
          'malformed_signature', 'a v1 that is not hex of 32 bytes');
SELECT is(ventros.verify_stripe_signature(replace(pg_temp.sign('{}', 'whsec_k1'), 'v1=', 'v0=' || repeat('00', 32) || ',v1=' || repeat('11', 32) || ',v1='),
                                          '{}', '{whsec_k1}', now()), NULL, 'one of several v1 signatures matches (v0 ignored)');
SELECT is(ventros.verify_stripe_signature(pg_temp.sign('{}', 'whsec_k1') || repeat(',v1=' || repeat('ab', 32), 8), '{}', '{whsec_k1}', now()),
          'malformed_signature', 'more than 8 v1 signatures: refused before any HMAC is computed');
SELECT is(ventros.verify_stripe_signature(pg_temp.sign('{}', 'whsec_k2'), '{}', '{whsec_k1,whsec_k2}', now()), NULL,
          'one of several secrets (a rolled secret) verifies');

SELECT is(pg_temp.deliver('{}', NULL)->>'error', 'missing_signature', 'unsigned delivery: 400 missing_signature');
SELECT is(pg_temp.deliver(pg_temp.event('evt_forged', 'invoice.paid', '{"object": "invoice", "id": "in_X", "customer": "cus_A1"}'),
                          pg_temp.sign(pg_temp.event('evt_forged', 'invoice.paid', '{}'), 'whsec_first0123'))->>'status', '400',
          'a signature of another body: 400');
SELECT is((SELECT count(*)::integer FROM ventros.stripe_events WHERE id = 'evt_forged'), 0, 'and nothing is recorded');
SELECT is(pg_temp.deliver('not json', pg_temp.sign('not json', 'whsec_first0123')), '{"status": 400, "error": "malformed_event"}',
          'a signed body that is not an event: 400 malformed_event');

-- ---- state order helper -------------------------------------------------------------
SELECT is(ventros.transition_path('invoice', 'draft', 'paid'), '{open,paid}', 'draft to paid walks through open');
SELECT is(ventros.transition_path('subscription', 'incomplete', 'past_due'), '{active,past_due}', 'incomplete to past_due through active');
SELECT is(ventros.transition_path('invoice', 'paid', 'paid'), '{}', 'no walk to where it is');
SELECT is(ventros.transition_path('invoice', 'void', 'paid'), NULL, 'no walk out of void');

-- ---- checkout, once ---------------------------------------------------------------------
SELECT is(pg_temp.send('evt_co1', 'checkout.session.completed',
                       '{"object": "checkout.session", "id": "cs_1", "customer": "cus_A1", "subscription": "sub_A1"}'),
          '{"status": 200, "outcome": "applied", "received": true}', 'checkout.session.completed applied');
SELECT is((pg_temp.account('t_stripe_a')).payment_status, 'active', 'the account is active');
SELECT is((SELECT ventros.stripe_customer_account('cus_A1')).tenant_id, 't_stripe_a', 'the customer names tenant A''s account');
SELECT ok('billing_account.payment_activated' = ANY (pg_temp.events_of((SELECT id FROM acct WHERE tenant = 't_stripe_a'))),
          'billing_account.payment_activated emitted');
SELECT is(pg_temp.send('evt_co1', 'checkout.session.completed',
                       '{"object": "checkout.session", "id": "cs_1", "customer": "cus_A1", "subscription": "sub_A1"}'),
          '{"status": 200, "received": true, "duplicate": true}', 'the same event again: duplicate');
SELECT is((pg_temp.account('t_stripe_a')).version, 3, 'and nothing changed (created, linked, activated)');

-- ---- subscriptions: created, updated, stale, deleted ---------------------------------
SELECT is(pg_temp.send('evt_s1', 'customer.subscription.created',
                       '{"object": "subscription", "id": "sub_A1", "customer": "cus_A1", "status": "active",
                         "items": {"data": [{"price": {"id": "price_basic"}, "current_period_start": 1800000000, "current_period_end": 1802592000}]}}',
                       1800000100)->>'outcome', 'applied', 'customer.subscription.created applied');
SELECT is((SELECT status || ' ' || stripe_price_id || ' ' || current_period_end::date FROM ventros.subscriptions WHERE stripe_subscription_id = 'sub_A1'),
          'active price_basic 2027-02-14', 'mirrored: status, price, period from the items');
SELECT is(pg_temp.send('evt_s2', 'customer.subscription.updated',
                       '{"object": "subscription", "id": "sub_A1", "customer": "cus_A1", "status": "past_due",
                         "items": {"data": [{"price": {"id": "price_pro"}, "current_period_start": 1800000000, "current_period_end": 1802592000}]}}',
                       1800000300)->>'outcome', 'applied', 'customer.subscription.updated applied');
SELECT is((SELECT status || ' ' || stripe_price_id FROM ventros.subscriptions WHERE stripe_subscription_id = 'sub_A1'),
          'past_due price_pro', 'past due, on the new price');
SELECT is(pg_temp.send('evt_sOld', 'customer.subscription.updated',
                       '{"object": "subscription", "id": "sub_A1", "customer": "cus_A1", "status": "active",
                         "items": {"data": [{"price": {"id": "price_basic"}}]}}',
                       1800000200)->>'outcome', 'stale', 'an older update arriving late is stale');
SELECT is((SELECT status FROM ventros.subscriptions WHERE stripe_subscription_id = 'sub_A1'), 'past_due', 'and changes nothing');
SELECT is(pg_temp.send('evt_s3', 'customer.subscription.deleted',
                       '{"object": "subscription", "id": "sub_A1", "customer": "cus_A1", "status": "canceled"}',
                       1800000400)->>'outcome', 'applied', 'customer.subscription.deleted applied');
SELECT is((SELECT pg_temp.events_of(id) FROM ventros.subscriptions WHERE stripe_subscription_id = 'sub_A1'),
          '{subscription.created,subscription.status_changed,subscription.updated,subscription.price_changed,subscription.canceled}',
          'the subscription''s events, in order: created, past due, updated, new price, canceled');

-- ---- invoices: walked to their status --------------------------------------------------
SELECT is(pg_temp.send('evt_i1', 'invoice.paid',
                       '{"object": "invoice", "id": "in_A1", "customer": "cus_A1", "status": "paid", "amount_due": 4900,
                         "currency": "BRL", "hosted_invoice_url": "https://invoice.stripe.com/i/1", "invoice_pdf": "https://pay.stripe.com/i/1.pdf"}')->>'outcome',
          'applied', 'invoice.paid for an invoice never seen: applied');
SELECT is((SELECT status || ' ' || amount_paid || ' ' || currency || ' ' || hosted_invoice_url FROM ventros.invoices WHERE stripe_invoice_id = 'in_A1'),
          'paid 4900 brl https://invoice.stripe.com/i/1', 'mirrored and paid, with its links');
SELECT is((SELECT pg_temp.events_of(id) FROM ventros.invoices WHERE stripe_invoice_id = 'in_A1'),
          '{invoice.created,invoice.finalized,invoice.paid,invoice.updated}', 'created, finalized, paid: every step has its event');
SELECT is(pg_temp.send('evt_i2', 'invoice.payment_failed',
                       '{"object": "invoice", "id": "in_A2", "customer": "cus_A1", "status": "open", "amount_due": 4900, "currency": "brl"}')->>'outcome',
          'applied', 'invoice.payment_failed applied');
SELECT is((SELECT status || ' ' || payment_failures FROM ventros.invoices WHERE stripe_invoice_id = 'in_A2'), 'open 1',
          'the invoice stays open with one failure');
SELECT ok((SELECT 'invoice.payment_failed' = ANY (pg_temp.events_of(id)) FROM ventros.invoices WHERE stripe_invoice_id = 'in_A2'),
          'invoice.payment_failed emitted');
SELECT is(pg_temp.send('evt_i3', 'invoice.voided',
                       '{"object": "invoice", "id": "in_A2", "customer": "cus_A1", "status": "void", "amount_due": 4900, "currency": "brl"}',
                       1800000500)->>'outcome', 'applied', 'invoice.voided applied');
SELECT is(pg_temp.send('evt_i4', 'invoice.paid',
                       '{"object": "invoice", "id": "in_A2", "customer": "cus_A1", "status": "paid", "amount_due": 4900, "currency": "brl"}',
                       1800000600)->>'outcome', 'failed', 'paid after void cannot be walked: kept as failed, answered 200');
SELECT matches((SELECT detail FROM ventros.stripe_events WHERE id = 'evt_i4'), '^VN002: ', 'with the SQLSTATE and reason');
SELECT is((SELECT status FROM ventros.invoices WHERE stripe_invoice_id = 'in_A2'), 'void', 'and the invoice is unchanged');

-- ---- customer, unmatched, ignored --------------------------------------------------------
SELECT is(pg_temp.send('evt_c1', 'customer.updated', '{"object": "customer", "id": "cus_A1", "email": "Billing@Acme.Example", "name": "Acme Ltd"}')->>'outcome',
          'applied', 'customer.updated applied');
SELECT is((SELECT name || ' ' || billing_email FROM ventros.billing_accounts WHERE tenant_id = 't_stripe_a'), 'Acme Ltd billing@acme.example',
          'the account''s name and email follow');
SELECT is(pg_temp.send('evt_u1', 'invoice.paid', '{"object": "invoice", "id": "in_Z", "customer": "cus_Nobody", "status": "paid"}')->>'outcome',
          'unmatched', 'a customer no account carries: unmatched');
SELECT is((SELECT tenant_id FROM ventros.stripe_events WHERE id = 'evt_u1'), NULL, 'kept without a tenant');
SET LOCAL ventros.tenant = 't_stripe_a';
SELECT ventros.link_stripe_customer(b.id, b.version, 'cus_Shared') FROM ventros.create_billing_account('A2', 'a2@acme.example', gen_random_uuid()) b;
SET LOCAL ventros.tenant = 't_stripe_b';
SELECT ventros.link_stripe_customer(b.id, b.version, 'cus_Shared') FROM ventros.create_billing_account('B2', 'b2@beta.example', gen_random_uuid()) b;
RESET ventros.tenant;
SELECT is(pg_temp.send('evt_u2', 'checkout.session.completed', '{"object": "checkout.session", "id": "cs_2", "customer": "cus_Shared"}')->>'outcome',
          'unmatched', 'a customer two tenants claim: unmatched, applied to neither');
SELECT is(pg_temp.send('evt_x1', 'charge.succeeded', '{"object": "charge", "id": "ch_1", "customer": "cus_B1"}')->>'outcome',
          'ignored', 'an event type billing does not follow: ignored');

-- ---- who sees the events ---------------------------------------------------------------------
SET LOCAL ROLE ventros_admin;
SET LOCAL ventros.tenant = 't_stripe_b';
SELECT is(ARRAY(SELECT id FROM ventros.stripe_events ORDER BY id), '{evt_x1}', 'a tenant admin sees its own Stripe events only');
SET LOCAL ROLE ventros_agent;
SELECT throws_ok($$SELECT * FROM ventros.stripe_events$$, '42501', NULL, 'an agent does not read billing events');
RESET ROLE;
RESET ventros.tenant;

-- ---- rolling the secret ---------------------------------------------------------------------
SELECT ok(ventros.add_stripe_webhook_secret('whsec_second0123', interval '0 seconds') IS NOT NULL, 'a new secret; the old one expires now');
SELECT is(pg_temp.send('evt_r1', 'customer.updated', '{"object": "customer", "id": "cus_B1"}')->>'error', 'invalid_signature',
          'the expired secret no longer verifies');
SELECT is(pg_temp.deliver(pg_temp.event('evt_r2', 'customer.updated', '{"object": "customer", "id": "cus_B1"}'),
                          pg_temp.sign(pg_temp.event('evt_r2', 'customer.updated', '{"object": "customer", "id": "cus_B1"}'), 'whsec_second0123'))->>'outcome',
          'ignored', 'the new one does');
SELECT is((SELECT count(*)::integer FROM ventros.stripe_webhook_secrets() WHERE NOT active), 1, 'the old one is listed as expired');
SELECT ok(ventros.remove_stripe_webhook_secret((SELECT id FROM ventros.stripe_webhook_secrets() WHERE NOT active)), 'and removed');

SELECT * FROM finish();
ROLLBACK;
