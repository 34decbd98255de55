// Scheduled work per tenant against a tenant holding locks (issue 12, hole
// 5, docs/security.md "Shared locks, queues and scheduled work"): a tenant
// administrator keeps a transaction open with its channel row locked; the
// usage fold (which adds the channels' message counts to their rows), run as
// pg_cron runs it, fails that tenant's part
// only (lock_timeout; the runner caps it at 10 s, this test sets less) and
// folds the other tenant.  Deterministic: the lock is held for the whole
// run, so the step times out whatever the machine's speed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { db } from './http_helpers.mjs';

const run = Math.random().toString(36).slice(2, 8);
const A = `sjl_a_${run}`;
const B = `sjl_b_${run}`;
let c;
let holder;
const ch = {};

async function asTenant(client, tenant, sql, params = []) {
  await client.query('BEGIN');
  try {
    await client.query("SELECT set_config('ventros.tenant', $1, true)", [tenant]);
    const r = await client.query(sql, params);
    await client.query('COMMIT');
    return r.rows;
  } catch (e) {
    await client.query('ROLLBACK');
    throw e;
  }
}

before(async () => {
  c = await db();
  holder = await db();
  for (const t of [A, B]) {
    await c.query('SELECT ventros.create_tenant($1, $2)', [t, t]);
    [{ id: ch[t] }] = await asTenant(c, t, "SELECT (ventros.create_channel('Locked', 'waha')).id");
    await asTenant(c, t, 'SELECT ventros.count_channel_message($1, false, now())', [ch[t]]);
  }
});

after(async () => {
  await holder.end();
  await c.end();
});

test('a tenant holding its channel row fails only its own part of the fold', async () => {
  await holder.query('BEGIN');
  await holder.query("SELECT set_config('ventros.tenant', $1, true)", [A]);
  await holder.query('SET LOCAL ROLE ventros_admin');
  await holder.query('SELECT 1 FROM ventros.channels WHERE id = $1 FOR UPDATE', [ch[A]]);
  try {
    await c.query("SET lock_timeout = '300ms'");
    const r = await c.query(`SELECT r.tenant_id, r.error IS NULL AS ok
                               FROM ventros.run_per_tenant('ventros-fold-usage',
                                      'SELECT pg_catalog.to_jsonb(ventros.fold_usage())',
                                      ARRAY[$1, $2]) r ORDER BY 1`, [A, B]);
    assert.deepEqual(r.rows, [{ tenant_id: A, ok: false }, { tenant_id: B, ok: true }]);
    const s = await c.query(`SELECT tenant_id, sqlstate, failures FROM ventros.scheduled_job_status
                              WHERE tenant_id IN ($1, $2)`, [A, B]);
    assert.deepEqual(s.rows, [{ tenant_id: A, sqlstate: '55P03', failures: 1 }], 'the status view shows A waiting for a lock');
    const [b] = await asTenant(c, B, 'SELECT messages_received FROM ventros.channels WHERE id = $1', [ch[B]]);
    assert.equal(b.messages_received, 1, "B's channel is folded");
    assert.equal((await c.query('SHOW lock_timeout')).rows[0].lock_timeout, '300ms', "the caller's lock_timeout is back");
  } finally {
    await holder.query('ROLLBACK');
    await c.query('RESET lock_timeout');
  }
  // the lock gone, the next run folds A and clears its failure
  await c.query('SELECT ventros.fold_usage()');
  const [a] = await asTenant(c, A, 'SELECT messages_received FROM ventros.channels WHERE id = $1', [ch[A]]);
  assert.equal(a.messages_received, 1, "A's channel is folded once the lock is gone");
  const s = await c.query('SELECT count(*)::int AS n FROM ventros.scheduled_job_status WHERE tenant_id = $1', [A]);
  assert.equal(s.rows[0].n, 0, "A's failure is cleared");
});
