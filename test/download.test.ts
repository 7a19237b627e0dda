// ensureWeights against a local fake hub on 127.0.0.1: the hub's URL layout and API JSON (model info,
// paginated recursive tree with lfs sha256/size), LFS files redirected to a "CDN" route with Range
// support, and switches to drop a connection mid-file, serve corrupted bytes, or require a token.

import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DownloadError, ensureWeights, isCompleteCheckpoint, type DownloadProgress } from '../src/weights/download.js';
import { Checkpoint } from '../src/weights/safetensors.js';
import { writeCheckpoint } from '../src/weights/synthetic.js';

const REPO = 'TestOrg/Tiny-PVC';
const COMMIT = 'c0ffee'.padEnd(40, '0');
const tmp = mkdtempSync(join(tmpdir(), 'download-test-'));
const srcDir = join(tmp, 'src');
let run = 0;
const freshDir = () => join(tmp, `out${run++}`);

// ---- the fake hub ----

const files = new Map<string, Buffer>();
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const gitOid = (b: Buffer) => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');
const isLfs = (path: string) => path.endsWith('.safetensors') || path === 'tokenizer.model';

interface Seen {
  path: string;
  range?: string;
  auth?: string;
}
const hub = {
  /** token the server demands, if any */
  token: undefined as string | undefined,
  /** byte-serving paths whose next request is cut off half way */
  dropOnce: new Set<string>(),
  /** paths served with one byte flipped */
  corrupt: new Set<string>(),
  seen: [] as Seen[],
};

function treeEntries(): object[] {
  const out: object[] = [{ type: 'directory', path: 'examples', size: 0, oid: '0'.repeat(40) }];
  for (const [path, b] of files) {
    out.push(isLfs(path)
      ? { type: 'file', path, size: b.length, oid: gitOid(Buffer.from(`pointer ${path}`)), lfs: { oid: sha256(b), size: b.length, pointerSize: 134 } }
      : { type: 'file', path, size: b.length, oid: gitOid(b) });
  }
  return out;
}

function sendBytes(req: IncomingMessage, res: ServerResponse, path: string): void {
  let body = files.get(path)!;
  if (hub.corrupt.has(path)) {
    body = Buffer.from(body);
    body[body.length >> 1] ^= 0xff;
  }
  let start = 0;
  const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  if (m) {
    start = Number(m[1]);
    res.writeHead(206, { 'Content-Length': body.length - start, 'Content-Range': `bytes ${start}-${body.length - 1}/${body.length}` });
  } else res.writeHead(200, { 'Content-Length': body.length });
  const rest = body.subarray(start);
  if (hub.dropOnce.delete(path)) {
    // headers promise the whole body; half of it arrives, then the connection dies
    res.write(rest.subarray(0, rest.length >> 1), () => res.socket?.destroy());
    return;
  }
  res.end(rest);
}

function handle(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url!, 'http://x');
  const path = decodeURIComponent(url.pathname);
  hub.seen.push({ path, range: req.headers.range, auth: req.headers.authorization });
  const json = (status: number, v: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
    res.end(JSON.stringify(v));
  };
  const cdn = /^\/cdn\/(.+)$/.exec(path);
  if (cdn) return sendBytes(req, res, cdn[1]); // signed URLs on the real CDN: no token check
  if (hub.token && req.headers.authorization !== `Bearer ${hub.token}`) return json(401, { error: 'Invalid credentials in Authorization header' });
  if (path === `/api/models/${REPO}/revision/main`) {
    return json(200, { id: REPO, sha: COMMIT, siblings: [...files.keys()].map((rfilename) => ({ rfilename })) });
  }
  if (path === `/api/models/${REPO}/tree/${COMMIT}` && url.searchParams.get('recursive') === 'true') {
    const all = treeEntries();
    const from = Number(url.searchParams.get('cursor') ?? 0);
    const page = 4; // small pages so pagination is exercised
    const headers: Record<string, string> = {};
    if (from + page < all.length) headers.Link = `<${url.pathname}?recursive=true&cursor=${from + page}>; rel="next"`;
    return json(200, all.slice(from, from + page), headers);
  }
  const resolve = new RegExp(`^/${REPO}/resolve/${COMMIT}/(.+)$`).exec(path);
  if (resolve && files.has(resolve[1])) {
    const f = resolve[1];
    if (isLfs(f)) {
      res.writeHead(302, { Location: `/cdn/${f}` });
      return void res.end();
    }
    return sendBytes(req, res, f);
  }
  json(404, { error: 'Repository not found' });
}

