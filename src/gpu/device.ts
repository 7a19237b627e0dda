// Device acquisition (Node through Dawn's npm `webgpu`, or a browser's navigator.gpu) and the
// Gpu object that owns everything device-side: buffer pool, uniform arena, pipeline cache.

import { throttleDawnPolling } from './dawn-poll.js';
import { loadKernelSources } from './kernels.js';
import { BufferPool } from './pool.js';
import { PipelineCache, type Defines } from './pipelines.js';
import { track } from './scope.js';
import { Recorder, GpuError, type TypedArray } from './recorder.js';
import { Tensor, checkShape, numelOf, storageBytes, texelInterleave, texelRows, type DType, type TensorPart } from './tensor.js';

export interface GpuOptions {
  /** Use a smaller storage binding limit than the device's (tests force tensor splitting with it). */
  maxStorageBufferBindingSize?: number;
  /** Pick kernel variants for this adapter class instead of the detected one. */
  adapterClass?: AdapterClass;
  powerPreference?: GPUPowerPreference;
  /** Fill every pooled buffer with NaN when handed out (tests: every output element must be written). */
  poison?: boolean;
  /** Store eligible 16-bit weights as texels (default: with the software kernels, where read-only storage textures exist). */
  texelWeights?: boolean;
}

/** Software rasterisers (lavapipe, SwiftShader) want different kernels from real GPUs. */
export type AdapterClass = 'software' | 'hardware';

export interface GpuFeatures {
  f16: boolean;
  subgroups: boolean;
  /** smallest subgroup size the adapter may use (0 when unknown or without subgroups) */
  subgroupMinSize: number;
  timestamps: boolean;
  /** WGSL's packed_4x8_integer_dot_product (dot4I8Packed, pack4xI8) */
  dot4: boolean;
}

const WANTED_LIMITS = [
  'maxBufferSize',
  'maxStorageBufferBindingSize',
  'maxUniformBufferBindingSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
  'maxBindingsPerBindGroup',
  'maxTextureDimension2D',
] as const;

const isNode = typeof process !== 'undefined' && !!process.versions?.node;

async function getNavigatorGpu(): Promise<GPU> {
  if (!isNode) {
    const gpu = (globalThis.navigator as Navigator | undefined)?.gpu;
    if (!gpu) throw new Error('WebGPU is not available in this browser (navigator.gpu is missing); use a browser with WebGPU enabled');
    return gpu;
  }
  let mod: { create: (flags: string[]) => GPU; globals: object };
  try {
    mod = (await import('webgpu')) as unknown as typeof mod;
  } catch (e) {
    throw new Error(`cannot load Dawn's Node bindings (npm package 'webgpu'): ${(e as Error).message}. Run 'npm install'.`);
  }
  Object.assign(globalThis, mod.globals);
  throttleDawnPolling();
  // Unquantised timestamps so the profiler can time single kernels.
  return mod.create(['disable-dawn-features=timestamp_quantization']);
}

export const NO_ADAPTER_HELP = [
  'No usable WebGPU adapter was found.',
  'On a machine without a GPU, install Mesa\'s software Vulkan driver (lavapipe). On Debian 12 it must come from bookworm-backports:',
  "  echo 'deb http://deb.debian.org/debian bookworm-backports main' > /etc/apt/sources.list.d/backports.list",
  '  apt-get update && apt-get install -y -t bookworm-backports mesa-vulkan-drivers',
  '(scripts/setup.sh does this; bookworm-main\'s Mesa 22 is rejected by Dawn.)',
].join('\n');

export async function getDevice(options: GpuOptions = {}): Promise<Gpu> {
  const navGpu = await getNavigatorGpu();
  const adapter = await navGpu.requestAdapter({ powerPreference: options.powerPreference ?? 'high-performance' });
  if (!adapter) throw new Error(NO_ADAPTER_HELP);
  const info = adapter.info;
  const want: GPUFeatureName[] = (['shader-f16', 'subgroups', 'timestamp-query'] as GPUFeatureName[]).filter((f) => adapter.features.has(f));
  const requiredLimits: Record<string, number> = {};
  for (const k of WANTED_LIMITS) requiredLimits[k] = (adapter.limits as unknown as Record<string, number>)[k];
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ requiredFeatures: want, requiredLimits });
  } catch (e) {
    throw new Error(`the adapter '${describe(info)}' refused a device with its own limits: ${(e as Error).message}`);
  }
  const software = /llvmpipe|lavapipe|swiftshader|software/i.test(`${info.vendor} ${info.architecture} ${info.device} ${info.description}`) || (info as { isFallbackAdapter?: boolean }).isFallbackAdapter === true;
  const adapterClass = options.adapterClass ?? (software ? 'software' : 'hardware');
  const gpu = new Gpu(device, await loadKernelSources(), {
    // Dawn's Node bindings free the instance when its JS object is collected, even while a device
    // made from it lives (a crash in ProcessEvents); the Gpu keeps both alive.
    keepAlive: [navGpu, adapter],
    description: describe(info),
    adapterClass,
    features: { f16: device.features.has('shader-f16'), subgroups: device.features.has('subgroups'), subgroupMinSize: device.features.has('subgroups') ? ((info as { subgroupMinSize?: number }).subgroupMinSize ?? 0) : 0, timestamps: device.features.has('timestamp-query'), dot4: navGpu.wgslLanguageFeatures.has('packed_4x8_integer_dot_product') },
    maxBinding: Math.min(device.limits.maxStorageBufferBindingSize, options.maxStorageBufferBindingSize ?? Infinity),
    texelWeights: (options.texelWeights ?? adapterClass === 'software') && navGpu.wgslLanguageFeatures.has('readonly_and_readwrite_storage_textures'),
  });
  gpu.pool.poison = options.poison ?? false;
  return gpu;
}

