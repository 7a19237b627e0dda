// Image decoding to 8-bit RGB with the semantics of PIL's Image.open(...).convert('RGB'):
// alpha is dropped (never composited), grayscale is replicated, palettes are looked up (a GIF's
// transparent index keeps its palette colour), no EXIF rotation, no ICC colour transform.
//
// Node: sharp (libvips with libjpeg-turbo's decoder, libspng, libwebp) for JPEG/PNG/WebP, which
// decodes bit-identically to PIL 9.4 on the tested files; gifuct-js for GIF (sharp composites GIF
// transparency, PIL does not); our own PIL-exact BMP reader (bmp.ts). Every declared dimension is
// checked from the header (header.ts) before any of them allocates. sharp is imported lazily so
// that a browser build can swap in createImageBitmap behind the same decodeImage().

import { decompressFrame, parseGIF } from 'gifuct-js';
import { decodeBmp } from './bmp.js';
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

/** First frame as PIL loads it: a canvas of the screen size (grown to fit the frame), pixels
 *  outside the frame hold the transparent index (else 0), then every index maps through the
 *  frame's palette (local, else global) or, with no palette, is a gray level. */
function decodeGif(bytes: Uint8Array): RgbImage {
  const screenW = bytes[6] | (bytes[7] << 8);
  const screenH = bytes[8] | (bytes[9] << 8);
  const buf = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  const gif = parseGIF(buf);
  const frame = gif.frames.find((f) => 'image' in f);
  if (!frame || !('image' in frame)) throw new Error('gif has no image frame');
  // gifuct-js shifts by the code size unchecked: a mutated size (e.g. 128) loops forever. PIL too
  // refuses sizes above 12.
  const codeSize = frame.image.data.minCodeSize;
  if (codeSize > 12) throw new Error(`gif LZW minimum code size ${codeSize} is not supported (at most 12)`);
  const parsed = decompressFrame(frame, gif.gct, false);
  const { left, top, width: fw, height: fh } = parsed.dims;
  const width = Math.max(screenW, left + fw);
  const height = Math.max(screenH, top + fh);
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
