// Account → Webhooks (SPEC §8): add an endpoint (its signing secret is shown
// once), list and delete endpoints, and see each one's deliveries with a
// Redeliver button. Builds one card; the account page places it.
import { h, icon, clear, toast, fmtAgo, fmtDate, confirmDialog, copyText, emptyState, skeleton } from './dom.js';
import { get, post, del } from './api.js';

export const EVENT_TYPES = [
  { id: 'generation.processing', label: 'Generation started', desc: 'it entered processing' },
  { id: 'generation.completed', label: 'Generation completed', desc: 'its images are ready' },
  { id: 'generation.failed', label: 'Generation failed', desc: 'refunded, with its error' },
  { id: 'generation.cancelled', label: 'Generation cancelled', desc: 'cancelled or expired, refunded' },
  { id: 'balance.changed', label: 'Balance changed', desc: 'your token balance moved' },
];
const EVENT_LABEL = Object.fromEntries(EVENT_TYPES.map((e) => [e.id, e.label]));
const DELIVERY_STATUS = {
  pending: { label: 'Pending', badge: 'processing' },
  succeeded: { label: 'Delivered', badge: 'completed' },
  failed: { label: 'Failed', badge: 'failed' },
};

function deliveryBadge(status) {
  const s = DELIVERY_STATUS[status] || { label: status || '—', badge: 'pending' };
  return h('span', { class: `badge badge-${s.badge}`, 'data-delivery-status': status },
    h('span', { class: 'badge-dot', 'aria-hidden': 'true' }), s.label);
}

function when(ms) {
  if (!ms) return h('span', { class: 'muted' }, '—');
  const ahead = Math.round((ms - Date.now()) / 1000);
  return h('span', { title: fmtDate(ms) }, ahead > 0 && ahead < 60 ? `in ${ahead} s` : fmtAgo(ms));
}

