// InternVL's load_video: pick frames as get_index does, decode them with ffmpeg, resize each to one
// S x S tile (dynamic_preprocess with max_num = 1) and normalise. See pvc-architecture.md 9.2.
//
// Frame semantics follow decord (the reference's reader): frame i is the i-th decoded frame in
// presentation order, 0-based, every frame counted (ffmpeg runs with -fps_mode passthrough so no
// frame is duplicated or dropped, and -noautorotate because decord ignores rotation metadata).
// The frame count is the stream's nb_frames, else avg_fps * duration truncated (decord's estimate);
// fps is the stream's avg_frame_rate.
//
// Only the sampled frames are decoded: the demuxer's packet list (pts and keyframe flags, no
// decoding) maps frame index -> timestamp, then one ffmpeg per run of frames that share a keyframe
// seeks there (input -ss, accurate seek) and decodes forward. Files whose packets do not map one
// to one onto decoded frames fall back to one full decode with a select filter.
//
// Paths reach ffmpeg as `file:` URLs of regular local files, with only the file protocol
// allowed, so a name starting with '-' is never an option and nothing is fetched over a network,
// unless a caller sets allowAnyInput.

import { spawn } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { checkPixelBudget, normalizeTiles, type PixelValues } from './image.js';
import { resizeBicubic, type RgbImage } from './resize.js';

export interface VideoInfo {
  width: number;
  height: number;
  /** len(vr) in decord. */
  frameCount: number;
  /** vr.get_avg_fps(). */
  fps: number;
}

export interface FfmpegOptions {
  ffmpegPath?: string;
  ffprobePath?: string;
  /** Hand the path to ffmpeg as given (URLs, devices, pipes, any protocol). Off by default:
   *  only regular local files are opened, through the file protocol alone. */
  allowAnyInput?: boolean;
  /** false: decode the whole video once instead of seeking to the frames (for comparison). */
  seek?: boolean;
  /** Fewest frames between two sampled frames worth a new seek (default: SEEK_MIN_PIXELS' worth). */
  minSeekGap?: number;
}

/** Decoding on through fewer pixels than this (about 0.1 s of H.264 decoding on one core) is
 *  cheaper than starting another ffmpeg process and seeking. */
export const SEEK_MIN_PIXELS = 50e6;

export interface VideoOptions extends FfmpegOptions {
  /** num_segments (32 by default, the README uses 64). */
  frames?: number;
  /** Optional [start, end] in seconds. */
  bound?: [number, number];
  /** Tile side S (448 for the real model). */
  imageSize?: number;
  /** Pixel-value budget in bytes (default MAX_PIXEL_VALUE_BYTES). */
  maxPixelBytes?: number;
}

export interface LoadedVideo extends PixelValues {
  /** Selected frame indices, in output order. */
  indices: number[];
  /** One tile per frame: [1] * T. */
  numPatchesList: number[];
  info: VideoInfo;
}

/** np.round / Python round on a float64: nearest integer, ties to even. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x); // ties toward +infinity; r - x is exact for these magnitudes
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** get_index(bound, fps, max_frame, first_idx, num_segments) with float64 arithmetic in the
 *  reference's order of operations (max_frame = frameCount - 1; first_idx is 1 for MVBench's
 *  frame folders, whose files are numbered from 1). */
export function frameIndices(frameCount: number, fps: number, segments: number, bound?: [number, number], firstIdx = 0): number[] {
  if (!Number.isInteger(frameCount) || frameCount < 1) throw new Error(`video has no frames (frame count ${frameCount})`);
  if (!Number.isInteger(segments) || segments < 1) throw new Error(`frames must be a positive integer, got ${segments}`);
  if (!(fps > 0)) throw new Error(`invalid fps ${fps}`);
  const maxFrame = frameCount - 1;
  const [start, end] = bound ?? [-100000, 100000];
  const startIdx = Math.max(firstIdx, roundHalfEven(start * fps));
  const endIdx = Math.min(roundHalfEven(end * fps), maxFrame);
  if (!(endIdx >= startIdx)) {
    throw new Error(`bound [${start}, ${end}] s selects no frames: frames ${startIdx}..${endIdx} of ${frameCount} at ${fps} fps`);
  }
  const seg = (endIdx - startIdx) / segments;
  const out: number[] = [];
  for (let k = 0; k < segments; k++) out.push(Math.trunc(startIdx + seg / 2 + roundHalfEven(seg * k)));
  return out;
}

