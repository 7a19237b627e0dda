import { afterAll, describe, expect, it } from 'vitest';
import { bf16BitsToF32, f16BitsToF32, getDevice, toBf16Bits, toF16Bits, type DType, type Gpu, type Tensor } from '../src/gpu/index.js';
import { matmul, type MatmulOptions } from '../src/ops/matmul.js';
import { erf, freshSeed, randn, relL2, rng, testGpu } from './util.js';

const seed = freshSeed();
const rand = rng(seed);

const software = await testGpu();
const hardware = await testGpu({ adapterClass: 'hardware' });
// the same adapter without subgroups, and with subgroups no wider than 4 lanes (as on SwiftShader)
const noSubgroups = await testGpu({ adapterClass: 'software' });
noSubgroups.features.subgroups = false;
const narrowSubgroups = await testGpu({ adapterClass: 'software' });
narrowSubgroups.features.subgroupMinSize = 4;
// the subgroup width changes the software kernels where K % 8 == 0 (GEMM rows per tile, GEMV
// activation loads), so that device runs those cases only
const wideLoads = (c: Case) => c.K % 8 === 0;
// software devices keep 16-bit weights with K % 8 == 0 as texels; this one keeps them in buffers
const bufferWeights = await testGpu({ adapterClass: 'software', texelWeights: false });
const devices: [string, Gpu, (c: Case) => boolean][] = [
  ['software', software, () => true],
  ['software, weights in buffers', bufferWeights, wideLoads],
  ['hardware', hardware, () => true],
  ['software without subgroups', noSubgroups, () => true],
  ['software, subgroups of 4', narrowSubgroups, wideLoads],
];
afterAll(() => devices.forEach(([, g]) => g.destroy()));

interface Case {
  M: number;
  K: number;
  N: number;
  dtype: DType;
  bias?: boolean;
  gelu?: boolean;
  scale?: boolean;
  residual?: boolean | 'inplace';
}

/** Weights as stored (bit patterns for 16-bit types) and the f32 values the kernel sees. */
function makeWeights(dtype: DType, n: number): { stored: Float32Array | Uint16Array; values: Float32Array } {
  const v = randn(n, rand, 0.5);
  if (dtype === 'bf16') {
    const bits = toBf16Bits(v);
    return { stored: bits, values: bf16BitsToF32(bits) };
  }
  if (dtype === 'f16') {
    const bits = toF16Bits(v);
    return { stored: bits, values: f16BitsToF32(bits) };
  }
  return { stored: v, values: v };
}

async function check(gpu: Gpu, c: Case, splitGpu = false): Promise<number> {
  const { M, K, N, dtype } = c;
  const x = randn(M * K, rand);
  const w = makeWeights(dtype, N * K);
  const bias = randn(N, rand);
  const scale = randn(N, rand);
  const residual = randn(M * N, rand);
  const want = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[m * K + k] * w.values[n * K + k];
      if (c.bias) s += bias[n];
      if (c.gelu) s = 0.5 * s * (1 + erf(s / Math.SQRT2));
      if (c.scale) s *= scale[n];
      if (c.residual) s += residual[m * N + n];
      want[m * N + n] = s;
    }
  }
  const tx = await gpu.upload([M, K], 'f32', x);
  const tw = await gpu.upload([N, K], dtype, w.stored, 'w', false);
  if (splitGpu) expect(tw.parts.length).toBeGreaterThan(1);
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
  `${c.M}x${c.K}->${c.N} ${c.dtype}` + ['bias', 'gelu', 'scale'].filter((k) => c[k as keyof Case]).map((k) => ` +${k}`).join('') + (c.residual ? ` +residual${c.residual === 'inplace' ? ' (in place)' : ''}` : '');

