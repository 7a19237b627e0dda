// run.ts as a user drives it (a child process through tsx, a tiny checkpoint made here): stdout
// closed by its reader, Ctrl-C and failing turns in --interactive, --prompt-file, inputs and flags
// checked before the weights load, and the documented exit statuses.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync, copyFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkAgainstConfig, checkInputs, parse, readPromptFile, UsageError } from '../run.js';
import { InputError, readMedia, type InternVL } from '../src/index.js';
import { loadConfig } from '../src/weights/config.js';
import { writeCheckpoint } from '../src/weights/synthetic.js';
import { SHARED } from './util.js';

const ROOT = join(__dirname, '..');
const IMAGE = join(SHARED, 'assets', 'example_image1.jpg');
const VIDEO = join(SHARED, 'assets', 'example_video.mp4');
const tmp = mkdtempSync(join(tmpdir(), 'cli-test-'));
const model = join(tmp, 'tiny');
// With this seed, greedy decoding answers LONG without a stop token for many tokens, and SHORT stops
// by itself after a few (the tests do not rely on the latter: it only keeps them short).
const LONG = 'Tell me a story.';
const SHORT = 'hello there';
const LOADING = /loading weights/;
const STATS = /(\d+) prompt tokens(?: \(\d+ prefilled\))?, (\d+) new \(([\w-]+)\)/g;

