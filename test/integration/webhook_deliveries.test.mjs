// Webhook subscriptions end to end (channels.md section 6): a committed event
// becomes a delivery, the real HTTP dispatcher POSTs it to the fake subscriber
// (fakes/subscriber.mjs) on loopback, signed, as a CloudEvents 1.0 structured
// event; retries follow a short schedule set by configuration
// (ventros.webhook_retry_schedule), Retry-After is honoured, 410 Gone
// disables the subscription, a 301 is not followed, a slow receiver times
// out, and a redelivery carries the same event id.  No broker is involved.
//
// Timing assertions are lower bounds on the timestamps the fake recorded (a
// retry can never come earlier than scheduled), never wall-clock sleeps.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { HTTP } from 'cloudevents';
import { startSubscriber, verifySignature } from './fakes/subscriber.mjs';
import { waitFor } from './wait.mjs';
import { alterSystem, resetSystem } from './settings.mjs';

const SECRET = 'whsec_it_0123456789abcdef';
const SCHEDULE_MS = [300, 600, 900];
let db;
let other;
let sub;
let probeCount = 0;

const settings = {
  'ventros.http_allow_hosts': '127.0.0.1/32',
  'ventros.http_poll_interval': '600000',
  'ventros.http_connect_timeout': '2000',
};

async function q(sql, params = [], client = db) {
  return (await client.query(sql, params)).rows;
}


// A tenant of its own per test: no test sees another's subscriptions.
async function useTenant(name, client = db) {
  await q(`SELECT ventros.create_tenant($1, $1) WHERE NOT EXISTS
             (SELECT 1 FROM ventros.projects WHERE tenant_id = $1)`, [name], client);
  await q(`SELECT set_config('ventros.tenant', $1, false)`, [name], client);
}

async function subscribe(path, { events = ['contact.*'], headers = {}, timeoutSeconds = null } = {}) {
  const [w] = await q(`SELECT id, version FROM ventros.create_webhook_subscription($1, $2, $3, secret => $4, headers => $5)`,
                      [`hook ${path}`, `${sub.url}${path}`, events, SECRET, JSON.stringify(headers)]);
  if (timeoutSeconds !== null)
    await q(`SELECT ventros.update_webhook_subscription($1, $2, jsonb_build_object('timeout_seconds', $3::int))`,
            [w.id, w.version, timeoutSeconds]);
  return w.id;
}

async function createContact(name, client = db) {
  const [c] = await q('SELECT id, version FROM ventros.create_contact($1)', [name], client);
  return c;
}

async function deliveries(subscriptionId) {
  return q(`SELECT l.*, o.seq FROM ventros.list_webhook_deliveries($1, page_size => 100) l
              JOIN ventros.outbox o ON o.event_id = l.event_id ORDER BY o.seq, l.created_at`, [subscriptionId]);
}

async function settled(subscriptionId, n) {
  return waitFor(`${n} finished deliveries of ${subscriptionId}`, async () => {
    const ds = await deliveries(subscriptionId);
    return ds.length === n && ds.every((d) => d.status !== 'pending') ? ds : null;
  });
}

async function subscription(id) {
  const [w] = await q('SELECT * FROM ventros.webhook_subscriptions WHERE id = $1', [id]);
  return w;
}

function ofDelivery(path, deliveryId) {
  return sub.requests(path).filter((r) => r.headers['x-ventros-delivery-id'] === deliveryId);
}

before(async () => {
  db = new pg.Client({ connectionString: process.env.VENTROS_PGURL });
  await db.connect();
  other = new pg.Client({ connectionString: process.env.VENTROS_PGURL });
  await other.connect();
  await alterSystem(db, settings);
  // a short schedule for the deliveries this session fans out
  await q(`SET ventros.webhook_retry_schedule = '${SCHEDULE_MS.map((ms) => `${ms}ms`).join(',')}'`);
  sub = await startSubscriber({ secrets: [SECRET] });
  // The dispatcher applies the reload asynchronously: probe until a request
  // to the (now allow-listed) fake succeeds.
  await useTenant('wh_it_probe');
  await waitFor('the dispatcher to allow the loopback fake', async () => {
    const [r] = await q(`SELECT ventros.enqueue_http_request($1, max_attempts => 1) AS id`, [`${sub.url}/probe/${++probeCount}`]);
    const done = await waitFor('the probe', async () => {
      const [row] = await q('SELECT status FROM ventros.http_requests WHERE id = $1', [r.id]);
      return ['succeeded', 'failed', 'dead'].includes(row.status) ? row : null;
    });
    return done.status === 'succeeded';
  });
  sub.reset();
});

after(async () => {
  await resetSystem(db, settings);
  await db.end();
  await other.end();
  await sub.close();
});

