import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bf16BitsToF32, f16BitsToF32, type Gpu, type Tensor } from '../src/gpu/index.js';
import { Checkpoint, DTYPE_BYTES, SafetensorsError, parseHeader, readTensor, readTensorBytes, readTensorF32, type SafetensorsDType, type SafetensorsHeader } from '../src/weights/safetensors.js';
import { DIRECT_ALIGN, MemorySource, type ByteSource, type SourceDirectory } from '../src/weights/source.js';
import { directSpan, formatLoadBreakdown, isVectorLike, planPieces, uploadTensors, type UploadProgress } from '../src/weights/upload.js';
import { freshSeed, rng, testGpu } from './util.js';

const tmp = mkdtempSync(join(tmpdir(), 'st-test-'));
const gpus: Gpu[] = [];
afterAll(() => {
  for (const g of gpus) g.destroy();
  rmSync(tmp, { recursive: true, force: true });
});

// An independent writer: torch/numpy values and a hand-built header, in Python.
const PY_WRITER = String.raw`
import json, struct, sys, os
import numpy as np, torch
out, seed = sys.argv[1], int(sys.argv[2])
g = torch.Generator().manual_seed(seed)
rs = np.random.RandomState(seed)
T = {
  'bf16.w': torch.randn(37, 11, generator=g).to(torch.bfloat16),
  'bf16.big': torch.randn(300, 17, generator=g).to(torch.bfloat16),
  'bf16.vec': torch.randn(7, generator=g).to(torch.bfloat16),
  'bf16.cls': torch.randn(1, 1, 5, generator=g).to(torch.bfloat16),
  'f16.w': torch.randn(5, 9, generator=g).to(torch.float16),
  'f16.vec': torch.randn(9, generator=g).to(torch.float16),
  'f32.w': torch.randn(13, 3, generator=g),
  'f32.scalar': torch.randn((), generator=g),
  'i32.x': torch.from_numpy(rs.randint(-2**31, 2**31 - 1, size=(10,), dtype=np.int64).astype(np.int32)),
  'i64.ids': torch.from_numpy(rs.randint(-2**62, 2**62, size=(6,), dtype=np.int64)),
  'u8.b': torch.from_numpy(rs.randint(0, 256, size=(5,)).astype(np.uint8)),
  'bool.m': torch.from_numpy(rs.rand(4) > 0.5),
  'i8.c': torch.from_numpy(rs.randint(-128, 128, size=(3,)).astype(np.int8)),
  'i16.s': torch.from_numpy(rs.randint(-32768, 32768, size=(2, 2)).astype(np.int16)),
  'f64.d': torch.randn(2, generator=g, dtype=torch.float64),
  'bf16.tex': torch.randn(70, 24, generator=g).to(torch.bfloat16),
}
NAMES = {torch.bfloat16: 'BF16', torch.float16: 'F16', torch.float32: 'F32', torch.float64: 'F64', torch.int32: 'I32',
         torch.int64: 'I64', torch.uint8: 'U8', torch.bool: 'BOOL', torch.int8: 'I8', torch.int16: 'I16'}
def raw(t):
    if t.dtype in (torch.bfloat16, torch.float16): t = t.view(torch.int16)
    return t.contiguous().numpy().tobytes()
def write(path, names, meta):
    header, blobs, off = {'__metadata__': meta}, [], 0
    for n in names:
        b = raw(T[n]); header[n] = {'dtype': NAMES[T[n].dtype], 'shape': list(T[n].shape), 'data_offsets': [off, off + len(b)]}
        blobs.append(b); off += len(b)
    h = json.dumps(header).encode(); h += b' ' * (-len(h) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h))); f.write(h); f.write(b''.join(blobs))
names = list(T)
write(os.path.join(out, 'single.safetensors'), names, {'format': 'pt', 'case': 'single'})
os.makedirs(os.path.join(out, 'sharded'))
shards = {'model-00001-of-00002.safetensors': names[:6], 'model-00002-of-00002.safetensors': names[6:]}
for f, ns in shards.items(): write(os.path.join(out, 'sharded', f), ns, {'format': 'pt'})
with open(os.path.join(out, 'sharded', 'model.safetensors.index.json'), 'w') as f:
    json.dump({'metadata': {'total_size': sum(len(raw(T[n])) for n in names)}, 'weight_map': {n: f for f, ns in shards.items() for n in ns}}, f)
exp = {n: {'dtype': NAMES[t.dtype], 'shape': list(t.shape), 'hex': raw(t).hex(),
           'values': [str(v) for v in t.reshape(-1).tolist()] if t.dtype == torch.int64 else t.double().reshape(-1).tolist()} for n, t in T.items()}
json.dump(exp, open(os.path.join(out, 'expected.json'), 'w'))
`;

