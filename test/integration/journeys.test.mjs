// Sequences and campaigns over real servers (docs/automation.md).  A tag
// starts a sequence: the automation executor (a background worker) runs the
// sequence's own rule after the tag commits and enrolls the contact; the
// scheduler's tick, called here with a chosen instant (the step's time, so
// no real-time tick can race it: the step is an hour away), sends the first
// step and the WAHA stand-in receives it; the contact's reply (a signed WAHA
// webhook through ventros-http) exits the sequence, and a later tick sends
// nothing.  A campaign walks broadcast -> wait -> condition -> sequence,
// its start a day away so that only the ticks of this test run it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { BASE } from './http_helpers.mjs';
import { wahaTenant } from './waha_tenant.mjs';
import { emitWaha, wahaMessage } from './fakes/emit.mjs';
import { waitFor } from './wait.mjs';

const TENANT = 'tjourney';
let t;
let waha;
let q;
let secret;
let channel;

// A customer writes in on WhatsApp: its contact, with a session on the channel.
async function customer(name) {
  const phone = '55119' + String(crypto.randomInt(1e7, 1e8));
  const inbound = wahaMessage({ from: phone, body: 'Oi!', pushName: name });
  const r = await emitWaha(BASE, channel, inbound, { hmacKey: secret });
  assert.equal(r.status, 200, r.text);
  const m = await waitFor(`${name}'s message`, async () =>
    (await q('SELECT * FROM ventros.messages WHERE channel_id = $1 AND channel_message_id = $2', [channel, inbound.payload.id]))[0]);
  return { phone, id: m.contact_id };
}

async function sequence(name, trigger, triggerData, steps) {
  const [{ id }] = await q('SELECT id FROM ventros.create_sequence($1, $2, $3)', [name, trigger, triggerData]);
  for (const [i, [text, delay]] of steps.entries()) {
    await q('SELECT ventros.add_sequence_step($1, $2, $3, $4, $5)', [id, i, `Step ${i}`, { type: 'text', content: text }, delay]);
  }
  await q(`SELECT ventros.set_sequence_status($1, (ventros.get_sequence($1)).version, 'active')`, [id]);
  return id;
}

const wahaTexts = (phone) => waha.sent().filter((x) => x.request.chatId === `${phone}@c.us`).map((x) => x.request.text);

before(async () => {
  t = await wahaTenant({ tenant: TENANT, name: 'Journeys', channelName: 'Journeys WAHA', apiKey: 'jr-key' });
  ({ q, waha, channel, secret } = t);
});

after(async () => {
  await t?.close();
});

test('a tag starts a sequence, its first step is sent at its time, the reply exits it', async () => {
  const seq = await sequence('Onboarding', 'tag_added', { tag: 'trial' }, [['Welcome to your trial!', 60], ['Day 2: tips', 60]]);
  const rita = await customer('Rita');
  const [{ version }] = await q('SELECT version FROM ventros.contacts WHERE id = $1', [rita.id]);
  await q(`SELECT ventros.update_contact($1, $2, '{"tags": ["trial"]}')`, [rita.id, version]);

  const enrollment = await waitFor('the executor to enroll the tagged contact', async () =>
    (await q('SELECT * FROM ventros.sequence_enrollments WHERE sequence_id = $1 AND contact_id = $2', [seq, rita.id]))[0]);
  assert.equal(enrollment.status, 'active');
  const due = new Date(enrollment.next_scheduled_at);
  const tickAt = (offset) => q(`SELECT ventros.tick_sequences(next_scheduled_at + $2::interval) FROM ventros.sequence_enrollments
                                 WHERE id = $1`, [enrollment.id, offset]);

  // one second before its time: nothing; at its time: the first step
  await tickAt('-1 second');
  assert.equal((await q(`SELECT count(*)::int AS n FROM ventros.messages WHERE contact_id = $1 AND source = 'sequence'`, [rita.id]))[0].n, 0);
  const [{ tick_sequences: advanced }] = await tickAt('0');
  assert.ok(advanced >= 1);
  await waitFor('WAHA to receive the first step', async () => wahaTexts(rita.phone).includes('Welcome to your trial!'));

  // the reply, signed, through the front
  const reply = wahaMessage({ from: rita.phone, body: 'Thanks, no more please', pushName: 'Rita' });
  const r = await emitWaha(BASE, channel, reply, { hmacKey: secret });
  assert.equal(r.status, 200, r.text);
  const exited = await waitFor('the reply to exit the enrollment', async () => {
    const [e] = await q('SELECT * FROM ventros.sequence_enrollments WHERE id = $1', [enrollment.id]);
    return e.status === 'exited' ? e : null;
  });
  assert.equal(exited.exit_reason, 'replied');

  // the second step's time comes: nothing is sent
  await q('SELECT ventros.tick_sequences($1)', [new Date(due.getTime() + 2 * 3600 * 1000)]);
  assert.equal((await q(`SELECT count(*)::int AS n FROM ventros.messages WHERE contact_id = $1 AND source = 'sequence'`, [rita.id]))[0].n, 1);
  assert.deepEqual(wahaTexts(rita.phone).filter((t) => t.startsWith('Day 2')), []);
});

