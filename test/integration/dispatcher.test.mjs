// The HTTP dispatcher over real HTTP: rows of ventros.http_requests reach a
// recording fake on loopback (test/integration/fakes/recorder.mjs), with
// retries, Retry-After, dead letters, response capture, concurrency, a
// worker killed mid-run, and the SSRF guard refusing what it must.
//
// The poll interval is set to ten minutes, so every delivery here depends on
// the wake-up at commit and on the worker sleeping exactly until the next
// due retry; a broken wake-up makes these tests time out.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { startRecorder } from './fakes/recorder.mjs';
import { waitFor } from './wait.mjs';
import { alterSystem, resetSystem } from './settings.mjs';

const TENANT = 'dispatcher_it';
let db;
let fake;
let other;
let probeCount = 0;

const settings = {
  'ventros.http_allow_hosts': '127.0.0.1/32',
  'ventros.http_backoff_min': '200ms',
  'ventros.http_backoff_max': '1000',
  'ventros.http_poll_interval': '600000',
  'ventros.http_timeout': '3000',
  'ventros.http_connect_timeout': '2000',
  'ventros.http_max_response_size': '1024',
  'ventros.http_concurrency': '16',
};

async function q(sql, params = []) {
  return (await db.query(sql, params)).rows;
}


async function enqueue({ url, method = 'POST', headers = {}, body = null, maxAttempts = 5, timeoutMs = null,
                         retryPolicy = 'transient', purpose = 'test' }) {
  const [r] = await q(
    `SELECT ventros.enqueue_http_request($1, $2, $3::jsonb, $4::bytea, $5, NULL, $6, $7, NULL, $8) AS id`,
    [url, method, JSON.stringify(headers), body === null ? null : Buffer.from(body), purpose, maxAttempts,
     timeoutMs, retryPolicy]);
  return r.id;
}

async function row(id) {
  const [r] = await q('SELECT * FROM ventros.http_requests WHERE id = $1', [id]);
  return r;
}

async function finished(id) {
  return waitFor(`request ${id} to finish`, async () => {
    const r = await row(id);
    return ['succeeded', 'failed', 'dead'].includes(r.status) ? r : null;
  });
}

before(async () => {
  db = new pg.Client({ connectionString: process.env.VENTROS_PGURL });
  await db.connect();
  await q(`SET ventros.tenant = '${TENANT}'`);
  await alterSystem(db, settings);
  fake = await startRecorder();
  other = await startRecorder();
  // The worker applies the reload asynchronously: probe until a request to
  // the (now allow-listed) fake succeeds.
  await waitFor('the dispatcher to allow the loopback fake', async () => {
    const id = await enqueue({ url: `${fake.url}/probe/${++probeCount}`, maxAttempts: 1 });
    const r = await finished(id);
    return r.status === 'succeeded';
  });
  fake.reset();
});

after(async () => {
  await resetSystem(db, settings);
  await db.end();
  await fake.close();
  await other.close();
});

test('a request arrives with its method, headers and body; the answer is captured', async () => {
  fake.script({ method: 'POST', path: '/send', responses: [{ status: 201, headers: { 'X-Reply': 'yes' }, body: { id: 'abc' } }] });
  const id = await enqueue({
    url: `${fake.url}/send?x=1`, headers: { 'Content-Type': 'application/json', 'X-Api-Key': 'k1' },
    body: '{"text":"Olá!"}',
  });
  const r = await finished(id);
  assert.equal(r.status, 'succeeded');
  assert.equal(r.attempts, 1);
  assert.equal(r.response_status, 201);
  assert.deepEqual(JSON.parse(r.response_body.toString('utf8')), { id: 'abc' });
  assert.equal(r.response_headers['x-reply'], 'yes');
  assert.equal(r.last_error, null);
  const [got] = fake.requests('/send');
  assert.equal(got.method, 'POST');
  assert.deepEqual(got.query, { x: '1' });
  assert.equal(got.headers['content-type'], 'application/json');
  assert.equal(got.headers['x-api-key'], 'k1');
  assert.equal(got.headers['user-agent'], 'Ventros-Dispatcher/1.0');
  assert.equal(got.body_text, '{"text":"Olá!"}');
});

test('GET, PUT, PATCH and DELETE are sent as such', async () => {
  const ids = [];
  for (const m of ['GET', 'PUT', 'PATCH', 'DELETE'])
    ids.push(await enqueue({ url: `${fake.url}/m/${m}`, method: m, body: m === 'GET' ? null : `body-${m}` }));
  for (const id of ids) assert.equal((await finished(id)).status, 'succeeded');
  for (const m of ['GET', 'PUT', 'PATCH', 'DELETE']) {
    const [got] = fake.requests(`/m/${m}`);
    assert.equal(got.method, m);
    assert.equal(got.body_text, m === 'GET' ? '' : `body-${m}`);
  }
});

