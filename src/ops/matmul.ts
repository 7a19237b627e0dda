// Linear layers: out = x · wᵀ with fused epilogues (kernels/matmul.wgsl: GEMM and, for decode, GEMV variants).

import type { AdapterClass, GpuFeatures } from '../gpu/device.js';
import type { Defines } from '../gpu/pipelines.js';
import type { Binding, Recorder } from '../gpu/recorder.js';
import { partBuffer, type Tensor } from '../gpu/tensor.js';
import { expectDtype, expectShape, fmt } from './common.js';

export interface MatmulOptions {
  /** f32 [N], added first */
  bias?: Tensor;
  /** activation after the bias: exact (erf) GELU */
  epilogue?: 'gelu';
  /** f32 [N] per-column multiplier after bias and activation (InternViT layer scale) */
  scale?: Tensor;
  /** f32 [M, N] added last; may be `out` itself (in-place residual add) */
  residual?: Tensor;
  /** f32 [M, N] to write into; allocated when absent */
  out?: Tensor;
}

/** Rows up to which the GEMV (decode) kernel is used. */
export const GEMV_MAX_ROWS = 8;

/**
 * Output columns per lane of the software GEMV: its activations are loaded and spread once for all
 * of them. More columns keep more weight words live across lavapipe's texel-load calls, which spill
 * every live register: measured best at 4 for q4 (one 16-byte unit per group), 2 for 16-bit and q8
 * weights (2-4 units), 1 for f32 (bench/RESULTS.md, "Quantized weights").
 */
export function gemvColumns(dtype: Tensor['dtype']): number {
  return dtype === 'q4' ? 4 : dtype === 'f32' ? 1 : 2;
}

const env = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env;
/**
 * The GEMVs with int8 activations (per group of 32, kernels/matmul_xq8.wgsl), integer dot products per group:
 * dot4: the dot4I8Packed GEMV for q8 / q4 weights. 'auto' uses it where the adapter has the WGSL
 * feature and it was measured faster than the float GEMV (bench/RESULTS.md); 'on' / 'off' force it
 * (tests, benchmarks; env PVC_DOT4 in Node).
 * swar: the packed-multiply GEMV (useSwar); 'off' keeps the float GEMV (env PVC_SWAR).
 */
export const matmulConfig: { dot4: 'auto' | 'on' | 'off'; swar: 'auto' | 'off' } = { dot4: mode('PVC_DOT4', env?.PVC_DOT4, ['on', 'off']), swar: mode('PVC_SWAR', env?.PVC_SWAR, ['off']) };

function mode<T extends string>(name: string, v: string | undefined, others: T[]): 'auto' | T {
  if (v === undefined || v === '' || v === 'auto') return 'auto';
  if ((others as string[]).includes(v)) return v as T;
  throw new Error(`${name} must be auto or ${others.join(' or ')}; got '${v}'`);
}

/** Output columns per lane of the SWAR GEMV: q4 8, q8 4 (its two texel loads a group per column; bench/RESULTS.md, "Packed-multiply q8 GEMV"). */
export function swarColumns(dtype: 'q8' | 'q4'): number {
  return dtype === 'q4' ? 8 : 4;
}

/**
 * Rows side by side (the texel layout's interleave, src/gpu/tensor.ts) for a quantized weight: the
 * rows one step of the software GEMV reads in a subgroup of 8 lanes (lavapipe's SIMD width), 8 per
 * column of a lane (kernels/matmul.wgsl, laneColumn), so that those loads are one contiguous run of
 * texels and no other subgroup's rows lie between them: 64 for q4 through the SWAR GEMV, 16 for q8
 * (bench/RESULTS.md, "One subgroup's rows side by side").
 */
export function weightInterleave(dtype: 'q8' | 'q4', swar: boolean): number {
  return 8 * (swar ? swarColumns(dtype) : gemvColumns(dtype));
}

/** Adapter classes on which the dot4I8Packed GEMV was measured faster than the float one. */
const DOT4_FASTER: Record<AdapterClass, boolean> = { software: false, hardware: false };

export function useDot4(mode: 'auto' | 'on' | 'off', features: Pick<GpuFeatures, 'dot4' | 'subgroups'>, adapterClass: AdapterClass, dtype: Tensor['dtype']): boolean {
  if ((dtype !== 'q8' && dtype !== 'q4') || !features.dot4 || !features.subgroups || mode === 'off') return false;
  return mode === 'on' || DOT4_FASTER[adapterClass];
}

