// Elementwise ops (kernels/elementwise.wgsl).

import type { Recorder } from '../gpu/recorder.js';
import type { Tensor } from '../gpu/tensor.js';
import { expectDtype, expectSameShape, grid1d } from './common.js';

function binary(rec: Recorder, op: 'add' | 'mul', a: Tensor, b: Tensor): Tensor {
  expectDtype(op, 'a', a, 'f32');
  expectDtype(op, 'b', b, 'f32');
  expectSameShape(op, a, b);
  const out = rec.gpu.empty(a.shape, 'f32', op);
  rec.dispatch('elementwise', { [`OP_${op.toUpperCase()}`]: true }, [rec.uniform([a.numel, { f32: 0 }]), a, b, out], grid1d(Math.ceil(a.numel / 256)), op);
  return out;
}

export const add = (rec: Recorder, a: Tensor, b: Tensor): Tensor => binary(rec, 'add', a, b);
export const mul = (rec: Recorder, a: Tensor, b: Tensor): Tensor => binary(rec, 'mul', a, b);

export function scale(rec: Recorder, a: Tensor, alpha: number): Tensor {
  expectDtype('scale', 'a', a, 'f32');
  const out = rec.gpu.empty(a.shape, 'f32', 'scale');
  rec.dispatch('elementwise', { OP_SCALE: true }, [rec.uniform([a.numel, { f32: alpha }]), a, a, out], grid1d(Math.ceil(a.numel / 256)), 'scale');
  return out;
}
