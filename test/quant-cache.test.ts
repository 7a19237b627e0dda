// The quantized cache (src/weights/quant-cache.ts): the first q4/q8 load writes it, the second reads
// it; GPU bytes are identical either way, the file holds what numpy's quantizer makes of the
// checkpoint, and a changed source, a cut or damaged file, or a folder that cannot be written
// never gives wrong weights or a failed load.
import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tensor } from '../src/gpu/tensor.js';
import { CACHE_FOLDER, cacheDirs } from '../src/weights/quant-cache-files.js';
import { cacheFileName, type QuantCacheOptions } from '../src/weights/quant-cache.js';
import { quantizeRule, quantRowBytes, type QuantDType } from '../src/weights/quantize.js';
import { Checkpoint, type TensorInfo } from '../src/weights/safetensors.js';
import { uploadTensors, type UploadOptions, type UploadProgress } from '../src/weights/upload.js';
import { testGpu } from './util.js';

const TINY = '/work/ckpt/tiny';
const tmp = mkdtempSync(join(tmpdir(), 'quant-cache-'));
const gpu = await testGpu();
afterAll(() => {
  gpu.destroy();
  rmSync(tmp, { recursive: true, force: true });
});

/** A fresh copy of the tiny checkpoint's weights (the cache goes beside them). */
function copyTiny(name: string): string {
  const dir = join(tmp, name);
  mkdirSync(dir);
  for (const f of readdirSync(TINY).filter((f) => f.endsWith('.safetensors') || f.endsWith('.index.json'))) copyFileSync(join(TINY, f), join(dir, f));
  return dir;
}

interface Loaded {
  /** every tensor's GPU bytes (quantized ones as their stored rows) */
  bytes: Map<string, Uint8Array>;
  /** the cache status of every progress report, in order */
  statuses: string[];
  quantizeSeconds: number;
  quantizeWorkers?: number;
}

/** The decoder layers' weights only (not the 92553-row embedding and output tables): quick to quantize, for the tests of invalidation. */
const layersOnly = (dtype: QuantDType) => (t: TensorInfo) => (quantizeRule(dtype)!(t) && t.name.includes('.layers.') ? dtype : undefined);

async function load(dir: string, dtype: QuantDType, quantCache?: QuantCacheOptions | false, quantize = quantizeRule(dtype), more: UploadOptions = {}): Promise<Loaded> {
  const progress: UploadProgress[] = [];
  const tensors = await uploadTensors(gpu, await Checkpoint.open(dir), { ...more, quantize, quantCache, onProgress: (p) => progress.push(p) });
  const bytes = new Map<string, Uint8Array>();
  for (const [name, t] of tensors) {
    // quantized weights read back as the 16-bit storage they are copied into
    const view = t.dtype === dtype ? new Tensor(gpu, [t.shape[0], quantRowBytes(dtype, t.shape[1]) / 2], 'bf16', t.parts, false, name) : t;
    const got = await gpu.read(view);
    bytes.set(name, new Uint8Array(got.buffer, got.byteOffset, got.byteLength).slice());
    t.release();
  }
  const last = progress.at(-1)!;
  return { bytes, statuses: [...new Set(progress.map((p) => p.breakdown.quantCache ?? ''))], quantizeSeconds: last.breakdown.quantizeSeconds, quantizeWorkers: last.breakdown.quantizeWorkers };
}

function expectSameTensors(a: Loaded, b: Loaded): void {
  expect([...b.bytes.keys()].sort()).toEqual([...a.bytes.keys()].sort());
  for (const [name, bytes] of a.bytes) expect(Buffer.compare(Buffer.from(bytes), Buffer.from(b.bytes.get(name)!)), name).toBe(0);
}

