// Makes the example images of the studio's first page (web/examples/*.jpg):
// real local-studio outputs of the test fixtures, rendered by the binary and
// shrunk to small JPEGs in Chromium. Rerun after the compositor changes:
//   make && node scripts/make-examples.mjs
import fs from 'node:fs';
import path from 'node:path';
import { startServer, cliCreateUser, launchBrowser, REPO, fixture } from '../tests/browser/harness.mjs';

const OUT = path.join(REPO, 'web/examples');
const WIDTH = 480; // px, the long side of a 4:5 card is 600
const QUALITY = 0.8;

// name → [inputs, create-body fields]
const EXAMPLES = {
  'input-tee': null, // the product photo itself, for "before"
  'realistic-tee': { product: ['product.jpg'], style: 'realistic' },
  'artistic-cap': { product: ['product2.png'], style: 'artistic' },
  'minimal-tee': { product: ['product.jpg'], style: 'minimal' },
  'model-tee': { product: ['product.jpg'], model: ['model.jpg'], style: 'realistic' },
};

const server = await startServer({ args: ['--workers', '1'] });
const browser = await launchBrowser();
try {
  const { apiKey } = await cliCreateUser(server.dataDir, `examples-${Date.now()}@example.com`, 50);
  const auth = { Authorization: `Bearer ${apiKey}` };
  const uploaded = {};
  async function upload(name) {
    if (uploaded[name]) return uploaded[name];
    const type = name.endsWith('.png') ? 'image/png' : 'image/jpeg';
    const res = await fetch(`${server.url}/api/upload`, { method: 'POST', headers: { ...auth, 'Content-Type': type }, body: fs.readFileSync(fixture(name)) });
    const j = await res.json();
    if (!j.success) throw new Error(`upload ${name}: ${JSON.stringify(j)}`);
    uploaded[name] = j.data.url;
    return j.data.url;
  }
  const page = await (await browser.newContext()).newPage();
  await page.goto(`${server.url}/healthz`);
  fs.mkdirSync(OUT, { recursive: true });
  for (const [name, ex] of Object.entries(EXAMPLES)) {
    let src;
    if (!ex) src = await upload('product.jpg');
    else {
      const body = {
        productImages: await Promise.all(ex.product.map(upload)),
        modelImages: await Promise.all((ex.model || []).map(upload)),
        model: 'local-studio', style: ex.style, quality: 'auto', aspectRatio: '4:5', parameters: { seed: 42 },
      };
      const res = await fetch(`${server.url}/api/generate`, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json', Prefer: 'wait=60' }, body: JSON.stringify(body) });
      const j = await res.json();
      const rec = j.data;
      if (!rec || rec.status !== 'completed') throw new Error(`${name}: ${JSON.stringify(j).slice(0, 500)}`);
      src = rec.resultImages[0];
    }
    // Shrink in the page (same origin, so the canvas is readable).
    const dataUrl = await page.evaluate(async ({ src: u, width, quality }) => {
      const img = new Image();
      img.src = u;
      await img.decode();
      const c = document.createElement('canvas');
      c.width = width;
      c.height = Math.round((img.naturalHeight * width) / img.naturalWidth);
      const g = c.getContext('2d');
      g.imageSmoothingQuality = 'high';
      g.drawImage(img, 0, 0, c.width, c.height);
      return c.toDataURL('image/jpeg', quality);
    }, { src: new URL(src).pathname, width: ex ? WIDTH : 320, quality: QUALITY });
    const file = path.join(OUT, `${name}.jpg`);
    fs.writeFileSync(file, Buffer.from(dataUrl.split(',')[1], 'base64'));
    console.log(`${path.relative(REPO, file)}  ${fs.statSync(file).size} bytes`);
  }
} finally {
  await browser.close();
  await server.stop();
}
