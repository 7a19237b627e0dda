// The page: model choice, attachments, chat log, settings; the engine runs in worker.ts.

import type { ChatSettings, FromWorker, ModelSource, ToWorker } from './protocol.js';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const input = (id: string) => $<HTMLInputElement>(id);
const GB = (n: number) => `${(n / 1e9).toFixed(2)} GB`;

let worker: Worker;
let lastSource: ModelSource | null = null;
let attachments: File[] = [];
let busy = false;
let answerEl: HTMLElement | null = null;

function send(m: ToWorker): void {
  worker.postMessage(m);
}

function showError(message: string, reload = false): void {
  $('error-text').textContent = message;
  $('error-reload').hidden = !reload;
  $('error').hidden = false;
}

function setBusy(b: boolean): void {
  busy = b;
  $<HTMLButtonElement>('send').disabled = b || $('send').dataset.ready !== '1';
  $<HTMLButtonElement>('stop').disabled = !b;
  // a load or a new conversation while the worker loads or answers would take the model or the
  // conversation from under it (Stop first)
  for (const id of ['load-hub', 'load-url', 'folder', 'dtype', 'new-chat']) $<HTMLInputElement>(id).disabled = b;
}

function startWorker(): void {
  worker = new Worker(new URL('./worker.ts', import.meta.url), { type: 'module' });
  worker.onmessage = (ev: MessageEvent<FromWorker>) => onMessage(ev.data);
  worker.onerror = (ev) => {
    showError(`The engine stopped unexpectedly: ${ev.message || 'worker error'}`, true);
    setBusy(false);
  };
}

/** what a q8/q4 load is doing, beside its progress */
const CACHE_NOTE: Record<string, string> = {
  read: ' · the quantized copy saved by an earlier load',
  writing: ' · quantizing; a copy is saved for the next load',
  none: ' · quantizing',
};

function onMessage(m: FromWorker): void {
  const progress = $<HTMLProgressElement>('progress');
  switch (m.type) {
    case 'progress':
      progress.hidden = false;
      progress.value = m.total ? m.done / m.total : 0;
      $('model-status').textContent = `${m.phase === 'download' ? 'Downloading' : 'Loading onto the GPU'}: ${GB(m.done)} of ${GB(m.total)} (${(m.bytesPerSecond / 1e6).toFixed(1)} MB/s)${m.file ? ` · ${m.file}` : ''}${CACHE_NOTE[m.quantCache ?? ''] ?? ''}`;
      break;
    case 'ready':
      progress.hidden = true;
      $('model-status').textContent = `Ready: ${m.model} on ${m.adapter}. Loaded ${GB(m.bytes)} in ${m.loadSeconds.toFixed(1)} s (${(m.bytes / 1e6 / m.loadSeconds).toFixed(1)} MB/s)${m.downloadedBytes ? `; downloaded ${GB(m.downloadedBytes)}` : ''}.${m.quantCache ? ` Quantized copy: ${m.quantCache.status}${m.quantCache.threads ? ` (quantized on ${m.quantCache.threads} worker${m.quantCache.threads > 1 ? 's' : ''})` : ''}.` : ''}`;
      $('model-status').dataset.state = 'ready';
      $('model-status').dataset.quantCache = m.quantCache?.use ?? '';
      $('model-status').dataset.loadSeconds = String(m.loadSeconds);
      $('model-status').dataset.bytes = String(m.bytes);
      $('model-status').dataset.downloaded = String(m.downloadedBytes);
      $('send').dataset.ready = '1';
      setBusy(false);
      break;
    case 'token':
      answerEl!.querySelector('.text')!.textContent += m.text;
      break;
    case 'done': {
      const stats = document.createElement('div');
      stats.className = 'stats';
      stats.textContent = m.stats;
      answerEl!.append(stats);
      answerEl!.dataset.done = m.stopped ? 'stopped' : 'done';
      answerEl!.dataset.decodeTps = String(m.decodeTokensPerSecond);
      answerEl!.dataset.newTokens = String(m.newTokens);
      answerEl = null;
      setBusy(false);
      break;
    }
    case 'error':
      progress.hidden = true;
      showError(m.message, m.kind === 'device-lost');
      $('error').dataset.kind = m.kind;
      if (m.kind === 'device-lost' || m.kind === 'no-webgpu' || m.kind === 'limits') $('send').dataset.ready = '0';
      if (answerEl) {
        answerEl.dataset.done = 'error';
        answerEl = null;
      }
      if ($('model-status').dataset.state !== 'ready' || m.kind === 'device-lost') $('model-status').textContent = 'No model loaded.';
      setBusy(false);
      break;
  }
}

