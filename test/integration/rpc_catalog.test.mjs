// Every command over HTTP, walked from the catalog: every function of schema
// ventros that ventros_viewer, ventros_agent or ventros_admin may execute is
// called once over HTTP as the least of those roles, acting for a tenant
// seeded with the contract samples (test/fixtures/samples, through
// ventros_test.seed_tenant), and must answer its result or one of the
// SQLSTATEs docs/sql.md documents (its "Errors" table), with that table's
// HTTP status -- never PGRST202 (not found) and never an undocumented error.
//
// Arguments are given by name, from the tenant's own rows: a uuid argument
// gets the id of the row of the table its name points at (contact_id ->
// contacts; id -> the table the function is named after), as
// test/pgtap/601_tenancy_functions.sql chooses them; a row argument gets that
// table's row as a JSON object; expected_version the row's version; other
// required arguments a plain value of their type (the first value of the
// list the function checks a text against).  Optional arguments keep their
// defaults.  Functions that only read are called with GET and their answer
// compared with the same call made in SQL; the others with POST.  Every call
// carries Prefer: tx=rollback, so none changes what the next one sees.
//
// The same catalog bounds what is served: a function a tenant role may
// execute and that is not served must be one no named-argument call can
// reach (a trigger function; a polymorphic, unnamed or variadic argument; a
// record result without columns), and the
// functions only platform admins, the scheduler or the workers may run are
// not served at all.  A role below the grant gets 403 (42501).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startServer, http, token, db, ROOT } from './http_helpers.mjs';

const T = 'rpc_cat';
const ROLE_ORDER = ['ventros_viewer', 'ventros_agent', 'ventros_admin'];
let server;
let pg;
let functions = [];		// ventros.http_rpc_functions of schema ventros, with prosrc
let ids = new Map();		// table -> { id, version, row }
const counts = { called: 0, answered: 0, documented: 0, compared: 0, refused: 0, bySqlstate: {} };

// docs/sql.md "Errors": SQLSTATE -> HTTP status, as documented
function documentedErrors() {
  const text = fs.readFileSync(path.join(ROOT, 'docs/sql.md'), 'utf8');
  const section = text.slice(text.indexOf('## Errors'), text.indexOf('\n## ', text.indexOf('## Errors') + 3));
  const map = new Map();
  for (const line of section.split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    if (cells.length < 5) continue;
    const codes = [...cells[2].matchAll(/`([0-9A-Z]{5})`/g)].map((m) => m[1]);
    const status = cells[3].includes('/') ? 403 : Number(cells[3]);	// 42501: 403 for a signed-in caller
    for (const c of codes) map.set(c, status);
  }
  return map;
}
const DOCUMENTED = documentedErrors();

function headersFor(role) {
  return { Authorization: `Bearer ${token(role, T)}`, Prefer: 'tx=rollback' };
}

// The table a word points at (contact -> contacts, identity ->
// contact_identities), as 601_tenancy_functions.sql's fx_table_for.
function tableFor(word, fname) {
  const plural = [word + 's', word + 'es', word, word.replace(/y$/, 'ies')];
  const found = [...ids.keys()].filter((r) => plural.includes(r) ||
    r.endsWith('_' + word + 's') || r.endsWith('_' + word + 'es') || r.endsWith('_' + word.replace(/y$/, 'ies')));
  found.sort((a, b) => (plural.includes(b) - plural.includes(a)) ||
    (fname.includes(b.split('_')[0]) - fname.includes(a.split('_')[0])) || a.localeCompare(b));
  return found[0];
}

function argTable(arg, fname) {
  const renamed = { reply_to: 'message', author: 'agent', created: 'user', triggered: 'user', origin: 'broadcast',
    primary: 'contact', list: 'contact_list' };
  let base = (arg || 'id').replace(/(_ids?|_by)$/, '');
  base = renamed[base] || base;
  if (!['id', 'row', 'aggregate', 'after', 'before', 'target'].includes(base)) {
    const r = tableFor(base, fname);
    if (r) return r;
  }
  const words = fname.split('_');
  for (let n = words.length - 1; n >= 1; n--) {
    for (let s = 1; s + n <= words.length; s++) {
      const r = tableFor(words.slice(s, s + n).join('_'), fname);
      if (r) return r;
    }
  }
  return 'contacts';
}

