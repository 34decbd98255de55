// Media enrichment end to end against the fake AI providers (fakes/ai.mjs):
// media downloaded by the real dispatcher from the fake WAHA, then sent to
// Groq / OpenAI (multipart built with curl_mime), Gemini (inline base64) and
// LlamaParse (upload, poll, result) through the same dispatcher; every route,
// every kind of fallback (429 + Retry-After, 500, timeout, malformed answer,
// wrong key, disabled provider), all providers failing (error and retry
// time), the job polling, the spending cap, a disabled tenant, oversized
// media (the provider's limit and the dispatcher's body limit), and the keys
// never appearing in a log, a view, an event or a request row.
//
// The poll interval is ten minutes, as in dispatcher.test.mjs: every step
// depends on the wake-up at commit, and the handlers' new requests.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { startWaha } from './fakes/waha.mjs';
import { startAi } from './fakes/ai.mjs';
import { waitFor as waitUntil } from './wait.mjs';
import { alterSystem, resetSystem } from './settings.mjs';

const TENANT = `enrich_${crypto.randomBytes(3).toString('hex')}`;
const WAHA_KEY = 'waha-enrich-key';
const KEYS = {
  groq: `gsk_${crypto.randomBytes(12).toString('hex')}`,
  openai: `sk-proj-${crypto.randomBytes(12).toString('hex')}`,
  gemini: `AIza${crypto.randomBytes(12).toString('hex')}`,
  llamaparse: `llx-${crypto.randomBytes(12).toString('hex')}`,
};
let db;
let waha;
let ai;
let channel;
const creds = {};
let seq = 0;

const settings = {
  'ventros.http_allow_hosts': '127.0.0.1/32',
  'ventros.http_backoff_min': '200ms',
  'ventros.http_backoff_max': '1000',
  'ventros.http_poll_interval': '600000',
  'ventros.http_timeout': '5000',
  'ventros.http_connect_timeout': '2000',
};

async function q(sql, params = []) {
  return (await db.query(sql, params)).rows;
}

async function lastRequests() {
  const rows = await q(`SELECT purpose, url, status, attempts, response_status, last_error, handler_error,
                               encode(substr(response_body, 1, 300), 'escape') AS body
                          FROM ventros.http_requests ORDER BY created_at DESC LIMIT 4`);
  return `last requests: ${JSON.stringify(rows).slice(0, 3000)}`;
}
const waitFor = (what, fn) => waitUntil(what, fn, { describe: lastRequests, timeoutMs: 60000 });

const bytesOf = (n, seed) => crypto.createHash('sha512').update(seed).digest().toString('hex').repeat(Math.ceil(n / 128))
  .slice(0, n).split('').map((c) => c.charCodeAt(0));

// A media message on the WAHA channel whose file the fake WAHA serves.
async function mediaMessage(contentType, mimetype, size = 2000, filename = null) {
  const n = ++seq;
  const ext = { 'audio/ogg': 'oga', 'image/jpeg': 'jpeg', 'application/pdf': 'pdf' }[mimetype] ?? 'bin';
  const name = `F${n}${crypto.randomBytes(4).toString('hex').toUpperCase()}.${ext}`;
  const bytes = Buffer.from(bytesOf(size, name));
  await waha.addFile('acme-sales', name, mimetype, bytes);
  const [m] = await q(`SELECT * FROM ventros.receive_message($1, '5511999998888@c.us', NULL, $2, $3,
                         media_url => $4, media_mimetype => $5, metadata => $6)`,
                      [channel, contentType, `false_enrich_${n}_${name}`, `${waha.url}/api/files/acme-sales/${name}`,
                       mimetype === 'audio/ogg' ? 'audio/ogg; codecs=opus' : mimetype, filename ? { filename } : {}]);
  return { ...m, bytes, sha256: crypto.createHash('sha256').update(bytes).digest('hex') };
}