let server: Server;
let endpoint = '';

beforeAll(async () => {
  await writeCheckpoint(srcDir, 'tiny', { seed: 7 });
  for (const f of readdirSync(srcDir)) files.set(f, readFileSync(join(srcDir, f)));
  files.set('README.md', Buffer.from('# Tiny PVC\n'));
  files.set('modeling_internvl_chat.py', Buffer.from('# remote code\n'));
  files.set('examples/red-panda.jpg', Buffer.from([0xff, 0xd8, 0xff, 0xd9]));
  server = createServer(handle);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  rmSync(tmp, { recursive: true, force: true });
});

beforeEach(() => {
  hub.token = undefined;
  hub.dropOnce.clear();
  hub.corrupt.clear();
  hub.seen = [];
});

const NEEDED = () => [...files.keys()].filter((f) => !['README.md', 'modeling_internvl_chat.py', 'examples/red-panda.jpg'].includes(f)).sort();
const SHARD = () => [...files.keys()].filter((f) => f.endsWith('.safetensors')).sort()[0];
const sameAsHub = (dir: string) => {
  for (const f of NEEDED()) expect(sha256(readFileSync(join(dir, f))), f).toBe(sha256(files.get(f)!));
  expect(readdirSync(dir).sort()).toEqual(NEEDED());
};

async function rejection(p: Promise<unknown>): Promise<DownloadError> {
  const e = await p.then(() => undefined, (err: unknown) => err);
  expect(e).toBeInstanceOf(DownloadError);
  return e as DownloadError;
}

