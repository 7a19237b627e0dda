// Where the quantized cache (quant-cache.ts) is kept, and how its bytes are written and hashed: in
// Node, folders on disk. The browser build (web/vite.config.ts) swaps in
// src/browser/quant-cache-files.ts, the same interface over the Origin Private File System.

import { createHash } from 'node:crypto';
import { mkdir, open, rename, stat, unlink } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import type { QuantCacheOptions } from './quant-cache.js';
import { FileSource, type ByteSource } from './source.js';

/** An incremental sha256. */
export interface Sha256 {
  update(bytes: Uint8Array): void;
  /** the digest as 64 hex digits (once) */
  hex(): string;
}

export function sha256(): Sha256 {
  const hash = createHash('sha256');
  return { update: (bytes) => void hash.update(bytes), hex: () => hash.digest('hex') };
}

/** The sha256 digest of `bytes` (which the caller may overwrite once this returns). */
export async function sha256Of(bytes: Uint8Array): Promise<Uint8Array> {
  return createHash('sha256').update(bytes).digest();
}

/** A place for cache files. */
export interface CacheFolder {
  /** where it is, for messages: a cache file is `${name}/${file}` */
  readonly name: string;
  /** the file, or null when there is none */
  open(file: string): Promise<ByteSource | null>;
  /** a new copy of `file`, `bytes` long, that replaces the old one only when committed (throws when it cannot be written) */
  create(file: string, bytes: number): Promise<CacheFileWriter>;
  remove(file: string): Promise<void>;
}

export interface CacheFileWriter {
  write(bytes: Uint8Array, position: number): Promise<void>;
  /** makes the file durable and puts it in place (on failure nothing is left behind) */
  commit(): Promise<void>;
  /** drops what was written */
  abort(): Promise<void>;
}

/** folder made beside the checkpoint's files */
export const CACHE_FOLDER = '.pvc-cache';

/** Where the cache of a checkpoint in `ckptDir` goes by default, most preferred first. */
export function cacheDirs(ckptDir: string, opts: QuantCacheOptions = {}): string[] {
  if (opts.dir) return [opts.dir];
  const user = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  const key = createHash('sha256').update(resolve(ckptDir)).digest('hex').slice(0, 16);
  return [join(ckptDir, CACHE_FOLDER), join(user, 'pvc-webgpu', `${basename(resolve(ckptDir))}-${key}`)];
}

/** The folders to look in and write to, most preferred first (`sources`: the checkpoint's fingerprint, unused on disk). */
export async function cacheFolders(ckptDir: string, _sources: string, opts: QuantCacheOptions): Promise<CacheFolder[]> {
  return cacheDirs(ckptDir, opts).map((dir) => new DiskFolder(dir));
}

/** A checkpoint file's modification time in ms, part of its fingerprint. */
export async function modifiedMs(path: string): Promise<number | undefined> {
  return Number((await stat(path, { bigint: true })).mtimeNs / 1_000_000n);
}

class DiskFolder implements CacheFolder {
  constructor(readonly name: string) {}

  async open(file: string): Promise<ByteSource | null> {
    try {
      return await FileSource.open(join(this.name, file));
    } catch (e) {
      if (['ENOENT', 'ENOTDIR'].includes((e as NodeJS.ErrnoException).code ?? '')) return null;
      throw e;
    }
  }

  /** written to a temporary file beside it, renamed over it when committed */
  async create(file: string): Promise<CacheFileWriter> {
    await mkdir(this.name, { recursive: true });
    const path = join(this.name, file);
    const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
    const fh = await open(tmp, 'wx');
    const drop = async () => {
      await fh.close().catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
    };
    return {
      write: async (bytes, position) => void (await fh.write(bytes, 0, bytes.length, position)),
      commit: async () => {
        try {
          await fh.datasync();
          await fh.close();
          await rename(tmp, path);
        } catch (e) {
          await drop();
          throw e;
        }
      },
      abort: drop,
    };
  }

  async remove(file: string): Promise<void> {
    await unlink(join(this.name, file));
  }
}
