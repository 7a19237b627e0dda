// npm run eval:worker -- --queue redis://HOST:PORT --model DIR [--data DIR] [--lock-seconds S]
// Loads the model once, then answers queued benchmark items one at a time until stopped (SIGINT or
// SIGTERM finish the current item first; a second signal stops at once). An error other than a bad input (a GPU failure, say)
// stops the worker: its job goes back to the queue for another worker.

import { parseArgs } from 'node:util';
import { InputError, loadModel } from '../src/index.js';
import { workerName } from './answer.js';
import { startWorker } from './queue.js';

const USAGE = 'usage: npm run eval:worker -- --queue redis://HOST:PORT --model DIR [--data DIR] [--lock-seconds S]';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      queue: { type: 'string' },
      model: { type: 'string' },
      data: { type: 'string' },
      'lock-seconds': { type: 'string', default: '60' },
    },
  });
  const lockSeconds = Number(values['lock-seconds']);
  if (!values.queue || !values.model || !(lockSeconds > 0)) {
    console.error(USAGE);
    process.exit(2);
  }
  const log = (line: string) => console.error(`[${workerName}] ${line}`);
  const model = await loadModel(values.model);
  log(`loaded ${values.model}; waiting for jobs on ${values.queue}`);
  const worker = startWorker({ url: values.queue, model, dataDir: values.data, lockMs: lockSeconds * 1000, log });
  let stopping = false;
  const stop = async (code: number) => {
    // a second signal does not wait for the current item
    if (stopping) process.exit(code);
    stopping = true;
    await worker.close();
    model.dispose();
    process.exit(code);
  };
  worker.on('failed', (job, err) => {
    log(`failed ${job?.id}: ${err.message}`);
    if (!(err instanceof InputError)) void stop(1);
  });
  let lastError = '';
  worker.on('error', (err) => {
    // while Redis is unreachable the same error repeats at every retry: say it once
    if (err.message !== lastError) log(`queue error: ${err.message}`);
    lastError = err.message;
  });
  process.on('SIGINT', () => void stop(0));
  process.on('SIGTERM', () => void stop(0));
}

main().catch((e: Error) => {
  console.error(`eval:worker: ${e.message}`);
  process.exit(e instanceof InputError ? 2 : 1);
});
