// Download a checkpoint from the Hugging Face hub into a plain directory, with Node's own fetch.
//
// Hub HTTP API used (the same calls huggingface_hub and huggingface.js make):
//   GET {endpoint}/api/models/{repo}/revision/{revision}      -> { sha, siblings: [{ rfilename }] }
//   GET {endpoint}/api/models/{repo}/tree/{sha}?recursive=true -> [{ type, path, size, oid, lfs?: { oid, size } }]
//       paginated by a `Link: <next>; rel="next"` header; lfs.oid is the file's sha256
//   GET {endpoint}/{repo}/resolve/{sha}/{path}                 -> the bytes (LFS files redirect to a CDN)
// Downloads are pinned to the commit the revision names, so a branch moving mid-download cannot mix files.
//
// Each file streams into `NAME.incomplete` while it is hashed (sha256 for LFS files, git's blob sha1
// otherwise); it is renamed to NAME only when its size and hash match what the hub publishes. An
// interrupted transfer keeps the partial file and the next attempt resumes it with an HTTP Range
// request. Memory stays bounded by the stream chunks: shards are ~5 GB.
//
// @huggingface/hub was considered: its downloads return whole responses/blobs or fill the HF cache
// layout, with neither Range resume nor hash verification, so it would add a dependency without the
// parts this module needs.

