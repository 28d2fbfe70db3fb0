// Sign in / sign up pages.
import { h, icon, toast } from './dom.js';
import { signIn, signUp } from './session.js';

const EMAIL_RE = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

function field({ id, label, type = 'text', autocomplete, hint, extra }) {
  const input = h('input', {
    id, name: id, type, autocomplete, class: 'input', 'aria-describedby': `${id}-err${hint ? ` ${id}-hint` : ''}`,
  });
  const wrap = h('div', { class: 'field' },
    h('label', { for: id, class: 'label' }, label),
    extra ? h('div', { class: 'input-group' }, input, extra(input)) : input,
    hint ? h('p', { class: 'hint', id: `${id}-hint` }, hint) : null,
    h('p', { class: 'field-error', id: `${id}-err`, 'data-error-for': id }));
  return { wrap, input };
}

function passwordToggle(input) {
  const btn = h('button', { type: 'button', class: 'input-addon', 'aria-label': 'Show password', 'aria-pressed': 'false' }, icon('eye'));
  btn.addEventListener('click', () => {
    const show = input.type === 'password';
    input.type = show ? 'text' : 'password';
    btn.setAttribute('aria-pressed', String(show));
    btn.setAttribute('aria-label', show ? 'Hide password' : 'Show password');
  });
  return btn;
}

function setErrors(form, errors) {
  let first = null;
  form.querySelectorAll('[data-error-for]').forEach((p) => {
    const id = p.dataset.errorFor;
    let msg = errors[id] || '';
    if (msg) msg = msg.charAt(0).toUpperCase() + msg.slice(1);
    p.textContent = msg;
    const input = form.querySelector(`#${id}`);
    if (input) {
      if (msg) { input.setAttribute('aria-invalid', 'true'); if (!first) first = input; } else input.removeAttribute('aria-invalid');
    }
  });
  return first;
}

function showAlert(box, msg) {
  box.replaceChildren();
  if (!msg) { box.hidden = true; return; }
  box.hidden = false;
  box.append(icon('alert'), h('span', {}, msg));
}

function layout(container, title, subtitle, form, footer) {
  container.append(h('div', { class: 'auth' },
    h('section', { class: 'auth-hero', 'aria-hidden': 'true' },
      h('div', { class: 'auth-hero-brand' }, h('img', { src: '/favicon.svg', alt: '', width: 32, height: 32 }), 'Style Studio'),
      h('div', { class: 'auth-hero-copy' },
        h('p', { class: 'eyebrow' }, 'For fashion & accessory shops'),
        h('p', { class: 'auth-hero-title' }, 'Studio-quality product shots, without the studio.'),
        h('p', { class: 'auth-hero-text' }, 'Upload a product photo, pick a look, and get campaign-ready images in seconds. Realistic sweeps, artistic light or clean minimal — on your own model shots.')),
      // Real local-studio outputs (web/examples/, scripts/make-examples.mjs).
      h('div', { class: 'auth-collage' },
        h('div', { class: 'collage-card c1 has-img' }, h('img', { src: '/examples/realistic-tee.jpg', alt: '' }), h('span', {}, 'Realistic')),
        h('div', { class: 'collage-card c2 has-img' }, h('img', { src: '/examples/artistic-cap.jpg', alt: '' }), h('span', {}, 'Artistic')),
        h('div', { class: 'collage-card c3 has-img' }, h('img', { src: '/examples/minimal-tee.jpg', alt: '' }), h('span', {}, 'Minimal')))),
    h('section', { class: 'auth-panel' },
      h('div', { class: 'auth-card' },
        h('a', { class: 'brand auth-brand', href: '#/signin' }, h('img', { src: '/favicon.svg', alt: '', width: 28, height: 28 }), h('span', {}, 'Style Studio')),
        h('h1', { class: 'auth-title' }, title),
        h('p', { class: 'auth-sub' }, subtitle),
        form,
        h('p', { class: 'auth-footer' }, footer),
        h('p', { class: 'auth-footer auth-tour' }, h('a', { href: '#/welcome' }, 'What Style Studio does, with examples'))))));
}

