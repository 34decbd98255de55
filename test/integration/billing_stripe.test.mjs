// Billing with Stripe end to end (docs/billing.md), against the Stripe
// stand-in (fakes/stripe.mjs) and the real dispatcher and front:
//   - a sign-up over HTTP creates the tenant's Stripe customer through the
//     dispatcher (form-encoded, Bearer key, Idempotency-Key); Stripe's answer
//     links it; the tenant's admin creates a Checkout Session over /rpc
//     (through the dispatcher, with an Idempotency-Key) and reads its URL;
//     the account stays pending until Stripe's signed
//     checkout.session.completed webhook comes back and activates it;
//   - a subscription requested by the platform is mirrored from Stripe's
//     answer, and its plan's limit answers 402 with PostgREST's JSON (VN020)
//     once reached, with one billing.limit_reached; a change of price sent to
//     Stripe moves the mirror, and the bigger plan lets the send through;
//   - the usage is reported as a meter event with an Idempotency-Key, and the
//     same request replayed is answered the same without counting twice.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { startServer, db, http, BASE } from './http_helpers.mjs';
import { asTenant } from './webhooks_helpers.mjs';
import { startStripe, parseForm } from './fakes/stripe.mjs';
import { waitFor } from './wait.mjs';
import { alterSystem, resetSystem } from './settings.mjs';

const run = crypto.randomBytes(4).toString('hex');
const KEY = `sk_test_${crypto.randomBytes(12).toString('hex')}`;
const WHSEC = `whsec_${crypto.randomBytes(18).toString('base64url')}`;
const PRICE = `price_Tiny${run}`;
const BIG = `price_Big${run}`;
const EMAIL = `owner-${run}@billing.example`;
const settings = { 'ventros.http_allow_hosts': '127.0.0.1/32', 'ventros.http_timeout': '5000' };
let server;
let c;
let stripe;
let secretId;
let tenant;
let token;

const account = async () => (await c.query('SELECT * FROM ventros.billing_accounts WHERE billing_email = $1', [EMAIL])).rows[0];
// (the superuser passes row-level security: every read names the tenant)
const q = (sql, params) => asTenant(c, tenant, sql, params);

before(async () => {
  server = await startServer();
  c = await db();
  await alterSystem(c, settings);
  stripe = await startStripe({ keys: [KEY], webhook: { base: BASE, secret: WHSEC } });
  await c.query('SELECT ventros.configure_stripe($1, $2)', [KEY, stripe.url]);
  secretId = (await c.query('SELECT ventros.add_stripe_webhook_secret($1) AS id', [WHSEC])).rows[0].id;
  await c.query("SELECT ventros.set_billing_plan($1, 'Tiny', '{\"messages_sent\": 1}')", [PRICE]);
});

after(async () => {
  await c.query('DELETE FROM ventros.stripe_settings');
  await c.query('SELECT ventros.remove_stripe_webhook_secret($1)', [secretId]);
  await c.query('DELETE FROM ventros.billing_plans WHERE plan = ANY ($1)', [[PRICE, BIG]]);
  await resetSystem(c, settings);
  await c.end();
  await server.stop();
  await stripe.close();
});

