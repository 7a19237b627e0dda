// The page in a real browser (Debian's chromium, headless, WebGPU on SwiftShader), on a freshly
// seeded tiny checkpoint served on loopback. One browser, one page and one compiled model are shared
// by the tests below, which run in order: SwiftShader compiles the pipelines of every new device
// for ~30-70 s, so only one device ever answers.
// - a download the storage quota cannot hold is refused with the amount needed;
// - a transfer cut mid-file resumes with a Range request, and the OPFS copy has the hub's hash;
// - when that model's device is lost the page offers to reload it; the reload reads the OPFS cache
//   (no hub request) and answers one image, two images and the example video with exactly the
//   greedy text the Node library (Dawn; the same ChatSession run.ts prints) gives; a screenshot of
//   the chat is written to test/browser/artifacts/; Stop ends a streaming answer, whose text is the
//   beginning of Node's (no load or new conversation can start while it answers), and the next
//   question is answered;
// - an undecodable file, corrupted hub bytes, adapter limits below the model's needs (checked from
//   the hub's tensor headers before a download, and from cached files) and a GPU out-of-memory are
//   messages on the page, with the numbers;
// - a local folder and a folder URL (Range requests) load;
// - at q4 a quota without room for the quantized copy leaves it unwritten and the load goes on; then
//   the first load quantizes on nested Web Workers and writes the quantized copy to the OPFS
//   (the same quantized rows and hashes as Node's cache file), the next load reads it, and the
//   answer is Node's q4 greedy text;
// - without --enable-unsafe-webgpu the page says there is no WebGPU (a second browser, started
//   beside the first).
// The faults a real browser will not produce on demand (a small quota, small limits, an OOM, a lost
// device) are made by patching the Web Worker's WebGPU / storage objects from the test.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext, Page, Worker } from 'playwright-core';
import { ChatSession, loadModel } from '../../src/index.js';
import { cacheFileName } from '../../src/weights/quant-cache.js';
import { writeCheckpoint } from '../../src/weights/synthetic.js';
import { freshSeed, SHARED } from '../util.js';
import { ARTIFACTS, fakeHub, haveChromium, launch, startPage, type FakeHub } from './harness.js';

const ASSETS = join(SHARED, 'assets');
const IMAGE1 = join(ASSETS, 'example_image1.jpg');
const IMAGE2 = join(ASSETS, 'example_image2.jpg');
const VIDEO = join(ASSETS, 'example_video.mp4');
const MAX_NEW = 16;
/** the answer Stop interrupts may run this long (Node checks it does not end sooner) */
const STOP_MAX_NEW = 64;
const CASES = [
  { name: 'image', question: 'Please describe the image in detail.', files: [IMAGE1], node: { images: [IMAGE1], maxTiles: 4 } },
  { name: 'two images', question: 'What are the similarities and differences between these two images?', files: [IMAGE1, IMAGE2], node: { images: [IMAGE1, IMAGE2], maxTiles: 4 } },
  { name: 'video', question: 'What is happening in this video?', files: [VIDEO], node: { video: { path: VIDEO, frames: 8 } } },
];
/** the question the q4 model answers in Node and in the page */
const Q4_QUESTION = 'Describe a quiet morning in a small town.';
const STOP_CANDIDATES = ['Tell me a long story about a dragon.', 'Count from one to one hundred.', 'Explain how a computer works.', 'List every country you know.'];

const tmp = mkdtempSync(join(tmpdir(), 'browser-test-'));
const model = join(tmp, 'tiny');
/** the q4 cache file's name, and where Node's q4 load writes it (not beside the checkpoint, which the fake hub serves) */
const Q4_COPY = cacheFileName('q4');
const escaped = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const nodeQ4Cache = join(tmp, 'node-q4-cache');
const seed = freshSeed();
const nodeAnswers = new Map<string, string>();
let stopQuestion = '';
let nodeDone: Promise<void>;
let noWebGpu: Promise<[string | null, string | null]>;
let hub: FakeHub;
let badHub: FakeHub;
let site: Awaited<ReturnType<typeof startPage>>;
let browser: BrowserContext;
let page: Page;
/** the largest shard: the one the hub cuts, and the one it corrupts for the second repo */
let shard = '';

