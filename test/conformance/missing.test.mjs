// Keys an insert's objects leave out, as PostgREST 12 documents them
// (references/api/tables_views: "Bulk Insert", "Specifying Columns",
// "Bulk Insert with Default Values"; references/api/preferences):
//  - one object without columns=: only its keys are inserted, so the other
//    columns take their defaults;
//  - an array without columns=: every object names the same keys, else 400
//    PGRST102 "All object keys must match";
//  - with columns=: a column an object leaves out is NULL, or its DEFAULT
//    with Prefer: missing=default.
// (Ventros' own aggregates keep their defaults: docs/http.md.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startConformance, http, WRITE } from './helpers.mjs';

let server;
before(async () => { server = await startConformance(); });
after(async () => { await server?.stop(); });

const post = (p, body, prefer = 'return=representation') =>
  http('POST', p, { headers: { ...WRITE, Prefer: prefer }, body });

test('one object: the columns it leaves out take their defaults', async () => {
  const r = await post('/labels', { code: 'one' });
  assert.equal(r.status, 201, r.text);
  assert.deepEqual(r.json, [{ code: 'one', color: 'grey' }]);
});

test('an array whose objects name different keys is 400 PGRST102', async () => {
  const r = await post('/labels', [{ code: 'a1', color: 'red' }, { code: 'a2' }]);
  assert.equal(r.status, 400, r.text);
  assert.equal(r.json.code, 'PGRST102');
  assert.equal(r.json.message, 'All object keys must match');
  const same = await post('/labels', [{ code: 'a3', color: 'red' }, { color: 'blue', code: 'a4' }]);
  assert.equal(same.status, 201, same.text);
  assert.equal(same.json.length, 2);
});

test('with columns=, a left-out column is NULL unless Prefer: missing=default', async () => {
  const path = '/Odd%20Names?columns=%22Key%20Part%22,plain';
  const nul = await post(path, [{ 'Key Part': 'c1' }, { 'Key Part': 'c2', plain: 2 }]);
  assert.equal(nul.status, 201, nul.text);
  assert.deepEqual(nul.json.map((r) => r.plain), [null, 2]);
  const one = await post(path, { 'Key Part': 'c3' });
  assert.equal(one.status, 201, one.text);
  assert.equal(one.json[0].plain, null);
  const def = await post(path, [{ 'Key Part': 'c4' }], 'return=representation, missing=default');
  assert.equal(def.status, 201, def.text);
  assert.equal(def.json[0].plain, 7);
});

test('a NOT NULL column with a default left out of columns= objects needs missing=default', async () => {
  const path = '/labels?columns=code,color';
  const r = await post(path, [{ code: 'n1' }]);
  assert.equal(r.status, 400, r.text);
  assert.equal(r.json.code, '23502');
  const d = await post(path, [{ code: 'n1' }], 'return=representation, missing=default');
  assert.equal(d.status, 201, d.text);
  assert.deepEqual(d.json, [{ code: 'n1', color: 'grey' }]);
});
