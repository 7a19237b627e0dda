// The engine's side of parity: prepare a case's inputs (from files, as the reference's make_dumps.py
// does, or from a dump's recorded inputs), run prefill with every stage tapped plus greedy decoding,
// and return the result as a dump in DESIGN.md format.

import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import type { InternVL, Stage, VisualItem } from '../models/internvl.js';
import { loadImage } from '../preprocess/image.js';
import { loadVideo } from '../preprocess/video.js';
import { buildPrompt, multiImagePrefix, videoPrefix } from '../text/template.js';
import type { Tokenizer } from '../text/tokenizer.js';
import { stageOrder, takeRows } from './compare.js';
import { floatTensor, idTensor, type Dump, type DumpTensor } from './dump.js';

/** Stop ids of the reference's greedy loop (and of HF generate in the parity kit): <|im_end|> and </s>. */
export const STOP_IDS = [92542, 2] as const;

export const CASES = ['text', 'image', 'two_images', 'video'] as const;
export type CaseName = (typeof CASES)[number];

/** The questions of test/reference/make_dumps.py, so engine and reference dumps of a case share a prompt. */
export const QUESTIONS: Record<CaseName, string> = {
  text: 'Write a short poem about the sea.',
  image: 'Please describe the image in detail.',
  two_images: 'What are the similarities and differences between these two images?',
  video: 'What is happening in this video?',
};

export interface CaseInputs {
  case: string;
  prompt: string;
  ids: Int32Array;
  /** [tiles, 3, S, S] normalised tiles, or null for a text-only prompt */
  pixels: { shape: number[]; data: Float32Array } | null;
  items: VisualItem[];
  /** metadata `inputs`: what the pixels came from */
  notes: Record<string, unknown>;
}

export interface CaseFiles {
  case: CaseName;
  question?: string;
  images?: string[];
  video?: string;
  frames?: number;
  maxTiles?: number;
  system?: string;
}

/** Tokenize, preprocess and render the template for a case, as make_dumps.py does. */
export async function prepareCase(model: InternVL, tokenizer: Tokenizer, f: CaseFiles): Promise<CaseInputs> {
  const cfg = model.config;
  const question = f.question ?? QUESTIONS[f.case];
  let prefix = '';
  let pixels: CaseInputs['pixels'] = null;
  let items: VisualItem[] = [];
  let rows: number[] = [];
  let notes: Record<string, unknown> = {};
  if (f.case === 'video') {
    if (!f.video) throw new Error('case video needs --video FILE');
    const v = await loadVideo(f.video, { frames: f.frames ?? 8, imageSize: cfg.imageSize });
    pixels = { shape: v.shape, data: v.data };
    items = [{ kind: 'video', tiles: v.shape[0] }];
    prefix = videoPrefix(v.shape[0]);
    rows = v.indices.map(() => model.rowsFor({ kind: 'video', tiles: 1 }));
    notes = { frame_indices: v.indices, video: basename(f.video) };
  } else if (f.case !== 'text') {
    const paths = f.images ?? [];
    if (paths.length === 0) throw new Error(`case ${f.case} needs --image FILE (repeat it for several images)`);
    const maxTiles = cfg.dynamicImageSize ? Math.min(cfg.maxDynamicPatch, f.maxTiles ?? 4) : 1;
    const images = [];
    for (const p of paths) {
      images.push(await loadImage(await readFile(p), { imageSize: cfg.imageSize, maxTiles, minTiles: cfg.minDynamicPatch, useThumbnail: cfg.useThumbnail && cfg.dynamicImageSize }));
    }
    const tiles = images.map((im) => im.shape[0]);
    const data = new Float32Array(images.reduce((n, im) => n + im.data.length, 0));
    images.reduce((o, im) => (data.set(im.data, o), o + im.data.length), 0);
    pixels = { shape: [tiles.reduce((a, b) => a + b, 0), ...images[0].shape.slice(1)], data };
    items = tiles.map((t) => ({ kind: 'image', tiles: t }));
    prefix = paths.length === 1 ? '<image>\n' : multiImagePrefix(paths.length);
    rows = items.map((it) => model.rowsFor(it));
    notes = { images: paths.map((p) => basename(p)), max_tiles: maxTiles, tiles_per_image: tiles };
  }
  const prompt = buildPrompt(prefix + question, { systemMessage: f.system, imageRows: rows });
  return { case: f.case, prompt, ids: Int32Array.from(tokenizer.encode(prompt)), pixels, items, notes };
}

/** A dump's recorded inputs: ids, pixel values, and the visual items from its case and `inputs` metadata. */
export function inputsFromDump(dump: Dump, source = 'dump'): CaseInputs {
  const ids = Int32Array.from(idTensor(dump, 'input.ids', source));
  const pixels = dump.tensors.has('input.pixel_values') ? floatTensor(dump, 'input.pixel_values', source) : null;
  const kase = dump.metadata.case ?? '';
  const notes = JSON.parse(dump.metadata.inputs || '{}') as Record<string, unknown>;
  const tiles = pixels?.shape[0] ?? 0;
  let items: VisualItem[] = [];
  if (tiles && kase === 'video') items = [{ kind: 'video', tiles }];
  else if (tiles) {
    const perImage = Array.isArray(notes.tiles_per_image) ? (notes.tiles_per_image as number[]) : [tiles];
    if (perImage.reduce((a, b) => a + b, 0) !== tiles) throw new Error(`${source}: inputs.tiles_per_image [${perImage.join(', ')}] does not add up to the ${tiles} tiles of input.pixel_values`);
    items = perImage.map((t) => ({ kind: 'image', tiles: t }));
  }
  return { case: kase, prompt: dump.metadata.prompt ?? '', ids, pixels, items, notes };
}

