// Stripe webhooks over real HTTP (docs/billing.md): POST /webhooks/stripe on
// a ventros-http of the test run, signed here as Stripe signs them
// (Stripe-Signature: t=<unix>,v1=HMAC-SHA256(secret, "<t>.<raw body>")).
// The front hands the raw bytes over, so a body Stripe wrote with non-ASCII
// text verifies; a redelivery is a duplicate; a forged or replayed one is
// 400 and leaves no trace; other paths of the endpoint are 404.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { startServer, db, http } from './http_helpers.mjs';

const TENANT = 'stripe_it';
const run = crypto.randomBytes(6).toString('hex');
const SECRET = `whsec_${crypto.randomBytes(18).toString('base64url')}`;
const CUSTOMER = `cus_${run}`;
let server;
let c;
let secretId;

const signature = (body, secret = SECRET, at = Math.floor(Date.now() / 1000)) =>
  `t=${at},v1=${crypto.createHmac('sha256', secret).update(`${at}.`).update(body).digest('hex')}`;
const event = (id, type, object) =>
  JSON.stringify({ id, object: 'event', type, created: Math.floor(Date.now() / 1000), livemode: false, data: { object } });
const deliver = (body, sig = signature(body)) =>
  http('POST', '/webhooks/stripe', { raw: true, body, headers: { 'Content-Type': 'application/json; charset=utf-8', 'Stripe-Signature': sig } });
const account = async () => (await c.query('SELECT * FROM ventros.billing_accounts WHERE tenant_id = $1', [TENANT])).rows[0];

before(async () => {
  server = await startServer();
  c = await db();
  await c.query(`SELECT ventros.create_tenant($1, 'Stripe IT') WHERE NOT EXISTS (SELECT FROM ventros.projects WHERE tenant_id = $1)`, [TENANT]);
  await c.query('BEGIN');
  await c.query("SELECT set_config('ventros.tenant', $1, true)", [TENANT]);
  await c.query('DELETE FROM ventros.billing_accounts');
  await c.query(`SELECT ventros.link_stripe_customer(b.id, b.version, $1)
                 FROM ventros.create_billing_account('Stripe IT', 'billing@stripe-it.example', gen_random_uuid()) b`, [CUSTOMER]);
  await c.query('COMMIT');
  secretId = (await c.query('SELECT ventros.add_stripe_webhook_secret($1) AS id', [SECRET])).rows[0].id;
});
after(async () => {
  await c.query('SELECT ventros.remove_stripe_webhook_secret($1)', [secretId]);
  await c.end();
  await server.stop();
});

test('a signed checkout.session.completed activates the account; the same event again is a duplicate', async () => {
  const body = event(`evt_co${run}`, 'checkout.session.completed', { object: 'checkout.session', id: `cs_${run}`, customer: CUSTOMER });
  const r = await deliver(body);
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, { received: true, outcome: 'applied' });
  const a = await account();
  assert.equal(a.payment_status, 'active');
  const again = await deliver(body);
  assert.equal(again.status, 200);
  assert.deepEqual(again.json, { received: true, duplicate: true });
  assert.equal((await account()).version, a.version, 'nothing changed the second time');
});

test('the raw bytes are what is signed: a body with non-ASCII text verifies and is applied', async () => {
  const body = event(`evt_cu${run}`, 'customer.updated', { object: 'customer', id: CUSTOMER, name: 'Padaria São João — Filial Nº 2' });
  const r = await deliver(body);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.outcome, 'applied');
  assert.equal((await account()).name, 'Padaria São João — Filial Nº 2');
});

test('forged, replayed or unsigned deliveries are 400 and recorded nowhere', async () => {
  const id = `evt_bad${run}`;
  const body = event(id, 'invoice.paid', { object: 'invoice', id: `in_${run}`, customer: CUSTOMER, status: 'paid' });
  const forged = await deliver(body, signature(body, `whsec_${crypto.randomBytes(18).toString('base64url')}`));
  assert.deepEqual([forged.status, forged.json], [400, { error: 'invalid_signature' }]);
  const replayed = await deliver(body, signature(body, SECRET, Math.floor(Date.now() / 1000) - 3600));
  assert.deepEqual([replayed.status, replayed.json], [400, { error: 'timestamp_outside_tolerance' }]);
  const unsigned = await http('POST', '/webhooks/stripe', { raw: true, body });
  assert.deepEqual([unsigned.status, unsigned.json], [400, { error: 'missing_signature' }]);
  const tampered = await deliver(body.replace('"paid"', '"void"'), signature(body));
  assert.equal(tampered.status, 400);
  const { rows } = await c.query('SELECT count(*)::int AS n FROM ventros.stripe_events WHERE id = $1', [id]);
  assert.equal(rows[0].n, 0);
  assert.equal((await c.query('SELECT count(*)::int AS n FROM ventros.invoices WHERE stripe_invoice_id = $1', [`in_${run}`])).rows[0].n, 0);
});

test('only POST /webhooks/stripe: other names and methods are 404', async () => {
  assert.deepEqual(await http('POST', '/webhooks/paypal', { raw: true, body: '{}' }).then((r) => [r.status, r.json]), [404, { error: 'channel_not_found' }]);
  assert.equal((await http('GET', '/webhooks/stripe')).status, 404);
  assert.equal((await http('POST', '/webhooks/stripe/extra', { raw: true, body: '{}' })).status, 404);
});
