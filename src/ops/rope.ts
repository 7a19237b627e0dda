// Rotary position embedding (kernels/rope.wgsl), NeoX rotate_half style, in place.

import type { Recorder, UniformField } from '../gpu/recorder.js';
import type { Tensor } from '../gpu/tensor.js';
import { expectDtype, fmt, grid1d } from './common.js';

/** Which heads of x [rows, rowStride] to rotate: head j < rotatedPerGroup of group g starts at column g*groupStride + j*headDim. */
export interface RopeView {
  headDim: number;
  groups: number;
  rotatedPerGroup: number;
  groupStride: number;
}

/** Positions and frequencies: row r has position positionOffset + r; inv_freq[i] = base^(-2i/headDim). */
export interface RopePositions {
  positionOffset: number;
  /** rope_theta (InternLM2: 1e6) */
  theta: number;
  /** Dynamic NTK (HF InternLM2 "dynamic" rope_scaling): both set to enable. */
  maxPositionEmbeddings?: number;
  scalingFactor?: number;
  /** sequence length the scaling sees (HF: the key length); default positionOffset + rows */
  seqLen?: number;
}

/** The q and k heads of InternLM2's fused wqkv output: per kv head g, [q_{rep*g} .. q_{rep*g+rep-1}, k_g, v_g]. */
export function qkvRopeView(nHeads: number, nKvHeads: number, headDim: number): RopeView {
  if (nHeads % nKvHeads !== 0) throw new Error(`rope: ${nHeads} heads are not a multiple of ${nKvHeads} kv heads`);
  const rep = nHeads / nKvHeads;
  return { headDim, groups: nKvHeads, rotatedPerGroup: rep + 1, groupStride: (rep + 2) * headDim };
}

/** Every head of a plain [rows, nHeads*headDim] tensor (a separate q or k). */
export function headsRopeView(nHeads: number, headDim: number): RopeView {
  return { headDim, groups: nHeads, rotatedPerGroup: 1, groupStride: headDim };
}

/** The rope base after dynamic NTK scaling: theta * ((factor*L/maxPos) - (factor-1))^(d/(d-2)) when L > maxPos. */
export function ropeBase(theta: number, headDim: number, seqLen: number, maxPos?: number, factor?: number): number {
  if (maxPos === undefined || factor === undefined || seqLen <= maxPos) return theta;
  return theta * ((factor * seqLen) / maxPos - (factor - 1)) ** (headDim / (headDim - 2));
}

const MAX_HALF = 128;

/** Rotate the viewed heads of x [rows, rowStride] (f32) in place. */
export function rope(rec: Recorder, x: Tensor, view: RopeView, pos: RopePositions): void {
  expectDtype('rope', 'x', x, 'f32');
  if (x.shape.length !== 2) throw new Error(`rope: x has shape ${fmt(x.shape)}; expected [rows, columns]`);
  const [rows, rowStride] = x.shape;
  const { headDim: d, groups, rotatedPerGroup, groupStride } = view;
  if (!Number.isInteger(d) || d < 2 || d % 2 !== 0 || d / 2 > MAX_HALF) throw new Error(`rope: headDim ${d} must be even and at most ${2 * MAX_HALF}`);
  if (rotatedPerGroup * d > groupStride || groups * groupStride > rowStride) {
    throw new Error(`rope: ${groups} groups of ${rotatedPerGroup} heads of ${d} (group stride ${groupStride}) do not fit rows of ${rowStride} columns`);
  }
  if (!Number.isInteger(pos.positionOffset) || pos.positionOffset < 0 || pos.positionOffset + rows > 2 ** 32) throw new Error(`rope: bad positionOffset ${pos.positionOffset}`);
  if ((pos.maxPositionEmbeddings === undefined) !== (pos.scalingFactor === undefined)) throw new Error('rope: dynamic NTK needs both maxPositionEmbeddings and scalingFactor');
  const base = ropeBase(pos.theta, d, pos.seqLen ?? pos.positionOffset + rows, pos.maxPositionEmbeddings, pos.scalingFactor);
  const half = d / 2;
  // turns per position, inv_freq / 2pi, as a 64-bit binary fraction (hi word, lo word), from float64
  const freq: UniformField[] = [];
  for (let i = 0; i < MAX_HALF; i++) {
    const q = i < half ? (base ** (-(2 * i) / d) / (2 * Math.PI)) * 2 ** 32 : 0;
    const hi = Math.floor(q);
    freq.push(hi, Math.floor((q - hi) * 2 ** 32));
  }
  const params = rec.uniform([rows, rowStride, half, rotatedPerGroup, groups, groupStride, pos.positionOffset, 0, ...freq]);
  rec.dispatch('rope', {}, [params, x], grid1d(Math.ceil((rows * groups * rotatedPerGroup * half) / 256)), 'rope');
}
