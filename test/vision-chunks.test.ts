// The vision tower in chunks of frames (and temporal attention in chunks of token positions) under a
// storage-binding limit too small for the whole sequence equals the unchunked run: every vision
// stage and the prompt logits within the parity tolerances, identical greedy ids. Set
// PVC_MID_CHECKPOINT=DIR (a `make:checkpoint --preset mid`) to run the same check at 448 px too.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeTokens } from '../src/generate/decode.js';
import { Sampler } from '../src/generate/sampler.js';
import type { Gpu } from '../src/gpu/device.js';
import type { Recorder, TypedArray } from '../src/gpu/recorder.js';
import type { Tensor } from '../src/gpu/tensor.js';
import { InternVL } from '../src/models/internvl.js';
import { planVisuals, visionChunking, type Media } from '../src/models/plan.js';
import { loadConfig, type ModelConfig } from '../src/weights/config.js';
import { writeCheckpoint } from '../src/weights/synthetic.js';
import { freshSeed, randn, relL2, rng, testGpu } from './util.js';

const tmp = mkdtempSync(join(tmpdir(), 'vision-chunks-'));
const seed = freshSeed();
const FRAMES = 9;
const SMALL_BINDING = 400 * 1024;
let small: Gpu;
let config: ModelConfig;

beforeAll(async () => {
  await writeCheckpoint(tmp, 'tiny', { seed });
  config = await loadConfig(tmp);
  small = await testGpu({ maxStorageBufferBindingSize: SMALL_BINDING });
}, 120_000);

afterAll(() => {
  small?.destroy();
  rmSync(tmp, { recursive: true, force: true });
});

/** Every stage of a video prompt, the prompt logits, and 4 greedy ids. */
async function run(gpu: Gpu, media: Media[], dir = tmp): Promise<{ stages: Map<string, Float32Array>; greedy: number[] }> {
  const model = await InternVL.load(gpu, dir);
  const plan = planVisuals(model, media);
  const ids = Int32Array.from([1, 92543, 300, 400, ...Array<number>(plan.rows).fill(model.imageContextId), 500, 92542, 92543, 600]);
  const reads = new Map<string, Promise<TypedArray>[]>();
  const collector = { tap: (rec: Recorder, name: string, t: Tensor) => reads.set(name, [...(reads.get(name) ?? []), rec.read(t)]) };
  const cache = model.llm.newCache(gpu, ids.length + 4);
  try {
    const logits = await model.prefill(ids, plan, cache, { allLogits: true, collector });
    const greedy: number[] = [];
    for await (const id of decodeTokens(model, cache, logits, { maxNewTokens: 4, room: 4, stopIds: new Set(), sampler: new Sampler() })) greedy.push(id);
    const stages = new Map<string, Float32Array>();
    for (const [name, parts] of reads) {
      const data = (await Promise.all(parts)) as Float32Array[];
      const all = new Float32Array(data.reduce((n, d) => n + d.length, 0));
      data.reduce((o, d) => (all.set(d, o), o + d.length), 0);
      stages.set(name, all);
    }
    return { stages, greedy };
  } finally {
    cache.release();
  }
}

describe(`vision chunks (tiny checkpoint seed ${seed})`, () => {
  it('visionChunking: frames per chunk and positions per temporal step from the largest per-frame tensor', () => {
    const s = config.vision.imageSize;
    const perFrame = 4 * 3 * s * s; // tiny: the pixels (= the patch columns) are the largest per-frame tensor
    expect(visionChunking(config, FRAMES, 1 << 30)).toEqual({ frames: FRAMES, temporalTokens: 65 });
    expect(visionChunking(config, FRAMES, SMALL_BINDING)).toEqual({ frames: Math.floor(SMALL_BINDING / perFrame), temporalTokens: Math.floor(SMALL_BINDING / (4 * FRAMES * 3 * config.vision.hiddenSize)) });
    expect(() => visionChunking(config, FRAMES, perFrame - 4)).toThrow(/cannot fit one frame/);
  });

  it(`a ${FRAMES}-frame video under a ${SMALL_BINDING / 1024} KiB binding limit equals the unchunked run`, async () => {
    const chunking = visionChunking(config, FRAMES, SMALL_BINDING);
    expect(chunking.frames).toBeLessThan(FRAMES);
    expect(chunking.temporalTokens).toBeLessThan(65);
    const s = config.vision.imageSize;
    const media: Media[] = [{ kind: 'video', tiles: FRAMES, pixels: randn(FRAMES * 3 * s * s, rng(seed)) }];
    expectSame(await run(small, media), await run(await testGpu(), media));
  }, 180_000);

  const mid = process.env.PVC_MID_CHECKPOINT;
  it.runIf(mid)('mid preset (448 px): an 8-frame video under a 12 MiB limit equals the unchunked run', async () => {
    const midConfig = await loadConfig(mid!);
    const binding = 12 * 1024 * 1024;
    const chunking = visionChunking(midConfig, 8, binding);
    expect(chunking.frames).toBeLessThan(8);
    expect(chunking.temporalTokens).toBeLessThan(1025);
    const s = midConfig.vision.imageSize;
    const media: Media[] = [{ kind: 'video', tiles: 8, pixels: randn(8 * 3 * s * s, rng(seed)) }];
    // one model in memory at a time: the chunked run's device goes before the unchunked run loads
    const gpu = await testGpu({ maxStorageBufferBindingSize: binding });
    let chunked;
    try {
      chunked = await run(gpu, media, mid);
    } finally {
      gpu.destroy();
    }
    expectSame(chunked, await run(await testGpu(), media, mid));
  }, 1_800_000);
});

function expectSame(chunked: Awaited<ReturnType<typeof run>>, whole: Awaited<ReturnType<typeof run>>): void {
  expect([...chunked.stages.keys()].sort()).toEqual([...whole.stages.keys()].sort());
  for (const [name, want] of whole.stages) {
    const got = chunked.stages.get(name)!;
    expect(got.length, name).toBe(want.length);
    expect(relL2(got, want), name).toBeLessThan(1e-5);
  }
  expect(chunked.greedy).toEqual(whole.greedy);
}
