// Reductions over the last dim of x [rows, v] (v up to the 92553-entry vocabulary), one
// workgroup per row: a strided loop per invocation, then a reduction across the workgroup.
//
// Variants:
//   ARGMAX    : out[row] = index of the largest x[row, :], u32; ties go to the lowest index and a
//               NaN counts as larger than any number (torch.argmax). Bit 31 is set when that
//               largest value is not finite (the row holds a NaN or +Inf): the non-finite flag,
//               read back with the token at no extra cost (indices stay below 2^31)
//   SOFTMAX   : out[row, :] = exp(x - max) / sum(exp(x - max)), f32
//   SUBGROUPS : (SOFTMAX) subgroupMax / subgroupAdd, then one invocation combines the subgroups, which
//               are taken to be contiguous runs of local_invocation_index; size read from the builtin.
//               ARGMAX always uses a shared-memory tree (its (value, index) pairs need the tie rule).
//
// Bindings (group 0):
//   0 params  uniform { rows: u32, v: u32 }
//   1 x       storage read  array<f32> [rows, v]
//   2 out     storage rw    ARGMAX: array<u32> [rows]; SOFTMAX: array<f32> [rows, v]
// Dispatch: workgroup 256; grid (min(rows, 65535), ceil(rows / 65535)); row = wg.x + wg.y * 65535.

const WG = 256u;

struct Params { rows: u32, v: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;

#if ARGMAX
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

var<workgroup> best_v: array<f32, WG>;
var<workgroup> best_i: array<u32, WG>;

// on the bits: WGSL lets compilers assume floats are never NaN or infinite
fn is_nan(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

fn is_finite(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u;
}

// whether (v, i) beats (bv, bi): larger, or equal and earlier; NaN beats numbers
fn beats(v: f32, i: u32, bv: f32, bi: u32) -> bool {
  let vn = is_nan(v);
  let bn = is_nan(bv);
  if (vn || bn) { return vn && (!bn || i < bi); }
  return v > bv || (v == bv && i < bi);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wg.x + wg.y * 65535u;
  if (row >= params.rows) { return; }
  let base = row * params.v;
  var bv = x[base + min(lid, params.v - 1u)];
  var bi = min(lid, params.v - 1u);
  // indices rise along the loop, so a strict win keeps the earliest of equal values
  for (var j = lid + WG; j < params.v; j += WG) {
    let v = x[base + j];
    if (beats(v, j, bv, bi)) { bv = v; bi = j; }
  }
  best_v[lid] = bv;
  best_i[lid] = bi;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride && beats(best_v[lid + stride], best_i[lid + stride], best_v[lid], best_i[lid])) {
      best_v[lid] = best_v[lid + stride];
      best_i[lid] = best_i[lid + stride];
    }
    workgroupBarrier();
  }
  if (lid == 0u) { out[row] = best_i[0] | select(0x80000000u, 0u, is_finite(best_v[0])); }
}
#endif

#if SOFTMAX
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

#include workgroup_reduce

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32,
#if SUBGROUPS
        @builtin(subgroup_invocation_id) sg_lane: u32, @builtin(subgroup_size) sg_size: u32
#endif
) {
#if !SUBGROUPS
  let sg_lane = 0u;
  let sg_size = 1u;
#endif
  let row = wg.x + wg.y * 65535u;
  if (row >= params.rows) { return; }
  let base = row * params.v;
  var m = bitcast<f32>(0xff7fffffu); // -FLT_MAX
  for (var j = lid; j < params.v; j += WG) { m = max(m, x[base + j]); }
  m = workgroup_reduce(m, true, lid, sg_lane, sg_size);
  var s = 0.0;
  for (var j = lid; j < params.v; j += WG) { s += exp(x[base + j] - m); }
  let inv = 1.0 / workgroup_reduce(s, false, lid, sg_lane, sg_size);
  for (var j = lid; j < params.v; j += WG) { out[base + j] = exp(x[base + j] - m) * inv; }
}
#endif
