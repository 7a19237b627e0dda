// Quantized weights on the GPU: a q8 / q4 tensor has the logical shape [N, K] of the weight it
// replaces and holds rows in the layout of src/weights/quantize.ts. Its storage is allocated as a
// 16-bit weight of [N, rowBytes / 2] (rows are whole 16-byte units), so it is split by rows over
// bindings, and kept as texels on software adapters, exactly as bf16 weights are.

import type { Gpu } from '../gpu/device.js';
import { Tensor } from '../gpu/tensor.js';
import { quantizeRows, quantRowBytes, type QuantDType } from './quantize.js';
import { readExact, type TensorInfo } from './safetensors.js';

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
  const storage = await gpu.allocWeight([N, rowBytes / 2], 'bf16', label);
  return { tensor: new Tensor(gpu, [N, K], dtype, storage.parts, false, label), storage, rowBytes };
}

/** Quantize bf16 [N, K] host weights (bit patterns) and upload them (tests, benchmarks). */
export async function uploadQuantized(gpu: Gpu, dtype: QuantDType, shape: readonly [number, number], bits: Uint16Array, label = 'w'): Promise<Tensor> {
  const { tensor, storage } = await allocQuantized(gpu, dtype, shape, label);
  gpu.writeBytes(storage, quantizeRows(dtype, bits, shape[1]));
  return tensor;
}

/**
 * Stream a bf16 [N, K] checkpoint tensor through the quantizer onto the GPU: whole rows at a time
 * through `chunk` (or one row when a row is larger), so host memory stays at one chunk plus its
 * quantized copy. `advance` is told the checkpoint bytes read after each block.
 */
export async function uploadQuantizedTensor(gpu: Gpu, info: TensorInfo, dtype: QuantDType, chunk: Uint8Array, advance: (bytes: number) => Promise<void>): Promise<Tensor> {
  if (info.dtype !== 'BF16' || info.shape.length !== 2) throw new Error(`${info.name}: only 2-D BF16 tensors are quantized (this one is ${info.dtype} [${info.shape.join(', ')}])`);
  const [N, K] = info.shape;
  const { tensor, storage, rowBytes } = await allocQuantized(gpu, dtype, [N, K], info.name);
  const buf = chunk.length >= 2 * K ? chunk : new Uint8Array(2 * K);
  const rowsPerBlock = Math.floor(buf.length / (2 * K));
  try {
    for (let r = 0; r < N; r += rowsPerBlock) {
      const bytes = buf.subarray(0, Math.min(rowsPerBlock, N - r) * 2 * K);
      await readExact(info.source, bytes, info.offset + r * 2 * K, `tensor '${info.name}'`);
      gpu.writeBytes(storage, quantizeRows(dtype, new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2), K), r * rowBytes);
      await advance(bytes.length);
    }
  } catch (e) {
    tensor.release();
    throw e;
  }
  return tensor;
}
