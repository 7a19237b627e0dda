// Quantized weights on the GPU: a q8 / q4 tensor has the logical shape [N, K] of the weight it
// replaces and holds rows in the layout of src/weights/quantize.ts. Its storage is allocated as a
// 16-bit weight of [N, rowBytes / 2] (rows are whole 16-byte units), so it is split by rows over
// bindings, and kept as texels on software adapters as bf16 weights are, with rows side by side as
// the GEMV that will read them wants (the texel layout's interleave: the rows pass through the host
// anyway, to be quantized or read from the cache and checked).

import type { Gpu } from '../gpu/device.js';
import { Tensor } from '../gpu/tensor.js';
import { matmulConfig, useSwar, weightInterleave } from '../ops/matmul.js';
import { quantizeRows, quantRowBytes, type QuantDType } from './quantize.js';

export interface QuantizedAllocation {
  /** the weight, as matmul and embedding take it */
  tensor: Tensor;
  /** the same storage seen as bf16 [N, rowBytes / 2], for writing the quantized bytes */
  storage: Tensor;
  rowBytes: number;
}

export async function allocQuantized(gpu: Gpu, dtype: QuantDType, shape: readonly [number, number], label: string): Promise<QuantizedAllocation> {
  const [N, K] = shape;
  const rowBytes = quantRowBytes(dtype, K);
  const interleave = weightInterleave(dtype, useSwar(matmulConfig.swar, gpu.features, gpu.texelWeights, dtype));
  const storage = await gpu.allocWeight([N, rowBytes / 2], 'bf16', label, { interleave });
  return { tensor: new Tensor(gpu, [N, K], dtype, storage.parts, false, label), storage, rowBytes };
}

/** Quantize bf16 [N, K] host weights (bit patterns) and upload them (tests, benchmarks). */
export async function uploadQuantized(gpu: Gpu, dtype: QuantDType, shape: readonly [number, number], bits: Uint16Array, label = 'w'): Promise<Tensor> {
  const { tensor, storage } = await allocQuantized(gpu, dtype, shape, label);
  gpu.writeBytes(storage, quantizeRows(dtype, bits, shape[1]));
  return tensor;
}
