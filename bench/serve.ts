// `npm run bench:serve`: load test of the OpenAI-compatible server on loopback.
//
// Starts `scripts/serve.ts` as a child process (its own RSS is what we sample), warms it up, then:
//   1. ceiling: one client, requests back to back for --ceiling-seconds: what the one GPU worker does
//      with no contention (N clients cannot beat it: there is one worker);
//   2. load: --clients concurrent clients for --seconds (and at most --max-requests), mixing plain
//      and streamed requests, text and image (data: URL), and streams the client drops after the
//      first token. A 429 is honoured (the client waits Retry-After) and counted.
// Reports requests/s, p50/p99 time to first token (streams) and total latency, 429s, disconnects,
// RSS at start, peak and end, and checks: the server never crashed, every request got a status (or
// was dropped by its own client), every stream ended with data: [DONE], and SIGTERM exits 0.
// Loopback only; bounded in time and count; stops by itself.

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { writeCheckpoint } from '../src/weights/synthetic.js';
import { SHARED } from '../test/util.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    clients: { type: 'string', default: '8' },
    seconds: { type: 'string', default: '60' },
    'ceiling-seconds': { type: 'string', default: '15' },
    'max-requests': { type: 'string', default: '5000' },
    queue: { type: 'string', default: '4' },
    'max-tokens': { type: 'string', default: '16' },
    json: { type: 'boolean', default: false },
  },
});
const CLIENTS = Number(values.clients);
const SECONDS = Math.min(Number(values.seconds), 600);
const CEILING_SECONDS = Number(values['ceiling-seconds']);
const MAX_REQUESTS = Number(values['max-requests']);
const MAX_TOKENS = Number(values['max-tokens']);
const ROOT = resolve(import.meta.dirname, '..');

const IMAGE = `data:image/jpeg;base64,${readFileSync(join(SHARED, 'assets/example_image1.jpg')).toString('base64')}`;
type Kind = 'text' | 'image' | 'stream-text' | 'stream-image' | 'disconnect';
const MIX: [Kind, number][] = [
  ['text', 0.25],
  ['image', 0.2],
  ['stream-text', 0.2],
  ['stream-image', 0.2],
  ['disconnect', 0.15],
];

interface Outcome {
  kind: Kind;
  status: number | 'dropped' | 'lost';
  ttftMs?: number;
  totalMs: number;
  retryAfter?: number;
  detail?: string;
}

// ---- the server under test ----
let tmp: string | undefined;
let model = values.model;
if (!model) {
  tmp = mkdtempSync(join(tmpdir(), 'bench-serve-'));
  model = join(tmp, 'tiny');
  await writeCheckpoint(model, 'tiny', { seed: 0 });
}
const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/serve.ts', '--model', model, '--port', '0', '--queue', String(values.queue), '--max-tokens', String(MAX_TOKENS)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
let log = '';
child.stdout.on('data', (d) => (log += d));
child.stderr.on('data', (d) => (log += d));
let exitCode: number | null | undefined;
const exited = new Promise<void>((r) => child.on('exit', (code) => ((exitCode = code), r())));
const base = await new Promise<string>((resolveBase, reject) => {
  const look = () => {
    const m = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(log);
    if (m) resolveBase(m[1]);
    else if (exitCode !== undefined) reject(new Error(`the server exited: ${log}`));
    else setTimeout(look, 50);
  };
  look();
});
for (;;) {
  const h = (await (await fetch(`${base}/health`)).json()) as { status: string };
  if (h.status === 'ready') break;
  if (h.status === 'failed') throw new Error(`the model failed to load: ${log}`);
  await new Promise((r) => setTimeout(r, 100));
}
const MODEL_ID = ((await (await fetch(`${base}/v1/models`)).json()) as { data: { id: string }[] }).data[0].id;

const rssMb = (): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))![1]) / 1024;

// ---- one request ----
async function request(kind: Kind): Promise<Outcome> {
  const stream = kind.startsWith('stream') || kind === 'disconnect';
  const content = kind.endsWith('image') ? [{ type: 'image_url', image_url: { url: IMAGE } }, { type: 'text', text: 'Describe the image.' }] : 'Tell me a story.';
  const body = { model: MODEL_ID, messages: [{ role: 'user', content }], max_tokens: MAX_TOKENS, ignore_eos: true, stream, ...(stream ? { stream_options: { include_usage: true } } : {}) };
  const ac = new AbortController();
  const t0 = performance.now();
  let res: Response;
  try {
    res = await fetch(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: ac.signal });
  } catch (e) {
    return { kind, status: 'lost', totalMs: performance.now() - t0, detail: (e as Error).message };
  }
  try {
    if (res.status !== 200) {
      await res.arrayBuffer();
      return { kind, status: res.status, totalMs: performance.now() - t0, retryAfter: Number(res.headers.get('retry-after') ?? 0) };
    }
    if (!stream) {
      const json = (await res.json()) as { choices: { message: { content: string } }[]; usage: { completion_tokens: number } };
      const ok = typeof json.choices[0].message.content === 'string' && json.usage.completion_tokens === MAX_TOKENS;
      return { kind, status: ok ? 200 : 'lost', totalMs: performance.now() - t0, ttftMs: performance.now() - t0, detail: ok ? undefined : JSON.stringify(json) };
    }
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = '';
    let ttftMs: number | undefined;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
      if (ttftMs === undefined && /"content":"[^"]/.test(text)) {
        ttftMs = performance.now() - t0;
        if (kind === 'disconnect') {
          ac.abort();
          return { kind, status: 'dropped', ttftMs, totalMs: ttftMs };
        }
      }
    }
    const ok = text.endsWith('data: [DONE]\n\n') && text.includes(`"completion_tokens":${MAX_TOKENS}`);
    return { kind, status: ok ? 200 : 'lost', ttftMs, totalMs: performance.now() - t0, detail: ok ? undefined : text.slice(-300) };
  } catch (e) {
    return { kind, status: 'lost', totalMs: performance.now() - t0, detail: (e as Error).message };
  }
}

