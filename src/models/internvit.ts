// InternViT-300M with PVC's temporal layers (pvc-architecture.md sections 3-4, docs/pvc-conventions.md).
//
// One call encodes one temporal sequence of F frames (an image tile repeated image_repeat_time
// times, or a video's frames): the spatial parts run per frame, T-MHA runs over the frames at each
// token position. Activations are [F * (1 + P), C] rows: frame-major, CLS first in each frame.

import type { Recorder } from '../gpu/recorder.js';
import { advance, scope } from '../gpu/scope.js';
import type { Tensor } from '../gpu/tensor.js';
import type { VisionConfig } from '../weights/config.js';
import { attention, temporalAttention } from '../ops/attention.js';
import { gatedResidual, modulate, silu } from '../ops/elementwise.js';
import { matmul } from '../ops/matmul.js';
import { layerNorm } from '../ops/norm.js';
import { patchEmbed } from '../ops/patch_embed.js';
import { adalnChunks, type PvcSwitches } from './switches.js';
import type { WeightStore } from './weights.js';

export type Tap = (name: string, t: Tensor) => void;

interface Linear {
  weight: Tensor;
  bias?: Tensor;
}

interface TemporalParts {
  norm: { weight: Tensor; bias: Tensor };
  qkv: Linear;
  proj: Linear;
}

interface VitLayer {
  norm1: { weight: Tensor; bias: Tensor };
  norm2: { weight: Tensor; bias: Tensor };
  qkv: Linear;
  proj: Linear;
  fc1: Linear;
  fc2: Linear;
  ls1: Tensor;
  ls2: Tensor;
  temporal?: TemporalParts;
  /** AdaLN linear on SiLU(temporal embedding): [k*C, C], k = 6 or 9 */
  adaln?: Linear & { chunks: number };
}

const TEMPORAL_EMBED_DIM = 256;

type Branch = 'tmha' | 'attn' | 'mlp';
const BRANCH_GROUP: Record<Branch, number> = { tmha: 0, attn: 1, mlp: 2 };

export class InternViT {
  readonly layers: VitLayer[] = [];
  readonly embeddings: { patch: Linear; cls: Tensor; pos: Tensor };
  /** Linear(256, C) -> SiLU -> Linear(C, C) on the frame timestamp sinusoid */
  readonly temporalEmbedder?: [Linear, Linear];

  constructor(
    readonly config: VisionConfig,
    w: WeightStore,
    readonly switches: PvcSwitches,
  ) {
    const c = config.hiddenSize;
    const p = config.patchSize;
    const grid = (config.imageSize / p) ** 2;
    const e = 'vision_model.embeddings.';
    this.embeddings = {
      patch: { weight: w.take(`${e}patch_embedding.weight`, [c, config.numChannels, p, p]), bias: w.take(`${e}patch_embedding.bias`, [c]) },
      cls: w.take(`${e}class_embedding`, [1, 1, c]),
      pos: w.take(`${e}position_embedding`, [1, 1 + grid, c]),
    };
    const te = 'vision_model.temporal_embedder.mlp.';
    if (w.has(`${te}0.weight`)) {
      this.temporalEmbedder = [
        { weight: w.take(`${te}0.weight`, [c, TEMPORAL_EMBED_DIM]), bias: w.take(`${te}0.bias`, [c]) },
        { weight: w.take(`${te}2.weight`, [c, c]), bias: w.take(`${te}2.bias`, [c]) },
      ];
    }
    const linear = (name: string, out: number, inp: number): Linear => ({
      weight: w.take(`${name}.weight`, [out, inp]),
      bias: config.qkvBias || !name.endsWith('qkv') ? w.take(`${name}.bias`, [out]) : undefined,
    });
    const norm = (name: string) => ({ weight: w.take(`${name}.weight`, [c]), bias: w.take(`${name}.bias`, [c]) });
    for (let i = 0; i < config.numHiddenLayers; i++) {
      const l = `vision_model.encoder.layers.${i}.`;
      const layer: VitLayer = {
        norm1: norm(`${l}norm1`),
        norm2: norm(`${l}norm2`),
        qkv: linear(`${l}attn.qkv`, 3 * c, c),
        proj: linear(`${l}attn.proj`, c, c),
        fc1: linear(`${l}mlp.fc1`, config.intermediateSize, c),
        fc2: linear(`${l}mlp.fc2`, c, config.intermediateSize),
        ls1: w.take(`${l}ls1`, [c]),
        ls2: w.take(`${l}ls2`, [c]),
      };
      if (w.has(`${l}temporal_attn.qkv.weight`)) {
        layer.temporal = { norm: norm(`${l}temporal_norm`), qkv: linear(`${l}temporal_attn.qkv`, 3 * c, c), proj: linear(`${l}temporal_attn.proj`, c, c) };
      }
      if (w.has(`${l}adaLN_modulation.1.weight`)) {
        const rows = w.take(`${l}adaLN_modulation.1.weight`).shape[0];
        const chunks = rows / c;
        if (chunks !== 6 && chunks !== 9) throw new Error(`${l}adaLN_modulation.1.weight has ${rows} rows: expected 6*${c} or 9*${c}`);
        if (chunks === 9 && !layer.temporal) throw new Error(`vision layer ${i}: 9 AdaLN chunks but no temporal attention`);
        layer.adaln = { ...linear(`${l}adaLN_modulation.1`, rows, c), chunks };
      }
      if ((layer.temporal || layer.adaln) && !this.temporalEmbedder) throw new Error(`vision layer ${i} has temporal modules but the checkpoint has no temporal_embedder`);
      this.layers.push(layer);
    }
    if (switchesUnsupported(switches)) throw new Error(`PVC switch ${switchesUnsupported(switches)} is not supported by the engine yet`);
  }

