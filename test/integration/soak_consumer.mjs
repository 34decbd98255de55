// The soak's consumer (soak.mjs): reads a durable queue bound to every event
// through every fault, acking after it counts, and checks the order of the
// first arrival of each event (orderChecker, outbox_helpers.mjs).
//
// It works in rounds: connect, open a channel, consume; a round ends when the
// connection closes (the broker killed, a heartbeat missed), when the broker
// closes the channel (the queue not back yet after a restart) or cancels the
// consumer (the queue deleted), or when it stalls (below), and the next round
// starts 250 ms later.
// A round's connection is let go with dropConnection, never with a bare
// `await conn.close()`: amqplib's close waits for the broker's CloseOk and
// its promise never settles when the connection dies meanwhile (a broker
// killed or frozen while the client closes).  That await stopped a soak's
// consumer for good after a fault (1,431 of 102,107 events received) and
// kept a finished soak's process from ending (its close waited for the
// round).  soak_consumer.test.mjs shows both.
import amqp from 'amqplib';
import { AMQP_URL, sleep, orderChecker } from './outbox_helpers.mjs';

// Let a connection go within boundMs whatever the broker does: a clean close
// when the broker answers, the socket destroyed in any case (amqplib only
// ends its socket after a missed heartbeat: half open until the peer acts).
export async function dropConnection(conn, boundMs = 2000) {
  let timer;
  await Promise.race([
    conn.close().catch(() => {}),
    new Promise((ok) => { timer = setTimeout(ok, boundMs); }),
  ]);
  clearTimeout(timer);
  conn.connection?.stream?.destroy();
}

// The messages ready in queue, asked on a connection of its own; null when
// the broker does not answer within boundMs.
export async function readyIn(queue, { url = AMQP_URL, boundMs = 3000 } = {}) {
  let conn = null;
  let timer;
  try {
    return await Promise.race([
      (async () => {
        conn = await amqp.connect(url, { timeout: boundMs });
        conn.on('error', () => {});
        const ch = await conn.createChannel();
        ch.on('error', () => {});
        return (await ch.checkQueue(queue)).messageCount;
      })(),
      new Promise((ok) => { timer = setTimeout(() => ok(null), boundMs); }),
    ]);
  } catch (e) {
    return null;
  } finally {
    clearTimeout(timer);
    if (conn) await dropConnection(conn, 1000);
  }
}

// startConsumer(queue, tenant): counts per event id (copies), the sequence
// of each first arrival (seqs), order problems (violations), and how the
// rounds went (rounds, ends: reason -> count).  close() ends it.
//
// A round that has received nothing for stallMs while the queue holds ready
// messages is ended ('stalled') and the next one consumes again: a client
// left consuming nothing (a consume the broker never answered while its
// queue came back after a restart, say) would otherwise read as events the
// product lost.  Events really lost are not in the queue, and stay lost.
export function startConsumer(queue, tenant, { url = AMQP_URL, heartbeat = 5, prefetch = 1000, stallMs = 10000 } = {}) {
  const st = {
    copies: new Map(), seqs: new Map(), violations: [], rounds: 0, ends: {}, stop: false, endRound: null,
    lastDelivery: Date.now(),
  };
  const order = orderChecker();
  const onMessage = (ch, m) => {
    st.lastDelivery = Date.now();
    if (m.properties.headers?.tenant_id === tenant) {
      const id = m.properties.messageId;
      const n = (st.copies.get(id) ?? 0) + 1;
      st.copies.set(id, n);
      if (n === 1) {
        const b = JSON.parse(m.content.toString());
        st.seqs.set(id, b.sequence);
        const problem = order.see(b);
        if (problem) st.violations.push(problem);
      }
    }
    try { ch.ack(m); } catch (e) { /* the connection went: redelivered */ }
  };

  st.done = (async () => {
    while (!st.stop) {
      let conn = null;
      try {
        conn = await amqp.connect(`${url}?heartbeat=${heartbeat}`, { timeout: 10000 });
        if (st.stop) break; // told to stop while it connected
        st.rounds++;
        let end;
        const ended = new Promise((ok) => { end = ok; });
        st.endRound = end;
        conn.on('close', () => end('connection closed'));
        st.lastDelivery = Date.now();
        let checking = false;
        const watchdog = setInterval(async () => {
          if (checking || Date.now() - st.lastDelivery < stallMs) return;
          checking = true;
          const ready = await readyIn(queue, { url });
          checking = false;
          if (ready > 0 && Date.now() - st.lastDelivery >= stallMs) end('stalled');
        }, stallMs / 4);
        ended.finally(() => clearInterval(watchdog));
        conn.on('error', () => {});
        (async () => {
          const ch = await conn.createChannel();
          ch.on('close', () => end('channel closed'));
          ch.on('error', () => {});
          await ch.prefetch(prefetch);
          await ch.consume(queue, (m) => {
            if (m) onMessage(ch, m);
            else end('consumer cancelled');
          });
        })().catch(() => end('setup failed'));
        const why = await ended;
        st.ends[why] = (st.ends[why] ?? 0) + 1;
      } catch (e) {
        /* broker down or refusing: try again */
      } finally {
        st.endRound = null;
        if (conn) await dropConnection(conn);
      }
      if (!st.stop) await sleep(250);
    }
  })();
  st.close = async () => {
    st.stop = true;
    st.endRound?.('stopped');
    await st.done;
  };
  return st;
}
