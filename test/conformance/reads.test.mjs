// Reads of a schema other than api, as PostgREST 12 documents them
// (references/api/tables_views: filters, ordering, limits and pagination,
// counting; resource_embedding: many-to-one and one-to-many through a
// foreign key; the vnd.pgrst.object and text/csv media types).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startConformance, http, READ } from './helpers.mjs';

let server;
before(async () => { server = await startConformance(); });
after(async () => { await server?.stop(); });

const get = (p, headers = {}) => http('GET', p, { headers: { ...READ, ...headers } });

test('horizontal and vertical filtering, ordering', async () => {
  const r = await get('/boards?select=title,rank&rank=gte.2&order=rank.desc');
  assert.equal(r.status, 200);
  assert.deepEqual(r.json, [{ title: 'alpha', rank: 3 }, { title: 'gamma', rank: 2 }]);
});

test('a table name that needs quoting, and its quoted columns', async () => {
  const r = await get('/Odd%20Names?select=%22Key%20Part%22,plain');
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, [{ 'Key Part': 'k 1', plain: 1 }]);
  const f = await get('/Odd%20Names?select=plain&%22Key%20Part%22=eq.k%201&order=%22with,comma%22');
  assert.equal(f.status, 200, f.text);
  assert.deepEqual(f.json, [{ plain: 1 }]);
});

test('Range and Prefer: count=exact answer 206 with Content-Range', async () => {
  const r = await get('/boards?order=id', { Range: '0-1', Prefer: 'count=exact' });
  assert.equal(r.status, 206);
  assert.equal(r.headers.get('content-range'), '0-1/3');
  assert.equal(r.json.length, 2);
});

test('many-to-one and one-to-many embedding through foreign keys', async () => {
  const r = await get('/board_labels?select=board_id,boards(title),labels(color)&order=board_id');
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, [
    { board_id: 1, boards: { title: 'alpha' }, labels: { color: 'red' } },
    { board_id: 2, boards: { title: 'beta' }, labels: { color: 'green' } },
  ]);
  const m = await get('/boards?select=title,board_labels(label_code)&id=eq.1');
  assert.deepEqual(m.json, [{ title: 'alpha', board_labels: [{ label_code: 'bug' }] }]);
});

test('the singular object and CSV media types', async () => {
  const one = await get('/labels?code=eq.bug', { Accept: 'application/vnd.pgrst.object+json' });
  assert.equal(one.status, 200);
  assert.deepEqual(one.json, { code: 'bug', color: 'red' });
  const csv = await get('/labels?order=code', { Accept: 'text/csv' });
  assert.equal(csv.status, 200);
  assert.match(csv.headers.get('content-type'), /^text\/csv/);
  assert.equal(csv.text.trim().split('\n')[0], 'code,color');
});

test('in.() takes double-quoted values with commas, parentheses and escaped quotes', async () => {
  const ins = await http('POST', '/labels', {
    headers: { 'Content-Profile': 'conformance' },
    body: [{ code: 'a,b' }, { code: 'say "hi"' }, { code: 'x(y)' }, { code: 'back\\slash' }],
  });
  assert.equal(ins.status, 201, ins.text);
  const q = encodeURIComponent('("a,b","say \\"hi\\"","x(y)","back\\\\slash",bug)');
  const r = await get(`/labels?select=code&code=in.${q}&order=code`);
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json.map((x) => x.code).sort(), ['a,b', 'back\\slash', 'bug', 'say "hi"', 'x(y)'].sort());
});

test('CSV quotes values holding commas, quotes or line breaks; null is empty', async () => {
  const ins = await http('POST', '/events', {
    headers: { 'Content-Profile': 'conformance' },
    body: [{ kind: 'csv', note: 'one, "two"\nthree' }, { kind: 'csv', note: null }],
  });
  assert.equal(ins.status, 201, ins.text);
  const r = await get('/events?kind=eq.csv&select=kind,note', { Accept: 'text/csv' });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.text, 'kind,note\ncsv,"one, ""two""\nthree"\ncsv,');
});

test('select= casts to any type by name, schema-qualified and arrays too', async () => {
  // an array type is a cast of ours; integer to bigint[] is PostgreSQL's refusal (42846), not a syntax error
  const r = await get('/boards?select=id::int8[]&id=eq.1');
  assert.equal(r.status, 400, r.text);
  assert.equal(r.json.code, '42846');
  const ok = await get('/boards?select=id::int8,title::conformance.short_text,rank::oid,big:rank::float8&id=eq.1');
  assert.equal(ok.status, 200, ok.text);
  assert.deepEqual(ok.json, [{ id: 1, title: 'alpha', rank: '3', big: 3 }]); // json has no oid: a string
  const unknown = await get('/boards?select=title::no_such_type');
  assert.equal(unknown.status, 400, unknown.text);
  assert.equal(unknown.json.code, '42704');
  const bad = await get('/boards?select=title::text);select(1');
  assert.equal(bad.status, 400, bad.text);
  assert.equal(bad.json.code, 'PGRST100');
});
