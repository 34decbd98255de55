// A provider added by registry rows alone (ventros.inbound_providers,
// ventros.channel_providers, a kind in ventros.channel_types) and functions
// defined here, never named in Ventros' code: its webhooks reach
// POST /webhooks/testprov/<channel_id> through the front, are verified by its
// function (a bad or missing signature refused with 401 and counted), split
// into items and processed into a message.  Proves that no provider name is
// hard-coded in the mechanism (front, accept_webhook, inbox_process).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { startServer, db, BASE } from './http_helpers.mjs';
import { createChannel, asTenant, inboxRows, rejections, messageOf, secret } from './webhooks_helpers.mjs';
import { post, handshake, webhookUrl } from './fakes/emit.mjs';

// The provider: HMAC-SHA256 hex of the body with config.secret in
// X-Testprov-Signature; a body {"messages": [{id, from, text}, ...]}, one
// item per message; each item a text message from its sender.
const PROVIDER_SQL = `
CREATE SCHEMA IF NOT EXISTS testprov;
CREATE OR REPLACE FUNCTION testprov.verify(config jsonb, headers jsonb, body bytea) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN headers->>'x-testprov-signature' IS NULL THEN 'missing_signature'
                WHEN headers->>'x-testprov-signature' = encode(ventros.webhook_hmac(body, config->>'secret', 'sha256'), 'hex')
                THEN NULL
                ELSE 'invalid_signature' END
$$;
CREATE OR REPLACE FUNCTION testprov.split(config jsonb, doc jsonb, body bytea, headers jsonb)
RETURNS SETOF ventros.inbox_item LANGUAGE sql IMMUTABLE AS $$
    SELECT ROW('message', 'msg:' || (m->>'id'), m, NULL, 'received', NULL)::ventros.inbox_item
    FROM jsonb_array_elements(doc->'messages') m
$$;
CREATE OR REPLACE FUNCTION testprov.process(r ventros.inbox, ch ventros.channels) RETURNS ventros.inbox_outcome
LANGUAGE sql AS $$
    SELECT ventros.inbound_message(ch, r.item->>'from', false, r.item->>'id', 'text', r.item->>'text', now())
$$;
CREATE OR REPLACE FUNCTION testprov.send(ch ventros.channels, m ventros.messages) RETURNS jsonb
LANGUAGE sql AS $$ SELECT NULL::jsonb $$;
CREATE OR REPLACE FUNCTION testprov.sent_id(answer jsonb) RETURNS text LANGUAGE sql AS $$ SELECT answer->>'id' $$;
SELECT ventros.register_inbound_provider('testprov', 'testprov.verify(jsonb, jsonb, bytea)',
           'testprov.split(jsonb, jsonb, bytea, jsonb)', 'testprov.process(ventros.inbox, ventros.channels)');
SELECT ventros.register_channel_provider('testprov', 'testprov', 'testprov.send(ventros.channels, ventros.messages)',
           'testprov.sent_id(jsonb)');
BEGIN;
SELECT set_config('ventros.tenant', 'ventros', true);
INSERT INTO ventros.channel_types (tenant_id, type_id, name, description, provider)
SELECT 'ventros', 99, 'testprov', 'Test-only provider', 'testprov'
WHERE NOT EXISTS (SELECT 1 FROM ventros.channel_types WHERE tenant_id = 'ventros' AND name = 'testprov');
-- as the install's own kinds: no event for the system catalogue
DELETE FROM ventros.outbox WHERE tenant_id = 'ventros' AND aggregate_type = 'channel_type';
COMMIT;
`;

const sign = (body, key) => crypto.createHmac('sha256', key).update(body).digest('hex');
const deliver = (ch, doc, key = ch.config.secret) => {
  const body = JSON.stringify(doc);
  return post(webhookUrl(BASE, 'testprov', ch.id), body,
    { 'Content-Type': 'application/json', ...(key ? { 'X-Testprov-Signature': sign(body, key) } : {}) });
};

let server;
let c;
let ch;
before(async () => {
  // processing inline: the answer means the message is there
  server = await startServer({ PGOPTIONS: '-c ventros.inbox_processing=inline' });
  c = await db();
  await c.query(PROVIDER_SQL);
  ch = await createChannel(c, 'ta', 'testprov', { secret: secret() });
});
after(async () => {
  await c.end();
  await server.stop();
});

test('a signed delivery is verified, split into items and processed into messages', async () => {
  const ids = [`tp-${secret(6)}`, `tp-${secret(6)}`];
  const r = await deliver(ch, { messages: [{ id: ids[0], from: '+5511977770001', text: 'hello from testprov' },
    { id: ids[1], from: '+5511977770001', text: 'and again' }] });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.status, 'accepted');
  const rows = await inboxRows(c, ch);
  assert.deepEqual(rows.map((x) => [x.provider, x.event, x.dedupe_key, x.status]),
    [['testprov', 'message', `msg:${ids[0]}`, 'processed'], ['testprov', 'message', `msg:${ids[1]}`, 'processed']]);
  const [m] = await messageOf(c, ch, ids[0]);
  assert.equal(m.text, 'hello from testprov');
  assert.equal(m.from_me, false);
  assert.equal(m.contact_phone, '+5511977770001');
  assert.equal(rows[0].message_id, m.id);
  // the same delivery again: acknowledged, stored once
  const again = await deliver(ch, { messages: [{ id: ids[0], from: '+5511977770001', text: 'hello from testprov' }] });
  assert.deepEqual([again.status, again.json], [200, { status: 'duplicate' }]);
});

test('a wrong or missing signature is refused (401) and counted; nothing is stored', async () => {
  const before = (await inboxRows(c, ch)).length;
  const id = `tp-${secret(6)}`;
  const doc = { messages: [{ id, from: '+5511977770002', text: 'forged' }] };
  const wrong = await deliver(ch, doc, secret());
  assert.deepEqual([wrong.status, wrong.json], [401, { error: 'invalid_signature' }]);
  const missing = await deliver(ch, doc, null);
  assert.deepEqual([missing.status, missing.json], [401, { error: 'invalid_signature' }]);
  assert.equal(await rejections(c, ch), 2);
  const [{ last_reason: reason }] = await asTenant(c, 'ta',
    'SELECT last_reason FROM ventros.channel_webhook_rejections WHERE channel_id = $1', [ch.id]);
  assert.equal(reason, 'missing_signature');
  assert.equal((await inboxRows(c, ch)).length, before);
  assert.deepEqual(await messageOf(c, ch, id), []);
});

test('the provider serves its own channel kind only; no handshake without a challenge function; unregistered names are 404', async () => {
  const body = JSON.stringify({ messages: [] });
  for (const p of ['waha', 'whatsapp', 'nosuchprov']) {
    const r = await post(webhookUrl(BASE, p, ch.id), body, { 'X-Testprov-Signature': sign(body, ch.config.secret) });
    assert.deepEqual([r.status, r.json], [404, { error: 'channel_not_found' }], p);
  }
  assert.equal((await handshake(BASE, 'testprov', ch.id, { token: 'x', challenge: '1' })).status, 403);
  assert.equal((await handshake(BASE, 'nosuchprov', ch.id, { token: 'x', challenge: '1' })).status, 404);
});
