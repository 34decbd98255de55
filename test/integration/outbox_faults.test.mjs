// The outbox publisher under faults, with writers running: the broker stopped
// and started several times, the worker backend terminated, PostgreSQL
// restarted.  Afterwards every event is in the (durable) queue, in order per
// aggregate; duplicates are counted and must all be events whose first
// publish was never recorded as confirmed (attempts > 0: failed attempts).
// Then a broker that refuses the credentials: rows stay pending with a clear
// last_error and the worker does not crash-loop; a broker frozen (SIGSTOP)
// past the confirm timeout, and with nothing in flight (the heartbeat).
// No test races the publisher: what must be seen before the publisher acts
// is held back deterministically (a retry time an hour away, a frozen
// broker), and settings take effect through a new publisher (setConf).
// Last, an event a consumer has survives a crash right after (the publisher
// flushes the WAL of what it claimed before publishing).
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import amqp from 'amqplib';
import {
  AMQP_URL, RUN_DIR, client, consumer, until, status, setConf, restartPublisher, checkOrder, sleep,
  brokerStop, brokerStart, brokerSignal, pgRestart,
} from './outbox_helpers.mjs';
import { alterSystem } from './settings.mjs';

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
  await setConf(db, { 'ventros.amqp_url': url.toString() }, { connected: false });
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
  // The next publisher counts the attempt and sets the retry an hour away
  // (its backoff): the event stays pending until the test lets it go, so
  // nothing races the publisher between the count and the look.
  await alterSystem(db, { 'ventros.outbox_backoff_min': '1h', 'ventros.outbox_backoff_max': '1h' });
  let seq;
  try {
    await db.query('BEGIN');
    await db.query(`SET LOCAL ventros.tenant = '${TENANT}'`);
    await db.query(`UPDATE ventros.contacts SET name = 'Left in flight', version = version WHERE id = $1`, [ids[0]]);
    // (the claim reads the retry time from the event's queue row)
    ({ seq } = (await db.query(`UPDATE ventros.outbox_queue SET next_attempt_at = now() + interval '1 hour'
                                WHERE seq = (SELECT max(seq) FROM ventros.outbox WHERE tenant_id = $1)
                                RETURNING seq`, [TENANT])).rows[0]);
    await db.query('INSERT INTO ventros.outbox_in_flight (seqs) VALUES (ARRAY[$1::bigint])', [seq]);
    await db.query('COMMIT');
    const before = (await status(db)).worker_pid;
    // the next publisher starts with the hour-long backoff (restartPublisher)
    const next = await restartPublisher(db);
    assert.notEqual(next.worker_pid, before, 'a new publisher');
    const row = await until(async () => {
      const r = (await db.query('SELECT status, attempts, last_error FROM ventros.outbox WHERE seq = $1', [seq])).rows[0];
      return r.attempts > 0 && r;
    }, 'the next publisher to count the attempt');
    assert.equal(row.attempts, 1);
    assert.equal(row.status, 'pending');
    assert.match(row.last_error, /the publisher stopped before these events were confirmed/);
    assert.equal((await db.query('SELECT count(*)::int AS n FROM ventros.outbox_in_flight WHERE $1 = ANY (seqs)', [seq])).rows[0].n, 0);
  } finally {
    await setConf(db, { 'ventros.outbox_backoff_min': '50ms', 'ventros.outbox_backoff_max': '1s' });
  }
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

// Copies of each message id among messages.
function copiesOf(messages) {
  const copies = new Map();
  for (const m of messages) copies.set(m.properties.messageId, (copies.get(m.properties.messageId) ?? 0) + 1);
  return copies;
}

test('a broker frozen past the confirm timeout: the batch stays pending with one failed attempt, then is published', async () => {
  // The confirm timeout, not the heartbeat, must end the wait here.
  await setConf(db, { 'ventros.outbox_confirm_timeout': '1s', 'ventros.outbox_heartbeat': '1min' });
  await until(async () => (await status(db)).pending === '0', 'nothing pending');
  const q = await consumer('ventros.test.frozen');
  try {
    await frozenBatch(q);
  } finally {
    await q.close(); // an open connection would keep the test process alive
    await setConf(db, { 'ventros.outbox_confirm_timeout': null, 'ventros.outbox_heartbeat': null });
  }
});

