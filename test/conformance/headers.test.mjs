// Headers and operators as PostgREST 12 reads them: several Prefer headers
// make one list (RFC 7240), is.null/is.true in any case, and HEAD answers
// the headers GET would (references/api/preferences, tables_views).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import nodeHttp from 'node:http';
import { startConformance, http, READ } from './helpers.mjs';

let server;
before(async () => { server = await startConformance(); });
after(async () => { await server?.stop(); });

// node:http sends an array value as several header lines (fetch would join them)
function raw(method, path, headers, body) {
  return new Promise((resolve, reject) => {
    const req = nodeHttp.request({ host: '127.0.0.1', port: Number(process.env.VENTROS_HTTP_PORT || 3039), method, path, headers }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text }));
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

test('several Prefer headers are one list of preferences', async () => {
  const r = await raw('POST', '/labels', {
    'Content-Profile': 'conformance', 'Content-Type': 'application/json',
    Prefer: ['return=representation', 'resolution=merge-duplicates'],
  }, JSON.stringify([{ code: 'bug', color: 'pink' }]));
  assert.equal(r.status, 201, r.text);
  assert.deepEqual(JSON.parse(r.text), [{ code: 'bug', color: 'pink' }]);
  assert.match(r.headers['preference-applied'], /return=representation/);
  assert.match(r.headers['preference-applied'], /resolution=merge-duplicates/);
});

test('is. takes null, true, false, unknown in any case', async () => {
  const r = await http('GET', '/boards?rank=is.NULL', { headers: READ });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, []);
  const t = await http('GET', '/boards?archived=is.False&select=id&order=id', { headers: READ });
  assert.equal(t.status, 200, t.text);
  assert.deepEqual(t.json, [{ id: 1 }, { id: 2 }, { id: 3 }]);
});

test('HEAD answers the Content-Type GET would', async () => {
  const r = await http('HEAD', '/boards', { headers: READ });
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^application\/json/);
  const csv = await http('HEAD', '/boards', { headers: { ...READ, Accept: 'text/csv' } });
  assert.match(csv.headers.get('content-type'), /^text\/csv/);
});
