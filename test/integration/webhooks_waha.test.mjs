// WAHA webhooks end to end over real HTTP (channels.md §1): text, media,
// echo and ack payloads become messages, contacts and sessions; one
// delivery repeated 100 times (in sequence and at once) is one message;
// acks out of order never move a status back; poisoned payloads are stored
// with their error and answered 200; bad signatures are 401 and counted.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setup, BASE, asTenant, inboxRows, rejections, messageOf, createChannel, secret } from './webhooks_helpers.mjs';
import { emitWaha, post, wahaHeaders, wahaMessage, wahaAck, wahaSessionStatus, webhookUrl } from './fakes/emit.mjs';

let env;
let ch;
before(async () => {
  env = await setup();
  ch = env.channels.ta.waha;
});
after(async () => { await env.stop(); });

const send = (payload, opts = {}) => emitWaha(BASE, ch.id, payload, { hmacKey: ch.config.webhook_secret, ...opts });

test('text: a contact (phone, push name), a session and an inbound text message', async () => {
  const msg = wahaMessage({ from: '5511971110001', body: 'Olá! Queria mais informações, por favor.', pushName: 'Ana Alves' });
  const r = await send(msg);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.status, 'accepted');
  const [m] = await messageOf(env.c, ch, msg.payload.id);
  assert.ok(m, 'message stored');
  assert.equal(m.text, 'Olá! Queria mais informações, por favor.');
  assert.equal(m.content_type, 'text');
  assert.equal(m.from_me, false);
  assert.equal(m.contact_phone, '+5511971110001');
  assert.equal(m.contact_name, 'Ana Alves');
  assert.ok(m.session_id, 'in a session');
  assert.equal(m.session_contact_id, m.contact_id);
  assert.equal(m.session_channel_id, ch.id);
  assert.equal(new Date(m.timestamp).getTime(), msg.payload.timestamp * 1000, 'the provider\'s time (seconds)');
  // a second message of the same person continues the contact and the session
  const next = wahaMessage({ from: '5511971110001', body: 'Alguém aí?' });
  assert.equal((await send(next)).status, 200);
  const [m2] = await messageOf(env.c, ch, next.payload.id);
  assert.equal(m2.contact_id, m.contact_id);
  assert.equal(m2.session_id, m.session_id);
  const [inbox] = await asTenant(env.c, 'ta', 'SELECT status, message_id FROM ventros.inbox WHERE id = $1', [r.json.inbox_id]);
  assert.equal(inbox.status, 'processed');
  assert.equal(inbox.message_id, m.id);
});

test('media: image, voice note and document with their URL and type', async () => {
  const cases = [
    [{ url: 'http://waha:3000/api/files/acme-sales/AC94411C453CBE7D20F5EC3EB01DF066.jpeg', mimetype: 'image/jpeg' }, null, 'image', 'segue a foto'],
    [{ url: 'http://waha:3000/api/files/acme-sales/A1.oga', mimetype: 'audio/ogg; codecs=opus' }, 'ptt', 'voice', ''],
    [{ url: 'http://waha:3000/api/files/acme-sales/A2.pdf', mimetype: 'application/pdf', filename: 'orcamento.pdf' }, 'document', 'document', 'orçamento'],
  ];
  for (const [media, mediaType, contentType, body] of cases) {
    const msg = wahaMessage({ from: '5511971110002', body, media, mediaType });
    const r = await send(msg);
    assert.equal(r.status, 200, r.text);
    const [m] = await messageOf(env.c, ch, msg.payload.id);
    assert.ok(m, contentType);
    assert.equal(m.content_type, contentType);
    assert.equal(m.media_url, media.url);
    assert.equal(m.media_mimetype, media.mimetype);
  }
});

test('echo (fromMe) of a message sent from another device: stored once as outbound', async () => {
  const echo = wahaMessage({ from: '5511971110003', fromMe: true, body: 'Respondi pelo celular' });
  const r = await send(echo);
  assert.equal(r.status, 200, r.text);
  const [m] = await messageOf(env.c, ch, echo.payload.id);
  assert.ok(m);
  assert.equal(m.from_me, true);
  assert.equal(m.text, 'Respondi pelo celular');
  assert.equal(m.contact_phone, '+5511971110003', 'the contact is the chat partner, not us');
  assert.deepEqual((await send(echo)).json, { status: 'duplicate' });
});

test('acks out of order: read, then a late delivered and sent change nothing; unknown ids are kept', async () => {
  const echo = wahaMessage({ from: '5511971110004', fromMe: true, body: 'Seu pedido saiu' });
  assert.equal((await send(echo)).status, 200);
  const id = echo.payload.id;
  const status = async () => (await messageOf(env.c, ch, id))[0].status;
  for (const ack of [3, 2, 1, 2]) {
    const r = await send(wahaAck({ id, ack, to: '5511971110004' }));
    assert.equal(r.status, 200, r.text);
  }
  assert.equal(await status(), 'read');
  const [m] = await messageOf(env.c, ch, id);
  assert.ok(m.read_at);
  // the same ack twice is a duplicate
  assert.deepEqual((await send(wahaAck({ id, ack: 3, to: '5511971110004' }))).json, { status: 'duplicate' });
  // an ack for a message we do not know (yet): 200, kept for later matching
  const unknown = await send(wahaAck({ id: 'true_5511971110004@c.us_DEADBEEF', ack: 2 }));
  assert.equal(unknown.status, 200);
  assert.equal(unknown.json.status, 'accepted');
});

