-- Billing (aggregates 25-28): commands, every allowed transition, a sample of
-- refused ones, invariants and bad input.  The billing states are the
-- platform's (docs/billing.md): the commands run as ventros_platform_admin,
-- and the end checks that a tenant's admin and agent are refused each one.
BEGIN;
SELECT plan(84);
SELECT ventros.create_tenant('t_billing', 'Billing');
SET LOCAL ventros.tenant = 't_billing';
SET LOCAL ROLE ventros_platform_admin;

CREATE TEMP TABLE ids (name text PRIMARY KEY, id uuid);
INSERT INTO ids SELECT 'a', id FROM ventros.create_billing_account('Acme', ' Pay@Acme.Example ', gen_random_uuid());
CREATE FUNCTION pg_temp.id(n text) RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM ids WHERE name = n $$;
CREATE FUNCTION pg_temp.events(agg uuid) RETURNS text[] LANGUAGE sql AS
    $$ SELECT array_agg(event_type ORDER BY seq) FROM ventros.outbox WHERE aggregate_id = agg $$;

-- billing accounts
SELECT is((ventros.get_billing_account(pg_temp.id('a'))).billing_email, 'pay@acme.example', 'billing email normalized');
SELECT is((ventros.get_billing_account(pg_temp.id('a'))).payment_status, 'pending', 'new account is pending');
SELECT throws_ok($$SELECT ventros.create_billing_account('X', 'not-an-email', gen_random_uuid())$$, '22P02', NULL, 'bad email refused');
SELECT throws_ok($$SELECT ventros.create_billing_account(NULL, 'a@b.co', gen_random_uuid())$$, '23502',
                 'billing account name must not be null', 'null name refused');
SELECT throws_ok($$SELECT ventros.reactivate_billing_account(pg_temp.id('a'), 1)$$, 'VN002', NULL, 'pending -> active only by payment');
SELECT throws_ok($$SELECT ventros.activate_billing_payment(pg_temp.id('a'), 1, '"card"')$$, '22023',
                 'payment method must be a JSON object with an id', 'payment method must be an object');
SELECT throws_ok($$SELECT ventros.activate_billing_payment(pg_temp.id('a'), 7, '{"id": "pm_1"}')$$, 'VN001', NULL, 'stale version refused');
SELECT is((ventros.activate_billing_payment(pg_temp.id('a'), 1, '{"id": "pm_1", "type": "card"}')).payment_status, 'active', 'pending -> active');
SELECT is((ventros.suspend_billing_account(pg_temp.id('a'), 2, 'chargeback')).suspended, true, 'active -> suspended sets the flag');
SELECT throws_ok($$SELECT ventros.activate_billing_payment(pg_temp.id('a'), 3, '{"id": "pm_2"}')$$, 'VN002', NULL,
                 'payment activation refused while suspended');
SELECT is((ventros.reactivate_billing_account(pg_temp.id('a'), 3)).payment_status, 'active', 'suspended -> active');
SELECT is((ventros.link_stripe_customer(pg_temp.id('a'), 4, 'cus_Acme1')).stripe_customer_id, 'cus_Acme1', 'Stripe customer linked');
SELECT throws_ok($$SELECT ventros.link_stripe_customer(pg_temp.id('a'), 5, 'acme')$$, '22P02', NULL, 'malformed Stripe id');
SELECT is((ventros.update_billing_account(pg_temp.id('a'), 5, '{"billing_email": "NEW@acme.example"}')).billing_email,
          'new@acme.example', 'update normalizes the email');
SELECT throws_ok($$SELECT ventros.update_billing_account(pg_temp.id('a'), 6, '{"payment_status": "canceled"}')$$, '22023', NULL,
                 'status is not a plain field');
-- a second account: pending -> suspended -> canceled; a new one pending -> canceled
INSERT INTO ids SELECT 'b', id FROM ventros.create_billing_account('B', 'b@acme.example', gen_random_uuid());
SELECT is((ventros.suspend_billing_account(pg_temp.id('b'), 1, 'fraud')).payment_status, 'suspended', 'pending -> suspended');
SELECT throws_ok($$SELECT ventros.reactivate_billing_account(pg_temp.id('b'), 2)$$, '23514', NULL,
                 'reactivation needs a payment method');
