// Command recording: one encoder, one compute pass and one submit per step.
//
// Every dispatch of a step goes into the same compute pass (cheapest on every adapter);
// its per-dispatch parameters go into a shared uniform arena written once at submit.
// The whole step runs inside validation / out-of-memory / internal error scopes, so a bad
// dispatch or failed allocation surfaces as one clear exception from submit(), and nothing
// read back from a failed step is returned.
// With `profile`, each dispatch gets its own pass with timestamp writes instead.

import type { Gpu } from './device.js';
import type { Defines } from './pipelines.js';
import { Tensor, partBuffer, texelRows, type DType } from './tensor.js';

/** A texture binds as a view of its whole (texel-layout weights). */
export type Binding = Tensor | GPUBuffer | GPUBufferBinding | GPUTexture;
/** A uniform field: a plain number is a u32; wrap f32 / i32 values. */
export type UniformField = number | { f32: number } | { i32: number };

const UNIFORM_CHUNK = 64 * 1024;

export class GpuError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GpuError';
  }
}

export interface ProfileEntry {
  label: string;
  ms: number;
}

/** texel tensors come back as each part's texture rows (texel layout), `pitch` bytes apart (copyTextureToBuffer's 256-byte alignment) */
type TexelReadback = { row: number; parts: Array<{ rows: number; il: number; pitch: number }> };
type Readback = { staging: GPUBuffer; dtype: DType; count: number; texels?: TexelReadback; resolve: (v: TypedArray) => void; reject: (e: Error) => void };
export type TypedArray = Float32Array | Int32Array | Uint32Array | Uint16Array;

export class Recorder {
  private encoder: GPUCommandEncoder;
  private pass: GPUComputePassEncoder | null = null;
  private chunks: { buffer: GPUBuffer; data: Uint8Array<ArrayBuffer>; used: number }[] = [];
  private reads: Readback[] = [];
  private labels: string[] = [];
  private querySet: GPUQuerySet | null = null;
  private closed = false;
  dispatches = 0;
  profile: ProfileEntry[] = [];

  constructor(
    readonly gpu: Gpu,
    private readonly profiling = false,
  ) {
    gpu.assertUsable();
    const device = gpu.device;
    device.pushErrorScope('internal');
    device.pushErrorScope('out-of-memory');
    device.pushErrorScope('validation');
    this.encoder = device.createCommandEncoder();
    if (profiling && !gpu.features.timestamps) throw new Error('profiling needs the timestamp-query feature, which this adapter lacks');
  }

  /** Place parameters in the uniform arena; returns the binding for them. */
  uniform(fields: UniformField[]): GPUBufferBinding {
    const size = Math.max(16, Math.ceil((fields.length * 4) / 16) * 16);
    const align = this.gpu.device.limits.minUniformBufferOffsetAlignment;
    let chunk = this.chunks[this.chunks.length - 1];
    let offset = chunk ? Math.ceil(chunk.used / align) * align : 0;
    if (!chunk || offset + size > UNIFORM_CHUNK) {
      chunk = { buffer: this.gpu.takeUniformChunk(UNIFORM_CHUNK), data: new Uint8Array(UNIFORM_CHUNK), used: 0 };
      this.chunks.push(chunk);
      offset = 0;
    }
    const view = new DataView(chunk.data.buffer, offset, size);
    fields.forEach((f, i) => {
      if (typeof f === 'number') {
        if (!Number.isInteger(f) || f < 0 || f > 0xffffffff) throw new Error(`uniform field ${i}: ${f} is not a u32`);
        view.setUint32(i * 4, f, true);
      } else if ('f32' in f) view.setFloat32(i * 4, f.f32, true);
      else view.setInt32(i * 4, f.i32, true);
    });
    chunk.used = offset + size;
    return { buffer: chunk.buffer, offset, size };
  }