export function signin(container, _params, ctx) {
  const alert = h('div', { class: 'alert alert-error', role: 'alert', hidden: true });
  const email = field({ id: 'email', label: 'Email', type: 'email', autocomplete: 'email' });
  const password = field({ id: 'password', label: 'Password', type: 'password', autocomplete: 'current-password', extra: passwordToggle });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary btn-block btn-lg' }, 'Sign in');
  const form = h('form', { class: 'form', novalidate: true, 'aria-label': 'Sign in' }, alert, email.wrap, password.wrap, submit);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    showAlert(alert, '');
    const errs = {};
    const em = email.input.value.trim();
    if (!em) errs.email = 'Enter your email address.';
    else if (!EMAIL_RE.test(em)) errs.email = 'That doesn’t look like an email address.';
    if (!password.input.value) errs.password = 'Enter your password.';
    const first = setErrors(form, errs);
    if (first) { first.focus(); return; }
    submit.disabled = true;
    submit.classList.add('loading');
    try {
      await signIn(em, password.input.value);
      toast('Welcome back!', 'success');
      ctx.afterSignIn();
    } catch (err) {
      if (err.code === 'VALIDATION_ERROR' && err.validationErrors.length) {
        const f = setErrors(form, err.fieldErrors());
        showAlert(alert, err.message);
        if (f) f.focus();
      } else if (err.status === 401) {
        showAlert(alert, 'Invalid email or password. Check them and try again.');
        password.input.select();
        password.input.focus();
      } else if (err.code === 'RATE_LIMIT_EXCEEDED') {
        showAlert(alert, `Too many attempts. Try again in ${err.retryAfter || 'a few'} seconds.`);
      } else {
        showAlert(alert, `${err.message}${err.code ? ` (${err.code})` : ''}`);
      }
    } finally {
      submit.disabled = false;
      submit.classList.remove('loading');
    }
  });
  layout(container, 'Welcome back', 'Sign in to your studio.', form,
    ['New to Style Studio? ', h('a', { href: '#/signup' }, 'Create an account')]);
  email.input.focus();
}

export function signup(container, _params, ctx) {
  const alert = h('div', { class: 'alert alert-error', role: 'alert', hidden: true });
  const name = field({ id: 'name', label: 'Your name or shop name', autocomplete: 'name' });
  const email = field({ id: 'email', label: 'Email', type: 'email', autocomplete: 'email' });
  const password = field({ id: 'password', label: 'Password', type: 'password', autocomplete: 'new-password', hint: 'At least 8 characters.', extra: passwordToggle });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary btn-block btn-lg' }, 'Create account');
  const form = h('form', { class: 'form', novalidate: true, 'aria-label': 'Create account' }, alert, name.wrap, email.wrap, password.wrap, submit,
    h('p', { class: 'hint center' }, icon('coin'), ' Free starter tokens included — no card needed.'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    showAlert(alert, '');
    const errs = {};
    const nm = name.input.value.trim();
    const em = email.input.value.trim();
    const pw = password.input.value;
    if (!nm) errs.name = 'Tell us your name or your shop’s name.';
    else if (nm.length > 100) errs.name = 'Keep it under 100 characters.';
    if (!em) errs.email = 'Enter your email address.';
    else if (!EMAIL_RE.test(em) || em.length > 254) errs.email = 'That doesn’t look like an email address.';
    if (!pw) errs.password = 'Choose a password.';
    else if (!pw.trim()) errs.password = 'A password of only spaces is too easy to guess — add letters, numbers or symbols.';
    else if (pw.length < 8) errs.password = `Use at least 8 characters (${8 - pw.length} more).`;
    else if (pw.length > 256) errs.password = 'Use at most 256 characters.';
    const first = setErrors(form, errs);
    if (first) { first.focus(); return; }
    submit.disabled = true;
    submit.classList.add('loading');
    try {
      const data = await signUp(nm, em, pw);
      toast(`Welcome, ${data.user && data.user.name ? data.user.name : 'friend'}! ${data.tokenBalance ?? ''} free tokens are ready.`, 'success', 5000);
      ctx.afterSignIn();
    } catch (err) {
      if (err.validationErrors.length) {
        const fe = err.fieldErrors();
        const f = setErrors(form, fe);
        const known = ['name', 'email', 'password'].some((k) => fe[k]);
        showAlert(alert, known ? 'Please fix the highlighted field.' : err.message);
        if (f) f.focus();
      } else if (err.code === 'RATE_LIMIT_EXCEEDED') {
        showAlert(alert, `Too many attempts. Try again in ${err.retryAfter || 'a few'} seconds.`);
      } else {
        showAlert(alert, `${err.message}${err.code ? ` (${err.code})` : ''}`);
      }
    } finally {
      submit.disabled = false;
      submit.classList.remove('loading');
    }
  });
  layout(container, 'Create your studio', 'Start turning product photos into styled shots.', form,
    ['Already have an account? ', h('a', { href: '#/signin' }, 'Sign in')]);
  name.input.focus();
}
