// Fuzzing of the input parsers (issue 10 item 22), beside the safetensors fuzz: mutated JPEG / PNG /
// GIF / WebP / BMP files decoded in a child process with a bounded V8 heap, an RSS bound and a
// per-case time bound (test/fuzz/image-worker.ts), and mutated config.json / tokenizer_config.json /
// added_tokens.json through their loaders. Each case must give a result or a clear error: an Error
// whose message names the file or format, never a TypeError from deep inside a parser, a crash or a
// hang. The seed is printed; TEST_SEED=... reproduces a run.

import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SentencePiece, Tokenizer } from '../src/text/tokenizer.js';
import { ConfigError, loadConfig, parseConfig } from '../src/weights/config.js';
import { freshSeed, rng } from './util.js';

const seed = freshSeed();
const dir = mkdtempSync(join(tmpdir(), 'pvc-fuzz-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const TINY = '/work/ckpt/tiny';

const IMAGE_CASES = 2100;
const HEAP_MB = 256; // V8 heap of the worker: a JS-side allocation bomb dies here
const RSS_MB = 1536; // native memory (sharp) checked after every case
const CASE_SECONDS = 30; // the machine is shared; a hang shows as no progress for this long

describe(`fuzz: mutated images (seed ${seed})`, () => {
  it(`${IMAGE_CASES} mutated JPEG/PNG/GIF/WebP/BMP files decode or fail clearly, within memory and time bounds`, { timeout: 300_000 }, async () => {
    const seeds = join(dir, 'seeds');
    execFileSync('mkdir', ['-p', seeds]);
    execFileSync('/usr/bin/python3', [join(import.meta.dirname, 'pil_ref.py')], { input: JSON.stringify({ op: 'fuzz-seeds', dir: seeds, seed: seed % 2 ** 31 }) });
    const worker = join(import.meta.dirname, 'fuzz/image-worker.ts');
    const child = spawn(process.execPath, [`--max-old-space-size=${HEAP_MB}`, '--import', 'tsx', worker, seeds, String(seed), String(IMAGE_CASES), String(RSS_MB)], {
      stdio: ['ignore', 'pipe', 'pipe'],
      // Not vitest's IPC channel: a node child that inherits NODE_CHANNEL_FD takes it over.
      env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('NODE_CHANNEL'))),
    });
    let out = '';
    let err = '';
    let lastStart = '';
    let lastProgress = Date.now();
    let hung = false;
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      lastProgress = Date.now();
      const starts = out.slice(-4096).match(/start \d+ \S+/g);
      if (starts) lastStart = starts.at(-1)!;
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const watchdog = setInterval(() => {
      if (Date.now() - lastProgress > CASE_SECONDS * 1000) {
        hung = true;
        child.kill('SIGKILL');
      }
    }, 1000);
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    clearInterval(watchdog);
    const where = `${lastStart} (seed ${seed})`;
    expect(hung, `no progress for ${CASE_SECONDS} s at ${where}`).toBe(false);
    const verdict = out.split('\n').find((l) => /^(bad-error|memory) /.test(l));
    expect(verdict, where).toBeUndefined();
    expect(code, `worker exited ${code} at ${where}: ${err.slice(-2000)}`).toBe(0);
    const summary = JSON.parse(out.trim().split('\n').at(-1)!) as { decoded: number; refused: number; slowest: { ms: number }; peakRssMiB: number };
    console.log(`image fuzz (seed ${seed}): ${JSON.stringify(summary)}`);
    expect(summary.decoded + summary.refused).toBe(IMAGE_CASES);
    // Both outcomes occur: mutations neither all harmless nor all fatal.
    expect(summary.decoded).toBeGreaterThan(IMAGE_CASES / 20);
    expect(summary.refused).toBeGreaterThan(IMAGE_CASES / 20);
  });
});

const WEIRD: unknown[] = [null, true, false, -1, 0, 0.5, 1e308, -1e308, 2 ** 53, '', 'x', '<s>', '<|im_end|>', [], [1, 'a'], {}, { content: 5 }, { content: '<s>' }, 'x'.repeat(300)];