test('sign-up creates the Stripe customer; the account is active only once Stripe says the checkout completed', async () => {
  const reg = await http('POST', '/rpc/register', { body: { email: EMAIL, password: 'correct horse', name: 'Owner', tenant_name: `Billing ${run}` } });
  assert.equal(reg.status, 200, reg.text);
  token = reg.json.access_token;
  const b = await account();
  tenant = b.tenant_id;
  assert.equal(b.payment_status, 'pending');

  const [call] = await waitFor('the customer request at Stripe', () => {
    const done = stripe.requests('/v1/customers').filter((r) => r.response);
    return done.length ? done : null;
  });
  assert.equal(call.headers.authorization, `Bearer ${KEY}`);
  assert.match(call.headers['content-type'], /^application\/x-www-form-urlencoded/);
  assert.equal(call.headers['idempotency-key'], `ventros-customer-${b.id}`);
  assert.deepEqual(parseForm(call.body_text), { email: EMAIL, name: `Billing ${run}`,
                                                metadata: { tenant_id: tenant, billing_account_id: b.id } });
  const customer = JSON.parse(call.response.body_text).id;
  const linked = await waitFor('the customer linked', async () => ((await account()).stripe_customer_id === customer ? account() : null));
  assert.equal(linked.payment_status, 'pending', 'a customer is not a payment');
  // the stored request carries the key's name, never the key
  const [row] = await q("SELECT headers FROM ventros.http_requests WHERE tenant_id = $1 AND purpose = 'stripe.customer'", [tenant]);
  assert.deepEqual(Object.keys(row.headers).sort(), ['Content-Type', 'Idempotency-Key']);

  // Checkout: the tenant's admin asks for a session over /rpc; the dispatcher creates it at Stripe
  const h = { Authorization: `Bearer ${token}` };
  const made = await http('POST', '/rpc/create_stripe_checkout', { headers: h, body: {
    billing_account_id: b.id, price_id: PRICE, success_url: 'https://app.example/paid?session={CHECKOUT_SESSION_ID}',
    cancel_url: 'https://app.example/plans' } });
  assert.equal(made.status, 200, made.text);
  const [session] = await waitFor('the checkout session URL', async () => {
    const r = await http('POST', '/rpc/stripe_checkout_session', { headers: h, body: { request_id: made.json } });
    assert.equal(r.status, 200, r.text);
    return r.json[0]?.url ? r.json : null;
  });
  assert.equal(session.status, 'succeeded');
  assert.ok(session.url.startsWith(`${stripe.url}/c/pay/${session.session_id}`), session.url);
  const [created] = stripe.requests('/v1/checkout/sessions');
  assert.equal(created.headers.authorization, `Bearer ${KEY}`);
  assert.match(created.headers['idempotency-key'], /^ventros-checkout-[0-9a-f-]{36}$/);
  assert.deepEqual(parseForm(created.body_text), {
    customer, mode: 'subscription', line_items: [{ price: PRICE, quantity: '1' }],
    success_url: 'https://app.example/paid?session={CHECKOUT_SESSION_ID}', cancel_url: 'https://app.example/plans',
    client_reference_id: b.id, metadata: { tenant_id: tenant, billing_account_id: b.id } });
  // a retry of the dispatcher (the same key and body) gets the same session, not a second one
  const retry = await fetch(stripe.url + created.path, { method: 'POST', body: created.body_text, headers: {
    Authorization: `Bearer ${KEY}`, 'Content-Type': created.headers['content-type'],
    'Idempotency-Key': created.headers['idempotency-key'] } });
  assert.equal(retry.headers.get('idempotent-replayed'), 'true');
  assert.equal(JSON.parse(await retry.text()).id, session.session_id);
  assert.equal(stripe.sessions().length, 1);
  assert.equal((await account()).payment_status, 'pending', 'a session is not a payment');

  // the payer completes it on Stripe's page: checkout.session.completed comes back signed
  const delivery = await stripe.completeSession(session.session_id);
  assert.deepEqual([delivery.status, delivery.body], [200, { received: true, outcome: 'applied' }]);
  const active = await account();
  assert.equal(active.payment_status, 'active');
  assert.deepEqual([active.payment_methods[0].type, active.payment_methods[0].id], ['stripe_checkout', session.session_id]);
});

