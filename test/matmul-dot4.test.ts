// The dot4I8Packed GEMV (q8 / q4 weights, int8 activations per group of 32) against a float64
// reference that quantizes the activations by the same rule (power-of-two group scale, round half
// to even, clamp to ±127; kernels/matmul_xq8.wgsl) and multiplies by the dequantized weights.
import { afterAll, describe, expect, it } from 'vitest';
import { getDevice, toBf16Bits, type Gpu, type Tensor } from '../src/gpu/index.js';
import { matmul, matmulConfig, useDot4, type MatmulOptions } from '../src/ops/matmul.js';
import { dequantizeRows, quantizeRows, type QuantDType } from '../src/weights/quantize.js';
import { uploadQuantized } from '../src/weights/quantize-upload.js';
import { freshSeed, randn, relL2, rng, testGpu } from './util.js';

const seed = freshSeed();
const rand = rng(seed);

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
function quantizeActivations(x: Float32Array, K: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let g = 0; g < x.length; g += 32) {
    let am = 0;
    for (let i = 0; i < 32; i++) am = Math.max(am, Math.abs(x[g + i]));
    if (am === 0) continue;
    const s = frexpExp(am) - 7;
    for (let i = 0; i < 32; i++) out[g + i] = Math.max(-127, Math.min(127, rint(x[g + i] * 2 ** -s))) * 2 ** s;
  }
  expect(x.length % K).toBe(0);
  return out;
}

interface Case {
  M: number;
  K: number;
  N: number;
  dtype: QuantDType;
  bias?: boolean;
  scale?: boolean;
  residual?: boolean | 'inplace';
}

async function check(gpu: Gpu, c: Case, expectSplit = false): Promise<number> {
  const { M, K, N, dtype } = c;
  const x = randn(M * K, rand);
  // a zero group and a group whose largest value is an exact power of two
  x.fill(0, 0, 32);
  if (K > 32) x[40] = -4;
  const xq = quantizeActivations(x, K);
  const bits = toBf16Bits(randn(N * K, rand, 0.5));
  const wq = dequantizeRows(dtype, quantizeRows(dtype, bits, K), K);
  const bias = randn(N, rand);
  const scale = randn(N, rand);
  const residual = randn(M * N, rand);
  const want = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += xq[m * K + k] * wq[n * K + k];
      if (c.bias) s += bias[n];
      if (c.scale) s *= scale[n];
      if (c.residual) s += residual[m * N + n];
      want[m * N + n] = s;
    }
  }
  const tx = await gpu.upload([M, K], 'f32', x);
  const tw = await uploadQuantized(gpu, dtype, [N, K], bits);
  if (expectSplit) expect(tw.parts.length).toBeGreaterThan(1);
  const opts: MatmulOptions = {};
  const tensors: Tensor[] = [tx, tw];
  if (c.bias) tensors.push((opts.bias = await gpu.upload([N], 'f32', bias)));
  if (c.scale) tensors.push((opts.scale = await gpu.upload([N], 'f32', scale)));
  if (c.residual) tensors.push((opts.residual = await gpu.upload([M, N], 'f32', residual)));
  if (c.residual === 'inplace') opts.out = opts.residual;
  const got = await gpu.step((rec) => {
    const out = matmul(rec, tx, tw, opts);
    if (out !== opts.out) tensors.push(out);
    return rec.read(out);
  });
  tensors.forEach((t) => t.release());
  return relL2(got as Float32Array, want);
}

const label = (c: Case) => `${c.M}x${c.K}->${c.N} ${c.dtype}${c.bias ? ' +bias' : ''}${c.scale ? ' +scale' : ''}${c.residual ? ` +residual${c.residual === 'inplace' ? ' (in place)' : ''}` : ''}`;

const software = await testGpu();
const hardware = await testGpu({ adapterClass: 'hardware' });
const narrowSubgroups = await testGpu({ adapterClass: 'software' });
narrowSubgroups.features.subgroupMinSize = 4;
const bufferWeights = await testGpu({ adapterClass: 'software', texelWeights: false });
const mode = matmulConfig.dot4;
matmulConfig.dot4 = 'on';
afterAll(() => {
  matmulConfig.dot4 = mode;
  [software, hardware, narrowSubgroups, bufferWeights].forEach((g) => g.destroy());
});

const both = <T>(f: (dtype: QuantDType) => T[]): T[] => (['q4', 'q8'] as const).flatMap(f);
const devices: [string, Gpu, Case[]][] = [
  // N: no whole workgroup of columns; K = 160: a partly filled scale unit; M = 3: a clamped 4th row
  ['software (texels)', software, both((dtype) => [{ M: 1, K: 4096, N: 67, dtype }, { M: 3, K: 160, N: 131, dtype, bias: true, scale: true, residual: 'inplace' }])],
  ['software, weights in buffers', bufferWeights, both((dtype) => [{ M: 2, K: 288, N: 70, dtype, residual: true }])],
  ['software, subgroups of 4', narrowSubgroups, [{ M: 1, K: 288, N: 75, dtype: 'q8', bias: true }]],
  ['hardware', hardware, both((dtype) => [{ M: 5, K: 160, N: 75, dtype, bias: true, residual: true }])],
];

describe.skipIf(!software.features.dot4)('dot4I8Packed GEMV', () => {
  describe.each(devices)('on %s kernels', (_, gpu, cases) => {
    it.each(cases.map((c) => [label(c), c] as const))('%s', async (_name, c) => {
      expect(await check(gpu, c), `seed ${seed}`).toBeLessThanOrEqual(1e-5);
    });
  });

  it('weights split by rows over several bindings: each part writes its own columns', async () => {
    const gpu = await getDevice({ maxStorageBufferBindingSize: 32768, poison: true });
    try {
      const c: Case = { M: 1, K: 320, N: 700, dtype: 'q4', residual: 'inplace' };
      expect(await check(gpu, c, true), `${label(c)}, seed ${seed}`).toBeLessThanOrEqual(1e-5);
    } finally {
      gpu.destroy();
    }
  });
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