test('the same delivery 100 times in sequence: one message, 100 answers of 200 (1 accepted, 99 duplicate)', async () => {
  const msg = wahaMessage({ from: '5511971110005', body: 'repetida' });
  const body = JSON.stringify(msg);
  const answers = [];
  for (let i = 0; i < 100; i++) {
    // WAHA's retries carry a new request id and timestamp, the same body
    answers.push(await post(webhookUrl(BASE, 'waha', ch.id), body, wahaHeaders(body, { hmacKey: ch.config.webhook_secret })));
  }
  assert.deepEqual(answers.map((a) => a.status), Array(100).fill(200));
  assert.equal(answers.filter((a) => a.json.status === 'accepted').length, 1);
  assert.equal(answers.filter((a) => a.json.status === 'duplicate').length, 99);
  assert.equal(answers[0].json.status, 'accepted');
  assert.equal((await messageOf(env.c, ch, msg.payload.id)).length, 1);
  assert.equal((await inboxRows(env.c, ch, 'i.dedupe_key = $2', [`msg:${msg.payload.id}`])).length, 1);
});

test('the same delivery 100 times at once: one message, one contact, 100 answers of 200', async () => {
  const from = '5511971110006';
  const msg = wahaMessage({ from, body: 'concorrente' });
  const body = JSON.stringify(msg);
  const answers = await Promise.all(Array.from({ length: 100 }, () =>
    post(webhookUrl(BASE, 'waha', ch.id), body, wahaHeaders(body, { hmacKey: ch.config.webhook_secret }))));
  assert.deepEqual(answers.map((a) => a.status), Array(100).fill(200), answers.map((a) => a.text).find((t) => !t.includes('"status"')));
  assert.equal(answers.filter((a) => a.json.status === 'accepted').length, 1);
  assert.equal(answers.filter((a) => a.json.status === 'duplicate').length, 99);
  assert.equal((await messageOf(env.c, ch, msg.payload.id)).length, 1);
  const contacts = await asTenant(env.c, 'ta', 'SELECT id FROM ventros.contacts WHERE phone = $1 AND deleted_at IS NULL', [`+${from}`]);
  assert.equal(contacts.length, 1);
});

test('100 different first messages of one new sender at once: one contact, one session, 100 messages', async () => {
  const from = '5511971110007';
  const msgs = Array.from({ length: 100 }, (_, i) => wahaMessage({ from, body: `msg ${i}` }));
  const answers = await Promise.all(msgs.map((m) => send(m)));
  assert.deepEqual(answers.map((a) => a.status), Array(100).fill(200));
  assert.ok(answers.every((a) => a.json.status === 'accepted'));
  const rows = await asTenant(env.c, 'ta', `
    SELECT count(*)::int AS n, count(DISTINCT m.contact_id)::int AS contacts, count(DISTINCT m.session_id)::int AS sessions
    FROM ventros.messages m JOIN ventros.contacts c ON c.tenant_id = m.tenant_id AND c.id = m.contact_id
    WHERE m.channel_id = $1 AND c.phone = $2`, [ch.id, `+${from}`]);
  assert.deepEqual(rows[0], { n: 100, contacts: 1, sessions: 1 });
});

test('poisoned payloads: 200, stored with their error or unparsed, nothing else disturbed', async () => {
  const good = wahaMessage({ from: '5511971110008', body: 'antes' });
  assert.equal((await send(good)).status, 200);
  const S = 'acme-sales';
  const poisons = [
    { event: 'message.any', session: S, payload: { id: `false_x_${secret(6)}` } },				// no sender, no body
    { event: 'message.any', session: S, payload: { id: `false_5511971110008@c.us_${secret(6)}`, from: '5511971110008@c.us', body: 'x'.repeat(5000), fromMe: false } }, // too long
    { event: 'message.any', session: S, payload: { id: 12345, from: ['not', 'a', 'string'] } },	// wrong types
    { event: 'something.new', id: `evt_${secret(6)}`, session: S, payload: { whatever: true } },	// unknown event
    { event: 'message.ack', id: `evt_${secret(6)}`, session: S, payload: { ack: 'three' } },		// ack without id
    [1, 2, 3],																					// JSON, not an object
    { payload: null, nonce: secret(4) },														// no event at all
  ];
  for (const p of poisons) {
    const r = await send(p);
    const what = JSON.stringify(p).slice(0, 80);
    assert.equal(r.status, 200, `${what}: ${r.text}`);
    assert.equal(r.json.status, 'accepted', what);
    const [row] = await asTenant(env.c, 'ta', 'SELECT status, last_error, message_id FROM ventros.inbox WHERE id = $1', [r.json.inbox_id]);
    assert.ok(['failed', 'unparsed', 'ignored'].includes(row.status), `${what}: ${row.status}`);
    if (row.status === 'failed') assert.ok(row.last_error, `${what}: a failure keeps its error`);
    assert.equal(row.message_id, null, what);
  }
  // and the channel keeps working
  const after = wahaMessage({ from: '5511971110008', body: 'depois' });
  assert.equal((await send(after)).status, 200);
  assert.equal((await messageOf(env.c, ch, after.payload.id)).length, 1);
  assert.equal((await messageOf(env.c, ch, good.payload.id)).length, 1);
});

