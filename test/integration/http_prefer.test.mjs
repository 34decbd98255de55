// ventros-http over real HTTP, the dialect's later additions: planned and
// estimated counts (answered exactly), Prefer: tx=rollback|commit,
// spread embedding, Accept-Profile / Content-Profile, unknown tables (400),
// API keys' last_used, and what a sign-up creates with the tenant.  Plain
// fetch and the real client @supabase/postgrest-js.  The server of this file
// has a page size of 3.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { PostgrestClient } from '@supabase/postgrest-js';
import { startServer, http, auth, db, BASE } from './http_helpers.mjs';

const MAX_ROWS = 3;
let server;
before(async () => { server = await startServer({ VENTROS_HTTP_MAX_ROWS: String(MAX_ROWS) }); });
after(async () => { await server.stop(); });

const viewer = auth('ventros_viewer', 'tr');
const adminA = auth('ventros_admin', 'ta');

const total = (r) => r.headers.get('content-range').split('/')[1];

// The planner's estimates come from statistics over every tenant's rows, so
// planned and estimated counts are answered exactly (http_abuse.test.mjs
// shows what an estimate would leak).
test('count=planned and count=estimated answer the exact count, and say so', async () => {
  const c = await db();
  await c.query('ANALYZE ventros.contacts');
  await c.end();
  for (const pref of ['count=planned', 'count=estimated']) {
    for (const [filter, exact] of [['name=eq.Ann', 1], ['', 5], ['name=eq.Nobody', 0]]) {
      const r = await http('GET', `/contacts?select=name&limit=1&${filter}`, { headers: { ...viewer, Prefer: pref } });
      assert.ok([200, 206].includes(r.status), r.text);
      assert.equal(Number(total(r)), exact, `${pref} ${filter}`);
      assert.equal(r.headers.get('preference-applied'), 'count=exact');
    }
  }
  const api = new PostgrestClient(BASE, { headers: viewer });
  const { count, error } = await api.from('contacts').select('name', { count: 'planned' }).eq('name', 'Ann');
  assert.equal(error, null);
  assert.equal(count, 1);
});

test('Prefer: tx=rollback answers as if done and changes nothing; tx=commit keeps', async () => {
  const stamp = Date.now();
  const r = await http('POST', '/contacts?select=id,name', {
    headers: { ...adminA, Prefer: 'return=representation, tx=rollback' }, body: { name: `Rolled ${stamp}` },
  });
  assert.equal(r.status, 201, r.text);
  assert.equal(r.json[0].name, `Rolled ${stamp}`);
  assert.match(r.headers.get('preference-applied'), /tx=rollback/);
  const gone = await http('GET', `/contacts?id=eq.${r.json[0].id}`, { headers: adminA });
  assert.deepEqual(gone.json, []);
  const kept = await http('POST', '/contacts?select=id,version', {
    headers: { ...adminA, Prefer: 'return=representation, tx=commit' }, body: { name: `Kept ${stamp}` },
  });
  assert.equal(kept.status, 201);
  assert.match(kept.headers.get('preference-applied'), /tx=commit/);
  const id = kept.json[0].id;
  const patched = await http('PATCH', `/contacts?id=eq.${id}`, {
    headers: { ...adminA, Prefer: 'tx=rollback' }, body: { name: 'Renamed', version: 1 },
  });
  assert.equal(patched.status, 204);
  const still = await http('GET', `/contacts?select=name,version&id=eq.${id}`, { headers: adminA });
  assert.deepEqual(still.json, [{ name: `Kept ${stamp}`, version: 1 }]);
  // an error inside a rolled-back request is still the error
  const stale = await http('PATCH', `/contacts?id=eq.${id}`, {
    headers: { ...adminA, Prefer: 'tx=rollback' }, body: { name: 'Renamed', version: 7 },
  });
  assert.equal(stale.status, 409);
  // and the connection is clean afterwards: the next request commits
  const del = await http('DELETE', `/contacts?id=eq.${id}`, { headers: adminA });
  assert.equal(del.status, 204);
  assert.deepEqual((await http('GET', `/contacts?id=eq.${id}`, { headers: adminA })).json, []);
  const api = new PostgrestClient(BASE, { headers: { ...adminA, Prefer: 'tx=rollback' } });
  const { data, error } = await api.from('contacts').insert({ name: `Js ${stamp}` }).select('id');
  assert.equal(error, null);
  assert.deepEqual((await http('GET', `/contacts?id=eq.${data[0].id}`, { headers: adminA })).json, []);
});

