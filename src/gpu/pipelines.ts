// WGSL variants and the pipeline cache.
//
// Kernel files are plain WGSL plus three preprocessor forms, so that one file serves every
// variant of an op family:
//   #if NAME / #if !NAME / #elif NAME / #else / #endif   on their own lines (nestable)
//   {{NAME}}                                             replaced by the define's value
//   #include FILE                                        kernels/FILE.wgsl, preprocessed with the same
//                                                        defines (helpers shared by several kernels)
// A define is true when it is present and not false/0. Pipelines are cached by
// kernel name + sorted defines + entry point, and compiled lazily on first use.

export type Defines = Record<string, string | number | boolean>;

export function preprocess(source: string, defines: Defines, name = 'kernel', include: (file: string) => string | undefined = () => undefined): string {
  const isTrue = (raw: string): boolean => {
    const cond = raw.trim();
    const neg = cond.startsWith('!');
    const key = neg ? cond.slice(1).trim() : cond.trim();
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw new Error(`${name}.wgsl: bad #if condition '${cond}'`);
    const v = defines[key];
    const t = v !== undefined && v !== false && v !== 0 && v !== '0';
    return neg ? !t : t;
  };
  // stack of [parentActive, thisBranchActive, anyBranchTaken]
  const stack: [boolean, boolean, boolean][] = [];
  const active = () => (stack.length === 0 ? true : stack[stack.length - 1][0] && stack[stack.length - 1][1]);
  const out: string[] = [];
  const lines = source.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const inc = /^\s*#include\s+([A-Za-z0-9_]+)\s*$/.exec(line);
    if (inc) {
      if (!active()) continue;
      const src = include(inc[1]);
      if (src === undefined) throw new Error(`${name}.wgsl:${i + 1}: #include ${inc[1]}: no kernels/${inc[1]}.wgsl`);
      out.push(preprocess(src, defines, inc[1], include));
      continue;
    }
    const m = /^\s*#(if|elif|else|endif)\b(.*)$/.exec(line);
    if (!m) {
      out.push(active() ? line : '');
      continue;
    }
    const [, kw, rest] = m;
    if (kw === 'if') {
      const parent = active();
      const t = isTrue(rest);
      stack.push([parent, t, t]);
    } else {
      const top = stack[stack.length - 1];
      if (!top) throw new Error(`${name}.wgsl:${i + 1}: #${kw} without #if`);
      if (kw === 'elif') {
        const t = !top[2] && isTrue(rest);
        top[1] = t;
        top[2] = top[2] || t;
      } else if (kw === 'else') {
        top[1] = !top[2];
        top[2] = true;
      } else stack.pop();
    }
    out.push('');
  }
  if (stack.length) throw new Error(`${name}.wgsl: unterminated #if`);
  return out.join('\n').replace(/\{\{([A-Za-z_][A-Za-z0-9_]*)\}\}/g, (_, key: string) => {
    const v = defines[key];
    if (v === undefined) throw new Error(`${name}.wgsl: {{${key}}} has no define`);
    return String(v);
  });
}

export function variantKey(name: string, defines: Defines, entry: string): string {
  const keys = Object.keys(defines).sort();
  return `${name}:${entry}:${keys.map((k) => `${k}=${defines[k]}`).join(',')}`;
}

export class PipelineCache {
  private cache = new Map<string, GPUComputePipeline>();
  constructor(
    private readonly device: GPUDevice,
    private readonly sources: Map<string, string>,
    /** enables every shader gets, derived from device features (e.g. 'enable f16;') */
    private readonly prelude: (defines: Defines) => string,
  ) {}

  get size(): number {
    return this.cache.size;
  }

  get(name: string, defines: Defines = {}, entry = 'main'): GPUComputePipeline {
    const key = variantKey(name, defines, entry);
    let p = this.cache.get(key);
    if (!p) {
      const src = this.sources.get(name);
      if (src === undefined) throw new Error(`unknown kernel '${name}' (no kernels/${name}.wgsl)`);
      const code = this.prelude(defines) + preprocess(src, defines, name, (file) => this.sources.get(file));
      const module = this.device.createShaderModule({ code, label: key });
      p = this.device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: entry }, label: key });
      this.cache.set(key, p);
    }
    return p;
  }
}
