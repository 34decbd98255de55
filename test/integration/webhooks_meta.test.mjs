// Meta webhooks end to end over real HTTP (channels.md §1.10, §2-§4): the
// WhatsApp Cloud API, Instagram and Messenger payloads, signed with
// X-Hub-Signature-256 over Meta's \u-escaped bytes, become messages,
// contacts and sessions; statuses apply in order only; batches split;
// repeated deliveries are one message; bad signatures are 401 and counted.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setup, BASE, asTenant, inboxRows, rejections, messageOf } from './webhooks_helpers.mjs';
import {
  emitMeta, post, metaHeaders, metaJson, webhookUrl, whatsappMessages, whatsappText, whatsappImage, whatsappAudio,
  whatsappDocument, whatsappStatuses, wamid, metaMessaging, messagingMessage, messengerDelivery, messengerRead, instagramRead, mid,
} from './fakes/emit.mjs';

let env;
let W;
let I;
let M;
before(async () => {
  env = await setup();
  ({ whatsapp: W, instagram: I, messenger: M } = env.channels.ta);
});
after(async () => { await env.stop(); });

const send = (ch, provider, payload, opts = {}) => emitMeta(BASE, provider, ch.id, payload, { appSecret: ch.config.app_secret, ...opts });

// An outbound message of ours with a provider id, status sent (as a completed
// send leaves it): written directly, so that no dispatcher is involved.
async function outbound(ch, contactPhoneOrNull, providerId, psid = null) {
  const rows = await asTenant(env.c, ch.tenant, `
    WITH c AS (SELECT ventros.upsert_contact_by_identity($2, $3, 'Outbound Test', channel_id => $1) AS id)
    INSERT INTO ventros.messages (project_id, channel_id, contact_id, from_me, content_type, text, channel_message_id,
                                  status, agent_id, source, "timestamp")
    SELECT ch.project_id, ch.id, c.id, true, 'text', 'nossa resposta', $4, 'sent', ventros.system_agent_id('default'),
           'manual', now() - interval '1 minute'
    FROM c, ventros.channels ch WHERE ch.id = $1
    RETURNING *`,
  [ch.id, psid ? (ch.type === 'instagram' ? 'igsid' : 'psid') : 'phone', psid ?? contactPhoneOrNull, providerId]);
  return rows[0];
}

const statusOf = async (ch, id) => (await messageOf(env.c, ch, id))[0]?.status;

test('WhatsApp Cloud text: contact from wa_id and profile name, session, inbound message', async () => {
  const item = whatsappText({ body: 'Does it come in another color? ção 😀' });
  const payload = whatsappMessages({ phoneNumberId: W.config.phone_number_id, waId: '16505550001', name: 'Sheena Nelson', messages: [item] });
  const r = await send(W, 'whatsapp', payload);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.status, 'accepted');
  const [m] = await messageOf(env.c, W, item.id);
  assert.ok(m);
  assert.equal(m.text, 'Does it come in another color? ção 😀');
  assert.equal(m.content_type, 'text');
  assert.equal(m.from_me, false);
  assert.equal(m.contact_phone, '+16505550001');
  assert.equal(m.contact_name, 'Sheena Nelson');
  assert.ok(m.session_id);
  assert.equal(m.session_contact_id, m.contact_id);
  assert.equal(new Date(m.timestamp).getTime(), Number(item.timestamp) * 1000);
});

test('WhatsApp Cloud media: image, voice and document record the media id and type', async () => {
  const items = [[whatsappImage(), 'image', 'image/jpeg'], [whatsappAudio(), 'voice', 'audio/ogg; codecs=opus'],
    [whatsappDocument(), 'document', 'application/pdf']];
  for (const [item, type, mime] of items) {
    const r = await send(W, 'whatsapp', whatsappMessages({ phoneNumberId: W.config.phone_number_id, waId: '16505550002', messages: [item] }));
    assert.equal(r.status, 200, r.text);
    const [m] = await messageOf(env.c, W, item.id);
    assert.ok(m, type);
    assert.equal(m.content_type, type);
    assert.equal(m.media_mimetype, mime);
    assert.ok(JSON.stringify(m).includes(item[item.type].id), 'the provider media id is recorded');
  }
});

