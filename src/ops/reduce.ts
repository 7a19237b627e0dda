// Reductions over the last dim (kernels/reduce.wgsl): argmax for greedy decoding, softmax.

import type { Recorder } from '../gpu/recorder.js';
import type { Tensor } from '../gpu/tensor.js';
import { expectDtype, grid1d } from './common.js';

/** Set in an argmax result when the row's largest value is NaN or +Inf (see kernels/reduce.wgsl). */
export const NON_FINITE_BIT = 0x80000000;

/** A model stage produced NaN or infinite values (seen through the argmax flag): nothing after it can be trusted. */
export class NonFiniteError extends Error {
  override name = 'NonFiniteError';
}

/**
 * Index of the largest value along the last dim of x [..., V] -> u32 [...] (ties: lowest index; NaN
 * wins, as torch.argmax), with NON_FINITE_BIT set when that value is not finite.
 */
export function argmax(rec: Recorder, x: Tensor): Tensor {
  expectDtype('argmax', 'x', x, 'f32');
  const v = x.shape[x.shape.length - 1];
  const rows = x.numel / v;
  const out = rec.gpu.empty(x.shape.length > 1 ? x.shape.slice(0, -1) : [1], 'u32', 'argmax');
  rec.dispatch('reduce', { ARGMAX: true }, [rec.uniform([rows, v]), x, out], grid1d(rows), 'argmax');
  return out;
}

/** Softmax along the last dim of x [..., V] (max-subtracted, f32). */
export function softmax(rec: Recorder, x: Tensor): Tensor {
  expectDtype('softmax', 'x', x, 'f32');
  const v = x.shape[x.shape.length - 1];
  const rows = x.numel / v;
  const out = rec.gpu.empty(x.shape, 'f32', 'softmax');
  rec.dispatch('reduce', { SOFTMAX: true, SUBGROUPS: rec.gpu.features.subgroups }, [rec.uniform([rows, v]), x, out], grid1d(rows), 'softmax');
  return out;
}
