// Parity dumps (DESIGN.md "Dump format"): one safetensors file per case, float stages as F32 and
// ids as I64, string metadata (case, prompt, model_type, switches, inputs, ...). The reader loads
// every tensor into memory (dumps are small); the writer lays the file out as
// test/reference/safetensors_io.py does (compact ASCII JSON header padded with spaces to 8 bytes).

import { writeFile } from 'node:fs/promises';
import { readHeader, readTensor, readTensorF32 } from '../weights/safetensors.js';

export type DumpTensor = { shape: number[]; data: Float32Array } | { shape: number[]; data: BigInt64Array };

export interface Dump {
  /** insertion order is file order */
  tensors: Map<string, DumpTensor>;
  metadata: Record<string, string>;
}

/** Read a dump: float tensors widened to Float32Array, integer tensors as BigInt64Array. */
export async function readDump(path: string): Promise<Dump> {
  const header = await readHeader(path);
  const tensors = new Map<string, DumpTensor>();
  for (const info of [...header.tensors.values()].sort((a, b) => a.offset - b.offset)) {
    const { name, dtype, shape } = info;
    if (dtype === 'I64') tensors.set(name, { shape, data: (await readTensor(info)) as BigInt64Array });
    else if (dtype === 'I32') tensors.set(name, { shape, data: BigInt64Array.from(await readTensor(info) as Int32Array, (v) => BigInt(v)) });
    else if (dtype === 'F32' || dtype === 'F16' || dtype === 'BF16' || dtype === 'F64') tensors.set(name, { shape, data: await readTensorF32(info) });
    else throw new Error(`${path}: tensor '${name}' has dtype ${dtype}; a dump holds F32 (or F16/BF16/F64) floats and I64 ids`);
  }
  return { tensors, metadata: header.metadata };
}

/** The bytes of a dump file. */
export function encodeDump(dump: Dump): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(dump.metadata).length) header.__metadata__ = dump.metadata;
  let offset = 0;
  const blobs: Uint8Array[] = [];
  for (const [name, t] of dump.tensors) {
    const numel = t.shape.reduce((a, b) => a * b, 1);
    if (numel !== t.data.length) throw new Error(`dump tensor '${name}': shape [${t.shape.join(', ')}] needs ${numel} elements, data has ${t.data.length}`);
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    header[name] = { dtype: t.data instanceof BigInt64Array ? 'I64' : 'F32', shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    blobs.push(bytes);
    offset += bytes.length;
  }
  // ASCII-only JSON (non-ASCII as \uXXXX, like Python's ensure_ascii), padded so the data is 8-byte aligned
  let json = JSON.stringify(header).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(new TextEncoder().encode(json), 8);
  let at = 8 + json.length;
  for (const b of blobs) {
    out.set(b, at);
    at += b.length;
  }
  return out;
}

export async function writeDump(path: string, dump: Dump): Promise<void> {
  await writeFile(path, encodeDump(dump));
}

/** A float tensor of a dump, or an error naming what is missing or mistyped. */
export function floatTensor(dump: Dump, name: string, source = 'dump'): { shape: number[]; data: Float32Array } {
  const t = dump.tensors.get(name);
  if (!t) throw new Error(`${source} has no '${name}'`);
  if (!(t.data instanceof Float32Array)) throw new Error(`${source}: '${name}' holds integers; expected floats`);
  return t as { shape: number[]; data: Float32Array };
}

/** An id tensor of a dump as numbers. */
export function idTensor(dump: Dump, name: string, source = 'dump'): number[] {
  const t = dump.tensors.get(name);
  if (!t) throw new Error(`${source} has no '${name}'`);
  if (!(t.data instanceof BigInt64Array)) throw new Error(`${source}: '${name}' holds floats; expected I64 ids`);
  return Array.from(t.data, (v) => Number(v));
}