/**
 * The packed-multiply (SWAR) GEMV for q8 / q4 weights on software adapters (kernels/matmul.wgsl, SWAR):
 * int8 activations per group of 32 packed in pairs (kernels/matmul_xq8.wgsl), two weights per u32
 * multiply; about 2 (q4) or 2.75 (q8) ALU operations per weight against 5 for the float GEMVs. It
 * reads its activations as texels and spreads them with subgroups, so it needs both
 * (`activationTexels`: the device keeps weights as texels, i.e. reads storage textures: the software
 * adapters). 'auto' uses it wherever it runs (measured faster than the float GEMVs on lavapipe,
 * bench/RESULTS.md; the int8 activations add their rounding to q8's error: docs/quantization.md);
 * 'off' keeps the float GEMV (tests, benchmarks; env PVC_SWAR in Node). A dot4I8Packed GEMV, where
 * chosen, comes first.
 */
export function useSwar(mode: 'auto' | 'off', features: Pick<GpuFeatures, 'subgroups'>, activationTexels: boolean, dtype: Tensor['dtype']): boolean {
  return (dtype === 'q4' || dtype === 'q8') && features.subgroups && activationTexels && mode !== 'off';
}

/** Defines that select how the kernel reads weights of `dtype` (kernels/matmul.wgsl, kernels/quant.wgsl). */
export function weightDefines(dtype: Tensor['dtype']): Defines {
  if (dtype === 'q8' || dtype === 'q4') return { WQ: true, [dtype.toUpperCase()]: true, K_VALUES: 'params.K' };
  return { [`W_${dtype.toUpperCase()}`]: true };
}

/**
 * out[M, N] = residual + scale * act(x · wᵀ + bias), f32 accumulation.
 * x: f32 [M, K]; w: PyTorch Linear weight [N, K] in f32, bf16, f16 or group-quantized q8 / q4
 * (src/weights/quantize.ts), possibly split by rows (one dispatch per part, each writing its own columns).
 */
