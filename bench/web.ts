// Browser vs Node on the same machine and checkpoint: decode and prefill tok/s of the tiny model in
// headless Chromium (WebGPU; SwiftShader without a GPU) beside Node (Dawn; lavapipe without a GPU),
// and the page's load rate from a fake hub download and then from its OPFS cache.
//
//   npx tsx bench/web.ts [CHECKPOINT_DIR]     (default: a tiny synthetic checkpoint, seed 0)
//
// Each side answers the same image question twice with the same settings; the first run compiles
// the pipelines, the second is reported.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ChatSession, formatStats, loadModel } from '../src/index.js';
import { writeCheckpoint } from '../src/weights/synthetic.js';
import { fakeHub, launch, startPage } from '../test/browser/harness.js';
import { SHARED } from '../test/util.js';

const IMAGE = join(SHARED, 'assets/example_image1.jpg');
const QUESTION = 'Please describe the image in detail.';
const MAX_NEW = 64;
const MAX_TILES = 4;

const tmp = mkdtempSync(join(tmpdir(), 'bench-web-'));
const model = process.argv[2] ?? join(tmp, 'tiny');
if (!process.argv[2]) await writeCheckpoint(model, 'tiny', { seed: 0 });

async function browserSide(): Promise<{ stats: string[]; download: string; cached: string }> {
  const [hub, site, browser] = await Promise.all([fakeHub(model), startPage(), launch()]);
  try {
    const page = await browser.newPage();
    const load = async () => {
      await page.goto(site.url);
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
    for (let run = 0; run < 2; run++) {
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

async function nodeSide(): Promise<string[]> {
  const m = await loadModel(model);
  const stats: string[] = [];
  try {
    for (let run = 0; run < 2; run++) {
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
  return stats;
}

const browser = await browserSide();
const node = await nodeSide();
console.log(`checkpoint: ${model}`);
console.log(`browser (headless Chromium, WebGPU): first run: ${browser.stats[0]}`);
console.log(`browser (headless Chromium, WebGPU): second run: ${browser.stats[1]}`);
console.log(`node (Dawn): first run: ${node[0]}`);
console.log(`node (Dawn): second run: ${node[1]}`);
console.log(`page load after a hub download: ${browser.download}`);
console.log(`page load from the OPFS cache: ${browser.cached}`);
rmSync(tmp, { recursive: true, force: true });
