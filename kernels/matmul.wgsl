// Matmul for many rows: out[m, n0 + n] = epilogue(sum_k x[m, k] * w[n, k]), f32 accumulation,
// for one row-part w = rows [n0, n0 + nPart) of a PyTorch Linear weight [N, K].
//
// Weights (one define):
//   W_F32  : f32.
//   W_BF16 : bf16 packed two per u32, element e of the part in word e >> 1, low half first;
//            widened with bitcast<f32>(w << 16u) / bitcast<f32>(w & 0xffff0000u).
//   W_F16  : IEEE half packed the same way, widened with unpack2x16float (no shader-f16 needed).
//   Q8 / Q4 (with WQ): group-quantized rows (kernels/quant.wgsl, src/weights/quantize.ts: codes,
//            then f16 scales of 32-value groups; rowUnits() 16-byte units per row, K % 32 == 0),
//            read as vec4<u32> units (VEC), texels (W_TEXELS) or words. GEMV loads a group's codes
//            at once and scales the group's dot product; GEMM and the hardware kernels scale each value.
// Each part starts on a word boundary (the allocator splits on whole words); element (n, k) of a
// 16-bit part is e = n * K + k, so with odd K packed rows start mid-word.
//   W_TEXELS (with W_BF16, W_F16, Q8 or Q4; software VEC kernels only): the part is a texel-layout weight
//            (src/gpu/tensor.ts): texel i of row n (weights 8i .. 8i + 7, or quantized unit i) is texel
//            (i * IL + n % IL, n / IL) of an rgba32uint storage texture, IL the part's interleave (a define).
//            Lavapipe loads it with one 16-byte load per lane instead of four bounds-checked scalar loads:
//            GEMM ~1.3x, GEMV ~1.7x faster than from a storage buffer.
//
// Epilogue, in this order: + bias[n] (BIAS), exact-erf GELU (GELU, kernels/gelu.wgsl), * scale[n] (SCALE),
// + residual[m, n] (RESIDUAL: its own tensor; RESIDUAL_INPLACE: the value already in out).
//
// Variants:
//   default  software (CPU-backed adapters such as lavapipe, where a non-uniform load is a scalar
//            loop over the SIMD lanes and workgroup memory is no cheaper): no workgroup memory, no
//            barriers. A workgroup of 64 lanes computes R rows x 256 columns; each lane owns 4
//            columns (adjacent ones, or laneColumn's for rows side by side) and R x 4 accumulators.
//            With SUBGROUPS each lane loads the activations of two rows, m0 + sl and m0 + R/2 + sl,
//            and they are spread with subgroupBroadcast from lanes 0..R/2-1: R = 16 with X8 (every
//            subgroup has at least 8 lanes), else 8. Per-lane loads are the cost on lavapipe (each
//            becomes a scalar loop over the SIMD lanes), so more rows per weight load wins even
//            though the 64 accumulators spill. Without SUBGROUPS R = 4 and every lane loads all R rows.
//   TILED    hardware: 64 x 64 output tile, 16 x 16 invocations of 4 x 4 outputs each, K in slices
//            of 16 staged in workgroup memory.
//   VEC      (software only) K % 8 == 0: x read as vec4<f32>, w as vec4<u32> (8 packed values) or
//            vec4<f32>, 8 values of K per step. Without VEC every value is loaded on its own.
//
// GEMV (decode, M = 1..8): the GEMV define selects a bandwidth-bound kernel in which every weight is
// read once for all ROWS rows (1, 2, 4 or 8, from the wrapper; rows >= M read clamped addresses and
// are not stored). GELU is not offered there (the wrapper sends GELU calls to the GEMM).
//   GEMV            software: no workgroup memory. 64 lanes, each owning COLS output columns (laneColumn)
//                   and streaming their weight rows with wide loads. VEC (K % 8 == 0) reads 8 weights per
//                   vec4<u32> (or two vec4<f32>); with SUBGROUPS, K runs in steps of 32: the 32 activations
//                   of a row are loaded once per subgroup and spread with subgroupBroadcast, by lanes 0..3,
//                   8 each (4 lanes always exist: WebGPU's minimum subgroup size), or with X8 (subgroups of
//                   at least 8 lanes) by lanes 0..7, 4 each, once for all COLS columns; every load of a step
//                   comes before its arithmetic (lavapipe's texel loads are calls that spill live registers),
//                   and a quantized column's 8 group scales are loaded once per 256 values.
//                   X_TEXELS (with VEC): the activations come as texels (kernels/matmul_xtexels.wgsl
//                   writes them): one vectorised load for all lanes instead of a scalar load per lane and word.
//                   Without VEC, one value per load (any K).
//                   SWAR (Q4 or Q8, VEC, SUBGROUPS; software): packed-multiply GEMV with int8 activations per
//                   group of 32 (kernels/matmul_xq8.wgsl with SWAR packs them in pairs, as texels, with the
//                   group's scale and offset): each u32 multiply of two weights' codes in 16-bit halves by
//                   x_b + x_a * 65536 puts the 2-term dot product of the pair in the high half. q4 (codes plus
//                   8, COLS 8) sums a group's 16 products before one extraction, ~2 ALU operations per weight;
//                   q8 (signed codes, COLS 4) extracts each product, ~2.75; the float decode takes 5 (lavapipe
//                   has no fused multiply-add and no int8 dot instruction). The overflow arguments are at
//                   swarDot and swarDot8. Each group is one integer dot product scaled by d_w d_x. With X8
//                   lanes 0..4 load the group's 5 activation texels and spread them with subgroupBroadcast,
//                   else lanes 0..3 (plus one load of the 5th by every lane).
//   GEMV + SPLITK   hardware: a workgroup of 64 invocations computes 4 columns; invocation t sums
//                   k = t, t + 64, ...; partial sums meet in workgroup memory (with SUBGROUPS,
//                   subgroupAdd first and one slot per subgroup, claimed with an atomic so no subgroup
//                   layout is assumed).
//
// Bindings (group 0):
//   0 params    uniform { M, N, K, n0, nPart }    N: output row stride; n0: first output column
//   1 x         storage read  f32 [M, K]          array<vec4<f32>> with VEC, else array<f32>;
//                                                 X_TEXELS: texture_storage_2d<rgba32float, read> [M][K / 4];
//                                                 DOT4: int8 x array<vec4<u32>>, SWAR: int8 pairs
//                                                 texture_storage_2d<rgba32uint, read> [M][5 K / 32]
//                                                 (both written by kernels/matmul_xq8.wgsl)
//   2 w         storage read  [nPart, K]          array<vec4<u32 or f32>> with VEC, else array<u32 or f32>;
//                                                 W_TEXELS: texture_storage_2d<rgba32uint, read> [ceil(nPart / IL)][K / 8 * IL]
//                                                 (Q8 / Q4: rowUnits() * IL wide)
//   3 out       storage rw    f32 [M, N]
//   BIAS_B      storage read  f32 [N]             (BIAS; binding numbers come from the wrapper)
//   SCALE_B     storage read  f32 [N]             (SCALE)
//   RESIDUAL_B  storage read  f32 [M, N]          (RESIDUAL)
// Dispatch: software (ceil(nPart / 256), ceil(M / R)), R = 16 / 8 / 4 as above; TILED (ceil(nPart / 64), ceil(M / 64));
//           GEMV (ceil(nPart / (64 COLS)), 1); GEMV + SPLITK (ceil(nPart / 4), 1).

