// One benchmark item through the library API: chat() with greedy decoding, as the official
// scripts' model.chat(..., do_sample=False, num_beams=1).

import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { chat, type ChatRequest, type ChatStats, type LoadedModel } from '../src/index.js';
import type { EvalItem } from './tasks.js';

/** One line of a results file. */
export interface ResultLine {
  key: string;
  index: number;
  question_id: string | number | null;
  subtask?: string;
  question: string;
  /** the whole prompt the model got, each run of image tokens written <IMG_CONTEXT*n> */
  prompt: string;
  answer: string;
  annotation: string | string[];
  /** the checkpoint folder that answered */
  model: string;
  /** host:pid of the process that answered */
  worker: string;
  timings: Pick<ChatStats, 'promptTokens' | 'newTokens' | 'preprocessMs' | 'visionMs' | 'prefillMs' | 'timeToFirstTokenMs' | 'decodeTokensPerSecond' | 'stop'> & { totalMs: number };
}

export const workerName = `${hostname()}:${process.pid}`;

/** The chat request for an item, media paths resolved against the dataset folder. */
function chatRequest(item: EvalItem, dataDir: string, imEnd: number): ChatRequest {
  // InternVL's chat() sets generation_config's eos_token_id to <|im_end|> alone
  const req: ChatRequest = { question: item.question, maxNewTokens: item.maxNewTokens, minNewTokens: 1, sampling: { temperature: 0 }, stopIds: [imEnd] };
  if (item.image) {
    req.images = [resolve(dataDir, item.image)];
    req.maxTiles = item.maxTiles;
  }
  if (item.video) req.video = { ...item.video, path: resolve(dataDir, item.video.path) };
  if (item.frameFolder) req.video = { path: resolve(dataDir, item.frameFolder.path), framePaths: item.frameFolder.files.map((f) => join(resolve(dataDir), f)) };
  return req;
}

export async function answerItem(m: LoadedModel, item: EvalItem, dataDir: string): Promise<ResultLine> {
  const t0 = performance.now();
  const turn = chat(m.model, m.tokenizer, chatRequest(item, dataDir, m.tokenizer.specialId('<|im_end|>')));
  let r = await turn.next();
  while (!r.done) r = await turn.next();
  const { stats, answer, prompt } = r.value;
  return {
    key: item.key,
    index: item.index,
    question_id: item.questionId,
    ...(item.subtask !== undefined ? { subtask: item.subtask } : {}),
    question: item.question,
    prompt: prompt.replace(/(?:<IMG_CONTEXT>)+/g, (run) => `<IMG_CONTEXT*${run.length / '<IMG_CONTEXT>'.length}>`),
    answer,
    annotation: item.annotation,
    model: resolve(m.dir),
    worker: workerName,
    timings: {
      promptTokens: stats.promptTokens,
      newTokens: stats.newTokens,
      preprocessMs: stats.preprocessMs,
      visionMs: stats.visionMs,
      prefillMs: stats.prefillMs,
      timeToFirstTokenMs: stats.timeToFirstTokenMs,
      decodeTokensPerSecond: stats.decodeTokensPerSecond,
      stop: stats.stop,
      totalMs: performance.now() - t0,
    },
  };
}