test('a contact change arrives signed as a CloudEvents 1.0 event', async () => {
  // another session emits first, so its cache knows "no subscription" ...
  await useTenant('wh_it_ce', other);
  await useTenant('wh_it_ce');
  await createContact('Before', other);
  // ... then this session subscribes, and the other session's next events are delivered
  const hook = await subscribe('/ce', { headers: { 'X-Custom': 'abc' } });
  const c = await createContact('Ana', other);
  await q(`SELECT ventros.update_contact($1, $2, '{"name": "Ana Maria"}')`, [c.id, c.version], other);

  // the rename: contact.updated, then contact.name_changed (no version)
  const ds = await settled(hook, 3);
  const events = await q(`SELECT event_id, event_type, occurred_at, payload FROM ventros.outbox
                           WHERE tenant_id = 'wh_it_ce' AND aggregate_id = $1 ORDER BY seq`, [c.id]);
  assert.deepEqual(ds.map((d) => [d.event_type, d.status, d.attempts, d.response_status]),
                   [['contact.created', 'succeeded', 1, 200], ['contact.updated', 'succeeded', 1, 200],
                    ['contact.name_changed', 'succeeded', 1, 200]]);
  for (const [i, d] of ds.entries()) {
    const [req] = ofDelivery('/ce', d.id);
    assert.ok(req, `delivery ${d.id} arrived`);
    assert.equal(req.method, 'POST');
    assert.equal(req.headers['content-type'], 'application/cloudevents+json; charset=utf-8');
    assert.equal(req.headers['user-agent'], 'Ventros-Webhooks/1.0');
    assert.equal(req.headers['x-ventros-event-id'], events[i].event_id);
    assert.equal(req.headers['x-ventros-delivery-id'], d.id);
    assert.equal(req.headers['x-ventros-attempt'], '1');
    assert.equal(req.headers['x-custom'], 'abc');
    assert.equal(req.signature.valid, true, 'the signature verifies with the shared secret');
    assert.equal(req.signature.fresh, true, 't is within 5 minutes of reception');
    assert.equal(req.signature.v1_count, 1);
    assert.equal(verifySignature(req.headers['x-ventros-signature'], Buffer.from(req.body_base64, 'base64'),
                                 ['another-secret-000000'], { nowMs: req.received_at }).valid, false,
                 'and not with another secret');

    const ce = HTTP.toEvent({ headers: req.headers, body: req.body_text });
    assert.equal(ce.validate(), true, 'a valid CloudEvent');
    assert.equal(ce.specversion, '1.0');
    assert.equal(ce.id, events[i].event_id, 'id is the outbox event id');
    assert.equal(ce.type, `com.ventros.${events[i].event_type}`);
    assert.equal(ce.source, '/ventros/tenants/wh_it_ce');
    assert.equal(ce.subject, `contacts/${c.id}`);
    assert.equal(ce.datacontenttype, 'application/json');
    assert.equal(ce.tenantid, 'wh_it_ce');
    if (i < 2) assert.equal(ce.aggregateversion, i + 1, 'the aggregateversion extension attribute');
    assert.equal(new Date(ce.time).getTime(), Math.floor(events[i].occurred_at.getTime()));
    assert.deepEqual(ce.data, events[i].payload);
  }
  const w = await subscription(hook);
  assert.equal(w.success_count, 3);
  assert.equal(w.failure_count, 0);
});

test('500, 500, 200: retried on the schedule, same event, re-signed each attempt', async () => {
  await useTenant('wh_it_retry');
  const hook = await subscribe('/retry');
  sub.script({ method: 'POST', path: '/retry', responses: [{ status: 500 }, { status: 500 }] });
  await createContact('Retry');
  const [d] = await settled(hook, 1);
  assert.equal(d.status, 'succeeded');
  assert.equal(d.attempts, 3);
  const reqs = ofDelivery('/retry', d.id);
  assert.deepEqual(reqs.map((r) => [r.headers['x-ventros-attempt'], r.response.status]), [['1', 500], ['2', 500], ['3', 200]]);
  assert.equal(new Set(reqs.map((r) => r.headers['x-ventros-event-id'])).size, 1, 'one event id');
  assert.equal(new Set(reqs.map((r) => r.body_text)).size, 1, 'one body');
  assert.ok(reqs.every((r) => r.signature.valid && r.signature.fresh), 'every attempt is signed');
  // the first retry waits 300 ms, the second 600 ms (+-10 %)
  assert.ok(reqs[1].received_at - reqs[0].received_at >= SCHEDULE_MS[0] * 0.9, 'second attempt after the first delay');
  assert.ok(reqs[2].received_at - reqs[1].received_at >= SCHEDULE_MS[1] * 0.9, 'third attempt after the second delay');
  assert.equal((await subscription(hook)).success_count, 1);
});

test('429 with Retry-After: the next attempt waits for it', async () => {
  await useTenant('wh_it_429');
  const hook = await subscribe('/busy');
  sub.script({ method: 'POST', path: '/busy', responses: [{ status: 429, headers: { 'Retry-After': '1' } }] });
  await createContact('Busy');
  const [d] = await settled(hook, 1);
  assert.equal(d.status, 'succeeded');
  const reqs = ofDelivery('/busy', d.id);
  assert.deepEqual(reqs.map((r) => r.response.status), [429, 200]);
  assert.ok(reqs[1].received_at - reqs[0].received_at >= 1000,
            `Retry-After (1 s) wins over the 300 ms schedule (waited ${reqs[1].received_at - reqs[0].received_at} ms)`);
});

