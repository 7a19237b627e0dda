// Elementwise ops (kernels/elementwise.wgsl). All take and return f32 tensors; outputs are new
// pooled tensors of the input's shape.

import type { Recorder, UniformField } from '../gpu/recorder.js';
import type { Tensor } from '../gpu/tensor.js';
import { expectDtype, expectSameShape, fmt, grid1d } from './common.js';

interface Extra {
  alpha?: number;
  c?: number;
  p?: number;
  modStride?: number;
  off0?: number;
  off1?: number;
}

function run(rec: Recorder, op: string, defines: Record<string, string | number | boolean>, a: Tensor, bindings: Tensor[], e: Extra = {}): Tensor {
  const out = rec.gpu.empty(a.shape, 'f32', op);
  const params: UniformField[] = [a.numel, { f32: e.alpha ?? 0 }, e.c ?? 4, e.p ?? 1, e.modStride ?? 0, e.off0 ?? 0, e.off1 ?? 0, 0];
  // vec4 access needs every element count and offset to be whole vec4s (c divides them all for modulate/gated)
  const vec4 = a.numel % 4 === 0 && (e.c ?? 4) % 4 === 0;
  const perInvocation = vec4 ? 4 : 1;
  rec.dispatch('elementwise', { ...defines, VEC4: vec4 }, [rec.uniform(params), a, out, ...bindings], grid1d(Math.ceil(a.numel / perInvocation / 256)), op);
  return out;
}

function binary(rec: Recorder, op: 'add' | 'mul' | 'siluMul', define: string, a: Tensor, b: Tensor): Tensor {
  expectDtype(op, 'a', a, 'f32');
  expectDtype(op, 'b', b, 'f32');
  expectSameShape(op, a, b);
  return run(rec, op, { [define]: true }, a, [b]);
}

function unary(rec: Recorder, op: 'scale' | 'gelu' | 'silu', define: string, a: Tensor, alpha = 0): Tensor {
  expectDtype(op, 'a', a, 'f32');
  return run(rec, op, { [define]: true, UNARY: true }, a, [], { alpha });
}

/** a + b (same shapes) */
export const add = (rec: Recorder, a: Tensor, b: Tensor): Tensor => binary(rec, 'add', 'OP_ADD', a, b);
/** a * b (same shapes) */
export const mul = (rec: Recorder, a: Tensor, b: Tensor): Tensor => binary(rec, 'mul', 'OP_MUL', a, b);
/** silu(a) * b (same shapes): SwiGLU with a = w1 (gate) output, b = w3 (up) output */
export const siluMul = (rec: Recorder, a: Tensor, b: Tensor): Tensor => binary(rec, 'siluMul', 'OP_SILU_MUL', a, b);
/** a * alpha */
export const scale = (rec: Recorder, a: Tensor, alpha: number): Tensor => unary(rec, 'scale', 'OP_SCALE', a, alpha);
/** exact GELU, x * Phi(x) with an f32-accurate erf (not the tanh approximation) */
export const gelu = (rec: Recorder, a: Tensor): Tensor => unary(rec, 'gelu', 'OP_GELU', a);
/** x * sigmoid(x) */
export const silu = (rec: Recorder, a: Tensor): Tensor => unary(rec, 'silu', 'OP_SILU', a);

/**
 * Where a per-frame AdaLN vector lives: `mod` is the AdaLN linear output [F, k*C] (one row per
 * frame), `chunk` selects columns [chunk*C, (chunk+1)*C), and row r of the activation belongs to
 * frame floor(r / tokensPerFrame).
 */
interface ModLayout {
  tokensPerFrame: number;
}

/** Validates x [rows, C] (any rank; C = last dim) against mod [F, k*C] and the chunk indices; returns C. */
function checkMod(op: string, x: Tensor, mod: Tensor, tokensPerFrame: number, chunks: Record<string, number>): number {
  expectDtype(op, 'mod', mod, 'f32');
  const c = x.shape[x.shape.length - 1];
  const rows = x.numel / c;
  if (!Number.isInteger(tokensPerFrame) || tokensPerFrame < 1) throw new Error(`${op}: tokensPerFrame must be a positive integer, got ${tokensPerFrame}`);
  if (rows % tokensPerFrame !== 0) throw new Error(`${op}: x has ${rows} rows, not a multiple of tokensPerFrame ${tokensPerFrame}`);
  const frames = rows / tokensPerFrame;
  if (mod.shape.length !== 2 || mod.shape[0] !== frames || mod.shape[1] % c !== 0) {
    throw new Error(`${op}: mod has shape ${fmt(mod.shape)}; expected [${frames}, k*${c}] (one AdaLN row per frame of ${tokensPerFrame} tokens)`);
  }
  const k = mod.shape[1] / c;
  for (const [name, v] of Object.entries(chunks)) {
    if (!Number.isInteger(v) || v < 0 || v >= k) throw new Error(`${op}: ${name} ${v} is not a chunk index of mod (k = ${k})`);
  }
  return c;
}

/**
 * AdaLN modulate: x [F*P, C] * (1 + scale[f]) + shift[f], f = row / P, where shift / scale are
 * chunks `shiftChunk` / `scaleChunk` of mod [F, k*C].
 */
export function modulate(rec: Recorder, x: Tensor, mod: Tensor, o: ModLayout & { shiftChunk: number; scaleChunk: number }): Tensor {
  expectDtype('modulate', 'x', x, 'f32');
  const c = checkMod('modulate', x, mod, o.tokensPerFrame, { shiftChunk: o.shiftChunk, scaleChunk: o.scaleChunk });
  return run(rec, 'modulate', { OP_MODULATE: true }, x, [mod], { c, p: o.tokensPerFrame, modStride: mod.shape[1], off0: o.shiftChunk * c, off1: o.scaleChunk * c });
}

/**
 * Gated residual: x + scale[c] * gate[f, c] * y, x and y [F*P, C]. `scale` is a layer-scale vector
 * [C] (InternViT ls1/ls2); `gate` is chunk `chunk` of the AdaLN output mod [F, k*C]. Both optional
 * (neither: plain x + y).
 */
export function gatedResidual(rec: Recorder, x: Tensor, y: Tensor, o: { scale?: Tensor; gate?: ModLayout & { mod: Tensor; chunk: number } } = {}): Tensor {
  const op = 'gatedResidual';
  expectDtype(op, 'x', x, 'f32');
  expectDtype(op, 'y', y, 'f32');
  expectSameShape(op, x, y);
  const c = x.shape[x.shape.length - 1];
  const bindings = [y];
  const defines: Record<string, string | number | boolean> = { OP_GATED: true };
  const e: Extra = { c };
  if (o.scale) {
    expectDtype(op, 'scale', o.scale, 'f32');
    if (o.scale.shape.length !== 1 || o.scale.shape[0] !== c) throw new Error(`${op}: scale has shape ${fmt(o.scale.shape)}; expected [${c}]`);
    bindings.push(o.scale);
    defines.LS = true;
  }
  if (o.gate) {
    checkMod(op, x, o.gate.mod, o.gate.tokensPerFrame, { chunk: o.gate.chunk });
    bindings.push(o.gate.mod);
    defines.GATE = true;
    defines.GATE_BINDING = bindings.length + 2;
    Object.assign(e, { p: o.gate.tokensPerFrame, modStride: o.gate.mod.shape[1], off0: o.gate.chunk * c });
  }
  return run(rec, op, defines, x, bindings, e);
}