test('spread embedding: a to-one row\'s columns join the parent\'s', async () => {
  const r = await http('GET', '/contacts?select=name,...projects(project_name:name,active)&name=eq.Ann', { headers: viewer });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, [{ name: 'Ann', project_name: 'tr Inc.', active: true }]);
  const filtered = await http('GET', '/contacts?select=name,...projects(project_name:name)&name=in.(Ann,Bob)&order=name', { headers: viewer });
  assert.deepEqual(filtered.json, [{ name: 'Ann', project_name: 'tr Inc.' }, { name: 'Bob', project_name: 'tr Inc.' }]);
  const api = new PostgrestClient(BASE, { headers: viewer });
  const { data, error } = await api.from('contacts').select('name, ...projects(project_name:name)').eq('name', 'Bob');
  assert.equal(error, null);
  assert.deepEqual(data, [{ name: 'Bob', project_name: 'tr Inc.' }]);
  const many = await http('GET', '/projects?select=name,...contacts(name)', { headers: viewer });
  assert.equal(many.status, 400);
  assert.equal(many.json.code, 'PGRST119'); // PostgREST 12's answer to a to-many spread
  const nested = await http('GET', '/projects?select=name,contacts(name,...projects(project:name))', { headers: viewer });
  assert.equal(nested.status, 200, nested.text); // a spread below an embedding
  for (const p of nested.json) for (const c of p.contacts) assert.equal(c.project, p.name);
  const unknown = await http('GET', '/contacts?select=name,...nope(name)', { headers: viewer });
  assert.equal(unknown.status, 400);
});

test('Accept-Profile / Content-Profile: api, or 406 PGRST106', async () => {
  const ok = await http('GET', '/contacts?select=name&name=eq.Ann', { headers: { ...viewer, 'Accept-Profile': 'api' } });
  assert.equal(ok.status, 200);
  const other = await http('GET', '/contacts', { headers: { ...viewer, 'Accept-Profile': 'ventros' } });
  assert.equal(other.status, 406);
  assert.deepEqual(other.json, { code: 'PGRST106', message: 'The schema must be one of the following: api', details: null, hint: null });
  const write = await http('POST', '/contacts', { headers: { ...adminA, 'Content-Profile': 'public' }, body: { name: 'Nope' } });
  assert.equal(write.status, 406);
  assert.equal(write.json.code, 'PGRST106');
  const api = new PostgrestClient(BASE, { headers: viewer, schema: 'ventros' });
  const { error, status } = await api.from('contacts').select('name');
  assert.equal(status, 406);
  assert.equal(error.code, 'PGRST106');
  const right = new PostgrestClient(BASE, { headers: viewer, schema: 'api' });
  assert.equal((await right.from('contacts').select('name').eq('name', 'Ann')).data.length, 1);
});

test('an unknown table is 400 PGRST205 with the name in the message', async () => {
  const r = await http('GET', '/nope', { headers: viewer });
  assert.equal(r.status, 400);
  assert.equal(r.json.code, 'PGRST205');
  assert.match(r.json.message, /could not find the table api\.nope/);
  assert.equal((await http('POST', '/nope', { headers: adminA, body: { a: 1 } })).status, 400);
});

async function keyRow(c, id) {
  const r = await c.query('SELECT last_used, version FROM ventros.user_api_keys WHERE id = $1', [id]);
  return r.rows[0];
}

test('API keys: last_used marked on use, at most once a minute, never waiting', async () => {
  const email = `used${Date.now()}@example.com`;
  const reg = await http('POST', '/rpc/register', { body: { email, password: 'correct horse', name: 'Used' } });
  const bearer = { Authorization: `Bearer ${reg.json.access_token}` };
  const key = await http('POST', '/rpc/create_api_key', { headers: bearer, body: { name: 'bot' } });
  const apikey = { apikey: key.json.key };
  const c = await db();
  try {
    assert.equal((await keyRow(c, key.json.id)).last_used, null);
    assert.equal((await http('GET', '/rpc/me', { headers: apikey })).status, 200);
    const first = await keyRow(c, key.json.id);
    assert.ok(first.last_used instanceof Date);
    assert.equal(first.version, 1, 'a quiet column: no new version');
    assert.equal((await http('GET', '/rpc/me', { headers: apikey })).status, 200);
    assert.equal((await keyRow(c, key.json.id)).last_used.getTime(), first.last_used.getTime(), 'not again within a minute');
    const events = await c.query(
      "SELECT count(*)::int AS n FROM ventros.outbox WHERE aggregate_id = $1 AND event_type = 'user_api_key.updated'", [key.json.id]);
    assert.equal(events.rows[0].n, 0, 'no event for a mark');
    await c.query(`BEGIN; SELECT set_config('ventros.tenant', (SELECT tenant_id FROM ventros.user_api_keys WHERE id = '${key.json.id}'), true);
      UPDATE ventros.user_api_keys SET last_used = now() - interval '2 minutes', version = version WHERE id = '${key.json.id}'; COMMIT`);
    const old = (await keyRow(c, key.json.id)).last_used;
    // a request finding the key row locked does not wait for it
    await c.query('BEGIN');
    await c.query('SELECT 1 FROM ventros.user_api_keys WHERE id = $1 FOR UPDATE', [key.json.id]);
    assert.equal((await http('GET', '/rpc/me', { headers: apikey })).status, 200);
    await c.query('COMMIT');
    assert.equal((await keyRow(c, key.json.id)).last_used.getTime(), old.getTime(), 'left to the lock holder');
    assert.equal((await http('GET', '/rpc/me', { headers: apikey })).status, 200);
    assert.ok((await keyRow(c, key.json.id)).last_used > old, 'marked again after a minute');
  } finally {
    await c.end();
  }
});

