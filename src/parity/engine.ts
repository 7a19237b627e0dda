// The engine's side of parity: prepare a case's inputs (from files, as the reference's make_dumps.py
// does, or from a dump's recorded inputs), run prefill with every stage tapped plus greedy decoding
// (the decode loop chat uses), and return the result as a dump in DESIGN.md format.

import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { decodeTokens } from '../generate/decode.js';
import { Sampler } from '../generate/sampler.js';
import type { Recorder, TypedArray } from '../gpu/recorder.js';
import type { Tensor } from '../gpu/tensor.js';
import type { Collector, InternVL, Stage } from '../models/internvl.js';
import { planVisuals, type Media } from '../models/plan.js';
import { loadImage } from '../preprocess/image.js';
import { loadVideo } from '../preprocess/video.js';
import { buildPrompt, multiImagePrefix, videoPrefix } from '../text/template.js';
import type { Tokenizer } from '../text/tokenizer.js';
import { stageOrder, takeRows } from './compare.js';
import { floatTensor, idTensor, type Dump, type DumpTensor } from './dump.js';

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
  /** the images or the video, their pixels views of `pixels` */
  media: Media[];
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
  let media: Media[] = [];
  let notes: Record<string, unknown> = {};
  if (f.case === 'video') {
    if (!f.video) throw new Error('case video needs --video FILE');
    const v = await loadVideo(f.video, { frames: f.frames ?? 8, imageSize: cfg.imageSize });
    media = [{ kind: 'video', tiles: v.shape[0], pixels: v.data }];
    prefix = videoPrefix(v.shape[0]);
    notes = { frame_indices: v.indices, video: basename(f.video) };
  } else if (f.case !== 'text') {
    const paths = f.images ?? [];
    if (paths.length === 0) throw new Error(`case ${f.case} needs --image FILE (repeat it for several images)`);
    const maxTiles = cfg.dynamicImageSize ? Math.min(cfg.maxDynamicPatch, f.maxTiles ?? 4) : 1;
    for (const p of paths) {
      const im = await loadImage(await readFile(p), { imageSize: cfg.imageSize, maxTiles, minTiles: cfg.minDynamicPatch, useThumbnail: cfg.useThumbnail && cfg.dynamicImageSize });
      media.push({ kind: 'image', tiles: im.shape[0], pixels: im.data });
    }
    prefix = paths.length === 1 ? '<image>\n' : multiImagePrefix(paths.length);
    notes = { images: paths.map((p) => basename(p)), max_tiles: maxTiles, tiles_per_image: media.map((m) => m.tiles) };
  }
  const rows = media.length ? planVisuals(model, media).placeholderRows : [];
  const prompt = buildPrompt(prefix + question, { systemMessage: f.system, imageRows: rows });
  const tiles = media.reduce((n, m) => n + m.tiles, 0);
  const data = new Float32Array(media.reduce((n, m) => n + m.pixels.length, 0));
  media.reduce((o, m) => (data.set(m.pixels, o), o + m.pixels.length), 0);
  const pixels = tiles ? { shape: [tiles, 3, cfg.imageSize, cfg.imageSize], data } : null;
  return { case: f.case, prompt, ids: Int32Array.from(tokenizer.encode(prompt)), pixels, media: mediaOf(pixels, media.map((m) => ({ kind: m.kind, tiles: m.tiles }))), notes };
}

/** Media over the tiles of `pixels`, in order (views, no copy). */
function mediaOf(pixels: CaseInputs['pixels'], items: { kind: Media['kind']; tiles: number }[]): Media[] {
  if (!pixels) return [];
  const tileFloats = pixels.data.length / pixels.shape[0];
  let at = 0;
  return items.map(({ kind, tiles }) => ({ kind, tiles, pixels: pixels.data.subarray(at * tileFloats, (at += tiles) * tileFloats) }));
}

