// Fake Stripe API (docs/billing.md), built on recorder.mjs (every request
// recorded; scripts take precedence, so tests inject 500s, 429s and resets).
// It speaks the documented formats of the calls Ventros makes:
//   - requests: Authorization: Bearer <secret key> (401 invalid_request_error
//     otherwise), bodies application/x-www-form-urlencoded with bracketed keys
//     (items[0][price]=price_1, metadata[tenant_id]=t), answers JSON objects,
//     errors {"error": {type, code, message, param}};
//   - Idempotency-Key: a POST with a key seen before and the same parameters
//     gets the first answer again, with the header Idempotent-Replayed: true,
//     and is not acted on twice; the same key with other parameters is 400
//     idempotency_error;
//   - POST /v1/customers {email, name, metadata} -> customer (cus_...);
//     POST /v1/subscriptions {customer, items[0][price], metadata} -> subscription
//     (sub_..., active, one item si_... with the price and the period);
//     POST /v1/subscriptions/<id> {items[0][id], items[0][price], cancel_at_period_end}
//     -> the updated subscription;
//     POST /v1/billing/meter_events {event_name, identifier, timestamp,
//     payload[stripe_customer_id], payload[value]} -> billing.meter_event (an
//     identifier seen before is 400, as Stripe enforces their uniqueness);
//     POST /v1/checkout/sessions {customer, mode, line_items[0][price],
//     line_items[0][quantity], success_url, cancel_url, client_reference_id,
//     metadata} -> checkout.session (cs_test_..., open, url on this stand-in).
// Webhooks: given webhook {base, secret}, what Stripe sends after those calls
// (customer.created, customer.subscription.created / updated) is posted to
// <base>/webhooks/stripe, signed as Stripe signs: Stripe-Signature
// t=<unix>,v1=<HMAC-SHA256 of "<t>.<body>" under the endpoint's secret>, after
// the answer went out, one at a time.  POST /__fake/checkout {"customer"} or
// {"session"} completes a checkout for a customer, or a session created
// through the API (checkout.session.completed); POST
// /__fake/event {"type", "object"} posts any event; both answer {status, body}
// of the delivery.  GET /__fake/webhooks lists the deliveries; GET
// /__fake/meter_events the accepted meter events; GET /__fake/customers the
// customers.
//
// In-process: const stripe = await startStripe({ keys: ['sk_test_x'], webhook: { base, secret } });
// stripe.url; await stripe.checkout('cus_...'); await stripe.close();
// scripts/up can run it through standin.mjs ("stripe" section).
import crypto from 'node:crypto';
import { startRecorder } from './recorder.mjs';

const id = (prefix) => `${prefix}_${crypto.randomBytes(12).toString('base64url').replace(/[-_]/g, 'x')}`;
const now = () => Math.floor(Date.now() / 1000);
const stripeError = (status, message, { type = 'invalid_request_error', code, param } = {}) =>
  ({ status, body: { error: { type, code, message, param } } });

// A Stripe form body as the object it stands for: a[b][0][c]=v -> {a: {b: [{c: v}]}}.
export function parseForm(text) {
  const out = {};
  for (const [key, value] of new URLSearchParams(text)) {
    const path = key.match(/^[^[]+|\[[^\]]*\]/g)?.map((p) => p.replace(/^\[|\]$/g, '')) ?? [key];
    let at = out;
    path.forEach((p, i) => {
      if (i === path.length - 1) { at[p] = value; return; }
      if (at[p] === undefined) at[p] = /^\d+$/.test(path[i + 1]) ? [] : {};
      at = at[p];
    });
  }
  return out;
}

// Stripe-Signature for a body at a time, under a secret.
export function stripeSignature(body, secret, at = now()) {
  return `t=${at},v1=${crypto.createHmac('sha256', secret).update(`${at}.`).update(body).digest('hex')}`;
}