test('WhatsApp Cloud batch: several messages in one delivery, each stored and processed once', async () => {
  const items = [whatsappText({ body: 'um' }), whatsappText({ body: 'dois' }), whatsappText({ body: 'três' })];
  const payload = whatsappMessages({ phoneNumberId: W.config.phone_number_id, waId: '16505550003', messages: items });
  assert.equal((await send(W, 'whatsapp', payload)).status, 200);
  for (const it of items) assert.equal((await messageOf(env.c, W, it.id)).length, 1);
  // Meta redelivers the batch: all duplicates
  assert.deepEqual((await send(W, 'whatsapp', payload)).json, { status: 'duplicate' });
  // and a new batch overlapping it: only the new item is new
  const extra = whatsappText({ body: 'quatro' });
  const overlap = whatsappMessages({ phoneNumberId: W.config.phone_number_id, waId: '16505550003', messages: [items[2], extra] });
  assert.equal((await send(W, 'whatsapp', overlap)).json.status, 'accepted');
  assert.equal((await messageOf(env.c, W, extra.id)).length, 1);
  assert.equal((await messageOf(env.c, W, items[2].id)).length, 1);
});

test('WhatsApp Cloud statuses out of order: read first, then late sent/delivered change nothing; failed after read too', async () => {
  const id = wamid();
  await outbound(W, '+16505550004', id);
  const st = (status, extra = {}) => whatsappStatuses({ phoneNumberId: W.config.phone_number_id, statuses: [{ id, status, recipient: '16505550004', ...extra }] });
  for (const s of ['read', 'delivered', 'sent']) assert.equal((await send(W, 'whatsapp', st(s))).status, 200);
  assert.equal(await statusOf(W, id), 'read');
  const failed = await send(W, 'whatsapp', st('failed', { errors: [{ code: 131026, title: 'Message undeliverable', message: 'Message undeliverable', error_data: { details: 'x' } }] }));
  assert.equal(failed.status, 200);
  assert.equal(await statusOf(W, id), 'read');
  // a batch of statuses for two messages in one delivery, in order this time
  const a = wamid();
  const b = wamid();
  await outbound(W, '+16505550005', a);
  await outbound(W, '+16505550005', b);
  const batch = whatsappStatuses({ phoneNumberId: W.config.phone_number_id, statuses: [
    { id: a, status: 'read', recipient: '16505550005' }, { id: b, status: 'read', recipient: '16505550005' }] });
  assert.equal((await send(W, 'whatsapp', batch)).status, 200);
  assert.equal(await statusOf(W, a), 'read');
  assert.equal(await statusOf(W, b), 'read');
});

test('WhatsApp Cloud failed status: the message fails with the code and details', async () => {
  const id = wamid();
  await outbound(W, '+16505550006', id);
  const r = await send(W, 'whatsapp', whatsappStatuses({ phoneNumberId: W.config.phone_number_id, statuses: [{ id, status: 'failed', recipient: '16505550006',
    errors: [{ code: 131026, title: 'Message undeliverable', message: 'Message undeliverable', error_data: { details: 'Unable to deliver' } }] }] }));
  assert.equal(r.status, 200);
  const [m] = await messageOf(env.c, W, id);
  assert.equal(m.status, 'failed');
  assert.match(m.error, /131026/);
  // a late delivered after failed changes nothing
  await send(W, 'whatsapp', whatsappStatuses({ phoneNumberId: W.config.phone_number_id, statuses: [{ id, status: 'delivered', recipient: '16505550006' }] }));
  assert.equal(await statusOf(W, id), 'failed');
});

test('WhatsApp Cloud: the same delivery 100 times at once is one message and 100 answers of 200', async () => {
  const item = whatsappText({ body: 'cem vezes' });
  const body = metaJson(whatsappMessages({ phoneNumberId: W.config.phone_number_id, waId: '16505550007', messages: [item] }));
  const answers = await Promise.all(Array.from({ length: 100 }, () =>
    post(webhookUrl(BASE, 'whatsapp', W.id), body, metaHeaders(body, { appSecret: W.config.app_secret }))));
  assert.deepEqual(answers.map((a) => a.status), Array(100).fill(200));
  assert.equal(answers.filter((a) => a.json.status === 'accepted').length, 1);
  assert.equal(answers.filter((a) => a.json.status === 'duplicate').length, 99);
  assert.equal((await messageOf(env.c, W, item.id)).length, 1);
});

