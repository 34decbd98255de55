// The short form of the standing fault proof (test/integration/soak.mjs;
// the long form is bench/soak.sh): a few thousand events from commands over
// SQL, HTTP commands and webhooks through the front, and HTTP sends, while
// the broker is killed and hung, each worker terminated, PostgreSQL
// restarted with -m immediate, and the proxies between the workers and the
// broker and provider cut and stalled.  Nothing lost (events, HTTP commands
// answered 200, webhooks answered 200, sends), nothing out of order per
// aggregate, nothing taken back; duplicates are reported (at least once).
//
// The soak runs as its own process (soak.mjs's command line), which must
// end by itself once it has printed its result: nothing the faults touched
// may stay open (it did not end once in six loaded runs: the TCP proxy had
// reset a socket it had ended, and Node spun at exit on the leaked handle;
// soak_harness.test.mjs).  It is killed if it outlives its bound, and the
// test fails then.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RUN_DIR } from './outbox_helpers.mjs';

const SOAK = path.join(path.dirname(fileURLToPath(import.meta.url)), 'soak.mjs');

// resolves {result, code, signal, report}: the printed result and how the
// process ended.  A process still there 40 s after its result (its own exit
// after 20 s did not come) is sent SIGUSR2, then killed: a process whose
// event loop is blocked writes a diagnostic report into RUN_DIR; one that
// dies of the signal was already past its event loop, in Node's exit (a
// leaked handle: fakes/tcp_proxy.mjs closeSocket).
function runSoakChild(args, boundMs) {
  return new Promise((ok, ko) => {
    const child = spawn(process.execPath, ['--report-on-signal', '--report-signal=SIGUSR2', `--report-directory=${RUN_DIR}`,
      SOAK, ...args], { env: process.env, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    let report = null;
    let stuck = null;
    child.stdout.on('data', (d) => {
      out += d;
      if (!stuck && /^lost /m.test(out)) {
        stuck = setTimeout(() => {
          report = `a node report in ${RUN_DIR}`;
          child.kill('SIGUSR2');
          setTimeout(() => child.kill('SIGKILL'), 5000);
        }, 40000);
      }
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), boundMs);
    child.on('error', ko);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      clearTimeout(stuck);
      const lines = out.split('\n');
      for (const l of lines) if (l.startsWith('# ')) console.log(l);
      const a = lines.indexOf('{');
      const b = lines.indexOf('}', a);
      if (a < 0 || b < 0) return ko(new Error(`the soak printed no result (exit ${code}, ${signal ?? 'no signal'})`));
      ok({ result: JSON.parse(lines.slice(a, b + 1).join('\n')), code, signal, report });
    });
  });
}

test('faults at small size: nothing lost, order per aggregate kept, nothing taken back', async () => {
  const { result: r, code, signal, report } = await runSoakChild(['--events', '3000', '--broker-kills', '1', '--hangs', '1',
    '--worker-kills', '3', '--pg-restarts', '1', '--proxy-cuts', '2', '--proxy-stalls', '1', '--sends', '100',
    '--webhooks', '100', '--commands', '100', '--tenant', 'soak_short'], 600000);
  fs.appendFileSync(path.join(RUN_DIR, 'soak_short.txt'), `${JSON.stringify(r)}\n`);
  assert.deepEqual(r.violations, []);
  assert.equal(r.orderViolations, 0);
  assert.equal(r.lost, 0, `${r.lost} of ${r.events} events never reached the consumer (${JSON.stringify(r.consumer)})`);
  assert.equal(r.phantoms, 0, 'events a consumer got that a crash took back');
  assert.equal(r.commandsLost, 0, `${r.commandsLost} of ${r.commands} HTTP commands answered 200 are not in the outbox`);
  assert.equal(r.webhooksLost, 0, `${r.webhooksLost} of ${r.webhooks} webhooks answered 200 never became a message`);
  assert.equal(r.sendsLost, 0, `${r.sendsLost} of ${r.sends} sends never reached the provider`);
  assert.equal(r.sendsNotSucceeded, 0);
  assert.ok(r.events >= 3000);
  assert.equal(r.commands, 100);
  assert.equal(r.webhooks, 100);
  assert.deepEqual(r.faults, { 'broker-kill': 1, hang: 1, 'worker-kill': 3, 'pg-restart': 1, 'proxy-cut': 2, 'proxy-stall': 1 });
  assert.equal(signal, null, `the soak process was killed past its bound${report ? `, blocked after its result (${report})` : ''}`);
  assert.equal(code, 0, code === 3 ? 'the soak process did not end by itself after its result' : `exit ${code}`);
});
