// Helpers for the outbox publisher's integration tests: a real AMQP consumer
// bound to ventros.events, database clients, and the fault switches (broker
// and PostgreSQL stop/start through scripts/lib.sh).
import { execFile, execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import amqp from 'amqplib';
import pg from 'pg';
import { alterSystem } from './settings.mjs';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const RUN_DIR = process.env.VENTROS_RUN_DIR;
export const AMQP_URL = process.env.VENTROS_AMQP_URL;
export const AMQP_PORT = process.env.VENTROS_AMQP_PORT;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function client() {
  const c = new pg.Client({ connectionString: process.env.VENTROS_PGURL });
  await c.connect();
  c.on('error', () => {}); // a restarted server ends the connection: the test reconnects
  return c;
}

// Wait until fn() returns a truthy value; fail with `what` after timeoutMs.
// A bound on a failure, not a timing assertion.
export async function until(fn, what, timeoutMs = 60000, everyMs = 50) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let v;
    try {
      v = await fn();
    } catch (e) {
      v = undefined; // servers restarting
    }
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

function lib(cmd) {
  execFileSync('bash', ['-c', `source "${ROOT}/scripts/lib.sh"; ${cmd}`], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: process.env,
  });
}
// The same, without blocking the event loop (writers and consumers go on
// while the broker or PostgreSQL restarts).
function libAsync(cmd) {
  return new Promise((ok, ko) => {
    const p = execFile('bash', ['-c', `source "${ROOT}/scripts/lib.sh"; ${cmd}`], { env: process.env },
      (e) => (e ? ko(e) : ok()));
    p.stdout.resume();
    p.stderr.pipe(process.stderr);
  });
}
export const brokerStartAsync = () => libAsync(`rabbit_start "${RUN_DIR}" ${AMQP_PORT}`);
export const pgRestartAsync = (mode = 'fast') =>
  libAsync(`runuser -u postgres -- "$PG_BIN/pg_ctl" -D "${RUN_DIR}/pg" -m ${mode} -w -t 60 restart -l "${RUN_DIR}/postgresql.log" >/dev/null`);
export const brokerStop = () => lib(`rabbit_stop "${RUN_DIR}" ${AMQP_PORT}`);
export const brokerStart = () => lib(`rabbit_start "${RUN_DIR}" ${AMQP_PORT}`);
// SIGSTOP / SIGCONT / SIGKILL to the broker node of this run (its pid file):
// a frozen broker keeps its sockets open and answers nothing.
export const brokerSignal = (sig) => lib(`rabbit_signal "${RUN_DIR}" ${sig}`);
export const pgRestart = (mode = 'fast') =>
  lib(`runuser -u postgres -- "$PG_BIN/pg_ctl" -D "${RUN_DIR}/pg" -m ${mode} -w -t 60 restart -l "${RUN_DIR}/postgresql.log" >/dev/null`);

// A queue bound to ventros.events that records every message.  durable: the
// queue survives broker restarts (fault tests drain it afterwards).
export async function consumer(queue, { durable = false, bind = '#', consume = true } = {}) {
  const conn = await amqp.connect(AMQP_URL);
  conn.on('error', () => {});
  const ch = await conn.createChannel();
  ch.on('error', () => {});
  await ch.assertExchange('ventros.events', 'topic', { durable: true });
  await ch.assertQueue(queue, durable ? { durable: true } : { exclusive: true, durable: false });
  await ch.bindQueue(queue, 'ventros.events', bind);
  const messages = [];
  if (consume) {
    await ch.consume(queue, (m) => {
      messages.push(m);
      ch.ack(m);
    });
  }
  return {
    conn,
    ch,
    queue,
    messages,
    of: (tenant) => messages.filter((m) => m.properties.headers?.tenant_id === tenant),
    close: async () => {
      try {
        await conn.close();
      } catch (e) {
        /* already closed by a stopped broker */
      }
    },
  };
}

export async function status(c) {
  return (await c.query('SELECT * FROM ventros.outbox_status')).rows[0];
}

