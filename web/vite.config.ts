// The page (web/) and its Web Worker, bundled by Vite. The engine's modules are shared with Node;
// the few that touch Node-only APIs get browser builds here, so nothing in the bundle reaches
// node:fs, child_process, sharp or Dawn's bindings:
//   src/gpu/kernels.ts               -> src/browser/kernels.ts  (WGSL bundled as text)
//   src/preprocess/decode.ts         -> src/browser/decode.ts   (createImageBitmap)
//   src/preprocess/video.ts          -> src/browser/video.ts    (mp4box.js + WebCodecs)
//   src/weights/quant-cache-files.ts -> src/browser/quant-cache-files.ts (the quantized cache in the OPFS)
//   src/weights/quantize-threads.ts  -> src/browser/quantize-threads.ts  (nested Web Workers)
//   node:fs/promises                 -> src/browser/fs.ts       (byte sources mounted at virtual paths)
// (The browser builds live in their own folder: Vite's dependency scan caches a specifier's
// resolution per importing folder, so './decode.js' must not mean both files in one folder.)
//   node:path                        -> pathe
//   webgpu, sharp, node:child_process -> src/browser/unavailable.ts (never called in a browser)

import { fileURLToPath } from 'node:url';
import { defineConfig, type Plugin } from 'vite';

const src = (p: string) => fileURLToPath(new URL(`../src/${p}`, import.meta.url));

/** Swap a module for its browser build everywhere except inside that browser build itself. */
function browserBuilds(): Plugin {
  const swaps = new Map([
    [src('gpu/kernels.ts'), src('browser/kernels.ts')],
    [src('preprocess/decode.ts'), src('browser/decode.ts')],
    [src('preprocess/video.ts'), src('browser/video.ts')],
    [src('weights/quant-cache-files.ts'), src('browser/quant-cache-files.ts')],
    [src('weights/quantize-threads.ts'), src('browser/quantize-threads.ts')],
  ]);
  return {
    name: 'pvc-browser-builds',
    enforce: 'pre',
    async resolveId(id, importer, options) {
      if (!importer || !id.startsWith('.')) return null;
      const resolved = await this.resolve(id, importer, { ...options, skipSelf: true });
      const swap = resolved && swaps.get(resolved.id);
      return swap && swap !== importer ? swap : null;
    },
  };
}

const alias = {
  'node:fs/promises': src('browser/fs.ts'),
  'node:path': 'pathe',
  'node:child_process': src('browser/unavailable.ts'),
  webgpu: src('browser/unavailable.ts'),
  sharp: src('browser/unavailable.ts'),
};

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: './',
  resolve: { alias },
  plugins: [browserBuilds()],
  worker: { format: 'es', plugins: () => [browserBuilds()] },
  build: { outDir: '../dist/web', emptyOutDir: true, target: 'es2022' },
  server: { fs: { allow: ['..'] } },
  // The worker's dependencies are found late by the dev server's scan, which then reloads the page
  // mid-load: list them up front.
  optimizeDeps: { entries: ['index.html', 'worker.ts'], include: ['mp4box', '@noble/hashes/sha2.js', '@noble/hashes/legacy.js', '@noble/hashes/utils.js', 'gifuct-js', 'pathe', 'fast-png'] },
});
