// ventros-http against requests an attacker shapes (issue 12, docs/security.md
// "The HTTP front"): a thousand embeds or a costly plan (refused before they
// run, JIT off), counts that would leak other tenants' statistics, tokens
// with a string nbf, a crit header or a claim given twice, a token reused
// after it expired, an encoded slash in a webhook path, and many statement
// shapes on one pooled connection.  The server of this file has one database
// connection, so what a request sees of its connection is the pool's.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { startServer, http, auth, db, token, b64url, SECRET, AUDIENCE, BASE } from './http_helpers.mjs';
import { createChannel, channelConfigs } from './webhooks_helpers.mjs';

const PREPARED = 8;
const PLAN_COST = 500;
const BIG = 'tbig';				// a tenant with 300 contacts named alike
const SECRET_NAME = 'Zq Only-In-Big';
let server;
let c;

before(async () => {
  c = await db();
  await c.query(`DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM ventros.projects WHERE tenant_id = '${BIG}') THEN
      PERFORM ventros.create_tenant('${BIG}', 'Big Inc.');
      PERFORM set_config('ventros.tenant', '${BIG}', true);
      FOR i IN 1..300 LOOP PERFORM ventros.create_contact('${SECRET_NAME}'); END LOOP;
    END IF; END $$`);
  // the statistics now hold the big tenant's value among the most common ones
  await c.query('ANALYZE ventros.contacts');
  await c.query(`CREATE OR REPLACE FUNCTION api.http_test_session() RETURNS json LANGUAGE sql VOLATILE
    AS $$ SELECT json_build_object('jit', current_setting('jit'), 'max_plan_cost', current_setting('ventros.max_plan_cost'),
      'prepared', (SELECT count(*) FROM pg_catalog.pg_prepared_statements)) $$`);
  await c.query('GRANT EXECUTE ON FUNCTION api.http_test_session() TO ventros_viewer');
  server = await startServer({
    VENTROS_HTTP_POOL: '1',
    VENTROS_HTTP_PREPARED: String(PREPARED),
    VENTROS_HTTP_MAX_PLAN_COST: String(PLAN_COST),
  });
});
after(async () => {
  await server.stop();
  await c.query('DROP FUNCTION IF EXISTS api.http_test_session()');
  await c.end();
});

const viewer = auth('ventros_viewer', 'tr');
const bigViewer = auth('ventros_viewer', BIG);
const embeds = (n) => ['name', ...Array.from({ length: n }, (_, i) => `p${i}:projects(name)`)].join(',');

test('a thousand sibling embeds are refused with 400 54000 before any statement runs', async () => {
  // eight at once (they once held the pool for a minute), beside another tenant's requests
  const big = Array.from({ length: 8 }, () => http('GET', `/contacts?select=${embeds(1000)}`, { headers: bigViewer }));
  const light = Array.from({ length: 8 }, () => http('GET', '/contacts?select=name&order=name&limit=1', { headers: viewer }));
  const [bs, ls] = await Promise.all([Promise.all(big), Promise.all(light)]);
  for (const l of ls) assert.deepEqual(l.json, [{ name: 'Ann' }], l.text);
  for (const b of bs) assert.equal(b.status, 400, b.text);
  const r = bs[0];
  assert.equal(r.status, 400, r.text);
  assert.equal(r.json.code, '54000');
  assert.match(r.json.message, /embeds at most \d+ resources/);
  const wide = await http('GET', `/contacts?select=${Array(1000).fill('name').join(',')}`, { headers: viewer });
  assert.equal(wide.status, 400, wide.text);
  assert.equal(wide.json.code, '54000');
  assert.match(wide.json.message, /selects at most \d+ columns/);
  const fine = await http('GET', `/contacts?select=${embeds(3)}&limit=1`, { headers: viewer });
  assert.equal(fine.status, 200, fine.text);
});

test('requests run with JIT off and the front\'s plan-cost ceiling', async () => {
  const r = await http('POST', '/rpc/http_test_session', { headers: viewer, body: {} });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.jit, 'off');
  assert.equal(Number(r.json.max_plan_cost), PLAN_COST);
});

