// Peak activation memory of one chat turn: the most bytes of pooled (activation) buffers alive at
// once and the pool's growth over the turn, for a checkpoint, one image and a question.
// Usage: npx tsx bench/activations.ts DIR IMAGE [--max-tiles N] [--chunk N]

import { parseArgs } from 'node:util';
import { chat, loadModel } from '../src/index.js';

const { positionals, values } = parseArgs({ allowPositionals: true, options: { 'max-tiles': { type: 'string', default: '1' } } });
const [dir, image] = positionals;
if (!dir || !image) throw new Error('usage: npx tsx bench/activations.ts DIR IMAGE [--max-tiles N]');
const m = await loadModel(dir);
const pool = m.gpu.pool;
let peak = 0;
const acquire = pool.acquire.bind(pool);
pool.acquire = (bytes: number, label: string) => {
  const b = acquire(bytes, label);
  peak = Math.max(peak, pool.liveBytes);
  return b;
};
pool.trim();
const base = pool.liveBytes;
const allocated = pool.allocatedBytes;
const turn = chat(m.model, m.tokenizer, { question: 'Describe the image.', images: [image], maxTiles: Number(values['max-tiles']), maxNewTokens: 2, stopIds: m.stopIds });
let r = await turn.next();
while (!r.done) r = await turn.next();
// the KV cache (prompt + 2 positions) is counted in the peak
console.log(JSON.stringify({ dir, promptTokens: r.value.stats.promptTokens, peakLiveMB: (peak - base) / 1e6, poolGrowthMB: (pool.allocatedBytes - allocated) / 1e6 }));
m.dispose();
