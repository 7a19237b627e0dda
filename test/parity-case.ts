// One parity case, shared by the bf16 and quantized parity tests: run the engine on a reference
// dump's inputs and require every stage within its tolerance and every exact value (greedy ids) equal.

import { expect } from 'vitest';
import type { InternVL } from '../src/models/internvl.js';
import { compareDumps, formatComparison } from '../src/parity/compare.js';
import { readDump } from '../src/parity/dump.js';
import { inputsFromDump, runCase } from '../src/parity/engine.js';

export async function expectMatchesDump(model: InternVL, file: string): Promise<void> {
  const want = await readDump(file);
  const rows = JSON.parse(want.metadata.logits_rows) as [number, number];
  const got = await runCase(model, inputsFromDump(want, file), { maxNewTokens: want.tensors.get('generate.ids')!.shape[0], logitsLast: rows[1] - rows[0] });
  const c = compareDumps(got, want);
  const table = formatComparison(c);
  expect(c.stages.length, table).toBeGreaterThan(3);
  for (const s of c.stages) expect(s.relL2, `${s.stage}\n${table}`).toBeLessThanOrEqual(s.tolerance);
  for (const x of c.exact) expect(x.ok, `${x.name}\n${table}`).toBe(true);
  expect(c.ok).toBe(true);
}
