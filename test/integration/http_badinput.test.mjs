// ventros-http under bad input: malformed JSON, wrong types, huge bodies,
// deep nesting, unknown operators, injection attempts in every parameter,
// invalid UTF-8, slowloris.  Each gets a clear 4xx (or, for values, a
// harmless answer), and the server keeps serving.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startServer, http, auth, db, PORT, READ_TENANT } from './http_helpers.mjs';

let server;
// a short client timeout so that slow clients are cut quickly
before(async () => { server = await startServer({ VENTROS_HTTP_CLIENT_TIMEOUT: '1' }); });
after(async () => { await server.stop(); });

const admin = auth('ventros_admin', 'ta');
const viewer = auth('ventros_viewer', READ_TENANT);

async function still_serving() {
  const r = await http('GET', '/contacts?select=name&limit=1', { headers: viewer });
  assert.equal(r.status, 200);
}

async function contactsFingerprint() {
  const c = await db();
  try {
    const r = await c.query("SELECT count(*)::int AS n, to_regclass('ventros.contacts') IS NOT NULL AS present FROM ventros.contacts");
    return JSON.stringify(r.rows[0]);
  } finally {
    await c.end();
  }
}

// raw HTTP/1.1 over a socket: for bytes fetch will not send
function raw(payload, { waitClose = true } = {}) {
  return new Promise((resolve, reject) => {
    const s = net.connect(PORT, '127.0.0.1');
    const chunks = [];
    s.on('data', (d) => chunks.push(d));
    s.on('error', reject);
    s.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    s.on('connect', () => { s.write(payload); if (!waitClose) s.end(); });
  });
}
const statusOf = (text) => Number((text.match(/^HTTP\/1\.1 (\d{3})/) || [])[1]);

test('malformed JSON bodies answer 400 PGRST102', async () => {
  for (const body of ['{', '{"name": }', '[{"name":"a"},]', 'nul', '{"name":"a"} trailing', '"just a string"', '42', '[1,2]', '']) {
    const r = await http('POST', '/contacts', { headers: admin, body, raw: true });
    assert.equal(r.status, 400, `${JSON.stringify(body)} -> ${r.status} ${r.text}`);
    assert.ok(['PGRST102', '22P02'].includes(r.json.code), r.text);
  }
  const rpc = await http('POST', '/rpc/login', { body: '{"email": "a", ', raw: true });
  assert.equal(rpc.status, 400);
  await still_serving();
});

test('wrong types answer 400 with the database\'s reason', async () => {
  for (const body of [{ name: 'T', version: 'abc' }, { name: 'T', tags: 'not an array' }, { name: 'T', tags: [[1], 2] },
    { name: 'T', created_at: 'yesterday-ish' }, { name: 'T', project_id: 'not-a-uuid' }, { name: 'T', version: 1.5 }]) {
    const r = await http('POST', '/contacts', { headers: admin, body });
    assert.equal(r.status, 400, `${JSON.stringify(body)} -> ${r.text}`);
    assert.match(r.json.code, /^(22|23)/);
  }
  const filter = await http('GET', '/contacts?created_at=gt.not-a-date', { headers: viewer });
  assert.equal(filter.status, 400);
  assert.equal(filter.json.code, '22007');
  await still_serving();
});

test('bodies over 1 MiB answer 413, announced or chunked', async () => {
  const big = JSON.stringify({ name: 'x'.repeat(1024 * 1024 + 10) });
  const r = await http('POST', '/contacts', { headers: admin, body: big, raw: true });
  assert.equal(r.status, 413);
  assert.equal(r.json.code, '54000');
  const chunk = 'a'.repeat(64 * 1024);
  let chunked = 'POST /contacts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n';
  for (let i = 0; i < 20; i++) chunked += `${chunk.length.toString(16)}\r\n${chunk}\r\n`;
  chunked += '0\r\n\r\n';
  const text = await raw(chunked);
  assert.equal(statusOf(text), 413);
  // far beyond the limit: answered at once, nothing of the body waited for
  const huge = await raw('POST /contacts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000000\r\n\r\n{"name":');
  assert.equal(statusOf(huge), 413);
  await still_serving();
});

