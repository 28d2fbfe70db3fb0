// A fake Replicate predictions API, as Replicate documents it and as SPEC §7
// says we call it. Loopback only, port 0.
//
//   POST /v1/models/{owner}/{name}/predictions   official models, {input, webhook?, webhook_events_filter?}
//   POST /v1/predictions                          pinned versions, {version, input, ...}
//   GET  /v1/predictions/{id}                     poll
//   POST /v1/predictions/{id}/cancel              cancel (the prediction is canceled at once)
//   GET  /files/{id}/{n}.png                      the outputs, real PNGs (no auth, like replicate.delivery)
//
// Strict about what it is sent; every deviation is a string in that
// request's `violations` (and, for a prediction, in `predictions.get(id).violations`):
//   - Authorization: Bearer <token> (the legacy `Token <token>` is accepted,
//     as Replicate still accepts it, and noted in `authScheme`); missing or
//     wrong → 401 with Replicate's problem body;
//   - Content-Type application/json, a JSON object with only the documented
//     top-level fields (else 422 additional_property_not_allowed, as Replicate);
//   - the model: unknown → 404; a community model through the official-model
//     route → 404 (it must be pinned by version); an unknown version → 422;
//   - the input, against the model's schema (`models` option): a missing
//     required input, a wrong type, a value outside an enum or range → 422
//     {title: "Input validation failed", detail, status, invalid_fields};
//     an input the schema does not know is a violation (Replicate ignores it);
//   - input images (type "uri") are fetched by the fake: an http(s) or data:
//     URL that cannot be read or is not an image is a violation and the
//     prediction fails, as on Replicate;
//   - `Prefer: wait` or `wait=N` with 1 ≤ N ≤ 60; `webhook` an http(s) URL;
//     `webhook_events_filter` ⊆ start, output, logs, completed.
//
// A prediction runs starting → processing → succeeded | failed | canceled over
// `durationMs`, printing tqdm-style progress lines into `logs`. With a
// `webhook`, events are POSTed with Standard Webhooks signatures (webhook-id,
// webhook-timestamp, webhook-signature: v1,<base64 HMAC-SHA256 of
// "{id}.{timestamp}.{body}" keyed with the base64-decoded part of
// webhookSecret after "whsec_">), honouring webhook_events_filter (default:
// output and completed); deliveries are recorded in `webhooks`.
//
// Scripting per prediction (script(fn | object | array) or the `script`
// option): fn(input, index, requestRecord) returns the action for the index-th
// create request; an object applies to all; an array is indexed by create
// request. Actions: {durationMs, steps, startDelayMs, finalStatus, error,
// createStatus, retryAfter, createBody, getStatus, drop, garbage, outputs,
// outputSize: [w, h], outputShape: "array" | "string", outputBroken: true |
// "404" | "bytes"}. See tests/integration/README.md.
import { createHmac, randomBytes, createHash } from 'node:crypto';
import { startLoopback, readBody, sendJson, pickScript, request } from './server.mjs';
import { encodePng, sniffImage, colorFor } from './images.mjs';

export const KONTEXT_ASPECT_RATIOS = ['match_input_image', '1:1', '16:9', '9:16', '4:3', '3:4', '3:2', '2:3', '4:5', '5:4',
  '21:9', '9:21', '2:1', '1:2'];

// Input schemas of the default models, from their pages on replicate.com
// (README: "Fake providers" gives the sources). `required` and `types` are
// checked; `allowed` defaults to the keys of `types`.
export const DEFAULT_MODELS = {
  'black-forest-labs/flux-kontext-pro': {
    official: true,
    version: '569705b35f79b1160d51de1d0e3955626af86c77a034a16e89010dbdde5ad312',
    // The public schema requires only prompt; we always restyle a product shot.
    required: ['prompt', 'input_image'],
    types: {
      prompt: 'string',
      input_image: 'uri',
      aspect_ratio: { enum: KONTEXT_ASPECT_RATIOS },
      seed: 'integer',
      output_format: { enum: ['jpg', 'png'] },
      safety_tolerance: { type: 'integer', min: 0, max: 6 },
      prompt_upsampling: 'boolean',
    },
    // "2 is currently the maximum allowed when input images are used."
    check: (input) => (input.input_image !== undefined && input.safety_tolerance > 2
      ? ['input.safety_tolerance', 'Must be less than or equal to 2 when input_image is given'] : null),
    output: 'string',
  },
  'cuuupid/idm-vton': {
    official: false, // a community model: run by pinned version
    version: '0513734a452173b8173e907e3a59d19a36266e55b48528559432bd21c7d7e985',
    required: ['garm_img', 'human_img'],
    types: {
      garm_img: 'uri',
      human_img: 'uri',
      mask_img: 'uri',
      garment_des: 'string',
      category: { enum: ['upper_body', 'lower_body', 'dresses'] },
      crop: 'boolean',
      seed: 'integer',
      steps: { type: 'integer', min: 1, max: 40 },
      force_dc: 'boolean',
      mask_only: 'boolean',
    },
    output: 'string',
  },
};

