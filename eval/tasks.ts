// The benchmarks of PVC's evaluate.sh, read from the files the InternVL data-preparation guide lays
// out, with evaluate_vqa.py's and evaluate_mvbench.py's prompts, tile counts (--max-num per the
// guide's commands), max_new_tokens and metrics. Items come out in the official order, each with
// everything a worker needs to answer it (paths relative to the dataset folder).

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { InputError } from '../src/index.js';
import { frameIndices } from '../src/preprocess/video.js';
import type { Metric } from './metrics.js';
import { pyRstrip } from './py.js';

export interface EvalItem {
  /** unique within the task: the line number, or "json file#index" for MVBench */
  key: string;
  /** position in the official order (scores are summed in this order) */
  index: number;
  questionId: string | number | null;
  subtask?: string;
  /** the question as the model gets it (prompt appended; MVBench's frame placeholders prepended) */
  question: string;
  /** one image path, relative to the dataset folder */
  image?: string;
  video?: { path: string; frames: number; start?: number; end?: number };
  /** MVBench frame folders: the picked frame files, relative to the dataset folder */
  frameFolder?: { path: string; files: string[] };
  annotation: string | string[];
  maxNewTokens: number;
  /** max_num: dynamic tiles per image */
  maxTiles?: number;
}

export interface TaskSettings {
  /** max_num for image tasks (the guide's value by default) */
  maxTiles?: number;
  /** MVBench frames (num_segments, 16 by default) */
  frames?: number;
  /** overrides the task's max_new_tokens (for quick smoke runs; recorded in the summary) */
  maxNewTokens?: number;
  /** first N items (MVBench: of each subtask) */
  limit?: number;
}

interface VqaTask {
  kind: 'vqa';
  /** ds_collections key in evaluate_vqa.py */
  official: string;
  /** the test jsonl, relative to the dataset folder */
  test: string;
  /** ground truth read by the metric (DocVQA/InfoVQA: ANLS gt file; TextVQA: the ten answers) */
  annotations?: string;
  metric: Metric;
  maxNewTokens: number;
  maxTiles: number;
  prompt: string;
}

interface MvbenchTask {
  kind: 'mvbench';
  metric: Metric;
  maxNewTokens: number;
  frames: number;
}

export type Task = VqaTask | MvbenchTask;

// evaluate_vqa.py evaluate_chat_model: base_prompt for all but AI2D (none) and InfoVQA (its own,
// currently the same text); the prompt follows the question after one space.
const BASE_PROMPT = 'Answer the question using a single word or phrase.';
const INFOVQA_PROMPT = 'Answer the question using a single word or phrase.';

/** Task name -> definition. max_num: 6 (the script's default) unless the guide's command says otherwise. */
export const TASKS: Record<string, Task> = {
  'chartqa-test-human': { kind: 'vqa', official: 'chartqa_test_human', test: 'test_human.jsonl', metric: 'relaxed_accuracy', maxNewTokens: 100, maxTiles: 12, prompt: BASE_PROMPT },
  'chartqa-test-augmented': { kind: 'vqa', official: 'chartqa_test_augmented', test: 'test_augmented.jsonl', metric: 'relaxed_accuracy', maxNewTokens: 100, maxTiles: 12, prompt: BASE_PROMPT },
  'docvqa-val': { kind: 'vqa', official: 'docvqa_val', test: 'val.jsonl', annotations: 'val/val_v1.0.json', metric: 'anls', maxNewTokens: 100, maxTiles: 18, prompt: BASE_PROMPT },
  'infovqa-val': { kind: 'vqa', official: 'infographicsvqa_val', test: 'val.jsonl', annotations: 'infographicsVQA_val_v1.0_withQT.json', metric: 'anls', maxNewTokens: 100, maxTiles: 24, prompt: INFOVQA_PROMPT },
  'ai2d-test': { kind: 'vqa', official: 'ai2diagram_test', test: 'test_vlmevalkit.jsonl', metric: 'accuracy', maxNewTokens: 10, maxTiles: 6, prompt: '' },
  'textvqa-val': { kind: 'vqa', official: 'textvqa_val', test: 'textvqa_val.jsonl', annotations: 'textvqa_val_annotations.json', metric: 'vqa_score', maxNewTokens: 10, maxTiles: 6, prompt: BASE_PROMPT },
  mvbench: { kind: 'mvbench', metric: 'mvbench', maxNewTokens: 1000, frames: 16 },
};

