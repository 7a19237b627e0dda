// Checkpoint -> GPU upload. Each tensor part (tensor.ts: the rows held by one buffer or texture) is
// read from its byte source straight into a mapped staging buffer and copied to the GPU by one
// copy command, while the next staging buffer is being filled: reads overlap the GPU's copies.
//
// Why not queue.writeBuffer/writeTexture (measured on lavapipe, bench/RESULTS.md "Loading"):
// - Dawn copies each write into a fresh staging allocation (writes over its 4 MiB ring get their
//   own), and every fresh page costs a first-touch fault (~0.3 GB/s in this VM): the bytes were
//   faulted in twice, once in staging and once in the weight;
// - a write that covers part of a texture or buffer makes Dawn zero the whole resource first
//   (lazy clear), one more pass over fresh memory. A copy that covers the whole part skips it.
// Two reused staging buffers of up to 128 MiB bound the memory over the weights; tensors are read
// in file order, several reads in flight, with O_DIRECT where the source offers it (source.ts:
// no page-cache copy, so the reads take almost no CPU from lavapipe's copy thread).
//
// On lavapipe the copies are the floor: the weights' memory is fresh memfd pages, and each 4 KiB
// page's first touch traps to the hypervisor in this VM, one at a time for the whole VM (two
// threads or two processes touching fresh pages each get half the rate). WebGPU cannot ask
// lavapipe to populate its memory, so each weight's fresh range is read once through
// /proc/self/mem as soon as it is allocated (prefault.ts): the kernel faults it in without a trap
// per page, and the copy thread's touch costs about half as much (full preset: 0.18 -> 0.27 GB/s).
// The loader's job is then to keep lavapipe's copy thread busy: the breakdown reports the time the
// GPU spent copying beside the wall time.
//
// Dtypes as stored: BF16 -> bf16 (packed u32 pairs), F16 -> f16, F32 -> f32, I32 -> i32, U32 -> u32.
// Widening rule: float tensors with at most one dimension larger than 1 (biases, norm weights,
// layer scales, the class embedding) are uploaded as f32, because kernels take 1-D parameters
// as f32. Callers can replace the rule with `widen`. Quantized tensors (`quantize`) go through the
// same staging buffers, from the quantizer or from the quantized cache (quant-cache.ts).

import type { Gpu } from '../gpu/device.js';
import { BYTES_PER_ELEMENT, bf16BitsToF32, f16BitsToF32, texelRows, type DType, type Tensor, type TensorPart } from '../gpu/tensor.js';
import type { QuantDType } from './quantize.js';
import { QuantizeFeed } from './quantize-feed.js';
import { defaultQuantizeWorkers } from './quantize-pool.js';
import { allocQuantized } from './quantize-upload.js';
import { QuantCacheError, openQuantCache, type QuantCacheOptions, type QuantCacheSession, type QuantCacheUse } from './quant-cache.js';
import { DTYPE_BYTES, SafetensorsError, readExact, type Checkpoint, type TensorInfo } from './safetensors.js';
import { DIRECT_ALIGN, FileSource } from './source.js';
import { Prefault } from './prefault.js';

