// The tenancy matrix over HTTP, generated from the catalog: every api view
// and every /rpc function x every role (viewer, agent, admin with a token of
// tenant hm_b; anonymous with no token) x read, update, delete, insert, rpc,
// against tenant hm_a's rows.  The SQL side is test/pgtap/600_tenancy_matrix.sql
// and 601_tenancy_functions.sql.
//
// Both tenants get one row of every aggregate and of every other tenant table
// (ventros_test.seed_tenant, test/fixtures/60_tenancy_matrix.sql).  For each
// view and role:
//   GET    ?tenant_id=eq.hm_a answers [] (or 401/403); an unfiltered GET
//          answers only hm_b's rows (and the shared system rows of tenant
//          "ventros");
//   PATCH  ?tenant_id=eq.hm_a with a column of hm_a's row and its version,
//          and DELETE ?tenant_id=eq.hm_a, change no row of hm_a;
//   PATCH and DELETE with no filter, by a token of tenant hm_none (which has
//          no row at all), change no row of hm_a either;
//   POST   a copy of hm_a's row (tenant_id included) is refused: 401 or 403.
// "Changed" is decided in PostgreSQL, by (ctid, xmin) of hm_a's rows of the
// view's table, read before and after each request.  Every /rpc function is
// called with hm_a's data (its user's email, its ids) and must answer without
// hm_a's data and change none of hm_a's rows.  The counts are printed.
//
// Every write of the front carries RETURNING (at least the id, for any
// Prefer: return: returning() in src/http/query.c), so
// PostgreSQL applies the SELECT policy to written rows too: over HTTP a
// widened SELECT policy shows here, while an INSERT, UPDATE or DELETE policy
// widened alone is reachable only from a SQL login, where
// test/pgtap/600_tenancy_matrix.sql and the lints of 610_lints.sql catch it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, http, token, db } from './http_helpers.mjs';

const A = 'hm_a';
const B = 'hm_b';
const NONE = 'hm_none';
const ROLES = ['ventros_viewer', 'ventros_agent', 'ventros_admin', 'ventros_anon'];
const SHARED = 'ventros';	// tenant of the system catalog rows every tenant may read

let server;
let pg;
let cases = [];			// { view, base, role, row, update }
let rpcs = [];			// { name, args: [{name, type, hasDefault}] }
const counts = { requests: 0, refused: 0, empty: 0, rowsOfA: 0, writesOfA: 0 };

function headersFor(role, tenant) {
  if (role === 'ventros_anon') return {};
  return { Authorization: `Bearer ${token(role, tenant)}` };
}

async function snapshot(base) {
  const r = await pg.query(
    `SELECT md5(coalesce(string_agg(ctid::text || xmin::text, ',' ORDER BY ctid), '')) AS s FROM ${base} WHERE tenant_id = $1`, [A]);
  return r.rows[0].s;
}

// The cases: per api view and role, a row of hm_a as the role could POST it
// (the columns it may insert, not deleted, in an initial state) and a column
// it may update with hm_a's value of it.
const CASES_SQL = `
WITH views AS (
    SELECT c.oid::regclass AS view, c.relname::text AS name,
           (SELECT format('%I.%I', u.table_schema, u.table_name)::regclass
              FROM information_schema.view_table_usage u
             WHERE u.view_schema = 'api' AND u.view_name = c.relname LIMIT 1) AS base
    FROM pg_class c WHERE c.relnamespace = 'api'::regnamespace AND c.relkind = 'v'
)
SELECT v.name, v.base::text AS base, r.role_name AS role,
       ventros_test.exec_capture(format(
           'SELECT to_jsonb(x) FROM %s x WHERE tenant_id = %L AND deleted_at IS NULL
             ORDER BY id::text IN (SELECT result FROM ventros_test.matrix_seed WHERE tenant = %L) DESC LIMIT 1',
           v.view, $1::text, $1::text))::jsonb AS row,
       (SELECT array_agg(a.attname::text) FROM pg_attribute a
         WHERE a.attrelid = v.view AND a.attnum > 0 AND NOT a.attisdropped
           AND NOT EXISTS (SELECT 1 FROM pg_attribute b WHERE b.attrelid = v.base AND b.attname = a.attname AND b.attgenerated <> '')
           AND (a.attname = 'tenant_id' OR has_column_privilege(r.role_name, v.view, a.attnum, 'INSERT'))) AS insertable,
       (SELECT a.attname::text FROM pg_attribute a
         WHERE a.attrelid = v.view AND a.attnum > 0 AND NOT a.attisdropped
           AND a.attname NOT IN ('tenant_id', 'id', 'version', 'created_at', 'updated_at', 'deleted_at')
         ORDER BY has_column_privilege(r.role_name, v.view, a.attnum, 'UPDATE') DESC, a.attnum LIMIT 1) AS update_column,
       (SELECT to_state FROM ventros.aggregates g JOIN ventros.aggregate_transitions t ON t.aggregate = g.aggregate
         WHERE g.table_name = v.base AND t.from_state IS NULL ORDER BY to_state LIMIT 1) AS initial_state,
       (SELECT state_column::text FROM ventros.aggregates g WHERE g.table_name = v.base) AS state_column
FROM views v CROSS JOIN unnest($2::text[]) AS r(role_name)
ORDER BY v.name, r.role_name`;

