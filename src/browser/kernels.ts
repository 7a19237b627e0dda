/// <reference types="vite/client" />
// Browser build of kernels.ts (selected by the Vite config): every kernels/*.wgsl file is bundled as
// text, so the page needs no extra requests and a static host serves nothing but the built files.

const files = import.meta.glob<string>('../../kernels/*.wgsl', { query: '?raw', import: 'default', eager: true });

export async function loadKernelSources(): Promise<Map<string, string>> {
  return new Map(Object.entries(files).map(([path, text]) => [path.slice(path.lastIndexOf('/') + 1, -'.wgsl'.length), text]));
}