struct Params { M: u32, N: u32, K: u32, n0: u32, nPart: u32 }

@group(0) @binding(0) var<uniform> params: Params;
#if DOT4
@group(0) @binding(1) var<storage, read> xq: array<vec4<u32>>;
#elif SWAR
@group(0) @binding(1) var xp: texture_storage_2d<rgba32uint, read>;
#elif X_TEXELS
@group(0) @binding(1) var xt: texture_storage_2d<rgba32float, read>;
#elif VEC
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
#else
@group(0) @binding(1) var<storage, read> x: array<f32>;
#endif
#if W_TEXELS
@group(0) @binding(2) var w: texture_storage_2d<rgba32uint, read>;
#elif VEC
#if W_F32
@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;
#else
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;
#endif
#elif W_F32
@group(0) @binding(2) var<storage, read> w: array<f32>;
#else
@group(0) @binding(2) var<storage, read> w: array<u32>;
#endif
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
#if BIAS
@group(0) @binding({{BIAS_B}}) var<storage, read> bias: array<f32>;
#endif
#if SCALE
@group(0) @binding({{SCALE_B}}) var<storage, read> scale: array<f32>;
#endif
#if RESIDUAL
@group(0) @binding({{RESIDUAL_B}}) var<storage, read> residual: array<f32>;
#endif

// Two packed 16-bit values as f32, low half first.
fn widen2(q: u32) -> vec2<f32> {
#if W_F16
  return unpack2x16float(q);
#else
  return vec2<f32>(bitcast<f32>(q << 16u), bitcast<f32>(q & 0xffff0000u));
#endif
}

#if W_TEXELS
// Where texel i of row n of the part lies (texel layout).
fn texel(n: u32, i: u32) -> vec2<u32> { return vec2<u32>(i * {{IL}}u + n % {{IL}}u, n / {{IL}}u); }
const SIDE_BY_SIDE = {{IL}}u > 1u;
#else
const SIDE_BY_SIDE = false;
#endif

// Column j < cols of a lane whose workgroup of 64 lanes owns columns [base, base + 64 cols): 8 lanes
// (a subgroup step on lavapipe) take 8 adjacent columns and a lane's columns are 8 apart, so a
// subgroup reads 8 cols adjacent rows, one contiguous run of texels where that many rows lie side by
// side (the interleave quantized weights get, src/ops/matmul.ts weightInterleave).
fn laneColumn(base: u32, lane: u32, j: u32, cols: u32) -> u32 { return base + (lane / 8u) * 8u * cols + 8u * j + lane % 8u; }