interface Expected {
  dtype: SafetensorsDType;
  shape: number[];
  hex: string;
  values: (number | string)[];
}

const seed = freshSeed();
execFileSync('/usr/bin/python3', ['-c', PY_WRITER, tmp, String(seed)]);
const expected: Record<string, Expected> = JSON.parse(readFileSync(join(tmp, 'expected.json'), 'utf8'));

describe(`reading files from an independent writer (seed ${seed})`, () => {
  for (const source of ['single.safetensors', 'sharded']) {
    it(`${source}: names, dtypes, shapes, bytes and values`, async () => {
      const ckpt = await Checkpoint.open(join(tmp, source));
      expect(ckpt.names().sort()).toEqual(Object.keys(expected).sort());
      if (source === 'sharded') expect(ckpt.headers.length).toBe(2);
      else expect(ckpt.headers[0].metadata).toEqual({ format: 'pt', case: 'single' });
      for (const [name, e] of Object.entries(expected)) {
        const info = ckpt.get(name);
        expect([info.dtype, info.shape]).toEqual([e.dtype, e.shape]);
        expect(Buffer.from(await readTensorBytes(info)).toString('hex')).toBe(e.hex);
        const data = await readTensor(info);
        if (e.dtype === 'I64') expect(Array.from(data as BigInt64Array, String)).toEqual(e.values);
        else expect(Array.from(await readTensorF32(info))).toEqual(e.values.map((v) => Math.fround(Number(v))));
      }
      expect(ckpt.totalBytes).toBe(Object.values(expected).reduce((s, e) => s + e.hex.length / 2, 0));
    });
  }

  /** The sharded checkpoint's files held in memory, served through the byte-source interface (as a browser's files are). */
  function memoryDirectory(truncate: Record<string, number> = {}): SourceDirectory {
    const dir = join(tmp, 'sharded');
    return {
      name: 'picked-files',
      async open(file: string): Promise<ByteSource | null> {
        let bytes: Uint8Array;
        try {
          bytes = readFileSync(join(dir, file));
        } catch {
          return null;
        }
        const source = new MemorySource(`picked/${file}`, bytes);
        if (!(file in truncate)) return source;
        // reports the full size but ends early, like a file cut short after it was opened
        return { name: source.name, size: bytes.length, read: (into, at) => new MemorySource(source.name, bytes.subarray(0, truncate[file])).read(into, at) };
      },
    };
  }

  it('a checkpoint from another byte source (files in memory) reads the same tensors, and a source that ends early fails the same way', async () => {
    const ckpt = await Checkpoint.openDirectory(memoryDirectory());
    expect(ckpt.headers.length).toBe(2);
    for (const [name, e] of Object.entries(expected)) {
      expect(ckpt.get(name).file).toMatch(/^picked\/model-0000[12]-of-00002\.safetensors$/);
      expect(Buffer.from(await readTensorBytes(ckpt.get(name))).toString('hex')).toBe(e.hex);
    }
    const shard2 = 'model-00002-of-00002.safetensors';
    const cut = await Checkpoint.openDirectory(memoryDirectory({ [shard2]: readFileSync(join(tmp, 'sharded', shard2)).length - 3 }));
    await expect(cut.read('bf16.tex')).rejects.toThrow(/^picked\/model-00002-of-00002\.safetensors: tensor 'bf16\.tex': unexpected end of file at byte \d+ \(the file is truncated\)$/);
    await expect(Checkpoint.openDirectory({ name: 'empty', open: async () => null })).rejects.toThrow(/^empty: no model\.safetensors\.index\.json or model\.safetensors in this directory$/);
  });
});

