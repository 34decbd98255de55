// application/x-www-form-urlencoded bodies, as PostgREST 12 reads them
// (references/api/tables_views and functions): for a table, the body is one
// object whose values are the strings given, each turned into its column's
// type by PostgreSQL; for a function, its arguments by name.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startConformance, http, READ, WRITE } from './helpers.mjs';

let server;
before(async () => { server = await startConformance(); });
after(async () => { await server?.stop(); });

const FORM = { ...WRITE, 'Content-Type': 'application/x-www-form-urlencoded' };
const form = (method, p, body, prefer) =>
  http(method, p, { headers: prefer ? { ...FORM, Prefer: prefer } : FORM, body, raw: true });

test('a form body inserts a row, its strings typed by the columns', async () => {
  const r = await form('POST', '/boards?select=title,rank,archived', 'title=from+a%20form&rank=5&archived=true', 'return=representation');
  assert.equal(r.status, 201, r.text);
  assert.deepEqual(r.json, [{ title: 'from a form', rank: 5, archived: true }]);
});

test('columns it leaves out take their defaults, as a JSON object\'s', async () => {
  const r = await form('POST', '/labels', 'code=formed', 'return=representation');
  assert.equal(r.status, 201, r.text);
  assert.deepEqual(r.json, [{ code: 'formed', color: 'grey' }]);
});

test('a form body updates the rows the filters find', async () => {
  const r = await form('PATCH', '/boards?id=eq.2', 'title=beta+formed');
  assert.equal(r.status, 204, r.text);
  const g = await http('GET', '/boards?id=eq.2&select=title', { headers: READ });
  assert.deepEqual(g.json, [{ title: 'beta formed' }]);
});

test('a form body to a function names its arguments', async () => {
  const r = await form('POST', '/rpc/sum_of', 'a=20&b=22');
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json, 42);
});

test('a value that is not of the column\'s type, an unknown column, a malformed body', async () => {
  const wrong = await form('POST', '/boards', 'title=x&rank=high');
  assert.equal(wrong.status, 400, wrong.text);
  assert.equal(wrong.json.code, '22P02');
  const unknown = await form('POST', '/boards', 'title=x&colour=red');
  assert.equal(unknown.status, 400, unknown.text);
  assert.equal(unknown.json.code, 'PGRST204');
  const bad = await form('POST', '/boards', 'title=%zz');
  assert.equal(bad.status, 400, bad.text);
  assert.equal(bad.json.code, 'PGRST102');
});

// curl -d sends this type by default; Ventros' docs and scripts send JSON so (docs/http.md)
test('a body opening with { or [ under the form type is read as JSON', async () => {
  const r = await form('POST', '/labels', '{"code": "curl-d", "color": "teal"}', 'return=representation');
  assert.equal(r.status, 201, r.text);
  assert.deepEqual(r.json, [{ code: 'curl-d', color: 'teal' }]);
  const call = await form('POST', '/rpc/sum_of', ' {"a": 1, "b": 1}');
  assert.equal(call.status, 200, call.text);
  assert.equal(call.json, 2);
});
