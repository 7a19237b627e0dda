// The PVC conventions nobody outside the model hub can read, one named switch each
// (docs/pvc-conventions.md). The test/reference PyTorch model has the same switches and defaults.

export interface PvcSwitches {
  /** order of the three AdaLN chunks of each sub-layer group */
  adaln_chunk_order: 'shift_scale_gate' | 'scale_shift_gate';
  /** t_f for frame f of F: f; f / F; f / (F - 1) */
  timestamp: 'index' | 'relative' | 'relative_minus_one';
  /** which half of the 256-d sinusoid is cos */
  sinusoid_order: 'cos_sin' | 'sin_cos';
  /** frames a frame attends to in T-MHA */
  temporal_mask: 'causal' | 'causal_exclusive' | 'bidirectional';
  /** whether the CLS position takes part in T-MHA */
  temporal_cls: boolean;
  /** order of an image's repeated tile frames among the LLM's vision rows */
  image_frame_order: 'tile_major' | 'frame_major';
}

export const DEFAULT_SWITCHES: Readonly<PvcSwitches> = {
  adaln_chunk_order: 'shift_scale_gate',
  timestamp: 'index',
  sinusoid_order: 'cos_sin',
  temporal_mask: 'causal',
  temporal_cls: true,
  image_frame_order: 'tile_major',
};

const CHOICES: { [K in keyof PvcSwitches]: readonly PvcSwitches[K][] } = {
  adaln_chunk_order: ['shift_scale_gate', 'scale_shift_gate'],
  timestamp: ['index', 'relative', 'relative_minus_one'],
  sinusoid_order: ['cos_sin', 'sin_cos'],
  temporal_mask: ['causal', 'causal_exclusive', 'bidirectional'],
  temporal_cls: [true, false],
  image_frame_order: ['tile_major', 'frame_major'],
};

/** Validate a partial set of switches (e.g. from a dump's metadata or the CLI) over the defaults. */
export function resolveSwitches(given: Record<string, unknown> = {}): PvcSwitches {
  const out: Record<string, unknown> = { ...DEFAULT_SWITCHES };
  for (const [k, v] of Object.entries(given)) {
    const choices = (CHOICES as Record<string, readonly unknown[]>)[k];
    if (!choices) throw new Error(`unknown PVC switch '${k}' (known: ${Object.keys(CHOICES).join(', ')})`);
    if (!choices.includes(v)) throw new Error(`PVC switch ${k}: ${JSON.stringify(v)} is not one of ${choices.map((c) => JSON.stringify(c)).join(', ')}`);
    out[k] = v;
  }
  return out as unknown as PvcSwitches;
}

/** Timestamps t_f of a sequence of F frames under the `timestamp` switch. */
export function frameTimes(frames: number, mode: PvcSwitches['timestamp']): number[] {
  return Array.from({ length: frames }, (_, f) => (mode === 'index' ? f : mode === 'relative' ? f / frames : frames > 1 ? f / (frames - 1) : 0));
}

/** DiT-style 256-d sinusoidal embedding of each t (max period 10000), rows of `dim` floats. */
export function sinusoid(times: number[], dim: number, order: PvcSwitches['sinusoid_order']): Float32Array {
  const half = dim / 2;
  const out = new Float32Array(times.length * dim);
  times.forEach((t, r) => {
    for (let j = 0; j < half; j++) {
      const arg = t * Math.exp((-Math.log(10000) * j) / half);
      const [first, second] = order === 'cos_sin' ? [Math.cos(arg), Math.sin(arg)] : [Math.sin(arg), Math.cos(arg)];
      out[r * dim + j] = first;
      out[r * dim + half + j] = second;
    }
  });
  return out;
}

/** Chunk indices of (shift, scale, gate) for AdaLN group `group` (0: T-MHA when k = 9, then attn, mlp). */
export function adalnChunks(group: number, order: PvcSwitches['adaln_chunk_order']): { shift: number; scale: number; gate: number } {
  const base = 3 * group;
  return order === 'shift_scale_gate' ? { shift: base, scale: base + 1, gate: base + 2 } : { scale: base, shift: base + 1, gate: base + 2 };
}
