// ventros-http when PostgreSQL goes away and comes back: /health and requests
// answer 503 (never hang, never crash), and service resumes by itself.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { startServer, http, auth, ROOT } from './http_helpers.mjs';

const RUN = process.env.VENTROS_RUN_DIR;
const lib = path.join(ROOT, 'scripts/lib.sh');
const pg = (fn) => execFileSync('bash', ['-c', `source "${lib}"; ${fn} "${RUN}" ${process.env.PGPORT}`], { stdio: 'ignore' });

let server;
before(async () => { server = await startServer({ VENTROS_HTTP_POOL: '2', VENTROS_HTTP_POOL_WAIT_MS: '1000' }); });
after(async () => {
  pg('pg_start');	// whatever happened, leave the server running for the next file
  await server.stop();
});

const viewer = auth('ventros_viewer', 'tr');

test('PostgreSQL down: 503 with PostgREST error JSON; back up: service resumes', { timeout: 120000 }, async () => {
  assert.equal((await http('GET', '/contacts?select=name&limit=1', { headers: viewer })).status, 200);
  pg('pg_stop');
  const health = await http('GET', '/health');
  assert.equal(health.status, 503);
  assert.equal(health.json.code, 'PGRST001');
  for (let i = 0; i < 3; i++) {
    const r = await http('GET', '/contacts?select=name&limit=1', { headers: viewer });
    assert.equal(r.status, 503, r.text);
    assert.ok(['PGRST001', 'PGRST003'].includes(r.json.code));
  }
  pg('pg_start');
  let r;
  for (let i = 0; i < 200; i++) {
    r = await http('GET', '/contacts?select=name&order=name&limit=1', { headers: viewer });
    if (r.status === 200) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, [{ name: 'Ann' }]);
  assert.equal((await http('GET', '/health')).status, 200);
  // every pooled connection was broken by the restart: each is found dead and
  // reconnected before use, so reads and writes work at once
  for (let i = 0; i < 4; i++) {
    assert.equal((await http('GET', '/contacts?select=name&limit=1', { headers: viewer })).status, 200);
    const w = await http('POST', '/rpc/login', { body: { email: 'nobody@example.com', password: 'whatever1' } });
    assert.equal(w.status, 401, `${w.status} ${w.text}`);
  }
  assert.equal(server.child.exitCode, null, 'the server never exited');
});
