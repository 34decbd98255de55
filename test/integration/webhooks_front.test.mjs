// ventros-http's webhook endpoint itself (channels.md §0): routing and
// answers, the raw body reaching the database byte for byte, the size limit,
// no JWT (and no rights from one), tenancy, Meta's handshake, and an access
// log without the verify token.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import { PORT, token } from './http_helpers.mjs';
import { setup, BASE, asTenant, inboxRows, rejections, messageOf } from './webhooks_helpers.mjs';
import {
  emitWaha, emitMeta, handshake, post, wahaHeaders, metaHeaders, metaJson, wahaMessage, whatsappMessages,
  whatsappText, webhookUrl,
} from './fakes/emit.mjs';

const MAX_BODY = 64 * 1024;
let env;
let A;
let B;
before(async () => {
  env = await setup({ VENTROS_HTTP_MAX_BODY: String(MAX_BODY) });
  A = env.channels.ta;
  B = env.channels.tb;
});
after(async () => { await env.stop(); });

const sec = (ch) => ch.config.webhook_secret ?? ch.config.app_secret;

test('unknown provider, unknown or malformed channel, other provider, extra segments: 404 channel_not_found', async () => {
  const body = JSON.stringify(wahaMessage());
  const urls = [
    webhookUrl(BASE, 'telegram', A.waha.id),
    webhookUrl(BASE, 'WAHA', A.waha.id),
    webhookUrl(BASE, 'waha', crypto.randomUUID()),
    webhookUrl(BASE, 'waha', 'not-a-uuid'),
    webhookUrl(BASE, 'waha', "x'; DROP TABLE ventros.inbox; --"),
    webhookUrl(BASE, 'whatsapp', A.waha.id),		// a WAHA channel is not a Cloud API channel
    webhookUrl(BASE, 'messenger', A.instagram.id),
    `${webhookUrl(BASE, 'waha', A.waha.id)}/extra`,
    `${BASE}/webhooks/waha`,
    `${BASE}/webhooks/waha/`,
    `${BASE}/webhooks/`,
  ];
  for (const url of urls) {
    const r = await post(url, body, wahaHeaders(body, { hmacKey: sec(A.waha) }));
    assert.equal(r.status, 404, url);
    assert.deepEqual(r.json, { error: 'channel_not_found' }, url);
    assert.match(r.headers.get('content-type'), /^application\/json/);
  }
  assert.equal(await rejections(env.c, A.waha), 0, 'a 404 is not counted as a rejected signature');
});

test('methods other than GET and POST: 405 with Allow', async () => {
  for (const method of ['PUT', 'PATCH', 'DELETE']) {
    const r = await fetch(webhookUrl(BASE, 'waha', A.waha.id), { method, body: method === 'DELETE' ? undefined : '{}' });
    assert.equal(r.status, 405, method);
    assert.equal(r.headers.get('allow'), 'GET, POST');
    assert.deepEqual(await r.json(), { error: 'method_not_allowed' });
  }
});

test('a signed delivery is answered with accept_webhook\'s status and JSON; a replay is a duplicate', async () => {
  const msg = wahaMessage({ from: '5511970000001', body: 'primeira mensagem' });
  const r = await emitWaha(BASE, A.waha.id, msg, { hmacKey: sec(A.waha) });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.status, 'accepted');
  assert.match(r.json.inbox_id, /^[0-9a-f-]{36}$/);
  assert.match(r.headers.get('content-type'), /^application\/json/);
  assert.equal(r.headers.get('cache-control'), 'no-store');
  const again = await emitWaha(BASE, A.waha.id, msg, { hmacKey: sec(A.waha) });
  assert.equal(again.status, 200);
  assert.deepEqual(again.json, { status: 'duplicate' });
  assert.equal((await messageOf(env.c, A.waha, msg.payload.id)).length, 1);
});

test('the body reaches the database byte for byte (Meta \\u escapes, slashes, odd spacing)', async () => {
  const payload = whatsappMessages({
    phoneNumberId: A.whatsapp.config.phone_number_id,
    messages: [whatsappText({ body: 'Ação, coração e 😀 — https://example.com/a/b' })],
  });
  // Meta's serialisation, then extra whitespace a re-encoder would drop
  const body = Buffer.from(metaJson(payload).replace('{"object"', '{ "object" ') + '\n', 'utf8');
  assert.ok(!/[^\x00-\x7f]/.test(body.toString('latin1')), 'the body is pure ASCII: non-ASCII travels as \\u escapes');
  const r = await post(webhookUrl(BASE, 'whatsapp', A.whatsapp.id), body, metaHeaders(body, { appSecret: sec(A.whatsapp) }));
  assert.equal(r.status, 200, r.text);
  const rows = await asTenant(env.c, 'ta', 'SELECT body FROM ventros.inbox WHERE id = $1', [r.json.inbox_id]);
  assert.equal(rows.length, 1);
  assert.ok(Buffer.compare(rows[0].body, body) === 0, 'stored body equals the bytes sent');
  const [m] = await messageOf(env.c, A.whatsapp, payload.entry[0].changes[0].value.messages[0].id);
  assert.equal(m.text, 'Ação, coração e 😀 — https://example.com/a/b');
});

