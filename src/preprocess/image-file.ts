// Image files on disk (Node): a header-only probe that refuses anything but a regular file of a
// stated size and checks every dimension the header declares, and a bounded read for decoding.

import { open, stat, type FileHandle } from 'node:fs/promises';
import { imageHeader, NeedMoreBytes, type ImageHeader } from './header.js';

/** Image files above this size are refused before reading (a 100 MP 24-bit BMP is 300 MB). */
export const MAX_IMAGE_FILE_BYTES = 512 * 2 ** 20;

export interface ImageFileOptions {
  /** Largest file accepted, in bytes (default MAX_IMAGE_FILE_BYTES). */
  maxBytes?: number;
}

export interface ImageProbe extends ImageHeader {
  /** File size in bytes. */
  bytes: number;
}

const FIRST_READ = 64 * 1024;

/** Refuses non-regular files (devices such as /dev/zero, pipes, directories) and oversized ones
 *  from their metadata alone, then opens the file. */
async function openImage(path: string, maxBytes: number): Promise<{ fh: FileHandle; size: number }> {
  const st = await stat(path);
  if (!st.isFile()) throw new Error(`${path} is not a regular file (${st.isDirectory() ? 'a directory' : 'a device, pipe or socket'}); images must be regular files`);
  if (st.size > maxBytes) throw new Error(`${path} is ${(st.size / 2 ** 20).toFixed(1)} MiB; image files are limited to ${(maxBytes / 2 ** 20).toFixed(0)} MiB`);
  if (st.size === 0) throw new Error(`${path} is empty`);
  const fh = await open(path, 'r');
  return { fh, size: st.size };
}

async function readAt(fh: FileHandle, offset: number, length: number): Promise<Uint8Array> {
  const buf = new Uint8Array(length);
  let got = 0;
  while (got < length) {
    const { bytesRead } = await fh.read(buf, got, length - got, offset + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return buf.subarray(0, got);
}

/**
 * Format and size of an image file from its header alone (JPEG SOF, PNG IHDR, WebP VP8X / VP8 /
 * VP8L, GIF screen and first frame, BMP info header), with the same checks as decodeImage:
 * regular file, at most maxBytes, every dimension read within MAX_PIXELS. Reads only as far as
 * the header goes (64 KiB, more only when a JPEG's metadata segments push its SOF further).
 */
export async function probeImage(path: string, opts: ImageFileOptions = {}): Promise<ImageProbe> {
  const { fh, size } = await openImage(path, opts.maxBytes ?? MAX_IMAGE_FILE_BYTES);
  try {
    let want = Math.min(FIRST_READ, size);
    for (;;) {
      const head = await readAt(fh, 0, want);
      const complete = head.length >= size;
      try {
        return { ...imageHeader(head, complete), bytes: size };
      } catch (e) {
        if (!(e instanceof NeedMoreBytes)) throw e;
        want = Math.min(size, Math.max(e.bytes, want * 2));
      }
    }
  } finally {
    await fh.close();
  }
}

/** The whole file for decoding, after probeImage's checks (so /dev/zero or a huge file is never read). */
export async function readImageFile(path: string, opts: ImageFileOptions = {}): Promise<Uint8Array> {
  await probeImage(path, opts);
  const { fh, size } = await openImage(path, opts.maxBytes ?? MAX_IMAGE_FILE_BYTES);
  try {
    const bytes = await readAt(fh, 0, size);
    if (bytes.length < size) throw new Error(`${path} shrank while it was read (${bytes.length} of ${size} bytes)`);
    return bytes;
  } finally {
    await fh.close();
  }
}
