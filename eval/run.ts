// A benchmark run, in one process or as the coordinator of a queue: items not yet in the results
// file are answered (or queued), each result is appended as it arrives, and the summary is written
// once every selected item has a result. A progress bar (items/s, ETA) goes to stderr.

import { resolve } from 'node:path';
import { SingleBar } from 'cli-progress';
import { loadModel, type LoadedModel } from '../src/index.js';
import { answerItem } from './answer.js';
import { coordinate } from './queue.js';
import { openRun, runSettings, writeSummary, type Summary } from './results.js';
import { loadItems, type TaskSettings } from './tasks.js';

export interface RunOptions extends TaskSettings {
  task: string;
  data: string;
  /** checkpoint folder (single-process runs) */
  model?: string;
  /** an already loaded model instead (several tasks in one process); it is not disposed */
  loaded?: LoadedModel;
  out: string;
  /** redis://HOST:PORT: queue the items for eval:worker processes instead of answering them here */
  queue?: string;
}

function progressBar(task: string, total: number, start: number) {
  const bar = new SingleBar({
    format: `${task} [{bar}] {value}/{total} | {rate} items/s | ETA {eta_formatted}{workers}`,
    etaBuffer: 20,
    progressCalculationRelative: true,
    noTTYOutput: true,
    notTTYSchedule: 5000,
    hideCursor: true,
  });
  const t0 = performance.now();
  bar.start(total, start, { rate: '-', workers: '' });
  return {
    update(done: number, workers?: number) {
      const rate = (done - start) / ((performance.now() - t0) / 1000);
      bar.update(done, { rate: rate > 0 ? rate.toFixed(rate < 1 ? 3 : 2) : '-', workers: workers === undefined ? '' : ` | ${workers} workers` });
    },
    stop: () => bar.stop(),
  };
}

/** Runs (or resumes) a task and returns its summary. */
export async function runTask(o: RunOptions): Promise<Summary> {
  const dataDir = resolve(o.data);
  // every dataset file is read and checked before any model work
  const items = loadItems(o.task, dataDir, o);
  const files = openRun(o.out, o.task, o);
  const todo = items.filter((it) => !files.results.has(it.key));
  const start = items.length - todo.length;
  if (start > 0) console.error(`${o.task}: resuming, ${start} of ${items.length} items already answered in ${files.results.path}`);
  if (todo.length) {
    const bar = progressBar(o.task, items.length, start);
    try {
      if (o.queue) {
        await coordinate({
          url: o.queue,
          task: o.task,
          dataDir,
          settings: runSettings(o.task, o),
          items,
          results: files.results,
          onProgress: (done, workers) => bar.update(done, workers),
        });
      } else {
        if (!o.model && !o.loaded) throw new Error('--model DIR is needed (or --queue URL to have eval:worker processes answer)');
        const m = o.loaded ?? (await loadModel(o.model!));
        try {
          let done = start;
          for (const item of todo) {
            files.results.add(await answerItem(m, item, dataDir));
            bar.update(++done);
          }
        } finally {
          if (!o.loaded) m.dispose();
        }
      }
    } finally {
      bar.stop();
    }
  }
  return writeSummary(files, o.task, items, o);
}
