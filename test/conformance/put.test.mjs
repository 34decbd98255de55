// PUT, PostgREST 12's upsert of one row named by its primary key
// (references/api/tables_views "PUT"; errors PGRST105, PGRST114, PGRST115
// of references/errors): the filters are eq on every key column and
// nothing else, the body is the row (its key the URL's), inserted or
// merged; 200 with return=representation, else 204.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startConformance, http, READ, WRITE } from './helpers.mjs';

let server;
before(async () => { server = await startConformance(); });
after(async () => { await server?.stop(); });

const put = (p, body, prefer) => http('PUT', p, { headers: prefer ? { ...WRITE, Prefer: prefer } : WRITE, body });
const get = async (p) => (await http('GET', p, { headers: READ })).json;

test('PUT inserts the row the URL names, then replaces it', async () => {
  const made = await put('/labels?code=eq.put-1', { code: 'put-1', color: 'red' }, 'return=representation');
  assert.equal(made.status, 200, made.text);
  assert.deepEqual(made.json, [{ code: 'put-1', color: 'red' }]);
  const again = await put('/labels?code=eq.put-1', [{ code: 'put-1', color: 'blue' }]);
  assert.equal(again.status, 204, again.text);
  assert.deepEqual(await get('/labels?code=eq.put-1'), [{ code: 'put-1', color: 'blue' }]);
});

test('a composite key: every column of it in the URL', async () => {
  const r = await put('/board_labels?board_id=eq.3&label_code=eq.bug', { board_id: 3, label_code: 'bug' }, 'return=representation');
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, [{ board_id: 3, label_code: 'bug' }]);
  const part = await put('/board_labels?board_id=eq.3', { board_id: 3, label_code: 'bug' });
  assert.equal(part.status, 405, part.text);
  assert.equal(part.json.code, 'PGRST105');
});

test('filters other than eq on the key are 405 PGRST105; limit and offset 400 PGRST114', async () => {
  for (const p of ['/labels?code=like.put*', '/labels?color=eq.red', '/labels?code=eq.a&color=eq.red', '/labels', '/events?kind=eq.x']) {
    const r = await put(p, { code: 'a', color: 'red' });
    assert.equal(r.status, 405, `${p}: ${r.text}`);
    assert.equal(r.json.code, 'PGRST105', r.text);
  }
  const lim = await put('/labels?code=eq.a&limit=1', { code: 'a', color: 'red' });
  assert.equal(lim.status, 400, lim.text);
  assert.equal(lim.json.code, 'PGRST114');
});

test('a body whose key is not the URL\'s is 400 PGRST115, and nothing is written', async () => {
  const other = await put('/labels?code=eq.put-2', { code: 'put-3', color: 'red' });
  assert.equal(other.status, 400, other.text);
  assert.equal(other.json.code, 'PGRST115');
  const none = await put('/labels?code=eq.put-2', { color: 'red' });
  assert.equal(none.status, 400, none.text);
  assert.equal(none.json.code, 'PGRST115');
  assert.deepEqual(await get('/labels?code=in.(put-2,put-3)'), []);
});
