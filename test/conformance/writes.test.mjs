// Writes on any table, as PostgREST 12 documents them (references/api/
// tables_views: insert, bulk insert with columns=, upsert with
// resolution=merge-duplicates / ignore-duplicates on the primary key or
// on_conflict, update, delete, Prefer: return=representation|headers-only):
// on the fixture's tables, which have no tenant_id and no engine.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startConformance, http, READ, WRITE } from './helpers.mjs';

let server;
before(async () => { server = await startConformance(); });
after(async () => { await server?.stop(); });

const REP = { ...WRITE, Prefer: 'return=representation' };
const get = async (p) => (await http('GET', p, { headers: READ })).json;

test('DELETE on a table without a primary key', async () => {
  const r = await http('DELETE', '/events?kind=eq.close', { headers: WRITE });
  assert.equal(r.status, 204);
  assert.deepEqual((await get('/events?select=note&order=note')).map((e) => e.note), ['first', 'third']);
});

test('DELETE with return=representation answers the deleted rows', async () => {
  const r = await http('DELETE', '/events?note=eq.third', { headers: REP });
  assert.equal(r.status, 200);
  assert.deepEqual(r.json, [{ kind: 'open', note: 'third' }]);
});

test('upsert merges on the primary key without on_conflict', async () => {
  const r = await http('POST', '/labels', {
    headers: { ...WRITE, Prefer: 'resolution=merge-duplicates' },
    body: [{ code: 'bug', color: 'orange' }, { code: 'docs', color: 'blue' }],
  });
  assert.equal(r.status, 201);
  const labels = await get('/labels?code=in.(bug,docs)&order=code');
  assert.deepEqual(labels, [{ code: 'bug', color: 'orange' }, { code: 'docs', color: 'blue' }]);
});

test('ignore-duplicates keeps the existing row, on the primary key', async () => {
  const r = await http('POST', '/labels', {
    headers: { ...WRITE, Prefer: 'resolution=ignore-duplicates' },
    body: [{ code: 'idea', color: 'black' }],
  });
  assert.equal(r.status, 201);
  assert.deepEqual(await get('/labels?code=eq.idea'), [{ code: 'idea', color: 'green' }]);
});

test('upsert of a body made only of the conflict columns', async () => {
  const r = await http('POST', '/board_labels', {
    headers: { ...WRITE, Prefer: 'resolution=merge-duplicates, return=representation' },
    body: [{ board_id: 1, label_code: 'bug' }, { board_id: 2, label_code: 'bug' }],
  });
  assert.equal(r.status, 201, r.text);
  assert.equal(r.json.length, 2);
  assert.equal((await get('/board_labels')).length, 3);
});

test('columns= takes double-quoted names, as PostgREST clients send them', async () => {
  const r = await http('POST', '/Odd%20Names?columns=%22Key%20Part%22,%22with,comma%22', {
    headers: REP,
    body: [{ 'Key Part': 'k 2', 'with,comma': 5, plain: 1 }],
  });
  assert.equal(r.status, 201, r.text);
  /* plain is not in columns=: its default */
  assert.deepEqual(r.json, [{ 'Key Part': 'k 2', 'with,comma': 5, plain: 7 }]);
});

/*
 * PostgREST 12, "Prefer: missing" (references/api/tables_views, bulk insert
 * with default values): with columns=, a column an object leaves out is
 * null under missing=null and takes its DEFAULT under missing=default.
 */
test('Prefer: missing=null inserts null where an object leaves a columns= key out', async () => {
  const path = '/Odd%20Names?columns=%22Key%20Part%22,plain';
  const nul = await http('POST', path, {
    headers: { ...WRITE, Prefer: 'return=representation, missing=null' },
    body: [{ 'Key Part': 'm 1' }, { 'Key Part': 'm 2', plain: 3 }],
  });
  assert.equal(nul.status, 201, nul.text);
  assert.deepEqual(nul.json.map((r) => r.plain), [null, 3]);
  const def = await http('POST', path, {
    headers: { ...WRITE, Prefer: 'return=representation, missing=default' },
    body: [{ 'Key Part': 'm 3' }],
  });
  assert.equal(def.status, 201, def.text);
  assert.equal(def.json[0].plain, 7);
});

