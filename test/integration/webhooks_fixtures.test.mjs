// Every payload of test/fixtures/webhooks/*.json (channels.md's examples)
// over real HTTP, byte for byte as the files hold them, signed as its
// provider signs: each is answered 200 and accepted, none fails to process,
// the messages they carry exist once, and a second delivery of everything is
// answered "duplicate".  The channels carry the fixtures' own ids (phone
// number id, Instagram account id, Page id, WAHA session).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startServer, db, ROOT } from './http_helpers.mjs';
import { BASE, asTenant, createChannel, secret } from './webhooks_helpers.mjs';
import { post, webhookUrl, wahaHeaders, metaHeaders } from './fakes/emit.mjs';

const DIR = path.join(ROOT, 'test/fixtures/webhooks');
const TENANT = 'twf';
const files = fs.readdirSync(DIR).filter((f) => f.endsWith('.json')).sort();
// messages before the receipts that refer to them
const order = (f) => (/(ack|status|read|delivery|reaction|edited|revoked|deleted)/.test(f) ? 1 : 0);
files.sort((a, b) => order(a) - order(b) || a.localeCompare(b));

let server;
let c;
const ch = {};
before(async () => {
  server = await startServer({ PGOPTIONS: '-c ventros.inbox_processing=inline' });
  c = await db();
  await c.query("SELECT ventros.create_tenant($1, 'Fixtures Inc.') WHERE NOT EXISTS (SELECT 1 FROM ventros.projects WHERE tenant_id = $1)", [TENANT]);
  ch.waha = await createChannel(c, TENANT, 'waha', { session: 'acme-sales', webhook_secret: secret() });
  const meta = { app_secret: secret(), verify_token: secret(8), access_token: secret() };
  ch.whatsapp = await createChannel(c, TENANT, 'whatsapp', { ...meta, phone_number_id: '106540352242922', waba_id: '102290129340398' });
  ch.instagram = await createChannel(c, TENANT, 'instagram', { ...meta, ig_account_id: '17841400000000000' });
  ch.messenger = await createChannel(c, TENANT, 'messenger', { ...meta, page_id: '106000000000001' });
});
after(async () => { await c.end(); await server.stop(); });

function deliver(file) {
  const provider = file.split('_')[0];
  const body = fs.readFileSync(path.join(DIR, file));
  const channel = ch[provider];
  const headers = provider === 'waha'
    ? wahaHeaders(body, { hmacKey: channel.config.webhook_secret })
    : metaHeaders(body, { appSecret: channel.config.app_secret });
  return post(webhookUrl(BASE, provider, channel.id), body, headers);
}

test('the fixtures exist for every provider', () => {
  for (const p of ['waha', 'whatsapp', 'instagram', 'messenger'])
    assert.ok(files.filter((f) => f.startsWith(`${p}_`)).length >= 4, p);
});

test('every fixture: 200 accepted, stored byte for byte, no item failed', async () => {
  let accepted = 0;
  for (const file of files) {
    const r = await deliver(file);
    assert.equal(r.status, 200, `${file}: ${r.text}`);
    // a fixture may repeat an item of an earlier one (a batch holds a status also sent alone)
    assert.ok(['accepted', 'duplicate'].includes(r.json.status), file);
    if (r.json.status === 'duplicate') continue;
    accepted++;
    const rows = await asTenant(c, TENANT, 'SELECT status, last_error, body FROM ventros.inbox WHERE delivery_id = $1 ORDER BY item_index', [r.json.inbox_id]);
    assert.ok(rows.length >= 1, file);
    assert.ok(Buffer.compare(rows[0].body, fs.readFileSync(path.join(DIR, file))) === 0, `${file}: raw body kept`);
    for (const row of rows) assert.notEqual(row.status, 'failed', `${file}: ${row.last_error}`);
  }
  assert.ok(accepted >= files.length - 2, `${accepted} of ${files.length} accepted`);
});

test('the fixtures\' messages exist once, in the fixtures\' tenant only', async () => {
  const ids = [
    ['whatsapp', JSON.parse(fs.readFileSync(path.join(DIR, 'whatsapp_text.json'))).entry[0].changes[0].value.messages[0].id],
    ['waha', JSON.parse(fs.readFileSync(path.join(DIR, 'waha_text.json'))).payload.id],
    ['instagram', JSON.parse(fs.readFileSync(path.join(DIR, 'instagram_text.json'))).entry[0].messaging[0].message.mid],
    ['messenger', JSON.parse(fs.readFileSync(path.join(DIR, 'messenger_text.json'))).entry[0].messaging[0].message.mid],
  ];
  for (const [p, id] of ids) {
    // (deleted ones too: a revoke fixture deletes the WAHA text)
    const here = await c.query('SELECT count(*)::int AS n FROM ventros.messages WHERE channel_message_id = $1 AND tenant_id = $2 AND channel_id = $3', [id, TENANT, ch[p].id]);
    assert.equal(here.rows[0].n, 1, `${p} ${id}`);
    const elsewhere = await c.query('SELECT count(*)::int AS n FROM ventros.messages WHERE channel_message_id = $1 AND tenant_id <> $2', [id, TENANT]);
    assert.equal(elsewhere.rows[0].n, 0);
  }
});

test('every fixture delivered again: 200 duplicate', async () => {
  for (const file of files) {
    const r = await deliver(file);
    assert.equal(r.status, 200, `${file}: ${r.text}`);
    assert.deepEqual(r.json, { status: 'duplicate' }, file);
  }
});
