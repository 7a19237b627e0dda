// The decode loop, shared by chat sessions and the parity runner: pick a token from the logits
// (greedy on the GPU, or the sampler on the CPU), feed it back through the model, stop after a stop
// id, at the token limit, at the end of the context, or when the caller aborts. Non-finite logits
// stop the answer on every path: the GPU argmax flags them in the token it returns.

import type { Tensor } from '../gpu/tensor.js';
import type { KvCache } from '../models/internlm2.js';
import type { InternVL } from '../models/internvl.js';
import { argmax, NON_FINITE_BIT, NonFiniteError } from '../ops/reduce.js';

export { NonFiniteError };
import type { Sampler } from './sampler.js';

export type StopReason = 'stop-token' | 'max-new-tokens' | 'context' | 'aborted';

export interface DecodeOptions {
  maxNewTokens: number;
  /** positions left in the context for the answer (fewer than maxNewTokens: it stops with 'context') */
  room: number;
  stopIds: ReadonlySet<number>;
  sampler: Sampler;
  /** checked after each token: the loop ends with 'aborted' before the next decode step */
  signal?: AbortSignal;
  /** stop ids are not picked before this many tokens (Hugging Face's min_new_tokens: their logits count as -inf); default 0 */
  minNewTokens?: number;
}

/**
 * Token ids from `first` (the prefill's logits, last row used) on, each fed back through the model
 * into `cache`; returns why it stopped. Every logits tensor is released, `first` included.
 */
export async function* decodeTokens(model: InternVL, cache: KvCache, first: Tensor, opts: DecodeOptions): AsyncGenerator<number, StopReason, undefined> {
  const generated: number[] = [];
  let logits: Tensor | undefined = first;
  try {
    for (;;) {
      const barred = generated.length < (opts.minNewTokens ?? 0) ? opts.stopIds : undefined;
      const next = await pickToken(model, logits, opts.sampler, generated, generated.length === 0 ? 'after the prefill' : `at decode step ${generated.length}`, barred);
      logits.release();
      logits = undefined;
      generated.push(next);
      yield next;
      if (opts.stopIds.has(next)) return 'stop-token';
      if (generated.length === opts.maxNewTokens) return 'max-new-tokens';
      if (generated.length >= opts.room) return 'context';
      if (opts.signal?.aborted) return 'aborted';
      logits = await model.decode(next, cache);
    }
  } finally {
    logits?.release();
  }
}

async function pickToken(model: InternVL, logits: Tensor, sampler: Sampler, generated: readonly number[], stage: string, barred?: ReadonlySet<number>): Promise<number> {
  const fail = () => new NonFiniteError(`the model's logits are not finite (NaN or infinity) ${stage}: the answer stops here (an activation overflowed, or a weight is corrupt)`);
  if (sampler.usesGpuArgmax && !barred?.size) {
    // the last row's index, with the kernel's non-finite flag in bit 31: one 4-byte read
    const ids = await model.gpu.step((rec) => {
      const idx = argmax(rec, logits);
      return rec.read(idx).finally(() => idx.release());
    });
    const id = ids[ids.length - 1];
    if (id & NON_FINITE_BIT) throw fail();
    return id;
  }
  const all = (await model.gpu.read(logits)) as Float32Array;
  const row = all.subarray(all.length - logits.shape[logits.shape.length - 1]);
  if (!row.every(Number.isFinite)) throw fail();
  for (const id of barred ?? []) if (id < row.length) row[id] = -Infinity;
  return sampler.pick(row, generated);
}
