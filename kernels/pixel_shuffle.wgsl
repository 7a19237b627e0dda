// InternVL pixel shuffle (space-to-depth by k = 1/downsample_ratio) of ViT tokens, CLS dropped.
//
// x [frames, t_in, c] holds per frame an S x S grid of patch tokens (row-major, index row*S + col)
// after `skip` leading rows (1 = the CLS token). Output [frames, (S/k)^2, c*k*k]:
//   block (I, J) channels [(dr*k + dc)*c, +c) = x[frame, skip + (k*I + dr)*S + (k*J + dc), :]
//   token index I*(S/k) + J for ps_version v2, J*(S/k) + I for v1 (v1 = 1)
// (docs: shared pvc-architecture.md section 5; checked against torch's view/permute in the test).
//
// Bindings (group 0):
//   0 params  uniform { n, c, s, k, t_in, skip, v1: u32 }       n = output elements
//   1 x       storage read  array<f32> [frames, t_in, c]
//   2 out     storage rw    array<f32> [frames, (s/k)^2, c*k*k]
// Dispatch: one invocation per output element; workgroup 256;
//   grid (min(ceil(n/256), 65535), ceil(ceil(n/256)/65535)).

struct Params { n: u32, c: u32, s: u32, k: u32, t_in: u32, skip: u32, v1: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= params.n) { return; }
  let k = params.k;
  let side = params.s / k;
  let width = params.c * k * k;
  let ch = i % width;
  let tok = (i / width) % (side * side);
  let frame = i / (width * side * side);
  let blk = ch / params.c;
  let a = tok / side;
  let b = tok % side;
  let bi = select(a, b, params.v1 == 1u);
  let bj = select(b, a, params.v1 == 1u);
  let src = (bi * k + blk / k) * params.s + bj * k + blk % k;
  out[i] = x[(frame * params.t_in + params.skip + src) * params.c + ch % params.c];
}
