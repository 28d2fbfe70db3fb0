// A fake OpenAI Images API: POST /v1/images/edits for gpt-image-1, as OpenAI
// documents it and as SPEC §7 says we call it. Loopback only, port 0.
//
// Strict about what it is sent. Every request is recorded in `requests`, and
// every deviation from the documented protocol or from SPEC §7 is a string in
// that request's `violations` (a test asserts the list is empty):
//   - Authorization: Bearer <apiKey> (missing or wrong → 401, OpenAI's body);
//   - Content-Type multipart/form-data with a boundary, and the body's raw
//     framing: CRLF everywhere, closing delimiter, well-formed part headers,
//     Content-Disposition form-data with a name (multipart.mjs); the body must
//     also satisfy undici's parser (what `Response.formData()` uses);
//   - exactly the fields SPEC §7 sends: model=gpt-image-1, one `image[]` part
//     per input image (filename, Content-Type image/png|jpeg|webp, bytes that
//     really are that format, ≤ 50 MB, at most 16), prompt (non-empty, ≤ 32000
//     characters), size (1024x1024|1536x1024|1024x1536), quality
//     (low|medium|high|auto), n (an integer 1–10); no field twice, none other.
// Where OpenAI itself would refuse the request, the fake answers as OpenAI
// does: 400/401 with {error: {message, type, param, code}}. Where OpenAI would
// accept it but SPEC §7 says otherwise (`image` instead of `image[]`, size
// "auto", a missing quality or n, an extra documented field), it answers 200
// and records the violation.
//
// On success: 200 {created, data: [{b64_json} × n], usage}, each image a real
// PNG of exactly the requested size, coloured by its index (images.mjs
// colorFor: 0 red, 1 green, 2 blue, ...).
//
// Scripting (script(fn | object | array), or the `script` option): a function
// fn(requestRecord, index) returns the action for that request; an object is
// the action for every request; an array gives the action by request index.
// Actions: {delayMs, status, body, headers, drop, garbage, noImages, badImage,
// contentPolicy, rateLimit: {retryAfter}, images: N, imageSize: [w, h]}.
// A scripted answer replaces the normal one (violations are still recorded).
import { createHash, randomBytes } from 'node:crypto';
import { startLoopback, readBody, sendJson, pickScript } from './server.mjs';
import { parseMultipart, boundaryOf } from './multipart.mjs';
import { encodePng, sniffImage, colorFor, MIME_OF } from './images.mjs';

export const SIZES = ['1024x1024', '1536x1024', '1024x1536'];
export const QUALITIES = ['low', 'medium', 'high', 'auto'];
const IMAGE_TYPES = new Set(['image/png', 'image/jpeg', 'image/webp']);
// Documented optional parameters of /v1/images/edits that SPEC §7 does not send.
const OTHER_DOCUMENTED = new Set(['mask', 'background', 'moderation', 'output_format', 'output_compression',
  'input_fidelity', 'user', 'partial_images', 'stream', 'response_format']);
const MAX_IMAGE_BYTES = 50 << 20;

const oaError = (message, type = 'invalid_request_error', param = null, code = null) => ({ error: { message, type, param, code } });

const DEFAULT_STATUS_BODY = {
  400: oaError('Bad request.'),
  401: oaError('Incorrect API key provided.', 'invalid_request_error', null, 'invalid_api_key'),
  403: oaError('You are not allowed to sample from this model', 'invalid_request_error', null, null),
  404: oaError('The model `gpt-image-1` does not exist or you do not have access to it.', 'invalid_request_error', null, 'model_not_found'),
  429: oaError('Rate limit reached for gpt-image-1 on requests per minute (RPM). Please try again later.', 'requests', null, 'rate_limit_exceeded'),
  500: oaError('The server had an error while processing your request. Sorry about that!', 'server_error'),
  502: oaError('Bad gateway.', 'server_error'),
  503: oaError('The engine is currently overloaded, please try again later.', 'server_error'),
};

const mask = (key) => (key.length > 8 ? `${key.slice(0, 3)}*********${key.slice(-4)}` : '****');