test('a subscription from Stripe names the plan; its limit answers 402 with PostgREST JSON and one billing.limit_reached', async () => {
  assert.ok(tenant, 'the sign-up test ran');
  const b = await account();
  await q('SELECT ventros.request_stripe_subscription($1, $2)', [b.id, PRICE]);
  const [sub] = await waitFor('the subscription mirrored with its item', () =>
    q("SELECT * FROM ventros.subscriptions WHERE tenant_id = $1 AND stripe_price_id = $2 AND metadata ? 'stripe_item_id'", [tenant, PRICE]).then((r) => (r.length ? r : null)));
  assert.equal(sub.status, 'active');
  const [call] = stripe.requests('/v1/subscriptions');
  assert.deepEqual(parseForm(call.body_text).items, [{ price: PRICE }]);
  assert.match(call.headers['idempotency-key'], /^ventros-subscription-/);

  const h = { Authorization: `Bearer ${token}` };
  const [{ id: channel }] = await q("SELECT (ventros.create_channel('Billing WAHA', 'waha')).id");
  const [{ id: contact }] = await q("SELECT (ventros.create_contact('Ana', phone => '+5511955554444')).id");
  const [{ id: agent }] = await q("SELECT id FROM ventros.agents WHERE tenant_id = $1 AND type = 'human'", [tenant]);
  const send = (text) => http('POST', '/rpc/send_message', { headers: h, body: { channel_id: channel, contact_id: contact, agent_id: agent, text } });
  const first = await send('the one message of the plan');
  assert.equal(first.status, 200, first.text);
  const second = await send('one too many');
  assert.equal(second.status, 402, second.text);
  assert.equal(second.json.code, 'VN020');
  assert.equal(second.json.message, 'plan limit reached: 1 messages sent');
  assert.match(second.json.details, /^1 of 1 used in the period/);
  assert.equal(second.json.hint, 'Upgrade the plan, or wait for the next billing period.');
  const events = await q("SELECT payload FROM ventros.outbox WHERE tenant_id = $1 AND event_type = 'billing.limit_reached'", [tenant]);
  assert.equal(events.length, 1);
  assert.deepEqual([events[0].payload.metric, events[0].payload.limit], ['messages_sent', 1]);

  // a bigger plan: the change goes to Stripe, its answer moves the mirror's price, the send goes out
  await q("SELECT ventros.set_billing_plan($1, 'Big', '{\"messages_sent\": 100}')", [BIG]);
  await q('SELECT ventros.request_stripe_subscription_change($1, $2)', [sub.id, BIG]);
  await waitFor('the new price mirrored', () =>
    q('SELECT 1 FROM ventros.subscriptions WHERE id = $1 AND stripe_price_id = $2', [sub.id, BIG]).then((r) => r.length > 0));
  const change = stripe.requests(`/v1/subscriptions/${sub.stripe_subscription_id}`)[0];
  assert.deepEqual(parseForm(change.body_text), { items: [{ id: sub.metadata.stripe_item_id, price: BIG }],
                                                  proration_behavior: 'create_prorations' });
  const third = await send('on the bigger plan');
  assert.equal(third.status, 200, third.text);
});

test('usage is reported as a Stripe meter event with an Idempotency-Key; a replay is answered the same and counts once', async () => {
  assert.ok(tenant, 'the sign-up test ran');
  const b = await account();
  const [meter] = await q(`SELECT * FROM ventros.create_usage_meter($1, 'messages_sent', 'ventros_messages.sent', 'mtr_${run}',
                                                                  now() - interval '1 hour', now() + interval '29 days')`, [b.id]);
  await q('SELECT ventros.fold_usage()');
  const sent = Number((await q("SELECT quantity FROM ventros.usage_status() WHERE metric = 'messages_sent'"))[0].quantity);
  assert.equal(sent, 2, 'the two messages sent in the test before');
  assert.equal(Number((await q('SELECT quantity FROM ventros.usage_meters WHERE id = $1', [meter.id]))[0].quantity), sent);
  assert.equal((await q('SELECT ventros.report_usage_to_stripe() AS n'))[0].n, 1);
  const reported = await waitFor('the usage marked reported', () =>
    q('SELECT reported_quantity FROM ventros.usage_meters WHERE id = $1 AND reported_quantity > 0', [meter.id]).then((r) => (r.length ? r : null)));
  assert.equal(Number(reported[0].reported_quantity), sent);
  const [call] = stripe.requests('/v1/billing/meter_events');
  assert.equal(call.headers['idempotency-key'], `usage-${meter.id}-${sent}`);
  const form = parseForm(call.body_text);
  assert.deepEqual([form.event_name, form.identifier, form.payload], ['ventros_messages.sent', `usage-${meter.id}-${sent}`,
                                                                   { stripe_customer_id: b.stripe_customer_id, value: String(sent) }]);
  // the same request again, as a retry after a lost answer would send it
  const replay = await fetch(stripe.url + call.path, { method: 'POST', body: call.body_text, headers: {
    Authorization: `Bearer ${KEY}`, 'Content-Type': call.headers['content-type'], 'Idempotency-Key': call.headers['idempotency-key'] } });
  assert.equal(replay.status, 200);
  assert.equal(replay.headers.get('idempotent-replayed'), 'true');
  assert.equal(await replay.text(), call.response.body_text);
  assert.equal(stripe.meterEvents().length, 1, 'counted once at Stripe');
  assert.equal((await q('SELECT ventros.report_usage_to_stripe() AS n'))[0].n, 0, 'nothing left to report');
});
