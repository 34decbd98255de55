// Who may emit (docs/events.md, docs/security.md): an agent cannot forge a
// domain event of an aggregate it may not change, so nothing reaches the
// broker; a custom event reaches RabbitMQ in its own namespace (routing key
// and type custom.<name>, aggregate custom).
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { client, consumer, until, status } from './outbox_helpers.mjs';

const TENANT = 'ev_authz';
let db;
let q;

before(async () => {
  db = await client();
  await db.query(`SELECT ventros.create_tenant($1, 'Events authz') WHERE NOT EXISTS
                  (SELECT 1 FROM ventros.projects WHERE tenant_id = $1)`, [TENANT]);
  await until(async () => (await status(db)).worker_connected, 'the publisher to connect');
  q = await consumer('ventros.test.events_authz', { bind: 'custom.#' });
});

after(async () => {
  await q?.close();
  await db?.end();
});

async function asAgent(sql) {
  await db.query('BEGIN');
  try {
    await db.query(`SELECT set_config('ventros.tenant', $1, true)`, [TENANT]);
    await db.query('SET LOCAL ROLE ventros_agent');
    const r = await db.query(sql);
    await db.query('COMMIT');
    return r;
  } catch (e) {
    await db.query('ROLLBACK');
    throw e;
  }
}

test('an agent cannot emit invoice.paid: 42501, and no such event is written', async () => {
  await assert.rejects(
    asAgent(`SELECT ventros.emit('invoice.paid', 'invoice', gen_random_uuid(), '{"amount_paid": 999999}')`),
    (e) => e.code === '42501' && /permission denied to emit event "invoice.paid"/.test(e.message));
  const n = (await db.query(`SELECT count(*)::int AS n FROM ventros.outbox
                             WHERE tenant_id = $1 AND event_type = 'invoice.paid'`, [TENANT])).rows[0].n;
  assert.equal(n, 0);
});

test('a custom event reaches RabbitMQ typed custom.<name>, of aggregate custom', async () => {
  const r = await asAgent(`SELECT ventros.emit_custom_event('order.shipped', '{"order": 42}') AS t`);
  assert.equal(r.rows[0].t, 'custom.order.shipped');
  await until(() => q.of(TENANT).length >= 1, 'the custom event');
  const [m] = q.of(TENANT);
  assert.equal(m.fields.routingKey, 'custom.order.shipped');
  assert.equal(m.properties.type, 'custom.order.shipped');
  assert.equal(m.properties.headers.aggregate_type, 'custom');
  const body = JSON.parse(m.content.toString());
  assert.equal(body.type, 'custom.order.shipped');
  assert.equal(body.source, `/ventros/${TENANT}/custom`);
  assert.deepEqual(body.data, { order: 42 });
});
