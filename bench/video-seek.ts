// Sampled-frame video decoding: seeking to the frames (decodeFrames' default) vs one full decode
// (seek: false, what a select filter over the whole video costs), on the videos given, for 8/32/64
// frames as loadVideo samples them. Wall time and the machine's load average are printed, since
// both runs spawn ffmpeg processes whose CPU time is not this process's.
// Usage: tsx bench/video-seek.ts [--no-full] VIDEO... (synthetic ones: ffmpeg -f lavfi -i
// testsrc2=size=640x360:rate=30:duration=600 -c:v libx264 -preset veryfast -pix_fmt yuv420p synth-600.mp4)

import { loadavg } from 'node:os';
import { decodeFrames, frameIndices, probeVideo } from '../src/preprocess/video.js';

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

console.log('| video | frames | seek: runs | seek s | full decode s | ratio | load avg |');
console.log('|---|---|---|---|---|---|---|');
const skipFull = process.argv.includes('--no-full'); // a full decode of an hour takes many minutes
for (const path of process.argv.slice(2).filter((a) => a !== '--no-full')) {
  const info = await probeVideo(path);
  const name = `${path.split('/').pop()} (${info.width}x${info.height}, ${info.frameCount} frames)`;
  let full: number | null = null;
  for (const n of [8, 32, 64]) {
    const indices = frameIndices(info.frameCount, info.fps, n);
    let runs = 0;
    const seek = await timed(async () => (runs = (await decodeFrames(path, info, indices, () => {})).runs));
    // The full decode costs the same for any frame count: measured once, beside the first row.
    if (!skipFull) full ??= await timed(() => decodeFrames(path, info, indices, () => {}, { seek: false }));
    const fullText = full === null ? 'not run | -' : `${full.toFixed(1)} | ${(full / seek).toFixed(1)}x`;
    console.log(`| ${name} | ${n} | ${runs} | ${seek.toFixed(1)} | ${fullText} | ${loadavg()[0].toFixed(1)} |`);
  }
}
