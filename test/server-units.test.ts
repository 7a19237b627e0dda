// The server's pure parts, without a GPU: OpenAI messages -> InternVL conversation (checked against
// the prompt conventions InternVL's chat() and run.ts use), stop sequences over streamed pieces
// (checked against a cut of the whole text where the first stop completes), the bounded FIFO queue, data: URLs
// (checked against Node's own base64 encoder).

import { describe, expect, it } from 'vitest';
import { toConversation } from '../src/server/conversation.js';
import { ApiError } from '../src/server/errors.js';
import { parseDataUrl } from '../src/server/media.js';
import { GpuQueue, QueueFullError } from '../src/server/queue.js';
import type { Message } from '../src/server/schema.js';
import { StopText } from '../src/server/stop.js';
import { multiImagePrefix, videoPrefix } from '../src/text/template.js';
import { freshSeed, rng } from './util.js';

const limits = { maxImages: 3, maxFrames: 16 };
const img = (url: string) => ({ type: 'image_url' as const, image_url: { url } });
const text = (t: string) => ({ type: 'text' as const, text: t });

function apiError(f: () => unknown): ApiError {
  try {
    f();
  } catch (e) {
    if (e instanceof ApiError) return e;
    throw e;
  }
  throw new Error('expected an ApiError');
}

describe('toConversation', () => {
  it('one image: "<image>\\n" + question, as InternVL chat() prefixes it', () => {
    const c = toConversation([{ role: 'user', content: [img('data:a'), text('What is it?')] }], limits);
    expect(c).toEqual({ systemMessage: undefined, history: [], question: '<image>\nWhat is it?', media: [{ kind: 'image', url: 'data:a', param: 'messages.0.content.0' }], historyMedia: 0 });
  });

  it('a message renders the same whatever follows it: a lone first image stays "<image>", later ones are numbered', () => {
    const first: Message = { role: 'user', content: [img('data:a'), text('What is it?')] };
    const c = toConversation([first, { role: 'assistant', content: 'A cat.' }, { role: 'user', content: [img('data:b'), text('And this?')] }], limits);
    expect(c.history).toEqual([{ question: '<image>\nWhat is it?', answer: 'A cat.' }]);
    expect(c.question).toBe('Image-2: <image>\nAnd this?');
    expect(c.historyMedia).toBe(1);
  });

  it('several images: "Image-k: <image>" numbered across the conversation; history turns keep theirs', () => {
    const messages: Message[] = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: [text('Compare'), img('data:a'), img('data:b')] },
      { role: 'assistant', content: 'They differ.' },
      { role: 'user', content: [img('data:c'), text('And this one?')] },
    ];
    const c = toConversation(messages, limits);
    expect(c.systemMessage).toBe('Be brief.');
    expect(c.history).toEqual([{ question: `${multiImagePrefix(2)}Compare`, answer: 'They differ.' }]);
    expect(c.question).toBe('Image-3: <image>\nAnd this one?');
    expect(c.media.map((m) => m.url)).toEqual(['data:a', 'data:b', 'data:c']);
    expect(c.historyMedia).toBe(2);
  });

  it('a video: "FrameN: <image>" lines for the requested frames; merged user messages and joined text parts', () => {
    const c = toConversation(
      [
        { role: 'user', content: 'Look.' },
        { role: 'user', content: [{ type: 'video_url', video_url: { url: 'data:v', frames: 5, start: 1, end: 2 } }, text('What happens?'), text('Briefly.')] },
      ],
      limits,
    );
    expect(c.question).toBe(`${videoPrefix(5)}Look.\nWhat happens?\nBriefly.`);
    expect(c.media).toEqual([{ kind: 'video', url: 'data:v', param: 'messages.1.content.0', frames: 5, start: 1, end: 2 }]);
  });

  it('refuses what the engine cannot take, naming the part', () => {
    const cases: [Message[], RegExp, string | null][] = [
      [[{ role: 'assistant', content: 'hi' }], /start with a user message/, 'messages'],
      [[{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }], /last message must be a user message/, 'messages'],
      [[{ role: 'user', content: 'a' }, { role: 'system', content: 'b' }, { role: 'user', content: 'c' }], /system messages must come before/, 'messages.1.role'],
      [[{ role: 'user', content: [img('data:a'), img('data:b'), img('data:c'), img('data:d')] }], /4 images .* at most 3/, 'messages'],
      [[{ role: 'user', content: [{ type: 'video_url', video_url: { url: 'data:v', frames: 17 } }] }], /17 frames requested; .* at most 16/, 'messages.0.content.0'],
      [[{ role: 'user', content: [{ type: 'video_url', video_url: { url: 'data:v' } }, img('data:a')] }], /images or one video, not both/, 'messages.0.content.0'],
      [[{ role: 'user', content: [{ type: 'video_url', video_url: { url: 'data:v', start: 3 } }] }], /both start and end/, 'messages.0.content.0'],
      [[{ role: 'user', content: [{ type: 'video_url', video_url: { url: 'data:v', start: 3, end: 2 } }] }], /start < end/, 'messages.0.content.0'],
      [[{ role: 'user', content: 'see <image> here' }], /contains "<image>"/, 'messages.0.content'],
    ];
    for (const [messages, re, param] of cases) {
      const e = apiError(() => toConversation(messages, limits));
      expect(e.status).toBe(400);
      expect(e.message).toMatch(re);
      expect(e.param).toBe(param);
    }
  });
});

