// One chat turn end to end: preprocess images or a video, render the InternVL chat prompt,
// tokenize, check the context, prefill, then decode token by token, streaming text as it settles.
// Follows InternVLChatModel.chat: "<image>\n" before a single image's question, "Image-1: <image>\n
// Image-2: ..." for several images, the PVC README's "Frame1: <image>\n..." for a video; the answer
// is decode(ids, skip_special_tokens) split on <|im_end|> and stripped.

import type { InternVL, VisualItem } from '../models/internvl.js';
import { loadImage } from '../preprocess/image.js';
import { readImageFile } from '../preprocess/image-file.js';
import { loadVideo } from '../preprocess/video.js';
import { buildPrompt, IMAGE_PLACEHOLDER, multiImagePrefix, videoPrefix, type ChatTurn } from '../text/template.js';
import type { Tokenizer } from '../text/tokenizer.js';
import { Sampler, type SamplingOptions } from './sampler.js';

export const IM_END_ID = 92542;
const IM_END = '<|im_end|>';

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

export interface ChatRequest {
  question: string;
  /** image paths; with earlier turns in `history`, the same images again (their placeholders are in the history) */
  images?: string[];
  video?: VideoInput;
  history?: readonly ChatTurn[];
  systemMessage?: string;
  /** dynamic tiles per image before the thumbnail; default: the config's max_dynamic_patch */
  maxTiles?: number;
  /** default 1024, as the InternVL README */
  maxNewTokens?: number;
  sampling?: SamplingOptions;
  /** ids that end the answer (emitted, then stop); default <|im_end|> and the tokenizer's eos */
  stopIds?: readonly number[];
  /** positions the prompt and answer may use; default the LLM's max_position_embeddings */
  contextLength?: number;
}

export interface ChatStats {
  promptTokens: number;
  newTokens: number;
  /** image/video decoding, tiling, template and tokenizer (CPU) */
  preprocessMs: number;
  /** pixel upload + vision tower + projector */
  visionMs: number;
  /** LLM over the prompt, through to the first token's id */
  prefillMs: number;
  prefillTokensPerSecond: number;
  /** from the call to the first generated token */
  timeToFirstTokenMs: number;
  /** tokens after the first, per second of decoding */
  decodeTokensPerSecond: number;
  /** the sampling seed (reuse it to reproduce a sampled answer); null when decoding greedily */
  seed: number | null;
  /** why generation ended */
  stop: 'stop-token' | 'max-new-tokens' | 'context';
}

export interface ChatResult {
  answer: string;
  /** generated ids, the stop token included when one was emitted */
  ids: number[];
  /** this turn as it goes into `history` for the next one (the question with its image placeholders) */
  turn: ChatTurn;
  prompt: string;
  stats: ChatStats;
}

interface Prepared {
  question: string;
  prompt: string;
  ids: Int32Array;
  pixels: Float32Array;
  items: VisualItem[];
}

const PY_SPACE = '[\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
const LEADING_SPACE = new RegExp(`^${PY_SPACE}+`);
const TRAILING_SPACE = new RegExp(`${PY_SPACE}+$`);

/** Python's str.strip() (its whitespace set differs from String.prototype.trim's). */
export function pyStrip(text: string): string {
  return text.replace(LEADING_SPACE, '').replace(TRAILING_SPACE, '');
}

/** InternVL's answer from generated ids: special tokens skipped, cut at <|im_end|>, stripped. */
export function answerText(tokenizer: Tokenizer, ids: readonly number[]): string {
  return pyStrip(tokenizer.decode(ids, { skipSpecialTokens: true }).split(IM_END)[0]);
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

function concatPixels(parts: { data: Float32Array }[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.data.length, 0));
  parts.reduce((o, p) => (out.set(p.data, o), o + p.data.length), 0);
  return out;
}

