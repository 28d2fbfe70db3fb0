// The loopback HTTP server under both fake providers: 127.0.0.1 on port 0,
// tuned so that many slow answers at once are not throttled by the server
// itself (no request/headers timeout, long keep-alive, no connection cap, a
// deep listen backlog), and a close() that ends every socket and timer so a
// test file never hangs on a fake.
import http from 'node:http';
import https from 'node:https';

export async function startLoopback(handler) {
  const sockets = new Set();
  const timers = new Set();
  const server = http.createServer({ requestTimeout: 0, headersTimeout: 0, keepAliveTimeout: 65_000 }, (req, res) => {
    Promise.resolve(handler(req, res)).catch((err) => {
      if (!res.headersSent) {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`fake provider crashed: ${err?.stack || err}`);
      } else res.destroy();
    });
  });
  server.maxConnections = Infinity;
  server.maxHeadersCount = 0;
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, resolve);
  });
  const url = `http://127.0.0.1:${server.address().port}`;
  let closed = false;

  // setTimeout that never keeps the process alive and is cancelled by close().
  const later = (fn, ms) => {
    if (closed) return null;
    const t = setTimeout(() => { timers.delete(t); fn(); }, Math.max(0, ms));
    t.unref();
    timers.add(t);
    return t;
  };
  const sleep = (ms) => new Promise((resolve) => { if (!later(resolve, ms)) resolve(); });

  async function close() {
    if (closed) return;
    closed = true;
    for (const t of timers) clearTimeout(t);
    timers.clear();
    const done = new Promise((resolve) => server.close(() => resolve()));
    server.closeAllConnections?.();
    for (const s of sockets) s.destroy();
    await done;
  }
  return { server, url, later, sleep, close, isClosed: () => closed };
}

// The whole request body as a Buffer; null (and the socket is destroyed)
// past `limit` bytes.
export function readBody(req, limit = 256 << 20) {
  return new Promise((resolve, reject) => {
    const parts = [];
    let n = 0;
    req.on('data', (c) => {
      n += c.length;
      if (n > limit) { req.destroy(); resolve(null); return; }
      parts.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(parts)));
    req.on('error', reject);
  });
}

export function sendJson(res, status, obj, headers = {}) {
  const body = typeof obj === 'string' ? obj : JSON.stringify(obj);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

// One outbound request with no connection pooling (agent: false), so nothing
// lingers after the fake closes. Resolves {status, headers, body: Buffer} or
// rejects on connection errors, after `timeoutMs`, or when `signal` aborts.
export function request(url, { method = 'GET', headers = {}, body, timeoutMs = 5000, maxBytes = 64 << 20, signal } = {}) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const mod = u.protocol === 'https:' ? https : u.protocol === 'http:' ? http : null;
    if (!mod) { reject(new Error(`unsupported URL scheme ${u.protocol}`)); return; }
    const req = mod.request(u, { method, headers, agent: false, signal }, (res) => {
      const parts = [];
      let n = 0;
      res.on('data', (c) => {
        n += c.length;
        if (n > maxBytes) { req.destroy(new Error(`more than ${maxBytes} bytes`)); return; }
        parts.push(c);
      });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(parts) }));
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

// Helpers for scripts: an object applies to every call, an array to calls by
// index (past its end: default behaviour), a function is asked each time.
export function pickScript(script, args) {
  if (!script) return {};
  if (typeof script === 'function') return script(...args) || {};
  if (Array.isArray(script)) return script[args[1]] || {};
  return script;
}
