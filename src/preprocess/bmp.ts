// BMP to RGB exactly as PIL 9.4 reads it (BmpImagePlugin + Image.convert('RGB')): OS/2 v1 and
// Windows v3/v4/v5 (and 64-byte OS/2 v2) headers, 1/4/8-bit palettes (gray palettes become L or 1,
// indices past the palette read PIL's gray ramp), 16-bit 5-5-5 and 5-6-5, 24-bit, 32-bit with the
// bitfield layouts PIL knows, RLE8 / RLE4 with PIL's own run, delta and row-overflow handling,
// top-down rows and any pixel data offset. Variants PIL refuses or misreads are refused by name.
// Written by hand because no BMP library reproduces PIL's choices (decode-bmp mis-decodes several).

import { bmpInfo, checkSize, HeaderReader } from './header.js';
import type { RgbImage } from './resize.js';

const RAW = 0;
const RLE8 = 1;
const RLE4 = 2;
const BITFIELDS = 3;

/** PIL's rawmodes: how one pixel's bytes map to R, G, B (alpha and padding are dropped). */
type PixelLayout = 'palette' | 'BGR;15' | 'BGR;16' | 'BGR' | 'BGRX' | 'XBGR' | 'ABGR' | 'RGBA' | 'BGRA';

/** Bitfield masks (r, g, b, a) PIL accepts in 32-bit files, and the layout each means. */
const MASKS_32: [string, PixelLayout][] = [
  ['ff0000,ff00,ff,0', 'BGRX'],
  ['ff000000,ff0000,ff00,0', 'XBGR'],
  ['ff000000,ff0000,ff00,ff', 'ABGR'],
  ['ff,ff00,ff0000,ff000000', 'RGBA'],
  ['ff0000,ff00,ff,ff000000', 'BGRA'],
  ['0,0,0,0', 'BGRA'],
];
const MASKS_24: [string, PixelLayout][] = [['ff0000,ff00,ff', 'BGR']];
const MASKS_16: [string, PixelLayout][] = [
  ['f800,7e0,1f', 'BGR;16'],
  ['7c00,3e0,1f', 'BGR;15'],
];