#if WQ
#include quant
// 16-byte unit i of row n of the part, and word j of it.
fn unitOf(n: u32, i: u32) -> vec4<u32> {
#if W_TEXELS
  return textureLoad(w, texel(n, i));
#elif VEC
  return w[n * rowUnits() + i];
#else
  let b = (n * rowUnits() + i) * 4u;
  return vec4<u32>(w[b], w[b + 1u], w[b + 2u], w[b + 3u]);
#endif
}
fn wordOf(n: u32, i: u32, j: u32) -> u32 {
#if VEC
  return unitOf(n, i)[j];
#else
  return w[(n * rowUnits() + i) * 4u + j];
#endif
}
fn groupScale(n: u32, g: u32) -> f32 { return scaleOf(wordOf(n, scaleUnit(g), scaleWord(g)), g); }
#endif

#if VEC
// Weights k .. k + 7 of row n of the part (k % 8 == 0).
fn w8(n: u32, k: u32) -> array<vec4<f32>, 2> {
#if W_F32
  let e = n * params.K + k;
  return array<vec4<f32>, 2>(w[e / 4u], w[e / 4u + 1u]);
#elif Q4
  let s = groupScale(n, k / 32u);
  let c = codes8(wordOf(n, k / 32u, (k % 32u) / 8u));
  return array<vec4<f32>, 2>(c[0] * s, c[1] * s);
#elif Q8
  let s = groupScale(n, k / 32u);
  let u = unitOf(n, k / 16u);
  let j = (k % 16u) / 4u;
  return array<vec4<f32>, 2>(codes4(u[j]) * s, codes4(u[j + 1u]) * s);
#else
#if W_TEXELS
  let q = textureLoad(w, texel(n, k / 8u));
#else
  let q = w[(n * params.K + k) / 8u];
#endif
  return array<vec4<f32>, 2>(vec4<f32>(widen2(q.x), widen2(q.y)), vec4<f32>(widen2(q.z), widen2(q.w)));
#endif
}

// The raw words of weights k .. k + 31 of row n (k % 32 == 0), for the GEMV: loaded first and
// decoded later (on lavapipe each texel load is a call that spills every live vector register).
#if Q4
const RAW_UNITS = 1u;
#elif Q8
const RAW_UNITS = 2u;
#elif W_F32
const RAW_UNITS = 8u;
#else
const RAW_UNITS = 4u;
#endif
alias Raw = array<vec4<u32>, RAW_UNITS>;
fn raw32(n: u32, k: u32) -> Raw {
#if WQ
  var u: Raw;
  for (var i = 0u; i < RAW_UNITS; i++) { u[i] = unitOf(n, k / 32u * RAW_UNITS + i); }
  return u;
#elif W_F32
  let e = (n * params.K + k) / 4u;
  var u: Raw;
  for (var i = 0u; i < RAW_UNITS; i++) { u[i] = bitcast<vec4<u32>>(w[e + i]); }
  return u;
#elif W_TEXELS
  return Raw(textureLoad(w, texel(n, k / 8u)), textureLoad(w, texel(n, k / 8u + 1u)),
             textureLoad(w, texel(n, k / 8u + 2u)), textureLoad(w, texel(n, k / 8u + 3u)));
#else
  let e = (n * params.K + k) / 8u;
  return Raw(w[e], w[e + 1u], w[e + 2u], w[e + 3u]);
#endif
}

// sum_i xs[i] · (weights of u), unscaled (a quantized group's scale multiplies the sum).
fn dot32(xs: array<vec4<f32>, 8>, u: Raw) -> f32 {
  var s = 0.0;
#if Q4
  for (var j = 0u; j < 4u; j++) {
    let c = codes8(u[0][j]);
    s += dot(xs[2u * j], c[0]) + dot(xs[2u * j + 1u], c[1]);
  }
#elif Q8
  for (var i = 0u; i < 8u; i++) { s += dot(xs[i], codes4(u[i / 4u][i % 4u])); }
#elif W_F32
  for (var i = 0u; i < 8u; i++) { s += dot(xs[i], bitcast<vec4<f32>>(u[i])); }
#else
  for (var i = 0u; i < 4u; i++) {
    let q = u[i];
    s += dot(xs[2u * i], vec4<f32>(widen2(q.x), widen2(q.y))) + dot(xs[2u * i + 1u], vec4<f32>(widen2(q.z), widen2(q.w)));
  }
#endif
  return s;
}
#endif

#if !VEC
// Weight (n, k) of the part.
fn w1(n: u32, k: u32) -> f32 {
#if W_F32
  return w[n * params.K + k];
#elif Q4
  return groupScale(n, k / 32u) * code1(wordOf(n, k / 32u, (k % 32u) / 8u), k % 8u);
#elif Q8
  return groupScale(n, k / 32u) * code1(wordOf(n, k / 16u, (k % 16u) / 4u), k % 4u);
#else
  let e = n * params.K + k;
  return widen2(w[e >> 1u])[e & 1u];
#endif
}
#endif

