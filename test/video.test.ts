// Video preprocessing: get_index parity with numpy (hundreds of cases in one Python call), frames
// decoded by seeking (and by the full-decode fallback) vs an independent full decode
// (test/pil_ref.py), PIL resize parity per frame, input safety, and clear errors.

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { normalizeTiles } from '../src/preprocess/image.js';
import type { RgbImage } from '../src/preprocess/resize.js';
import {
  checkVideoFrames, decodeFrames, frameIndices, frameTimeline, loadVideo, probeVideo, roundHalfEven, seekPlan, type VideoInfo,
} from '../src/preprocess/video.js';
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

  it("seeking to the frames gives the full decode's bytes (B-frames, short GOPs; issue 10 items 18, 19)", { timeout: 120_000 }, async () => {
    const seed = freshSeed();
    const rand = rng(seed);
    const path = join(dir, 'gop.mp4');
    execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=96x64:rate=25:duration=12', '-c:v', 'libx264', '-g', '23', '-bf', '3', '-pix_fmt', 'yuv420p', '-y', path]);
    const info = await probeVideo(path);
    expect(info.frameCount).toBe(300);
    const timeline = (await frameTimeline(path, info))!;
    expect(timeline.keyframe.filter(Boolean).length).toBeGreaterThan(10);
    const frameBytes = info.width * info.height * 3;
    const all = Array.from({ length: 300 }, (_, k) => k);
    const ref = referenceFrames(path, info, all);
    const sparse = [0, 1, 22, 23, 24, 299, ...Array.from({ length: 12 }, () => Math.floor(rand() * 300))];
    const many = frameIndices(info.frameCount, info.fps, 128); // > 100 distinct: one select expression per run
    // Every keyframe gap seeks (minSeekGap 0) / decoding on / the full-decode fallback.
    for (const [indices, seek, minSeekGap, runs] of [[sparse, true, 0, 5], [many, true, 1000, 1], [many, false, 0, 1]] as const) {
      const distinct = [...new Set(indices)].sort((a, b) => a - b);
      const got = new Map<number, RgbImage>();
      const stats = await decodeFrames(path, info, indices, (i, f) => got.set(i, f), { seek, minSeekGap });
      expect(stats.fullDecode).toBe(!seek);
      expect(stats.runs).toBeGreaterThanOrEqual(runs);
      if (seek) expect(stats.runs).toBe(seekPlan(timeline, distinct, minSeekGap).length);
      distinct.forEach((idx) => {
        const want = ref.data.subarray(idx * frameBytes, (idx + 1) * frameBytes);
        expect(Buffer.compare(Buffer.from(got.get(idx)!.data), want), `frame ${idx} of ${distinct.length}, seek ${seek} (seed ${seed})`).toBe(0);
      });
    }
    // The case: 128 frames of the example video (main: ffmpeg "Cannot allocate memory").
    const video = await loadVideo(VIDEO, { frames: 128, imageSize: 8 });
    expect(video.shape).toEqual([128, 3, 8, 8]);
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

  it('checks the frame count against the pixel budget before probing (issue 10 item 2)', async () => {
    expect(() => checkVideoFrames(100_000, 448)).toThrow(/100000 frames of 448x448 need 229688 MiB of pixel values; the limit is 1024 MiB/);
    expect(() => checkVideoFrames(64, 448)).not.toThrow();
    expect(() => checkVideoFrames(445, 448)).not.toThrow();
    expect(() => checkVideoFrames(446, 448)).toThrow(/limit is 1024 MiB/);
    expect(() => checkVideoFrames(8, 448, 8 * 3 * 448 * 448 * 4 - 1)).toThrow(/8 frames/);
    expect(() => checkVideoFrames(1.5, 448)).toThrow(/positive integer/);
    // Before ffprobe runs: a missing ffprobe is not what fails.
    await expect(loadVideo(VIDEO, { frames: 100_000, ffprobePath: '/nonexistent/ffprobe' })).rejects.toThrow(/100000 frames of 448x448/);
  });

  it('opens only regular local files: no option injection, no network (issue 10 item 14)', { timeout: 60_000 }, async () => {
    let connections = 0;
    const server = createServer((_, res) => {
      connections++;
      res.end();
    });
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    const port = (server.address() as { port: number }).port;
    try {
      const url = `http://127.0.0.1:${port}/video.mp4`;
      await expect(probeVideo(url)).rejects.toThrow(/no such file \(URLs are not opened unless allowAnyInput is set\)/);
      await expect(loadVideo(url, { frames: 2, imageSize: 16 })).rejects.toThrow(/URLs are not opened/);
      // A local playlist that points at the network: only the file protocol is allowed.
      const playlist = join(dir, 'remote.m3u8');
      writeFileSync(playlist, `#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n${url}\n#EXT-X-ENDLIST\n`);
      await expect(probeVideo(playlist)).rejects.toThrow(/cannot read video/);
      expect(connections).toBe(0);
      await expect(probeVideo(url, { allowAnyInput: true })).rejects.toThrow(/cannot read video/);
      expect(connections).toBeGreaterThan(0); // the opt-in does reach the network
    } finally {
      server.close();
    }
    await expect(probeVideo('/dev/zero')).rejects.toThrow(/not a regular file/);
    await expect(probeVideo(dir)).rejects.toThrow(/not a regular file/);
    // A file named like an option is a file, for ffprobe and ffmpeg alike.
    const sub = join(dir, 'dash');
    mkdirSync(sub);
    execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc=size=32x24:rate=5:duration=1', '-pix_fmt', 'yuv420p', '-y', join(sub, '-x.mp4')]);
    const cwd = process.cwd();
    process.chdir(sub);
    try {
      expect((await probeVideo('-x.mp4')).frameCount).toBe(5);
      expect((await loadVideo('-x.mp4', { frames: 3, imageSize: 8 })).shape).toEqual([3, 3, 8, 8]);
    } finally {
      process.chdir(cwd);
    }
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
