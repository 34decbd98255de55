// Conversation intelligence and the AI agent end to end on real servers
// (issue 16, "Proof"): ventros-http takes WAHA webhooks, the dispatcher calls
// the chat-completions stand-in (test/integration/fakes/ai.mjs, which checks
// the key, the model and the JSON shape) and WAHA, the automation executor
// runs the rules.
//   1. a session ended -> the rule on session.ended asks for its summary ->
//      summary and sentiment stored -> the rule conditioned on negative
//      sentiment assigns the supervisor;
//   2. the AI agent answers two grouped messages with one reply (one request
//      seen by the stand-in, one sendText seen by WAHA), then hands off on
//      "falar com humano" without asking the model;
//   3. the key is in no request row, event, completion or server log line.
// Ticks are called with chosen instants (no sleeps); waits are for the
// workers' outcomes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { startServer, db, BASE } from './http_helpers.mjs';
import { asTenant, createChannel } from './webhooks_helpers.mjs';
import { startWaha } from './fakes/waha.mjs';
import { startAi } from './fakes/ai.mjs';
import { wahaMessage } from './fakes/emit.mjs';
import { waitFor } from './wait.mjs';
import { alterSystem, resetSystem } from './settings.mjs';

const TENANT = `intel_${crypto.randomBytes(3).toString('hex')}`;
const WAHA_KEY = crypto.randomBytes(8).toString('hex');
const HMAC = crypto.randomBytes(16).toString('hex');
const LLM_KEY = `sk-intel-${crypto.randomBytes(12).toString('hex')}`;
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
const ids = {};

const q = (sql, params) => asTenant(c, TENANT, sql, params);
const chats = () => ai.requests('/v1/chat/completions');

async function inbound(from, body, timestamp) {
  const payload = wahaMessage({ from, body, timestamp });
  const r = await waha.emit({ base: BASE, channel_id: ch.id, hmac_key: HMAC, payload });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return waitFor(`message "${body}" stored`, async () => {
    const [m] = await q('SELECT id, session_id, contact_id FROM ventros.messages WHERE channel_message_id = $1', [payload.payload.id]);
    return m;
  });
}

before(async () => {
  server = await startServer({ PGOPTIONS: '-c ventros.inbox_processing=inline' });
  c = await db();
  await alterSystem(c, settings);
  waha = await startWaha({ apiKey: WAHA_KEY });
  ai = await startAi({ keys: { openai: [LLM_KEY] } });
  await c.query('SELECT ventros.create_tenant($1, $2)', [TENANT, 'E2E Intelligence']);
  ch = await createChannel(c, TENANT, 'waha', { base_url: waha.url, session: 'acme-sales', api_key: WAHA_KEY, webhook_secret: HMAC });
  const [{ id: cred }] = await q(`SELECT id FROM ventros.create_credential('LLM', 'api_key', $1)`, [LLM_KEY]);
  await q(`SELECT ventros.configure_enrichment_provider('openai_chat', $1, base_url => $2)`, [cred, ai.url]);
  [{ id: ids.supervisor }] = await q(`SELECT id FROM ventros.create_agent('Sofia', email => 'sofia@intel.example', role => 'supervisor')`);
  [{ id: ids.bot }] = await q(`SELECT id FROM ventros.create_agent('Vera (AI)', type => 'ai', role => 'ai_agent')`);
  [{ id: ids.human }] = await q(`SELECT id FROM ventros.create_agent('Hugo', email => 'hugo@intel.example')`);
  await q(`SELECT ventros.set_agent_presence($1, 'available')`, [ids.human]);
  [{ id: ids.team }] = await q(`SELECT id FROM ventros.create_team('Humans')`);
  await q('SELECT ventros.add_team_member($1, $2)', [ids.team, ids.human]);
});

after(async () => {
  await resetSystem(c, settings);
  await c.end();
  await server.stop();
  await waha.close();
  await ai.close();
});

