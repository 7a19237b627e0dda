// Quick timing of the attention kernel at the model's shapes (medians of several runs).
// Usage: npx tsx bench/attention-quick.ts [vit|prefill|decode|temporal ...] [--hardware] [--cpu] [--reps N]

import { getDevice, type Gpu, type Tensor } from '../src/gpu/index.js';
import { llmAttention, temporalAttention, vitAttention } from '../src/ops/attention.js';
import type { Recorder } from '../src/gpu/recorder.js';

const args = process.argv.slice(2);
const reps = Number(args[args.indexOf('--reps') + 1] || 5);
const which = args.filter((a) => !a.startsWith('--') && !/^\d+$/.test(a));
const gpu = await getDevice({ adapterClass: args.includes('--hardware') ? 'hardware' : undefined });
console.log(`${gpu.description} (${gpu.adapterClass} variant)`);

async function rand(g: Gpu, shape: number[]): Promise<Tensor> {
  const n = shape.reduce((a, b) => a * b);
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = Math.random() * 2 - 1;
  return g.upload(shape, 'f32', x);
}

/**
 * Median time of one step running `fn` (the first run, which compiles, is not counted). With --cpu,
 * the process's CPU time divided by 2 (lavapipe's threads on this 2-core VM): what a quiet machine's
 * wall time would be when other engineers' jobs share the cores.
 */
const cpuClock = args.includes('--cpu');
async function time(fn: (rec: Recorder) => Tensor): Promise<number> {
  const ms: number[] = [];
  for (let r = 0; r <= reps; r++) {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    await gpu.step((rec) => fn(rec).release());
    await gpu.sync();
    const c = process.cpuUsage(c0);
    if (r > 0) ms.push(cpuClock ? (c.user + c.system) / 2000 : performance.now() - t0);
  }
  ms.sort((a, b) => a - b);
  return ms[ms.length >> 1];
}

const cases: Record<string, () => Promise<string>> = {
  async vit() {
    const [n, heads, d] = [1025, 16, 64];
    const qkv = await rand(gpu, [n, 3 * heads * d]);
    const ms = await time((rec) => vitAttention(rec, qkv, heads));
    return `ViT 16x1025 d64 bidirectional: ${ms.toFixed(1)} ms, ${((4 * n * n * d * heads) / ms / 1e6).toFixed(2)} GFLOP/s`;
  },
  async prefill() {
    const [n, heads, kvHeads, d] = [2048, 32, 8, 128];
    const qkv = await rand(gpu, [n, kvHeads * (heads / kvHeads + 2) * d]);
    const kc = await rand(gpu, [n, kvHeads * d]);
    const vc = await rand(gpu, [n, kvHeads * d]);
    const ms = await time((rec) => llmAttention(rec, qkv, kc, vc, { heads, kvHeads, kvLen: n }));
    return `LLM prefill 2048 32/8 d128 causal: ${ms.toFixed(1)} ms, ${((2 * n * (n + 1) * d * heads) / ms / 1e6).toFixed(2)} GFLOP/s (causal half)`;
  },
  async decode() {
    const [lk, heads, kvHeads, d] = [4096, 32, 8, 128];
    const qkv = await rand(gpu, [1, kvHeads * (heads / kvHeads + 2) * d]);
    const kc = await rand(gpu, [lk, kvHeads * d]);
    const vc = await rand(gpu, [lk, kvHeads * d]);
    const ms = await time((rec) => llmAttention(rec, qkv, kc, vc, { heads, kvHeads, kvLen: lk }));
    return `LLM decode 1x4096 32/8 d128: ${ms.toFixed(2)} ms, ${((2 * lk * kvHeads * d * 4) / ms / 1e6).toFixed(2)} GB/s of K+V`;
  },
  async temporal() {
    const [f, p, heads, d] = [8, 1025, 16, 64];
    const x = await rand(gpu, [f, p, 3 * heads * d]);
    const ms = await time((rec) => temporalAttention(rec, x, heads));
    return `temporal F=8 P=1025 16 heads d64 causal: ${ms.toFixed(2)} ms`;
  },
};

for (const name of which.length ? which : Object.keys(cases)) console.log(await cases[name]());
gpu.destroy();
