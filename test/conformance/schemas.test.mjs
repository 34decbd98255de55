// Schemas, roles and the schema cache's reload, as PostgREST 12 documents
// them (references/api/schemas, references/configuration: db-schemas,
// db-extra-search-path, db-anon-role, jwt-role-claim-key; references/
// schema_cache: NOTIFY pgrst, 'reload schema').
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startConformance, http, token, sign, db, AUDIENCE, READ, WRITE, waitForLog } from './helpers.mjs';

let server;
before(async () => { server = await startConformance(); });
after(async () => { await server?.stop(); });

const bearer = (t) => ({ Authorization: `Bearer ${t}` });

test('without a profile header the first exposed schema answers (api)', async () => {
  const r = await http('GET', '/contacts?select=name&order=name&limit=1', { headers: bearer(token('ventros_viewer', 'ta')) });
  assert.equal(r.status, 200);
  assert.notEqual(r.json[0].name, 'from conformance');
});

test('Accept-Profile chooses the schema of a read', async () => {
  const r = await http('GET', '/contacts', { headers: READ });
  assert.equal(r.status, 200);
  assert.deepEqual(r.json, [{ id: 1, name: 'from conformance' }]);
  const b = await http('GET', '/boards?select=title&order=id', { headers: READ });
  assert.deepEqual(b.json.map((x) => x.title), ['alpha', 'beta', 'gamma']);
});

test('a relation of another exposed schema is not found without its profile', async () => {
  const r = await http('GET', '/boards');
  assert.equal(r.json.code, 'PGRST205');
});

test('a schema not exposed answers 406 PGRST106 naming the exposed ones', async () => {
  for (const [method, headers] of [['GET', { 'Accept-Profile': 'ventros' }], ['POST', { 'Content-Profile': 'public' }]]) {
    const r = await http(method, '/boards', { headers, body: method === 'POST' ? { title: 'x' } : undefined });
    assert.equal(r.status, 406);
    assert.equal(r.json.code, 'PGRST106');
    assert.equal(r.json.message, 'The schema must be one of the following: api, conformance');
  }
});

test('Content-Profile chooses the schema of a write; Accept-Profile does not', async () => {
  const w = await http('POST', '/boards', { headers: { ...WRITE, Prefer: 'return=representation' }, body: { title: 'delta' } });
  assert.equal(w.status, 201);
  assert.equal(w.json[0].title, 'delta');
  const r = await http('POST', '/boards', { headers: { ...READ }, body: { title: 'epsilon' } });
  assert.equal(r.json.code, 'PGRST205'); /* api has no boards */
});

test('the search_path of a request is its schema, then db-extra-search-path (public)', async () => {
  const r = await http('POST', '/sessions', { headers: { ...WRITE, Prefer: 'return=representation' }, body: { id: 101 } });
  assert.equal(r.status, 201);
  assert.equal(r.json[0].path, '"conformance", "public"');
});

test('a request without a token runs as db-anon-role', async () => {
  const r = await http('POST', '/sessions', { headers: { ...WRITE, Prefer: 'return=representation' }, body: { id: 102 } });
  assert.equal(r.json[0].role_name, 'conformance_anon');
});

test("a token's role claim names the role; a role outside the configured ones is refused", async () => {
  const ok = await http('POST', '/sessions', { headers: { ...WRITE, ...bearer(token('conformance_user')), Prefer: 'return=representation' }, body: { id: 103 } });
  assert.equal(ok.status, 201, ok.text);
  assert.equal(ok.json[0].role_name, 'conformance_user');
  const bad = await http('GET', '/boards', { headers: { ...READ, ...bearer(token('postgres')) } });
  assert.equal(bad.status, 401);
});

test('NOTIFY pgrst, reload schema reloads the schema cache', async () => {
  const before = await http('GET', '/late', { headers: READ });
  assert.equal(before.json.code, 'PGRST205');
  const c = await db();
  try {
    await c.query('CREATE TABLE conformance.late (id integer PRIMARY KEY)');
    await c.query('GRANT SELECT ON conformance.late TO conformance_anon');
    await c.query("NOTIFY pgrst, 'reload schema'");
  } finally {
    await c.end();
  }
  await waitForLog(server, 'schema reloaded on NOTIFY pgrst');
  const r = await http('GET', '/late', { headers: READ });
  assert.equal(r.status, 200);
  assert.deepEqual(r.json, []);
});

