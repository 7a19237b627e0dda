// End-to-end runs on the tiny checkpoint over the generated datasets:
// - every task in one process: results have each selected item once, and the summary's score
//   (MVBench: per subtask too) equals the official Python metric over the same results;
// - a rerun resumes an interrupted run (a half-written last line) without redoing or
//   double-counting, and refuses to mix settings;
// - `--queue` on a Redis started here (Debian's redis-server, free loopback port), three
//   `eval:worker` processes, one killed mid-item: each item is answered exactly once, the killed
//   worker's item by another worker, and the summary equals the single-process run's.

import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ResultLine } from '../../eval/answer.js';
import type { Summary } from '../../eval/results.js';
import { runTask } from '../../eval/run.js';
import { TASKS } from '../../eval/tasks.js';
import { loadModel, type LoadedModel } from '../../src/index.js';
import { writeCheckpoint } from '../../src/weights/synthetic.js';
import { freshSeed } from '../util.js';
import { DATA_FOLDER, makeDatasets } from './datasets.js';
import { official } from './official.js';

// a tiny random-weight checkpoint written here (its answers are noise; the pipeline is what is tested)
const MODEL = mkdtempSync(join(tmpdir(), 'eval-tiny-'));
const REPO = join(import.meta.dirname, '../..');
const MAX_NEW = 4;
const QUEUE_ITEMS = 5;
// MVBench subtasks filled for the run: an mp4 with start/end, a GIF, a frame folder with start/end
const MV_SUBTASKS = ['action_sequence.json', 'fine_grained_action.json', 'episodic_reasoning.json'];

let root: string;
let m: LoadedModel;
const singleRuns: Record<string, { summary: Summary; out: string }> = {};
const children: ChildProcess[] = [];

const readLines = (file: string): ResultLine[] =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as ResultLine);

function start(args: string[]): { child: ChildProcess; out: () => string; err: () => string; exit: Promise<number | null> } {
  // node itself (not npx/tsx launchers), so that a signal reaches the process doing the work
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  return { child, out: () => out, err: () => err, exit };
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

async function until(cond: () => boolean, what: string, ms = 120_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  await writeCheckpoint(MODEL, 'tiny', { seed: freshSeed() });
  [root, m] = await Promise.all([makeDatasets(QUEUE_ITEMS, 1, MV_SUBTASKS), loadModel(MODEL)]);
}, 300_000);

afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  m?.dispose();
  for (const dir of [MODEL, root]) if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('eval runs on the tiny checkpoint', () => {
  it('every task in one process: each item once, summary = the official metric on the results', async () => {
    const tasks = Object.keys(TASKS);
    for (const task of tasks) {
      const out = mkdtempSync(join(tmpdir(), `eval-run-${task}-`));
      const limit = task === 'chartqa-test-augmented' ? QUEUE_ITEMS : 1;
      const summary = await runTask({ task, data: join(root, DATA_FOLDER[task]), loaded: m, out, limit, maxNewTokens: MAX_NEW });
      singleRuns[task] = { summary, out };
    }
    const cases: Record<string, { metric: string; entries: object[] }> = {};
    for (const task of tasks) {
      const lines = readLines(join(singleRuns[task].out, `${task}.jsonl`));
      expect(new Set(lines.map((l) => l.key)).size).toBe(lines.length);
      expect(lines.length).toBe(singleRuns[task].summary.counts.scored);
      for (const l of lines) expect(l.timings.newTokens).toBeLessThanOrEqual(MAX_NEW);
      cases[task] = { metric: TASKS[task].metric, entries: lines.map((l) => ({ answer: l.answer, annotation: l.annotation, subtask: l.subtask })) };
    }
    const want = await official<Record<string, { score: number; subtasks: Record<string, number> | null }>>({ op: 'scores', cases });
    for (const task of tasks) {
      expect(singleRuns[task].summary.score, task).toBe(want[task].score);
      expect(singleRuns[task].summary.models).toEqual([MODEL]);
    }
    const mv = singleRuns.mvbench.summary;
    expect(mv.subtasks).toEqual(want.mvbench.subtasks);
    expect(Object.keys(mv.subtasks!)).toEqual(['Action Sequence', 'Fine-grained Action', 'Episodic Reasoning']);
    // the 16 frame placeholders of each question
    const mvLines = readLines(join(singleRuns.mvbench.out, 'mvbench.jsonl'));
    expect(mvLines.every((l) => l.question.split('<image>').length === 17)).toBe(true);
    // the prompt as the model got it: the chat template around the question, 16 frames of image tokens
    const rows = m.model.config.numImageToken;
    for (const l of mvLines) {
      expect(l.prompt).toContain(`<|im_start|>user\nFrame1:<img><IMG_CONTEXT*${rows}></img>\nFrame2:`);
      expect(l.prompt.match(/<IMG_CONTEXT\*/g)!.length).toBe(16);
      expect(l.prompt.endsWith('Only give the best option.<|im_end|><|im_start|>assistant\n')).toBe(true);
    }
  });

  it('a rerun resumes an interrupted run without redoing or double-counting, and refuses other settings', async () => {
    const out = mkdtempSync(join(tmpdir(), 'eval-resume-'));
    const opts = { task: 'ai2d-test', data: join(root, DATA_FOLDER['ai2d-test']), loaded: m, out, maxNewTokens: MAX_NEW };
    await runTask({ ...opts, limit: 1 });
    const file = join(out, 'ai2d-test.jsonl');
    const before = readFileSync(file, 'utf8');
    appendFileSync(file, '{"key":"1","index":1,"ques'); // a write cut short by a crash
    const summary = await runTask({ ...opts, limit: 3 });
    const after = readFileSync(file, 'utf8');
    expect(after.startsWith(before)).toBe(true);
    expect(readLines(file).map((l) => l.key)).toEqual(['0', '1', '2']);
    expect(summary.counts).toEqual({ scored: 3, selected: 3, limit: 3 });
    // nothing left to do: no item is answered again
    await runTask({ ...opts, limit: 3, loaded: undefined, model: '/nonexistent' });
    expect(readFileSync(file, 'utf8')).toBe(after);
    await expect(runTask({ ...opts, maxNewTokens: MAX_NEW + 1 })).rejects.toThrow(/made with other settings/);
  });

  it('--queue: three workers, one killed mid-item: every item once, summary identical to the single-process run', async () => {
    const port = await freePort();
    const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', mkdtempSync(join(tmpdir(), 'redis-'))], { stdio: 'ignore' });
    children.push(redis);
    const url = `redis://127.0.0.1:${port}`;
    const out = mkdtempSync(join(tmpdir(), 'eval-queue-'));
    const task = 'chartqa-test-augmented';
    const workers = [0, 1, 2].map(() => start(['eval/worker.ts', '--queue', url, '--model', MODEL, '--lock-seconds', '8']));
    const coordinator = start(['eval/cli.ts', '--task', task, '--data', join(root, DATA_FOLDER[task]), '--queue', url, '--limit', String(QUEUE_ITEMS), '--max-new-tokens', String(MAX_NEW), '--out', out]);
    // kill a worker in the middle of its first item
    await until(() => workers.some((w) => /start \S+/.test(w.err())), 'a worker to start an item');
    const victim = workers.find((w) => /start \S+/.test(w.err()))!;
    const killedJob = /start (\S+)/.exec(victim.err())![1];
    const killedPid = /\[([^\]]+)\] start/.exec(victim.err())![1];
    victim.child.kill('SIGKILL');
    expect(await coordinator.exit).toBe(0);
    for (const w of workers) if (w !== victim) w.child.kill('SIGTERM');
    await Promise.all(workers.map((w) => w.exit));

    const lines = readLines(join(out, `${task}.jsonl`));
    expect(lines.map((l) => l.key).sort()).toEqual(Array.from({ length: QUEUE_ITEMS }, (_, i) => String(i)).sort());
    const redone = lines.find((l) => killedJob.endsWith(`/${l.key}`))!;
    expect(redone.worker).not.toBe(killedPid);
    expect(new Set(lines.map((l) => l.worker)).size).toBeGreaterThanOrEqual(1);
    const single = readLines(join(singleRuns[task].out, `${task}.jsonl`));
    for (const l of lines) expect(l.answer, `item ${l.key}`).toBe(single.find((s) => s.key === l.key)!.answer);
    const summary = JSON.parse(coordinator.out().trim()) as Summary;
    expect(summary).toEqual(singleRuns[task].summary);
    expect(JSON.parse(readFileSync(join(out, `${task}.summary.json`), 'utf8'))).toEqual(singleRuns[task].summary);
    expect(coordinator.err()).toMatch(/items\/s \| ETA \S+ \| \d workers/);
    redis.kill('SIGTERM');
  });
});
