// `npm run serve -- --model DIR`: the OpenAI-compatible server (src/server/app.ts) on one GPU.
// Listens at once (GET /health says "loading" until the weights are up), logs JSON lines to stdout,
// and on SIGTERM or SIGINT stops taking requests, lets the running one finish (up to --grace
// seconds, then aborts it), closes and exits 0.

import { basename, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { runWithDawnWarningsFiltered } from '../src/gpu/native-stderr.js';
import { loadModel } from '../src/index.js';
import { createServer } from '../src/server/app.js';
import { isCompleteCheckpoint } from '../src/weights/download.js';

const USAGE = `OpenAI-compatible chat server for PVC-InternVL2 (POST /v1/chat/completions, GET /v1/models, GET /health).

  npm run serve -- --model DIR [--port 8080] [--host 127.0.0.1] [--dtype q8]

  --model DIR            checkpoint directory (required)
  --name ID              model id clients send (default: the directory's name)
  --dtype bf16|q8|q4     LLM weights as stored (bf16, default) or quantized while loading
  --port N               default 8080 (0: any free port; the log says which)
  --host ADDR            default 127.0.0.1 (loopback only); 0.0.0.0 to serve the network
  --queue N              requests that may wait behind the running one (default 8); more get 429
  --body-limit MB        largest request body, inline images and video included (default 64); more get 413
  --max-images N         images per conversation (default 8)
  --max-frames N         video frames per request (default 64)
  --max-tiles N          dynamic tiles per image (default: the checkpoint's max_dynamic_patch)
  --context N            positions a conversation may use (default: the model's maximum)
  --max-tokens N         answer length when a request gives no max_tokens (default 1024)
  --allow-media X        also accept image/video URLs naming local files under folder X, or
                         http(s) URLs starting with X (repeatable); default: data: URLs only
  --grace S              on SIGTERM, seconds the running request may take to finish (default 30)
  --log-level L          fatal, error, warn, info (default), debug`;

function parse(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      model: { type: 'string' },
      name: { type: 'string' },
      dtype: { type: 'string', default: 'bf16' },
      port: { type: 'string', default: '8080' },
      host: { type: 'string', default: '127.0.0.1' },
      queue: { type: 'string', default: '8' },
      'body-limit': { type: 'string', default: '64' },
      'max-images': { type: 'string', default: '8' },
      'max-frames': { type: 'string', default: '64' },
      'max-tiles': { type: 'string' },
      context: { type: 'string' },
      'max-tokens': { type: 'string', default: '1024' },
      'allow-media': { type: 'string', multiple: true, default: [] },
      grace: { type: 'string', default: '30' },
      'log-level': { type: 'string', default: 'info' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const num = (flag: keyof typeof values, min: number, integer = true): number | undefined => {
    const v = values[flag] as string | undefined;
    if (v === undefined) return undefined;
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < min || (integer && !Number.isSafeInteger(n))) throw new Error(`--${flag} needs ${integer ? 'an integer' : 'a number'} >= ${min}, got '${v}'`);
    return n;
  };
  const dtype = values.dtype as 'bf16' | 'q8' | 'q4';
  if (!['bf16', 'q8', 'q4'].includes(dtype)) throw new Error(`--dtype must be bf16, q8 or q4, got '${dtype}'`);
  for (const a of values['allow-media']) {
    if (!/^https?:\/\/[^/]+\//.test(a) && !a.startsWith('/')) throw new Error(`--allow-media takes an absolute folder or an http(s) URL prefix ending past the host (https://host/...), got '${a}'`);
  }
  return {
    help: values.help ?? false,
    model: values.model,
    name: values.name,
    dtype,
    port: num('port', 0)!,
    host: values.host,
    queue: num('queue', 0)!,
    bodyLimit: Math.round(num('body-limit', 0.001, false)! * 2 ** 20),
    maxImages: num('max-images', 1)!,
    maxFrames: num('max-frames', 1)!,
    maxTiles: num('max-tiles', 1),
    context: num('context', 2),
    maxTokens: num('max-tokens', 1)!,
    allowMedia: values['allow-media'],
    graceMs: num('grace', 0, false)! * 1000,
    logLevel: values['log-level'],
  };
}

let args;
try {
  args = parse(process.argv.slice(2));
  if (!args.help && !args.model) throw new Error('--model DIR is required');
  if (args.model && !(await isCompleteCheckpoint(resolve(args.model)))) throw new Error(`${args.model} is not a complete checkpoint directory (config.json, tokenizer files, safetensors shards)`);
} catch (e) {
  process.stderr.write(`error: ${(e as Error).message}\nSee npm run serve -- --help\n`);
  process.exit(2);
}
if (args.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}

const relaunched = await runWithDawnWarningsFiltered();
if (relaunched !== null) process.exit(relaunched);

const dir = resolve(args.model!);
const server = createServer({
  load: () => loadModel(dir, { dtype: args.dtype }),
  modelName: args.name ?? basename(dir),
  queueSize: args.queue,
  bodyLimit: args.bodyLimit,
  maxImages: args.maxImages,
  maxFrames: args.maxFrames,
  maxTiles: args.maxTiles,
  contextLength: args.context,
  defaultMaxTokens: args.maxTokens,
  media: { allow: args.allowMedia, maxFetchBytes: args.bodyLimit, fetchTimeoutMs: 30_000 },
  logger: { level: args.logLevel },
});

let stopping = false;
const stop = (signal: string) => {
  if (stopping) return;
  stopping = true;
  server.app.log.info({ signal }, 'shutting down');
  server.shutdown(args.graceMs).then(
    () => process.exit(0),
    (e) => {
      server.app.log.error({ err: e }, 'shutdown failed');
      process.exit(1);
    },
  );
};
process.once('SIGTERM', () => stop('SIGTERM'));
process.once('SIGINT', () => stop('SIGINT'));

await server.app.listen({ port: args.port, host: args.host });
server.loaded.then(
  () => server.app.log.info({ model: dir }, 'model loaded: ready'),
  () => process.exit(1), // the server logged why
);
