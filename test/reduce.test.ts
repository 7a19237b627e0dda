import { afterAll, describe, expect, it } from 'vitest';
import { argmax, NON_FINITE_BIT, softmax } from '../src/ops/reduce.js';
import { freshSeed, randn, relL2, rng, testGpu } from './util.js';

const gpu = await testGpu();
const plain = await testGpu({ adapterClass: gpu.adapterClass });
plain.features.subgroups = false;
afterAll(() => {
  gpu.destroy();
  plain.destroy();
});

function argmaxRef(x: Float32Array, v: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < x.length / v; r++) {
    let best = 0;
    for (let j = 1; j < v; j++) if (x[r * v + j] > x[r * v + best]) best = j;
    out.push(best);
  }
  return out;
}

function softmaxRef(x: Float32Array, v: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / v; r++) {
    const row = x.subarray(r * v, (r + 1) * v);
    const m = row.reduce((a, b) => Math.max(a, b), -Infinity);
    let s = 0;
    for (let j = 0; j < v; j++) s += Math.exp(row[j] - m);
    for (let j = 0; j < v; j++) out[r * v + j] = Math.exp(row[j] - m) / s;
  }
  return out;
}

describe('argmax', () => {
  it('matches the CPU on the real vocabulary size, with ties going to the lowest index', async () => {
    const seed = freshSeed();
    const r = rng(seed);
    const m = 5;
    const v = 92553;
    const x = randn(m * v, r, 4);
    // row 1: a tie between two maxima; row 2: max at the very end; row 3: all equal; row 4: tiny rows of the loop tail
    x[v + 70000] = 100;
    x[v + 1234] = 100;
    x[2 * v + v - 1] = 100;
    x.fill(-3, 3 * v, 4 * v);
    const t = await gpu.upload([m, v], 'f32', x);
    const got = await gpu.step((rec) => rec.read(argmax(rec, t)));
    expect(Array.from(got), `seed ${seed}`).toEqual(argmaxRef(x, v));
    expect(got[1]).toBe(1234);
    expect(got[3]).toBe(0);
  });

  it('handles rows shorter than the workgroup and NaN like torch; flags rows whose largest value is not finite', async () => {
    const x = Float32Array.from([1, 5, 5, 2, NaN, 7, 3, 0, 0, -Infinity, Infinity, 1, -Infinity, -4, 2]);
    const t = await gpu.upload([5, 3], 'f32', x);
    const got = await gpu.step((rec) => rec.read(argmax(rec, t)));
    // torch.argmax: [1, 1, 0, 1, 2]; NaN (row 1) and +Inf (row 3) set the flag, a -Inf that does not win (row 4) does not
    expect(Array.from(got)).toEqual([1, 1 | NON_FINITE_BIT, 0, 1 | NON_FINITE_BIT, 2].map((v) => v >>> 0));
  });
});

describe.each([
  ['subgroups when available', () => gpu],
  ['shared-memory fallback', () => plain],
])('softmax (%s)', (_name, dev) => {
  it.each([
    [37, 131],
    [3, 92553],
  ])('matches float64 for [%i, %i]', async (m, v) => {
    const g = dev();
    const seed = freshSeed();
    const x = randn(m * v, rng(seed), 5);
    const t = await g.upload([m, v], 'f32', x);
    const got = await g.step((rec) => rec.read(softmax(rec, t)));
    expect(relL2(got, softmaxRef(x, v)), `seed ${seed}`).toBeLessThan(1e-5);
  });
});

describe('reduce errors', () => {
  it('rejects non-f32 input', async () => {
    const x = gpu.empty([2, 3], 'i32');
    await expect(gpu.step((rec) => argmax(rec, x))).rejects.toThrow(/argmax: x has dtype i32; expected f32/);
    await expect(gpu.step((rec) => softmax(rec, x))).rejects.toThrow(/softmax: x has dtype i32; expected f32/);
  });
});
