import { afterAll, describe, expect, it } from 'vitest';
import { BudgetError, checkLoad, checkTurn, kvCacheBytes, largestActivations, weightBytes, type TurnShape } from '../src/budget.js';
import type { Gpu } from '../src/gpu/index.js';
import { loadModel } from '../src/index.js';
import { loadConfig } from '../src/weights/config.js';
import { Checkpoint } from '../src/weights/safetensors.js';
import { isVectorLike } from '../src/weights/upload.js';
import { testGpu } from './util.js';

const TINY = '/work/ckpt/tiny';
const gpus: Gpu[] = [];
afterAll(() => gpus.forEach((g) => g.destroy()));

// the real model's LLM shapes (InternLM2-7B in PVC-InternVL2-8B)
const llm = { hiddenSize: 4096, numHiddenLayers: 32, numAttentionHeads: 32, numKeyValueHeads: 8, headDim: 128, intermediateSize: 14336, vocabSize: 92553, maxPositionEmbeddings: 32768 } as Parameters<typeof kvCacheBytes>[0];
const turn: TurnShape = { contextPositions: 4000, cachedPositions: 0, prefillChunk: 512, visionFrames: 4, visionTokens: 1025, visionHidden: 1024, visionIntermediate: 4096 };
const roomy = { maxStorageBufferBindingSize: 2 ** 31, availableBytes: 2 ** 40 };

describe('memory budget', () => {
  it('weights at each dtype: bf16 equals what loading allocates on the GPU (tiny checkpoint); q8 and q4 are smaller', async () => {
    const gpu = await testGpu({});
    gpus.push(gpu);
    const before = gpu.pool.allocatedBytes;
    const m = await loadModel(TINY, { gpu });
    const allocated = gpu.pool.allocatedBytes - before;
    const tensors = [...(await Checkpoint.open(TINY)).tensors.values()];
    const bf16 = weightBytes(tensors, 'bf16', (t) => isVectorLike(t) || t.name.endsWith('position_embedding'));
    expect(Math.abs(allocated - bf16) / bf16).toBeLessThan(0.002); // buffers round to whole words
    expect(weightBytes(tensors, 'q8')).toBeLessThan(bf16);
    expect(weightBytes(tensors, 'q4')).toBeLessThan(weightBytes(tensors, 'q8'));
    void m;
  });

  it('a load over the available memory is refused before anything is allocated, with the numbers and what to change', async () => {
    const gpu = await testGpu({});
    gpus.push(gpu);
    const before = gpu.pool.allocatedBytes;
    const err = await loadModel(TINY, { gpu, availableBytes: 100 * 2 ** 20 }).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(BudgetError);
    expect((err as Error).message).toMatch(/^not enough memory to load: the bf16 weights need \d+\.\d\d GiB \+ 0\.59 GiB while loading, 0\.10 GiB is available; free memory/);
    expect(gpu.pool.allocatedBytes).toBe(before);
    // a smaller dtype that fits is named
    expect(() => checkLoad(16e9, 'bf16', { maxStorageBufferBindingSize: Infinity, availableBytes: 10e9 }, [{ dtype: 'q8', bytes: 8.5e9 }, { dtype: 'q4', bytes: 4.6e9 }])).toThrow(/use --dtype q8 \(7\.92 GiB of weights\)$/);
    expect(() => checkLoad(16e9, 'bf16', { maxStorageBufferBindingSize: Infinity, availableBytes: 17e9 })).not.toThrow();
  });

  it('KV cache bytes: f32 K and V for every layer (32 layers x 8 heads x 128 = 256 KiB per position)', () => {
    expect(kvCacheBytes(llm, 1)).toBe(2 * 32 * 8 * 128 * 4);
    expect(kvCacheBytes(llm, 2048)).toBe(2048 * 262144);
  });

  it('a turn fits, or is refused naming the step that does not fit and what to change', async () => {
    expect(() => checkTurn(llm, turn, roomy)).not.toThrow();
    // binding limit: 64 frames of 1025 tokens x 4096 MLP in f32 is over 1 GiB in one binding
    expect(() => checkTurn(llm, { ...turn, visionFrames: 64 }, { ...roomy, maxStorageBufferBindingSize: 128 * 2 ** 20 })).toThrow(/^this turn's vision MLP activation needs 1025 MiB in one binding, over the adapter's 128 MiB: use fewer frames per vision step/);
    expect(() => checkTurn(llm, { ...turn, visionFrames: 0, prefillChunk: 4096 }, { ...roomy, maxStorageBufferBindingSize: 128 * 2 ** 20 })).toThrow(/prefill MLP activation needs 224 MiB .* a smaller prefill chunk/);
    // memory: 4000 new positions need 0.98 GiB of KV cache
    expect(() => checkTurn(llm, turn, { ...roomy, availableBytes: 2 ** 30 })).toThrow(/^not enough memory for this turn: the KV cache for 4000 positions needs 0\.98 GiB more .*1\.00 GiB is available: use fewer tiles or frames/);
    // cached positions are already paid for
    expect(() => checkTurn(llm, { ...turn, cachedPositions: 3900 }, { ...roomy, availableBytes: 2 ** 30 })).not.toThrow();
    expect(() => checkTurn(llm, { ...turn, contextPositions: 40000 }, roomy)).toThrow(/needs 40000 positions, over the model's 32768/);
    // the largest activations are the real shapes' (prefill MLP chunk x 14336 f32)
    expect(largestActivations(llm, turn).find((a) => a.name === 'prefill MLP activation')!.bytes).toBe(512 * 14336 * 4);
    const tiny = (await loadConfig(TINY)).llm;
    expect(kvCacheBytes(tiny, 10)).toBe(2 * tiny.numHiddenLayers * 10 * tiny.numKeyValueHeads * tiny.headDim * 4);
  });
});