#if GELU
alias V = f32;
#include gelu
#endif

// Write one output element (nl: column within this part) through the epilogue.
fn store(m: u32, nl: u32, acc: f32) {
  let n = params.n0 + nl;
  let i = m * params.N + n;
  var v = acc;
#if BIAS
  v += bias[n];
#endif
#if GELU
  v = gelu(v);
#endif
#if SCALE
  v *= scale[n];
#endif
#if RESIDUAL
  v += residual[i];
#elif RESIDUAL_INPLACE
  v += out[i];
#endif
  out[i] = v;
}

#if GEMV
const ROWS = {{ROWS}}u;

#if SPLITK
var<workgroup> red: array<array<f32, ROWS * 4u>, 64>; // [slot][row * 4 + column]
#if SUBGROUPS
var<workgroup> slots: atomic<u32>;
#endif

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32
#if SUBGROUPS
  , @builtin(subgroup_invocation_id) sl: u32
#endif
) {
  let K = params.K;
  let c0 = wg.x * 4u;
  var cols: array<u32, 4>;
  for (var c = 0u; c < 4u; c++) { cols[c] = min(c0 + c, params.nPart - 1u); }
  var xr: array<u32, ROWS>;
  for (var r = 0u; r < ROWS; r++) { xr[r] = min(r, params.M - 1u) * K; }
  var acc: array<vec4<f32>, ROWS>;
  for (var k = t; k < K; k += 64u) {
    let q = vec4<f32>(w1(cols[0], k), w1(cols[1], k), w1(cols[2], k), w1(cols[3], k));
    for (var r = 0u; r < ROWS; r++) { acc[r] += x[xr[r] + k] * q; }
  }
#if SUBGROUPS
  var sums: array<vec4<f32>, ROWS>;
  for (var r = 0u; r < ROWS; r++) { sums[r] = subgroupAdd(acc[r]); }
  if (sl == 0u) {
    let s = atomicAdd(&slots, 1u);
    for (var r = 0u; r < ROWS; r++) {
      for (var c = 0u; c < 4u; c++) { red[s][r * 4u + c] = sums[r][c]; }
    }
  }
  workgroupBarrier();
  let used = atomicLoad(&slots);
#else
  for (var r = 0u; r < ROWS; r++) {
    for (var c = 0u; c < 4u; c++) { red[t][r * 4u + c] = acc[r][c]; }
  }
  workgroupBarrier();
  let used = 64u;
#endif
  if (t < ROWS * 4u) {
    var v = 0.0;
    for (var s = 0u; s < used; s++) { v += red[s][t]; }
    let m = t / 4u;
    let c = c0 + t % 4u;
    if (m < params.M && c < params.nPart) { store(m, c, v); }
  }
}

#else
const COLS = {{COLS}}u;

