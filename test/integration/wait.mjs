// Polling until something is true, for tests of asynchronous workers (the
// dispatcher, the inbox processors, the outbox publisher).  The bound only
// turns a hang into a failure; nothing asserts on how long it took.
// describe(): optional, what to add to the error (state worth seeing).
export async function waitFor(what, fn, { timeoutMs = 30000, everyMs = 25, describe = null } = {}) {
  const start = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - start > timeoutMs) {
      const more = describe ? `; ${await describe()}` : '';
      throw new Error(`timed out waiting for ${what}${more}`);
    }
    await new Promise((ok) => setTimeout(ok, everyMs));
  }
}
