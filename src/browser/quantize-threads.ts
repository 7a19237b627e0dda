// Browser build of src/weights/quantize-threads.ts (swapped in by web/vite.config.ts): the threads
// that quantize at load are Web Workers started from the engine's own Web Worker (nested workers;
// Vite bundles quantize-worker.ts as their script).

import type { QuantizeReply } from '../weights/quantize-pool.js';
import type { QuantizeThread } from '../weights/quantize-threads.js';

export type { QuantizeThread };

export async function coreCount(): Promise<number> {
  return navigator.hardwareConcurrency || 1;
}

export async function spawnQuantizeThread(onReply: (reply: QuantizeReply) => void, onFail: (e: Error) => void): Promise<QuantizeThread> {
  const w = new Worker(new URL('./quantize-worker.ts', import.meta.url), { type: 'module' });
  w.onmessage = (ev: MessageEvent<QuantizeReply>) => onReply(ev.data);
  w.onerror = (ev) => onFail(new Error(`a quantizing worker failed: ${ev.message || 'it could not start'}`));
  return {
    post: (r) => w.postMessage(r, [r.bits, r.out]),
    terminate: async () => w.terminate(),
  };
}
