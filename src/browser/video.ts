// Browser build of video.ts (selected by the Vite config): the MP4 is demuxed by mp4box.js, read by
// slices from its byte source, and decoded with WebCodecs; frames are picked at exactly get_index's
// indices (frame i = the i-th frame in presentation order, every frame counted, as decord and the
// Node path's ffmpeg count them), converted to RGB as the Node path's ffmpeg does, then resized and
// normalised by the same code. Seeking a <video> element by time is not frame-exact, hence WebCodecs.

import { createFile, DataStream, Endianness, MP4BoxBuffer, type Movie, type Sample } from 'mp4box';
import { sourceOf } from './fs.js';
import { readExact } from '../weights/safetensors.js';
import type { ByteSource } from '../weights/source.js';
import { normalizeTiles } from '../preprocess/image.js';
import { resizeBicubic, type RgbImage } from '../preprocess/resize.js';
import { frameIndices, type LoadedVideo, type VideoInfo, type VideoOptions } from '../preprocess/video.js';

export { frameIndices, roundHalfEven, type LoadedVideo, type VideoInfo, type VideoOptions } from '../preprocess/video.js';

/**
 * 8-bit 4:2:0 YUV (BT.601, limited range: what ffmpeg assumes for an untagged stream) to RGB with
 * the arithmetic of ffmpeg's x86 yuv2rgb converter (libswscale's default for yuv420p -> rgb24):
 * nearest chroma, values scaled by 8, 16-bit high multiplies with coefficients in 1/8192 units.
 * Bit-identical to ffmpeg 5.1's rgb24 frames on this machine (test/browser/video.test.ts).
 */
export function i420ToRgb(y: Uint8Array, u: Uint8Array, v: Uint8Array, width: number, height: number, strides: [number, number, number] = [width, (width + 1) >> 1, (width + 1) >> 1]): RgbImage {
  const mulhi = (a: number, b: number) => (a * b) >> 16;
  const clamp = (x: number) => (x < 0 ? 0 : x > 255 ? 255 : x);
  const out = new Uint8Array(width * height * 3);
  for (let row = 0; row < height; row++) {
    const c = (row >> 1) * strides[1];
    const cv = (row >> 1) * strides[2];
    for (let col = 0; col < width; col++) {
      const luma = mulhi(y[row * strides[0] + col] * 8 - 128, 9539);
      const cb = u[c + (col >> 1)] * 8 - 1024;
      const cr = v[cv + (col >> 1)] * 8 - 1024;
      const o = (row * width + col) * 3;
      out[o] = clamp(luma + mulhi(cr, 13075));
      out[o + 1] = clamp(luma + mulhi(cb, -3209) + mulhi(cr, -6660));
      out[o + 2] = clamp(luma + mulhi(cb, 16525));
    }
  }
  return { width, height, data: out };
}

interface Demuxed {
  info: VideoInfo;
  config: VideoDecoderConfig;
  /** decode order */
  samples: Sample[];
}

const READ_CHUNK = 1 << 20;

/** Parse the MP4's boxes (the media data is skipped, not read) and list the first video track's samples. */
async function demux(source: ByteSource, name: string): Promise<Demuxed> {
  const file = createFile(false);
  let movie: Movie | null = null;
  file.onReady = (m) => (movie = m);
  let error = '';
  file.onError = (module: string, message: string) => (error ||= `${module}: ${message}`);
  for (let pos = 0; !movie && !error && pos < source.size; ) {
    const bytes = new Uint8Array(Math.min(READ_CHUNK, source.size - pos));
    await readExact(source, bytes, pos, 'MP4 boxes');
    const next = file.appendBuffer(MP4BoxBuffer.fromArrayBuffer(bytes.buffer, pos), pos + bytes.length >= source.size);
    pos = next > pos ? next : pos + bytes.length;
  }
  file.flush();
  if (error) throw new Error(`${name} is not a readable MP4: ${error}`);
  const m = movie as Movie | null;
  if (!m) throw new Error(`${name} is not an MP4 (no movie header found in ${source.size} bytes); video input takes MP4 files`);
  const track = m.videoTracks[0];
  if (!track) throw new Error(`${name} has no video stream`);
  const samples = file.getTrackSamplesInfo(track.id);
  if (!samples.length) throw new Error(`${name}: video has no frames`);
  const ticks = samples.reduce((n, s) => n + s.duration, 0);
  const fps = (samples.length * samples[0].timescale) / ticks;
  const config: VideoDecoderConfig = { codec: track.codec, codedWidth: track.video!.width, codedHeight: track.video!.height, description: codecDescription(file.getTrackById(track.id), name) };
  const support = await VideoDecoder.isConfigSupported(config);
  if (!support.supported) throw new Error(`${name}: this browser cannot decode ${track.codec} video`);
  return { info: { width: track.video!.width, height: track.video!.height, frameCount: samples.length, fps }, config, samples };
}