test('Prefer: missing=null on an upsert sets the left-out column to null', async () => {
  const r = await http('POST', '/Odd%20Names?columns=%22Key%20Part%22,plain', {
    headers: { ...WRITE, Prefer: 'resolution=merge-duplicates, return=representation, missing=null' },
    body: [{ 'Key Part': 'm 2' }],
  });
  assert.equal(r.status, 201, r.text);
  assert.deepEqual(r.json, [{ 'Key Part': 'm 2', 'with,comma': null, plain: null }]);
});

test('handling=strict accepts missing=null and missing=default', async () => {
  const r = await http('POST', '/Odd%20Names', {
    headers: { ...WRITE, Prefer: 'handling=strict, missing=null' },
    body: [{ 'Key Part': 'm 4' }],
  });
  assert.equal(r.status, 201, r.text);
});

test('an empty object inserts a row of defaults; an empty array inserts nothing', async () => {
  const one = await http('POST', '/ticks', { headers: REP, body: {} });
  assert.equal(one.status, 201, one.text);
  assert.equal(one.json.length, 1);
  assert.equal(one.json[0].at_label, 'tick');
  const none = await http('POST', '/ticks', { headers: REP, body: [] });
  assert.equal(none.status, 201, none.text);
  assert.deepEqual(none.json, []);
  assert.equal((await get('/ticks')).length, 1);
});

test('PATCH with an empty object changes nothing', async () => {
  const r = await http('PATCH', '/boards?id=eq.1', { headers: WRITE, body: {} });
  assert.equal(r.status, 204, r.text);
  assert.equal((await get('/boards?id=eq.1&select=title'))[0].title, 'alpha');
});

test('columns= on PATCH limits the update to the columns named', async () => {
  const r = await http('PATCH', '/boards?id=eq.2&columns=title', { headers: REP, body: { title: 'beta 2', rank: 99 } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json[0].title, 'beta 2');
  assert.equal(r.json[0].rank, 1);
});

test('order= orders the representation of a write', async () => {
  const r = await http('POST', '/boards?select=title&order=title.desc', {
    headers: REP,
    body: [{ title: 'o-a' }, { title: 'o-c' }, { title: 'o-b' }],
  });
  assert.equal(r.status, 201, r.text);
  assert.deepEqual(r.json.map((b) => b.title), ['o-c', 'o-b', 'o-a']);
  const p = await http('PATCH', '/boards?title=like.o-*&order=title.asc&select=title', { headers: REP, body: { archived: true } });
  assert.deepEqual(p.json.map((b) => b.title), ['o-a', 'o-b', 'o-c']);
});

test('Location names the primary key of the row created, whatever its columns', async () => {
  const headersOnly = { ...WRITE, Prefer: 'return=headers-only' };
  const a = await http('POST', '/labels', { headers: headersOnly, body: { code: 'loc', color: 'white' } });
  assert.equal(a.status, 201, a.text);
  assert.equal(a.headers.get('location'), '/labels?code=eq.loc');
  const b = await http('POST', '/board_labels', { headers: headersOnly, body: { board_id: 3, label_code: 'idea' } });
  assert.equal(b.headers.get('location'), '/board_labels?board_id=eq.3&label_code=eq.idea');
  /* no primary key: no Location */
  const c = await http('POST', '/events', { headers: headersOnly, body: { kind: 'x' } });
  assert.equal(c.status, 201);
  assert.equal(c.headers.get('location'), null);
});

test('Content-Range of PATCH and DELETE: the range of the rows changed, out of *', async () => {
  const p = await http('PATCH', '/boards?rank=gte.2', { headers: WRITE, body: { archived: false } });
  assert.equal(p.status, 204, p.text);
  assert.equal(p.headers.get('content-range'), '0-1/*');
  const counted = await http('PATCH', '/boards?rank=gte.2', { headers: { ...WRITE, Prefer: 'count=exact' }, body: { archived: false } });
  assert.equal(counted.headers.get('content-range'), '0-1/2');
  const none = await http('PATCH', '/boards?rank=gt.100', { headers: WRITE, body: { archived: true } });
  assert.equal(none.headers.get('content-range'), '*/*');
  const d = await http('DELETE', '/events?kind=eq.nothing', { headers: WRITE });
  assert.equal(d.headers.get('content-range'), '*/*');
});