test('500, 500, then 200: retried with backoff until it succeeds', async () => {
  fake.script({ path: '/flaky', responses: [{ status: 500 }, { status: 500 }, { status: 200, body: 'fine' }] });
  const id = await enqueue({ url: `${fake.url}/flaky` });
  const r = await finished(id);
  assert.equal(r.status, 'succeeded');
  assert.equal(r.attempts, 3);
  const got = fake.requests('/flaky');
  assert.equal(got.length, 3);
  // backoff 200 ms then 400 ms, each -10 % at worst
  assert.ok(got[1].received_at - got[0].received_at >= 180, 'first retry waited the backoff');
  assert.ok(got[2].received_at - got[1].received_at >= 360, 'second retry waited twice as long');
});

test('429 with Retry-After in seconds is honoured', async () => {
  fake.script({ path: '/busy', responses: [{ status: 429, headers: { 'Retry-After': '2' } }, { status: 200 }] });
  const id = await enqueue({ url: `${fake.url}/busy` });
  const r = await finished(id);
  assert.equal(r.status, 'succeeded');
  const got = fake.requests('/busy');
  assert.equal(got.length, 2);
  assert.ok(got[1].received_at - got[0].received_at >= 2000, 'the retry came after Retry-After');
});

test('503 with Retry-After as an HTTP date is honoured', async () => {
  fake.script({ path: '/down', responses: [{ status: 503, retry_after_date_s: 1 }, { status: 200 }] });
  const id = await enqueue({ url: `${fake.url}/down` });
  const r = await finished(id);
  assert.equal(r.status, 'succeeded');
  const got = fake.requests('/down');
  assert.equal(got.length, 2);
  const until = Date.parse(got[0].response.headers['Retry-After']);
  assert.ok(got[1].received_at >= until, 'the retry came after the Retry-After date');
});

test('a timeout and a connection reset are retried', async () => {
  // A server the dispatcher never used: no kept-alive connection to it, so
  // libcurl's own silent retry of a dead reused connection cannot hide the
  // reset.
  const fresh = await startRecorder();
  try {
    fake.script({ path: '/slow', responses: [{ delay_ms: 2000 }, { status: 200 }] });
    fresh.script({ path: '/reset', responses: [{ drop: true }, { status: 200 }] });
    const slow = await enqueue({ url: `${fake.url}/slow`, timeoutMs: 300 });
    const reset = await enqueue({ url: `${fresh.url}/reset` });
    const a = await finished(slow);
    const b = await finished(reset);
    assert.equal(a.status, 'succeeded');
    assert.equal(a.attempts, 2);
    assert.equal(b.status, 'succeeded');
    assert.equal(b.attempts, 2);
    assert.equal(fresh.requests('/reset').length, 2);
  } finally {
    await fresh.close();
  }
});

test('a request failing every attempt ends dead after max_attempts, with its last error', async () => {
  fake.script({ path: '/broken', default: { status: 500, body: { error: 'boom' } } });
  const id = await enqueue({ url: `${fake.url}/broken`, maxAttempts: 3 });
  const r = await finished(id);
  assert.equal(r.status, 'dead');
  assert.equal(r.attempts, 3);
  assert.equal(r.last_error, 'HTTP 500');
  assert.equal(r.response_status, 500);
  assert.deepEqual(JSON.parse(r.response_body.toString('utf8')), { error: 'boom' });
  assert.equal(fake.requests('/broken').length, 3);
  // replay gives it more attempts
  fake.script({ path: '/broken', responses: [{ status: 200 }] });
  await q('SELECT ventros.replay_http_request($1, 2)', [id]);
  const again = await finished(id);
  assert.equal(again.status, 'succeeded');
  assert.equal(again.attempts, 4);
});

test('a client error is final at once; retry_policy any retries it', async () => {
  fake.script({ path: '/bad', responses: [{ status: 400 }, { status: 200 }] });
  const id = await enqueue({ url: `${fake.url}/bad` });
  const r = await finished(id);
  assert.equal(r.status, 'failed');
  assert.equal(r.attempts, 1);
  assert.equal(r.last_error, 'HTTP 400');
  fake.script({ path: '/gone-then', responses: [{ status: 404 }, { status: 200 }] });
  const any = await enqueue({ url: `${fake.url}/gone-then`, retryPolicy: 'any' });
  const s = await finished(any);
  assert.equal(s.status, 'succeeded');
  assert.equal(s.attempts, 2);
});

