import { afterAll, describe, expect, it } from 'vitest';
import { readdirSync } from 'node:fs';
import { getDevice, GpuError, preprocess, toBf16Bits, bf16BitsToF32, toF16Bits, f16BitsToF32 } from '../src/gpu/index.js';
import { KERNEL_NAMES } from '../src/gpu/kernels.js';
import { sizeClass } from '../src/gpu/pool.js';
import { add, scale } from '../src/ops/elementwise.js';
import { freshSeed, randn, relL2, rng, testGpu } from './util.js';

const gpu = await testGpu();
afterAll(() => gpu.destroy());

describe('device', () => {
  it('requests the adapter limits and reports features', () => {
    expect(gpu.device.limits.maxStorageBufferBindingSize).toBeGreaterThanOrEqual(128 * 1024 * 1024);
    expect(gpu.device.limits.maxComputeWorkgroupStorageSize).toBeGreaterThanOrEqual(16384);
    expect(gpu.description.length).toBeGreaterThan(0);
    expect(['software', 'hardware']).toContain(gpu.adapterClass);
  });

  it('lists every kernel file', () => {
    const files = readdirSync(new URL('../kernels/', import.meta.url)).filter((f) => f.endsWith('.wgsl')).map((f) => f.replace('.wgsl', ''));
    for (const f of files) expect(KERNEL_NAMES as readonly string[]).toContain(f);
  });
});

