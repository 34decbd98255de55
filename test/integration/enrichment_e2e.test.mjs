// Enrichment end to end on real servers (issue 16, "Proof"): a WhatsApp
// (WAHA) voice note arrives as a signed webhook at ventros-http, its media is
// downloaded by the dispatcher from the fake WAHA, and the downloaded audio is
// transcribed through the route: Groq fails (a scripted 503), OpenAI Whisper
// succeeds.  The transcript is on the enrichment row, in message.enriched,
// and found by full-text search of its words.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { startServer, db, BASE } from './http_helpers.mjs';
import { asTenant, createChannel } from './webhooks_helpers.mjs';
import { startWaha } from './fakes/waha.mjs';
import { startAi } from './fakes/ai.mjs';
import { wahaMessage } from './fakes/emit.mjs';
import { waitFor } from './wait.mjs';
import { alterSystem, resetSystem } from './settings.mjs';

const TENANT = `e2e_${crypto.randomBytes(3).toString('hex')}`;
const WAHA_KEY = crypto.randomBytes(8).toString('hex');
const HMAC = crypto.randomBytes(16).toString('hex');
const GROQ_KEY = `gsk_${crypto.randomBytes(10).toString('hex')}`;
const OPENAI_KEY = `sk-${crypto.randomBytes(10).toString('hex')}`;
const settings = {
  'ventros.http_allow_hosts': '127.0.0.1/32',
  'ventros.http_poll_interval': '600000',
  'ventros.http_timeout': '5000',
};
let server;
let c;
let waha;
let ai;
let ch;

const q = (sql, params) => asTenant(c, TENANT, sql, params);

before(async () => {
  server = await startServer({ PGOPTIONS: '-c ventros.inbox_processing=inline' });
  c = await db();
  await alterSystem(c, settings);
  waha = await startWaha({ apiKey: WAHA_KEY });
  ai = await startAi({ keys: { groq: [GROQ_KEY], openai: [OPENAI_KEY] } });
  await c.query('SELECT ventros.create_tenant($1, $2)', [TENANT, 'E2E Enrich']);
  ch = await createChannel(c, TENANT, 'waha', { base_url: waha.url, session: 'acme-sales', api_key: WAHA_KEY, webhook_secret: HMAC });
  for (const [provider, key, base] of [['groq', GROQ_KEY, `${ai.url}/openai`], ['openai', OPENAI_KEY, ai.url]]) {
    const [{ id }] = await q(`SELECT id FROM ventros.create_credential($1, 'api_key', $2)`, [`${provider} key`, key]);
    await q('SELECT ventros.configure_enrichment_provider($1, $2, base_url => $3)', [provider, id, base]);
  }
  await q('SELECT ventros.configure_enrichment(enabled => true, language => $1)', ['pt']);
});

after(async () => {
  await resetSystem(c, settings);
  await c.end();
  await server.stop();
  await waha.close();
  await ai.close();
});

test('a WAHA voice note webhook -> media downloaded from WAHA -> Groq fails, OpenAI transcribes -> searchable', async () => {
  const audio = crypto.randomBytes(6000);
  await waha.addFile('acme-sales', 'AC94411C453CBE7D20F5EC3EB01DF066.oga', 'audio/ogg; codecs=opus', audio);
  ai.configure({ transcript: 'Bom dia, gostaria de agendar uma visita técnica amanhã.', language: 'portuguese', duration: 3.5 });
  ai.script({ method: 'POST', path: '/openai/v1/audio/transcriptions',
              responses: [{ status: 503, body: { error: { message: 'Service Unavailable', type: 'internal_server_error' } } }] });

  const payload = wahaMessage({ from: '5511977776666', body: '', mediaType: 'ptt',
    media: { url: `${waha.url}/api/files/acme-sales/AC94411C453CBE7D20F5EC3EB01DF066.oga`, mimetype: 'audio/ogg; codecs=opus' } });
  const r = await waha.emit({ base: BASE, channel_id: ch.id, hmac_key: HMAC, payload });
  assert.equal(r.status, 200, JSON.stringify(r.body));

  const e = await waitFor('the voice note to be transcribed', async () => {
    const [x] = await q(`SELECT e.* FROM ventros.message_enrichments e JOIN ventros.messages m ON m.id = e.message_id
                          WHERE m.channel_message_id = $1 AND e.status IN ('completed', 'failed')`, [payload.payload.id]);
    return x;
  }, { timeoutMs: 60000 });
  assert.equal(e.status, 'completed', e.error);
  assert.equal(e.content_type, 'voice');
  assert.equal(e.provider, 'openai');
  assert.deepEqual(e.attempts.map((a) => [a.provider, a.outcome]), [['groq', 'failed'], ['openai', 'succeeded']]);
  assert.match(e.attempts[0].error, /HTTP 503: Service Unavailable/);
  assert.equal(e.extracted_text, 'Bom dia, gostaria de agendar uma visita técnica amanhã.');
  assert.equal(e.language, 'pt');

  // the media came from WAHA with its key, and went to both providers byte for byte
  const [download] = waha.requests('/api/files/acme-sales/AC94411C453CBE7D20F5EC3EB01DF066.oga');
  assert.equal(download.headers['x-api-key'], WAHA_KEY);
  const sha = crypto.createHash('sha256').update(audio).digest('hex');
  for (const p of ['/openai/v1/audio/transcriptions', '/v1/audio/transcriptions']) {
    const [sent] = ai.requests(p);
    assert.equal(sent.multipart.find((x) => x.name === 'file').sha256, sha, p);
  }

  const [ev] = await q(`SELECT payload FROM ventros.outbox WHERE aggregate_id = $1 AND event_type = 'message.enriched'`, [e.message_id]);
  assert.equal(ev.payload.provider, 'openai');
  const found = await q(`SELECT e.message_id FROM ventros.message_enrichments e
                          WHERE e.search_vector @@ websearch_to_tsquery('simple', 'visita técnica')`);
  assert.deepEqual(found.map((x) => x.message_id), [e.message_id]);
});
