import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig, parseConfig } from '../src/weights/config.js';
import { PRESETS, configJson } from '../src/weights/synthetic.js';

// InternVL2-8B's config.json, values from pvc-architecture.md §1.2-1.4 (PretrainedConfig defaults left out).
const INTERNVL2_8B = {
  architectures: ['InternVLChatModel'],
  auto_map: {
    AutoConfig: 'configuration_internvl_chat.InternVLChatConfig',
    AutoModel: 'modeling_internvl_chat.InternVLChatModel',
    AutoModelForCausalLM: 'modeling_internvl_chat.InternVLChatModel',
  },
  downsample_ratio: 0.5,
  dynamic_image_size: true,
  force_image_size: 448,
  llm_config: {
    _name_or_path: 'internlm/internlm2_5-7b-chat',
    architectures: ['InternLM2ForCausalLM'],
    attn_implementation: 'flash_attention_2',
    bias: false,
    bos_token_id: 1,
    eos_token_id: 2,
    hidden_act: 'silu',
    hidden_size: 4096,
    initializer_range: 0.02,
    intermediate_size: 14336,
    max_position_embeddings: 32768,
    model_type: 'internlm2',
    num_attention_heads: 32,
    num_hidden_layers: 32,
    num_key_value_heads: 8,
    pad_token_id: 2,
    rms_norm_eps: 1e-5,
    rope_scaling: { factor: 2.0, type: 'dynamic' },
    rope_theta: 1000000,
    tie_word_embeddings: false,
    torch_dtype: 'bfloat16',
    use_cache: true,
    vocab_size: 92553,
  },
  max_dynamic_patch: 12,
  min_dynamic_patch: 1,
  model_type: 'internvl_chat',
  ps_version: 'v2',
  select_layer: -1,
  template: 'internlm2-chat',
  torch_dtype: 'bfloat16',
  use_backbone_lora: 0,
  use_llm_lora: 0,
  use_thumbnail: true,
  vision_config: {
    architectures: ['InternVisionModel'],
    attention_dropout: 0.0,
    drop_path_rate: 0.0,
    dropout: 0.0,
    hidden_act: 'gelu',
    hidden_size: 1024,
    image_size: 448,
    initializer_factor: 1.0,
    initializer_range: 0.02,
    intermediate_size: 4096,
    layer_norm_eps: 1e-6,
    model_type: 'intern_vit_6b',
    norm_type: 'layer_norm',
    num_attention_heads: 16,
    num_channels: 3,
    num_hidden_layers: 24,
    patch_size: 14,
    qk_normalization: false,
    qkv_bias: true,
    torch_dtype: 'bfloat16',
    use_flash_attn: true,
  },
};

type Json = Record<string, unknown>;
const clone = (o: Json): Json => JSON.parse(JSON.stringify(o));
/** A copy with one field changed: `path` like 'vision_config.qk_normalization'. */
function withField(base: Json, path: string, value: unknown): Json {
  const out = clone(base);
  const keys = path.split('.');
  let o = out;
  for (const k of keys.slice(0, -1)) o = o[k] as Json;
  if (value === undefined) delete o[keys.at(-1)!];
  else o[keys.at(-1)!] = value;
  return out;
}