describe('preprocessor', () => {
  it('selects branches and substitutes values', () => {
    const src = ['a', '#if X', 'x{{N}}', '#elif Y', 'y', '#else', 'z', '#endif', '#if !X', 'notx', '#endif'].join('\n');
    expect(preprocess(src, { X: true, N: 3 }).split('\n').filter(Boolean)).toEqual(['a', 'x3']);
    expect(preprocess(src, { Y: 1 }).split('\n').filter(Boolean)).toEqual(['a', 'y', 'notx']);
    expect(preprocess(src, { X: false }).split('\n').filter(Boolean)).toEqual(['a', 'z', 'notx']);
    expect(() => preprocess('#if A\n', {})).toThrow(/unterminated/);
    expect(() => preprocess('{{Q}}', {})).toThrow(/no define/);
  });

  it('includes helper files with the same defines, only in active branches', () => {
    const files: Record<string, string> = { h: ['#if X', 'hx{{N}}', '#else', 'h', '#endif'].join('\n') };
    const include = (f: string) => files[f];
    const src = ['a', '#include h', '#if Y', '#include missing', '#endif'].join('\n');
    expect(preprocess(src, { X: true, N: 2 }, 'k', include).split('\n').filter(Boolean)).toEqual(['a', 'hx2']);
    expect(preprocess(src, {}, 'k', include).split('\n').filter(Boolean)).toEqual(['a', 'h']);
    expect(() => preprocess(src, { Y: true }, 'k', include)).toThrow(/k.wgsl:4: #include missing: no kernels\/missing.wgsl/);
  });
});

describe('numeric conversions', () => {
  it('bf16 rounds to nearest even like torch', () => {
    // 1 + 2^-8 is a tie between 1 and 1+2^-7: rounds to even (1.0); 1 + 3*2^-9 rounds up
    expect(Array.from(bf16BitsToF32(toBf16Bits([1 + 2 ** -8, 1 + 3 * 2 ** -9, -2.5])))).toEqual([1, 1 + 2 ** -7, -2.5]);
  });
  it('f16 round trip', () => {
    const v = [0, 1, -2.5, 65504, 6e-8, 1 / 3];
    const back = f16BitsToF32(toF16Bits(v));
    for (let i = 0; i < v.length; i++) expect(Math.abs(back[i] - v[i])).toBeLessThanOrEqual(Math.abs(v[i]) * 1e-3 + 6e-8);
  });
});

describe('pool and recording', () => {
  it('size classes are monotone and cover the request', () => {
    let prev = 0;
    for (let b = 1; b < 1e7; b = Math.ceil(b * 1.37)) {
      const c = sizeClass(b);
      expect(c).toBeGreaterThanOrEqual(b);
      expect(c).toBeGreaterThanOrEqual(prev);
      expect(c).toBeLessThanOrEqual(Math.max(256, b * 1.25 + 256));
      prev = c;
    }
  });

  it('reuses released buffers', async () => {
    const t = gpu.empty([1000], 'f32');
    const buf = t.buffer;
    t.release();
    const u = gpu.empty([990], 'f32');
    expect(u.buffer).toBe(buf);
    u.release();
  });

  it('runs a chain of dispatches in one submit and reads back', async () => {
    const seed = freshSeed();
    const r = rng(seed);
    const n = 70001; // not a multiple of the workgroup
    const a = randn(n, r);
    const b = randn(n, r);
    const ta = await gpu.upload([n], 'f32', a);
    const tb = await gpu.upload([n], 'f32', b);
    const got = await gpu.step((rec) => {
      const s = add(rec, ta, tb);
      const out = scale(rec, s, -0.5);
      return rec.read(out);
    });
    const want = Float64Array.from(a, (x, i) => (x + b[i]) * -0.5);
    expect(relL2(got, want), `seed ${seed}`).toBeLessThan(1e-6);
  });

  it('reports a validation error from a bad step as GpuError and stays usable', async () => {
    const a = await gpu.upload([4], 'f32', new Float32Array(4));
    const step = gpu.step((rec) => {
      // binding 0 must be a uniform buffer: a storage buffer is a validation error
      rec.dispatch('elementwise', { OP_ADD: true }, [a, a, a, a], [1]);
    });
    await expect(step).rejects.toThrow(GpuError);
    await expect(step).rejects.toThrow(/validation/);
    const ok = await gpu.read(a);
    expect(ok.length).toBe(4);
  });

  it('rejects shape and dtype mismatches with clear messages', async () => {
    const a = gpu.empty([3, 4]);
    const b = gpu.empty([4, 3]);
    const i = gpu.empty([3, 4], 'i32');
    await expect(gpu.step((rec) => add(rec, a, b))).rejects.toThrow(/add: b has shape \[4, 3\]; expected \[3, 4\]/);
    await expect(gpu.step((rec) => add(rec, a, i))).rejects.toThrow(/dtype i32; expected f32/);
  });

  it('profiles dispatches with timestamps', async () => {
    if (!gpu.features.timestamps) return;
    const a = await gpu.upload([1 << 16], 'f32', new Float32Array(1 << 16));
    const rec = gpu.recorder(true);
    add(rec, a, a);
    scale(rec, a, 2);
    await rec.submit();
    expect(rec.profile.map((p) => p.label)).toEqual(['add', 'scale']);
    for (const p of rec.profile) expect(p.ms).toBeGreaterThan(0);
  });
});

describe('big tensors', () => {
  it('splits a weight by rows under a forced binding limit and refuses oversize activations', async () => {
    const small = await getDevice({ maxStorageBufferBindingSize: 4096 });
    try {
      const w = await small.allocWeight([100, 33], 'bf16');
      expect(w.parts.length).toBeGreaterThan(1);
      expect(w.parts.reduce((s, p) => s + p.rows, 0)).toBe(100);
      for (const p of w.parts) expect(p.buffer!.size).toBeLessThanOrEqual(4096);
      const bits = toBf16Bits(randn(3300, rng(1)));
      small.writeBytes(w, new Uint8Array(bits.buffer));
      const back = (await small.read(w)) as Uint16Array;
      expect(Array.from(back)).toEqual(Array.from(bits));
      expect(() => small.empty([2000], 'f32')).toThrow(/over the storage binding limit/);
    } finally {
      small.destroy();
    }
  });

  it('keeps 16-bit weights with K % 8 == 0 as texels: split, written in odd pieces, read back intact', async () => {
    const small = await getDevice({ maxStorageBufferBindingSize: 4096, adapterClass: 'software', texelWeights: true });
    try {
      const before = small.pool.allocatedBytes;
      const w = await small.allocWeight([100, 40], 'bf16', 'w', { interleave: 8 });
      expect(w.texels).toBe(true);
      // 8 rows side by side; parts of whole 8-row blocks under 4096 bytes (51 rows -> 48)
      expect(w.parts.map((p) => [p.rows, p.interleave, p.texture!.width, p.texture!.height])).toEqual([[48, 8, 40, 6], [48, 8, 40, 6], [4, 8, 40, 1]]);
      expect(small.pool.allocatedBytes - before, 'texture bytes are counted (the last block padded to 8 rows)').toBe(13 * 8 * 80);
      const bits = toBf16Bits(randn(4000, rng(2)));
      const bytes = new Uint8Array(bits.buffer);
      // pieces that start and end mid-row and span parts (any 16-byte boundaries)
      for (const [a, b] of [[0, 48], [48, 4000], [4000, 8000]]) small.writeBytes(w, bytes.subarray(a, b), a);
      expect(Array.from((await small.read(w)) as Uint16Array)).toEqual(Array.from(bits));
      expect(() => small.writeBytes(w, bytes.subarray(0, 8), 8)).toThrow(/whole 16-byte texels/);
      // more rows side by side than a part holds: halved until a part holds them (51 rows -> 32)
      const wide = await small.allocWeight([100, 40], 'bf16', 'w', { interleave: 64 });
      expect(wide.parts.map((p) => [p.rows, p.interleave, p.texture!.width, p.texture!.height])).toEqual([[32, 32, 160, 1], [32, 32, 160, 1], [32, 32, 160, 1], [4, 32, 160, 1]]);
      for (const [a, b] of [[0, 48], [48, 4000], [4000, 8000]]) small.writeBytes(wide, bytes.subarray(a, b), a);
      expect(Array.from((await small.read(wide)) as Uint16Array)).toEqual(Array.from(bits));
      wide.release();
      // by default rows stay apart (one per texture row)
      const apart = await small.allocWeight([100, 40], 'bf16');
      expect(apart.parts.map((p) => [p.rows, p.interleave, p.texture!.width, p.texture!.height])).toEqual([[51, 1, 5, 51], [49, 1, 5, 49]]);
      for (const [a, b] of [[0, 48], [48, 4000], [4000, 8000]]) small.writeBytes(apart, bytes.subarray(a, b), a);
      expect(Array.from((await small.read(apart)) as Uint16Array)).toEqual(Array.from(bits));
      apart.release();
      expect(() => w.buffer).toThrow(/split/);
      w.release();
      expect(small.pool.allocatedBytes, 'and given back on release').toBe(before);
      const one = await small.allocWeight([10, 40], 'bf16');
      expect(() => one.buffer, 'buffer-only ops refuse texels').toThrow(/stored as texels/);
      expect((await small.allocWeight([10, 36], 'bf16')).texels, 'K % 8 != 0 stays in a buffer').toBe(false);
      expect((await small.allocWeight([10, 40], 'f32')).texels, 'f32 stays in a buffer').toBe(false);
    } finally {
      small.destroy();
    }
  });

  it('fails the step after the device is lost', async () => {
    const other = await getDevice();
    other.destroy();
    await new Promise((r) => setTimeout(r, 10));
    expect(() => other.recorder()).toThrow(/destroyed|lost/);
  });
});
