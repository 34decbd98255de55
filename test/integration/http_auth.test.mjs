// ventros-http: tokens that must be refused (401), and tenant isolation over
// HTTP for two tenants x every role x every exposed view and function.  The
// views and functions are read from the catalog, so an aggregate or function
// added to schema api later is covered without touching this file.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, http, sign, token, db, TENANTS, ROLES, AUDIENCE, SECRET, b64url } from './http_helpers.mjs';

let server;
let views = [];
let functions = [];
const rowsOf = {};	// tenant -> [{view, id, version}]
before(async () => {
  server = await startServer();
  const c = await db();
  try {
    views = (await c.query(`SELECT c.relname,
        EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id') AS has_tenant
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'api' AND c.relkind = 'v' ORDER BY 1`)).rows;
    functions = (await c.query(`SELECT p.proname, coalesce(p.proargnames[1:p.pronargs], '{}') AS args
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'api' ORDER BY 1`)).rows;
    // one row of every aggregate in each tenant, from the engine's samples
    // (test/fixtures/samples), and a user with a known API key
    const samples = (await c.query('SELECT aggregate, create_sql, role FROM ventros_test.aggregate_samples ORDER BY 1')).rows;
    for (const t of TENANTS) {
      await c.query('BEGIN');
      await c.query("SELECT set_config('ventros.tenant', $1, true)", [t]);
      await c.query('SET LOCAL ROLE ventros_admin');
      for (const sample of samples) {
        await c.query(`SET LOCAL ROLE ${sample.role}`);
        await c.query(sample.create_sql);
      }
      await c.query('SET LOCAL ROLE ventros_admin');
      const u = await c.query(`SELECT id FROM ventros.create_user($1, $2, 'x-password') u
        WHERE NOT EXISTS (SELECT 1 FROM ventros.users WHERE email = $2)`, [`User ${t}`, `user@${t}.example`]);
      if (u.rowCount) {
        // a key the test knows, so written as the owner: api.create_api_key draws
        // keys at random, and a tenant role's direct insert is refused
        await c.query('RESET ROLE');
        await c.query(`INSERT INTO ventros.user_api_keys (user_id, name, key_hash, key_prefix)
          VALUES ($1, 'k', ventros.token_hash('vnk_' || $2), 'vnk_')`, [u.rows[0].id, t]);
      }
      await c.query('COMMIT');
    }
    for (const t of TENANTS) {
      rowsOf[t] = [];
      for (const v of views.filter((x) => x.has_tenant)) {
        const r = await c.query(`SELECT id, version FROM ventros.${v.relname} WHERE tenant_id = $1 AND deleted_at IS NULL`, [t]);
        for (const row of r.rows) rowsOf[t].push({ view: v.relname, id: row.id, version: row.version });
      }
    }
  } finally {
    await c.end();
  }
  assert.ok(views.length >= 5, 'views are exposed');
  for (const t of TENANTS) {
    for (const v of views.filter((x) => x.has_tenant)) {
      assert.ok(rowsOf[t].some((r) => r.view === v.relname), `tenant ${t} has a row in ${v.relname}`);
    }
  }
});
after(async () => { await server.stop(); });

const now = () => Math.floor(Date.now() / 1000);
const good = () => ({ role: 'ventros_admin', tenant_id: 'ta', aud: AUDIENCE, exp: now() + 600 });

