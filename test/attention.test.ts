import { afterAll, describe, expect, it } from 'vitest';
import type { Gpu, Tensor } from '../src/gpu/index.js';
import { attention, llmAttention, temporalAttention, vitAttention } from '../src/ops/attention.js';
import { freshSeed, randn, relL2, rng, testGpu } from './util.js';

const TOL = 1e-5;
const gpus: [string, Gpu][] = [
  ['software', await testGpu()],
  ['hardware', await testGpu({ adapterClass: 'hardware' })],
];
afterAll(() => gpus.forEach(([, g]) => g.destroy()));

type Get = (b: number, t: number, h: number, i: number) => number;

/**
 * float64 softmax(q kᵀ * scale + mask) v. get* address (batch, row, head, dim); kv head = floor(h / rep).
 * Returns out[((b * lq + t) * heads + h) * d + i].
 */
function reference(o: { batch: number; lq: number; lk: number; heads: number; kvHeads: number; d: number; causal: boolean; qOffset: number }, q: Get, k: Get, v: Get): Float64Array {
  const { batch, lq, lk, heads, kvHeads, d } = o;
  const rep = heads / kvHeads;
  const scale = 1 / Math.sqrt(d);
  const out = new Float64Array(batch * lq * heads * d);
  const s = new Float64Array(lk);
  for (let b = 0; b < batch; b++)
    for (let h = 0; h < heads; h++)
      for (let t = 0; t < lq; t++) {
        const g = Math.floor(h / rep);
        const n = o.causal ? o.qOffset + t + 1 : lk;
        let max = -Infinity;
        for (let j = 0; j < n; j++) {
          let dot = 0;
          for (let i = 0; i < d; i++) dot += q(b, t, h, i) * k(b, j, g, i);
          s[j] = dot * scale;
          max = Math.max(max, s[j]);
        }
        let sum = 0;
        for (let j = 0; j < n; j++) sum += (s[j] = Math.exp(s[j] - max));
        const base = ((b * lq + t) * heads + h) * d;
        for (let j = 0; j < n; j++) for (let i = 0; i < d; i++) out[base + i] += (s[j] / sum) * v(b, j, g, i);
      }
  return out;
}

function message(seed: number, err: number): string {
  return `seed ${seed}: rel L2 ${err.toExponential(2)}`;
}

