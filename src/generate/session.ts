// A conversation with the model that keeps its KV cache between turns: turn N prefills only its
// own tokens (the end of the last answer, the new question, the open assistant turn); the images of
// earlier turns live on as their rows in the cache, so the vision tower never runs on them again.
//
// Policy: the cache holds the ids the model generated (not the answer re-tokenized from its text,
// which Hugging Face's chat(history=...) would re-prefill; the two agree whenever the answer's text
// tokenizes back to the same ids). An answer cut by the token limit or an abort is closed with
// <|im_end|>. A turn that would outgrow the context is refused before any GPU work with an
// InputError, and the session stays as it was (ask something shorter, or reset()).

import type { KvCache } from '../models/internlm2.js';
import type { InternVL } from '../models/internvl.js';
import { PREFILL_CHUNK } from '../models/internvl.js';
import { planVisuals, visionChunking } from '../models/plan.js';
import { availableMemory, checkTurn } from '../budget.js';
import { IM_END, IMAGE_PLACEHOLDER, joinSegments, promptSegments, type ChatTurn, type Segment } from '../text/template.js';
import type { Tokenizer } from '../text/tokenizer.js';
import { decodeTokens, type StopReason } from './decode.js';
import { InputError, readMedia, type MediaRequest } from './inputs.js';
import { Sampler, type SamplingOptions } from './sampler.js';

export interface SessionOptions {
  systemMessage?: string;
  /** earlier turns as text (e.g. from a client): prefilled with the first turn, whose images may fill their <image> placeholders */
  history?: readonly ChatTurn[];
  /** positions the conversation may use; default the LLM's max_position_embeddings */
  contextLength?: number;
  /** ids that end an answer (emitted, then stop); default <|im_end|> and the tokenizer's eos */
  stopIds?: readonly number[];
  /**
   * Read special-token strings ("<|im_end|>", "<IMG_CONTEXT>", ...) in people's text (system message,
   * questions, answers) as ordinary text, as Hugging Face's split_special_tokens=True. Default false:
   * they become control tokens, as in Hugging Face's default.
   */
  splitSpecialTokens?: boolean;
}

export interface TurnRequest extends MediaRequest {
  question: string;
  /** default 1024, as the InternVL README */
  maxNewTokens?: number;
  /** the answer's stop ids are not picked before this many tokens (Hugging Face's min_new_tokens; InternVL's evaluation scripts pass 1); default 0 */
  minNewTokens?: number;
  sampling?: SamplingOptions;
  /** stops the turn at the next step boundary; the turn then ends with stop 'aborted' (see ChatStats.stop) */
  signal?: AbortSignal;
}

export interface ChatStats {
  /** positions of the conversation before this answer (earlier turns included) */
  promptTokens: number;
  /** the part of them run through the model in this turn (all of them on a first turn) */
  prefilledTokens: number;
  newTokens: number;
  /** image/video decoding, tiling, template and tokenizer (CPU) */
  preprocessMs: number;
  /** pixel upload + vision tower + projector */
  visionMs: number;
  /** LLM over the prefilled tokens, through to the first token's id */
  prefillMs: number;
  prefillTokensPerSecond: number;
  /** from the call to the first generated token */
  timeToFirstTokenMs: number;
  /** tokens after the first, per second of decoding */
  decodeTokensPerSecond: number;
  /** the sampling seed (reuse it to reproduce a sampled answer); null when decoding greedily */
  seed: number | null;
  /** why generation ended; 'aborted' with no ids: the signal fired before the first token and the turn left no trace */
  stop: StopReason;
}

export interface ChatResult {
  answer: string;
  /** generated ids, the stop token included when one was emitted */
  ids: number[];
  /** this turn as it goes into a history (the question with its image placeholders) */
  turn: ChatTurn;
  /** the text prefilled in this turn (the whole prompt on a first turn) */
  prompt: string;
  stats: ChatStats;
}

