// The metrics of PVC's evaluation scripts, with their exact string handling:
//   relaxed_accuracy  ChartQA: evaluate_vqa.py relaxed_correctness (5% on numbers, % as /100)
//   accuracy          AI2D: evaluate_vqa.py evaluate_exact_match_accuracy (strip + lower)
//   anls              DocVQA, InfoVQA: infographicsvqa_eval.py evaluate_method (threshold 0.5)
//   vqa_score         TextVQA: textvqa_eval.py TextVQAAccuracyEvaluator with EvalAIAnswerProcessor
//   mvbench           evaluate_mvbench.py check_ans, per task type and overall, in percent
// Each returns per-item scores; the score is their sum in input order over the count, as the
// Python code sums them (the order matters for float sums).

import { pyFloat, pyLen, pySplit, pyStrip } from './py.js';

export const METRICS = ['relaxed_accuracy', 'accuracy', 'anls', 'vqa_score', 'mvbench'] as const;
export type Metric = (typeof METRICS)[number];

export interface Entry {
  answer: string;
  /** one string or a list of acceptable strings (the official merged outputs carry either) */
  annotation: string | string[];
  /** MVBench's task type, for the per-subtask scores */
  subtask?: string;
}

export interface MetricResult {
  metric: Metric;
  score: number;
  count: number;
  /** per item, in input order */
  itemScores: number[];
  /** MVBench: percent correct per task type, in first-seen order */
  subtasks?: Record<string, number>;
}

const asList = (a: string | string[]): string[] => (typeof a === 'string' ? [a] : a);

// ---- relaxed accuracy (ChartQA) -------------------------------------------------------------

function toFloat(text: string): number | null {
  if (text.endsWith('%')) {
    const v = pyFloat(text.replace(/%+$/, ''));
    return v === null ? null : v / 100.0;
  }
  return pyFloat(text);
}

/** relaxed_correctness(target, prediction): within 5% when both parse as numbers (and the target
 *  is non-zero), otherwise a case-insensitive exact match. */
export function relaxedCorrectness(target: string, prediction: string, maxRelativeChange = 0.05): boolean {
  const p = toFloat(prediction);
  const t = toFloat(target);
  if (p !== null && t !== null && t !== 0) return Math.abs(p - t) / Math.abs(t) <= maxRelativeChange;
  return prediction.toLowerCase() === target.toLowerCase();
}

// ---- exact match (AI2D) ---------------------------------------------------------------------

function exactMatch(answer: string, annotation: string): boolean {
  return pyStrip(answer).toLowerCase() === pyStrip(annotation).toLowerCase();
}

// ---- ANLS (DocVQA, InfoVQA) -----------------------------------------------------------------

/** Levenshtein distance over code points. */
function levenshtein(a: string, b: string): number {
  let s1 = Array.from(a);
  let s2 = Array.from(b);
  if (s1.length > s2.length) [s1, s2] = [s2, s1];
  let prev = Array.from({ length: s1.length + 1 }, (_, i) => i);
  for (let i2 = 0; i2 < s2.length; i2++) {
    const cur = [i2 + 1];
    for (let i1 = 0; i1 < s1.length; i1++) {
      cur.push(s1[i1] === s2[i2] ? prev[i1] : 1 + Math.min(prev[i1], prev[i1 + 1], cur[cur.length - 1]));
    }
    prev = cur;
  }
  return prev[prev.length - 1];
}

const normalizeSpaces = (s: string): string => pySplit(pyStrip(s).toLowerCase()).join(' ');

/** One question's ANLS: 1 - the least normalised edit distance over the answers, 0 under the threshold.
 *  The distance is between lower-cased, whitespace-collapsed strings; the length is the longer raw
 *  upper-cased string, as the official script has it. */
export function anlsItem(answer: string, annotations: string[], threshold = 0.5): number {
  const det = normalizeSpaces(answer);
  const values = annotations.map((gt) => {
    const length = Math.max(pyLen(gt.toUpperCase()), pyLen(answer.toUpperCase()));
    return length === 0 ? 0.0 : levenshtein(normalizeSpaces(gt), det) / length;
  });
  const result = 1 - Math.min(...values);
  return result < threshold ? 0 : result;
}

// ---- VQA score (TextVQA) --------------------------------------------------------------------

