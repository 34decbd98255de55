// Direct writes of contacts are held to the plan's limit of active contacts,
// as the commands are (sql/65_usage_metering.sql, ventros.contacts_plan_limit;
// docs/billing.md): once a send made the last contact the plan allows active
// (billing.limit_reached), POST /contacts answers 402 with the same
// PostgREST error (VN020) as /rpc/create_contact, and writes nothing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, db, http, auth } from './http_helpers.mjs';

const TENANT = 'plan_lim_http';
const PLAN = 'price_PlanLimHttp';
let server;
let c;
const ids = {};

async function asTenant(sql, params = []) {
  await c.query('BEGIN');
  try {
    await c.query("SELECT set_config('ventros.tenant', $1, true)", [TENANT]);
    const r = await c.query(sql, params);
    await c.query('COMMIT');
    return r.rows;
  } catch (e) {
    await c.query('ROLLBACK');
    throw e;
  }
}

before(async () => {
  c = await db();
  await c.query('SELECT ventros.create_tenant($1, $2)', [TENANT, 'Plan limits over HTTP']);
  // a plan of this tenant only (its subscription's price), allowing one active contact
  await c.query(`SELECT ventros.set_billing_plan($1, 'One contact', '{"active_contacts": 1}')`, [PLAN]);
  await asTenant(`SELECT ventros.create_subscription(
                     (ventros.create_billing_account('Plan lim', 'plan-lim@example.com', gen_random_uuid())).id,
                     'sub_PlanLimHttp', $1, 'active', now() - interval '1 day', now() + interval '29 days')`, [PLAN]);
  [{ id: ids.channel }] = await asTenant("SELECT (ventros.create_channel('Plan WAHA', 'waha')).id");
  [{ id: ids.agent }] = await asTenant("SELECT id FROM ventros.create_agent('Plan agent', email => 'plan-agent@example.com')");
  [{ id: ids.ana }] = await asTenant("SELECT (ventros.create_contact('Ana', phone => '+5511955557001')).id");
  server = await startServer();
});

after(async () => {
  await server?.stop();
  await c?.end();
});

const h = () => auth('ventros_admin', TENANT);
const contacts = async () => Number((await asTenant('SELECT count(*) AS n FROM ventros.contacts'))[0].n);
const limitEvents = async () => (await c.query(
  "SELECT payload FROM ventros.outbox WHERE tenant_id = $1 AND event_type = 'billing.limit_reached'", [TENANT])).rows;

test('below the limit POST /contacts creates the contact', async () => {
  const r = await http('POST', '/contacts', { headers: { ...h(), Prefer: 'return=representation' }, body: { name: 'Bia' } });
  assert.equal(r.status, 201, r.text);
  assert.equal(r.json[0].name, 'Bia');
});

test('once a send reaches the limit, POST /contacts answers 402 VN020 as /rpc/create_contact does, writing nothing', async () => {
  const sent = await http('POST', '/rpc/send_message', { headers: h(),
    body: { channel_id: ids.channel, contact_id: ids.ana, agent_id: ids.agent, text: 'the one contact of the plan' } });
  assert.equal(sent.status, 200, sent.text);
  const events = await limitEvents();
  assert.deepEqual(events.map((e) => [e.payload.metric, e.payload.limit]), [['active_contacts', 1]], 'billing.limit_reached once');
  const before = await contacts();

  const direct = await http('POST', '/contacts', { headers: h(), body: { name: 'Cris', phone: '+5511955557003' } });
  const command = await http('POST', '/rpc/create_contact', { headers: h(), body: { name: 'Cris', phone: '+5511955557003' } });
  assert.equal(command.status, 402, command.text);
  assert.equal(direct.status, 402, direct.text);
  for (const r of [direct, command]) {
    assert.equal(r.json.code, 'VN020');
    assert.equal(r.json.message, 'plan limit reached: 1 active contacts');
    assert.match(r.json.details, /^1 of 1 used in the period/);
    assert.equal(r.json.hint, 'Upgrade the plan, or wait for the next billing period.');
  }
  // several rows in one request: refused as a whole
  const bulk = await http('POST', '/contacts', { headers: h(), body: [{ name: 'Dani' }, { name: 'Eva' }] });
  assert.equal(bulk.status, 402, bulk.text);
  assert.equal(await contacts(), before, 'nothing written');
  assert.equal((await limitEvents()).length, 1, 'no second billing.limit_reached');
});
