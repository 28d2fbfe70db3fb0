// Studio: images, style, model, quality, format, prompt, advanced → two-step generate.
import { h, icon, clear, toast, tokens, fmtBytes } from './dom.js';
import { get, post, uploadImage, idempotencyKey } from './api.js';
import { session, on } from './session.js';
import { createPanel, errorView, actionsFor, describeError, buyTokensDialog, fmtWait } from './genpanel.js';
import { templatesBar } from './templates.js';
import { createBatchPanel } from './batchpanel.js';

const BATCH_MAX = 20; // items per POST /api/generation/batch (SPEC §4)

const MAX_BYTES = 10 * 1024 * 1024;
const TYPES = ['image/jpeg', 'image/png', 'image/webp'];
const PROMPT_MAX = 500;

const STYLES = [
  { id: 'realistic', name: 'Realistic', desc: 'Lit studio sweep with a soft floor shadow — true-to-life catalogue shots.' },
  { id: 'artistic', name: 'Artistic', desc: 'Colour-graded, dramatic light for campaigns and social posts.' },
  { id: 'minimal', name: 'Minimal', desc: 'Clean white backdrop and a soft shadow — marketplace-ready.' },
];
const PROVIDER_NAME = { local: 'Built in', openai: 'OpenAI', replicate: 'Replicate' };
const QUALITIES = [
  { id: 'auto', name: 'Auto', desc: 'Balanced — we pick the best fit', mult: 1 },
  { id: 'low', name: 'Draft', desc: 'Fastest, for quick previews', mult: 1 },
  { id: 'medium', name: 'Standard', desc: 'Good detail for the web', mult: 1 },
  { id: 'high', name: 'High', desc: 'Larger render, finest detail', mult: 1.5 },
];
const RATIOS = [
  { id: '1:1', name: 'Square', use: 'Feeds, marketplaces' },
  { id: '4:5', name: 'Portrait', use: 'Instagram post' },
  { id: '3:4', name: 'Classic', use: 'Product pages' },
  { id: '2:3', name: 'Tall', use: 'Lookbooks, Pinterest' },
  { id: '9:16', name: 'Story', use: 'Stories, Reels' },
  { id: '4:3', name: 'Landscape', use: 'Web galleries' },
  { id: '3:2', name: 'Photo', use: 'Banners, email' },
  { id: '16:9', name: 'Wide', use: 'Hero banners' },
];
const ADV = {
  guidance_scale: { label: 'Guidance', min: 1, max: 20, step: 0.5, def: 7.5, help: 'How closely to follow the prompt.' },
  num_inference_steps: { label: 'Steps', min: 20, max: 100, step: 1, def: 50, help: 'More steps, more detail, more time.' },
  strength: { label: 'Strength', min: 0.1, max: 1, step: 0.05, def: 0.8, help: 'How far to move away from your photo.' },
};
const PARAM_NAME = { guidance_scale: 'guidance', num_inference_steps: 'steps', strength: 'strength', seed: 'seed' };

// Form state survives navigation between pages.
const S = {
  product: [], model: [],
  style: 'realistic', quality: 'auto', modelId: 'local-studio', aspect: '1:1', prompt: '',
  adv: { guidance_scale: 7.5, num_inference_steps: 50, strength: 0.8 }, seed: '', advOpen: false,
  currentGen: null,
  // Batch mode: several generations at once — the chosen styles × formats ×
  // product sets (all product images together, or one set per image).
  batch: { on: false, styles: ['realistic'], ratios: ['1:1'], perProduct: false },
  currentBatch: null,
  focusNext: null, // 'prompt' | 'image': what to focus when the studio opens next
};
let models = null;
let seq = 0;

// The form and the generation being watched survive a reload: kept in
// sessionStorage per account (uploaded images by URL; a file still uploading
// cannot be kept and is simply gone).
const STORE_PREFIX = 'ss.studio.';
let restoredFor = null;
function storeKey() { return session.user && session.user._id ? STORE_PREFIX + session.user._id : null; }
function persist() {
  const k = storeKey();
  if (!k) return;
  const img = (it) => ({ name: it.name, url: it.url });
  const snap = {
    product: S.product.filter((x) => x.status === 'done' && x.url).map(img),
    model: S.model.filter((x) => x.status === 'done' && x.url).map(img),
    style: S.style, quality: S.quality, modelId: S.modelId, aspect: S.aspect, prompt: S.prompt,
    adv: S.adv, seed: S.seed, advOpen: S.advOpen, currentGen: S.currentGen, priorityHigh: !!S.priorityHigh,
    batch: S.batch, currentBatch: S.currentBatch,
  };
  try { sessionStorage.setItem(k, JSON.stringify(snap)); } catch { /* private mode or full: not kept */ }
}
function restore() {
  const k = storeKey();
  if (!k || restoredFor === k) return;
  restoredFor = k;
  let snap = null;
  try { snap = JSON.parse(sessionStorage.getItem(k) || 'null'); } catch { snap = null; }
  if (!snap || typeof snap !== 'object') return;
  const img = (x) => ({ key: `k${++seq}`, name: String(x.name || x.url.split('/').pop()), previewUrl: x.url, url: x.url, status: 'done', progress: 1 });
  const imgs = (a) => (Array.isArray(a) ? a.filter((x) => x && typeof x.url === 'string').map(img) : []);
  S.product = imgs(snap.product);
  S.model = imgs(snap.model);
  for (const f of ['style', 'quality', 'modelId', 'aspect', 'prompt', 'seed', 'currentGen']) if (typeof snap[f] === 'string') S[f] = snap[f];
  if (snap.adv && typeof snap.adv === 'object') for (const a of Object.keys(ADV)) if (typeof snap.adv[a] === 'number') S.adv[a] = snap.adv[a];
  S.advOpen = !!snap.advOpen;
  S.priorityHigh = !!snap.priorityHigh;
  if (typeof snap.currentBatch === 'string') S.currentBatch = snap.currentBatch;
  const b = snap.batch;
  if (b && typeof b === 'object') {
    const ok = (list, all) => (Array.isArray(list) ? list.filter((x) => all.some((a) => a.id === x)) : []);
    S.batch = { on: !!b.on, styles: ok(b.styles, STYLES), ratios: ok(b.ratios, RATIOS), perProduct: !!b.perProduct };
  }
}

// A different account must not inherit the previous one's images or generation.
on('user', (u) => {
  if (u) return;
  restoredFor = null;
  try { Object.keys(sessionStorage).filter((k) => k.startsWith(STORE_PREFIX)).forEach((k) => sessionStorage.removeItem(k)); } catch { /* nothing kept */ }
  for (const it of [...S.product, ...S.model]) if (it.previewUrl && it.previewUrl.startsWith('blob:')) URL.revokeObjectURL(it.previewUrl);
  Object.assign(S, {
    product: [], model: [], style: 'realistic', quality: 'auto', aspect: '1:1', prompt: '',
    adv: { guidance_scale: 7.5, num_inference_steps: 50, strength: 0.8 }, seed: '', advOpen: false, currentGen: null,
    batch: { on: false, styles: ['realistic'], ratios: ['1:1'], perProduct: false }, currentBatch: null,
  });
});

