// The CRM's commands over HTTP, one by one where they need more than JSON in
// and out: the real client @supabase/postgrest-js calling send_message and
// merge_contacts and reading the OpenAPI document; import_contacts with a
// text/csv body; export_contacts_csv answering text/csv; export_contact_data
// one JSON document; erase_contact and audit_trail as in SQL; rows answered
// with their view's columns only; overloads chosen by argument names; a
// command added later served after SIGHUP, without touching the front.
// test/integration/rpc_catalog.test.mjs calls every command once.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { PostgrestClient } from '@supabase/postgrest-js';
import { startServer, http, token, db, BASE } from './http_helpers.mjs';

const T = 'rpc_cmd';
let server;
let pg;
let agentId;
let channelId;

const admin = () => ({ Authorization: `Bearer ${token('ventros_admin', T)}` });
const viewer = () => ({ Authorization: `Bearer ${token('ventros_viewer', T)}` });

// a statement run as the superuser acting for the test tenant
async function asTenant(sql, params = []) {
  await pg.query('BEGIN');
  try {
    await pg.query("SELECT set_config('ventros.tenant', $1, true)", [T]);
    const r = await pg.query(sql, params);
    await pg.query('COMMIT');
    return r.rows;
  } catch (e) {
    await pg.query('ROLLBACK');
    throw e;
  }
}

// the same call in SQL as the admin of the tenant, rolled back: its JSON
async function sqlAsAdmin(sql, params = []) {
  await pg.query('BEGIN');
  try {
    await pg.query("SELECT set_config('ventros.tenant', $1, true), set_config('request.jwt.claims', $2, true)",
      [T, JSON.stringify({ role: 'ventros_admin', sub: 'test-ventros_admin', tenant_id: T })]);
    await pg.query('SET LOCAL ROLE ventros_admin');
    return (await pg.query(sql, params)).rows[0].v;
  } finally {
    await pg.query('ROLLBACK');
  }
}

const newContact = async (name) => (await asTenant(
  'SELECT id FROM ventros.create_contact($1, phone => $2)', [name, '+55119' + String(Math.floor(Math.random() * 1e8)).padStart(8, '0')]))[0].id;

before(async () => {
  server = await startServer();
  pg = await db();
  if ((await pg.query('SELECT 1 FROM ventros.projects WHERE tenant_id = $1', [T])).rowCount === 0) {
    await pg.query('SELECT ventros.create_tenant($1, $2)', [T, 'RPC commands']);
  }
  agentId = (await asTenant('SELECT ventros_test.new_agent() AS id'))[0].id;
  channelId = (await asTenant("SELECT ventros_test.new_channel('waha') AS id"))[0].id;
});

after(async () => {
  await pg?.end();
  await server?.stop();
});

test('postgrest-js: rpc send_message queues the reply as SQL does', async () => {
  const contact = await newContact('Ana Rpc');
  const client = new PostgrestClient(BASE, { headers: admin() });
  const { data, error, status } = await client.rpc('send_message',
    { channel_id: channelId, contact_id: contact, text: 'Olá pelo HTTP', agent_id: agentId });
  assert.equal(error, null, JSON.stringify(error));
  assert.equal(status, 200);
  assert.equal(data.text, 'Olá pelo HTTP');
  assert.equal(data.status, 'queued');
  assert.equal(data.from_me, true);
  assert.equal(data.contact_id, contact);
  const events = (await pg.query('SELECT ventros_test.events_of($1) AS e', [data.id])).rows[0].e;
  assert.deepEqual(events, ['message.created'], 'the command\'s event, in the transaction of the request');
  // the command's own checks hold over HTTP: an agent is needed
  const refused = await client.rpc('send_message', { channel_id: channelId, contact_id: contact, text: 'x' });
  assert.equal(refused.status, 400);
  assert.equal(refused.error.code, '23502');
  // a contact who opted out: VN010, 409 as docs/sql.md documents it
  await asTenant('SELECT ventros.set_contact_consent($1, false)', [contact]);
  const optedOut = await client.rpc('send_message', { channel_id: channelId, contact_id: contact, text: 'x', agent_id: agentId });
  assert.equal(optedOut.error?.code, 'VN010', JSON.stringify(optedOut.error));
  assert.equal(optedOut.status, 409);
  const missing = await client.rpc('send_message', { channel_id: channelId, text: 'x' });
  assert.equal(missing.status, 404);
  assert.equal(missing.error.code, 'PGRST202');
  assert.match(missing.error.message, /needs argument contact_id/);
});