test('a session ended -> summary and sentiment stored -> a rule on negative sentiment assigns the supervisor', async () => {
  await q(`SELECT ventros.create_automation('Summarize ended sessions', 'session.ended', '[{"type": "summarize_session"}]',
                                            automation_type => 'event')`);
  await q(`SELECT ventros.create_automation('Unhappy customers to the supervisor', 'session.summarized',
             jsonb_build_array(jsonb_build_object('type', 'assign_agent', 'params', jsonb_build_object('agent_id', $1::uuid, 'reason', 'review'))),
             '[{"sentiment": "negative"}]', automation_type => 'event')`, [ids.supervisor]);
  // the first answer is malformed (a retry follows), then the summary
  ai.configure({ chat_answers: ['Claro! O cliente está insatisfeito.', {
    summary: 'O cliente recebeu a TV quebrada e exige reembolso.', sentiment: { score: -0.85, label: 'negative' },
    language: 'pt', topics: ['refund', 'damaged item'], next_best_action: 'Ligar para o cliente hoje e oferecer reembolso.' }] });
  const m = await inbound('5511977770001', 'A TV chegou quebrada. Quero meu dinheiro de volta!');
  await q('SELECT ventros.close_session($1)', [m.session_id]);

  const failed = await waitFor('the malformed first answer', async () => {
    const [x] = await q(`SELECT * FROM ventros.ai_completions WHERE session_id = $1 AND status = 'failed'`, [m.session_id]);
    return x;
  }, { timeoutMs: 30000 });
  assert.equal(failed.error_code, 'malformed_answer');
  assert.ok(new Date(failed.retry_at) > new Date());
  const [ev] = await q(`SELECT payload FROM ventros.outbox WHERE aggregate_id = $1 AND event_type = 'session.summary_failed'`, [m.session_id]);
  assert.equal(ev.payload.error_code, 'malformed_answer');
  // the retry job's step, at an instant past the retry time
  const [{ n }] = await q(`SELECT ventros.retry_ai_completions(now() + interval '1 hour') AS n`);
  assert.equal(n, 1);

  const s = await waitFor('the supervisor assigned', async () => {
    const [x] = await q('SELECT * FROM ventros.sessions WHERE id = $1 AND assigned_agent_id IS NOT NULL', [m.session_id]);
    return x;
  }, { timeoutMs: 30000 });
  assert.equal(s.assigned_agent_id, ids.supervisor);
  assert.equal(s.status, 'manually_closed');
  assert.equal(s.summary, 'O cliente recebeu a TV quebrada e exige reembolso.');
  assert.equal(s.sentiment, 'negative');
  assert.equal(Number(s.sentiment_score), -0.85);
  assert.deepEqual(s.topics, ['refund', 'damaged item']);
  assert.deepEqual(s.next_steps, ['Ligar para o cliente hoje e oferecer reembolso.']);
  const events = (await q('SELECT event_type FROM ventros.outbox WHERE aggregate_id = $1 ORDER BY seq', [m.session_id])).map((e) => e.event_type);
  for (const e of ['session.ended', 'session.ai_requested', 'session.summary_failed', 'session.summarized', 'session.agent_assigned'])
    assert.ok(events.includes(e), e);
  const [done] = await q(`SELECT * FROM ventros.ai_completions WHERE session_id = $1`, [m.session_id]);
  assert.equal(done.status, 'completed');
  assert.equal(done.attempts, 2);
  assert.ok(Number(done.cost) > 0);

  // what the stand-in received: the key, the model, JSON asked for, the conversation
  const sent = chats();
  assert.equal(sent.length, 2);
  for (const r of sent) {
    assert.equal(r.headers.authorization, `Bearer ${LLM_KEY}`);
    assert.equal(r.response.status, 200);
    assert.equal(r.json.model, 'gpt-4o-mini');
    assert.deepEqual(r.json.response_format, { type: 'json_object' });
    assert.deepEqual(r.json.messages.map((x) => x.role), ['system', 'user']);
    assert.match(r.json.messages[1].content, /A TV chegou quebrada/);
  }
});

