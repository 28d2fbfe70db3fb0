// Input rules: uploads, create-body validation (every broken field listed),
// image URL rules, models, cost, insufficient tokens, body size limits —
// and that a refused request changes nothing.
import { before, after } from 'node:test';
import { readFileSync } from 'node:fs';
import { deflateSync } from 'node:zlib';
import {
  test, assert, startServer, api, assertOk, assertError, errorFields, createUser, upload,
  uploadFixture, fixture, imageSize, createBody, create, start, waitGen, balance, countGenerations,
  fileSize,
} from './harness.mjs';

let srv;
let shared; // a user with a stored upload, for bodies that need a valid image URL
let productUrl;
before(async () => {
  srv = await startServer();
  shared = await createUser(srv.dataDir, { tokens: 0 });
  productUrl = await uploadFixture(srv, shared.key, 'product.jpg');
});
after(() => srv?.stop());

async function snapshot(key) {
  return { balance: await balance(srv, key), generations: await countGenerations(srv, key) };
}

// ---------------------------------------------------------------- uploads

test('upload raw JPEG → 201 {url, width, height, format, bytes} matching the file; /media serves it back byte for byte', async () => {
  const u = await createUser(srv.dataDir, { tokens: 0 });
  const path = fixture('product.jpg');
  const bytes = readFileSync(path);
  const want = imageSize(bytes);
  const r = await upload(srv, u.key, path, { mode: 'raw' });
  const d = assertOk(r, 201, 'raw upload');
  assert.equal(d.format, 'jpeg');
  assert.equal(d.width, want.width);
  assert.equal(d.height, want.height);
  assert.equal(d.bytes, fileSize(path));
  assert.ok(d.url.startsWith(`${srv.baseUrl}/media/`), `upload URL ${d.url} must be under ${srv.baseUrl}/media/ (the real port)`);
  assert.match(d.url.split('/').pop(), /^[A-Za-z0-9]{20,}\.(jpe?g)$/, 'media names must be unguessable (long random) with a jpeg extension');
  const m = await fetch(d.url);
  assert.equal(m.status, 200);
  assert.equal(m.headers.get('content-type'), 'image/jpeg');
  assert.ok(m.headers.get('etag'), 'media must carry an ETag');
  assert.match(m.headers.get('cache-control') || '', /max-age=(\d{5,})|immutable/, 'media must carry long-lived Cache-Control');
  assert.ok(m.headers.get('x-request-id'), '/media responses carry X-Request-Id too');
  assert.ok(Buffer.from(await m.arrayBuffer()).equals(bytes), '/media must return the uploaded bytes');
});

test('upload multipart PNG (field "file") → 201 format png', async () => {
  const u = await createUser(srv.dataDir, { tokens: 0 });
  const path = fixture('product2.png');
  const want = imageSize(readFileSync(path));
  const d = assertOk(await upload(srv, u.key, path, { mode: 'multipart' }), 201, 'multipart upload');
  assert.equal(d.format, 'png');
  assert.equal(d.width, want.width);
  assert.equal(d.height, want.height);
  assert.equal(d.bytes, fileSize(path));
  const m = await fetch(d.url);
  assert.equal(m.status, 200);
  assert.equal(m.headers.get('content-type'), 'image/png');
});

