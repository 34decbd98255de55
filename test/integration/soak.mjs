// The standing fault proof (docs/reliability.md): a mixed workload while the
// harness breaks what it runs on, then a count of what arrived.
//
// Workload:
//   - commands over SQL: writers updating a tenant's contacts (one
//     contact.updated event per commit, published by the outbox publisher);
//   - commands over HTTP: PATCH /contacts through ventros-http (the front)
//     with a tenant admin's token, on contacts of their own, each retried
//     until answered 200 (a 409 after an attempt whose answer was lost reads
//     the version again); every command answered 200 must be in the outbox
//     after the faults (lost, must be 0);
//   - webhooks in: WAHA webhooks posted to the front as a provider would,
//     each until answered 200, processed by the inbox processors (deferred);
//     every accepted one must become one message (lost, must be 0);
//   - sends out: HTTP requests queued for the dispatcher
//     (ventros.enqueue_http_request) to a recording fake provider.
// The publisher reaches the broker, and the dispatcher the provider, through
// TCP proxies of our own (fakes/tcp_proxy.mjs).
// Faults, spread evenly over the writes, one at a time:
//   broker-kill   kill -9 of the RabbitMQ node, then started again
//   hang          kill -STOP of the node past the publisher's heartbeat, then -CONT
//   worker-kill   pg_terminate_backend of the outbox publisher, the HTTP
//                 dispatcher and an inbox processor, in turn
//   pg-restart    pg_ctl restart -m immediate (a crash: no shutdown checkpoint)
//   proxy-cut     both proxies reset every connection
//   proxy-stall   both proxies hold every byte past the heartbeat, then let go
// A consumer (soak_consumer.mjs: amqplib, acking after it counts,
// reconnecting after faults) reads a durable queue bound to every event:
// per event id of the outbox, lost (must be 0) and duplicates (reported);
// order violations (orderChecker: per aggregate, first arrivals in outbox
// order, versions never back nor skipped; must be 0); phantoms, events a
// consumer got that the outbox no longer has (a crash took back what was
// published; must be 0).  Sends: lost (must be 0) and duplicates at the
// provider.  Webhooks: accepted ones without their message (lost, must be
// 0), and messages stored twice.
//
// runSoak() is used through `node test/integration/soak.mjs --events N ...`
// by soak_short.test.mjs (scripts/test) and bench/soak.sh; the process ends
// by itself once it has printed its result (nothing left open).
// Needs the environment of scripts/test (VENTROS_PGURL, VENTROS_AMQP_URL,
// VENTROS_AMQP_PORT, VENTROS_RUN_DIR, VENTROS_HTTP_PORT).
import amqp from 'amqplib';
import { startConsumer, readyIn } from './soak_consumer.mjs';
import { fileURLToPath } from 'node:url';
import {
  AMQP_URL, AMQP_PORT, client, until, restartPublisher, sleep, brokerStartAsync, brokerSignal, pgRestartAsync,
} from './outbox_helpers.mjs';
import { alterSystem } from './settings.mjs';
import { startRecorder } from './fakes/recorder.mjs';
import { startTcpProxy } from './fakes/tcp_proxy.mjs';
import { emitWaha, wahaMessage } from './fakes/emit.mjs';
import { startServer, BASE, auth } from './http_helpers.mjs';
import { createChannel, secret } from './webhooks_helpers.mjs';

const HEARTBEAT_S = 2;
const WORKERS = ['ventros outbox publisher', 'ventros http dispatcher', 'ventros inbox processor'];

// A client that comes back after a restart: every query retried on a new
// connection (set up by init) until it succeeds (bounded).
function resilient(init = null) {
  let c = null;
  return {
    async query(sql, params) {
      for (let i = 0; ; i++) {
        try {
          if (!c) {
            c = await client();
            if (init) await c.query(init);
          }
          return await c.query(sql, params);
        } catch (e) {
          try { await c?.end(); } catch (e2) { /* gone */ }
          c = null;
          if (i > 600) throw e;
          await sleep(100);
        }
      }
    },
    async end() { try { await c?.end(); } catch (e) { /* gone */ } },
  };
}

