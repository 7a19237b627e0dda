// Every metric against PVC's official Python functions on thousands of generated answers: numbers,
// percentages, Unicode digits and whitespace, casing, punctuation, articles, number words,
// contractions, near-miss edit distances around the ANLS threshold and empty answers. The scores
// must be identical (same float, same per-item scores), through the library and `npm run eval -- score`.

import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { METRICS, score, type Entry, type Metric } from '../../eval/metrics.js';
import { freshSeed, rng } from '../util.js';
import { official } from './official.js';

const seed = freshSeed();
const rand = rng(seed);
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
const int = (n: number) => Math.floor(rand() * n);

const SPACES = [' ', '  ', '\t', '\n', '\xa0', '\u3000', '\x1c', '\u2009', ''];
const pad = (s: string) => (rand() < 0.3 ? pick(SPACES) + s + pick(SPACES) : s);
const WORDS = ['cat', 'Dog', 'the red car', 'A house', 'an apple', 'two', 'Three', 'none', 'dont', 'its', "it's", 'Straße', 'İstanbul', 'naïve café', 'ΣΟΦΟΣ', 'yes', 'No', 'New York', 'e-mail', 'x/y', '1,000', "man's", 'U.S.A.', 'hello world!', 'what?', '(a)', 'mr. smith', 'ten'];
const UNI_ZERO = [0x30, 0x660, 0x966, 0xff10, 0x1d7ce, 0x1d7d8, 0xe6]; // ASCII, Arabic-Indic, Devanagari, full-width, math bold/double-struck, not a digit

function number(): string {
  const v = pick([0, 1, 7, 12, 100, 0.5, 3.25, 1234.5, 99.9, 0.001, 1e6, -4, -0.25]) * (rand() < 0.5 ? 1 : 1 + (rand() - 0.5) * 0.2);
  const forms = [String(v), v.toFixed(int(4)), v.toExponential(int(3)), `${v}%`, `${v}%%`, `+${v}`, String(Math.round(v)), `${Math.round(v)}.`];
  let s = pick(forms);
  if (rand() < 0.1) s = s.replace(/(\d)(\d)/, '$1_$2');
  if (rand() < 0.1) s = s.replace(/(\d)(\d)/, '$1,$2');
  if (rand() < 0.1) s = s.replace(/[0-9]/g, (d) => String.fromCodePoint(pick(UNI_ZERO) + Number(d)));
  if (rand() < 0.05) s = pick(['inf', '-Infinity', 'nan', 'NaN', '1e400', '.', '-', '1__0', '_1', '1e', '.5', '0x10', '1 000']);
  return pad(s);
}

/** An answer near the target: the same, a relative change near 5%, a case/space/punctuation variant, or unrelated. */
function near(target: string): string {
  const n = Number(target.trim().replace(/%+$/, ''));
  switch (int(7)) {
    case 0:
      return target;
    case 1:
      return Number.isFinite(n) ? String(n * pick([1.05, 0.95, 1.0499, 1.0501, 0.9501, 1.2, 1 / 1.05])) + (target.includes('%') ? '%' : '') : target.toUpperCase();
    case 2:
      return pad(rand() < 0.5 ? target.toUpperCase() : target.toLowerCase());
    case 3:
      return target + pick(['.', '!', ' ', '?', '%']);
    case 4:
      return edit(target, int(4));
    case 5:
      return '';
    default:
      return rand() < 0.5 ? number() : pick(WORDS);
  }
}

/** k random single-character edits (a near miss for the edit distance). */
function edit(s: string, k: number): string {
  const cs = Array.from(s);
  for (let i = 0; i < k; i++) {
    const at = int(cs.length + 1);
    const op = int(3);
    if (op === 0) cs.splice(at, 0, pick(['x', 'E', ' ', 'ß', '.']));
    else if (op === 1 && cs.length) cs.splice(Math.min(at, cs.length - 1), 1);
    else if (cs.length) cs[Math.min(at, cs.length - 1)] = pick(['z', 'Q', '0', ' ']);
  }
  return cs.join('');
}

const annotation = (make: () => string): string | string[] => (rand() < 0.5 ? make() : Array.from({ length: 1 + int(3) }, make));
const text = () => pad(rand() < 0.5 ? pick(WORDS) : number());

const VQA_POOL = ['two', '2', 'the cat', 'cat', 'a cat', 'Cat.', 'cats', "man's", 'mans', 'dont', "don't", '1,000', '1000', 'yes', 'no', 'U.S.A.', 'usa', 'e-mail', 'email', 'x / y', 'hello,world', 'what?', 'New-York', 'new york', '3.5', '3 . 5', 'ten', '10', '', '. . .'];

