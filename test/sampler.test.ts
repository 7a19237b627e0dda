// Sampler: HF's RepetitionPenalty -> Temperature -> TopK -> TopP filtering against an independent
// float64 reference (written per token rather than by sorting), the distribution of seeded draws
// (chi-square), seed determinism, and bad settings. CPU only.

import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { argmaxOf, processLogits, resolveSampling, Sampler, seededRandom, type SamplingOptions } from '../src/generate/sampler.js';
import { freshSeed, randn, rng } from './util.js';

/** HF's processors, one token at a time: keep i unless its rank or the mass at and below it says drop. */
function reference(logits: ArrayLike<number>, previous: number[], o: { temperature: number; topK: number; topP: number; penalty: number }): number[] {
  const s = Array.from(logits, Number);
  for (const id of new Set(previous)) s[id] = s[id] < 0 ? s[id] * o.penalty : s[id] / o.penalty;
  if (o.temperature === 0) return s;
  const t = s.map((x) => x / o.temperature);
  // top-k: drop i when at least k values are strictly greater (ties with the k-th value survive)
  const k = o.topK > 0 ? Math.min(o.topK, t.length) : t.length;
  const afterK = t.map((x) => (t.filter((y) => y > x).length >= k ? -Infinity : x));
  if (o.topP >= 1) return afterK;
  const max = Math.max(...afterK);
  const e = afterK.map((x) => Math.exp(x - max));
  const z = e.reduce((a, b) => a + b, 0);
  const p = e.map((x) => x / z);
  // top-p: ascending cumulative mass up to and including i; dropped when <= 1 - top_p, the top id always kept
  const top = argmaxOf(afterK);
  return afterK.map((x, i) => {
    if (x === -Infinity || i === top) return x;
    const below = p.reduce((acc, q, j) => acc + (afterK[j] <= x ? q : 0), 0);
    return below <= 1 - o.topP ? -Infinity : x;
  });
}

function softmax(s: number[]): number[] {
  const max = Math.max(...s);
  const e = s.map((x) => (x === -Infinity ? 0 : Math.exp(x - max)));
  const z = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / z);
}

describe('processLogits (HF order: repetition penalty, temperature, top-k, top-p)', () => {
  const seed = freshSeed();
  it(`matches the per-token float64 reference over many settings (seed ${seed})`, () => {
    const rand = rng(seed);
    let cases = 0;
    for (const penalty of [1, 1.3, 0.7]) {
      for (const temperature of [0, 0.6, 1, 1.7]) {
        for (const topK of temperature === 0 ? [0] : [0, 1, 7, 50, 400]) {
          for (const topP of temperature === 0 ? [1] : [1, 0.95, 0.6, 0.1, 1e-9]) {
            const v = 257;
            const logits = randn(v, rand, 2);
            const previous = Array.from({ length: 20 }, () => Math.floor(rand() * v));
            const got = processLogits(Float64Array.from(logits), previous, { temperature, topK, topP, repetitionPenalty: penalty, seed: 0 });
            const want = reference(logits, previous, { temperature, topK, topP, penalty });
            const label = `penalty ${penalty} T ${temperature} k ${topK} p ${topP}`;
            for (let i = 0; i < v; i++) {
              if (want[i] === -Infinity) expect(got[i], `${label}: id ${i} removed`).toBe(-Infinity);
              else expect(Math.abs(got[i] - want[i]), `${label}: id ${i}`).toBeLessThanOrEqual(1e-12 * Math.max(1, Math.abs(want[i])));
            }
            cases++;
          }
        }
      }
    }
    expect(cases).toBe(3 * (1 + 3 * 5 * 5));
  });

  it(`ties (logits on a coarse grid): ids tied at a top-k or top-p cutoff are all kept (seed ${seed})`, () => {
    const rand = rng(seed + 1);
    for (let trial = 0; trial < 40; trial++) {
      const logits = Array.from(randn(60, rand, 1.5), (x) => Math.round(x * 2) / 2);
      const o = { temperature: 0.5 + rand(), topK: trial % 2 ? 0 : 1 + Math.floor(rand() * 30), topP: 0.05 + 0.9 * rand(), penalty: 1 };
      const got = processLogits(Float64Array.from(logits), [], { ...o, repetitionPenalty: 1, seed: 0 });
      const want = reference(logits, [], o);
      expect(Array.from(got).map((x) => x === -Infinity), JSON.stringify(o)).toEqual(want.map((x) => x === -Infinity));
    }
  });

  it('repetition penalty divides positive and multiplies negative logits of seen ids only, once per id', () => {
    const s = processLogits(Float64Array.of(2, -2, 0, 4), [0, 1, 1, 2], { temperature: 0, topK: 0, topP: 1, repetitionPenalty: 2, seed: 0 });
    expect(Array.from(s)).toEqual([1, -4, 0, 4]);
  });

  it('top-k keeps every id tied with the k-th value', () => {
    const s = processLogits(Float64Array.of(1, 3, 2, 2, 0), [], { temperature: 1, topK: 2, topP: 1, repetitionPenalty: 1, seed: 0 });
    expect(Array.from(s)).toEqual([-Infinity, 3, 2, 2, -Infinity]);
  });

  it('top-p keeps the most likely id even when it alone exceeds top_p', () => {
    const s = processLogits(Float64Array.of(0, 10, 0), [], { temperature: 1, topK: 0, topP: 0.5, repetitionPenalty: 1, seed: 0 });
    expect(Array.from(s)).toEqual([-Infinity, 10, -Infinity]);
  });

  it('NaN logits fail loudly', () => {
    expect(() => processLogits(Float64Array.of(0, NaN), [], resolveSampling())).toThrow(/NaN \(id 1\)/);
  });
});

