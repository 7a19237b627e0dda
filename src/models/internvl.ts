// PVC-InternVL2 / InternVL2: vision tower + projector + InternLM2, composed as in
// pvc-architecture.md sections 4 and 7. Images become static videos (each tile repeated
// image_repeat_time times, one temporal sequence per tile); a video's frames form one sequence.
// The vision rows replace the <IMG_CONTEXT> rows of the prompt's embeddings, in order.

import type { Gpu } from '../gpu/device.js';
import type { Recorder, TypedArray } from '../gpu/recorder.js';
import type { Tensor } from '../gpu/tensor.js';
import { argmax } from '../ops/reduce.js';
import { loadConfig, type ModelConfig } from '../weights/config.js';
import { Checkpoint, type TensorInfo } from '../weights/safetensors.js';
import { quantizeRule, type QuantDType } from '../weights/quantize.js';
import { isVectorLike, uploadTensors, type UploadProgress } from '../weights/upload.js';
import { InternLM2, type KvCache } from './internlm2.js';
import { InternViT, type Tap } from './internvit.js';
import { Projector } from './projector.js';
import { frameTimes, resolveSwitches, sinusoid, type PvcSwitches } from './switches.js';
import { WeightStore } from './weights.js';

export const IMG_CONTEXT_ID = 92546;

/** One image (its tiles, thumbnail last) or one video (its frames), as consecutive tiles of pixel_values. */
export interface VisualItem {
  kind: 'image' | 'video';
  tiles: number;
}

/** A tensor captured at a stage boundary: rows of all sequences concatenated in processing order. */
export interface Stage {
  shape: number[];
  data: Float32Array;
}

export interface LoadOptions {
  switches?: Partial<PvcSwitches>;
  /** LLM weights as in the checkpoint (bf16, default) or quantized at load (docs/quantization.md) */
  dtype?: 'bf16' | QuantDType;
  onProgress?: (p: UploadProgress) => void;
}

export class InternVL {
  private constructor(
    readonly gpu: Gpu,
    readonly config: ModelConfig,
    readonly switches: PvcSwitches,
    readonly vision: InternViT,
    readonly projector: Projector,
    readonly llm: InternLM2,
  ) {}

  /** Build the modules from the checkpoint's tensors; names are checked before anything is uploaded. */
  static async load(gpu: Gpu, dir: string, opts: LoadOptions = {}): Promise<InternVL> {
    const config = await loadConfig(dir);
    const switches = resolveSwitches(opts.switches);
    const ckpt = await Checkpoint.open(dir);
    // a dry build over the headers: missing and unknown tensors fail here, before any upload
    const dry = new WeightStore(ckpt.tensors as ReadonlyMap<string, unknown> as ReadonlyMap<string, Tensor>);
    InternVL.build(gpu, config, switches, dry);
    dry.assertComplete();
    const widen = (t: TensorInfo) => isVectorLike(t) || t.name.endsWith('position_embedding');
    const tensors = await uploadTensors(gpu, ckpt, { widen, quantize: quantizeRule(opts.dtype ?? 'bf16'), onProgress: opts.onProgress });
    return InternVL.build(gpu, config, switches, new WeightStore(tensors));
  }

  private static build(gpu: Gpu, config: ModelConfig, switches: PvcSwitches, w: WeightStore): InternVL {
    const model = new InternVL(gpu, config, switches, new InternViT(config.vision, w, switches), new Projector(config, w), new InternLM2(config.llm, w));
    if (config.useTemporal !== model.vision.temporal) {
      throw new Error(`config use_temporal=${config.useTemporal} but the checkpoint ${model.vision.temporal ? 'has' : 'has no'} temporal modules`);
    }
    return model;
  }

  /** Vision rows each item contributes (the <IMG_CONTEXT> count of its placeholder). */
  rowsFor(item: VisualItem): number {
    return this.framesOf(item).reduce((n, seq) => n + seq.length, 0) * this.config.numImageToken;
  }

  /** The temporal sequences of an item: for each, the tile index (within the item) of each frame. */
  private framesOf(item: VisualItem): number[][] {
    if (item.kind === 'video') {
      if (this.config.videoRepeatTime !== 1) throw new Error(`video_repeat_time ${this.config.videoRepeatTime} is not supported (its semantics are unknown; see pvc-architecture.md 4.2)`);
      return [Array.from({ length: item.tiles }, (_, f) => f)];
    }
    const repeat = this.vision.temporal ? this.config.imageRepeatTime : 1;
    return Array.from({ length: item.tiles }, (_, t) => Array(repeat).fill(t));
  }

