// Quantizing at load on several threads. The loader (upload.ts) hands row blocks to a Quantizer
// and takes the codes back in order; a Quantizer runs quantizeRows either on worker threads
// (Node: node:worker_threads, one block per worker at a time, both buffers transferred, never
// copied, and handed back for reuse) or inline on the calling thread (workers: 0, and the browser
// build, whose loader already runs in a Web Worker: a nested worker would need its own bundle).
// The bytes are quantizeRows' whichever thread runs it.
//
// Workers: PVC_QUANT_WORKERS, else os.availableParallelism() - 1 (at least 1): the main thread
// keeps reading, staging and writing the cache, and on lavapipe a thread copies to the "GPU".
// A worker runs this same module (serveQuantizeWorker), started through a few lines of eval'd
// CommonJS that first register tsx's loader when the module is TypeScript (the project runs from
// source; workers do not inherit tsx's hooks on Node 20).

import { quantizeRows, type QuantDType } from './quantize.js';

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

const ROLE = 'pvc-webgpu quantize worker';

/** How many worker threads quantize by default: PVC_QUANT_WORKERS, else the cores but one (at least one); 0 outside Node. */
export async function defaultQuantizeWorkers(): Promise<number> {
  if (!inNode) return 0;
  const env = process.env.PVC_QUANT_WORKERS;
  if (env !== undefined && env !== '') {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 0) throw new Error(`PVC_QUANT_WORKERS=${env}: expected a whole number of worker threads (0: quantize on the main thread)`);
    return n;
  }
  const { availableParallelism } = await import('node:os');
  return Math.max(1, availableParallelism() - 1);
}

const inNode = typeof process !== 'undefined' && process.versions?.node !== undefined;

/** A quantizer with `workers` threads (0, or outside Node: inline). Workers start here; a failure to start rejects the first jobs. */
export async function openQuantizer(workers: number): Promise<Quantizer> {
  return workers > 0 && inNode ? WorkerQuantizer.start(workers) : inlineQuantizer;
}

const inlineQuantizer: Quantizer = {
  workers: 0,
  async run({ dtype, K, firstRow, bits, out }) {
    quantizeRows(dtype, bits, K, out, firstRow);
    return { bits, out };
  },
  async close() {},
};

interface Request {
  id: number;
  dtype: QuantDType;
  K: number;
  firstRow: number;
  bits: ArrayBuffer;
  values: number;
  out: ArrayBuffer;
  outBytes: number;
}

interface Reply {
  id: number;
  bits: ArrayBuffer;
  out: ArrayBuffer;
  error?: string;
}

interface Pending {
  request: Request;
  resolve(r: { bits: Uint16Array; out: Uint8Array }): void;
  reject(e: Error): void;
}

type NodeWorker = import('node:worker_threads').Worker;

class WorkerQuantizer implements Quantizer {
  private readonly idle: NodeWorker[] = [];
  private readonly queue: Pending[] = [];
  private readonly running = new Map<NodeWorker, Pending>();
  private nextId = 0;
  /** set once a worker fails or the pool closes: every later job rejects with it */
  private failure: Error | null = null;

  private constructor(private readonly all: NodeWorker[]) {
    this.idle.push(...all);
  }

  get workers(): number {
    return this.all.length;
  }

  static async start(n: number): Promise<WorkerQuantizer> {
    const { Worker } = await import('node:worker_threads');
    // under tsx or vitest this module is TypeScript: the worker registers tsx's ESM loader first
    const tsx = import.meta.url.endsWith('.ts') ? await tsxApi() : null;
    const boot = `
      const { workerData } = require('node:worker_threads');
      (async () => {
        if (workerData.tsx) (await import(workerData.tsx)).register();
        (await import(workerData.entry)).serveQuantizeWorker();
      })();`;
    const workers: NodeWorker[] = [];
    try {
      while (workers.length < n) workers.push(new Worker(boot, { eval: true, workerData: { role: ROLE, entry: import.meta.url, tsx } }));
    } catch (e) {
      await Promise.all(workers.map((w) => w.terminate()));
      throw e;
    }
    const pool = new WorkerQuantizer(workers);
    for (const w of workers) {
      w.on('message', (reply: Reply) => pool.settle(w, reply));
      w.on('error', (e) => pool.fail(new Error(`a quantizing worker thread failed: ${e.message}`, { cause: e })));
      w.on('exit', (code) => pool.fail(new Error(`a quantizing worker thread exited (code ${code})`)));
    }
    return pool;
  }

  run({ dtype, K, firstRow, bits, out }: QuantizeJob): Promise<{ bits: Uint16Array; out: Uint8Array }> {
    if (bits.byteOffset !== 0 || out.byteOffset !== 0) throw new Error('quantize job buffers must be views from offset 0');
    return new Promise((resolve, reject) => {
      if (this.failure) return reject(this.failure);
      const request: Request = { id: this.nextId++, dtype, K, firstRow, bits: bits.buffer as ArrayBuffer, values: bits.length, out: out.buffer as ArrayBuffer, outBytes: out.length };
      this.queue.push({ request, resolve, reject });
      this.dispatch();
    });
  }

  private dispatch(): void {
    while (this.idle.length && this.queue.length) {
      const w = this.idle.pop()!;
      const job = this.queue.shift()!;
      this.running.set(w, job);
      w.postMessage(job.request, [job.request.bits, job.request.out]);
    }
  }

  private settle(w: NodeWorker, reply: Reply): void {
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

/** The file URL of tsx's ESM registration API (`tsx/esm/api`, its ESM build: the CommonJS one fails to register in a worker). */
async function tsxApi(): Promise<string> {
  const { createRequire } = await import('node:module');
  const { pathToFileURL } = await import('node:url');
  const { dirname, join } = await import('node:path');
  const require = createRequire(import.meta.url);
  const pkg = require.resolve('tsx/package.json');
  const entry = (require(pkg) as { exports: Record<string, { import?: { default?: string } }> }).exports['./esm/api']?.import?.default;
  if (!entry) throw new Error(`${pkg}: no ESM entry for 'tsx/esm/api' (needed to start the quantizing workers from TypeScript)`);
  return pathToFileURL(join(dirname(pkg), entry)).href;
}

/** A worker's side: quantize each request into its own buffers and send both back (transferred). */
export async function serveQuantizeWorker(): Promise<void> {
  const { parentPort, workerData } = await import('node:worker_threads');
  if (!parentPort || workerData?.role !== ROLE) throw new Error('serveQuantizeWorker runs in a quantize worker thread');
  parentPort.on('message', (r: Request) => {
    let error: string | undefined;
    try {
      quantizeRows(r.dtype, new Uint16Array(r.bits, 0, r.values), r.K, new Uint8Array(r.out, 0, r.outBytes), r.firstRow);
    } catch (e) {
      error = (e as Error).message;
    }
    parentPort.postMessage({ id: r.id, bits: r.bits, out: r.out, error } satisfies Reply, [r.bits, r.out]);
  });
}
