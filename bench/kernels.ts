// Kernel microbenchmarks at the real model's shapes, beside the machine's measured ceilings and a
// WebGPU peer in the same run.
//
//   npm run bench:kernels [-- --json] [-- --no-peer] [-- --no-torch] [-- --only NAME]
//
// Each row: median ms over repeated runs after warm-up; GFLOP/s (compute-bound rows) or GB/s
// (bandwidth-bound rows: bytes read + bytes written per second); ratio to the ceiling measured now
// (PyTorch CPU bf16 at the same shape for compute rows; for bandwidth rows the traffic of a large
// on-device buffer copy, read + written, as STREAM counts a copy); and the peer (TensorFlow.js's
// WebGPU backend on the same adapter) with how many times faster we are. The "small kernels"
// section (norms, elementwise, rope, embedding, reductions, pixel shuffle, patch embedding, KV
// append; `--only small`, or `--only 'small rmsNorm'` for one) has no peer column. The "quant" section
// (`--only quant`) times q8 / q4 weights beside bf16 at the same shapes in the same run: weight
// bytes, GB/s of weights read, rows/s and the ratio to bf16's time (q8 / q4 weights in the SWAR
// GEMV's layout where it runs, which their float and dot4 rows read too).
// Tests never assert timings; bench/RESULTS.md records these tables.

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import { getDevice, partBuffer, toBf16Bits, type Gpu, type Recorder, type Tensor } from '../src/gpu/index.js';
import { InternLM2 } from '../src/models/internlm2.js';
import { WeightStore } from '../src/models/weights.js';
import { attention, type AttentionView } from '../src/ops/attention.js';
import { add, gelu, modulate, siluMul } from '../src/ops/elementwise.js';
import { embedding } from '../src/ops/embedding.js';
import { appendKv } from '../src/ops/kv_cache.js';
import { matmul, matmulConfig, useSwar } from '../src/ops/matmul.js';
import { layerNorm, rmsNorm } from '../src/ops/norm.js';
import { patchEmbed } from '../src/ops/patch_embed.js';
import { pixelShuffle } from '../src/ops/pixel_shuffle.js';
import { argmax, softmax } from '../src/ops/reduce.js';
import { qkvRopeView, rope } from '../src/ops/rope.js';
import type { LlmConfig } from '../src/weights/config.js';
import { quantizeRows, quantRowBytes, type QuantDType } from '../src/weights/quantize.js';
import { allocQuantized } from '../src/weights/quantize-upload.js';
import { createTfjsPeer, type Peer } from './peer-tfjs.js';

const args = process.argv.slice(2);
const asJson = args.includes('--json');
const usePeer = !args.includes('--no-peer');
const useTorch = !args.includes('--no-torch');
const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : null;
const TORCH = '/usr/bin/python3';

interface Row {
  kernel: string;
  shape: string;
  dtype: string;
  ms: number;
  gflops?: number;
  gbps?: number;
  ceiling?: string;
  ratio_ceiling?: number;
  peer_ms?: number;
  ratio_peer?: number;
  note?: string;
}

const log = (s: string) => (asJson ? process.stderr.write(s + '\n') : console.log(s));

