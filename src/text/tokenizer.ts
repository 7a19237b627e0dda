// InternLM2 tokenizer: SentencePiece BPE (read from tokenizer.model) plus the added/special tokens
// of the Hugging Face checkpoint, behaving like the slow `InternLM2Tokenizer` that InternVL uses.
//
// Why hand-written: InternVL2 checkpoints ship only the slow tokenizer files (tokenizer.model and
// JSON configs, no tokenizer.json), so libraries that load tokenizer.json (@huggingface/transformers,
// tokenizers) cannot read them, and the SentencePiece ports that can read tokenizer.model need WASM
// or a protobuf runtime. BPE encoding is ~100 lines; parity with python3-sentencepiece is tested.
//
// Reading of the reference code (transformers' PreTrainedTokenizer + tokenization_internlm2.py):
// - tokenize(): split the text on added-token strings (a trie, leftmost then longest match), apply
//   each added token's lstrip/rstrip/single_word to its neighbours, then `sp_model.encode(chunk)` on
//   every remaining chunk independently. So SentencePiece's normalizer (dummy prefix included, if the
//   model enables it) runs once per chunk, and no "▁" is inserted at chunk boundaries otherwise.
// - ids: [bos] (add_bos_token, bos = the model's bos_id) + ids (+ eos if add_eos_token).
// - decode: SentencePiece decode of each run of ordinary ids; added tokens give their content.
//   convert_tokens_to_string() prepends ' ' when "tokens[0] not in no_prefix_space_tokens" and
//   returns out[1:]; that set holds ints while tokens[0] is a str, so the space is always added and
//   always removed: the net effect is that no leading space is dropped. We reproduce that net
//   effect (text exactly as SentencePiece decodes it). It also always applies transformers'
//   clean_up_tokenization (" ." -> ".", " n't" -> "n't", ...): that is `cleanUpSpaces` (default on).
//   Not reproduced: the extra ' ' transformers puts before a non-skipped special token and between
//   non-special added tokens (a decode-only artefact; chat output skips special tokens).

import { parseModelProto, ModelType, PieceType, type ModelProto } from './sentencepiece-model.js';

const SPACE = '\u2581'; // "▁", SentencePiece's escaped whitespace

// ---------------------------------------------------------------------------------------------
// UTF-8 helpers

/** JS strings may hold lone surrogates; like TextEncoder, they become U+FFFD. */
export function toWellFormed(text: string): string {
  return text.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

/**
 * Length of the valid UTF-8 character at bytes[i], with SentencePiece's rules (no overlongs, no
 * surrogates, <= U+10FFFF); 0 if invalid, -1 if the bytes end before a possibly valid character does.
 */
function utf8CharLength(bytes: ArrayLike<number>, i: number): number {
  const b0 = bytes[i];
  if (b0 < 0x80) return 1;
  const need = (b0 & 0xe0) === 0xc0 ? 2 : (b0 & 0xf0) === 0xe0 ? 3 : (b0 & 0xf8) === 0xf0 ? 4 : 0;
  if (need === 0) return 0;
  let cp = b0 & (0x7f >> need);
  for (let k = 1; k < need; k++) {
    if (i + k >= bytes.length) return -1;
    const b = bytes[i + k];
    if ((b & 0xc0) !== 0x80) return 0;
    cp = (cp << 6) | (b & 0x3f);
  }
  const min = need === 2 ? 0x80 : need === 3 ? 0x800 : 0x10000;
  const valid = cp >= min && (cp < 0xd800 || (cp >= 0xe000 && cp <= 0x10ffff));
  return valid ? need : 0;
}

const utf8 = new TextDecoder('utf-8', { ignoreBOM: true }); // keep a U+FEFF that the bytes spell

/** Bytes to text, one U+FFFD per byte that does not start a valid character (as SentencePiece). */
function decodeBytes(bytes: number[]): string {
  let out = '';
  for (let i = 0; i < bytes.length; ) {
    const n = utf8CharLength(bytes, i);
    if (n <= 0) {
      out += '\uFFFD';
      i += 1;
    } else {
      out += utf8.decode(new Uint8Array(bytes.slice(i, i + n)));
      i += n;
    }
  }
  return out;
}


// ---------------------------------------------------------------------------------------------
// SentencePiece BPE

/** A binary max-heap of candidate merges: higher score first, then the leftmost pair. */
class MergeQueue {
  private items: { left: number; right: number; score: number; size: number }[] = [];

  private before(a: number, b: number): boolean {
    const x = this.items[a];
    const y = this.items[b];
    return x.score > y.score || (x.score === y.score && x.left < y.left);
  }

  push(item: { left: number; right: number; score: number; size: number }): void {
    const items = this.items;
    items.push(item);
    for (let i = items.length - 1; i > 0; ) {
      const parent = (i - 1) >> 1;
      if (!this.before(i, parent)) break;
      [items[i], items[parent]] = [items[parent], items[i]];
      i = parent;
    }
  }

  pop(): { left: number; right: number; score: number; size: number } | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (items.length > 0 && last !== undefined) {
      items[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let best = i;
        if (l < items.length && this.before(l, best)) best = l;
        if (r < items.length && this.before(r, best)) best = r;
        if (best === i) break;
        [items[i], items[best]] = [items[best], items[i]];
        i = best;
      }
    }
    return top;
  }
}