/** Prefill the studio from an existing generation (History → "Use these settings"). */
export function loadSettings(rec) {
  restoredFor = storeKey(); // these settings win over what a reload kept
  const p = rec.parameters || {};
  const img = (url) => ({ key: `k${++seq}`, name: url.split('/').pop(), previewUrl: url, url, status: 'done', progress: 1 });
  S.product = (rec.productImages || []).map(img);
  S.model = (rec.modelImages || []).map(img);
  if (p.style) S.style = p.style;
  if (p.quality) S.quality = p.quality;
  if (p.model) S.modelId = p.model;
  if (p.aspectRatio) S.aspect = p.aspectRatio;
  S.prompt = rec.customPrompt || '';
  for (const k of Object.keys(ADV)) if (typeof p[k] === 'number') S.adv[k] = p[k];
  S.seed = typeof p.seed === 'number' ? String(p.seed) : '';
  S.advOpen = true;
}

/**
 * Open the studio prefilled from rec, with the prompt ('prompt') or the image
 * picker ('image') focused — the next step after a refused or unreadable input.
 */
export function editSettings(rec, focus) {
  loadSettings(rec);
  S.currentGen = null;
  S.focusNext = focus || null;
  if (location.hash === '#/studio') window.dispatchEvent(new HashChangeEvent('hashchange'));
  else location.hash = '#/studio';
}

function selectedModel() { return models && models.find((m) => m.id === S.modelId); }

function costOf(m, q) {
  if (!m) return null;
  if (m.costByQuality && typeof m.costByQuality[q] === 'number') return m.costByQuality[q];
  const mult = (QUALITIES.find((x) => x.id === q) || { mult: 1 }).mult;
  return Math.ceil(m.baseCost * mult);
}

function limits() {
  const m = selectedModel();
  const num = (v, d) => (typeof v === 'number' && v >= 0 ? v : d);
  return {
    product: Math.min(5, num(m && m.maxProductImages, 5)) || 5,
    model: Math.min(3, num(m && m.maxModelImages, 3)),
    modelMin: num(m && m.minModelImages, 0),
  };
}

/** Whether the selected model honours a create parameter (all do when the server does not say). */
function honours(key) {
  const m = selectedModel();
  return !m || !Array.isArray(m.parameters) || m.parameters.includes(key);
}

/**
 * A failed upload in words: {short (on the thumbnail), long (under the
 * uploader, after the file name), retryable}. A file the server refused
 * (not an image, too large, undecodable) fails the same way every time, so
 * only a connection or server problem offers Retry. Codes stay out of it.
 */
export function uploadFailure(err) {
  switch (err.code) {
    case 'PAYLOAD_TOO_LARGE':
      return { short: 'Too large', long: 'is larger than 10 MB. Remove it and add a smaller photo.', retryable: false };
    case 'IMAGE_VALIDATION_ERROR':
    case 'VALIDATION_ERROR':
      return { short: 'Not a readable image', long: 'can’t be used: it isn’t a complete JPEG, PNG or WebP image. Remove it and add another photo.', retryable: false };
    case 'RATE_LIMIT_EXCEEDED':
    case 'SERVICE_UNAVAILABLE':
      return { short: 'Not uploaded', long: 'wasn’t uploaded: the server is busy right now. Retry in a moment.', retryable: true };
    case 'NETWORK_ERROR':
      return { short: 'Not uploaded', long: 'wasn’t uploaded: the connection dropped. Check it and retry.', retryable: true };
    default:
      return { short: 'Not uploaded', long: 'wasn’t uploaded because of a problem on our side. Retry, or add it again later.', retryable: true };
  }
}

function photos(n, what) { return `${n} ${what}${n === 1 ? '' : 's'}`; }

/** What breaks the selected model's image limits, per uploader: {product?, model?}. */
function limitProblems() {
  const m = selectedModel();
  if (!m) return {};
  const name = m.name || m.id;
  const l = limits();
  const out = {};
  const np = S.product.length;
  const nm = S.model.length;
  if (np > l.product) out.product = `${name} takes ${l.product === 1 ? 'one product image' : `up to ${photos(l.product, 'product image')}`} — remove ${np - l.product}.`;
  if (l.model === 0 && nm > 0) out.model = `${name} doesn’t use model photos — remove ${nm === 1 ? 'it' : 'them'}, or pick another model.`;
  else if (nm > l.model) out.model = `${name} takes ${l.model === 1 ? 'one model photo' : `up to ${photos(l.model, 'model photo')}`} — remove ${nm - l.model}.`;
  else if (nm < l.modelMin) {
    const exact = l.modelMin === l.model;
    out.model = `${name} needs ${exact ? 'exactly' : 'at least'} ${photos(l.modelMin, 'model photo')} (a person to dress) — add ${nm ? `${l.modelMin - nm} more` : l.modelMin === 1 ? 'one' : l.modelMin}.`;
  }
  return out;
}