async function nodeAnswer(m: Awaited<ReturnType<typeof loadModel>>, req: Omit<Parameters<ChatSession['turn']>[0], 'maxNewTokens'>, maxNewTokens: number) {
  const session = new ChatSession(m.model, m.tokenizer, { stopIds: m.stopIds });
  try {
    const it = session.turn({ ...req, maxNewTokens });
    let r = await it.next();
    while (!r.done) r = await it.next();
    return r.value;
  } finally {
    session.dispose();
  }
}

/** The Node library's greedy answers (Dawn), as the page is set up below; picks a question whose answer Stop can interrupt. */
async function answerInNode(): Promise<void> {
  const m = await loadModel(model);
  try {
    for (const c of CASES) nodeAnswers.set(c.name, (await nodeAnswer(m, { question: c.question, ...c.node }, MAX_NEW)).answer);
    for (const q of STOP_CANDIDATES) {
      const r = await nodeAnswer(m, { question: q }, STOP_MAX_NEW);
      if (r.stats.stop === 'max-new-tokens') {
        stopQuestion = q;
        nodeAnswers.set('stop', r.answer);
        break;
      }
    }
  } finally {
    m.dispose();
  }
  const q4 = await loadModel(model, { dtype: 'q4', quantCache: { dir: nodeQ4Cache } });
  try {
    nodeAnswers.set('q4', (await nodeAnswer(q4, { question: Q4_QUESTION }, MAX_NEW)).answer);
  } finally {
    q4.dispose();
  }
}

/** A quantized cache file's header (the JSON) and the sha256 of its data (the bytes after the header). */
function cacheParts(bytes: Uint8Array): { header: { __metadata__: Record<string, string> }; dataSha256: string } {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  return { header: JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))), dataSha256: createHash('sha256').update(bytes.subarray(8 + n)).digest('hex') };
}

/** The error a browser without --enable-unsafe-webgpu shows when asked to load (kind, text). */
async function withoutWebGpu(): Promise<[string | null, string | null]> {
  const plain = await launch(false);
  try {
    const p = await plain.newPage();
    await p.goto(site.url);
    await loadHub(hub, p);
    await p.waitForSelector('#error:not([hidden])', { timeout: 120_000 });
    return [await p.getAttribute('#error', 'data-kind'), await p.textContent('#error-text')];
  } finally {
    await plain.close();
  }
}

/** The engine's Web Worker (the page starts a new one when it reloads the model). */
const engine = (): Worker => page.workers().at(-1)!;

async function waitForLoad(): Promise<void> {
  await page.waitForSelector('#model-status[data-state=ready], #error:not([hidden])', { timeout: 120_000 });
}

async function expectReady(): Promise<void> {
  await waitForLoad();
  expect(await page.isHidden('#error'), (await page.textContent('#error-text')) ?? '').toBe(true);
}

async function expectError(kind: string): Promise<string> {
  await page.waitForSelector('#error:not([hidden])', { timeout: 120_000 });
  const text = (await page.textContent('#error-text'))!;
  expect(await page.getAttribute('#error', 'data-kind'), text).toBe(kind);
  return text;
}

/** Starts a download of `from`'s repo (the hub fields sit in a closed <details>). */
async function loadHub(from: FakeHub, p = page): Promise<void> {
  if (!(await p.isVisible('#hub-endpoint'))) await p.click('#model-panel details summary');
  await p.fill('#hub-endpoint', from.endpoint);
  await p.fill('#hub-repo', from.repo);
  await p.click('#load-hub');
}

async function setting(id: string, value: number): Promise<void> {
  if (!(await page.isVisible(`#${id}`))) await page.click('#settings summary');
  await page.fill(`#${id}`, String(value));
}

