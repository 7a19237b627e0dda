// config.json of PVC-InternVL2 (model_type "pvc_internvl") and of InternLM2-based InternVL2
// checkpoints (model_type "internvl_chat"), parsed into a typed, validated config.
// Defaults follow the configuration classes (PVCInternVLConfig / InternVLChatConfig,
// InternVisionConfig, InternLM2Config); values the engine cannot run are errors that say so.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export interface VisionConfig {
  hiddenSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  headDim: number;
  intermediateSize: number;
  patchSize: number;
  imageSize: number;
  numChannels: number;
  layerNormEps: number;
  qkvBias: boolean;
  qkNormalization: boolean;
  normType: 'layer_norm';
  hiddenAct: 'gelu';
  architectures: string[];
}

export interface RopeScaling {
  type: 'dynamic';
  factor: number;
}

export interface LlmConfig {
  hiddenSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  numKeyValueHeads: number;
  headDim: number;
  intermediateSize: number;
  vocabSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  maxPositionEmbeddings: number;
  hiddenAct: 'silu';
  bias: false;
  tieWordEmbeddings: false;
  bosTokenId: number;
  eosTokenId: number;
  padTokenId: number | null;
  architectures: string[];
}

export interface ModelConfig {
  modelType: 'pvc_internvl' | 'internvl_chat';
  architectures: string[];
  vision: VisionConfig;
  llm: LlmConfig;
  downsampleRatio: 0.5 | 0.25;
  psVersion: 'v1' | 'v2';
  template: string | null;
  dynamicImageSize: boolean;
  useThumbnail: boolean;
  minDynamicPatch: number;
  maxDynamicPatch: number;
  forceImageSize: number | null;
  /** tile size fed to the vision tower: force_image_size, else vision image_size */
  imageSize: number;
  selectLayer: -1;
  /** PVC temporal modules (false for internvl_chat) */
  useTemporal: boolean;
  imageRepeatTime: number;
  videoRepeatTime: number;
  /** semantics unknown (pvc-architecture.md §4.2); passed through */
  tileRepeatWay: string | null;
  mlpAddOps: null;
  /** vision rows per frame after pixel shuffle: (imageSize / patchSize * downsampleRatio)^2 */
  numImageToken: number;
  torchDtype: string | null;
}

type Json = Record<string, unknown>;

/** Reads fields of one JSON object, collecting every problem instead of stopping at the first. */
class Fields {
  constructor(
    private readonly obj: Json,
    private readonly path: string,
    private readonly problems: string[],
  ) {}

  private get(key: string): unknown {
    return Object.hasOwn(this.obj, key) ? this.obj[key] : undefined;
  }

  private bad(key: string, want: string): void {
    this.problems.push(`${this.path}${key} is ${JSON.stringify(this.get(key))}; expected ${want}`);
  }

  int(key: string, dflt?: number, min = 1): number {
    const v = this.get(key) ?? dflt;
    if (typeof v === 'number' && Number.isSafeInteger(v) && v >= min) return v;
    this.bad(key, v === undefined ? 'a value (required)' : `an integer >= ${min}`);
    return NaN;
  }

  num(key: string, dflt?: number): number {
    const v = this.get(key) ?? dflt;
    if (typeof v === 'number' && Number.isFinite(v) && v > 0) return v;
    this.bad(key, v === undefined ? 'a value (required)' : 'a positive number');
    return NaN;
  }

  bool(key: string, dflt: boolean): boolean {
    const v = this.get(key) ?? dflt;
    // the config classes store some flags as 0/1 (use_backbone_lora), accept both
    if (typeof v === 'boolean' || v === 0 || v === 1) return Boolean(v);
    this.bad(key, 'true or false');
    return dflt;
  }

  str<T extends string>(key: string, dflt: T | null, allowed?: readonly T[], why = ''): T | null {
    const v = this.get(key) ?? dflt;
    if (v === null) return null;
    if (typeof v === 'string' && (!allowed || (allowed as readonly string[]).includes(v))) return v as T;
    this.bad(key, allowed ? `one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}${why}` : 'a string');
    return dflt;
  }

  strings(key: string): string[] {
    const v = this.get(key);
    if (v === undefined || v === null) return [];
    if (Array.isArray(v) && v.every((s) => typeof s === 'string')) return v as string[];
    this.bad(key, 'a list of strings');
    return [];
  }

  raw(key: string): unknown {
    return this.get(key);
  }

  /** A value the engine does not support: say so clearly. */
  unsupported(key: string, what: string): void {
    this.problems.push(`${this.path}${key} = ${JSON.stringify(this.get(key))}: ${what} is not supported yet`);
  }
}