/** Where a load's time went: the main thread's waits (they add up to `seconds` with "other"), and the GPU's copying, which overlaps them. */
export interface LoadBreakdown {
  /** waiting for the byte source (disk, page cache, network) */
  readSeconds: number;
  /** waiting for the GPU to finish copying out of a staging buffer before refilling it */
  copyWaitSeconds: number;
  /** the GPU copying out of staging (from each batch's submit, or the previous batch's end, to its end): overlaps the reads */
  copySeconds: number;
  /** allocating weight buffers and textures */
  allocSeconds: number;
  /** widening 16-bit vectors to f32, padding texel rows, aligning O_DIRECT reads */
  hostSeconds: number;
  /** waiting for quantized rows (tensors not found in the quantized cache: read and quantized ahead, on worker threads in Node) */
  quantizeSeconds: number;
  /** threads quantizing (0: the main thread), when quantizing */
  quantizeWorkers?: number;
  /** bytes of the larger staging buffer (two are used) */
  stagingBytes: number;
  /** copy commands submitted, and how many covered only part of their target (those make Dawn zero the target first) */
  copies: number;
  partialCopies: number;
  /** bytes read with O_DIRECT (source.ts readDirect) */
  directBytes: number;
  /** the quantized cache: what happened to it (quant-cache.ts), when quantizing */
  quantCache?: string;
  quantCacheUse?: QuantCacheUse;
  /** bytes of fresh weight memory pre-faulted through /proc/self/mem (prefault.ts; software adapters in Node on Linux) */
  prefaultBytes: number;
  /** page faults of this process during the load (Node only; undefined elsewhere) */
  minorFaults?: number;
  majorFaults?: number;
}

export interface UploadProgress {
  /** tensor being uploaded */
  tensor: string;
  /** bytes read so far and in total (checkpoint bytes; the quantized cache's bytes for tensors read from it) */
  bytesDone: number;
  bytesTotal: number;
  seconds: number;
  bytesPerSecond: number;
  /** where the time went so far */
  breakdown: LoadBreakdown;
}

export interface UploadOptions {
  /** most bytes per staging buffer (default 128 MiB, at least two rows): less memory, but parts that do not fit are copied in pieces */
  stagingBytes?: number;
  /** which tensors to upload as f32; default: float tensors with at most one dim > 1 */
  widen?: (info: TensorInfo) => boolean;
  /** which tensors to quantize, and to what (src/weights/quantize.ts quantizeRule); default none */
  quantize?: (info: TensorInfo) => QuantDType | undefined;
  /** the quantized copy of a checkpoint (quant-cache.ts): where, or false for none; used when `quantize` picks tensors of a Checkpoint's files */
  quantCache?: QuantCacheOptions | false;
  /** worker threads that quantize (quantize-pool.ts; default PVC_QUANT_WORKERS, else the cores but one; Web Workers in the browser build); 0: the loading thread */
  quantizeWorkers?: number;
  /** pre-fault the weights' fresh memory on software adapters (prefault.ts; default true) */
  prefault?: boolean;
  /** pieces of at least this many bytes are read with O_DIRECT where the source offers it (default 1 MiB; Infinity: never) */
  directReadBytes?: number;
  onProgress?: (p: UploadProgress) => void;
}

const DEFAULT_STAGING = 128 << 20;
/** a first staging buffer's size when the first pieces are small (it grows to fit larger ones) */
const MIN_STAGING = 4 << 20;
/** reads in flight per staging buffer are split at this size (page-cache copies and disk queues both run in parallel) */
const READ_PIECE = 16 << 20;
/** copyBufferToTexture wants 256-byte row pitches; staging regions start on the same boundary */
const PITCH = 256;
/** texel copies start at multiples of one rgba32uint texel */
const TEXEL_BYTES = 16;
/** default directReadBytes: small pieces go through the page cache (cheap, and cached for the next load) */
const DIRECT_MIN = 1 << 20;
/** room a piece may need beyond its rows: an O_DIRECT read rounds its start and end out to whole blocks */
const STAGING_SLACK = 3 * DIRECT_ALIGN;

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

const alignUp = (n: number, a: number): number => Math.ceil(n / a) * a;

/** Rows [row, row + rows) of one part: one copy command out of one staging region. */
export interface Piece {
  part: TensorPart;
  /** first row within the part */
  row: number;
  rows: number;
  /** bytes per row in the GPU dtype, and per row in staging (texel parts: per texture row, padded to 256 bytes) */
  rowBytes: number;
  pitch: number;
  /** staging bytes the piece occupies (copy size: whole words) */
  stagingBytes: number;
  /** the copy covers its whole part (no lazy clear) */
  whole: boolean;
}

