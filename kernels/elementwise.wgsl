// Elementwise ops on f32 tensors, one element per invocation.
//
// Variant key OP:
//   add   : out[i] = a[i] + b[i]
//   mul   : out[i] = a[i] * b[i]
//   scale : out[i] = a[i] * params.alpha            (b is bound but unused by the math)
//
// Bindings (group 0):
//   0 params  uniform { n: u32, alpha: f32 }
//   1 a       storage read  array<f32>  [n]
//   2 b       storage read  array<f32>  [n]
//   3 out     storage rw    array<f32>  [n]
// Dispatch: workgroup 256; grid (min(ceil(n/256), 65535), ceil(ceil(n/256)/65535)), flattened.

struct Params { n: u32, alpha: f32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= params.n) { return; }
#if OP_ADD
  out[i] = a[i] + b[i];
#elif OP_MUL
  out[i] = a[i] * b[i];
#elif OP_SCALE
  out[i] = a[i] * params.alpha + 0.0 * b[0];
#endif
}