const PY_SPACE = '[\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
const LEADING_SPACE = new RegExp(`^${PY_SPACE}+`);
const TRAILING_SPACE = new RegExp(`${PY_SPACE}+$`);

/** Python's str.strip() (its whitespace set differs from String.prototype.trim's). */
export function pyStrip(text: string): string {
  return text.replace(LEADING_SPACE, '').replace(TRAILING_SPACE, '');
}

/**
 * InternVL's answer from generated ids: special tokens skipped, cut at <|im_end|>, stripped. Ids the
 * tokenizer has no piece for (a checkpoint's output rows past its vocabulary) decode as nothing.
 */
export function answerText(tokenizer: Tokenizer, ids: readonly number[]): string {
  return pyStrip(tokenizer.decode(ids.filter((id) => tokenizer.hasPiece(id)), { skipSpecialTokens: true }).split(IM_END)[0]);
}

export class ChatSession {
  /** the conversation's turns so far, as text */
  readonly history: ChatTurn[];
  private cache: KvCache | null = null;
  /** ids in the KV cache, in order */
  private cached: number[] = [];
  /** ids that close the last answer, prefilled with the next turn */
  private closing: number[] = [];
  /** history given as text and not yet prefilled */
  private pending: ChatTurn[];
  private running = false;
  private disposed = false;
  private readonly contextLength: number;
  private readonly stopIds: ReadonlySet<number>;
  private readonly imEnd: number;

  constructor(
    readonly model: InternVL,
    readonly tokenizer: Tokenizer,
    private readonly options: SessionOptions = {},
  ) {
    this.history = [...(options.history ?? [])];
    this.pending = [...this.history];
    this.contextLength = options.contextLength ?? model.config.llm.maxPositionEmbeddings;
    this.imEnd = tokenizer.specialId(IM_END);
    this.stopIds = new Set(options.stopIds ?? [this.imEnd, tokenizer.eosId]);
  }

  /** Ids of the conversation so far: those in the KV cache, then those that close the last answer. */
  get tokens(): number[] {
    return [...this.cached, ...this.closing];
  }

  /** Forget the conversation (the KV cache's memory is kept for the next one). Not while a turn runs: end it first (abort its signal). */
  reset(): void {
    if (this.running) throw new Error('a turn of this chat session is still running: end it (abort its signal) before reset()');
    if (this.cache) this.cache.length = 0;
    this.cached = [];
    this.closing = [];
    this.history.length = 0;
    this.pending = [];
  }

  /** Free the KV cache; the session cannot be used afterwards. */
  dispose(): void {
    this.cache?.release();
    this.cache = null;
    this.disposed = true;
  }

  /**
   * One turn. Yields text as tokens are produced (pieces never split a UTF-8 character, and together
   * they equal the final answer: leading whitespace is dropped and trailing whitespace held back until
   * more text follows), and returns the answer, ids, this turn and stats. Turns run one at a time.
   */
  async *turn(req: TurnRequest): AsyncGenerator<string, ChatResult, undefined> {
    if (this.disposed) throw new Error('this chat session was disposed');
    if (this.running) throw new Error('a turn of this chat session is still running');
    this.running = true;
    try {
      return yield* this.run(req);
    } finally {
      this.running = false;
    }
  }

