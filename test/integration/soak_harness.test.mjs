// The soak's own machinery (soak.mjs), through what broke it before:
//   - its consumer (soak_consumer.mjs): a round must end, and the next one
//     start, whatever the broker does, and close() must return whatever the
//     broker does.  Both failed with a bare `await conn.close()` (amqplib's
//     close never settles when the connection dies while closing) and with a
//     cancelled consumer taken for a live one;
//   - its TCP proxy (fakes/tcp_proxy.mjs): closing a socket it had ended
//     must leave nothing behind (Node's resetAndDestroy() then leaks the
//     handle, and the process spins at exit forever: a finished soak's
//     process never ended);
//   - the order checker the soak and the outbox tests share (orderChecker).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import amqp from 'amqplib';
import { AMQP_URL, brokerSignal, until, orderChecker } from './outbox_helpers.mjs';
import { startConsumer, dropConnection } from './soak_consumer.mjs';

const QUEUE = 'ventros.test.soak_consumer';
const TENANT = 'soak_consumer_it';
let conn;
let ch;
let n = 0;

async function declare() {
  await ch.assertQueue(QUEUE, { durable: true });
}

// an event-shaped message straight to the queue
function publish() {
  const id = `m${++n}`;
  ch.sendToQueue(QUEUE, Buffer.from(JSON.stringify({ aggregateid: 'a', sequence: n, aggregateversion: n, type: 't' })),
    { messageId: id, headers: { tenant_id: TENANT } });
  return id;
}

before(async () => {
  conn = await amqp.connect(AMQP_URL);
  ch = await conn.createChannel();
  await declare();
  await ch.purgeQueue(QUEUE);
});

after(async () => {
  brokerSignal('CONT');
  await ch.deleteQueue(QUEUE).catch(() => {});
  await conn.close().catch(() => {});
});

test('a consumer the broker cancels (its queue deleted) consumes again once the queue is back', { timeout: 60000 }, async () => {
  const c = startConsumer(QUEUE, TENANT, { heartbeat: 60 });
  try {
    const first = publish();
    await until(() => c.copies.has(first), 'the first message');
    await ch.deleteQueue(QUEUE);
    await declare();
    const second = publish();
    await until(() => c.copies.has(second), 'a message after the queue came back', 30000);
    assert.equal(c.ends['consumer cancelled'], 1);
  } finally {
    await c.close();
  }
});

test('a connection is let go within its bound while the broker is frozen (amqplib close would wait forever)', { timeout: 30000 }, async () => {
  const c = await amqp.connect(`${AMQP_URL}?heartbeat=1`);
  c.on('error', () => {});
  brokerSignal('STOP');
  try {
    await dropConnection(c, 1000);
    assert.ok(c.connection.stream.destroyed, 'the socket is gone');
  } finally {
    brokerSignal('CONT');
  }
});

test('close() of a consumer returns while the broker is frozen', { timeout: 30000 }, async () => {
  const c = startConsumer(QUEUE, TENANT, { heartbeat: 1 });
  const id = publish();
  await until(() => c.copies.has(id), 'a message');
  brokerSignal('STOP');
  try {
    await c.close(); // with a bare conn.close() this never returned
  } finally {
    brokerSignal('CONT');
  }
  assert.equal(c.copies.get(id), 1);
});

test('the order check: outbox order per aggregate, versions never back nor skipped, shared versions allowed', () => {
  const o = orderChecker();
  const e = (s, v, a = 'x') => ({ aggregateid: a, sequence: s, aggregateversion: v, type: 't' });
  assert.equal(o.see(e(1, 1)), null);
  assert.equal(o.see(e(2, 1)), null, 'two events of one change (session.message_recorded) share a version');
  assert.equal(o.see(e(3, 2)), null);
  assert.equal(o.see(e(4, null)), null, 'an event without a version');
  assert.equal(o.see(e(5, 3)), null);
  assert.match(o.see(e(4, 3)), /out of order/);
  assert.match(o.see(e(6, 5)), /skipped/);
  assert.equal(o.see(e(1, 9, 'y')), null, 'another aggregate');
  assert.match(o.see(e(7, 4, 'y')), /went back/);
});

test('a socket the proxy ended and then closes with a reset leaves nothing open: the process ends', () => {
  const proxy = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fakes/tcp_proxy.mjs');
  // end(), then the close in the same tick, while the shutdown is under way
  const script = `
    import net from 'node:net';
    import { closeSocket } from ${JSON.stringify(proxy)};
    const server = net.createServer((s) => s.on('error', () => {}));
    await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
    const c = net.connect(server.address().port, '127.0.0.1');
    await new Promise((ok) => c.on('connect', ok));
    c.on('error', () => {});
    c.end();
    closeSocket(c, true);
    server.close();`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { timeout: 20000, encoding: 'utf8' });
  assert.equal(r.error?.code, undefined, 'the process did not end by itself (killed after 20 s)');
  assert.equal(r.status, 0, r.stderr);
});
