import { afterAll, describe, expect, it } from 'vitest';
import { bf16BitsToF32, toBf16Bits, type Gpu } from '../src/gpu/index.js';
import { embedding } from '../src/ops/embedding.js';
import { dequantizeRows, quantizeRows, type QuantDType } from '../src/weights/quantize.js';
import { uploadQuantized } from '../src/weights/quantize-upload.js';
import { freshSeed, randn, rng, testGpu } from './util.js';

const gpu = await testGpu();
// a small binding limit splits the tables into several parts, as the real 758 MB table is
const small = await testGpu({ maxStorageBufferBindingSize: 16384 });
const buffers = await testGpu({ maxStorageBufferBindingSize: 32768, texelWeights: false });
afterAll(() => {
  gpu.destroy();
  small.destroy();
  buffers.destroy();
});

async function check(g: Gpu, dtype: 'bf16' | 'f32' | QuantDType, vocab: number, d: number, ids: number[], minParts: number): Promise<void> {
  const seed = freshSeed();
  const values = randn(vocab * d, rng(seed));
  const bits = toBf16Bits(values);
  const quant = dtype === 'q8' || dtype === 'q4';
  const table = quant ? await uploadQuantized(g, dtype, [vocab, d], bits, 'table') : await g.upload([vocab, d], dtype, dtype === 'bf16' ? bits : values, 'table', false);
  expect(table.parts.length).toBeGreaterThanOrEqual(minParts);
  expect(table.texels).toBe(g.texelWeights && (quant || (dtype === 'bf16' && d % 8 === 0)));
  // quantized: scale (f16) * code (small integer) is exact in f32
  const exact = quant ? Float32Array.from(dequantizeRows(dtype, quantizeRows(dtype, bits, d), d)) : dtype === 'bf16' ? bf16BitsToF32(bits) : values;
  const tids = await g.upload([ids.length], 'i32', Int32Array.from(ids));
  const got = await g.step((rec) => rec.read(embedding(rec, tids, table)));
  const want = new Float32Array(ids.length * d);
  ids.forEach((id, t) => {
    if (id >= 0 && id < vocab) want.set(exact.subarray(id * d, (id + 1) * d), t * d);
  });
  // a gather is exact: compare bit for bit (out-of-range ids give zero rows)
  expect(Array.from(got), `seed ${seed}`).toEqual(Array.from(want));
  table.release();
}

describe('embedding', () => {
  const r = rng(freshSeed());
  const ids = (vocab: number, n: number) => [...Array.from({ length: n }, () => Math.floor(r() * vocab)), 0, vocab - 1, -1, vocab, 2 ** 31 - 1, -(2 ** 31)];

  it('gathers from a bf16 table split into parts (odd dim)', () => check(small, 'bf16', 301, 77, ids(301, 31), 3));
  it('gathers from an f32 table split into parts', () => check(small, 'f32', 257, 45, ids(257, 31), 3));
  it('gathers rows wider than a workgroup from one part', () => check(gpu, 'bf16', 100, 300, ids(100, 37), 1));
  it('gathers from a bf16 table stored as texels, split into parts', async () => {
    expect(small.texelWeights, 'the software kernels keep such tables as texels').toBe(true);
    await check(small, 'bf16', 301, 40, ids(301, 31), 2);
  });
  for (const dtype of ['q4', 'q8'] as const) {
    it(`gathers from a ${dtype} table (scale * code), split into parts, as texels and from buffers`, async () => {
      await check(small, dtype, 301, 96, ids(301, 31), 2);
      await check(buffers, dtype, 301, 288, ids(301, 11), 2);
    });
  }

  it('rejects bad ids and shapes', async () => {
    const table = await gpu.allocWeight([10, 4], 'bf16');
    const tids = await gpu.upload([3], 'i32', Int32Array.from([1, 2, 10]));
    await expect(gpu.step((rec) => embedding(rec, tids, table, [1, 2, 10]))).rejects.toThrow(/id 10 at position 2 is outside the vocabulary \[0, 10\)/);
    const fids = gpu.empty([3], 'f32');
    await expect(gpu.step((rec) => embedding(rec, fids, table))).rejects.toThrow(/ids has dtype f32; expected i32/);
    const ids2 = gpu.empty([3, 1], 'i32');
    await expect(gpu.step((rec) => embedding(rec, ids2, table))).rejects.toThrow(/ids has shape \[3, 1\]; expected \[N\]/);
    table.release();
  });
});
