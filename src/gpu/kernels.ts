// Loads the WGSL sources in kernels/ (Node: from disk; browser: fetched beside the module).
// Every kernel file must be listed here (and the helpers kernels #include); a test checks the list
// against the folder.

export const KERNEL_NAMES = [
  'matmul',
  'matmul_xtexels',
  'matmul_xq8',
  'attention',
  'norm',
  'elementwise',
  'rope',
  'embedding',
  'reduce',
  'pixel_shuffle',
  'patch_embed',
  'kv_cache',
  'gelu',
  'workgroup_reduce',
  'quant',
] as const;

export type KernelName = (typeof KERNEL_NAMES)[number];

const isNode = typeof process !== 'undefined' && !!process.versions?.node;

export async function loadKernelSources(): Promise<Map<string, string>> {
  const sources = new Map<string, string>();
  const base = new URL('../../kernels/', import.meta.url);
  if (isNode) {
    const fs = await import('node:fs');
    const { fileURLToPath } = await import('node:url');
    const dir = fileURLToPath(base);
    for (const name of KERNEL_NAMES) {
      const file = `${dir}${name}.wgsl`;
      if (fs.existsSync(file)) sources.set(name, fs.readFileSync(file, 'utf8'));
    }
  } else {
    await Promise.all(
      KERNEL_NAMES.map(async (name) => {
        const res = await fetch(new URL(`${name}.wgsl`, base));
        if (res.ok) sources.set(name, await res.text());
      }),
    );
  }
  return sources;
}
