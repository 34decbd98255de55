// Deferred processing, the default (ventros.inbox_processing = deferred):
// the webhook is answered once its raw items are stored; the inbox
// processor (a background worker woken at commit) turns them into contacts,
// sessions and messages right after.  Proven over real HTTP: the answer does
// not wait for processing (processing is held back by a lock while the
// webhook is answered), every item of a burst is processed exactly once, a
// poisoned item is stored with its error, and receipts processed after
// their message are applied.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setup, BASE, asTenant, inboxRows, messageOf } from './webhooks_helpers.mjs';
import { db } from './http_helpers.mjs';
import { emitWaha, wahaMessage, wahaAck } from './fakes/emit.mjs';
import { waitFor } from './wait.mjs';

let env;
let ch;
before(async () => {
  env = await setup({ PGOPTIONS: '-c ventros.inbox_processing=deferred' });
  ch = env.channels.ta.waha;
});
after(async () => { await env.stop(); });

const send = (payload) => emitWaha(BASE, ch.id, payload, { hmacKey: ch.config.webhook_secret });

const statusOf = async (inboxId) =>
  (await asTenant(env.c, ch.tenant, 'SELECT status, last_error FROM ventros.inbox WHERE id = $1', [inboxId]))[0];

test('the inbox processors are running (ventros.inbox_workers of them)', async () => {
  // (they start with the server and retry until the database exists)
  await waitFor('the processors', async () => {
    const r = await env.c.query(`SELECT count(*)::int AS n, current_setting('ventros.inbox_workers')::int AS want
                                   FROM pg_stat_activity WHERE backend_type = 'ventros inbox processor'`);
    return r.rows[0].want >= 1 && r.rows[0].n === r.rows[0].want;
  });
});

test('the answer does not wait for processing: stored and answered while processing is held back', async () => {
  const blocker = await db();
  try {
    // contacts cannot be written until this transaction ends: processing a
    // new sender waits, storing the webhook does not
    await blocker.query('BEGIN');
    await blocker.query('LOCK TABLE ventros.contacts IN EXCLUSIVE MODE');
    const msg = wahaMessage({ from: '5511972220001', body: 'antes do processamento' });
    const r = await send(msg);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.status, 'accepted');
    assert.equal((await statusOf(r.json.inbox_id)).status, 'received', 'stored, not processed yet');
    assert.equal((await messageOf(env.c, ch, msg.payload.id)).length, 0, 'no message yet');
    await blocker.query('COMMIT');
    await waitFor('the message', async () => (await messageOf(env.c, ch, msg.payload.id)).length === 1);
    assert.equal((await statusOf(r.json.inbox_id)).status, 'processed');
  } finally {
    await blocker.end();
  }
});

test('a burst of 50 messages: every one processed once, a repeat stays a duplicate', async () => {
  const msgs = Array.from({ length: 50 }, (_, i) => wahaMessage({ from: `55119733${String(i).padStart(5, '0')}`, body: `n ${i}` }));
  const answers = await Promise.all(msgs.map(send));
  assert.deepEqual([...new Set(answers.map((a) => a.status))], [200]);
  assert.equal((await send(msgs[0])).json.status, 'duplicate');
  const ids = msgs.map((m) => m.payload.id);
  await waitFor('50 messages', async () => {
    const rows = await asTenant(env.c, ch.tenant,
      'SELECT count(*)::int AS n FROM ventros.messages WHERE channel_id = $1 AND channel_message_id = ANY ($2)', [ch.id, ids]);
    return rows[0].n === 50;
  });
  const inbox = await inboxRows(env.c, ch, "i.item->'payload'->>'id' = ANY ($2)", [ids]);
  assert.equal(inbox.length, 50, 'one inbox row each');
  assert.deepEqual([...new Set(inbox.map((i) => i.status))], ['processed']);
});

test('a message then its receipts, each answered before processing: delivered then read', async () => {
  const msg = wahaMessage({ from: '5511974440001', fromMe: true, body: 'nossa resposta' });
  assert.equal((await send(msg)).status, 200);
  await waitFor('the echo', async () => (await messageOf(env.c, ch, msg.payload.id)).length === 1);
  assert.equal((await send(wahaAck({ id: msg.payload.id, ack: 3, to: '5511974440001' }))).status, 200);
  assert.equal((await send(wahaAck({ id: msg.payload.id, ack: 2, to: '5511974440001' }))).status, 200);
  await waitFor('read', async () => (await messageOf(env.c, ch, msg.payload.id))[0]?.status === 'read');
});

test('a poisoned item is answered 200 and stored with its error; the processor keeps going', async () => {
  const poisoned = { event: 'message.any', session: 'acme-sales', payload: { id: 'false_x@c.us_POISON', fromMe: false } };
  const r = await send(poisoned);
  assert.equal(r.status, 200, r.text);
  const row = await waitFor('the poisoned item to be settled', async () => {
    const s = await statusOf(r.json.inbox_id);
    return s.status !== 'received' ? s : null;
  });
  assert.notEqual(row.status, 'processed');
  assert.ok(row.last_error, 'its error is kept');
  const msg = wahaMessage({ from: '5511975550001', body: 'depois do veneno' });
  assert.equal((await send(msg)).status, 200);
  await waitFor('the next message', async () => (await messageOf(env.c, ch, msg.payload.id)).length === 1);
});