// startFakeOpenAI({apiKey = 'sk-test-fake', script, maxBodyBytes, crossCheck = true})
//   → {url, requests, script, violations, reset, close}
// crossCheck: also parse every body with undici's multipart parser (about
// 0.4 ms a request; a benchmark may turn it off).
export async function startFakeOpenAI({ apiKey = 'sk-test-fake', script: initialScript = null, maxBodyBytes = 256 << 20, crossCheck = true } = {}) {
  const requests = [];
  let script = initialScript;
  const lb = await startLoopback(handle);

  async function handle(req, res) {
    const rec = {
      index: requests.length, method: req.method, path: req.url, headers: { ...req.headers },
      fields: {}, images: [], violations: [], time: Date.now(), status: null,
    };
    requests.push(rec);
    const body = await readBody(req, maxBodyBytes);
    if (body === null) { rec.violations.push(`request body larger than ${maxBodyBytes} bytes`); rec.status = 'dropped'; return; }
    rec.bodyBytes = body.length;

    // What OpenAI would answer (error or success); violations recorded meanwhile.
    const verdict = await check(req, body, rec);
    const act = pickScript(script, [rec, rec.index]);
    // The delay counts from the request's arrival, so checking it costs no extra time.
    if (act.delayMs) await lb.sleep(act.delayMs - (Date.now() - rec.time));
    if (lb.isClosed() || res.destroyed) { rec.status = 'dropped'; return; }
    const requestId = `req_${randomBytes(16).toString('hex')}`;
    const headers = { 'x-request-id': requestId, 'openai-processing-ms': String(Date.now() - rec.time), ...(act.headers || {}) };
    const reply = (status, obj, extra = {}) => { rec.status = status; rec.repliedAt = Date.now(); sendJson(res, status, obj, { ...headers, ...extra }); };

    if (act.drop) { rec.status = 'dropped'; req.socket.destroy(); return; }
    if (act.rateLimit) {
      const s = act.rateLimit.retryAfter ?? 1;
      return reply(429, oaError(`Rate limit reached for gpt-image-1 in organization org-fake on requests per minute (RPM): Limit 5, Used 5, Requested 1. Please try again in ${s}s. Visit https://platform.openai.com/account/rate-limits to learn more.`, 'requests', null, 'rate_limit_exceeded'),
        { 'retry-after': String(s), 'x-ratelimit-limit-requests': '5', 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': `${s}s` });
    }
    if (act.contentPolicy) {
      return reply(400, oaError(`Your request was rejected by the safety system. If you believe this is an error, contact us at help.openai.com and include the request ID ${requestId}.`, 'image_generation_user_error', null, 'moderation_blocked'));
    }
    if (act.status !== undefined || act.body !== undefined) {
      const status = act.status ?? 200;
      const b = act.body !== undefined ? act.body : (DEFAULT_STATUS_BODY[status] || oaError(`HTTP ${status}`, status >= 500 ? 'server_error' : 'invalid_request_error'));
      return reply(status, b);
    }
    if (act.garbage) {
      rec.status = 200;
      res.writeHead(200, { 'content-type': 'application/json', ...headers });
      res.end('<html><body>502 Bad Gateway</body></html>{"created":');
      return;
    }
    if (verdict.error) return reply(verdict.error.status, verdict.error.body);
    const created = Math.floor(Date.now() / 1000);
    if (act.noImages) return reply(200, { created, data: [] });
    const n = act.images ?? verdict.n;
    const [w, h] = act.imageSize || verdict.size.split('x').map(Number);
    const data = [];
    for (let i = 0; i < n; i++) {
      data.push({ b64_json: act.badImage ? Buffer.from(`this is not an image ${i}`).toString('base64') : encodePng(w, h, colorFor(i)).toString('base64') });
    }
    reply(200, {
      created, data, background: 'opaque', output_format: 'png', quality: verdict.quality, size: verdict.size,
      usage: { total_tokens: 100 + 50 * n, input_tokens: 100, output_tokens: 50 * n, input_tokens_details: { text_tokens: 20, image_tokens: 80 } },
    });
  }

  // Checks one request. → {error: {status, body} | null, n, size, quality}
  async function check(req, body, rec) {
    const v = rec.violations;
    let error = null;
    const fail = (status, bodyObj) => { if (!error) error = { status, body: bodyObj }; };
    const out = { n: 1, size: '1024x1024', quality: 'auto' };

    const path = (req.url || '').split('?')[0];
    if (req.method !== 'POST' || path !== '/v1/images/edits') {
      v.push(`unexpected request ${req.method} ${req.url} (only POST /v1/images/edits is spoken here)`);
      fail(404, oaError(`Invalid URL (${req.method} ${req.url})`));
      return { error, ...out };
    }
    const auth = req.headers.authorization;
    if (!auth) {
      v.push('no Authorization header');
      fail(401, oaError("You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username. You can obtain an API key from https://platform.openai.com/account/api-keys."));
    } else if (!/^Bearer /.test(auth) || auth.slice(7) !== apiKey) {
      v.push(/^Bearer /.test(auth) ? 'Authorization: Bearer with the wrong API key' : `Authorization is not "Bearer <key>": ${auth.split(' ')[0]} scheme`);
      const given = auth.replace(/^\S+\s+/, '');
      fail(401, oaError(`Incorrect API key provided: ${mask(given)}. You can find your API key at https://platform.openai.com/account/api-keys.`, 'invalid_request_error', null, 'invalid_api_key'));
    }

    const ct = req.headers['content-type'] || '';
    const boundary = boundaryOf(ct);
    if (!boundary) {
      v.push(`Content-Type is not multipart/form-data with a boundary: ${JSON.stringify(ct)}`);
      fail(400, oaError("Invalid Content-Type header (expected multipart/form-data with a boundary).", 'invalid_request_error', null, null));
      return { error, ...out };
    }
    const { parts, fatal } = parseMultipart(body, boundary, v);
    if (fatal) {
      v.push(fatal);
      fail(400, oaError('Could not parse multipart form', 'invalid_request_error', null, null));
      return { error, ...out };
    }
    try {
      if (crossCheck) await new Response(body, { headers: { 'content-type': ct } }).formData();
    } catch (e) {
      v.push(`a standard multipart parser (undici) rejects the body: ${e.message}`);
      fail(400, oaError('Could not parse multipart form', 'invalid_request_error', null, null));
    }

    const seen = new Map();
    const utf8 = new TextDecoder('utf-8', { fatal: true });
    for (const p of parts) {
      const name = p.name;
      if (name === undefined) { fail(400, oaError('Could not parse multipart form')); continue; }
      seen.set(name, (seen.get(name) || 0) + 1);
      if (name === 'image[]' || name === 'image') {
        if (name === 'image') v.push('image part named "image"; SPEC §7 sends one "image[]" part per input image');
        const i = rec.images.length;
        const format = sniffImage(p.data);
        const info = {
          name, filename: p.filename, contentType: p.contentType, format, bytes: p.data.length,
          sha256: createHash('sha256').update(p.data).digest('hex'),
        };
        rec.images.push(info);
        if (p.filename === undefined || p.filename === '') {
          v.push(`image part ${i} has no filename`);
          fail(400, oaError(`Invalid type for '${name}': expected a file, but got a string instead.`, 'invalid_request_error', name, 'invalid_type'));
        }
        if (!p.contentType) {
          v.push(`image part ${i} has no Content-Type`);
          fail(400, oaError(`Invalid file '${name}': unsupported mimetype ('application/octet-stream'). Supported file formats are 'image/jpeg', 'image/png', and 'image/webp'.`, 'invalid_request_error', name, 'unsupported_file_mimetype'));
        } else if (!IMAGE_TYPES.has(p.contentType.split(';')[0].trim().toLowerCase())) {
          v.push(`image part ${i} has Content-Type ${p.contentType}, not image/png, image/jpeg or image/webp`);
          fail(400, oaError(`Invalid file '${name}': unsupported mimetype ('${p.contentType}'). Supported file formats are 'image/jpeg', 'image/png', and 'image/webp'.`, 'invalid_request_error', name, 'unsupported_file_mimetype'));
        } else if (!format || MIME_OF[format] !== p.contentType.split(';')[0].trim().toLowerCase()) {
          v.push(`image part ${i} (${p.filename}) is declared ${p.contentType} but its bytes are ${format ? MIME_OF[format] : 'not an image'}`);
          fail(400, oaError(`Invalid image file or mode for image ${i + 1}, please check your image file.`, 'invalid_request_error', name, 'invalid_image_file'));
        }
        if (p.data.length > MAX_IMAGE_BYTES) {
          v.push(`image part ${i} is ${p.data.length} bytes; the limit is 50 MB`);
          fail(400, oaError(`Invalid file '${name}': file too large. Maximum size is 50 MB.`, 'invalid_request_error', name, 'invalid_value'));
        }
        continue;
      }
      if (p.filename !== undefined) {
        v.push(`text field "${name}" sent as a file part (filename="${p.filename}")`);
        fail(400, oaError(`Invalid type for '${name}': expected a string, but got a file instead.`, 'invalid_request_error', name, 'invalid_type'));
      }
      if (p.contentType && !/^text\/plain\b/i.test(p.contentType)) v.push(`text field "${name}" has Content-Type ${p.contentType}`);
      let value;
      try { value = utf8.decode(p.data); } catch { v.push(`field "${name}" is not valid UTF-8`); value = p.data.toString('latin1'); }
      if (name in rec.fields) {
        v.push(`field "${name}" sent more than once`);
        fail(400, oaError(`Duplicate parameter: '${name}'. Each parameter may be given only once.`, 'invalid_request_error', name, 'duplicate_parameter'));
      }
      rec.fields[name] = value;
      if (!['model', 'prompt', 'size', 'quality', 'n'].includes(name)) {
        if (OTHER_DOCUMENTED.has(name)) v.push(`field "${name}" is documented by OpenAI but not one SPEC §7 sends`);
        else {
          v.push(`unknown field "${name}"`);
          fail(400, oaError(`Unknown parameter: '${name}'.`, 'invalid_request_error', name, 'unknown_parameter'));
        }
      }
    }

    const f = rec.fields;
    if (!rec.images.length) {
      v.push('no image[] part');
      fail(400, oaError("Missing required parameter: 'image'.", 'invalid_request_error', 'image', 'missing_required_parameter'));
    } else if (rec.images.length > 16) {
      v.push(`${rec.images.length} image parts; gpt-image-1 takes at most 16`);
      fail(400, oaError(`Invalid 'image': array too long. Expected an array with maximum length 16, but got an array with length ${rec.images.length} instead.`, 'invalid_request_error', 'image', 'array_above_max_length'));
    }
    if (f.model === undefined) {
      v.push('no model field (OpenAI would fall back to dall-e-2)');
      fail(400, oaError("Missing required parameter: 'model'.", 'invalid_request_error', 'model', 'missing_required_parameter'));
    } else if (f.model !== 'gpt-image-1') {
      v.push(`model is ${JSON.stringify(f.model)}, not gpt-image-1`);
      fail(400, oaError(`Invalid value: '${f.model}'. Supported values are: 'gpt-image-1'.`, 'invalid_request_error', 'model', 'invalid_value'));
    }
    if (f.prompt === undefined) {
      v.push('no prompt field');
      fail(400, oaError("Missing required parameter: 'prompt'.", 'invalid_request_error', 'prompt', 'missing_required_parameter'));
    } else if (!f.prompt.trim()) {
      v.push('prompt is empty');
      fail(400, oaError("Invalid 'prompt': empty string. Expected a string with minimum length 1, but got an empty string instead.", 'invalid_request_error', 'prompt', 'empty_string'));
    } else if (f.prompt.length > 32000) {
      v.push(`prompt is ${f.prompt.length} characters; gpt-image-1 takes at most 32000`);
      fail(400, oaError(`Invalid 'prompt': string too long. Expected a string with maximum length 32000, but got a string with length ${f.prompt.length} instead.`, 'invalid_request_error', 'prompt', 'string_above_max_length'));
    }
    if (f.size === undefined) v.push('no size field (SPEC §7 always sends one)');
    else if (f.size === 'auto') v.push('size "auto": SPEC §7 sends 1024x1024, 1536x1024 or 1024x1536');
    else if (!SIZES.includes(f.size)) {
      v.push(`size ${JSON.stringify(f.size)} is not one of ${SIZES.join(', ')}`);
      fail(400, oaError(`Invalid value: '${f.size}'. Supported values are: '1024x1024', '1024x1536', '1536x1024', and 'auto'.`, 'invalid_request_error', 'size', 'invalid_value'));
    } else out.size = f.size;
    if (f.quality === undefined) v.push('no quality field (SPEC §7 always sends one)');
    else if (!QUALITIES.includes(f.quality)) {
      v.push(`quality ${JSON.stringify(f.quality)} is not one of ${QUALITIES.join(', ')}`);
      fail(400, oaError(`Invalid value: '${f.quality}'. Supported values are: 'low', 'medium', 'high', and 'auto'.`, 'invalid_request_error', 'quality', 'invalid_value'));
    } else out.quality = f.quality;
    if (f.n === undefined) v.push('no n field (SPEC §7 always sends the model\'s outputs)');
    else if (!/^[0-9]+$/.test(f.n)) {
      v.push(`n ${JSON.stringify(f.n)} is not an integer`);
      fail(400, oaError(`Invalid type for 'n': expected an integer, but got a string instead.`, 'invalid_request_error', 'n', 'invalid_type'));
    } else if (+f.n < 1 || +f.n > 10) {
      v.push(`n ${f.n} is outside 1–10`);
      fail(400, oaError(`Invalid 'n': integer ${+f.n < 1 ? 'below minimum value. Expected a value >= 1' : 'above maximum value. Expected a value <= 10'}, but got ${f.n} instead.`, 'invalid_request_error', 'n', +f.n < 1 ? 'integer_below_min_value' : 'integer_above_max_value'));
    } else out.n = +f.n;
    return { error, ...out };
  }

  return {
    url: lb.url,
    requests,
    // script(fn | object | array | null): what to do with the following requests.
    script(s) { script = s; },
    // Every violation of every request, as "#index: text".
    violations: () => requests.flatMap((r) => r.violations.map((x) => `#${r.index}: ${x}`)),
    reset() { requests.length = 0; script = initialScript; },
    close: lb.close,
  };
}
