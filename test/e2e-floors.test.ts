// bench:e2e's work counts against the checkpoints' own tensor shapes: the FLOPs from the config
// formulas equal 2 x (rows x weight elements) summed over the stored weight tensors of every preset
// (plus attention, summed position by position here), and the vision profile split puts each
// dispatch of a recorded layout where the taps say.

import { describe, expect, it } from 'vitest';
import { llmFlops, llmLayerParams, visionFlopsPerFrame, visionParts } from '../bench/e2e-floors.js';
import { parseConfig } from '../src/weights/config.js';
import { checkpointTensors, configJson, PRESETS } from '../src/weights/synthetic.js';

const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

describe.each(Object.keys(PRESETS))('work counts, %s preset', (preset) => {
  const config = parseConfig(configJson(PRESETS[preset]));
  const tensors = new Map(checkpointTensors(PRESETS[preset]).map((t) => [t.name, numel(t.shape)]));
  const sum = (re: RegExp) => [...tensors].filter(([name]) => re.test(name)).reduce((s, [, n]) => s + n, 0);

  it('LLM: linear weights per layer and prefill FLOPs', () => {
    const llm = config.llm;
    expect(llmLayerParams(llm)).toBe(sum(/^language_model\.model\.layers\.0\.(attention\.(wqkv|wo)|feed_forward\.w[123])\.weight$/));
    const n = 37;
    const past = 5;
    let attention = 0;
    for (let i = 0; i < n; i++) attention += 4 * llm.numAttentionHeads * llm.headDim * (past + i + 1); // QKᵀ and PV over the keys position i sees
    const linears = sum(/^language_model\.model\.layers\.\d+\.(attention|feed_forward)\..*weight$/);
    const want = 2 * n * linears + llm.numHiddenLayers * attention + 2 * tensors.get('language_model.output.weight')!;
    expect(llmFlops(llm, n, past)).toBe(want);
  });

  it('vision: ViT, temporal and projector FLOPs per frame', () => {
    const v = config.vision;
    const frames = 3;
    const tokens = 1 + (v.imageSize / v.patchSize) ** 2;
    const layers = Array.from({ length: v.numHiddenLayers }, (_, i) => ({
      temporal: tensors.has(`vision_model.encoder.layers.${i}.temporal_attn.qkv.weight`),
      adalnChunks: (tensors.get(`vision_model.encoder.layers.${i}.adaLN_modulation.1.weight`) ?? 0) / v.hiddenSize ** 2,
    }));
    const got = visionFlopsPerFrame(config, layers, frames);
    const spatial = sum(/^vision_model\.encoder\.layers\.\d+\.(attn\.(qkv|proj)|mlp\.fc[12])\.weight$/);
    const patches = tokens - 1;
    expect(got.vit).toBe(2 * patches * tensors.get('vision_model.embeddings.patch_embedding.weight')! + 2 * tokens * spatial + v.numHiddenLayers * 4 * tokens * tokens * v.hiddenSize);
    const temporalLinears = sum(/^vision_model\.encoder\.layers\.\d+\.temporal_attn\.(qkv|proj)\.weight$/);
    const perFrame = sum(/^vision_model\.(encoder\.layers\.\d+\.adaLN_modulation\.1|temporal_embedder\.mlp\.[02])\.weight$/);
    const temporalLayers = layers.filter((l) => l.temporal).length;
    expect(got.temporal).toBe(2 * tokens * temporalLinears + 2 * perFrame + temporalLayers * 4 * tokens * frames * v.hiddenSize);
    expect(got.projector).toBe(2 * config.numImageToken * (tensors.get('mlp1.1.weight')! + tensors.get('mlp1.3.weight')!));
  });
});

it('vision profile split: temporal parts take the dispatch after their tap, the tail is the projector', () => {
  // dispatch layout of one tiny-preset step: 3 patch-embedding, 4 temporal-embedder (SiLU after its tap),
  // layer 0 spatial (7), layer 1 with temporal attention (adaLN + 5 up to its tap, gated residual, then 11 spatial), 5 projector
  const marks = [
    { name: 'vision.embeddings', at: 3 },
    { name: 'vision.temporal_embedding', at: 6 },
    { name: 'vision.layer.0', at: 14 },
    { name: 'vision.temporal_attn.1', at: 20 },
    { name: 'vision.layer.1', at: 32 },
    { name: 'vision.pixel_shuffle', at: 33 },
  ];
  const times = Array.from({ length: 37 }, (_, i) => 2 ** (i % 3)); // distinct weights: a dispatch in the wrong part changes the sums
  const part = (from: number, to: number) => times.slice(from, to).reduce((a, b) => a + b, 0);
  expect(visionParts(marks, times)).toEqual({ vit: part(0, 3) + part(7, 14) + part(21, 32), temporal: part(3, 7) + part(14, 21), projector: part(32, 37) });
});