/** A source whose only reads are readDirect's, refusing what O_DIRECT refuses (unaligned position, length or memory); widened vectors use read. */
function strictDirect(source: ByteSource): ByteSource {
  return {
    name: source.name,
    size: source.size,
    read: (into, at) => source.read(into, at),
    readDirect: async (into, at) => {
      if (at % DIRECT_ALIGN || into.length % DIRECT_ALIGN || into.byteOffset % DIRECT_ALIGN) throw new Error(`EINVAL: unaligned direct read of ${into.length} bytes at ${at} into offset ${into.byteOffset}`);
      return source.read(into, at);
    },
  };
}

describe('GPU upload', () => {
  it('plans O_DIRECT reads: whole aligned blocks at an aligned staging offset, rows placed at the copy alignment within the slack', () => {
    const rand = rng(freshSeed());
    for (let i = 0; i < 2000; i++) {
      const free = Math.floor(rand() * 1e6);
      const position = Math.floor(rand() * 1e7);
      const length = 1 + Math.floor(rand() * 3e5);
      const align = rand() < 0.5 ? 16 : 4;
      const s = directSpan(free, position, length, align);
      expect([s.start % DIRECT_ALIGN, s.position % DIRECT_ALIGN, s.bytes % DIRECT_ALIGN, s.at % align]).toEqual([0, 0, 0, 0]);
      expect(s.start).toBeGreaterThanOrEqual(free);
      expect(s.position + s.skip).toBe(position);
      expect(s.skip + length).toBeLessThanOrEqual(s.bytes);
      expect(s.at).toBeGreaterThanOrEqual(s.start);
      expect(s.at).toBeLessThanOrEqual(s.start + s.skip);
      expect(s.start + s.skip - s.at).toBeLessThan(align);
      // the read and the moved rows both end within the piece's bytes plus the staging slack (3 blocks)
      expect(Math.max(s.start + s.bytes, s.at + length)).toBeLessThanOrEqual(free + length + 3 * DIRECT_ALIGN);
    }
  });

  const configs = [
    // 256-byte bindings split 'bf16.w' (22-byte rows), 'bf16.big' and 'bf16.tex' into many parts, each copied whole from one staging buffer
    // every piece read with O_DIRECT from the file (/tmp), the last ones running into the end of the file
    { what: 'split into many parts, each part one whole copy', gpu: { maxStorageBufferBindingSize: 256 }, upload: { directReadBytes: 0 }, partial: false },
    // whole tensors in one part, staging smaller than them: copied in pieces through two reused (dirty) staging buffers
    { what: 'one part each, through staging smaller than a part', gpu: {}, upload: { stagingBytes: 24 }, partial: true },
    // O_DIRECT-style reads only (whole aligned blocks into aligned memory, else an error), then rows moved to the copy's alignment
    { what: 'aligned direct reads only, rows moved to the copy alignment', gpu: { maxStorageBufferBindingSize: 256 }, upload: { directReadBytes: 0 }, partial: false, direct: true },
  ];
  for (const config of configs) {
    it(`streams every tensor bit-exact, widening float vectors to f32: ${config.what}`, async () => {
      const gpu = await testGpu(config.gpu);
      gpus.push(gpu);
      const ckpt = await Checkpoint.open(join(tmp, 'sharded'));
      const names = ['bf16.w', 'bf16.big', 'bf16.vec', 'bf16.cls', 'f16.w', 'f16.vec', 'f32.w', 'f32.scalar', 'i32.x', 'bf16.tex'];
      const progress: UploadProgress[] = [];
      const infos = names.map((n) => ckpt.get(n)).map((t) => ('direct' in config ? { ...t, source: strictDirect(t.source) } : t));
      if ('direct' in config) expect(new Set(infos.map((t) => t.offset % 16)).size).toBeGreaterThan(1); // some rows must be moved
      const tensors = await uploadTensors(gpu, infos, { ...config.upload, onProgress: (p) => progress.push(p) });
      if (!config.partial) expect(tensors.get('bf16.big')!.parts.length).toBeGreaterThan(10);
      // K % 8 == 0: stored as texels on the software kernels (rows padded to 256 bytes in staging)
      expect(tensors.get('bf16.tex')!.texels).toBe(gpu.texelWeights);
      if (!config.partial) expect(tensors.get('bf16.tex')!.parts.length).toBeGreaterThan(5);
      for (const name of names) {
        const info = ckpt.get(name);
        const t = tensors.get(name) as Tensor;
        const got = await gpu.read(t);
        const raw = await readTensor(info);
        if (isVectorLike(info)) {
          expect(t.dtype).toBe('f32');
          const want = info.dtype === 'BF16' ? bf16BitsToF32(raw as Uint16Array) : info.dtype === 'F16' ? f16BitsToF32(raw as Uint16Array) : raw;
          expect(Array.from(got)).toEqual(Array.from(want as Float32Array));
        } else {
          expect(t.dtype).toBe({ BF16: 'bf16', F16: 'f16', F32: 'f32', I32: 'i32' }[info.dtype as string]);
          expect(Array.from(got)).toEqual(Array.from(raw as ArrayLike<number>));
        }
        t.release();
      }
      const total = names.reduce((s, n) => s + ckpt.get(n).byteLength, 0);
      const last = progress.at(-1)!;
      expect(last.bytesDone).toBe(total);
      expect(progress.every((p, i) => p.bytesTotal === total && (i === 0 || p.bytesDone > progress[i - 1].bytesDone))).toBe(true);
      // whole-part copies (no lazy clear of the target) unless a part is larger than the staging buffer
      const parts = names.reduce((n, name) => n + tensors.get(name)!.parts.length, 0);
      const widened = names.filter((n) => isVectorLike(ckpt.get(n)) && ckpt.get(n).dtype !== 'F32').reduce((b, n) => b + ckpt.get(n).byteLength, 0);
      if ('direct' in config) expect(last.breakdown.directBytes).toBe(total - widened);
      if (config.partial) expect(last.breakdown.partialCopies).toBeGreaterThan(0);
      else expect([last.breakdown.copies, last.breakdown.partialCopies]).toEqual([parts, 0]);
      expect(formatLoadBreakdown(last)).toMatch(/^loaded 0\.00 GB in [\d.]+ s \([\d.]+ GB\/s\): reading [\d.]+ s, waiting for GPU copies [\d.]+ s, .*; overlapped with them, the GPU copying [\d.]+ s \(\d+% of the wall time, [\d.]+ GB\/s while copying\); \d+ copies \(\d+ partial\)/);
      expect(last.breakdown.copySeconds).toBeGreaterThan(0);
      expect(last.breakdown.copySeconds).toBeLessThanOrEqual(last.seconds);
    });
  }

  it('cuts parts into staging pieces: every row once, under the capacity, whole parts when they fit, whole words for buffers', () => {
    const texture = {} as GPUTexture;
    const buffer = {} as GPUBuffer;
    for (const [rowElems, dtype, capacity] of [[11, 'bf16', 100], [24, 'bf16', 600], [3, 'f32', 64], [7, 'f16', 30], [4096, 'bf16', 128 << 20]] as const) {
      for (const kind of ['buffer', 'texture'] as const) {
        const parts = [{ rowStart: 0, rows: 37 }, { rowStart: 37, rows: 5 }].map((p) => (kind === 'texture' ? { ...p, texture } : { ...p, buffer }));
        const pieces = planPieces(parts, rowElems, dtype, capacity);
        const rowBytes = rowElems * (dtype === 'f32' ? 4 : 2);
        for (const part of parts) {
          const mine = pieces.filter((q) => q.part === part);
          expect(mine.map((q) => q.row)).toEqual(mine.map((_, i) => mine.slice(0, i).reduce((n, q) => n + q.rows, 0)));
          expect(mine.reduce((n, q) => n + q.rows, 0)).toBe(part.rows);
          const pitch = kind === 'texture' ? Math.ceil(rowBytes / 256) * 256 : rowBytes;
          if (part.rows * pitch <= capacity) expect(mine.map((q) => q.whole)).toEqual([true]);
          for (const q of mine) {
            expect(q.pitch).toBe(pitch);
            expect(q.stagingBytes).toBe(Math.ceil((q.rows * pitch) / 4) * 4);
            if (q.rows > 1 && !(kind === 'buffer' && (rowBytes % 4 !== 0))) expect(q.stagingBytes).toBeLessThanOrEqual(capacity + 3);
            if (kind === 'buffer' && q.row + q.rows < part.rows) expect((q.rows * rowBytes) % 4).toBe(0);
          }
        }
      }
    }
  });

  it('refuses dtypes the GPU cannot hold before allocating anything', async () => {
    const gpu = await testGpu();
    gpus.push(gpu);
    const ckpt = await Checkpoint.open(join(tmp, 'single.safetensors'));
    await expect(uploadTensors(gpu, ckpt)).rejects.toThrow(/tensor 'i64.ids': dtype I64 cannot be uploaded/);
    await expect(uploadTensors(gpu, [ckpt.get('f32.w')], { widen: () => true })).resolves.toBeDefined();
  });
});

