// The webhook endpoint when PostgreSQL goes away and comes back: 503
// {"error":"unavailable"} with Retry-After (the provider retries; nothing
// was stored), never a hang or a crash; once the database is back the same
// delivery is accepted, exactly once.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { ROOT } from './http_helpers.mjs';
import { setup, BASE, messageOf } from './webhooks_helpers.mjs';
import { emitWaha, emitMeta, handshake, wahaMessage, whatsappMessages, whatsappText } from './fakes/emit.mjs';

const RUN = process.env.VENTROS_RUN_DIR;
const lib = path.join(ROOT, 'scripts/lib.sh');
const pg = (fn) => execFileSync('bash', ['-c', `source "${lib}"; ${fn} "${RUN}" ${process.env.PGPORT}`], { stdio: 'ignore' });

let env;
before(async () => { env = await setup({ VENTROS_HTTP_POOL: '2', VENTROS_HTTP_POOL_WAIT_MS: '1000' }); });
after(async () => {
  pg('pg_start');	// whatever happened, leave the server running for the next file
  await env.server.stop();
  await env.c.end().catch(() => {});
});

test('database down: 503 unavailable; back up: the retried delivery is accepted once', { timeout: 120000 }, async () => {
  const ch = env.channels.ta.waha;
  const w = env.channels.ta.whatsapp;
  const msg = wahaMessage({ from: '5511972220001', body: 'durante a queda' });
  const item = whatsappText({ body: 'during the outage' });
  const cloud = whatsappMessages({ phoneNumberId: w.config.phone_number_id, waId: '16505559001', messages: [item] });
  const warm = await emitWaha(BASE, ch.id, wahaMessage({ from: '5511972220001', body: 'antes' }), { hmacKey: ch.config.webhook_secret });
  assert.equal(warm.status, 200, warm.text);
  await env.c.end();
  pg('pg_stop');
  for (let i = 0; i < 3; i++) {
    const r = await emitWaha(BASE, ch.id, msg, { hmacKey: ch.config.webhook_secret });
    assert.equal(r.status, 503, r.text);
    assert.deepEqual(r.json, { error: 'unavailable' });
    assert.ok(r.headers.get('retry-after'));
    const m = await emitMeta(BASE, 'whatsapp', w.id, cloud, { appSecret: w.config.app_secret });
    assert.equal(m.status, 503, m.text);
    assert.deepEqual(m.json, { error: 'unavailable' });
  }
  const hs = await handshake(BASE, 'whatsapp', w.id, { token: w.config.verify_token, challenge: '42' });
  assert.equal(hs.status, 503);
  assert.equal(env.server.child.exitCode, null, 'the server is still running');
  pg('pg_start');
  let r;
  for (let i = 0; i < 200; i++) {
    r = await emitWaha(BASE, ch.id, msg, { hmacKey: ch.config.webhook_secret });
    if (r.status !== 503) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.status, 'accepted', 'nothing had been stored during the outage');
  assert.deepEqual((await emitWaha(BASE, ch.id, msg, { hmacKey: ch.config.webhook_secret })).json, { status: 'duplicate' });
  const m = await emitMeta(BASE, 'whatsapp', w.id, cloud, { appSecret: w.config.app_secret });
  assert.equal(m.status, 200, m.text);
  assert.equal(m.json.status, 'accepted');
  // every pooled connection was broken by the restart: each is found dead and reconnected
  for (let i = 0; i < 4; i++) {
    const again = await emitWaha(BASE, ch.id, wahaMessage({ from: '5511972220001', body: `depois ${i}` }), { hmacKey: ch.config.webhook_secret });
    assert.equal(again.status, 200, again.text);
  }
  const { db } = await import('./http_helpers.mjs');
  env.c = await db();
  assert.equal((await messageOf(env.c, ch, msg.payload.id)).length, 1);
  assert.equal((await messageOf(env.c, w, item.id)).length, 1);
});
