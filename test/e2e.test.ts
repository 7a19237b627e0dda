// End to end: `run.ts` as a user runs it (a child process through tsx) on a freshly seeded tiny
// checkpoint prints exactly the answer of the PyTorch reference (test/reference/make_dumps.py) for
// the same inputs: one image, two images, the video. The reference's greedy ids are decoded in
// Python with sentencepiece and InternVL's rules (special tokens skipped, clean-up, split on
// <|im_end|>, strip), independently of the engine's tokenizer. Also: user errors exit with 2 and a
// message (no stack trace), and --demo runs on a fresh machine.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeCheckpoint } from '../src/weights/synthetic.js';
import { freshSeed, SHARED } from './util.js';

const ROOT = join(__dirname, '..');
const ASSETS = join(SHARED, 'assets');
const IMAGE1 = join(ASSETS, 'example_image1.jpg');
const IMAGE2 = join(ASSETS, 'example_image2.jpg');
const VIDEO = join(ASSETS, 'example_video.mp4');
const MAX_NEW = 24;
// make_dumps.py's questions, system message (InternVL's default on both sides), max tiles and frames
const CASES = {
  image: { question: 'Please describe the image in detail.', args: ['--image', IMAGE1, '--max-tiles', '4'] },
  two_images: { question: 'What are the similarities and differences between these two images?', args: ['--image', IMAGE1, '--image', IMAGE2, '--max-tiles', '4'] },
  video: { question: 'What is happening in this video?', args: ['--video', VIDEO, '--frames', '8'] },
} as const;
type Case = keyof typeof CASES;

const tmp = mkdtempSync(join(tmpdir(), 'e2e-test-'));
const model = join(tmp, 'tiny');
const seed = freshSeed();
let expected: Record<Case, { text: string; ids: number[] }>;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(args: string[], timeout = 120_000): Promise<Run> {
  return new Promise((resolve) => {
    const env = { ...process.env };
    delete env.PVC_DEBUG;
    execFile(process.execPath, ['--import', 'tsx', 'run.ts', ...args], { cwd: ROOT, env, timeout, maxBuffer: 1 << 24 }, (err, stdout, stderr) => {
      const code = err ? ((err as { code?: number }).code ?? null) : 0;
      resolve({ code: typeof code === 'number' ? code : null, stdout, stderr });
    });
  });
}

