// The operator's surface over /rpc (sql/93_operator.sql, docs/operations.md):
// a platform administrator's token reaches the platform functions when the
// front may take ventros_platform_admin (VENTROS_HTTP_DB_ROLES and the
// grant to ventros_authenticator); tenant tokens do not even find them (404)
// nor see them in the OpenAPI document.  A tenant's paused sends stay queued
// while the real dispatcher sends what comes after them, and go out once
// resumed, exactly once; every action is an event with the token's subject
// as its actor.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, http, auth, token, db } from './http_helpers.mjs';
import { startRecorder } from './fakes/recorder.mjs';
import { waitFor } from './wait.mjs';
import { alterSystem, resetSystem } from './settings.mjs';

const HELD = 'op_held';
const FREE = 'op_free';
const settings = { 'ventros.http_allow_hosts': '127.0.0.1/32' };
const operator = { Authorization: `Bearer ${token('ventros_platform_admin', null, { sub: 'ops-alice' })}` };
let server;
let c;
let fake;
let probes = 0;

async function q(sql, params = []) {
  return (await c.query(sql, params)).rows;
}

async function enqueue(tenant, url) {
  await q('BEGIN');
  await q("SELECT set_config('ventros.tenant', $1, true)", [tenant]);
  const [r] = await q("SELECT ventros.enqueue_http_request($1, purpose => 'op.test') AS id", [url]);
  await q('COMMIT');
  return r.id;
}

async function request(id) {
  const [r] = await q('SELECT status, attempts FROM ventros.http_requests WHERE id = $1', [id]);
  return r;
}

before(async () => {
  c = await db();
  for (const t of [HELD, FREE]) {
    await q(`SELECT ventros.create_tenant($1, $1) WHERE NOT EXISTS (SELECT 1 FROM ventros.projects WHERE tenant_id = $1)`,
      [t]);
  }
  await q('GRANT ventros_platform_admin TO ventros_authenticator');
  await alterSystem(c, settings);
  fake = await startRecorder();
  // the dispatcher applies the reload asynchronously: probe until the fake is allowed
  await waitFor('the dispatcher to allow the loopback fake', async () => {
    const id = await enqueue(FREE, `${fake.url}/probe/${++probes}`);
    const r = await waitFor('the probe to finish', async () => {
      const x = await request(id);
      return ['succeeded', 'failed', 'dead'].includes(x.status) ? x : null;
    });
    return r.status === 'succeeded';
  });
  fake.reset();
  server = await startServer({ VENTROS_HTTP_DB_ROLES: 'ventros_platform_admin' });
});

after(async () => {
  await server?.stop();
  await q('REVOKE ventros_platform_admin FROM ventros_authenticator');
  await resetSystem(c, settings);
  await fake?.close();
  await c.end();
});

test('a platform administrator\'s token reaches the platform functions; tenant tokens do not find them', async () => {
  const r = await http('GET', '/rpc/queue_status', { headers: operator });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json.map((x) => x.queue).sort(), ['http', 'inbox', 'outbox']);
  for (const k of ['depth', 'due', 'in_flight', 'held', 'dead', 'oldest_age', 'arrived_last_5m', 'done_last_5m']) {
    assert.ok(k in r.json[0], k);
  }
  for (const role of ['ventros_admin', 'ventros_agent', 'ventros_viewer']) {
    const t = await http('GET', '/rpc/queue_status', { headers: auth(role, 'ta') });
    assert.equal(t.status, 404, `${role}: ${t.text}`);
    assert.equal(t.json.code, 'PGRST202');
    const p = await http('POST', '/rpc/pause_sends', { headers: auth(role, 'ta'), body: { tenant: 'ta' } });
    assert.equal(p.status, 404, `${role}: ${p.text}`);
  }
  const anon = await http('GET', '/rpc/dead_letters');
  assert.equal(anon.status, 404, anon.text);
  const docs = await http('GET', '/', { headers: auth('ventros_admin', 'ta') });
  assert.equal(docs.status, 200);
  assert.ok(!('/rpc/queue_status' in docs.json.paths), 'the tenants\' OpenAPI document does not list it');
  assert.ok('/rpc/contacts' in docs.json.paths || Object.keys(docs.json.paths).length > 10);
  const opDocs = await http('GET', '/', { headers: operator });
  assert.ok('/rpc/queue_status' in opDocs.json.paths, 'the operator\'s does');
});