describe('InternVL2-8B config', () => {
  it('parses to the known values', () => {
    const c = parseConfig(INTERNVL2_8B);
    expect(c.modelType).toBe('internvl_chat');
    expect(c.vision).toMatchObject({
      hiddenSize: 1024, numHiddenLayers: 24, numAttentionHeads: 16, headDim: 64, intermediateSize: 4096,
      patchSize: 14, imageSize: 448, numChannels: 3, layerNormEps: 1e-6, qkvBias: true, qkNormalization: false, normType: 'layer_norm', hiddenAct: 'gelu',
    });
    expect(c.llm).toMatchObject({
      hiddenSize: 4096, numHiddenLayers: 32, numAttentionHeads: 32, numKeyValueHeads: 8, headDim: 128, intermediateSize: 14336,
      vocabSize: 92553, rmsNormEps: 1e-5, ropeTheta: 1e6, ropeScaling: { type: 'dynamic', factor: 2 }, maxPositionEmbeddings: 32768,
      bosTokenId: 1, eosTokenId: 2, padTokenId: 2, architectures: ['InternLM2ForCausalLM'],
    });
    expect(c).toMatchObject({
      downsampleRatio: 0.5, psVersion: 'v2', template: 'internlm2-chat', dynamicImageSize: true, useThumbnail: true,
      minDynamicPatch: 1, maxDynamicPatch: 12, forceImageSize: 448, imageSize: 448, selectLayer: -1,
      useTemporal: false, imageRepeatTime: 1, videoRepeatTime: 1, tileRepeatWay: null, mlpAddOps: null, numImageToken: 256, torchDtype: 'bfloat16',
    });
  });

  it('as PVC (pvc_internvl with the temporal fields): 64 tokens per frame at ratio 0.25', () => {
    const pvc = { ...clone(INTERNVL2_8B), model_type: 'pvc_internvl', downsample_ratio: 0.25, use_temporal: true, image_repeat_time: 4, video_repeat_time: 1, tile_repeat_way: 'x', mlp_add_ops: null };
    const c = parseConfig(pvc);
    expect(c).toMatchObject({ modelType: 'pvc_internvl', useTemporal: true, imageRepeatTime: 4, videoRepeatTime: 1, tileRepeatWay: 'x', numImageToken: 64, downsampleRatio: 0.25 });
  });

  it('defaults follow the config classes when fields are absent', () => {
    const c = parseConfig(withField(withField(INTERNVL2_8B, 'force_image_size', undefined), 'llm_config.rope_scaling', undefined));
    expect(c.forceImageSize).toBeNull();
    expect(c.imageSize).toBe(448);
    expect(c.llm.ropeScaling).toBeNull();
  });
});

describe('synthetic presets', () => {
  for (const [name, p] of Object.entries(PRESETS)) {
    it(`${name}: config.json round-trips into the preset's shapes`, () => {
      const c = parseConfig(JSON.parse(JSON.stringify(configJson(p))), `${name}/config.json`);
      expect(c.modelType).toBe('pvc_internvl');
      expect(c.useTemporal).toBe(true);
      expect(c.imageRepeatTime).toBe(p.imageRepeatTime);
      expect([c.vision.hiddenSize, c.vision.numHiddenLayers, c.vision.numAttentionHeads, c.vision.imageSize]).toEqual([p.vision.hidden, p.vision.layers, p.vision.heads, p.vision.imageSize]);
      expect([c.llm.hiddenSize, c.llm.numHiddenLayers, c.llm.numAttentionHeads, c.llm.numKeyValueHeads, c.llm.vocabSize]).toEqual([p.llm.hidden, p.llm.layers, p.llm.heads, p.llm.kvHeads, 92553]);
      expect(c.llm.numAttentionHeads / c.llm.numKeyValueHeads).toBe(4);
      expect([c.downsampleRatio, c.psVersion]).toEqual([p.downsampleRatio, p.psVersion]);
      expect(c.numImageToken).toBe((p.vision.imageSize / p.vision.patch * p.downsampleRatio) ** 2);
    });
  }

  it('presets cover both pixel-shuffle ratios and both ps versions', () => {
    const ps = Object.values(PRESETS).filter((p) => p.vision.hidden < 256);
    expect(new Set(ps.map((p) => p.downsampleRatio))).toEqual(new Set([0.5, 0.25]));
    expect(new Set(ps.map((p) => p.psVersion))).toEqual(new Set(['v1', 'v2']));
    expect(new Set(ps.map((p) => p.temporal.adalnChunks))).toEqual(new Set([6, 9]));
  });
});