SELECT is((ventros.cancel_billing_account(pg_temp.id('b'), 2)).payment_status, 'canceled', 'suspended -> canceled');
SELECT throws_ok($$SELECT ventros.reactivate_billing_account(pg_temp.id('b'), 3)$$, 'VN002', NULL, 'canceled is terminal');
INSERT INTO ids SELECT 'c', id FROM ventros.create_billing_account('C', 'c@acme.example', gen_random_uuid());
SELECT is((ventros.cancel_billing_account(pg_temp.id('c'), 1)).payment_status, 'canceled', 'pending -> canceled');
INSERT INTO ids SELECT 'd', a.id FROM ventros.create_billing_account('D', 'd@acme.example', gen_random_uuid()) a,
    ventros.activate_billing_payment(a.id, 1, '{"id": "pm_d"}') p, ventros.cancel_billing_account(a.id, 2) c;
SELECT is(pg_temp.events(pg_temp.id('a')), ARRAY['billing_account.created', 'billing_account.payment_activated',
    'billing_account.suspended', 'billing_account.reactivated', 'billing_account.updated',
    'billing_account.stripe_customer_linked', 'billing_account.updated'], 'account events in order');
SELECT ok(pg_temp.events(pg_temp.id('d')) @> ARRAY['billing_account.canceled'], 'active -> canceled');
-- projects under an account are made by sign-up (api.register, as the owner)
RESET ROLE;
SELECT throws_ok($$INSERT INTO ventros.projects (name, billing_account_id) VALUES ('Under B', pg_temp.id('b'))$$, '23514',
                 NULL, 'no project under an account that is not active');
SELECT lives_ok($$INSERT INTO ventros.projects (name, billing_account_id) VALUES ('Under A', pg_temp.id('a'))$$,
                'a project under an active account');
SET LOCAL ROLE ventros_platform_admin;
SELECT ok(NOT EXISTS (SELECT 1 FROM ventros.outbox WHERE aggregate_id = pg_temp.id('a') AND payload::text LIKE '%pm_1%'),
          'payment methods are redacted from events');

-- subscriptions
INSERT INTO ids SELECT 's', id FROM ventros.create_subscription(pg_temp.id('a'), 'sub_A1', 'price_basic', 'trialing',
    now(), now() + interval '1 month', trial_end => now() + interval '14 days');
SELECT is(pg_temp.events(pg_temp.id('s')), ARRAY['subscription.created', 'subscription.trial_started'], 'trial emits trial_started');
SELECT throws_ok($$SELECT ventros.create_subscription(pg_temp.id('a'), 'sub_A2', 'price_basic', 'active', now(), now() + interval '1 month')$$,
                 '23505', 'billing account already has an active or trialing subscription', 'one current subscription per account');
SELECT throws_ok($$SELECT ventros.create_subscription(pg_temp.id('a'), 'sub_A3', 'price_basic', 'past_due', now(), now() + interval '1 month')$$,
                 '22023', NULL, 'past_due is not an initial status');
SELECT throws_ok($$SELECT ventros.create_subscription(pg_temp.id('b'), 'sub_B1', 'price_basic', 'active', now(), now() - interval '1 day')$$,
                 '23514', NULL, 'period end after start');
SELECT is((ventros.set_subscription_status(pg_temp.id('s'), 1, 'active')).status, 'active', 'trialing -> active');
SELECT is((ventros.set_subscription_status(pg_temp.id('s'), 2, 'past_due')).status, 'past_due', 'active -> past_due');
SELECT is((ventros.set_subscription_status(pg_temp.id('s'), 3, 'unpaid')).status, 'unpaid', 'past_due -> unpaid');
SELECT is((ventros.set_subscription_status(pg_temp.id('s'), 4, 'active')).status, 'active', 'unpaid -> active');
SELECT is((ventros.set_subscription_status(pg_temp.id('s'), 5, 'paused')).status, 'paused', 'active -> paused');
SELECT throws_ok($$SELECT ventros.set_subscription_status(pg_temp.id('s'), 6, 'trialing')$$, 'VN002', NULL, 'paused -> trialing refused');
SELECT is((ventros.cancel_subscription(pg_temp.id('s'), 6)).status, 'canceled', 'paused -> canceled');
SELECT is((ventros.reactivate_subscription(pg_temp.id('s'), 7)).status, 'active', 'canceled -> active');
SELECT is((ventros.change_subscription_price(pg_temp.id('s'), 8, 'price_pro')).stripe_price_id, 'price_pro', 'price changed');
SELECT ok((ventros.update_subscription_period(pg_temp.id('s'), 9, now() + interval '1 month', now() + interval '2 months')).version = 10, 'period moved');
SELECT ok((ventros.schedule_subscription_cancellation(pg_temp.id('s'), 10)).cancel_at_period_end, 'cancellation scheduled');
SELECT is(pg_temp.events(pg_temp.id('s')), ARRAY['subscription.created', 'subscription.trial_started',
    'subscription.status_changed', 'subscription.status_changed', 'subscription.status_changed', 'subscription.status_changed',
    'subscription.status_changed', 'subscription.canceled', 'subscription.reactivated', 'subscription.updated',
    'subscription.price_changed', 'subscription.updated', 'subscription.period_updated', 'subscription.updated',
    'subscription.cancellation_scheduled'], 'subscription events in order');

