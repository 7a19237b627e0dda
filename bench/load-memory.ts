// Memory after loading a checkpoint: peak RSS and GPU bytes, against the checkpoint's size.
//   npx tsx bench/load-memory.ts DIR [DIR...]
// On a software adapter GPU buffers live in process memory, so RSS = weights + working set;
// the loader's working set is its two staging buffers (up to 128 MiB each, src/weights/upload.ts).

import { getDevice } from '../src/gpu/index.js';
import { InternVL } from '../src/models/internvl.js';
import { Checkpoint } from '../src/weights/safetensors.js';

const dirs = process.argv.slice(2);
if (!dirs.length) {
  console.error('usage: npx tsx bench/load-memory.ts CHECKPOINT_DIR [...]');
  process.exit(2);
}
const mib = (b: number) => (b / 2 ** 20).toFixed(1);
for (const dir of dirs) {
  const rssBefore = process.memoryUsage().rss;
  const gpu = await getDevice();
  const ckpt = await Checkpoint.open(dir);
  const fileBytes = [...ckpt.tensors.values()].reduce((s, t) => s + t.byteLength, 0);
  const t0 = performance.now();
  const model = await InternVL.load(gpu, dir);
  const secs = (performance.now() - t0) / 1000;
  const peakRss = process.resourceUsage().maxRSS * 1024;
  console.log(
    `${dir}: ${mib(fileBytes)} MiB of tensors loaded in ${secs.toFixed(1)} s (${(fileBytes / secs / 1e9).toFixed(2)} GB/s); ` +
      `GPU bytes ${mib(gpu.pool.allocatedBytes)} MiB; peak RSS ${mib(peakRss)} MiB (process before device ${mib(rssBefore)} MiB); ` +
      `peak RSS - GPU bytes - baseline = ${mib(peakRss - gpu.pool.allocatedBytes - rssBefore)} MiB; model type ${model.config.modelType}`,
  );
  gpu.destroy();
}
process.exit(0);
