// GET /events/stream (docs/realtime.md): Server-Sent Events of the caller's
// tenant's committed events, from the front's one RabbitMQ feed.  Real
// servers: PostgreSQL with the outbox publisher, RabbitMQ, ventros-http.
// Every wait is for a condition (an event seen, a stream ended), bounded
// only to turn a hang into a failure.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import crypto from 'node:crypto';
import { startServer, BASE, PORT, auth, db } from './http_helpers.mjs';
import { status, until, brokerStop, brokerStart } from './outbox_helpers.mjs';

const AMQP = process.env.VENTROS_AMQP_URL;
const BUFFER = 65536;
let server;
let c;
const open = [];

// An SSE subscription: its status, the events and comments received so far.
function subscribe(path, { role = 'ventros_admin', tenant = 'ta', headers = {}, pause = false } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get(BASE + path, { headers: { ...auth(role, tenant), ...headers } }, (res) => {
      const s = { status: res.statusCode, headers: res.headers, res, events: [], comments: [], buf: '', body: '', ended: false };
      res.setEncoding('utf8');
      if (pause) res.pause();
      res.on('data', (d) => {
        s.body += d;
        s.buf += d;
        parse(s);
      });
      res.on('end', () => { s.ended = true; });
      res.on('error', () => { s.ended = true; });
      res.on('close', () => { s.ended = true; });
      s.close = () => req.destroy();
      open.push(s);
      resolve(s);
    });
    req.on('error', reject);
  });
}

// A WebSocket subscription (RFC 6455, by hand: node 20 has no client without a
// flag): the answer's status and headers, then the messages, pings and close.
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
function wsSubscribe(path, { role = 'ventros_admin', tenant = 'ta', headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const key = crypto.randomBytes(16).toString('base64');
    const sock = net.connect(PORT, '127.0.0.1');
    const w = { status: 0, events: [], pings: 0, closeFrame: false, ended: false, buf: Buffer.alloc(0), head: '' };
    w.expectedAccept = crypto.createHash('sha1').update(key + GUID).digest('base64');
    w.close = () => sock.destroy();
    open.push(w);
    sock.on('connect', () => {
      const h = { Host: `127.0.0.1:${PORT}`, Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Key': key,
        'Sec-WebSocket-Version': '13', ...auth(role, tenant), ...headers };
      sock.write(`GET ${path} HTTP/1.1\r\n${Object.entries(h).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`);
    });
    sock.on('data', (d) => {
      w.buf = Buffer.concat([w.buf, d]);
      if (!w.head) {
        const i = w.buf.indexOf('\r\n\r\n');
        if (i < 0) return;
        w.head = w.buf.subarray(0, i).toString();
        w.buf = w.buf.subarray(i + 4);
        w.status = Number(w.head.split(' ')[1]);
        w.accept = /^sec-websocket-accept: *(.*)$/im.exec(w.head)?.[1]?.trim();
        resolve(w);
        if (w.status !== 101) return;
      }
      for (;;) {
        if (w.buf.length < 2) break;
        const op = w.buf[0] & 0x0f;
        let len = w.buf[1] & 0x7f;
        let off = 2;
        if (len === 126) { if (w.buf.length < 4) break; len = w.buf.readUInt16BE(2); off = 4; }
        else if (len === 127) { if (w.buf.length < 10) break; len = Number(w.buf.readBigUInt64BE(2)); off = 10; }
        if (w.buf.length < off + len) break;
        const payload = w.buf.subarray(off, off + len);
        w.buf = w.buf.subarray(off + len);
        if (op === 1) w.events.push(JSON.parse(payload.toString()));
        else if (op === 9) w.pings++;
        else if (op === 8) w.closeFrame = true;
      }
    });
    sock.on('close', () => { w.ended = true; });
    sock.on('error', (e) => { w.ended = true; if (!w.head) reject(e); });
  });
}

function parse(s) {
  let i;
  while ((i = s.buf.indexOf('\n\n')) >= 0) {
    const block = s.buf.slice(0, i);
    s.buf = s.buf.slice(i + 2);
    const ev = { data: [] };
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) { s.comments.push(line); continue; }
      const k = line.slice(0, line.indexOf(':'));
      const v = line.slice(line.indexOf(':') + 1).replace(/^ /, '');
      if (k === 'data') ev.data.push(v); else ev[k] = v;
    }
    if (!ev.event && !ev.id) continue;
    ev.data = ev.data.join('\n');
    ev.json = JSON.parse(ev.data);
    s.events.push(ev);
  }
}