/** The decoder configuration record (avcC, hvcC, vpcC or av1C) as WebCodecs wants it: the box without its header. */
function codecDescription(trak: ReturnType<ReturnType<typeof createFile>['getTrackById']>, name: string): Uint8Array | undefined {
  for (const entry of trak.mdia.minf.stbl.stsd.entries) {
    const e = entry as unknown as Record<string, { write(s: DataStream): void } | undefined>;
    const box = e.avcC ?? e.hvcC ?? e.vpcC ?? e.av1C;
    if (box) {
      const stream = new DataStream(undefined, 0, Endianness.BIG_ENDIAN);
      box.write(stream);
      return new Uint8Array(stream.buffer, 8);
    }
  }
  if (/^(avc|hvc|hev)/.test(trak.mdia.minf.stbl.stsd.entries[0]?.type ?? '')) throw new Error(`${name}: the video track has no decoder configuration`);
  return undefined;
}

async function frameToRgb(frame: VideoFrame): Promise<RgbImage> {
  const rect = frame.visibleRect!;
  const { width, height } = rect;
  const buf = new Uint8Array(frame.allocationSize({ rect }));
  const layout = await frame.copyTo(buf, { rect });
  if (frame.format === 'I420' || frame.format === 'I420A') {
    return i420ToRgb(buf.subarray(layout[0].offset), buf.subarray(layout[1].offset), buf.subarray(layout[2].offset), width, height, [layout[0].stride, layout[1].stride, layout[2].stride]);
  }
  throw new Error(`decoded frames come as ${frame.format}; only 8-bit 4:2:0 (I420) video is supported`);
}

/**
 * Decodes in decode order from the first frame through the last one needed (a frame may depend on
 * any earlier one), keeping only the selected frames; `onFrame` gets each as an RGB image.
 */
async function decodeSelected(source: ByteSource, d: Demuxed, indices: number[], onFrame: (index: number, frame: RgbImage) => void, name: string): Promise<void> {
  const order = d.samples.map((s, i) => i).sort((a, b) => d.samples[a].cts - d.samples[b].cts || a - b);
  const rank = new Int32Array(order.length);
  order.forEach((sampleIndex, r) => (rank[sampleIndex] = r));
  const wanted = new Set(indices);
  const lastSample = Math.max(...indices.map((i) => order[i]));
  let failure: Error | null = null;
  let pending = Promise.resolve();
  let delivered = 0;
  const decoder = new VideoDecoder({
    output: (frame) => {
      const r = frame.timestamp;
      if (!wanted.has(r)) return frame.close();
      pending = pending.then(async () => {
        try {
          onFrame(r, await frameToRgb(frame));
          delivered++;
        } finally {
          frame.close();
        }
      }).catch((e) => void (failure ??= e as Error));
    },
    error: (e) => void (failure ??= new Error(`${name}: the video decoder failed: ${e.message}`)),
  });
  try {
    decoder.configure(d.config);
    for (let i = 0; i <= lastSample && !failure; i++) {
      const s = d.samples[i];
      const data = new Uint8Array(s.size);
      await readExact(source, data, s.offset, `frame data (sample ${i})`);
      decoder.decode(new EncodedVideoChunk({ type: s.is_sync ? 'key' : 'delta', timestamp: rank[i], duration: 1, data }));
      if (decoder.decodeQueueSize > 8) await new Promise((r) => decoder.addEventListener('dequeue', r, { once: true }));
    }
    if (!failure) await decoder.flush();
    await pending;
  } finally {
    if (decoder.state !== 'closed') decoder.close();
  }
  if (failure) throw failure;
  if (delivered < wanted.size) throw new Error(`${name}: the decoder returned ${delivered} of the ${wanted.size} selected frames`);
}

/**
 * Frames of a mounted MP4 at get_index's indices: `onFrame` gets each selected frame (in increasing
 * index order) as RGB, so that only one full-size frame is held at a time.
 */
export async function readFrames(path: string, opts: Pick<VideoOptions, 'frames' | 'bound'>, onFrame: (index: number, frame: RgbImage) => void): Promise<{ indices: number[]; info: VideoInfo }> {
  if (typeof VideoDecoder === 'undefined') throw new Error('this browser has no WebCodecs VideoDecoder; video input needs it (Chrome, Edge, Safari 16.4+, Firefox 130+)');
  const source = sourceOf(path);
  const name = path.split('/').pop()!;
  const d = await demux(source, name);
  const indices = frameIndices(d.info.frameCount, d.info.fps, opts.frames ?? 32, opts.bound);
  await decodeSelected(source, d, indices, onFrame, name);
  return { indices, info: d.info };
}

/** load_video over a mounted file: [T, 3, S, S] float32 pixel values, one tile per selected frame. */
export async function loadVideo(path: string, opts: VideoOptions = {}): Promise<LoadedVideo> {
  const { imageSize = 448 } = opts;
  if (!Number.isInteger(imageSize) || imageSize < 1) throw new Error(`imageSize must be a positive integer, got ${imageSize}`);
  const tiles = new Map<number, RgbImage>();
  const { indices, info } = await readFrames(path, opts, (i, frame) => tiles.set(i, resizeBicubic(frame, imageSize, imageSize)));
  const pv = normalizeTiles(indices.map((i) => tiles.get(i)!), imageSize);
  return { ...pv, indices, numPatchesList: indices.map(() => 1), info };
}
