// End-to-end stages of a real checkpoint, each beside its floor on this machine and the same stage
// in PyTorch CPU bf16, in one invocation (ours first, then the WebGPU device is destroyed and its memory
// collected, and bench/e2e_torch.py runs the test/reference model: both do not fit in memory together at full size):
//
//   npm run bench:e2e -- --model DIR [--json] [--dtype bf16|q8|q4] [--stages load,preprocess,vision,ttft,prefill,decode]
//        [--frames 4] [--ttft 1,12] [--prefill 64,512,2048] [--kv 128,1024,2048] [--tokens 3] [--no-torch]
//
// load        GB/s, peak RSS over the GPU bytes, the loader's breakdown (always runs: the others need the model)
// preprocess  example_image1.jpg tiled at max_num 1 and 12 (decode, resize, normalise); --frames video frames (ffmpeg)
// vision      ms per frame of a --frames-frame video sequence: wall time, and the kernel time split into ViT,
//             temporal layers and projector from one profiled pass (every dispatch in its own timestamped
//             pass, split where the Collector's taps fall); the prefill stops after its vision part (abort)
// ttft        a ChatSession turn to its first token for the image at max_num N (1 tile; 12 tiles + thumbnail)
// prefill     tok/s for N random text ids (the LLM's cost does not depend on them), 512 positions a step
// decode      s/token at KV N: the cache is marked filled without a prefill (a step costs the same whatever
//             the cached values are). One step runs profiled: the sum of its kernels' timestamped times (each
//             dispatch in its own pass, so each is timed alone) beside the steps' wall time, and the dispatch
//             labels (op and shape) that took the most of it.
// Floors: FLOPs of the matrix products / PyTorch's bf16 GEMM rate (512x4096->4096, measured in this run) for
// compute-bound stages; bytes moved / the on-device copy rate (read + written, as bench:kernels) for decode and load.
// Defaults: --ttft 1,12, but only 1 when the weights pass 4 GB (the 12-tile turn takes ~45 min at full size).
// Benchmarks print; tests never assert timings. The machine is shared: report the conditions row.

import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readlinkSync } from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { ChatSession, loadModel, readMedia, type LoadedModel } from '../src/index.js';
import { getDevice, type Gpu } from '../src/gpu/index.js';
import type { Recorder } from '../src/gpu/recorder.js';
import { scope } from '../src/gpu/scope.js';
import { partBuffer } from '../src/gpu/tensor.js';
import type { Collector } from '../src/models/internvl.js';
import { planVisuals, type VisualPlan } from '../src/models/plan.js';
import { formatLoadBreakdown, type UploadProgress } from '../src/weights/upload.js';
import { decodeBytes, llmFlops, visionFlopsPerFrame, visionParts, type VisionFlops } from './e2e-floors.js';

// PVC's example assets, found as the tests find the shared folder (test/util.ts)
const ASSETS = `${[process.env.PVC_SHARED, new URL('../../shared', import.meta.url).pathname, '/work/shared'].find((d) => d && existsSync(d)) ?? '../shared'}/assets`;
const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    json: { type: 'boolean' },
    dtype: { type: 'string', default: 'bf16' },
    stages: { type: 'string', default: 'load,preprocess,vision,ttft,prefill,decode' },
    image: { type: 'string', default: `${ASSETS}/example_image1.jpg` },
    video: { type: 'string', default: `${ASSETS}/example_video.mp4` },
    frames: { type: 'string', default: '4' },
    ttft: { type: 'string' },
    prefill: { type: 'string', default: '64,512,2048' },
    kv: { type: 'string', default: '128,1024,2048' },
    tokens: { type: 'string', default: '3' },
    'no-torch': { type: 'boolean' },
  },
});
if (!values.model) {
  console.error('usage: npm run bench:e2e -- --model DIR [--json] [--dtype bf16|q8|q4] [--stages load,preprocess,vision,ttft,prefill,decode] [--frames 4] [--ttft 1,12] [--prefill 64,512,2048] [--kv 128,1024,2048] [--tokens 3] [--no-torch]');
  process.exit(2);
}
const dir = values.model;
for (const f of [values.image!, values.video!]) {
  if (!existsSync(f)) {
    console.error(`no such file: ${f} (give --image / --video)`);
    process.exit(2);
  }
}
const list = (s: string) => s.split(',').filter(Boolean).map(Number);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const stages = new Set(values.stages.split(','));
const frames = Number(values.frames);
const QUESTION = 'Please describe the image in detail.';
const MAX_NUMS = [1, 12]; // preprocess: the image at max_num 1 and 12

