// Helpers of the ventros-http integration tests: a test login and two
// tenants with known contacts, a ventros-http process of the test run, and
// HS256 tokens signed with its secret.  Not a test file itself.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const PORT = Number(process.env.VENTROS_HTTP_PORT || 3039);
export const BASE = `http://127.0.0.1:${PORT}`;
const RUN = process.env.VENTROS_RUN_DIR || path.join(ROOT, '.run/test');
export const SECRET = 'test-secret-' + 'x'.repeat(40);
export const AUDIENCE = 'ventros-test';
export const TENANTS = ['ta', 'tb'];
// a tenant only read by the tests, so that their expectations hold whatever ran before
export const READ_TENANT = 'tr';
export const ROLES = ['ventros_admin', 'ventros_agent', 'ventros_viewer', 'ventros_anon'];

// Contacts of each tenant: name, email, phone, tags, language.
export const PEOPLE = [
  ['Ann', 'ann', '+5511999990001', ['vip', 'lead'], 'en'],
  ['Bob', 'bob', '+5511999990002', ['lead'], 'pt'],
  ['Carla', null, '+5511999990003', [], 'pt'],
  ['Dan', 'dan', null, ['vip'], 'en'],
  ['Eve', 'eve', '+5511999990005', [], 'es'],
];

export function b64url(buf) {
  return Buffer.from(buf).toString('base64').replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

export function sign(payload, { secret = SECRET, header = { alg: 'HS256', typ: 'JWT' } } = {}) {
  const h = b64url(JSON.stringify(header));
  const p = b64url(JSON.stringify(payload));
  const s = b64url(crypto.createHmac('sha256', secret).update(`${h}.${p}`).digest());
  return `${h}.${p}.${s}`;
}

export function token(role, tenant, extra = {}) {
  const now = Math.floor(Date.now() / 1000);
  const claims = { role, sub: `test-${role}`, aud: AUDIENCE, iat: now, exp: now + 600, ...extra };
  if (tenant) claims.tenant_id = tenant;
  return sign(claims);
}

export function auth(role, tenant) {
  return role === 'ventros_anon' && !tenant ? {} : { Authorization: `Bearer ${token(role, tenant)}` };
}

export async function db() {
  const client = new pg.Client({ connectionString: process.env.VENTROS_PGURL });
  await client.connect();
  return client;
}

async function seed() {
  const c = await db();
  try {
    await c.query(`DO $$ BEGIN
      IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ventros_http_test') THEN
        CREATE ROLE ventros_http_test LOGIN IN ROLE ventros_authenticator PASSWORD 'http-test-password';
      END IF; END $$`);
    for (const t of [...TENANTS, READ_TENANT]) {
      await c.query('BEGIN');
      const exists = await c.query('SELECT 1 FROM ventros.projects WHERE tenant_id = $1', [t]);
      if (exists.rowCount === 0) {
        await c.query('SELECT ventros.create_tenant($1, $2)', [t, `${t} Inc.`]);
        await c.query("SELECT set_config('ventros.tenant', $1, true)", [t]);
        for (const [name, email, phone, tags, language] of PEOPLE) {
          await c.query('SELECT ventros.create_contact($1, phone => $2, email => $3, tags => $4, language => $5)',
            [name, phone, email && `${email}@${t}.example`, tags, language]);
        }
      }
      await c.query('COMMIT');
    }
  } finally {
    await c.end();
  }
}

// The front under test: VENTROS_HTTP_BIN (scripts/test sets it to the
// ASan+UBSan build, src/http/ventros-http-asan, for its sanitizer pass).
export const HTTP_BIN = process.env.VENTROS_HTTP_BIN || path.join(ROOT, 'src/http/ventros-http');
// What a sanitizer prints when it finds something (ASAN_OPTIONS halt_on_error
// and -fno-sanitize-recover make the front stop there, too).
export const SANITIZER_REPORT = /ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:/;

// Starts ventros-http for this test file; resolves once /health answers.
// stop() throws when the front's stderr holds a sanitizer report.
export async function startServer(env = {}) {
  // nothing may answer on our port yet: the tests must talk to their own server
  const stranger = await fetch(`${BASE}/health`).then(() => true, () => false);
  if (stranger) throw new Error(`port ${PORT} is already in use`);
  await seed();
  const secretFile = path.join(RUN, 'http_test_secret');
  fs.writeFileSync(secretFile, SECRET + '\n', { mode: 0o600 });
  const child = spawn(HTTP_BIN, [], {
    env: {
      ...process.env,
      VENTROS_HTTP_DB: `host=${RUN}/sock port=${process.env.PGPORT} dbname=ventros user=ventros_http_test password=http-test-password`,
      VENTROS_HTTP_PORT: String(PORT),
      VENTROS_JWT_SECRET_FILE: secretFile,
      VENTROS_JWT_AUD: AUDIENCE,
      VENTROS_HTTP_POOL: '4',
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const log = [];
  child.stderr.on('data', (d) => log.push(d.toString()));
  const exited = new Promise((resolve) => child.on('exit', resolve));
  for (let i = 0; i < 200; i++) {
    try {
      const r = await fetch(`${BASE}/health`);
      if (r.ok) {
        const stop = async () => {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
          await exited;
          const text = log.join('');
          if (SANITIZER_REPORT.test(text)) throw new Error('ventros-http: sanitizer report\n' + text.slice(-8000));
        };
        return { child, log, stop };
      }
    } catch { /* not listening yet */ }
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGKILL');
  throw new Error('ventros-http did not start: ' + log.join(''));
}

export async function http(method, p, { headers = {}, body, raw } = {}) {
  const init = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = raw ? body : JSON.stringify(body);
    if (!init.headers['Content-Type']) init.headers['Content-Type'] = 'application/json';
  }
  const r = await fetch(BASE + p, init);
  const text = await r.text();
  let json;
  try { json = text ? JSON.parse(text) : undefined; } catch { json = undefined; }
  return { status: r.status, headers: r.headers, text, json };
}
