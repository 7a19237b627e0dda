// Quantize at load: the loader streams bf16 rows through the quantizer onto the GPU in bounded
// blocks; what lands on the GPU is what quantizeRows (checked against numpy) makes of the checkpoint.
import { describe, expect, it } from 'vitest';
import { embedding } from '../src/ops/embedding.js';
import { Checkpoint, readTensorBytes } from '../src/weights/safetensors.js';
import { dequantizeRows, quantizeRows, quantizeRule } from '../src/weights/quantize.js';
import { uploadTensors } from '../src/weights/upload.js';
import { testGpu } from './util.js';

const TINY = '/work/ckpt/tiny';
const gpu = await testGpu();

describe('quantize at load (tiny checkpoint)', () => {
  it('quantizes the LLM 2-D weights with whole groups only', async () => {
    const ckpt = await Checkpoint.open(TINY);
    const rule = quantizeRule('q4')!;
    const picked = [...ckpt.tensors.values()].filter((t) => rule(t)).map((t) => t.name);
    expect(picked).toContain('language_model.model.tok_embeddings.weight');
    expect(picked).toContain('language_model.output.weight');
    expect(picked.some((n) => n.endsWith('attention.wqkv.weight'))).toBe(true);
    expect(picked.every((n) => n.startsWith('language_model.'))).toBe(true);
    // the tiny model's w2 has K = 176, not whole 32-value groups: it stays bf16
    expect(picked.some((n) => n.endsWith('feed_forward.w2.weight'))).toBe(false);
    expect(quantizeRule('bf16')).toBeUndefined();
  });

  for (const dtype of ['q4', 'q8'] as const) {
    it(`${dtype}: the streamed table equals the quantizer's output (blocks of a few rows and blocks smaller than a row)`, async () => {
      const ckpt = await Checkpoint.open(TINY);
      // the table's first 3001 rows (a whole table streams for minutes in blocks of one row)
      const full = ckpt.tensors.get('language_model.model.tok_embeddings.weight')!;
      const d = full.shape[1];
      const V = 3001;
      const info = { ...full, shape: [V, d], byteLength: V * d * 2 };
      const want = Float32Array.from(dequantizeRows(dtype, quantizeRows(dtype, new Uint16Array((await readTensorBytes(info)).buffer), d), d));
      const ids = Int32Array.from({ length: 300 }, (_, i) => Math.min(V - 1, i * 11));
      for (const chunkBytes of [16 * 100, 64]) {
        const tensors = await uploadTensors(gpu, [info], { quantize: quantizeRule(dtype), stagingBytes: chunkBytes });
        const table = tensors.get(info.name)!;
        expect(table.dtype).toBe(dtype);
        const tids = await gpu.upload([ids.length], 'i32', ids);
        const got = (await gpu.step((rec) => rec.read(embedding(rec, tids, table)))) as Float32Array;
        ids.forEach((id, t) => expect(Array.from(got.subarray(t * d, (t + 1) * d)), `row ${id}, chunk ${chunkBytes}`).toEqual(Array.from(want.subarray(id * d, (id + 1) * d))));
        table.release();
        tids.release();
      }
    });
  }
});
