// Tokenizer parity with python3-sentencepiece on the fixture model (InternLM v1 tokenizer.model:
// BPE, byte fallback, identity normalizer, no dummy prefix), plus a variant of it with the dummy
// prefix / extra-whitespace removal switched on and USER_DEFINED / UNUSED pieces, plus the
// InternVL2 added/special tokens, decode options, streaming and error cases.

import { describe, it, expect, beforeAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer, SentencePiece, toWellFormed } from '../src/text/tokenizer.js';
import { PieceType } from '../src/text/sentencepiece-model.js';
import { freshSeed, rng, SHARED } from './util.js';

const MODEL = join(SHARED, 'fixtures/tokenizers/internlm-v1.model');
const tmp = mkdtempSync(join(tmpdir(), 'tokenizer-test-'));

interface RefResult {
  ids: number[][];
  decoded: string[];
  decode: string[];
  chat_ids?: (number | string)[][];
}

function reference(request: { model: string; texts: string[]; decode?: number[][]; added?: string[]; chat_texts?: string[] }): RefResult {
  const path = join(tmp, `request-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(path, JSON.stringify(request));
  const out = execFileSync('/usr/bin/python3', [join(__dirname, 'tokenizer_ref.py'), path], { maxBuffer: 1 << 28 });
  return JSON.parse(out.toString('utf8')) as RefResult;
}

// InternVL2-8B's added tokens (pvc-architecture.md section 8) in the layout of its tokenizer_config.json.
const CHAT_SPECIALS: [number, string][] = [
  [92538, '<|plugin|>'],
  [92539, '<|interpreter|>'],
  [92540, '<|action_end|>'],
  [92541, '<|action_start|>'],
  [92542, '<|im_end|>'],
  [92543, '<|im_start|>'],
];
const IMAGE_TOKENS: [number, string][] = [
  [92544, '<img>'],
  [92545, '</img>'],
  [92546, '<IMG_CONTEXT>'],
  [92547, '<quad>'],
  [92548, '</quad>'],
  [92549, '<ref>'],
  [92550, '</ref>'],
  [92551, '<box>'],
  [92552, '</box>'],
];

export function internVL2Files(): { tokenizerConfig: object; addedTokens: object; specialTokensMap: object } {
  const decoder: Record<string, object> = {};
  const entry = (content: string, special: boolean) => ({ content, lstrip: false, normalized: false, rstrip: false, single_word: false, special });
  for (const [id, c] of [[0, '<unk>'], [1, '<s>'], [2, '</s>']] as const) decoder[id] = entry(c, true);
  for (const [id, c] of [...CHAT_SPECIALS, ...IMAGE_TOKENS]) decoder[id] = entry(c, true);
  return {
    tokenizerConfig: {
      add_bos_token: true,
      add_eos_token: false,
      added_tokens_decoder: decoder,
      additional_special_tokens: CHAT_SPECIALS.map(([, c]) => c),
      bos_token: '<s>',
      eos_token: '</s>',
      pad_token: '</s>',
      unk_token: '<unk>',
      clean_up_tokenization_spaces: false,
      tokenizer_class: 'InternLM2Tokenizer',
    },
    addedTokens: Object.fromEntries(IMAGE_TOKENS.map(([id, c]) => [c, id])),
    specialTokensMap: { additional_special_tokens: CHAT_SPECIALS.map(([, c]) => c), bos_token: '<s>', eos_token: '</s>', pad_token: '</s>', unk_token: '<unk>' },
  };
}

// ---------------------------------------------------------------------------------------------
// Seeded text generator

const CODE = [
  'def f(x):\n    return x ** 2\n',
  'for (let i = 0; i < n; i++) {\n\tsum += a[i];\n}',
  '#include <stdio.h>\nint main() { printf("%d\\n", 42); }',
  'SELECT * FROM t WHERE id = 7;',
  '<div class="a">&nbsp;</div>',
  '    if x:\n        pass\n',
  'λx. x + 1 -- haskell',
  '$ ls -la | grep "*.ts"',
];
const WORDS = ['the', 'Hello', 'world', "don't", 'tokenizer', 'internationalization', 'GPU', 'WebGPU', 'x', 'A', 'I', "it's", 'naïve', 'café'];

function randomText(rand: () => number): string {
  const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
  const cp = (lo: number, hi: number) => String.fromCodePoint(int(lo, hi));
  const fragments: (() => string)[] = [
    () => Array.from({ length: int(1, 6) }, () => pick(WORDS)).join(' '),
    () => ' '.repeat(int(1, 8)),
    () => pick(['\n', '\n\n', '\r\n', '\t', '\t\t', ' \n ', '\n   ', '\u00a0', '\u3000', '\ufeff', '\u2581', '\u2581\u2581 ']),
    () => Array.from({ length: int(1, 8) }, () => cp(0x4e00, 0x9fff)).join(''), // CJK
    () => Array.from({ length: int(1, 5) }, () => cp(0x3040, 0x30ff)).join(''), // kana
    () => Array.from({ length: int(1, 5) }, () => cp(0xac00, 0xd7a3)).join(''), // Hangul
    () => pick(['😀', '👍🏽', '👨‍👩‍👧', '🇫🇷', '🧑🏻‍💻', '❤️', '🫠', '🦀']) + (rand() < 0.5 ? ' ' : ''),
    () => pick(['e', 'a', 'o', 'n']) + Array.from({ length: int(1, 3) }, () => cp(0x300, 0x36f)).join(''), // combining marks
    () => pick(CODE),
    () => pick(['Привет мир', 'مرحبا بالعالم', 'नमस्ते दुनिया', 'สวัสดีชาวโลก', 'Γειά σου', 'שלום']),
    () => String(int(0, 10 ** int(1, 9))) + pick(['', '.5', ',000', '%']),
    () => pick(['.', ',', '!?', '...', '—', '«»', '()', '[]{}', '"', "'", '`', '\\', '@#$']),
    () => cp(0x20, 0x7e).repeat(int(1, 4)),
    () => Array.from({ length: int(1, 3) }, () => cp(0x80, 0xd7ff)).join(''), // anything in the BMP
    () => Array.from({ length: int(1, 2) }, () => cp(0x10000, 0x10ffff)).join(''), // astral, mostly unassigned
    () => pick(['\ud800', '\udfff', 'a\udc00b', '\ud83d']), // lone surrogates
    () => cp(0, 0x1f),
    () => pick(['<s>', '</s>', '<unk>', '<0x41>', '<|im_end|>', '<img>']),
  ];
  const n = int(0, 10);
  let s = '';
  for (let i = 0; i < n; i++) s += pick(fragments)();
  return s;
}

