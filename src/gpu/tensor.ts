// Tensor: a shape, a dtype and the GPU buffer(s) holding it.
//
// Storage layouts (row-major, dim 0 outermost):
//   f32, i32, u32 : 4 bytes per element
//   f16           : 2 bytes per element (needs shader-f16 to be read as f16 in WGSL)
//   bf16          : 2 bytes per element, packed two per u32 word, element 2w in the low half;
//                   kernels widen with bitcast<f32>(w << 16u) / bitcast<f32>(w & 0xffff0000u)
//
// A tensor larger than one storage binding is split by rows (dim 0) into parts, each part a
// buffer of `rows` whole rows. Kernels that read weights take one part per dispatch.
//
// Texel layout (weights on software adapters, see Gpu.texelWeights): a 16-bit [N, K] weight with
// K % 8 == 0 is held in rgba32uint textures instead, one per part. Texel i of row r (elements
// 8i .. 8i+7, four words in the buffer layout's order) is texel (i * IL + r % IL, r / IL): IL rows
// (the part's `interleave`: for quantized weights the rows one step of a subgroup of the software
// GEMV reads, 64 for q4 and 16 for q8 where the texture is wide enough (ops/matmul.ts,
// weightInterleave); 1 for the others, see Gpu.allocWeight) lie side by side, 16 bytes at a time, so
// a subgroup's loads of a step are one contiguous run of texels instead of rows far apart (the q4
// SWAR GEMV in ~0.85 of the time it took with 8 rows side by side, and that in ~0.9 of rows apart;
// bench/RESULTS.md). Lavapipe loads a storage texel with one 16-byte load per lane where a vec4
// storage-buffer load costs four bounds-checked scalar loads, so weights stream 1.5-2x faster than
// from buffers.

import type { Gpu } from './device.js';

export type DType = 'f32' | 'f16' | 'bf16' | 'i32' | 'u32' | 'q8' | 'q4';

/** q8 / q4: group-quantized weights (src/weights/quantize.ts): codes plus an f16 scale per 32 values. */
export const BYTES_PER_ELEMENT: Record<DType, number> = { f32: 4, f16: 2, bf16: 2, i32: 4, u32: 4, q8: 1 + 2 / 32, q4: 0.5 + 2 / 32 };

export interface TensorPart {
  /** the rows' storage buffer (buffer layout) */
  buffer?: GPUBuffer;
  /** the rows' texture (texel layout), width K / 8 * interleave, height ceil(rows / interleave) */
  texture?: GPUTexture;
  /** texel layout: rows side by side in a texture row (a part starts on a multiple of it) */
  interleave?: number;
  /** first row (along dim 0) held by this part */
  rowStart: number;
  /** number of rows held by this part */
  rows: number;
}

/**
 * Rows side by side in a texel weight's texture rows of `rowTexels` texels each: `wanted` (a power of
 * two), or the most (a power of two) that fit the texture width.
 */
export function texelInterleave(rowTexels: number, maxTextureWidth: number, wanted: number): number {
  let il = 1;
  while (il * 2 <= wanted && rowTexels * il * 2 <= maxTextureWidth) il *= 2;
  return il;
}

/**
 * `rows` row-major rows of `rowBytes` bytes (whole texels) to texture rows of `pitch` bytes in the
 * texel layout with `il` rows side by side; the unfilled slots of a last, partial texture row are
 * zero. `back` converts the other way (texture rows in `src`, rows out).
 */
export function texelRows(src: Uint8Array, rows: number, rowBytes: number, il: number, pitch: number, dst: Uint8Array, back = false): void {
  const texels = rowBytes / 16;
  if (il === 1) {
    // in place (dst = src) too: rows spread out last first, gathered back first first
    for (let k = 0; k < rows; k++) {
      const r = back ? k : rows - 1 - k;
      const [from, to] = back ? [r * pitch, r * rowBytes] : [r * rowBytes, r * pitch];
      dst.set(src.subarray(from, from + rowBytes), to);
    }
    return;
  }
  if (!back && rows % il) dst.fill(0, Math.floor(rows / il) * pitch, Math.ceil(rows / il) * pitch);
  // word copies (4 per texel) where both sides are word aligned
  if ((src.byteOffset | dst.byteOffset) % 4 !== 0) {
    for (let r = 0; r < rows; r++) {
      const texAt = Math.floor(r / il) * pitch + (r % il) * 16;
      for (let i = 0; i < texels; i++) {
        const [a, b] = [r * rowBytes + i * 16, texAt + i * il * 16];
        if (back) dst.set(src.subarray(b, b + 16), a);
        else dst.set(src.subarray(a, a + 16), b);
      }
    }
    return;
  }
  const s32 = new Uint32Array(src.buffer, src.byteOffset, src.length >> 2);
  const d32 = new Uint32Array(dst.buffer, dst.byteOffset, dst.length >> 2);
  const rowWords = rowBytes >> 2;
  const stride = il * 4; // words from texel i to texel i + 1 of one row in a texture row
  for (let r = 0; r < rows; r++) {
    const rowAt = r * rowWords;
    const texAt = (Math.floor(r / il) * pitch + (r % il) * 16) >> 2;
    if (back) copyWords(s32, texAt, stride, d32, rowAt, 4, texels);
    else copyWords(s32, rowAt, 4, d32, texAt, stride, texels);
  }
}

/** `n` runs of 4 words from src (every `sStep` words from `s`) to dst (every `dStep` from `d`). */
function copyWords(src: Uint32Array, s: number, sStep: number, dst: Uint32Array, d: number, dStep: number, n: number): void {
  for (let k = 0; k < n; k++, s += sStep, d += dStep) {
    dst[d] = src[s];
    dst[d + 1] = src[s + 1];
    dst[d + 2] = src[s + 2];
    dst[d + 3] = src[s + 3];
  }
}

