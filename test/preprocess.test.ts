// Image preprocessing parity with PIL 9.4 (test/pil_ref.py, run by /usr/bin/python3): candidate
// grid order, bit-exact bicubic resize, decode + dynamic tiling on many formats and awkward sizes,
// float32 normalisation, and clear errors.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeImage, MAX_PIXELS } from '../src/preprocess/decode.js';
import { closestGrid, dynamicPreprocess, loadImage, MAX_TILES, normalizeTiles, targetRatios } from '../src/preprocess/image.js';
import { resizeBicubic, type RgbImage } from '../src/preprocess/resize.js';
import { freshSeed, rng, SHARED } from './util.js';

const ASSETS = join(SHARED, 'assets');
const dir = mkdtempSync(join(tmpdir(), 'pvc-preprocess-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function py<T = unknown>(request: object): T {
  const out = execFileSync('/usr/bin/python3', [join(import.meta.dirname, 'pil_ref.py')], {
    input: JSON.stringify(request),
    maxBuffer: 1 << 26,
  });
  return JSON.parse(out.toString()) as T;
}

/** Max abs difference and count of differing bytes. */
function diff(got: Uint8Array, want: Uint8Array): { max: number; count: number } {
  expect(got.length).toBe(want.length);
  let max = 0;
  let count = 0;
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (d) count++;
    if (d > max) max = d;
  }
  return { max, count };
}

describe('candidate grids', () => {
  it('match CPython set order + stable sort for max_num 1..40', () => {
    for (const minNum of [1, 2, 3]) {
      const want = py<Record<string, [number, number][]>>({ op: 'ratios', minNum, maxNum: 40 });
      for (let n = minNum; n <= 40; n++) expect(targetRatios(minNum, n), `min ${minNum} max ${n}`).toEqual(want[n]);
    }
  });

  it('stay cheap up to MAX_TILES and match CPython there; more tiles are refused at once (issue 10 item 4)', () => {
    for (const [minNum, maxNum] of [[1, 256], [7, 150]]) {
      const want = py<Record<string, [number, number][]>>({ op: 'ratios', minNum, only: [maxNum] });
      const t0 = performance.now();
      const got = targetRatios(minNum, maxNum);
      expect(performance.now() - t0, `${minNum}..${maxNum}`).toBeLessThan(1000);
      expect(got, `min ${minNum} max ${maxNum}`).toEqual(want[maxNum]);
    }
    const img: RgbImage = { width: 30, height: 20, data: new Uint8Array(1800) };
    const t0 = performance.now();
    expect(() => dynamicPreprocess(img, { maxTiles: 100_000 })).toThrow(/max tiles 100000 is above the limit of 256 tiles per image/);
    expect(MAX_TILES).toBe(256);
    expect(performance.now() - t0).toBeLessThan(100);
    expect(() => dynamicPreprocess(img, { maxTiles: 200, imageSize: 2048 })).toThrow(/201 tiles of 2048x2048 need 9648 MiB of pixel values; the limit is 1024 MiB/);
  });

  it('match the orders written in pvc-architecture.md 9.1', () => {
    const fmt = (r: [number, number][]) => r.map(([i, j]) => `(${i},${j})`).join(',');
    expect(fmt(targetRatios(1, 12))).toBe(
      '(1,1),(1,2),(2,1),(3,1),(1,3),(2,2),(4,1),(1,4),(5,1),(1,5),(1,6),(6,1),(3,2),(2,3),(7,1),(1,7),(4,2),(2,4),' +
        '(1,8),(8,1),(1,9),(3,3),(9,1),(2,5),(5,2),(10,1),(1,10),(11,1),(1,11),(12,1),(3,4),(4,3),(1,12),(6,2),(2,6)',
    );
    expect(fmt(targetRatios(1, 6))).toBe('(1,1),(1,2),(2,1),(3,1),(1,3),(4,1),(1,4),(2,2),(1,5),(5,1),(6,1),(2,3),(1,6),(3,2)');
  });

  it('tie-break moves a square image to larger grids as its area grows', () => {
    const r = targetRatios(1, 12);
    expect(closestGrid(448, 448, r, 448)).toEqual([1, 1]);
    expect(closestGrid(700, 700, r, 448)).toEqual([2, 2]); // 490000 > 0.5 * 448^2 * 4
    expect(closestGrid(1000, 1000, r, 448)).toEqual([3, 3]); // > 0.5 * 448^2 * 9
  });
});