test('upload of a non-image (raw with an image type, multipart), a truncated JPEG, or a wrong content type → IMAGE_VALIDATION_ERROR', async () => {
  const u = await createUser(srv.dataDir, { tokens: 0 });
  const cases = [
    ['not-image.txt raw as image/jpeg', () => upload(srv, u.key, fixture('not-image.txt'), { mode: 'raw', contentType: 'image/jpeg' })],
    ['not-image.txt multipart', () => upload(srv, u.key, fixture('not-image.txt'), { mode: 'multipart' })],
    ['not-image.txt multipart claiming image/png', () => upload(srv, u.key, fixture('not-image.txt'), { mode: 'multipart', contentType: 'image/png' })],
    ['truncated.jpg raw', () => upload(srv, u.key, fixture('truncated.jpg'), { mode: 'raw' })],
    ['truncated.jpg multipart', () => upload(srv, u.key, fixture('truncated.jpg'), { mode: 'multipart' })],
  ];
  for (const [what, fn] of cases) assertError(await fn(), 400, 'IMAGE_VALIDATION_ERROR', what);
  // A raw text/plain body is neither an image type nor multipart.
  const txt = await upload(srv, u.key, fixture('not-image.txt'), { mode: 'raw', contentType: 'text/plain' });
  assert.equal(txt.status, 400, `raw text/plain upload → ${txt.status}`);
  assert.ok(['IMAGE_VALIDATION_ERROR', 'VALIDATION_ERROR'].includes(txt.json?.code), `raw text/plain upload code ${txt.json?.code}`);
  // Without credentials.
  assertError(await upload(srv, undefined, fixture('product.jpg')), 401, 'AUTHENTICATION_REQUIRED', 'upload without key');
});

// A 64×48 lossy WebP (made with `vips webpsave`), inline so no fixture is needed.
const TINY_WEBP = Buffer.from('UklGRgoBAABXRUJQVlA4WAoAAAAIAAAAPwAALwAAVlA4ICoAAABQAwCdASpAADAAPtFor1IoJiQioqgBABoJaQAAE/GOHwhFgAD+8sIAAABFWElGugAAAEV4aWYAAElJKgAIAAAABgASAQMAAQAAAAEAAAAaAQUAAQAAAFYAAAAbAQUAAQAAAF4AAAAoAQMAAQAAAAIAAAATAgMAAQAAAAEAAABphwQAAQAAAGYAAAAAAAAAOGMAAOgDAAA4YwAA6AMAAAYAAJAHAAQAAAAwMjEwAZEHAAQAAAABAgMAAKAHAAQAAAAwMTAwAaADAAEAAAD//wAAAqAEAAEAAABAAAAAA6AEAAEAAAAwAAAAAAAAAA==', 'base64');

// A valid grayscale PNG of w×h black pixels (compresses to a few KB).
function blackPng(w, h) {
  const crcTable = Array.from({ length: 256 }, (_, n) => { let c = n; for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1; return c >>> 0; });
  const crc = (buf) => { let c = 0xffffffff; for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8); return (c ^ 0xffffffff) >>> 0; };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const c = Buffer.alloc(4); c.writeUInt32BE(crc(td));
    return Buffer.concat([len, td, c]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(h, 4); ihdr[8] = 8; ihdr[9] = 0;
  const raw = Buffer.alloc((w + 1) * h, 0);
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw, { level: 9 })), chunk('IEND', Buffer.alloc(0))]);
}

test('upload raw WebP → 201 format webp; /media serves image/webp', async () => {
  const u = await createUser(srv.dataDir, { tokens: 0 });
  const d = assertOk(await api(srv, 'POST', '/api/upload', { key: u.key, rawBody: TINY_WEBP, headers: { 'content-type': 'image/webp' } }), 201, 'webp upload');
  assert.deepEqual([d.format, d.width, d.height, d.bytes], ['webp', 64, 48, TINY_WEBP.length]);
  const m = await fetch(d.url);
  assert.equal(m.status, 200);
  assert.equal(m.headers.get('content-type'), 'image/webp');
});

test('upload over 40 megapixels (small file, 7000×7000 PNG) → IMAGE_VALIDATION_ERROR; 6000×6000 is accepted', async () => {
  const u = await createUser(srv.dataDir, { tokens: 0 });
  const big = blackPng(7000, 7000);
  assert.ok(big.length < 10 * 1024 * 1024);
  const r = await api(srv, 'POST', '/api/upload', { key: u.key, rawBody: big, headers: { 'content-type': 'image/png' } });
  assertError(r, 400, 'IMAGE_VALIDATION_ERROR', '49-megapixel PNG');
  const ok = await api(srv, 'POST', '/api/upload', { key: u.key, rawBody: blackPng(6000, 6000), headers: { 'content-type': 'image/png' } });
  const d = assertOk(ok, 201, '36-megapixel PNG');
  assert.deepEqual([d.width, d.height, d.format], [6000, 6000, 'png']);
});

