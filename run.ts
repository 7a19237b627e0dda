// Chat with PVC-InternVL2 about images or a video, from the command line (see USAGE).
// Thin: parse and check the arguments, get the weights, call the library, print.

import { createReadStream } from 'node:fs';
import { access, rename, rm } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { ChatSession, formatStats, getDevice, InputError, loadModel, resolveSampling, type LoadedModel, type LoadModelOptions } from './src/index.js';
import { GpuError } from './src/gpu/recorder.js';
import { runWithDawnWarningsFiltered, stderrIsTty } from './src/gpu/native-stderr.js';
import { checkPixelBudget, MAX_TILES } from './src/preprocess/image.js';
import { decodeImage } from './src/preprocess/decode.js';
import { readImageFile } from './src/preprocess/image-file.js';
import { frameIndices, probeVideo } from './src/preprocess/video.js';
import { IMG_CONTEXT } from './src/text/template.js';
import { ConfigError, loadConfig, type ModelConfig } from './src/weights/config.js';
import { formatLoadBreakdown, type UploadProgress } from './src/weights/upload.js';
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
  --prompt-file FILE       the question from a UTF-8 file (- for stdin; trailing line breaks dropped),
                           for prompts longer than the command line allows
  --system TEXT            system message (default: InternVL's)
  --interactive            multi-turn chat on stdin; images/video attach to the first turn.
                           Ctrl-C stops the answer being written (the conversation goes on);
                           Ctrl-C again at the prompt, Ctrl-D or /exit quits

Model
  --model DIR              checkpoint directory (default weights/PVC-InternVL2-8B, downloaded
                           from the Hugging Face hub on first use)
  --demo                   use a tiny synthetic checkpoint (random weights, made on first use in
                           weights/tiny-demo): shows the pipeline works, answers are gibberish
  --max-tiles N            dynamic tiles per image before the thumbnail (default: the config's
                           max_dynamic_patch, 12 for the real model)
  --dtype bf16|q8|q4       LLM weights as stored (bf16, default) or quantized while loading
                           (q8: about half the memory, q4: about a third; docs/quantization.md)
  --quant-cache DIR|off    where the quantized copy made by the first q8/q4 load is kept (default
                           DIR/.pvc-cache beside the checkpoint, else ~/.cache/pvc-webgpu); off: none
  --verbose                print where the load's time went (reading, GPU copies, page faults)

Generation (Hugging Face semantics; greedy unless --temperature > 0)
  --max-new-tokens N       default 1024
  --temperature T          default 0 (greedy)
  --top-p P                nucleus sampling, in (0, 1]; default 1 (off)
  --top-k K                default 50 when sampling (HF's default); 0 = off
  --repetition-penalty R   default 1 (off)
  --seed S                 sampling seed (default random; printed with the stats)

The answer streams to stdout (a reader that closes it, as \`| head\` does, ends the run quietly);
loading progress and the stats line go to stderr.

Exit status
  0  the answer was written (or its reader closed stdout)
  1  internal error: the GPU failed, or a bug (PVC_DEBUG=1 prints the stack trace)
  2  bad arguments or inputs: a flag, an image, video or prompt file, a prompt, or a --model
     directory that is incomplete or corrupt
  3  the weights could not be downloaded (network, hub, disk space); run again to resume
  130  interrupted by Ctrl-C (outside --interactive, or twice while an answer is stopping)`;

const EXIT = { ok: 0, internal: 1, usage: 2, download: 3, interrupted: 130 } as const;

/** Bad flags and inputs: exit 2, message only. */
export class UsageError extends Error {}

/** The checkpoint directory cannot be loaded (corrupt or mismatched files): exit 2, message only. */
class CheckpointError extends Error {}

/** Prompt files above this are refused: the real model's context (32768 tokens) holds far less text. */
const MAX_PROMPT_FILE_BYTES = 4 << 20;

export function parse(argv: string[]) {
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
        'prompt-file': { type: 'string' },
        system: { type: 'string' },
        interactive: { type: 'boolean' },
        model: { type: 'string' },
        demo: { type: 'boolean' },
        'max-tiles': { type: 'string' },
        dtype: { type: 'string' },
        'quant-cache': { type: 'string' },
        verbose: { type: 'boolean' },
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
    promptFile: values['prompt-file'],
    system: values.system,
    interactive: values.interactive ?? false,
    model: values.model,
    demo: values.demo ?? false,
    maxTiles: int('max-tiles', 1),
    dtype: values.dtype ?? 'bf16',
    quantCache: values['quant-cache'] === 'off' ? (false as const) : values['quant-cache'] === undefined ? undefined : { dir: values['quant-cache'] },
    verbose: values.verbose ?? false,
    maxNewTokens: int('max-new-tokens', 1),
    sampling: { temperature: num('temperature'), topP: num('top-p'), topK: int('top-k', 0), repetitionPenalty: num('repetition-penalty'), seed: int('seed', 0) },
    help: values.help ?? false,
  };
  if (!['bf16', 'q8', 'q4'].includes(parsed.dtype)) throw new UsageError(`--dtype must be bf16, q8 or q4, got '${parsed.dtype}'`);
  if (parsed.images.length && parsed.video) throw new UsageError('give --image or --video, not both');
  if (!parsed.video && (parsed.frames !== undefined || parsed.start !== undefined || parsed.end !== undefined)) throw new UsageError('--frames, --start and --end apply to --video');
  if ((parsed.start === undefined) !== (parsed.end === undefined)) throw new UsageError('give both --start and --end');
  if (parsed.start !== undefined && !(parsed.start >= 0 && parsed.end! > parsed.start)) throw new UsageError(`the video segment needs 0 <= --start < --end, got ${parsed.start}..${parsed.end}`);
  if (parsed.demo && parsed.model) throw new UsageError('--demo uses its own tiny model; drop --model');
  if (parsed.prompt !== undefined && parsed.promptFile !== undefined) throw new UsageError('give --prompt or --prompt-file, not both');
  if (parsed.promptFile === '-' && parsed.interactive) throw new UsageError('--prompt-file - reads stdin, which --interactive needs for the conversation');
  if (parsed.prompt !== undefined && parsed.prompt.trim() === '') throw new UsageError('--prompt is empty');
  if (parsed.system !== undefined) checkText(parsed.system, '--system');
  try {
    resolveSampling(parsed.sampling);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  return parsed;
}

type Args = ReturnType<typeof parse>;

/** A file system error as a person reads it. */
function why(e: unknown): string {
  return (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message;
}

/**
 * User text (a question, the system message) the model could not take: <IMG_CONTEXT> is the token
 * that image features replace, so a typed one would miscount the image rows (Hugging Face fails too).
 */
function checkText(text: string, what: string): void {
  if (text.includes(IMG_CONTEXT)) throw new UsageError(`${what} contains ${IMG_CONTEXT}, the token that stands for image features; to place an image in the question, write <image>`);
}

/** Checks that every input is there and readable, and every flag fits it, before minutes of weight loading. */
export async function checkInputs(args: Args): Promise<void> {
  for (const p of args.images) {
    let bytes;
    try {
      bytes = await readImageFile(p); // a regular file of a bounded size, whose header decodes to a bounded size
    } catch (e) {
      throw new UsageError(`cannot read image ${p}: ${why(e)}`);
    }
    try {
      // only decoding finds a body cut short or corrupt: done here, before minutes of loading; the
      // turn decodes it again (milliseconds)
      await decodeImage(bytes);
    } catch (e) {
      throw new UsageError(`cannot decode image ${p}: ${why(e)}`);
    }
  }
  if (args.video) {
    let info;
    try {
      await access(args.video);
      info = await probeVideo(args.video);
    } catch (e) {
      // probeVideo's messages already name the file
      throw new UsageError((e as NodeJS.ErrnoException).code === 'ENOENT' ? `cannot read video ${args.video}: no such file` : (e as Error).message);
    }
    if (args.start !== undefined && args.end !== undefined) {
      try {
        frameIndices(info.frameCount, info.fps, 1, [args.start, args.end]);
      } catch (e) {
        const seconds = (info.frameCount / info.fps).toFixed(2);
        throw new UsageError(`--start ${args.start} --end ${args.end} is outside ${args.video} (${info.frameCount} frames, ${seconds} s): ${(e as Error).message}`);
      }
    }
  }
}

/** Checks that need the checkpoint's config (read in milliseconds, before the weights): the frames' rows and pixels. */
export function checkAgainstConfig(args: Args, config: ModelConfig): void {
  if (args.video && args.frames !== undefined) {
    const rows = args.frames * config.numImageToken;
    const context = config.llm.maxPositionEmbeddings;
    if (rows >= context) throw new UsageError(`--frames ${args.frames} needs ${rows} positions for the frames alone (${config.numImageToken} each); the context holds ${context}`);
    try {
      checkPixelBudget(args.frames, config.imageSize, 'frames');
    } catch (e) {
      throw new UsageError(`--frames ${args.frames}: ${(e as Error).message}`);
    }
  }
  if (args.maxTiles !== undefined && args.maxTiles > MAX_TILES) throw new UsageError(`--max-tiles ${args.maxTiles} is above the limit of ${MAX_TILES} tiles per image (PVC-InternVL2 uses 12)`);
}

/** The text of --prompt-file (a file, or stdin for -): UTF-8, at most MAX_PROMPT_FILE_BYTES, trailing line breaks dropped. */
export async function readPromptFile(path: string): Promise<string> {
  const stream = path === '-' ? process.stdin : createReadStream(path);
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_PROMPT_FILE_BYTES) throw new UsageError(`prompt file ${path} is over ${MAX_PROMPT_FILE_BYTES >> 20} MiB, far more than the model's context holds`);
      chunks.push(chunk);
    }
  } catch (e) {
    throw e instanceof UsageError ? e : new UsageError(`cannot read prompt file ${path}: ${why(e)}`);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks));
  } catch {
    throw new UsageError(`prompt file ${path} is not UTF-8 text`);
  }
  text = text.replace(/[\r\n]+$/, '');
  if (text.trim() === '') throw new UsageError(`prompt file ${path} is empty`);
  return text;
}

