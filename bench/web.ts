// Browser vs Node on the same machine and checkpoint: decode and prefill tok/s of the tiny model in
// headless Chromium (WebGPU; SwiftShader without a GPU) beside Node (Dawn; lavapipe without a GPU),
// and the page's load rate from a fake hub download and then from its OPFS cache.
//
//   npx tsx bench/web.ts [CHECKPOINT_DIR] [--dtype bf16|q8|q4] [--load-only]
//     (default: a tiny synthetic checkpoint, seed 0, bf16)
//
// Each side answers the same image question twice with the same settings; the first run compiles
// the pipelines, the second is reported. With q8/q4 the first page load quantizes (Web Workers) and
// writes the quantized copy to the OPFS, the second reads it; Node's two loads do the same with a
// quantized cache in a fresh folder. --load-only skips the answers (checkpoints too large to answer
// with on a software adapter in reasonable time).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ChatSession, formatStats, loadModel } from '../src/index.js';
import { writeCheckpoint } from '../src/weights/synthetic.js';
import { fakeHub, launch, startPage } from '../test/browser/harness.js';
import { SHARED } from '../test/util.js';

const IMAGE = join(SHARED, 'assets/example_image1.jpg');
const QUESTION = 'Please describe the image in detail.';
const MAX_NEW = 64;
const MAX_TILES = 4;

const { values: opts, positionals } = parseArgs({ allowPositionals: true, options: { dtype: { type: 'string', default: 'bf16' }, 'load-only': { type: 'boolean', default: false } } });
const dtype = opts.dtype as 'bf16' | 'q8' | 'q4';
if (!['bf16', 'q8', 'q4'].includes(dtype)) throw new Error(`--dtype ${dtype}: expected bf16, q8 or q4`);
const tmp = mkdtempSync(join(tmpdir(), 'bench-web-'));
const model = positionals[0] ?? join(tmp, 'tiny');
if (!positionals[0]) await writeCheckpoint(model, 'tiny', { seed: 0 });
const runs = opts['load-only'] ? 0 : 2;

async function browserSide(): Promise<{ stats: string[]; download: string; cached: string }> {
  const [hub, site, browser] = await Promise.all([fakeHub(model), startPage(), launch()]);
  try {
    const page = await browser.newPage();
    const load = async () => {
      await page.goto(site.url);
      await page.selectOption('#dtype', dtype);
      await page.click('#model-panel details summary');
      await page.fill('#hub-endpoint', hub.endpoint);
      await page.fill('#hub-repo', hub.repo);
      await page.click('#load-hub');
      await page.waitForSelector('#model-status[data-state=ready], #error:not([hidden])', { timeout: 600_000 });
      if (await page.isVisible('#error')) throw new Error(`page: ${await page.textContent('#error-text')}`);
      return (await page.textContent('#model-status'))!;
    };
    const download = await load();
    const cached = await load();
    await page.click('#settings summary');
    await page.fill('#max-new-tokens', String(MAX_NEW));
    await page.fill('#max-tiles', String(MAX_TILES));
    const stats: string[] = [];
    for (let run = 0; run < runs; run++) {
      await page.click('#new-chat');
      await page.setInputFiles('#media', [IMAGE]);
      await page.fill('#question', QUESTION);
      await page.click('#send');
      const answer = page.locator('.assistant').last();
      await answer.and(page.locator('[data-done]')).waitFor({ timeout: 600_000 });
      stats.push((await answer.locator('.stats').textContent())!);
    }
    return { stats, download, cached };
  } finally {
    await browser.close();
    await Promise.all([site.close(), hub.close()]);
  }
}

async function nodeSide(): Promise<{ stats: string[]; loads: string[] }> {
  const quantCache = dtype === 'bf16' ? undefined : { dir: join(tmp, 'node-quant-cache') };
  const loads: string[] = [];
  const load = async () => {
    let line = '';
    const m = await loadModel(model, { dtype, quantCache, onProgress: (p) => void (line = `${(p.bytesTotal / 1e6).toFixed(0)} MB in ${p.seconds.toFixed(1)} s${p.breakdown.quantCache ? `; quantized cache: ${p.breakdown.quantCache}` : ''}`) });
    loads.push(line);
    return m;
  };
  // with q8/q4: a load that quantizes and writes a fresh cache, then one that reads it
  if (dtype !== 'bf16') (await load()).dispose();
  const m = await load();
  const stats: string[] = [];
  try {
    for (let run = 0; run < runs; run++) {
      const session = new ChatSession(m.model, m.tokenizer, { stopIds: m.stopIds });
      const it = session.turn({ question: QUESTION, images: [IMAGE], maxTiles: MAX_TILES, maxNewTokens: MAX_NEW });
      let r = await it.next();
      while (!r.done) r = await it.next();
      stats.push(formatStats(r.value.stats));
      session.dispose();
    }
  } finally {
    m.dispose();
  }
  return { stats, loads };
}

const browser = await browserSide();
const node = await nodeSide();
console.log(`checkpoint: ${model}, ${dtype}`);
for (let run = 0; run < runs; run++) {
  console.log(`browser (headless Chromium, WebGPU): ${run ? 'second' : 'first'} run: ${browser.stats[run]}`);
  console.log(`node (Dawn): ${run ? 'second' : 'first'} run: ${node.stats[run]}`);
}
console.log(`page load after a hub download: ${browser.download}`);
console.log(`page load from the OPFS cache: ${browser.cached}`);
for (const [i, l] of node.loads.entries()) console.log(`node load ${i + 1}: ${l}`);
rmSync(tmp, { recursive: true, force: true });
