// Assignment by a rule over real servers: customers' WhatsApp messages (signed
// WAHA webhooks through ventros-http) contain a keyword; after each commits,
// the automation executor runs the rule, which tags the contact, puts the
// session on a team whose next agent (round robin) gets it, and replies; the
// WAHA stand-in receives the replies.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { BASE } from './http_helpers.mjs';
import { wahaTenant } from './waha_tenant.mjs';
import { emitWaha, wahaMessage } from './fakes/emit.mjs';
import { waitFor } from './wait.mjs';

const TENANT = 'tassign';
let t;
let waha;
let q;
let secret;
let channel;
let team;
let agents;

before(async () => {
  t = await wahaTenant({ tenant: TENANT, name: 'Assignment rules', channelName: 'AS WAHA', apiKey: 'as-key' });
  ({ q, waha, channel, secret } = t);
  [{ id: team }] = await q(`SELECT id FROM ventros.create_team('Support ' || gen_random_uuid(), 'round_robin')`);
  agents = [];
  for (const name of ['Ana', 'Bruno']) {
    const [{ id }] = await q(`SELECT id FROM ventros.create_agent($1 || ' ' || gen_random_uuid(), email => gen_random_uuid() || '@agents.example')`, [name]);
    await q('SELECT ventros.set_agent_presence($1, $2)', [id, 'available']);
    await q('SELECT ventros.add_team_member($1, $2)', [team, id]);
    agents.push(id);
  }
  await q(`SELECT ventros.create_automation('Support keyword', 'message.received', $1, $2, automation_type => 'event')`,
    [JSON.stringify([{ type: 'add_tag', params: { tag: 'support' } },
                     { type: 'assign_team', params: { team_id: team } },
                     { type: 'send_message', params: { text: 'Hi {{contact.name}}, an agent is on it.' } }]),
     JSON.stringify([{ keyword: ['suporte', 'help'] }])]);
});

after(async () => {
  await t?.close();
});

async function inbound(body, pushName) {
  const phone = '55119' + String(crypto.randomInt(1e7, 1e8));
  const msg = wahaMessage({ from: phone, body, pushName });
  const r = await emitWaha(BASE, channel, msg, { hmacKey: secret });
  assert.equal(r.status, 200, r.text);
  const first = await waitFor('the inbound message', async () =>
    (await q('SELECT * FROM ventros.messages WHERE channel_id = $1 AND channel_message_id = $2', [channel, msg.payload.id]))[0]);
  const session = await waitFor('the rule to assign the session', async () =>
    (await q('SELECT * FROM ventros.sessions WHERE id = $1 AND assigned_agent_id IS NOT NULL', [first.session_id]))[0]);
  return { phone, first, session };
}

test('keyword messages: the rule tags, assigns the team\'s next agent in turn, and replies through WAHA', async () => {
  const one = await inbound('Preciso de suporte, por favor', 'Rita');
  const two = await inbound('help! my order is late', 'Caio');
  assert.equal(one.session.team_id, team);
  assert.equal(two.session.team_id, team);
  assert.ok(agents.includes(one.session.assigned_agent_id));
  assert.ok(agents.includes(two.session.assigned_agent_id));
  assert.notEqual(one.session.assigned_agent_id, two.session.assigned_agent_id, 'round robin: the second goes to the other agent');
  for (const x of [one, two]) {
    const [ev] = await q(`SELECT payload FROM ventros.outbox WHERE aggregate_id = $1 AND event_type = 'session.agent_assigned'`, [x.session.id]);
    assert.equal(ev.payload.reason, 'round_robin');
    assert.equal(ev.payload.team_id, team);
    const [contact] = await q('SELECT tags FROM ventros.contacts WHERE id = $1', [x.first.contact_id]);
    assert.deepEqual(contact.tags, ['support']);
  }
  await waitFor('WAHA to receive both replies', async () => {
    const sent = waha.sent().map((s) => s.request);
    return sent.some((r) => r.chatId === `${one.phone}@c.us` && r.text === 'Hi Rita, an agent is on it.')
      && sent.some((r) => r.chatId === `${two.phone}@c.us` && r.text === 'Hi Caio, an agent is on it.');
  });
});
