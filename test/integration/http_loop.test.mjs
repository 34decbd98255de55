// ventros-http's event loop: a request waiting in the database holds its
// connection, never its thread.  One loop thread and two database
// connections: while requests are blocked in PostgreSQL (on an advisory lock
// this test holds, so nothing depends on a clock), the same thread keeps
// answering others, a request that finds both connections busy waits in
// line and is served by the first connection to come free, and everything
// blocked completes once the lock is released.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, http, auth, db } from './http_helpers.mjs';
import { waitFor } from './wait.mjs';

let server;
let c;
before(async () => {
  c = await db();
  await c.query(`CREATE OR REPLACE FUNCTION api.http_loop_wait_lock(tag text) RETURNS text LANGUAGE sql VOLATILE
    AS $$ SELECT tag || ' got ' || pg_advisory_xact_lock(424243)::text $$`);
  await c.query('GRANT EXECUTE ON FUNCTION api.http_loop_wait_lock(text) TO ventros_viewer');
  server = await startServer({ VENTROS_HTTP_THREADS: '1', VENTROS_HTTP_POOL: '2', VENTROS_HTTP_POOL_WAIT_MS: '20000' });
});
after(async () => {
  await server.stop();
  await c.query('DROP FUNCTION IF EXISTS api.http_loop_wait_lock(text)');
  await c.end();
});

const viewer = auth('ventros_viewer', 'tr');

async function waitersOnLock(n) {
  await waitFor(`${n} requests blocked on the advisory lock`, async () => {
    const w = await c.query(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'");
    return w.rows[0].n >= n;
  });
}

test('one loop thread serves other requests while one waits in the database', async () => {
  await c.query('BEGIN');
  await c.query('SELECT pg_advisory_xact_lock(424243)');
  try {
    const blocked = http('POST', '/rpc/http_loop_wait_lock', { headers: viewer, body: { tag: 'first' } });
    await waitersOnLock(1);
    // the loop's only thread is free: reads on the other connection, and answers without the database
    for (let i = 0; i < 5; i++) {
      const r = await http('GET', '/contacts?select=name&limit=1', { headers: viewer });
      assert.equal(r.status, 200, r.text);
    }
    const health = await http('GET', '/health');
    assert.equal(health.status, 200, health.text);
    const options = await http('OPTIONS', '/contacts');
    assert.equal(options.status, 200);
    await c.query('COMMIT');
    const done = await blocked;
    assert.equal(done.status, 200, done.text);
    assert.equal(done.json, 'first got ');
  } finally {
    await c.query('ROLLBACK').catch(() => {});
  }
});

test('with both connections blocked, a request waits in line and gets the first one freed', async () => {
  await c.query('BEGIN');
  await c.query('SELECT pg_advisory_xact_lock(424243)');
  try {
    const first = http('POST', '/rpc/http_loop_wait_lock', { headers: viewer, body: { tag: 'a' } });
    const second = http('POST', '/rpc/http_loop_wait_lock', { headers: viewer, body: { tag: 'b' } });
    await waitersOnLock(2);
    let queuedDone = false;
    const queued = http('GET', '/contacts?select=name&limit=1', { headers: viewer }).then((r) => {
      queuedDone = true;
      return r;
    });
    // the queued request cannot finish while both connections are held
    const probe = await http('OPTIONS', '/contacts');
    assert.equal(probe.status, 200);
    assert.equal(queuedDone, false);
    await c.query('COMMIT');
    const answers = await Promise.all([first, second, queued]);
    assert.deepEqual(answers.map((r) => r.status), [200, 200, 200], answers.map((r) => r.text).join(' | '));
    assert.deepEqual([answers[0].json, answers[1].json], ['a got ', 'b got ']);
  } finally {
    await c.query('ROLLBACK').catch(() => {});
  }
});

test('many concurrent requests on one loop thread all get their own answers', async () => {
  const tags = Array.from({ length: 60 }, (_, i) => `t${i}`);
  const answers = await Promise.all(tags.map((tag) =>
    http('POST', '/rpc/http_loop_wait_lock', { headers: viewer, body: { tag } })));
  assert.deepEqual(answers.map((r) => r.json), tags.map((t) => `${t} got `));
});