describe.each(gpus)('attention (%s variant)', (_name, gpu) => {
  const vitCases: [number, number, number][] = [
    [77, 4, 16],
    [131, 2, 64],
    [37, 3, 8],
    [40, 2, 32],
  ];
  it.each(vitCases)('ViT fused qkv: N=%i, %i heads, d=%i, bidirectional', async (n, heads, d) => {
    const seed = freshSeed();
    const c = heads * d;
    const x = randn(n * 3 * c, rng(seed));
    const qkv = await gpu.upload([n, 3 * c], 'f32', x);
    const got = await gpu.step((rec) => rec.read(vitAttention(rec, qkv, heads)));
    // [N, 3C]: q head h at column h*d, k at C + h*d, v at 2C + h*d; output head h at column h*d
    const at = (part: number): Get => (_b, t, h, i) => x[t * 3 * c + part * c + h * d + i];
    const want = reference({ batch: 1, lq: n, lk: n, heads, kvHeads: heads, d, causal: false, qOffset: 0 }, at(0), at(1), at(2));
    const err = relL2(got, want);
    expect(err, message(seed, err)).toBeLessThanOrEqual(TOL);
    qkv.release();
  });

  const llmCases: [number, number, number, number, number, number][] = [
    // lq, kvLen, maxLen, heads, kvHeads, d
    [37, 37, 50, 8, 2, 32], // prefill
    [13, 50, 64, 8, 2, 32], // a chunk after 37 cached rows
    [37, 600, 640, 8, 2, 16], // chunk at a large offset: split-K with several query tiles
    [1, 77, 80, 8, 2, 32], // decode, short cache
    [1, 1000, 1031, 8, 2, 128], // decode, split-K
    [1, 300, 300, 4, 4, 64], // decode without GQA
    [20, 20, 24, 8, 2, 128], // prefill at the real head dim (full 64-lane workgroups in the hardware recipe)
  ];
  it.each(llmCases)('LLM grouped GQA with KV cache: Lq=%i, kvLen=%i (cache %i rows), %i/%i heads, d=%i, causal', async (lq, kvLen, maxLen, heads, kvHeads, d) => {
    const seed = freshSeed();
    const rand = rng(seed);
    const rep = heads / kvHeads;
    const width = kvHeads * (rep + 2) * d;
    const x = randn(lq * width, rand);
    const kc = randn(maxLen * kvHeads * d, rand);
    const vc = randn(maxLen * kvHeads * d, rand);
    // rows past kvLen must never be read
    kc.fill(NaN, kvLen * kvHeads * d);
    vc.fill(NaN, kvLen * kvHeads * d);
    const qkv = await gpu.upload([lq, width], 'f32', x);
    const kt = await gpu.upload([maxLen, kvHeads * d], 'f32', kc);
    const vt = await gpu.upload([maxLen, kvHeads * d], 'f32', vc);
    const got = await gpu.step((rec) => rec.read(llmAttention(rec, qkv, kt, vt, { heads, kvHeads, kvLen })));
    // per kv head g a block of (rep+2)*d columns: q_{g*rep} .. q_{g*rep+rep-1}, k_g, v_g
    const q: Get = (_b, t, h, i) => x[t * width + Math.floor(h / rep) * (rep + 2) * d + (h % rep) * d + i];
    const cache = (a: Float32Array): Get => (_b, j, g, i) => a[j * kvHeads * d + g * d + i];
    const want = reference({ batch: 1, lq, lk: kvLen, heads, kvHeads, d, causal: true, qOffset: kvLen - lq }, q, cache(kc), cache(vc));
    const err = relL2(got, want);
    expect(err, message(seed, err)).toBeLessThanOrEqual(TOL);
    [qkv, kt, vt].forEach((t) => t.release());
  });

  it.each([
    [1, 'causal'],
    [2, 'causal'],
    [5, 'causal'],
    [9, 'causal'],
    [9, 'none'],
  ] as const)('PVC temporal: F=%i frames, %s over frames', async (f, mask) => {
    const seed = freshSeed();
    const [p, heads, d] = [13, 2, 16];
    const c = heads * d;
    const x = randn(f * p * 3 * c, rng(seed));
    const xt = await gpu.upload([f, p, 3 * c], 'f32', x);
    const got = await gpu.step((rec) => rec.read(temporalAttention(rec, xt, heads, mask)));
    // batch = token position p, sequence = frames; output [F, P, C] reordered to the reference's [p][f][h][i]
    const at = (part: number): Get => (b, t, h, i) => x[(t * p + b) * 3 * c + part * c + h * d + i];
    const want = reference({ batch: p, lq: f, lk: f, heads, kvHeads: heads, d, causal: mask === 'causal', qOffset: 0 }, at(0), at(1), at(2));
    const reordered = new Float64Array(want.length);
    for (let b = 0; b < p; b++) for (let t = 0; t < f; t++) reordered.set(want.subarray((b * f + t) * c, (b * f + t + 1) * c), (t * p + b) * c);
    const err = relL2(got, reordered);
    expect(err, message(seed, err)).toBeLessThanOrEqual(TOL);
    xt.release();
  });

  it('generic views: Lq != Lk, batch > 1, offsets, causal with offset, into a given output', async () => {
    const seed = freshSeed();
    const rand = rng(seed);
    const [batch, lq, lk, heads, kvHeads, d, qOffset] = [3, 21, 70, 6, 3, 8, 40];
    // separate q / k / v tensors with padding columns around the heads
    const qw = heads * d + 8;
    const kw = kvHeads * d + 4;
    const qa = randn(batch * lq * qw, rand);
    const ka = randn(batch * lk * kw, rand);
    const va = randn(batch * lk * kw, rand);
    const qt = await gpu.upload([batch * lq, qw], 'f32', qa);
    const kt = await gpu.upload([batch * lk, kw], 'f32', ka);
    const vt = await gpu.upload([batch * lk, kw], 'f32', va);
    const rep = heads / kvHeads;
    const outW = heads * d + 4;
    const got = await gpu.step((rec) => {
      const out = rec.gpu.empty([batch * lq, outW], 'f32', 'out');
      // the pad columns are never written: fill them so the read compares only head columns
      attention(rec, { tensor: qt, offset: 8, rowStride: qw, batchStride: lq * qw, groupStride: rep * d }, { tensor: kt, offset: 4, rowStride: kw, batchStride: lk * kw, groupStride: d }, { tensor: vt, offset: 4, rowStride: kw, batchStride: lk * kw, groupStride: d }, {
        heads,
        kvHeads,
        headDim: d,
        lq,
        lk,
        batch,
        mask: 'causal',
        qOffset,
        out: { tensor: out, offset: 4, rowStride: outW, batchStride: lq * outW, groupStride: rep * d },
      });
      return rec.read(out);
    });
    const q: Get = (b, t, h, i) => qa[(b * lq + t) * qw + 8 + h * d + i];
    const kv = (a: Float32Array): Get => (b, j, g, i) => a[(b * lk + j) * kw + 4 + g * d + i];
    const want = reference({ batch, lq, lk, heads, kvHeads, d, causal: true, qOffset }, q, kv(ka), kv(va));
    const heads_ = new Float32Array(want.length);
    for (let r = 0; r < batch * lq; r++) heads_.set(got.subarray(r * outW + 4, r * outW + 4 + heads * d) as Float32Array, r * heads * d);
    const err = relL2(heads_, want);
    expect(err, message(seed, err)).toBeLessThanOrEqual(TOL);
    [qt, kt, vt].forEach((t) => t.release());
  });
});

