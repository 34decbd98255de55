// ventros-http over real HTTP: reads with every filter operator, select,
// embedding, order, paging, counts, formats; writes with return preferences,
// upserts and optimistic locking; rpc; PostgREST's errors.  Plain fetch (as
// curl would) and the real client @supabase/postgrest-js.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { PostgrestClient } from '@supabase/postgrest-js';
import { startServer, http, auth, token, db, BASE } from './http_helpers.mjs';

let server;
before(async () => { server = await startServer(); });
after(async () => { await server.stop(); });

const viewerB = auth('ventros_viewer', 'tr');
const adminA = auth('ventros_admin', 'ta');
const names = (r) => r.json.map((x) => x.name);

async function get(p, headers = viewerB) { return http('GET', p, { headers }); }

test('GET /health reports PostgreSQL', async () => {
  const r = await http('GET', '/health');
  assert.equal(r.status, 200);
  assert.equal(r.json.postgres, 'ok');
  // the front's login is not privileged: the workers come from ventros.http_worker_status()
  const workers = r.json.workers.map((w) => w.name);
  for (const w of ['ventros outbox publisher', 'ventros http dispatcher', 'ventros inbox processor']) {
    assert.ok(workers.includes(w), `${w} in ${JSON.stringify(r.json.workers)}`);
  }
  assert.ok(r.json.workers.every((w) => typeof w.state === 'string'));
});

test('GET / is an OpenAPI 3 description of schema api', async () => {
  const r = await get('/');
  assert.equal(r.status, 200);
  assert.equal(r.json.openapi, '3.0.3');
  assert.ok(r.json.paths['/contacts'].get);
  assert.ok(r.json.paths['/rpc/login'].post);
  assert.ok(r.json.components.schemas.contacts.properties.version);
  assert.equal(r.json.components.schemas.users.properties.password_hash, undefined, 'redacted column hidden');
});

test('select: columns, renames and casts', async () => {
  const r = await get('/contacts?select=full_name:name,version,lang:language::text&name=eq.Ann');
  assert.equal(r.status, 200);
  assert.deepEqual(r.json, [{ full_name: 'Ann', version: 1, lang: 'en' }]);
  const c = await get('/contacts?select=name,version::text&name=eq.Ann');
  assert.deepEqual(c.json, [{ name: 'Ann', version: '1' }]);
});

const operatorCases = [
  ['name=eq.Bob', ['Bob']],
  ['name=neq.Bob', ['Ann', 'Carla', 'Dan', 'Eve']],
  ['name=gt.Carla', ['Dan', 'Eve']],
  ['name=gte.Carla', ['Carla', 'Dan', 'Eve']],
  ['name=lt.Bob', ['Ann']],
  ['name=lte.Bob', ['Ann', 'Bob']],
  ['name=like.*a*', ['Carla', 'Dan']],
  ['name=ilike.A*', ['Ann']],
  ['name=match.^[AB]', ['Ann', 'Bob']],
  ['name=imatch.^e', ['Eve']],
  ['name=in.(Ann,Eve,"Nobody, really")', ['Ann', 'Eve']],
  ['email=is.null', ['Carla']],
  ['email=not.is.null', ['Ann', 'Bob', 'Dan', 'Eve']],
  ['phone=is.null', ['Dan']],
  ['tags=cs.{vip}', ['Ann', 'Dan']],
  ['tags=cd.{vip,lead}', ['Ann', 'Bob', 'Carla', 'Dan', 'Eve']],
  ['tags=ov.{lead,nothing}', ['Ann', 'Bob']],
  ['name=fts.ann', ['Ann']],
  ['name=fts(simple).bob', ['Bob']],
  ['name=plfts.eve', ['Eve']],
  ['name=phfts(english).dan', ['Dan']],
  ['name=wfts.carla or dan', ['Carla', 'Dan']],
  ['name=not.eq.Ann', ['Bob', 'Carla', 'Dan', 'Eve']],
  ['name=not.in.(Ann,Bob)', ['Carla', 'Dan', 'Eve']],
  ['name=isdistinct.Ann', ['Bob', 'Carla', 'Dan', 'Eve']],
  ['or=(name.eq.Ann,language.eq.es)', ['Ann', 'Eve']],
  ['or=(name.eq.Ann,and(language.eq.pt,tags.cs.{lead}))', ['Ann', 'Bob']],
  ['and=(language.eq.pt,or(name.eq.Carla,name.eq.Zed))', ['Carla']],
  ['not.or=(language.eq.pt,language.eq.es)', ['Ann', 'Dan']],
  ['or=(name.not.eq.Ann,name.eq.Ann)&language=eq.en', ['Ann', 'Dan']],
  ['name=gte.B&name=lte.D', ['Bob', 'Carla']],
  ['or=(name.in.("Ann","Bob"),email.like.*eve*)', ['Ann', 'Bob', 'Eve']],
];
for (const [q, expected] of operatorCases) {
  test(`filter ${q}`, async () => {
    const r = await get(`/contacts?select=name&order=name&${encodeURI(q).replace(/\+/g, '%2B')}`);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(names(r), expected);
  });
}

