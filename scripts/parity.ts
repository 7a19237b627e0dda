// Stage-by-stage parity against dumps (DESIGN.md "Dump format"):
//   npm run parity -- --model DIR --dump FILE|DIR [--switch name=value ...] [--logits-last K] [--save DIR]
//       runs the engine on each dump's recorded inputs (ids, pixel values, visual items, switches
//       from its metadata; --switch overrides) and compares every stage and the greedy ids;
//       llm.logits rows as the dump holds them, or only the last K (--logits-last 1 for long
//       prompts of the real model: the engine then never holds [N, 92553] logits)
//   npm run parity -- --dump FILE|DIR --against FILE|DIR
//       compares two dumps (or two directories, file by file), e.g. the reference's with the
//       official checkpoint's (test/reference/hf_dump.py) or the engine's (npm run dump)
// Exits 1 when a stage is past its tolerance (src/parity/compare.ts) or ids differ.

import { mkdir } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { getDevice } from '../src/gpu/index.js';
import { ModelCache, dumpFiles, parseSwitchArgs } from '../src/parity/cli.js';
import { compareDumps, formatComparison } from '../src/parity/compare.js';
import { readDump, writeDump, type Dump } from '../src/parity/dump.js';
import { inputsFromDump, runCase } from '../src/parity/engine.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    dump: { type: 'string' },
    against: { type: 'string' },
    switch: { type: 'string', multiple: true, default: [] },
    save: { type: 'string' },
    'logits-last': { type: 'string' },
  },
});
const logitsLastArg = values['logits-last'] === undefined ? null : Number(values['logits-last']);
if (!values.dump || !!values.model === !!values.against || (logitsLastArg !== null && !(Number.isSafeInteger(logitsLastArg) && logitsLastArg >= 1))) {
  console.error('usage: npm run parity -- --model DIR --dump FILE|DIR [--switch name=value ...] [--logits-last K] [--save DIR]\n       npm run parity -- --dump FILE|DIR --against FILE|DIR');
  process.exit(2);
}

const files = await dumpFiles(values.dump);
let failed = 0;
const report = (name: string, got: Dump, want: Dump): void => {
  const c = compareDumps(got, want);
  console.log(`\n== ${name}\n${formatComparison(c)}`);
  if (!c.ok) failed++;
};

if (values.against) {
  const others = await dumpFiles(values.against);
  const byName = new Map(others.map((f) => [basename(f), f]));
  for (const file of files) {
    const other = files.length === 1 && others.length === 1 ? others[0] : byName.get(basename(file));
    if (!other) {
      console.log(`\n== ${file}: no ${basename(file)} in ${values.against}`);
      failed++;
      continue;
    }
    report(`${file} vs ${other}`, await readDump(file), await readDump(other));
  }
} else {
  const overrides = parseSwitchArgs(values.switch!);
  if (values.save) await mkdir(values.save, { recursive: true });
  const gpu = await getDevice();
  try {
    const models = new ModelCache(gpu, values.model!);
    for (const file of files) {
      const want = await readDump(file);
      const switches = { ...(JSON.parse(want.metadata.switches || '{}') as object), ...overrides };
      const model = await models.get(switches);
      const maxNewTokens = want.tensors.get('generate.ids')?.shape[0] ?? 1;
      const logitsRows = want.metadata.logits_rows ? (JSON.parse(want.metadata.logits_rows) as number[]) : null;
      const logitsLast = logitsLastArg ?? (logitsRows ? logitsRows[1] - logitsRows[0] : 0);
      const start = performance.now();
      const got = await runCase(model, inputsFromDump(want, file), { maxNewTokens: Math.max(1, maxNewTokens), logitsLast });
      console.log(`\n${file}: engine ran in ${((performance.now() - start) / 1000).toFixed(1)} s`);
      if (values.save) await writeDump(join(values.save, basename(file)), got);
      report(`engine vs ${file}`, got, want);
    }
  } finally {
    gpu.destroy();
  }
}
console.log(failed ? `\n${failed} of ${files.length} dump(s) FAILED` : `\nall ${files.length} dump(s) within tolerance`);
process.exit(failed ? 1 : 0);
