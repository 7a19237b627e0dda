// The engine's Web Worker: loads a checkpoint (local folder, HTTP folder, or hub download cached in
// the OPFS) through byte sources mounted at /model, and runs chat turns, streaming tokens to the page.

import { BudgetError, ChatSession, formatStats, InputError, loadConfig, loadModel, weightBytes, type LoadedModel } from '../src/index.js';
import { mount, unmount } from '../src/browser/fs.js';
import { DownloadError, ensureHubModel, formatSize, QuotaError, type HubProgress } from '../src/browser/download.js';
import { describeShortfalls, kernelShortfalls, modelShortfalls, type AdapterLimits } from '../src/browser/limits.js';
import { BlobSource, HttpSource } from '../src/browser/source.js';
import { Checkpoint } from '../src/weights/safetensors.js';
import type { QuantCacheUse } from '../src/weights/quant-cache.js';
import type { ErrorKind, FromWorker, ModelSource, ToWorker } from './protocol.js';

const MODEL_DIR = '/model';
type Dtype = Extract<ToWorker, { type: 'load' }>['dtype'];

const post = (m: FromWorker) => (self as unknown as Worker).postMessage(m);

class PageError extends Error {
  constructor(
    readonly kind: ErrorKind,
    message: string,
  ) {
    super(message);
  }
}

let loaded: LoadedModel | null = null;
/** the conversation (its KV cache: each turn prefills only its own tokens) */
let session: ChatSession | null = null;
let abort: AbortController | null = null;
let inputCount = 0;

/** GPU memory the loaded (or loading) model's weights take, for the out-of-memory message. */
let weightNeed: { dtype: string; bytes: number; q4: number } | null = null;

/** The adapter's limits (an error for no WebGPU or limits no kernel can run with). */
async function checkAdapter(): Promise<AdapterLimits> {
  if (!navigator.gpu) throw new PageError('no-webgpu', 'This browser has no WebGPU (navigator.gpu is missing). Use a current Chrome, Edge or Safari, or Firefox with WebGPU enabled.');
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new PageError('no-webgpu', 'WebGPU is present but no adapter is available (the GPU is blocklisted or WebGPU is disabled). In Chrome, check chrome://gpu; on Linux, start it with --enable-unsafe-webgpu.');
  const limits = adapter.limits as unknown as AdapterLimits;
  const short = kernelShortfalls(limits);
  if (short.length) throw new PageError('limits', `This GPU's limits are too small for the engine: ${describeShortfalls(short)}.`);
  return limits;
}

/** Refuses a checkpoint the adapter cannot hold (from its config and tensor headers, before any upload). */
async function checkModelFits(limits: AdapterLimits, dtype: Dtype): Promise<void> {
  const config = await loadConfig(MODEL_DIR);
  const tensors = [...(await Checkpoint.open(MODEL_DIR)).tensors.values()];
  weightNeed = { dtype, bytes: weightBytes(tensors, dtype), q4: weightBytes(tensors, 'q4') };
  const short = modelShortfalls(config, tensors, dtype, limits);
  if (short.length) throw new PageError('limits', `This GPU's limits are too small for this model at ${dtype}: ${describeShortfalls(short)}.`);
}

/** Mounts the checkpoint's files at /model, checked against the adapter's limits (a hub's before downloading); returns bytes fetched from a hub. */
async function mountModel(source: ModelSource, limits: AdapterLimits, dtype: Dtype): Promise<{ name: string; downloaded: number }> {
  unmount(MODEL_DIR);
  if (source.kind === 'folder') {
    if (!source.files.length) throw new PageError('model', 'the chosen folder is empty');
    for (const f of source.files) {
      // webkitRelativePath is "FOLDER/name"; files of subfolders are not part of a checkpoint
      const rel = (f.webkitRelativePath || f.name).split('/').slice(1).join('/') || f.name;
      mount(`${MODEL_DIR}/${rel}`, new BlobSource(f.name, f));
    }
    return { name: source.files[0].webkitRelativePath.split('/')[0] || 'local folder', downloaded: 0 };
  }
  if (source.kind === 'url') {
    const base = source.base.endsWith('/') ? source.base : `${source.base}/`;
    const index = await fetch(new URL('model.safetensors.index.json', base));
    const shards = index.ok ? [...new Set(Object.values(((await index.json()) as { weight_map: Record<string, string> }).weight_map))] : ['model.safetensors'];
    const files = ['config.json', 'tokenizer.model', 'tokenizer_config.json', 'special_tokens_map.json', 'added_tokens.json', ...(index.ok ? ['model.safetensors.index.json'] : []), ...shards];
    await Promise.all(
      files.map(async (name) => {
        try {
          mount(`${MODEL_DIR}/${name}`, await HttpSource.open(new URL(name, base).href));
        } catch (e) {
          if (!/HTTP 404/.test((e as Error).message)) throw e; // optional files may be absent; the loader names missing required ones
        }
      }),
    );
    return { name: base, downloaded: 0 };
  }
  const progress = (p: HubProgress) => post({ type: 'progress', phase: 'download', done: p.done, total: p.total, bytesPerSecond: p.bytesPerSecond, file: p.file });
  // the remote checkpoint's config and tensor headers (Range requests) before gigabytes are fetched
  const { files, commit, downloaded } = await ensureHubModel(source, progress, undefined, async (urls, headers) => {
    try {
      for (const [name, url] of urls) if (/\.(json|safetensors)$/.test(name)) mount(`${MODEL_DIR}/${name}`, await HttpSource.open(url, headers));
      await checkModelFits(limits, dtype);
    } finally {
      unmount(MODEL_DIR);
    }
  });
  for (const [name, file] of files) mount(`${MODEL_DIR}/${name}`, new BlobSource(name, file));
  return { name: `${source.repo}@${commit.slice(0, 10)}`, downloaded };
}

