// Templates in the studio (SPEC §4 "Templates"): save the current settings
// under a name, and start from one — apply it to the form, or generate from
// it at once (POST /api/templates/{id}/generate {start: true}). The server
// validates a saved body as a create body, images included.
import { h, icon, clear, toast, confirmDialog } from './dom.js';
import { get, post, api, del, idempotencyKey } from './api.js';

const NAME_MAX = 100;

/** Asks for a template name; resolves to the saved template or null. save(name) may throw an ApiError. */
function saveDialog({ suggested, existing, save }) {
  return new Promise((resolve) => {
    const input = h('input', { id: 'tpl-name', class: 'input', maxlength: NAME_MAX, autocomplete: 'off', value: suggested, 'aria-describedby': 'tpl-name-err tpl-name-hint' });
    const hint = h('p', { class: 'hint', id: 'tpl-name-hint' });
    const err = h('p', { class: 'field-error', id: 'tpl-name-err', role: 'alert' });
    const ok = h('button', { type: 'submit', class: 'btn btn-primary', 'data-confirm': '' }, 'Save template');
    const form = h('form', { class: 'modal-form', novalidate: true },
      h('div', { class: 'field' }, h('label', { class: 'label', for: 'tpl-name' }, 'Template name'), input, hint, err),
      h('div', { class: 'modal-actions' },
        h('button', { type: 'button', class: 'btn btn-ghost', onclick: () => done(null) }, 'Cancel'), ok));
    const dlg = h('dialog', { class: 'modal', 'aria-labelledby': 'tpl-dlg-t' },
      h('h2', { id: 'tpl-dlg-t', class: 'modal-title' }, 'Save as a template'),
      h('p', { class: 'modal-body' }, 'Keeps the images, style, model, quality, format, prompt and advanced settings, so you can start from them next time.'),
      form);
    const sameName = () => existing.find((t) => t.name.trim().toLowerCase() === input.value.trim().toLowerCase());
    const paint = () => {
      const same = sameName();
      hint.textContent = same ? `A template called “${same.name}” exists: saving replaces it.` : '';
      ok.textContent = same ? 'Replace template' : 'Save template';
    };
    input.addEventListener('input', () => { err.textContent = ''; input.removeAttribute('aria-invalid'); paint(); });
    function done(v) { dlg.close(); dlg.remove(); resolve(v); }
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const name = input.value.trim();
      if (!name) { err.textContent = 'Give the template a name.'; input.setAttribute('aria-invalid', 'true'); input.focus(); return; }
      ok.disabled = true;
      try {
        done(await save(name, sameName()));
      } catch (ex) {
        const fe = ex.fieldErrors ? ex.fieldErrors() : {};
        const body = Object.entries(fe).filter(([f]) => f.startsWith('body.')).map(([, m]) => m);
        err.textContent = fe.name || (body.length ? `These settings can’t be saved yet: ${body.join('; ')}.` : ex.message);
        input.setAttribute('aria-invalid', 'true');
      } finally { ok.disabled = false; }
    });
    dlg.addEventListener('cancel', (e) => { e.preventDefault(); done(null); });
    document.body.append(dlg);
    paint();
    dlg.showModal();
    input.select();
  });
}

/**
 * The studio's template bar.
 *   getBody()        the current settings as a create body (null when they cannot be saved yet)
 *   apply(body)      load a template's body into the form
 *   onGenerated(created, template)  a generation was created and started from a template
 *   onError(err)     a generate from a template failed (shown with the studio's errors)
 * → {el, refresh()}
 */
export function templatesBar({ getBody, suggestName, apply, onGenerated, onError }) {
  let items = [];
  const select = h('select', { id: 'tpl-select', class: 'input select', 'aria-label': 'Template', 'data-tpl-select': '' });
  const applyBtn = h('button', { type: 'button', class: 'btn btn-ghost btn-sm', 'data-tpl': 'apply', onclick: () => doApply() }, icon('sliders'), 'Use');
  const genBtn = h('button', { type: 'button', class: 'btn btn-ghost btn-sm', 'data-tpl': 'generate', onclick: () => doGenerate() }, icon('sparkles'), 'Generate');
  const delBtn = h('button', { type: 'button', class: 'btn btn-ghost btn-sm icon-only', 'data-tpl': 'delete', 'aria-label': 'Delete this template', title: 'Delete this template', onclick: () => doDelete() }, icon('trash'));
  const saveBtn = h('button', { type: 'button', class: 'btn btn-ghost btn-sm', 'data-tpl': 'save', onclick: () => doSave() }, icon('plus'), 'Save as template');
  const note = h('p', { class: 'muted small tpl-note', 'data-tpl-note': '' });
  const pick = h('div', { class: 'tpl-pick' }, select, applyBtn, genBtn, delBtn);
  const el = h('section', { class: 'card tpl-bar', 'aria-labelledby': 'tpl-t', 'data-templates': '' },
    h('div', { class: 'tpl-head' },
      h('div', {}, h('h2', { class: 'card-title', id: 'tpl-t' }, 'Templates'), note),
      saveBtn),
    pick);

  const current = () => items.find((t) => t._id === select.value);

  function render() {
    clear(select);
    for (const t of items) select.append(h('option', { value: t._id }, t.name));
    pick.hidden = !items.length;
    note.textContent = items.length ? 'Start from saved settings: Use fills the form, Generate runs it as saved.' : 'Save the settings you use often and start from them next time.';
  }

  async function refresh(selectId) {
    try {
      const data = await get('/api/templates?limit=100');
      items = data.items || [];
      render();
      if (selectId) select.value = selectId;
    } catch (err) {
      note.textContent = `Could not load your templates: ${err.message}`;
    }
  }

  async function doSave() {
    const body = getBody();
    if (!body) { toast('Add a product image first: a template keeps your images too.', 'info'); return; }
    const t = await saveDialog({
      suggested: suggestName(), existing: items,
      save: (name, same) => (same ? api('PUT', `/api/templates/${encodeURIComponent(same._id)}`, { name, body }) : post('/api/templates', { name, body })),
    });
    if (!t) return;
    await refresh(t._id);
    toast(`Saved template “${t.name}”`, 'success');
  }

  function doApply() {
    const t = current();
    if (!t) return;
    apply(t.body);
    toast(`Settings from “${t.name}” loaded`, 'info');
  }

  async function doGenerate() {
    const t = current();
    if (!t) return;
    genBtn.disabled = true;
    try {
      const created = await post(`/api/templates/${encodeURIComponent(t._id)}/generate`, { start: true }, { headers: { 'Idempotency-Key': idempotencyKey() } });
      onGenerated(created, t);
    } catch (err) { onError(err); } finally { genBtn.disabled = false; }
  }

  async function doDelete() {
    const t = current();
    if (!t) return;
    const ok = await confirmDialog({ title: `Delete the template “${t.name}”?`, body: h('p', {}, 'Generations made from it stay in your history.'), confirm: 'Delete', danger: true });
    if (!ok) return;
    try {
      await del(`/api/templates/${encodeURIComponent(t._id)}`);
      await refresh();
      toast(`Deleted template “${t.name}”`, 'success');
    } catch (err) { toast(`Could not delete it: ${err.message}`, 'error'); }
  }

  render();
  return { el, refresh };
}
