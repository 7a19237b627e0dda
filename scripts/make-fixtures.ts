// Regenerates the committed parity fixtures, test/fixtures/dumps/{preset}/*.safetensors:
//   npm run fixtures
// For each preset of test/fixtures/dumps/fixtures.json: the seeded synthetic checkpoint (into a
// temporary directory, never committed), then the PyTorch reference (test/reference/make_dumps.py,
// Debian's /usr/bin/python3 or $PVC_PYTHON) with fixed arguments. Both are deterministic, so the files
// regenerate bit-identically. Inputs: test/fixtures/dumps/inputs/wide.png (a 2:1 crop, so two tiles
// plus a thumbnail) and the example image/video of /work/shared/assets (or $PVC_ASSETS).

import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeCheckpoint } from '../src/weights/synthetic.js';

const ROOT = join(import.meta.dirname, '..');
const DIR = join(ROOT, 'test/fixtures/dumps');
const PYTHON = process.env.PVC_PYTHON ?? '/usr/bin/python3';
// small on purpose: a short system message, 2 tiles per image at most, only the last prompt row of
// llm.logits ([N, 92553] would dominate), 32 new tokens
const COMMON = ['--max-new-tokens', '32', '--frames', '8', '--max-tiles', '2', '--system', 'You are a helpful assistant.', '--logits-last', '1'];
const RUNS = [
  ['--cases', 'text,image,video', '--image1', join(DIR, 'inputs/wide.png')],
  ['--cases', 'two_images'], // the example images: one tile each at --max-tiles 2
];

const presets = JSON.parse(await readFile(join(DIR, 'fixtures.json'), 'utf8')) as Record<string, { seed: number }>;
const tmp = await mkdtemp(join(tmpdir(), 'pvc-fixtures-'));
try {
  for (const [preset, { seed }] of Object.entries(presets)) {
    const model = join(tmp, preset);
    await writeCheckpoint(model, preset, { seed });
    const out = join(DIR, preset);
    for (const f of await readdir(out).catch(() => [])) if (f.endsWith('.safetensors')) await rm(join(out, f));
    for (const run of RUNS) {
      execFileSync(PYTHON, [join(ROOT, 'test/reference/make_dumps.py'), '--model', model, '--out', out, ...COMMON, ...run], { stdio: 'inherit' });
    }
  }
} finally {
  await rm(tmp, { recursive: true, force: true });
}
