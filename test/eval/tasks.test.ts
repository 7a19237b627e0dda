// The items each task reads against the official dataset classes (evaluate_vqa.py's VQADataset,
// evaluate_mvbench.py's MVBenchDataset) run on the same generated files: the question text with
// its prompt (MVBench: 16 "Frame{i}:<image>" lines, the watch prompt, lettered options), question
// ids, annotations, image files, video files with their start/end bounds, the frames a frame
// folder gives, and each task's max_new_tokens and metric.

import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadItems, TASKS, type EvalItem } from '../../eval/tasks.js';
import { DATA_FOLDER, makeDatasets } from './datasets.js';
import { official } from './official.js';

interface OfficialVqa {
  max_new_tokens: number;
  metric: string;
  items: { question: string; question_id: string | number; annotation: string | string[]; image: string }[];
}

interface OfficialMv {
  question: string;
  answer: string;
  task_type: string;
  video: string | null;
  bound: [number, number] | null;
  frames: string[];
  num_patches_list: number[];
}

const OFFICIAL_NAME: Record<string, string> = {
  'chartqa-test-human': 'chartqa_test_human',
  'chartqa-test-augmented': 'chartqa_test_augmented',
  'docvqa-val': 'docvqa_val',
  'infovqa-val': 'infographicsvqa_val',
  'ai2d-test': 'ai2diagram_test',
  'textvqa-val': 'textvqa_val',
};

let root: string;
let vqa: Record<string, OfficialVqa>;
let mv: OfficialMv[];

beforeAll(async () => {
  root = await makeDatasets(3, 2);
  [vqa, mv] = await Promise.all([
    official<Record<string, OfficialVqa>>({ op: 'vqa_items', root, datasets: Object.values(OFFICIAL_NAME) }),
    official<OfficialMv[]>({ op: 'mvbench_items', root, num_segments: 16 }),
  ]);
});

describe('benchmark items match the official dataset classes', () => {
  for (const [task, name] of Object.entries(OFFICIAL_NAME)) {
    it(task, () => {
      const dataDir = join(root, DATA_FOLDER[task]);
      const items = loadItems(task, dataDir);
      const want = vqa[name];
      const def = TASKS[task];
      expect(def.maxNewTokens).toBe(want.max_new_tokens);
      expect(def.metric).toBe(want.metric);
      expect(items.map((it) => it.question)).toEqual(want.items.map((w) => w.question));
      expect(items.map((it) => it.questionId)).toEqual(want.items.map((w) => w.question_id));
      expect(items.map((it) => resolve(dataDir, it.image!))).toEqual(want.items.map((w) => resolve(root, w.image)));
      if (task === 'textvqa-val') {
        // the VQA score reads the ten answers of the annotation file, keyed by question_id
        const anns = JSON.parse(readFileSync(join(dataDir, 'textvqa_val_annotations.json'), 'utf8')).annotations;
        expect(items.map((it) => it.annotation)).toEqual(want.items.map((w) => anns.find((a: { question_id: unknown }) => a.question_id === w.question_id).answers.map((a: { answer: string }) => a.answer)));
      } else expect(items.map((it) => it.annotation)).toEqual(want.items.map((w) => w.annotation));
    });
  }

  it('mvbench: all 20 subtasks, prompts, options, videos, bounds, GIF videos and frame folders', () => {
    const dataDir = join(root, DATA_FOLDER.mvbench);
    const items: EvalItem[] = loadItems('mvbench', dataDir);
    expect(TASKS.mvbench.maxNewTokens).toBe(1000);
    expect(new Set(items.map((it) => it.subtask)).size).toBe(20);
    expect(items.map((it) => it.subtask)).toEqual(mv.map((w) => w.task_type));
    expect(items.map((it) => it.question)).toEqual(mv.map((w) => w.question));
    expect(items.map((it) => it.annotation)).toEqual(mv.map((w) => w.answer));
    expect(items[0].question.split('\n').slice(0, 17)).toEqual([...Array.from({ length: 16 }, (_, i) => `Frame${i + 1}:<image>`), 'Carefully watch the video and pay attention to the cause and sequence of events, the detail and movement of objects, and the action and pose of persons. Based on your observations, select the best option that accurately addresses the question.']);
    items.forEach((it, i) => {
      const w = mv[i];
      if (it.frameFolder) {
        expect(it.frameFolder.files.map((f) => resolve(dataDir, f))).toEqual(w.frames.map((f) => resolve(root, f)));
        expect(w.num_patches_list.length).toBe(16);
      } else {
        expect(resolve(dataDir, it.video!.path)).toBe(resolve(root, w.video!));
        expect(it.video!.frames).toBe(16);
        expect(w.bound === null ? undefined : w.bound).toEqual(it.video!.start === undefined ? undefined : [it.video!.start, it.video!.end]);
      }
    });
    expect(items.filter((it) => it.frameFolder).length).toBe(2);
    expect(items.filter((it) => it.video?.path.endsWith('.gif')).length).toBe(4);
  });

  it('--limit takes the first items (of each MVBench subtask); settings override max_num, frames and max_new_tokens', () => {
    const chart = loadItems('chartqa-test-human', join(root, DATA_FOLDER['chartqa-test-human']), { limit: 2, maxTiles: 3, maxNewTokens: 7 });
    expect(chart.map((it) => [it.key, it.maxTiles, it.maxNewTokens])).toEqual([['0', 3, 7], ['1', 3, 7]]);
    const mvb = loadItems('mvbench', join(root, DATA_FOLDER.mvbench), { limit: 1, frames: 4 });
    expect(mvb.length).toBe(20);
    expect(mvb[0].question.startsWith('Frame1:<image>\nFrame2:<image>\nFrame3:<image>\nFrame4:<image>\nCarefully')).toBe(true);
  });

  it('bad data fails early with the file and the reason', () => {
    const dir = join(root, DATA_FOLDER['docvqa-val']);
    expect(() => loadItems('nope', dir)).toThrow(/unknown task "nope"; tasks: chartqa-test-human/);
    expect(() => loadItems('chartqa-test-human', join(root, 'missing'))).toThrow(/data folder .* not found/);
    expect(() => loadItems('textvqa-val', dir)).toThrow(/missing .*textvqa_val.jsonl/);
    const lines = readFileSync(join(dir, 'val.jsonl'), 'utf8');
    writeFileSync(join(dir, 'val.jsonl'), lines.replace('doc_1.png', 'gone.png'));
    expect(() => loadItems('docvqa-val', dir)).toThrow(/image "data\/docvqa\/val\/documents\/gone.png" not found/);
    writeFileSync(join(dir, 'val.jsonl'), lines + '{"image": \n');
    expect(() => loadItems('docvqa-val', dir)).toThrow(/val.jsonl line 4 is not valid JSON/);
    writeFileSync(join(dir, 'val.jsonl'), lines);
  });
});
