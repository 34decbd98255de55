// Outbound channel traffic end to end: ventros.send_message writes the
// provider request, the real HTTP dispatcher delivers it to the fake WAHA
// and fake Graph servers on loopback (fakes/waha.mjs, fakes/graph.mjs), and
// the message.send handler moves the message to sent with the provider's id,
// or failed.  Also: retries of 500 / 429 Retry-After / connection resets /
// Graph throttling, a final Graph 131047, WAHA's 422 until the session works,
// media downloads (WAHA, and the Cloud API's two steps) and the template sync.
//
// The poll interval is ten minutes, as in dispatcher.test.mjs: deliveries
// depend on the wake-up at commit.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import pg from 'pg';
import { startWaha } from './fakes/waha.mjs';
import { startGraph, graphError } from './fakes/graph.mjs';
import { waitFor as waitUntil } from './wait.mjs';
import { alterSystem, resetSystem } from './settings.mjs';

const TENANT = 'send_it';
const WAHA_KEY = 'waha-secret';
const TOKEN = 'EAAG-cloud-token';
let db;
let waha;
let graph;
let agent;
const ch = {};
const contact = {};

const settings = {
  'ventros.http_allow_hosts': '127.0.0.1/32',
  'ventros.http_backoff_min': '200ms',
  'ventros.http_backoff_max': '1000',
  'ventros.http_poll_interval': '600000',
  'ventros.http_timeout': '3000',
  'ventros.http_connect_timeout': '2000',
};

async function q(sql, params = []) {
  return (await db.query(sql, params)).rows;
}

// the last requests, to see why a wait timed out
async function lastRequests() {
  const rows = await q(`SELECT purpose, url, status, attempts, response_status, last_error, handler_error,
                               encode(substr(response_body, 1, 300), 'escape') AS body
                          FROM ventros.http_requests ORDER BY created_at DESC LIMIT 4`);
  return `last requests: ${JSON.stringify(rows).slice(0, 3000)}`;
}
const waitFor = (what, fn) => waitUntil(what, fn, { describe: lastRequests });

async function send(channel, to, text, extra = {}) {
  const names = Object.keys(extra);
  const args = names.map((n, i) => `${n} => $${i + 5}`).join(', ');
  const [m] = await q(`SELECT * FROM ventros.send_message($1, $2, $3, $4${args ? ', ' + args : ''})`,
                      [channel, to, text, agent, ...Object.values(extra)]);
  return m;
}

async function settled(messageId) {
  return waitFor(`message ${messageId} to be sent or failed`, async () => {
    const [m] = await q('SELECT * FROM ventros.messages WHERE id = $1', [messageId]);
    return m.status !== 'queued' ? m : null;
  });
}

async function request(messageId, purpose = 'message.send') {
  const [r] = await q('SELECT * FROM ventros.http_requests WHERE correlation_id = $1 AND purpose = $2', [messageId, purpose]);
  return r;
}