export function matmul(rec: Recorder, x: Tensor, w: Tensor, opts: MatmulOptions = {}): Tensor {
  const op = 'matmul';
  expectDtype(op, 'x', x, 'f32');
  expectDtype(op, 'w', w, 'f32', 'bf16', 'f16', 'q8', 'q4');
  if (x.shape.length !== 2) throw new Error(`${op}: x must be 2-D [M, K]; got ${fmt(x.shape)}`);
  if (w.shape.length !== 2) throw new Error(`${op}: w must be 2-D [N, K] (PyTorch Linear layout); got ${fmt(w.shape)}`);
  const [M, K] = x.shape;
  const [N, Kw] = w.shape;
  if (Kw !== K) throw new Error(`${op}: inner dimensions differ: x ${fmt(x.shape)} · w ${fmt(w.shape)}ᵀ needs w [N, ${K}]`);
  const { bias, scale, residual, epilogue } = opts;
  if (epilogue !== undefined && epilogue !== 'gelu') throw new Error(`${op}: unknown epilogue '${String(epilogue)}'; expected 'gelu'`);
  for (const [name, t] of [['bias', bias], ['scale', scale]] as const) {
    if (!t) continue;
    expectDtype(op, name, t, 'f32');
    expectShape(op, name, t, [N]);
  }
  if (residual) {
    expectDtype(op, 'residual', residual, 'f32');
    expectShape(op, 'residual', residual, [M, N]);
  }
  const out = opts.out ?? rec.gpu.empty([M, N], 'f32', op);
  if (opts.out) {
    expectDtype(op, 'out', out, 'f32');
    expectShape(op, 'out', out, [M, N]);
    for (const [name, t] of [['x', x], ['bias', bias], ['scale', scale]] as const) {
      if (t && t.buffer === out.buffer) throw new Error(`${op}: out shares its buffer with ${name}; write to a different tensor`);
    }
    if (w.parts.some((p) => p.buffer && p.buffer === out.buffer)) throw new Error(`${op}: out shares its buffer with w`);
  }
  const inplace = residual !== undefined && residual.buffer === out.buffer;

  const gpu = rec.gpu;
  const software = gpu.adapterClass === 'software';
  const gemv = M <= GEMV_MAX_ROWS && epilogue !== 'gelu';
  const defines = weightDefines(w.dtype);
  // K % 8 == 0 keeps every row (x and w) on a 16-byte boundary for the wide loads
  if (software && K % 8 === 0) defines.VEC = true;
  if (w.texels) {
    // texel weights (K % 8 == 0 by construction) are read by the software kernels only
    if (!software) throw new Error(`${op}: w (${w.label}) is stored as texels, which only the software-adapter kernels read`);
    defines.W_TEXELS = true;
  }
  if (gpu.features.subgroups && (software || gemv)) {
    // the software kernels broadcast from lanes 0..7 only where every subgroup has 8 lanes
    defines.SUBGROUPS = true;
    if (software && gpu.features.subgroupMinSize >= 8) defines.X8 = true;
  }
  if (!software) defines[gemv ? 'SPLITK' : 'TILED'] = true;
  let xInput: Tensor | GPUTexture | undefined;
  if (gemv) {
    defines.GEMV = true;
    defines.ROWS = 2 ** Math.ceil(Math.log2(M));
    if (useDot4(matmulConfig.dot4, gpu.features, gpu.adapterClass, w.dtype)) {
      // the lane-per-column GEMV on every adapter class (its activations are spread by subgroups)
      defines.DOT4 = true;
      defines.VEC = true;
      defines.COLS = gemvColumns(w.dtype);
      delete defines.SPLITK;
      xInput = rec.gpu.empty([M, (K / 32) * 12], 'f32', 'gemv int8 x');
      rec.dispatch('matmul_xq8', {}, [rec.uniform([M, K]), x, xInput], [Math.ceil(K / 32 / 64), M], `gemv int8 x ${M}x${K}`);
    } else if (software && useSwar(matmulConfig.swar, gpu.features, gpu.texelWeights, w.dtype) && K / 32 * 5 <= gpu.device.limits.maxTextureDimension2D) {
      defines.SWAR = true;
      defines.COLS = swarColumns(w.dtype as 'q8' | 'q4');
      xInput = activationTexture(rec, 'rgba32uint', [(K / 32) * 5, M], `gemv int8 pairs ${M}x${K}`);
      rec.dispatch('matmul_xq8', { SWAR: true }, [rec.uniform([M, K]), x, xInput], [Math.ceil(K / 32 / 64), M], `gemv int8 pairs ${M}x${K}`);
    } else if (software) {
      defines.COLS = gemvColumns(w.dtype);
      // the software GEMV reads its activations as texels where weights can be texels (one
      // vectorised load for all lanes instead of a bounds-checked scalar load per lane and word)
      if (defines.VEC && gpu.texelWeights && K / 4 <= gpu.device.limits.maxTextureDimension2D) {
        defines.X_TEXELS = true;
        xInput = activationTexels(rec, x);
      }
    }
  }
  const extra: Binding[] = [];
  const optional: [string, Tensor | undefined][] = [['BIAS', bias], ['SCALE', scale], ['RESIDUAL', inplace ? undefined : residual]];
  for (const [name, t] of optional) {
    if (!t) continue;
    defines[name] = true;
    defines[`${name}_B`] = 4 + extra.length;
    extra.push(t);
  }
  if (inplace) defines.RESIDUAL_INPLACE = true;
  if (epilogue === 'gelu') defines.GELU = true;

  // software: two rows per subgroup lane (16 or 8), or 4 without subgroups
  const rowsPerGroup = software ? (defines.SUBGROUPS ? (defines.X8 ? 16 : 8) : 4) : 64;
  for (const part of w.parts) {
    const colsPerGroup = gemv ? (defines.COLS ? 64 * (defines.COLS as number) : 4) : software ? 256 : 64;
    const groups: [number, number] = [Math.ceil(part.rows / colsPerGroup), gemv ? 1 : Math.ceil(M / rowsPerGroup)];
    const params = rec.uniform([M, N, K, part.rowStart, part.rows]);
    if (part.texture) defines.IL = part.interleave ?? 1;
    rec.dispatch('matmul', defines, [params, xInput ?? x, part.texture ?? partBuffer(w, part), out, ...extra], groups, `${gemv ? 'gemv' : 'matmul'} ${M}x${K}->${N}`);
  }
  if (defines.DOT4) (xInput as Tensor).release();
  return out;
}

/** One activation texture per device, format and size, rewritten by each GEMV that uses it. */
const xTextures = new WeakMap<object, Map<string, GPUTexture>>();

function activationTexture(rec: Recorder, format: 'rgba32float' | 'rgba32uint', size: [number, number], label: string): GPUTexture {
  let byShape = xTextures.get(rec.gpu);
  if (!byShape) xTextures.set(rec.gpu, (byShape = new Map()));
  const key = `${format} ${size.join('x')}`;
  let t = byShape.get(key);
  if (!t) {
    t = rec.gpu.device.createTexture({ size, format, usage: 0x08 /* STORAGE_BINDING */, label });
    byShape.set(key, t);
  }
  return t;
}

/** x f32 [M, K] copied into texels for the software GEMV (kernels/matmul_xtexels.wgsl). */
function activationTexels(rec: Recorder, x: Tensor): GPUTexture {
  const [M, K] = x.shape;
  const t = activationTexture(rec, 'rgba32float', [K / 4, M], `gemv x ${M}x${K}`);
  rec.dispatch('matmul_xtexels', {}, [rec.uniform([M, K]), x, t], [Math.ceil(K / 4 / 64), M], `gemv x ${M}x${K}`);
  return t;
}