/** evaluate_mvbench.py data_list: task type -> (json file, video folder under the dataset, reader, has start/end). */
export const MVBENCH_SUBTASKS: [string, string, string, 'video' | 'frame', boolean][] = [
  ['Action Sequence', 'action_sequence.json', 'video/star/Charades_v1_480', 'video', true],
  ['Action Prediction', 'action_prediction.json', 'video/star/Charades_v1_480', 'video', true],
  ['Action Antonym', 'action_antonym.json', 'video/ssv2_video', 'video', false],
  ['Fine-grained Action', 'fine_grained_action.json', 'video/Moments_in_Time_Raw/videos', 'video', false],
  ['Unexpected Action', 'unexpected_action.json', 'video/FunQA_test/test', 'video', false],
  ['Object Existence', 'object_existence.json', 'video/clevrer/video_validation', 'video', false],
  ['Object Interaction', 'object_interaction.json', 'video/star/Charades_v1_480', 'video', true],
  ['Object Shuffle', 'object_shuffle.json', 'video/perception/videos', 'video', false],
  ['Moving Direction', 'moving_direction.json', 'video/clevrer/video_validation', 'video', false],
  ['Action Localization', 'action_localization.json', 'video/sta/sta_video', 'video', true],
  ['Scene Transition', 'scene_transition.json', 'video/scene_qa/video', 'video', false],
  ['Action Count', 'action_count.json', 'video/perception/videos', 'video', false],
  ['Moving Count', 'moving_count.json', 'video/clevrer/video_validation', 'video', false],
  ['Moving Attribute', 'moving_attribute.json', 'video/clevrer/video_validation', 'video', false],
  ['State Change', 'state_change.json', 'video/perception/videos', 'video', false],
  ['Fine-grained Pose', 'fine_grained_pose.json', 'video/nturgbd', 'video', false],
  ['Character Order', 'character_order.json', 'video/perception/videos', 'video', false],
  ['Egocentric Navigation', 'egocentric_navigation.json', 'video/vlnqa', 'video', false],
  ['Episodic Reasoning', 'episodic_reasoning.json', 'video/tvqa/frames_fps3_hq', 'frame', true],
  ['Counterfactual Inference', 'counterfactual_inference.json', 'video/clevrer/video_validation', 'video', false],
];

// evaluate_mvbench.py evaluate_chat_model
const MVBENCH_PROMPT =
  'Carefully watch the video and pay attention to the cause and sequence of events, the detail and movement of objects, and the action and pose of persons. Based on your observations, select the best option that accurately addresses the question.\n';
const MVBENCH_QUESTION_PROMPT = '\nOnly give the best option.';
/** read_frame: frame folders are sampled at 3 fps, files numbered from 1 */
const FRAME_FOLDER_FPS = 3;

export function getTask(name: string): Task {
  const task = TASKS[name];
  if (!task) throw new InputError(`unknown task "${name}"; tasks: ${Object.keys(TASKS).join(', ')}`);
  return task;
}