/** Replaces, deletes or adds a value somewhere in a JSON tree (in place; arrays stay dense, as JSON has them). */
function mutateJson(r: () => number, root: Record<string, unknown>): void {
  const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)];
  let node: Record<string, unknown> = root;
  for (let depth = 0; depth < 4; depth++) {
    const keys = Object.keys(node);
    if (!keys.length) break;
    const k = pick(keys);
    const child = node[k];
    if (typeof child === 'object' && child !== null && r() < 0.6) node = child as Record<string, unknown>;
    else break;
  }
  const keys = Object.keys(node);
  const what = r();
  if (what < 0.2 && keys.length) delete node[pick(keys)];
  else if (what < 0.3 && !Array.isArray(node)) {
    node[pick(['1', '99999999', '-3', 'rope_scaling', 'added_tokens_decoder', 'additional_special_tokens', 'eos_token', '<x>'])] = structuredClone(pick(WEIRD));
  }
  else if (keys.length) node[pick(keys)] = structuredClone(pick(WEIRD));
}

/** Text-level damage: truncation, a flipped byte, or nothing. */
function mutateText(r: () => number, text: string): string {
  const what = r();
  if (what < 0.1) return text.slice(0, Math.floor(r() * text.length));
  if (what < 0.2) {
    const at = Math.floor(r() * text.length);
    return text.slice(0, at) + String.fromCharCode(Math.floor(r() * 128)) + text.slice(at + 1);
  }
  return text;
}

describe(`fuzz: mutated checkpoint JSON (seed ${seed})`, () => {
  it('config.json: a ModelConfig or a ConfigError naming the file', async () => {
    const r = rng(seed);
    const base = JSON.parse(readFileSync(join(TINY, 'config.json'), 'utf8')) as Record<string, unknown>;
    const sub = join(dir, 'config');
    execFileSync('mkdir', ['-p', sub]);
    let parsed = 0;
    let rejected = 0;
    for (let c = 0; c < 1000; c++) {
      const json = structuredClone(base);
      for (let m = 1 + Math.floor(r() * 3); m > 0; m--) mutateJson(r, json);
      const onDisk = c % 10 === 0; // some through the file loader, with text damage
      try {
        if (onDisk) {
          writeFileSync(join(sub, 'config.json'), mutateText(r, JSON.stringify(json, null, 1)));
          await loadConfig(sub);
        } else parseConfig(json);
        parsed++;
      } catch (e) {
        rejected++;
        if (!(e instanceof ConfigError) || !/config\.json/.test(e.message)) throw new Error(`case ${c} (seed ${seed}): ${String(e)}\n${JSON.stringify(json)}`);
      }
    }
    console.log(`config fuzz (seed ${seed}): ${parsed} parsed, ${rejected} rejected`);
    expect(rejected).toBeGreaterThan(100);
  });

  it('tokenizer_config.json / added_tokens.json: a tokenizer or an error naming the file or token', () => {
    const r = rng(seed + 1);
    const sp = SentencePiece.fromBytes(readFileSync(join(TINY, 'tokenizer.model')));
    const baseConfig = JSON.parse(readFileSync(join(TINY, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    const baseAdded = JSON.parse(readFileSync(join(TINY, 'added_tokens.json'), 'utf8')) as Record<string, unknown>;
    const specialMap = readFileSync(join(TINY, 'special_tokens_map.json'), 'utf8');
    let built = 0;
    let rejected = 0;
    for (let c = 0; c < 500; c++) {
      const config = structuredClone(baseConfig);
      const added = structuredClone(baseAdded);
      for (let m = 1 + Math.floor(r() * 3); m > 0; m--) mutateJson(r, r() < 0.7 ? config : added);
      const files = { tokenizerConfig: mutateText(r, JSON.stringify(config)), addedTokens: mutateText(r, JSON.stringify(added)), specialTokensMap: specialMap };
      try {
        const tok = new Tokenizer(sp, files);
        tok.decode(tok.encode('<|im_start|>user\nhello <IMG_CONTEXT></s>'));
        built++;
      } catch (e) {
        rejected++;
        const clear = e instanceof Error && !(e instanceof TypeError) && /tokenizer_config\.json|added_tokens\.json|special_tokens_map\.json|token/.test(e.message);
        if (!clear) throw new Error(`case ${c} (seed ${seed}): ${String(e)}\n${files.tokenizerConfig}\n${files.addedTokens}`);
      }
    }
    console.log(`tokenizer config fuzz (seed ${seed}): ${built} built, ${rejected} rejected`);
    expect(built).toBeGreaterThan(50);
    expect(rejected).toBeGreaterThan(50);
  });
});