function python(args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile('/usr/bin/python3', args, { cwd: ROOT, maxBuffer: 1 << 24, timeout: 300_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`python3 ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
    if (input !== undefined) child.stdin!.end(input);
  });
}

// The reference answer text from generate.ids: HF's slow-tokenizer decode with skip_special_tokens
// (drop the special ids, sentencepiece-decode the rest, clean_up_tokenization), then InternVL's
// split on <|im_end|> and strip().
const DECODE = `
import json, sys
sys.path.insert(0, 'test/reference')
import sentencepiece as spm
from safetensors_io import load_file
model, dumps, cases = sys.argv[1], sys.argv[2], sys.argv[3].split(',')
sp = spm.SentencePieceProcessor(model_file=model + '/tokenizer.model')
cfg = json.load(open(model + '/tokenizer_config.json'))
special = {int(i) for i, t in cfg['added_tokens_decoder'].items() if t.get('special')}
def clean_up(t):
    for a, b in [(' .', '.'), (' ?', '?'), (' !', '!'), (' ,', ','), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")]:
        t = t.replace(a, b)
    return t
out = {}
for case in cases:
    ids = load_file(dumps + '/' + case + '.safetensors', ['generate.ids'])[0]['generate.ids'].tolist()
    text = clean_up(sp.decode([i for i in ids if i not in special]))
    out[case] = {'text': text.split('<|im_end|>')[0].strip(), 'ids': ids}
print(json.dumps(out))
`;

beforeAll(async () => {
  await writeCheckpoint(model, 'tiny', { seed });
  const dumps = join(tmp, 'dumps');
  const cases = Object.keys(CASES).join(',');
  await python(['test/reference/make_dumps.py', '--model', model, '--out', dumps, '--cases', cases, '--max-new-tokens', String(MAX_NEW), '--max-tiles', '4', '--frames', '8', '--logits-last', '1']);
  expected = JSON.parse(await python(['-', model, dumps, cases], DECODE));
}, 300_000);

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe(`run.ts prints the PyTorch reference's greedy answer (tiny checkpoint seed ${seed})`, () => {
  for (const name of Object.keys(CASES) as Case[]) {
    it(name, async () => {
      const c = CASES[name];
      const r = await run(['--model', model, ...c.args, '--prompt', c.question, '--max-new-tokens', String(MAX_NEW)]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe(`${expected[name].text}\n`);
      const stopped = [92542, 2].includes(expected[name].ids.at(-1)!);
      expect(r.stderr).toMatch(new RegExp(`prompt tokens, ${expected[name].ids.length} new \\(${stopped ? 'stop-token' : 'max-new-tokens'}\\)`));
      // a decode rate only when there was more than the first token (some seeds stop at once)
      if (expected[name].ids.length > 1) expect(r.stderr).toMatch(/vision .* \| prefill [\d.]+ tok\/s \| first token .* \| decode [\d.]+ tok\/s/);
      else expect(r.stderr).toMatch(/vision .* \| prefill [\d.]+ tok\/s \| first token [\d.]+ m?s\n/);
      expect(r.stderr).toMatch(/loading weights: 0\.0\d\/0\.0\d GB [\d.]+ GB\/s/);
    }, 120_000);
  }
});

describe('run.ts user errors: exit 2, one clear message, no stack trace', () => {
  const cases: [string, string[], RegExp][] = [
    ['unknown flag', ['--bogus'], /Unknown option '--bogus'/],
    ['flag without its value', ['--image'], /--image/],
    ['bad number', ['--max-new-tokens', 'ten', '--image', IMAGE1], /--max-new-tokens needs an integer >= 1, got 'ten'/],
    ['out-of-range sampling value', ['--temperature', '0.7', '--top-p', '2', '--image', IMAGE1], /top-p must be in \(0, 1\], got 2/],
    ['top-p without sampling', ['--top-p', '0.9', '--image', IMAGE1], /only apply when sampling/],
    ['image and video', ['--image', IMAGE1, '--video', VIDEO], /--image or --video, not both/],
    ['no input', [], /give --prompt/],
    ['missing model', ['--model', '/nonexistent/model', '--image', IMAGE1], /\/nonexistent\/model is not a complete checkpoint directory/],
    ['missing image', ['--model', model, '--image', join(tmp, 'nope.jpg')], /cannot read image .*nope\.jpg: no such file/],
    ['not an image', ['--model', model, '--image', join(ROOT, 'package.json')], /cannot read image .*package\.json: unrecognised image format/],
    ['missing video', ['--model', model, '--video', join(tmp, 'nope.mp4')], /cannot read video .*nope\.mp4: no such file/],
  ];
  for (const [what, args, re] of cases) {
    it(what, async () => {
      const r = await run(args);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(re);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      expect(r.stdout).toBe('');
    }, 60_000);
  }

  it('an image whose header is cut short (truncated JPEG), before the weights load', async () => {
    const bad = join(tmp, 'truncated.jpg');
    writeFileSync(bad, Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 16, 0x4a, 0x46, 0x49, 0x46, 0, 1]));
    const r = await run(['--model', model, '--image', bad]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/cannot read image .*truncated\.jpg: jpeg/);
    expect(r.stderr).not.toMatch(/loading weights/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  }, 120_000);

  it('--help prints the usage and exits 0', async () => {
    const r = await run(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/--repetition-penalty R/);
  }, 60_000);
});

describe('the README main job', () => {
  it('--demo answers from a tiny random-weight model and says so', async () => {
    const r = await run(['--demo', '--image', IMAGE1, '--max-new-tokens', '4']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/RANDOM weights/);
    expect(r.stderr).toMatch(/prompt tokens, \d+ new/);
  }, 120_000);
});