// seeded choice of request kinds, so runs are comparable
let state = 12345;
const random = () => ((state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
const pickKind = (): Kind => {
  let r = random();
  for (const [k, w] of MIX) if ((r -= w) < 0) return k;
  return 'text';
};

async function drive(clients: number, seconds: number, maxRequests: number, kinds: () => Kind): Promise<{ outcomes: Outcome[]; wallMs: number }> {
  const outcomes: Outcome[] = [];
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  let started = 0;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (performance.now() < deadline && started < maxRequests) {
        started++;
        const o = await request(kinds());
        outcomes.push(o);
        if (o.status === 429) await new Promise((r) => setTimeout(r, Math.min(o.retryAfter || 1, Math.max(0, (deadline - performance.now()) / 1000)) * 1000));
      }
    }),
  );
  return { outcomes, wallMs: performance.now() - t0 };
}

const pct = (xs: number[], p: number) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

function summarize(name: string, r: { outcomes: Outcome[]; wallMs: number }) {
  const answered = r.outcomes.filter((o) => o.status === 200);
  const ttft = r.outcomes.filter((o) => o.ttftMs !== undefined && (o.kind.startsWith('stream') || o.kind === 'disconnect')).map((o) => o.ttftMs!);
  const total = answered.map((o) => o.totalMs);
  const statuses: Record<string, number> = {};
  for (const o of r.outcomes) statuses[String(o.status)] = (statuses[String(o.status)] ?? 0) + 1;
  return {
    name,
    requests: r.outcomes.length,
    seconds: r.wallMs / 1000,
    answeredPerSecond: answered.length / (r.wallMs / 1000),
    ttftP50: pct(ttft, 50),
    ttftP99: pct(ttft, 99),
    totalP50: pct(total, 50),
    totalP99: pct(total, 99),
    statuses,
    lost: r.outcomes.filter((o) => o.status === 'lost').map((o) => `${o.kind}: ${o.detail}`),
  };
}

// warm-up: every kind once (shader pipelines compile on first use)
for (const [k] of MIX) await request(k);

// a two-turn conversation: the second request repeats the first and adds a question; the server
// finds the first in its KV cache and prefills only the new turn
interface Timed {
  choices: { message: { content: string } }[];
  usage: { prompt_tokens: number; prompt_tokens_details: { cached_tokens: number } };
  timings: { prefilled_tokens: number; vision_ms: number; time_to_first_token_ms: number };
}
const chatOnce = async (messages: unknown[]) =>
  (await (await fetch(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL_ID, messages, max_tokens: MAX_TOKENS }) })).json()) as Timed;
const firstTurn = [{ role: 'user', content: [{ type: 'image_url', image_url: { url: IMAGE } }, { type: 'text', text: 'Describe the image.' }] }];
const turn1 = await chatOnce(firstTurn);
const turn2 = await chatOnce([...firstTurn, { role: 'assistant', content: turn1.choices[0].message.content }, { role: 'user', content: 'And the colours?' }]);
const conversation = [turn1, turn2].map((t) => ({ promptTokens: t.usage.prompt_tokens, cachedTokens: t.usage.prompt_tokens_details.cached_tokens, prefilledTokens: t.timings.prefilled_tokens, visionMs: t.timings.vision_ms, ttftMs: t.timings.time_to_first_token_ms }));
const rssStart = rssMb();
const gpuMb = async () => ((await (await fetch(`${base}/health`)).json()) as { memory: { gpu_allocated_bytes: number } }).memory.gpu_allocated_bytes / 2 ** 20;
const gpuStart = await gpuMb();
const heapStart = ((await (await fetch(`${base}/health`)).json()) as { memory: { js_heap_bytes: number } }).memory.js_heap_bytes / 2 ** 20;
let rssPeak = rssStart;
const rssSeries: number[] = []; // every 5 s, to see whether memory levels off
let ticks = 0;
const sampler = setInterval(() => {
  const now = rssMb();
  rssPeak = Math.max(rssPeak, now);
  if (++ticks % 10 === 0) rssSeries.push(Math.round(now));
}, 500);

