// InternViT-300M with PVC's temporal layers (pvc-architecture.md sections 3-4, docs/pvc-conventions.md).
//
// One call encodes one temporal sequence of F frames (an image tile repeated image_repeat_time
// times, or a video's frames): the spatial parts run per frame, T-MHA runs over the frames at each
// token position. Activations are [F * (1 + P), C] rows: frame-major, CLS first in each frame.

import type { Recorder } from '../gpu/recorder.js';
import { scope } from '../gpu/scope.js';
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
   * Encode one sequence: pixels [F, 3, S, S] (normalised), `timeEmbedding` [F, 256] the sinusoid of
   * the frames' timestamps (temporal checkpoints only). Returns the last layer's output [F*(1+P), C].
   */
  forward(rec: Recorder, pixels: Tensor, timeEmbedding: Tensor | null, tap?: Tap): Tensor {
    const cfg = this.config;
    const c = cfg.hiddenSize;
    const frames = pixels.shape[0];
    const tokens = 1 + (cfg.imageSize / cfg.patchSize) ** 2;
    const heads = cfg.numAttentionHeads;
    const eps = cfg.layerNormEps;
    const { patch, cls, pos } = this.embeddings;
    let x = patchEmbed(rec, pixels, patch.weight, patch.bias!, cls, pos).reshape([frames * tokens, c]);
    tap?.('vision.embeddings', x);

    let cond: Tensor | null = null;
    if (this.temporalEmbedder) {
      if (!timeEmbedding) throw new Error('InternViT: this checkpoint has temporal layers; frame timestamps are required');
      const [l1, l2] = this.temporalEmbedder;
      cond = scope(() => {
        const te = matmul(rec, silu(rec, matmul(rec, timeEmbedding, l1.weight, { bias: l1.bias })), l2.weight, { bias: l2.bias });
        tap?.('vision.temporal_embedding', te);
        return silu(rec, te); // the AdaLN linears all read SiLU(c)
      });
    }

    this.layers.forEach((layer, i) => {
      const next = scope(() => this.layer(rec, layer, x, cond, { frames, tokens, tap: tap && ((name, t) => tap(`${name}.${i}`, t)) }));
      x.release(); // the previous layer's output, carried into this one
      x = next;
      tap?.(`vision.layer.${i}`, x);
    });
    cond?.release();
    return x;
  }

  /** One encoder layer: [T-MHA +] attention + MLP branches, each added to the residual stream. */
  private layer(rec: Recorder, layer: VitLayer, x: Tensor, cond: Tensor | null, at: { frames: number; tokens: number; tap?: Tap }): Tensor {
    const { frames, tokens } = at;
    const c = this.config.hiddenSize;
    const heads = this.config.numAttentionHeads;
    const eps = this.config.layerNormEps;
    const mod = layer.adaln && cond ? matmul(rec, cond, layer.adaln.weight, { bias: layer.adaln.bias }) : null;
    // AdaLN chunk groups: with 9 chunks (T-MHA, attention, MLP), with 6 (attention, MLP)
    const chunksOf = (branch: Branch) => {
      const g = mod ? BRANCH_GROUP[branch] - (layer.adaln!.chunks === 9 ? 0 : 1) : -1;
      return g < 0 ? null : adalnChunks(g, this.switches.adaln_chunk_order);
    };
    const normed = (h: Tensor, norm: { weight: Tensor; bias: Tensor }, branch: Branch): Tensor => {
      const ln = layerNorm(rec, h, norm.weight, norm.bias, eps);
      const ch = chunksOf(branch);
      return ch ? modulate(rec, ln, mod!, { tokensPerFrame: tokens, shiftChunk: ch.shift, scaleChunk: ch.scale }) : ln;
    };
    // x0 + ls * [gate *] (input · Wᵀ + b): without a gate the add is the matmul's own epilogue
    const addBranch = (x0: Tensor, input: Tensor, lin: Linear, branch: Branch, ls?: Tensor): Tensor => {
      const ch = chunksOf(branch);
      if (!ch) return matmul(rec, input, lin.weight, { bias: lin.bias, scale: ls, residual: x0 });
      const y = matmul(rec, input, lin.weight, { bias: lin.bias });
      return gatedResidual(rec, x0, y, { scale: ls, gate: { mod: mod!, chunk: ch.gate, tokensPerFrame: tokens } });
    };

    // each branch in its own scope, so only one branch's intermediates are alive at a time
    if (layer.temporal) {
      const t = layer.temporal;
      x = scope(() => {
        const qkv = matmul(rec, normed(x, t.norm, 'tmha'), t.qkv.weight, { bias: t.qkv.bias });
        const mask = this.switches.temporal_mask === 'bidirectional' ? 'none' : 'causal';
        const a = temporalAttention(rec, qkv.reshape([frames, tokens, 3 * c]), heads, mask).reshape([frames * tokens, c]);
        const y = matmul(rec, a, t.proj.weight, { bias: t.proj.bias });
        at.tap?.('vision.temporal_attn', y);
        const ch = chunksOf('tmha');
        return gatedResidual(rec, x, y, { gate: ch ? { mod: mod!, chunk: ch.gate, tokensPerFrame: tokens } : undefined });
      });
    }

    // spatial self-attention, each frame on its own
    x = scope(() => {
      const qkv = matmul(rec, normed(x, layer.norm1, 'attn'), layer.qkv.weight, { bias: layer.qkv.bias });
      const d = c / heads;
      const view = (offset: number) => ({ tensor: qkv, offset, rowStride: 3 * c, batchStride: tokens * 3 * c, groupStride: d });
      const a = attention(rec, view(0), view(c), view(2 * c), { heads, headDim: d, lq: tokens, lk: tokens, batch: frames }).reshape([frames * tokens, c]);
      return addBranch(x, a, layer.proj, 'attn', layer.ls1);
    });

    return scope(() => addBranch(x, matmul(rec, normed(x, layer.norm2, 'mlp'), layer.fc1.weight, { bias: layer.fc1.bias, epilogue: 'gelu' }), layer.fc2, 'mlp', layer.ls2));
  }
}

function switchesUnsupported(s: PvcSwitches): string | null {
  if (s.temporal_mask === 'causal_exclusive') return 'temporal_mask=causal_exclusive';
  if (!s.temporal_cls) return 'temporal_cls=false';
  return null;
}
