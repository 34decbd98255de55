// text/csv request bodies, as PostgREST documents them: a bulk insert
// (PostgREST 12, references/api/tables_views "Bulk Insert": the first line
// names the columns, each line after it is a row; the unquoted string NULL
// is null), and PostgREST 10's bulk call ("Bulk Call": with Prefer:
// params=multiple-objects, each line a call of the function).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startConformance, http, WRITE } from './helpers.mjs';

let server;
before(async () => { server = await startConformance(); });
after(async () => { await server?.stop(); });

const csv = (p, body, prefer = 'return=representation') =>
  http('POST', p, { headers: { ...WRITE, 'Content-Type': 'text/csv', Prefer: prefer }, body, raw: true });

test('a CSV body inserts a row per line, typed by the columns', async () => {
  const r = await csv('/boards?select=title,rank&order=title', 'title,rank\ncsv one,4\n"csv, two",NULL\r\n"say ""hi""",6\n');
  assert.equal(r.status, 201, r.text);
  assert.deepEqual(r.json, [
    { title: 'csv one', rank: 4 },
    { title: 'csv, two', rank: null },
    { title: 'say "hi"', rank: 6 },
  ]);
});

test('a quoted "NULL" is the text, the columns it leaves out take their defaults', async () => {
  const r = await csv('/labels', 'code\n"NULL"\ncsv-x');
  assert.equal(r.status, 201, r.text);
  assert.deepEqual(r.json, [{ code: 'NULL', color: 'grey' }, { code: 'csv-x', color: 'grey' }]);
});

test('a line with another number of fields, an unclosed quote, an unknown column', async () => {
  for (const body of ['code,color\na\n', 'code\n"open\n', 'code,color\n"a"b,c\n']) {
    const r = await csv('/labels', body);
    assert.equal(r.status, 400, `${body}: ${r.text}`);
    assert.equal(r.json.code, 'PGRST102', r.text);
  }
  const unknown = await csv('/labels', 'code,shade\na,b\n');
  assert.equal(unknown.status, 400, unknown.text);
  assert.equal(unknown.json.code, 'PGRST204');
});

test('a header alone inserts nothing', async () => {
  const r = await csv('/labels', 'code,color\n');
  assert.equal(r.status, 201, r.text);
  assert.deepEqual(r.json, []);
});

test('a CSV bulk call: each line a call, with Prefer: params=multiple-objects', async () => {
  const r = await csv('/rpc/sum_of', 'a,b\n1,2\n3,4\n', 'params=multiple-objects');
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, [3, 7]);
});
