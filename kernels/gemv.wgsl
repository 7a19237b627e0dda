// GEMV for decode (M = 1..8 rows): out[m, n0 + n] = epilogue(sum_k x[m, k] * w[n, k]), f32
// accumulation, for one row-part w = rows [n0, n0 + nPart) of a PyTorch Linear weight [N, K].
// Bandwidth-bound: every weight is read once for all ROWS rows.
//
// Weights, part layout and the packed-element rule are those of matmul.wgsl (W_F32 / W_BF16 / W_F16).
// Epilogue, in this order: + bias[n] (BIAS), * scale[n] (SCALE), + residual[m, n] (RESIDUAL, or
// RESIDUAL_INPLACE: the value already in out). GELU is matmul.wgsl's; the wrapper sends it there.
// ROWS (1, 2, 4 or 8) rows are computed; rows >= M read clamped addresses and are not stored.
//
// Variants:
//   default  software (lavapipe): no workgroup memory. 64 lanes, each owning one output column and
//            streaming its weight row with wide loads. VEC (K % 8 == 0) reads 8 weights per
//            vec4<u32> (or two vec4<f32>); with SUBGROUPS, K runs in steps of 32 and the 32
//            activations of a row are loaded once per subgroup and spread with subgroupBroadcast:
//            by lanes 0..3, 8 each (4 lanes always exist: WebGPU's minimum subgroup size), or with
//            X8 (subgroups of at least 8 lanes) by lanes 0..7, 4 each, which halves the per-lane
//            activation loads. Without VEC, one value per load (any K).
//   SPLITK   hardware: a workgroup of 64 invocations computes 4 columns; invocation t sums k = t,
//            t + 64, ...; partial sums meet in workgroup memory (with SUBGROUPS, subgroupAdd first and
//            one slot per subgroup, claimed with an atomic so no subgroup layout is assumed).
//
// Bindings (group 0):
//   0 params    uniform { M, N, K, n0, nPart }    N: output row stride; n0: first output column
//   1 x         storage read  f32 [M, K]          array<vec4<f32>> with VEC, else array<f32>
//   2 w         storage read  [nPart, K]          array<vec4<u32 or f32>> with VEC, else array<u32 or f32>
//   3 out       storage rw    f32 [M, N]
//   BIAS_B      storage read  f32 [N]             (BIAS; binding numbers come from the wrapper)
//   SCALE_B     storage read  f32 [N]             (SCALE)
//   RESIDUAL_B  storage read  f32 [M, N]          (RESIDUAL)
// Dispatch: software (ceil(nPart / 64), 1); SPLITK (ceil(nPart / 4), 1).

struct Params { M: u32, N: u32, K: u32, n0: u32, nPart: u32 }

const ROWS = {{ROWS}}u;

@group(0) @binding(0) var<uniform> params: Params;
#if VEC
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
#if W_F32
@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;
#else
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;
#endif
#else
@group(0) @binding(1) var<storage, read> x: array<f32>;
#if W_F32
@group(0) @binding(2) var<storage, read> w: array<f32>;
#else
@group(0) @binding(2) var<storage, read> w: array<u32>;
#endif
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

fn widen2(q: u32) -> vec2<f32> {
#if W_F16
  return unpack2x16float(q);
#else
  return vec2<f32>(bitcast<f32>(q << 16u), bitcast<f32>(q & 0xffff0000u));
#endif
}

#if VEC
// Weights e .. e + 7 of the part (e % 8 == 0).
fn w8(e: u32) -> array<vec4<f32>, 2> {
#if W_F32
  return array<vec4<f32>, 2>(w[e / 4u], w[e / 4u + 1u]);
#else
  let q = w[e / 8u];
  return array<vec4<f32>, 2>(vec4<f32>(widen2(q.x), widen2(q.y)), vec4<f32>(widen2(q.z), widen2(q.w)));
#endif
}
#else
fn w1(e: u32) -> f32 {
#if W_F32
  return w[e];
#else
  return widen2(w[e >> 1u])[e & 1u];
#endif
}
#endif