test('a plan over the cost ceiling is refused (54000) while another tenant keeps its answers', async () => {
  // 20 embeds over 300 rows: within the embed cap, over the cost ceiling
  const heavy = Array.from({ length: 4 }, () => http('GET', `/contacts?select=${embeds(20)}`, { headers: bigViewer }));
  const light = Array.from({ length: 8 }, () => http('GET', '/contacts?select=name&order=name&limit=2', { headers: viewer }));
  const [hs, ls] = await Promise.all([Promise.all(heavy), Promise.all(light)]);
  for (const h of hs) {
    assert.equal(h.status, 413, h.text);
    assert.equal(h.json.code, '54000');
    assert.match(h.json.message, /estimated cost exceeds the limit 500/);
    assert.ok(h.json.hint);
  }
  for (const l of ls) {
    assert.equal(l.status, 200, l.text);
    assert.deepEqual(l.json.map((x) => x.name), ['Ann', 'Bob']);
  }
});

test('count=planned and count=estimated give no estimate of another tenant\'s values: 0 as for a value nobody has', async () => {
  const total = (r) => r.headers.get('content-range').split('/')[1];
  for (const pref of ['count=planned', 'count=estimated', 'count=exact']) {
    const theirs = await http('GET', `/contacts?select=name&name=eq.${encodeURIComponent(SECRET_NAME)}`, { headers: { ...viewer, Prefer: pref } });
    const nobody = await http('GET', '/contacts?select=name&name=eq.Zq%20Nobody%20Has%20This', { headers: { ...viewer, Prefer: pref } });
    assert.equal(theirs.status, 200, theirs.text);
    assert.equal(total(theirs), '0', `${pref}: ${theirs.headers.get('content-range')}`);
    assert.equal(total(theirs), total(nobody), pref);
    assert.equal(theirs.headers.get('preference-applied'), 'count=exact');
  }
  // and the tenant's own rows are counted exactly
  const own = await http('GET', '/contacts?select=name&name=eq.Ann', { headers: { ...viewer, Prefer: 'count=planned' } });
  assert.equal(own.headers.get('content-range'), '0-0/1');
});

function signRaw(headerText, payloadText) {
  const h = b64url(headerText);
  const p = b64url(payloadText);
  const s = b64url(crypto.createHmac('sha256', SECRET).update(`${h}.${p}`).digest());
  return `${h}.${p}.${s}`;
}

test('tokens with a string nbf, a crit header or a claim given twice are refused with 401', async () => {
  const now = Math.floor(Date.now() / 1000);
  const base = `"role":"ventros_viewer","tenant_id":"tr","aud":"${AUDIENCE}","exp":${now + 600}`;
  const header = '{"alg":"HS256","typ":"JWT"}';
  const good = signRaw(header, `{${base}}`);
  assert.equal((await http('GET', '/contacts?select=name&limit=1', { headers: { Authorization: `Bearer ${good}` } })).status, 200);
  const bad = {
    'string nbf': signRaw(header, `{${base},"nbf":"${now + 3600}"}`),
    'string iat': signRaw(header, `{${base},"iat":"yesterday"}`),
    'crit header': signRaw('{"alg":"HS256","typ":"JWT","crit":["exp"]}', `{${base}}`),
    'escaped crit header': signRaw('{"alg":"HS256","typ":"JWT","\\u0063rit":["b64"]}', `{${base}}`),
    'duplicate header key': signRaw('{"alg":"HS256","typ":"JWT","typ":"JWT"}', `{${base}}`),
    'duplicate role': signRaw(header, `{${base},"role":"ventros_admin"}`),
    'duplicate tenant_id, escaped': signRaw(header, `{${base},"tenant_\\u0069d":"ta"}`),
    'duplicate exp': signRaw(header, `{${base},"exp":${now + 999999}}`),
  };
  for (const [what, t] of Object.entries(bad)) {
    const r = await http('GET', '/contacts?select=name&limit=1', { headers: { Authorization: `Bearer ${t}` } });
    assert.equal(r.status, 401, `${what}: ${r.status} ${r.text}`);
    assert.equal(r.json.code, 'PGRST301', what);
    assert.match(r.headers.get('www-authenticate'), /invalid_token/, what);
  }
});