  /**
   * Prefill: vision rows for `items` (tiles of `pixelValues` [tiles, 3, S, S] in item order) merged
   * into the embeddings of `ids`, then the whole prompt through the LLM. Records into `rec`; tensors
   * the step needs are uploaded first. Returns the logits (last row, or all rows with `allLogits`).
   * With `timeVision`, the vision part is submitted on its own and waited for, and `visionMs` gives
   * its time from the call (pixel uploads included).
   */
  async prefill(
    ids: Int32Array,
    pixelValues: Float32Array,
    items: VisualItem[],
    cache: KvCache,
    opts: { allLogits?: boolean; taps?: Map<string, Stage>; timeVision?: boolean } = {},
  ): Promise<{ logits: Tensor; frames: number[]; visionMs?: number }> {
    const start = performance.now();
    const { gpu, config } = this;
    const s = config.imageSize;
    const tileFloats = 3 * s * s;
    const totalTiles = items.reduce((n, it) => n + it.tiles, 0);
    if (pixelValues.length !== totalTiles * tileFloats) throw new Error(`pixel values hold ${pixelValues.length / tileFloats} tiles of ${s}x${s}; the visual items need ${totalTiles}`);
    const expected = items.reduce((n, it) => n + this.rowsFor(it), 0);
    const contexts = ids.reduce((n, id) => n + (id === IMG_CONTEXT_ID ? 1 : 0), 0);
    if (contexts !== expected) throw new Error(`the prompt has ${contexts} <IMG_CONTEXT> tokens but the images/videos give ${expected} vision rows`);
    if (cache.length + ids.length > cache.maxLen) throw new Error(`the prompt (${ids.length} tokens) does not fit the context (${cache.maxLen - cache.length} positions left)`);

    // Uploads happen before recording: a queue write must not overtake dispatches of the same step.
    const sequences: { pixels: Tensor; times: Tensor | null; frames: number[]; item: number; tileBase: number }[] = [];
    let tileBase = 0;
    for (const [itemIndex, item] of items.entries()) {
      for (const tiles of this.framesOf(item)) {
        const px = new Float32Array(tiles.length * tileFloats);
        tiles.forEach((t, f) => px.set(pixelValues.subarray((tileBase + t) * tileFloats, (tileBase + t + 1) * tileFloats), f * tileFloats));
        const times = this.vision.temporal ? await gpu.upload([tiles.length, 256], 'f32', sinusoid(frameTimes(tiles.length, this.switches.timestamp), 256, this.switches.sinusoid_order), 'timestamps') : null;
        sequences.push({ pixels: await gpu.upload([tiles.length, 3, s, s], 'f32', px, 'pixels'), times, frames: tiles.map((t) => tileBase + t), item: itemIndex, tileBase });
      }
      tileBase += item.tiles;
    }
    const idTensor = await gpu.upload([ids.length], 'i32', ids, 'ids');

    const pending = new Map<string, { shape: number[]; reads: Promise<TypedArray>[] }>();
    const tap: Tap | undefined = opts.taps
      ? (name, t) => {
          const e = pending.get(name) ?? { shape: [0, ...t.shape.slice(1)], reads: [] };
          e.shape[0] += t.shape[0];
          e.reads.push(rec.read(t));
          pending.set(name, e);
        }
      : undefined;
    let rec = gpu.recorder();
    let logits: Tensor;
    let visionMs: number | undefined;
    try {
      const perSequence = sequences.map((seq) => {
        const vit = this.vision.forward(rec, seq.pixels, seq.times, tap);
        const rows = this.projector.forward(rec, vit, seq.frames.length, tap);
        vit.release();
        return rows;
      });
      if (opts.timeVision) {
        // its own submit, waited for, so the vision tower's time can be told apart from the LLM's
        await rec.submit();
        await gpu.sync();
        visionMs = performance.now() - start;
        rec = gpu.recorder();
      }
      const embeds = this.llm.embed(rec, idTensor);
      this.mergeVisionRows(rec, embeds, ids, this.orderRows(sequences, perSequence), tap);
      for (const r of perSequence) r.release();
      tap?.('llm.inputs_embeds', embeds);
      logits = this.llm.forward(rec, embeds, cache, { allLogits: opts.allLogits, tap });
      embeds.release();
      if (opts.allLogits) tap?.('llm.logits', logits);
    } catch (e) {
      await rec.abort();
      throw e;
    } finally {
      for (const seq of sequences) {
        seq.pixels.release();
        seq.times?.release();
      }
      idTensor.release();
    }
    await rec.submit();
    if (opts.taps) {
      for (const [name, e] of pending) {
        const parts = (await Promise.all(e.reads)) as Float32Array[];
        const data = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
        let o = 0;
        for (const p of parts) {
          data.set(p, o);
          o += p.length;
        }
        opts.taps.set(name, { shape: e.shape, data });
      }
    }
    return { logits, frames: sequences.flatMap((s) => s.frames), visionMs };
  }