  private async *run(req: TurnRequest): AsyncGenerator<string, ChatResult, undefined> {
    const t0 = performance.now();
    const { model, tokenizer } = this;
    const maxNewTokens = req.maxNewTokens ?? 1024;
    if (!(Number.isSafeInteger(maxNewTokens) && maxNewTokens >= 1)) throw new InputError(`max new tokens must be a positive integer, got ${maxNewTokens}`);
    const minNewTokens = req.minNewTokens ?? 0;
    if (!(Number.isSafeInteger(minNewTokens) && minNewTokens >= 0 && minNewTokens <= maxNewTokens)) throw new InputError(`min new tokens must be an integer from 0 to max new tokens (${maxNewTokens}), got ${minNewTokens}`);
    let sampler: Sampler;
    try {
      sampler = new Sampler(req.sampling);
    } catch (e) {
      throw new InputError((e as Error).message);
    }
    const { media, prefix } = await readMedia(model, req);
    const plan = media.length ? planVisuals(model, media) : null;
    const first = this.cached.length === 0;
    // InternVLChatModel.chat prefixes a first question; with a history given as text its images fill the history's placeholders
    const question = plan && this.pending.length === 0 && !req.question.includes(IMAGE_PLACEHOLDER) ? prefix + req.question : req.question;
    let segments: Segment[];
    try {
      segments = promptSegments(question, { history: this.pending, systemMessage: this.options.systemMessage, imageRows: plan?.placeholderRows, continuation: !first });
    } catch (e) {
      throw new InputError((e as Error).message);
    }
    const prompt = joinSegments(segments);
    const ids = [...this.closing, ...tokenizer.encode(prompt, { addSpecialTokens: first, plain: this.options.splitSpecialTokens ? userRanges(segments) : [] })];
    const contexts = ids.reduce((n, id) => n + (id === model.imageContextId ? 1 : 0), 0);
    if (contexts !== (plan?.rows ?? 0)) {
      throw new InputError(`the prompt holds ${contexts} <IMG_CONTEXT> tokens but its images give ${plan?.rows ?? 0} vision rows: <IMG_CONTEXT> is a control token (pass splitSpecialTokens to read it as text)`);
    }
    const total = this.cached.length + ids.length;
    if (total >= this.contextLength) {
      const earlier = first ? '' : ` (${this.cached.length} of them from earlier turns: start a new conversation with reset())`;
      throw new InputError(
        `the prompt is ${total} tokens but the context holds ${this.contextLength} (with room for at least one new token)${earlier}; ` +
          'use fewer tiles (--max-tiles), fewer frames (--frames), fewer images or a shorter conversation',
      );
    }
    const tPrepared = performance.now();

    const room = this.contextLength - total;
    const capacity = total + Math.min(maxNewTokens, room);
    // the memory budget (src/budget.ts) before anything is allocated: the cache's growth and the largest step
    const v = model.config.vision;
    const longest = Math.max(0, ...(plan?.sequences ?? []).map((q) => q.tiles.length));
    const turnShape = {
      contextPositions: capacity,
      cachedPositions: this.cache?.capacity ?? 0,
      prefillChunk: Math.min(PREFILL_CHUNK, ids.length),
      visionFrames: longest && visionChunking(model.config, longest, model.gpu.maxBindingBytes).frames,
      visionTokens: 1 + (v.imageSize / v.patchSize) ** 2,
      visionHidden: v.hiddenSize,
      visionIntermediate: v.intermediateSize,
    };
    checkTurn(model.config.llm, turnShape, { maxStorageBufferBindingSize: model.gpu.maxBindingBytes, availableBytes: model.gpu.adapterClass === 'software' ? await availableMemory() : Infinity });
    if (!this.cache) this.cache = model.llm.newCache(model.gpu, capacity);
    else await model.llm.reserve(model.gpu, this.cache, capacity);
    const cache = this.cache;

    let visionMs = 0;
    let logits;
    try {
      logits = await model.prefill(Int32Array.from(ids), plan, cache, { collector: { visionMs: (ms) => (visionMs = ms) }, signal: req.signal });
    } catch (e) {
      cache.length = this.cached.length; // the session stays as it was before this turn
      if (!req.signal?.aborted) throw e;
      const tAbort = performance.now();
      return { answer: '', ids: [], turn: { question, answer: '' }, prompt, stats: this.stats(ids.length, total, [], { t0, tPrepared, tFirst: tAbort, tEnd: tAbort, visionMs, sampler, stop: 'aborted' }) };
    }

    const generated: number[] = [];
    const stream = tokenizer.streamDecoder({ skipSpecialTokens: true });
    let started = false; // past the leading whitespace
    let held = ''; // trailing whitespace not yet emitted
    const settle = (piece: string): string => {
      let text = held + piece;
      if (!started) {
        text = text.replace(LEADING_SPACE, '');
        started = text.length > 0;
      }
      held = TRAILING_SPACE.exec(text)?.[0] ?? '';
      return text.slice(0, text.length - held.length);
    };
    let tFirst = 0;
    const tokens = decodeTokens(model, cache, logits, { maxNewTokens, minNewTokens, room, stopIds: this.stopIds, sampler, signal: req.signal });
    let r!: IteratorResult<number, StopReason>;
    let done = false;
    try {
      while (!(r = await tokens.next()).done) {
        if (generated.length === 0) tFirst = performance.now();
        generated.push(r.value);
        // an id the tokenizer has no piece for (a checkpoint's output rows past its vocabulary) adds no text
        const piece = tokenizer.hasPiece(r.value) ? settle(stream.push(r.value)) : '';
        if (piece) yield piece;
      }
      done = true;
    } finally {
      // an error, or a caller that stopped reading: the logits are released and the session stays as it was
      if (!done) {
        await tokens.return('aborted');
        cache.length = this.cached.length;
      }
    }
    const rest = settle(stream.flush());
    if (rest) yield rest;
    const tEnd = performance.now();

    // the cache now holds this turn's ids and every generated id but the last
    const last = generated[generated.length - 1];
    this.cached.push(...ids, ...generated.slice(0, -1));
    this.closing = this.stopIds.has(last) ? [this.imEnd] : [last, this.imEnd];
    this.pending = [];
    const answer = answerText(tokenizer, generated);
    const turn = { question, answer };
    this.history.push(turn);
    return { answer, ids: generated, turn, prompt, stats: this.stats(ids.length, total, generated, { t0, tPrepared, tFirst, tEnd, visionMs, sampler, stop: r.value }) };
  }