async function load(source: ModelSource, dtype: Dtype): Promise<void> {
  session?.dispose();
  session = null;
  loaded?.dispose();
  loaded = null;
  weightNeed = null;
  const limits = await checkAdapter();
  const { name, downloaded } = await mountModel(source, limits, dtype);
  await checkModelFits(limits, dtype);
  const start = performance.now();
  let bytes = 0;
  let cache: { use: QuantCacheUse; status: string; threads?: number } | undefined;
  loaded = await loadModel(MODEL_DIR, {
    dtype,
    onProgress: (p) => {
      bytes = p.bytesTotal;
      const { quantCache: status, quantCacheUse: use, quantizeWorkers: threads } = p.breakdown;
      cache = status && use ? { use, status, threads } : undefined;
      post({ type: 'progress', phase: 'load', done: p.bytesDone, total: p.bytesTotal, bytesPerSecond: p.bytesPerSecond, quantCache: use });
    },
  });
  session = new ChatSession(loaded.model, loaded.tokenizer, { stopIds: loaded.stopIds });
  const device = loaded.gpu.device;
  void device.lost.then((info) => {
    // a device this worker destroyed itself (a new load, or a page closing) is no longer `loaded`'s
    if (loaded?.gpu.device === device) post({ type: 'error', kind: 'device-lost', message: `The GPU device was lost (${info.reason}${info.message ? `: ${info.message}` : ''}). Reload the model to continue.` });
  });
  post({ type: 'ready', adapter: loaded.gpu.description, model: name, loadSeconds: (performance.now() - start) / 1000, bytes, downloadedBytes: downloaded, quantCache: cache });
}

function mountInput(file: File): string {
  const path = `/input/${inputCount++}-${file.name.replace(/[/\\]/g, '_')}`;
  mount(path, new BlobSource(file.name, file));
  return path;
}

async function turn(msg: Extract<ToWorker, { type: 'chat' }>): Promise<void> {
  if (!loaded || !session) throw new PageError('model', 'load a model first');
  // media belong to a conversation's first turn: new media start a new conversation
  if (msg.images.length || msg.video) {
    session.reset();
    unmount('/input');
  }
  abort = new AbortController();
  const it = session.turn({
    question: msg.question,
    images: msg.images.map(mountInput),
    video: msg.video ? { path: mountInput(msg.video), frames: msg.settings.frames } : undefined,
    maxTiles: msg.settings.maxTiles,
    maxNewTokens: msg.settings.maxNewTokens,
    sampling: msg.settings.sampling,
    signal: abort.signal,
  });
  for (let r = await it.next(); ; r = await it.next()) {
    if (r.done) {
      const { stats } = r.value;
      post({ type: 'done', answer: r.value.answer, stats: formatStats(stats), stopped: stats.stop === 'aborted', decodeTokensPerSecond: stats.decodeTokensPerSecond, newTokens: stats.newTokens });
      return;
    }
    post({ type: 'token', text: r.value });
    // let the message loop run so that a stop request is seen between tokens
    await new Promise((res) => setTimeout(res, 0));
  }
}

function classify(e: unknown): { kind: ErrorKind; message: string } {
  if (e instanceof PageError) return { kind: e.kind, message: e.message };
  const message = e instanceof Error ? e.message : String(e);
  if (e instanceof InputError) return { kind: 'input', message };
  if (e instanceof QuotaError) return { kind: 'quota', message };
  if (e instanceof DownloadError) return { kind: 'download', message };
  if (loaded?.gpu.lost || /device was lost|device is lost/i.test(message)) return { kind: 'device-lost', message: `${message}. Reload the model to continue.` };
  // the memory budget's refusals (src/budget.ts): a binding, the memory, or the context
  if (e instanceof BudgetError && / in one binding, /.test(message)) return { kind: 'limits', message: `This GPU's limits are too small for this request: ${message}` };
  if (e instanceof BudgetError && !/^not enough memory/.test(message)) return { kind: 'input', message };
  if (e instanceof BudgetError || e instanceof RangeError || /out[- ]of[- ]memory|allocation failed|allocating \d+ bytes failed/i.test(message)) {
    const need = weightNeed ? ` The ${weightNeed.dtype} weights need ${formatSize(weightNeed.bytes)} of GPU memory${weightNeed.dtype === 'q4' ? '' : ` (q4: ${formatSize(weightNeed.q4)})`}.` : '';
    return { kind: 'out-of-memory', message: `Out of GPU memory: ${message}.${need} Try q4, fewer tiles or frames, or close other GPU-heavy tabs.` };
  }
  if (/storage binding limit|limit of \d+/i.test(message)) return { kind: 'limits', message: `This GPU's limits are too small for this request: ${message}` };
  if (/config\.json|safetensors|tokenizer|checkpoint|ENOENT|Range request|Content-Length/i.test(message)) return { kind: 'model', message };
  return { kind: 'internal', message };
}

self.onmessage = async (ev: MessageEvent<ToWorker>) => {
  const msg = ev.data;
  if (msg.type === 'stop') {
    abort?.abort();
    return;
  }
  try {
    if (msg.type === 'reset') {
      session?.reset(); // refused while a turn runs (the page disables New conversation then)
      unmount('/input');
    } else if (msg.type === 'load') await load(msg.source, msg.dtype);
    else await turn(msg);
  } catch (e) {
    post({ type: 'error', ...classify(e) });
  }
};