function load(source: ModelSource): void {
  lastSource = source;
  $('error').hidden = true;
  $('send').dataset.ready = '0';
  $('model-status').dataset.state = 'loading';
  $('model-status').textContent = 'Starting…';
  setBusy(true);
  $<HTMLButtonElement>('stop').disabled = true;
  send({ type: 'load', source, dtype: $<HTMLSelectElement>('dtype').value as 'bf16' | 'q8' | 'q4' });
}

function settings(): ChatSettings {
  const num = (id: string) => (input(id).value === '' ? undefined : Number(input(id).value));
  const temperature = num('temperature') ?? 0;
  // top-p and top-k shape sampling only; greedy decoding refuses them (as the CLI does)
  const sampled = temperature > 0 ? { topP: num('top-p'), topK: num('top-k'), seed: num('seed') } : {};
  return {
    maxNewTokens: num('max-new-tokens') ?? 1024,
    maxTiles: num('max-tiles'),
    frames: num('frames') ?? 32,
    sampling: { temperature, repetitionPenalty: num('repetition-penalty'), ...sampled },
  };
}

function renderAttachments(): void {
  const box = $('attachments');
  box.replaceChildren(...attachments.map(preview));
}

function preview(f: File): HTMLElement {
  const url = URL.createObjectURL(f);
  if (f.type.startsWith('video/') || /\.mp4$/i.test(f.name)) {
    const v = document.createElement('video');
    v.src = url;
    v.muted = true;
    return v;
  }
  const img = document.createElement('img');
  img.src = url;
  img.alt = f.name;
  return img;
}

function addFiles(files: ArrayLike<File>): void {
  const list = Array.from(files);
  const videos = list.filter((f) => f.type.startsWith('video/') || /\.mp4$/i.test(f.name));
  if (videos.length > 1 || (videos.length && list.length > 1)) {
    showError('Give one video, or one or more images (not both).');
    return;
  }
  attachments = videos.length ? videos : [...attachments.filter((f) => !f.type.startsWith('video/')), ...list];
  renderAttachments();
}

function ask(): void {
  const question = $<HTMLTextAreaElement>('question').value.trim();
  if (!question || busy) return;
  $('error').hidden = true;
  const video = attachments.find((f) => f.type.startsWith('video/') || /\.mp4$/i.test(f.name));
  const images = video ? [] : attachments;
  const user = document.createElement('div');
  user.className = 'msg user';
  user.append(...attachments.map(preview), document.createTextNode(question));
  answerEl = document.createElement('div');
  answerEl.className = 'msg assistant';
  const text = document.createElement('span');
  text.className = 'text';
  answerEl.append(text);
  $('log').append(user, answerEl);
  setBusy(true);
  send({ type: 'chat', question, images, video, settings: settings() });
  attachments = [];
  renderAttachments();
  $<HTMLTextAreaElement>('question').value = '';
}

startWorker();
$('load-hub').onclick = () => load({ kind: 'hub', endpoint: input('hub-endpoint').value.replace(/\/$/, ''), repo: input('hub-repo').value.trim(), revision: input('hub-revision').value.trim() || 'main', token: input('hub-token').value || undefined });
$('load-url').onclick = () => load({ kind: 'url', base: new URL(input('model-url').value, location.href).href });
input('folder').onchange = () => load({ kind: 'folder', files: Array.from(input('folder').files ?? []) });
input('media').onchange = () => {
  addFiles(input('media').files ?? []);
  input('media').value = ''; // picking the same file again must fire 'change' again
};
$('send').onclick = ask;
$('question').onkeydown = (e) => {
  if (e.key === 'Enter' && !e.shiftKey) {
    e.preventDefault();
    ask();
  }
};
$('stop').onclick = () => send({ type: 'stop' });
$('new-chat').onclick = () => {
  send({ type: 'reset' });
  $('log').replaceChildren();
};
$('error-close').onclick = () => ($('error').hidden = true);
$('error-reload').onclick = () => {
  worker.terminate();
  startWorker();
  if (lastSource) load(lastSource);
};
const drop = $('drop');
drop.ondragover = (e) => {
  e.preventDefault();
  drop.classList.add('over');
};
drop.ondragleave = () => drop.classList.remove('over');
drop.ondrop = (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  addFiles(e.dataTransfer?.files ?? []);
};
const params = new URLSearchParams(location.search);
if (params.get('model')) {
  input('model-url').value = params.get('model')!;
  $('load-url').click();
}