/** A progress line on stderr: a bar with bytes and GB/s on a terminal, one summary line otherwise. */
function progress(label: string) {
  const tty = stderrIsTty();
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

/**
 * Aborted when stdout's reader goes away (EPIPE: `| head`): the answer has nowhere to go, so
 * generation stops and the run ends quietly with status 0.
 */
const stdoutGone = new AbortController();

/** Writes answer text unless stdout's reader is gone. */
function emit(text: string): void {
  if (!stdoutGone.signal.aborted) process.stdout.write(text);
}

/**
 * One turn of `session` (the media belong to the first): stream the answer to stdout, stats to
 * stderr. `stop` ends it early (stats 'aborted'): Ctrl-C, or stdout closed (then nothing more is said).
 */
async function turn(session: ChatSession, args: Args, question: string, stop: AbortSignal): Promise<void> {
  checkText(question, 'the question');
  const first = session.history.length === 0;
  const it = session.turn({
    question,
    images: first ? args.images : undefined,
    video: first && args.video ? { path: args.video, frames: args.frames, start: args.start, end: args.end } : undefined,
    maxTiles: args.maxTiles,
    maxNewTokens: args.maxNewTokens,
    sampling: args.sampling,
    signal: stop,
  });
  for (;;) {
    const r = await it.next();
    if (r.done) {
      emit('\n');
      if (!stdoutGone.signal.aborted) process.stderr.write(`${formatStats(r.value.stats)}\n`);
      return;
    }
    emit(r.value);
  }
}

/**
 * Multi-turn chat on stdin; the session keeps the KV cache, so each turn prefills only its own
 * tokens. A turn that fails (a bad question, the context outgrown, ...) prints its error and the
 * conversation goes on as it was; only an unusable GPU ends it. Ctrl-C stops the answer being
 * written and keeps the conversation (with the answer as far as it got); Ctrl-C at the prompt right
 * after another one quits, as does a second Ctrl-C while a stopped answer is still winding down.
 */
async function interactive(m: LoadedModel, session: ChatSession, args: Args, first: string | undefined): Promise<void> {
  const rl = createInterface({ input: process.stdin, output: process.stderr, prompt: '> ' });
  let answering: AbortController | null = null;
  let quitArmed = false;
  const interrupt = (): void => {
    if (answering?.signal.aborted) process.exit(EXIT.interrupted);
    if (answering) {
      answering.abort();
      quitArmed = true;
    } else if (quitArmed) {
      rl.close();
    } else {
      quitArmed = true;
      process.stderr.write('\n(Ctrl-C again, Ctrl-D or /exit to quit)\n');
      rl.prompt();
    }
  };
  rl.on('SIGINT', interrupt); // Ctrl-C typed on a terminal (readline reads it as a key)
  process.on('SIGINT', interrupt); // the signal itself (stdin not a terminal)
  const ask = async (question: string): Promise<void> => {
    answering = new AbortController();
    try {
      await turn(session, args, question, AbortSignal.any([answering.signal, stdoutGone.signal]));
    } catch (e) {
      if (!usable(m)) throw e; // a lost device, or an error that escaped its scopes, ends the session
      process.stderr.write(`error: ${(e as Error).message}\n`);
    } finally {
      answering = null;
    }
  };
  try {
    if (first) await ask(first);
    process.stderr.write('(empty line: skip; Ctrl-C: stop an answer; Ctrl-D or /exit: quit)\n');
    rl.prompt();
    for await (const line of rl) {
      const q = line.trim();
      if (q === '/exit' || stdoutGone.signal.aborted) break;
      quitArmed = false;
      if (q) await ask(q);
      if (stdoutGone.signal.aborted) break;
      rl.prompt();
    }
  } finally {
    process.off('SIGINT', interrupt);
    rl.close();
  }
}

function usable(m: LoadedModel): boolean {
  try {
    m.gpu.assertUsable();
    return true;
  } catch {
    return false;
  }
}

/**
 * The model on a fresh device. Failures to get the device are the environment's (exit 1); failures
 * while reading the checkpoint are the directory's (exit 2), except GPU errors and JavaScript's own
 * error types, which point at a bug.
 */
async function load(dir: string, dtype: 'bf16' | 'q8' | 'q4', quantCache: LoadModelOptions['quantCache'], verbose: boolean): Promise<LoadedModel> {
  const gpu = await getDevice();
  const bar = progress('loading weights');
  let last: UploadProgress | undefined;
  try {
    const m = await loadModel(dir, {
      gpu,
      dtype,
      quantCache,
      onProgress: (p) => {
        last = p;
        bar(p.bytesDone, p.bytesTotal, p.bytesPerSecond);
      },
    });
    if (verbose && last) process.stderr.write(`${formatLoadBreakdown(last)}\n`);
    return m;
  } catch (e) {
    gpu.destroy();
    const bug = e instanceof GpuError || e instanceof TypeError || e instanceof RangeError || e instanceof ReferenceError;
    throw bug ? e : new CheckpointError(`cannot load the checkpoint in ${dir}: ${(e as Error).message}`);
  }
}

async function main(): Promise<number> {
  const args = parse(process.argv.slice(2));
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const given = args.promptFile !== undefined ? await readPromptFile(args.promptFile) : args.prompt;
  const question = given ?? defaultQuestion(args);
  if (!question && !args.interactive) throw new UsageError('give --prompt (or --image / --video, or --interactive)\nSee npx tsx run.ts --help');
  if (question) checkText(question, 'the question');
  await checkInputs(args);
  const dir = await modelDir(args);
  checkAgainstConfig(args, await loadConfig(dir));
  const m = await load(dir, args.dtype as 'bf16' | 'q8' | 'q4', args.quantCache, args.verbose);
  const session = new ChatSession(m.model, m.tokenizer, { systemMessage: args.system, stopIds: m.stopIds });
  try {
    if (args.interactive) await interactive(m, session, args, given);
    else await turn(session, args, question!, stdoutGone.signal);
  } finally {
    session.dispose();
    m.dispose();
    m.gpu.destroy();
  }
  return EXIT.ok;
}

/** The exit status for an error (see USAGE); user and download errors print their message only. */
function exitStatus(e: unknown): number {
  if (e instanceof UsageError || e instanceof InputError || e instanceof ConfigError || e instanceof CheckpointError) return EXIT.usage;
  if (e instanceof DownloadError) return EXIT.download;
  return EXIT.internal;
}

// Run as a program; imported (by the tests), only the functions above.
if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const relaunched = await runWithDawnWarningsFiltered();
  if (relaunched !== null) process.exit(relaunched);
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') throw e;
    stdoutGone.abort();
  });
  let code: number;
  try {
    code = await main();
  } catch (e) {
    code = exitStatus(e);
    process.stderr.write(`error: ${(e as Error).message}\n`);
    if (code === EXIT.internal) process.stderr.write(process.env.PVC_DEBUG ? `${(e as Error).stack}\n` : '(set PVC_DEBUG=1 for the stack trace)\n');
  }
  process.exit(code);
}
