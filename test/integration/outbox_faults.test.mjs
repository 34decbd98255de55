// The outbox publisher under faults, with writers running: the broker stopped
// and started several times, the worker backend terminated, PostgreSQL
// restarted.  Afterwards every event is in the (durable) queue, in order per
// aggregate; duplicates are counted and must all be events whose first
// publish was never recorded as confirmed (attempts > 0: failed attempts).
// Then a broker that refuses the credentials: rows stay pending with a clear
// last_error and the worker does not crash-loop.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import amqp from 'amqplib';
import {
  AMQP_URL, RUN_DIR, client, consumer, until, status, setConf, checkOrder, sleep,
  brokerStop, brokerStart, pgRestart,
} from './outbox_helpers.mjs';

const TENANT = 'ob_fault';
const QUEUE = 'ventros.test.faults';
let db;
let ids;

before(async () => {
  db = await client();
  await db.query(`SELECT ventros.create_tenant($1, 'Outbox faults')`, [TENANT]);
  await until(async () => (await status(db)).worker_connected, 'the publisher to connect');
  const q = await consumer(QUEUE, { durable: true, consume: false });
  await q.ch.purgeQueue(QUEUE);
  await q.close();
  await setConf(db, { 'ventros.outbox_backoff_min': '50ms', 'ventros.outbox_backoff_max': '1s',
                      'ventros.outbox_batch_size': '200' });
  await db.query(`SET ventros.tenant = '${TENANT}'`);
  ids = (await db.query(`SELECT (ventros.create_contact('Fault ' || g, email => 'fault' || g || '@outbox.example')).id
                         FROM generate_series(1, 20) g`)).rows.map((r) => r.id);
  await db.query('RESET ventros.tenant');
});

after(async () => {
  try {
    await setConf(db, { 'ventros.outbox_backoff_min': null, 'ventros.outbox_backoff_max': null,
                        'ventros.outbox_batch_size': null, 'ventros.amqp_url': null });
    const conn = await amqp.connect(AMQP_URL);
    const ch = await conn.createChannel();
    await ch.deleteQueue(QUEUE);
    await conn.close();
  } finally {
    await db?.end();
  }
});

// Writers updating the tenant's contacts until stopped; errors (a restarting
// server) are retried on a new connection.
function startWriters(n) {
  const state = { stop: false, commits: 0 };
  state.done = Promise.all(Array.from({ length: n }, async (_, w) => {
    let c = null;
    let i = 0;
    while (!state.stop) {
      try {
        if (!c) {
          c = await client();
          await c.query(`SET ventros.tenant = '${TENANT}'`);
        }
        await c.query('UPDATE ventros.contacts SET name = $2, version = version WHERE id = $1',
          [ids[(i++ * 3 + w) % ids.length], `Fault ${w}.${i}`]);
        state.commits++;
        if (i % 20 === 0) await sleep(2); // a steady stream, not a flood
      } catch (e) {
        try { await c?.end(); } catch (e2) { /* gone */ }
        c = null;
        await sleep(100);
      }
    }
    try { await c?.end(); } catch (e) { /* gone */ }
  }));
  return state;
}

async function workerPid() {
  return (await status(db)).worker_pid;
}

