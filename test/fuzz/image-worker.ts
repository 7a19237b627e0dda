// Image fuzzing worker, run by test/fuzz.test.ts in a child process with a bounded V8 heap so that
// an allocation bomb or a hang kills only this process: mutates the seed files (bit flips, header
// fields set to extremes, truncation, insertions and deletions, splices), decodes each case, and
// prints one line per case ("start N", then "ok N" or "error N message") and a JSON summary.
// Usage: tsx test/fuzz/image-worker.ts SEED_DIR SEED CASES MAX_RSS_MB

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeImage } from '../../src/preprocess/decode.js';
import { imageHeader, MAX_PIXELS, NeedMoreBytes } from '../../src/preprocess/header.js';
import { rng } from '../util.js';

const [dir, seedArg, casesArg, maxRssArg] = process.argv.slice(2);
const seed = Number(seedArg);
const cases = Number(casesArg);
const maxRss = Number(maxRssArg) * 2 ** 20;
const seeds = readdirSync(dir).sort().map((name) => ({ name, bytes: new Uint8Array(readFileSync(join(dir, name))) }));
const r = rng(seed);
const int = (n: number) => Math.floor(r() * n);
const EXTREMES = [0x00, 0xff, 0x7f, 0x80, 0x01, 0xfe];

function mutate(src: Uint8Array): Uint8Array {
  let b = src.slice();
  for (let m = 1 + int(3); m > 0; m--) {
    const kind = int(7);
    const inHeader = () => int(Math.min(b.length, 64)); // most parsers' fields live here
    if (b.length === 0) break;
    if (kind === 0) b[int(b.length)] ^= 1 << int(8); // bit flip anywhere
    else if (kind === 1) b[inHeader()] = EXTREMES[int(EXTREMES.length)];
    else if (kind === 2) {
      const at = inHeader();
      for (let k = 0; k < 4 && at + k < b.length; k++) b[at + k] = 0xff; // a 16/32-bit field at its maximum
    } else if (kind === 3) b = b.subarray(0, int(b.length + 1)); // truncation
    else if (kind === 4) {
      const at = int(b.length);
      b = Uint8Array.from([...b.subarray(0, at), ...Array.from({ length: 1 + int(16) }, () => int(256)), ...b.subarray(at)]);
    } else if (kind === 5) {
      const at = int(b.length);
      b = Uint8Array.from([...b.subarray(0, at), ...b.subarray(at + 1 + int(16))]);
    } else {
      const other = seeds[int(seeds.length)].bytes; // splice another file's body in
      const at = int(b.length);
      b = Uint8Array.from([...b.subarray(0, at), ...other.subarray(int(other.length))]);
    }
  }
  return b;
}

let decoded = 0;
let refused = 0;
let slowest = { ms: 0, case: -1, seed: '' };
let peakRss = 0;
for (let c = 0; c < cases; c++) {
  const src = seeds[c % seeds.length];
  const bytes = mutate(src.bytes);
  console.log(`start ${c} ${src.name}`);
  const t0 = performance.now();
  try {
    // A prefix parse as probeImage does it: a size or a request for more bytes, never a hang.
    try {
      imageHeader(bytes.subarray(0, int(bytes.length + 1)), false);
    } catch (e) {
      if (!(e instanceof Error)) throw new Error(`non-Error thrown from the header parser: ${String(e)}`);
    }
    const img = await decodeImage(bytes);
    if (img.data.length !== img.width * img.height * 3 || img.width * img.height > MAX_PIXELS) throw new Error(`bad image ${img.width}x${img.height} with ${img.data.length} bytes`);
    decoded++;
    console.log(`ok ${c}`);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    // A clear error: an Error whose message names the format or says what is wrong with the image.
    if (!(e instanceof Error) || e instanceof NeedMoreBytes || !/jpeg|png|webp|gif|bmp|image/i.test(msg)) {
      console.log(`bad-error ${c} ${src.name}: ${String(e)}`);
      process.exit(3);
    }
    refused++;
    console.log(`error ${c} ${msg.replace(/\s+/g, ' ').slice(0, 160)}`);
  }
  const ms = performance.now() - t0;
  if (ms > slowest.ms) slowest = { ms: Math.round(ms), case: c, seed: src.name };
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
  if (process.memoryUsage().rss > maxRss) {
    console.log(`memory ${c} ${src.name}: RSS ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB`);
    process.exit(4);
  }
}
console.log(JSON.stringify({ cases, decoded, refused, slowest, peakRssMiB: Math.round(peakRss / 2 ** 20) }));