/** SentencePiece's processor for BPE models: normalizer, BPE encoding, decoding. */
export class SentencePiece {
  readonly model: ModelProto;
  /** NORMAL, USER_DEFINED and UNUSED pieces: those BPE may produce. */
  private readonly pieces = new Map<string, number>();
  /** CONTROL, UNKNOWN and BYTE pieces: looked up first by pieceToId, never produced by merges. */
  private readonly reserved = new Map<string, number>();
  private readonly userDefined: Set<string>;
  private readonly maxUserDefinedLength: number;
  private readonly byteIds: number[] = [];
  readonly unkId: number;

  constructor(model: ModelProto) {
    this.model = model;
    const { trainerSpec: t, normalizerSpec: n } = model;
    if (t.modelType !== ModelType.BPE) {
      throw new Error(`tokenizer.model: model type ${ModelType[t.modelType] ?? t.modelType} is not supported (only BPE)`);
    }
    if (n.precompiledCharsmap.length > 0) {
      throw new Error(`tokenizer.model: normalizer "${n.name}" uses a precompiled charsmap; only the identity normalizer is supported`);
    }
    if (t.treatWhitespaceAsSuffix) throw new Error('tokenizer.model: treat_whitespace_as_suffix is not supported');
    const userDefined: string[] = [];
    let unkId = -1;
    model.pieces.forEach((p, id) => {
      const normal = p.type === PieceType.NORMAL || p.type === PieceType.USER_DEFINED || p.type === PieceType.UNUSED;
      const map = normal ? this.pieces : this.reserved;
      if (this.pieces.has(p.piece) || this.reserved.has(p.piece)) throw new Error(`tokenizer.model: piece "${p.piece}" is defined twice`);
      map.set(p.piece, id);
      if (p.type === PieceType.USER_DEFINED) userDefined.push(p.piece);
      if (p.type === PieceType.UNKNOWN) {
        if (unkId >= 0) throw new Error('tokenizer.model: more than one unknown piece');
        unkId = id;
      }
      if (p.type === PieceType.BYTE) {
        const m = /^<0x([0-9A-F]{2})>$/.exec(p.piece);
        if (!m) throw new Error(`tokenizer.model: byte piece "${p.piece}" is not of the form <0xNN>`);
        this.byteIds[parseInt(m[1], 16)] = id;
      }
    });
    if (unkId < 0) throw new Error('tokenizer.model: no unknown piece');
    if (t.byteFallback && this.byteIds.filter((x) => x !== undefined).length !== 256) {
      throw new Error('tokenizer.model: byte_fallback is set but the 256 <0xNN> pieces are not all present');
    }
    this.unkId = unkId;
    this.userDefined = new Set(userDefined);
    this.maxUserDefinedLength = Math.max(0, ...userDefined.map((s) => s.length));
  }

  static fromBytes(bytes: Uint8Array): SentencePiece {
    return new SentencePiece(parseModelProto(bytes));
  }

  get size(): number {
    return this.model.pieces.length;
  }

  pieceToId(piece: string): number {
    return this.reserved.get(piece) ?? this.pieces.get(piece) ?? this.unkId;
  }

  idToPiece(id: number): string {
    const p = this.model.pieces[id];
    if (p === undefined) throw new Error(`token id ${id} is outside the vocabulary (0..${this.size - 1})`);
    return p.piece;
  }