/** The checks loadVideo applies before it probes or decodes anything: `frames` is a positive
 *  integer and frames x 3 x S x S float32 pixel values fit the budget. */
export function checkVideoFrames(frames: number, imageSize: number, maxPixelBytes?: number): void {
  if (!Number.isSafeInteger(frames) || frames < 1) throw new Error(`frames must be a positive integer, got ${frames}`);
  if (!Number.isInteger(imageSize) || imageSize < 1) throw new Error(`imageSize must be a positive integer, got ${imageSize}`);
  checkPixelBudget(frames, imageSize, 'frames', maxPixelBytes);
}

/** ffmpeg/ffprobe input arguments for `path`: a regular local file as a file: URL with only the
 *  file protocol allowed, or (allowAnyInput) the path as given, always after -i. */
export async function inputArgs(path: string, opts: FfmpegOptions = {}): Promise<string[]> {
  if (opts.allowAnyInput) return ['-i', path];
  let isFile: boolean;
  try {
    isFile = (await stat(path)).isFile();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' ? `no such file${/^[a-z][a-z0-9+.-]*:/i.test(path) ? ' (URLs are not opened unless allowAnyInput is set)' : ''}` : (e as Error).message);
  }
  if (!isFile) throw new Error('not a regular file (devices, pipes and directories are not read unless allowAnyInput is set)');
  return ['-protocol_whitelist', 'file', '-i', `file:${resolve(path)}`];
}

function missingTool(tool: string, path: string): Error {
  return new Error(
    `${tool} not found (tried "${path}"); video input needs FFmpeg: install it (Debian/Ubuntu: apt-get install ffmpeg, ` +
      `macOS: brew install ffmpeg) or pass its path in the ${tool}Path option`,
  );
}

/** Runs a tool to completion, returning stdout; stderr goes into the error on failure. */
function run(tool: string, path: string, args: string[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(path, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', (e: NodeJS.ErrnoException) => reject(e.code === 'ENOENT' ? missingTool(tool, path) : e));
    child.on('close', (code) => {
      if (code === 0) resolve(Buffer.concat(out));
      else reject(new Error(`${tool} failed (exit ${code}): ${err.trim().split('\n').slice(-3).join(' | ')}`));
    });
  });
}

function parseRate(rate: string | undefined): number {
  const [num, den] = (rate ?? '0/0').split('/').map(Number);
  return num > 0 && den > 0 ? num / den : 0;
}

/** Frame count, fps and size of the first video stream, as decord reports them. */
export async function probeVideo(path: string, opts: FfmpegOptions = {}): Promise<VideoInfo> {
  const ffprobe = opts.ffprobePath ?? 'ffprobe';
  let json: { streams?: Record<string, string | number>[]; format?: { duration?: string } };
  try {
    const out = await run('ffprobe', ffprobe, [
      '-v', 'error', '-select_streams', 'v:0',
      '-show_entries', 'stream=width,height,nb_frames,avg_frame_rate,r_frame_rate:format=duration',
      '-of', 'json', ...(await inputArgs(path, opts)),
    ]);
    json = JSON.parse(out.toString());
  } catch (e) {
    const msg = (e as Error).message;
    throw msg.startsWith('ffprobe not found') ? e : new Error(`cannot read video ${path}: ${msg}`);
  }
  const s = json.streams?.[0];
  if (!s) throw new Error(`${path} has no video stream`);
  const fps = parseRate(String(s.avg_frame_rate)) || parseRate(String(s.r_frame_rate));
  if (!fps) throw new Error(`${path}: video stream reports no frame rate`);
  let frameCount = Number(s.nb_frames);
  if (!(frameCount >= 1)) frameCount = Math.trunc(fps * Number(json.format?.duration ?? 0));
  if (!(frameCount >= 1)) throw new Error(`${path}: cannot determine the frame count`);
  return { width: Number(s.width), height: Number(s.height), frameCount, fps };
}

/** Per frame in presentation order: its time as input -ss counts it (seconds from the file's
 *  start_time) and whether it is a keyframe. From the demuxer's packets alone (no decoding). */
export interface FrameTimeline {
  times: number[];
  keyframe: boolean[];
}

