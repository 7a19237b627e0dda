// Browser byte sources: a File/Blob (a local checkpoint folder, an OPFS file) read by slices, or an
// HTTP(S) file read by Range requests. Only the bytes asked for are ever in memory.

export interface ByteSource {
  /** total bytes */
  readonly size: number;
  /** bytes [offset, offset + length) (fewer only at the end of the source) */
  read(offset: number, length: number): Promise<Uint8Array>;
}

export class BlobSource implements ByteSource {
  constructor(private readonly blob: Blob) {}

  get size(): number {
    return this.blob.size;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    return new Uint8Array(await this.blob.slice(offset, offset + length).arrayBuffer());
  }
}

export class HttpSource implements ByteSource {
  private constructor(
    readonly url: string,
    readonly size: number,
  ) {}

  /** The file's size from a HEAD request (a server without Range support is refused on first read). */
  static async open(url: string, init: RequestInit = {}): Promise<HttpSource> {
    const res = await fetch(url, { ...init, method: 'HEAD' });
    if (!res.ok) throw new Error(`${url}: HTTP ${res.status} ${res.statusText}`);
    const size = Number(res.headers.get('content-length'));
    if (!Number.isSafeInteger(size) || size < 0) throw new Error(`${url}: the server sent no Content-Length`);
    return new HttpSource(url, size);
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const end = Math.min(this.size, offset + length);
    if (end <= offset) return new Uint8Array(0);
    const res = await fetch(this.url, { headers: { Range: `bytes=${offset}-${end - 1}` } });
    if (res.status !== 206) throw new Error(`${this.url}: a Range request got HTTP ${res.status} instead of 206 (the server must support Range requests)`);
    const bytes = new Uint8Array(await res.arrayBuffer());
    if (bytes.length !== end - offset) throw new Error(`${this.url}: asked for ${end - offset} bytes at ${offset}, got ${bytes.length}`);
    return bytes;
  }
}
