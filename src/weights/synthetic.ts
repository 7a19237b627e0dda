// Synthetic checkpoints: seeded random weights with the real PVC-InternVL2 file set, tensor names
// (pvc-architecture.md §2, docs/pvc-conventions.md) and config schema. This module is the single
// source of truth for the synthetic names and shapes; the PyTorch reference mirrors them.
//
// Every tensor is BF16 and drawn from its own seeded stream (seed x name), so the bytes depend
// only on the preset and the seed, never on shard layout or chunk size. Tensors are generated and
// written chunk by chunk: the `full` preset (~19 GB) never sits in memory.

import { copyFile, mkdir, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { toBf16Bits } from '../gpu/tensor.js';
import { INDEX_FILE } from './safetensors.js';

export interface Preset {
  vision: { hidden: number; layers: number; heads: number; intermediate: number; imageSize: number; patch: number };
  /** ViT layers carrying T-MHA + AdaLN, and the AdaLN chunk count k (6 or 9) */
  temporal: { layers: number[]; adalnChunks: 6 | 9 };
  llm: { hidden: number; layers: number; heads: number; kvHeads: number; intermediate: number };
  downsampleRatio: 0.5 | 0.25;
  psVersion: 'v1' | 'v2';
  imageRepeatTime: number;
  maxDynamicPatch: number;
  /** shard size limit in bytes (a tensor larger than it gets a shard of its own) */
  shardBytes: number;
}

const range = (a: number, b: number): number[] => Array.from({ length: b - a }, (_, i) => a + i);

export const PRESETS: Readonly<Record<string, Preset>> = {
  // PVC-like: ratio 0.25 (4x4 shuffle), ps v2, AdaLN k = 9; 112 px tiles -> 8x8 patches -> 4 rows per frame
  tiny: {
    vision: { hidden: 64, layers: 4, heads: 4, intermediate: 256, imageSize: 112, patch: 14 },
    temporal: { layers: [2, 3], adalnChunks: 9 },
    llm: { hidden: 64, layers: 2, heads: 8, kvHeads: 2, intermediate: 176 },
    downsampleRatio: 0.25,
    psVersion: 'v2',
    imageRepeatTime: 4,
    maxDynamicPatch: 6,
    shardBytes: 8e6,
  },
  // InternVL2-like projector: ratio 0.5, ps v1, AdaLN k = 6; 84 px tiles -> 6x6 patches -> 9 rows per frame
  'tiny-v1': {
    vision: { hidden: 48, layers: 3, heads: 3, intermediate: 192, imageSize: 84, patch: 14 },
    temporal: { layers: [1, 2], adalnChunks: 6 },
    llm: { hidden: 64, layers: 2, heads: 4, kvHeads: 1, intermediate: 128 },
    downsampleRatio: 0.5,
    psVersion: 'v1',
    imageRepeatTime: 4,
    maxDynamicPatch: 12,
    shardBytes: 8e6,
  },
  // a quarter of the real widths, real depths and tile size
  mid: {
    vision: { hidden: 256, layers: 24, heads: 4, intermediate: 1024, imageSize: 448, patch: 14 },
    temporal: { layers: range(12, 24), adalnChunks: 9 },
    llm: { hidden: 1024, layers: 32, heads: 8, kvHeads: 2, intermediate: 3584 },
    downsampleRatio: 0.25,
    psVersion: 'v2',
    imageRepeatTime: 4,
    maxDynamicPatch: 12,
    shardBytes: 5e8,
  },
  // the real 8B shapes (temporal layer set and k are guesses: pvc-architecture.md §2.4)
  full: {
    vision: { hidden: 1024, layers: 24, heads: 16, intermediate: 4096, imageSize: 448, patch: 14 },
    temporal: { layers: range(12, 24), adalnChunks: 9 },
    llm: { hidden: 4096, layers: 32, heads: 32, kvHeads: 8, intermediate: 14336 },
    downsampleRatio: 0.25,
    psVersion: 'v2',
    imageRepeatTime: 4,
    maxDynamicPatch: 12,
    shardBytes: 5e9,
  },
};

export const VOCAB_SIZE = 92553;
/** Pieces in tiny-tokenizer.model; checkpoint rows from here up to the first special id are unused. */
export const TINY_TOKENIZER_VOCAB = 1024;

/** Checkpoint ids of InternLM2's chat specials and InternVL's added tokens (pvc-architecture.md §8). */
export const SPECIAL_TOKENS: ReadonlyArray<readonly [number, string]> = [
  [92538, '<|plugin|>'], [92539, '<|interpreter|>'], [92540, '<|action_end|>'], [92541, '<|action_start|>'],
  [92542, '<|im_end|>'], [92543, '<|im_start|>'], [92544, '<img>'], [92545, '</img>'], [92546, '<IMG_CONTEXT>'],
  [92547, '<quad>'], [92548, '</quad>'], [92549, '<ref>'], [92550, '</ref>'], [92551, '<box>'], [92552, '</box>'],
];

/**
 * Normal(mean, std) per element. `gateChunk`: AdaLN gate chunks (every third chunk of that many
 * elements) get mean 1. `quietRows`: rows [from, to) of `rowSize` elements get std x 0.05.
 */
export interface Init {
  std: number;
  mean?: number;
  gateChunk?: number;
  quietRows?: { from: number; to: number; rowSize: number };
}

export interface TensorSpec {
  name: string;
  shape: number[];
  init: Init;
}

const linear = (fanIn: number): Init => ({ std: 1 / Math.sqrt(fanIn) });
const BIAS: Init = { std: 0.02 };
const NORM_WEIGHT: Init = { mean: 1, std: 0.1 };
const LAYER_SCALE: Init = { mean: 0.5, std: 0.15 };

/** Every tensor of a preset, in state-dict order: vision tower, projector, language model. */
export function checkpointTensors(p: Preset): TensorSpec[] {
  const out: TensorSpec[] = [];
  const add = (name: string, shape: number[], init: Init): void => {
    out.push({ name, shape, init });
  };
  const { hidden: C, intermediate: I, patch, imageSize } = p.vision;
  const grid = imageSize / patch;
  const v = 'vision_model';
  add(`${v}.embeddings.class_embedding`, [1, 1, C], { std: 0.5 });
  add(`${v}.embeddings.patch_embedding.weight`, [C, 3, patch, patch], linear(3 * patch * patch));
  add(`${v}.embeddings.patch_embedding.bias`, [C], BIAS);
  add(`${v}.embeddings.position_embedding`, [1, 1 + grid * grid, C], { std: 0.5 });
  if (p.temporal.layers.length) {
    add(`${v}.temporal_embedder.mlp.0.weight`, [C, 256], linear(256));
    add(`${v}.temporal_embedder.mlp.0.bias`, [C], BIAS);
    add(`${v}.temporal_embedder.mlp.2.weight`, [C, C], linear(C));
    add(`${v}.temporal_embedder.mlp.2.bias`, [C], BIAS);
  }
  for (let i = 0; i < p.vision.layers; i++) {
    const l = `${v}.encoder.layers.${i}`;
    add(`${l}.norm1.weight`, [C], NORM_WEIGHT);
    add(`${l}.norm1.bias`, [C], BIAS);
    add(`${l}.attn.qkv.weight`, [3 * C, C], linear(C));
    add(`${l}.attn.qkv.bias`, [3 * C], BIAS);
    add(`${l}.attn.proj.weight`, [C, C], linear(C));
    add(`${l}.attn.proj.bias`, [C], BIAS);
    add(`${l}.ls1`, [C], LAYER_SCALE);
    add(`${l}.norm2.weight`, [C], NORM_WEIGHT);
    add(`${l}.norm2.bias`, [C], BIAS);
    add(`${l}.mlp.fc1.weight`, [I, C], linear(C));
    add(`${l}.mlp.fc1.bias`, [I], BIAS);
    add(`${l}.mlp.fc2.weight`, [C, I], linear(I));
    add(`${l}.mlp.fc2.bias`, [C], BIAS);
    add(`${l}.ls2`, [C], LAYER_SCALE);
    if (p.temporal.layers.includes(i)) {
      const k = p.temporal.adalnChunks;
      add(`${l}.temporal_norm.weight`, [C], NORM_WEIGHT);
      add(`${l}.temporal_norm.bias`, [C], BIAS);
      add(`${l}.temporal_attn.qkv.weight`, [3 * C, C], linear(C));
      add(`${l}.temporal_attn.qkv.bias`, [3 * C], BIAS);
      add(`${l}.temporal_attn.proj.weight`, [C, C], linear(C));
      add(`${l}.temporal_attn.proj.bias`, [C], BIAS);
      // small modulation; gate chunks near 1 so temporal layers are not identities (DiT zero-inits them)
      add(`${l}.adaLN_modulation.1.weight`, [k * C, C], { std: 0.2 / Math.sqrt(C) });
      add(`${l}.adaLN_modulation.1.bias`, [k * C], { std: 0.05, gateChunk: C });
    }
  }
  const dIn = C / p.downsampleRatio ** 2;
  const H = p.llm.hidden;
  add('mlp1.0.weight', [dIn], NORM_WEIGHT);
  add('mlp1.0.bias', [dIn], BIAS);
  add('mlp1.1.weight', [H, dIn], linear(dIn));
  add('mlp1.1.bias', [H], BIAS);
  add('mlp1.3.weight', [H, H], linear(H));
  add('mlp1.3.bias', [H], BIAS);
  const m = 'language_model.model';
  const headDim = H / p.llm.heads;
  add(`${m}.tok_embeddings.weight`, [VOCAB_SIZE, H], { std: 1 });
  for (let i = 0; i < p.llm.layers; i++) {
    const l = `${m}.layers.${i}`;
    add(`${l}.attention_norm.weight`, [H], NORM_WEIGHT);
    // rows grouped per kv head: [q x heads/kvHeads, k, v] x kvHeads (pvc-architecture.md §6.2)
    add(`${l}.attention.wqkv.weight`, [(p.llm.heads + 2 * p.llm.kvHeads) * headDim, H], linear(H));
    add(`${l}.attention.wo.weight`, [H, H], linear(H));
    add(`${l}.ffn_norm.weight`, [H], NORM_WEIGHT);
    add(`${l}.feed_forward.w1.weight`, [p.llm.intermediate, H], linear(H));
    add(`${l}.feed_forward.w3.weight`, [p.llm.intermediate, H], linear(H));
    add(`${l}.feed_forward.w2.weight`, [H, p.llm.intermediate], linear(p.llm.intermediate));
  }
  add(`${m}.norm.weight`, [H], NORM_WEIGHT);
  // rows of ids without a piece get small logits, so greedy decoding picks decodable tokens
  add('language_model.output.weight', [VOCAB_SIZE, H], { ...linear(H), quietRows: { from: TINY_TOKENIZER_VOCAB, to: SPECIAL_TOKENS[0][0], rowSize: H } });
  return out;
}

/** config.json in the real schema (InternVL2-8B's fields plus PVC's top-level ones). */
export function configJson(p: Preset): Record<string, unknown> {
  return {
    _commit_hash: null,
    architectures: ['PVCInternVLModel'],
    auto_map: {
      AutoConfig: 'configuration_pvc_internvl.PVCInternVLConfig',
      AutoModel: 'modeling_pvc_internvl.PVCInternVLModel',
      AutoModelForCausalLM: 'modeling_pvc_internvl.PVCInternVLModel',
    },
    downsample_ratio: p.downsampleRatio,
    dynamic_image_size: true,
    force_image_size: p.vision.imageSize,
    image_repeat_time: p.imageRepeatTime,
    llm_config: {
      _name_or_path: 'internlm/internlm2_5-7b-chat',
      architectures: ['InternLM2ForCausalLM'],
      attn_implementation: 'eager',
      auto_map: {
        AutoConfig: 'configuration_internlm2.InternLM2Config',
        AutoModel: 'modeling_internlm2.InternLM2ForCausalLM',
        AutoModelForCausalLM: 'modeling_internlm2.InternLM2ForCausalLM',
      },
      bias: false,
      bos_token_id: 1,
      eos_token_id: 2,
      hidden_act: 'silu',
      hidden_size: p.llm.hidden,
      initializer_range: 0.02,
      intermediate_size: p.llm.intermediate,
      max_position_embeddings: 32768,
      model_type: 'internlm2',
      num_attention_heads: p.llm.heads,
      num_hidden_layers: p.llm.layers,
      num_key_value_heads: p.llm.kvHeads,
      pad_token_id: 2,
      pretraining_tp: 1,
      rms_norm_eps: 1e-5,
      rope_scaling: { factor: 2.0, type: 'dynamic' },
      rope_theta: 1000000,
      tie_word_embeddings: false,
      torch_dtype: 'bfloat16',
      transformers_version: '4.37.2',
      use_bfloat16: true,
      use_cache: true,
      vocab_size: VOCAB_SIZE,
    },
    max_dynamic_patch: p.maxDynamicPatch,
    min_dynamic_patch: 1,
    mlp_add_ops: null,
    model_type: 'pvc_internvl',
    pad2square: false,
    ps_version: p.psVersion,
    select_layer: -1,
    template: 'internlm2-chat',
    tile_repeat_way: null,
    torch_dtype: 'bfloat16',
    transformers_version: null,
    use_backbone_lora: 0,
    use_llm_lora: 0,
    use_temporal: p.temporal.layers.length > 0,
    use_thumbnail: true,
    video_repeat_time: 1,
    vision_config: {
      architectures: ['InternVisionTemporalModel'],
      attention_dropout: 0.0,
      drop_path_rate: 0.0,
      dropout: 0.0,
      hidden_act: 'gelu',
      hidden_size: p.vision.hidden,
      image_size: p.vision.imageSize,
      initializer_factor: 1.0,
      initializer_range: 0.02,
      intermediate_size: p.vision.intermediate,
      layer_norm_eps: 1e-6,
      model_type: 'intern_vit_6b',
      norm_type: 'layer_norm',
      num_attention_heads: p.vision.heads,
      num_channels: 3,
      num_hidden_layers: p.vision.layers,
      patch_size: p.vision.patch,
      qk_normalization: false,
      qkv_bias: true,
      torch_dtype: 'bfloat16',
      use_bfloat16: true,
      use_flash_attn: false,
    },
  };
}

const addedToken = (content: string) => ({ content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true });

/**
 * The JSON files of a checkpoint directory: config, generation config and the tokenizer files besides
 * tokenizer.model (InternVL2-8B's schema; every special beyond the tiny vocabulary is an added token).
 */
export function jsonFiles(p: Preset): Record<string, unknown> {
  const base: Array<readonly [number, string]> = [[0, '<unk>'], [1, '<s>'], [2, '</s>']];
  const decoder: Record<string, unknown> = {};
  for (const [id, content] of [...base, ...SPECIAL_TOKENS]) decoder[String(id)] = addedToken(content);
  const additional = SPECIAL_TOKENS.map(([, s]) => s);
  const plain = (content: string) => ({ content, lstrip: false, normalized: false, rstrip: false, single_word: false });
  return {
    'config.json': configJson(p),
    'generation_config.json': { _from_model_config: true, eos_token_id: [92542, 92543], transformers_version: '4.37.2' },
    'tokenizer_config.json': {
      add_bos_token: true,
      add_eos_token: false,
      added_tokens_decoder: decoder,
      additional_special_tokens: additional,
      auto_map: { AutoTokenizer: ['tokenization_internlm2.InternLM2Tokenizer', null] },
      bos_token: '<s>',
      clean_up_tokenization_spaces: false,
      eos_token: '</s>',
      model_max_length: 8192,
      pad_token: '</s>',
      tokenizer_class: 'InternLM2Tokenizer',
      unk_token: '<unk>',
    },
    'special_tokens_map.json': {
      additional_special_tokens: additional,
      bos_token: plain('<s>'),
      eos_token: plain('</s>'),
      pad_token: plain('</s>'),
      unk_token: plain('<unk>'),
    },
    'added_tokens.json': Object.fromEntries([...SPECIAL_TOKENS].sort((a, b) => (a[1] < b[1] ? -1 : 1)).map(([id, s]) => [s, id])),
  };
}

/** Mulberry32, one stream per tensor. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function streamSeed(seed: number, name: string): number {
  let h = 0x811c9dc5 ^ Math.imul(seed >>> 0, 0x9e3779b1);
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** Seeded values of one tensor, produced in order in chunks of any size (Box-Muller pairs). */
export class TensorStream {
  private readonly rand: () => number;
  private spare: number | null = null;
  private index = 0;

  constructor(
    readonly spec: TensorSpec,
    seed: number,
  ) {
    this.rand = prng(streamSeed(seed, spec.name));
  }

  private normal(): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return s;
    }
    const r = Math.sqrt(-2 * Math.log(1 - this.rand()));
    const a = 2 * Math.PI * this.rand();
    this.spare = r * Math.sin(a);
    return r * Math.cos(a);
  }

  /** The next `n` values as bf16 bit patterns. */
  next(n: number): Uint16Array {
    const { std, mean = 0, gateChunk, quietRows: q } = this.spec.init;
    const f = new Float32Array(n);
    for (let i = 0; i < n; i++, this.index++) {
      const mu = gateChunk && Math.floor(this.index / gateChunk) % 3 === 2 ? 1 : mean;
      const row = q ? Math.floor(this.index / q.rowSize) : -1;
      f[i] = mu + (q && row >= q.from && row < q.to ? 0.05 * std : std) * this.normal();
    }
    return toBf16Bits(f);
  }
}