test('a campaign walks broadcast, wait, condition and sequence', async () => {
  const gold = await customer('Gil');
  const plain = await customer('Pia');
  const [{ version }] = await q('SELECT version FROM ventros.contacts WHERE id = $1', [gold.id]);
  await q(`SELECT ventros.update_contact($1, $2, '{"tags": ["gold"]}')`, [gold.id, version]);
  const drip = await sequence('Gold drip', 'manual', null, [['Gold tip', 120]]);
  const [{ id: list }] = await q(`SELECT id FROM ventros.create_contact_list('Campaign list', is_static => true)`);
  const [{ id: broadcast }] = await q(`SELECT id FROM ventros.create_broadcast('Promo', $1, $2, '{"type": "text", "content": "Promo: 20% off"}')`,
    [list, channel]);
  const start = new Date(Date.now() + 24 * 3600 * 1000);
  const [{ id: campaign }] = await q(`SELECT id FROM ventros.create_campaign('Gold journey', start_date => $1)`, [start]);
  await q(`SELECT ventros.add_campaign_step($1, 0, 'Promo', 'broadcast', $2)`, [campaign, { broadcast_id: broadcast }]);
  await q(`SELECT ventros.add_campaign_step($1, 1, 'Wait', 'wait', '{"minutes": 60}')`, [campaign]);
  await q(`SELECT ventros.add_campaign_step($1, 2, 'Gold?', 'condition', '{"conditions": [{"tag": "gold"}]}')`, [campaign]);
  await q(`SELECT ventros.add_campaign_step($1, 3, 'Drip', 'sequence', $2)`, [campaign, { sequence_id: drip }]);
  await q(`SELECT ventros.set_campaign_status($1, (ventros.get_campaign($1)).version, 'active')`, [campaign]);
  for (const who of [gold, plain]) await q('SELECT ventros.enroll_in_campaign($1, $2)', [campaign, who.id]);

  const [{ tick_campaigns: first }] = await q('SELECT ventros.tick_campaigns($1)', [start]);
  assert.equal(first, 2);
  for (const who of [gold, plain]) {
    await waitFor('WAHA to receive the promo', async () => wahaTexts(who.phone).includes('Promo: 20% off'));
  }
  let [camp] = await q('SELECT * FROM ventros.campaigns WHERE id = $1', [campaign]);
  assert.equal(camp.contacts_reached, 2);
  const [{ tick_campaigns: early }] = await q('SELECT ventros.tick_campaigns($1)', [new Date(start.getTime() + 3599 * 1000)]);
  assert.equal(early, 0, 'the wait is not over');
  const [{ tick_campaigns: later }] = await q('SELECT ventros.tick_campaigns($1)', [new Date(start.getTime() + 3600 * 1000)]);
  assert.equal(later, 2);
  const states = await q('SELECT contact_id, status, exit_reason FROM ventros.campaign_enrollments WHERE campaign_id = $1', [campaign]);
  assert.deepEqual(Object.fromEntries(states.map((s) => [s.contact_id, `${s.status}/${s.exit_reason}`])),
    { [gold.id]: 'completed/null', [plain.id]: 'exited/condition' });
  const [enrolled] = await q('SELECT status FROM ventros.sequence_enrollments WHERE sequence_id = $1 AND contact_id = $2', [drip, gold.id]);
  assert.equal(enrolled.status, 'active');

  // Gil answers: a conversion of the campaign
  const r = await emitWaha(BASE, channel, wahaMessage({ from: gold.phone, body: 'I want it', pushName: 'Gil' }), { hmacKey: secret });
  assert.equal(r.status, 200, r.text);
  camp = await waitFor('the conversion', async () => {
    const [row] = await q('SELECT * FROM ventros.campaigns WHERE id = $1', [campaign]);
    return row.conversions_count === 1 ? row : null;
  });
  assert.equal(camp.contacts_reached, 2);
});
