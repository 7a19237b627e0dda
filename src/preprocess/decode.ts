// Image decoding to 8-bit RGB with the semantics of PIL's Image.open(...).convert('RGB'):
// alpha is dropped (never composited), grayscale is replicated, palettes are looked up (a GIF's
// transparent index keeps its palette colour), no EXIF rotation, no ICC colour transform.
//
// Node: sharp (libvips with libjpeg-turbo's decoder, libspng, libwebp) for JPEG/PNG/WebP, which
// decodes bit-identically to PIL 9.4 on the tested files; gifuct-js for GIF (sharp composites GIF
// transparency, PIL does not); decode-bmp for BMP. sharp is imported lazily so that a browser build
// can swap in createImageBitmap behind the same decodeImage().

import type { RgbImage } from './resize.js';
import { decompressFrame, parseGIF } from 'gifuct-js';
import decodeBmp from 'decode-bmp';

/** Images above this many pixels are refused before decoding (PIL warns at 89 MP). */
export const MAX_PIXELS = 100_000_000;

export type ImageFormat = 'jpeg' | 'png' | 'webp' | 'gif' | 'bmp';

export function sniffFormat(b: Uint8Array): ImageFormat | null {
  const ascii = (off: number, s: string) => [...s].every((ch, i) => b[off + i] === ch.charCodeAt(0));
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (b.length >= 8 && b[0] === 0x89 && ascii(1, 'PNG\r\n\x1a\n')) return 'png';
  if (b.length >= 12 && ascii(0, 'RIFF') && ascii(8, 'WEBP')) return 'webp';
  if (b.length >= 6 && (ascii(0, 'GIF87a') || ascii(0, 'GIF89a'))) return 'gif';
  if (b.length >= 2 && ascii(0, 'BM')) return 'bmp';
  return null;
}

function checkSize(format: ImageFormat, width: number, height: number): void {
  if (!(width >= 1 && height >= 1)) throw new Error(`${format} image has invalid size ${width}x${height}`);
  if (width * height > MAX_PIXELS) {
    throw new Error(`${format} image is ${width}x${height} = ${(width * height / 1e6).toFixed(1)} megapixels; the limit is ${MAX_PIXELS / 1e6}`);
  }
}

/** Decode an encoded image (JPEG baseline/progressive, PNG, WebP, GIF first frame, BMP) to RGB. */
export async function decodeImage(bytes: Uint8Array): Promise<RgbImage> {
  if (!bytes || bytes.length === 0) throw new Error('decodeImage: empty image data');
  const format = sniffFormat(bytes);
  if (!format) {
    const head = [...bytes.subarray(0, 8)].map((x) => x.toString(16).padStart(2, '0')).join(' ');
    throw new Error(`decodeImage: unrecognised image format (first bytes ${head}); supported: JPEG, PNG, WebP, GIF, BMP`);
  }
  try {
    if (format === 'gif') return decodeGif(bytes);
    if (format === 'bmp') return decodeBmpRgb(bytes);
    return await decodeWithSharp(bytes, format);
  } catch (e) {
    const msg = (e as Error).message;
    throw new Error(msg.startsWith(format) ? msg : `cannot decode ${format} image: ${msg}`);
  }
}

async function decodeWithSharp(bytes: Uint8Array, format: ImageFormat): Promise<RgbImage> {
  if (typeof process === 'undefined' || !process.versions?.node) {
    throw new Error('decoding needs Node (sharp); a browser build must decode with createImageBitmap');
  }
  if (format === 'png' && bytes.length >= 24) {
    // libspng wants more than the header before it reports a size; IHDR alone is enough to refuse.
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    checkSize(format, view.getUint32(16), view.getUint32(20));
  }
  const { default: sharp } = await import('sharp');
  // The header is read without sharp's own pixel limit so that checkSize words the error.
  const meta = await sharp(bytes, { limitInputPixels: false }).metadata();
  checkSize(format, meta.width ?? 0, meta.height ?? 0);
  // ignoreIcc: PIL applies no colour management. failOn 'truncated': like PIL, refuse cut-off
  // files but tolerate decoder warnings.
  const input = sharp(bytes, { ignoreIcc: true, limitInputPixels: MAX_PIXELS, failOn: 'truncated' });
  if (meta.space === 'cmyk') {
    // Raw CMYK as PIL holds it (Adobe inversion undone), then PIL's own CMYK -> RGB formula.
    const { data, info } = await input.pipelineColourspace('cmyk').toColourspace('cmyk').raw().toBuffer({ resolveWithObject: true });
    return cmykToRgb(data, info.width, info.height);
  }
  const { data, info } = await input.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  return toRgb(data, info.width, info.height, info.channels);
}