export function decodeBmp(bytes: Uint8Array): RgbImage {
  const r = new HeaderReader(bytes, 'bmp', true);
  const info = bmpInfo(r);
  const { headerSize, width, height, bits } = info;
  checkSize('bmp', width, height);
  const compression = headerSize === 12 ? RAW : info.compression;
  let pos = 14 + headerSize; // where PIL's file pointer is after the header
  let offset = r.u32le(10);

  let layout: PixelLayout;
  if (compression === BITFIELDS) {
    // 40-byte headers keep r, g, b masks after the header; longer ones inside it (same offsets).
    const masks = [r.u32le(54), r.u32le(58), r.u32le(62), headerSize >= 56 ? r.u32le(66) : 0];
    if (headerSize < 56) pos += 12;
    const key = (n: number) => masks.slice(0, n).map((m) => m.toString(16)).join(',');
    const table = bits === 32 ? MASKS_32 : bits === 24 ? MASKS_24 : bits === 16 ? MASKS_16 : [];
    const found = table.find(([k]) => k === key(bits === 32 ? 4 : 3));
    if (!found) throw new Error(`bmp bitfields layout ${bits}-bit with masks ${key(4)} is not supported`);
    layout = found[1];
  } else if (compression === RAW || compression === RLE8 || compression === RLE4) {
    const rawLayout: Record<number, PixelLayout> = { 1: 'palette', 4: 'palette', 8: 'palette', 16: 'BGR;15', 24: 'BGR', 32: 'BGRX' };
    if (!(bits in rawLayout)) throw new Error(`bmp with ${bits} bits per pixel is not supported (1, 4, 8, 16, 24, 32 are)`);
    layout = rawLayout[bits];
    if (compression !== RAW && layout !== 'palette') throw new Error(`bmp ${compression === RLE8 ? 'RLE8' : 'RLE4'} compression with ${bits} bits per pixel is not supported`);
  } else {
    const names: Record<number, string> = { 4: 'JPEG', 5: 'PNG', 6: 'alpha bitfields' };
    throw new Error(`bmp compression ${compression}${names[compression] ? ` (${names[compression]})` : ''} is not supported`);
  }

  const colors = info.colors || 2 ** bits;
  if (offset === 14 + headerSize && bits <= 8) offset += 4 * colors;

  // Palette: PIL turns a pure gray ramp into L (or black/white into 1) and otherwise keeps P,
  // whose entries past the file's palette are PIL's default gray ramp.
  const lut = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) lut.fill(i, i * 3, i * 3 + 3);
  let mode: 'P' | 'L' | '1' | 'RGB' = 'RGB';
  if (layout === 'palette') {
    if (!(colors > 0 && colors <= 65536)) throw new Error(`bmp palette of ${colors} colours is not supported`);
    const entry = headerSize === 12 ? 3 : 4;
    const palette = bytes.subarray(pos, pos + entry * colors);
    pos += entry * colors;
    const levels = colors === 2 ? [0, 255] : Array.from({ length: colors }, (_, i) => i);
    const gray = levels.every((v, i) => palette.length >= i * entry + 3 && palette[i * entry] === v && palette[i * entry + 1] === v && palette[i * entry + 2] === v);
    mode = gray ? (colors === 2 ? '1' : 'L') : 'P';
    if (compression === RAW && ((mode === '1' && bits !== 1) || (mode === 'L' && bits !== 8))) {
      throw new Error(`bmp with ${bits}-bit pixels and a ${colors}-entry gray palette is not supported (PIL misreads it)`);
    }
    if (compression !== RAW && mode === '1') throw new Error('bmp RLE with a black-and-white palette is not supported (PIL cannot read it)');
    if (mode === 'P') {
      const n = Math.min(colors, 256, Math.floor(palette.length / entry));
      for (let i = 0; i < n; i++) {
        lut[i * 3] = palette[i * entry + 2];
        lut[i * 3 + 1] = palette[i * entry + 1];
        lut[i * 3 + 2] = palette[i * entry];
      }
    }
  }
  const start = offset || pos;
  const rle = compression === RLE8 || compression === RLE4;
  const rows = rle ? rleRows(bytes, start, width, height, compression === RLE4) : rawRows(bytes, start, width, height, bits);

  const write = pixelWriter(layout, mode, lut, rows.indexAt);
  const out = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const src = rows.row(y);
    const dst = (info.topDown ? y : height - 1 - y) * width * 3;
    for (let x = 0; x < width; x++) write(out, dst + x * 3, src, x);
  }
  return { width, height, data: out };
}

interface Rows {
  /** Bytes of stored row y (y = 0 first in the file). */
  row(y: number): Uint8Array;
  /** Palette index of pixel x in a row. */
  indexAt(row: Uint8Array, x: number): number;
}

function rawRows(bytes: Uint8Array, start: number, width: number, height: number, bits: number): Rows {
  const stride = ((width * bits + 31) >>> 3) & ~3;
  const used = Math.ceil((width * bits) / 8);
  if (start + stride * (height - 1) + used > bytes.length) {
    throw new Error(`bmp pixel data is truncated (${height} rows of ${stride} bytes from offset ${start}, file has ${bytes.length} bytes)`);
  }
  const perByte = 8 / bits;
  return {
    row: (y) => bytes.subarray(start + y * stride, start + y * stride + stride),
    indexAt:
      bits === 8 ? (row, x) => row[x] : (row, x) => (row[Math.floor(x / perByte)] >> (8 - bits * ((x % perByte) + 1))) & ((1 << bits) - 1),
  };
}

/** PIL's BmpRleDecoder, step for step, quirks included so that pixels match the reference:
 *  encoded runs stop at the row end, absolute runs may run over it (RLE4 keeps an even number of
 *  their pixels), deltas (whose offsets PIL takes from bytes 3-4 after the escape) and end-of-line
 *  pad with index 0, absolute runs end on an even file position. Too few pixels is an error. */