// A committed custom event of the tenant (custom.<name>); its outbox seq.
async function emit(tenant, name, payload = {}) {
  await c.query('BEGIN');
  await c.query("SELECT set_config('ventros.tenant', $1, true)", [tenant]);
  await c.query('SELECT ventros.emit_custom_event($1, $2)', [name, payload]);
  const r = await c.query("SELECT max(seq) AS seq FROM ventros.outbox WHERE tenant_id = $1 AND event_type = 'custom.' || $2", [tenant, name]);
  await c.query('COMMIT');
  return String(r.rows[0].seq);
}

async function asTenant(tenant, sql, params = []) {
  await c.query('BEGIN');
  await c.query("SELECT set_config('ventros.tenant', $1, true)", [tenant]);
  const r = await c.query(sql, params);
  await c.query('COMMIT');
  return r;
}

// An event is recognised by its outbox seq (the envelope's sequence); its
// SSE id is its publish position, what Last-Event-ID sends back.
const seqOf = (e) => String((e.json ?? e.data)?.sequence);
const seqs = (s) => s.events.filter((e) => e.event !== 'closed').map(seqOf);
const idOf = (s, seq) => s.events.find((e) => seqOf(e) === seq).id;
const has = (s, seq) => s.events.some((e) => seqOf(e) === seq);
const seen = (s, seq, what) => until(() => has(s, seq), what, 30000, 10);

before(async () => {
  c = await db();
  await until(async () => (await status(c)).worker_connected, 'the outbox publisher to connect');
});

after(async () => {
  for (const s of open) s.close();
  if (process.env.VENTROS_STREAM_DEBUG) console.error(server?.log.join(''));
  await server?.stop();
  await c?.end();
});

test('without a broker configured: 503 with a PostgREST error', async () => {
  const bare = await startServer({ VENTROS_HTTP_AMQP_URL: '' });
  try {
    const r = await fetch(`${BASE}/events/stream`, { headers: auth('ventros_admin', 'ta') });
    assert.equal(r.status, 503);
    const body = await r.json();
    assert.equal(body.code, '55000');
    assert.match(body.message, /not configured/);
  } finally {
    await bare.stop();
  }
  server = await startServer({
    VENTROS_HTTP_AMQP_URL: AMQP,
    VENTROS_HTTP_STREAM_HEARTBEAT: '1',
    VENTROS_HTTP_STREAM_BUFFER: String(BUFFER),
    VENTROS_HTTP_CLIENT_TIMEOUT: '120',
  });
  await until(async () => (await fetch(`${BASE}/events/stream?types=none`, { headers: auth('ventros_admin', 'ta') })
    .then(async (r) => { r.body?.cancel(); return r.status === 200; })), 'the front to consume the feed');
});

test('401 without a token, 400 for an unknown parameter or a malformed Last-Event-ID', async () => {
  let r = await fetch(`${BASE}/events/stream`);
  assert.equal(r.status, 401);
  assert.equal((await r.json()).code, '42501');
  r = await fetch(`${BASE}/events/stream?select=id`, { headers: auth('ventros_admin', 'ta') });
  assert.equal(r.status, 400);
  assert.equal((await r.json()).code, 'PGRST100');
  r = await fetch(`${BASE}/events/stream?types=Bad!`, { headers: auth('ventros_admin', 'ta') });
  assert.equal(r.status, 400);
  r = await fetch(`${BASE}/events/stream`, { headers: { ...auth('ventros_admin', 'ta'), 'Last-Event-ID': 'x' } });
  assert.equal(r.status, 400);
  assert.equal((await r.json()).code, '22P02');
});

test("events arrive for the caller's tenant only, with id, type and envelope", async () => {
  const a = await subscribe('/events/stream?types=custom.*', { tenant: 'ta' });
  const b = await subscribe('/events/stream?types=custom.*', { tenant: 'tb' });
  assert.equal(a.status, 200);
  assert.match(a.headers['content-type'], /^text\/event-stream/);
  const sb = await emit('tb', 'stream_b_pinged', { n: 1 });
  const sa = await emit('ta', 'stream_a_pinged', { n: 2 });
  await seen(a, sa, "ta's event");
  await seen(b, sb, "tb's event");
  const ea = a.events.find((e) => seqOf(e) === sa);
  assert.match(ea.id, /^[0-9]+$/, 'its publish position as id');
  assert.equal(ea.event, 'custom.stream_a_pinged');
  assert.equal(ea.json.tenantid, 'ta');
  assert.equal(String(ea.json.sequence), sa);
  assert.deepEqual(ea.json.data, { n: 2 });
  assert.ok(a.events.every((e) => e.json.tenantid === 'ta'), 'nothing of tb reaches ta');
  assert.ok(!has(a, sb));
  // tb's later event too: wait for it on b, then check a again
  const sb2 = await emit('tb', 'stream_b_pinged', { n: 3 });
  const sa2 = await emit('ta', 'stream_a_pinged', { n: 4 });
  await seen(b, sb2, "tb's second event");
  await seen(a, sa2, "ta's second event");
  assert.ok(!has(a, sb2) && !has(b, sa) && !has(b, sa2));
  a.close();
  b.close();
});

