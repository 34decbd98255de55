// A provider stand-in: the fake WAHA (waha.mjs), the fake Graph API
// (graph.mjs), the fake AI providers (ai.mjs) or the fake Stripe (stripe.mjs) run as a server of their own, as scripts/up starts them for the
// demo channels (scripts/standins.sh) and the README round trip test
// (test/integration/demo_roundtrip.test.mjs) starts them the same way.
//
//   node test/integration/fakes/standin.mjs waha|graph|ai|stripe CONFIG.json
//
// CONFIG (written by scripts/up.d/webhooks.sh; mode 600, it holds secrets):
//   {"ventros": "<ventros-http base URL: where status webhooks go>",
//    "waha":  {"host", "port", "log", "api_key", "session", "channel_id", "hmac_key", "statuses": ["delivered"]},
//    "graph": {"host", "port", "log", "token", "app_secret", "statuses": ["delivered"],
//              "channels": [{"provider": "whatsapp|messenger|instagram", "id": "<channel id>",
//                            "account": "<phone_number_id | page_id | ig_account_id>"}]},
//    "ai":    {"host", "port", "log", "keys": {"groq": [..], "openai": [..], "gemini": [..], "llamaparse": [..]}},
//    "stripe": {"host", "port", "log", "api_key", "webhook_secret"}}
// (the Stripe stand-in posts its own signed webhooks to <ventros>/webhooks/stripe: stripe.mjs)
//
// What it does, besides answering as the provider does (see waha.mjs and
// graph.mjs):
//   - logs one JSON line per request it answered ({"kind": "request",
//     method, path, body, status, answer}; credentials redacted) and per
//     webhook it posted ({"kind": "webhook", event, id, status, to,
//     answer_status, answer}) to its log file;
//   - after each send it accepted, posts the statuses listed in "statuses"
//     back to Ventros, signed as the provider signs them: WAHA message.ack
//     (delivered = ack 2, read = 3), WhatsApp Cloud statuses, Messenger
//     delivery / read events (Instagram sends read events only);
//   - POST /__fake/emit without base, channel and secret uses this config's
//     (e.g. {"ack": {"id": "<provider id>", "ack": 3}} marks a WAHA message read).
import fs from 'node:fs';
import { startWaha } from './waha.mjs';
import { startGraph } from './graph.mjs';
import { startAi } from './ai.mjs';
import { startStripe } from './stripe.mjs';
import { metaMessaging, messengerDelivery, messengerRead, instagramRead } from './emit.mjs';

const WAHA_ACKS = { sent: 1, delivered: 2, read: 3 };
const SECRET_HEADERS = new Set(['x-api-key', 'authorization', 'x-goog-api-key']);
const LOGGED_HEADERS = ['content-type', 'idempotency-key'];

const parse = (text) => {
  try { return text ? JSON.parse(text) : null; } catch { return text; }
};