const refusals = [
  ['expired', () => sign({ ...good(), exp: now() - 10 })],
  ['without exp', () => { const c = good(); delete c.exp; return sign(c); }],
  ['not valid yet (nbf)', () => sign({ ...good(), nbf: now() + 600 })],
  ['unsigned', () => sign(good()).split('.').slice(0, 2).join('.') + '.'],
  ['signed with another secret', () => sign(good(), { secret: 'another-secret-' + 'y'.repeat(40) })],
  ['alg none', () => `${b64url(JSON.stringify({ alg: 'none', typ: 'JWT' }))}.${b64url(JSON.stringify(good()))}.`],
  ['alg none with a signature', () => { const t = sign(good()).split('.'); return `${b64url(JSON.stringify({ alg: 'none' }))}.${t[1]}.${t[2]}`; }],
  ['alg HS512 header', () => sign(good(), { header: { alg: 'HS512', typ: 'JWT' } })],
  ['alg RS256 header signed with the secret', () => sign(good(), { header: { alg: 'RS256', typ: 'JWT' } })],
  ['wrong audience', () => sign({ ...good(), aud: 'someone-else' })],
  ['no audience', () => { const c = good(); delete c.aud; return sign(c); }],
  ['role escalation to postgres', () => sign({ ...good(), role: 'postgres' })],
  ['role escalation to the authenticator', () => sign({ ...good(), role: 'ventros_authenticator' })],
  ['role escalation to platform admin', () => sign({ ...good(), role: 'ventros_platform_admin' })],
  ['malformed tenant_id', () => sign({ ...good(), tenant_id: "ta' OR '1'='1" })],
  ['payload tampered after signing', () => { const t = sign({ ...good(), role: 'ventros_viewer' }).split('.'); return `${t[0]}.${b64url(JSON.stringify(good()))}.${t[2]}`; }],
  ['garbage', () => 'not-a-token'],
  ['four parts', () => sign(good()) + '.x'],
];
for (const [name, make] of refusals) {
  test(`token refused: ${name}`, async () => {
    const r = await http('GET', '/contacts?select=id', { headers: { Authorization: `Bearer ${make()}` } });
    assert.equal(r.status, 401, r.text);
    assert.equal(r.json.code, 'PGRST301');
    assert.match(r.headers.get('www-authenticate'), /^Bearer/);
  });
}

test('a good token is accepted (the refusals above are not vacuous)', async () => {
  const r = await http('GET', '/contacts?select=id&limit=1', { headers: { Authorization: `Bearer ${sign(good())}` } });
  assert.equal(r.status, 200, r.text);
  assert.equal(SECRET.length >= 32, true);
});

test('Authorization other than Bearer is refused', async () => {
  const r = await http('GET', '/contacts', { headers: { Authorization: 'Basic YWRtaW46YWRtaW4=' } });
  assert.equal(r.status, 401);
});

// Ids are unique per tenant only (some are fixed, like a tenant's system
// agent): an id of the other tenant leaks only if this tenant has no such row.
function leaks(text, other) {
  const self = TENANTS.find((t) => t !== other);
  const own = new Set(rowsOf[self].map((r) => `${r.view} ${r.id}`));
  if (text.includes(`"tenant_id":"${other}"`) || text.includes(`"tenant_id" : "${other}"`)) return 'tenant_id';
  for (const row of rowsOf[other]) {
    if (text.includes(row.id) && !own.has(`${row.view} ${row.id}`) && !rowsOf[self].some((r) => r.id === row.id)) {
      return `${row.view} ${row.id}`;
    }
  }
  return null;
}

// Every tenant's rows of every view: "view/tenant/id" -> its version and
// deleted mark (what a write changes) and the transaction that wrote it.
async function snapshot() {
  const c = await db();
  try {
    const rows = new Map();
    for (const v of views.filter((x) => x.has_tenant)) {
      const r = await c.query(`SELECT tenant_id, id, version, deleted_at IS NOT NULL AS deleted, xmin::text AS x FROM ventros.${v.relname}`);
      for (const row of r.rows) rows.set(`${v.relname}/${row.tenant_id}/${row.id}`, { v: `${row.version}/${row.deleted}`, x: row.x });
    }
    const seq = (await c.query('SELECT coalesce(max(seq), 0)::text AS s FROM ventros.outbox')).rows[0].s;
    return { rows, seq };
  } finally {
    await c.end();
  }
}

// What the requests under test wrote since before: the events they emitted
// (every change of an aggregate row writes one in its transaction, with the
// request's JWT subject as its actor) and the rows removed.  Not the rows
// whose version moved: the scheduled ticks and the executor keep working
// meanwhile (closing due message groups, advancing campaigns), and their
// writes are theirs.
async function changedSince(before, subject) {
  const after = await snapshot();
  const c = await db();
  let own;
  try {
    own = (await c.query(`SELECT coalesce(array_agg(event_type || ' ' || aggregate_id ORDER BY seq), '{}') AS e
                            FROM ventros.outbox WHERE seq > $1::bigint AND actor = $2`, [before.seq, subject])).rows[0].e;
  } finally {
    await c.end();
  }
  const removed = [...before.rows.keys()].filter((k) => !after.rows.has(k));
  return [...own, ...removed.map((k) => `${k} removed`)];
}