test('upload with an empty body, or multipart without a "file" field → 400', async () => {
  const u = await createUser(srv.dataDir, { tokens: 0 });
  const empty = await api(srv, 'POST', '/api/upload', { key: u.key, rawBody: Buffer.alloc(0), headers: { 'content-type': 'image/jpeg' } });
  assert.equal(empty.status, 400, `empty upload → ${empty.status}`);
  assert.ok(['IMAGE_VALIDATION_ERROR', 'VALIDATION_ERROR'].includes(empty.json?.code));
  const form = new FormData();
  form.append('picture', new Blob([readFileSync(fixture('product.jpg'))], { type: 'image/jpeg' }), 'p.jpg');
  const wrong = await api(srv, 'POST', '/api/upload', { key: u.key, rawBody: form });
  assert.equal(wrong.status, 400, `multipart without "file" → ${wrong.status}`);
  assert.ok(['IMAGE_VALIDATION_ERROR', 'VALIDATION_ERROR'].includes(wrong.json?.code));
});

test('/media refuses path tricks: traversal, unknown kinds, the database file', async () => {
  for (const p of ['/media/../stylestudio.db', '/media/u/../../stylestudio.db', '/media/u/..%2F..%2Fstylestudio.db',
    '/media/x/abc.png', '/media/stylestudio.db', '/media/', '/media/u/', '/media/u/%2e%2e/%2e%2e/stylestudio.db']) {
    const r = await fetch(srv.url(p));
    const body = Buffer.from(await r.arrayBuffer());
    assert.ok(r.status === 404 || r.status === 400, `GET ${p} → ${r.status}`);
    assert.ok(!body.subarray(0, 16).toString('latin1').startsWith('SQLite format'), `GET ${p} leaked the database`);
  }
});

test('upload over 10 MB → 413 PAYLOAD_TOO_LARGE', async () => {
  const u = await createUser(srv.dataDir, { tokens: 0 });
  const big = Buffer.alloc(10 * 1024 * 1024 + 4096, 0);
  big.set(readFileSync(fixture('product.jpg')).subarray(0, 1024));
  let r;
  try {
    r = await api(srv, 'POST', '/api/upload', { key: u.key, rawBody: big, headers: { 'content-type': 'image/jpeg' } });
  } catch (e) {
    assert.fail(`an over-limit upload must get a 413 answer, not a dropped connection (${e.cause?.code || e.message})`);
  }
  assertError(r, 413, 'PAYLOAD_TOO_LARGE', 'raw 10 MB + 4 KB upload');
});

// ---------------------------------------------------------------- create validation

test('VALIDATION_ERROR lists every broken field of a create body, and changes nothing', async () => {
  const u = await createUser(srv.dataDir, { tokens: 10 });
  const before = await snapshot(u.key);
  const body = {
    productImages: [],
    modelImages: 'not-an-array',
    style: 'baroque',
    quality: 'ultra',
    aspectRatio: '5:7',
    customPrompt: 'x'.repeat(501),
    parameters: { guidance_scale: 50, num_inference_steps: 5, strength: 2, seed: -1 },
    priority: 'urgent',
  };
  const r = await api(srv, 'POST', '/api/generation/create', { key: u.key, body });
  assertError(r, 400, 'VALIDATION_ERROR');
  const fields = errorFields(r);
  for (const f of ['productImages', 'modelImages', 'model', 'style', 'quality', 'aspectRatio', 'customPrompt',
    'parameters.guidance_scale', 'parameters.num_inference_steps', 'parameters.strength', 'parameters.seed', 'priority']) {
    assert.ok(fields.includes(f), `validationErrors lacks ${f}; got ${JSON.stringify(fields)}`);
  }
  for (const e of r.json.validationErrors) assert.ok(typeof e.message === 'string' && e.message.length > 0, `empty message for ${e.field}`);
  assert.deepEqual(await snapshot(u.key), before, 'a refused create must change nothing');
});