before(async () => {
  server = await startServer();
  pg = await db();
  const exists = await pg.query('SELECT 1 FROM ventros.projects WHERE tenant_id = $1', [A]);
  if (exists.rowCount === 0) {
    await pg.query('BEGIN');
    await pg.query(`CREATE TABLE IF NOT EXISTS ventros_test.matrix_seed (tenant text, aggregate text, result text)`);
    for (const t of [A, B]) {
      await pg.query('SELECT ventros.create_tenant($1, $2)', [t, `Matrix ${t}`]);
      await pg.query('INSERT INTO ventros_test.matrix_seed SELECT $1, aggregate, result FROM ventros_test.seed_tenant($1)', [t]);
    }
    // The seed's events fan out to the sample webhook subscriptions; the
    // dispatcher finishing those deliveries would update the subscriptions
    // while the test watches them.  Nobody delivers them: they end here.
    await pg.query("UPDATE ventros.http_requests SET status = 'dead' WHERE tenant_id = ANY ($1) AND status = 'pending'", [[A, B]]);
    await pg.query('COMMIT');
  }
  const bad = await pg.query(`SELECT * FROM ventros_test.matrix_seed WHERE result IS NULL OR result LIKE 'ERROR%'`);
  assert.deepEqual(bad.rows, [], 'every sample seeds both tenants');
  await pg.query("SET ventros.include_deleted = on");
  cases = (await pg.query(CASES_SQL, [A, ROLES])).rows;
  rpcs = (await pg.query(`
    SELECT p.proname::text AS name,
           (SELECT json_agg(json_build_object('name', n, 'type', format_type(t, NULL), 'optional', i > p.pronargs - p.pronargdefaults) ORDER BY i)
              FROM unnest(p.proargnames[1:p.pronargs], p.proargtypes::oid[]) WITH ORDINALITY AS x(n, t, i)) AS args
    FROM pg_proc p WHERE p.pronamespace = 'api'::regnamespace ORDER BY 1`)).rows;
});

after(async () => {
  const views = new Set(cases.map((c) => c.name)).size;
  console.log(`# tenancy matrix over HTTP: ${views} api views x ${ROLES.length} roles and ${rpcs.length} rpc functions: ` +
    `${counts.requests} requests, ${counts.refused} refused (401/403/400), ${counts.empty} answered with no row; ` +
    `rows of ${A} read ${counts.rowsOfA}, rows of ${A} written ${counts.writesOfA}`);
  await pg?.end();
  await server?.stop();
});

function tally(r, rowsOfA = 0) {
  counts.requests++;
  if ([400, 401, 403, 404, 405].includes(r.status)) counts.refused++;
  else if (r.status === 204 || (Array.isArray(r.json) && r.json.length === 0)) counts.empty++;
  counts.rowsOfA += rowsOfA;
}

function refusedOrEmpty(r) {
  return [401, 403].includes(r.status) || r.status === 204 || (r.status === 200 && Array.isArray(r.json) && r.json.length === 0);
}

test('the matrix covers every api view and every rpc function', () => {
  assert.ok(new Set(cases.map((c) => c.name)).size >= 56, `${new Set(cases.map((c) => c.name)).size} views`);
  assert.ok(rpcs.length >= 6, `${rpcs.length} rpc functions`);
  for (const c of cases) assert.ok(c.row, `${c.name}: ${A} has a row to attack`);
});

test('reads: no role of another tenant, and no anonymous client, sees a row of the victim tenant', async () => {
  const failures = [];
  for (const c of cases) {
    const h = headersFor(c.role, B);
    const filtered = await http('GET', `/${c.name}?tenant_id=eq.${A}`, { headers: h });
    const seenA = Array.isArray(filtered.json) ? filtered.json.length : 0;
    tally(filtered, seenA);
    if (!refusedOrEmpty(filtered)) failures.push(`${c.name} as ${c.role}: GET ?tenant_id=eq.${A} -> ${filtered.status} ${filtered.text.slice(0, 160)}`);
    const all = await http('GET', `/${c.name}?select=tenant_id`, { headers: h });
    const foreign = Array.isArray(all.json) ? all.json.filter((x) => x.tenant_id !== B && x.tenant_id !== SHARED).length : 0;
    tally(all, foreign);
    if (![200, 401, 403].includes(all.status) || foreign > 0) {
      failures.push(`${c.name} as ${c.role}: GET -> ${all.status}, ${foreign} rows of other tenants`);
    }
    if (c.role === 'ventros_anon' && all.status === 200 && all.json.length > 0) {
      failures.push(`${c.name}: an anonymous GET answered ${all.json.length} rows`);
    }
  }
  assert.deepEqual(failures, []);
});

