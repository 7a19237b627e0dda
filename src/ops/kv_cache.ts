// KV cache append (kernels/kv_cache.wgsl).

import type { Recorder } from '../gpu/recorder.js';
import type { Tensor } from '../gpu/tensor.js';
import { expectDtype, fmt, grid1d } from './common.js';

/**
 * Copy the k and v heads of qkv [rows, kvHeads*(rep+2)*d] (InternLM2's grouped wqkv output) into
 * kCache / vCache [maxLen, kvHeads*d] at rows [position, position + rows).
 */
export function appendKv(rec: Recorder, qkv: Tensor, kCache: Tensor, vCache: Tensor, o: { kvHeads: number; headDim: number; position: number }): void {
  const op = 'appendKv';
  for (const [name, t] of [['qkv', qkv], ['kCache', kCache], ['vCache', vCache]] as const) expectDtype(op, name, t, 'f32');
  const { kvHeads, headDim: d, position } = o;
  const width = kvHeads * d;
  if (kCache.shape.length !== 2 || kCache.shape[1] !== width || vCache.shape.join() !== kCache.shape.join()) {
    throw new Error(`${op}: caches ${fmt(kCache.shape)} / ${fmt(vCache.shape)} must both be [maxLen, ${width}]`);
  }
  const [rows, cols] = qkv.shape;
  if (qkv.shape.length !== 2 || cols % width !== 0 || cols / width < 3) throw new Error(`${op}: qkv ${fmt(qkv.shape)} is not [rows, ${kvHeads} x (rep+2) x ${d}]`);
  const rep = cols / width - 2;
  if (!Number.isInteger(position) || position < 0 || position + rows > kCache.shape[0]) {
    throw new Error(`${op}: rows [${position}, ${position + rows}) do not fit the cache's ${kCache.shape[0]} rows (context full)`);
  }
  const total = rows * width;
  rec.dispatch('kv_cache', {}, [rec.uniform([rows, kvHeads, d, rep, position, total]), qkv, kCache, vCache], grid1d(Math.ceil(total / 256)), op);
}