test('broker restarts, a terminated worker and a PostgreSQL restart lose nothing and keep order', async () => {
  let writers = startWriters(4);
  for (let round = 0; round < 3; round++) {
    await until(() => writers.commits > (round + 1) * 300, 'writes before the fault');
    brokerStop();
    await sleep(300);
    brokerStart();
    await until(async () => (await status(db)).worker_connected, 'the publisher to reconnect', 60000);
  }

  const pid = await workerPid();
  await until(() => writers.commits > 1500, 'writes before terminating the worker');
  // terminate it while a batch is in flight when we can catch one (unconfirmed window)
  const caught = await until(async () => (await db.query(
    `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
      WHERE pid = $1 AND query = 'ventros outbox: publishing' AND state = 'active'`, [pid])).rowCount > 0,
  'a batch in flight', 5000, 1).catch(() => false);
  if (!caught) await db.query('SELECT pg_terminate_backend($1)', [pid]);
  console.log(`# terminated the worker ${caught ? 'during a publish' : 'while idle'}`);
  await until(async () => {
    const s = await status(db);
    return s.worker_connected && s.worker_pid !== pid;
  }, 'a restarted publisher');

  writers.stop = true;
  await writers.done;
  await db.end();
  pgRestart();
  db = await until(() => client(), 'PostgreSQL after its restart');
  writers = startWriters(2);
  await until(() => writers.commits > 200, 'writes after the restart');
  writers.stop = true;
  await writers.done;

  await until(async () => (await db.query(`SELECT count(*) FILTER (WHERE status <> 'published')::int AS n
                                           FROM ventros.outbox WHERE tenant_id = $1`, [TENANT])).rows[0].n === 0,
  'every event published', 90000);
  const rows = (await db.query(`SELECT event_id::text, attempts FROM ventros.outbox
                                WHERE tenant_id = $1 AND event_type LIKE 'contact.%'`, [TENANT])).rows;
  const attempts = new Map(rows.map((r) => [r.event_id, r.attempts]));

  // drain the durable queue
  const conn = await amqp.connect(AMQP_URL);
  const ch = await conn.createChannel();
  const messages = [];
  await ch.consume(QUEUE, (m) => { messages.push(m); ch.ack(m); });
  const mine = () => messages.filter((m) => m.properties.headers?.tenant_id === TENANT &&
                                          m.fields.routingKey.startsWith('contact.'));
  await until(() => new Set(mine().map((m) => m.properties.messageId)).size >= rows.length,
    'every event in the queue', 60000);
  await sleep(200); // let the last duplicates in flight arrive before counting
  await conn.close();

  const { unique, duplicates, problems } = checkOrder(mine());
  const retried = rows.filter((r) => r.attempts > 0).length;
  const summary = `faults: ${rows.length} events, ${unique.size} received, ${duplicates} duplicates, ` +
                  `${retried} events published more than once by the worker`;
  console.log(`# ${summary}`);
  fs.appendFileSync(path.join(RUN_DIR, 'outbox_faults.txt'), `${summary}\n`); // scripts/test keeps only pass/fail
  assert.deepEqual(problems, []);
  for (const r of rows) assert.ok(unique.has(r.event_id), `event ${r.event_id} lost`);
  assert.equal(unique.size, rows.length);
  // duplicates only within the unconfirmed window: an event arrives at most
  // once per failed attempt (published, its confirm never recorded: counted
  // when the connection failed, or when the worker stopped before the
  // confirm came), plus the publish that was confirmed
  const copies = new Map();
  for (const m of mine()) copies.set(m.properties.messageId, (copies.get(m.properties.messageId) ?? 0) + 1);
  for (const [id, n] of copies)
    assert.ok(n <= attempts.get(id) + 1, `event ${id} arrived ${n} times, after ${attempts.get(id)} failed attempts`);
});

test('refused credentials leave rows pending with a clear last_error, without a crash loop', async () => {
  const url = new URL(AMQP_URL);
  url.password = 'not-the-password';
  await setConf(db, { 'ventros.amqp_url': url.toString() });
  await until(async () => !(await status(db)).worker_connected, 'the publisher to drop its connection');
  await db.query('BEGIN');
  await db.query(`SET LOCAL ventros.tenant = '${TENANT}'`);
  await db.query(`UPDATE ventros.contacts SET name = 'Refused', version = version WHERE id = $1`, [ids[0]]);
  await db.query('COMMIT');
  const first = await until(async () => {
    const s = await status(db);
    return /ACCESS_REFUSED/.test(s.last_error ?? '') && s;
  }, 'the refusal in last_error');
  // retries go on in the same process: last_error_at moves, the pid stays
  const later = await until(async () => {
    const s = await status(db);
    return s.last_error_at > first.last_error_at && s;
  }, 'another attempt');
  assert.equal(later.worker_pid, first.worker_pid);
  assert.equal(later.worker_connected, false);
  assert.match(later.last_error, /login refused on 127\.0\.0\.1:\d+\/\/: connection closed by broker: 403 ACCESS_REFUSED/);
  assert.doesNotMatch(later.last_error, /not-the-password|ventros:/);
  assert.ok(Number(later.pending) >= 1);
  const pending = (await db.query(`SELECT status, attempts FROM ventros.outbox WHERE tenant_id = $1
                                   ORDER BY seq DESC LIMIT 1`, [TENANT])).rows[0];
  assert.deepEqual(pending, { status: 'pending', attempts: 0 });

  await setConf(db, { 'ventros.amqp_url': null });
  await until(async () => (await status(db)).pending === '0', 'the pending event published after the fix');
  assert.equal((await status(db)).worker_connected, true);
});

