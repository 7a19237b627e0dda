// q8 / q4 weights in every matmul kernel variant, against a float64 matmul over the dequantized
// weights (dequantizeRows, itself checked bit for bit against numpy in quantize.test.ts). The
// dot4I8Packed and packed-multiply (SWAR) GEMVs (int8 activations per group of 32) against the same
// reference applied to the activations quantized by the same rule (power-of-two group scale, round
// half to even, clamp to ±127; kernels/matmul_xq8.wgsl).
import { afterAll, describe, expect, it } from 'vitest';
import { getDevice, toBf16Bits, type Gpu, type Tensor } from '../src/gpu/index.js';
import { gemvColumns, matmul, matmulConfig, useDot4, useSwar, weightInterleave, type MatmulOptions } from '../src/ops/matmul.js';
import { dequantizeRows, quantizeRows, type QuantDType } from '../src/weights/quantize.js';
import { uploadQuantized } from '../src/weights/quantize-upload.js';
import { erf, freshSeed, randn, relL2, rng, testGpu } from './util.js';

const seed = freshSeed();
const rand = rng(seed);

// Every kernel variant compiles for seconds on lavapipe, so each device runs the cases that select
// its variants: GEMM and GEMV (1 and 2 rows) for both formats, epilogues once each.
const software = await testGpu();
const hardware = await testGpu({ adapterClass: 'hardware' });
const noSubgroups = await testGpu({ adapterClass: 'software' });
noSubgroups.features.subgroups = false;
const narrowSubgroups = await testGpu({ adapterClass: 'software' });
narrowSubgroups.features.subgroupMinSize = 4;
const bufferWeights = await testGpu({ adapterClass: 'software', texelWeights: false });
const modes = { ...matmulConfig };
afterAll(() => {
  Object.assign(matmulConfig, modes);
  [software, hardware, noSubgroups, narrowSubgroups, bufferWeights].forEach((g) => g.destroy());
});

/** Round half to even (numpy's rint). */
function rint(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** exponent e of v = f * 2^e, f in [0.5, 1), for a positive normal float64 (frexp) */
function frexpExp(v: number): number {
  const b = new DataView(new Float64Array([v]).buffer);
  return ((b.getUint16(6, true) >> 4) & 0x7ff) - 1022;
}

/** The activations after int8 quantization per group of 32 along K, as float64 (d * q). */
function quantizeActivations(x: Float32Array): Float64Array {
  const out = new Float64Array(x.length);
  for (let g = 0; g < x.length; g += 32) {
    let am = 0;
    for (let i = 0; i < 32; i++) am = Math.max(am, Math.abs(x[g + i]));
    if (am === 0) continue;
    const s = frexpExp(am) - 7;
    for (let i = 0; i < 32; i++) out[g + i] = Math.max(-127, Math.min(127, rint(x[g + i] * 2 ** -s))) * 2 ** s;
  }
  return out;
}

interface Case {
  M: number;
  K: number;
  N: number;
  dtype: QuantDType;
  bias?: boolean;
  gelu?: boolean;
  scale?: boolean;
  residual?: boolean | 'inplace';
  /** the dot4I8Packed GEMV: the reference quantizes the activations as the kernel does */
  dot4?: boolean;
  /** the packed-multiply (SWAR) GEMV, likewise */
  swar?: boolean;
  /** weight codes of the largest magnitude (q4 7 and one -8, q8 ±127) and activation codes ±127 of one
   * sign per group: the SWAR GEMV's largest partial sums */
  extreme?: boolean;
  /** both int8 GEMVs left to 'auto' where the device cannot run them: the float GEMV must be chosen */
  auto?: boolean;
  /** weights laid out for the SWAR GEMV (64 rows side by side) read by another kernel */
  swarLayout?: boolean;
}

async function check(gpu: Gpu, c: Case, expectSplit = false): Promise<number> {
  const { M, K, N, dtype } = c;
  const int8 = c.dot4 || c.swar;
  const x = randn(M * K, rand);
  const wv = randn(N * K, rand, 0.5);
  if (c.extreme) {
    // each weight group: q4 one value -s (code -8, n = 0), the rest 7s/8 (code 7, n = 15); q8 all ±127
    const code = (i: number) => (dtype === 'q8' ? 1 : i % 32 === 0 ? -1 : 0.875);
    for (let i = 0; i < wv.length; i++) wv[i] = code(i) * (((i / 32) | 0) % 3 === 1 ? -1 : 1);
    for (let i = 0; i < x.length; i++) x[i] = ((i / 32) | 0) % 2 ? 0.75 : -0.75;
  } else if (int8) {
    // a zero group and a group whose largest value is an exact power of two
    x.fill(0, 0, 32);
    x[40] = -4;
  }
  const xr = int8 ? quantizeActivations(x) : x;
  const bits = toBf16Bits(wv);
  const wq = dequantizeRows(dtype, quantizeRows(dtype, bits, K), K);
  const bias = randn(N, rand);
  const scale = randn(N, rand);
  const residual = randn(M * N, rand);
  const want = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += xr[m * K + k] * wq[n * K + k];
      if (c.bias) s += bias[n];
      if (c.gelu) s = 0.5 * s * (1 + erf(s / Math.SQRT2));
      if (c.scale) s *= scale[n];
      if (c.residual) s += residual[m * N + n];
      want[m * N + n] = s;
    }
  }
  // the modes first: the SWAR GEMV's weights get more rows side by side (src/ops/matmul.ts, weightInterleave)
  matmulConfig.dot4 = c.dot4 ? 'on' : c.auto ? 'auto' : 'off';
  matmulConfig.swar = c.swar || c.auto || c.swarLayout ? 'auto' : 'off';
  const tx = await gpu.upload([M, K], 'f32', x);
  const tw = await uploadQuantized(gpu, dtype, [N, K], bits);
  if (expectSplit) expect(tw.parts.length).toBeGreaterThan(1);
  const opts: MatmulOptions = {};
  const tensors: Tensor[] = [tx, tw];
  if (c.bias) tensors.push((opts.bias = await gpu.upload([N], 'f32', bias)));
  if (c.scale) tensors.push((opts.scale = await gpu.upload([N], 'f32', scale)));
  if (c.residual) tensors.push((opts.residual = await gpu.upload([M, N], 'f32', residual)));
  if (c.residual === 'inplace') opts.out = opts.residual;
  if (c.gelu) opts.epilogue = 'gelu';
  const got = await gpu.step((rec) => {
    const out = matmul(rec, tx, tw, opts);
    if (out !== opts.out) tensors.push(out);
    return rec.read(out);
  });
  tensors.forEach((t) => t.release());
  return relL2(got as Float32Array, want);
}