// ---------------------------------------------------------------------------------------------
// A variant model written by the test: protobuf writer for the few fields we change

function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

function lenField(num: number, payload: Uint8Array | number[]): number[] {
  return [...varint((num << 3) | 2), ...varint(payload.length), ...payload];
}

/** The fixture with add_dummy_prefix and remove_extra_whitespaces on, some pieces USER_DEFINED and some UNUSED. */
function variantModel(fixture: SentencePiece, userDefined: Set<string>, unused: Set<string>): Uint8Array {
  const out: number[] = [];
  const te = new TextEncoder();
  for (const p of fixture.model.pieces) {
    const type = userDefined.has(p.piece) ? PieceType.USER_DEFINED : unused.has(p.piece) ? PieceType.UNUSED : p.type;
    const score = new Uint8Array(new Float32Array([p.score]).buffer);
    out.push(...lenField(1, [...lenField(1, te.encode(p.piece)), 0x15, ...score, 0x18, type]));
  }
  const t = fixture.model.trainerSpec;
  out.push(...lenField(2, [0x18, t.modelType, ...varint((35 << 3) | 0), 1]));
  out.push(...lenField(3, [...lenField(1, te.encode('identity')), 0x18, 1, 0x20, 1]));
  return new Uint8Array(out);
}

// ---------------------------------------------------------------------------------------------