test('a verified token is refused once it expires, though it was used (and cached) before', async () => {
  const exp = Math.floor(Date.now() / 1000) + 2;
  const t = token('ventros_viewer', 'tr', { exp });
  const headers = { Authorization: `Bearer ${t}` };
  assert.equal((await http('GET', '/contacts?select=name&limit=1', { headers })).status, 200);
  assert.equal((await http('GET', '/contacts?select=name&limit=1', { headers })).status, 200);
  // wait on the clock, not on a worker: past exp by a whole second
  while (Date.now() / 1000 < exp + 1) await new Promise((r) => setTimeout(r, 200));
  const r = await http('GET', '/contacts?select=name&limit=1', { headers });
  assert.equal(r.status, 401, r.text);
  assert.equal(r.json.message, 'JWT expired');
});

test('an encoded slash or NUL in a path is not a path separator: /webhooks/waha%2F<id> is 404', async () => {
  const { type, config } = channelConfigs().waha;
  const ch = await createChannel(c, 'ta', type, config);
  const post = (p) => fetch(BASE + p, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"event":"message"}',
  }).then(async (r) => ({ status: r.status, json: await r.json().catch(() => undefined) }));
  // the channel exists: the plain path reaches it (and refuses the unsigned body)
  const plain = await post(`/webhooks/waha/${ch.id}`);
  assert.equal(plain.status, 401, JSON.stringify(plain.json));
  for (const p of [`/webhooks/waha%2F${ch.id}`, `/webhooks/waha%2f${ch.id}`]) {
    const r = await post(p);
    assert.equal(r.status, 404, p);
    assert.deepEqual(r.json, { error: 'channel_not_found' }, p);
  }
  assert.equal((await post(`/webhooks%2Fwaha/${ch.id}`)).status, 404);
  const rel = await http('GET', '/contacts%2Fx?select=name', { headers: viewer });
  assert.equal(rel.status, 404, rel.text);
  assert.equal(rel.json.code, 'PGRST125');
  const nul = await http('GET', '/contacts%00?select=name', { headers: viewer });
  assert.equal(nul.status, 404, nul.text);
});

test('prepared statements per pooled connection stay within VENTROS_HTTP_PREPARED, least recently used out', async () => {
  const cols = ['id', 'name', 'email', 'phone', 'language', 'version'];
  let shapes = 0;
  for (let mask = 1; mask < 64 && shapes < PREPARED * 4; mask++, shapes++) {
    const sel = cols.filter((_, i) => mask & (1 << i)).join(',');
    const r = await http('GET', `/contacts?select=${sel}&limit=1`, { headers: viewer });
    assert.equal(r.status, 200, r.text);
  }
  // shapes whose pipeline fails early (an API key that does not exist): no
  // statement may stay on the server that the front has forgotten
  for (let i = 0; i < PREPARED * 3; i++) {
    const r = await http('GET', `/contacts?select=name&name=eq.x&limit=${i + 1}&offset=${i}&order=name`, { headers: { apikey: `vnk_nothing${i}` } });
    assert.equal(r.status, 401, r.text);
    const sel = cols.filter((_, k) => (i + 7) & (1 << k)).join(',');
    assert.equal((await http('GET', `/contacts?select=${sel}&name=neq.x${i}&limit=1`, { headers: { apikey: 'vnk_nothing' } })).status, 401);
  }
  const r = await http('POST', '/rpc/http_test_session', { headers: viewer, body: {} });
  assert.equal(r.status, 200, r.text);
  assert.ok(r.json.prepared <= PREPARED, `${r.json.prepared} prepared statements after ${shapes} shapes`);
  assert.ok(r.json.prepared >= 2, 'statements are still prepared');
  // evicted shapes come back (prepared again under a new name) and answer as before
  for (const sel of ['id', 'id,name', 'name,email,phone']) {
    const again = await http('GET', `/contacts?select=${sel}&order=name&limit=1`, { headers: viewer });
    assert.equal(again.status, 200, again.text);
    assert.equal(again.json.length, 1);
  }
});