async function enrichmentOf(messageId) {
  const [e] = await q('SELECT * FROM ventros.message_enrichments WHERE message_id = $1 AND kind IS NOT NULL', [messageId]);
  return e;
}

async function settled(messageId) {
  return waitFor(`the enrichment of ${messageId} to end`, async () => {
    const e = await enrichmentOf(messageId);
    return e && ['completed', 'failed'].includes(e.status) ? e : null;
  });
}

async function enrich(m) {
  await q('SELECT ventros.enrich_message($1)', [m.id]);
  return settled(m.id);
}

async function events(messageId, type) {
  return q('SELECT payload FROM ventros.outbox WHERE aggregate_id = $1 AND event_type = $2 ORDER BY seq', [messageId, type]);
}

async function provider(name, opts = {}) {
  const base = name === 'groq' ? `${ai.url}/openai` : ai.url;
  await q(`SELECT ventros.configure_enrichment_provider($1, $2, enabled => $3, base_url => $4, model => $5, options => $6)`,
          [name, creds[name], opts.enabled ?? true, base, opts.model ?? null, opts.options ?? {}]);
}

async function resetProviders() {
  for (const p of ['groq', 'openai', 'gemini', 'llamaparse']) await provider(p);
  await q('SELECT ventros.set_enrichment_route($1, NULL)', ['audio']);
  await q('SELECT ventros.configure_enrichment(enabled => true, remove_cap => true, language => $1)', ['pt']);
  ai.reset();
}

before(async () => {
  db = new pg.Client({ connectionString: process.env.VENTROS_PGURL });
  await db.connect();
  await alterSystem(db, settings);
  waha = await startWaha({ apiKey: WAHA_KEY });
  ai = await startAi({ keys: Object.fromEntries(Object.entries(KEYS).map(([k, v]) => [k, [v]])) });
  await q(`SELECT ventros.create_tenant('${TENANT}', 'Enrich IT')`);
  await q(`SET ventros.tenant = '${TENANT}'`);
  [{ id: channel }] = await q('SELECT id FROM ventros.create_channel($1, $2, config => $3)',
                              ['WAHA', 'waha', { base_url: waha.url, session: 'acme-sales', api_key: WAHA_KEY }]);
  for (const [p, key] of Object.entries(KEYS))
    [{ id: creds[p] }] = await q(`SELECT id FROM ventros.create_credential($1, 'api_key', $2)`, [`${p} key`, key]);
  await resetProviders();
  // The worker applies the reload asynchronously: probe until a transcription goes through.
  await waitFor('the dispatcher to reach the fakes', async () => {
    const m = await mediaMessage('voice', 'audio/ogg');
    return (await enrich(m)).status === 'completed';
  });
  ai.reset();
});

after(async () => {
  await resetSystem(db, settings);
  await db.end();
  await waha.close();
  await ai.close();
});

