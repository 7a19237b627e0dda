// Hugging Face hub download into the browser's Origin Private File System (runs in a Web Worker:
// it writes through synchronous access handles). Same hub API and the same guarantees as the Node
// path (download.ts): pinned to the commit the revision names; each file streams into NAME.incomplete
// while hashed (sha256 for LFS files, git's blob sha1 otherwise) and is renamed to NAME only when
// size and hash match; an interrupted file resumes with a Range request. Before anything is fetched
// the storage quota is checked against what is still missing.
// Incremental hashes come from @noble/hashes (WebCrypto's digest() cannot hash a stream).

import { sha1 } from '@noble/hashes/legacy.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';

export interface HubModel {
  endpoint: string;
  repo: string;
  revision?: string;
  token?: string;
}

export interface HubProgress {
  file: string;
  done: number;
  total: number;
  bytesPerSecond: number;
}

interface RemoteFile {
  path: string;
  size: number;
  sha256?: string;
  gitOid?: string;
}

/** FileSystemSyncAccessHandle (lib.webworker's; the project compiles against lib.dom). */
interface SyncAccess {
  getSize(): number;
  read(buffer: Uint8Array, options: { at: number }): number;
  write(buffer: Uint8Array, options: { at: number }): number;
  truncate(size: number): void;
  flush(): void;
  close(): void;
}
export type WorkerFileHandle = FileSystemFileHandle & { createSyncAccessHandle(): Promise<SyncAccess>; move(name: string): Promise<void> };

export class QuotaError extends Error {
  override name = 'QuotaError';
}

/** A transfer that stopped or arrived corrupted: trying again resumes (or restarts) it. */
export class DownloadError extends Error {
  override name = 'DownloadError';
}

/** Files a checkpoint needs besides its shards, then the optional ones (as the Node downloader). */
const NEEDED = /^(config\.json|tokenizer\.model|tokenizer_config\.json|generation_config\.json|special_tokens_map\.json|added_tokens\.json|model\.safetensors\.index\.json|[^/]*\.safetensors)$/;
const CHUNK = 8 << 20;
/** sizes as people read them (a tiny checkpoint's megabytes are not "0.02 GB") */
export const formatSize = (n: number): string => (n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : `${(n / 1e6).toFixed(1)} MB`);

