// The checkpoint's tensors, handed out by name to the modules that use them. Modules are built from
// what the checkpoint holds; afterwards every tensor must have been taken (no tensor is ever
// silently ignored) and every expected one must exist, else loading fails listing the names.

import type { Tensor } from '../gpu/tensor.js';

export class WeightStore {
  private readonly taken = new Set<string>();
  private readonly missing: string[] = [];

  constructor(private readonly tensors: ReadonlyMap<string, Tensor>) {}

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  names(): string[] {
    return [...this.tensors.keys()];
  }

  /**
   * The tensor `name`, checked against `shape` when given. A missing one is recorded and reported
   * by assertComplete(), which callers run before any forward pass.
   */
  take(name: string, shape?: readonly number[]): Tensor {
    const t = this.tensors.get(name);
    if (!t) {
      this.missing.push(name);
      return undefined as unknown as Tensor;
    }
    if (shape) {
      const got = t.shape.filter((d, i) => !(d === 1 && i === 0 && t.shape.length > shape.length));
      const want = shape.join(',');
      if (got.join(',') !== want && t.shape.join(',') !== want) {
        throw new Error(`checkpoint tensor '${name}' has shape [${t.shape.join(', ')}]; the config implies [${shape.join(', ')}]`);
      }
    }
    this.taken.add(name);
    return t;
  }

  /** Throws one error naming every missing and every unused tensor. */
  assertComplete(): void {
    const unknown = [...this.tensors.keys()].filter((n) => !this.taken.has(n)).sort();
    if (!this.missing.length && !unknown.length) return;
    const parts = [];
    if (this.missing.length) parts.push(`missing tensors (${this.missing.length}): ${this.missing.join(', ')}`);
    if (unknown.length) parts.push(`tensors no module uses (${unknown.length}): ${unknown.join(', ')}`);
    throw new Error(`the checkpoint does not match the model built from its config:\n  ${parts.join('\n  ')}`);
  }
}