interface Child {
  pid: number;
  stdout: string;
  stderr: string;
  write(text: string): void;
  end(input?: string | Buffer): void;
  signal(name: NodeJS.Signals): void;
  closeStdout(): void;
  /** resolves when `test` holds for the output so far (polled), rejects after `ms` */
  until(test: (c: Child) => boolean, what: string, ms?: number): Promise<void>;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function start(args: string[], env: Record<string, string> = {}): Child {
  const childEnv: Record<string, string | undefined> = { ...process.env, ...env };
  delete childEnv.PVC_DEBUG;
  const p = spawn(process.execPath, ['--import', 'tsx', 'run.ts', ...args], { cwd: ROOT, env: childEnv, stdio: ['pipe', 'pipe', 'pipe'] });
  const c: Child = {
    pid: p.pid!,
    stdout: '',
    stderr: '',
    write: (text) => p.stdin.write(text),
    end: (input) => p.stdin.end(input),
    signal: (name) => p.kill(name),
    closeStdout: () => p.stdout.destroy(),
    until: async (test, what, ms = 120_000) => {
      const t0 = Date.now();
      while (!test(c)) {
        if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}\nstdout: ${c.stdout}\nstderr: ${c.stderr}`);
        if (p.exitCode !== null || p.signalCode !== null) throw new Error(`the child exited (${p.exitCode ?? p.signalCode}) before ${what}\nstdout: ${c.stdout}\nstderr: ${c.stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    exit: new Promise((resolve) => p.on('close', (code, signal) => resolve({ code, signal }))),
  };
  p.stdout.on('data', (d: Buffer) => (c.stdout += d.toString()));
  p.stderr.on('data', (d: Buffer) => (c.stderr += d.toString()));
  p.stdin.on('error', () => {}); // the child may exit before reading all of it
  return c;
}

/** Runs to the end with `input` on stdin. */
async function run(args: string[], input: string | Buffer = '', env: Record<string, string> = {}) {
  const c = start(args, env);
  c.end(input);
  const { code, signal } = await c.exit;
  return { code, signal, stdout: c.stdout, stderr: c.stderr };
}

const stats = (stderr: string) => [...stderr.matchAll(STATS)].map((m) => ({ prompt: Number(m[1]), generated: Number(m[2]), stop: m[3] }));

beforeAll(async () => {
  await writeCheckpoint(model, 'tiny', { seed: 0 });
}, 120_000);

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('stdout closed by its reader (`| head -c 3`)', () => {
  it('stops generating quietly and exits 0', async () => {
    const c = start(['--model', model, '--prompt', LONG, '--max-new-tokens', '5000']);
    c.closeStdout();
    c.end();
    const { code } = await c.exit;
    expect(c.stderr).not.toMatch(/EPIPE|\n\s+at /);
    expect(code, c.stderr).toBe(0);
    expect(stats(c.stderr), 'the answer was cut short, so no stats line').toEqual([]);
  }, 180_000);
});

/** Live (not zombie) processes whose parent is `pid`, from /proc. */
function childrenOf(pid: number): number[] {
  const kids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = (() => { try { return readFileSync(`/proc/${entry}/stat`, 'utf8'); } catch { return ''; } })();
    const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(ppid) === pid && state !== 'Z') kids.push(Number(entry));
  }
  return kids;
}

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

describe('the program killed with SIGKILL', () => {
  // Plain pipes as a shell makes them (the test's own stdio would be socket pairs, whose end the
  // child sees): the parent, killed, leaves the relaunched child waiting at its prompt.
  it('its relaunched child (the process holding the weights) stops too, even while idle at the prompt', async () => {
    const err = join(tmp, 'sigkill.err');
    const env: Record<string, string | undefined> = { ...process.env };
    delete env.PVC_DEBUG;
    const command = `sleep 300 | exec '${process.execPath}' --import tsx run.ts --model '${model}' --interactive --prompt '${SHORT}' --max-new-tokens 8 > /dev/null 2> '${err}'`;
    const shell = spawn('bash', ['-c', command], { cwd: ROOT, env, stdio: 'ignore' });
    const t0 = Date.now();
    const ready = () => existsSync(err) && readFileSync(err, 'utf8').endsWith('> ');
    while (!ready() && Date.now() - t0 < 120_000) await new Promise((r) => setTimeout(r, 100));
    const others = childrenOf(shell.pid!);
    const parent = others.find((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('run.ts'));
    const [kid] = parent ? childrenOf(parent) : [];
    try {
      expect(ready(), `the first answer and the next prompt: ${existsSync(err) && readFileSync(err, 'utf8')}`).toBe(true);
      expect(kid, 'run.ts runs itself as a child (stderr filter)').toBeGreaterThan(0);
      process.kill(parent!, 'SIGKILL');
      const t1 = Date.now();
      while (alive(kid) && Date.now() - t1 < 30_000) await new Promise((r) => setTimeout(r, 100));
      expect(alive(kid), 'the child outlived its parent').toBe(false);
    } finally {
      for (const pid of [kid, ...others]) if (pid && alive(pid)) process.kill(pid, 'SIGKILL');
    }
  }, 180_000);
});

describe('--interactive', () => {
  it('Ctrl-C stops the answer and keeps the conversation (and the GPU usable); Ctrl-C twice at the prompt quits with 0', async () => {
    const c = start(['--model', model, '--interactive', '--max-new-tokens', '300']);
    c.write(`${SHORT}\n`);
    await c.until((x) => stats(x.stderr).length === 1, 'the first answer');
    const [first] = stats(c.stderr);

    const before = c.stdout.length;
    c.write(`${LONG}\n`);
    await c.until((x) => x.stdout.length > before + 5, 'the second answer to start');
    c.signal('SIGINT');
    await c.until((x) => stats(x.stderr).length === 2, 'the stopped answer');
    const second = stats(c.stderr)[1];
    expect(second.stop).toBe('aborted');
    expect(second.generated).toBeLessThan(300);
    expect(second.prompt, 'the second turn follows the first').toBeGreaterThan(first.prompt + first.generated);

    c.write(`${SHORT}\n`);
    await c.until((x) => stats(x.stderr).length === 3, 'the third answer');
    const third = stats(c.stderr)[2];
    // the same question as the first, now after both earlier turns: the stopped answer stays in the conversation as far as it got
    expect(third.prompt).toBeGreaterThan(second.prompt + second.generated);
    expect(third.prompt).toBeLessThan(second.prompt + second.generated + 30);
    expect(third.stop).not.toBe('aborted');

    c.signal('SIGINT');
    await c.until((x) => /Ctrl-C again/.test(x.stderr), 'the quit hint');
    c.signal('SIGINT');
    const { code } = await c.exit;
    expect(code, c.stderr).toBe(0);
  }, 240_000);

  // Python's pty module gives the child a terminal: readline then reads Ctrl-C as a key (no signal is sent)
  const PTY_DRIVER = `
import json, os, pty, select, sys, time
argv, long = json.loads(sys.argv[1]), sys.argv[2].encode()
pid, fd = pty.fork()
if pid == 0:
    os.execvp(argv[0], argv)
out = b''
def until(test, seconds=120):
    global out
    end = time.time() + seconds
    while not test() and time.time() < end:
        if select.select([fd], [], [], 0.2)[0]:
            try: out += os.read(fd, 4096)
            except OSError: break
    return test()
until(lambda: b'> ' in out)
os.write(fd, long + b'\\r')
asked = until(lambda: long in out)
at = len(out)
started = until(lambda: len(out) > at + 8)
os.write(fd, b'\\x03')
stopped = until(lambda: b'(aborted)' in out)
os.write(fd, b'\\x03')
_, status = os.waitpid(pid, 0)
print(json.dumps({'asked': asked, 'started': started, 'stopped': stopped, 'code': os.waitstatus_to_exitcode(status), 'out': out.decode(errors='replace')[-2000:]}))
`;

  it('on a terminal (pty): a typed Ctrl-C stops the answer, a second at the prompt quits with 0', async () => {
    const argv = [process.execPath, '--import', 'tsx', 'run.ts', '--model', model, '--interactive', '--max-new-tokens', '300'];
    const r = await new Promise<string>((resolve, reject) => {
      const p = spawn('/usr/bin/python3', ['-c', PTY_DRIVER, JSON.stringify(argv), LONG], { cwd: ROOT });
      let out = '';
      let err = '';
      p.stdout.on('data', (d: Buffer) => (out += d.toString()));
      p.stderr.on('data', (d: Buffer) => (err += d.toString()));
      p.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`pty driver exited ${code}: ${out}${err}`))));
    });
    const result = JSON.parse(r);
    expect(result, result.out).toMatchObject({ asked: true, started: true, stopped: true, code: 0 });
  }, 180_000);

  it('a failing turn prints its error and the conversation goes on', async () => {
    const r = await run(['--model', model, '--interactive', '--max-new-tokens', '300'], `what is <IMG_CONTEXT> here\n${SHORT}\n`);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/error: the question contains <IMG_CONTEXT>/);
    expect(stats(r.stderr)).toHaveLength(1);
    expect(stats(r.stderr)[0].stop).not.toBe('aborted');
  }, 180_000);
});