/** One stage's measurement: `ms` per the unit its case names; floor and PyTorch in the same unit. */
interface Row {
  stage: string;
  case: string;
  ms: number;
  floor_ms?: number;
  floor?: string;
  torch_ms?: number;
  [extra: string]: unknown;
}
const rows: Row[] = [];

function print(r: Record<string, unknown>): void {
  if (values.json) console.log(JSON.stringify(r));
  else console.log(Object.entries(r).map(([k, v]) => `${k}=${typeof v === 'number' ? +v.toFixed(4) : v}`).join(' '));
}
const add = (r: Row) => (rows.push(r), print(r));

/** On-device copy traffic (bytes read + written per second) of a 256 MiB buffer copy, median of 5, as bench:kernels measures it. */
async function copyBandwidth(gpu: Gpu): Promise<number> {
  const bytes = 256 << 20;
  const a = await gpu.allocWeight([bytes / 4], 'u32', 'copy src');
  const b = await gpu.allocWeight([bytes / 4], 'u32', 'copy dst');
  gpu.writeBytes(a, new Uint8Array(bytes).fill(1));
  const times = [];
  for (let i = -1; i < 5; i++) {
    const t0 = performance.now();
    await gpu.step((rec) => a.parts.forEach((p, k) => rec.copyBuffer(partBuffer(a, p), 0, partBuffer(b, b.parts[k]), 0, partBuffer(a, p).size)));
    await gpu.sync();
    if (i >= 0) times.push(performance.now() - t0);
  }
  a.release();
  b.release();
  return (2 * bytes) / (median(times) / 1000);
}

async function load(gpu: Gpu, copyRate: number): Promise<LoadedModel> {
  const rssBefore = process.memoryUsage().rss;
  let last: UploadProgress | undefined;
  const m = await loadModel(dir, { gpu, dtype: values.dtype as 'bf16' | 'q8' | 'q4', onProgress: (p) => (last = p) });
  const peakRss = process.resourceUsage().maxRSS * 1024;
  const gb = last!.bytesDone / 1e9;
  // floor: each byte read from the page cache and written to device memory once, at the copy rate
  add({ stage: 'load', case: `${gb.toFixed(2)} GB`, ms: last!.seconds * 1000, floor_ms: ((2 * last!.bytesDone) / copyRate) * 1000, floor: 'bytes in + out / copy rate', gb_s: last!.bytesPerSecond / 1e9, peak_rss_gib: peakRss / 2 ** 30, rss_over_gpu_gib: (peakRss - m.gpu.pool.allocatedBytes) / 2 ** 30, rss_before_gib: rssBefore / 2 ** 30, breakdown: formatLoadBreakdown(last!) });
  return m;
}

async function preprocess(m: LoadedModel): Promise<void> {
  const time = async (fn: () => Promise<unknown>, reps: number) => {
    const times = [];
    for (let i = 0; i < reps; i++) {
      const t0 = performance.now();
      await fn();
      times.push(performance.now() - t0);
    }
    return median(times);
  };
  for (const maxTiles of MAX_NUMS) add({ stage: 'preprocess', case: `image max_num ${maxTiles}`, ms: await time(() => readMedia(m.model, { images: [values.image!], maxTiles }), 3) });
  add({ stage: 'preprocess', case: `video ${frames} frames`, ms: await time(() => readMedia(m.model, { video: { path: values.video!, frames } }), 1) });
}

/** The vision part of a prefill alone: the prefill's signal is aborted once the collector has the vision time. */
async function visionOnly(m: LoadedModel, plan: VisualPlan, collector: Collector): Promise<number> {
  const abort = new AbortController();
  let ms = 0;
  const cache = m.model.llm.newCache(m.gpu, plan.rows);
  try {
    const ids = new Int32Array(plan.rows).fill(m.model.imageContextId);
    await m.model.prefill(ids, plan, cache, { collector: { ...collector, visionMs: (t) => ((ms = t), abort.abort()) }, signal: abort.signal });
  } catch (e) {
    if (!abort.signal.aborted) throw e;
  } finally {
    cache.release();
  }
  return ms;
}

