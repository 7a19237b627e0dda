// The engine's own parity dump of one case (DESIGN.md "Dump format"):
//   npm run dump -- --model DIR --case text|image|two_images|video --out FILE
//     [--prompt TEXT] [--image FILE ...] [--video FILE --frames N] [--max-tiles N]
//     [--max-new-tokens N] [--switch name=value ...] [--system TEXT] [--logits-last K]
// Same prompts, preprocessing and greedy rules as test/reference/make_dumps.py, so the two dumps of
// a case can be compared with `npm run parity -- --dump A --against B`.

import { parseArgs } from 'node:util';
import { getDevice } from '../src/gpu/index.js';
import { InternVL } from '../src/models/internvl.js';
import { parseSwitchArgs } from '../src/parity/cli.js';
import { idTensor, writeDump } from '../src/parity/dump.js';
import { CASES, prepareCase, runCase, type CaseName } from '../src/parity/engine.js';
import { Tokenizer } from '../src/text/tokenizer.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    case: { type: 'string' },
    out: { type: 'string' },
    prompt: { type: 'string' },
    image: { type: 'string', multiple: true, default: [] },
    video: { type: 'string' },
    frames: { type: 'string', default: '8' },
    'max-tiles': { type: 'string', default: '4' },
    'max-new-tokens': { type: 'string', default: '8' },
    switch: { type: 'string', multiple: true, default: [] },
    system: { type: 'string' },
    'logits-last': { type: 'string', default: '0' },
  },
});
const int = (name: 'frames' | 'max-tiles' | 'max-new-tokens' | 'logits-last', min: number): number => {
  const v = Number(values[name]);
  if (!Number.isSafeInteger(v) || v < min) {
    console.error(`--${name} must be an integer >= ${min}, got ${values[name]}`);
    process.exit(2);
  }
  return v;
};
if (!values.model || !values.out || !CASES.includes(values.case as CaseName)) {
  console.error(`usage: npm run dump -- --model DIR --case ${CASES.join('|')} --out FILE [--prompt TEXT] [--image FILE ...] [--video FILE --frames N] [--max-tiles N] [--max-new-tokens N] [--switch name=value ...] [--system TEXT] [--logits-last K]`);
  process.exit(2);
}

const gpu = await getDevice();
try {
  const model = await InternVL.load(gpu, values.model, { switches: parseSwitchArgs(values.switch!) });
  const tokenizer = await Tokenizer.fromDirectory(values.model);
  const inputs = await prepareCase(model, tokenizer, {
    case: values.case as CaseName,
    question: values.prompt,
    images: values.image,
    video: values.video,
    frames: int('frames', 1),
    maxTiles: int('max-tiles', 1),
    system: values.system,
  });
  const start = performance.now();
  const dump = await runCase(model, inputs, { maxNewTokens: int('max-new-tokens', 1), logitsLast: int('logits-last', 0) });
  await writeDump(values.out, dump);
  console.log(`${values.out}: ${inputs.ids.length} prompt tokens, generated [${idTensor(dump, 'generate.ids').join(', ')}] in ${((performance.now() - start) / 1000).toFixed(1)} s`);
} finally {
  gpu.destroy();
}
