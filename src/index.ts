// Library entry: load a checkpoint directory, then chat with it.
//
//   import { loadModel, ChatSession } from 'pvc-webgpu';
//   const m = await loadModel('weights/PVC-InternVL2-8B');
//   const session = new ChatSession(m.model, m.tokenizer);          // keeps the KV cache between turns
//   const abort = new AbortController();                              // abort.abort() stops a turn at the next step
//   const turn = session.turn({ question: 'What is in the image?', images: ['x.jpg'], signal: abort.signal });
//   for (let r = await turn.next(); ; r = await turn.next()) { if (r.done) { console.log(formatStats(r.value.stats)); break; } process.stdout.write(r.value); }
//   // the next turn prefills only its own tokens; its images (if any) belong to its question
//   for await (const piece of session.turn({ question: 'And the colours?' })) process.stdout.write(piece);
//   session.dispose(); m.dispose();
//
// chat(model, tokenizer, { question, images, history }) is one stateless turn (a session made and
// disposed for it; `history` as text is re-prefilled).

import { getDevice, type Gpu } from './gpu/index.js';
import { InternVL, type LoadOptions } from './models/internvl.js';
import { Tokenizer } from './text/tokenizer.js';
import { checkLoadMemory } from './budget.js';

export interface LoadModelOptions extends LoadOptions {
  /** a device to load onto; by default one is created (and destroyed by dispose()) */
  gpu?: Gpu;
  /** host memory the weights may take on a software adapter (default: what the machine has available now) */
  availableBytes?: number;
}

export interface LoadedModel {
  dir: string;
  gpu: Gpu;
  model: InternVL;
  tokenizer: Tokenizer;
  /** <|im_end|> and the tokenizer's eos (the default stop ids of chat sessions) */
  stopIds: number[];
  /** Frees the weights' device (when loadModel created it). */
  dispose(): void;
}

/** Reads the tokenizer and config, then uploads the weights (onProgress reports bytes and GB/s). */
export async function loadModel(dir: string, opts: LoadModelOptions = {}): Promise<LoadedModel> {
  const tokenizer = await Tokenizer.fromDirectory(dir);
  const gpu = opts.gpu ?? (await getDevice());
  try {
    if (gpu.adapterClass === 'software') await checkLoadMemory(dir, opts.dtype ?? 'bf16', opts.availableBytes); // refuse before allocating
    const model = await InternVL.load(gpu, dir, { ...opts, tokenizer });
    const dispose = (): void => {
      if (!opts.gpu) gpu.destroy();
    };
    return { dir, gpu, model, tokenizer, stopIds: [...model.stopIds], dispose };
  } catch (e) {
    if (!opts.gpu) gpu.destroy();
    throw e;
  }
}

export { InternVL, PREFILL_CHUNK, type Collector, type LoadOptions } from './models/internvl.js';
export { planVisuals, type Media, type VisualPlan } from './models/plan.js';
export { chat, type ChatRequest } from './generate/generate.js';
export { ChatSession, answerText, formatStats, type ChatResult, type ChatStats, type SessionOptions, type TurnRequest } from './generate/session.js';
export { InputError, readMedia, type VideoInput } from './generate/inputs.js';
export { decodeTokens, NonFiniteError, type StopReason } from './generate/decode.js';
export { Sampler, processLogits, resolveSampling, seededRandom, type SamplingOptions } from './generate/sampler.js';
export { Tokenizer } from './text/tokenizer.js';
export { buildPrompt, multiImagePrefix, videoPrefix, type ChatTurn } from './text/template.js';
export { loadImage, type TileOptions } from './preprocess/image.js';
export { loadVideo, type VideoOptions } from './preprocess/video.js';
export { loadConfig, type ModelConfig } from './weights/config.js';
export { type QuantCacheOptions } from './weights/quant-cache.js';
export { getDevice, type Gpu } from './gpu/index.js';
export { BudgetError, checkTurn, checkLoadMemory, kvCacheBytes, largestActivations, weightBytes, type Limits, type TurnShape } from './budget.js';