  private stats(prefilled: number, total: number, generated: number[], t: { t0: number; tPrepared: number; tFirst: number; tEnd: number; visionMs: number; sampler: Sampler; stop: StopReason }): ChatStats {
    const prefillMs = t.tFirst - t.tPrepared - t.visionMs;
    return {
      promptTokens: total,
      prefilledTokens: prefilled,
      newTokens: generated.length,
      preprocessMs: t.tPrepared - t.t0,
      visionMs: t.visionMs,
      prefillMs,
      prefillTokensPerSecond: (prefilled / prefillMs) * 1000,
      timeToFirstTokenMs: t.tFirst - t.t0,
      decodeTokensPerSecond: generated.length > 1 ? ((generated.length - 1) / (t.tEnd - t.tFirst)) * 1000 : 0,
      seed: t.sampler.settings.temperature > 0 ? t.sampler.seed : null,
      stop: t.stop,
    };
  }
}

/** [start, end) character ranges of the text people wrote, in the joined prompt. */
function userRanges(segments: readonly Segment[]): [number, number][] {
  const out: [number, number][] = [];
  let at = 0;
  for (const s of segments) {
    if (s.user) out.push([at, at + s.text.length]);
    at += s.text.length;
  }
  return out;
}

/** The stats as one line for a person. */
export function formatStats(s: ChatStats): string {
  const ms = (x: number) => (x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${x.toFixed(0)} ms`);
  const prefilled = s.prefilledTokens < s.promptTokens ? ` (${s.prefilledTokens} prefilled)` : '';
  const parts = [
    `${s.promptTokens} prompt tokens${prefilled}, ${s.newTokens} new (${s.stop})`,
    `preprocess ${ms(s.preprocessMs)}`,
    s.visionMs > 0 ? `vision ${ms(s.visionMs)}` : '',
    `prefill ${s.prefillTokensPerSecond.toFixed(1)} tok/s`,
    `first token ${ms(s.timeToFirstTokenMs)}`,
    s.newTokens > 1 ? `decode ${s.decodeTokensPerSecond.toFixed(2)} tok/s` : '',
    s.seed !== null ? `seed ${s.seed}` : '',
  ];
  return parts.filter(Boolean).join(' | ');
}
