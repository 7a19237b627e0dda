// InternViT patch embedding as im2col + matmul (src/ops/patch_embed.ts):
//   1. IM2COL:  cols [frames * tokens, k] with cols[f*tokens + 1 + i, :] = patch i of frame f,
//               flattened (ch, ky, kx) like the conv weight [c, in_ch, p, p]; CLS rows (token 0) are zero.
//               Patches are row-major: i = py * (width/p) + qx; k = in_ch * p * p.
//   2. matmul(cols, weight viewed [c, k], bias) -> out [frames * tokens, c]   (kernels/matmul.wgsl)
//   3. FINISH (in place on out): token 0 = cls + pos[0]; token t > 0 += pos[t].
//
// Variants: IM2COL or FINISH; POS_BF16 (FINISH: position embedding packed two per u32, element 2w in
// the low half) else f32.
//
// Bindings (group 0):
//   IM2COL: 0 params uniform { n, k, tokens, in_ch, p, height, width, c }   n = frames*tokens*k
//           1 px    storage read  array<f32> [frames, in_ch, height, width]
//           2 cols  storage rw    array<f32> [frames * tokens, k]
//   FINISH: 0 params uniform { n, k, tokens, in_ch, p, height, width, c }   n = frames*tokens*c
//           1 cls   storage read  array<f32> [c]
//           2 pos   storage read  [tokens, c]   (array<u32> packed bf16 or array<f32>)
//           3 out   storage rw    array<f32> [frames * tokens, c]
// Dispatch: one invocation per element of cols / out; workgroup 256;
//   grid (min(ceil(n/256), 65535), ceil(ceil(n/256)/65535)).

struct Params { n: u32, k: u32, tokens: u32, in_ch: u32, p: u32, height: u32, width: u32, c: u32 }

@group(0) @binding(0) var<uniform> params: Params;

#if IM2COL
@group(0) @binding(1) var<storage, read> px: array<f32>;
@group(0) @binding(2) var<storage, read_write> cols: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= params.n) { return; }
  let j = i % params.k;
  let tok = (i / params.k) % params.tokens;
  let frame = i / (params.k * params.tokens);
  if (tok == 0u) {
    cols[i] = 0.0;
    return;
  }
  let p = params.p;
  let per_row = params.width / p;
  let kx = j % p;
  let ky = (j / p) % p;
  let ch = j / (p * p);
  let y = ((tok - 1u) / per_row) * p + ky;
  let x = ((tok - 1u) % per_row) * p + kx;
  cols[i] = px[((frame * params.in_ch + ch) * params.height + y) * params.width + x];
}
#endif

#if FINISH
@group(0) @binding(1) var<storage, read> cls: array<f32>;
#if POS_BF16
@group(0) @binding(2) var<storage, read> pos: array<u32>;
#else
@group(0) @binding(2) var<storage, read> pos: array<f32>;
#endif
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn position(e: u32) -> f32 {
#if POS_BF16
  let w = pos[e / 2u];
  return bitcast<f32>(select(w << 16u, w & 0xffff0000u, (e & 1u) == 1u));
#else
  return pos[e];
#endif
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= params.n) { return; }
  let c = i % params.c;
  let tok = (i / params.c) % params.tokens;
  let pe = position(tok * params.c + c);
  out[i] = select(out[i] + pe, cls[c] + pe, tok == 0u);
}
#endif
