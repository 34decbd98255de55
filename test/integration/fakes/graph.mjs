// Fake Meta Graph API for WhatsApp Cloud, Instagram and Messenger (design
// channels.md sections 1.10, 2.3, 2.4, 3.2, 4.2 and 7): one server for both
// graph.facebook.com and graph.instagram.com, built on recorder.mjs (every
// request recorded; scripts take precedence, so tests inject Graph errors,
// 500s, 429 + Retry-After and resets).  Unscripted:
//   POST /<ver>/<phone_number_id>/messages with messaging_product: Bearer checked (401, code
//     190), messaging_product/to/type + the type's object validated (400, code 100); answers
//     {"messaging_product","contacts":[{input,wa_id}],"messages":[{"id":"wamid.…"}]}.
//     A mark-as-read body ({"status":"read","message_id"}) answers {"success":true}.
//   POST /<ver>/me/messages, /<ver>/<page_or_ig_id>/messages (no messaging_product):
//     recipient.id, message.text|attachment and messaging_type validated; answers
//     {"recipient_id","message_id"}.
//   GET /<ver>/<media_id>: {"messaging_product","url","mime_type","sha256","file_size","id"}, the
//     url pointing to /media/<id> on this server, which serves the bytes only with the Bearer
//     header and only within mediaExpiryMs of the lookup (else 404).
//   GET /<ver>/<waba_id>/message_templates?limit&after: the seeded templates, paged with cursors.
//   GET /<ver>/<psid_or_igsid>?fields=…: a seeded profile.
// graphError(code, …) builds the scripted error answers of section 1.10 (131047, 130429,
// 131056, 2 with 500, 10/2018278, 100/2018001, 613, 190, …).
// Control (besides recorder's): POST /__fake/tokens {"tokens":[…]}, POST /__fake/media
// {"id","content_type","base64"}, POST /__fake/templates {"waba_id","templates":[…]},
// POST /__fake/profile {"id", …fields}, POST /__fake/media_expiry {"ms"}, GET /__fake/sent,
// POST /__fake/emit {"base","provider","channel_id","app_secret","payload"} or, for WhatsApp,
// {…,"statuses":{"phone_number_id","list":[{"id","status"}]}}: posts a webhook signed with
// X-Hub-Signature-256 to <base>/webhooks/<provider>/<channel_id>; answers {"status","body"};
// emitDefaults (startGraph's option) fills the fields a body leaves out.
// onAnswer: see recorder.mjs.  scripts/up runs it as a stand-in through standin.mjs.
//
// In-process: const graph = await startGraph({ tokens: ['tok'] }); graph.url; await graph.close();
// Standalone: node graph.mjs --port 8090 [--token tok]
import crypto from 'node:crypto';
import { startRecorder } from './recorder.mjs';
import { emitMeta, whatsappStatuses } from './emit.mjs';

const KNOWN_ERRORS = {
  131047: { status: 400, subcode: 2494010, message: '(#131047) Re-engagement message',
            details: 'Message failed to send because more than 24 hours have passed since the customer last replied to this number.' },
  130429: { status: 400, message: '(#130429) Rate limit hit', details: 'Cloud API message throughput has been reached.' },
  131056: { status: 400, message: '(#131056) (Business Account, Consumer Account) pair rate limit hit',
            details: 'Too many messages sent from the sender phone number to the same recipient phone number in a short period of time.' },
  2: { status: 500, message: 'An unexpected error has occurred. Please retry your request later.' },
  10: { status: 400, subcode: 2018278, message: '(#10) This message is sent outside of allowed window.' },
  100: { status: 400, subcode: 2018001, message: '(#100) No matching user found' },
  613: { status: 400, message: '(#613) Calls to this api have exceeded the rate limit.' },
  190: { status: 401, message: 'Error validating access token: Session has expired.' },
  131026: { status: 400, message: '(#131026) Message undeliverable' },
};

// A scripted Graph error answer: graphError(131047), graphError(10, { subcode: 2018278 }).
export function graphError(code, { status, subcode, message, details, headers } = {}) {
  const k = KNOWN_ERRORS[code] ?? {};
  const error = { message: message ?? k.message ?? `(#${code}) error`, type: code === 190 ? 'OAuthException' : 'OAuthException',
                  code, fbtrace_id: 'A' + crypto.randomBytes(8).toString('hex') };
  const sub = subcode ?? k.subcode;
  if (sub !== undefined) error.error_subcode = sub;
  const d = details ?? k.details;
  if (d) error.error_data = { messaging_product: 'whatsapp', details: d };
  return { status: status ?? k.status ?? 400, headers, body: { error } };
}