  /** The identity normalizer with the model's whitespace flags (sentencepiece normalizer.cc). */
  normalize(text: string): string {
    const n = this.model.normalizerSpec;
    let s = toWellFormed(text);
    if (n.removeExtraWhitespaces) s = s.replace(/^ +/, '').replace(/ {2,}/g, ' ');
    if (s.length === 0) return '';
    if (n.addDummyPrefix) s = ' ' + s;
    const space = n.escapeWhitespaces ? SPACE : ' ';
    if (n.escapeWhitespaces) s = s.replaceAll(' ', SPACE);
    // Trailing whitespace is removed after escaping, so a literal "▁" in the text goes too (and the
    // dummy prefix with it when nothing else is left), as sentencepiece does.
    if (n.removeExtraWhitespaces) while (s.endsWith(space)) s = s.slice(0, -space.length);
    return s;
  }

  /** Ids of `text` exactly as SentencePieceProcessor.encode (no bos/eos). */
  encode(text: string): number[] {
    const normalized = this.normalize(text);
    if (normalized.length === 0) return [];
    const out: number[] = [];
    let prevUnk = false;
    for (const piece of this.bpe(normalized)) {
      const id = this.pieceToId(piece);
      const unk = id === this.unkId;
      if (unk && this.model.trainerSpec.byteFallback) {
        for (const b of new TextEncoder().encode(piece)) out.push(this.byteIds[b]);
      } else if (!(unk && prevUnk)) {
        out.push(id); // without byte fallback, consecutive unknown pieces collapse into one <unk>
      }
      prevUnk = unk;
    }
    return out;
  }

  /**
   * bpe_model.cc: start from characters (user-defined pieces are single frozen symbols), repeatedly
   * merge the adjacent pair whose concatenation is the highest-scoring piece (leftmost on ties),
   * then split UNUSED pieces back into the pieces they were merged from.
   */
  private bpe(normalized: string): string[] {
    const syms: { piece: string; prev: number; next: number; freeze: boolean }[] = [];
    for (let i = 0; i < normalized.length; ) {
      let len = 0;
      for (let l = Math.min(this.maxUserDefinedLength, normalized.length - i); l > 0; l--) {
        if (this.userDefined.has(normalized.slice(i, i + l))) {
          len = l;
          break;
        }
      }
      const freeze = len > 0;
      if (!freeze) len = normalized.codePointAt(i)! > 0xffff ? 2 : 1;
      syms.push({ piece: normalized.slice(i, i + len), prev: syms.length - 1, next: syms.length + 1, freeze });
      i += len;
    }
    syms[syms.length - 1].next = -1;

    const queue = new MergeQueue();
    const unusedSplits = new Map<string, [string, string]>();
    const addPair = (left: number, right: number): void => {
      if (left < 0 || right < 0 || syms[left].freeze || syms[right].freeze) return;
      const merged = syms[left].piece + syms[right].piece;
      const id = this.pieces.get(merged);
      if (id === undefined) return;
      const p = this.model.pieces[id];
      queue.push({ left, right, score: p.score, size: merged.length });
      if (p.type === PieceType.UNUSED) unusedSplits.set(merged, [syms[left].piece, syms[right].piece]);
    };
    for (let i = 1; i < syms.length; i++) addPair(i - 1, i);

    for (let top = queue.pop(); top; top = queue.pop()) {
      const l = syms[top.left];
      const r = syms[top.right];
      // Stale candidate: one side was merged away or grew since it was queued.
      if (l.piece === '' || r.piece === '' || l.piece.length + r.piece.length !== top.size) continue;
      l.piece += r.piece;
      r.piece = '';
      l.next = r.next;
      if (r.next >= 0) syms[r.next].prev = top.left;
      addPair(l.prev, top.left);
      addPair(top.left, l.next);
    }

    const out: string[] = [];
    const resegment = (piece: string): void => {
      const split = this.model.pieces[this.pieces.get(piece) ?? -1]?.type === PieceType.UNUSED ? unusedSplits.get(piece) : undefined;
      if (split) {
        resegment(split[0]);
        resegment(split[1]);
      } else {
        out.push(piece);
      }
    };
    for (let i = 0; i >= 0; i = syms[i].next) resegment(syms[i].piece);
    return out;
  }

  isByte(id: number): boolean {
    return this.model.pieces[id]?.type === PieceType.BYTE;
  }