test('order: desc, several keys, nullsfirst and nullslast', async () => {
  assert.deepEqual(names(await get('/contacts?select=name&order=name.desc')), ['Eve', 'Dan', 'Carla', 'Bob', 'Ann']);
  assert.deepEqual(names(await get('/contacts?select=name&order=language.asc,name.desc')),
    ['Dan', 'Ann', 'Eve', 'Carla', 'Bob']);
  assert.deepEqual(names(await get('/contacts?select=name&order=email.asc.nullsfirst,name')).slice(0, 2), ['Carla', 'Ann']);
  assert.deepEqual(names(await get('/contacts?select=name&order=email.desc.nullslast,name')).slice(-1), ['Carla']);
});

test('paging: limit/offset and Content-Range', async () => {
  const r = await get('/contacts?select=name&order=name&limit=2&offset=1');
  assert.equal(r.status, 200);
  assert.deepEqual(names(r), ['Bob', 'Carla']);
  assert.equal(r.headers.get('content-range'), '1-2/*');
});

test('paging: Range header with count=exact answers 206', async () => {
  const r = await http('GET', '/contacts?select=name&order=name', {
    headers: { ...viewerB, Range: '0-1', 'Range-Unit': 'items', Prefer: 'count=exact' } });
  assert.equal(r.status, 206);
  assert.equal(r.headers.get('content-range'), '0-1/5');
  assert.deepEqual(names(r), ['Ann', 'Bob']);
  const all = await http('GET', '/contacts?select=name', { headers: { ...viewerB, Prefer: 'count=exact' } });
  assert.equal(all.status, 200);
  assert.equal(all.headers.get('content-range'), '0-4/5');
  const beyond = await http('GET', '/contacts?select=name&offset=10', { headers: { ...viewerB, Prefer: 'count=exact' } });
  assert.equal(beyond.status, 416);
});

test('count=planned and count=estimated give a number', async () => {
  for (const mode of ['planned', 'estimated']) {
    const r = await http('GET', '/contacts?select=name&limit=1', { headers: { ...viewerB, Prefer: `count=${mode}` } });
    assert.ok([200, 206].includes(r.status));
    assert.match(r.headers.get('content-range'), /^0-0\/(\d+|\*)$/);
  }
});

test('embedding: many-to-one as an object, one-to-many as an array', async () => {
  const r = await get('/contacts?select=name,project:projects(name)&name=eq.Ann');
  assert.deepEqual(r.json, [{ name: 'Ann', project: { name: 'tr Inc.' } }]);
  const p = await get('/projects?select=name,contacts(name)');
  assert.equal(p.json.length, 1);
  assert.deepEqual(p.json[0].contacts.map((c) => c.name).sort(), ['Ann', 'Bob', 'Carla', 'Dan', 'Eve']);
  const star = await get('/contacts?select=*,projects(*)&name=eq.Bob');
  assert.equal(star.json[0].projects.tenant_id, 'tr');
  assert.equal(star.json[0].version, 1);
});

test('Accept: application/vnd.pgrst.object+json', async () => {
  const one = await http('GET', '/contacts?select=name&name=eq.Ann', {
    headers: { ...viewerB, Accept: 'application/vnd.pgrst.object+json' } });
  assert.equal(one.status, 200);
  assert.deepEqual(one.json, { name: 'Ann' });
  const many = await http('GET', '/contacts?select=name', {
    headers: { ...viewerB, Accept: 'application/vnd.pgrst.object+json' } });
  assert.equal(many.status, 406);
  assert.equal(many.json.code, 'PGRST116');
});

test('Accept: text/csv', async () => {
  const r = await http('GET', '/contacts?select=name,email,tags&order=name&limit=3', {
    headers: { ...viewerB, Accept: 'text/csv' } });
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^text\/csv/);
  assert.equal(r.text, 'name,email,tags\nAnn,ann@tr.example,"[""lead"",""vip""]"\nBob,bob@tr.example,"[""lead""]"\nCarla,,[]');
});

