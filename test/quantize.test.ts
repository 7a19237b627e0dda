import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { toBf16Bits } from '../src/gpu/index.js';
import { dequantizeRows, quantizeRows, quantRowBytes, type QuantDType } from '../src/weights/quantize.js';
import { freshSeed, randn, rng } from './util.js';

const seed = freshSeed();
const rand = rng(seed);
const dir = mkdtempSync(join(tmpdir(), 'quantize-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** numpy's float64 quantization of the same bf16 rows (test/quantize_ref.py): bytes and dequantized values. */
function reference(dtype: QuantDType, bits: Uint16Array, K: number): { bytes: Uint8Array; values: Float64Array } {
  const src = join(dir, 'in.u16');
  const dst = join(dir, 'out.bin');
  writeFileSync(src, bits);
  const r = spawnSync('/usr/bin/python3', [join(import.meta.dirname, 'quantize_ref.py'), dtype, String(K), src, dst], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`quantize_ref.py failed: ${r.stderr}`);
  const f = readFileSync(dst + '.f64');
  return { bytes: new Uint8Array(readFileSync(dst)), values: new Float64Array(f.buffer, f.byteOffset, f.byteLength / 8) };
}

/** Rows of random bf16 weights with the hard groups planted: ties, zeros, tiny and huge scales, repeated maxima. */
function weights(rows: number, K: number): Uint16Array {
  const v = randn(rows * K, rand, 0.02);
  const group = (r: number, g: number, values: number[]) => values.forEach((x, i) => (v[r * K + g * 32 + i] = x));
  group(0, 0, Array(32).fill(0));
  // q4: d = -8 / -8 = 1 and q8: d = 127 / 127 = 1, so x / d lands exactly on halves (ties to even)
  group(0, 1, [-8, 0.5, 1.5, 2.5, -2.5, 3.5, -0.5, 6.5, 7.5, -7.5, ...Array(22).fill(0.25)]);
  group(1, 0, [127, 0.5, 1.5, 2.5, -2.5, 126.5, -126.5, -127, ...Array(24).fill(-0.75)]);
  group(1, 1, Array.from({ length: 32 }, (_, i) => (i % 2 ? 1e-6 : -3e-7) * (i + 1))); // subnormal f16 scales
  group(2 % rows, 0, Array.from({ length: 32 }, (_, i) => (i % 3 ? -1 : 1) * 1e5)); // equal magnitudes of both signs
  group(2 % rows, 1, Array.from({ length: 32 }, () => 1e-9)); // scale underflows f16 to 0
  return toBf16Bits(v);
}

describe.each(['q4', 'q8'] as const)('%s quantizer', (dtype) => {
  for (const [rows, K] of [
    [3, 64],
    [5, 96],
    [7, 288],
    [4, 4096],
  ]) {
    it(`${rows} x ${K}: codes and scales bit-identical to the numpy float64 reference`, () => {
      const bits = weights(rows, K);
      const got = quantizeRows(dtype, bits, K);
      const want = reference(dtype, bits, K);
      expect(got.length).toBe(rows * quantRowBytes(dtype, K));
      const diff = got.findIndex((b, i) => b !== want.bytes[i]);
      expect(diff, `first differing byte (seed ${seed})`).toBe(-1);
      expect(got.length).toBe(want.bytes.length);
      expect(Array.from(dequantizeRows(dtype, got, K))).toEqual(Array.from(want.values));
      // into a reused buffer holding other bytes (the loader's workers reuse theirs): the same bytes
      const poisoned = new Uint8Array(got.length).fill(0xa5);
      expect(Buffer.compare(quantizeRows(dtype, bits, K, poisoned), Buffer.from(want.bytes))).toBe(0);
    });
  }
  it('rejects rows that are not whole groups and non-finite weights', () => {
    expect(() => quantizeRows(dtype, new Uint16Array(40), 40)).toThrow(/not whole groups of 32/);
    expect(() => quantizeRows(dtype, toBf16Bits([Infinity, ...Array(31).fill(0)]), 32)).toThrow(/non-finite weight at row 0, columns 0 .. 31/);
  });
});