async function hubFetch(hub: HubModel, url: string, what: string, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<Response> {
  const h = { ...headers, ...(hub.token ? { Authorization: `Bearer ${hub.token}` } : {}) };
  let res: Response;
  try {
    res = await fetch(url, { headers: h, signal });
  } catch (e) {
    if (signal?.aborted) throw e;
    throw new Error(`cannot reach ${hub.endpoint} for ${what} (${(e as Error).message}): offline, blocked, or the hub is down`);
  }
  if (res.ok) return res;
  const why = res.status === 401 || res.status === 403 ? ': the repo may be gated or private (give an access token)' : res.status === 404 ? ': check the repo name and revision' : '';
  throw new Error(`the hub answered HTTP ${res.status} for ${what} of ${hub.repo}${why}`);
}

async function listFiles(hub: HubModel, signal?: AbortSignal): Promise<{ commit: string; files: RemoteFile[] }> {
  const api = `${hub.endpoint}/api/models/${hub.repo}`;
  const info = (await (await hubFetch(hub, `${api}/revision/${encodeURIComponent(hub.revision ?? 'main')}`, 'the model info', {}, signal)).json()) as { sha?: string };
  const commit = info.sha ?? hub.revision ?? 'main';
  const files: RemoteFile[] = [];
  for (let url: string | undefined = `${api}/tree/${commit}?recursive=true`; url; ) {
    const res = await hubFetch(hub, url, 'the file list', {}, signal);
    for (const e of (await res.json()) as { type?: string; path?: string; size?: number; oid?: string; lfs?: { oid?: string; size?: number } }[]) {
      if (e.type !== 'file' || typeof e.path !== 'string' || !NEEDED.test(e.path)) continue;
      const sha = e.lfs?.oid?.replace(/^sha256:/, '');
      files.push({ path: e.path, size: e.lfs?.size ?? e.size ?? 0, sha256: sha, gitOid: e.lfs ? undefined : e.oid });
    }
    const next = /<([^>]+)>;\s*rel="next"/.exec(res.headers.get('link') ?? '')?.[1];
    url = next ? new URL(next, url).href : undefined;
  }
  if (!files.some((f) => f.path === 'config.json')) throw new Error(`${hub.repo}@${commit} has no config.json: not a model checkpoint`);
  return { commit, files };
}

export async function fileIfPresent(dir: FileSystemDirectoryHandle, name: string): Promise<File | undefined> {
  try {
    return await (await dir.getFileHandle(name)).getFile();
  } catch {
    return undefined;
  }
}

function newHasher(f: RemoteFile) {
  if (f.sha256) return sha256.create();
  const h = sha1.create();
  h.update(new TextEncoder().encode(`blob ${f.size}\0`));
  return h;
}

/**
 * Makes sure the OPFS holds the checkpoint (downloading what is missing) and returns its files by
 * relative path, ready to mount. `onProgress` gets bytes over all files (cached ones count as done).
 */
export async function ensureHubModel(
  hub: HubModel,
  onProgress?: (p: HubProgress) => void,
  signal?: AbortSignal,
  /** runs before anything is fetched when files are missing, with every file's URL and the request headers (a check of the remote checkpoint's headers) */
  beforeDownload?: (urls: Map<string, string>, headers: Record<string, string>) => Promise<void>,
): Promise<{ commit: string; files: Map<string, File>; downloaded: number }> {
  const { commit, files } = await listFiles(hub, signal);
  const root = await navigator.storage.getDirectory();
  const dir = await (await (await root.getDirectoryHandle('hub', { create: true })).getDirectoryHandle(hub.repo.replace(/\//g, '--'), { create: true })).getDirectoryHandle(commit, { create: true });
  const total = files.reduce((n, f) => n + f.size, 0);
  const have = new Map<string, File>();
  let missing = 0;
  for (const f of files) {
    const done = await fileIfPresent(dir, f.path);
    if (done?.size === f.size) have.set(f.path, done);
    else missing += f.size - ((await fileIfPresent(dir, `${f.path}.incomplete`))?.size ?? 0);
  }
  const url = (f: RemoteFile) => `${hub.endpoint}/${hub.repo}/resolve/${commit}/${f.path}`;
  if (missing > 0) await beforeDownload?.(new Map(files.map((f) => [f.path, url(f)])), hub.token ? { Authorization: `Bearer ${hub.token}` } : {});
  const { quota = 0, usage = 0 } = await navigator.storage.estimate();
  if (missing > quota - usage) {
    throw new QuotaError(`the model needs ${formatSize(missing)} more of browser storage but only ${formatSize(quota - usage)} is free (quota ${formatSize(quota)}, used ${formatSize(usage)}): free disk space, or use a local folder instead`);
  }
  await navigator.storage.persist?.();
  let done = total - missing;
  let fetched = 0;
  const start = performance.now();
  const report = (file: string) => onProgress?.({ file, done, total, bytesPerSecond: fetched / Math.max(1e-3, (performance.now() - start) / 1000) });
  for (const f of files) {
    if (have.has(f.path)) continue;
    const partHandle = (await dir.getFileHandle(`${f.path}.incomplete`, { create: true })) as WorkerFileHandle;
    const access = await partHandle.createSyncAccessHandle();
    let hasher = newHasher(f);
    let mismatch = '';
    try {
      let at = access.getSize();
      if (at > f.size) access.truncate((at = 0));
      // resume: the kept bytes go through the hash again
      const buf = new Uint8Array(CHUNK);
      for (let pos = 0; pos < at; pos += CHUNK) {
        const n = access.read(buf.subarray(0, Math.min(CHUNK, at - pos)), { at: pos });
        hasher.update(buf.subarray(0, n));
      }
      if (at < f.size) {
        const res = await hubFetch(hub, url(f), f.path, at > 0 ? { Range: `bytes=${at}-` } : {}, signal);
        if (at > 0 && res.status !== 206) {
          // the server ignored the Range: the whole file comes again
          done -= at;
          access.truncate((at = 0));
          hasher = newHasher(f);
        }
        const reader = res.body!.getReader();
        for (;;) {
          let chunk: ReadableStreamReadResult<Uint8Array>;
          try {
            chunk = await reader.read();
          } catch (e) {
            if (signal?.aborted) throw e;
            access.flush(); // the bytes so far stay in NAME.incomplete for the next try
            throw new DownloadError(`the download of ${f.path} was interrupted at ${formatSize(at)} of ${formatSize(f.size)} (${(e as Error).message}); try again to resume it`);
          }
          const { done: end, value } = chunk;
          if (end) break;
          if (at + value.length > f.size) throw new Error(`${f.path}: the hub sent more than its ${f.size} bytes`);
          try {
            access.write(value, { at });
          } catch (e) {
            throw (e as Error).name === 'QuotaExceededError' ? new QuotaError(`browser storage ran out while writing ${f.path} (${formatSize(missing)} were needed)`) : e;
          }
          hasher.update(value);
          at += value.length;
          done += value.length;
          fetched += value.length;
          report(f.path);
        }
      }
      access.flush();
      if (at !== f.size) throw new DownloadError(`the download of ${f.path} stopped at ${at} of ${f.size} bytes; try again to resume it`);
      const digest = bytesToHex(hasher.digest());
      const want = f.sha256 ?? f.gitOid;
      if (want && digest !== want) mismatch = `${f.path}: integrity check failed (hash ${digest}, the hub says ${want}); the bad copy was deleted, try again`;
    } finally {
      access.close();
    }
    if (mismatch) {
      await dir.removeEntry(`${f.path}.incomplete`);
      throw new DownloadError(mismatch);
    }
    await partHandle.move(f.path);
    have.set(f.path, await (await dir.getFileHandle(f.path)).getFile());
  }
  report('');
  return { commit, files: have, downloaded: fetched };
}