test('POST: single with return=representation, bulk, minimal and headers-only', async () => {
  const stamp = Date.now();
  const one = await http('POST', '/contacts?select=name,email,version', {
    headers: { ...adminA, Prefer: 'return=representation' }, body: { name: 'Post One', email: `post${stamp}@ta.example` } });
  assert.equal(one.status, 201, one.text);
  assert.deepEqual(one.json, [{ name: 'Post One', email: `post${stamp}@ta.example`, version: 1 }]);
  const bulk = await http('POST', '/contacts?select=name,tags', {
    headers: { ...adminA, Prefer: 'return=representation' },
    body: [{ name: 'Bulk 1' }, { name: 'Bulk 2', tags: ['x'] }] });
  assert.equal(bulk.status, 201, bulk.text);
  assert.deepEqual(bulk.json, [{ name: 'Bulk 1', tags: [] }, { name: 'Bulk 2', tags: ['x'] }]);
  const minimal = await http('POST', '/contacts', { headers: adminA, body: { name: 'Post Minimal' } });
  assert.equal(minimal.status, 201);
  assert.equal(minimal.text, '');
  const headersOnly = await http('POST', '/contacts', { headers: { ...adminA, Prefer: 'return=headers-only' }, body: { name: 'Post Headers' } });
  assert.equal(headersOnly.status, 201);
  assert.equal(headersOnly.text, '');
  assert.equal(headersOnly.headers.get('content-range'), '*/1');
  const location = headersOnly.headers.get('location');
  assert.match(location, /^\/contacts\?id=eq\.[0-9a-f-]{36}$/);
  const fetched = await http('GET', `${location}&select=name`, { headers: adminA });
  assert.deepEqual(fetched.json, [{ name: 'Post Headers' }]);
});

test('PATCH with the version read; a stale version answers 409 with the conflict, none 400', async () => {
  const created = await http('POST', '/contacts?select=id,version', {
    headers: { ...adminA, Prefer: 'return=representation' }, body: { name: 'Patch Me' } });
  const { id } = created.json[0];
  const ok = await http('PATCH', `/contacts?id=eq.${id}&select=name,version`, {
    headers: { ...adminA, Prefer: 'return=representation' }, body: { name: 'Patched', version: 1 } });
  assert.equal(ok.status, 200, ok.text);
  assert.deepEqual(ok.json, [{ name: 'Patched', version: 2 }]);
  const stale = await http('PATCH', `/contacts?id=eq.${id}`, { headers: adminA, body: { name: 'Again', version: 1 } });
  assert.equal(stale.status, 409, stale.text);
  assert.equal(stale.json.code, 'VN001');
  assert.match(stale.json.details, /Current version is 2/);
  const viaFilter = await http('PATCH', `/contacts?id=eq.${id}&version=eq.2`, { headers: adminA, body: { name: 'Filtered' } });
  assert.equal(viaFilter.status, 204);
  const staleFilter = await http('PATCH', `/contacts?id=eq.${id}&version=eq.2`, { headers: adminA, body: { name: 'X' } });
  assert.equal(staleFilter.status, 409);
  const unstated = await http('PATCH', `/contacts?id=eq.${id}`, { headers: adminA, body: { name: 'No version' } });
  assert.equal(unstated.status, 400, 'the engine wants the version stated (22023)');
  assert.match(unstated.json.message, /must state the version/);
});

test('DELETE with filters soft-deletes and returns the rows', async () => {
  const created = await http('POST', '/contacts?select=id', {
    headers: { ...adminA, Prefer: 'return=representation' }, body: { name: 'Delete Me' } });
  const { id } = created.json[0];
  const stale = await http('DELETE', `/contacts?id=eq.${id}&version=eq.7`, { headers: adminA });
  assert.equal(stale.status, 409);
  const del = await http('DELETE', `/contacts?id=eq.${id}&version=eq.1&select=name`, {
    headers: { ...adminA, Prefer: 'return=representation' } });
  assert.equal(del.status, 200, del.text);
  assert.deepEqual(del.json.map((x) => x.name), ['Delete Me']);
  const gone = await http('GET', `/contacts?id=eq.${id}`, { headers: adminA });
  assert.deepEqual(gone.json, []);
  const db = await http('GET', `/contacts?id=eq.${id}`, { headers: adminA });
  assert.equal(db.status, 200);
});

test('upsert: resolution=merge-duplicates and ignore-duplicates', async () => {
  const created = await http('POST', '/contacts?select=id', {
    headers: { ...adminA, Prefer: 'return=representation' }, body: { name: 'Upsert Me' } });
  const { id } = created.json[0];
  const merged = await http('POST', '/contacts?select=name,version', {
    headers: { ...adminA, Prefer: 'return=representation,resolution=merge-duplicates' },
    body: [{ id, name: 'Upserted' }, { name: 'Upsert New' }] });
  assert.equal(merged.status, 201, merged.text);
  assert.deepEqual(merged.json, [{ name: 'Upserted', version: 2 }, { name: 'Upsert New', version: 1 }]);
  const ignored = await http('POST', '/contacts?select=name', {
    headers: { ...adminA, Prefer: 'return=representation, resolution=ignore-duplicates' }, body: { id, name: 'Ignored' } });
  assert.equal(ignored.status, 201);
  assert.deepEqual(ignored.json, []);
});

