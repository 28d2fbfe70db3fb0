// Why a generation failed or was cancelled, in words, and the one next step that
// fits its errorCode (SPEC §4, §7). Used by the live panel, the detail page and
// the history list, so all three say the same thing and offer the same action.
import { h, icon, toast, copyText } from './dom.js';
import { post } from './api.js';

/**
 * errorCode → {title, hint, action}. The action names what the user does next:
 *   retry         "Try again"         POST /api/generations/{id}/retry, then start it
 *   prompt        "Change the prompt" the studio, prefilled, prompt focused
 *   image         "Replace the image" the studio, prefilled, image picker focused
 *   again         "Start again"       like retry: same settings, a new generation
 *   support       "Contact support"   the ids to quote
 */
const CODES = {
  PROVIDER_TRANSIENT: {
    title: 'The image service was busy',
    hint: 'We tried several times and it kept failing. It usually works a little later.',
    action: 'retry',
  },
  PROVIDER_ERROR: {
    title: 'The image service sent back something unusable',
    hint: 'We tried several times. Trying again usually helps.',
    action: 'retry',
  },
  PROVIDER_REJECTED: {
    title: 'The image service refused this request',
    hint: 'This is often the wording of the prompt. Change it and generate again.',
    action: 'prompt',
  },
  INPUT_UNAVAILABLE: {
    title: 'One of your images could not be read',
    hint: 'Replace it with another JPEG, PNG or WebP photo and generate again.',
    action: 'image',
  },
  EXPIRED: {
    title: 'It expired before it started',
    hint: 'A generation that is created but never started is cancelled after a while.',
    action: 'again',
  },
  CANCELLED: {
    title: 'It was cancelled',
    hint: 'Nothing was generated.',
    action: 'again',
  },
};

const UNKNOWN = {
  title: 'Something went wrong on our side',
  hint: 'If it keeps happening, contact support and quote the ID below.',
  action: 'support',
};

export const ACTIONS = {
  retry: { label: 'Try again', icon: 'retry' },
  prompt: { label: 'Change the prompt', icon: 'sliders' },
  image: { label: 'Replace the image', icon: 'image' },
  again: { label: 'Start again', icon: 'sparkles' },
  support: { label: 'Contact support', icon: 'info' },
};

/** The code of a failed or cancelled record; a cancelled one from a server
 * without errorCode is told apart by its error text. */
export function failureCode(rec) {
  if (!rec) return null;
  if (rec.errorCode) return rec.errorCode;
  if (rec.status === 'cancelled') return /expir/i.test(rec.error || '') ? 'EXPIRED' : 'CANCELLED';
  return null;
}

/** {code, title, hint, error, action, label, icon} for a failed or cancelled record. */
export function failureInfo(rec) {
  const code = failureCode(rec);
  const c = CODES[code] || UNKNOWN;
  const a = ACTIONS[c.action];
  return { code: code || null, title: c.title, hint: c.hint, error: sentence(rec.error), action: c.action, label: a.label, icon: a.icon };
}

function sentence(s) {
  if (!s) return '';
  const t = String(s).trim();
  return t.charAt(0).toUpperCase() + t.slice(1) + (/[.!?]$/.test(t) ? '' : '.');
}

/** POST retry, then start the new generation. Resolves to {id, created}. */
export async function retryGeneration(id) {
  const created = await post(`/api/generations/${encodeURIComponent(id)}/retry`, {});
  const newId = created.generationId || created._id;
  if (created.status === 'pending' || !created.status) await post('/api/generate', { generationId: newId });
  return { id: newId, created };
}

/** The action button for a record. onAction(kind, button) does the work. */
export function actionButton(rec, onAction, { small = true } = {}) {
  const f = failureInfo(rec);
  const kind = f.action;
  const btn = h('button', {
    type: 'button', class: `btn ${kind === 'support' ? 'btn-ghost' : 'btn-primary'} ${small ? 'btn-sm' : ''}`.trim(),
    'data-action': kind === 'retry' ? 'retry' : kind === 'again' ? 'start-again' : kind === 'prompt' ? 'change-prompt' : kind === 'image' ? 'replace-image' : 'support',
  }, icon(f.icon), f.label);
  btn.addEventListener('click', async () => {
    if (btn.disabled) return;
    btn.disabled = true;
    try { await onAction(kind, btn); } finally { if (btn.isConnected) btn.disabled = false; }
  });
  return btn;
}

/** What to quote to support: the generation id and, when known, a request id. */
export function supportBox(rec, requestId) {
  const lines = [`Generation ID: ${rec._id || rec.generationId || ''}`];
  if (requestId) lines.push(`Request ID: ${requestId}`);
  const text = lines.join('\n');
  return h('div', { class: 'support-box', 'data-support': '' },
    h('p', { class: 'small' }, 'Contact support and quote:'),
    h('pre', { class: 'code support-ids' }, text),
    h('button', {
      type: 'button', class: 'btn btn-ghost btn-sm',
      onclick: async () => toast(await copyText(text) ? 'Copied — paste it into your message to support' : 'Could not copy — select the text and copy it', 'success'),
    }, icon('copy'), 'Copy'));
}

/**
 * The callout for a failed or cancelled record: a readable title, the
 * server's error, whether tokens came back, the action, and the code last.
 * handlers: {onAction(kind, button)}; "support" is handled here (shows the ids).
 */
export function failureView(rec, { onAction, compact = false, requestId } = {}) {
  const f = failureInfo(rec);
  const cancelled = rec.status === 'cancelled';
  const supportSlot = h('div', {});
  const act = async (kind, btn) => {
    if (kind === 'support') { supportSlot.replaceChildren(supportBox(rec, requestId)); return; }
    if (onAction) await onAction(kind, btn);
  };
  const refunded = (rec.tokensUsed === 0 || rec.tokensUsed == null) ? ' Your tokens were refunded.' : '';
  return h('div', {
    class: `alert ${cancelled ? 'alert-info' : 'alert-error'} error-view failure-view ${compact ? 'is-compact' : ''}`.trim(),
    role: cancelled ? 'status' : 'alert', 'data-failure': f.code || 'UNKNOWN',
  },
  icon(cancelled ? 'info' : 'alert'),
  h('div', { class: 'alert-body' },
    h('strong', { class: 'failure-title' }, f.title),
    f.error ? h('p', { class: 'failure-error' }, f.error) : null,
    compact ? null : h('p', { class: 'small failure-hint' }, `${f.hint}${refunded}`),
    h('div', { class: 'alert-actions' }, actionButton(rec, act),
      f.code ? h('code', { class: 'error-code', title: 'Error code' }, f.code) : null),
    supportSlot));
}