test('VALIDATION_ERROR for wrong types and bad URLs, field by field', async () => {
  const u = await createUser(srv.dataDir, { tokens: 10 });
  const before = await snapshot(u.key);
  const cases = [
    [{ productImages: 'http://x/a.jpg' }, 'productImages'],
    [{ productImages: [42] }, 'productImages'],
    [{ productImages: ['ftp://example.com/a.jpg'] }, 'productImages'],
    [{ productImages: ['not a url'] }, 'productImages'],
    [{ productImages: [`http://example.com/${'a'.repeat(2100)}.jpg`] }, 'productImages'],
    [{ productImages: Array(6).fill(productUrl) }, 'productImages'],
    [{ modelImages: Array(4).fill(productUrl) }, 'modelImages'],
    [{ model: 7 }, 'model'],
    [{ style: true }, 'style'],
    [{ quality: null }, 'quality'],
    [{ aspectRatio: 1.5 }, 'aspectRatio'],
    [{ customPrompt: 12 }, 'customPrompt'],
    [{ parameters: 'fast' }, 'parameters'],
    [{ parameters: { guidance_scale: '7' } }, 'parameters.guidance_scale'],
    [{ parameters: { guidance_scale: 0.5 } }, 'parameters.guidance_scale'],
    [{ parameters: { num_inference_steps: 50.5 } }, 'parameters.num_inference_steps'],
    [{ parameters: { num_inference_steps: 101 } }, 'parameters.num_inference_steps'],
    [{ parameters: { strength: 0.05 } }, 'parameters.strength'],
    [{ parameters: { seed: 2147483648 } }, 'parameters.seed'],
    [{ parameters: { seed: true } }, 'parameters.seed'],
    [{ priority: 'high' }, 'priority'], // free plan
  ];
  for (const [over, field] of cases) {
    const r = await api(srv, 'POST', '/api/generation/create', { key: u.key, body: createBody(productUrl, over) });
    assertError(r, 400, 'VALIDATION_ERROR', `create with ${JSON.stringify(over).slice(0, 80)}`);
    const fields = errorFields(r);
    assert.ok(fields.some((f) => f === field || f.startsWith(`${field}[`)), `expected a validation error on ${field} for ${JSON.stringify(over).slice(0, 80)}, got ${JSON.stringify(r.json.validationErrors)}`);
    assert.equal(fields.length, 1, `only ${field} is broken in ${JSON.stringify(over).slice(0, 80)}, got ${JSON.stringify(fields)}`);
  }
  // Missing required fields, each one.
  for (const f of ['productImages', 'model', 'style', 'quality', 'aspectRatio']) {
    const body = createBody(productUrl);
    delete body[f];
    const r = await api(srv, 'POST', '/api/generation/create', { key: u.key, body });
    assertError(r, 400, 'VALIDATION_ERROR', `missing ${f}`);
    assert.deepEqual(errorFields(r), [f]);
  }
  // Not an object at all.
  for (const body of [[], 'text', 5, null]) {
    assertError(await api(srv, 'POST', '/api/generation/create', { key: u.key, body }), 400, 'VALIDATION_ERROR', `body ${JSON.stringify(body)}`);
  }
  assert.deepEqual(await snapshot(u.key), before, 'refused creates must change nothing');
});