describe('StopText', () => {
  it('streamed through random piece boundaries, the output equals the whole text cut before the first stop', () => {
    const seed = freshSeed();
    const rand = rng(seed);
    const alphabet = 'ab\n#';
    for (let trial = 0; trial < 300; trial++) {
      const whole = Array.from({ length: 1 + Math.floor(rand() * 40) }, () => alphabet[Math.floor(rand() * alphabet.length)]).join('');
      const stops = Array.from({ length: 1 + Math.floor(rand() * 3) }, () => Array.from({ length: 1 + Math.floor(rand() * 3) }, () => alphabet[Math.floor(rand() * alphabet.length)]).join(''));
      // the first stop to complete (smallest end), the earliest start among those
      const cuts = stops.map((s) => [whole.indexOf(s), whole.indexOf(s) + s.length]).filter(([i]) => i >= 0);
      cuts.sort((a, b) => a[1] - b[1] || a[0] - b[0]);
      const want = cuts.length ? whole.slice(0, cuts[0][0]) : whole;
      const st = new StopText(stops);
      let got = '';
      for (let i = 0; i < whole.length && !st.stopped; ) {
        const n = 1 + Math.floor(rand() * 4);
        got += st.push(whole.slice(i, i + n));
        i += n;
      }
      got += st.flush();
      expect(got, `seed ${seed}: ${JSON.stringify({ whole, stops })}`).toBe(want);
      expect(st.stopped).toBe(cuts.length > 0);
    }
  });
});

describe('GpuQueue', () => {
  const deferred = () => {
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    return { promise, resolve };
  };

  it('runs jobs one at a time in arrival order; a full queue refuses at once with a Retry-After', async () => {
    const q = new GpuQueue(2);
    const order: number[] = [];
    const gate = deferred();
    const first = q.run(async () => {
      order.push(1);
      await gate.promise;
    });
    const second = q.run(async () => void order.push(2));
    const third = q.run(async () => void order.push(3));
    expect(q.busy).toBe(true);
    expect(q.size).toBe(2);
    const refused = await q.run(async () => void order.push(4)).catch((e) => e);
    expect(refused).toBeInstanceOf(QueueFullError);
    expect((refused as QueueFullError).retryAfter).toBeGreaterThanOrEqual(1);
    gate.resolve();
    await Promise.all([first, second, third]);
    expect(order).toEqual([1, 2, 3]);
    expect(q.busy).toBe(false);
  });

  it('an aborted waiting job leaves the queue without running; close() rejects the rest', async () => {
    const q = new GpuQueue(4);
    const gate = deferred();
    const ran: string[] = [];
    const running = q.run(() => gate.promise);
    const ac = new AbortController();
    const leaving = q.run(async () => void ran.push('aborted one'), { signal: ac.signal });
    const staying = q.run(async () => void ran.push('closed one'));
    ac.abort(new Error('client gone'));
    await expect(leaving).rejects.toThrow('client gone');
    expect(q.size).toBe(1);
    q.close(new Error('shutting down'));
    await expect(staying).rejects.toThrow('shutting down');
    await expect(q.run(async () => 1)).rejects.toThrow('shutting down');
    gate.resolve();
    await running;
    await q.idle();
    expect(ran).toEqual([]);
  });
});

describe('parseDataUrl', () => {
  it('decodes base64 as Node encodes it, and refuses malformed URLs with a 400', () => {
    const bytes = Uint8Array.from({ length: 1000 }, (_, i) => (i * 37) & 255);
    const got = parseDataUrl(`data:image/png;base64,${Buffer.from(bytes).toString('base64')}`, 'p');
    expect(got.type).toBe('image/png');
    expect([...got.bytes]).toEqual([...bytes]);
    for (const bad of ['data:image/png,plain', 'data:image/png;base64,ab$d', 'data:image/png;base64,abc', 'data:image/png;base64,', 'data:nocomma']) {
      const e = apiError(() => parseDataUrl(bad, 'messages.0.content.0'));
      expect(e.status).toBe(400);
      expect(e.code).toBe('invalid_data_url');
    }
  });
});