test('rpc: register, login, me (GET), refresh rotation and revocation, logout', async () => {
  const email = `user${Date.now()}@example.com`;
  const reg = await http('POST', '/rpc/register', { body: { email, password: 'correct horse', name: 'Reg User' } });
  assert.equal(reg.status, 200, reg.text);
  assert.equal(reg.json.token_type, 'bearer');
  const login = await http('POST', '/rpc/login', { body: { email, password: 'correct horse' } });
  assert.equal(login.status, 200);
  const bad = await http('POST', '/rpc/login', { body: { email, password: 'wrong horse' } });
  assert.equal(bad.status, 401);
  const me = await http('GET', '/rpc/me', { headers: { Authorization: `Bearer ${login.json.access_token}` } });
  assert.equal(me.status, 200, me.text);
  assert.equal(me.json.email, email);
  assert.equal(me.json.role, 'admin');
  assert.equal(me.json.password_hash, undefined);
  const r1 = await http('POST', '/rpc/refresh', { body: { refresh_token: login.json.refresh_token } });
  assert.equal(r1.status, 200);
  assert.notEqual(r1.json.refresh_token, login.json.refresh_token);
  const reuse = await http('POST', '/rpc/refresh', { body: { refresh_token: login.json.refresh_token } });
  assert.equal(reuse.status, 401, 'a rotated token is refused');
  const afterReuse = await http('POST', '/rpc/refresh', { body: { refresh_token: r1.json.refresh_token } });
  assert.equal(afterReuse.status, 401, 'reuse revoked the whole family');
  const l2 = await http('POST', '/rpc/login', { body: { email, password: 'correct horse' } });
  const out = await http('POST', '/rpc/logout', { body: { refresh_token: l2.json.refresh_token } });
  assert.equal(out.status, 204);
  const afterLogout = await http('POST', '/rpc/refresh', { body: { refresh_token: l2.json.refresh_token } });
  assert.equal(afterLogout.status, 401);
});

test('rpc: API keys stand for their user', async () => {
  const email = `keys${Date.now()}@example.com`;
  const reg = await http('POST', '/rpc/register', { body: { email, password: 'correct horse', name: 'Key User' } });
  const bearer = { Authorization: `Bearer ${reg.json.access_token}` };
  const key = await http('POST', '/rpc/create_api_key', { headers: bearer, body: { name: 'bot' } });
  assert.equal(key.status, 200, key.text);
  assert.match(key.json.key, /^vnk_/);
  const me = await http('GET', '/users?select=email', { headers: { apikey: key.json.key } });
  assert.deepEqual(me.json, [{ email }]);
  const viaBearer = await http('GET', '/rpc/me', { headers: { Authorization: `Bearer ${key.json.key}` } });
  assert.equal(viaBearer.json.email, email);
  const listed = await http('GET', '/user_api_keys?select=name,key_prefix', { headers: bearer });
  assert.deepEqual(listed.json, [{ name: 'bot', key_prefix: key.json.key.slice(0, 12) }]);
  const bad = await http('GET', '/users', { headers: { apikey: 'vnk_not-a-key' } });
  assert.equal(bad.status, 401);
});

test('rpc: GET runs read-only (a write answers 405), unknown function and arguments', async () => {
  // PostgREST's rule: GET and HEAD run in a read-only transaction, so a
  // volatile function may be read with GET but a write is refused (25006)
  const write = await http('GET', '/rpc/logout?refresh_token=vnr_nobody');
  assert.equal(write.status, 405, write.text);
  assert.equal(write.json.code, '25006');
  assert.equal((await http('POST', '/rpc/logout', { body: { refresh_token: 'vnr_nobody' } })).status, 204);
  const unknown = await http('POST', '/rpc/nope', { body: {} });
  assert.equal(unknown.status, 404);
  assert.equal(unknown.json.code, 'PGRST202');
  const badArg = await http('POST', '/rpc/login', { body: { email: 'a', nope: 1 } });
  assert.equal(badArg.status, 404);
  const missing = await http('POST', '/rpc/login', { body: { email: 'a' } });
  assert.equal(missing.status, 404);
});

