// Library entry: load a checkpoint directory, then chat with it.
//
//   import { loadModel, chat } from 'pvc-webgpu';
//   const m = await loadModel('weights/PVC-InternVL2-8B');
//   const turn = chat(m.model, m.tokenizer, { question: 'What is in the image?', images: ['x.jpg'], stopIds: m.stopIds });
//   for (let r = await turn.next(); ; r = await turn.next()) { if (r.done) { console.log(r.value.stats); break; } process.stdout.write(r.value); }
//   m.dispose();

import { getDevice, type Gpu } from './gpu/index.js';
import { InternVL, type LoadOptions } from './models/internvl.js';
import { Tokenizer } from './text/tokenizer.js';
import { IM_END_ID } from './generate/generate.js';

export interface LoadModelOptions extends LoadOptions {
  /** a device to load onto; by default one is created (and destroyed by dispose()) */
  gpu?: Gpu;
}

export interface LoadedModel {
  dir: string;
  gpu: Gpu;
  model: InternVL;
  tokenizer: Tokenizer;
  /** <|im_end|> and the tokenizer's eos: InternVL's chat() overrides generation_config's eos list with <|im_end|>; eos is kept as a safety stop (as the PyTorch reference does) */
  stopIds: number[];
  /** Frees the weights' device (when loadModel created it). */
  dispose(): void;
}

/** Reads the tokenizer and config, then uploads the weights (onProgress reports bytes and GB/s). */
export async function loadModel(dir: string, opts: LoadModelOptions = {}): Promise<LoadedModel> {
  const tokenizer = await Tokenizer.fromDirectory(dir);
  const stopIds = [...new Set([IM_END_ID, tokenizer.eosId])];
  const gpu = opts.gpu ?? (await getDevice());
  try {
    const model = await InternVL.load(gpu, dir, opts);
    const dispose = (): void => {
      if (!opts.gpu) gpu.destroy();
    };
    return { dir, gpu, model, tokenizer, stopIds, dispose };
  } catch (e) {
    if (!opts.gpu) gpu.destroy();
    throw e;
  }
}

export { InternVL, type VisualItem, type LoadOptions } from './models/internvl.js';
export { chat, answerText, formatStats, InputError, IM_END_ID, type ChatRequest, type ChatResult, type ChatStats, type VideoInput } from './generate/generate.js';
export { Sampler, processLogits, resolveSampling, seededRandom, type SamplingOptions } from './generate/sampler.js';
export { Tokenizer } from './text/tokenizer.js';
export { buildPrompt, multiImagePrefix, videoPrefix, type ChatTurn } from './text/template.js';
export { loadImage, type TileOptions } from './preprocess/image.js';
export { loadVideo, type VideoOptions } from './preprocess/video.js';
export { loadConfig, type ModelConfig } from './weights/config.js';
export { getDevice, type Gpu } from './gpu/index.js';
