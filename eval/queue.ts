// Spreading a run over machines with BullMQ (a job queue on Redis). The coordinator adds one job
// per unanswered item (job id = run id + item key, so adding twice is a no-op); workers on any
// machine load the model once and take jobs one at a time. A worker that dies mid-item stops
// renewing its job's lock, and BullMQ's stalled-job check hands the job to another worker. The
// coordinator alone writes the results file: it collects completed jobs' return values, appends
// each item once, then removes the job (a coordinator restarted in between finds the job again
// and skips the line it already has).

import { createHash } from 'node:crypto';
import { Queue, Worker, type ConnectionOptions, type Job } from 'bullmq';
import { answerItem, type ResultLine } from './answer.js';
import type { ResultsFile } from './results.js';
import type { EvalItem } from './tasks.js';
import { InputError, type LoadedModel } from '../src/index.js';

export const QUEUE_NAME = 'pvc-eval';

export interface JobData {
  task: string;
  /** the coordinator's dataset folder (a worker may override it with --data) */
  dataDir: string;
  item: EvalItem;
}

/** redis://[user:password@]host:port[/db] -> BullMQ connection options (ioredis reads the URL). */
function connectionFrom(url: string): ConnectionOptions {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new InputError(`--queue needs a URL like redis://HOST:PORT, got "${url}"`);
  }
  if (u.protocol !== 'redis:') throw new InputError(`--queue needs a redis:// URL, got "${url}"`);
  // BullMQ's blocking commands need ioredis to retry without a per-request limit
  return { url, maxRetriesPerRequest: null };
}

/** A short id for (task, dataset, settings): jobs of different runs never share ids. */
function runId(task: string, dataDir: string, settings: object): string {
  return createHash('sha256').update(JSON.stringify([task, dataDir, settings])).digest('hex').slice(0, 12);
}

export interface CoordinatorOptions {
  url: string;
  task: string;
  dataDir: string;
  settings: object;
  items: EvalItem[];
  results: ResultsFile;
  /** called after each poll: items done, workers connected */
  onProgress: (done: number, workers: number) => void;
  pollMs?: number;
}

const ATTEMPTS = 3;

/** Queues the unanswered items and collects results until every item has one. */
export async function coordinate(o: CoordinatorOptions): Promise<void> {
  const queue = new Queue<JobData, ResultLine>(QUEUE_NAME, { connection: connectionFrom(o.url) });
  const prefix = `${o.task}-${runId(o.task, o.dataDir, o.settings)}/`;
  try {
    const pending = new Map(o.items.filter((it) => !o.results.has(it.key)).map((it) => [prefix + it.key, it]));
    // a failed job of an earlier attempt at this run gets another chance
    for (const job of await queue.getJobs(['failed'])) if (job.id && pending.has(job.id)) await job.retry();
    await queue.addBulk(
      [...pending].map(([jobId, item]) => ({
        name: o.task,
        data: { task: o.task, dataDir: o.dataDir, item },
        opts: { jobId, attempts: ATTEMPTS, removeOnComplete: false, removeOnFail: false },
      })),
    );
    while (pending.size) {
      for (const job of await queue.getJobs(['completed'])) {
        if (!job.id || !job.id.startsWith(prefix)) continue;
        if (pending.has(job.id)) o.results.add(job.returnvalue);
        pending.delete(job.id);
        await job.remove();
      }
      const failed = (await queue.getJobs(['failed'])).find((j: Job) => j.id && pending.has(j.id));
      if (failed) throw new Error(`item ${failed.data.item.key} failed ${failed.attemptsMade} times: ${failed.failedReason}`);
      o.onProgress(o.items.length - pending.size, (await queue.getWorkers()).length);
      if (pending.size) await new Promise((r) => setTimeout(r, o.pollMs ?? 500));
    }
  } finally {
    await queue.close();
  }
}

export interface WorkerOptions {
  url: string;
  model: LoadedModel;
  /** overrides the dataset folder the jobs name (when this machine has the data elsewhere) */
  dataDir?: string;
  /** how long a job stays owned without a lock renewal before it counts as stalled */
  lockMs?: number;
  log?: (line: string) => void;
}

/** Takes jobs one at a time until closed. */
export function startWorker(o: WorkerOptions): Worker<JobData, ResultLine> {
  const lockMs = o.lockMs ?? 60_000;
  return new Worker<JobData, ResultLine>(
    QUEUE_NAME,
    async (job) => {
      o.log?.(`start ${job.id}`);
      const line = await answerItem(o.model, job.data.item, o.dataDir ?? job.data.dataDir);
      o.log?.(`done ${job.id} (${(line.timings.totalMs / 1000).toFixed(1)} s)`);
      return line;
    },
    // the lock is renewed every lockMs / 2 while an item runs; a dead worker's job is picked up
    // again by the stalled-job check (every lockMs / 2) once its lock expires
    { connection: connectionFrom(o.url), concurrency: 1, lockDuration: lockMs, stalledInterval: lockMs / 2, maxStalledCount: ATTEMPTS },
  );
}