describe('unsupported or invalid values are explained', () => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['vision_config.qk_normalization', true, /vision_config\.qk_normalization = true: QK normalisation \(InternViT-6B\) is not supported yet/],
    ['vision_config.norm_type', 'rms_norm', /vision_config\.norm_type = "rms_norm": RMSNorm in the vision tower \(InternViT-6B\) is not supported yet/],
    ['vision_config.hidden_act', 'relu', /vision_config\.hidden_act = "relu": a vision activation other than "gelu"/],
    ['vision_config.num_attention_heads', 15, /vision_config\.hidden_size 1024 is not a multiple of num_attention_heads 15/],
    ['llm_config.hidden_act', 'gelu', /llm_config\.hidden_act = "gelu": an LLM activation other than "silu" .*not supported yet/],
    ['llm_config.rope_scaling', { type: 'linear', factor: 2 }, /llm_config\.rope_scaling = \{"type":"linear","factor":2\}: RoPE scaling other than/],
    ['llm_config.rope_scaling', { type: 'dynamic', factor: 'big' }, /llm_config\.rope_scaling\.factor is "big"/],
    ['llm_config.architectures', ['Qwen2ForCausalLM'], /llm_config\.architectures = \["Qwen2ForCausalLM"\]: a language model other than InternLM2ForCausalLM/],
    ['llm_config.bias', true, /llm_config\.bias = true: biases on wqkv\/wo/],
    ['llm_config.tie_word_embeddings', true, /tie_word_embeddings = true: an LM head tied/],
    ['llm_config.num_key_value_heads', 5, /num_attention_heads 32 is not a multiple of num_key_value_heads 5/],
    ['llm_config.hidden_size', '4096', /llm_config\.hidden_size is "4096"; expected an integer >= 1/],
    ['llm_config.eos_token_id', 99999, /llm_config\.eos_token_id is 99999; expected a token id below vocab_size 92553/],
    ['select_layer', -4, /select_layer = -4: taking vision features from a layer other than the last \(-1\) is not supported yet/],
    ['mlp_add_ops', ['pool'], /mlp_add_ops = \["pool"\]: extra projector ops \(mlp_add_ops\) is not supported yet/],
    ['downsample_ratio', 0.3, /downsample_ratio = 0\.3: a pixel-shuffle ratio other than 0\.5 or 0\.25/],
    ['ps_version', 'v3', /ps_version is "v3"; expected one of "v1", "v2"/],
    ['model_type', 'llava', /model_type is "llava"; expected one of "pvc_internvl", "internvl_chat" \(other InternVL families/],
    ['model_type', undefined, /model_type is missing/],
    ['vision_config', undefined, /vision_config is missing or not an object/],
    ['force_image_size', 450, /image size 450 \/ patch 14 gives a [\d.]+-patch grid/],
    ['max_dynamic_patch', 0, /max_dynamic_patch is 0; expected an integer >= 1/],
    ['use_temporal', true, /use_temporal = true: temporal modules with model_type "internvl_chat"/],
    ['pad2square', true, /pad2square = true: padding images to squares is not supported yet/],
  ];
  for (const [path, value, re] of cases) {
    it(`${path} = ${JSON.stringify(value)}`, () => {
      expect(() => parseConfig(withField(INTERNVL2_8B, path, value), 'x/config.json')).toThrow(re);
      expect(() => parseConfig(withField(INTERNVL2_8B, path, value), 'x/config.json')).toThrow(ConfigError);
    });
  }

  it('lists every problem at once', () => {
    const bad = withField(withField(INTERNVL2_8B, 'select_layer', -2), 'vision_config.qk_normalization', true);
    expect(() => parseConfig(bad, 'x/config.json')).toThrow(/x\/config\.json: \n {2}vision_config\.qk_normalization.*\n {2}select_layer/);
  });

  it('loadConfig names the file for unreadable or invalid JSON', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
    await expect(loadConfig(dir)).rejects.toThrow(/config\.json: cannot read/);
    writeFileSync(join(dir, 'config.json'), '{"model_type": ');
    await expect(loadConfig(dir)).rejects.toThrow(/config\.json: invalid JSON/);
    writeFileSync(join(dir, 'config.json'), JSON.stringify(INTERNVL2_8B));
    expect((await loadConfig(dir)).numImageToken).toBe(256);
  });
});