  get temporal(): boolean {
    return this.temporalEmbedder !== undefined;
  }

  /**
   * Encode one temporal sequence of F frames, given as chunks of consecutive frames: pixels[k]
   * [Fk, 3, S, S] (normalised) and, on temporal checkpoints, timeEmbedding[k] [Fk, 256] (the sinusoid
   * of their timestamps). Everything but temporal attention works frame by frame, so chunk by chunk;
   * temporal attention mixes the frames at one token position, so it gathers every chunk's frames
   * for `temporalTokens` positions at a time (exact either way). Returns the last layer's output per
   * chunk, [Fk*(1+P), C].
   */
  forward(rec: Recorder, pixels: Tensor[], timeEmbedding: Tensor[] | null, opts: { temporalTokens?: number; tap?: Tap } = {}): Tensor[] {
    const cfg = this.config;
    const c = cfg.hiddenSize;
    const tokens = 1 + (cfg.imageSize / cfg.patchSize) ** 2;
    const { tap } = opts;
    const { patch, cls, pos } = this.embeddings;
    let xs = pixels.map((px) => {
      const x = patchEmbed(rec, px, patch.weight, patch.bias!, cls, pos).reshape([px.shape[0] * tokens, c]);
      tap?.('vision.embeddings', x);
      return x;
    });

    let conds: (Tensor | null)[] = pixels.map(() => null);
    if (this.temporalEmbedder) {
      if (!timeEmbedding) throw new Error('InternViT: this checkpoint has temporal layers; frame timestamps are required');
      const [l1, l2] = this.temporalEmbedder;
      conds = timeEmbedding.map((times) =>
        scope(() => {
          const te = matmul(rec, silu(rec, matmul(rec, times, l1.weight, { bias: l1.bias })), l2.weight, { bias: l2.bias });
          tap?.('vision.temporal_embedding', te);
          return silu(rec, te); // the AdaLN linears all read SiLU(c)
        }),
      );
    }

    this.layers.forEach((layer, i) => {
      const at = { tokens, tap: tap && ((name: string, t: Tensor) => tap(`${name}.${i}`, t)) };
      xs = scope(() => {
        const mods = conds.map((cond) => (layer.adaln && cond ? matmul(rec, cond, layer.adaln.weight, { bias: layer.adaln.bias }) : null));
        if (layer.temporal) xs = advance(xs, (xs) => this.temporalBranch(rec, layer, xs, mods, opts.temporalTokens ?? tokens, at));
        return xs.map((x, k) => this.spatialBranches(rec, layer, x, mods[k], at));
      });
      for (const x of xs) tap?.(`vision.layer.${i}`, x);
    });
    for (const cond of conds) cond?.release();
    return xs;
  }

  /** AdaLN chunks of a branch: with 9 chunks (T-MHA, attention, MLP), with 6 (attention, MLP); null without modulation. */
  private adaln(layer: VitLayer, mod: Tensor | null, branch: Branch) {
    const g = mod ? BRANCH_GROUP[branch] - (layer.adaln!.chunks === 9 ? 0 : 1) : -1;
    return g < 0 ? null : adalnChunks(g, this.switches.adaln_chunk_order);
  }

  private normed(rec: Recorder, layer: VitLayer, h: Tensor, norm: { weight: Tensor; bias: Tensor }, mod: Tensor | null, branch: Branch, tokens: number): Tensor {
    const ch = this.adaln(layer, mod, branch);
    return scope(() => {
      const ln = layerNorm(rec, h, norm.weight, norm.bias, this.config.layerNormEps);
      return ch ? modulate(rec, ln, mod!, { tokensPerFrame: tokens, shiftChunk: ch.shift, scaleChunk: ch.scale }) : ln;
    });
  }

