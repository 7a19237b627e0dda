// Browser test harness: Debian's chromium driven by playwright-core (nothing downloads a browser),
// the page served by Vite's dev server, and a fake Hugging Face hub on loopback serving a checkpoint
// folder with the hub's API (revision, tree with sizes and hashes, resolve with Range), CORS included.

import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { createServer as createVite, type ViteDevServer } from 'vite';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const ROOT = join(import.meta.dirname, '../..');
export const ARTIFACTS = join(import.meta.dirname, 'artifacts');

export function haveChromium(): boolean {
  return existsSync(CHROMIUM);
}

/** A headless Chromium with a fresh profile; WebGPU (SwiftShader without a GPU) unless `webgpu` is false. */
export async function launch(webgpu = true): Promise<BrowserContext> {
  const profile = mkdtempSync(join(tmpdir(), 'pvc-chromium-'));
  const args = ['--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--no-default-browser-check'];
  if (process.getuid?.() === 0) args.push('--no-sandbox');
  if (webgpu) args.push('--enable-unsafe-webgpu');
  return chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args, viewport: { width: 1000, height: 1200 } });
}

export async function startPage(): Promise<{ url: string; close: () => Promise<void> }> {
  const vite: ViteDevServer = await createVite({ configFile: join(ROOT, 'web/vite.config.ts'), logLevel: 'warn', server: { host: '127.0.0.1', port: 0 } });
  await vite.listen();
  return { url: vite.resolvedUrls!.local[0], close: () => vite.close() };
}

export interface FakeHub {
  endpoint: string;
  repo: string;
  /** request paths seen, in order */
  seen: string[];
  /** the download URL of one of the files */
  fileUrl(name: string): string;
  close(): Promise<void>;
}

export interface FakeHubFaults {
  /** the first full GET of this file sends `at` bytes of it, then the connection is cut */
  cutOnce?: { file: string; at: number };
  /** this file is served with one byte changed (its listed hash stays the true one) */
  corrupt?: string;
}

/** Serves the files of `dir` as repo `repo` at one commit, as the hub does (LFS for *.safetensors). */
export async function fakeHub(dir: string, repo = 'test-org/tiny-pvc', faults: FakeHubFaults = {}): Promise<FakeHub> {
  let cut = faults.cutOnce;
  const commit = createHash('sha1').update(dir).digest('hex');
  const files = readdirSync(dir).filter((f) => statSync(join(dir, f)).isFile());
  const tree = files.map((f) => {
    const bytes = readFileSync(join(dir, f));
    if (f.endsWith('.safetensors')) return { type: 'file', path: f, size: 134, oid: 'pointer', lfs: { oid: createHash('sha256').update(bytes).digest('hex'), size: bytes.length } };
    return { type: 'file', path: f, size: bytes.length, oid: createHash('sha1').update(`blob ${bytes.length}\0`).update(bytes).digest('hex') };
  });
  const seen: string[] = [];
  const server: Server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url!, 'http://x').pathname);
    seen.push(`${req.method} ${path}${req.headers.range ? ` ${req.headers.range}` : ''}`);
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.setHeader('Access-Control-Allow-Headers', 'Range, Authorization');
    res.setHeader('Access-Control-Expose-Headers', 'Content-Length, Content-Range, Link');
    if (req.method === 'OPTIONS') return res.writeHead(204).end();
    const json = (v: unknown) => res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(v));
    if (path === `/api/models/${repo}/revision/main`) return json({ id: repo, sha: commit, siblings: files.map((rfilename) => ({ rfilename })) });
    if (path === `/api/models/${repo}/tree/${commit}`) return json(tree);
    const m = new RegExp(`^/${repo}/resolve/${commit}/(.+)$`).exec(path);
    if (!m || !files.includes(m[1])) return res.writeHead(404).end('not found');
    const bytes = readFileSync(join(dir, m[1]));
    if (m[1] === faults.corrupt) bytes[bytes.length >> 1] ^= 0x55;
    if (cut && m[1] === cut.file && !req.headers.range && req.method === 'GET') {
      const at = cut.at;
      cut = undefined;
      res.writeHead(200, { 'Content-Length': bytes.length });
      res.write(bytes.subarray(0, at), () => setTimeout(() => res.destroy(), 200));
      return;
    }
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (range) {
      const start = Number(range[1]);
      const end = range[2] ? Number(range[2]) : bytes.length - 1;
      return res.writeHead(206, { 'Content-Range': `bytes ${start}-${end}/${bytes.length}`, 'Content-Length': end - start + 1 }).end(bytes.subarray(start, end + 1));
    }
    res.writeHead(200, { 'Content-Length': bytes.length }).end(req.method === 'HEAD' ? undefined : bytes);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const endpoint = `http://127.0.0.1:${port}`;
  return { endpoint, repo, seen, fileUrl: (name) => `${endpoint}/${repo}/resolve/${commit}/${name}`, close: () => new Promise((r) => server.close(() => r())) };
}