/** Pillow's cmyk2rgb: channel = (255 - k) - c * (255 - k) / 255 with its integer MULDIV255. */
function cmykToRgb(src: Uint8Array, width: number, height: number): RgbImage {
  const n = width * height;
  if (src.length !== n * 4) throw new Error(`decoder returned ${src.length} bytes for ${width}x${height} CMYK`);
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const nk = 255 - src[i * 4 + 3];
    for (let c = 0; c < 3; c++) {
      const t = src[i * 4 + c] * nk + 128;
      out[i * 3 + c] = nk - (((t >> 8) + t) >> 8);
    }
  }
  return { width, height, data: out };
}

/** 1 = gray, 2 = gray+alpha, 3 = RGB, 4 = RGBA: replicate gray, drop alpha. */
function toRgb(src: Uint8Array, width: number, height: number, channels: number): RgbImage {
  const n = width * height;
  if (src.length !== n * channels) throw new Error(`decoder returned ${src.length} bytes for ${width}x${height}x${channels}`);
  const out = new Uint8Array(n * 3);
  const gray = channels < 3;
  for (let i = 0; i < n; i++) {
    const p = i * channels;
    out[i * 3] = src[p];
    out[i * 3 + 1] = src[gray ? p : p + 1];
    out[i * 3 + 2] = src[gray ? p : p + 2];
  }
  return { width, height, data: out };
}

function decodeBmpRgb(bytes: Uint8Array): RgbImage {
  if (bytes.length < 26) throw new Error('bmp file is truncated');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // Header check before allocating: BITMAPCOREHEADER has 16-bit sizes, later headers 32-bit.
  const core = view.getUint32(14, true) === 12;
  const width = core ? view.getUint16(18, true) : view.getInt32(18, true);
  const height = Math.abs(core ? view.getUint16(20, true) : view.getInt32(22, true));
  checkSize('bmp', width, height);
  const img = decodeBmp(bytes);
  return toRgb(new Uint8Array(img.data.buffer, img.data.byteOffset, img.data.length), img.width, img.height, 4);
}

/** First frame as PIL loads it: a canvas of the screen size (grown to fit the frame), pixels
 *  outside the frame hold the transparent index (else 0), then every index maps through the
 *  frame's palette (local, else global) or, with no palette, is a gray level. */
function decodeGif(bytes: Uint8Array): RgbImage {
  if (bytes.length < 13) throw new Error('gif file is truncated');
  const screenW = bytes[6] | (bytes[7] << 8);
  const screenH = bytes[8] | (bytes[9] << 8);
  checkSize('gif', screenW, screenH);
  const buf = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  const gif = parseGIF(buf);
  const frame = gif.frames.find((f) => 'image' in f);
  if (!frame || !('image' in frame)) throw new Error('gif has no image frame');
  const parsed = decompressFrame(frame, gif.gct, false);
  const { left, top, width: fw, height: fh } = parsed.dims;
  const width = Math.max(screenW, left + fw);
  const height = Math.max(screenH, top + fh);
  checkSize('gif', width, height);
  const hasTransparency = frame.gce?.extras?.transparentColorGiven ?? false;
  const indices = new Uint8Array(width * height).fill(hasTransparency ? parsed.transparentIndex : 0);
  const pixels = parsed.pixels;
  if (pixels.length < fw * fh) throw new Error(`gif frame data is truncated (${pixels.length} of ${fw * fh} pixels)`);
  for (let y = 0; y < fh; y++) {
    for (let x = 0; x < fw; x++) indices[(top + y) * width + left + x] = pixels[y * fw + x];
  }
  const hasPalette = frame.image.descriptor.lct.exists || gif.lsd.gct.exists;
  const palette = parsed.colorTable;
  const out = new Uint8Array(width * height * 3);
  for (let i = 0; i < indices.length; i++) {
    const v = indices[i];
    const rgb = hasPalette ? palette[v] ?? [0, 0, 0] : [v, v, v];
    out[i * 3] = rgb[0];
    out[i * 3 + 1] = rgb[1];
    out[i * 3 + 2] = rgb[2];
  }
  return { width, height, data: out };
}
