// bench/outbox's consumer: binds a queue to ventros.events, and for every
// message of tenant "benchlat" records receive time minus the commit-time
// stamp in its data (sent_us, microseconds since the epoch, written by the
// producing statement).  Writes READY_FILE once bound; after COUNT messages
// (or TIMEOUT_MS), prints "<count> <p50 ms> <p99 ms> <max ms>".
import fs from 'node:fs';
import amqp from 'amqplib';

const [url, count, readyFile, timeoutMs] = process.argv.slice(2);
const want = Number(count);
const nowUs = () => (performance.timeOrigin + performance.now()) * 1000;
const lat = [];
const STAMP = '"sent_us": ';
const conn = await amqp.connect(url);
const ch = await conn.createChannel();
await ch.assertExchange('ventros.events', 'topic', { durable: true });
const { queue } = await ch.assertQueue('', { exclusive: true });
await ch.bindQueue(queue, 'ventros.events', '#');
await ch.prefetch(2000);
let done;
const finished = new Promise((r) => { done = r; });
await ch.consume(queue, (m) => {
  if (m.properties.headers?.tenant_id === 'benchlat') {
    // the stamp without parsing the whole body: at several thousand messages
    // a second on a small machine, this consumer's own CPU must not be what
    // makes messages wait
    const at = m.content.indexOf(STAMP) + STAMP.length;
    lat.push((nowUs() - Number(m.content.toString('latin1', at, at + 20).match(/^\d+/)[0])) / 1000);
    if (lat.length >= want) done();
  }
}, { noAck: true });
fs.writeFileSync(readyFile, 'ready\n');
const timer = setTimeout(done, Number(timeoutMs));
await finished;
clearTimeout(timer);
lat.sort((a, b) => a - b);
const pct = (p) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] : NaN);
console.log(`${lat.length} ${pct(0.5).toFixed(2)} ${pct(0.99).toFixed(2)} ${(lat[lat.length - 1] ?? NaN).toFixed(2)}`);
await conn.close();
