// ventros-http with an issuer's JWK set (VENTROS_JWT_JWKS_FILE): RS256
// pinned, the key chosen by the token's kid; keys of other types are skipped.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { startServer, http, sign, b64url, AUDIENCE } from './http_helpers.mjs';

const RUN = process.env.VENTROS_RUN_DIR;
const k1 = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const k2 = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const stranger = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = (pair, extra) => ({ ...pair.publicKey.export({ format: 'jwk' }), ...extra });
const jwksFile = path.join(RUN, 'http_test_jwks.json');
fs.writeFileSync(jwksFile, JSON.stringify({
  keys: [
    jwk(ec, { kid: 'ec', use: 'sig' }),
    jwk(k1, { kid: 'k1', use: 'sig', alg: 'RS256' }),
    jwk(k2, { kid: 'k2' }),
    jwk(stranger, { kid: 'enc', use: 'enc' }),
  ],
}, null, 2));

function rs256(key, header) {
  const claims = { role: 'ventros_viewer', tenant_id: 'tr', aud: AUDIENCE, exp: Math.floor(Date.now() / 1000) + 600 };
  const input = `${b64url(JSON.stringify({ alg: 'RS256', typ: 'JWT', ...header }))}.${b64url(JSON.stringify(claims))}`;
  return `${input}.${b64url(crypto.sign('sha256', Buffer.from(input), key))}`;
}

let server;
before(async () => {
  server = await startServer({ VENTROS_JWT_SECRET_FILE: '', VENTROS_JWT_JWKS_FILE: jwksFile });
});
after(async () => { await server.stop(); });

const get = (t) => http('GET', '/contacts?select=name&order=name&limit=1', { headers: { Authorization: `Bearer ${t}` } });

test('tokens signed by any RSA key of the set, named by kid, are accepted', async () => {
  for (const [pair, kid] of [[k1, 'k1'], [k2, 'k2']]) {
    const r = await get(rs256(pair.privateKey, { kid }));
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, [{ name: 'Ann' }]);
  }
});

test('refused: wrong kid for the key, unknown kid, no kid among several, an encryption key, HS256, alg none', async () => {
  const claims = { role: 'ventros_viewer', tenant_id: 'tr', aud: AUDIENCE, exp: Math.floor(Date.now() / 1000) + 600 };
  for (const t of [
    rs256(k1.privateKey, { kid: 'k2' }),
    rs256(k1.privateKey, { kid: 'nope' }),
    rs256(k1.privateKey, {}),
    rs256(stranger.privateKey, { kid: 'enc' }),
    rs256(stranger.privateKey, { kid: 'k1' }),
    sign(claims, { header: { alg: 'HS256', typ: 'JWT', kid: 'k1' } }),
    `${b64url(JSON.stringify({ alg: 'none', kid: 'k1' }))}.${b64url(JSON.stringify(claims))}.`,
  ]) {
    const r = await get(t);
    assert.equal(r.status, 401, r.text);
  }
  const r = await get(rs256(k1.privateKey, { kid: 'nope' }));
  assert.match(r.json.message, /kid/);
});

test('without a private key, sign-in is off: grants come from the issuer (501)', async () => {
  const reg = await http('POST', '/rpc/register', { body: { email: `jwks${Date.now()}@example.com`, password: 'correct horse', name: 'Jwks' } });
  assert.equal(reg.status, 501, reg.text);
  assert.match(reg.json.message, /external issuer/);
});