export async function runSoak({
  events = 3000, brokerKills = 1, hangs = 1, workerKills = 3, pgRestarts = 1, proxyCuts = 2, proxyStalls = 1,
  sends = 200, webhooks = 0, commands = 0, writers = 4, aggregates = 50, commandAggregates = 10, tenant = 'soak',
  log = (s) => console.log(`# ${s}`),
} = {}) {
  const started = Date.now();
  const db = resilient();
  const queue = `ventros.soak.${tenant}`;
  const provider = await startRecorder();
  const providerProxy = await startTcpProxy({ target: provider.port });
  const brokerProxy = await startTcpProxy({ target: Number(AMQP_PORT) });
  const proxied = new URL(AMQP_URL);
  proxied.port = String(brokerProxy.port);
  const settings = {
    'ventros.amqp_url': proxied.toString(),
    'ventros.outbox_heartbeat': `${HEARTBEAT_S}s`,
    'ventros.outbox_confirm_timeout': '5s',
    'ventros.outbox_backoff_min': '50ms',
    'ventros.outbox_backoff_max': '1s',
    'ventros.outbox_max_attempts': '1000000',
    'ventros.http_allow_hosts': '127.0.0.1/32',
    'ventros.http_backoff_min': '100ms',
    'ventros.http_backoff_max': '1000',
    'ventros.http_timeout': '3000',
    'ventros.http_connect_timeout': '1000',
  };
  const faults = { 'broker-kill': 0, hang: 0, 'worker-kill': 0, 'pg-restart': 0, 'proxy-cut': 0, 'proxy-stall': 0 };
  let consumer = null;
  let stopWriters = null;
  let front = null;
  try {
    const admin = await client();
    try {
      await admin.query(`SELECT ventros.create_tenant($1, 'Soak') WHERE NOT EXISTS (SELECT FROM ventros.projects WHERE tenant_id = $1)`, [tenant]);
      await alterSystem(admin, settings);
      await restartPublisher(admin); // the settings in effect (outbox_helpers.setConf)
    } finally {
      await admin.end();
    }
    // the queue exists before the first event
    {
      const conn = await amqp.connect(AMQP_URL);
      const ch = await conn.createChannel();
      await ch.assertExchange('ventros.events', 'topic', { durable: true });
      await ch.assertQueue(queue, { durable: true });
      await ch.purgeQueue(queue);
      await ch.bindQueue(queue, 'ventros.events', '#');
      await conn.close();
    }
    const since = (await db.query('SELECT coalesce(max(seq), 0) AS s FROM ventros.outbox')).rows[0].s;
    const setup = await client();
    await setup.query(`SET ventros.tenant = '${tenant}'`);
    // emails of this run: a run again in the same database makes new contacts
    const run = Date.now().toString(36);
    const ids = (await setup.query(`SELECT (ventros.create_contact('Soak ' || g, email => 'soak' || g || '.' || $3 || '@' || $2 || '.example')).id
                                    FROM generate_series(1, $1) g`, [aggregates, tenant, run])).rows.map((r) => r.id);
    // the HTTP commands' own contacts: no SQL writer conflicts with them
    const commandIds = (await setup.query(`SELECT (ventros.create_contact('Soak HTTP ' || g)).id
                                           FROM generate_series(1, $1) g`, [commands > 0 ? commandAggregates : 0]))
      .rows.map((r) => r.id);
    await setup.end();
    // the front, and a WAHA channel whose webhooks it takes (deferred processing)
    const wahaSecret = secret();
    let channel;
    if (webhooks > 0 || commands > 0)
      front = await startServer({ VENTROS_HTTP_POOL_WAIT_MS: '60000' });
    if (webhooks > 0) {
      const c = await client();
      channel = await createChannel(c, tenant, 'waha', { base_url: 'http://127.0.0.1:9', session: 'acme-sales',
        api_key: secret(8), webhook_secret: wahaSecret }, `Soak WAHA ${secret(3)}`);
      await c.end();
    }
    consumer = startConsumer(queue, tenant);

    // writers: one event per commit, until `events` committed
    let committed = 0;
    let sent = 0;
    const sendIds = [];
    let stop = false;
    let sendError = null;
    let allowed = 0; // commits the writers may reach: paced by the faults (below)
    stopWriters = () => { stop = true; };
    const work = Array.from({ length: writers }, async (_, w) => {
      const c = resilient(`SET ventros.tenant = '${tenant}'`);
      let i = 0;
      while (!stop && committed < events) {
        // no further ahead of the faults than the next one's place
        while (!stop && committed >= allowed) await sleep(20);
        if (stop) break;
        const id = ids[(i++ * writers + w) % ids.length];
        try {
          // a restart between the commit and its answer: the outcome is
          // unknown, the count below comes from the outbox itself
          await c.query('UPDATE ventros.contacts SET name = $2, version = version WHERE id = $1', [id, `Soak ${w}.${i}`]);
          committed++;
        } catch (e) { /* retried by the next round */ }
        // a send every events/sends commits
        if (w === 0 && sent < sends && committed >= (sent * events) / sends) {
          const n = sent++;
          try {
            const r = await c.query(`SELECT ventros.enqueue_http_request($1, 'POST', $2::jsonb, convert_to('soak', 'UTF8'),
                                       max_attempts => 100) AS id`,
            [`http://127.0.0.1:${providerProxy.port}/send`, JSON.stringify({ 'X-N': String(n) })]);
            sendIds.push(r.rows[0].id);
          } catch (e) {
            sent--;
            if (!sendError) log(`a send could not be queued: ${(sendError = e.message)}`);
          }
        }
        if (i % 50 === 0) await sleep(1); // a steady stream, room for the faults
      }
      await c.end();
    });

    // the faults, spread evenly over the writes, kinds interleaved
    // webhooks: one every events/webhooks commits, each posted until answered 200
    const accepted = [];
    let hookError = null;
    const hooks = (async () => {
      for (let n = 0; n < webhooks && !stop; n++) {
        while (!stop && committed < (n * events) / webhooks) await sleep(20);
        const msg = wahaMessage({ from: `55119${String(n % 20).padStart(8, '0')}`, body: `soak ${n}` });
        for (let i = 0; !stop && i < 600; i++) {
          try {
            const r = await emitWaha(BASE, channel.id, msg, { hmacKey: wahaSecret });
            if (r.status === 200) {
              accepted.push(msg.payload.id);
              break;
            }
            if (!hookError && r.status < 500) log(`a webhook was refused: ${(hookError = `${r.status} ${r.text}`)}`);
          } catch (e) { /* the front is restarting its connections */ }
          await sleep(100);
        }
      }
    })();

    // commands over HTTP: one every events/commands commits, each until
    // answered 200 (a token per request: a long run outlives any one token)
    const acked = [];
    let commandError = null;
    const frontCall = async (method, p, body) => {
      const r = await fetch(`${BASE}${p}`, {
        method,
        headers: { ...auth('ventros_admin', tenant), 'Content-Type': 'application/json', Prefer: 'return=representation' },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(90000),
      });
      const text = await r.text();
      let json;
      try { json = JSON.parse(text); } catch (e) { json = undefined; }
      return { status: r.status, text, json };
    };
    const httpCommands = (async () => {
      const versions = new Map(commandIds.map((id) => [id, 1]));
      for (let n = 0; n < commands && !stop; n++) {
        while (!stop && committed < (n * events) / commands) await sleep(20);
        const id = commandIds[n % commandIds.length];
        const name = `Soak HTTP ${n}`;
        for (let i = 0; !stop && i < 600; i++) {
          try {
            const r = await frontCall('PATCH', `/contacts?id=eq.${id}&select=version`, { name, version: versions.get(id) });
            if (r.status === 200 && r.json?.length === 1) {
              versions.set(id, r.json[0].version);
              acked.push({ id, version: r.json[0].version, name });
              break;
            }
            if (r.status === 409) {
              // an attempt committed and its answer was lost: where does it stand
              const g = await frontCall('GET', `/contacts?id=eq.${id}&select=version`);
              if (g.status === 200 && g.json?.length === 1) versions.set(id, g.json[0].version);
              continue;
            }
            if (!commandError && r.status < 500) log(`a command was refused: ${(commandError = `${r.status} ${r.text}`)}`);
          } catch (e) { /* the front is restarting its connections */ }
          await sleep(100);
        }
      }
    })();

    // occurrence j of a kind that happens n times sits at (j + 0.5) / n of the run
    const counts = { 'broker-kill': brokerKills, hang: hangs, 'worker-kill': workerKills, 'pg-restart': pgRestarts,
                     'proxy-cut': proxyCuts, 'proxy-stall': proxyStalls };
    const plan = Object.entries(counts)
      .flatMap(([kind, n]) => Array.from({ length: n }, (_, j) => ({ kind, at: (j + 0.5) / n })))
      .sort((x, y) => x.at - y.at)
      .map((x) => x.kind);
    // the writes are paced by the faults: each fault starts at its place in
    // the writes, and the writes go on (up to the next place) while it lasts
    const place = (f) => Math.floor(((f + 1) * events) / (plan.length + 1));
    let workerTurn = 0;
    for (let f = 0; f < plan.length; f++) {
      allowed = place(f + 1);
      const at = place(f);
      while (committed < at) await sleep(20);
      const kind = plan[f];
      faults[kind]++;
      switch (kind) {
        case 'broker-kill':
          brokerSignal('KILL');
          await brokerStartAsync();
          break;
        case 'hang':
          brokerSignal('STOP');
          try { await sleep(HEARTBEAT_S * 3000); } finally { brokerSignal('CONT'); }
          break;
        case 'worker-kill': {
          const type = WORKERS[workerTurn++ % WORKERS.length];
          await db.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = $1
                          ORDER BY pid LIMIT 1`, [type]);
          break;
        }
        case 'pg-restart':
          await pgRestartAsync('immediate');
          break;
        case 'proxy-cut':
          brokerProxy.cut();
          providerProxy.cut();
          break;
        case 'proxy-stall':
          brokerProxy.stall();
          providerProxy.stall();
          try { await sleep(HEARTBEAT_S * 3000); } finally { brokerProxy.unstall(); providerProxy.unstall(); }
          break;
        default:
          throw new Error(kind);
      }
      log(`fault ${f + 1}/${plan.length}: ${kind} at ${at} commits (${committed} when it ended)`);
    }
    allowed = events;
    await Promise.all(work);
    await hooks;
    await httpCommands;
    log(`writes done: ${committed} commits, ${acked.length} HTTP commands, ${sent} sends, ${accepted.length} webhooks, ` +
        `${Math.round((Date.now() - started) / 1000)} s`);

    // everything published and every send delivered (bounded), then counted
    await until(async () => (await db.query(`SELECT count(*)::int AS n FROM ventros.outbox
                                             WHERE tenant_id = $1 AND seq > $2 AND status <> 'published'`, [tenant, since])).rows[0].n === 0,
    'every event published', 600000, 250);
    const rows = (await db.query(`SELECT event_id::text AS id FROM ventros.outbox WHERE tenant_id = $1 AND seq > $2`, [tenant, since])).rows;
    await until(() => rows.every((r) => consumer.copies.has(r.id)), 'every event at the consumer', 120000, 250)
      .catch(() => false);
    const pendingSends = async () => (await db.query(`SELECT count(*)::int AS n FROM ventros.http_requests
                                                     WHERE id = ANY ($1) AND status <> 'succeeded'`, [sendIds])).rows[0].n;
    await until(async () => (await pendingSends()) === 0, 'every send delivered', 120000, 250).catch(() => false);
    await sleep(500); // copies still on their way only add to the duplicates
    const lost = rows.filter((r) => !consumer.copies.has(r.id)).length;
    let duplicates = 0;
    for (const r of rows) duplicates += Math.max((consumer.copies.get(r.id) ?? 0) - 1, 0);
    const got = provider.requests('/send').map((r) => r.headers['x-n']);
    const gotSet = new Set(got);
    const queued = (await db.query(`SELECT id, headers->>'X-N' AS n, status, attempts FROM ventros.http_requests
                                    WHERE id = ANY ($1)`, [sendIds])).rows;
    const missing = queued.filter((r) => !gotSet.has(r.n));
    const sendsLost = missing.length;
    if (missing.length) log(`sends never received: ${JSON.stringify(missing.slice(0, 5))}`);
    // every accepted webhook's message stored once (bounded wait for the processors)
    const stored = async () => (!channel ? [] : (await db.query(`SELECT m.channel_message_id AS id, count(*)::int AS n
                                                                 FROM ventros.messages m
                                                                WHERE m.tenant_id = $1 AND m.channel_id = $2
                                                                  AND m.channel_message_id = ANY ($3)
                                                                GROUP BY 1`, [tenant, channel.id, accepted])).rows);
    await until(async () => (await stored()).length === accepted.length, 'every webhook processed', 120000, 250)
      .catch(() => false);
    const kept = await stored();
    const webhooksLost = accepted.length - kept.length;
    const webhookDuplicates = kept.reduce((t, r) => t + r.n - 1, 0);
    // phantoms: events a consumer got that the outbox no longer has
    const inOutbox = new Set(rows.map((r) => r.id));
    let phantoms = 0;
    for (const [id, seq] of consumer.seqs) if (seq > Number(since) && !inOutbox.has(id)) phantoms++;
    // every HTTP command answered 200 is in the outbox, as answered
    const updated = new Set((await db.query(`SELECT aggregate_id::text || '/' || aggregate_version || '/' ||
                                                    (payload #>> '{changed,name}') AS k
                                               FROM ventros.outbox
                                              WHERE tenant_id = $1 AND seq > $2 AND aggregate_id = ANY ($3::uuid[])
                                                AND event_type = 'contact.updated'`, [tenant, since, commandIds])).rows
      .map((r) => r.k));
    const commandsMissing = acked.filter((c) => !updated.has(`${c.id}/${c.version}/${c.name}`));
    if (commandsMissing.length) log(`commands answered 200 and not in the outbox: ${JSON.stringify(commandsMissing.slice(0, 5))}`);
    const [a] = (await db.query(`SELECT coalesce(sum(attempts), 0)::int AS n FROM ventros.outbox
                                 WHERE tenant_id = $1 AND seq > $2`, [tenant, since])).rows;
    const result = {
      events: rows.length, received: rows.length - lost, lost, duplicates,
      orderViolations: consumer.violations.length, violations: consumer.violations.slice(0, 10), phantoms,
      aggregates, commands: acked.length, commandsLost: commandsMissing.length,
      sends: sendIds.length, sendsLost, sendDuplicates: got.length - gotSet.size, sendsQueued: queued.length,
      sendsNotSucceeded: await pendingSends(),
      webhooks: accepted.length, webhooksLost, webhookDuplicates,
      faults, proxy: { broker: brokerProxy.stats(), provider: providerProxy.stats() },
      // where lost events are: still in the queue (the consumer's side) or not
      consumer: { rounds: consumer.rounds, ends: consumer.ends, lastDeliveryAgoMs: Date.now() - consumer.lastDelivery,
                  queueReady: lost ? await readyIn(queue) : 0 },
      publisherFailedAttempts: a.n, seconds: Math.round((Date.now() - started) / 1000),
    };
    log(`events ${result.events}, lost ${lost}, duplicates ${duplicates}, order violations ${result.orderViolations}, ` +
        `phantoms ${phantoms}; HTTP commands ${result.commands}, lost ${result.commandsLost}; ` +
        `sends ${result.sends}, lost ${sendsLost}, duplicates ${result.sendDuplicates}; ` +
        `webhooks ${result.webhooks}, lost ${webhooksLost}, duplicates ${webhookDuplicates}; ${result.seconds} s`);
    return result;
  } finally {
    stopWriters?.();
    try { brokerSignal('CONT'); } catch (e) { /* running */ }
    brokerProxy.unstall();
    providerProxy.unstall();
    await consumer?.close();
    await front?.stop();
    const admin = resilient();
    await alterSystem(admin, Object.fromEntries(Object.keys(settings).map((k) => [k, null])));
    await restartPublisher(admin).catch(() => {});
    await admin.end();
    await db.end();
    await brokerProxy.close();
    await providerProxy.close();
    await provider.close();
  }
}

// The verdict: nothing lost anywhere, nothing out of order, nothing taken back.
export function passed(r) {
  return r.lost === 0 && r.orderViolations === 0 && r.phantoms === 0 && r.commandsLost === 0 &&
    r.sendsLost === 0 && r.webhooksLost === 0;
}

// CLI (bench/soak.sh, soak_short.test.mjs):
//   node test/integration/soak.mjs --events 100000 --broker-kills 20 ...
// Prints the result (JSON between a line "{" and a line "}") and ends by
// itself: the exit code is 0 when passed.  Should anything stay open after
// the result, the process names it and exits 3 after 20 s (soak_short fails
// on that).
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const opts = {};
  const names = { events: 'events', 'broker-kills': 'brokerKills', hangs: 'hangs', 'worker-kills': 'workerKills',
                  'pg-restarts': 'pgRestarts', 'proxy-cuts': 'proxyCuts', 'proxy-stalls': 'proxyStalls',
                  sends: 'sends', webhooks: 'webhooks', commands: 'commands', writers: 'writers',
                  aggregates: 'aggregates', tenant: 'tenant' };
  const args = process.argv.slice(2);
  for (let i = 0; i < args.length; i += 2) {
    const k = names[args[i].replace(/^--/, '')];
    if (!k) throw new Error(`unknown option ${args[i]}`);
    opts[k] = k === 'tenant' ? args[i + 1] : Number(args[i + 1]);
  }
  const r = await runSoak(opts);
  console.log(JSON.stringify(r, null, 2));
  console.log(`lost ${r.lost}, duplicates ${r.duplicates}, order violations ${r.orderViolations}, phantoms ${r.phantoms}, ` +
              `HTTP commands lost ${r.commandsLost}, webhooks lost ${r.webhooksLost}, sends lost ${r.sendsLost}`);
  process.exitCode = passed(r) ? 0 : 1;
  setTimeout(() => {
    // a socket names its peer: which client (PostgreSQL, the broker, the front,
    // a stand-in or a proxy) was left open
    const open = process._getActiveHandles().map((h) => (h.constructor.name === 'Socket' && h.remotePort
      ? `Socket(${h.localPort}->${h.remotePort}${h.destroyed ? ', destroyed' : ''})` : h.constructor.name));
    console.error(`soak: still open 20 s after the result: ${open.join(', ')}`);
    process.exit(3);
  }, 20000).unref();
}
