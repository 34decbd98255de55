// Fake WAHA (design channels.md sections 1.8, 1.9 and 7), built on
// recorder.mjs: every request is recorded and scripts (POST /__fake/script)
// take precedence, so tests inject 500s, 429 + Retry-After, resets, the
// NOWEB answer shape or an empty 201.  Unscripted, it behaves like WAHA (GOWS):
//   POST /api/sendText|sendImage|sendFile|sendVoice|sendVideo|sendLocation|sendContactVcard|sendSeen
//     X-Api-Key checked (401 {"statusCode":401,"message":"Unauthorized"}), the session must
//     exist (404) and be WORKING (422, the body of section 1.8), chatId must end with
//     @c.us|@g.us|@lid (400), file must have exactly one of url/data (400); answers 201 with a
//     WAMessage whose id is true_<chatId>_<20 upper-hex>.
//   GET /api/sessions[/<s>], POST /api/sessions, POST /api/sessions/<s>/start|stop,
//     PUT /api/sessions/<s>, GET /api/<s>/auth/qr (a 1x1 PNG).
//   GET /api/files/<s>/<name>: seeded media, X-Api-Key required.
// Control (besides recorder's): POST /__fake/session {"name","status"}, POST /__fake/file
// {"session","name","content_type","base64"}, GET /__fake/sent (the messages it accepted),
// POST /__fake/emit {"base","channel_id","hmac_key","payload"} or {…,"ack":{"id","ack"}}: posts a
// webhook (signed with X-Webhook-Hmac sha512 when hmac_key is given) to
// <base>/webhooks/waha/<channel_id> and answers {"status","body"} — e.g. the ack of a message it accepted;
// emitDefaults (startWaha's option) fills the fields a body leaves out.
// onAnswer: see recorder.mjs.  scripts/up runs it as a stand-in through standin.mjs.
//
// In-process: const waha = await startWaha({ apiKey: 'k1' }); waha.url; waha.sent(); await waha.close();
// Standalone: node waha.mjs --port 3000 [--api-key k1]
import crypto from 'node:crypto';
import { startRecorder } from './recorder.mjs';
import { emitWaha, wahaAck } from './emit.mjs';

const PNG_1x1 = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==', 'base64');
const SEND_PATHS = new Set(['sendText', 'sendImage', 'sendFile', 'sendVoice', 'sendVideo', 'sendLocation',
                            'sendContactVcard', 'sendSeen']);
const FILE_PATHS = new Set(['sendImage', 'sendFile', 'sendVoice', 'sendVideo']);

const json = (status, body) => ({ status, body });
const badRequest = (message) => json(400, { statusCode: 400, message: [message], error: 'Bad Request' });

