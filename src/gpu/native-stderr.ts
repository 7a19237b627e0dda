// Dawn's two adapter warnings, kept off a command-line program's stderr.
//
// When Dawn creates a Vulkan adapter whose driver reports more dynamic buffers than Dawn supports
// (lavapipe reports 1000000), its Limits.cpp clamps the limits and says so with dawn::WarningLog:
//   Warning: maxDynamicUniformBuffersPerPipelineLayout artificially reduced from 1000000 to 16 ...
//   Warning: maxDynamicStorageBuffersPerPipelineLayout artificially reduced from 1000000 to 16 ...
// That log writes to file descriptor 2 from native code, before any limit is requested, with no
// callback to route it; Node cannot point fd 2 elsewhere inside a running process. So a program
// runs itself once more as a child with stderr piped, and forwards everything but those lines.
// Only Node programs need this (run.ts, the server); the library itself never relaunches.

import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { isatty } from 'node:tty';

const CHILD_MARK = 'PVC_STDERR_FILTERED';
/** Set in the child when the parent's stderr is a terminal (the child's is a pipe): progress bars stay bars. */
export const STDERR_IS_TTY = 'PVC_STDERR_TTY';
const DAWN_WARNING = /^Warning: maxDynamic(Uniform|Storage)BuffersPerPipelineLayout artificially reduced from \d+ to \d+ to fit dynamic offset allocation limit\.\r?$/;

/** Whether stderr is (or, in the child, stands for) a terminal. */
export function stderrIsTty(): boolean {
  return Boolean(process.stderr.isTTY) || process.env[STDERR_IS_TTY] === '1';
}

/**
 * Drops Dawn's warning lines from a byte stream and passes everything else on as it comes: only a
 * partial line that could still become a warning is held back (progress bars end in \r, not \n).
 */
export function dawnWarningFilter(write: (s: string) => void): { push(chunk: string): void; end(): void } {
  let held = '';
  const prefix = 'Warning: maxDynamic';
  return {
    push(chunk) {
      const lines = (held + chunk).split('\n');
      held = lines.pop()!;
      let out = '';
      for (const line of lines) if (!DAWN_WARNING.test(line)) out += `${line}\n`;
      const couldBeWarning = held.length > 0 && (prefix.startsWith(held) || held.startsWith(prefix));
      if (!couldBeWarning) {
        out += held;
        held = '';
      }
      if (out) write(out);
    },
    end() {
      if (held && !DAWN_WARNING.test(held)) write(held);
      held = '';
    },
  };
}

/**
 * In the program as the user started it: run the same program as a child with stderr filtered,
 * and resolve with the exit status to leave with. In that child: resolve with null (go on).
 * Signals: a terminal's Ctrl-C reaches both processes (same process group), so the parent lets
 * the child handle it; a signal sent to the parent alone (kill, a supervisor) is passed on, and
 * the parent's death (SIGKILL included) reaches the child as its IPC channel closing.
 */
export async function runWithDawnWarningsFiltered(): Promise<number | null> {
  if (process.env[CHILD_MARK] === '1') {
    // The IPC channel closes when the parent dies, even by SIGKILL: stop then as if sent SIGTERM
    // (the server finishes its answers) instead of running on, orphaned, holding the weights.
    process.channel?.unref();
    process.once('disconnect', () => process.kill(process.pid, 'SIGTERM'));
    return null;
  }
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: ['inherit', 'inherit', 'pipe', 'ipc'],
    env: { ...process.env, [CHILD_MARK]: '1', [STDERR_IS_TTY]: process.stderr.isTTY ? '1' : '' },
  });
  const filter = dawnWarningFilter((s) => process.stderr.write(s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => filter.push(s));
  const pass = (signal: NodeJS.Signals) => () => {
    if (signal !== 'SIGINT' || !isatty(0)) child.kill(signal);
  };
  const handlers = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map((s) => [s, pass(s)] as const);
  for (const [s, h] of handlers) process.on(s, h);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('close', (c, s) => resolve([c, s])));
  filter.end();
  for (const [s, h] of handlers) process.off(s, h);
  if (signal) return 128 + (constants.signals[signal] ?? 0);
  return code ?? 1;
}