function describe(info: GPUAdapterInfo): string {
  return [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' / ') || 'unknown adapter';
}

export class Gpu {
  readonly pool: BufferPool;
  readonly pipelines: PipelineCache;
  readonly description: string;
  readonly adapterClass: AdapterClass;
  readonly features: GpuFeatures;
  /** bytes one storage binding may span (device limit, or smaller when forced) */
  readonly maxBindingBytes: number;
  /** 16-bit [N, K] weights with K % 8 == 0 are allocated in the texel layout (see tensor.ts) */
  readonly texelWeights: boolean;
  private lostReason: string | null = null;
  private uncaptured: string | null = null;
  private stepOpen = false;
  private uniformChunks: GPUBuffer[] = [];
  private readonly keepAlive: unknown[];

  constructor(
    readonly device: GPUDevice,
    sources: Map<string, string>,
    opts: { keepAlive: unknown[]; description: string; adapterClass: AdapterClass; features: GpuFeatures; maxBinding: number; texelWeights: boolean },
  ) {
    this.texelWeights = opts.texelWeights;
    this.keepAlive = opts.keepAlive;
    this.description = opts.description;
    this.adapterClass = opts.adapterClass;
    this.features = opts.features;
    this.maxBindingBytes = opts.maxBinding;
    this.pool = new BufferPool(device);
    this.pipelines = new PipelineCache(device, sources, (d: Defines) => (d.F16 ? 'enable f16;\n' : '') + (d.SUBGROUPS ? 'enable subgroups;\n' : ''));
    void device.lost.then((info) => {
      this.lostReason = info.reason === 'destroyed' ? 'the device was destroyed' : `the GPU device was lost (${info.reason}): ${info.message}`;
    });
    device.addEventListener('uncapturederror', this.onUncapturedError);
  }

  private readonly onUncapturedError = (ev: Event): void => {
    this.uncaptured ??= (ev as GPUUncapturedErrorEvent).error.message;
  };

  /** Throws if the device is lost or an earlier error escaped the error scopes. */
  assertUsable(): void {
    if (this.lostReason) throw new GpuError(this.lostReason);
    if (this.uncaptured) throw new GpuError(`an earlier GPU error stopped this device's work: ${this.uncaptured}`);
  }

  get lost(): boolean {
    return this.lostReason !== null;
  }

  /** Start recording a step. Only one step records at a time (error scopes are a stack). */
  recorder(profile = false): Recorder {
    if (this.stepOpen) throw new Error('another step is still recording; submit or abort it first');
    this.stepOpen = true;
    try {
      return new Recorder(this, profile);
    } catch (e) {
      this.stepOpen = false;
      throw e;
    }
  }

  /** @internal called by Recorder when its error scopes are popped */
  stepClosed(): void {
    this.stepOpen = false;
  }

  /**
   * Record with `fn` (synchronous: recording never waits on the GPU), submit once, and return
   * fn's result; a readback promise returned by fn resolves after the submit. Aborts cleanly if fn throws.
   */
  async step<T>(fn: (rec: Recorder) => T, profile = false): Promise<Awaited<T>> {
    const rec = this.recorder(profile);
    let result: T;
    try {
      result = fn(rec);
    } catch (e) {
      await rec.abort();
      throw e;
    }
    await rec.submit();
    return await result;
  }

  /** A pooled activation tensor (one binding). */
  empty(shape: readonly number[], dtype: DType = 'f32', label = 'activation'): Tensor {
    checkShape(shape, label);
    const bytes = storageBytes(dtype, numelOf(shape));
    if (bytes > this.maxBindingBytes) {
      throw new Error(`${label}: [${shape.join(', ')}] ${dtype} needs ${bytes} bytes, over the storage binding limit of ${this.maxBindingBytes} bytes; process it in smaller pieces`);
    }
    const t = new Tensor(this, [...shape], dtype, [{ buffer: this.pool.acquire(bytes, label), rowStart: 0, rows: shape[0] }], true, label);
    track(t); // released with its scope (scope.ts)
    return t;
  }

