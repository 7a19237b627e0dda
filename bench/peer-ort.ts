// A q4 peer on the same adapter, same process, same device: onnxruntime-web's WebGPU execution
// provider (its C++ EP compiled to WebAssembly, `onnxruntime-web/webgpu`) running com.microsoft
// MatMulNBits (4 bits, block 32) beside its own f32 / f16 MatMul and our q4 and bf16 matmul, at the
// decode GEMV 1x4096->14336 and a prefill GEMM Mx4096->14336.
//
//   npm run bench:peer-ort [-- --json] [-- --m 512] [-- --reps 5]
//
// The GEMM's M defaults to 64, not the prefill's 512: on lavapipe ORT's q4f16 path ran at ~0.5
// GFLOP/s (M = 16), so M = 512 would take ~2 minutes per run of that variant alone.
// Every variant computes from the same random weights: our q4 codes and scales are re-packed into
// MatMulNBits' layout (codes + 8 as unsigned nibbles, implicit zero point 8, scales as f32 or f16),
// so both q4 kernels read the same dequantized values; the f32 / f16 MatMul and our bf16 read the
// bf16 values. Each output is checked against float64 CPU products (rel L2), on the dequantized
// weights for q4; for the GEMM, on a few rows. Times: median over rounds that run every variant once
// (after one warm-up each), so a drifting host load hits them alike; inputs and outputs stay on the
// GPU (ORT: GPU-buffer input, `preferredOutputLocation: 'gpu-buffer'`), each run waited for with
// onSubmittedWorkDone. Benchmarks print; tests never assert timings.

import v8 from 'node:v8';
import os from 'node:os';
import { create } from 'webgpu';
import { getDevice, f16BitsToF32, toBf16Bits, toF16Bits, bf16BitsToF32, type Gpu, type Tensor } from '../src/gpu/index.js';
import { matmul } from '../src/ops/matmul.js';
import { codeBytes, dequantizeRows, quantizeRows, quantRowBytes, QUANT_GROUP } from '../src/weights/quantize.js';
import { allocQuantized } from '../src/weights/quantize-upload.js';
import { onnxModel, OnnxType, type OnnxTensor, type OnnxValue } from './peer-ort-onnx.js';

// ORT's wasm is 26 MB. With V8's dynamic tiering, TurboFan recompiles its hot functions on two
// background threads for minutes (taking the CPUs lavapipe runs on while we time), and process.exit
// waits for those jobs: Liftoff only. Must be set before the module is compiled.
v8.setFlagsFromString('--no-wasm-dynamic-tiering');
v8.setFlagsFromString('--no-wasm-tier-up');

type Ort = typeof import('onnxruntime-web/webgpu');

const args = process.argv.slice(2);
const USAGE = 'usage: npm run bench:peer-ort [-- --json] [-- --m ROWS] [-- --reps N]';
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--m' || args[i] === '--reps') i++;
  else if (args[i] !== '--json') {
    console.error(`unknown option ${args[i]}\n${USAGE}`);
    process.exit(2);
  }
}
/** A positive whole-number option, or the default. */
function opt(name: string, dflt: number): number {
  if (!args.includes(name)) return dflt;
  const v = Number(args[args.indexOf(name) + 1]);
  if (!Number.isSafeInteger(v) || v < 1) {
    console.error(`${name} takes a positive whole number, got ${args[args.indexOf(name) + 1]}\n${USAGE}`);
    process.exit(2);
  }
  return v;
}
const asJson = args.includes('--json');
const M_GEMM = opt('--m', 64);
const REPS = opt('--reps', 5);
const [K, N] = [4096, 14336];
/** rows of the GEMM output checked against float64 */
const CHECK_ROWS = 4;

const log = (s: string) => (asJson ? process.stderr.write(s + '\n') : console.log(s));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

/** A weight one engine multiplies by: bound to an input per shape. */
interface Contender {
  engine: 'ours' | 'onnxruntime-web';
  dtype: string;
  /** which float64 reference it computes */
  ref: 'bf16' | 'q4';
  weightBytes: number;
  note?: string;
  bind: (x: Float32Array, xt: Tensor, m: number) => Bound;
  release: () => void;
}

