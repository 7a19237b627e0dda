// The page in a real browser (Debian's chromium, headless, WebGPU on SwiftShader): a freshly seeded
// tiny checkpoint is downloaded from a fake hub on loopback into the OPFS, loaded, and asked about
// one image, two images and the example video; each answer must be exactly the greedy text the Node
// library (Dawn; the same ChatSession run.ts prints) gives for the same inputs. A screenshot of the finished chat is written to
// test/browser/artifacts/. Also: a reload reads the OPFS cache instead of the hub, an undecodable
// file and a missing WebGPU adapter are messages on the page.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { ChatSession, loadModel } from '../../src/index.js';
import { writeCheckpoint } from '../../src/weights/synthetic.js';
import { freshSeed, SHARED } from '../util.js';
import { ARTIFACTS, fakeHub, haveChromium, launch, startPage, type FakeHub } from './harness.js';

const ASSETS = join(SHARED, 'assets');
const IMAGE1 = join(ASSETS, 'example_image1.jpg');
const IMAGE2 = join(ASSETS, 'example_image2.jpg');
const VIDEO = join(ASSETS, 'example_video.mp4');
const MAX_NEW = 24;
const CASES = [
  { name: 'image', question: 'Please describe the image in detail.', files: [IMAGE1], node: { images: [IMAGE1], maxTiles: 4 } },
  { name: 'two images', question: 'What are the similarities and differences between these two images?', files: [IMAGE1, IMAGE2], node: { images: [IMAGE1, IMAGE2], maxTiles: 4 } },
  { name: 'video', question: 'What is happening in this video?', files: [VIDEO], node: { video: { path: VIDEO, frames: 8 } } },
];

const tmp = mkdtempSync(join(tmpdir(), 'browser-test-'));
const model = join(tmp, 'tiny');
const seed = freshSeed();
const nodeAnswers = new Map<string, string>();
let hub: FakeHub;
let site: Awaited<ReturnType<typeof startPage>>;
let browser: BrowserContext;
let page: Page;

/** The answers of the Node library (Dawn) for every case: greedy, as the page is set up below. */
async function answerInNode(): Promise<void> {
  const m = await loadModel(model);
  try {
    for (const c of CASES) {
      const session = new ChatSession(m.model, m.tokenizer, { stopIds: m.stopIds });
      const it = session.turn({ question: c.question, ...c.node, maxNewTokens: MAX_NEW });
      let r = await it.next();
      while (!r.done) r = await it.next();
      nodeAnswers.set(c.name, r.value.answer);
      session.dispose();
    }
  } finally {
    m.dispose();
  }
}

/** Fills the hub fields (they sit in a closed <details>) and starts the download. */
async function startHubLoad(p: Page): Promise<void> {
  await p.click('#model-panel details summary');
  await p.fill('#hub-endpoint', hub.endpoint);
  await p.fill('#hub-repo', hub.repo);
  await p.click('#load-hub');
}

async function loadFromHub(): Promise<void> {
  await startHubLoad(page);
  await page.waitForSelector('#model-status[data-state=ready], #error:not([hidden])', { timeout: 120_000 });
  expect(await page.isHidden('#error'), (await page.textContent('#error-text')) ?? '').toBe(true);
}

async function ask(question: string, files: string[]): Promise<{ text: string; stats: string }> {
  const before = await page.locator('.assistant').count();
  if (files.length) await page.setInputFiles('#media', files);
  await page.fill('#question', question);
  await page.click('#send');
  const answer = page.locator('.assistant').nth(before);
  await answer.and(page.locator('[data-done]')).waitFor({ timeout: 240_000 });
  expect(await answer.getAttribute('data-done'), (await page.textContent('#error-text')) ?? '').toBe('done');
  return { text: (await answer.locator('.text').textContent())!, stats: (await answer.locator('.stats').textContent())! };
}

describe.skipIf(!haveChromium())(`the page in headless Chromium (tiny checkpoint seed ${seed})`, () => {
  beforeAll(async () => {
    await writeCheckpoint(model, 'tiny', { seed });
    await answerInNode();
    [hub, site, browser] = await Promise.all([fakeHub(model), startPage(), launch()]);
    page = await browser.newPage();
    page.on('console', (m) => console.log(`[page] ${m.text()}`));
    page.on('pageerror', (e) => console.log(`[page error] ${e.message}`));
    await page.goto(site.url);
  }, 300_000);

  afterAll(async () => {
    await browser?.close();
    await Promise.all([site?.close(), hub?.close()]);
    rmSync(tmp, { recursive: true, force: true });
  });

  it('downloads the model from the hub into the OPFS and answers like Node', async () => {
    await loadFromHub();
    expect(hub.seen.filter((s) => s.includes('/resolve/')).length).toBeGreaterThan(0);
    await page.click('#settings summary');
    await page.fill('#max-new-tokens', String(MAX_NEW));
    await page.fill('#max-tiles', '4');
    await page.fill('#frames', '8');
    for (const c of CASES) {
      await page.click('#new-chat');
      const t0 = Date.now();
      const { text, stats } = await ask(c.question, c.files);
      console.log(`${c.name}: ${(Date.now() - t0) / 1000} s: ${stats}`);
      expect(text, c.name).toBe(nodeAnswers.get(c.name));
      expect(stats).toMatch(/prompt tokens, \d+ new \((stop-token|max-new-tokens)\) \| preprocess .* \| vision .* \| prefill [\d.]+ tok\/s \| first token/);
    }
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'chat.png'), fullPage: true });
    // the file just sent, picked again, is attached again (the picker fired no 'change' for it once)
    await page.setInputFiles('#media', [CASES.at(-1)!.files[0]]);
    expect(await page.locator('#attachments > *').count()).toBe(1);
  }, 600_000);

  it('a second load reads the OPFS cache, not the hub', async () => {
    hub.seen.length = 0;
    await page.reload();
    await loadFromHub();
    expect(hub.seen.filter((s) => s.includes('/resolve/'))).toEqual([]);
    expect(await page.getAttribute('#model-status', 'data-downloaded')).toBe('0');
  }, 120_000);

  it('an undecodable image is a message on the page', async () => {
    const bad = join(tmp, 'broken.jpg');
    writeFileSync(bad, Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 4, 5, 6, 7, 8]));
    await page.click('#new-chat');
    await page.setInputFiles('#media', [bad]);
    await page.fill('#question', 'What is this?');
    await page.click('#send');
    await page.waitForSelector('#error:not([hidden])', { timeout: 30_000 });
    expect(await page.getAttribute('#error', 'data-kind')).toBe('input');
    expect(await page.textContent('#error-text')).toMatch(/cannot (read|decode) image .*broken\.jpg: /);
  }, 60_000);

  it('without --enable-unsafe-webgpu the page says there is no WebGPU', async () => {
    const plain = await launch(false);
    try {
      const p = await plain.newPage();
      await p.goto(site.url);
      await startHubLoad(p);
      await p.waitForSelector('#error:not([hidden])', { timeout: 30_000 });
      expect(await p.getAttribute('#error', 'data-kind')).toBe('no-webgpu');
      expect(await p.textContent('#error-text')).toMatch(/no adapter is available|no WebGPU/);
    } finally {
      await plain.close();
    }
  }, 60_000);
});
