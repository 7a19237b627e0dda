// Generates the tiny benchmark datasets (test/eval/make_datasets.py) into a fresh folder.

import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

/** Makes ROOT/data/<dataset> for every benchmark and returns ROOT (InternVL's internvl_chat folder);
 *  `mvbenchOnly` names the MVBench json files to fill (the others hold no questions). */
export async function makeDatasets(vqaItems: number, mvbenchItems: number, mvbenchOnly?: string[]): Promise<string> {
  const root = mkdtempSync(join(tmpdir(), 'eval-data-'));
  const args = [join(import.meta.dirname, 'make_datasets.py'), root, String(vqaItems), String(mvbenchItems), ...(mvbenchOnly ? [mvbenchOnly.join(',')] : [])];
  await promisify(execFile)('/usr/bin/python3', args);
  return root;
}

/** The --data folder of each task under ROOT. */
export const DATA_FOLDER: Record<string, string> = {
  'chartqa-test-human': 'data/chartqa',
  'chartqa-test-augmented': 'data/chartqa',
  'docvqa-val': 'data/docvqa',
  'infovqa-val': 'data/infographicsvqa',
  'ai2d-test': 'data/ai2diagram',
  'textvqa-val': 'data/textvqa',
  mvbench: 'data/MVBench',
};
