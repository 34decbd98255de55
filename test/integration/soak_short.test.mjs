// The short form of the standing fault proof (test/integration/soak.mjs;
// the long form is bench/soak.sh): a few thousand events and HTTP sends
// while the broker is killed and hung, each worker terminated, PostgreSQL
// restarted with -m immediate, and the proxies between the workers and the
// broker and provider cut and stalled.  Nothing lost, order per aggregate
// kept; duplicates are reported (at least once).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { runSoak } from './soak.mjs';
import { RUN_DIR } from './outbox_helpers.mjs';

test('faults at small size: nothing lost, order per aggregate kept', async () => {
  const r = await runSoak({
    events: 3000, brokerKills: 1, hangs: 1, workerKills: 3, pgRestarts: 1, proxyCuts: 2, proxyStalls: 1,
    sends: 100, tenant: 'soak_short',
  });
  fs.appendFileSync(path.join(RUN_DIR, 'soak_short.txt'), `${JSON.stringify(r)}\n`);
  assert.deepEqual(r.violations, []);
  assert.equal(r.orderViolations, 0);
  assert.equal(r.lost, 0, `${r.lost} of ${r.events} events never reached the consumer`);
  assert.equal(r.sendsLost, 0, `${r.sendsLost} of ${r.sends} sends never reached the provider`);
  assert.equal(r.sendsNotSucceeded, 0);
  assert.ok(r.events >= 3000);
  assert.deepEqual(r.faults, { 'broker-kill': 1, hang: 1, 'worker-kill': 3, 'pg-restart': 1, 'proxy-cut': 2, 'proxy-stall': 1 });
});

// Whatever the faults left open (a socket of a connection attempt cut short)
// must not keep this file running once its test is done: name it, and exit.
after(() => {
  setTimeout(() => {
    const open = process._getActiveHandles().map((h) => h.constructor.name);
    console.log(`# still open after the soak: ${open.join(', ')}`);
    process.exit(process.exitCode ?? 0);
  }, 5000).unref();
});
