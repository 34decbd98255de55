// docs/http-rpc.md's reference of the command endpoints is current: it equals
// what scripts/http-reference.mjs generates from this database's catalog
// (run it with --write after changing a served function, its COMMENT or its
// grants; or run this test with VENTROS_WRITE_DOCS=1, which rewrites it).  The generator follows the catalog: a changed COMMENT changes it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { db, ROOT } from './http_helpers.mjs';
import { DOC, render, splice } from '../../scripts/http-reference.mjs';

let pg;
before(async () => { pg = await db(); });
after(async () => { await pg?.end(); });

test('the committed rpc reference in docs/http-rpc.md is the generated one', async () => {
  const doc = fs.readFileSync(path.join(ROOT, DOC), 'utf8');
  const ref = await render(pg);
  const fresh = splice(doc, ref);
  if (fresh !== doc && process.env.VENTROS_WRITE_DOCS === '1') {
    fs.writeFileSync(path.join(ROOT, DOC), fresh);   // as direct_writes.test.mjs: rewrite, then commit the change
  } else if (fresh !== doc) {
    const a = doc.split('\n');
    const b = fresh.split('\n');
    const i = a.findIndex((line, n) => line !== b[n]);
    assert.fail(`${DOC} is stale (scripts/http-reference.mjs --write); first difference at line ${i + 1}:\n` +
      `committed: ${a[i]}\ngenerated: ${b[i]}`);
  }
  const count = Number(/^(\d+) functions\./m.exec(ref)[1]);
  console.log(`# rpc reference: ${count} command endpoints in ${DOC}, current`);
  assert.ok(count >= 390);
});

test('the reference follows the catalog', async () => {
  await pg.query('BEGIN');
  try {
    await pg.query(`COMMENT ON FUNCTION ventros.send_message(uuid, uuid, text, uuid, text, text, text, text, uuid, uuid, jsonb, text, text, jsonb)
                    IS 'A summary nobody wrote'`);
    const ref = await render(pg);
    assert.match(ref, /\| `POST \/rpc\/send_message` \| A summary nobody wrote \|/);
  } finally {
    await pg.query('ROLLBACK');
  }
});
