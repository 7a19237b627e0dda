// Row norms (kernels/norm.wgsl): LayerNorm (InternViT, mlp1) and RMSNorm (InternLM2) over the
// last dim, f32 in and out, f32 statistics.

import type { Recorder } from '../gpu/recorder.js';
import type { Tensor } from '../gpu/tensor.js';
import { expectDtype, fmt, grid1d } from './common.js';

function norm(rec: Recorder, op: string, x: Tensor, weight: Tensor, bias: Tensor | null, eps: number): Tensor {
  expectDtype(op, 'x', x, 'f32');
  expectDtype(op, 'weight', weight, 'f32');
  const c = x.shape[x.shape.length - 1];
  if (weight.shape.length !== 1 || weight.shape[0] !== c) throw new Error(`${op}: weight has shape ${fmt(weight.shape)}; expected [${c}] (the last dim of x ${fmt(x.shape)})`);
  if (bias) {
    expectDtype(op, 'bias', bias, 'f32');
    if (bias.shape.length !== 1 || bias.shape[0] !== c) throw new Error(`${op}: bias has shape ${fmt(bias.shape)}; expected [${c}]`);
  }
  if (!(eps > 0)) throw new Error(`${op}: eps must be positive, got ${eps}`);
  const rows = x.numel / c;
  // CPU adapters run a workgroup as coroutines over SIMD batches: fewer invocations per row
  // (64) cost less in barriers than they lose in parallelism (measured ~3x on lavapipe).
  const out = rec.gpu.empty(x.shape, 'f32', op);
  const bindings = [rec.uniform([rows, c, { f32: eps }]), x, weight, out, ...(bias ? [bias] : [])];
  rec.dispatch('norm', { LAYER: !!bias, SUBGROUPS: rec.gpu.features.subgroups, WG: rec.gpu.adapterClass === 'software' ? 64 : 256 }, bindings, grid1d(rows), op);
  return out;
}

/** LayerNorm over the last dim of x (any rank): (x - mean) / sqrt(var + eps) * weight + bias, biased variance. */
export function layerNorm(rec: Recorder, x: Tensor, weight: Tensor, bias: Tensor, eps: number): Tensor {
  return norm(rec, 'layerNorm', x, weight, bias, eps);
}

/** RMSNorm over the last dim of x (any rank): x * rsqrt(mean(x^2) + eps) * weight. */
export function rmsNorm(rec: Recorder, x: Tensor, weight: Tensor, eps: number): Tensor {
  return norm(rec, 'rmsNorm', x, weight, null, eps);
}
