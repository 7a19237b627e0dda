// A/B of software-GEMV kernel variants (defines of kernels/matmul.wgsl) in one process: variants
// interleaved in rounds of 5 dispatches per submit; median wall and process CPU time (lavapipe's
// threads are the process's, so CPU time is what a busy host disturbs least), and against the first
// variant both as a ratio of medians and as the median of each round's ratio (paired).
//   SHAPE=K,N VARIANTS='[[label, dtype, {defines}, columnsPerWorkgroup], ...]' ROUNDS=11 COPIES=1 npx tsx bench/gemv-variants.ts
// e.g. [["bf16","bf16",{"COLS":2,"X_TEXELS":true},128],["q4","q4",{"COLS":4,"X_TEXELS":true},256]];
// SWAR variants get their int8 activation pairs from kernels/matmul_xq8.wgsl (each dispatch with its pack).
// Without VARIANTS: today's bf16, float q8, SWAR q8, float q4 and SWAR q4 GEMVs (src/ops/matmul.ts).
// Quantized weights get allocQuantized's layout for the default modes (the SWAR GEMVs': q4 64 rows side
// by side, q8 32, which the float variants read too; theirs are 32 and 16).
import { getDevice, partBuffer, toBf16Bits, type Tensor } from '../src/gpu/index.js';
import { weightDefines } from '../src/ops/matmul.js';
import { quantizeRows } from '../src/weights/quantize.js';
import { allocQuantized } from '../src/weights/quantize-upload.js';

const gpu = await getDevice();
const [K, N] = (process.env.SHAPE ?? '4096,14336').split(',').map(Number);
const variants: [string, string, Record<string, unknown>, number][] = JSON.parse(
  process.env.VARIANTS ??
    '[["bf16 c2 x texels","bf16",{"COLS":2,"X_TEXELS":true},128],["q8 float c2 x texels","q8",{"COLS":2,"X_TEXELS":true},128],["q8 SWAR c4","q8",{"COLS":4,"SWAR":true},256],["q4 float c4 x texels","q4",{"COLS":4,"X_TEXELS":true},256],["q4 SWAR c8","q4",{"COLS":8,"SWAR":true},512]]',
);
async function weight(dtype: string): Promise<Tensor> {
  const wv = Float32Array.from({ length: 256 * K }, () => (Math.random() - 0.5) * 0.05);
  if (dtype === 'bf16') {
    const w = await gpu.allocWeight([N, K], 'bf16', 'w');
    const bytes = new Uint8Array(toBf16Bits(wv).buffer);
    for (let off = 0; off < N * K * 2; off += bytes.length) gpu.writeBytes(w, bytes.subarray(0, Math.min(bytes.length, N * K * 2 - off)), off);
    return w;
  }
  const { tensor, storage, rowBytes } = await allocQuantized(gpu, dtype as 'q4', [N, K], 'w');
  const block = quantizeRows(dtype as 'q4', toBf16Bits(wv), K);
  for (let r = 0; r < N; r += 256) gpu.writeBytes(storage, block.subarray(0, Math.min(256, N - r) * rowBytes), r * rowBytes);
  return tensor;
}
// COPIES weights per dtype, dispatch r reading copy r % COPIES: with a few, no dispatch finds its
// weights in the last-level cache (a q4 weight of 33 MB might fit), as in decode
const copies = Number(process.env.COPIES ?? 1);
const ws: Record<string, Tensor[]> = {};
for (const d of new Set(variants.map((v) => v[1]))) ws[d] = await Promise.all(Array.from({ length: copies }, () => weight(d)));
const x = await gpu.upload([1, K], 'f32', Float32Array.from({ length: K }, () => Math.random() - 0.5));
await gpu.sync();
const reps = 5;
let xtex: GPUTexture | undefined;
let xswar: GPUTexture | undefined;
const run = async (v: (typeof variants)[number]) => {
  const [, dtype, extra, cols] = v;
  const w0 = ws[dtype][0];
  const defines = { ...weightDefines(w0.dtype), VEC: true, SUBGROUPS: true, X8: true, GEMV: true, ROWS: 1, ...extra } as Record<string, boolean | number | string>;
  if (w0.texels) Object.assign(defines, { W_TEXELS: true, IL: w0.parts[0].interleave ?? 1 });
  for (const k of Object.keys(defines)) if (defines[k] === false) delete defines[k];
  const xt = extra.X_TEXELS ? (xtex ??= gpu.device.createTexture({ size: [K / 4, 1], format: 'rgba32float', usage: GPUTextureUsage.STORAGE_BINDING })) : null;
  const xs = extra.SWAR ? (xswar ??= gpu.device.createTexture({ size: [(K / 32) * 5, 1], format: 'rgba32uint', usage: GPUTextureUsage.STORAGE_BINDING })) : null;
  await gpu.step((rec) => {
    for (let r = 0; r < reps; r++) {
      const w = ws[dtype][r % copies];
      if (xt) rec.dispatch('matmul_xtexels', {}, [rec.uniform([1, K]), x, xt], [Math.ceil(K / 256), 1], 'xt');
      if (xs) rec.dispatch('matmul_xq8', { SWAR: true }, [rec.uniform([1, K]), x, xs], [Math.ceil(K / 32 / 64), 1], 'xs');
      for (const part of w.parts) {
        const out = rec.gpu.empty([1, N], 'f32', 'o');
        const params = rec.uniform([1, N, K, part.rowStart, part.rows]);
        rec.dispatch('matmul', defines, [params, xs ?? xt ?? x, part.texture ?? partBuffer(w, part), out], [Math.ceil(part.rows / cols), 1], 'g');
        out.release();
      }
    }
  });
  await gpu.sync();
};
for (const v of variants) await run(v);
const t: number[][] = variants.map(() => []);
const c: number[][] = variants.map(() => []);
for (let round = 0; round < Number(process.env.ROUNDS ?? 7); round++) {
  for (const [i, v] of variants.entries()) {
    const [t0, c0] = [performance.now(), process.cpuUsage()];
    await run(v);
    const cu = process.cpuUsage(c0);
    t[i].push((performance.now() - t0) / reps);
    c[i].push((cu.user + cu.system) / 1000 / reps);
  }
}
const med = (a: number[]) => [...a].sort((p, q) => p - q)[a.length >> 1];
const base = med(t[0]);
const baseC = med(c[0]);
// paired: the median over rounds of each round's ratio to the first variant in the same round (a
// drift of the host across rounds cancels out)
const paired = (a: number[][], i: number) => med(a[i].map((x, r) => x / a[0][r]));
for (const [i, v] of variants.entries()) {
  console.log(`${v[0].padEnd(24)} ${med(t[i]).toFixed(2)} ms (min ${Math.min(...t[i]).toFixed(2)})  ${(med(t[i]) / base).toFixed(2)}x (paired ${paired(t, i).toFixed(2)}x)   cpu ${med(c[i]).toFixed(1)} ms ${(med(c[i]) / baseC).toFixed(2)}x (paired ${paired(c, i).toFixed(2)}x)`);
}
gpu.destroy();