test('filters: types with wildcards, aggregate_type, aggregate_id', async () => {
  const created = await subscribe('/events/stream?types=contact.created');
  const wild = await subscribe('/events/stream?types=contact.*,custom.stream_f*');
  const byType = await subscribe('/events/stream?aggregate_type=custom');
  const id = (await asTenant('ta', 'SELECT id FROM ventros.create_contact($1)', ['Stream Filter'])).rows[0].id;
  // once its creation went out to the others, a later subscriber does not get it
  await until(() => wild.events.some((e) => e.json.aggregateid === id), "the contact's creation");
  const byId = await subscribe(`/events/stream?aggregate_id=${id}`);
  await asTenant('ta', 'SELECT ventros.update_contact($1, 1, $2)', [id, { tags: ['streamed'] }]);
  await asTenant('ta', 'SELECT ventros.create_contact($1)', ['Stream Other']);
  const marker = await emit('ta', 'stream_f_pinged');
  // the marker is committed last: once it is in, so is everything before it
  await seen(wild, marker, 'the marker (wildcards)');
  await seen(byType, marker, 'the marker (aggregate_type)');
  const other = await emit('ta', 'stream_g_pinged');
  await seen(byType, other, 'the second marker');
  await until(() => created.events.length >= 2, 'two contact.created');
  assert.deepEqual(wild.events.map((e) => e.event), ['contact.created', 'contact.updated', 'contact.tag_added', 'contact.created', 'custom.stream_f_pinged']);
  assert.ok(created.events.every((e) => e.event === 'contact.created'));
  assert.ok(byType.events.every((e) => e.json.aggregatetype === 'custom'));
  assert.ok(!has(wild, other), 'custom.stream_g_* is not custom.stream_f*');
  // the contact's own events only (subscribed after its creation)
  await until(() => byId.events.length >= 2, "the contact's update and tag");
  assert.deepEqual(byId.events.map((e) => [e.event, e.json.aggregateid]), [['contact.updated', id], ['contact.tag_added', id]]);
  for (const s of [created, wild, byType, byId]) s.close();
});

test('Last-Event-ID resumes without loss or duplicate', async () => {
  const first = await subscribe('/events/stream?types=custom.stream_r_pinged');
  const s1 = await emit('ta', 'stream_r_pinged', { n: 1 });
  const s2 = await emit('ta', 'stream_r_pinged', { n: 2 });
  await seen(first, s2, 'the first two');
  const id2 = idOf(first, s2);
  first.close();
  await until(() => first.ended, 'the first subscription to end');
  // missed while disconnected, one of them of another type (filtered in the gap as live)
  const s3 = await emit('ta', 'stream_r_pinged', { n: 3 });
  await emit('ta', 'stream_x_pinged');
  const s4 = await emit('ta', 'stream_r_pinged', { n: 4 });
  const again = await subscribe('/events/stream?types=custom.stream_r_pinged', { headers: { 'Last-Event-ID': id2 } });
  await until(() => again.status !== 200 ? again.ended : true, 'an answer');
  assert.equal(again.status, 200, again.body);
  const s5 = await emit('ta', 'stream_r_pinged', { n: 5 });
  await seen(again, s5, 'the live event after the resume');
  assert.deepEqual(seqs(again), [s3, s4, s5]);
  assert.deepEqual(again.events.map((e) => e.json.data.n), [3, 4, 5]);
  // the same with the query parameter (EventSource cannot set headers on its first request)
  const q = await subscribe(`/events/stream?types=custom.stream_r_pinged&last_event_id=${idOf(first, s1)}`);
  await seen(q, s5, 'the gap up to the last event');
  assert.deepEqual(seqs(q), [s2, s3, s4, s5]);
  again.close();
  q.close();
});