// Named arguments of one call, as JSON values.
function argsFor(f) {
  const args = {};
  let version = 1;
  for (let i = 0; i < f.arg_names.length; i++) {
    const name = f.arg_names[i];
    const type = f.arg_types[i];
    if (type === 'uuid' || type === 'uuid[]') {
      const row = ids.get(argTable(name, f.name));
      if (i === 0 && row?.version) version = row.version;
      args[name] = type === 'uuid' ? row?.id ?? null : [row?.id];
    } else if (type.startsWith('ventros.') && ids.has(type.slice(8))) {
      args[name] = ids.get(type.slice(8)).row;
    } else if (i >= f.required_args) {
      continue;
    } else if (name === 'expected_version') {
      args[name] = version;
    } else {
      // a text checked against a list (require_value(arg, ARRAY['a', ...])): its first value
      const listed = new RegExp(`require_value\\(\\s*(?:coalesce\\()?\\s*(?:\\w+\\.)?${name}\\b[^;]*?ARRAY\\[\\s*'([^']*)'`).exec(f.prosrc);
      const tomorrow = new Date(Date.now() + 86400e3).toISOString();
      const plain = {
        integer: 1, bigint: 1, smallint: 1, numeric: 1, boolean: false, json: {}, jsonb: {},
        'timestamp with time zone': tomorrow, date: tomorrow.slice(0, 10), interval: '1 hour', 'text[]': [],
        'integer[]': [1], bytea: '\\x00', regclass: 'ventros.contacts',
      };
      if (type === 'text') {
        args[name] = listed ? listed[1] : /url/.test(name) ? 'https://hooks.example/rpc' : /email/.test(name)
          ? 'rpc@rpc.example' : /phone/.test(name) ? '+5511977770000' : 'rpc catalog';
      } else if (type in plain) {
        args[name] = plain[type];
      } else if (type.endsWith('[]')) {
        args[name] = [];
      } else {
        args[name] = null;
      }
    }
  }
  return args;
}

function role(f) {
  return ROLE_ORDER.find((r) => f.roles.includes(r));
}

// GET takes its arguments as text: only for reads whose arguments are scalars
function viaGet(f, args) {
  return f.read_only && Object.values(args).every((v) => v === null || typeof v !== 'object');
}

function query(args) {
  return new URLSearchParams(Object.entries(args).map(([k, v]) => [k, v === null ? '' : String(v)])).toString();
}

// The same call in SQL, as the same role acting for the same tenant: its
// answer as JSON (rows as the HTTP answer shows their columns)
async function inSql(f, args, r) {
  const names = Object.keys(args);
  const cols = names.map((n) => `${JSON.stringify(n)} ${f.arg_types[f.arg_names.indexOf(n)]}`).join(', ');
  const call = `${f.function.replace(/\(.*$/, '')}(${names.map((n) => `${JSON.stringify(n)} => _a.${JSON.stringify(n)}`).join(', ')})`;
  const from = names.length ? ` FROM json_to_record($1::json) AS _a(${cols})` : '';
  const params = names.length ? [JSON.stringify(args)] : [];
  const source = names.length ? `json_to_record($1::json) AS _a(${cols}) CROSS JOIN LATERAL ${call} _x` : `${call} _x`;
  const sql = f.returns_set
    ? `SELECT coalesce(json_agg(_x), '[]') AS v FROM ${source}`
    : `SELECT to_json(${call}) AS v${from}`;
  await pg.query('BEGIN');
  try {
    // what the front sets from the token (http_helpers.mjs token(): sub test-<role>)
    await pg.query(`SELECT set_config('ventros.tenant', $1, true), set_config('request.jwt.claims', $2, true)`,
      [T, JSON.stringify({ role: role(f), sub: `test-${role(f)}`, tenant_id: T })]);
    await pg.query(`SET LOCAL ROLE ${role(f)}`);
    const v = (await pg.query(sql, params)).rows[0].v;
    return v;
  } finally {
    await pg.query('ROLLBACK');
  }
}

// an SQL row narrowed to the columns the HTTP row has (redacted ones are left out)
function narrow(sqlValue, httpValue) {
  if (Array.isArray(sqlValue) && Array.isArray(httpValue)) return sqlValue.map((v, i) => narrow(v, httpValue[i]));
  if (sqlValue && httpValue && typeof sqlValue === 'object' && typeof httpValue === 'object' && !Array.isArray(httpValue)) {
    return Object.fromEntries(Object.keys(httpValue).map((k) => [k, sqlValue[k]]));
  }
  return sqlValue;
}

