// Provider webhooks, signed and posted as the real providers send them
// (design channels.md §1.1, §1.10), so that tests drive ventros-http's
// POST /webhooks/<provider>/<channel_id> end to end.  Not a test file.
//
// Signing:
//   WAHA   X-Webhook-Hmac: hex HMAC-SHA512(key, raw body) with
//          X-Webhook-Hmac-Algorithm: sha512 (only when a key is given), and
//          always X-Webhook-Request-Id, X-Webhook-Timestamp (unix ms),
//          User-Agent: WAHA/<version>, Content-Type: application/json;
//          the body is UTF-8 JSON as Node writes it (non-ASCII left as is).
//   Meta   X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>
//          (and the legacy X-Hub-Signature: sha1=..., which we ignore);
//          the body is serialised as Meta does: every non-ASCII character
//          escaped as \uXXXX (UTF-16 units) and "/" as "\/", so a receiver
//          that re-encoded the body before verifying would fail.
//
// Payload builders follow channels.md's examples, with ids taken from
// the caller so that every test has messages of its own.
import crypto from 'node:crypto';
import http from 'node:http';

export const WAHA_VERSION = '2025.9.5';

// ---- serialisation -------------------------------------------------------

// JSON as Meta writes it: ASCII only (\uXXXX escapes), slashes escaped.
export function metaJson(value) {
  return JSON.stringify(value)
    .replace(/\//g, '\\/')
    .replace(/[\u007f-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
}

const bytes = (body) => (Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body), 'utf8'));

// ---- signatures ----------------------------------------------------------

export function wahaSignature(body, key) {
  return crypto.createHmac('sha512', key).update(bytes(body)).digest('hex');
}

export function metaSignature(body, appSecret) {
  return 'sha256=' + crypto.createHmac('sha256', appSecret).update(bytes(body)).digest('hex');
}

// Headers WAHA sends with a webhook; hmacKey null: unsigned (no key set in
// the session's webhook config); token: the X-Ventros-Token custom header.
export function wahaHeaders(body, { hmacKey = null, token = null, requestId, timestamp } = {}) {
  const h = {
    'Content-Type': 'application/json',
    'User-Agent': `WAHA/${WAHA_VERSION}`,
    'X-Webhook-Request-Id': requestId ?? crypto.randomUUID(),
    'X-Webhook-Timestamp': String(timestamp ?? Date.now()),
  };
  if (hmacKey !== null && hmacKey !== undefined) {
    h['X-Webhook-Hmac'] = wahaSignature(body, hmacKey);
    h['X-Webhook-Hmac-Algorithm'] = 'sha512';
  }
  if (token) h['X-Ventros-Token'] = token;
  return h;
}

// Headers Meta sends with a webhook (appSecret null: none at all).
export function metaHeaders(body, { appSecret = null } = {}) {
  const h = { 'Content-Type': 'application/json', 'User-Agent': 'facebookexternalua' };
  if (appSecret !== null && appSecret !== undefined) {
    h['X-Hub-Signature-256'] = metaSignature(body, appSecret);
    h['X-Hub-Signature'] = 'sha1=' + crypto.createHmac('sha1', appSecret).update(bytes(body)).digest('hex');
  }
  return h;
}

// ---- posting -------------------------------------------------------------

export function webhookUrl(base, provider, channelId) {
  return `${base}/webhooks/${provider}/${channelId}`;
}

// POSTs bytes with headers; resolves {status, headers, text, json}.
export async function post(url, body, headers = {}) {
  const r = await fetch(url, { method: 'POST', headers, body: bytes(body) });
  const text = await r.text();
  let json;
  try { json = text ? JSON.parse(text) : undefined; } catch { json = undefined; }
  return { status: r.status, headers: r.headers, text, json };
}

// A WAHA webhook: payload is an object (serialised as WAHA does) or the raw
// body (string or Buffer, sent as is).
export async function emitWaha(base, channelId, payload, opts = {}) {
  const body = typeof payload === 'object' && !Buffer.isBuffer(payload) ? JSON.stringify(payload) : payload;
  const headers = { ...wahaHeaders(body, opts), ...(opts.headers ?? {}) };
  return post(webhookUrl(base, 'waha', channelId), body, headers);
}

// A Meta webhook (provider whatsapp, instagram or messenger).
export async function emitMeta(base, provider, channelId, payload, opts = {}) {
  const body = typeof payload === 'object' && !Buffer.isBuffer(payload) ? metaJson(payload) : payload;
  const headers = { ...metaHeaders(body, opts), ...(opts.headers ?? {}) };
  return post(webhookUrl(base, provider, channelId), body, headers);
}

// Meta's verification handshake (GET with hub.* query parameters).
export async function handshake(base, provider, channelId, { mode = 'subscribe', token, challenge } = {}) {
  const q = new URLSearchParams();
  if (mode !== null) q.set('hub.mode', mode);
  if (token !== undefined && token !== null) q.set('hub.verify_token', token);
  if (challenge !== undefined && challenge !== null) q.set('hub.challenge', challenge);
  const r = await fetch(`${webhookUrl(base, provider, channelId)}?${q}`);
  return { status: r.status, headers: r.headers, text: await r.text() };
}

// One keep-alive connection per concurrent sender, as a provider's
// delivery pool would use (fetch pools too, but this keeps the count exact).
export function keepAliveAgent(maxSockets = 16) {
  return new http.Agent({ keepAlive: true, maxSockets });
}

// ---- payload builders (channels.md) -------------------------------------

const uid = () => crypto.randomBytes(10).toString('hex').toUpperCase();

// WAHA message.any: text by default; media {url, mimetype, filename} adds
// hasMedia and the engine's _data keys; fromMe: our own message sent from
// another device (an echo).
export function wahaMessage({ id, from = '5511999998888', me = '5511988887777', body = 'Olá! Queria mais informações, por favor.',
  fromMe = false, pushName = 'Ana Alves', media = null, mediaType = null, timestamp, session = 'acme-sales',
  event = 'message.any' } = {}) {
  const chat = `${from}@c.us`;
  const ourId = `${me}@c.us`;
  const msgId = id ?? `${fromMe ? 'true' : 'false'}_${chat}_${uid()}`;
  const ts = timestamp ?? Math.floor(Date.now() / 1000);
  const data = {
    Info: {
      Chat: `${from}@s.whatsapp.net`, Sender: `${fromMe ? me : from}@s.whatsapp.net`, IsGroup: false,
      ID: msgId.split('_').pop(), Type: media ? 'media' : 'text', PushName: pushName,
    },
    Message: { conversation: media ? undefined : body },
  };
  if (media) {
    const kind = mediaType ?? (media.mimetype.startsWith('image/') ? 'image' : media.mimetype.startsWith('audio/') ? 'ptt'
      : media.mimetype.startsWith('video/') ? 'video' : 'document');
    data.Info.MediaType = kind;
    const key = { image: 'imageMessage', ptt: 'audioMessage', audio: 'audioMessage', video: 'videoMessage', document: 'documentMessage' }[kind];
    data.Message = { [key]: { URL: 'https://mmg.whatsapp.net/v/t62.7118-24/abc.enc', mimetype: media.mimetype, caption: body ?? undefined,
      ...(kind === 'ptt' ? { PTT: true } : {}), ...(media.filename ? { fileName: media.filename } : {}) } };
  }
  return {
    id: `evt_${uid().toLowerCase()}`, timestamp: ts * 1000 + 101, event, session,
    me: { id: ourId, pushName: 'Acme Sales' },
    payload: {
      id: msgId, timestamp: ts, from: fromMe ? ourId : chat, fromMe, source: fromMe ? 'app' : 'app',
      to: fromMe ? chat : ourId, participant: null, body: body ?? '', hasMedia: Boolean(media),
      media: media ? { url: media.url, mimetype: media.mimetype, filename: media.filename ?? null, error: null } : null,
      ack: fromMe ? 1 : 2, ackName: fromMe ? 'SERVER' : 'DEVICE', replyTo: null, _data: data,
    },
    engine: 'GOWS', environment: { version: WAHA_VERSION, engine: 'GOWS', tier: 'PLUS', browser: null },
  };
}

const ACK_NAMES = { '-1': 'ERROR', 0: 'PENDING', 1: 'SERVER', 2: 'DEVICE', 3: 'READ', 4: 'PLAYED' };

// WAHA message.ack for a message id (ack -1..4).
export function wahaAck({ id, ack, to = '5511999998888', me = '5511988887777', session = 'acme-sales' }) {
  return {
    id: `evt_${uid().toLowerCase()}`, timestamp: Date.now(), event: 'message.ack', session,
    payload: { id, from: `${to}@c.us`, to: `${me}@c.us`, participant: null, fromMe: true, ack, ackName: ACK_NAMES[ack] },
  };
}

export function wahaSessionStatus({ status = 'WORKING', session = 'acme-sales' } = {}) {
  return {
    id: `evt_${uid().toLowerCase()}`, timestamp: Date.now(), event: 'session.status', session,
    me: { id: '5511988887777@c.us', pushName: 'Acme Sales' }, payload: { name: session, status },
  };
}

// WhatsApp Cloud API: one delivery with messages (each a channels.md §2.1
// item) from one contact.
export function whatsappMessages({ phoneNumberId, wabaId = '102290129340398', waId = '16505551234', name = 'Sheena Nelson', messages }) {
  return {
    object: 'whatsapp_business_account',
    entry: [{
      id: wabaId,
      changes: [{
        field: 'messages',
        value: {
          messaging_product: 'whatsapp',
          metadata: { display_phone_number: '15550783881', phone_number_id: phoneNumberId },
          contacts: [{ profile: { name }, wa_id: waId }],
          messages: messages.map((m) => ({ from: waId, ...m })),
        },
      }],
    }],
  };
}

export const wamid = () => `wamid.HBgL${crypto.randomBytes(24).toString('base64')}`;
const nowS = () => String(Math.floor(Date.now() / 1000));

export function whatsappText({ id = wamid(), body = 'Does it come in another color?', timestamp = nowS() } = {}) {
  return { id, timestamp, type: 'text', text: { body } };
}

export function whatsappImage({ id = wamid(), caption = 'this one', mediaId = '1003383421387256', timestamp = nowS() } = {}) {
  return { id, timestamp, type: 'image', image: { caption, mime_type: 'image/jpeg', sha256: '6f1dAbC=', id: mediaId } };
}

export function whatsappDocument({ id = wamid(), mediaId = '987654321098765', timestamp = nowS() } = {}) {
  return { id, timestamp, type: 'document', document: { caption: 'quote', filename: 'orcamento.pdf', mime_type: 'application/pdf', sha256: 'c2F=', id: mediaId } };
}

export function whatsappAudio({ id = wamid(), mediaId = '1234567890123456', timestamp = nowS() } = {}) {
  return { id, timestamp, type: 'audio', audio: { mime_type: 'audio/ogg; codecs=opus', sha256: 'Qm9=', id: mediaId, voice: true } };
}

// WhatsApp Cloud statuses for our outbound message ids.
export function whatsappStatuses({ phoneNumberId, wabaId = '102290129340398', statuses }) {
  return {
    object: 'whatsapp_business_account',
    entry: [{ id: wabaId, changes: [{ field: 'messages', value: {
      messaging_product: 'whatsapp',
      metadata: { display_phone_number: '15550783881', phone_number_id: phoneNumberId },
      statuses: statuses.map(({ id, status, recipient = '16505551234', timestamp = nowS(), errors }) => ({
        id, status, timestamp, recipient_id: recipient,
        ...(errors ? { errors } : {}),
        ...(status !== 'failed' ? { conversation: { id: crypto.randomBytes(16).toString('hex'), origin: { type: 'service' } },
          pricing: { billable: false, pricing_model: 'PMP', category: 'service', type: 'free_customer_service' } } : {}),
      })),
    } }] }],
  };
}

// Instagram / Messenger: entries of messaging events.  object 'instagram'
// or 'page'; accountId = IGID or Page id.
export function metaMessaging({ object, accountId, events, time = Date.now() }) {
  return { object, entry: [{ id: accountId, time, messaging: events }] };
}

export const mid = (prefix = 'm_') => `${prefix}${crypto.randomBytes(30).toString('base64url')}`;

// An inbound message event from a user (sender) to the account.
export function messagingMessage({ accountId, sender, id = mid(), text, attachments, isEcho = false, timestamp = Date.now() }) {
  const message = { mid: id };
  if (text !== undefined) message.text = text;
  if (attachments) message.attachments = attachments;
  if (isEcho) message.is_echo = true;
  return isEcho
    ? { sender: { id: accountId }, recipient: { id: sender }, timestamp, message }
    : { sender: { id: sender }, recipient: { id: accountId }, timestamp, message };
}

export function messengerDelivery({ accountId, sender, mids, watermark = Date.now() }) {
  return { sender: { id: sender }, recipient: { id: accountId }, timestamp: watermark + 5, delivery: { mids, watermark } };
}

export function messengerRead({ accountId, sender, watermark = Date.now() }) {
  return { sender: { id: sender }, recipient: { id: accountId }, timestamp: watermark + 5, read: { watermark } };
}

export function instagramRead({ accountId, sender, id }) {
  return { sender: { id: sender }, recipient: { id: accountId }, timestamp: Date.now(), read: { mid: id } };
}
