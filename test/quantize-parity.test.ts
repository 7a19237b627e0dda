// The quantized model against the PyTorch reference run with the same dequantized weights
// (test/dequantize_ckpt.py writes them as F32 with the numpy quantizer): every stage within the
// parity tolerances, identical greedy ids.
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InternVL } from '../src/models/internvl.js';
import { writeCheckpoint } from '../src/weights/synthetic.js';
import { expectMatchesDump } from './parity-case.js';
import { testGpu } from './util.js';

const gpu = await testGpu();
let tmp: string;
const ckpt = () => join(tmp, 'tiny');

function python(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn('/usr/bin/python3', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d) => (err += d));
    p.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${args[0]} failed: ${err}`))));
  });
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'pvc-quant-parity-'));
  await writeCheckpoint(ckpt(), 'tiny', { seed: 1 });
});
afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

// each format has its own decode GEMV (the q4 and q8 SWAR kernels on software adapters), so each
// runs the model once against its own reference run (~20 s each)
describe.each([['q4', 'text,image'], ['q8', 'text,image']] as const)('%s engine vs the reference on dequantized weights (tiny)', (dtype, cases) => {
  let dumps: string;
  let model: InternVL;
  beforeAll(async () => {
    const deq = join(tmp, `tiny-${dtype}`);
    dumps = join(tmp, `dumps-${dtype}`);
    await python([join(import.meta.dirname, 'dequantize_ckpt.py'), dtype, ckpt(), deq]);
    await python([join(import.meta.dirname, 'reference/make_dumps.py'), '--model', deq, '--out', dumps, '--cases', cases, '--logits-last', '4']);
    model = await InternVL.load(gpu, ckpt(), { dtype });
    expect(model.llm.layers[0].wqkv.dtype).toBe(dtype);
    expect(model.llm.output.dtype).toBe(dtype);
  }, 600_000);

  it.each(cases.split(','))('%s: every stage within tolerance, identical greedy ids', async (kase) => {
    await expectMatchesDump(model, join(dumps, `${kase}.safetensors`));
  });
});
