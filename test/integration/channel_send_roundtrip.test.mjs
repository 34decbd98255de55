// The whole loop over real HTTP: a customer writes (a signed webhook into
// ventros-http), an agent replies with ventros.send_message, the dispatcher
// delivers the reply to the fake provider, the message becomes sent with the
// provider's id, and the provider's signed status webhooks for that id
// (posted by the fake, as the provider would) move it to delivered and read.
// WAHA (X-Webhook-Hmac sha512, message.ack) and WhatsApp Cloud
// (X-Hub-Signature-256, statuses).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { startServer, db, BASE } from './http_helpers.mjs';
import { emitWaha, emitMeta, wahaMessage, whatsappMessages, whatsappText } from './fakes/emit.mjs';
import { startWaha } from './fakes/waha.mjs';
import { startGraph } from './fakes/graph.mjs';
import { waitFor } from './wait.mjs';
import { asTenant } from './webhooks_helpers.mjs';
import { alterSystem, resetSystem } from './settings.mjs';

const TENANT = 'ta';
const settings = {
  'ventros.http_allow_hosts': '127.0.0.1/32',
  'ventros.http_backoff_min': '200ms',
  'ventros.http_backoff_max': '1000',
  'ventros.http_poll_interval': '600000',
};
let server;
let c;
let waha;
let graph;
let agent;
const ch = {};
const hex = (n) => crypto.randomBytes(n).toString('hex');

const q = (sql, params = []) => asTenant(c, TENANT, sql, params);


const message = async (id) => (await q('SELECT * FROM ventros.messages WHERE id = $1', [id]))[0];
const sentMessage = (id) => waitFor(`message ${id} to be sent`, async () => {
  const m = await message(id);
  assert.notEqual(m.status, 'failed', m.error);
  return m.status === 'sent' ? m : null;
});

before(async () => {
  server = await startServer({ PGOPTIONS: '-c ventros.inbox_processing=inline' });
  c = await db();
  await alterSystem(c, settings);
  waha = await startWaha({ apiKey: 'rt-key' });
  graph = await startGraph({ tokens: ['rt-token'] });
  ch.waha = { secret: hex(16) };
  ch.wa = { secret: hex(16), phone: String(100000000000000 + crypto.randomInt(1e9)) };
  [{ id: ch.waha.id }] = await q(`SELECT id FROM ventros.create_channel('RT WAHA', 'waha', config => $1)`,
    [{ base_url: waha.url, session: 'acme-sales', api_key: 'rt-key', webhook_secret: ch.waha.secret }]);
  [{ id: ch.wa.id }] = await q(`SELECT id FROM ventros.create_channel('RT Cloud', 'whatsapp', config => $1)`,
    [{ phone_number_id: ch.wa.phone, waba_id: '102290129340398', access_token: 'rt-token', app_secret: ch.wa.secret,
       verify_token: 'v', graph_base_url: graph.url }]);
  [{ id: agent }] = await q(`SELECT id FROM ventros.create_agent('RT agent', email => $1)`, [`rt-${hex(4)}@example.com`]);
  // the dispatcher applies the reload asynchronously: wait until it reaches the fake
  await waitFor('the dispatcher to reach the fake', async () => {
    // (the fake answers 401 without the API key: reaching it is what counts)
    const [{ n }] = await q(`SELECT count(*)::int AS n FROM ventros.http_requests WHERE url LIKE $1 AND response_status = 401`,
                            [`${waha.url}/probe%`]);
    if (n > 0) return true;
    await q(`SELECT ventros.enqueue_http_request($1, 'GET', max_attempts => 1)`, [`${waha.url}/probe`]);
    await new Promise((ok) => setTimeout(ok, 100));
    return false;
  });
});

after(async () => {
  await resetSystem(c, settings);
  await c.end();
  await server.stop();
  await waha.close();
  await graph.close();
});

