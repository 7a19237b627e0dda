// The OpenAI-compatible HTTP face of the engine, on Fastify: requests are validated against the
// TypeBox schemas of schema.ts, turned into a conversation (conversation.ts), their media checked
// and fetched (media.ts), then queued for the one GPU worker (queue.ts). Answers come back whole or
// as server-sent events in OpenAI's chunk format. Every error is OpenAI's error JSON.
//
// Request lifecycle: validate -> media -> queue (429 when full) -> generate (engine.ts: continuing
// the kept conversation when the request extends it) -> answer. A client that disconnects aborts its
// request: it leaves the queue, or generation stops at the next decode step boundary. A GPU error answers 500; if it left the device unusable the model is reloaded (ahead of the
// queue) while /health says "loading".

import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyServerOptions } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { InputError, type ChatResult } from '../generate/generate.js';
import { resolveSampling, type SamplingOptions } from '../generate/sampler.js';
import { GpuError } from '../gpu/recorder.js';
import type { LoadedModel } from '../index.js';
import { toConversation, type Conversation } from './conversation.js';
import { ConversationCache, type TurnParams } from './engine.js';
import { ApiError, badRequest, fromFastifyError } from './errors.js';
import { resolveMedia, type MediaPolicy, type ResolvedMedia } from './media.js';
import { GpuQueue, QueueClosedError, QueueFullError } from './queue.js';
import { ChatCompletionRequest } from './schema.js';
import { StopText } from './stop.js';

export interface ServerOptions {
  /** loads the model: at start, and again when a GPU error leaves the device unusable */
  load: () => Promise<LoadedModel>;
  /** the id clients put in `model` */
  modelName: string;
  /** requests that may wait for the GPU behind the running one */
  queueSize: number;
  /** largest request body in bytes (inline media included) */
  bodyLimit: number;
  maxImages: number;
  maxFrames: number;
  /** dynamic tiles per image (default: the checkpoint's max_dynamic_patch) */
  maxTiles?: number;
  /** positions a conversation may use (default: the model's max_position_embeddings) */
  contextLength?: number;
  /** max_tokens when the request gives none */
  defaultMaxTokens: number;
  media: MediaPolicy;
  logger?: FastifyServerOptions['logger'];
}

export type Health = 'loading' | 'ready' | 'busy' | 'failed' | 'stopping';

export interface ChatServer {
  app: FastifyInstance;
  /** resolves when the first load finished (rejects if it failed) */
  loaded: Promise<void>;
  health(): Health;
  /** Stops taking requests, lets the running one finish for up to `graceMs`, aborts it, closes. */
  shutdown(graceMs: number): Promise<void>;
}

/** Why generation stopped early. */
class Stopped extends Error {
  /** from the signal to the worker being free */
  freedMs = 0;
  /** the turn's mean decode step, to compare freedMs with */
  decodeStepMs = 0;
  /** tokens the turn generated in all */
  newTokens = 0;
  constructor(readonly why: 'client' | 'shutdown') {
    super(why === 'client' ? 'the client disconnected' : 'the server is shutting down');
  }
}

const tooBusy = (e: QueueFullError) => new ApiError(429, e.message, 'rate_limit_exceeded', null, e.retryAfter);

/** The engine's failures that are the request's fault: bad files, values, a prompt past the context. */
function inputError(e: InputError, media: ResolvedMedia): ApiError {
  const context = /context holds/.test(e.message);
  return new ApiError(400, media.describe(e.message), context ? 'context_length_exceeded' : 'invalid_value', context ? 'messages' : null);
}

interface TurnOutcome {
  result: ChatResult;
  /** the answer ended at a `stop` sequence */
  stopSequence: boolean;
}

/**
 * One turn through the engine. `onText` receives the answer as it settles (stop sequences cut). A
 * stop sequence or the caller's signal ends the turn at the next decode step boundary; after the
 * caller's signal this throws its reason (a Stopped) once the worker is free.
 */