/** Median wall time of one submitted step (waited for), after one warm-up run. */
async function timeStep(gpu: Gpu, record: (rec: Recorder) => void, reps: number): Promise<number> {
  const once = async () => {
    const t0 = performance.now();
    await gpu.step((rec) => record(rec));
    await gpu.sync();
    return performance.now() - t0;
  };
  await once();
  const times: number[] = [];
  for (let i = 0; i < reps; i++) times.push(await once());
  return median(times);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

/**
 * Random bf16 weight without generating one random number per element: a random block tiled.
 * (2-D ones with K % 8 == 0 become texels on software adapters; others stay buffers.)
 */
async function randomBf16(gpu: Gpu, shape: number[], label: string): Promise<Tensor> {
  const w = await gpu.allocWeight(shape, 'bf16', label);
  // whole blocks of 8 rows (texel weights lay 8 rows side by side; a partial block is written texel by texel)
  const blockRows = 8 * Math.max(1, Math.floor((1 << 17) / w.rowSize));
  const block = toBf16Bits(Float32Array.from({ length: blockRows * w.rowSize }, () => (Math.random() - 0.5) * 0.05));
  const bytes = new Uint8Array(block.buffer);
  const total = w.numel * 2;
  for (let off = 0; off < total; off += bytes.length) gpu.writeBytes(w, bytes.subarray(0, Math.min(bytes.length, total - off)), off);
  await gpu.sync();
  return w;
}

/** Random q8 / q4 weight: a quantized block of random rows, tiled (as randomBf16). */
async function randomQuantized(gpu: Gpu, dtype: QuantDType, [n, k]: [number, number], label: string): Promise<Tensor> {
  const { tensor, storage, rowBytes } = await allocQuantized(gpu, dtype, [n, k], label);
  const blockRows = 8 * Math.max(1, Math.floor((1 << 17) / k)); // whole 8-row blocks (see randomBf16)
  const block = quantizeRows(dtype, toBf16Bits(Float32Array.from({ length: blockRows * k }, () => (Math.random() - 0.5) * 0.05)), k);
  for (let r = 0; r < n; r += blockRows) gpu.writeBytes(storage, block.subarray(0, Math.min(blockRows, n - r) * rowBytes), r * rowBytes);
  await gpu.sync();
  return tensor;
}

async function randomF32(gpu: Gpu, shape: number[], label: string): Promise<Tensor> {
  const n = shape.reduce((a, b) => a * b, 1);
  return gpu.upload(shape, 'f32', Float32Array.from({ length: n }, () => Math.random() - 0.5), label);
}

/** PyTorch CPU ceilings for a batch of jobs (one process); empty when torch is missing. */
function torchCeilings(jobs: object[]): number[] | null {
  if (!useTorch || !existsSync(TORCH) || !jobs.length) return null;
  const r = spawnSync(TORCH, [new URL('./torch_ceiling.py', import.meta.url).pathname], { input: JSON.stringify(jobs), encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) {
    log(`(torch ceiling skipped: ${r.stderr.trim().split('\n').pop()})`);
    return null;
  }
  return r.stdout.trim().split('\n').map((l) => JSON.parse(l).ms as number);
}

/** On-device copy traffic: bytes read + bytes written per second by a large buffer-to-buffer copy. */
async function copyBandwidth(gpu: Gpu): Promise<number> {
  const bytes = 256 << 20;
  const a = await gpu.allocWeight([bytes / 4], 'u32', 'copy src');
  const b = await gpu.allocWeight([bytes / 4], 'u32', 'copy dst');
  gpu.writeBytes(a, new Uint8Array(bytes).fill(1));
  // copy in binding-sized pieces (the tensors are split by the binding limit)
  const ms = await timeStep(gpu, (rec) => a.parts.forEach((p, i) => rec.copyBuffer(partBuffer(a, p), 0, partBuffer(b, b.parts[i]), 0, partBuffer(a, p).size)), 5);
  a.release();
  b.release();
  return (2 * bytes) / ms / 1e6;
}

async function peerTime(peer: Peer | null, fn: (p: Peer) => Promise<number>): Promise<number | undefined> {
  if (!peer) return undefined;
  try {
    return await fn(peer);
  } catch (e) {
    log(`  (peer failed: ${(e as Error).message.split('\n')[0]})`);
    return undefined;
  }
}

async function main() {
  const gpu = await getDevice();
  const rows: Row[] = [];
  const want = (name: string) => !only || name.includes(only);
  log(`adapter: ${gpu.description} (${gpu.adapterClass}); CPU: ${os.cpus()[0]?.model} x${os.cpus().length}; node ${process.version}`);

  const copyGBs = await copyBandwidth(gpu);
  log(`ceiling: on-device buffer copy, ${copyGBs.toFixed(1)} GB/s read + written`);
  // The decoder layer row compares a wall-clock submit with timestamped kernels, so it runs first,
  // before the peer's device and the peer's JavaScript heap (its GC pauses land in the wall time).
  const layerRow = want('layer') ? await decoderLayer(gpu) : null;
  let peer: Peer | null = null;
  if (usePeer) {
    try {
      peer = await createTfjsPeer();
    } catch (e) {
      log(`(peer unavailable: ${(e as Error).message})`);
    }
  }

  // ---- matmul / GEMV with bf16 weights ----
  const gemms: [string, number, number, number][] = [
    ['vit.qkv', 1025, 1024, 3072],
    ['vit.fc1', 1025, 1024, 4096],
    ['square', 256, 4096, 4096],
    ['llm.prefill.wqkv', 512, 4096, 6144],
    ['llm.prefill.w1', 512, 4096, 14336],
    ['llm.decode.w1', 1, 4096, 14336],
    ['llm.decode.w2', 1, 14336, 4096],
  ].filter(([name]) => want(`matmul ${name}`)) as [string, number, number, number][];
  const ceil = torchCeilings(gemms.map(([, m, k, n]) => ({ kind: 'linear', m, k, n })));
  for (const [i, [name, m, k, n]] of gemms.entries()) {
    const x = await randomF32(gpu, [m, k], 'x');
    const w = await randomBf16(gpu, [n, k], name);
    const flops = 2 * m * k * n;
    const ms = await timeStep(gpu, (rec) => matmul(rec, x, w).release(), m <= 8 ? 10 : 5);
    const peerMs = await peerTime(peer, (p) => p.matmulMs(m, k, n));
    const row: Row = { kernel: m <= 8 ? 'gemv' : 'matmul', shape: `${name} ${m}x${k}->${n}`, dtype: 'bf16', ms, peer_ms: peerMs, ratio_peer: peerMs && peerMs / ms };
    if (m <= 8) {
      row.gbps = (n * k * 2 + 4 * (k + n)) / ms / 1e6; // weights, x, out
      row.ceiling = `copy ${copyGBs.toFixed(1)} GB/s r+w`;
      row.ratio_ceiling = row.gbps / copyGBs;
      if (ceil) row.note = `torch bf16 ${ceil[i].toFixed(2)} ms (${((n * k * 2) / ceil[i] / 1e6).toFixed(1)} GB/s)`;
    } else {
      row.gflops = flops / ms / 1e6;
      if (ceil) {
        row.ceiling = `torch bf16 ${(flops / ceil[i] / 1e6).toFixed(0)} GFLOP/s`;
        row.ratio_ceiling = ceil[i] / ms;
      }
    }
    rows.push(row);
    emit(row);
    x.release();
    w.release();
  }

  // ---- quantized weights (q8, q4) beside bf16 at the same shapes, interleaved in one run ----
  {
    const quantShapes: [string, number, number, number][] = [
      ['llm.decode.w1', 1, 4096, 14336],
      ['llm.decode.w2', 1, 14336, 4096],
      ['llm.prefill.w1', 512, 4096, 14336],
    ];
    if (want('quant host')) {
      // the load-time quantizer (host, one thread): CPU time per value, so a busy host matters less
      const k = 4096;
      const bits = toBf16Bits(Float32Array.from({ length: 1024 * k }, () => (Math.random() - 0.5) * 0.05));
      for (const dtype of ['q8', 'q4'] as const) {
        quantizeRows(dtype, bits.subarray(0, 16 * k), k); // warm-up (JIT)
        const [t0, c0] = [performance.now(), process.cpuUsage()];
        quantizeRows(dtype, bits, k);
        const ms = performance.now() - t0;
        const c = process.cpuUsage(c0);
        const cpuMs = (c.user + c.system) / 1000;
        const row: Row = { kernel: 'quantize (host)', shape: `1024x${k} bf16`, dtype, ms, note: `${((1024 * k) / cpuMs / 1e3).toFixed(1)} M values per CPU-second (${cpuMs.toFixed(0)} ms CPU): the full model's 7.74 G LLM weights in ~${((7.74e9 / ((1024 * k) / cpuMs)) / 1e3).toFixed(0)} s of CPU` };
        rows.push(row);
        emit(row);
      }
    }
    for (const [name, m, k, n] of quantShapes.filter(([name]) => want(`quant ${name}`))) {
      const x = await randomF32(gpu, [m, k], 'x');
      const q8 = await randomQuantized(gpu, 'q8', [n, k], name);
      const q4 = await randomQuantized(gpu, 'q4', [n, k], name);
      // the GEMV rows add the int8-activation variants where the adapter runs them: packed-multiply
      // (SWAR: the default where it runs) and dot4I8Packed
      const dot4 = m <= 8 && gpu.features.dot4 && gpu.features.subgroups;
      const swar = (dtype: QuantDType) => m <= 8 && useSwar('auto', gpu.features, gpu.texelWeights, dtype);
      const modes = { ...matmulConfig };
      const off = { dot4: 'off', swar: 'off' } as const;
      const variants: [string, Tensor, typeof matmulConfig][] = [['bf16', await randomBf16(gpu, [n, k], name), off], ['q8', q8, off], ['q4', q4, off]];
      if (swar('q8')) variants.push(['q8 swar', q8, { dot4: 'off', swar: 'auto' }]);
      if (swar('q4')) variants.push(['q4 swar', q4, { dot4: 'off', swar: 'auto' }]);
      if (dot4) variants.push(['q8 dot4', q8, { ...off, dot4: 'on' }], ['q4 dot4', q4, { ...off, dot4: 'on' }]);
      const dtypes = variants.map(([d]) => d);
      // rounds of one run each, so that the host's load drifts over all variants alike; besides wall
      // time, the process's CPU time (lavapipe's threads are ours), which a busy host disturbs less
      const run = ([, w, mode]: (typeof variants)[number]) => {
        Object.assign(matmulConfig, mode);
        return gpu.step((rec) => matmul(rec, x, w).release()).then(() => gpu.sync());
      };
      for (const v of variants) await run(v);
      const times: number[][] = dtypes.map(() => []);
      const cpu: number[][] = dtypes.map(() => []);
      for (let round = 0; round < (m <= 8 ? 11 : 5); round++) {
        for (const [i, w] of variants.entries()) {
          const [t0, c0] = [performance.now(), process.cpuUsage()];
          await run(w);
          const c = process.cpuUsage(c0);
          times[i].push(performance.now() - t0);
          cpu[i].push((c.user + c.system) / 1000);
        }
      }
      const ms = times.map(median);
      const cpuMs = cpu.map(median);
      Object.assign(matmulConfig, modes);
      for (const [i, dtype] of dtypes.entries()) {
        const wd = variants[i][1].dtype;
        const weightBytes = n * (wd === 'bf16' ? 2 * k : quantRowBytes(wd as QuantDType, k));
        const row: Row = { kernel: m <= 8 ? 'gemv' : 'matmul', shape: `${name} ${m}x${k}->${n}`, dtype, ms: ms[i], gbps: weightBytes / ms[i] / 1e6, note: `weights ${(weightBytes / 1e6).toFixed(1)} MB, ${((n / ms[i]) * 1000 / 1e6).toFixed(2)} M rows/s, ${(ms[i] / ms[0]).toFixed(2)}x bf16's time; CPU ${cpuMs[i].toFixed(0)} ms, ${(cpuMs[i] / cpuMs[0]).toFixed(2)}x bf16's` };
        if (m > 8) row.gflops = (2 * m * k * n) / ms[i] / 1e6;
        rows.push(row);
        emit(row);
      }
      [variants[0][1], q8, q4].forEach((w) => w.release());
      x.release();
    }
  }

  // ---- flash attention ----
  const attns: [string, number, number, number, number, number, boolean][] = [
    ['vit', 16, 16, 1025, 1025, 64, false],
    ['llm.prefill', 32, 8, 2048, 2048, 128, true],
    ['llm.decode', 32, 8, 1, 4096, 128, true],
  ].filter(([name]) => want(`attention ${name}`)) as [string, number, number, number, number, number, boolean][];
  const attnCeil = torchCeilings(attns.map(([, heads, kvHeads, lq, lk, d, causal]) => ({ kind: 'attn', heads, kv_heads: kvHeads, lq, lk, d, causal })));
  for (const [i, [name, heads, kvHeads, lq, lk, d, causal]] of attns.entries()) {
    const q = await randomF32(gpu, [lq, heads * d], 'q');
    const k = await randomF32(gpu, [lk, kvHeads * d], 'k');
    const v = await randomF32(gpu, [lk, kvHeads * d], 'v');
    const rep = heads / kvHeads;
    const view = (t: Tensor, stride: number, group: number): AttentionView => ({ tensor: t, rowStride: stride, groupStride: group });
    const ms = await timeStep(
      gpu,
      (rec) => attention(rec, view(q, heads * d, rep * d), view(k, kvHeads * d, d), view(v, kvHeads * d, d), { heads, kvHeads, headDim: d, lq, lk, mask: causal ? 'causal' : 'none' }).release(),
      3,
    );
    // causal prefill does about half the work; decode is one query row
    const pairs = causal && lq > 1 ? (lq * (lq + 1)) / 2 + lq * (lk - lq) : lq * lk;
    const flops = 4 * pairs * d * heads;
    const peerMs = await peerTime(peer, (p) => p.attentionMs(heads, kvHeads, lq, lk, d, causal));
    const row: Row = { kernel: 'attention', shape: `${name} ${heads}/${kvHeads} heads ${lq}x${lk} d${d}${causal ? ' causal' : ''}`, dtype: 'f32', ms, gflops: flops / ms / 1e6, peer_ms: peerMs, ratio_peer: peerMs && peerMs / ms };
    if (lq === 1) {
      row.gbps = (2 * lk * kvHeads * d * 4 + 2 * heads * d * 4) / ms / 1e6; // K, V, q, out
      row.ceiling = `copy ${copyGBs.toFixed(1)} GB/s r+w`;
      row.ratio_ceiling = row.gbps / copyGBs;
    } else if (attnCeil) {
      row.ceiling = `torch bf16 ${(flops / attnCeil[i] / 1e6).toFixed(0)} GFLOP/s`;
      row.ratio_ceiling = attnCeil[i] / ms;
    }
    rows.push(row);
    emit(row);
    for (const t of [q, k, v]) t.release();
  }

  for (const row of await smallKernels(gpu, copyGBs, want)) rows.push(row);

  if (layerRow) rows.push(layerRow);

  if (!asJson) printTable(rows);
  gpu.destroy();
  process.exit(0);
}

/** A whole InternLM2 decoder layer of the real shape (1 token, KV length 1024) through the model's own code, one submit, vs its kernels timed one by one. */
async function decoderLayer(gpu: Gpu): Promise<Row> {
  const cfg: LlmConfig = {
    hiddenSize: 4096, numHiddenLayers: 1, numAttentionHeads: 32, numKeyValueHeads: 8, headDim: 128, intermediateSize: 14336,
    vocabSize: 8, rmsNormEps: 1e-5, ropeTheta: 1e6, ropeScaling: { type: 'dynamic', factor: 2 }, maxPositionEmbeddings: 32768,
    hiddenAct: 'silu', bias: false, tieWordEmbeddings: false, bosTokenId: 1, eosTokenId: 2, padTokenId: 2, architectures: ['InternLM2ForCausalLM'],
  };
  const l = 'language_model.model.layers.0.';
  const ones = (n: number) => gpu.upload([n], 'f32', new Float32Array(n).fill(1), 'norm', false);
  const tensors = new Map<string, Tensor>([
    ['language_model.model.tok_embeddings.weight', await randomBf16(gpu, [8, 4096], 'emb')],
    [`${l}attention_norm.weight`, await ones(4096)],
    [`${l}attention.wqkv.weight`, await randomBf16(gpu, [6144, 4096], 'wqkv')],
    [`${l}attention.wo.weight`, await randomBf16(gpu, [4096, 4096], 'wo')],
    [`${l}ffn_norm.weight`, await ones(4096)],
    [`${l}feed_forward.w1.weight`, await randomBf16(gpu, [14336, 4096], 'w1')],
    [`${l}feed_forward.w3.weight`, await randomBf16(gpu, [14336, 4096], 'w3')],
    [`${l}feed_forward.w2.weight`, await randomBf16(gpu, [4096, 14336], 'w2')],
    ['language_model.model.norm.weight', await ones(4096)],
    ['language_model.output.weight', await randomBf16(gpu, [8, 4096], 'head')],
  ]);
  const llm = new InternLM2(cfg, new WeightStore(tensors));
  const cache = llm.newCache(gpu, 2048);
  const x = await randomF32(gpu, [1, 4096], 'x');
  const run = (rec: Recorder) => {
    cache.length = 1023; // decode the 1024th position every time
    llm.forward(rec, x, cache).release();
  };
  // One submit (wall clock) alternating with the same dispatches each in its own timestamped pass
  // (isolated kernel times), so a change in the VM's load hits both sides alike.
  const walls: number[] = [];
  const sums: number[] = [];
  for (let i = 0; i < 8; i++) {
    walls.push(await timeStep(gpu, run, 1));
    const rec = gpu.recorder(true);
    run(rec);
    await rec.submit();
    sums.push(rec.profile.reduce((s, p) => s + p.ms, 0));
  }
  const ms = median(walls);
  const sum = median(sums);
  const bytes = (6144 + 4096 + 3 * 14336) * 4096 * 2;
  const row: Row = { kernel: 'decoder layer', shape: '1 token, KV 1024, 4096/14336, 32/8 heads', dtype: 'bf16', ms, gbps: bytes / ms / 1e6, note: `one submit / sum of isolated kernels = ${(ms / sum).toFixed(2)} (sum ${sum.toFixed(1)} ms)` };
  emit(row);
  for (const t of tensors.values()) t.release();
  cache.release();
  x.release();
  return row;
}

/**
 * One small kernel at the real model's shape. `make` allocates its inputs and returns one call of
 * the op (outputs released at once) with the traffic it causes: bytes read + written, each
 * distinct element counted once (re-reads of a row a workgroup holds come from the CPU's caches),
 * or flops for the compute-bound patch embedding. `r` calls go into each timed submit and the time
 * is divided by r, so the submit/wait overhead does not dominate sub-millisecond kernels (r = 1
 * for the rest).
 */
interface SmallCase {
  name: string;
  shape: string;
  r: number;
  make: () => Promise<{ run: (rec: Recorder) => void; inputs: Tensor[]; bytes?: number; flops?: number; note?: string }>;
}

/** rmsNorm, layerNorm, gelu, siluMul, add, modulate, rope, embedding, argmax, softmax, pixelShuffle, patchEmbed, appendKv. */
async function smallKernels(gpu: Gpu, copyGBs: number, want: (name: string) => boolean): Promise<Row[]> {
  const f32 = (...shape: number[]) => randomF32(gpu, shape, 'x');
  const [D, FFN, VOCAB, TILES, VIT_T, VIT_C] = [4096, 14336, 92553, 7, 1025, 1024];
  const cases: SmallCase[] = [
    { name: 'rmsNorm', shape: 'llm prefill 512x4096', r: 1, make: async () => {
      const [x, w] = [await f32(512, D), await f32(D)];
      return { inputs: [x, w], run: (rec) => rmsNorm(rec, x, w, 1e-5).release(), bytes: 4 * (2 * x.numel + D), note: 'x read twice per row (2nd pass from cache), counted once' };
    } },
    { name: 'layerNorm', shape: `vit ${TILES} tiles ${TILES * VIT_T}x${VIT_C}`, r: 1, make: async () => {
      const [x, w, b] = [await f32(TILES * VIT_T, VIT_C), await f32(VIT_C), await f32(VIT_C)];
      return { inputs: [x, w, b], run: (rec) => layerNorm(rec, x, w, b, 1e-6).release(), bytes: 4 * (2 * x.numel + 2 * VIT_C), note: 'x read three times per row (from cache after the first), counted once' };
    } },
    { name: 'gelu', shape: `vit fc1 out ${VIT_T}x4096`, r: 1, make: async () => {
      const x = await f32(VIT_T, 4096);
      return { inputs: [x], run: (rec) => gelu(rec, x).release(), bytes: 4 * 2 * x.numel };
    } },
    { name: 'siluMul', shape: `llm prefill silu(gate)*up 512x${FFN}`, r: 1, make: async () => {
      const [g, u] = [await f32(512, FFN), await f32(512, FFN)];
      return { inputs: [g, u], run: (rec) => siluMul(rec, g, u).release(), bytes: 4 * 3 * g.numel };
    } },
    { name: 'add', shape: `llm prefill residual 512x${D}`, r: 1, make: async () => {
      const [a, b] = [await f32(512, D), await f32(512, D)];
      return { inputs: [a, b], run: (rec) => add(rec, a, b).release(), bytes: 4 * 3 * a.numel };
    } },
    { name: 'modulate', shape: `vit AdaLN 8 frames x ${VIT_T} x ${VIT_C}, mod [8, 6x${VIT_C}]`, r: 1, make: async () => {
      const [x, mod] = [await f32(8 * VIT_T, VIT_C), await f32(8, 6 * VIT_C)];
      return { inputs: [x, mod], run: (rec) => modulate(rec, x, mod, { tokensPerFrame: VIT_T, shiftChunk: 0, scaleChunk: 1 }).release(), bytes: 4 * (2 * x.numel + 2 * 8 * VIT_C) };
    } },
    { name: 'rope', shape: 'llm prefill qkv 512x6144, 32/8 heads d128, in place', r: 1, make: async () => {
      const qkv = await f32(512, 6144);
      const view = qkvRopeView(32, 8, 128);
      const pos = { positionOffset: 0, theta: 1e6, maxPositionEmbeddings: 32768, scalingFactor: 2 };
      // only the q and k heads (5 of each group's 6) are read and written
      return { inputs: [qkv], run: (rec) => rope(rec, qkv, view, pos), bytes: 4 * 2 * 512 * 8 * 5 * 128 };
    } },
    { name: 'embedding', shape: `512 ids from [${VOCAB}, ${D}]`, r: 1, make: async () => {
      const ids = await gpu.upload([512], 'i32', Int32Array.from({ length: 512 }, () => Math.floor(Math.random() * VOCAB)), 'ids');
      const table = await randomBf16(gpu, [VOCAB, D], 'tok_embeddings');
      const layout = `${table.parts.length} parts${table.texels ? ', texels' : ''}`;
      return { inputs: [ids, table], run: (rec) => embedding(rec, ids, table).release(), bytes: 512 * (4 + D * (2 + 4)), note: `table in ${layout}: one dispatch per part, a workgroup per id (ids of other parts exit early)` };
    } },
    { name: 'argmax', shape: `logits 1x${VOCAB}`, r: 32, make: async () => {
      const x = await f32(1, VOCAB);
      return { inputs: [x], run: (rec) => argmax(rec, x).release(), bytes: 4 * (VOCAB + 1) };
    } },
    { name: 'softmax', shape: `logits 1x${VOCAB}`, r: 32, make: async () => {
      const x = await f32(1, VOCAB);
      return { inputs: [x], run: (rec) => softmax(rec, x).release(), bytes: 4 * 2 * VOCAB, note: 'one workgroup; x read three times (from cache after the first), counted once' };
    } },
    { name: 'pixelShuffle', shape: `${TILES} tiles [${VIT_T}, ${VIT_C}] -> [256, 4096] v2`, r: 1, make: async () => {
      const x = await f32(TILES, VIT_T, VIT_C);
      return { inputs: [x], run: (rec) => pixelShuffle(rec, x, { ratio: 0.5, version: 'v2' }).release(), bytes: 4 * 2 * TILES * 256 * 4096, note: 'CLS rows not read' };
    } },
    { name: 'patchEmbed', shape: `${TILES} tiles 3x448x448, conv [${VIT_C}, 3, 14, 14]`, r: 1, make: async () => {
      const px = await f32(TILES, 3, 448, 448);
      const [w, pos] = [await randomBf16(gpu, [VIT_C, 3, 14, 14], 'patch'), await randomBf16(gpu, [1, VIT_T, VIT_C], 'pos')];
      const [bias, cls] = [await f32(VIT_C), await f32(1, 1, VIT_C)];
      return { inputs: [px, w, pos, bias, cls], run: (rec) => patchEmbed(rec, px, w, bias, cls, pos).release(), flops: 2 * TILES * VIT_T * VIT_C * 588, note: 'im2col + bf16 matmul (bias fused) + cls/pos: 3 dispatches; K = 588 is not a multiple of 8, so the weight is a packed buffer, not texels' };
    } },
    { name: 'appendKv', shape: '1 decode token, 8 kv heads d128, cache [4096, 1024]', r: 64, make: async () => {
      const [qkv, k, v] = [await f32(1, 6144), gpu.empty([4096, 1024], 'f32', 'k cache'), gpu.empty([4096, 1024], 'f32', 'v cache')];
      return { inputs: [qkv, k, v], run: (rec) => appendKv(rec, qkv, k, v, { kvHeads: 8, headDim: 128, position: 1023 }), note: 'dispatch-bound: 16 KiB copied' };
    } },
  ];
  const rows: Row[] = [];
  for (const c of cases.filter((c) => want(`small ${c.name}`))) {
    const { run, inputs, bytes, flops, note } = await c.make();
    const ms = (await timeStep(gpu, (rec) => { for (let i = 0; i < c.r; i++) run(rec); }, 5)) / c.r;
    const row: Row = { kernel: c.name, shape: c.shape, dtype: c.name === 'embedding' || c.name === 'patchEmbed' ? 'bf16' : 'f32', ms };
    if (flops) row.gflops = flops / ms / 1e6;
    if (bytes) {
      row.gbps = bytes / ms / 1e6;
      row.ceiling = `copy ${copyGBs.toFixed(1)} GB/s r+w`;
      row.ratio_ceiling = row.gbps / copyGBs;
    }
    row.note = [c.r > 1 ? `R=${c.r} calls per submit, ms per call` : '', note].filter(Boolean).join('; ');
    rows.push(row);
    emit(row);
    for (const t of inputs) t.release();
  }
  return rows;
}

function emit(row: Row): void {
  if (asJson) process.stdout.write(JSON.stringify(row) + '\n');
  else log(`  ${row.kernel} ${row.shape}: ${row.ms.toFixed(2)} ms`);
}

function printTable(rows: Row[]): void {
  const f = (x: number | undefined, d = 1) => (x === undefined ? '-' : x.toFixed(d));
  console.log('\n| kernel | shape | dtype | ms | GFLOP/s | GB/s | ceiling | vs ceiling | peer ms | peer / ours | note |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.kernel} | ${r.shape} | ${r.dtype} | ${f(r.ms, 2)} | ${f(r.gflops)} | ${f(r.gbps, 2)} | ${r.ceiling ?? '-'} | ${r.ratio_ceiling === undefined ? '-' : (100 * r.ratio_ceiling).toFixed(1) + ' %'} | ${f(r.peer_ms, 1)} | ${r.ratio_peer === undefined ? '-' : r.ratio_peer.toFixed(2) + 'x'} | ${r.note ?? ''} |`);
  }
}

await main();
