// The texel layout's row interleaving (src/gpu/tensor.ts), checked element by element against its
// definition: texel i of row r lies at texel (i * il + r % il, r / il) of texture rows `pitch` bytes apart.
import { describe, expect, it } from 'vitest';
import { texelInterleave, texelRows } from '../src/gpu/tensor.js';
import { freshSeed, rng } from './util.js';

const seed = freshSeed();
const rand = rng(seed);

describe('texel layout', () => {
  it('puts the wanted rows side by side, or the most that fit the texture width', () => {
    expect(texelInterleave(144, 16384, 64)).toBe(64); // q4 K=4096
    expect(texelInterleave(144, 8192, 64)).toBe(32);
    expect(texelInterleave(504, 16384, 64)).toBe(32); // q4 K=14336
    expect(texelInterleave(272, 16384, 16)).toBe(16); // q8 K=4096
    expect(texelInterleave(1792, 8192, 16)).toBe(4);
    expect(texelInterleave(5000, 8192, 64)).toBe(1);
    expect(texelInterleave(512, 16384, 1)).toBe(1);
  });

  for (const [rows, texels, il, misalign] of [[19, 5, 8, 0], [16, 3, 4, 2], [7, 4, 2, 0], [5, 6, 1, 0], [70, 3, 64, 0], [45, 2, 32, 2]]) {
    it(`lays out ${rows} rows of ${texels} texels with ${il} side by side${misalign ? ' (unaligned views)' : ''}, and back`, () => {
      const rowBytes = texels * 16;
      const pitch = Math.ceil((rowBytes * il) / 256) * 256;
      const src = new Uint8Array(rows * rowBytes + misalign).subarray(misalign);
      for (let b = 0; b < src.length; b++) src[b] = Math.floor(rand() * 256);
      const dst = new Uint8Array(Math.ceil(rows / il) * pitch + misalign).fill(0xee).subarray(misalign);
      texelRows(src, rows, rowBytes, il, pitch, dst);
      for (let y = 0; y < Math.ceil(rows / il); y++) {
        for (let x = 0; x < texels * il; x++) {
          const r = y * il + (x % il);
          const i = Math.floor(x / il);
          const got = Array.from(dst.subarray(y * pitch + x * 16, y * pitch + x * 16 + 16));
          const want = r < rows ? Array.from(src.subarray(r * rowBytes + i * 16, r * rowBytes + i * 16 + 16)) : new Array(16).fill(0);
          expect(got, `texel (${x}, ${y}), seed ${seed}`).toEqual(want);
        }
      }
      const back = new Uint8Array(rows * rowBytes);
      texelRows(dst, rows, rowBytes, il, pitch, back, true);
      expect(Array.from(back)).toEqual(Array.from(src));
    });
  }
});
