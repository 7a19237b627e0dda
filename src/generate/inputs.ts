// A turn's media, read before any GPU work: images (tiled) or a video (sampled frames), with the
// question prefix InternVL's chat uses for them ("<image>\n", "Image-1: <image>\n...", the PVC
// README's "Frame1: <image>\n...").

import type { InternVL } from '../models/internvl.js';
import type { Media } from '../models/plan.js';
import { loadImage } from '../preprocess/image.js';
import { readImageFile } from '../preprocess/image-file.js';
import { loadVideo } from '../preprocess/video.js';
import { IMAGE_PLACEHOLDER, multiImagePrefix, videoPrefix } from '../text/template.js';

/** A problem with what the user asked for (a file, a value, a prompt too long): no stack trace needed. */
export class InputError extends Error {
  override name = 'InputError';
}

export interface VideoInput {
  /** the video file (or, with framePaths, the folder the frames come from) */
  path: string;
  /** frames already picked, one image file each (e.g. a folder of extracted frames): each becomes one
   *  S x S tile as load_video's frames do; frames/start/end are then unused */
  framePaths?: string[];
  /** frames sampled uniformly (num_segments); default 32, as utils/preprocess.load_video (the PVC README example passes 64) */
  frames?: number;
  /** only [start, end] seconds of the video */
  start?: number;
  end?: number;
}

export interface MediaRequest {
  images?: string[];
  video?: VideoInput;
  /** dynamic tiles per image before the thumbnail; default: the config's max_dynamic_patch */
  maxTiles?: number;
}

/** The media of a request and the prefix its question gets when it has no <image> placeholder. */
export async function readMedia(model: InternVL, req: MediaRequest): Promise<{ media: Media[]; prefix: string }> {
  const cfg = model.config;
  const images = req.images ?? [];
  if (images.length && req.video) throw new InputError('give images or a video, not both');
  if (req.video) {
    const { path, frames = 32, start, end } = req.video;
    if (!(Number.isSafeInteger(frames) && frames >= 1)) throw new InputError(`frames must be a positive integer, got ${frames}`);
    if ((start === undefined) !== (end === undefined)) throw new InputError('give both the start and the end of the video segment');
    if (start !== undefined && end !== undefined && !(start >= 0 && end > start)) throw new InputError(`the video segment needs 0 <= start < end, got ${start}..${end}`);
    let frameTiles: Float32Array[];
    if (req.video.framePaths) {
      frameTiles = [];
      for (const p of req.video.framePaths) frameTiles.push((await readImage(p, { imageSize: cfg.imageSize, maxTiles: 1, useThumbnail: false })).data);
      if (!frameTiles.length) throw new InputError(`no frames given for ${path}`);
    } else {
      try {
        const video = await loadVideo(path, { frames, imageSize: cfg.imageSize, bound: start !== undefined && end !== undefined ? [start, end] : undefined });
        frameTiles = [video.data];
      } catch (e) {
        const msg = (e as Error).message;
        throw new InputError(msg.startsWith('cannot read video') ? msg : `cannot read video ${path}: ${msg}`); // probeVideo's errors already say it
      }
    }
    const pixels = concat(frameTiles);
    const tiles = pixels.length / (3 * cfg.imageSize ** 2);
    // one placeholder per frame; the frames form one temporal sequence
    return { media: [{ kind: 'video', tiles, pixels }], prefix: videoPrefix(tiles) };
  }
  if (!images.length) return { media: [], prefix: '' };
  const maxTiles = req.maxTiles ?? cfg.maxDynamicPatch;
  if (!(Number.isSafeInteger(maxTiles) && maxTiles >= 1)) throw new InputError(`max tiles must be a positive integer, got ${maxTiles}`);
  const dynamic = cfg.dynamicImageSize;
  const media: Media[] = [];
  for (const path of images) {
    const im = await readImage(path, { imageSize: cfg.imageSize, maxTiles: dynamic ? maxTiles : 1, minTiles: cfg.minDynamicPatch, useThumbnail: cfg.useThumbnail && dynamic });
    media.push({ kind: 'image', tiles: im.shape[0], pixels: im.data });
  }
  return { media, prefix: images.length > 1 ? multiImagePrefix(images.length) : `${IMAGE_PLACEHOLDER}\n` };
}

async function readImage(path: string, opts: Parameters<typeof loadImage>[1]) {
  let bytes: Uint8Array;
  try {
    bytes = await readImageFile(path);
  } catch (e) {
    throw new InputError(`cannot read image ${path}: ${(e as Error).message}`);
  }
  try {
    return await loadImage(bytes, opts);
  } catch (e) {
    throw new InputError(`cannot decode image ${path}: ${(e as Error).message}`);
  }
}

function concat(parts: Float32Array[]): Float32Array {
  if (parts.length === 1) return parts[0];
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((o, p) => (out.set(p, o), o + p.length), 0);
  return out;
}