  /**
   * An unpooled tensor for weights, split by rows into parts that each fit one binding.
   * Allocation failures surface as errors (checked in an out-of-memory scope).
   * `interleave`: rows side by side a texel weight should get (a power of two; the texel layout,
   * src/gpu/tensor.ts), fewer where the texture is not wide enough. For weights whose rows pass
   * through the host anyway (quantized ones): laying out rows costs the host ~0.35 s per GB, which
   * bf16 weights, streamed from the file untouched, would pay on every load.
   */
  async allocWeight(shape: readonly number[], dtype: DType, label = 'weight', { interleave = 1 } = {}): Promise<Tensor> {
    this.assertUsable();
    checkShape(shape, label);
    const rowElems = numelOf(shape) / shape[0];
    const rowBytes = rowElems * (dtype === 'bf16' || dtype === 'f16' ? 2 : 4);
    const maxTexture = this.device.limits.maxTextureDimension2D;
    const texels = this.texelWeights && shape.length === 2 && rowBytes === rowElems * 2 && rowElems % 8 === 0 && rowElems / 8 <= maxTexture;
    let rowsPerPart = Math.floor(this.maxBindingBytes / rowBytes);
    // texel parts: at most maxTexture rows (side by side or not: the loader's pieces, and so its
    // staging buffers, stay as they are), in whole texture rows (a part starts one)
    if (texels) rowsPerPart = Math.min(rowsPerPart, maxTexture);
    let il = texels ? texelInterleave(rowElems / 8, maxTexture, interleave) : 1;
    while (rowsPerPart < il) il /= 2; // a part of fewer rows (tiny binding limits)
    rowsPerPart -= rowsPerPart % il;
    if (rowsPerPart < 1) throw new Error(`${label}: one row of [${shape.join(', ')}] ${dtype} (${rowBytes} bytes) is larger than the storage binding limit (${this.maxBindingBytes} bytes)`);
    // keep every part a whole number of 32-bit words (packed 16-bit rows of odd length)
    if ((rowBytes * rowsPerPart) % 4 !== 0) rowsPerPart -= 1;
    if (rowsPerPart < 1) throw new Error(`${label}: cannot split [${shape.join(', ')}] ${dtype} into word-aligned parts under ${this.maxBindingBytes} bytes`);
    const parts = [];
    this.device.pushErrorScope('out-of-memory');
    this.device.pushErrorScope('validation');
    for (let r = 0; r < shape[0]; r += rowsPerPart) {
      const rows = Math.min(rowsPerPart, shape[0] - r);
      const name = `${label}[${r}:${r + rows}]`;
      if (texels) {
        parts.push({ texture: this.pool.createTexture((rowElems / 8) * il, Math.ceil(rows / il), name), interleave: il, rowStart: r, rows });
      } else {
        parts.push({ buffer: this.pool.create(storageBytes(dtype, rows * rowElems), name), rowStart: r, rows });
      }
    }
    const [validation, oom] = await Promise.all([this.device.popErrorScope(), this.device.popErrorScope()]);
    const t = new Tensor(this, [...shape], dtype, parts, false, label);
    if (oom || validation) {
      t.release();
      throw new GpuError(`${label}: allocating ${storageBytes(dtype, numelOf(shape))} bytes failed: ${(oom ?? validation)!.message}`);
    }
    return t;
  }

  /** Write raw bytes into tensor `t` starting at byte `offset` of its row-major storage (may span parts). */
  writeBytes(t: Tensor, bytes: Uint8Array, offset = 0): void {
    this.assertUsable();
    t.assertLive();
    if (offset % 2 !== 0) throw new Error(`${t.label}: write offset ${offset} is not 2-byte aligned`);
    const elemBytes = t.dtype === 'bf16' || t.dtype === 'f16' ? 2 : 4;
    const rowBytes = t.rowSize * elemBytes;
    if (offset + bytes.length > t.numel * elemBytes) throw new Error(`${t.label}: write of ${bytes.length} bytes at ${offset} runs past the tensor's ${t.numel * elemBytes} bytes`);
    for (const p of t.parts) {
      const start = p.rowStart * rowBytes;
      const end = start + p.rows * rowBytes;
      const a = Math.max(start, offset);
      const b = Math.min(end, offset + bytes.length);
      if (a >= b) continue;
      if (p.texture) writeTexelRows(this.device, p, rowBytes, a - start, bytes.subarray(a - offset, b - offset));
      else writeAligned(this.device, p.buffer!, a - start, bytes.subarray(a - offset, b - offset));
    }
  }