test('errors: unknown column, table, operator, oversized page', async () => {
  const col = await get('/contacts?select=nope');
  assert.equal(col.status, 400);
  assert.equal(col.json.code, '42703');
  assert.deepEqual(Object.keys(col.json).sort(), ['code', 'details', 'hint', 'message']);
  assert.equal((await get('/contacts?nope=eq.1')).status, 400);
  assert.equal((await get('/contacts?order=nope.desc')).status, 400);
  const table = await get('/nope');
  assert.equal(table.status, 400);
  assert.equal(table.json.code, 'PGRST205');
  const op = await get('/contacts?name=nope.1');
  assert.equal(op.status, 400);
  assert.match(op.json.message, /unknown operator/);
  const big = await get('/contacts?limit=1001');
  assert.equal(big.status, 400);
  assert.match(big.json.message, /maximum page size/);
  const type = await get('/contacts?version=eq.abc');
  assert.equal(type.status, 400);
  assert.equal(type.json.code, '22P02');
  const viewerWrite = await http('POST', '/contacts', { headers: viewerB, body: { name: 'No' } });
  assert.equal(viewerWrite.status, 403);
  assert.equal(viewerWrite.json.code, '42501');
  const anon = await http('GET', '/contacts');
  assert.equal(anon.status, 401);
});

test('postgrest-js: select, filters, order, range and count', async () => {
  const client = new PostgrestClient(BASE, { headers: viewerB });
  const { data, error, count, status } = await client.from('contacts')
    .select('name, email', { count: 'exact' }).in('name', ['Ann', 'Bob', 'Dan']).order('name', { ascending: false }).range(0, 1);
  assert.equal(error, null);
  assert.equal(status, 206);
  assert.equal(count, 3);
  assert.deepEqual(data.map((d) => d.name), ['Dan', 'Bob']);
  const single = await client.from('contacts').select('name').eq('name', 'Eve').single();
  assert.deepEqual(single.data, { name: 'Eve' });
  const maybe = await client.from('contacts').select('name').eq('name', 'Nobody').maybeSingle();
  assert.equal(maybe.data, null);
  const or = await client.from('contacts').select('name').or('name.eq.Ann,and(language.eq.pt,email.is.null)').order('name');
  assert.deepEqual(or.data.map((d) => d.name), ['Ann', 'Carla']);
  const text = await client.from('contacts').select('name').textSearch('name', 'bob', { config: 'simple', type: 'plain' });
  assert.deepEqual(text.data, [{ name: 'Bob' }]);
  const embedded = await client.from('contacts').select('name, projects(name)').eq('name', 'Ann');
  assert.deepEqual(embedded.data, [{ name: 'Ann', projects: { name: 'tr Inc.' } }]);
  const csv = await client.from('contacts').select('name').eq('name', 'Ann').csv();
  assert.equal(csv.data, 'name\nAnn');
  const err = await client.from('contacts').select('nope');
  assert.equal(err.status, 400);
  assert.equal(err.error.code, '42703');
});

test('postgrest-js: insert, update with version, upsert, delete, rpc', async () => {
  const client = new PostgrestClient(BASE, { headers: adminA });
  const ins = await client.from('contacts').insert({ name: 'JS One', tags: ['js'] }).select('id, name, version').single();
  assert.equal(ins.error, null, JSON.stringify(ins.error));
  const { id } = ins.data;
  const upd = await client.from('contacts').update({ name: 'JS Two', version: 1 }).eq('id', id).select('name, version');
  assert.deepEqual(upd.data, [{ name: 'JS Two', version: 2 }]);
  const stale = await client.from('contacts').update({ name: 'JS Stale', version: 1 }).eq('id', id);
  assert.equal(stale.status, 409);
  assert.equal(stale.error.code, 'VN001');
  const up = await client.from('contacts').upsert({ id, name: 'JS Three' }).select('name');
  assert.deepEqual(up.data, [{ name: 'JS Three' }]);
  const del = await client.from('contacts').delete().eq('id', id).select('name');
  assert.deepEqual(del.data, [{ name: 'JS Three' }]);
  const anon = new PostgrestClient(BASE);
  const rpc = await anon.rpc('login', { email: 'nobody@example.com', password: 'whatever1' });
  assert.equal(rpc.status, 401);
  assert.equal(rpc.error.code, '28P01');
});

test('access log: one line per request, no token in it', async () => {
  await get('/contacts?select=name&limit=1');
  // the log is written by a thread of its own, every 100 ms: wait for the line
  for (let i = 0; i < 100 && !/GET \/contacts 200 [0-9.]+ms tenant=tr/.test(server.log.join('')); i++) {
    await new Promise((r) => setTimeout(r, 50));
  }
  const log = server.log.join('');
  assert.match(log, /GET \/contacts 200 [0-9.]+ms tenant=tr/);
  assert.ok(!log.includes(token('ventros_viewer', 'tr').split('.')[2]));
  assert.ok(!log.includes('eyJ'));
});