test('resuming after an event does not miss one with a lower seq committed after it (publish order, not seq order)', async () => {
  const sub = await subscribe('/events/stream?types=custom.stream_o_*');
  // w takes the lower seq and commits last: the publisher publishes its event after b's
  const w = await db();
  let sa;
  let idB;
  try {
    await w.query('BEGIN');
    await w.query("SELECT set_config('ventros.tenant', 'ta', true)");
    // (two names: two aggregates, so that b is not held behind a)
    await w.query('SELECT ventros.emit_custom_event($1, $2)', ['stream_o_first', { n: 'a' }]);
    sa = String((await w.query("SELECT max(seq) AS seq FROM ventros.outbox WHERE event_type = 'custom.stream_o_first'")).rows[0].seq);
    const sb = await emit('ta', 'stream_o_second', { n: 'b' });
    assert.ok(BigInt(sa) < BigInt(sb), 'a has the lower seq');
    await seen(sub, sb, 'b, published while a is not committed');
    idB = idOf(sub, sb);
    sub.close();
    await until(() => sub.ended, 'the subscription to end');
    await w.query('COMMIT');
  } finally {
    await w.end();
  }
  // a is published now, after b (at a higher position): the client missed it
  await until(async () => (await c.query('SELECT status FROM ventros.outbox WHERE seq = $1', [sa])).rows[0].status === 'published',
    'a to be published');
  const again = await subscribe('/events/stream?types=custom.stream_o_*', { headers: { 'Last-Event-ID': idB } });
  const sc = await emit('ta', 'stream_o_second', { n: 'c' });
  await seen(again, sc, 'the live event after the resume');
  assert.deepEqual(seqs(again), [sa, sc], 'a from the gap, then c');
  assert.ok(BigInt(again.events[0].id) > BigInt(idB), "a's id (its position) is above b's");
  again.close();
});

test('heartbeats keep an idle subscription open', async () => {
  const s = await subscribe('/events/stream?types=custom.never_pinged');
  await until(() => s.comments.filter((l) => l === ': heartbeat').length >= 2, 'two heartbeats', 30000, 20);
  assert.equal(s.events.length, 0);
  assert.equal(s.ended, false);
  s.close();
});

test('a slow client is cut off with a reason while a fast one receives everything', async () => {
  const fast = await subscribe('/events/stream?types=custom.stream_s_pinged');
  const slow = await subscribe('/events/stream?types=custom.stream_s_pinged', { pause: true });
  const big = 'x'.repeat(16000);
  const sent = [];
  // lock-step: each event reaches the fast client before the next is written
  const t0 = Date.now();
  for (let i = 0; i < 150; i++) {
    const seq = await emit('ta', 'stream_s_pinged', { i, big });
    sent.push(seq);
    await seen(fast, seq, `event ${i} on the fast client`);
  }
  assert.deepEqual(fast.events.map(seqOf), sent, 'the fast client has every event once, in order');
  assert.equal(fast.ended, false);
  slow.res.resume();
  await until(() => slow.ended, 'the slow client to be cut', 30000, 20);
  const closed = slow.events.find((e) => e.event === 'closed');
  assert.ok(closed, 'a closed event before the end');
  assert.equal(closed.json.reason, 'slow_client');
  assert.equal(slow.events.at(-1), closed, 'nothing after it');
  const got = seqs(slow);
  assert.ok(got.length < sent.length, `the slow client missed events (${got.length})`);
  assert.deepEqual(got, sent.slice(0, got.length), 'what it got is a prefix, in order');
  fast.close();
});

test('visibility follows the role: an aggregate whose table a role may not read is not streamed to it', async () => {
  await c.query('REVOKE SELECT ON ventros.credentials FROM ventros_viewer');
  await c.query('GRANT SELECT ON ventros.credentials TO ventros_admin');
  try {
    const subs = {};
    for (const role of ['ventros_viewer', 'ventros_agent', 'ventros_admin']) {
      subs[role] = await subscribe('/events/stream?types=credential.*,custom.stream_v_pinged', { role });
    }
    const cred = crypto.randomUUID();
    await asTenant('ta', "SELECT ventros.emit('credential.activated', 'credential', $1, '{}')", [cred]);
    const marker = await emit('ta', 'stream_v_pinged');
    for (const s of Object.values(subs)) await seen(s, marker, 'the marker');
    assert.deepEqual(subs.ventros_admin.events.map((e) => e.event), ['credential.activated', 'custom.stream_v_pinged']);
    assert.deepEqual(subs.ventros_agent.events.map((e) => e.event), ['custom.stream_v_pinged']);
    assert.deepEqual(subs.ventros_viewer.events.map((e) => e.event), ['custom.stream_v_pinged']);
    // the gap too: a viewer resuming before both gets the marker only
    const before = String(BigInt(subs.ventros_admin.events[0].id) - 1n);
    const resumed = await subscribe('/events/stream?types=credential.*,custom.stream_v_pinged',
      { role: 'ventros_viewer', headers: { 'Last-Event-ID': before } });
    await seen(resumed, marker, 'the marker from the gap');
    assert.deepEqual(resumed.events.map((e) => e.event), ['custom.stream_v_pinged']);
    for (const s of [...Object.values(subs), resumed]) s.close();
  } finally {
    await c.query('REVOKE SELECT ON ventros.credentials FROM ventros_admin');
    await c.query('GRANT SELECT ON ventros.credentials TO ventros_viewer');
  }
});

