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
// in file order, several reads in flight.
//
// Dtypes as stored: BF16 -> bf16 (packed u32 pairs), F16 -> f16, F32 -> f32, I32 -> i32, U32 -> u32.
// Widening rule: float tensors with at most one dimension larger than 1 (biases, norm weights,
// layer scales, the class embedding) are uploaded as f32, because kernels take 1-D parameters
// as f32. Callers can replace the rule with `widen`.

import type { Gpu } from '../gpu/device.js';
import { BYTES_PER_ELEMENT, bf16BitsToF32, f16BitsToF32, type DType, type Tensor, type TensorPart } from '../gpu/tensor.js';
import type { QuantDType } from './quantize.js';
import { uploadQuantizedTensor } from './quantize-upload.js';
import { SafetensorsError, readExact, type Checkpoint, type TensorInfo } from './safetensors.js';

/** Where a load's time went (wall-clock seconds that add up to `seconds`, and what was moved). */
export interface LoadBreakdown {
  /** waiting for the byte source (disk, page cache, network) */
  readSeconds: number;
  /** waiting for the GPU to finish copying out of a staging buffer before refilling it */
  copyWaitSeconds: number;
  /** allocating weight buffers and textures */
  allocSeconds: number;
  /** widening 16-bit vectors to f32 and padding texel rows on the host */
  hostSeconds: number;
  /** bytes of the larger staging buffer (two are used) */
  stagingBytes: number;
  /** copy commands submitted, and how many covered only part of their target (those make Dawn zero the target first) */
  copies: number;
  partialCopies: number;
  /** page faults of this process during the load (Node only; undefined elsewhere) */
  minorFaults?: number;
  majorFaults?: number;
}

export interface UploadProgress {
  /** tensor being uploaded */
  tensor: string;
  /** file bytes read so far and in total */
  bytesDone: number;
  bytesTotal: number;
  seconds: number;
  bytesPerSecond: number;
  /** where the time went so far */
  breakdown: LoadBreakdown;
}

export interface UploadOptions {
  /** most bytes per staging buffer (default 128 MiB, at least two rows): less memory, but parts that do not fit are copied in pieces; for quantized tensors, bytes per host block (default 16 MiB) */
  stagingBytes?: number;
  /** which tensors to upload as f32; default: float tensors with at most one dim > 1 */
  widen?: (info: TensorInfo) => boolean;
  /** which tensors to quantize, and to what (src/weights/quantize.ts quantizeRule); default none */
  quantize?: (info: TensorInfo) => QuantDType | undefined;
  onProgress?: (p: UploadProgress) => void;
}

