// Browser build of decode.ts (selected by the Vite config): JPEG, PNG and WebP are decoded by the
// browser (createImageBitmap without colour-space conversion or premultiplication), GIF and BMP by
// the same pure-JS paths as in Node. Semantics as PIL's Image.open(...).convert('RGB'): alpha
// dropped (never composited), no ICC transform, no EXIF rotation (a JPEG's Exif segment is removed
// before decoding, since browsers always honour its orientation), 16-bit gray clipped as PIL does. Every declared dimension is
// checked from the header first (header.ts). The pixels are read back through WebGL, whose upload
// keeps unpremultiplied values exactly (a 2D canvas stores premultiplied alpha and loses the colour
// of translucent pixels); images past its texture size use a 2D canvas. Measured against PIL in
// test/browser/inputs.test.ts.

import type { RgbImage } from '../preprocess/resize.js';
import { decodeImage as decodePortable } from '../preprocess/decode.js';
import { imageHeader, pngFormat } from '../preprocess/header.js';
import { decode as decodePng } from 'fast-png';

export { MAX_PIXELS, sniffFormat, type ImageFormat } from '../preprocess/header.js';

export async function decodeImage(bytes: Uint8Array): Promise<RgbImage> {
  if (!bytes || bytes.length === 0) return decodePortable(bytes); // its error
  const { format } = imageHeader(bytes);
  if (format !== 'jpeg' && format !== 'png' && format !== 'webp') return decodePortable(bytes);
  if (format === 'png' && pngFormat(bytes).colorType === 0 && pngFormat(bytes).depth === 16) return gray16(bytes);
  let bitmap: ImageBitmap;
  try {
    const data = format === 'jpeg' ? withoutExif(bytes) : bytes;
    bitmap = await createImageBitmap(new Blob([data as Uint8Array<ArrayBuffer>]), { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  } catch (e) {
    throw new Error(`cannot decode ${format} image: the browser's decoder refused it (${(e as Error).message})`);
  }
  try {
    const rgba = readWebGl(bitmap) ?? read2d(bitmap);
    const { width, height } = bitmap;
    const out = new Uint8Array(width * height * 3);
    for (let i = 0, j = 0; i < out.length; i += 3, j += 4) {
      out[i] = rgba[j];
      out[i + 1] = rgba[j + 1];
      out[i + 2] = rgba[j + 2];
    }
    return { width, height, data: out };
  } finally {
    bitmap.close();
  }
}

/**
 * 16-bit gray PNG as PIL converts it: mode I, each value clipped to 255 (no scaling), where browsers
 * scale to 8 bits. Decoded by fast-png, which gives the 16-bit samples.
 */
function gray16(bytes: Uint8Array): RgbImage {
  let png;
  try {
    png = decodePng(bytes);
  } catch (e) {
    throw new Error(`cannot decode png image: ${(e as Error).message}`);
  }
  const out = new Uint8Array(png.width * png.height * 3);
  for (let i = 0; i < png.width * png.height; i++) out.fill(Math.min(png.data[i * png.channels], 255), i * 3, i * 3 + 3);
  return { width: png.width, height: png.height, data: out };
}

/** RGBA exactly as decoded, or null when WebGL is missing or the image is past its texture size. */
function readWebGl(bitmap: ImageBitmap): Uint8Array | null {
  const { width, height } = bitmap;
  const gl = new OffscreenCanvas(1, 1).getContext('webgl2');
  if (!gl) return null;
  try {
    const max = gl.getParameter(gl.MAX_TEXTURE_SIZE) as number;
    if (width > max || height > max) return null;
    gl.pixelStorei(gl.UNPACK_PREMULTIPLY_ALPHA_WEBGL, false);
    gl.pixelStorei(gl.UNPACK_COLORSPACE_CONVERSION_WEBGL, gl.NONE);
    gl.pixelStorei(gl.UNPACK_FLIP_Y_WEBGL, false);
    gl.bindTexture(gl.TEXTURE_2D, gl.createTexture());
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA8, gl.RGBA, gl.UNSIGNED_BYTE, bitmap);
    gl.bindFramebuffer(gl.FRAMEBUFFER, gl.createFramebuffer());
    gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, gl.getParameter(gl.TEXTURE_BINDING_2D), 0);
    if (gl.checkFramebufferStatus(gl.FRAMEBUFFER) !== gl.FRAMEBUFFER_COMPLETE) return null;
    const out = new Uint8Array(width * height * 4);
    gl.pixelStorei(gl.PACK_ALIGNMENT, 1);
    gl.readPixels(0, 0, width, height, gl.RGBA, gl.UNSIGNED_BYTE, out);
    return gl.getError() === gl.NO_ERROR ? out : null;
  } finally {
    gl.getExtension('WEBGL_lose_context')?.loseContext();
  }
}

function read2d(bitmap: ImageBitmap): Uint8ClampedArray {
  const ctx = new OffscreenCanvas(bitmap.width, bitmap.height).getContext('2d', { willReadFrequently: true });
  if (!ctx) throw new Error('no 2D canvas to read the decoded pixels');
  ctx.drawImage(bitmap, 0, 0);
  return ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
}

/** The JPEG without its APP1 "Exif" segments (markers walked up to the first scan). */
export function withoutExif(jpeg: Uint8Array): Uint8Array {
  const keep: Uint8Array[] = [jpeg.subarray(0, 2)];
  let at = 2;
  let removed = false;
  while (at + 4 <= jpeg.length && jpeg[at] === 0xff) {
    const marker = jpeg[at + 1];
    if (marker === 0xda || marker === 0xd9) break; // start of scan / end of image: the rest is kept whole
    const length = (jpeg[at + 2] << 8) | jpeg[at + 3];
    const isExif = marker === 0xe1 && String.fromCharCode(...jpeg.subarray(at + 4, at + 8)) === 'Exif';
    if (isExif) removed = true;
    else keep.push(jpeg.subarray(at, at + 2 + length));
    at += 2 + length;
  }
  if (!removed) return jpeg;
  keep.push(jpeg.subarray(at));
  const out = new Uint8Array(keep.reduce((n, k) => n + k.length, 0));
  keep.reduce((o, k) => (out.set(k, o), o + k.length), 0);
  return out;
}