  /** Vision row blocks (one per frame of each sequence) in LLM order, per the image_frame_order switch. */
  private orderRows(sequences: { frames: number[]; item: number }[], rows: Tensor[]): { tensor: Tensor; row: number }[] {
    const t = this.config.numImageToken;
    const blocks: { tensor: Tensor; row: number }[] = [];
    for (let item = 0, i = 0; i < sequences.length; item++) {
      const group: number[] = [];
      while (i < sequences.length && sequences[i].item === item) group.push(i++);
      const frameMajor = this.switches.image_frame_order === 'frame_major' && group.length > 1;
      const frames = sequences[group[0]]?.frames.length ?? 0;
      if (frameMajor) for (let f = 0; f < frames; f++) for (const g of group) blocks.push({ tensor: rows[g], row: f * t });
      else for (const g of group) for (let f = 0; f < sequences[g].frames.length; f++) blocks.push({ tensor: rows[g], row: f * t });
    }
    return blocks;
  }

  /** Copy vision row blocks over the <IMG_CONTEXT> rows of embeds, in order. */
  private mergeVisionRows(rec: Recorder, embeds: Tensor, ids: Int32Array, blocks: { tensor: Tensor; row: number }[], tap?: Tap): void {
    const d = this.config.llm.hiddenSize;
    const t = this.config.numImageToken;
    const rowBytes = d * 4;
    const positions: number[] = [];
    ids.forEach((id, i) => id === IMG_CONTEXT_ID && positions.push(i));
    if (tap && blocks.length) {
      const features = rec.gpu.empty([blocks.length * t, d], 'f32', 'vision features');
      blocks.forEach((b, i) => rec.copyBuffer(b.tensor.buffer, b.row * rowBytes, features.buffer, i * t * rowBytes, t * rowBytes));
      tap('vision.features', features);
      features.release();
    }
    let next = 0;
    for (const b of blocks) {
      for (let r = 0; r < t; ) {
        // copy the longest run of consecutive context positions at once
        let run = 1;
        while (r + run < t && positions[next + run] === positions[next] + run) run++;
        rec.copyBuffer(b.tensor.buffer, (b.row + r) * rowBytes, embeds.buffer, positions[next] * rowBytes, run * rowBytes);
        r += run;
        next += run;
      }
    }
  }

  /** Greedy next token from logits [rows, V] (last row): 4 bytes read back. */
  async argmaxLast(logits: Tensor): Promise<number> {
    const out = await this.gpu.step((rec) => {
      const idx = argmax(rec, logits);
      return rec.read(idx).finally(() => idx.release());
    });
    return out[out.length - 1];
  }

  /** One decode step: the token at the cache's next position; returns its logits [1, V]. */
  async decode(token: number, cache: KvCache): Promise<Tensor> {
    const id = await this.gpu.upload([1], 'i32', Int32Array.of(token), 'token');
    try {
      return await this.gpu.step((rec) => {
        const x = this.llm.embed(rec, id);
        const logits = this.llm.forward(rec, x, cache);
        x.release();
        return logits;
      });
    } finally {
      id.release();
    }
  }

  /** Greedy generation after a prefill; stops after emitting any of `stopIds` (included, as HF generate does). */
  async greedy(firstLogits: Tensor, cache: KvCache, maxNewTokens: number, stopIds: readonly number[]): Promise<number[]> {
    const out: number[] = [];
    let logits = firstLogits;
    for (let i = 0; i < maxNewTokens; i++) {
      const next = await this.argmaxLast(logits);
      logits.release();
      out.push(next);
      if (stopIds.includes(next) || i + 1 === maxNewTokens || cache.length >= cache.maxLen) return out;
      logits = await this.decode(next, cache);
    }
    return out;
  }
}