test('updates and deletes: targeted at the victim, or blind from an empty tenant, change none of its rows', async () => {
  const failures = [];
  for (const c of cases) {
    const body = { [c.update_column]: c.row[c.update_column] ?? null, version: c.row.version };
    const attempts = [
      ['PATCH', `/${c.name}?tenant_id=eq.${A}`, B, body],
      ['DELETE', `/${c.name}?tenant_id=eq.${A}`, B, undefined],
      ['PATCH', `/${c.name}`, NONE, body],
      ['DELETE', `/${c.name}`, NONE, undefined],
    ];
    for (const [method, p, tenant, b] of attempts) {
      const before = await snapshot(c.base);
      const r = await http(method, p, { headers: { ...headersFor(c.role, tenant), Prefer: 'return=representation' }, body: b });
      const changed = (await snapshot(c.base)) !== before;
      tally(r);
      if (changed) counts.writesOfA++;
      // 400: the front refuses the request itself (e.g. a column the view lacks)
      if (changed || !(refusedOrEmpty(r) || r.status === 400)) {
        failures.push(`${c.name} as ${c.role} of ${tenant}: ${method} ${p} -> ${r.status} ${r.text.slice(0, 160)}${changed ? ` (changed ${A}'s rows)` : ''}`);
      }
    }
  }
  assert.deepEqual(failures, []);
});

test('inserts: a copy of the victim\'s row, tenant_id included, is refused (401/403)', async () => {
  const failures = [];
  for (const c of cases) {
    const row = {};
    for (const k of c.insertable || []) if (k in c.row && k !== 'deleted_at') row[k] = c.row[k];
    if (c.state_column && c.initial_state) row[c.state_column] = c.initial_state;
    row.tenant_id = A;
    const r = await http('POST', `/${c.name}`, { headers: { ...headersFor(c.role, B), Prefer: 'return=representation' }, body: row });
    tally(r);
    if (![401, 403].includes(r.status)) failures.push(`${c.name} as ${c.role}: POST a copy of ${A}'s row -> ${r.status} ${r.text.slice(0, 200)}`);
  }
  assert.deepEqual(failures, []);
});

// Values for rpc arguments, by name: the victim's user's email (login,
// register), a wrong password, a refresh token nobody holds, its ids.
async function rpcValue(arg) {
  const n = arg.name;
  if (n === 'email') {
    return (await pg.query('SELECT email FROM ventros.users WHERE tenant_id = $1 AND deleted_at IS NULL LIMIT 1', [A])).rows[0].email;
  }
  if (n === 'password') return 'not-the-password';
  if (n === 'refresh_token') return 'vnr_' + 'x'.repeat(40);
  if (n === 'tenant_name') return `Matrix ${A}`;
  if (n === 'name') return 'matrix';
  if (arg.type === 'uuid') return (await pg.query('SELECT id FROM ventros.contacts WHERE tenant_id = $1 LIMIT 1', [A])).rows[0].id;
  if (arg.optional) return undefined;
  throw new Error(`no value for rpc argument ${n} (${arg.type}): teach the matrix`);
}

test('rpc: every function, called by every role of another tenant and anonymously with the victim\'s data, answers nothing of it', async () => {
  const failures = [];
  const secrets = (await pg.query(
    `SELECT id::text AS s FROM ventros.users WHERE tenant_id = $1
     UNION SELECT id::text FROM ventros.projects WHERE tenant_id = $1
     UNION SELECT $1`, [A])).rows.map((x) => x.s);
  const bases = (await pg.query(`SELECT DISTINCT base FROM (${CASES_SQL}) x`, [A, ['ventros_admin']])).rows.map((x) => x.base);
  const whole = async () => { const s = []; for (const b of bases) s.push(await snapshot(b)); return s.join(","); };
  for (const f of rpcs) {
    const body = {};
    for (const a of f.args || []) {
      const v = await rpcValue(a);
      if (v !== undefined) body[a.name] = v;
    }
    for (const role of ROLES) {
      const before = await whole();
      const r = await http('POST', `/rpc/${f.name}`, { headers: headersFor(role, B), body });
      const changed = (await whole()) !== before;
      tally(r);
      if (changed) counts.writesOfA++;
      const leaked = secrets.filter((s) => r.text.includes(s));
      if (r.status >= 500 || changed || leaked.length > 0) {
        failures.push(`/rpc/${f.name} as ${role}: ${r.status} ${r.text.slice(0, 200)}${changed ? ` (changed ${A}'s rows)` : ''}${leaked.length ? ` (answered ${leaked})` : ''}`);
      }
    }
  }
  assert.deepEqual(failures, []);
});
