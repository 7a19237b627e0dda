// Test helpers: seeded random data, float64 references' error metric, and one shared device.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { getDevice, type Gpu, type GpuOptions } from '../src/gpu/index.js';

/**
 * The project's shared folder (PVC's example assets, real-world fixtures), which tests read but the
 * repo never copies: $PVC_SHARED, else `shared/` beside this checkout (as CI has it), else the
 * workspace's /work/shared (for a clone made elsewhere, e.g. under /tmp).
 */
export const SHARED = ((): string => {
  const tried = [process.env.PVC_SHARED, join(import.meta.dirname, '../../shared'), '/work/shared'].filter((d): d is string => !!d);
  const found = tried.find((d) => existsSync(join(d, 'assets')));
  if (!found) throw new Error(`the shared folder (assets, fixtures) was not found; tried ${tried.join(', ')}; set PVC_SHARED`);
  return found;
})();

/** Mulberry32: small seeded PRNG so failures reproduce (the seed is printed in messages). */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A fresh seed per run (fresh random inputs), overridable with TEST_SEED to reproduce. */
export function freshSeed(): number {
  return process.env.TEST_SEED ? Number(process.env.TEST_SEED) : (Math.random() * 2 ** 31) >>> 0;
}

/** Normal(0, std) samples as Float32Array (Box-Muller). */
export function randn(n: number, rand: () => number, std = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(rand(), 1e-12);
    out[i] = std * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
  }
  return out;
}

/** Relative L2 error ||got - want|| / ||want||; NaN anywhere in got gives Infinity. */
export function relL2(got: ArrayLike<number>, want: ArrayLike<number>): number {
  if (got.length !== want.length) throw new Error(`length mismatch: ${got.length} vs ${want.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < got.length; i++) {
    if (!Number.isFinite(got[i])) return Infinity;
    const d = got[i] - want[i];
    num += d * d;
    den += want[i] * want[i];
  }
  return Math.sqrt(num / Math.max(den, 1e-300));
}

/** float64 erf: Taylor series for |x| < 3, continued fraction beyond (exact to ~1e-15); for GELU references. */
export const erf = (x: number): number => {
  const a = Math.abs(x);
  if (a < 3) {
    let term = a;
    let sum = a;
    for (let n = 1; n < 100; n++) {
      term *= (-a * a) / n;
      sum += term / (2 * n + 1);
    }
    return Math.sign(x) * sum * (2 / Math.sqrt(Math.PI));
  }
  let f = 0;
  for (let n = 60; n >= 1; n--) f = n / 2 / (a + f);
  return Math.sign(x) * (1 - Math.exp(-a * a) / Math.sqrt(Math.PI) / (a + f));
};

let shared: Promise<Gpu> | null = null;

/** One poisoned device per test file (vitest runs files in separate workers). */
export function testGpu(options: GpuOptions = {}): Promise<Gpu> {
  if (Object.keys(options).length) return getDevice({ poison: true, ...options });
  shared ??= getDevice({ poison: true });
  return shared;
}