test('postgrest-js: rpc merge_contacts merges, then a stale version is 409', async () => {
  const primary = await newContact('Bia Primary');
  const dup = await newContact('Bia Duplicate');
  const client = new PostgrestClient(BASE, { headers: admin() });
  const { data, error } = await client.rpc('merge_contacts', { primary_id: primary, merged_ids: [dup], expected_version: 1 });
  assert.equal(error, null, JSON.stringify(error));
  assert.equal(data.id, primary);
  const gone = await pg.query('SELECT deleted_at IS NOT NULL AS deleted FROM ventros.contacts WHERE id = $1', [dup]);
  assert.equal(gone.rows[0].deleted, true);
  const stale = await client.rpc('merge_contacts',
    { primary_id: primary, merged_ids: [await newContact('Bia Third')], expected_version: data.version + 1 });
  assert.equal(stale.status, 409);
  assert.equal(stale.error.code, 'VN001');
  const asViewer = await new PostgrestClient(BASE, { headers: viewer() }).rpc('merge_contacts', { primary_id: primary, merged_ids: [dup] });
  assert.equal(asViewer.status, 403);
  assert.equal(asViewer.error.code, '42501');
});

test('postgrest-js: the OpenAPI document describes the commands the role may call', async () => {
  const doc = await (await fetch(`${BASE}/`, { headers: admin() })).json();
  const send = doc.paths['/rpc/send_message'];
  assert.ok(send.post, 'send_message is described');
  assert.equal(send.get, undefined, 'a command that writes is not offered with GET');
  const comment = (await pg.query("SELECT obj_description('ventros.send_message'::regproc, 'pg_proc') AS c")).rows[0].c;
  assert.equal(send.post.summary, comment.split('\n')[0]);
  const body = send.post.requestBody.content['application/json'].schema;
  assert.deepEqual(body.required, ['channel_id', 'contact_id']);
  assert.deepEqual(body.properties.channel_id, { type: 'string', format: 'uuid' });
  assert.equal(send.post.responses['200'].content['application/json'].schema.$ref, '#/components/schemas/messages');
  const trail = doc.paths['/rpc/audit_trail'];
  assert.ok(trail.get && trail.post, 'a read is offered with GET and POST');
  assert.equal(trail.get.responses['200'].content['application/json'].schema.type, 'array');
  assert.ok(trail.get.responses['200'].content['application/json'].schema.items.properties.event_type);
  assert.ok(doc.paths['/rpc/import_contacts'].post.requestBody.content['text/csv'], 'import takes a CSV body');
  assert.ok(doc.paths['/rpc/export_contacts_csv'].get.responses['200'].content['text/csv'], 'export answers CSV');
  assert.ok(doc.paths['/rpc/login'], 'the sign-in flows stay');
  assert.equal(doc.paths['/rpc/create_tenant'], undefined, 'platform commands are not described');
  // a viewer is shown only what it may execute
  const asViewer = await (await fetch(`${BASE}/`, { headers: viewer() })).json();
  assert.equal(asViewer.paths['/rpc/merge_contacts'], undefined);
  assert.ok(asViewer.paths['/rpc/audit_trail']);
  // the client reads the rows of a command as it reads a table: select and filters on OUT columns
  const client = new PostgrestClient(BASE, { headers: viewer() });
  const contact = await newContact('Cid Trail');
  await asTenant("SELECT ventros.update_contact($1, 1, '{\"name\": \"Cid Renamed\"}')", [contact]);
  const rows = await client.rpc('audit_trail', { aggregate_type: 'contact', aggregate_id: contact, field: 'name' }, { get: true })
    .select('event_type, new_value');
  assert.equal(rows.error, null, JSON.stringify(rows.error));
  assert.deepEqual(rows.data, [{ event_type: 'contact.created', new_value: 'Cid Trail' },
    { event_type: 'contact.updated', new_value: 'Cid Renamed' }]);
  // a key that is no argument filters the rows
  const updates = await client.rpc('audit_trail', { aggregate_type: 'contact', aggregate_id: contact, field: 'name' }, { get: true })
    .select('new_value').eq('event_type', 'contact.updated');
  assert.deepEqual(updates.data, [{ new_value: 'Cid Renamed' }]);
});