// EvalAIAnswerProcessor's tables (textvqa_eval.py).
const CONTRACTIONS: Record<string, string> = {
  aint: "ain't", arent: "aren't", cant: "can't", couldve: "could've", couldnt: "couldn't",
  "couldn'tve": "couldn't've", "couldnt've": "couldn't've", didnt: "didn't", doesnt: "doesn't",
  dont: "don't", hadnt: "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", hasnt: "hasn't",
  havent: "haven't", hed: "he'd", "hed've": "he'd've", "he'dve": "he'd've", hes: "he's", howd: "how'd",
  howll: "how'll", hows: "how's", "Id've": "I'd've", "I'dve": "I'd've", Im: "I'm", Ive: "I've",
  isnt: "isn't", itd: "it'd", "itd've": "it'd've", "it'dve": "it'd've", itll: "it'll", "let's": "let's",
  maam: "ma'am", mightnt: "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
  mightve: "might've", mustnt: "mustn't", mustve: "must've", neednt: "needn't", notve: "not've",
  oclock: "o'clock", oughtnt: "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
  "'ow'sat": "'ow's'at", shant: "shan't", "shed've": "she'd've", "she'dve": "she'd've",
  "she's": "she's", shouldve: "should've", shouldnt: "shouldn't", "shouldnt've": "shouldn't've",
  "shouldn'tve": "shouldn't've", "somebody'd": 'somebodyd', "somebodyd've": "somebody'd've",
  "somebody'dve": "somebody'd've", somebodyll: "somebody'll", somebodys: "somebody's",
  someoned: "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
  someonell: "someone'll", someones: "someone's", somethingd: "something'd",
  "somethingd've": "something'd've", "something'dve": "something'd've", somethingll: "something'll",
  thats: "that's", thered: "there'd", "thered've": "there'd've", "there'dve": "there'd've",
  therere: "there're", theres: "there's", theyd: "they'd", "theyd've": "they'd've",
  "they'dve": "they'd've", theyll: "they'll", theyre: "they're", theyve: "they've", twas: "'twas",
  wasnt: "wasn't", "wed've": "we'd've", "we'dve": "we'd've", weve: "we've", werent: "weren't",
  whatll: "what'll", whatre: "what're", whats: "what's", whatve: "what've", whens: "when's",
  whered: "where'd", wheres: "where's", whereve: "where've", whod: "who'd", "whod've": "who'd've",
  "who'dve": "who'd've", wholl: "who'll", whos: "who's", whove: "who've", whyll: "why'll",
  whyre: "why're", whys: "why's", wont: "won't", wouldve: "would've", wouldnt: "wouldn't",
  "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", yall: "y'all", "yall'll": "y'all'll",
  "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
  youd: "you'd", "youd've": "you'd've", "you'dve": "you'd've", youll: "you'll", youre: "you're",
  youve: "you've",
};
const NUMBER_MAP: Record<string, string> = {
  none: '0', zero: '0', one: '1', two: '2', three: '3', four: '4', five: '5', six: '6', seven: '7', eight: '8', nine: '9', ten: '10',
};
const ARTICLES = new Set(['a', 'an', 'the']);
const PUNCTUATIONS = [';', '/', '[', ']', '"', '{', '}', '(', ')', '=', '+', '\\', '_', '-', '>', '<', '@', '`', ',', '?', '!'];
// Python's \d is any Unicode decimal digit. PERIOD_STRIP's "(?!<=\d)" is a lookahead for the
// literal "<=" (a typo for a lookbehind), so it never excludes anything.
const PERIOD_STRIP = /(?!<=\p{Nd})(\.)(?!\p{Nd})/gu;
const COMMA_STRIP = /(?<=\p{Nd})(,)+(?=\p{Nd})/u;
// The script calls PERIOD_STRIP.sub('', text, re.UNICODE): the flag lands in `count`, so at most
// re.UNICODE == 32 periods are removed.
const PERIOD_STRIP_COUNT = 32;

function processPunctuation(inText: string): string {
  let out = inText;
  for (const p of PUNCTUATIONS) {
    if (inText.includes(p + ' ') || inText.includes(' ' + p) || COMMA_STRIP.test(inText)) out = out.replaceAll(p, '');
    else out = out.replaceAll(p, ' ');
  }
  let n = 0;
  return out.replace(PERIOD_STRIP, (m) => (n++ < PERIOD_STRIP_COUNT ? '' : m));
}

