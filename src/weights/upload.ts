// Checkpoint -> GPU upload: each tensor is read from its byte source by its offsets in bounded chunks straight
// into its GPU buffer(s), so memory use stays at one chunk however large the shard.
//
// Dtypes as stored: BF16 -> bf16 (packed u32 pairs), F16 -> f16, F32 -> f32, I32 -> i32, U32 -> u32.
// Widening rule: float tensors with at most one dimension larger than 1 (biases, norm weights,
// layer scales, the class embedding) are uploaded as f32, because kernels take 1-D parameters
// as f32. Callers can replace the rule with `widen`.

import { bf16BitsToF32, f16BitsToF32, type DType, type Gpu, type Tensor } from '../gpu/index.js';
import type { QuantDType } from './quantize.js';
import { uploadQuantizedTensor } from './quantize-upload.js';
import { SafetensorsError, readExact, type Checkpoint, type TensorInfo } from './safetensors.js';

export interface UploadProgress {
  /** tensor being uploaded */
  tensor: string;
  /** file bytes read so far and in total */
  bytesDone: number;
  bytesTotal: number;
  seconds: number;
  bytesPerSecond: number;
}

export interface UploadOptions {
  /** bytes read per chunk (rounded down to a multiple of 16); default 16 MiB */
  chunkBytes?: number;
  /** which tensors to upload as f32; default: float tensors with at most one dim > 1 */
  widen?: (info: TensorInfo) => boolean;
  /** which tensors to quantize, and to what (src/weights/quantize.ts quantizeRule); default none */
  quantize?: (info: TensorInfo) => QuantDType | undefined;
  onProgress?: (p: UploadProgress) => void;
}

const DEFAULT_CHUNK = 16 << 20;
/**
 * Queue writes are staged by Dawn until a submit (texel weights: a staging copy per writeTexture):
 * flush every so often to bound that memory (64 MiB: ~230 MiB over the weights at peak for the mid
 * preset, against ~490 MiB with 256 MiB).
 */
const FLUSH_BYTES = 64 << 20;

const FLOAT_DTYPES = new Set(['BF16', 'F16', 'F32']);
const STORED: Partial<Record<string, DType>> = { BF16: 'bf16', F16: 'f16', F32: 'f32', I32: 'i32', U32: 'u32' };

export function isVectorLike(info: TensorInfo): boolean {
  return FLOAT_DTYPES.has(info.dtype) && info.shape.filter((d) => d > 1).length <= 1;
}

/** The GPU dtype a tensor gets under the widening rule. */
export function gpuDtype(info: TensorInfo, widen: (info: TensorInfo) => boolean = isVectorLike): DType {
  if (FLOAT_DTYPES.has(info.dtype) && widen(info)) return 'f32';
  const d = STORED[info.dtype];
  if (!d) throw new SafetensorsError(`${info.file}: tensor '${info.name}': dtype ${info.dtype} cannot be uploaded to the GPU (supported: BF16, F16, F32, I32, U32); read it with readTensor`);
  return d;
}

/** GPU shape: 0-d and empty tensors cannot be allocated, so scalars become [1]. */
function gpuShape(info: TensorInfo): number[] {
  if (info.shape.some((d) => d === 0)) throw new SafetensorsError(`${info.file}: tensor '${info.name}' is empty (shape [${info.shape.join(', ')}]); nothing to upload`);
  return info.shape.length ? info.shape : [1];
}

class Uploader {
  private readonly chunk: Uint8Array;
  private readonly start = performance.now();
  private done = 0;
  private sinceFlush = 0;

  constructor(
    private readonly gpu: Gpu,
    private readonly total: number,
    private readonly opts: UploadOptions,
  ) {
    // whole 16-byte texels per chunk (texel-layout weights take no partial texel writes)
    const size = Math.max(16, Math.floor((opts.chunkBytes ?? DEFAULT_CHUNK) / 16) * 16);
    this.chunk = new Uint8Array(size);
  }

  async upload(info: TensorInfo): Promise<Tensor> {
    const q = this.opts.quantize?.(info);
    if (q) return uploadQuantizedTensor(this.gpu, info, q, this.chunk, (n) => this.advance(info.name, n));
    const dtype = gpuDtype(info, this.opts.widen);
    const t = await this.gpu.allocWeight(gpuShape(info), dtype, info.name);
    try {
      const convert = dtype === 'f32' && info.dtype !== 'F32' ? info.dtype : null;
      for (let pos = 0; pos < info.byteLength; pos += this.chunk.length) {
        const n = Math.min(this.chunk.length, info.byteLength - pos);
        const bytes = this.chunk.subarray(0, n);
        await readExact(info.source, bytes, info.offset + pos, `tensor '${info.name}'`);
        if (convert) {
          // 16-bit floats widened on the host: chunk offsets double in the f32 buffer
          const bits = new Uint16Array(bytes.buffer, 0, n / 2);
          const f = convert === 'BF16' ? bf16BitsToF32(bits) : f16BitsToF32(bits);
          this.gpu.writeBytes(t, new Uint8Array(f.buffer), pos * 2);
        } else {
          this.gpu.writeBytes(t, bytes, pos);
        }
        await this.advance(info.name, n);
      }
    } catch (e) {
      t.release();
      throw e;
    }
    return t;
  }

  private async advance(name: string, n: number): Promise<void> {
    this.done += n;
    this.sinceFlush += n;
    if (this.sinceFlush >= FLUSH_BYTES) {
      this.sinceFlush = 0;
      this.gpu.device.queue.submit([]);
      await this.gpu.sync();
    }
    if (this.opts.onProgress) {
      const seconds = (performance.now() - this.start) / 1000;
      this.opts.onProgress({ tensor: name, bytesDone: this.done, bytesTotal: this.total, seconds, bytesPerSecond: seconds > 0 ? this.done / seconds : 0 });
    }
  }
}

/** Upload one tensor. */
export async function uploadTensor(gpu: Gpu, info: TensorInfo, opts: UploadOptions = {}): Promise<Tensor> {
  return (await uploadTensors(gpu, [info], opts)).get(info.name)!;
}

/**
 * Upload tensors (default: every tensor of the checkpoint), in file order for sequential reads.
 * On any error the tensors uploaded so far are released.
 */
export async function uploadTensors(gpu: Gpu, source: Checkpoint | TensorInfo[], opts: UploadOptions = {}): Promise<Map<string, Tensor>> {
  const infos = (Array.isArray(source) ? [...source] : [...source.tensors.values()]).sort((a, b) => (a.file === b.file ? a.offset - b.offset : a.file < b.file ? -1 : 1));
  for (const info of infos) gpuDtype(info, opts.widen); // fail before allocating anything
  const up = new Uploader(gpu, infos.reduce((s, t) => s + t.byteLength, 0), opts);
  const out = new Map<string, Tensor>();
  try {
    for (const info of infos) out.set(info.name, await up.upload(info));
    await gpu.sync();
  } catch (e) {
    for (const t of out.values()) t.release();
    throw e;
  }
  return out;
}