test('Instagram: text with an image attachment, from the IGSID; an echo is outbound; a read receipt', async () => {
  const igsid = '1234567890000001';
  const msg = messagingMessage({ accountId: I.config.ig_account_id, sender: igsid, id: mid('aWdf'), text: 'Oi, tem esse modelo em azul?',
    attachments: [{ type: 'image', payload: { url: 'https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1&signature=x' } }] });
  const r = await send(I, 'instagram', metaMessaging({ object: 'instagram', accountId: I.config.ig_account_id, events: [msg] }));
  assert.equal(r.status, 200, r.text);
  const [m] = await messageOf(env.c, I, msg.message.mid);
  assert.ok(m);
  assert.equal(m.from_me, false);
  assert.equal(m.content_type, 'image');
  assert.equal(m.text, 'Oi, tem esse modelo em azul?', 'the text is the caption');
  assert.equal(m.media_url, 'https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1&signature=x');
  const ids = await asTenant(env.c, 'ta', "SELECT value FROM ventros.contact_identities WHERE contact_id = $1 AND identity_type = 'igsid'", [m.contact_id]);
  assert.deepEqual(ids.map((x) => x.value), [igsid]);
  assert.ok(m.session_id);
  const echo = messagingMessage({ accountId: I.config.ig_account_id, sender: igsid, id: mid('aWdf'), text: 'Temos sim!', isEcho: true });
  assert.equal((await send(I, 'instagram', metaMessaging({ object: 'instagram', accountId: I.config.ig_account_id, events: [echo] }))).status, 200);
  const [e] = await messageOf(env.c, I, echo.message.mid);
  assert.ok(e, 'echo stored');
  assert.equal(e.from_me, true);
  assert.equal(e.contact_id, m.contact_id);
  // the user reads our reply (messaging_seen names the mid)
  const read = instagramRead({ accountId: I.config.ig_account_id, sender: igsid, id: echo.message.mid });
  assert.equal((await send(I, 'instagram', metaMessaging({ object: 'instagram', accountId: I.config.ig_account_id, events: [read] }))).status, 200);
  assert.equal(await statusOf(I, echo.message.mid), 'read');
});

test('Messenger: text from the PSID, file attachment, echo, delivery mids and read watermark', async () => {
  const psid = '6000000000000101';
  const text = messagingMessage({ accountId: M.config.page_id, sender: psid, text: 'hello, world!' });
  const file = messagingMessage({ accountId: M.config.page_id, sender: psid,
    attachments: [{ type: 'file', payload: { url: 'https://cdn.fbsbx.com/v/t59.2708-21/orcamento.pdf?x=1' } }] });
  const r = await send(M, 'messenger', metaMessaging({ object: 'page', accountId: M.config.page_id, events: [text, file] }));
  assert.equal(r.status, 200, r.text);
  const [t] = await messageOf(env.c, M, text.message.mid);
  assert.equal(t.text, 'hello, world!');
  assert.equal(t.from_me, false);
  const [f] = await messageOf(env.c, M, file.message.mid);
  assert.equal(f.content_type, 'document');
  assert.equal(f.media_url, 'https://cdn.fbsbx.com/v/t59.2708-21/orcamento.pdf?x=1');
  assert.equal(f.contact_id, t.contact_id);
  // echo of a page reply
  const echo = messagingMessage({ accountId: M.config.page_id, sender: psid, text: 'thanks!', isEcho: true });
  assert.equal((await send(M, 'messenger', metaMessaging({ object: 'page', accountId: M.config.page_id, events: [echo] }))).status, 200);
  const [e] = await messageOf(env.c, M, echo.message.mid);
  assert.equal(e.from_me, true);
  // statuses of an outbound message of ours: delivery by mid, read by watermark
  const out = mid();
  await outbound(M, null, out, psid);
  const dlv = messengerDelivery({ accountId: M.config.page_id, sender: psid, mids: [out] });
  const read = messengerRead({ accountId: M.config.page_id, sender: psid, watermark: Date.now() + 1000 });
  // read arrives first, the delivery after it: the status stays read
  assert.equal((await send(M, 'messenger', metaMessaging({ object: 'page', accountId: M.config.page_id, events: [read] }))).status, 200);
  assert.equal((await send(M, 'messenger', metaMessaging({ object: 'page', accountId: M.config.page_id, events: [dlv] }))).status, 200);
  assert.equal(await statusOf(M, out), 'read');
});

