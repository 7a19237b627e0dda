// Video preprocessing: get_index parity with numpy (hundreds of cases in one Python call), frames
// decoded through ffmpeg's select filter vs an independent full decode (test/pil_ref.py), PIL
// resize parity per frame, and clear errors.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { normalizeTiles } from '../src/preprocess/image.js';
import type { RgbImage } from '../src/preprocess/resize.js';
import { decodeFrames, frameIndices, loadVideo, probeVideo, roundHalfEven, type VideoInfo } from '../src/preprocess/video.js';
import { freshSeed, rng, SHARED } from './util.js';

const VIDEO = join(SHARED, 'assets/example_video.mp4');
const dir = mkdtempSync(join(tmpdir(), 'pvc-video-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function py<T = unknown>(request: object): T {
  const out = execFileSync('/usr/bin/python3', [join(import.meta.dirname, 'pil_ref.py')], { input: JSON.stringify(request) });
  return JSON.parse(out.toString()) as T;
}

/** Frames at `indices` from the independent Python path, concatenated. */
function referenceFrames(path: string, info: VideoInfo, indices: number[]): { data: Buffer; decoded: number } {
  const out = join(dir, `ref-${indices.length}-${indices[0]}.rgb`);
  const { decoded } = py<{ decoded: number }>({ op: 'video', path, width: info.width, height: info.height, indices, out });
  return { data: readFileSync(out), decoded };
}

/** PIL bicubic resize of each frame to S x S (pil_ref.py), returned as tiles. */
function pilTiles(frames: Buffer, info: VideoInfo, count: number, size: number): RgbImage[] {
  const frameBytes = info.width * info.height * 3;
  const jobs = Array.from({ length: count }, (_, k) => {
    writeFileSync(join(dir, `f${k}.in`), frames.subarray(k * frameBytes, (k + 1) * frameBytes));
    return { in: join(dir, `f${k}.in`), out: join(dir, `f${k}.out`), width: info.width, height: info.height, outWidth: size, outHeight: size };
  });
  py({ op: 'resize', jobs });
  return jobs.map((j) => ({ width: size, height: size, data: new Uint8Array(readFileSync(j.out)) }));
}

describe('frame indices (get_index)', () => {
  it('round half to even like np.round', () => {
    expect([0.5, 1.5, 2.5, -0.5, -1.5, 3.4999999999999996, 4503599627370495.5, 7].map(roundHalfEven)).toEqual([
      0, 2, 2, -0, -2, 3, 4503599627370496, 7,
    ]);
  });

  it('match numpy for hundreds of (length, fps, segments, bound) cases', () => {
    const seed = freshSeed();
    const rand = rng(seed);
    const pick = <T>(xs: T[]) => xs[Math.floor(rand() * xs.length)];
    const fpsList = [30, 25, 24, 30000 / 1001, 895000 / 29833, 60000 / 1001, 12.5, 1, 0.5, 120];
    const cases: { count: number; fps: number; segs: number; bound?: [number, number] }[] = [];
    while (cases.length < 600) {
      const count = pick([1, 2, 3, 10, 31, 32, 33, 64, 100, 895, 1000, 4321, 20000, Math.floor(rand() * 5000) + 1]);
      const fps = rand() < 0.8 ? pick(fpsList) : 0.5 + rand() * 100;
      const segs = pick([1, 2, 3, 7, 8, 16, 32, 64, 100, 128]);
      const dur = count / fps;
      let bound: [number, number] | undefined;
      if (rand() < 0.6) {
        // Half-frame multiples hit round()'s ties; plain randoms cover the rest (some past the end).
        const t = () => (rand() < 0.5 ? Math.floor(rand() * 2 * count) / (2 * fps) : rand() * dur * 1.2);
        const a = t();
        const b = t();
        bound = [Math.min(a, b), Math.max(a, b)];
      }
      try {
        frameIndices(count, fps, segs, bound);
      } catch {
        continue; // bound selects no frames: covered by the error test
      }
      cases.push({ count, fps, segs, bound });
    }
    const want = py<number[][]>({ op: 'indices', cases: cases.map((c) => [c.bound ?? null, c.fps, c.count - 1, c.segs]) });
    cases.forEach((c, i) => expect(frameIndices(c.count, c.fps, c.segs, c.bound), `seed ${seed} case ${JSON.stringify(c)}`).toEqual(want[i]));
  });

  it('rejects bounds that select nothing and bad arguments', () => {
    expect(() => frameIndices(100, 30, 8, [10, 20])).toThrow(/selects no frames/);
    expect(() => frameIndices(0, 30, 8)).toThrow(/no frames/);
    expect(() => frameIndices(100, 30, 0)).toThrow(/frames must be a positive integer/);
    expect(() => frameIndices(100, 0, 8)).toThrow(/invalid fps/);
  });
});

describe('video decoding', () => {
  it('probes frame count and average fps as decord reports them', async () => {
    const info = await probeVideo(VIDEO);
    expect(info).toEqual({ width: 360, height: 640, frameCount: 895, fps: 895000 / 29833 });
  });

  it('selected frames equal an independent full decode; tiles equal PIL resize', { timeout: 60_000 }, async () => {
    const info = await probeVideo(VIDEO);
    const indices = frameIndices(info.frameCount, info.fps, 8, [2.1, 27.35]);
    const got = new Map<number, RgbImage>();
    await decodeFrames(VIDEO, info, [...indices].reverse(), (i, f) => got.set(i, f));
    const ref = referenceFrames(VIDEO, info, indices);
    expect(ref.decoded).toBe(info.frameCount); // decord's frame count is the number of decodable frames here
    const frameBytes = info.width * info.height * 3;
    indices.forEach((idx, k) => {
      const want = ref.data.subarray(k * frameBytes, (k + 1) * frameBytes);
      expect(Buffer.compare(Buffer.from(got.get(idx)!.data), want), `frame ${idx}`).toBe(0);
    });
    const video = await loadVideo(VIDEO, { frames: 8, bound: [2.1, 27.35], imageSize: 224 });
    expect(video.indices).toEqual(indices);
    expect(video.shape).toEqual([8, 3, 224, 224]);
    expect(video.numPatchesList).toEqual(Array(8).fill(1));
    const want = normalizeTiles(pilTiles(ref.data, info, indices.length, 224), 224);
    expect(Buffer.compare(Buffer.from(video.data.buffer), Buffer.from(want.data.buffer))).toBe(0);
  });

  it('short video with repeated indices (more segments than frames)', { timeout: 30_000 }, async () => {
    const path = join(dir, 'short.mp4');
    execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc=size=70x46:rate=5:duration=2.4', '-pix_fmt', 'yuv420p', '-y', path]);
    const video = await loadVideo(path, { frames: 16, imageSize: 32 });
    expect(video.info.frameCount).toBe(12);
    expect(new Set(video.indices).size).toBeLessThan(16);
    const ref = referenceFrames(path, video.info, video.indices);
    const want = normalizeTiles(pilTiles(ref.data, video.info, 16, 32), 32);
    expect(Buffer.compare(Buffer.from(video.data.buffer), Buffer.from(want.data.buffer))).toBe(0);
  });

  it('gives clear errors for missing ffmpeg, unreadable files and files without video', async () => {
    await expect(probeVideo(VIDEO, { ffprobePath: '/nonexistent/ffprobe' })).rejects.toThrow(/ffprobe not found.*apt-get install ffmpeg/);
    const info = await probeVideo(VIDEO);
    await expect(decodeFrames(VIDEO, info, [0], () => {}, { ffmpegPath: '/nonexistent/ffmpeg' })).rejects.toThrow(/ffmpeg not found/);
    await expect(decodeFrames(VIDEO, info, [895], () => {})).rejects.toThrow(/outside 0..894/);
    await expect(probeVideo(join(dir, 'missing.mp4'))).rejects.toThrow(/cannot read video/);
    const junk = join(dir, 'junk.mp4');
    writeFileSync(junk, 'definitely not a video');
    await expect(loadVideo(junk)).rejects.toThrow(/cannot read video/);
    const audio = join(dir, 'audio.wav');
    execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'sine=duration=0.2', '-y', audio]);
    await expect(loadVideo(audio)).rejects.toThrow(/has no video stream/);
    await expect(loadVideo(VIDEO, { bound: [40, 50] })).rejects.toThrow(/selects no frames/);
  });
});
