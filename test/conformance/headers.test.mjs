// Headers and operators as PostgREST 12 reads them: several Prefer headers
// make one list (RFC 7240), is.null/is.true in any case, HEAD answers the
// headers GET would, and the execution plan media type with db-plan-enabled
// (references/api/preferences, tables_views, observability).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import nodeHttp from 'node:http';
import { startConformance, http, READ, WRITE } from './helpers.mjs';

let server;
before(async () => { server = await startConformance({ VENTROS_HTTP_DB_PLAN_ENABLED: 'true' }); });
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

test('Accept: application/vnd.pgrst.plan+json answers the plan of the request', async () => {
  const r = await http('GET', '/boards?id=eq.1', { headers: { ...READ, Accept: 'application/vnd.pgrst.plan+json' } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers.get('content-type'), 'application/vnd.pgrst.plan+json; for="application/json"; charset=utf-8');
  assert.ok(r.json[0].Plan, r.text);
  assert.equal(r.json[0]['Execution Time'], undefined);
  // postgrest-js's explain(): a for= media type and options
  const a = await http('GET', '/boards?select=title', {
    headers: { ...READ, Accept: 'application/vnd.pgrst.plan+json; for="text/csv"; options=analyze|verbose;' },
  });
  assert.equal(a.status, 200, a.text);
  assert.match(a.headers.get('content-type'), /for="text\/csv"/);
  assert.ok(a.json[0]['Execution Time'] !== undefined, a.text);
  const t = await http('GET', '/rpc/boards_from?first_id=2', { headers: { ...READ, Accept: 'application/vnd.pgrst.plan' } });
  assert.equal(t.status, 200, t.text);
  assert.match(t.headers.get('content-type'), /^application\/vnd\.pgrst\.plan\+text/);
  assert.match(t.text, /cost=/);
});

test('no plan for Ventros\' api, nor with an option EXPLAIN does not know', async () => {
  const api = await http('GET', '/contacts', { headers: { Accept: 'application/vnd.pgrst.plan+json' } });
  assert.equal(api.status, 406, api.text);
  assert.equal(api.json.code, 'PGRST107');
  const bad = await http('GET', '/boards', { headers: { ...READ, Accept: 'application/vnd.pgrst.plan+json; options=costs' } });
  assert.equal(bad.status, 406, bad.text);
});

test('Prefer: handling=strict refuses preferences it cannot honour (PGRST122); lenient ignores them', async () => {
  const strict = await http('GET', '/boards', { headers: { ...READ, Prefer: 'handling=strict, foo, bar' } });
  assert.equal(strict.status, 400, strict.text);
  assert.equal(strict.json.code, 'PGRST122');
  assert.equal(strict.json.message, 'Invalid preferences given with handling=strict');
  assert.equal(strict.json.details, 'Invalid preferences: foo, bar');
  const lenient = await http('GET', '/boards?select=id&id=eq.1', { headers: { ...READ, Prefer: 'handling=lenient, foo, bar' } });
  assert.equal(lenient.status, 200, lenient.text);
  const known = await http('GET', '/boards?select=id&id=eq.1', { headers: { ...READ, Prefer: 'handling=strict, count=exact' } });
  assert.equal(known.status, 200, known.text);
  assert.equal(known.headers.get('content-range'), '0-0/1');
});

/*
 * PostgREST 12, "Prefer: timezone" (references/api/preferences): a zone of
 * pg_timezone_names renders timestamptz values in it and is named in
 * Preference-Applied; any other is ignored (the login's zone, no
 * Preference-Applied), and is an invalid preference under handling=strict.
 */
test('Prefer: timezone=<zone> renders timestamptz in that zone', async () => {
  const r = await http('GET', '/stamps?select=t', { headers: { ...READ, Prefer: 'timezone=America/Los_Angeles' } });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, [{ t: '2023-10-18T05:37:59.611-07:00' }]);
  assert.match(r.headers.get('preference-applied') || '', /(^|, )timezone=America\/Los_Angeles($|,)/);
  const asia = await http('GET', '/stamps?select=t', { headers: { ...READ, Prefer: 'count=exact, timezone=Asia/Kolkata' } });
  assert.deepEqual(asia.json, [{ t: '2023-10-18T18:07:59.611+05:30' }]);
});

test('Prefer: timezone with an unknown zone is ignored, and refused under handling=strict', async () => {
  const utc = await http('GET', '/stamps?select=t', { headers: READ });
  const r = await http('GET', '/stamps?select=t', { headers: { ...READ, Prefer: 'timezone=Jupiter/Red_Spot' } });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, utc.json);
  assert.doesNotMatch(r.headers.get('preference-applied') || '', /timezone/);
  const strict = await http('GET', '/stamps?select=t', {
    headers: { ...READ, Prefer: 'handling=strict, timezone=Jupiter/Red_Spot' },
  });
  assert.equal(strict.status, 400);
  assert.equal(strict.json.code, 'PGRST122');
  assert.match(strict.json.details, /timezone=Jupiter\/Red_Spot/);
  const ok = await http('GET', '/stamps?select=t', { headers: { ...READ, Prefer: 'handling=strict, timezone=Europe/Lisbon' } });
  assert.equal(ok.status, 200, ok.text);
  assert.deepEqual(ok.json, [{ t: '2023-10-18T13:37:59.611+01:00' }]);
});

test('the zone holds for the request only, writes included', async () => {
  const w = await http('PATCH', '/stamps?id=eq.1', {
    headers: { ...WRITE, Prefer: 'return=representation, timezone=Asia/Tokyo' },
    body: { t: '2023-10-18 21:37:59.611' },
  });
  assert.equal(w.status, 200, w.text);
  /* a zoneless literal is read in the request's zone: 21:37 Tokyo is 12:37 UTC */
  assert.deepEqual(w.json, [{ id: 1, t: '2023-10-18T21:37:59.611+09:00' }]);
  const after = await http('GET', '/stamps?select=t', { headers: { ...READ, Prefer: 'timezone=UTC' } });
  assert.deepEqual(after.json, [{ t: '2023-10-18T12:37:59.611+00:00' }]);
});
