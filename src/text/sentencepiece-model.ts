// Reader for SentencePiece's `tokenizer.model`: a serialized `sentencepiece.ModelProto` (proto2).
// A minimal protobuf wire-format reader is enough: we read only the fields encoding needs and skip
// the rest. Field numbers are those of sentencepiece_model.proto (checked against the descriptor
// embedded in python3-sentencepiece's sentencepiece_model_pb2.py).

export enum PieceType {
  NORMAL = 1,
  UNKNOWN = 2,
  CONTROL = 3,
  USER_DEFINED = 4,
  UNUSED = 5,
  BYTE = 6,
}

export enum ModelType {
  UNIGRAM = 1,
  BPE = 2,
  WORD = 3,
  CHAR = 4,
}

export interface Piece {
  piece: string;
  score: number;
  type: PieceType;
}

export interface TrainerSpec {
  modelType: ModelType;
  vocabSize: number;
  byteFallback: boolean;
  treatWhitespaceAsSuffix: boolean;
  unkId: number;
  bosId: number;
  eosId: number;
  padId: number;
  unkSurface: string;
}

export interface NormalizerSpec {
  name: string;
  precompiledCharsmap: Uint8Array;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
}

export interface ModelProto {
  pieces: Piece[];
  trainerSpec: TrainerSpec;
  normalizerSpec: NormalizerSpec;
}

const WIRE_VARINT = 0;
const WIRE_I64 = 1;
const WIRE_LEN = 2;
const WIRE_I32 = 5;

class CorruptModel extends Error {
  constructor(what: string) {
    super(`tokenizer.model is not a valid SentencePiece ModelProto: ${what}`);
  }
}

/** One field of a message: `varint` holds varint values, `bytes` the payload of the other wire types. */
interface Field {
  num: number;
  wire: number;
  varint: bigint;
  bytes: Uint8Array;
}

function* fields(buf: Uint8Array): Generator<Field> {
  let pos = 0;
  const varint = (): bigint => {
    let result = 0n;
    for (let shift = 0n; ; shift += 7n) {
      if (pos >= buf.length) throw new CorruptModel('truncated varint');
      if (shift > 63n) throw new CorruptModel('varint longer than 10 bytes');
      const b = buf[pos++];
      result |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return result;
    }
  };
  const take = (n: number): Uint8Array => {
    if (n < 0 || pos + n > buf.length) throw new CorruptModel(`field of ${n} bytes runs past the end`);
    const out = buf.subarray(pos, pos + n);
    pos += n;
    return out;
  };
  while (pos < buf.length) {
    const key = Number(varint());
    const num = key >>> 3;
    const wire = key & 7;
    if (num === 0) throw new CorruptModel('field number 0');
    switch (wire) {
      case WIRE_VARINT:
        yield { num, wire, varint: varint(), bytes: new Uint8Array(0) };
        break;
      case WIRE_I64:
        yield { num, wire, varint: 0n, bytes: take(8) };
        break;
      case WIRE_LEN:
        yield { num, wire, varint: 0n, bytes: take(Number(varint())) };
        break;
      case WIRE_I32:
        yield { num, wire, varint: 0n, bytes: take(4) };
        break;
      default:
        throw new CorruptModel(`unsupported wire type ${wire} (field ${num})`);
    }
  }
}

// ignoreBOM: a piece may be U+FEFF itself, which TextDecoder would otherwise drop.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function str(f: Field): string {
  if (f.wire !== WIRE_LEN) throw new CorruptModel(`field ${f.num} should be a string`);
  try {
    return utf8.decode(f.bytes);
  } catch {
    throw new CorruptModel(`field ${f.num} is not valid UTF-8`);
  }
}

function bool(f: Field): boolean {
  if (f.wire !== WIRE_VARINT) throw new CorruptModel(`field ${f.num} should be a varint`);
  return f.varint !== 0n;
}

/** int32 fields are sign-extended to 64 bits on the wire (pad_id = -1 is 10 bytes). */
function int32(f: Field): number {
  if (f.wire !== WIRE_VARINT) throw new CorruptModel(`field ${f.num} should be a varint`);
  return Number(BigInt.asIntN(32, f.varint));
}

function float(f: Field): number {
  if (f.wire !== WIRE_I32) throw new CorruptModel(`field ${f.num} should be a float`);
  return new DataView(f.bytes.buffer, f.bytes.byteOffset, 4).getFloat32(0, true);
}

function parsePiece(buf: Uint8Array): Piece {
  const p: Piece = { piece: '', score: 0, type: PieceType.NORMAL };
  for (const f of fields(buf)) {
    if (f.num === 1) p.piece = str(f);
    else if (f.num === 2) p.score = float(f);
    else if (f.num === 3) p.type = int32(f);
  }
  if (!(p.type in PieceType)) throw new CorruptModel(`piece "${p.piece}" has unknown type ${p.type}`);
  return p;
}

function parseTrainerSpec(buf: Uint8Array): TrainerSpec {
  // Defaults are the proto2 defaults of sentencepiece_model.proto.
  const t: TrainerSpec = {
    modelType: ModelType.UNIGRAM,
    vocabSize: 8000,
    byteFallback: false,
    treatWhitespaceAsSuffix: false,
    unkId: 0,
    bosId: 1,
    eosId: 2,
    padId: -1,
    unkSurface: ' \u2047 ',
  };
  for (const f of fields(buf)) {
    switch (f.num) {
      case 3: t.modelType = int32(f); break;
      case 4: t.vocabSize = int32(f); break;
      case 24: t.treatWhitespaceAsSuffix = bool(f); break;
      case 35: t.byteFallback = bool(f); break;
      case 40: t.unkId = int32(f); break;
      case 41: t.bosId = int32(f); break;
      case 42: t.eosId = int32(f); break;
      case 43: t.padId = int32(f); break;
      case 44: t.unkSurface = str(f); break;
    }
  }
  return t;
}

function parseNormalizerSpec(buf: Uint8Array): NormalizerSpec {
  const n: NormalizerSpec = {
    name: '',
    precompiledCharsmap: new Uint8Array(0),
    addDummyPrefix: true,
    removeExtraWhitespaces: true,
    escapeWhitespaces: true,
  };
  for (const f of fields(buf)) {
    switch (f.num) {
      case 1: n.name = str(f); break;
      case 2:
        if (f.wire !== WIRE_LEN) throw new CorruptModel('precompiled_charsmap should be bytes');
        n.precompiledCharsmap = f.bytes;
        break;
      case 3: n.addDummyPrefix = bool(f); break;
      case 4: n.removeExtraWhitespaces = bool(f); break;
      case 5: n.escapeWhitespaces = bool(f); break;
    }
  }
  return n;
}

export function parseModelProto(bytes: Uint8Array): ModelProto {
  const pieces: Piece[] = [];
  let trainer: Uint8Array | null = null;
  let normalizer: Uint8Array | null = null;
  for (const f of fields(bytes)) {
    if (f.wire !== WIRE_LEN && f.num <= 5) throw new CorruptModel(`field ${f.num} should be a message`);
    if (f.num === 1) pieces.push(parsePiece(f.bytes));
    else if (f.num === 2) trainer = f.bytes;
    else if (f.num === 3) normalizer = f.bytes;
  }
  if (pieces.length === 0) throw new CorruptModel('no pieces');
  return {
    pieces,
    trainerSpec: parseTrainerSpec(trainer ?? new Uint8Array(0)),
    normalizerSpec: parseNormalizerSpec(normalizer ?? new Uint8Array(0)),
  };
}
