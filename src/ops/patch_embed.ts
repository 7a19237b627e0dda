// InternViT patch embedding (kernels/patch_embed.wgsl + the matmul kernel): conv with kernel =
// stride = p as im2col + matmul with the bias fused, then CLS token and position embedding.

import type { Recorder } from '../gpu/recorder.js';
import type { Tensor } from '../gpu/tensor.js';
import { expectDtype, fmt, grid1d } from './common.js';
import { matmul } from './matmul.js';

/**
 * pixels f32 [F, ch, H, W] (H, W multiples of p), weight [C, ch, p, p] (bf16, f16 or f32; p is
 * read from it), bias f32 [C], classEmbedding f32 with C elements (e.g. [1, 1, C]),
 * positionEmbedding (bf16 or f32) with (1+P)*C elements (e.g. [1, 1+P, C]), P = (H/p)*(W/p)
 * -> f32 [F, 1+P, C]: row 0 = class + pos[0]; row 1+i = conv(patch i, row-major) + bias + pos[1+i].
 */
export function patchEmbed(rec: Recorder, pixels: Tensor, weight: Tensor, bias: Tensor, classEmbedding: Tensor, positionEmbedding: Tensor): Tensor {
  const op = 'patchEmbed';
  expectDtype(op, 'pixels', pixels, 'f32');
  expectDtype(op, 'weight', weight, 'bf16', 'f16', 'f32');
  expectDtype(op, 'bias', bias, 'f32');
  expectDtype(op, 'classEmbedding', classEmbedding, 'f32');
  expectDtype(op, 'positionEmbedding', positionEmbedding, 'bf16', 'f32');
  if (pixels.shape.length !== 4) throw new Error(`${op}: pixels has shape ${fmt(pixels.shape)}; expected [frames, channels, height, width]`);
  const [frames, inCh, h, w] = pixels.shape;
  const [c, wCh, p, p2] = weight.shape;
  if (weight.shape.length !== 4 || wCh !== inCh || p !== p2) throw new Error(`${op}: weight has shape ${fmt(weight.shape)}; expected [C, ${inCh}, p, p]`);
  if (h % p !== 0 || w % p !== 0) throw new Error(`${op}: image ${h}x${w} is not a multiple of the patch size ${p}`);
  const tokens = 1 + (h / p) * (w / p);
  if (bias.numel !== c || bias.shape.length !== 1) throw new Error(`${op}: bias has shape ${fmt(bias.shape)}; expected [${c}]`);
  if (classEmbedding.numel !== c) throw new Error(`${op}: classEmbedding has shape ${fmt(classEmbedding.shape)}; expected ${c} elements`);
  if (positionEmbedding.numel !== tokens * c) {
    throw new Error(`${op}: positionEmbedding has shape ${fmt(positionEmbedding.shape)}; expected [${tokens}, ${c}] for a ${h}x${w} image (no interpolation)`);
  }
  const k = inCh * p * p;
  const rows = frames * tokens;
  const params = (n: number) => rec.uniform([n, k, tokens, inCh, p, h, w, c]);
  const cols = rec.gpu.empty([rows, k], 'f32', `${op} im2col`);
  rec.dispatch('patch_embed', { IM2COL: true }, [params(cols.numel), pixels, cols], grid1d(Math.ceil(cols.numel / 256)), `${op} im2col`);
  const out = matmul(rec, cols, weight.reshape([c, k]), { bias });
  cols.release();
  rec.dispatch('patch_embed', { FINISH: true, POS_BF16: positionEmbedding.dtype === 'bf16' }, [params(out.numel), classEmbedding, positionEmbedding, out], grid1d(Math.ceil(out.numel / 256)), `${op} cls+pos`);
  return out.reshape([frames, tokens, c]);
}
