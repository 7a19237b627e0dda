// Group-wise weight quantization (q8, q4) of bf16 Linear weights [N, K], done on the host at load
// time, row block by row block (docs/quantization.md has the measurements behind the choices).
//
// Both formats: groups of 32 consecutive values along K (K % 32 == 0), symmetric (no zero point),
// one f16 scale d per group, value = d * q.
//   q8: q in [-127, 127], d = absmax / 127                                   (llama.cpp Q8_0)
//   q4: q in [-8, 7], d = m / -8 where m is the group's value of largest magnitude (the first such),
//       so m itself is exact and the 16th level is used                      (llama.cpp Q4_0)
// q = clamp(rint(x / d16), lo, hi) in float64 against the stored (f16-rounded) scale d16, rint
// rounding halves to even; a group whose d16 is 0 gets q = 0.
//
// Row layout (bytes; the same in a storage buffer and in texels, 16 bytes each, of a weight texture):
//   q4: [0, K/2)      codes: group g in bytes 16g .. 16g+15; its word j (bytes 16g+4j ..) holds
//                     elements 32g+8j .. +7 as 4-bit two's complement: byte b = (q[8j+b] & 15) | (q[8j+b+4] & 15) << 4
//   q8: [0, K)        codes: byte k = q[k] as int8 (two's complement)
//   then ceil(K / 256) * 16 bytes of scales: f16 bits of d_g at byte codeBytes + 2g, zero padded,
//   so a row is a whole number of 16-byte texels and group scales sit 8 to a texel.

import type { TensorInfo } from './safetensors.js';

export type QuantDType = 'q8' | 'q4';
export const QUANT_GROUP = 32;

/** What loadModel's `dtype` option quantizes: the LLM's 2-D bf16 weights (linear layers, LM head,
 * embedding table) whose rows are whole groups; the vision tower and projector stay bf16. */
export function quantizeRule(dtype: 'bf16' | QuantDType): ((info: TensorInfo) => QuantDType | undefined) | undefined {
  if (dtype === 'bf16') return undefined;
  return (info) => (info.name.startsWith('language_model.') && info.dtype === 'BF16' && info.shape.length === 2 && info.shape[1] % QUANT_GROUP === 0 ? dtype : undefined);
}

/** Bytes of codes in one row of K values. */
export function codeBytes(dtype: QuantDType, K: number): number {
  return dtype === 'q4' ? K / 2 : K;
}

/** Bytes of one quantized row of K values (codes, then scales padded to 16 bytes). */
export function quantRowBytes(dtype: QuantDType, K: number): number {
  if (K % QUANT_GROUP !== 0) throw new Error(`${dtype}: rows of ${K} values are not whole groups of ${QUANT_GROUP}`);
  return codeBytes(dtype, K) + Math.ceil(K / 256) * 16;
}

