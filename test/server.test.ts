// The OpenAI-compatible server on loopback, driven by the official `openai` npm client, on a freshly
// seeded tiny checkpoint. Answers (whole and streamed) equal the library's greedy answer for the
// same inputs as run.ts passes them (run.ts = chat() with file paths; test/e2e.test.ts ties that to
// the PyTorch reference): one image, two images, the video, a second turn. Every error class gets
// its status, code and message and the server answers the next request; a full queue answers 429
// with Retry-After; a client abort mid-stream frees the worker; a GPU error answers 500 and the
// model is reloaded.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer as createHttpServer, type Server } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI, { APIError } from 'openai';
import { chat, ChatSession, type ChatRequest, type ChatResult } from '../src/generate/generate.js';
import { loadModel, type LoadedModel } from '../src/index.js';
import { createServer, type ChatServer } from '../src/server/app.js';
import { writeCheckpoint } from '../src/weights/synthetic.js';
import { freshSeed, SHARED } from './util.js';

const ASSETS = join(SHARED, 'assets');
const IMAGE1 = join(ASSETS, 'example_image1.jpg');
const IMAGE2 = join(ASSETS, 'example_image2.jpg');
const VIDEO = join(ASSETS, 'example_video.mp4');
const MAX_NEW = 16;
const MAX_TILES = 4;
const FRAMES = 4;
const BODY_LIMIT = 4 << 20;
const MODEL = 'tiny-test';

const dataUrl = (path: string, type: string) => `data:${type};base64,${readFileSync(path).toString('base64')}`;
const image = (url: string) => ({ type: 'image_url' as const, image_url: { url } });
const text = (t: string) => ({ type: 'text' as const, text: t });
type Content = OpenAI.Chat.ChatCompletionContentPart[];

// the same inputs as test/e2e.test.ts gives run.ts, as a library call and as an API request
const CASES = {
  image: {
    req: { question: 'Please describe the image in detail.', images: [IMAGE1] },
    content: [image(dataUrl(IMAGE1, 'image/jpeg')), text('Please describe the image in detail.')],
  },
  two_images: {
    req: { question: 'What are the similarities and differences between these two images?', images: [IMAGE1, IMAGE2] },
    content: [image(dataUrl(IMAGE1, 'image/jpeg')), image(dataUrl(IMAGE2, 'image/jpeg')), text('What are the similarities and differences between these two images?')],
  },
  video: {
    req: { question: 'What is happening in this video?', video: { path: VIDEO, frames: FRAMES } },
    content: [{ type: 'video_url', video_url: { url: dataUrl(VIDEO, 'video/mp4'), frames: FRAMES } }, text('What is happening in this video?')] as unknown as Content,
  },
} satisfies Record<string, { req: ChatRequest; content: Content }>;
type Case = keyof typeof CASES;
const SECOND_QUESTION = 'And the colours?';

const tmp = mkdtempSync(join(tmpdir(), 'server-test-'));
const ckpt = join(tmp, 'tiny');
const seed = freshSeed();
const logs: Record<string, unknown>[] = [];
let m: LoadedModel;
let server: ChatServer;
let base: string;
let client: OpenAI;
let mediaHost: Server;
let mediaBase: string;
let loads = 0;
const expected = {} as Record<Case | 'second_turn' | 'second_turn_fresh', ChatResult>;

async function libraryAnswer(req: ChatRequest): Promise<ChatResult> {
  const it = chat(m.model, m.tokenizer, { maxTiles: MAX_TILES, maxNewTokens: MAX_NEW, stopIds: m.stopIds, ...req });
  for (;;) {
    const r = await it.next();
    if (r.done) return r.value;
  }
}

async function apiError(p: Promise<unknown>): Promise<APIError> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  if (!(e instanceof APIError)) throw new Error(`expected an APIError, got ${String(e)}`);
  return e;
}

const ask = (content: string | Content, extra: Partial<OpenAI.Chat.ChatCompletionCreateParamsNonStreaming> = {}) =>
  client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content }], max_tokens: MAX_NEW, ...extra });

async function streamText(content: string | Content) {
  const stream = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content }], max_tokens: MAX_NEW, stream: true, stream_options: { include_usage: true } });
  let answer = '';
  const chunks: OpenAI.Chat.ChatCompletionChunk[] = [];
  for await (const c of stream) {
    chunks.push(c);
    answer += c.choices[0]?.delta.content ?? '';
  }
  return { answer, chunks };
}