export function webhooksCard() {
  const urlInput = h('input', { id: 'wh-url', name: 'url', type: 'url', class: 'input', inputmode: 'url', autocomplete: 'off', placeholder: 'https://shop.example/hooks/style-studio', maxlength: 2048, 'aria-describedby': 'wh-url-help wh-url-err' });
  const urlErr = h('p', { class: 'field-error', id: 'wh-url-err', 'data-error-for': 'url' });
  const descInput = h('input', { id: 'wh-desc', name: 'description', class: 'input', autocomplete: 'off', maxlength: 500, placeholder: 'e.g. Shopify sync', 'aria-describedby': 'wh-desc-err' });
  const descErr = h('p', { class: 'field-error', id: 'wh-desc-err', 'data-error-for': 'description' });
  const eventsErr = h('p', { class: 'field-error', id: 'wh-events-err', 'data-error-for': 'events' });
  const boxes = EVENT_TYPES.map((e) => h('label', { class: 'check' },
    h('input', { type: 'checkbox', name: 'events', value: e.id, checked: e.id !== 'generation.processing' && e.id !== 'balance.changed' }),
    h('span', { class: 'check-text' }, h('span', { class: 'check-label' }, e.label), h('span', { class: 'muted small' }, h('code', {}, e.id), ` — ${e.desc}`))));
  const formErr = h('div', { class: 'form-error' });
  const addBtn = h('button', { type: 'submit', class: 'btn btn-primary' }, icon('plus'), 'Add webhook');
  const reveal = h('div', { class: 'key-reveal-slot', 'aria-live': 'polite' });
  const list = h('div', { class: 'wh-list' }, skeleton(2, 'skel-row'));

  const form = h('form', { class: 'wh-form', novalidate: true, 'aria-label': 'Add a webhook' },
    h('div', { class: 'field' }, h('label', { for: 'wh-url', class: 'label' }, 'Endpoint URL'), urlInput,
      h('p', { class: 'hint', id: 'wh-url-help' }, 'We POST JSON there, signed with the Standard Webhooks headers.'), urlErr),
    h('fieldset', { class: 'field wh-events', 'aria-describedby': 'wh-events-err' },
      h('legend', { class: 'label' }, 'Events'), h('div', { class: 'checks' }, boxes), eventsErr),
    h('div', { class: 'field' }, h('label', { for: 'wh-desc', class: 'label' }, 'Description ', h('span', { class: 'opt' }, 'Optional')), descInput, descErr),
    formErr,
    h('div', {}, addBtn));

  const card = h('section', { class: 'card wh-card', id: 'webhooks', 'aria-labelledby': 'wh-t' },
    h('h2', { class: 'card-title', id: 'wh-t' }, 'Webhooks'),
    h('p', { class: 'muted small' }, 'Get a signed POST on your server when a generation starts, completes, fails or is cancelled, or when your balance changes. Failed deliveries are retried for about a day.'),
    form, reveal,
    h('h3', { class: 'section-label' }, 'Your webhooks'),
    list);

  const fields = { url: [urlInput, urlErr], description: [descInput, descErr], events: [boxes[0].querySelector('input'), eventsErr] };

  function clearErrors() {
    for (const [input, err] of Object.values(fields)) { err.textContent = ''; input.removeAttribute('aria-invalid'); }
    clear(formErr);
  }

  function fieldError(field, msg) {
    const key = field.replace(/\[\d+\]$/, '');
    const f = fields[key];
    if (!f) return false;
    f[1].textContent = f[1].textContent ? `${f[1].textContent} ${msg}` : msg;
    f[0].setAttribute('aria-invalid', 'true');
    return true;
  }

  function focusFirstError() {
    for (const [input, err] of Object.values(fields)) if (err.textContent) { input.focus(); return; }
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors();
    const url = urlInput.value.trim();
    const events = boxes.map((b) => b.querySelector('input')).filter((i) => i.checked).map((i) => i.value);
    const description = descInput.value.trim();
    if (!url) fieldError('url', 'Enter the URL we should send events to.');
    else if (!/^https?:\/\/\S+$/i.test(url)) fieldError('url', 'Use a full http:// or https:// address.');
    if (!events.length) fieldError('events', 'Pick at least one event.');
    if (fields.url[1].textContent || fields.events[1].textContent) { focusFirstError(); return; }
    addBtn.disabled = true;
    try {
      const body = { url, events };
      if (description) body.description = description;
      const w = await post('/api/webhooks', body);
      urlInput.value = '';
      descInput.value = '';
      showSecret(w);
      await load();
    } catch (err) {
      let placed = false;
      for (const v of err.validationErrors) if (v && v.field && fieldError(v.field, v.message)) placed = true;
      const rest = err.validationErrors.filter((v) => !v || !v.field || !fields[v.field.replace(/\[\d+\]$/, '')]);
      if (!placed || rest.length) {
        formErr.append(h('p', { class: 'alert alert-error small', role: 'alert' }, icon('alert'),
          h('span', {}, `Could not add the webhook: ${err.message}${rest.length ? ` — ${rest.map((v) => v.message).join('; ')}` : ''} `, h('code', { class: 'error-code' }, err.code))));
      }
      focusFirstError();
    } finally {
      addBtn.disabled = false;
    }
  });

  function showSecret(w) {
    const code = h('code', { class: 'key-secret', 'data-new-secret': '' }, w.secret || '');
    const box = h('div', { class: 'key-reveal', role: 'region', 'aria-label': 'Your webhook signing secret' },
      h('div', { class: 'key-reveal-head' }, icon('key'), h('strong', {}, 'Webhook added — here is its signing secret')),
      h('p', { class: 'small' }, 'Copy it now: you will not see it again. Use it to check the ', h('code', {}, 'webhook-signature'), ' header of each delivery.'),
      h('div', { class: 'key-row' }, code,
        h('button', { type: 'button', class: 'btn btn-primary btn-sm', onclick: async () => toast(await copyText(w.secret) ? 'Secret copied to clipboard' : 'Could not copy — select the secret and copy it', 'success') }, icon('copy'), 'Copy secret')),
      h('button', { type: 'button', class: 'btn btn-ghost btn-sm', onclick: () => { clear(reveal); urlInput.focus(); } }, 'I’ve saved it'));
    clear(reveal).append(box);
    box.querySelector('.key-row button').focus();
  }

  async function load() {
    let data;
    try {
      data = await get('/api/webhooks');
    } catch (err) {
      if (err.code === 'NOT_FOUND') {
        form.hidden = true;
        clear(list).append(h('p', { class: 'alert alert-info small', role: 'status' }, icon('info'), 'Webhooks are not available on this server yet.'));
        return;
      }
      clear(list).append(h('p', { class: 'alert alert-error small', role: 'alert' }, icon('alert'),
        h('span', {}, `Could not load your webhooks: ${err.message} `, h('code', { class: 'error-code' }, err.code)),
        h('button', { type: 'button', class: 'btn btn-ghost btn-sm', onclick: load }, 'Retry')));
      return;
    }
    clear(list);
    if (!data.items.length) {
      list.append(emptyState({ iconName: 'link', title: 'No webhooks yet', text: 'Add an endpoint above to hear about your generations as they happen.' }));
      return;
    }
    list.append(h('ul', { class: 'wh-items', role: 'list' }, data.items.map(item)));
  }

  function item(w) {
    const panelId = `wh-dl-${w.id}`;
    const deliveries = h('div', { class: 'wh-deliveries', id: panelId, hidden: true });
    const toggle = h('button', { type: 'button', class: 'btn btn-ghost btn-sm', 'aria-expanded': 'false', 'aria-controls': panelId, 'data-deliveries': w.id },
      icon('clock'), 'Deliveries');
    toggle.addEventListener('click', () => {
      const open = toggle.getAttribute('aria-expanded') !== 'true';
      toggle.setAttribute('aria-expanded', String(open));
      deliveries.hidden = !open;
      if (open) loadDeliveries(w, deliveries, true);
    });
    return h('li', { class: 'wh-item', 'data-webhook-id': w.id },
      h('div', { class: 'wh-head' },
        h('div', { class: 'wh-main' },
          h('code', { class: 'wh-url' }, w.url),
          w.description ? h('p', { class: 'wh-desc' }, w.description) : null,
          h('ul', { class: 'wh-chips', role: 'list', 'aria-label': 'Events' }, (w.events || []).map((ev) => h('li', { class: 'wh-chip', title: ev }, EVENT_LABEL[ev] || ev))),
          h('p', { class: 'muted small' }, 'Added ', when(w.createdAt))),
        h('div', { class: 'wh-actions' }, toggle,
          h('button', { type: 'button', class: 'btn btn-danger-ghost btn-sm', 'aria-label': `Delete webhook ${w.url}`, onclick: () => remove(w) }, icon('trash'), 'Delete'))),
      deliveries);
  }

  async function remove(w) {
    const ok = await confirmDialog({
      title: 'Delete this webhook?',
      body: [h('p', {}, 'We will stop sending events to:'), h('p', {}, h('code', { class: 'wh-url' }, w.url)), h('p', { class: 'muted small' }, 'This can’t be undone; pending deliveries are dropped.')],
      confirm: 'Delete webhook', danger: true,
    });
    if (!ok) return;
    try {
      await del(`/api/webhooks/${encodeURIComponent(w.id)}`);
      toast('Webhook deleted', 'success');
      await load();
    } catch (err) {
      toast(`Could not delete the webhook: ${err.message} (${err.code})`, 'error');
    }
  }

  async function loadDeliveries(w, box, reset, cursor) {
    if (reset) clear(box).append(skeleton(2, 'skel-row'));
    let data;
    try {
      const q = new URLSearchParams({ limit: '20' });
      if (cursor) q.set('cursor', cursor);
      data = await get(`/api/webhooks/${encodeURIComponent(w.id)}/deliveries?${q}`);
    } catch (err) {
      clear(box).append(h('p', { class: 'alert alert-error small', role: 'alert' }, icon('alert'),
        h('span', {}, `Could not load the deliveries: ${err.message} `, h('code', { class: 'error-code' }, err.code))));
      return;
    }
    let tbody = box.querySelector('tbody');
    if (reset || !tbody) {
      clear(box);
      const refresh = h('button', { type: 'button', class: 'btn btn-ghost btn-sm', onclick: () => loadDeliveries(w, box, true) }, icon('retry'), 'Refresh');
      box.append(h('div', { class: 'wh-dl-head' }, h('h4', { class: 'section-label' }, 'Deliveries'), refresh));
      if (!data.items.length) {
        box.append(h('p', { class: 'muted small', 'data-no-deliveries': '' }, 'No deliveries yet. They appear here as soon as one of the chosen events happens.'));
        return;
      }
      tbody = h('tbody', {});
      box.append(h('table', { class: 'table wh-table' },
        h('thead', {}, h('tr', {}, ['Event', 'Status', 'Attempts', 'Last response', 'Next attempt', 'Created'].map((t) => h('th', { scope: 'col' }, t)),
          h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Actions')))),
        tbody));
    }
    for (const d of data.items) tbody.append(deliveryRow(w, d));
    const old = box.querySelector('[data-more]');
    if (old) old.remove();
    if (data.nextCursor) {
      box.append(h('button', { type: 'button', class: 'btn btn-ghost btn-sm', 'data-more': '', onclick: () => loadDeliveries(w, box, false, data.nextCursor) }, 'Load more'));
    }
  }

  function deliveryRow(w, d) {
    const btn = h('button', { type: 'button', class: 'btn btn-ghost btn-sm', 'data-redeliver': d.id, 'aria-label': `Redeliver ${EVENT_LABEL[d.type] || d.type} ${d.id}` }, icon('retry'), 'Redeliver');
    const row = h('tr', { 'data-delivery-id': d.id },
      h('td', { 'data-label': 'Event' }, h('span', { title: d.type }, EVENT_LABEL[d.type] || d.type), h('span', { class: 'mono muted small wh-msg' }, d.id)),
      h('td', { 'data-label': 'Status' }, deliveryBadge(d.status)),
      h('td', { 'data-label': 'Attempts' }, String(d.attempts ?? 0)),
      h('td', { 'data-label': 'Last response' }, d.lastStatusCode ? h('span', { class: `mono ${d.lastStatusCode >= 200 && d.lastStatusCode < 300 ? '' : 'neg'}` }, `HTTP ${d.lastStatusCode}`)
        : h('span', { class: 'muted' }, d.attempts ? 'No response' : '—')),
      h('td', { 'data-label': 'Next attempt' }, d.status === 'pending' && d.nextAttemptAt ? when(d.nextAttemptAt) : h('span', { class: 'muted' }, '—')),
      h('td', { 'data-label': 'Created' }, when(d.createdAt)),
      h('td', { class: 'cell-actions' }, btn));
    btn.addEventListener('click', async () => {
      btn.disabled = true;
      try {
        const nd = await post(`/api/webhooks/${encodeURIComponent(w.id)}/deliveries/${encodeURIComponent(d.id)}/redeliver`, {});
        toast('Sending it again — same webhook-id, so your server can tell it is a repeat', 'success');
        row.replaceWith(deliveryRow(w, nd && nd.id ? nd : { ...d, status: 'pending', nextAttemptAt: Date.now() }));
      } catch (err) {
        btn.disabled = false;
        toast(`Could not redeliver: ${err.message} (${err.code})`, 'error');
      }
    });
    return row;
  }

  return { el: card, load };
}