test('SIGHUP reloads the schema cache: a new api function is served', async () => {
  const c = await db();
  try {
    await c.query("CREATE FUNCTION api.http_test_ping(word text DEFAULT 'pong') RETURNS text LANGUAGE sql STABLE AS $$ SELECT word $$");
    await c.query('GRANT EXECUTE ON FUNCTION api.http_test_ping(text) TO ventros_anon');
    assert.equal((await http('GET', '/rpc/http_test_ping')).status, 404, 'unknown before the reload');
    server.child.kill('SIGHUP');
    let r;
    for (let i = 0; i < 100; i++) {
      r = await http('GET', '/rpc/http_test_ping?word=hello');
      if (r.status === 200) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.equal(r.status, 200);
    assert.equal(r.json, 'hello');
  } finally {
    await c.query('DROP FUNCTION IF EXISTS api.http_test_ping(text)');
    await c.end();
  }
});

test('JSON paths in select, filters and order', async () => {
  const p = await http('GET', '/projects?select=id,version&order=created_at&limit=1', { headers: { ...adminA, Accept: 'application/vnd.pgrst.object+json' } });
  const set = await http('PATCH', `/projects?id=eq.${p.json.id}`, {
    headers: adminA, body: { configuration: { plan: 'pro', limits: { seats: 5 }, tags: ['a', 'b'] }, version: p.json.version } });
  assert.equal(set.status, 204, set.text);
  const r = await http('GET', '/projects?select=configuration->>plan,seats:configuration->limits->>seats,first:configuration->tags->0,configuration->limits'
    + '&configuration->>plan=eq.pro&configuration->limits->seats=gt.4&order=configuration->>plan.desc', { headers: adminA });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, [{ plan: 'pro', seats: '5', first: 'a', limits: { seats: 5 } }]);
  const cs = await http('GET', `/projects?select=name&configuration->limits=cs.${encodeURIComponent('{"seats":5}')}`, { headers: adminA });
  assert.equal(cs.json.length, 1);
  const none = await http('GET', '/projects?select=name&or=(configuration->>plan.eq.free,configuration->>plan.eq.enterprise)', { headers: adminA });
  assert.deepEqual(none.json, []);
  assert.equal((await http('GET', '/projects?select=name->>x', { headers: adminA })).status, 400, 'paths need json');
  assert.equal((await http('GET', '/projects?select=configuration->>a->b', { headers: adminA })).status, 400, '->> ends a path');
  assert.equal((await http('GET', '/projects?select=configuration->', { headers: adminA })).status, 400);
});

test('embedded resources: filters, logic, order and limit; nested embedding', async () => {
  const r = await get('/projects?select=name,people:contacts(name)&people.language=eq.pt&people.order=name.desc');
  assert.deepEqual(r.json, [{ name: 'tr Inc.', people: [{ name: 'Carla' }, { name: 'Bob' }] }]);
  const l = await get('/projects?select=name,contacts(name)&contacts.or=(name.eq.Ann,name.eq.Eve,name.eq.Dan)&contacts.order=name&contacts.limit=2&contacts.offset=1');
  assert.deepEqual(l.json[0].contacts, [{ name: 'Dan' }, { name: 'Eve' }]);
  const nested = await get('/contacts?select=name,projects(name,contacts(name))&name=eq.Ann&projects.contacts.name=eq.Bob');
  assert.deepEqual(nested.json, [{ name: 'Ann', projects: { name: 'tr Inc.', contacts: [{ name: 'Bob' }] } }]);
  const orphan = await get('/contacts?select=name&projects.name=eq.x');
  assert.equal(orphan.status, 400);
  assert.equal(orphan.json.code, 'PGRST108');
  const client = new PostgrestClient(BASE, { headers: viewerB });
  const js = await client.from('projects').select('name, contacts(name)').eq('contacts.language', 'en')
    .order('name', { referencedTable: 'contacts', ascending: false }).limit(1, { referencedTable: 'contacts' });
  assert.equal(js.error, null, JSON.stringify(js.error));
  assert.deepEqual(js.data, [{ name: 'tr Inc.', contacts: [{ name: 'Dan' }] }]);
});

test('CORS: preflight and exposed headers', async () => {
  const pre = await http('OPTIONS', '/contacts', { headers: { Origin: 'https://app.example', 'Access-Control-Request-Method': 'PATCH' } });
  assert.equal(pre.status, 200);
  assert.equal(pre.headers.get('access-control-allow-origin'), '*');
  assert.match(pre.headers.get('access-control-allow-methods'), /PATCH/);
  assert.match(pre.headers.get('access-control-allow-headers'), /Authorization/);
  const r = await get('/contacts?select=name&limit=1');
  assert.equal(r.headers.get('access-control-allow-origin'), '*');
  assert.match(r.headers.get('access-control-expose-headers'), /Content-Range/);
});

