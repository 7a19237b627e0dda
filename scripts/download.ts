// Download the checkpoint from the Hugging Face hub (resumable, verified):
//   npm run download -- [--repo R] [--revision V] [--dir D]
// Honours HF_ENDPOINT (a mirror) and HF_TOKEN (gated or private repos). Run it again to resume.

import { parseArgs } from 'node:util';
import { DEFAULT_DIR, DEFAULT_REPO, DownloadError, ensureWeights, type DownloadProgress } from '../src/weights/download.js';

const { values } = parseArgs({
  options: {
    repo: { type: 'string', default: DEFAULT_REPO },
    revision: { type: 'string', default: 'main' },
    dir: { type: 'string', default: DEFAULT_DIR },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  console.error(`usage: npm run download -- [--repo ${DEFAULT_REPO}] [--revision main] [--dir ${DEFAULT_DIR}]\n(env: HF_ENDPOINT, HF_TOKEN)`);
  process.exit(0);
}

const size = (n: number) => (n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : `${(n / 1e6).toFixed(1)} MB`);
const time = (s: number) => (!Number.isFinite(s) ? '--:--' : `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, '0')}`);
const tty = process.stderr.isTTY;
let last = 0;
let lastFile = '';
/** a progress line is on screen without its newline */
let barOpen = false;
const closeBar = () => {
  if (barOpen) process.stderr.write('\n');
  barOpen = false;
};

function bar(p: DownloadProgress): void {
  const now = performance.now();
  const done = p.done === p.total;
  if (now - last < (tty ? 200 : 5000) && !done && p.file === lastFile) return;
  last = now;
  lastFile = p.file;
  const frac = p.total ? p.done / p.total : 1;
  const width = 30;
  const filled = Math.round(frac * width);
  const line = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(frac * 100).toFixed(1).padStart(5)}%  ${size(p.done)} / ${size(p.total)}  ${size(p.bytesPerSecond)}/s  ETA ${time(p.etaSeconds)}  ${p.file}`;
  process.stderr.write(tty ? `\r${line}\x1b[K` : `${line}\n`);
  barOpen = tty;
}

const start = performance.now();
try {
  const r = await ensureWeights(values.dir!, {
    repo: values.repo,
    revision: values.revision,
    onProgress: bar,
    log: (l) => {
      closeBar();
      console.error(l);
    },
  });
  closeBar();
  if (r.alreadyComplete) console.error(`${r.dir} already holds a complete checkpoint; nothing to do`);
  else console.error(`${r.dir}: ${r.downloaded.length} file(s) downloaded and verified, ${r.kept.length} already present (${r.commit}) in ${((performance.now() - start) / 1000).toFixed(1)} s`);
} catch (e) {
  closeBar();
  if (!(e instanceof DownloadError)) throw e;
  console.error(`download failed (${e.kind}): ${e.message}`);
  process.exit(3); // run.ts's status for a failed download (README)
}
