// Functions of an exposed schema other than api, called as PostgREST 12
// documents it (references/api/functions): every signature kind of the
// fixture — named arguments by POST body and by query string, overloads
// told apart by the names given, a single unnamed json/jsonb, text, xml or
// bytea argument taking the body, arrays, VARIADIC (repeated query keys),
// OUT, INOUT and TABLE results, rows of a table with select=, filters,
// embedding, Range and count=exact, Prefer: params=single-object, and a
// volatile function over GET in a read-only transaction.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startConformance, http, db, token, READ, WRITE } from './helpers.mjs';

let server;
before(async () => { server = await startConformance(); });
after(async () => { await server?.stop(); });

const get = (p, headers = {}) => http('GET', p, { headers: { ...READ, ...headers } });
const post = (p, body, headers = {}) => http('POST', p, { headers: { ...WRITE, ...headers }, body });
const raw = (p, body, type) => http('POST', p, { headers: { ...WRITE, 'Content-Type': type }, body, raw: true });

test('a function of the second schema, by POST body and by query string', async () => {
  const p = await post('/rpc/sum_of', { a: 1, b: 2 });
  assert.equal(p.status, 200, p.text);
  assert.equal(p.json, 3);
  const g = await get('/rpc/sum_of?a=4&b=5');
  assert.equal(g.status, 200, g.text);
  assert.equal(g.json, 9);
  const missing = await get('/rpc/sum_of?a=4');
  assert.equal(missing.status, 404, missing.text);
  assert.equal(missing.json.code, 'PGRST202');
});

test('overloads are chosen by the names of the arguments given', async () => {
  assert.equal((await get('/rpc/shout?word=hi')).json, 'HI');
  assert.equal((await get('/rpc/shout?word=hi&times=2')).json, 'HIHI');
  assert.equal((await get('/rpc/shout?number=3')).json, 'N3');
  const p = await post('/rpc/shout', { word: 'ok', times: 3 });
  assert.equal(p.status, 200, p.text);
  assert.equal(p.json, 'OKOKOK');
  const none = await get('/rpc/shout?colour=red');
  assert.equal(none.status, 404, none.text);
  assert.equal(none.json.code, 'PGRST202');
});

test('a single unnamed json argument takes the whole body, an array too', async () => {
  const r = await post('/rpc/product_of', { x: 4, y: 2 });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json, 8);
  const a = await post('/rpc/entries', [{ id: 1 }, { id: 2 }, { id: 3 }]);
  assert.equal(a.status, 200, a.text);
  assert.equal(a.json, 3);
  // an array to named arguments is one call of its first object (PostgREST 12; bulk_calls.test.mjs)
  const named = await post('/rpc/sum_of', [{ a: 1, b: 2 }]);
  assert.equal(named.status, 200, named.text);
  assert.equal(named.json, 3);
  // an unnamed argument cannot be given in the query string
  const q = await get('/rpc/product_of?x=1');
  assert.equal(q.status, 404, q.text);
  assert.equal(q.json.code, 'PGRST202');
});

test('a single unnamed text, xml or bytea argument takes a raw body of its media type', async () => {
  const t = await raw('/rpc/count_lines', 'a\nb\nc', 'text/plain');
  assert.equal(t.status, 200, t.text);
  assert.equal(t.json, 3);
  const x = await raw('/rpc/xml_root', '<note><to>Ana</to></note>', 'text/xml');
  assert.equal(x.status, 200, x.text);
  assert.equal(x.json, 'note');
  const b = await raw('/rpc/byte_size', new Uint8Array([0, 1, 2, 255, 0]), 'application/octet-stream');
  assert.equal(b.status, 200, b.text);
  assert.equal(b.json, 5);
  // the body's type must be the argument's
  const wrong = await raw('/rpc/byte_size', 'abc', 'text/plain');
  assert.equal(wrong.status, 404, wrong.text);
});

test('array arguments: a JSON array by POST, an array literal by GET', async () => {
  const p = await post('/rpc/incremented', { arr: [1, 2, 3] });
  assert.equal(p.status, 200, p.text);
  assert.deepEqual(p.json, [2, 3, 4]);
  const g = await get('/rpc/incremented?arr=%7B1,2,3%7D');
  assert.equal(g.status, 200, g.text);
  assert.deepEqual(g.json, [2, 3, 4]);
});

test('VARIADIC: a JSON array by POST, the key repeated by GET', async () => {
  const p = await post('/rpc/total', { v: [1, 2, 3, 4] });
  assert.equal(p.status, 200, p.text);
  assert.equal(p.json, 10);
  const g = await get('/rpc/total?v=1&v=2&v=3');
  assert.equal(g.status, 200, g.text);
  assert.equal(g.json, 6);
  const one = await get('/rpc/total?v=7');
  assert.equal(one.json, 7);
  const j = await get('/rpc/joined?sep=-&parts=a&parts=b&parts=c');
  assert.equal(j.status, 200, j.text);
  assert.equal(j.json, 'a-b-c');
  // a key other than the variadic one given twice is still an error
  const twice = await get('/rpc/joined?sep=-&sep=%2B&parts=a');
  assert.equal(twice.status, 404, twice.text);
});