function parseVision(obj: Json, problems: string[]): VisionConfig {
  const f = new Fields(obj, 'vision_config.', problems);
  const hiddenSize = f.int('hidden_size', 3200);
  const numAttentionHeads = f.int('num_attention_heads', 25);
  if (hiddenSize % numAttentionHeads) problems.push(`vision_config.hidden_size ${hiddenSize} is not a multiple of num_attention_heads ${numAttentionHeads}`);
  const qkNormalization = f.bool('qk_normalization', false);
  if (qkNormalization) f.unsupported('qk_normalization', 'QK normalisation (InternViT-6B)');
  const normType = f.str('norm_type', 'rms_norm', ['layer_norm', 'rms_norm']);
  if (normType === 'rms_norm') f.unsupported('norm_type', 'RMSNorm in the vision tower (InternViT-6B)');
  const hiddenAct = f.str('hidden_act', 'gelu');
  if (hiddenAct !== 'gelu') f.unsupported('hidden_act', 'a vision activation other than "gelu" (exact erf)');
  return {
    hiddenSize,
    numHiddenLayers: f.int('num_hidden_layers', 48),
    numAttentionHeads,
    headDim: hiddenSize / numAttentionHeads,
    intermediateSize: f.int('intermediate_size', 12800),
    patchSize: f.int('patch_size', 14),
    imageSize: f.int('image_size', 224),
    numChannels: f.int('num_channels', 3),
    layerNormEps: f.num('layer_norm_eps', 1e-6),
    qkvBias: f.bool('qkv_bias', false),
    qkNormalization,
    normType: 'layer_norm',
    hiddenAct: 'gelu',
    architectures: f.strings('architectures'),
  };
}

function parseLlm(obj: Json, problems: string[]): LlmConfig {
  const f = new Fields(obj, 'llm_config.', problems);
  const architectures = f.strings('architectures');
  if (!architectures.includes('InternLM2ForCausalLM')) {
    f.unsupported('architectures', 'a language model other than InternLM2ForCausalLM (InternVL2-1B/4B use Qwen2/Phi-3)');
  }
  const hiddenSize = f.int('hidden_size', 4096);
  const numAttentionHeads = f.int('num_attention_heads', 32);
  const numKeyValueHeads = f.int('num_key_value_heads', numAttentionHeads);
  if (hiddenSize % numAttentionHeads) problems.push(`llm_config.hidden_size ${hiddenSize} is not a multiple of num_attention_heads ${numAttentionHeads}`);
  if (numAttentionHeads % numKeyValueHeads) problems.push(`llm_config.num_attention_heads ${numAttentionHeads} is not a multiple of num_key_value_heads ${numKeyValueHeads}`);
  if ((hiddenSize / numAttentionHeads) % 2) problems.push(`llm_config head_dim ${hiddenSize / numAttentionHeads} is odd; RoPE needs an even head dimension`);
  if (f.str('hidden_act', 'silu') !== 'silu') f.unsupported('hidden_act', 'an LLM activation other than "silu"');
  if (f.bool('bias', true)) f.unsupported('bias', 'biases on wqkv/wo (InternLM2 bias=true)');
  if (f.bool('tie_word_embeddings', false)) f.unsupported('tie_word_embeddings', 'an LM head tied to the embeddings');
  const ropeScaling = parseRopeScaling(f.raw('rope_scaling'), f, problems);
  const vocabSize = f.int('vocab_size', 103168);
  const tokenId = (key: string, dflt: number | null): number | null => {
    const v = f.raw(key) ?? dflt;
    if (v === null || (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v < vocabSize)) return v;
    problems.push(`llm_config.${key} is ${JSON.stringify(v)}; expected a token id below vocab_size ${vocabSize}`);
    return null;
  };
  return {
    hiddenSize,
    numHiddenLayers: f.int('num_hidden_layers', 32),
    numAttentionHeads,
    numKeyValueHeads,
    headDim: hiddenSize / numAttentionHeads,
    intermediateSize: f.int('intermediate_size', 11008),
    vocabSize,
    rmsNormEps: f.num('rms_norm_eps', 1e-6),
    ropeTheta: f.num('rope_theta', 10000),
    ropeScaling,
    maxPositionEmbeddings: f.int('max_position_embeddings', 2048),
    hiddenAct: 'silu',
    bias: false,
    tieWordEmbeddings: false,
    bosTokenId: tokenId('bos_token_id', 1) ?? 1,
    eosTokenId: tokenId('eos_token_id', 2) ?? 2,
    padTokenId: tokenId('pad_token_id', 0),
    architectures,
  };
}