test('the AI agent answers two grouped messages with one reply, then hands off on "falar com humano"', async () => {
  await q('SELECT ventros.configure_ai_agent($1, true, $2, $3)', [ch.id, ids.bot, ids.team]);
  await q(`SELECT ventros.add_knowledge_snippet('Entrega', 'Entregamos em todo o Brasil em até 5 dias úteis.')`);
  ai.reset();
  ai.configure({ chat_answers: [{ reply: 'Oi! Entregamos em todo o Brasil em até 5 dias úteis.', handoff: false, sentiment: 0.4 }] });
  const t = Math.floor(Date.now() / 1000);
  const m1 = await inbound('5511977770002', 'Olá', t);
  const m2 = await inbound('5511977770002', 'Vocês entregam em Recife?', t + 1);
  assert.equal(m1.session_id, m2.session_id);
  const [g] = await q(`SELECT * FROM ventros.message_groups WHERE session_id = $1`, [m1.session_id]);
  assert.deepEqual(g.message_ids, [m1.id, m2.id]);
  assert.equal(g.status, 'pending');

  // the debounce window closes: the tick of pg_cron, at an instant past it
  const [{ n }] = await q(`SELECT ventros.tick_ai_agent(now() + interval '1 minute') AS n`);
  assert.equal(n, 1);
  const send = await waitFor('the reply sent to WAHA', async () => waha.requests('/api/sendText')[0]);
  assert.equal(send.json?.text ?? JSON.parse(send.body_text).text, 'Oi! Entregamos em todo o Brasil em até 5 dias úteis.');
  assert.equal(chats().length, 1, 'one question for the two messages');
  const asked = chats()[0].json;
  assert.deepEqual(asked.messages.slice(1), [{ role: 'user', content: 'Olá' }, { role: 'user', content: 'Vocês entregam em Recife?' }]);
  assert.match(asked.messages[0].content, /Entregamos em todo o Brasil/);
  const replies = await q('SELECT agent_id, source, text FROM ventros.messages WHERE session_id = $1 AND from_me', [m1.session_id]);
  assert.deepEqual(replies, [{ agent_id: ids.bot, source: 'bot', text: 'Oi! Entregamos em todo o Brasil em até 5 dias úteis.' }]);

  // "falar com humano": handed off without asking the model, assigned by the team's rule
  const m3 = await inbound('5511977770002', 'Prefiro falar com humano', t + 5);
  await q(`SELECT ventros.tick_ai_agent(now() + interval '1 minute')`);
  const [s] = await q('SELECT assigned_agent_id, team_id FROM ventros.sessions WHERE id = $1', [m3.session_id]);
  assert.deepEqual(s, { assigned_agent_id: ids.human, team_id: ids.team });
  const [ho] = await q(`SELECT payload FROM ventros.outbox WHERE aggregate_id = $1 AND event_type = 'session.ai_handed_off'`, [m3.session_id]);
  assert.equal(ho.payload.reason, 'keyword');
  assert.equal(chats().length, 1, 'the model was not asked again');
  const events = (await q(`SELECT event_type FROM ventros.outbox WHERE aggregate_id = $1 AND event_type LIKE 'session.ai_%' ORDER BY seq`,
                          [m1.session_id])).map((e) => e.event_type);
  assert.deepEqual(events, ['session.ai_requested', 'session.ai_replied', 'session.ai_handed_off']);
  // silent after the hand-off
  await inbound('5511977770002', 'Alô?', t + 6);
  assert.equal((await q(`SELECT count(*)::int AS n FROM ventros.message_groups WHERE session_id = $1 AND status = 'pending'`,
                        [m1.session_id]))[0].n, 0);
});