test('a tenant token without a tenant is no platform administrator, even where the front may become one', async () => {
  // compact_crm_daily_stats acts across tenants when none is chosen, for platform administrators only
  const r = await http('POST', '/rpc/compact_crm_daily_stats', { headers: auth('ventros_admin', null), body: {} });
  assert.equal(r.status, 404, r.text);
  const o = await http('POST', '/rpc/compact_crm_daily_stats', { headers: operator, body: {} });
  assert.equal(o.status, 200, o.text);
});

test('paused sends stay queued while later ones go out, and go out once after resume', async () => {
  const paused = await http('POST', '/rpc/pause_sends', { headers: operator, body: { tenant: HELD, reason: 'incident 42' } });
  assert.equal(paused.status, 200, paused.text);
  assert.equal(paused.json.scope, 'tenant');
  assert.equal(paused.json.paused_by, 'ops-alice');
  const again = await http('POST', '/rpc/pause_sends', { headers: operator, body: { tenant: HELD } });
  assert.equal(again.status, 409, again.text);

  const held = await enqueue(HELD, `${fake.url}/held`);
  // queued after the held one, so a claim that did not hold it would take it first
  const later = await enqueue(FREE, `${fake.url}/later`);
  await waitFor('the later request to be sent', async () => (await request(later)).status === 'succeeded');
  assert.deepEqual(await request(held), { status: 'pending', attempts: 0 }, 'held: never claimed, still queued');
  assert.equal(fake.requests('/held').length, 0, 'never sent');
  const status = await http('GET', '/rpc/queue_status', { headers: operator });
  assert.ok(status.json.find((x) => x.queue === 'http').held >= 1);

  const resumed = await http('POST', '/rpc/resume_sends', { headers: operator, body: { tenant: HELD } });
  assert.equal(resumed.status, 200, resumed.text);
  assert.equal(resumed.json, 1);
  await waitFor('the held request to be sent', async () => (await request(held)).status === 'succeeded');
  assert.equal(fake.requests('/held').length, 1, 'sent once');

  const events = await q(`SELECT event_type, actor FROM ventros.outbox
                           WHERE tenant_id = $1 AND event_type IN ('project.sends_paused', 'project.sends_resumed')
                           ORDER BY seq DESC LIMIT 2`, [HELD]);
  assert.deepEqual(events.reverse(), [
    { event_type: 'project.sends_paused', actor: 'ops-alice' },
    { event_type: 'project.sends_resumed', actor: 'ops-alice' },
  ]);
});

test('dead letters are listed with filters and replayed over /rpc', async () => {
  const id = await enqueue(FREE, `${fake.url}/dead`);
  await waitFor('the request to be sent', async () => (await request(id)).status === 'succeeded');
  await q("UPDATE ventros.http_requests SET status = 'dead', last_error = 'HTTP 503' WHERE id = $1", [id]);
  const list = await http('GET', `/rpc/dead_letters?queue=http&tenant=${FREE}&type=op.test`, { headers: operator });
  assert.equal(list.status, 200, list.text);
  assert.ok(list.json.some((x) => x.id === id && x.last_error === 'HTTP 503'));
  const bad = await http('GET', '/rpc/dead_letters?queue=mail', { headers: operator });
  assert.equal(bad.status, 400, bad.text);
  const replay = await http('POST', '/rpc/replay_dead_letters', { headers: operator, body: { queue: 'http', ids: [id] } });
  assert.equal(replay.status, 200, replay.text);
  assert.equal(replay.json, 1);
  await waitFor('the replayed request to be sent again', async () => (await request(id)).status === 'succeeded');
  assert.equal(fake.requests('/dead').length, 2, 'sent once more');
  const [e] = await q(`SELECT actor, payload FROM ventros.outbox WHERE tenant_id = $1
                        AND event_type = 'project.dead_letters_replayed' ORDER BY seq DESC LIMIT 1`, [FREE]);
  assert.equal(e.actor, 'ops-alice');
  assert.deepEqual(e.payload.ids, [id]);
});