#if SWAR
// The packed int8 activations of group g of row m (kernels/matmul_xq8.wgsl with SWAR): texels
// 5g .. 5g + 3 (pairs), 5g + 4 (the sum's offset c, scale). With X8 lanes 0..4 load one
// each and spread them; else lanes 0..3 load the pairs and every lane the last texel.
#if X8
alias XShare = vec4<u32>;
fn xShare(m: u32, g: u32, sl: u32) -> XShare { return textureLoad(xp, vec2<u32>(5u * g + min(sl % 8u, 4u), m)); }
fn spread(a: XShare) -> array<vec4<u32>, 5> {
  return array<vec4<u32>, 5>(subgroupBroadcast(a, 0u), subgroupBroadcast(a, 1u), subgroupBroadcast(a, 2u), subgroupBroadcast(a, 3u), subgroupBroadcast(a, 4u));
}
#else
alias XShare = array<vec4<u32>, 2>;
fn xShare(m: u32, g: u32, sl: u32) -> XShare { return XShare(textureLoad(xp, vec2<u32>(5u * g + sl % 4u, m)), textureLoad(xp, vec2<u32>(5u * g + 4u, m))); }
fn spread(a: XShare) -> array<vec4<u32>, 5> {
  return array<vec4<u32>, 5>(subgroupBroadcast(a[0], 0u), subgroupBroadcast(a[0], 1u), subgroupBroadcast(a[0], 2u), subgroupBroadcast(a[0], 3u), a[1]);
}
#endif
// sum_i q[i] x[i] over a group of 32 (code unit u) with int8 activations packed in pairs (xs[t]: for
// word t of the group; c: -8 sum_i x[i] * 65536; kernels/matmul_xq8.wgsl with SWAR). ((word >> sh) &
// 0x000f000f) ^ 0x00080008 is n_a + n_b * 65536, n = q + 8 in [0, 15] (flipping a 4-bit two's complement
// code's sign bit adds 8), for the pairs (a, b) = (0, 2), (1, 3), (4, 6), (5, 7) of the word's values
// (sh = 0, 8, 4, 12); LLVM fuses the and and xor into one vpternlogd on AVX-512 (3-5 % faster here than
// one xor per word and 4 ands; on AVX2 it would be 4 more operations per word). Its u32 product
// with x_b + x_a * 65536 is n_a x_b + (n_a x_a + n_b x_b) * 65536 (mod 2^32). So the sum of c and the
// group's 16 products is L + D * 65536 (mod 2^32) with D = sum (n - 8) x = sum q x, |D| <= 32 * 8 * 127
// = 32512, and L = sum n_a x_b, |L| <= 16 * 15 * 127 = 30480: as i32 it is exact (|D * 65536 + L + 32768|
// < 2^31), and (it + 32768) >> 16 is D (0 <= L + 32768 < 65536).
fn swarDot(xs: array<vec4<u32>, 4>, u: vec4<u32>, c: u32) -> i32 {
  var s = vec4<u32>(c, 0u, 0u, 0u);
  for (var j = 0u; j < 4u; j++) {
    s += (((vec4<u32>(u[j]) >> vec4<u32>(0u, 8u, 4u, 12u)) & vec4<u32>(0x000f000fu)) ^ vec4<u32>(0x00080008u)) * xs[j];
  }
  return (bitcast<i32>(s.x + s.y + s.z + s.w) + 32768) >> 16u;
}
// q8: sum_i q[i] x[i] over a group of 32 (code units u0, u1; word i = values 4i .. 4i + 3 as int8) with
// the same activation pairs: texel t pairs words 2t and 2t + 1's values (0, 2), (1, 3). ((word >> sh) &
// 0x00ff00ff) ^ 0x00800080 is n_a + n_b * 65536 with n = q + 128; W = that - 0x00800080 = q_a + q_b * 65536
// (as an integer), and W X = L + D * 65536 (mod 2^32), D = q_a x_a + q_b x_b (|D| <= 2 * 127 * 127 = 32258),
// L = q_a x_b (|L| <= 16129): as i32, W X + 32768 is exact and >> 16 gives D. N X - cs, with
// cs = X * 0x00800080 - 32768 (once per group), is that W X + 32768: a subtraction instead of two.
// cs for a texel of activation pairs X.
fn swarOffset(x: vec4<u32>) -> vec4<u32> { return x * 0x00800080u - 32768u; }
fn swarDot8(xs: array<vec4<u32>, 4>, cs: array<vec4<u32>, 4>, u0: vec4<u32>, u1: vec4<u32>) -> i32 {
  var s = vec4<i32>(0);
  let words = array<vec4<u32>, 4>(u0.xxyy, u0.zzww, u1.xxyy, u1.zzww);
  for (var t = 0u; t < 4u; t++) {
    let nn = ((words[t] >> vec4<u32>(0u, 8u, 0u, 8u)) & vec4<u32>(0x00ff00ffu)) ^ vec4<u32>(0x00800080u);
    s += bitcast<vec4<i32>>(nn * xs[t] - cs[t]) >> vec4<u32>(16u);
  }
  return s.x + s.y + s.z + s.w;
}
#elif !DOT4
#if VEC
// Activations x[m, 4i .. 4i + 3].
fn xv(m: u32, i: u32) -> vec4<f32> {
#if X_TEXELS
  return textureLoad(xt, vec2<u32>(i, m));
#else
  return x[m * params.K / 4u + i];
#endif
}

#if SUBGROUPS
// 32 activations of row m from k are loaded once per subgroup and spread with subgroupBroadcast
// from constant lanes: with X8 (subgroups of at least 8 lanes) lanes 0..7 load 4 each, else lanes
// 0..3 (WebGPU's minimum subgroup size) load 8 each.
#if X8
alias XShare = vec4<f32>;
fn xShare(m: u32, k: u32, sl: u32) -> XShare { return xv(m, k / 4u + sl % 8u); }
fn spread(a: XShare) -> array<vec4<f32>, 8> {
  return array<vec4<f32>, 8>(subgroupBroadcast(a, 0u), subgroupBroadcast(a, 1u), subgroupBroadcast(a, 2u), subgroupBroadcast(a, 3u),
                             subgroupBroadcast(a, 4u), subgroupBroadcast(a, 5u), subgroupBroadcast(a, 6u), subgroupBroadcast(a, 7u));
}
#else
alias XShare = array<vec4<f32>, 2>;
fn xShare(m: u32, k: u32, sl: u32) -> XShare { return XShare(xv(m, k / 4u + 2u * (sl % 4u)), xv(m, k / 4u + 2u * (sl % 4u) + 1u)); }
fn spread(a: XShare) -> array<vec4<f32>, 8> {
  return array<vec4<f32>, 8>(subgroupBroadcast(a[0], 0u), subgroupBroadcast(a[1], 0u), subgroupBroadcast(a[0], 1u), subgroupBroadcast(a[1], 1u),
                             subgroupBroadcast(a[0], 2u), subgroupBroadcast(a[1], 2u), subgroupBroadcast(a[0], 3u), subgroupBroadcast(a[1], 3u));
}
#endif
#endif
#endif
#endif

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lane: u32
#if SUBGROUPS
  , @builtin(subgroup_invocation_id) sl: u32
