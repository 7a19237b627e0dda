// Flash attention over strided views (kernels/attention.wgsl): one kernel family serves the
// InternViT self-attention (fused qkv rows), InternLM2 attention (grouped wqkv rows + KV cache, GQA,
// causal with a position offset, prefill and decode) and the PVC temporal attention (over frames,
// batched over token positions), all without copies.

import type { Recorder } from '../gpu/recorder.js';
import type { Tensor } from '../gpu/tensor.js';
import { expectDtype, fmt } from './common.js';

/**
 * A strided view of one operand. Element (batch b, row t, head h, dim i) sits at flat element index
 *   offset + b*batchStride + t*rowStride + head(h) + i
 * where head(h) = floor(h / rep)*groupStride + (h % rep)*headDim for q and out (rep = heads / kvHeads),
 * and head(g) = g*groupStride for k and v (kv head g).
 * All numbers are in elements and must be multiples of 4 (the kernel reads 16-byte words).
 */
export interface AttentionView {
  tensor: Tensor;
  /** element index of (batch 0, row 0, head 0, dim 0); default 0 */
  offset?: number;
  /** elements between consecutive sequence rows */
  rowStride: number;
  /** elements between consecutive batch entries; default 0 (only read when batch > 1) */
  batchStride?: number;
  /** q/out: elements between kv-group blocks of rep heads; k/v: elements between kv heads */
  groupStride: number;
}

export interface AttentionOptions {
  /** query heads */
  heads: number;
  /** key/value heads (GQA); default `heads`; must divide `heads` */
  kvHeads?: number;
  headDim: number;
  /** query rows per batch entry */
  lq: number;
  /** key/value rows per batch entry (valid rows of a KV cache) */
  lk: number;
  /** independent sequences; default 1 */
  batch?: number;
  /** 'none': bidirectional; 'causal': query row t (absolute position qOffset + t) sees keys 0..qOffset+t */
  mask?: 'none' | 'causal';
  /** absolute position of query row 0 (causal); default 0 */
  qOffset?: number;
  /** default headDim^-0.5 */
  scale?: number;
  /** where to write; default a new dense [lq, heads*headDim] tensor ([batch, lq, heads*headDim] when batch > 1) */
  out?: AttentionView;
}

const OP = 'attention';
const HEAD_DIMS = [4, 8, 16, 32, 64, 80, 96, 128];