before(async () => {
  server = await startServer();
  pg = await db();
  if ((await pg.query('SELECT 1 FROM ventros.projects WHERE tenant_id = $1', [T])).rowCount === 0) {
    await pg.query('BEGIN');
    await pg.query('SELECT ventros.create_tenant($1, $2)', [T, 'RPC catalog']);
    const bad = await pg.query(`SELECT * FROM ventros_test.seed_tenant($1) WHERE result IS NULL OR result LIKE 'ERROR%'`, [T]);
    assert.deepEqual(bad.rows, [], 'every contract sample seeds the tenant');
    // nobody delivers the samples' webhook requests: they end here
    await pg.query("UPDATE ventros.http_requests SET status = 'dead' WHERE tenant_id = $1 AND status = 'pending'", [T]);
    await pg.query('COMMIT');
  }
  const tables = (await pg.query(`
    SELECT c.relname::text AS rel, c.oid::regclass::text AS qualified FROM pg_class c
    WHERE c.relnamespace = 'ventros'::regnamespace AND c.relkind = 'r'
      AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'id' AND a.atttypid = 'uuid'::regtype)
      AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id')`)).rows;
  for (const t of tables) {
    const r = await pg.query(`SELECT to_jsonb(x) AS row FROM ${t.qualified} x WHERE tenant_id = $1
                              ORDER BY (to_jsonb(x)->>'deleted_at') IS NULL DESC, x.id LIMIT 1`, [T]);
    if (r.rowCount) ids.set(t.rel, { id: r.rows[0].row.id, version: r.rows[0].row.version, row: r.rows[0].row });
  }
  functions = (await pg.query(`
    SELECT f.function::text AS function, f.name, f.arg_names, f.arg_types, f.required_args, f.result_type,
           f.result_kind, f.returns_set, f.read_only, f.result_media_type, f.roles, p.prosrc
    FROM ventros.http_rpc_functions f JOIN pg_proc p ON p.oid = f.function::oid
    WHERE f.schema_name = 'ventros' AND NOT f.platform_only ORDER BY f.name, f.function::text`)).rows;
});

after(async () => {
  const by = Object.entries(counts.bySqlstate).sort().map(([k, v]) => `${k} ${v}`).join(', ');
  console.log(`# rpc catalog: ${counts.called} functions of ventros called over HTTP: ${counts.answered} answered ` +
    `(${counts.compared} reads equal to the same call in SQL), ${counts.documented} documented errors (${by}); ` +
    `${counts.refused} calls by a role below the grant refused with 403`);
  await pg?.end();
  await server?.stop();
});

test('every function a tenant role may execute is served, or no named-argument call could reach it', async () => {
  const executable = (await pg.query(`
    SELECT p.oid::regprocedure::text AS function, format_type(p.prorettype, NULL) AS result,
           ARRAY(SELECT format_type(t, NULL) FROM unnest(p.proargtypes) t) AS types,
           coalesce(p.proargnames[1:p.pronargs], '{}') AS names, p.pronargs, p.provariadic <> 0 AS variadic,
           p.proargmodes IS NOT NULL AND 'o' = ANY (p.proargmodes) OR 't' = ANY (coalesce(p.proargmodes, '{}')) AS out_columns
    FROM pg_proc p
    WHERE p.pronamespace = 'ventros'::regnamespace AND p.prokind = 'f'
      AND EXISTS (SELECT 1 FROM unnest($1::text[]) r WHERE has_function_privilege(r, p.oid, 'EXECUTE'))`, [ROLE_ORDER])).rows;
  const served = new Set(functions.map((f) => f.function));
  const unreachable = [];
  for (const e of executable) {
    if (served.has(e.function)) continue;
    const why = e.result === 'trigger' ? 'trigger'
      : e.types.some((t) => /^any/.test(t)) ? 'polymorphic argument'
      : e.names.length < e.pronargs || e.names.some((n) => n === '') ? 'unnamed argument'
      : e.variadic ? 'variadic argument'
      : e.result === 'record' && !e.out_columns ? 'record without columns' : null;
    assert.ok(why, `${e.function} may be executed by a tenant role but is not served`);
    unreachable.push(`${e.function} (${why})`);
  }
  console.log(`# ${executable.length} functions of ventros executable by a tenant role; ${served.size} served; ` +
    `${unreachable.length} no named-argument call can reach: ${unreachable.join(', ')}`);
  assert.equal(served.size + unreachable.length, executable.length);
  assert.ok(served.size >= 390, `${served.size} served`);
});

