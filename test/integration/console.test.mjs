// The agent console (GET /console, docs/console.md) in a real browser:
// Debian's headless Chromium driven by puppeteer-core.  On the demo data of
// scripts/up (scripts/demo.sql, the demo channels and provider stand-ins of
// scripts/standins.sh): sign in, a signed WAHA webhook posted by the test
// appears in the conversation list without a reload (the live stream), the
// agent opens it and replies, the reply reaches the WAHA stand-in and turns
// delivered on the page when the stand-in's status webhook comes back.
// VENTROS_WRITE_DOCS=1 also writes the screenshot the README shows
// (docs/console.png).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import puppeteer from 'puppeteer-core';
import { startServer, db, BASE, PORT, ROOT } from './http_helpers.mjs';
import { waitFor } from './wait.mjs';
import { resetSystem } from './settings.mjs';

const RUN = process.env.VENTROS_RUN_DIR || path.join(ROOT, '.run/test');
const TENANT = 'consoledemo'; // (a domain of an email the form accepts: no underscore)
const OTHER = 'consoleother';
const PASSWORD = crypto.randomBytes(9).toString('hex');
const EMAIL = `agent@${TENANT}.example`;
const PORTS = { VENTROS_WAHA_STANDIN_PORT: String(PORT + 7), VENTROS_GRAPH_STANDIN_PORT: String(PORT + 8) };
const CHROMIUM = process.env.VENTROS_CHROMIUM || '/usr/bin/chromium';

let server;
let c;
let browser;
let standins;
let waha;           // { channel, secret, url }

function shell(fn, ...args) {
  return execFileSync('bash', ['-c', `source "${ROOT}/scripts/lib.sh"; source "${ROOT}/scripts/standins.sh"; ${fn} "$@"`, fn, ...args],
    { env: { ...process.env, ...PORTS }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

const logOf = (name) => {
  const file = JSON.parse(fs.readFileSync(standins, 'utf8'))[name].log;
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [];
};

function wahaWebhook(from, text, name) {
  const id = `false_${from}@c.us_CO${crypto.randomBytes(6).toString('hex').toUpperCase()}`;
  const body = JSON.stringify({ event: 'message.any', session: 'default', payload: {
    id, timestamp: Math.floor(Date.now() / 1000), from: `${from}@c.us`, fromMe: false, body: text, hasMedia: false,
    _data: { Info: { PushName: name } } } });
  const sig = crypto.createHmac('sha512', waha.secret).update(body).digest('hex');
  return fetch(waha.url, { method: 'POST', body, headers: {
    'Content-Type': 'application/json', 'X-Webhook-Hmac': sig, 'X-Webhook-Hmac-Algorithm': 'sha512' } });
}

function rawGet(p) {
  return new Promise((ok, ko) => {
    http.get({ host: '127.0.0.1', port: PORT, path: p }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => ok({ status: res.statusCode, body }));
    }).on('error', ko);
  });
}

// page.waitForFunction with a bound for loaded machines; a timeout names
// what was awaited and what the page last said (its status line)
async function until(page, what, fn, ...args) {
  try {
    await page.waitForFunction(fn, { timeout: 90000 }, ...args);
  } catch (e) {
    const said = await page.evaluate(() => `${document.body.dataset.said ?? ''} ${document.getElementById('signin-error').textContent}`)
      .catch(() => '?');
    throw new Error(`${what}: ${e.message} (the page said: ${said})`);
  }
}

// text of the elements matching selector, read in the page
const texts = (page, selector) => page.$$eval(selector, (es) => es.map((e) => e.textContent));

before(async () => {
  // the live stream's feed is the front's own RabbitMQ consumer (docs/realtime.md)
  server = await startServer({ VENTROS_HTTP_AMQP_URL: process.env.VENTROS_AMQP_URL });
  c = await db();
  execFileSync('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-v', `demo_tenant=${TENANT}`, '-v', `other_tenant=${OTHER}`,
                        '-v', 'demo_login=console_demo_login', '-v', `demo_password=${PASSWORD}`,
                        '-f', path.join(ROOT, 'scripts/demo.sql')], { stdio: ['ignore', 'ignore', 'inherit'] });
  const rows = shell('demo_providers_up', RUN, TENANT, BASE, 'psql', '-h', `${RUN}/sock`, '-p', process.env.PGPORT, '-U', 'postgres');
  standins = path.join(RUN, 'standins.json');
  const secrets = Object.fromEntries(fs.readFileSync(path.join(RUN, 'demo_channels'), 'utf8').split('\n').filter(Boolean)
    .map((l) => l.split('=')));
  const ids = Object.fromEntries(rows.trim().split('\n').map((l) => l.split(' ')));
  waha = { channel: ids.WAHA, secret: secrets.WAHA_WEBHOOK_SECRET, url: `${BASE}/webhooks/waha/${ids.WAHA}` };
  const standinUrl = shell('standin_url', standins, 'waha').trim();
  await waitFor('the dispatcher to reach the WAHA stand-in', async () => {
    if (logOf('waha').some((l) => l.path === '/probe')) return true;
    await c.query('BEGIN');
    await c.query("SELECT set_config('ventros.tenant', $1, true)", [TENANT]);
    await c.query(`SELECT ventros.enqueue_http_request($1, 'GET', max_attempts => 1)`, [`${standinUrl}/probe`]);
    await c.query('COMMIT');
    await new Promise((ok) => setTimeout(ok, 100));
    return false;
  });
  browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true,
                                     args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
});