test('Meta signatures: missing, wrong, malformed, legacy sha1 only, another channel\'s secret: 401, counted, nothing stored', async () => {
  for (const [ch, provider] of [[W, 'whatsapp'], [I, 'instagram'], [M, 'messenger']]) {
    const before = await rejections(env.c, ch);
    const inboxBefore = (await inboxRows(env.c, ch)).length;
    const body = metaJson(provider === 'whatsapp'
      ? whatsappMessages({ phoneNumberId: W.config.phone_number_id, messages: [whatsappText()] })
      : metaMessaging({ object: provider === 'instagram' ? 'instagram' : 'page', accountId: ch.config.ig_account_id ?? ch.config.page_id,
        events: [messagingMessage({ accountId: ch.config.ig_account_id ?? ch.config.page_id, sender: '7000000000000001', text: 'x' })] }));
    const good = metaHeaders(body, { appSecret: ch.config.app_secret });
    const other = env.channels.ta[provider === 'whatsapp' ? 'instagram' : 'whatsapp'].config.app_secret;
    const variants = [
      { 'Content-Type': 'application/json' },
      { ...good, 'X-Hub-Signature-256': 'sha256=' + '0'.repeat(64) },
      { ...good, 'X-Hub-Signature-256': good['X-Hub-Signature-256'].slice(7) },		// no "sha256=" prefix
      { ...good, 'X-Hub-Signature-256': 'sha1=' + good['X-Hub-Signature-256'].slice(7) },
      { 'Content-Type': 'application/json', 'X-Hub-Signature': good['X-Hub-Signature'] },	// legacy header only
      metaHeaders(body, { appSecret: other }),
    ];
    for (const h of variants) {
      const r = await post(webhookUrl(BASE, provider, ch.id), body, h);
      assert.equal(r.status, 401, `${provider} ${JSON.stringify(h)}`);
      assert.deepEqual(r.json, { error: 'invalid_signature' });
    }
    assert.equal(await rejections(env.c, ch), before + variants.length, provider);
    assert.equal((await inboxRows(env.c, ch)).length, inboxBefore, `${provider}: nothing stored`);
    // uppercase hex is the same signature (lowercase on both sides before comparing)
    const upper = { ...good, 'X-Hub-Signature-256': 'sha256=' + good['X-Hub-Signature-256'].slice(7).toUpperCase() };
    assert.equal((await post(webhookUrl(BASE, provider, ch.id), body, upper)).status, 200, provider);
  }
});

test('poisoned Meta payloads: 200, stored with their error, nothing else disturbed', async () => {
  const poisons = [
    { object: 'whatsapp_business_account', entry: [{ id: '1', changes: [{ field: 'messages', value: { metadata: { phone_number_id: W.config.phone_number_id }, messages: [{ id: wamid(), type: 'text' }] } }] }] },
    { object: 'whatsapp_business_account', entry: [{ id: '1', changes: [{ field: 'messages', value: { metadata: { phone_number_id: W.config.phone_number_id }, messages: [{ from: '16505550009', id: wamid(), timestamp: 'yesterday', type: 'hologram', hologram: {} }] } }] }] },
    { object: 'whatsapp_business_account', entry: 'not an array' },
    { object: 'something_else' },
  ];
  for (const p of poisons) {
    const what = JSON.stringify(p).slice(0, 100);
    const r = await send(W, 'whatsapp', p);
    assert.equal(r.status, 200, `${what}: ${r.text}`);
    assert.equal(r.json.status, 'accepted', what);
    const rows = await asTenant(env.c, 'ta', 'SELECT status, last_error, message_id FROM ventros.inbox WHERE delivery_id = $1', [r.json.inbox_id]);
    assert.ok(rows.length >= 1, what);
    for (const row of rows) {
      assert.ok(['failed', 'unparsed', 'ignored'].includes(row.status), `${what}: ${row.status}`);
      if (row.status === 'failed') assert.ok(row.last_error, `${what}: a failure keeps its error`);
      assert.equal(row.message_id, null, what);
    }
  }
  const good = whatsappText({ body: 'ainda funciona' });
  assert.equal((await send(W, 'whatsapp', whatsappMessages({ phoneNumberId: W.config.phone_number_id, waId: '16505550009', messages: [good] }))).status, 200);
  assert.equal((await messageOf(env.c, W, good.id)).length, 1);
});
