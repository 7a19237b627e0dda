// Browser input paths against the independent references, in headless Chromium:
// - images decoded by src/browser/decode.ts (createImageBitmap) vs PIL's Image.open().convert('RGB')
//   on the shared example images and awkward generated ones (alpha, gray, 16-bit, palette, 4:4:4,
//   progressive, EXIF-rotated, WebP): every channel of every pixel identical (TOLERANCE 0);
// - video frames from src/browser/video.ts (mp4box.js + WebCodecs) at get_index's indices vs the
//   rgb24 frames ffmpeg decodes for the Node path (same frame count, fps, indices; identical bytes).
// - a file read over HTTP with Range requests (HttpSource, the page's folder-URL source) in uneven
//   pieces, read last first: its sha256 equals the file's.
// Also the YUV -> RGB converter alone against ffmpeg's rgb24 of its own yuv420p frames (no browser).

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { i420ToRgb } from '../../src/browser/video.js';
import { decodeFrames, frameIndices, probeVideo } from '../../src/preprocess/video.js';
import { SHARED } from '../util.js';
import { fakeHub, haveChromium, launch, ROOT, startPage, type FakeHub } from './harness.js';

const ASSETS = join(SHARED, 'assets');
const VIDEO = join(ASSETS, 'example_video.mp4');
/** levels (of 255) a browser-decoded channel may differ from PIL's (measured maxima are logged) */
const TOLERANCE = 0;

