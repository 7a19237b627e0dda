// Activations for the software GEMV (kernels/matmul.wgsl, X_TEXELS): x f32 [M, K] (K % 4 == 0) into
// an rgba32float texture, texel (i, m) = x[m, 4i .. 4i + 3]. Lavapipe reads a storage texture with
// one vectorised address computation for all SIMD lanes, a storage buffer with a bounds-checked
// scalar load per lane and word.
// Bindings: 0 uniform { M, K }; 1 x storage read array<vec4<f32>>; 2 texture_storage_2d<rgba32float, write>.
// Dispatch: (ceil(K / 4 / 64), M).

struct Params { M: u32, K: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var xt: texture_storage_2d<rgba32float, write>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let width = params.K / 4u;
  if (g.x < width) { textureStore(xt, vec2<u32>(g.x, g.y), x[g.y * width + g.x]); }
}
