// The visual plan: built once from the media of a turn and read by prompt building (rows per
// placeholder), prefill (the vision sequences and the LLM's order of their frames) and the parity
// engine (which tile each frame came from). pvc-architecture.md 4.2 and 7: an image is a static
// video (each tile repeated image_repeat_time times on temporal checkpoints, one temporal sequence
// per tile); a video's frames form one sequence.

import type { ModelConfig } from '../weights/config.js';
import type { PvcSwitches } from './switches.js';

/** One image (its tiles, thumbnail last) or one video (its frames): pixels [tiles, 3, S, S], normalised. */
export interface Media {
  kind: 'image' | 'video';
  tiles: number;
  pixels: Float32Array;
}

/** One temporal sequence through the vision tower. */
export interface VisionSequence {
  media: number;
  /** pixels [frames, 3, S, S] (a view of the media's pixels when no tile repeats) */
  pixels: Float32Array;
  /** per frame: the tile it shows, counted over all the plan's media in order */
  tiles: number[];
  /** processing index of its first frame (sequences run one after another) */
  firstFrame: number;
}

export interface VisualPlan {
  media: readonly Media[];
  sequences: VisionSequence[];
  /** for each block of numImageToken LLM rows, in prompt order: the processing index of its frame */
  llmFrames: number[];
  /** <IMG_CONTEXT> rows per <image> placeholder, in prompt order (one per image, one per video frame) */
  placeholderRows: number[];
  rowsPerFrame: number;
  /** total vision rows (= <IMG_CONTEXT> tokens of the prompt) */
  rows: number;
}

/** What the plan reads from a model (an InternVL): its config, switches and whether its vision tower has temporal layers. */
export interface PlanModel {
  config: ModelConfig;
  switches: PvcSwitches;
  vision: { temporal: boolean };
}

export function planVisuals(model: PlanModel, media: readonly Media[]): VisualPlan {
  const { config, switches } = model;
  const tileFloats = 3 * config.imageSize ** 2;
  const t = config.numImageToken;
  const sequences: VisionSequence[] = [];
  const llmFrames: number[] = [];
  const placeholderRows: number[] = [];
  let tileBase = 0;
  let frame = 0;
  media.forEach((m, index) => {
    if (m.pixels.length !== m.tiles * tileFloats) throw new Error(`media ${index}: ${m.pixels.length} pixel values for ${m.tiles} tiles of ${config.imageSize}x${config.imageSize}`);
    if (m.kind === 'video') {
      if (config.videoRepeatTime !== 1) throw new Error(`video_repeat_time ${config.videoRepeatTime} is not supported (its semantics are unknown; see pvc-architecture.md 4.2)`);
      sequences.push({ media: index, pixels: m.pixels, tiles: range(m.tiles).map((f) => tileBase + f), firstFrame: frame });
      llmFrames.push(...range(m.tiles).map((f) => frame + f));
      placeholderRows.push(...range(m.tiles).map(() => t));
      frame += m.tiles;
    } else {
      const repeat = model.vision.temporal ? config.imageRepeatTime : 1;
      const first = frame;
      for (let tile = 0; tile < m.tiles; tile++) {
        const one = m.pixels.subarray(tile * tileFloats, (tile + 1) * tileFloats);
        const pixels = repeat === 1 ? one : new Float32Array(repeat * tileFloats);
        if (repeat > 1) for (let r = 0; r < repeat; r++) pixels.set(one, r * tileFloats);
        sequences.push({ media: index, pixels, tiles: Array(repeat).fill(tileBase + tile), firstFrame: frame });
        frame += repeat;
      }
      // tile_major keeps the processing order; frame_major takes frame r of every tile before frame r + 1
      if (switches.image_frame_order === 'frame_major') for (let r = 0; r < repeat; r++) for (let tile = 0; tile < m.tiles; tile++) llmFrames.push(first + tile * repeat + r);
      else llmFrames.push(...range(m.tiles * repeat).map((f) => first + f));
      placeholderRows.push(m.tiles * repeat * t);
    }
    tileBase += m.tiles;
  });
  return { media, sequences, llmFrames, placeholderRows, rowsPerFrame: t, rows: llmFrames.length * t };
}

/** Per frame in processing order: which sequence and which frame of it. */
export function processingFrames(plan: VisualPlan): { sequence: number; frame: number }[] {
  return plan.sequences.flatMap((s, sequence) => s.tiles.map((_, frame) => ({ sequence, frame })));
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/**
 * How one temporal sequence of `frames` frames is split so that no vision activation exceeds one
 * storage binding of `maxBindingBytes`: frames per chunk (the largest per-frame tensor: pixels,
 * patch-embedding columns, qkv, the MLP's hidden layer, the projector's rows, all f32) and token
 * positions per temporal-attention step (its gathered [frames, positions, 3C] qkv).
 */
export function visionChunking(config: ModelConfig, frames: number, maxBindingBytes: number): { frames: number; temporalTokens: number } {
  const v = config.vision;
  const patches = (v.imageSize / v.patchSize) ** 2;
  const tokens = 1 + patches;
  const k = 1 / config.downsampleRatio;
  const perFrame = 4 * Math.max(3 * v.imageSize ** 2, patches * 3 * v.patchSize ** 2, tokens * Math.max(3 * v.hiddenSize, v.intermediateSize), config.numImageToken * Math.max(v.hiddenSize * k * k, config.llm.hiddenSize));
  const perChunk = Math.floor(maxBindingBytes / perFrame);
  const perPosition = 4 * frames * 3 * v.hiddenSize;
  const temporalTokens = Math.min(tokens, Math.floor(maxBindingBytes / perPosition));
  if (perChunk < 1 || temporalTokens < 1) {
    throw new Error(`the vision tower cannot fit ${perChunk < 1 ? `one frame (${perFrame} bytes)` : `${frames} frames at one position (${perPosition} bytes)`} in a storage binding of ${maxBindingBytes} bytes: use fewer frames`);
  }
  return { frames: Math.min(frames, perChunk), temporalTokens };
}
