// Next-token choice with Hugging Face generate() semantics: the logits processors
// RepetitionPenalty, Temperature, TopK and TopP, applied in that order, then a draw from the
// softmax of what is left (or the argmax when not sampling).
//
// Where it runs: plain greedy decoding uses the GPU argmax, so only 4 bytes come back per token.
// Everything else reads the last row of logits back (92553 floats, ~370 KB) and filters and draws
// on the CPU in float64: top-p needs a sort of the whole vocabulary, which a GPU sort would not
// beat at one row per token, and the copy is small next to a decode step of an 8B model.
//
// "Previously seen ids" for the repetition penalty are the ids generated so far in this answer:
// InternVL's chat calls generate() with inputs_embeds only, so HF's input_ids (what the penalty
// looks at) starts empty and holds only the new tokens.

export interface SamplingOptions {
  /** 0 (default): greedy. > 0: sample from softmax(logits / temperature). */
  temperature?: number;
  /** Nucleus sampling: keep the most likely ids whose probabilities add up to top_p. 1 (default): off. */
  topP?: number;
  /** Keep the k most likely ids (ties at the k-th value kept, as HF). 0: off. Default 50 when sampling, HF's default. */
  topK?: number;
  /** HF's repetition_penalty: seen ids' logits divided by it if > 0, multiplied if < 0. 1 (default): off. */
  repetitionPenalty?: number;
  /** PRNG seed for sampling; the same seed gives the same tokens. Default: a random one (see Sampler.seed). */
  seed?: number;
}

/** Settings after defaults and validation. */
export interface ResolvedSampling {
  temperature: number;
  topP: number;
  topK: number;
  repetitionPenalty: number;
  seed: number;
}

export const DEFAULT_TOP_K = 50;

/** Checks the options (errors name the option and its allowed range) and fills in defaults. */
export function resolveSampling(o: SamplingOptions = {}): ResolvedSampling {
  const temperature = o.temperature ?? 0;
  const sampling = temperature > 0;
  const topP = o.topP ?? 1;
  const topK = o.topK ?? (sampling ? DEFAULT_TOP_K : 0);
  const repetitionPenalty = o.repetitionPenalty ?? 1;
  const seed = o.seed ?? Math.floor(Math.random() * 2 ** 32);
  if (!(Number.isFinite(temperature) && temperature >= 0)) throw new RangeError(`temperature must be a number >= 0 (0 = greedy), got ${temperature}`);
  if (!(topP > 0 && topP <= 1)) throw new RangeError(`top-p must be in (0, 1], got ${topP}`);
  if (!(Number.isSafeInteger(topK) && topK >= 0)) throw new RangeError(`top-k must be an integer >= 0 (0 = off), got ${topK}`);
  if (!(Number.isFinite(repetitionPenalty) && repetitionPenalty > 0)) throw new RangeError(`repetition penalty must be a number > 0 (1 = off), got ${repetitionPenalty}`);
  if (!(Number.isSafeInteger(seed) && seed >= 0)) throw new RangeError(`seed must be an integer >= 0, got ${seed}`);
  if (!sampling && ((o.topP !== undefined && topP !== 1) || (o.topK !== undefined && topK !== 0))) {
    throw new RangeError('top-p and top-k only apply when sampling: give a temperature > 0');
  }
  return { temperature, topP, topK, repetitionPenalty, seed };
}

/**
 * The processed scores HF would sample from, in place: repetition penalty over `previous`, then
 * temperature, top-k and top-p (removed ids become -Infinity). With temperature 0 only the penalty
 * applies (greedy search in HF runs the processors, not the warpers).
 */
export function processLogits(scores: Float64Array, previous: Iterable<number>, s: ResolvedSampling): Float64Array {
  const v = scores.length;
  for (let i = 0; i < v; i++) if (Number.isNaN(scores[i])) throw new Error(`logits hold NaN (id ${i}): the forward pass failed`);
  if (s.repetitionPenalty !== 1) {
    for (const id of new Set(previous)) {
      if (id < 0 || id >= v) continue;
      scores[id] = scores[id] < 0 ? scores[id] * s.repetitionPenalty : scores[id] / s.repetitionPenalty;
    }
  }
  if (s.temperature === 0) return scores;
  if (s.temperature !== 1) divideByTemperature(scores, s.temperature);
  if (s.topK > 0 && s.topK < v) {
    const kth = Float64Array.from(scores).sort()[v - s.topK];
    for (let i = 0; i < v; i++) if (scores[i] < kth) scores[i] = -Infinity;
  }
  if (s.topP < 1) {
    // Ascending by score, HF drops ids while the mass dropped stays <= 1 - top_p (the top id always
    // stays). The first position past that gives a cutoff score; ids tied with it are all kept.
    const sorted = Float64Array.from(scores).sort();
    const max = sorted[v - 1];
    let z = 0;
    for (let j = 0; j < v; j++) z += Math.exp(sorted[j] - max);
    let cumulative = 0;
    let cut = v - 1;
    for (let j = 0; j < v - 1; j++) {
      cumulative += Math.exp(sorted[j] - max) / z;
      if (cumulative > 1 - s.topP) {
        cut = j;
        break;
      }
    }
    for (let i = 0; i < v; i++) if (scores[i] < sorted[cut]) scores[i] = -Infinity;
  }
  return scores;
}