const health = async () => (await (await fetch(`${base}/health`)).json()) as { status: string; queued: number };

async function waitFor(what: string, cond: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!(await cond())) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  await writeCheckpoint(ckpt, 'tiny', { seed });
  m = await loadModel(ckpt);
  for (const name of Object.keys(CASES) as Case[]) expected[name] = await libraryAnswer(CASES[name].req);
  // a conversation kept by the library: the second turn prefills only its own tokens
  const session = new ChatSession(m.model, m.tokenizer, { stopIds: m.stopIds, splitSpecialTokens: true });
  try {
    for (const req of [CASES.image.req, { question: SECOND_QUESTION }]) {
      const it = session.turn({ maxTiles: MAX_TILES, maxNewTokens: MAX_NEW, ...req });
      let r = await it.next();
      while (!r.done) r = await it.next();
      expected.second_turn = r.value;
    }
  } finally {
    session.dispose();
  }
  expected.second_turn_fresh = await libraryAnswer({ question: SECOND_QUESTION, images: [IMAGE1], history: [{ question: expected.image.turn.question, answer: 'Something else.' }] });

  const image2 = readFileSync(IMAGE2);
  mediaHost = createHttpServer((req, res) => (req.url?.startsWith('/ok/') ? res.end(image2) : res.writeHead(404).end()));
  await new Promise<void>((r) => mediaHost.listen(0, '127.0.0.1', r));
  mediaBase = `http://127.0.0.1:${(mediaHost.address() as AddressInfo).port}`;

  server = createServer({
    // the first load hands over the model the expectations came from; a reload makes a fresh one
    load: async () => (loads++ === 0 ? m : loadModel(ckpt)),
    modelName: MODEL,
    queueSize: 1,
    bodyLimit: BODY_LIMIT,
    maxImages: 2,
    maxFrames: FRAMES,
    maxTiles: MAX_TILES,
    contextLength: 1024,
    defaultMaxTokens: MAX_NEW,
    media: { allow: [ASSETS, `${mediaBase}/ok/`], maxFetchBytes: BODY_LIMIT, fetchTimeoutMs: 10_000 },
    logger: { level: 'info', stream: { write: (line: string) => void logs.push(JSON.parse(line)) } },
  });
  await server.loaded;
  base = await server.app.listen({ port: 0, host: '127.0.0.1' });
  client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 });
}, 240_000);

