// Helpers of the conformance suite: the fixture schema (fixture.sql) and a
// front serving it beside Ventros' api.  The expected answers in the tests
// are PostgREST 12's, as its documentation describes them.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { db, startServer } from '../integration/http_helpers.mjs';

export { http, sign, token, auth, db, SECRET, AUDIENCE } from '../integration/http_helpers.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));

export async function loadFixture() {
  const c = await db();
  try {
    await c.query(fs.readFileSync(path.join(HERE, 'fixture.sql'), 'utf8'));
  } finally {
    await c.end();
  }
}

// the fixture, fresh, and a front exposing api then conformance
export async function startConformance(env = {}) {
  await loadFixture();
  return startServer({
    VENTROS_HTTP_DB_SCHEMAS: 'api, conformance',
    VENTROS_HTTP_DB_ANON_ROLE: 'conformance_anon',
    VENTROS_HTTP_DB_ROLES: 'conformance_user',
    ...env,
  });
}

// a profile header for reads (Accept-Profile) or writes (Content-Profile)
export const READ = { 'Accept-Profile': 'conformance' };
export const WRITE = { 'Content-Profile': 'conformance' };

// resolves once the front's stderr holds text (a log line), or rejects after a long while
export async function waitForLog(server, text) {
  for (let i = 0; i < 600; i++) {
    if (server.log.join('').includes(text)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`the front never logged "${text}":\n${server.log.join('')}`);
}
