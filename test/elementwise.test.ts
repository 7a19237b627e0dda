import { afterAll, describe, expect, it } from 'vitest';
import { add, gatedResidual, gelu, modulate, mul, scale, silu, siluMul } from '../src/ops/elementwise.js';
import { freshSeed, randn, relL2, rng, testGpu } from './util.js';

const gpu = await testGpu();
afterAll(() => gpu.destroy());

/** float64 erfc: power series below 3, continued fraction above (both to ~1e-15). */
function erfc(x: number): number {
  if (x < 0) return 2 - erfc(-x);
  if (x < 3) {
    let term = x;
    let sum = x;
    for (let n = 1; n < 100; n++) {
      term *= (-x * x) / n;
      sum += term / (2 * n + 1);
    }
    return 1 - (2 / Math.sqrt(Math.PI)) * sum;
  }
  let f = x;
  for (let n = 60; n >= 1; n--) f = x + n / 2 / f;
  return Math.exp(-x * x) / Math.sqrt(Math.PI) / f;
}
const geluRef = (x: number) => 0.5 * x * erfc(-x / Math.SQRT2);
const siluRef = (x: number) => x / (1 + Math.exp(-x));

describe('elementwise', () => {
  const seed = freshSeed();
  const r = rng(seed);

  // 131 columns run the scalar variant, 132 the vec4 one
  it.each([131, 132])('add, mul, scale, silu, siluMul, gelu match float64 ([37, %i])', async (cols) => {
    const n = 37 * cols;
    const a = randn(n, r, 3);
    const b = randn(n, r);
    const ta = await gpu.upload([37, cols], 'f32', a);
    const tb = await gpu.upload([37, cols], 'f32', b);
    const got = await gpu.step((rec) => [add, mul, siluMul].map((f) => rec.read(f(rec, ta, tb))).concat([scale(rec, ta, -1.75), gelu(rec, ta), silu(rec, ta)].map((t) => rec.read(t))));
    const res = await Promise.all(got);
    const want = [
      Float64Array.from(a, (x, i) => x + b[i]),
      Float64Array.from(a, (x, i) => x * b[i]),
      Float64Array.from(a, (x, i) => siluRef(x) * b[i]),
      Float64Array.from(a, (x) => x * -1.75),
      Float64Array.from(a, geluRef),
      Float64Array.from(a, siluRef),
    ];
    const names = ['add', 'mul', 'siluMul', 'scale', 'gelu', 'silu'];
    names.forEach((name, k) => expect(relL2(res[k], want[k]), `${name} seed ${seed}`).toBeLessThan(1e-6));
    // the negative GELU tail on its own (where 1 + erf would cancel)
    const tail = [...a.keys()].filter((i) => a[i] < -2);
    expect(relL2(tail.map((i) => res[4][i]), tail.map((i) => want[4][i])), `gelu tail seed ${seed}`).toBeLessThan(1e-5);
  });

  it('gelu is accurate on a dense grid including the far tails', async () => {
    const xs = Float32Array.from({ length: 4001 }, (_, i) => -10 + i * 0.005);
    const t = await gpu.upload([xs.length], 'f32', xs);
    const got = await gpu.step((rec) => rec.read(gelu(rec, t)));
    let worst = 0;
    for (let i = 0; i < xs.length; i++) {
      const w = geluRef(xs[i]);
      // relative error where the value is representable, absolute near the zero crossing
      worst = Math.max(worst, Math.abs(got[i] - w) / Math.max(Math.abs(w), 1e-30));
    }
    expect(worst).toBeLessThan(2e-5);
  });

  it.each([77, 132])('modulate and gatedResidual broadcast AdaLN chunks per frame (C = %i)', async (C) => {
    const F = 3;
    const P = 13;
    const k = 6;
    const x = randn(F * P * C, r);
    const y = randn(F * P * C, r);
    const mod = randn(F * k * C, r, 0.5);
    const ls = randn(C, r);
    const [tx, ty, tm, tl] = await Promise.all([gpu.upload([F * P, C], 'f32', x), gpu.upload([F * P, C], 'f32', y), gpu.upload([F, k * C], 'f32', mod), gpu.upload([C], 'f32', ls)]);
    const res = await gpu.step((rec) =>
      Promise.all([
        rec.read(modulate(rec, tx, tm, { tokensPerFrame: P, shiftChunk: 3, scaleChunk: 4 })),
        rec.read(gatedResidual(rec, tx, ty, { scale: tl, gate: { mod: tm, chunk: 5, tokensPerFrame: P } })),
        rec.read(gatedResidual(rec, tx, ty, { gate: { mod: tm, chunk: 2, tokensPerFrame: P } })),
        rec.read(gatedResidual(rec, tx, ty, { scale: tl })),
        rec.read(gatedResidual(rec, tx, ty)),
      ]),
    );
    const m = (f: number, chunk: number, c: number) => mod[f * k * C + chunk * C + c];
    const ref = (fn: (i: number, f: number, c: number) => number) =>
      Float64Array.from(x, (_, i) => {
        const c = i % C;
        const f = Math.floor(i / C / P);
        return fn(i, f, c);
      });
    const want = [
      ref((i, f, c) => x[i] * (1 + m(f, 4, c)) + m(f, 3, c)),
      ref((i, f, c) => x[i] + ls[c] * m(f, 5, c) * y[i]),
      ref((i, f, c) => x[i] + m(f, 2, c) * y[i]),
      ref((i, _f, c) => x[i] + ls[c] * y[i]),
      ref((i) => x[i] + y[i]),
    ];
    want.forEach((w, j) => expect(relL2(res[j], w), `case ${j} seed ${seed}`).toBeLessThan(1e-6));
  });

  it('rejects bad calls with clear messages', async () => {
    const x = gpu.empty([6, 5]);
    const mod = gpu.empty([2, 15]);
    const ls = gpu.empty([4]);
    const ids = gpu.empty([6, 5], 'i32');
    await expect(gpu.step((rec) => siluMul(rec, x, ids))).rejects.toThrow(/siluMul: b has dtype i32; expected f32/);
    await expect(gpu.step((rec) => gelu(rec, ids))).rejects.toThrow(/gelu: a has dtype i32/);
    await expect(gpu.step((rec) => modulate(rec, x, mod, { tokensPerFrame: 4, shiftChunk: 0, scaleChunk: 1 }))).rejects.toThrow(/6 rows, not a multiple of tokensPerFrame 4/);
    await expect(gpu.step((rec) => modulate(rec, x, mod, { tokensPerFrame: 2, shiftChunk: 0, scaleChunk: 1 }))).rejects.toThrow(/mod has shape \[2, 15\]; expected \[3, k\*5\]/);
    await expect(gpu.step((rec) => modulate(rec, x, mod, { tokensPerFrame: 3, shiftChunk: 0, scaleChunk: 3 }))).rejects.toThrow(/scaleChunk 3 is not a chunk index of mod \(k = 3\)/);
    await expect(gpu.step((rec) => gatedResidual(rec, x, x, { scale: ls }))).rejects.toThrow(/scale has shape \[4\]; expected \[5\]/);
  });
});
