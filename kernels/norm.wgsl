// Row norms over the last dim of x [rows, c], f32 statistics, one workgroup per row.
//
// Variants:
//   LAYER     : out = (x - mean) * rsqrt(var + eps) * w + bias   (biased variance, two passes)
//   (default) : out = x * rsqrt(mean(x^2) + eps) * w             (RMSNorm)
//   WG        : workgroup size, a power of two (64 on CPU adapters, 256 on GPUs)
//   SUBGROUPS : subgroupAdd inside each subgroup, then one invocation adds the subgroup sums;
//               otherwise a shared-memory tree. The subgroup size is read from the builtin, and
//               the subgroups of this 1-D workgroup are taken to be contiguous runs of
//               local_invocation_index (what every implementation does).
//
// Bindings (group 0):
//   0 params  uniform { rows: u32, c: u32, eps: f32 }
//   1 x       storage read  array<f32> [rows, c]
//   2 w       storage read  array<f32> [c]
//   3 out     storage rw    array<f32> [rows, c]
//   4 bias    storage read  array<f32> [c]            (LAYER only)
// Dispatch: workgroup WG; grid (min(rows, 65535), ceil(rows / 65535)); row = wg.x + wg.y * 65535.

const WG = {{WG}}u;

struct Params { rows: u32, c: u32, eps: f32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
#if LAYER
@group(0) @binding(4) var<storage, read> bias: array<f32>;
#endif

#include workgroup_reduce

@compute @workgroup_size({{WG}})
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
  let c = params.c;
  let base = row * c;
  let inv_c = 1.0 / f32(c);
#if LAYER
  var s = 0.0;
  for (var j = lid; j < c; j += WG) { s += x[base + j]; }
  let mean = workgroup_reduce(s, false, lid, sg_lane, sg_size) * inv_c;
  var q = 0.0;
  for (var j = lid; j < c; j += WG) { let d = x[base + j] - mean; q += d * d; }
  let r = inverseSqrt(workgroup_reduce(q, false, lid, sg_lane, sg_size) * inv_c + params.eps);
  for (var j = lid; j < c; j += WG) { out[base + j] = (x[base + j] - mean) * r * w[j] + bias[j]; }
#else
  var q = 0.0;
  for (var j = lid; j < c; j += WG) { let v = x[base + j]; q += v * v; }
  let r = inverseSqrt(workgroup_reduce(q, false, lid, sg_lane, sg_size) * inv_c + params.eps);
  for (var j = lid; j < c; j += WG) { out[base + j] = x[base + j] * r * w[j]; }
#endif
}