/** Round half to even (float64), as numpy's rint. */
function rint(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Quantize `rows` rows of K bf16 values (bit patterns) into the row layout above: returns
 * rows * quantRowBytes(dtype, K) bytes, written into `out` when given (a reused buffer: fresh
 * memory costs a page fault per 4 KiB, which on lavapipe's VM is slower than quantizing it).
 * `firstRow` numbers the rows in error messages (a block's place in its tensor).
 */
export function quantizeRows(dtype: QuantDType, bits: Uint16Array, K: number, out?: Uint8Array, firstRow = 0): Uint8Array {
  const rowBytes = quantRowBytes(dtype, K);
  const rows = bits.length / K;
  if (!Number.isInteger(rows)) throw new Error(`${dtype}: ${bits.length} values are not whole rows of ${K}`);
  if (out && out.length !== rows * rowBytes) throw new Error(`${dtype}: an output of ${out.length} bytes for ${rows} rows of ${rowBytes}`);
  out ??= new Uint8Array(rows * rowBytes);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const cb = codeBytes(dtype, K);
  // one group's values, widened from bf16 by a shift (exact)
  const wide = new Uint32Array(QUANT_GROUP);
  const values = new Float32Array(wide.buffer);
  const q = new Int32Array(QUANT_GROUP);
  const [lo, hi] = dtype === 'q4' ? [-8, 7] : [-127, 127];
  for (let r = 0; r < rows; r++) {
    const row = r * rowBytes;
    for (let g = 0; g < K / QUANT_GROUP; g++) {
      const x0 = r * K + g * QUANT_GROUP;
      let m = 0;
      let nonFinite = false;
      for (let i = 0; i < QUANT_GROUP; i++) {
        const b = bits[x0 + i];
        nonFinite ||= (b & 0x7f80) === 0x7f80; // all-ones exponent: infinity or NaN
        wide[i] = b << 16;
        const v = values[i];
        if (Math.abs(v) > Math.abs(m)) m = v;
      }
      if (nonFinite) throw new Error(`${dtype}: non-finite weight at row ${firstRow + r}, columns ${g * QUANT_GROUP} .. ${g * QUANT_GROUP + QUANT_GROUP - 1}`);
      const d16 = f16Bits(dtype === 'q4' ? m / -8 : Math.abs(m) / 127);
      const d = f16Value(d16);
      if (!Number.isFinite(d)) throw new Error(`${dtype}: group scale overflows f16 at row ${firstRow + r}, group ${g}`);
      for (let i = 0; i < QUANT_GROUP; i++) q[i] = d === 0 ? 0 : Math.min(hi, Math.max(lo, rint(values[i] / d)));
      view.setUint16(row + cb + 2 * g, d16, true);
      if (dtype === 'q8') {
        for (let i = 0; i < QUANT_GROUP; i++) out[row + g * QUANT_GROUP + i] = q[i] & 0xff;
      } else {
        for (let j = 0; j < 4; j++) {
          for (let b = 0; b < 4; b++) out[row + 16 * g + 4 * j + b] = (q[8 * j + b] & 15) | ((q[8 * j + b + 4] & 15) << 4);
        }
      }
    }
    out.fill(0, row + cb + 2 * (K / QUANT_GROUP), row + rowBytes); // scale padding (a reused buffer holds old bytes)
  }
  return out;
}

/** Powers of two 2^-150 .. 2^150, a table (Math.pow per scale was half the quantizer's time). */
const POW2 = Float64Array.from({ length: 301 }, (_, i) => 2 ** (i - 150));
const pow2 = (e: number) => POW2[e + 150];
const f64 = new Float64Array(1);
const f64Words = new Uint32Array(f64.buffer);

/** floor(log2(a)) of a positive normal float64, read from its exponent bits (exact). */
function exponent(a: number): number {
  f64[0] = a;
  return ((f64Words[1] >>> 20) & 0x7ff) - 1023;
}

/** float64 -> IEEE half bits, rounded once to nearest even (no float32 step, which could round twice). */
function f16Bits(v: number): number {
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  const a = Math.abs(v);
  if (a === 0) return sign;
  // a = |bf16| / 8 or / 127 >= 2^-149 / 127: a normal float64, and every exponent below is within POW2
  const quantum = pow2(Math.max(exponent(a), -14) - 10); // spacing of halves near a (subnormals below 2^-14)
  const r = rint(a / quantum) * quantum;
  if (r >= 65520) return sign | 0x7c00;
  if (r < 2 ** -14) return sign | (r / 2 ** -24);
  const re = exponent(r);
  return sign | ((re + 15) << 10) | ((r / pow2(re)) * 1024 - 1024);
}

function f16Value(bits: number): number {
  const e = (bits >>> 10) & 0x1f;
  const m = bits & 0x3ff;
  const s = bits & 0x8000 ? -1 : 1;
  if (e === 0x1f) return m ? NaN : s * Infinity;
  return e === 0 ? s * m * 2 ** -24 : s * (1 + m / 1024) * 2 ** (e - 15);
}

/** The values a quantized row block stands for (float64), for references and accuracy checks. */
export function dequantizeRows(dtype: QuantDType, bytes: Uint8Array, K: number): Float64Array {
  const rowBytes = quantRowBytes(dtype, K);
  const rows = bytes.length / rowBytes;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const cb = codeBytes(dtype, K);
  const out = new Float64Array(rows * K);
  for (let r = 0; r < rows; r++) {
    const row = r * rowBytes;
    for (let k = 0; k < K; k++) {
      const g = Math.floor(k / QUANT_GROUP);
      const d = f16Value(view.getUint16(row + cb + 2 * g, true));
      let q: number;
      if (dtype === 'q8') q = view.getInt8(row + k);
      else {
        const i = k % QUANT_GROUP;
        const j = Math.floor(i / 8);
        const b = i % 8;
        const byte = bytes[row + 16 * g + 4 * j + (b % 4)];
        const nibble = b < 4 ? byte & 15 : byte >> 4;
        q = nibble >= 8 ? nibble - 16 : nibble;
      }
      out[r * K + k] = d * q;
    }
  }
  return out;
}