  /** Whether decode drops the "▁" that starts the first piece (the dummy prefix's space). */
  get stripsLeadingSpace(): boolean {
    const n = this.model.normalizerSpec;
    return n.addDummyPrefix || n.removeExtraWhitespaces;
  }

  /** Text of `ids` exactly as SentencePieceProcessor.decode. */
  decode(ids: readonly number[]): string {
    const t = this.model.trainerSpec;
    let out = '';
    let atStart = true;
    let bytes: number[] = [];
    const flushBytes = (): void => {
      if (bytes.length === 0) return;
      out += decodeBytes(bytes);
      bytes = [];
      atStart = false;
    };
    for (const id of ids) {
      const p = this.model.pieces[id];
      if (p === undefined) throw new Error(`token id ${id} is outside the vocabulary (0..${this.size - 1})`);
      if (p.type === PieceType.BYTE) {
        bytes.push(parseInt(p.piece.slice(3, 5), 16));
        continue;
      }
      flushBytes();
      if (p.type === PieceType.CONTROL) continue;
      let text = p.type === PieceType.UNKNOWN ? t.unkSurface : p.piece;
      if (atStart && this.stripsLeadingSpace && p.type !== PieceType.UNKNOWN && text.startsWith(SPACE)) text = text.slice(1);
      out += text.replaceAll(SPACE, ' ');
      if (text.length > 0) atStart = false;
    }
    flushBytes();
    return out;
  }

  /**
   * How many trailing ids are byte pieces of a UTF-8 character that is not complete yet (and could
   * still become valid): a stream must wait for more ids before showing them.
   */
  incompleteTail(ids: readonly number[]): number {
    let start = ids.length;
    while (start > 0 && ids.length - start < 3 && this.isByte(ids[start - 1])) start--;
    for (let i = start; i < ids.length; i++) {
      const bytes = ids.slice(i).map((id) => parseInt(this.model.pieces[id].piece.slice(3, 5), 16));
      if (utf8CharLength(bytes, 0) === -1) return ids.length - i;
    }
    return 0;
  }
}

// ---------------------------------------------------------------------------------------------
// Hugging Face layer: added / special tokens, bos/eos, decode options, streaming

export interface AddedToken {
  id: number;
  content: string;
  special: boolean;
  lstrip: boolean;
  rstrip: boolean;
  singleWord: boolean;
}

/** Parsed JSON (or its text) of the checkpoint's tokenizer files other than tokenizer.model. */
export interface TokenizerConfigFiles {
  tokenizerConfig?: unknown;
  addedTokens?: unknown;
  specialTokensMap?: unknown;
}

export interface DecodeOptions {
  /** Drop special tokens (bos/eos/unk/pad, additional_special_tokens, added tokens marked special). */
  skipSpecialTokens?: boolean;
  /** transformers' clean_up_tokenization, which InternLM2Tokenizer always applies. Default true. */
  cleanUpSpaces?: boolean;
}

// Python's str.isspace() set, used by str.strip() in transformers' lstrip/rstrip handling.
const PY_SPACE = '[\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
const PY_LEADING_SPACE = new RegExp(`^${PY_SPACE}+`);
const PY_TRAILING_SPACE = new RegExp(`${PY_SPACE}+$`);