test('import_contacts takes a text/csv body, other arguments from the query string', async () => {
  const phone = () => '+55119' + String(Math.floor(Math.random() * 1e8)).padStart(8, '0');
  const csv = `name,phone,tags\nCsv One,${phone()},vip;lead\n"Csv, Two",${phone()},\n`;
  const r = await http('POST', '/rpc/import_contacts', { headers: { ...admin(), 'Content-Type': 'text/csv' }, body: csv, raw: true });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.length, 2);
  assert.deepEqual(r.json.map((x) => [x.line, x.sqlstate]), [[2, null], [3, null]]);
  const names = await pg.query(`SELECT name, ARRAY(SELECT t FROM unnest(tags) t ORDER BY t) AS tags FROM ventros.contacts
                                WHERE id = ANY ($1) ORDER BY name`, [r.json.map((x) => x.contact_id)]);
  assert.deepEqual(names.rows, [{ name: 'Csv One', tags: ['lead', 'vip'] }, { name: 'Csv, Two', tags: [] }]);
  // project_id from the query string
  const project = (await asTenant("SELECT id FROM ventros.create_project('Imports ' || gen_random_uuid())"))[0].id;
  const other = await http('POST', `/rpc/import_contacts?project_id=${project}`,
    { headers: { ...admin(), 'Content-Type': 'text/csv; charset=utf-8' }, body: 'name\nCsv Three\n', raw: true });
  assert.equal(other.status, 200, other.text);
  const placed = await pg.query('SELECT project_id FROM ventros.contacts WHERE id = $1', [other.json[0].contact_id]);
  assert.equal(placed.rows[0].project_id, project);
  // all or nothing: a bad line answers each failing line and writes nothing
  const bad = await http('POST', '/rpc/import_contacts', { headers: { ...admin(), 'Content-Type': 'text/plain' },
    body: 'name,email\nGood,good@x.example\nBad,not-an-email\n', raw: true });
  assert.equal(bad.status, 200, bad.text);
  assert.deepEqual(bad.json.map((x) => [x.line, x.sqlstate]), [[3, '22P02']]);
  assert.equal((await pg.query("SELECT count(*)::int AS n FROM ventros.contacts WHERE tenant_id = $1 AND name = 'Good'", [T])).rows[0].n, 0);
  const unknown = await http('POST', '/rpc/import_contacts', { headers: { ...admin(), 'Content-Type': 'text/csv' }, body: 'nope\n1\n', raw: true });
  assert.equal(unknown.status, 400);
  assert.equal(unknown.json.code, '22023');
  // the same CSV as a JSON argument works too
  const json = await http('POST', '/rpc/import_contacts', { headers: admin(), body: { csv: 'name\nCsv Json\n' } });
  assert.equal(json.status, 200, json.text);
  // a raw body needs a function whose one required argument is text
  const noRaw = await http('POST', '/rpc/get_channel', { headers: { ...admin(), 'Content-Type': 'text/plain' }, body: 'x', raw: true });
  assert.equal(noRaw.status, 404);
  assert.equal(noRaw.json.code, 'PGRST202');
  assert.match(noRaw.json.message, /raw body/);
});

