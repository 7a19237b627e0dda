// Browser build of src/weights/quant-cache.ts (swapped in by web/vite.config.ts): the quantized
// cache is a file beside a checkpoint on disk, which a page does not have; uploadTensors opens it
// only in Node, so nothing here is called.

export class QuantCacheError extends Error {}

export function openQuantCache(): never {
  throw new Error('the quantized cache is Node-only and not part of the browser build');
}