test('deep nesting in or= and in JSON bodies answers 400', async () => {
  let tree = 'name.eq.a';
  for (let i = 0; i < 20; i++) tree = `or(${tree},name.eq.b)`;
  const r = await http('GET', `/contacts?or=(${tree})`, { headers: viewer });
  assert.equal(r.status, 400);
  assert.match(r.json.message, /nest/);
  let deep = '1';
  for (let i = 0; i < 200; i++) deep = `[${deep}]`;
  const b = await http('POST', '/contacts', { headers: admin, body: `{"name":"d","tags":${deep}}`, raw: true });
  assert.equal(b.status, 400);
  const wide = Array.from({ length: 300 }, (_, i) => `name.eq.n${i}`).join(',');
  const w = await http('GET', `/contacts?or=(${wide})`, { headers: viewer });
  assert.equal(w.status, 400);
  await still_serving();
});

test('unknown operators, modifiers and malformed syntax answer 400', async () => {
  for (const q of ['name=foo.1', 'name=eq', 'name=not.foo.1', 'or=name.eq.a', 'or=(name.eq.a', 'or=(name)',
    'name=in.a,b', 'name=is.maybe', 'order=name.sideways', 'select=name(', 'select=nope(*)', 'limit=-1', 'limit=abc',
    'offset=1e3', 'select=name::regclass', 'select=name->x', 'projects.name=eq.x', 'name=fts(bad.x']) {
    const r = await http('GET', `/contacts?${q}`, { headers: viewer });
    assert.ok(r.status === 400 || r.status === 404, `${q} -> ${r.status} ${r.text}`);
    assert.ok(r.json.message.length > 0);
  }
  const range = await http('GET', '/contacts', { headers: { ...viewer, Range: 'bytes=a-b' } });
  assert.equal(range.status, 416);
  await still_serving();
});

test('injection attempts in every parameter are refused or inert', async () => {
  const before = await contactsFingerprint();
  const evil = ["'; DROP TABLE ventros.contacts; --", '"; DROP TABLE ventros.contacts; --', 'name); DROP TABLE ventros.contacts; --',
    "1 OR 1=1", "name\" FROM ventros.users --", '$1', '\\', "x' || pg_sleep(5) || '"];
  for (const e of evil) {
    const enc = encodeURIComponent(e);
    const cases = [
      ['GET', `/contacts?name=eq.${enc}`], ['GET', `/contacts?select=${enc}`], ['GET', `/contacts?order=${enc}`],
      ['GET', `/contacts?${enc}=eq.1`], ['GET', `/contacts?name=${enc}.1`], ['GET', `/contacts?limit=${enc}`],
      ['GET', `/contacts?offset=${enc}`], ['GET', `/contacts?or=(name.eq.${enc})`], ['GET', `/contacts?name=in.(${enc})`],
      ['GET', `/contacts?name=fts(${enc}).x`], ['GET', `/contacts?select=name::${enc}`], ['GET', `/contacts?select=${enc}:name`],
      ['GET', `/${enc}`], ['GET', `/rpc/${enc}`], ['GET', `/contacts?select=name,${enc}(*)`],
      ['PATCH', `/contacts?name=eq.${enc}`], ['DELETE', `/contacts?name=eq.${enc}`],
      ['POST', `/contacts?columns=${enc}`], ['POST', `/contacts?on_conflict=${enc}`],
    ];
    for (const [method, p] of cases) {
      const body = method === 'GET' || method === 'DELETE' ? undefined : { name: e };
      const r = await http(method, p, { headers: { ...admin, Prefer: `return=representation,${e}` }, body });
      assert.ok(r.status < 500, `${method} ${p} -> ${r.status} ${r.text}`);
      if (r.status === 200 && method === 'GET') assert.ok(Array.isArray(r.json), p);
    }
    const key = await http('POST', '/contacts', { headers: admin, body: { [e]: 'x' } });
    assert.equal(key.status, 400);
    const rpc = await http('POST', '/rpc/login', { body: { email: e, password: e } });
    assert.equal(rpc.status, 401);
    const rpcKey = await http('POST', '/rpc/login', { body: { [e]: 1, email: 'a', password: 'b' } });
    assert.equal(rpcKey.status, 404);
  }
  // the values that were inserted went in as values
  assert.equal(await contactsFingerprint() !== before, true, 'POSTs of evil names were stored as names');
  const c = await db();
  try {
    const r = await c.query("SELECT count(*)::int AS n FROM ventros.contacts WHERE name = $1", [evil[0]]);
    assert.ok(r.rows[0].n >= 1);
    assert.ok((await c.query("SELECT to_regclass('ventros.contacts') IS NOT NULL AS ok")).rows[0].ok);
  } finally {
    await c.end();
  }
  await still_serving();
});