/** The packet list as a frame timeline, or null when packets do not map one to one onto the
 *  `frameCount` decoded frames (missing or repeated pts, a different count). */
export async function frameTimeline(path: string, info: VideoInfo, opts: FfmpegOptions = {}): Promise<FrameTimeline | null> {
  const out = await run('ffprobe', opts.ffprobePath ?? 'ffprobe', [
    '-v', 'error', '-select_streams', 'v:0', '-show_entries', 'stream=time_base:format=start_time:packet=pts,flags',
    '-of', 'json', ...(await inputArgs(path, opts)),
  ]);
  const json = JSON.parse(out.toString()) as {
    packets?: { pts?: number; flags?: string }[];
    streams?: { time_base?: string }[];
    format?: { start_time?: string };
  };
  const [num, den] = (json.streams?.[0]?.time_base ?? '').split('/').map(Number);
  const start = Number(json.format?.start_time ?? 0);
  const packets = (json.packets ?? []).filter((p) => !p.flags?.includes('D'));
  if (!(num > 0 && den > 0) || !Number.isFinite(start) || packets.length !== info.frameCount) return null;
  if (packets.some((p) => !Number.isSafeInteger(p.pts))) return null;
  packets.sort((a, b) => a.pts! - b.pts!);
  if (packets.some((p, k) => k > 0 && p.pts === packets[k - 1].pts)) return null;
  return { times: packets.map((p) => (p.pts! * num) / den - start), keyframe: packets.map((p) => !!p.flags?.includes('K')) };
}

/** One ffmpeg run: seek to `seek` seconds (null: from the start) and decode forward through the
 *  sorted frames `frames`. */
export interface DecodeRun {
  seek: number | null;
  frames: number[];
}

/** Groups the sorted distinct `wanted` frames into runs: a frame joins the previous run when no
 *  keyframe lies between them or it is fewer than `minGap` frames on (decoding on is then
 *  cheapest), else it starts a run that seeks half a frame before it (so that rounding never
 *  lands on the previous frame). */
export function seekPlan(timeline: FrameTimeline, wanted: number[], minGap = 0): DecodeRun[] {
  const { times, keyframe } = timeline;
  const runs: DecodeRun[] = [];
  let lastKey = 0;
  let k = 0;
  for (const idx of wanted) {
    for (; k <= idx; k++) if (keyframe[k]) lastKey = k;
    const run = runs.at(-1);
    if (run && (lastKey <= run.frames.at(-1)! || idx - run.frames.at(-1)! < minGap)) run.frames.push(idx);
    else runs.push({ seek: idx === 0 ? null : (times[idx - 1] + times[idx]) / 2, frames: [idx] });
  }
  return runs;
}

/** select expression for frame numbers `ns` (counted from the first frame the run decodes), as a
 *  balanced sum: ffmpeg 5's expression parser refuses a flat sum of more than 100 terms. */
export function selectExpression(ns: number[]): string {
  let terms = ns.map((n) => `eq(n\\,${n})`);
  while (terms.length > 1) {
    const next: string[] = [];
    for (let i = 0; i < terms.length; i += 2) next.push(i + 1 < terms.length ? `(${terms[i]}+${terms[i + 1]})` : terms[i]);
    terms = next;
  }
  return terms[0];
}

export interface DecodeStats {
  /** ffmpeg processes run. */
  runs: number;
  /** Whether the whole video was decoded (no usable frame timeline). */
  fullDecode: boolean;
}

/** Runs at most this many ffmpeg decodes at once (each is multi-threaded already). */
const PARALLEL_RUNS = 2;

/** Decodes the frames at `indices` (any order, repeats allowed) to RGB, calling `onFrame` once for
 *  each distinct index, so that only one raw frame per ffmpeg run is held at a time. Seeks to the
 *  frames (see seekPlan) when the packet timeline allows, else decodes the whole video once. */
