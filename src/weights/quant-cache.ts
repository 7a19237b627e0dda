// The quantized copy of a checkpoint: `loadModel(dir, { dtype: 'q4' })` quantizes the LLM's
// weights while loading (quantize.ts) and writes them, as it goes, to DIR/.pvc-cache/q4-v2.safetensors;
// the next load reads that file instead of quantizing (upload.ts). In a browser the file lives in the
// Origin Private File System (see below).
//
// The file is plain safetensors: each quantized weight [N, K] is a U8 tensor [N, rowBytes] holding
// quantize.ts's rows as they go to the GPU, under the checkpoint's tensor name. __metadata__:
//   format "pvc-webgpu quantized cache", version, dtype, group (values per scale),
//   quantizer:  sha256 of what quantizeRows makes of a fixed probe block (a change to the
//               quantizer's layout or rounding in quantize.ts invalidates every cache by itself),
//   sources:    JSON list of the checkpoint's files: name, size, mtime (Node), sha256 of the header, and
//               sha256 of 16 blocks of 64 KiB spread over the data. Hashing all 16.6 GB of the
//               full checkpoint would take ~30 s at this disk's ~0.6-1 GB/s; size + mtime + header
//               + samples cost a few ms and catch a re-converted or re-downloaded checkpoint
//               (a rewrite that keeps size, mtime and every sampled block is not detected),
//   tensors:    JSON {name: {dtype, shape [N, K], sha256}}: sha256 is the digest of its bytes in
//               blocks of HASH_BLOCK (the sha256 of the concatenated sha256 of each block, the last
//               one shorter), so a browser can hash with WebCrypto's one-shot digest per block, off
//               the loader's thread (a streaming sha256 in JavaScript runs on it at ~170 MB/s here:
//               ~26 s for the full q4 copy; bench/RESULTS.md).
//               Every cached weight is hashed while it is read back, before the load returns it,
//               so a corrupt file is rebuilt instead of giving wrong weights.
// A cache that does not match (missing, truncated, stale, another quantizer, other tensors) is
// rebuilt by the load that finds it. Written to a temporary file beside it, then renamed: a reader
// never sees a partial file. Where the cache lives and how its bytes are written and hashed is
// quant-cache-files.ts: in Node, DIR/.pvc-cache or else $XDG_CACHE_HOME/pvc-webgpu (or
// ~/.cache/pvc-webgpu) in a folder named by a hash of DIR's path, failing both the load goes on
// without one; in the browser build (web/vite.config.ts swaps in src/browser/quant-cache-files.ts),
// the Origin Private File System.

import { dirname } from 'node:path';
import { QUANT_GROUP, quantRowBytes, quantizeRows, type QuantDType } from './quantize.js';
import { cacheFolders, modifiedMs, sha256, sha256Of, type CacheFileWriter, type CacheFolder } from './quant-cache-files.js';
import { readExact, readHeader, type Checkpoint, type SafetensorsHeader, type TensorInfo } from './safetensors.js';
import { FileSource } from './source.js';

export const QUANT_CACHE_VERSION = 2;
/** bytes per block of a cached tensor's digest */
export const HASH_BLOCK = 1 << 20;
const FORMAT = 'pvc-webgpu quantized cache';
const SAMPLES = 16;
const SAMPLE_BYTES = 64 << 10;

export interface QuantCacheOptions {
  /** folder for the cache file (Node; default: CACHE_FOLDER beside the checkpoint, else the user cache folder; the browser build keeps it in the OPFS) */
  dir?: string;
}

/** A cached weight's bytes do not hash to what the cache recorded: the file is damaged. */
export class QuantCacheError extends Error {
  override name = 'QuantCacheError';
}

/** Checks the bytes of one cached weight as they are read, in order. */
export interface CacheCheck {
  /** resolves once `bytes` may be overwritten and few enough blocks wait to be hashed */
  update(bytes: Uint8Array): Promise<void>;
  /** rejects with QuantCacheError when the bytes seen differ from the recorded hash */
  check(): Promise<void>;
}

/** blocks waiting for their digest, most (they hold copies of their bytes: memory stays bounded when hashing is slower than reading) */
const PENDING_BLOCKS = 16;

/** A tensor's digest (see `tensors` above), fed its bytes in order, in pieces of any size. */
class BlockDigest {
  private readonly blocks: Promise<Uint8Array>[] = [];
  /** blocks[0 .. done) have been awaited */
  private done = 0;
  /** the start of a block that the next bytes continue */
  private readonly partial = new Uint8Array(HASH_BLOCK);
  private filled = 0;

