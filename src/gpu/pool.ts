// Buffer pool: storage buffers are recycled by size class so that a forward pass run many times
// (decode steps) allocates nothing after the first step.

const USAGE = GPUBufferUsageFlags();

function GPUBufferUsageFlags(): number {
  // GPUBufferUsage is a global in browsers and after `Object.assign(globalThis, globals)` in Node;
  // fall back to the spec values so this module can be imported before the device exists.
  const u = (globalThis as { GPUBufferUsage?: { STORAGE: number; COPY_SRC: number; COPY_DST: number } }).GPUBufferUsage;
  return u ? u.STORAGE | u.COPY_SRC | u.COPY_DST : 0x80 | 0x04 | 0x08;
}

const TEXEL_USAGE = (() => {
  const u = (globalThis as { GPUTextureUsage?: { STORAGE_BINDING: number; COPY_SRC: number; COPY_DST: number } }).GPUTextureUsage;
  return u ? u.STORAGE_BINDING | u.COPY_SRC | u.COPY_DST : 0x08 | 0x01 | 0x02;
})();

/** Round a byte size up to its size class: 256-byte granularity, then 4 steps per power of two. */
export function sizeClass(bytes: number): number {
  const b = Math.max(256, Math.ceil(bytes / 256) * 256);
  if (b <= 4096) return b;
  const step = 2 ** (Math.floor(Math.log2(b)) - 2);
  return Math.ceil(b / step) * step;
}

export class BufferPool {
  private free = new Map<number, GPUBuffer[]>();
  /** bytes currently held by live (acquired) pooled buffers */
  liveBytes = 0;
  /** bytes sitting in free lists */
  freeBytes = 0;
  /** bytes of every storage buffer and weight texture the engine allocated (pooled or not), live now */
  allocatedBytes = 0;
  peakAllocatedBytes = 0;

  /** Fill every acquired buffer with 0xFF bytes (NaN as f32) so tests catch unwritten outputs. */
  poison = false;

  constructor(private readonly device: GPUDevice) {}

  acquire(bytes: number, label: string): GPUBuffer {
    const size = sizeClass(bytes);
    const list = this.free.get(size);
    const reused = list?.pop();
    const buffer = reused ?? this.create(size, label);
    if (reused) this.freeBytes -= size;
    this.liveBytes += size;
    if (this.poison) this.device.queue.writeBuffer(buffer, 0, new Uint8Array(size).fill(0xff));
    return buffer;
  }

  /** An unpooled buffer of exactly `bytes` (weights): destroyed on release. */
  create(bytes: number, label: string): GPUBuffer {
    const buffer = this.device.createBuffer({ size: Math.max(4, Math.ceil(bytes / 4) * 4), usage: USAGE, label });
    this.allocatedBytes += buffer.size;
    this.peakAllocatedBytes = Math.max(this.peakAllocatedBytes, this.allocatedBytes);
    return buffer;
  }

  destroy(buffer: GPUBuffer): void {
    this.allocatedBytes -= buffer.size;
    buffer.destroy();
  }

  /** A weight texture in the texel layout (rgba32uint, `width` texels by `rows`): destroyed on release. */
  createTexture(width: number, rows: number, label: string): GPUTexture {
    const texture = this.device.createTexture({ size: [width, rows], format: 'rgba32uint', usage: TEXEL_USAGE, label });
    this.allocatedBytes += width * rows * 16;
    this.peakAllocatedBytes = Math.max(this.peakAllocatedBytes, this.allocatedBytes);
    return texture;
  }

  destroyTexture(texture: GPUTexture): void {
    this.allocatedBytes -= texture.width * texture.height * 16;
    texture.destroy();
  }

  release(buffer: GPUBuffer): void {
    const size = buffer.size;
    let list = this.free.get(size);
    if (!list) this.free.set(size, (list = []));
    list.push(buffer);
    this.liveBytes -= size;
    this.freeBytes += size;
  }

  /** Destroy every free buffer (e.g. after loading, or between requests). */
  trim(): void {
    for (const list of this.free.values()) for (const b of list) this.destroy(b);
    this.free.clear();
    this.freeBytes = 0;
  }
}