interface Bound {
  /** one complete run (waited for) */
  run: () => Promise<void>;
  /** one run's output, read back */
  output: () => Promise<Float32Array>;
  release: () => void;
}

/**
 * Load onnxruntime-web's WebGPU build for Node. It needs `navigator.gpu` (checked even when a device
 * is given), one wasm thread (its CPU kernels do nothing here; more threads would take lavapipe's
 * CPUs), and GPUQueue.writeBuffer taking views of its wasm memory, which is always a
 * SharedArrayBuffer in this build: Dawn's Node bindings refuse those ("Invalid argument"), so such
 * views are copied first.
 */
async function loadOrt(): Promise<Ort> {
  Object.defineProperty(globalThis, 'navigator', { value: { gpu: create([]), userAgent: 'node' }, configurable: true });
  const queue = GPUQueue.prototype;
  const writeBuffer = queue.writeBuffer;
  queue.writeBuffer = function (this: GPUQueue, buffer, offset, data, dataOffset?, size?) {
    const shared = ArrayBuffer.isView(data) ? (data.buffer as ArrayBufferLike) : null;
    if (ArrayBuffer.isView(data) && shared instanceof SharedArrayBuffer) {
      const bpe = 'BYTES_PER_ELEMENT' in data ? (data.BYTES_PER_ELEMENT as number) : 1;
      const start = data.byteOffset + (dataOffset ?? 0) * bpe;
      const end = size === undefined ? data.byteOffset + data.byteLength : start + size * bpe;
      return writeBuffer.call(this, buffer, offset, new Uint8Array(shared, start, end - start).slice());
    }
    return writeBuffer.call(this, buffer, offset, data, dataOffset, size);
  };
  const ort = await import('onnxruntime-web/webgpu');
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  ort.env.logLevel = 'error';
  return ort;
}

/** MatMulNBits' B [N, K/32, 16] (nibble 2i low, 2i+1 high; unsigned, zero point 8) and scales [N, K/32] from our q4 rows. */
function toMatMulNBits(q4: Uint8Array): { codes: Uint8Array; scaleBits: Uint16Array } {
  const rowBytes = quantRowBytes('q4', K);
  const groups = K / QUANT_GROUP;
  const codes = new Uint8Array(N * groups * 16);
  const scaleBits = new Uint16Array(N * groups);
  const rows = 256;
  for (let r0 = 0; r0 < N; r0 += rows) {
    const chunk = q4.subarray(r0 * rowBytes, (r0 + rows) * rowBytes);
    const values = dequantizeRows('q4', chunk, K);
    const view = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    for (let r = 0; r < chunk.length / rowBytes; r++) {
      for (let g = 0; g < groups; g++) {
        const bits = view.getUint16(r * rowBytes + codeBytes('q4', K) + 2 * g, true);
        const d = f16BitsToF32(Uint16Array.of(bits))[0];
        scaleBits[(r0 + r) * groups + g] = bits;
        for (let i = 0; i < QUANT_GROUP; i++) {
          const q = d === 0 ? 0 : values[r * K + g * QUANT_GROUP + i] / d;
          codes[((r0 + r) * groups + g) * 16 + (i >> 1)] |= (q + 8) << (4 * (i & 1));
        }
      }
    }
  }
  return { codes, scaleBits };
}

/** float64 products of rows `rows` of x [m, K] with the bf16 weights and the q4 weights' dequantized values. */
function references(x: Float32Array, rows: number[], bits: Uint16Array, q4: Uint8Array): { bf16: Float64Array; q4: Float64Array } {
  const out = { bf16: new Float64Array(rows.length * N), q4: new Float64Array(rows.length * N) };
  const rowBytes = quantRowBytes('q4', K);
  const chunk = 256;
  for (let n0 = 0; n0 < N; n0 += chunk) {
    const w = { bf16: bf16BitsToF32(bits.subarray(n0 * K, (n0 + chunk) * K)), q4: dequantizeRows('q4', q4.subarray(n0 * rowBytes, (n0 + chunk) * rowBytes), K) };
    for (const kind of ['bf16', 'q4'] as const) {
      for (let n = 0; n < w[kind].length / K; n++) {
        for (const [i, m] of rows.entries()) {
          let s = 0;
          for (let k = 0; k < K; k++) s += x[m * K + k] * w[kind][n * K + k];
          out[kind][i * N + n0 + n] = s;
        }
      }
    }
  }
  return out;
}

