// Child process for device-leak.test.ts: loads the checkpoint in argv[2] and disposes it
// argv[3] times, printing the resident set size (bytes) after each cycle as one JSON array.
// Run with --expose-gc: a full collection before each reading frees what JavaScript no longer
// holds, so what remains is what the cycle really kept.

import { loadModel } from '../src/index.js';

const [dir, cycles] = [process.argv[2], Number(process.argv[3])];
const rss: number[] = [];
for (let i = 0; i < cycles; i++) {
  (await loadModel(dir)).dispose();
  await new Promise((r) => setTimeout(r, 10)); // let Dawn's callbacks for the destroyed device run
  (globalThis as { gc?: () => void }).gc?.();
  rss.push(process.memoryUsage().rss);
}
console.log(JSON.stringify(rss));