// An independent reader: the cache file as safetensors, each tensor against numpy's quantizer
// (test/quantize_ref.py) run on the checkpoint's bf16 rows, and the recorded sources against os.stat.
const PY_CHECK = String.raw`
import json, struct, sys, os, glob, hashlib
import numpy as np
sys.path.insert(0, sys.argv[3])
from quantize_ref import quantize
cache, ckpt = sys.argv[1], sys.argv[2]
def header(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        return json.loads(f.read(n)), 8 + n
h, start = header(cache)
meta = h.pop('__metadata__')
assert meta['format'] == 'pvc-webgpu quantized cache' and meta['version'] == '2' and meta['group'] == '32', meta
def block_digest(b, block=1 << 20):
    return hashlib.sha256(b''.join(hashlib.sha256(b[i:i + block]).digest() for i in range(0, len(b), block))).hexdigest()
fmt = meta['dtype']
sources = {s['name']: s for s in json.loads(meta['sources'])}
files = sorted(glob.glob(os.path.join(ckpt, '*.safetensors')))
assert sorted(sources) == [os.path.basename(f) for f in files], sources.keys()
src = {}
for f in files:
    s = sources[os.path.basename(f)]
    assert s['size'] == os.path.getsize(f) and s['mtimeMs'] == os.stat(f).st_mtime_ns // 1000000, (s, os.stat(f))
    sh, sstart = header(f)
    with open(f, 'rb') as fh:
        assert hashlib.sha256(fh.read(sstart)).hexdigest() == s['header']
    for k, v in sh.items():
        if k != '__metadata__': src[k] = (f, sstart, v)
digests = json.loads(meta['tensors'])
data = open(cache, 'rb').read()
assert len(data) == start + max(v['data_offsets'][1] for v in h.values())
for name, v in h.items():
    f, sstart, sv = src[name]
    N, K = sv['shape']
    assert v['dtype'] == 'U8' and sv['dtype'] == 'BF16' and digests[name]['shape'] == [N, K]
    with open(f, 'rb') as fh:
        fh.seek(sstart + sv['data_offsets'][0]); bits = np.frombuffer(fh.read(N * K * 2), '<u2').astype(np.uint32)
    x = (bits << 16).view(np.float32).astype(np.float64).reshape(N, K)
    want, _ = quantize(fmt, x)
    got = np.frombuffer(data[start + v['data_offsets'][0]: start + v['data_offsets'][1]], np.uint8).reshape(v['shape'])
    assert got.shape == want.shape and np.array_equal(got, want), name
    assert block_digest(got.tobytes()) == digests[name]['sha256'], name
print(len(h))
`;

