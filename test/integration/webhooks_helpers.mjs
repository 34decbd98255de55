// Helpers of the webhook end-to-end tests: a ventros-http of the test run
// (http_helpers.startServer), channels of every provider in tenants ta and
// tb with fresh secrets, and superuser queries to look at what the webhooks
// made.  Not a test file itself.
import crypto from 'node:crypto';
import { startServer, db, BASE } from './http_helpers.mjs';

export { BASE };
export const secret = (n = 24) => crypto.randomBytes(n).toString('hex');
const digits = (n) => Array.from(crypto.randomBytes(n), (b) => b % 10).join('').replace(/^0/, '1');

// config per contract §A; ids unique per run so that several files can share
// the database without meeting each other's channels.  Provider base URLs
// point at a closed loopback port: media downloads and profile lookups that
// inbound messages request never leave the machine.
export function channelConfigs() {
  return {
    waha: { type: 'waha', config: { base_url: 'http://127.0.0.1:9', session: 'acme-sales', api_key: secret(8), webhook_secret: secret() } },
    whatsapp: { type: 'whatsapp', config: { graph_base_url: 'http://127.0.0.1:9', phone_number_id: digits(15), waba_id: digits(15), access_token: secret(), app_secret: secret(), verify_token: secret(8) } },
    instagram: { type: 'instagram', config: { graph_base_url: 'http://127.0.0.1:9', ig_account_id: digits(17), access_token: secret(), app_secret: secret(), verify_token: secret(8) } },
    messenger: { type: 'messenger', config: { graph_base_url: 'http://127.0.0.1:9', page_id: digits(15), access_token: secret(), app_secret: secret(), verify_token: secret(8) } },
  };
}

// Creates a channel in a tenant; returns {id, tenant, type, config}.
export async function createChannel(c, tenant, type, config, name = `${type} ${secret(3)}`) {
  const [{ id }] = await asTenant(c, tenant, 'SELECT (ventros.create_channel($1, $2, config => $3)).id', [name, type, config]);
  return { id, tenant, type, config };
}

// A server and one channel per provider in tenants ta and tb.
// (100 deliveries at once share 4 pooled connections: on a slow machine the
// last ones wait a while, which is not what these tests are about)
export async function setup(env = {}) {
  // Processing inline (in accept_webhook's transaction): each answer means the
  // CRM rows are there.  webhooks_deferred.test.mjs covers the default.
  const server = await startServer({ VENTROS_HTTP_POOL_WAIT_MS: '60000', PGOPTIONS: '-c ventros.inbox_processing=inline', ...env });
  const c = await db();
  const channels = {};
  for (const t of ['ta', 'tb']) {
    channels[t] = {};
    for (const [provider, { type, config }] of Object.entries(channelConfigs()))
      channels[t][provider] = await createChannel(c, t, type, config);
  }
  return { server, c, channels, stop: async () => { await c.end(); await server.stop(); } };
}

// Rows of a tenant's table as the superuser sees them (RLS: the tenant set).
export async function asTenant(c, tenant, sql, params = []) {
  await c.query('BEGIN');
  try {
    await c.query("SELECT set_config('ventros.tenant', $1, true)", [tenant]);
    const r = await c.query(sql, params);
    await c.query('COMMIT');
    return r.rows;
  } catch (e) {
    await c.query('ROLLBACK');
    throw e;
  }
}

// The message a channel received with a provider id, with its contact and session.
export async function messageOf(c, ch, providerId) {
  const rows = await asTenant(c, ch.tenant, `
    SELECT m.*, ct.name AS contact_name, ct.phone AS contact_phone, s.contact_id AS session_contact_id,
           s.channel_id AS session_channel_id
    FROM ventros.messages m
    JOIN ventros.contacts ct ON ct.tenant_id = m.tenant_id AND ct.id = m.contact_id
    LEFT JOIN ventros.sessions s ON s.tenant_id = m.tenant_id AND s.id = m.session_id
    WHERE m.channel_id = $1 AND m.channel_message_id = $2 AND m.deleted_at IS NULL`, [ch.id, providerId]);
  return rows;
}

export async function countMessages(c, tenant, where = 'true', params = []) {
  const rows = await asTenant(c, tenant, `SELECT count(*)::int AS n FROM ventros.messages m WHERE ${where}`, params);
  return rows[0].n;
}

export async function inboxRows(c, ch, where = 'true', params = []) {
  return asTenant(c, ch.tenant, `SELECT * FROM ventros.inbox i WHERE i.channel_id = $1 AND (${where}) ORDER BY received_at, item_index`,
    [ch.id, ...params]);
}

export async function rejections(c, ch) {
  const rows = await asTenant(c, ch.tenant,
    'SELECT coalesce(sum(rejected), 0)::int AS n FROM ventros.channel_webhook_rejections WHERE channel_id = $1', [ch.id]);
  return rows[0].n;
}

// The contact holding an identity (type, value as normalised).
export async function contactsWithIdentity(c, tenant, type, value) {
  return asTenant(c, tenant, `
    SELECT ct.* FROM ventros.contact_identities i
    JOIN ventros.contacts ct ON ct.tenant_id = i.tenant_id AND ct.id = i.contact_id
    WHERE i.identity_type = $1 AND i.value = $2 AND i.deleted_at IS NULL AND ct.deleted_at IS NULL`, [type, value]);
}
