// Pure helpers of bench:e2e. Work counts for its floors: FLOPs (2 per multiply-add) of the matrix products of a stage,
// and the bytes a decode step must read. A stage's floor is its FLOPs / the measured GEMM rate, or
// its bytes / the measured copy rate. Elementwise work (norms, activations, RoPE) is not counted:
// it is bandwidth-bound and small beside the products.

import type { LlmConfig, ModelConfig } from '../src/weights/config.js';

/** The vision layers as the checkpoint has them: temporal attention or not, AdaLN chunks (0, 6 or 9). */
export interface VisionLayerKind {
  temporal: boolean;
  adalnChunks: number;
}

export interface VisionFlops {
  /** patch embedding, spatial attention and MLP of every layer */
  vit: number;
  /** temporal embedder, AdaLN linears, temporal attention (qkv, scores, proj) */
  temporal: number;
  /** mlp1 after the pixel shuffle */
  projector: number;
}

/** FLOPs of one frame of a temporal sequence of `frames` frames through the vision tower and the projector. */
export function visionFlopsPerFrame(config: ModelConfig, layers: readonly VisionLayerKind[], frames: number): VisionFlops {
  const v = config.vision;
  const c = v.hiddenSize;
  const patches = (v.imageSize / v.patchSize) ** 2;
  const tokens = 1 + patches;
  const spatial = 2 * tokens * (4 * c * c + 2 * c * v.intermediateSize) + 4 * tokens * tokens * c; // qkv + proj + fc1 + fc2; QKᵀ and PV
  const vit = 2 * patches * v.numChannels * v.patchSize ** 2 * c + layers.length * spatial;
  const anyTemporal = layers.some((l) => l.temporal || l.adalnChunks);
  let temporal = anyTemporal ? 2 * (256 * c + c * c) : 0; // the timestamp embedder, Linear(256, C) and Linear(C, C)
  for (const l of layers) {
    temporal += 2 * l.adalnChunks * c * c;
    if (l.temporal) temporal += 2 * tokens * 4 * c * c + 4 * tokens * frames * c; // qkv + proj; each position attends over the frames
  }
  const k = 1 / config.downsampleRatio;
  const d = config.llm.hiddenSize;
  const projector = 2 * config.numImageToken * (c * k * k * d + d * d);
  return { vit, temporal, projector };
}

/** Weights of one decoder layer's linears (wqkv, wo, w1, w3, w2). */
export function llmLayerParams(llm: LlmConfig): number {
  const d = llm.hiddenSize;
  return d * (llm.numAttentionHeads + 2 * llm.numKeyValueHeads) * llm.headDim + llm.numAttentionHeads * llm.headDim * d + 3 * d * llm.intermediateSize;
}

/** FLOPs of `positions` new positions after `past` cached ones (causal attention), the LM head on the last one. */
export function llmFlops(llm: LlmConfig, positions: number, past: number): number {
  const keys = positions * past + (positions * (positions + 1)) / 2; // keys each new position attends to, summed
  const perLayer = 2 * positions * llmLayerParams(llm) + 4 * llm.numAttentionHeads * llm.headDim * keys;
  return llm.numHiddenLayers * perLayer + 2 * llm.hiddenSize * llm.vocabSize;
}

/** Bytes a decode step reads at KV length `kv`: the LLM's weights (as stored on the device) and the f32 KV cache. */
export function decodeBytes(llm: LlmConfig, weightBytes: number, kv: number): number {
  return weightBytes + llm.numHiddenLayers * 2 * kv * llm.numKeyValueHeads * llm.headDim * 4;
}

/**
 * Kernel ms of one profiled vision step by part, from the dispatch counts where its taps fell
 * (src/models/internvit.ts): a temporal part ends one dispatch after its tap ('vision.temporal_embedding':
 * the SiLU the AdaLN linears read; 'vision.temporal_attn.i': the gated residual), a layer's spatial part
 * ends at 'vision.layer.i', and what follows the last layer is the projector.
 */
export function visionParts(marks: readonly { name: string; at: number }[], times: readonly number[]): VisionFlops {
  const parts: VisionFlops = { vit: 0, temporal: 0, projector: 0 };
  let from = 0;
  const upTo = (to: number, part: keyof VisionFlops) => {
    for (; from < Math.min(to, times.length); from++) parts[part] += times[from];
  };
  for (const { name, at } of marks) {
    if (name === 'vision.temporal_embedding' || name.startsWith('vision.temporal_attn.')) upTo(at + 1, 'temporal');
    else if (name === 'vision.embeddings' || name.startsWith('vision.layer.')) upTo(at, 'vit');
  }
  upTo(times.length, 'projector');
  return parts;
}
