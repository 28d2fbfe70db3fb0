// Live generation panel: fed by EventSource('/api/generations/<id>/events').
import { h, icon, clear, statusBadge, fmtClock, fmtDuration, tokens, shortId, infoDialog, toast, copyText, TERMINAL, STAGE_LABEL } from './dom.js';
import { get, post, parseEvent } from './api.js';
import { gallery } from './lightbox.js';
import { session } from './session.js';
import { failureView, failureCode, retryGeneration } from './failure.js';

const STEPS = ['queued', 'fetching_inputs', 'generating', 'storing'];

/**
 * "Get more tokens": there is no payment in this studio — tokens are added
 * by whoever runs the server, with the CLI (SPEC §2). The dialog says so and
 * hands over the exact command, wrapped to fit, with a copy button.
 */
export function buyTokensDialog() {
  const email = session.user && session.user.email ? session.user.email : 'you@example.com';
  const cmd = `stylestudio user grant --email ${email} --amount 50`;
  const bal = session.balance;
  return infoDialog({
    title: 'Get more tokens',
    close: 'Close',
    body: [
      h('p', {}, 'You can’t pay for tokens in the studio: on this Style Studio server, tokens are added by the person who runs it.'),
      h('p', {}, 'Send them this command. It runs on the server, with the same ', h('code', {}, '--data'), ' (or ', h('code', {}, '--db'), ') as ', h('code', {}, 'stylestudio serve'), ':'),
      h('div', { class: 'cmd-box' },
        h('pre', { class: 'code code-wrap', 'data-grant-cmd': '' }, cmd),
        h('button', {
          type: 'button', class: 'btn btn-ghost btn-sm', 'data-copy-cmd': '',
          onclick: async () => toast(await copyText(cmd) ? 'Command copied' : 'Could not copy — select the command and copy it', 'success'),
        }, icon('copy'), 'Copy')),
      h('p', { class: 'muted small' }, `${bal == null ? '' : `You have ${tokens(bal)}. `}Generations reserve tokens when they start and refund them if they fail or are cancelled; Local Studio at Auto quality costs 1 token.`),
    ],
  });
}

/** Error callout: the message first, a useful next action, then the error code for reference. */
export function errorView(code, message, actions = []) {
  return h('div', { class: 'alert alert-error error-view', role: 'alert' },
    icon('alert'),
    h('div', { class: 'alert-body' },
      h('p', { class: 'alert-message' }, message ? message.charAt(0).toUpperCase() + message.slice(1) : 'Something went wrong.'),
      h('div', { class: 'alert-actions' }, actions, code ? h('code', { class: 'error-code', title: 'Error code' }, code) : null)));
}

/** Actions that make sense for an API error code. ctx: {onRetry, onFix(field)} */
export function actionsFor(err, ctx = {}) {
  const a = [];
  switch (err.code) {
    case 'INSUFFICIENT_TOKENS':
      a.push(h('button', { type: 'button', class: 'btn btn-primary btn-sm', onclick: buyTokensDialog }, icon('coin'), 'Get more tokens'));
      if (ctx.onCheaper) a.push(h('button', { type: 'button', class: 'btn btn-ghost btn-sm', onclick: ctx.onCheaper }, 'Use cheaper settings'));
      break;
    case 'VALIDATION_ERROR':
    case 'IMAGE_VALIDATION_ERROR':
    case 'MODEL_ERROR':
      if (ctx.onFix) a.push(h('button', { type: 'button', class: 'btn btn-primary btn-sm', onclick: () => ctx.onFix(err) }, 'Fix this'));
      break;
    case 'RATE_LIMIT_EXCEEDED':
    case 'QUEUE_FULL':
      // With a known wait the caller brings Generate back by itself; a Retry button would only fail again.
      if (ctx.onRetry && !err.retryAfter) a.push(h('button', { type: 'button', class: 'btn btn-primary btn-sm', onclick: ctx.onRetry }, icon('retry'), 'Retry'));
      break;
    case 'NETWORK_ERROR':
    case 'INTERNAL_SERVER_ERROR':
    default:
      if (ctx.onRetry) a.push(h('button', { type: 'button', class: 'btn btn-primary btn-sm', onclick: ctx.onRetry }, icon('retry'), err.retryAfter ? `Retry (after ${err.retryAfter}s)` : 'Retry'));
  }
  return a;
}

