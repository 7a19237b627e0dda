// Memory budget before allocation: what a load or a turn needs, against the adapter's limits and,
// on software adapters (where GPU memory is this process's memory), the machine's available
// memory. A step that cannot fit is refused with one line giving the numbers and what to change,
// instead of an OOM kill or a lost device halfway through. Pure functions (sizes in bytes), so
// each refusal is tested with forced small budgets; `availableMemory()` reads the machine.

import type { LlmConfig } from './weights/config.js';
import { quantizeRule, quantRowBytes, type QuantDType } from './weights/quantize.js';
import { Checkpoint, type TensorInfo } from './weights/safetensors.js';
import { gpuDtype, isVectorLike } from './weights/upload.js';

export class BudgetError extends Error {
  override name = 'BudgetError';
}

export interface Limits {
  /** one storage binding (activations live in one binding each) */
  maxStorageBufferBindingSize: number;
  /** host memory the step may still take (software adapters); Infinity on hardware adapters */
  availableBytes: number;
}

/** Memory the loader itself needs over the weights (two staging buffers and the process's working set). */
export const LOAD_OVERHEAD_BYTES = 600 * 2 ** 20;

const gib = (b: number): string => `${(b / 2 ** 30).toFixed(2)} GiB`;
const mib = (b: number): string => `${(b / 2 ** 20).toFixed(0)} MiB`;

/** Bytes the checkpoint's tensors take on the GPU at `dtype` (LLM 2-D weights quantized for q8/q4; vectors widened to f32). */
export function weightBytes(tensors: Iterable<TensorInfo>, dtype: 'bf16' | QuantDType = 'bf16', widen: (t: TensorInfo) => boolean = isVectorLike): number {
  const quantize = quantizeRule(dtype);
  let total = 0;
  for (const t of tensors) {
    const q = quantize?.(t);
    const numel = t.shape.reduce((a, b) => a * b, 1);
    if (q) total += t.shape[0] * quantRowBytes(q, t.shape[1]);
    else total += gpuDtype(t, widen) === 'f32' && t.dtype !== 'F32' ? numel * 4 : t.byteLength;
  }
  return total;
}

/** Refuse a load whose weights (plus the loader's overhead) exceed the available memory. */
export function checkLoad(weights: number, dtype: 'bf16' | QuantDType, limits: Limits, smaller: { dtype: QuantDType; bytes: number }[] = []): void {
  const need = weights + LOAD_OVERHEAD_BYTES;
  if (need <= limits.availableBytes) return;
  const fits = smaller.filter((s) => s.bytes + LOAD_OVERHEAD_BYTES <= limits.availableBytes);
  const advice = fits.length ? `use --dtype ${fits[0].dtype} (${gib(fits[0].bytes)} of weights)` : 'free memory or use a machine with more';
  throw new BudgetError(`not enough memory to load: the ${dtype} weights need ${gib(weights)} + ${gib(LOAD_OVERHEAD_BYTES)} while loading, ${gib(limits.availableBytes)} is available; ${advice}`);
}

/** What one turn allocates: the KV cache for its context and its largest activations. */
export interface TurnShape {
  /** KV positions the cache must hold after the turn (history + prompt + answer) */
  contextPositions: number;
  /** positions the cache already holds (their memory is already taken) */
  cachedPositions: number;
  /** positions per prefill step */
  prefillChunk: number;
  /** vision: frames per vision step, tokens per frame (1025 with the class token), ViT width and MLP width; 0 frames without images */
  visionFrames: number;
  visionTokens: number;
  visionHidden: number;
  visionIntermediate: number;
}

/** f32 KV cache bytes for `positions` (K and V, every layer). */
export function kvCacheBytes(llm: LlmConfig, positions: number): number {
  return 2 * llm.numHiddenLayers * positions * llm.numKeyValueHeads * llm.headDim * 4;
}

/** The largest single activations of a turn (each must fit one binding), by name. */
export function largestActivations(llm: LlmConfig, turn: TurnShape): { name: string; bytes: number; change: string }[] {
  const rows = turn.visionFrames * turn.visionTokens;
  return [
    { name: 'prefill MLP activation', bytes: turn.prefillChunk * llm.intermediateSize * 4, change: 'a smaller prefill chunk' },
    { name: 'logits', bytes: llm.vocabSize * 4, change: 'nothing (the vocabulary sets it)' },
    { name: 'vision MLP activation', bytes: rows * turn.visionIntermediate * 4, change: 'fewer frames per vision step (fewer tiles or frames)' },
    { name: 'vision hidden states', bytes: rows * turn.visionHidden * 4, change: 'fewer frames per vision step (fewer tiles or frames)' },
  ].filter((a) => a.bytes > 0);
}

/** Refuse a turn whose new KV cache and activations do not fit the binding limit or the available memory. */
export function checkTurn(llm: LlmConfig, turn: TurnShape, limits: Limits): void {
  if (turn.contextPositions > llm.maxPositionEmbeddings) {
    throw new BudgetError(`the conversation needs ${turn.contextPositions} positions, over the model's ${llm.maxPositionEmbeddings}: use fewer tiles or frames, a shorter prompt or fewer new tokens, or start a new conversation`);
  }
  const acts = largestActivations(llm, turn);
  const over = acts.find((a) => a.bytes > limits.maxStorageBufferBindingSize);
  if (over) {
    throw new BudgetError(`this turn's ${over.name} needs ${mib(over.bytes)} in one binding, over the adapter's ${mib(limits.maxStorageBufferBindingSize)}: use ${over.change}`);
  }
  const kv = kvCacheBytes(llm, Math.max(0, turn.contextPositions - turn.cachedPositions));
  // the step's working set: its largest activations live together (a few at a time); four of the largest is a safe bound
  const working = 4 * Math.max(...acts.map((a) => a.bytes));
  if (kv + working > limits.availableBytes) {
    throw new BudgetError(
      `not enough memory for this turn: the KV cache for ${turn.contextPositions} positions needs ${gib(kv)} more and the largest step ${gib(working)}, ${gib(limits.availableBytes)} is available: ` +
        'use fewer tiles or frames, a shorter context (fewer new tokens, a new conversation), or --dtype q8/q4 to free weight memory',
    );
  }
}

/** Host memory available to this process now (Linux MemAvailable, else the OS's free memory); Infinity where unknown (browsers). */
export async function availableMemory(): Promise<number> {
  if (typeof process === 'undefined' || !process.versions?.node) return Infinity;
  const { readFile } = await import('node:fs/promises');
  try {
    const m = /MemAvailable:\s+(\d+) kB/.exec(await readFile('/proc/meminfo', 'utf8'));
    if (m) return Number(m[1]) * 1024;
  } catch {
    // not Linux
  }
  const os = await import('node:os');
  return os.freemem();
}

/**
 * The load-time check: the checkpoint's weights at `dtype` (and the loader's overhead) against the
 * available memory. Run it before allocating on software adapters (loadModel does).
 */
export async function checkLoadMemory(dir: string, dtype: 'bf16' | QuantDType, availableBytes?: number): Promise<void> {
  const tensors = [...(await Checkpoint.open(dir)).tensors.values()];
  const smaller = (['q8', 'q4'] as const).filter((d) => d !== dtype && !(dtype === 'q4' && d === 'q8')).map((d) => ({ dtype: d, bytes: weightBytes(tensors, d) }));
  checkLoad(weightBytes(tensors, dtype), dtype, { maxStorageBufferBindingSize: Infinity, availableBytes: availableBytes ?? (await availableMemory()) }, smaller);
}
