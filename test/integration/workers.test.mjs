// The worker kit (src/worker.c): every kind of background worker reports
// through the one status function, ventros.worker_status(), with the pids
// pg_stat_activity shows for it; and a worker's last error, set through the
// kit, shows there.  The error is made deterministically: a function the
// inbox processors call is hidden and the processors are restarted, so the
// next ones find it missing at their first step (no race with a running
// processor: each new one checks before it processes anything).
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { client, until } from './outbox_helpers.mjs';

const KINDS = ['ventros automation executor', 'ventros http dispatcher', 'ventros inbox processor', 'ventros outbox publisher'];
let db;

before(async () => {
  db = await client();
});

after(async () => {
  await db?.end();
});

async function workerStatus() {
  return (await db.query(`SELECT kind, slot, pid, database, started_at, last_error, last_error_at
                            FROM ventros.worker_status() ORDER BY kind, slot`)).rows;
}

// The backend pids pg_stat_activity shows for the kit's kinds, by kind.
async function activity() {
  return (await db.query(`SELECT backend_type AS kind, pid, datname FROM pg_stat_activity
                           WHERE backend_type = ANY ($1) ORDER BY backend_type, pid`, [KINDS])).rows;
}

test('every kind of worker reports through ventros.worker_status(), with the pids of pg_stat_activity', async () => {
  const rows = await until(async () => {
    const r = await workerStatus();
    return r.length > 0 && r.every((w) => w.pid !== null) && r;
  }, 'every worker of the kit running');
  assert.deepEqual([...new Set(rows.map((w) => w.kind))], KINDS);
  // ventros.automation_workers executors (2), one dispatcher, ventros.inbox_workers processors (2), one publisher per database
  assert.deepEqual(rows.map((w) => [w.kind, w.slot]), [
    ['ventros automation executor', 0], ['ventros automation executor', 1], ['ventros http dispatcher', 0], ['ventros inbox processor', 0], ['ventros inbox processor', 1],
    ['ventros outbox publisher', 0],
  ]);
  for (const w of rows) {
    assert.equal(w.database, 'ventros', `${w.kind} ${w.slot}`);
    assert.ok(w.started_at instanceof Date, `${w.kind} ${w.slot} started_at`);
  }
  const seen = await activity();
  assert.deepEqual(
    seen.map((a) => [a.kind, a.pid, a.datname]),
    [...rows].sort((a, b) => a.kind.localeCompare(b.kind) || a.pid - b.pid).map((w) => [w.kind, w.pid, w.database]),
  );
  // the kinds' own status functions name the same processes
  const outbox = (await db.query('SELECT pid FROM ventros.outbox_worker_state()')).rows[0];
  const http = (await db.query('SELECT pid, database, started_at FROM ventros.http_dispatcher_state()')).rows[0];
  assert.equal(outbox.pid, rows.find((w) => w.kind === 'ventros outbox publisher').pid);
  const dispatcher = rows.find((w) => w.kind === 'ventros http dispatcher');
  assert.deepEqual(http, { pid: dispatcher.pid, database: 'ventros', started_at: dispatcher.started_at });
});

test('a worker\'s last error set through the kit shows in ventros.worker_status()', async () => {
  const processors = async () => (await workerStatus()).filter((w) => w.kind === 'ventros inbox processor');
  const before = await processors();
  await db.query('ALTER FUNCTION ventros.process_inbox(integer, timestamptz) RENAME TO process_inbox_hidden');
  try {
    await db.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'ventros inbox processor'`);
    const failing = await until(async () => {
      const r = await processors();
      return r.every((w, i) => w.pid !== null && w.pid !== before[i].pid && w.last_error !== null
                               && /process_inbox/.test(w.last_error)) && r;
    }, 'new processors reporting the missing function');
    for (const w of failing) {
      assert.equal(w.last_error, 'function ventros.process_inbox(integer,timestamp with time zone) is missing '
        + 'in database "ventros": the extension is not installed, or its SQL is older than the loaded library');
      assert.ok(w.last_error_at instanceof Date);
    }
    // the other kinds are not touched by it
    for (const w of (await workerStatus()).filter((x) => x.kind !== 'ventros inbox processor')) {
      assert.doesNotMatch(w.last_error ?? '', /process_inbox/);
    }
  } finally {
    await db.query('ALTER FUNCTION ventros.process_inbox_hidden(integer, timestamptz) RENAME TO process_inbox');
  }
});