/** Everything before GPU work: pixels, prompt, ids, and the context check. */
async function prepare(model: InternVL, tokenizer: Tokenizer, req: ChatRequest, contextLength: number): Promise<Prepared> {
  const cfg = model.config;
  const images = req.images ?? [];
  const firstTurn = (req.history ?? []).length === 0;
  if (images.length && req.video) throw new InputError('give images or a video, not both');
  let prefix = '';
  let rows: number[] = [];
  let items: VisualItem[] = [];
  let pixels: Float32Array = new Float32Array(0);
  if (req.video) {
    const { path, frames = 32, start, end } = req.video;
    if (!(Number.isSafeInteger(frames) && frames >= 1)) throw new InputError(`frames must be a positive integer, got ${frames}`);
    if ((start === undefined) !== (end === undefined)) throw new InputError('give both the start and the end of the video segment');
    if (start !== undefined && end !== undefined && !(start >= 0 && end > start)) throw new InputError(`the video segment needs 0 <= start < end, got ${start}..${end}`);
    let video;
    if (req.video.framePaths) {
      const tiles = [];
      for (const p of req.video.framePaths) tiles.push(await readImage(p, { imageSize: cfg.imageSize, maxTiles: 1, useThumbnail: false }));
      if (!tiles.length) throw new InputError(`no frames given for ${path}`);
      video = { data: concatPixels(tiles), shape: [tiles.length] };
    } else {
      try {
        video = await loadVideo(path, { frames, imageSize: cfg.imageSize, bound: start !== undefined && end !== undefined ? [start, end] : undefined });
      } catch (e) {
        throw new InputError(`cannot read video ${path}: ${(e as Error).message}`);
      }
    }
    pixels = video.data;
    items = [{ kind: 'video', tiles: video.shape[0] }];
    // one placeholder per frame; the frames form one temporal sequence
    rows = Array.from({ length: video.shape[0] }, () => cfg.numImageToken);
    prefix = videoPrefix(video.shape[0]);
  } else if (images.length) {
    const maxTiles = req.maxTiles ?? cfg.maxDynamicPatch;
    if (!(Number.isSafeInteger(maxTiles) && maxTiles >= 1)) throw new InputError(`max tiles must be a positive integer, got ${maxTiles}`);
    const dynamic = cfg.dynamicImageSize;
    const loaded = [];
    for (const p of images) {
      loaded.push(await readImage(p, { imageSize: cfg.imageSize, maxTiles: dynamic ? maxTiles : 1, minTiles: cfg.minDynamicPatch, useThumbnail: cfg.useThumbnail && dynamic }));
    }
    pixels = concatPixels(loaded);
    items = loaded.map((im) => ({ kind: 'image', tiles: im.shape[0] }));
    rows = items.map((it) => model.rowsFor(it));
    prefix = images.length > 1 ? multiImagePrefix(images.length) : `${IMAGE_PLACEHOLDER}\n`;
  }
  const question = firstTurn && rows.length && !req.question.includes(IMAGE_PLACEHOLDER) ? prefix + req.question : req.question;
  let prompt: string;
  try {
    prompt = buildPrompt(question, { history: req.history, systemMessage: req.systemMessage, imageRows: rows });
  } catch (e) {
    throw new InputError((e as Error).message);
  }
  const ids = Int32Array.from(tokenizer.encode(prompt));
  if (ids.length >= contextLength) {
    throw new InputError(
      `the prompt is ${ids.length} tokens but the context holds ${contextLength} (with room for at least one new token); ` +
        'use fewer tiles (--max-tiles), fewer frames (--frames), fewer images or a shorter conversation',
    );
  }
  return { question, prompt, ids, pixels, items };
}

/**
 * One chat turn. Yields text as tokens are produced (pieces never split a UTF-8 character, and
 * together they equal the final answer: leading whitespace is dropped and trailing whitespace held
 * back until more text follows), and returns the answer, ids, this turn for the history, and stats.
 */
