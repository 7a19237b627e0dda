// Messages between the page and the engine's Web Worker.

import type { SamplingOptions } from '../src/generate/sampler.js';
import type { QuantCacheUse } from '../src/weights/quant-cache.js';

export type ModelSource =
  | { kind: 'folder'; files: File[] } // <input webkitdirectory> or a directory picker: paths relative to the folder
  | { kind: 'url'; base: string } // a checkpoint folder served over HTTP (Range requests)
  | { kind: 'hub'; endpoint: string; repo: string; revision?: string; token?: string };

export interface ChatSettings {
  maxNewTokens: number;
  maxTiles?: number;
  frames: number;
  sampling: SamplingOptions;
}

export type ToWorker =
  /** dtype: the LLM's weights as stored (bf16) or quantized while loading (q8, q4: less GPU memory) */
  | { type: 'load'; source: ModelSource; dtype: 'bf16' | 'q8' | 'q4' }
  | { type: 'chat'; question: string; images: File[]; video?: File; settings: ChatSettings }
  | { type: 'stop' }
  | { type: 'reset' };

/** What went wrong, so the page can offer the right way out. */
export type ErrorKind = 'no-webgpu' | 'limits' | 'device-lost' | 'out-of-memory' | 'input' | 'quota' | 'download' | 'model' | 'internal';

export type FromWorker =
  | { type: 'progress'; phase: 'download' | 'load'; done: number; total: number; bytesPerSecond: number; file?: string; quantCache?: QuantCacheUse }
  /** quantCache: what a q8/q4 load did with the quantized copy in the OPFS (src/weights/quant-cache.ts), its status line, and the Web Workers that quantized (when it did) */
  | { type: 'ready'; adapter: string; model: string; loadSeconds: number; bytes: number; downloadedBytes: number; quantCache?: { use: QuantCacheUse; status: string; threads?: number } }
  | { type: 'token'; text: string }
  | { type: 'done'; answer: string; stats: string; stopped: boolean; decodeTokensPerSecond: number; newTokens: number }
  | { type: 'error'; kind: ErrorKind; message: string };