  async update(bytes: Uint8Array): Promise<void> {
    this.add(bytes);
    while (this.blocks.length - this.done > PENDING_BLOCKS) await this.blocks[this.done++];
  }

  private add(bytes: Uint8Array): void {
    let at = 0;
    if (this.filled) {
      at = Math.min(HASH_BLOCK - this.filled, bytes.length);
      this.partial.set(bytes.subarray(0, at), this.filled);
      this.filled += at;
      if (this.filled < HASH_BLOCK) return;
      this.blocks.push(sha256Of(this.partial));
      this.filled = 0;
    }
    for (; bytes.length - at >= HASH_BLOCK; at += HASH_BLOCK) this.blocks.push(sha256Of(bytes.subarray(at, at + HASH_BLOCK)));
    this.partial.set(bytes.subarray(at));
    this.filled = bytes.length - at;
  }

  async hex(): Promise<string> {
    if (this.filled) this.blocks.push(sha256Of(this.partial.subarray(0, this.filled)));
    const all = sha256();
    for (const block of this.blocks) all.update(await block);
    return all.hex();
  }
}

/** What a load did with the cache: read it, is writing it while it quantizes, wrote it, or quantizes without one. */
export type QuantCacheUse = 'read' | 'writing' | 'written' | 'none';

/** What a load does with the cache: read weights from it, or write it while quantizing. */
export interface QuantCacheSession {
  readonly use: QuantCacheUse;
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
  const hash = sha256();
  hash.update(quantizeRows(dtype, bits, K));
  return hash.hex();
}

