// chat(): the generation loop on a tiny synthetic checkpoint. Streaming equals the final answer,
// greedy ids equal the model's own greedy loop, seeded sampling repeats, the repetition penalty
// acts, multi-turn history re-uses the image placeholders, and bad requests fail before GPU work.
// (Token-exact agreement with the PyTorch reference is test/e2e.test.ts.)

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { answerText, chat, InputError, type ChatRequest, type ChatResult } from '../src/generate/generate.js';
import { loadModel, type LoadedModel } from '../src/index.js';
import type { InternVL } from '../src/models/internvl.js';
import { writeCheckpoint } from '../src/weights/synthetic.js';
import { planVisuals } from '../src/models/plan.js';
import { decodeTokens } from '../src/generate/decode.js';
import { Sampler } from '../src/generate/sampler.js';
import { freshSeed, SHARED, testGpu } from './util.js';

const IMAGE = join(SHARED, 'assets/example_image1.jpg');
const IMAGE2 = join(SHARED, 'assets/example_image2.jpg');
const VIDEO = join(SHARED, 'assets/example_video.mp4');
const tmp = mkdtempSync(join(tmpdir(), 'generate-test-'));
const seed = freshSeed();
let m: LoadedModel;

async function run(model: InternVL, req: ChatRequest): Promise<{ pieces: string[]; result: ChatResult }> {
  const pieces: string[] = [];
  const it = chat(model, m.tokenizer, { stopIds: m.stopIds, ...req });
  for (;;) {
    const r = await it.next();
    if (r.done) return { pieces, result: r.value };
    pieces.push(r.value);
  }
}

beforeAll(async () => {
  await writeCheckpoint(tmp, 'tiny', { seed });
  m = await loadModel(tmp, { gpu: await testGpu() });
}, 120_000);