test('malformed JSON, a JSON body over --max-body, and an empty body → the right error; nothing changes', async () => {
  const u = await createUser(srv.dataDir, { tokens: 10 });
  const before = await snapshot(u.key);
  for (const raw of ['{"productImages": [', '{productImages: 1}', 'null garbage', '\u0000']) {
    const r = await api(srv, 'POST', '/api/generation/create', { key: u.key, rawBody: raw, headers: { 'content-type': 'application/json' } });
    assertError(r, 400, 'VALIDATION_ERROR', `malformed JSON ${JSON.stringify(raw)}`);
  }
  const empty = await api(srv, 'POST', '/api/generation/create', { key: u.key, rawBody: '', headers: { 'content-type': 'application/json' } });
  assertError(empty, 400, 'VALIDATION_ERROR', 'empty body');
  const malformedGenerate = await api(srv, 'POST', '/api/generate', { key: u.key, rawBody: '{"generationId":', headers: { 'content-type': 'application/json' } });
  assertError(malformedGenerate, 400, 'VALIDATION_ERROR', 'malformed JSON on /api/generate');

  const huge = JSON.stringify(createBody(productUrl, { customPrompt: 'y'.repeat(1024 * 1024 + 10) }));
  let r;
  try {
    r = await api(srv, 'POST', '/api/generation/create', { key: u.key, rawBody: huge, headers: { 'content-type': 'application/json' } });
  } catch (e) {
    assert.fail(`an over-limit JSON body must get a 413 answer, not a dropped connection (${e.cause?.code || e.message})`);
  }
  assertError(r, 413, 'PAYLOAD_TOO_LARGE', 'JSON body over 1 MiB');
  const hugeGen = await api(srv, 'POST', '/api/generate', { key: u.key, rawBody: huge, headers: { 'content-type': 'application/json' } });
  assertError(hugeGen, 413, 'PAYLOAD_TOO_LARGE', 'JSON body over 1 MiB on /api/generate');
  assert.deepEqual(await snapshot(u.key), before, 'refused requests must change nothing');
  // The server still works for this user.
  const ok = await create(srv, u.key, createBody(productUrl));
  assert.equal(ok.status, 'pending');
});

test('customPrompt counts characters, not bytes: 500 × "é" accepted, 501 refused', async () => {
  const u = await createUser(srv.dataDir, { tokens: 10 });
  const ok = await create(srv, u.key, createBody(productUrl, { customPrompt: 'é'.repeat(500) }));
  assert.equal(ok.status, 'pending');
  const bad = await api(srv, 'POST', '/api/generation/create', { key: u.key, body: createBody(productUrl, { customPrompt: 'é'.repeat(501) }) });
  assertError(bad, 400, 'VALIDATION_ERROR');
  assert.deepEqual(errorFields(bad), ['customPrompt']);
});

test('chunked request bodies (no Content-Length): a small one works, one over --max-body → 413, an upload over 10 MB → 413', async () => {
  const u = await createUser(srv.dataDir, { tokens: 2 });
  const stream = (buf, piece = 64 * 1024) => new ReadableStream({
    start(c) { for (let i = 0; i < buf.length; i += piece) c.enqueue(buf.subarray(i, i + piece)); c.close(); },
  });
  const small = Buffer.from(JSON.stringify(createBody(productUrl)));
  assertOk(await api(srv, 'POST', '/api/generation/create', { key: u.key, rawBody: stream(small, 16), headers: { 'content-type': 'application/json' } }), 201, 'chunked small JSON');
  const big = Buffer.from(JSON.stringify(createBody(productUrl, { customPrompt: 'z'.repeat(2 * 1024 * 1024) })));
  let r;
  try {
    r = await api(srv, 'POST', '/api/generation/create', { key: u.key, rawBody: stream(big), headers: { 'content-type': 'application/json' } });
  } catch (e) {
    assert.fail(`a chunked over-limit body must get a 413 answer, not a dropped connection (${e.cause?.code || e.message})`);
  }
  assertError(r, 413, 'PAYLOAD_TOO_LARGE', 'chunked 2 MiB JSON');
  const img = Buffer.alloc(11 * 1024 * 1024, 0);
  img.set(readFileSync(fixture('product.jpg')).subarray(0, 1024));
  let ru;
  try {
    ru = await api(srv, 'POST', '/api/upload', { key: u.key, rawBody: stream(img), headers: { 'content-type': 'image/jpeg' } });
  } catch (e) {
    assert.fail(`a chunked over-limit upload must get a 413 answer, not a dropped connection (${e.cause?.code || e.message})`);
  }
  assertError(ru, 413, 'PAYLOAD_TOO_LARGE', 'chunked 11 MB upload');
  assert.equal(await balance(srv, u.key), 1);
});