let k = 0;
const ceilingKinds = MIX.map(([kind]) => kind).filter((kind) => kind !== 'disconnect');
const ceiling = summarize('ceiling (1 client, back to back)', await drive(1, CEILING_SECONDS, MAX_REQUESTS, () => ceilingKinds[k++ % ceilingKinds.length]));
const load = summarize(`load (${CLIENTS} clients)`, await drive(CLIENTS, SECONDS, MAX_REQUESTS, pickKind));
await new Promise((r) => setTimeout(r, 2000));
clearInterval(sampler);
const rssEnd = rssMb();
const health = (await (await fetch(`${base}/health`)).json()) as { status: string; memory: { gpu_allocated_bytes: number; js_heap_bytes: number } };
// the server logs each request its client dropped: time from the disconnect to a free worker, and the turn's decode step
const dropped = log
  .split('\n')
  .filter((l) => l.includes('"request stopped early"'))
  .map((l) => JSON.parse(l) as { why: string; freedMs: number; decodeStepMs: number })
  .filter((l) => l.why === 'client');
const crashedBeforeEnd = exitCode !== undefined;
child.kill('SIGTERM');
await exited;
if (tmp) rmSync(tmp, { recursive: true, force: true });

const report = {
  clients: CLIENTS,
  queue: Number(values.queue),
  maxTokens: MAX_TOKENS,
  conversation,
  ceiling,
  load,
  loadVsCeiling: load.answeredPerSecond / ceiling.answeredPerSecond,
  rssMb: { start: rssStart, peak: rssPeak, end: rssEnd, every5s: rssSeries },
  gpuAllocatedMb: { start: gpuStart, end: health.memory.gpu_allocated_bytes / 2 ** 20 },
  jsHeapMb: { start: heapStart, end: health.memory.js_heap_bytes / 2 ** 20 },
  healthAfter: health.status,
  disconnectsSeenByServer: dropped.length,
  freedAfterDisconnectMs: { p50: pct(dropped.map((d) => d.freedMs), 50), max: Math.max(0, ...dropped.map((d) => d.freedMs)) },
  decodeStepMs: pct(dropped.filter((d) => d.decodeStepMs > 0).map((d) => d.decodeStepMs), 50),
  crashed: crashedBeforeEnd,
  sigtermExit: exitCode,
};
if (values.json) console.log(JSON.stringify(report, null, 2));
else {
  const f = (x: number) => (Number.isFinite(x) ? x.toFixed(0) : '-');
  console.log('| phase | requests | s | answered/s | TTFT p50 / p99 ms | total p50 / p99 ms | statuses |');
  console.log('|---|---|---|---|---|---|---|');
  for (const s of [ceiling, load]) {
    console.log(`| ${s.name} | ${s.requests} | ${s.seconds.toFixed(1)} | ${s.answeredPerSecond.toFixed(2)} | ${f(s.ttftP50)} / ${f(s.ttftP99)} | ${f(s.totalP50)} / ${f(s.totalP99)} | ${JSON.stringify(s.statuses)} |`);
  }
  console.log(`load / ceiling: ${(report.loadVsCeiling * 100).toFixed(0)} %`);
  for (const [i, t] of conversation.entries()) {
    console.log(`conversation turn ${i + 1}: ${t.promptTokens} prompt tokens, ${t.cachedTokens} from the KV cache, ${t.prefilledTokens} prefilled, vision ${f(t.visionMs)} ms, first token ${f(t.ttftMs)} ms`);
  }
  console.log(`RSS MB: start ${rssStart.toFixed(0)}, peak ${rssPeak.toFixed(0)}, end ${rssEnd.toFixed(0)} (end - start ${(rssEnd - rssStart).toFixed(0)}); every 5 s: ${rssSeries.join(' ')}`);
  const freed = report.freedAfterDisconnectMs;
  console.log(`GPU bytes allocated by the engine, MB: start ${report.gpuAllocatedMb.start.toFixed(1)}, end ${report.gpuAllocatedMb.end.toFixed(1)}; JS heap MB: start ${report.jsHeapMb.start.toFixed(1)}, end ${report.jsHeapMb.end.toFixed(1)}`);
  console.log(`disconnects seen by the server: ${report.disconnectsSeenByServer}; worker free after a disconnect: p50 ${f(freed.p50)} ms, max ${f(freed.max)} ms (a decode step: ${f(report.decodeStepMs)} ms)`);
  console.log(`health after: ${health.status}; crashed: ${crashedBeforeEnd}; lost responses: ${ceiling.lost.length + load.lost.length}; SIGTERM exit code: ${exitCode}`);
  for (const l of [...ceiling.lost, ...load.lost].slice(0, 5)) console.log(`  lost: ${l}`);
}
const failed = crashedBeforeEnd || exitCode !== 0 || ceiling.lost.length + load.lost.length > 0;
process.exit(failed ? 1 : 0);
