// A tenant whose WAHA channel talks to a local stand-in, over a front that
// processes webhooks inline, with the dispatcher allowed to reach the
// stand-in: where the tests of automation rules, assignment and journeys
// start from.  close() undoes it.
import crypto from 'node:crypto';
import { startServer, db } from './http_helpers.mjs';
import { startWaha } from './fakes/waha.mjs';
import { asTenant } from './webhooks_helpers.mjs';
import { alterSystem, resetSystem } from './settings.mjs';

const SETTINGS = {
  'ventros.http_allow_hosts': '127.0.0.1/32',
  'ventros.http_backoff_min': '200ms',
  'ventros.http_backoff_max': '1000',
};

export async function wahaTenant({ tenant, name, channelName, apiKey }) {
  const server = await startServer({ PGOPTIONS: '-c ventros.inbox_processing=inline' });
  const c = await db();
  await alterSystem(c, SETTINGS);
  await c.query(`SELECT ventros.create_tenant($1, $2) WHERE NOT EXISTS
                   (SELECT 1 FROM ventros.projects WHERE tenant_id = $1)`, [tenant, name]);
  const waha = await startWaha({ apiKey });
  const secret = crypto.randomBytes(16).toString('hex');
  const q = (sql, params = []) => asTenant(c, tenant, sql, params);
  const [{ id: channel }] = await q(`SELECT id FROM ventros.create_channel($2, 'waha', config => $1)`,
    [{ base_url: waha.url, session: 'acme-sales', api_key: apiKey, webhook_secret: secret }, channelName]);
  return {
    server, c, waha, secret, q, channel,
    async close() {
      await resetSystem(c, SETTINGS);
      await c.end();
      await server.stop();
      await waha.close();
    },
  };
}