const numel = (shape: number[]): number => shape.reduce((a, b) => a * b, 1);

/** Split tensors into shards in order, HF style: start a new shard when the next tensor would pass the limit. */
export function planShards(specs: TensorSpec[], maxBytes: number): TensorSpec[][] {
  const shards: TensorSpec[][] = [];
  let size = 0;
  for (const s of specs) {
    const bytes = numel(s.shape) * 2;
    if (!shards.length || (size > 0 && size + bytes > maxBytes)) {
      shards.push([]);
      size = 0;
    }
    shards[shards.length - 1].push(s);
    size += bytes;
  }
  return shards;
}

export interface WriteOptions {
  seed?: number;
  /** bytes generated and written per chunk; default 16 MiB */
  chunkBytes?: number;
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
}

/** Write one BF16 safetensors shard, streaming each tensor in chunks. Tensors are stored in name order. */
async function writeShard(path: string, specs: TensorSpec[], seed: number, chunkElems: number, progress: (n: number) => void): Promise<void> {
  const sorted = [...specs].sort((a, b) => (a.name < b.name ? -1 : 1));
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const s of sorted) {
    const bytes = numel(s.shape) * 2;
    header[s.name] = { dtype: 'BF16', shape: s.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8); // data section 8-byte aligned, as the reference writer pads
  const head = Buffer.alloc(8 + Buffer.byteLength(json));
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)), 0);
  head.write(json, 8);
  const fh = await open(path, 'w');
  try {
    let pos = 0;
    const write = async (b: Uint8Array): Promise<void> => {
      await fh.write(b, 0, b.length, pos);
      pos += b.length;
    };
    await write(head);
    for (const s of sorted) {
      const stream = new TensorStream(s, seed);
      for (let left = numel(s.shape); left > 0; ) {
        const n = Math.min(left, chunkElems);
        const bits = stream.next(n);
        await write(new Uint8Array(bits.buffer, 0, n * 2));
        progress(n * 2);
        left -= n;
      }
    }
  } finally {
    await fh.close();
  }
}