before(async () => {
  db = new pg.Client({ connectionString: process.env.VENTROS_PGURL });
  await db.connect();
  await alterSystem(db, settings);
  waha = await startWaha({ apiKey: WAHA_KEY });
  graph = await startGraph({ tokens: [TOKEN] });
  await q(`SELECT ventros.create_tenant('${TENANT}', 'Send IT')`);
  await q(`SET ventros.tenant = '${TENANT}'`);
  const mk = async (name, type, config) =>
    (await q('SELECT id FROM ventros.create_channel($1, $2, config => $3)', [name, type, config]))[0].id;
  ch.waha = await mk('WAHA', 'waha', { base_url: waha.url, session: 'acme-sales', api_key: WAHA_KEY });
  ch.wa = await mk('Cloud', 'whatsapp', { phone_number_id: '106540352242922', waba_id: '102290129340398',
                                          access_token: TOKEN, graph_base_url: graph.url, graph_version: 'v23.0' });
  ch.ig = await mk('IG', 'instagram', { ig_account_id: '17841400000000000', access_token: TOKEN, graph_base_url: graph.url });
  ch.fb = await mk('FB', 'messenger', { page_id: '106000000000001', access_token: TOKEN, graph_base_url: graph.url });
  [{ id: agent }] = await q(`SELECT id FROM ventros.create_agent('Agent IT', email => 'agent-it@example.com')`);
  const inbound = async (channel, sender, text, id, extra = '') =>
    (await q(`SELECT * FROM ventros.receive_message($1, $2, $3, channel_message_id => $4${extra})`, [channel, sender, text, id]))[0];
  contact.ana = (await inbound(ch.waha, '5511999998888@c.us', 'Oi', 'false_in_1')).contact_id;
  contact.sheena = (await inbound(ch.wa, '16505551234', 'Does it come in blue?', 'wamid.IN1')).contact_id;
  contact.igu = (await inbound(ch.ig, '1234567890123456', 'Tem azul?', 'ig.in.1')).contact_id;
  contact.fbu = (await inbound(ch.fb, '6000000000000001', 'hello', 'm_in_1')).contact_id;
  // The worker applies the reload asynchronously: probe until a send to the
  // (now allow-listed) fake succeeds.
  await waitFor('the dispatcher to reach the fakes', async () => {
    const m = await send(ch.waha, contact.ana, 'probe');
    return (await settled(m.id)).status === 'sent';
  });
  waha.reset();
});

after(async () => {
  await resetSystem(db, settings);
  await db.end();
  await waha.close();
  await graph.close();
});

test('a WAHA reply arrives with its body and API key; the message becomes sent with WAHA\'s id', async () => {
  const m = await send(ch.waha, contact.ana, 'Olá! Temos sim.');
  assert.equal(m.status, 'queued');
  const done = await settled(m.id);
  assert.equal(done.status, 'sent');
  const [got] = waha.requests('/api/sendText');
  assert.equal(got.method, 'POST');
  assert.equal(got.headers['x-api-key'], WAHA_KEY);
  assert.equal(got.headers['content-type'], 'application/json');
  assert.deepEqual(JSON.parse(got.body_text),
                   { session: 'acme-sales', chatId: '5511999998888@c.us', text: 'Olá! Temos sim.', reply_to: null, linkPreview: true });
  const [accepted] = waha.sent();
  assert.match(accepted.message.id, /^true_5511999998888@c\.us_[0-9A-F]{20}$/);
  assert.equal(done.channel_message_id, accepted.message.id);
  const events = await q(`SELECT event_type FROM ventros.outbox WHERE aggregate_id = $1 ORDER BY seq`, [m.id]);
  assert.deepEqual(events.map((e) => e.event_type), ['message.created', 'message.sent']);
});

test('a WhatsApp Cloud reply (with reply context) arrives with the Bearer token; sent with the wamid', async () => {
  const [inbound] = await q(`SELECT id FROM ventros.messages WHERE channel_message_id = 'wamid.IN1'`);
  const m = await send(ch.wa, contact.sheena, 'Yes, it comes in blue.', { reply_to_id: inbound.id });
  const done = await settled(m.id);
  assert.equal(done.status, 'sent');
  const [got] = graph.requests('/v23.0/106540352242922/messages');
  assert.equal(got.headers.authorization, `Bearer ${TOKEN}`);
  assert.deepEqual(JSON.parse(got.body_text), {
    messaging_product: 'whatsapp', recipient_type: 'individual', to: '16505551234', type: 'text',
    text: { preview_url: false, body: 'Yes, it comes in blue.' }, context: { message_id: 'wamid.IN1' },
  });
  assert.equal(done.channel_message_id, graph.sent().at(-1).id);
  assert.match(done.channel_message_id, /^wamid\./);
});