describe('ensureWeights', () => {
  it('downloads the needed files, verified and pinned to the commit; the checkpoint opens; a complete dir is left alone', async () => {
    const dir = freshDir();
    const progress: DownloadProgress[] = [];
    const r = await ensureWeights(dir, { repo: REPO, endpoint, onProgress: (p) => progress.push(p) });
    sameAsHub(dir);
    expect(r.commit).toBe(COMMIT);
    expect(r.downloaded.sort()).toEqual(NEEDED());
    expect(r.ignored).toEqual(['README.md', 'examples/red-panda.jpg', 'modeling_internvl_chat.py']);
    expect(hub.seen.some((s) => s.path.includes('/tree/') && s.path.includes(COMMIT))).toBe(true);
    expect(hub.seen.filter((s) => s.path.includes('/resolve/')).every((s) => s.path.includes(`/resolve/${COMMIT}/`))).toBe(true);
    expect(hub.seen.some((s) => s.path.includes('README') || s.path.includes('.py'))).toBe(false);

    const last = progress.at(-1)!;
    const total = NEEDED().filter((f) => f !== 'model.safetensors.index.json').reduce((s, f) => s + files.get(f)!.length, 0);
    expect(last.total).toBe(total);
    expect(last.done).toBe(total);
    expect(last.etaSeconds).toBe(0);
    expect(progress.every((p, i) => i === 0 || p.done >= progress[i - 1].done)).toBe(true);

    const ckpt = await Checkpoint.open(dir);
    const ref = await Checkpoint.open(srcDir);
    expect(ckpt.names().sort()).toEqual(ref.names().sort());
    expect(await isCompleteCheckpoint(dir)).toBe(true);

    hub.seen = [];
    const again = await ensureWeights(dir, { repo: REPO, endpoint });
    expect(again.alreadyComplete).toBe(true);
    expect(hub.seen).toEqual([]);
  });

  it('resumes an interrupted transfer with a Range request on the next run; the file is bit-identical', async () => {
    const dir = freshDir();
    const shard = SHARD();
    hub.dropOnce.add(shard);
    const e = await rejection(ensureWeights(dir, { repo: REPO, endpoint, retries: 0 }));
    expect(e.kind).toBe('interrupted');
    expect(e.message).toContain(shard);
    const partial = statSync(join(dir, `${shard}.incomplete`)).size;
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThan(files.get(shard)!.length);
    expect(existsSync(join(dir, shard))).toBe(false);
    expect(await isCompleteCheckpoint(dir)).toBe(false);

    hub.seen = [];
    const progress: DownloadProgress[] = [];
    const r = await ensureWeights(dir, { repo: REPO, endpoint, onProgress: (p) => progress.push(p) });
    expect(hub.seen.filter((s) => s.path === `/cdn/${shard}`).map((s) => s.range)).toEqual([`bytes=${partial}-`]);
    expect(r.downloaded).toContain(shard);
    expect(r.kept).toContain('config.json'); // fetched by the first run
    sameAsHub(dir);
    expect(progress.at(-1)!.done).toBe(progress.at(-1)!.total);
  });

  it('retries a dropped connection within one run, resuming it', async () => {
    const dir = freshDir();
    const shard = SHARD();
    hub.dropOnce.add(shard);
    const lines: string[] = [];
    await ensureWeights(dir, { repo: REPO, endpoint, log: (l) => lines.push(l) });
    const ranges = hub.seen.filter((s) => s.path === `/cdn/${shard}`).map((s) => s.range);
    expect(ranges[0]).toBeUndefined();
    expect(ranges[1]).toMatch(/^bytes=\d+-$/);
    expect(lines.some((l) => l.includes('retrying'))).toBe(true);
    sameAsHub(dir);
  });

  it('detects corrupted bytes by sha256 (LFS) and git blob sha1 (regular files), deleting them', async () => {
    const shard = SHARD();
    hub.corrupt.add(shard);
    const dir = freshDir();
    const e = await rejection(ensureWeights(dir, { repo: REPO, endpoint }));
    expect(e.kind).toBe('integrity');
    expect(e.message).toContain(shard);
    expect(e.message).toContain('sha256 mismatch');
    expect(e.message).toContain(sha256(files.get(shard)!));
    expect(existsSync(join(dir, shard))).toBe(false);
    expect(existsSync(join(dir, `${shard}.incomplete`))).toBe(false);

    hub.corrupt.clear();
    hub.corrupt.add('config.json');
    const e2 = await rejection(ensureWeights(freshDir(), { repo: REPO, endpoint }));
    expect(e2.kind).toBe('integrity');
    expect(e2.message).toContain('config.json: git blob sha1 mismatch');
  });

  it('401 without a token, or with a refused one, says so plainly, with the other ways to get the weights', async () => {
    hub.token = 'hf_right';
    const none = await rejection(ensureWeights(freshDir(), { repo: REPO, endpoint, token: '' }));
    expect(none.kind).toBe('auth');
    expect(none.message).toContain('HTTP 401');
    expect(none.message).toContain('No token was sent');
    expect(none.message).toContain('HF_TOKEN');
    expect(none.message).toContain(`huggingface-cli download ${REPO}`);
    expect(none.message).toContain('npx tsx run.ts --demo --image');

    const wrong = await rejection(ensureWeights(freshDir(), { repo: REPO, endpoint, token: 'hf_wrong_secret' }));
    expect(wrong.kind).toBe('auth');
    expect(wrong.message).toContain('token that was sent');
    expect(wrong.message).not.toContain('hf_wrong_secret');
    expect(wrong.stack ?? '').not.toContain('hf_wrong_secret');
  });

  it('honours HF_ENDPOINT and HF_TOKEN, sending the token as Bearer', async () => {
    hub.token = 'hf_right';
    const saved = { endpoint: process.env.HF_ENDPOINT, token: process.env.HF_TOKEN };
    process.env.HF_ENDPOINT = `${endpoint}/`;
    process.env.HF_TOKEN = 'hf_right';
    try {
      const dir = freshDir();
      await ensureWeights(dir, { repo: REPO });
      sameAsHub(dir);
    } finally {
      for (const [k, v] of [['HF_ENDPOINT', saved.endpoint], ['HF_TOKEN', saved.token]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
    const api = hub.seen.filter((s) => !s.path.startsWith('/cdn/'));
    expect(api.length).toBeGreaterThan(NEEDED().length);
    expect(api.every((s) => s.auth === 'Bearer hf_right')).toBe(true);
  });

  it('404 for an unknown repo, and an unreachable endpoint gives the offline message', async () => {
    const missing = await rejection(ensureWeights(freshDir(), { repo: 'TestOrg/nope', endpoint }));
    expect(missing.kind).toBe('not-found');
    expect(missing.message).toContain('TestOrg/nope@main');

    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const off = await rejection(ensureWeights(freshDir(), { repo: REPO, endpoint: `http://127.0.0.1:${port}` }));
    expect(off.kind).toBe('offline');
    expect(off.message).toContain(`Cannot reach http://127.0.0.1:${port} (ECONNREFUSED)`);
    expect(off.message).toContain('git lfs install && git clone');
    expect(off.message).toContain('npx tsx run.ts --demo --image');
  });
});
