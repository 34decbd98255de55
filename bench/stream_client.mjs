// bench/stream's subscribers: N Server-Sent Events subscriptions to
// GET /events/stream, spread over the given tenants (round robin), each as an
// admin of its tenant (an HS256 token signed with the front's secret).  For
// every event received: receive time minus the commit-time stamp in its data
// ("sent_us", microseconds since the epoch, written by the producing
// statement), and its id, to count duplicates.  Writes READY_FILE once every
// subscription answered 200; once DONE_FILE exists (the producers are done)
// and nothing came for IDLE_MS, prints one line:
//   <subs> <deliveries> <dups> <ended early> <rate/s> <p50 ms> <p99 ms> <max ms> <tenant>=<min>..<max> ...
// (the per-tenant range of events per subscription).
import fs from 'node:fs';
import http from 'node:http';
import crypto from 'node:crypto';

const [base, secretFile, count, tenantList, readyFile, doneFile] = process.argv.slice(2);
const IDLE_MS = 2000;
const secret = fs.readFileSync(secretFile, 'utf8').trim();
const tenants = tenantList.split(',');
const nowUs = () => (performance.timeOrigin + performance.now()) * 1000;
const b64 = (s) => Buffer.from(s).toString('base64url');

function token(tenant) {
  const now = Math.floor(Date.now() / 1000);
  const h = b64(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const p = b64(JSON.stringify({ role: 'ventros_admin', tenant_id: tenant, sub: 'bench', iat: now, exp: now + 3600 }));
  return `${h}.${p}.${crypto.createHmac('sha256', secret).update(`${h}.${p}`).digest('base64url')}`;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
const subs = [];
const lat = [];
let deliveries = 0;
let dups = 0;
let ended = 0;
let first = 0;
let last = 0;
const STAMP = '"sent_us": ';

function consume(s, text) {
  s.buf += text;
  const t = nowUs();
  let end;
  while ((end = s.buf.indexOf('\n\n')) >= 0) {
    const block = s.buf.slice(0, end);
    s.buf = s.buf.slice(end + 2);
    if (!block.startsWith('id: ')) continue;
    const id = block.slice(4, block.indexOf('\n'));
    if (s.ids.has(id)) dups++;
    s.ids.add(id);
    const at = block.indexOf(STAMP);
    if (at >= 0) lat.push((t - Number(block.slice(at + STAMP.length, at + STAMP.length + 20).match(/^\d+/)[0])) / 1000);
    deliveries++;
    s.n++;
    if (!first) first = t;
    last = t;
  }
}

const open = (i) => new Promise((ok, ko) => {
  const tenant = tenants[i % tenants.length];
  const req = http.get(`${base}/events/stream?types=custom.*`, { agent, headers: { Authorization: `Bearer ${token(tenant)}` } }, (res) => {
    if (res.statusCode !== 200) return ko(new Error(`subscription ${i}: ${res.statusCode}`));
    if (process.env.DEBUG_SUBS) console.error("opened", i);
    const s = { tenant, buf: '', ids: new Set(), n: 0 };
    subs.push(s);
    res.setEncoding('utf8');
    res.on('data', (d) => consume(s, d));
    res.on('end', () => { ended++; });
    ok();
  });
  req.on('error', ko);
});
// in waves of 50: a thousand connects at once overflow the listen queue of a small machine
for (let i = 0; i < Number(count); i += 50) {
  await Promise.all(Array.from({ length: Math.min(50, Number(count) - i) }, (_, k) => open(i + k)));
}
fs.writeFileSync(readyFile, 'ready\n');

for (;;) {
  await new Promise((r) => setTimeout(r, 200));
  if (fs.existsSync(doneFile) && nowUs() - last > IDLE_MS * 1000) break;
}
lat.sort((a, b) => a - b);
const q = (p) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))].toFixed(1) : 'n/a');
const ranges = tenants.map((t) => {
  const ns = subs.filter((s) => s.tenant === t).map((s) => s.n);
  return `${t}=${Math.min(...ns)}..${Math.max(...ns)}`;
});
const rate = last > first ? Math.round(deliveries / ((last - first) / 1e6)) : 0;
console.log([subs.length, deliveries, dups, ended, rate, q(0.5), q(0.99), q(1), ...ranges].join(' '));
process.exit(0);