test('WAHA: inbound webhook, reply through send_message, then signed acks make it delivered and read', async () => {
  const phone = '55119' + String(crypto.randomInt(1e7, 1e8));
  const inbound = wahaMessage({ from: phone, body: 'Vocês entregam hoje?', pushName: 'Rita' });
  const r = await emitWaha(BASE, ch.waha.id, inbound, { hmacKey: ch.waha.secret });
  assert.equal(r.status, 200, r.text);
  const [first] = await q('SELECT * FROM ventros.messages WHERE channel_id = $1 AND channel_message_id = $2', [ch.waha.id, inbound.payload.id]);
  assert.ok(first, 'the customer\'s message is stored');

  const [reply] = await q('SELECT * FROM ventros.send_message($1, $2, $3, $4, reply_to_id => $5)',
                          [ch.waha.id, first.contact_id, 'Entregamos sim!', agent, first.id]);
  const sent = await sentMessage(reply.id);
  const accepted = waha.sent().find((x) => x.request.text === 'Entregamos sim!');
  assert.ok(accepted, 'the fake WAHA accepted the reply');
  assert.equal(accepted.request.chatId, `${phone}@c.us`);
  assert.equal(accepted.request.reply_to, inbound.payload.id);
  assert.equal(sent.channel_message_id, accepted.message.id);

  const delivered = await waha.emit({ base: BASE, channel_id: ch.waha.id, hmac_key: ch.waha.secret, ack: { id: accepted.message.id, ack: 2 } });
  assert.equal(delivered.status, 200, JSON.stringify(delivered.body));
  assert.equal((await message(reply.id)).status, 'delivered');
  const read = await waha.emit({ base: BASE, channel_id: ch.waha.id, hmac_key: ch.waha.secret, ack: { id: accepted.message.id, ack: 3 } });
  assert.equal(read.status, 200);
  const done = await message(reply.id);
  assert.equal(done.status, 'read');
  assert.ok(done.sent_at && done.delivered_at && done.read_at);
  // a late DEVICE ack changes nothing; a forged one is refused
  await waha.emit({ base: BASE, channel_id: ch.waha.id, hmac_key: ch.waha.secret, ack: { id: accepted.message.id, ack: 2 } });
  assert.equal((await message(reply.id)).status, 'read');
  const forged = await waha.emit({ base: BASE, channel_id: ch.waha.id, hmac_key: 'wrong', ack: { id: accepted.message.id, ack: 4 } });
  assert.equal(forged.status, 401);
  const events = await q(`SELECT event_type FROM ventros.outbox WHERE aggregate_id = $1 ORDER BY seq`, [reply.id]);
  assert.deepEqual(events.map((e) => e.event_type), ['message.created', 'message.sent', 'message.delivered', 'message.read']);
});

test('WhatsApp Cloud: inbound webhook, reply inside the window, then signed statuses make it delivered and read', async () => {
  const waId = '1650' + String(crypto.randomInt(1e6, 1e7));
  const inbound = whatsappMessages({ phoneNumberId: ch.wa.phone, waId, name: 'Sheena', messages: [whatsappText({ body: 'Blue?' })] });
  const r = await emitMeta(BASE, 'whatsapp', ch.wa.id, inbound, { appSecret: ch.wa.secret });
  assert.equal(r.status, 200, r.text);
  const inboundId = inbound.entry[0].changes[0].value.messages[0].id;
  const [first] = await q('SELECT * FROM ventros.messages WHERE channel_id = $1 AND channel_message_id = $2', [ch.wa.id, inboundId]);
  assert.ok(first, 'the customer\'s message is stored');

  const [reply] = await q('SELECT * FROM ventros.send_message($1, $2, $3, $4, reply_to_id => $5)',
                          [ch.wa.id, first.contact_id, 'Yes, in blue.', agent, first.id]);
  const sent = await sentMessage(reply.id);
  const accepted = graph.sent().find((x) => x.request.text?.body === 'Yes, in blue.');
  assert.ok(accepted, 'the fake Graph accepted the reply');
  assert.equal(accepted.request.to, waId);
  assert.deepEqual(accepted.request.context, { message_id: inboundId });
  assert.equal(sent.channel_message_id, accepted.id);

  const statuses = (list) => graph.emit({ base: BASE, provider: 'whatsapp', channel_id: ch.wa.id, app_secret: ch.wa.secret,
                                          statuses: { phone_number_id: ch.wa.phone, list } });
  // read before delivered (Meta reorders): read wins, the late delivered changes nothing
  assert.equal((await statuses([{ id: accepted.id, status: 'read' }])).status, 200);
  assert.equal((await message(reply.id)).status, 'read');
  assert.equal((await statuses([{ id: accepted.id, status: 'delivered' }])).status, 200);
  assert.equal((await message(reply.id)).status, 'read');
  const forged = await graph.emit({ base: BASE, provider: 'whatsapp', channel_id: ch.wa.id, app_secret: 'nope',
                                    statuses: { phone_number_id: ch.wa.phone, list: [{ id: accepted.id, status: 'failed' }] } });
  assert.equal(forged.status, 401);
  assert.equal((await message(reply.id)).status, 'read');
});
