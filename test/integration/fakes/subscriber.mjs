// A fake webhook subscriber (design channels.md sections 6 and 7): records
// every delivery like fakes/recorder.mjs (same control API under /__fake and
// the same scripted answers: 500s, 410, 429 with Retry-After, delay_ms for a
// slow receiver, 301 with a Location), and checks X-Ventros-Signature of each
// delivery against the shared secrets, reporting the result in the record:
//   record.signature = {present, valid, t, fresh, age_s, v1_count}
// valid: some v1 equals hex(HMAC-SHA256(secret, "<t>.<raw body>")) for one of
// the secrets (compared in constant time); fresh: |received - t| <= 300 s.
//
// Use in-process:
//   const sub = await startSubscriber({ secrets: ['whsec_...'] });
//   sub.url; sub.requests(path); sub.script({...}); sub.setSecrets([...]); await sub.close();
// or standalone: node subscriber.mjs --port 8098 --secret whsec_...
import crypto from 'node:crypto';
import { startRecorder } from './recorder.mjs';

export const TOLERANCE_S = 300;

// Parses "t=<unix>,v1=<hex>[,v1=<hex>...]".
export function parseSignature(header) {
  const out = { t: null, v1: [] };
  for (const part of String(header ?? '').split(',')) {
    const i = part.indexOf('=');
    if (i < 0) continue;
    const k = part.slice(0, i).trim();
    const v = part.slice(i + 1).trim();
    if (k === 't' && /^\d+$/.test(v)) out.t = Number(v);
    else if (k === 'v1' && /^[0-9a-f]{64}$/i.test(v)) out.v1.push(v.toLowerCase());
  }
  return out;
}

// What a receiver does (docs/webhooks.md): true when fresh and some v1 matches.
export function verifySignature(header, body, secrets, { nowMs = Date.now(), toleranceS = TOLERANCE_S } = {}) {
  const { t, v1 } = parseSignature(header);
  const result = { present: header !== undefined && header !== null, valid: false, t, fresh: false, age_s: null,
                   v1_count: v1.length };
  if (t === null) return result;
  result.age_s = Math.round(nowMs / 1000 - t);
  result.fresh = Math.abs(nowMs / 1000 - t) <= toleranceS;
  const raw = Buffer.isBuffer(body) ? body : Buffer.from(body ?? '', 'utf8');
  for (const secret of secrets) {
    const expected = crypto.createHmac('sha256', secret).update(`${t}.`).update(raw).digest();
    for (const given of v1) {
      const g = Buffer.from(given, 'hex');
      if (g.length === expected.length && crypto.timingSafeEqual(g, expected)) result.valid = true;
    }
  }
  return result;
}

export async function startSubscriber({ port = 0, host = '127.0.0.1', secrets = [] } = {}) {
  let current = [...secrets];
  const fake = await startRecorder({
    port,
    host,
    onRecord: (record, body) => {
      record.signature = verifySignature(record.headers['x-ventros-signature'], body, current,
                                          { nowMs: record.received_at });
    },
  });
  return { ...fake, setSecrets: (s) => { current = [...s]; } };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (name) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : undefined; };
  const sub = await startSubscriber({ port: Number(arg('--port') ?? 0), secrets: arg('--secret') ? [arg('--secret')] : [] });
  console.log(`subscriber listening on ${sub.url}`);
}
