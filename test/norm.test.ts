import { afterAll, describe, expect, it } from 'vitest';
import { layerNorm, rmsNorm } from '../src/ops/norm.js';
import type { Gpu } from '../src/gpu/index.js';
import { freshSeed, randn, relL2, rng, testGpu } from './util.js';

// every variant: workgroup 64 (software) and 256 (hardware), with and without subgroups
const software = await testGpu({ adapterClass: 'software' });
const hardware = await testGpu({ adapterClass: 'hardware' });
const plain = await testGpu({ adapterClass: 'hardware' });
plain.features.subgroups = false;
afterAll(() => {
  software.destroy();
  hardware.destroy();
  plain.destroy();
});
const gpu = software;

function layerNormRef(x: Float32Array, w: Float32Array, b: Float32Array, c: number, eps: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / c; r++) {
    let mean = 0;
    for (let j = 0; j < c; j++) mean += x[r * c + j];
    mean /= c;
    let v = 0;
    for (let j = 0; j < c; j++) v += (x[r * c + j] - mean) ** 2;
    const inv = 1 / Math.sqrt(v / c + eps);
    for (let j = 0; j < c; j++) out[r * c + j] = (x[r * c + j] - mean) * inv * w[j] + b[j];
  }
  return out;
}

function rmsNormRef(x: Float32Array, w: Float32Array, c: number, eps: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / c; r++) {
    let ms = 0;
    for (let j = 0; j < c; j++) ms += x[r * c + j] ** 2;
    const inv = 1 / Math.sqrt(ms / c + eps);
    for (let j = 0; j < c; j++) out[r * c + j] = x[r * c + j] * inv * w[j];
  }
  return out;
}

describe.each([
  ['software, subgroups when available', () => software],
  ['hardware, subgroups when available', () => hardware],
  ['hardware, shared-memory fallback', () => plain],
])('norms (%s)', (_name, dev: () => Gpu) => {
  it.each([
    [37, 77],
    [5, 1031],
    [3, 4099],
  ])('layerNorm and rmsNorm match float64 for [%i, %i]', async (m, c) => {
    const g = dev();
    const seed = freshSeed();
    const r = rng(seed);
    // an offset mean stresses the variance computation (two-pass, not E[x^2] - E[x]^2)
    const x = randn(m * c, r, 2).map((v) => v + 5);
    const w = randn(c, r);
    const b = randn(c, r);
    const [tx, tw, tb] = await Promise.all([g.upload([m, c], 'f32', x), g.upload([c], 'f32', w), g.upload([c], 'f32', b)]);
    const [ln, rms] = await g.step((rec) => Promise.all([rec.read(layerNorm(rec, tx, tw, tb, 1e-6)), rec.read(rmsNorm(rec, tx, tw, 1e-5))]));
    expect(relL2(ln, layerNormRef(x, w, b, c, 1e-6)), `layerNorm seed ${seed}`).toBeLessThan(1e-5);
    expect(relL2(rms, rmsNormRef(x, w, c, 1e-5)), `rmsNorm seed ${seed}`).toBeLessThan(1e-5);
    for (const t of [tx, tw, tb]) t.release();
  });
});

describe('norm errors', () => {
  it('rejects bad shapes and dtypes', async () => {
    const x = gpu.empty([4, 10]);
    const w9 = gpu.empty([9]);
    const w10 = gpu.empty([10]);
    const wi = gpu.empty([10], 'i32');
    await expect(gpu.step((rec) => rmsNorm(rec, x, w9, 1e-5))).rejects.toThrow(/rmsNorm: weight has shape \[9\]; expected \[10\]/);
    await expect(gpu.step((rec) => layerNorm(rec, x, w10, wi, 1e-5))).rejects.toThrow(/layerNorm: bias has dtype i32; expected f32/);
    await expect(gpu.step((rec) => layerNorm(rec, x, w10, w9, 1e-5))).rejects.toThrow(/bias has shape \[9\]; expected \[10\]/);
    await expect(gpu.step((rec) => rmsNorm(rec, x, w10, 0))).rejects.toThrow(/eps must be positive/);
  });
});
