// A run's files in the output folder:
//   <task>.jsonl         one ResultLine per item, appended as items finish (the resume state)
//   <task>.run.json      the settings the results were made with (a resume must use the same)
//   <task>.summary.json  score, per-subtask scores, counts, settings
// Scores are computed from the results file in the official item order, so a resumed run, a
// single-process run and a queue run give the same summary.

import { appendFileSync, existsSync, mkdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../src/index.js';
import type { ResultLine } from './answer.js';
import { score, type Metric } from './metrics.js';
import { getTask, type EvalItem, type TaskSettings } from './tasks.js';

export class ResultsFile {
  readonly path: string;
  private done = new Map<string, ResultLine>();

  /** Opens (or creates) the file; a line cut short by an interruption is dropped. */
  constructor(path: string) {
    this.path = path;
    if (!existsSync(path)) return;
    const text = readFileSync(path, 'utf8');
    const end = text.lastIndexOf('\n') + 1;
    if (end < text.length) truncateSync(path, Buffer.byteLength(text.slice(0, end)));
    text
      .slice(0, end)
      .split('\n')
      .filter((l) => l.trim() !== '')
      .forEach((l, i) => {
        let line: ResultLine;
        try {
          line = JSON.parse(l) as ResultLine;
        } catch {
          throw new InputError(`${path} line ${i + 1} is not valid JSON; fix or remove it to resume`);
        }
        if (!this.done.has(line.key)) this.done.set(line.key, line);
      });
  }

  has(key: string): boolean {
    return this.done.has(key);
  }

  /** Appends a result unless its item is already there (returns whether it was added). */
  add(line: ResultLine): boolean {
    if (this.done.has(line.key)) return false;
    appendFileSync(this.path, JSON.stringify(line) + '\n');
    this.done.set(line.key, line);
    return true;
  }

  get(key: string): ResultLine | undefined {
    return this.done.get(key);
  }
}

export interface RunFiles {
  results: ResultsFile;
  summaryPath: string;
}

/** The settings a run's results depend on (a resume with other values would mix two runs). */
export function runSettings(taskName: string, s: TaskSettings) {
  const task = getTask(taskName);
  return {
    task: taskName,
    metric: task.metric,
    decoding: 'greedy',
    num_beams: 1,
    max_new_tokens: s.maxNewTokens ?? task.maxNewTokens,
    ...(task.kind === 'vqa' ? { max_num: s.maxTiles ?? task.maxTiles, prompt: task.prompt } : { frames: s.frames ?? task.frames }),
  };
}

/** Opens the output folder for a task, refusing results made with other settings. */
export function openRun(outDir: string, taskName: string, s: TaskSettings): RunFiles {
  mkdirSync(outDir, { recursive: true });
  const runPath = join(outDir, `${taskName}.run.json`);
  const settings = runSettings(taskName, s);
  if (existsSync(runPath)) {
    const before = JSON.parse(readFileSync(runPath, 'utf8'));
    if (JSON.stringify(before) !== JSON.stringify(settings)) {
      throw new InputError(`${outDir} holds ${taskName} results made with other settings (${JSON.stringify(before)}, now ${JSON.stringify(settings)}); use another --out`);
    }
  } else writeFileSync(runPath, JSON.stringify(settings, null, 2) + '\n');
  return { results: new ResultsFile(join(outDir, `${taskName}.jsonl`)), summaryPath: join(outDir, `${taskName}.summary.json`) };
}

export interface Summary {
  task: string;
  metric: Metric;
  score: number;
  /** MVBench: percent per task type (in the official item order, as evaluate_mvbench.py prints them) */
  subtasks?: Record<string, number>;
  counts: { scored: number; selected: number; limit: number | null };
  settings: ReturnType<typeof runSettings>;
  models: string[];
}

/** Scores the selected items (all must be answered) in the official order and writes the summary. */
export function writeSummary(files: RunFiles, taskName: string, items: EvalItem[], s: TaskSettings): Summary {
  const lines = items.map((it) => {
    const line = files.results.get(it.key);
    if (!line) throw new Error(`item ${it.key} has no result yet`);
    return line;
  });
  const task = getTask(taskName);
  const r = score(
    task.metric,
    lines.map((l) => ({ answer: l.answer, annotation: l.annotation, subtask: l.subtask })),
  );
  const summary: Summary = {
    task: taskName,
    metric: task.metric,
    score: r.score,
    ...(r.subtasks ? { subtasks: r.subtasks } : {}),
    counts: { scored: r.count, selected: items.length, limit: s.limit ?? null },
    settings: runSettings(taskName, s),
    models: [...new Set(lines.map((l) => l.model))].sort(),
  };
  writeFileSync(files.summaryPath, JSON.stringify(summary, null, 2) + '\n');
  return summary;
}
