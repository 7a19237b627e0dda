// q8 / q4 weights in every matmul kernel variant, against a float64 matmul over the dequantized
// weights (dequantizeRows, itself checked bit for bit against numpy in quantize.test.ts).
import { afterAll, describe, expect, it } from 'vitest';
import { getDevice, toBf16Bits, type Gpu, type Tensor } from '../src/gpu/index.js';
import { matmul, type MatmulOptions } from '../src/ops/matmul.js';
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
afterAll(() => [software, hardware, noSubgroups, narrowSubgroups, bufferWeights].forEach((g) => g.destroy()));

interface Case {
  M: number;
  K: number;
  N: number;
  dtype: QuantDType;
  bias?: boolean;
  gelu?: boolean;
  residual?: boolean | 'inplace';
}

async function check(gpu: Gpu, c: Case, expectSplit = false): Promise<number> {
  const { M, K, N, dtype } = c;
  const x = randn(M * K, rand);
  const bits = toBf16Bits(randn(N * K, rand, 0.5));
  const wq = dequantizeRows(dtype, quantizeRows(dtype, bits, K), K);
  const bias = randn(N, rand);
  const residual = randn(M * N, rand);
  const want = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[m * K + k] * wq[n * K + k];
      if (c.bias) s += bias[n];
      if (c.gelu) s = 0.5 * s * (1 + erf(s / Math.SQRT2));
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

const label = (c: Case) => `${c.M}x${c.K}->${c.N} ${c.dtype}${c.bias ? ' +bias' : ''}${c.gelu ? ' +gelu' : ''}${c.residual ? ` +residual${c.residual === 'inplace' ? ' (in place)' : ''}` : ''}`;

const both = <T>(f: (dtype: QuantDType) => T[]): T[] => (['q4', 'q8'] as const).flatMap(f);
const gemm: Case = { M: 37, K: 96, N: 131, dtype: 'q4', bias: true, gelu: true, residual: true }; // K: no whole 64-tile, a partly filled scale unit
const gemv: Case = { M: 1, K: 4096, N: 67, dtype: 'q4' };
const gemv2: Case = { M: 2, K: 160, N: 131, dtype: 'q4', bias: true, residual: 'inplace' };
const devices: [string, Gpu, Case[]][] = [
  ['software (texels)', software, both((dtype) => [gemm, gemv, gemv2].map((c) => ({ ...c, dtype })))],
  ['software, weights in buffers', bufferWeights, both((dtype) => [{ M: 19, K: 288, N: 70, dtype, residual: 'inplace' as const }, { ...gemv, dtype }])],
  ['hardware', hardware, both((dtype) => [{ M: 21, K: 96, N: 75, dtype, bias: true, residual: true }, { ...gemv2, dtype }])],
  ['software without subgroups', noSubgroups, [{ ...gemm, gelu: false }, gemv]],
  ['software, subgroups of 4', narrowSubgroups, [{ ...gemm, dtype: 'q8', gelu: false }, { ...gemv, dtype: 'q8' }]],
];

describe.each(devices)('quantized matmul on %s kernels', (_, gpu, cases) => {
  it.each(cases.map((c) => [label(c), c] as const))('%s', async (_name, c) => {
    expect(await check(gpu, c), `seed ${seed}`).toBeLessThanOrEqual(1e-5);
  });
});

describe('quantized weights split by rows over several bindings', () => {
  const splitCases: Case[] = [
    { M: 11, K: 320, N: 700, dtype: 'q4', bias: true, residual: true },
    { M: 1, K: 320, N: 700, dtype: 'q8', residual: 'inplace' },
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
