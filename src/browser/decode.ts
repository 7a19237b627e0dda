// Browser build of decode.ts (selected by the Vite config): JPEG, PNG and WebP are decoded by the
// browser (createImageBitmap without colour-space conversion or premultiplication), GIF and BMP by
// the same pure-JS paths as in Node. Semantics as PIL's Image.open(...).convert('RGB'): alpha
// dropped, no ICC transform, no EXIF rotation (the JPEG's Exif segment is removed before decoding,
// since browsers always honour its orientation). Measured against PIL in test/browser/.

import type { RgbImage } from '../preprocess/resize.js';
import { decodeImage as decodePortable, MAX_PIXELS, sniffFormat } from '../preprocess/decode.js';

export { MAX_PIXELS, sniffFormat, type ImageFormat } from '../preprocess/decode.js';

export async function decodeImage(bytes: Uint8Array): Promise<RgbImage> {
  const format = bytes?.length ? sniffFormat(bytes) : null;
  if (format !== 'jpeg' && format !== 'png' && format !== 'webp') return decodePortable(bytes); // GIF, BMP, and the errors
  let bitmap: ImageBitmap;
  try {
    const data = format === 'jpeg' ? withoutExif(bytes) : bytes;
    bitmap = await createImageBitmap(new Blob([data as Uint8Array<ArrayBuffer>]), { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  } catch (e) {
    throw new Error(`cannot decode ${format} image: the browser's decoder refused it (${(e as Error).message})`);
  }
  try {
    const { width, height } = bitmap;
    if (width * height > MAX_PIXELS) throw new Error(`${format} image is ${width}x${height} = ${((width * height) / 1e6).toFixed(1)} megapixels; the limit is ${MAX_PIXELS / 1e6}`);
    const ctx = new OffscreenCanvas(width, height).getContext('2d', { willReadFrequently: true });
    if (!ctx) throw new Error('no 2D canvas to read the decoded pixels');
    ctx.drawImage(bitmap, 0, 0);
    const rgba = ctx.getImageData(0, 0, width, height).data;
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