const EVENTS = ['start', 'output', 'logs', 'completed'];
const TERMINAL = new Set(['succeeded', 'failed', 'canceled']);
const PUBLIC = ['id', 'model', 'version', 'input', 'logs', 'output', 'data_removed', 'error', 'status', 'source',
  'created_at', 'started_at', 'completed_at', 'urls', 'metrics'];

const problem = (status, title, detail, extra = {}) => ({ title, detail, status, ...extra });
const DEFAULT_STATUS_BODY = {
  400: problem(400, 'Bad request', 'The request could not be understood.'),
  401: problem(401, 'Unauthenticated', 'You did not pass a valid authentication token'),
  402: problem(402, 'Insufficient credit', 'You have insufficient credit to run this model.'),
  404: { detail: 'Not found.', status: 404 },
  422: problem(422, 'Input validation failed', '- input: invalid\n', { invalid_fields: [] }),
  500: problem(500, 'Internal server error', 'Something went wrong.'),
  502: problem(502, 'Bad gateway', 'Bad gateway.'),
  503: problem(503, 'Service unavailable', 'The service is temporarily unavailable.'),
};

const iso = (ms) => (ms == null ? null : new Date(ms).toISOString());
const newId = () => { // 26 lowercase base32 characters, like Replicate's ids
  const a = 'abcdefghijklmnopqrstuvwxyz234567';
  return [...randomBytes(26)].map((b) => a[b & 31]).join('');
};
const mmss = (s) => `${String(Math.floor(s / 60)).padStart(2, '0')}:${String(Math.floor(s % 60)).padStart(2, '0')}`;

// One tqdm progress line, e.g. " 45%|████▌     | 9/20 [00:01<00:01,  8.1it/s]".
export function tqdmLine(i, total, elapsedS) {
  const frac = i / total;
  const cells = frac * 10;
  const full = Math.floor(cells);
  const part = ' ▏▎▍▌▋▊▉'[Math.floor((cells - full) * 8)];
  const bar = ('█'.repeat(full) + (full < 10 ? part : '')).padEnd(10, ' ');
  const rate = elapsedS > 0 ? i / elapsedS : 0;
  const remaining = rate > 0 ? (total - i) / rate : 0;
  return `${String(Math.round(frac * 100)).padStart(3)}%|${bar}| ${i}/${total} [${mmss(elapsedS)}<${mmss(remaining)}, ${rate.toFixed(1).padStart(4)}it/s]`;
}

// A checker of one input value against a type spec: 'string' | 'uri' |
// 'integer' | 'number' | 'boolean' | 'array' | {type?, enum?, min?, max?}.
// → null, or [invalid_fields type, description].
function checkType(value, spec) {
  const t = typeof spec === 'string' ? { type: spec } : spec;
  const given = Array.isArray(value) ? 'array' : value === null ? 'null' : Number.isInteger(value) ? 'integer' : typeof value;
  const want = t.type || (t.enum ? typeof t.enum[0] : null);
  const typeOk = {
    string: () => typeof value === 'string',
    uri: () => typeof value === 'string',
    integer: () => Number.isInteger(value),
    number: () => typeof value === 'number' && Number.isFinite(value),
    boolean: () => typeof value === 'boolean',
    array: () => Array.isArray(value),
  }[want];
  if (typeOk && !typeOk()) return ['invalid_type', `Invalid type. Expected: ${want === 'uri' ? 'string' : want}, given: ${given}`];
  if (want === 'uri' && !/^(https?:\/\/|data:)/i.test(value)) return ['format', 'Does not match format \'uri\''];
  if (t.enum && !t.enum.includes(value)) return ['enum', `must be one of the following: ${t.enum.map((x) => JSON.stringify(x)).join(', ')}`];
  if (t.min !== undefined && value < t.min) return ['number_gte', `Must be greater than or equal to ${t.min}`];
  if (t.max !== undefined && value > t.max) return ['number_lte', `Must be less than or equal to ${t.max}`];
  return null;
}

