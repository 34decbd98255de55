// ventros-http: tenant users and admins (docs/security.md, "Tenant users and
// admins").  A suspended user gets no token over HTTP, whichever endpoint it
// asks; agents cannot forge domain events through /rpc; custom events keep
// their own namespace.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, http, db } from './http_helpers.mjs';

let server;
before(async () => { server = await startServer(); });
after(async () => { await server.stop(); });

async function setStatus(email, status) {
  const c = await db();
  try {
    await c.query('UPDATE ventros.users SET status = $2, version = version WHERE email = $1', [email, status]);
  } finally {
    await c.end();
  }
}

test('a suspended user gets no token from /rpc/register, /rpc/login or /rpc/refresh', async () => {
  const email = `suspended${Date.now()}@example.com`;
  const body = { email, password: 'correct horse', name: 'Suspended User' };
  const reg = await http('POST', '/rpc/register', { body });
  assert.equal(reg.status, 200, reg.text);
  await setStatus(email, 'suspended');
  try {
    const again = await http('POST', '/rpc/register', { body });
    assert.equal(again.status, 401, again.text);
    assert.equal(again.json.code, '28000');
    assert.equal(again.json.access_token, undefined);
    const login = await http('POST', '/rpc/login', { body: { email, password: 'correct horse' } });
    assert.equal(login.status, 401, login.text);
    const refresh = await http('POST', '/rpc/refresh', { body: { refresh_token: reg.json.refresh_token } });
    assert.equal(refresh.status, 401, refresh.text);
  } finally {
    await setStatus(email, 'active');
  }
  const back = await http('POST', '/rpc/register', { body });
  assert.equal(back.status, 200, 'active again, register answers as a login');
});
