// The quantized copy of a checkpoint: `loadModel(dir, { dtype: 'q4' })` quantizes the LLM's
// weights while loading (quantize.ts) and writes them, as it goes, to DIR/.pvc-cache/q4-v1.safetensors;
// the next load reads that file instead of quantizing (upload.ts). Node only (files on disk).
//
// The file is plain safetensors: each quantized weight [N, K] is a U8 tensor [N, rowBytes] holding
// quantize.ts's rows as they go to the GPU, under the checkpoint's tensor name. __metadata__:
//   format "pvc-webgpu quantized cache", version, dtype, group (values per scale),
//   quantizer:  sha256 of what quantizeRows makes of a fixed probe block (a change to the
//               quantizer's layout or rounding in quantize.ts invalidates every cache by itself),
//   sources:    JSON list of the checkpoint's files: name, size, mtime, sha256 of the header, and
//               sha256 of 16 blocks of 64 KiB spread over the data. Hashing all 16.6 GB of the
//               full checkpoint would take ~30 s at this disk's ~0.6-1 GB/s; size + mtime + header
//               + samples cost a few ms and catch a re-converted or re-downloaded checkpoint
//               (a rewrite that keeps size, mtime and every sampled block is not detected),
//   tensors:    JSON {name: {dtype, shape [N, K], sha256 of its bytes}}: every cached weight is
//               hashed while it is read back, before the load returns it, so a corrupt file is
//               rebuilt instead of giving wrong weights.
// A cache that does not match (missing, truncated, stale, another quantizer, other tensors) is
// rebuilt by the load that finds it. Written to a temporary file beside it, then renamed: a reader
// never sees a partial file. Where DIR is not writable it goes to $XDG_CACHE_HOME/pvc-webgpu (or
// ~/.cache/pvc-webgpu) in a folder named by a hash of DIR's path; failing that the load goes on
// without one. Node only: the browser build (web/vite.config.ts) swaps in src/browser/quant-cache.ts.