/**
 * Cut a tensor's parts into pieces of at most `capacity` staging bytes (at least one row each):
 * a part that fits is one piece. Pure, so the cutting is tested without a GPU.
 */
export function planPieces(parts: readonly TensorPart[], rowElems: number, dtype: DType, capacity: number): Piece[] {
  const rowBytes = rowElems * BYTES_PER_ELEMENT[dtype];
  const out: Piece[] = [];
  for (const part of parts) {
    // texel parts: texture rows of `il` rows each (a piece starts one), at a 256-byte pitch
    const il = part.interleave ?? 1;
    const pitch = part.texture ? alignUp(rowBytes * il, PITCH) : rowBytes;
    let rowsPer = Math.max(1, Math.floor(capacity / pitch)) * (part.texture ? il : 1);
    // buffer copies move whole 32-bit words: pieces that end inside a part hold an even number of odd-sized 16-bit rows
    if (!part.texture && (rowsPer * rowBytes) % 4 !== 0) rowsPer = Math.max(2, rowsPer - 1);
    for (let row = 0; row < part.rows; row += rowsPer) {
      const rows = Math.min(rowsPer, part.rows - row);
      const stagingBytes = part.texture ? Math.ceil(rows / il) * pitch : alignUp(rows * rowBytes, 4);
      out.push({ part, row, rows, rowBytes, pitch, stagingBytes, whole: rows === part.rows });
    }
  }
  return out;
}

interface Slot {
  buffer: GPUBuffer | null;
  /** resolves when the buffer is mapped again (its last copies are done) */
  ready: Promise<void>;
  mapped: Uint8Array | null;
  used: number;
  copies: Array<{ piece: Piece; offset: number }>;
}

/** Rows of one tensor as the GPU stores them, and how a piece of them gets into staging. */
interface RowSource {
  /** the weight as returned, and the storage its rows are copied into (the same tensor unless quantized) */
  tensor: Tensor;
  storage: Tensor;
  /** write the piece's rows into `slot` at or after `slot.used` (row pitch piece.pitch); returns where they start */
  stage(slot: Slot, piece: Piece): Promise<number>;
  /** called once every piece is staged */
  end?(): Promise<void>;
}

class Uploader {
  private readonly start = performance.now();
  private readonly faults0 = processFaults();
  private readonly slots: Slot[] = [];
  private current = 0;
  private done = 0;
  /** rows of a piece on their way to the texel layout */
  private scratch = new Uint8Array(0);
  /** when the GPU finished the last copy batch (for the copy-busy time) */
  private lastCopyEnd = 0;
  readonly breakdown: LoadBreakdown;

  constructor(
    private readonly gpu: Gpu,
    private readonly total: number,
    private readonly opts: UploadOptions,
    readonly capacity: number,
    private readonly cache: QuantCacheSession | null,
    /** the quantized rows of the tensors not in the cache, in load order */
    private readonly feed: QuantizeFeed | null,
    private readonly prefault: Prefault | null,
  ) {
    this.breakdown = { readSeconds: 0, copyWaitSeconds: 0, copySeconds: 0, allocSeconds: 0, hostSeconds: 0, quantizeSeconds: 0, stagingBytes: 0, copies: 0, partialCopies: 0, directBytes: 0, prefaultBytes: 0 };
  }

  /** An allocation whose fresh memory is pre-faulted in the background. */
  private alloc<T>(make: () => Promise<T>): Promise<T> {
    return this.prefault ? this.prefault.around(make) : make();
  }

  async upload(info: TensorInfo): Promise<Tensor> {
    const q = this.opts.quantize?.(info);
    let t0 = performance.now();
    const rows = q ? await this.quantizedRows(info, q) : await this.plainRows(info);
    this.breakdown.allocSeconds += (performance.now() - t0) / 1000;
    const { tensor, storage } = rows;
    try {
      for (const piece of planPieces(storage.parts, storage.rowSize, storage.dtype, this.capacity)) {
        const slot = await this.slotWith(piece.stagingBytes + STAGING_SLACK);
        const at = await rows.stage(slot, piece);
        slot.copies.push({ piece, offset: at });
        slot.used = alignUp(at + piece.stagingBytes, PITCH);
      }
      await rows.end?.();
    } catch (e) {
      tensor.release();
      throw e;
    }
    return tensor;
  }