test('embedding with !inner keeps only parents with a matching embedded row', async () => {
  const hit = await get('/projects?select=name,contacts!inner(name)&contacts.name=eq.Ann');
  assert.deepEqual(hit.json, [{ name: 'tr Inc.', contacts: [{ name: 'Ann' }] }]);
  const miss = await http('GET', '/projects?select=name,contacts!inner(name)&contacts.name=eq.Nobody', {
    headers: { ...viewerB, Prefer: 'count=exact' } });
  assert.deepEqual(miss.json, []);
  assert.equal(miss.headers.get('content-range'), '*/0');
  const left = await get('/projects?select=name,contacts!left(name)&contacts.name=eq.Nobody');
  assert.deepEqual(left.json, [{ name: 'tr Inc.', contacts: [] }]);
  const toOne = await get('/contacts?select=name,projects!inner(name)&projects.name=eq.nope');
  assert.deepEqual(toOne.json, []);
  assert.equal((await get('/contacts?select=name,projects!sideways(name)')).status, 400);
});

test('rpc returning rows of a view: select, filters, order, paging, embedding', async () => {
  const c = await db();
  try {
    await c.query(`CREATE FUNCTION api.http_test_by_language(lang text) RETURNS SETOF api.contacts
      LANGUAGE sql STABLE AS $$ SELECT * FROM api.contacts WHERE language = lang $$`);
    await c.query('GRANT EXECUTE ON FUNCTION api.http_test_by_language(text) TO ventros_viewer');
    server.child.kill('SIGHUP');
    let r;
    for (let i = 0; i < 100; i++) {
      r = await get('/rpc/http_test_by_language?lang=pt&select=name&order=name.desc');
      if (r.status === 200) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.deepEqual(r.json, [{ name: 'Carla' }, { name: 'Bob' }]);
    const f = await get('/rpc/http_test_by_language?lang=en&select=name,projects(name)&name=neq.Ann&limit=5');
    assert.deepEqual(f.json, [{ name: 'Dan', projects: { name: 'tr Inc.' } }]);
    const post = await http('POST', '/rpc/http_test_by_language?select=name&email=is.null', { headers: viewerB, body: { lang: 'pt' } });
    assert.deepEqual(post.json, [{ name: 'Carla' }]);
    const paged = await http('GET', '/rpc/http_test_by_language?lang=en&select=name&order=name', {
      headers: { ...viewerB, Range: '1-1' } });
    assert.deepEqual(paged.json, [{ name: 'Dan' }]);
    assert.equal(paged.headers.get('content-range'), '1-1/*');
    assert.equal((await get('/rpc/http_test_by_language?lang=en&nope=eq.1')).status, 400);
  } finally {
    await c.query('DROP FUNCTION IF EXISTS api.http_test_by_language(text)');
    await c.end();
  }
});

test('rpc register with a token: admins add users to their tenant, agents cannot', async () => {
  const stamp = Date.now();
  const added = await http('POST', '/rpc/register', { headers: adminA, body: { email: `added${stamp}@ta.example`, password: 'correct horse', name: 'Added' } });
  assert.equal(added.status, 200, added.text);
  const claims = JSON.parse(Buffer.from(added.json.access_token.split('.')[1], 'base64url'));
  assert.equal(claims.tenant_id, 'ta');
  assert.equal(claims.role, 'ventros_agent');
  const agent = await http('POST', '/rpc/register', { headers: auth('ventros_agent', 'ta'), body: { email: `no${stamp}@ta.example`, password: 'correct horse', name: 'No' } });
  assert.equal(agent.status, 403, agent.text);
  assert.equal(agent.json.code, '42501');
  const forged = await http('POST', '/rpc/create_api_key', { headers: auth('ventros_viewer', 'ta'), body: { name: 'k' } });
  assert.equal(forged.status, 403);
});

test('operator modifiers: eq(any), like(any), ilike(all), not. with them', async () => {
  assert.deepEqual(names(await get(`/contacts?select=name&order=name&name=eq(any).${encodeURIComponent('{Ann,Eve}')}`)), ['Ann', 'Eve']);
  assert.deepEqual(names(await get(`/contacts?select=name&order=name&name=like(any).${encodeURIComponent('{A*,*e}')}`)), ['Ann', 'Eve']);
  assert.deepEqual(names(await get(`/contacts?select=name&order=name&name=ilike(all).${encodeURIComponent('{*a*,*n*}')}`)), ['Ann', 'Dan']);
  assert.deepEqual(names(await get(`/contacts?select=name&order=name&name=not.eq(any).${encodeURIComponent('{Ann,Eve}')}`)), ['Bob', 'Carla', 'Dan']);
  assert.equal((await get(`/contacts?name=cs(any).${encodeURIComponent('{a}')}`)).status, 400);
  assert.equal((await get(`/contacts?version=eq(any).${encodeURIComponent('{1,x}')}`)).status, 400);
});

test('concurrent PATCHes of one version: exactly one wins, the others get 409', async () => {
  const created = await http('POST', '/contacts?select=id', {
    headers: { ...adminA, Prefer: 'return=representation' }, body: { name: 'Race' } });
  const { id } = created.json[0];
  const results = await Promise.all(Array.from({ length: 8 }, (_, i) =>
    http('PATCH', `/contacts?id=eq.${id}`, { headers: adminA, body: { name: `Racer ${i}`, version: 1 } })));
  const statuses = results.map((r) => r.status).sort();
  assert.deepEqual(statuses, [204, 409, 409, 409, 409, 409, 409, 409]);
  const row = await http('GET', `/contacts?id=eq.${id}&select=version`, { headers: adminA });
  assert.deepEqual(row.json, [{ version: 2 }]);
});

test('Prefer: params=single-object and Preference-Applied', async () => {
  const c = await db();
  try {
    await c.query(`CREATE FUNCTION api.http_test_echo(payload jsonb) RETURNS jsonb LANGUAGE sql STABLE
      AS $$ SELECT jsonb_build_object('got', payload) $$`);
    await c.query('GRANT EXECUTE ON FUNCTION api.http_test_echo(jsonb) TO ventros_anon');
    server.child.kill('SIGHUP');
    let r;
    for (let i = 0; i < 100; i++) {
      r = await http('POST', '/rpc/http_test_echo', { headers: { Prefer: 'params=single-object' }, body: { a: 1, b: [2] } });
      if (r.status === 200) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.deepEqual(r.json, { got: { a: 1, b: [2] } });
    assert.equal(r.headers.get('preference-applied'), 'params=single-object');
    const wrong = await http('POST', '/rpc/login', { headers: { Prefer: 'params=single-object' }, body: { email: 'x' } });
    assert.equal(wrong.status, 404);
  } finally {
    await c.query('DROP FUNCTION IF EXISTS api.http_test_echo(jsonb)');
    await c.end();
  }
  const counted = await http('GET', '/contacts?select=name&limit=1', { headers: { ...viewerB, Prefer: 'count=exact' } });
  assert.equal(counted.headers.get('preference-applied'), 'count=exact');
  const posted = await http('POST', '/contacts', { headers: { ...adminA, Prefer: 'return=representation, resolution=merge-duplicates' }, body: { name: 'Pref' } });
  assert.equal(posted.headers.get('preference-applied'), 'resolution=merge-duplicates, return=representation');
});

test('Accept: a media type we cannot produce is 406', async () => {
  const r = await http('GET', '/contacts?select=name', { headers: { ...viewerB, Accept: 'application/xml' } });
  assert.equal(r.status, 406);
  assert.equal(r.json.code, 'PGRST107');
  const browserish = await http('GET', '/contacts?select=name&limit=1', { headers: { ...viewerB, Accept: 'text/html,application/xhtml+xml,*/*;q=0.8' } });
  assert.equal(browserish.status, 200);
});

test('Prefer: max-affected rolls back a PATCH or DELETE that would touch more rows', async () => {
  const tag = `ma${Date.now()}`;
  await http('POST', '/contacts', { headers: adminA, body: [{ name: 'MA 1', tags: [tag] }, { name: 'MA 2', tags: [tag] }, { name: 'MA 3', tags: [tag] }] });
  const filter = `/contacts?tags=cs.${encodeURIComponent(`{${tag}}`)}`;
  const tooMany = await http('DELETE', filter, { headers: { ...adminA, Prefer: 'handling=strict, max-affected=2' } });
  assert.equal(tooMany.status, 400, tooMany.text);
  assert.match(tooMany.json.message, /affects 3 rows, more than max-affected=2/);
  assert.equal((await http('GET', `${filter}&select=name`, { headers: adminA })).json.length, 3, 'nothing was deleted');
  const patch = await http('PATCH', `${filter}&version=eq.1`, { headers: { ...adminA, Prefer: 'max-affected=5' }, body: { language: 'pt' } });
  assert.equal(patch.status, 204, patch.text);
  assert.equal(patch.headers.get('preference-applied'), 'max-affected=5');
  const ok = await http('DELETE', `${filter}`, { headers: { ...adminA, Prefer: 'max-affected=3' } });
  assert.equal(ok.status, 204);
  assert.equal((await http('GET', `${filter}&select=name`, { headers: adminA })).json.length, 0);
});