const tmp = mkdtempSync(join(tmpdir(), 'browser-inputs-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The frames at `indices` (ascending) as ffmpeg decodes them, concatenated, in one decoding pass. */
function ffmpegFrames(indices: number[], pixFmt: 'yuv420p' | 'rgb24'): Buffer {
  const select = indices.map((i) => `eq(n\\,${i})`).join('+');
  return execFileSync('ffmpeg', ['-v', 'error', '-nostdin', '-noautorotate', '-i', VIDEO, '-map', '0:v:0', '-vf', `select='${select}'`, '-fps_mode', 'passthrough', '-f', 'rawvideo', '-pix_fmt', pixFmt, 'pipe:1'], { maxBuffer: 1 << 26 });
}

describe('YUV 4:2:0 -> RGB as ffmpeg converts it', () => {
  it('matches ffmpeg rgb24 bit for bit on frames of the example video', async () => {
    const { width, height } = await probeVideo(VIDEO);
    const indices = [0, 7, 450];
    const cw = (width + 1) >> 1;
    const ch = (height + 1) >> 1;
    const yuvSize = width * height + 2 * cw * ch;
    const rgbSize = width * height * 3;
    const [yuvs, rgbs] = [ffmpegFrames(indices, 'yuv420p'), ffmpegFrames(indices, 'rgb24')];
    expect([yuvs.length, rgbs.length]).toEqual([indices.length * yuvSize, indices.length * rgbSize]);
    indices.forEach((index, k) => {
      const yuv = yuvs.subarray(k * yuvSize, (k + 1) * yuvSize);
      const rgb = i420ToRgb(yuv.subarray(0, width * height), yuv.subarray(width * height, width * height + cw * ch), yuv.subarray(width * height + cw * ch), width, height);
      expect(Buffer.from(rgb.data).equals(rgbs.subarray(k * rgbSize, (k + 1) * rgbSize)), `frame ${index}`).toBe(true);
    });
  }, 60_000);
});

describe.skipIf(!haveChromium())('browser decoding in headless Chromium', () => {
  let site: Awaited<ReturnType<typeof startPage>>;
  let browser: BrowserContext;
  let page: Page;
  let assets: FakeHub;

  beforeAll(async () => {
    [site, browser, assets] = await Promise.all([startPage(), launch(), fakeHub(ASSETS)]);
    page = await browser.newPage();
    await page.goto(site.url);
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await Promise.all([site?.close(), assets?.close()]);
  });

  /** Runs `fn` in the page with the browser modules loaded; `fn` gets them and `arg`. (The loader is
   *  a string: vitest would rewrite an import() written in this file.) */
  const inPage = <A, R>(fn: (mods: { decode: typeof import('../../src/browser/decode.js'); video: typeof import('../../src/browser/video.js'); fs: typeof import('../../src/browser/fs.js'); source: typeof import('../../src/browser/source.js') }, arg: A) => Promise<R>, arg: A): Promise<R> => {
    const code = `(async (arg) => {
      const load = (p) => import('/@fs${ROOT}/src/browser/' + p + '.ts');
      const mods = { decode: await load('decode'), video: await load('video'), fs: await load('fs'), source: await load('source') };
      return (${fn.toString()})(mods, arg);
    })`;
    return page.evaluate(([code, arg]) => (0, eval)(code as string)(arg), [code, arg] as const) as Promise<R>;
  };

  it('decodes images like PIL', async () => {
    const listing = JSON.parse(execFileSync('/usr/bin/python3', [join(ROOT, 'test/browser/make_images.py'), tmp, join(ASSETS, 'example_image1.jpg'), join(ASSETS, 'example_image2.jpg')]).toString()) as { name: string; width: number; height: number }[];
    const worst: Record<string, number> = {};
    for (const { name, width, height } of listing) {
      const b64 = readFileSync(join(tmp, name)).toString('base64');
      const got = await inPage(
        async ({ decode }, b64: string) => {
          const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
          const img = await decode.decodeImage(bytes);
          let s = '';
          for (let i = 0; i < img.data.length; i += 0x8000) s += String.fromCharCode(...img.data.subarray(i, i + 0x8000));
          return { width: img.width, height: img.height, rgb: btoa(s) };
        },
        b64,
      );
      expect([got.width, got.height], name).toEqual([width, height]);
      const ours = Buffer.from(got.rgb, 'base64');
      const pil = readFileSync(join(tmp, `${name}.rgb`));
      let max = 0;
      for (let i = 0; i < pil.length; i++) max = Math.max(max, Math.abs(ours[i] - pil[i]));
      worst[name] = max;
    }
    console.log('max |browser - PIL| per image (levels):', worst);
    for (const [name, max] of Object.entries(worst)) expect(max, name).toBeLessThanOrEqual(TOLERANCE);
  }, 120_000);

  it('reads a file over HTTP by Range requests exactly (the folder-URL source)', async () => {
    const got = await inPage(
      async ({ source }, url: string) => {
        const src = await source.HttpSource.open(url);
        const all = new Uint8Array(src.size);
        // uneven pieces, last first (each misses the block the previous one fetched), then one more
        // read than is left
        const step = 299_993;
        for (let at = Math.floor((src.size - 1) / step) * step; at >= 0; at -= step) await src.read(all.subarray(at, at + step), at);
        const tail = new Uint8Array(100);
        const short = await src.read(tail, src.size - 10);
        const hash = [...new Uint8Array(await crypto.subtle.digest('SHA-256', all))].map((b) => b.toString(16).padStart(2, '0')).join('');
        return { size: src.size, hash, short };
      },
      assets.fileUrl('example_video.mp4'),
    );
    const bytes = readFileSync(VIDEO);
    expect(got).toEqual({ size: bytes.length, hash: createHash('sha256').update(bytes).digest('hex'), short: 10 });
  }, 60_000);

  it('picks and decodes the same video frames as the Node path (ffmpeg)', async () => {
    const frames = 8;
    const info = await probeVideo(VIDEO);
    const indices = frameIndices(info.frameCount, info.fps, frames);
    const expected = new Map<number, Buffer>();
    await decodeFrames(VIDEO, info, indices, (i, f) => expected.set(i, Buffer.from(f.data)));
    const got = await inPage(
      async ({ video, fs, source }, { url, frames }: { url: string; frames: number }) => {
        // a dropped file, as the page reads videos (HTTP range reading is the page test's folder URL)
        const file = new Blob([await (await fetch(url)).arrayBuffer()]);
        fs.mount('/input/video.mp4', new source.BlobSource('video.mp4', file));
        const out: Record<number, string> = {};
        const r = await video.readFrames('/input/video.mp4', { frames }, (i, f) => {
          let s = '';
          for (let k = 0; k < f.data.length; k += 0x8000) s += String.fromCharCode(...f.data.subarray(k, k + 0x8000));
          out[i] = btoa(s);
        });
        return { ...r, frames: out };
      },
      { url: assets.fileUrl('example_video.mp4'), frames },
    );
    expect(got.info).toEqual(info);
    expect(got.indices).toEqual(indices);
    for (const i of indices) expect(Buffer.from(got.frames[i], 'base64').equals(expected.get(i)!), `frame ${i}`).toBe(true);
  }, 120_000);
});