function processDigitArticle(inText: string): string {
  const words = pySplit(inText.toLowerCase())
    .map((w) => (Object.hasOwn(NUMBER_MAP, w) ? NUMBER_MAP[w] : w))
    .filter((w) => !ARTICLES.has(w));
  return words.map((w) => (Object.hasOwn(CONTRACTIONS, w) ? CONTRACTIONS[w] : w)).join(' ');
}

/** EvalAIAnswerProcessor: the answer normalisation of the VQA score. */
export function normalizeVqaAnswer(answer: string): string {
  let s = pyStrip(answer.toLowerCase().replaceAll(',', '').replaceAll('?', '').replaceAll("'s", " 's"));
  s = pyStrip(s.replaceAll('\n', ' ').replaceAll('\t', ' '));
  return processDigitArticle(processPunctuation(s));
}

/** The soft VQA score of one prediction against the ten human answers: for each leave-one-out
 *  subset of nine, min(1, matches / 3), averaged over the ten subsets. */
export function vqaScoreItem(answer: string, humanAnswers: string[]): number {
  const gts = humanAnswers.map(normalizeVqaAnswer);
  if (gts.length !== 10) throw new Error(`the VQA score needs 10 human answers per question, got ${gts.length}`);
  const pred = normalizeVqaAnswer(answer);
  if (!gts.includes(pred)) return 0.0;
  let sum = 0;
  for (let left = 0; left < gts.length; left++) {
    const matches = gts.filter((g, i) => i !== left && g === pred).length;
    sum += Math.min(1, matches / 3);
  }
  return sum / gts.length;
}

// ---- MVBench --------------------------------------------------------------------------------

/** check_ans(pred, gt): the first word of the answer (periods dropped) against the option "(x)". */
export function mvbenchCheck(pred: string, gt: string): boolean {
  const predOption = pred.replaceAll('Answer: ', '').toLowerCase().split(' ')[0];
  const gtWords = gt.toLowerCase().split(' ');
  if (gtWords.slice(1).join(' ') === '') throw new Error(`MVBench annotation "${gt}" has no option text after "${gtWords[0]}"`);
  const gtOption = gtWords[0];
  return gtOption.includes(predOption.replaceAll('.', '')) || predOption.includes(gtOption);
}

// ---- aggregation ----------------------------------------------------------------------------

function mean(scores: number[]): number {
  let sum = 0;
  for (const s of scores) sum += s;
  return sum / scores.length;
}

export function score(metric: Metric, entries: readonly Entry[]): MetricResult {
  if (entries.length === 0) throw new Error('no entries to score');
  const item = (e: Entry): number => {
    const anns = asList(e.annotation);
    if (anns.length === 0) throw new Error('an entry has an empty annotation list');
    switch (metric) {
      case 'relaxed_accuracy':
        // evaluate_relaxed_accuracy passes the answer as relaxed_correctness's *target*: the 5%
        // is relative to the model's answer
        return anns.some((a) => relaxedCorrectness(pyStrip(e.answer), a)) ? 1 : 0;
      case 'accuracy':
        return anns.some((a) => exactMatch(e.answer, a)) ? 1 : 0;
      case 'anls':
        return anlsItem(e.answer, anns);
      case 'vqa_score':
        return vqaScoreItem(e.answer, anns);
      case 'mvbench':
        if (anns.length !== 1) throw new Error('an MVBench annotation is one string, "(x) option"');
        return mvbenchCheck(e.answer, anns[0]) ? 1 : 0;
    }
  };
  const itemScores = entries.map(item);
  if (metric !== 'mvbench') return { metric, score: mean(itemScores), count: entries.length, itemScores };
  // evaluate_mvbench.py counts [correct, total] per task type and overall, then * 100
  const per = new Map<string, [number, number]>();
  entries.forEach((e, i) => {
    const c = per.get(e.subtask ?? '') ?? [0, 0];
    c[0] += itemScores[i];
    c[1] += 1;
    per.set(e.subtask ?? '', c);
  });
  const correct = itemScores.reduce((a, b) => a + b, 0);
  const subtasks = Object.fromEntries([...per].map(([k, [c, n]]) => [k, (c / n) * 100]));
  return { metric, score: (correct / entries.length) * 100, count: entries.length, itemScores, subtasks };
}
