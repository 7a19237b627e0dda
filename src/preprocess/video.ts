// InternVL's load_video: pick frames as get_index does, decode them with ffmpeg, resize each to one
// S x S tile (dynamic_preprocess with max_num = 1) and normalise. See pvc-architecture.md 9.2.
//
// Frame semantics follow decord (the reference's reader): frame i is the i-th decoded frame in
// presentation order, 0-based, every frame counted (ffmpeg runs with -fps_mode passthrough so no
// frame is duplicated or dropped, and -noautorotate because decord ignores rotation metadata).
// The frame count is the stream's nb_frames, else avg_fps * duration truncated (decord's estimate);
// fps is the stream's avg_frame_rate.

import { spawn } from 'node:child_process';
import { normalizeTiles, type PixelValues } from './image.js';
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
}

export interface VideoOptions extends FfmpegOptions {
  /** num_segments (32 by default, the README uses 64). */
  frames?: number;
  /** Optional [start, end] in seconds. */
  bound?: [number, number];
  /** Tile side S (448 for the real model). */
  imageSize?: number;
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
      '-of', 'json', path,
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

/** Decodes the frames at `indices` (any order, repeats allowed) to RGB, calling `onFrame` for
 *  each distinct index in increasing order as ffmpeg delivers it, so that only one raw frame is
 *  held at a time. */
export function decodeFrames(
  path: string,
  info: VideoInfo,
  indices: number[],
  onFrame: (index: number, frame: RgbImage) => void,
  opts: FfmpegOptions = {},
): Promise<void> {
  const wanted = [...new Set(indices)].sort((a, b) => a - b);
  const bad = wanted.find((i) => !Number.isInteger(i) || i < 0 || i >= info.frameCount);
  if (bad !== undefined) return Promise.reject(new Error(`frame index ${bad} is outside 0..${info.frameCount - 1}`));
  const ffmpeg = opts.ffmpegPath ?? 'ffmpeg';
  const select = `select='${wanted.map((i) => `eq(n\\,${i})`).join('+')}'`;
  const args = [
    '-v', 'error', '-nostdin', '-noautorotate', '-i', path, '-map', '0:v:0', '-an', '-sn',
    '-vf', select, '-fps_mode', 'passthrough', '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1',
  ];
  const frameBytes = info.width * info.height * 3;
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
  if (!Number.isInteger(imageSize) || imageSize < 1) throw new Error(`imageSize must be a positive integer, got ${imageSize}`);
  const info = await probeVideo(path, opts);
  const indices = frameIndices(info.frameCount, info.fps, frames, bound);
  const tiles = new Map<number, RgbImage>();
  await decodeFrames(path, info, indices, (i, frame) => tiles.set(i, resizeBicubic(frame, imageSize, imageSize)), opts);
  const pv = normalizeTiles(indices.map((i) => tiles.get(i)!), imageSize);
  return { ...pv, indices, numPatchesList: indices.map(() => 1), info };
}