/** Name, size, mtime (where the files have one), header hash and sampled-data hash of each of the checkpoint's files. */
export async function sourceFingerprint(ckpt: Checkpoint): Promise<string> {
  const files = [];
  for (const h of [...ckpt.headers].sort((a, b) => (a.file < b.file ? -1 : 1))) {
    const header = new Uint8Array(h.dataStart);
    const source = await FileSource.open(h.file);
    await readExact(source, header, 0, 'header');
    const headerHash = sha256();
    headerHash.update(header);
    const samples = sha256();
    const data = h.fileSize - h.dataStart;
    const block = new Uint8Array(Math.min(SAMPLE_BYTES, data));
    for (let i = 0; i < SAMPLES && block.length; i++) {
      await readExact(source, block, h.dataStart + Math.floor(((data - block.length) * i) / (SAMPLES - 1)), 'data sample');
      samples.update(block);
    }
    files.push({ name: h.file.slice(h.file.lastIndexOf('/') + 1), size: source.size, mtimeMs: await modifiedMs(h.file), header: headerHash.hex(), samples: samples.hex() });
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
 * disk (in the browser build, mounted byte sources): reads a matching cache file, or else starts
 * writing one. Never throws for the cache's sake; `use` and `status` say what happened.
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
  const folders = await cacheFolders(dirname(ckpt.headers[0].file), metadata.sources, opts);
  let stale = '';
  for (const folder of folders) {
    const found = await readCache(folder, file, plan, metadata);
    if (found.reader) return found.reader;
    if (found.why && !stale) stale = `${folder.name}/${file}: ${found.why}; `;
  }
  const bytes = cacheHeader(plan, metadata, startDigests(plan)).length + plan.reduce((n, p) => n + p.bytes, 0);
  const notes: string[] = [];
  for (const folder of folders) {
    try {
      // earlier versions' files of this format can never be read again: they go (a few GB each)
      for (let v = 1; v < QUANT_CACHE_VERSION; v++) await folder.remove(file.replace(`-v${QUANT_CACHE_VERSION}.`, `-v${v}.`)).catch(() => undefined);
      return await CacheWriter.start(folder, file, bytes, plan, metadata, stale);
    } catch (e) {
      notes.push(`${folder.name}: ${(e as Error).message}`);
    }
  }
  return new NoCache(`${stale}not written (${notes.join('; ') || 'no place to keep it'})`);
}

/** A valid cache `file` in `folder` as a reader; else why not (undefined when there is no file). */
async function readCache(folder: CacheFolder, file: string, plan: Planned[], metadata: Record<string, string>): Promise<{ reader?: CacheReader; why?: string }> {
  let header: SafetensorsHeader;
  try {
    const source = await folder.open(file);
    if (!source) return {};
    header = await readHeader(source);
  } catch (e) {
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
  return { reader: new CacheReader(folder, file, header, digests as Record<string, { sha256: string }>) };
}

class CacheReader implements QuantCacheSession {
  readonly status: string;

  constructor(
    private readonly folder: CacheFolder,
    private readonly file: string,
    private readonly header: SafetensorsHeader,
    private readonly digests: Record<string, { sha256: string }>,
  ) {
    this.status = `read from ${folder.name}/${file}`;
  }

  readonly use = 'read';

  cached(name: string): { info: TensorInfo; check(): CacheCheck } | undefined {
    const info = this.header.tensors.get(name);
    if (!info) return undefined;
    const want = this.digests[name].sha256;
    const path = `${this.folder.name}/${this.file}`;
    return {
      info,
      check() {
        const hash = new BlockDigest();
        return {
          update: (bytes) => hash.update(bytes),
          async check() {
            if ((await hash.hex()) !== want) throw new QuantCacheError(`${path}: tensor '${name}' does not match its recorded hash (the cache file is damaged)`);
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
    await this.folder.remove(this.file).catch(() => undefined);
  }
}

type Digests = Record<string, { dtype: QuantDType; shape: [number, number]; sha256: string }>;

/** Every planned tensor with a placeholder hash (the header's length does not depend on the hashes). */
function startDigests(plan: Planned[]): Digests {
  return Object.fromEntries(plan.map((p) => [p.name, { dtype: p.dtype, shape: p.shape, sha256: '0'.repeat(64) }]));
}

/** The cache file's header: 8-byte length, then the JSON header padded to 8 bytes (the same length whatever the hashes). */
function cacheHeader(plan: Planned[], metadata: Record<string, string>, digests: Digests): Uint8Array {
  const json: Record<string, unknown> = { __metadata__: { ...metadata, tensors: JSON.stringify(digests) } };
  let at = 0;
  for (const p of plan) {
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

/** Writes the cache while the load quantizes: header first (hashes filled in at the end), then each tensor's rows in load order. */
class CacheWriter implements QuantCacheSession {
  private index = 0;
  private written = 0;
  private hash = new BlockDigest();
  private readonly digests: Digests;
  private failed = '';
  /** bytes before the next rows */
  private offset = 0;

  private constructor(
    private out: CacheFileWriter | null,
    private readonly plan: Planned[],
    private readonly metadata: Record<string, string>,
    private readonly note: string,
    private readonly path: string,
  ) {
    this.digests = startDigests(plan);
  }

  static async start(folder: CacheFolder, file: string, bytes: number, plan: Planned[], metadata: Record<string, string>, note: string): Promise<CacheWriter> {
    const w = new CacheWriter(await folder.create(file, bytes), plan, metadata, note, `${folder.name}/${file}`);
    try {
      const header = cacheHeader(plan, metadata, w.digests);
      await w.out!.write(header, 0);
      w.offset = header.length;
    } catch (e) {
      await w.abort();
      throw e;
    }
    return w;
  }

  get use(): QuantCacheUse {
    return this.failed ? 'none' : this.index < this.plan.length ? 'writing' : 'written';
  }

  get status(): string {
    if (this.failed) return `${this.note}not written (${this.failed})`;
    return `${this.note}${this.index < this.plan.length ? 'writing' : 'written to'} ${this.path}`;
  }

  cached(): undefined {
    return undefined;
  }

  async append(name: string, bytes: Uint8Array): Promise<void> {
    if (!this.out) return;
    const p = this.plan[this.index];
    try {
      if (p?.name !== name || this.written + bytes.length > p.bytes) throw new Error(`rows of '${name}' arrived out of order (expected '${p?.name}')`);
      await this.out.write(bytes, this.offset);
      this.offset += bytes.length;
      this.written += bytes.length;
      await this.hash.update(bytes);
      if (this.written === p.bytes) {
        this.digests[name].sha256 = await this.hash.hex();
        this.hash = new BlockDigest();
        this.written = 0;
        this.index++;
      }
    } catch (e) {
      this.failed = (e as Error).message;
      await this.abort();
    }
  }

  async commit(): Promise<void> {
    if (!this.out) return;
    try {
      if (this.index !== this.plan.length) throw new Error(`only ${this.index} of ${this.plan.length} tensors were written`);
      await this.out.write(cacheHeader(this.plan, this.metadata, this.digests), 0);
      const out = this.out;
      this.out = null;
      await out.commit();
    } catch (e) {
      this.failed = (e as Error).message;
      await this.abort();
    }
  }

  async abort(): Promise<void> {
    const out = this.out;
    this.out = null;
    await out?.abort().catch(() => undefined);
  }

  async discard(): Promise<void> {
    await this.abort();
  }
}

/** No cache this time (nowhere writable); the load quantizes. */
class NoCache implements QuantCacheSession {
  readonly use = 'none';
  constructor(readonly status: string) {}
  cached(): undefined {
    return undefined;
  }
  async append(): Promise<void> {}
  async commit(): Promise<void> {}
  async abort(): Promise<void> {}
  async discard(): Promise<void> {}
}