/**
 * For each frame in LLM row order, its index in the engine's processing order (one temporal
 * sequence after another: an image tile's repeated frames, or a video's frames). Mirrors the
 * reference's image_plan / video_plan: tile_major keeps the processing order; frame_major takes
 * frame r of every tile of an image before frame r + 1.
 */
export function llmFrameOrder(model: InternVL, items: VisualItem[]): number[] {
  const repeat = model.vision.temporal ? model.config.imageRepeatTime : 1;
  const frameMajor = model.switches.image_frame_order === 'frame_major';
  const order: number[] = [];
  let at = 0;
  for (const item of items) {
    if (item.kind === 'video') {
      for (let f = 0; f < item.tiles; f++) order.push(at + f);
      at += item.tiles;
      continue;
    }
    if (frameMajor) for (let r = 0; r < repeat; r++) for (let t = 0; t < item.tiles; t++) order.push(at + t * repeat + r);
    else for (let i = 0; i < item.tiles * repeat; i++) order.push(at + i);
    at += item.tiles * repeat;
  }
  return order;
}

/**
 * Run a case on the engine: prefill with every stage tapped (all prompt logits included), then greedy
 * decoding of up to `maxNewTokens` (stopping after a stop id). `logitsLast` keeps only the last K
 * prompt rows of llm.logits (metadata logits_rows says which); with K = 1 the engine never
 * materialises the [N, V] logits (1.2 GB for a 3000-token prompt of the real model).
 */
export async function runCase(model: InternVL, inputs: CaseInputs, opts: { maxNewTokens: number; logitsLast?: number }): Promise<Dump> {
  const { gpu } = model;
  const taps = new Map<string, Stage>();
  const cache = model.llm.newCache(gpu, inputs.ids.length + opts.maxNewTokens);
  const allLogits = opts.logitsLast !== 1;
  let generated: number[];
  let frames: number[];
  try {
    const out = await model.prefill(inputs.ids, inputs.pixels?.data ?? new Float32Array(0), inputs.items, cache, { allLogits, taps });
    frames = out.frames;
    if (!allLogits) taps.set('llm.logits', { shape: [...out.logits.shape], data: (await gpu.read(out.logits)) as Float32Array });
    generated = await model.greedy(out.logits, cache, opts.maxNewTokens, STOP_IDS);
  } finally {
    cache.release();
  }

  const tensors = new Map<string, DumpTensor>();
  if (inputs.pixels) tensors.set('input.pixel_values', inputs.pixels);
  tensors.set('input.ids', { shape: [inputs.ids.length], data: BigInt64Array.from(inputs.ids, (v) => BigInt(v)) });
  const order = llmFrameOrder(model, inputs.items);
  if (order.length !== frames.length) throw new Error(`the engine processed ${frames.length} frames; the frame plan has ${order.length}`);
  if (frames.length) tensors.set('vision.frames', { shape: [frames.length], data: BigInt64Array.from(order, (i) => BigInt(frames[i])) });
  const metadata: Record<string, string> = {};
  for (const name of [...taps.keys()].sort(stageOrder)) {
    const t = taps.get(name)!;
    if (name === 'llm.logits') {
      const [rows, v] = t.shape;
      const n = inputs.ids.length; // rows hold prompt positions n - rows .. n - 1
      const first = opts.logitsLast ? Math.max(0, n - opts.logitsLast) : 0;
      tensors.set(name, { shape: [n - first, v], data: t.data.slice((first - (n - rows)) * v) });
      if (opts.logitsLast) metadata.logits_rows = JSON.stringify([first, n]);
    } else if (name.startsWith('vision.') && name !== 'vision.features') {
      // rows of every frame concatenated -> [F, ...] in LLM frame order
      const f = frames.length;
      const shape = name === 'vision.pixel_shuffle' ? t.shape : name === 'vision.temporal_embedding' ? [f, t.shape[1]] : [f, t.shape[0] / f, t.shape[1]];
      tensors.set(name, { shape, data: takeRows(t.data, f, order) });
    } else tensors.set(name, t);
  }
  tensors.set('generate.ids', { shape: [generated.length], data: BigInt64Array.from(generated, (v) => BigInt(v)) });
  return {
    tensors,
    metadata: {
      case: inputs.case,
      prompt: inputs.prompt,
      model_type: model.config.modelType,
      switches: JSON.stringify(Object.fromEntries(Object.entries(model.switches).sort(([a], [b]) => a.localeCompare(b)))),
      inputs: JSON.stringify(Object.fromEntries(Object.entries(inputs.notes).sort(([a], [b]) => a.localeCompare(b)))),
      ...metadata,
      source: 'engine',
    },
  };
}