async function frozenBatch(q) {
  const since = (await db.query('SELECT now() AS t')).rows[0].t;
  let rows;
  brokerSignal('STOP');
  try {
    // five events of one aggregate, published into a broker that reads nothing
    await db.query('BEGIN');
    await db.query(`SET LOCAL ventros.tenant = '${TENANT}'`);
    for (let i = 0; i < 5; i++)
      await db.query(`UPDATE ventros.contacts SET name = $2, version = version WHERE id = $1`, [ids[1], `Frozen ${i}`]);
    await db.query('COMMIT');
    // (each rename also writes contact.name_changed: the five contact.updated are followed)
    rows = (await db.query(`SELECT seq, event_id::text FROM ventros.outbox
                            WHERE tenant_id = $1 AND aggregate_id = $2 AND status = 'pending'
                              AND event_type = 'contact.updated' ORDER BY seq`,
                           [TENANT, ids[1]])).rows;
    assert.equal(rows.length, 5);
    // the broker stays frozen: once the publisher gave up on the confirms,
    // nothing can change these rows until it thaws
    await until(async () => {
      const s = await status(db);
      return /no publisher confirm within 1000 ms/.test(s.last_error ?? '') && s.last_error_at > since;
    }, 'the confirm timeout', 60000);
    const after = (await db.query(`SELECT status, attempts, last_error FROM ventros.outbox
                                   WHERE seq = ANY ($1) ORDER BY seq`, [rows.map((r) => r.seq)])).rows;
    for (const r of after) {
      assert.equal(r.status, 'pending', 'an unconfirmed event is not recorded as published');
      assert.equal(r.attempts, 1, 'one failed attempt');
      assert.match(r.last_error, /no publisher confirm within 1000 ms/);
    }
  } finally {
    brokerSignal('CONT');
  }
  await until(async () => (await db.query(`SELECT count(*) FILTER (WHERE status = 'published')::int AS n
                                           FROM ventros.outbox WHERE seq = ANY ($1)`, [rows.map((r) => r.seq)])).rows[0].n === 5,
  'the events published after the thaw', 60000);
  const done = (await db.query(`SELECT attempts FROM ventros.outbox WHERE seq = ANY ($1)`, [rows.map((r) => r.seq)])).rows;
  assert.deepEqual(done.map((r) => r.attempts), [1, 1, 1, 1, 1], 'published by the retry, recorded once');
  const wanted = new Set(rows.map((r) => r.event_id));
  const mine = () => q.messages.filter((m) => wanted.has(m.properties.messageId));
  await until(() => new Set(mine().map((m) => m.properties.messageId)).size === 5, 'every event at the consumer');
  const { problems } = checkOrder(mine());
  assert.deepEqual(problems, []);
  // at least once: the frozen broker may still route what it had read
  // before the publisher gave up (one copy per attempt at most)
  const copies = copiesOf(mine());
  console.log(`# frozen broker: copies per event ${[...copies.values()].join(',')}`);
  for (const [id, n] of copies) assert.ok(n <= 2, `event ${id} arrived ${n} times after one failed attempt`);
}

test('a broker frozen with nothing in flight is noticed by the heartbeat; the publisher reconnects after the thaw', async () => {
  await setConf(db, { 'ventros.outbox_heartbeat': '1s' });
  try {
    await until(async () => (await status(db)).pending === '0', 'nothing pending');
    const since = (await db.query('SELECT now() AS t')).rows[0].t;
    brokerSignal('STOP');
    let lost;
    try {
      // no confirm is awaited: only the heartbeat can tell a silent broker
      lost = await until(async () => {
        const s = await status(db);
        return /heartbeat timeout/.test(s.last_error ?? '') && s.last_error_at > since && s;
      }, 'the heartbeat timeout', 60000);
    } finally {
      brokerSignal('CONT');
    }
    assert.match(lost.last_error, /connection to 127\.0\.0\.1:\d+\/\/ lost: heartbeat timeout/);
    await until(async () => {
      const s = await status(db);
      return s.worker_connected && s.connected_since > lost.last_error_at;
    }, 'a new connection after the thaw', 60000);
  } finally {
    await setConf(db, { 'ventros.outbox_heartbeat': null });
  }
});

test('an event goes out only once its commit is durable: a crash right after cannot take it back', async () => {
  // The commit reaches the disk late (synchronous_commit = off; the WAL
  // writer every 10 s): only the publisher's own flush before publishing
  // makes it durable before a consumer has it.
  await alterSystem(db, { wal_writer_delay: '10s' });
  const q = await consumer('ventros.test.durable');
  let eventId;
  try {
    await db.query('BEGIN');
    await db.query('SET LOCAL synchronous_commit = off');
    await db.query(`SET LOCAL ventros.tenant = '${TENANT}'`);
    await db.query(`UPDATE ventros.contacts SET name = 'Durable', version = version WHERE id = $1`, [ids[2]]);
    eventId = (await db.query(`SELECT event_id::text FROM ventros.outbox WHERE tenant_id = $1 AND aggregate_id = $2
                               ORDER BY seq DESC LIMIT 1`, [TENANT, ids[2]])).rows[0].event_id;
    await db.query('COMMIT');
    await until(() => q.messages.some((m) => m.properties.messageId === eventId), 'the event at the consumer');
  } finally {
    await q.close();
  }
  // a crash: no shutdown checkpoint, only what reached the WAL on disk survives
  await db.end();
  pgRestart('immediate');
  db = await until(() => client(), 'PostgreSQL after the crash');
  try {
    const rows = (await db.query('SELECT status FROM ventros.outbox WHERE event_id = $1', [eventId])).rows;
    assert.equal(rows.length, 1, 'an event a consumer has is still in the outbox after the crash');
    const c = (await db.query(`SELECT name FROM ventros.contacts WHERE id = $1`, [ids[2]])).rows[0];
    assert.equal(c.name, 'Durable');
  } finally {
    await alterSystem(db, { wal_writer_delay: null });
  }
});