/** 12 → "12 s", 95 → "2 min", 7200 → "2 h". */
export function fmtWait(sec) {
  const s = Math.max(1, Math.ceil(Number(sec) || 0));
  if (s < 90) return `${s} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${Math.round(s / 3600)} h`;
}

/** "Position 3 · about 40 s" for a queued record, or '' when it is not queued. */
export function queueText(r) {
  if (!r || r.status !== 'processing' || r.stage !== 'queued' || !r.queuePosition) return '';
  const eta = typeof r.eta === 'number' && r.eta >= 0 ? ` · about ${fmtWait(r.eta)}` : '';
  return `Position ${r.queuePosition}${eta}`;
}

export function describeError(err) {
  let msg = err.message;
  if (err.validationErrors && err.validationErrors.length) {
    msg += ' — ' + err.validationErrors.map((v) => `${v.field}: ${v.message}`).join('; ');
  }
  const wait = err.retryAfter ? `try again in ${fmtWait(err.retryAfter)}` : 'try again in a little while';
  if (err.code === 'RATE_LIMIT_EXCEEDED') return `You've hit your generation limit — ${wait}.`;
  if (err.code === 'QUEUE_FULL') return `The queue is full right now — ${wait}. Nothing was charged.`;
  return msg;
}

/**
 * createPanel({onRecord(rec), onNewGeneration(id, created), onEdit(rec, 'prompt'|'image'),
 *   onStarted(id) after its own Start, onGone(id) when the generation no longer exists})
 *   → {el, track(id, seed), stop()}
 */