test('Instagram and Messenger replies go to the IGSID / PSID; sent with the message_id', async () => {
  const a = await send(ch.ig, contact.igu, 'Temos sim!');
  const b = await send(ch.fb, contact.fbu, null, { content_type: 'image', media_url: 'https://files.example.com/a.jpg' });
  const [da, dbm] = [await settled(a.id), await settled(b.id)];
  assert.equal(da.status, 'sent');
  assert.equal(dbm.status, 'sent');
  const [ig] = graph.requests('/v23.0/17841400000000000/messages');
  assert.deepEqual(JSON.parse(ig.body_text),
                   { recipient: { id: '1234567890123456' }, messaging_type: 'RESPONSE', message: { text: 'Temos sim!' } });
  const [fb] = graph.requests('/v23.0/106000000000001/messages');
  assert.deepEqual(JSON.parse(fb.body_text).message,
                   { attachment: { type: 'image', payload: { url: 'https://files.example.com/a.jpg', is_reusable: true } } });
  const ids = graph.sent().map((s) => s.id);
  assert.ok(ids.includes(da.channel_message_id) && ids.includes(dbm.channel_message_id));
});

test('500, 429 with Retry-After and a connection reset are retried, then the message is sent', async () => {
  waha.script({ method: 'POST', path: '/api/sendImage',
                responses: [{ status: 500, body: { statusCode: 500, exception: { message: 'boom', name: 'Error' } } },
                            { status: 429, headers: { 'Retry-After': '1' } }, { drop: true }] });
  const m = await send(ch.waha, contact.ana, 'Nossa loja', { content_type: 'image', media_url: 'https://files.example.com/foto.jpg' });
  const done = await settled(m.id);
  assert.equal(done.status, 'sent');
  const got = waha.requests('/api/sendImage');
  assert.equal(got.length, 4);
  assert.deepEqual(got.slice(0, 3).map((g) => g.response.status ?? 'drop'), [500, 429, 'drop']);
  assert.ok(got[2].received_at - got[1].received_at >= 1000, 'the retry after 429 waited for Retry-After');
  // A reset on a kept-alive connection is retried by libcurl itself within
  // the same attempt (see dispatcher.test.mjs), or by the dispatcher.
  const { attempts } = await request(m.id);
  assert.ok(attempts === 3 || attempts === 4, `attempts ${attempts}`);
  assert.equal(done.channel_message_id, waha.sent().at(-1).message.id);
});