test('the chat key: in no request row, event, completion, setting or server log line', async () => {
  const rows = await q(`SELECT coalesce(string_agg(row_to_json(r)::text, E'\\n'), '') AS t FROM ventros.http_requests r
                         WHERE purpose = 'enrichment.openai_chat'`);
  assert.ok(rows[0].t.length > 0);
  const [evs] = await q('SELECT coalesce(string_agg(payload::text, E\'\\n\'), \'\') AS t FROM ventros.outbox WHERE tenant_id = $1', [TENANT]);
  const [mine] = await q(`SELECT (SELECT coalesce(string_agg(row_to_json(x)::text, E'\\n'), '') FROM ventros.ai_completions x)
                              || (SELECT coalesce(string_agg(row_to_json(x)::text, E'\\n'), '') FROM ventros.ai_settings x)
                              || (SELECT coalesce(string_agg(row_to_json(x)::text, E'\\n'), '') FROM ventros.enrichment_status x) AS t`);
  const log = fs.readFileSync(path.join(process.env.VENTROS_RUN_DIR, 'postgresql.log'), 'utf8');
  for (const [what, text] of [['requests', rows[0].t], ['events', evs.t], ['rows', mine.t], ['log', log]])
    assert.ok(!text.includes(LLM_KEY), what);
  assert.ok(chats().every((r) => r.headers.authorization === `Bearer ${LLM_KEY}`), 'the key did reach the provider');
});

// 4. The chat route: the tenant's provider (OpenAI) fails, the next one of
// the route that has a key (Groq) answers at once.
const GROQ_KEY = `gsk-intel-${crypto.randomBytes(12).toString('hex')}`;
let groqReady = false;
for (const [why, script, code] of [
  ['a 429', { status: 429, headers: { 'Retry-After': '30' }, body: { error: { message: 'Rate limit reached', type: 'tokens', code: 'rate_limit_exceeded' } } }, 'rate_limited'],
  ['a 500', { status: 500, body: { error: { message: 'Internal server error', type: 'internal_server_error' } } }, 'provider_error'],
  ['a malformed answer', { status: 200, raw: 'not json at all' }, 'malformed_answer'],
]) {
  test(`chat fallback: ${why} from OpenAI moves to Groq, which answers`, async () => {
    if (!groqReady) {
      await q('SELECT ventros.configure_ai_agent($1, false)', [ch.id]);
      ai.configure({ keys: { openai: [LLM_KEY], groq: [GROQ_KEY] } });
      const [{ id: cred }] = await q(`SELECT id FROM ventros.create_credential('Groq', 'api_key', $1)`, [GROQ_KEY]);
      await q(`SELECT ventros.configure_enrichment_provider('groq_chat', $1, base_url => $2)`, [cred, `${ai.url}/openai`]);
      groqReady = true;
    }
    ai.reset();
    ai.script({ method: 'POST', path: '/v1/chat/completions', responses: [script] });
    ai.configure({ chat_answers: [{ summary: 'Cliente pergunta sobre o prazo.', sentiment: { score: 0.1, label: 'neutral' },
                                    language: 'pt', topics: ['delivery'], next_best_action: 'Informar o prazo.' }] });
    const m = await inbound(`55119777710${code.length}`, `Qual o prazo de entrega? (${why})`);
    await q('SELECT ventros.summarize_session($1)', [m.session_id]);
    const done = await waitFor('the summary from the second provider', async () => {
      const [x] = await q(`SELECT * FROM ventros.ai_completions WHERE session_id = $1 AND status IN ('completed', 'failed')`, [m.session_id]);
      return x;
    }, { timeoutMs: 30000 });
    assert.equal(done.status, 'completed', done.error);
    assert.equal(done.provider, 'groq_chat');
    assert.equal(done.attempts, 2);
    const [first] = ai.requests('/v1/chat/completions');
    assert.equal(first.headers.authorization, `Bearer ${LLM_KEY}`);
    const [second] = ai.requests('/openai/v1/chat/completions');
    assert.equal(second.headers.authorization, `Bearer ${GROQ_KEY}`);
    assert.equal(second.json.model, 'llama-3.1-8b-instant');
    assert.equal(second.response.status, 200);
    const asked = await q(`SELECT payload FROM ventros.outbox WHERE aggregate_id = $1 AND event_type = 'session.ai_requested' ORDER BY seq`,
                          [m.session_id]);
    assert.deepEqual(asked.map((e) => e.payload.provider), ['openai_chat', 'groq_chat']);
    assert.equal(asked[1].payload.fallback_from.error_code, code);
    const [s] = await q('SELECT summary, sentiment FROM ventros.sessions WHERE id = $1', [m.session_id]);
    assert.deepEqual(s, { summary: 'Cliente pergunta sobre o prazo.', sentiment: 'neutral' });
  });
}
