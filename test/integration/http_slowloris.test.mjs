// Slow senders against ventros-http (issue 12 hole 1, docs/security.md "The
// HTTP front"): 300 connections that each send a header byte every second
// (under the idle timeout, so it never fires) must not keep ordinary
// clients out.  The server has 120 connection slots, at most 50 per client
// address, the last 25 % only for addresses that hold none, and 2 seconds
// from a request's first byte to its last.  The attack comes from two
// loopback addresses (127.0.0.2 and .3), ordinary clients from 127.0.0.1;
// it is bounded in count and in time, and never leaves the machine.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import httpNode from 'node:http';
import { startServer, http, auth, PORT } from './http_helpers.mjs';

const ATTACKERS = 300;
const ATTACK_MS = 12000;
const REQUEST_TIMEOUT_S = 2;
let server;
before(async () => {
  server = await startServer({
    VENTROS_HTTP_THREADS: '1',
    VENTROS_HTTP_MAX_CLIENTS: '120',
    VENTROS_HTTP_PER_IP_LIMIT: '50',
    VENTROS_HTTP_RESERVE: '25',
    VENTROS_HTTP_REQUEST_TIMEOUT: String(REQUEST_TIMEOUT_S),
    VENTROS_HTTP_CLIENT_TIMEOUT: '10',
  });
});
after(async () => { await server.stop(); });

const viewer = auth('ventros_viewer', 'tr');

// One slow sender: a request line, then one header byte a second, forever.
// Resolves with when (ms after it connected) the server closed it, or null.
function slowSender(localAddress, stopAt) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port: PORT, localAddress });
    let connectedAt = null;
    let timer = null;
    let done = false;
    const finish = (closedByServer) => {
      if (done) return;
      done = true;
      clearInterval(timer);
      clearTimeout(stop);
      sock.destroy();
      resolve(closedByServer && connectedAt !== null ? Date.now() - connectedAt : null);
    };
    const stop = setTimeout(() => finish(false), stopAt - Date.now());
    sock.on('connect', () => {
      connectedAt = Date.now();
      sock.write('GET /contacts?select=name HTTP/1.1\r\nHost: ventros\r\nX-Slow: ');
      timer = setInterval(() => { if (!sock.destroyed) sock.write('a'); }, 1000);
    });
    sock.on('end', () => finish(true));
    sock.on('close', () => finish(true));
    sock.on('error', () => finish(true));
  });
}

// An ordinary request on a connection of its own: status and milliseconds.
function ordinary() {
  const started = Date.now();
  return new Promise((resolve) => {
    const req = httpNode.get({
      host: '127.0.0.1', port: PORT, localAddress: '127.0.0.1', agent: false,
      path: '/contacts?select=name&order=name&limit=1', headers: { ...viewer, Connection: 'close' },
      timeout: 30000,
    }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body, ms: Date.now() - started }));
    });
    req.on('timeout', () => req.destroy(new Error('no answer')));
    req.on('error', (e) => resolve({ status: 0, body: e.message, ms: Date.now() - started }));
  });
}

test('300 slow senders: ordinary requests still answer, and every attacking connection is closed by the server', async (t) => {
  const stopAt = Date.now() + ATTACK_MS;
  const attack = Array.from({ length: ATTACKERS }, (_, i) => slowSender(i % 2 ? '127.0.0.2' : '127.0.0.3', stopAt));
  // let the attack take its slots, then ask as ordinary clients do, throughout it
  await new Promise((r) => setTimeout(r, 1000));
  const answers = [];
  while (Date.now() < stopAt - 2000) {
    answers.push(await ordinary());
    await new Promise((r) => setTimeout(r, 250));
  }
  const closed = await Promise.all(attack);

  const cutAfter = closed.filter((x) => x !== null && x >= 1000);
  t.diagnostic(`${answers.length} ordinary requests, slowest ${Math.max(...answers.map((a) => a.ms))} ms; `
    + `${closed.filter((x) => x !== null && x < 1000).length} slow senders refused at once, ${cutAfter.length} cut after `
    + `${Math.min(...cutAfter)}-${Math.max(...cutAfter)} ms`);
  assert.ok(answers.length >= 5, `${answers.length} ordinary requests`);
  for (const a of answers) {
    assert.equal(a.status, 200, `ordinary request: ${a.status} ${a.body}`);
    assert.deepEqual(JSON.parse(a.body), [{ name: 'Ann' }]);
    // generous: a second is the aim, a loaded machine may take longer
    assert.ok(a.ms < 5000, `ordinary request took ${a.ms} ms`);
  }
  const open = closed.filter((t) => t === null).length;
  assert.equal(open, 0, `${open} of ${ATTACKERS} attacking connections were still open after ${ATTACK_MS} ms`);
  // some were refused at once (per address, reserved share), the rest cut at their deadline
  const cut = closed.filter((t) => t >= REQUEST_TIMEOUT_S * 1000 - 200);
  const refused = closed.filter((t) => t < 1000);
  assert.ok(cut.length > 0, 'some slow senders held a slot until their deadline');
  assert.ok(refused.length > 0, 'some slow senders were refused at once');
  assert.ok(Math.max(...cut) < REQUEST_TIMEOUT_S * 1000 + 3000, `the last cut came ${Math.max(...cut)} ms after connecting`);
});

test('after the attack the server serves as before', async () => {
  const r = await http('GET', '/contacts?select=name&order=name&limit=1', { headers: viewer });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, [{ name: 'Ann' }]);
});
