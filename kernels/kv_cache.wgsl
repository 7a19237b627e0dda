// KV cache append: copy this step's k and v heads out of InternLM2's fused wqkv output into the
// layer's K and V caches at rows [position, position + rows).
//
// qkv layout, per row: per kv head g a block of (rep + 2) * d columns [q_{rep*g} .. q_{rep*g+rep-1}, k_g, v_g].
// Cache layout: [maxLen, kvHeads * d], kv head g at columns g*d.
//
// Bindings (group 0):
//   0 params  uniform { rows, kvHeads, d, rep, position, total }   total = rows * kvHeads * d
//   1 qkv     storage read  array<f32>  [rows, kvHeads*(rep+2)*d]
//   2 kCache  storage rw    array<f32>  [maxLen, kvHeads*d]
//   3 vCache  storage rw    array<f32>  [maxLen, kvHeads*d]
// Dispatch: workgroup 256, one invocation per (row, kv head, dim); grid folded into x/y (65535 max).

struct Params { rows: u32, kvHeads: u32, d: u32, rep: u32, position: u32, total: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read_write> kCache: array<f32>;
@group(0) @binding(3) var<storage, read_write> vCache: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * 256u;
  if (idx >= params.total) { return; }
  let width = params.kvHeads * params.d;
  let row = idx / width;
  let col = idx % width;
  let g = col / params.d;
  let i = col % params.d;
  let src = row * params.kvHeads * (params.rep + 2u) * params.d + g * (params.rep + 2u) * params.d + params.rep * params.d + i;
  let dst = (params.position + row) * width + col;
  kCache[dst] = qkv[src];
  vCache[dst] = qkv[src + params.d];
}
