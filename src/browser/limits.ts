// What a checkpoint needs of a WebGPU adapter, checked before anything is allocated, so that a GPU
// whose limits are too small gets one message with the numbers instead of a failure halfway
// through loading or at the first question. The sizes come from the Node-side memory budget
// (src/budget.ts): the weights at the chosen dtype, and the largest activations of the smallest
// turn the engine can run (one prefill step, one vision frame per step).

import { largestActivations, weightBytes } from '../budget.js';
import { PREFILL_CHUNK } from '../models/internvl.js';
import type { QuantDType } from '../weights/quantize.js';
import type { ModelConfig } from '../weights/config.js';
import type { TensorInfo } from '../weights/safetensors.js';

/** What every kernel asks of an adapter: workgroups of 256 invocations, attention tiles in 16 KiB of workgroup memory, up to 6 storage buffers per kernel. */
const KERNEL_LIMITS = { maxComputeInvocationsPerWorkgroup: 256, maxComputeWorkgroupSizeX: 256, maxComputeWorkgroupStorageSize: 16384, maxStorageBuffersPerShaderStage: 6 };

export type AdapterLimits = Record<string, number>;

export interface Shortfall {
  limit: string;
  has: number;
  need: number;
  /** what needs it */
  what: string;
}

const mib = (b: number): string => `${(b / 2 ** 20).toFixed(b < 2 ** 20 ? 3 : 1)} MiB`;

/** Limits the kernels need of any adapter, whatever the model. */
export function kernelShortfalls(limits: AdapterLimits): Shortfall[] {
  return Object.entries(KERNEL_LIMITS)
    .filter(([k, v]) => limits[k] < v)
    .map(([k, v]) => ({ limit: k, has: limits[k], need: v, what: 'the engine\'s kernels' }));
}

/**
 * The model's needs against the adapter's limits: one storage binding must hold the largest
 * activation of a minimal turn and one row of every weight (weights are split by rows into parts
 * under the binding limit); one buffer must hold that activation and the largest weight part.
 */
export function modelShortfalls(config: ModelConfig, tensors: readonly TensorInfo[], dtype: 'bf16' | QuantDType, limits: AdapterLimits): Shortfall[] {
  const v = config.vision;
  const acts = largestActivations(config.llm, {
    contextPositions: 0,
    cachedPositions: 0,
    prefillChunk: PREFILL_CHUNK,
    visionFrames: 1,
    visionTokens: 1 + (v.imageSize / v.patchSize) ** 2,
    visionHidden: v.hiddenSize,
    visionIntermediate: v.intermediateSize,
  });
  const act = acts.reduce((a, b) => (b.bytes > a.bytes ? b : a));
  const binding = limits.maxStorageBufferBindingSize;
  let row = { bytes: 0, name: '' };
  let part = { bytes: 0, name: '' };
  for (const t of tensors) {
    const bytes = weightBytes([t], dtype);
    const rowBytes = bytes / t.shape[0];
    if (rowBytes > row.bytes) row = { bytes: rowBytes, name: t.name };
    const partBytes = Math.min(bytes, Math.max(1, Math.floor(binding / rowBytes)) * rowBytes);
    if (partBytes > part.bytes) part = { bytes: partBytes, name: t.name };
  }
  const needs: Shortfall[] = [
    { limit: 'maxStorageBufferBindingSize', has: binding, need: act.bytes, what: `the ${act.name} (the largest activation of a ${PREFILL_CHUNK}-position prefill step or of one vision frame)` },
    { limit: 'maxStorageBufferBindingSize', has: binding, need: row.bytes, what: `one row of ${row.name}` },
    { limit: 'maxBufferSize', has: limits.maxBufferSize, need: act.bytes, what: `the ${act.name}` },
    { limit: 'maxBufferSize', has: limits.maxBufferSize, need: part.bytes, what: `a part of ${part.name} (weights are split at the binding limit)` },
  ];
  return needs.filter((n) => n.need > n.has);
}

/** One line per shortfall, with the numbers. */
export function describeShortfalls(short: Shortfall[]): string {
  const bytes = (n: number) => (n >= 65536 ? `${n} bytes (${mib(n)})` : String(n));
  return short.map((s) => `${s.limit} is ${bytes(s.has)}, ${s.what} needs ${bytes(s.need)}`).join('; ');
}