async function vision(m: LoadedModel): Promise<void> {
  const { model } = m;
  const plan = planVisuals(model, (await readMedia(model, { video: { path: values.video!, frames } })).media);
  await visionOnly(m, plan, {}); // warm-up: pipelines compile and the pool's buffers are touched on first use
  const marks = new Map<Recorder, { name: string; at: number }[]>();
  await visionOnly(m, plan, { profileVision: true, tap: (rec, name) => marks.set(rec, [...(marks.get(rec) ?? []), { name, at: rec.dispatches }]) });
  const kernel: VisionFlops = { vit: 0, temporal: 0, projector: 0 };
  for (const [rec, ms] of marks) if (rec.profile.length) for (const [k, v] of Object.entries(visionParts(ms, rec.profile.map((e) => e.ms)))) kernel[k as keyof VisionFlops] += v / frames;
  const wall = (await visionOnly(m, plan, {})) / frames;
  const layers = model.vision.layers.map((l) => ({ temporal: !!l.temporal, adalnChunks: l.adaln?.chunks ?? 0 }));
  const flops = visionFlopsPerFrame(model.config, layers, frames);
  const sum = kernel.vit + kernel.temporal + kernel.projector;
  add({ stage: 'vision', case: `per frame (${frames}-frame video)`, ms: wall, flops: flops.vit + flops.temporal + flops.projector, kernel_sum_ms: sum, wall_over_kernels: wall / sum });
  for (const part of ['vit', 'temporal', 'projector'] as const) add({ stage: 'vision', case: `${part} per frame (kernels)`, ms: kernel[part], flops: flops[part] });
}

/** A first turn with the image at max_num N to its first token; returns its prompt ids (the PyTorch peer prefills the same). */
async function ttft(m: LoadedModel, maxTiles: number): Promise<number[]> {
  const session = new ChatSession(m.model, m.tokenizer);
  try {
    const turn = session.turn({ question: QUESTION, images: [values.image!], maxTiles, maxNewTokens: 1 });
    let r = await turn.next();
    while (!r.done) r = await turn.next();
    const s = r.value.stats;
    const ids = session.tokens.slice(0, s.promptTokens);
    const cfg = m.model.config;
    const visionFrames = ids.filter((id) => id === m.model.imageContextId).length / cfg.numImageToken;
    const layers = m.model.vision.layers.map((l) => ({ temporal: !!l.temporal, adalnChunks: l.adaln?.chunks ?? 0 }));
    const v = visionFlopsPerFrame(cfg, layers, m.model.vision.temporal ? cfg.imageRepeatTime : 1);
    const flops = visionFrames * (v.vit + v.temporal + v.projector) + llmFlops(cfg.llm, ids.length, 0);
    add({ stage: 'ttft', case: `image max_num ${maxTiles}`, ms: s.timeToFirstTokenMs, flops, tokens: ids.length, vision_frames: visionFrames, preprocess_ms: s.preprocessMs, vision_ms: s.visionMs, prefill_ms: s.prefillMs });
    return ids;
  } finally {
    session.dispose();
  }
}

const randomIds = (n: number, vocab: number) => Int32Array.from({ length: n }, (_, i) => 1000 + ((i * 7919) % (vocab - 2000)));

/** Prefill ms of n random ids, the last logits read back. */
async function prefillOnce(m: LoadedModel, n: number): Promise<number> {
  const cache = m.model.llm.newCache(m.gpu, n + 1);
  const t0 = performance.now();
  const logits = await m.model.prefill(randomIds(n, m.model.config.llm.vocabSize), null, cache);
  await m.gpu.read(logits);
  const ms = performance.now() - t0;
  logits.release();
  cache.release();
  return ms;
}

async function prefill(m: LoadedModel): Promise<void> {
  const llm = m.model.config.llm;
  for (const n of list(values.prefill)) {
    const ms = await prefillOnce(m, n);
    add({ stage: 'prefill', case: `${n} tokens`, ms, flops: llmFlops(llm, n, 0), tok_s: n / (ms / 1000) });
  }
}

