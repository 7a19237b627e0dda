// Decoding of q8 / q4 weight words (#include quant; layout in src/weights/quantize.ts and
// docs/quantization.md). A row of K values: its codes, then ceil(K / 256) 16-byte units of f16 group
// scales (8 per unit); groups are 32 values along K; value = scale * q.
//   Q4: the 16-byte unit g holds group g; its word j holds values 8j .. 8j+7 of the group as 4-bit
//       two's complement nibbles, byte b = (q[8j+b] & 15) | (q[8j+b+4] & 15) << 4: the low nibbles
//       are values 0..3, the high ones 4..7. A shift left and an arithmetic shift right decode one
//       (no mask, no offset to subtract: a quarter fewer operations per value than offset codes).
//   Q8: byte k of the row is q[k] as int8; a 16-byte unit holds 16 values, half a group.
// Defines: Q4 or Q8; K_VALUES: an expression for K (the kernel's own uniform); DOT4: the integer dot
// products with int8 activations (kernels/matmul_xq8.wgsl; needs packed_4x8_integer_dot_product).

#if Q4
const CODE_UNITS_PER_GROUP = 1u;
#else
const CODE_UNITS_PER_GROUP = 2u;
#endif

// 16-byte units of codes in a row, and of the whole row (codes then scales).
fn codeUnits() -> u32 { return ({{K_VALUES}}) / 32u * CODE_UNITS_PER_GROUP; }
fn rowUnits() -> u32 { return codeUnits() + (({{K_VALUES}}) + 255u) / 256u; }

// Position (unit, word) of the scale of group g, and the scale from that word.
fn scaleUnit(g: u32) -> u32 { return codeUnits() + g / 8u; }
fn scaleWord(g: u32) -> u32 { return (g % 8u) / 2u; }
fn scaleOf(word: u32, g: u32) -> f32 { return unpack2x16float(word)[g % 2u]; }

#if Q4
#if DOT4
// sum_i xw-values[i] * q[i] over a group of 32 with int8 activations xw (word i = values 4i .. 4i + 3),
// times 16: nibbles moved to the high half of their byte are 16 q as int8, with no sign extension.
fn idot32x16(xw: array<u32, 8>, u: vec4<u32>) -> i32 {
  var s = 0;
  for (var j = 0u; j < 4u; j++) {
    s += dot4I8Packed(xw[2u * j], (u[j] << 4u) & 0xf0f0f0f0u) + dot4I8Packed(xw[2u * j + 1u], u[j] & 0xf0f0f0f0u);
  }
  return s;
}
#endif
// The 8 values of a code word (unscaled), in order.
fn codes8(v: u32) -> array<vec4<f32>, 2> {
  let lo = bitcast<vec4<i32>>(vec4<u32>(v) << vec4<u32>(28u, 20u, 12u, 4u)) >> vec4<u32>(28u);
  let hi = bitcast<vec4<i32>>(vec4<u32>(v) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(28u);
  return array<vec4<f32>, 2>(vec4<f32>(lo), vec4<f32>(hi));
}
// Value i (0..7) of a code word, unscaled.
fn code1(v: u32, i: u32) -> f32 { return f32(bitcast<i32>(v << (28u - 8u * (i % 4u) - 4u * (i / 4u))) >> 28u); }
#else
#if DOT4
// sum_i xw-values[i] * q[i] over a group of 32 (the group's two 16-byte units u0, u1).
fn idot32(xw: array<u32, 8>, u0: vec4<u32>, u1: vec4<u32>) -> i32 {
  return dot4I8Packed(xw[0], u0.x) + dot4I8Packed(xw[1], u0.y) + dot4I8Packed(xw[2], u0.z) + dot4I8Packed(xw[3], u0.w)
       + dot4I8Packed(xw[4], u1.x) + dot4I8Packed(xw[5], u1.y) + dot4I8Packed(xw[6], u1.z) + dot4I8Packed(xw[7], u1.w);
}
#endif
// The 4 values of a code word (unscaled), in order: sign-extended bytes.
fn codes4(v: u32) -> vec4<f32> {
  return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(v) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));
}
fn code1(v: u32, i: u32) -> f32 { return f32(bitcast<i32>(v << (24u - 8u * i)) >> 24u); }
#endif