function rleRows(bytes: Uint8Array, start: number, width: number, height: number, rle4: boolean): Rows {
  const total = width * height;
  const data = new Uint8Array(total);
  let len = 0;
  const push = (v: number) => {
    if (len < total) data[len] = v;
    len++;
  };
  let x = 0;
  let p = start;
  while (len < total) {
    if (p + 2 > bytes.length) break;
    let count = bytes[p];
    const byte = bytes[p + 1];
    p += 2;
    if (count) {
      if (x + count > width) count = Math.max(0, width - x);
      for (let i = 0; i < count; i++) push(rle4 ? (i % 2 === 0 ? byte >> 4 : byte & 15) : byte);
      x += count;
    } else if (byte === 0) {
      while (len % width !== 0) push(0);
      x = 0;
    } else if (byte === 1) {
      break;
    } else if (byte === 2) {
      // PIL 9.4 reads two bytes, then the offsets from the two after them (it skips four).
      if (p + 2 > bytes.length) break;
      if (p + 4 > bytes.length) throw new Error('bmp RLE delta is cut off');
      const skip = bytes[p + 2] + bytes[p + 3] * width;
      p += 4;
      for (let i = 0; i < skip && len < total; i++) push(0);
      x = len % width;
    } else {
      const n = rle4 ? byte >> 1 : byte;
      const got = Math.min(n, bytes.length - p);
      for (let i = 0; i < got; i++) {
        if (rle4) {
          push(bytes[p + i] >> 4);
          push(bytes[p + i] & 15);
        } else push(bytes[p + i]);
      }
      p += got;
      if (got < n) break;
      x += byte;
      if (p % 2 !== 0) p++;
    }
  }
  if (len < total) throw new Error(`bmp ${rle4 ? 'RLE4' : 'RLE8'} data ends after ${len} of ${total} pixels`);
  return { row: (y) => data.subarray(y * width, (y + 1) * width), indexAt: (row, x) => row[x] };
}

/** Writes pixel x of a stored row as RGB at out[o]; chosen once per image. */
type PixelWriter = (out: Uint8Array, o: number, row: Uint8Array, x: number) => void;

function pixelWriter(layout: PixelLayout, mode: 'P' | 'L' | '1' | 'RGB', lut: Uint8Array, indexAt: Rows['indexAt']): PixelWriter {
  const put = (out: Uint8Array, o: number, r: number, g: number, b: number) => {
    out[o] = r;
    out[o + 1] = g;
    out[o + 2] = b;
  };
  if (layout === 'palette') {
    if (mode === 'P') {
      return (out, o, row, x) => {
        const i = indexAt(row, x) * 3;
        put(out, o, lut[i], lut[i + 1], lut[i + 2]);
      };
    }
    const level = mode === '1' ? (v: number) => (v ? 255 : 0) : (v: number) => v;
    return (out, o, row, x) => out.fill(level(indexAt(row, x)), o, o + 3);
  }
  if (layout === 'BGR;15' || layout === 'BGR;16') {
    // PIL's unpackers: each field scaled by 255 / (2^bits - 1) with integer division.
    const gBits = layout === 'BGR;16' ? 6 : 5;
    const gMax = (1 << gBits) - 1;
    return (out, o, row, x) => {
      const px = row[x * 2] | (row[x * 2 + 1] << 8);
      const scale = (v: number, max: number) => Math.floor((v * 255) / max);
      put(out, o, scale((px >> (5 + gBits)) & 31, 31), scale((px >> 5) & gMax, gMax), scale(px & 31, 31));
    };
  }
  if (layout === 'BGR') return (out, o, row, x) => put(out, o, row[x * 3 + 2], row[x * 3 + 1], row[x * 3]);
  // byte positions of R, G, B within a 4-byte pixel
  const [ri, gi, bi] = { BGRX: [2, 1, 0], BGRA: [2, 1, 0], XBGR: [3, 2, 1], ABGR: [3, 2, 1], RGBA: [0, 1, 2] }[layout];
  return (out, o, row, x) => put(out, o, row[x * 4 + ri], row[x * 4 + gi], row[x * 4 + bi]);
}
