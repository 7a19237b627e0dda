// Embedding gather (kernels/embedding.wgsl): ids i32 [N] x table [V, D] (bf16, f32, q8 or q4, possibly
// split by rows into parts) -> f32 [N, D].

import type { Defines } from '../gpu/pipelines.js';
import type { Recorder } from '../gpu/recorder.js';
import { partBuffer, type Tensor } from '../gpu/tensor.js';
import { expectDtype, fmt } from './common.js';

/** Defines that select how the kernel reads `table` (kernels/embedding.wgsl). */
export function tableDefines(table: Pick<Tensor, 'dtype' | 'texels' | 'parts'>): Defines {
  const quant = table.dtype === 'q8' || table.dtype === 'q4';
  const defines: Defines = { BF16: table.dtype === 'bf16', TEXELS: table.texels, ...(quant ? { QUANT: true, [table.dtype.toUpperCase()]: true, K_VALUES: 'params.d' } : {}) };
  // every part of a tensor has the same interleave (it follows from the row length)
  if (table.texels) defines.IL = table.parts[0].interleave ?? 1;
  return defines;
}

/**
 * Rows of `table` for each id. Ids outside [0, V) give zero rows on the GPU (nothing is read out
 * of bounds); pass `hostIds` (the same ids, when the host has them) to have them rejected instead.
 */
export function embedding(rec: Recorder, ids: Tensor, table: Tensor, hostIds?: ArrayLike<number>): Tensor {
  expectDtype('embedding', 'ids', ids, 'i32');
  expectDtype('embedding', 'table', table, 'bf16', 'f32', 'q8', 'q4');
  if (ids.shape.length !== 1) throw new Error(`embedding: ids has shape ${fmt(ids.shape)}; expected [N]`);
  if (table.shape.length !== 2) throw new Error(`embedding: table has shape ${fmt(table.shape)}; expected [vocab, dim]`);
  const [vocab, d] = table.shape;
  const n = ids.shape[0];
  if (hostIds) {
    if (hostIds.length !== n) throw new Error(`embedding: ${hostIds.length} host ids for ${n} ids`);
    for (let i = 0; i < n; i++) {
      const id = hostIds[i];
      if (!Number.isInteger(id) || id < 0 || id >= vocab) throw new Error(`embedding: id ${id} at position ${i} is outside the vocabulary [0, ${vocab})`);
    }
  }
  const out = rec.gpu.empty([n, d], 'f32', 'embedding');
  const grid: [number, number, number] = [1, Math.min(n, 65535), Math.ceil(n / 65535)];
  table.parts.forEach((p, k) => {
    const params = rec.uniform([n, d, p.rowStart, p.rows, vocab, k === 0 ? 1 : 0]);
    rec.dispatch('embedding', tableDefines(table), [params, ids, p.texture ?? partBuffer(table, p), out], grid, `embedding[${p.rowStart}:${p.rowStart + p.rows}]`);
  });
  return out;
}
