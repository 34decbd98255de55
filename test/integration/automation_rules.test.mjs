// An automation rule over real servers: a customer's WhatsApp message (a
// signed WAHA webhook through ventros-http) contains a keyword; after the
// message commits, the automation executor (a background worker woken at
// that commit) runs the rule: it tags the contact and replies through
// send_message, and the dispatcher delivers the reply to the WAHA stand-in.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { BASE } from './http_helpers.mjs';
import { wahaTenant } from './waha_tenant.mjs';
import { emitWaha, wahaMessage } from './fakes/emit.mjs';
import { waitFor } from './wait.mjs';

const TENANT = 'tauto';
let t;
let waha;
let q;
let secret;
let channel;
let rule;

before(async () => {
  t = await wahaTenant({ tenant: TENANT, name: 'Automation rules', channelName: 'AR WAHA', apiKey: 'ar-key' });
  ({ q, waha, channel, secret } = t);
  [{ id: rule }] = await q(`SELECT id FROM ventros.create_automation('Price keyword', 'message.received', $1, $2, automation_type => 'event')`,
    [JSON.stringify([{ type: 'add_tag', params: { tag: 'price_lead' } },
                     { type: 'send_message', params: { text: 'Hi {{contact.name}}! Our price list is on its way.' } }]),
     JSON.stringify([{ keyword: ['price', 'preço'] }])]);
});

after(async () => {
  await t?.close();
});

test('a WhatsApp message with a keyword: the rule tags the contact and replies, and WAHA receives the reply', async () => {
  const phone = '55119' + String(crypto.randomInt(1e7, 1e8));
  const inbound = wahaMessage({ from: phone, body: 'Qual o preço do plano?', pushName: 'Rita' });
  const r = await emitWaha(BASE, channel, inbound, { hmacKey: secret });
  assert.equal(r.status, 200, r.text);

  const first = await waitFor('the inbound message', async () =>
    (await q('SELECT * FROM ventros.messages WHERE channel_id = $1 AND channel_message_id = $2', [channel, inbound.payload.id]))[0]);
  const contact = await waitFor('the rule to tag the contact', async () => {
    const [row] = await q('SELECT * FROM ventros.contacts WHERE id = $1', [first.contact_id]);
    return row.tags.includes('price_lead') ? row : null;
  });
  assert.deepEqual(contact.tags, ['price_lead']);
  const accepted = await waitFor('WAHA to receive the reply', async () =>
    waha.sent().find((x) => x.request.text === 'Hi Rita! Our price list is on its way.'));
  assert.equal(accepted.request.chatId, `${phone}@c.us`);

  const [run] = await q('SELECT outcome, actions_done FROM ventros.automation_runs WHERE automation_id = $1', [rule]);
  assert.equal(run.outcome, 'executed');
  assert.deepEqual(run.actions_done.map((a) => a.type), ['add_tag', 'send_message']);
  const events = await q(`SELECT event_type FROM ventros.outbox WHERE aggregate_id = $1 AND event_type LIKE 'automation.%ed' ORDER BY seq`, [rule]);
  assert.deepEqual(events.map((e) => e.event_type), ['automation.created', 'automation.triggered', 'automation.executed']);
  const [reply] = await q('SELECT * FROM ventros.messages WHERE contact_id = $1 AND from_me', [first.contact_id]);
  assert.equal(reply.source, 'trigger');
  await waitFor('the reply to be sent', async () => (await q('SELECT status FROM ventros.messages WHERE id = $1', [reply.id]))[0].status === 'sent');
});

test('a message without the keyword: the rule is skipped by its condition, nothing is sent', async () => {
  const phone = '55119' + String(crypto.randomInt(1e7, 1e8));
  const inbound = wahaMessage({ from: phone, body: 'Bom dia!', pushName: 'Caio' });
  const r = await emitWaha(BASE, channel, inbound, { hmacKey: secret });
  assert.equal(r.status, 200, r.text);
  const first = await waitFor('the inbound message', async () =>
    (await q('SELECT * FROM ventros.messages WHERE channel_id = $1 AND channel_message_id = $2', [channel, inbound.payload.id]))[0]);
  const [ev] = await q(`SELECT event_id FROM ventros.outbox WHERE aggregate_id = $1 AND event_type = 'message.created'`, [first.id]);
  const run = await waitFor('the run log', async () =>
    (await q('SELECT outcome FROM ventros.automation_runs WHERE automation_id = $1 AND event_id = $2', [rule, ev.event_id]))[0]);
  assert.equal(run.outcome, 'skipped');
  const replies = await q('SELECT count(*)::int AS n FROM ventros.messages WHERE contact_id = $1 AND from_me', [first.contact_id]);
  assert.equal(replies[0].n, 0);
});