describe('--prompt-file', () => {
  const question = 'Tell me, in one line:\n"what is this?"  \n\n';
  it('FILE gives the same answer as --prompt with the same text (trailing line breaks dropped)', async () => {
    const file = join(tmp, 'q.txt');
    writeFileSync(file, question);
    const common = ['--model', model, '--max-new-tokens', '12'];
    const direct = await run([...common, '--prompt', question.replace(/\n+$/, '')]);
    const fromFile = await run([...common, '--prompt-file', file]);
    expect(direct.code, direct.stderr).toBe(0);
    expect(direct.stdout.length).toBeGreaterThan(1);
    expect(fromFile.code, fromFile.stderr).toBe(0);
    expect(fromFile.stdout).toBe(direct.stdout);
    expect(stats(fromFile.stderr)[0].prompt).toBe(stats(direct.stderr)[0].prompt);
    // Dawn's two native adapter warnings (src/gpu/native-stderr.ts) are filtered out; the program's own lines stay
    for (const r of [direct, fromFile]) {
      expect(r.stderr).not.toMatch(/artificially reduced/);
      expect(r.stderr).toMatch(LOADING);
    }
  }, 180_000);

  it('- reads stdin, whole: a prompt longer than one command-line argument may be (128 KiB)', async () => {
    const long = 'word '.repeat(60_000); // 300 KB: more than the context, so the turn is refused after counting it
    const r = await run(['--model', model, '--prompt-file', '-', '--max-new-tokens', '4'], long);
    expect(r.code, r.stderr).toBe(2);
    const m = /the prompt is (\d+) tokens but the context holds 32768/.exec(r.stderr);
    expect(m, r.stderr).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThanOrEqual(60_000);
  }, 180_000);

  it('a prompt file over the size limit on stdin: exit 2 before loading', async () => {
    const r = await run(['--model', model, '--prompt-file', '-'], 'x'.repeat((4 << 20) + 1));
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/prompt file - is over 4 MiB/);
    expect(r.stderr).not.toMatch(LOADING);
  }, 60_000);

  it('bad prompt files are refused with their reason', async () => {
    const file = (name: string, content: string | Buffer) => (writeFileSync(join(tmp, name), content), join(tmp, name));
    const cases: [string, RegExp][] = [
      [file('big.txt', 'x'.repeat((4 << 20) + 1)), /prompt file .*big\.txt is over 4 MiB/],
      [file('latin1.txt', Buffer.from([0x68, 0xff, 0xfe, 0x69])), /prompt file .*latin1\.txt is not UTF-8 text/],
      [file('empty.txt', '\n\r\n'), /prompt file .*empty\.txt is empty/],
      [join(tmp, 'nope.txt'), /cannot read prompt file .*nope\.txt: no such file/],
      [tmp, /cannot read prompt file .*: EISDIR/],
    ];
    for (const [path, re] of cases) await expect(readPromptFile(path), path).rejects.toThrow(re);
  });
});

