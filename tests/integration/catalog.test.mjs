// The model catalogue (SPEC §7): the models.json compiled into the binary,
// --models / STYLESTUDIO_MODELS replacing it, and validation at start (a
// bad catalogue stops the process with a message naming model and field).
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  test, assert, serverFor, api, assertOk, assertError, errorFields, uploadFixture, createBody, balance, BIN, ROOT, PG, withTimeout,
} from './harness.mjs';

const shipped = JSON.parse(readFileSync(join(ROOT, 'models.json'), 'utf8'));
const models = async (srv, key) => assertOk(await api(srv, 'GET', '/api/models', { key }), 200).items;

function tmp(t) {
  const d = mkdtempSync(join(tmpdir(), 'ss-cat-'));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

function writeCatalogue(dir, mutate) {
  const c = structuredClone(shipped);
  mutate(c);
  const path = join(dir, 'models.json');
  writeFileSync(path, JSON.stringify(c, null, 2));
  return path;
}

// Runs `serve` expecting it to refuse to start; resolves {code, stderr}.
function serveRefused(args, { env = {}, cwd = ROOT } = {}) {
  return new Promise((res) => {
    const dir = mkdtempSync(join(tmpdir(), 'ss-cat-d-'));
    execFile(BIN, ['serve', '--listen', '127.0.0.1:0', '--data', dir, '--workers', '0', ...args],
      { cwd, env: { PATH: process.env.PATH, ...env }, timeout: 10000 }, (err, stdout, stderr) => {
        rmSync(dir, { recursive: true, force: true });
        res({ code: err ? err.code : 0, stdout, stderr });
      });
  });
}

test('the built-in catalogue: served from any working directory; lists every non-hidden model with parameters', async (t) => {
  const cwd = tmp(t);
  // Started away from the project: nothing is read from ./models.json.
  const dir = tmp(t);
  const proc = spawn(BIN, ['serve', '--listen', '127.0.0.1:0', '--data', dir, '--workers', '0'], { cwd, env: { PATH: process.env.PATH }, stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => proc.kill('SIGKILL'));
  let out = '';
  const line = await withTimeout(new Promise((res) => proc.stdout.on('data', (d) => { out += d; if (out.includes('\n')) res(out.split('\n')[0]); })), 15000, 'no listening line');
  const base = /listening on (http:\/\/\S+)/.exec(line)[1];
  const items = (await (await fetch(`${base}/api/models`)).json()).data.items;
  const ids = items.map((m) => m.id);
  assert.deepEqual(ids, ['local-studio', 'gpt-image-1', 'flux-kontext-pro', 'idm-vton']);
  for (const m of items) {
    const entry = shipped.models.find((e) => e.id === m.id);
    assert.deepEqual(m.parameters, entry.parameters, `${m.id} parameters`);
    for (const [k, v] of Object.entries({ name: 'name', baseCost: 'baseCost', outputs: 'outputs', maxProductImages: 'maxProductImages', maxModelImages: 'maxModelImages', provider: 'provider' })) {
      assert.equal(m[k], entry[v], `${m.id}.${k}`);
    }
    assert.equal(typeof m.available, 'boolean');
  }
  assert.equal(items.find((m) => m.id === 'local-studio').available, true);
  assert.equal(items.find((m) => m.id === 'idm-vton').minModelImages, 1);
});

test('--models FILE (and STYLESTUDIO_MODELS) replaces the catalogue', async (t) => {
  const d = tmp(t);
  const path = writeCatalogue(d, (c) => {
    c.models = c.models.filter((m) => m.id === 'local-studio');
    c.models[0].baseCost = 4;
    c.models[0].name = 'Local Studio (custom)';
  });
  const srv = await serverFor(t, { args: ['--models', path] });
  const u = await srv.createUser({ tokens: 10 });
  const items = await models(srv, u.key);
  assert.deepEqual(items.map((m) => [m.id, m.name, m.baseCost]), [['local-studio', 'Local Studio (custom)', 4]]);
  const url = await uploadFixture(srv, u.key);
  assertError(await api(srv, 'POST', '/api/generation/create', { key: u.key, body: createBody(url, { model: 'gpt-image-1' }) }), 400, 'MODEL_ERROR', 'a model the catalogue no longer has');
  const c = assertOk(await api(srv, 'POST', '/api/generation/create', { key: u.key, body: createBody(url) }), 201);
  assert.equal(c.estimatedCost, 4, 'the cost comes from the replacement catalogue');
  assert.equal(await balance(srv, u.key), 6);

  const viaEnv = await serverFor(t, { env: { STYLESTUDIO_MODELS: path } });
  const v = await viaEnv.createUser({ tokens: 1 });
  assert.deepEqual((await models(viaEnv, v.key)).map((m) => m.id), ['local-studio']);
});

test('a bad catalogue stops the process at start with a message naming the model and the field', async (t) => {
  const d = tmp(t);
  const cases = [
    ['unknown provider', (c) => { c.models[1].provider = 'azure'; }, 'gpt-image-1', 'provider'],
    ['missing field', (c) => { delete c.models[2].baseCost; }, 'flux-kontext-pro', 'baseCost'],
    ['bad type', (c) => { c.models[0].maxProductImages = '5'; }, 'local-studio', 'maxProductImages'],
    ['unknown field', (c) => { c.models[0].maxInflight = 2; }, 'local-studio', 'maxInflight'],
    ['duplicate id', (c) => { c.models[4].id = 'local-studio'; }, 'local-studio', 'id'],
    ['placeholder naming no field', (c) => { c.models[3].input.seed = '{parameters.sed}'; }, 'idm-vton', 'input.seed'],
    ['image index past the model\'s maximum', (c) => { c.models[2].input.input_image = '{productImages[3]}'; }, 'flux-kontext-pro', 'input.input_image'],
    ['input on a non-replicate model', (c) => { c.models[1].input = { prompt: '{prompt}' }; }, 'gpt-image-1', 'input'],
  ];
  for (const [what, mutate, model, field] of cases) {
    const path = writeCatalogue(d, mutate);
    const r = await serveRefused(['--models', path]);
    assert.notEqual(r.code, 0, `${what}: the process must refuse to start`);
    assert.equal(r.stdout, '', `${what}: nothing on stdout (no listening line)`);
    assert.match(r.stderr, new RegExp(`model "${model}"`), `${what}: names the model: ${r.stderr}`);
    assert.ok(r.stderr.includes(`"${field}"`), `${what}: names the field ${field}: ${r.stderr}`);
  }
  const missing = await serveRefused(['--models', join(d, 'nope.json')]);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /nope\.json/);
  writeFileSync(join(d, 'broken.json'), '{"models": [');
  const broken = await serveRefused([], { env: { STYLESTUDIO_MODELS: join(d, 'broken.json') } });
  assert.notEqual(broken.code, 0);
  assert.match(broken.stderr, /not valid JSON/);
});

test('the try-on model needs a model photo: a create without one is a VALIDATION_ERROR on modelImages', async (t) => {
  const srv = await serverFor(t);
  const u = await srv.createUser({ tokens: 10 });
  const url = await uploadFixture(srv, u.key);
  const r = await api(srv, 'POST', '/api/generation/create', { key: u.key, body: createBody(url, { model: 'idm-vton' }) });
  assertError(r, 400, 'VALIDATION_ERROR', 'try-on without a person');
  assert.ok(errorFields(r).includes('modelImages'), JSON.stringify(r.json));
  assert.equal(await balance(srv, u.key), 10, 'nothing charged');
});

test('credentials from the environment: unavailableReason names the variable; with it set, the hosted models are available; the secret never leaks', async (t) => {
  const bare = await serverFor(t);
  const u = await bare.createUser({ tokens: 10 });
  const items = await models(bare, u.key);
  const gpt = items.find((m) => m.id === 'gpt-image-1');
  assert.equal(gpt.available, false);
  assert.equal(gpt.unavailableReason, 'OPENAI_API_KEY is not set on this server');
  for (const id of ['flux-kontext-pro', 'idm-vton']) {
    const m = items.find((x) => x.id === id);
    assert.equal(m.available, false);
    assert.equal(m.unavailableReason, 'REPLICATE_API_TOKEN is not set on this server');
  }
  assert.ok(!('unavailableReason' in items.find((m) => m.id === 'local-studio')));

  const secret = 'sk-proj-NEVER-SHOW-ME-7c1f';
  const token = 'r8_NEVER-SHOW-ME-TOO-99a2';
  const srv = await serverFor(t, { env: { OPENAI_API_KEY: secret, REPLICATE_API_TOKEN: token, REPLICATE_WEBHOOK_SECRET: 'whsec_NEVER' }, args: ['--log-level', 'debug'] });
  const v = await srv.createUser({ tokens: 10 });
  const r = await api(srv, 'GET', '/api/models', { key: v.key });
  const text = JSON.stringify(r.json);
  for (const m of r.json.data.items.filter((x) => x.provider !== 'local')) {
    assert.equal(m.available, true, `${m.id}: its provider's credential is set`);
    assert.ok(!('unavailableReason' in m), m.id);
  }
  const c = { json: null };
  const all = text + JSON.stringify(c.json) + srv.stdout + srv.stderr + (PG ? '' : readFileSync(srv.dbPath, 'latin1'));
  for (const s of [secret, token, 'whsec_NEVER']) assert.ok(!all.includes(s), `a secret leaked: ${s}`);
});
