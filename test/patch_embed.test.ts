import { afterAll, describe, expect, it } from 'vitest';
import { bf16BitsToF32, toBf16Bits } from '../src/gpu/index.js';
import { patchEmbed } from '../src/ops/patch_embed.js';
import { freshSeed, randn, relL2, rng, testGpu } from './util.js';

const gpu = await testGpu();
afterAll(() => gpu.destroy());

function patchEmbedRef(px: Float32Array, f: number, ch: number, h: number, wd: number, w: Float32Array, c: number, p: number, bias: Float32Array, cls: Float32Array, pos: Float32Array): Float64Array {
  const cols = wd / p;
  const tokens = 1 + (h / p) * cols;
  const out = new Float64Array(f * tokens * c);
  for (let fr = 0; fr < f; fr++)
    for (let t = 0; t < tokens; t++)
      for (let o = 0; o < c; o++) {
        let v = pos[t * c + o];
        if (t === 0) v += cls[o];
        else {
          const y0 = Math.floor((t - 1) / cols) * p;
          const x0 = ((t - 1) % cols) * p;
          v += bias[o];
          for (let k = 0; k < ch; k++)
            for (let ky = 0; ky < p; ky++)
              for (let kx = 0; kx < p; kx++) v += w[((o * ch + k) * p + ky) * p + kx] * px[((fr * ch + k) * h + y0 + ky) * wd + x0 + kx];
        }
        out[(fr * tokens + t) * c + o] = v;
      }
  return out;
}

describe('patchEmbed', () => {
  it.each([
    ['bf16', 'bf16'],
    ['f32', 'f32'],
  ] as const)('matches float64 (weight %s, position embedding %s, 21x35 image, p 7)', async (wType, posType) => {
    const seed = freshSeed();
    const r = rng(seed);
    const [f, ch, h, wd, c, p] = [2, 3, 21, 35, 77, 7];
    const tokens = 1 + (h / p) * (wd / p);
    const px = randn(f * ch * h * wd, r);
    let w = randn(c * ch * p * p, r, 0.1);
    let pos = randn(tokens * c, r);
    const bias = randn(c, r);
    const cls = randn(c, r);
    const wBits = toBf16Bits(w);
    const posBits = toBf16Bits(pos);
    if (wType === 'bf16') w = bf16BitsToF32(wBits);
    if (posType === 'bf16') pos = bf16BitsToF32(posBits);
    const [tp, tw, tb, tc, tpos] = await Promise.all([
      gpu.upload([f, ch, h, wd], 'f32', px),
      gpu.upload([c, ch, p, p], wType, wType === 'bf16' ? wBits : w, 'w', false),
      gpu.upload([c], 'f32', bias),
      gpu.upload([1, 1, c], 'f32', cls),
      gpu.upload([1, tokens, c], posType, posType === 'bf16' ? posBits : pos, 'pos', false),
    ]);
    const got = await gpu.step((rec) => {
      const out = patchEmbed(rec, tp, tw, tb, tc, tpos);
      expect(out.shape).toEqual([f, tokens, c]);
      return rec.read(out);
    });
    expect(relL2(got, patchEmbedRef(px, f, ch, h, wd, w, c, p, bias, cls, pos)), `seed ${seed}`).toBeLessThan(1e-6);
  });

  it('rejects bad shapes', async () => {
    const px = gpu.empty([1, 3, 28, 28]);
    const w = gpu.empty([8, 3, 14, 14]);
    const b = gpu.empty([8]);
    const pos = gpu.empty([5, 8]);
    await expect(gpu.step((rec) => patchEmbed(rec, px, gpu.empty([8, 1, 14, 14]), b, b, pos))).rejects.toThrow(/weight has shape \[8, 1, 14, 14\]; expected \[C, 3, p, p\]/);
    await expect(gpu.step((rec) => patchEmbed(rec, gpu.empty([1, 3, 28, 30]), w, b, b, pos))).rejects.toThrow(/image 28x30 is not a multiple of the patch size 14/);
    await expect(gpu.step((rec) => patchEmbed(rec, px, w, b, b, gpu.empty([4, 8])))).rejects.toThrow(/positionEmbedding has shape \[4, 8\]; expected \[5, 8\]/);
    await expect(gpu.step((rec) => patchEmbed(rec, px, w, gpu.empty([7]), b, pos))).rejects.toThrow(/bias has shape \[7\]; expected \[8\]/);
    await expect(gpu.step((rec) => patchEmbed(rec, px, gpu.empty([8, 3, 14, 14], 'i32'), b, b, pos))).rejects.toThrow(/weight has dtype i32; expected bf16 or f16 or f32/);
  });
});
