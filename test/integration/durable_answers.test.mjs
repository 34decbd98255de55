// What Ventros tells the outside world has happened, a crash cannot take
// back (docs/reliability.md, guarantees 3, 10 and 11), even on a server that
// runs synchronous_commit = off, as the test cluster does:
//   - an answer of the front to a write (a webhook answered 200, a PATCH
//     answered 200) is sent once the commit is on disk;
//   - the HTTP dispatcher sends a request only once the transaction that
//     queued it is on disk.
// Each test makes the WAL reach the disk late (wal_writer_delay = 10 s), keeps
// every other flush away (no publisher connected, processing held back by a
// lock, the receiver holding its answer), then crashes PostgreSQL
// (pg_ctl -m immediate) right after the fact, and looks for it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { client, pgRestart, until, setConf } from './outbox_helpers.mjs';
import { alterSystem } from './settings.mjs';
import { startServer, http, auth, BASE } from './http_helpers.mjs';
import { createChannel, secret } from './webhooks_helpers.mjs';
import { emitWaha, wahaMessage } from './fakes/emit.mjs';
import { startRecorder } from './fakes/recorder.mjs';

const TENANT = 'durable_it';
const LATE_WAL = { wal_writer_delay: '10s' };
const DISPATCH = {
  'ventros.http_allow_hosts': '127.0.0.1/32',
  'ventros.http_timeout': '60000',
};
let db;
let front;

async function asTenant(sql, params = []) {
  await db.query('BEGIN');
  try {
    await db.query("SELECT set_config('ventros.tenant', $1, true)", [TENANT]);
    const r = await db.query(sql, params);
    await db.query('COMMIT');
    return r.rows;
  } catch (e) {
    await db.query('ROLLBACK');
    throw e;
  }
}

// a crash, then a new connection
async function crash() {
  await db.end();
  pgRestart('immediate');
  db = await until(() => client(), 'PostgreSQL after the crash');
}

before(async () => {
  db = await client();
  await db.query(`SELECT ventros.create_tenant($1, 'Durable') WHERE NOT EXISTS (SELECT FROM ventros.projects WHERE tenant_id = $1)`, [TENANT]);
  front = await startServer();
});

after(async () => {
  await alterSystem(db, { ...Object.fromEntries(Object.keys({ ...LATE_WAL, ...DISPATCH }).map((k) => [k, null])) });
  await setConf(db, { 'ventros.amqp_url': null });
  await db.end();
  await front.stop();
});

test('a write the front answered survives a crash right after the answer (webhook 200, PATCH 200)', async () => {
  const wahaSecret = secret();
  const ch = await createChannel(db, TENANT, 'waha', { base_url: 'http://127.0.0.1:9', session: 'durable',
    api_key: secret(8), webhook_secret: wahaSecret });
  const [contact] = await asTenant(`SELECT (ventros.create_contact('Durable Ann')).id`);
  // no publisher: it would flush the WAL before publishing the events
  await setConf(db, { 'ventros.amqp_url': 'amqp://ventros:ventros@127.0.0.1:9/%2F' }, { connected: false });
  await alterSystem(db, LATE_WAL);
  const blocker = await client();
  try {
    const admin = { ...auth('ventros_admin', TENANT), Prefer: 'return=representation' };
    const patched = await http('PATCH', `/contacts?id=eq.${contact.id}&select=name,version`,
      { headers: admin, body: { name: 'Durable Bea', version: 1 } });
    assert.equal(patched.status, 200, patched.text);
    assert.deepEqual(patched.json, [{ name: 'Durable Bea', version: 2 }]);
    // processing a new sender waits for this lock: only accept_webhook writes
    await blocker.query('BEGIN');
    await blocker.query('LOCK TABLE ventros.contacts IN EXCLUSIVE MODE');
    const msg = wahaMessage({ from: '5511972229001', body: 'durable' });
    const r = await emitWaha(BASE, ch.id, msg, { hmacKey: wahaSecret });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.status, 'accepted');
  } catch (e) {
    await blocker.end().catch(() => {});
    throw e;
  }
  await crash(); // the blocker too
  await blocker.end().catch(() => {});
  const inbox = await asTenant(`SELECT status FROM ventros.inbox WHERE channel_id = $1`, [ch.id]);
  assert.equal(inbox.length, 1, 'the webhook answered 200 is still stored after the crash');
  const [c] = await asTenant('SELECT name, version FROM ventros.contacts WHERE id = $1', [contact.id]);
  assert.deepEqual(c, { name: 'Durable Bea', version: 2 }, 'the PATCH answered 200 is still there after the crash');
  await alterSystem(db, Object.fromEntries(Object.keys(LATE_WAL).map((k) => [k, null])));
});

test('the dispatcher sends only what a crash cannot take back: a request queued with synchronous_commit = off', async () => {
  const fake = await startRecorder();
  try {
    // answered only when released: nothing is recorded before the crash
    fake.script({ path: '/durable', default: { status: 200, hold: true } });
    await alterSystem(db, { ...DISPATCH, ...LATE_WAL });
    await db.query('BEGIN');
    await db.query('SET LOCAL synchronous_commit = off');
    await db.query("SELECT set_config('ventros.tenant', $1, true)", [TENANT]);
    const [{ id }] = (await db.query(`SELECT ventros.enqueue_http_request($1, 'POST', '{}'::jsonb, convert_to('x', 'UTF8')) AS id`,
      [`${fake.url}/durable`])).rows;
    await db.query('COMMIT');
    await until(() => fake.requests('/durable').length === 1, 'the request at the receiver');
    await crash();
    fake.script({ path: '/durable', default: { status: 200 } });
    fake.release();
    const rows = await asTenant('SELECT status FROM ventros.http_requests WHERE id = $1', [id]);
    assert.equal(rows.length, 1, 'a request its receiver got is still queued after the crash');
    await alterSystem(db, Object.fromEntries(Object.keys(LATE_WAL).map((k) => [k, null])));
    await until(async () => (await asTenant('SELECT status FROM ventros.http_requests WHERE id = $1', [id]))[0]?.status === 'succeeded',
      'the request sent again and succeeded');
  } finally {
    await fake.close();
  }
});