test('hostile inputs: deep nesting, invalid UTF-8, huge numbers, an 8 KB key and path → clean 4xx, server stays up', async () => {
  const u = await createUser(srv.dataDir, { tokens: 3 });
  const before = await snapshot(u.key);
  const json = { 'content-type': 'application/json' };
  const deep = '['.repeat(200000) + ']'.repeat(200000);
  assertError(await api(srv, 'POST', '/api/generation/create', { key: u.key, rawBody: deep, headers: json }), 400, 'VALIDATION_ERROR', '200k-deep nesting');
  const deepObj = '{"a":'.repeat(50000) + '1' + '}'.repeat(50000);
  assertError(await api(srv, 'POST', '/api/generate', { key: u.key, rawBody: deepObj, headers: json }), 400, 'VALIDATION_ERROR', '50k-deep objects');
  const badUtf8 = Buffer.concat([Buffer.from('{"productImages":["'), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('"],"model":"local-studio"}')]);
  assertError(await api(srv, 'POST', '/api/generation/create', { key: u.key, rawBody: badUtf8, headers: json }), 400, 'VALIDATION_ERROR', 'invalid UTF-8');
  const hugeNum = JSON.stringify(createBody(productUrl)).replace(/}$/, ',"parameters":{"seed":1e400,"num_inference_steps":99999999999999999999999}}');
  const hn = await api(srv, 'POST', '/api/generation/create', { key: u.key, rawBody: hugeNum, headers: json });
  assertError(hn, 400, 'VALIDATION_ERROR', 'numbers out of every range');
  const longKey = await api(srv, 'GET', '/api/me', { headers: { authorization: `Bearer sk_${'A'.repeat(8000)}` } });
  assertError(longKey, 401, 'AUTHENTICATION_REQUIRED', '8 KB bearer key');
  const longPath = await api(srv, 'GET', `/api/generations/gen_${'Z'.repeat(8000)}`, { key: u.key });
  assert.ok([404, 414, 400].includes(longPath.status), `8 KB path → ${longPath.status}`);
  const weird = await api(srv, 'GET', '/api/generations/%00%2F..%2F', { key: u.key });
  assert.ok(weird.status >= 400 && weird.status < 500, `odd id → ${weird.status}`);
  assert.equal((await api(srv, 'GET', '/healthz')).status, 200, 'the server is still up');
  assert.deepEqual(await snapshot(u.key), before);
});

test('Unicode round-trips: customPrompt with CJK and emoji is stored and returned intact', async () => {
  const u = await createUser(srv.dataDir, { tokens: 1 });
  const text = '红色连衣裙 👗 on a café terrace — “soft light”';
  const c = await create(srv, u.key, createBody(productUrl, { customPrompt: text }));
  assert.ok(c.prompt.includes(text), `prompt must contain the custom text intact: ${c.prompt}`);
  const g = assertOk(await api(srv, 'GET', `/api/generations/${c.generationId}`, { key: u.key }), 200);
  assert.equal(g.customPrompt, text);
});

test('unknown JSON fields are ignored; null optional fields mean absent; defaults filled in', async () => {
  const u = await createUser(srv.dataDir, { tokens: 10 });
  const c = await create(srv, u.key, createBody(productUrl, { someFutureField: { x: 1 }, modelImages: null, customPrompt: null, parameters: null, priority: null }));
  const g = assertOk(await api(srv, 'GET', `/api/generations/${c.generationId}`, { key: u.key }), 200);
  assert.deepEqual(g.modelImages, []);
  assert.equal(g.parameters.guidance_scale, 7.5);
  assert.equal(g.parameters.num_inference_steps, 50);
  assert.equal(g.parameters.strength, 0.8);
  assert.ok(Number.isInteger(g.parameters.seed) && g.parameters.seed >= 0 && g.parameters.seed <= 2147483647, `seed drawn in range, got ${g.parameters.seed}`);
  assert.equal(g.priority, 'normal');
  assert.ok(!('someFutureField' in g));
});