test('the kept body is capped by ventros.http_max_response_size', async () => {
  fake.script({ path: '/big', responses: [{ status: 200, body_size: 5000 }] });
  fake.script({ path: '/small', responses: [{ status: 200, body_size: 1024 }] });
  const big = await finished(await enqueue({ url: `${fake.url}/big` }));
  const small = await finished(await enqueue({ url: `${fake.url}/small` }));
  assert.equal(big.status, 'succeeded');
  assert.equal(big.response_body.length, 1024);
  assert.equal(big.response_truncated, true);
  assert.equal(small.response_body.length, 1024);
  assert.equal(small.response_truncated, false);
});

test('many requests complete, several at a time', async () => {
  fake.script({ path: '/many', default: { status: 200, delay_ms: 100 } });
  const n = 150;
  await q('BEGIN');
  const ids = [];
  for (let i = 0; i < n; i++) ids.push(await enqueue({ url: `${fake.url}/many`, headers: { 'X-N': String(i) } }));
  await q('COMMIT');
  await waitFor('all requests to succeed', async () => {
    const [c] = await q(`SELECT count(*)::int AS n FROM ventros.http_requests WHERE id = ANY($1) AND status = 'succeeded'`, [ids]);
    return c.n === n;
  });
  const seen = new Set(fake.requests('/many').map((r) => r.headers['x-n']));
  assert.equal(seen.size, n);
  assert.ok(fake.maxOpen() > 1, `requests overlapped (at most ${fake.maxOpen()} at once)`);
});

test('the dispatcher killed mid-run loses nothing', async () => {
  // held by the fake until released: the requests are still in flight when
  // the test looks, however slow the machine
  fake.script({ path: '/survive', default: { status: 200, hold: true } });
  const n = 40;
  await q('BEGIN');
  const ids = [];
  for (let i = 0; i < n; i++) ids.push(await enqueue({ url: `${fake.url}/survive`, headers: { 'X-N': String(i) } }));
  await q('COMMIT');
  const [before] = await waitFor('requests in flight', async () => {
    const rows = await q(`SELECT pid FROM ventros.http_dispatcher_status WHERE leased > 0`);
    return rows.length ? rows : null;
  });
  const [k] = await q('SELECT pg_terminate_backend($1) AS ok', [before.pid]);
  assert.equal(k.ok, true);
  // from now on answered at once; what was held goes too
  fake.script({ path: '/survive', default: { status: 200 } });
  fake.release();
  await waitFor('all requests to succeed after the restart', async () => {
    const [c] = await q(`SELECT count(*)::int AS n FROM ventros.http_requests WHERE id = ANY($1) AND status = 'succeeded'`, [ids]);
    return c.n === n;
  });
  const [s] = await q('SELECT pid FROM ventros.http_dispatcher_status');
  assert.notEqual(s.pid, before.pid, 'a new dispatcher process took over');
  const seen = new Set(fake.requests('/survive').map((r) => r.headers['x-n']));
  assert.equal(seen.size, n, 'every request reached the receiver at least once');
});

test('the SSRF guard refuses through the dispatcher, with a clear last_error', async () => {
  const meta = await finished(await enqueue({ url: 'http://169.254.169.254/latest/meta-data/' }));
  assert.equal(meta.status, 'failed');
  assert.equal(meta.attempts, 1);
  assert.match(meta.last_error, /^refused by the SSRF guard: .*169\.254\.169\.254.*cloud metadata/);
  const local = await finished(await enqueue({ url: `http://localhost:${fake.port}/named` }));
  assert.equal(local.status, 'failed');
  assert.match(local.last_error, /localhost name/);
  const hex = await finished(await enqueue({ url: `http://0x7f000002:${fake.port}/hex` }));
  assert.equal(hex.status, 'failed');
  assert.match(hex.last_error, /loopback/);
  assert.equal(fake.requests('/named').length, 0);
});

test('a redirect to a private address is not followed', async () => {
  fake.script({ path: '/redirect', responses: [{ status: 302, headers: { Location: `${other.url}/internal` } }] });
  const r = await finished(await enqueue({ url: `${fake.url}/redirect` }));
  assert.equal(r.status, 'failed');
  assert.equal(r.response_status, 302);
  assert.equal(r.last_error, 'HTTP 302: redirects are not followed');
  assert.equal(r.response_headers.location, `${other.url}/internal`);
  assert.equal(other.requests().length, 0);
});

test('the status view shows the dispatcher and its counters', async () => {
  const [s] = await q('SELECT * FROM ventros.http_dispatcher_status');
  assert.ok(s.pid > 0);
  assert.equal(s.database, 'ventros');
  assert.ok(Number(s.succeeded) > 0);
  assert.ok(Number(s.refused) >= 3);
  const [a] = await q(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'ventros http dispatcher'`);
  assert.equal(a.n, 1);
});