for (const tenant of TENANTS) {
  const other = TENANTS.find((t) => t !== tenant);
  for (const role of ROLES) {
    const headers = { Authorization: `Bearer ${token(role, tenant)}` };
    test(`isolation: ${role} of ${tenant} reads, writes and deletes nothing of ${other} in any view`, async () => {
      // the requests of this test act as a subject of their own
      const subject = `http-auth-${role}-${tenant}`;
      const headers = { Authorization: `Bearer ${token(role, tenant, { sub: subject })}` };
      const before = await snapshot();
      for (const v of views) {
        const read = await http('GET', `/${v.relname}`, { headers });
        assert.ok([200, 401, 403].includes(read.status), `${v.relname}: ${read.status} ${read.text}`);
        assert.equal(leaks(read.text, other), null, `GET /${v.relname} leaked`);
        if (read.status === 200 && v.has_tenant) {
          // own rows, or the platform's shared ones (tenant 'ventros': built-in channel types)
          for (const row of read.json) assert.ok(row.tenant_id === tenant || row.tenant_id === 'ventros', `${v.relname}: ${row.tenant_id}`);
          assert.ok(read.json.length > 0 || role === 'ventros_anon', `${role} sees its own ${v.relname}`);
        }
        if (!v.has_tenant) continue;
        // probes by id aim at rows only the other tenant has (some ids, like a
        // tenant's system agent, exist in every tenant)
        const ownIds = new Set(rowsOf[tenant].map((r) => r.id));
        for (const row of rowsOf[other].filter((r) => r.view === v.relname && !ownIds.has(r.id))) {
          const one = await http('GET', `/${v.relname}?id=eq.${row.id}`, { headers });
          assert.ok(one.status !== 200 || one.json.length === 0, `GET other ${v.relname} by id`);
          const patch = await http('PATCH', `/${v.relname}?id=eq.${row.id}`, {
            headers: { ...headers, Prefer: 'return=representation' }, body: { version: row.version } });
          assert.ok(patch.status >= 400 || patch.json.length === 0, `PATCH other ${v.relname}: ${patch.text}`);
          assert.equal(leaks(patch.text, other), null);
          const del = await http('DELETE', `/${v.relname}?id=eq.${row.id}`, { headers: { ...headers, Prefer: 'return=representation' } });
          assert.ok(del.status >= 400 || del.json.length === 0, `DELETE other ${v.relname}: ${del.text}`);
          const upsert = await http('POST', `/${v.relname}`, {
            headers: { ...headers, Prefer: 'resolution=merge-duplicates' }, body: { id: row.id, tenant_id: other } });
          assert.ok(upsert.status >= 400, `upsert into other ${v.relname}: ${upsert.status}`);
        }
        const post = await http('POST', `/${v.relname}`, { headers, body: { tenant_id: other } });
        assert.ok(post.status >= 400, `POST into other tenant ${v.relname}: ${post.status}`);
      }
      assert.deepEqual(await changedSince(before, subject), [], 'no row of any tenant changed');
    });

    test(`isolation: ${role} of ${tenant} calls every function without reaching ${other}`, async () => {
      const samples = { email: `user@${other}.example`, password: 'x-password', name: 'Probe', refresh_token: 'vnr_probe',
        tenant_name: other, expires_at: null };
      for (const f of functions) {
        const body = Object.fromEntries(f.args.map((a) => [a, a in samples ? samples[a] : null]));
        const r = await http('POST', `/rpc/${f.proname}`, { headers, body });
        assert.ok(r.status < 500, `${f.proname}: ${r.status} ${r.text}`);
        assert.equal(leaks(r.text, other), null, `rpc ${f.proname} leaked`);
        if (f.proname === 'login' || f.proname === 'register') {
          // the other tenant's user with its password logs in as itself: the
          // grant names its own tenant, never the caller's
          if (r.status === 200) {
            const claims = JSON.parse(Buffer.from(r.json.access_token.split('.')[1], 'base64url'));
            assert.equal(claims.tenant_id, other);
            const as = await http('GET', '/contacts?select=tenant_id', { headers: { Authorization: `Bearer ${r.json.access_token}` } });
            assert.ok(as.json.every((x) => x.tenant_id === other));
          }
        }
      }
      const key = await http('GET', '/users?select=tenant_id', { headers: { apikey: `vnk_${other}` } });
      assert.equal(key.status, 200);
      assert.ok(key.json.every((x) => x.tenant_id === other), 'an API key acts for its own tenant only');
    });
  }
}