describe('SentencePiece BPE parity with python3-sentencepiece', () => {
  const seed = freshSeed();
  let sp: SentencePiece;
  beforeAll(() => {
    sp = SentencePiece.fromBytes(readFileSync(MODEL));
  });

  it('reads the model proto', () => {
    const { trainerSpec: t, normalizerSpec: n } = sp.model;
    expect(sp.size).toBe(103168);
    expect([t.modelType, t.byteFallback, t.unkId, t.bosId, t.eosId, t.padId]).toEqual([2, true, 0, 1, 2, -1]);
    expect([n.name, n.addDummyPrefix, n.removeExtraWhitespaces, n.escapeWhitespaces]).toEqual(['identity', false, false, true]);
    expect([sp.idToPiece(3), sp.idToPiece(262), sp.model.pieces[262].score]).toEqual(['<0x00>', '\u2581', -1298]);
  });

  it(`encodes 2500 varied strings like sentencepiece and decodes like it (seed ${seed})`, () => {
    const rand = rng(seed);
    const texts = ['', ' ', '  ', '\n', 'Hello world  x\n\n  y 你好', ...Array.from({ length: 2495 }, () => randomText(rand))];
    // Python gets the same UTF-8 bytes: lone surrogates replaced as TextEncoder does.
    const ref = reference({ model: MODEL, texts: texts.map(toWellFormed) });
    let byteFallbacks = 0;
    for (let i = 0; i < texts.length; i++) {
      const ids = sp.encode(texts[i]);
      expect(ids, `text ${i}: ${JSON.stringify(texts[i])}`).toEqual(ref.ids[i]);
      expect(sp.decode(ids), `decode of text ${i}`).toBe(ref.decoded[i]);
      byteFallbacks += ids.filter((id) => sp.isByte(id)).length;
    }
    expect(byteFallbacks).toBeGreaterThan(100); // the generator does exercise byte fallback
  });

  it(`decodes random id sequences like sentencepiece, invalid UTF-8 included (seed ${seed})`, () => {
    const rand = rng(seed + 1);
    const lists = Array.from({ length: 500 }, () =>
      Array.from({ length: Math.floor(rand() * 12) }, () => {
        const r = rand();
        if (r < 0.5) return 3 + Math.floor(rand() * 256); // byte pieces: mostly invalid sequences
        if (r < 0.55) return Math.floor(rand() * 3); // <unk>, <s>, </s>
        return Math.floor(rand() * sp.size);
      }),
    );
    const ref = reference({ model: MODEL, texts: [], decode: lists });
    lists.forEach((ids, i) => expect(sp.decode(ids), `ids ${JSON.stringify(ids)}`).toBe(ref.decode[i]));
  });

  it(`matches sentencepiece with dummy prefix, extra-whitespace removal, USER_DEFINED and UNUSED pieces (seed ${seed})`, () => {
    const userDefined = new Set(['ing', '你好', '::', '\n\n']);
    const unused = new Set(['\u2581world', '\u2581the', 'er', '\u2581\u2581']);
    for (const p of [...userDefined, ...unused]) expect(sp.pieceToId(p), p).not.toBe(sp.unkId);
    const bytes = variantModel(sp, userDefined, unused);
    const path = join(tmp, 'variant.model');
    writeFileSync(path, bytes);
    const variant = SentencePiece.fromBytes(bytes);
    const rand = rng(seed + 2);
    const texts = ['  Hello   world  ', 'singing the world', '   \u2581\u2581 ', '\u2581', 'a\u2581\u2581b', 'a \u2581 b', '\u2581a', 'a\u2581', 'a::b 你好你好 \n\n\nx', ...Array.from({ length: 600 }, () => randomText(rand))];
    const ref = reference({ model: path, texts: texts.map(toWellFormed) });
    texts.forEach((text, i) => {
      const ids = variant.encode(text);
      expect(ids, `text ${i}: ${JSON.stringify(text)}`).toEqual(ref.ids[i]);
      expect(variant.decode(ids), `decode of text ${i}`).toBe(ref.decoded[i]);
    });
  });
});

