// Runs the PyTorch reference's self-tests (test/reference/test_reference.py) so CI exercises them.
// They need Debian's /usr/bin/python3 with torch, numpy, PIL, sentencepiece, and ffmpeg on PATH.

import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

const PYTHON = process.env.PVC_PYTHON ?? '/usr/bin/python3';

describe('PyTorch reference (test/reference)', () => {
  it('passes its python self-tests', () => {
    const run = spawnSync(PYTHON, ['-m', 'unittest', 'discover', '-s', 'test/reference', '-p', 'test_*.py'], {
      cwd: new URL('..', import.meta.url).pathname,
      encoding: 'utf8',
      timeout: 170_000,
      env: { ...process.env, OMP_NUM_THREADS: '1' },
    });
    if (run.error) throw new Error(`could not run ${PYTHON}: ${run.error.message}`);
    const log = `${run.stdout}\n${run.stderr}`;
    expect(run.status, log).toBe(0);
    expect(log).toMatch(/\nOK/);
  }, 180_000);
});