describe('inputs and flags are checked before the weights load (exit 2, one message)', () => {
  // the example image's first third: its header (and size) is intact, its scan data ends early
  const CUT_JPEG = join(tmp, 'cut.jpg');
  beforeAll(() => {
    const whole = readFileSync(IMAGE);
    writeFileSync(CUT_JPEG, whole.subarray(0, Math.floor(whole.length / 3)));
  });
  for (const [what, args, re] of [
    ['--start past the end of the video', ['--video', VIDEO, '--start', '500', '--end', '600'], /--start 500 --end 600 is outside .*example_video\.mp4 \(\d+ frames, [\d.]+ s\)/],
    ['<IMG_CONTEXT> in the question', ['--image', IMAGE, '--prompt', 'is <IMG_CONTEXT> here?'], /the question contains <IMG_CONTEXT>/],
    ['a JPEG cut after a valid header', ['--image', CUT_JPEG], /cannot decode image .*cut\.jpg: /],
  ] as const) {
    it(`${what} (run.ts)`, async () => {
      const r = await run(['--model', model, ...args]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(re);
      expect(r.stderr).not.toMatch(LOADING);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }, 60_000);
  }

  it('flags that contradict each other', () => {
    const cases: [string[], RegExp][] = [
      [['--video', VIDEO, '--start', '3', '--end', '1'], /needs 0 <= --start < --end, got 3\.\.1/],
      [['--video', VIDEO, '--start=-1', '--end', '1'], /needs 0 <= --start < --end, got -1\.\.1/],
      [['--image', IMAGE, '--system', 'a <IMG_CONTEXT>'], /--system contains <IMG_CONTEXT>/],
      [['--prompt-file', 'q.txt', '--prompt', 'hi'], /--prompt or --prompt-file, not both/],
      [['--prompt-file', '-', '--interactive'], /--interactive needs/],
    ];
    for (const [args, re] of cases) expect(() => parse(args), args.join(' ')).toThrow(re);
  });

  it('--frames and --max-tiles against the checkpoint config (rows in the context, pixel budget, tile limit)', async () => {
    const config = await loadConfig(model); // tiny: 4 rows per 112 x 112 frame (150528 bytes of pixel values), a 32768-position context
    const check = (args: string[]) => () => checkAgainstConfig(parse(args), config);
    expect(check(['--video', VIDEO, '--frames', '7133'])).not.toThrow();
    expect(check(['--video', VIDEO, '--frames', '7134'])).toThrow(/--frames 7134: 7134 frames of 112x112 need 1024 MiB of pixel values; the limit is 1024 MiB/);
    expect(check(['--video', VIDEO, '--frames', '8192'])).toThrow(/--frames 8192 needs 32768 positions for the frames alone \(4 each\); the context holds 32768/);
    expect(check(['--image', IMAGE, '--max-tiles', '100000'])).toThrow(/--max-tiles 100000 is above the limit of \d+ tiles/);
  });

  it('an image that is a device, not a file (/dev/zero): refused from its metadata', async () => {
    await expect(checkInputs(parse(['--image', '/dev/zero']))).rejects.toThrow(/cannot read image \/dev\/zero: .*not a regular file/);
  });

  it('a video segment outside the video, and a file that is not a video (its error said once)', async () => {
    await expect(checkInputs(parse(['--video', VIDEO, '--start', '0', '--end', '1']))).resolves.toBeUndefined();
    await expect(checkInputs(parse(['--video', VIDEO, '--start', '40', '--end', '50']))).rejects.toThrow(/--start 40 --end 50 is outside .*selects no frames/);
    const notVideo = join(ROOT, 'package.json');
    const err = await checkInputs(parse(['--video', notVideo])).catch((e: Error) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message.match(/cannot read video/g) ?? [], (err as Error).message).toHaveLength(1);
    // the library says it once too (readMedia needs only the model's config)
    const model_ = { config: await loadConfig(model) } as unknown as InternVL;
    const libraryErr = await readMedia(model_, { video: { path: notVideo } }).catch((e: Error) => e);
    expect(libraryErr).toBeInstanceOf(InputError);
    expect((libraryErr as Error).message.match(/cannot read video/g) ?? [], (libraryErr as Error).message).toHaveLength(1);
  });
});

describe('exit statuses of checkpoint and download failures', () => {
  it('a corrupt checkpoint (a truncated shard) exits 2 naming the file', async () => {
    const bad = join(tmp, 'corrupt');
    mkdirSync(bad);
    for (const f of readdirSync(model)) copyFileSync(join(model, f), join(bad, f));
    const shard = readdirSync(bad).find((f) => f.endsWith('.safetensors'))!;
    truncateSync(join(bad, shard), 100);
    const r = await run(['--model', bad, '--prompt', 'hi']);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(new RegExp(`cannot load the checkpoint in .*corrupt: .*${shard.replace('.', '\\.')}`));
    expect(r.stderr).not.toMatch(/PVC_DEBUG/);
  }, 60_000);

  it.skipIf(existsSync(join(ROOT, 'weights', 'PVC-InternVL2-8B', 'config.json')))('a download that cannot reach the hub exits 3', async () => {
    const r = await run(['--image', IMAGE], '', { HF_ENDPOINT: 'http://127.0.0.1:9' });
    expect(r.code, r.stderr).toBe(3);
    expect(r.stderr).toMatch(/Cannot reach http:\/\/127\.0\.0\.1:9/);
    expect(r.stderr).not.toMatch(/PVC_DEBUG/);
  }, 60_000);

  it('scripts/download.ts says the same with the same status', async () => {
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const p = spawn(process.execPath, ['--import', 'tsx', 'scripts/download.ts', '--dir', join(tmp, 'download')], { cwd: ROOT, env: { ...process.env, HF_ENDPOINT: 'http://127.0.0.1:9' } });
      let stderr = '';
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      p.on('close', (code) => resolve({ code, stderr }));
    });
    expect(r.code, r.stderr).toBe(3);
    expect(r.stderr).toMatch(/download failed \(offline\): Cannot reach/);
  }, 60_000);
});
