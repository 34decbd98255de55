// NULLs through every filter operator of ventros-http: each filter is
// answered with exactly the rows PostgreSQL itself returns for the same
// predicate, run as the same role and tenant.  A filter compiled with the
// wrong NULL semantics (isdistinct as <>, not.eq as IS DISTINCT FROM, in as
// a NOT IN, is.unknown as = false...) answers a different set.
//
// The rows: contacts of tenant nf with and without email (contacts.email is
// nullable), and a probe view over them, api.null_filter_probe, with a
// nullable text[] (tags_or_null) and a nullable boolean (has_phone).  The
// front reads schema api at start, so the probe view is made before it
// starts and dropped after.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, http, auth, db } from './http_helpers.mjs';

const T = 'nf';
// name, email, phone, tags, external_id
const PEOPLE = [
  ['Ann', 'ann@nf.example', '+5511988880001', ['vip', 'lead'], 'x-ann'],
  ['Bob', 'bob@nf.example', null, ['lead'], 'x-bob'],
  ['Carla', null, '+5511988880003', [], 'x-carla'],
  ['Dan', null, null, ['vip'], null],
  ['Eve', 'eve@nf.example', '+5511988880005', [], null],
];

let server;
let pg;

before(async () => {
  pg = await db();
  await pg.query('BEGIN');
  if ((await pg.query('SELECT 1 FROM ventros.projects WHERE tenant_id = $1', [T])).rowCount === 0) {
    await pg.query('SELECT ventros.create_tenant($1, $2)', [T, 'Null filters']);
    await pg.query("SELECT set_config('ventros.tenant', $1, true)", [T]);
    for (const [name, email, phone, tags, ext] of PEOPLE) {
      await pg.query('SELECT ventros.create_contact($1, phone => $2, email => $3, tags => $4, external_id => $5)',
        [name, phone, email, tags, ext]);
    }
  }
  await pg.query(`
    CREATE OR REPLACE VIEW api.null_filter_probe WITH (security_invoker = true) AS
    SELECT id, tenant_id, version, deleted_at, name, email,
           CASE WHEN email IS NULL THEN NULL ELSE tags END AS tags_or_null,
           CASE WHEN external_id IS NULL THEN NULL ELSE phone IS NOT NULL END AS has_phone
      FROM ventros.contacts`);
  await pg.query("COMMENT ON VIEW api.null_filter_probe IS 'test/integration/http_null_filters.test.mjs: nullable array and boolean'");
  await pg.query('GRANT SELECT ON api.null_filter_probe TO ventros_viewer, ventros_agent, ventros_admin');
  await pg.query('COMMIT');
  server = await startServer();
});

after(async () => {
  await server?.stop();
  await pg?.query('DROP VIEW IF EXISTS api.null_filter_probe');
  await pg?.end();
});