afterAll(() => {
  m?.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

describe(`chat on a tiny checkpoint (checkpoint seed ${seed})`, () => {
  it('greedy: streamed pieces join to the answer; ids equal prefill + the model greedy loop', async () => {
    const { pieces, result } = await run(m.model, { question: 'Describe it.', images: [IMAGE], maxTiles: 2, maxNewTokens: 12 });
    expect(pieces.join('')).toBe(result.answer);
    expect(pieces.every((p) => p.length > 0)).toBe(true);
    expect(result.answer).toBe(answerText(m.tokenizer, result.ids));
    expect(result.turn.question).toBe('<image>\nDescribe it.');
    expect(result.stats.promptTokens).toBe(m.tokenizer.encode(result.prompt).length);
    expect(result.stats.newTokens).toBe(result.ids.length);
    expect(result.stats.seed).toBeNull();
    expect(result.stats.visionMs).toBeGreaterThan(0);

    const ids = Int32Array.from(m.tokenizer.encode(result.prompt));
    const cache = m.model.llm.newCache(m.gpu, ids.length + 12);
    const { readFile } = await import('node:fs/promises');
    const { loadImage } = await import('../src/preprocess/image.js');
    const cfg = m.model.config;
    const img = await loadImage(await readFile(IMAGE), { imageSize: cfg.imageSize, maxTiles: 2, minTiles: cfg.minDynamicPatch, useThumbnail: cfg.useThumbnail });
    try {
      const logits = await m.model.prefill(ids, planVisuals(m.model, [{ kind: 'image', tiles: img.shape[0], pixels: img.data }]), cache);
      const greedy: number[] = [];
      for await (const id of decodeTokens(m.model, cache, logits, { maxNewTokens: 12, room: 12, stopIds: new Set(m.stopIds), sampler: new Sampler() })) greedy.push(id);
      expect(result.ids).toEqual(greedy);
    } finally {
      cache.release();
    }
  }, 120_000);

  it('seeded sampling repeats with the same seed and differs with another', async () => {
    const req = (s: number): ChatRequest => ({ question: 'Hello', maxNewTokens: 10, sampling: { temperature: 0.9, topK: 40, seed: s }, stopIds: [] });
    const a = await run(m.model, req(seed));
    const b = await run(m.model, req(seed));
    const c = await run(m.model, req(seed + 1));
    expect(a.result.ids).toEqual(b.result.ids);
    expect(a.result.ids).not.toEqual(c.result.ids);
    expect(a.result.stats.seed).toBe(seed);
    expect(a.result.ids).toHaveLength(10);
    expect(a.result.stats.stop).toBe('max-new-tokens');
  }, 120_000);

  it('a strong repetition penalty stops greedy decoding from repeating ids', async () => {
    const { result } = await run(m.model, { question: 'Count.', maxNewTokens: 24, sampling: { repetitionPenalty: 1e4 }, stopIds: [] });
    expect(new Set(result.ids).size).toBe(result.ids.length);
  }, 120_000);

  it('several images use the Image-N prefix; a second turn re-uses the placeholders from the history', async () => {
    const first = await run(m.model, { question: 'Compare.', images: [IMAGE, IMAGE2], maxTiles: 1, maxNewTokens: 3 });
    expect(first.result.turn.question).toBe('Image-1: <image>\nImage-2: <image>\nCompare.');
    const second = await run(m.model, { question: 'And now?', images: [IMAGE, IMAGE2], maxTiles: 1, maxNewTokens: 3, history: [first.result.turn] });
    const p = second.result.prompt;
    expect(p.split('<img>')).toHaveLength(3);
    expect(p).toContain('<|im_start|>user\nImage-1: <img>');
    expect(p.endsWith('<|im_start|>user\nAnd now?<|im_end|><|im_start|>assistant\n')).toBe(true);
    expect(second.result.stats.promptTokens).toBeGreaterThan(first.result.stats.promptTokens);
  }, 120_000);

  it('a video segment uses the Frame-N prefix, one placeholder per frame', async () => {
    const { result } = await run(m.model, { question: 'What happens?', video: { path: VIDEO, frames: 3, start: 0.5, end: 2 }, maxNewTokens: 2 });
    expect(result.turn.question).toBe('Frame1: <image>\nFrame2: <image>\nFrame3: <image>\nWhat happens?');
    expect(result.prompt.split('<img>')).toHaveLength(4);
  }, 120_000);

  it('reaching the context limit ends the answer early and says so', async () => {
    const prompt = m.tokenizer.encode((await run(m.model, { question: 'Hi', maxNewTokens: 1 })).result.prompt).length;
    const { result } = await run(m.model, { question: 'Hi', maxNewTokens: 50, contextLength: prompt + 3, stopIds: [] });
    expect(result.ids).toHaveLength(3);
    expect(result.stats.stop).toBe('context');
  }, 120_000);
});

describe('bad requests fail before any GPU work', () => {
  // the model's config and placeholder sizes, but any GPU use throws
  const noGpu = (): InternVL => {
    const fail = (): never => {
      throw new Error('GPU work was started');
    };
    const { config, switches, vision, imageContextId } = m.model;
    return { config, switches, vision, imageContextId, get gpu() { return fail(); }, get llm() { return fail(); }, prefill: fail } as unknown as InternVL;
  };

  it('a prompt longer than the context: InputError naming both numbers', async () => {
    const err = await run(noGpu(), { question: 'Describe.', images: [IMAGE], maxTiles: 4, contextLength: 100 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toMatch(/the prompt is \d+ tokens but the context holds 100/);
  });

  it('unreadable or undecodable images, images plus video, bad values', async () => {
    const junk = join(tmp, 'junk.jpg');
    writeFileSync(junk, 'not an image');
    const cases: [ChatRequest, RegExp][] = [
      [{ question: 'q', images: [join(tmp, 'missing.png')] }, /cannot read image .*missing\.png/],
      [{ question: 'q', images: [junk] }, /cannot (read|decode) image .*junk\.jpg/],
      [{ question: 'q', images: [IMAGE], video: { path: VIDEO } }, /images or a video, not both/],
      [{ question: 'q', video: { path: join(tmp, 'none.mp4') } }, /cannot read video .*none\.mp4/],
      [{ question: 'q', video: { path: VIDEO, start: 1 } }, /both the start and the end/],
      [{ question: 'q', images: [IMAGE], maxTiles: 0 }, /max tiles/],
      [{ question: 'q', maxNewTokens: 0 }, /max new tokens/],
      [{ question: 'q', sampling: { temperature: -1 } }, /temperature/],
      [{ question: '<image> and <image>', images: [IMAGE] }, /2 <image> placeholder\(s\) but 1 image/],
    ];
    for (const [req, re] of cases) {
      const err = await run(noGpu(), req).catch((e: unknown) => e);
      expect(err, JSON.stringify(req)).toBeInstanceOf(InputError);
      expect((err as Error).message).toMatch(re);
    }
  });
});