test('410 Gone disables the subscription at once', async () => {
  await useTenant('wh_it_gone');
  const hook = await subscribe('/gone');
  sub.script({ method: 'POST', path: '/gone', responses: [{ status: 410 }] });
  await createContact('Gone');
  const [d] = await settled(hook, 1);
  assert.equal(d.status, 'failed');
  assert.equal(d.attempts, 1, '410 is not retried');
  assert.equal(d.response_status, 410);
  const w = await subscription(hook);
  assert.equal(w.active, false);
  assert.equal(w.failure_count, 1);
  const [ev] = await q(`SELECT count(*)::int AS n FROM ventros.outbox WHERE aggregate_id = $1
                          AND event_type = 'webhook_subscription.deactivated'`, [hook]);
  assert.equal(ev.n, 1, 'webhook_subscription.deactivated was emitted');
  await createContact('After');
  assert.equal((await deliveries(hook)).length, 1, 'later events are not delivered');
  assert.equal(sub.requests('/gone').length, 1);
});

test('a 301 is a failure and is not followed', async () => {
  await useTenant('wh_it_moved');
  const hook = await subscribe('/moved');
  sub.script({ method: 'POST', path: '/moved', responses: [{ status: 301, headers: { Location: `${sub.url}/elsewhere` } }] });
  await createContact('Moved');
  const [d] = await settled(hook, 1);
  assert.equal(d.status, 'succeeded', 'the retry (to the same URL) succeeded');
  assert.deepEqual(ofDelivery('/moved', d.id).map((r) => r.response.status), [301, 200]);
  assert.equal(sub.requests('/elsewhere').length, 0, 'the Location was never requested');
});

test('a slow subscriber times out (subscription timeout) and the delivery is retried', async () => {
  await useTenant('wh_it_slow');
  const hook = await subscribe('/slow', { timeoutSeconds: 1 });
  sub.script({ method: 'POST', path: '/slow', responses: [{ delay_ms: 1600 }] });
  await createContact('Slow');
  const [d] = await settled(hook, 1);
  assert.equal(d.status, 'succeeded');
  assert.equal(d.attempts, 2);
  const reqs = ofDelivery('/slow', d.id);
  assert.equal(reqs.length, 2);
  assert.equal(reqs[1].response.status, 200);
  // the fake answers the first attempt 1.6 s after it arrived: by then the dispatcher had gone
  const first = await waitFor('the slow answer', async () => ofDelivery('/slow', d.id)[0].response);
  assert.deepEqual(first, { client_gone: true }, 'the dispatcher gave up before the slow answer');
});

test('every attempt failing: the delivery fails after the last one and counts on the subscription', async () => {
  await useTenant('wh_it_dead');
  const hook = await subscribe('/down');
  sub.script({ method: 'POST', path: '/down', responses: [], default: { status: 503 } });
  await createContact('Down');
  const [d] = await settled(hook, 1);
  assert.equal(d.status, 'failed');
  assert.equal(d.attempts, SCHEDULE_MS.length + 1, 'one attempt more than there are delays');
  assert.equal(ofDelivery('/down', d.id).length, SCHEDULE_MS.length + 1);
  const w = await subscription(hook);
  assert.equal(w.failure_count, 1);
  assert.ok(w.failing_since instanceof Date);
  assert.equal(w.active, true, 'one failed delivery does not disable the subscription');
});

test('a redelivery sends the same event again as a new delivery', async () => {
  await useTenant('wh_it_again');
  const hook = await subscribe('/again');
  await createContact('Again');
  const [first] = await settled(hook, 1);
  const [{ id: againId }] = await q('SELECT ventros.redeliver_webhook($1) AS id', [first.id]);
  const ds = await settled(hook, 2);
  const again = ds.find((d) => d.id === againId);
  assert.equal(again.status, 'succeeded');
  assert.equal(again.redelivery_of, first.id);
  assert.equal(again.event_id, first.event_id);
  const [a] = ofDelivery('/again', first.id);
  const [b] = ofDelivery('/again', againId);
  assert.equal(b.headers['x-ventros-event-id'], a.headers['x-ventros-event-id'], 'the same event id');
  assert.equal(b.body_text, a.body_text, 'the same CloudEvent');
  assert.equal(HTTP.toEvent({ headers: b.headers, body: b.body_text }).id, first.event_id);
  assert.notEqual(b.headers['x-ventros-delivery-id'], a.headers['x-ventros-delivery-id'], 'a new delivery id');
  assert.equal(b.headers['x-ventros-attempt'], '1', 'a new series of attempts');
  assert.ok(b.signature.valid && b.signature.fresh, 'signed anew');
});