export async function startWaha({ port = 0, host = '127.0.0.1', apiKey = 'waha-key', me = '5511988887777@c.us',
                                  sessions = { 'acme-sales': 'WORKING' }, onAnswer = null, emitDefaults = {} } = {}) {
  const state = new Map(Object.entries(sessions).map(([name, status]) => [name, { name, status, config: {} }]));
  const files = new Map(); // "<session>/<name>" -> {content_type, data}
  let sent = [];

  function authorised(rec) {
    return !apiKey || rec.headers['x-api-key'] === apiKey;
  }

  function sessionInfo(s) {
    return { name: s.name, status: s.status, config: s.config, me: s.status === 'WORKING' ? { id: me, pushName: 'Acme Sales' } : null };
  }

  function handleSend(kind, rec) {
    let body;
    try {
      body = JSON.parse(rec.body_text);
    } catch {
      return badRequest('body must be JSON');
    }
    const s = state.get(body.session);
    if (!s) {
      return json(404, { statusCode: 404, message: `We didn't find a session with name '${body.session}'. Please start it first by using POST /api/sessions/${body.session}/start request`, error: 'Not Found' });
    }
    if (s.status !== 'WORKING') {
      return json(422, { error: 'Session status is not as expected. Try again later or restart the session',
                         session: s.name, status: s.status, expected: ['WORKING'] });
    }
    if (typeof body.chatId !== 'string') return badRequest('chatId must be a string');
    if (!/@(c\.us|g\.us|lid)$/.test(body.chatId)) return badRequest('chatId must end with @c.us, @g.us or @lid');
    if (kind === 'sendText' && typeof body.text !== 'string') return badRequest('text must be a string');
    if (FILE_PATHS.has(kind)) {
      const f = body.file;
      if (!f || typeof f !== 'object' || (f.url === undefined) === (f.data === undefined))
        return badRequest('file must have exactly one of url or data');
    }
    if (kind === 'sendSeen') return json(201, {});
    const id = `true_${body.chatId}_${crypto.randomBytes(10).toString('hex').toUpperCase()}`;
    const msg = { id, timestamp: Math.floor(Date.now() / 1000), from: me, fromMe: true, source: 'api', to: body.chatId,
                  body: body.text ?? body.caption ?? '', hasMedia: FILE_PATHS.has(kind), ack: 1, ackName: 'SERVER' };
    sent.push({ kind, request: body, message: msg });
    return json(201, msg);
  }

  async function handle(rec) {
    if (!authorised(rec)) return json(401, { statusCode: 401, message: 'Unauthorized' });
    const parts = rec.path.split('/').filter(Boolean); // ["api", ...]
    if (parts[0] !== 'api') return json(404, { statusCode: 404, message: `Cannot ${rec.method} ${rec.path}`, error: 'Not Found' });
    if (rec.method === 'POST' && parts.length === 2 && SEND_PATHS.has(parts[1])) return handleSend(parts[1], rec);
    if (parts[1] === 'files' && rec.method === 'GET' && parts.length === 4) {
      const f = files.get(`${parts[2]}/${parts[3]}`);
      if (!f) return json(404, { statusCode: 404, message: 'File not found', error: 'Not Found' });
      return { status: 200, headers: { 'Content-Type': f.content_type }, raw: f.data };
    }
    if (parts[1] === 'sessions') {
      if (rec.method === 'GET' && parts.length === 2) return json(200, [...state.values()].map(sessionInfo));
      if (rec.method === 'POST' && parts.length === 2) {
        const b = JSON.parse(rec.body_text || '{}');
        const s = { name: b.name ?? 'default', status: 'STARTING', config: b.config ?? {} };
        state.set(s.name, s);
        return json(201, sessionInfo(s));
      }
      const s = state.get(parts[2]);
      if (!s) return json(404, { statusCode: 404, message: `We didn't find a session with name '${parts[2]}'.`, error: 'Not Found' });
      if (rec.method === 'GET' && parts.length === 3) return json(200, sessionInfo(s));
      if (rec.method === 'PUT' && parts.length === 3) {
        s.config = JSON.parse(rec.body_text || '{}').config ?? s.config;
        return json(200, sessionInfo(s));
      }
      if (rec.method === 'POST' && parts[3] === 'start') { s.status = 'WORKING'; return json(201, sessionInfo(s)); }
      if (rec.method === 'POST' && parts[3] === 'stop') { s.status = 'STOPPED'; return json(201, sessionInfo(s)); }
    }
    if (rec.method === 'GET' && parts.length === 4 && parts[2] === 'auth' && parts[3] === 'qr' && state.has(parts[1]))
      return { status: 200, headers: { 'Content-Type': 'image/png' }, raw: PNG_1x1 };
    return json(404, { statusCode: 404, message: `Cannot ${rec.method} ${rec.path}`, error: 'Not Found' });
  }

  async function control(method, path, body) {
    if (method === 'POST' && path === '/__fake/session') {
      const s = state.get(body.name) ?? { name: body.name, config: {} };
      s.status = body.status;
      state.set(body.name, s);
      return sessionInfo(s);
    }
    if (method === 'POST' && path === '/__fake/file') {
      files.set(`${body.session}/${body.name}`, { content_type: body.content_type, data: Buffer.from(body.base64, 'base64') });
      return { ok: true };
    }
    if (method === 'GET' && path === '/__fake/sent') return sent;
    if (method === 'POST' && path === '/__fake/emit') {
      body = { ...emitDefaults, ...body };
      let payload = body.payload;
      if (!payload && body.ack) {
        const m = sent.find((x) => x.message.id === body.ack.id);
        payload = wahaAck({ id: body.ack.id, ack: body.ack.ack, to: (m?.message.to ?? '5511999998888@c.us').split('@')[0],
                            me: me.split('@')[0], session: m?.request.session ?? 'acme-sales' });
      }
      const r = await emitWaha(body.base, body.channel_id, payload, { hmacKey: body.hmac_key ?? null });
      return { status: r.status, body: r.json ?? r.text };
    }
    return undefined;
  }

  const rec = await startRecorder({ port, host, handle, control, onAnswer });
  return {
    ...rec,
    sent: () => [...sent],
    setSession: (name, status) => control('POST', '/__fake/session', { name, status }),
    addFile: (session, name, contentType, data) =>
      control('POST', '/__fake/file', { session, name, content_type: contentType, base64: Buffer.from(data).toString('base64') }),
    emit: (body) => control('POST', '/__fake/emit', body),
    reset: () => { rec.reset(); sent = []; },
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (n, d) => { const i = process.argv.indexOf(n); return i > 0 ? process.argv[i + 1] : d; };
  const fake = await startWaha({ port: Number(arg('--port', 0)), apiKey: arg('--api-key', 'waha-key') });
  console.log(`fake WAHA listening on ${fake.url}`);
}