describe('resizeBicubic', () => {
  it('is bit-exact with PIL Image.resize(BICUBIC) on raw RGB', () => {
    const seed = freshSeed();
    const rand = rng(seed);
    const r = (a: number, b: number) => a + Math.floor(rand() * (b - a + 1));
    const cases: [number, number, number, number][] = [
      [1, 1, 1, 1], [1, 1, 7, 5], [1, 2000, 448, 5376], [2000, 1, 5376, 448], [4000, 3, 17, 1], [3, 4000, 1, 9],
      [37, 91, 448, 448], [1000, 747, 1792, 1344], [1000, 747, 448, 448], [600, 450, 600, 211], [600, 450, 97, 450],
      [449, 447, 448, 448], [5, 5, 1, 1], [2, 3, 3, 2],
    ];
    for (let i = 0; i < 12; i++) cases.push([r(1, 300), r(1, 300), r(1, 500), r(1, 500)]);
    const jobs = cases.map(([width, height, outWidth, outHeight], i) => {
      const data = new Uint8Array(width * height * 3);
      for (let k = 0; k < data.length; k++) data[k] = Math.floor(rand() * 256);
      writeFileSync(join(dir, `rs${i}.in`), data);
      return { in: join(dir, `rs${i}.in`), out: join(dir, `rs${i}.out`), width, height, outWidth, outHeight, data };
    });
    py({ op: 'resize', jobs: jobs.map(({ data: _, ...j }) => j) });
    for (const j of jobs) {
      const got = resizeBicubic({ width: j.width, height: j.height, data: j.data }, j.outWidth, j.outHeight);
      const d = diff(got.data, readFileSync(j.out));
      expect(d.count, `seed ${seed}: ${j.width}x${j.height} -> ${j.outWidth}x${j.outHeight}`).toBe(0);
    }
  });

  it('rejects bad sizes and malformed images', () => {
    const img: RgbImage = { width: 2, height: 2, data: new Uint8Array(12) };
    expect(() => resizeBicubic(img, 0, 5)).toThrow(/positive integers/);
    expect(() => resizeBicubic(img, 2.5, 5)).toThrow(/positive integers/);
    expect(() => resizeBicubic({ width: 2, height: 2, data: new Uint8Array(11) }, 3, 3)).toThrow(/expected 2x2x3/);
  });
});

describe('decode + dynamic tiling vs PIL', () => {
  it('decoded RGB and uint8 tiles match PIL (formats, modes, awkward sizes)', { timeout: 60_000 }, async () => {
    const seed = freshSeed();
    const files = py<{ name: string }[]>({ op: 'gen', dir, seed: seed % 2 ** 31 }).map((f) => join(dir, f.name));
    const assets = ['example_image1.jpg', 'example_image2.jpg'].map((f) => join(ASSETS, f));
    type Job = { path: string; maxNum: number; size: number; thumbnail: boolean };
    const jobs: Job[] = [
      ...assets.map((path) => ({ path, maxNum: 12, size: 448, thumbnail: true })),
      { path: assets[0], maxNum: 6, size: 448, thumbnail: true },
      { path: assets[1], maxNum: 40, size: 64, thumbnail: false },
      ...files.map((path) => ({ path, maxNum: 12, size: 448, thumbnail: true })),
      ...files.slice(0, 6).map((path) => ({ path, maxNum: 24, size: 28, thumbnail: true })),
    ];
    const want = py<{ width: number; height: number; grid: [number, number]; count: number }[]>({
      op: 'tiles',
      jobs: jobs.map((j, i) => ({ ...j, out: join(dir, `tiles${i}.bin`) })),
    });
    let decodeDiffs = 0;
    let tileBytes = 0;
    let tileDiffs = 0;
    let tileMax = 0;
    for (const [i, job] of jobs.entries()) {
      const name = `${job.path.split('/').pop()} (max ${job.maxNum}, S ${job.size}, seed ${seed})`;
      const ref = readFileSync(join(dir, `tiles${i}.bin`));
      const img = await decodeImage(readFileSync(job.path));
      expect([img.width, img.height], name).toEqual([want[i].width, want[i].height]);
      const decoded = diff(img.data, ref.subarray(0, img.data.length));
      expect(decoded.max, `decode ${name}`).toBeLessThanOrEqual(1);
      decodeDiffs += decoded.count;
      const { grid, tiles } = dynamicPreprocess(img, { maxTiles: job.maxNum, imageSize: job.size, useThumbnail: job.thumbnail });
      expect(grid, name).toEqual(want[i].grid);
      expect(tiles.length, name).toBe(want[i].count);
      const got = new Uint8Array(tiles.length * job.size * job.size * 3);
      tiles.forEach((t, k) => got.set(t.data, k * t.data.length));
      const d = diff(got, ref.subarray(img.data.length));
      expect(d.max, name).toBeLessThanOrEqual(1);
      tileBytes += got.length;
      tileDiffs += d.count;
      tileMax = Math.max(tileMax, d.max);
    }
    console.log(`decode vs PIL: ${decodeDiffs} differing bytes; tiles vs PIL: ${jobs.length} jobs, ${tileBytes} bytes, max abs diff ${tileMax}, differing ${tileDiffs} (${(tileDiffs / tileBytes).toExponential(2)})`);
  });

  it('normalised pixel values equal torchvision float32 arithmetic', async () => {
    const bytes = readFileSync(join(ASSETS, 'example_image1.jpg'));
    const pv = await loadImage(bytes, { maxTiles: 6 });
    const { tiles } = dynamicPreprocess(await decodeImage(bytes), { maxTiles: 6 });
    expect(pv.shape).toEqual([tiles.length, 3, 448, 448]);
    expect(pv.grid).toEqual([3, 2]);
    const raw = new Uint8Array(tiles.length * 448 * 448 * 3);
    tiles.forEach((t, k) => raw.set(t.data, k * t.data.length));
    writeFileSync(join(dir, 'norm.in'), raw);
    py({ op: 'normalize', in: join(dir, 'norm.in'), out: join(dir, 'norm.out'), size: 448 });
    const f = readFileSync(join(dir, 'norm.out'));
    const want = new Float32Array(f.buffer, f.byteOffset, f.length / 4);
    let mismatches = 0;
    for (let i = 0; i < want.length; i++) if (pv.data[i] !== want[i]) mismatches++;
    expect(mismatches).toBe(0);
  });
});