test('functions no tenant role may execute are not served', async () => {
  const others = (await pg.query(`
    SELECT p.proname::text AS name FROM pg_proc p
    WHERE p.pronamespace = 'ventros'::regnamespace AND p.prokind = 'f'
      AND NOT EXISTS (SELECT 1 FROM unnest($1::text[]) r WHERE has_function_privilege(r, p.oid, 'EXECUTE'))
      AND NOT EXISTS (SELECT 1 FROM pg_proc q WHERE q.pronamespace = 'ventros'::regnamespace AND q.proname = p.proname
                        AND EXISTS (SELECT 1 FROM unnest($1::text[]) r WHERE has_function_privilege(r, q.oid, 'EXECUTE')))
    ORDER BY 1`, [ROLE_ORDER])).rows.map((x) => x.name);
  for (const n of ['create_tenant', 'bind_login', 'decrypt_secret']) assert.ok(others.includes(n), `${n} is not granted to tenant roles`);
  const openapi = await http('GET', '/', { headers: headersFor('ventros_admin') });
  const failures = [];
  for (const name of others) {
    const r = await http('POST', `/rpc/${name}`, { headers: headersFor('ventros_admin'), body: {} });
    if (r.status !== 404 || r.json?.code !== 'PGRST202') failures.push(`${name}: ${r.status} ${r.text.slice(0, 120)}`);
    if (openapi.json.paths[`/rpc/${name}`]) failures.push(`${name} in the OpenAPI document`);
  }
  console.log(`# ${others.length} functions of ventros only platform admins, the scheduler or the workers run: none served`);
  assert.deepEqual(failures, []);
});

test('every served function of ventros, called once over HTTP, answers its result or a documented SQLSTATE', async () => {
  const failures = [];
  assert.ok(DOCUMENTED.size >= 10, 'docs/sql.md documents the SQLSTATEs');
  for (const f of functions) {
    const args = argsFor(f);
    const headers = headersFor(role(f));
    const get = viaGet(f, args);
    const r = get
      ? await http('GET', `/rpc/${f.name}?${query(args)}`, { headers })
      : await http('POST', `/rpc/${f.name}`, { headers, body: args });
    counts.called++;
    const label = `${get ? 'GET' : 'POST'} /rpc/${f.name} as ${role(f)} ${JSON.stringify(args).slice(0, 200)}`;
    if (r.status >= 200 && r.status < 300) {
      counts.answered++;
      const shapeOk = f.result_type === 'void' ? r.status === 204 && r.text === ''
        : f.result_media_type ? (r.headers.get('content-type') || '').startsWith(f.result_media_type)
        : f.returns_set ? Array.isArray(r.json)
        : r.json !== undefined;
      if (!shapeOk) failures.push(`${label} -> ${r.status}: not a ${f.returns_set ? 'set' : f.result_type} (${r.text.slice(0, 120)})`);
      if (get && !f.result_media_type && f.result_type !== 'void') {
        const expected = narrow(await inSql(f, args, r), r.json);
        try {
          assert.deepEqual(r.json, expected);
          counts.compared++;
        } catch {
          failures.push(`${label}: HTTP ${r.text.slice(0, 160)} but SQL ${JSON.stringify(expected).slice(0, 160)}`);
        }
      }
    } else {
      const code = r.json?.code;
      counts.bySqlstate[code] = (counts.bySqlstate[code] || 0) + 1;
      if (DOCUMENTED.has(code) && DOCUMENTED.get(code) === r.status) counts.documented++;
      else failures.push(`${label} -> ${r.status} ${r.text.slice(0, 240)}`);
    }
  }
  assert.deepEqual(failures, []);
  assert.ok(counts.called >= 390, `${counts.called} functions called`);
  assert.ok(counts.answered >= counts.called / 3, `${counts.answered} of ${counts.called} answered their result`);
});

test('a role below a function\'s grant is refused by PostgreSQL: 403, 42501', async () => {
  const failures = [];
  for (const f of functions) {
    const below = ROLE_ORDER.slice(0, ROLE_ORDER.indexOf(role(f)));
    for (const r0 of below) {
      const r = await http('POST', `/rpc/${f.name}`, { headers: headersFor(r0), body: argsFor(f) });
      counts.refused++;
      if (r.status !== 403 || r.json?.code !== '42501') failures.push(`/rpc/${f.name} as ${r0}: ${r.status} ${r.text.slice(0, 160)}`);
    }
  }
  assert.deepEqual(failures, []);
});
