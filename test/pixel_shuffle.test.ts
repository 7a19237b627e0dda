import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { pixelShuffle, type PixelShuffleOptions } from '../src/ops/pixel_shuffle.js';
import { freshSeed, randn, rng, testGpu } from './util.js';

const gpu = await testGpu();
afterAll(() => gpu.destroy());

/** CPU reference written from pvc-architecture.md section 5 (x: [F, skip + S*S, C]). */
function shuffleRef(x: Float32Array, f: number, tIn: number, c: number, o: PixelShuffleOptions): Float32Array {
  const skip = Number.isInteger(Math.sqrt(tIn)) ? 0 : 1;
  const s = Math.sqrt(tIn - skip);
  const k = 1 / o.ratio;
  const side = s / k;
  const out = new Float32Array(f * side * side * c * k * k);
  let w = 0;
  for (let fr = 0; fr < f; fr++)
    for (let tok = 0; tok < side * side; tok++) {
      const [bi, bj] = o.version === 'v2' ? [Math.floor(tok / side), tok % side] : [tok % side, Math.floor(tok / side)];
      for (let dr = 0; dr < k; dr++)
        for (let dc = 0; dc < k; dc++)
          for (let ch = 0; ch < c; ch++) out[w++] = x[(fr * tIn + skip + (k * bi + dr) * s + k * bj + dc) * c + ch];
    }
  return out;
}

/** InternVL's own pixel_shuffle + extract_feature reshapes, run by PyTorch on arange(F*(1+P)*C), for each option (one python run). */
function torchShuffle(f: number, p: number, c: number, options: PixelShuffleOptions[]): number[][] {
  const py = `
import json, torch
def pixel_shuffle(x, scale_factor, ps_version):
    n, w, h, c = x.size()
    x = x.view(n, w, int(h * scale_factor), int(c / scale_factor))
    x = x.permute(0, 2, 1, 3).contiguous()
    x = x.view(n, int(h * scale_factor), int(w * scale_factor), int(c / (scale_factor * scale_factor)))
    if ps_version != 'v1':
        x = x.permute(0, 2, 1, 3).contiguous()
    return x
F, P, C = ${f}, ${p}, ${c}
results = []
for ratio, version in ${JSON.stringify(options.map((o) => [o.ratio, o.version]))}:
    vit_embeds = torch.arange(F * (1 + P) * C, dtype=torch.float32).view(F, 1 + P, C)[:, 1:, :]
    h = w = int(P ** 0.5)
    vit_embeds = vit_embeds.reshape(F, h, w, -1)
    vit_embeds = pixel_shuffle(vit_embeds, ratio, version)
    vit_embeds = vit_embeds.reshape(F, -1, vit_embeds.shape[-1])
    results.append(vit_embeds.flatten().tolist())
print(json.dumps(results))
`;
  const r = spawnSync('/usr/bin/python3', ['-c', py], { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`python3 failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as number[][];
}

const OPTIONS: PixelShuffleOptions[] = [
  { ratio: 0.5, version: 'v2' },
  { ratio: 0.5, version: 'v1' },
  { ratio: 0.25, version: 'v2' },
  { ratio: 0.25, version: 'v1' },
];

describe('pixelShuffle', () => {
  const [f, p, c] = [2, 64, 3];
  const torchResults = torchShuffle(f, p, c, OPTIONS);

  it.each(OPTIONS.map((o, i) => ({ ...o, i })))('the CPU reference and the GPU match PyTorch (ratio $ratio, $version)', async ({ i, ...o }) => {
    const x = Float32Array.from({ length: f * (1 + p) * c }, (_, j) => j);
    const want = torchResults[i];
    expect(Array.from(shuffleRef(x, f, 1 + p, c, o))).toEqual(want);
    const t = await gpu.upload([f, 1 + p, c], 'f32', x);
    const got = await gpu.step((rec) => rec.read(pixelShuffle(rec, t, o)));
    expect(Array.from(got)).toEqual(want);
  });

  it.each(OPTIONS)('matches the reference on random data, with and without CLS (ratio $ratio, $version)', async (o) => {
    const seed = freshSeed();
    const [f, s, c] = [3, 24, 77];
    for (const skip of [0, 1]) {
      const tIn = skip + s * s;
      const x = randn(f * tIn * c, rng(seed));
      const t = await gpu.upload([f, tIn, c], 'f32', x);
      const out = await gpu.step((rec) => {
        const y = pixelShuffle(rec, t, o);
        expect(y.shape).toEqual([f, (s * o.ratio) ** 2, c / o.ratio ** 2]);
        return rec.read(y);
      });
      expect(Array.from(out), `seed ${seed}`).toEqual(Array.from(shuffleRef(x, f, tIn, c, o)));
    }
  });

  it('rejects bad shapes and options', async () => {
    const x = gpu.empty([1, 1 + 36, 4]);
    await expect(gpu.step((rec) => pixelShuffle(rec, x, { ratio: 0.25, version: 'v2' }))).rejects.toThrow(/grid side 6 is not a multiple of 4/);
    await expect(gpu.step((rec) => pixelShuffle(rec, x, { ratio: 0.3, version: 'v2' }))).rejects.toThrow(/ratio 0.3 is not 0.5 or 0.25/);
    const y = gpu.empty([1, 40, 4]);
    await expect(gpu.step((rec) => pixelShuffle(rec, y, { ratio: 0.5, version: 'v2' }))).rejects.toThrow(/40 tokens per frame is neither S\*S nor 1\+S\*S/);
    const z = gpu.empty([36, 4]);
    await expect(gpu.step((rec) => pixelShuffle(rec, z, { ratio: 0.5, version: 'v1' }))).rejects.toThrow(/expected \[frames, tokens, channels\]/);
  });
});
