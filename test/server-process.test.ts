// `npm run serve` as an operator runs it (scripts/serve.ts in a child process): it listens at once
// and /health says "loading" then "ready"; on SIGTERM during a streamed answer it stops taking
// requests, the running answer finishes whole (ending with data: [DONE]) and the process exits 0.
// Bad flags exit 2 with one line.

import { afterAll, describe, expect, it } from 'vitest';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { writeCheckpoint } from '../src/weights/synthetic.js';
import { freshSeed } from './util.js';

const ROOT = join(__dirname, '..');
const tmp = mkdtempSync(join(tmpdir(), 'server-process-test-'));
const children: ChildProcess[] = [];

afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  rmSync(tmp, { recursive: true, force: true });
});

function serve(args: string[]) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/serve.ts', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const address = new Promise<string>((resolve, reject) => {
    const look = () => {
      const m = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) resolve(m[1]);
      else if (child.exitCode !== null) reject(new Error(`serve exited ${child.exitCode}: ${out}`));
      else setTimeout(look, 50);
    };
    look();
  });
  return { child, exited, address, output: () => out };
}

describe('npm run serve', () => {
  it('loading -> ready; SIGTERM mid-stream finishes the answer and exits 0', async () => {
    const model = join(tmp, 'tiny');
    await writeCheckpoint(model, 'tiny', { seed: freshSeed() });
    const s = serve(['--model', model, '--port', '0', '--grace', '60']);
    const base = await s.address;
    for (;;) {
      const h = (await (await fetch(`${base}/health`)).json()) as { status: string };
      if (h.status === 'ready') break;
      expect(h.status).toBe('loading');
      await new Promise((r) => setTimeout(r, 100));
    }

    const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 });
    const stream = await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 16, ignore_eos: true, stream: true, stream_options: { include_usage: true } } as OpenAI.Chat.ChatCompletionCreateParamsStreaming);
    const chunks: OpenAI.Chat.ChatCompletionChunk[] = [];
    let signalled = false;
    for await (const c of stream) {
      chunks.push(c);
      if (!signalled && c.choices[0]?.delta.content) {
        signalled = true;
        s.child.kill('SIGTERM');
      }
    }
    expect(signalled).toBe(true);
    expect(chunks.at(-1)!.usage!.completion_tokens).toBe(16); // finished whole, not cut
    expect(await s.exited, s.output()).toBe(0);
    expect(s.output()).toMatch(/"signal":"SIGTERM".*shutting down/);
    await expect(fetch(`${base}/health`)).rejects.toThrow();
  }, 120_000);

  it('bad flags exit 2 with one line', async () => {
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) =>
      execFile(process.execPath, ['--import', 'tsx', 'scripts/serve.ts', '--model', tmp, '--queue', 'many'], { cwd: ROOT }, (err, _o, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stderr })),
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--queue needs an integer >= 0, got 'many'/);
  }, 60_000);
});