function readJson(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new InputError(`cannot read ${file}: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new InputError(`${file} is not valid JSON: ${(e as Error).message}`);
  }
}

function readJsonLines(file: string): Record<string, unknown>[] {
  if (!existsSync(file)) throw new InputError(`missing ${file} (see the README's evaluation section for the data layout)`);
  return readFileSync(file, 'utf8')
    .split('\n')
    .map((line, i) => [line, i] as const)
    .filter(([line]) => line.trim() !== '')
    .map(([line, i]) => {
      try {
        return JSON.parse(line) as Record<string, unknown>;
      } catch (e) {
        throw new InputError(`${file} line ${i + 1} is not valid JSON: ${(e as Error).message}`);
      }
    });
}

/**
 * The official jsonl files name images relative to InternVL's internvl_chat folder
 * ("data/chartqa/..."). With DIR = that folder's data/chartqa, the image is found relative to DIR,
 * to the folder two levels up, or with the "data/<name>/" prefix dropped; the result is relative to DIR.
 */
function resolveImage(dataDir: string, image: string): string {
  const tried = isAbsolute(image) ? [image] : [join(dataDir, image), join(dataDir, '../..', image), join(dataDir, image.split('/').slice(2).join('/'))];
  const found = tried.find((p) => existsSync(p));
  if (!found) throw new InputError(`image "${image}" not found; tried ${tried.join(', ')}`);
  return relative(dataDir, found);
}

function field<T>(row: Record<string, unknown>, name: string, file: string, index: number): T {
  if (!(name in row)) throw new InputError(`${file} line ${index + 1} has no "${name}" field`);
  return row[name] as T;
}

/** question_id -> answers from the ground truth the metric reads. */
function readAnnotations(task: VqaTask, file: string): Map<string, string[]> {
  const json = readJson(file) as { data?: { questionId: unknown; answers: string[] }[]; annotations?: { question_id: unknown; answers: { answer: string }[] }[] };
  const map = new Map<string, string[]>();
  if (task.metric === 'anls') {
    if (!Array.isArray(json.data)) throw new InputError(`${file} has no "data" list (the DocVQA/InfoVQA ground-truth format)`);
    for (const d of json.data) map.set(String(Number(d.questionId)), d.answers);
  } else {
    if (!Array.isArray(json.annotations)) throw new InputError(`${file} has no "annotations" list (the VQA annotation format)`);
    for (const a of json.annotations) map.set(String(a.question_id), a.answers.map((x) => x.answer));
  }
  return map;
}

function vqaItems(task: VqaTask, dataDir: string, s: TaskSettings): EvalItem[] {
  const file = join(dataDir, task.test);
  let rows = readJsonLines(file);
  if (s.limit !== undefined) rows = rows.slice(0, s.limit);
  const gt = task.annotations ? readAnnotations(task, join(dataDir, task.annotations)) : null;
  return rows.map((row, index) => {
    const question = field<string>(row, 'question', file, index);
    const questionId = field<string | number>(row, 'question_id', file, index);
    let annotation = row.answer as string | string[];
    if (gt) {
      // ANLS keys by int(questionId); the VQA annotations by question_id as it is
      const id = task.metric === 'anls' ? String(Number(questionId)) : String(questionId);
      const answers = gt.get(id);
      if (!answers) throw new InputError(`question ${questionId} of ${file} is not in ${task.annotations}`);
      annotation = answers;
    }
    return {
      key: String(index),
      index,
      questionId,
      question: task.prompt.length ? `${question} ${task.prompt}` : question,
      image: resolveImage(dataDir, field<string>(row, 'image', file, index)),
      annotation,
      maxNewTokens: s.maxNewTokens ?? task.maxNewTokens,
      maxTiles: s.maxTiles ?? task.maxTiles,
    };
  });
}

interface MvbenchRow {
  video: string;
  question: string;
  candidates: string[];
  answer: string;
  start?: number;
  end?: number;
}

/** qa_template: the question with lettered options, and the annotation "(letter) answer". */
function qaTemplate(d: MvbenchRow): { question: string; answer: string } {
  let question = `Question: ${d.question}\nOptions:\n`;
  let answerIdx = -1;
  d.candidates.forEach((c, i) => {
    question += `(${String.fromCharCode(65 + i)}) ${c}\n`;
    if (c === d.answer) answerIdx = i;
  });
  return { question: pyRstrip(question), answer: `(${String.fromCharCode(65 + answerIdx)}) ${d.answer}` };
}

/** read_frame's picks: get_index over a folder of `len(listdir)` frames at 3 fps, numbered from 1. */
function frameFolderFiles(folder: string, frames: number, bound?: [number, number]): string[] {
  if (!existsSync(folder)) throw new InputError(`frame folder ${folder} not found`);
  const count = readdirSync(folder).length;
  // get_index's max_frame is the entry count here (frameIndices takes max_frame + 1)
  return frameIndices(count + 1, FRAME_FOLDER_FPS, frames, bound, 1).map((i) => `${String(i).padStart(5, '0')}.jpg`);
}

function mvbenchItems(task: MvbenchTask, dataDir: string, s: TaskSettings): EvalItem[] {
  const frames = s.frames ?? task.frames;
  const items: EvalItem[] = [];
  for (const [subtask, json, folder, reader, hasBound] of MVBENCH_SUBTASKS) {
    const file = join(dataDir, 'json', json);
    if (!existsSync(file)) throw new InputError(`missing ${file} (see the README's evaluation section for the data layout)`);
    let rows = readJson(file) as MvbenchRow[];
    if (!Array.isArray(rows)) throw new InputError(`${file} is not a list of questions`);
    if (s.limit !== undefined) rows = rows.slice(0, s.limit);
    rows.forEach((d, i) => {
      const bound: [number, number] | undefined = hasBound ? [d.start!, d.end!] : undefined;
      if (bound && !bound.every(Number.isFinite)) throw new InputError(`${file} item ${i} needs numeric "start" and "end"`);
      const path = join(folder, d.video);
      const { question, answer } = qaTemplate(d);
      const placeholders = Array.from({ length: frames }, (_, k) => `Frame${k + 1}:<image>`).join('\n');
      const item: EvalItem = {
        key: `${json}#${i}`,
        index: items.length,
        questionId: `${json}#${i}`,
        subtask,
        question: `${placeholders}\n${MVBENCH_PROMPT}\n${question}${MVBENCH_QUESTION_PROMPT}`,
        annotation: answer,
        maxNewTokens: s.maxNewTokens ?? task.maxNewTokens,
      };
      if (reader === 'frame') {
        const files = frameFolderFiles(join(dataDir, path), frames, bound);
        item.frameFolder = { path, files: files.map((f) => join(path, f)) };
      } else {
        if (!existsSync(join(dataDir, path))) throw new InputError(`video ${join(dataDir, path)} not found (${file} item ${i})`);
        item.video = { path, frames, ...(bound ? { start: bound[0], end: bound[1] } : {}) };
      }
      items.push(item);
    });
  }
  return items;
}

/** The task's items in the official order; every file is checked before any model work. */
export function loadItems(taskName: string, dataDir: string, settings: TaskSettings = {}): EvalItem[] {
  const task = getTask(taskName);
  const dir = resolve(dataDir);
  if (!existsSync(dir)) throw new InputError(`data folder ${dir} not found`);
  return task.kind === 'vqa' ? vqaItems(task, dir, settings) : mvbenchItems(task, dir, settings);
}
