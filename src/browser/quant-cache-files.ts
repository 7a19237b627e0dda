// Browser build of src/weights/quant-cache-files.ts (swapped in by web/vite.config.ts): the quantized
// cache lives in the Origin Private File System, in pvc-cache/KEY/ where KEY is a hash of the
// checkpoint's fingerprint (its files' names, sizes, headers and sampled data), so a checkpoint
// picked as a folder, downloaded from the hub or read from a URL finds its copy again. Files are
// written through a synchronous access handle (the engine runs in a Web Worker) into
// NAME.incomplete and renamed when complete, as hub downloads are (download.ts). One copy of each
// format is kept: writing a q4 copy removes the q4 copies of other checkpoints, which would
// otherwise fill the quota with a few GB each. Before writing, the storage quota must hold the file.

import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import type { CacheFileWriter, CacheFolder, Sha256 } from '../weights/quant-cache-files.js';
import type { ByteSource } from '../weights/source.js';
import { fileIfPresent, formatSize, type WorkerFileHandle } from './download.js';
import { BlobSource } from './source.js';

export type { CacheFileWriter, CacheFolder, Sha256 };

const ROOT = 'pvc-cache';

export function sha256(): Sha256 {
  const hash = nobleSha256.create();
  return { update: (bytes) => void hash.update(bytes), hex: () => bytesToHex(hash.digest()) };
}

/** WebCrypto's digest (native; it copies `bytes` before returning, so the caller may overwrite them). */
export async function sha256Of(bytes: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>));
}

/** Files in the page have no modification time worth keeping (a download's is its arrival): the fingerprint goes without. */
export async function modifiedMs(): Promise<number | undefined> {
  return undefined;
}

/** The checkpoint's folder in the OPFS (none where the browser has no OPFS). */
export async function cacheFolders(_ckptDir: string, sources: string): Promise<CacheFolder[]> {
  if (!navigator.storage?.getDirectory) return [];
  const key = sha256();
  key.update(new TextEncoder().encode(sources));
  return [new OpfsFolder(key.hex().slice(0, 16))];
}

const root = async (): Promise<FileSystemDirectoryHandle> => (await navigator.storage.getDirectory()).getDirectoryHandle(ROOT, { create: true });

/** for catch: a missing entry is fine, anything else is not */
const unlessMissing = (e: unknown): void => {
  if ((e as Error).name !== 'NotFoundError') throw e;
};

class OpfsFolder implements CacheFolder {
  readonly name: string;

  constructor(private readonly key: string) {
    this.name = `OPFS ${ROOT}/${key}`;
  }

  async open(file: string): Promise<ByteSource | null> {
    let dir: FileSystemDirectoryHandle;
    try {
      dir = await (await root()).getDirectoryHandle(this.key);
    } catch (e) {
      unlessMissing(e);
      return null;
    }
    const found = await fileIfPresent(dir, file);
    return found ? new BlobSource(`${this.name}/${file}`, found) : null;
  }

  async create(file: string, bytes: number): Promise<CacheFileWriter> {
    // the copy this one replaces (stale, else it would have been read) and other checkpoints' copies
    const top = await root();
    const folders: [string, FileSystemDirectoryHandle][] = [];
    for await (const [key, entry] of (top as unknown as { entries(): AsyncIterable<[string, FileSystemHandle]> }).entries()) {
      if (entry.kind === 'directory') folders.push([key, entry as FileSystemDirectoryHandle]);
    }
    for (const [key, dir] of folders) {
      await dir.removeEntry(file).catch(unlessMissing);
      if (key !== this.key) await top.removeEntry(key).catch(() => undefined); // only when it is now empty
    }
    const { quota = 0, usage = 0 } = await navigator.storage.estimate();
    if (bytes > quota - usage) throw new Error(`it needs ${formatSize(bytes)} of browser storage and ${formatSize(Math.max(0, quota - usage))} is free`);
    const dir = await top.getDirectoryHandle(this.key, { create: true });
    const part = `${file}.incomplete`;
    const handle = (await dir.getFileHandle(part, { create: true })) as WorkerFileHandle;
    const access = await handle.createSyncAccessHandle();
    access.truncate(0);
    const drop = async () => {
      try {
        access.close();
      } catch {
        // already closed
      }
      await dir.removeEntry(part).catch(() => undefined);
    };
    return {
      write: async (data, at) => {
        if (access.write(data, { at }) !== data.length) throw new Error(`a short write at byte ${at}`);
      },
      commit: async () => {
        try {
          access.flush();
          access.close();
          await handle.move(file);
        } catch (e) {
          await drop();
          throw e;
        }
      },
      abort: drop,
    };
  }

  async remove(file: string): Promise<void> {
    await (await (await root()).getDirectoryHandle(this.key)).removeEntry(file);
  }
}
