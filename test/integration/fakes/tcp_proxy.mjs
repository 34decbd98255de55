// A TCP proxy of our own between a worker and what it talks to (the broker,
// a provider), for fault tests: it forwards bytes both ways until told to
//   stall()    hold every byte in both directions (connections stay open, as
//              behind a network that drops everything); unstall() lets the
//              held bytes go, in order;
//   cut()      reset every open connection (both sides see a reset at once);
//   refuse(on) reset new connections as they come (a peer that is down).
// Counts what it did (stats()).  In-process:
//   const p = await startTcpProxy({ target: 5672 }); p.port; await p.close();
import net from 'node:net';

// Close a socket, with a reset when asked and possible.  Not after end():
// Node's resetAndDestroy() on a socket whose shutdown is still under way
// fails (EINVAL) and leaves its handle marked closing but never closed, and
// the process then spins at 100% CPU at exit, forever, waiting for it (a
// soak that had printed its result never ended so).  The proxy ends a socket
// when the other side of its pair ends, and resets pairs on errors and cuts:
// such a socket is destroyed instead (its peer sees the close).
export function closeSocket(s, reset) {
  if (s.destroyed) return;
  if (reset && !s.writableEnded && typeof s.resetAndDestroy === 'function') s.resetAndDestroy();
  else s.destroy();
}

export async function startTcpProxy({ target, targetHost = '127.0.0.1', port = 0, host = '127.0.0.1' } = {}) {
  const pairs = new Set();
  let stalled = false;
  let refusing = false;
  const stats = { connections: 0, cuts: 0, stalls: 0, refused: 0 };

  // Bytes from one socket to the other, held while stalled.
  function pipe(from, to, pair, held) {
    from.on('data', (chunk) => {
      if (stalled) held.push(chunk);
      else if (!to.destroyed) to.write(chunk);
    });
    from.on('end', () => { if (!stalled) to.end(); else pair.ended = true; });
  }

  function closePair(pair, reset) {
    if (pair.closed) return;
    pair.closed = true;
    pairs.delete(pair);
    for (const s of [pair.client, pair.upstream]) closeSocket(s, reset);
  }

  const server = net.createServer((client) => {
    stats.connections++;
    if (refusing) {
      stats.refused++;
      client.on('error', () => {});
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect({ port: target, host: targetHost });
    const pair = { client, upstream, toUp: [], toClient: [], closed: false, ended: false };
    pairs.add(pair);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    pipe(client, upstream, pair, pair.toUp);
    pipe(upstream, client, pair, pair.toClient);
    // one side gone: the other goes too (a reset when it was an error)
    client.on('error', () => closePair(pair, true));
    upstream.on('error', () => closePair(pair, true));
    client.on('close', () => closePair(pair, false));
    upstream.on('close', () => closePair(pair, false));
  });
  await new Promise((ok, ko) => server.listen(port, host, ok).once('error', ko));

  return {
    port: server.address().port,
    url: `127.0.0.1:${server.address().port}`,
    stall() {
      if (!stalled) stats.stalls++;
      stalled = true;
    },
    unstall() {
      stalled = false;
      for (const pair of pairs) {
        for (const c of pair.toUp.splice(0)) pair.upstream.write(c);
        for (const c of pair.toClient.splice(0)) pair.client.write(c);
        if (pair.ended) closePair(pair, false);
      }
    },
    cut() {
      stats.cuts++;
      for (const pair of [...pairs]) closePair(pair, true);
    },
    refuse(on = true) {
      refusing = on;
    },
    open: () => pairs.size,
    stats: () => ({ ...stats, open: pairs.size }),
    async close() {
      for (const pair of [...pairs]) closePair(pair, true);
      await new Promise((ok) => server.close(ok));
    },
  };
}
