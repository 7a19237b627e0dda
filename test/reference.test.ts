// Runs the PyTorch reference's self-tests (test/reference/test_reference.py) so CI exercises them.
// They need Debian's /usr/bin/python3 with torch, numpy, PIL, sentencepiece, and ffmpeg on PATH.
// The child runs asynchronously: a synchronous spawn blocks the test worker's event loop for the
// whole minute, and vitest's worker RPC then times out ("Timeout calling onTaskUpdate").

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const PYTHON = process.env.PVC_PYTHON ?? '/usr/bin/python3';

describe('PyTorch reference (test/reference)', () => {
  it('passes its python self-tests', async () => {
    const run = await promisify(execFile)(PYTHON, ['-m', 'unittest', 'discover', '-s', 'test/reference', '-p', 'test_*.py'], {
      cwd: new URL('..', import.meta.url).pathname,
      encoding: 'utf8',
      timeout: 170_000,
      maxBuffer: 64 * 2 ** 20,
      env: { ...process.env, OMP_NUM_THREADS: '1' },
    }).then(
      (r) => ({ status: 0, log: `${r.stdout}\n${r.stderr}` }),
      (e: { code?: number | string; stdout?: string; stderr?: string; message: string }) => {
        if (typeof e.code === 'string') throw new Error(`could not run ${PYTHON}: ${e.message}`);
        return { status: e.code ?? -1, log: `${e.stdout ?? ''}\n${e.stderr ?? ''}` };
      },
    );
    expect(run.status, run.log).toBe(0);
    expect(run.log).toMatch(/\nOK/);
  }, 180_000);
});