test('bad or missing signatures: 401 {"error":"invalid_signature"}, counted, nothing stored', async () => {
  const before = await rejections(env.c, ch);
  const inboxBefore = (await inboxRows(env.c, ch)).length;
  const msg = wahaMessage({ from: '5511971110009', body: 'forjada' });
  const body = JSON.stringify(msg);
  const good = wahaHeaders(body, { hmacKey: ch.config.webhook_secret });
  const variants = [
    wahaHeaders(body),																// unsigned
    wahaHeaders(body, { hmacKey: 'not-the-secret' }),								// wrong key
    { ...good, 'X-Webhook-Hmac': good['X-Webhook-Hmac'].slice(0, -2) + (parseInt(good['X-Webhook-Hmac'].slice(-2), 16) ^ 1).toString(16).padStart(2, '0') },		// one bit off
    { ...good, 'X-Webhook-Hmac': good['X-Webhook-Hmac'].toUpperCase().replace(/[0-9]/g, 'G') },	// not hex
    { ...good, 'X-Webhook-Hmac-Algorithm': 'sha256' },								// algorithm we do not accept
    { ...good, 'X-Webhook-Hmac': '' },
  ];
  for (const h of variants) {
    const r = await post(webhookUrl(BASE, 'waha', ch.id), body, h);
    assert.equal(r.status, 401, JSON.stringify(h));
    assert.deepEqual(r.json, { error: 'invalid_signature' });
  }
  // a tampered body with the original signature
  const tampered = body.replace('forjada', 'FORJADA');
  assert.equal((await post(webhookUrl(BASE, 'waha', ch.id), tampered, good)).status, 401);
  assert.equal(await rejections(env.c, ch), before + variants.length + 1);
  assert.equal((await inboxRows(env.c, ch)).length, inboxBefore, 'nothing stored');
  assert.equal((await messageOf(env.c, ch, msg.payload.id)).length, 0);
  // the genuine one still goes through
  assert.equal((await post(webhookUrl(BASE, 'waha', ch.id), body, good)).status, 200);
});

test('webhook_token (X-Ventros-Token): required when configured; a channel without secrets takes unsigned deliveries', async () => {
  const withToken = await createChannel(env.c, 'ta', 'waha', { session: 'acme-sales', webhook_token: secret(8) });
  const msg = wahaMessage({ from: '5511971110010', body: 'com token' });
  assert.equal((await emitWaha(BASE, withToken.id, msg)).status, 401);
  assert.equal((await emitWaha(BASE, withToken.id, msg, { token: 'wrong' })).status, 401);
  const ok = await emitWaha(BASE, withToken.id, msg, { token: withToken.config.webhook_token });
  assert.equal(ok.status, 200, ok.text);
  const open = await createChannel(env.c, 'ta', 'waha', { session: 'acme-sales' });
  const m2 = wahaMessage({ from: '5511971110010', body: 'sem segredo' });
  assert.equal((await emitWaha(BASE, open.id, m2)).status, 200);
  assert.equal((await messageOf(env.c, open, m2.payload.id)).length, 1);
});

test('a message of another WAHA session (not this channel\'s): 200, stored as foreign, no message', async () => {
  const msg = wahaMessage({ from: '5511971110011', body: 'outra sessão', session: 'someone-else' });
  const r = await send(msg);
  assert.equal(r.status, 200, r.text);
  const [row] = await asTenant(env.c, 'ta', 'SELECT status FROM ventros.inbox WHERE id = $1', [r.json.inbox_id]);
  assert.equal(row.status, 'foreign');
  assert.equal((await messageOf(env.c, ch, msg.payload.id)).length, 0);
});

test('session.status moves the channel (WORKING -> active)', async () => {
  const r = await send(wahaSessionStatus({ status: 'WORKING', session: ch.config.session }));
  assert.equal(r.status, 200, r.text);
  const [row] = await asTenant(env.c, 'ta', 'SELECT status FROM ventros.channels WHERE id = $1', [ch.id]);
  assert.equal(row.status, 'active');
});