test('a lost broker cuts every subscriber with feed_lost; after it is back, a resume reads the gap', async () => {
  const s = await subscribe('/events/stream?types=custom.stream_l_pinged');
  const s1 = await emit('ta', 'stream_l_pinged', { n: 1 });
  await seen(s, s1, 'the event before the loss');
  const id1 = idOf(s, s1);
  brokerStop();
  try {
    await until(() => s.ended, 'the subscriber to be cut', 60000, 20);
    const closed = s.events.at(-1);
    assert.equal(closed.event, 'closed');
    assert.equal(closed.json.reason, 'feed_lost');
    const r = await fetch(`${BASE}/events/stream`, { headers: auth('ventros_admin', 'ta') });
    assert.equal(r.status, 503);
    assert.equal(r.headers.get('retry-after'), '1');
    assert.match((await r.json()).message, /not connected/);
  } finally {
    brokerStart();
  }
  // committed while the broker was away (the outbox keeps it), read from the gap on resume
  const s2 = await emit('ta', 'stream_l_pinged', { n: 2 });
  let again;
  await until(async () => {
    const t = await subscribe('/events/stream?types=custom.stream_l_pinged', { headers: { 'Last-Event-ID': id1 } });
    if (t.status === 200) again = t; else t.close();
    return again;
  }, 'the front to consume again', 60000, 200);
  const s3 = await emit('ta', 'stream_l_pinged', { n: 3 });
  await seen(again, s3, 'the live event after the broker came back');
  assert.deepEqual(seqs(again), [s2, s3]);
  again.close();
});

test('/events/ws: the same feed over a WebSocket (handshake, filters, resume, pings, 401)', async () => {
  const anon = await wsSubscribe('/events/ws', { role: 'ventros_anon', tenant: null });
  assert.equal(anon.status, 401);
  const plain = await fetch(`${BASE}/events/ws`, { headers: auth('ventros_admin', 'ta') });
  assert.equal(plain.status, 400);
  assert.equal((await plain.json()).code, '22023');
  const a = await wsSubscribe('/events/ws?types=custom.stream_w_pinged', { tenant: 'ta' });
  const b = await wsSubscribe('/events/ws?types=custom.stream_w_pinged', { tenant: 'tb' });
  assert.equal(a.status, 101);
  assert.equal(a.accept, a.expectedAccept);
  const sb = await emit('tb', 'stream_w_pinged', { n: 0 });
  const s1 = await emit('ta', 'stream_w_pinged', { n: 1 });
  await emit('ta', 'stream_y_pinged');
  const s2 = await emit('ta', 'stream_w_pinged', { n: 2 });
  await until(() => has(a, s2), 'the events over the WebSocket', 30000, 10);
  await until(() => has(b, sb), "tb's event", 30000, 10);
  assert.deepEqual(a.events.map((e) => [seqOf(e), e.event, e.data.data.n, e.data.tenantid]),
    [[s1, 'custom.stream_w_pinged', 1, 'ta'], [s2, 'custom.stream_w_pinged', 2, 'ta']]);
  assert.ok(a.events.every((e) => /^[0-9]+$/.test(e.id)), 'each with its publish position as id');
  assert.ok(b.events.every((e) => e.data.tenantid === 'tb'));
  await until(() => a.pings >= 2, 'two pings', 30000, 20);
  a.close();
  const s3 = await emit('ta', 'stream_w_pinged', { n: 3 });
  const again = await wsSubscribe('/events/ws?types=custom.stream_w_pinged', { headers: { 'Last-Event-ID': idOf(a, s1) } });
  const s4 = await emit('ta', 'stream_w_pinged', { n: 4 });
  await until(() => has(again, s4), 'the resumed WebSocket', 30000, 10);
  assert.deepEqual(seqs(again), [s2, s3, s4]);
  again.close();
  b.close();
});