afterAll(async () => {
  await server?.shutdown(0);
  mediaHost?.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe(`answers equal the library's greedy answer (tiny checkpoint seed ${seed})`, () => {
  for (const name of Object.keys(CASES) as Case[]) {
    it(`${name}: whole and streamed`, async () => {
      const want = expected[name];
      const whole = await ask(CASES[name].content);
      expect(whole.choices[0].message.content).toBe(want.answer);
      expect(whole.choices[0].finish_reason).toBe(want.stats.stop === 'stop-token' ? 'stop' : 'length');
      expect(whole.usage).toEqual({ prompt_tokens: want.stats.promptTokens, completion_tokens: want.ids.length, total_tokens: want.stats.promptTokens + want.ids.length, prompt_tokens_details: { cached_tokens: 0 } });
      const timings = (whole as unknown as { timings: Record<string, number> }).timings;
      expect(timings.vision_ms).toBeGreaterThan(0);
      expect(timings.prefill_tokens_per_second).toBeGreaterThan(0);

      const { answer, chunks } = await streamText(CASES[name].content);
      expect(answer).toBe(want.answer);
      expect(chunks[0].choices[0].delta.role).toBe('assistant');
      expect(chunks.at(-2)!.choices[0].finish_reason).toBe(whole.choices[0].finish_reason);
      expect(chunks.at(-1)!.choices).toEqual([]);
      expect(chunks.at(-1)!.usage).toEqual(whole.usage);
      expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
    });
  }

  it('a request that extends the previous one reuses its KV cache and vision rows; one that does not starts afresh', async () => {
    const second = (answer: string) =>
      client.chat.completions.create({
        model: MODEL,
        max_tokens: MAX_NEW,
        messages: [
          { role: 'user', content: CASES.image.content },
          { role: 'assistant', content: answer },
          { role: 'user', content: SECOND_QUESTION },
        ],
      });
    const first = await ask(CASES.image.content);
    expect(first.choices[0].message.content).toBe(expected.image.answer);
    const want = expected.second_turn;
    const r = await second(first.choices[0].message.content!);
    expect(r.choices[0].message.content).toBe(want.answer);
    expect(r.usage!.prompt_tokens).toBe(want.stats.promptTokens);
    expect(r.usage!.prompt_tokens_details!.cached_tokens).toBe(want.stats.promptTokens - want.stats.prefilledTokens);
    const timings = (r as unknown as { timings: { prefilled_tokens: number; vision_ms: number } }).timings;
    expect(timings.prefilled_tokens).toBe(want.stats.prefilledTokens);
    expect(timings.prefilled_tokens).toBeLessThan(first.usage!.prompt_tokens / 4);
    expect(timings.vision_ms).toBe(0); // the image's rows are in the cache

    const fresh = await second('Something else.');
    expect(fresh.choices[0].message.content).toBe(expected.second_turn_fresh.answer);
    expect(fresh.usage!.prompt_tokens_details!.cached_tokens).toBe(0);
  });

  it('an allowed local path, file: URL and http URL give the same answers as inline data', async () => {
    expect((await ask([image(IMAGE1), text(CASES.image.req.question)])).choices[0].message.content).toBe(expected.image.answer);
    const viaUrls = await ask([image(`file://${IMAGE1}`), image(`${mediaBase}/ok/image2.jpg`), text(CASES.two_images.req.question)]);
    expect(viaUrls.choices[0].message.content).toBe(expected.two_images.answer);
  });

  it('stop sequences cut the answer where the first one completes', async () => {
    const want = expected.image.answer;
    expect(want.length, 'the reference answer is long enough to hold a stop sequence after its start').toBeGreaterThan(6);
    const stop = want.slice(3, 6);
    const r = await ask(CASES.image.content, { stop: [stop] });
    expect(r.choices[0].message.content).toBe(want.slice(0, want.indexOf(stop)));
    expect(r.choices[0].finish_reason).toBe('stop');
  });
});

describe('errors: OpenAI error JSON with the right status, and the server goes on', () => {
  const post = (body: string, type = 'application/json') => fetch(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': type }, body });

  it('malformed JSON: 400', async () => {
    const r = await post('{"model": "tiny-test", "messages": [');
    expect(r.status).toBe(400);
    expect(((await r.json()) as { error: { code: string; type: string } }).error).toMatchObject({ code: 'invalid_json', type: 'invalid_request_error' });
  });

  it('body over the limit: 413', async () => {
    const r = await post(JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'x'.repeat(BODY_LIMIT) }] }));
    expect(r.status).toBe(413);
    expect(((await r.json()) as { error: { code: string; message: string } }).error.code).toBe('request_too_large');
  });

  it('schema violations: 400 naming the field', async () => {
    let e = await apiError(ask(5 as unknown as string));
    expect([e.status, e.code]).toEqual([400, 'invalid_request_schema']);
    expect(e.param).toMatch(/^messages\.0/);
    e = await apiError(ask('hi', { n: 2 }));
    expect([e.status, e.param]).toEqual([400, 'n']);
    e = await apiError(ask('hi', { frequency_penalty: 0.5 }));
    expect(e.status).toBe(400);
    expect(e.message).toMatch(/unknown field 'frequency_penalty'/);
    e = await apiError(ask('hi', { temperature: 0, top_p: 0.5 }));
    expect(e.status).toBe(400);
    expect(e.message).toMatch(/only apply when sampling/);
  });

  it('unknown model: 404', async () => {
    const e = await apiError(client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }));
    expect([e.status, e.code, e.param]).toEqual([404, 'model_not_found', 'model']);
    expect(e.message).toMatch(/'gpt-4o' does not exist; this server serves 'tiny-test'/);
  });

  it('bad and undecodable data: URLs, media outside the allow-list: 400', async () => {
    let e = await apiError(ask([image('data:image/jpeg;base64,@@@@'), text('hi')]));
    expect([e.status, e.code, e.param]).toEqual([400, 'invalid_data_url', 'messages.0.content.0']);
    e = await apiError(ask([image(`data:image/png;base64,${Buffer.from('not an image').toString('base64')}`)]));
    expect([e.status, e.code]).toEqual([400, 'invalid_image']);
    const headerOnly = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 16, 0x4a, 0x46, 0x49, 0x46, 0, 1]);
    e = await apiError(ask([image(`data:image/jpeg;base64,${headerOnly.toString('base64')}`), text('hi')]));
    expect([e.status, e.code]).toEqual([400, 'invalid_image']);
    const jpeg = readFileSync(IMAGE1);
    const halfJpeg = jpeg.subarray(0, jpeg.length >> 1); // a sound header: fails in the decoder, on the worker
    e = await apiError(ask([image(`data:image/jpeg;base64,${halfJpeg.toString('base64')}`), text('hi')]));
    expect(e.status).toBe(400);
    expect(e.message).toMatch(/^400 cannot decode image messages\.0\.content\.0: .*premature end/);
    e = await apiError(ask([image('/etc/passwd')]));
    expect([e.status, e.code]).toEqual([400, 'media_not_allowed']);
    e = await apiError(ask([image(`${mediaBase}/elsewhere/x.jpg`)]));
    expect([e.status, e.code]).toEqual([400, 'media_not_allowed']);
  });

  it('too many images or frames: 400', async () => {
    const url = dataUrl(IMAGE1, 'image/jpeg');
    let e = await apiError(ask([image(url), image(url), image(url), text('hi')]));
    expect([e.status, e.code]).toEqual([400, 'too_many_images']);
    e = await apiError(ask([{ type: 'video_url', video_url: { url: dataUrl(VIDEO, 'video/mp4'), frames: FRAMES + 1 } } as unknown as Content[number]]));
    expect([e.status, e.code]).toEqual([400, 'too_many_frames']);
  });

  it('a prompt past the context: 400 context_length_exceeded', async () => {
    const e = await apiError(ask('hello '.repeat(1200)));
    expect([e.status, e.code]).toEqual([400, 'context_length_exceeded']);
    expect(e.message).toMatch(/context holds 1024/);
  });

  it('the next good request is answered', async () => {
    expect((await ask(CASES.image.content)).choices[0].message.content).toBe(expected.image.answer);
  });
});