/** A dump's recorded inputs: ids, pixel values, and the visual items from its case and `inputs` metadata. */
export function inputsFromDump(dump: Dump, source = 'dump'): CaseInputs {
  const ids = Int32Array.from(idTensor(dump, 'input.ids', source));
  const pixels = dump.tensors.has('input.pixel_values') ? floatTensor(dump, 'input.pixel_values', source) : null;
  const kase = dump.metadata.case ?? '';
  const notes = JSON.parse(dump.metadata.inputs || '{}') as Record<string, unknown>;
  const tiles = pixels?.shape[0] ?? 0;
  let items: { kind: Media['kind']; tiles: number }[] = [];
  if (tiles && kase === 'video') items = [{ kind: 'video', tiles }];
  else if (tiles) {
    const perImage = Array.isArray(notes.tiles_per_image) ? (notes.tiles_per_image as number[]) : [tiles];
    if (perImage.reduce((a, b) => a + b, 0) !== tiles) throw new Error(`${source}: inputs.tiles_per_image [${perImage.join(', ')}] does not add up to the ${tiles} tiles of input.pixel_values`);
    items = perImage.map((t) => ({ kind: 'image', tiles: t }));
  }
  return { case: kase, prompt: dump.metadata.prompt ?? '', ids, pixels, media: mediaOf(pixels, items), notes };
}

/** Stage tensors read back at their boundaries; a stage met several times (one per sequence or prefill chunk) gets its rows appended. */
class StageTaps implements Collector {
  private readonly pending = new Map<string, { shape: number[]; reads: Promise<TypedArray>[] }>();

  tap(rec: Recorder, name: string, t: Tensor): void {
    const e = this.pending.get(name) ?? { shape: [0, ...t.shape.slice(1)], reads: [] };
    e.shape[0] += t.shape[0];
    e.reads.push(rec.read(t));
    this.pending.set(name, e);
  }

  async stages(): Promise<Map<string, Stage>> {
    const out = new Map<string, Stage>();
    for (const [name, e] of this.pending) {
      const parts = (await Promise.all(e.reads)) as Float32Array[];
      const data = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
      parts.reduce((o, p) => (data.set(p, o), o + p.length), 0);
      out.set(name, { shape: e.shape, data });
    }
    return out;
  }
}

/**
 * Run a case on the engine: prefill with every stage tapped (all prompt logits included), then greedy
 * decoding of up to `maxNewTokens` (stopping after a stop id). `logitsLast` keeps only the last K
 * prompt rows of llm.logits (metadata logits_rows says which); with K = 1 the engine never
 * materialises the [N, V] logits (1.2 GB for a 3000-token prompt of the real model).
 */
export async function runCase(model: InternVL, inputs: CaseInputs, opts: { maxNewTokens: number; logitsLast?: number }): Promise<Dump> {
  const { gpu } = model;
  const plan = inputs.media.length ? planVisuals(model, inputs.media) : null;
  const collector = new StageTaps();
  const cache = model.llm.newCache(gpu, inputs.ids.length + opts.maxNewTokens);
  const allLogits = opts.logitsLast !== 1;
  const generated: number[] = [];
  let taps: Map<string, Stage>;
  try {
    const logits = await model.prefill(inputs.ids, plan, cache, { allLogits, collector });
    taps = await collector.stages();
    if (!allLogits) taps.set('llm.logits', { shape: [...logits.shape], data: (await gpu.read(logits)) as Float32Array });
    const stopIds = new Set(model.stopIds);
    for await (const id of decodeTokens(model, cache, logits, { maxNewTokens: opts.maxNewTokens, room: opts.maxNewTokens, stopIds, sampler: new Sampler() })) generated.push(id);
  } finally {
    cache.release();
  }

  const tensors = new Map<string, DumpTensor>();
  if (inputs.pixels) tensors.set('input.pixel_values', inputs.pixels);
  tensors.set('input.ids', { shape: [inputs.ids.length], data: BigInt64Array.from(inputs.ids, (v) => BigInt(v)) });
  // per frame in processing order, the tile it shows; per LLM row block, its frame
  const frames = plan?.sequences.flatMap((s) => s.tiles) ?? [];
  const order = plan?.llmFrames ?? [];
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
