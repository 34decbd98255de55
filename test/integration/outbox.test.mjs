// The outbox publisher against a real RabbitMQ and a real consumer: message
// properties and CloudEvents body, rollbacks, per-aggregate order under
// concurrent writers, dead letters and replay, wake-up at commit.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { CloudEvent } from 'cloudevents';
import { client, consumer, until, status, setConf, checkOrder, sleep, publisherActivity } from './outbox_helpers.mjs';

let db;
let q;

before(async () => {
  db = await client();
  await db.query(`SELECT ventros.register_event_type('obtest.happened', 'obtest')
                  WHERE NOT EXISTS (SELECT 1 FROM ventros.event_types WHERE event_type = 'obtest.happened')`);
  for (const t of ['ob_basic', 'ob_rollback', 'ob_order', 'ob_dead'])
    await db.query(`SELECT ventros.create_tenant($1, 'Outbox test')`, [t]);
  await until(async () => (await status(db)).worker_connected, 'the publisher to connect');
  // the tenants' project.created events go out before our queue exists
  await until(async () => (await status(db)).pending === '0', 'nothing pending');
  q = await consumer('ventros.test.outbox');
});

after(async () => {
  await q?.close();
  await db?.end();
});

test('every committed event arrives with routing key, message id, headers and a CloudEvents 1.0 body', async () => {
  const since = (await db.query(`SELECT coalesce(max(seq), 0) AS s FROM ventros.outbox`)).rows[0].s;
  await db.query('BEGIN');
  await db.query(`SET LOCAL ventros.tenant = 'ob_basic'`);
  const contact = (await db.query(`SELECT id FROM ventros.create_contact('Basic', email => 'basic@outbox.example')`)).rows[0].id;
  await db.query(`SELECT ventros.emit('obtest.happened', 'obtest', '00000000-0000-4000-8000-0000000000b1', '{"n": 1}')`);
  await db.query(`SELECT ventros.emit('obtest.happened', 'obtest', '00000000-0000-4000-8000-0000000000b1', '{"n": 2}')`);
  await db.query('COMMIT');
  // the contact's events (contact.created, and whatever else creating a
  // contact emits), then the two obtest.happened
  const rows = (await db.query(`SELECT o.*, ventros.envelope(o) AS env FROM ventros.outbox o
                                WHERE tenant_id = 'ob_basic' AND seq > $1 ORDER BY seq`, [since])).rows;
  assert.ok(rows.length >= 3);
  await until(() => q.of('ob_basic').length >= rows.length, 'every message');
  const got = q.of('ob_basic');
  assert.equal(got.length, rows.length);
  got.forEach((m, i) => {
    const row = rows[i];
    assert.equal(m.fields.exchange, 'ventros.events');
    assert.equal(m.fields.routingKey, row.event_type);
    assert.equal(m.properties.messageId, row.event_id);
    assert.equal(m.properties.contentType, 'application/cloudevents+json');
    assert.equal(m.properties.deliveryMode, 2);
    assert.equal(m.properties.type, row.event_type);
    // the publish-order position a stream resumes by (docs/outbox.md)
    const { position, ...headers } = m.properties.headers;
    assert.ok(Number.isInteger(position) && position > 0);
    assert.deepEqual(headers, {
      tenant_id: 'ob_basic', aggregate_type: row.aggregate_type, aggregate_id: row.aggregate_id,
    });
    const body = JSON.parse(m.content.toString());
    const ce = new CloudEvent(body, true); // strict: throws on an invalid event
    assert.equal(ce.validate(), true);
    assert.equal(ce.specversion, '1.0');
    assert.equal(ce.id, row.event_id);
    assert.equal(ce.type, row.event_type);
    assert.equal(ce.source, `/ventros/ob_basic/${row.aggregate_type}`);
    assert.equal(ce.subject, row.aggregate_id);
    assert.deepEqual(body, JSON.parse(JSON.stringify(row.env)));
  });
  const created = got.find((m) => m.fields.routingKey === 'contact.created');
  assert.equal(JSON.parse(created.content.toString()).aggregateid, contact);
  assert.deepEqual(got.slice(-2).map((m) => [m.fields.routingKey, JSON.parse(m.content.toString()).data.n]),
    [['obtest.happened', 1], ['obtest.happened', 2]]);
  const unpublished = (await db.query(`SELECT count(*)::int AS n FROM ventros.outbox
                                       WHERE tenant_id = 'ob_basic' AND status <> 'published'`)).rows[0].n;
  assert.equal(unpublished, 0);
});

