// InternVL pixel shuffle (kernels/pixel_shuffle.wgsl).

import type { Recorder } from '../gpu/recorder.js';
import type { Tensor } from '../gpu/tensor.js';
import { expectDtype, fmt, grid1d } from './common.js';

export interface PixelShuffleOptions {
  /** downsample_ratio: 0.5 (2x2 blocks) or 0.25 (4x4 blocks) */
  ratio: number;
  /** ps_version: v2 orders output tokens row-major over blocks, v1 column-major */
  version: 'v1' | 'v2';
}

/**
 * x [F, 1+P, C] (row 0, the CLS token, is dropped) or [F, P, C], P = S*S patch tokens in row-major
 * grid order -> [F, (S/k)^2, C*k*k], k = 1/ratio. The CLS row is detected from the shape: 1+P is
 * never a square when P is.
 */
export function pixelShuffle(rec: Recorder, x: Tensor, o: PixelShuffleOptions): Tensor {
  expectDtype('pixelShuffle', 'x', x, 'f32');
  if (x.shape.length !== 3) throw new Error(`pixelShuffle: x has shape ${fmt(x.shape)}; expected [frames, tokens, channels]`);
  if (o.ratio !== 0.5 && o.ratio !== 0.25) throw new Error(`pixelShuffle: ratio ${o.ratio} is not 0.5 or 0.25`);
  if (o.version !== 'v1' && o.version !== 'v2') throw new Error(`pixelShuffle: version '${String(o.version)}' is not v1 or v2`);
  const [frames, tIn, c] = x.shape;
  const k = Math.round(1 / o.ratio);
  const isSquare = (n: number) => Number.isInteger(Math.sqrt(n));
  const skip = isSquare(tIn) ? 0 : isSquare(tIn - 1) ? 1 : -1;
  if (skip < 0) throw new Error(`pixelShuffle: ${tIn} tokens per frame is neither S*S nor 1+S*S`);
  const s = Math.sqrt(tIn - skip);
  if (s % k !== 0) throw new Error(`pixelShuffle: grid side ${s} is not a multiple of ${k} (ratio ${o.ratio})`);
  const tOut = (s / k) ** 2;
  const out = rec.gpu.empty([frames, tOut, c * k * k], 'f32', 'pixelShuffle');
  const n = out.numel;
  rec.dispatch('pixel_shuffle', {}, [rec.uniform([n, c, s, k, tIn, skip, o.version === 'v1' ? 1 : 0]), x, out], grid1d(Math.ceil(n / 256)), 'pixelShuffle');
  return out;
}
