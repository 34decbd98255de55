// Direct writes over HTTP, generated from the catalog: every api view x
// POST, PATCH, DELETE x every tenant role (viewer, agent, admin tokens of
// tenant hw_a), against the declaration of ventros.aggregate_writes.  The
// cases are the SQL suite's (test/pgtap/620_direct_writes.sql), built by
// ventros_test.direct_write_cases (test/fixtures/62_direct_writes.sql):
//   refused   403 with code 42501 and the hint naming the declared commands
//             (or the grant's 403 for a role without the privilege); no row
//             of the table changed and no event written;
//   direct    2xx, and the same row, events and rows per tenant table as the
//             command produces from the same state (run just before in SQL,
//             as the same role, in a transaction rolled back).
// docs/sql-direct-writes.md's table of direct writes is generated from the same catalog
// and checked here (VENTROS_WRITE_DOCS=1 rewrites it).  The counts are printed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startServer, http, token, db, ROOT } from './http_helpers.mjs';

const T = 'hw_a';
const ROLES = ['ventros_viewer', 'ventros_agent', 'ventros_admin'];
const OPERATIONS = ['INSERT', 'UPDATE', 'DELETE'];
let server;
let pg;
let aggregates = [];
const counts = { cases: 0, refused: 0, grant: 0, direct: 0, commandRefused: 0 };

before(async () => {
  server = await startServer();
  pg = await db();
  const exists = await pg.query('SELECT 1 FROM ventros_test.direct_write_rows WHERE tenant = $1', [T]);
  if (exists.rowCount === 0) {
    await pg.query('BEGIN');
    await pg.query('SELECT ventros.create_tenant($1, $2)', [T, 'Direct writes over HTTP']);
    const bad = await pg.query('SELECT f FROM ventros_test.seed_direct_writes($1) f', [T]);
    assert.deepEqual(bad.rows, [], 'every sample seeds the tenant');
    // no webhook deliveries of the writes below: their retries would add
    // rows while a write and its command are compared
    await pg.query("UPDATE ventros.webhook_subscriptions SET active = false, version = version WHERE tenant_id = $1", [T]);
    await pg.query('COMMIT');
  }
  aggregates = (await pg.query('SELECT aggregate FROM ventros.aggregates ORDER BY aggregate')).rows.map((r) => r.aggregate);
});

after(async () => {
  console.log(`# direct writes over HTTP: ${aggregates.length} api views x ${OPERATIONS.length} operations x ${ROLES.length} roles = ` +
    `${counts.cases} requests: ${counts.refused} refused with the declared hint, ${counts.grant} refused by the grant, ` +
    `${counts.direct} the same as their command (${counts.commandRefused} of them refused by the command too)`);
  await pg?.end();
  await server?.stop();
});

// The tenant's rows of tbl: id -> ctid/xmin of its current version.
async function snapshot(tbl) {
  const r = await pg.query(`SELECT id::text, ctid::text || '/' || xmin::text AS v FROM ${tbl} WHERE tenant_id = $1`, [T]);
  return new Map(r.rows.map((x) => [x.id, x.v]));
}

async function lastSeq() {
  return (await pg.query('SELECT coalesce(max(seq), 0)::text AS s FROM ventros.outbox WHERE tenant_id = $1', [T])).rows[0].s;
}

// What a refused request wrote: its own events (the request acts as a
// subject no one else uses) and the rows of tbl written or removed since
// before, less those of transactions that emitted as someone else.  The
// scheduled ticks and the executor keep working in the tenant meanwhile
// (advancing its seeded campaigns and sequences, say): their writes are
// theirs, not the request's, and each of their transactions emits.
async function writtenSince(tbl, before, seq, subject) {
  const own = (await pg.query(
    `SELECT string_agg(event_type, ', ' ORDER BY seq) AS own
       FROM ventros.outbox WHERE tenant_id = $1 AND seq > $2::bigint AND actor = $3`, [T, seq, subject])).rows[0].own;
  const after = await snapshot(tbl);
  const candidates = [...after].filter(([id, v]) => before.get(id) !== v);
  // the writers of the changed rows that emitted as someone else, whatever
  // the seq of their events: a transaction that emitted before the request
  // began may commit after it
  const others = new Set((await pg.query(
    `SELECT coalesce(array_agg(DISTINCT xmin::text), '{}') AS x FROM ventros.outbox
      WHERE tenant_id = $1 AND xmin::text = ANY ($2) AND actor IS DISTINCT FROM $3`,
    [T, candidates.map(([, v]) => v.split('/')[1]), subject])).rows[0].x);
  const rows = candidates.filter(([, v]) => !others.has(v.split('/')[1])).length;
  const removed = [...before.keys()].filter((id) => !after.has(id)).length;
  const what = [];
  if (own) what.push(`events ${own}`);
  if (rows) what.push(`${rows} rows written`);
  if (removed) what.push(`${removed} rows removed`);
  return what.join(', ');
}

