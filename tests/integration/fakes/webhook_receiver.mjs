// A webhook receiver for the integration tests: a small HTTP server that
// records every delivery and checks its Standard Webhooks signature with its
// own implementation (node:crypto), independent of the server's C code.
import crypto from 'node:crypto';

import { readBody, startLoopback } from './server.mjs';

// Standard Webhooks verification: HMAC-SHA256 over "{id}.{timestamp}.{body}"
// keyed with the base64-decoded secret after "whsec_"; the header holds
// space-separated "v1,<base64>" signatures; the timestamp must be recent.
export function verifySignature(secret, headers, body, { toleranceSec = 300 } = {}) {
  const id = headers['webhook-id'];
  const ts = headers['webhook-timestamp'];
  const sigs = headers['webhook-signature'];
  if (!id || !ts || !sigs || !secret?.startsWith('whsec_')) return false;
  if (!/^\d+$/.test(ts) || Math.abs(Date.now() / 1000 - Number(ts)) > toleranceSec) return false;
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  const want = crypto.createHmac('sha256', key).update(`${id}.${ts}.${body}`).digest();
  return sigs.split(' ').some((s) => {
    const [version, b64] = s.split(',');
    if (version !== 'v1' || !b64) return false;
    const got = Buffer.from(b64, 'base64');
    return got.length === want.length && crypto.timingSafeEqual(got, want);
  });
}

// Starts a receiver on 127.0.0.1 (any port, on the fakes' loopback server).
// r.url is its endpoint; r.received the requests in arrival order ({id,
// timestamp, signature, body, json, headers, status}); r.failNext = N
// answers the next N with 500; r.failing = true answers every one with 500;
// r.close() stops it.
export async function startReceiver() {
  const r = { received: [], failNext: 0, failing: false };
  const lb = await startLoopback(async (req, res) => {
    const body = ((await readBody(req, 1 << 20)) || Buffer.alloc(0)).toString('utf8');
    let json;
    try { json = JSON.parse(body); } catch { json = undefined; }
    let status = 204;
    if (r.failing) status = 500;
    else if (r.failNext > 0) { r.failNext--; status = 500; }
    r.received.push({
      id: req.headers['webhook-id'], timestamp: req.headers['webhook-timestamp'],
      signature: req.headers['webhook-signature'], headers: req.headers, method: req.method,
      path: req.url, body, json, status,
    });
    res.writeHead(status, { 'content-type': 'text/plain' });
    res.end(status === 204 ? '' : 'receiver says no');
  });
  r.url = `${lb.url}/hook`;
  r.close = () => lb.close();
  return r;
}