function relL2(got: Float32Array, rows: number[], ref: Float64Array): number {
  let [num, den] = [0, 0];
  for (const [i, m] of rows.entries()) {
    for (let n = 0; n < N; n++) {
      const r = ref[i * N + n];
      const g = got[m * N + n];
      if (!Number.isFinite(g)) return NaN;
      num += (g - r) ** 2;
      den += r * r;
    }
  }
  return Math.sqrt(num / den);
}

/** Our kernels' weights: bf16 and q4. */
async function ourContenders(gpu: Gpu, bits: Uint16Array, q4: Uint8Array): Promise<Contender[]> {
  const bf16 = await gpu.allocWeight([N, K], 'bf16', 'w bf16');
  gpu.writeBytes(bf16, new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength));
  const q = await allocQuantized(gpu, 'q4', [N, K], 'w q4');
  gpu.writeBytes(q.storage, q4);
  await gpu.sync();
  return [
    { w: bf16, dtype: 'bf16', ref: 'bf16' as const, weightBytes: 2 * N * K },
    { w: q.tensor, dtype: 'q4 (g32, f16 scale)', ref: 'q4' as const, weightBytes: q4.length },
  ].map(({ w, dtype, ref, weightBytes }) => ({
    engine: 'ours' as const,
    dtype,
    ref,
    weightBytes,
    bind: (_x, xt) => ({
      run: async () => {
        await gpu.step((rec) => matmul(rec, xt, w).release());
        await gpu.sync();
      },
      output: async () => {
        const y = await gpu.step((rec) => matmul(rec, xt, w));
        const out = (await gpu.read(y)) as Float32Array;
        y.release();
        return out;
      },
      release: () => {},
    }),
    release: () => w.release(),
  }));
}

interface OrtModel {
  dtype: string;
  ref: 'bf16' | 'q4';
  /** activations (and output) in f16 */
  f16: boolean;
  weightBytes: number;
  note?: string;
  bytes: () => Uint8Array;
}

/** An ORT session on our GPUDevice (M is symbolic: one session serves every shape); inputs in GPU buffers of that device. */
async function ortContender(ort: Ort, gpu: Gpu, model: OrtModel): Promise<Contender> {
  const bytes = model.bytes();
  const t0 = performance.now();
  const session = await ort.InferenceSession.create(bytes, { executionProviders: [{ name: 'webgpu', device: gpu.device }], preferredOutputLocation: 'gpu-buffer' });
  const createMs = performance.now() - t0;
  return {
    engine: 'onnxruntime-web',
    dtype: model.dtype,
    ref: model.ref,
    weightBytes: model.weightBytes,
    note: [model.note, `session created in ${(createMs / 1000).toFixed(1)} s`].filter(Boolean).join('; '),
    bind: (x, _xt, m) => {
      const data = model.f16 ? toF16Bits(x) : x;
      const buffer = gpu.device.createBuffer({ size: Math.ceil(data.byteLength / 4) * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC, label: 'ort A' });
      gpu.device.queue.writeBuffer(buffer, 0, data as ArrayBufferView<ArrayBuffer>);
      const input = ort.Tensor.fromGpuBuffer(buffer, { dataType: model.f16 ? 'float16' : 'float32', dims: [m, K] });
      const once = async () => (await session.run({ A: input })).Y;
      return {
        run: async () => {
          const y = await once();
          await gpu.device.queue.onSubmittedWorkDone();
          y.dispose();
        },
        output: async () => {
          const y = await once();
          const out = await y.getData(true);
          return out instanceof Uint16Array ? f16BitsToF32(out) : (out as Float32Array);
        },
        release: () => buffer.destroy(),
      };
    },
    release: () => void session.release(),
  };
}

