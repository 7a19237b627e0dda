// Safetensors reader: single files and sharded checkpoints (model.safetensors.index.json).
//
// File layout: u64 little-endian header length N, N bytes of JSON header, then the data section.
// The header maps tensor names to {dtype, shape, data_offsets: [begin, end]} (offsets relative to
// the data section) plus an optional "__metadata__" object of strings. Only headers are read when
// a file is opened; tensor data is read on demand by its offsets (see upload.ts for the streaming
// GPU path), so a multi-GB shard is never held in memory. Every byte comes through a ByteSource
// (source.ts): files on disk here, browser files and HTTP ranges elsewhere, with the same errors.

import { stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { bf16BitsToF32, f16BitsToF32 } from '../gpu/tensor.js';
import { FileDirectory, FileSource, type ByteSource, type SourceDirectory } from './source.js';

export type SafetensorsDType =
  | 'BOOL' | 'U8' | 'I8' | 'F8_E4M3' | 'F8_E5M2' | 'I16' | 'U16' | 'F16' | 'BF16'
  | 'I32' | 'U32' | 'F32' | 'F64' | 'I64' | 'U64';

export const DTYPE_BYTES: Readonly<Record<SafetensorsDType, number>> = {
  BOOL: 1, U8: 1, I8: 1, F8_E4M3: 1, F8_E5M2: 1, I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4, F64: 8, I64: 8, U64: 8,
};

/** The reference implementation refuses headers above 100 MB; so do we (a bogus length must not allocate GBs). */
export const MAX_HEADER_BYTES = 100_000_000;

export class SafetensorsError extends Error {
  override name = 'SafetensorsError';
}

export interface TensorInfo {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** name of the file holding the data (its path, for files on disk) */
  file: string;
  /** where the data is read from */
  source: ByteSource;
  /** absolute byte offset of the data in the file */
  offset: number;
  byteLength: number;
}

export interface SafetensorsHeader {
  file: string;
  fileSize: number;
  /** absolute offset of the data section */
  dataStart: number;
  metadata: Record<string, string>;
  tensors: Map<string, TensorInfo>;
}

export type TensorData =
  | Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array
  | Float32Array | Float64Array | BigInt64Array | BigUint64Array;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isIndex = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/**
 * Validate and decode a header. `prefix` holds the source's first bytes (at least 8 + header
 * length, or the whole file if shorter). Reads nothing itself, so it can be fuzzed.
 */
export function parseHeader(prefix: Uint8Array, source: ByteSource): SafetensorsHeader {
  const { name: file, size: fileSize } = source;
  const fail = (msg: string): never => {
    throw new SafetensorsError(`${file}: ${msg}`);
  };
  if (fileSize < 8 || prefix.length < 8) fail(`not a safetensors file: ${fileSize} bytes is shorter than the 8-byte header length`);
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(fileSize - 8)) fail(`header length ${n} runs past the end of the file (${fileSize} bytes; truncated or not safetensors)`);
  if (n > BigInt(MAX_HEADER_BYTES)) fail(`header length ${n} is over the ${MAX_HEADER_BYTES}-byte limit`);
  const headerLength = Number(n);
  if (prefix.length < 8 + headerLength) fail(`only ${prefix.length} of the ${8 + headerLength} header bytes were read`);
  let text = '';
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(prefix.subarray(8, 8 + headerLength));
  } catch {
    fail('header is not valid UTF-8');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    fail(`invalid JSON header: ${(e as Error).message}`);
  }
  if (!isObject(json)) fail('the JSON header is not an object');
  const dataStart = 8 + headerLength;
  const dataSize = fileSize - dataStart;
  const metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorInfo>();
  for (const [name, entry] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (!isObject(entry)) fail('__metadata__ is not an object');
      for (const [k, v] of Object.entries(entry as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`__metadata__ value for '${k}' is not a string`);
        metadata[k] = v as string;
      }
      continue;
    }
    const bad = (msg: string): never => fail(`tensor '${name}': ${msg}`);
    if (!isObject(entry)) bad('header entry is not an object');
    const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
    if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) bad(`unknown dtype ${JSON.stringify(dtype)} (known: ${Object.keys(DTYPE_BYTES).join(', ')})`);
    if (!Array.isArray(shape) || !shape.every(isIndex)) bad(`shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isIndex) || offsets[0] > offsets[1]) {
      bad(`data_offsets ${JSON.stringify(offsets)} is not [begin, end] with 0 <= begin <= end`);
    }
    const [begin, end] = offsets as number[];
    if (end > dataSize) bad(`data_offsets [${begin}, ${end}] lie outside the data section (${dataSize} bytes; the file may be truncated)`);
    const dims = shape as number[];
    const bytes = dims.reduce((a, d) => a * d, DTYPE_BYTES[dtype as SafetensorsDType]);
    if (!Number.isSafeInteger(bytes) || bytes !== end - begin) {
      bad(`data_offsets [${begin}, ${end}] hold ${end - begin} bytes but shape [${dims.join(', ')}] x ${dtype} needs ${bytes}`);
    }
    tensors.set(name, { name, dtype: dtype as SafetensorsDType, shape: [...dims], file, source, offset: dataStart + begin, byteLength: end - begin });
  }
  const sorted = [...tensors.values()].filter((t) => t.byteLength > 0).sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const [a, b] = [sorted[i - 1], sorted[i]];
    if (b.offset < a.offset + a.byteLength) {
      fail(`tensors '${a.name}' [${a.offset - dataStart}, ${a.offset - dataStart + a.byteLength}] and '${b.name}' [${b.offset - dataStart}, ${b.offset - dataStart + b.byteLength}] overlap`);
    }
  }
  return { file, fileSize, dataStart, metadata, tensors };
}

/** Fill `into` from `position` of `source` (a source that ends early is a truncated file: an error naming `what`). */
export async function readExact(source: ByteSource, into: Uint8Array, position: number, what: string): Promise<void> {
  const n = await source.read(into, position);
  if (n < into.length) throw new SafetensorsError(`${source.name}: ${what}: unexpected end of file at byte ${position + n} (the file is truncated)`);
}

/** Read and validate the header of one .safetensors file (a path on disk, or any byte source). */
export async function readHeader(file: string | ByteSource): Promise<SafetensorsHeader> {
  const source = typeof file === 'string' ? await openFile(file) : file;
  const size = source.size;
  const head = new Uint8Array(Math.min(size, 8));
  await readExact(source, head, 0, 'header length');
  if (size >= 8) {
    const n = new DataView(head.buffer).getBigUint64(0, true);
    if (n <= BigInt(Math.min(size - 8, MAX_HEADER_BYTES))) {
      const prefix = new Uint8Array(8 + Number(n));
      await readExact(source, prefix, 0, 'header');
      return parseHeader(prefix, source);
    }
  }
  return parseHeader(head, source); // throws the descriptive error
}

async function openFile(path: string): Promise<FileSource> {
  try {
    return await FileSource.open(path);
  } catch (e) {
    throw new SafetensorsError(`${path}: cannot open: ${(e as Error).message}`);
  }
}

/** A whole small file (an index) as text; `limit` guards against reading a huge file by mistake. */
async function readText(source: ByteSource, limit: number): Promise<string> {
  if (source.size > limit) throw new SafetensorsError(`${source.name}: ${source.size} bytes is over the ${limit}-byte limit for this file`);
  const bytes = new Uint8Array(source.size);
  await readExact(source, bytes, 0, 'contents');
  return new TextDecoder().decode(bytes);
}

function typedView(dtype: SafetensorsDType, buf: ArrayBuffer): TensorData {
  switch (dtype) {
    case 'BOOL': case 'U8': case 'F8_E4M3': case 'F8_E5M2': return new Uint8Array(buf);
    case 'I8': return new Int8Array(buf);
    case 'I16': return new Int16Array(buf);
    case 'U16': case 'F16': case 'BF16': return new Uint16Array(buf); // 16-bit floats as bit patterns
    case 'I32': return new Int32Array(buf);
    case 'U32': return new Uint32Array(buf);
    case 'F32': return new Float32Array(buf);
    case 'F64': return new Float64Array(buf);
    case 'I64': return new BigInt64Array(buf);
    case 'U64': return new BigUint64Array(buf);
  }
}

/** Raw bytes of one tensor (for small tensors and tests; big ones go through upload.ts). */
export async function readTensorBytes(info: TensorInfo): Promise<Uint8Array> {
  const out = new Uint8Array(info.byteLength);
  await readExact(info.source, out, info.offset, `tensor '${info.name}'`);
  return out;
}

/**
 * One tensor as a typed array matching its dtype: BF16/F16 come back as Uint16Array bit patterns,
 * I64/U64 as BigInt64Array/BigUint64Array, BOOL/U8/F8 as Uint8Array.
 */
export async function readTensor(info: TensorInfo): Promise<TensorData> {
  return typedView(info.dtype, (await readTensorBytes(info)).buffer as ArrayBuffer);
}

/** One tensor converted to float32 (floats widened or narrowed, integers converted). */
export async function readTensorF32(info: TensorInfo): Promise<Float32Array> {
  const data = await readTensor(info);
  if (info.dtype === 'BF16') return bf16BitsToF32(data as Uint16Array);
  if (info.dtype === 'F16') return f16BitsToF32(data as Uint16Array);
  if (info.dtype === 'F8_E4M3' || info.dtype === 'F8_E5M2') throw new SafetensorsError(`${info.file}: tensor '${info.name}': ${info.dtype} to float32 is not supported`);
  if (data instanceof BigInt64Array || data instanceof BigUint64Array) return Float32Array.from(data, (v) => Number(v));
  return Float32Array.from(data);
}

export const INDEX_FILE = 'model.safetensors.index.json';

/** A checkpoint: one .safetensors file, or the shards named by a model.safetensors.index.json. */
export class Checkpoint {
  private constructor(
    /** directory, index file or single file the checkpoint was opened from */
    readonly source: string,
    readonly headers: readonly SafetensorsHeader[],
    readonly tensors: ReadonlyMap<string, TensorInfo>,
  ) {}

  /**
   * Open a directory (its model.safetensors.index.json, else its model.safetensors), an index
   * file, or a single .safetensors file on disk. Reads headers only.
   */
  static async open(path: string): Promise<Checkpoint> {
    let st;
    try {
      st = await stat(path);
    } catch {
      throw new SafetensorsError(`${path}: no such checkpoint file or directory`);
    }
    if (st.isDirectory()) return Checkpoint.openDirectory(new FileDirectory(path));
    if (path.endsWith('.json')) return Checkpoint.openIndex(new FileDirectory(dirname(path)), basename(path));
    return Checkpoint.openSources(path, [await openFile(path)]);
  }

  /** A checkpoint directory from any source of files: its model.safetensors.index.json, else its model.safetensors. */
  static async openDirectory(dir: SourceDirectory): Promise<Checkpoint> {
    if (await dir.open(INDEX_FILE)) return Checkpoint.openIndex(dir, INDEX_FILE);
    const single = await dir.open('model.safetensors');
    if (single) return Checkpoint.openSources(dir.name, [single]);
    throw new SafetensorsError(`${dir.name}: no ${INDEX_FILE} or model.safetensors in this directory`);
  }

  private static async openIndex(dir: SourceDirectory, indexFile: string): Promise<Checkpoint> {
    const indexSource = await dir.open(indexFile);
    const indexPath = indexSource?.name ?? `${dir.name}/${indexFile}`;
    let json: unknown;
    try {
      if (!indexSource) throw new Error('no such file');
      json = JSON.parse(await readText(indexSource, MAX_HEADER_BYTES));
    } catch (e) {
      throw new SafetensorsError(`${indexPath}: cannot read the index: ${(e as Error).message}`);
    }
    const map = isObject(json) ? json.weight_map : undefined;
    if (!isObject(map)) throw new SafetensorsError(`${indexPath}: no "weight_map" object`);
    const byShard = new Map<string, string[]>();
    for (const [name, shard] of Object.entries(map)) {
      if (typeof shard !== 'string' || shard !== basename(shard) || !shard) {
        throw new SafetensorsError(`${indexPath}: tensor '${name}' maps to ${JSON.stringify(shard)}, not a file name in the checkpoint directory`);
      }
      byShard.set(shard, [...(byShard.get(shard) ?? []), name]);
    }
    const shards = new Map<string, ByteSource>();
    for (const [shard, names] of byShard) {
      const source = await dir.open(shard);
      if (!source) throw new SafetensorsError(`${indexPath}: shard '${shard}' (holding '${names[0]}' and ${names.length - 1} other tensors) is missing from ${dir.name}`);
      shards.set(shard, source);
    }
    const ckpt = await Checkpoint.openSources(indexPath, [...shards.values()]);
    for (const [shard, names] of byShard) {
      for (const name of names) {
        const t = ckpt.tensors.get(name);
        if (t?.source !== shards.get(shard)) throw new SafetensorsError(`${indexPath}: tensor '${name}' is not in its shard '${shard}'${t ? ` (found in '${basename(t.file)}')` : ''}`);
      }
    }
    const unindexed = [...ckpt.tensors.keys()].filter((n) => !Object.hasOwn(map, n));
    if (unindexed.length) throw new SafetensorsError(`${indexPath}: shards hold tensors the weight_map does not list: ${unindexed.slice(0, 10).join(', ')}${unindexed.length > 10 ? ', ...' : ''}`);
    return ckpt;
  }

  private static async openSources(label: string, sources: ByteSource[]): Promise<Checkpoint> {
    const headers = await Promise.all(sources.map((s) => readHeader(s)));
    const tensors = new Map<string, TensorInfo>();
    for (const h of headers) {
      for (const [name, t] of h.tensors) {
        const prev = tensors.get(name);
        if (prev) throw new SafetensorsError(`${label}: tensor '${name}' is in both ${prev.file} and ${t.file}`);
        tensors.set(name, t);
      }
    }
    return new Checkpoint(label, headers, tensors);
  }

  names(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  get(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new SafetensorsError(`${this.source}: no tensor named '${name}'`);
    return t;
  }

  /** Sum of all tensors' data bytes. */
  get totalBytes(): number {
    let n = 0;
    for (const t of this.tensors.values()) n += t.byteLength;
    return n;
  }

  read(name: string): Promise<TensorData> {
    return readTensor(this.get(name));
  }

  readF32(name: string): Promise<Float32Array> {
    return readTensorF32(this.get(name));
  }
}
