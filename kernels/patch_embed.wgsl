// InternViT patch embedding as a direct convolution (runs once per frame):
//   out[f, 0, c]   = cls[c] + pos[0, c]
//   out[f, 1+i, c] = bias[c] + pos[1+i, c] + sum_{ch,ky,kx} w[c, ch, ky, kx] * px[f, ch, py*p+ky, qx*p+kx]
// for patch i = py * (width/p) + qx (row-major), kernel = stride = p.
//
// Variants: W_BF16 (conv weight packed two per u32, element 2w in the low half) else f32;
//           POS_BF16 (position embedding packed bf16) else f32.
//
// Bindings (group 0):
//   0 params  uniform { n, c, tokens, in_ch, p, height, width, pad: u32 }    n = frames*tokens*c
//   1 px      storage read  array<f32> [frames, in_ch, height, width]
//   2 w       storage read  [c, in_ch, p, p]  (array<u32> packed bf16 or array<f32>)
//   3 bias    storage read  array<f32> [c]
//   4 cls     storage read  array<f32> [c]
//   5 pos     storage read  [tokens, c]       (array<u32> packed bf16 or array<f32>)
//   6 out     storage rw    array<f32> [frames, tokens, c]      tokens = 1 + (height/p)*(width/p)
// Dispatch: one invocation per output element (consecutive invocations = consecutive channels);
//   workgroup 256; grid (min(ceil(n/256), 65535), ceil(ceil(n/256)/65535)).

struct Params { n: u32, c: u32, tokens: u32, in_ch: u32, p: u32, height: u32, width: u32, pad: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> px: array<f32>;
#if W_BF16
@group(0) @binding(2) var<storage, read> w: array<u32>;
#else
@group(0) @binding(2) var<storage, read> w: array<f32>;
#endif
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> cls: array<f32>;
#if POS_BF16
@group(0) @binding(5) var<storage, read> pos: array<u32>;
#else
@group(0) @binding(5) var<storage, read> pos: array<f32>;
#endif
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

fn bf16_at(word: u32, e: u32) -> f32 {
  return bitcast<f32>(select(word << 16u, word & 0xffff0000u, (e & 1u) == 1u));
}

fn weight(e: u32) -> f32 {
#if W_BF16
  return bf16_at(w[e / 2u], e);
#else
  return w[e];
#endif
}

fn position(e: u32) -> f32 {
#if POS_BF16
  return bf16_at(pos[e / 2u], e);
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
  let frame = i / (params.c * params.tokens);
  if (tok == 0u) {
    out[i] = cls[c] + position(c);
    return;
  }
  let p = params.p;
  let cols = params.width / p;
  let y0 = ((tok - 1u) / cols) * p;
  let x0 = ((tok - 1u) % cols) * p;
  let k = params.in_ch * p * p;
  var acc = 0.0;
  for (var ch = 0u; ch < params.in_ch; ch++) {
    let plane = (frame * params.in_ch + ch) * params.height;
    for (var ky = 0u; ky < p; ky++) {
      let row = (plane + y0 + ky) * params.width + x0;
      let wrow = c * k + (ch * p + ky) * p;
      for (var kx = 0u; kx < p; kx++) {
        acc += px[row + kx] * weight(wrow + kx);
      }
    }
  }
  out[i] = acc + bias[c] + position(tok * params.c + c);
}