let requests = 0;

async function oneCase(c) {
  if (!c.http) return `${c.aggregate} ${c.operation} as ${c.role_name}: ${c.kind}`;
  const granted = (await pg.query('SELECT has_table_privilege($1, $2::regclass, $3) AS g', [c.role_name, c.path, c.operation])).rows[0].g;
  let expected;
  if (granted && c.kind === 'direct') {
    expected = (await pg.query('SELECT * FROM ventros_test.direct_write_try($1, $2, $3, $4, $5)',
      [T, c.role_name, c.command_sql, c.tbl, c.row_id])).rows[0];
  }
  const seq = await lastSeq();
  const before = await snapshot(c.tbl);
  // a refused request acts as a subject of its own (the direct ones as the
  // SQL command they are compared with did)
  const refused = !granted || c.kind !== 'direct';
  const subject = refused ? `direct-writes-${++requests}` : undefined;
  const r = await http(c.http.method, c.http.path, {
    headers: { Authorization: `Bearer ${token(c.role_name, T, subject ? { sub: subject } : {})}`, Prefer: 'return=representation' },
    body: c.http.body,
  });
  counts.cases++;
  const label = `${c.aggregate} ${c.operation} as ${c.role_name}: ${c.http.method} ${c.http.path}`;
  const what = `${r.status} ${r.text.slice(0, 240)}`;
  if (refused) {
    const wrote = await writtenSince(c.tbl, before, seq, subject);
    const changed = wrote !== '';
    if (!granted) {
      counts.grant++;
      return r.status === 403 && r.json?.code === '42501' && !changed ? null : `${label} (no grant): ${what}${changed ? ` (wrote ${wrote})` : ''}`;
    }
    counts.refused++;
    if (c.kind.startsWith('direct without')) return `${label}: ${c.kind} to compare with its command: teach test/fixtures/62_direct_writes.sql`;
    return r.status === 403 && r.json?.code === '42501' && r.json?.hint === c.expected_hint && !changed
      ? null : `${label} (refused): ${what}, declared hint ${c.expected_hint}${changed ? ` (wrote ${wrote})` : ''}`;
  }
  counts.direct++;
  if (expected.result.startsWith('ERROR')) {
    counts.commandRefused++;
    const code = expected.result.slice(6, 11);
    return r.status >= 400 && r.json?.code === code ? null : `${label}: the command answers ${expected.result}, HTTP ${what}`;
  }
  if (r.status >= 300) return `${label}: ${what}, but the command succeeds`;
  const target = c.row_id ?? r.json?.[0]?.id;
  const got = (await pg.query('SELECT * FROM ventros_test.direct_write_effects($1, $2, $3, $4)', [T, c.tbl, target, seq])).rows[0];
  if (c.operation === 'INSERT') {
    // the new row's phone and email would collide with the next role's insert
    await pg.query(`DELETE FROM ${c.tbl} WHERE id = $1`, [target]);
  }
  const diffs = [];
  if (JSON.stringify(got.row_after) !== JSON.stringify(expected.row_after)) diffs.push(`row ${JSON.stringify(got.row_after)} <> ${JSON.stringify(expected.row_after)}`);
  if (JSON.stringify(got.events) !== JSON.stringify(expected.events)) diffs.push(`events ${JSON.stringify(got.events)} <> ${JSON.stringify(expected.events)}`);
  const tables = Object.keys(expected.counts).filter((k) => JSON.stringify(got.counts[k]) !== JSON.stringify(expected.counts[k]));
  if (tables.length) diffs.push(`rows of ${tables.map((k) => `${k} ${JSON.stringify(got.counts[k])} <> ${JSON.stringify(expected.counts[k])}`).join(', ')}`);
  if (got.events.length === 0) diffs.push('no event');
  return diffs.length ? `${label}: ${diffs.join('; ')}` : null;
}

