// An array body to a function of named arguments, as PostgREST reads it.
// PostgREST 12 (references/api/functions) calls the function once, with the
// array's first object: it reads a JSON body through json_to_recordset and
// keeps one row.  Its objects must name the same keys ("All object keys must
// match", 400 PGRST102).  PostgREST 10 documented a bulk call ("Bulk Call":
// Prefer: params=multiple-objects calls the function once per object and
// answers every result, [3, 7] for add_them); PostgREST 11 removed it.
// ventros-http keeps it when the preference is sent (docs/http.md says why).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startConformance, http, READ, WRITE } from './helpers.mjs';

let server;
before(async () => { server = await startConformance(); });
after(async () => { await server?.stop(); });

const BULK = { ...WRITE, Prefer: 'params=multiple-objects' };
const events = async () => (await http('GET', '/events?select=kind', { headers: READ })).json.length;

test('Prefer: params=multiple-objects calls a scalar function once per object', async () => {
  const r = await http('POST', '/rpc/sum_of', { headers: BULK, body: [{ a: 1, b: 2 }, { a: 3, b: 4 }, { a: 10, b: 0 }] });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, [3, 7, 10]);
  assert.match(r.headers.get('preference-applied') || '', /params=multiple-objects/);
});

test('a bulk call of a function returning rows answers the rows of every call', async () => {
  const r = await http('POST', '/rpc/boards_from?select=title', { headers: BULK, body: [{ first_id: 3 }, { first_id: 2 }] });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json.map((b) => b.title).sort(), ['beta', 'gamma', 'gamma']);
  const filtered = await http('POST', '/rpc/boards_from?select=id&id=eq.3', { headers: BULK, body: [{ first_id: 3 }, { first_id: 1 }] });
  assert.deepEqual(filtered.json, [{ id: 3 }, { id: 3 }]);
});

test('every call of a bulk call runs, in one transaction', async () => {
  const before = await events();
  const r = await http('POST', '/rpc/add_event', { headers: BULK, body: [{ kind: 'bulk-1' }, { kind: 'bulk-2' }] });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.length, 2);
  assert.equal(await events(), before + 2);
  // a failing call rolls back the others
  const bad = await http('POST', '/rpc/add_event', { headers: BULK, body: [{ kind: 'bulk-3' }, { kind: null }] });
  assert.equal(bad.status, 400, bad.text);
  assert.equal(bad.json.code, '23502');
  assert.equal(await events(), before + 2);
});

test('without the preference, an array body is one call of its first object (PostgREST 12)', async () => {
  const r = await http('POST', '/rpc/sum_of', { headers: WRITE, body: [{ a: 1, b: 2 }, { a: 3, b: 4 }] });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json, 3);
  const before = await events();
  const once = await http('POST', '/rpc/add_event', { headers: WRITE, body: [{ kind: 'first' }, { kind: 'second' }] });
  assert.equal(once.status, 200, once.text);
  assert.equal(await events(), before + 1);
  const kinds = (await http('GET', '/events?kind=in.(first,second)&select=kind', { headers: READ })).json;
  assert.deepEqual(kinds, [{ kind: 'first' }]);
});

test('the objects of an array must name the same keys', async () => {
  for (const headers of [WRITE, BULK]) {
    const r = await http('POST', '/rpc/sum_of', { headers, body: [{ a: 1, b: 2 }, { a: 3 }] });
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json.code, 'PGRST102');
    assert.equal(r.json.message, 'All object keys must match');
  }
});

test('handling=strict accepts params=multiple-objects', async () => {
  const r = await http('POST', '/rpc/sum_of', {
    headers: { ...WRITE, Prefer: 'handling=strict, params=multiple-objects' },
    body: [{ a: 2, b: 2 }],
  });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, [4]);
});

test('a bulk call of a void function answers as one call would', async () => {
  const r = await http('POST', '/rpc/brew', { headers: BULK, body: [{}, {}] });
  assert.equal(r.status, 418, r.text); /* the status brew() sets */
  assert.equal(r.text, '');
});

test('Ventros\' own commands (schema api) refuse an array rather than drop objects', async () => {
  const r = await http('POST', '/rpc/login', { body: [{ email: 'a@example.com', password: 'x' }] });
  assert.equal(r.status, 400, r.text);
  assert.equal(r.json.code, 'PGRST102');
  // a function answering a login grant is never called in bulk
  const bulk = await http('POST', '/rpc/login', {
    headers: { Prefer: 'params=multiple-objects' },
    body: [{ email: 'a@example.com', password: 'x' }],
  });
  assert.equal(bulk.status, 400, bulk.text);
  assert.equal(bulk.json.code, 'PGRST102');
});