const invalid = (message) => graphError(100, { status: 400, subcode: undefined, message: `(#100) ${message}` });
const MEDIA_TYPES = ['image', 'audio', 'video', 'document', 'sticker'];

export async function startGraph({ port = 0, host = '127.0.0.1', tokens = ['graph-token'], mediaExpiryMs = 300000,
                                   onAnswer = null, emitDefaults = {} } = {}) {
  let valid = new Set(tokens);
  let expiry = mediaExpiryMs;
  const media = new Map();     // id -> {content_type, data, sha256}
  const issued = new Map();    // media id -> time its URL was handed out
  const templates = new Map(); // waba id -> [template]
  const profiles = new Map();  // psid/igsid -> profile
  let sent = [];
  let base = '';

  function bearer(rec) {
    const m = /^Bearer (.+)$/.exec(rec.headers.authorization ?? '');
    return m && valid.has(m[1]);
  }

  function sendWhatsApp(b) {
    if (b.status === 'read') {
      if (typeof b.message_id !== 'string') return invalid('Param message_id is required');
      return { status: 200, body: { success: true } };
    }
    if (b.messaging_product !== 'whatsapp') return invalid('The parameter messaging_product is required.');
    if (typeof b.to !== 'string' || !/^\+?[0-9]{6,20}$/.test(b.to)) return invalid('Invalid parameter: to');
    const types = ['text', 'template', 'interactive', 'location', 'contacts', 'reaction', ...MEDIA_TYPES];
    if (!types.includes(b.type)) return invalid(`Invalid parameter: type ${b.type}`);
    const o = b[b.type];
    if (!o || typeof o !== 'object') return invalid(`Param ${b.type} is required`);
    if (b.type === 'text' && typeof o.body !== 'string') return invalid('Param text[\'body\'] is required');
    if (MEDIA_TYPES.includes(b.type) && (o.link === undefined) === (o.id === undefined))
      return invalid(`Param ${b.type} must have exactly one of link or id`);
    if (b.type === 'audio' && o.caption !== undefined) return invalid('Param audio[\'caption\'] is not allowed');
    if (b.type === 'template' && (typeof o.name !== 'string' || typeof o.language?.code !== 'string'))
      return invalid('Param template[\'name\'] and template[\'language\'][\'code\'] are required');
    const id = 'wamid.' + crypto.randomBytes(24).toString('base64');
    sent.push({ api: 'whatsapp', request: b, id });
    return { status: 200, body: { messaging_product: 'whatsapp', contacts: [{ input: b.to, wa_id: b.to.replace(/^\+/, '') }],
                                  messages: [{ id, message_status: 'accepted' }] } };
  }

  function sendMessaging(b) {
    if (typeof b.recipient?.id !== 'string') return invalid('Param recipient[id] must be a valid ID string');
    const m = b.message;
    if (!m || (typeof m.text !== 'string' && typeof m.attachment !== 'object'))
      return invalid('param message must be non-empty: text or attachment');
    if (m.attachment && !['image', 'audio', 'video', 'file', 'template'].includes(m.attachment.type))
      return invalid('Invalid attachment type');
    if (b.messaging_type !== undefined && !['RESPONSE', 'UPDATE', 'MESSAGE_TAG'].includes(b.messaging_type))
      return invalid('Invalid messaging_type');
    const id = 'm_' + crypto.randomBytes(18).toString('base64url');
    sent.push({ api: 'messaging', request: b, id });
    return { status: 200, body: { recipient_id: b.recipient.id, message_id: id } };
  }

  async function handle(rec) {
    const parts = rec.path.split('/').filter(Boolean);
    if (parts[0] === 'media' && parts.length === 2 && rec.method === 'GET') {
      const m = media.get(parts[1]);
      if (!m || !bearer(rec)) return { status: 404, body: 'Not Found' };
      const at = issued.get(parts[1]);
      if (at === undefined || Date.now() - at > expiry) return { status: 404, body: 'URL signature expired' };
      return { status: 200, headers: { 'Content-Type': m.content_type }, raw: m.data };
    }
    if (!/^v[0-9]+\.[0-9]+$/.test(parts[0] ?? '')) return invalid(`Unknown path components: ${rec.path}`);
    if (!bearer(rec)) return graphError(190, { status: 401, message: 'Invalid OAuth access token - Cannot parse access token' });
    if (rec.method === 'POST' && parts.length === 3 && parts[2] === 'messages') {
      let b;
      try { b = JSON.parse(rec.body_text); } catch { return invalid('Request body must be JSON'); }
      return b.messaging_product !== undefined || b.status === 'read' ? sendWhatsApp(b) : sendMessaging(b);
    }
    if (rec.method === 'GET' && parts.length === 3 && parts[2] === 'message_templates') {
      const all = templates.get(parts[1]) ?? [];
      const limit = Math.max(1, Number(rec.query.limit ?? 25));
      const from = rec.query.after ? Number(Buffer.from(rec.query.after, 'base64').toString()) : 0;
      const page = all.slice(from, from + limit);
      const body = { data: page, paging: { cursors: { before: Buffer.from(String(from)).toString('base64'),
                                                      after: Buffer.from(String(from + page.length)).toString('base64') } } };
      if (from + page.length < all.length)
        body.paging.next = `${base}/${parts[0]}/${parts[1]}/message_templates?limit=${limit}&after=${body.paging.cursors.after}`;
      return { status: 200, body };
    }
    if (rec.method === 'GET' && parts.length === 2) {
      const m = media.get(parts[1]);
      if (m) {
        issued.set(parts[1], Date.now());
        return { status: 200, body: { messaging_product: 'whatsapp', url: `${base}/media/${parts[1]}?ext=${Date.now()}`,
                                      mime_type: m.content_type, sha256: m.sha256, file_size: String(m.data.length), id: parts[1] } };
      }
      const p = profiles.get(parts[1]);
      if (p) return { status: 200, body: { ...p, id: parts[1] } };
      return graphError(100, { status: 400, subcode: 33, message: `(#100) Unsupported get request. Object with ID '${parts[1]}' does not exist` });
    }
    return invalid(`Unknown path components: ${rec.path}`);
  }

  async function control(method, path, body) {
    if (method === 'POST' && path === '/__fake/tokens') { valid = new Set(body.tokens); return { ok: true }; }
    if (method === 'POST' && path === '/__fake/media') {
      const data = Buffer.from(body.base64, 'base64');
      media.set(String(body.id), { content_type: body.content_type, data,
                                   sha256: body.sha256 ?? crypto.createHash('sha256').update(data).digest('hex') });
      return { ok: true };
    }
    if (method === 'POST' && path === '/__fake/templates') { templates.set(String(body.waba_id), body.templates); return { ok: true }; }
    if (method === 'POST' && path === '/__fake/profile') { profiles.set(String(body.id), body); return { ok: true }; }
    if (method === 'POST' && path === '/__fake/media_expiry') { expiry = body.ms; return { ok: true }; }
    if (method === 'GET' && path === '/__fake/sent') return sent;
    if (method === 'POST' && path === '/__fake/emit') {
      body = { ...emitDefaults, ...body };
      const payload = body.payload ?? whatsappStatuses({ phoneNumberId: body.statuses.phone_number_id, statuses: body.statuses.list.map(
        (st) => ({ ...st, recipient: st.recipient ?? sent.find((x) => x.id === st.id)?.request.to })) });
      const r = await emitMeta(body.base, body.provider ?? 'whatsapp', body.channel_id, payload, { appSecret: body.app_secret ?? null });
      return { status: r.status, body: r.json ?? r.text };
    }
    return undefined;
  }

  const rec = await startRecorder({ port, host, handle, control, onAnswer });
  base = rec.url;
  return {
    ...rec,
    sent: () => [...sent],
    addMedia: (id, contentType, data, sha256) =>
      control('POST', '/__fake/media', { id, content_type: contentType, base64: Buffer.from(data).toString('base64'), sha256 }),
    setTemplates: (wabaId, list) => control('POST', '/__fake/templates', { waba_id: wabaId, templates: list }),
    setProfile: (id, profile) => control('POST', '/__fake/profile', { id, ...profile }),
    setMediaExpiry: (ms) => control('POST', '/__fake/media_expiry', { ms }),
    emit: (body) => control('POST', '/__fake/emit', body),
    reset: () => { rec.reset(); sent = []; },
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (n, d) => { const i = process.argv.indexOf(n); return i > 0 ? process.argv[i + 1] : d; };
  const fake = await startGraph({ port: Number(arg('--port', 0)), tokens: [arg('--token', 'graph-token')] });
  console.log(`fake Graph listening on ${fake.url}`);
}