test('rolled-back transactions and subtransactions publish nothing', async () => {
  await db.query('BEGIN');
  await db.query(`SET LOCAL ventros.tenant = 'ob_rollback'`);
  await db.query(`SELECT ventros.emit('obtest.happened', 'obtest', gen_random_uuid(), '{"rolled": "back"}')`);
  await db.query('ROLLBACK');
  await db.query('BEGIN');
  await db.query(`SET LOCAL ventros.tenant = 'ob_rollback'`);
  await db.query('SAVEPOINT s');
  await db.query(`SELECT ventros.emit('obtest.happened', 'obtest', gen_random_uuid(), '{"rolled": "to savepoint"}')`);
  await db.query('ROLLBACK TO SAVEPOINT s');
  await db.query(`SELECT ventros.emit('obtest.happened', 'obtest', gen_random_uuid(), '{"sentinel": true}')`);
  await db.query('COMMIT');
  await until(() => q.of('ob_rollback').length >= 1, 'the sentinel');
  // the sentinel has the highest seq of the three: the others would have come first
  await until(async () => (await status(db)).pending === '0', 'nothing pending');
  const got = q.of('ob_rollback').map((m) => JSON.parse(m.content.toString()).data);
  assert.deepEqual(got, [{ sentinel: true }]);
});

test('per-aggregate order holds across 10,000 events from 8 concurrent writers', async () => {
  const contacts = 40;
  const writers = 8;
  const updates = 10000 - contacts;
  await db.query(`SET ventros.tenant = 'ob_order'`);
  const ids = (await db.query(`SELECT (ventros.create_contact('Order ' || g, email => 'order' || g || '@outbox.example')).id
                               FROM generate_series(1, $1) g`, [contacts])).rows.map((r) => r.id);
  await db.query(`RESET ventros.tenant`);
  const work = [];
  for (let w = 0; w < writers; w++) {
    work.push((async () => {
      const c = await client();
      await c.query(`SET ventros.tenant = 'ob_order'`);
      for (let i = w; i < updates; i += writers) {
        const id = ids[(i * 7 + w) % contacts];
        await c.query(`UPDATE ventros.contacts SET name = $2, version = version WHERE id = $1`, [id, `Order ${i}`]);
      }
      await c.end();
    })());
  }
  await Promise.all(work);
  // Each rename also emits contact.name_changed (without a version): 10,000
  // engine events, and as many more.
  const engine = (await db.query(`SELECT count(*)::int AS n FROM ventros.outbox
                                  WHERE tenant_id = 'ob_order' AND event_type IN ('contact.created', 'contact.updated')`)).rows[0].n;
  assert.equal(engine, 10000);
  const total = (await db.query(`SELECT count(*)::int AS n FROM ventros.outbox
                                 WHERE tenant_id = 'ob_order' AND event_type LIKE 'contact.%'`)).rows[0].n;
  assert.equal(total, 10000 + updates);
  await until(() => q.of('ob_order').length >= total, 'every message', 120000);
  const { unique, duplicates, problems } = checkOrder(q.of('ob_order'));
  console.log(`# order: ${unique.size} events, ${duplicates} duplicates, ${contacts} aggregates`);
  assert.deepEqual(problems, []);
  assert.equal(unique.size, total);
  assert.equal(duplicates, 0); // no fault in this test: exactly once
  // every aggregate's last version arrived
  const versions = (await db.query(`SELECT id::text, version FROM ventros.contacts WHERE tenant_id = 'ob_order'`)).rows;
  const lastSeen = new Map();
  for (const m of q.of('ob_order')) {
    const b = JSON.parse(m.content.toString());
    if (b.aggregateversion != null) lastSeen.set(b.aggregateid, b.aggregateversion);
  }
  for (const v of versions) assert.equal(lastSeen.get(v.id), v.version);
});