  /** A tensor as stored in the checkpoint (16-bit vectors widened to f32). */
  private async plainRows(info: TensorInfo): Promise<RowSource> {
    const dtype = gpuDtype(info, this.opts.widen);
    const t = await this.alloc(() => this.gpu.allocWeight(gpuShape(info), dtype, info.name));
    if (dtype !== 'f32' || info.dtype === 'F32') return { tensor: t, storage: t, stage: (slot, piece) => this.stageRaw(info, slot, piece) };
    const fileRowBytes = t.rowSize * DTYPE_BYTES[info.dtype];
    const stage = async (slot: Slot, piece: Piece): Promise<number> => {
      // 16-bit floats widened on the host (vectors: small)
      const bits = new Uint16Array((piece.rows * fileRowBytes) / 2);
      await this.read(info, new Uint8Array(bits.buffer), info.offset + (piece.part.rowStart + piece.row) * fileRowBytes);
      const t0 = performance.now();
      slot.mapped!.set(new Uint8Array((info.dtype === 'BF16' ? bf16BitsToF32(bits) : f16BitsToF32(bits)).buffer), slot.used);
      this.breakdown.hostSeconds += (performance.now() - t0) / 1000;
      this.advance(bits.byteLength, info.name);
      return slot.used;
    };
    return { tensor: t, storage: t, stage };
  }

  /**
   * A bf16 [N, K] weight quantized (quantize.ts layout): read from the quantized cache when it
   * holds the tensor (its bytes checked against the recorded hash), otherwise taken from the
   * quantizing feed (read and quantized ahead, block by block) and appended to the cache being written.
   */
  private async quantizedRows(info: TensorInfo, q: QuantDType): Promise<RowSource> {
    if (info.dtype !== 'BF16' || info.shape.length !== 2) throw new Error(`${info.name}: only 2-D BF16 tensors are quantized (this one is ${info.dtype} [${info.shape.join(', ')}])`);
    const [N, K] = info.shape as [number, number];
    const { tensor, storage, rowBytes } = await this.alloc(() => allocQuantized(this.gpu, q, [N, K], info.name));
    const cached = this.cache?.cached(info.name);
    if (cached) {
      const hash = cached.check();
      return { tensor, storage, stage: (slot, piece) => this.stageRaw(cached.info, slot, piece, (b) => hash.update(b)), end: () => hash.check() };
    }
    const stage = async (slot: Slot, piece: Piece): Promise<number> => {
      const first = piece.part.rowStart + piece.row;
      for (let r = 0; r < piece.rows; ) {
        const t0 = performance.now();
        const { codes, rows, block } = await this.feed!.take(info.name, first + r, piece.rows - r);
        slot.mapped!.set(codes, slot.used + r * rowBytes);
        this.breakdown.quantizeSeconds += (performance.now() - t0) / 1000;
        if (block) await this.cache?.append(info.name, block);
        r += rows;
        this.advance(rows * 2 * K, info.name);
      }
      this.toTexels(slot.mapped!.subarray(slot.used), piece);
      return slot.used;
    };
    return { tensor, storage, stage };
  }