const cases: Case[] = [
  // GEMM: odd K (per-value loads; packed rows off word boundaries), K % 8 == 0 (wide loads), tails
  { M: 37, K: 77, N: 131, dtype: 'f32', bias: true },
  { M: 37, K: 77, N: 131, dtype: 'bf16', gelu: true },
  { M: 37, K: 64, N: 131, dtype: 'bf16', bias: true, gelu: true, scale: true, residual: true },
  { M: 70, K: 40, N: 300, dtype: 'f32', residual: 'inplace' },
  { M: 19, K: 48, N: 70, dtype: 'f16', bias: true, scale: true },
  { M: 9, K: 45, N: 33, dtype: 'f16', residual: true },
  // GEMV (M <= 8): K % 32 == 0, K % 32 == 8 (tail steps), odd K
  { M: 1, K: 4096, N: 67, dtype: 'bf16' },
  { M: 3, K: 104, N: 131, dtype: 'bf16', bias: true, scale: true, residual: true },
  { M: 8, K: 77, N: 131, dtype: 'f32', bias: true },
  { M: 5, K: 77, N: 131, dtype: 'bf16', residual: 'inplace' },
  { M: 2, K: 64, N: 100, dtype: 'f16', scale: true },
  { M: 7, K: 40, N: 65, dtype: 'f32' },
  { M: 4, K: 77, N: 50, dtype: 'bf16', gelu: true }, // GELU goes to the GEMM kernel
];

describe.each(devices)('matmul on %s kernels', (_, gpu, runs) => {
  it.each(cases.filter(runs).map((c) => [label(c), c] as const))('%s', async (_name, c) => {
    const err = await check(gpu, c);
    expect(err, `seed ${seed}`).toBeLessThanOrEqual(1e-5);
  });
});

describe('weights split by rows over several bindings', () => {
  const splitCases: Case[] = [
    { M: 11, K: 77, N: 700, dtype: 'bf16', bias: true, scale: true, residual: true },
    { M: 11, K: 64, N: 700, dtype: 'bf16', gelu: true },
    { M: 2, K: 77, N: 700, dtype: 'bf16', bias: true },
    { M: 1, K: 64, N: 700, dtype: 'bf16', residual: 'inplace' },
    { M: 6, K: 24, N: 700, dtype: 'f32', bias: true },
  ];
  for (const adapterClass of ['software', 'hardware'] as const) {
    it(`${adapterClass}: each part writes its own columns`, async () => {
      const gpu = await getDevice({ maxStorageBufferBindingSize: 32768, poison: true, adapterClass });
      try {
        for (const c of splitCases) expect(await check(gpu, c, true), `${label(c)}, seed ${seed}`).toBeLessThanOrEqual(1e-5);
      } finally {
        gpu.destroy();
      }
    });
  }
});

describe('bad calls', () => {
  const gpu = software;
  const t = (shape: number[], dtype: DType = 'f32') => gpu.empty(shape, dtype, 'arg');
  const expectThrow = async (fn: Parameters<Gpu['step']>[0], re: RegExp) => {
    await expect(gpu.step(fn)).rejects.toThrow(re);
  };
  it('rejects mismatched shapes and dtypes with clear messages', async () => {
    const x = t([4, 16]);
    const w = t([8, 16], 'bf16');
    await expectThrow((rec) => matmul(rec, x, t([8, 15], 'bf16')), /inner dimensions differ/);
    await expectThrow((rec) => matmul(rec, t([4, 16], 'bf16'), w), /x has dtype bf16; expected f32/);
    await expectThrow((rec) => matmul(rec, x, t([8, 16], 'i32')), /w has dtype i32/);
    await expectThrow((rec) => matmul(rec, t([2, 2, 16]), w), /x must be 2-D/);
    await expectThrow((rec) => matmul(rec, x, w, { bias: t([9]) }), /bias has shape \[9\]; expected \[8\]/);
    await expectThrow((rec) => matmul(rec, x, w, { scale: t([8], 'bf16') }), /scale has dtype bf16/);
    await expectThrow((rec) => matmul(rec, x, w, { residual: t([8, 4]) }), /residual has shape \[8, 4\]; expected \[4, 8\]/);
    await expectThrow((rec) => matmul(rec, x, w, { out: t([4, 9]) }), /out has shape/);
    await expectThrow((rec) => matmul(rec, x, w, { epilogue: 'relu' as 'gelu' }), /unknown epilogue/);
    await expectThrow((rec) => matmul(rec, x, t([16, 16], 'bf16'), { out: x }), /out shares its buffer with x/);
  });
  it('refuses texel weights on the hardware kernels', async () => {
    const forced = await getDevice({ adapterClass: 'hardware', texelWeights: true });
    try {
      const w = await forced.upload([8, 16], 'bf16', new Uint16Array(128), 'w', false);
      expect(w.texels).toBe(true);
      const x = forced.empty([4, 16], 'f32', 'x');
      await expect(forced.step((rec) => matmul(rec, x, w))).rejects.toThrow(/stored as texels, which only the software-adapter kernels read/);
    } finally {
      forced.destroy();
    }
  });
});
