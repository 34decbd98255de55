// ventros-http's statements keep their plans (issue 19, docs/performance.md
// "Where ventros-http's time went"): a page of a list is one prepared
// statement whose plan PostgreSQL caches, not one it plans again on every
// request (a bound LIMIT made the plan cache distrust the generic plan, and
// the backend spent twice the statement's cost planning it); paging through a
// list does not prepare one statement per page; and the settings the setup
// statement now leaves out when they would not change still hold.  The server
// of this file has one database connection, so what a request sees of its
// connection is the pool's.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, http, auth, db, PEOPLE } from './http_helpers.mjs';

let server;
let c;

before(async () => {
  c = await db();
  await c.query(`CREATE OR REPLACE FUNCTION api.http_test_plans() RETURNS json LANGUAGE sql VOLATILE
    AS $$ SELECT coalesce(json_agg(json_build_object('statement', statement, 'generic', generic_plans,
      'custom', custom_plans, 'parameters', parameter_types::text)), '[]') FROM pg_catalog.pg_prepared_statements $$`);
  await c.query('GRANT EXECUTE ON FUNCTION api.http_test_plans() TO ventros_viewer');
  await c.query(`CREATE OR REPLACE FUNCTION api.http_test_settings() RETURNS json LANGUAGE sql STABLE
    AS $$ SELECT json_build_object('read_only', current_setting('transaction_read_only'),
      'timezone', current_setting('timezone'), 'jit', current_setting('jit'),
      'synchronous_commit', current_setting('synchronous_commit'), 'search_path', current_setting('search_path'),
      'method', current_setting('request.method'), 'role', current_user) $$`);
  await c.query('GRANT EXECUTE ON FUNCTION api.http_test_settings() TO ventros_viewer');
  server = await startServer({ VENTROS_HTTP_POOL: '1' });
});
after(async () => {
  await server.stop();
  await c.query('DROP FUNCTION IF EXISTS api.http_test_plans()');
  await c.query('DROP FUNCTION IF EXISTS api.http_test_settings()');
  await c.end();
});

const viewer = auth('ventros_viewer', 'tr');
const names = PEOPLE.map((p) => p[0]).sort();

async function plans() {
  const r = await http('POST', '/rpc/http_test_plans', { headers: viewer, body: {} });
  assert.equal(r.status, 200, r.text);
  return r.json;
}

test('a page of a list runs on a cached plan, not one planned again per request', async () => {
  const path = '/contacts?select=name&order=name&limit=3';
  for (let i = 0; i < 8; i++) {
    const r = await http('GET', path, { headers: viewer });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json.map((x) => x.name), names.slice(0, 3));
  }
  const mine = (await plans()).filter((p) => p.statement.includes('json_agg') && p.statement.includes('"name"') &&
    p.statement.includes('ORDER BY'));
  assert.equal(mine.length, 1, JSON.stringify(mine));
  // nothing is bound (the limit is in the text), so PostgreSQL plans the
  // statement once and reuses that plan; with a bound LIMIT it planned each
  // execution for its values, and kept doing so wherever a tenth of the
  // table is many rows (bench/http: 10,000 contacts)
  assert.equal(mine[0].parameters, '{}', mine[0].statement);
  assert.equal(mine[0].custom, 0, `planned ${mine[0].custom} times for 8 requests: ${mine[0].statement}`);
  assert.ok(mine[0].generic >= 8, JSON.stringify(mine[0]));
});

test('paging through a list does not prepare a statement per page, and each page is right', async () => {
  const count = async () => (await plans()).filter((p) => p.statement.includes('json_agg') &&
    p.statement.includes('"email"')).length;
  const before = await count();
  for (let k = 0; k < names.length; k++) {
    const r = await http('GET', `/contacts?select=name,email&order=name&limit=1&offset=${k}`, { headers: viewer });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, [{ name: names[k], email: r.json[0].email }]);
    assert.equal(r.headers.get('content-range'), `${k}-${k}/*`);
  }
  // the Range header pages the same way
  const ranged = await http('GET', '/contacts?select=name,email&order=name', { headers: { ...viewer, Range: '2-3' } });
  assert.equal(ranged.status, 200, ranged.text);
  assert.deepEqual(ranged.json.map((x) => x.name), names.slice(2, 4));
  // the first page, and one statement for every later page
  assert.ok(await count() - before <= 3, `${await count() - before} statements for ${names.length} pages`);
});

test('the settings of a request hold whichever of them the setup statement leaves out', async () => {
  const read = await http('GET', '/rpc/http_test_settings', { headers: viewer });
  assert.equal(read.status, 200, read.text);
  assert.equal(read.json.read_only, 'on');
  assert.equal(read.json.jit, 'off');
  assert.equal(read.json.method, 'GET');
  assert.equal(read.json.role, 'ventros_viewer');
  assert.match(read.json.search_path, /api/);
  const write = await http('POST', '/rpc/http_test_settings', { headers: viewer, body: {} });
  assert.equal(write.status, 200, write.text);
  assert.equal(write.json.read_only, 'off');
  assert.equal(write.json.method, 'POST');
  assert.notEqual(write.json.synchronous_commit, 'off');
  // Prefer: timezone for one request only; the next one has the login's again
  const tz = await http('GET', '/rpc/http_test_settings', { headers: { ...viewer, Prefer: 'timezone=America/Sao_Paulo' } });
  assert.equal(tz.status, 200, tz.text);
  assert.equal(tz.json.timezone, 'America/Sao_Paulo');
  const after = await http('GET', '/rpc/http_test_settings', { headers: viewer });
  assert.equal(after.json.timezone, read.json.timezone);
  assert.notEqual(after.json.timezone, 'America/Sao_Paulo');
});