test('every api view x operation x role answers what its aggregate declares', async () => {
  const failures = [];
  for (const agg of aggregates) {
    for (const op of OPERATIONS) {
      for (const role of ROLES) {
        // generated just before, so a write that committed is the new state
        const cases = (await pg.query(
          `SELECT aggregate, tbl::text, path::text, role_name, operation, kind, command_sql, expected_hint, row_id, http
             FROM ventros_test.direct_write_cases($1, $2, ARRAY[$3], ARRAY[$4]) WHERE path::text LIKE 'api.%'`,
          [T, agg, role, op])).rows;
        assert.ok(cases.length > 0, `${agg} ${op} ${role}: no case`);
        for (const c of cases) {
          const failure = await oneCase(c);
          if (failure) failures.push(failure);
        }
      }
    }
  }
  assert.deepEqual(failures, []);
  assert.ok(aggregates.length >= 56, `${aggregates.length} aggregates`);
});

test('campaign steps: POST /campaign_steps on an active campaign is refused (403), as add_campaign_step refuses', async () => {
  const agent = { Authorization: `Bearer ${token('ventros_agent', T)}`, Prefer: 'return=representation' };
  await pg.query('BEGIN');
  await pg.query("SELECT set_config('ventros.tenant', $1, true)", [T]);
  const campaign = (await pg.query("SELECT * FROM ventros.create_campaign('Named over HTTP')")).rows[0];
  await pg.query("SELECT ventros.add_campaign_step($1, 0, 'Wait', 'delay', '{\"delay_minutes\": 5}')", [campaign.id]);
  await pg.query("SELECT ventros.set_campaign_status($1, 1, 'active')", [campaign.id]);
  await pg.query('COMMIT');
  const seq = await lastSeq();
  const r = await http('POST', '/campaign_steps', {
    headers: agent, body: { campaign_id: campaign.id, order: 1, name: 'Late', type: 'delay', config: { delay_minutes: 1 } } });
  assert.equal(r.status, 403, r.text);
  assert.equal(r.json.code, '42501');
  assert.equal(r.json.hint, 'Use ventros.add_campaign_step().');
  assert.equal((await pg.query('SELECT count(*)::int AS n FROM ventros.campaign_steps WHERE campaign_id = $1', [campaign.id])).rows[0].n, 1);
  assert.equal(await lastSeq(), seq, 'no event');
});

test('outbound messages: POST /messages with from_me true is refused (403), naming send_message; nothing is queued', async () => {
  const agent = { Authorization: `Bearer ${token('ventros_agent', T)}`, Prefer: 'return=representation' };
  const ids = (await pg.query(
    `SELECT (SELECT id FROM ventros.channels WHERE tenant_id = $1 AND deleted_at IS NULL LIMIT 1) AS channel,
            (SELECT id FROM ventros.contacts WHERE tenant_id = $1 AND deleted_at IS NULL LIMIT 1) AS contact,
            (SELECT count(*)::int FROM ventros.http_requests WHERE tenant_id = $1) AS requests`, [T])).rows[0];
  const r = await http('POST', '/messages', {
    headers: agent,
    body: { channel_id: ids.channel, contact_id: ids.contact, from_me: true, content_type: 'text', text: 'Hello', status: 'sent' } });
  assert.equal(r.status, 403, r.text);
  assert.equal(r.json.code, '42501');
  assert.equal(r.json.hint, 'Use ventros.send_message(), ventros.receive_message() or ventros.import_message().');
  const after = (await pg.query('SELECT count(*)::int AS n FROM ventros.http_requests WHERE tenant_id = $1', [T])).rows[0].n;
  assert.equal(after, ids.requests, 'no provider request');
});

// docs/sql-direct-writes.md: the table between the markers is the catalog's.
test('docs/sql-direct-writes.md lists what every direct write does, as the catalog declares it', async () => {
  const file = path.join(ROOT, 'docs/sql-direct-writes.md');
  const doc = fs.readFileSync(file, 'utf8');
  const begin = '<!-- direct-writes:begin (generated from ventros.aggregate_writes by test/integration/direct_writes.test.mjs) -->';
  const end = '<!-- direct-writes:end -->';
  const table = (await pg.query('SELECT ventros_test.direct_writes_markdown() AS t')).rows[0].t;
  const i = doc.indexOf(begin);
  const j = doc.indexOf(end);
  assert.ok(i >= 0 && j > i, 'docs/sql-direct-writes.md has the markers of the direct writes table');
  const current = doc.slice(i + begin.length, j).trim();
  if (process.env.VENTROS_WRITE_DOCS === '1' && current !== table.trim()) {
    fs.writeFileSync(file, doc.slice(0, i + begin.length) + '\n' + table.trim() + '\n' + doc.slice(j));
    return;
  }
  assert.equal(current, table.trim(), 'docs/sql-direct-writes.md is stale: run with VENTROS_WRITE_DOCS=1 to rewrite the table');
});
