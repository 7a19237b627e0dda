// Chat sessions on a tiny synthetic checkpoint: KV reuse across turns (turn N prefills only its own
// tokens and decodes the same greedy ids as one pass over the whole conversation), the context
// policy, aborting a turn, non-finite logits, ids without a tokenizer piece, placeholders in earlier
// answers, special-token strings typed by people; chunked prefill equals one pass within a stated
// activation bound.

import { readFile } from 'node:fs/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeTokens, NonFiniteError } from '../src/generate/decode.js';
import { InputError } from '../src/generate/inputs.js';
import { Sampler } from '../src/generate/sampler.js';
import { answerText, ChatSession, formatStats, type ChatResult, type TurnRequest } from '../src/generate/session.js';
import { chat } from '../src/generate/generate.js';
import type { Tensor } from '../src/gpu/tensor.js';
import { loadModel, type LoadedModel } from '../src/index.js';
import { prefillStepBytes, type Stage } from '../src/models/internvl.js';
import { planVisuals, type Media } from '../src/models/plan.js';
import { loadImage } from '../src/preprocess/image.js';
import { writeCheckpoint } from '../src/weights/synthetic.js';
import { freshSeed, relL2, SHARED, testGpu } from './util.js';

const IMAGE = join(SHARED, 'assets/example_image1.jpg');
const IMAGE2 = join(SHARED, 'assets/example_image2.jpg');
const tmp = mkdtempSync(join(tmpdir(), 'session-test-'));
const seed = freshSeed();
let m: LoadedModel;

async function image(path: string, maxTiles = 1): Promise<Media> {
  const cfg = m.model.config;
  const im = await loadImage(await readFile(path), { imageSize: cfg.imageSize, maxTiles, minTiles: cfg.minDynamicPatch, useThumbnail: cfg.useThumbnail });
  return { kind: 'image', tiles: im.shape[0], pixels: im.data };
}

async function turn(session: ChatSession, req: TurnRequest, onPiece?: (p: string) => void): Promise<ChatResult> {
  const it = session.turn(req);
  for (;;) {
    const r = await it.next();
    if (r.done) return r.value;
    onPiece?.(r.value);
  }
}

/** Greedy ids after one prefill of the whole conversation `ids` (no KV reuse). */
async function singlePass(ids: readonly number[], media: Media[], maxNewTokens: number): Promise<number[]> {
  const cache = m.model.llm.newCache(m.gpu, ids.length + maxNewTokens);
  try {
    const logits = await m.model.prefill(Int32Array.from(ids), media.length ? planVisuals(m.model, media) : null, cache, { chunk: ids.length });
    const out: number[] = [];
    for await (const id of decodeTokens(m.model, cache, logits, { maxNewTokens, room: maxNewTokens, stopIds: new Set(m.stopIds), sampler: new Sampler() })) out.push(id);
    return out;
  } finally {
    cache.release();
  }
}

/** The ids of a new user turn after the first (written out by hand from conversation.py); the session prefills them after the ids that close the last answer. */
function userTurn(question: string): number[] {
  return m.tokenizer.encode(`<|im_start|>user\n${question}<|im_end|><|im_start|>assistant\n`, { addSpecialTokens: false });
}

/** How many ids close an answer: <|im_end|>, after the last id when that was not a stop id (cut by the token limit or an abort). */
const imEnd = () => m.tokenizer.tokenToId('<|im_end|>')!;

function closingLength(last: ChatResult): number {
  return m.stopIds.includes(last.ids[last.ids.length - 1]) ? 1 : 2;
}

beforeAll(async () => {
  await writeCheckpoint(tmp, 'tiny', { seed });
  m = await loadModel(tmp, { gpu: await testGpu() });
}, 120_000);