/** softmax(logits / T) by PyTorch in float64, for each [logits, T] (null where it gives NaN). */
function torchSoftmax(cases: [number[], number][]): (number | null)[][] {
  const code = 'import json, sys, torch\nout = [torch.softmax(torch.tensor(x, dtype=torch.float64) / t, dim=0).tolist() for x, t in json.load(sys.stdin)]\nprint(json.dumps([[None if p != p else p for p in ps] for ps in out]))';
  return JSON.parse(execFileSync('/usr/bin/python3', ['-c', code], { input: JSON.stringify(cases) }).toString());
}

describe('tiny temperatures (1/T or logits/T past float64)', () => {
  const seed = freshSeed();
  it(`give the T -> 0 limit, which PyTorch's softmax(logits / T) already reaches at T = 1e-300 (seed ${seed})`, () => {
    const distinct = Array.from(randn(50, rng(seed), 2));
    const tied = [1, 3, -2, 3, 0];
    const [wantDistinct, wantTied, overflowed] = torchSoftmax([[distinct, 1e-300], [tied, 1e-300], [tied, 1e-320]]);
    expect(overflowed.includes(null), 'PyTorch itself overflows at 1e-320').toBe(true);
    for (const [logits, want] of [[distinct, wantDistinct], [tied, wantTied]] as const) {
      for (const temperature of [1e-300, 1e-310, 1e-320, 5e-324]) {
        const scores = processLogits(Float64Array.from(logits), [], { temperature, topK: 0, topP: 1, repetitionPenalty: 1, seed: 0 });
        const got = softmax(Array.from(scores));
        got.forEach((p, i) => expect(Math.abs(p - want[i]!), `T ${temperature} id ${i}`).toBeLessThan(1e-12));
      }
    }
  });

  it(`a sampler at T = 1e-320 draws the argmax, or the ids tied at the top (seed ${seed})`, () => {
    const logits = randn(300, rng(seed), 2);
    const sampler = new Sampler({ temperature: 1e-320, seed });
    for (let i = 0; i < 50; i++) expect(sampler.pick(logits, [])).toBe(argmaxOf(logits));
    const drawn = new Set(Array.from({ length: 200 }, () => sampler.pick([1, 3, -2, 3, 0], [])));
    expect([...drawn].sort()).toEqual([1, 3]);
  });
});

