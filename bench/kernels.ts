// Kernel microbenchmarks at the real model's shapes, beside the machine's measured ceilings and a
// WebGPU peer in the same run.
//
//   npm run bench:kernels [-- --json] [-- --no-peer] [-- --no-torch] [-- --only NAME]
//
// Each row: median ms over repeated runs after warm-up; GFLOP/s (compute-bound rows) or GB/s
// (bandwidth-bound rows); ratio to the ceiling measured now (PyTorch CPU bf16 at the same shape for
// compute rows, a large on-device buffer copy for bandwidth rows); and the peer (TensorFlow.js's
// WebGPU backend on the same adapter) with how many times faster we are.
// Tests never assert timings; bench/RESULTS.md records these tables.

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import { getDevice, partBuffer, toBf16Bits, type Gpu, type Recorder, type Tensor } from '../src/gpu/index.js';
import { InternLM2 } from '../src/models/internlm2.js';
import { WeightStore } from '../src/models/weights.js';
import { attention, type AttentionView } from '../src/ops/attention.js';
import { matmul } from '../src/ops/matmul.js';
import type { LlmConfig } from '../src/weights/config.js';
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

/** Random bf16 weight [n, k] without generating n*k random numbers: a random block tiled. */
async function randomWeight(gpu: Gpu, n: number, k: number, label: string): Promise<Tensor> {
  const w = await gpu.allocWeight([n, k], 'bf16', label);
  const block = toBf16Bits(Float32Array.from({ length: 1 << 20 }, () => (Math.random() - 0.5) * 0.05));
  const bytes = new Uint8Array(block.buffer);
  const total = n * k * 2;
  for (let off = 0; off < total; off += bytes.length) gpu.writeBytes(w, bytes.subarray(0, Math.min(bytes.length, total - off)), off);
  await gpu.sync();
  return w;
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

/** On-device copy bandwidth: bytes copied per second through a large buffer-to-buffer copy. */
async function copyBandwidth(gpu: Gpu): Promise<number> {
  const bytes = 256 << 20;
  const a = await gpu.allocWeight([bytes / 4], 'u32', 'copy src');
  const b = await gpu.allocWeight([bytes / 4], 'u32', 'copy dst');
  gpu.writeBytes(a, new Uint8Array(bytes).fill(1));
  // copy in binding-sized pieces (the tensors are split by the binding limit)
  const ms = await timeStep(gpu, (rec) => a.parts.forEach((p, i) => rec.copyBuffer(partBuffer(a, p), 0, partBuffer(b, b.parts[i]), 0, partBuffer(a, p).size)), 5);
  a.release();
  b.release();
  return bytes / ms / 1e6;
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
  log(`ceiling: on-device buffer copy ${copyGBs.toFixed(1)} GB/s`);
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
    const w = await randomWeight(gpu, n, k, name);
    const flops = 2 * m * k * n;
    const ms = await timeStep(gpu, (rec) => matmul(rec, x, w).release(), m <= 8 ? 10 : 3);
    const peerMs = await peerTime(peer, (p) => p.matmulMs(m, k, n));
    const row: Row = { kernel: m <= 8 ? 'gemv' : 'matmul', shape: `${name} ${m}x${k}->${n}`, dtype: 'bf16', ms, peer_ms: peerMs, ratio_peer: peerMs && peerMs / ms };
    if (m <= 8) {
      row.gbps = (n * k * 2) / ms / 1e6;
      row.ceiling = `copy ${copyGBs.toFixed(1)} GB/s`;
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
      row.gbps = (2 * lk * kvHeads * d * 4) / ms / 1e6;
      row.ceiling = `copy ${copyGBs.toFixed(1)} GB/s`;
      row.ratio_ceiling = row.gbps / copyGBs;
    } else if (attnCeil) {
      row.ceiling = `torch bf16 ${(flops / attnCeil[i] / 1e6).toFixed(0)} GFLOP/s`;
      row.ratio_ceiling = attnCeil[i] / ms;
    }
    rows.push(row);
    emit(row);
    for (const t of [q, k, v]) t.release();
  }

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
    ['language_model.model.tok_embeddings.weight', await randomWeight(gpu, 8, 4096, 'emb')],
    [`${l}attention_norm.weight`, await ones(4096)],
    [`${l}attention.wqkv.weight`, await randomWeight(gpu, 6144, 4096, 'wqkv')],
    [`${l}attention.wo.weight`, await randomWeight(gpu, 4096, 4096, 'wo')],
    [`${l}ffn_norm.weight`, await ones(4096)],
    [`${l}feed_forward.w1.weight`, await randomWeight(gpu, 14336, 4096, 'w1')],
    [`${l}feed_forward.w3.weight`, await randomWeight(gpu, 14336, 4096, 'w3')],
    [`${l}feed_forward.w2.weight`, await randomWeight(gpu, 4096, 14336, 'w2')],
    ['language_model.model.norm.weight', await ones(4096)],
    ['language_model.output.weight', await randomWeight(gpu, 8, 4096, 'head')],
  ]);
  const llm = new InternLM2(cfg, new WeightStore(tensors));
  const cache = llm.newCache(gpu, 2048);
  const x = await randomF32(gpu, [1, 4096], 'x');
  const run = (rec: Recorder) => {
    cache.length = 1023; // decode the 1024th position every time
    llm.forward(rec, x, cache).release();
  };
  const ms = await timeStep(gpu, run, 9);
  // isolated kernel times: the same dispatches, each in its own timestamped pass
  const sums: number[] = [];
  for (let i = 0; i < 5; i++) {
    const rec = gpu.recorder(true);
    run(rec);
    await rec.submit();
    sums.push(rec.profile.reduce((s, p) => s + p.ms, 0));
  }
  const sum = median(sums);
  const bytes = (6144 + 4096 + 3 * 14336) * 4096 * 2;
  const row: Row = { kernel: 'decoder layer', shape: '1 token, KV 1024, 4096/14336, 32/8 heads', dtype: 'bf16', ms, gbps: bytes / ms / 1e6, note: `one submit / sum of isolated kernels = ${(ms / sum).toFixed(2)} (sum ${sum.toFixed(1)} ms)` };
  emit(row);
  for (const t of tensors.values()) t.release();
  cache.release();
  x.release();
  return row;
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
