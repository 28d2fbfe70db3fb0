// HTTP client for the Style Studio API (cookie session, same origin).

export class ApiError extends Error {
  constructor(status, body, headers) {
    super((body && body.error) || `Request failed (${status})`);
    this.status = status;
    this.code = (body && body.code) || (status ? `HTTP_${status}` : 'NETWORK_ERROR');
    this.validationErrors = (body && Array.isArray(body.validationErrors)) ? body.validationErrors : [];
    this.requestId = body && body.requestId;
    // Seconds to wait: Retry-After, else RateLimit-Reset (SPEC §1, 429/503).
    const num = (n) => { const v = headers ? Number(headers.get(n)) : NaN; return Number.isFinite(v) && v > 0 ? Math.ceil(v) : null; };
    this.retryAfter = num('Retry-After') || num('RateLimit-Reset');
  }
  fieldErrors() {
    const out = {};
    for (const v of this.validationErrors) if (v && v.field) out[v.field] = v.message;
    return out;
  }
}

const listeners = new Set();
/** Called with the ApiError on every 401 so the app can return to sign-in. */
export function onUnauthorized(fn) { listeners.add(fn); return () => listeners.delete(fn); }

export async function api(method, path, body, { headers = {}, signal } = {}) {
  const opts = { method, credentials: 'same-origin', headers: { Accept: 'application/json', ...headers }, signal };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, opts);
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError(0, { code: 'NETWORK_ERROR', error: 'Could not reach Style Studio. Check your connection and try again.' });
  }
  let json = null;
  try { json = await res.json(); } catch { json = null; }
  if (!res.ok || !json || json.success === false) {
    const err = new ApiError(res.status, json || { error: res.statusText || `HTTP ${res.status}` }, res.headers);
    if (res.status === 401 && !path.startsWith('/api/auth/')) listeners.forEach((fn) => fn(err));
    throw err;
  }
  return json.data;
}

export const get = (p, o) => api('GET', p, undefined, o);
export const post = (p, b = {}, o) => api('POST', p, b, o);
export const del = (p, o) => api('DELETE', p, undefined, o);

/**
 * Upload one image file to /api/upload (multipart field "file").
 * Uses XHR for upload progress; onProgress(fraction 0..1).
 * Returns {promise, abort}.
 */
export function uploadImage(file, onProgress) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    xhr.open('POST', '/api/upload');
    xhr.responseType = 'json';
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.addEventListener('progress', (e) => {
      if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total);
    });
    xhr.addEventListener('load', () => {
      const body = xhr.response || null;
      if (xhr.status >= 200 && xhr.status < 300 && body && body.success !== false) {
        resolve(body.data);
      } else {
        const hdrs = { get: (n) => xhr.getResponseHeader(n) };
        const err = new ApiError(xhr.status, body || { error: `Upload failed (${xhr.status})` }, hdrs);
        if (xhr.status === 413 && !body) err.code = 'PAYLOAD_TOO_LARGE';
        if (xhr.status === 401) listeners.forEach((fn) => fn(err));
        reject(err);
      }
    });
    xhr.addEventListener('error', () => reject(new ApiError(0, { code: 'NETWORK_ERROR', error: 'The upload was interrupted. Check your connection and try again.' })));
    xhr.addEventListener('abort', () => reject(Object.assign(new Error('aborted'), { name: 'AbortError' })));
    const fd = new FormData();
    fd.append('file', file, file.name);
    xhr.send(fd);
  });
  return { promise, abort: () => xhr.abort() };
}

/** Parse an SSE data payload that is either a bare object or an API envelope. */
export function parseEvent(e) {
  try {
    const d = JSON.parse(e.data);
    return d && d.success === true && d.data ? d.data : d;
  } catch {
    return null;
  }
}

export function idempotencyKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const a = new Uint8Array(16);
  crypto.getRandomValues(a);
  return [...a].map((b) => b.toString(16).padStart(2, '0')).join('');
}
