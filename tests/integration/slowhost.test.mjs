// A slow remote image host must not stall the API: creates that fetch a
// remote image wait on their own pool, while every other request answers.
// The image host below holds every response until the test releases it, so
// nothing here depends on timing.
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { test, assert, serverFor, api, createBody, fixture, waitFor, balance, execute, uploadFixture, waitGen, withTimeout } from './harness.mjs';

test('creates held by a slow image host leave the API responsive, then complete', async (t) => {
  const jpeg = readFileSync(fixture('product.jpg'));
  const held = [];
  const host = createServer((req, res) => held.push(res));
  await new Promise((r) => host.listen(0, '127.0.0.1', r));
  t.after(() => host.close());
  const release = () => {
    for (const res of held.splice(0)) {
      res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': jpeg.length });
      res.end(jpeg);
    }
  };
  t.after(release);

  const srv = await serverFor(t);
  const u = await srv.createUser({ tokens: 20 });
  const url = `http://127.0.0.1:${host.address().port}/product.jpg`;
  const N = 12; // more than the server's quick handler threads
  const creates = Array.from({ length: N }, () =>
    api(srv, 'POST', '/api/generation/create', { key: u.key, body: createBody(url) }));

  await waitFor(() => held.length === N, { timeout: 15000, what: `${N} image fetches in flight` });
  // Every fetch is parked on the image host; the API still answers.
  const me = await api(srv, 'GET', '/api/me', { key: u.key, timeout: 10000 });
  assert.equal(me.status, 200);
  assert.equal(me.data.tokenBalance, 20, 'nothing is charged before the images are checked');
  const models = await api(srv, 'GET', '/api/models', { timeout: 10000 });
  assert.equal(models.status, 200);

  release();
  const results = await Promise.all(creates);
  for (const r of results) assert.equal(r.status, 201, r.text);
  assert.equal(await balance(srv, u.key), 20 - N);
});

test('a remote image is fetched once, at create, and the worker uses the stored copy', async (t) => {
  const jpeg = readFileSync(fixture('product.jpg'));
  let served = 0;
  const host = createServer((req, res) => {
    if (served++ === 0) { // the create-time fetch gets the image
      res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': jpeg.length });
      res.end(jpeg);
      return;
    }
    res.writeHead(500); // any later fetch would fail the generation
    res.end();
  });
  await new Promise((r) => host.listen(0, '127.0.0.1', r));
  t.after(() => host.closeAllConnections() || host.close());

  const srv = await serverFor(t);
  const u = await srv.createUser({ tokens: 5 });
  const url = `http://127.0.0.1:${host.address().port}/product.jpg`;
  const created = await api(srv, 'POST', '/api/generate', {
    key: u.key, body: createBody(url), headers: { prefer: 'wait=30' } });
  assert.equal(created.status, 200, created.text);
  const id = created.data.generationId;
  const rec = (await api(srv, 'GET', `/api/generations/${id}`, { key: u.key })).data;
  assert.equal(rec.status, 'completed', JSON.stringify(rec));
  assert.equal(served, 1, 'the image host was asked once');
  assert.ok(rec.productImages[0].startsWith(`${srv.baseUrl}/media/u/`), rec.productImages[0]);
  const copy = await fetch(rec.productImages[0]);
  assert.equal(copy.status, 200);
  assert.deepEqual(Buffer.from(await copy.arrayBuffer()), jpeg, 'the stored copy is the fetched bytes');
  assert.equal(await balance(srv, u.key), 4);
});

// Records from before inputs were imported at create may still hold a
// remote URL: the worker fetches it through the net loop without holding
// its thread, so other work goes on; a cancel drops the transfer.
async function oldStyleRecord(srv, u, url) {
  const own = await uploadFixture(srv, u.key);
  const c = await api(srv, 'POST', '/api/generation/create', { key: u.key, body: createBody(own) });
  assert.equal(c.status, 201, c.text);
  const id = c.data.generationId;
  await execute(srv.dbPath, `UPDATE generations SET product_images = '${JSON.stringify([url])}' WHERE id = '${id}'`);
  return id;
}

test('a remote input of an old record is fetched without holding the worker; a cancel drops the transfer', async (t) => {
  const jpeg = readFileSync(fixture('product.jpg'));
  const held = new Map(); // request path → the response it waits for
  const host = createServer((req, res) => held.set(req.url, res));
  await new Promise((r) => host.listen(0, '127.0.0.1', r));
  t.after(() => host.closeAllConnections() || host.close());
  const base = `http://127.0.0.1:${host.address().port}`;

  const srv = await serverFor(t, { workers: 1 });
  const u = await srv.createUser({ tokens: 10 });
  const a = await oldStyleRecord(srv, u, `${base}/a.jpg`);
  const b = await oldStyleRecord(srv, u, `${base}/b.jpg`);
  assert.equal((await api(srv, 'POST', '/api/generate', { key: u.key, body: { generationId: a } })).status, 202);
  assert.equal((await api(srv, 'POST', '/api/generate', { key: u.key, body: { generationId: b } })).status, 202);
  await waitFor(() => held.size === 2, { timeout: 15000, what: 'both fetches at the image host' });

  // The one worker is free while both fetches wait: a third generation completes.
  const own = await uploadFixture(srv, u.key);
  const c = await api(srv, 'POST', '/api/generate', { key: u.key, body: createBody(own), headers: { prefer: 'wait=30' } });
  assert.equal(c.status, 200, c.text);
  assert.equal(c.data.status, 'completed');

  // Cancel a: its transfer is dropped well before the 20 s fetch limit.
  const closed = new Promise((r) => held.get('/a.jpg').on('close', r));
  assert.equal((await api(srv, 'POST', `/api/generations/${a}/cancel`, { key: u.key })).status, 200);
  await withTimeout(closed, 5000, 'the cancelled fetch was not dropped');

  // Release b: the worker uses the fetched bytes and completes it.
  const release = held.get('/b.jpg');
  release.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': jpeg.length });
  release.end(jpeg);
  assert.equal((await waitGen(srv, u.key, b, { timeout: 20000 })).status, 'completed');
  assert.equal(await balance(srv, u.key), 10 - 2, 'a refunded; b and the third charged');
});
