// Byte sources: where checkpoint bytes come from. The safetensors reader and the GPU uploader read
// only through these interfaces, so the same bounded-memory streaming code (and the same errors)
// serves a file on disk (Node, here), a browser File or Blob, or a URL read with HTTP range
// requests (src/weights/source-browser.ts).
//
// A source only moves bytes: a short read means the source ended. Deciding what a short read means
// (a truncated header, a truncated tensor) is the reader's job, so every source reports truncation
// with the same message (safetensors.ts readExact).

import { open, stat } from 'node:fs/promises';
import { join } from 'node:path';

/** Random-access bytes of one file. */
export interface ByteSource {
  /** shown in errors: a path, a file name, a URL */
  readonly name: string;
  /** total bytes */
  readonly size: number;
  /**
   * Copy the bytes at [position, position + into.length) into `into`, resolving with the count
   * copied: fewer than into.length only where the source ends (0 at or past its end). Callers
   * stream large files through a bounded buffer; a source holds no more than one read's bytes.
   */
  read(into: Uint8Array, position: number): Promise<number>;
}

/** The files of one checkpoint directory, by file name (a folder on disk, files a user picked, a base URL). */
export interface SourceDirectory {
  /** shown in errors */
  readonly name: string;
  /** The directory's file `file` (a plain name, no slashes), or null when the directory has none. */
  open(file: string): Promise<ByteSource | null>;
}

/**
 * A file on disk. Each read opens the file, reads, and closes it: a source needs no closing, and
 * a file truncated or replaced after opening fails the read that finds it short.
 */
export class FileSource implements ByteSource {
  private constructor(
    readonly name: string,
    readonly size: number,
  ) {}

  /** The file at `path`, or an error naming it when it is missing or not a regular file. */
  static async open(path: string): Promise<FileSource> {
    const st = await stat(path);
    if (!st.isFile()) throw new Error(`${path}: not a regular file`);
    return new FileSource(path, st.size);
  }

  async read(into: Uint8Array, position: number): Promise<number> {
    const fh = await open(this.name, 'r');
    try {
      let done = 0;
      while (done < into.length) {
        const { bytesRead } = await fh.read(into, done, into.length - done, position + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return done;
    } finally {
      await fh.close();
    }
  }
}

/** A folder on disk. */
export class FileDirectory implements SourceDirectory {
  constructor(readonly name: string) {}

  async open(file: string): Promise<FileSource | null> {
    try {
      const st = await stat(join(this.name, file));
      if (!st.isFile()) return null;
    } catch {
      return null;
    }
    return FileSource.open(join(this.name, file));
  }
}

/** Bytes already in memory (small files, tests). */
export class MemorySource implements ByteSource {
  constructor(
    readonly name: string,
    private readonly bytes: Uint8Array,
  ) {}

  get size(): number {
    return this.bytes.length;
  }

  async read(into: Uint8Array, position: number): Promise<number> {
    const part = this.bytes.subarray(Math.min(position, this.bytes.length), Math.min(position + into.length, this.bytes.length));
    into.set(part);
    return part.length;
  }
}
