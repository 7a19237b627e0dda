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
//   default  software (lavapipe): no workgroup memory. 64 lanes, each owning COLS output columns and
//            streaming their weight rows with wide loads. VEC (K % 8 == 0) reads 8 weights per
//            vec4<u32> (or two vec4<f32>); with SUBGROUPS, K runs in steps of 32: lanes 0..3 each
//            load 8 activations of a row and subgroupBroadcast spreads them (4 lanes always exist:
//            WebGPU's minimum subgroup size). Without VEC, one value per load (any K).
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
// Dispatch: software (ceil(nPart / (64 * COLS)), 1); SPLITK (ceil(nPart / 4), 1).

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
const COLS = {{COLS}}u;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lane: u32
#if SUBGROUPS
  , @builtin(subgroup_invocation_id) sl: u32
#endif
) {
  let K = params.K;
  let c0 = (wg.x * 64u + lane) * COLS;
  // clamped addresses keep tail lanes in uniform control flow (subgroupBroadcast needs it)
  var e: array<u32, COLS>;
  for (var c = 0u; c < COLS; c++) { e[c] = min(c0 + c, params.nPart - 1u) * K; }
  var xr: array<u32, ROWS>;
  for (var r = 0u; r < ROWS; r++) { xr[r] = min(r, params.M - 1u) * K; }
  var acc: array<array<f32, COLS>, ROWS>;
  var k = 0u;
#if VEC
#if SUBGROUPS
  let j = 2u * (sl % 4u);
  for (; k + 32u <= K; k += 32u) {
    var q: array<array<vec4<f32>, 8>, COLS>;
    for (var c = 0u; c < COLS; c++) {
      for (var i = 0u; i < 4u; i++) {
        let p = w8(e[c] + k + 8u * i);
        q[c][2u * i] = p[0];
        q[c][2u * i + 1u] = p[1];
      }
    }
    for (var r = 0u; r < ROWS; r++) {
      let a = x[(xr[r] + k) / 4u + j];
      let b = x[(xr[r] + k) / 4u + j + 1u];
      let a0 = subgroupBroadcast(a, 0u);
      let b0 = subgroupBroadcast(b, 0u);
      let a1 = subgroupBroadcast(a, 1u);
      let b1 = subgroupBroadcast(b, 1u);
      let a2 = subgroupBroadcast(a, 2u);
      let b2 = subgroupBroadcast(b, 2u);
      let a3 = subgroupBroadcast(a, 3u);
      let b3 = subgroupBroadcast(b, 3u);
      for (var c = 0u; c < COLS; c++) {
        acc[r][c] += dot(a0, q[c][0]) + dot(b0, q[c][1]) + dot(a1, q[c][2]) + dot(b1, q[c][3])
                   + dot(a2, q[c][4]) + dot(b2, q[c][5]) + dot(a3, q[c][6]) + dot(b3, q[c][7]);
      }
    }
  }
#endif
  for (; k < K; k += 8u) {
    for (var c = 0u; c < COLS; c++) {
      let p = w8(e[c] + k);
      for (var r = 0u; r < ROWS; r++) {
        acc[r][c] += dot(x[(xr[r] + k) / 4u], p[0]) + dot(x[(xr[r] + k) / 4u + 1u], p[1]);
      }
    }
  }
#else
  for (; k < K; k++) {
    for (var c = 0u; c < COLS; c++) {
      let p = w1(e[c] + k);
      for (var r = 0u; r < ROWS; r++) { acc[r][c] += x[xr[r] + k] * p; }
    }
  }
#endif
  for (var r = 0u; r < ROWS; r++) {
    for (var c = 0u; c < COLS; c++) {
      if (r < params.M && c0 + c < params.nPart) { store(r, c0 + c, acc[r][c]); }
    }
  }
}
#endif
