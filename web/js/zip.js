// A tiny ZIP writer for "Download all": the results are JPEG/PNG already, so
// entries are stored (method 0, no compression) — a local header, the bytes,
// and a central directory (PKWARE APPNOTE 4.3). UTF-8 names (flag bit 11).
// No ZIP64: an archive of a few generations' images is far below 4 GB.
import { h, icon, toast } from './dom.js';

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function dosTime(d) {
  return {
    time: (d.getHours() << 11) | (d.getMinutes() << 5) | (d.getSeconds() >> 1),
    date: ((Math.max(1980, d.getFullYear()) - 1980) << 9) | ((d.getMonth() + 1) << 5) | d.getDate(),
  };
}

/** files: [{name, data: Uint8Array}] → Blob (application/zip). */
export function zipStore(files, now = new Date()) {
  const enc = new TextEncoder();
  const { time, date } = dosTime(now);
  const parts = [];
  const central = [];
  let offset = 0;
  for (const f of files) {
    const name = enc.encode(f.name);
    const crc = crc32(f.data);
    const local = new DataView(new ArrayBuffer(30));
    local.setUint32(0, 0x04034b50, true);
    local.setUint16(4, 20, true); // version needed
    local.setUint16(6, 0x0800, true); // UTF-8 names
    local.setUint16(8, 0, true); // stored
    local.setUint16(10, time, true);
    local.setUint16(12, date, true);
    local.setUint32(14, crc, true);
    local.setUint32(18, f.data.length, true);
    local.setUint32(22, f.data.length, true);
    local.setUint16(26, name.length, true);
    local.setUint16(28, 0, true);
    parts.push(local, name, f.data);
    const cd = new DataView(new ArrayBuffer(46));
    cd.setUint32(0, 0x02014b50, true);
    cd.setUint16(4, 20, true); // made by
    cd.setUint16(6, 20, true); // needed
    cd.setUint16(8, 0x0800, true);
    cd.setUint16(10, 0, true);
    cd.setUint16(12, time, true);
    cd.setUint16(14, date, true);
    cd.setUint32(16, crc, true);
    cd.setUint32(20, f.data.length, true);
    cd.setUint32(24, f.data.length, true);
    cd.setUint16(28, name.length, true);
    // extra, comment, disk, internal attrs: 0; external attrs 0
    cd.setUint32(42, offset, true);
    central.push(cd, name);
    offset += 30 + name.length + f.data.length;
  }
  const cdSize = central.reduce((n, p) => n + p.byteLength, 0);
  const end = new DataView(new ArrayBuffer(22));
  end.setUint32(0, 0x06054b50, true);
  end.setUint16(8, files.length, true);
  end.setUint16(10, files.length, true);
  end.setUint32(12, cdSize, true);
  end.setUint32(16, offset, true);
  return new Blob([...parts, ...central, end], { type: 'application/zip' });
}

function extOf(url) {
  const m = /\.(jpe?g|png|webp)(?:$|\?)/i.exec(url);
  return m ? m[1].toLowerCase() : 'jpg';
}

/**
 * Fetch every image of groups [{id, images: [url]}] and save them as one ZIP
 * named `zipName` (entries "<id>-<n>.<ext>"). Resolves to the number of files.
 */
export async function downloadZip(groups, zipName) {
  const files = [];
  for (const g of groups) {
    for (let i = 0; i < g.images.length; i++) {
      const res = await fetch(g.images[i], { credentials: 'same-origin' });
      if (!res.ok) throw new Error(`could not fetch image ${i + 1} of ${g.id} (HTTP ${res.status})`);
      files.push({ name: `${g.id}-${i + 1}.${extOf(g.images[i])}`, data: new Uint8Array(await res.arrayBuffer()) });
    }
  }
  const url = URL.createObjectURL(zipStore(files));
  const a = document.createElement('a');
  a.href = url;
  a.download = zipName;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
  return files.length;
}

/** A "Download all (ZIP)" button for one generation's results. */
export function zipButton(id, images, { label = 'Download all (ZIP)', cls = 'btn btn-ghost btn-sm' } = {}) {
  const btn = h('button', { type: 'button', class: cls, 'data-zip': '' }, icon('download'), label);
  btn.addEventListener('click', async () => {
    btn.disabled = true;
    try {
      const n = await downloadZip([{ id, images }], `${id}.zip`);
      toast(`Saved ${n} image${n === 1 ? '' : 's'} as ${id}.zip`, 'success');
    } catch (e) {
      toast(`Could not make the ZIP: ${e.message}`, 'error');
    } finally {
      btn.disabled = false;
    }
  });
  return btn;
}