export function createPanel({ onRecord, onNewGeneration, onEdit, onStarted, onGone, showResults = true, linkDetails = true } = {}) {
  let es = null;
  let rec = null;
  let starting = false; // a POST /api/generate of ours is on its way
  let loading = false; // tracking a generation whose record has not arrived yet
  let tick = null;
  let genId = null;
  let lastStatusText = '';

  const badgeSlot = h('span', { class: 'panel-badge' });
  const idEl = h('span', { class: 'mono muted small' });
  const statusLine = h('p', { class: 'panel-status', 'aria-live': 'polite', 'data-status-line': '' });
  const queueLine = h('p', { class: 'panel-queue', 'data-queue-info': '', hidden: true }, icon('info'), h('span', {}));
  const steps = h('ol', { class: 'stepper' }, STEPS.map((s) => h('li', { 'data-step': s }, h('span', { class: 'step-dot', 'aria-hidden': 'true' }), h('span', { class: 'step-label' }, STAGE_LABEL[s]))));
  const fill = h('div', { class: 'progress-fill' });
  const bar = h('div', { class: 'progress', role: 'progressbar', 'aria-label': 'Generation progress', 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': '0' }, fill);
  const pct = h('span', { class: 'progress-pct', 'data-progress-text': '' }, '0%');
  const stat = (label, key) => {
    const v = h('dd', { [`data-${key}`]: '' }, '—');
    const wrap = h('div', { class: 'stat' }, h('dt', {}, label), v);
    return { wrap, v };
  };
  const sQueue = stat('Queue position', 'queue');
  const sElapsed = stat('Elapsed', 'elapsed');
  const sTokens = stat('Tokens used', 'tokens');
  const sTime = stat('Processing time', 'ptime');
  const stats = h('dl', { class: 'stats' }, sQueue.wrap, sElapsed.wrap, sTokens.wrap, sTime.wrap);
  const errSlot = h('div', { class: 'panel-error' });
  const apiErr = h('div', { class: 'panel-error' }); // an action's own error, under the failure
  const cancelBtn = h('button', { type: 'button', class: 'btn btn-ghost btn-sm', 'data-action': 'cancel', onclick: doCancel }, icon('stop'), 'Cancel');
  const startBtn = h('button', { type: 'button', class: 'btn btn-primary btn-sm', 'data-action': 'start', hidden: true, onclick: () => doStart() }, icon('sparkles'), 'Start');
  const pendingNote = h('p', { class: 'panel-note small', 'data-pending-note': '', hidden: true },
    'Its tokens are held until it starts. If it is never started, it expires after a while and they come back.');
  const detailsLink = h('a', { class: 'btn btn-ghost btn-sm', href: '#/history' }, 'Details', icon('arrowRight'));
  const actions = h('div', { class: 'panel-actions' }, startBtn, cancelBtn, linkDetails ? detailsLink : null);
  const results = h('div', { class: 'panel-results' });

  const el = h('section', { class: 'card panel', 'aria-labelledby': 'panel-title', 'data-gen-panel': '' },
    h('div', { class: 'panel-head' },
      h('div', {}, h('h2', { id: 'panel-title', class: 'card-title' }, 'Live status'), idEl),
      badgeSlot),
    statusLine,
    pendingNote,
    queueLine,
    errSlot,
    apiErr,
    h('div', { class: 'progress-row' }, bar, pct),
    steps,
    stats,
    actions,
    showResults ? results : null);

  function statusText(r) {
    switch (r.status) {
      case 'pending': return loading ? 'Loading the latest status…' : starting ? 'Created — starting…' : 'Created, not started yet';
      case 'processing':
        if (r.stage === 'queued') return r.queuePosition ? 'Queued — waiting for a worker' : (r.retryCount ? `Retrying (attempt ${r.retryCount + 1})…` : 'Queued — waiting for a worker');
        return `${STAGE_LABEL[r.stage] || 'Processing'}…`;
      case 'completed': return `Done — ${r.resultImages && r.resultImages.length ? (r.resultImages.length === 1 ? '1 image' : `${r.resultImages.length} images`) : 'no images'} ready`;
      case 'failed': return 'Generation failed — your tokens were refunded';
      case 'cancelled': return failureCode(r) === 'EXPIRED' ? 'Expired — your tokens were refunded' : 'Cancelled — your tokens were refunded';
      default: return r.status;
    }
  }

  function renderTimes() {
    if (!rec) return;
    if (rec.status === 'pending' && !starting) { sElapsed.v.textContent = loading ? '—' : 'Not started'; return; }
    const start = rec.createdAt || Date.now();
    const end = TERMINAL.has(rec.status) ? (rec.completedAt || rec.updatedAt || start + (rec.processingTime || 0)) : Date.now();
    sElapsed.v.textContent = fmtClock(end - start);
  }

  function render(r) {
    rec = r;
    genId = r._id || r.generationId || genId;
    idEl.textContent = linkDetails ? genId || '' : '';
    el.dataset.status = r.status;
    clear(badgeSlot).append(statusBadge(r.status));
    const text = statusText(r);
    if (text !== lastStatusText) { statusLine.textContent = text; lastStatusText = text; }
    let progress = typeof r.progress === 'number' ? r.progress : 0;
    if (r.status === 'completed') progress = 100;
    progress = Math.max(0, Math.min(100, Math.round(progress)));
    fill.style.width = `${progress}%`;
    bar.setAttribute('aria-valuenow', String(progress));
    bar.classList.toggle('indeterminate', (r.status === 'pending' && (starting || loading)) || (r.status === 'processing' && r.stage === 'queued' && progress === 0));
    bar.classList.toggle('is-failed', r.status === 'failed' || r.status === 'cancelled');
    bar.classList.toggle('is-done', r.status === 'completed');
    pct.textContent = `${progress}%`;
    // stepper
    const active = r.status === 'processing' ? STEPS.indexOf(r.stage) : -1;
    steps.querySelectorAll('li').forEach((li, idx) => {
      li.className = r.status === 'completed' || (active >= 0 && idx < active) ? 'done' : idx === active ? 'current' : '';
      if (idx === active) li.setAttribute('aria-current', 'step'); else li.removeAttribute('aria-current');
    });
    steps.classList.toggle('is-stopped', r.status === 'failed' || r.status === 'cancelled');
    sQueue.wrap.hidden = true; // shown as the queue line under the status instead
    sQueue.v.textContent = r.queuePosition ? `#${r.queuePosition}` : '—';
    const qt = queueText(r);
    queueLine.hidden = !qt;
    if (queueLine.lastChild.textContent !== qt) queueLine.lastChild.textContent = qt;
    sTokens.v.textContent = typeof r.tokensUsed === 'number' ? tokens(r.tokensUsed) : (typeof r.estimatedCost === 'number' ? tokens(r.estimatedCost) : '—');
    sTime.wrap.hidden = r.processingTime == null;
    sTime.v.textContent = fmtDuration(r.processingTime);
    renderTimes();
    const terminal = TERMINAL.has(r.status);
    const idle = r.status === 'pending' && !starting; // created, never started: nothing runs, no clock
    if (terminal || idle) { clearInterval(tick); tick = null; } else if (!tick) tick = setInterval(renderTimes, 250);
    cancelBtn.hidden = terminal || loading;
    startBtn.hidden = !idle || loading;
    pendingNote.hidden = !idle || loading;
    el.classList.toggle('is-idle', idle && !loading);
    detailsLink.href = `#/history/${genId}`;
    clear(errSlot);
    if (r.status === 'failed' || r.status === 'cancelled') {
      errSlot.append(failureView({ ...r, _id: genId }, { onAction, compact: true }));
    }
    if (showResults) {
      clear(results);
      if (r.status === 'completed' && r.resultImages && r.resultImages.length) {
        results.append(h('h3', { class: 'section-label' }, 'Results'), gallery(r.resultImages, { name: genId, ratio: r.parameters && r.parameters.aspectRatio, zipId: genId }));
      }
    }
    if (onRecord) onRecord(r);
  }

  function stopStream() { if (es) { es.close(); es = null; } }

  /** Follow generation id. seed: what is known already (none after a reload:
   * the panel says it is loading until the stream's first record).
   * opts.starting: the caller is starting it right now. */
  function track(id, seed, opts = {}) {
    stopStream();
    genId = id;
    lastStatusText = '';
    starting = !!opts.starting;
    loading = !seed;
    clear(apiErr);
    el.hidden = false;
    render({ status: 'pending', progress: 0, createdAt: Date.now(), ...(seed || {}), _id: id });
    es = new EventSource(`/api/generations/${encodeURIComponent(id)}/events`);
    const mine = es;
    es.addEventListener('generation', (e) => {
      const r = parseEvent(e);
      if (!r || mine !== es) return;
      if (r._id && r._id !== genId) return;
      loading = false;
      render(r);
      if (TERMINAL.has(r.status)) stopStream();
    });
    es.addEventListener('error', async () => {
      if (mine !== es || es.readyState !== EventSource.CLOSED) return; // the browser reconnects by itself
      stopStream();
      try { const r = await get(`/api/generations/${encodeURIComponent(id)}`); loading = false; render(r); } catch (err) {
        if (err.code === 'GENERATION_NOT_FOUND' || err.status === 404 || err.status === 403) { el.hidden = true; if (onGone) onGone(id); }
      }
    });
  }

  async function doCancel() {
    if (!genId) return;
    cancelBtn.disabled = true;
    try {
      const r = await post(`/api/generations/${encodeURIComponent(genId)}/cancel`, {});
      if (r && r.status) render(r);
      toast('Generation cancelled — tokens refunded', 'success');
    } catch (err) {
      if (err.code === 'INVALID_GENERATION_STATUS') toast('It already finished, so there was nothing to cancel.', 'info');
      else showError(err);
    } finally {
      cancelBtn.disabled = false;
    }
  }

  function showError(err, ctx = {}) {
    clear(apiErr).append(errorView(err.code, describeError(err), actionsFor(err, ctx)));
  }

  async function onAction(kind) {
    if (kind === 'prompt' || kind === 'image') { if (onEdit && rec) onEdit({ ...rec, _id: genId }, kind); return; }
    await doRetry(kind === 'again' ? 'Started again with the same settings' : 'Trying again with the same settings');
  }

  async function doRetry(message = 'Trying again with the same settings') {
    if (!genId) return;
    try {
      const { id: newId, created } = await retryGeneration(genId);
      toast(message, 'info');
      if (onNewGeneration) onNewGeneration(newId, created);
      else track(newId, { tokensUsed: created.estimatedCost, status: 'processing', stage: 'queued' });
    } catch (err) {
      showError(err, { onRetry: () => doRetry(message) });
    }
  }

  async function doStart() {
    if (!genId || starting) return;
    const id = genId;
    clear(apiErr);
    setStarting(true);
    try {
      await post('/api/generate', { generationId: id });
      if (onStarted) onStarted(id);
    } catch (err) {
      if (err.code === 'INVALID_GENERATION_STATUS') {
        try { render(await get(`/api/generations/${encodeURIComponent(id)}`)); } catch { /* the stream tells */ }
      } else showError(err, { onRetry: () => doStart() });
    } finally {
      setStarting(false);
    }
  }

  /** Whether a start of this generation is on its way (the panel says "starting…" meanwhile). */
  function setStarting(v) {
    starting = !!v;
    if (rec) { lastStatusText = ''; render(rec); }
  }

  function stop() { stopStream(); clearInterval(tick); tick = null; }

  return { el, track, stop, render, showError, setStarting, get record() { return rec; } };
}
