// Image decoding to 8-bit RGB with the semantics of PIL's Image.open(...).convert('RGB'):
// alpha is dropped (never composited), grayscale is replicated, palettes are looked up (a GIF's
// transparent index keeps its palette colour), no EXIF rotation, no ICC colour transform.
//
// Node: sharp (libvips with libjpeg-turbo's decoder, libspng, libwebp) for JPEG/PNG/WebP, which
// decodes bit-identically to PIL 9.4 on the tested files; our GIF reader (gif.ts: sharp composites
// GIF transparency, PIL does not); our own PIL-exact BMP reader (bmp.ts). Every declared dimension is
// checked from the header (header.ts) before any of them allocates. sharp is imported lazily so
// that a browser build can swap in createImageBitmap behind the same decodeImage().

import { decodeBmp } from './bmp.js';
import { decodeGif } from './gif.js';
import { checkSize, imageHeader, MAX_PIXELS, pngFormat, type ImageFormat } from './header.js';
import type { RgbImage } from './resize.js';

export { MAX_PIXELS, sniffFormat, type ImageFormat } from './header.js';

/** Decode an encoded image (JPEG baseline/progressive, PNG, WebP, GIF first frame, BMP) to RGB. */
export async function decodeImage(bytes: Uint8Array): Promise<RgbImage> {
  if (!bytes || bytes.length === 0) throw new Error('decodeImage: empty image data');
  // Every declared dimension is checked here, before any decoder allocates.
  const { format } = imageHeader(bytes);
  try {
    if (format === 'gif') return decodeGif(bytes);
    if (format === 'bmp') return decodeBmp(bytes);
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
  if (format === 'png' && pngFormat(bytes).colorType === 0 && pngFormat(bytes).depth === 16) {
    // PIL opens 16-bit gray as mode I and convert('RGB') clips each value to 255 (no scaling).
    const { data, info } = await input.toColourspace('grey16').raw({ depth: 'ushort' }).toBuffer({ resolveWithObject: true });
    const values = new Uint16Array(data.buffer, data.byteOffset, data.length / 2);
    const gray = new Uint8Array(info.width * info.height);
    for (let i = 0; i < gray.length; i++) gray[i] = Math.min(values[i * info.channels], 255);
    return toRgb(gray, info.width, info.height, 1);
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

