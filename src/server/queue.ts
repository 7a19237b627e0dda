// One GPU worker: jobs run one at a time (the device records one step at a time, and a second
// model's worth of memory is not there), in arrival order, from a bounded queue. A full queue
// refuses at once (the server answers 429 with Retry-After) instead of letting latency grow
// without bound. A job whose signal aborts while it waits leaves the queue; a running job sees the
// signal and stops itself.

export class QueueFullError extends Error {
  override name = 'QueueFullError';
  constructor(
    readonly capacity: number,
    /** seconds until a slot is likely free */
    readonly retryAfter: number,
  ) {
    super(`the server is busy: ${capacity} request(s) already wait for the GPU; retry in ${retryAfter} s`);
  }
}

export class QueueClosedError extends Error {
  override name = 'QueueClosedError';
}

interface Entry {
  job: () => Promise<unknown>;
  resolve(v: unknown): void;
  reject(e: unknown): void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

export class GpuQueue {
  private readonly waiting: Entry[] = [];
  private running = false;
  private closed: Error | null = null;
  /** running mean of job durations (ms), for Retry-After */
  private meanJobMs = 1000;
  private idleWaiters: (() => void)[] = [];

  constructor(readonly capacity: number) {
    if (!(Number.isSafeInteger(capacity) && capacity >= 0)) throw new RangeError(`queue capacity must be an integer >= 0, got ${capacity}`);
  }

  /** jobs waiting (the running one not counted) */
  get size(): number {
    return this.waiting.length;
  }

  get busy(): boolean {
    return this.running;
  }

  /**
   * Runs `job` when the worker is free. `first` jobs (model reloads) go ahead of the queue and
   * never count against its capacity. Rejects with QueueFullError at once when the queue is full,
   * with the signal's reason when it aborts while waiting, QueueClosedError after close().
   */
  run<T>(job: () => Promise<T>, opts: { signal?: AbortSignal; first?: boolean } = {}): Promise<T> {
    if (this.closed) return Promise.reject(this.closed);
    if (opts.signal?.aborted) return Promise.reject(opts.signal.reason);
    const full = opts.first ? null : this.refusal();
    if (full) return Promise.reject(full);
    return new Promise<T>((resolve, reject) => {
      const entry: Entry = { job, resolve: resolve as (v: unknown) => void, reject, signal: opts.signal };
      if (opts.signal) {
        entry.onAbort = () => {
          const i = this.waiting.indexOf(entry);
          if (i >= 0) {
            this.waiting.splice(i, 1);
            reject(opts.signal!.reason);
          }
        };
        opts.signal.addEventListener('abort', entry.onAbort, { once: true });
      }
      if (opts.first) this.waiting.unshift(entry);
      else this.waiting.push(entry);
      this.pump();
    });
  }

  /** The error a new job would get now because the queue is full, or null when there is room. */
  refusal(): QueueFullError | null {
    if (!(this.running && this.waiting.length >= this.capacity)) return null;
    return new QueueFullError(this.capacity, Math.max(1, Math.ceil((this.meanJobMs * (this.waiting.length + 1)) / 1000)));
  }

  /** Refuses new jobs and rejects the waiting ones with `reason`; the running job goes on. */
  close(reason: Error): void {
    this.closed = reason;
    for (const e of this.waiting.splice(0)) {
      if (e.onAbort) e.signal!.removeEventListener('abort', e.onAbort);
      e.reject(reason);
    }
  }

  /** Resolves when nothing runs or waits. */
  idle(): Promise<void> {
    if (!this.running && !this.waiting.length) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  private pump(): void {
    if (this.running) return;
    const entry = this.waiting.shift();
    if (!entry) {
      for (const r of this.idleWaiters.splice(0)) r();
      return;
    }
    if (entry.onAbort) entry.signal!.removeEventListener('abort', entry.onAbort);
    this.running = true;
    const start = performance.now();
    entry
      .job()
      .then(entry.resolve, entry.reject)
      .finally(() => {
        this.meanJobMs = 0.8 * this.meanJobMs + 0.2 * (performance.now() - start);
        this.running = false;
        this.pump();
      });
  }
}