  /** A tensor filled from host data (f32/i32/u32 arrays, or 16-bit bit patterns for f16/bf16). */
  async upload(shape: readonly number[], dtype: DType, data: Float32Array | Int32Array | Uint32Array | Uint16Array, label = 'tensor', pooled = true): Promise<Tensor> {
    const n = numelOf(shape);
    if (data.length !== n) throw new Error(`${label}: ${data.length} values given for shape [${shape.join(', ')}] (${n} elements)`);
    const t = pooled ? this.empty(shape, dtype, label) : await this.allocWeight(shape, dtype, label);
    this.writeBytes(t, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    return t;
  }

  /** Read a whole tensor back (its own step). */
  async read(t: Tensor): Promise<TypedArray> {
    return this.step((rec) => rec.read(t));
  }

  /** Wait for all submitted work. */
  async sync(): Promise<void> {
    await this.device.queue.onSubmittedWorkDone();
    this.assertUsable();
  }

  /** @internal uniform arena chunks, recycled across steps */
  takeUniformChunk(size: number): GPUBuffer {
    return this.uniformChunks.pop() ?? this.device.createBuffer({ size, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, label: 'uniform arena' });
  }

  /** @internal */
  returnUniformChunk(b: GPUBuffer): void {
    this.uniformChunks.push(b);
  }

  destroy(): void {
    this.pool.trim();
    for (const b of this.uniformChunks) b.destroy();
    this.uniformChunks = [];
    // The listener holds this Gpu (and through keepAlive Dawn's instance): left on the device it
    // keeps the whole native graph alive after destroy, a few MB per load/dispose cycle.
    this.device.removeEventListener('uncapturederror', this.onUncapturedError);
    this.device.destroy();
  }
}

/**
 * Bytes [offset, offset + n) of a texel part's row-major data (whole texels). Whole blocks of
 * `interleave` rows (or the part's last, partial block) go in one write, laid out on the host; the
 * texels of blocks the write covers only partly go one by one (their neighbours are not known).
 */
function writeTexelRows(device: GPUDevice, part: TensorPart, rowBytes: number, offset: number, bytes: Uint8Array): void {
  const texture = part.texture!;
  const il = part.interleave ?? 1;
  if (offset % 16 !== 0 || bytes.length % 16 !== 0) throw new Error(`${texture.label}: writes into a texel weight must cover whole 16-byte texels (offset ${offset}, ${bytes.length} bytes)`);
  const blockBytes = rowBytes * il;
  const end = offset + bytes.length;
  const first = Math.ceil(offset / blockBytes) * blockBytes;
  const last = end === part.rows * rowBytes ? end : Math.floor(end / blockBytes) * blockBytes;
  const one = (at: number): void => {
    const r = Math.floor(at / rowBytes);
    const i = (at % rowBytes) / 16;
    device.queue.writeTexture({ texture, origin: [i * il + (r % il), Math.floor(r / il)] }, bytes.buffer as ArrayBuffer, { offset: bytes.byteOffset + at - offset }, [1, 1]);
  };
  if (first >= last) {
    for (let at = offset; at < end; at += 16) one(at);
    return;
  }
  for (let at = offset; at < first; at += 16) one(at);
  const rows = (last - first) / rowBytes;
  const pitch = rowBytes * il;
  const laid = new Uint8Array(Math.ceil(rows / il) * pitch);
  texelRows(bytes.subarray(first - offset, last - offset), rows, rowBytes, il, pitch, laid);
  device.queue.writeTexture({ texture, origin: [0, first / blockBytes] }, laid.buffer as ArrayBuffer, { bytesPerRow: pitch }, [pitch / 16, Math.ceil(rows / il)]);
  for (let at = last; at < end; at += 16) one(at);
}

/** queue.writeBuffer needs 4-byte aligned offsets and sizes: pad the edges with the buffer's neighbours' zeros. */
function writeAligned(device: GPUDevice, buffer: GPUBuffer, offset: number, bytes: Uint8Array): void {
  if (offset % 4 === 0 && bytes.length % 4 === 0) {
    device.queue.writeBuffer(buffer, offset, bytes.buffer, bytes.byteOffset, bytes.length);
    return;
  }
  // Only 16-bit tensors reach here (a tensor's edges are word aligned); writes are expected to
  // cover whole words except at a tensor's end, where the pad half-word is zero.
  const start = offset - (offset % 4);
  const end = Math.ceil((offset + bytes.length) / 4) * 4;
  if (offset % 4 !== 0) throw new Error(`unaligned write at byte ${offset}: stream 16-bit tensors in 4-byte aligned chunks`);
  const padded = new Uint8Array(end - start);
  padded.set(bytes, offset - start);
  device.queue.writeBuffer(buffer, start, padded.buffer, 0, padded.length);
}
