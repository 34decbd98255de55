// The automation actions send_template and call_webhook over real servers:
// an inbound WhatsApp message commits; the automation executor (a background
// worker woken at that commit) runs the rule; the HTTP dispatcher delivers
//   - the template message to the WhatsApp Cloud API stand-in (fakes/graph.mjs),
//     in the Cloud API's template format (design channels.md), and
//   - the webhook call to a subscriber stand-in (fakes/subscriber.mjs), which
//     verifies X-Ventros-Signature as docs/webhooks.md tells receivers to.
// The poll interval is ten minutes: deliveries depend on the wake-ups at commit.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { startGraph } from './fakes/graph.mjs';
import { startSubscriber } from './fakes/subscriber.mjs';
import { waitFor as waitUntil } from './wait.mjs';
import { alterSystem, resetSystem } from './settings.mjs';

const TENANT = 'tactions';
const TOKEN = 'EAAG-actions-token';
const PHONE_ID = '106540352242999';
const SECRET = 'whsec_actions_it_0123456789';
let db;
let graph;
let sub;
let channel;
let hook;

const settings = {
  'ventros.http_allow_hosts': '127.0.0.1/32',
  'ventros.http_poll_interval': '600000',
  'ventros.http_connect_timeout': '2000',
};

async function q(sql, params = []) {
  return (await db.query(sql, params)).rows;
}

async function lastRequests() {
  const rows = await q(`SELECT purpose, url, status, attempts, response_status, last_error, handler_error
                          FROM ventros.http_requests WHERE tenant_id = $1 ORDER BY created_at DESC LIMIT 4`, [TENANT]);
  const runs = await q('SELECT outcome, error, actions_done FROM ventros.automation_runs WHERE tenant_id = $1', [TENANT]);
  return `last requests: ${JSON.stringify(rows).slice(0, 2000)}; runs: ${JSON.stringify(runs).slice(0, 1000)}`;
}
const waitFor = (what, fn) => waitUntil(what, fn, { describe: lastRequests });

before(async () => {
  db = new pg.Client({ connectionString: process.env.VENTROS_PGURL });
  await db.connect();
  await alterSystem(db, settings);
  graph = await startGraph({ tokens: [TOKEN] });
  sub = await startSubscriber({ secrets: [SECRET] });
  await q(`SELECT ventros.create_tenant('${TENANT}', 'Automation actions')`);
  await q(`SET ventros.tenant = '${TENANT}'`);
  [{ id: channel }] = await q('SELECT id FROM ventros.create_channel($1, $2, config => $3)', ['Cloud', 'whatsapp',
    { phone_number_id: PHONE_ID, waba_id: '102290129340999', access_token: TOKEN, graph_base_url: graph.url, graph_version: 'v23.0' }]);
  await q(`SELECT ventros.upsert_whatsapp_template($1, 'order_update', 'pt_BR', 'APPROVED', $2)`,
    [channel, JSON.stringify([{ type: 'BODY', text: 'Olá {{1}}, seu pedido {{2}} saiu.' }])]);
  // The worker applies the reload asynchronously: probe until a send to the
  // (now allow-listed) stand-in succeeds.
  const [{ contact_id: probe }] = await q(`SELECT contact_id FROM ventros.receive_message($1, '16505550000', 'probe', channel_message_id => 'wamid.PROBE')`,
                                          [channel]);
  await waitFor('the dispatcher to reach the stand-in', async () => {
    const [m] = await q(`SELECT id FROM ventros.send_message($1, $2, 'probe', source => 'trigger')`, [channel, probe]);
    return (await waitFor(`probe ${m.id}`, async () => {
      const [x] = await q('SELECT status FROM ventros.messages WHERE id = $1', [m.id]);
      return x.status !== 'queued' ? x : null;
    })).status === 'sent';
  });
  [{ id: hook }] = await q(`SELECT id FROM ventros.create_webhook_subscription('Orders', $1, '{custom.never}', secret => $2)`,
                           [`${sub.url}/orders`, SECRET]);
});

after(async () => {
  await resetSystem(db, settings);
  await db.end();
  await graph?.close();
  await sub?.close();
});

test('a rule sends a template to the Cloud API stand-in and calls a webhook, signed, through the dispatcher', async () => {
  const components = [{ type: 'body', parameters: [{ type: 'text', text: 'Ana' }, { type: 'text', text: '#42' }] }];
  const [{ id: rule }] = await q(`SELECT id FROM ventros.create_automation('Order status', 'message.received', $1, $2, automation_type => 'event')`,
    [JSON.stringify([{ type: 'send_template', params: { template_name: 'order_update', template_language: 'pt_BR', template_components: components } },
                     { type: 'call_webhook', params: { webhook_subscription_id: hook, body: { order: '#42' } } }]),
     JSON.stringify([{ keyword: ['pedido'] }])]);
  const [inbound] = await q(`SELECT * FROM ventros.receive_message($1, '5511955554444', 'Cadê meu pedido?', channel_message_id => 'wamid.IN42')`,
                            [channel]);
  const [{ event_id: eventId }] = await q(`SELECT event_id FROM ventros.outbox WHERE aggregate_id = $1 AND event_type = 'message.created'`,
                                          [inbound.id]);

  // the Cloud API stand-in receives the template, in its format
  const sent = await waitFor('the Cloud API stand-in to receive the template', async () =>
    graph.requests(`/v23.0/${PHONE_ID}/messages`).find((r) => JSON.parse(r.body_text).type === 'template'));
  assert.equal(sent.headers.authorization, `Bearer ${TOKEN}`);
  assert.deepEqual(JSON.parse(sent.body_text), {
    messaging_product: 'whatsapp', recipient_type: 'individual', to: '5511955554444', type: 'template',
    template: { name: 'order_update', language: { code: 'pt_BR' }, components },
  });

  // the subscriber receives the call, signed with the subscription's secret
  const call = await waitFor('the subscriber to receive the webhook call', async () => sub.requests('/orders')[0]);
  assert.equal(call.method, 'POST');
  assert.equal(call.signature.valid, true, 'the signature verifies with the shared secret');
  assert.equal(call.signature.fresh, true, 't is within 5 minutes of reception');
  assert.equal(call.headers['x-ventros-event-id'], eventId);
  const event = JSON.parse(call.body_text);
  assert.equal(event.type, 'com.ventros.message.created');
  assert.equal(event.id, eventId);
  assert.deepEqual(event.data, { order: '#42', automation_id: rule });

  // the run, its delivery and its message, as the database tells them
  const [run] = await q('SELECT outcome, actions_done FROM ventros.automation_runs WHERE automation_id = $1 AND event_id = $2', [rule, eventId]);
  assert.equal(run.outcome, 'executed');
  assert.deepEqual(run.actions_done.map((a) => a.type), ['send_template', 'call_webhook']);
  assert.equal(call.headers['x-ventros-delivery-id'], run.actions_done[1].delivery_id);
  const message = await waitFor('the template message to be sent', async () => {
    const [m] = await q('SELECT * FROM ventros.messages WHERE id = $1', [run.actions_done[0].message_id]);
    return m.status === 'sent' ? m : null;
  });
  assert.equal(message.text, 'Olá Ana, seu pedido #42 saiu.');
  assert.equal(message.source, 'trigger');
  await waitFor('the delivery to succeed', async () =>
    (await q('SELECT status FROM ventros.webhook_delivery_log WHERE id = $1', [run.actions_done[1].delivery_id]))[0]?.status === 'succeeded');
  assert.equal(sub.requests('/orders').length, 1, 'one call');
});
