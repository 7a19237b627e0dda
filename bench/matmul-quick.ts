// Quick matmul timing on this machine: several dispatches in one submit, median of repeats.
// Usage: npx tsx bench/matmul-quick.ts [M K N dtype]...   (default: the shapes of the performance bars)

import { getDevice, toBf16Bits, toF16Bits, type DType } from '../src/gpu/index.js';
import { matmul } from '../src/ops/matmul.js';

const gpu = await getDevice();
const args = process.argv.slice(2);
const cases: [number, number, number, DType][] = [];
for (let i = 0; i + 3 < args.length; i += 4) cases.push([+args[i], +args[i + 1], +args[i + 2], args[i + 3] as DType]);
if (!cases.length) cases.push([256, 4096, 4096, 'bf16'], [1025, 1024, 4096, 'bf16'], [1, 4096, 14336, 'bf16']);

for (const [M, K, N, dtype] of cases) {
  const rand = () => Math.random() - 0.5;
  const x = await gpu.upload([M, K], 'f32', Float32Array.from({ length: M * K }, rand));
  const wv = Float32Array.from({ length: N * K }, rand);
  const w = await gpu.upload([N, K], dtype, dtype === 'f32' ? wv : dtype === 'bf16' ? toBf16Bits(wv) : toF16Bits(wv), 'w', false);
  const reps = M <= 8 ? 20 : 3;
  const times: number[] = [];
  for (let i = 0; i < 6; i++) {
    const t0 = performance.now();
    await gpu.step((rec) => {
      for (let r = 0; r < reps; r++) matmul(rec, x, w).release();
    });
    await gpu.sync();
    if (i > 0) times.push((performance.now() - t0) / reps);
  }
  times.sort((a, b) => a - b);
  const ms = times[times.length >> 1];
  const wBytes = N * K * (dtype === 'f32' ? 4 : 2);
  console.log(`${M}x${K}->${N} ${dtype}: ${ms.toFixed(2)} ms  ${((2 * M * N * K) / ms / 1e6).toFixed(1)} GFLOP/s  ${(wBytes / ms / 1e6).toFixed(2)} GB/s of weights  (min ${times[0].toFixed(2)} ms)`);
  x.release();
  w.release();
}
gpu.destroy();