async function decode(m: LoadedModel, copyRate: number): Promise<void> {
  const { model, gpu } = m;
  const llm = model.llm;
  const weightBytes = [...llm.layers.flatMap((l) => Object.values(l)), llm.norm, llm.output].reduce((s, t) => s + t.byteSize, 0);
  const tokens = Math.max(1, Number(values.tokens));
  for (const kv of list(values.kv)) {
    const cache = llm.newCache(gpu, kv + tokens + 2);
    cache.length = kv; // marked filled: the step's cost does not depend on the cached values
    const times = [];
    for (let i = -1; i < tokens; i++) {
      const t0 = performance.now();
      const logits = await model.decode(1000 + i, cache);
      await gpu.read(logits); // the logits readback, as generation does
      if (i >= 0) times.push(performance.now() - t0); // step -1 warms up (pipelines compile on first use)
      logits.release();
    }
    const id = await gpu.upload([1], 'i32', Int32Array.of(1234), 'token');
    let rec: Recorder | undefined;
    const t0 = performance.now();
    const logits = await gpu.step((r) => ((rec = r), scope(() => llm.forward(r, llm.embed(r, id), cache))), true);
    const profiledWall = performance.now() - t0;
    id.release();
    logits.release();
    cache.release();
    const kernelSum = rec!.profile.reduce((a, e) => a + e.ms, 0);
    // where the step's kernel time goes: the dispatch labels (op and shape) with the most time
    const byLabel = new Map<string, number>();
    for (const e of rec!.profile) byLabel.set(e.label, (byLabel.get(e.label) ?? 0) + e.ms);
    const topKernels = [...byLabel].sort((a, b) => b[1] - a[1]).slice(0, 6).map(([l, ms]) => `${l} ${ms.toFixed(1)}`).join(', ');
    const bytes = decodeBytes(model.config.llm, weightBytes, kv);
    add({ stage: 'decode', case: `KV ${kv}, per token`, ms: median(times), floor_ms: (bytes / copyRate) * 1000, floor: `${(bytes / 1e9).toFixed(2)} GB / copy rate`, each_ms: times.map((t) => +t.toFixed(1)).join(' '), kernel_sum_ms: kernelSum, step_over_kernels: median(times) / kernelSum, profiled_step_ms: profiledWall, dispatches: rec!.profile.length, top_kernels_ms: topKernels });
  }
}

/** bench/e2e_torch.py's load note when it read the checkpoint into memory (when it fits) rather than mapping it */
const PEER_READ = 'checkpoint read into memory';