export function numelOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Bytes of storage for `numel` elements, rounded up to whole 32-bit words. */
export function storageBytes(dtype: DType, numel: number): number {
  return Math.ceil((numel * BYTES_PER_ELEMENT[dtype]) / 4) * 4;
}

export function checkShape(shape: readonly number[], what = 'tensor'): void {
  if (shape.length === 0 || shape.some((d) => !Number.isInteger(d) || d <= 0)) {
    throw new Error(`${what}: invalid shape [${shape.join(', ')}] (dims must be positive integers)`);
  }
}

export class Tensor {
  constructor(
    readonly gpu: Gpu,
    readonly shape: readonly number[],
    readonly dtype: DType,
    readonly parts: readonly TensorPart[],
    /** pooled tensors go back to the pool on release; others are destroyed */
    private readonly pooled: boolean,
    readonly label = 'tensor',
    /** shared by a tensor and its reshaped views: the storage is released once, by any of them */
    private readonly storage: { released: boolean } = { released: false },
  ) {}

  get numel(): number {
    return numelOf(this.shape);
  }

  get rows(): number {
    return this.shape[0];
  }

  /** elements per row (product of dims after the first) */
  get rowSize(): number {
    return this.numel / this.shape[0];
  }

  get byteSize(): number {
    return storageBytes(this.dtype, this.numel);
  }

  get isSplit(): boolean {
    return this.parts.length > 1;
  }

  /** Weights in the texel layout live in textures; everything else in storage buffers. */
  get texels(): boolean {
    return this.parts[0].texture !== undefined;
  }

  /** The single buffer of an unsplit tensor. Kernels that cannot take split inputs use this. */
  get buffer(): GPUBuffer {
    this.assertLive();
    if (this.parts.length !== 1) {
      throw new Error(`${this.label}: tensor [${this.shape.join(', ')}] is split into ${this.parts.length} buffers; this op needs it in one binding`);
    }
    return partBuffer(this, this.parts[0]);
  }

  assertLive(): void {
    if (this.storage.released) throw new Error(`${this.label}: tensor used after release`);
  }

  /** A view of the same storage with a new shape of the same element count (no copy). */
  reshape(shape: number[]): Tensor {
    const n = numelOf(shape);
    if (n !== this.numel) throw new Error(`${this.label}: cannot reshape [${this.shape.join(', ')}] to [${shape.join(', ')}]`);
    if (this.isSplit) throw new Error(`${this.label}: cannot reshape a split tensor`);
    if (this.texels && shape.join(',') !== this.shape.join(',')) throw new Error(`${this.label}: cannot reshape a weight stored as texels`);
    return new Tensor(this.gpu, shape, this.dtype, [{ ...this.parts[0], rows: shape[0] }], this.pooled, this.label, this.storage);
  }

  /** Give the storage back (to the pool, or destroyed for unpooled tensors); views share it. */
  release(): void {
    if (this.storage.released) return;
    this.storage.released = true;
    for (const p of this.parts) {
      if (p.texture) this.gpu.pool.destroyTexture(p.texture);
      else if (this.pooled) this.gpu.pool.release(p.buffer!);
      else this.gpu.pool.destroy(p.buffer!);
    }
  }
}

/** A part's storage buffer; a clear error for a texel-layout weight handed to a buffer-only op. */
export function partBuffer(t: Tensor, p: TensorPart): GPUBuffer {
  if (!p.buffer) throw new Error(`${t.label}: this weight is stored as texels (texture layout, software adapters), which only matmul and embedding read; this op needs a storage buffer`);
  return p.buffer;
}

/** Convert float32 values to bf16 bit patterns with round-to-nearest-even (as torch does). */
export function toBf16Bits(values: ArrayLike<number>): Uint16Array {
  const f = new Float32Array(values.length);
  f.set(values as ArrayLike<number>);
  const u = new Uint32Array(f.buffer);
  const out = new Uint16Array(f.length);
  for (let i = 0; i < u.length; i++) {
    const x = u[i];
    if ((x & 0x7fffffff) > 0x7f800000) out[i] = (x >>> 16) | 0x40; // quiet NaN
    else out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return out;
}

export function bf16BitsToF32(bits: Uint16Array): Float32Array {
  const u = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) u[i] = bits[i] << 16;
  return new Float32Array(u.buffer);
}

/** Convert float32 values to IEEE half bit patterns (round to nearest even). */
export function toF16Bits(values: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(values.length);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < values.length; i++) {
    f[0] = values[i];
    const x = u[0];
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    let mant = x & 0x7fffff;
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
      continue;
    }
    let e = exp - 127 + 15;
    if (e >= 0x1f) {
      out[i] = sign | 0x7c00;
      continue;
    }
    if (e <= 0) {
      if (e < -10) {
        out[i] = sign;
        continue;
      }
      mant |= 0x800000;
      const shift = 14 - e;
      let h = mant >>> shift;
      const rem = mant & ((1 << shift) - 1);
      const half = 1 << (shift - 1);
      if (rem > half || (rem === half && h & 1)) h++;
      out[i] = sign | h;
      continue;
    }
    let h = (e << 10) | (mant >>> 13);
    const rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
    out[i] = sign | h;
  }
  return out;
}

export function f16BitsToF32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i];
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >>> 10) & 0x1f;
    const m = h & 0x3ff;
    if (e === 0) out[i] = s * m * 2 ** -24;
    else if (e === 0x1f) out[i] = m ? NaN : s * Infinity;
    else out[i] = s * (1 + m / 1024) * 2 ** (e - 15);
  }
  return out;
}