#endif
) {
  let K = params.K;
  // the lane's columns; clamped addresses keep tail lanes in uniform control flow (subgroupBroadcast needs it)
  var col: array<u32, COLS>;
  var n: array<u32, COLS>;
  for (var j = 0u; j < COLS; j++) {
    col[j] = laneColumn(wg.x * 64u * COLS, lane, j, COLS);
    n[j] = min(col[j], params.nPart - 1u);
  }
  var xm: array<u32, ROWS>;
  for (var r = 0u; r < ROWS; r++) { xm[r] = min(r, params.M - 1u); }
  var acc: array<array<f32, COLS>, ROWS>;
  var k = 0u;
#if VEC
#if DOT4
  // int8 activations (kernels/matmul_xq8.wgsl): lanes 0 and 1 load a group's codes, lane 2 its scale
  var sw: array<vec4<u32>, COLS>;
  for (; k < K; k += 32u) {
    var a: array<vec4<u32>, ROWS>;
    for (var r = 0u; r < ROWS; r++) { a[r] = xq[(xm[r] * (K / 32u) + k / 32u) * 3u + min(sl % 4u, 2u)]; }
    var u: array<Raw, COLS>;
    for (var j = 0u; j < COLS; j++) { u[j] = raw32(n[j], k); }
    let g = k / 32u;
    if (g % 8u == 0u) {
      for (var j = 0u; j < COLS; j++) { sw[j] = unitOf(n[j], scaleUnit(g)); }
    }
    for (var r = 0u; r < ROWS; r++) {
      let xw = array<u32, 8>(subgroupBroadcast(a[r].x, 0u), subgroupBroadcast(a[r].y, 0u), subgroupBroadcast(a[r].z, 0u), subgroupBroadcast(a[r].w, 0u),
                             subgroupBroadcast(a[r].x, 1u), subgroupBroadcast(a[r].y, 1u), subgroupBroadcast(a[r].z, 1u), subgroupBroadcast(a[r].w, 1u));
      let dx = bitcast<f32>(subgroupBroadcast(a[r].x, 2u));
      for (var j = 0u; j < COLS; j++) {
#if Q4
        let t = f32(idot32x16(xw, u[j][0])) * 0.0625;
#else
        let t = f32(idot32(xw, u[j][0], u[j][1]));
#endif
        acc[r][j] += scaleOf(sw[j][scaleWord(g)], g) * dx * t;
      }
    }
  }
#elif SWAR
  const_assert COLS * RAW_UNITS == 8u; // u below lists 8 units: q4 one of each of 8 columns, q8 two of 4
  var sw: array<vec4<u32>, COLS>;
  for (; k < K; k += 32u) {
    let g = k / 32u;
    var a: array<XShare, ROWS>;
    for (var r = 0u; r < ROWS; r++) { a[r] = xShare(xm[r], g, sl); }
    // values, not a var array: lavapipe keeps a var array in memory, each store blended with the lane mask
#if Q8
    let u = array<vec4<u32>, 8>(unitOf(n[0], 2u * g), unitOf(n[0], 2u * g + 1u), unitOf(n[1], 2u * g), unitOf(n[1], 2u * g + 1u),
                                unitOf(n[2], 2u * g), unitOf(n[2], 2u * g + 1u), unitOf(n[3], 2u * g), unitOf(n[3], 2u * g + 1u));
#else
    let u = array<vec4<u32>, 8>(unitOf(n[0], g), unitOf(n[1], g), unitOf(n[2], g), unitOf(n[3], g), unitOf(n[4], g), unitOf(n[5], g), unitOf(n[6], g), unitOf(n[7], g));
#endif
    if (g % 8u == 0u) {
      for (var j = 0u; j < COLS; j++) { sw[j] = unitOf(n[j], scaleUnit(g)); }
    }
    for (var r = 0u; r < ROWS; r++) {
      let x5 = spread(a[r]);
      let xs = array<vec4<u32>, 4>(x5[0], x5[1], x5[2], x5[3]);
#if Q8
      let cs = array<vec4<u32>, 4>(swarOffset(x5[0]), swarOffset(x5[1]), swarOffset(x5[2]), swarOffset(x5[3]));
#endif
      let dx = bitcast<f32>(x5[4].y);
      for (var j = 0u; j < COLS; j++) {
#if Q8
        acc[r][j] += scaleOf(sw[j][scaleWord(g)], g) * dx * f32(swarDot8(xs, cs, u[2u * j], u[2u * j + 1u]));
#else
        acc[r][j] += scaleOf(sw[j][scaleWord(g)], g) * dx * f32(swarDot(xs, u[j], x5[4].x));
#endif
      }
    }
  }
#elif SUBGROUPS
#if WQ
  var sw: array<vec4<u32>, COLS>; // the 16-byte unit of 8 group scales of each column
#endif
  for (; k + 32u <= K; k += 32u) {
    // every load first (see raw32), then the arithmetic
    var a: array<XShare, ROWS>;
    for (var r = 0u; r < ROWS; r++) { a[r] = xShare(xm[r], k, sl); }
    var u: array<Raw, COLS>;
    for (var j = 0u; j < COLS; j++) { u[j] = raw32(n[j], k); }
    let g = k / 32u;
#if WQ
    if (g % 8u == 0u) {
      for (var j = 0u; j < COLS; j++) { sw[j] = unitOf(n[j], scaleUnit(g)); }
    }
#endif
    for (var r = 0u; r < ROWS; r++) {
      let xs = spread(a[r]);
      for (var j = 0u; j < COLS; j++) {
#if WQ
        acc[r][j] += scaleOf(sw[j][scaleWord(g)], g) * dot32(xs, u[j]);
#else
        acc[r][j] += dot32(xs, u[j]);
#endif
      }
    }
  }
#endif
#if !DOT4
#if !SWAR
  for (; k < K; k += 8u) {
    for (var j = 0u; j < COLS; j++) {
      let p = w8(n[j], k);
      for (var r = 0u; r < ROWS; r++) { acc[r][j] += dot(xv(xm[r], k / 4u), p[0]) + dot(xv(xm[r], k / 4u + 1u), p[1]); }
    }
  }
#endif
#endif
#else
  for (; k < K; k++) {
    for (var j = 0u; j < COLS; j++) {
      let p = w1(n[j], k);
      for (var r = 0u; r < ROWS; r++) { acc[r][j] += x[xm[r] * K + k] * p; }
    }
  }
#endif
  for (var r = 0u; r < ROWS; r++) {
    for (var j = 0u; j < COLS; j++) {
      if (r < params.M && col[j] < params.nPart) { store(r, col[j], acc[r][j]); }
    }
  }
}
#endif

