// Scoped tensor lifetimes: scope(fn) releases every activation allocated while fn runs, except
// the tensors fn returns (a tensor, or an array / object of them), which move to the enclosing
// scope. Activations come from Gpu.empty, which reports each new tensor here. Releasing during
// recording is safe: the pool hands a released buffer to later dispatches of the same step only,
// which the GPU runs after the earlier ones.

import { Tensor } from './tensor.js';

const scopes: Set<Tensor>[] = [];

/** @internal Gpu.empty: a new activation belongs to the innermost open scope. */
export function track(t: Tensor): void {
  scopes[scopes.length - 1]?.add(t);
}

export function scope<T>(fn: () => T): T {
  const owned = new Set<Tensor>();
  scopes.push(owned);
  let result: T;
  try {
    result = fn();
  } finally {
    scopes.pop();
  }
  // returned tensors (or reshaped views of owned ones) keep their storage
  const kept = new Set<GPUBuffer | GPUTexture | undefined>(returnedTensors(result).flatMap((t) => t.parts.map((p) => p.buffer ?? p.texture)));
  for (const t of owned) {
    if (kept.has(t.parts[0].buffer)) track(t);
    else t.release();
  }
  return result;
}

function returnedTensors(value: unknown): Tensor[] {
  if (value instanceof Tensor) return [value];
  if (Array.isArray(value)) return value.flatMap(returnedTensors);
  if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) return Object.values(value).flatMap(returnedTensors);
  return [];
}

/**
 * The next value of a carried tensor (a residual stream, or its chunks): fn(x) in its own scope,
 * then x released, so at most the old and the new value and one branch's intermediates are alive.
 */
export function advance<T extends Tensor | Tensor[]>(x: T, fn: (x: T) => T): T {
  const next = scope(() => fn(x));
  for (const t of returnedTensors(x)) t.release();
  return next;
}