export async function* chat(model: InternVL, tokenizer: Tokenizer, req: ChatRequest): AsyncGenerator<string, ChatResult, undefined> {
  const t0 = performance.now();
  const contextLength = req.contextLength ?? model.config.llm.maxPositionEmbeddings;
  const maxNewTokens = req.maxNewTokens ?? 1024;
  if (!(Number.isSafeInteger(maxNewTokens) && maxNewTokens >= 1)) throw new InputError(`max new tokens must be a positive integer, got ${maxNewTokens}`);
  let sampler: Sampler;
  try {
    sampler = new Sampler(req.sampling);
  } catch (e) {
    throw new InputError((e as Error).message);
  }
  const stopIds = new Set(req.stopIds ?? [IM_END_ID, tokenizer.eosId]);
  const prep = await prepare(model, tokenizer, req, contextLength);
  const tPrepared = performance.now();

  const { gpu } = model;
  const budget = Math.min(maxNewTokens, contextLength - prep.ids.length);
  const cache = model.llm.newCache(gpu, prep.ids.length + budget);
  const generated: number[] = [];
  const stream = tokenizer.streamDecoder({ skipSpecialTokens: true });
  let started = false; // past the leading whitespace
  let held = ''; // trailing whitespace not yet emitted
  const settle = (piece: string): string => {
    let text = held + piece;
    if (!started) {
      text = text.replace(LEADING_SPACE, '');
      started = text.length > 0;
    }
    held = TRAILING_SPACE.exec(text)?.[0] ?? '';
    return text.slice(0, text.length - held.length);
  };

  let logits;
  let visionMs = 0;
  let tFirst = 0;
  let stop: ChatStats['stop'] = 'max-new-tokens';
  try {
    const out = await model.prefill(prep.ids, prep.pixels, prep.items, cache, { timeVision: prep.items.length > 0 });
    logits = out.logits;
    visionMs = out.visionMs ?? 0;
    for (;;) {
      let next: number;
      if (sampler.usesGpuArgmax) next = await model.argmaxLast(logits);
      else {
        const data = (await gpu.read(logits)) as Float32Array;
        next = sampler.pick(data.subarray(data.length - logits.shape[logits.shape.length - 1]), generated);
      }
      logits.release();
      logits = undefined;
      if (generated.length === 0) tFirst = performance.now();
      generated.push(next);
      const piece = settle(stream.push(next));
      if (piece) yield piece;
      if (stopIds.has(next)) {
        stop = 'stop-token';
        break;
      }
      if (generated.length === budget) {
        stop = budget < maxNewTokens ? 'context' : 'max-new-tokens';
        break;
      }
      logits = await model.decode(next, cache);
    }
    const rest = settle(stream.flush());
    if (rest) yield rest;
  } finally {
    logits?.release();
    cache.release();
  }
  const tEnd = performance.now();

  const answer = answerText(tokenizer, generated);
  const prefillMs = tFirst - tPrepared - visionMs;
  const decodeMs = tEnd - tFirst;
  return {
    answer,
    ids: generated,
    turn: { question: prep.question, answer },
    prompt: prep.prompt,
    stats: {
      promptTokens: prep.ids.length,
      newTokens: generated.length,
      preprocessMs: tPrepared - t0,
      visionMs,
      prefillMs,
      prefillTokensPerSecond: (prep.ids.length / prefillMs) * 1000,
      timeToFirstTokenMs: tFirst - t0,
      decodeTokensPerSecond: generated.length > 1 ? ((generated.length - 1) / decodeMs) * 1000 : 0,
      seed: sampler.settings.temperature > 0 ? sampler.seed : null,
      stop,
    },
  };
}

/** The stats as one line for a person. */
export function formatStats(s: ChatStats): string {
  const ms = (x: number) => (x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${x.toFixed(0)} ms`);
  const parts = [
    `${s.promptTokens} prompt tokens, ${s.newTokens} new (${s.stop})`,
    `preprocess ${ms(s.preprocessMs)}`,
    s.visionMs > 0 ? `vision ${ms(s.visionMs)}` : '',
    `prefill ${s.prefillTokensPerSecond.toFixed(1)} tok/s`,
    `first token ${ms(s.timeToFirstTokenMs)}`,
    s.newTokens > 1 ? `decode ${s.decodeTokensPerSecond.toFixed(2)} tok/s` : '',
    s.seed !== null ? `seed ${s.seed}` : '',
  ];
  return parts.filter(Boolean).join(' | ');
}