/** A PNG signature + IHDR chunk (valid CRC) claiming the given size, then nothing. */
function pngHeader(width: number, height: number): Uint8Array {
  const ihdr = Buffer.alloc(17);
  ihdr.write('IHDR', 0, 'latin1');
  ihdr.writeUInt32BE(width, 4);
  ihdr.writeUInt32BE(height, 8);
  ihdr.set([8, 2, 0, 0, 0], 12);
  let crc = ~0;
  for (const byte of ihdr) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = (crc >>> 1) ^ (0xedb88320 & -(crc & 1));
  }
  const tail = Buffer.alloc(4);
  tail.writeUInt32BE(~crc >>> 0);
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]), ihdr, tail]);
}

describe('decode errors', () => {
  it('rejects empty, unknown, truncated and oversized images clearly', async () => {
    await expect(decodeImage(new Uint8Array(0))).rejects.toThrow(/empty image data/);
    await expect(decodeImage(new TextEncoder().encode('hello world, not an image'))).rejects.toThrow(/unrecognised image format/);
    const jpeg = readFileSync(join(ASSETS, 'example_image1.jpg'));
    await expect(decodeImage(jpeg.subarray(0, jpeg.length >> 1))).rejects.toThrow(/cannot decode jpeg image/);
    await expect(decodeImage(jpeg.subarray(0, 40))).rejects.toThrow(/jpeg file is truncated in its header/);
    await expect(decodeImage(pngHeader(20000, 20000))).rejects.toThrow(/20000x20000 = 400.0 megapixels; the limit is 100/);
    // A real JPEG whose SOF marker is patched to claim 60000x60000.
    const big = Buffer.from(jpeg);
    const sof = big.findIndex((b, k) => b === 0xff && (big[k + 1] === 0xc0 || big[k + 1] === 0xc2));
    big.writeUInt16BE(60000, sof + 5);
    big.writeUInt16BE(60000, sof + 7);
    await expect(decodeImage(big)).rejects.toThrow(/jpeg image is 60000x60000 = 3600.0 megapixels/);
    const gif = Buffer.from('GIF89a\xff\xff\xff\xff\x00\x00\x00', 'latin1');
    await expect(decodeImage(gif)).rejects.toThrow(/gif screen is 65535x65535/);
    // A 21x13 frame whose LZW minimum code size is 128: the decoder shifts by it unchecked and, on
    // some data, never ends (the image fuzz hung on such a file, seed 1798548347).
    const lzw128 = Buffer.from([...Buffer.from('GIF89a'), 21, 0, 13, 0, 0, 0, 0, 0x2c, 0, 0, 0, 0, 21, 0, 13, 0, 0, 128, 6, 7, 10, 10, 24, 16, 64, 0, 0x3b]);
    await expect(decodeImage(lzw128)).rejects.toThrow(/gif LZW minimum code size 128 is not supported/);
    // 2x2, 2-bit codes: clear, then the next free code (6) before any string exists, a literal, 6
    // again. gifuct-js's decoder made code 6 its own prefix and grew a stack until the heap ran out.
    const selfPrefix = Buffer.from([...Buffer.from('GIF89a'), 2, 0, 2, 0, 0x80, 0, 0, 0, 0, 0, 255, 255, 255, 0x2c, 0, 0, 0, 0, 2, 0, 2, 0, 0, 2, 2, 0x74, 0x0c, 0, 0x3b]);
    await expect(decodeImage(selfPrefix)).rejects.toThrow(/gif LZW data is corrupt \(code 6 where 6 codes are defined\)/);
    const bmp = Buffer.alloc(54);
    bmp.write('BM', 0, 'latin1');
    bmp.writeUInt32LE(40, 14);
    bmp.writeInt32LE(30000, 18);
    bmp.writeInt32LE(-30000, 22);
    await expect(decodeImage(bmp)).rejects.toThrow(/bmp image is 30000x30000/);
    expect(MAX_PIXELS).toBe(100_000_000);
  });

  it('rejects bad tiling options', () => {
    const img: RgbImage = { width: 3, height: 2, data: new Uint8Array(18) };
    expect(() => dynamicPreprocess(img, { maxTiles: 0 })).toThrow(/1 <= minTiles <= maxTiles/);
    expect(() => dynamicPreprocess(img, { imageSize: 0 })).toThrow(/imageSize must be a positive integer/);
    expect(() => normalizeTiles([img], 448)).toThrow(/expected 448x448/);
  });
});