async function send(question: string, files: string[] = []) {
  const before = await page.locator('.assistant').count();
  if (files.length) await page.setInputFiles('#media', files);
  await page.fill('#question', question);
  await page.click('#send');
  return page.locator('.assistant').nth(before);
}

async function ask(question: string, files: string[] = []): Promise<{ text: string; stats: string }> {
  const answer = await send(question, files);
  await answer.and(page.locator('[data-done]')).waitFor({ timeout: 360_000 });
  expect(await answer.getAttribute('data-done'), (await page.textContent('#error-text')) ?? '').toBe('done');
  return { text: (await answer.locator('.text').textContent())!, stats: (await answer.locator('.stats').textContent())! };
}

/** Files of a hub repo's cache folder in the OPFS, by name with their sizes. */
async function cached(repo: string): Promise<Record<string, number>> {
  return page.evaluate(async (repo) => {
    const out: Record<string, number> = {};
    const hubDir = await (await navigator.storage.getDirectory()).getDirectoryHandle('hub');
    const repoDir = await hubDir.getDirectoryHandle(repo.replace(/\//g, '--'));
    for await (const commit of (repoDir as unknown as { values(): AsyncIterable<FileSystemDirectoryHandle> }).values()) {
      for await (const f of (commit as unknown as { values(): AsyncIterable<FileSystemFileHandle> }).values()) out[f.name] = (await f.getFile()).size;
    }
    return out;
  }, repo);
}

/** The quantized copies in the OPFS: path under pvc-cache/, header JSON, sha256 of the data. */
async function opfsCopies(): Promise<{ path: string; header: string; dataSha256: string }[]> {
  return page.evaluate(async () => {
    const out: { path: string; header: string; dataSha256: string }[] = [];
    const top = await (await navigator.storage.getDirectory()).getDirectoryHandle('pvc-cache');
    for await (const [key, dir] of (top as unknown as { entries(): AsyncIterable<[string, FileSystemDirectoryHandle]> }).entries()) {
      for await (const [name, f] of (dir as unknown as { entries(): AsyncIterable<[string, FileSystemFileHandle]> }).entries()) {
        const bytes = new Uint8Array(await (await f.getFile()).arrayBuffer());
        const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
        const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes.subarray(8 + n)));
        out.push({ path: `${key}/${name}`, header: new TextDecoder().decode(bytes.subarray(8, 8 + n)), dataSha256: [...digest].map((b) => b.toString(16).padStart(2, '0')).join('') });
      }
    }
    return out;
  });
}

/** Requests that fetched a file's body (not a HEAD, not a bounded Range read of its headers). */
const bodyFetches = (from: FakeHub, file = '') => from.seen.filter((s) => s.startsWith('GET ') && s.includes('/resolve/') && s.includes(file) && !/bytes=\d+-\d+$/.test(s));

const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