export function attention(rec: Recorder, q: AttentionView, k: AttentionView, v: AttentionView, opts: AttentionOptions): Tensor {
  const { heads, headDim: d, lq, lk } = opts;
  const kvHeads = opts.kvHeads ?? heads;
  const batch = opts.batch ?? 1;
  const causal = (opts.mask ?? 'none') === 'causal';
  const qOffset = opts.qOffset ?? 0;
  for (const [name, x] of Object.entries({ heads, kvHeads, headDim: d, lq, lk, batch })) {
    if (!Number.isInteger(x) || x < 1) throw new Error(`${OP}: ${name} must be a positive integer, got ${x}`);
  }
  if (!Number.isInteger(qOffset) || qOffset < 0) throw new Error(`${OP}: qOffset must be a non-negative integer, got ${qOffset}`);
  if (opts.mask !== undefined && opts.mask !== 'none' && opts.mask !== 'causal') throw new Error(`${OP}: unknown mask '${opts.mask}' (expected 'none' or 'causal')`);
  if (!HEAD_DIMS.includes(d)) throw new Error(`${OP}: head dim ${d} is not supported (supported: ${HEAD_DIMS.join(', ')})`);
  if (heads % kvHeads !== 0) throw new Error(`${OP}: ${heads} query heads are not a multiple of ${kvHeads} kv heads`);
  if (causal && qOffset + lq > lk) throw new Error(`${OP}: causal queries at positions ${qOffset}..${qOffset + lq - 1} need ${qOffset + lq} keys, only ${lk} given`);
  const rep = heads / kvHeads;

  const out = opts.out ?? {
    tensor: rec.gpu.empty(batch > 1 ? [batch, lq, heads * d] : [lq, heads * d], 'f32', OP),
    rowStride: heads * d,
    batchStride: lq * heads * d,
    groupStride: rep * d,
  };
  for (const [name, t] of [['q', q.tensor], ['k', k.tensor], ['v', v.tensor]] as const) {
    if (t === out.tensor) throw new Error(`${OP}: out must not be the same tensor as ${name}`);
  }
  const params = [
    checkView('q', q, batch, lq, (kvHeads - 1) * q.groupStride + (rep - 1) * d + d),
    checkView('k', k, batch, lk, (kvHeads - 1) * k.groupStride + d),
    checkView('v', v, batch, lk, (kvHeads - 1) * v.groupStride + d),
    checkView('out', out, batch, lq, (kvHeads - 1) * out.groupStride + (rep - 1) * d + d),
  ];

  const gpu = rec.gpu;
  // The broadcast recipe spreads 8 key rows over lanes 0..7: it needs subgroups of at least 8.
  const broadcast = gpu.adapterClass === 'software' && gpu.features.subgroups && gpu.features.subgroupMinSize >= 8;
  const slots = lq * rep;
  // Software recipe: one subgroup per workgroup (subgroups never share loads there, and small tiles
  // waste little on ragged lengths such as 1025) and 4 queries per lane so one key load feeds more
  // FMAs. Hardware recipe: 64 lanes share each K/V tile; small query sets (decode, a few frames) get 8.
  const wg = slots <= 8 || broadcast ? 8 : 64;
  const qpl = broadcast && slots > wg ? 4 : 1;
  const nTiles = Math.ceil(slots / (wg * qpl));
  // Split the keys across workgroups when there are too few workgroups to fill the device (decode).
  const target = gpu.adapterClass === 'software' ? 32 : 512;
  const groupsNow = nTiles * kvHeads * batch;
  const nSplit = Math.max(1, Math.min(Math.ceil(target / groupsNow), Math.floor(lk / 256)));
  const splitLen = Math.ceil(lk / nSplit);

  const shape = { D4: d / 4, WG: wg, QPL: qpl };
  const defines = { ...shape, ...(broadcast ? { SUBGROUPS: true } : { KT: keysPerTile(d, wg, gpu.device.limits.maxComputeWorkgroupStorageSize) }) };
  const scale = (opts.scale ?? 1 / Math.sqrt(d)) * Math.LOG2E;
  const uniform = rec.uniform([lq, lk, rep, qOffset, causal ? 1 : 0, splitLen, nSplit, { f32: scale }, ...params.flat()]);
  const grid: [number, number, number] = [nTiles * nSplit, kvHeads, batch];
  if (nSplit === 1) {
    rec.dispatch('attention', defines, [uniform, q.tensor, k.tensor, v.tensor, out.tensor], grid, OP);
    return out.tensor;
  }
  const pad = nTiles * wg * qpl;
  const partO = gpu.empty([nSplit * batch * kvHeads * pad, d], 'f32', 'attention partial o');
  const partMl = gpu.empty([nSplit * batch * kvHeads * pad, 2], 'f32', 'attention partial m, l');
  rec.dispatch('attention', { ...defines, SPLIT: true }, [uniform, q.tensor, k.tensor, v.tensor, partO, partMl], grid, `${OP} split-K`);
  rec.dispatch('attention', { ...shape, COMBINE: true }, [uniform, partO, partMl, out.tensor], [Math.ceil((slots * d) / 4 / 64), kvHeads, batch], `${OP} combine`);
  partO.release();
  partMl.release();
  return out.tensor;
}

/**
 * Hardware recipe: keys per shared tile, the largest power of two (at most 2048 / d, 64) whose K and V
 * rows (2 * d * 4 bytes each) and score column (4 bytes per lane) fit the workgroup storage limit.
 */
function keysPerTile(d: number, wg: number, storageBytes: number): number {
  let kt = Math.min(64, 2048 / d);
  while (kt > 1 && kt * (8 * d + 4 * wg) > storageBytes) kt /= 2;
  return kt;
}

/** Validates a view against its tensor and returns (offset, row, batch, group) in vec4 units. */
function checkView(name: string, view: AttentionView, batch: number, rows: number, rowSpan: number): number[] {
  const t = view.tensor;
  expectDtype(OP, name, t, 'f32');
  if (t.parts.length !== 1) throw new Error(`${OP}: ${name} (${t.label}) is split over ${t.parts.length} buffers; attention reads single-binding tensors`);
  const offset = view.offset ?? 0;
  const batchStride = view.batchStride ?? 0;
  const fields = { offset, rowStride: view.rowStride, batchStride, groupStride: view.groupStride };
  for (const [f, x] of Object.entries(fields)) {
    if (!Number.isInteger(x) || x < 0 || x % 4 !== 0) throw new Error(`${OP}: ${name}.${f} = ${x} must be a non-negative multiple of 4 elements`);
  }
  const end = offset + (batch - 1) * batchStride + (rows - 1) * view.rowStride + rowSpan;
  if (end > t.numel) {
    throw new Error(`${OP}: ${name} view (offset ${offset}, rows ${rows} x ${view.rowStride}, batch ${batch} x ${batchStride}, ${rowSpan} elements per row) reaches element ${end}, past ${t.label} ${fmt(t.shape)} (${t.numel} elements)`);
  }
  return [offset / 4, view.rowStride / 4, batchStride / 4, view.groupStride / 4];
}

