// Embedding gather: out[t, :] = table[ids[t], :], for a table [vocab, d] that may be split by rows
// into parts (the 92553 x 4096 bf16 table is 758 MB, over one 128 MiB binding). One dispatch per
// part; each writes only the tokens whose id falls in its rows [row_start, row_start + rows).
// Ids outside [0, vocab) read nothing and get a zero row, written by the dispatch with
// FIRST = 1 (so every output element is written exactly once).
//
// Variants: BF16 (table packed two per u32, element 2w in the low half) or f32 table;
//   TEXELS (with BF16): the part is a texel-layout weight (src/gpu/tensor.ts), texel i of row r
//   (elements 8i .. 8i+7) = texel (i * IL + r % IL, r / IL), IL the part's interleave (a define).
//   QUANT with Q8 or Q4: group-quantized rows (kernels/quant.wgsl: codes, then f16 scales of 32-value
//   groups; rowUnits() 16-byte units per row), in a buffer of words or (TEXELS) texel i of row r = unit i
//   of row r; out = scale * code.
//
// Bindings (group 0):
//   0 params  uniform { n, d, row_start, rows, vocab, first: u32 }
//   1 ids     storage read  array<i32> [n]
//   2 table   storage read  BF16: array<u32> [ceil(rows*d/2)]; QUANT: array<u32> [rows * rowUnits() * 4];
//                           else array<f32> [rows, d]   (this part)
//             TEXELS: texture_storage_2d<rgba32uint, read> [ceil(rows / IL)][d / 8 * IL] (QUANT: rowUnits() * IL)
//   3 out     storage rw    array<f32> [n, d]
// Dispatch: one workgroup of 256 per token, looping over d (so the parts that do not hold a token's
//   row cost one early exit per token, not one per 256 columns); grid (1, min(n, 65535), ceil(n/65535)),
//   token = wg.y + wg.z * 65535.

struct Params { n: u32, d: u32, row_start: u32, rows: u32, vocab: u32, first: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> ids: array<i32>;
#if TEXELS
@group(0) @binding(2) var table: texture_storage_2d<rgba32uint, read>;
#elif QUANT
@group(0) @binding(2) var<storage, read> table: array<u32>;
#elif BF16
@group(0) @binding(2) var<storage, read> table: array<u32>;
#else
@group(0) @binding(2) var<storage, read> table: array<f32>;
#endif
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

#if TEXELS
// Where texel i of row r of the part lies (texel layout).
fn texel(r: u32, i: u32) -> vec2<u32> { return vec2<u32>(i * {{IL}}u + r % {{IL}}u, r / {{IL}}u); }
#endif

#if QUANT
#include quant
// Word j of 16-byte unit i of row r of the part.
fn wordOf(r: u32, i: u32, j: u32) -> u32 {
#if TEXELS
  return textureLoad(table, texel(r, i))[j];
#else
  return table[(r * rowUnits() + i) * 4u + j];
#endif
}
fn valueAt(r: u32, col: u32) -> f32 {
  let g = col / 32u;
  let s = scaleOf(wordOf(r, scaleUnit(g), scaleWord(g)), g);
#if Q4
  return s * code1(wordOf(r, g, (col % 32u) / 8u), col % 8u);
#else
  return s * code1(wordOf(r, col / 16u, (col % 16u) / 4u), col % 4u);
#endif
}
#endif

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let token = wg.y + wg.z * 65535u;
  if (token >= params.n) { return; }
  let id = ids[token];
  let row = token * params.d;
  if (id < 0 || u32(id) >= params.vocab) {
    if (params.first == 1u) {
      for (var col = lid; col < params.d; col += 256u) { out[row + col] = 0.0; }
    }
    return;
  }
  let local = u32(id) - params.row_start; // wraps to a huge value for ids below this part
  if (local >= params.rows) { return; }
  for (var col = lid; col < params.d; col += 256u) {
    let e = local * params.d + col;
#if QUANT
    out[row + col] = valueAt(local, col);
#elif TEXELS
    let w = textureLoad(table, texel(local, col / 8u))[(col % 8u) / 2u];
    out[row + col] = bitcast<f32>(select(w << 16u, w & 0xffff0000u, (col & 1u) == 1u));
#elif BF16
    let w = table[e / 2u];
    out[row + col] = bitcast<f32>(select(w << 16u, w & 0xffff0000u, (e & 1u) == 1u));
#else
    out[row + col] = table[e];
#endif
  }
}