  /**
   * Stage a piece's rows as the file holds them (file rows = GPU rows): read with readDirect when
   * the source has it and the piece is large (whole DIRECT_ALIGN blocks into an aligned staging offset, the rows then
   * moved down to the copy's alignment when the file's offset is not), else with read. `onBytes`
   * sees the rows as read, before rows are spread to the texel pitch.
   */
  private async stageRaw(info: TensorInfo, slot: Slot, piece: Piece, onBytes?: (bytes: Uint8Array) => Promise<void>): Promise<number> {
    const staging = slot.mapped!;
    const length = piece.rows * piece.rowBytes;
    const position = info.offset + (piece.part.rowStart + piece.row) * piece.rowBytes;
    let at = slot.used;
    const t0 = performance.now();
    if (info.source.readDirect && length >= (this.opts.directReadBytes ?? DIRECT_MIN)) {
      const span = directSpan(slot.used, position, length, piece.part.texture ? TEXEL_BYTES : 4);
      const reads = [];
      for (let a = 0; a < span.bytes; a += READ_PIECE) {
        const into = staging.subarray(span.start + a, span.start + Math.min(a + READ_PIECE, span.bytes));
        reads.push(info.source.readDirect(into, span.position + a));
      }
      const got = (await Promise.all(reads)).reduce((s, n) => s + n, 0);
      if (got < span.skip + length) throw new SafetensorsError(`${info.source.name}: tensor '${info.name}': unexpected end of file at byte ${span.position + got} (the file is truncated)`);
      this.breakdown.readSeconds += (performance.now() - t0) / 1000;
      this.breakdown.directBytes += length;
      at = span.at;
      if (at !== span.start + span.skip) {
        const t1 = performance.now();
        staging.copyWithin(at, span.start + span.skip, span.start + span.skip + length);
        this.breakdown.hostSeconds += (performance.now() - t1) / 1000;
      }
    } else {
      await this.read(info, staging.subarray(at, at + length), position);
    }
    const dst = staging.subarray(at, at + piece.stagingBytes);
    await onBytes?.(dst.subarray(0, length));
    dst.fill(0, length); // a reused buffer: the pad half-word of an odd-length 16-bit part is copied too
    this.toTexels(dst, piece);
    this.advance(length, info.name);
    return at;
  }

  /** A texel part's rows, staged one after another at `dst`, into its texture rows (texel layout). */
  private toTexels(dst: Uint8Array, piece: Piece): void {
    const il = piece.part.interleave ?? 1;
    if (!piece.part.texture || (il === 1 && piece.pitch === piece.rowBytes)) return;
    const t0 = performance.now();
    const length = piece.rows * piece.rowBytes;
    // rows side by side cannot be laid out in place: from a copy (reused: fresh memory faults)
    let src = dst;
    if (il > 1) {
      if (this.scratch.length < length) this.scratch = new Uint8Array(length);
      src = this.scratch.subarray(0, length);
      src.set(dst.subarray(0, length));
    }
    texelRows(src, piece.rows, piece.rowBytes, il, piece.pitch, dst);
    this.breakdown.hostSeconds += (performance.now() - t0) / 1000;
  }

  /** Fill `into` from the tensor's source, in pieces read in parallel. */
  private async read(info: TensorInfo, into: Uint8Array, position: number): Promise<void> {
    const t0 = performance.now();
    const reads = [];
    for (let at = 0; at < into.length; at += READ_PIECE) {
      reads.push(readExact(info.source, into.subarray(at, Math.min(at + READ_PIECE, into.length)), position + at, `tensor '${info.name}'`));
    }
    await Promise.all(reads);
    this.breakdown.readSeconds += (performance.now() - t0) / 1000;
  }

  private advance(bytes: number, name: string): void {
    this.done += bytes;
    if (this.done < this.total) this.report(name); // the last report waits for the copies (finish)
  }