/** Runs bench/e2e_torch.py on `job`, printing its JSON lines as they come; all of them, in order. */
function torchPeer(job: object): Promise<Record<string, unknown>[]> {
  return new Promise((resolve, reject) => {
    const py = spawn('/usr/bin/python3', [new URL('./e2e_torch.py', import.meta.url).pathname], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines: Record<string, unknown>[] = [];
    let partial = '';
    py.stdout.on('data', (d) => {
      const parts = (partial + d).split('\n');
      partial = parts.pop()!;
      for (const l of parts.filter(Boolean)) {
        lines.push(JSON.parse(l));
        print({ peer: 'torch', ...lines[lines.length - 1] });
      }
    });
    py.on('error', reject);
    py.on('close', (code) => (code === 0 ? resolve(lines) : reject(new Error(`e2e_torch.py exited with ${code}`))));
    py.stdin.end(JSON.stringify(job));
  });
}

/** Puts the peer's numbers and the GEMM floor beside our rows. */
function merge(peer: Record<string, unknown>[]): void {
  const gemm = Number(peer.find((p) => p.stage === 'ceiling')?.gemm_gflop_s) * 1e9;
  const find = (stage: string, pred: (p: Record<string, unknown>) => boolean) => peer.find((p) => p.stage === stage && pred(p));
  for (const r of rows) {
    if (typeof r.flops === 'number' && gemm) Object.assign(r, { floor_ms: (r.flops / gemm) * 1000, floor: `${(r.flops / 1e9).toFixed(1)} GFLOP / GEMM rate` });
    const n = parseInt(r.case.replace(/^\D+/, ''), 10);
    const p =
      r.stage === 'preprocess' ? find('preprocess', (p) => p.what === r.case)
      : r.stage === 'prefill' ? find('prefill', (p) => p.tokens === n)
      : r.stage === 'decode' ? find('decode', (p) => p.kv === n)
      : r.stage === 'ttft' ? find('ttft', (p) => p.max_num === n)
      : r.stage === 'vision' ? find('vision', () => true)
      : r.stage === 'load' ? find('load', (p) => p.note === PEER_READ) // a mapped load (weights page in during the first stage) is not comparable
      : undefined;
    if (!p) continue;
    const part = r.case.split(' ')[0];
    r.torch_ms = Number(r.stage === 'vision' ? (p[`${part}_ms_per_frame`] ?? p.ms_per_frame) : p.ms);
    if (r.stage === 'ttft') r.torch_split = `preprocess ${Number(p.preprocess_ms).toFixed(0)} ms, vision ${Number(p.vision_ms).toFixed(0)} ms, prefill ${Number(p.prefill_ms).toFixed(0)} ms`;
  }
}

function table(): void {
  const f = (ms?: number) => (ms === undefined || !Number.isFinite(ms) ? '-' : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(1)} ms`);
  const x = (a?: number, b?: number) => (a && b ? `${(a / b).toFixed(2)}x` : '-');
  console.log('\n| stage | case | ours | floor | ours / floor | PyTorch bf16 | PyTorch / ours | note |\n|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    const note = r.stage === 'load' ? `${Number(r.gb_s).toFixed(3)} GB/s, peak RSS GPU bytes + ${Number(r.rss_over_gpu_gib).toFixed(2)} GiB; PyTorch ${r.torch_ms === undefined ? 'maps the files' : 'reads the files into memory'}`
      : r.stage === 'prefill' ? `${Number(r.tok_s).toFixed(1)} tok/s`
      : r.stage === 'decode' ? `step / kernel sum ${Number(r.step_over_kernels).toFixed(2)} (${f(r.kernel_sum_ms as number)})`
      : r.stage === 'ttft' ? `${r.tokens} tokens; vision ${f(r.vision_ms as number)}, prefill ${f(r.prefill_ms as number)}${r.torch_split ? `; PyTorch ${r.torch_split}` : ''}`
      : r.kernel_sum_ms ? `wall / kernel sum ${Number(r.wall_over_kernels).toFixed(2)}` : '';
    console.log(`| ${r.stage} | ${r.case} | ${f(r.ms)} | ${f(r.floor_ms)} | ${x(r.ms, r.floor_ms)} | ${f(r.torch_ms)} | ${x(r.torch_ms, r.ms)} | ${note} |`);
  }
}

/** Every WebGPU stage; returns what the PyTorch peer needs (the TTFT turns' prompt ids). */
async function ours(): Promise<{ max_num: number; ids: number[] }[]> {
  const gpu = await getDevice();
  const copyRate = await copyBandwidth(gpu);
  print({ stage: 'ceiling', copy_gb_s: copyRate / 1e9, note: 'on-device buffer copy, read + written' });
  const m = await load(gpu, copyRate);
  const ttftNums = values.ttft ? list(values.ttft) : m.gpu.pool.allocatedBytes > 4e9 ? [1] : [1, 12];
  const ttftIds: { max_num: number; ids: number[] }[] = [];
  if (stages.has('preprocess')) await preprocess(m);
  if (stages.has('vision')) await vision(m);
  if (stages.has('ttft') || stages.has('prefill')) await prefillOnce(m, 16); // the LLM's pipelines compile on first use
  if (stages.has('ttft')) for (const n of ttftNums) ttftIds.push({ max_num: n, ids: await ttft(m, n) });
  if (stages.has('prefill')) await prefill(m);
  if (stages.has('decode')) await decode(m, copyRate);
  print({ stage: 'memory', peak_rss_gib: process.resourceUsage().maxRSS / 2 ** 20 });
  m.dispose();
  gpu.destroy();
  return ttftIds;
}

/**
 * Lavapipe keeps a device's memory (one memfd) until the destroyed device's JavaScript objects are
 * collected: at full size 16 GB that would squeeze PyTorch's page cache (its mapped decode ran at
 * 9-28 s a token). The npm script runs with --expose-gc; the line says whether the memory went.
 */
async function releaseDeviceMemory(): Promise<void> {
  const isMemfd = (fd: string) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`).startsWith('/memfd:');
    } catch {
      return false;
    }
  };
  const memfds = () => (existsSync('/proc/self/fd') ? readdirSync('/proc/self/fd').filter(isMemfd).length : 0);
  for (let i = 0; i < 5 && memfds() > 0; i++) {
    (globalThis as { gc?: () => void }).gc?.();
    await new Promise((r) => setTimeout(r, 100)); // Dawn's callbacks for the destroyed device run between collections
  }
  print({ stage: 'release', device_memory_released: memfds() === 0, note: 'lavapipe memory freed before the PyTorch peer runs (needs node --expose-gc)' });
}

async function main(): Promise<void> {
  print({ stage: 'conditions', model: dir, dtype: values.dtype, cpus: os.cpus().length, load_avg_1m: os.loadavg()[0], mem_available_gib: os.freemem() / 2 ** 30, time: new Date().toISOString() });
  const ttftIds = await ours();
  await releaseDeviceMemory();
  const job = { model: dir, stages: values['no-torch'] ? [] : [...stages], image: values.image, video: values.video, frames, max_num: MAX_NUMS, prefill: list(values.prefill), kv: list(values.kv), tokens: Number(values.tokens), ttft: ttftIds };
  merge(await torchPeer(job));
  if (!values.json) table();
}

await main();
process.exit(0);
