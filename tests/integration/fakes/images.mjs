// Image helpers shared by the fake providers and their tests: a tiny PNG
// encoder (real, decodable files of any size; solid colours, cached), a
// strict PNG decoder for tests (checks every chunk CRC and inflates the
// pixels), and sniffing of the formats providers accept by their magic bytes.
import { deflateSync, inflateSync } from 'node:zlib';

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(buf) {
  let c = 0xffffffff;
  for (let i = 0; i < buf.length; i++) c = CRC_TABLE[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  data.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

// A distinct, recognisable colour per output index (index 0 red, 1 green, ...).
export const PALETTE = [
  [220, 40, 40], [40, 180, 60], [40, 80, 220], [230, 180, 30], [160, 60, 200],
  [30, 190, 190], [240, 120, 30], [120, 120, 120], [250, 100, 170], [90, 60, 30],
];
export const colorFor = (index) => PALETTE[((index % PALETTE.length) + PALETTE.length) % PALETTE.length];

const cache = new Map();

// An 8-bit RGB PNG of exactly width × height filled with one colour. Every row
// after the first uses the "Up" filter, so the data deflates to almost nothing
// and a 1536×1024 image costs a few kB. Results are cached per size and colour.
export function encodePng(width, height, rgb = colorFor(0)) {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1 || width * height > 64e6) {
    throw new RangeError(`encodePng: bad size ${width}x${height}`);
  }
  const key = `${width}x${height}:${rgb.join(',')}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const stride = 1 + width * 3;
  const raw = Buffer.alloc(stride * height); // rows 1.. are filter 2 (Up) with zero deltas
  for (let x = 0; x < width; x++) raw.set(rgb, 1 + x * 3);
  for (let y = 1; y < height; y++) raw[y * stride] = 2;
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type: truecolour
  const png = Buffer.concat([
    PNG_SIGNATURE, chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw, { level: 6 })), chunk('IEND', Buffer.alloc(0)),
  ]);
  if (cache.size > 256) cache.clear();
  cache.set(key, png);
  return png;
}

// Decodes an 8-bit RGB/RGBA PNG fully (for tests): checks the signature, every
// CRC, the IHDR and that the inflated data has exactly the size the header
// says. Returns {width, height, channels, pixel(x, y) → [r, g, b(, a)]};
// throws on anything else.
export function decodePng(buf) {
  buf = Buffer.from(buf);
  if (buf.length < 8 || !buf.subarray(0, 8).equals(PNG_SIGNATURE)) throw new Error('not a PNG (signature)');
  let off = 8, ihdr = null;
  const idat = [];
  let ended = false;
  while (off + 12 <= buf.length) {
    const len = buf.readUInt32BE(off);
    const type = buf.toString('latin1', off + 4, off + 8);
    if (off + 12 + len > buf.length) throw new Error(`PNG chunk ${type} runs past the end`);
    const data = buf.subarray(off + 8, off + 8 + len);
    if (crc32(buf.subarray(off + 4, off + 8 + len)) !== buf.readUInt32BE(off + 8 + len)) throw new Error(`PNG chunk ${type}: bad CRC`);
    if (type === 'IHDR') ihdr = data;
    else if (type === 'IDAT') idat.push(data);
    else if (type === 'IEND') { ended = true; break; }
    off += 12 + len;
  }
  if (!ihdr || !ended || !idat.length) throw new Error('PNG lacks IHDR, IDAT or IEND');
  const width = ihdr.readUInt32BE(0), height = ihdr.readUInt32BE(4), depth = ihdr[8], ctype = ihdr[9];
  if (depth !== 8 || (ctype !== 2 && ctype !== 6) || ihdr[12] !== 0) throw new Error(`PNG: unsupported depth ${depth} / colour type ${ctype} / interlace`);
  const channels = ctype === 6 ? 4 : 3;
  const stride = 1 + width * channels;
  const raw = inflateSync(Buffer.concat(idat));
  if (raw.length !== stride * height) throw new Error(`PNG: ${raw.length} bytes of pixel data, expected ${stride * height}`);
  // Unfilter in place (types 0–4).
  const px = Buffer.alloc(width * channels * height);
  const bpr = width * channels;
  for (let y = 0; y < height; y++) {
    const f = raw[y * stride];
    for (let i = 0; i < bpr; i++) {
      const cur = raw[y * stride + 1 + i];
      const a = i >= channels ? px[y * bpr + i - channels] : 0;
      const b = y > 0 ? px[(y - 1) * bpr + i] : 0;
      const c = i >= channels && y > 0 ? px[(y - 1) * bpr + i - channels] : 0;
      let v;
      if (f === 0) v = cur;
      else if (f === 1) v = cur + a;
      else if (f === 2) v = cur + b;
      else if (f === 3) v = cur + ((a + b) >> 1);
      else if (f === 4) {
        const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
        v = cur + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
      } else throw new Error(`PNG: bad filter ${f} on row ${y}`);
      px[y * bpr + i] = v & 0xff;
    }
  }
  return { width, height, channels, pixel: (x, y) => [...px.subarray((y * width + x) * channels, (y * width + x + 1) * channels)] };
}

// The format of an image by its magic bytes: 'png', 'jpeg', 'webp', 'gif' or null.
export function sniffImage(buf) {
  if (!buf || buf.length < 12) return null;
  if (buf.subarray(0, 8).equals(PNG_SIGNATURE)) return 'png';
  if (buf[0] === 0xff && buf[1] === 0xd8 && buf[2] === 0xff) return 'jpeg';
  if (buf.toString('latin1', 0, 4) === 'RIFF' && buf.toString('latin1', 8, 12) === 'WEBP') return 'webp';
  const g = buf.toString('latin1', 0, 6);
  if (g === 'GIF87a' || g === 'GIF89a') return 'gif';
  return null;
}

export const MIME_OF = { png: 'image/png', jpeg: 'image/jpeg', webp: 'image/webp', gif: 'image/gif' };