const label = (c: Case) =>
  `${c.M}x${c.K}->${c.N} ${c.dtype}${c.dot4 ? ' dot4I8Packed' : ''}${c.swar ? ' SWAR' : ''}${c.extreme ? ' (extreme codes)' : ''}${c.auto ? ' (auto: float GEMV)' : ''}${c.swarLayout ? " (the SWAR GEMV's layout)" : ''}${c.bias ? ' +bias' : ''}${c.gelu ? ' +gelu' : ''}${c.scale ? ' +scale' : ''}${c.residual ? ` +residual${c.residual === 'inplace' ? ' (in place)' : ''}` : ''}`;

const both = <T>(f: (dtype: QuantDType) => T[]): T[] => (['q4', 'q8'] as const).flatMap(f);
const gemm: Case = { M: 37, K: 96, N: 131, dtype: 'q4', bias: true, gelu: true, residual: true }; // K: no whole 64-tile, a partly filled scale unit
const gemv: Case = { M: 1, K: 4096, N: 67, dtype: 'q4' };
const gemv2: Case = { M: 2, K: 160, N: 131, dtype: 'q4', bias: true, residual: 'inplace' };
const devices: [string, Gpu, Case[]][] = [
  ['software (texels)', software, [...both((dtype) => [gemm, gemv, gemv2].map((c) => ({ ...c, dtype }))), { ...gemm, swarLayout: true }]],
  ['software, weights in buffers', bufferWeights, both((dtype) => [{ M: 19, K: 288, N: 70, dtype, residual: 'inplace' as const }, { ...gemv, dtype, auto: true }])],
  ['hardware', hardware, both((dtype) => [{ M: 21, K: 96, N: 75, dtype, bias: true, residual: true }, { ...gemv2, dtype }])],
  ['software without subgroups', noSubgroups, [{ ...gemm, gelu: false }, { ...gemv, auto: true }]],
  ['software, subgroups of 4', narrowSubgroups, [{ ...gemm, dtype: 'q8', gelu: false }, { ...gemv, dtype: 'q8' }]],
];
// dot4I8Packed GEMV (where the adapter has the WGSL feature): N with no whole workgroup of columns;
// K = 160, a partly filled scale unit; M = 3, a clamped 4th row
if (software.features.dot4) {
  devices.push(
    ['software (texels), dot4I8Packed', software, both((dtype) => [{ M: 1, K: 4096, N: 67, dtype, dot4: true }, { M: 3, K: 160, N: 131, dtype, dot4: true, bias: true, scale: true, residual: 'inplace' as const }])],
    ['software, weights in buffers, dot4I8Packed', bufferWeights, both((dtype) => [{ M: 2, K: 288, N: 70, dtype, dot4: true, residual: true }])],
    ['software, subgroups of 4, dot4I8Packed', narrowSubgroups, [{ M: 1, K: 288, N: 75, dtype: 'q8', dot4: true, bias: true }]],
    ['hardware, dot4I8Packed', hardware, both((dtype) => [{ M: 5, K: 160, N: 75, dtype, dot4: true, bias: true, residual: true }])],
  );
}