describe('InternVL2 tokenizer (added tokens, bos, decode, streaming)', () => {
  const seed = freshSeed();
  let tok: Tokenizer;
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmp, 'ckpt-'));
    symlinkSync(MODEL, join(dir, 'tokenizer.model'));
    const files = internVL2Files();
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(files.tokenizerConfig));
    writeFileSync(join(dir, 'added_tokens.json'), JSON.stringify(files.addedTokens));
    writeFileSync(join(dir, 'special_tokens_map.json'), JSON.stringify(files.specialTokensMap));
    tok = await Tokenizer.fromDirectory(dir);
  });

  it('maps the added and special tokens to their ids', () => {
    for (const [id, c] of [...CHAT_SPECIALS, ...IMAGE_TOKENS]) {
      expect(tok.tokenToId(c)).toBe(id);
      expect(tok.idToToken(id)).toBe(c);
    }
    expect(tok.vocabSize).toBe(103168); // the v1 fixture vocabulary is larger than 92553
    expect(tok.encode('<|im_start|>user\n<img><IMG_CONTEXT><IMG_CONTEXT></img>hi<|im_end|>')).toEqual([
      1, 92543, ...tok.sp.encode('user\n'), 92544, 92546, 92546, 92545, ...tok.sp.encode('hi'), 92542,
    ]);
    expect(tok.encode('<s>a</s>', { addSpecialTokens: false })).toEqual([1, ...tok.sp.encode('a'), 2]);
  });

  it(`splits on added tokens like the slow tokenizer (seed ${seed})`, () => {
    const rand = rng(seed);
    const added = ['<s>', '</s>', '<unk>', ...CHAT_SPECIALS.map(([, c]) => c), ...IMAGE_TOKENS.map(([, c]) => c)];
    const texts = Array.from({ length: 300 }, () => {
      let s = '';
      for (let k = Math.floor(rand() * 6); k >= 0; k--) s += randomText(rand) + (rand() < 0.7 ? added[Math.floor(rand() * added.length)] : '<|im_');
      return toWellFormed(s);
    });
    const ref = reference({ model: MODEL, texts: [], added, chat_texts: texts });
    texts.forEach((text, i) => {
      const want = ref.chat_ids![i].map((x) => (typeof x === 'string' ? tok.tokenToId(x)! : x));
      expect(tok.encode(text), JSON.stringify(text)).toEqual(want);
    });
  });

  it('applies lstrip / rstrip / single_word of added tokens', () => {
    const files = internVL2Files();
    const config = files.tokenizerConfig as { added_tokens_decoder: Record<string, Record<string, unknown>> };
    config.added_tokens_decoder['92542'].lstrip = true;
    config.added_tokens_decoder['92543'].rstrip = true;
    const t = Tokenizer.fromBytes(readFileSync(MODEL), files);
    // Python's str.strip whitespace set: \n, \u3000 and \x1c are stripped, \ufeff is not.
    expect(t.encode('a \n\u3000<|im_end|>b', { addSpecialTokens: false })).toEqual([...t.sp.encode('a'), 92542, ...t.sp.encode('b')]);
    expect(t.encode('<|im_start|> \x1c\n x', { addSpecialTokens: false })).toEqual([92543, ...t.sp.encode('x')]);
    expect(t.encode('\ufeff<|im_end|>', { addSpecialTokens: false })).toEqual([...t.sp.encode('\ufeff'), 92542]);
  });

  it('decodes: added tokens verbatim, skip_special_tokens, clean-up, no leading space dropped', () => {
    const ids = tok.encode('<|im_start|>assistant\n Hello , world .<|im_end|>');
    expect(tok.decode(ids, { cleanUpSpaces: false })).toBe('<s><|im_start|>assistant\n Hello , world .<|im_end|>');
    expect(tok.decode(ids)).toBe('<s><|im_start|>assistant\n Hello, world.<|im_end|>');
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe('assistant\n Hello, world.');
    expect(tok.decode(tok.encode(' leading space', { addSpecialTokens: false }))).toBe(' leading space');
    expect(tok.decode(tok.encode("I 'm sure it 's fine , is n't it ? ' ", { addSpecialTokens: false }))).toBe("I'm sure it's fine, isn't it?'");
    expect(tok.decode([92544, 92546, 92545], { skipSpecialTokens: true })).toBe('');
  });

  it(`streams only complete characters, and the pieces add up to decode (seed ${seed})`, () => {
    const rand = rng(seed + 3);
    const texts = ['🦀 👨‍👩‍👧 𠀋𪚥 \u{10FFFD} ok .', "x ' s n 't , . end ?", ...Array.from({ length: 200 }, () => randomText(rand))];
    let multiByteChars = 0;
    for (const text of texts) {
      const ids = tok.encode(text);
      for (const options of [{}, { cleanUpSpaces: false, skipSpecialTokens: true }]) {
        const stream = tok.streamDecoder(options);
        let acc = '';
        ids.forEach((id, k) => {
          const piece = stream.push(id);
          if (tok.sp.isByte(id) && piece === '' && k + 1 < ids.length && tok.sp.isByte(ids[k + 1])) multiByteChars++;
          acc += piece;
          // Never a replacement character for well-formed text: bytes are only emitted as whole characters.
          expect(piece.includes('\uFFFD') && !toWellFormed(text).includes('\uFFFD'), JSON.stringify(text)).toBe(false);
          expect(tok.decode(ids.slice(0, k + 1), options).startsWith(acc), JSON.stringify(text)).toBe(true);
        });
        acc += stream.flush();
        expect(acc).toBe(tok.decode(ids, options));
      }
    }
    expect(multiByteChars).toBeGreaterThan(10);
  });

  it('an unfinished character at the end of a stream is flushed as U+FFFD', () => {
    const stream = tok.streamDecoder();
    const e4 = tok.sp.pieceToId('<0xE4>');
    const b8 = tok.sp.pieceToId('<0xB8>');
    expect(stream.push(tok.sp.pieceToId('a'))).toBe('a');
    expect(stream.push(e4)).toBe('');
    expect(stream.push(b8)).toBe('');
    expect(stream.push(tok.sp.pieceToId('<0xAD>'))).toBe('中');
    expect(stream.push(e4)).toBe('');
    expect(stream.flush()).toBe('\uFFFD');
  });

  it('rejects bad input with clear errors', async () => {
    await expect(Tokenizer.fromDirectory(join(tmp, 'nope'))).rejects.toThrow(/cannot read .*tokenizer\.model/);
    expect(() => Tokenizer.fromBytes(new Uint8Array([0x0a, 0x20, 1]))).toThrow(/not a valid SentencePiece ModelProto/);
    expect(() => Tokenizer.fromBytes(new TextEncoder().encode('{"not": "a model"}'))).toThrow(/not a valid SentencePiece ModelProto/);
    const model = readFileSync(MODEL);
    expect(() => Tokenizer.fromBytes(model.subarray(0, 5000))).toThrow(/not a valid SentencePiece ModelProto/);
    expect(() => Tokenizer.fromBytes(model, { tokenizerConfig: '{oops' })).toThrow(/tokenizer_config.json is not valid JSON/);
    expect(() => Tokenizer.fromBytes(model, { addedTokens: { '<img>': 'x' } })).toThrow(/added_tokens.json: "<img>" should map to a number/);
    expect(() => Tokenizer.fromBytes(model, { tokenizerConfig: internVL2Files().tokenizerConfig, addedTokens: { '<img>': 5 } })).toThrow(/"<img>" is 5 but tokenizer_config.json says 92544/);
    expect(() => tok.decode([tok.vocabSize])).toThrow(/outside the vocabulary/);
  });
});