function json(what: string, value: unknown): Record<string, unknown> | undefined {
  if (value === undefined || value === null) return undefined;
  let v = value;
  if (typeof value === 'string' || value instanceof Uint8Array) {
    const text = typeof value === 'string' ? value : new TextDecoder().decode(value);
    try {
      v = JSON.parse(text);
    } catch (e) {
      throw new Error(`${what} is not valid JSON: ${(e as Error).message}`);
    }
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${what} should hold a JSON object`);
  return v as Record<string, unknown>;
}

/** A special token in a config is either a string or an AddedToken-like {content, ...} object. */
function tokenContent(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && value !== null && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  return undefined;
}

export class Tokenizer {
  readonly sp: SentencePiece;
  readonly addBos: boolean;
  readonly addEos: boolean;
  readonly bosId: number;
  readonly eosId: number;
  /** Ids are < vocabSize: SentencePiece pieces plus added tokens (the embedding's row count). */
  readonly vocabSize: number;
  private readonly byContent = new Map<string, AddedToken>();
  private readonly byId = new Map<number, AddedToken>();
  private readonly specialIds = new Set<number>();
  private readonly addedFirstChars = new Map<string, number[]>(); // first char -> content lengths, longest first

  constructor(sp: SentencePiece, files: TokenizerConfigFiles = {}) {
    this.sp = sp;
    const config = json('tokenizer_config.json', files.tokenizerConfig) ?? {};
    const addedJson = json('added_tokens.json', files.addedTokens) ?? {};
    const specialMap = json('special_tokens_map.json', files.specialTokensMap) ?? {};
    this.addBos = config.add_bos_token === undefined ? true : Boolean(config.add_bos_token);
    this.addEos = Boolean(config.add_eos_token);
    this.bosId = sp.model.trainerSpec.bosId;
    this.eosId = sp.model.trainerSpec.eosId;

    const add = (t: AddedToken): void => {
      if (!Number.isInteger(t.id) || t.id < 0) throw new Error(`added token "${t.content}" has invalid id ${t.id}`);
      if (t.content === '') throw new Error(`added token ${t.id} has empty content`);
      const prev = this.byContent.get(t.content);
      if (prev && prev.id !== t.id) throw new Error(`added token "${t.content}" has two ids: ${prev.id} and ${t.id}`);
      this.byContent.set(t.content, t);
      this.byId.set(t.id, t);
      if (t.special) this.specialIds.add(t.id);
    };
    const decoder = (config.added_tokens_decoder ?? {}) as Record<string, Record<string, unknown>>;
    for (const [id, t] of Object.entries(decoder)) {
      if (typeof t?.content !== 'string') throw new Error(`tokenizer_config.json: added_tokens_decoder["${id}"] has no content`);
      add({
        id: Number(id),
        content: t.content,
        special: Boolean(t.special),
        lstrip: Boolean(t.lstrip),
        rstrip: Boolean(t.rstrip),
        singleWord: Boolean(t.single_word),
      });
    }
    for (const [content, id] of Object.entries(addedJson)) {
      if (typeof id !== 'number') throw new Error(`added_tokens.json: "${content}" should map to a number`);
      if (!this.byContent.has(content)) add({ id, content, special: false, lstrip: false, rstrip: false, singleWord: false });
      else if (this.byContent.get(content)!.id !== id) throw new Error(`added_tokens.json: "${content}" is ${id} but tokenizer_config.json says ${this.byContent.get(content)!.id}`);
    }
    // bos/eos/unk/pad and additional_special_tokens are special; transformers registers them as
    // added tokens too (so "<s>" in text is one token), with their id from the vocabulary.
    const specials: string[] = [];
    for (const [file, src] of [['special_tokens_map.json', specialMap], ['tokenizer_config.json', config]] as const) {
      for (const key of ['bos_token', 'eos_token', 'unk_token', 'pad_token']) {
        const c = tokenContent(src[key]);
        if (c !== undefined) specials.push(c);
      }
      const extra = src.additional_special_tokens ?? [];
      if (!Array.isArray(extra)) throw new Error(`${file}: additional_special_tokens should be a list`);
      for (const t of extra as unknown[]) {
        const c = tokenContent(t);
        if (c !== undefined) specials.push(c);
      }
    }
    for (const content of specials) {
      const known = this.byContent.get(content);
      if (known) {
        this.specialIds.add(known.id);
        continue;
      }
      const id = sp.pieceToId(content);
      if (id === sp.unkId && content !== sp.idToPiece(sp.unkId)) throw new Error(`special token "${content}" is neither an added token nor in the vocabulary`);
      add({ id, content, special: true, lstrip: false, rstrip: false, singleWord: false });
    }

    this.vocabSize = Math.max(sp.size, ...[...this.byId.keys()].map((id) => id + 1));
    for (const content of this.byContent.keys()) {
      const lengths = this.addedFirstChars.get(content[0]) ?? [];
      lengths.push(content.length);
      lengths.sort((a, b) => b - a);
      this.addedFirstChars.set(content[0], lengths);
    }
  }

  static fromBytes(modelBytes: Uint8Array, files: TokenizerConfigFiles = {}): Tokenizer {
    return new Tokenizer(SentencePiece.fromBytes(modelBytes), files);
  }

  /** Loads tokenizer.model + tokenizer_config.json + added_tokens.json + special_tokens_map.json (Node). */
  static async fromDirectory(dir: string): Promise<Tokenizer> {
    const { readFile } = await import('node:fs/promises');
    const { join } = await import('node:path');
    const optional = async (name: string): Promise<string | undefined> => {
      try {
        return await readFile(join(dir, name), 'utf8');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw e;
      }
    };
    let model: Uint8Array;
    try {
      model = await readFile(join(dir, 'tokenizer.model'));
    } catch (e) {
      throw new Error(`cannot read ${join(dir, 'tokenizer.model')}: ${(e as Error).message}`);
    }
    return Tokenizer.fromBytes(model, {
      tokenizerConfig: await optional('tokenizer_config.json'),
      addedTokens: await optional('added_tokens.json'),
      specialTokensMap: await optional('special_tokens_map.json'),
    });
  }


  /** Id of an added token or a vocabulary piece; undefined for anything else. */
  tokenToId(token: string): number | undefined {
    const added = this.byContent.get(token);
    if (added) return added.id;
    const id = this.sp.pieceToId(token);
    return id === this.sp.unkId && token !== this.sp.idToPiece(id) ? undefined : id;
  }

  /** Id of an added token the engine relies on (<IMG_CONTEXT>, <|im_end|>); a clear error when the tokenizer lacks it. */
  specialId(token: string): number {
    const id = this.byContent.get(token)?.id;
    if (id === undefined) throw new Error(`the tokenizer has no ${token} token (added_tokens.json / tokenizer_config.json)`);
    return id;
  }

  /** Whether decode() has text for `id` (a piece of the SentencePiece model or an added token). */
  hasPiece(id: number): boolean {
    return Number.isInteger(id) && id >= 0 && (id < this.sp.size || this.byId.has(id));
  }

  idToToken(id: number): string {
    return this.byId.get(id)?.content ?? this.sp.idToPiece(id);
  }

  isSpecial(id: number): boolean {
    return this.specialIds.has(id) || this.sp.model.pieces[id]?.type === PieceType.CONTROL;
  }

  /**
   * Splits text into plain chunks and added tokens (leftmost, then longest), then applies
   * lstrip/rstrip/single_word. No added token is matched across any of the `plain` [start, end) ranges.
   */
  private split(text: string, plain: readonly (readonly [number, number])[] = []): (string | AddedToken)[] {
    const parts: (string | AddedToken)[] = [];
    let chunkStart = 0;
    const inPlain = (i: number, len: number) => plain.some(([a, b]) => i < b && i + len > a);
    for (let i = 0; i < text.length; ) {
      const lengths = this.addedFirstChars.get(text[i]);
      const len = lengths?.find((l) => this.byContent.has(text.slice(i, i + l)) && !inPlain(i, l));
      if (len === undefined) {
        i++;
        continue;
      }
      parts.push(text.slice(chunkStart, i), this.byContent.get(text.slice(i, i + len))!);
      i += len;
      chunkStart = i;
    }
    parts.push(text.slice(chunkStart));
    // parts alternates chunk, token, chunk, ...; transformers applies the flags token by token.
    for (let i = 1; i < parts.length; i += 2) {
      const t = parts[i] as AddedToken;
      const left = parts[i - 1] as string;
      const right = parts[i + 1] as string;
      if (t.rstrip && right) parts[i + 1] = right.replace(PY_LEADING_SPACE, '');
      if (t.lstrip && left) parts[i - 1] = left.replace(PY_TRAILING_SPACE, '');
      if (t.singleWord && left && !left.endsWith(' ')) {
        parts[i - 1] = left + t.content;
        parts[i] = '';
      } else if (t.singleWord && right && !right.startsWith(' ')) {
        parts[i] = t.content + right;
        parts[i + 1] = '';
      }
    }
    return parts;
  }

  /**
   * Ids of `text` as InternLM2Tokenizer(text).input_ids: [bos] + chunks and added tokens (+ eos).
   * Special-token strings inside the `plain` [start, end) character ranges are read as ordinary text
   * (Hugging Face's split_special_tokens, for chosen spans only).
   */
  encode(text: string, options: { addSpecialTokens?: boolean; plain?: readonly (readonly [number, number])[] } = {}): number[] {
    const special = options.addSpecialTokens ?? true;
    const ids: number[] = special && this.addBos ? [this.bosId] : [];
    for (const part of this.split(text, options.plain)) {
      if (typeof part !== 'string') ids.push(part.id);
      else if (part !== '') ids.push(...this.sp.encode(part));
    }
    if (special && this.addEos) ids.push(this.eosId);
    return ids;
  }

  /** Text of `ids` (see the header for how this follows InternLM2Tokenizer.decode). */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    const text = this.decodeRaw(ids, options.skipSpecialTokens ?? false);
    return options.cleanUpSpaces ?? true ? cleanUpTokenization(text) : text;
  }

  private decodeRaw(ids: readonly number[], skipSpecial: boolean): string {
    let out = '';
    let run: number[] = [];
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) throw new Error(`token id ${id} is outside the vocabulary (0..${this.vocabSize - 1})`);
      if (skipSpecial && this.isSpecial(id)) continue;
      const added = this.byId.get(id);
      if (added) {
        out += this.sp.decode(run) + added.content;
        run = [];
      } else {
        run.push(id);
      }
    }
    return out + this.sp.decode(run);
  }

  /** A decoder for generated ids that returns only text that later ids cannot change. */
  streamDecoder(options: DecodeOptions = {}): StreamDecoder {
    return new StreamDecoder(this, options);
  }

  /** Internal to StreamDecoder: raw (not cleaned-up) text of the ids, and how many trailing ids it left out as an unfinished character. */
  decodeComplete(ids: readonly number[], skipSpecial: boolean): { text: string; heldIds: number } {
    const heldIds = this.sp.incompleteTail(ids);
    return { text: this.decodeRaw(ids.slice(0, ids.length - heldIds), skipSpecial), heldIds };
  }

  /**
   * Internal to StreamDecoder: whether decoding may restart after `id` with the same text. Not
   * inside a run of byte pieces, and, for models that drop the "▁" of a run's first piece, only at
   * a run boundary (an added token that is not skipped).
   */
  isRestartPoint(id: number, skipSpecial: boolean): boolean {
    if (this.sp.isByte(id)) return false;
    if (!this.sp.stripsLeadingSpace) return true;
    return this.byId.has(id) && !(skipSpecial && this.isSpecial(id));
  }
}

/** transformers' PreTrainedTokenizerBase.clean_up_tokenization, in its order. */
export function cleanUpTokenization(text: string): string {
  return text
    .replaceAll(' .', '.')
    .replaceAll(' ?', '?')
    .replaceAll(' !', '!')
    .replaceAll(' ,', ',')
    .replaceAll(" ' ", "'")
    .replaceAll(" n't", "n't")
    .replaceAll(" 'm", "'m")
    .replaceAll(" 's", "'s")
    .replaceAll(" 've", "'ve")
    .replaceAll(" 're", "'re");
}

/**
 * Streaming decode: push(id) returns the new text that is final. A character spread over several
 * byte tokens is held until complete; with clean-up, text from a space within the last 3 characters
 * is held too (a clean-up pattern is a space plus at most 3 characters, so it could still change).
 * The pieces returned by push() and flush() concatenate to decode(allIds). Only the ids since the
 * last point where nothing was held back are re-decoded on each push.
 */
export class StreamDecoder {
  private ids: number[] = []; // since the last restart point
  private emitted = 0; // characters of their text already returned

  constructor(
    private readonly tokenizer: Tokenizer,
    private readonly options: DecodeOptions,
  ) {}

  push(id: number): string {
    const skip = this.options.skipSpecialTokens ?? false;
    this.ids.push(id);
    const { text, heldIds } = this.tokenizer.decodeComplete(this.ids, skip);
    let stable = text;
    if (this.options.cleanUpSpaces ?? true) {
      for (let s = stable.lastIndexOf(' '); s >= 0 && s >= stable.length - 3; s = stable.lastIndexOf(' ')) stable = stable.slice(0, s);
    }
    const held = heldIds > 0 || stable.length < text.length;
    const out = this.take(this.options.cleanUpSpaces ?? true ? cleanUpTokenization(stable) : stable);
    if (!held && this.tokenizer.isRestartPoint(id, skip)) {
      this.ids = [];
      this.emitted = 0;
    }
    return out;
  }

  /** The rest of the text (an unfinished character becomes U+FFFD, as decode does). */
  flush(): string {
    const out = this.take(this.tokenizer.decode(this.ids, this.options));
    this.ids = [];
    this.emitted = 0;
    return out;
  }

  private take(text: string): string {
    const out = text.slice(this.emitted);
    this.emitted = Math.max(this.emitted, text.length);
    return out;
  }
}