// ---------------------------------------------------------------- image URL rules

test('IMAGE_VALIDATION_ERROR at create for private/link-local/metadata addresses and a missing own /media file; nothing charged', async () => {
  const u = await createUser(srv.dataDir, { tokens: 10 });
  const before = await snapshot(u.key);
  const urls = [
    'http://10.0.0.1/a.jpg',
    'http://192.168.1.10/a.jpg',
    'http://172.16.5.5/a.png',
    'http://169.254.169.254/latest/meta-data/',
    'http://[::1]/a.jpg',
    'http://[fd00::1]/a.jpg',
    'http://127.0.0.2/a.jpg', // loopback, not on the allow-list (127.0.0.1 only)
    'http://0.0.0.0/a.jpg',
    `${srv.baseUrl}/media/u/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.jpg`,
  ];
  for (const url of urls) {
    const r = await api(srv, 'POST', '/api/generation/create', { key: u.key, body: createBody(url) });
    assertError(r, 400, 'IMAGE_VALIDATION_ERROR', `productImages [${url}]`);
    const m = await api(srv, 'POST', '/api/generation/create', { key: u.key, body: createBody(productUrl, { modelImages: [url] }) });
    assertError(m, 400, 'IMAGE_VALIDATION_ERROR', `modelImages [${url}]`);
  }
  assert.deepEqual(await snapshot(u.key), before, 'refused creates must change nothing');
});

test('an unreachable image URL on an allowed host → IMAGE_VALIDATION_ERROR at create, or the generation fails with a clear error and a refund', async () => {
  // Reading: the spec lists "unreachable" under IMAGE_VALIDATION_ERROR; a
  // server that checks reachability only when the worker fetches must still
  // fail the generation (never complete it) and refund it.
  const u = await createUser(srv.dataDir, { tokens: 10 });
  const url = 'http://127.0.0.1:9/unreachable.jpg'; // discard port: nothing listens
  const r = await api(srv, 'POST', '/api/generation/create', { key: u.key, body: createBody(url) });
  if (r.status === 400) {
    assertError(r, 400, 'IMAGE_VALIDATION_ERROR', 'unreachable URL');
    assert.equal(await balance(srv, u.key), 10);
    return;
  }
  const c = assertOk(r, 201, 'create with an unreachable URL');
  await start(srv, u.key, c.generationId);
  const g = await waitGen(srv, u.key, c.generationId, { timeout: 30000 });
  assert.equal(g.status, 'failed', 'an unreachable input image must fail the generation');
  assert.equal(g.errorCode, 'INPUT_UNAVAILABLE');
  assert.match(g.error || '', /image|fetch|connect|reach/i, `error must say the image could not be fetched, got ${JSON.stringify(g.error)}`);
  assert.equal(g.tokensUsed, 0);
  assert.equal(await balance(srv, u.key), 10);
});

// ---------------------------------------------------------------- models and cost

test('MODEL_ERROR for an unknown model and for an unavailable one; nothing charged', async () => {
  const u = await createUser(srv.dataDir, { tokens: 10 });
  const before = await snapshot(u.key);
  const unknown = await api(srv, 'POST', '/api/generation/create', { key: u.key, body: createBody(productUrl, { model: 'no-such-model' }) });
  assertError(unknown, 400, 'MODEL_ERROR', 'unknown model');
  const unavailable = await api(srv, 'POST', '/api/generation/create', { key: u.key, body: createBody(productUrl, { model: 'gpt-image-1' }) });
  assertError(unavailable, 400, 'MODEL_ERROR', 'gpt-image-1 without an API key');
  assert.notEqual(unknown.json.error, unavailable.json.error, 'the message must say which: unknown vs not available');
  const legacy = await api(srv, 'POST', '/api/generate', { key: u.key, body: createBody(productUrl, { model: 'no-such-model' }) });
  assertError(legacy, 400, 'MODEL_ERROR', 'legacy one-step with an unknown model');
  assert.deepEqual(await snapshot(u.key), before);
});