export async function decodeFrames(
  path: string,
  info: VideoInfo,
  indices: number[],
  onFrame: (index: number, frame: RgbImage) => void,
  opts: FfmpegOptions = {},
): Promise<DecodeStats> {
  const wanted = [...new Set(indices)].sort((a, b) => a - b);
  const bad = wanted.find((i) => !Number.isInteger(i) || i < 0 || i >= info.frameCount);
  if (bad !== undefined) throw new Error(`frame index ${bad} is outside 0..${info.frameCount - 1}`);
  const input = await inputArgs(path, opts);
  const timeline = opts.seek === false ? null : await frameTimeline(path, info, opts).catch(() => null);
  const minGap = opts.minSeekGap ?? Math.ceil(SEEK_MIN_PIXELS / (info.width * info.height));
  const runs = timeline ? seekPlan(timeline, wanted, minGap) : [{ seek: null, frames: wanted }];
  const queue = [...runs];
  const worker = async () => {
    for (let run = queue.shift(); run; run = queue.shift()) {
      try {
        await decodeRun(path, info, input, run, timeline !== null, onFrame, opts);
      } catch (e) {
        queue.length = 0;
        throw e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL_RUNS, runs.length) }, worker));
  return { runs: runs.length, fullDecode: timeline === null };
}

/** One ffmpeg process for one run; with a seek, frame numbers in the select count from the
 *  first frame at or after the seek point, which is the run's first frame. */
function decodeRun(
  path: string,
  info: VideoInfo,
  input: string[],
  run: DecodeRun,
  seeked: boolean,
  onFrame: (index: number, frame: RgbImage) => void,
  opts: FfmpegOptions,
): Promise<void> {
  const ffmpeg = opts.ffmpegPath ?? 'ffmpeg';
  const base = seeked ? run.frames[0] : 0;
  const args = [
    '-v', 'error', '-nostdin', '-noautorotate', ...(run.seek === null ? [] : ['-ss', run.seek.toFixed(6)]), ...input,
    '-map', '0:v:0', '-an', '-sn', '-vf', `select='${selectExpression(run.frames.map((i) => i - base))}'`,
    '-fps_mode', 'passthrough', '-frames:v', String(run.frames.length), '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1',
  ];
  const frameBytes = info.width * info.height * 3;
  const wanted = run.frames;
  return new Promise((resolve, reject) => {
    const child = spawn(ffmpeg, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let frame = new Uint8Array(frameBytes);
    let filled = 0;
    let delivered = 0;
    let err = '';
    let failed: Error | null = null;
    const deliver = () => {
      if (delivered >= wanted.length) throw new Error('ffmpeg returned more frames than selected');
      onFrame(wanted[delivered++], { width: info.width, height: info.height, data: frame });
    };
    child.stdout.on('data', (chunk: Buffer) => {
      for (let off = 0; off < chunk.length && !failed; ) {
        const n = Math.min(frameBytes - filled, chunk.length - off);
        frame.set(chunk.subarray(off, off + n), filled);
        filled += n;
        off += n;
        if (filled < frameBytes) continue;
        try {
          deliver();
        } catch (e) {
          failed = e as Error;
          child.kill();
        }
        frame = new Uint8Array(frameBytes);
        filled = 0;
      }
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', (e: NodeJS.ErrnoException) => reject(e.code === 'ENOENT' ? missingTool('ffmpeg', ffmpeg) : e));
    child.on('close', (code) => {
      if (failed) reject(failed);
      else if (code !== 0) reject(new Error(`ffmpeg failed to decode ${path} (exit ${code}): ${err.trim().split('\n').slice(-3).join(' | ')}`));
      else if (delivered < wanted.length) {
        reject(new Error(`${path}: video ended after ${delivered} of the selected frames; frame ${wanted[delivered]} was not decoded (frame count ${info.frameCount} overstated?)`));
      } else resolve();
    });
  });
}

/** load_video: [T, 3, S, S] float32 pixel values, one tile per selected frame. */
export async function loadVideo(path: string, opts: VideoOptions = {}): Promise<LoadedVideo> {
  const { frames = 32, bound, imageSize = 448 } = opts;
  checkVideoFrames(frames, imageSize, opts.maxPixelBytes);
  const info = await probeVideo(path, opts);
  const indices = frameIndices(info.frameCount, info.fps, frames, bound);
  const tiles = new Map<number, RgbImage>();
  await decodeFrames(path, info, indices, (i, frame) => tiles.set(i, resizeBicubic(frame, imageSize, imageSize)), opts);
  const pv = normalizeTiles(indices.map((i) => tiles.get(i)!), imageSize);
  return { ...pv, indices, numPatchesList: indices.map(() => 1), info };
}