import { createHash, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import { INDEX_FILE } from './safetensors.js';

export const DEFAULT_REPO = 'OpenGVLab/PVC-InternVL2-8B';
export const DEFAULT_DIR = 'weights/PVC-InternVL2-8B';
/** Files inference cannot do without, besides the weights. */
export const REQUIRED_FILES = ['config.json', 'tokenizer.model', 'tokenizer_config.json'];
/** Fetched when the repo has them. */
export const OPTIONAL_FILES = ['generation_config.json', 'special_tokens_map.json', 'added_tokens.json'];

export type DownloadErrorKind = 'offline' | 'auth' | 'not-found' | 'http' | 'interrupted' | 'integrity' | 'repo' | 'disk';

export class DownloadError extends Error {
  override name = 'DownloadError';
  constructor(
    readonly kind: DownloadErrorKind,
    message: string,
  ) {
    super(message);
  }
}

export interface DownloadProgress {
  /** file being transferred */
  file: string;
  fileDone: number;
  fileSize: number;
  /** bytes of all files this run fetches (bytes already on disk from a partial file count as done) */
  done: number;
  total: number;
  /** transfer rate of this run so far, and the time left at that rate */
  bytesPerSecond: number;
  etaSeconds: number;
}

export interface EnsureOptions {
  repo?: string;
  /** branch, tag or commit */
  revision?: string;
  /** hub base URL; default $HF_ENDPOINT, else https://huggingface.co */
  endpoint?: string;
  /** sent as `Authorization: Bearer`; default $HF_TOKEN */
  token?: string;
  onProgress?: (p: DownloadProgress) => void;
  /** one-line notes for a person: what the repo has, what is fetched or kept */
  log?: (line: string) => void;
  /** extra attempts per file after a dropped connection or network failure, each resuming it; default 3 */
  retries?: number;
}

export interface EnsureResult {
  dir: string;
  /** true when `dir` already held a complete checkpoint and the hub was not asked */
  alreadyComplete: boolean;
  /** commit the files came from */
  commit?: string;
  downloaded: string[];
  /** needed files already present with the hub's size */
  kept: string[];
  /** repo files not needed for inference (remote code, README, ...) */
  ignored: string[];
}

interface RemoteFile {
  path: string;
  size: number;
  /** sha256 of the content for LFS files */
  sha256?: string;
  /** git blob id (sha1 of "blob SIZE\0" + content) for regular files */
  gitOid?: string;
}

interface Hub {
  endpoint: string;
  repo: string;
  revision: string;
  token?: string;
  /** howToGetWeights for this repo and directory, appended to errors a person must act on */
  help: string;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

async function fileSize(path: string): Promise<number | undefined> {
  try {
    const s = await stat(path);
    return s.isFile() ? s.size : undefined;
  } catch {
    return undefined;
  }
}

/** Shard file names a checkpoint directory's index lists (or model.safetensors), or undefined if unreadable. */
async function localShards(dir: string): Promise<string[] | undefined> {
  try {
    const index: unknown = JSON.parse(await readFile(join(dir, INDEX_FILE), 'utf8'));
    const map = isObject(index) ? index.weight_map : undefined;
    if (!isObject(map)) return undefined;
    return [...new Set(Object.values(map).map(String))].sort();
  } catch {
    return (await fileSize(join(dir, 'model.safetensors'))) !== undefined ? ['model.safetensors'] : undefined;
  }
}

/** Whether `dir` holds every file inference needs (checked locally; sizes and hashes are not re-verified). */
export async function isCompleteCheckpoint(dir: string): Promise<boolean> {
  const shards = await localShards(dir);
  if (!shards) return false;
  for (const f of [...REQUIRED_FILES, ...shards]) if ((await fileSize(join(dir, f))) === undefined) return false;
  return true;
}

/** What to tell a person who cannot download: other ways to get the weights, and the demo that needs none. */
export function howToGetWeights(repo = DEFAULT_REPO, dir = DEFAULT_DIR, endpoint = 'https://huggingface.co'): string {
  return [
    'Other ways to get the weights:',
    `  huggingface-cli download ${repo} --local-dir ${dir}`,
    `  git lfs install && git clone ${endpoint}/${repo} ${dir}`,
    `  or copy an existing download of ${repo} into ${dir}`,
    'To try the engine without them (tiny synthetic model):',
    '  npx tsx run.ts --demo --image IMAGE',
  ].join('\n');
}

const encodePath = (p: string) => p.split('/').map(encodeURIComponent).join('/');

/** fetch with the token; network failures and refusals become DownloadErrors with a plain explanation. */
async function request(hub: Hub, url: string, what: string, headers: Record<string, string> = {}, timeoutMs?: number): Promise<Response> {
  const h: Record<string, string> = { ...headers };
  if (hub.token) h.Authorization = `Bearer ${hub.token}`;
  let res: Response;
  try {
    res = await fetch(url, { headers: h, redirect: 'follow', signal: timeoutMs ? AbortSignal.timeout(timeoutMs) : undefined });
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    const why = cause?.code ?? cause?.message ?? (e as Error).message;
    throw new DownloadError('offline', `Cannot reach ${hub.endpoint} (${why}) while fetching ${what}: offline, DNS failure, proxy, or the hub is down.\n${hub.help}`);
  }
  if (res.ok) return res;
  await res.body?.cancel();
  const place = `${hub.repo}@${hub.revision} on ${hub.endpoint}`;
  if (res.status === 401 || res.status === 403) {
    const tokenNote = hub.token
      ? 'The token that was sent (HF_TOKEN or the token option) was refused or has no access to this repo: check it'
      : 'No token was sent: set HF_TOKEN to an access token';
    throw new DownloadError(
      'auth',
      `The hub refused ${what} of ${place} (HTTP ${res.status}). The repo may be gated, private, or not exist. ` +
        `${tokenNote} (${hub.endpoint}/settings/tokens), and accept the model's terms on ${hub.endpoint}/${hub.repo} if it asks.\n${hub.help}`,
    );
  }
  if (res.status === 404) {
    throw new DownloadError('not-found', `Not found (HTTP 404): ${what} of ${place}. Check the repo name and revision.\n${hub.help}`);
  }
  throw new DownloadError('http', `HTTP ${res.status} ${res.statusText} for ${what} of ${place}.\n${hub.help}`);
}

async function getJson(hub: Hub, url: string, what: string): Promise<{ json: unknown; next?: string }> {
  const res = await request(hub, url, what, { Accept: 'application/json' }, 60_000);
  const next = /<([^>]+)>;\s*rel="next"/.exec(res.headers.get('link') ?? '')?.[1];
  try {
    return { json: await res.json(), next: next ? new URL(next, url).href : undefined };
  } catch (e) {
    throw new DownloadError('http', `${what}: the hub's answer is not JSON (${(e as Error).message})`);
  }
}

/** The commit the revision names, and every file of that commit with its size and hash. */
async function listRepo(hub: Hub): Promise<{ commit: string; files: Map<string, RemoteFile> }> {
  const api = `${hub.endpoint}/api/models/${encodePath(hub.repo)}`;
  // the model info names the commit; its siblings list only names, so sizes and hashes come from the tree
  const { json: info } = await getJson(hub, `${api}/revision/${encodeURIComponent(hub.revision)}`, 'the model info');
  const commit = isObject(info) && typeof info.sha === 'string' ? info.sha : hub.revision;
  const files = new Map<string, RemoteFile>();
  let url: string | undefined = `${api}/tree/${encodeURIComponent(commit)}?recursive=true`;
  while (url) {
    const page = await getJson(hub, url, 'the file list');
    if (!Array.isArray(page.json)) throw new DownloadError('http', `the file list of ${hub.repo}@${commit} is not a JSON array`);
    for (const e of page.json) {
      if (!isObject(e) || e.type !== 'file' || typeof e.path !== 'string' || typeof e.size !== 'number') continue;
      const lfs = isObject(e.lfs) ? e.lfs : undefined;
      // the hub gives lfs.oid; model-info siblings call it lfs.sha256; some mirrors prefix "sha256:"
      const sha = lfs ? String(lfs.oid ?? lfs.sha256 ?? '').replace(/^sha256:/, '') : undefined;
      files.set(e.path, {
        path: e.path,
        size: lfs && typeof lfs.size === 'number' ? lfs.size : e.size,
        sha256: sha || undefined,
        gitOid: !lfs && typeof e.oid === 'string' ? e.oid : undefined,
      });
    }
    url = page.next;
  }
  return { commit, files };
}

/** Progress over one run: resumed bytes count as done but not towards the rate. */
class Meter {
  private done = 0;
  private fetched = 0;
  private readonly start = performance.now();
  constructor(
    readonly total: number,
    private readonly onProgress?: (p: DownloadProgress) => void,
  ) {}

  add(file: RemoteFile, fileDone: number, n: number, resumed = false): void {
    this.done += n;
    if (!resumed) this.fetched += n;
    if (!this.onProgress) return;
    const s = (performance.now() - this.start) / 1000;
    const rate = s > 0 ? this.fetched / s : 0;
    const left = this.total - this.done;
    this.onProgress({ file: file.path, fileDone, fileSize: file.size, done: this.done, total: this.total, bytesPerSecond: rate, etaSeconds: left <= 0 ? 0 : rate > 0 ? left / rate : Infinity });
  }
}

function newHash(file: RemoteFile): Hash {
  if (file.sha256) return createHash('sha256');
  return createHash('sha1').update(`blob ${file.size}\0`);
}

async function hashFile(path: string, hash: Hash, end?: number): Promise<void> {
  for await (const chunk of createReadStream(path, { end })) hash.update(chunk as Buffer);
}

/** Fetch one file into dir/NAME.incomplete (resuming it if present), verify it, rename it to dir/NAME. */
async function downloadFile(hub: Hub, commit: string, file: RemoteFile, dir: string, meter: Meter): Promise<void> {
  const dest = join(dir, file.path);
  const part = `${dest}.incomplete`;
  let have = (await fileSize(part)) ?? 0;
  if (have > file.size) {
    await rm(part);
    have = 0;
  }
  const hash = newHash(file);
  if (have > 0 && have === file.size) {
    // complete partial file from an earlier run: only verification is left
    await hashFile(part, hash);
    meter.add(file, have, have, true);
  } else {
    const url = `${hub.endpoint}/${encodePath(hub.repo)}/resolve/${encodeURIComponent(commit)}/${encodePath(file.path)}`;
    // identity: byte ranges must address the stored bytes, not a compressed encoding
    const headers: Record<string, string> = { 'Accept-Encoding': 'identity' };
    if (have > 0) headers.Range = `bytes=${have}-`;
    const res = await request(hub, url, file.path, headers);
    // a 200 to a Range request means the server sends the whole file: start over
    let start = 0;
    if (res.status === 206) {
      const from = /^bytes (\d+)-/.exec(res.headers.get('content-range') ?? '')?.[1];
      if (Number(from) !== have) {
        await res.body?.cancel();
        throw new DownloadError('http', `${file.path}: asked to resume at byte ${have}, the server answered range '${res.headers.get('content-range')}'`);
      }
      start = have;
      await hashFile(part, hash, start - 1);
      meter.add(file, start, start, true);
    }
    let written = start;
    const count = async function* (src: AsyncIterable<Uint8Array>) {
      for await (const chunk of src) {
        written += chunk.length;
        if (written > file.size) throw new DownloadError('integrity', `${file.path}: the server sent more than the ${file.size} bytes the hub lists`);
        hash.update(chunk);
        meter.add(file, written, chunk.length);
        yield chunk;
      }
    };
    const body = res.body ? Readable.fromWeb(res.body as unknown as NodeReadableStream<Uint8Array>) : Readable.from([]);
    try {
      await pipeline(body, count, createWriteStream(part, { flags: start > 0 ? 'a' : 'w' }));
    } catch (e) {
      if (e instanceof DownloadError) {
        await rm(part, { force: true });
        throw e;
      }
      throw new DownloadError('interrupted', `${file.path}: transfer interrupted at byte ${written} of ${file.size} (${(e as Error).message}); the partial file is kept and the next run resumes it`);
    }
    if (written < file.size) throw new DownloadError('interrupted', `${file.path}: the connection ended at byte ${written} of ${file.size}; the partial file is kept and the next run resumes it`);
  }
  const got = hash.digest('hex');
  const want = file.sha256 ?? file.gitOid;
  if (want && got !== want.toLowerCase()) {
    await rm(part, { force: true });
    const algo = file.sha256 ? 'sha256' : 'git blob sha1';
    throw new DownloadError('integrity', `${file.path}: ${algo} mismatch (the hub lists ${want}, the download hashes to ${got}); the file was deleted, run again to fetch it afresh`);
  }
  await rename(part, dest);
}

/** Fail early rather than part-way through a 16 GB download. */
async function checkSpace(dir: string, todo: RemoteFile[]): Promise<void> {
  let need = 0;
  for (const f of todo) need += f.size - ((await fileSize(join(dir, `${f.path}.incomplete`))) ?? 0);
  const fs = await statfs(dir);
  const free = fs.bavail * fs.bsize;
  if (need > free) throw new DownloadError('disk', `${dir}: ${gb(need)} still to download but only ${gb(free)} free`);
}

const gb = (n: number) => (n >= 1e8 ? `${(n / 1e9).toFixed(2)} GB` : `${(n / 1e6).toFixed(2)} MB`);

/**
 * Make sure `dir` holds a complete checkpoint of `repo`: if it does not, download the files inference
 * needs (config, generation config, safetensors index and every shard it names, tokenizer files),
 * resuming partial files and verifying each against the hub's size and hash.
 */
export async function ensureWeights(dir: string, opts: EnsureOptions = {}): Promise<EnsureResult> {
  const log = opts.log ?? (() => {});
  if (await isCompleteCheckpoint(dir)) return { dir, alreadyComplete: true, downloaded: [], kept: [], ignored: [] };
  const endpoint = (opts.endpoint ?? process.env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, '');
  const repo = opts.repo ?? DEFAULT_REPO;
  const hub: Hub = {
    endpoint,
    repo,
    revision: opts.revision ?? 'main',
    token: (opts.token ?? process.env.HF_TOKEN) || undefined,
    help: howToGetWeights(repo, dir, endpoint),
  };
  const retries = opts.retries ?? 3;
  const { commit, files } = await listRepo(hub);
  const need = (name: string): RemoteFile => {
    const f = files.get(name);
    if (!f) throw new DownloadError('repo', `${hub.repo}@${commit} has no ${name}; is this a PVC-InternVL2 / InternVL2 repo?`);
    return f;
  };
  await mkdir(dir, { recursive: true });

  const downloaded: string[] = [];
  const kept: string[] = [];
  /** Fetch the files whose local copy is missing or has the wrong size, with resume-retries. */
  const fetchAll = async (list: RemoteFile[], onProgress?: (p: DownloadProgress) => void): Promise<void> => {
    const todo: RemoteFile[] = [];
    for (const f of list) {
      const local = await fileSize(join(dir, f.path));
      if (local === f.size) kept.push(f.path);
      else {
        if (local !== undefined) log(`${f.path}: local size ${local} differs from the hub's ${f.size}; downloading it again`);
        todo.push(f);
      }
    }
    if (!todo.length) return;
    await checkSpace(dir, todo);
    let bytes = 0;
    for (const f of todo) bytes += f.size;
    log(`fetching ${todo.length} file(s), ${gb(bytes)}`);
    const meter = new Meter(bytes, onProgress);
    for (const f of todo) {
      for (let attempt = 0; ; attempt++) {
        try {
          await downloadFile(hub, commit, f, dir, meter);
          break;
        } catch (e) {
          const transient = e instanceof DownloadError && (e.kind === 'interrupted' || e.kind === 'offline');
          if (!transient || attempt >= retries) throw e;
          log(`${e.message}; retrying (${attempt + 1}/${retries})`);
          await new Promise((r) => setTimeout(r, 500 * (attempt + 1)));
        }
      }
      downloaded.push(f.path);
    }
  };

  // The index first: it names the shards.
  const hasIndex = files.has(INDEX_FILE);
  await fetchAll(hasIndex ? [need(INDEX_FILE)] : []);
  const shards = hasIndex ? await localShards(dir) : ['model.safetensors'];
  if (!shards) throw new DownloadError('repo', `${join(dir, INDEX_FILE)} has no weight_map`);
  const wanted = [...REQUIRED_FILES.map(need), ...OPTIONAL_FILES.filter((f) => files.has(f)).map(need), ...shards.map(need)];
  const names = new Set([INDEX_FILE, ...wanted.map((f) => f.path)]);
  const ignored = [...files.keys()].filter((f) => !names.has(f)).sort();
  log(`${hub.repo}@${commit.slice(0, 12)}: ${files.size} files; needed: ${names.size}; not needed: ${ignored.join(', ') || 'none'}`);

  await fetchAll(wanted, opts.onProgress);
  return { dir, alreadyComplete: false, commit, downloaded, kept, ignored };
}