test('a failing event blocks only its aggregate, is dead-lettered after max attempts, and replays in order', async () => {
  const stuck = '00000000-0000-4000-8000-0000000000d1';
  const free = '00000000-0000-4000-8000-0000000000d2';
  // mandatory publishing, and no queue for this routing key's tenant... the
  // test queue binds every key, so route nothing: a consumer bound to one key
  await q.ch.unbindQueue(q.queue, 'ventros.events', '#');
  await q.ch.bindQueue(q.queue, 'ventros.events', 'contact.#');
  await setConf(db, { 'ventros.outbox_mandatory': 'on', 'ventros.outbox_max_attempts': '3',
                      'ventros.outbox_backoff_min': '20ms', 'ventros.outbox_backoff_max': '100ms' });
  const queued = async () => (await db.query(`SELECT count(*) FILTER (WHERE dead)::int AS dead,
                                                      count(*) FILTER (WHERE NOT dead)::int AS pending
                                                 FROM ventros.outbox_queue WHERE tenant_id = 'ob_dead'`)).rows[0];
  let failure;
  try {
    await db.query('BEGIN');
    await db.query(`SET LOCAL ventros.tenant = 'ob_dead'`);
    await db.query(`SELECT ventros.emit('obtest.happened', 'obtest', $1, '{"n": 1}')`, [stuck]);
    await db.query('COMMIT');
    await until(async () => (await db.query(`SELECT status FROM ventros.outbox WHERE aggregate_id = $1`, [stuck])).rows[0].status === 'dead',
      'the unroutable event to be dead-lettered', 30000).catch(async (e) => {
      const row = (await db.query(`SELECT status, attempts, last_error FROM ventros.outbox WHERE aggregate_id = $1`, [stuck])).rows[0];
      throw new Error(`${e.message} (the event: ${JSON.stringify(row)}; ${await publisherActivity(db)})`);
    });
    const dead = (await db.query(`SELECT attempts, last_error FROM ventros.outbox WHERE aggregate_id = $1`, [stuck])).rows[0];
    assert.equal(dead.attempts, 3);
    assert.match(dead.last_error, /returned/);
    // a later event of the dead event's aggregate waits; another aggregate's goes through
    await db.query('BEGIN');
    await db.query(`SET LOCAL ventros.tenant = 'ob_dead'`);
    await db.query(`SELECT ventros.emit('obtest.happened', 'obtest', $1, '{"n": 2}')`, [stuck]);
    await db.query(`SELECT (ventros.create_contact('Free', email => 'free@outbox.example')).id`);
    await db.query('COMMIT');
    await until(() => q.of('ob_dead').length >= 1, 'the other aggregate\'s event');
    // counted in this test's tenant: the status view counts every tenant's,
    // and background work elsewhere may emit meanwhile
    assert.deepEqual(await queued(), { dead: 1, pending: 1 });
    const waiting = (await db.query(`SELECT status, attempts FROM ventros.outbox WHERE aggregate_id = $1 ORDER BY seq`, [stuck])).rows;
    assert.deepEqual(waiting, [{ status: 'dead', attempts: 3 }, { status: 'pending', attempts: 0 }]);
  } catch (e) {
    failure = e;
    throw e;
  } finally {
    // the binding first: a failure below must not leave the next tests'
    // events unrouted (a failed finally hides the body's error)
    await q.ch.bindQueue(q.queue, 'ventros.events', '#');
    try {
      await setConf(db, { 'ventros.outbox_mandatory': null, 'ventros.outbox_max_attempts': null,
                          'ventros.outbox_backoff_min': null, 'ventros.outbox_backoff_max': null });
    } catch (e) {
      if (!failure) throw e;
      failure.message += `; then, restoring the settings: ${e.message}`;
    }
  }
  const replayed = (await db.query(`SELECT ventros.replay_dead_events('ob_dead')`)).rows[0].replay_dead_events;
  assert.equal(replayed, '1');
  await until(() => q.of('ob_dead').length >= 3, 'the replayed event and the one it blocked');
  const got = q.of('ob_dead').map((m) => JSON.parse(m.content.toString()));
  assert.deepEqual(got.slice(1).map((b) => [b.aggregateid, b.data.n]), [[stuck, 1], [stuck, 2]]);
  assert.deepEqual(await queued(), { dead: 0, pending: 0 });
  void free;
});

test('a commit wakes the publisher: delivery does not wait for the poll interval', async () => {
  await setConf(db, { 'ventros.outbox_poll_interval': '1h' });
  try {
    const before = q.of('ob_basic').length;
    await db.query('BEGIN');
    await db.query(`SET LOCAL ventros.tenant = 'ob_basic'`);
    await db.query(`SELECT ventros.emit('obtest.happened', 'obtest', gen_random_uuid(), '{"woken": true}')`);
    await db.query('COMMIT');
    // with an hour between polls, only the commit's wake-up can deliver it
    await until(() => q.of('ob_basic').length > before, 'the woken delivery', 20000);
  } finally {
    await setConf(db, { 'ventros.outbox_poll_interval': null });
  }
});

test('the status view exposes the worker and its counters', async () => {
  const s = await status(db);
  assert.equal(s.worker_connected, true);
  assert.ok(s.worker_pid > 0);
  assert.ok(Number(s.published_total) >= 10000);
  assert.ok(s.last_publish_at instanceof Date);
  assert.equal(s.pending, '0');
  const who = (await db.query(`SELECT backend_type FROM pg_stat_activity WHERE pid = $1`, [s.worker_pid])).rows[0];
  assert.equal(who.backend_type, 'ventros outbox publisher');
  await sleep(0);
});