// Server settings for the publisher, in effect when this returns: a running
// worker applies a reload at its next wake-up, at a moment no test can know,
// so the publisher is restarted instead.  The postmaster has reloaded the
// configuration before it sees the old worker exit (it handles the SIGHUP,
// sent first, before the SIGCHLD), and the worker it starts inherits it.
// connected: also wait for the new publisher's broker connection.
export async function setConf(c, settings, { connected = true } = {}) {
  await alterSystem(c, settings);
  await restartPublisher(c, { connected });
}

// Terminate the publisher and wait for the next one (a new pid).
export async function restartPublisher(c, { connected = true } = {}) {
  const before = (await status(c)).worker_pid;
  await c.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'ventros outbox publisher'`);
  let last;
  try {
    return await until(async () => {
      const s = (last = await status(c));
      return s.worker_pid && s.worker_pid !== before && (!connected || s.worker_connected) && s;
    }, 'a new publisher', 60000);
  } catch (e) {
    // say what the publisher was doing: a bound hit on a loaded machine is
    // told apart from a publisher that never came back
    const seen = last && { pid: last.worker_pid, before, connected: last.worker_connected,
                           last_error: last.last_error, last_error_at: last.last_error_at };
    throw new Error(`${e.message} (last status: ${JSON.stringify(seen)}; ${await publisherActivity(c)})`);
  }
}

// What the publisher's backend is doing, and who blocks it: for the message
// of a wait that ran out (a publisher that neither publishes nor exits).
export async function publisherActivity(c) {
  try {
    const rows = (await c.query(`
      SELECT p.pid, p.state, p.wait_event_type, p.wait_event, left(p.query, 120) AS query,
             (SELECT json_agg(json_build_object('pid', b.pid, 'type', b.backend_type, 'app', b.application_name,
                                                'state', b.state, 'xact_age', now() - b.xact_start,
                                                'query', left(b.query, 120)))
                FROM pg_stat_activity b WHERE b.pid = ANY (pg_blocking_pids(p.pid))) AS blocked_by
        FROM pg_stat_activity p WHERE p.backend_type = 'ventros outbox publisher'`)).rows;
    return `publisher activity: ${JSON.stringify(rows)}`;
  } catch (e) {
    return `publisher activity unknown: ${e.message}`;
  }
}

// The order guarantee (docs/outbox.md, docs/reliability.md guarantee 4), as
// a consumer can check it: per aggregate, the first arrival of each event
// comes in outbox order (a higher `sequence` than every earlier arrival of
// that aggregate), and `aggregateversion` never goes back nor skips one (the
// engine bumps it by one per change; events that do not change the
// aggregate's row, such as session.message_recorded or a domain event of a
// command, carry the version they found, so several events may share one).
// With nothing lost, the first arrivals of each aggregate are then exactly
// its outbox rows in order.  see(envelope) returns the problem, or null.
export function orderChecker() {
  const last = new Map();
  return {
    see(b) {
      const prev = last.get(b.aggregateid);
      const at = () => `${b.aggregateid}: ${b.type} seq ${b.sequence} version ${b.aggregateversion} ` +
        `after seq ${prev.s} version ${prev.v}`;
      // an event out of order is not where the aggregate stands
      if (prev && b.sequence <= prev.s) return `${at()} (out of order)`;
      last.set(b.aggregateid, { s: b.sequence, v: b.aggregateversion ?? prev?.v ?? null });
      if (prev && b.aggregateversion != null && prev.v != null &&
          (b.aggregateversion < prev.v || b.aggregateversion > prev.v + 1))
        return `${at()} (version ${b.aggregateversion < prev.v ? 'went back' : 'skipped'})`;
      return null;
    },
  };
}

// First arrivals checked with orderChecker; later copies of a message
// already seen are duplicates.
export function checkOrder(messages) {
  const seen = new Set();
  const order = orderChecker();
  let duplicates = 0;
  const problems = [];
  for (const m of messages) {
    const id = m.properties.messageId;
    if (seen.has(id)) {
      duplicates++;
      continue;
    }
    seen.add(id);
    const problem = order.see(JSON.parse(m.content.toString()));
    if (problem) problems.push(problem);
  }
  return { unique: seen, duplicates, problems };
}