test('a batch a dead publisher left in flight counts a failed attempt when the next one starts', async () => {
  // A batch logged in ventros.outbox_in_flight and never recorded is what a
  // crashed publisher leaves; the event is kept from being claimed meanwhile.
  await db.query('BEGIN');
  await db.query(`SET LOCAL ventros.tenant = '${TENANT}'`);
  await db.query(`UPDATE ventros.contacts SET name = 'Left in flight', version = version WHERE id = $1`, [ids[0]]);
  // (the claim reads the retry time from the event's queue row)
  const { seq } = (await db.query(`UPDATE ventros.outbox_queue SET next_attempt_at = now() + interval '1 hour'
                                    WHERE seq = (SELECT max(seq) FROM ventros.outbox WHERE tenant_id = $1)
                                    RETURNING seq`, [TENANT])).rows[0];
  await db.query('INSERT INTO ventros.outbox_in_flight (seqs) VALUES (ARRAY[$1::bigint])', [seq]);
  await db.query('COMMIT');
  const before = (await status(db)).worker_pid;
  await db.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'ventros outbox publisher'`);
  const row = await until(async () => {
    const r = (await db.query('SELECT status, attempts, last_error FROM ventros.outbox WHERE seq = $1', [seq])).rows[0];
    return r.attempts === 1 && r;
  }, 'the next publisher to count the attempt');
  assert.equal(row.status, 'pending');
  assert.match(row.last_error, /the publisher stopped before these events were confirmed/);
  assert.notEqual((await status(db)).worker_pid, before, 'a new publisher');
  assert.equal((await db.query('SELECT count(*)::int AS n FROM ventros.outbox_in_flight WHERE $1 = ANY (seqs)', [seq])).rows[0].n, 0);
  // let it go: published at its retry
  await db.query('UPDATE ventros.outbox_queue SET next_attempt_at = now() WHERE seq = $1', [seq]);
  await until(async () => (await db.query('SELECT status FROM ventros.outbox WHERE seq = $1', [seq])).rows[0].status === 'published',
    'the event published after all');
});

test('an install script older than the library is reported and waited for, not crashed on', async () => {
  // what a database whose install script predates a rebuilt library looks like:
  // a function the publisher calls is missing
  await db.query('ALTER FUNCTION ventros.outbox_prune(interval, integer) RENAME TO outbox_prune_hidden');
  try {
    await db.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'ventros outbox publisher'`);
    const first = await until(async () => {
      const s = await status(db);
      return /older than the loaded library/.test(s.last_error ?? '') && s;
    }, 'the mismatch in last_error');
    assert.equal(first.worker_connected, false);
    // it checks again in the same process: last_error_at moves, the pid stays
    const later = await until(async () => {
      const s = await status(db);
      return s.last_error_at > first.last_error_at && s;
    }, 'another check');
    assert.equal(later.worker_pid, first.worker_pid);
    assert.match(later.last_error, /the ventros SQL installed in database "ventros" is older than the loaded library/);
  } finally {
    await db.query('ALTER FUNCTION ventros.outbox_prune_hidden(interval, integer) RENAME TO outbox_prune');
  }
  await until(async () => (await status(db)).worker_connected, 'the publisher to connect once the function is back');
});