function generate(metric: Metric, n: number): Entry[] {
  return Array.from({ length: n }, (): Entry => {
    switch (metric) {
      case 'relaxed_accuracy': {
        const ann = annotation(number);
        return { answer: near(typeof ann === 'string' ? ann : pick(ann)), annotation: ann };
      }
      case 'accuracy': {
        const letter = pick(['A', 'B', 'C', 'D', 'ß', 'İ']);
        return { answer: pad(pick([letter, letter.toLowerCase(), `${letter}.`, `(${letter})`, pick(['A', 'B']), '', `${letter} `])), annotation: rand() < 0.8 ? letter : [letter, pick(WORDS)] };
      }
      case 'anls': {
        const ann = annotation(text);
        const base = typeof ann === 'string' ? ann : pick(ann);
        return { answer: rand() < 0.7 ? edit(rand() < 0.5 ? base : base.toUpperCase(), int(5)) : near(base), annotation: ann };
      }
      case 'vqa_score': {
        const humans = Array.from({ length: 10 }, () => pick(VQA_POOL.slice(0, 6 + int(VQA_POOL.length - 6))));
        const answer = rand() < 0.6 ? pad(pick(humans)) : pick([...VQA_POOL, 'the two', 'Two!', 'a, b', '1.000', 'a.b.c', '.'.repeat(40) + 'x', 'isnt', 'whats up', '٣']);
        return { answer, annotation: humans };
      }
      case 'mvbench': {
        const opt = pick(['A', 'B', 'C', 'D']);
        const gt = `(${opt}) ${pick(['the man runs', 'Red.', 'left', '2', 'He opens the door.'])}`;
        const other = pick(['A', 'B', 'C', 'D', 'E']);
        const answer = pick([gt, `(${other}) left`, opt, `${opt}.`, `(${opt.toLowerCase()})`, `Answer: (${opt}) x`, `Answer: ${other}`, '', ' (A)', `${opt}) x`, `(${opt}`, `The answer is (${opt})`, `(${opt}).`, 'Answer:(A)']);
        return { answer, annotation: gt, subtask: pick(['Action Sequence', 'Object Shuffle', 'Episodic Reasoning']) };
      }
    }
  });
}

const N = 1500;
const cases = Object.fromEntries(METRICS.map((m) => [m, generate(m, N)])) as Record<Metric, Entry[]>;

interface Official {
  score: number;
  items: number[];
  subtasks: Record<string, number> | null;
}

describe(`metrics against the official Python code (seed ${seed}, ${N} entries each)`, () => {
  let reference: Record<Metric, Official>;
  beforeAll(async () => {
    reference = await official({ op: 'scores', cases: Object.fromEntries(METRICS.map((m) => [m, { metric: m, entries: cases[m] }])) });
  });

  for (const metric of METRICS) {
    it(metric, () => {
      const entries = cases[metric];
      const want = reference[metric];
      const got = score(metric, entries);
      const diff = got.itemScores.findIndex((s, i) => s !== want.items[i]);
      expect(diff === -1 ? null : { entry: entries[diff], got: got.itemScores[diff], want: want.items[diff] }).toBe(null);
      expect(got.score).toBe(want.score);
      if (metric === 'mvbench') expect(got.subtasks).toEqual(want.subtasks);
      // the generated cases reach both outcomes
      expect(new Set(got.itemScores).size).toBeGreaterThan(1);
    });
  }

  it('npm run eval -- score prints the same scores', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'eval-score-'));
    const run = promisify(execFile);
    const metrics = ['relaxed_accuracy', 'mvbench'] as const;
    const outs = await Promise.all(
      metrics.map((metric) => {
        const file = join(dir, `${metric}.jsonl`);
        writeFileSync(file, cases[metric].map((e, i) => JSON.stringify({ question_id: i, answer: e.answer, annotation: e.annotation, task_type: e.subtask })).join('\n') + '\n');
        return run('npx', ['tsx', 'eval/cli.ts', 'score', '--metric', metric, '--predictions', file], { cwd: join(import.meta.dirname, '../..') });
      }),
    );
    metrics.forEach((metric, i) => {
      const line = JSON.parse(outs[i].stdout.trim());
      expect(line.metric).toBe(metric);
      expect(line.score).toBe(reference[metric].score);
      if (metric === 'mvbench') expect(line.subtasks).toEqual(reference[metric].subtasks);
    });
  });

  it('refuses what the official code cannot score, with the reason', () => {
    expect(() => score('vqa_score', [{ answer: 'a', annotation: ['a', 'b'] }])).toThrow(/10 human answers/);
    expect(() => score('mvbench', [{ answer: 'A', annotation: '(A)' }])).toThrow(/no option text/);
    expect(() => score('anls', [])).toThrow(/no entries/);
  });
});