  /** The staging buffer to fill next, with `bytes` free: the current one, or the other once the GPU is done with it. */
  private async slotWith(bytes: number): Promise<Slot> {
    let slot = this.slots[this.current];
    if (slot?.mapped && slot.used + bytes <= slot.mapped.length) return slot;
    if (slot) {
      this.submit(slot);
      this.current = 1 - this.current;
    }
    slot = this.slots[this.current] ??= { buffer: null, ready: Promise.resolve(), mapped: null, used: 0, copies: [] };
    const t0 = performance.now();
    await slot.ready;
    this.breakdown.copyWaitSeconds += (performance.now() - t0) / 1000;
    this.gpu.assertUsable();
    if (!slot.buffer || slot.buffer.size < bytes) {
      // sized to need (small checkpoints and tests stay small), growing up to the capacity
      const size = Math.min(this.capacity + STAGING_SLACK, Math.max(bytes, 2 * (slot.buffer?.size ?? 0), MIN_STAGING));
      slot.buffer?.destroy();
      slot.buffer = this.gpu.device.createBuffer({ size, usage: GPUBufferUsage.MAP_WRITE | GPUBufferUsage.COPY_SRC, mappedAtCreation: true, label: 'weight staging' });
      this.breakdown.stagingBytes = Math.max(this.breakdown.stagingBytes, size);
    }
    slot.mapped = new Uint8Array(slot.buffer.getMappedRange());
    slot.used = 0;
    return slot;
  }

  /** Unmap a filled staging buffer, copy its pieces to their parts, and map it again when the copies are done. */
  private submit(slot: Slot): void {
    const buffer = slot.buffer!;
    slot.mapped = null;
    buffer.unmap();
    const enc = this.gpu.device.createCommandEncoder({ label: 'weight upload' });
    for (const { piece, offset } of slot.copies) {
      const { part } = piece;
      if (part.texture) {
        const il = part.interleave ?? 1;
        enc.copyBufferToTexture({ buffer, offset, bytesPerRow: piece.pitch }, { texture: part.texture, origin: [0, piece.row / il] }, [(piece.rowBytes / TEXEL_BYTES) * il, Math.ceil(piece.rows / il)]);
      } else {
        enc.copyBufferToBuffer(buffer, offset, part.buffer!, piece.row * piece.rowBytes, piece.stagingBytes);
      }
      this.breakdown.copies++;
      if (!piece.whole) this.breakdown.partialCopies++;
    }
    slot.copies = [];
    this.gpu.device.queue.submit([enc.finish()]);
    // batches run in submission order: this one's copying started when it was submitted or when the previous one ended
    const submitted = performance.now();
    slot.ready = buffer.mapAsync(GPUMapMode.WRITE).then(() => {
      const end = performance.now();
      this.breakdown.copySeconds += (end - Math.max(submitted, this.lastCopyEnd)) / 1000;
      this.lastCopyEnd = end;
    });
  }

  /** Submit what is staged and wait for every copy; the staging buffers are destroyed. A last progress report follows. */
  async finish(lastTensor: string): Promise<void> {
    const slot = this.slots[this.current];
    if (slot?.mapped) this.submit(slot);
    const t0 = performance.now();
    await Promise.all(this.slots.map((s) => s.ready));
    await this.gpu.sync();
    await this.prefault?.settle();
    this.breakdown.copyWaitSeconds += (performance.now() - t0) / 1000;
    this.destroy();
    await this.cache?.commit();
    this.report(lastTensor);
  }

  destroy(): void {
    this.prefault?.close();
    for (const s of this.slots) {
      // after a failed load a staging buffer may still be mapping: destroying it aborts that, unawaited
      s.ready.catch(() => {});
      s.buffer?.destroy();
    }
    this.slots.length = 0;
  }

  private report(name: string): void {
    if (this.cache) Object.assign(this.breakdown, { quantCache: this.cache.status, quantCacheUse: this.cache.use });
    if (this.prefault) this.breakdown.prefaultBytes = this.prefault.bytes;
    const f = processFaults();
    if (f && this.faults0) {
      this.breakdown.minorFaults = f.minor - this.faults0.minor;
      this.breakdown.majorFaults = f.major - this.faults0.major;
    }
    if (this.opts.onProgress) {
      const seconds = this.seconds;
      this.opts.onProgress({ tensor: name, bytesDone: this.done, bytesTotal: this.total, seconds, bytesPerSecond: seconds > 0 ? this.done / seconds : 0, breakdown: { ...this.breakdown } });
    }
  }

