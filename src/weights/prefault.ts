// Pre-faulting a software adapter's fresh weight memory (Node on Linux only).
//
// Lavapipe keeps its device memory in one memfd and maps each allocation into this process as soon
// as it is made (a new `/memfd:allocation fd` range in /proc/self/maps). The weights' pages are then
// first touched by lavapipe's copy thread, one page fault per 4 KiB, and in this VM each such fault
// traps to the hypervisor: that is the loader's floor (bench/RESULTS.md, "Why lavapipe loads at
// ~0.3 GB/s"). Reading a fresh range once through /proc/self/mem makes the kernel fault the pages
// in itself (get_user_pages: no trap per page, ~2 GB/s here), so the copy thread later only fills
// already-mapped pages (bench/first-touch.c `procmem`: the same 1 GiB takes 2.8 s instead of 4.4 s).
// The read is harmless: the range belongs to a weight nothing has written yet, and nothing is written.
// Where /proc/self/mem cannot be read, or the adapter maps no memory into the process (a real GPU),
// nothing happens.

type Fs = typeof import('node:fs');

/** bytes read per /proc/self/mem call: the kernel faults in this many at a time */
const PIECE = 8 << 20;

/** `start-end` of every shared memfd mapping in /proc/self/maps text. Pure. */
export function memfdRanges(maps: string): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const line of maps.split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) rw-s \S+ \S+ \S+\s+\/memfd:/.exec(line);
    if (m) out.push([parseInt(m[1], 16), parseInt(m[2], 16)]);
  }
  return out;
}

export class Prefault {
  private pending: Promise<void>[] = [];
  /** bytes pre-faulted */
  bytes = 0;
  private closed = false;

  private constructor(
    private readonly fs: Fs,
    private readonly mem: number,
    private readonly scratch: Uint8Array,
  ) {}

  /** A pre-faulter for this process, or null where there is nothing to do (not Node on Linux, or /proc/self/mem unreadable). */
  static async open(): Promise<Prefault | null> {
    const proc = (globalThis as { process?: { platform?: string; versions?: { node?: string } } }).process;
    if (proc?.platform !== 'linux' || !proc.versions?.node) return null;
    try {
      const fs: Fs = await import('node:fs');
      return new Prefault(fs, fs.openSync('/proc/self/mem', 'r'), new Uint8Array(PIECE));
    } catch {
      return null;
    }
  }

  /** The memfd ranges mapped now (none when /proc/self/maps cannot be read: pre-faulting is only ever an optimisation). */
  private ranges(): Array<[number, number]> {
    try {
      return memfdRanges(this.fs.readFileSync('/proc/self/maps', 'utf8'));
    } catch {
      return [];
    }
  }

  /** Run `alloc`; any memfd range it mapped is read once in the background (settle() waits for the reads). */
  async around<T>(alloc: () => Promise<T>): Promise<T> {
    const before = new Set(this.ranges().map(([start, end]) => `${start}-${end}`));
    const out = await alloc();
    for (const [start, end] of this.ranges()) if (!before.has(`${start}-${end}`)) this.pending.push(this.read(start, end));
    return out;
  }

  private async read(start: number, end: number): Promise<void> {
    for (let at = start; at < end && !this.closed; at += PIECE) {
      const n = Math.min(PIECE, end - at);
      try {
        await new Promise<number>((resolve, reject) => this.fs.read(this.mem, this.scratch, 0, n, at, (e, got) => (e ? reject(e) : resolve(got))));
      } catch {
        return; // unmapped meanwhile (the weight was released): nothing left to fault in
      }
      this.bytes += n;
    }
  }

  /** Wait for the reads started so far. */
  async settle(): Promise<void> {
    await Promise.all(this.pending);
    this.pending = [];
  }

  /** Close /proc/self/mem: reads still queued stop (their fd number may be reused). Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.fs.closeSync(this.mem);
  }
}
