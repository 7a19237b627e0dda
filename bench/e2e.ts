// End-to-end stages of a real checkpoint, one process, one after the other:
//
//   npm run bench:e2e -- --model DIR [--json] [--dtype bf16|q8|q4] [--prefill 64,512] [--kv 128,1024,2048] [--tokens 3]
//
// load     GB/s, peak RSS over the weights, and the loader's own breakdown (reading, GPU copies, faults)
// prefill  tok/s for a text prompt of N tokens (random ids: the LLM's cost does not depend on them)
// decode   s/token with N positions in the KV cache. The cache is marked filled without a prefill
//          (a decode step costs the same whatever the cached values are), so KV 2048 takes seconds,
//          not a 2048-token prefill. One step per KV length runs profiled: the sum of its kernels'
//          timestamped times beside the step's wall time (the gap is JS, submission and waiting).
// Floors beside each row: decode reads every LLM weight once per token, so its floor is the LLM's
// weight bytes / the host's measured copy bandwidth (read + write counted as in bench:kernels).
// Not here yet: vision per frame, time to first token with images, and the PyTorch CPU peer
// (bench/RESULTS.md quotes the PyTorch numbers at the same shapes).
// Benchmarks print; tests never assert timings. The machine is shared: report conditions.

import os from 'node:os';
import { parseArgs } from 'node:util';
import { loadModel } from '../src/index.js';
import { scope } from '../src/gpu/scope.js';
import type { Recorder } from '../src/gpu/recorder.js';
import { formatLoadBreakdown, type UploadProgress } from '../src/weights/upload.js';
import { Checkpoint } from '../src/weights/safetensors.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    json: { type: 'boolean' },
    dtype: { type: 'string', default: 'bf16' },
    prefill: { type: 'string', default: '64,512' },
    kv: { type: 'string', default: '128,1024,2048' },
    tokens: { type: 'string', default: '3' },
  },
});
if (!values.model) {
  console.error('usage: npm run bench:e2e -- --model DIR [--json] [--dtype bf16|q8|q4] [--prefill 64,512] [--kv 128,1024,2048] [--tokens 3]');
  process.exit(2);
}
const dir = values.model;
const list = (s: string) => s.split(',').filter(Boolean).map(Number);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function row(r: Record<string, unknown>): void {
  if (values.json) console.log(JSON.stringify(r));
  else console.log(Object.entries(r).map(([k, v]) => `${k}=${typeof v === 'number' ? +v.toFixed(4) : v}`).join(' '));
}

/** Host copy bandwidth (bytes read + written per second) of a 256 MiB copy, median of 5. */
function copyBandwidth(): number {
  const n = 256 << 20;
  const a = new Uint8Array(n).fill(1);
  const b = new Uint8Array(n).fill(2);
  const times = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    b.set(a);
    times.push((performance.now() - t0) / 1000);
  }
  return (2 * n) / median(times);
}

row({ stage: 'conditions', model: dir, dtype: values.dtype, cpus: os.cpus().length, load_avg_1m: os.loadavg()[0], mem_available_gib: os.freemem() / 2 ** 30 });
const bandwidth = copyBandwidth();
row({ stage: 'ceiling', copy_gb_s: bandwidth / 1e9 });

const ckpt = await Checkpoint.open(dir);
const llmBytes = [...ckpt.tensors.values()].filter((t) => t.name.startsWith('language_model.') && !t.name.includes('tok_embeddings')).reduce((s, t) => s + t.byteLength, 0);
const rssBefore = process.memoryUsage().rss;
let last: UploadProgress | undefined;
const m = await loadModel(dir, { dtype: values.dtype as 'bf16' | 'q8' | 'q4', onProgress: (p) => (last = p) });
const peakRss = process.resourceUsage().maxRSS * 1024;
row({
  stage: 'load',
  gb: last!.bytesDone / 1e9,
  seconds: last!.seconds,
  gb_s: last!.bytesPerSecond / 1e9,
  peak_rss_gib: peakRss / 2 ** 30,
  rss_over_weights_gib: (peakRss - m.gpu.pool.allocatedBytes) / 2 ** 30,
  rss_before_gib: rssBefore / 2 ** 30,
  breakdown: formatLoadBreakdown(last!),
});

const { model, gpu } = m;
const llm = model.llm;
const vocab = model.config.llm.vocabSize;
const randomIds = (n: number) => Int32Array.from({ length: n }, (_, i) => 1000 + ((i * 7919) % (vocab - 2000)));

for (const n of list(values.prefill)) {
  const cache = llm.newCache(gpu, n + 1);
  const t0 = performance.now();
  const logits = await model.prefill(randomIds(n), null, cache);
  await gpu.read(logits);
  const s = (performance.now() - t0) / 1000;
  logits.release();
  cache.release();
  row({ stage: 'prefill', tokens: n, seconds: s, tok_s: n / s });
}

const tokens = Math.max(1, Number(values.tokens));
for (const kv of list(values.kv)) {
  const cache = llm.newCache(gpu, kv + tokens + 2);
  cache.length = kv; // marked filled: the step's cost does not depend on the cached values
  const times = [];
  for (let i = -1; i < tokens; i++) {
    const t0 = performance.now();
    const logits = await model.decode(1000 + i, cache);
    await gpu.read(logits); // the logits readback, as generation does
    if (i >= 0) times.push((performance.now() - t0) / 1000); // step -1 warms up (pipelines compile on first use)
    logits.release();
  }
  // one profiled step: each dispatch timestamped (its own pass), summed
  const id = await gpu.upload([1], 'i32', Int32Array.of(1234), 'token');
  let rec: Recorder | undefined;
  const t0 = performance.now();
  const logits = await gpu.step((r) => {
    rec = r;
    return scope(() => llm.forward(r, llm.embed(r, id), cache));
  }, true);
  const profiledWall = (performance.now() - t0) / 1000;
  id.release();
  logits.release();
  const kernelSum = rec!.profile.reduce((a, e) => a + e.ms, 0) / 1000;
  cache.release();
  row({
    stage: 'decode',
    kv,
    s_per_token: median(times),
    each_s: times.map((t) => +t.toFixed(3)).join(' '),
    runs: times.length,
    kernel_sum_s: kernelSum,
    profiled_step_s: profiledWall,
    step_over_kernels: median(times) / kernelSum,
    dispatches: rec!.profile.length,
    floor_s: llmBytes / bandwidth,
  });
}
m.dispose();
process.exit(0);