describe.skipIf(!haveChromium())(`the page in headless Chromium (tiny checkpoint seed ${seed})`, () => {
  beforeAll(async () => {
    await writeCheckpoint(model, 'tiny', { seed });
    // Node answers while the browser starts and downloads (the tests that compare await it)
    nodeDone = answerInNode();
    nodeDone.catch(() => {});
    shard = readdirSync(model).filter((f) => f.endsWith('.safetensors')).sort((a, b) => statSync(join(model, b)).size - statSync(join(model, a)).size)[0];
    [hub, badHub, site, browser] = await Promise.all([
      fakeHub(model, 'test-org/tiny-pvc', { cutOnce: { file: shard, at: statSync(join(model, shard)).size >> 1 } }),
      fakeHub(model, 'test-org/corrupted-pvc', { corrupt: shard }),
      startPage(),
      launch(),
    ]);
    page = await browser.newPage();
    page.on('console', (m) => console.log(`[page] ${m.text()}`));
    page.on('pageerror', (e) => console.log(`[page error] ${e.message}`));
    noWebGpu = withoutWebGpu();
    noWebGpu.catch(() => {});
    await page.goto(site.url);
    await page.waitForEvent('worker');
  }, 300_000);

  afterAll(async () => {
    await browser?.close();
    await Promise.all([site?.close(), hub?.close(), badHub?.close()]);
    rmSync(tmp, { recursive: true, force: true });
  });

  it('refuses a download the storage quota cannot hold, saying how much is needed', async () => {
    await engine().evaluate(() => {
      const real = navigator.storage.estimate.bind(navigator.storage);
      Object.assign(self, { realEstimate: real });
      navigator.storage.estimate = async () => ({ quota: 5e6, usage: 1e6 });
    });
    await loadHub(hub);
    const message = await expectError('quota');
    await engine().evaluate(() => void (navigator.storage.estimate = (self as unknown as { realEstimate: StorageManager['estimate'] }).realEstimate));
    // everything the checkpoint has is missing (the downloader takes every file writeCheckpoint writes)
    const need = readdirSync(model).reduce((n, f) => n + statSync(join(model, f)).size, 0);
    const said = /needs ([\d.]+) MB more of browser storage but only ([\d.]+) MB is free/.exec(message);
    expect(said, message).not.toBeNull();
    expect(Math.abs(Number(said![1]) * 1e6 - need)).toBeLessThanOrEqual(0.05e6);
    expect(Number(said![2])).toBe(4);
    expect(bodyFetches(hub)).toEqual([]);
  }, 60_000);

  it('resumes a download cut mid-file with a Range request; the cached file has the hub hash', async () => {
    await engine().evaluate(() => {
      const { requestDevice } = GPUAdapter.prototype;
      GPUAdapter.prototype.requestDevice = async function (desc) {
        const device = await requestDevice.call(this, desc);
        Object.assign(self, { lastDevice: device });
        return device;
      };
    });
    await loadHub(hub);
    expect(await expectError('download')).toMatch(new RegExp(`the download of ${shard} was interrupted at [\\d.]+ MB of [\\d.]+ MB .*try again to resume`));
    await page.click('#load-hub');
    await expectReady();
    const cut = statSync(join(model, shard)).size >> 1;
    const resumed = bodyFetches(hub, shard);
    expect(resumed).toHaveLength(2);
    const from = Number(/bytes=(\d+)-$/.exec(resumed[1])?.[1]);
    expect(from).toBeGreaterThan(0);
    expect(from).toBeLessThanOrEqual(cut);
    const files = await cached(hub.repo);
    expect(Object.keys(files).filter((f) => f.endsWith('.incomplete'))).toEqual([]);
    const inBrowser = await page.evaluate(async ([repo, name]) => {
      const hubDir = await (await navigator.storage.getDirectory()).getDirectoryHandle('hub');
      const repoDir = await hubDir.getDirectoryHandle(repo.replace(/\//g, '--'));
      for await (const commit of (repoDir as unknown as { values(): AsyncIterable<FileSystemDirectoryHandle> }).values()) {
        const bytes = await (await (await commit.getFileHandle(name)).getFile()).arrayBuffer();
        return [...new Uint8Array(await crypto.subtle.digest('SHA-256', bytes))].map((b) => b.toString(16).padStart(2, '0')).join('');
      }
    }, [hub.repo, shard] as const);
    expect(inBrowser).toBe(sha256(join(model, shard)));
  }, 120_000);

  it('a lost device is a message with a reload button; the reload reads the OPFS cache', async () => {
    await engine().evaluate(() => (self as unknown as { lastDevice: GPUDevice }).lastDevice.destroy());
    expect(await expectError('device-lost')).toMatch(/device was lost.*Reload the model/);
    expect(await page.isDisabled('#send')).toBe(true);
    hub.seen.length = 0;
    await page.click('#error-reload');
    await expectReady();
    expect(hub.seen.filter((s) => s.includes('/resolve/'))).toEqual([]);
    expect(await page.getAttribute('#model-status', 'data-downloaded')).toBe('0');
  }, 120_000);

  it('answers one image, two images and the video with the Node library\'s greedy text', async () => {
    await nodeDone;
    await setting('max-new-tokens', MAX_NEW);
    await setting('max-tiles', 4);
    await setting('frames', 8);
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
  }, 600_000);

  it('Stop ends a streaming answer, and the next question is answered', async () => {
    expect(stopQuestion, `every candidate's greedy answer ended before ${STOP_MAX_NEW} tokens`).not.toBe('');
    await page.click('#new-chat');
    await setting('max-new-tokens', STOP_MAX_NEW);
    const answer = await send(stopQuestion);
    await answer.locator('.text').filter({ hasText: /\S/ }).waitFor({ timeout: 120_000 });
    // while it answers, no load and no new conversation can start (they would take the model or the conversation from under it)
    for (const id of ['#load-hub', '#load-url', '#folder', '#dtype', '#new-chat']) expect(await page.isDisabled(id), id).toBe(true);
    await page.click('#stop');
    await answer.and(page.locator('[data-done]')).waitFor({ timeout: 60_000 });
    expect(await answer.getAttribute('data-done')).toBe('stopped');
    expect(Number(await answer.getAttribute('data-new-tokens'))).toBeLessThan(STOP_MAX_NEW);
    expect(await answer.locator('.stats').textContent()).toMatch(/ new \(aborted\)/);
    // Node's greedy answer runs STOP_MAX_NEW tokens: what streamed is a proper beginning of it
    const streamed = (await answer.locator('.text').textContent())!;
    expect(nodeAnswers.get('stop')!.startsWith(streamed), streamed).toBe(true);
    expect(streamed.length).toBeLessThan(nodeAnswers.get('stop')!.length);
    expect(await page.isDisabled('#stop')).toBe(true);
    expect(await page.isDisabled('#load-hub')).toBe(false);
    await setting('max-new-tokens', MAX_NEW);
    const next = await ask('Please go on.');
    expect(next.stats).toMatch(/prompt tokens \(\d+ prefilled\), \d+ new/);
  }, 180_000);

  it('an undecodable image is a message on the page', async () => {
    const bad = join(tmp, 'broken.jpg');
    writeFileSync(bad, Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 4, 5, 6, 7, 8]));
    await page.click('#new-chat');
    // the video sent last, picked again, is attached again (the picker fired no 'change' for it once)
    await page.setInputFiles('#media', [VIDEO]);
    expect(await page.locator('#attachments > *').count()).toBe(1);
    await send('What is this?', [bad]); // images replace an attached video
    expect(await expectError('input')).toMatch(/cannot (read|decode) image .*broken\.jpg: /);
  }, 60_000);

  it('corrupted bytes from the hub: a clear message, and nothing of that file cached', async () => {
    await loadHub(badHub);
    expect(await expectError('download')).toMatch(new RegExp(`${shard}: integrity check failed \\(hash [0-9a-f]{64}, the hub says ${sha256(join(model, shard))}\\)`));
    const files = await cached(badHub.repo);
    expect(Object.keys(files).filter((f) => f.startsWith(shard))).toEqual([]);
  }, 60_000);

  it('adapter limits below the model\'s needs are refused with the numbers', async () => {
    await engine().evaluate(() => {
      const real = Object.getOwnPropertyDescriptor(GPUAdapter.prototype, 'limits')!;
      Object.assign(self, { realLimits: real });
      Object.defineProperty(GPUAdapter.prototype, 'limits', {
        configurable: true,
        get() {
          const limits: Record<string, number> = {};
          const own = real.get!.call(this) as Record<string, number>;
          for (const k in own) limits[k] = own[k];
          return { ...limits, maxStorageBufferBindingSize: 65536, maxBufferSize: 65536 };
        },
      });
    });
    // a download is checked from the hub's config and tensor headers before its bytes are fetched
    badHub.seen.length = 0;
    await loadHub(badHub);
    const before = await expectError('limits');
    expect(bodyFetches(badHub, shard)).toEqual([]);
    expect(badHub.seen.filter((s) => s.includes(shard) && /bytes=\d+-\d+$/.test(s)).length).toBeGreaterThan(0);
    // a cached model, from its OPFS files
    await loadHub(hub);
    const message = await expectError('limits');
    expect(message).toBe(before);
    await engine().evaluate(() => void Object.defineProperty(GPUAdapter.prototype, 'limits', (self as unknown as { realLimits: PropertyDescriptor }).realLimits));
    // the largest activation of one 512-position prefill step or one vision frame, from config.json
    const c = JSON.parse(readFileSync(join(model, 'config.json'), 'utf8'));
    const v = c.vision_config;
    const tokens = 1 + (v.image_size / v.patch_size) ** 2;
    const need = Math.max(512 * c.llm_config.intermediate_size * 4, c.llm_config.vocab_size * 4, tokens * v.intermediate_size * 4, tokens * v.hidden_size * 4);
    expect(message).toMatch(new RegExp(`maxStorageBufferBindingSize is 65536 bytes \\([^)]*\\), the [^;]* needs ${need} bytes`));
    expect(message).toMatch(new RegExp(`maxBufferSize is 65536 bytes \\([^)]*\\), the [^;]* needs ${need} bytes`));
  }, 60_000);

  it('a GPU out-of-memory while loading is a message with the memory the weights need', async () => {
    await engine().evaluate(() => {
      const { pushErrorScope, popErrorScope } = GPUDevice.prototype;
      const scopes = new WeakMap<GPUDevice, string[]>();
      Object.assign(self, { realScopes: { pushErrorScope, popErrorScope } });
      GPUDevice.prototype.pushErrorScope = function (filter) {
        scopes.set(this, [...(scopes.get(this) ?? []), filter]);
        return pushErrorScope.call(this, filter);
      };
      GPUDevice.prototype.popErrorScope = function () {
        const filter = scopes.get(this)!.pop();
        const real = popErrorScope.call(this);
        return filter === 'out-of-memory' ? real.then(() => new GPUOutOfMemoryError('simulated: the GPU has no room')) : real;
      };
    });
    await loadHub(hub);
    const message = await expectError('out-of-memory');
    await engine().evaluate(() => void Object.assign(GPUDevice.prototype, (self as unknown as { realScopes: object }).realScopes));
    expect(message).toMatch(/(allocating \d+ bytes failed|out-of-memory error): simulated: the GPU has no room/);
    // the weights as stored, vectors widened to f32 on the GPU: a little over the shards' bytes
    const said = /The bf16 weights need ([\d.]+) MB of GPU memory \(q4: ([\d.]+) MB\)/.exec(message);
    expect(said, message).not.toBeNull();
    const shards = readdirSync(model).filter((f) => f.endsWith('.safetensors')).reduce((n, f) => n + statSync(join(model, f)).size, 0);
    expect(Number(said![1]) * 1e6).toBeGreaterThan(shards * 0.95);
    expect(Number(said![1]) * 1e6).toBeLessThan(shards * 1.2);
    expect(Number(said![2])).toBeLessThan(Number(said![1]));
  }, 60_000);

  it('loads a checkpoint from a local folder', async () => {
    await page.setInputFiles('#folder', model);
    await expectReady();
    expect(await page.textContent('#model-status')).toMatch(/^Ready: tiny on /);
  }, 60_000);

  it('loads from a folder URL with Range requests', async () => {
    hub.seen.length = 0;
    await page.fill('#model-url', hub.fileUrl(''));
    await page.click('#load-url');
    await expectReady();
    expect(hub.seen.filter((s) => s.includes(shard) && /bytes=\d+-\d+$/.test(s)).length).toBeGreaterThan(0);
  }, 60_000);

  it('q4: with no room for the quantized copy the load goes on without it; with room it quantizes on Web Workers and saves the copy in the OPFS (the bytes Node writes), and the next load reads it and answers with Node\'s q4 text', async () => {
    await nodeDone;
    await page.selectOption('#dtype', 'q4');
    // a quota without room for the copy: the load quantizes and goes on without writing one
    await engine().evaluate(() => {
      Object.assign(self, { realEstimate: navigator.storage.estimate.bind(navigator.storage) });
      navigator.storage.estimate = async () => ({ quota: 5e6, usage: 4e6 });
    });
    await loadHub(hub);
    await expectReady();
    expect(await page.getAttribute('#model-status', 'data-quant-cache')).toBe('none');
    expect(await page.textContent('#model-status')).toMatch(/Quantized copy: not written \(OPFS pvc-cache\/[0-9a-f]{16}: it needs [\d.]+ MB of browser storage and 1\.0 MB is free\)/);
    await engine().evaluate(() => void (navigator.storage.estimate = (self as unknown as { realEstimate: StorageManager['estimate'] }).realEstimate));

    await page.click('#load-hub');
    await expectReady();
    expect(await page.getAttribute('#model-status', 'data-quant-cache'), (await page.textContent('#model-status')) ?? '').toBe('written');
    // quantized on nested Web Workers (the cores but one, at least one)
    const cores = await engine().evaluate(() => navigator.hardwareConcurrency);
    expect(await page.textContent('#model-status')).toContain(`(quantized on ${Math.max(1, cores - 1)} worker`);
    const firstBytes = Number(await page.getAttribute('#model-status', 'data-bytes'));
    // the OPFS holds one copy, under pvc-cache/KEY/
    const files = await opfsCopies();
    expect(files.map((f) => f.path)).toEqual([expect.stringMatching(new RegExp(`^[0-9a-f]{16}/${escaped(Q4_COPY)}$`))]);
    const inPage = { header: JSON.parse(files[0].header), dataSha256: files[0].dataSha256 };
    const inNode = cacheParts(readFileSync(join(nodeQ4Cache, Q4_COPY)));
    // the same quantized rows and tensor hashes; the fingerprints differ only where Node records mtimes
    expect(inPage.dataSha256).toBe(inNode.dataSha256);
    expect(inPage.header.__metadata__.tensors).toBe(inNode.header.__metadata__.tensors);
    const withoutTimes = (sources: string) => JSON.stringify(JSON.parse(sources).map((f: Record<string, unknown>) => ({ ...f, mtimeMs: undefined })));
    expect(withoutTimes(inPage.header.__metadata__.sources)).toBe(withoutTimes(inNode.header.__metadata__.sources));
    expect(JSON.parse(inPage.header.__metadata__.sources).every((f: Record<string, unknown>) => !('mtimeMs' in f))).toBe(true);

    await page.click('#load-hub');
    await expectReady();
    expect(await page.getAttribute('#model-status', 'data-quant-cache')).toBe('read');
    expect(await page.textContent('#model-status')).toMatch(new RegExp(`Quantized copy: read from OPFS pvc-cache/[0-9a-f]{16}/${escaped(Q4_COPY)}\\.`));
    // the quantized weights come from the copy: fewer bytes than the checkpoint's bf16 ones
    expect(Number(await page.getAttribute('#model-status', 'data-bytes'))).toBeLessThan(firstBytes);
    await page.click('#new-chat');
    await setting('max-new-tokens', MAX_NEW);
    expect((await ask(Q4_QUESTION)).text).toBe(nodeAnswers.get('q4'));

    // another checkpoint's q4 copy replaces this one: one copy per format
    const other = join(tmp, 'tiny-other');
    await writeCheckpoint(other, 'tiny', { seed: seed + 1 });
    await page.setInputFiles('#folder', other);
    await expectReady();
    expect(await page.getAttribute('#model-status', 'data-quant-cache')).toBe('written');
    const after = (await opfsCopies()).map((f) => f.path);
    expect(after).toEqual([expect.stringMatching(new RegExp(`^[0-9a-f]{16}/${escaped(Q4_COPY)}$`))]);
    expect(after[0]).not.toBe(files[0].path);
  }, 600_000);

  it('without --enable-unsafe-webgpu the page says there is no WebGPU', async () => {
    const [kind, text] = await noWebGpu;
    expect(kind).toBe('no-webgpu');
    expect(text).toMatch(/no adapter is available|no WebGPU/);
  }, 120_000);
});