  /** T-MHA over the frames of every chunk at each token position, added to each chunk's residual stream. */
  private temporalBranch(rec: Recorder, layer: VitLayer, xs: Tensor[], mods: (Tensor | null)[], temporalTokens: number, at: { tokens: number; tap?: Tap }): Tensor[] {
    const t = layer.temporal!;
    const c = this.config.hiddenSize;
    const heads = this.config.numAttentionHeads;
    const { tokens } = at;
    const mask = this.switches.temporal_mask === 'bidirectional' ? 'none' : 'causal';
    const qkvs = xs.map((x, k) => scope(() => matmul(rec, this.normed(rec, layer, x, t.norm, mods[k], 'tmha', tokens), t.qkv.weight, { bias: t.qkv.bias })));
    const frames = xs.map((x) => x.shape[0] / tokens);
    let attn: Tensor[];
    if (xs.length === 1 && temporalTokens >= tokens) attn = [temporalAttention(rec, qkvs[0].reshape([frames[0], tokens, 3 * c]), heads, mask).reshape([frames[0] * tokens, c])];
    else {
      // gather positions [p0, p0 + n) of every frame into one [F, n, 3C] sequence batch, attend, scatter back
      const all = frames.reduce((a, b) => a + b, 0);
      attn = frames.map((f) => rec.gpu.empty([f * tokens, c], 'f32', 'temporal attention'));
      for (let p0 = 0; p0 < tokens; p0 += temporalTokens) {
        const n = Math.min(temporalTokens, tokens - p0);
        const gathered = rec.gpu.empty([all, n, 3 * c], 'f32', 'temporal qkv gathered');
        const moves = qkvs.flatMap((q, k) => Array.from({ length: frames[k] }, (_, j) => ({ k, j })));
        moves.forEach(({ k, j }, f) => rec.copyBuffer(qkvs[k].buffer, (j * tokens + p0) * 3 * c * 4, gathered.buffer, f * n * 3 * c * 4, n * 3 * c * 4));
        const out = temporalAttention(rec, gathered, heads, mask);
        moves.forEach(({ k, j }, f) => rec.copyBuffer(out.buffer, f * n * c * 4, attn[k].buffer, (j * tokens + p0) * c * 4, n * c * 4));
        gathered.release();
        out.release();
      }
    }
    for (const q of qkvs) q.release();
    return xs.map((x, k) => {
      const y = matmul(rec, attn[k], t.proj.weight, { bias: t.proj.bias });
      attn[k].release();
      at.tap?.('vision.temporal_attn', y);
      const ch = this.adaln(layer, mods[k], 'tmha');
      return gatedResidual(rec, x, y, { gate: ch ? { mod: mods[k]!, chunk: ch.gate, tokensPerFrame: tokens } : undefined });
    });
  }

  /** Spatial self-attention (each frame on its own) and the MLP, each in its own scope so only one branch's intermediates are alive at a time. */
  private spatialBranches(rec: Recorder, layer: VitLayer, x: Tensor, mod: Tensor | null, at: { tokens: number }): Tensor {
    const c = this.config.hiddenSize;
    const heads = this.config.numAttentionHeads;
    const { tokens } = at;
    const frames = x.shape[0] / tokens;
    // x0 + ls * [gate *] (input · Wᵀ + b): without a gate the add is the matmul's own epilogue
    const addBranch = (x0: Tensor, input: Tensor, lin: Linear, branch: Branch, ls: Tensor): Tensor => {
      const ch = this.adaln(layer, mod, branch);
      if (!ch) return matmul(rec, input, lin.weight, { bias: lin.bias, scale: ls, residual: x0 });
      const y = matmul(rec, input, lin.weight, { bias: lin.bias });
      return gatedResidual(rec, x0, y, { scale: ls, gate: { mod: mod!, chunk: ch.gate, tokensPerFrame: tokens } });
    };
    const d = c / heads;
    const afterAttn = advance(x, (x) => {
      const a = scope(() => {
        const qkv = scope(() => matmul(rec, this.normed(rec, layer, x, layer.norm1, mod, 'attn', tokens), layer.qkv.weight, { bias: layer.qkv.bias }));
        const view = (offset: number) => ({ tensor: qkv, offset, rowStride: 3 * c, batchStride: tokens * 3 * c, groupStride: d });
        return attention(rec, view(0), view(c), view(2 * c), { heads, headDim: d, lq: tokens, lk: tokens, batch: frames }).reshape([frames * tokens, c]);
      });
      return addBranch(x, a, layer.proj, 'attn', layer.ls1);
    });
    return advance(afterAttn, (x) => {
      const hidden = scope(() => matmul(rec, this.normed(rec, layer, x, layer.norm2, mod, 'mlp', tokens), layer.fc1.weight, { bias: layer.fc1.bias, epilogue: 'gelu' }));
      return addBranch(x, hidden, layer.fc2, 'mlp', layer.ls2);
    });
  }
}

function switchesUnsupported(s: PvcSwitches): string | null {
  if (s.temporal_mask === 'causal_exclusive') return 'temporal_mask=causal_exclusive';
  if (!s.temporal_cls) return 'temporal_cls=false';
  return null;
}