  get seconds(): number {
    return (performance.now() - this.start) / 1000;
  }
}

/**
 * Where an O_DIRECT read of `length` file bytes at `position` goes in a staging buffer whose free
 * space starts at `free`: whole DIRECT_ALIGN blocks (`bytes` from `position`) land at `start`, the
 * wanted bytes begin `skip` bytes in, and `at` is where they must sit for the copy (a multiple of
 * `align`: 16 for texel copies, 4 for buffer copies), at or below start + skip. Pure.
 */
export function directSpan(free: number, position: number, length: number, align: number): { start: number; position: number; skip: number; bytes: number; at: number } {
  const start = alignUp(free, DIRECT_ALIGN);
  const skip = position % DIRECT_ALIGN;
  return { start, position: position - skip, skip, bytes: alignUp(skip + length, DIRECT_ALIGN), at: start + skip - (skip % align) };
}

function processFaults(): { minor: number; major: number } | null {
  const usage = (globalThis as { process?: { resourceUsage?: () => { minorPageFault: number; majorPageFault: number } } }).process?.resourceUsage?.();
  return usage ? { minor: usage.minorPageFault, major: usage.majorPageFault } : null;
}

/** Staging capacity: `stagingBytes`, but never under two of the longest rows (a piece holds at least one row; odd 16-bit buffer rows go in pairs). */
function stagingCapacity(infos: TensorInfo[], opts: UploadOptions): number {
  let longestRow = 0;
  for (const info of infos) {
    const shape = gpuShape(info);
    longestRow = Math.max(longestRow, (shape.reduce((a, b) => a * b, 1) / shape[0]) * BYTES_PER_ELEMENT[gpuDtype(info, opts.widen)]);
  }
  return alignUp(Math.max(opts.stagingBytes ?? DEFAULT_STAGING, 2 * alignUp(longestRow, PITCH)), PITCH);
}

/** Upload one tensor. */
export async function uploadTensor(gpu: Gpu, info: TensorInfo, opts: UploadOptions = {}): Promise<Tensor> {
  return (await uploadTensors(gpu, [info], opts)).get(info.name)!;
}

/**
 * Upload tensors (default: every tensor of the checkpoint), in file order for sequential reads.
 * Quantized tensors of a checkpoint's files are read from its quantized cache when that holds
 * them, else quantized and the cache written (quant-cache.ts); a damaged cache found while reading
 * is removed and the load starts again, quantizing. On any error the tensors uploaded so far are released.
 */
export async function uploadTensors(gpu: Gpu, source: Checkpoint | TensorInfo[], opts: UploadOptions = {}): Promise<Map<string, Tensor>> {
  const infos = (Array.isArray(source) ? [...source] : [...source.tensors.values()]).sort((a, b) => (a.file === b.file ? a.offset - b.offset : a.file < b.file ? -1 : 1));
  for (const info of infos) gpuDtype(info, opts.widen); // fail before allocating anything
  const quantized = infos.flatMap((info) => {
    const dtype = opts.quantize?.(info);
    return dtype ? [{ info, dtype }] : [];
  });
  // a checkpoint's files (on disk; in the browser build, byte sources mounted as files) have a cache
  // (beside them, or in the OPFS: quant-cache-files.ts)
  const ofFiles = !Array.isArray(source) && source.headers.length > 0 && infos.every((t) => t.source instanceof FileSource);
  const openCache = () => (quantized.length && ofFiles && opts.quantCache !== false ? openQuantCache(source as Checkpoint, quantized, opts.quantCache || {}) : Promise.resolve(null));
  const cache = await openCache();
  try {
    return await uploadWith(gpu, infos, opts, cache);
  } catch (e) {
    if (!(e instanceof QuantCacheError)) throw e;
    await cache!.discard();
    return uploadWith(gpu, infos, opts, await openCache());
  }
}