async function runTurn(conversations: ConversationCache, conv: Conversation, media: ResolvedMedia, params: Omit<TurnParams, 'signal'>, signal: AbortSignal, stop: StopText, onText: (t: string) => void): Promise<TurnOutcome> {
  const stopper = new AbortController();
  let tAbort = 0;
  signal.addEventListener('abort', () => (tAbort = performance.now()), { once: true });
  const it = conversations.turn(conv, media, { ...params, signal: AbortSignal.any([signal, stopper.signal]) });
  let r: IteratorResult<string, ChatResult>;
  while (!(r = await it.next()).done) {
    if (signal.aborted) continue; // nobody to send it to; the turn ends at the next step boundary
    const text = stop.push(r.value);
    if (text) onText(text);
    if (stop.stopped) stopper.abort();
  }
  if (signal.aborted) {
    const reason = signal.reason as Stopped;
    reason.freedMs = performance.now() - tAbort;
    reason.decodeStepMs = r.value.stats.decodeTokensPerSecond > 0 ? 1000 / r.value.stats.decodeTokensPerSecond : 0;
    reason.newTokens = r.value.stats.newTokens;
    throw reason;
  }
  const rest = stop.flush();
  if (rest) onText(rest);
  return { result: r.value, stopSequence: stop.stopped };
}

/** Server-sent events in OpenAI's format; the headers go out with the first event. */
class EventStream {
  private started = false;
  constructor(private readonly reply: FastifyReply) {}

  get open(): boolean {
    return this.started;
  }

  send(data: unknown): void {
    const res = this.reply.raw;
    if (!this.started) {
      this.started = true;
      this.reply.hijack();
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    }
    if (!res.destroyed) res.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
  }

  end(): void {
    if (this.started && !this.reply.raw.destroyed) this.reply.raw.end();
  }
}

