// GET /metrics (src/http/metrics.c, ventros.metrics(), docs/operations.md):
// Prometheus' text format parsed line by line (every sample under a HELP and
// a TYPE of its family, families not split, histogram buckets cumulative
// and ending in +Inf = _count), the series the operator's guide promises,
// counters that move after requests, and access: loopback only without a
// token; with VENTROS_HTTP_METRICS_TOKEN, that token and nothing else (a
// tenant's JWT neither).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, http, auth } from './http_helpers.mjs';

const TOKEN = 'metrics-token-' + 'y'.repeat(20);
let server;
after(async () => { await server?.stop(); });

// { families: name -> {type, help, samples: [{name, labels, value}]} }
function parse(text) {
  const families = new Map();
  let current = null;
  const seen = new Set();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let m;
    if ((m = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line))) {
      assert.ok(!seen.has(m[1]), `family ${m[1]} appears twice`);
      seen.add(m[1]);
      current = { type: null, help: m[2], samples: [] };
      families.set(m[1], current);
      continue;
    }
    if ((m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line))) {
      assert.ok(families.has(m[1]), `TYPE of ${m[1]} after its HELP`);
      families.get(m[1]).type = m[2];
      continue;
    }
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `a sample line: ${line}`);
    const [, name, labelText, value] = m;
    const labels = {};
    for (const l of (labelText ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    assert.ok(current, `sample before any family: ${line}`);
    const base = current.type === 'histogram' ? name.replace(/_(bucket|sum|count)$/, '') : name;
    assert.equal(families.get(base), current, `${name} is a sample of the family it stands under`);
    assert.ok(!Number.isNaN(Number(value)) || value === 'NaN', `a number: ${line}`);
    current.samples.push({ name, labels, value: Number(value) });
  }
  return families;
}

const sample = (f, name, labels = {}) =>
  f.samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));

test('loopback scrape: the format, the promised series, counters that move', async () => {
  server = await startServer();
  const r1 = await http('GET', '/metrics');
  assert.equal(r1.status, 200, r1.text);
  assert.match(r1.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
  const f1 = parse(r1.text);
  const expect = {
    ventros_http_requests_total: 'counter',
    ventros_http_request_duration_seconds: 'histogram',
    ventros_http_pool_connections: 'gauge',
    ventros_http_pool_waiting: 'gauge',
    ventros_http_pool_timeouts_total: 'counter',
    ventros_http_database_up: 'gauge',
    ventros_queue_depth: 'gauge',
    ventros_queue_due: 'gauge',
    ventros_queue_oldest_age_seconds: 'gauge',
    ventros_queue_in_flight: 'gauge',
    ventros_dead_letters: 'gauge',
    ventros_worker_up: 'gauge',
    ventros_broker_connected: 'gauge',
    ventros_events_published_total: 'counter',
    ventros_dispatcher_attempts_total: 'counter',
    ventros_sends_paused: 'gauge',
    ventros_enrichment_spend_usd: 'gauge',
  };
  for (const [name, type] of Object.entries(expect)) {
    assert.ok(f1.has(name), `${name} is exposed`);
    assert.equal(f1.get(name).type, type, `${name} is a ${type}`);
    assert.ok(f1.get(name).help.length > 10, `${name} has a help`);
  }
  assert.equal(sample(f1.get('ventros_http_database_up'), 'ventros_http_database_up').value, 1);
  for (const queue of ['outbox', 'inbox', 'http']) {
    assert.ok(sample(f1.get('ventros_queue_depth'), 'ventros_queue_depth', { queue }), `depth of ${queue}`);
    assert.ok(sample(f1.get('ventros_dead_letters'), 'ventros_dead_letters', { queue }), `dead letters of ${queue}`);
  }
  assert.ok(f1.get('ventros_worker_up').samples.some((s) => s.labels.kind && s.value === 1), 'a running worker');
  assert.equal(sample(f1.get('ventros_broker_connected'), 'ventros_broker_connected').value, 1);
  const pool = f1.get('ventros_http_pool_connections');
  assert.equal(sample(pool, 'ventros_http_pool_connections', { state: 'busy' }).value
               + sample(pool, 'ventros_http_pool_connections', { state: 'idle' }).value, 4, 'the pool of 4');

  // requests move their counters and histograms
  const before = (f, route, status) =>
    sample(f.get('ventros_http_requests_total'), 'ventros_http_requests_total', { route, status })?.value ?? 0;
  const count = (f, route) => sample(f.get('ventros_http_request_duration_seconds'),
    'ventros_http_request_duration_seconds_count', { route }).value;
  for (let i = 0; i < 3; i++) assert.equal((await http('GET', '/contacts?limit=1', { headers: auth('ventros_viewer', 'tr') })).status, 200);
  assert.equal((await http('GET', '/rpc/no_such_function', { headers: auth('ventros_viewer', 'tr') })).status, 404);
  const f2 = parse((await http('GET', '/metrics')).text);
  assert.equal(before(f2, 'relation', '200') - before(f1, 'relation', '200'), 3, 'three relation reads counted');
  assert.equal(before(f2, 'rpc', '404') - before(f1, 'rpc', '404'), 1, 'one rpc 404 counted');
  assert.equal(count(f2, 'relation') - count(f1, 'relation'), 3, 'and timed');
  assert.ok(before(f2, 'metrics', '200') >= 1, 'the first scrape is counted');
  // histogram: cumulative buckets ending at +Inf = _count
  const h = f2.get('ventros_http_request_duration_seconds');
  const buckets = h.samples.filter((s) => s.name.endsWith('_bucket') && s.labels.route === 'relation');
  for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i].value >= buckets[i - 1].value, 'cumulative');
  assert.equal(buckets.at(-1).labels.le, '+Inf');
  assert.equal(buckets.at(-1).value, count(f2, 'relation'));
  assert.ok(sample(h, 'ventros_http_request_duration_seconds_sum', { route: 'relation' }).value > 0);

  const post = await http('POST', '/metrics', { body: {} });
  assert.equal(post.status, 405);
  await server.stop();
  server = null;
});

test('with a token: the token opens it, nothing else does', async () => {
  server = await startServer({ VENTROS_HTTP_METRICS_TOKEN: TOKEN });
  assert.equal((await http('GET', '/metrics')).status, 401);
  assert.equal((await http('GET', '/metrics', { headers: { Authorization: 'Bearer wrong' } })).status, 401);
  assert.equal((await http('GET', '/metrics', { headers: auth('ventros_admin', 'ta') })).status, 401,
    'a tenant\'s token is not the metrics token');
  const ok = await http('GET', '/metrics', { headers: { Authorization: `Bearer ${TOKEN}` } });
  assert.equal(ok.status, 200, ok.text);
  assert.ok(parse(ok.text).has('ventros_queue_depth'));
});

test('without a token, a client from elsewhere than loopback is refused', async (t) => {
  const { networkInterfaces } = await import('node:os');
  const ip = Object.values(networkInterfaces()).flat().find((a) => a.family === 'IPv4' && !a.internal)?.address;
  if (!ip) return t.skip('no non-loopback IPv4 address on this machine');
  await server?.stop();
  server = await startServer({ VENTROS_HTTP_HOST: '0.0.0.0' });
  const port = new URL((await import('./http_helpers.mjs')).BASE).port;
  const r = await fetch(`http://${ip}:${port}/metrics`);
  assert.equal(r.status, 403, await r.text());
  assert.equal((await fetch(`http://127.0.0.1:${port}/metrics`)).status, 200);
});
