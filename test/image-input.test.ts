// Hostile and unusual image input (issue 10 items 1, 3, 20, 21): every declared dimension refused
// before a decoder allocates, header-only file probes that refuse devices and oversized files, and
// BMP variants / every PNG colour type x bit depth x tRNS decoded byte for byte like PIL 9.4's
// Image.open(f).convert('RGB') (test/pil_ref.py) or refused with a message naming the variant.

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeImage } from '../src/preprocess/decode.js';
import { MAX_IMAGE_FILE_BYTES, probeImage, readImageFile } from '../src/preprocess/image-file.js';
import { freshSeed, SHARED } from './util.js';

const dir = mkdtempSync(join(tmpdir(), 'pvc-image-input-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function py<T = unknown>(request: object): T {
  const out = execFileSync('/usr/bin/python3', [join(import.meta.dirname, 'pil_ref.py')], { input: JSON.stringify(request), maxBuffer: 1 << 26 });
  return JSON.parse(out.toString()) as T;
}

const u16le = (v: number) => [v & 255, v >> 8];
const u24le = (v: number) => [v & 255, (v >> 8) & 255, v >> 16];
const u32le = (v: number) => [...u16le(v & 0xffff), ...u16le(v >>> 16)];

/** The 35-byte GIF of the issue: a 1x1 screen whose first frame declares 20000x20000. */
const BOMB_GIF = Uint8Array.from([
  ...Buffer.from('GIF89a'), ...u16le(1), ...u16le(1), 0x80, 0, 0, 0, 0, 0, 255, 255, 255,
  0x2c, ...u16le(0), ...u16le(0), ...u16le(20000), ...u16le(20000), 0, 2, 2, 0x44, 1, 0, 0x3b,
]);

function riff(chunks: [string, number[]][]): Uint8Array {
  const body = chunks.flatMap(([type, data]) => [...Buffer.from(type), ...u32le(data.length), ...data, ...(data.length % 2 ? [0] : [])]);
  return Uint8Array.from([...Buffer.from('RIFF'), ...u32le(body.length + 4), ...Buffer.from('WEBP'), ...body]);
}
/** A VP8 key frame header declaring w x h (no picture data follows). */
const vp8 = (w: number, h: number) => [0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, ...u16le(w), ...u16le(h), 0, 0];
const vp8l = (w: number, h: number) => [0x2f, ...u32le((w - 1) | ((h - 1) << 14)), 0, 0, 0];

describe('every declared dimension is checked before decoding (item 1)', () => {
  const bombs: [string, Uint8Array, RegExp][] = [
    ['gif frame (the 35-byte repro)', BOMB_GIF, /gif frame is 20000x20000 = 400.0 megapixels; the limit is 100/],
    [
      'gif frame placed far outside a small screen',
      Uint8Array.from([...Buffer.from('GIF89a'), ...u16le(2), ...u16le(2), 0, 0, 0, 0x2c, ...u16le(60000), ...u16le(60000), ...u16le(2), ...u16le(2), 0, 2, 2, 0x44, 1, 0, 0x3b]),
      /gif frame extent is 60002x60002/,
    ],
    [
      'gif second frame',
      Uint8Array.from([
        ...Buffer.from('GIF89a'), ...u16le(1), ...u16le(1), 0, 0, 0,
        0x2c, 0, 0, 0, 0, ...u16le(1), ...u16le(1), 0, 2, 2, 0x44, 1, 0,
        0x2c, 0, 0, 0, 0, ...u16le(30000), ...u16le(30000), 0, 2, 2, 0x44, 1, 0, 0x3b,
      ]),
      /gif frame is 30000x30000/,
    ],
    ['webp VP8X canvas', riff([['VP8X', [0, 0, 0, 0, ...u24le(39999), ...u24le(39999)]], ['VP8 ', vp8(16, 16)]]), /webp canvas is 40000x40000/],
    ['webp VP8L bitstream', riff([['VP8L', vp8l(16384, 16384)]]), /webp bitstream is 16384x16384 = 268.4 megapixels/],
    ['webp VP8 bitstream', riff([['VP8 ', vp8(16383, 16383)]]), /webp bitstream is 16383x16383/],
    [
      'webp animation frame',
      riff([['VP8X', [2, 0, 0, 0, ...u24le(99), ...u24le(99)]], ['ANIM', [0, 0, 0, 0, 0, 0]], ['ANMF', [0, 0, 0, 0, 0, 0, ...u24le(19999), ...u24le(19999), 0, 0, 0, 0, ...Buffer.from('VP8L'), ...u32le(8), ...vp8l(16, 16)]]]),
      /webp animation frame is 20000x20000/,
    ],
    ['bmp OS/2 v1 header', Uint8Array.from([...Buffer.from('BM'), ...u32le(26), 0, 0, 0, 0, ...u32le(26), ...u32le(12), ...u16le(65535), ...u16le(65535), 1, 0, 24, 0]), /bmp image is 65535x65535/],
  ];

  it.each(bombs)('%s is refused from its header, in memory and as a file', async (name, bytes, message) => {
    await expect(decodeImage(bytes)).rejects.toThrow(message);
    const path = join(dir, `${name.replace(/\W+/g, '_')}.img`);
    writeFileSync(path, bytes);
    await expect(probeImage(path)).rejects.toThrow(message);
    await expect(readImageFile(path)).rejects.toThrow(message);
  });

  it('probeImage reports format and size like PIL for ordinary files', async () => {
    const seed = freshSeed();
    const sub = join(dir, 'probe');
    mkdirSync(sub);
    const files = py<{ name: string; width: number; height: number }[]>({ op: 'gen', dir: sub, seed: seed % 2 ** 31 });
    for (const f of files) {
      const probe = await probeImage(join(sub, f.name));
      expect([probe.width, probe.height], `${f.name} seed ${seed}`).toEqual([f.width, f.height]);
      expect(probe.format, f.name).toBe({ jpg: 'jpeg' }[f.name.split('.')[1]] ?? f.name.split('.')[1]);
    }
    const assets = ['example_image1.jpg', 'example_image2.jpg'].map((f) => join(SHARED, 'assets', f));
    const img = await decodeImage(readFileSync(assets[1]));
    expect(await probeImage(assets[1])).toMatchObject({ format: 'jpeg', width: img.width, height: img.height });
  });
});

describe('image files: header only, regular files, bounded size (item 3)', () => {
  it('refuses devices, pipes and directories without reading them', async () => {
    await expect(probeImage('/dev/zero')).rejects.toThrow(/\/dev\/zero is not a regular file \(a device, pipe or socket\)/);
    await expect(readImageFile('/dev/zero')).rejects.toThrow(/not a regular file/);
    const fifo = join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    await expect(probeImage(fifo)).rejects.toThrow(/not a regular file/); // would block forever if opened
    await expect(probeImage(dir)).rejects.toThrow(/not a regular file \(a directory\)/);
    await expect(probeImage(join(dir, 'missing.png'))).rejects.toThrow(/ENOENT/);
  });

  it('refuses files over the stated size and reads only the header of large ones', async () => {
    const huge = join(dir, 'huge.bin');
    writeFileSync(huge, 'not an image at all');
    truncateSync(huge, MAX_IMAGE_FILE_BYTES + 1); // sparse: no disk, no memory
    await expect(probeImage(huge)).rejects.toThrow(/huge.bin is 512.0 MiB; image files are limited to 512 MiB/);
    await expect(probeImage(huge, { maxBytes: 2 ** 40 })).rejects.toThrow(/unrecognised image format/);
    // A 400 MB file that starts as a valid PNG: the probe answers from its first bytes.
    const png = join(dir, 'big.png');
    const head = readFileSync(join(SHARED, 'assets/example_image1.jpg'));
    writeFileSync(png, head.subarray(0, 4096));
    truncateSync(png, 400 * 2 ** 20);
    const before = process.memoryUsage().rss;
    const t0 = performance.now();
    const probe = await probeImage(png);
    expect(probe).toMatchObject({ format: 'jpeg', bytes: 400 * 2 ** 20 });
    expect(process.memoryUsage().rss - before).toBeLessThan(50 * 2 ** 20);
    expect(performance.now() - t0).toBeLessThan(2000);
    const empty = join(dir, 'empty.png');
    writeFileSync(empty, '');
    await expect(probeImage(empty)).rejects.toThrow(/empty/);
  });
});

type PilResult = { name: string; width?: number; height?: number; error?: string };

/** Each file decodes exactly like PIL or, where PIL fails, is refused; returns the refused names. */
async function compareWithPil(sub: string, results: PilResult[], seed: number): Promise<string[]> {
  const refused: string[] = [];
  for (const f of results) {
    const bytes = readFileSync(join(sub, f.name));
    const label = `${f.name} (seed ${seed})`;
    let img;
    try {
      img = await decodeImage(bytes);
    } catch (e) {
      refused.push(f.name);
      expect((e as Error).message, label).toMatch(/^(bmp|png|cannot decode png)/);
      continue;
    }
    expect(f.error, `${label}: decoded although PIL refuses it`).toBeUndefined();
    expect([img.width, img.height], label).toEqual([f.width, f.height]);
    expect(Buffer.compare(Buffer.from(img.data), readFileSync(join(sub, `${f.name}.rgb`))), label).toBe(0);
  }
  return refused;
}

describe('decoding like PIL', () => {
  it('BMP variants match PIL byte for byte or are refused by name (item 20)', { timeout: 60_000 }, async () => {
    const seed = freshSeed() % 2 ** 31;
    const sub = join(dir, 'bmp');
    mkdirSync(sub);
    const results = py<PilResult[]>({ op: 'bmp-variants', dir: sub, seed });
    const refused = await compareWithPil(sub, results, seed);
    const decoded = results.filter((f) => !refused.includes(f.name)).map((f) => f.name);
    // Refused only where PIL fails or misreads (gray palettes read as raw levels).
    const pilFails = results.filter((f) => f.error).map((f) => f.name);
    expect(refused.filter((n) => !pilFails.includes(n)).sort()).toEqual(['v3_4bit_gray_palette.bmp', 'v3_8bit_bw_palette.bmp']);
    for (const variant of [
      'rle8_plain_topdown_0', 'rle8_overflow_1', 'rle4_plain_0', 'rle4_overflow_topdown_2', 'v3_16bit.bmp', 'v3_16bit_with_palette',
      'v3_16bit_bitfields_565', 'v3_16bit_bitfields_555_with', 'v5_32bit_bitfields_2', 'v3_32bit_bitfields_1', 'os2v1_8bit', 'os2v1_24bit',
      'os2v2_4bit', 'offset_gap', 'offset_zero', 'offset_at_header', 'indices_past_palette', 'short_palette', 'pil_P',
    ]) {
      expect(decoded.some((n) => n.includes(variant)), variant).toBe(true);
    }
    console.log(`BMP vs PIL (seed ${seed}): ${decoded.length} variants identical, ${refused.length} refused (${pilFails.length} of them refused by PIL too)`);
  });

  it('every PNG colour type x bit depth x tRNS x interlace matches PIL byte for byte (item 21)', { timeout: 60_000 }, async () => {
    const seed = freshSeed() % 2 ** 31;
    const sub = join(dir, 'png');
    mkdirSync(sub);
    const results = py<PilResult[]>({ op: 'png-matrix', dir: sub, seed });
    expect(results.length).toBe(52);
    expect(await compareWithPil(sub, results, seed)).toEqual([]);
  });
});