const DEFAULT_STAGING = 128 << 20;
/** a first staging buffer's size when the first pieces are small (it grows to fit larger ones) */
const MIN_STAGING = 4 << 20;
/** reads in flight per staging buffer are split at this size (page-cache copies and disk queues both run in parallel) */
const READ_PIECE = 16 << 20;
/** host rows per block for quantized tensors */
const QUANT_CHUNK = 16 << 20;
/** copyBufferToTexture wants 256-byte row pitches; staging regions start on the same boundary */
const PITCH = 256;

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
  /** bytes per row in the GPU dtype, and per row in staging (texel rows padded to 256 bytes) */
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
    const pitch = part.texture ? alignUp(rowBytes, PITCH) : rowBytes;
    let rowsPer = Math.max(1, Math.floor(capacity / pitch));
    // buffer copies move whole 32-bit words: pieces that end inside a part hold an even number of odd-sized 16-bit rows
    if (!part.texture && (rowsPer * rowBytes) % 4 !== 0) rowsPer = Math.max(2, rowsPer - 1);
    for (let row = 0; row < part.rows; row += rowsPer) {
      const rows = Math.min(rowsPer, part.rows - row);
      out.push({ part, row, rows, rowBytes, pitch, stagingBytes: alignUp(rows * pitch, 4), whole: rows === part.rows });
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

class Uploader {
  private readonly start = performance.now();
  private readonly faults0 = processFaults();
  private readonly slots: Slot[] = [];
  private current = 0;
  private done = 0;
  private quantChunk: Uint8Array | null = null;
  readonly breakdown: LoadBreakdown;

  constructor(
    private readonly gpu: Gpu,
    private readonly total: number,
    private readonly opts: UploadOptions,
    readonly capacity: number,
  ) {
    this.breakdown = { readSeconds: 0, copyWaitSeconds: 0, allocSeconds: 0, hostSeconds: 0, stagingBytes: 0, copies: 0, partialCopies: 0 };
  }

  async upload(info: TensorInfo): Promise<Tensor> {
    const q = this.opts.quantize?.(info);
    if (q) {
      // quantized on the host in row blocks, written with queue writes (not through the staging buffers yet)
      this.quantChunk ??= new Uint8Array(this.opts.stagingBytes ?? QUANT_CHUNK);
      return uploadQuantizedTensor(this.gpu, info, q, this.quantChunk, async (n) => {
        this.done += n;
        if (this.done < this.total) this.report(info.name);
      });
    }
    const dtype = gpuDtype(info, this.opts.widen);
    const shape = gpuShape(info);
    let t0 = performance.now();
    const t = await this.gpu.allocWeight(shape, dtype, info.name);
    this.breakdown.allocSeconds += (performance.now() - t0) / 1000;
    try {
      const rowElems = t.rowSize;
      const fileRowBytes = rowElems * (info.byteLength / t.numel);
      for (const piece of planPieces(t.parts, rowElems, dtype, this.capacity)) {
        const slot = await this.slotWith(piece.stagingBytes);
        const at = slot.used;
        const dst = slot.mapped!.subarray(at, at + piece.stagingBytes);
        const fileBytes = piece.rows * fileRowBytes;
        const position = info.offset + (piece.part.rowStart + piece.row) * fileRowBytes;
        if (dtype === 'f32' && info.dtype !== 'F32') {
          // 16-bit floats widened on the host (vectors: small)
          const bits = new Uint16Array(fileBytes / 2);
          await this.read(info, new Uint8Array(bits.buffer), position);
          t0 = performance.now();
          dst.set(new Uint8Array((info.dtype === 'BF16' ? bf16BitsToF32(bits) : f16BitsToF32(bits)).buffer));
          this.breakdown.hostSeconds += (performance.now() - t0) / 1000;
        } else {
          await this.read(info, dst.subarray(0, fileBytes), position);
          dst.fill(0, fileBytes); // a reused buffer: the pad half-word of an odd-length 16-bit part is copied too
          if (piece.pitch !== piece.rowBytes) {
            // spread rows to their padded pitch, last row first (moves never overwrite unread rows)
            t0 = performance.now();
            for (let r = piece.rows - 1; r > 0; r--) dst.copyWithin(r * piece.pitch, r * piece.rowBytes, (r + 1) * piece.rowBytes);
            this.breakdown.hostSeconds += (performance.now() - t0) / 1000;
          }
        }
        slot.copies.push({ piece, offset: at });
        slot.used = alignUp(at + piece.stagingBytes, PITCH);
        this.done += fileBytes;
        if (this.done < this.total) this.report(info.name); // the last report waits for the copies (finish)
      }
    } catch (e) {
      t.release();
      throw e;
    }
    return t;
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
      const size = Math.min(this.capacity, Math.max(bytes, 2 * (slot.buffer?.size ?? 0), MIN_STAGING));
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
        enc.copyBufferToTexture({ buffer, offset, bytesPerRow: piece.pitch }, { texture: part.texture, origin: [0, piece.row] }, [piece.rowBytes / 16, piece.rows]);
      } else {
        enc.copyBufferToBuffer(buffer, offset, part.buffer!, piece.row * piece.rowBytes, piece.stagingBytes);
      }
      this.breakdown.copies++;
      if (!piece.whole) this.breakdown.partialCopies++;
    }
    slot.copies = [];
    this.gpu.device.queue.submit([enc.finish()]);
    slot.ready = buffer.mapAsync(GPUMapMode.WRITE);
  }

  /** Submit what is staged and wait for every copy; the staging buffers are destroyed. A last progress report follows. */
  async finish(lastTensor: string): Promise<void> {
    const slot = this.slots[this.current];
    if (slot?.mapped) this.submit(slot);
    const t0 = performance.now();
    await Promise.all(this.slots.map((s) => s.ready));
    await this.gpu.sync();
    this.breakdown.copyWaitSeconds += (performance.now() - t0) / 1000;
    this.destroy();
    this.report(lastTensor);
  }

  destroy(): void {
    for (const s of this.slots) s.buffer?.destroy();
    this.slots.length = 0;
  }

  private report(name: string): void {
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
 * On any error the tensors uploaded so far are released.
 */
export async function uploadTensors(gpu: Gpu, source: Checkpoint | TensorInfo[], opts: UploadOptions = {}): Promise<Map<string, Tensor>> {
  const infos = (Array.isArray(source) ? [...source] : [...source.tensors.values()]).sort((a, b) => (a.file === b.file ? a.offset - b.offset : a.file < b.file ? -1 : 1));
  for (const info of infos) gpuDtype(info, opts.widen); // fail before allocating anything
  const up = new Uploader(gpu, infos.reduce((s, t) => s + t.byteLength, 0), opts, stagingCapacity(infos, opts));
  const out = new Map<string, Tensor>();
  try {
    for (const info of infos) out.set(info.name, await up.upload(info));
    await up.finish(infos.at(-1)?.name ?? '');
  } catch (e) {
    up.destroy();
    for (const t of out.values()) t.release();
    throw e;
  }
  return out;
}

/** One line: where a load's time went. */
export function formatLoadBreakdown(p: UploadProgress): string {
  const b = p.breakdown;
  const other = Math.max(0, p.seconds - b.readSeconds - b.copyWaitSeconds - b.allocSeconds - b.hostSeconds);
  const s = (x: number) => `${x.toFixed(1)} s`;
  const faults = b.minorFaults === undefined ? '' : `; ${b.minorFaults} page faults (${b.majorFaults} major)`;
  return (
    `loaded ${(p.bytesDone / 1e9).toFixed(2)} GB in ${s(p.seconds)} (${(p.bytesPerSecond / 1e9).toFixed(3)} GB/s): ` +
    `reading ${s(b.readSeconds)}, waiting for GPU copies ${s(b.copyWaitSeconds)}, allocating ${s(b.allocSeconds)}, host conversion ${s(b.hostSeconds)}, other ${s(other)}; ` +
    `${b.copies} copies (${b.partialCopies} partial) through 2 x ${(b.stagingBytes / 2 ** 20).toFixed(0)} MiB staging${faults}`
  );
}