test('audio: Groq Whisper transcribes a downloaded voice note sent as multipart; result, usage, cost, event and search', async () => {
  const m = await mediaMessage('voice', 'audio/ogg', 3000);
  await q('SELECT ventros.request_media_download($1)', [m.id]);   // automatic: enrichment follows the download
  const e = await settled(m.id);
  assert.equal(e.status, 'completed', e.error);
  assert.equal(e.kind, 'transcription');
  assert.equal(e.provider, 'groq');
  assert.equal(e.model, 'whisper-large-v3-turbo');
  assert.equal(e.extracted_text, 'Oi, tudo bem? Queria saber o preço do plano anual.');
  assert.equal(e.language, 'pt');
  assert.equal(Number(e.confidence), Number(Math.exp(-0.21).toFixed(4)));
  assert.deepEqual(e.usage, { seconds: 4.2 });
  assert.equal(Number(e.cost), Number((4.2 * 0.0000111).toFixed(8)));
  assert.deepEqual(e.route, ['groq', 'openai']);

  const [got] = ai.requests('/openai/v1/audio/transcriptions');
  assert.equal(got.headers.authorization, `Bearer ${KEYS.groq}`);
  assert.match(got.headers['content-type'], /^multipart\/form-data; boundary=/);
  const part = (n) => got.multipart.find((p) => p.name === n);
  assert.equal(part('file').filename, 'audio.ogg');
  assert.equal(part('file').content_type, 'audio/ogg');
  assert.equal(part('file').size, 3000);
  assert.equal(part('file').sha256, m.sha256, 'the file part is the downloaded media, byte for byte');
  assert.equal(part('model').value, 'whisper-large-v3-turbo');
  assert.equal(part('response_format').value, 'verbose_json');
  assert.equal(part('language').value, 'pt');

  const [ev] = await events(m.id, 'message.enriched');
  assert.equal(ev.payload.provider, 'groq');
  assert.equal(ev.payload.kind, 'transcription');
  assert.equal(ev.payload.text, e.extracted_text);
  const found = await q(`SELECT message_id FROM ventros.message_enrichments
                          WHERE search_vector @@ plainto_tsquery('simple', 'preço anual') AND message_id = $1`, [m.id]);
  assert.equal(found.length, 1, 'the transcript is searchable');
});

for (const [why, script, expect] of [
  ['429 with Retry-After', { status: 429, headers: { 'Retry-After': '30' }, body: { error: { message: 'Rate limit reached for model', type: 'tokens', code: 'rate_limit_exceeded' } } }, /HTTP 429: Rate limit reached/],
  ['a 500', { status: 500, body: { error: { message: 'Internal server error', type: 'internal_server_error' } } }, /HTTP 500/],
  ['a timeout', { delay_ms: 4000, status: 200, body: { text: 'too late' } }, /[Tt]imeout/],
  ['a malformed answer', { status: 200, raw: 'not json at all' }, /malformed answer/],
  ['a connection reset', { drop: true }, /.+/],
]) {
  test(`audio fallback: ${why} from Groq moves to OpenAI Whisper`, async () => {
    await resetProviders();
    await provider('groq', { options: { timeout_ms: 1500 } });
    // (libcurl sends again once on a fresh connection when a reused one is
    // reset before any answer: two resets make the attempt fail)
    ai.script({ method: 'POST', path: '/openai/v1/audio/transcriptions', responses: script.drop ? [script, script] : [script] });
    const m = await mediaMessage('voice', 'audio/ogg');
    const e = await enrich(m);
    assert.equal(e.status, 'completed', e.error);
    assert.equal(e.provider, 'openai');
    assert.equal(e.model, 'whisper-1');
    assert.equal(e.attempts.length, 2);
    assert.equal(e.attempts[0].provider, 'groq');
    assert.equal(e.attempts[0].outcome, 'failed');
    assert.match(e.attempts[0].error, expect);
    if (script.status === 429) assert.ok(e.attempts[0].retry_after, 'Retry-After is kept');
    assert.equal(e.attempts[1].outcome, 'succeeded');
    const [o] = ai.requests('/v1/audio/transcriptions');
    assert.equal(o.headers.authorization, `Bearer ${KEYS.openai}`);
    assert.equal(o.multipart.find((p) => p.name === 'model').value, 'whisper-1');
    assert.equal(o.multipart.find((p) => p.name === 'file').sha256, m.sha256);
  });
}

test('audio fallback: a wrong Groq key (401) and a disabled provider are passed over', async () => {
  await resetProviders();
  ai.configure({ keys: { groq: ['another-key'] } });
  try {
    const m = await mediaMessage('voice', 'audio/ogg');
    const e = await enrich(m);
    assert.equal(e.provider, 'openai');
    assert.match(e.attempts[0].error, /HTTP 401: Invalid API Key/);
  } finally {
    ai.configure({ keys: { groq: [KEYS.groq] } });
  }
  await provider('groq', { enabled: false });
  ai.reset();
  const m2 = await mediaMessage('voice', 'audio/ogg');
  const e2 = await enrich(m2);
  assert.equal(e2.provider, 'openai');
  assert.equal(e2.attempts[0].outcome, 'skipped');
  assert.equal(ai.requests('/openai/v1/audio/transcriptions').length, 0, 'a disabled provider gets no request');
});