async function uploadWith(gpu: Gpu, infos: TensorInfo[], opts: UploadOptions, cache: QuantCacheSession | null): Promise<Map<string, Tensor>> {
  const total = infos.reduce((s, t) => s + (cache?.cached(t.name)?.info ?? t).byteLength, 0);
  const out = new Map<string, Tensor>();
  let feed: QuantizeFeed | null = null;
  let up: Uploader | undefined;
  try {
    feed = await openFeed(infos, opts, cache);
    const prefault = gpu.adapterClass === 'software' && opts.prefault !== false ? await Prefault.open() : null;
    up = new Uploader(gpu, total, opts, stagingCapacity(infos, opts), cache, feed, prefault);
    if (feed) up.breakdown.quantizeWorkers = feed.workers;
    for (const info of infos) out.set(info.name, await up.upload(info));
    await up.finish(infos.at(-1)?.name ?? '');
  } catch (e) {
    up?.destroy();
    for (const t of out.values()) t.release();
    await cache?.abort();
    throw e;
  } finally {
    await feed?.close(); // the workers end with the load, whatever its outcome
  }
  return out;
}

/** The quantizing feed of the tensors to quantize that the cache does not hold (null when none). */
async function openFeed(infos: TensorInfo[], opts: UploadOptions, cache: QuantCacheSession | null): Promise<QuantizeFeed | null> {
  const tensors = infos.flatMap((info) => {
    const dtype = opts.quantize?.(info);
    // other tensors the rule picks fail in quantizedRows, in load order
    return dtype && !cache?.cached(info.name) && info.dtype === 'BF16' && info.shape.length === 2 ? [{ info, dtype }] : [];
  });
  return tensors.length ? QuantizeFeed.open(tensors, opts.quantizeWorkers ?? (await defaultQuantizeWorkers())) : null;
}

/** One line: where a load's time went. */
export function formatLoadBreakdown(p: UploadProgress): string {
  const b = p.breakdown;
  const other = Math.max(0, p.seconds - b.readSeconds - b.copyWaitSeconds - b.allocSeconds - b.hostSeconds - b.quantizeSeconds);
  const s = (x: number) => `${x.toFixed(1)} s`;
  const pct = (x: number) => `${p.seconds > 0 ? Math.round((100 * x) / p.seconds) : 0}%`;
  const faults = b.minorFaults === undefined ? '' : `; ${b.minorFaults} page faults (${b.majorFaults} major)`;
  const threads = b.quantizeWorkers ? `${b.quantizeWorkers} worker thread${b.quantizeWorkers > 1 ? 's' : ''}` : 'the main thread';
  const quant = b.quantizeWorkers !== undefined ? `waiting for quantized rows ${s(b.quantizeSeconds)} (quantized on ${threads}), ` : '';
  const cache = b.quantCache ? `; quantized cache: ${b.quantCache}` : '';
  return (
    `loaded ${(p.bytesDone / 1e9).toFixed(2)} GB in ${s(p.seconds)} (${(p.bytesPerSecond / 1e9).toFixed(3)} GB/s): ` +
    `reading ${s(b.readSeconds)}, waiting for GPU copies ${s(b.copyWaitSeconds)}, ${quant}allocating ${s(b.allocSeconds)}, host conversion ${s(b.hostSeconds)}, other ${s(other)}; ` +
    `overlapped with them, the GPU copying ${s(b.copySeconds)} (${pct(b.copySeconds)} of the wall time, ${b.copySeconds > 0 ? (p.bytesDone / 1e9 / b.copySeconds).toFixed(3) : '0'} GB/s while copying); ` +
    `${b.copies} copies (${b.partialCopies} partial) through 2 x ${(b.stagingBytes / 2 ** 20).toFixed(0)} MiB staging, ${(b.directBytes / 1e9).toFixed(2)} GB read with O_DIRECT, ${(b.prefaultBytes / 1e9).toFixed(2)} GB pre-faulted${faults}${cache}`
  );
}
