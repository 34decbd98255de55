// Server settings a test file needs (ALTER SYSTEM, then a reload), and
// putting them back after it.  A value of null resets that setting.
export async function alterSystem(c, settings) {
  for (const [k, v] of Object.entries(settings)) {
    if (v === null) await c.query(`ALTER SYSTEM RESET ${k}`);
    else await c.query(`ALTER SYSTEM SET ${k} = '${v}'`);
  }
  await c.query('SELECT pg_reload_conf()');
}

export async function resetSystem(c, settings) {
  await alterSystem(c, Object.fromEntries(Object.keys(settings).map((k) => [k, null])));
}