/** InternViT self-attention: qkv [N, 3C] (q | k | v, head h at h*d within each) -> [N, C]. */
export function vitAttention(rec: Recorder, qkv: Tensor, heads: number): Tensor {
  if (qkv.shape.length !== 2 || qkv.shape[1] % (3 * heads) !== 0) throw new Error(`vitAttention: qkv has shape ${fmt(qkv.shape)}; expected [N, 3*C] with C a multiple of ${heads} heads`);
  const [n, c3] = qkv.shape;
  const c = c3 / 3;
  const d = c / heads;
  const view = (offset: number): AttentionView => ({ tensor: qkv, offset, rowStride: c3, groupStride: d });
  return attention(rec, view(0), view(c), view(2 * c), { heads, headDim: d, lq: n, lk: n });
}

/**
 * InternLM2 attention. qkv: the wqkv output after RoPE, [Lq, kvHeads*(rep+2)*d], per kv head g a block
 * [q_{g*rep} .. q_{g*rep+rep-1}, k_g, v_g]; only its q columns are read. kCache / vCache: [maxLen, kvHeads*d]
 * holding kvLen valid rows (this step's keys included). Causal; query row i sits at position qOffset + i
 * (default kvLen - Lq). Returns [Lq, heads*d].
 */
export function llmAttention(rec: Recorder, qkv: Tensor, kCache: Tensor, vCache: Tensor, o: { heads: number; kvHeads: number; kvLen: number; qOffset?: number }): Tensor {
  const rep = o.heads / o.kvHeads;
  if (qkv.shape.length !== 2 || kCache.shape.length !== 2) throw new Error(`llmAttention: qkv ${fmt(qkv.shape)} and kCache ${fmt(kCache.shape)} must be 2-D`);
  const d = kCache.shape[1] / o.kvHeads;
  if (qkv.shape[1] !== o.kvHeads * (rep + 2) * d) throw new Error(`llmAttention: qkv has ${qkv.shape[1]} columns; expected ${o.kvHeads} kv heads x (${rep} + 2) x head dim ${d} = ${o.kvHeads * (rep + 2) * d}`);
  if (o.kvLen > kCache.shape[0]) throw new Error(`llmAttention: kvLen ${o.kvLen} exceeds the cache's ${kCache.shape[0]} rows`);
  const lq = qkv.shape[0];
  const cache = (tensor: Tensor): AttentionView => ({ tensor, rowStride: o.kvHeads * d, groupStride: d });
  return attention(rec, { tensor: qkv, rowStride: qkv.shape[1], groupStride: (rep + 2) * d }, cache(kCache), cache(vCache), {
    heads: o.heads,
    kvHeads: o.kvHeads,
    headDim: d,
    lq,
    lk: o.kvLen,
    mask: 'causal',
    qOffset: o.qOffset ?? o.kvLen - lq,
  });
}

/**
 * PVC temporal attention: x [F, P, 3C] (fused qkv per frame and token position); for each position p
 * the F rows x[f, p, :] form one sequence, causal over frames by default. Returns [F, P, C].
 */
export function temporalAttention(rec: Recorder, x: Tensor, heads: number, mask: 'none' | 'causal' = 'causal'): Tensor {
  if (x.shape.length !== 3 || x.shape[2] % (3 * heads) !== 0) throw new Error(`temporalAttention: x has shape ${fmt(x.shape)}; expected [F, P, 3*C] with C a multiple of ${heads} heads`);
  const [f, p, c3] = x.shape;
  const c = c3 / 3;
  const d = c / heads;
  const view = (offset: number): AttentionView => ({ tensor: x, offset, rowStride: p * c3, batchStride: c3, groupStride: d });
  const out = rec.gpu.empty([f, p, c], 'f32', 'temporal attention');
  return attention(rec, view(0), view(c), view(2 * c), {
    heads,
    headDim: d,
    lq: f,
    lk: f,
    batch: p,
    mask,
    out: { tensor: out, rowStride: p * c, batchStride: c, groupStride: d },
  });
}
