// npm run eval -- --task NAME --data DIR --model DIR [--limit N] [--out DIR] [--queue redis://HOST:PORT]
// npm run eval -- score --metric METRIC --predictions FILE.jsonl
// Bad arguments or inputs exit with status 2 and one line saying why.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { InputError } from '../src/index.js';
import { METRICS, score, type Entry, type Metric } from './metrics.js';
import { runTask } from './run.js';
import { TASKS } from './tasks.js';

const USAGE = `usage:
  npm run eval -- --task NAME --data DIR --model DIR [--limit N] [--out DIR] [--queue redis://HOST:PORT]
                  [--max-num N] [--frames N] [--max-new-tokens N]
  npm run eval -- score --metric ${METRICS.join('|')} --predictions FILE.jsonl

tasks: ${Object.keys(TASKS).join(', ')}
  --data DIR         the dataset folder as the InternVL guide lays it out (e.g. data/chartqa, data/MVBench)
  --model DIR        checkpoint folder (not needed with --queue: eval:worker processes answer)
  --limit N          only the first N items (MVBench: of each of its 20 subtasks)
  --out DIR          results folder (default eval-results); a rerun resumes where the last stopped
  --queue URL        put the items on a BullMQ queue in Redis; start workers with npm run eval:worker
  --max-num N        dynamic tiles per image (default: the guide's value for the task)
  --frames N         MVBench frames per video (default 16)
  --max-new-tokens N (default: the task's official value)`;

class UsageError extends Error {}

function positiveInt(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) throw new UsageError(`--${name} needs a positive integer, got "${v}"`);
  return n;
}

function readPredictions(file: string): Entry[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read ${file}: ${(e as Error).message}`);
  }
  return text
    .split('\n')
    .map((l, i) => [l, i] as const)
    .filter(([l]) => l.trim() !== '')
    .map(([l, i]) => {
      let row: { answer?: unknown; annotation?: unknown; task_type?: unknown; subtask?: unknown };
      try {
        row = JSON.parse(l);
      } catch {
        throw new UsageError(`${file} line ${i + 1} is not valid JSON`);
      }
      const ann = row.annotation;
      if (typeof row.answer !== 'string') throw new UsageError(`${file} line ${i + 1}: "answer" must be a string`);
      if (!(typeof ann === 'string' || (Array.isArray(ann) && ann.every((a) => typeof a === 'string')))) {
        throw new UsageError(`${file} line ${i + 1}: "annotation" must be a string or a list of strings`);
      }
      const subtask = row.task_type ?? row.subtask;
      return { answer: row.answer, annotation: ann, ...(typeof subtask === 'string' ? { subtask } : {}) };
    });
}

async function main(argv: string[]): Promise<void> {
  if (argv[0] === 'score') {
    const { values } = parseArgs({ args: argv.slice(1), options: { metric: { type: 'string' }, predictions: { type: 'string' } } });
    if (!values.metric || !(METRICS as readonly string[]).includes(values.metric)) throw new UsageError(`--metric must be one of ${METRICS.join(', ')}`);
    if (!values.predictions) throw new UsageError('--predictions FILE.jsonl is needed');
    const entries = readPredictions(values.predictions);
    let r;
    try {
      r = score(values.metric as Metric, entries);
    } catch (e) {
      throw new UsageError(`${values.predictions}: ${(e as Error).message}`);
    }
    console.log(JSON.stringify({ metric: r.metric, score: r.score, count: r.count, ...(r.subtasks ? { subtasks: r.subtasks } : {}) }));
    return;
  }
  const { values } = parseArgs({
    args: argv,
    options: {
      task: { type: 'string' },
      data: { type: 'string' },
      model: { type: 'string' },
      limit: { type: 'string' },
      out: { type: 'string', default: 'eval-results' },
      queue: { type: 'string' },
      'max-num': { type: 'string' },
      frames: { type: 'string' },
      'max-new-tokens': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  if (!values.task || !(values.task in TASKS)) throw new UsageError(`--task must be one of ${Object.keys(TASKS).join(', ')}`);
  if (!values.data) throw new UsageError('--data DIR is needed');
  if (!values.model && !values.queue) throw new UsageError('--model DIR is needed (or --queue URL)');
  const summary = await runTask({
    task: values.task,
    data: values.data,
    model: values.model,
    out: values.out!,
    queue: values.queue,
    limit: positiveInt('limit', values.limit),
    maxTiles: positiveInt('max-num', values['max-num']),
    frames: positiveInt('frames', values.frames),
    maxNewTokens: positiveInt('max-new-tokens', values['max-new-tokens']),
  });
  console.log(JSON.stringify(summary));
}

main(process.argv.slice(2)).catch((e: Error) => {
  const parseError = String((e as { code?: unknown }).code ?? '').startsWith('ERR_PARSE_ARGS');
  const expected = e instanceof UsageError || e instanceof InputError || parseError;
  console.error(`eval: ${e.message}`);
  if (!expected && process.env.DEBUG) console.error(e.stack);
  process.exit(expected ? 2 : 1);
});
