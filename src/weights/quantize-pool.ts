// Quantizing at load on several threads. The loader (upload.ts) hands row blocks to a Quantizer
// and takes the codes back in order; a Quantizer runs quantizeRows either on worker threads (one
// block per worker at a time, both buffers transferred, never copied, and handed back for reuse) or
// inline on the calling thread (workers: 0). The bytes are quantizeRows' whichever thread runs it.
// The threads themselves are quantize-threads.ts: node:worker_threads in Node, nested Web Workers
// in the browser build (src/browser/quantize-threads.ts, where the loader runs in a Web Worker).
//
// Workers by default: PVC_QUANT_WORKERS, else the cores but one (at least 1): the loading thread
// keeps reading, staging and writing the cache, and on lavapipe a thread copies to the "GPU".

import { quantizeRows, type QuantDType } from './quantize.js';
import { coreCount, spawnQuantizeThread, type QuantizeThread } from './quantize-threads.js';

export interface QuantizeJob {
  dtype: QuantDType;
  K: number;
  /** the block's first row in its tensor (for error messages) */
  firstRow: number;
  /** bf16 rows (bit patterns): a view from offset 0 of its own ArrayBuffer, which may be transferred */
  bits: Uint16Array;
  /** where the codes go: a view from offset 0 of its own ArrayBuffer, exactly the rows' bytes */
  out: Uint8Array;
}

export interface Quantizer {
  readonly workers: number;
  /** quantize a job's rows into its `out`; resolves with the job's buffers (new views when they travelled) */
  run(job: QuantizeJob): Promise<{ bits: Uint16Array; out: Uint8Array }>;
  /** stop every worker (idempotent); jobs still running reject */
  close(): Promise<void>;
}

/** How many worker threads quantize by default: PVC_QUANT_WORKERS (Node), else the cores but one (at least one). */
export async function defaultQuantizeWorkers(): Promise<number> {
  const env = typeof process !== 'undefined' ? process.env?.PVC_QUANT_WORKERS : undefined;
  if (env !== undefined && env !== '') {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 0) throw new Error(`PVC_QUANT_WORKERS=${env}: expected a whole number of worker threads (0: quantize on the main thread)`);
    return n;
  }
  return Math.max(1, (await coreCount()) - 1);
}

/** A quantizer with `workers` threads (0: inline). Workers start here; a failure to start rejects the first jobs. */
export async function openQuantizer(workers: number): Promise<Quantizer> {
  return workers > 0 ? WorkerQuantizer.start(workers) : inlineQuantizer;
}

const inlineQuantizer: Quantizer = {
  workers: 0,
  async run({ dtype, K, firstRow, bits, out }) {
    quantizeRows(dtype, bits, K, out, firstRow);
    return { bits, out };
  },
  async close() {},
};

/** A job as it travels to a thread (its buffers transferred). */
export interface QuantizeRequest {
  id: number;
  dtype: QuantDType;
  K: number;
  firstRow: number;
  bits: ArrayBuffer;
  values: number;
  out: ArrayBuffer;
  outBytes: number;
}

/** A thread's answer: the job's buffers back (transferred), and the quantizer's error if it threw. */
export interface QuantizeReply {
  id: number;
  bits: ArrayBuffer;
  out: ArrayBuffer;
  error?: string;
}

/** What a thread does with a request (both worker entry points call this). */
export function answerQuantizeRequest(r: QuantizeRequest): QuantizeReply {
  let error: string | undefined;
  try {
    quantizeRows(r.dtype, new Uint16Array(r.bits, 0, r.values), r.K, new Uint8Array(r.out, 0, r.outBytes), r.firstRow);
  } catch (e) {
    error = (e as Error).message;
  }
  return { id: r.id, bits: r.bits, out: r.out, error };
}

interface Pending {
  request: QuantizeRequest;
  resolve(r: { bits: Uint16Array; out: Uint8Array }): void;
  reject(e: Error): void;
}

class WorkerQuantizer implements Quantizer {
  private readonly all: QuantizeThread[] = [];
  private readonly idle: QuantizeThread[] = [];
  private readonly queue: Pending[] = [];
  private readonly running = new Map<QuantizeThread, Pending>();
  private nextId = 0;
  /** set once a worker fails or the pool closes: every later job rejects with it */
  private failure: Error | null = null;

  get workers(): number {
    return this.all.length;
  }

  static async start(n: number): Promise<WorkerQuantizer> {
    const pool = new WorkerQuantizer();
    try {
      while (pool.all.length < n) {
        const thread: QuantizeThread = await spawnQuantizeThread(
          (reply) => pool.settle(thread, reply),
          (e) => pool.fail(e),
        );
        pool.all.push(thread);
      }
    } catch (e) {
      await pool.terminate();
      throw e;
    }
    pool.idle.push(...pool.all);
    return pool;
  }

  run({ dtype, K, firstRow, bits, out }: QuantizeJob): Promise<{ bits: Uint16Array; out: Uint8Array }> {
    if (bits.byteOffset !== 0 || out.byteOffset !== 0) throw new Error('quantize job buffers must be views from offset 0');
    return new Promise((resolve, reject) => {
      if (this.failure) return reject(this.failure);
      const request: QuantizeRequest = { id: this.nextId++, dtype, K, firstRow, bits: bits.buffer as ArrayBuffer, values: bits.length, out: out.buffer as ArrayBuffer, outBytes: out.length };
      this.queue.push({ request, resolve, reject });
      this.dispatch();
    });
  }

  private dispatch(): void {
    while (this.idle.length && this.queue.length) {
      const w = this.idle.pop()!;
      const job = this.queue.shift()!;
      this.running.set(w, job);
      w.post(job.request);
    }
  }

  private settle(w: QuantizeThread, reply: QuantizeReply): void {
    const job = this.running.get(w);
    if (!job || job.request.id !== reply.id) return this.fail(new Error(`a quantizing worker answered job ${reply.id} out of turn`));
    this.running.delete(w);
    this.idle.push(w);
    if (reply.error !== undefined) job.reject(new Error(reply.error));
    else job.resolve({ bits: new Uint16Array(reply.bits, 0, job.request.values), out: new Uint8Array(reply.out, 0, job.request.outBytes) });
    this.dispatch();
  }

  /** Reject everything queued or running, and stop the workers. */
  private fail(e: Error): void {
    if (this.failure) return;
    this.failure = e;
    for (const job of [...this.running.values(), ...this.queue]) job.reject(e);
    this.running.clear();
    this.queue.length = 0;
    void this.terminate();
  }

  private terminate(): Promise<unknown> {
    return Promise.all(this.all.map((w) => w.terminate()));
  }

  async close(): Promise<void> {
    if (!this.failure) this.fail(new Error('the quantizing workers were closed'));
    await this.terminate();
  }
}