export function createServer(opts: ServerOptions): ChatServer {
  const app = Fastify({
    logger: opts.logger ?? false,
    bodyLimit: opts.bodyLimit,
    // strict validation: unknown fields and wrong types are errors, never silently dropped or coerced
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, discriminator: true, allErrors: false } },
  }).withTypeProvider<TypeBoxTypeProvider>();

  const queue = new GpuQueue(opts.queueSize);
  const active = new Set<AbortController>();
  /** the model, and the conversation its worker keeps (KV cache reuse across requests) */
  let engine: { m: LoadedModel; conversations: ConversationCache } | null = null;
  let state: 'loading' | 'ready' | 'failed' | 'stopping' = 'loading';
  let loadError = '';

  const load = async (): Promise<void> => {
    state = 'loading';
    try {
      const m = await opts.load();
      engine = { m, conversations: new ConversationCache(m, { contextLength: opts.contextLength, maxTiles: opts.maxTiles }) };
      state = 'ready';
    } catch (e) {
      loadError = (e as Error).message;
      state = 'failed';
      app.log.error({ err: e }, 'loading the model failed');
      throw e;
    }
  };
  const loaded = load();
  loaded.catch(() => {});

  /** After an engine error: after a GPU error, or if the device cannot go on, reload the model before the next request. */
  const recover = (m: LoadedModel, conversations: ConversationCache, error: unknown): void => {
    try {
      if (!(error instanceof GpuError)) {
        m.gpu.assertUsable();
        return;
      }
    } catch (e) {
      error = e;
    }
    app.log.error({ err: error }, 'GPU error: reloading the model');
    state = 'loading';
    engine = null;
    void queue
      .run(async () => {
        try {
          conversations.dispose();
          m.dispose();
        } catch {
          // the device is already gone
        }
        await load();
      }, { first: true })
      .catch(() => {});
  };

  const health = (): Health => (state === 'ready' ? (queue.busy ? 'busy' : 'ready') : state);

  app.setErrorHandler((err, request, reply) => {
    const e = err instanceof ApiError ? err : fromFastifyError(err as Parameters<typeof fromFastifyError>[0]);
    if (e.status >= 500) request.log.error({ err }, 'request failed');
    if (e.retryAfter !== undefined) void reply.header('retry-after', String(e.retryAfter));
    return reply.code(e.status).send(e.body());
  });
  app.setNotFoundHandler((request, reply) => reply.code(404).send(new ApiError(404, `no route ${request.method} ${request.url}`, 'not_found').body()));

  app.get('/health', async (_request, reply) => {
    const status = health();
    const pool = engine?.m.gpu.pool;
    const { rss, heapUsed, external } = process.memoryUsage();
    const memory = { rss_bytes: rss, js_heap_bytes: heapUsed, external_bytes: external, gpu_allocated_bytes: pool?.allocatedBytes ?? 0, gpu_pooled_free_bytes: pool?.freeBytes ?? 0 };
    const body = { status, queued: queue.size, memory, ...(status === 'failed' ? { error: loadError } : {}) };
    return reply.code(status === 'ready' || status === 'busy' ? 200 : 503).send(body);
  });

  const modelCard = () => ({ id: opts.modelName, object: 'model', created: 0, owned_by: 'pvc-webgpu' });
  app.get('/v1/models', async () => ({ object: 'list', data: [modelCard()] }));
  app.get<{ Params: { id: string } }>('/v1/models/:id', async (request) => {
    if (request.params.id !== opts.modelName) throw new ApiError(404, `The model '${request.params.id}' does not exist; this server serves '${opts.modelName}'`, 'model_not_found', 'model');
    return modelCard();
  });

  app.post('/v1/chat/completions', { schema: { body: ChatCompletionRequest } }, async (request, reply) => {
    const body = request.body;
    if (body.model !== opts.modelName) throw new ApiError(404, `The model '${body.model}' does not exist; this server serves '${opts.modelName}'`, 'model_not_found', 'model');
    if (state !== 'ready') {
      if (state === 'stopping') throw new ApiError(503, 'the server is shutting down', 'shutting_down');
      if (state === 'failed') throw new ApiError(503, `the model failed to load: ${loadError}`, 'model_unavailable');
      throw new ApiError(503, 'the model is loading; retry shortly', 'model_loading', null, 5);
    }
    const conv = toConversation(body.messages, { maxImages: opts.maxImages, maxFrames: opts.maxFrames });
    const sampling: SamplingOptions = {
      temperature: body.temperature ?? undefined,
      topP: body.top_p ?? undefined,
      topK: body.top_k,
      repetitionPenalty: body.repetition_penalty,
      seed: body.seed ?? undefined,
    };
    try {
      resolveSampling(sampling);
    } catch (e) {
      throw badRequest((e as Error).message);
    }
    const stops = body.stop == null ? [] : typeof body.stop === 'string' ? [body.stop] : body.stop;
    const id = `chatcmpl-${randomUUID().replaceAll('-', '')}`;
    const created = Math.floor(Date.now() / 1000);
    const stream = body.stream ? new EventStream(reply) : null;
    const chunk = (delta: object, finish: string | null = null) => ({ id, object: 'chat.completion.chunk', created, model: opts.modelName, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] });

    const full = queue.refusal();
    if (full) throw tooBusy(full); // before any work on the media
    const media = await resolveMedia(conv.media, opts.media);
    const abort = new AbortController();
    const onClose = () => {
      if (!reply.raw.writableEnded) abort.abort(new Stopped('client'));
    };
    reply.raw.on('close', onClose);
    active.add(abort);
    const tQueued = performance.now();
    let text = '';
    try {
      const outcome = await queue.run(
        async () => {
          if (!engine) throw new ApiError(503, 'the model is loading; retry shortly', 'model_loading', null, 5);
          const { m, conversations } = engine;
          const queueMs = performance.now() - tQueued;
          const params = { maxNewTokens: body.max_completion_tokens ?? body.max_tokens ?? opts.defaultMaxTokens, sampling, ignoreEos: body.ignore_eos ?? false };
          try {
            const out = await runTurn(conversations, conv, media, params, abort.signal, new StopText(stops), (t) => {
              if (stream && !stream.open) stream.send(chunk({ role: 'assistant', content: '' }));
              stream?.send(chunk({ content: t }));
              text += t;
            });
            return { ...out, queueMs };
          } catch (e) {
            if (e instanceof InputError) throw inputError(e, media);
            if (!(e instanceof Stopped || e instanceof ApiError)) recover(m, conversations, e);
            throw e;
          } finally {
            // activations of this request's shapes go back to the device: memory stays flat however
            // prompt lengths vary (the kept conversation's KV cache is live, not freed)
            if (engine?.m === m) m.gpu.pool.trim();
          }
        },
        { signal: abort.signal },
      );

      const s = outcome.result.stats;
      const finish = outcome.stopSequence || s.stop === 'stop-token' ? 'stop' : 'length';
      const usage = {
        prompt_tokens: s.promptTokens,
        completion_tokens: s.newTokens,
        total_tokens: s.promptTokens + s.newTokens,
        // positions of earlier turns found in the KV cache of the previous request, not prefilled again
        prompt_tokens_details: { cached_tokens: s.promptTokens - s.prefilledTokens },
      };
      const timings = {
        queue_ms: outcome.queueMs,
        preprocess_ms: s.preprocessMs,
        vision_ms: s.visionMs,
        prefilled_tokens: s.prefilledTokens,
        prefill_ms: s.prefillMs,
        prefill_tokens_per_second: s.prefillTokensPerSecond,
        time_to_first_token_ms: s.timeToFirstTokenMs,
        decode_tokens_per_second: s.decodeTokensPerSecond,
      };
      if (!stream) {
        return {
          id,
          object: 'chat.completion',
          created,
          model: opts.modelName,
          choices: [{ index: 0, message: { role: 'assistant', content: text, refusal: null }, logprobs: null, finish_reason: finish }],
          usage,
          timings,
        };
      }
      if (!stream.open) stream.send(chunk({ role: 'assistant', content: '' }));
      stream.send({ ...chunk({}, finish), timings });
      if (body.stream_options?.include_usage) stream.send({ id, object: 'chat.completion.chunk', created, model: opts.modelName, choices: [], usage });
      stream.send('[DONE]');
      stream.end();
      return reply;
    } catch (e) {
      if (e instanceof Stopped) {
        request.log.info({ why: e.why, freedMs: e.freedMs, decodeStepMs: e.decodeStepMs, newTokens: e.newTokens }, 'request stopped early');
        if (e.why === 'client') return reply;
        e = new ApiError(503, 'the server is shutting down', 'shutting_down');
      }
      const err =
        e instanceof ApiError ? e
        : e instanceof QueueFullError ? tooBusy(e)
        : e instanceof QueueClosedError ? new ApiError(503, e.message, 'shutting_down')
        : new ApiError(500, `generation failed: ${(e as Error).message}`, 'internal_error');
      if (err.status >= 500) request.log.error({ err: e }, 'request failed');
      if (!stream?.open) throw err;
      stream.send(err.body()); // mid-stream: the status is sent already
      stream.end();
      return reply;
    } finally {
      active.delete(abort);
      reply.raw.off('close', onClose);
      await media.release();
    }
  });

  const shutdown = async (graceMs: number): Promise<void> => {
    state = 'stopping';
    queue.close(new QueueClosedError('the server is shutting down'));
    const timer = setTimeout(() => {
      for (const a of active) a.abort(new Stopped('shutdown'));
    }, graceMs);
    await queue.idle();
    clearTimeout(timer);
    await app.close();
    engine?.conversations.dispose();
    engine?.m.dispose();
    engine = null;
  };

  return { app, loaded, health, shutdown };
}