describe('Sampler', () => {
  const seed = freshSeed();

  it(`draws follow softmax of the processed logits (chi-square, seed ${seed})`, () => {
    const rand = rng(seed);
    const v = 12;
    const logits = randn(v, rand, 1);
    const previous = [0, 3, 3];
    const settings = { temperature: 0.8, topK: 9, topP: 0.9, repetitionPenalty: 1.2, seed };
    const p = softmax(reference(logits, previous, { temperature: 0.8, topK: 9, topP: 0.9, penalty: 1.2 }));
    const sampler = new Sampler(settings);
    const n = 40000;
    const counts = new Array(v).fill(0);
    for (let i = 0; i < n; i++) counts[sampler.pick(logits, previous)]++;
    let chi2 = 0;
    let kept = 0;
    for (let i = 0; i < v; i++) {
      if (p[i] === 0) expect(counts[i], `removed id ${i} was drawn`).toBe(0);
      else {
        chi2 += (counts[i] - n * p[i]) ** 2 / (n * p[i]);
        kept++;
      }
    }
    const df = kept - 1;
    expect(kept).toBeGreaterThanOrEqual(2);
    // mean df, sd sqrt(2 df); df + 10 sd + 10 is past the 1e-6 quantile for every df (24 at df = 1)
    expect(chi2, `chi2 ${chi2.toFixed(1)} with ${df} dof`).toBeLessThan(df + 10 * Math.sqrt(2 * df) + 10);
  });

  it('the same seed gives the same tokens; another seed other tokens', () => {
    const rand = rng(seed);
    const logits = randn(500, rand, 0.5);
    const run = (s: number) => {
      const sampler = new Sampler({ temperature: 1.2, topK: 0, seed: s });
      const out: number[] = [];
      for (let i = 0; i < 64; i++) out.push(sampler.pick(logits, out));
      return out;
    };
    expect(run(seed)).toEqual(run(seed));
    expect(run(seed)).not.toEqual(run(seed + 1));
  });

  it('seededRandom gives uniform numbers in [0, 1) and depends on the high seed bits too', () => {
    const r = seededRandom(seed);
    let sum = 0;
    let outside = 0;
    for (let i = 0; i < 100000; i++) {
      const u = r();
      if (!(u >= 0 && u < 1)) outside++;
      sum += u;
    }
    expect(outside).toBe(0);
    expect(Math.abs(sum / 100000 - 0.5)).toBeLessThan(0.005); // sd of the mean is 0.0009
    expect(seededRandom(5)()).not.toBe(seededRandom(5 + 2 ** 32)());
  });

  it('greedy: the GPU argmax when there is no penalty; with a penalty the CPU argmax of penalised logits', () => {
    expect(new Sampler().usesGpuArgmax).toBe(true);
    expect(new Sampler({ repetitionPenalty: 1.1 }).usesGpuArgmax).toBe(false);
    expect(new Sampler({ temperature: 0.7 }).usesGpuArgmax).toBe(false);
    const greedy = new Sampler({ repetitionPenalty: 4 });
    expect(greedy.pick([5, 3, 1], [])).toBe(0);
    expect(greedy.pick([5, 3, 1], [0])).toBe(1); // 5 / 4 < 3
  });

  it('defaults follow HF: top-k 50 when sampling, nothing when greedy', () => {
    expect(resolveSampling({ temperature: 1, seed: 1 })).toEqual({ temperature: 1, topP: 1, topK: 50, repetitionPenalty: 1, seed: 1 });
    expect(resolveSampling({ seed: 1 })).toEqual({ temperature: 0, topP: 1, topK: 0, repetitionPenalty: 1, seed: 1 });
  });

  it('bad settings throw errors that name the setting', () => {
    const bad: [SamplingOptions, RegExp][] = [
      [{ temperature: -1 }, /temperature/],
      [{ temperature: NaN }, /temperature/],
      [{ temperature: 1, topP: 0 }, /top-p/],
      [{ temperature: 1, topP: 1.5 }, /top-p/],
      [{ temperature: 1, topK: 2.5 }, /top-k/],
      [{ temperature: 1, topK: -1 }, /top-k/],
      [{ repetitionPenalty: 0 }, /repetition penalty/],
      [{ seed: -3 }, /seed/],
      [{ seed: 1.5 }, /seed/],
      [{ topP: 0.9 }, /only apply when sampling/],
      [{ topK: 5 }, /only apply when sampling/],
    ];
    for (const [o, re] of bad) expect(() => new Sampler(o), JSON.stringify(o)).toThrow(re);
  });
});
