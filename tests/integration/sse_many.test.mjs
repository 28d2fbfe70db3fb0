// Many idle event streams hold no HTTP thread: 300 open streams (far more
// than the server's event-loop and handler threads) all get their first
// frame, the API keeps answering, and one balance change reaches every
// stream of that user and none of another user's.
import { test, assert, serverFor, sse, api } from './harness.mjs';

test('300 idle SSE streams: the API still answers and a change reaches every stream', async (t) => {
  // Every stream comes from 127.0.0.1 and 200 are one user's: past the
  // defaults (256 connections per address, 32 streams per user).
  const srv = await serverFor(t, { args: ['--max-connections-per-address', '1000', '--max-streams-per-user', '500'] });
  const admin = await srv.createUser({ admin: true });
  const u = await srv.createUser({ tokens: 3 });
  const other = await srv.createUser({ tokens: 7 });

  const streams = [];
  t.after(() => streams.forEach((s) => s.close()));
  for (let i = 0; i < 300; i++) {
    streams.push(await sse(srv, '/api/events', { key: i % 3 === 2 ? other.key : u.key }));
  }
  await Promise.all(streams.map((s) => s.until((f) => f.event === 'balance', 15000)));

  const me = await api(srv, 'GET', '/api/me', { key: u.key, timeout: 10000 });
  assert.equal(me.status, 200);

  const grant = await api(srv, 'POST', `/api/admin/users/${me.data.user._id}/tokens`,
    { key: admin.key, body: { amount: 5, reason: 'fan-out' } });
  assert.equal(grant.status, 200, grant.text);
  const mine = streams.filter((_, i) => i % 3 !== 2);
  const theirs = streams.filter((_, i) => i % 3 === 2);
  await Promise.all(mine.map((s) => s.until((f) => f.event === 'balance' && f.json?.tokenBalance === 8, 15000)));
  for (const s of theirs) {
    assert.ok(s.frames.every((f) => f.json?.tokenBalance === 7), 'another user\'s stream saw only its own balance');
  }
});