describe('attention: bad calls', () => {
  const gpu = gpus[0][1];
  const call = async (fn: (rec: Parameters<Parameters<Gpu['step']>[0]>[0], t: Record<string, Tensor>) => unknown): Promise<unknown> => {
    const t = {
      qkv: gpu.empty([10, 96], 'f32', 'qkv'),
      kc: gpu.empty([16, 32], 'f32', 'kc'),
      vc: gpu.empty([16, 32], 'f32', 'vc'),
      ints: gpu.empty([10, 96], 'i32', 'ints'),
    };
    try {
      return await gpu.step((rec) => fn(rec, t));
    } finally {
      Object.values(t).forEach((x) => x.release());
    }
  };
  const view = (tensor: Tensor, offset = 0) => ({ tensor, offset, rowStride: 96, groupStride: 16 });
  const base = { heads: 2, headDim: 16, lq: 10, lk: 10 };

  it('rejects mismatched head dims and head counts', async () => {
    await expect(call((rec, t) => vitAttention(rec, t.qkv, 5))).rejects.toThrow(/expected \[N, 3\*C\]/);
    await expect(call((rec, t) => attention(rec, view(t.qkv), view(t.qkv, 32), view(t.qkv, 64), { ...base, headDim: 12 }))).rejects.toThrow(/head dim 12 is not supported/);
    await expect(call((rec, t) => attention(rec, view(t.qkv), view(t.qkv, 32), view(t.qkv, 64), { ...base, kvHeads: 3 }))).rejects.toThrow(/not a multiple of 3 kv heads/);
    await expect(call((rec, t) => llmAttention(rec, t.qkv, t.kc, t.vc, { heads: 4, kvHeads: 2, kvLen: 10 }))).rejects.toThrow(/qkv has 96 columns; expected 2 kv heads/);
  });

  it('rejects views out of bounds, misaligned views and too few keys', async () => {
    await expect(call((rec, t) => attention(rec, view(t.qkv), view(t.qkv, 32), view(t.qkv, 68), base))).rejects.toThrow(/v view .* past qkv \[10, 96\]/);
    await expect(call((rec, t) => attention(rec, view(t.qkv), view(t.qkv, 32), view(t.qkv, 64), { ...base, lk: 11 }))).rejects.toThrow(/k view .* past qkv/);
    await expect(call((rec, t) => attention(rec, view(t.qkv), view(t.qkv, 34), view(t.qkv, 64), base))).rejects.toThrow(/k.offset = 34 must be a non-negative multiple of 4/);
    await expect(call((rec, t) => llmAttention(rec, t.qkv, t.kc, t.vc, { heads: 2, kvHeads: 2, kvLen: 17 }))).rejects.toThrow(/kvLen 17 exceeds the cache's 16 rows/);
    await expect(call((rec, t) => attention(rec, view(t.qkv), view(t.qkv, 32), view(t.qkv, 64), { ...base, lk: 5, mask: 'causal', qOffset: 1 }))).rejects.toThrow(/need 11 keys, only 5 given/);
  });

  it('rejects wrong dtypes and writing over an input', async () => {
    await expect(call((rec, t) => vitAttention(rec, t.ints, 2))).rejects.toThrow(/q has dtype i32; expected f32/);
    await expect(call((rec, t) => attention(rec, view(t.qkv), view(t.qkv, 32), view(t.qkv, 64), { ...base, out: view(t.qkv) }))).rejects.toThrow(/out must not be the same tensor as q/);
  });
});