import { createHash, type Hash } from 'node:crypto';
import { mkdir, open, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { QUANT_GROUP, quantRowBytes, quantizeRows, type QuantDType } from './quantize.js';
import { readExact, readHeader, type Checkpoint, type SafetensorsHeader, type TensorInfo } from './safetensors.js';
import { FileSource } from './source.js';

export const QUANT_CACHE_VERSION = 1;
const FORMAT = 'pvc-webgpu quantized cache';
/** folder made beside the checkpoint's files */
export const CACHE_FOLDER = '.pvc-cache';
const SAMPLES = 16;
const SAMPLE_BYTES = 64 << 10;

export interface QuantCacheOptions {
  /** folder for the cache file (default: CACHE_FOLDER beside the checkpoint, else the user cache folder) */
  dir?: string;
}

/** A cached weight's bytes do not hash to what the cache recorded: the file is damaged. */
export class QuantCacheError extends Error {
  override name = 'QuantCacheError';
}

/** Checks the bytes of one cached weight as they are read, in order. */
export interface CacheCheck {
  update(bytes: Uint8Array): void;
  /** throws QuantCacheError when the bytes seen differ from the recorded hash */
  check(): void;
}

/** What a load does with the cache: read weights from it, or write it while quantizing. */
export interface QuantCacheSession {
  /** one line for the load's breakdown: read from / written to PATH, or why not */
  readonly status: string;
  /** the cached weight for a checkpoint tensor, when the cache is being read */
  cached(name: string): { info: TensorInfo; check(): CacheCheck } | undefined;
  /** the next quantized rows of `name`, in load order, when the cache is being written (errors end the writing, never the load) */
  append(name: string, bytes: Uint8Array): Promise<void>;
  /** after the load: finish and publish the file being written */
  commit(): Promise<void>;
  /** after a failed load: remove what was being written */
  abort(): Promise<void>;
  /** remove the cache file (it was found damaged) */
  discard(): Promise<void>;
}

/** Where the cache of a checkpoint in `ckptDir` goes by default, most preferred first. */
export function cacheDirs(ckptDir: string, opts: QuantCacheOptions = {}): string[] {
  if (opts.dir) return [opts.dir];
  const user = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  const key = createHash('sha256').update(resolve(ckptDir)).digest('hex').slice(0, 16);
  return [join(ckptDir, CACHE_FOLDER), join(user, 'pvc-webgpu', `${basename(resolve(ckptDir))}-${key}`)];
}

export function cacheFileName(dtype: QuantDType): string {
  return `${dtype}-v${QUANT_CACHE_VERSION}.safetensors`;
}

/** sha256 of what the quantizer makes of a fixed block of bf16 values (varied magnitudes, ties, zeros, negatives). */
export function quantizerFingerprint(dtype: QuantDType): string {
  const K = 256;
  const bits = new Uint16Array(4 * K);
  let x = 12345;
  for (let i = 0; i < bits.length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    // exponents 100..139 (|v| ~ 1e-8 .. 1e4), both signs; every 7th value zero
    bits[i] = i % 7 === 0 ? 0 : ((x >>> 16) & 0x8000) | (((100 + ((x >>> 8) % 40)) << 7) & 0x7f80) | (x & 0x7f);
  }
  return createHash('sha256').update(quantizeRows(dtype, bits, K)).digest('hex');
}

/** Name, size, mtime, header hash and sampled-data hash of each of the checkpoint's files. */
export async function sourceFingerprint(ckpt: Checkpoint): Promise<string> {
  const files = [];
  for (const h of [...ckpt.headers].sort((a, b) => (a.file < b.file ? -1 : 1))) {
    const st = await stat(h.file, { bigint: true });
    const header = new Uint8Array(h.dataStart);
    const source = await FileSource.open(h.file);
    await readExact(source, header, 0, 'header');
    const samples = createHash('sha256');
    const data = h.fileSize - h.dataStart;
    const block = new Uint8Array(Math.min(SAMPLE_BYTES, data));
    for (let i = 0; i < SAMPLES && block.length; i++) {
      await readExact(source, block, h.dataStart + Math.floor(((data - block.length) * i) / (SAMPLES - 1)), 'data sample');
      samples.update(block);
    }
    files.push({ name: basename(h.file), size: Number(st.size), mtimeMs: Number(st.mtimeNs / 1_000_000n), header: createHash('sha256').update(header).digest('hex'), samples: samples.digest('hex') });
  }
  return JSON.stringify(files);
}

interface Planned {
  name: string;
  dtype: QuantDType;
  shape: [number, number];
  rowBytes: number;
  bytes: number;
}

/**
 * The cache session for quantizing `quantized` (in load order) out of `ckpt`, whose files are on
 * disk: reads a matching cache file, or else starts writing one. Never throws for the cache's
 * sake; `status` says what happened.
 */
export async function openQuantCache(ckpt: Checkpoint, quantized: ReadonlyArray<{ info: TensorInfo; dtype: QuantDType }>, opts: QuantCacheOptions = {}): Promise<QuantCacheSession> {
  const plan: Planned[] = quantized.map(({ info, dtype }) => {
    const [N, K] = info.shape as [number, number];
    const rowBytes = quantRowBytes(dtype, K);
    return { name: info.name, dtype, shape: [N, K], rowBytes, bytes: N * rowBytes };
  });
  const dtypes = [...new Set(plan.map((p) => p.dtype))].sort();
  const metadata: Record<string, string> = {
    format: FORMAT,
    version: String(QUANT_CACHE_VERSION),
    dtype: dtypes.join(','),
    group: String(QUANT_GROUP),
    quantizer: JSON.stringify(Object.fromEntries(dtypes.map((d) => [d, quantizerFingerprint(d)]))),
    sources: await sourceFingerprint(ckpt),
  };
  const file = cacheFileName(dtypes.join('-') as QuantDType);
  const ckptDir = dirname(ckpt.headers[0].file);
  const dirs = cacheDirs(ckptDir, opts);
  let stale = '';
  for (const dir of dirs) {
    const path = join(dir, file);
    const found = await readCache(path, plan, metadata);
    if (found.reader) return found.reader;
    if (found.why && !stale) stale = `${path}: ${found.why}; `;
  }
  const notes: string[] = [];
  for (const dir of dirs) {
    try {
      return await CacheWriter.start(join(dir, file), plan, metadata, stale);
    } catch (e) {
      notes.push(`${dir}: ${(e as Error).message}`);
    }
  }
  return new NoCache(`${stale}not written (${notes.join('; ')})`);
}

/** A valid cache at `path` as a reader; else why not (undefined when there is no file). */
async function readCache(path: string, plan: Planned[], metadata: Record<string, string>): Promise<{ reader?: CacheReader; why?: string }> {
  let header: SafetensorsHeader;
  try {
    header = await readHeader(await FileSource.open(path));
  } catch (e) {
    if (['ENOENT', 'ENOTDIR'].includes((e as NodeJS.ErrnoException).code ?? '')) return {};
    return { why: `unreadable (${(e as Error).message})` };
  }
  for (const [k, v] of Object.entries(metadata)) {
    if (header.metadata[k] !== v) return { why: `its '${k}' differs (another checkpoint, quantizer or cache version)` };
  }
  let digests: Record<string, { sha256?: string }>;
  try {
    digests = JSON.parse(header.metadata.tensors ?? '');
  } catch {
    return { why: 'no tensor hashes' };
  }
  if (header.tensors.size !== plan.length) return { why: `holds ${header.tensors.size} tensors, this load quantizes ${plan.length}` };
  let end = header.dataStart;
  for (const p of plan) {
    const t = header.tensors.get(p.name);
    if (!t || t.dtype !== 'U8' || t.shape.join() !== [p.shape[0], p.rowBytes].join() || !/^[0-9a-f]{64}$/.test(digests[p.name]?.sha256 ?? '')) return { why: `tensor '${p.name}' is missing or has another shape` };
    end = Math.max(end, t.offset + t.byteLength);
  }
  if (end !== header.fileSize) return { why: `${header.fileSize} bytes where its tensors end at ${end}` };
  return { reader: new CacheReader(path, header, digests as Record<string, { sha256: string }>) };
}

class CacheReader implements QuantCacheSession {
  readonly status: string;

  constructor(
    private readonly path: string,
    private readonly header: SafetensorsHeader,
    private readonly digests: Record<string, { sha256: string }>,
  ) {
    this.status = `read from ${path}`;
  }

  cached(name: string): { info: TensorInfo; check(): CacheCheck } | undefined {
    const info = this.header.tensors.get(name);
    if (!info) return undefined;
    const want = this.digests[name].sha256;
    const path = this.path;
    return {
      info,
      check() {
        const hash = createHash('sha256');
        return {
          update: (bytes) => void hash.update(bytes),
          check() {
            if (hash.digest('hex') !== want) throw new QuantCacheError(`${path}: tensor '${name}' does not match its recorded hash (the cache file is damaged)`);
          },
        };
      },
    };
  }

  async append(): Promise<void> {
    throw new Error('the quantized cache is being read, not written');
  }

  async commit(): Promise<void> {}

  async abort(): Promise<void> {}

  async discard(): Promise<void> {
    await unlink(this.path).catch(() => undefined);
  }
}

/** Writes the cache while the load quantizes: header first (hashes filled in at the end), then each tensor's rows in load order. */
class CacheWriter implements QuantCacheSession {
  private index = 0;
  private written = 0;
  private hash: Hash = createHash('sha256');
  private readonly digests: Record<string, { dtype: QuantDType; shape: [number, number]; sha256: string }> = {};
  private failed = '';

  private constructor(
    private readonly path: string,
    private readonly tmp: string,
    private fh: FileHandle | null,
    private readonly plan: Planned[],
    private readonly metadata: Record<string, string>,
    private readonly note: string,
    /** bytes before the first tensor */
    private offset: number,
  ) {}

  static async start(path: string, plan: Planned[], metadata: Record<string, string>, note: string): Promise<CacheWriter> {
    await mkdir(dirname(path), { recursive: true });
    const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
    const fh = await open(tmp, 'wx');
    const w = new CacheWriter(path, tmp, fh, plan, metadata, note, 0);
    try {
      for (const p of plan) w.digests[p.name] = { dtype: p.dtype, shape: p.shape, sha256: '0'.repeat(64) };
      const header = w.header();
      await fh.write(header, 0, header.length, 0);
      w.offset = header.length;
    } catch (e) {
      await w.abort();
      throw e;
    }
    return w;
  }

  get status(): string {
    if (this.failed) return `${this.note}not written (${this.failed})`;
    return `${this.note}${this.index < this.plan.length ? 'writing' : 'written to'} ${this.path}`;
  }

  cached(): undefined {
    return undefined;
  }

  /** 8-byte length, then the JSON header padded to 8 bytes (the same length whatever the hashes). */
  private header(): Uint8Array {
    const json: Record<string, unknown> = { __metadata__: { ...this.metadata, tensors: JSON.stringify(this.digests) } };
    let at = 0;
    for (const p of this.plan) {
      json[p.name] = { dtype: 'U8', shape: [p.shape[0], p.rowBytes], data_offsets: [at, at + p.bytes] };
      at += p.bytes;
    }
    let text = JSON.stringify(json);
    text += ' '.repeat((8 - (text.length % 8)) % 8);
    const bytes = new Uint8Array(8 + text.length);
    new DataView(bytes.buffer).setBigUint64(0, BigInt(text.length), true);
    bytes.set(new TextEncoder().encode(text), 8);
    return bytes;
  }

  async append(name: string, bytes: Uint8Array): Promise<void> {
    if (!this.fh) return;
    const p = this.plan[this.index];
    try {
      if (p?.name !== name || this.written + bytes.length > p.bytes) throw new Error(`rows of '${name}' arrived out of order (expected '${p?.name}')`);
      await this.fh.write(bytes, 0, bytes.length, this.offset);
      this.offset += bytes.length;
      this.written += bytes.length;
      this.hash.update(bytes);
      if (this.written === p.bytes) {
        this.digests[name].sha256 = this.hash.digest('hex');
        this.hash = createHash('sha256');
        this.written = 0;
        this.index++;
      }
    } catch (e) {
      this.failed = (e as Error).message;
      await this.abort();
    }
  }

  async commit(): Promise<void> {
    if (!this.fh) return;
    try {
      if (this.index !== this.plan.length) throw new Error(`only ${this.index} of ${this.plan.length} tensors were written`);
      const header = this.header();
      await this.fh.write(header, 0, header.length, 0);
      await this.fh.datasync();
      await this.fh.close();
      this.fh = null;
      await rename(this.tmp, this.path);
    } catch (e) {
      this.failed = (e as Error).message;
      await this.abort();
    }
  }

  async abort(): Promise<void> {
    const fh = this.fh;
    this.fh = null;
    await fh?.close().catch(() => undefined);
    await unlink(this.tmp).catch(() => undefined);
  }

  async discard(): Promise<void> {
    await this.abort();
  }
}

/** No cache this time (nowhere writable); the load quantizes. */
class NoCache implements QuantCacheSession {
  constructor(readonly status: string) {}
  cached(): undefined {
    return undefined;
  }
  async append(): Promise<void> {}
  async commit(): Promise<void> {}
  async abort(): Promise<void> {}
  async discard(): Promise<void> {}
}
