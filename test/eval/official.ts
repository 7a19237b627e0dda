// Runs test/eval/official.py: PVC's own evaluation code as the reference for the eval tests.

import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { SHARED } from '../util.js';

export const REFERENCE = join(SHARED, 'reference/pvc-eval');

/** Sends one request to official.py (asynchronously: a blocked test worker loses its RPC to vitest). */
export function official<T>(request: object): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/python3', [join(import.meta.dirname, 'official.py'), REFERENCE], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out) as T) : reject(new Error(`official.py failed (${code}): ${err}`))));
    child.stdin.end(JSON.stringify(request));
  });
}
