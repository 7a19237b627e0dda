import { afterAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bf16BitsToF32 } from '../src/gpu/index.js';
import { loadConfig } from '../src/weights/config.js';
import { Checkpoint, readTensorBytes } from '../src/weights/safetensors.js';
import { PRESETS, SPECIAL_TOKENS, TINY_TOKENIZER_VOCAB, VOCAB_SIZE, checkpointTensors, planShards, writeCheckpoint } from '../src/weights/synthetic.js';
import { freshSeed } from './util.js';

const tmp = mkdtempSync(join(tmpdir(), 'synth-test-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
const hashes = (dir: string) => Object.fromEntries(readdirSync(dir).sort().map((f) => [f, sha256(join(dir, f))]));
const shardFiles = (dir: string) => readdirSync(dir).filter((f) => f.endsWith('.safetensors')).sort();

describe('tensor names and shapes', () => {
  it('full: the real 8B shapes (pvc-architecture.md §2) plus the PVC temporal tensors (pvc-conventions.md)', () => {
    const specs = checkpointTensors(PRESETS.full);
    const shape = new Map(specs.map((s) => [s.name, s.shape]));
    expect(shape.size).toBe(specs.length);
    const want: Record<string, number[]> = {
      'vision_model.embeddings.class_embedding': [1, 1, 1024],
      'vision_model.embeddings.patch_embedding.weight': [1024, 3, 14, 14],
      'vision_model.embeddings.patch_embedding.bias': [1024],
      'vision_model.embeddings.position_embedding': [1, 1025, 1024],
      'vision_model.temporal_embedder.mlp.0.weight': [1024, 256],
      'vision_model.temporal_embedder.mlp.2.weight': [1024, 1024],
      'vision_model.encoder.layers.0.attn.qkv.weight': [3072, 1024],
      'vision_model.encoder.layers.0.attn.qkv.bias': [3072],
      'vision_model.encoder.layers.23.mlp.fc1.weight': [4096, 1024],
      'vision_model.encoder.layers.23.mlp.fc2.weight': [1024, 4096],
      'vision_model.encoder.layers.23.ls2': [1024],
      'vision_model.encoder.layers.23.temporal_attn.qkv.weight': [3072, 1024],
      'vision_model.encoder.layers.23.temporal_norm.bias': [1024],
      'vision_model.encoder.layers.23.adaLN_modulation.1.weight': [9216, 1024],
      'vision_model.encoder.layers.23.adaLN_modulation.1.bias': [9216],
      'mlp1.0.weight': [16384],
      'mlp1.1.weight': [4096, 16384],
      'mlp1.3.weight': [4096, 4096],
      'language_model.model.tok_embeddings.weight': [92553, 4096],
      'language_model.model.layers.31.attention.wqkv.weight': [6144, 4096],
      'language_model.model.layers.31.attention.wo.weight': [4096, 4096],
      'language_model.model.layers.31.feed_forward.w1.weight': [14336, 4096],
      'language_model.model.layers.31.feed_forward.w2.weight': [4096, 14336],
      'language_model.model.norm.weight': [4096],
      'language_model.output.weight': [92553, 4096],
    };
    for (const [name, s] of Object.entries(want)) expect([name, shape.get(name)]).toEqual([name, s]);
    // 4 embeddings + 4 temporal embedder + 24 x 14 ViT + 12 x 8 temporal + 6 mlp1 + 1 + 32 x 7 + 2
    expect(specs.length).toBe(4 + 4 + 24 * 14 + 12 * 8 + 6 + 1 + 32 * 7 + 2);
    expect(shape.has('vision_model.encoder.layers.11.temporal_attn.qkv.weight')).toBe(false);
  });

  for (const [name, p] of Object.entries(PRESETS)) {
    it(`${name}: every name is a known pattern, with consistent shapes`, () => {
      const C = p.vision.hidden;
      const k = p.temporal.adalnChunks;
      const H = p.llm.hidden;
      const d = H / p.llm.heads;
      for (const s of checkpointTensors(p)) {
        const m = /layers\.(\d+)\./.exec(s.name);
        const rest = s.name.replace(/layers\.\d+\./, 'layers.#.');
        const expected: Record<string, number[]> = {
          'vision_model.encoder.layers.#.attn.qkv.weight': [3 * C, C],
          'vision_model.encoder.layers.#.adaLN_modulation.1.weight': [k * C, C],
          'vision_model.encoder.layers.#.adaLN_modulation.1.bias': [k * C],
          'language_model.model.layers.#.attention.wqkv.weight': [(p.llm.heads + 2 * p.llm.kvHeads) * d, H],
          'mlp1.1.weight': [H, C / p.downsampleRatio ** 2],
          'vision_model.embeddings.position_embedding': [1, 1 + (p.vision.imageSize / p.vision.patch) ** 2, C],
        };
        if (expected[rest]) expect([s.name, s.shape]).toEqual([s.name, expected[rest]]);
        if (/\.temporal_(norm|attn)\.|adaLN/.test(s.name)) expect(p.temporal.layers).toContain(Number(m![1]));
        expect(s.name).toMatch(/^(vision_model\.(embeddings|temporal_embedder|encoder\.layers\.\d+)\.|mlp1\.[013]\.|language_model\.(model\.|output\.weight$))/);
      }
    });
  }
});

describe('written checkpoints', () => {
  const seed = freshSeed();
  const dirA = join(tmp, 'a');
  const dirB = join(tmp, 'b');
  const dirChunked = join(tmp, 'chunked');
  const dirOther = join(tmp, 'other');

  it(`tiny is deterministic given the seed (${seed}), whatever the chunk size`, async () => {
    await writeCheckpoint(dirA, 'tiny', { seed });
    await writeCheckpoint(dirB, 'tiny', { seed });
    await writeCheckpoint(dirChunked, 'tiny', { seed, chunkBytes: 4094 }); // many chunks, not row aligned
    await writeCheckpoint(dirOther, 'tiny', { seed: seed + 1 });
    const a = hashes(dirA);
    expect(hashes(dirB)).toEqual(a);
    expect(hashes(dirChunked)).toEqual(a);
    const other = hashes(dirOther);
    for (const f of shardFiles(dirA)) expect(other[f]).not.toBe(a[f]);
    expect(other['config.json']).toBe(a['config.json']);
  });

  it('has the real file set, an index covering every tensor exactly once, BF16 everywhere', async () => {
    expect(readdirSync(dirA).filter((f) => !f.endsWith('.safetensors')).sort()).toEqual([
      'added_tokens.json', 'config.json', 'generation_config.json', 'model.safetensors.index.json',
      'special_tokens_map.json', 'tokenizer.model', 'tokenizer_config.json',
    ]);
    const shards = shardFiles(dirA);
    expect(shards.length).toBeGreaterThanOrEqual(2);
    expect(shards.every((f, i) => f === `model-0000${i + 1}-of-0000${shards.length}.safetensors`)).toBe(true);
    const index = JSON.parse(readFileSync(join(dirA, 'model.safetensors.index.json'), 'utf8'));
    const specs = checkpointTensors(PRESETS.tiny);
    expect(Object.keys(index.weight_map).sort()).toEqual(specs.map((s) => s.name).sort());
    expect(index.metadata.total_size).toBe(specs.reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 2), 0));
    const ckpt = await Checkpoint.open(dirA); // checks shards and index agree
    for (const s of specs) {
      const info = ckpt.get(s.name);
      expect([s.name, info.dtype, info.shape]).toEqual([s.name, 'BF16', s.shape]);
      expect(info.file.endsWith(index.weight_map[s.name])).toBe(true);
    }
    expect(ckpt.totalBytes).toBe(index.metadata.total_size);
    const config = await loadConfig(dirA);
    expect([config.modelType, config.useTemporal, config.imageRepeatTime, config.llm.vocabSize]).toEqual(['pvc_internvl', true, 4, VOCAB_SIZE]);
  });

  it('weights have the intended scales (norms near 1, fan-in scaled linears, AdaLN gates near 1)', async () => {
    const ckpt = await Checkpoint.open(dirA);
    const stats = async (name: string) => {
      const v = bf16BitsToF32(new Uint16Array((await readTensorBytes(ckpt.get(name))).buffer));
      const mean = v.reduce((a, b) => a + b, 0) / v.length;
      return { v, mean, std: Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length) };
    };
    const C = PRESETS.tiny.vision.hidden;
    const qkv = await stats('vision_model.encoder.layers.0.attn.qkv.weight');
    expect(qkv.std).toBeGreaterThan(0.9 / Math.sqrt(C));
    expect(qkv.std).toBeLessThan(1.1 / Math.sqrt(C));
    expect(Math.abs(qkv.mean)).toBeLessThan(0.01);
    const norm = await stats('language_model.model.norm.weight');
    expect(Math.abs(norm.mean - 1)).toBeLessThan(0.05);
    const emb = await stats('language_model.model.tok_embeddings.weight');
    expect(Math.abs(emb.std - 1)).toBeLessThan(0.01);
    // output rows of ids without a tokenizer piece are quiet, so greedy decoding picks decodable ids
    const H = PRESETS.tiny.llm.hidden;
    const out = (await stats('language_model.output.weight')).v;
    const rowsStd = (from: number, to: number) => Math.sqrt(out.subarray(from * H, to * H).reduce((a, b) => a + b * b, 0) / ((to - from) * H));
    expect(rowsStd(0, TINY_TOKENIZER_VOCAB) * Math.sqrt(H)).toBeCloseTo(1, 1);
    expect(rowsStd(TINY_TOKENIZER_VOCAB, 92538) * Math.sqrt(H)).toBeCloseTo(0.05, 2);
    expect(rowsStd(92538, VOCAB_SIZE) * Math.sqrt(H)).toBeGreaterThan(0.8);
    const ada = (await stats('vision_model.encoder.layers.3.adaLN_modulation.1.bias')).v;
    for (let chunk = 0; chunk < 9; chunk++) {
      const part = ada.subarray(chunk * C, (chunk + 1) * C);
      const m = part.reduce((a, b) => a + b, 0) / C;
      expect(Math.abs(m - (chunk % 3 === 2 ? 1 : 0))).toBeLessThan(0.05);
    }
  });

  it('tokenizer files keep the real special-token ids; tokenizer.model is the InternLM2-style BPE', () => {
    const added = JSON.parse(readFileSync(join(dirA, 'added_tokens.json'), 'utf8'));
    expect(added['<IMG_CONTEXT>']).toBe(92546);
    expect(added['<|im_end|>']).toBe(92542);
    const cfg = JSON.parse(readFileSync(join(dirA, 'tokenizer_config.json'), 'utf8'));
    for (const [id, s] of SPECIAL_TOKENS) expect(cfg.added_tokens_decoder[String(id)]).toMatchObject({ content: s, special: true, lstrip: false, rstrip: false });
    expect(cfg.added_tokens_decoder['1'].content).toBe('<s>');
    const gen = JSON.parse(readFileSync(join(dirA, 'generation_config.json'), 'utf8'));
    expect(gen.eos_token_id).toEqual([92542, 92543]);
    const out = execFileSync('/usr/bin/python3', ['-c', `
import sentencepiece as spm, sys
s = spm.SentencePieceProcessor(model_file=sys.argv[1])
print(s.vocab_size(), s.unk_id(), s.bos_id(), s.eos_id(), s.id_to_piece(1), s.id_to_piece(2), ' '.join(s.encode('Describe 12 图片', out_type=str)))
`, join(dirA, 'tokenizer.model')]).toString().trim();
    // split digits and no dummy prefix, as InternLM's normalizer/trainer specs
    expect(out).toMatch(new RegExp(`^${TINY_TOKENIZER_VOCAB} 0 1 2`));
    expect(out).toMatch(/^\d+ 0 1 2 <s> <\/s> \S+( \S+)* ▁ 1 2 ▁/);
    expect(out.split(' ').slice(6)[0].startsWith('▁')).toBe(false);
  });

  it('shards are readable by Python (torch + a manual header parser) and agree with the TS reader', async () => {
    const ckpt = await Checkpoint.open(dirA);
    const names = ['vision_model.embeddings.patch_embedding.weight', 'mlp1.0.weight', 'language_model.model.layers.1.attention.wqkv.weight', 'language_model.output.weight'];
    const py = execFileSync('/usr/bin/python3', ['-c', `
import json, struct, sys, os, torch
d, names = sys.argv[1], sys.argv[2:]
index = json.load(open(os.path.join(d, 'model.safetensors.index.json')))['weight_map']
for n in names:
    with open(os.path.join(d, index[n]), 'rb') as f:
        hl = struct.unpack('<Q', f.read(8))[0]; h = json.loads(f.read(hl)); e = h[n]
        f.seek(8 + hl + e['data_offsets'][0]); raw = f.read(e['data_offsets'][1] - e['data_offsets'][0])
    t = torch.frombuffer(bytearray(raw), dtype=torch.bfloat16).reshape(e['shape'])
    print(n, e['dtype'], list(t.shape), repr(float(t.float().sum())), repr(float(t.reshape(-1)[-1].float())))
`, dirA, ...names]).toString().trim().split('\n');
    for (const [i, name] of names.entries()) {
      const info = ckpt.get(name);
      const v = bf16BitsToF32(new Uint16Array((await readTensorBytes(info)).buffer));
      const [pyName, dtype, shape, sum, last] = py[i].split(/ (?![^[]*\])/);
      expect([pyName, dtype, JSON.parse(shape)]).toEqual([name, 'BF16', info.shape]);
      expect(Number(last)).toBe(v[v.length - 1]);
      let s = 0;
      for (const x of v) s += x;
      expect(Math.abs(Number(sum) - s)).toBeLessThan(1e-3 * Math.sqrt(v.length));
    }
  });

  it('tiny-v1 writes and reads back too (second tiny preset)', async () => {
    const dir = join(tmp, 'v1');
    await writeCheckpoint(dir, 'tiny-v1', { seed });
    const ckpt = await Checkpoint.open(dir);
    expect(ckpt.names().length).toBe(checkpointTensors(PRESETS['tiny-v1']).length);
    expect(ckpt.get('vision_model.encoder.layers.2.adaLN_modulation.1.weight').shape).toEqual([6 * 48, 48]);
    expect((await loadConfig(dir)).psVersion).toBe('v1');
  });
});

describe('sharding', () => {
  it('packs in order under the limit; an oversized tensor gets its own shard', () => {
    const t = (name: string, n: number) => ({ name, shape: [n], init: { std: 1 } });
    const shards = planShards([t('a', 10), t('b', 10), t('c', 100), t('d', 5), t('e', 40)], 50);
    expect(shards.map((s) => s.map((x) => x.name))).toEqual([['a', 'b'], ['c'], ['d'], ['e']]);
  });
});
