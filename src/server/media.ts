// Where a request's images and video come from. `data:` URLs (base64) always; local files and
// http(s) URLs only when the operator lists them (--allow-media DIR or URL prefix), since a server
// that opens any path or fetches any URL for its clients leaks files and reaches internal hosts.
// Everything is checked and fetched before the request is queued: a bad URL costs no GPU time.
// The engine reads media from files (ffmpeg needs one for video), so inline and fetched bytes are
// written to a per-request temporary folder, removed when the request ends.

import { createHash } from 'node:crypto';
import { mkdtemp, realpath, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { isAbsolute, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { imageHeader } from '../preprocess/header.js';
import { probeImage } from '../preprocess/image-file.js';
import { badRequest } from './errors.js';
import type { MediaRef } from './conversation.js';

export interface MediaPolicy {
  /** local directories and http(s) URL prefixes clients may name; empty: data: URLs only */
  allow: readonly string[];
  /** largest image or video fetched from a URL, in bytes */
  maxFetchBytes: number;
  fetchTimeoutMs: number;
}

export interface ResolvedMedia {
  /** files in media order, for the engine */
  paths: string[];
  /** what each one is, by content (the same image sent again has the same key) */
  keys: string[];
  /** `text` with our temporary file names replaced by the request's names for them (messages.0.content.1) */
  describe(text: string): string;
  /** removes the temporary files */
  release(): Promise<void>;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** `data:[type][;param=...];base64,<data>` -> bytes and type; anything else is a 400. */
export function parseDataUrl(url: string, param: string): { type: string; bytes: Uint8Array } {
  const comma = url.indexOf(',');
  const head = comma < 0 ? '' : url.slice(5, comma).toLowerCase();
  if (comma < 0 || !head.split(';').includes('base64')) throw badRequest(`${param}: a data: URL must be base64 (data:TYPE;base64,...)`, param, 'invalid_data_url');
  const data = url.slice(comma + 1).replace(/\s+/g, '');
  if (data.length % 4 !== 0 || !BASE64.test(data)) throw badRequest(`${param}: the data: URL's base64 payload is malformed`, param, 'invalid_data_url');
  const bytes = Buffer.from(data, 'base64');
  if (bytes.length === 0) throw badRequest(`${param}: the data: URL is empty`, param, 'invalid_data_url');
  return { type: head.split(';')[0], bytes };
}

const invalidImage = (ref: MediaRef, e: unknown, type: string | null) => badRequest(`${ref.param}: ${(e as Error).message}${type ? ` (declared ${type})` : ''}`, ref.param, 'invalid_image');

/** The header of an image (format, every declared size) or the type of a video, before any decoding. */
function checkKind(ref: MediaRef, type: string | null, bytes: Uint8Array): void {
  if (ref.kind === 'image') {
    try {
      imageHeader(bytes, true);
    } catch (e) {
      throw invalidImage(ref, e, type);
    }
  } else if (type && !type.startsWith('video/') && type !== 'application/octet-stream') {
    throw badRequest(`${ref.param}: a video_url data: URL needs a video/* type, got ${type}`, ref.param, 'invalid_video');
  }
}

const notAllowed = (ref: MediaRef, what: string): Error =>
  badRequest(`${ref.param}: ${what} not allowed on this server; send the ${ref.kind} inline as a data: URL (the operator can allow folders and URL prefixes with --allow-media)`, ref.param, 'media_not_allowed');

async function localFile(ref: MediaRef, policy: MediaPolicy): Promise<string> {
  const path = ref.url.startsWith('file:') ? fileURLToPath(ref.url) : ref.url;
  const dirs = policy.allow.filter((a) => isAbsolute(a));
  if (!dirs.length) throw notAllowed(ref, 'local files are');
  let real: string;
  try {
    real = await realpath(path);
  } catch {
    throw badRequest(`${ref.param}: cannot read ${path}: no such file`, ref.param, 'invalid_url');
  }
  for (const d of dirs) {
    const root = await realpath(d).catch(() => resolve(d));
    if (real.startsWith(root.endsWith(sep) ? root : root + sep)) return real;
  }
  throw notAllowed(ref, `${path} is outside the allowed folders:`);
}

async function download(ref: MediaRef, policy: MediaPolicy): Promise<{ type: string | null; bytes: Uint8Array }> {
  if (!policy.allow.some((prefix) => /^https?:\/\//.test(prefix) && ref.url.startsWith(prefix))) throw notAllowed(ref, `${ref.url} is`);
  let res: Response;
  try {
    res = await fetch(ref.url, { signal: AbortSignal.timeout(policy.fetchTimeoutMs), redirect: 'error' });
  } catch (e) {
    throw badRequest(`${ref.param}: fetching ${ref.url} failed: ${(e as Error).message}`, ref.param, 'invalid_url');
  }
  if (!res.ok) throw badRequest(`${ref.param}: fetching ${ref.url} answered ${res.status}`, ref.param, 'invalid_url');
  const tooBig = () => badRequest(`${ref.param}: ${ref.url} is over ${policy.maxFetchBytes} bytes`, ref.param, 'media_too_large');
  if (Number(res.headers.get('content-length') ?? 0) > policy.maxFetchBytes) throw tooBig();
  const chunks: Uint8Array[] = [];
  let n = 0;
  const reader = res.body?.getReader();
  for (let c = await reader?.read(); c && !c.done; c = await reader!.read()) {
    n += c.value.length;
    if (n > policy.maxFetchBytes) {
      await reader!.cancel();
      throw tooBig();
    }
    chunks.push(c.value);
  }
  return { type: res.headers.get('content-type'), bytes: Buffer.concat(chunks) };
}

/** Checks every media item of a request and gives the engine a file for each. */
export async function resolveMedia(media: readonly MediaRef[], policy: MediaPolicy): Promise<ResolvedMedia> {
  let dir: string | undefined;
  const release = async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  };
  try {
    const paths: string[] = [];
    const keys: string[] = [];
    for (const [i, ref] of media.entries()) {
      let fetched: { type: string | null; bytes: Uint8Array };
      if (ref.url.startsWith('data:')) fetched = parseDataUrl(ref.url, ref.param);
      else if (/^https?:\/\//i.test(ref.url)) fetched = await download(ref, policy);
      else if (ref.url.startsWith('file:') || isAbsolute(ref.url)) {
        const path = await localFile(ref, policy);
        if (ref.kind === 'image') await probeImage(path).catch((e) => Promise.reject(invalidImage(ref, e, null)));
        const { size, mtimeMs } = await stat(path);
        paths.push(path);
        keys.push(`file:${path}:${size}:${mtimeMs}`);
        continue;
      } else throw badRequest(`${ref.param}: the URL must be a data: URL${policy.allow.length ? ', an allowed local path or an allowed http(s) URL' : ''}`, ref.param, 'invalid_url');
      checkKind(ref, fetched.type, fetched.bytes);
      dir ??= await mkdtemp(join(tmpdir(), 'pvc-serve-'));
      const path = join(dir, `${i}.${ref.kind === 'video' ? 'mp4' : 'img'}`);
      await writeFile(path, fetched.bytes);
      paths.push(path);
      keys.push(`sha256:${createHash('sha256').update(fetched.bytes).digest('hex')}`);
    }
    const names = new Map(media.map((ref, i) => [paths[i], ref.param]));
    const describe = (text: string) => [...names].reduce((t, [path, param]) => (dir && path.startsWith(dir) ? t.replaceAll(path, param) : t), text);
    return { paths, keys, describe, release };
  } catch (e) {
    await release();
    throw e;
  }
}
