// Helpers shared by scripts/dump.ts and scripts/parity.ts.

import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Gpu } from '../gpu/device.js';
import { InternVL } from '../models/internvl.js';
import { resolveSwitches, type PvcSwitches } from '../models/switches.js';

/** `--switch name=value` arguments -> switches (validated; temporal_cls takes true/false). */
export function parseSwitchArgs(items: readonly string[]): Partial<PvcSwitches> {
  const out: Record<string, unknown> = {};
  for (const item of items) {
    const eq = item.indexOf('=');
    if (eq < 0) throw new Error(`--switch ${item}: expected name=value`);
    const [name, value] = [item.slice(0, eq), item.slice(eq + 1)];
    out[name] = name === 'temporal_cls' ? ({ true: true, false: false } as Record<string, boolean>)[value] ?? value : value;
  }
  resolveSwitches(out); // throws on unknown names and values
  return out as Partial<PvcSwitches>;
}

/** A .safetensors file, or every .safetensors file of a directory (sorted). */
export async function dumpFiles(path: string): Promise<string[]> {
  if (!(await stat(path)).isDirectory()) return [path];
  const files = (await readdir(path)).filter((f) => f.endsWith('.safetensors')).sort();
  if (!files.length) throw new Error(`${path}: no .safetensors dumps in this directory`);
  return files.map((f) => join(path, f));
}

/** Models by switch set: dumps of one directory usually share switches, so the checkpoint loads once. */
export class ModelCache {
  private readonly models = new Map<string, InternVL>();
  constructor(
    private readonly gpu: Gpu,
    private readonly dir: string,
  ) {}

  async get(switches: Partial<PvcSwitches>): Promise<InternVL> {
    const key = JSON.stringify(resolveSwitches(switches));
    let model = this.models.get(key);
    if (!model) {
      model = await InternVL.load(this.gpu, this.dir, { switches });
      this.models.set(key, model);
    }
    return model;
  }
}
