// A long-lived process (a server that reloads models) stays flat in memory over loadModel() /
// dispose() cycles. The leak this guards against was native: the device's 'uncapturederror'
// listener kept the Gpu, the adapter and Dawn's instance alive after dispose, 2.5-4 MB a cycle
// (RSS 306 -> 424 MB over 30 cycles) while the JavaScript heap stayed flat. Measured in a child
// process (test/load-cycles.ts) with a full GC before each reading.

import { afterAll, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeCheckpoint } from '../src/weights/synthetic.js';

const ROOT = join(__dirname, '..');
const tmp = mkdtempSync(join(tmpdir(), 'leak-test-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const WARMUP = 10; // the allocator, pipeline compilers and Dawn's caches settle in the first cycles (one 12 MB step seen up to cycle 13)
const CYCLES = 20;
// 1 MB a cycle: the leak was 2.5-4 times that (53-60 MB over these 20 cycles); after the fix they grew RSS by 1-4 MB
const BOUND_BYTES = CYCLES * 1e6;

it(`RSS grows less than ${BOUND_BYTES / 1e6} MB over ${CYCLES} load/dispose cycles (after ${WARMUP} to warm up)`, async () => {
  const model = join(tmp, 'tiny');
  await writeCheckpoint(model, 'tiny', { seed: 1 });
  const out = await new Promise<string>((resolve, reject) =>
    execFile(process.execPath, ['--expose-gc', '--import', 'tsx', 'test/load-cycles.ts', model, String(WARMUP + CYCLES)], { cwd: ROOT, timeout: 240_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
    ),
  );
  const rss: number[] = JSON.parse(out.trim().split('\n').at(-1)!);
  const growth = rss.at(-1)! - rss[WARMUP - 1];
  expect(growth, `RSS per cycle (MB): ${rss.map((b) => (b / 1e6).toFixed(0)).join(' ')}`).toBeLessThan(BOUND_BYTES);
}, 300_000);