test('export_contacts_csv answers text/csv, or a JSON string when JSON is asked', async () => {
  await newContact('Dora Export');
  const expected = await sqlAsAdmin('SELECT ventros.export_contacts_csv()::text AS v');
  const r = await fetch(`${BASE}/rpc/export_contacts_csv`, { headers: { ...admin(), Accept: 'text/csv' } });
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), 'text/csv; charset=utf-8');
  const text = await r.text();
  assert.equal(text, expected);
  assert.match(text, /^id,name,phone,email,external_id,language,timezone,tags,source_channel,created_at\n/);
  assert.match(text, /Dora Export/);
  const any = await fetch(`${BASE}/rpc/export_contacts_csv`, { headers: { ...admin(), Accept: '*/*' } });
  assert.equal(any.headers.get('content-type'), 'text/csv; charset=utf-8');
  const json = await http('GET', '/rpc/export_contacts_csv', { headers: { ...admin(), Accept: 'application/json' } });
  assert.equal(json.status, 200);
  assert.equal(json.json, expected);
  const client = new PostgrestClient(BASE, { headers: admin() });
  const viaClient = await client.rpc('export_contacts_csv', {}, { get: true }).csv();
  assert.equal(viaClient.data, expected);
});

test('export_contact_data answers one JSON document, erase_contact and audit_trail work as in SQL', async () => {
  const contact = await newContact('Eva Subject');
  const doc = await http('POST', '/rpc/export_contact_data', { headers: admin(), body: { contact_id: contact } });
  assert.equal(doc.status, 200, doc.text);
  assert.equal(typeof doc.json, 'object');
  assert.equal(Array.isArray(doc.json), false);
  const sqlDoc = await sqlAsAdmin('SELECT ventros.export_contact_data($1) AS v', [contact]);
  delete sqlDoc.exported_at;
  assert.deepEqual({ ...doc.json, exported_at: undefined }, { ...sqlDoc, exported_at: undefined });
  const trail = await http('GET', `/rpc/audit_trail?aggregate_type=contact&aggregate_id=${contact}`, { headers: viewer() });
  assert.equal(trail.status, 200);
  assert.deepEqual(trail.json, await sqlAsAdmin(
    "SELECT json_agg(t) AS v FROM ventros.audit_trail(aggregate_type => 'contact', aggregate_id => $1) t", [contact]));
  const erased = await http('POST', '/rpc/erase_contact', { headers: admin(), body: { contact_id: contact, reason: 'HTTP request' } });
  assert.equal(erased.status, 200, erased.text);
  assert.equal(erased.json.contact_id, contact);
  const row = await pg.query('SELECT name, deleted_at IS NOT NULL AS deleted FROM ventros.contacts WHERE id = $1', [contact]);
  assert.deepEqual(row.rows[0], { name: '[erased]', deleted: true });
  const again = await http('POST', '/rpc/export_contact_data', { headers: admin(), body: { contact_id: contact } });
  assert.equal(again.status, 200);
  assert.doesNotMatch(again.text, /Eva Subject/, 'the export after erasure holds no trace of the name');
  const agent = await http('POST', '/rpc/erase_contact', { headers: { Authorization: `Bearer ${token('ventros_agent', T)}` }, body: { contact_id: contact } });
  assert.equal(agent.status, 403);
});

