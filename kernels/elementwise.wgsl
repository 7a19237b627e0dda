// Elementwise ops on f32 tensors. x is viewed as [n / c, c] rows. With VEC4 (n, c, mod_stride and
// the offsets all multiples of 4) each invocation handles a vec4 (CPU adapters: ~3x faster), else
// one element.
//
// Variant key OP (exactly one):
//   add      : out[i] = a[i] + b[i]
//   mul      : out[i] = a[i] * b[i]
//   scale    : out[i] = a[i] * alpha
//   gelu     : out[i] = 0.5 a[i] (1 + erf(a[i] / sqrt 2))            (exact erf form)
//   silu     : out[i] = a[i] / (1 + exp(-a[i]))
//   silu_mul : out[i] = silu(a[i]) * b[i]                              (SwiGLU)
//   modulate : out[r, j] = a[r, j] * (1 + b[f, off1 + j]) + b[f, off0 + j],   f = r / p
//              (b = AdaLN output [frames, mod_stride]; off0/off1 = shift/scale chunk * c)
//   gated    : out[r, j] = a[r, j] + LS ? ls[j] : 1 * GATE ? g[f, off0 + j] : 1 * b[r, j]
//              (gated residual; defines LS and GATE pick the factors)
//
// Bindings (group 0):
//   0 params  uniform { n, alpha: f32, c, p, mod_stride, off0, off1, pad }   (u32 unless noted)
//   1 a       storage read  array<f32> [n]
//   2 out     storage rw    array<f32> [n]
//   3 b       storage read  array<f32>   add/mul/silu_mul: [n]; modulate: [frames, mod_stride];
//                                          gated: y [n]                       (not in scale/gelu/silu)
//   4 ls      storage read  array<f32> [c]                    (gated with LS)
//   4/5 g     storage read  array<f32> [frames, mod_stride] (gated with GATE: binding 4, or 5 with LS)
// Arrays are array<V>, V = vec4<f32> with VEC4 else f32, indexed in units of V.
// Dispatch: workgroup 256; grid (min(ceil(n/W/256), 65535), ceil(ceil(n/W/256)/65535)), flattened;
//   W = 4 with VEC4 else 1.

#if VEC4
alias V = vec4<f32>;
const W = 4u;
#else
alias V = f32;
const W = 1u;
#endif

struct Params { n: u32, alpha: f32, c: u32, p: u32, mod_stride: u32, off0: u32, off1: u32, pad: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<V>;
@group(0) @binding(2) var<storage, read_write> out: array<V>;
#if !UNARY
@group(0) @binding(3) var<storage, read> b: array<V>;
#endif
#if LS
@group(0) @binding(4) var<storage, read> ls: array<V>;
#endif
#if GATE
@group(0) @binding({{GATE_BINDING}}) var<storage, read> g: array<V>;
#endif

#include gelu

fn silu(x: V) -> V {
  return x / (1.0 + exp(-x));
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u; // in units of V
  if (i >= params.n / W) { return; }
  let e = i * W; // first element
#if OP_ADD
  out[i] = a[i] + b[i];
#elif OP_MUL
  out[i] = a[i] * b[i];
#elif OP_SCALE
  out[i] = a[i] * params.alpha;
#elif OP_GELU
  out[i] = gelu(a[i]);
#elif OP_SILU
  out[i] = silu(a[i]);
#elif OP_SILU_MUL
  out[i] = silu(a[i]) * b[i];
#elif OP_MODULATE
  let j = e % params.c;
  let m = (e / params.c / params.p) * params.mod_stride + j;
  out[i] = a[i] * (1.0 + b[(m + params.off1) / W]) + b[(m + params.off0) / W];
#elif OP_GATED
  let j = e % params.c;
  var y = b[i];
#if LS
  y *= ls[j / W];
#endif
#if GATE
  y *= g[((e / params.c / params.p) * params.mod_stride + params.off0 + j) / W];
#endif
  out[i] = a[i] + y;
#endif
}