test('OUT, INOUT and TABLE results are objects and rows', async () => {
  const h = await get('/rpc/halves?n=5');
  assert.equal(h.status, 200, h.text);
  assert.deepEqual(h.json, { low: 2, high: 3 });
  const d = await post('/rpc/doubled', { n: 21 });
  assert.equal(d.status, 200, d.text);
  assert.deepEqual(d.json, { n: 42 });
  const t = await get('/rpc/board_ranks?min_rank=2&order=rank');
  assert.equal(t.status, 200, t.text);
  assert.deepEqual(t.json, [{ title: 'gamma', rank: 2 }, { title: 'alpha', rank: 3 }]);
  const f = await get('/rpc/board_ranks?select=title&rank=gt.2');
  assert.deepEqual(f.json, [{ title: 'alpha' }]);
  const all = await get('/rpc/board_ranks?order=rank&select=rank');
  assert.deepEqual(all.json, [{ rank: 1 }, { rank: 2 }, { rank: 3 }]);
});

test('rows of a table: select=, filters, embedding, Range and count=exact', async () => {
  const e = await get('/rpc/boards_from?first_id=1&select=title,board_labels(label_code)&order=id&id=lte.2');
  assert.equal(e.status, 200, e.text);
  assert.deepEqual(e.json, [
    { title: 'alpha', board_labels: [{ label_code: 'bug' }] },
    { title: 'beta', board_labels: [{ label_code: 'idea' }] },
  ]);
  const r = await get('/rpc/boards_from?first_id=2&select=id&order=id', { Range: '0-0', Prefer: 'count=exact' });
  assert.equal(r.status, 206, r.text);
  assert.equal(r.headers.get('content-range'), '0-0/2');
  assert.deepEqual(r.json, [{ id: 2 }]);
  const p = await post('/rpc/boards_from?select=title&order=id.desc&limit=1', { first_id: 1 });
  assert.equal(p.status, 200, p.text);
  assert.deepEqual(p.json, [{ title: 'gamma' }]);
});

test('Prefer: params=single-object gives the body to a json argument', async () => {
  const r = await post('/rpc/settings', { theme: 'dark', size: 2 }, { Prefer: 'params=single-object' });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, { theme: 'dark', size: 2 });
});

test('a volatile function: refused over GET (read-only transaction), called by POST', async () => {
  const g = await get('/rpc/add_event?kind=get');
  assert.equal(g.status, 405, g.text);
  assert.equal(g.json.code, '25006');
  const p = await post('/rpc/add_event', { kind: 'post' });
  assert.equal(p.status, 200, p.text);
  assert.equal(p.json, 4);
});

test('a function of several unnamed arguments is not served', async () => {
  const r = await post('/rpc/shared_args', { a: 1 });
  assert.equal(r.status, 404, r.text);
  assert.equal(r.json.code, 'PGRST202');
});

test('an api function with an unnamed argument does not break GET /', async () => {
  const c = await db();
  try {
    await c.query('CREATE FUNCTION api.conformance_unnamed(integer) RETURNS integer LANGUAGE sql AS $$ SELECT $1 $$');
    const r = await http('GET', '/', { headers: { Authorization: `Bearer ${token('ventros_viewer', 'ta')}` } });
    assert.equal(r.status, 200, r.text);
    assert.ok(r.json.paths);
  } finally {
    await c.query('DROP FUNCTION IF EXISTS api.conformance_unnamed(integer)');
    await c.end();
  }
});

test('response.status and response.headers set by a function shape the answer', async () => {
  const m = await post('/rpc/made', { label: 'delta' });
  assert.equal(m.status, 201, m.text);
  assert.equal(m.headers.get('location'), '/boards?title=eq.delta');
  assert.equal(m.headers.get('x-made-by'), 'made');
  assert.deepEqual(m.json, { label: 'delta' });
  const t = await get('/rpc/brew');
  assert.equal(t.status, 418, t.text);
  const r = await get('/rpc/rows_with_header?select=code');
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers.get('cache-control'), 'max-age=60');
  assert.deepEqual(r.json, [{ code: 'bug' }, { code: 'idea' }]);
  // nothing set: a plain answer, even on a connection a function set them on before
  const plain = await get('/rpc/sum_of?a=1&b=1');
  assert.equal(plain.status, 200);
  assert.equal(plain.headers.get('x-made-by'), null);
});

test('an invalid response.status or response.headers is the function\'s error (500)', async () => {
  const s = await get('/rpc/bad_status');
  assert.equal(s.status, 500, s.text);
  assert.equal(s.json.code, 'PGRST112');
  const h = await get('/rpc/bad_headers');
  assert.equal(h.status, 500, h.text);
  assert.equal(h.json.code, 'PGRST111');
});

test('a form body (application/x-www-form-urlencoded) names the arguments, a VARIADIC key repeated', async () => {
  const form = (p, body) => raw(p, body, 'application/x-www-form-urlencoded');
  const v = await form('/rpc/total', 'v=1&v=2&v=3&v=4');
  assert.equal(v.status, 200, v.text);
  assert.equal(v.json, 10);
  const s = await form('/rpc/shout', 'word=caf%C3%A9+ok&times=2');
  assert.equal(s.status, 200, s.text);
  assert.equal(s.json, 'CAFÉ OKCAFÉ OK');
  // query-string keys stay filters and select= on the rows
  const rows = await form('/rpc/boards_from?select=title&order=id.desc&limit=1', 'first_id=1');
  assert.equal(rows.status, 200, rows.text);
  assert.deepEqual(rows.json, [{ title: 'gamma' }]);
  const unknown = await form('/rpc/sum_of', 'a=1&b=2&c=3');
  assert.equal(unknown.status, 404, unknown.text);
  assert.equal(unknown.json.code, 'PGRST202');
  const bad = await form('/rpc/sum_of', 'a=%zz');
  assert.equal(bad.status, 400, bad.text);
  assert.equal(bad.json.code, 'PGRST102');
});
