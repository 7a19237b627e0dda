// PVC-InternVL2 / InternVL2: vision tower + projector + InternLM2, composed as in
// pvc-architecture.md sections 4 and 7. The visual plan (plan.ts) says which frames form each
// temporal sequence and where their rows go; the vision rows replace the <IMG_CONTEXT> rows of the
// prompt's embeddings, in order. Generation (the decode loop, sampling, chat) is src/generate's.

import type { Gpu } from '../gpu/device.js';
import type { Recorder, TypedArray } from '../gpu/recorder.js';
import { argmax, NON_FINITE_BIT, NonFiniteError } from '../ops/reduce.js';
import { scope } from '../gpu/scope.js';
import type { Tensor } from '../gpu/tensor.js';
import { Tokenizer } from '../text/tokenizer.js';
import { loadConfig, type LlmConfig, type ModelConfig } from '../weights/config.js';
import { Checkpoint, type TensorInfo } from '../weights/safetensors.js';
import { quantizeRule, type QuantDType } from '../weights/quantize.js';
import type { QuantCacheOptions } from '../weights/quant-cache.js';
import { isVectorLike, uploadTensors, type UploadProgress } from '../weights/upload.js';
import { InternLM2, type KvCache } from './internlm2.js';
import { InternViT, type Tap } from './internvit.js';
import { processingFrames, visionChunking, type VisualPlan } from './plan.js';
import { Projector } from './projector.js';
import { frameTimes, resolveSwitches, sinusoid, type PvcSwitches } from './switches.js';
import { WeightStore } from './weights.js';

/** A tensor captured at a stage boundary: rows of all sequences concatenated in processing order. */
export interface Stage {
  shape: number[];
  data: Float32Array;
}

/** What a caller collects from a prefill: stage tensors (parity taps) and the vision tower's time. */
export interface Collector {
  /** called while recording, at each stage boundary; a stage met several times (one per sequence or chunk) adds rows */
  tap?(rec: Recorder, name: string, t: Tensor): void;
  /** the vision part's wall time from the prefill call (pixel uploads included); asking for it waits for the vision steps */
  visionMs?(ms: number): void;
  /** run each vision step profiled (every dispatch in its own timestamped pass): the Recorder the taps get holds the times in `profile` once its step is done */
  profileVision?: boolean;
}

/** Positions per LLM step of a prefill: its activations stay under prefillStepBytes(llm, PREFILL_CHUNK), 153 MB on the 8B model. */
export const PREFILL_CHUNK = 512;

/**
 * The most activation bytes an LLM step over `positions` keeps alive at once: the embeddings, the
 * residual stream in and out, and the larger half-layer's intermediates (attention: normed input, qkv,
 * attention output; MLP: normed input, gate, up, their product), plus the logits (one row, or one per
 * position); +25 % for the buffer pool's size classes. The KV cache and the vision rows are not counted.
 */
export function prefillStepBytes(llm: LlmConfig, positions: number, allLogits = false): number {
  const d = llm.hiddenSize;
  const attention = d + (llm.numAttentionHeads + 2 * llm.numKeyValueHeads) * llm.headDim + llm.numAttentionHeads * llm.headDim;
  const mlp = d + 3 * llm.intermediateSize;
  const floats = positions * (1 + 3 * d + Math.max(attention, mlp)) + (allLogits ? positions : 1) * (llm.vocabSize + 2 * d);
  return Math.ceil(1.25 * 4 * floats);
}

export interface LoadOptions {
  switches?: Partial<PvcSwitches>;
  /** LLM weights as in the checkpoint (bf16, default) or quantized at load (docs/quantization.md) */
  dtype?: 'bf16' | QuantDType;
  /** the quantized copy of the checkpoint used when dtype is q8/q4 (src/weights/quant-cache.ts): its folder, or false for none */
  quantCache?: QuantCacheOptions | false;
  onProgress?: (p: UploadProgress) => void;
  /** the checkpoint's tokenizer when the caller has it already (read from the directory otherwise): the model takes its <IMG_CONTEXT> id */
  tokenizer?: Tokenizer;
}

export class InternVL {
  private constructor(
    readonly gpu: Gpu,
    readonly config: ModelConfig,
    readonly switches: PvcSwitches,
    readonly vision: InternViT,
    readonly projector: Projector,
    readonly llm: InternLM2,
    /** the tokenizer's <IMG_CONTEXT> id: rows of the prompt that vision rows replace */
    readonly imageContextId: number,
    /** <|im_end|> and the tokenizer's eos: InternVL's chat() overrides generation_config's eos list with <|im_end|>; eos is kept as a safety stop (as the PyTorch reference does) */
    readonly stopIds: readonly number[],
  ) {}