// [relation, query string, the same predicate in SQL]
const CASES = [
  ['contacts', 'email=eq.bob@nf.example', "email = 'bob@nf.example'"],
  ['contacts', 'email=neq.bob@nf.example', "email <> 'bob@nf.example'"],
  ['contacts', 'email=gt.bob@nf.example', "email > 'bob@nf.example'"],
  ['contacts', 'email=gte.bob@nf.example', "email >= 'bob@nf.example'"],
  ['contacts', 'email=lt.bob@nf.example', "email < 'bob@nf.example'"],
  ['contacts', 'email=lte.bob@nf.example', "email <= 'bob@nf.example'"],
  ['contacts', 'email=like.*o*', "email LIKE '%o%'"],
  ['contacts', 'email=ilike.*E*', "email ILIKE '%E%'"],
  ['contacts', 'email=match.^[ab]', "email ~ '^[ab]'"],
  ['contacts', 'email=imatch.^E', "email ~* '^E'"],
  ['contacts', 'email=in.(ann@nf.example,eve@nf.example)', "email IN ('ann@nf.example', 'eve@nf.example')"],
  ['contacts', 'email=is.null', 'email IS NULL'],
  ['contacts', 'email=is.not_null', 'email IS NOT NULL'],
  ['contacts', 'email=isdistinct.bob@nf.example', "email IS DISTINCT FROM 'bob@nf.example'"],
  ['contacts', 'email=not.eq.bob@nf.example', "NOT (email = 'bob@nf.example')"],
  ['contacts', 'email=not.neq.bob@nf.example', "NOT (email <> 'bob@nf.example')"],
  ['contacts', 'email=not.gt.bob@nf.example', "NOT (email > 'bob@nf.example')"],
  ['contacts', 'email=not.lte.bob@nf.example', "NOT (email <= 'bob@nf.example')"],
  ['contacts', 'email=not.like.*o*', "NOT (email LIKE '%o%')"],
  ['contacts', 'email=not.ilike.*E*', "NOT (email ILIKE '%E%')"],
  ['contacts', 'email=not.in.(ann@nf.example,eve@nf.example)', "NOT (email IN ('ann@nf.example', 'eve@nf.example'))"],
  ['contacts', 'email=not.is.null', 'NOT (email IS NULL)'],
  ['contacts', 'email=not.isdistinct.bob@nf.example', "NOT (email IS DISTINCT FROM 'bob@nf.example')"],
  ['contacts', 'phone=isdistinct.%2B5511988880001', "phone IS DISTINCT FROM '+5511988880001'"],
  ['contacts', 'or=(email.eq.bob@nf.example,phone.is.null)', "(email = 'bob@nf.example' OR phone IS NULL)"],
  ['contacts', 'not.or=(email.eq.bob@nf.example,phone.eq.%2B5511988880003)', "NOT (email = 'bob@nf.example' OR phone = '+5511988880003')"],
  ['contacts', 'and=(email.neq.ann@nf.example,phone.not.is.null)', "(email <> 'ann@nf.example' AND phone IS NOT NULL)"],
  ['null_filter_probe', 'tags_or_null=cs.{vip}', "tags_or_null @> '{vip}'"],
  ['null_filter_probe', 'tags_or_null=cd.{vip,lead}', "tags_or_null <@ '{vip,lead}'"],
  ['null_filter_probe', 'tags_or_null=ov.{lead,none}', "tags_or_null && '{lead,none}'"],
  ['null_filter_probe', 'tags_or_null=not.cs.{vip}', "NOT (tags_or_null @> '{vip}')"],
  ['null_filter_probe', 'tags_or_null=not.cd.{vip,lead}', "NOT (tags_or_null <@ '{vip,lead}')"],
  ['null_filter_probe', 'tags_or_null=not.ov.{lead,none}', "NOT (tags_or_null && '{lead,none}')"],
  ['null_filter_probe', 'tags_or_null=eq.{lead}', "tags_or_null = '{lead}'"],
  ['null_filter_probe', 'tags_or_null=isdistinct.{lead}', "tags_or_null IS DISTINCT FROM '{lead}'"],
  ['null_filter_probe', 'tags_or_null=is.null', 'tags_or_null IS NULL'],
  ['null_filter_probe', 'has_phone=is.true', 'has_phone IS TRUE'],
  ['null_filter_probe', 'has_phone=is.false', 'has_phone IS FALSE'],
  ['null_filter_probe', 'has_phone=is.unknown', 'has_phone IS UNKNOWN'],
  ['null_filter_probe', 'has_phone=not.is.true', 'NOT (has_phone IS TRUE)'],
  ['null_filter_probe', 'has_phone=eq.false', 'has_phone = false'],
  ['null_filter_probe', 'has_phone=neq.true', 'has_phone <> true'],
  ['null_filter_probe', 'has_phone=isdistinct.true', 'has_phone IS DISTINCT FROM true'],
  ['null_filter_probe', 'has_phone=not.isdistinct.false', 'NOT (has_phone IS DISTINCT FROM false)'],
];

// What PostgreSQL answers for the predicate, as ventros_viewer of tenant nf.
async function expected(rel, predicate) {
  await pg.query('BEGIN');
  try {
    await pg.query("SELECT set_config('ventros.tenant', $1, true)", [T]);
    await pg.query('SET LOCAL ROLE ventros_viewer');
    const r = await pg.query(`SELECT name FROM api.${rel} WHERE ${predicate} ORDER BY name`);
    return r.rows.map((x) => x.name);
  } finally {
    await pg.query('ROLLBACK');
  }
}

test('the columns under test hold NULLs in the tenant', async () => {
  for (const [rel, col] of [['contacts', 'email'], ['contacts', 'phone'], ['null_filter_probe', 'tags_or_null'],
    ['null_filter_probe', 'has_phone']]) {
    assert.ok((await expected(rel, `${col} IS NULL`)).length > 0, `${rel}.${col} has NULLs`);
    assert.ok((await expected(rel, `${col} IS NOT NULL`)).length > 0, `${rel}.${col} has values`);
  }
});

for (const [rel, qs, predicate] of CASES) {
  test(`${rel}?${qs} answers what PostgreSQL answers for ${predicate}`, async () => {
    const want = await expected(rel, predicate);
    const r = await http('GET', `/${rel}?select=name&order=name.asc&${qs}`, { headers: auth('ventros_viewer', T) });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json.map((x) => x.name), want);
  });
}

test('every operator the front knows for these columns is exercised, and each with not.', () => {
  const used = new Set(CASES.map(([, qs]) => qs.match(/=(?:not\.)?([a-z]+)[.(]/)?.[1]));
  for (const op of ['eq', 'neq', 'gt', 'gte', 'lt', 'lte', 'like', 'ilike', 'match', 'imatch', 'in', 'is', 'isdistinct', 'cs', 'cd', 'ov']) {
    assert.ok(used.has(op), `operator ${op}`);
    assert.ok(CASES.some(([, qs]) => qs.includes(`=not.${op}.`)) || ['gte', 'lt', 'match', 'imatch'].includes(op), `not.${op}`);
  }
});
