// A recording HTTP server for dispatcher tests (design channels.md section 7):
// records every request and answers from per-route scripts, so tests can
// inject 500s, timeouts, 429/503 with Retry-After, redirects, connection
// resets and large bodies.  Control API under /__fake:
//   GET  /__fake/requests[?path=...]  recorded requests (JSON array)
//   POST /__fake/reset                clear records and scripts
//   POST /__fake/script               {"method","path","responses":[...]}
// A scripted response: {"status", "headers", "body" (JSON or string),
// "raw" (string sent as is), "body_size" (n bytes of "x"), "delay_ms"
// (answer later: beyond the client's timeout it is a timeout), "hold"
// (answer only once the test calls release(): a request that cannot finish
// before the test has looked), "drop"
// (reset the connection without answering), "retry_after_date_s" (send
// Retry-After as the HTTP date n seconds from now, rounded up to a second)}.
// Scripts are consumed in order, then "default" (if set on the script) or
// 200 {"ok":true}.  Every record keeps the response that was given.
//
// onAnswer(record), when given, is called once the answer is written (the
// record's response then holds status, headers and body_text): the
// stand-ins of scripts/up log with it and post their status webhooks after
// the answer, as a provider does.
//
// Use in-process: const fake = await startRecorder(); fake.url; await fake.close();
// or standalone: node recorder.mjs --port 8099
// Provider fakes build on it (fakes/waha.mjs, fakes/graph.mjs): `handle(record)`
// answers what no script answers (return undefined for the default), and
// `control(method, path, json)` serves their own /__fake/ paths.
import http from 'node:http';

// onRecord(record, bodyBuffer), when given, may add fields to each record.
export async function startRecorder({ port = 0, host = '127.0.0.1', handle = null, control = null, onRecord = null,
                                      onAnswer = null } = {}) {
  let records = [];
  let scripts = new Map(); // "METHOD path" -> {responses: [], default}
  let seq = 0;
  let open = 0;
  let maxOpen = 0;
  let held = []; // answers waiting for release()
  const sockets = new Set();

  const key = (method, path) => `${method.toUpperCase()} ${path}`;

  function nextResponse(method, path) {
    const s = scripts.get(key(method, path)) ?? scripts.get(key('*', path)) ?? scripts.get(key('*', '*'));
    if (!s) return undefined;
    if (s.responses.length > 0) return s.responses.shift();
    return s.default;
  }

  function send(res, r) {
    const headers = { ...(r.headers ?? {}) };
    if (r.retry_after_date_s !== undefined) {
      const at = Math.ceil((Date.now() + r.retry_after_date_s * 1000) / 1000) * 1000;
      headers['Retry-After'] = new Date(at).toUTCString();
    }
    let body = '';
    if (r.raw !== undefined) body = r.raw;
    else if (r.body_size !== undefined) body = 'x'.repeat(r.body_size);
    else if (r.body !== undefined) {
      body = typeof r.body === 'string' ? r.body : JSON.stringify(r.body);
      if (typeof r.body !== 'string' && !Object.keys(headers).some((h) => h.toLowerCase() === 'content-type'))
        headers['Content-Type'] = 'application/json';
    }
    res.writeHead(r.status ?? 200, headers);
    res.end(body);
    // the first 64 KiB of the body, for onAnswer and /__fake/requests
    const text = Buffer.isBuffer(body) ? body.subarray(0, 65536).toString('utf8') : body.slice(0, 65536);
    return { headers, body_text: text };
  }

  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const url = new URL(req.url, 'http://fake');
      const body = Buffer.concat(chunks);
      if (url.pathname.startsWith('/__fake/')) {
        res.setHeader('Content-Type', 'application/json');
        if (req.method === 'GET' && url.pathname === '/__fake/requests') {
          const p = url.searchParams.get('path');
          return res.end(JSON.stringify(p ? records.filter((r) => r.path === p) : records));
        }
        if (req.method === 'POST' && url.pathname === '/__fake/reset') {
          records = [];
          scripts = new Map();
          maxOpen = open;
          return res.end('{"ok":true}');
        }
        if (req.method === 'POST' && url.pathname === '/__fake/script') {
          const s = JSON.parse(body.toString('utf8'));
          scripts.set(key(s.method ?? '*', s.path ?? '*'), { responses: [...(s.responses ?? [])], default: s.default });
          return res.end('{"ok":true}');
        }
        if (req.method === 'GET' && url.pathname === '/__fake/stats') {
          return res.end(JSON.stringify({ open, max_open: maxOpen }));
        }
        const answer = control ? await control(req.method, url.pathname, body.length ? JSON.parse(body.toString('utf8')) : null) : undefined;
        if (answer !== undefined) return res.end(JSON.stringify(answer));
        res.statusCode = 404;
        return res.end('{"error":"unknown control path"}');
      }
      open++;
      maxOpen = Math.max(maxOpen, open);
      const record = {
        seq: ++seq,
        method: req.method,
        path: url.pathname,
        query: Object.fromEntries(url.searchParams),
        headers: req.headers,
        body_text: body.toString('utf8'),
        body_base64: body.toString('base64'),
        received_at: Date.now(),
        response: null,
      };
      if (onRecord) onRecord(record, body);
      records.push(record);
      const r = nextResponse(req.method, url.pathname) ?? (handle ? await handle(record) : undefined) ??
        { status: 200, body: { ok: true } };
      try {
        if (r.hold) await new Promise((ok) => held.push(ok));
        if (r.delay_ms) await new Promise((ok) => setTimeout(ok, r.delay_ms));
        if (r.drop) {
          record.response = { drop: true };
          if (typeof req.socket.resetAndDestroy === 'function') req.socket.resetAndDestroy();
          else req.socket.destroy();
          return;
        }
        if (res.destroyed || req.socket.destroyed) {
          record.response = { client_gone: true };
          return;
        }
        record.response = { status: r.status ?? 200, ...send(res, r) };
      } finally {
        open--;
        if (onAnswer) onAnswer(record);
      }
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((ok) => server.listen(port, host, ok));
  const actual = server.address().port;
  const base = `http://${host}:${actual}`;

  return {
    port: actual,
    url: base,
    requests: (path) => (path ? records.filter((r) => r.path === path) : [...records]),
    script: (s) => scripts.set(key(s.method ?? '*', s.path ?? '*'), { responses: [...(s.responses ?? [])], default: s.default }),
    reset: () => { records = []; scripts = new Map(); maxOpen = open; },
    maxOpen: () => maxOpen,
    release: () => { for (const ok of held.splice(0)) ok(); },
    close: () => new Promise((ok) => { for (const ok2 of held.splice(0)) ok2(); for (const s of sockets) s.destroy(); server.close(() => ok()); }),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const i = process.argv.indexOf('--port');
  const fake = await startRecorder({ port: i > 0 ? Number(process.argv[i + 1]) : 0 });
  console.log(`recorder listening on ${fake.url}`);
}