  /** Build the modules from the checkpoint's tensors; names are checked before anything is uploaded. */
  static async load(gpu: Gpu, dir: string, opts: LoadOptions = {}): Promise<InternVL> {
    const config = await loadConfig(dir);
    const switches = resolveSwitches(opts.switches);
    const tokenizer = opts.tokenizer ?? (await Tokenizer.fromDirectory(dir));
    const tokens = { imageContextId: tokenizer.specialId('<IMG_CONTEXT>'), stopIds: [...new Set([tokenizer.specialId('<|im_end|>'), tokenizer.eosId])] };
    const ckpt = await Checkpoint.open(dir);
    // a dry build over the headers: missing and unknown tensors fail here, before any upload
    const dry = new WeightStore(ckpt.tensors as ReadonlyMap<string, unknown> as ReadonlyMap<string, Tensor>);
    InternVL.build(gpu, config, switches, dry, tokens);
    dry.assertComplete();
    const widen = (t: TensorInfo) => isVectorLike(t) || t.name.endsWith('position_embedding');
    const tensors = await uploadTensors(gpu, ckpt, { widen, quantize: quantizeRule(opts.dtype ?? 'bf16'), quantCache: opts.quantCache, onProgress: opts.onProgress });
    return InternVL.build(gpu, config, switches, new WeightStore(tensors), tokens);
  }

  private static build(gpu: Gpu, config: ModelConfig, switches: PvcSwitches, w: WeightStore, tokens: { imageContextId: number; stopIds: number[] }): InternVL {
    const model = new InternVL(gpu, config, switches, new InternViT(config.vision, w, switches), new Projector(config, w), new InternLM2(config.llm, w), tokens.imageContextId, tokens.stopIds);
    if (config.useTemporal !== model.vision.temporal) {
      throw new Error(`config use_temporal=${config.useTemporal} but the checkpoint ${model.vision.temporal ? 'has' : 'has no'} temporal modules`);
    }
    return model;
  }

  /**
   * Prefill: the vision rows of `plan` (one step per temporal sequence) merged into the embeddings
   * of `ids`, then the prompt through the LLM in steps of `chunk` positions, appended to `cache`.
   * Returns the logits of the last step (its last row, or all its rows with `allLogits`, which also
   * caps a step's positions so its logits fit one storage binding; a collector's llm.logits tap gets every row). Checks `signal` between steps (throws its reason).
   */
  async prefill(
    ids: Int32Array,
    plan: VisualPlan | null,
    cache: KvCache,
    opts: { allLogits?: boolean; collector?: Collector; signal?: AbortSignal; chunk?: number } = {},
  ): Promise<Tensor> {
    const start = performance.now();
    const { collector, signal } = opts;
    // all logits: a step's [positions, V] logits must fit one storage binding too
    const logitRows = opts.allLogits ? Math.max(1, Math.floor(this.gpu.maxBindingBytes / (4 * this.config.llm.vocabSize))) : Infinity;
    const chunk = Math.min(opts.chunk ?? PREFILL_CHUNK, logitRows);
    const contexts: number[] = [];
    ids.forEach((id, i) => id === this.imageContextId && contexts.push(i));
    if (contexts.length !== (plan?.rows ?? 0)) throw new Error(`the prompt has ${contexts.length} <IMG_CONTEXT> tokens but the images/videos give ${plan?.rows ?? 0} vision rows`);
    if (cache.length + ids.length > cache.capacity) throw new Error(`the prompt (${ids.length} tokens) does not fit the KV cache (${cache.capacity - cache.length} positions left)`);
    if (!(Number.isSafeInteger(chunk) && chunk >= 1)) throw new Error(`prefill chunk must be a positive integer, got ${chunk}`);

    const encoded: { rows: Tensor[]; framesPerChunk: number }[] = [];
    try {
      for (const seq of plan?.sequences ?? []) {
        signal?.throwIfAborted();
        encoded.push(await this.encodeSequence(seq.pixels, seq.tiles.length, collector));
      }
      if (plan && collector?.visionMs) {
        await this.gpu.sync();
        collector.visionMs(performance.now() - start);
      }
      // LLM row blocks in prompt order: frame f of a sequence is in chunk f / Fk, rows from (f % Fk) * T
      const t = plan?.rowsPerFrame ?? 0;
      const frames = plan ? processingFrames(plan) : [];
      const blocks = (plan?.llmFrames ?? []).map((f) => {
        const { rows, framesPerChunk } = encoded[frames[f].sequence];
        return { tensor: rows[Math.floor(frames[f].frame / framesPerChunk)], row: (frames[f].frame % framesPerChunk) * t };
      });
      if (collector?.tap && blocks.length) await this.gpu.step((rec) => this.tapFeatures(rec, blocks, t, collector));
      let logits: Tensor | undefined;
      for (let s = 0; s < ids.length; s += chunk) {
        signal?.throwIfAborted();
        logits?.release();
        const e = Math.min(ids.length, s + chunk);
        const idTensor = await this.gpu.upload([e - s], 'i32', ids.subarray(s, e), 'ids');
        try {
          logits = await this.gpu.step((rec) =>
            scope(() => {
              const tap: Tap | undefined = collector?.tap && ((name, x) => collector.tap!(rec, name, x));
              const embeds = this.llm.embed(rec, idTensor);
              // vision rows for the context positions in [s, e): row k of the prompt's vision rows is context position contexts[k]
              this.copyRows(rec, blocks, t, contexts, s, e, embeds);
              tap?.('llm.inputs_embeds', embeds);
              const out = this.llm.forward(rec, embeds, cache, { allLogits: opts.allLogits, tap });
              if (opts.allLogits) tap?.('llm.logits', out);
              return out;
            }),
          );
        } finally {
          idTensor.release();
        }
      }
      return logits!;
    } finally {
      for (const r of encoded.flatMap((e) => e.rows)) r.release();
    }
  }

