// The short form of the standing fault proof (test/integration/soak.mjs;
// the long form is bench/soak.sh): a few thousand events and HTTP sends
// while the broker is killed and hung, each worker terminated, PostgreSQL
// restarted with -m immediate, and the proxies between the workers and the
// broker and provider cut and stalled.  Nothing lost, order per aggregate
// kept; duplicates are reported (at least once).
//
// The soak runs in a child process (soak.mjs's command line, which exits as
// soon as it has printed its result): whatever the faults leave behind in
// that process (a socket of a connection attempt cut short) cannot keep this
// file from finishing, and the child is killed if it outlives its bound.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RUN_DIR } from './outbox_helpers.mjs';

const SOAK = path.join(path.dirname(fileURLToPath(import.meta.url)), 'soak.mjs');

function runSoakChild(args, boundMs) {
  return new Promise((ok, ko) => {
    const child = spawn(process.execPath, [SOAK, ...args], { env: process.env, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), boundMs);
    child.on('error', ko);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const lines = out.split('\n');
      for (const l of lines) if (l.startsWith('# ')) console.log(l);
      const a = lines.indexOf('{');
      const b = lines.indexOf('}', a);
      if (a < 0 || b < 0) return ko(new Error(`the soak printed no result (exit ${code}, ${signal ?? 'no signal'})`));
      ok(JSON.parse(lines.slice(a, b + 1).join('\n')));
    });
  });
}

test('faults at small size: nothing lost, order per aggregate kept', async () => {
  const r = await runSoakChild(['--events', '3000', '--broker-kills', '1', '--hangs', '1', '--worker-kills', '3',
    '--pg-restarts', '1', '--proxy-cuts', '2', '--proxy-stalls', '1', '--sends', '100', '--tenant', 'soak_short'], 600000);
  fs.appendFileSync(path.join(RUN_DIR, 'soak_short.txt'), `${JSON.stringify(r)}\n`);
  assert.deepEqual(r.violations, []);
  assert.equal(r.orderViolations, 0);
  assert.equal(r.lost, 0, `${r.lost} of ${r.events} events never reached the consumer`);
  assert.equal(r.sendsLost, 0, `${r.sendsLost} of ${r.sends} sends never reached the provider`);
  assert.equal(r.sendsNotSucceeded, 0);
  assert.ok(r.events >= 3000);
  assert.deepEqual(r.faults, { 'broker-kill': 1, hang: 1, 'worker-kill': 3, 'pg-restart': 1, 'proxy-cut': 2, 'proxy-stall': 1 });
});