afterAll(() => {
  m?.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

describe(`chat sessions (tiny checkpoint seed ${seed})`, () => {
  it('turn 2 prefills only its own tokens and decodes what one pass over the whole conversation decodes; turn 3 brings a new image', async () => {
    const session = new ChatSession(m.model, m.tokenizer);
    try {
      const t1 = await turn(session, { question: 'Describe it.', images: [IMAGE], maxTiles: 1, maxNewTokens: 5 });
      expect(t1.stats.prefilledTokens).toBe(t1.stats.promptTokens);
      const before2 = session.tokens;
      const t2 = await turn(session, { question: 'Shorter?', maxNewTokens: 6 });
      const new2 = userTurn('Shorter?');
      expect(before2.slice(-closingLength(t1))).toEqual(closingLength(t1) === 1 ? [imEnd()] : [t1.ids[t1.ids.length - 1], imEnd()]);
      expect(t2.stats.prefilledTokens).toBe(closingLength(t1) + new2.length);
      expect(t2.stats.promptTokens).toBe(before2.length + new2.length);
      expect(t2.stats.visionMs).toBe(0); // the image's rows are in the cache
      expect(formatStats(t2.stats)).toMatch(new RegExp(`^${t2.stats.promptTokens} prompt tokens \\(${t2.stats.prefilledTokens} prefilled\\), ${t2.ids.length} new \\(`));
      const first = await image(IMAGE);
      expect(t2.ids).toEqual(await singlePass([...before2, ...new2], [first], 6));

      // a later turn's image belongs to its own question ("<image>\n" prefix), its rows appended after the earlier ones
      const before3 = session.tokens;
      const t3 = await turn(session, { question: 'And this one?', images: [IMAGE2], maxTiles: 1, maxNewTokens: 4 });
      expect(t3.turn.question).toBe('<image>\nAnd this one?');
      expect(t3.stats.visionMs).toBeGreaterThan(0);
      const ids3 = session.tokens.slice(0, t3.stats.promptTokens);
      expect(ids3.slice(0, before3.length)).toEqual(before3);
      expect(t3.ids).toEqual(await singlePass(ids3, [first, await image(IMAGE2)], 4));
      expect(session.history.map((t) => t.question)).toEqual(['<image>\nDescribe it.', 'Shorter?', '<image>\nAnd this one?']);
    } finally {
      session.dispose();
    }
  }, 180_000);

  it('minNewTokens bars the stop ids until that many tokens: the first id is the best of the others (CPU argmax over the read logits)', async () => {
    const ids = m.tokenizer.encode('<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n');
    const cache = m.model.llm.newCache(m.gpu, ids.length + 2);
    try {
      const logits = await m.model.prefill(Int32Array.from(ids), null, cache, { chunk: ids.length });
      const row = (await m.gpu.read(logits)) as Float32Array;
      const last = row.subarray(row.length - logits.shape[logits.shape.length - 1]);
      const best = (skip: number) => last.reduce((b, x, i) => (i !== skip && (b < 0 || x > last[b]) ? i : b), -1);
      const top = best(-1);
      const runnerUp = best(top);
      const firstWith = async (minNewTokens: number) => {
        const c = m.model.llm.newCache(m.gpu, ids.length + 2);
        try {
          const l = await m.model.prefill(Int32Array.from(ids), null, c, { chunk: ids.length });
          for await (const id of decodeTokens(m.model, c, l, { maxNewTokens: 1, minNewTokens, room: 1, stopIds: new Set([top]), sampler: new Sampler() })) return id;
        } finally {
          c.release();
        }
      };
      expect(await firstWith(0)).toBe(top); // the top id is a stop id here ...
      expect(await firstWith(1)).toBe(runnerUp); // ... and barred for the first token
      logits.release();
    } finally {
      cache.release();
    }
    const session = new ChatSession(m.model, m.tokenizer, { stopIds: m.stopIds });
    await expect(turn(session, { question: 'q', maxNewTokens: 2, minNewTokens: 3 })).rejects.toThrow(/min new tokens/);
    session.dispose();
  });

  it('a turn that outgrows the context is refused before any GPU work; the session goes on', async () => {
    const session = new ChatSession(m.model, m.tokenizer, { contextLength: 80 });
    try {
      const t1 = await turn(session, { question: 'Hi', maxNewTokens: 3, sampling: { repetitionPenalty: 1.5 } });
      const tokens = session.tokens;
      const err = await turn(session, { question: 'word '.repeat(60) }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InputError);
      expect((err as Error).message).toMatch(/the prompt is \d+ tokens but the context holds 80 .*\d+ of them from earlier turns: start a new conversation with reset\(\)/);
      expect(session.tokens).toEqual(tokens);
      const t2 = await turn(session, { question: 'Ok', maxNewTokens: 2 });
      expect(t2.stats.prefilledTokens).toBe(closingLength(t1) + userTurn('Ok').length);
    } finally {
      session.dispose();
    }
  }, 120_000);

  it('an AbortSignal stops a turn at the next step; the GPU memory comes back and the next turn works', async () => {
    const live = m.gpu.pool.liveBytes;
    const session = new ChatSession(m.model, m.tokenizer, { stopIds: [] });
    try {
      // aborted before the first token: no trace in the session
      const t0 = await turn(session, { question: 'Hi', signal: AbortSignal.abort() });
      expect(t0.stats.stop).toBe('aborted');
      expect(t0.ids).toEqual([]);
      expect(session.tokens).toEqual([]);

      const abort = new AbortController();
      const t1 = await turn(session, { question: 'Tell a long story.', maxNewTokens: 40, signal: abort.signal }, () => abort.abort());
      expect(t1.stats.stop).toBe('aborted');
      expect(t1.ids.length).toBeGreaterThanOrEqual(1);
      expect(t1.ids.length).toBeLessThan(40);
      const before = session.tokens;
      const t2 = await turn(session, { question: 'Go on.', maxNewTokens: 4 });
      expect(t2.ids).toEqual(await singlePass([...before, ...userTurn('Go on.')], [], 4));
    } finally {
      session.dispose();
    }
    expect(m.gpu.pool.liveBytes).toBe(live);
  }, 120_000);

  it('reset() while a turn runs is refused (the turn would go on in a cleared cache); the turn ends as it would have', async () => {
    const session = new ChatSession(m.model, m.tokenizer, { stopIds: [] });
    try {
      const refusals: string[] = [];
      const r = await turn(session, { question: 'Tell a long story.', maxNewTokens: 16 }, () => {
        try {
          session.reset();
        } catch (e) {
          refusals.push((e as Error).message);
        }
      });
      expect(refusals.length).toBeGreaterThan(0);
      expect(refusals[0]).toMatch(/a turn of this chat session is still running: end it \(abort its signal\) before reset\(\)/);
      // the same turn in a session nobody tried to reset
      const undisturbed = new ChatSession(m.model, m.tokenizer, { stopIds: [] });
      try {
        expect(r.ids).toEqual((await turn(undisturbed, { question: 'Tell a long story.', maxNewTokens: 16 })).ids);
      } finally {
        undisturbed.dispose();
      }
      session.reset(); // once it has ended
      expect(session.tokens).toEqual([]);
    } finally {
      session.dispose();
    }
  }, 120_000);

  it('non-finite logits stop the turn with an error naming the stage, greedy and sampling alike', async () => {
    const norm = m.model.llm.norm;
    const saved = Float32Array.from((await m.gpu.read(norm)) as Float32Array);
    m.gpu.device.queue.writeBuffer(norm.buffer, 0, new Float32Array(saved.length).fill(NaN));
    try {
      for (const sampling of [{}, { temperature: 0.7, seed: 1 }]) {
        const err = await turn(new ChatSession(m.model, m.tokenizer), { question: 'Hi', maxNewTokens: 4, sampling }).catch((e: unknown) => e);
        expect(err, JSON.stringify(sampling)).toBeInstanceOf(NonFiniteError);
        expect((err as Error).message).toMatch(/logits are not finite \(NaN or infinity\) after the prefill/);
      }
    } finally {
      m.gpu.device.queue.writeBuffer(norm.buffer, 0, saved);
    }
    // a broken vision tower is named before the LLM runs
    const bias = m.model.projector.fc2.bias;
    const savedBias = Float32Array.from((await m.gpu.read(bias)) as Float32Array);
    m.gpu.device.queue.writeBuffer(bias.buffer, 0, new Float32Array(savedBias.length).fill(Infinity));
    try {
      const err = await turn(new ChatSession(m.model, m.tokenizer), { question: 'Hi', images: [IMAGE], maxTiles: 1, maxNewTokens: 2 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NonFiniteError);
      expect((err as Error).message).toMatch(/the vision tower or the projector produced non-finite values/);
    } finally {
      m.gpu.device.queue.writeBuffer(bias.buffer, 0, savedBias);
    }
    const ok = await turn(new ChatSession(m.model, m.tokenizer), { question: 'Hi', images: [IMAGE], maxTiles: 1, maxNewTokens: 2 });
    expect(ok.ids.length).toBeGreaterThan(0);
  }, 120_000);

  it('ids with no tokenizer piece (sampled at a high temperature) decode as nothing instead of failing the turn', async () => {
    const r = await turn(new ChatSession(m.model, m.tokenizer, { stopIds: [] }), { question: 'Hi', maxNewTokens: 24, sampling: { temperature: 5, topK: 0, seed: 7 } });
    const pieceless = r.ids.filter((id) => !m.tokenizer.hasPiece(id));
    expect(pieceless.length).toBeGreaterThan(0);
    expect(() => m.tokenizer.decode(pieceless)).toThrow(/outside the vocabulary/);
    expect(r.answer).toBe(answerText(m.tokenizer, r.ids.filter((id) => m.tokenizer.hasPiece(id))));
  }, 120_000);

  it('an <image> in an earlier answer stays text: later turns still work (only the questions\' placeholders are expanded)', async () => {
    const history = [{ question: '<image>\nWhat is it?', answer: 'It shows <image> twice: <image>.' }];
    const it = chat(m.model, m.tokenizer, { question: 'Sure?', images: [IMAGE], maxTiles: 1, maxNewTokens: 2, history });
    let r = await it.next();
    while (!r.done) r = await it.next();
    expect(r.value.prompt.split('<img>')).toHaveLength(2);
    expect(r.value.prompt).toContain('<|im_start|>assistant\nIt shows <image> twice: <image>.<|im_end|>');
  }, 120_000);

  it('special-token strings typed in a question are control tokens by default and plain text with splitSpecialTokens', async () => {
    const question = 'What is <IMG_CONTEXT>?';
    const err = await turn(new ChatSession(m.model, m.tokenizer), { question, maxNewTokens: 1 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toMatch(/1 <IMG_CONTEXT> tokens but its images give 0 vision rows/);
    const session = new ChatSession(m.model, m.tokenizer, { splitSpecialTokens: true });
    const r = await turn(session, { question, maxNewTokens: 1 });
    expect(session.tokens.includes(m.model.imageContextId)).toBe(false);
    const asText = m.tokenizer.sp.encode(`user\n${question}`);
    const tokens = session.tokens;
    expect(tokens.some((_, i) => asText.every((id, j) => tokens[i + j] === id))).toBe(true);
    expect(r.stats.promptTokens).toBeGreaterThan(0);
    session.dispose();
  }, 120_000);
});

describe('chunked prefill', () => {
  /** all prompt logits through the collector, and the greedy continuation */
  async function prefillRun(ids: Int32Array, media: Media[], chunk: number): Promise<{ logits: Stage; greedy: number[] }> {
    const cache = m.model.llm.newCache(m.gpu, ids.length + 3);
    let logits: Stage | undefined;
    const reads: Promise<Float32Array>[] = [];
    let v = 0;
    const collector = {
      tap: (rec: import('../src/gpu/recorder.js').Recorder, name: string, t: Tensor) => {
        if (name !== 'llm.logits') return;
        v = t.shape[1];
        reads.push(rec.read(t) as Promise<Float32Array>);
      },
    };
    try {
      const out = await m.model.prefill(ids, media.length ? planVisuals(m.model, media) : null, cache, { chunk, allLogits: true, collector });
      const parts = await Promise.all(reads);
      const data = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
      parts.reduce((o, p) => (data.set(p, o), o + p.length), 0);
      logits = { shape: [data.length / v, v], data };
      const greedy: number[] = [];
      for await (const id of decodeTokens(m.model, cache, out, { maxNewTokens: 3, room: 3, stopIds: new Set(), sampler: new Sampler() })) greedy.push(id);
      return { logits, greedy };
    } finally {
      cache.release();
    }
  }

  it('chunks that cut through the vision rows give the logits of one pass and the same greedy ids', async () => {
    const media = [await image(IMAGE, 2)];
    const plan = planVisuals(m.model, media);
    const prompt = `<|im_start|>user\nLook: <img>${'<IMG_CONTEXT>'.repeat(plan.rows)}</img>\nWhat?<|im_end|><|im_start|>assistant\n`;
    const ids = Int32Array.from(m.tokenizer.encode(prompt));
    const one = await prefillRun(ids, media, ids.length);
    for (const chunk of [7, 64]) {
      const chunked = await prefillRun(ids, media, chunk);
      expect(chunked.logits.shape).toEqual(one.logits.shape);
      expect(relL2(chunked.logits.data, one.logits.data), `chunk ${chunk}`).toBeLessThan(1e-5);
      expect(chunked.greedy, `chunk ${chunk}`).toEqual(one.greedy);
    }
  }, 120_000);

  it('a long prompt prefilled in chunks keeps its activations under prefillStepBytes(chunk)', async () => {
    // 16 chunks of 64: every step the same shape, so the pool's growth is one step's live set
    const ids = Int32Array.from(m.tokenizer.encode('count: ' + Array.from({ length: 600 }, (_, i) => i % 10).join(' ')).slice(0, 1024));
    expect(ids.length).toBe(1024);
    const growth = async (chunk: number) => {
      const cache = m.model.llm.newCache(m.gpu, ids.length);
      m.gpu.pool.trim();
      const before = m.gpu.pool.allocatedBytes;
      try {
        (await m.model.prefill(ids, null, cache, { chunk })).release();
        return m.gpu.pool.allocatedBytes - before;
      } finally {
        cache.release();
      }
    };
    const chunked = await growth(64);
    const whole = await growth(ids.length);
    const bound = prefillStepBytes(m.model.config.llm, 64);
    expect(chunked).toBeLessThanOrEqual(bound);
    expect(whole).toBeGreaterThan(bound); // one pass needs more: the bound is what chunking buys
  }, 120_000);
});