test('a signature over a re-encoded body does not verify: 401 (we verify the raw bytes)', async () => {
  const payload = whatsappMessages({ phoneNumberId: A.whatsapp.config.phone_number_id, messages: [whatsappText({ body: 'Olá, tudo bem?' })] });
  const sent = metaJson(payload);		// what Meta sends: \u00e1 escapes
  const reencoded = JSON.stringify(payload);	// the same JSON value, other bytes
  assert.notEqual(sent, reencoded);
  const before = await rejections(env.c, A.whatsapp);
  const r = await post(webhookUrl(BASE, 'whatsapp', A.whatsapp.id), sent, metaHeaders(reencoded, { appSecret: sec(A.whatsapp) }));
  assert.equal(r.status, 401);
  assert.deepEqual(r.json, { error: 'invalid_signature' });
  assert.equal(await rejections(env.c, A.whatsapp), before + 1);
  assert.equal((await messageOf(env.c, A.whatsapp, payload.entry[0].changes[0].value.messages[0].id)).length, 0);
});

test('bytes that are not UTF-8 reach accept_webhook (no PostgREST UTF-8 refusal): stored, 400 not JSON', async () => {
  const body = Buffer.concat([Buffer.from('{"event":"message.any","payload":{"body":"'), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('"}}')]);
  const r = await post(webhookUrl(BASE, 'waha', A.waha.id), body, wahaHeaders(body, { hmacKey: sec(A.waha) }));
  assert.equal(r.status, 400, r.text);
  assert.ok(r.json.error, 'an {"error": ...} answer');
  assert.equal(r.json.code, undefined, 'not a PostgREST error');
  const rows = await inboxRows(env.c, A.waha, 'i.body = $2', [body]);
  assert.equal(rows.length, 1, 'stored with its error, nothing lost');
  assert.ok(rows[0].last_error);
});

test('an empty body is handed over too (not JSON: 400), a missing signature first: 401', async () => {
  const signed = await post(webhookUrl(BASE, 'waha', A.waha.id), '', wahaHeaders('', { hmacKey: sec(A.waha) }));
  assert.equal(signed.status, 400, signed.text);
  const unsigned = await post(webhookUrl(BASE, 'waha', A.waha.id), '', wahaHeaders(''));
  assert.equal(unsigned.status, 401, unsigned.text);
});

test('headers reach the database as one JSON object: names lowercased, a repeated header joined', async () => {
  const msg = wahaMessage({ from: '5511970000005', body: 'cabeçalhos' });
  const body = Buffer.from(JSON.stringify(msg));
  const h = wahaHeaders(body, { hmacKey: sec(A.waha), requestId: 'Req-ABC-123' });
  // a raw request: fetch would merge the repeated header itself
  const head = [`POST /webhooks/waha/${A.waha.id} HTTP/1.1`, 'Host: 127.0.0.1', 'Connection: close',
    ...Object.entries(h).map(([k, v]) => `${k.toUpperCase()}: ${v}`),
    'X-Forwarded-For: 203.0.113.7', 'x-forwarded-for: 198.51.100.2', `Content-Length: ${body.length}`, '', ''].join('\r\n');
  const sock = net.connect(PORT, '127.0.0.1');
  const chunks = [];
  sock.on('data', (d) => chunks.push(d));
  const closed = new Promise((resolve) => sock.on('close', resolve));
  sock.write(Buffer.concat([Buffer.from(head), body]));
  await closed;
  const answer = Buffer.concat(chunks).toString();
  assert.match(answer, /^HTTP\/1\.1 200/, answer);
  const inboxId = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)).inbox_id;
  const [row] = await asTenant(env.c, 'ta', 'SELECT headers FROM ventros.inbox WHERE id = $1', [inboxId]);
  assert.equal(row.headers['x-webhook-request-id'], 'Req-ABC-123');
  assert.equal(row.headers['x-webhook-hmac-algorithm'], 'sha512');
  assert.equal(row.headers['x-forwarded-for'], '203.0.113.7, 198.51.100.2');
  assert.ok(Object.keys(row.headers).every((k) => k === k.toLowerCase()));
});

