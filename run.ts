// Chat with PVC-InternVL2 about images or a video, from the command line (see USAGE).
// Thin: parse and check the arguments, get the weights, call the library, print.

import { access, readFile, rename, rm } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ChatSession, formatStats, InputError, loadModel, resolveSampling } from './src/index.js';
import { sniffFormat } from './src/preprocess/decode.js';
import { probeVideo } from './src/preprocess/video.js';
import { ConfigError } from './src/weights/config.js';
import { DownloadError, ensureWeights, howToGetWeights, isCompleteCheckpoint } from './src/weights/download.js';
import { writeCheckpoint } from './src/weights/synthetic.js';

const ROOT = dirname(fileURLToPath(import.meta.url));
const DEFAULT_MODEL = join(ROOT, 'weights', 'PVC-InternVL2-8B');
const DEMO_MODEL = join(ROOT, 'weights', 'tiny-demo');

const USAGE = `Chat with PVC-InternVL2 about images or a video.

  npx tsx run.ts --image x.jpg [--image y.jpg ...] [--prompt "..."]
  npx tsx run.ts --video v.mp4 [--frames N] [--start S --end E] [--prompt "..."]
  npx tsx run.ts --demo --image x.jpg        (tiny random-weight model, no download)

Inputs
  --image PATH             an image (repeat for several: "Image-1: <image>" ... prompt convention)
  --video PATH             a video (one tile per frame; "Frame1: <image>" ... prompt convention)
  --frames N               video frames sampled uniformly (default 32)
  --start S --end E        only this segment of the video, in seconds
  --prompt TEXT            the question (default: a description request for the image or video)
  --system TEXT            system message (default: InternVL's)
  --interactive            multi-turn chat on stdin; images/video attach to the first turn

Model
  --model DIR              checkpoint directory (default weights/PVC-InternVL2-8B, downloaded
                           from the Hugging Face hub on first use)
  --demo                   use a tiny synthetic checkpoint (random weights, made on first use in
                           weights/tiny-demo): shows the pipeline works, answers are gibberish
  --max-tiles N            dynamic tiles per image before the thumbnail (default: the config's
                           max_dynamic_patch, 12 for the real model)
  --dtype bf16|q8|q4       LLM weights as stored (bf16, default) or quantized while loading
                           (q8: about half the memory, q4: about a third; docs/quantization.md)

Generation (Hugging Face semantics; greedy unless --temperature > 0)
  --max-new-tokens N       default 1024
  --temperature T          default 0 (greedy)
  --top-p P                nucleus sampling, in (0, 1]; default 1 (off)
  --top-k K                default 50 when sampling (HF's default); 0 = off
  --repetition-penalty R   default 1 (off)
  --seed S                 sampling seed (default random; printed with the stats)

The answer streams to stdout; loading progress and the stats line go to stderr.
Exit status: 0 ok, 2 bad arguments or inputs (missing model, unreadable file, bad value), 1 other errors.`;

/** Bad flags and inputs: exit 2, message only. */
class UsageError extends Error {}