// packed-multiply (SWAR) GEMVs: N with no whole workgroup of columns (q4 512, q8 256) and with
// several; K = 160, a partly filled scale unit; M = 3 and 5, clamped rows; M = 8, the most rows
devices.push(
  ['software (texels), SWAR', software, both((dtype) => [
    { M: 1, K: 4096, N: 67, dtype, swar: true },
    { M: 3, K: 160, N: 131, dtype, swar: true, bias: true, scale: true, residual: 'inplace' },
    { M: 5, K: 288, N: 1100, dtype, swar: true, residual: true },
    { M: 8, K: 96, N: 75, dtype, swar: true, bias: true },
    { M: 2, K: 256, N: 70, dtype, swar: true, extreme: true },
  ])],
  ['software, subgroups of 4, SWAR', narrowSubgroups, both((dtype) => [{ M: 2, K: 288, N: 75, dtype, swar: true, bias: true }])],
);

describe.each(devices)('quantized matmul on %s kernels', (_, gpu, cases) => {
  it.each(cases.map((c) => [label(c), c] as const))('%s', async (_name, c) => {
    expect(await check(gpu, c), `seed ${seed}`).toBeLessThanOrEqual(1e-5);
  });
});

describe('quantized weights split by rows over several bindings', () => {
  const splitCases: Case[] = [
    { M: 11, K: 320, N: 700, dtype: 'q4', bias: true, residual: true },
    { M: 1, K: 320, N: 700, dtype: 'q8', residual: 'inplace' },
    ...(software.features.dot4 ? [{ M: 1, K: 320, N: 700, dtype: 'q4' as const, dot4: true, residual: 'inplace' as const }] : []),
  ];
  const swarSplit = both((dtype): Case[] => [{ M: 2, K: 320, N: 700, dtype, swar: true, residual: 'inplace' }]);
  for (const adapterClass of ['software', 'hardware'] as const) {
    it(`${adapterClass}: each part writes its own columns`, async () => {
      const gpu = await getDevice({ maxStorageBufferBindingSize: 32768, poison: true, adapterClass });
      try {
        for (const c of adapterClass === 'software' ? [...splitCases, ...swarSplit] : splitCases) expect(await check(gpu, c, true), `${label(c)}, seed ${seed}`).toBeLessThanOrEqual(1e-5);
      } finally {
        gpu.destroy();
      }
    });
  }
});

describe('useDot4', () => {
  const yes = { dot4: true, subgroups: true };
  it('only for quantized weights on adapters with the feature and subgroups', () => {
    expect(useDot4('on', yes, 'software', 'q4')).toBe(true);
    expect(useDot4('on', yes, 'hardware', 'q8')).toBe(true);
    expect(useDot4('on', yes, 'software', 'bf16')).toBe(false);
    expect(useDot4('on', { dot4: false, subgroups: true }, 'software', 'q4')).toBe(false);
    expect(useDot4('on', { dot4: true, subgroups: false }, 'software', 'q4')).toBe(false);
    expect(useDot4('off', yes, 'software', 'q4')).toBe(false);
  });
});

describe('useSwar', () => {
  it('only for quantized weights, with subgroups and activation texels, unless off', () => {
    const sg = { subgroups: true };
    expect(useSwar('auto', sg, true, 'q4')).toBe(true);
    expect(useSwar('auto', sg, true, 'q8')).toBe(true);
    expect(useSwar('auto', sg, true, 'bf16')).toBe(false);
    expect(useSwar('auto', { subgroups: false }, true, 'q4')).toBe(false);
    expect(useSwar('auto', sg, false, 'q4')).toBe(false);
    expect(useSwar('off', sg, true, 'q4')).toBe(false);
  });
});

describe('rows side by side for the software GEMV', () => {
  it("a quantized weight on a texel device gets the rows one subgroup step of its GEMV reads (8 lanes x its columns), fewer where the texture is too narrow", async () => {
    // the columns per lane each GEMV variant is dispatched with (matmul's COLS define)
    expect(weightInterleave('q4', true)).toBe(8 * 8);
    expect(weightInterleave('q8', true)).toBe(8 * 4);
    expect(weightInterleave('q4', false)).toBe(8 * gemvColumns('q4'));
    expect(weightInterleave('q8', false)).toBe(8 * gemvColumns('q8'));
    const laid = async (dtype: QuantDType, K: number, swar: 'auto' | 'off') => {
      matmulConfig.swar = swar;
      const w = await uploadQuantized(software, dtype, [130, K], toBf16Bits(randn(130 * K, rand)));
      const il = w.parts.map((p) => p.interleave);
      w.release();
      return il;
    };
    const swar = useSwar('auto', software.features, software.texelWeights, 'q4');
    expect(await laid('q4', 256, 'auto')).toEqual([swar ? 64 : 32]);
    expect(await laid('q4', 256, 'off')).toEqual([32]);
    expect(await laid('q8', 256, 'auto')).toEqual([swar ? 32 : 16]);
    expect(await laid('q8', 256, 'off')).toEqual([16]);
    // q4 at K = 14336: 504 texels a row, 64 rows would pass a 16384-texel texture
    const max = software.device.limits.maxTextureDimension2D;
    expect(await laid('q4', 14336, 'auto')).toEqual([Math.min(swar ? 64 : 32, 2 ** Math.floor(Math.log2(max / 504)))]);
  });
});