export async function startStripe({ port = 0, host = '127.0.0.1', keys = [], webhook = null, onAnswer = null } = {}) {
  const state = { keys: [...keys], webhook };
  const customers = new Map();
  const subscriptions = new Map();
  const idempotent = new Map(); // key -> {fingerprint, answer}
  const identifiers = new Set();
  const meterEvents = [];
  const sessions = new Map(); // checkout sessions by id
  const deliveries = [];
  let outbox = Promise.resolve();

  async function deliver(type, object) {
    if (!state.webhook?.base || !state.webhook?.secret) return { status: null, body: 'no webhook configured' };
    const body = JSON.stringify({ id: id('evt'), object: 'event', api_version: '2024-06-20', created: now(), livemode: false,
                                  type, data: { object } });
    const r = await fetch(`${state.webhook.base}/webhooks/stripe`, {
      method: 'POST', body,
      headers: { 'Content-Type': 'application/json; charset=utf-8', 'Stripe-Signature': stripeSignature(body, state.webhook.secret) },
    });
    const text = await r.text();
    let answer;
    try { answer = JSON.parse(text); } catch { answer = text; }
    const d = { type, object_id: object.id, status: r.status, body: answer };
    deliveries.push(d);
    return d;
  }
  // after the answer is written, in order (Stripe sends events after it acted)
  const later = (type, object) => {
    const done = outbox.then(() => new Promise((ok) => setImmediate(ok))).then(() => deliver(type, object))
      .catch((e) => deliveries.push({ type, error: String(e?.message ?? e) }));
    outbox = done;
  };

  function subscriptionObject(s) {
    return { ...s, items: { object: 'list', data: s.items.map((it) => ({ ...it })) } };
  }

  const routes = [
    ['POST', /^\/v1\/customers$/, (p) => {
      const c = { id: id('cus'), object: 'customer', created: now(), livemode: false, email: p.email ?? null,
                  name: p.name ?? null, metadata: p.metadata ?? {}, invoice_settings: { default_payment_method: null } };
      customers.set(c.id, c);
      later('customer.created', c);
      return { status: 200, body: c };
    }],
    ['POST', /^\/v1\/subscriptions$/, (p) => {
      if (!customers.has(p.customer)) return stripeError(400, `No such customer: '${p.customer}'`, { code: 'resource_missing', param: 'customer' });
      const price = p.items?.[0]?.price;
      if (!price) return stripeError(400, 'Missing required param: items[0][price].', { code: 'parameter_missing', param: 'items' });
      const start = now();
      const s = { id: id('sub'), object: 'subscription', customer: p.customer, status: 'active', created: start,
                  cancel_at_period_end: false, metadata: p.metadata ?? {}, livemode: false,
                  items: [{ id: id('si'), object: 'subscription_item', price: { id: price, object: 'price' },
                            current_period_start: start, current_period_end: start + 30 * 86400 }] };
      subscriptions.set(s.id, s);
      const obj = subscriptionObject(s);
      later('customer.subscription.created', obj);
      return { status: 200, body: obj };
    }],
    ['POST', /^\/v1\/subscriptions\/(sub_[A-Za-z0-9]+)$/, (p, m) => {
      const s = subscriptions.get(m[1]);
      if (!s) return stripeError(404, `No such subscription: '${m[1]}'`, { code: 'resource_missing', param: 'id' });
      for (const it of p.items ?? []) {
        const item = s.items.find((x) => x.id === it.id);
        if (!item) return stripeError(400, `No such subscription item: '${it.id}'`, { code: 'resource_missing', param: 'items' });
        if (it.price) item.price = { id: it.price, object: 'price' };
      }
      if (p.cancel_at_period_end !== undefined) s.cancel_at_period_end = p.cancel_at_period_end === 'true';
      const obj = subscriptionObject(s);
      later('customer.subscription.updated', obj);
      return { status: 200, body: obj };
    }],
    ['POST', /^\/v1\/checkout\/sessions$/, (p) => {
      if (!customers.has(p.customer)) return stripeError(400, `No such customer: '${p.customer}'`, { code: 'resource_missing', param: 'customer' });
      if (!p.line_items?.[0]?.price) return stripeError(400, 'Missing required param: line_items[0][price].', { code: 'parameter_missing', param: 'line_items' });
      if (!p.success_url) return stripeError(400, 'Missing required param: success_url.', { code: 'parameter_missing', param: 'success_url' });
      const cs = { id: id('cs_test'), object: 'checkout.session', customer: p.customer, mode: p.mode ?? 'payment',
                   status: 'open', payment_status: 'unpaid', client_reference_id: p.client_reference_id ?? null,
                   metadata: p.metadata ?? {}, success_url: p.success_url, cancel_url: p.cancel_url ?? null,
                   line_items: p.line_items, expires_at: now() + 86400, livemode: false, subscription: null };
      cs.url = `${rec.url}/c/pay/${cs.id}`;
      sessions.set(cs.id, cs);
      return { status: 200, body: cs };
    }],
    ['POST', /^\/v1\/billing\/meter_events$/, (p) => {
      const value = p.payload?.value;
      if (!p.event_name) return stripeError(400, 'Missing required param: event_name.', { code: 'parameter_missing', param: 'event_name' });
      if (!customers.has(p.payload?.stripe_customer_id))
        return stripeError(400, 'No such customer.', { code: 'resource_missing', param: 'payload[stripe_customer_id]' });
      if (!/^\d+$/.test(value ?? '')) return stripeError(400, 'Invalid payload[value]: must be a whole number.', { param: 'payload[value]' });
      if (p.identifier && identifiers.has(p.identifier))
        return stripeError(400, `An event already exists with identifier ${p.identifier}.`, { param: 'identifier' });
      if (p.identifier) identifiers.add(p.identifier);
      const e = { object: 'billing.meter_event', created: now(), event_name: p.event_name, identifier: p.identifier ?? id('mev'),
                  livemode: false, payload: p.payload, timestamp: Number(p.timestamp ?? now()) };
      meterEvents.push(e);
      return { status: 200, body: e };
    }],
  ];

  async function handle(rec) {
    const key = /^Bearer (.+)$/.exec(rec.headers.authorization ?? '')?.[1];
    if (!state.keys.includes(key)) {
      return stripeError(401, `Invalid API Key provided: ${String(key ?? '').slice(0, 8)}****`);
    }
    if (rec.method === 'POST' && !/^application\/x-www-form-urlencoded/.test(rec.headers['content-type'] ?? '')) {
      return stripeError(400, 'Invalid request: the body must be application/x-www-form-urlencoded.');
    }
    const route = routes.find(([method, re]) => method === rec.method && re.test(rec.path));
    if (!route) return stripeError(404, `Unrecognized request URL (${rec.method}: ${rec.path}).`);
    const ikey = rec.headers['idempotency-key'];
    const fingerprint = `${rec.method} ${rec.path} ${rec.body_text}`;
    if (ikey && idempotent.has(ikey)) {
      const first = idempotent.get(ikey);
      if (first.fingerprint !== fingerprint) {
        return stripeError(400, 'Keys for idempotent requests can only be used with the same parameters they were first used with.',
                           { type: 'idempotency_error' });
      }
      return { ...first.answer, headers: { ...(first.answer.headers ?? {}), 'Idempotent-Replayed': 'true' } };
    }
    const answer = route[2](parseForm(rec.body_text), route[1].exec(rec.path));
    answer.headers = { ...(answer.headers ?? {}), 'Request-Id': id('req'), ...(ikey ? { 'Idempotency-Key': ikey } : {}) };
    if (ikey) idempotent.set(ikey, { fingerprint, answer });
    return answer;
  }

  async function control(method, path, json) {
    if (method === 'POST' && path === '/__fake/checkout') {
      // a session created through the API (json.session), or one made up for a customer
      const made = sessions.get(json.session);
      const session = made ? Object.assign(made, { status: 'complete', payment_status: 'paid' })
        : { id: id('cs'), object: 'checkout.session', customer: json.customer, mode: 'subscription',
            status: 'complete', payment_status: 'paid', subscription: json.subscription ?? null };
      return deliver('checkout.session.completed', session);
    }
    if (method === 'POST' && path === '/__fake/event') return deliver(json.type, json.object);
    if (method === 'POST' && path === '/__fake/config') {
      if (json.keys) state.keys = json.keys;
      if (json.webhook) state.webhook = json.webhook;
      return { ok: true };
    }
    if (method === 'GET' && path === '/__fake/webhooks') return deliveries;
    if (method === 'GET' && path === '/__fake/meter_events') return meterEvents;
    if (method === 'GET' && path === '/__fake/customers') return [...customers.values()];
    return undefined;
  }

  const rec = await startRecorder({ port, host, handle, control, onAnswer });
  return {
    ...rec,
    checkout: (customer) => control('POST', '/__fake/checkout', { customer }),
    completeSession: (session) => control('POST', '/__fake/checkout', { session }),
    sessions: () => [...sessions.values()],
    webhooks: () => [...deliveries],
    meterEvents: () => [...meterEvents],
    customers: () => [...customers.values()],
    settled: () => outbox,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const i = process.argv.indexOf('--port');
  const k = process.argv.indexOf('--key');
  const fake = await startStripe({ port: i > 0 ? Number(process.argv[i + 1]) : 0, keys: k > 0 ? [process.argv[k + 1]] : [] });
  console.log(`stripe stand-in listening on ${fake.url}`);
}
