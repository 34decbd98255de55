// Preference-Applied as PostgREST 12 answers it (references/api/
// preferences): the preferences a request sent and the server honoured,
// in one list, in PostgREST's order (resolution, missing, return, params,
// count, tx, handling, timezone, max-affected); none sent, no header.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startConformance, http, READ, WRITE } from './helpers.mjs';

let server;
before(async () => { server = await startConformance(); });
after(async () => { await server?.stop(); });

const applied = (r) => r.headers.get('preference-applied');

test('handling=strict is applied, before timezone', async () => {
  const r = await http('GET', '/stamps', { headers: { ...READ, Prefer: 'handling=strict, timezone=America/Los_Angeles' } });
  assert.equal(r.status, 200, r.text);
  assert.equal(applied(r), 'handling=strict, timezone=America/Los_Angeles');
  const lenient = await http('GET', '/stamps', { headers: { ...READ, Prefer: 'handling=lenient, foo' } });
  assert.equal(applied(lenient), 'handling=lenient');
});

test('a write names only what it was asked, resolution before return', async () => {
  const r = await http('POST', '/labels', {
    headers: { ...WRITE, Prefer: 'return=representation, resolution=merge-duplicates' },
    body: { code: 'pa', color: 'red' },
  });
  assert.equal(r.status, 201, r.text);
  assert.equal(applied(r), 'resolution=merge-duplicates, return=representation');
  const quiet = await http('PATCH', '/labels?code=eq.pa', { headers: WRITE, body: { color: 'blue' } });
  assert.equal(quiet.status, 204, quiet.text);
  assert.equal(applied(quiet), null);
  const d = await http('DELETE', '/labels?code=eq.pa', { headers: { ...WRITE, Prefer: 'handling=strict, max-affected=10' } });
  assert.equal(d.status, 204, d.text);
  assert.equal(applied(d), 'handling=strict, max-affected=10');
});

test('missing=default is applied to an insert, with count and tx in their places', async () => {
  const r = await http('POST', '/Odd%20Names?columns=%22Key%20Part%22,plain', {
    headers: { ...WRITE, Prefer: 'tx=rollback, count=exact, missing=default, return=representation' },
    body: [{ 'Key Part': 'pa 1' }],
  });
  assert.equal(r.status, 201, r.text);
  assert.equal(r.json[0].plain, 7);
  assert.equal(applied(r), 'missing=default, return=representation, count=exact, tx=rollback');
});
