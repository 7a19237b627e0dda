// Loading a checkpoint: time, GB/s, where the time went, peak RSS and GPU bytes, with the conditions.
//   npx tsx bench/load-memory.ts [--dtype bf16|q8|q4] [--quant-cache DIR|off] DIR [DIR...]
// On a software adapter GPU buffers live in process memory, so RSS = weights + working set;
// the loader's working set is its two staging buffers (up to 128 MiB each, src/weights/upload.ts).
// Full size (16.6 GB) on the project's machine: under `flock /work/bigmem.lock`.

import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { getDevice } from '../src/gpu/index.js';
import { InternVL } from '../src/models/internvl.js';
import { formatLoadBreakdown, type UploadProgress } from '../src/weights/upload.js';

const { values, positionals: dirs } = parseArgs({ allowPositionals: true, options: { dtype: { type: 'string', default: 'bf16' }, 'quant-cache': { type: 'string' } } });
const dtype = values.dtype as 'bf16' | 'q8' | 'q4';
if (!dirs.length || !['bf16', 'q8', 'q4'].includes(dtype)) {
  console.error('usage: npx tsx bench/load-memory.ts [--dtype bf16|q8|q4] [--quant-cache DIR|off] CHECKPOINT_DIR [...]');
  process.exit(2);
}
const quantCache = values['quant-cache'] === 'off' ? false : values['quant-cache'] ? { dir: values['quant-cache'] } : undefined;
const mib = (b: number) => (b / 2 ** 20).toFixed(1);
for (const dir of dirs) {
  const rssBefore = process.memoryUsage().rss;
  const gpu = await getDevice();
  console.log(`${dir} (${dtype}): load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  let last: UploadProgress | undefined;
  await InternVL.load(gpu, dir, { dtype, quantCache, onProgress: (p) => (last = p) });
  const peakRss = process.resourceUsage().maxRSS * 1024;
  console.log(`  ${formatLoadBreakdown(last!)}`);
  console.log(
    `  GPU bytes ${mib(gpu.pool.allocatedBytes)} MiB; peak RSS ${mib(peakRss)} MiB (process before the device ${mib(rssBefore)} MiB); ` +
      `peak RSS - GPU bytes = ${((peakRss - gpu.pool.allocatedBytes) / 2 ** 30).toFixed(2)} GiB; load average after ${loadavg()[0].toFixed(2)}`,
  );
  gpu.destroy();
}
process.exit(0);
