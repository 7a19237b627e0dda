import { afterAll, describe, expect, it } from 'vitest';
import { headsRopeView, qkvRopeView, rope, type RopePositions, type RopeView } from '../src/ops/rope.js';
import { freshSeed, randn, relL2, rng, testGpu } from './util.js';

const gpu = await testGpu();
afterAll(() => gpu.destroy());

/** float64 reference: rotate the viewed heads of x [rows, stride]; base computed here from the HF formula. */
function ropeRef(x: Float32Array, rows: number, stride: number, v: RopeView, offset: number, base: number): Float64Array {
  const out = Float64Array.from(x);
  const half = v.headDim / 2;
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < v.groups; g++) {
      for (let j = 0; j < v.rotatedPerGroup; j++) {
        const col = r * stride + g * v.groupStride + j * v.headDim;
        for (let i = 0; i < half; i++) {
          const a = (offset + r) * base ** (-(2 * i) / v.headDim);
          const x1 = x[col + i];
          const x2 = x[col + i + half];
          out[col + i] = x1 * Math.cos(a) - x2 * Math.sin(a);
          out[col + i + half] = x2 * Math.cos(a) + x1 * Math.sin(a);
        }
      }
    }
  }
  return out;
}

describe('rope', () => {
  const cases: [string, number, number, RopeView, RopePositions, number][] = [
    // name, rows, row stride, view, positions, base expected by the reference
    ['fused wqkv (rep 2, d 14), small positions', 37, 2 * 4 * 14, qkvRopeView(4, 2, 14), { positionOffset: 0, theta: 10000 }, 10000],
    ['InternLM2 wqkv at positions near 32768', 3, 8 * 6 * 128, qkvRopeView(32, 8, 128), { positionOffset: 32760, theta: 1e6 }, 1e6],
    ['separate k, positions near 1e6', 5, 3 * 128, headsRopeView(3, 128), { positionOffset: 999_990, theta: 1e6 }, 1e6],
    // dynamic NTK: L = 40 + 37 > 64 switches the base for every position
    ['dynamic NTK past max positions', 37, 2 * 6 * 64, qkvRopeView(8, 2, 64), { positionOffset: 40, theta: 1e6, maxPositionEmbeddings: 64, scalingFactor: 2 }, 1e6 * ((2 * 77) / 64 - 1) ** (64 / 62)],
    ['dynamic NTK inside max positions is plain', 7, 2 * 6 * 64, qkvRopeView(8, 2, 64), { positionOffset: 40, theta: 1e6, maxPositionEmbeddings: 64, scalingFactor: 2 }, 1e6],
  ];
  it.each(cases)('%s', async (_name, rows, stride, view, pos, base) => {
    const seed = freshSeed();
    const x = randn(rows * stride, rng(seed));
    const t = await gpu.upload([rows, stride], 'f32', x);
    const got = await gpu.step((rec) => {
      rope(rec, t, view, pos);
      return rec.read(t);
    });
    const want = ropeRef(x, rows, stride, view, pos.positionOffset, base);
    expect(relL2(got, want), `seed ${seed}`).toBeLessThan(1e-6);
    // columns outside the view (v heads) are untouched, bit for bit
    const inView = new Set<number>();
    for (let g = 0; g < view.groups; g++) for (let c = 0; c < view.rotatedPerGroup * view.headDim; c++) inView.add(g * view.groupStride + c);
    for (let i = 0; i < x.length; i++) if (!inView.has(i % stride) && got[i] !== x[i]) throw new Error(`column ${i % stride} of row ${Math.floor(i / stride)} changed`);
  });

  it('rejects bad views', async () => {
    const x = gpu.empty([2, 96]);
    await expect(gpu.step((rec) => rope(rec, x, headsRopeView(1, 7), { positionOffset: 0, theta: 1e4 }))).rejects.toThrow(/headDim 7 must be even/);
    await expect(gpu.step((rec) => rope(rec, x, qkvRopeView(4, 2, 16), { positionOffset: 0, theta: 1e4 }))).rejects.toThrow(/do not fit rows of 96 columns/);
    await expect(gpu.step((rec) => rope(rec, x, headsRopeView(2, 32), { positionOffset: -1, theta: 1e4 }))).rejects.toThrow(/bad positionOffset -1/);
    await expect(gpu.step((rec) => rope(rec, x, headsRopeView(2, 32), { positionOffset: 0, theta: 1e4, scalingFactor: 2 }))).rejects.toThrow(/needs both/);
    const i = gpu.empty([2, 96], 'i32');
    await expect(gpu.step((rec) => rope(rec, i, headsRopeView(2, 32), { positionOffset: 0, theta: 1e4 }))).rejects.toThrow(/rope: x has dtype i32/);
  });
});