/**
 * The ORT models: MatMulNBits q4 with f32 and f16 activations (transformers.js's q4 and q4f16), and
 * MatMul with f32 weights (the bf16 values). An f16 MatMul ran too (A, B, Y in f16: ~1.1x the f32
 * MatMul's time) but is left out: with it the process passed 2 GB.
 */
function ortModels(bits: Uint16Array, q4: Uint8Array, f16: boolean): OrtModel[] {
  const { codes, scaleBits } = toMatMulNBits(q4);
  const groups = K / QUANT_GROUP;
  const io = (type: number): [OnnxValue[], OnnxValue[]] => [[{ name: 'A', type, dims: ['M', K] }], [{ name: 'Y', type, dims: ['M', N] }]];
  const nbits = (type: number): Uint8Array => {
    const scales = type === OnnxType.float16 ? scaleBits : f16BitsToF32(scaleBits);
    const init: OnnxTensor[] = [
      { name: 'B', type: OnnxType.uint8, dims: [N, groups, 16], data: codes },
      { name: 'scales', type, dims: [N * groups], data: new Uint8Array(scales.buffer, scales.byteOffset, scales.byteLength) },
    ];
    return onnxModel([{ opType: 'MatMulNBits', domain: 'com.microsoft', inputs: ['A', 'B', 'scales'], outputs: ['Y'], intAttrs: { K, N, bits: 4, block_size: QUANT_GROUP } }], init, ...io(type));
  };
  /** B [K, N] for MatMul: the bf16 weights transposed, as f32 (little-endian: the bf16 bits are the high half) */
  const dense = (): Uint8Array => {
    const fill = (dst: Uint8Array) => {
      for (let n = 0; n < N; n++) {
        for (let k = 0; k < K; k++) {
          const [i, b] = [4 * (k * N + n), bits[n * K + k]];
          dst[i + 2] = b & 0xff;
          dst[i + 3] = b >> 8;
        }
      }
    };
    return onnxModel([{ opType: 'MatMul', inputs: ['A', 'B'], outputs: ['Y'] }], [{ name: 'B', type: OnnxType.float, dims: [K, N], data: { length: 4 * K * N, fill } }], ...io(OnnxType.float));
  };
  // f32 MatMul first: its session's transient copies (model bytes, ORT's wasm heap) peak before the rest exists
  const models: OrtModel[] = [
    { dtype: 'f32 MatMul', ref: 'bf16', f16: false, weightBytes: 4 * N * K, bytes: dense },
    { dtype: 'q4 MatMulNBits (g32, f32 scale, f32 A)', ref: 'q4', f16: false, weightBytes: codes.length + 4 * scaleBits.length, bytes: () => nbits(OnnxType.float) },
  ];
  if (f16) models.push({ dtype: 'q4f16 MatMulNBits (g32, f16 scale, f16 A)', ref: 'q4', f16: true, weightBytes: codes.length + 2 * scaleBits.length, note: 'A and Y in f16', bytes: () => nbits(OnnxType.float16) });
  return models;
}

interface Row {
  shape: string;
  engine: string;
  dtype: string;
  ms: number;
  cpu_ms: number;
  weight_mb: number;
  gbps: number;
  gflops?: number;
  vs_our_q4: number;
  vs_our_bf16: number;
  rel_l2: number;
  note?: string;
}