test('cost: estimatedCost = ceil(baseCost × quality multiplier); balance debited by it at create', async () => {
  const u = await createUser(srv.dataDir, { tokens: 10 });
  const want = { auto: 1, low: 1, medium: 1, high: 2 };
  let bal = 10;
  for (const [quality, cost] of Object.entries(want)) {
    const c = await create(srv, u.key, createBody(productUrl, { quality }));
    assert.equal(c.estimatedCost, cost, `quality ${quality}`);
    bal -= cost;
    assert.equal(await balance(srv, u.key), bal, `balance after a ${quality} create`);
    const g = assertOk(await api(srv, 'GET', `/api/generations/${c.generationId}`, { key: u.key }), 200);
    assert.equal(g.tokensUsed, cost);
  }
});

test('INSUFFICIENT_TOKENS when the balance is below the cost; nothing written', async () => {
  const u = await createUser(srv.dataDir, { tokens: 1 });
  const high = await api(srv, 'POST', '/api/generation/create', { key: u.key, body: createBody(productUrl, { quality: 'high' }) });
  assertError(high, 400, 'INSUFFICIENT_TOKENS', 'cost 2 with balance 1');
  assert.deepEqual(await snapshot(u.key), { balance: 1, generations: 0 });
  await create(srv, u.key, createBody(productUrl));
  const zero = await api(srv, 'POST', '/api/generation/create', { key: u.key, body: createBody(productUrl) });
  assertError(zero, 400, 'INSUFFICIENT_TOKENS', 'balance 0');
  const legacy = await api(srv, 'POST', '/api/generate', { key: u.key, body: createBody(productUrl) });
  assertError(legacy, 400, 'INSUFFICIENT_TOKENS', 'legacy one-step with balance 0');
  assert.deepEqual(await snapshot(u.key), { balance: 0, generations: 1 });
});

test('POST /api/generate validation: missing/ill-typed generationId, unknown id → GENERATION_NOT_FOUND', async () => {
  const u = await createUser(srv.dataDir, { tokens: 1 });
  const before = await snapshot(u.key);
  const typed = await api(srv, 'POST', '/api/generate', { key: u.key, body: { generationId: 12 } });
  assertError(typed, 400, 'VALIDATION_ERROR', 'generationId: 12');
  assert.ok(errorFields(typed).includes('generationId'));
  const missing = await api(srv, 'POST', '/api/generate', { key: u.key, body: { generationId: 'gen_01HZZZZZZZZZZZZZZZZZZZZZZZ' } });
  assertError(missing, 404, 'GENERATION_NOT_FOUND', 'unknown generationId');
  for (const p of ['/api/generations/gen_01HZZZZZZZZZZZZZZZZZZZZZZZ', '/api/generations/nonsense']) {
    assertError(await api(srv, 'GET', p, { key: u.key }), 404, 'GENERATION_NOT_FOUND', `GET ${p}`);
    assertError(await api(srv, 'POST', `${p}/cancel`, { key: u.key }), 404, 'GENERATION_NOT_FOUND', `cancel ${p}`);
    assertError(await api(srv, 'POST', `${p}/retry`, { key: u.key }), 404, 'GENERATION_NOT_FOUND', `retry ${p}`);
    assertError(await api(srv, 'DELETE', p, { key: u.key }), 404, 'GENERATION_NOT_FOUND', `DELETE ${p}`);
  }
  assert.deepEqual(await snapshot(u.key), before);
});

void waitGen;