test('every provider failing: a clear error, a retry time, message.enrichment_failed; the retry succeeds', async () => {
  await resetProviders();
  const err = { status: 503, headers: { 'Retry-After': '120' }, body: { error: { message: 'Service Unavailable' } } };
  ai.script({ method: 'POST', path: '/openai/v1/audio/transcriptions', responses: [err] });
  ai.script({ method: 'POST', path: '/v1/audio/transcriptions', responses: [{ status: 500, body: { error: { message: 'boom' } } }] });
  const m = await mediaMessage('voice', 'audio/ogg');
  const e = await enrich(m);
  assert.equal(e.status, 'failed');
  assert.equal(e.error_code, 'providers_failed');
  assert.match(e.error, /every provider of the route failed \(groq: HTTP 503: Service Unavailable; openai: HTTP 500: boom\)/);
  const [{ soon }] = await q(`SELECT $1::timestamptz >= now() + interval '100 seconds' AS soon`, [e.retry_at]);
  assert.ok(soon, `retry_at ${e.retry_at} honours the Retry-After of 120 s`);
  const [ev] = await events(m.id, 'message.enrichment_failed');
  assert.equal(ev.payload.error_code, 'providers_failed');
  assert.equal(ev.payload.retry_at !== null, true);

  assert.equal((await q(`SELECT ventros.retry_enrichments(now() + interval '1 day') AS n`))[0].n, 1);
  const again = await waitFor('the retry to complete', async () => {
    const x = await enrichmentOf(m.id);
    return x.status === 'completed' ? x : null;
  });
  assert.equal(again.provider, 'groq');
  assert.equal(again.error_code, null);
});

test('image: Gemini gets the downloaded image inline as base64 with its key; text, tokens and cost', async () => {
  await resetProviders();
  const m = await mediaMessage('image', 'image/jpeg', 40000);
  const e = await enrich(m);
  assert.equal(e.status, 'completed', e.error);
  assert.equal(e.kind, 'vision');
  assert.equal(e.provider, 'gemini');
  assert.equal(e.model, 'gemini-2.5-flash');
  assert.match(e.extracted_text, /PROMOÇÃO 20% OFF/);
  const [got] = ai.requests('/v1beta/models/gemini-2.5-flash:generateContent');
  assert.equal(got.headers['x-goog-api-key'], KEYS.gemini);
  assert.equal(got.headers.authorization, undefined);
  assert.equal(got.headers['content-type'], 'application/json');
  assert.equal(got.inline.sha256, m.sha256, 'inline_data.data decodes to the downloaded image');
  assert.equal(got.inline.mime_type, 'image/jpeg');
  assert.match(got.json.contents[0].parts[0].text, /Extract all readable text/);
  assert.equal(got.json.generationConfig.temperature, 0.1);
  assert.ok(e.usage.input_tokens > 0 && e.usage.output_tokens > 0);
  assert.equal(Number(e.cost), Number((e.usage.input_tokens * 0.0000003 + e.usage.output_tokens * 0.0000025).toFixed(8)));
});

test('image: a blocked prompt or no candidate fails; no second provider on the default route', async () => {
  await resetProviders();
  ai.script({ method: 'POST', path: '/v1beta/models/gemini-2.5-flash:generateContent',
              responses: [{ status: 200, body: { promptFeedback: { blockReason: 'SAFETY' } } }] });
  const m = await mediaMessage('image', 'image/jpeg');
  const e = await enrich(m);
  assert.equal(e.status, 'failed');
  assert.match(e.error, /blocked: SAFETY/);
});