test('a row of an aggregate answers with its view\'s columns: redacted ones stay out', async () => {
  const sql = await sqlAsAdmin('SELECT to_json(ventros.get_channel($1)) AS v', [channelId]);
  assert.ok('config' in sql, 'SQL gives the whole row');
  const r = await http('GET', `/rpc/get_channel?channel_id=${channelId}`, { headers: viewer() });
  assert.equal(r.status, 200);
  assert.equal(r.json.id, channelId);
  assert.equal('config' in r.json, false, 'as GET /channels, config (provider secrets) is not answered');
  const view = await http('GET', `/channels?id=eq.${channelId}`, { headers: viewer() });
  assert.deepEqual(Object.keys(r.json).sort(), Object.keys(view.json[0]).sort());
  const picked = await http('GET', `/rpc/get_channel?channel_id=${channelId}&select=name,status`, { headers: viewer() });
  assert.deepEqual(Object.keys(picked.json), ['name', 'status']);
  const asked = await http('GET', `/rpc/get_channel?channel_id=${channelId}&select=config`, { headers: viewer() });
  assert.equal(asked.status, 400, 'a redacted column cannot be selected either');
});

test('bad input answers PostgREST\'s JSON error', async () => {
  const cases = [
    [{ method: 'POST', path: '/rpc/get_channel', body: '{"channel_id": ', raw: true }, 400, 'PGRST102'],
    [{ method: 'POST', path: '/rpc/get_channel', body: [{ channel_id: channelId }] }, 400, 'PGRST102'],
    [{ method: 'POST', path: '/rpc/get_channel', body: { channel_id: 'nope' } }, 400, '22P02'],
    [{ method: 'POST', path: '/rpc/get_channel', body: { channel_id: channelId, nope: 1 } }, 404, 'PGRST202'],
    [{ method: 'GET', path: `/rpc/get_channel?channel_id=${channelId}&channel_id=${channelId}` }, 404, 'PGRST202'],
    [{ method: 'PATCH', path: '/rpc/get_channel', body: {} }, 405, 'PGRST101'],
    [{ method: 'POST', path: '/rpc/get_channel', body: { channel_id: crypto.randomUUID() } }, 404, 'P0002'],
  ];
  for (const [req, status, code] of cases) {
    const r = await http(req.method, req.path, { headers: viewer(), body: req.body, raw: req.raw });
    assert.equal(r.status, status, `${req.method} ${req.path}: ${r.text}`);
    assert.equal(r.json.code, code, r.text);
    assert.deepEqual(Object.keys(r.json).sort(), ['code', 'details', 'hint', 'message']);
  }
});

