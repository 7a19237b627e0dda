// `node:fs/promises` for the browser bundle (Vite alias): the few calls the engine's readers make
// (open + read, readFile, stat), over byte sources mounted at virtual paths. The page mounts a
// checkpoint folder at /model/... and dropped images and videos at /input/..., so the Node code
// paths (checkpoint reader, uploader, config, tokenizer, chat) run unchanged and stream by slices.

import type { ByteSource } from '../weights/source.js';
import { readAll } from './source.js';

const mounts = new Map<string, ByteSource>();

const clean = (path: string): string => '/' + path.split('/').filter((p) => p && p !== '.').join('/');

export function mount(path: string, source: ByteSource): void {
  mounts.set(clean(path), source);
}

/** Forget every path under `prefix`. */
export function unmount(prefix: string): void {
  const p = clean(prefix);
  for (const k of [...mounts.keys()]) if (k === p || k.startsWith(p + '/')) mounts.delete(k);
}

function notFound(path: string): Error {
  return Object.assign(new Error(`ENOENT: no such file or directory, '${path}'`), { code: 'ENOENT' });
}

/** The byte source mounted at `path` (for browser readers that stream by slices themselves). */
export function sourceOf(path: string): ByteSource {
  const s = mounts.get(clean(path));
  if (!s) throw notFound(path);
  return s;
}

const isDir = (path: string): boolean => {
  const p = clean(path) + '/';
  return [...mounts.keys()].some((k) => k.startsWith(p));
};

export interface Stats {
  size: number;
  isDirectory(): boolean;
  isFile(): boolean;
}

export async function stat(path: string): Promise<Stats> {
  const s = mounts.get(clean(path));
  if (!s && !isDir(path)) throw notFound(path);
  return { size: s?.size ?? 0, isDirectory: () => !s, isFile: () => !!s };
}

export async function readFile(path: string, encoding?: string | { encoding?: string }): Promise<Uint8Array | string> {
  const bytes = await readAll(sourceOf(path));
  const enc = typeof encoding === 'string' ? encoding : encoding?.encoding;
  return enc ? new TextDecoder().decode(bytes) : bytes;
}

/** Node's open flags: none here (FileSource, which reads files on disk with them, is never made in a browser). */
export const constants: { O_RDONLY: number; O_DIRECT?: number } = { O_RDONLY: 0 };

export interface FileHandle {
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  stat(): Promise<Stats>;
  close(): Promise<void>;
}

export async function open(path: string): Promise<FileHandle> {
  const s = sourceOf(path);
  return {
    read: async (buffer, offset, length, position) => ({ bytesRead: await s.read(buffer.subarray(offset, offset + length), position) }),
    stat: () => stat(path),
    close: async () => {},
  };
}