test('jwt-role-claim-key and db-extra-search-path are configuration', async () => {
  await server.stop();
  server = await startConformance({
    VENTROS_HTTP_JWT_ROLE_CLAIM_KEY: '.app_role',
    VENTROS_HTTP_DB_EXTRA_SEARCH_PATH: 'public, extensions',
  });
  const now = Math.floor(Date.now() / 1000);
  const t = sign({ app_role: 'conformance_user', role: 'ventros_admin', aud: AUDIENCE, iat: now, exp: now + 600 });
  const r = await http('POST', '/sessions', { headers: { ...WRITE, ...bearer(t), Prefer: 'return=representation' }, body: { id: 104 } });
  assert.equal(r.status, 201);
  assert.equal(r.json[0].role_name, 'conformance_user');
  assert.equal(r.json[0].path, '"conformance", "public", "extensions"');
  /* a token without that claim runs as the anonymous role */
  const anon = await http('POST', '/sessions', { headers: { ...WRITE, ...bearer(token('conformance_user')), Prefer: 'return=representation' }, body: { id: 105 } });
  assert.equal(anon.json[0].role_name, 'conformance_anon');
});

/*
 * PostgREST 12, OpenAPI (references/api/openapi): GET / with a profile
 * describes that schema, following the role's privileges (the default
 * openapi-mode, follow-privileges): tables and views with the methods the
 * role may use, their columns, and the functions it may execute.
 */
test('GET / with Accept-Profile describes that schema as the role may use it', async () => {
  const r = await http('GET', '/', { headers: READ });
  assert.equal(r.status, 200, r.text);
  assert.match(r.headers.get('content-type'), /^application\/openapi\+json/);
  assert.equal(r.json.openapi, '3.0.3');
  assert.equal(r.json.info.description, 'ventros-http conformance fixture (test/conformance)');
  const boards = r.json.paths['/boards'];
  assert.deepEqual(Object.keys(boards).sort(), ['delete', 'get', 'patch', 'post']);
  const schema = r.json.components.schemas.boards;
  assert.deepEqual(schema.properties.id, { type: 'integer', format: 'integer', description: 'Note:\nThis is a Primary Key.<pk/>' });
  assert.deepEqual(schema.properties.archived, { type: 'boolean', format: 'boolean' });
  /* required: NOT NULL without a default (title), not the identity nor archived */
  assert.deepEqual(schema.required, ['title']);
  /* an IMMUTABLE function: POST with its arguments as the body, and GET */
  const sum = r.json.paths['/rpc/sum_of'];
  assert.deepEqual(Object.keys(sum.post.requestBody.content['application/json'].schema.properties), ['a', 'b']);
  assert.deepEqual(sum.get.parameters.map((p) => p.name), ['a', 'b']);
  /* a VOLATILE one: POST only */
  assert.ok(r.json.paths['/rpc/add_event'].post);
  assert.equal(r.json.paths['/rpc/add_event'].get, undefined);
  /* api's views are not this schema's */
  assert.equal(r.json.paths['/conversations'], undefined);
});

test('GET / of a schema leaves out what the role holds no privilege on', async () => {
  const c = await db();
  try {
    await c.query('CREATE TABLE conformance.oas_hidden (id integer)');
    await c.query('CREATE TABLE conformance.oas_read (id integer)');
    await c.query('GRANT SELECT ON conformance.oas_read TO conformance_anon');
    await c.query('CREATE FUNCTION conformance.oas_private() RETURNS integer LANGUAGE sql AS $$ SELECT 1 $$');
    await c.query('REVOKE EXECUTE ON FUNCTION conformance.oas_private() FROM PUBLIC');
    const r = await http('GET', '/', { headers: READ });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.paths['/oas_hidden'], undefined);
    assert.equal(r.json.components.schemas.oas_hidden, undefined);
    assert.deepEqual(Object.keys(r.json.paths['/oas_read']), ['get']);
    assert.equal(r.json.paths['/rpc/oas_private'], undefined);
  } finally {
    await c.query('DROP TABLE IF EXISTS conformance.oas_hidden, conformance.oas_read');
    await c.query('DROP FUNCTION IF EXISTS conformance.oas_private()');
    await c.end();
  }
});