async function main() {
  log(`load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')} (${os.cpus().length} CPUs); node ${process.version}`);
  const gpu = await getDevice();
  log(`adapter: ${gpu.description} (${gpu.adapterClass}); shader-f16 ${gpu.features.f16}`);
  const ort = await loadOrt();
  log(`onnxruntime-web ${ort.env.versions.web} (WebGPU EP, wasm Liftoff only, 1 thread), on our GPUDevice`);

  const bits = toBf16Bits(Float32Array.from({ length: N * K }, () => (Math.random() - 0.5) * 0.05));
  const q4 = quantizeRows('q4', bits, K);
  const peers: Contender[] = [];
  for (const model of ortModels(bits, q4, gpu.features.f16)) {
    try {
      peers.push(await ortContender(ort, gpu, model));
    } catch (e) {
      log(`  (onnxruntime-web ${model.dtype} failed: ${(e as Error).message.split('\n')[0]})`);
    }
  }
  const contenders = [...(await ourContenders(gpu, bits, q4)), ...peers];
  log(`weights ready; RSS ${(process.memoryUsage().rss / 2 ** 30).toFixed(2)} GiB`);
  const rows: Row[] = [];
  for (const m of [1, M_GEMM]) {
    const shape = `${m}x${K}->${N}`;
    const xs = Float32Array.from({ length: m * K }, () => Math.random() - 0.5);
    const x = await gpu.upload([m, K], 'f32', xs, 'x');
    const bound = contenders.map((c) => c.bind(xs, x, m));
    // correctness first: every output against float64 (all of the GEMV, CHECK_ROWS rows of the GEMM)
    const checked = m === 1 ? [0] : Array.from({ length: CHECK_ROWS }, (_, i) => Math.floor((i * (m - 1)) / (CHECK_ROWS - 1)));
    const ref = references(xs, checked, bits, q4);
    const err: number[] = [];
    for (const [i, b] of bound.entries()) err.push(relL2(await b.output(), checked, ref[contenders[i].ref]));
    // warm-up, then rounds of one run each
    for (const b of bound) await b.run();
    const times: number[][] = bound.map(() => []);
    const cpu: number[][] = bound.map(() => []);
    for (let round = 0; round < (m === 1 ? 2 * REPS + 1 : REPS); round++) {
      for (const [i, b] of bound.entries()) {
        const [t0, c0] = [performance.now(), process.cpuUsage()];
        await b.run();
        const c = process.cpuUsage(c0);
        times[i].push(performance.now() - t0);
        cpu[i].push((c.user + c.system) / 1000);
      }
    }
    const ms = times.map(median);
    const [bf16Ms, q4Ms] = [ms[0], ms[1]];
    for (const [i, c] of contenders.entries()) {
      const row: Row = {
        shape,
        engine: c.engine,
        dtype: c.dtype,
        ms: ms[i],
        cpu_ms: median(cpu[i]),
        weight_mb: c.weightBytes / 1e6,
        gbps: c.weightBytes / ms[i] / 1e6,
        vs_our_q4: ms[i] / q4Ms,
        vs_our_bf16: ms[i] / bf16Ms,
        rel_l2: err[i],
        note: [`reference: float64 on the ${c.ref === 'q4' ? 'dequantized q4' : 'bf16'} weights${m > 1 ? `, rows ${checked.join(', ')}` : ''}`, c.note].filter(Boolean).join('; '),
      };
      if (m > 1) row.gflops = (2 * m * K * N) / ms[i] / 1e6;
      rows.push(row);
      if (asJson) process.stdout.write(JSON.stringify(row) + '\n');
      else log(`  ${shape} ${c.engine} ${c.dtype}: ${ms[i].toFixed(2)} ms (rel L2 ${err[i].toExponential(2)})`);
    }
    for (const b of bound) b.release();
    x.release();
  }
  for (const c of contenders) c.release();
  log(`load average after: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  if (!asJson) printTable(rows);
  gpu.destroy();
  process.exit(0);
}

function printTable(rows: Row[]): void {
  console.log('\n| shape | engine | weights | ms (median) | CPU ms | weight GB/s | GFLOP/s | time vs our q4 | vs our bf16 | rel L2 | note |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.shape} | ${r.engine} | ${r.dtype}, ${r.weight_mb.toFixed(1)} MB | ${r.ms.toFixed(2)} | ${r.cpu_ms.toFixed(0)} | ${r.gbps.toFixed(2)} | ${r.gflops?.toFixed(1) ?? '-'} | ${r.vs_our_q4.toFixed(2)}x | ${r.vs_our_bf16.toFixed(2)}x | ${r.rel_l2.toExponential(2)} | ${r.note ?? ''} |`);
  }
}

await main();