  /** Record one dispatch of `kernel` (variant `defines`) with bindings 0..n-1 of group 0. */
  dispatch(kernel: string, defines: Defines, bindings: Binding[], workgroups: [number, number?, number?], label = kernel, entry = 'main'): void {
    this.assertOpen();
    const [x, y = 1, z = 1] = workgroups;
    const maxDim = this.gpu.device.limits.maxComputeWorkgroupsPerDimension;
    if ([x, y, z].some((d) => !Number.isInteger(d) || d < 0 || d > maxDim)) {
      throw new Error(`${label}: workgroup count [${x}, ${y}, ${z}] outside 0..${maxDim}`);
    }
    if (x * y * z === 0) return;
    const pipeline = this.gpu.pipelines.get(kernel, defines, entry);
    const entries: GPUBindGroupEntry[] = bindings.map((b, i) => ({ binding: i, resource: toResource(b, this.gpu.maxBindingBytes, label, i) }));
    const bindGroup = this.gpu.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries, label });
    let pass: GPUComputePassEncoder;
    if (this.profiling) {
      const idx = this.labels.length;
      if (idx >= 2048) throw new Error('profiling is limited to 2048 dispatches per step');
      this.querySet ??= this.gpu.device.createQuerySet({ type: 'timestamp', count: 4096 });
      pass = this.encoder.beginComputePass({ timestampWrites: { querySet: this.querySet, beginningOfPassWriteIndex: 2 * idx, endOfPassWriteIndex: 2 * idx + 1 } });
      this.labels.push(label);
    } else {
      pass = this.pass ??= this.encoder.beginComputePass();
    }
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(x, y, z);
    if (this.profiling) pass.end();
    this.dispatches++;
  }

  copyBuffer(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number): void {
    this.assertOpen();
    this.endPass();
    this.encoder.copyBufferToBuffer(src, srcOffset, dst, dstOffset, size);
  }

  /** Schedule a readback of `t`; the promise resolves after submit() with the tensor's data. */
  read(t: Tensor): Promise<TypedArray> {
    this.assertOpen();
    t.assertLive();
    this.endPass();
    const elemBytes = t.dtype === 'bf16' || t.dtype === 'f16' ? 2 : 4;
    const row = t.rowSize * elemBytes;
    // texel parts: texture rows at a padded pitch, one after another (the layout undone on the host)
    const texels = t.texels ? t.parts.map((p) => ({ rows: p.rows, il: p.interleave ?? 1, pitch: Math.ceil((row * (p.interleave ?? 1)) / 256) * 256 })) : undefined;
    const usage = GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST;
    const size = texels ? texels.reduce((s, p) => s + Math.ceil(p.rows / p.il) * p.pitch, 0) : t.byteSize;
    const staging = this.gpu.device.createBuffer({ size, usage, label: 'readback' });
    let offset = 0;
    for (const [k, p] of t.parts.entries()) {
      if (p.texture) {
        const { il, pitch } = texels![k];
        this.encoder.copyTextureToBuffer({ texture: p.texture }, { buffer: staging, offset, bytesPerRow: pitch }, [(row / 16) * il, Math.ceil(p.rows / il)]);
        offset += Math.ceil(p.rows / il) * pitch;
        continue;
      }
      const bytes = Math.ceil((p.rows * row) / 4) * 4;
      this.encoder.copyBufferToBuffer(partBuffer(t, p), 0, staging, offset, bytes);
      offset += bytes;
    }
    const p = new Promise<TypedArray>((resolve, reject) => this.reads.push({ staging, dtype: t.dtype, count: t.numel, texels: texels && { row, parts: texels }, resolve, reject }));
    p.catch(() => {}); // a failed step throws from submit(); callers need not also await every read
    return p;
  }

  /** Submit the step once; throws GpuError if anything in it failed. */
  async submit(): Promise<void> {
    this.assertOpen();
    this.endPass();
    let resolveBuf: GPUBuffer | null = null;
    if (this.querySet && this.labels.length) {
      const n = 2 * this.labels.length;
      const resolveTarget = this.gpu.device.createBuffer({ size: n * 8, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
      resolveBuf = this.gpu.device.createBuffer({ size: n * 8, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      this.encoder.resolveQuerySet(this.querySet, 0, n, resolveTarget, 0);
      this.encoder.copyBufferToBuffer(resolveTarget, 0, resolveBuf, 0, n * 8);
    }
    for (const c of this.chunks) this.gpu.device.queue.writeBuffer(c.buffer, 0, c.data, 0, Math.ceil(c.used / 4) * 4);
    this.gpu.device.queue.submit([this.encoder.finish()]);
    this.closed = true;
    for (const c of this.chunks) this.gpu.returnUniformChunk(c.buffer);
    const error = await this.popScopes();
    this.gpu.assertUsable();
    if (error) {
      for (const r of this.reads) r.staging.destroy();
      const e = new GpuError(error);
      for (const r of this.reads) r.reject(e);
      throw e;
    }
    await Promise.all(
      this.reads.map(async (r) => {
        await r.staging.mapAsync(GPUMapMode.READ);
        r.resolve(typedCopy(r.texels ? fromTexels(r.staging.getMappedRange(), r.texels) : r.staging.getMappedRange(), r.dtype, r.count));
        r.staging.destroy();
      }),
    );
    if (resolveBuf) {
      await resolveBuf.mapAsync(GPUMapMode.READ);
      const ts = new BigUint64Array(resolveBuf.getMappedRange().slice(0));
      this.profile = this.labels.map((label, i) => ({ label, ms: Number(ts[2 * i + 1] - ts[2 * i]) / 1e6 }));
      resolveBuf.destroy();
    }
    this.querySet?.destroy();
  }

  /** Abandon the step (after an exception while recording). */
  async abort(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.pass?.end();
    this.pass = null;
    for (const c of this.chunks) this.gpu.returnUniformChunk(c.buffer);
    for (const r of this.reads) r.staging.destroy();
    this.querySet?.destroy();
    await this.popScopes();
  }

  private async popScopes(): Promise<string | null> {
    const device = this.gpu.device;
    const errors = await Promise.all([device.popErrorScope(), device.popErrorScope(), device.popErrorScope()]);
    this.gpu.stepClosed();
    const kinds = ['validation', 'out-of-memory', 'internal'];
    const msgs = errors.map((e, i) => (e ? `${kinds[i]} error: ${e.message}` : null)).filter((m): m is string => m !== null);
    return msgs.length ? `GPU step failed: ${msgs.join('; ')}` : null;
  }

  private endPass(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('recorder already submitted');
  }
}

/** One view per weight texture, made at its first dispatch (each decode step binds every weight part). */
const textureViews = new WeakMap<GPUTexture, GPUTextureView>();

function toResource(b: Binding, maxBinding: number, label: string, index: number): GPUBindingResource {
  let r: GPUBufferBinding;
  if ('createView' in b) {
    let view = textureViews.get(b);
    if (!view) textureViews.set(b, (view = b.createView()));
    return view;
  }
  // a pooled buffer may be larger than its tensor (size classes): bind the tensor's bytes only
  if (b instanceof Tensor) r = { buffer: b.buffer, size: b.byteSize };
  else if ('buffer' in b && !('mapState' in b)) r = b as GPUBufferBinding;
  else r = { buffer: b as GPUBuffer };
  const size = r.size ?? r.buffer.size - (r.offset ?? 0);
  if (size > maxBinding && (r.buffer.usage & GPUBufferUsage.STORAGE) !== 0) {
    throw new Error(`${label}: binding ${index} is ${size} bytes, over this device's storage binding limit of ${maxBinding} bytes (split the tensor by rows)`);
  }
  return r;
}

/** Row-major rows from texel parts' texture rows, read back one part after another. */
function fromTexels(range: ArrayBuffer, texels: TexelReadback): ArrayBuffer {
  const src = new Uint8Array(range);
  const out = new Uint8Array(texels.parts.reduce((s, p) => s + p.rows, 0) * texels.row);
  let from = 0;
  let to = 0;
  for (const p of texels.parts) {
    texelRows(src.subarray(from), p.rows, texels.row, p.il, p.pitch, out.subarray(to), true);
    from += Math.ceil(p.rows / p.il) * p.pitch;
    to += p.rows * texels.row;
  }
  return out.buffer;
}

function typedCopy(range: ArrayBuffer, dtype: DType, count: number): TypedArray {
  const src = range.slice(0);
  switch (dtype) {
    case 'f32':
      return new Float32Array(src, 0, count);
    case 'i32':
      return new Int32Array(src, 0, count);
    case 'u32':
      return new Uint32Array(src, 0, count);
    case 'f16':
    case 'bf16':
      return new Uint16Array(src, 0, count);
    case 'q8':
    case 'q4':
      throw new Error(`${dtype} weights are read back as bytes, not values (src/weights/quantize.ts dequantizeRows)`);
  }
}
