// Write a seeded synthetic PVC-InternVL2 checkpoint:
//   npm run make:checkpoint -- --preset tiny --out weights/tiny [--seed N] [--chunk-mib M]
// Presets: see PRESETS in src/weights/synthetic.ts (tiny, tiny-v1, mid, full).

import { parseArgs } from 'node:util';
import { PRESETS, writeCheckpoint } from '../src/weights/synthetic.js';

const { values } = parseArgs({
  options: {
    preset: { type: 'string', default: 'tiny' },
    out: { type: 'string' },
    seed: { type: 'string', default: '0' },
    'chunk-mib': { type: 'string', default: '16' },
  },
});
const seed = Number(values.seed);
const chunkMib = Number(values['chunk-mib']);
if (!values.out || !PRESETS[values.preset!] || !Number.isSafeInteger(seed) || seed < 0 || !(chunkMib > 0)) {
  console.error(`usage: make-checkpoint --preset ${Object.keys(PRESETS).join('|')} --out DIR [--seed N] [--chunk-mib M]`);
  process.exit(2);
}
const start = performance.now();
let last = 0;
await writeCheckpoint(values.out, values.preset!, {
  seed,
  chunkBytes: chunkMib * 2 ** 20,
  onProgress: (done, total) => {
    const now = performance.now();
    if (now - last < 500 && done < total) return;
    last = now;
    const s = (now - start) / 1000;
    process.stderr.write(`\r${(done / 1e9).toFixed(2)} / ${(total / 1e9).toFixed(2)} GB  ${(done / 1e6 / Math.max(s, 1e-3)).toFixed(0)} MB/s  `);
  },
});
process.stderr.write(`\nwrote ${values.preset} (seed ${seed}) to ${values.out} in ${((performance.now() - start) / 1000).toFixed(1)} s\n`);
