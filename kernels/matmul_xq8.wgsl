// Activations for the int8 GEMVs (kernels/matmul.wgsl, DOT4 and SWAR): x f32 [M, K] (K % 32 == 0) to
// int8 codes in groups of 32 along K with a power-of-two scale (q8_1-like; docs/quantization.md):
//   s = e - 7 where |x|max of the group = f * 2^e, f in [0.5, 1) (frexp); d = 2^s;
//   q = clamp(round(x * 2^-s), -127, 127) (round: halves to even); a zero group has d = 0, q = 0.
// x * 2^-s is exact (for normal x) (a power of two), so every adapter and a float64 reference agree on q bit for bit.
// Output (DOT4), per row m and group g, three 16-byte units at unit 3 (m G + g), G = K / 32:
//   units 0, 1: words 0..7, word i = q[4i .. 4i + 3] as packed int8 (byte b = q[4i + b]);
//   unit 2: word 0 = the f32 bits of d, words 1..3 zero.
// Output (SWAR), texels (5g .. 5g + 4, m) of an rgba32uint storage texture [5 G][M]:
//   texel 5g + t, t < 4: the 8 values 8t .. 8t + 7 of the group as the pairs (a, b) = (0, 2), (1, 3),
//     (4, 6), (5, 7) (offset 8t), each the u32 q[b] + q[a] * 65536 (mod 2^32; q in two's complement);
//   texel 5g + 4: (-8 * sum of the group's q) * 65536 as u32 (mod 2^32; the q4 GEMV's offset), the f32
//     bits of d, 0, 0.
// Bindings: 0 uniform { M, K }; 1 x storage read array<vec4<f32>>; 2 out storage rw array<u32>
// (SWAR: texture_storage_2d<rgba32uint, write>).
// Dispatch: (ceil(K / 32 / 64), M).

struct Params { M: u32, K: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
#if SWAR
@group(0) @binding(2) var out: texture_storage_2d<rgba32uint, write>;
fn put(g: u32, m: u32, t: u32, v: vec4<u32>) { textureStore(out, vec2<u32>(5u * g + t, m), v); }
// The u32 x_b + x_a * 65536 (mod 2^32), multiplied by a weight word n_a + n_b * 65536 (SWAR).
fn pair(a: i32, b: i32) -> u32 { return bitcast<u32>(b) + (bitcast<u32>(a) << 16u); }
#else
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
#endif

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let G = params.K / 32u;
  let g = gid.x;
  let m = gid.y;
  if (g >= G) { return; }
  let base = (m * params.K + 32u * g) / 4u;
  var v: array<vec4<f32>, 8>;
  var amax = vec4<f32>(0.0);
  for (var i = 0u; i < 8u; i++) {
    v[i] = x[base + i];
    amax = max(amax, abs(v[i]));
  }
  let am = max(max(amax.x, amax.y), max(amax.z, amax.w));
  // multiplying by the exact power of two 1 / d (a division could be approximate on some GPUs)
  let e = frexp(am).exp;
  let d = select(0.0, ldexp(1.0, e - 7), am > 0.0);
  let inv = select(0.0, ldexp(1.0, 7 - e), am > 0.0);
  var q: array<vec4<i32>, 8>;
  for (var i = 0u; i < 8u; i++) { q[i] = vec4<i32>(clamp(round(v[i] * inv), vec4<f32>(-127.0), vec4<f32>(127.0))); }
#if SWAR
  var sum = vec4<i32>(0);
  for (var t = 0u; t < 4u; t++) {
    let lo = q[2u * t];
    let hi = q[2u * t + 1u];
    sum += lo + hi;
    put(g, m, t, vec4<u32>(pair(lo.x, lo.z), pair(lo.y, lo.w), pair(hi.x, hi.z), pair(hi.y, hi.w)));
  }
  put(g, m, 4u, vec4<u32>(bitcast<u32>(-8 * (sum.x + sum.y + sum.z + sum.w)) << 16u, bitcast<u32>(d), 0u, 0u));
#else
  let o = 12u * (m * G + g);
  for (var i = 0u; i < 8u; i++) { out[o + i] = pack4xI8(q[i]); }
  out[o + 8u] = bitcast<u32>(d);
  out[o + 9u] = 0u;
  out[o + 10u] = 0u;
  out[o + 11u] = 0u;
#endif
}