after(async () => {
  await browser?.close();
  if (standins) shell('standins_stop', RUN);
  await resetSystem(c, { 'ventros.http_allow_hosts': null });
  await c?.end();
  await server?.stop();
});

test('GET /console: the page, its files and nothing else, with a policy that keeps it to its own origin', async () => {
  for (const p of ['/console', '/console/', '/console/index.html']) {
    const r = await fetch(`${BASE}${p}`);
    assert.equal(r.status, 200, p);
    assert.match(r.headers.get('content-type'), /^text\/html/);
    assert.match(r.headers.get('content-security-policy'), /default-src 'none'.*connect-src 'self'/);
    assert.match(await r.text(), /<title>Ventros console<\/title>/);
  }
  assert.match((await fetch(`${BASE}/console/console.js`)).headers.get('content-type'), /^text\/javascript/);
  assert.match((await fetch(`${BASE}/console/console.css`)).headers.get('content-type'), /^text\/css/);
  // as sent, byte for byte (fetch would resolve the dot segments itself)
  for (const p of ['/console/nothing.js', '/console/../console/index.html', '/console/%2e%2e/etc/passwd',
                   '/console/index.html/', '/console//index.html', '/console/./index.html']) {
    const r = await rawGet(p);
    assert.equal(r.status, 404, p);
    assert.equal(JSON.parse(r.body).code, 'PGRST125', p);
  }
  const post = await fetch(`${BASE}/console`, { method: 'POST', body: '{}' });
  assert.equal(post.status, 405);
  assert.equal(post.headers.get('allow'), 'GET, HEAD');
});

test('a wrong password is refused on the page', async () => {
  const page = await browser.newPage();
  await page.goto(`${BASE}/console`);
  await page.type('#email', EMAIL);
  await page.type('#password', 'not the password');
  await page.click('#signin button[type=submit]');
  await until(page, 'the refusal', () => document.getElementById('signin-error').textContent.length > 0);
  assert.equal(await page.$eval('#app', (e) => e.hidden), true);
  await page.close();
});

test('sign in, an inbound message appears live, reply, the provider gets it, the reply turns delivered', async () => {
  const page = await browser.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  await page.setViewport({ width: 1280, height: 760 });
  await page.goto(`${BASE}/console`);
  await page.type('#email', EMAIL);
  await page.type('#password', PASSWORD);
  await page.click('#signin button[type=submit]');
  await until(page, 'signed in', () => !document.getElementById('app').hidden);
  assert.match(await page.$eval('#whoami', (e) => e.textContent), /Demo Agent/);
  await until(page, 'the stream open', () => document.getElementById('live').classList.contains('on'));
  await page.evaluate(() => { window.notReloaded = true; });

  // a customer writes: the conversation appears without a reload
  const from = `55119${String(Date.now()).slice(-8)}`;
  const r = await wahaWebhook(from, 'Oi! Vocês entregam no sábado?', 'Bia Console');
  assert.equal(r.status, 200);
  await until(page, 'the new conversation in the list', () => [...document.querySelectorAll('#conversations a')]
    .some((a) => a.textContent.includes('Bia Console')));
  assert.equal(await page.evaluate(() => window.notReloaded), true, 'the list was updated in place');

  // open it: the message, the contact panel
  await page.evaluate(() => [...document.querySelectorAll('#conversations a')].find((a) => a.textContent.includes('Bia Console')).click());
  await until(page, 'the message', () => [...document.querySelectorAll('.message')].some((m) => m.textContent.includes('entregam no sábado')));
  await until(page, 'the contact panel', () => document.querySelector('#contact h2') !== null);
  assert.match(await page.$eval('#contact h2', (e) => e.textContent), /Bia Console/);

  // reply
  // (the page redraws a conversation when its events arrive, keeping what is
  // typed: the form is found when it is submitted)
  await page.type('#reply-text', 'Entregamos sim, das 9h às 13h.');
  assert.equal(await page.$eval('#reply-text', (t) => t.value), 'Entregamos sim, das 9h às 13h.', 'what was typed is there');
  await page.$eval('#reply', (f) => f.requestSubmit());
  const sent = await waitFor('the reply at the WAHA stand-in', async () =>
    logOf('waha').find((l) => l.kind === 'request' && l.path === '/api/sendText' && l.body?.text === 'Entregamos sim, das 9h às 13h.'));
  assert.equal(sent.body.chatId, `${from}@c.us`);
  // the stand-in's delivery status comes back signed; the page shows it live
  await until(page, 'the reply delivered', () => [...document.querySelectorAll('.message.mine')]
    .some((m) => m.textContent.includes('das 9h às 13h') && m.dataset.status === 'delivered'));
  assert.equal(await page.evaluate(() => window.notReloaded), true, 'no reload all along');

  // tag the contact from the panel
  await page.type('#new-tag', 'sabado');
  assert.equal(await page.$eval('#new-tag', (t) => t.value), 'sabado', 'what was typed is there');
  await page.$eval('#tag-form', (f) => f.requestSubmit());
  await until(page, 'the tag', () => [...document.querySelectorAll('#tags .tag')].some((t) => t.textContent === 'sabado'));
  const [tagged] = (await c.query(`SELECT tags FROM ventros.contacts WHERE tenant_id = $1 AND name = 'Bia Console'`, [TENANT])).rows;
  assert.deepEqual(tagged.tags, ['sabado']);

  if (process.env.VENTROS_WRITE_DOCS === '1') await page.screenshot({ path: path.join(ROOT, 'docs/console.png') });
  assert.deepEqual(problems, []);
  await page.close();
});