test('register: a sign-up creates the billing account, project, pipeline and owner agent', async () => {
  const email = `owner${Date.now()}@example.com`;
  const reg = await http('POST', '/rpc/register', { body: { email, password: 'correct horse', name: 'Owner', tenant_name: 'Acme' } });
  assert.equal(reg.status, 200, reg.text);
  const h = { Authorization: `Bearer ${reg.json.access_token}` };
  const me = (await http('GET', '/rpc/me', { headers: h })).json;
  const accounts = await http('GET', '/billing_accounts?select=id,name,user_id,billing_email,payment_status', { headers: h });
  assert.deepEqual(accounts.json.map(({ id, ...a }) => a),
    [{ name: 'Acme', user_id: me.id, billing_email: email, payment_status: 'pending' }]);
  const projects = await http('GET', '/projects?select=id,name,user_id,billing_account_id', { headers: h });
  assert.deepEqual(projects.json.map(({ id, ...p }) => p), [{ name: 'Acme', user_id: me.id, billing_account_id: null }]);
  const pipelines = await http('GET', '/pipelines?select=name,project_id', { headers: h });
  assert.deepEqual(pipelines.json, [{ name: 'Default pipeline', project_id: projects.json[0].id }]);
  const statuses = await http('GET', '/pipeline_statuses?select=name&order=position', { headers: h });
  assert.deepEqual(statuses.json.map((s) => s.name), ['New', 'In progress', 'Done']);
  const agents = await http('GET', '/agents?select=name,email,user_id,role,type&type=eq.human', { headers: h });
  assert.deepEqual(agents.json, [{ name: 'Owner', email, user_id: me.id, role: 'admin', type: 'human' }]);

  // with a payment method: refused, only Stripe activates an account (docs/billing.md)
  const paid = `paid${Date.now()}@example.com`;
  const reg2 = await http('POST', '/rpc/register', {
    body: { email: paid, password: 'correct horse', name: 'Payer', payment_method: { id: 'pm_123', type: 'card' } },
  });
  assert.equal(reg2.status, 400, reg2.text);
  assert.equal(reg2.json.code, '22023');
  const again = await http('POST', '/rpc/register', { body: { email: paid, password: 'correct horse', name: 'Payer' } });
  assert.equal(again.status, 200, again.text);
  const h2 = { Authorization: `Bearer ${again.json.access_token}` };
  const [account] = (await http('GET', '/billing_accounts?select=id,payment_status', { headers: h2 })).json;
  assert.equal(account.payment_status, 'pending');
  assert.deepEqual((await http('GET', '/projects?select=billing_account_id', { headers: h2 })).json,
    [{ billing_account_id: null }]);

  // an administrator adding a user to a tenant creates none of these
  const before = (await http('GET', '/billing_accounts?select=id', { headers: h })).json.length;
  const added = await http('POST', '/rpc/register', { headers: h, body: { email: `member${Date.now()}@example.com`, password: 'correct horse', name: 'Member' } });
  assert.equal(added.status, 200, added.text);
  assert.equal((await http('GET', '/billing_accounts?select=id', { headers: h })).json.length, before);
  assert.equal((await http('GET', '/pipelines?select=id', { headers: h })).json.length, 1);
  const withCard = await http('POST', '/rpc/register', {
    headers: h, body: { email: `m2${Date.now()}@example.com`, password: 'correct horse', name: 'M2', payment_method: { id: 'pm_1' } },
  });
  assert.equal(withCard.status, 400);
});