// ---- error cases, built by hand ----

function stBytes(header: unknown, dataBytes: number, opts: { rawHeader?: string; lengthField?: bigint } = {}): Buffer {
  const h = Buffer.from(opts.rawHeader ?? JSON.stringify(header));
  const out = Buffer.alloc(8 + h.length + dataBytes);
  out.writeBigUInt64LE(opts.lengthField ?? BigInt(h.length), 0);
  h.copy(out, 8);
  return out;
}

function writeSt(name: string, header: unknown, dataBytes: number, opts: { rawHeader?: string; lengthField?: bigint } = {}): string {
  const path = join(tmp, name);
  writeFileSync(path, stBytes(header, dataBytes, opts));
  return path;
}

const ok = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'BF16', shape: [2, 2], data_offsets: [8, 16] } };

describe('bad input gets a clear error naming the file and tensor', () => {
  const cases: Array<[string, () => string, RegExp]> = [
    ['file shorter than 8 bytes', () => { const p = join(tmp, 'short.st'); writeFileSync(p, Buffer.alloc(5)); return p; }, /short\.st: not a safetensors file: 5 bytes/],
    ['header length past the end', () => writeSt('len.st', ok, 16, { lengthField: 1000n }), /len\.st: header length 1000 runs past the end of the file/],
    ['huge header length', () => writeSt('huge.st', ok, 16, { lengthField: 2n ** 63n }), /huge\.st: header length 9223372036854775808 runs past/],
    ['invalid JSON', () => writeSt('json.st', null, 16, { rawHeader: '{"a": {"dtype": "F32",' }), /json\.st: invalid JSON header/],
    ['header not an object', () => writeSt('arr.st', [1, 2], 0), /arr\.st: the JSON header is not an object/],
    ['offsets outside the data section', () => writeSt('out.st', { ...ok, b: { dtype: 'BF16', shape: [2, 2], data_offsets: [8, 400] } }, 16), /out\.st: tensor 'b': data_offsets \[8, 400\] lie outside the data section \(16 bytes/],
    ['overlapping tensors', () => writeSt('overlap.st', { ...ok, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, 16), /overlap\.st: tensors 'a' \[0, 8\] and 'b' \[4, 12\] overlap/],
    ['byte size not matching shape x dtype', () => writeSt('size.st', { ...ok, a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, 16), /size\.st: tensor 'a': data_offsets \[0, 8\] hold 8 bytes but shape \[3\] x F32 needs 12/],
    ['unknown dtype', () => writeSt('dtype.st', { ...ok, a: { dtype: 'Q4_K', shape: [2], data_offsets: [0, 8] } }, 16), /dtype\.st: tensor 'a': unknown dtype "Q4_K"/],
    ['bad shape', () => writeSt('shape.st', { ...ok, a: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, 16), /shape\.st: tensor 'a': shape \[-2\] is not a list/],
    ['bad offsets', () => writeSt('offs.st', { ...ok, a: { dtype: 'F32', shape: [2], data_offsets: [8, 0] } }, 16), /offs\.st: tensor 'a': data_offsets \[8,0\] is not \[begin, end\]/],
    ['non-string metadata', () => writeSt('meta.st', { ...ok, __metadata__: { n: 3 } }, 16), /meta\.st: __metadata__ value for 'n' is not a string/],
    ['truncated data section', () => { const p = writeSt('trunc.st', ok, 16); truncateSync(p, readFileSync(p).length - 3); return p; }, /trunc\.st: tensor 'b': .*outside the data section \(13 bytes; the file may be truncated\)/],
    ['truncated inside the header', () => { const p = writeSt('trunch.st', ok, 16); truncateSync(p, 20); return p; }, /trunch\.st: header length \d+ runs past the end of the file \(20 bytes/],
    ['missing file', () => join(tmp, 'nope.safetensors'), /nope\.safetensors: no such checkpoint/],
  ];
  for (const [what, make, re] of cases) {
    it(what, async () => {
      const path = make();
      const err = await Checkpoint.open(path).then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(SafetensorsError);
      expect((err as Error).message).toMatch(re);
    });
  }

  it('a file truncated after opening fails the read with the tensor name', async () => {
    const path = writeSt('later.st', ok, 16);
    const ckpt = await Checkpoint.open(path);
    truncateSync(path, readFileSync(path).length - 4);
    await expect(ckpt.read('b')).rejects.toThrow(/later\.st: tensor 'b': unexpected end of file at byte \d+ \(the file is truncated\)/);
    expect(() => ckpt.get('zz')).toThrow(/later\.st: no tensor named 'zz'/);
  });

  function shardDir(name: string, weightMap: Record<string, string>, shards: Record<string, unknown>): string {
    const dir = join(tmp, name);
    execFileSync('mkdir', ['-p', dir]);
    for (const [file, header] of Object.entries(shards)) writeFileSync(join(dir, file), stBytes(header, 16));
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    return dir;
  }

  it('a shard named by the index that is missing', async () => {
    const dir = shardDir('missing', { a: 's1.safetensors', b: 's2.safetensors' }, { 's1.safetensors': { a: ok.a } });
    await expect(Checkpoint.open(dir)).rejects.toThrow(/model\.safetensors\.index\.json: shard 's2\.safetensors' \(holding 'b' and 0 other tensors\) is missing/);
  });

  it('index and shards that disagree', async () => {
    const notInShard = shardDir('disagree1', { a: 's1.safetensors', b: 's1.safetensors' }, { 's1.safetensors': { a: ok.a } });
    await expect(Checkpoint.open(notInShard)).rejects.toThrow(/tensor 'b' is not in its shard 's1\.safetensors'/);
    const unlisted = shardDir('disagree2', { a: 's1.safetensors' }, { 's1.safetensors': ok });
    await expect(Checkpoint.open(unlisted)).rejects.toThrow(/shards hold tensors the weight_map does not list: b/);
    const twice = shardDir('disagree3', { a: 's1.safetensors', b: 's2.safetensors' }, { 's1.safetensors': ok, 's2.safetensors': { b: ok.b } });
    await expect(Checkpoint.open(twice)).rejects.toThrow(/tensor 'b' is in both/);
    const escape = shardDir('disagree4', { a: '../single.safetensors' }, {});
    await expect(Checkpoint.open(escape)).rejects.toThrow(/tensor 'a' maps to "..\/single.safetensors", not a file name/);
  });
});

// ---- fuzz ----

const DTYPES = Object.keys(DTYPE_BYTES);

/** A random valid header (tensors packed in random order) and its data size. */
function randomHeader(r: () => number): { header: Record<string, unknown>; dataBytes: number } {
  const header: Record<string, unknown> = {};
  if (r() < 0.3) header.__metadata__ = { format: 'pt' };
  let off = 0;
  const n = Math.floor(r() * 6);
  for (let i = 0; i < n; i++) {
    const dtype = DTYPES[Math.floor(r() * DTYPES.length)];
    const shape = Array.from({ length: Math.floor(r() * 4) }, () => Math.floor(r() * 5));
    const bytes = shape.reduce((a, b) => a * b, DTYPE_BYTES[dtype as SafetensorsDType]);
    header[`t${i}`] = { dtype, shape, data_offsets: [off, off + bytes] };
    off += bytes;
  }
  return { header, dataBytes: off };
}

const WEIRD: unknown[] = [null, true, -1, 0.5, 1e300, 2 ** 53, -0, 'F32', [], {}, [1, 2, 3], [0], [-1, 4], [4, 2], ['0', '4'], 'x'.repeat(50), { dtype: 'F32' }];

function mutate(r: () => number, header: Record<string, unknown>): void {
  const keys = Object.keys(header);
  const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)];
  const weird = (): unknown => structuredClone(pick(WEIRD)); // fresh copies: mutations must not alias
  const key = keys.length ? pick(keys) : '__metadata__';
  const entry = header[key];
  const what = r();
  if (what < 0.25 || typeof entry !== 'object' || entry === null) header[key] = weird();
  else {
    const e = entry as Record<string, unknown>;
    const field = pick(['dtype', 'shape', 'data_offsets', 'extra']);
    if (what < 0.5) e[field] = weird();
    else if (what < 0.75 && Array.isArray(e[field])) (e[field] as unknown[])[Math.floor(r() * 3)] = r() < 0.5 ? weird() : pick([Math.floor(r() * 64), 2 ** 60]);
    else header[`dup${keys.length}`] = JSON.parse(JSON.stringify(e));
  }
}

const fseed = freshSeed();
describe(`fuzz: random and mutated headers (seed ${fseed})`, () => {
  it('never crash, hang or point outside the file: parse, or a SafetensorsError naming the file', async () => {
    const r = rng(fseed);
    let parsed = 0;
    let rejected = 0;
    const onDisk: Buffer[] = [];
    for (let c = 0; c < 3000; c++) {
      const { header, dataBytes } = randomHeader(r);
      for (let m = Math.floor(r() * 3); m > 0; m--) mutate(r, header);
      const slack = r() < 0.2 ? Math.floor(r() * 8) - 4 : 0; // data section too short or too long
      let bytes = stBytes(header, Math.max(0, dataBytes + slack));
      const kind = r();
      if (kind < 0.15) bytes = bytes.subarray(0, Math.floor(r() * bytes.length)); // truncation
      else if (kind < 0.3) for (let k = 0; k < 3; k++) bytes[Math.floor(r() * bytes.length)] = Math.floor(r() * 256); // byte flips
      else if (kind < 0.35) bytes.writeBigUInt64LE(BigInt(Math.floor(r() * 2 ** 32)) * BigInt(Math.floor(r() * 2 ** 32)), 0); // length field
      else if (kind < 0.4) bytes = Buffer.from(Array.from({ length: Math.floor(r() * 64) }, () => Math.floor(r() * 256))); // garbage
      let h: SafetensorsHeader;
      try {
        h = parseHeader(bytes, new MemorySource('fuzz.safetensors', bytes));
      } catch (e) {
        rejected++;
        if (!(e instanceof SafetensorsError) || !e.message.startsWith('fuzz.safetensors: ')) throw new Error(`fuzz case ${c} (seed ${fseed}): non-descriptive error ${String(e)}`);
        continue;
      }
      parsed++;
      const spans = [...h.tensors.values()].sort((a, b) => a.offset - b.offset);
      for (const t of spans) {
        expect(t.offset).toBeGreaterThanOrEqual(h.dataStart);
        expect(t.offset + t.byteLength).toBeLessThanOrEqual(bytes.length);
        expect(t.byteLength).toBe(t.shape.reduce((a, b) => a * b, DTYPE_BYTES[t.dtype]));
      }
      for (let i = 1; i < spans.length; i++) if (spans[i].byteLength) expect(spans[i].offset).toBeGreaterThanOrEqual(spans[i - 1].offset + spans[i - 1].byteLength);
      if (onDisk.length < 200) onDisk.push(bytes);
    }
    expect(parsed).toBeGreaterThan(100);
    expect(rejected).toBeGreaterThan(100);
    // the accepted ones, through the file reader: every tensor reads back
    for (const [i, bytes] of onDisk.entries()) {
      const path = join(tmp, `fuzz${i}.safetensors`);
      writeFileSync(path, bytes);
      const ckpt = await Checkpoint.open(path);
      for (const name of ckpt.names()) expect((await ckpt.read(name)).byteLength).toBe(ckpt.get(name).byteLength);
    }
  });
});
