// ventros-http limits that need a server of their own: statement timeout
// (504), pool bounds (503 when no connection comes free in time), and the
// server recovering from both.  Deterministic: the blocking request waits on
// an advisory lock this test holds, not on a clock.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, http, auth, db } from './http_helpers.mjs';

let server;
let c;
before(async () => {
  c = await db();
  await c.query(`CREATE OR REPLACE FUNCTION api.http_test_sleep(seconds float8) RETURNS text LANGUAGE sql VOLATILE
    AS $$ SELECT 'slept ' || pg_sleep(seconds)::text $$`);
  await c.query(`CREATE OR REPLACE FUNCTION api.http_test_wait_lock() RETURNS text LANGUAGE sql VOLATILE
    AS $$ SELECT 'got ' || pg_advisory_xact_lock(424242)::text $$`);
  await c.query('GRANT EXECUTE ON FUNCTION api.http_test_sleep(float8), api.http_test_wait_lock() TO ventros_viewer');
  server = await startServer({ VENTROS_HTTP_POOL: '1', VENTROS_HTTP_POOL_WAIT_MS: '300', VENTROS_HTTP_STATEMENT_TIMEOUT: '3s' });
});
after(async () => {
  await server.stop();
  await c.query('DROP FUNCTION IF EXISTS api.http_test_sleep(float8), api.http_test_wait_lock()');
  await c.end();
});

const viewer = auth('ventros_viewer', 'tr');

test('a statement over the timeout answers 504 and the connection is reusable', async () => {
  const r = await http('POST', '/rpc/http_test_sleep', { headers: viewer, body: { seconds: 30 } });
  assert.equal(r.status, 504, r.text);
  assert.equal(r.json.code, '57014');
  const ok = await http('POST', '/rpc/http_test_sleep', { headers: viewer, body: { seconds: 0 } });
  assert.equal(ok.status, 200);
});

test('with every connection busy a request gets 503 and Retry-After, then service resumes', async () => {
  await c.query('BEGIN');
  await c.query('SELECT pg_advisory_xact_lock(424242)');
  const blocked = http('POST', '/rpc/http_test_wait_lock', { headers: viewer, body: {} });
  // the blocked request holds the only connection until the lock is released
  let busy;
  for (let i = 0; i < 100; i++) {
    const w = await c.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'");
    if (w.rows[0].n > 0) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  busy = await http('GET', '/contacts?select=name&limit=1', { headers: viewer });
  assert.equal(busy.status, 503);
  assert.equal(busy.json.code, 'PGRST003');
  assert.equal(busy.headers.get('retry-after'), '1');
  await c.query('COMMIT');
  const done = await blocked;
  assert.equal(done.status, 200, done.text);
  const after = await http('GET', '/contacts?select=name&limit=1', { headers: viewer });
  assert.equal(after.status, 200);
});