-- invoices
INSERT INTO ids SELECT 'i', id FROM ventros.create_invoice(pg_temp.id('a'), 'in_1', 4900, 'USD', subscription_id => pg_temp.id('s'));
SELECT is((ventros.get_invoice(pg_temp.id('i'))).amount_remaining, 4900::bigint, 'amount_remaining computed');
SELECT throws_ok($$SELECT ventros.create_invoice(pg_temp.id('a'), 'in_2', -1, 'usd')$$, '23514', NULL, 'negative amount refused');
SELECT throws_ok($$SELECT ventros.create_invoice(pg_temp.id('a'), 'in_1', 1, 'usd')$$, '23505', 'Stripe invoice in_1 exists already', 'duplicate Stripe id');
SELECT throws_ok($$SELECT ventros.pay_invoice(pg_temp.id('i'), 1)$$, 'VN002', NULL, 'draft -> paid refused');
SELECT is((ventros.finalize_invoice(pg_temp.id('i'), 1)).status, 'open', 'draft -> open');
SELECT is((ventros.record_invoice_payment_failure(pg_temp.id('i'), 2, 'card declined')).status, 'open', 'failed payment keeps it open');
SELECT is((ventros.mark_invoice_uncollectible(pg_temp.id('i'), 3)).status, 'uncollectible', 'open -> uncollectible');
SELECT is((ventros.pay_invoice(pg_temp.id('i'), 4)).amount_remaining, 0::bigint, 'uncollectible -> paid, nothing remains');
SELECT throws_ok($$SELECT ventros.void_invoice(pg_temp.id('i'), 5)$$, 'VN002', NULL, 'paid is terminal');
INSERT INTO ids SELECT 'j', v.id FROM ventros.create_invoice(pg_temp.id('a'), 'in_3', 100, 'usd', 'open') o,
    ventros.void_invoice(o.id, 1) v;
SELECT is(pg_temp.events(pg_temp.id('i')), ARRAY['invoice.created', 'invoice.finalized', 'invoice.updated', 'invoice.payment_failed',
    'invoice.marked_uncollectible', 'invoice.paid'], 'invoice events in order');

-- usage meters
INSERT INTO ids SELECT 'm', id FROM ventros.create_usage_meter(pg_temp.id('a'), 'messages_sent', 'message.sent', 'mtr_1',
    date_trunc('month', now()), date_trunc('month', now()) + interval '1 month');
SELECT throws_ok($$SELECT ventros.create_usage_meter(pg_temp.id('c'), 'messages_sent', 'message.sent', 'mtr_1', now(), now() + interval '1 day')$$,
                 '23502', NULL, 'meter needs a Stripe customer');
SELECT throws_ok($$SELECT ventros.increment_usage(pg_temp.id('m'), -1)$$, '22023', 'usage quantity must be zero or more', 'negative increment refused');
SELECT is((SELECT (ventros.increment_usage(pg_temp.id('m'), 5)).quantity + (ventros.increment_usage(pg_temp.id('m'), 2)).quantity), 12::bigint, 'increments add up');
SELECT is((ventros.report_usage(pg_temp.id('m'), 3)).reported_quantity, 7::bigint, 'report marks the quantity');
SELECT is((ventros.reset_usage_period(pg_temp.id('m'), 4, date_trunc('month', now()) + interval '1 month',
          date_trunc('month', now()) + interval '2 months')).quantity, 0::bigint, 'period reset');