// startFakeReplicate({token, webhookSecret, models, script, durationMs, steps,
//   outputSize, fetchInputs, webhookRetries}) → {url, token, webhookSecret,
//   requests, predictions, webhooks, script, violations, close}
export async function startFakeReplicate({
  token = 'r8_test_fake_token',
  webhookSecret = `whsec_${randomBytes(24).toString('base64')}`,
  models: extraModels = {},
  script: initialScript = null,
  durationMs: defaultDurationMs = 600,
  steps: defaultSteps = 10,
  outputSize: defaultOutputSize = [1024, 1024],
  fetchInputs = true,
  webhookRetries = 3,
} = {}) {
  const models = { ...DEFAULT_MODELS, ...extraModels };
  const byVersion = new Map(Object.entries(models).filter(([, m]) => m.version).map(([name, m]) => [m.version, name]));
  const requests = [];
  const predictions = new Map();
  const internal = new Map(); // id → {done: Promise, resolveDone, act, lastLogsHook, hookChain}
  const files = new Map(); // path → {w, h, rgb, broken}
  const webhooks = [];
  let script = initialScript;
  let createCount = 0;
  const abort = new AbortController();
  const lb = await startLoopback(handle);
  const base = lb.url;
  const webhookKey = Buffer.from(webhookSecret.replace(/^whsec_/, ''), 'base64');

  const publicJson = (p) => Object.fromEntries(PUBLIC.map((k) => [k, p[k]]));

  async function handle(req, res) {
    const path = (req.url || '').split('?')[0];
    const rec = { index: requests.length, method: req.method, path: req.url, headers: { ...req.headers }, body: null,
      authScheme: null, violations: [], time: Date.now(), status: null };
    const reply = (status, obj, headers = {}) => { rec.status = status; sendJson(res, status, obj, headers); };

    let m;
    if (req.method === 'GET' && (m = /^\/files\/([a-z0-9]+)\/([^/]+)$/.exec(path))) return serveFile(path, res, rec);
    requests.push(rec);
    const raw = await readBody(req, 64 << 20);
    if (raw === null) { rec.violations.push('request body larger than 64 MB'); return; }

    if (!authOk(req, rec)) {
      return reply(401, problem(401, 'Unauthenticated', req.headers.authorization
        ? 'You did not pass a valid authentication token' : 'You did not pass an authentication token'));
    }
    if (req.method === 'POST' && (m = /^\/v1\/models\/([^/]+)\/([^/]+)\/predictions$/.exec(path))) {
      return create(req, res, rec, raw, reply, `${decodeURIComponent(m[1])}/${decodeURIComponent(m[2])}`);
    }
    if (req.method === 'POST' && path === '/v1/predictions') return create(req, res, rec, raw, reply, null);
    if (req.method === 'GET' && (m = /^\/v1\/predictions\/([^/]+)$/.exec(path))) return get(m[1], rec, reply, req);
    if (req.method === 'POST' && (m = /^\/v1\/predictions\/([^/]+)\/cancel$/.exec(path))) return cancel(m[1], rec, reply);
    rec.violations.push(`unexpected request ${req.method} ${req.url}`);
    return reply(404, { detail: 'Not found.', status: 404 });
  }

  function authOk(req, rec) {
    const a = req.headers.authorization;
    if (!a) { rec.violations.push('no Authorization header'); return false; }
    const [scheme, value] = [a.slice(0, a.indexOf(' ')), a.slice(a.indexOf(' ') + 1)];
    rec.authScheme = scheme;
    if (scheme !== 'Bearer' && scheme !== 'Token') { rec.violations.push(`Authorization scheme "${scheme}" (Bearer expected)`); return false; }
    if (value !== token) { rec.violations.push(`Authorization: ${scheme} with the wrong token`); return false; }
    return true;
  }

  async function create(req, res, rec, raw, reply, routeModel) {
    const v = rec.violations;
    const index = createCount++;
    rec.createIndex = index;
    if (!/^application\/json\b/i.test(req.headers['content-type'] || '')) v.push(`Content-Type is ${JSON.stringify(req.headers['content-type'] || '')}, not application/json`);
    let body;
    try { body = JSON.parse(raw.toString('utf8')); } catch (e) {
      v.push(`body is not JSON: ${e.message}`);
      return reply(400, problem(400, 'Invalid JSON', `The request body could not be parsed as JSON: ${e.message}`));
    }
    rec.body = body;
    if (!body || typeof body !== 'object' || Array.isArray(body)) {
      v.push('body is not a JSON object');
      return reply(422, problem(422, 'Input validation failed', '- (root): Invalid type. Expected: object\n', { invalid_fields: [{ type: 'invalid_type', field: '(root)', description: 'Invalid type. Expected: object' }] }));
    }
    const invalid = [];
    const top = new Set(['input', 'webhook', 'webhook_events_filter', 'stream', ...(routeModel ? [] : ['version'])]);
    for (const k of Object.keys(body)) if (!top.has(k)) invalid.push({ type: 'additional_property_not_allowed', field: '', description: `Additional property ${k} is not allowed` });
    if (body.input === undefined) invalid.push({ type: 'required', field: '', description: 'input is required' });
    else if (!body.input || typeof body.input !== 'object' || Array.isArray(body.input)) invalid.push({ type: 'invalid_type', field: 'input', description: 'Invalid type. Expected: object' });
    if (!routeModel && body.version === undefined) invalid.push({ type: 'required', field: '', description: 'version is required' });
    if (body.webhook !== undefined && (typeof body.webhook !== 'string' || !/^https?:\/\/[^\s]+$/.test(body.webhook))) {
      invalid.push({ type: 'format', field: 'webhook', description: 'Does not match format \'uri\'' });
    }
    if (body.webhook_events_filter !== undefined) {
      const f = body.webhook_events_filter;
      if (!Array.isArray(f)) invalid.push({ type: 'invalid_type', field: 'webhook_events_filter', description: 'Invalid type. Expected: array' });
      else f.forEach((e, i) => { if (!EVENTS.includes(e)) invalid.push({ type: 'enum', field: `webhook_events_filter.${i}`, description: `webhook_events_filter.${i} must be one of the following: "start", "output", "logs", "completed"` }); });
      if (body.webhook === undefined) v.push('webhook_events_filter without webhook');
    }
    const prefer = req.headers.prefer;
    let waitS = 0;
    if (prefer !== undefined) {
      const pm = /^\s*wait(?:\s*=\s*(\d+))?\s*$/.exec(prefer);
      if (!pm) v.push(`Prefer header ${JSON.stringify(prefer)} is not "wait" or "wait=N"`);
      else {
        waitS = pm[1] === undefined ? 60 : +pm[1];
        if (waitS < 1 || waitS > 60) { v.push(`Prefer: wait=${pm[1]} is outside 1–60`); waitS = Math.min(Math.max(waitS, 1), 60); }
      }
    }

    // The model.
    let modelName = routeModel, notFound = null;
    if (routeModel) {
      if (!models[routeModel]) { v.push(`unknown model ${routeModel}`); notFound = `Model ${routeModel} not found`; }
      else if (!models[routeModel].official) {
        v.push(`${routeModel} is a community model: create its predictions with a pinned version (POST /v1/predictions)`);
        notFound = `Model ${routeModel} is not an official model; specify a version`;
      }
    } else if (typeof body.version === 'string') {
      const vm = /^(?:([^/:]+\/[^/:]+):)?([0-9a-f]{64})$/.exec(body.version);
      if (vm && byVersion.has(vm[2]) && (!vm[1] || vm[1] === byVersion.get(vm[2]))) modelName = byVersion.get(vm[2]);
      else if (models[body.version]?.official) modelName = body.version; // "owner/name" of an official model
      else { v.push(`unknown version ${JSON.stringify(body.version)}`); }
    }
    const model = modelName ? models[modelName] : null;

    // The input.
    const input = body.input && typeof body.input === 'object' ? body.input : {};
    if (model && !invalid.length) {
      const types = model.types || {};
      const allowed = new Set([...(model.allowed || Object.keys(types)), ...(model.required || [])]);
      for (const k of model.required || []) if (input[k] === undefined || input[k] === null) invalid.push({ type: 'required', field: 'input', description: `${k} is required` });
      for (const [k, val] of Object.entries(input)) {
        if (!allowed.has(k)) { v.push(`input "${k}" is not in the schema of ${modelName}`); continue; }
        if (types[k] !== undefined && val !== null) {
          const bad = checkType(val, types[k]);
          if (bad) invalid.push({ type: bad[0], field: `input.${k}`, description: bad[1] });
        }
      }
      const extra = !invalid.length && model.check ? model.check(input) : null;
      if (extra) invalid.push({ type: 'custom', field: extra[0], description: extra[1] });
    }
    for (const f of invalid) v.push(`422 ${f.field || '(root)'}: ${f.description}`);

    // A scripted answer replaces the normal one.
    const act = pickScript(script, [input, index, rec]);
    if (act.drop) { rec.status = 'dropped'; req.socket.destroy(); return; }
    if (act.garbage) { rec.status = 201; res.writeHead(201, { 'content-type': 'application/json' }); res.end('{"id": "garbage'); return; }
    if (act.createStatus) {
      const s = act.createStatus;
      const headers = s === 429 ? { 'retry-after': String(act.retryAfter ?? 1) } : {};
      const b = act.createBody ?? (s === 429 ? { detail: `Request was throttled. Expected available in ${act.retryAfter ?? 1} second${(act.retryAfter ?? 1) === 1 ? '' : 's'}.` } : DEFAULT_STATUS_BODY[s] || problem(s, `HTTP ${s}`, `HTTP ${s}`));
      return reply(s, b, headers);
    }
    if (invalid.length) {
      const detail = invalid.map((f) => `- ${f.field || '(root)'}: ${f.description}\n`).join('');
      return reply(422, problem(422, 'Input validation failed', detail, { invalid_fields: invalid }));
    }
    if (notFound) return reply(404, problem(404, 'Not found', notFound));
    if (!model) return reply(422, problem(422, 'Invalid version or not permitted', 'The specified version does not exist (or perhaps you don\'t have permission to use it?)'));

    const p = startPrediction(modelName, model, body, input, act, rec);
    rec.predictionId = p.id;
    if (waitS) await Promise.race([internal.get(p.id).done, lb.sleep(waitS * 1000)]);
    if (lb.isClosed() || res.destroyed) return;
    reply(201, publicJson(p), { location: p.urls.get });
  }

  function startPrediction(modelName, model, body, input, act, rec) {
    const id = newId();
    const now = Date.now();
    const p = {
      id, model: modelName, version: model.official && !body.version ? 'hidden' : model.version, input, logs: '', output: null,
      data_removed: false, error: null, status: 'starting', source: 'api',
      created_at: iso(now), started_at: null, completed_at: null,
      urls: { get: `${base}/v1/predictions/${id}`, cancel: `${base}/v1/predictions/${id}/cancel`, web: `${base}/p/${id}` },
      metrics: {},
      // for tests
      webhook: body.webhook, webhook_events_filter: body.webhook_events_filter,
      createdAt: now, cancelledAt: null, cancelCalls: 0, polls: 0, deliveries: [], inputFetches: [],
      violations: rec.violations, script: act, requestIndex: rec.index,
    };
    predictions.set(id, p);
    let resolveDone;
    const done = new Promise((r) => { resolveDone = r; });
    internal.set(id, { done, resolveDone, act, lastLogsHook: 0, hookChain: Promise.resolve(), pollIndex: 0 });
    hook(p, 'start');
    run(p, model, act).catch((e) => { p.violations.push(`fake replicate internal error: ${e.stack || e}`); });
    return p;
  }

  async function fetchInputs_(p, model) {
    const problems = [];
    for (const [k, t] of Object.entries(model.types || {})) {
      if ((typeof t === 'string' ? t : t.type) !== 'uri' || typeof p.input[k] !== 'string') continue;
      const url = p.input[k];
      const rec = { field: k, url: url.length > 100 ? `${url.slice(0, 100)}…` : url, status: null, format: null, bytes: 0, error: null };
      p.inputFetches.push(rec);
      try {
        let bytes;
        if (/^data:/i.test(url)) {
          const dm = /^data:([^,]*?)(;base64)?,(.*)$/is.exec(url);
          if (!dm) throw new Error('malformed data: URL');
          bytes = dm[2] ? Buffer.from(dm[3], 'base64') : Buffer.from(decodeURIComponent(dm[3]), 'latin1');
          rec.status = 200;
        } else {
          const r = await request(url, { timeoutMs: 10_000, signal: abort.signal });
          rec.status = r.status;
          if (r.status !== 200) throw new Error(`HTTP ${r.status}`);
          bytes = r.body;
        }
        rec.bytes = bytes.length;
        rec.format = sniffImage(bytes);
        rec.sha256 = createHash('sha256').update(bytes).digest('hex');
        if (!rec.format) throw new Error('not an image (jpeg, png, gif or webp)');
      } catch (e) {
        rec.error = e.message;
        if (lb.isClosed()) return problems;
        p.violations.push(`input ${k}: ${rec.url} could not be fetched as an image (${e.message})`);
        problems.push(`${k}: ${e.message}`);
      }
    }
    return problems;
  }

  async function run(p, model, act) {
    const duration = act.durationMs ?? defaultDurationMs;
    const steps = Math.max(1, act.steps ?? defaultSteps);
    const startDelay = act.startDelayMs ?? Math.min(100, Math.round(duration * 0.1));
    const bad = fetchInputs ? await fetchInputs_(p, model) : [];
    await lb.sleep(startDelay - (Date.now() - p.createdAt));
    if (TERMINAL.has(p.status)) return;
    p.status = 'processing';
    p.started_at = iso(Date.now());
    const seed = Number.isInteger(p.input.seed) ? p.input.seed : 1 + (parseInt(p.id.slice(0, 6), 36) % 100000);
    appendLog(p, `Using seed: ${seed}`);
    if (bad.length) return finish(p, 'failed', `Error downloading input: ${bad.join('; ')}`);
    const stepMs = Math.max(0, (duration - startDelay) / steps);
    const t0 = Date.now();
    for (let i = 1; i <= steps; i++) {
      await lb.sleep(t0 + i * stepMs - Date.now());
      if (TERMINAL.has(p.status)) return;
      appendLog(p, tqdmLine(i, steps, (Date.now() - t0) / 1000));
    }
    const final = act.finalStatus ?? 'succeeded';
    if (final === 'failed') {
      appendLog(p, `Traceback (most recent call last):\n  File "predict.py", line 1, in predict\nRuntimeError: ${act.error ?? 'Prediction failed.'}`);
      return finish(p, 'failed', act.error ?? 'Prediction failed.');
    }
    if (final === 'canceled') return finish(p, 'canceled', null);
    const n = act.outputs ?? 1;
    const [w, h] = act.outputSize ?? defaultOutputSize;
    const urls = [];
    for (let i = 0; i < n; i++) {
      const path = `/files/${p.id}/out-${i}.png`;
      files.set(path, { w, h, rgb: colorFor(i), broken: act.outputBroken === true ? '404' : act.outputBroken || null });
      urls.push(`${base}${path}`);
    }
    const shape = act.outputShape ?? model.output ?? 'array';
    p.output = shape === 'string' ? urls[0] ?? null : urls;
    hook(p, 'output');
    finish(p, 'succeeded', null);
  }

  function appendLog(p, line) {
    p.logs += `${line}\n`;
    const st = internal.get(p.id);
    if (Date.now() - st.lastLogsHook >= 500) { st.lastLogsHook = Date.now(); hook(p, 'logs'); }
  }

  function finish(p, status, error) {
    if (TERMINAL.has(p.status)) return;
    const now = Date.now();
    p.status = status;
    p.error = error;
    p.completed_at = iso(now);
    const started = p.started_at ? Date.parse(p.started_at) : now;
    p.metrics = { predict_time: (now - started) / 1000, total_time: (now - p.createdAt) / 1000 };
    if (status === 'succeeded' && p.output) p.metrics.image_count = Array.isArray(p.output) ? p.output.length : 1;
    internal.get(p.id).resolveDone();
    hook(p, 'completed');
  }

  // Queues one webhook event for a prediction (deliveries stay in order).
  function hook(p, event) {
    if (!p.webhook) return;
    const filter = p.webhook_events_filter ?? ['output', 'completed'];
    if (!filter.includes(event)) return;
    const body = JSON.stringify(publicJson(p)); // the prediction as of this event
    const st = internal.get(p.id);
    st.hookChain = st.hookChain.then(() => deliver(p, event, body));
  }

  async function deliver(p, event, body) {
    const webhookId = `msg_${randomBytes(12).toString('hex')}`;
    const d = { predictionId: p.id, event, url: p.webhook, webhookId, body, attempts: [], status: null, delivered: false };
    webhooks.push(d);
    p.deliveries.push(d);
    for (let attempt = 0; attempt < webhookRetries && !lb.isClosed(); attempt++) {
      if (attempt) await lb.sleep(200 * attempt);
      const timestamp = Math.floor(Date.now() / 1000);
      const sig = createHmac('sha256', webhookKey).update(`${webhookId}.${timestamp}.${body}`).digest('base64');
      const headers = { 'content-type': 'application/json', 'user-agent': 'Replicate-Webhooks/1.0 (fake)', 'webhook-id': webhookId,
        'webhook-timestamp': String(timestamp), 'webhook-signature': `v1,${sig}`, 'content-length': Buffer.byteLength(body) };
      try {
        const r = await request(p.webhook, { method: 'POST', headers, body, timeoutMs: 10_000, signal: abort.signal });
        d.attempts.push({ at: Date.now(), status: r.status, timestamp, signature: headers['webhook-signature'] });
        d.status = r.status;
        if (r.status >= 200 && r.status < 300) { d.delivered = true; return; }
      } catch (e) {
        d.attempts.push({ at: Date.now(), error: e.message, timestamp });
        d.status = 'error';
      }
    }
  }

  function get(id, rec, reply) {
    const p = predictions.get(id);
    if (!p) { rec.violations.push(`GET of unknown prediction ${id}`); return reply(404, { detail: 'Not found.', status: 404 }); }
    const st = internal.get(id);
    const k = st.pollIndex++;
    p.polls++;
    const gs = p.script.getStatus;
    const s = Array.isArray(gs) ? gs[k] : gs;
    if (s) return reply(s, DEFAULT_STATUS_BODY[s] || problem(s, `HTTP ${s}`, `HTTP ${s}`));
    return reply(200, publicJson(p));
  }

  function cancel(id, rec, reply) {
    const p = predictions.get(id);
    if (!p) { rec.violations.push(`cancel of unknown prediction ${id}`); return reply(404, { detail: 'Not found.', status: 404 }); }
    p.cancelCalls++;
    if (!TERMINAL.has(p.status)) {
      p.cancelledAt = Date.now();
      finish(p, 'canceled', null);
    }
    return reply(200, publicJson(p));
  }

  function serveFile(path, res, rec) {
    rec.file = true;
    const f = files.get(path);
    if (!f || f.broken === '404') {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('Not found');
      return;
    }
    const bytes = f.broken === 'bytes' ? Buffer.from('<html>this is not a PNG</html>') : encodePng(f.w, f.h, f.rgb);
    res.writeHead(200, { 'content-type': 'image/png', 'content-length': bytes.length, 'cache-control': 'public, max-age=3600' });
    res.end(bytes);
  }

  return {
    url: base,
    token,
    webhookSecret,
    models,
    requests,
    predictions,
    webhooks,
    // script(fn | object | array | null): what to do with the following predictions.
    script(s) { script = s; },
    // Every violation of every API request, as "#index: text".
    violations: () => requests.flatMap((r) => r.violations.map((x) => `#${r.index}: ${x}`)),
    // Resolves when prediction `id` is terminal (for tests).
    settled: (id) => internal.get(id)?.done ?? Promise.resolve(),
    async close() { abort.abort(); await lb.close(); },
  };
}