const TOKENIZER_MODEL = fileURLToPath(new URL('./tiny-tokenizer.model', import.meta.url));

/**
 * Write a complete synthetic checkpoint directory: config.json, generation_config.json, sharded
 * BF16 safetensors + model.safetensors.index.json, and the tokenizer files.
 */
export async function writeCheckpoint(dir: string, preset: string | Preset, opts: WriteOptions = {}): Promise<void> {
  const p = typeof preset === 'string' ? PRESETS[preset] : preset;
  if (!p) throw new Error(`unknown preset '${String(preset)}' (known: ${Object.keys(PRESETS).join(', ')})`);
  const seed = opts.seed ?? 0;
  const chunkElems = Math.max(1, Math.floor((opts.chunkBytes ?? 16 << 20) / 2));
  const specs = checkpointTensors(p);
  const shards = planShards(specs, p.shardBytes);
  const total = specs.reduce((s, t) => s + numel(t.shape) * 2, 0);
  await mkdir(dir, { recursive: true });
  const json = (name: string, value: unknown) => writeFile(join(dir, name), JSON.stringify(value, null, 2) + '\n');
  for (const [name, value] of Object.entries(jsonFiles(p))) await json(name, value);
  await copyFile(TOKENIZER_MODEL, join(dir, 'tokenizer.model'));
  const weightMap: Record<string, string> = {};
  let done = 0;
  for (let i = 0; i < shards.length; i++) {
    const file = `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`;
    for (const s of shards[i]) weightMap[s.name] = file;
    await writeShard(join(dir, file), shards[i], seed, chunkElems, (n) => {
      done += n;
      opts.onProgress?.(done, total);
    });
  }
  const sortedMap = Object.fromEntries(Object.keys(weightMap).sort().map((k) => [k, weightMap[k]]));
  await json(INDEX_FILE, { metadata: { total_size: total }, weight_map: sortedMap });
}
