// A GIF's first frame to RGB as PIL loads it (GifImagePlugin + convert('RGB')). gifuct-js parses
// the blocks; the LZW decoding is ours because gifuct-js's decoder never ends on some damaged files
// (a code equal to the next free entry right after a clear code becomes its own prefix, and the
// code size is used in shifts unchecked); the image fuzz found both. This one does bounded work
// (every code yields at least one pixel, every string is at most 4096 long) and refuses, like PIL,
// data that ends early or names a code not yet defined.

import { parseGIF } from 'gifuct-js';
import type { RgbImage } from './resize.js';

const MAX_CODES = 4096; // codes are at most 12 bits

/** Decodes a frame's LZW data (its sub-blocks concatenated) into `pixelCount` palette indices. */
export function decodeGifLzw(minCodeSize: number, data: ArrayLike<number>, pixelCount: number): Uint8Array {
  // Palette indices are 8-bit, so no encoder writes a larger minimum code size.
  if (minCodeSize > 8) throw new Error(`gif LZW minimum code size ${minCodeSize} is not supported (at most 8)`);
  const clear = 1 << minCodeSize;
  const end = clear + 1;
  // Each table entry is its prefix entry plus one pixel; `first` and `length` make a string
  // writable back to front in one walk.
  const prefix = new Uint16Array(MAX_CODES);
  const suffix = new Uint8Array(MAX_CODES);
  const first = new Uint8Array(MAX_CODES);
  const length = new Uint16Array(MAX_CODES);
  for (let c = 0; c < clear; c++) {
    suffix[c] = first[c] = c;
    length[c] = 1;
  }
  const out = new Uint8Array(pixelCount);
  let size = minCodeSize + 1;
  let next = clear + 2;
  let prev = -1;
  let n = 0;
  let bitBuffer = 0;
  let bits = 0;
  let at = 0;
  while (n < pixelCount) {
    while (bits < size && at < data.length) {
      bitBuffer |= data[at++] << bits;
      bits += 8;
    }
    if (bits < size) break;
    const code = bitBuffer & ((1 << size) - 1);
    bitBuffer >>>= size;
    bits -= size;
    if (code === clear) {
      size = minCodeSize + 1;
      next = clear + 2;
      prev = -1;
      continue;
    }
    if (code === end) break;
    if (code > next || (code === next && prev < 0) || (prev < 0 && code > clear)) {
      throw new Error(`gif LZW data is corrupt (code ${code} where ${next} codes are defined)`);
    }
    // A known code is its own string; the next free code (KwKwK) is the previous string plus its first pixel.
    const known = code < next;
    const len = known ? length[code] : length[prev] + 1;
    let k = n + len - 1;
    if (!known) {
      if (k < pixelCount) out[k] = first[prev];
      k--;
    }
    for (let c = known ? code : prev; k >= n; k--) {
      if (k < pixelCount) out[k] = suffix[c];
      c = prefix[c];
    }
    if (prev >= 0 && next < MAX_CODES) {
      prefix[next] = prev;
      suffix[next] = known ? first[code] : first[prev];
      first[next] = first[prev];
      length[next] = length[prev] + 1;
      next++;
      if (next === 1 << size && size < 12) size++;
    }
    prev = code;
    n += len;
  }
  if (n < pixelCount) throw new Error(`gif frame data ends after ${n} of ${pixelCount} pixels`);
  return out;
}

/** Rows of an interlaced frame, stored in four passes (every 8th row from 0, from 4, every 4th from 2, every 2nd from 1), back in order. */
function deinterlace(rows: Uint8Array, width: number, height: number): Uint8Array {
  const out = new Uint8Array(rows.length);
  let from = 0;
  for (const [start, step] of [[0, 8], [4, 8], [2, 4], [1, 2]]) {
    for (let y = start; y < height; y += step, from++) out.set(rows.subarray(from * width, (from + 1) * width), y * width);
  }
  return out;
}

/** First frame as PIL loads it: a canvas of the screen size (grown to fit the frame), pixels
 *  outside the frame hold the transparent index (else 0), then every index maps through the
 *  frame's palette (local, else global) or, with no palette, is a gray level. */
export function decodeGif(bytes: Uint8Array): RgbImage {
  const screenW = bytes[6] | (bytes[7] << 8);
  const screenH = bytes[8] | (bytes[9] << 8);
  const gif = parseGIF(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer);
  const frame = gif.frames.find((f) => 'image' in f);
  if (!frame || !('image' in frame)) throw new Error('gif has no image frame');
  const { left, top, width: fw, height: fh, lct } = frame.image.descriptor;
  const decoded = decodeGifLzw(frame.image.data.minCodeSize, frame.image.data.blocks, fw * fh);
  const pixels = lct.interlaced ? deinterlace(decoded, fw, fh) : decoded;
  const width = Math.max(screenW, left + fw);
  const height = Math.max(screenH, top + fh);
  const transparentIndex = frame.gce?.extras?.transparentColorGiven ? frame.gce.transparentColorIndex : 0;
  const indices = new Uint8Array(width * height).fill(transparentIndex);
  for (let y = 0; y < fh; y++) indices.set(pixels.subarray(y * fw, (y + 1) * fw), (top + y) * width + left);
  // The parser stores a local palette as image.lct, which its types leave out.
  const local = (frame.image as { lct?: number[][] }).lct;
  const palette = lct.exists ? local : gif.lsd.gct.exists ? gif.gct : undefined;
  const out = new Uint8Array(width * height * 3);
  for (let i = 0; i < indices.length; i++) {
    const v = indices[i];
    const rgb = palette ? palette[v] ?? [0, 0, 0] : [v, v, v];
    out[i * 3] = rgb[0];
    out[i * 3 + 1] = rgb[1];
    out[i * 3 + 2] = rgb[2];
  }
  return { width, height, data: out };
}