test('Graph throttling (130429, answered 400) is retried; 131047 fails the message at once with the Graph error', async () => {
  graph.script({ method: 'POST', path: '/v23.0/106540352242922/messages',
                 responses: [graphError(130429), graphError(131047)] });
  const a = await send(ch.wa, contact.sheena, 'first');
  const da = await settled(a.id);
  // The first answer (130429) was retried; its retry got the scripted 131047.
  assert.equal(da.status, 'failed');
  assert.equal((await request(a.id)).attempts, 2);
  assert.match(da.error, /^Graph error 131047\/2494010: \(#131047\) Re-engagement message/);
  assert.match(da.error, /more than 24 hours/);
  graph.script({ method: 'POST', path: '/v23.0/106540352242922/messages', responses: [graphError(131047)] });
  const before = graph.requests('/v23.0/106540352242922/messages').length;
  const b = await send(ch.wa, contact.sheena, 'second');
  const dbm = await settled(b.id);
  assert.equal(dbm.status, 'failed');
  const r = await request(b.id);
  assert.equal(r.status, 'failed');
  assert.equal(r.attempts, 1, '131047 is not retried');
  assert.equal(graph.requests('/v23.0/106540352242922/messages').length, before + 1);
  const failed = await q(`SELECT count(*)::int AS n FROM ventros.outbox WHERE aggregate_id = $1 AND event_type = 'message.failed'`, [b.id]);
  assert.equal(failed[0].n, 1);
});

test('WAHA answers 422 while the session is not WORKING: retried until it works', async () => {
  await waha.setSession('acme-sales', 'SCAN_QR_CODE');
  const m = await send(ch.waha, contact.ana, 'depois do QR');
  await waitFor('a 422 from the fake', async () => waha.requests('/api/sendText').some((r) => r.response?.status === 422));
  await waha.setSession('acme-sales', 'WORKING');
  const done = await settled(m.id);
  assert.equal(done.status, 'sent');
  assert.ok((await request(m.id)).attempts >= 2);
});

test('a wrong WAHA API key fails the message without retrying', async () => {
  const [c] = await q(`SELECT * FROM ventros.channels WHERE id = $1`, [ch.waha]);
  await q(`SELECT ventros.update_channel($1, $2, $3)`, [ch.waha, c.version, { config: { ...c.config, api_key: 'wrong' } }]);
  try {
    const m = await send(ch.waha, contact.ana, 'x');
    const done = await settled(m.id);
    assert.equal(done.status, 'failed');
    assert.equal(done.error, 'HTTP 401: Unauthorized');
    assert.equal((await request(m.id)).attempts, 1);
  } finally {
    // the stored config holds no secret (sql/68_credentials_channels.sql): give the key back
    const [c2] = await q(`SELECT * FROM ventros.channels WHERE id = $1`, [ch.waha]);
    await q(`SELECT ventros.update_channel($1, $2, $3)`, [ch.waha, c2.version, { config: { ...c.config, api_key: WAHA_KEY } }]);
  }
});

test('media download: a WAHA-served file, fetched with the API key, stored with type, size and sha256', async () => {
  // 300 KB: above the dispatcher's general cap (ventros.http_max_response_size, 64 KB),
  // within the media cap (ventros.media_max_size) that media downloads ask for
  const bytes = crypto.randomBytes(300 * 1024);
  await waha.addFile('acme-sales', 'AC94411C.jpeg', 'image/jpeg', bytes);
  const [m] = await q(`SELECT * FROM ventros.receive_message($1, '5511999998888@c.us', 'segue a foto', 'image', 'false_media_1',
                        media_url => $2, media_mimetype => 'image/jpeg')`, [ch.waha, `${waha.url}/api/files/acme-sales/AC94411C.jpeg`]);
  await q('SELECT ventros.request_media_download($1)', [m.id]);
  const media = await waitFor('the media to be stored', async () =>
    (await q(`SELECT * FROM ventros.message_media WHERE message_id = $1 AND status <> 'requested'`, [m.id]))[0]);
  assert.equal(media.status, 'downloaded', media.error);
  assert.equal(media.content_type, 'image/jpeg');
  assert.equal(Number(media.size), 300 * 1024);
  assert.equal(media.sha256, crypto.createHash('sha256').update(bytes).digest('hex'));
  assert.ok(Buffer.compare(media.data, bytes) === 0);
  const [got] = waha.requests('/api/files/acme-sales/AC94411C.jpeg');
  assert.equal(got.headers['x-api-key'], WAHA_KEY);
});

test('media download: Cloud API lookup then the expiring URL, both with the Bearer token; sha256 checked', async () => {
  const bytes = crypto.randomBytes(2000);
  await graph.addMedia('1003383421387256', 'image/jpeg', bytes);
  const [m] = await q(`SELECT * FROM ventros.receive_message($1, '16505551234', 'this one', 'image', 'wamid.MEDIA1',
                        media_url => 'https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1', metadata => $2)`,
                      [ch.wa, { media_id: '1003383421387256' }]);
  await q('SELECT ventros.request_media_download($1)', [m.id]);
  const media = await waitFor('the media to be stored', async () =>
    (await q(`SELECT * FROM ventros.message_media WHERE message_id = $1 AND status <> 'requested'`, [m.id]))[0]);
  assert.equal(media.status, 'downloaded', media.error);
  assert.equal(Number(media.size), 2000);
  assert.ok(Buffer.compare(media.data, bytes) === 0);
  const [lookup] = graph.requests('/v23.0/1003383421387256');
  const [download] = graph.requests('/media/1003383421387256');
  assert.equal(lookup.headers.authorization, `Bearer ${TOKEN}`);
  assert.equal(download.headers.authorization, `Bearer ${TOKEN}`);
  const [after] = await q('SELECT metadata FROM ventros.messages WHERE id = $1', [m.id]);
  assert.equal(after.metadata.media_download.status, 'downloaded');
  // A provider sha256 that does not match the bytes fails the download.
  await graph.addMedia('2222', 'image/jpeg', bytes, 'ff'.repeat(32));
  const [m2] = await q(`SELECT * FROM ventros.receive_message($1, '16505551234', NULL, 'image', 'wamid.MEDIA2',
                         media_url => 'https://lookaside.fbsbx.com/x', metadata => $2)`, [ch.wa, { media_id: '2222' }]);
  await q('SELECT ventros.request_media_download($1)', [m2.id]);
  const failed = await waitFor('the download to fail', async () => {
    const [x] = await q('SELECT metadata FROM ventros.messages WHERE id = $1', [m2.id]);
    return x.metadata.media_download?.status === 'failed' ? x.metadata.media_download : null;
  });
  assert.match(failed.error, /sha256 mismatch/);
});

test('media download: an expired Cloud API media URL fails the download; asking again looks the media up anew', async () => {
  const bytes = crypto.randomBytes(500);
  await graph.addMedia('3333', 'audio/ogg', bytes);
  await graph.setMediaExpiry(-1); // every URL handed out is already expired
  const [m] = await q(`SELECT * FROM ventros.receive_message($1, '16505551234', NULL, 'voice', 'wamid.MEDIA3',
                        media_url => 'https://lookaside.fbsbx.com/z', metadata => $2)`, [ch.wa, { media: { id: '3333' } }]);
  await q('SELECT ventros.request_media_download($1)', [m.id]);
  const failed = await waitFor('the download to fail', async () =>
    (await q(`SELECT * FROM ventros.message_media WHERE message_id = $1 AND status = 'failed'`, [m.id]))[0]);
  assert.equal(failed.error, 'HTTP 404');
  assert.equal(failed.data, null);
  assert.equal(graph.requests('/media/3333')[0].response.status, 404);
  await graph.setMediaExpiry(300000);
  await q('SELECT ventros.request_media_download($1)', [m.id]);
  const media = await waitFor('the media to be stored', async () =>
    (await q(`SELECT * FROM ventros.message_media WHERE message_id = $1 AND status = 'downloaded'`, [m.id]))[0]);
  assert.ok(Buffer.compare(media.data, bytes) === 0);
  assert.equal(graph.requests('/v23.0/3333').length, 2, 'the second request looked the media up again');
  const [after] = await q('SELECT media_mimetype, metadata FROM ventros.messages WHERE id = $1', [m.id]);
  assert.equal(after.media_mimetype, 'audio/ogg');
  assert.equal(after.metadata.media_download.size, 500);
});

test('template sync over two pages, then a template send outside the window with header, body and button variables', async () => {
  const list = [
    { name: 'order_update', language: 'pt_BR', status: 'APPROVED', category: 'UTILITY', id: '9001',
      components: [{ type: 'HEADER', format: 'IMAGE' }, { type: 'BODY', text: 'Olá {{1}}, seu pedido {{2}} saiu.' },
                   { type: 'BUTTONS', buttons: [{ type: 'URL', text: 'Rastrear', url: 'https://acme.example/t/{{1}}' }] }] },
    ...Array.from({ length: 120 }, (_, i) => ({ name: `bulk_${i}`, language: 'en_US', status: 'APPROVED', category: 'MARKETING',
                                                 id: String(9100 + i), components: [{ type: 'BODY', text: 'Hi' }] })),
  ];
  await graph.setTemplates('102290129340398', list);
  const [{ id: reqId }] = await q('SELECT ventros.sync_whatsapp_templates($1) AS id', [ch.wa]);
  await waitFor('both pages to be synced', async () =>
    (await q(`SELECT count(*)::int AS n FROM ventros.whatsapp_templates WHERE channel_id = $1`, [ch.wa]))[0].n === 121);
  const pages = graph.requests('/v23.0/102290129340398/message_templates');
  assert.equal(pages.length, 2);
  assert.equal(pages[1].query.after, Buffer.from('100').toString('base64'));
  assert.equal(pages[0].headers.authorization, `Bearer ${TOKEN}`);
  assert.equal((await q('SELECT status FROM ventros.http_requests WHERE id = $1', [reqId]))[0].status, 'succeeded');

  // A contact who never wrote on the Cloud channel: free-form refused, template accepted.
  const [{ id: stranger }] = await q(`SELECT id FROM ventros.create_contact('Stranger', phone => '+5511955554444')`);
  await assert.rejects(send(ch.wa, stranger, 'hi'), (e) => e.code === '22023' && /template/.test(e.hint));
  const components = [
    { type: 'header', parameters: [{ type: 'image', image: { link: 'https://files.example.com/p.jpg' } }] },
    { type: 'body', parameters: [{ type: 'text', text: 'Ana' }, { type: 'text', text: '#42' }] },
    { type: 'button', sub_type: 'url', index: '0', parameters: [{ type: 'text', text: '42' }] },
  ];
  const m = await send(ch.wa, stranger, null, { template_name: 'order_update', template_language: 'pt_BR',
                                                template_components: JSON.stringify(components) });
  assert.equal(m.text, 'Olá Ana, seu pedido #42 saiu.');
  const done = await settled(m.id);
  assert.equal(done.status, 'sent');
  const got = graph.requests('/v23.0/106540352242922/messages').at(-1);
  assert.deepEqual(JSON.parse(got.body_text), {
    messaging_product: 'whatsapp', recipient_type: 'individual', to: '5511955554444', type: 'template',
    template: { name: 'order_update', language: { code: 'pt_BR' }, components },
  });
  await assert.rejects(send(ch.wa, stranger, null, { template_name: 'order_update', template_language: 'pt_BR',
                                                     template_components: JSON.stringify(components.slice(1)) }),
                       (e) => e.code === '22023' && /header expects 1 parameter/.test(e.message));
});

test('no http_requests row or view a tenant administrator may read holds a channel token', async () => {
  // after the sends, media downloads and template sync above on WAHA, Cloud API, Instagram and Messenger
  const views = (await q(`SELECT DISTINCT v.oid::regclass::text AS rel
                            FROM pg_depend d JOIN pg_rewrite rw ON rw.oid = d.objid JOIN pg_class v ON v.oid = rw.ev_class
                           WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = 'ventros.http_requests'::regclass
                             AND v.oid <> 'ventros.http_requests'::regclass
                             AND has_table_privilege('ventros_admin', v.oid, 'SELECT')`)).map((r) => r.rel);
  let rows = 0;
  await db.query('BEGIN');
  try {
    await db.query('SET LOCAL ROLE ventros_admin');
    for (const rel of ['ventros.http_requests', ...views]) {
      const got = await q(`SELECT row_to_json(x)::text AS j FROM ${rel} x`);
      rows += got.length;
      for (const { j } of got) {
        assert.ok(!j.includes(TOKEN) && !j.includes(WAHA_KEY), `${rel} shows a channel token: ${j.slice(0, 300)}`);
      }
    }
  } finally {
    await db.query('ROLLBACK');
  }
  const purposes = (await q('SELECT DISTINCT purpose FROM ventros.http_requests WHERE tenant_id = $1', [TENANT])).map((r) => r.purpose);
  for (const p of ['message.send', 'media.lookup', 'media.download', 'template.sync']) assert.ok(purposes.includes(p), `a ${p} request was read`);
  assert.ok(rows > 10, `rows read: ${rows}`);
});