test('a command added later is served after SIGHUP; overloads are told apart by argument names', async () => {
  const c = await db();
  try {
    await c.query(`CREATE FUNCTION ventros.rpc_test_greet(name text) RETURNS text LANGUAGE sql STABLE
                   AS $$ SELECT 'hello ' || name $$`);
    await c.query(`CREATE FUNCTION ventros.rpc_test_greet(name text, shout boolean) RETURNS text LANGUAGE sql STABLE
                   AS $$ SELECT CASE WHEN shout THEN upper('hello ' || name) ELSE 'hello ' || name END $$`);
    await c.query(`CREATE FUNCTION ventros.rpc_test_greet(person uuid) RETURNS text LANGUAGE sql STABLE
                   AS $$ SELECT 'hello ' || person $$`);
    await c.query(`CREATE FUNCTION ventros.rpc_test_greet(who text, times integer DEFAULT 1) RETURNS text LANGUAGE sql STABLE
                   AS $$ SELECT repeat('hello ' || who, times) $$`);
    await c.query(`CREATE FUNCTION ventros.rpc_test_secret() RETURNS text LANGUAGE sql AS $$ SELECT 'not for tenants' $$`);
    await c.query('REVOKE ALL ON FUNCTION ventros.rpc_test_secret() FROM PUBLIC');
    await c.query(`COMMENT ON FUNCTION ventros.rpc_test_greet(uuid) IS 'Greets a person by id'`);
    await c.query(`GRANT EXECUTE ON FUNCTION ventros.rpc_test_greet(text), ventros.rpc_test_greet(text, boolean),
                   ventros.rpc_test_greet(uuid), ventros.rpc_test_greet(text, integer) TO ventros_viewer`);
    const before = await http('POST', '/rpc/rpc_test_greet', { headers: viewer(), body: { name: 'Ana' } });
    assert.equal(before.status, 404, 'unknown before the reload');
    server.child.kill('SIGHUP');
    let r;
    for (let i = 0; i < 100; i++) {
      r = await http('POST', '/rpc/rpc_test_greet', { headers: viewer(), body: { name: 'Ana', shout: true } });
      if (r.status === 200) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.equal(r.json, 'HELLO ANA', 'by the names given: (name, shout)');
    const id = crypto.randomUUID();
    assert.equal((await http('GET', `/rpc/rpc_test_greet?person=${id}`, { headers: viewer() })).json, `hello ${id}`);
    assert.equal((await http('POST', '/rpc/rpc_test_greet', { headers: viewer(), body: { who: 'Bo', times: 2 } })).json, 'hello Bohello Bo');
    assert.equal((await http('POST', '/rpc/rpc_test_greet', { headers: viewer(), body: { who: 'Bo' } })).json, 'hello Bo', 'a default kept');
    assert.equal((await http('POST', '/rpc/rpc_test_greet', { headers: viewer(), body: { name: 'Cy' } })).json, 'hello Cy');
    const none = await http('POST', '/rpc/rpc_test_greet', { headers: viewer(), body: { nobody: 1 } });
    assert.equal(none.status, 404);
    assert.equal(none.json.code, 'PGRST202');
    assert.match(none.json.details, /rpc_test_greet\(person\)/);
    const doc = await (await fetch(`${BASE}/`, { headers: viewer() })).json();
    assert.ok(doc.paths['/rpc/rpc_test_greet'], 'described in the OpenAPI document');
    assert.equal((await http('POST', '/rpc/rpc_test_secret', { headers: viewer(), body: {} })).status, 404,
      'a function granted to no tenant role is not served');
  } finally {
    await c.query('DROP FUNCTION IF EXISTS ventros.rpc_test_greet(text), ventros.rpc_test_greet(text, boolean), ' +
      'ventros.rpc_test_greet(uuid), ventros.rpc_test_greet(text, integer), ventros.rpc_test_secret()');
    await c.end();
    server.child.kill('SIGHUP');
  }
});

test('ambiguous overloads answer 300 PGRST203', async () => {
  const c = await db();
  try {
    await c.query(`CREATE FUNCTION ventros.rpc_test_pick(a text) RETURNS text LANGUAGE sql STABLE AS $$ SELECT 'a' $$`);
    await c.query(`CREATE FUNCTION ventros.rpc_test_pick(a text, b integer DEFAULT 0) RETURNS text LANGUAGE sql STABLE AS $$ SELECT 'ab' $$`);
    await c.query('GRANT EXECUTE ON FUNCTION ventros.rpc_test_pick(text), ventros.rpc_test_pick(text, integer) TO ventros_viewer');
    server.child.kill('SIGHUP');
    let r;
    for (let i = 0; i < 100; i++) {
      r = await http('POST', '/rpc/rpc_test_pick', { headers: viewer(), body: { a: 'x', b: 1 } });
      if (r.status === 200) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.equal(r.json, 'ab');
    // f(a) and f(a, b DEFAULT 0) both take (a): PostgreSQL could not choose either
    const ambiguous = await http('POST', '/rpc/rpc_test_pick', { headers: viewer(), body: { a: 'x' } });
    assert.equal(ambiguous.status, 300, ambiguous.text);
    assert.equal(ambiguous.json.code, 'PGRST203');
    assert.match(ambiguous.json.details, /ventros\.rpc_test_pick\(a\), ventros\.rpc_test_pick\(a, b\)/);
  } finally {
    await c.query('DROP FUNCTION IF EXISTS ventros.rpc_test_pick(text), ventros.rpc_test_pick(text, integer)');
    await c.end();
    server.child.kill('SIGHUP');
  }
});