function pyCheck(cache: string, ckpt: string): number {
  const r = spawnSync('/usr/bin/python3', ['-c', PY_CHECK, cache, ckpt, import.meta.dirname], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cache check failed: ${r.stderr}`);
  return Number(r.stdout.trim());
}

describe('quantized cache (tiny checkpoint)', () => {
  it('q4: the first load writes the cache (numpy gives the same bytes), the second reads it without quantizing: identical GPU tensors', async () => {
    const dir = copyTiny('q4');
    const path = join(dir, CACHE_FOLDER, cacheFileName('q4'));
    // an earlier version's file, which no load can read any more, goes when the new one is written
    mkdirSync(join(dir, CACHE_FOLDER));
    writeFileSync(join(dir, CACHE_FOLDER, 'q4-v1.safetensors'), 'an old cache');
    const first = await load(dir, 'q4');
    expect(first.quantizeSeconds).toBeGreaterThan(0);
    expect(first.statuses.at(-1)).toBe(`written to ${path}`);
    const quantized = [...(await Checkpoint.open(dir)).tensors.values()].filter((t) => quantizeRule('q4')!(t)).length;
    expect(pyCheck(path, dir)).toBe(quantized);
    expect(readdirSync(join(dir, CACHE_FOLDER))).toEqual([cacheFileName('q4')]); // no temporary file or old version left
    const second = await load(dir, 'q4');
    expect(second.statuses).toEqual([`read from ${path}`]);
    expect(second.quantizeSeconds).toBe(0);
    expectSameTensors(first, second);
    // and both equal a load without the cache
    expectSameTensors(first, await load(dir, 'q4', false));
  });

  it('q8: a changed source (mtime; one header byte at the same size) invalidates the cache, which is rebuilt', async () => {
    const dir = copyTiny('q8');
    const path = join(dir, CACHE_FOLDER, cacheFileName('q8'));
    const first = await load(dir, 'q8', undefined, layersOnly('q8'));
    const shard = join(dir, 'model-00002-of-00004.safetensors');
    utimesSync(shard, new Date(), new Date(Date.now() + 5000));
    const touched = await load(dir, 'q8', undefined, layersOnly('q8'));
    expect(touched.statuses[0]).toBe(`${path}: its 'sources' differs (another checkpoint, quantizer or cache version); writing ${path}`);
    expect(touched.quantizeSeconds).toBeGreaterThan(0);
    expectSameTensors(first, touched);
    expect((await load(dir, 'q8', undefined, layersOnly('q8'))).statuses).toEqual([`read from ${path}`]);
    // same size, same mtime, one byte of the header's metadata changed
    const bytes = readFileSync(shard);
    const { mtime } = statSync(shard);
    const at = bytes.indexOf(Buffer.from('"format":"pt"'));
    expect(at).toBeGreaterThan(0);
    bytes[at + 11] = 'u'.charCodeAt(0);
    writeFileSync(shard, bytes);
    utimesSync(shard, mtime, mtime);
    const edited = await load(dir, 'q8', undefined, layersOnly('q8'));
    expect(edited.statuses[0]).toMatch(/its 'sources' differs .*; writing/);
    expectSameTensors(first, edited);
  });

  it('a cut or damaged cache file is detected and rebuilt: never wrong weights', async () => {
    const dir = copyTiny('damaged');
    const path = join(dir, CACHE_FOLDER, cacheFileName('q4'));
    const first = await load(dir, 'q4', undefined, layersOnly('q4'));
    truncateSync(path, statSync(path).size - 100);
    const cut = await load(dir, 'q4', undefined, layersOnly('q4'));
    expect(cut.statuses[0]).toMatch(/^\S+: (unreadable|\d+ bytes where its tensors end at \d+)/);
    expect(cut.quantizeSeconds).toBeGreaterThan(0);
    expectSameTensors(first, cut);
    // same size, one data byte flipped: found while reading, the load starts over and quantizes
    const bytes = readFileSync(path);
    bytes[bytes.length - 1000] ^= 0x40;
    writeFileSync(path, bytes);
    const damaged = await load(dir, 'q4', undefined, layersOnly('q4'));
    expect(damaged.statuses[0]).toBe(`read from ${path}`);
    expect(damaged.statuses.at(-1)).toBe(`written to ${path}`);
    expect(damaged.quantizeSeconds).toBeGreaterThan(0);
    expectSameTensors(first, damaged);
    expect((await load(dir, 'q4', undefined, layersOnly('q4'))).statuses).toEqual([`read from ${path}`]);
  });

  it('a folder that cannot be written: the user cache folder instead, else no cache; the load never fails', async () => {
    const dir = copyTiny('readonly');
    writeFileSync(join(dir, CACHE_FOLDER), 'a file where the cache folder would go');
    const user = join(tmp, 'xdg');
    const saved = process.env.XDG_CACHE_HOME;
    process.env.XDG_CACHE_HOME = user;
    try {
      const [, fallback] = cacheDirs(dir);
      expect(fallback.startsWith(join(user, 'pvc-webgpu'))).toBe(true);
      const first = await load(dir, 'q4', undefined, layersOnly('q4'));
      expect(first.statuses.at(-1)).toBe(`written to ${join(fallback, cacheFileName('q4'))}`);
      expect((await load(dir, 'q4', undefined, layersOnly('q4'))).statuses).toEqual([`read from ${join(fallback, cacheFileName('q4'))}`]);
      // a chosen folder that cannot be made (under a file): quantized, not cached, loaded
      const none = await load(dir, 'q4', { dir: join(dir, CACHE_FOLDER, 'sub') }, layersOnly('q4'));
      expect(none.statuses.at(-1)).toMatch(/^not written \(.*ENOTDIR/);
      expectSameTensors(first, none);
      expect(existsSync(join(dir, CACHE_FOLDER, 'sub'))).toBe(false);
    } finally {
      if (saved === undefined) delete process.env.XDG_CACHE_HOME;
      else process.env.XDG_CACHE_HOME = saved;
    }
  });

  it('q4 on 3 worker threads: GPU tensors and cache file byte-identical to the main thread and to numpy', async () => {
    const dtype = 'q4';
    const dir = copyTiny('threads');
    const path = join(dir, CACHE_FOLDER, cacheFileName(dtype));
    // several blocks in flight across tensors, finishing out of order on 2 cores; the embedding table spans 3 blocks, and
    // small staging pieces take blocks a few rows at a time
    const rule = (t: TensorInfo) => layersOnly(dtype)(t) ?? (t.name.endsWith('tok_embeddings.weight') ? dtype : undefined);
    const main = await load(dir, dtype, undefined, rule, { quantizeWorkers: 0 });
    expect(main.quantizeWorkers).toBe(0);
    renameSync(path, `${path}.main`);
    const threads = await load(dir, dtype, undefined, rule, { quantizeWorkers: 3, stagingBytes: 64 << 10 });
    expect(threads.quantizeWorkers).toBe(3);
    expect(threads.statuses.at(-1)).toBe(`written to ${path}`);
    expectSameTensors(main, threads);
    expect(Buffer.compare(readFileSync(path), readFileSync(`${path}.main`))).toBe(0);
    const ckpt = await Checkpoint.open(dir);
    expect(pyCheck(path, dir)).toBe([...ckpt.tensors.values()].filter((t) => rule(t)).length);
  });
});