test('invalid UTF-8 and NUL bytes answer 400', async () => {
  for (const p of ['/contacts?name=eq.%FF', '/contacts?name=eq.%C0%AF', '/contacts?name=eq.%ED%A0%80', '/contacts?name=eq.%00',
    '/contacts?name=eq.%G1', '/contacts?name=eq.%', '/cont%FFacts']) {
    const r = await http('GET', p, { headers: viewer });
    assert.equal(r.status, 400, `${p} -> ${r.status}`);
  }
  const bad = Buffer.concat([Buffer.from('{"name":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]);
  const r = await fetch(`http://127.0.0.1:${PORT}/contacts`, { method: 'POST', headers: { ...admin, 'Content-Type': 'application/json' }, body: bad });
  assert.equal(r.status, 400);
  assert.match((await r.json()).message, /UTF-8/);
  await still_serving();
});

test('oversized URLs and headers are refused', async () => {
  const long = await raw(`GET /contacts?name=eq.${'a'.repeat(100000)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  assert.ok([400, 413, 414, 431].includes(statusOf(long)), long.slice(0, 40));
  const many = Array.from({ length: 250 }, (_, i) => `a${i}=eq.1`).join('&');
  const r = await http('GET', `/contacts?${many}`, { headers: viewer });
  assert.equal(r.status, 400);
  await still_serving();
});

test('slowloris: slow clients are cut off and others are served meanwhile', { timeout: 60000 }, async () => {
  const sockets = [];
  const closed = [];
  for (let i = 0; i < 40; i++) {
    const s = net.connect(PORT, '127.0.0.1');
    closed.push(new Promise((resolve) => s.on('close', resolve)));
    s.on('error', () => {});
    s.on('connect', () => s.write('GET /contacts HTTP/1.1\r\nHost: x\r\nX-Slow: '));
    sockets.push(s);
  }
  await still_serving();
  await Promise.all(closed);	// the server closes every one of them
  for (const s of sockets) assert.equal(s.destroyed, true);
  const half = await raw('POST /rpc/login HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"email":', { waitClose: true });
  assert.ok(half === '' || statusOf(half) >= 400, 'a body that never completes gets no 2xx');
  await still_serving();
});

test('methods and paths outside the dialect', async () => {
  assert.equal((await http('PUT', '/contacts', { headers: admin, body: {} })).status, 405);
  assert.equal((await http('POST', '/', { headers: admin, body: {} })).status, 405);
  assert.equal((await http('GET', '/contacts/extra', { headers: viewer })).status, 404);
  assert.equal((await http('PATCH', '/contacts?name=eq.x', { headers: admin, body: [{ name: 'y' }] })).status, 400);
  /* an empty object changes nothing, as PostgREST (test/conformance/writes.test.mjs) */
  assert.equal((await http('PATCH', '/contacts?name=eq.x', { headers: admin, body: {} })).status, 204);
  assert.equal((await http('POST', '/contacts', { headers: admin, body: { nope: 1 } })).json.code, 'PGRST204');
  await still_serving();
});

test('generated garbage (seeded): 600 requests, never a 5xx, always PostgREST error JSON', async () => {
  let seed = Number(process.env.HTTP_FUZZ_SEED || 20261125);
  const rnd = (n) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
  const pick = (a) => a[rnd(a.length)];
  const cols = ['name', 'email', 'tags', 'version', 'language', 'created_at', 'project_id', 'nope', 'na"me', '', '*'];
  const ops = ['eq', 'neq', 'gt', 'lt', 'like', 'ilike', 'in', 'is', 'cs', 'cd', 'ov', 'fts', 'wfts(english)', 'not.eq', 'not', 'zz', 'match'];
  const vals = ['Ann', '1', '(a,b)', '{x}', 'null', "'", '"', '(', ')', ',', '%', '*', '\\', 'true', '2026-01-01', '{"a":1}', '', '..'];
  const keys = () => pick(['select', 'order', 'limit', 'offset', 'or', 'and', 'not.or', 'on_conflict', 'columns', pick(cols), `${pick(cols)}.${pick(cols)}`]);
  const value = (k) => {
    if (k === 'select') return Array.from({ length: 1 + rnd(3) }, () => pick([pick(cols), `a:${pick(cols)}`, `${pick(cols)}::text`, `projects(${pick(cols)})`, `${pick(cols)}->x`, `x!inner(${pick(cols)})`])).join(',');
    if (k === 'order') return `${pick(cols)}.${pick(['asc', 'desc', 'nullsfirst', 'x', ''])}`;
    if (k === 'limit' || k === 'offset') return pick(['0', '1', '-1', 'x', '99999999999999', '1000']);
    if (k === 'or' || k === 'and' || k === 'not.or') return `(${pick(cols)}.${pick(ops)}.${pick(vals)},${pick(['and', 'or'])}(${pick(cols)}.${pick(ops)}.${pick(vals)}))`;
    return `${pick(ops)}.${pick(vals)}`;
  };
  const methods = ['GET', 'GET', 'GET', 'POST', 'PATCH', 'DELETE', 'HEAD'];
  const bodies = [undefined, '{}', '[]', '{"name":"F"}', '[{"name":1},{"tags":"x"}]', '{"version":"x"}', '{', 'null', '{"nope":1}'];
  for (let i = 0; i < 600; i++) {
    const qs = Array.from({ length: rnd(4) }, () => { const k = keys(); return `${encodeURIComponent(k)}=${encodeURIComponent(value(k))}`; }).join('&');
    const method = pick(methods);
    const target = pick(['/contacts', '/contacts', '/projects', '/users', '/rpc/login', '/rpc/me', '/nope', '/']);
    const headers = { ...pick([admin, viewer, {}]), ...(rnd(4) === 0 ? { Prefer: pick(['count=exact', 'return=representation', 'resolution=merge-duplicates']) } : {}),
      ...(rnd(5) === 0 ? { Accept: pick(['text/csv', 'application/vnd.pgrst.object+json']) } : {}), ...(rnd(6) === 0 ? { Range: pick(['0-1', '5-', 'x']) } : {}) };
    const body = method === 'GET' || method === 'HEAD' ? undefined : pick(bodies);
    const r = await http(method, `${target}?${qs}`, { headers, body, raw: true });
    assert.ok(r.status < 500, `${method} ${target}?${decodeURIComponent(qs)} ${body ?? ''} -> ${r.status} ${r.text}`);
    if (r.status >= 400 && method !== 'HEAD') {
      assert.ok(r.json && typeof r.json.code === 'string' && typeof r.json.message === 'string', `${r.status} ${r.text}`);
    }
  }
  await still_serving();
});