/**
 * scores / T in place. A temperature so small that a finite score overflows (T under ~1e-300 for
 * logits of a few units) gets the limit of softmax(scores / T) as T -> 0: all the mass on the top
 * score, shared by ids tied there. Just above that threshold the division already gives this limit
 * (any two distinct float32 logits end up far more than exp's ~745 range apart), so nothing jumps.
 * Hugging Face divides float32 logits and fails on the NaN probabilities such a T makes.
 */
function divideByTemperature(scores: Float64Array, temperature: number): void {
  let max = -Infinity;
  let overflows = false;
  for (let i = 0; i < scores.length; i++) {
    max = Math.max(max, scores[i]);
    overflows ||= Number.isFinite(scores[i]) && !Number.isFinite(scores[i] / temperature);
  }
  for (let i = 0; i < scores.length; i++) {
    if (overflows) scores[i] = scores[i] === max ? 0 : -Infinity;
    else scores[i] /= temperature;
  }
}

/** softmax of scores[ids] (float64, max-subtracted), in the order of ids. */
function softmaxOf(scores: Float64Array, ids: readonly number[]): Float64Array {
  let max = -Infinity;
  for (const i of ids) max = Math.max(max, scores[i]);
  const p = new Float64Array(ids.length);
  let sum = 0;
  ids.forEach((i, j) => (sum += p[j] = Math.exp(scores[i] - max)));
  for (let j = 0; j < p.length; j++) p[j] /= sum;
  return p;
}

/** Lowest index of the largest value (torch.argmax). */
export function argmaxOf(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

/** Draw an id from softmax(scores) with the uniform number u in [0, 1) (inverse CDF in id order). */
export function drawFrom(scores: Float64Array, u: number): number {
  const ids: number[] = [];
  for (let i = 0; i < scores.length; i++) if (scores[i] !== -Infinity) ids.push(i);
  const p = softmaxOf(scores, ids);
  let cumulative = 0;
  for (let j = 0; j < ids.length; j++) {
    cumulative += p[j];
    if (u < cumulative) return ids[j];
  }
  return ids[ids.length - 1]; // rounding left the sum a hair below u
}

/**
 * Seeded uniform numbers in [0, 1) with 53 random bits: sfc32 seeded through splitmix32 (from the
 * low and high 32 bits of the seed). Small, fast, and good enough for sampling tokens.
 */
export function seededRandom(seed: number): () => number {
  let x = seed >>> 0;
  const splitmix = (): number => {
    x = (x + 0x9e3779b9) >>> 0;
    let z = x;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = splitmix();
  let b = splitmix() ^ Math.floor(seed / 2 ** 32);
  let c = splitmix();
  let d = 1;
  const next = (): number => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = ((c << 21) | (c >>> 11)) >>> 0;
    c = (c + t) >>> 0;
    return t;
  };
  for (let i = 0; i < 12; i++) next(); // mix the seed in before the first output
  return () => ((next() >>> 5) * 2 ** 26 + (next() >>> 6)) / 2 ** 53;
}

/** Chooses each next token: on the GPU when greedy without penalty, else from logits read back. */
export class Sampler {
  readonly settings: ResolvedSampling;
  private readonly random: () => number;

  constructor(options: SamplingOptions = {}) {
    this.settings = resolveSampling(options);
    this.random = seededRandom(this.settings.seed);
  }

  /** True when the next token is the plain argmax of the logits (the GPU argmax, 4 bytes read back). */
  get usesGpuArgmax(): boolean {
    return this.settings.temperature === 0 && this.settings.repetitionPenalty === 1;
  }

  get seed(): number {
    return this.settings.seed;
  }

  /** The next token from one row of logits, given the ids generated so far. */
  pick(logits: ArrayLike<number>, previous: readonly number[]): number {
    const scores = processLogits(Float64Array.from(logits), previous, this.settings);
    return this.settings.temperature === 0 ? argmaxOf(scores) : drawFrom(scores, this.random());
  }
}
