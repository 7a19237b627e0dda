// The threads that quantize at load (quantize-pool.ts), in Node: node:worker_threads. The browser
// build (web/vite.config.ts) swaps in src/browser/quantize-threads.ts (nested Web Workers).
//
// A worker runs this same module (serveQuantizeWorker), started through a few lines of eval'd
// CommonJS that first register tsx's loader when the module is TypeScript (the project runs from
// source; workers do not inherit tsx's hooks on Node 20).

import { answerQuantizeRequest, type QuantizeReply, type QuantizeRequest } from './quantize-pool.js';

/** One quantizing thread, as the pool sees it. */
export interface QuantizeThread {
  /** send a request, transferring its buffers */
  post(request: QuantizeRequest): void;
  terminate(): Promise<unknown>;
}

const ROLE = 'pvc-webgpu quantize worker';

/** The machine's cores (the default number of threads is one fewer). */
export async function coreCount(): Promise<number> {
  return (await import('node:os')).availableParallelism();
}

let tsx: Promise<string | null> | undefined;

/** A thread that answers requests through `onReply`; `onFail` hears of its error or exit. */
export async function spawnQuantizeThread(onReply: (reply: QuantizeReply) => void, onFail: (e: Error) => void): Promise<QuantizeThread> {
  const { Worker } = await import('node:worker_threads');
  // under tsx or vitest this module is TypeScript: the worker registers tsx's ESM loader first
  tsx ??= import.meta.url.endsWith('.ts') ? tsxApi() : Promise.resolve(null);
  const boot = `
    const { workerData } = require('node:worker_threads');
    (async () => {
      if (workerData.tsx) (await import(workerData.tsx)).register();
      (await import(workerData.entry)).serveQuantizeWorker();
    })();`;
  const w = new Worker(boot, { eval: true, workerData: { role: ROLE, entry: import.meta.url, tsx: await tsx } });
  w.on('message', onReply);
  w.on('error', (e) => onFail(new Error(`a quantizing worker thread failed: ${e.message}`, { cause: e })));
  w.on('exit', (code) => onFail(new Error(`a quantizing worker thread exited (code ${code})`)));
  return { post: (r) => w.postMessage(r, [r.bits, r.out]), terminate: () => w.terminate() };
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
  parentPort.on('message', (r: QuantizeRequest) => {
    const reply = answerQuantizeRequest(r);
    parentPort.postMessage(reply, [reply.bits, reply.out]);
  });
}
