// Quantizing on worker threads (src/weights/quantize-pool.ts, quantize-feed.ts): a failure inside a
// worker fails the load with the same clear error as on the main thread, and neither a failed nor
// an abandoned load leaves a worker thread running (each worker holds a MessagePort handle).
// Byte identity with the main thread and numpy: test/quant-cache.test.ts.
import { afterAll, describe, expect, it } from 'vitest';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CACHE_FOLDER } from '../src/weights/quant-cache-files.js';
import { quantizeRule } from '../src/weights/quantize.js';
import { Checkpoint, type TensorInfo } from '../src/weights/safetensors.js';
import { uploadTensors } from '../src/weights/upload.js';
import { testGpu } from './util.js';

const TINY = '/work/ckpt/tiny';
const tmp = mkdtempSync(join(tmpdir(), 'quantize-pool-'));
const gpu = await testGpu();
afterAll(() => {
  gpu.destroy();
  rmSync(tmp, { recursive: true, force: true });
});

const ports = () => process.getActiveResourcesInfo().filter((r) => r === 'MessagePort').length;
const layers = (t: TensorInfo) => (quantizeRule('q4')!(t) && t.name.includes('.layers.') ? 'q4' : undefined);
const WEIGHT = 'language_model.model.layers.1.attention.wqkv.weight';

/** A copy of the tiny checkpoint whose WEIGHT holds +Inf at row 5, column 40. */
async function withInfinity(): Promise<string> {
  const dir = join(tmp, 'inf');
  mkdirSync(dir);
  for (const f of readdirSync(TINY).filter((f) => f.endsWith('.safetensors') || f.endsWith('.index.json'))) copyFileSync(join(TINY, f), join(dir, f));
  const info = (await Checkpoint.open(dir)).tensors.get(WEIGHT)!;
  const fh = await open(info.file, 'r+');
  await fh.write(new Uint8Array(new Uint16Array([0x7f80]).buffer), 0, 2, info.offset + 2 * (5 * info.shape[1] + 40));
  await fh.close();
  return dir;
}

describe('quantizing on worker threads: failures', () => {
  it('a non-finite weight found by a worker fails the load with the main thread\'s error; no worker and no cache file are left', async () => {
    const dir = await withInfinity();
    const before = ports();
    const message = `tensor '${WEIGHT}': q4: non-finite weight at row 5, columns 32 .. 63`;
    for (const quantizeWorkers of [0, 2]) {
      await expect(uploadTensors(gpu, await Checkpoint.open(dir), { quantize: layers, quantizeWorkers })).rejects.toThrow(message);
      expect(ports(), `${quantizeWorkers} workers`).toBe(before);
      expect(readdirSync(join(dir, CACHE_FOLDER))).toEqual([]); // the partial cache file was removed
    }
  });

  it('a load abandoned midway (its progress callback throws) ends the workers', async () => {
    const before = ports();
    let during = 0;
    const load = uploadTensors(gpu, await Checkpoint.open(TINY), {
      quantize: layers,
      quantCache: false,
      quantizeWorkers: 2,
      onProgress: (p) => {
        during = Math.max(during, ports());
        if (p.bytesDone > p.bytesTotal / 2) throw new Error('stop here');
      },
    });
    await expect(load).rejects.toThrow('stop here');
    expect(during).toBe(before + 2); // the two workers ran during the load
    expect(ports()).toBe(before);
  });

  it('PVC_QUANT_WORKERS must be a whole number (the load fails before uploading, and leaves no cache file)', async () => {
    const saved = process.env.PVC_QUANT_WORKERS;
    process.env.PVC_QUANT_WORKERS = 'many';
    const dir = join(tmp, 'env-cache');
    try {
      await expect(uploadTensors(gpu, await Checkpoint.open(TINY), { quantize: layers, quantCache: { dir } })).rejects.toThrow('PVC_QUANT_WORKERS=many: expected a whole number');
      expect(readdirSync(dir)).toEqual([]); // the cache file begun for this load was removed
    } finally {
      if (saved === undefined) delete process.env.PVC_QUANT_WORKERS;
      else process.env.PVC_QUANT_WORKERS = saved;
    }
  });
});