function parseRopeScaling(v: unknown, f: Fields, problems: string[]): RopeScaling | null {
  if (v === undefined || v === null) return null;
  const o = v as Json;
  if (typeof v !== 'object' || Array.isArray(v) || o.type !== 'dynamic') {
    f.unsupported('rope_scaling', 'RoPE scaling other than {"type": "dynamic"} or none');
    return null;
  }
  if (typeof o.factor !== 'number' || !(o.factor >= 1)) {
    problems.push(`llm_config.rope_scaling.factor is ${JSON.stringify(o.factor)}; expected a number >= 1`);
    return null;
  }
  return { type: 'dynamic', factor: o.factor };
}

/** Parse and validate a config.json object; every problem found is listed in one ConfigError. */
export function parseConfig(json: unknown, source = 'config.json'): ModelConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new ConfigError(`${source}: not a JSON object`);
  const obj = json as Json;
  const problems: string[] = [];
  const f = new Fields(obj, '', problems);
  const modelType = f.str('model_type', null, ['pvc_internvl', 'internvl_chat'], ' (other InternVL families are not supported)');
  const sub = (key: string): Json => {
    const v = obj[key];
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Json;
    problems.push(`${key} is missing or not an object`);
    return {};
  };
  const vision = parseVision(sub('vision_config'), problems);
  const llm = parseLlm(sub('llm_config'), problems);
  if (modelType === null) problems.push('model_type is missing; expected "pvc_internvl" or "internvl_chat"');
  const isPvc = modelType === 'pvc_internvl';

  const downsampleRatio = f.num('downsample_ratio', 0.5);
  if (downsampleRatio !== 0.5 && downsampleRatio !== 0.25) f.unsupported('downsample_ratio', 'a pixel-shuffle ratio other than 0.5 or 0.25');
  const psVersion = f.str('ps_version', 'v1', ['v1', 'v2']) ?? 'v1';
  if (f.int('select_layer', -1, -Infinity) !== -1) f.unsupported('select_layer', 'taking vision features from a layer other than the last (-1)');
  const mlpAddOps = f.raw('mlp_add_ops');
  if (mlpAddOps !== undefined && mlpAddOps !== null) f.unsupported('mlp_add_ops', 'extra projector ops (mlp_add_ops)');
  if (f.bool('pad2square', false)) f.unsupported('pad2square', 'padding images to squares');
  const useTemporal = isPvc ? f.bool('use_temporal', false) : false;
  if (!isPvc && f.bool('use_temporal', false)) f.unsupported('use_temporal', 'temporal modules with model_type "internvl_chat"');

  const rawForce = f.raw('force_image_size');
  const forceImageSize = rawForce === undefined || rawForce === null ? null : f.int('force_image_size');
  const imageSize = forceImageSize ?? vision.imageSize;
  const grid = imageSize / vision.patchSize;
  const k = 1 / downsampleRatio;
  if (!Number.isInteger(grid) || grid % k) {
    problems.push(`image size ${imageSize} / patch ${vision.patchSize} gives a ${grid}-patch grid, not a multiple of the pixel-shuffle factor ${k}`);
  }
  const minDynamicPatch = f.int('min_dynamic_patch', 1);
  const maxDynamicPatch = f.int('max_dynamic_patch', 6);
  if (maxDynamicPatch < minDynamicPatch) problems.push(`max_dynamic_patch ${maxDynamicPatch} is below min_dynamic_patch ${minDynamicPatch}`);
  const config: ModelConfig = {
    modelType: modelType ?? 'internvl_chat',
    architectures: f.strings('architectures'),
    vision,
    llm,
    downsampleRatio: downsampleRatio as 0.5 | 0.25,
    psVersion,
    template: f.str('template', null),
    dynamicImageSize: f.bool('dynamic_image_size', false),
    useThumbnail: f.bool('use_thumbnail', false),
    minDynamicPatch,
    maxDynamicPatch,
    forceImageSize,
    imageSize,
    selectLayer: -1,
    useTemporal,
    imageRepeatTime: isPvc ? f.int('image_repeat_time', 1) : 1,
    videoRepeatTime: isPvc ? f.int('video_repeat_time', 1) : 1,
    tileRepeatWay: isPvc ? f.str('tile_repeat_way', null) : null,
    mlpAddOps: null,
    numImageToken: Math.floor(grid * downsampleRatio) ** 2,
    torchDtype: f.str('torch_dtype', null),
  };
  if (problems.length) throw new ConfigError(`${source}: ${problems.length === 1 ? problems[0] : '\n  ' + problems.join('\n  ')}`);
  return config;
}

/** Read and parse `dir/config.json`. */
export async function loadConfig(dir: string): Promise<ModelConfig> {
  const path = join(dir, 'config.json');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`${path}: cannot read: ${(e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${path}: invalid JSON: ${(e as Error).message}`);
  }
  return parseConfig(json, path);
}
