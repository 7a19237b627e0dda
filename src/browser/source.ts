// Browser byte sources (src/weights/source.ts's interface): a File or Blob (a picked checkpoint
// folder, an OPFS file) read by slices, or an HTTP(S) file read with Range requests. Only the
// bytes of one read are ever in memory.

import type { ByteSource } from '../weights/source.js';

export class BlobSource implements ByteSource {
  readonly size: number;

  constructor(
    readonly name: string,
    private readonly blob: Blob,
  ) {
    this.size = blob.size;
  }

  async read(into: Uint8Array, position: number): Promise<number> {
    const part = new Uint8Array(await this.blob.slice(position, position + into.length).arrayBuffer());
    into.set(part);
    return part.length;
  }
}

export class HttpSource implements ByteSource {
  /** Reads smaller than this fetch this much and keep it: the loader reads tensor by tensor, and one request per small tensor is mostly latency. */
  static readonly BLOCK = 8 << 20;
  /** the last block fetched for small reads (one block: memory stays bounded) */
  private block: { start: number; end: number; bytes: Promise<Uint8Array> } | null = null;

  private constructor(
    readonly name: string,
    readonly size: number,
    private readonly headers: Record<string, string>,
  ) {}

  /** The file's size from a HEAD request; a server that ignores Range requests fails the first read. `headers` go with every request (an access token). */
  static async open(url: string, headers: Record<string, string> = {}): Promise<HttpSource> {
    const res = await fetch(url, { method: 'HEAD', headers });
    if (!res.ok) throw new Error(`${url}: HTTP ${res.status} ${res.statusText}`);
    const size = Number(res.headers.get('content-length') ?? NaN);
    if (!Number.isSafeInteger(size) || size < 0) throw new Error(`${url}: the server sent no Content-Length`);
    return new HttpSource(url, size, headers);
  }

  async read(into: Uint8Array, position: number): Promise<number> {
    const end = Math.min(this.size, position + into.length);
    if (end <= position) return 0;
    if (end - position >= HttpSource.BLOCK) {
      into.set(await this.fetchRange(position, end));
      return end - position;
    }
    if (!this.block || position < this.block.start || end > this.block.end) {
      const blockEnd = Math.min(this.size, position + HttpSource.BLOCK);
      const bytes = this.fetchRange(position, blockEnd);
      this.block = { start: position, end: blockEnd, bytes };
      bytes.catch(() => this.block?.bytes === bytes && (this.block = null)); // a failed fetch is not kept
    }
    const { start, bytes } = this.block;
    into.set((await bytes).subarray(position - start, end - start));
    return end - position;
  }

  private async fetchRange(start: number, end: number): Promise<Uint8Array> {
    const res = await fetch(this.name, { headers: { ...this.headers, Range: `bytes=${start}-${end - 1}` } });
    if (res.status !== 206) throw new Error(`${this.name}: a Range request got HTTP ${res.status} instead of 206 (the server must support Range requests)`);
    const bytes = new Uint8Array(await res.arrayBuffer());
    if (bytes.length !== end - start) throw new Error(`${this.name}: asked for ${end - start} bytes at ${start}, got ${bytes.length}`);
    return bytes;
  }
}

/** All of a source's bytes (small files: configs, tokenizer, an image). */
export async function readAll(source: ByteSource): Promise<Uint8Array> {
  const out = new Uint8Array(source.size);
  const n = await source.read(out, 0);
  if (n !== out.length) throw new Error(`${source.name}: read ${n} of ${out.length} bytes`);
  return out;
}
