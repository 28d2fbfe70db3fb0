// Account: API keys (create, shown once; list; revoke), a scripting quick start,
// and webhooks (webhooks.js).
import { h, icon, clear, toast, fmtAgo, fmtDate, confirmDialog, copyText, emptyState, skeleton } from './dom.js';
import { get, post, del } from './api.js';
import { session } from './session.js';
import { webhooksCard } from './webhooks.js';

export async function render(container) {
  const nameInput = h('input', { id: 'key-name', class: 'input', maxlength: 100, placeholder: 'e.g. Shopify sync script', autocomplete: 'off', 'aria-describedby': 'key-name-err' });
  const nameErr = h('p', { class: 'field-error', id: 'key-name-err' });
  const createBtn = h('button', { type: 'submit', class: 'btn btn-primary' }, icon('plus'), 'Create key');
  const reveal = h('div', { class: 'key-reveal-slot', 'aria-live': 'polite' });
  const list = h('div', { class: 'keys-list' }, skeleton(2, 'skel-row'));
  const form = h('form', { class: 'key-form', novalidate: true },
    h('div', { class: 'field grow' }, h('label', { for: 'key-name', class: 'label' }, 'Key name'), nameInput, nameErr),
    createBtn);

  const origin = location.origin;
  const snippet = `# Step 1 — upload the product photo; the answer's "url" is its address
curl -s ${origin}/api/upload \\
  -H "Authorization: Bearer $STYLESTUDIO_KEY" \\
  -F file=@shirt.jpg
# → {"success":true,"data":{"url":"${origin}/media/u/….jpg",…}}

# Step 2 — create the generation with that url (reserves the tokens)
curl -s ${origin}/api/generation/create \\
  -H "Authorization: Bearer $STYLESTUDIO_KEY" \\
  -H "Content-Type: application/json" \\
  -d '{"productImages":["${origin}/media/u/….jpg"],"model":"local-studio",
       "style":"minimal","quality":"auto","aspectRatio":"4:5"}'

# Step 3 — start it, and wait up to 60 s for the result
curl -s ${origin}/api/generate -H "Prefer: wait=60" \\
  -H "Authorization: Bearer $STYLESTUDIO_KEY" \\
  -H "Content-Type: application/json" -d '{"generationId":"gen_…"}'`;

  const u = session.user || {};
  const hooks = webhooksCard();
  container.append(h('div', { class: 'page' },
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', {}, 'Account'),
        h('p', { class: 'page-sub' }, u.email ? `Signed in as ${u.name ? `${u.name} · ` : ''}${u.email}${u.plan ? ` · ${u.plan === 'pro' ? 'Pro' : 'Free'} plan` : ''}. ` : '', 'Script Style Studio from your shop, your PIM or a spreadsheet.')),
      h('nav', { class: 'chips', 'aria-label': 'On this page' },
        h('a', { class: 'chip', href: '#/account', onclick: jump('newkey-t') }, 'API keys'),
        h('a', { class: 'chip', href: '#/account', onclick: jump('webhooks') }, 'Webhooks'))),
    h('div', { class: 'keys-grid' },
      h('div', { class: 'keys-main' },
        h('section', { class: 'card', 'aria-labelledby': 'newkey-t' },
          h('h2', { class: 'card-title', id: 'newkey-t' }, 'Create a key'),
          h('p', { class: 'muted small' }, 'Keys act as you: they spend your tokens and see your generations. You’ll see each key only once.'),
          form, reveal),
        h('section', { class: 'card', 'aria-labelledby': 'keys-t' },
          h('h2', { class: 'card-title', id: 'keys-t' }, 'Your keys'),
          list)),
      h('section', { class: 'card code-card', 'aria-labelledby': 'qs-t' },
        h('div', { class: 'card-head' }, h('h2', { class: 'card-title', id: 'qs-t' }, 'Quick start'),
          h('button', { type: 'button', class: 'btn btn-ghost btn-sm', onclick: async () => toast(await copyText(snippet) ? 'Snippet copied' : 'Could not copy', 'success') }, icon('copy'), 'Copy')),
        h('pre', { class: 'code', tabindex: '0' }, snippet),
        h('p', { class: 'muted small' }, 'Follow progress live with Server-Sent Events at ', h('code', {}, '/api/generations/{id}/events'), ', or ask for the record with ', h('code', {}, 'GET /api/generations/{id}'), '.'),
        h('p', { class: 'small' }, h('a', { class: 'link', href: '/api/openapi.json', target: '_blank', rel: 'noopener' }, 'OpenAPI document')))),
    hooks.el));

  function jump(id) {
    return (e) => { e.preventDefault(); const el = document.getElementById(id); if (el) el.scrollIntoView({ behavior: 'smooth', block: 'start' }); };
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const name = nameInput.value.trim();
    nameErr.textContent = '';
    nameInput.removeAttribute('aria-invalid');
    if (!name) { nameErr.textContent = 'Give the key a name so you can recognise it later.'; nameInput.setAttribute('aria-invalid', 'true'); nameInput.focus(); return; }
    createBtn.disabled = true;
    try {
      const k = await post('/api/keys', { name });
      nameInput.value = '';
      showKey(k);
      await load();
    } catch (err) {
      const fe = err.fieldErrors();
      nameErr.textContent = fe.name || `${err.message} (${err.code})`;
      nameInput.setAttribute('aria-invalid', 'true');
    } finally {
      createBtn.disabled = false;
    }
  });

  let shownKeyId = null; // the key whose secret is on screen
  function showKey(k) {
    shownKeyId = k.id;
    const code = h('code', { class: 'key-secret', 'data-new-key': '' }, k.key);
    const box = h('div', { class: 'key-reveal', role: 'region', 'aria-label': 'Your new API key' },
      h('div', { class: 'key-reveal-head' }, icon('key'), h('strong', {}, `“${k.name}” is ready`)),
      h('p', { class: 'small' }, 'Copy it now and keep it somewhere safe — you won’t be able to see it again.'),
      h('div', { class: 'key-row' }, code,
        h('button', { type: 'button', class: 'btn btn-primary btn-sm', onclick: async () => toast(await copyText(k.key) ? 'Key copied to clipboard' : 'Could not copy — select the key and copy it', 'success') }, icon('copy'), 'Copy')),
      h('button', { type: 'button', class: 'btn btn-ghost btn-sm', onclick: () => { clear(reveal); shownKeyId = null; nameInput.focus(); } }, 'I’ve saved it'));
    clear(reveal).append(box);
    box.querySelector('button').focus();
  }

  async function load() {
    try {
      const data = await get('/api/keys');
      clear(list);
      if (!data.items.length) {
        list.append(emptyState({ iconName: 'key', title: 'No API keys yet', text: 'Create one above to start scripting.' }));
        return;
      }
      const table = h('table', { class: 'table' },
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Name'), h('th', { scope: 'col' }, 'Key'), h('th', { scope: 'col' }, 'Created'), h('th', { scope: 'col' }, 'Last used'), h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Actions')))),
        h('tbody', {}, data.items.map((k) => h('tr', { 'data-key-id': k.id },
          h('td', { 'data-label': 'Name' }, h('strong', {}, k.name)),
          h('td', { 'data-label': 'Key' }, h('code', { class: 'mono small' }, k.hint ? (k.hint.startsWith('sk_') ? k.hint : `sk_…${k.hint}`) : 'sk_…')),
          h('td', { 'data-label': 'Created' }, h('span', { title: fmtDate(k.createdAt) }, fmtAgo(k.createdAt))),
          h('td', { 'data-label': 'Last used' }, k.lastUsedAt ? h('span', { title: fmtDate(k.lastUsedAt) }, fmtAgo(k.lastUsedAt)) : h('span', { class: 'muted' }, 'Never')),
          h('td', { class: 'cell-actions' }, h('button', { type: 'button', class: 'btn btn-danger-ghost btn-sm', 'aria-label': `Revoke ${k.name}`, onclick: () => revoke(k) }, icon('trash'), 'Revoke'))))));
      list.append(table);
    } catch (err) {
      clear(list).append(h('p', { class: 'alert alert-error', role: 'alert' }, icon('alert'), `Could not load your keys: ${err.message} (${err.code})`));
    }
  }

  async function revoke(k) {
    const ok = await confirmDialog({
      title: `Revoke “${k.name}”?`,
      body: h('p', {}, 'Scripts using this key will stop working immediately. This can’t be undone.'),
      confirm: 'Revoke key', danger: true,
    });
    if (!ok) return;
    try {
      await del(`/api/keys/${encodeURIComponent(k.id)}`);
      if (shownKeyId === k.id) { clear(reveal); shownKeyId = null; } // a dead secret is no use on screen
      toast(`Revoked “${k.name}”`, 'success');
      await load();
    } catch (err) {
      toast(`Could not revoke: ${err.message} (${err.code})`, 'error');
    }
  }

  await Promise.all([load(), hooks.load()]);
  return undefined;
}
