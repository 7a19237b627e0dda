// Rotary position embedding (NeoX rotate_half), in place on a strided view of heads.
//
// x is [rows, row_stride] f32. The heads to rotate: for group g < groups and head j < per_group,
// the head_dim = 2*half columns starting at g * group_stride + j * 2*half. (InternLM2 fused wqkv:
// groups = kv heads, group_stride = (rep+2)*d, per_group = rep+1 rotates the q heads and k, not v;
// a plain [rows, heads*d] tensor: groups = heads, group_stride = d, per_group = 1.)
// For i < half, position p = pos_offset + row and angle a = p * inv_freq[i]:
//   out[i]        = x[i] * cos a - x[i + half] * sin a
//   out[i + half] = x[i + half] * cos a + x[i] * sin a
//
// Accuracy: angles reach 32768 rad and more, where an f32 product p * inv_freq is off by ~2e-3 rad.
// Instead the host passes q_i = inv_freq[i] / 2pi (in turns per position) as a 64-bit fixed-point
// fraction (hi, lo words, from float64); the kernel forms frac(p * q_i) exactly in 32-bit fixed
// point with integer arithmetic, splits off the quadrant and evaluates sin/cos polynomials on
// [-pi/4, pi/4], so cos/sin are accurate to ~1e-7 for any position (no reliance on the
// implementation's sin/cos, which WGSL only bounds to 2^-11 absolute).
//
// Bindings (group 0):
//   0 params  uniform { rows, row_stride, half, per_group, groups, group_stride, pos_offset, pad: u32,
//                       freq: array<vec4<u32>, 64> }   freq[i/2] = (hi_i, lo_i, hi_i+1, lo_i+1), half <= 128
//   1 x       storage rw  array<f32> [rows, row_stride]
// Dispatch: one invocation per (row, head, i < half); workgroup 256;
//   grid (min(ceil(n/256), 65535), ceil(ceil(n/256)/65535)), n = rows * groups * per_group * half.

struct Params {
  rows: u32, row_stride: u32, half: u32, per_group: u32,
  groups: u32, group_stride: u32, pos_offset: u32, pad: u32,
  freq: array<vec4<u32>, 64>,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

// high 32 bits of the 64-bit product a * b
fn mul_hi(a: u32, b: u32) -> u32 {
  let a0 = a & 0xffffu;
  let a1 = a >> 16u;
  let b0 = b & 0xffffu;
  let b1 = b >> 16u;
  let p01 = a0 * b1;
  let p10 = a1 * b0;
  let mid = ((a0 * b0) >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
  return a1 * b1 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
}

// (cos, sin) of 2pi * t / 2^32
fn cos_sin_turns(t: u32) -> vec2<f32> {
  let quadrant = ((t + 0x20000000u) >> 30u) & 3u;
  let r = f32(bitcast<i32>(t - (quadrant << 30u))) * 1.4629180792671596e-9; // 2pi / 2^32; |r| <= pi/4
  let r2 = r * r;
  let s = r * (1.0 + r2 * (-1.0 / 6.0 + r2 * (1.0 / 120.0 + r2 * (-1.0 / 5040.0 + r2 * (1.0 / 362880.0)))));
  let c = 1.0 + r2 * (-0.5 + r2 * (1.0 / 24.0 + r2 * (-1.0 / 720.0 + r2 * (1.0 / 40320.0 + r2 * (-1.0 / 3628800.0)))));
  switch quadrant {
    case 0u: { return vec2(c, s); }
    case 1u: { return vec2(-s, c); }
    case 2u: { return vec2(-c, -s); }
    default: { return vec2(s, -c); }
  }
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * 256u;
  let heads = params.groups * params.per_group;
  if (idx >= params.rows * heads * params.half) { return; }
  let i = idx % params.half;
  let h = (idx / params.half) % heads;
  let row = idx / (params.half * heads);
  let col = (h / params.per_group) * params.group_stride + (h % params.per_group) * 2u * params.half + i;
  let base = row * params.row_stride + col;

  let f = params.freq[i / 2u];
  let q = select(f.xy, f.zw, (i & 1u) == 1u);
  let pos = params.pos_offset + row;
  let cs = cos_sin_turns(pos * q.x + mul_hi(pos, q.y)); // frac(pos * q) in 2^-32 turns (wrapping)

  let x1 = x[base];
  let x2 = x[base + params.half];
  x[base] = x1 * cs.x - x2 * cs.y;
  x[base + params.half] = x2 * cs.x + x1 * cs.y;
}
