// The intake (src/intake.c): the server's own listening socket sorts each
// new connection, by its first bytes, into the stream lane (small buffers)
// or the API lane. Whatever lane a request lands in, it must get the same
// answer; the connection limits must count connections in both lanes and
// those not yet sorted, and give each one back when it closes.
import {
  test, assert, serverFor, api, assertOk, createUser, rawConn, sleep, waitFor,
} from './harness.mjs';

const streamRequest = (key, extra = '') =>
  `GET /api/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nAuthorization: Bearer ${key}\r\n${extra}\r\n`;

async function untilFrame(c, what) {
  await waitFor(() => /event: balance\n/.test(c.data) || c.closed, { timeout: 10000, what });
  assert.match(c.data, /^HTTP\/1\.1 200 /, `${what}: ${c.data.slice(0, 200)}`);
  assert.match(c.data, /event: balance\nid: \d+\ndata: \{"tokenBalance":7\}/, `${what}: the first frame`);
}

test('lanes: a stream whose headers are small, large (a 6 KB cookie) or trickled a byte at a time gets the same stream', async (t) => {
  const s = await serverFor(t);
  const u = await createUser(s.dataDir, { tokens: 7 });
  const conns = [];
  t.after(() => conns.forEach((c) => c.sock.destroy()));

  const small = rawConn(s);
  conns.push(small);
  await small.opened;
  small.sock.write(streamRequest(u.key));
  await untilFrame(small, 'small headers');

  // Too large for the stream lane's buffers: served by the API lane.
  const large = rawConn(s);
  conns.push(large);
  await large.opened;
  large.sock.write(streamRequest(u.key, `Cookie: big=${'c'.repeat(6000)}\r\n`));
  await untilFrame(large, 'a 6 KB cookie');

  // The sorting waits for the bytes that decide; none are lost.
  const trickled = rawConn(s);
  conns.push(trickled);
  await trickled.opened;
  for (const ch of streamRequest(u.key)) {
    trickled.sock.write(ch);
    await sleep(2);
  }
  await untilFrame(trickled, 'trickled headers');

  // Streams on either lane see the same change.
  const admin = await createUser(s.dataDir, { admin: true });
  assertOk(await api(s, 'POST', `/api/admin/users/${u.userId}/tokens`, { key: admin.key, body: { amount: 2, reason: 'lanes' } }), 200);
  for (const [c, what] of [[small, 'small'], [large, 'large'], [trickled, 'trickled']])
    await waitFor(() => c.data.includes('"tokenBalance":9'), { timeout: 10000, what: `${what}: the new balance` });
});

test('lanes: a request that only starts like a stream, a pipelined pair and a stream with an error are answered as before', async (t) => {
  const s = await serverFor(t);
  const u = await createUser(s.dataDir, { tokens: 7 });
  const ask = async (bytes) => {
    const c = rawConn(s);
    t.after(() => c.sock.destroy());
    await c.opened;
    c.sock.write(bytes);
    await waitFor(() => c.closed || /\r\n\r\n/.test(c.data), { timeout: 10000, what: 'an answer' });
    return c;
  };
  const near = await ask('GET /api/eventsX HTTP/1.1\r\nHost: x\r\n\r\n');
  assert.match(near.data, /^HTTP\/1\.1 404 /, near.data.slice(0, 100));
  const gen = await ask(`GET /api/generations/gen_nope/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${u.key}\r\n\r\n`);
  assert.match(gen.data, /^HTTP\/1\.1 404 /, gen.data.slice(0, 100));
  assert.match(gen.data, /GENERATION_NOT_FOUND/);
  const unauth = await ask('GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n');
  assert.match(unauth.data, /^HTTP\/1\.1 401 /, unauth.data.slice(0, 100));
  // Two requests in one write, on the API lane: both answered, in order.
  const pair = await ask('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /api/me HTTP/1.1\r\nHost: x\r\n' +
    `Authorization: Bearer ${u.key}\r\nConnection: close\r\n\r\n`);
  await pair.ended;
  const statuses = [...pair.data.matchAll(/HTTP\/1\.1 (\d+) /g)].map((m) => m[1]);
  assert.deepEqual(statuses, ['200', '200'], pair.data.slice(0, 300));
  assert.match(pair.data, /"tokenBalance":7/);
});

test('lanes: --max-connections counts connections not yet sorted and gives back every closed one, in either lane', async (t) => {
  const s = await serverFor(t, { args: ['--max-connections', '16'] });
  const u = await createUser(s.dataDir, { tokens: 7 });
  const admin = await createUser(s.dataDir, { admin: true });
  const conns = [];
  t.after(() => conns.forEach((c) => c.sock.destroy()));
  const open = async (n) => {
    const batch = Array.from({ length: n }, () => rawConn(s));
    conns.push(...batch);
    await Promise.all(batch.map((c) => c.opened.catch(() => {})));
    return batch;
  };
  // One request on a connection of its own (fetch would keep one open).
  const once = async (path, { key, body } = {}) => {
    const [c] = await open(1);
    const head = body === undefined ? `GET ${path}` : `POST ${path}`;
    const auth = key ? `Authorization: Bearer ${key}\r\n` : '';
    const data = body === undefined ? '' : JSON.stringify(body);
    const length = body === undefined ? '' : `Content-Type: application/json\r\nContent-Length: ${data.length}\r\n`;
    c.sock.write(`${head} HTTP/1.1\r\nHost: x\r\n${auth}${length}Connection: close\r\n\r\n${data}`);
    await c.ended;
    return c.data;
  };
  const healthz = 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n';
  // Three rounds of 16 connections: idle ones; streams (12: they may take
  // 3/4 of the connections) beside keep-alive API requests; API requests
  // only. Each round fits only if the one before gave back all of its own.
  for (const round of ['idle', 'stream', 'api']) {
    const batch = await open(16);
    if (round === 'stream') batch.forEach((c, i) => c.sock.write(i < 12 ? streamRequest(u.key) : healthz));
    if (round === 'api') batch.forEach((c) => c.sock.write(healthz));
    if (round !== 'idle')
      await waitFor(() => batch.every((c) => /\r\n\r\n/.test(c.data)), { timeout: 10000, what: `${round}: 16 answers` });
    assert.equal(batch.filter((c) => c.closed).length, 0, `${round}: all 16 open`);
    assert.ok(batch.every((c) => !c.data.startsWith('HTTP/1.1 5')), `${round}: no refusals`);
    const [extra] = await open(1);
    await waitFor(() => extra.closed, { timeout: 10000, what: `${round}: the 17th connection is closed` });
    assert.equal(extra.data, '', 'closed without an answer');
    batch.forEach((c) => c.sock.destroy());
    await Promise.all(batch.map((c) => c.ended));
    await waitFor(async () => {
      // A suspended stream learns that its client left only when a write
      // fails (the first after the close usually succeeds): changes wake them.
      if (round === 'stream') {
        const r = await once(`/api/admin/users/${u.userId}/tokens`, { key: admin.key, body: { amount: 1, reason: 'wake' } });
        assert.match(r, /^HTTP\/1\.1 200 /, r.slice(0, 100));
      }
      // the only connection left is the one asking
      return /^stylestudio_connections_open 1$/m.test(await once('/metrics'));
    }, { timeout: 10000, interval: 200, what: `${round}: every connection given back` });
    // The asking connection's own slot is given back when the server has
    // closed it, a moment after the client sees the close (under ASan it
    // was once still counted when the next round opened its 16).
    await sleep(250);
  }
});
