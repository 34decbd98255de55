// The SQLSTATE -> HTTP status table of ventros-http (src/http/response.c,
// printed in docs/http.md): every row, through a real request.  A probe
// function in api raises the code it is given; the answer must carry the
// table's status and PostgREST's error JSON with that code.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { db, startServer, http, auth } from './http_helpers.mjs';

let pg;
let server;
before(async () => {
  pg = await db();
  await pg.query(`
    CREATE OR REPLACE FUNCTION api.raise_probe(code text) RETURNS void
    LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'probe %', code USING ERRCODE = code; END $$`);
  await pg.query("COMMENT ON FUNCTION api.raise_probe(text) IS 'test/integration/http_errors.test.mjs: raises the given SQLSTATE'");
  await pg.query('GRANT EXECUTE ON FUNCTION api.raise_probe(text) TO ventros_viewer, ventros_anon');
  server = await startServer();
});

after(async () => {
  await server?.stop();
  await pg?.query('DROP FUNCTION IF EXISTS api.raise_probe(text)');
  await pg?.end();
});

// [SQLSTATE, status with a token, status without one]
const TABLE = [
  ['VN001', 409], ['VN002', 409], ['P0002', 404], ['54000', 413], ['54001', 413],
  ['55000', 503], ['28P01', 401], ['28000', 401], ['57014', 504], ['57P01', 503],
  ['42501', 403, 401],
  ['08006', 503], ['09000', 500], ['0L000', 403], ['0P000', 403], ['23503', 409], ['23505', 409],
  ['25006', 405], ['25001', 500], ['28P02', 403], ['2D000', 500], ['38000', 500], ['39000', 500],
  ['3B000', 500], ['40001', 500], ['40P01', 500], ['53400', 500], ['53300', 503], ['55P03', 500],
  ['57000', 500], ['58000', 500], ['F0000', 500], ['HV000', 500], ['P0001', 400], ['P0003', 500],
  ['XX000', 500], ['42883', 404], ['42P01', 404], ['42P17', 500],
  ['21000', 400], ['22023', 400], ['22P02', 400], ['23502', 400], ['23514', 400], ['42703', 400],
];

for (const [code, withToken, anonymous = withToken] of TABLE) {
  test(`${code} answers ${withToken}${anonymous !== withToken ? ` (${anonymous} without a token)` : ''}`, async () => {
    for (const [headers, want] of [[auth('ventros_viewer', 'ta'), withToken], [{}, anonymous]]) {
      const r = await http('POST', '/rpc/raise_probe', { headers, body: { code } });
      assert.equal(r.status, want, r.text);
      assert.equal(r.json.code, code);
      assert.equal(r.json.message, `probe ${code}`);
      assert.ok('details' in r.json && 'hint' in r.json, 'PostgREST error JSON');
    }
  });
}
