// ventros-http with RS256 pinned (VENTROS_JWT_PUBLIC_KEY_FILE): tokens of an
// issuer holding the private key are accepted; HS256 tokens — including the
// classic confusion of using the public key as an HMAC secret — are not.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { startServer, http, sign, b64url, AUDIENCE } from './http_helpers.mjs';

const RUN = process.env.VENTROS_RUN_DIR;
const { publicKey, privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const other = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const publicPem = publicKey.export({ type: 'spki', format: 'pem' });
const publicFile = path.join(RUN, 'http_test_rsa.pub');
const privateFile = path.join(RUN, 'http_test_rsa.key');
fs.writeFileSync(publicFile, publicPem);
fs.writeFileSync(privateFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });

function rs256(claims, key = privateKey, header = { alg: 'RS256', typ: 'JWT' }) {
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  return `${input}.${b64url(crypto.sign('sha256', Buffer.from(input), key))}`;
}
const claims = () => ({ role: 'ventros_viewer', tenant_id: 'tr', aud: AUDIENCE, exp: Math.floor(Date.now() / 1000) + 600 });

let server;
before(async () => {
  server = await startServer({ VENTROS_JWT_SECRET_FILE: '', VENTROS_JWT_PUBLIC_KEY_FILE: publicFile,
    VENTROS_JWT_PRIVATE_KEY_FILE: privateFile });
});
after(async () => { await server.stop(); });

const bearer = (t) => ({ Authorization: `Bearer ${t}` });

test('an RS256 token of the issuer is accepted', async () => {
  const r = await http('GET', '/contacts?select=name&order=name&limit=1', { headers: bearer(rs256(claims())) });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, [{ name: 'Ann' }]);
});

test('refused: HS256 (also with the public key as secret), another key, alg none, expired', async () => {
  for (const t of [
    sign(claims()),
    sign(claims(), { secret: publicPem }),
    sign(claims(), { secret: publicPem, header: { alg: 'RS256', typ: 'JWT' } }),
    rs256(claims(), other.privateKey),
    `${b64url(JSON.stringify({ alg: 'none' }))}.${b64url(JSON.stringify(claims()))}.`,
    rs256({ ...claims(), exp: 1 }),
    rs256({ ...claims(), role: 'postgres' }),
  ]) {
    const r = await http('GET', '/contacts', { headers: bearer(t) });
    assert.equal(r.status, 401, r.text);
  }
});

test('login grants are signed RS256 and accepted back', async () => {
  const email = `rsa${Date.now()}@example.com`;
  const reg = await http('POST', '/rpc/register', { body: { email, password: 'correct horse', name: 'RSA' } });
  assert.equal(reg.status, 200, reg.text);
  const header = JSON.parse(Buffer.from(reg.json.access_token.split('.')[0], 'base64url'));
  assert.equal(header.alg, 'RS256');
  const me = await http('GET', '/rpc/me', { headers: bearer(reg.json.access_token) });
  assert.equal(me.json.email, email);
});

test('without the private key, sign-in is off (501) and verification still works', async () => {
  await server.stop();
  server = await startServer({ VENTROS_JWT_SECRET_FILE: '', VENTROS_JWT_PUBLIC_KEY_FILE: publicFile });
  const r = await http('POST', '/rpc/login', { body: { email: 'nobody@example.com', password: 'x' } });
  assert.equal(r.status, 401, 'credentials are still checked');
  const reg = await http('POST', '/rpc/register', { body: { email: `off${Date.now()}@example.com`, password: 'correct horse', name: 'Off' } });
  assert.equal(reg.status, 501, reg.text);
  const ok = await http('GET', '/contacts?select=name&limit=1', { headers: bearer(rs256(claims())) });
  assert.equal(ok.status, 200);
});