#elif TILED
var<workgroup> xs: array<array<f32, 64>, 16>; // [k][row]
var<workgroup> ws: array<array<f32, 64>, 16>; // [k][column]

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let M = params.M;
  let K = params.K;
  let m0 = wg.y * 64u;
  let c0 = wg.x * 64u;
  var acc: array<vec4<f32>, 4>; // acc[i][j]: row m0 + lid.y + 16i, column c0 + lid.x + 16j
  for (var k0 = 0u; k0 < K; k0 += 16u) {
    // each invocation stages 4 values of each tile; out-of-range values are zero
    for (var i = 0u; i < 4u; i++) {
      let s = t + 256u * i;
      let r = s / 16u;
      let k = k0 + s % 16u;
      var xv = 0.0;
      if (m0 + r < M && k < K) { xv = x[(m0 + r) * K + k]; }
      xs[s % 16u][r] = xv;
      var wv = 0.0;
      if (c0 + r < params.nPart && k < K) { wv = w1(c0 + r, k); }
      ws[s % 16u][r] = wv;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < 16u; kk++) {
      let a = vec4<f32>(xs[kk][lid.y], xs[kk][lid.y + 16u], xs[kk][lid.y + 32u], xs[kk][lid.y + 48u]);
      let b = vec4<f32>(ws[kk][lid.x], ws[kk][lid.x + 16u], ws[kk][lid.x + 32u], ws[kk][lid.x + 48u]);
      acc[0] += a.x * b;
      acc[1] += a.y * b;
      acc[2] += a.z * b;
      acc[3] += a.w * b;
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let m = m0 + lid.y + 16u * i;
    for (var j = 0u; j < 4u; j++) {
      let c = c0 + lid.x + 16u * j;
      if (m < M && c < params.nPart) { store(m, c, acc[i][j]); }
    }
  }
}

#else
#if !SUBGROUPS
const R = 4u;
#elif X8
const R = 16u;
#else
const R = 8u;
#endif

#if SUBGROUPS
// Rows i0 .. i0 + R/2 - 1: row i0 + i takes lane i's activations, spread with subgroupBroadcast.
// VEC: (a, b) are 8 values of K and the columns of lo / hi the 4 columns' weights for them.
fn rowsVec(acc: ptr<function, array<vec4<f32>, R>>, i0: u32, a: vec4<f32>, b: vec4<f32>, lo: mat4x4<f32>, hi: mat4x4<f32>) {
  (*acc)[i0] += subgroupBroadcast(a, 0u) * lo + subgroupBroadcast(b, 0u) * hi;
  (*acc)[i0 + 1u] += subgroupBroadcast(a, 1u) * lo + subgroupBroadcast(b, 1u) * hi;
  (*acc)[i0 + 2u] += subgroupBroadcast(a, 2u) * lo + subgroupBroadcast(b, 2u) * hi;
  (*acc)[i0 + 3u] += subgroupBroadcast(a, 3u) * lo + subgroupBroadcast(b, 3u) * hi;
#if X8
  (*acc)[i0 + 4u] += subgroupBroadcast(a, 4u) * lo + subgroupBroadcast(b, 4u) * hi;
  (*acc)[i0 + 5u] += subgroupBroadcast(a, 5u) * lo + subgroupBroadcast(b, 5u) * hi;
  (*acc)[i0 + 6u] += subgroupBroadcast(a, 6u) * lo + subgroupBroadcast(b, 6u) * hi;
  (*acc)[i0 + 7u] += subgroupBroadcast(a, 7u) * lo + subgroupBroadcast(b, 7u) * hi;
#endif
}