test('a body over the limit: 413 {"error":"payload_too_large"}, announced or streamed, nothing stored', async () => {
  const before = (await inboxRows(env.c, A.waha)).length;
  const big = JSON.stringify(wahaMessage({ body: 'x'.repeat(MAX_BODY) }));
  const r = await post(webhookUrl(BASE, 'waha', A.waha.id), big, wahaHeaders(big, { hmacKey: sec(A.waha) }));
  assert.equal(r.status, 413);
  assert.deepEqual(r.json, { error: 'payload_too_large' });
  // chunked: no Content-Length, the limit is found while reading
  const stream = new ReadableStream({
    start(ctl) { for (let i = 0; i < 8; i++) ctl.enqueue(new TextEncoder().encode('x'.repeat(MAX_BODY / 4))); ctl.close(); },
  });
  const s = await fetch(webhookUrl(BASE, 'waha', A.waha.id), {
    method: 'POST', body: stream, duplex: 'half', headers: { 'Content-Type': 'application/json' },
  });
  assert.equal(s.status, 413);
  assert.deepEqual(await s.json(), { error: 'payload_too_large' });
  // just under the limit is accepted
  const fits = JSON.stringify(wahaMessage({ body: 'y'.repeat(3000) }));
  assert.ok(Buffer.byteLength(fits) < MAX_BODY);
  assert.equal((await post(webhookUrl(BASE, 'waha', A.waha.id), fits, wahaHeaders(fits, { hmacKey: sec(A.waha) }))).status, 200);
  assert.equal((await inboxRows(env.c, A.waha)).length, before + 1);
});

test('no JWT needed; a JWT (valid, of another tenant, or forged) changes nothing', async () => {
  const tokens = [
    `Bearer ${token('ventros_admin', 'tb')}`,
    `Bearer ${token('ventros_admin', 'ta')}`,
    'Bearer not.a.jwt',
  ];
  for (const authorization of tokens) {
    const msg = wahaMessage({ from: '5511970000002', body: `com token ${authorization.length}` });
    const body = JSON.stringify(msg);
    const r = await post(webhookUrl(BASE, 'waha', A.waha.id), body, { ...wahaHeaders(body, { hmacKey: sec(A.waha) }), Authorization: authorization });
    assert.equal(r.status, 200, r.text);
    assert.equal((await messageOf(env.c, A.waha, msg.payload.id)).length, 1, 'landed in the channel\'s tenant');
    // the credential was not handed over nor stored
    const [row] = await asTenant(env.c, 'ta', 'SELECT headers FROM ventros.inbox WHERE id = $1', [r.json.inbox_id]);
    assert.equal(row.headers.authorization, undefined);
  }
  // an admin token of the channel's tenant does not excuse a bad signature
  const body = JSON.stringify(wahaMessage());
  const r = await post(webhookUrl(BASE, 'waha', A.waha.id), body,
    { ...wahaHeaders(body, { hmacKey: 'wrong' }), Authorization: `Bearer ${token('ventros_admin', 'ta')}` });
  assert.equal(r.status, 401);
});

test('tenancy: tenant A\'s channel cannot be fed through anything of tenant B', async () => {
  const msg = wahaMessage({ from: '5511970000003', body: 'cross-tenant' });
  const body = JSON.stringify(msg);
  // B's secret on A's channel
  let r = await post(webhookUrl(BASE, 'waha', A.waha.id), body, wahaHeaders(body, { hmacKey: sec(B.waha) }));
  assert.equal(r.status, 401);
  // B's Meta app secret on A's channels
  for (const p of ['whatsapp', 'instagram', 'messenger']) {
    const mb = metaJson({ object: 'page', entry: [] });
    r = await post(webhookUrl(BASE, p, A[p].id), mb, metaHeaders(mb, { appSecret: sec(B[p]) }));
    assert.equal(r.status, 401, p);
  }
  // B's token in the Authorization header, B's channel id in a header: ignored
  r = await post(webhookUrl(BASE, 'waha', B.waha.id), body,
    { ...wahaHeaders(body, { hmacKey: sec(B.waha) }), Authorization: `Bearer ${token('ventros_admin', 'ta')}`, 'X-Channel-Id': A.waha.id });
  assert.equal(r.status, 200);
  assert.equal((await messageOf(env.c, B.waha, msg.payload.id)).length, 1, 'the message went to B, whose channel it was');
  assert.equal((await messageOf(env.c, A.waha, msg.payload.id)).length, 0);
  // a Cloud API payload naming B's phone number id, sent to A's channel: never reaches B
  const foreign = whatsappMessages({ phoneNumberId: B.whatsapp.config.phone_number_id, messages: [whatsappText({ body: 'for B?' })] });
  const fb = metaJson(foreign);
  r = await post(webhookUrl(BASE, 'whatsapp', A.whatsapp.id), fb, metaHeaders(fb, { appSecret: sec(A.whatsapp) }));
  assert.equal(r.status, 200);
  const wid = foreign.entry[0].changes[0].value.messages[0].id;
  assert.equal((await messageOf(env.c, B.whatsapp, wid)).length, 0);
  assert.equal((await messageOf(env.c, A.whatsapp, wid)).length, 0, 'stored as foreign, not processed');
  const [row] = await asTenant(env.c, 'ta', 'SELECT status, message_id FROM ventros.inbox WHERE id = $1', [r.json.inbox_id]);
  assert.deepEqual(row, { status: 'foreign', message_id: null });
  // the inbox is not exposed over REST: an unknown table (400, PGRST205)
  const rest = await fetch(`${BASE}/inbox?select=id`);
  assert.equal(rest.status, 400, `GET /inbox answered ${rest.status}`);
  assert.equal((await rest.json()).code, 'PGRST205');
});

