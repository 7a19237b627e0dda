// Shared helpers for op wrappers: shape/dtype checks and grid sizing.

import type { Tensor, DType } from '../gpu/tensor.js';

export function fmt(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

export function expectDtype(op: string, name: string, t: Tensor, ...allowed: DType[]): void {
  if (!allowed.includes(t.dtype)) throw new Error(`${op}: ${name} has dtype ${t.dtype}; expected ${allowed.join(' or ')}`);
}

export function expectShape(op: string, name: string, t: Tensor, shape: readonly number[]): void {
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new Error(`${op}: ${name} has shape ${fmt(t.shape)}; expected ${fmt(shape)}`);
  }
}

export function expectSameShape(op: string, a: Tensor, b: Tensor): void {
  expectShape(op, 'b', b, a.shape);
}

/** A 1-D grid of `groups` workgroups folded into x/y so no dimension passes 65535. */
export function grid1d(groups: number): [number, number] {
  const x = Math.min(groups, 65535);
  return [x, Math.ceil(groups / x)];
}
