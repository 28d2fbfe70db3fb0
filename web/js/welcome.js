// The first page a new visitor sees: what Style Studio does, shown with real
// outputs of the built-in local-studio model (web/examples/, made from the test
// fixtures by scripts/make-examples.mjs), and the three steps; then sign up or
// sign in. Someone who has signed in on this browser before goes straight to
// the sign-in page instead (app.js).
import { h, icon } from './dom.js';

const EXAMPLES = [
  { src: '/examples/realistic-tee.jpg', label: 'Realistic', text: 'Lit studio sweep, floor shadow' },
  { src: '/examples/artistic-cap.jpg', label: 'Artistic', text: 'Colour-graded, dramatic light' },
  { src: '/examples/minimal-tee.jpg', label: 'Minimal', text: 'White background for marketplaces' },
  { src: '/examples/model-tee.jpg', label: 'On your model', text: 'With your own model photo' },
];

const STEPS = [
  { icon: 'upload', title: 'Upload your product photo', text: 'A JPEG, PNG or WebP of the garment or accessory — a phone shot on a plain background is enough.' },
  { icon: 'sliders', title: 'Pick a look', text: 'Realistic, artistic or minimal; the format for your shop, feed or story; optionally a model photo and your own words.' },
  { icon: 'sparkles', title: 'Generate and download', text: 'Watch it render live, then download the images. Tokens are refunded automatically if a generation fails.' },
];

export function render(container) {
  const cta = (cls = '') => h('div', { class: `welcome-cta ${cls}`.trim() },
    h('a', { class: 'btn btn-primary btn-lg', href: '#/signup', 'data-cta': 'signup' }, 'Create a free account', icon('arrowRight')),
    h('a', { class: 'btn btn-ghost btn-lg', href: '#/signin', 'data-cta': 'signin' }, 'Sign in'));
  container.append(h('div', { class: 'welcome' },
    h('header', { class: 'welcome-top' },
      h('a', { class: 'brand', href: '#/welcome' }, h('img', { src: '/favicon.svg', alt: '', width: 28, height: 28 }), h('span', {}, 'Style Studio')),
      h('a', { class: 'btn btn-ghost btn-sm', href: '#/signin' }, 'Sign in')),
    h('section', { class: 'welcome-hero', 'aria-labelledby': 'welcome-t' },
      h('p', { class: 'eyebrow' }, 'For fashion & accessory shops'),
      h('h1', { id: 'welcome-t', class: 'welcome-title' }, 'Studio-quality product shots, without the studio.'),
      h('p', { class: 'welcome-text' }, 'Style Studio turns one product photo into styled images for your shop, marketplaces and social posts — on a studio backdrop, in colour-graded light, on pure white, or worn by your own model.'),
      cta()),
    h('section', { class: 'welcome-examples', 'aria-labelledby': 'ex-t' },
      h('h2', { id: 'ex-t', class: 'welcome-h2' }, 'One photo in, four looks out'),
      h('div', { class: 'ex-row' },
        h('figure', { class: 'ex-input' },
          h('img', { src: '/examples/input-tee.jpg', alt: 'The product photo: a navy T-shirt on a grey background', width: 320, height: 320, loading: 'eager' }),
          h('figcaption', {}, h('strong', {}, 'Your photo'))),
        h('span', { class: 'ex-arrow', 'aria-hidden': 'true' }, icon('arrowRight')),
        h('ul', { class: 'ex-grid', role: 'list' }, EXAMPLES.map((e) => h('li', {},
          h('figure', { class: 'ex-card' },
            h('img', { src: e.src, alt: `${e.label} result made by Style Studio`, width: 480, height: 600, loading: 'eager', 'data-example': e.label }),
            h('figcaption', {}, h('strong', {}, e.label), h('span', {}, e.text))))))),
      h('p', { class: 'muted small welcome-note' }, 'Real results of the built-in Local Studio model, as rendered by this server — no outside AI service needed. Hosted AI models can be added by the operator.')),
    h('section', { class: 'welcome-steps', 'aria-labelledby': 'steps-t' },
      h('h2', { id: 'steps-t', class: 'welcome-h2' }, 'How it works'),
      h('ol', { class: 'steps-list' }, STEPS.map((s, i) => h('li', { class: 'card step' },
        h('span', { class: 'step-badge', 'aria-hidden': 'true' }, String(i + 1)),
        h('span', { class: 'step-icon', 'aria-hidden': 'true' }, icon(s.icon)),
        h('h3', {}, s.title),
        h('p', {}, s.text))))),
    h('section', { class: 'welcome-end' },
      h('p', {}, icon('coin'), ' Free starter tokens included — no card needed.'),
      cta('is-end'))));
}