fn store(m: u32, nl: u32, acc: f32) {
  let n = params.n0 + nl;
  let i = m * params.N + n;
  var v = acc;
#if BIAS
  v += bias[n];
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
  var e: array<u32, 4>;
  for (var c = 0u; c < 4u; c++) { e[c] = min(c0 + c, params.nPart - 1u) * K; }
  var xr: array<u32, ROWS>;
  for (var r = 0u; r < ROWS; r++) { xr[r] = min(r, params.M - 1u) * K; }
  var acc: array<vec4<f32>, ROWS>;
  for (var k = t; k < K; k += 64u) {
    let q = vec4<f32>(w1(e[0] + k), w1(e[1] + k), w1(e[2] + k), w1(e[3] + k));
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
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lane: u32
#if SUBGROUPS
  , @builtin(subgroup_invocation_id) sl: u32
#endif
) {
  let K = params.K;
  let c = wg.x * 64u + lane;
  // clamped addresses keep tail lanes in uniform control flow (subgroupBroadcast needs it)
  let e = min(c, params.nPart - 1u) * K;
  var xr: array<u32, ROWS>;
  for (var r = 0u; r < ROWS; r++) { xr[r] = min(r, params.M - 1u) * K; }
  var acc: array<f32, ROWS>;
  var k = 0u;
#if VEC
#if SUBGROUPS
  // Weights are used as soon as they arrive (no private array that could spill). Activations: with
  // X8 each lane of a subgroup (at least 8 lanes) loads 4 of them, else lanes 0..3 load 8 each;
  // subgroupBroadcast from constant lanes spreads them.
  for (; k + 32u <= K; k += 32u) {
    let p0 = w8(e + k);
    let p1 = w8(e + k + 8u);
    let p2 = w8(e + k + 16u);
    let p3 = w8(e + k + 24u);
    for (var r = 0u; r < ROWS; r++) {
      let o = (xr[r] + k) / 4u;
#if X8
      let a = x[o + sl % 8u];
      let xs = array<vec4<f32>, 8>(subgroupBroadcast(a, 0u), subgroupBroadcast(a, 1u), subgroupBroadcast(a, 2u), subgroupBroadcast(a, 3u),
                                   subgroupBroadcast(a, 4u), subgroupBroadcast(a, 5u), subgroupBroadcast(a, 6u), subgroupBroadcast(a, 7u));
#else
      let a = x[o + 2u * (sl % 4u)];
      let b = x[o + 2u * (sl % 4u) + 1u];
      let xs = array<vec4<f32>, 8>(subgroupBroadcast(a, 0u), subgroupBroadcast(b, 0u), subgroupBroadcast(a, 1u), subgroupBroadcast(b, 1u),
                                   subgroupBroadcast(a, 2u), subgroupBroadcast(b, 2u), subgroupBroadcast(a, 3u), subgroupBroadcast(b, 3u));
#endif
      acc[r] += dot(xs[0], p0[0]) + dot(xs[1], p0[1]) + dot(xs[2], p1[0]) + dot(xs[3], p1[1])
              + dot(xs[4], p2[0]) + dot(xs[5], p2[1]) + dot(xs[6], p3[0]) + dot(xs[7], p3[1]);
    }
  }
#endif
  for (; k < K; k += 8u) {
    let p = w8(e + k);
    for (var r = 0u; r < ROWS; r++) {
      acc[r] += dot(x[(xr[r] + k) / 4u], p[0]) + dot(x[(xr[r] + k) / 4u + 1u], p[1]);
    }
  }
#else
  for (; k < K; k++) {
    let p = w1(e + k);
    for (var r = 0u; r < ROWS; r++) { acc[r] += x[xr[r] + k] * p; }
  }
#endif
  for (var r = 0u; r < ROWS; r++) {
    if (r < params.M && c < params.nPart) { store(r, c, acc[r]); }
  }
}
#endif