test('Meta handshake: right token -> 200 text/plain challenge; anything else -> 403', async () => {
  for (const p of ['whatsapp', 'instagram', 'messenger']) {
    const ch = A[p];
    const ok = await handshake(BASE, p, ch.id, { token: ch.config.verify_token, challenge: '1158201444' });
    assert.equal(ok.status, 200, p);
    assert.equal(ok.text, '1158201444');
    assert.match(ok.headers.get('content-type'), /^text\/plain/);
    assert.equal(ok.headers.get('x-content-type-options'), 'nosniff');
    const wrongs = [
      { token: 'wrong', challenge: '1' },
      { token: B[p].config.verify_token, challenge: '1' },	// another tenant's token
      { mode: 'unsubscribe', token: ch.config.verify_token, challenge: '1' },
      { token: ch.config.verify_token, challenge: null },
      { mode: null, token: ch.config.verify_token, challenge: '1' },
    ];
    for (const w of wrongs) {
      const r = await handshake(BASE, p, ch.id, w);
      assert.equal(r.status, 403, `${p} ${JSON.stringify(w)}`);
      assert.notEqual(r.text, '1');
    }
  }
  assert.equal((await handshake(BASE, 'whatsapp', crypto.randomUUID(), { token: 'x', challenge: '1' })).status, 403);
  assert.equal((await handshake(BASE, 'waha', A.waha.id, { token: 'x', challenge: '1' })).status, 403);
  assert.equal((await handshake(BASE, 'telegram', A.waha.id, { token: 'x', challenge: '1' })).status, 404);
});

test('the access log shows the path, never the query string with the verify token', async () => {
  const ch = A.messenger;
  const r = await handshake(BASE, 'messenger', ch.id, { token: ch.config.verify_token, challenge: 'log-check-challenge' });
  assert.equal(r.status, 200);
  assert.equal((await handshake(BASE, 'messenger', ch.id, { token: 'guessed-token-in-log', challenge: 'x' })).status, 403);
  // the access log may be written a little later (buffered): wait for the last line
  const last = new RegExp(`GET /webhooks/messenger/${ch.id} 403`);
  for (let i = 0; i < 100 && !last.test(env.server.log.join('')); i++) await new Promise((r) => setTimeout(r, 50));
  const log = env.server.log.join('');
  assert.match(log, last);
  assert.match(log, new RegExp(`GET /webhooks/messenger/${ch.id} 200`));
  assert.ok(!log.includes(ch.config.verify_token), 'the verify token is not logged');
  assert.ok(!log.includes('guessed-token-in-log'));
  assert.ok(!log.includes('hub.'), 'no query string');
  assert.ok(!log.includes(sec(A.waha)), 'no secret');
});

test('a slow webhook sender does not hold others back; keep-alive connections serve many deliveries', async () => {
  // a client that opens a POST and sends half its body, then stalls
  const sock = net.connect(PORT, '127.0.0.1');
  await new Promise((resolve) => sock.on('connect', resolve));
  sock.write(`POST /webhooks/waha/${A.waha.id} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"event":`);
  const sends = [];
  for (let i = 0; i < 20; i++) {
    const msg = wahaMessage({ from: '5511970000004', body: `rápida ${i}` });
    sends.push(emitWaha(BASE, A.waha.id, msg, { hmacKey: sec(A.waha) }));
  }
  const answers = await Promise.all(sends);
  assert.deepEqual(answers.map((a) => a.status), Array(20).fill(200));
  sock.destroy();
});