  /**
   * One temporal sequence through the vision tower and the projector (its own step), in chunks of
   * frames that keep every activation within a storage binding (visionChunking): vision rows
   * [Fk*T, D] per chunk of Fk frames.
   */
  private async encodeSequence(pixels: Float32Array, frames: number, collector?: Collector): Promise<{ rows: Tensor[]; framesPerChunk: number }> {
    const s = this.config.imageSize;
    const chunking = visionChunking(this.config, frames, this.gpu.maxBindingBytes);
    const times = this.vision.temporal ? sinusoid(frameTimes(frames, this.switches.timestamp), 256, this.switches.sinusoid_order) : null;
    // uploads happen before recording: a queue write must not overtake dispatches of the same step
    const px: Tensor[] = [];
    const te: Tensor[] = [];
    try {
      for (let f = 0; f < frames; f += chunking.frames) {
        const n = Math.min(chunking.frames, frames - f);
        px.push(await this.gpu.upload([n, 3, s, s], 'f32', pixels.subarray(f * 3 * s * s, (f + n) * 3 * s * s), 'pixels'));
        if (times) te.push(await this.gpu.upload([n, 256], 'f32', times.subarray(f * 256, (f + n) * 256), 'timestamps'));
      }
      // each row's argmax flags NaN / +Inf: read with the rows' step, so a broken vision tower is named as such
      const flags: Promise<TypedArray>[] = [];
      const rows = await this.gpu.step((rec) =>
        scope(() => {
          const tap: Tap | undefined = collector?.tap && ((name, x) => collector.tap!(rec, name, x));
          const vit = this.vision.forward(rec, px, times ? te : null, { temporalTokens: chunking.temporalTokens, tap });
          return vit.map((x, k) => {
            const r = this.projector.forward(rec, x, px[k].shape[0], tap);
            flags.push(rec.read(argmax(rec, r)));
            return r;
          });
        }),
        collector?.profileVision,
      );
      if ((await Promise.all(flags)).some((f) => f.some((v) => v & NON_FINITE_BIT))) {
        for (const r of rows) r.release();
        throw new NonFiniteError('the vision tower or the projector produced non-finite values (NaN or infinity): an activation overflowed, or a weight is corrupt');
      }
      return { rows, framesPerChunk: chunking.frames };
    } finally {
      for (const t of [...px, ...te]) t.release();
    }
  }

  /** The vision.features stage: every LLM row block, in prompt order. */
  private tapFeatures(rec: Recorder, blocks: { tensor: Tensor; row: number }[], t: number, collector: Collector): void {
    const rowBytes = this.config.llm.hiddenSize * 4;
    const features = rec.gpu.empty([blocks.length * t, this.config.llm.hiddenSize], 'f32', 'vision features');
    blocks.forEach((b, i) => rec.copyBuffer(b.tensor.buffer, b.row * rowBytes, features.buffer, i * t * rowBytes, t * rowBytes));
    collector.tap!(rec, 'vision.features', features);
    features.release();
  }

  /** Copy the vision rows of context positions [s, e) over those rows of embeds (prompt rows s..e-1), in runs of consecutive positions. */
  private copyRows(rec: Recorder, blocks: { tensor: Tensor; row: number }[], t: number, contexts: number[], s: number, e: number, embeds: Tensor): void {
    const rowBytes = this.config.llm.hiddenSize * 4;
    for (let k = lowerBound(contexts, s); k < contexts.length && contexts[k] < e; ) {
      const block = blocks[Math.floor(k / t)];
      const r = k % t;
      let run = 1;
      while (r + run < t && contexts[k + run] === contexts[k] + run && contexts[k + run] < e) run++;
      rec.copyBuffer(block.tensor.buffer, (block.row + r) * rowBytes, embeds.buffer, (contexts[k] - s) * rowBytes, run * rowBytes);
      k += run;
    }
  }

  /** One decode step: the token at the cache's next position; returns its logits [1, V]. */
  async decode(token: number, cache: KvCache): Promise<Tensor> {
    const id = await this.gpu.upload([1], 'i32', Int32Array.of(token), 'token');
    try {
      return await this.gpu.step((rec) => scope(() => this.llm.forward(rec, this.llm.embed(rec, id), cache)));
    } finally {
      id.release();
    }
  }
}

/** First index of sorted `xs` whose value is >= x. */
function lowerBound(xs: readonly number[], x: number): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