function parse(argv: string[]) {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        image: { type: 'string', multiple: true },
        video: { type: 'string' },
        frames: { type: 'string' },
        start: { type: 'string' },
        end: { type: 'string' },
        prompt: { type: 'string' },
        system: { type: 'string' },
        interactive: { type: 'boolean' },
        model: { type: 'string' },
        demo: { type: 'boolean' },
        'max-tiles': { type: 'string' },
        dtype: { type: 'string' },
        'max-new-tokens': { type: 'string' },
        temperature: { type: 'string' },
        'top-p': { type: 'string' },
        'top-k': { type: 'string' },
        'repetition-penalty': { type: 'string' },
        seed: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\nSee npx tsx run.ts --help`);
  }
  const int = (flag: string, min: number): number | undefined => {
    const v = values[flag as keyof typeof values] as string | undefined;
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v)) || Number(v) < min) throw new UsageError(`--${flag} needs an integer >= ${min}, got '${v}'`);
    return Number(v);
  };
  const num = (flag: string): number | undefined => {
    const v = values[flag as keyof typeof values] as string | undefined;
    if (v === undefined) return undefined;
    if (v.trim() === '' || !Number.isFinite(Number(v))) throw new UsageError(`--${flag} needs a number, got '${v}'`);
    return Number(v);
  };
  const parsed = {
    images: values.image ?? [],
    video: values.video,
    frames: int('frames', 1),
    start: num('start'),
    end: num('end'),
    prompt: values.prompt,
    system: values.system,
    interactive: values.interactive ?? false,
    model: values.model,
    demo: values.demo ?? false,
    maxTiles: int('max-tiles', 1),
    dtype: values.dtype ?? 'bf16',
    maxNewTokens: int('max-new-tokens', 1),
    sampling: { temperature: num('temperature'), topP: num('top-p'), topK: int('top-k', 0), repetitionPenalty: num('repetition-penalty'), seed: int('seed', 0) },
    help: values.help ?? false,
  };
  if (!['bf16', 'q8', 'q4'].includes(parsed.dtype)) throw new UsageError(`--dtype must be bf16, q8 or q4, got '${parsed.dtype}'`);
  if (parsed.images.length && parsed.video) throw new UsageError('give --image or --video, not both');
  if (!parsed.video && (parsed.frames !== undefined || parsed.start !== undefined || parsed.end !== undefined)) throw new UsageError('--frames, --start and --end apply to --video');
  if ((parsed.start === undefined) !== (parsed.end === undefined)) throw new UsageError('give both --start and --end');
  if (parsed.demo && parsed.model) throw new UsageError('--demo uses its own tiny model; drop --model');
  if (parsed.prompt !== undefined && parsed.prompt.trim() === '') throw new UsageError('--prompt is empty');
  try {
    resolveSampling(parsed.sampling);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  return parsed;
}

type Args = ReturnType<typeof parse>;

/** Cheap checks that the inputs are there and readable, before minutes of weight loading. */
async function checkInputs(args: Args): Promise<void> {
  for (const p of args.images) {
    let head: Uint8Array;
    try {
      head = (await readFile(p)).subarray(0, 64);
    } catch (e) {
      throw new UsageError(`cannot read image ${p}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
    }
    if (!sniffFormat(head)) throw new UsageError(`${p} is not an image this engine reads (JPEG, PNG, WebP, GIF or BMP)`);
  }
  if (args.video) {
    try {
      await access(args.video);
      await probeVideo(args.video);
    } catch (e) {
      throw new UsageError(`cannot read video ${args.video}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
    }
  }
}

/** A progress line on stderr: a bar with bytes and GB/s on a terminal, one summary line otherwise. */
function progress(label: string) {
  const tty = process.stderr.isTTY;
  let last = 0;
  return (done: number, total: number, bytesPerSecond: number): void => {
    const now = performance.now();
    const finished = done >= total;
    if (!finished && (!tty || now - last < 100)) return;
    last = now;
    const gb = (n: number) => (n / 1e9).toFixed(2);
    const stats = `${gb(done)}/${gb(total)} GB ${(bytesPerSecond / 1e9).toFixed(2)} GB/s`;
    if (tty) {
      const width = 30;
      const fill = total > 0 ? Math.round((done / total) * width) : width;
      process.stderr.write(`\r${label} [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${stats} `);
      if (finished) process.stderr.write('\n');
    } else if (finished) {
      process.stderr.write(`${label}: ${stats}\n`);
    }
  };
}

/** The demo's tiny checkpoint, written once (atomically: a half-written one is never used). */
async function ensureDemo(): Promise<string> {
  if (!(await isCompleteCheckpoint(DEMO_MODEL))) {
    process.stderr.write(`demo: writing a tiny synthetic checkpoint to ${DEMO_MODEL} (once)\n`);
    const tmp = `${DEMO_MODEL}.tmp-${process.pid}`;
    await writeCheckpoint(tmp, 'tiny', { seed: 0 });
    await rm(DEMO_MODEL, { recursive: true, force: true });
    await rename(tmp, DEMO_MODEL);
  }
  process.stderr.write('demo: this model has RANDOM weights (synthetic "tiny" preset): the answer below is meaningless text;\n' + 'demo: it shows the whole pipeline runs. Drop --demo to use the real PVC-InternVL2-8B.\n');
  return DEMO_MODEL;
}

async function modelDir(args: Args): Promise<string> {
  if (args.demo) return ensureDemo();
  const dir = args.model ? resolve(args.model) : DEFAULT_MODEL;
  if (await isCompleteCheckpoint(dir)) return dir;
  if (args.model) {
    throw new UsageError(`${args.model} is not a complete checkpoint directory (it needs config.json, tokenizer files and the safetensors shards).\n${howToGetWeights()}`);
  }
  process.stderr.write(`${dir} is missing or incomplete: downloading PVC-InternVL2-8B (about 16 GB; interrupted downloads resume)\n`);
  const bar = progress('download');
  await ensureWeights(dir, { onProgress: (p) => bar(p.done, p.total, p.bytesPerSecond), log: (line) => process.stderr.write(`${line}\n`) });
  return dir;
}

function defaultQuestion(args: Args): string | undefined {
  if (args.video) return 'What is happening in this video?';
  if (args.images.length === 1) return 'Please describe the image in detail.';
  if (args.images.length > 1) return 'What are the similarities and differences between these images?';
  return undefined;
}

/** One turn of `session` (the media belong to the first): stream the answer to stdout, stats to stderr. */
async function turn(session: ChatSession, args: Args, question: string): Promise<void> {
  const first = session.history.length === 0;
  const it = session.turn({
    question,
    images: first ? args.images : undefined,
    video: first && args.video ? { path: args.video, frames: args.frames, start: args.start, end: args.end } : undefined,
    maxTiles: args.maxTiles,
    maxNewTokens: args.maxNewTokens,
    sampling: args.sampling,
  });
  for (;;) {
    const r = await it.next();
    if (r.done) {
      process.stdout.write('\n');
      process.stderr.write(`${formatStats(r.value.stats)}\n`);
      return;
    }
    process.stdout.write(r.value);
  }
}

/** A session keeps the KV cache: each turn prefills only its own tokens. */
async function interactive(session: ChatSession, args: Args): Promise<void> {
  if (args.prompt) await turn(session, args, args.prompt);
  const rl = createInterface({ input: process.stdin, output: process.stderr, prompt: '> ' });
  process.stderr.write('(empty line: skip; Ctrl-D or /exit: quit)\n');
  rl.prompt();
  for await (const line of rl) {
    const q = line.trim();
    if (q === '/exit') break;
    if (q) {
      try {
        await turn(session, args, q);
      } catch (e) {
        if (!(e instanceof InputError)) throw e;
        process.stderr.write(`error: ${e.message}\n`); // e.g. the conversation outgrew the context: the session goes on
      }
    }
    rl.prompt();
  }
  rl.close();
}

async function main(): Promise<number> {
  const args = parse(process.argv.slice(2));
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const question = args.prompt ?? defaultQuestion(args);
  if (!question && !args.interactive) throw new UsageError('give --prompt (or --image / --video, or --interactive)\nSee npx tsx run.ts --help');
  await checkInputs(args);
  const dir = await modelDir(args);
  const bar = progress('loading weights');
  const m = await loadModel(dir, { dtype: args.dtype as 'bf16' | 'q8' | 'q4', onProgress: (p) => bar(p.bytesDone, p.bytesTotal, p.bytesPerSecond) });
  const session = new ChatSession(m.model, m.tokenizer, { systemMessage: args.system, stopIds: m.stopIds });
  try {
    if (args.interactive) await interactive(session, args);
    else await turn(session, args, question!);
  } finally {
    session.dispose();
    m.dispose();
  }
  return 0;
}

let code: number;
try {
  code = await main();
} catch (e) {
  const userError = e instanceof UsageError || e instanceof InputError || e instanceof ConfigError;
  process.stderr.write(`error: ${(e as Error).message}\n`);
  if (!userError && !(e instanceof DownloadError)) process.stderr.write(process.env.PVC_DEBUG ? `${(e as Error).stack}\n` : '(set PVC_DEBUG=1 for the stack trace)\n');
  code = userError ? 2 : 1;
}
process.exit(code);
