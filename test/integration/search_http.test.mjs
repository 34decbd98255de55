// Search over HTTP (sql/82_search.sql, docs/ai.md "Search"): /rpc/search and
// /rpc/search_contacts on a real ventros-http, as a tenant's agent and
// viewer: a Portuguese message found by a stemmed word, a transcript found
// by a word of it, a misspelt name, every page of a keyset walk once, the
// other tenant's token finding nothing, and bad input answered with the
// SQLSTATE's HTTP status and PostgREST's JSON error.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, http, token, db } from './http_helpers.mjs';

const T = 'srch_http';
const OTHER = 'srch_http_b';
let server;
let pg;

const as = (role, tenant = T) => ({ Authorization: `Bearer ${token(role, tenant)}` });

async function asTenant(sql, params = []) {
  await pg.query('BEGIN');
  try {
    await pg.query("SELECT set_config('ventros.tenant', $1, true)", [T]);
    const r = await pg.query(sql, params);
    await pg.query('COMMIT');
    return r.rows;
  } catch (e) {
    await pg.query('ROLLBACK');
    throw e;
  }
}

const ids = {};

before(async () => {
  server = await startServer();
  pg = await db();
  for (const [t, name] of [[T, 'Search HTTP'], [OTHER, 'Search HTTP B']]) {
    if ((await pg.query('SELECT 1 FROM ventros.projects WHERE tenant_id = $1', [t])).rowCount === 0) {
      await pg.query('SELECT ventros.create_tenant($1, $2)', [t, name]);
    }
  }
  ids.channel = (await asTenant("SELECT ventros_test.new_channel('waha') AS id"))[0].id;
  ids.maria = (await asTenant("SELECT id FROM ventros.create_contact('Maria Aparecida', phone => '+5511955554444', language => 'pt')"))[0].id;
  await asTenant("SELECT ventros.add_contact_identity($1, 'whatsapp', '5511955554444@c.us')", [ids.maria]);
  ids.message = (await asTenant(
    "SELECT id FROM ventros.receive_message($1, '5511955554444@c.us', 'As entregas atrasaram de novo na semana passada')",
    [ids.channel]))[0].id;
  const voice = (await asTenant(
    "SELECT id FROM ventros.receive_message($1, '5511955554444@c.us', content_type => 'voice', media_url => 'https://media.example.com/v.ogg')",
    [ids.channel]))[0].id;
  ids.enrichment = (await asTenant(
    `SELECT e.id FROM ventros.add_message_to_group($1) g, ventros.create_message_enrichment($1, g.id, 'whisper') c,
            ventros.start_message_enrichment(c.id, 1) s, ventros.complete_message_enrichment(c.id, 2, 'quero falar sobre o reembolso') e`,
    [voice]))[0].id;
  for (let i = 0; i < 12; i++) {
    await asTenant("SELECT ventros.receive_message($1, '5511955554444@c.us', $2)", [ids.channel, `pedido número ${i}`]);
  }
});

after(async () => {
  await pg?.end();
  await server?.stop();
});

test('POST /rpc/search: a stemmed Portuguese word finds the message, ranked, with its snippet', async () => {
  const r = await http('POST', '/rpc/search', { headers: as('ventros_agent'), body: { query: 'entrega atrasada' } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.length, 1);
  assert.equal(r.json[0].kind, 'message');
  assert.equal(r.json[0].id, ids.message);
  assert.ok(r.json[0].rank > 1, 'a full-text match');
  assert.match(r.json[0].snippet, /<b>entregas<\/b>/);
});

test('GET /rpc/search: the words of a transcript find its enrichment and message', async () => {
  const r = await http('GET', '/rpc/search?query=reembolso', { headers: as('ventros_viewer') });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json.map((h) => [h.kind, h.id]), [['enrichment', ids.enrichment]]);
  assert.ok(r.json[0].message_id);
});

test('POST /rpc/search_contacts: a misspelt name finds the contact', async () => {
  const r = await http('POST', '/rpc/search_contacts', { headers: as('ventros_agent'), body: { query: 'Aparecdia' } });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json.map((c) => [c.id, c.name, c.phone]), [[ids.maria, 'Maria Aparecida', '+5511955554444']]);
  assert.ok(r.json[0].rank < 1, 'a typo match ranks below 1');
  const phone = await http('POST', '/rpc/search_contacts', { headers: as('ventros_agent'), body: { query: '95555-4444' } });
  assert.deepEqual(phone.json.map((c) => c.id), [ids.maria], 'part of the phone');
});

test('the keyset cursor walks every hit once', async () => {
  const seen = [];
  let after;
  for (let page = 0; page < 10; page++) {
    const body = { query: 'pedido', kinds: ['message'], page_size: 5, ...(after ? { after } : {}) };
    const r = await http('POST', '/rpc/search', { headers: as('ventros_agent'), body });
    assert.equal(r.status, 200, r.text);
    seen.push(...r.json.map((h) => h.id));
    if (r.json.length < 5) break;
    after = r.json.at(-1).cursor;
  }
  assert.equal(seen.length, 12);
  assert.equal(new Set(seen).size, 12, 'no hit twice');
  const all = await http('POST', '/rpc/search', { headers: as('ventros_agent'), body: { query: 'pedido', kinds: ['message'], page_size: 50 } });
  assert.deepEqual(seen, all.json.map((h) => h.id), 'the pages in order are the one big page');
});

test('another tenant\'s token finds nothing', async () => {
  for (const q of ['entrega', 'reembolso', 'pedido', 'Maria']) {
    const r = await http('POST', '/rpc/search', { headers: as('ventros_admin', OTHER), body: { query: q, fuzzy: true } });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, [], q);
  }
  const c = await http('POST', '/rpc/search_contacts', { headers: as('ventros_admin', OTHER), body: { query: 'Maria' } });
  assert.deepEqual(c.json, []);
});

test('anonymous callers may not search', async () => {
  const r = await http('POST', '/rpc/search', { body: { query: 'pedido' } });
  assert.ok([401, 403].includes(r.status), r.text);
  assert.equal(r.json.code, '42501');
});

test('bad input: the SQLSTATE and its HTTP status', async () => {
  const cases = [
    [{ query: '' }, 400, '22023'],
    [{ query: 'x'.repeat(501) }, 413, '54000'],
    [{ query: 'pedido', after: 'not-a-cursor!' }, 400, '22P02'],
    [{ query: 'pedido', kinds: ['messages'] }, 400, '22023'],
    [{ query: 'pedido', page_size: 100000 }, 413, '54000'],
  ];
  for (const [body, status, code] of cases) {
    const r = await http('POST', '/rpc/search', { headers: as('ventros_agent'), body });
    assert.equal(r.status, status, `${JSON.stringify(body).slice(0, 60)}: ${r.text}`);
    assert.equal(r.json.code, code);
    assert.ok(r.json.message, 'PostgREST\'s JSON error has a message');
  }
});