export async function render(container) {
  restore();
  const ui = {};
  const unsubs = [];
  let busy = false;
  let pendingStart = null;
  let waitUntil = 0; // after RATE_LIMIT_EXCEEDED / QUEUE_FULL: Generate comes back at this time
  let waitTimer = null;
  let waitCode = null;

  // ---- Panel ----------------------------------------------------------------
  const panel = createPanel({
    onRecord: () => { if (ui.tips) ui.tips.hidden = true; },
    onEdit: (rec, focus) => editSettings(rec, focus),
    onStarted: (id) => { if (pendingStart === id) pendingStart = null; },
    onGone: (id) => { if (S.currentGen === id) { S.currentGen = null; persist(); } if (ui.tips) ui.tips.hidden = false; },
    onNewGeneration: (id, created) => { S.currentGen = id; persist(); panel.track(id, { tokensUsed: created.estimatedCost, status: 'processing', stage: 'queued' }); },
  });
  panel.el.hidden = true;
  const batchPanel = createBatchPanel({
    onGone: (id) => { if (S.currentBatch === id) { S.currentBatch = null; persist(); } },
  });

  // ---- Images ----------------------------------------------------------------
  function uploader(kind, title, desc, required) {
    const input = h('input', { type: 'file', class: 'sr-only', id: `file-${kind}`, multiple: true, accept: TYPES.join(','), 'aria-describedby': `drop-${kind}-hint err-${kind} limit-${kind}` });
    const count = h('span', { class: 'count-pill', 'data-count': kind });
    const error = h('p', { class: 'field-error', id: `err-${kind}`, role: 'alert', 'data-error-for': kind === 'product' ? 'productImages' : 'modelImages' });
    const limit = h('p', { class: 'field-error limit-error', id: `limit-${kind}`, 'data-limit-for': kind });
    const descEl = h('p', { class: 'muted small', 'data-desc': kind }, desc);
    const pill = required ? h('span', { class: 'req' }, 'Required') : h('span', { class: 'opt' }, 'Optional');
    const thumbs = h('ul', { class: 'thumbs', role: 'list', 'aria-label': `${title} (drag to reorder)` });
    const drop = h('label', { class: 'dropzone', for: `file-${kind}`, 'data-drop': kind },
      h('span', { class: 'dropzone-icon' }, icon('upload')),
      h('span', { class: 'dropzone-text dz-pointer' }, h('strong', {}, 'Drop images here'), ' or ', h('span', { class: 'link' }, 'browse')),
      h('span', { class: 'dropzone-text dz-touch' }, h('strong', {}, 'Tap to add photos')),
      h('span', { class: 'dropzone-hint', id: `drop-${kind}-hint` }, 'JPEG, PNG or WebP · up to 10 MB each'));
    input.addEventListener('change', () => { addFiles(kind, [...input.files]); input.value = ''; });
    drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
    drop.addEventListener('dragleave', () => drop.classList.remove('over'));
    drop.addEventListener('drop', (e) => {
      e.preventDefault();
      drop.classList.remove('over');
      if (e.dataTransfer && e.dataTransfer.files.length) addFiles(kind, [...e.dataTransfer.files]);
    });
    const box = h('div', { class: 'uploader', id: `up-${kind}` },
      h('div', { class: 'uploader-head' },
        h('div', {}, h('h3', { class: 'uploader-title' }, title, pill), descEl),
        count),
      input, drop, error, limit, thumbs);
    ui[kind] = { input, count, error, limit, thumbs, drop, box, descEl, pill };
    return box;
  }

  function addFiles(kind, files) {
    const list = S[kind];
    const max = limits()[kind];
    const errors = [];
    let room = max - list.length;
    const m = selectedModel();
    if (max === 0) {
      ui[kind].error.textContent = `${m ? m.name || m.id : 'This model'} doesn’t use ${kind} photos — pick another model to add one.`;
      return;
    }
    for (const f of files) {
      if (!TYPES.includes(f.type)) { errors.push(`“${f.name}” isn’t a JPEG, PNG or WebP image.`); continue; }
      if (f.size > MAX_BYTES) { errors.push(`“${f.name}” is ${fmtBytes(f.size)} — the limit is 10 MB.`); continue; }
      if (f.size === 0) { errors.push(`“${f.name}” is empty.`); continue; }
      if (room <= 0) { errors.push(`You can add up to ${max} ${kind} image${max === 1 ? '' : 's'} — “${f.name}” was not added.`); continue; }
      room--;
      const item = { key: `k${++seq}`, file: f, name: f.name, size: f.size, previewUrl: URL.createObjectURL(f), status: 'uploading', progress: 0 };
      list.push(item);
      startUpload(kind, item);
    }
    ui[kind].error.textContent = errors.join(' ');
    renderThumbs(kind);
    update();
  }

  function startUpload(kind, item) {
    item.status = 'uploading';
    item.progress = 0;
    item.error = null;
    const up = uploadImage(item.file, (p) => {
      item.progress = p;
      const li = ui[kind] && ui[kind].thumbs.querySelector(`[data-key="${item.key}"]`);
      if (li) {
        const bar = li.querySelector('.thumb-progress-fill');
        if (bar) bar.style.width = `${Math.round(p * 100)}%`;
        const pb = li.querySelector('[role="progressbar"]');
        if (pb) pb.setAttribute('aria-valuenow', String(Math.round(p * 100)));
        const pct = li.querySelector('.thumb-pct');
        if (pct) pct.textContent = `${Math.round(p * 100)}%`;
      }
    });
    item.abort = up.abort;
    up.promise.then((data) => {
      item.status = 'done';
      item.url = data.url;
      item.meta = data;
      item.progress = 1;
    }).catch((err) => {
      if (err.name === 'AbortError') return;
      const f = uploadFailure(err);
      item.status = 'error';
      item.error = f.short;
      item.retryable = f.retryable;
      if (ui[kind]) ui[kind].error.textContent = `“${item.name}” ${f.long}`;
    }).finally(() => { if (ui[kind]) { renderThumbs(kind); update(); } });
  }

  function removeItem(kind, key) {
    const i = S[kind].findIndex((x) => x.key === key);
    if (i < 0) return;
    const [it] = S[kind].splice(i, 1);
    if (it.abort && it.status === 'uploading') it.abort();
    if (it.previewUrl && it.previewUrl.startsWith('blob:')) URL.revokeObjectURL(it.previewUrl);
    ui[kind].error.textContent = '';
    renderThumbs(kind);
    update();
    const next = ui[kind].thumbs.querySelector('button') || ui[kind].input;
    next.focus();
  }

  function move(kind, key, delta, refocus = true) {
    const list = S[kind];
    const i = list.findIndex((x) => x.key === key);
    const j = i + delta;
    if (i < 0 || j < 0 || j >= list.length) return;
    [list[i], list[j]] = [list[j], list[i]];
    renderThumbs(kind);
    if (refocus) {
      const btn = ui[kind].thumbs.querySelector(`[data-key="${key}"] [data-move="${delta < 0 ? 'left' : 'right'}"]`);
      if (btn && !btn.disabled) btn.focus(); else { const any = ui[kind].thumbs.querySelector(`[data-key="${key}"] button`); if (any) any.focus(); }
    }
  }

  let dragKey = null;
  function describeLimits(kind) {
    const l = limits();
    const m = selectedModel();
    const name = m ? m.name || m.id : 'This model';
    const u = ui[kind];
    if (kind === 'product') {
      u.descEl.textContent = l.product === 1 ? `${name} takes one product image.` : `Up to ${l.product}. The first one is the main product.`;
      return;
    }
    u.descEl.textContent = l.model === 0 ? `${name} doesn’t use model photos.`
      : l.modelMin > 0 ? `${l.modelMin === l.model ? 'Exactly' : 'At least'} ${photos(l.modelMin, 'photo')} of the person to dress.`
        : `Up to ${photos(l.model, 'photo')} of a person or mannequin.`;
    u.pill.className = l.modelMin > 0 ? 'req' : 'opt';
    u.pill.textContent = l.modelMin > 0 ? 'Required' : 'Optional';
    u.input.disabled = l.model === 0;
    u.box.classList.toggle('is-unused', l.model === 0 && !S.model.length);
  }

  function renderThumbs(kind) {
    const { thumbs, count } = ui[kind];
    const list = S[kind];
    const max = limits()[kind];
    describeLimits(kind);
    count.textContent = `${list.length} / ${max}`;
    ui[kind].drop.classList.toggle('is-full', list.length >= max);
    ui[kind].box.classList.toggle('has-items', list.length > 0);
    clear(thumbs);
    list.forEach((it, idx) => {
      const label = `${kind === 'product' ? 'Product' : 'Model'} image ${idx + 1}: ${it.name}`;
      // A refused file has no preview worth showing (it may not decode at
      // all, and a broken <img> paints its alt text behind the error).
      const li = h('li', { class: `thumb is-${it.status}`, 'data-key': it.key, draggable: 'true' },
        it.status === 'error' ? null : h('img', { src: it.previewUrl, alt: label, loading: 'lazy' }),
        h('span', { class: 'thumb-index' }, idx === 0 && kind === 'product' ? 'Main' : String(idx + 1)),
        it.status === 'uploading' ? h('div', { class: 'thumb-progress', role: 'progressbar', 'aria-label': `Uploading ${it.name}`, 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': String(Math.round(it.progress * 100)) },
          h('div', { class: 'thumb-progress-fill', style: { width: `${Math.round(it.progress * 100)}%` } })) : null,
        it.status === 'uploading' ? h('span', { class: 'thumb-pct', 'aria-hidden': 'true' }, `${Math.round(it.progress * 100)}%`) : null,
        it.status === 'done' ? h('span', { class: 'thumb-ok', title: 'Uploaded' }, icon('check'), h('span', { class: 'sr-only' }, 'Uploaded')) : null,
        it.status === 'error' ? h('div', { class: 'thumb-error', role: 'img', 'aria-label': `${label} — ${it.error || 'not uploaded'}` },
          icon('alert'), h('span', { class: 'thumb-error-text' }, it.error || 'Not uploaded'), h('span', { class: 'thumb-error-name' }, it.name),
          it.file && it.retryable ? h('button', { type: 'button', class: 'btn btn-light btn-xs', 'data-retry-upload': '', onclick: () => { ui[kind].error.textContent = ''; startUpload(kind, it); renderThumbs(kind); update(); } }, 'Retry') : null) : null,
        h('div', { class: 'thumb-tools' },
          h('button', { type: 'button', class: 'thumb-btn', 'data-move': 'left', 'aria-label': `Move ${it.name} earlier`, disabled: idx === 0, onclick: () => move(kind, it.key, -1) }, icon('left')),
          h('button', { type: 'button', class: 'thumb-btn', 'data-move': 'right', 'aria-label': `Move ${it.name} later`, disabled: idx === list.length - 1, onclick: () => move(kind, it.key, 1) }, icon('right')),
          h('button', { type: 'button', class: 'thumb-btn thumb-remove', 'data-remove': '', 'aria-label': `Remove ${it.name}`, onclick: () => removeItem(kind, it.key) }, icon('x'))));
      li.addEventListener('dragstart', (e) => { dragKey = it.key; li.classList.add('dragging'); e.dataTransfer.effectAllowed = 'move'; e.dataTransfer.setData('text/plain', it.key); });
      li.addEventListener('dragend', () => { dragKey = null; li.classList.remove('dragging'); });
      li.addEventListener('dragover', (e) => { if (dragKey && S[kind].some((x) => x.key === dragKey)) { e.preventDefault(); li.classList.add('drop-target'); } });
      li.addEventListener('dragleave', () => li.classList.remove('drop-target'));
      li.addEventListener('drop', (e) => {
        if (!dragKey) return;
        e.preventDefault();
        e.stopPropagation();
        const from = S[kind].findIndex((x) => x.key === dragKey);
        const to = S[kind].findIndex((x) => x.key === it.key);
        if (from >= 0 && to >= 0 && from !== to) { const [m] = S[kind].splice(from, 1); S[kind].splice(to, 0, m); }
        renderThumbs(kind);
      });
      thumbs.append(li);
    });
  }

  // ---- Option cards ----------------------------------------------------------
  /** Option cards: radios, or checkboxes when `current` is an array (batch mode: onPick(id, checked)). */
  function radioGroup(name, label, options, current, onPick, cls) {
    const multi = Array.isArray(current);
    const group = h('div', { class: `options ${cls}${multi ? ' is-multi' : ''}`, role: multi ? 'group' : 'radiogroup', 'aria-label': multi ? `${label} (one or more)` : label, id: `grp-${name}` });
    for (const o of options) {
      const input = h('input', { type: multi ? 'checkbox' : 'radio', name, value: o.id, class: 'sr-only', checked: multi ? current.includes(o.id) : o.id === current, disabled: o.disabled, 'aria-describedby': o.describedBy });
      input.addEventListener('change', () => { if (multi) onPick(o.id, input.checked); else if (input.checked) onPick(o.id); });
      group.append(h('label', { class: `opt-card ${o.disabled ? 'is-disabled' : ''}`, 'data-value': o.id }, input, o.body));
    }
    return group;
  }

  function styleCards() {
    return radioGroup('style', 'Style', STYLES.map((s) => ({
      id: s.id,
      body: [h('span', { class: `style-swatch sw-${s.id}`, 'aria-hidden': 'true' }, h('span', { class: 'sw-item' })),
        h('span', { class: 'opt-text' }, h('span', { class: 'opt-name' }, s.name), h('span', { class: 'opt-desc' }, s.desc))],
    })), S.batch.on ? S.batch.styles : S.style, S.batch.on ? (v, on) => pickMany('styles', STYLES, v, on) : (v) => { S.style = v; update(); }, 'opts-style');
  }

  /** Batch mode: add or drop a style or format; the list keeps the cards' order. */
  function pickMany(key, all, v, on) {
    const set = new Set(S.batch[key]);
    if (on) set.add(v); else set.delete(v);
    S.batch[key] = all.map((x) => x.id).filter((id) => set.has(id));
    update();
  }

  function qualityCards() {
    const m = selectedModel();
    return radioGroup('quality', 'Quality', QUALITIES.map((q) => {
      const c = costOf(m, q.id);
      return {
        id: q.id,
        body: h('span', { class: 'opt-text' },
          h('span', { class: 'opt-row' }, h('span', { class: 'opt-name' }, q.name), c != null ? h('span', { class: 'cost-tag' }, icon('coin'), String(c)) : null),
          h('span', { class: 'opt-desc' }, q.desc)),
      };
    }), S.quality, (v) => { S.quality = v; refreshModels(); update(); }, 'opts-quality');
  }

  function modelCards() {
    if (!models) return h('div', { class: 'options opts-model' }, h('div', { class: 'skel skel-opt' }), h('div', { class: 'skel skel-opt' }));
    const q = QUALITIES.find((x) => x.id === S.quality) || QUALITIES[0];
    return radioGroup('model', 'Model', models.map((m) => {
      const c = costOf(m, S.quality);
      return {
        id: m.id,
        disabled: !m.available,
        describedBy: `cost-${m.id} ${m.available ? '' : `why-${m.id}`}`.trim(),
        body: h('span', { class: 'opt-text' },
          h('span', { class: 'opt-row' }, h('span', { class: 'opt-name' }, m.name || m.id),
            c != null ? h('span', { class: 'cost-tag', id: `cost-${m.id}`, 'data-model-cost': m.id, title: `${tokens(c)} at ${q.name} quality` }, icon('coin'), tokens(c)) : null),
          h('span', { class: 'opt-desc' }, m.description || ''),
          h('span', { class: 'opt-meta' },
            h('span', { class: 'provider' }, PROVIDER_NAME[m.provider] || m.provider),
            inputsNote(m) ? h('span', { class: 'model-inputs' }, inputsNote(m)) : null,
            m.available ? h('span', { class: 'avail ok' }, h('span', { class: 'badge-dot' }), 'Available')
              : h('span', { class: 'avail no', id: `why-${m.id}`, 'data-unavailable': m.id }, h('span', { class: 'badge-dot' }), `Unavailable — ${m.unavailableReason || 'not configured on this server'}`))),
      };
    }), S.modelId, (v) => { S.modelId = v; refreshQuality(); renderThumbs('product'); renderThumbs('model'); refreshAdvanced(); update(); }, 'opts-model');
  }

  /** "1 product image · needs 1 model photo", or null for the usual limits. */
  function inputsNote(m) {
    const mp = typeof m.maxProductImages === 'number' ? m.maxProductImages : 5;
    const mm = typeof m.maxModelImages === 'number' ? m.maxModelImages : 3;
    const min = m.minModelImages || 0;
    const parts = [];
    if (mp < 5) parts.push(photos(mp, 'product image'));
    if (min > 0) parts.push(`needs ${min === mm ? '' : 'at least '}${photos(min, 'model photo')}`);
    else if (mm === 0) parts.push('no model photos');
    else if (mm < 3) parts.push(`up to ${photos(mm, 'model photo')}`);
    return parts.length ? parts.join(' · ') : null;
  }

  function ratioCards() {
    return radioGroup('aspect', 'Aspect ratio', RATIOS.map((r) => {
      const [w, hh] = r.id.split(':').map(Number);
      const k = 30 / Math.max(w, hh);
      return {
        id: r.id,
        body: [h('span', { class: 'shape-box', 'aria-hidden': 'true' }, h('span', { class: 'shape', style: { width: `${Math.round(w * k)}px`, height: `${Math.round(hh * k)}px` } })),
          h('span', { class: 'opt-name' }, r.id), h('span', { class: 'opt-desc' }, r.name)],
      };
    }), S.batch.on ? S.batch.ratios : S.aspect, S.batch.on ? (v, on) => pickMany('ratios', RATIOS, v, on) : (v) => { S.aspect = v; update(); }, 'opts-ratio');
  }

  function refreshQuality() { ui.qualityWrap.replaceChildren(qualityCards()); }
  // Model cards show the cost at the chosen quality; keep focus on the quality card.
  function refreshModels() { if (models && ui.modelWrap) ui.modelWrap.replaceChildren(modelCards()); }

  // ---- Prompt + advanced ------------------------------------------------------
  const prompt = h('textarea', { id: 'custom-prompt', class: 'input textarea', rows: 3, maxlength: PROMPT_MAX, placeholder: 'e.g. soft morning light, linen texture, warm beige tones', 'aria-describedby': 'prompt-count err-prompt' });
  prompt.value = S.prompt;
  const counter = h('span', { class: 'counter', id: 'prompt-count' });
  const updCounter = () => {
    const n = prompt.value.length;
    counter.textContent = `${n} / ${PROMPT_MAX}`;
    counter.classList.toggle('warn', n > PROMPT_MAX * 0.9);
  };
  prompt.addEventListener('input', () => { S.prompt = prompt.value; updCounter(); ui.errPrompt.textContent = ''; persist(); });
  updCounter();
  ui.errPrompt = h('p', { class: 'field-error', id: 'err-prompt', 'data-error-for': 'customPrompt' });

  const resetters = [];
  const advFields = {}; // parameter name → its field, hidden when the model does not honour it
  function slider(key) {
    const d = ADV[key];
    const id = `adv-${key}`;
    const out = h('output', { for: id, class: 'slider-value' }, String(S.adv[key]));
    const input = h('input', { type: 'range', id, min: d.min, max: d.max, step: d.step, class: 'slider', 'aria-describedby': `${id}-help`, value: String(S.adv[key]) });
    const paint = () => { input.style.setProperty('--fill', `${((input.value - d.min) / (d.max - d.min)) * 100}%`); };
    input.addEventListener('input', () => { S.adv[key] = Number(input.value); out.textContent = input.value; paint(); persist(); });
    paint();
    resetters.push(() => { input.value = String(S.adv[key]); out.textContent = String(S.adv[key]); paint(); });
    advFields[key] = h('div', { class: 'slider-field', 'data-param': key },
      h('div', { class: 'slider-head' }, h('label', { for: id, class: 'label' }, d.label), out),
      input,
      h('p', { class: 'hint', id: `${id}-help` }, `${d.help} Range ${d.min}–${d.max}, default ${d.def}.`),
      h('p', { class: 'field-error', 'data-error-for': `parameters.${key}` }));
    return advFields[key];
  }

  const seedInput = h('input', { id: 'adv-seed', type: 'number', class: 'input', min: 0, max: 2147483647, step: 1, inputmode: 'numeric', placeholder: 'Random', 'aria-describedby': 'seed-help err-seed' });
  seedInput.value = S.seed;
  const seedErr = h('p', { class: 'field-error', id: 'err-seed', 'data-error-for': 'parameters.seed' });
  seedInput.addEventListener('input', () => { S.seed = seedInput.value; validateSeed(); update(); });
  function validateSeed() {
    const v = seedInput.value.trim();
    let msg = '';
    if (v !== '' && (!/^\d+$/.test(v) || Number(v) > 2147483647)) msg = 'Use a whole number from 0 to 2147483647, or leave empty for random.';
    seedErr.textContent = msg;
    if (msg) seedInput.setAttribute('aria-invalid', 'true'); else seedInput.removeAttribute('aria-invalid');
    return !msg;
  }

  const advNote = h('span', { class: 'muted small summary-note' }, 'Guidance, steps, strength, seed');
  const advNone = h('p', { class: 'muted small adv-none', 'data-adv-none': '', hidden: true });
  const advanced = h('details', { class: 'advanced', id: 'advanced', open: S.advOpen },
    h('summary', {}, icon('sliders'), h('span', {}, 'Advanced settings'), advNote),
    advNone,
    h('div', { class: 'adv-grid' },
      slider('guidance_scale'), slider('num_inference_steps'), slider('strength'),
      advFields.seed = h('div', { class: 'slider-field', 'data-param': 'seed' },
        h('label', { for: 'adv-seed', class: 'label' }, 'Seed'),
        h('div', { class: 'input-group' }, seedInput,
          h('button', { type: 'button', class: 'input-addon', 'aria-label': 'Randomize seed', title: 'Randomize seed', onclick: () => { const a = new Uint32Array(1); crypto.getRandomValues(a); seedInput.value = String(a[0] % 2147483648); S.seed = seedInput.value; validateSeed(); update(); } }, icon('dice'))),
        h('p', { class: 'hint', id: 'seed-help' }, 'Same seed + same settings = same image. Empty picks a random one.'),
        seedErr)),
    h('div', { class: 'adv-foot' }, h('button', {
      type: 'button', class: 'btn btn-ghost btn-sm', onclick: () => {
        for (const k of Object.keys(ADV)) S.adv[k] = ADV[k].def;
        resetters.forEach((fn) => fn());
        S.seed = '';
        seedInput.value = '';
        validateSeed();
        update();
        toast('Advanced settings reset to defaults', 'info');
      },
    }, icon('retry'), 'Reset to defaults')));
  advanced.addEventListener('toggle', () => { S.advOpen = advanced.open; persist(); });

  /** Show only the settings the selected model honours (GET /api/models `parameters`). */
  function refreshAdvanced() {
    const shown = [];
    for (const [key, el] of Object.entries(advFields)) {
      el.hidden = !honours(key);
      if (!el.hidden) shown.push(PARAM_NAME[key]);
    }
    const m = selectedModel();
    advNone.hidden = shown.length > 0;
    advNone.textContent = `${m ? m.name || m.id : 'This model'} has no adjustable settings: it decides them itself.`;
    advanced.querySelector('.adv-foot').hidden = shown.length === 0;
    advNote.textContent = shown.length ? shown.join(', ').replace(/^./, (c) => c.toUpperCase()) : 'None for this model';
  }

  // ---- Summary / generate ---------------------------------------------------------
  const balEl = h('strong', { 'data-summary-balance': '' });
  const costEl = h('strong', { 'data-cost': '' });
  const costNote = h('span', { class: 'muted small', 'data-cost-note': '' });
  const afterEl = h('strong', {});
  const genBtn = h('button', { type: 'button', class: 'btn btn-primary btn-lg btn-block', id: 'generate-btn', 'aria-describedby': 'gen-reason', onclick: () => generate() },
    icon('sparkles'), h('span', { 'data-gen-label': '' }, 'Generate'));
  const reason = h('p', { class: 'gen-reason', id: 'gen-reason', 'aria-live': 'polite' });
  const summaryErr = h('div', { class: 'summary-error' });
  // Priority "high" is for the pro plan only (SPEC §4): free users are not offered it.
  const prioInput = h('input', { type: 'checkbox', id: 'priority-high', 'data-priority': '', onchange: () => { S.priorityHigh = prioInput.checked; persist(); } });
  const prioWrap = h('label', { class: 'priority-opt', for: 'priority-high', 'data-priority-opt': '' },
    prioInput, h('span', {}, h('strong', {}, 'High priority'), ' ', h('span', { class: 'muted small' }, 'Pro: jumps ahead of normal jobs in the queue')));
  function renderPriority() {
    const pro = !!(session.user && session.user.plan === 'pro');
    prioWrap.hidden = !pro;
    if (!pro) S.priorityHigh = false;
    prioInput.checked = !!S.priorityHigh;
  }
  renderPriority();
  const modeOne = h('button', { type: 'button', class: 'mode-btn', 'data-mode': 'single', onclick: () => setBatch(false) }, 'One generation');
  const modeBatch = h('button', { type: 'button', class: 'mode-btn', 'data-mode': 'batch', onclick: () => setBatch(true) }, icon('grid'), 'Batch');
  const modeSwitch = h('div', { class: 'mode-switch', role: 'group', 'aria-label': 'One generation or a batch' }, modeOne, modeBatch);
  const costLabel = h('dt', { 'data-cost-label': '' }, 'This generation');
  /** Batch mode on or off: styles and formats become one-or-more, the cost the total. */
  function setBatch(on) {
    S.batch.on = on;
    if (on) { S.batch.styles = [S.style]; S.batch.ratios = [S.aspect]; } else {
      if (S.batch.styles.length) S.style = S.batch.styles[0];
      if (S.batch.ratios.length) S.aspect = S.batch.ratios[0];
    }
    clear(summaryErr);
    renderPage();
  }
  const summary = h('section', { class: 'card summary', 'aria-label': 'Cost and generate' },
    modeSwitch,
    h('dl', { class: 'summary-list' },
      h('div', {}, h('dt', {}, 'Your balance'), h('dd', {}, balEl)),
      h('div', {}, costLabel, h('dd', {}, costEl, costNote)),
      h('div', { class: 'summary-after' }, h('dt', {}, 'Balance after'), h('dd', {}, afterEl))),
    prioWrap, genBtn, reason, summaryErr);

  /** How many generations a Generate makes now (1, or the batch's product sets × styles × formats). */
  function batchCount() {
    if (!S.batch.on) return 1;
    const n = S.product.length;
    return (S.batch.perProduct && n > 1 ? n : 1) * S.batch.styles.length * S.batch.ratios.length;
  }
  function totalCost() {
    const unit = costOf(selectedModel(), S.quality);
    return unit == null ? null : unit * batchCount();
  }
  /** The batch's create bodies, in order: product set, then style, then format. */
  function batchItems() {
    const base = buildBody();
    const imgs = base.productImages;
    const sets = S.batch.perProduct && imgs.length > 1 ? imgs.map((u) => [u]) : [imgs];
    const items = [];
    for (const set of sets) for (const style of S.batch.styles) for (const aspectRatio of S.batch.ratios) items.push({ ...base, productImages: set, style, aspectRatio });
    return items;
  }

  function blockReason() {
    const m = selectedModel();
    const cost = totalCost();
    if (!models) return { text: 'Loading models…' };
    if (!m) return { text: 'Choose a model.' };
    if (!m.available) return { text: `${m.name || m.id} is unavailable: ${m.unavailableReason || 'not configured on this server'}.` };
    if (S.product.some((x) => x.status === 'uploading') || S.model.some((x) => x.status === 'uploading')) return { text: 'Waiting for uploads to finish…' };
    const failed = [...S.product, ...S.model].filter((x) => x.status === 'error');
    if (failed.length) return { text: failed.every((x) => !x.retryable) ? `Remove the image${failed.length === 1 ? '' : 's'} that can’t be used.` : 'Remove or retry the images that failed to upload.' };
    if (!S.product.length) return { text: 'Add at least one product image to start.' };
    const lp = limitProblems();
    if (lp.product || lp.model) return { text: lp.product || lp.model, limit: true };
    if (seedInput.getAttribute('aria-invalid') && honours('seed')) return { text: 'Fix the seed in Advanced settings.' };
    if (S.batch.on && !S.batch.styles.length) return { text: 'Pick at least one style for the batch.' };
    if (S.batch.on && !S.batch.ratios.length) return { text: 'Pick at least one format for the batch.' };
    if (S.batch.on && batchCount() > BATCH_MAX) return { text: `A batch holds up to ${BATCH_MAX} generations — this one would make ${batchCount()}. Pick fewer styles or formats.`, limit: true };
    const left = Math.ceil((waitUntil - Date.now()) / 1000);
    if (left > 0) return { text: waitCode === 'QUEUE_FULL' ? `The queue is full — you can try again in ${fmtWait(left)}.` : `Generation limit reached — you can generate again in ${fmtWait(left)}.`, limit: true };
    if (session.balance != null && cost != null && session.balance < cost) return { text: `Not enough tokens: this needs ${tokens(cost)}, you have ${session.balance}.`, tokens: true };
    return null;
  }

  function update() {
    persist();
    const m = selectedModel();
    const cost = totalCost();
    const n = batchCount();
    balEl.textContent = session.balance == null ? '—' : tokens(session.balance);
    costEl.textContent = cost == null ? '—' : tokens(cost);
    const q = QUALITIES.find((x) => x.id === S.quality);
    costLabel.textContent = S.batch.on ? 'This batch' : 'This generation';
    costNote.textContent = m ? `${S.batch.on ? `${n} generation${n === 1 ? '' : 's'} · ` : ''}${m.name || m.id} · ${q ? q.name : S.quality}` : '';
    summary.classList.toggle('is-batch', S.batch.on);
    modeOne.setAttribute('aria-pressed', String(!S.batch.on));
    modeBatch.setAttribute('aria-pressed', String(S.batch.on));
    if (ui.perProduct) ui.perProduct.hidden = !S.batch.on || S.product.length < 2;
    afterEl.textContent = cost == null || session.balance == null ? '—'
      : session.balance >= cost ? tokens(session.balance - cost) : `short by ${tokens(cost - session.balance)}`;
    afterEl.classList.toggle('neg', cost != null && session.balance != null && session.balance < cost);
    const lp = limitProblems();
    for (const kind of ['product', 'model']) if (ui[kind]) ui[kind].limit.textContent = lp[kind] || '';
    const r = blockReason();
    genBtn.disabled = !!r || busy;
    genBtn.querySelector('[data-gen-label]').textContent = busy ? 'Starting…' : cost == null ? 'Generate'
      : S.batch.on ? `Generate ${n} · ${tokens(cost)}` : `Generate · ${tokens(cost)}`;
    genBtn.classList.toggle('loading', busy);
    clear(reason);
    if (r) {
      const acts = [];
      if (r.tokens) {
        acts.push(h('button', { type: 'button', class: 'link-btn', onclick: buyTokensDialog }, 'Get more tokens'));
        const cheap = cheapest();
        if (cheap && cheap.cost <= session.balance && (cheap.model.id !== S.modelId || S.quality !== 'auto')) {
          acts.push(h('button', { type: 'button', class: 'link-btn', onclick: cheaper }, `Use ${cheap.model.name || cheap.model.id} · Auto (${tokens(cheap.cost)})`));
        }
      }
      reason.append(icon(r.tokens ? 'coin' : 'info'), h('span', { class: 'gen-reason-text' }, h('span', {}, r.text), acts.length ? h('span', { class: 'gen-reason-acts' }, acts) : null));
    }
    reason.classList.toggle('is-warning', !!(r && (r.tokens || r.limit)));
  }

  function buildBody() {
    const body = {
      productImages: S.product.map((x) => x.url),
      modelImages: S.model.map((x) => x.url),
      model: S.modelId,
      style: S.style,
      quality: S.quality,
      aspectRatio: S.aspect,
      parameters: {},
    };
    for (const [k, v] of Object.entries(S.adv)) if (honours(k)) body.parameters[k] = v;
    if (S.prompt.trim()) body.customPrompt = S.prompt.trim();
    if (S.seed.trim() !== '' && honours('seed')) body.parameters.seed = Number(S.seed);
    if (S.priorityHigh && session.user && session.user.plan === 'pro') body.priority = 'high';
    return body;
  }

  function clearFieldErrors() {
    container.querySelectorAll('[data-error-for]').forEach((p) => { if (p !== seedErr) p.textContent = ''; });
    clear(summaryErr);
  }

  function fixField(err) {
    const fe = err.fieldErrors();
    let target = null;
    for (const [field, msg] of Object.entries(fe)) {
      const p = container.querySelector(`[data-error-for="${CSS.escape(field)}"]`) ||
        container.querySelector(`[data-error-for="${CSS.escape(field.split('[')[0])}"]`);
      if (p) { p.textContent = msg; if (!target) target = p; }
      if (field.startsWith('parameters.')) advanced.open = true;
    }
    const sectionFor = { IMAGE_VALIDATION_ERROR: 'sec-images', MODEL_ERROR: 'sec-model' }[err.code];
    const el = target ? target.closest('section, .slider-field, .uploader') : sectionFor ? document.getElementById(sectionFor) : null;
    if (el) {
      el.scrollIntoView({ behavior: 'smooth', block: 'center' });
      const f = el.querySelector('input:not([type=hidden]):not([disabled]), textarea, button');
      if (f) f.focus({ preventScroll: true });
    }
  }

  function cheapest() {
    const avail = (models || []).filter((m) => m.available).sort((a, b) => costOf(a, 'auto') - costOf(b, 'auto'));
    return avail[0] ? { model: avail[0], cost: costOf(avail[0], 'auto') } : null;
  }

  function cheaper() {
    const c = cheapest();
    if (c) S.modelId = c.model.id;
    S.quality = 'auto';
    renderPage();
  }

  async function start(id) {
    pendingStart = id;
    panel.setStarting(true);
    try {
      await post('/api/generate', { generationId: id });
      pendingStart = null;
    } finally {
      panel.setStarting(false);
    }
  }

  function startWait(code, seconds) {
    waitCode = code;
    waitUntil = Date.now() + seconds * 1000;
    clearInterval(waitTimer);
    waitTimer = setInterval(() => {
      if (!container.isConnected || Date.now() >= waitUntil) {
        clearInterval(waitTimer); waitTimer = null; waitUntil = 0;
        if (container.isConnected) { clear(summaryErr); update(); }
        return;
      }
      update();
    }, 1000);
  }

  async function generate() {
    if (busy || blockReason()) return;
    clearFieldErrors();
    busy = true;
    update();
    try {
      if (S.batch.on) {
        const res = await post('/api/generation/batch', { items: batchItems(), start: true }, { headers: { 'Idempotency-Key': idempotencyKey() } });
        S.currentBatch = res.batchId;
        persist();
        if (ui.tips) ui.tips.hidden = true;
        batchPanel.track(res.batchId, res);
        if (window.matchMedia('(max-width: 1023px)').matches) batchPanel.el.scrollIntoView({ behavior: 'smooth', block: 'start' });
      } else if (pendingStart) {
        await start(pendingStart);
      } else {
        const created = await post('/api/generation/create', buildBody(), { headers: { 'Idempotency-Key': idempotencyKey() } });
        S.currentGen = created.generationId;
        persist();
        panel.track(created.generationId, { status: 'pending', tokensUsed: created.estimatedCost, prompt: created.prompt, createdAt: Date.now() }, { starting: true });
        if (window.matchMedia('(max-width: 1023px)').matches) panel.el.scrollIntoView({ behavior: 'smooth', block: 'start' });
        await start(created.generationId);
      }
    } catch (err) {
      const ctx = { onFix: fixField, onCheaper: cheaper, onRetry: () => { clear(summaryErr); generate(); } };
      clear(summaryErr).append(errorView(err.code, describeError(err), actionsFor(err, ctx)));
      if (err.code === 'VALIDATION_ERROR' || err.code === 'IMAGE_VALIDATION_ERROR') fixField(err);
      if ((err.code === 'RATE_LIMIT_EXCEEDED' || err.code === 'QUEUE_FULL') && err.retryAfter) startWait(err.code, err.retryAfter);
    } finally {
      busy = false;
      update();
    }
  }

  // ---- Templates ---------------------------------------------------------------------
  /** Load a saved create body (a template) into the form. */
  function applyBody(b) {
    const p = b.parameters || {};
    loadSettings({
      productImages: b.productImages || [], modelImages: b.modelImages || [], customPrompt: b.customPrompt || '',
      parameters: { ...p, model: b.model, style: b.style, quality: b.quality, aspectRatio: b.aspectRatio },
    });
    S.advOpen = typeof p.seed === 'number';
    S.priorityHigh = b.priority === 'high';
    if (S.batch.on) { S.batch.styles = [S.style]; S.batch.ratios = [S.aspect]; }
    prompt.value = S.prompt;
    updCounter();
    seedInput.value = S.seed;
    validateSeed();
    resetters.forEach((fn) => fn());
    advanced.open = S.advOpen;
    renderPriority();
    clear(summaryErr);
    renderPage();
  }
  const templates = templatesBar({
    // A template is one create body: in batch mode, the first style and format chosen.
    getBody: () => {
      if (!S.product.length || ![...S.product, ...S.model].every((x) => x.status === 'done')) return null;
      const b = buildBody();
      if (S.batch.on) { b.style = S.batch.styles[0] || S.style; b.aspectRatio = S.batch.ratios[0] || S.aspect; }
      return b;
    },
    suggestName: () => {
      const st = S.batch.on ? S.batch.styles[0] || S.style : S.style;
      return `${(STYLES.find((x) => x.id === st) || { name: st }).name} · ${S.batch.on ? S.batch.ratios[0] || S.aspect : S.aspect}`;
    },
    apply: applyBody,
    onGenerated: (created, t) => {
      S.currentGen = created.generationId;
      persist();
      panel.track(created.generationId, { status: created.status || 'processing', stage: 'queued', tokensUsed: created.estimatedCost, prompt: created.prompt, createdAt: Date.now() });
      toast(`Generating from “${t.name}” · ${tokens(created.estimatedCost)}`, 'info');
      if (window.matchMedia('(max-width: 1023px)').matches) panel.el.scrollIntoView({ behavior: 'smooth', block: 'start' });
    },
    onError: (err) => {
      clear(summaryErr).append(errorView(err.code, describeError(err), actionsFor(err, {})));
      if ((err.code === 'RATE_LIMIT_EXCEEDED' || err.code === 'QUEUE_FULL') && err.retryAfter) startWait(err.code, err.retryAfter);
      summaryErr.scrollIntoView({ block: 'nearest' });
    },
  });
  templates.refresh();

  // ---- Page ---------------------------------------------------------------------------
  function section(id, num, title, sub, ...body) {
    return h('section', { class: 'card step-card', id, 'aria-labelledby': `${id}-t` },
      h('header', { class: 'step-head' },
        h('span', { class: 'step-num', 'aria-hidden': 'true' }, String(num)),
        h('div', {}, h('h2', { class: 'card-title', id: `${id}-t` }, title), sub ? h('p', { class: 'muted small' }, sub) : null)),
      ...body);
  }

  function renderPage() {
    clear(container);
    ui.modelWrap = h('div', {}, modelCards());
    ui.modelErr = h('p', { class: 'field-error', 'data-error-for': 'model' });
    ui.qualityWrap = h('div', {}, qualityCards());
    const tips = h('section', { class: 'card tips', 'aria-labelledby': 'tips-t', hidden: !panel.el.hidden },
      h('h2', { class: 'card-title', id: 'tips-t' }, 'Tips for great shots'),
      h('ul', { class: 'tips-list' },
        h('li', {}, icon('image'), h('span', {}, 'Use a sharp, evenly lit photo of the product, ideally on a plain background.')),
        h('li', {}, icon('user'), h('span', {}, 'Add a model photo to show the product worn or held.')),
        h('li', {}, icon('coin'), h('span', {}, 'Tokens are reserved when you generate and refunded automatically if it fails or you cancel.'))));
    ui.tips = tips;
    const side = h('aside', { class: 'studio-side' }, summary, batchPanel.el, panel.el, tips);
    if (!batchPanel.el.hidden) tips.hidden = true;
    const perInput = h('input', { type: 'checkbox', id: 'batch-per-product', 'data-batch-per-product': '', checked: S.batch.perProduct, onchange: () => { S.batch.perProduct = perInput.checked; update(); } });
    ui.perProduct = h('label', { class: 'batch-opt', for: 'batch-per-product', hidden: true }, perInput,
      h('span', {}, h('strong', {}, 'One generation per product image'), ' ', h('span', { class: 'muted small' }, 'instead of all of them in one')));
    container.append(h('div', { class: 'page page-studio' },
      h('div', { class: 'page-head' },
        h('div', {}, h('h1', {}, 'Studio'), h('p', { class: 'page-sub' }, 'Upload your product, pick a look, and generate styled shots in seconds.'))),
      h('div', { class: 'studio' },
        h('div', { class: 'studio-main' },
          templates.el,
          section('sec-images', 1, 'Images', 'Your product photos, and optionally a model to wear or hold it.',
            h('div', { class: 'uploaders' },
              uploader('product', 'Product images', 'Up to 5. The first one is the main product.', true),
              uploader('model', 'Model images', 'Up to 3 photos of a person or mannequin.', false)),
            ui.perProduct),
          section('sec-style', 2, 'Style', S.batch.on ? 'Batch: pick one or more — each style makes its own generation.' : 'The look and light of your shot.', styleCards(), h('p', { class: 'field-error', 'data-error-for': 'style' })),
          section('sec-model', 3, 'Model & quality', 'Cost is in tokens per generation.',
            ui.modelWrap, ui.modelErr,
            h('h3', { class: 'section-label' }, 'Quality'), ui.qualityWrap, h('p', { class: 'field-error', 'data-error-for': 'quality' })),
          section('sec-format', 4, 'Format', S.batch.on ? 'Batch: pick one or more — each format makes its own generation.' : 'Aspect ratio of the result.', ratioCards(), h('p', { class: 'field-error', 'data-error-for': 'aspectRatio' })),
          section('sec-prompt', 5, 'Prompt', 'Optional. Add details in your own words.',
            h('div', { class: 'field' },
              h('div', { class: 'label-row' }, h('label', { for: 'custom-prompt', class: 'label' }, 'Custom prompt'), counter),
              prompt, ui.errPrompt),
            advanced)),
        side)));
    renderThumbs('product');
    renderThumbs('model');
    refreshAdvanced();
    update();
  }

  renderPage();
  unsubs.push(on('balance', update));
  unsubs.push(on('user', () => { renderPriority(); update(); }));

  // Models
  async function loadModels() {
    try {
      const data = await get('/api/models');
      models = data.items || data || [];
      if (!selectedModel() || !selectedModel().available) {
        const firstAvail = models.find((m) => m.available);
        if (firstAvail) S.modelId = firstAvail.id;
      }
      ui.modelWrap.replaceChildren(modelCards());
      refreshQuality();
      renderThumbs('product');
      renderThumbs('model');
      refreshAdvanced();
      update();
    } catch (err) {
      ui.modelWrap.replaceChildren(errorView(err.code, `Could not load the models: ${err.message}`,
        [h('button', { type: 'button', class: 'btn btn-primary btn-sm', onclick: loadModels }, icon('retry'), 'Retry')]));
    }
  }
  if (models) update(); else loadModels();

  if (S.currentGen) panel.track(S.currentGen);
  if (S.currentBatch) { batchPanel.track(S.currentBatch); if (ui.tips) ui.tips.hidden = true; }

  // Arrived from "Change the prompt" / "Replace the image": focus what to change.
  if (S.focusNext) {
    const what = S.focusNext;
    S.focusNext = null;
    const target = what === 'image' ? ui.product.input : prompt;
    const box = what === 'image' ? ui.product.box : prompt.closest('.field');
    box.classList.add('attention');
    setTimeout(() => box.classList.remove('attention'), 2400);
    box.scrollIntoView({ block: 'center' });
    if (what === 'image') ui.product.error.textContent = 'Remove the image that could not be read and add another one.';
    // After the router's own focus move to the heading.
    requestAnimationFrame(() => target.focus({ preventScroll: true }));
  }

  return () => { unsubs.forEach((u) => u()); panel.stop(); batchPanel.stop(); };
}