// The same for one value of K: a is the activation, q the 4 columns' weights.
fn rowsOne(acc: ptr<function, array<vec4<f32>, R>>, i0: u32, a: f32, q: vec4<f32>) {
  (*acc)[i0] += subgroupBroadcast(a, 0u) * q;
  (*acc)[i0 + 1u] += subgroupBroadcast(a, 1u) * q;
  (*acc)[i0 + 2u] += subgroupBroadcast(a, 2u) * q;
  (*acc)[i0 + 3u] += subgroupBroadcast(a, 3u) * q;
#if X8
  (*acc)[i0 + 4u] += subgroupBroadcast(a, 4u) * q;
  (*acc)[i0 + 5u] += subgroupBroadcast(a, 5u) * q;
  (*acc)[i0 + 6u] += subgroupBroadcast(a, 6u) * q;
  (*acc)[i0 + 7u] += subgroupBroadcast(a, 7u) * q;
#endif
}
#endif

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lane: u32
#if SUBGROUPS
  , @builtin(subgroup_invocation_id) sl: u32
#endif
) {
  let M = params.M;
  let K = params.K;
  let m0 = wg.y * R;
  // the lane's 4 columns: with rows side by side as the GEMV's (laneColumn), else 4 adjacent ones
  // (rows one per texture row: 3-5 % faster for bf16 than laneColumn)
  let c0 = wg.x * 256u + lane * 4u;
  var col = vec4<u32>(c0, c0 + 1u, c0 + 2u, c0 + 3u);
  if (SIDE_BY_SIDE) {
    for (var c = 0u; c < 4u; c++) { col[c] = laneColumn(wg.x * 256u, lane, c, 4u); }
  }
  // Tail lanes and rows read clamped (valid) addresses; their results are never stored, and every
  // lane stays in the loop because subgroupBroadcast needs uniform control flow.
  let last = params.nPart - 1u;
  let n0 = min(col[0], last);
  let n1 = min(col[1], last);
  let n2 = min(col[2], last);
  let n3 = min(col[3], last);
  var acc: array<vec4<f32>, R>; // acc[r][c]: row m0 + r, column col[c]
#if SUBGROUPS
  // each lane loads the activations of two rows: m0 + sl and m0 + R/2 + sl
  let h = R / 2u;
  let xr0 = min(m0 + sl % h, M - 1u) * K;
  let xr1 = min(m0 + h + sl % h, M - 1u) * K;
#else
  var xr: array<u32, R>;
  for (var r = 0u; r < R; r++) { xr[r] = min(m0 + r, M - 1u) * K; }
#endif

#if VEC
  for (var k = 0u; k < K; k += 8u) {
    let q0 = w8(n0, k);
    let q1 = w8(n1, k);
    let q2 = w8(n2, k);
    let q3 = w8(n3, k);
    // columns of lo/hi are the 4 lanes' weight columns, so (x chunk) * lo is 4 dot products
    let lo = mat4x4<f32>(q0[0], q1[0], q2[0], q3[0]);
    let hi = mat4x4<f32>(q0[1], q1[1], q2[1], q3[1]);
#if SUBGROUPS
    rowsVec(&acc, 0u, x[(xr0 + k) / 4u], x[(xr0 + k) / 4u + 1u], lo, hi);
    rowsVec(&acc, h, x[(xr1 + k) / 4u], x[(xr1 + k) / 4u + 1u], lo, hi);
#else
    for (var r = 0u; r < R; r++) {
      acc[r] += x[(xr[r] + k) / 4u] * lo + x[(xr[r] + k) / 4u + 1u] * hi;
    }
#endif
  }
#else
  for (var k = 0u; k < K; k++) {
    let q = vec4<f32>(w1(n0, k), w1(n1, k), w1(n2, k), w1(n3, k));
#if SUBGROUPS
    rowsOne(&acc, 0u, x[xr0 + k], q);
    rowsOne(&acc, h, x[xr1 + k], q);
#else
    for (var r = 0u; r < R; r++) { acc[r] += x[xr[r] + k] * q; }
#endif
  }
#endif

  for (var r = 0u; r < R; r++) {
    let m = m0 + r;
    for (var c = 0u; c < 4u; c++) {
      if (m < M && col[c] < params.nPart) { store(m, col[c], acc[r][c]); }
    }
  }
}
#endif