SELECT ok(pg_temp.events(pg_temp.id('m')) @> ARRAY['usage_meter.created', 'usage_meter.incremented', 'usage_meter.reported',
    'usage_meter.period_reset'], 'meter events');

-- A tenant's own roles may name their account, never set what they paid.
RESET ROLE;
CREATE FUNCTION pg_temp.refused(role_name text, call text) RETURNS text LANGUAGE sql AS
    $$ SELECT ventros_test.run_as(role_name, 't_billing', call) $$;
SELECT matches(pg_temp.refused('ventros_admin', c), '^ERROR 42501: permission denied for function ', 'a tenant admin is refused ' || split_part(c, '(', 1))
FROM unnest(ARRAY[
    format('SELECT ventros.activate_billing_payment(%L, 1, ''{"id": "pm_x"}'')', pg_temp.id('b')),
    format('SELECT ventros.suspend_billing_account(%L, 1, ''x'')', pg_temp.id('b')),
    format('SELECT ventros.reactivate_billing_account(%L, 1)', pg_temp.id('b')),
    format('SELECT ventros.cancel_billing_account(%L, 1)', pg_temp.id('b')),
    format('SELECT ventros.link_stripe_customer(%L, 1, ''cus_Other'')', pg_temp.id('b')),
    format('SELECT ventros.create_subscription(%L, ''sub_X'', ''price_x'', ''active'', now(), now() + interval ''1 month'')', pg_temp.id('b')),
    'SELECT ventros.set_subscription_status(gen_random_uuid(), 1, ''active'')',
    'SELECT ventros.update_subscription_period(gen_random_uuid(), 1, now(), now() + interval ''1 day'')',
    'SELECT ventros.change_subscription_price(gen_random_uuid(), 1, ''price_x'')',
    'SELECT ventros.schedule_subscription_cancellation(gen_random_uuid(), 1)',
    'SELECT ventros.cancel_subscription(gen_random_uuid(), 1)',
    'SELECT ventros.reactivate_subscription(gen_random_uuid(), 1)',
    format('SELECT ventros.create_invoice(%L, ''in_X'', 100, ''usd'')', pg_temp.id('b')),
    'SELECT ventros.finalize_invoice(gen_random_uuid(), 1)',
    'SELECT ventros.pay_invoice(gen_random_uuid(), 1)',
    'SELECT ventros.record_invoice_payment_failure(gen_random_uuid(), 1, ''x'')',
    'SELECT ventros.mark_invoice_uncollectible(gen_random_uuid(), 1)',
    'SELECT ventros.void_invoice(gen_random_uuid(), 1)',
    'SELECT ventros.set_invoice_links(gen_random_uuid(), 1, ''https://a'', ''https://b'', NULL)',
    format('SELECT ventros.create_usage_meter(%L, ''m'', ''message.sent'', ''mtr_x'', now(), now() + interval ''1 day'')', pg_temp.id('b')),
    'SELECT ventros.report_usage(gen_random_uuid(), 1)',
    'SELECT ventros.reset_usage_period(gen_random_uuid(), 1, now(), now() + interval ''1 day'')']) c;
SELECT matches(pg_temp.refused('ventros_agent', 'SELECT ventros.increment_usage(gen_random_uuid(), 1)'),
               '^ERROR 42501: permission denied for function ', 'an agent is refused increment_usage');
SELECT isnt(pg_temp.refused('ventros_admin', format('SELECT ventros.update_billing_account(%L, (SELECT version FROM ventros.billing_accounts WHERE id = %L), ''{"name": "Renamed"}'')',
                                                    pg_temp.id('b'), pg_temp.id('b'))) ~ '^ERROR', true, 'a tenant admin still names its account');
SELECT matches(pg_temp.refused(r, 'SELECT ventros.emit(''invoice.paid'', ''invoice'', gen_random_uuid(), ''{}'', NULL)'),
               '^ERROR 42501: ', r || ' cannot emit an invoice event (no write privilege on invoices)')
FROM unnest(ARRAY['ventros_admin', 'ventros_agent']) r;
SELECT matches(pg_temp.refused('ventros_admin', format('UPDATE ventros.invoices SET status = ''paid'' WHERE billing_account_id = %L', pg_temp.id('a'))),
               '^ERROR 42501: ', 'nor write invoices directly');
SELECT * FROM finish();
ROLLBACK;