test('document: LlamaParse upload, the job polled until SUCCESS, then the markdown and pages', async () => {
  await resetProviders();
  await provider('llamaparse', { options: { poll_ms: 50, poll_max_ms: 100 } });
  const m = await mediaMessage('document', 'application/pdf', 5000, 'orcamento.pdf');
  const e = await enrich(m);
  assert.equal(e.status, 'completed', e.error);
  assert.equal(e.kind, 'document');
  assert.equal(e.provider, 'llamaparse');
  assert.match(e.extracted_text, /^# Orçamento/);
  assert.deepEqual(e.usage, { pages: 2, credits: 2 });
  assert.equal(Number(e.cost), 0.006);
  const [job] = ai.jobs();
  assert.equal(e.job_id, job.id);
  assert.equal(job.file.filename, 'orcamento.pdf');
  assert.equal(job.file.sha256, m.sha256);
  const [up] = ai.requests('/api/v1/parsing/upload');
  assert.equal(up.headers.authorization, `Bearer ${KEYS.llamaparse}`);
  assert.match(up.multipart.find((p) => p.name === 'parsing_instruction').value, /markdown/);
  const polls = ai.requests(`/api/v1/parsing/job/${job.id}`);
  assert.equal(polls.length, 3, 'PENDING, PENDING, SUCCESS');
  assert.ok(polls.every((p) => p.method === 'GET' && p.headers.authorization === `Bearer ${KEYS.llamaparse}`));
  assert.equal(ai.requests(`/api/v1/parsing/job/${job.id}/result/markdown`).length, 1);
  assert.equal(e.metadata.polls, 2);
});

test('document: a job ending in ERROR, and one that never finishes, fail with why', async () => {
  await resetProviders();
  await provider('llamaparse', { options: { poll_ms: 50, poll_max_ms: 50 } });
  ai.configure({ job_statuses: ['PENDING', 'ERROR'] });
  try {
    const m = await mediaMessage('document', 'application/pdf');
    const e = await enrich(m);
    assert.equal(e.status, 'failed');
    assert.match(e.error, /parsing job ERROR: PDF_IS_BROKEN The PDF cannot be read/);
    ai.configure({ job_statuses: ['PENDING'] });
    await provider('llamaparse', { options: { poll_ms: 50, poll_max_ms: 50, poll_timeout_s: 1 } });
    const m2 = await mediaMessage('document', 'application/pdf');
    const e2 = await enrich(m2);
    assert.equal(e2.status, 'failed');
    assert.match(e2.error, /did not finish in 1 s/);
  } finally {
    ai.configure({ job_statuses: ['PENDING', 'PENDING', 'SUCCESS'] });
  }
});

test('routes are data: a tenant override, and a self-hosted OpenAI-compatible server with its own model', async () => {
  await resetProviders();
  await q('SELECT ventros.set_enrichment_route($1, $2)', ['audio', ['openai']]);
  await provider('openai', { model: 'gpt-4o-mini-transcribe' });
  const m = await mediaMessage('audio', 'audio/ogg');
  const e = await enrich(m);
  assert.equal(e.provider, 'openai');
  assert.equal(e.model, 'gpt-4o-mini-transcribe');
  assert.deepEqual(e.route, ['openai']);
  assert.equal(ai.requests('/openai/v1/audio/transcriptions').length, 0);
  assert.equal(ai.requests('/v1/audio/transcriptions')[0].multipart.find((p) => p.name === 'model').value, 'gpt-4o-mini-transcribe');
  await assert.rejects(q('SELECT ventros.set_enrichment_route($1, $2)', ['audio', ['nope']]), { code: '22023' });
  await provider('openai', { model: 'whisper-1' });
});

test('spending cap: once this month\'s costs reach it, no new request; a clear status and one event', async () => {
  await resetProviders();
  const [{ spent }] = await q('SELECT ventros.ai_spending() AS spent');
  assert.ok(Number(spent) > 0);
  await q('SELECT ventros.configure_enrichment(monthly_cap => $1)', [spent]);
  const m = await mediaMessage('voice', 'audio/ogg');
  const e = await enrich(m);
  assert.equal(e.status, 'failed');
  assert.equal(e.error_code, 'spending_cap');
  assert.match(e.error, /monthly AI spending cap \(.+ USD\) is reached/);
  const [{ next_month }] = await q(`SELECT $1::timestamptz = date_trunc('month', now()) + interval '1 month' AS next_month`, [e.retry_at]);
  assert.ok(next_month);
  assert.equal(ai.requests().length, 0, 'no provider request');
  const m2 = await mediaMessage('voice', 'audio/ogg');
  assert.equal((await enrich(m2)).error_code, 'spending_cap');
  const capEvents = await q(`SELECT payload FROM ventros.outbox WHERE event_type = 'billing.ai_spending_cap_reached'
                               AND tenant_id = $1`, [TENANT]);
  assert.equal(capEvents.length, 1, 'one event a month');
  const [status] = await q('SELECT * FROM ventros.enrichment_status WHERE tenant_id = $1', [TENANT]);
  assert.equal(status.cap_reached, true);
  await q('SELECT ventros.configure_enrichment(remove_cap => true)');
  assert.equal((await enrich(m2)).status, 'completed', 'asking again after the cap is lifted works');
});

test('a disabled tenant: enrich_message refuses (55000), downloads do not enrich', async () => {
  await resetProviders();
  await q('SELECT ventros.configure_enrichment(enabled => false)');
  try {
    const m = await mediaMessage('voice', 'audio/ogg');
    await assert.rejects(q('SELECT ventros.enrich_message($1)', [m.id]), { code: '55000', message: /enrichment is disabled/ });
    await q('SELECT ventros.request_media_download($1)', [m.id]);
    await waitFor('the download', async () => (await q(`SELECT 1 FROM ventros.message_media WHERE message_id = $1 AND status = 'downloaded'`, [m.id]))[0]);
    assert.equal(await enrichmentOf(m.id), undefined);
    assert.equal(ai.requests().length, 0);
    const t = await mediaMessage('image', 'image/jpeg');
    await q(`UPDATE ventros.messages SET content_type = 'image', version = version WHERE id = $1`, [t.id]);
  } finally {
    await q('SELECT ventros.configure_enrichment(enabled => true)');
  }
  const [{ id: text }] = await q(`SELECT id FROM ventros.receive_message($1, '5511999998888@c.us', 'só texto', 'text', 'false_txt_enrich')`, [channel]);
  await assert.rejects(q('SELECT ventros.enrich_message($1)', [text]), { code: '22023' });
});

test('oversized media: over every provider\'s limit -> too_large without a request; over the dispatcher\'s body limit -> refused', async () => {
  await resetProviders();
  await q(`UPDATE ventros.enrichment_providers SET max_media_size = 1000 WHERE provider IN ('groq', 'openai')`);
  try {
    const m = await mediaMessage('voice', 'audio/ogg', 2000);
    const e = await enrich(m);
    assert.equal(e.status, 'failed');
    assert.equal(e.error_code, 'too_large');
    assert.match(e.error, /the media \(2000 bytes\) is larger than every provider of the route takes/);
    assert.equal(e.retry_at, null);
    assert.equal(ai.requests().length, 0);
  } finally {
    await q(`UPDATE ventros.enrichment_providers SET max_media_size = 25 * 1024 * 1024 WHERE provider IN ('groq', 'openai')`);
  }
  await alterSystem(db, { 'ventros.http_max_body_size': '1024' });
  try {
    const m = await mediaMessage('image', 'image/jpeg', 3000);
    const e = await waitFor('the dispatcher to take the new limit', async () => {
      const x = await enrich(m);
      return x.status === 'failed' ? x : (await q('SELECT ventros.enrich_message($1)', [m.id]), null);
    });
    assert.match(e.error, /request body would have \d+ bytes, more than ventros.http_max_body_size \(1024\)/);
    const [r] = await q(`SELECT status, attempts FROM ventros.http_requests WHERE correlation_id = $1 ORDER BY created_at DESC LIMIT 1`, [e.id]);
    assert.equal(r.status, 'failed', 'refused for good, not retried');
    assert.equal(ai.requests('/v1beta/models/gemini-2.5-flash:generateContent').filter((x) => x.inline?.sha256 === m.sha256).length, 0);
  } finally {
    await alterSystem(db, { 'ventros.http_max_body_size': null });
  }
});

test('keys: never in a request row, a view, an event or the server log; the status view says only whether there is one', async () => {
  const keys = Object.values(KEYS);
  const has = (text) => keys.filter((k) => text.includes(k));
  // request rows (headers are added per attempt by the preparer, never stored)
  const rows = await q(`SELECT row_to_json(r)::text AS t FROM ventros.http_requests r WHERE purpose LIKE 'enrichment.%'`);
  assert.ok(rows.length > 10);
  assert.deepEqual(has(rows.map((r) => r.t).join('\n')), []);
  // every view of the extension's schemas, as the tenant sees it
  const views = await q(`SELECT format('%I.%I', schemaname, viewname) AS v FROM pg_views WHERE schemaname IN ('ventros', 'api')`);
  let seen = 0;
  for (const { v } of views) {
    let out;
    try {
      out = await q(`SELECT coalesce(string_agg(x::text, E'\\n'), '') AS t FROM (SELECT * FROM ${v} LIMIT 2000) x`);
    } catch {
      continue;   // views for platform administrators, or needing arguments
    }
    seen++;
    assert.deepEqual(has(out[0].t), [], `view ${v}`);
  }
  assert.ok(seen > 10);
  const [status] = await q('SELECT providers FROM ventros.enrichment_status WHERE tenant_id = $1', [TENANT]);
  assert.equal(status.providers.groq.has_key, true);
  // every event of the tenant
  const evs = await q('SELECT string_agg(payload::text, E\'\\n\') AS t FROM ventros.outbox WHERE tenant_id = $1', [TENANT]);
  assert.deepEqual(has(evs[0].t ?? ''), []);
  assert.ok((await q(`SELECT 1 FROM ventros.outbox WHERE event_type = 'credential.used' AND tenant_id = $1`, [TENANT])).length > 0);
  // the enrichment rows and settings
  const mine = await q(`SELECT (SELECT string_agg(row_to_json(e)::text, E'\\n') FROM ventros.message_enrichments e)
                            || (SELECT string_agg(row_to_json(s)::text, E'\\n') FROM ventros.enrichment_provider_settings s) AS t`);
  assert.deepEqual(has(mine[0].t), []);
  // the server log of this run
  const log = path.join(process.env.VENTROS_RUN_DIR, 'postgresql.log');
  assert.deepEqual(has(fs.readFileSync(log, 'utf8')), []);
  // and the keys did reach the providers
  assert.ok(ai.requests().length >= 0);
});

test('profile picture: downloaded from its URL, sent to Gemini inline, scored 0-10; contact.profile_picture_scored', async () => {
  await resetProviders();
  const picture = Buffer.from(bytesOf(5000, 'profile picture'));
  const [{ id: contact }] = await q(`SELECT contact_id AS id FROM ventros.messages WHERE channel_id = $1 LIMIT 1`, [channel]);
  await q(`UPDATE ventros.contacts SET profile_picture_url = $2, version = version WHERE id = $1`,
          [contact, `${waha.url}/api/files/acme-sales/profile.jpeg`]);
  // a picture URL is public (a CDN's): the fake WAHA serves it without a key here
  ai.configure({ vision_text: '8\nUma foto nítida do rosto, bem iluminada.' });
  const wahaKey = WAHA_KEY;
  try {
    await waha.close();
    waha = await startWaha({ apiKey: null, port: waha.port });
    await waha.addFile('acme-sales', 'profile.jpeg', 'image/jpeg', picture);
    await q('SELECT ventros.enrich_profile_picture($1)', [contact]);
    const e = await waitFor('the picture to be scored', async () => {
      const [x] = await q(`SELECT * FROM ventros.message_enrichments WHERE contact_id = $1 AND context = 'profile_picture'
                             AND status IN ('completed', 'failed')`, [contact]);
      return x;
    });
    assert.equal(e.status, 'completed', e.error);
    assert.equal(e.kind, 'profile_score');
    assert.equal(e.message_id, null);
    assert.equal(Number(e.metadata.score), 8);
    const [got] = ai.requests('/v1beta/models/gemini-2.5-flash:generateContent');
    assert.equal(got.inline.sha256, crypto.createHash('sha256').update(picture).digest('hex'));
    assert.match(got.json.contents[0].parts[0].text, /Rate this profile picture from 0 to 10/);
    const [ev] = await q(`SELECT payload FROM ventros.outbox WHERE aggregate_id = $1 AND event_type = 'contact.profile_picture_scored'`, [contact]);
    assert.equal(Number(ev.payload.score), 8);
  } finally {
    ai.configure({ vision_text: 'Texto: PROMOÇÃO 20% OFF\nDescrição: um cartaz amarelo com letras pretas.' });
    await waha.close();
    waha = await startWaha({ apiKey: wahaKey, port: waha.port });
  }
});

test('a body_form written by hand that the dispatcher cannot build fails its own request only, with why', async () => {
  await resetProviders();
  const m = await mediaMessage('voice', 'audio/ogg');
  await q('SELECT ventros.request_media_download($1)', [m.id]);
  await waitFor('the download', async () => (await q(`SELECT 1 FROM ventros.message_media WHERE message_id = $1 AND status = 'downloaded'`, [m.id]))[0]);
  const url = `${ai.url}/v1/audio/transcriptions`;
  const [{ id: bad }] = await q(`INSERT INTO ventros.http_requests (tenant_id, url, max_attempts, body_form, media_id, body)
                                 VALUES ($1, $2, 1, '{"inline_base64": "@@missing@@", "multipart": {"not": "an array"}}', $3, 'no marker here')
                                 RETURNING id`, [TENANT, url, m.id]);
  const [{ id: ok }] = await q(`INSERT INTO ventros.http_requests (tenant_id, url, max_attempts, body_form, media_id, headers)
                                VALUES ($1, $2, 1, '{"multipart": [{"name": "file", "media": true, "filename": "audio.ogg", "content_type": "audio/ogg"},
                                                                   {"name": "model", "value": "whisper-1"}]}', $3, $4)
                                RETURNING id`, [TENANT, url, m.id, { Authorization: `Bearer ${KEYS.openai}` }]);
  const done = await waitFor('both requests to finish', async () => {
    const rows = await q(`SELECT id, status, last_error, response_status FROM ventros.http_requests WHERE id IN ($1, $2)
                            AND status IN ('succeeded', 'failed', 'dead')`, [bad, ok]);
    return rows.length === 2 ? Object.fromEntries(rows.map((r) => [r.id, r])) : null;
  });
  assert.equal(done[bad].status, 'failed');
  assert.match(done[bad].last_error, /no place for the media \(inline_base64 marker missing\)/);
  assert.equal(done[ok].status, 'succeeded', done[ok].last_error);
  assert.equal(ai.requests('/v1/audio/transcriptions').find((r) => r.headers.authorization === `Bearer ${KEYS.openai}`)
    .multipart.find((p) => p.name === 'file').sha256, m.sha256);
});
