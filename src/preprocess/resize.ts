// PIL-exact bicubic resize of 8-bit RGB images (Pillow's Image.resize(size, BICUBIC), the default
// for RGB). It repeats Pillow's ImagingResample integer arithmetic: separable passes (horizontal
// first, only over the source rows the vertical pass reads), each rounded and clipped to uint8,
// with kernel weights in fixed point (22 fraction bits). Results are bit-identical to Pillow.

/** Interleaved RGB, row-major, 3 bytes per pixel. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

const PRECISION_BITS = 32 - 8 - 2;
const HALF = 1 << (PRECISION_BITS - 1);
const BICUBIC_SUPPORT = 2;

/** Keys' cubic with a = -0.5 (Pillow's bicubic_filter). */
function bicubic(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

interface Coefficients {
  /** Taps per output sample (room reserved; unused taps are zero). */
  ksize: number;
  /** Per output sample: first source index and number of taps. */
  start: Int32Array;
  count: Int32Array;
  /** Fixed-point weights, outSize x ksize. */
  weights: Int32Array;
}

/** Pillow's precompute_coeffs + normalize_coeffs_8bpc for the full box [0, inSize). */
function coefficients(inSize: number, outSize: number): Coefficients {
  const scale = inSize / outSize;
  // Downscaling widens the kernel (antialiasing); upscaling keeps support 2.
  const filterScale = Math.max(scale, 1);
  const support = BICUBIC_SUPPORT * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterScale;
    // C casts to int (truncation toward zero) after adding 0.5.
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const w = bicubic((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      const w = ww !== 0 ? k[x] / ww : k[x];
      // Round half away from zero, then truncate, as Pillow does.
      weights[xx * ksize + x] = Math.trunc(w < 0 ? -0.5 + w * (1 << PRECISION_BITS) : 0.5 + w * (1 << PRECISION_BITS));
    }
    start[xx] = xmin;
    count[xx] = xmax;
  }
  return { ksize, start, count, weights };
}

function clip8(acc: number): number {
  const v = acc >> PRECISION_BITS; // |acc| < 2^31 always, so the int32 shift is exact
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/** Horizontal pass over source rows [rowStart, rowStart + rows). */
function resampleHorizontal(src: RgbImage, rowStart: number, rows: number, outWidth: number, c: Coefficients): RgbImage {
  const out = new Uint8Array(outWidth * rows * 3);
  const { ksize, start, count, weights } = c;
  const s = src.data;
  for (let y = 0; y < rows; y++) {
    const rowIn = (y + rowStart) * src.width * 3;
    const rowOut = y * outWidth * 3;
    for (let xx = 0; xx < outWidth; xx++) {
      let r = HALF;
      let g = HALF;
      let b = HALF;
      const kOff = xx * ksize;
      let p = rowIn + start[xx] * 3;
      for (let x = 0; x < count[xx]; x++, p += 3) {
        const w = weights[kOff + x];
        r += s[p] * w;
        g += s[p + 1] * w;
        b += s[p + 2] * w;
      }
      const o = rowOut + xx * 3;
      out[o] = clip8(r);
      out[o + 1] = clip8(g);
      out[o + 2] = clip8(b);
    }
  }
  return { width: outWidth, height: rows, data: out };
}

/** Vertical pass; `rowOffset` is the first source row held by `src`. */
function resampleVertical(src: RgbImage, rowOffset: number, outHeight: number, c: Coefficients): RgbImage {
  const width = src.width;
  const out = new Uint8Array(width * outHeight * 3);
  const { ksize, start, count, weights } = c;
  const s = src.data;
  const stride = width * 3;
  for (let yy = 0; yy < outHeight; yy++) {
    const kOff = yy * ksize;
    const base = (start[yy] - rowOffset) * stride;
    const taps = count[yy];
    const rowOut = yy * stride;
    for (let i = 0; i < stride; i++) {
      let acc = HALF;
      let p = base + i;
      for (let y = 0; y < taps; y++, p += stride) acc += s[p] * weights[kOff + y];
      out[rowOut + i] = clip8(acc);
    }
  }
  return { width, height: outHeight, data: out };
}

/** Image.resize((width, height), Image.BICUBIC) on an RGB image, bit-exact with Pillow 9.4. */
export function resizeBicubic(src: RgbImage, width: number, height: number): RgbImage {
  checkImage(src);
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new Error(`resizeBicubic: target size must be positive integers, got ${width}x${height}`);
  }
  const needHorizontal = width !== src.width;
  const needVertical = height !== src.height;
  if (!needHorizontal && !needVertical) return { width, height, data: src.data.slice() };
  const vert = coefficients(src.height, height);
  let img = src;
  let rowOffset = 0;
  if (needHorizontal) {
    // Only the source rows that the vertical pass reads.
    const first = vert.start[0];
    const last = vert.start[height - 1] + vert.count[height - 1];
    img = resampleHorizontal(src, first, last - first, width, coefficients(src.width, width));
    rowOffset = first;
  }
  return needVertical ? resampleVertical(img, rowOffset, height, vert) : img;
}

/** Image.crop((x, y, x + width, y + height)) for a box inside the image. */
export function crop(src: RgbImage, x: number, y: number, width: number, height: number): RgbImage {
  checkImage(src);
  if (x < 0 || y < 0 || x + width > src.width || y + height > src.height || width < 1 || height < 1) {
    throw new Error(`crop: box ${x},${y} ${width}x${height} is outside the ${src.width}x${src.height} image`);
  }
  const out = new Uint8Array(width * height * 3);
  for (let r = 0; r < height; r++) {
    const from = ((y + r) * src.width + x) * 3;
    out.set(src.data.subarray(from, from + width * 3), r * width * 3);
  }
  return { width, height, data: out };
}

export function checkImage(img: RgbImage): void {
  if (!Number.isInteger(img.width) || !Number.isInteger(img.height) || img.width < 1 || img.height < 1) {
    throw new Error(`image size must be positive integers, got ${img.width}x${img.height}`);
  }
  if (img.data.length !== img.width * img.height * 3) {
    throw new Error(`image data has ${img.data.length} bytes, expected ${img.width}x${img.height}x3 = ${img.width * img.height * 3}`);
  }
}