describe('the queue and disconnects', () => {
  it('a full queue answers 429 with Retry-After; a client abort mid-stream frees the worker within one decode step', async () => {
    const ac = new AbortController();
    const long = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Count.' }], max_tokens: 2000, ignore_eos: true, stream: true } as OpenAI.Chat.ChatCompletionCreateParamsStreaming, { signal: ac.signal });
    const it = long[Symbol.asyncIterator]();
    await it.next();
    await it.next(); // generation is running
    expect((await health()).status).toBe('busy');
    const waiting = ask('Next.', { max_tokens: 2 });
    await waitFor('the second request to queue', async () => (await health()).queued === 1);
    for (const content of ['One too many.', CASES.image.content]) {
      const refused = await apiError(ask(content));
      expect([refused.status, refused.code]).toEqual([429, 'rate_limit_exceeded']);
      expect(Number(refused.headers?.get('retry-after'))).toBeGreaterThanOrEqual(1);
    }

    const before = logs.length;
    ac.abort();
    expect((await it.next()).done).toBe(true); // the client ends its stream
    const next = await waiting; // the worker moved on
    expect(next.choices[0].message.content).not.toBeNull();
    const stopped = logs.slice(before).find((l) => l.msg === 'request stopped early');
    expect(stopped).toMatchObject({ why: 'client' });
    expect(stopped!.newTokens as number).toBeLessThan(2000); // generation ended early (how soon: bench:serve measures it)
    expect((await health()).status).toBe('ready');
  });
});

describe('GPU errors', () => {
  it('answer 500 with the message; the model is reloaded and the next request answered', async () => {
    m.gpu.device.destroy(); // the device the server's model lives on is lost
    const e = await apiError(ask('hi'));
    expect(e.status).toBe(500);
    expect(e.message).toMatch(/generation failed: .*destroyed/);
    await waitFor('the reload', async () => (await health()).status === 'ready', 120_000);
    expect(loads).toBe(2);
    expect((await ask(CASES.image.content)).choices[0].message.content).toBe(expected.image.answer);
  });
});

describe('GET endpoints', () => {
  it('/v1/models lists the served model; unknown routes are OpenAI 404s', async () => {
    const models = await client.models.list();
    expect(models.data.map((x) => x.id)).toEqual([MODEL]);
    expect((await client.models.retrieve(MODEL)).id).toBe(MODEL);
    expect((await apiError(client.models.retrieve('other'))).status).toBe(404);
    const r = await fetch(`${base}/v1/nothing`);
    expect(r.status).toBe(404);
    expect(((await r.json()) as { error: { type: string } }).error.type).toBe('invalid_request_error');
  });
});