export async function startStandin(kind, config) {
  const own = config[kind];
  if (!own) throw new Error(`the config has no "${kind}" section`);
  const statuses = own.statuses ?? ['delivered'];
  const log = (entry) => fs.appendFileSync(own.log, JSON.stringify({ at: new Date().toISOString(), ...entry }) + '\n');
  let fake;

  // A status webhook, posted through the fake's own /__fake/emit (so the
  // body and signature are exactly what the tests' emit gives).
  async function post(event, id, status, body) {
    try {
      const r = await fake.emit(body);
      log({ kind: 'webhook', event, id, status, to: `${config.ventros}/webhooks/${body.provider ?? kind}/${body.channel_id}`,
            answer_status: r.status, answer: r.body });
    } catch (e) {
      log({ kind: 'webhook', event, id, status, error: String(e?.cause?.message ?? e?.message ?? e) });
    }
  }

  // The statuses of a send this stand-in accepted, in order, one at a time.
  async function afterWaha(rec, answer) {
    if (!/^\/api\/send(Text|Image|File|Voice|Video|Location|ContactVcard)$/.test(rec.path) || typeof answer?.id !== 'string') return;
    for (const s of statuses) {
      if (WAHA_ACKS[s] !== undefined) {
        await post('message.ack', answer.id, s, { channel_id: own.channel_id, ack: { id: answer.id, ack: WAHA_ACKS[s] } });
      }
    }
  }

  async function afterGraph(rec, request, answer) {
    const [, account, last] = rec.path.split('/').filter(Boolean);
    if (last !== 'messages' || rec.method !== 'POST') return;
    const wamid = answer?.messages?.[0]?.id;
    if (typeof wamid === 'string') {
      const ch = (own.channels ?? []).find((c) => c.provider === 'whatsapp' && c.account === account);
      if (!ch) return;
      for (const s of statuses.filter((x) => ['sent', 'delivered', 'read'].includes(x))) {
        await post('statuses', wamid, s, { provider: 'whatsapp', channel_id: ch.id,
                                           statuses: { phone_number_id: account, list: [{ id: wamid, status: s }] } });
      }
      return;
    }
    const mid = answer?.message_id;
    if (typeof mid !== 'string') return;
    const ch = (own.channels ?? []).find((c) => ['messenger', 'instagram'].includes(c.provider) &&
                                               (c.account === account || (account === 'me' && c.provider === 'messenger')));
    if (!ch) return;
    const sender = request?.recipient?.id;
    for (const s of statuses) {
      let event;
      if (ch.provider === 'messenger' && s === 'delivered') event = messengerDelivery({ accountId: ch.account, sender, mids: [mid] });
      else if (ch.provider === 'messenger' && s === 'read') event = messengerRead({ accountId: ch.account, sender });
      else if (ch.provider === 'instagram' && s === 'read') event = instagramRead({ accountId: ch.account, sender, id: mid });
      else continue;   // Instagram has no delivery event
      const payload = metaMessaging({ object: ch.provider === 'messenger' ? 'page' : 'instagram', accountId: ch.account, events: [event] });
      await post(s, mid, s, { provider: ch.provider, channel_id: ch.id, payload });
    }
  }

  // Sends are answered before their statuses go out, as a provider does;
  // the statuses of one send go in order.
  let queue = Promise.resolve();
  function onAnswer(rec) {
    const request = parse(rec.body_text);
    const answer = parse(rec.response?.body_text);
    const headers = Object.fromEntries(Object.entries(rec.headers)
      .filter(([k]) => [...LOGGED_HEADERS, ...SECRET_HEADERS].includes(k))
      .map(([k, v]) => [k, SECRET_HEADERS.has(k) ? '(redacted)' : v]));
    log({ kind: 'request', method: rec.method, path: rec.path, headers, body: request,
          status: rec.response?.status ?? null, answer });
    const ok = rec.response?.status >= 200 && rec.response?.status < 300;
    if (!ok || !fake || kind === 'ai' || kind === 'stripe') return;   // the AI providers post none; Stripe's post their own
    queue = queue.then(() => (kind === 'waha' ? afterWaha(rec, answer) : afterGraph(rec, request, answer)))
      .catch((e) => log({ kind: 'error', error: String(e?.message ?? e) }));
  }

  if (kind === 'waha') {
    fake = await startWaha({ host: own.host, port: own.port, apiKey: own.api_key, sessions: { [own.session]: 'WORKING' }, onAnswer,
                             emitDefaults: { base: config.ventros, channel_id: own.channel_id, hmac_key: own.hmac_key } });
  } else if (kind === 'graph') {
    const wa = (own.channels ?? []).find((c) => c.provider === 'whatsapp');
    fake = await startGraph({ host: own.host, port: own.port, tokens: [own.token], onAnswer,
                              emitDefaults: { base: config.ventros, app_secret: own.app_secret, provider: 'whatsapp',
                                              channel_id: wa?.id } });
  } else if (kind === 'ai') {
    fake = await startAi({ host: own.host, port: own.port, keys: own.keys ?? {}, onAnswer });
  } else if (kind === 'stripe') {
    fake = await startStripe({ host: own.host, port: own.port, keys: [own.api_key], onAnswer,
                               webhook: own.webhook_secret ? { base: config.ventros, secret: own.webhook_secret } : null });
  } else {
    throw new Error(`unknown stand-in "${kind}" (waha, graph, ai or stripe)`);
  }
  log({ kind: 'listening', provider: kind, url: fake.url });
  return fake;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [kind, file] = process.argv.slice(2);
  if (!kind || !file) {
    console.error('usage: node standin.mjs waha|graph|ai|stripe CONFIG.json');
    process.exit(2);
  }
  const fake = await startStandin(kind, JSON.parse(fs.readFileSync(file, 'utf8')));
  console.log(`${kind} stand-in listening on ${fake.url}`);
  const stop = () => fake.close().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
