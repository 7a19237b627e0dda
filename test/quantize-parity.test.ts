// The quantized model against the PyTorch reference run with the same dequantized weights
// (test/dequantize_ckpt.py writes them as F32 with the numpy quantizer): every stage within the
// parity tolerances, identical greedy ids.
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InternVL } from '../src/models/internvl.js';
import { compareDumps, formatComparison } from '../src/parity/compare.js';
import { readDump } from '../src/parity/dump.js';
import { inputsFromDump, runCase } from '../src/parity/engine.js';
import { writeCheckpoint } from '../src/weights/synthetic.js';
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

// q4 only (each format costs a reference run; q8 differs from q4 in the weight decode alone, which
// matmul-quant.test.ts covers)
describe.each([['q4', 'text,image']] as const)('%s engine vs the reference on dequantized weights (tiny)', (dtype, cases) => {
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
    const file = join(dumps, `${kase}.safetensors`);
    const want = await readDump(file);
    const rows = JSON.parse(want.metadata.logits_rows) as [number, number];
    const got = await runCase(model, inputsFromDump(want, file), { maxNewTokens: want.tensors.get('generate.ids')!.shape[0], logitsLast: rows[1] - rows[0] });
    const c = compareDumps(got, want);
    const table = formatComparison(c);
    expect(c.stages.length, table).toBeGreaterThan(3);
    for (const s of c.stages) expect(s.relL2, `${s.stage}\n${table}`).toBeLessThanOrEqual(s.tolerance);
    for (const x of c.exact) expect(x.ok, `${x.name}\n${table}`).toBe(true);
    expect(c.ok).toBe(true);
  });
});
