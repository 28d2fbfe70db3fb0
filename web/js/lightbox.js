// Result gallery and lightbox (previous/next, keyboard, download, copy link).
import { h, icon, toast, copyText } from './dom.js';
import { zipButton } from './zip.js';

function absUrl(u) { try { return new URL(u, location.href).href; } catch { return u; } }

function fileName(url, base, i) {
  const m = /\.(jpe?g|png|webp)(?:$|\?)/i.exec(url);
  return `${base || 'style-studio'}-${i + 1}.${m ? m[1].toLowerCase() : 'jpg'}`;
}

export async function copyLink(url) {
  const ok = await copyText(absUrl(url));
  toast(ok ? 'Link copied to clipboard' : 'Could not copy — long-press the image to copy its address', ok ? 'success' : 'error');
}

/** A grid of result images; each opens the lightbox. With zipId and more than
 * one image, a "Download all (ZIP)" button comes first. */
export function gallery(images, { name = 'style-studio', label = 'Result', ratio = null, small = false, zipId = null } = {}) {
  const grid = h('ul', { class: `gallery${small ? ' gallery-sm' : ''}`, role: 'list' });
  const ar = ratio && /^\d+:\d+$/.test(ratio) ? ratio.replace(':', ' / ') : null;
  images.forEach((url, i) => {
    grid.append(h('li', { class: 'gallery-item' },
      h('button', {
        type: 'button', class: 'gallery-open', 'aria-label': `Open ${label.toLowerCase()} ${i + 1} of ${images.length}`,
        onclick: () => openLightbox(images, i, { name, label }),
        style: ar ? { aspectRatio: ar } : null,
      }, h('img', { src: url, alt: `${label} ${i + 1}`, loading: 'lazy', decoding: 'async' }),
      h('span', { class: 'gallery-zoom', 'aria-hidden': 'true' }, icon('expand'))),
      h('div', { class: 'gallery-actions' },
        h('a', { class: 'btn btn-ghost btn-sm', href: url, download: fileName(url, name, i), 'aria-label': `Download ${label.toLowerCase()} ${i + 1}` }, icon('download'), 'Download'),
        h('button', { type: 'button', class: 'btn btn-ghost btn-sm', 'aria-label': `Copy link to ${label.toLowerCase()} ${i + 1}`, onclick: () => copyLink(url) }, icon('link'), 'Copy link'))));
  });
  if (!zipId || images.length < 2) return grid;
  return h('div', { class: 'gallery-wrap' }, h('div', { class: 'gallery-bar' }, zipButton(zipId, images)), grid);
}

export function openLightbox(images, start = 0, { name = 'style-studio', label = 'Result' } = {}) {
  let i = start;
  const img = h('img', { class: 'lb-img', alt: '' });
  const counter = h('span', { class: 'lb-counter', 'aria-live': 'polite' });
  const download = h('a', { class: 'btn btn-light btn-sm', 'data-lb-download': '' }, icon('download'), h('span', {}, 'Download'));
  const copy = h('button', { type: 'button', class: 'btn btn-light btn-sm', onclick: () => copyLink(images[i]) }, icon('link'), h('span', {}, 'Copy link'));
  const prev = h('button', { type: 'button', class: 'lb-nav lb-prev', 'aria-label': 'Previous image', onclick: () => show(i - 1) }, icon('left'));
  const next = h('button', { type: 'button', class: 'lb-nav lb-next', 'aria-label': 'Next image', onclick: () => show(i + 1) }, icon('right'));
  const close = h('button', { type: 'button', class: 'lb-close', 'aria-label': 'Close', onclick: () => done() }, icon('x'));
  const dlg = h('dialog', { class: 'lightbox', 'aria-label': `${label} viewer` },
    h('div', { class: 'lb-top' }, counter, h('div', { class: 'lb-tools' }, download, copy, close)),
    h('div', { class: 'lb-stage', onclick: (e) => { if (e.target.classList.contains('lb-stage')) done(); } }, prev, img, next));

  function show(n) {
    i = (n + images.length) % images.length;
    img.src = images[i];
    img.alt = `${label} ${i + 1} of ${images.length}`;
    counter.textContent = `${i + 1} / ${images.length}`;
    download.href = images[i];
    download.setAttribute('download', fileName(images[i], name, i));
    const multi = images.length > 1;
    prev.hidden = !multi;
    next.hidden = !multi;
  }
  function done() { dlg.close(); }
  dlg.addEventListener('keydown', (e) => {
    if (e.key === 'ArrowLeft') { e.preventDefault(); show(i - 1); }
    else if (e.key === 'ArrowRight') { e.preventDefault(); show(i + 1); }
  });
  const opener = document.activeElement;
  dlg.addEventListener('close', () => { dlg.remove(); if (opener && opener.focus) opener.focus(); });
  document.body.append(dlg);
  show(i);
  dlg.showModal();
  close.focus();
  return dlg;
}
